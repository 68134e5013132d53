#!/usr/bin/env bash
# I/O errors and a full disk under every kind of write (tests/README.md "Reliability"), over
# the socket only. tallyd runs with tests/power/powercut.so, whose TALLY_FAULT_FILE makes the
# replica's writes fail (EIO on write, EIO on fsync, SQLITE_FULL), and, as root, its state
# directory is a small tmpfs that is filled up for real. For each fault:
#   - a movement is refused with `storage` (EIO) or `disk_full` (full), exit 1, nothing kept;
#   - reads (stock, status, outbox) keep answering;
#   - pulled pages are refused (the stream says why) without spinning: `tally sync --wait`
#     ends, and the page is tried again when due, not thousands of times;
#   - a push in flight when the fault starts: its outcome is recorded once the fault ends;
#   - a purge (which ends with a WAL checkpoint) fails cleanly or does nothing;
#   - eio-db fails the main database file only, i.e. checkpoints (automatic and the purge's):
#     commits still go to the WAL, so movements are acknowledged and pages applied;
# and once the fault ends, without a restart (the same tallyd process): a movement is
# acknowledged, a sync ends with no stream in error, a purge succeeds and its checkpoint
# empties the WAL. At the end every
# acknowledged movement is in the ledger once and applied upstream once, the replica equals
# the simulator, and integrity_check answers ok.
# Then EIO on fsync (the shim's eio-fsync): the first sync of the WAL that fails stops tallyd
# at once, exit 74, saying why (main.c wal_sync_failed: after a failed fsync the disk may not
# hold what was written, and a later sync that succeeds says nothing of it); the write whose
# sync failed is not acknowledged. Started again without the fault: the WAL is checkpointed
# before serving (main.c wal_sync_recover), every acknowledged movement is there, the unacknowledged one sent again with its id is applied once (here and
# upstream), and integrity_check answers ok.
#   test_io_faults.sh TALLYD TALLY TALLY_SIM POWERCUT_SO
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3 SHIM=$4
tmp=$(mktemp -d /tmp/tally-io-faults.XXXXXX)
. "$(dirname "$0")/synclib.sh"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
db=$tmp/state/replica.db
mkdir -p "$tmp/state"
tmpfs=0
if mount -t tmpfs -o size=8m,mode=0700 tmpfs "$tmp/state" 2>/dev/null; then
    tmpfs=1
else
    echo "NOTICE: cannot mount a tmpfs (needs root): the real full-disk case is skipped"
fi
cleanup() {
    [ -n "$tallyd_pid" ] && kill -9 "$tallyd_pid" 2>/dev/null && wait "$tallyd_pid" 2>/dev/null
    tallyd_pid=
    [ "$tmpfs" = 1 ] && umount "$tmp/state"
    sync_cleanup
}
trap cleanup EXIT

start_sim --skus 20 --seed 5 --warehouses ES-MAD
write_config ES-MAD
start_tallyd() {
    TALLY_FAULT_FILE=$tmp/fault LD_PRELOAD=$SHIM \
        "$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" --socket "$tmp/tally.sock" \
        --log-level info 2>>"$tmp/tallyd.log" &
    tallyd_pid=$!
    for _ in $(seq 800); do t status >/dev/null 2>&1 && break; sleep 0.025; done
    t status >/dev/null 2>&1 || { echo "tallyd did not start" >&2; tail -20 "$tmp/tallyd.log" >&2; exit 1; }
}
start_tallyd
round_mark=0
wait_until 60 inventory_done
sku=$(ctl "$base/control/stock?wh=ES-MAD&format=csv" | sed -n 2p | cut -d, -f1)
[ -n "$sku" ] || { bad "no SKU in the simulator"; exit 1; }
: >"$tmp/acked"
cases=0

