#!/usr/bin/env bash
# Run: bash examples/cluster.sh
#
# A three-node cluster on one machine: one nats-server with JetStream
# (apt-get install -y nats-server) and three tracker-http nodes on ports
# 8081-8083, sharing 64 partitions. Events sent to any node are counted
# once; any node answers any query. Ctrl-C stops everything (the nodes
# hand their partitions over first). Data lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nats-server >/dev/null || [[ -x /usr/sbin/nats-server ]] || {
  echo "nats-server is missing: apt-get install -y nats-server" >&2
  exit 1
}
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
cargo build --release -p tracker-http
dir=$(mktemp -d)
pids=()
cleanup() {
  # Nodes first (SIGTERM: they snapshot and release their leases), then NATS.
  for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; done
  wait "${pids[@]:1}" 2>/dev/null || true
  kill "${pids[0]}" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$NATS" -js -a 127.0.0.1 -p 4222 -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
pids+=($!)
for i in 1 2 3; do
  target/release/tracker-http --listen "127.0.0.1:808$i" \
    --nats nats://127.0.0.1:4222 --cluster demo --node-id "node$i" \
    >"$dir/node$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do
    curl -sf "localhost:808$i/readyz" >/dev/null && break
    sleep 0.1
  done
done
# Every partition owned (the leases settle within a few lease rounds):
# /stats answers once every partition's owner does.
for _ in $(seq 200); do
  curl -sf localhost:8081/stats >/dev/null && break
  sleep 0.1
done
echo "nodes ready: http://127.0.0.1:8081 .. :8083 (logs in $dir)"

for i in 1 2 3; do
  curl -s -X POST "localhost:808$i/events" -H 'content-type: application/json' \
    -d "{\"visitor\": \"v-$i\", \"url\": \"https://example.com/pricing\"}"
done
curl -s 'localhost:8082/distinct?url=https://example.com/pricing'; echo
curl -s 'localhost:8083/distinct?site=example.com'; echo
echo "Ctrl-C to stop"
wait "${pids[0]}"
