#!/usr/bin/env bash
# The crash loop (tests/README.md "Reliability"): tallyd against tally-sim with every warehouse
# kind the simulator serves (two tally Warehouse API v1 warehouses, a Goodcang one, a 4PX one)
# and the marketplace, killed with SIGKILL again and again. Each trial (about 1-3 s) starts
# tallyd on the replica the last one left, runs a workload meanwhile and kills it at a random
# moment of the phase the trial aims at:
#   initial    the first trials of a run, on an empty state dir: during the initial sync;
#   drain      the warehouses' links down while clients write, then up (movements answered
#              slowly): during the outbox drain;
#   purge      finished orders with buyer data imported, then `tally purge` (with its
#              checkpoint): during the purge;
#   fulfil     new paid orders at the marketplace, some cancelled: during the fulfilment pass
#              (allocation, outbound creates at every kind of warehouse, cancels, uploads);
#   migration  a copy of the replica taken back to an older schema (rewind_schema) and a
#              second tallyd started on it without upstreams: during the upgrade;
#   random     all of it at once, killed anywhere.
# The workload, in every trial but migration: three clients writing movements with unique ids
# (receive, pick, adjust, transfer) and logging each acknowledgement; orders arriving at the
# marketplace and being cancelled; outbound orders shipping (tallyd uploads the shipments); goods
# arriving at the warehouses; imports, purges and syncs.
# After each kill, tallyd restarted, the invariants (a failure prints a VIOLATION line):
#   - every acknowledged movement in the ledger exactly once (none lost, none twice);
#   - no movement applied upstream more than once (the simulator's counts);
#   - no order created at two warehouses, created twice or uploaded twice
#     (invariants.sh check_no_double_shipment);
#   - published <= truly available (a sample; a value above is judged again once tallyd has
#     published what it knows: still above with the same value = a violation);
#   - PRAGMA integrity_check ok;
#   - migration trials: the upgrade completed on the next start, the ledger unchanged.
# At the end (faults off, links up, outbox drained): every acknowledged movement applied
# upstream exactly once, replica == simulator, published <= available at rest, nothing held.
#   test_crash_loop.sh TALLYD TALLY TALLY_SIM REWIND_SCHEMA [--trials N] [--seed S]
#                      [--check-every K] [--verbose] [--power-cut [--shim SO] [--power-mode M]]
# --power-cut: every "kill" is a power cut instead. tallyd (and the migration trials' second
# tallyd) run with LD_PRELOAD=tests/power/powercut.so (--shim SO; default: tests/powercut.so
# beside TALLYD) and a trigger file: at the kill's moment the test creates it, the shim puts back
# every byte not yet synced (--power-mode drop, the default; torn: each unsynced sector kept or
# lost at random; mixed: drop or torn per start) and SIGKILLs tallyd. Unlike kill -9, this
# loses the lazy commits (store.h "Lazy commits": pages, push outcomes, the fulfilment pass's
# decisions), so the invariants also check that what is lost with them is redone, never doubled.
# The acknowledged writes commit at synchronous = full (the default) and must all survive. The
# totals line then says how many cuts landed (and how many of them before tallyd had opened its
# replica; a cut that did not stop tallyd in 3 s falls back to SIGKILL and is counted apart) and what the shim's log says they dropped (WAL bytes beyond
# the synced size, sectors put back, commits whose commit frame was not synced).
# --check-every K: the two costly checks (orders at two warehouses, the published sample) after
# every K-th trial only (default 1: after every trial); the others always run after each trial.
# The last line is the totals; exit status 0 when no invariant failed.
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3 REWIND=$4
shift 4
TRIALS=50 SEED=1 VERBOSE= CHECK_EVERY=1 POWER= SHIM= PMODE=drop
while [ $# -gt 0 ]; do
    case $1 in
    --trials) TRIALS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --check-every) CHECK_EVERY=$2; shift 2 ;;
    --verbose) VERBOSE=1; shift ;;
    --power-cut) POWER=1; shift ;;
    --shim) SHIM=$2; shift 2 ;;
    --power-mode) PMODE=$2; shift 2 ;;
    *) echo "test_crash_loop: unknown option $1" >&2; exit 2 ;;
    esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -n "$POWER" ]; then
    [ -n "$SHIM" ] || SHIM=$(dirname "$TALLYD")/tests/powercut.so
    [ -f "$SHIM" ] || { echo "test_crash_loop: no power-cut shim at $SHIM (target tally_powercut)" >&2; exit 2; }
    SHIM=$(cd "$(dirname "$SHIM")" && pwd)/$(basename "$SHIM")
    case $PMODE in drop | torn | mixed) ;; *) echo "test_crash_loop: --power-mode drop|torn|mixed" >&2; exit 2 ;; esac
    # Under the sanitizers the shim is preloaded before the ASan runtime: allow it.
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
fi
RANDOM=$SEED
tmp=$(mktemp -d /tmp/tally-crashloop${POWER:+-power}.XXXXXX)
. "$HERE/synclib.sh"
. "$HERE/invariants.sh"
db=$tmp/state/replica.db
WHS=(ES-MAD FR-PAR UK-GC US-4PX)
NOVERSION=" UK-GC US-4PX " # compared on on_hand alone (invariants.sh same_stock)
TALLYWH=(ES-MAD FR-PAR) # local movements go to tally warehouses only (a 3PL refuses them)
NINIT=2                 # trials killed during the initial sync, at the start of the run

