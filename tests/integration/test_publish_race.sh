#!/usr/bin/env bash
# Publishing stock races the marketplace's own deduction (issue 9, A.6c): the marketplace takes
# an order's units off a SKU's stock itself when the order is placed; a value tally computed
# before it pulled that order, sent after, puts the units back on offer.
#   A. an order is placed (tally's orders interval is an hour: it does not pull it by itself),
#      then the warehouse receives goods: tally's stock changes and is due for publishing. The
#      value must not be sent before an orders round has brought the order in and it is
#      reserved: every value published is <= what is truly there (warehouse - orders placed).
#   B. with [marketplace] publish_buffer = 2, an order of 2 is placed while a publish is on its
#      way to the marketplace (delayed there): the buffer covers it.
#   C. while the order list is refused, stock waiting to be published is not sent, and the
#      orders round it needs is not asked for again and again (its interval holds).
#   D. an order placed but not paid (tally pulls it, reserves nothing yet): the marketplace took
#      its units off; the next value published leaves them off too.
#   E. an orders round fails mid-way (the link down) and completes later from the list it read
#      before: an order placed meanwhile is not in it; stock is published only after a round
#      that began after the failure.
#   F. a publish applied at the marketplace with its answer lost (then refused a while), and
#      the value back at the one last acknowledged before tally sends again: that value is sent
#      all the same (the marketplace shows the lost one's), never skipped as already shown.
#   G. as F, tallyd killed while the publish is on its way (the marketplace applies it): the
#      next start sends the value all the same.
# Order A's details come masked (as the simulator sends every order's): its outbound order at
# the warehouse carries the full ship-to all the same (read with order.receiptinfo.get).
# The check reads the simulator's history of published values: for each, the units on hand at
# the warehouse and the units ordered by then (tests/sim/README.md /control/published).
#   test_publish_race.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-pubrace.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap 'sync_cleanup; echo "test_publish_race: $((checks - fails)) passed, $fails failed"' EXIT

sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }
post() { ctl -X POST -H 'Content-Type: application/json' -d "$2" "$base/control/$1"; }
METHOD=aliexpress.solution.batch.product.inventory.update

start_sim --skus 30 --orders 0 --seed 41 --warehouses ES-MAD --outbound-step-seconds 0
echo tally-sim-wh-token >"$tmp/wh.token"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
# config [BUFFER]: one warehouse; orders are pulled at start, then only when tally asks.
config() {
    {
        printf '[station]\nname = PUBRACE\n[sync]\nretry_max = 2\nrequest_timeout = 5\n'
        printf '[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = %s\ncountry = ES\n' \
            "$base" "$tmp/wh.token"
        printf 'inventory_interval = 1\noutbound_interval = 1\n'
        printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
        printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" \
            "$tmp/access.token"
        printf 'catalog_interval = 3600\norders_interval = 3600\n'
        [ -n "${1:-}" ] && printf 'publish_buffer = %s\n' "$1"
    } >"$tmp/tallyd.conf"
}
config
start_tallyd
mark_rounds
wait_until 60 inventory_done
# A SKU the warehouse has at least 5 of.
sku=$(sql "SELECT s.code FROM stock t JOIN skus s ON s.id = t.sku WHERE t.snapshot >= 5
           ORDER BY s.code LIMIT 1")
[ -n "$sku" ] || { bad "no SKU with stock"; exit 1; }
published() { ctl "$base/control/published?sku=$sku"; }
# quiet: the SKU was published and nothing waits to be.
quiet() {
    [ "$(published | jq .publishes)" -ge 1 ] &&
        [ "$(sql "SELECT COUNT(*) FROM publish WHERE dirty = 1")" = 0 ]
}
wait_until 60 quiet
sleep 1
wh_stock() { ctl "$base/control/stock?wh=ES-MAD&format=csv" | awk -F, -v s="$sku" '$1 == s {print $2}'; }
# over: the published values above what was truly there (warehouse - ordered), as
# "value>warehouses-ordered" words; none when every value was within it.
over() {
    published | jq -r '.history[] | select(.value > .warehouses - .ordered)
        | "\(.value)>\(.warehouses)-\(.ordered)@\(.at)"' | tr '\n' ' '
}
pubs() { published | jq .publishes; }
reserved() {
    sql "SELECT COALESCE(SUM(t.reserved), 0) FROM stock t JOIN skus s ON s.id = t.sku
         WHERE s.code = '$sku'"
}

# ===================================================================================== A
echo "== A: an order placed, not pulled yet, then the warehouse receives goods"
n0=$(pubs)
A=$(post orders "{\"count\":1,\"sku\":\"$sku\",\"qty\":3}" | jq -r '.created[0]')
check_eq "$(published | jq .ordered)" 3 "units ordered at the marketplace"
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":2}" >/dev/null
# The receipt is published (a value computed after it): whatever tally did in between.
after_receipt() {
    [ "$(pubs)" -gt "$n0" ] &&
        [ "$(published | jq '.history[-1].warehouses')" = "$(wh_stock)" ]
}
wait_until 60 after_receipt
check_eq "$(over)" "" "values published above the truly available stock (A)"
reserved_is() { [ "$(reserved)" = "$1" ]; }
wait_until 60 reserved_is 3
wait_until 60 quiet
W=$(wh_stock)
check_eq "$(published | jq .value)" "$((W - 3))" "the marketplace's stock after A"
check_eq "$(sql "SELECT COUNT(*) FROM orders WHERE order_id = '$A'")" 1 "order A pulled"
# Its details came masked: the outbound order carries the full ship-to (order.receiptinfo.get).
ob_of_A() { ctl "$base/control/outbound?wh=ES-MAD" | jq -c --arg id "$A" '.items[] | select(.id == $id) | .ship_to'; }
has_ob() { [ -n "$(ob_of_A)" ]; }
wait_until 60 has_ob
check_eq "$(ob_of_A | jq '[.name, .address, .postcode, .phone] | all(type == "string" and length > 0
    and (test("[*]") | not))')" true "order A's outbound ship-to is whole and unmasked"

