#!/usr/bin/env bash
# A station with open orders: the fulfilment pass, a restart, the client's whole-process times,
# status, RSS, and a purge.
#   tests/bench/bench_fulfil.sh BUILD ORDERS [--skus N] [--window S] [--cache DIR]
# An offline station seeded by tests/gen/tally-gen (N SKUs x 4 warehouses, default 10,000;
# ORDERS orders, mostly paid and open) through `tally import`; tallyd allocates them (the
# fulfilment pass) and is left to settle (its fulfilment counts unchanged for 1 s). --cache DIR
# keeps the replica of warehouses, catalog and stock in DIR and starts from a copy of it next
# time (the seeding takes minutes at 1M SKUs). Then:
#   pass_seconds, pass_allocated, pass_lat_p50_us ... _max_us, pass_lat_rps: the orders
#                              imported and the fulfilment pass over them (until settled), and
#                              stock.get at 1 connection meanwhile
# Then tallyd is restarted and measured:
#   start_first_answer_ms      exec of tallyd to its first answer (status)
#   cli_stock_after_start_ms   `tally stock SKU`, whole process, median of 5 at once after start
#   fulfil_lat_p50_us ... _max_us, fulfil_lat_rps: stock.get at 1 connection for the S seconds
#                              after start (default 10): what the fulfilment pass of the open
#                              orders, if it runs at every start, makes a query wait
#   cli_stock_idle_ms, cli_status_ms: whole process, median of 5, once settled again
#   cli_floor_ms               the same for a static program that does nothing (the floor)
#   status_p50_us, status_max_us: the status method at 1 connection for 1 s
#   rss_kb                     tallyd's resident memory then
#   purge_orders, purge_seconds, purge_lat_p50_us ... _max_us: `tally purge --older-than 0`
#                              (finished orders' buyer data) and stock.get at 1 connection
#                              meanwhile
set -euo pipefail
usage="usage: bench_fulfil.sh BUILD ORDERS [--skus N] [--window S] [--cache DIR]"
B=$(cd "${1:?$usage}" && pwd)
orders=${2:?$usage}
shift 2
skus=10000 window=10 cache=''
while [ $# -gt 0 ]; do
    case $1 in
    --skus) skus=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    *) echo "bench_fulfil.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
. "$(dirname "$0")/lib.sh"
bench_init

# settle: until the fulfilment counts of status stay the same for 1 s (at most 10 min)
settle() {
    local prev='' cur i same=0
    for i in $(seq 1200); do
        cur=$(t --json status | jq -c '.fulfilment')
        if [ "$cur" = "$prev" ]; then
            same=$((same + 1))
            [ "$same" -ge 2 ] && return 0
        else
            same=0
        fi
        prev=$cur
        sleep 0.5
    done
    die "tallyd did not settle in 10 min"
}

write_config
key="replica-$skus-stock.db" # warehouses, catalog and stock: the orders come below
"$GEN" --out "$tmp/gen" --skus "$skus" --warehouses 4 --orders "$orders" >/dev/null 2>&1
if [ -n "$cache" ] && [ -f "$cache/$key" ]; then
    cp "$cache/$key" "$tmp/state/replica.db"
else
    start_tallyd
    for k in warehouses catalog stock; do
        t --timeout 0 import "$k" "$tmp/gen/$k.csv" >/dev/null
    done
    stop_tallyd
    if [ -n "$cache" ]; then
        mkdir -p "$cache"
        cp "$tmp/state/replica.db" "$cache/$key.tmp" && mv "$cache/$key.tmp" "$cache/$key"
    fi
fi
sku=$(awk -F, 'NR == 2 { print $7 }' "$tmp/gen/orders.csv")

# The fulfilment pass over every order: imported, then allocated; stock.get at 1 connection
# from the import's start until the pass has settled.
start_tallyd
"$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d 3600 --until-file "$tmp/passed" --kv pass_lat \
    >"$tmp/lat-pass" &
rpc_pid=$!
extra_pids="$extra_pids $rpc_pid"
t0=$(now_ns)
t --timeout 0 import orders "$tmp/gen/orders.csv" >/dev/null
settle
t1=$(now_ns)
touch "$tmp/passed"
wait "$rpc_pid"
fig pass_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }')"
fig pass_allocated "$(t --json status | jq '[.fulfilment | to_entries[] | select(.key | test("allocated|sent")) | .value] | add')"
grep -v '^stock.get' "$tmp/lat-pass" | grep -Ev '_(n|errors) '
stop_tallyd

start_tallyd
fig start_first_answer_ms "$first_answer_ms"
fig cli_stock_after_start_ms "$(time_cmd_ms 5 "$TALLY" --socket "$tmp/tally.sock" stock "$sku")"
"$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d "$window" --kv fulfil_lat | grep -v '^stock.get' |
    grep -Ev '_(n|errors) '
settle
fig cli_stock_idle_ms "$(time_cmd_ms 5 "$TALLY" --socket "$tmp/tally.sock" stock "$sku")"
fig cli_status_ms "$(time_cmd_ms 5 "$TALLY" --socket "$tmp/tally.sock" status)"
fig cli_floor_ms "$(floor_ms 5)"
"$RPC" "$tmp/tally.sock" -m status -k '' -c 1 -d 1 --kv status >"$tmp/status"
fig status_p50_us "$(awk '$1 == "status_p50_us" { print $2 }' "$tmp/status")"
fig status_max_us "$(awk '$1 == "status_max_us" { print $2 }' "$tmp/status")"
fig rss_kb "$(rss_kb "$tallyd_pid")"

"$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d 3600 --until-file "$tmp/purged" --kv purge_lat \
    >"$tmp/lat-purge" &
rpc_pid=$!
extra_pids="$extra_pids $rpc_pid"
t0=$(now_ns)
purged=$(t --timeout 0 --json purge --older-than 0 | jq '.orders')
t1=$(now_ns)
touch "$tmp/purged"
wait "$rpc_pid"
fig purge_orders "$purged"
fig purge_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }')"
grep -v '^stock.get' "$tmp/lat-purge" | grep -Ev '_(n|errors) '