on_exit() {
    touch "$tmp/stop"
    [ -n "${side_pid:-}" ] && kill -9 "$side_pid" 2>/dev/null
    sync_cleanup
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# Outbound orders move on one state every 2 s of real time (accepted, picking, packed,
# shipped): never by /control/advance, whose jumps put the warehouses' clock hours ahead of
# tallyd's, and a 4PX list asked by creation time up to tallyd's now then leaves out every
# order created "later" (a skew no real warehouse has; conn_fourpx.c fpx_ob_plan).
start_sim --skus 200 --orders 10 --seed "$SEED" --outbound-step-seconds 2 \
    --warehouses ES-MAD:tally,FR-PAR:tally,UK-GC:goodcang,US-4PX:fourpx
echo tally-sim-wh-token >"$tmp/wh.token"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
{
    printf '[station]\nname = CRASH-LOOP\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
    printf 'reconcile_interval = 10\n'
    # The outbox retention on, with a retention of seconds: done rows are pruned while trials
    # kill tallyd (the invariants are read from the ledger and the simulator, not the outbox).
    printf 'outbox_keep_seconds = 8\n'
    carriers_conf
    printf 'UK-RM48 = CPAM\nFPX-US-GROUND = CPAM\n'
    printf '[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = %s\ncountry = ES\n' "$base" "$tmp/wh.token"
    printf 'inventory_interval = 1\noutbound_interval = 1\n'
    printf '[warehouse FR-PAR]\nurl = %s/wh/FR-PAR\ntoken_file = %s\ncountry = FR\n' "$base" "$tmp/wh.token"
    printf 'inventory_interval = 1\noutbound_interval = 1\n'
    printf '[warehouse UK-GC]\nkind = goodcang\nurl = %s/wh/UK-GC\napp_key = tally-sim-3pl-key\n' "$base"
    printf 'app_token_file = %s\ncountry = GB\nshipping_method = UK-RM48\n' "$tmp/wh.token"
    printf 'inventory_interval = 1\noutbound_interval = 1\n'
    printf '[warehouse US-4PX]\nkind = fourpx\napp_key = tally-sim-3pl-key\n'
    printf 'app_secret_file = %s\nurl = %s/wh/US-4PX\ncountry = US\n' "$tmp/wh.token" "$base"
    printf 'shipping_method = FPX-US-GROUND\ninventory_interval = 1\noutbound_interval = 1\n'
    printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
    printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
    printf 'catalog_interval = 2\norders_interval = 1\n'
} >"$tmp/tallyd.conf"
mapfile -t SKUS < <(ctl "$base/control/stock?wh=ES-MAD&format=csv" | tail -n +2 | cut -d, -f1 | head -40)
[ ${#SKUS[@]} = 40 ] || { echo "test_crash_loop: the simulator has too few SKUs" >&2; exit 1; }
: >"$tmp/acked"; : >"$tmp/discarded"; : >"$tmp/created"

# ---------------------------------------------------------------- the workload
alive() { kill -0 "$tallyd_pid" 2>/dev/null; }
# client TRIAL N: movements with unique ids until told to stop or tallyd is gone; each one
# acknowledged goes to acked.N as the simulator keys it (the id; transfer:ID for a transfer).
client() {
    RANDOM=$((SEED * 7919 + $1 * 31 + $2))
    local n=0 id s w o q key
    while [ ! -e "$tmp/stop" ]; do
        n=$((n + 1)) id=cl-$SEED-$1-$2-$n
        s=${SKUS[RANDOM % ${#SKUS[@]}]} w=${TALLYWH[RANDOM % 2]} q=$((RANDOM % 3 + 1)) key=$id
        case $((RANDOM % 6)) in
        0 | 1) CMD=(receive "$s" "$q" --warehouse "$w") ;;
        2 | 3) CMD=(pick "$s" "$q" --warehouse "$w") ;;
        4) CMD=(adjust "$s" "$((RANDOM % 2 ? q : -q))" --warehouse "$w" --reason "crash loop") ;;
        5) o=${TALLYWH[0]}; [ "$w" = "$o" ] && o=${TALLYWH[1]}
           CMD=(transfer "$s" "$q" --from "$w" --to "$o") key=transfer:$id ;;
        esac
        if t --timeout 3 --json "${CMD[@]}" --id "$id" >/dev/null 2>&1; then
            echo "$key" >>"$tmp/acked.$2"
        elif ! t --timeout 1 status >/dev/null 2>&1; then
            break
        fi
    done
}
# marketplace TRIAL: orders arrive and are cancelled, the clock moves (outbound orders ship),
# goods arrive at the warehouses (their own stock changes: increases only, so that what tallyd
# has not read yet never makes its published value a lie); until told to stop.
marketplace() {
    RANDOM=$((SEED * 104729 + $1))
    while [ ! -e "$tmp/stop" ]; do
        case $((RANDOM % 6)) in
        0 | 1) post orders "{\"count\":1,\"sku\":\"${SKUS[RANDOM % ${#SKUS[@]}]}\",\"qty\":$((RANDOM % 2 + 1))}" |
                jq -r '.created[]?' >>"$tmp/created" ;;
        2) local o
           o=$(shuf -n 1 "$tmp/created" 2>/dev/null)
           [ -z "$o" ] || post "orders/$o/status" '{"status":"IN_CANCEL"}' >/dev/null ;;
        3) sleep 0.2 ;;
        4) post stock "{\"wh\":\"${WHS[RANDOM % 4]}\",\"sku\":\"${SKUS[RANDOM % ${#SKUS[@]}]}\",\"delta\":$((RANDOM % 5 + 1))}" >/dev/null ;;
        5) sleep 0.1 ;;
        esac
        sleep 0.1
    done
}
# housekeeper TRIAL: finished orders with buyer data imported, purged, a sync asked for.
housekeeper() {
    local n=0
    while [ ! -e "$tmp/stop" ]; do
        n=$((n + 1))
        import_orders "$1-$n" 3
        t --timeout 3 purge --older-than 0 >/dev/null 2>&1 || alive || break
        t --timeout 3 sync >/dev/null 2>&1 || alive || break
        sleep 0.2
    done
}
# import_orders TAG N: N finished orders (40 days old, buyer data) imported.
import_orders() {
    local i
    {
        echo "order_id,status,created_at,ship_by,country,currency,sku,qty,price_minor,service,buyer_name,address,city,postcode,phone"
        for ((i = 1; i <= $2; i++)); do
            echo "CL-$SEED-$1-$i,FINISH,$(($(date +%s) - 40 * 86400)),,ES,USD,${SKUS[0]},1,999,CAINIAO_STANDARD,Buyer $1-$i,Calle $1-$i,Madrid,28013,+3460$i"
        done
    } >"$tmp/orders-$1.csv"
    t --timeout 5 import orders "$tmp/orders-$1.csv" >/dev/null 2>&1
    rm -f "$tmp/orders-$1.csv"
}
msleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
# With --power-cut: tallyd under the shim (power_env draws the shim's seed from RANDOM, so a
# seed's trials are not those of the same seed without --power-cut).
ncuts=0 nfallback=0 nunopened=0 wal_bytes=0 wal_sectors=0 wal_commits=0 db_sectors=0
power_env() { # power_env DIR: the shim's environment for a tallyd whose trigger is DIR/cut
    local mode=$PMODE
    [ "$mode" = mixed ] && mode=$([ $((RANDOM % 2)) = 0 ] && echo drop || echo torn)
    PENV=(TALLY_POWERCUT_FILE="$1/cut" TALLY_POWERCUT_MODE="$mode" TALLY_POWERCUT_SEED="$RANDOM"
        TALLY_POWERCUT_LOG="$tmp/cuts.log" LD_PRELOAD="$SHIM")
}
if [ -n "$POWER" ]; then
    start_tallyd() {
        rm -f "$tmp/cut"
        power_env "$tmp"
        run_tallyd "${PENV[@]}"
    }
