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
# The service runs in memory here; benches/http_durable.sh measures ingest
# with --data-dir under each fsync policy. Both share benches/http_lib.sh.
set -euo pipefail

SERVICE_PORT=${SERVICE_PORT:-18080}
BARE_PORT=${BARE_PORT:-18081}
# shellcheck source=benches/http_lib.sh
source "$(dirname "$0")/http_lib.sh"

for round in $(seq "$ROUNDS"); do
  # Both servers up at once (the idle one costs nothing), runs interleaved
  # so that drifting background load hits both alike.
  start_bare bare "$BARE_PORT"
  start_service service "$SERVICE_PORT"
  for script in post get; do
    for name in bare service; do
      port=$BARE_PORT
      [[ "$name" == service ]] && port=$SERVICE_PORT
      result=$(run_wrk "$name" "$port" "$script")
      RESULTS["$name-$script-$round"]="$result"
      echo "round $round $name $script: rps p50_ms p99_ms non2xx cpu_us/req requests = $result" >&2
    done
  done
  stop_all
done

echo
echo "tracker-http vs bare axum: wrk, $CONNECTIONS connections, $DURATION x $ROUNDS rounds (median), pinned=$PIN"
machine_line
echo
echo "| endpoint | server | requests/s | p50 ms | p99 ms | non-2xx | server CPU µs/request |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for script in post get; do
  label="POST /events"
  [[ "$script" == get ]] && label="GET /distinct"
  for name in bare service; do
    echo "| $label | $name | $(field $name-$script 1) | $(field $name-$script 2) | $(field $name-$script 3) | $(field $name-$script 4) | $(field $name-$script 5) |"
  done
done
echo
for script in post get; do
  label="POST /events"
  [[ "$script" == get ]] && label="GET /distinct"
  awk -v s="$(field service-$script 1)" -v b="$(field bare-$script 1)" \
    -v sc="$(field service-$script 5)" -v bc="$(field bare-$script 5)" -v l="$label" \
    'BEGIN { printf "%s: requests/s service/bare = %.3f; capacity (bare CPU/request over service CPU/request) = %.3f\n", l, s / b, bc / sc }'
done
