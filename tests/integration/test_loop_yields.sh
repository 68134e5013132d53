#!/usr/bin/env bash
# The loop's own work never waits for a group commit's fsync (gcommit.h "Syncs": the group
# commits without one and the sync thread syncs; store.h store_begin_yield, sync.c "parked"
# pages and outcomes): tallyd against tally-sim (one warehouse, inventory every second,
# outbound every 5 s) with tests/power/powercut.so, whose TALLY_FAULT_FILE "hold-sync" holds
# every fsync until the file goes.
#   1. movements are pushed; the warehouse now answers them after 1.5 s;
#   2. a receive is sent and its group's sync is held (status: commit_in_flight); a movement
#      pushed just before is answered by the warehouse meanwhile and pages arrive;
#   3. for 4 s: every `tally status` (a read) is answered — the loop is not waiting for the
#      held sync — and the loop's own work goes on: the push's outcome is recorded (its row
#      done in the replica) while the receive still waits for its sync (it neither waits for
#      the sync nor gives way to it: loop_yields is printed, not asserted);
#   4. the hold ends: the held receive is acknowledged, what gave way is done (the outbox
#      drains, every row done), each movement applied upstream once, the replica equals the
#      simulator, integrity_check ok.
# Not a timed assertion: while the fsync is held nothing can finish it, so an answer at all
# shows the loop is free; the 5 s limits are upper bounds for a loaded machine.
#   test_loop_yields.sh TALLYD TALLY TALLY_SIM POWERCUT_SO
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3 SHIM=$4
tmp=$(mktemp -d /tmp/tally-yields.XXXXXX)
. "$(dirname "$0")/synclib.sh"
held_pid=
cleanup() {
    rm -f "$tmp/fault"
    [ -n "$held_pid" ] && kill "$held_pid" 2>/dev/null
    sync_cleanup
}
trap cleanup EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
db=$tmp/state/replica.db

start_sim --skus 20 --seed 7 --warehouses ES-MAD
write_config ES-MAD
sed -i 's/^inventory_interval = 2/inventory_interval = 1/' "$tmp/tallyd.conf"
run_tallyd TALLY_FAULT_FILE="$tmp/fault" LD_PRELOAD="$SHIM"
mark_rounds
wait_until 60 inventory_done
sku=$(ctl "$base/control/stock?wh=ES-MAD&format=csv" | sed -n 2p | cut -d, -f1)
[ -n "$sku" ] || { echo "no SKU in the simulator" >&2; exit 1; }

# 1. movements pushed, then answered slowly.
for n in 1 2 3; do
    t --timeout 10 receive "$sku" 1 --warehouse ES-MAD --id "y-before-$n" >/dev/null 2>&1
    check_eq $? 0 "receive y-before-$n"
done
wait_until 30 outbox_empty
ctl -X POST -d '{"target":"wh:ES-MAD","call":"movements","latency_ms":1500}' \
    "$base/control/faults" >/dev/null
t --timeout 10 receive "$sku" 1 --warehouse ES-MAD --id y-slow >/dev/null 2>&1
check_eq $? 0 "receive y-slow (pushed, answered in 1.5 s)"
sleep 0.3 # its push goes out (a tick), before the hold

# 2. a receive whose commit is held at its fsync.
y0=$(st | jq -r .loop_yields)
echo hold-sync >"$tmp/fault"
t --timeout 60 --json receive "$sku" 1 --warehouse ES-MAD --id y-held >"$tmp/held.out" 2>&1 &
held_pid=$!
in_flight() { [ "$(t --timeout 5 --json status | jq -r .commit_in_flight)" = true ]; }
wait_until 10 in_flight

# 3. reads answered throughout; the loop's own work gave way.
answered=0 unanswered=0
end=$((SECONDS + 4))
while [ $SECONDS -lt $end ]; do
    if t --timeout 5 --json status >"$tmp/st.json" 2>/dev/null; then
        answered=$((answered + 1))
    else
        unanswered=$((unanswered + 1))
    fi
    sleep 0.1
done
check_eq "$unanswered" 0 "status calls not answered while a group commit was held ($answered answered)"
check_eq "$(jq -r .commit_in_flight "$tmp/st.json")" true "the commit still held at the last read"
kill -0 "$held_pid" 2>/dev/null
check_eq $? 0 "the held receive not answered while its fsync is held"
y1=$(jq -r .loop_yields "$tmp/st.json")
check_eq "$(sqlite3 -readonly "$db" "SELECT state FROM outbox WHERE key = 'y-slow'")" done \
    "the push answered during the hold recorded while the receive's sync was held"
echo "loop yields: $y0 -> $y1 over the hold; $answered reads answered, $unanswered not"

# 4. released: the held write acknowledged, everything resumes.
rm -f "$tmp/fault"
wait "$held_pid"
check_eq $? 0 "the held receive, once its fsync returned ($(cat "$tmp/held.out"))"
held_pid=
ctl -X DELETE "$base/control/faults" >/dev/null
wait_until 30 outbox_empty
check_eq "$(sqlite3 -readonly "$db" "SELECT count(*) FROM outbox WHERE state <> 'done'")" 0 \
    "every outbox row done"
ctl "$base/control/movements?wh=ES-MAD" >"$tmp/mv.json"
for id in y-before-1 y-before-2 y-before-3 y-slow y-held; do
    check_eq "$(jq -r --arg id "$id" '.movements[$id] // 0' "$tmp/mv.json")" 1 \
        "$id applied upstream once"
done
check_eq "$(jq '.max' "$tmp/mv.json")" 1 "the most any movement was applied upstream"
mark_rounds
wait_until 30 inventory_done
wait_until 30 settled
compare_stock ES-MAD
check_eq "$(sqlite3 -readonly "$db" 'PRAGMA integrity_check')" ok "integrity_check"

kill -TERM "$tallyd_pid"
wait "$tallyd_pid"
check_eq $? 0 "tallyd exit status after SIGTERM"
tallyd_pid=
echo "test_loop_yields: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
