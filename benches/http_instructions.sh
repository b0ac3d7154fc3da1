#!/usr/bin/env bash
# Instructions per request of the whole server (socket reads and writes,
# hyper, the connection layer, middleware, handler, tracker), the service
# against the bare axum handler: deterministic, unlike the load benches on
# a shared machine. Each server runs under callgrind with one tokio worker
# and instrumentation off; a keep-alive client sends N1 and then (on new
# connections to the same server, counted apart) N2 requests over 4
# connections with instrumentation on, and the difference over N2 - N1 is
# one request's cost, start-up and connection set-up cancelled out. Kernel time is not counted: both
# servers make one read and one write per request (strace -c; the
# service's write is a `sendto`, the bare handler's a `writev`).
#
# With CACHE=1 callgrind also simulates the caches (a 2 MiB, 16-way last
# level: this VM's per-core L2) and the table gives first-level data
# misses (D1, reads and writes) and last-level data misses (LL) per
# request beside the instructions; the client then keeps 64 connections
# (as the load benches) and sends one request at a time, so that the
# counts repeat from run to run. Prefetches are not simulated, and
# neither is the kernel's share of the caches; what it counts is the
# lines a request touches that were not cached. Before measuring, WARMUP
# requests (default 8; 20,000 with CACHE=1, so that the pages' visitor
# tables are no longer tiny) are sent with instrumentation off.
# KEEP=DIR keeps each server's callgrind files of the N1 and N2 runs
# there (DIR/KIND.NAME.n1, .n2: callgrind_annotate for the functions).
# WARMUP_KIND=events warms every server with that kind of request instead
# of the measured one: `distinct` then counts lookups of the 1,000 pages
# the events created (as in benches/http.sh), not of unknown pages.
#
# Usage: benches/http_instructions.sh [KIND...]   KIND: events plausible count distinct
#   N1=500 N2=2500 CACHE=0 WARMUP=8 WARMUP_KIND= KEEP= SERVICE_BIN=... BARE_BIN=... (defaults: this checkout's release builds)
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-500}
N2=${N2:-2500}
CACHE=${CACHE:-0}
if [[ $CACHE == 1 ]]; then
  WARMUP=${WARMUP:-20000}
  SIM=(--cache-sim=yes --LL=2097152,16,64)
  export CONNS=64 ONE_AT_A_TIME=1
else
  WARMUP=${WARMUP:-8}
  SIM=()
