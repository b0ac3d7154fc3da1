#!/usr/bin/env bash
# Load bench of tracker-http against a bare axum handler.
#
# Builds both in release, then drives each with wrk (installed from
# Debian's packages if missing) on 127.0.0.1, in alternating rounds:
#   POST /events   (a new visitor id per request, over 1000 pages)
#   GET  /distinct (rotating over the same 1000 pages)
# The baseline (tracker-http/examples/bare.rs) parses the same JSON and
# query and does nothing. Prints requests/s, p50 and p99 for each, the
# median over the rounds, and the service/bare ratio.
#
# Usage: benches/http.sh            (defaults below; all bounded in time)
#   DURATION=10s CONNECTIONS=64 ROUNDS=3 PIN=1 benches/http.sh
# PIN=1 (default when taskset exists and there are >= 2 CPUs) gives the
# server CPU 1 with one tokio worker and wrk CPU 0 with one thread, so the
# load generator does not steal the server's core.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
SERVICE_PORT=${SERVICE_PORT:-18080}
BARE_PORT=${BARE_PORT:-18081}
CPUS=$(nproc)
if [[ -z "${PIN:-}" ]]; then
  if command -v taskset >/dev/null && ((CPUS >= 2)); then PIN=1; else PIN=0; fi
fi

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  echo "wrk not found; installing it from Debian's packages" >&2
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y wrk >/dev/null 2>&1 ||
    { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y wrk >/dev/null; }
fi

cargo build --release -q -p tracker-http --bin tracker-http --example bare
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
SERVICE_BIN="$TARGET_DIR/release/tracker-http"
BARE_BIN="$TARGET_DIR/release/examples/bare"

WORK=$(mktemp -d)
cleanup() {
  stop_all 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/post.lua" <<'LUA'
-- A fresh visitor per request (per wrk thread), pages rotating over 1000.
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"visitor":"visitor-%d","url":"https://example.com/page/%d"}', n, n % 1000)
  return wrk.format("POST", "/events", { ["Content-Type"] = "application/json" }, body)
end
LUA
cat >"$WORK/get.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/distinct?url=https%3A%2F%2Fexample.com%2Fpage%2F" .. (n % 1000))
end
LUA

if [[ "$PIN" == 1 ]]; then
  SERVER_PREFIX=(env TOKIO_WORKER_THREADS=1 taskset -c 1)
  WRK_PREFIX=(taskset -c 0)
  WRK_THREADS=1
else
  SERVER_PREFIX=(env)
  WRK_PREFIX=(env)
  WRK_THREADS=2
fi

declare -A PIDS
start() { # name port
  if [[ "$1" == service ]]; then
    "${SERVER_PREFIX[@]}" "$SERVICE_BIN" --listen "127.0.0.1:$2" --log warn >"$WORK/service.log" 2>&1 &
  else
    "${SERVER_PREFIX[@]}" "$BARE_BIN" "127.0.0.1:$2" >"$WORK/bare.log" 2>&1 &
  fi
  PIDS[$1]=$!
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$2/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2
  exit 1
}

stop_all() {
  for name in "${!PIDS[@]}"; do
    kill "${PIDS[$name]}" 2>/dev/null || true
    wait "${PIDS[$name]}" 2>/dev/null || true
  done
  PIDS=()
}

# CPU time (user + system) a process has used, in clock ticks: the
# server's CPU per request is robust to other load on the machine, which
# requests/s on a shared 2-core box is not.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# wrk's latency lines are like "     50%  612.00us"; normalise to ms.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else { printf "%s", v } }'
}

run_wrk() { # name port script -> "rps p50 p99 non2xx cpu_us_per_request"
  local out before after
  before=$(cpu_ticks "${PIDS[$1]}")
  out=$("${WRK_PREFIX[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s "$WORK/$3.lua" "http://127.0.0.1:$2")
  after=$(cpu_ticks "${PIDS[$1]}")
  echo "$out" >>"$WORK/wrk-$1-$3.txt"
  local rps p50 p99 bad requests cpu
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
  echo "$rps $p50 $p99 ${bad:-0} $cpu"
}

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
  # Both servers up at once (the idle one costs nothing), runs interleaved
  # so that drifting background load hits both alike.
  start bare "$BARE_PORT"
  start service "$SERVICE_PORT"
  for script in post get; do
    for name in bare service; do
      port=$BARE_PORT
      [[ "$name" == service ]] && port=$SERVICE_PORT
      result=$(run_wrk "$name" "$port" "$script")
      RESULTS["$name-$script-$round"]="$result"
      echo "round $round $name $script: rps p50_ms p99_ms non2xx cpu_us/req = $result" >&2
    done
  done
  stop_all
done

median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
field() { # name script column -> median over rounds
  for round in $(seq "$ROUNDS"); do echo "${RESULTS["$1-$2-$round"]}" | awk -v c="$3" '{print $c}'; done | median
}

echo
echo "tracker-http vs bare axum: wrk, $CONNECTIONS connections, $DURATION x $ROUNDS rounds (median), pinned=$PIN"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $CPUS CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB"
echo
echo "| endpoint | server | requests/s | p50 ms | p99 ms | non-2xx | server CPU µs/request |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for script in post get; do
  label="POST /events"
  [[ "$script" == get ]] && label="GET /distinct"
  for name in bare service; do
    echo "| $label | $name | $(field $name $script 1) | $(field $name $script 2) | $(field $name $script 3) | $(field $name $script 4) | $(field $name $script 5) |"
  done
done
echo
for script in post get; do
  label="POST /events"
  [[ "$script" == get ]] && label="GET /distinct"
  awk -v s="$(field service $script 1)" -v b="$(field bare $script 1)" \
    -v sc="$(field service $script 5)" -v bc="$(field bare $script 5)" -v l="$label" \
    'BEGIN { printf "%s: requests/s service/bare = %.3f; capacity (bare CPU/request over service CPU/request) = %.3f\n", l, s / b, bc / sc }'
done
