#!/usr/bin/env bash
# Integration: the outbox retention through the daemon (daemon/retain.c), against tally-sim,
# with a retention of a few seconds ([sync] outbox_keep_seconds) while a client retries:
#   1. N movements with ids of the client's are sent and confirmed (done);
#   2. a client retries every one of them, over and over, while the housekeeping timer prunes
#      the done rows: every retry is answered as a duplicate, the rows go, none comes back;
#   3. the simulator applied each movement once and was asked for no movement after the first
#      sending (its request count unchanged by the retries);
#   4. status shows the pruning, and the outbox counters equal COUNT(*).
#   test_housekeeping_retain.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-retain.XXXXXX)
. "$(dirname "$0")/synclib.sh"
on_exit() {
    local rc=$?
    trap - EXIT
    [ -n "${retry_pid:-}" ] && kill "$retry_pid" 2>/dev/null
    sync_cleanup
    [ "$rc" = 0 ] && [ "$fails" != 0 ] && rc=1
    [ "$rc" != 0 ] && [ "$fails" = 0 ] && echo "FAIL: aborted (exit status $rc)" >&2
    echo "test_housekeeping_retain: $((checks - fails)) passed, $fails failed"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

N=${TALLY_RETAIN_N:-20}
sql() { sqlite3 -readonly -cmd ".timeout 10000" "$tmp/state/replica.db" "$@"; }
moves_asked() { ctl "$base/control/stats" | jq '[.requests | to_entries[]
    | select(.key | startswith("wh:ES-MAD:")) | select(.key | test("movement")) | .value] | add // 0'; }

start_sim --skus 10 --orders 0 --seed 3 --warehouses ES-MAD
write_config ES-MAD
printf '[sync]\noutbox_keep_seconds = 2\n' >>"$tmp/tallyd.conf"
start_tallyd
stock_known() { [ "$(sql "SELECT COUNT(*) FROM stock WHERE snapshot > 0")" -gt 0 ]; }
wait_until 60 stock_known || exit 1
echo "stock read at ${SECONDS}s"
S=$(sql "SELECT k.code FROM stock t JOIN skus k ON k.id = t.sku ORDER BY k.code LIMIT 1")

# ---- 1. N movements, sent and confirmed ----
for i in $(seq "$N"); do
    out=$(t receive "$S" 1 --warehouse ES-MAD --id "ret-$i" 2>&1) || bad "receive ret-$i: $out"
done
# (some may be pruned already: done and 2 s old)
check_eq "$(sql "SELECT COUNT(*) FROM movements WHERE id LIKE 'ret-%'")" "$N" "movements made"
wait_until 60 outbox_empty || exit 1
asked=$(moves_asked)
echo "$N movements confirmed at ${SECONDS}s"
[ "$asked" -ge 1 ] && ok || bad "the simulator saw no movement call ($asked)"

# ---- 2. retries while the rows are pruned ----
(
    while :; do
        for i in $(seq "$N"); do
            "$TALLY" --socket "$tmp/tally.sock" --json receive "$S" 1 --warehouse ES-MAD \
                --id "ret-$i" >>"$tmp/retries.out" 2>>"$tmp/retries.err"
            sleep 0.1 # a client's pace, leaving the CPU to tallyd (sanitizer builds)
        done
    done
) &
retry_pid=$!
gone() { [ "$(sql "SELECT COUNT(*) FROM outbox WHERE key LIKE 'ret-%'")" = 0 ]; }
wait_until 60 gone || exit 1
echo "rows pruned at ${SECONDS}s"
# A whole round more once every row is gone, and a pass after it (one a second: 2 s / 4, at
# least 1 s), the other client still retrying.
for i in $(seq "$N"); do
    t --json receive "$S" 1 --warehouse ES-MAD --id "ret-$i" >>"$tmp/retries.out" \
        2>>"$tmp/retries.err"
done
sleep 2
kill "$retry_pid" 2>/dev/null
wait "$retry_pid" 2>/dev/null
retry_pid=
n_retries=$(jq -s 'length' "$tmp/retries.out")
[ "$n_retries" -ge "$N" ] && ok || bad "too few retries ($n_retries)"
check_eq "$(jq -s '[.[] | select(.duplicate != true)] | length' "$tmp/retries.out")" 0 \
    "every retry answered as a duplicate"
check_eq "$(wc -l <"$tmp/retries.err")" 0 "retries refused ($(head -3 "$tmp/retries.err"))"
check_eq "$(sql "SELECT COUNT(*) FROM outbox WHERE key LIKE 'ret-%'")" 0 "no row made again"
check_eq "$(sql "SELECT COUNT(*) FROM movements WHERE id LIKE 'ret-%'")" "$N" "one movement each"

# ---- 3. the simulator: each applied once, nothing asked again ----
mv=$(ctl "$base/control/movements?wh=ES-MAD")
check_eq "$(jq '[.movements | to_entries[] | select(.key | startswith("ret-"))] | length' <<<"$mv")" \
    "$N" "movements at the simulator"
check_eq "$(jq '[.movements | to_entries[] | select(.key | startswith("ret-")) | .value] | max' \
    <<<"$mv")" 1 "largest apply count"
check_eq "$(moves_asked)" "$asked" "movement calls after the retries"

# ---- 4. status and counters ----
s=$(st)
[ "$(jq '.outbox.pruned' <<<"$s")" -ge "$N" ] && ok || bad "status pruned: $(jq -c .outbox <<<"$s")"
check_eq "$(jq '.outbox.keep_s' <<<"$s")" 2 "status keep_s"
[ "$(jq '.outbox.pruned_at' <<<"$s")" != null ] && ok || bad "status pruned_at null"
check_eq "$(sql "SELECT (SELECT n FROM counters WHERE name = 'outbox_pending')
    = (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'inflight'))
    AND (SELECT n FROM counters WHERE name = 'outbox_held')
    = (SELECT COUNT(*) FROM outbox WHERE state = 'held')")" 1 "counters equal COUNT(*)"
grep -q '^ *retention' <<<"$(t status)" && ok || bad "tally status shows no retention line"
