#!/usr/bin/env bash
# Crash during sync: kill -9 tallyd at random moments of an initial sync and of an outbox
# drain, restart it each time, and check that it converges: every inventory page applied once
# (the rows the streams applied add up to exactly the rows there are), the replica equal to the
# simulator row for row, and every movement applied upstream exactly once.
#   test_sync_crash.sh TALLYD TALLY TALLY_SIM [SKUS] [SEED] [MOVES]
# MOVES (default 1500): the movements recorded while the links are down. tallyd sends a
# warehouse's outbox in batches (up to 1,000 rows), so any number from a few dozen on makes the
# same drain: one slow batch per warehouse in flight at each kill; CTest passes 400 (each one is
# a `tally receive` process, and under the sanitizers that was most of the test's time).
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3 SKUS=${4:-100000} SEED=${5:-11} MOVES=${6:-1500}
tmp=$(mktemp -d /tmp/tally-sync-crash.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap sync_cleanup EXIT
RANDOM=$SEED
WHS=(ES-MAD FR-PAR PL-WAW US-LAX)
start_sim --skus "$SKUS" --seed 3 --warehouses "$(IFS=,; echo "${WHS[*]}")"
write_config "${WHS[@]}"
# No periodic reconciliation in this test (only the one a start makes, counted below).
sed -i 's/^reconcile_interval = .*/reconcile_interval = 3600/' "$tmp/tallyd.conf"

kill_after() { # milliseconds
    sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"
    kill -9 "$tallyd_pid" 2>/dev/null
    wait "$tallyd_pid" 2>/dev/null
    tallyd_pid=
}

# 1. Initial sync, killed 6 times at random moments (the whole sync takes about 2-3 s).
kills=0
round_mark=0
for k in 1 2 3 4 5 6; do
    start_tallyd
    kill_after $((RANDOM % 600 + 100))
    kills=$((kills + 1))
done
start_tallyd
wait_until 300 inventory_done
rows=$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT COUNT(*) FROM stock")
check_eq "$rows" $((SKUS * ${#WHS[@]})) "stock rows after an initial sync killed $kills times"
# Every row applied, and no stream counted more than it can have read: a start after a stream
# finished its initial sync makes that stream's first round a reconciliation (sync.c: the
# first round after a start re-reads the whole stream), so a kill that lands after a stream's
# sync completed (the sync takes well under a second now) adds up to one more reading of it per
# start. A page counted twice without being read again, or rows not applied, fail.
starts=$((kills + 1))
over=$(sqlite3 -readonly "$tmp/state/replica.db" \
    "SELECT COUNT(*) FROM checkpoints WHERE stream LIKE '%:inventory'
       AND (rows_total < $SKUS OR rows_total > $SKUS * $starts)")
check_eq "$over" 0 "inventory streams whose rows_total is not within $SKUS..$((SKUS * starts))"
total=$(sqlite3 -readonly "$tmp/state/replica.db" \
    "SELECT SUM(rows_total) FROM checkpoints WHERE stream LIKE '%:inventory'")
echo "rows counted by the inventory streams: $total for $rows stock rows over $starts starts"
for w in "${WHS[@]}"; do compare_stock "$w"; done

# 2. An outbox drain killed at random: MOVES movements recorded while every link is down, then
#    the links come back and tallyd is killed again and again while it drains.
for w in "${WHS[@]}"; do
    ctl -X POST -d "{\"target\":\"wh:$w\",\"up\":false}" "$base/control/link" >/dev/null
done
skus=($(sqlite3 -readonly "$tmp/state/replica.db" "SELECT code FROM skus ORDER BY id LIMIT 200"))
: >"$tmp/ids"
for i in $(seq "$MOVES"); do
    sku=${skus[RANDOM % ${#skus[@]}]} wh=${WHS[RANDOM % 4]}
    t receive "$sku" $((RANDOM % 5 + 1)) --warehouse "$wh" --id "drain-$i" >/dev/null &&
        echo "drain-$i" >>"$tmp/ids"
done
check_eq "$(wc -l <"$tmp/ids")" "$MOVES" "movements accepted while every link was down"
# Slow answers so that the kills land while requests are in flight.
ctl -X POST -d '{"target":"wh:*","call":"movements","latency_ms":300}' "$base/control/faults" >/dev/null
for w in "${WHS[@]}"; do
    ctl -X POST -d "{\"target\":\"wh:$w\",\"up\":true}" "$base/control/link" >/dev/null
done
for k in 1 2 3 4 5 6 7 8; do
    kill_after $((RANDOM % 300 + 50))
    start_tallyd
done
ctl -X DELETE "$base/control/faults" >/dev/null
wait_until 120 outbox_empty
mark_rounds
wait_until 120 inventory_done && wait_until 60 settled
for w in "${WHS[@]}"; do compare_stock "$w"; done
ctl "$base/control/movements" >"$tmp/applied.json"
check_eq "$(jq .max "$tmp/applied.json")" 1 "largest apply count of any movement"
jq -r '.movements | to_entries[] | select(.value == 1) | .key' "$tmp/applied.json" |
    sort >"$tmp/once"
missing=$(sort "$tmp/ids" | comm -23 - "$tmp/once" | wc -l)
check_eq "$missing" 0 "movements not applied exactly once"
posts=$(ctl "$base/control/stats" | jq '[.requests // {} | to_entries[] | select(.key | contains("movements")) | .value] | add // 0')
echo "movement requests received by the warehouses: $posts (a request cut by a kill is sent again)"
echo "crash during sync: initial sync killed $kills times, drain killed 8 times; $MOVES movements applied once each"
echo "test_sync_crash: $checks checks, $fails failed"
[ "$fails" = 0 ]
