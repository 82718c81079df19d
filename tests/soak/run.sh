#!/usr/bin/env bash
# The three-instance soak (issue 16; docs/soak.md): three sealgate processes behind nginx
# (round robin, no stickiness) sharing Redis, many simulated users logging in, calling an API,
# refreshing, logging out and being logged out by back-channel, while one instance is killed
# and restarted and Redis fails. Prints a report; exits non-zero when the oracle found a
# violation.
#
#   tests/soak/run.sh                                  # 45 s, 100 users (what CI runs)
#   SOAK_SECONDS=3600 SOAK_USERS=200 tests/soak/run.sh # a long one
#   SEALGATE_BIN=target/release/sealgate tests/soak/run.sh
#
# Installs what is missing (apt: nginx, redis-server; the packages' services are not started),
# then runs the Rust driver `soak::three_instances_behind_a_balancer` (tests/integration/soak/),
# which starts every process itself on free loopback ports and stops them by PID.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
say() { printf '[soak] %s\n' "$*"; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [[ -z "${SEALGATE_NGINX:-}" ]] && ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
  missing+=(nginx)
fi
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start their system services (port 80, 6379): the soak runs its own.
  policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ -n "$policy" ]] && rm -f "$policy"
fi

export SOAK_SECONDS="${SOAK_SECONDS:-45}"
export SOAK_USERS="${SOAK_USERS:-100}"
say "${SOAK_USERS} users for ${SOAK_SECONDS} s"
cd "$REPO"
# Builds the debug sealgate binary with the test (CARGO_BIN_EXE_sealgate), unless SEALGATE_BIN
# names another one.
cargo test --locked --test integration soak::three_instances_behind_a_balancer -- \
  --ignored --nocapture --test-threads=1
