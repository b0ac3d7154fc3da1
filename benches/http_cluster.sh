#!/usr/bin/env bash
# Ingest through a cluster (tracker-http --nats) against the standalone
# service in the same run, and the takeover time of a big partition.
#
# Part 1, ingest: POST /events (a new visitor per request over 1000 pages,
# as benches/http.sh) driven by wrk into, per round and in rotating order:
#   memory   the standalone service in memory;
#   cluster1 one node on a nats-server -js (file store under $WORK);
#   cluster3 three nodes on the same nats-server, wrk on the first (the
#            others own two thirds of the partitions and apply them).
# Prints requests/s, p50, p99, the receiving node's CPU per request and
# nats-server's CPU per request (the publish's cost on the server side).
#
# Part 2, takeover: one node with PAIRS (default 1000000) distinct (page,
# visitor) pairs in ONE partition (--partitions 1), sent as batches; then
# `kill -9`, and a second node started once the lease expired: the time
# from its start to /readyz (restore the snapshot + replay the rest, or
# with SNAPSHOT=off a replay of everything).
#
# Part 3, site counts: the same events (SITE_VISITORS, default 100000, on
# one page of a site, and 5000 over 50 more pages) into the standalone
# service and a one-node cluster of 64 partitions; /distinct?site= over
# all time and over the last day, 7 times each: the count, whether exact,
# the median milliseconds and the cluster's time against the standalone.
#
# Usage: benches/http_cluster.sh   (bounded: ROUNDS x 3 x (DURATION + ~3 s) + takeovers)
#   DURATION=10s CONNECTIONS=64 ROUNDS=3 PAIRS=1000000 PIN=1 benches/http_cluster.sh
#   PARTS=sites benches/http_cluster.sh   (any of ingest,takeover,sites)
# PIN as in benches/http.sh (the receiving server on CPU 1 with one tokio
# worker, wrk on CPU 0); nats-server and the other nodes are not pinned.
set -euo pipefail

PORT=${PORT:-18090}
NATS_PORT=${NATS_PORT:-14290}
PAIRS=${PAIRS:-1000000}
SITE_VISITORS=${SITE_VISITORS:-100000}
PARTS=${PARTS:-ingest,takeover,sites}
part() { [[ ",$PARTS," == *",$1,"* ]]; }
# shellcheck source=benches/http_lib.sh
source "$(dirname "$0")/http_lib.sh"

NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
[[ -x "$NATS_BIN" ]] || { echo "nats-server is missing: apt-get install -y nats-server" >&2; exit 1; }

start_nats() {
  rm -rf "$WORK/nats"
  "$NATS_BIN" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
  PIDS[nats]=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nats-server did not start" >&2
  exit 1
}
node_flags() { # id [extra...]
  local id=$1
  shift
  echo --nats "nats://127.0.0.1:$NATS_PORT" --cluster bench --node-id "$id" "$@"
}
# A node that is not the one measured: unpinned, on its own port.
start_other() { # name port
  "$SERVICE_BIN" --listen "127.0.0.1:$2" --log warn $(node_flags "$1") >"$WORK/$1.log" 2>&1 &
  PIDS[$1]=$!
}

# Nodes first (they hand their partitions over to NATS), then NATS.
stop_cluster() {
  local name
  for name in "${!PIDS[@]}"; do [[ "$name" == nats ]] || stop "$name"; done
  stop_all
}

