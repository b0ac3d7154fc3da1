#!/usr/bin/env bash
# Events per second on one core: POST /events/batch and GET /events/ws
# against Redis PFADD pipelined 32 deep (redis-benchmark), in the same run.
#
# Sharing benches/http_lib.sh (pinning, wrk, medians over rounds). In each
# round, one after the other, with the server on CPU 1 (one tokio worker)
# and the load generator on CPU 0:
#   batch  wrk POSTs NDJSON bodies of BATCH events (a new visitor id per
#          event, pages rotating over 1000) to tracker-http in memory;
#          events/s = requests/s x BATCH (every 202 checked: accepted = BATCH)
#   ws     tracker-http/examples/ws_load.rs: WS_CONNECTIONS WebSockets
#          (?ack=true) each sending arrays of BATCH events and waiting for
#          each acknowledgement; events/s = acknowledged events / time
#   redis  redis-server (no persistence), redis-benchmark -P 32 -c 50 of
#          PFADD page:<rand> <rand>: one event per command; events/s =
#          requests/s. Redis is installed from Debian's packages if missing
#          (apt-get install -y redis-server; it brings redis-benchmark).
# Prints the medians and batch/redis, ws/redis.
#
# Usage: benches/http_batch.sh     (bounded: ROUNDS x 3 x (DURATION + ~1 s))
#   DURATION=10s ROUNDS=3 BATCH=1000 CONNECTIONS=64 WS_CONNECTIONS=8 PIN=1 benches/http_batch.sh
set -euo pipefail

SERVICE_PORT=${SERVICE_PORT:-18084}
REDIS_PORT=${REDIS_PORT:-18085}
BARE_PORT=${BARE_PORT:-18086}
BATCH=${BATCH:-1000}
WS_CONNECTIONS=${WS_CONNECTIONS:-8}
REDIS_REQUESTS=${REDIS_REQUESTS:-100000000}
# shellcheck source=benches/http_lib.sh
source "$(dirname "$0")/http_lib.sh"

cargo build --release -q -p tracker-http --example ws_load
WS_BIN="$TARGET_DIR/release/examples/ws_load"

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "redis-server not found; installing it from Debian's packages" >&2
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y redis-server >/dev/null 2>&1 ||
    { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y redis-server >/dev/null; }
fi

cat >"$WORK/batch.lua" <<LUA
-- NDJSON bodies of $BATCH events, a new visitor per event.
local n = 0
local batch = $BATCH
local lines = {}
request = function()
  for i = 1, batch do
    n = n + 1
    lines[i] = string.format('{"visitor":"b-%d","url":"https://example.com/page/%d"}', n, n % 1000)
  end
  return wrk.format("POST", "/events/batch", { ["Content-Type"] = "application/x-ndjson" }, table.concat(lines, "\n"))
end
local bad = 0
response = function(status, headers, body)
  if status ~= 202 or not body:find('"accepted":' .. batch, 1, true) then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("batch replies not accepting all %d events: %d\n", batch, bad))
end
LUA

seconds() { awk -v d="$DURATION" 'BEGIN { if (d ~ /ms$/) print d / 1000; else if (d ~ /m$/) print d * 60; else print d + 0 }'; }

run_redis() { # -> events/s
  "${SERVER_PREFIX[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no >"$WORK/redis.log" 2>&1 &
  PIDS[redis]=$!
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  # redis-benchmark runs until REDIS_REQUESTS; timeout bounds it to DURATION.
  # Its last progress line is "PFADD ...: rps=R (overall: N) avg_msec=...":
  # N is the requests/s since the start.
  local out
  out=$(timeout --signal=INT "$(seconds)" "${WRK_PREFIX[@]}" redis-benchmark -p "$REDIS_PORT" -P 32 -c 50 \
    -n "$REDIS_REQUESTS" -r 1000000 PFADD "page:__rand_int__" "visitor:__rand_int__" 2>&1 || true)
  stop redis
  echo "$out" | tr '\r' '\n' | sed -n 's/.* rps=[0-9.]* (overall: \([0-9.]*\)).*/\1/p' | tail -1
}

declare -A EVENTS
for round in $(seq "$ROUNDS"); do
  start_service service "$SERVICE_PORT"
  result=$(run_wrk service "$SERVICE_PORT" batch)
  grep -h "not accepting" "$WORK/wrk-service-batch.txt" | tail -1 >&2
  EVENTS["batch-$round"]=$(awk -v r="${result%% *}" -v b="$BATCH" 'BEGIN { printf "%.0f", r * b }')
  stop service

  start_service service "$SERVICE_PORT"
  ws=$("${WRK_PREFIX[@]}" "$WS_BIN" "ws://127.0.0.1:$SERVICE_PORT/events/ws" "$WS_CONNECTIONS" "$BATCH" "$(seconds)")
  EVENTS["ws-$round"]=${ws%% *}
  stop service

  EVENTS["redis-$round"]=$(run_redis)
  echo "round $round events/s: batch ${EVENTS["batch-$round"]} ws ${EVENTS["ws-$round"]} redis ${EVENTS["redis-$round"]}" >&2
done

events() { # kind -> median over the rounds
  local round
  for round in $(seq "$ROUNDS"); do echo "${EVENTS["$1-$round"]}"; done | median
}
spread() { # kind -> "min-max"
  local round
  for round in $(seq "$ROUNDS"); do echo "${EVENTS["$1-$round"]}"; done | sort -g | awk 'NR == 1 {a = $1} {b = $1} END {print a "–" b}'
}

echo
echo "Events/s on one core: $DURATION x $ROUNDS rounds (median), pinned=$PIN, batches of $BATCH events"
machine_line
echo "redis: $(redis-server --version | awk '{print $3}'), redis-benchmark -P 32 -c 50 PFADD"
echo
echo "| sender | events/s (median) | spread over rounds | vs Redis PFADD -P 32 |"
echo "| --- | ---: | ---: | ---: |"
redis=$(events redis)
for kind in batch ws redis; do
  case "$kind" in
    batch) label="POST /events/batch (NDJSON, $BATCH per request, $CONNECTIONS connections)" ;;
    ws) label="GET /events/ws ($BATCH per message, ack, $WS_CONNECTIONS connections)" ;;
    redis) label="Redis PFADD, pipelined 32 deep" ;;
  esac
  echo "| $label | $(events "$kind") | $(spread "$kind") | $(awk -v a="$(events "$kind")" -v b="$redis" 'BEGIN { printf "%.2f", a / b }') |"
done
