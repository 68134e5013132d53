#!/usr/bin/env bash
# The title index (daemon/titleidx.h) during and after an initial sync, builds side by side in
# one run: a fresh tallyd pulls SKUS SKUs x 4 warehouses from tally-sim (every SKU new, so every
# title is queued and indexed in the background), while one connection asks stock.get.
#   tests/bench/bench_titles.sh SKUS RUNS BUILD...
# The builds take turns, RUNS times (one simulator for all). Per build and run, lines
# `BUILD run name value`:
#   sync_s            tallyd's "serving" line to the last warehouse's round line
#   indexed_s         "serving" to the last "title index: N titles indexed" line
#   title_tx_max_ms   the longest writer-lock hold of the title job's transactions (the most
#                     its "longest transaction" log figures say, wall clock; builds that log
#                     them), title_tx_cpu_max_ms the same in the thread's CPU time
#   lat_p50_us, lat_p99_us, lat_p999_us, lat_max_us, lat_rps   stock.get at 1 connection from
#                     the start until the titles are indexed and merged (queue empty, then 2 s)
#   segments          FTS5 segments of the index at the end (distinct segid in sku_titles_idx)
#   search_p50_us, search_p99_us   catalog.search of one SKU's code at 1 connection, 3 s
set -euo pipefail
usage="usage: bench_titles.sh SKUS RUNS BUILD..."
skus=${1:?$usage} runs=${2:?$usage}
shift 2
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
builds=("$@")
B=$(cd "${builds[0]}" && pwd)
. "$(dirname "$0")/lib.sh"
bench_init

start_sim --skus "$skus" --orders 0 --seed 1
ctl -o "$tmp/sim-ES-MAD.csv" "$base/control/stock?wh=ES-MAD&format=csv"
sku=$(awk -F, 'NR == 2 { print $1 }' "$tmp/sim-ES-MAD.csv")
write_config

round_lines() { grep -E ':inventory: [0-9]+ rows in [0-9]+ pages' "$tmp/tallyd.log" || true; }
queued() { sqlite3 -readonly "$tmp/state/replica.db" "SELECT COUNT(*) FROM sku_titles_todo" 2>/dev/null || echo 1; }
ms_of() { log_ms "$1"; }

for run in $(seq "$runs"); do
    for b in "${builds[@]}"; do
        B=$(cd "$b" && pwd)
        TALLYD=$B/tallyd TALLY=$B/tally RPC=$B/tests/bench_rpc
        name=$(basename "$(dirname "$B")")-$(basename "$B")
        say() { printf '%s %s %s %s\n' "$name" "$run" "$1" "$2"; }
        rm -rf "$tmp/state" "$tmp/tallyd.log" "$tmp/done"
        mkdir -m 700 "$tmp/state"
        start_tallyd
        "$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d 3600 --until-file "$tmp/done" --allow-errors \
            --kv lat >"$tmp/lat" 2>/dev/null &
        rpc_pid=$!
        for _ in $(seq 36000); do
            [ "$(round_lines | wc -l)" -ge 4 ] && [ "$(queued)" = 0 ] && break
            kill -0 "$tallyd_pid" 2>/dev/null || die "tallyd died"
            sleep 0.05
        done
        sleep 2 # the merges after the last titles
        touch "$tmp/done"
        wait "$rpc_pid"
        start=$(ms_of "$(grep -m1 ' serving ' "$tmp/tallyd.log")")
        sync_end=$(ms_of "$(round_lines | tail -n 1)")
        idx_end=$(ms_of "$(grep 'titles indexed' "$tmp/tallyd.log" | tail -n 1)")
        say sync_s "$(awk -v ms=$((sync_end - start)) 'BEGIN { printf "%.3f\n", ms / 1000 }')"
        say indexed_s "$(awk -v ms=$((idx_end - start)) 'BEGIN { printf "%.3f\n", ms / 1000 }')"
        say title_tx_max_ms "$(grep -o 'longest transaction [0-9.]* ms' "$tmp/tallyd.log" |
            awk '$3 > m { m = $3 } END { print m + 0 }')"
        say title_tx_cpu_max_ms "$(grep -o 'ms, [0-9.]* ms CPU' "$tmp/tallyd.log" |
            awk '$2 > m { m = $2 } END { print m + 0 }')"
        grep -E '^lat_(p50|p99|p999|max)_us|^lat_rps' "$tmp/lat" | sed "s/^/$name $run /"
        say segments "$(sqlite3 -readonly "$tmp/state/replica.db" \
            'SELECT COUNT(DISTINCT segid) FROM sku_titles_idx')"
        "$RPC" "$tmp/tally.sock" -m catalog.search -k "" -a "q=$sku" -c 1 -d 3 --kv search \
            2>/dev/null | grep -E '^search_p(50|99)_us' | sed "s/^/$name $run /"
        stop_tallyd
        grep -h 'title index:' "$tmp/tallyd.log" | sed "s/^/$name $run log: /" >&2 || true
    done
done