receive() { # receive ID: exit code; the answer in $tmp/out
    t --timeout 20 --json receive "$sku" 1 --warehouse ES-MAD --id "$1" >"$tmp/out" 2>"$tmp/err"
}
streams_in_error() {
    st | jq '[.upstreams[].streams[] | select((.last_error // "") != "")] | length'
}
# finished_orders TAG: imports two finished orders with buyer data (for a purge to erase).
nimp=0
finished_orders() {
    nimp=$((nimp + 1))
    {
        echo "order_id,status,created_at,ship_by,country,currency,sku,qty,price_minor,service,buyer_name,address,city,postcode,phone"
        for i in 1 2; do
            echo "IO-$1-$nimp-$i,FINISH,$(($(date +%s) - 40 * 86400)),,ES,USD,$sku,1,999,CAINIAO_STANDARD,Buyer $1,Calle $1 $nimp-$i,Madrid,28013,+346000$nimp$i"
        done
    } >"$tmp/orders-$nimp.csv"
    t --timeout 60 --json import orders "$tmp/orders-$nimp.csv" >"$tmp/out" 2>"$tmp/err"
}
no_stream_errors() { [ "$(streams_in_error)" = 0 ]; }
fault_on() {
    case $1 in
    tmpfs) dd if=/dev/zero of="$tmp/state/filler" bs=64k 2>/dev/null ;;
    *) echo "$1" >"$tmp/fault" ;;
    esac
}
fault_off() { rm -f "$tmp/fault" "$tmp/state/filler"; }

faults="eio-write full eio-db"
[ "$tmpfs" = 1 ] && faults="$faults tmpfs"
for f in $faults; do
    cases=$((cases + 1))
    want=storage
    case $f in full | tmpfs) want=disk_full ;; esac
    # A push in flight when the fault starts: the warehouse answers after 2.5 s.
    ctl -X POST -d '{"target":"wh:ES-MAD","call":"movements","latency_ms":2500}' \
        "$base/control/faults" >/dev/null
    if receive "$f-inflight"; then echo "$f-inflight" >>"$tmp/acked"; else
        bad "$f: the receive before the fault refused: $(cat "$tmp/err")"
    fi
    finished_orders "$f-before"
    check_eq $? 0 "$f: orders imported before the fault"
    sleep 0.5
    fault_on "$f"
    before=$(grep -c 'page not applied' "$tmp/tallyd.log")

    # Movements: refused with the fault's code, exit 1. With eio-db only checkpoints fail:
    # commits go to the WAL and are acknowledged.
    receive "$f-during"
    rc=$?
    if [ "$f" = eio-db ]; then
        check_eq "$rc" 0 "$f: a receive's exit code while checkpoints fail"
        [ "$rc" = 0 ] && echo "$f-during" >>"$tmp/acked"
    else
        check_eq "$rc" 1 "$f: a receive's exit code during the fault"
        check_eq "$(jq -r '.error.code' "$tmp/out" 2>/dev/null)" "$want" "$f: a receive's error code"
        # The next receive while the fault lasts: refused, and (checked below) not kept.
        receive "$f-during2"
        check_eq $? 1 "$f: a second receive's exit code during the fault"
        check_eq "$(jq -r '.error.code' "$tmp/out" 2>/dev/null)" "$want" "$f: a second receive's error code"
    fi
    # Reads answer.
    t stock "$sku" >/dev/null 2>&1
    check_eq $? 0 "$f: stock answers during the fault"
    t status >/dev/null 2>&1
    check_eq $? 0 "$f: status answers during the fault"
    t outbox >/dev/null 2>&1
    check_eq $? 0 "$f: outbox answers during the fault"
    # Pages: refused, said, and not pulled again at once. The warehouse changes some stock
    # first: a page with nothing new writes nothing (its checkpoint row saved again in the
    # same second is the same bytes, and SQLite leaves a page whose bytes do not change
    # clean), so it was applied while writes failed whenever the second had not turned.
    ctl -X POST -d '{"changes": 3}' "$base/control/stock" >/dev/null
    t --timeout 60 sync --wait >/dev/null 2>&1
    rc=$?
    [ "$rc" != 7 ] && [ "$rc" != 3 ] && ok || bad "$f: sync --wait during the fault: exit $rc"
    if [ "$f" != eio-db ]; then
        check_eq "$([ "$(streams_in_error)" -gt 0 ] && echo yes)" yes "$f: a stream says its page was refused"
    fi
    t status >/dev/null 2>&1
    check_eq $? 0 "$f: status answers after a sync during the fault"
    # An import: refused like a movement (with eio-db, kept).
    finished_orders "$f-during"
    rc=$?
    if [ "$f" = eio-db ]; then
        check_eq "$rc" 0 "$f: an import while checkpoints fail"
    else
        check_eq "$rc" 1 "$f: an import's exit code during the fault"
        check_eq "$(jq -r '.error.code' "$tmp/out" 2>/dev/null)" "$want" "$f: an import's error code ($(cat "$tmp/out" "$tmp/err"))"
    fi
    # Purge (a checkpoint at its end): a clean answer either way, never a lost connection.
    t --timeout 60 --json purge --older-than 0 >"$tmp/out" 2>/dev/null
    rc=$?
    if [ "$rc" = 0 ] || { [ "$rc" = 1 ] && jq -e '.error.code == "storage" or .error.code == "disk_full"' "$tmp/out" >/dev/null; }; then
        ok
    else
        bad "$f: purge during the fault: exit $rc: $(cat "$tmp/out")"
    fi
    sleep 3 # the push answered meanwhile; its outcome cannot be written
    spins=$(($(grep -c 'page not applied' "$tmp/tallyd.log") - before))
    check_eq "$([ "$spins" -lt 100 ] && echo yes)" yes "$f: pages refused $spins times in one fault (pulled again and again)"
    kill -0 "$tallyd_pid" 2>/dev/null
    check_eq $? 0 "$f: tallyd alive"

    # The fault ends: everything resumes, no restart.
    fault_off
    ctl -X DELETE "$base/control/faults" >/dev/null
    if receive "$f-after"; then echo "$f-after" >>"$tmp/acked"; ok; else
        bad "$f: a receive after the fault: $(cat "$tmp/err")"
    fi
    t --timeout 60 sync --wait >/dev/null 2>&1
    check_eq $? 0 "$f: sync --wait after the fault"
    wait_until 30 no_stream_errors
    t --timeout 60 purge --older-than 0 >/dev/null 2>&1
    check_eq $? 0 "$f: purge after the fault"
    # Checkpoints work again: a purge's checkpoint empties the WAL (it retries while a reader
    # is in it; tallyd's rounds may write meanwhile, so purge again until it got there).
    wal_emptied() {
        finished_orders "$f-after" && t --timeout 60 purge --older-than 0 >/dev/null 2>&1 &&
            sleep 1 &&
            [ "$(stat -c %s "$db-wal" 2>/dev/null || echo 0)" = 0 ]
    }
    wait_until 60 wal_emptied
    wait_until 30 outbox_empty
    check_eq "$(sqlite3 -readonly "$db" "SELECT state FROM outbox WHERE key = '$f-inflight'")" done \
        "$f: the push in flight at the fault recorded"
    if [ "$f" != eio-db ]; then
        check_eq "$(sqlite3 -readonly "$db" "SELECT count(*) FROM movements WHERE id = '$f-during'")" 0 \
            "$f: the refused receive not kept"
    fi
    if [ "$f" != eio-db ]; then
        check_eq "$(sqlite3 -readonly "$db" "SELECT count(*) FROM movements WHERE id = '$f-during2'")" 0 \
            "$f: the second refused receive not kept"
    fi
