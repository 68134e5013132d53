#!/usr/bin/env bash
# The soak (tests/README.md "Reliability" -> "Soak"): tallyd against tally-sim at a promotion-day
# order rate with faults on, for M minutes, printing a table row every M/12 (at most every
# minute), then checking that it held up.
#
#   scripts/soak.sh [BUILD_DIR] --minutes M [--seconds S] [--rate ORDERS_PER_MIN]
#                   [--rows N] [--invariants-only] [--keep] [--outbox-keep S]
#
# The world: tally-sim with every warehouse kind it serves (ES-MAD and PL-WAW: tally Warehouse API
# v1; UK-GC: Goodcang; US-4PX: 4PX) and the marketplace (--skus 2000, 50 orders of backlog,
# outbound orders moving one step every 20 simulated seconds). tallyd is the coordinator: it
# pulls catalog, orders and every warehouse's stock and outbound feed, allocates, sends outbound
# orders, uploads shipments and publishes stock.
#
# The load, all at once:
#   - orders: ORDERS_PER_MIN paid orders a minute placed at the marketplace (POST /control/orders,
#     every second); one in 20 then cancelled by the buyer (IN_CANCEL); 100 warehouse-side stock
#     changes every 10 s (the goods the orders take are replenished);
#   - writers: 5 receives a second into ES-MAD / PL-WAW through the socket (bench_rpc -m
#     stock.move), a transfer ES-MAD -> UK-GC (an inbound notice) every 30 s;
#   - readers: `tally status` and `tally stock SKU` every 5 s, and stock.get at 50 requests a
#     second on one connection (bench_rpc --rate 50 -c 1): its p50/p99 per interval is the
#     table's query latency;
#   - faults (POST /control/faults, on every upstream, from the first row on): 503 with
#     Retry-After 1 (3 % of requests), 429 with Retry-After 2 (2 %), a lost answer (applied,
#     answer dropped: 1 %), a stall of 5 s, beyond tallyd's request_timeout of 3 s (0.5 %), a
#     reset (0.5 %), and ApiCallLimit from the gateway (2 %).
#
# "Normal" order rate: the simulator has no arrival rate of its own (its default backlog, --orders
# 50 created over 7 days, is about 7 orders a day, a hobby shop); the station is sized, in
# DESIGN.md and the README's performance part, for 100,000 open orders, which with the 3-day
# handling time (sim README, order.get: "3 days handling time from payment") is about 33,000
# orders a day: 23 a minute. Ten times that, a promotion day: --rate 230 (default).
#
# Columns: elapsed s, tallyd RSS (MiB), outbox depth (pending + inflight + held), open exceptions
# and how many of them have no deadline (deadline NULL or <= 0), orders seen / allocated (an
# allocation row) / uploaded (a shipment uploaded to the marketplace), stock.get p50 and p99 (us)
# at one connection over the interval, errors in the interval (failed client calls, error answers
# to the reader, `tallyd error:` log lines), and the outbox's rows in all (done and discarded
# ones too: what the retention, [sync] outbox_keep_days, keeps bounded; --outbox-keep S sets it
# to S seconds, `outbox_keep_seconds`, so that a short run shows it pruning).
#
# Checks at the end, PASS/FAIL each:
#   - tallyd alive all along, and every row sampled; it stops cleanly on SIGTERM at the end;
#   - no open exception without a deadline (every row);
#   - every movement applied upstream at most once; no order's units held at warehouses beyond
#     the order's (a split order is at two on purpose; an order allocated twice is not); no
#     shipment uploaded twice (the simulator's /control/movements, /control/outbound and
#     /control/orders, /control/fulfilments);
#   - trends (skipped with --invariants-only, which the short CTest run uses: 45 s is mostly
#     warm-up):
#     RSS flat: the last third's max <= the first third's max + 10 %;
#     outbox bounded: the last third's max <= the first third's max * 1.5 + 50 (a queue that
#     keeps up returns to its level; one that does not grows with the orders);
#     query p99 within the part-6 budget: the median of the rows' p99 <= 5 ms, and no row's
#     p99 beyond 4 x 5 ms (the machine is shared; a row is one interval).
# Exit status 0 when every check passed, 1 otherwise, 2 on a usage or start-up error.
set -uo pipefail
export LC_ALL=C
umask 077 # tallyd refuses a config file or secret file group or others may read
cd "$(dirname "$0")/.."
build=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then build=$1; shift; fi
minutes='' seconds='' rate=230 rows=12 invariants_only=0 keep=0 outbox_keep=''
while [ $# -gt 0 ]; do
    case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --invariants-only) invariants_only=1; shift ;;
    --keep) keep=1; shift ;;
    --outbox-keep) outbox_keep=$2; shift 2 ;;
    *) echo "usage: soak.sh [BUILD_DIR] --minutes M | --seconds S [--rate N] [--rows N] [--invariants-only] [--keep] [--outbox-keep S]" >&2; exit 2 ;;
    esac