# ===================================================================================== B
echo "== B: publish_buffer = 2; an order of 2 placed while a publish is on its way"
kill -TERM "$tallyd_pid" && wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
config 2
start_tallyd
# Every value goes again, 2 lower.
shows() { [ "$(published | jq .value)" = "$1" ]; }
wait_until 60 shows "$((W - 3 - 2))"
wait_until 60 quiet
sleep 1
fault=$(post faults "{\"target\":\"mp\",\"call\":\"$METHOD\",\"latency_ms\":3000}" |
    jq -r '.ids[0]')
n1=$(pubs)
# 5 more: the value to send is W + 5 - 3 - 2.
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":5}" >/dev/null
fired() {
    [ "$(ctl "$base/control/faults" | jq --argjson id "$fault" '[.faults[] | select(.id == $id)
        | .fired] | add // 0')" -ge 1 ]
}
if wait_until 60 fired; then
    B=$(post orders "{\"count\":1,\"sku\":\"$sku\",\"qty\":2}" | jq -r '.created[0]')
    [ -n "$B" ] || bad "order B not placed"
fi
more_pubs() { [ "$(pubs)" -gt "$1" ]; }
wait_until 60 more_pubs "$n1"
check_eq "$(over)" "" "values published above the truly available stock (B)"
check_eq "$(published | jq '.history[-1].value')" "$((W + 5 - 3 - 2))" \
    "the value published with the buffer"
ctl -X DELETE "$base/control/faults" >/dev/null

# ===================================================================================== C
echo "== C: the order list is refused: nothing is published, and no round is asked a tick"
order_lists() { ctl "$base/control/stats" | jq '.requests["mp:aliexpress.solution.order.get"] // 0'; }
post faults '{"target":"mp","call":"aliexpress.solution.order.get","kind":"api_error","code":"InvalidParameter"}' \
    >/dev/null