done

# ledger_checks [PREFIX]: each acknowledged movement once in the ledger and applied upstream once.
ledger_checks() {
    sort "$tmp/acked" >"$tmp/acked.s"
    sqlite3 -readonly "$db" "SELECT id FROM movements WHERE leg = 0" | sort >"$tmp/ledger"
    check_eq "$(comm -23 "$tmp/acked.s" "$tmp/ledger" | wc -l)" 0 "${1:-}acknowledged movements lost"
    check_eq "$(uniq -d "$tmp/ledger" | wc -l)" 0 "${1:-}movements twice in the ledger"
    ctl "$base/control/movements?wh=ES-MAD" >"$tmp/mv.json"
    jq -r '.movements | to_entries[] | select(.value == 1) | .key' "$tmp/mv.json" | sort >"$tmp/applied"
    check_eq "$(comm -23 "$tmp/acked.s" "$tmp/applied" | wc -l)" 0 "${1:-}acknowledged movements not applied upstream once"
    check_eq "$(jq '.max' "$tmp/mv.json")" 1 "${1:-}the most any movement was applied upstream"
}

# The end: the same process all along; each acknowledged movement once, here and upstream.
ledger_checks
mark_rounds
wait_until 60 inventory_done
wait_until 60 settled
compare_stock ES-MAD
check_eq "$(sqlite3 -readonly "$db" 'PRAGMA integrity_check')" ok "integrity_check"
kill -0 "$tallyd_pid" 2>/dev/null
check_eq $? 0 "tallyd never restarted"
echo "I/O faults: $cases fault cases ($faults), $(wc -l <"$tmp/acked") writes acknowledged, $(comm -23 "$tmp/acked.s" "$tmp/ledger" | wc -l) lost"

