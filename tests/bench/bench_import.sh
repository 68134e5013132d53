#!/usr/bin/env bash
# Catalog import rate, and a query's latency while it runs (issue 10, item 5).
#   tests/bench/bench_import.sh BUILD_DIR N
# Generates N SKUs (tests/gen/tally-gen), starts tallyd on a fresh replica, imports the
# warehouses and the first 1000 SKUs with their stock (so there is a SKU to ask for), then
#  1. imports the whole catalog with `tally import catalog`, nothing else running:
#       import_rows_per_s N, import_seconds S, import_tallyd_cpu_s S (tallyd's CPU time)
#  2. imports it again (every row an update) while bench_rpc asks `stock.get` on one
#     connection for as long as that import runs (a closed loop: it takes CPU from the import):
#       reimport_seconds S, import_query_req_per_s, import_query_p50_us / _p99_us / _p999_us /
#       _max_us
# Figures, not checks: it fails only when something does not work.
set -euo pipefail
build=${1:?usage: bench_import.sh BUILD_DIR N}
n=${2:?usage: bench_import.sh BUILD_DIR N}
tallyd=$build/tallyd tally=$build/tally
gen=$build/tests/tally-gen bench=$build/tests/bench_rpc
tmp=$(mktemp -d /tmp/tally-bench-import.XXXXXX)
sock=$tmp/tally.sock
pid= bpid=
cleanup() {
    [ -n "$bpid" ] && kill "$bpid" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

"$gen" --out "$tmp/data" --skus "$n" --warehouses 1 --orders 0 --seed 5 >/dev/null
head -n 1001 "$tmp/data/catalog.csv" >"$tmp/data/catalog-head.csv"
head -n 1001 "$tmp/data/stock.csv" >"$tmp/data/stock-head.csv"
"$tallyd" --state-dir "$tmp/state" --socket "$sock" --station BENCH >"$tmp/tallyd.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
    "$tally" --socket "$sock" status >/dev/null 2>&1 && break
    sleep 0.05
done
t() { "$tally" --socket "$sock" "$@"; }
t import warehouses "$tmp/data/warehouses.csv" >/dev/null
t import catalog "$tmp/data/catalog-head.csv" >/dev/null
t import stock "$tmp/data/stock-head.csv" >/dev/null
sku=$(sed -n 2p "$tmp/data/stock.csv" | cut -d, -f1)

# tallyd's CPU time (user + system, clock ticks) around the import: a figure the other load
# on a shared machine disturbs less than the wall clock.
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
c0=$(cpu)
start=$(date +%s.%N)
t import catalog "$tmp/data/catalog.csv" >"$tmp/import.out"
end=$(date +%s.%N)
c1=$(cpu)
grep -q "imported $n rows" "$tmp/import.out" || { cat "$tmp/import.out" >&2; exit 1; }
awk -v s="$start" -v e="$end" -v n="$n" 'BEGIN {
    d = e - s; printf "import_rows_per_s %.0f\nimport_seconds %.2f\n", n / d, d }'
awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "import_tallyd_cpu_s %.2f\n", (b - a) / hz }'
"$bench" "$sock" -c 1 -d 3600 -k "$sku" >"$tmp/bench.out" 2>&1 &
bpid=$!
sleep 0.2
r0=$(date +%s.%N)
t import catalog "$tmp/data/catalog.csv" >"$tmp/import.out"
r1=$(date +%s.%N)
kill -TERM "$bpid"
wait "$bpid" || { cat "$tmp/bench.out" >&2; exit 1; }
bpid=
grep -q "imported $n rows" "$tmp/import.out" || { cat "$tmp/import.out" >&2; exit 1; }
awk -v s="$r0" -v e="$r1" 'BEGIN { printf "reimport_seconds %.2f\n", e - s }'
# "stock.get: 1 connections, ... %.0f req/s, errors E, latency us p50 A p99 B p99.9 C max D"
awk '{ for (i = 1; i <= NF; i++) {
        if ($i == "req/s,") r = $(i - 1)
        if ($i == "p50") a = $(i + 1); if ($i == "p99") b = $(i + 1)
        if ($i == "p99.9") c = $(i + 1); if ($i == "max") m = $(i + 1) }
    printf "import_query_req_per_s %s\nimport_query_p50_us %s\nimport_query_p99_us %s\n", r, a, b
    printf "import_query_p999_us %s\nimport_query_max_us %s\n", c, m }' "$tmp/bench.out"
