#!/usr/bin/env bash
# Ingest over HTTP with durability: POST /events into tracker-http in
# memory, with --data-dir under each --fsync policy, and into the bare axum
# baseline, driven by wrk (same requests as benches/http.sh: a new visitor
# per request over 1000 pages, so every request appends to the log).
#
# Each run starts its server afresh (a durable one on a new, empty data
# directory on the disk of $TMPDIR, or DATA_ROOT), waits for /readyz, loads
# it for DURATION, then stops it and deletes the directory. Every round
# runs every variant once, the order rotated by one each round, so that
# drifting background load hits all alike. Prints per variant the medians
# over the rounds of requests/s, p50, p99, server CPU per request, log
# bytes per event (growth of tracker_log_end_bytes over wrk's request
# count), events per flush of the data directory's disk (/proc/diskstats;
# the whole device, so other processes' flushes count too), the ratio of
# requests/s to the in-memory service and to bare at the same number of
# connections, and capacity: the in-memory service's CPU per request over
# the variant's (robust to a load generator starved by other processes).
#
# Usage: benches/http_durable.sh    (bounded: ROUNDS x variants x (DURATION + ~1 s))
#   DURATION=10s CONNECTIONS=64 LOW_CONNECTIONS="1 8" ROUNDS=3 PIN=1 benches/http_durable.sh
# Variants are KIND@CONNECTIONS with KIND one of bare, memory, off,
# interval-<duration> (--fsync interval --fsync-interval <duration>) or
# always, or before-<variant> for that variant run on the binary BEFORE_BIN
# (e.g. tracker-http built from main: before and after in one run). The default list is VARIANTS="bare@64 memory@64 off@64
# interval-100ms@64 interval-10ms@64 always@64" followed by memory@N and
# always@N for each N in LOW_CONNECTIONS (group commit shares one fsync
# among concurrent requests, so `always` depends on concurrency).
# PIN as in benches/http.sh (server on CPU 1 with one tokio worker, wrk
# on CPU 0).
set -euo pipefail

PORT=${PORT:-18082}
LOW_CONNECTIONS=${LOW_CONNECTIONS-1 8}
# shellcheck source=benches/http_lib.sh
source "$(dirname "$0")/http_lib.sh"

if [[ -z "${VARIANTS:-}" ]]; then
  VARIANTS="bare@$CONNECTIONS memory@$CONNECTIONS off@$CONNECTIONS"
  VARIANTS+=" interval-100ms@$CONNECTIONS interval-10ms@$CONNECTIONS always@$CONNECTIONS"
  for c in $LOW_CONNECTIONS; do VARIANTS+=" memory@$c always@$c"; done
fi
read -r -a VARIANT_LIST <<<"$VARIANTS"

DATA_ROOT=${DATA_ROOT:-$WORK}
mkdir -p "$DATA_ROOT"
DATA_FS=$(df -PT "$DATA_ROOT" | awk 'NR == 2 {print $2 " on " $1}')
if [[ "$DATA_FS" == tmpfs* ]]; then
  echo "warning: $DATA_ROOT is on tmpfs, where fsync costs nothing; set TMPDIR or DATA_ROOT to a real disk" >&2
fi
# The whole disk under the data directories, for its flush count.
DISK=$(basename "$(df -P "$DATA_ROOT" | awk 'NR == 2 {print $1}')")
if [[ -e "/sys/class/block/$DISK/partition" ]]; then
  DISK=$(basename "$(readlink -f "/sys/class/block/$DISK/..")")
fi
# Flush requests the disk completed (the 16th statistic in /proc/diskstats,
# kernels 5.5 and later); empty if unknown.
disk_flushes() { awk -v d="$DISK" '$3 == d && NF >= 19 {print $19}' /proc/diskstats; }
log_end() { # the service's tracker_log_end_bytes, empty in memory
  curl -sS "http://127.0.0.1:$PORT/metrics" | awk '$1 == "tracker_log_end_bytes" {print $2}'
}