# EIO on fsync: tallyd stops at the first failed sync of the WAL, and starts again whole.
f=eio-fsync
cases=$((cases + 1))
if receive "$f-before"; then echo "$f-before" >>"$tmp/acked"; else
    bad "$f: the receive before the fault refused: $(cat "$tmp/err")"
fi
fault_on "$f"
receive "$f-during"
rc=$?
check_eq "$([ "$rc" != 0 ] && echo refused)" refused "$f: the receive whose sync failed not acknowledged (exit $rc: $(cat "$tmp/out" "$tmp/err"))"
st=
for _ in $(seq 400); do kill -0 "$tallyd_pid" 2>/dev/null || break; sleep 0.025; done
if kill -0 "$tallyd_pid" 2>/dev/null; then
    bad "$f: tallyd still running after a failed sync"
    kill -9 "$tallyd_pid"
fi
wait "$tallyd_pid"
st=$?
tallyd_pid=
check_eq "$st" 74 "$f: tallyd's exit status after the failed sync"
check_eq "$(grep -c 'tallyd stops now (exit 74)' "$tmp/tallyd.log")" 1 "$f: the log says why it stopped"
fault_off
start_tallyd
# The start after it: the WAL's frames written into the database and synced before serving
# (main.c wal_sync_recover), its mark gone.
check_eq "$(grep -c 'the last run stopped at a failed sync of the WAL: .* the WAL emptied' "$tmp/tallyd.log")" 1 \
    "$f: the start after it checkpointed the WAL first"
check_eq "$([ -e "$tmp/state/wal-sync-failed" ] && echo left)" "" "$f: the failed sync's mark removed"
kept=$(sqlite3 -readonly "$db" "SELECT count(*) FROM movements WHERE id = '$f-during' AND leg = 0")
echo "$f: the receive whose sync failed: $kept kept (the shim loses nothing without a cut)"
if receive "$f-during"; then echo "$f-during" >>"$tmp/acked"; ok; else
    bad "$f: the receive sent again after the restart: $(cat "$tmp/err")"
fi
check_eq "$(jq -r '.duplicate' "$tmp/out")" "$([ "$kept" = 1 ] && echo true || echo false)" "$f: sent again: a duplicate exactly when it was kept"
if receive "$f-after"; then echo "$f-after" >>"$tmp/acked"; ok; else
    bad "$f: a receive after the restart: $(cat "$tmp/err")"
fi
wait_until 30 outbox_empty
ledger_checks "$f: "
check_eq "$(sqlite3 -readonly "$db" 'PRAGMA integrity_check')" ok "$f: integrity_check"
# A clean stop while syncs fail: the last close's checkpoint says nothing of its failed sync, so
# tallyd syncs the WAL itself first and stops with 74 and the mark, not 0.
receive "$f-last" && echo "$f-last" >>"$tmp/acked"
fault_on "$f"
kill -TERM "$tallyd_pid"
wait "$tallyd_pid"
st=$?
tallyd_pid=
check_eq "$st" 74 "$f: a stop while syncs fail: exit status"
check_eq "$([ -e "$tmp/state/wal-sync-failed" ] && echo mark)" mark "$f: a stop while syncs fail: the mark left"
fault_off
start_tallyd
check_eq "$(grep -c 'the last run stopped at a failed sync of the WAL: .* the WAL emptied' "$tmp/tallyd.log")" 2 \
    "$f: the start after that stop checkpointed the WAL first"
check_eq "$(sqlite3 -readonly "$db" "SELECT count(*) FROM movements WHERE id = '$f-last' AND leg = 0")" 1 \
    "$f: the movement acknowledged before that stop kept"
echo "I/O faults: $checks checks, $fails failed"
[ "$fails" = 0 ]
