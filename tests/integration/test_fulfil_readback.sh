#!/usr/bin/env bash
# A shipment upload whose earlier attempt may have reached the marketplace is read back before
# it is sent again (issue 8, defect 7; UPSTREAM.md §1: the platform has no idempotency key and
# no documented "already shipped" code):
#   A. the answer to order.fulfill is lost (applied, then the connection drops): the retry reads
#      the order back, finds its tracking number there and counts it done: exactly one fulfil
#      reaches the marketplace, the order ends `uploaded`, no exception;
#   B. the first attempts are answered 503, and meanwhile the order is shipped
#      at the marketplace under another tracking number: the read-back finds the other number,
#      nothing is sent again, the row is held with an exception naming the other number;
#   C. a split order: the last warehouse's upload ("all") fails once; the read-back finds the
#      first warehouse's number ("part", uploaded by tally): tally's own, so it is sent again
#      and the order ends `uploaded` (not held as "shipped by someone else");
#   D. the order carries this row's tracking number in lower case and padded: the same
#      shipment, done, nothing sent again.
#   test_fulfil_readback.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-readback.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap 'sync_cleanup; echo "test_fulfil_readback: $((checks - fails)) passed, $fails failed"' EXIT

WHS=(ES-MAD FR-PAR PL-WAW US-LAX)
declare -A WHC=([ES-MAD]=ES [FR-PAR]=FR [PL-WAW]=PL [US-LAX]=US)
sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }
post() { ctl -X POST -H 'Content-Type: application/json' -d "$2" "$base/control/$1"; }
fstate() { sql "SELECT fstate FROM orders WHERE order_id = '$1'"; }
fstate_is() { [ "$(fstate "$1")" = "$2" ]; }
# The warehouse holding the outbound order of order $1 ("" when none yet).
ob_warehouse() {
    for w in "${WHS[@]}"; do
        ctl "$base/control/outbound?wh=$w" |
            jq -e --arg id "$1" '.items[] | select(.id == $id)' >/dev/null && echo "$w" && return
    done
}
fulfils_of() { ctl "$base/control/fulfilments" | jq --arg id "$1" '.orders[$id] // [] | length'; }
open_exc() {
    sql "SELECT COUNT(*) FROM exceptions e JOIN orders o ON o.id = e.order_ref
         WHERE o.order_id = '$1' AND e.state <> 'resolved' AND e.kind = '$2'"
}

start_sim --skus 60 --orders 0 --seed 31 --warehouses "$(IFS=,; echo "${WHS[*]}")" \
    --outbound-step-seconds 0
echo tally-sim-wh-token >"$tmp/wh.token"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
{
    printf '[station]\nname = READBACK\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
    for w in "${WHS[@]}"; do
        printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\ncountry = %s\n' \
            "$w" "$base" "$w" "$tmp/wh.token" "${WHC[$w]}"
        printf 'inventory_interval = 2\noutbound_interval = 1\n'
    done
    carriers_conf
    printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
    printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
    printf 'catalog_interval = 2\norders_interval = 1\n'
} >"$tmp/tallyd.conf"
start_tallyd
mark_rounds
wait_until 60 inventory_done
# A SKU every warehouse has plenty of: a one-line order of it ships from one warehouse.
sku=$(sql "SELECT s.code FROM stock t JOIN skus s ON s.id = t.sku GROUP BY t.sku
           HAVING COUNT(*) = 4 AND MIN(t.snapshot) >= 5 ORDER BY s.code LIMIT 1")
[ -n "$sku" ] || { bad "no SKU stocked everywhere"; exit 1; }
new_order() { post orders "{\"count\":1,\"sku\":\"$sku\",\"qty\":1}" | jq -r '.created[0]'; }
# ship ORDER: waits for its outbound order, ships it at that warehouse; prints the warehouse.
ship() {
    local w=
    wait_until 60 fstate_is "$1" sent || return 1
    w=$(ob_warehouse "$1")
    post outbound "{\"wh\":\"$w\",\"id\":\"$1\",\"status\":\"shipped\"}" >/dev/null
    echo "$w"
}

# ===================================================================================== A
echo "== A: the fulfil's answer is lost"
post faults '{"target":"mp","call":"aliexpress.solution.order.fulfill","kind":"lost_answer","count":1}' \
    >/dev/null
A=$(new_order)
ship "$A" >/dev/null
wait_until 60 fstate_is "$A" uploaded
check_eq "$(ctl "$base/control/stats" | jq '[.faults | to_entries[]
    | select(.key | contains("lost_answer")) | .value] | add // 0')" 1 "lost answers dealt"
check_eq "$(fulfils_of "$A")" 1 "fulfils received by the marketplace for order A"
check_eq "$(ctl "$base/control/fulfilments" | jq -r --arg id "$A" '[.orders[$id][].result]
    | join(",")')" applied "the fulfils' results for order A"
check_eq "$(ctl "$base/control/fulfilments" | jq .max_applied_per_tracking)" 1 \
    "largest number of fulfils applied under one tracking number"
check_eq "$(sql "SELECT state FROM outbox WHERE kind = 'fulfil' AND entity = '$A'")" done \
    "order A's upload row"
check_eq "$(sql "SELECT COUNT(*) FROM exceptions e JOIN orders o ON o.id = e.order_ref
    WHERE o.order_id = '$A' AND e.state <> 'resolved'")" 0 "open exceptions of order A"
ctl -X DELETE "$base/control/faults" >/dev/null