start_variant() { # variant data-dir [name to start it under]
  local kind=${1%@*} name=${3:-$1}
  case "$kind" in
    bare) start_bare "$name" "$PORT" ;;
    memory) start_service "$name" "$PORT" ;;
    off | always) start_service "$name" "$PORT" --data-dir "$2" --fsync "$kind" ;;
    interval-*) start_service "$name" "$PORT" --data-dir "$2" --fsync interval --fsync-interval "${kind#interval-}" ;;
    before-*)
      # The same variant on BEFORE_BIN: a before/after comparison in one run.
      [[ -x "${BEFORE_BIN:-}" ]] || { echo "$1 needs BEFORE_BIN, a tracker-http binary" >&2; exit 2; }
      local rest=${1#before-}
      SERVICE_BIN=$BEFORE_BIN start_variant "$rest" "$2" "$name"
      ;;
    *)
      echo "unknown variant $1 (kinds: bare memory off interval-<duration> always)" >&2
      exit 2
      ;;
  esac
}

count=${#VARIANT_LIST[@]}
for round in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((count - 1))); do
    v=${VARIANT_LIST[$(((i + round - 1) % count))]}
    dir="$DATA_ROOT/data-$v-$round"
    start_variant "$v" "$dir"
    log_before=$(log_end)
    flushes_before=$(disk_flushes)
    result=$(run_wrk "$v" "$PORT" post "${v#*@}")
    flushes_after=$(disk_flushes)
    log_after=$(log_end)
    stop "$v"
    rm -rf "$dir"
    requests=${result##* }
    per_event=$(awk -v a="$log_before" -v b="$log_after" -v n="$requests" \
      'BEGIN { if (a == "" || n == 0) print "-"; else printf "%.1f", (b - a) / n }')
    # Without a data directory the flushes are other processes': no figure.
    per_flush=$(awk -v a="$flushes_before" -v b="$flushes_after" -v n="$requests" -v logged="$log_before" \
      'BEGIN { if (a == "" || logged == "" || b == a) print "-"; else printf "%.1f", n / (b - a) }')
    RESULTS["$v-$round"]="$result $per_event $per_flush"
    echo "round $round $v: rps p50_ms p99_ms non2xx cpu_us/req requests log_B/event events/flush = ${RESULTS["$v-$round"]}" >&2
  done
done

# The median of a column that may hold "-" (no figure): "-" if any run had none.
figure() { # key column
  local round
  for round in $(seq "$ROUNDS"); do
    [[ "$(echo "${RESULTS["$1-$round"]}" | awk -v c="$2" '{print $c}')" == - ]] && { echo -; return; }
  done
  field "$1" "$2"
}
ratio() { # variant baseline-kind -> requests/s of the variant over the baseline's at its connections
  local base="$2@${1#*@}"
  if [[ -z "${RESULTS["$base-1"]:-}" ]]; then echo -; return; fi
  awk -v a="$(field "$1" 1)" -v b="$(field "$base" 1)" 'BEGIN { printf "%.3f", a / b }'
}
capacity() { # variant -> in memory's CPU per request over the variant's, at its connections
  local base="memory@${1#*@}"
  if [[ -z "${RESULTS["$base-1"]:-}" ]]; then echo -; return; fi
  awk -v a="$(field "$1" 5)" -v b="$(field "$base" 5)" 'BEGIN { printf "%.3f", b / a }'
}

echo
echo "POST /events with durability: wrk, $DURATION x $ROUNDS rounds (median), pinned=$PIN"
machine_line
echo "data directories: $DATA_FS ($DATA_ROOT); events/flush counts the flushes of /dev/$DISK"
echo
echo "| variant | connections | requests/s | p50 ms | p99 ms | non-2xx | server CPU µs/request | log B/event | events/disk flush | req/s vs memory | req/s vs bare | capacity vs memory |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for v in "${VARIANT_LIST[@]}"; do
  echo "| ${v%@*} | ${v#*@} | $(field "$v" 1) | $(field "$v" 2) | $(field "$v" 3) | $(field "$v" 4) | $(field "$v" 5)" \
    "| $(figure "$v" 7) | $(figure "$v" 8) | $(ratio "$v" memory) | $(ratio "$v" bare) | $(capacity "$v") |"
done
echo
if [[ -n "${RESULTS["always@$CONNECTIONS-1"]:-}" && -n "${RESULTS["memory@$CONNECTIONS-1"]:-}" ]]; then
  echo "group commit target (SPEC): always@$CONNECTIONS at least 0.5x memory@$CONNECTIONS in requests/s:" \
    "$(ratio "always@$CONNECTIONS" memory)x, capacity $(capacity "always@$CONNECTIONS")x"
  echo
fi
echo "capacity vs memory: the in-memory service's CPU per request over the variant's (what"
echo "requests/s would be relative to memory if the server's core were the bottleneck)."
