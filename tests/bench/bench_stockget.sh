#!/usr/bin/env bash
# stock.get beside Redis GET, in one run.
#   tests/bench/bench_stockget.sh BUILD [--seconds S] [--rounds R] [--redis-requests N]
#                                 [--no-redis]
# An offline station seeded by tally-gen (1,000 SKUs x 4 warehouses) and Redis (redis-server on
# a Unix socket of the temporary directory, no persistence) run side by side. Redis holds one
# value of the size of stock.get's answer for one SKU, and 1,000 keys (the station's SKUs) of
# that size. One load generator, tests/bench/bench_rpc, asks both the same way (bench_rpc
# --resp for Redis: the same connections, timing and percentiles, so the figures differ by the
# servers alone):
# - at 50 connections, for one SKU (Redis: GET of one key), then for the 1,000 SKUs in turn (each
#   connection from its own place; Redis: the 1,000 keys), R rounds (default 3) of S seconds
#   (default 3), tallyd and Redis one after the other in each round, so that both meet the same
#   moments of a machine whose speed drifts (on this one, runs a few seconds apart differ by up
#   to a fifth, for both servers alike); each figure is the median of its rounds. One SKU is
#   what tallyd answers again from the answer it keeps while nothing is committed (loopread.h);
#   the 1,000 SKUs show the same with 1,000 answers kept;
# - from 50 processes of one connection each (bench_rpc -c 1, started together, S seconds), one
#   SKU, in the same rounds: each process sleeps until its answer comes, as a station's separate
#   clients do, so the processes and the kernel's scheduling of them, not the server, are the
#   limit (beside the rate: the server's share of a CPU over the round);
# - at 1 connection, one SKU, S seconds each: the p50.
# Beside each rate at 50 connections: the server's CPU per request (user and system of all its
# threads, from /proc, over the round) and the client's CPU in percent of one CPU (at about
# 100 % the client, not the server, is the limit). redis-benchmark -t get at -c 50 and -c 1 (N
# requests each, default 300000 and 60000) is run too, for reference: its client is heavier
# than bench_rpc (at 50 connections on 2 CPUs it, not Redis, is the limit: Redis at about 60 %
# of a CPU) and it keeps latencies in 8-µs buckets. Prints:
#   stockget_answer_bytes, stockget_c50_rps, stockget_c50_cpu_us, stockget_c50_client_pct,
#   stockget_c1_p50_us, stockget_many_c50_rps, stockget_many_c50_cpu_us, stockget_procs_rps,
#   stockget_procs_cpu_us, stockget_procs_server_pct,
#   redis_get_c50_rps, redis_get_c50_cpu_us, redis_get_c50_client_pct, redis_get_c1_p50_us,
#   redis_get_many_c50_rps, redis_get_many_c50_cpu_us, redis_get_procs_rps,
#   redis_get_procs_cpu_us, redis_get_procs_server_pct (bench_rpc --resp),
#   redis_bench_c50_rps, redis_bench_c1_p50_us (redis-benchmark)
#   (the redis_* "skipped" when redis-server is not installed)
set -euo pipefail
usage='usage: bench_stockget.sh BUILD [--seconds S] [--rounds R] [--redis-requests N] [--no-redis]'
B=$(cd "${1:?$usage}" && pwd)
shift
secs=3 rounds=3 rreq=300000 redis=1
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) secs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --redis-requests) rreq=$2; shift 2 ;;
    --no-redis) redis=0; shift ;;
    *) echo "bench_stockget.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench_stockget.sh: --rounds wants a positive count" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"
bench_init

"$GEN" --out "$tmp/gen" --skus 1000 --warehouses 4 --orders 1 >/dev/null
write_config
start_tallyd
for k in warehouses catalog stock; do t import "$k" "$tmp/gen/$k.csv" >/dev/null; done
sku=$(awk -F, 'NR == 2 { print $1 }' "$tmp/gen/catalog.csv")
awk -F, 'NR > 1 { print $1 }' "$tmp/gen/catalog.csv" >"$tmp/skus"
size=$("$RPC" "$tmp/tally.sock" -k "$sku" --size | awk '{ print $2 }')
[ -n "$size" ] || die "no stock.get answer for $sku"
fig stockget_answer_bytes "$size"

if [ "$redis" = 0 ] || ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null ||
    ! command -v redis-cli >/dev/null; then
    [ "$redis" = 0 ] || echo "bench_stockget.sh: redis-server/redis-benchmark/redis-cli not installed: the Redis anchor is skipped" >&2
    redis=0
else
    redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no \
        --dir "$tmp" --daemonize no >"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    extra_pids="$extra_pids $redis_pid"
    for _ in $(seq 200); do [ -S "$tmp/redis.sock" ] && break; sleep 0.02; done
    [ -S "$tmp/redis.sock" ] || { cat "$tmp/redis.log" >&2; die "redis-server did not start"; }
    # One key of SIZE bytes (redis-benchmark's key without -r, which its GET asks too), and the
    # 1,000 SKUs as keys of SIZE bytes.
    key='key:__rand_int__'
    printf '%s\n' "$key" | cat - "$tmp/skus" | awk -v n="$size" '
        BEGIN { v = sprintf("%*s", n, ""); gsub(/ /, "x", v) }
        { printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length($0), $0, n, v }' |
        redis-cli -s "$tmp/redis.sock" --pipe >/dev/null
fi

