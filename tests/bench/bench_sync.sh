#!/usr/bin/env bash
# bench_sync.sh BUILD_DIR SKUS [--latency]
#
# The initial sync of SKUS SKUs x 4 warehouses from tally-sim into an empty replica: starts
# tally-sim (--skus SKUS, warehouses ES-MAD,FR-PAR,PL-WAW,US-LAX, no orders) and tallyd with
# those four warehouses (no marketplace), and times from tallyd's launch to the end of the
# fourth inventory round (its "rows in" log line; the log file is polled, tallyd is not asked).
# Prints:
#   sync_rows_per_s N      rows applied (4 x SKUS) per second of that span
#   sync_seconds X
#   rss_kb N               tallyd's peak resident set (VmHWM) after the sync
#   sync_cpu_seconds X     tallyd's CPU time (user + system, all threads) from launch to then,
#   sync_rows_per_cpu_s N  and the rows per CPU second (less sensitive to a shared machine)
# With --latency, a second sync from scratch runs with one connection asking stock.get (of a
# SKU of the simulator) back to back for the span the first one took (bench_rpc -c 1), and
# prints during_sync_p50_us, during_sync_p99_us, during_sync_p999_us, during_sync_max_us and
# during_sync_req_per_s. Not a test: figures only (nothing is asserted on them).
#
# BUILD_DIR holds tallyd, tally, tests/sim/tally-sim and tests/bench/../bench_rpc as a CMake
# build lays them out (a copy of an older build works the same way, for before/after runs).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench_sync.sh BUILD_DIR SKUS [--latency]" >&2; exit 2; }
B=$(cd "$1" && pwd)
SKUS=$2
LAT=${3:-}
TALLYD=$B/tallyd TALLY=$B/tally SIM=$B/tests/sim/tally-sim RPC=$B/tests/bench_rpc
for f in "$TALLYD" "$TALLY" "$SIM"; do
    [ -x "$f" ] || { echo "bench_sync: $f missing (build first)" >&2; exit 1; }
done
WHS=(ES-MAD FR-PAR PL-WAW US-LAX)
tmp=$(mktemp -d /tmp/bench_sync.XXXXXX)
sim_pid= tallyd_pid= rpc_pid=
cleanup() {
    [ -n "$rpc_pid" ] && kill "$rpc_pid" 2>/dev/null
    [ -n "$tallyd_pid" ] && kill -9 "$tallyd_pid" 2>/dev/null
    [ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    [ -n "${BENCH_KEEP:-}" ] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT

"$SIM" --port 0 --skus "$SKUS" --orders 0 >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim_pid=$!
for _ in $(seq 1200); do
    grep -q listening "$tmp/sim.out" 2>/dev/null && break
    sleep 0.05
done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/sim.out")
[ -n "$port" ] || { echo "tally-sim did not start" >&2; cat "$tmp/sim.err" >&2; exit 1; }
base=http://127.0.0.1:$port
# A SKU the replica will hold: the first of the simulator's stock list.
sku=$(curl -sS --max-time 60 "$base/control/stock?wh=ES-MAD&format=csv" | sed -n 2p | cut -d, -f1)
[ -n "$sku" ] || sku=NONE

echo tally-sim-wh-token >"$tmp/wh.token"
{
    printf '[station]\nname = BENCH\n[sync]\nrequest_timeout = 30\nreconcile_interval = 86400\n'
    for w in "${WHS[@]}"; do
        printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\n' "$w" "$base" "$w" "$tmp/wh.token"
        printf 'inventory_interval = 3600\noutbound_interval = 3600\n'
    done
} >"$tmp/tallyd.conf"

now_s() { date +%s.%N; }

# one_sync [rpc seconds]: a sync from an empty replica; sets sync_s and rss_kb.
one_sync() {
    local rpc_secs=${1:-}
    rm -rf "$tmp/state" "$tmp/tallyd.log" "$tmp/rpc.out"
    local t0 t1
    t0=$(now_s)
    "$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" --socket "$tmp/tally.sock" \
        --log-level info 2>"$tmp/tallyd.log" &
    tallyd_pid=$!
    if [ -n "$rpc_secs" ]; then
        for _ in $(seq 2000); do [ -S "$tmp/tally.sock" ] && break; sleep 0.005; done
        "$RPC" "$tmp/tally.sock" -c 1 -P 1 -d "$rpc_secs" -k "$sku" >"$tmp/rpc.out" 2>&1 &
        rpc_pid=$!
    fi
    local limit=$((SECONDS + 600))
    local n=0
    while [ "$n" -lt ${#WHS[@]} ]; do
        n=$(grep -c ':inventory: [0-9]* rows in' "$tmp/tallyd.log" 2>/dev/null || true)
        n=${n:-0}
        [ "$n" -lt ${#WHS[@]} ] || break
        if [ $SECONDS -gt $limit ] || ! kill -0 "$tallyd_pid" 2>/dev/null; then
            echo "bench_sync: the sync did not finish" >&2
            tail -5 "$tmp/tallyd.log" >&2
            exit 1
        fi
        sleep 0.01
    done
    t1=$(now_s)
    sync_s=$(echo "$t1 - $t0" | bc -l)
    rss_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$tallyd_pid/status")
    # tallyd's CPU time (all threads, user + system): on a machine shared with other work the
    # wall-clock rate says as much about the others as about tallyd; rows per CPU second less.
    cpu_s=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$tallyd_pid/stat")
    if [ -n "$rpc_pid" ]; then
        wait "$rpc_pid" || true
        rpc_pid=
    fi
    kill -TERM "$tallyd_pid" 2>/dev/null
    wait "$tallyd_pid" 2>/dev/null || true
    tallyd_pid=
}

one_sync
rows=$((SKUS * ${#WHS[@]}))
printf 'sync_rows_per_s %.0f\n' "$(echo "$rows / $sync_s" | bc -l)"
printf 'sync_seconds %.3f\n' "$sync_s"
echo "rss_kb $rss_kb"
printf 'sync_cpu_seconds %.2f\n' "$cpu_s"
printf 'sync_rows_per_cpu_s %.0f\n' "$(echo "$rows / $cpu_s" | bc -l)"
if [ "$LAT" = --latency ]; then
    [ -x "$RPC" ] || { echo "bench_sync: $RPC missing" >&2; exit 1; }
    secs=$(echo "$sync_s * 0.9" | bc -l)
    one_sync "$secs"
    line=$(grep 'latency us' "$tmp/rpc.out" || true)
    [ -n "$line" ] || { echo "bench_sync: bench_rpc printed nothing" >&2; cat "$tmp/rpc.out" >&2; exit 1; }
    echo "during_sync_p50_us $(sed -n 's/.* p50 \([0-9]*\).*/\1/p' <<<"$line")"
    echo "during_sync_p99_us $(sed -n 's/.* p99 \([0-9]*\).*/\1/p' <<<"$line")"
    echo "during_sync_p999_us $(sed -n 's/.* p99\.9 \([0-9]*\).*/\1/p' <<<"$line")"
    echo "during_sync_max_us $(sed -n 's/.* max \([0-9]*\).*/\1/p' <<<"$line")"
    echo "during_sync_req_per_s $(sed -n 's/.*: \([0-9]*\) req\/s.*/\1/p' <<<"$line")"
    echo "during_sync_errors $(sed -n 's/.*errors \([0-9]*\).*/\1/p' <<<"$line")"
fi
