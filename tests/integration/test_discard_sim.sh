#!/usr/bin/env bash
# An order is fulfilled once, against tally-sim (issue: an order fulfilled twice, silently):
#   1. the warehouse's answer to an outbound order is lost (it has the order) and the operator
#      discards the row: refused, with why; the order stays at that warehouse only, and is
#      delivered there once the answer comes;
#   2. the other warehouse gets the same order anyway (a copy made outside this station): its
#      feed raises an exception at once, and the shipment it reports is listed by
#      `tally orders show` beside the expected one;
#   3. a row whose in-flight mark cannot be written is not sent (it would look never sent).
#   test_discard_sim.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-discard.XXXXXX)
. "$(dirname "$0")/synclib.sh"
on_exit() {
    local rc=$?
    trap - EXIT
    sync_cleanup
    [ "$rc" = 0 ] && [ "$fails" != 0 ] && rc=1
    [ "$rc" != 0 ] && [ "$fails" = 0 ] && echo "FAIL: aborted (exit status $rc)" >&2
    echo "test_discard_sim: $((checks - fails)) passed, $fails failed"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

WH_AUTH='Authorization: Bearer tally-sim-wh-token'
sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }
post() { ctl -X POST -H 'Content-Type: application/json' -d "$2" "$base/control/$1"; }
sim_has() { ctl "$base/control/outbound?wh=$1" | jq -e --arg id "$2" 'any(.items[]; .id == $id)' >/dev/null; }

# Outbound orders move only when told to (POST /control/outbound).
start_sim --skus 40 --orders 0 --seed 5 --warehouses ES-MAD,FR-PAR --outbound-step-seconds 0
echo tally-sim-wh-token >"$tmp/wh.token"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
{
    printf '[station]\nname = DISCARD-SIM\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
    for w in ES-MAD FR-PAR; do
        printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\ncountry = %s\n' \
            "$w" "$base" "$w" "$tmp/wh.token" "${w%%-*}"
        printf 'inventory_interval = 2\noutbound_interval = 1\n'
    done
    carriers_conf
    printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
    printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
    printf 'catalog_interval = 2\norders_interval = 1\n'
} >"$tmp/tallyd.conf"
start_tallyd
stock_known() { [ "$(sql "SELECT COUNT(DISTINCT warehouse) FROM stock WHERE snapshot > 0")" = 2 ]; }
wait_until 60 stock_known || exit 1

# A SKU both warehouses have, so the order can go to either.
S=$(sql "SELECT k.code FROM stock a JOIN stock b ON b.sku = a.sku AND b.warehouse <> a.warehouse
    JOIN skus k ON k.id = a.sku WHERE a.snapshot >= 5 AND b.snapshot >= 5
    AND a.warehouse < b.warehouse ORDER BY k.code LIMIT 1")
[ -n "$S" ] || { bad "no SKU with stock at both warehouses"; exit 1; }

# ---- 1. a lost answer, then a discard
# Every answer to an outbound create is lost (the warehouse creates the order each time).
post faults '{"target":"wh:*","call":"outbound.create","kind":"lost_answer"}' >/dev/null
O=$(post orders "{\"count\":1,\"sku\":\"$S\",\"qty\":1}" | jq -r '.created[0]')
[ -n "$O" ] && [ "$O" != null ] || { bad "the simulator made no order"; exit 1; }
answer_lost() {
    [ "$(sql "SELECT COUNT(*) FROM outbox WHERE kind = 'outbound' AND entity = '$O'
        AND state = 'pending' AND attempts > 0")" = 1 ]
}
wait_until 60 answer_lost || exit 1
row=$(sql "SELECT id FROM outbox WHERE kind = 'outbound' AND entity = '$O'")
W1=$(sql "SELECT substr(target, 4) FROM outbox WHERE id = $row")
W2=$([ "$W1" = ES-MAD ] && echo FR-PAR || echo ES-MAD)
sim_has "$W1" "$O" && ok || bad "$W1 should hold order $O after the lost answer"

if t outbox discard "$row" --reason x >"$tmp/discard.out" 2>"$tmp/discard.err"; then
    bad "tally outbox discard $row (answer lost, $W1 has the order) succeeded: $(cat "$tmp/discard.out")"
else
    check_eq "$?" 5 "tally outbox discard of a row sent without an answer: exit status (conflict)"
    grep -q "not discarded" "$tmp/discard.err" && grep -q "$W1" "$tmp/discard.err" && ok ||
        bad "the refusal does not say why: $(cat "$tmp/discard.err")"
fi
case $(sql "SELECT state FROM outbox WHERE id = $row") in
pending | inflight) ok ;;
*) bad "outbox row $row after the refused discard: $(sql "SELECT state FROM outbox WHERE id = $row")" ;;
esac
# Several fulfilment passes later the order is still only at W1 (here and at the simulator).
sleep 5
check_eq "$(sql "SELECT COUNT(*) FROM outbox WHERE kind = 'outbound' AND entity = '$O'")" 1 \
    "outbound rows of order $O"
