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

# shellcheck source=tests/e2e/lib.sh
. "$E2E/lib.sh"
NEED_REDIS=1 needs_browser
needs_sealgate

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"

# --- servers ------------------------------------------------------------------------------------
trap on_exit EXIT
trap 'exit 130' INT TERM

read -r P_REDIS P_OP P_OP2 P_API P_A P_B < <(free_ports 6)

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
