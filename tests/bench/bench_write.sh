#!/usr/bin/env bash
# Movements recorded offline through the socket (issue 10 no. 7, group commit): a fresh
# replica (one warehouse, one SKU), tallyd with its defaults (synchronous=FULL: an answer
# means durable), bench_rpc -m stock.move (a receive with an id of its own per request).
#   tests/bench/bench_write.sh BUILD_DIR [SECONDS]   (BENCH_RPC=path: another bench_rpc)
# Prints, one per line:
#   write_pipelined_movements_per_s N   1 connection, 200 pipelined
#   write_c50_movements_per_s N         50 connections, 1 in flight each
#   write_single_movements_per_s N      1 connection, 1 in flight
#   write_single_p50_us N               its median latency
# Not a test: figures only (the machine may be shared; compare builds in one run).
set -euo pipefail
BUILD=$(cd "${1:?usage: bench_write.sh BUILD_DIR [SECONDS]}" && pwd)
SECS=${2:-5}
TALLYD=$BUILD/tallyd TALLY=$BUILD/tally BENCH=${BENCH_RPC:-$BUILD/tests/bench_rpc}
[ -x "$BENCH" ] || BENCH=$BUILD/bench_rpc
tmp=$(mktemp -d /tmp/tally-bench-write.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
sock=$tmp/tally.sock
"$TALLYD" --state-dir "$tmp/state" --socket "$sock" --log-level error 2>"$tmp/tallyd.log" &
pid=$!
for _ in $(seq 400); do "$TALLY" --socket "$sock" status >/dev/null 2>&1 && break; sleep 0.025; done
printf 'code,name,country\nES-MAD,Madrid,ES\n' >"$tmp/wh.csv"
printf 'sku,product_id,title,price_minor,currency\nBW-1,P-1,Bench item,100,EUR\n' >"$tmp/cat.csv"
"$TALLY" --socket "$sock" import warehouses "$tmp/wh.csv" >/dev/null
"$TALLY" --socket "$sock" import catalog "$tmp/cat.csv" >/dev/null
run() { "$BENCH" "$sock" -m stock.move -k BW-1 -a kind=receive -a warehouse=ES-MAD -a qty=1 -d "$SECS" "$@"; }
line=$(run -c 1 -P 200)
echo "write_pipelined_movements_per_s $(sed -E 's/.* ([0-9]+) req\/s.*/\1/' <<<"$line")"
line=$(run -c 50 -P 1)
echo "write_c50_movements_per_s $(sed -E 's/.* ([0-9]+) req\/s.*/\1/' <<<"$line")"
line=$(run -c 1 -P 1)
echo "write_single_movements_per_s $(sed -E 's/.* ([0-9]+) req\/s.*/\1/' <<<"$line")"
echo "write_single_p50_us $(sed -E 's/.*p50 ([0-9]+).*/\1/' <<<"$line")"