# ===================================================================================== B
echo "== B: the order carries another tracking number"
B=$(new_order)
wait_until 60 fstate_is "$B" sent
# Every fulfil is answered 503 until the fault is removed: none can land, whatever the timing.
fault=$(post faults '{"target":"mp","call":"aliexpress.solution.order.fulfill","kind":"status","status":503}' |
    jq -r '.ids[0]')
ship "$B" >/dev/null
# tried ORDER: its (not yet done) upload row has been attempted at least once.
tried() {
    [ "$(sql "SELECT COALESCE(MAX(attempts), 0) FROM outbox
              WHERE kind = 'fulfil' AND entity = '$1' AND state <> 'done'")" -ge 1 ]
}
wait_until 60 tried "$B"
# Meanwhile the seller ships it by hand under another number.
post "orders/$B/ship" '{"logistics_no":"OTHER-TRACK-77","service_name":"CPAM"}' >/dev/null
held() { [ "$(sql "SELECT state FROM outbox WHERE kind = 'fulfil' AND entity = '$B'")" = held ]; }
wait_until 60 held
ctl -X DELETE "$base/control/faults/$fault" >/dev/null
check_eq "$(open_exc "$B" upstream_rejected)" 1 "order B's exception"
check_eq "$(sql "SELECT COUNT(*) FROM exceptions e JOIN orders o ON o.id = e.order_ref
    WHERE o.order_id = '$B' AND e.state <> 'resolved' AND e.message LIKE '%OTHER-TRACK-77%'")" 1 \
    "order B's exception names the other tracking number"
check_eq "$(fulfils_of "$B")" 0 "fulfils sent for order B after the read-back"
if [ "$(fstate "$B")" = uploaded ]; then bad "order B counted as uploaded"; else ok; fi

# ===================================================================================== C
echo "== C: a split order's last upload fails once; the order carries the first part's number"
# A SKU of which every warehouse has 3: an order of 5 ships from two of them, "part" + "all".
sku2=$(sql "SELECT s.code FROM stock t JOIN skus s ON s.id = t.sku GROUP BY t.sku
            HAVING COUNT(*) = 4 AND MIN(t.snapshot) >= 3 AND s.code <> '$sku'
            ORDER BY s.code LIMIT 1")
for w in "${WHS[@]}"; do
    have=$(ctl "$base/control/stock?wh=$w&format=csv" | awk -F, -v s="$sku2" '$1 == s {print $2}')
    post stock "{\"changes\":1,\"wh\":\"$w\",\"sku\":\"$sku2\",\"delta\":$((3 - have))}" >/dev/null
done
mark_rounds
wait_until 60 inventory_done
C=$(post orders "{\"count\":1,\"sku\":\"$sku2\",\"qty\":5}" | jq -r '.created[0]')
wait_until 60 fstate_is "$C" sent
wc=()
for w in "${WHS[@]}"; do
    ctl "$base/control/outbound?wh=$w" | jq -e --arg id "$C" '.items[] | select(.id == $id)' \
        >/dev/null && wc+=("$w")
done
check_eq "${#wc[@]}" 2 "warehouses shipping order C"
post outbound "{\"wh\":\"${wc[0]}\",\"id\":\"$C\",\"status\":\"shipped\"}" >/dev/null
part_done() {
    [ "$(sql "SELECT COUNT(*) FROM outbox WHERE kind = 'fulfil' AND entity = '$C'
              AND state = 'done'")" = 1 ]
}
wait_until 60 part_done
fault=$(post faults '{"target":"mp","call":"aliexpress.solution.order.fulfill","kind":"status","status":503}' |
    jq -r '.ids[0]')
post outbound "{\"wh\":\"${wc[1]}\",\"id\":\"$C\",\"status\":\"shipped\"}" >/dev/null
wait_until 60 tried "$C"
ctl -X DELETE "$base/control/faults/$fault" >/dev/null
# The read-back sees the first part's number: tally's own shipment, not someone else's.
wait_until 60 fstate_is "$C" uploaded
check_eq "$(ctl "$base/control/fulfilments" | jq -r --arg id "$C" '[.orders[$id][]
    | .send_type + ":" + .result] | join(",")')" "part:applied,all:applied" \
    "order C's fulfils at the marketplace"
check_eq "$(sql "SELECT COUNT(*) FROM outbox WHERE kind = 'fulfil' AND entity = '$C'
    AND state <> 'done'")" 0 "order C's upload rows not done"
check_eq "$(open_exc "$C" upstream_rejected)" 0 "order C's exceptions"

# ===================================================================================== D
echo "== D: the marketplace hands the tracking number back in another case, padded"
D=$(new_order)
wait_until 60 fstate_is "$D" sent
fault=$(post faults '{"target":"mp","call":"aliexpress.solution.order.fulfill","kind":"status","status":503}' |
    jq -r '.ids[0]')
ship "$D" >/dev/null
wait_until 60 tried "$D"
trk=$(sql "SELECT s.tracking_no FROM shipments s JOIN orders o ON o.id = s.order_ref
           WHERE o.order_id = '$D'")
[ -n "$trk" ] && [ "${trk,,}" != "$trk" ] || bad "order D's tracking number '$trk' has no letters"
post "orders/$D/ship" "{\"logistics_no\":\" ${trk,,} \"}" >/dev/null
ctl -X DELETE "$base/control/faults/$fault" >/dev/null
wait_until 60 fstate_is "$D" uploaded
check_eq "$(fulfils_of "$D")" 0 "fulfils sent for order D after the read-back"
check_eq "$(open_exc "$D" upstream_rejected)" 0 "order D's exceptions"
[ "$fails" = 0 ]
