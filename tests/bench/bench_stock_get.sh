#!/usr/bin/env bash
# bench_stock_get.sh BUILD_DIR [OTHER_TALLYD] [SECONDS]
#
# stock.get over the socket beside Redis GET of a value of the same size, in one run: a replica
# of 10,000 SKUs x 4 warehouses (tests/gen/tally-gen, imported), tallyd from BUILD_DIR (and,
# when given, another tallyd binary on a copy of the same replica: an old build to compare),
# redis-server on a Unix socket. Each figure is measured 3 times, alternating, and the median
# printed, as lines `name value`:
#   stock_get_c50_rps, stock_get_c1_p50_us, [old_stock_get_c50_rps, old_stock_get_c1_p50_us,]
#   redis_get_c50_rps, redis_get_c1_p50_us, stock_get_bytes (the whole response frame),
#   tallyd_cpu_us_per_req (tallyd's user+system CPU time per request at c=50: the figure that
#   depends least on what else the machine is doing).
# Not a test: figures depend on the machine and its load (printed first).
set -euo pipefail
build=$(cd "$1" && pwd)
other=${2:-}
secs=${3:-3}
tmp=$(mktemp -d /tmp/bench-stock-get.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
echo "load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

"$build/tests/tally-gen" --out "$tmp/data" --skus 10000 --warehouses 4 --orders 400 --seed 11 >/dev/null
start() { # BIN DIR
    "$1" --state-dir "$2" --socket "$2.sock" --station BENCH >"$2.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do "$build/tally" --socket "$2.sock" status >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "tallyd did not start ($2.log)" >&2
    exit 1
}
seed() { # SOCK: the same rows into each daemon (each makes its replica in its own schema)
    for k in warehouses catalog stock orders; do
        "$build/tally" --socket "$1" import "$k" "$tmp/data/$k.csv" >/dev/null
    done
}
start "$build/tallyd" "$tmp/new"
seed "$tmp/new.sock"
sku=$(sed -n 2p "$tmp/data/catalog.csv" | cut -d, -f1)
if [ -n "$other" ]; then
    start "$other" "$tmp/old"
    seed "$tmp/old.sock"
fi
# The size of stock.get's answer: its JSON is not its size; the bench client reads the frames.
bytes=$(python3 - "$tmp/new.sock" "$sku" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
sku = sys.argv[2].encode()
req = bytes([0x94, 0, 1, 0xa9]) + b"stock.get" + bytes([0x91, 0x81, 0xa3]) + b"sku" + bytes([0xa0 | len(sku)]) + sku
s.sendall(req)
import time; time.sleep(0.2)
print(len(s.recv(65536)))
PY
)
redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$tmp/redis.sock" ] && break; sleep 0.05; done

median() { sort -n | sed -n 2p; }
rps() { sed -E 's/.* ([0-9]+) req\/s.*/\1/'; }
p50() { sed -E 's/.*p50 ([0-9]+) .*/\1/'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run_tally() { # SOCK C -> the bench_rpc line
    "$build/tests/bench_rpc" "$1" -c "$2" -d "$secs" -k "$sku"
}
declare -A out
tpid=${pids[0]}
opid=${pids[1]:-}
for i in 1 2 3; do
    t0=$(cpu_ticks "$tpid")
    line=$(run_tally "$tmp/new.sock" 50)
    t1=$(cpu_ticks "$tpid")
    n=$(echo "$line" | rps)
    out[new50]+="$n "
    out[cpu]+="$(( (t1 - t0) * 10000 * 1000 / (n * secs) )) "
    out[new1]+="$(run_tally "$tmp/new.sock" 1 | p50) "
    if [ -n "$other" ]; then
        t0=$(cpu_ticks "$opid")
        n=$(run_tally "$tmp/old.sock" 50 | rps)
        t1=$(cpu_ticks "$opid")
        out[old50]+="$n "
        out[ocpu]+="$(( (t1 - t0) * 10000 * 1000 / (n * secs) )) "
        out[old1]+="$(run_tally "$tmp/old.sock" 1 | p50) "
    fi
    r=$(redis-benchmark -s "$tmp/redis.sock" -t get -d "$bytes" -c 50 -n 200000 -q 2>&1 | tr '\r' '\n' |
        grep -E 'GET: [0-9.]+ requests' | tail -1 || true)
    out[r50]+="$(echo "$r" | sed -E 's/.*GET: ([0-9.]+) requests.*/\1/' | cut -d. -f1) "
    # Its summary: "avg min p50 p95 p99 max" (milliseconds) under "latency summary".
    r=$(redis-benchmark -s "$tmp/redis.sock" -t get -d "$bytes" -c 1 -n 30000 2>&1 | tr '\r' '\n' |
        grep -A2 'latency summary' | tail -1 || true)
    out[r1]+="$(echo "$r" | awk '{printf "%d", $3 * 1000}') "
done
m() { echo "${out[$1]}" | tr ' ' '\n' | grep . | median; }
echo "stock_get_bytes $bytes"
echo "stock_get_c50_rps $(m new50)"
echo "stock_get_c1_p50_us $(m new1)"
echo "tallyd_cpu_us_per_req $(m cpu | awk '{printf "%.1f", $1 / 1000}')"
if [ -n "$other" ]; then
    echo "old_stock_get_c50_rps $(m old50)"
    echo "old_stock_get_c1_p50_us $(m old1)"
    echo "old_tallyd_cpu_us_per_req $(m ocpu | awk '{printf "%.1f", $1 / 1000}')"
fi
echo "redis_get_c50_rps $(m r50)"
echo "redis_get_c1_p50_us $(m r1)"