fi
KINDS=("$@")
((${#KINDS[@]})) || KINDS=(events plausible count)
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
if [[ -z "${SERVICE_BIN:-}" || -z "${BARE_BIN:-}" ]]; then
  cargo build --release -q -p tracker-http --bin tracker-http --example bare
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
SERVICE_BIN=${SERVICE_BIN:-$TARGET_DIR/release/tracker-http}
BARE_BIN=${BARE_BIN:-$TARGET_DIR/release/examples/bare}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The requests of benches/http.sh and http_browsers.sh: a new visitor or
# user agent per request, pages over 1000.
cat >"$WORK/client.py" <<'PY'
import socket, sys
kind, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
first = int(sys.argv[4]) if len(sys.argv) > 4 else 0 # of the visitors and user agents
import os
# With CACHE=1, 64 connections (as the load benches) and one request at a
# time, so that every run serves the same requests in the same order, one
# per wake-up: the cache counts then repeat from run to run.
CONNS = int(os.environ.get("CONNS", "4"))
ONE_AT_A_TIME = os.environ.get("ONE_AT_A_TIME") == "1"
def req(i):
    host = f"Host: 127.0.0.1:{port}\r\n"
    ua = f"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.{i}\r\n"
    if kind == "events":
        body = f'{{"visitor":"visitor-{i}","url":"https://example.com/page/{i % 1000}"}}'
        head = f"POST /events HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
    elif kind == "plausible":
        body = f'{{"n":"pageview","u":"https://example.com/page/{i % 1000}","d":"example.com","r":null,"v":36}}'
        head = f"POST /api/event HTTP/1.1\r\n{host}Content-Type: text/plain\r\n{ua}"
    elif kind == "count":
        return f"GET /count?p=%2Fpage%2F{i % 1000}&t=Page&rnd={i} HTTP/1.1\r\n{host}{ua}Referer: https://example.com/\r\n\r\n".encode()
    elif kind == "distinct":
        return f"GET /distinct?url=https%3A%2F%2Fexample.com%2Fpage%2F{i % 1000} HTTP/1.1\r\n{host}\r\n".encode()
    else:
        raise SystemExit(f"unknown kind {kind}")
    return f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode()
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNS)]
bufs = [b""] * CONNS
def answer(k):
    while True:
        end = bufs[k].find(b"\r\n\r\n")
        if end >= 0:
            head = bufs[k][:end].decode()
            length = next((int(l.split(":", 1)[1]) for l in head.split("\r\n")[1:]
                           if l.lower().startswith("content-length:")), 0)
            if len(bufs[k]) >= end + 4 + length:
                if int(head.split(" ", 2)[1]) >= 300:
                    raise SystemExit(f"unexpected answer: {head}")
                bufs[k] = bufs[k][end + 4 + length:]
                return
        chunk = socks[k].recv(65536)
        if not chunk:
            raise SystemExit("connection closed")
        bufs[k] += chunk
if ONE_AT_A_TIME:
    for i in range(n):
        socks[i % CONNS].sendall(req(first + i))
        answer(i % CONNS)
    raise SystemExit(0)
for start in range(0, n, CONNS):
    batch = range(min(CONNS, n - start))
    for k in batch:
        socks[k].sendall(req(first + start + k))
    for k in batch:
        answer(k)
PY

# run KIND NAME BIN-ARGS...: after WARMUP requests, N1 and then N2
# requests with instrumentation on, each run's counters dumped on its
# own; prints the event names, then each run's totals.
run() {
  local kind=$1 name=$2 port=$((19000 + RANDOM % 1000)) pid n file
  shift 2
  TOKIO_WORKER_THREADS=1 setarch "$(uname -m)" -R valgrind --tool=callgrind --instr-atstart=no "${SIM[@]}" \
    --callgrind-out-file="$WORK/cg.out" "$@" "127.0.0.1:$port" >"$WORK/log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  python3 "$WORK/client.py" "${WARMUP_KIND:-$kind}" "$port" "$WARMUP" # first-use paths, tables grown
  n=$WARMUP
  for count in "$N1" "$N2"; do
    callgrind_control -i on "$pid" >/dev/null 2>&1
    python3 "$WORK/client.py" "$kind" "$port" "$count" "$n"
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    n=$((n + count))
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  sed -n 's/^events: //p' "$(ls "$WORK"/cg.out.* | head -1)" | head -1
  for file in $(ls "$WORK"/cg.out.* | sort -t. -k3 -n); do
    awk '/^(summary|totals):/ {for (i = 2; i <= NF; i++) s[i] += $i; n = NF}
      END {for (i = 2; i <= n; i++) printf "%s ", s[i]; print ""}' "$file"
  done | head -2
  if [[ -n ${KEEP:-} ]]; then
    mkdir -p "$KEEP"
    cp "$WORK/cg.out.1" "$KEEP/$kind.$name.n1"
    cp "$WORK/cg.out.2" "$KEEP/$kind.$name.n2"
  fi
  rm -f "$WORK"/cg.out*
}

# per OUTPUT EVENT...: per request, from run's OUTPUT, of the sum of EVENTs.
per() {
  awk -v list="${*:2}" -v n="$((N2 - N1))" 'NR == 1 {for (i = 1; i <= NF; i++) col[$i] = i; next}
    {k = split(list, want, " "); t = 0; for (j = 1; j <= k; j++) t += $(col[want[j]]); v[NR] = t}
    END {printf "%d", (v[3] - v[2]) / n}' <<<"$1"
}

if [[ $CACHE == 1 ]]; then
  echo "| request | bare Ir | service Ir | bare D1 misses | service D1 misses | bare LL misses | service LL misses |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
else
  echo "| request | bare axum | service | bare / service |"
  echo "| --- | ---: | ---: | ---: |"
fi
for kind in "${KINDS[@]}"; do
  declare -A out
  for name in bare service; do
    if [[ $name == bare ]]; then cmd=("$BARE_BIN"); else cmd=("$SERVICE_BIN" --log warn --listen); fi
    out[$name]=$(run "$kind" "$name" "${cmd[@]}")
  done
  b=$(per "${out[bare]}" Ir)
  s=$(per "${out[service]}" Ir)
  if [[ $CACHE == 1 ]]; then
    echo "| $kind | $b | $s | $(per "${out[bare]}" D1mr D1mw) | $(per "${out[service]}" D1mr D1mw)" \
      "| $(per "${out[bare]}" DLmr DLmw) | $(per "${out[service]}" DLmr DLmw) |"
  else
    echo "| $kind | $b | $s | $(awk -v b="$b" -v s="$s" 'BEGIN {printf "%.3f", b / s}') |"
  fi
done
