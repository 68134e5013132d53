#!/usr/bin/env bash
# Power cuts (tests/README.md "Reliability"): tallyd runs with tests/power/powercut.so, which
# drops every write not synced yet at a simulated power cut and kills the process. Against
# tally-sim (one warehouse: its inventory pages are pulled every second, movements pushed as
# they come), three clients record receives with unique ids and log each acknowledgement, a
# fourth imports finished orders with buyer data and purges them (`tally purge --older-than 0`,
# which ends with a WAL checkpoint) and runs `tally sync`; the cut comes
# at a random moment (a trigger file) or at a random sync (TALLY_POWERCUT_AFTER_SYNCS: the cut
# lands in that fsync and loses its bytes). tallyd is restarted (with the shim) after each cut:
#   - every acknowledged movement is in the ledger exactly once (with --sync normal: counted,
#     the window; with full, the default: none may be missing),
#   - PRAGMA integrity_check answers ok,
# and at the end (tallyd left alone, the outbox drained): every movement in the ledger applied
# upstream exactly once and the replica equal to the simulator's stock.
#   test_power_cut.sh TALLYD TALLY TALLY_SIM POWERCUT_SO [--trials N] [--seed S]
#                     [--sync full|normal] [--mode drop|torn|mixed] [--assert-no-loss]
# --assert-no-loss asserts zero lost with synchronous = normal too (to see the check fail).
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3 SHIM=$4
shift 4
TRIALS=20 SEED=11 SYNC=full MODE=mixed STRICT=0
while [ $# -gt 0 ]; do
    case $1 in
    --trials) TRIALS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --sync) SYNC=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --assert-no-loss) STRICT=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