wait_until 60 quiet
n2=$(pubs)
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":1}" >/dev/null
# The receipt makes the SKU dirty; the round asked for is refused ...
dirty() { [ "$(sql "SELECT COUNT(*) FROM publish WHERE dirty = 1")" -ge 1 ]; }
wait_until 60 dirty
refused() { [ "$(order_lists)" -ge 1 ] && st | jq -e '.upstreams[].streams[]
    | select(.name == "mp:orders") | .last_error // "" | length > 0' >/dev/null; }
wait_until 60 refused
# ... and not asked again and again meanwhile (the stream keeps its interval).
c0=$(order_lists)
sleep 3
check_eq "$(order_lists)" "$c0" "order lists asked while the orders stream is refused"
check_eq "$(pubs)" "$n2" "values published without a completed orders round"
ctl -X DELETE "$base/control/faults" >/dev/null

# ===================================================================================== D
echo "== D: an order not paid yet (pulled, not reserved) is off the marketplace's stock too"
# The order list works again: the waiting value goes after the next orders round (asked for
# here: the refused stream keeps its hour's interval).
t sync mp:orders >/dev/null
wait_until 60 quiet
n3=$(pubs)
D=$(post orders "{\"count\":1,\"sku\":\"$sku\",\"qty\":4,\"status\":\"PLACE_ORDER_SUCCESS\"}" |
    jq -r '.created[0]')
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":1}" >/dev/null
wait_until 60 more_pubs "$n3"
wait_until 60 quiet
check_eq "$(sql "SELECT fstate FROM orders WHERE order_id = '$D'")" pending "order D in the replica"
check_eq "$(over)" "" "values published above the truly available stock (D)"

# ===================================================================================== E
echo "== E: an orders round that failed mid-way (link down) and completed much later"
# Its list was read before the failure; the retry reads only the details it misses. An order
# placed meanwhile is not in it: the round's end must not open publishing (another round
# first), else the value leaves that order's units on offer.
n4=$(pubs)
post faults '{"target":"mp","call":"aliexpress.solution.order.info.get","kind":"status","status":503}' \
    >/dev/null
X=$(post orders "{\"count\":1,\"sku\":\"$sku\",\"qty\":1}" | jq -r '.created[0]')
t sync mp:orders >/dev/null
detail_failed() { [ "$(ctl "$base/control/stats" | jq '[.faults | to_entries[]
    | select(.key | endswith(":status")) | .value] | add // 0')" -ge 1 ]; }
wait_until 60 detail_failed
# Y larger than the buffer and the check's slack (orders shipped already counted twice).
Y=$(post orders "{\"count\":1,\"sku\":\"$sku\",\"qty\":10}" | jq -r '.created[0]')
# 12 more: the value to send is 12 - 1 - 10 above the last one (12 - 1 without order Y).
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":12}" >/dev/null
wait_until 60 dirty
ctl -X DELETE "$base/control/faults" >/dev/null
wait_until 60 more_pubs "$n4"
wait_until 60 quiet
check_eq "$(over)" "" "values published above the truly available stock (E)"
check_eq "$(sql "SELECT COUNT(*) FROM orders WHERE order_id IN ('$X', '$Y')")" 2 \
    "orders X and Y pulled"
# ===================================================================================== F
echo "== F: a publish the marketplace applied, its answer lost; the value then goes back"
# tally does not know what the marketplace shows after a lost answer: a later value equal to
# the one it last had acknowledged must be sent all the same (not skipped as already shown),
# else the marketplace keeps the lost publish's higher value (the crash loop's "published above
# available" with the replica knowing the lower figure). tally's last acknowledged value is V.
wait_until 60 quiet
V=$(published | jq .value)
# The first send of the method is applied with its answer lost; every later one is refused (503,
# not applied) until that fault is removed: tally's retries change nothing meanwhile.
ids=$(post faults "[{\"target\":\"mp\",\"call\":\"$METHOD\",\"kind\":\"lost_answer\",\"count\":1},
    {\"target\":\"mp\",\"call\":\"$METHOD\",\"kind\":\"status\",\"status\":503}]")
fault=$(jq -r '.ids[0]' <<<"$ids")
refuse=$(jq -r '.ids[1]' <<<"$ids")
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":1}" >/dev/null
wait_until 60 fired
check_eq "$(published | jq .value)" "$((V + 1))" "the marketplace's stock after the lost answer"
# The unit leaves the warehouse and tally reads it: its value is V again.
W1=$(wh_stock)
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":-1}" >/dev/null
replica_has() { [ "$(sql "SELECT t.snapshot + t.pending FROM stock t JOIN skus s ON s.id = t.sku
    WHERE s.code = '$sku'")" = "$1" ]; }
wait_until 60 replica_has "$((W1 - 1))"
ctl -X DELETE "$base/control/faults/$refuse" >/dev/null
shows_V() { [ "$(published | jq .value)" = "$V" ]; }
wait_until 30 shows_V
wait_until 60 quiet
check_eq "$(published | jq .value)" "$V" "the marketplace's stock once the link is back (F)"
ctl -X DELETE "$base/control/faults" >/dev/null
# ===================================================================================== G
echo "== G: tallyd killed while a publish is on its way; the marketplace applies it"
# As F, the outcome never recorded: the row is still dirty at the next start, its last
# acknowledged value V no proof of what the marketplace shows.
wait_until 60 quiet
V=$(published | jq .value)
fault=$(post faults "{\"target\":\"mp\",\"call\":\"$METHOD\",\"latency_ms\":2000}" | jq -r '.ids[0]')
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":1}" >/dev/null
wait_until 60 fired
kill -9 "$tallyd_pid" && wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
shows() { [ "$(published | jq .value)" = "$1" ]; }
wait_until 10 shows "$((V + 1))"
ctl -X DELETE "$base/control/faults" >/dev/null
# The unit leaves the warehouse; tally reads it (the marketplace down meanwhile) before it may
# publish: its value is V again.
W1=$(wh_stock)
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":-1}" >/dev/null
post link '{"target":"mp","up":false}' >/dev/null
start_tallyd
wait_until 60 replica_has "$((W1 - 1))"
post link '{"target":"mp","up":true}' >/dev/null
wait_until 30 shows "$V"
wait_until 60 quiet
check_eq "$(published | jq .value)" "$V" "the marketplace's stock after the restart (G)"
[ "$fails" = 0 ]
