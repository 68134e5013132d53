#!/usr/bin/env bash
# Movements recorded offline, then the outbox drain once the link is back; and the same
# movements sent one by one with curl.
#   tests/bench/bench_drain.sh BUILD N [--curl M]
# tally-sim (1,000 SKUs x 4 warehouses); tallyd syncs, then the link to ES-MAD is cut
# (POST /control/link) for 6 s at least (an outage: sync.c OUTAGE_MS; that tallyd logged "link
# is back" is checked), and N receive movements of one SKU at ES-MAD are recorded (stock.move,
# each acknowledged only once durable): the first N/2 pipelined 200 at a time on one connection,
# the rest from 50 connections at once (what group commit serves), after min(200, N/2) single
# movements at 1 connection for the latency of one client's movement. Then the link is restored
# and the outbox drains (its pending counter read from the replica by another connection every
# 20 ms).
# The anchor: M movements (default min(N, 2000)) posted to the simulator one by one by one curl
# process on one keep-alive connection (POST /wh/ES-MAD/v1/movements, one movement each).
# Prints:
#   single_move_p50_us, offline_pipelined_per_s, offline_clients_per_s,
#   drain_movements, drain_seconds (link up to empty, includes tallyd's ≤ 1 s retry backoff),
#   drain_per_s (from the first row seen done, if half were pending then, else from the
#   link's return, to the last), drain_tallyd_cpu_us and drain_sim_cpu_us (CPU time, user +
#   system, per drained movement, from the link's return to the empty outbox),
#   curl_one_by_one_per_s
set -euo pipefail
usage="usage: bench_drain.sh BUILD N [--curl M]"
B=$(cd "${1:?$usage}" && pwd)
n=${2:?$usage}
shift 2
m=$((n < 2000 ? n : 2000))
while [ $# -gt 0 ]; do
    case $1 in
    --curl) m=$2; shift 2 ;;
    *) echo "bench_drain.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$n" -ge 2 ] || { echo "bench_drain.sh: N >= 2" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"
bench_init

start_sim --skus 1000 --orders 0 --seed 1
sku=$(ctl "$base/control/stock?wh=ES-MAD&format=csv" | awk -F, 'NR == 2 { print $1 }')
write_config
start_tallyd
for _ in $(seq 1200); do
    [ "$(grep -cE ':inventory: [0-9]+ rows in' "$tmp/tallyd.log")" -ge 4 ] && break
    sleep 0.05
done
ctl -X POST "$base/control/link" -d '{"target":"wh:ES-MAD","up":false}' >/dev/null
t_down=$(now_ns)

mv=(-k "$sku" -m stock.move -a kind=receive -a warehouse=ES-MAD -a qty=1 -d 3600)
single=$((n / 2 < 200 ? n / 2 : 200))
"$RPC" "$tmp/tally.sock" "${mv[@]}" -c 1 -P 1 -n "$single" --kv single >"$tmp/single"
head -n 1 "$tmp/single" >&2
fig single_move_p50_us "$(awk '$1 == "single_p50_us" { print $2 }' "$tmp/single")"
half=$((n / 2))
"$RPC" "$tmp/tally.sock" "${mv[@]}" -c 1 -P 200 -n "$half" --kv pip >"$tmp/pip"
head -n 1 "$tmp/pip" >&2
fig offline_pipelined_per_s "$(awk '$1 == "pip_rps" { print $2 }' "$tmp/pip")"
"$RPC" "$tmp/tally.sock" "${mv[@]}" -c 50 -P 1 -n $((n - half)) --kv cli >"$tmp/cli"
head -n 1 "$tmp/cli" >&2
fig offline_clients_per_s "$(awk '$1 == "cli_rps" { print $2 }' "$tmp/cli")"
total=$((n + single))
pending=$(counter outbox_pending)
[ "$pending" = "$total" ] || die "outbox_pending is $pending, not $total"

# An outage, not a blip: tallyd lifts the rows' retry backoff when a link comes back after at
# least 5 s down (sync.c OUTAGE_MS); after a shorter cut they wait it out (up to a few seconds,
# blocking this one SKU's later rows), which is another figure. Recording the movements took
# longer than that until the writes got faster (schema 23): the cut now lasts 6 s at least.
left_ms=$((6000 - ($(now_ns) - t_down) / 1000000))
[ "$left_ms" -gt 0 ] && sleep "$(awk -v ms="$left_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
t_up=$(now_ns)
cpu0=$(cpu_s "$tallyd_pid") scpu0=$(cpu_s "$sim_pid")
ctl -X POST "$base/control/link" -d '{"target":"*","up":true}' >/dev/null
t sync wh:ES-MAD >/dev/null # overrides the link's backoff
t_first='' p_first=''
for _ in $(seq 180000); do
    p=$(counter outbox_pending)
    if [ -z "$t_first" ] && [ "$p" -lt "$total" ]; then t_first=$(now_ns) p_first=$p; fi
    [ "$p" = 0 ] && break
    kill -0 "$tallyd_pid" 2>/dev/null || die "tallyd died"
    sleep 0.02
done
t_end=$(now_ns)
cpu1=$(cpu_s "$tallyd_pid") scpu1=$(cpu_s "$sim_pid")
echo "drain: first row done after $(( (${t_first:-$t_end} - t_up) / 1000000 )) ms, $p_first pending then" >&2
[ "$p" = 0 ] || die "the outbox did not drain in an hour ($p pending)"
# The cut was an outage to tallyd too: it counts from the first failed call (a little after
# t_down) to the first answer after the return, and says "link is back" only past OUTAGE_MS.
grep -q 'wh:ES-MAD: link is back' "$tmp/tallyd.log" ||
    die "tallyd did not take the cut for an outage (no 'link is back' logged): the rows waited out their backoff"
applied=$(ctl "$base/control/movements?wh=ES-MAD" | jq '[.movements[] | select(. == 1)] | length')
[ "$applied" -ge "$total" ] || die "the simulator applied $applied movements, not $total"
fig drain_movements "$total"
fig drain_seconds "$(awk -v a="$t_up" -v b="$t_end" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }')"
# From the first row seen done when at least half were still pending then (the retry backoff
# left out), else from the link's return.
rate=$(awk -v n="$total" -v p="${p_first:-0}" -v up="$t_up" -v a="${t_first:-0}" -v b="$t_end" 'BEGIN {
    if (2 * p >= n && b > a) printf "%d\n", p / ((b - a) / 1e9); else printf "%d\n", n / ((b - up) / 1e9) }')
fig drain_per_s "$rate"
# CPU time per drained movement, from the link's return to the empty outbox (what a loaded
# machine's wall clock hides): tallyd's and the simulator's.
fig drain_tallyd_cpu_us "$(awk -v n="$total" -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f\n", (b - a) * 1e6 / n }')"
fig drain_sim_cpu_us "$(awk -v n="$total" -v a="$scpu0" -v b="$scpu1" 'BEGIN { printf "%.1f\n", (b - a) * 1e6 / n }')"
stop_tallyd

# The anchor: one curl, one movement per request, one after another on one connection.
{
    for i in $(seq "$m"); do
        [ "$i" -gt 1 ] && echo next
        printf 'url = "%s/wh/ES-MAD/v1/movements"\n' "$base"
        printf 'header = "Authorization: Bearer tally-sim-wh-token"\n'
        printf 'header = "Content-Type: application/json"\n'
        printf 'data = "{\\"movements\\":[{\\"id\\":\\"curl-%d\\",\\"sku\\":\\"%s\\",\\"delta\\":1,\\"reason\\":\\"receive\\"}]}"\n' "$i" "$sku"
        printf 'output = "/dev/null"\n'
    done
} >"$tmp/curl.cfg"
t0=$(now_ns)
curl -sS --fail -K "$tmp/curl.cfg"
t1=$(now_ns)
applied=$(ctl "$base/control/movements?wh=ES-MAD" | jq '[.movements | to_entries[] | select(.key | startswith("curl-"))] | length')
[ "$applied" = "$m" ] || die "curl: the simulator shows $applied of $m movements"
fig curl_one_by_one_per_s "$(awk -v m="$m" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d\n", m / ((b - a) / 1e9) }')"
