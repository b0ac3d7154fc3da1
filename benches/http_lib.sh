# Shared by the HTTP load benches (benches/http.sh, benches/http_durable.sh):
# sourced, not run. It reads DURATION, CONNECTIONS, ROUNDS and PIN, moves to
# the repository root, installs wrk if missing, builds tracker-http and the
# bare axum baseline in release, makes a scratch directory (removed on
# exit), and defines what both benches drive their servers with.
# shellcheck shell=bash

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
CPUS=$(nproc)
if [[ -z "${PIN:-}" ]]; then
  if command -v taskset >/dev/null && ((CPUS >= 2)); then PIN=1; else PIN=0; fi
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit

if ! command -v wrk >/dev/null; then
  echo "wrk not found; installing it from Debian's packages" >&2
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y wrk >/dev/null 2>&1 ||
    { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y wrk >/dev/null; }
fi

# SERVICE_BIN and BARE_BIN, when both set, are run as they are.
if [[ -z "${SERVICE_BIN:-}" || -z "${BARE_BIN:-}" ]]; then
  cargo build --release -q -p tracker-http --bin tracker-http --example bare
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  SERVICE_BIN="$TARGET_DIR/release/tracker-http"
  BARE_BIN="$TARGET_DIR/release/examples/bare"
fi

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
start() { # name port ready-path command... : start, then wait until ready-path answers 200
  local name=$1 port=$2 ready=$3
  shift 3
  "${SERVER_PREFIX[@]}" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS[$name]=$!
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port$ready" >/dev/null 2>&1 && return 0
    kill -0 "${PIDS[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not become ready on $ready:" >&2
  cat "$WORK/$name.log" >&2
  exit 1
}
start_bare() { start "$1" "$2" /healthz "$BARE_BIN" "127.0.0.1:$2"; }
start_service() { # name port [extra flags...]; ready once /readyz says so (recovery done)
  local name=$1 port=$2
  shift 2
  start "$name" "$port" /readyz "$SERVICE_BIN" --listen "127.0.0.1:$port" --log warn "$@"
}
# A/B of two builds of the service: BASE_SERVICE_BIN=path puts that build
# (same flags) where the bare handler runs, in every table and ratio.
if [[ -n "${BASE_SERVICE_BIN:-}" ]]; then
  start_bare() { # name port
    start "$1" "$2" /readyz "$BASE_SERVICE_BIN" --listen "127.0.0.1:$2" --log warn
  }
fi

stop() { # name
  kill "${PIDS[$1]}" 2>/dev/null || true
  wait "${PIDS[$1]}" 2>/dev/null || true
  unset "PIDS[$1]"
}
stop_all() {
  for name in "${!PIDS[@]}"; do stop "$name"; done
}

# CPU time (user + system, all threads) a process has used, in clock
# ticks: the server's CPU per request is robust to other load on the
# machine, which requests/s on a shared 2-core box is not.
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

# name port script [connections]
#   -> "rps p50_ms p99_ms non2xx cpu_us_per_request requests"
run_wrk() {
  local connections=${4:-$CONNECTIONS} threads=$WRK_THREADS out before after
  if ((threads > connections)); then threads=$connections; fi
  before=$(cpu_ticks "${PIDS[$1]}")
  out=$("${WRK_PREFIX[@]}" wrk -t"$threads" -c"$connections" -d"$DURATION" --latency \
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
  echo "$rps $p50 $p99 ${bad:-0} $cpu $requests"
}

# RESULTS["<key>-<round>"] holds one run's figures, space-separated.
declare -A RESULTS
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
field() { # key column -> median over the rounds
  local round
  for round in $(seq "$ROUNDS"); do echo "${RESULTS["$1-$round"]}" | awk -v c="$2" '{print $c}'; done | median
}

machine_line() {
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $CPUS CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB"
}

# run_rounds SCRIPT... : ROUNDS rounds; in each, both servers up at once
# (the idle one costs nothing) and every script run on bare then service,
# interleaved so that drifting background load hits both alike. Needs
# BARE_PORT and SERVICE_PORT.
run_rounds() {
  local round script name port
  for round in $(seq "$ROUNDS"); do
    start_bare bare "$BARE_PORT"
    start_service service "$SERVICE_PORT"
    for script in "$@"; do
      for name in bare service; do
        port=$BARE_PORT
        [[ "$name" == service ]] && port=$SERVICE_PORT
        RESULTS["$name-$script-$round"]=$(run_wrk "$name" "$port" "$script")
        echo "round $round $name $script: rps p50_ms p99_ms non2xx cpu_us/req requests = ${RESULTS["$name-$script-$round"]}" >&2
      done
    done
    stop_all
  done
}

# report TITLE LABEL_FUNCTION SCRIPT... : the medians of run_rounds as a
# table, then the service/bare ratios; LABEL_FUNCTION names a script's
# endpoint ("POST /events").
report() {
  local title=$1 label=$2 script name
  shift 2
  echo
  echo "$title: wrk, $CONNECTIONS connections, $DURATION x $ROUNDS rounds (median), pinned=$PIN"
  machine_line
  echo
  echo "| endpoint | server | requests/s | p50 ms | p99 ms | non-2xx | server CPU µs/request |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
  for script in "$@"; do
    for name in bare service; do
      echo "| $($label "$script") | $name | $(field $name-$script 1) | $(field $name-$script 2) | $(field $name-$script 3) | $(field $name-$script 4) | $(field $name-$script 5) |"
    done
  done
  echo
  for script in "$@"; do
    awk -v s="$(field service-$script 1)" -v b="$(field bare-$script 1)" \
      -v sc="$(field service-$script 5)" -v bc="$(field bare-$script 5)" -v l="$($label "$script")" \
      'BEGIN { printf "%s: requests/s service/bare = %.3f; capacity (bare CPU/request over service CPU/request) = %.3f\n", l, s / b, bc / sc }'
  done
}
