# Shared by tests/e2e/run.sh and tests/interop/run.sh (sourced; the caller sets REPO, ARTIFACTS
# and defines say()): what a browser run needs, sealgate's binary, and starting and stopping
# servers by PID.

# needs_browser: installs what is missing (apt: chromium, curl; redis-server when
# NEED_REDIS=1; npm ci in tests/e2e) and sets CHROMIUM.
needs_browser() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if [[ "${NEED_REDIS:-0}" == 1 ]]; then command -v redis-server >/dev/null 2>&1 || missing+=(redis-server); fi
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v node >/dev/null 2>&1 || (($(node -p 'process.versions.node.split(".")[0]') < 20)); then
    echo "Node.js 20 or newer is required" >&2
    exit 1
  fi
  CHROMIUM="${CHROMIUM:-$(command -v chromium)}"

  # npm ci only when the lockfile changed since the last install (it wipes node_modules).
  local e2e="$REPO/tests/e2e" lock_sum
  lock_sum="$(sha256sum "$e2e/package-lock.json" | cut -d' ' -f1)"
  if [[ "$(cat "$e2e/node_modules/.e2e-lock-sha256" 2>/dev/null || true)" != "$lock_sum" ]]; then
    say "npm ci"
    (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$e2e/node_modules/.e2e-lock-sha256"
  fi
}

# needs_sealgate: sets SEALGATE_BIN (`cargo build`'s debug binary unless already set).
needs_sealgate() {
  if [[ -z "${SEALGATE_BIN:-}" ]]; then
    say "cargo build"
    (cd "$REPO" && cargo build)
    local target="${CARGO_TARGET_DIR:-$REPO/target}"
    [[ "$target" = /* ]] || target="$REPO/$target"
    SEALGATE_BIN="$target/debug/sealgate"
  fi
  [[ -x "$SEALGATE_BIN" ]] || { echo "$SEALGATE_BIN is not an executable" >&2; exit 1; }
}

pids=()
names=()
# stop_servers: stops every server started so far, last first, by PID (SIGTERM, then SIGKILL
# after 5 s).
stop_servers() {
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
  pids=()
  names=()
}

# on_exit: the EXIT trap. Stops the servers; on failure, shows the end of every log in
# LOGS_DIR (default ARTIFACTS).
on_exit() {
  local status=$?
  stop_servers
  if ((status != 0)); then
    local dir="${LOGS_DIR:-$ARTIFACTS}" log
    for log in "$dir"/*.log; do
      [[ -e "$log" ]] || continue
      printf '\n--- last lines of %s ---\n' "${log#"$REPO"/}"
      tail -n 25 "$log"
    done
    say "FAILED; artifacts (logs, events, screenshots) in ${dir#"$REPO"/}/"
  fi
  exit "$status"
}

# start NAME COMMAND...: runs COMMAND in the background, output to LOGS_DIR/NAME.log (default ARTIFACTS).
start() {
  local name=$1
  shift
  "$@" >"${LOGS_DIR:-$ARTIFACTS}/$name.log" 2>&1 &
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

# free_ports N: N free loopback ports, space-separated.
free_ports() {
  node -e '
    const net = require("net");
    const servers = Array.from({ length: Number(process.argv[1]) }, () => net.createServer());
    Promise.all(servers.map((s) => new Promise((r) => s.listen(0, "127.0.0.1", r)))).then(() => {
      console.log(servers.map((s) => s.address().port).join(" "));
      servers.forEach((s) => s.close());
    });' "$1"
}
