#!/usr/bin/env bash
# Instructions per request of the whole server (socket reads and writes,
# hyper, the connection layer, middleware, handler, tracker), the service
# against the bare axum handler: deterministic, unlike the load benches on
# a shared machine. Each server runs under callgrind with one tokio worker
# and instrumentation off; a keep-alive client sends N1 and then (in a
# second run) N2 requests over 4 connections with instrumentation on, and
# the difference over N2 - N1 is one request's cost, start-up and
# connection set-up cancelled out. Kernel time is not counted: both
# servers make one read and one write per request (strace -c; the
# service's write is a `sendto`, the bare handler's a `writev`).
#
# Usage: benches/http_instructions.sh [KIND...]   KIND: events plausible count distinct
#   N1=500 N2=2500 SERVICE_BIN=... BARE_BIN=... (defaults: this checkout's release builds)
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-500}
N2=${N2:-2500}
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
CONNS = 4
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
for start in range(0, n, CONNS):
    batch = range(min(CONNS, n - start))
    for k in batch:
        socks[k].sendall(req(start + k))
    for k in batch:
        answer(k)
PY

# run BIN-ARGS... -- KIND N: instructions while N requests are served.
run() {
  local kind=$1 n=$2 port=$((19000 + RANDOM % 1000)) pid total
  shift 2
  TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$WORK/cg.%p" "$@" "127.0.0.1:$port" >"$WORK/log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  python3 "$WORK/client.py" "$kind" "$port" 8 # warm up: first-use paths
  callgrind_control -i on "$pid" >/dev/null 2>&1
  python3 "$WORK/client.py" "$kind" "$port" "$n"
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  total=$(cat "$WORK"/cg.* | awk '/^(summary|totals):/ {s += $2} END {print s}')
  rm -f "$WORK"/cg.*
  echo "$total"
}

echo "| request | bare axum | service | bare / service |"
echo "| --- | ---: | ---: | ---: |"
for kind in "${KINDS[@]}"; do
  declare -A per
  for name in bare service; do
    if [[ $name == bare ]]; then cmd=("$BARE_BIN"); else cmd=("$SERVICE_BIN" --log warn --listen); fi
    a=$(run "$kind" "$N1" "${cmd[@]}")
    b=$(run "$kind" "$N2" "${cmd[@]}")
    per[$name]=$(((b - a) / (N2 - N1)))
  done
  echo "| $kind | ${per[bare]} | ${per[service]} | $(awk -v b="${per[bare]}" -v s="${per[service]}" 'BEGIN {printf "%.3f", b / s}') |"
done