RANDOM=$SEED
tmp=$(mktemp -d /tmp/tally-power.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap sync_cleanup EXIT
# Under the sanitizers the shim is preloaded before the ASan runtime: allow it.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
db=$tmp/state/replica.db

start_sim --skus 20 --seed 5 --warehouses ES-MAD
write_config ES-MAD
sed -i 's/^inventory_interval = 2/inventory_interval = 1/' "$tmp/tallyd.conf"
sed -i "s/^\[sync\]\$/[sync]\nsynchronous = $SYNC/" "$tmp/tallyd.conf"
grep -q "^synchronous = $SYNC\$" "$tmp/tallyd.conf" || { echo "config not written" >&2; exit 1; }

# start_cut [AFTER_SYNCS]: tallyd with the shim; the cut when $tmp/cut appears (or at that sync).
start_cut() {
    rm -f "$tmp/cut"
    mode=$MODE
    [ "$MODE" = mixed ] && mode=$([ $((RANDOM % 2)) = 0 ] && echo drop || echo torn)
    TALLY_POWERCUT_FILE=$tmp/cut TALLY_POWERCUT_AFTER_SYNCS=${1:-0} TALLY_POWERCUT_MODE=$mode \
        TALLY_POWERCUT_SEED=$RANDOM TALLY_POWERCUT_LOG=$tmp/cuts.log LD_PRELOAD=$SHIM \
        "$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" --socket "$tmp/tally.sock" \
        --log-level warning 2>>"$tmp/tallyd.log" &
    tallyd_pid=$!
    for _ in $(seq 800); do
        t status >/dev/null 2>&1 && return 0
        kill -0 "$tallyd_pid" 2>/dev/null || break
        sleep 0.025
    done
    # A cut counted in syncs may come before tallyd answers: that is a trial too.
    if ! kill -0 "$tallyd_pid" 2>/dev/null; then
        wait "$tallyd_pid" 2>/dev/null
        tallyd_pid=
        if [ "${1:-0}" = 0 ]; then # no cut was set: tallyd failed
            echo "tallyd exited at start" >&2
            tail -20 "$tmp/tallyd.log" >&2
            exit 1
        fi
        return 1
    fi
    echo "tallyd did not start" >&2
    tail -20 "$tmp/tallyd.log" >&2
    exit 1
}

skus=($(ctl "$base/control/stock?wh=ES-MAD&format=csv" | tail -n +2 | cut -d, -f1))
[ ${#skus[@]} -gt 0 ] || { echo "no SKU in the simulator" >&2; exit 1; }
: >"$tmp/acked"
: >"$tmp/purged"
lost_total=0 cuts=0 early=0

client() { # client TRIAL N: receives until tallyd stops answering; logs acknowledged ids
    local n=0 id
    while :; do
        n=$((n + 1))
        id=pc-$1-$2-$n
        if t --timeout 5 --json receive "${skus[(n * 7 + $2) % ${#skus[@]}]}" 1 --warehouse ES-MAD \
            --id "$id" >/dev/null 2>&1; then
            echo "$id" >>"$tmp/acked.$2"
        else
            t status >/dev/null 2>&1 || break
        fi
    done
}
housekeeper() { # housekeeper TRIAL: finished orders imported and purged (a checkpoint each time)
    local n=0
    while :; do
        n=$((n + 1))
        {
            echo "order_id,status,created_at,ship_by,country,currency,sku,qty,price_minor,service,buyer_name,address,city,postcode,phone"
            echo "PC-$1-$n,FINISH,$(($(date +%s) - 40 * 86400)),,ES,USD,${skus[0]},1,999,CAINIAO_STANDARD,Buyer $1,Calle $1-$n,Madrid,28013,+3460001$n"
        } >"$tmp/orders.csv"
        t --timeout 5 import orders "$tmp/orders.csv" >/dev/null 2>&1 || break
        t --timeout 5 purge --older-than 0 >/dev/null 2>&1 || break
        # The orders a purge has erased, as committed (an imported order is purgeable once a
        # fulfilment pass has marked it finished, so not always by the next purge).
        sqlite3 -readonly "$db" "SELECT order_id FROM orders WHERE purged_at IS NOT NULL" \
            >>"$tmp/purged" 2>/dev/null
        t --timeout 5 sync >/dev/null 2>&1 || break
        sleep 0.1
    done
}

for trial in $(seq "$TRIALS"); do
    # Half the cuts by the trigger file at a random moment, half at a random sync.
    after=0
    [ $((RANDOM % 2)) = 0 ] && after=$((RANDOM % 400 + 20))
    if ! start_cut "$after"; then
        cuts=$((cuts + 1)) early=$((early + 1))
    else
        pids=()
        for c in 1 2 3; do client "$trial" "$c" & pids+=($!); done
        housekeeper "$trial" & pids+=($!)
        sleep "0.$(printf '%03d' $((RANDOM % 1000)))"
        touch "$tmp/cut"
        wait "$tallyd_pid" 2>/dev/null
        tallyd_pid=
        cuts=$((cuts + 1))
        wait "${pids[@]}" 2>/dev/null
        cat "$tmp"/acked.* >>"$tmp/acked" 2>/dev/null
        rm -f "$tmp"/acked.*
    fi

    # After the cut: tallyd again (recovery is its first open), then the checks.
    until start_cut 0; do :; done
    sqlite3 -readonly "$db" "SELECT id FROM movements WHERE leg = 0" | sort >"$tmp/ledger"
    dups=$(uniq -d "$tmp/ledger" | wc -l)
    check_eq "$dups" 0 "trial $trial: movement ids twice in the ledger"
    lost=$(sort "$tmp/acked" | comm -23 - "$tmp/ledger" | wc -l)
    lost_total=$((lost_total + lost))
    if [ "$SYNC" = full ] || [ "$STRICT" = 1 ]; then
        check_eq "$lost" 0 "trial $trial: acknowledged movements lost (synchronous = $SYNC)"
    fi
    # What was lost is not acknowledged any more: it must not be counted as lost again.
    sort "$tmp/acked" | comm -12 - "$tmp/ledger" >"$tmp/acked.kept"
    mv "$tmp/acked.kept" "$tmp/acked"
    check_eq "$(sqlite3 -readonly "$db" 'PRAGMA integrity_check')" ok "trial $trial: integrity_check"
    # Every order seen purged holds no buyer data (the purge is a write too).
    if [ -s "$tmp/purged" ] && [ "$SYNC" = full ]; then
        sort -u "$tmp/purged" -o "$tmp/purged"
        back=0
        while read -r o; do
            n=$(sqlite3 -readonly "$db" "SELECT count(*) FROM orders WHERE order_id = '$o'
                AND (purged_at IS NULL OR address IS NOT NULL OR phone IS NOT NULL)")
            back=$((back + n))
        done <"$tmp/purged"
        check_eq "$back" 0 "trial $trial: orders seen purged holding buyer data again"
    fi
    kill -9 "$tallyd_pid" 2>/dev/null
    wait "$tallyd_pid" 2>/dev/null
    tallyd_pid=
done

# The end: tallyd without a cut, the outbox drained; each movement in the ledger applied once.
start_cut 0
round_mark=0
wait_until 120 outbox_empty
ctl "$base/control/movements?wh=ES-MAD" >"$tmp/mv.json"
max=$(jq '.max' "$tmp/mv.json")
check_eq "$([ "${max:-9}" -le 1 ] && echo yes)" yes "no movement applied twice upstream (max $max)"
sqlite3 -readonly "$db" "SELECT id FROM movements WHERE leg = 0" | sort >"$tmp/ledger"
jq -r '.movements | to_entries[] | select(.value == 1) | .key' "$tmp/mv.json" | sort >"$tmp/applied"
notonce=$(comm -23 "$tmp/ledger" "$tmp/applied" | wc -l)
check_eq "$notonce" 0 "movements in the ledger not applied upstream exactly once"
if [ "$SYNC" = full ]; then
    mark_rounds
    wait_until 60 inventory_done
    wait_until 60 settled
    compare_stock ES-MAD
fi
# The shim did drop bytes at some cut (else the checks above would prove nothing).
dropped=$(grep -c 'lost unsynced bytes$' "$tmp/cuts.log" 2>/dev/null)
if [ "$SYNC" = normal ]; then
    check_eq "$([ "${dropped:-0}" -gt 0 ] && echo yes)" yes "a cut dropped unsynced bytes"
fi
acked=$(wc -l <"$tmp/acked")
echo "power cuts ($SYNC, $MODE): $cuts cuts ($early before tallyd answered), $((acked + lost_total)) writes acknowledged, $lost_total acknowledged writes lost; ${dropped:-0} files lost unsynced bytes"
echo "power cuts: $checks checks, $fails failed"
[ "$fails" = 0 ]
