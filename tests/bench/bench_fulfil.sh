#!/usr/bin/env bash
# A query's latency while the fulfilment pass and a purge run, and `tally stock` just after a
# start (issue 10, items 8 and 1).
#   tests/bench/bench_fulfil.sh BUILD_DIR ORDERS
# Generates ORDERS orders over 2,000 SKUs x 2 warehouses (tests/gen/tally-gen), starts tallyd
# on a fresh replica (the coordinator: it allocates), imports warehouses, catalog and stock,
# then, with bench_rpc asking `stock.get` on one connection all along:
#   1. imports the orders and waits until the pass has looked at every one of them
#      (pass_query_p50_us / _p99_us / _p999_us / _max_us, pass_seconds);
#   2. stops tallyd, starts it again and times `tally stock SKU` (the whole process) ten
#      times in its first seconds: stock_after_start_ms (median) and stock_after_start_max_ms,
#      and a query's latency over those seconds (start_query_*);
#   3. marks every order finished long ago and runs `tally purge --older-than 0`
#      (purge_query_*, purge_seconds, purge_orders).
# Figures, not checks: it fails only when something does not work.
set -euo pipefail
build=${1:?usage: bench_fulfil.sh BUILD_DIR ORDERS}
orders=${2:?usage: bench_fulfil.sh BUILD_DIR ORDERS}
tallyd=$build/tallyd tally=$build/tally
gen=$build/tests/tally-gen bench=$build/tests/bench_rpc
tmp=$(mktemp -d /tmp/tally-bench-fulfil.XXXXXX)
sock=$tmp/tally.sock db=$tmp/state/replica.db
pid= bpid=
cleanup() {
    [ -n "$bpid" ] && kill "$bpid" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
t() { "$tally" --socket "$sock" "$@"; }
start_tallyd() {
    "$tallyd" --state-dir "$tmp/state" --socket "$sock" --station BENCH >>"$tmp/tallyd.log" 2>&1 &
    pid=$!
    for _ in $(seq 400); do
        [ -S "$sock" ] && t status >/dev/null 2>&1 && return 0
        sleep 0.01
    done
    echo "tallyd did not start" >&2
    cat "$tmp/tallyd.log" >&2
    exit 1
}
stop_tallyd() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}
# bench_rpc on one connection, in the background, until measure_end
measure_start() {
    "$bench" "$sock" -c 1 -d 3600 -k "$sku" >"$tmp/bench.out" 2>&1 &
    bpid=$!
}
measure_end() { # PREFIX
    kill -TERM "$bpid"
    wait "$bpid" || { cat "$tmp/bench.out" >&2; exit 1; }
    bpid=
    awk -v p="$1" '{ for (i = 1; i <= NF; i++) {
            if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1)
            if ($i == "p99.9") c = $(i + 1); if ($i == "max") m = $(i + 1) }
        printf "%s_query_p50_us %s\n%s_query_p99_us %s\n", p, a, p, b
        printf "%s_query_p999_us %s\n%s_query_max_us %s\n", p, c, p, m }' "$tmp/bench.out"
}
q() { sqlite3 -cmd ".timeout 5000" "$db" "$1"; }

"$gen" --out "$tmp/data" --skus 2000 --warehouses 2 --orders "$orders" --seed 7 >/dev/null
start_tallyd
for kind in warehouses catalog stock; do
    t import "$kind" "$tmp/data/$kind.csv" >/dev/null
done
sku=$(sed -n 2p "$tmp/data/stock.csv" | cut -d, -f1)

# 1. the pass over the orders
measure_start
s0=$(date +%s.%N)
t import orders "$tmp/data/orders.csv" >/dev/null
while [ "$(q "SELECT COUNT(*) FROM orders WHERE fdirty <> 0 OR fstate = 'new'")" != 0 ]; do
    sleep 0.1
done
s1=$(date +%s.%N)
measure_end pass
awk -v a="$s0" -v b="$s1" 'BEGIN { printf "pass_seconds %.2f\n", b - a }'
echo "pass_open_orders $(q "SELECT COUNT(*) FROM orders WHERE fstate IN ('pending','ready',
    'allocated','sent','picked','partial')")"

# 2. a start on that replica
stop_tallyd
start_tallyd
measure_start
for i in $(seq 10); do
    a=$(date +%s%N)
    t stock "$sku" >/dev/null
    b=$(date +%s%N)
    echo $(((b - a) / 1000))
    sleep 0.2
done | sort -n >"$tmp/stock.us"
measure_end start
awk '{ v[NR] = $1 } END { printf "stock_after_start_ms %.1f\nstock_after_start_max_ms %.1f\n",
    (v[5] + v[6]) / 2000, v[NR] / 1000 }' "$tmp/stock.us"

# 3. a purge of every order
q "UPDATE orders SET finished_at = 1000 WHERE finished_at IS NULL"
measure_start
s0=$(date +%s.%N)
out=$(t --json purge --older-than 0)
s1=$(date +%s.%N)
measure_end purge
awk -v a="$s0" -v b="$s1" 'BEGIN { printf "purge_seconds %.2f\n", b - a }'
echo "purge_orders $(printf '%s' "$out" | sed -n 's/.*"orders": *\([0-9]*\).*/\1/p')"
