#!/usr/bin/env bash
# stock.get beside Redis GET, in one run.
#   tests/bench/bench_stockget.sh BUILD [--seconds S] [--redis-requests N] [--no-redis]
# An offline station seeded by tally-gen (1,000 SKUs x 4 warehouses); tests/bench/bench_rpc
# loads stock.get of one SKU at 50 connections for S seconds (default 3) and then at 1
# connection. Redis (redis-server on a Unix socket of the temporary directory, no persistence)
# holds one value of the size of that stock.get answer, and the same load generator asks it GET
# the same way (bench_rpc --resp: the same connections, timing and percentiles, so the figures
# differ by the servers alone); redis-benchmark -t get at -c 50 and -c 1 (N requests each,
# default 300000 and 60000) is run too, for reference: its client is heavier than bench_rpc
# (at 50 connections on 2 CPUs it, not Redis, is the limit: Redis at about 60 % of a CPU) and
# it keeps latencies in 8-µs buckets. Prints:
#   stockget_answer_bytes, stockget_c50_rps, stockget_c1_p50_us,
#   redis_get_c50_rps, redis_get_c1_p50_us (bench_rpc --resp),
#   redis_bench_c50_rps, redis_bench_c1_p50_us (redis-benchmark)
#   ("skipped" when redis-server is not installed)
set -euo pipefail
B=$(cd "${1:?usage: bench_stockget.sh BUILD [--seconds S] [--redis-requests N] [--no-redis]}" && pwd)
shift
secs=3 rreq=300000 redis=1
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) secs=$2; shift 2 ;;
    --redis-requests) rreq=$2; shift 2 ;;
    --no-redis) redis=0; shift ;;
    *) echo "bench_stockget.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
. "$(dirname "$0")/lib.sh"
bench_init

"$GEN" --out "$tmp/gen" --skus 1000 --warehouses 4 --orders 1 >/dev/null
write_config
start_tallyd
for k in warehouses catalog stock; do t import "$k" "$tmp/gen/$k.csv" >/dev/null; done
sku=$(awk -F, 'NR == 2 { print $1 }' "$tmp/gen/catalog.csv")
size=$("$RPC" "$tmp/tally.sock" -k "$sku" --size | awk '{ print $2 }')
[ -n "$size" ] || die "no stock.get answer for $sku"
fig stockget_answer_bytes "$size"
"$RPC" "$tmp/tally.sock" -k "$sku" -c 50 -d "$secs" --kv c50 >"$tmp/c50"
"$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d "$secs" --kv c1 >"$tmp/c1"
fig stockget_c50_rps "$(awk '$1 == "c50_rps" { print $2 }' "$tmp/c50")"
fig stockget_c1_p50_us "$(awk '$1 == "c1_p50_us" { print $2 }' "$tmp/c1")"
stop_tallyd

if [ "$redis" = 0 ] || ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "bench_stockget.sh: redis-server/redis-benchmark not installed: the Redis anchor is skipped" >&2
    fig redis_get_c50_rps skipped
    fig redis_get_c1_p50_us skipped
    fig redis_bench_c50_rps skipped
    fig redis_bench_c1_p50_us skipped
    exit 0
fi
redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no \
    --dir "$tmp" --daemonize no >"$tmp/redis.log" 2>&1 &
extra_pids="$extra_pids $!"
for _ in $(seq 200); do [ -S "$tmp/redis.sock" ] && break; sleep 0.02; done
[ -S "$tmp/redis.sock" ] || { cat "$tmp/redis.log" >&2; die "redis-server did not start"; }
rb() { redis-benchmark -s "$tmp/redis.sock" "$@" --csv | awk -F'"' 'NR == 2 { print $4, $10 }'; }
# SET then GET the same key (no -r): GET answers a value of exactly SIZE bytes.
rb -t set -d "$size" -n 1000 -c 1 >/dev/null
# (redis-benchmark's key without -r)
key='key:__rand_int__'
"$RPC" "$tmp/redis.sock" --resp "$key" -c 50 -d "$secs" --kv rc50 >"$tmp/rc50"
"$RPC" "$tmp/redis.sock" --resp "$key" -c 1 -d "$secs" --kv rc1 >"$tmp/rc1"
fig redis_get_c50_rps "$(awk '$1 == "rc50_rps" { print $2 }' "$tmp/rc50")"
fig redis_get_c1_p50_us "$(awk '$1 == "rc1_p50_us" { print $2 }' "$tmp/rc1")"
read -r rps _ < <(rb -t get -d "$size" -n "$rreq" -c 50)
fig redis_bench_c50_rps "${rps%.*}"
read -r _ p50 < <(rb -t get -d "$size" -n $((rreq / 5)) -c 1)
fig redis_bench_c1_p50_us "$(awk -v v="$p50" 'BEGIN { printf "%d\n", v * 1000 + 0.5 }')"
