#!/usr/bin/env bash
# Interoperability tests: the end-to-end scenarios against real OpenID Providers installed from
# their registries: LemonLDAP::NG and Glewlwyd (Debian), django-oauth-toolkit (PyPI). For each,
# tests/interop/providers/NAME.sh installs it (idempotent), configures it on 127.0.0.1 with a
# confidential client for sealgate, a user and an RS256 key, and starts it; then two sealgate
# instances (the same key, nothing else shared) and the test API start, and Chromium runs
# scenarios.mjs through the provider's own pages (hooks in providers/NAME.mjs). Every server is
# stopped by PID when its provider is done, also on failure.
#
#   tests/interop/run.sh                      # every provider, every scenario; updates the matrix
#   tests/interop/run.sh dot                  # one provider
#   SCENARIOS="login api" tests/interop/run.sh  # some scenarios (see scenarios.mjs)
#
# The results go to tests/interop/matrix.md (provider × scenario, with the versions tested) and,
# after a full run, into README.md between the interop-matrix markers. Logs, and for a failing
# scenario a screenshot and the HTML per tab, are left in tests/interop/artifacts/PROVIDER/.
set -euo pipefail

INTEROP="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$INTEROP/../.." && pwd)"
E2E="$REPO/tests/e2e"
ARTIFACTS_ROOT="$INTEROP/artifacts"
ACCESS_TOKEN_TTL=15 # seconds; sealgate's refresh_before is 5 s (sealgate.toml.in)
ALL_PROVIDERS=(lemonldap glewlwyd dot)
target="${CARGO_TARGET_DIR:-$REPO/target}"
[[ "$target" = /* ]] || target="$REPO/$target"
STATE_ROOT="$target/interop" # providers' databases, keys and the Python venv
VENV="$STATE_ROOT/venv"

say() { printf '[interop] %s\n' "$*"; }

# shellcheck source=tests/e2e/lib.sh
. "$E2E/lib.sh"

random_secret() { node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))'; }

# apt_install PACKAGE...: installs the missing ones (apt-get update first, once per run).
apt_updated=0
apt_install() {
  local missing=() p
  for p in "$@"; do
    [[ -n "$p" ]] || continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  export DEBIAN_FRONTEND=noninteractive
  if ((!apt_updated)); then apt-get update -qq; apt_updated=1; fi
  say "apt-get install ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

providers=("$@")
((${#providers[@]})) || providers=("${ALL_PROVIDERS[@]}")
for p in "${providers[@]}"; do
  [[ -f "$INTEROP/providers/$p.sh" ]] || { echo "unknown provider $p; known: ${ALL_PROVIDERS[*]}" >&2; exit 2; }
done
read -r -a scenarios <<<"${SCENARIOS:-}"

needs_browser
needs_sealgate
mkdir -p "$STATE_ROOT"

# run_provider NAME: everything for one provider, in a subshell (its own servers and EXIT trap).
run_provider() (
  PROVIDER=$1
  ARTIFACTS="$ARTIFACTS_ROOT/$PROVIDER"
  STATE="$STATE_ROOT/$PROVIDER"
  rm -rf "$ARTIFACTS" "$STATE"
  mkdir -p "$ARTIFACTS" "$STATE"
  trap on_exit EXIT
  trap 'exit 130' INT TERM
  # shellcheck source=/dev/null
  . "$INTEROP/providers/$PROVIDER.sh"

  local started=$SECONDS
  provider_install
  provider_version >"$ARTIFACTS/version.txt"
  say "$PROVIDER: $(cat "$ARTIFACTS/version.txt") (install/check $((SECONDS - started)) s)"

  read -r P_OP P_API P_A P_B < <(free_ports 4)
  ORIGIN_A="http://127.0.0.1:$P_A"
  ORIGIN_B="http://127.0.0.1:$P_B"
  UPSTREAM="http://127.0.0.1:$P_API"
  API_AUDIENCE="$UPSTREAM/"
  API_EVENTS="$ARTIFACTS/api-events.jsonl"
  : >"$API_EVENTS"
  export SEALGATE_KEY SEALGATE_CLIENT_SECRET
  SEALGATE_KEY="$("$SEALGATE_BIN" keygen)"
  SEALGATE_CLIENT_SECRET="$(random_secret)"
  API_TYP=at+jwt
  EXPECT_SUB=

  started=$SECONDS
  provider_start # sets ISSUER, PROVIDER_TOML, TEST_USER, TEST_PASSWORD; maybe EXPECT_SUB, API_TYP
  say "$PROVIDER: $ISSUER up ($((SECONDS - started)) s); API on $P_API, sealgate A on $P_A and B on $P_B"

  start api env API_PORT="$P_API" ISSUERS="$ISSUER" API_AUDIENCE="$API_AUDIENCE" API_TYP="$API_TYP" \
    EVENTS_FILE="$API_EVENTS" node "$E2E/api.mjs"
  wait_http api "$UPSTREAM/health" 401

  local instance port origin
  for instance in a b; do
    if [[ $instance == a ]]; then port=$P_A; origin=$ORIGIN_A; else port=$P_B; origin=$ORIGIN_B; fi
    PORT=$port PUBLIC_URL=$origin PROVIDER=$PROVIDER PROVIDER_TOML=$PROVIDER_TOML ORIGIN_A=$ORIGIN_A \
      ORIGIN_B=$ORIGIN_B UPSTREAM=$UPSTREAM SPA_DIR="$E2E/spa" node -e '
        const fs = require("fs");
        process.stdout.write(fs.readFileSync(process.argv[1], "utf8").replace(/@([A-Z_]+)@/g, (_, k) => process.env[k]));
      ' "$INTEROP/sealgate.toml.in" >"$ARTIFACTS/sealgate-$instance.toml"
    start "sealgate-$instance" env RUST_LOG=sealgate=info NO_COLOR=1 \
      "$SEALGATE_BIN" serve --config "$ARTIFACTS/sealgate-$instance.toml"
    wait_http "sealgate-$instance" "$origin/readyz" 200
  done

  started=$SECONDS
  export ORIGIN_A ORIGIN_B ISSUER PROVIDER ARTIFACTS API_EVENTS ACCESS_TOKEN_TTL CHROMIUM TEST_USER \
    TEST_PASSWORD EXPECT_SUB
  RESULTS_FILE="$ARTIFACTS/results.json" node "$INTEROP/scenarios.mjs" "${scenarios[@]}" \
    > >(tee "$ARTIFACTS/scenarios.log") 2>&1 &
  pids+=($!)
  names+=(scenarios)
  local status=0
  wait "${pids[-1]}" || status=$?
  say "$PROVIDER: scenarios took $((SECONDS - started)) s"
  exit "$status"
)

status=0
for p in "${providers[@]}"; do
  started=$SECONDS
  run_provider "$p" || status=1
  say "$p: $((SECONDS - started)) s in all"
done

readme=()
if [[ ${#providers[@]} -eq ${#ALL_PROVIDERS[@]} && ${#scenarios[@]} -eq 0 ]]; then readme=(--readme); fi
node "$INTEROP/matrix.mjs" "${readme[@]}" "${providers[@]}"
exit "$status"