done
if [ -n "$minutes" ]; then total=$((minutes * 60)); elif [ -n "$seconds" ]; then total=$seconds; else
    echo "soak.sh: --minutes M (or --seconds S) wanted" >&2
    exit 2
fi
[ "$total" -ge 12 ] && [ "$rows" -ge 3 ] && [ "$rate" -ge 1 ] || { echo "soak.sh: too short" >&2; exit 2; }
interval=$((total / rows))
[ "$interval" -gt 60 ] && { interval=60; rows=$((total / 60)); }

# Binaries copied first, so a rebuild of BUILD_DIR during a long run changes nothing under it.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-soak.XXXXXX")
mkdir -p "$tmp/bin" "$tmp/state"
chmod 700 "$tmp/state"
for f in tallyd tally tests/sim/tally-sim tests/bench_rpc; do
    [ -x "$build/$f" ] || { echo "soak.sh: $build/$f missing (scripts/build.sh $build)" >&2; exit 2; }
    cp "$build/$f" "$tmp/bin/"
done
B=$tmp/bin
sim_pid='' tallyd_pid='' bg_pids=''
cleanup() {
    local rc=$? p
    trap - EXIT
    for p in $bg_pids; do kill "$p" 2>/dev/null; done
    [ -n "$tallyd_pid" ] && kill -TERM "$tallyd_pid" 2>/dev/null
    sleep 0.5
    [ -n "$tallyd_pid" ] && kill -KILL "$tallyd_pid" 2>/dev/null
    [ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null
    wait 2>/dev/null
    if [ "$keep" = 1 ] || [ "$rc" != 0 ]; then echo "soak.sh: kept $tmp" >&2; else rm -rf "$tmp"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WHS=(ES-MAD PL-WAW UK-GC US-4PX)
"$B/tally-sim" --port 0 --seed 7 --skus 2000 --orders 50 --outbound-step-seconds 20 \
    --warehouses ES-MAD:tally,PL-WAW:tally,UK-GC:goodcang,US-4PX:fourpx \
    >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim_pid=$!
for _ in $(seq 600); do
    grep -q listening "$tmp/sim.out" 2>/dev/null && break
    sleep 0.05
done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/sim.out")
[ -n "$port" ] || { cat "$tmp/sim.err" >&2; echo "soak.sh: tally-sim did not start" >&2; exit 2; }
base=http://127.0.0.1:$port
ctl() { curl -sS --max-time 30 "$@"; }

echo tally-sim-wh-token >"$tmp/wh.token"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
{
    printf '[station]\nname = SOAK\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
    printf 'reconcile_interval = 300\n'
    [ -n "$outbox_keep" ] && printf 'outbox_keep_seconds = %s\n' "$outbox_keep"
    printf '[carriers]\n'
    for c in Correos "La Poste" "Poczta Polska" USPS Correios PostNL "Deutsche Post" \
        "Poste Italiane" DHL UK-RM48 FPX-US-GROUND; do
        printf '%s = CPAM\n' "$c"
    done
    for w in ES-MAD PL-WAW; do
        printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\ncountry = %s\n' \
            "$w" "$base" "$w" "$tmp/wh.token" "${w:0:2}"
        printf 'inventory_interval = 5\noutbound_interval = 2\n'
    done
    printf '[warehouse UK-GC]\nkind = goodcang\nurl = %s/wh/UK-GC\napp_key = tally-sim-3pl-key\n' "$base"
    printf 'app_token_file = %s\ncountry = GB\nshipping_method = UK-RM48\n' "$tmp/wh.token"
    printf 'inventory_interval = 5\noutbound_interval = 2\n'
    printf '[warehouse US-4PX]\nkind = fourpx\napp_key = tally-sim-3pl-key\n'
    printf 'app_secret_file = %s\nurl = %s/wh/US-4PX\ncountry = US\n' "$tmp/wh.token" "$base"
    printf 'shipping_method = FPX-US-GROUND\n'
    printf 'inventory_interval = 5\noutbound_interval = 2\n'
    printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
    printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
    printf 'catalog_interval = 30\norders_interval = 1\n'
} >"$tmp/tallyd.conf"

# In $tmp, with core dumps allowed (core_pattern permitting). tallyd itself makes itself not
# dumpable (PR_SET_DUMPABLE 0, daemon/main.c: its memory holds the secrets), so it leaves no
# core (fs.suid_dumpable 0): a crash shows as clean_stop's exit status (134 abort, 139 segfault)
# and in the log; for a backtrace run the ASan build (a report with its stack in the log) or
# attach gdb as root. glibc's own abort messages (heap corruption) go to the log, not to a
# terminal.
(cd "$tmp" && ulimit -c unlimited 2>/dev/null
    LIBC_FATAL_STDERR_=1 exec "$B/tallyd" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" \
        --socket "$tmp/tally.sock" --log-level warning 2>>"$tmp/tallyd.log") &
tallyd_pid=$!
t() { "$B/tally" --socket "$tmp/tally.sock" "$@"; }
for _ in $(seq 400); do t status >/dev/null 2>&1 && break; sleep 0.05; done
t status >/dev/null 2>&1 || { cat "$tmp/tallyd.log" >&2; echo "soak.sh: tallyd did not start" >&2; exit 2; }
sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@" 2>/dev/null; }
# Warm-up: the first sync (every inventory read once, the coordinator deciding), at most 120 s.
for _ in $(seq 240); do
    t --json status 2>/dev/null | jq -e '.coordination.deciding' >/dev/null 2>&1 && break
    sleep 0.5
done
mapfile -t SKUS < <(ctl "$base/control/stock?wh=ES-MAD&format=csv" | awk -F, 'NR > 1 && $2 > 0 { print $1 }' | head -50)
[ "${#SKUS[@]}" -gt 0 ] || { echo "soak.sh: no SKU with stock at ES-MAD" >&2; exit 2; }
QSKU=${SKUS[0]}

what="promotion day: 10 x the normal 23/min"
[ "$rate" = 230 ] || what="--rate; a promotion day is 230"
echo "soak: $total s, a row every $interval s; $rate orders/min ($what), faults on;" \
    "load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores; $(git rev-parse --short HEAD 2>/dev/null) $(date -u +%FT%TZ)"

ctl -X POST -H 'Content-Type: application/json' "$base/control/faults" -d '[
  {"target":"*","kind":"status","status":503,"retry_after":1,"rate":0.03},
  {"target":"*","kind":"status","status":429,"retry_after":2,"rate":0.02},
  {"target":"*","kind":"lost_answer","rate":0.01},
  {"target":"*","kind":"stall","stall_ms":5000,"rate":0.005},
  {"target":"*","kind":"reset","rate":0.005},
  {"target":"mp","kind":"api_error","code":"ApiCallLimit","rate":0.02}]' >"$tmp/faults.json" ||
    { echo "soak.sh: faults refused" >&2; exit 2; }

err() { echo "$(date +%s) $*" >>"$tmp/errors.log"; }
: >"$tmp/errors.log"
t0=$SECONDS
end_at=$((t0 + total))

# Orders, cancels and warehouse-side stock changes.
(
    placed=0 n=0
    while [ $SECONDS -lt $end_at ]; do
        # As many as the rate asks by now (the calls' own time does not slow the rate down).
        k=$(((SECONDS - t0 + 1) * rate / 60 - placed))
        if [ "$k" -gt 0 ]; then
            placed=$((placed + k))
            ids=$(ctl -X POST "$base/control/orders" -d "{\"count\": $k}" | jq -r '.created[]') ||
                err "orders"
            for id in $ids; do
                n=$((n + 1))
                [ $((n % 20)) = 0 ] &&
                    { ctl -X POST "$base/control/orders/$id/status" -d '{"status":"IN_CANCEL"}' >/dev/null || err "cancel"; }
            done
        fi
        [ $((SECONDS % 10)) = 0 ] &&
            { ctl -X POST "$base/control/stock" -d '{"changes": 100}' >/dev/null || err "stock"; }
        sleep 1
    done
) &
bg_pids+=" $!"

# Writers and the CLI readers.
(
    i=0
    while [ $SECONDS -lt $end_at ]; do
        i=$((i + 1))
        w=ES-MAD
        [ $((i % 2)) = 0 ] && w=PL-WAW
        sku=${SKUS[$((RANDOM % ${#SKUS[@]}))]}
        "$B/bench_rpc" "$tmp/tally.sock" -c 1 -n 5 -d 10 -m stock.move -k "$sku" -a kind=receive \
            -a "warehouse=$w" -a qty=1 >/dev/null 2>>"$tmp/writer.err" || err "receive $w $sku"
        if [ $((i % 30)) = 0 ]; then
            t transfer "$sku" 1 --from ES-MAD --to UK-GC >/dev/null 2>>"$tmp/writer.err" ||
                err "transfer $sku"
        fi
        if [ $((i % 5)) = 0 ]; then
            t status >/dev/null 2>&1 || err "status"
            t stock "$sku" >/dev/null 2>&1 || err "stock $sku"
        fi
        sleep 1
    done
) &
bg_pids+=" $!"

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$tallyd_pid/status" 2>/dev/null; }
printf '%7s %8s %7s %5s %6s %7s %7s %7s %8s %8s %6s %8s\n' elapsed rss_MiB outbox exc no_dl \
    seen alloc upload p50_us p99_us errors ob_rows | tee "$tmp/table"
log_seen=0 err_seen=0 alive=1
for ((r = 1; r <= rows; r++)); do
    # Row r covers up to t0 + r x interval (the sampling's own time included).
    d=$((t0 + r * interval - SECONDS))
    [ "$d" -ge 1 ] || d=1
    q=$("$B/bench_rpc" "$tmp/tally.sock" -c 1 -d "$d" --rate 50 -k "$QSKU" --allow-errors --kv q 2>&1)
    if ! kill -0 "$tallyd_pid" 2>/dev/null; then alive=0; echo "tallyd died" >&2; break; fi
    p50=$(echo "$q" | awk '$1 == "q_p50_us" { print $2 }')
    p99=$(echo "$q" | awk '$1 == "q_p99_us" { print $2 }')
    qerr=$(echo "$q" | awk '$1 == "q_errors" { print $2 }')
    logn=$(grep -c ' tallyd error: ' "$tmp/tallyd.log")
    errn=$(wc -l <"$tmp/errors.log")
    errs=$(( ${qerr:-1} + logn - log_seen + errn - err_seen ))
    log_seen=$logn err_seen=$errn
    read -r depth exc nodl seen alloc up obrows < <(sql -separator ' ' "SELECT
        (SELECT COUNT(*) FROM outbox WHERE state IN ('pending','inflight','held')),
        (SELECT COUNT(*) FROM exceptions WHERE state <> 'resolved'),
        (SELECT COUNT(*) FROM exceptions WHERE state <> 'resolved' AND (deadline IS NULL OR deadline <= 0)),
        (SELECT COUNT(*) FROM orders),
        (SELECT COUNT(DISTINCT order_ref) FROM allocations),
        (SELECT COUNT(*) FROM shipments WHERE uploaded_at IS NOT NULL),
        (SELECT COUNT(*) FROM outbox)")
    printf '%7d %8s %7s %5s %6s %7s %7s %7s %8s %8s %6s %8s\n' $((SECONDS - t0)) "$(rss_mib)" \
        "${depth:--}" "${exc:--}" "${nodl:--}" "${seen:--}" "${alloc:--}" "${up:--}" \
        "${p50:--}" "${p99:--}" "$errs" "${obrows:--}" | tee -a "$tmp/table"
done
for p in $bg_pids; do kill "$p" 2>/dev/null; done
wait $bg_pids 2>/dev/null
bg_pids=''
echo "orders at the marketplace $(ctl "$base/control/orders" | jq .count) (seen by tallyd $(sql "SELECT COUNT(*) FROM orders")); movements applied upstream $(ctl "$base/control/movements" | jq .count)"
# The marketplace's order calls (tally-sim's counts): details per order at the marketplace is
# the link's load per order (fulfil read-backs included): an order is read when it is placed
# and again when it changes (shipped, cancelled), not when a round lists it unchanged.
n_mp=$(ctl "$base/control/orders" | jq .count)
ctl "$base/control/stats" | jq -r --argjson n "${n_mp:-0}" '
    .requests as $r | ($r["mp:aliexpress.solution.order.info.get"] // 0) as $d
    | "order calls at the marketplace: \($r["mp:aliexpress.solution.order.get"] // 0) lists,"
      + " \($d) details: \(if $n > 0 then ($d * 100 / $n | floor) / 100 else "-" end)"
      + " per order at the marketplace"'
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg); faults fired: $(ctl "$base/control/faults" |
    jq -c '[.faults[] | "\(.kind // "latency") \(.status // "")x\(.fired)"]' 2>/dev/null)"

# tallyd stops cleanly on SIGTERM (exit status 0 within 30 s).
stop_rc=none
if [ "$alive" = 1 ]; then
    kill -TERM "$tallyd_pid"
    for _ in $(seq 300); do kill -0 "$tallyd_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$tallyd_pid" 2>/dev/null; then stop_rc=timeout; else
        wait "$tallyd_pid" 2>/dev/null
        stop_rc=$?
        tallyd_pid=''
    fi
fi

# ---- checks
fails=0
check() { # NAME OK(0/1) DETAIL
    if [ "$2" = 1 ]; then echo "PASS $1: $3"; else echo "FAIL $1: $3"; fails=$((fails + 1)); fi
}
check clean_stop "$([ "$stop_rc" = 0 ] && echo 1 || echo 0)" \
    "SIGTERM at the end: exit status $stop_rc$(ls "$tmp"/core* >/dev/null 2>&1 && echo ", core dumped: $(ls "$tmp"/core*)")"
info() { echo "info $1: $2 (not checked: --invariants-only)"; }
col() { awk -v c="$1" 'NR > 1 && $c != "-" { print $c }' "$tmp/table"; }
n=$(($(wc -l <"$tmp/table") - 1))
check alive "$([ "$alive" = 1 ] && [ "$n" = "$rows" ] && echo 1 || echo 0)" "$n of $rows rows, tallyd ran throughout"
nd=$(col 5 | sort -n | tail -1)
check deadlines "$([ "${nd:-1}" = 0 ] && echo 1 || echo 0)" \
    "open exceptions without a deadline, most in a row: ${nd:-none sampled} (open now: $(col 4 | tail -1))"
mx=$(ctl "$base/control/movements" | jq '.max')
check movements_once "$([ "$mx" -le 1 ] 2>/dev/null && echo 1 || echo 0)" \
    "largest apply count of a movement id upstream: $mx ($(ctl "$base/control/movements" | jq '.count') ids)"
# An order may be split over warehouses (split = true, the default): what may never happen is
# more units of an order's SKU held at the warehouses (outbound orders not cancelled) than the
# order has: that is an order allocated twice.
for w in "${WHS[@]}"; do ctl "$base/control/outbound?wh=$w"; done >"$tmp/outbound.json"
ctl "$base/control/orders" >"$tmp/orders.json"
over=$(jq -n --slurpfile ob "$tmp/outbound.json" --slurpfile od "$tmp/orders.json" '
    ([$od[0].items[] | .order_id as $o | .lines[] | {key: "\($o) \(.sku)", value: .qty}]
        | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)}) | from_entries) as $want
    | [$ob[].items[] | select(.status != "cancelled") | .id as $o | .lines[]
        | {key: "\($o) \(.sku)", qty: .qty}]
    | group_by(.key) | map({key: .[0].key, held: (map(.qty) | add)})
    | map(select(.held > ($want[.key] // 0))) | map("\(.key) held \(.held) of \($want[.key] // 0)")')
nover=$(echo "$over" | jq length)
split=$(jq -rs '[.[].items[] | select(.status != "cancelled") | .id] | group_by(.) | map(select(length > 1)) | length' "$tmp/outbound.json")
check allocated_once "$([ "$nover" = 0 ] && echo 1 || echo 0)" \
    "order lines held at warehouses beyond the order's units: $nover$([ "$nover" != 0 ] && echo " ($(echo "$over" | jq -c '.[:5]'))") ($split orders split over warehouses)"
ful=$(ctl "$base/control/fulfilments")
twice=$(echo "$ful" | jq '.max_applied_per_tracking // 0')
check uploaded_once "$([ "$twice" -le 1 ] 2>/dev/null && echo 1 || echo 0)" \
    "largest number of times one tracking number was applied at the marketplace: $twice ($(echo "$ful" | jq '.count') orders with fulfil calls)"

third=$((n / 3))
[ "$third" -ge 1 ] || third=1
first() { col "$1" | head -n "$third" | sort -g | tail -1; }
last() { col "$1" | tail -n "$third" | sort -g | tail -1; }
r1=$(first 2) r3=$(last 2)
ok=$(awk -v a="$r1" -v b="$r3" 'BEGIN { print (b <= a * 1.10) ? 1 : 0 }')
d="RSS max first third $r1 MiB, last third $r3 MiB (rule: last <= first + 10 %)"
[ "$invariants_only" = 1 ] && info rss_flat "$d" || check rss_flat "$ok" "$d"
o1=$(first 3) o3=$(last 3)
ok=$(awk -v a="$o1" -v b="$o3" 'BEGIN { print (b <= a * 1.5 + 50) ? 1 : 0 }')
d="outbox depth max first third $o1, last third $o3 (rule: last <= first x 1.5 + 50)"
[ "$invariants_only" = 1 ] && info outbox_bounded "$d" || check outbox_bounded "$ok" "$d"
# The table's rows in all, done ones included (not a check: at a retention of days, an hour's
# soak only shows them grow; with --outbox-keep S shorter than the run they level off).
echo "info outbox_rows: first row $(col 12 | head -1), last row $(col 12 | tail -1), most $(col 12 | sort -g | tail -1); retention $([ -n "${outbox_keep:-}" ] && echo "$outbox_keep s" || echo "the default, 14 days"); $(sql "SELECT COUNT(*) FROM outbox WHERE state IN ('done','discarded')") done or discarded now"
med=$(col 10 | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
top=$(col 10 | sort -g | tail -1)
ok=$(awk -v m="${med:-999999}" -v t="${top:-999999}" 'BEGIN { print (m <= 5000 && t <= 20000) ? 1 : 0 }')
d="stock.get p99 at 1 connection: median of rows $med us, worst row $top us (budget 5 ms; no row over 20 ms)"
[ "$invariants_only" = 1 ] && info query_p99 "$d" || check query_p99 "$ok" "$d"
echo "soak: $((n)) rows, $fails check(s) failed; tallyd error lines $(grep -c ' tallyd error: ' "$tmp/tallyd.log"), warnings $(grep -c ' tallyd warning: ' "$tmp/tallyd.log")"
[ "$fails" = 0 ]