check_eq "$(sql "SELECT COUNT(*) FROM allocation_bans")" 0 "warehouses left out"
sim_has "$W2" "$O" && bad "order $O was sent to $W2 as well" || ok

# The answer comes: the row is done, the order sent, created once at W1.
ctl -X DELETE "$base/control/faults" >/dev/null
row_done() { [ "$(sql "SELECT state FROM outbox WHERE id = $row")" = done ]; }
wait_until 60 row_done
check_eq "$(sql "SELECT fstate FROM orders WHERE order_id = '$O'")" sent "order $O once answered"
check_eq "$(ctl "$base/control/outbound?wh=$W1" | jq --arg id "$O" '.items[] | select(.id == $id) | .create_count')" \
    1 "order $O: create_count at $W1"
t outbox discard "$row" --reason x >/dev/null 2>&1 && bad "a done row was discarded" || ok

# ---- 2. the same order at the other warehouse: an exception at once, both shipments shown
body=$(ctl "$base/control/outbound?wh=$W1" | jq -c --arg id "$O" '.items[] | select(.id == $id)
    | {id, lines, ship_to, service}')
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "$WH_AUTH" \
    -H 'Content-Type: application/json' -X POST -d "$body" "$base/wh/$W2/v1/outbound-orders")
case $code in 200 | 201) ok ;; *) bad "creating order $O at $W2 directly: HTTP $code" ;; esac
unexpected_open() {
    t --json exceptions --kind warehouse | jq -e --arg o "$O" --arg w "$W2" \
        'any(.items[]; .order_id == $o and .warehouse == $w)' >/dev/null
}
wait_until 30 unexpected_open
post outbound "{\"wh\":\"$W2\",\"id\":\"$O\",\"status\":\"shipped\"}" >/dev/null
post outbound "{\"wh\":\"$W1\",\"id\":\"$O\",\"status\":\"shipped\"}" >/dev/null
two_shipments() {
    [ "$(t --json orders show "$O" | jq '[.shipments[].warehouse] | sort | join(",")')" = '"ES-MAD,FR-PAR"' ]
}
wait_until 30 two_shipments
t --json orders show "$O" >"$tmp/o.json"
check_eq "$(jq -r --arg w "$W2" '.shipments[] | select(.warehouse == $w) | .state' "$tmp/o.json")" \
    unexpected "order $O: the shipment from $W2"
check_eq "$(jq '[.exceptions[] | select(.kind == "warehouse" and .state != "resolved")] | length' "$tmp/o.json")" \
    2 "order $O: open warehouse exceptions (held at $W2, shipped from $W2)"
grep -q "no open exceptions" <<<"$(t orders show "$O")" && bad "orders show $O says no open exceptions" || ok
# Only W1's shipment goes to the marketplace.
uploaded() { [ "$(ctl "$base/control/fulfilments" | jq --arg o "$O" '.orders[$o] | length')" = 1 ]; }
wait_until 30 uploaded

# ---- 3. a row is sent only once the replica records that it may have left
# The write that takes a row in flight also marks it sent (sent_at). When that write fails
# (here a trigger refuses it, as a full disk would), no request may go: a row the warehouse
# applied would otherwise look never sent, and `tally outbox discard` would take it from the
# local view while the warehouse has it.
sqlite3 -cmd ".timeout 10000" "$tmp/state/replica.db" "CREATE TRIGGER test_no_inflight BEFORE UPDATE OF state ON outbox
    WHEN new.state = 'inflight' BEGIN SELECT RAISE(ABORT, 'test: write refused'); END;"
t receive "$S" 2 --warehouse "$W1" --id rcv-nomark >/dev/null || bad "receive rcv-nomark"
sleep 4
check_eq "$(ctl "$base/control/movements" | jq '.movements["rcv-nomark"] // 0')" 0 \
    "rcv-nomark reached $W1 while the replica could not mark it sent"
check_eq "$(sql "SELECT state || ' ' || IFNULL(sent_at, '-') FROM outbox WHERE key = 'rcv-nomark'")" \
    "pending -" "rcv-nomark while it cannot go in flight"
sqlite3 -cmd ".timeout 10000" "$tmp/state/replica.db" "DROP TRIGGER test_no_inflight"
nomark_done() { [ "$(sql "SELECT state FROM outbox WHERE key = 'rcv-nomark'")" = done ]; }
wait_until 60 nomark_done
check_eq "$(sql "SELECT sent_at IS NOT NULL FROM outbox WHERE key = 'rcv-nomark'")" 1 \
    "rcv-nomark marked sent once it went"
check_eq "$(ctl "$base/control/movements" | jq '.movements["rcv-nomark"]')" 1 "rcv-nomark applied once"
exit 0