variants=(memory cluster1 cluster3)
part ingest && for round in $(seq "$ROUNDS"); do
  for i in 0 1 2; do
    v=${variants[$(((i + round - 1) % 3))]}
    case "$v" in
      memory) start_service "$v" "$PORT" ;;
      cluster1) start_nats; start_service "$v" "$PORT" $(node_flags n1) ;;
      cluster3)
        start_nats
        start_other n2 $((PORT + 2))
        start_other n3 $((PORT + 3))
        start_service "$v" "$PORT" $(node_flags n1)
        # Wait until the partitions are shared (each node owns some).
        for _ in $(seq 100); do
          owned=$(curl -s "127.0.0.1:$PORT/readyz" | sed -n 's/.*"owned_partitions":\([0-9]*\).*/\1/p')
          [[ -n "$owned" && "$owned" -le 22 ]] && break
          sleep 0.2
        done
        ;;
    esac
    nats_before=0
    [[ -n "${PIDS[nats]:-}" ]] && nats_before=$(cpu_ticks "${PIDS[nats]}")
    result=$(run_wrk "$v" "$PORT" post)
    nats_us=-
    if [[ -n "${PIDS[nats]:-}" ]]; then
      nats_after=$(cpu_ticks "${PIDS[nats]}")
      nats_us=$(awk -v t=$((nats_after - nats_before)) -v hz="$CLK_TCK" -v n="${result##* }" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
    fi
    stop_cluster
    RESULTS["$v-$round"]="$result $nats_us"
    echo "round $round $v: rps p50_ms p99_ms non2xx cpu_us/req requests nats_cpu_us/req = ${RESULTS["$v-$round"]}" >&2
  done
done

part ingest && {
echo
echo "POST /events through a cluster: wrk, $CONNECTIONS connections, $DURATION x $ROUNDS rounds (median), pinned=$PIN"
machine_line
echo "nats-server $("$NATS_BIN" --version | awk '{print $2}'), file store on $(df -PT "$WORK" | awk 'NR == 2 {print $2}')"
echo
echo "| variant | requests/s | p50 ms | p99 ms | non-2xx | node CPU µs/request | nats-server CPU µs/request | req/s vs memory |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for v in "${variants[@]}"; do
  nats_col=-
  [[ "$v" != memory ]] && nats_col=$(field "$v" 7)
  echo "| $v | $(field "$v" 1) | $(field "$v" 2) | $(field "$v" 3) | $(field "$v" 4) | $(field "$v" 5) | $nats_col" \
    "| $(awk -v a="$(field "$v" 1)" -v b="$(field memory 1)" 'BEGIN { printf "%.3f", a / b }') |"
done
}

# Part 2: takeover of one partition of PAIRS pairs.
cat >"$WORK/fill.py" <<'PY'
import json, sys, urllib.request
port, pairs = int(sys.argv[1]), int(sys.argv[2])
batch = 10000
for start in range(0, pairs, batch):
    body = "\n".join(
        json.dumps({"visitor": f"visitor-{i}", "url": f"https://example.com/page/{i % 1000}"})
        for i in range(start, min(start + batch, pairs)))
    req = urllib.request.Request(f"http://127.0.0.1:{port}/events/batch", body.encode(),
                                 {"content-type": "application/x-ndjson"})
    reply = json.load(urllib.request.urlopen(req, timeout=120))
    assert reply["accepted"] == min(batch, pairs - start), reply
PY
takeover() { # snapshot-every -> seconds from the new node's start to ready
  start_nats
  start_service old "$PORT" $(node_flags old --partitions 1 --lease-ttl 2s --partition-snapshot-every "$1" --batch-limit 10000)
  python3 "$WORK/fill.py" "$PORT" "$PAIRS"
  # Until the owner applied everything (and, with snapshots, wrote one).
  for _ in $(seq 600); do
    [[ "$(curl -s "127.0.0.1:$PORT/stats" | sed -n 's/.*"pairs":\([0-9]*\).*/\1/p')" == "$PAIRS" ]] && break
    sleep 0.2
  done
  [[ "$1" != 1h ]] && sleep 3 # a snapshot interval after the last event
  kill -9 "${PIDS[old]}"; wait "${PIDS[old]}" 2>/dev/null || true; unset "PIDS[old]"
  sleep 3 # the lease TTL
  local t0 t1
  t0=$(date +%s.%N)
  start_service new $((PORT + 5)) $(node_flags new --partitions 1 --lease-ttl 2s)
  for _ in $(seq 3000); do
    curl -fs "127.0.0.1:$((PORT + 5))/readyz" | grep -q '"owned_partitions":1' && break
    sleep 0.02
  done
  t1=$(date +%s.%N)
  local got
  got=$(curl -s "127.0.0.1:$((PORT + 5))/stats" | sed -n 's/.*"pairs":\([0-9]*\).*/\1/p')
  [[ "$got" == "$PAIRS" ]] || { echo "takeover: $got pairs, expected $PAIRS" >&2; exit 1; }
  stop_cluster
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
part takeover && {
echo
echo "Takeover of one partition of $PAIRS pairs (kill -9 of its owner; a new node's start to /readyz):"
echo
echo "| state | seconds |"
echo "| --- | ---: |"
echo "| snapshot (every 1s) + replay of the tail | $(takeover 1s) |"
echo "| replay of the whole stream (no snapshot) | $(takeover 1h) |"
}

# Part 3: a site's count, cluster against one node.
cat >"$WORK/site.py" <<'PY'
import json, sys, time, urllib.request
port, visitors, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
def get(path):
    return json.load(urllib.request.urlopen(base + path, timeout=120))
if mode == "fill":
    def send(events):
        req = urllib.request.Request(base + "/events/batch", json.dumps(events).encode(),
                                     {"content-type": "application/json"})
        assert json.load(urllib.request.urlopen(req, timeout=120))["accepted"] == len(events)
    for start in range(0, visitors, 10000):
        send([{"visitor": f"v{i}", "url": "https://big.test/"}
              for i in range(start, min(start + 10000, visitors))])
    send([{"visitor": f"w{i}", "url": f"https://big.test/p{i % 50}"} for i in range(5000)])
    for _ in range(1200):
        if get("/distinct?url=https://big.test/")["distinct_visitors"] == visitors:
            break
        time.sleep(0.1)
else:
    for path in ["/distinct?site=big.test", "/distinct?site=big.test&from=-1d"]:
        times = []
        for _ in range(7):
            t = time.perf_counter()
            answer = get(path)
            times.append((time.perf_counter() - t) * 1000)
        print(path, answer["distinct_visitors"], answer["exact"], f"{sorted(times)[3]:.1f}")
PY
site_counts() { # variant -> lines "path count exact ms"
  case "$1" in
    memory) start_service "$1" "$PORT" ;;
    cluster) start_nats; start_service "$1" "$PORT" $(node_flags n1 --partitions 64) ;;
  esac
  python3 "$WORK/site.py" "$PORT" "$SITE_VISITORS" fill
  python3 "$WORK/site.py" "$PORT" "$SITE_VISITORS" time
  stop_cluster
}
if part sites; then
  memory=$(site_counts memory)
  cluster=$(site_counts cluster)
  echo
  echo "A site's count: $SITE_VISITORS visitors on one page and 5000 on 50 more, 7 asks each (median):"
  echo
  echo "| query | one node | exact | ms | cluster (64 partitions) | exact | ms | cluster ms vs one node |"
  echo "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: |"
  paste -d ' ' <(echo "$memory") <(echo "$cluster") |
    awk '{ printf "| `%s` | %s | %s | %s | %s | %s | %s | %.1fx |\n", $1, $2, $3, $4, $6, $7, $8, $8 / $4 }'
fi