# cpu_ticks PID: the process's user and system CPU so far, in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# load PID OUT ARGS...: bench_rpc ARGS at 50 connections for S seconds; OUT gets its figures
# (prefix l) and l_cpu_us, the server PID's CPU per request in µs
load() {
    local pid=$1 out=$2 c0 c1
    shift 2
    c0=$(cpu_ticks "$pid")
    "$RPC" "$@" -c 50 -d "$secs" --kv l >"$out"
    c1=$(cpu_ticks "$pid")
    awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
        '$1 == "l_n" && $2 > 0 { printf "l_cpu_us %.2f\n", t / hz * 1e6 / $2 }' "$out" >>"$out"
}
# procs PID OUT ARGS...: 50 bench_rpc ARGS processes of one connection each for S seconds; OUT
# gets l_rps (the sum of theirs), l_n, l_cpu_us (the server's CPU per request) and
# l_server_pct (the server's CPU over the round, in percent of one CPU)
procs() {
    local pid=$1 out=$2 c0 c1 t0 t1 i p ps=()
    shift 2
    c0=$(cpu_ticks "$pid")
    t0=$(now_ns)
    for i in $(seq 50); do
        "$RPC" "$@" -c 1 -d "$secs" --kv l >"$out.p$i" &
        ps+=($!)
    done
    for p in "${ps[@]}"; do wait "$p" || die "a bench_rpc process failed ($*)"; done
    t1=$(now_ns)
    c1=$(cpu_ticks "$pid")
    cat "$out".p* | awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v ns=$((t1 - t0)) '
        $1 == "l_rps" { r += $2 } $1 == "l_n" { n += $2 }
        END { if (n > 0) printf "l_rps %d\nl_n %d\nl_cpu_us %.2f\nl_server_pct %d\n", r, n,
                                 t / hz * 1e6 / n, t / hz * 1e9 / ns * 100 + 0.5 }' >"$out"
    rm -f "$out".p*
}
kv() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }
# median NAME KEY: the median over the rounds of KEY in $tmp/NAME.* (the lower of the middle
# two for an even count)
median() {
    local f
    for f in "$tmp/$1".*; do kv "$2" "$f"; done | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}
for r in $(seq "$rounds"); do
    load "$tallyd_pid" "$tmp/c50.$r" "$tmp/tally.sock" -k "$sku"
    [ "$redis" = 0 ] || load "$redis_pid" "$tmp/rc50.$r" "$tmp/redis.sock" --resp "$key"
    load "$tallyd_pid" "$tmp/m50.$r" "$tmp/tally.sock" --keys-file "$tmp/skus"
    [ "$redis" = 0 ] || load "$redis_pid" "$tmp/rm50.$r" "$tmp/redis.sock" --resp "$key" \
        --keys-file "$tmp/skus"
    procs "$tallyd_pid" "$tmp/p50.$r" "$tmp/tally.sock" -k "$sku"
    [ "$redis" = 0 ] || procs "$redis_pid" "$tmp/rp50.$r" "$tmp/redis.sock" --resp "$key"
done
"$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d "$secs" --kv c1 >"$tmp/c1"
fig stockget_c50_rps "$(median c50 l_rps)"
fig stockget_c50_cpu_us "$(median c50 l_cpu_us)"
fig stockget_c50_client_pct "$(median c50 l_cpu_pct)"
fig stockget_c1_p50_us "$(kv c1_p50_us "$tmp/c1")"
fig stockget_many_c50_rps "$(median m50 l_rps)"
fig stockget_many_c50_cpu_us "$(median m50 l_cpu_us)"
fig stockget_procs_rps "$(median p50 l_rps)"
fig stockget_procs_cpu_us "$(median p50 l_cpu_us)"
fig stockget_procs_server_pct "$(median p50 l_server_pct)"
stop_tallyd

if [ "$redis" = 0 ]; then
    for f in redis_get_c50_rps redis_get_c50_cpu_us redis_get_c50_client_pct redis_get_c1_p50_us \
        redis_get_many_c50_rps redis_get_many_c50_cpu_us redis_get_procs_rps redis_get_procs_cpu_us \
        redis_get_procs_server_pct redis_bench_c50_rps redis_bench_c1_p50_us; do
        fig "$f" skipped
    done
    exit 0
fi
"$RPC" "$tmp/redis.sock" --resp "$key" -c 1 -d "$secs" --kv rc1 >"$tmp/rc1"
fig redis_get_c50_rps "$(median rc50 l_rps)"
fig redis_get_c50_cpu_us "$(median rc50 l_cpu_us)"
fig redis_get_c50_client_pct "$(median rc50 l_cpu_pct)"
fig redis_get_c1_p50_us "$(kv rc1_p50_us "$tmp/rc1")"
fig redis_get_many_c50_rps "$(median rm50 l_rps)"
fig redis_get_many_c50_cpu_us "$(median rm50 l_cpu_us)"
fig redis_get_procs_rps "$(median rp50 l_rps)"
fig redis_get_procs_cpu_us "$(median rp50 l_cpu_us)"
fig redis_get_procs_server_pct "$(median rp50 l_server_pct)"
rb() { redis-benchmark -s "$tmp/redis.sock" "$@" --csv | awk -F'"' 'NR == 2 { print $4, $10 }'; }
read -r rps _ < <(rb -t get -d "$size" -n "$rreq" -c 50)
fig redis_bench_c50_rps "${rps%.*}"
read -r _ p50 < <(rb -t get -d "$size" -n $((rreq / 5)) -c 1)
fig redis_bench_c1_p50_us "$(awk -v v="$p50" 'BEGIN { printf "%d\n", v * 1000 + 0.5 }')"
