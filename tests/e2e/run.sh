#!/usr/bin/env bash
# End-to-end tests: a real Chromium signs in through a real, OpenID Certified provider
# (oidc-provider; two instances, sealgate's two [[providers]]) via two sealgate instances sharing
# Redis, calls an API that verifies the token, refreshes, and logs out (RP-initiated and
# back-channel).
#
#   tests/e2e/run.sh                 # everything
#   tests/e2e/run.sh refresh logout  # only the named scenarios (see scenarios.mjs)
#
# Installs what is missing (apt: chromium, redis-server, curl; npm ci), builds sealgate
# (`cargo build`, unless SEALGATE_BIN names a binary), starts every server on 127.0.0.1 with
# free ports, runs the scenarios, and stops every server it started, by PID, also on failure.
# Server logs, the servers' event files and, for a failing scenario, a screenshot and the page's
# HTML per tab are left in tests/e2e/artifacts/. E2E_TIMEOUT (seconds, default 300) bounds the
# scenarios' run.
set -euo pipefail

E2E="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$E2E/../.." && pwd)"
ARTIFACTS="$E2E/artifacts"
ACCESS_TOKEN_TTL=15 # seconds; sealgate's refresh_before is 5 s (sealgate.toml.in)

say() { printf '[e2e] %s\n' "$*"; }

# --- what the run needs -------------------------------------------------------------------------
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v node >/dev/null 2>&1 || (($(node -p 'process.versions.node.split(".")[0]') < 20)); then
  echo "e2e: Node.js 20 or newer is required" >&2
  exit 1
fi
CHROMIUM="${CHROMIUM:-$(command -v chromium)}"

# npm ci only when the lockfile changed since the last install (it wipes node_modules).
lock_sum="$(sha256sum "$E2E/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$E2E/node_modules/.e2e-lock-sha256" 2>/dev/null || true)" != "$lock_sum" ]]; then
  say "npm ci"
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$E2E/node_modules/.e2e-lock-sha256"
fi

