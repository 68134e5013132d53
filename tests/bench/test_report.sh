#!/usr/bin/env bash
# scripts/bench.sh --report prints the stock.get rows of figures kept in each of their forms:
# the same-client anchor with redis-benchmark's beside it; figures kept before that anchor
# (their redis_get_* are redis-benchmark's, and the table says so); Redis skipped; a figure
# missing (exit 1); the CPU notes, each run's ratio and the 1,000-SKU row, and that row's anchor
# missing (exit 1); the row of 50 processes, absent from figures kept before it, and its anchor
# missing (exit 1). Measures nothing; checks the table's words, not figures' values.
#   tests/bench/test_report.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-report.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

tally='stockget_answer_bytes 862
stockget_c50_rps 134000
stockget_c1_p50_us 64'
# kept NAME LINES: a kept directory $tmp/NAME holding rpc.1 (tally's figures and LINES)
kept() {
    mkdir "$tmp/$1"
    printf '%s\n%s\n' "$tally" "$2" >"$tmp/$1/rpc.1"
}
# report NAME EXPECT_RC: the table of $tmp/NAME in $tmp/NAME.out
report() {
    local rc=0
    "$root/scripts/bench.sh" --report "$tmp/$1" --no-install --only rpc >"$tmp/$1.out" \
        2>"$tmp/$1.err" || rc=$?
    [ "$rc" = "$2" ] || bad "$1: exit $rc, not $2 ($(tail -n 2 "$tmp/$1.err"))"
}
has() { grep -qF -- "$2" "$tmp/$1.out" || bad "$1: no '$2' in: $(grep stock.get "$tmp/$1.out")"; }
hasnt() { ! grep -qF -- "$2" "$tmp/$1.out" || bad "$1: '$2' in: $(grep stock.get "$tmp/$1.out")"; }

kept now 'redis_get_c50_rps 292000
redis_get_c1_p50_us 49
redis_bench_c50_rps 117000
redis_bench_c1_p50_us 55'
report now 0
has now 'same client: 292,000 req/s (redis-benchmark: 117,000 req/s) | 0.46×'
has now 'Redis GET p50, same client: 49 µs (redis-benchmark: 55 µs) | +15 µs'

kept old 'redis_get_c50_rps 113765
redis_get_c1_p50_us 47'
report old 0
hasnt old 'same client:'
has old 'redis-benchmark (figures kept before the anchor had the same client as stock.get): 113,765 req/s | 1.18×'
has old 'redis-benchmark (figures kept before the anchor had the same client as stock.get): 47 µs | +17 µs'

kept skipped 'redis_get_c50_rps skipped
redis_get_c1_p50_us skipped
redis_bench_c50_rps skipped
redis_bench_c1_p50_us skipped'
report skipped 0
has skipped 'same client: skipped (Redis not installed) | —'
hasnt skipped 'MISSING'

kept missing 'redis_get_c50_rps 292000
redis_get_c1_p50_us 49
redis_bench_c1_p50_us 55'
report missing 1
has missing 'redis-benchmark: MISSING'

# two runs with the CPU per request, the client's CPU and the 1,000-SKU row: each run's ratio
# beside the median's, the CPU notes, the row
mkdir "$tmp/cpu"
for r in 1 2; do
    printf '%s\nstockget_c50_cpu_us 3.0%s\nstockget_c50_client_pct 99\nstockget_many_c50_rps 27000%s\nstockget_many_c50_cpu_us 3.5\nredis_get_c50_rps 14%s000\nredis_get_c50_cpu_us 3.1\nredis_get_c50_client_pct 97\nredis_get_c1_p50_us 49\nredis_get_many_c50_rps 250000\nredis_get_many_c50_cpu_us 3.8\nredis_bench_c50_rps 117000\nredis_bench_c1_p50_us 55\n' \
        "$tally" "$r" "$r" "$((r + 3))" >"$tmp/cpu/rpc.$r"
done
report cpu 0
has cpu '134,000 req/s (3.01 µs of the server'"'"'s CPU a request; the client at 99% of a CPU)'
has cpu '144,000 req/s (3.1 µs of the server'"'"'s CPU a request; the client at 97% of a CPU)'
has cpu '| 0.93× (runs 0.93×, 0.92×) |'
has cpu 'each asking the station'"'"'s 1,000 SKUs in turn | 270,001 req/s (3.5 µs of the server'"'"'s CPU a request)'
has cpu 'same client: 250,000 req/s (3.8 µs of the server'"'"'s CPU a request) | 1.08×'
# the 1,000-SKU row with Redis's figure missing: MISSING, exit 1
mkdir "$tmp/manymiss"
printf '%s\nstockget_many_c50_rps 270000\nredis_get_c50_rps 292000\nredis_get_c1_p50_us 49\nredis_bench_c50_rps 117000\nredis_bench_c1_p50_us 55\n' "$tally" >"$tmp/manymiss/rpc.1"
report manymiss 1
has manymiss 'same client: MISSING req/s'

# the row of 50 processes: each run's ratio, the server's CPU and share; without it (figures
# kept before it was measured) no row; Redis's figure missing: MISSING, exit 1
mkdir "$tmp/procs" "$tmp/procsmiss"
for r in 1 2; do
    printf '%s\nredis_get_c50_rps 144000\nredis_get_c1_p50_us 49\nredis_bench_c50_rps 117000\nredis_bench_c1_p50_us 55\nstockget_procs_rps 10%s000\nstockget_procs_cpu_us 6.1\nstockget_procs_server_pct 69\nredis_get_procs_rps 110000\nredis_get_procs_cpu_us 5.9\nredis_get_procs_server_pct 73\n' \
        "$tally" "$((r + 4))" >"$tmp/procs/rpc.$r"
done
report procs 0
has procs 'from 50 processes of one connection each (the processes, not the server, are the limit) | 105,000 req/s (6.1 µs of the server'"'"'s CPU a request; the server at 69% of a CPU)'
has procs 'Redis GET, same processes: 110,000 req/s (5.9 µs of the server'"'"'s CPU a request; the server at 73% of a CPU) | 0.95× (runs 0.95×, 0.96×) |'
hasnt cpu 'from 50 processes'
printf '%s\nredis_get_c50_rps 144000\nredis_get_c1_p50_us 49\nredis_bench_c50_rps 117000\nredis_bench_c1_p50_us 55\nstockget_procs_rps 105000\n' "$tally" >"$tmp/procsmiss/rpc.1"
report procsmiss 1
has procsmiss 'Redis GET, same processes: MISSING req/s'

[ "$fails" = 0 ] || { echo "$fails failed" >&2; exit 1; }
echo "bench.sh --report: all cases passed"
