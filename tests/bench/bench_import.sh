#!/usr/bin/env bash
# Catalog import: `tally import catalog` of N SKUs (tests/gen/tally-gen) into an offline station.
#   tests/bench/bench_import.sh BUILD N [--latency]
# The time is the whole `tally import catalog FILE` process (reading the CSV, 1,000-row calls,
# each one transaction made durable). Prints import_rows, import_seconds, import_rows_per_s,
# import_tallyd_cpu_s (tallyd's CPU time during the import);
# with --latency also import_lat_p50_us ... _max_us: stock.get at 1 connection meanwhile.
set -euo pipefail
usage="usage: bench_import.sh BUILD N [--latency]"
B=$(cd "${1:?$usage}" && pwd)
n=${2:?$usage}
latency=0
[ "${3:-}" = --latency ] && latency=1
. "$(dirname "$0")/lib.sh"
bench_init

"$GEN" --out "$tmp/gen" --skus "$n" --warehouses 4 --orders 1 >/dev/null
rows=$(($(wc -l <"$tmp/gen/catalog.csv") - 1))
write_config
start_tallyd
t import warehouses "$tmp/gen/warehouses.csv" >/dev/null
head -n 2 "$tmp/gen/catalog.csv" >"$tmp/first.csv"
t import catalog "$tmp/first.csv" >/dev/null
sku=$(awk -F, 'NR == 2 { print $1 }' "$tmp/first.csv")
if [ "$latency" = 1 ]; then
    "$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d 3600 --until-file "$tmp/imported" \
        --kv import_lat >"$tmp/lat" &
    rpc_pid=$!
    extra_pids="$extra_pids $rpc_pid"
fi
c0=$(cpu_s "$tallyd_pid")
t0=$(now_ns)
t --timeout 0 import catalog "$tmp/gen/catalog.csv" >/dev/null
t1=$(now_ns)
c1=$(cpu_s "$tallyd_pid")
touch "$tmp/imported"
[ "$latency" = 1 ] && wait "$rpc_pid"
have=$(counter skus)
[ "$have" = "$rows" ] || die "the replica holds $have SKUs, not $rows"
fig import_rows "$rows"
fig import_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }')"
fig import_rows_per_s "$(awk -v r="$rows" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d\n", r / ((b - a) / 1e9) }')"
fig import_tallyd_cpu_s "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f\n", b - a }')"
[ "$latency" = 1 ] && grep -v '^stock.get' "$tmp/lat"
exit 0
