#!/usr/bin/env bash
# The initial sync from tally-sim, and what a query waits meanwhile.
#   tests/bench/bench_sync.sh BUILD SKUS [--latency] [--reconcile] [--anchor]
# tally-sim serves SKUS SKUs x 4 warehouses (ES-MAD FR-PAR PL-WAW US-LAX); a fresh tallyd pulls
# every warehouse's inventory. The sync time runs from tallyd's "serving" log line to the last
# warehouse's "N rows in P pages" line (the log's millisecond timestamps; polling the log costs
# tallyd nothing). Prints:
#   sync_rows, sync_seconds, sync_rows_per_s, sync_tallyd_cpu_s (tallyd's CPU time from its
#   start to the sync's end), sync_sim_cpu_s (tally-sim's, from its start: it serves the pages
#   on the same CPUs), rss_kb (after the sync), rss_peak_kb (VmHWM)
#   --latency:   sync_lat_p50_us, _p99_us, _p999_us, _max_us, _rps, _n: stock.get of a SKU of
#                the first page at 1 connection (bench_rpc -c 1) for the whole sync (not_found
#                answers before that SKU arrives count as answers)
#   --reconcile: 10 s after the sync (reconcile_interval's minimum) asks a round of every
#                inventory stream (`tally sync inventory`), which is then a reconciliation that
#                reads every row again: reconcile_seconds, reconcile_rows_per_s and
#                recon_lat_p50_us ... _max_us at 1 connection during it
#   --anchor:    after tallyd is stopped, tests/bench/sqlite_upsert on the same rows (the
#                simulator's CSV dumps): sqlite_upsert_rows, _seconds, _rows_per_s, _cpu_s
set -euo pipefail
usage="usage: bench_sync.sh BUILD SKUS [--latency] [--reconcile] [--anchor]"
B=$(cd "${1:?$usage}" && pwd)
skus=${2:?$usage}
shift 2
latency=0 reconcile=0 anchor=0
for a in "$@"; do
    case $a in
    --latency) latency=1 ;;
    --reconcile) reconcile=1 ;;
    --anchor) anchor=1 ;;
    *) echo "bench_sync.sh: unknown option $a" >&2; exit 2 ;;
    esac
done
. "$(dirname "$0")/lib.sh"
bench_init

start_sim --skus "$skus" --orders 0 --seed 1
for w in "${WAREHOUSES[@]}"; do
    ctl -o "$tmp/sim-$w.csv" "$base/control/stock?wh=$w&format=csv"
done
sku=$(awk -F, 'NR == 2 { print $1 }' "$tmp/sim-ES-MAD.csv")
write_config

# round_lines: the inventory rounds logged so far
round_lines() { grep -E ':inventory: [0-9]+ rows in [0-9]+ pages' "$tmp/tallyd.log" || true; }
# wait_rounds N: until N rounds are logged (at most 30 min)
wait_rounds() {
    local i
    for i in $(seq 9000); do
        [ "$(round_lines | wc -l)" -ge "$1" ] && return 0
        kill -0 "$tallyd_pid" 2>/dev/null || die "tallyd died"
        sleep 0.2 # the figures come from the log's timestamps: polling less costs nothing
    done
    die "the sync did not end in 30 min"
}

start_tallyd
if [ "$latency" = 1 ]; then
    "$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d 3600 --until-file "$tmp/synced" --allow-errors \
        --kv sync_lat >"$tmp/lat-sync" &
    rpc_pid=$!
    extra_pids="$extra_pids $rpc_pid"
fi
wait_rounds 4
touch "$tmp/synced"
[ "$latency" = 1 ] && wait "$rpc_pid"
start_ms=$(log_ms "$(grep -m1 ' serving ' "$tmp/tallyd.log")")
end_ms=$(log_ms "$(round_lines | tail -n 1)")
[ "$end_ms" -ge "$start_ms" ] || end_ms=$((end_ms + 86400000))
rows=$(round_lines | awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "rows") s += $i } END { print s }')
have=$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT count(*) FROM stock")
[ "$have" = $((skus * 4)) ] || die "the replica holds $have stock rows, not $((skus * 4))"
fig sync_rows "$rows"
fig sync_seconds "$(awk -v ms=$((end_ms - start_ms)) 'BEGIN { printf "%.3f\n", ms / 1000 }')"
fig sync_rows_per_s "$(awk -v r="$rows" -v ms=$((end_ms - start_ms)) 'BEGIN { printf "%d\n", ms ? r * 1000 / ms : 0 }')"
fig sync_tallyd_cpu_s "$(cpu_s "$tallyd_pid")"
fig sync_sim_cpu_s "$(cpu_s "$sim_pid")"
fig rss_kb "$(rss_kb "$tallyd_pid")"
fig rss_peak_kb "$(hwm_kb "$tallyd_pid")"
[ "$latency" = 1 ] && grep -v '^stock.get' "$tmp/lat-sync"

if [ "$reconcile" = 1 ]; then
    # reconcile_ms is set when a stream's first round ends: wait until it has passed for all.
    sleep 10.5
    "$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d 3600 --until-file "$tmp/reconciled" \
        --kv recon_lat >"$tmp/lat-recon" &
    rpc_pid=$!
    extra_pids="$extra_pids $rpc_pid"
    t sync inventory >/dev/null
    wait_rounds 8
    touch "$tmp/reconciled"
    wait "$rpc_pid"
    # each round's own duration ("..., 12.3 s") counts back from its end line
    r_ms=$(round_lines | tail -n 4 | awk '{ split(substr($1, 12, 12), a, ":");
        end = (a[1] * 3600 + a[2] * 60 + a[3]) * 1000; st = end - $(NF - 1) * 1000;
        if (NR == 1 || st < s) s = st; if (end > e) e = end } END { printf "%d\n", e - s }')
    r_rows=$(round_lines | tail -n 4 | awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "rows") s += $i } END { print s }')
    fig reconcile_rows "$r_rows"
    fig reconcile_seconds "$(awk -v ms="$r_ms" 'BEGIN { printf "%.3f\n", ms / 1000 }')"
    fig reconcile_rows_per_s "$(awk -v r="$r_rows" -v ms="$r_ms" 'BEGIN { printf "%d\n", ms ? r * 1000 / ms : 0 }')"
    grep -v '^stock.get' "$tmp/lat-recon"
fi

if [ "$anchor" = 1 ]; then
    stop_tallyd
    args=()
    for w in "${WAREHOUSES[@]}"; do args+=("$w=$tmp/sim-$w.csv"); done
    "$B/tests/sqlite_upsert" "$tmp/anchor.db" "${args[@]}"
fi
