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
# it keeps latencies in 8-µs buckets.
# The same client asks again at 50 connections for each of the 1,000 SKUs in turn (and Redis
# for 1,000 keys of the same size): the first figures ask for one SKU, as Redis GET of one
# key, which tallyd answers again from the answer it keeps while nothing is committed
# (loopread.h); these ask for more SKUs than it keeps answers for (512). Beside each rate at 50
# connections: the server's CPU per request (user and system, from /proc, over the run) and
# the client's CPU in percent of one CPU (at about 100 % the client, not the server, is the
# limit). Prints:
#   stockget_answer_bytes, stockget_c50_rps, stockget_c50_cpu_us, stockget_c50_client_pct,
#   stockget_c1_p50_us, stockget_many_c50_rps, stockget_many_c50_cpu_us,
#   redis_get_c50_rps, redis_get_c50_cpu_us, redis_get_c50_client_pct, redis_get_c1_p50_us,
#   redis_get_many_c50_rps, redis_get_many_c50_cpu_us (bench_rpc --resp),
#   redis_bench_c50_rps, redis_bench_c1_p50_us (redis-benchmark)
#   (the redis_* "skipped" when redis-server is not installed)
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
# cpu_ticks PID: the process's user and system CPU so far, in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# load PID PREFIX OUT ARGS...: bench_rpc ARGS at 50 connections for S seconds into OUT, with
# PREFIX_cpu_us (the server PID's CPU per request, µs) appended
load() {
    local pid=$1 p=$2 out=$3 c0 c1
    shift 3
    c0=$(cpu_ticks "$pid")
    "$RPC" "$@" -c 50 -d "$secs" --kv "$p" >"$out"
    c1=$(cpu_ticks "$pid")
    awk -v p="$p" -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
        '$1 == p "_n" && $2 > 0 { printf "%s_cpu_us %.2f\n", p, t / hz * 1e6 / $2 }' "$out" >>"$out"
}
kv() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }
load "$tallyd_pid" c50 "$tmp/c50" "$tmp/tally.sock" -k "$sku"
"$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d "$secs" --kv c1 >"$tmp/c1"
awk -F, 'NR > 1 { print $1 }' "$tmp/gen/catalog.csv" >"$tmp/skus"
load "$tallyd_pid" m50 "$tmp/m50" "$tmp/tally.sock" --keys-file "$tmp/skus"
fig stockget_c50_rps "$(kv c50_rps "$tmp/c50")"
fig stockget_c50_cpu_us "$(kv c50_cpu_us "$tmp/c50")"
fig stockget_c50_client_pct "$(kv c50_cpu_pct "$tmp/c50")"
fig stockget_c1_p50_us "$(kv c1_p50_us "$tmp/c1")"
fig stockget_many_c50_rps "$(kv m50_rps "$tmp/m50")"
fig stockget_many_c50_cpu_us "$(kv m50_cpu_us "$tmp/m50")"
stop_tallyd

if [ "$redis" = 0 ] || ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "bench_stockget.sh: redis-server/redis-benchmark not installed: the Redis anchor is skipped" >&2
    for f in redis_get_c50_rps redis_get_c50_cpu_us redis_get_c50_client_pct redis_get_c1_p50_us \
        redis_get_many_c50_rps redis_get_many_c50_cpu_us; do
        fig "$f" skipped
    done
    fig redis_bench_c50_rps skipped
    fig redis_bench_c1_p50_us skipped
    exit 0
fi
redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no \
    --dir "$tmp" --daemonize no >"$tmp/redis.log" 2>&1 &
redis_pid=$!
extra_pids="$extra_pids $redis_pid"
for _ in $(seq 200); do [ -S "$tmp/redis.sock" ] && break; sleep 0.02; done
[ -S "$tmp/redis.sock" ] || { cat "$tmp/redis.log" >&2; die "redis-server did not start"; }
rb() { redis-benchmark -s "$tmp/redis.sock" "$@" --csv | awk -F'"' 'NR == 2 { print $4, $10 }'; }
# SET then GET the same key (no -r): GET answers a value of exactly SIZE bytes.
rb -t set -d "$size" -n 1000 -c 1 >/dev/null
# (redis-benchmark's key without -r)
key='key:__rand_int__'
load "$redis_pid" rc50 "$tmp/rc50" "$tmp/redis.sock" --resp "$key"
"$RPC" "$tmp/redis.sock" --resp "$key" -c 1 -d "$secs" --kv rc1 >"$tmp/rc1"
# the same 1,000 keys as SKUs, each holding a value of SIZE bytes
awk -v n="$size" 'BEGIN { v = sprintf("%*s", n, ""); gsub(/ /, "x", v) }
    { printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length($0), $0, n, v }' \
    "$tmp/skus" | redis-cli -s "$tmp/redis.sock" --pipe >/dev/null
load "$redis_pid" rm50 "$tmp/rm50" "$tmp/redis.sock" --resp "$key" --keys-file "$tmp/skus"
fig redis_get_c50_rps "$(kv rc50_rps "$tmp/rc50")"
fig redis_get_c50_cpu_us "$(kv rc50_cpu_us "$tmp/rc50")"
fig redis_get_c50_client_pct "$(kv rc50_cpu_pct "$tmp/rc50")"
fig redis_get_c1_p50_us "$(kv rc1_p50_us "$tmp/rc1")"
fig redis_get_many_c50_rps "$(kv rm50_rps "$tmp/rm50")"
fig redis_get_many_c50_cpu_us "$(kv rm50_cpu_us "$tmp/rm50")"
read -r rps _ < <(rb -t get -d "$size" -n "$rreq" -c 50)
fig redis_bench_c50_rps "${rps%.*}"
read -r _ p50 < <(rb -t get -d "$size" -n $((rreq / 5)) -c 1)
fig redis_bench_c1_p50_us "$(awk -v v="$p50" 'BEGIN { printf "%d\n", v * 1000 + 0.5 }')"
