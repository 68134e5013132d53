#!/usr/bin/env bash
# tally's figures beside their anchors (Redis, SQLite, curl), measured in one run, as one table.
#
#   scripts/bench.sh [--quick] [--runs N] [--skus-list N,N,...] [--only GROUP...] [--out FILE]
#                    [--build DIR] [--no-build] [--no-install] [--keep DIR] [--report DIR]
#                    [--sync-skus N] [--import-skus N] [--drain N] [--orders N] [--fulfil-skus N]
#
# Installs Redis from Debian when missing (scripts/install-deps.sh), builds the release tree
# (scripts/build.sh build-bench), runs each measurement of tests/bench/ --runs times (default 3)
# and prints the machine, the load, and the table: each figure the median of the runs, beside
# its anchor measured in the same run, the ratio and the budget of issue 10.
#
# GROUPs (--only takes one or more): rpc (stock.get beside Redis GET), sync (initial sync from
# tally-sim beside SQLite upserts of the same rows; in another run, query latency during a sync
# and during a reconciliation round; RSS), import (catalog import; latency meanwhile), drain
# (movements recorded offline, the outbox drain after the outage beside curl one by one),
# fulfil (the fulfilment pass after a start, tally stock / status, start to first answer, a
# purge), scale (sync time and RSS at each size of --skus-list, beside SQLite upserts of the
# same rows).
#
# --quick: small sizes, one run, a few seconds a measurement: what CI runs (CTest bench.quick,
# with --no-build --no-install: when Redis is absent its anchor is skipped, and says so).
# --no-build uses the tree in --build DIR as it is; --no-install never installs Redis.
# --keep DIR keeps each run's raw figures (GROUP.RUN files of `name value` lines) in DIR;
# --report DIR measures nothing and prints the table of figures kept so (same sizes options).
# Exits 1 when a measurement failed or a figure is missing; never judges a figure.
# Everything runs on loopback and Unix sockets in temporary directories, stopped on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

runs=3 quick=0 build=build-bench do_build=1 install=1 out='' only=() keep='' report=''

skus_list='' sync_skus=100000 import_skus=1000000 drain_n=100000 orders=100000 fulfil_skus=1000000
rpc_secs=3 rpc_rounds=3 redis_req=200000 window=10 set_runs=''
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1; shift ;;
    --runs) set_runs=$2; shift 2 ;;
    --skus-list) skus_list=$2; shift 2 ;;
    --only)
        shift
        while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do only+=("$1"); shift; done
        ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-install) install=0; shift ;;
    --keep) keep=$2; shift 2 ;;
    --report) report=$2; shift 2 ;;
    --sync-skus) sync_skus=$2; shift 2 ;;
    --import-skus) import_skus=$2; shift 2 ;;
    --drain) drain_n=$2; shift 2 ;;
    --orders) orders=$2; shift 2 ;;
    --fulfil-skus) fulfil_skus=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
if [ "$quick" = 1 ]; then
    runs=1 sync_skus=1000 import_skus=5000 drain_n=200 orders=300 fulfil_skus=500
    rpc_secs=1 rpc_rounds=1 redis_req=20000 window=1
    skus_list=${skus_list:-500,1000}
fi
runs=${set_runs:-$runs}
skus_list=${skus_list:-10000,100000,1000000}
groups=(rpc sync import drain fulfil scale)
[ ${#only[@]} -gt 0 ] && groups=("${only[@]}")
for g in "${groups[@]}"; do
    case $g in rpc | sync | import | drain | fulfil | scale) ;;
    *) echo "bench.sh: unknown group $g (rpc sync import drain fulfil scale)" >&2; exit 2 ;;
    esac
