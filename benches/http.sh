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

label() { if [[ "$1" == post ]]; then echo "POST /events"; else echo "GET /distinct"; fi; }
run_rounds post get
report "tracker-http vs bare axum" label post get