fi
# cut_count: the shim's log lines for the cuts so far (one line per tracked file per cut).
cut_count() { [ -f "$tmp/cuts.log" ] && wc -l <"$tmp/cuts.log" || echo 0; }
# power_cut_pid PID DIR: the trigger file DIR/cut created, PID gone within 3 s (else SIGKILL,
# counted apart); the shim's new log lines summed into the run's figures.
power_cut_pid() {
    local before i n
    before=$(cut_count)
    touch "$2/cut"
    for i in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.01; done
    local fell=
    if kill -0 "$1" 2>/dev/null; then
        kill -9 "$1" 2>/dev/null
        nfallback=$((nfallback + 1)) fell=1
    fi
    wait "$1" 2>/dev/null
    rm -f "$2/cut"
    n=$(cut_count)
    [ -n "$fell" ] || ncuts=$((ncuts + 1))
    # A cut that logs nothing came before tallyd had opened its replica (nothing to drop).
    [ -n "$fell" ] || [ "$n" -gt "$before" ] || nunopened=$((nunopened + 1))
    if [ "$n" -gt "$before" ]; then
        # "cut (why) PATH: size A -> B, N unsynced sectors, D dropped[, C commits dropped], ..."
        read -r wb ws wc ds < <(tail -n +$((before + 1)) "$tmp/cuts.log" | awk '
            /^cut / {
                l = $0; sub(/^cut \([^)]*\) /, "", l); split(l, f, " ")
                path = f[1]; sub(/:$/, "", path)
                a = f[3]; b = f[5]; sub(/,$/, "", b); d = f[9]; c = 0
                if (match($0, /[0-9]+ commits dropped/)) c = substr($0, RSTART, RLENGTH) + 0
                if (path ~ /-wal$/) { wb += (a > b ? a - b : 0); ws += d; wc += c }
                else if (path !~ /-journal$/) ds += d
            }
            END { print wb + 0, ws + 0, wc + 0, ds + 0 }')
        wal_bytes=$((wal_bytes + wb)) wal_sectors=$((wal_sectors + ws))
        wal_commits=$((wal_commits + wc)) db_sectors=$((db_sectors + ds))
        [ -z "$VERBOSE" ] || echo "  cut: WAL $wb bytes beyond the synced size, $ws sectors put back, $wc commits dropped; database $ds sectors put back"
    fi
}
kill_tallyd() {
    if [ -n "$POWER" ]; then
        power_cut_pid "$tallyd_pid" "$tmp"
    else
        kill -9 "$tallyd_pid" 2>/dev/null
        wait "$tallyd_pid" 2>/dev/null
    fi
    tallyd_pid=
}

