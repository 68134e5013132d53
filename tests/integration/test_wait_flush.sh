#!/bin/bash
# A read that waits for its connection's write (rpc_must_wait: the group's answer is owed)
# must be taken up when that write's group is committed by the LOOP's own transaction
# (gcommit.c before_begin: an inventory page applied, a push answer recorded, in the same loop
# turn), not only when a commit thread's result comes back: before, no commit-thread result
# came for that group, and the read waited until some other write's commit (here: forever).
# Four clients pipeline [stock.move, stock.get] pairs on one connection each while tally-sim's
# warehouse is pulled (every 2 s) and pushed to; every answer must come (pair_probe's 10 s
# bound is not a timing assertion). Before the fix 3 runs in 4 hung (a read never answered);
# after it none in 7. It can pass on a broken tallyd: it catches the defect, not proves it absent.
#   test_wait_flush.sh TALLYD TALLY TALLY_SIM PAIR_PROBE [SECONDS]
set -u
TALLYD=$1 TALLY=$2 SIM=$3 PROBE=$4 SECS=${5:-8}
tmp=$(mktemp -d /tmp/tally-waitflush.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap sync_cleanup EXIT

start_sim --skus 200 --seed 5 --warehouses ES-MAD
write_config ES-MAD
start_tallyd
sleep 2 # the first inventory round under way
sku=$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT code FROM skus ORDER BY id LIMIT 1")
[ -n "$sku" ] || { sleep 3; sku=$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT code FROM skus ORDER BY id LIMIT 1"); }
[ -n "$sku" ] && ok || bad "no SKU pulled from the simulator"
pids=()
for k in 1 2 3 4; do
    "$PROBE" "$tmp/tally.sock" "$sku" ES-MAD "$SECS" >"$tmp/probe$k.out" 2>&1 &
    pids+=($!)
done
for k in 1 2 3 4; do
    if wait "${pids[k - 1]}"; then ok; else bad "client $k: $(cat "$tmp/probe$k.out")"; fi
done
cat "$tmp"/probe*.out
echo "commit_waits: $(st | jq .commit_waits)"
echo "test_wait_flush: $checks checks, $fails failed"
[ "$fails" = 0 ]