done
for v in "$runs" "$sync_skus" "$import_skus" "$drain_n" "$orders" "$fulfil_skus" ${skus_list//,/ }; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: not a positive integer: $v" >&2; exit 2; }
done
want() { local g; for g in "${groups[@]}"; do [ "$g" = "$1" ] && return 0; done; return 1; }

if [ -n "$report" ]; then
    work=$(cd "$report" && pwd)
    do_build=0 install=0
    [ -n "$set_runs" ] || runs=$(find "$work" -maxdepth 1 -type f -name '*.[0-9]*' ! -name '*.err' | sed 's/.*\.//' | sort -n | tail -n 1)
    [ -n "$runs" ] || { echo "bench.sh: no figures in $report" >&2; exit 2; }
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/tally-benchrun.XXXXXX")
fi
cleanup() {
    # each measurement stops what it started (its own trap); this only removes the run's files
    if [ -z "$report" ]; then
        if [ -n "$keep" ]; then mkdir -p "$keep" && cp "$work"/*.[0-9]* "$keep"/ 2>/dev/null || true; fi
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Redis and the build ----------------------------------------------------------------------
redis_flag=()
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    if [ "$install" = 1 ]; then
        scripts/install-deps.sh
    fi
fi
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "bench.sh: Redis is not installed: the Redis anchor is skipped" >&2
    redis_flag=(--no-redis)
fi
if [ "$do_build" = 1 ]; then
    scripts/build.sh "$build" >&2
fi
# The tree measured, read when it is built: the header is printed at the end, and a commit
# made meanwhile is not what ran.
tree_rev="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+changes')"
if [ -z "$report" ]; then
    B=$(cd "$build" && pwd)
    [ -x "$B/tallyd" ] || { echo "bench.sh: no tallyd in $B (build first, or drop --no-build)" >&2; exit 2; }
fi

# --- The machine ------------------------------------------------------------------------------
state_fs=$(df -PT "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $1 " (" $2 ")" }')
header() {
    echo "tally bench, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $tree_rev, build $(awk -F= '/^CMAKE_BUILD_TYPE:/ { print $2 }' "${B:-$build}/CMakeCache.txt" 2>/dev/null)"
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r), state dirs on ${TMPDIR:-/tmp}: $state_fs"
    echo "load at start: $load0"
    echo "runs: $runs (each figure the median of the runs), sizes: sync $sync_skus SKUs x 4, import $import_skus SKUs, drain $drain_n movements, fulfil $orders orders on $fulfil_skus SKUs x 4, scale $skus_list"
}
load0=$(uptime | sed 's/.*load average: //')
[ -n "$report" ] && load0="(not known: --report of figures kept earlier)"
header >&2

# --- The measurements -------------------------------------------------------------------------
failed=0
# measure GROUP RUN COMMAND...: the figures of one run into $work/GROUP.RUN
measure() {
    local g=$1 r=$2
    shift 2
    echo "bench.sh: $g, run $r/$runs: ${*#"$root/"}" >&2
    if ! "$@" >"$work/$g.$r" 2>"$work/$g.$r.err"; then
        echo "bench.sh: $g run $r failed:" >&2
        tail -n 5 "$work/$g.$r.err" >&2
        failed=1
    fi
}
cache="$work/cache"
for r in $(seq "$runs"); do
    [ -n "$report" ] && break
    want rpc && measure rpc "$r" tests/bench/bench_stockget.sh "$B" --seconds "$rpc_secs" \
        --rounds "$rpc_rounds" --redis-requests "$redis_req" "${redis_flag[@]}"
    # The sync's rate beside SQLite's from a run with nothing else asking tallyd anything; the
    # latency of a query during a sync from another run (its query client takes a CPU of its
    # own and the loop's time: that run's sync time is printed beside its latency).
    want sync && measure sync "$r" tests/bench/bench_sync.sh "$B" "$sync_skus" --anchor
    want sync && measure synclat "$r" tests/bench/bench_sync.sh "$B" "$sync_skus" --latency \
        --reconcile
    want import && measure import "$r" tests/bench/bench_import.sh "$B" "$import_skus" --latency
    want drain && measure drain "$r" tests/bench/bench_drain.sh "$B" "$drain_n"
    want fulfil && measure fulfil "$r" tests/bench/bench_fulfil.sh "$B" "$orders" \
        --skus "$fulfil_skus" --window "$window" --cache "$cache"
    if want scale; then
        for n in ${skus_list//,/ }; do
            # the sync group's own run at this size serves (the same measurement)
            if want sync && [ "$n" = "$sync_skus" ]; then
                cp "$work/sync.$r" "$work/scale$n.$r"
            else
                measure "scale$n" "$r" tests/bench/bench_sync.sh "$B" "$n" --anchor
            fi
        done
    fi
done

# --- Medians and the table --------------------------------------------------------------------
# v GROUP NAME: the median over the runs of figure NAME of GROUP ("skipped" if any run skipped
# it; empty when missing)
v() {
    local r
    for r in $(seq "$runs"); do cat "$work/$1.$r" 2>/dev/null || true; done |
        awk -v n="$2" '$1 == n { print $2 }' | {
        mapfile -t vals
        if [ ${#vals[@]} -eq 0 ]; then
            echo ''
        elif grep -qx skipped < <(printf '%s\n' "${vals[@]}"); then
            echo skipped
        else
            printf '%s\n' "${vals[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
        fi
    }
}
missing=0
# need VALUE: VALUE, or "MISSING" (and the run fails)
need() {
    if [ -z "$1" ]; then
        missing=1
        echo MISSING
    else
        echo "$1"
    fi
}
fmt_int() { [[ $1 =~ ^[0-9]+$ ]] && echo "$1" | sed -e :a -e 's/\B[0-9]\{3\}\>/,&/; ta' || echo "$1"; }
ratio() { # ratio A B: A/B as 0.57x
    [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×\n", a / b; else print "—" }' || echo —
}
diffus() { # diffus A B: +15 µs
    [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%+d µs\n", a - b }' || echo —
}
us_ms() { [[ $1 =~ ^[0-9]+$ ]] && awk -v u="$1" 'BEGIN { if (u < 1000) printf "%d µs", u; else if (u < 10000000) printf "%.1f ms", u / 1000; else printf "%.1f s", u / 1e6 }' || echo "$1"; }
lat() { # lat GROUP PREFIX: p50 / p99 / p99.9 / max, req/s
    local g=$1 p=$2 a b c d e
    a=$(need "$(v "$g" "${p}_p50_us")") b=$(need "$(v "$g" "${p}_p99_us")")
    c=$(need "$(v "$g" "${p}_p999_us")") d=$(need "$(v "$g" "${p}_max_us")")
    e=$(v "$g" "${p}_rps")
    echo "p50 $(us_ms "$a"), p99 $(us_ms "$b"), p99.9 $(us_ms "$c"), max $(us_ms "$d")${e:+, $(fmt_int "$e") req/s}"
}
run_ratios() { # run_ratios GROUP A B: " (runs 1.02×, 1.00×, 0.94×)": A/B of each run, when more than one
    local r a b out=''
    [ "$runs" -gt 1 ] || return 0
    for r in $(seq "$runs"); do
        a=$(awk -v n="$2" '$1 == n { print $2 }' "$work/$1.$r" 2>/dev/null)
        b=$(awk -v n="$3" '$1 == n { print $2 }' "$work/$1.$r" 2>/dev/null)
        out+="${out:+, }$(ratio "$a" "$b")"
    done
    echo " (runs $out)"
}
cpu_note() { # cpu_note CPU_US [CLIENT_PCT]: " (3.04 µs of CPU a request, client at 99%)", or nothing
    [[ $1 =~ ^[0-9.]+$ ]] || return 0
    if [[ ${2:-} =~ ^[0-9]+$ ]]; then
        echo " ($1 µs of the server's CPU a request; the client at $2% of a CPU)"
    else
        echo " ($1 µs of the server's CPU a request)"
    fi
}
srv_note() { # srv_note CPU_US SERVER_PCT: " (6.01 µs of the server's CPU a request; the server at 70% of a CPU)"
    [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9]+$ ]] || return 0
    echo " ($1 µs of the server's CPU a request; the server at $2% of a CPU)"
}
mib() { [[ $1 =~ ^[0-9]+$ ]] && awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }' || echo "$1"; }
si() { awk -v n="$1" 'BEGIN { if (n >= 1000000 && n % 1000000 == 0) printf "%dM", n / 1e6; else if (n >= 1000 && n % 1000 == 0) printf "%dk", n / 1000; else printf "%d", n }'; }

table() {
    echo "| what | tally | anchor, same run | ratio | budget |"
    echo "|---|---|---|---|---|"
    if want rpc; then
        local tb t50 r50 tc1 rc1 rb50 rb1 who=', same client' b50='' b1=''
        tb=$(v rpc stockget_answer_bytes)
        t50=$(need "$(v rpc stockget_c50_rps)") r50=$(need "$(v rpc redis_get_c50_rps)")
        tc1=$(need "$(v rpc stockget_c1_p50_us)") rc1=$(need "$(v rpc redis_get_c1_p50_us)")
        # redis-benchmark's figures (its own client), for reference. Figures kept (--keep)
        # before the anchor was bench_rpc --resp have none: their redis_get_* are
        # redis-benchmark's, and the table says so.
        rb50=$(v rpc redis_bench_c50_rps) rb1=$(v rpc redis_bench_c1_p50_us)
        if [ -n "$report" ] && [ -z "$rb50$rb1" ]; then
            who=', redis-benchmark (figures kept before the anchor had the same client as stock.get)'
        else
            rb50=$(need "$rb50") rb1=$(need "$rb1")
            [ "$rb50" = skipped ] || b50=" (redis-benchmark: $(fmt_int "$rb50") req/s)"
            [ "$rb1" = skipped ] || b1=" (redis-benchmark: $rb1 µs)"
        fi
        # the server's CPU per request and the client's CPU, when measured (figures kept
        # before they were have none)
        local tcpu rcpu
        tcpu=$(cpu_note "$(v rpc stockget_c50_cpu_us)" "$(v rpc stockget_c50_client_pct)")
        rcpu=$(cpu_note "$(v rpc redis_get_c50_cpu_us)" "$(v rpc redis_get_c50_client_pct)")
        local a50="$(fmt_int "$r50") req/s$rcpu$b50" a1="$rc1 µs$b1"
        [ "$r50" = skipped ] && a50='skipped (Redis not installed)'
        [ "$rc1" = skipped ] && a1='skipped (Redis not installed)'
        echo "| \`stock.get\` at 50 connections (one client process, as redis-benchmark) | $(fmt_int "$t50") req/s$tcpu | Redis GET of a same-size value (${tb:-?} B)$who: $a50 | $(ratio "$t50" "$r50")$(run_ratios rpc stockget_c50_rps redis_get_c50_rps) | ≥ 1.0× |"
        local m50 rm50
        m50=$(v rpc stockget_many_c50_rps) rm50=$(v rpc redis_get_many_c50_rps)
        if [ -n "$m50" ]; then
            rm50=$(need "$rm50")
            local am50="$(fmt_int "$rm50") req/s$(cpu_note "$(v rpc redis_get_many_c50_cpu_us)")"
            [ "$rm50" = skipped ] && am50='skipped (Redis not installed)'
            echo "| \`stock.get\` at 50 connections, each asking the station's 1,000 SKUs in turn | $(fmt_int "$m50") req/s$(cpu_note "$(v rpc stockget_many_c50_cpu_us)") | Redis GET of 1,000 keys of that size in turn, same client: $am50 | $(ratio "$m50" "$rm50") | none (the row above is the budget's: one key) |"
        fi
        # 50 processes of one connection each (figures kept before they were measured have none)
        local p50 rp50
        p50=$(v rpc stockget_procs_rps) rp50=$(v rpc redis_get_procs_rps)
        if [ -n "$p50" ]; then
            rp50=$(need "$rp50")
            local ap50="$(fmt_int "$rp50") req/s$(srv_note "$(v rpc redis_get_procs_cpu_us)" "$(v rpc redis_get_procs_server_pct)")"
            [ "$rp50" = skipped ] && ap50='skipped (Redis not installed)'
            echo "| \`stock.get\` from 50 processes of one connection each (the processes, not the server, are the limit) | $(fmt_int "$p50") req/s$(srv_note "$(v rpc stockget_procs_cpu_us)" "$(v rpc stockget_procs_server_pct)") | Redis GET, same processes: $ap50 | $(ratio "$p50" "$rp50")$(run_ratios rpc stockget_procs_rps redis_get_procs_rps) | none (the budget's row is the first) |"
        fi
        echo "| \`stock.get\` at 1 connection, p50 | $tc1 µs | Redis GET p50$who: $a1 | $(diffus "$tc1" "$rc1") | ≤ +10 µs |"
    fi
    if want sync; then
        local sr sq
        sr=$(need "$(v sync sync_rows_per_s)") sq=$(need "$(v sync sqlite_upsert_rows_per_s)")
        echo "| initial sync, $(si "$sync_skus") SKUs × 4 warehouses from tally-sim | $(fmt_int "$sr") rows/s ($(v sync sync_seconds) s) | SQLite prepared upserts of the same rows, 10k-row transactions: $(fmt_int "$sq") rows/s | $(ratio "$sr" "$sq") | ≥ 0.5× |"
        # Figures kept (--keep) before the latency had a run of its own: the rate and the
        # latency are of one run, with the query client asking all along, and the table says so.
        local lg=synclat lw
        [ -n "$report" ] && [ -z "$(v synclat sync_lat_p50_us)" ] && [ -n "$(v sync sync_lat_p50_us)" ] && lg=sync
        if [ "$lg" = sync ]; then
            lw="the same run as the rate above (figures kept before the latency had a run of its own: that rate was measured with this query client asking all along)"
        else
            lw="another run: with that query client asking all along, the sync took $(need "$(v synclat sync_seconds)") s"
        fi
        echo "| \`stock.get\` (1 connection) during an initial sync of $(si "$sync_skus") × 4 ($lw) | $(lat "$lg" sync_lat) | — | — | p99 ≤ 5 ms |"
        echo "| same during a reconciliation round of $(si "$sync_skus") SKUs × 4 ($(v "$lg" reconcile_seconds) s) | $(lat "$lg" recon_lat) | — | — | p99 ≤ 5 ms |"
        echo "| RSS after the sync of $(si "$sync_skus") × 4 (peak) | $(mib "$(need "$(v sync rss_kb)")") ($(mib "$(v sync rss_peak_kb)")) | — | — | ≤ 32 MiB at 1M × 4 |"
    fi
    if want fulfil; then
        echo "| \`stock.get\` (1 connection) while $(si "$orders") orders are imported and allocated (the fulfilment pass over them, $(v fulfil pass_seconds) s) | $(lat fulfil pass_lat) | — | — | p99 ≤ 5 ms |"
        echo "| \`stock.get\` (1 connection) in the ${window} s after a start, $(si "$orders") orders on $(si "$fulfil_skus") × 4 (the fulfilment pass) | $(lat fulfil fulfil_lat) | — | — | p99 ≤ 5 ms |"
        echo "| same during a purge ($(v fulfil purge_orders) finished orders, $(v fulfil purge_seconds) s) | $(lat fulfil purge_lat) | — | — | p99 ≤ 5 ms |"
    fi
    if want import; then
        local ir
        ir=$(need "$(v import import_rows_per_s)")
        echo "| catalog import, $(si "$import_skus") SKUs | $(fmt_int "$ir") rows/s ($(need "$(v import import_seconds)") s) | — | — | ≥ 100k rows/s; 1M in ≤ 15 s |"
        echo "| same, \`stock.get\` (1 connection) meanwhile | $(lat import import_lat) | — | — | p99 ≤ 5 ms |"
    fi
    if want drain; then
        local dr cr
        dr=$(need "$(v drain drain_per_s)") cr=$(need "$(v drain curl_one_by_one_per_s)")
        echo "| outbox drain after an outage: $(fmt_int "$(v drain drain_movements)") movements to tally-sim | $(fmt_int "$dr") movements/s ($(v drain drain_seconds) s from the link's return) | curl, one movement per request on one connection: $(fmt_int "$cr")/s | $(ratio "$dr" "$cr") | ≥ 20k/s |"
        echo "| movements recorded offline, 200 pipelined on one connection | $(fmt_int "$(need "$(v drain offline_pipelined_per_s)")")/s | — | — | ≥ 20k/s, each durable before its answer |"
        echo "| movements recorded offline from 50 connections (group commit) | $(fmt_int "$(need "$(v drain offline_clients_per_s)")")/s | — | — | ≥ 20k/s, each durable before its answer |"
        echo "| one client's single movement, p50 | $(us_ms "$(need "$(v drain single_move_p50_us)")") | — | — | as today |"
    fi
    if want fulfil; then
        echo "| \`tally stock\` whole process, idle / at once after a start ($(si "$fulfil_skus") × 4, $(si "$orders") orders) | $(need "$(v fulfil cli_stock_idle_ms)") ms / $(need "$(v fulfil cli_stock_after_start_ms)") ms | a static program that does nothing, timed the same way: $(need "$(v fulfil cli_floor_ms)") ms | — | ≤ 3 ms at any time |"
        echo "| \`tally status\` whole process; \`status\` method p50 / max at 1 connection | $(need "$(v fulfil cli_status_ms)") ms; $(us_ms "$(need "$(v fulfil status_p50_us)")") / $(us_ms "$(need "$(v fulfil status_max_us)")") | — | — | ≤ 5 ms |"
        echo "| RSS of that station, settled | $(mib "$(need "$(v fulfil rss_kb)")") | — | — | ≤ 32 MiB at 1M × 4 |"
        echo "| start to first answer, that station | $(need "$(v fulfil start_first_answer_ms)") ms | — | — | ≤ 100 ms |"
    fi
    if want scale; then
        local n
        for n in ${skus_list//,/ }; do
            local gr ga
            gr=$(need "$(v "scale$n" sync_rows_per_s)") ga=$(v "scale$n" sqlite_upsert_rows_per_s)
            # figures kept before every size had its anchor: none for this size, said so
            local anchor="not measured (figures kept before every size had its anchor)"
            if [ -z "$report" ] || [ -n "$ga" ]; then
                ga=$(need "$ga")
                anchor="SQLite upserts of the same rows: $(fmt_int "$ga") rows/s"
            fi
            echo "| how cost grows: sync of $(si "$n") SKUs × 4 | $(need "$(v "scale$n" sync_seconds)") s, $(fmt_int "$gr") rows/s, RSS $(mib "$(need "$(v "scale$n" rss_kb)")") (peak $(mib "$(v "scale$n" rss_peak_kb)")) | $anchor | $(ratio "$gr" "$ga") | at 1M × 4: ≥ 0.5×, RSS ≤ 32 MiB |"
        done
    fi
}
tab=$(table)
{
    header
    [ ${#redis_flag[@]} -gt 0 ] && [ -z "$report" ] && echo "Redis not installed: its anchor skipped"
    [ -z "$report" ] && echo "load at end: $(uptime | sed 's/.*load average: //')"
    echo
    echo "$tab"
} >"$work/report"
cat "$work/report"
[ -n "$out" ] && cp "$work/report" "$out"
if [ "$missing" = 1 ] || grep -q MISSING <<<"$tab"; then
    echo "bench.sh: some figures are missing (MISSING above)" >&2
    exit 1
fi
if [ "$failed" = 1 ]; then
    echo "bench.sh: a measurement failed (see above)" >&2
    exit 1
fi