if [[ -z "${SEALGATE_BIN:-}" ]]; then
  say "cargo build"
  (cd "$REPO" && cargo build)
  target="${CARGO_TARGET_DIR:-$REPO/target}"
  [[ "$target" = /* ]] || target="$REPO/$target"
  SEALGATE_BIN="$target/debug/sealgate"
fi
[[ -x "$SEALGATE_BIN" ]] || { echo "e2e: $SEALGATE_BIN is not an executable" >&2; exit 1; }

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"

# --- servers ------------------------------------------------------------------------------------
pids=()
names=()
cleanup() {
  local status=$?
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    for _ in $(seq 50); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "${pids[i]}" 2>/dev/null; then
      say "${names[i]} (pid ${pids[i]}) ignored SIGTERM; killing it"
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    wait "${pids[i]}" 2>/dev/null || true
  done
  if ((status != 0)); then
    for log in "$ARTIFACTS"/*.log; do
      [[ -e "$log" ]] || continue
      printf '\n[e2e] --- last lines of %s ---\n' "${log#"$REPO"/}"
      tail -n 25 "$log"
    done
    say "FAILED; artifacts (logs, events, screenshots) in ${ARTIFACTS#"$REPO"/}/"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME COMMAND...: runs COMMAND in the background, output to artifacts/NAME.log.
start() {
  local name=$1
  shift
  "$@" >"$ARTIFACTS/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

# wait_http NAME URL STATUS: waits (30 s at most) until URL answers STATUS; fails early if
# the server started last (NAME) exited.
wait_http() {
  local name=$1 url=$2 want=$3 deadline=$((SECONDS + 30)) got
  for ((;;)); do
    got="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
    [[ "$got" == "$want" ]] && return 0
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      say "$name exited during start-up"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      say "$name: $url still answers $got, not $want, after 30 s"
      return 1
    fi
    sleep 0.1
  done
}

read -r P_REDIS P_OP P_OP2 P_API P_A P_B < <(node -e '
  const net = require("net");
  const servers = Array.from({ length: 6 }, () => net.createServer());
  Promise.all(servers.map((s) => new Promise((r) => s.listen(0, "127.0.0.1", r)))).then(() => {
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
  });')

ISSUER="http://127.0.0.1:$P_OP"   # provider "op", the default
ISSUER2="http://127.0.0.1:$P_OP2" # provider "op2"
UPSTREAM="http://127.0.0.1:$P_API"
ORIGIN_A="http://127.0.0.1:$P_A"
ORIGIN_B="http://127.0.0.1:$P_B"
API_AUDIENCE="$UPSTREAM/"
OP_EVENTS="$ARTIFACTS/op-events.jsonl"
OP2_EVENTS="$ARTIFACTS/op2-events.jsonl"
API_EVENTS="$ARTIFACTS/api-events.jsonl"
: >"$OP_EVENTS"
: >"$OP2_EVENTS"
: >"$API_EVENTS"
export SEALGATE_KEY SEALGATE_CLIENT_SECRET SEALGATE_OP2_CLIENT_SECRET
export SEALGATE_REDIS_URL="redis://127.0.0.1:$P_REDIS/0"
SEALGATE_KEY="$("$SEALGATE_BIN" keygen)"
random_secret() { node -e 'console.log(require("crypto").randomBytes(32).toString("base64url"))'; }
SEALGATE_CLIENT_SECRET="$(random_secret)"
SEALGATE_OP2_CLIENT_SECRET="$(random_secret)"

say "redis on $P_REDIS, providers op on $P_OP and op2 on $P_OP2, API on $P_API, sealgate A on $P_A and B on $P_B"
start redis redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$ARTIFACTS" --logfile ''
for ((i = 0; ; i++)); do
  [[ "$(redis-cli -p "$P_REDIS" ping 2>/dev/null || true)" == PONG ]] && break
  ((i < 100)) || { say "redis did not answer PING"; exit 1; }
  sleep 0.1
done

# Two providers from the same op.mjs: each its own issuer, key, client and events; op2's
# subjects are "op2|" + the login (pairwise), so a session shows which provider made it; op2
# also issues only DPoP-bound access tokens and requires a DPoP nonce (sealgate's `dpop = true`).
start op env OP_PORT="$P_OP" PROVIDER_NAME=op SEALGATE_ORIGINS="$ORIGIN_A $ORIGIN_B" \
  API_AUDIENCE="$API_AUDIENCE" CLIENT_ID=sealgate CLIENT_SECRET="$SEALGATE_CLIENT_SECRET" \
  ACCESS_TOKEN_TTL="$ACCESS_TOKEN_TTL" EVENTS_FILE="$OP_EVENTS" node "$E2E/op.mjs"
wait_http op "$ISSUER/.well-known/openid-configuration" 200
start op2 env OP_PORT="$P_OP2" PROVIDER_NAME=op2 SUBJECT_PREFIX='op2|' DPOP=1 \
  SEALGATE_ORIGINS="$ORIGIN_A $ORIGIN_B" API_AUDIENCE="$API_AUDIENCE" CLIENT_ID=sealgate-op2 \
  CLIENT_SECRET="$SEALGATE_OP2_CLIENT_SECRET" ACCESS_TOKEN_TTL="$ACCESS_TOKEN_TTL" \
  EVENTS_FILE="$OP2_EVENTS" node "$E2E/op.mjs"
wait_http op2 "$ISSUER2/.well-known/openid-configuration" 200

start api env API_PORT="$P_API" ISSUERS="$ISSUER $ISSUER2" API_AUDIENCE="$API_AUDIENCE" \
  EVENTS_FILE="$API_EVENTS" node "$E2E/api.mjs"
wait_http api "$UPSTREAM/health" 401

for instance in a b; do
  if [[ $instance == a ]]; then port=$P_A; origin=$ORIGIN_A; else port=$P_B; origin=$ORIGIN_B; fi
  sed -e "s|@PORT@|$port|g" -e "s|@PUBLIC_URL@|$origin|g" -e "s|@ISSUER@|$ISSUER|g" -e "s|@ISSUER2@|$ISSUER2|g" \
    -e "s|@UPSTREAM@|$UPSTREAM|g" -e "s|@SPA_DIR@|$E2E/spa|g" \
    -e "s|@ALLOWED_ORIGINS@|\"$ORIGIN_A\", \"$ORIGIN_B\"|g" \
    "$E2E/sealgate.toml.in" >"$ARTIFACTS/sealgate-$instance.toml"
  start "sealgate-$instance" env RUST_LOG=sealgate=info NO_COLOR=1 \
    "$SEALGATE_BIN" serve --config "$ARTIFACTS/sealgate-$instance.toml"
  wait_http "sealgate-$instance" "$origin/readyz" 200
done

# --- scenarios ----------------------------------------------------------------------------------
say "scenarios"
export ORIGIN_A ORIGIN_B ISSUER ISSUER2 ARTIFACTS OP_EVENTS OP2_EVENTS API_EVENTS ACCESS_TOKEN_TTL CHROMIUM
started=$SECONDS
# In the background and waited for, so that Ctrl-C or SIGTERM reaches the trap at once (the
# cleanup then stops the scenarios too). scenarios.mjs bounds its own run (E2E_TIMEOUT, 300 s).
node "$E2E/scenarios.mjs" "$@" > >(tee "$ARTIFACTS/scenarios.log") 2>&1 &
pids+=($!)
names+=(scenarios)
status=0
wait "${pids[-1]}" || status=$?
say "scenarios took $((SECONDS - started)) s"
exit "$status"