# ---------------------------------------------------------------- the checks
declare -A KILLS=() VCOUNT=()
ntrials=0 nkills=0 lost=0 dupledger=0 samples=0 resampled=0 integ=0 migdone=0 migmid=0
# report TRIAL PHASE: prints and counts the violations recorded since the last call.
report() {
    local e
    for e in "${VIOL[@]}"; do
        echo "VIOLATION trial $1 (seed $SEED, phase $2): invariant ${e%%|*}: ${e#*|}"
        VCOUNT[${e%%|*}]=$((${VCOUNT[${e%%|*}]:-0} + 1))
    done
    VIOL=()
}
# check_trial: tallyd runs again after a kill.
check_trial() {
    cat "$tmp"/acked.* >>"$tmp/acked" 2>/dev/null
    rm -f "$tmp"/acked.*
    local r
    # One sqlite3 (the ledger's ids in byte order, then the integrity check) and one awk (ids
    # twice in the ledger, acknowledged ids missing from it): a process start costs tens to
    # hundreds of ms under load, and this runs after every trial.
    r=$(sql ".output $tmp/ledger" "SELECT id FROM movements WHERE leg = 0 ORDER BY id" \
        ".output stdout" 'PRAGMA integrity_check')
    [ "$r" = ok ] && integ=$((integ + 1)) || viol integrity "integrity_check: ${r:0:300}"
    local dup=() miss=() line
    while IFS= read -r line; do
        case $line in
        D\ *) dup+=("${line#D }") ;;
        M\ *) miss+=("${line#M }") ;;
        esac
    done < <(awk 'FILENAME == ARGV[1] { if (n[$0]++ == 1) print "D", $0; next }
        { sub(/^transfer:/, ""); if (!($0 in n) && !($0 in m)) { m[$0] = 1; print "M", $0 } }' \
        "$tmp/ledger" "$tmp/acked")
    [ ${#dup[@]} = 0 ] || { viol acked_once "movement ids twice in the ledger: ${dup[*]:0:5}"; dupledger=$((dupledger + 1)); }
    if [ ${#miss[@]} -gt 0 ]; then
        lost=$((lost + ${#miss[@]}))
        viol acked_once "acknowledged movements not in the ledger: ${miss[*]:0:5}"
    fi
    check_exactly_once step
    [ $((trial % CHECK_EVERY)) = 0 ] || return 0
    check_no_double_shipment step
    # published <= available: a sample; a value above is judged again once tallyd has had the
    # time to publish what it knows (publish rows clean, fulfilment pass done), at most 5 s.
    samples=$((samples + 1))
    read_pub_state
    r=$(pub_over)
    if [ -n "$r" ]; then
        resampled=$((resampled + 1))
        cp "$tmp/pub" "$tmp/pub.first"
        local i
        for i in $(seq 25); do quiet && break; sleep 0.2; done
        read_pub_state
        # only the SKUs whose published value has not changed since the first read
        awk 'FNR == NR { v[$1] = $2; next } ($1 in v) && v[$1] == $2' "$tmp/pub.first" "$tmp/pub" >"$tmp/pub.same"
        mv "$tmp/pub.same" "$tmp/pub"
        r=$(pub_over)
        # The diagnosis: the replica's stock rows and publish row (value computed last, last
        # acknowledged, dirty, gen) and the marketplace's last three publishes (value, at_ms).
        [ -z "$r" ] || viol published_le_available "$r replica's view of ${r%% *} (warehouse snapshot pending reserved safety as_of): $(sql "SELECT group_concat(w.code || ' ' || t.snapshot || ' ' || t.pending || ' ' || t.reserved || ' ' || t.safety || ' ' || coalesce(t.as_of, '-'), ', ') FROM stock t JOIN warehouses w ON w.id = t.warehouse JOIN skus k ON k.id = t.sku WHERE k.code = '${r%% *}'"); publish row (value published dirty gen): $(sql "SELECT p.value || ' ' || coalesce(p.published, 'NULL') || ' ' || p.dirty || ' ' || p.gen FROM publish p JOIN skus k ON k.id = p.sku WHERE k.code = '${r%% *}'"); marketplace's last publishes: $(ctl "$base/control/published?sku=${r%% *}" | jq -c '[.history[-3:][] | [.value, .at_ms]]') at $(date +%s%3N)"
    fi
}

# ---------------------------------------------------------------- migration trials
LATEST=
migration_trial() {
    local m=$tmp/mig v uv r
    rm -rf "$m"
    mkdir -p "$m"
    sql ".backup '$m/replica.db'"
    [ -n "$LATEST" ] || LATEST=$(sql 'PRAGMA user_version')
    sqlite3 -readonly "$m/replica.db" "SELECT id FROM movements ORDER BY id, leg" >"$m/before"
    local vs=(6 9 12 14)
    v=${vs[RANDOM % 4]}
    "$REWIND" "$m/replica.db" "$v" || { viol migration "rewind_schema to $v failed"; return; }
    PENV=()
    [ -z "$POWER" ] || power_env "$m"
    env "${PENV[@]}" "$TALLYD" --state-dir "$m" --socket "$m/tally.sock" --log-level error 2>>"$m/tallyd.log" &
    side_pid=$!
    msleep $((RANDOM % 80))
    if [ -n "$POWER" ]; then
        power_cut_pid "$side_pid" "$m"
    else
        kill -9 "$side_pid" 2>/dev/null
        wait "$side_pid" 2>/dev/null
    fi
    uv=$(sqlite3 -readonly "$m/replica.db" 'PRAGMA user_version')
    if [ "${uv:-0}" -lt "$LATEST" ]; then migmid=$((migmid + 1)); else migdone=$((migdone + 1)); fi
    "$TALLYD" --state-dir "$m" --socket "$m/tally.sock" --log-level error 2>>"$m/tallyd.log" &
    side_pid=$!
    for _ in $(seq 400); do "$TALLY" --socket "$m/tally.sock" status >/dev/null 2>&1 && break; sleep 0.025; done
    "$TALLY" --socket "$m/tally.sock" status >/dev/null 2>&1 ||
        viol migration "tallyd did not start on a replica upgraded from $v after a kill at schema $uv: $(tail -3 "$m/tallyd.log" | paste -sd' ' -)"
    r=$(sqlite3 -readonly "$m/replica.db" 'PRAGMA user_version')
    [ "$r" = "$LATEST" ] || viol migration "schema $r after the restart, expected $LATEST (from $v, killed at $uv)"
    r=$(sqlite3 -readonly "$m/replica.db" 'PRAGMA integrity_check')
    [ "$r" = ok ] || viol integrity "upgraded replica (from $v, killed at $uv): ${r:0:300}"
    sqlite3 -readonly "$m/replica.db" "SELECT id FROM movements ORDER BY id, leg" | cmp -s - "$m/before" ||
        viol migration "the ledger changed across the upgrade from $v (killed at $uv)"
    kill -9 "$side_pid" 2>/dev/null
    wait "$side_pid" 2>/dev/null
    side_pid=
    rm -rf "$m"
}

# ---------------------------------------------------------------- the loop
t0=$SECONDS
start_tallyd
PHASES=(drain purge fulfil migration random)
for ((trial = 1; trial <= TRIALS; trial++)); do
    if [ "$trial" -le "$NINIT" ]; then phase=initial; else phase=${PHASES[RANDOM % ${#PHASES[@]}]}; fi
    if [ "$phase" = migration ]; then
        migration_trial
        [ -z "$VERBOSE" ] || echo "trial $trial: migration, at $((SECONDS - t0)) s"
        KILLS[$phase]=$((${KILLS[$phase]:-0} + 1))
        nkills=$((nkills + 1)) ntrials=$((ntrials + 1))
        report "$trial" "$phase"
        continue
    fi
    rm -f "$tmp/stop"
    [ "$phase" = drain ] && post link '{"target":"wh:*","up":false}' >/dev/null
    pids=()
    for c in 1 2 3; do client "$trial" "$c" & pids+=($!); done
    marketplace "$trial" & pids+=($!)
    [ "$phase" = drain ] || { housekeeper "$trial" & pids+=($!); }
    case $phase in
    initial) delay=$((RANDOM % 700 + 50)) ;;
    drain)
        msleep $((RANDOM % 400 + 200))
        post faults '{"target":"wh:*","call":"movements","latency_ms":150}' >/dev/null
        post link '{"target":"*","up":true}' >/dev/null
        delay=$((RANDOM % 500 + 20)) ;;
    purge)
        msleep $((RANDOM % 300))
        import_orders "p$trial" 30
        t --timeout 5 purge --older-than 0 >/dev/null 2>&1 &
        pids+=($!)
        delay=$((RANDOM % 60)) ;;
    fulfil)
        post orders "{\"count\":$((RANDOM % 4 + 2))}" | jq -r '.created[]?' >>"$tmp/created"
        delay=$((RANDOM % 1500 + 100)) ;;
    random) delay=$((RANDOM % 1800 + 100)) ;;
    esac
    msleep "$delay"
    if [ "$phase" = initial ]; then
        r=$(sql "SELECT COUNT(*) FROM stock" 2>/dev/null)
        [ "${r:-0}" -lt $((200 * ${#WHS[@]})) ] || phase=initial-done
    fi
    kill_tallyd
    touch "$tmp/stop"
    wait "${pids[@]}" 2>/dev/null
    ctl -X DELETE "$base/control/faults" >/dev/null
    post link '{"target":"*","up":true}' >/dev/null
    KILLS[$phase]=$((${KILLS[$phase]:-0} + 1))
    nkills=$((nkills + 1)) ntrials=$((ntrials + 1))
    start_tallyd
    check_trial
    [ -z "$VERBOSE" ] || echo "trial $trial: $phase, killed after ${delay} ms, $(wc -l <"$tmp/acked") acknowledged so far, at $((SECONDS - t0)) s"
    report "$trial" "$phase"
done

# ---------------------------------------------------------------- the end
rm -f "$tmp/stop"
ctl -X DELETE "$base/control/faults" >/dev/null
post link '{"target":"*","up":true}' >/dev/null
t sync >/dev/null 2>&1
wait_until 120 outbox_empty || viol converges "the outbox did not drain in 120 s"
for i in 1 2 3 4 5; do
    mark_rounds
    t sync >/dev/null 2>&1
    wait_until 60 streams_done >/dev/null 2>&1
    wait_until 30 quiet >/dev/null 2>&1
    same_stock && break
done
same=yes
same_stock || same=no
[ "$same" = yes ] || viol converges "replica (>) vs simulator (<), sku,on_hand,version: $(paste -sd' ' "$tmp/stockdiff")"
r=$(sql "SELECT COUNT(*) FROM stock WHERE pending <> 0")
[ "$r" = 0 ] || viol converges "$r stock rows still with a pending overlay"
# Held rows: none, but those a person must look at because a buyer cancelled an order the
# warehouse had already shipped (the workload cancels orders at random, shipped ones too).
r=$(t --json outbox --state held --all | jq -c '[.items[] | select(.last_error | test("already shipped|was shipped|IN_CANCEL") | not)
    | "\(.key): \(.last_error)"]')
[ "$r" = "[]" ] || viol converges "held outbox rows: ${r:0:600}"
check_exactly_once final
check_no_double_shipment final
check_published_le_available final
r=$(sql 'PRAGMA integrity_check')
[ "$r" = ok ] || viol integrity "integrity_check at the end: ${r:0:300}"
report end final

nacked=$(sort -u "$tmp/acked" | wc -l)
nviol=0
for k in "${!VCOUNT[@]}"; do nviol=$((nviol + VCOUNT[$k])); done
ph=$(for k in initial initial-done drain purge fulfil migration random; do
    [ -n "${KILLS[$k]:-}" ] && printf '%s %d, ' "$k" "${KILLS[$k]}"; done)
echo "crash loop seed $SEED: $ntrials trials, $nkills kills (${ph%, }; migration kills before the upgrade" \
    "completed $migmid, after $migdone), $nacked acknowledged writes, $lost lost," \
    "$dupledger duplicated in the ledger, ${VCOUNT[exactly_once]:-0} not applied upstream exactly once," \
    "${VCOUNT[no_double_shipment]:-0} double orders/uploads, ${VCOUNT[published_le_available]:-0} published above" \
    "available ($samples samples, $resampled judged again), integrity_check ok $integ/$((ntrials - ${KILLS[migration]:-0}))," \
    "outbox rows left $(sql 'SELECT COUNT(*) FROM outbox') (retention on, 8 s)," \
    "replica == simulator: $same;" \
    ${POWER:+"power cuts ($PMODE): $ncuts landed ($nunopened before the replica was open), $nfallback fell back to SIGKILL, WAL $wal_bytes bytes beyond the synced size and $wal_sectors sectors dropped, $wal_commits commits dropped, database $db_sectors sectors put back;"} \
    "$nviol violations in $((SECONDS - t0)) s"
[ "$nviol" = 0 ]
