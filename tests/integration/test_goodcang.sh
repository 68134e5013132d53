#!/usr/bin/env bash
# A Goodcang warehouse (UK-GC) next to a tally one (ES-MAD), through tally-sim's Goodcang API
# (conn_goodcang.c; tests/sim/README.md "Goodcang"):
#   1. after the first sync the replica's stock of UK-GC is the simulator's (sellable +
#      reserved; onway kept apart as in transit, as the tally warehouse's inbound), and changes made at the warehouse arrive through the stock log rounds;
#   2. orders that only UK-GC can serve get an outbound order created exactly once: A through a
#      lost answer to create_order, B through a kill -9 of tallyd while its create_order is in
#      flight (the simulator refuses a second create with the same reference_no, so a re-send
#      without the look-up would be held), D through a lost answer and a failed look-up (the
#      re-sent create is refused as a duplicate: looked up again, done, not held); all ship
#      with carrier + tracking and are uploaded to the marketplace;
#   3. a marketplace cancel of order C cancels its outbound order at UK-GC, and of order E too
#      while E's create waits to be sent again after a lost answer; F's cancel meets its
#      shipment (held, one cancelled-after-pick exception);
#   4. an inbound notice (outbox kind "inbound", appended to a stopped daemon's replica as
#      the outbox module does) is created once as a GRN through a lost answer;
#   5. no order has an outbound order at two warehouses; no other outbox row is held; a stock change
#      still arrives after the clock went back across a restart (read-time versions); the first
#      round after that restart reconciles: a replica figure gone wrong is drift (counted, a
#      stock_drift exception), a SKU moved at Goodcang meanwhile is not.
#   test_goodcang.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-goodcang.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap 'sync_cleanup; echo "test_goodcang: $((checks - fails)) passed, $fails failed"' EXIT

sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }
post() { ctl -X POST -H 'Content-Type: application/json' -d "$2" "$base/control/$1"; }
fstate() { sql "SELECT fstate FROM orders WHERE order_id = '$1'"; }
fstate_is() { [ "$(fstate "$1")" = "$2" ]; }
# gc CALL JSON: a call to the simulated Goodcang API, as a client with the right keys.
gc() {
    ctl -H 'app-key: tally-sim-3pl-key' -H "app-token: $(cat "$tmp/wh.token")" \
        -H 'Content-Type: application/json' -d "$2" "$base/wh/UK-GC/public_open/$1"
}
ob() { ctl "$base/control/outbound?wh=$1" | jq -c --arg id "$2" '.items[] | select(.id == $id)'; }
requests() {
    ctl "$base/control/stats" | jq --arg k "wh:UK-GC:$1" '.requests[$k] // 0'
}

start_sim --skus 40 --orders 0 --seed 53 --warehouses ES-MAD:tally,UK-GC:goodcang \
    --outbound-step-seconds 0
echo tally-sim-wh-token >"$tmp/wh.token"
echo expired-app-token >"$tmp/gc.token" # fixed below, while tallyd runs
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
{
    printf '[station]\nname = GC-TEST\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
    printf 'reconcile_interval = 3600\n'
    # Goodcang reports the order's shipping_method as its carrier: it maps to CPAM too.
    carriers_conf
    printf 'UK-RM48 = CPAM\n'
    printf '[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = %s\ncountry = ES\n' \
        "$base" "$tmp/wh.token"
    printf 'inventory_interval = 2\noutbound_interval = 1\n'
    printf '[warehouse UK-GC]\nkind = goodcang\nurl = %s/wh/UK-GC\napp_key = tally-sim-3pl-key\n' \
        "$base"
    printf 'app_token_file = %s\ncountry = GB\nshipping_method = UK-RM48\n' "$tmp/gc.token"
    printf 'inventory_interval = 1\noutbound_interval = 1\n'
    printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
    printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
    printf 'catalog_interval = 2\norders_interval = 1\n'
} >"$tmp/tallyd.conf"

# compare_gc: the replica's UK-GC stock == the simulator's Goodcang figures (sellable +
# reserved), SKU for SKU.
compare_gc() {
    gc inventory/get_product_inventory '{"warehouse_code":"UK-GC","page":1,"pageSize":100}' |
        jq -r '.data[] | "\(.product_sku),\(.sellable + .reserved)"' | sort >"$tmp/sim-gc.csv"
    sql -csv "SELECT s.code, t.snapshot + t.pending FROM stock t JOIN skus s ON s.id = t.sku
        JOIN warehouses w ON w.id = t.warehouse WHERE w.code = 'UK-GC'" | sort >"$tmp/rep-gc.csv"
    diff -q "$tmp/sim-gc.csv" "$tmp/rep-gc.csv" >/dev/null
}
same_gc() {
    if compare_gc; then ok; else
        bad "$1: the replica's UK-GC stock differs from the simulator's"
        diff "$tmp/sim-gc.csv" "$tmp/rep-gc.csv" | head -6 >&2
    fi
}

# same_inbound WH: the replica's in-transit figures of WH (stock.inbound) == the simulator's
# (tally Warehouse API inbound, Goodcang onway, 4PX onway_stock), SKU for SKU, and some are not 0.
same_inbound() {
    ctl "$base/control/stock?wh=$1&format=csv" | tail -n +2 | awk -F, '{print $1","$3}' |
        sort >"$tmp/sim-in.csv"
    sql -csv "SELECT s.code, IFNULL(t.inbound, '-') FROM stock t JOIN skus s ON s.id = t.sku
        JOIN warehouses w ON w.id = t.warehouse WHERE w.code = '$1'" | sort >"$tmp/rep-in.csv"
    if diff -q "$tmp/sim-in.csv" "$tmp/rep-in.csv" >/dev/null &&
        awk -F, '$2 > 0 {n++} END {exit !n}' "$tmp/sim-in.csv"; then ok; else
        bad "$2: $1's in-transit figures differ from the simulator's (or all are 0)"
        diff "$tmp/sim-in.csv" "$tmp/rep-in.csv" | head -6 >&2
    fi
}

# ===================================================================================== 1
echo "== 0: a refused app-token"
start_tallyd
link_of() { st | jq -r --arg n "$1" '.upstreams[] | select(.name == $n) | .link'; }
gc_auth_failed() { [ "$(link_of wh:UK-GC)" = auth_failed ]; }
wait_until 30 gc_auth_failed
es_up() { [ "$(link_of wh:ES-MAD)" = up ]; }
wait_until 30 es_up # the other warehouse carries on
check_eq "$(link_of wh:UK-GC)" auth_failed "UK-GC's link while its token is refused"
echo tally-sim-wh-token >"$tmp/gc.token" # the right one: read again without a restart

echo "== 1: stock"
mark_rounds
wait_until 60 inventory_done
check_eq "$(sql "SELECT COUNT(*) FROM stock t JOIN warehouses w ON w.id = t.warehouse
    WHERE w.code = 'UK-GC'")" 40 "UK-GC stock rows after the first sync"
same_gc "after the first sync"
same_inbound UK-GC "after the first sync"
same_inbound ES-MAD "after the first sync"
check_eq "$(st | jq -r '.upstreams[] | select(.name == "wh:UK-GC") | .streams[]
    | select(.name | endswith(":inventory")) | .last_error // ""')" "" "UK-GC inventory errors"
# Changes at the warehouse come through the stock log (a log round re-reads the SKUs named).
skus=($(sql "SELECT code FROM skus ORDER BY code LIMIT 4"))
logs_before=$(requests inventory/get_inventory_log)
for s in "${skus[@]:0:3}"; do
    post stock "{\"changes\":1,\"wh\":\"UK-GC\",\"sku\":\"$s\",\"delta\":7}" >/dev/null
done
wait_until 30 compare_gc
same_gc "after changes at the warehouse"
logs=$(requests inventory/get_inventory_log)
if [ "$logs" -gt "$logs_before" ]; then ok; else bad "no stock log read after the first sync"; fi

# An answer that is not Goodcang's (200, not JSON) is an error of that stream that says so;
# the stream reads again once the answers are Goodcang's.
fault=$(post faults '{"target":"wh:UK-GC","call":"order/get_order_list","kind":"malformed"}' |
    jq -r '.ids[0]')
ob_error() {
    st | jq -r '.upstreams[] | select(.name == "wh:UK-GC") | .streams[]
        | select(.name | endswith(":outbound")) | .last_error // ""'
}
foreign() { grep -q "not a Goodcang answer" <<<"$(ob_error)"; }
wait_until 30 foreign
ctl -X DELETE "$base/control/faults/$fault" >/dev/null
no_ob_error() { [ -z "$(ob_error)" ]; }
wait_until 30 no_ob_error

# One SKU only UK-GC has: orders of it go there.
sku=${skus[3]}
have_es=$(ctl "$base/control/stock?wh=ES-MAD&format=csv" | awk -F, -v s="$sku" '$1 == s {print $2}')
have_gc=$(ctl "$base/control/stock?wh=UK-GC&format=csv" | awk -F, -v s="$sku" '$1 == s {print $2}')
post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":$((0 - have_es))}" >/dev/null
post stock "{\"changes\":1,\"wh\":\"UK-GC\",\"sku\":\"$sku\",\"delta\":$((30 - have_gc))}" >/dev/null
gc_has_30() { [ "$(sql "SELECT t.snapshot FROM stock t JOIN skus s ON s.id = t.sku
    JOIN warehouses w ON w.id = t.warehouse WHERE w.code = 'UK-GC' AND s.code = '$sku'")" = 30 ]; }
es_has_0() { [ "$(sql "SELECT t.snapshot FROM stock t JOIN skus s ON s.id = t.sku
    JOIN warehouses w ON w.id = t.warehouse WHERE w.code = 'ES-MAD' AND s.code = '$sku'")" = 0 ]; }
wait_until 30 gc_has_30 && wait_until 30 es_has_0
new_order() { post orders "{\"count\":1,\"sku\":\"$sku\",\"qty\":$1}" | jq -r '.created[0]'; }

# ===================================================================================== 2
echo "== 2: outbound orders, exactly once"
post faults '{"target":"wh:UK-GC","call":"order/create_order","kind":"lost_answer","count":1}' \
    >/dev/null
A=$(new_order 1)
wait_until 60 fstate_is "$A" sent
check_eq "$(ob UK-GC "$A" | jq .create_count)" 1 "order A's creates at UK-GC"
# The coordinator's mark in order_desc, as Goodcang answers it (coord.h)
check_eq "$(gc order/get_order_by_ref_code "{\"reference_no\":\"$A\"}" | jq -r .data.order_desc)" \
    "tally coordinator $(st | jq -r .coordination.mark)" "order A's order_desc at UK-GC"
check_eq "$(ctl "$base/control/stats" | jq '[.faults | to_entries[]
    | select(.key | contains("lost_answer")) | .value] | add // 0')" 1 "lost answers dealt"
check_eq "$(sql "SELECT state FROM outbox WHERE kind = 'outbound' AND entity = '$A'")" done \
    "order A's outbound row"
ctl -X DELETE "$base/control/faults" >/dev/null

# B: tallyd is killed while its create_order is in flight (held 1.5 s by the simulator).
post faults '{"target":"wh:UK-GC","call":"order/create_order","latency_ms":1500,"count":1}' \
    >/dev/null
creates_before=$(requests order/create_order)
B=$(new_order 2)
create_seen() { [ "$(requests order/create_order)" -gt "$creates_before" ]; }
wait_until 60 create_seen
kill -9 "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
sleep 2 # the simulator applies it (or not) with no one waiting
start_tallyd
wait_until 60 fstate_is "$B" sent
check_eq "$(ob UK-GC "$B" | jq .create_count)" 1 "order B's creates at UK-GC after a kill -9"
check_eq "$(sql "SELECT state FROM outbox WHERE kind = 'outbound' AND entity = '$B'")" done \
    "order B's outbound row"
ctl -X DELETE "$base/control/faults" >/dev/null

# D: the create is applied and its answer lost, and the look-up before the re-send fails
# (HTTP 400 in Goodcang's envelope): the re-sent create is refused (reference_no already
# exists). The order is at UK-GC: the row is done, never held for an order that exists.
post faults '{"target":"wh:UK-GC","call":"order/create_order","kind":"lost_answer","count":1}' \
    >/dev/null
post faults '{"target":"wh:UK-GC","call":"order/get_order_by_ref_code","kind":"status",
    "status":400,"count":1}' >/dev/null
D=$(new_order 1)
d_settled() {
    [ "$(sql "SELECT state FROM outbox WHERE kind = 'outbound' AND entity = '$D'")" = done ] ||
        [ "$(sql "SELECT state FROM outbox WHERE kind = 'outbound' AND entity = '$D'")" = held ]
}
wait_until 60 d_settled
check_eq "$(sql "SELECT state FROM outbox WHERE kind = 'outbound' AND entity = '$D'")" done \
    "order D's outbound row after a refused duplicate create"
wait_until 60 fstate_is "$D" sent
check_eq "$(fstate "$D")" sent "order D after a refused duplicate create"
check_eq "$(ob UK-GC "$D" | jq .create_count)" 1 "order D's creates at UK-GC"
check_eq "$(sql "SELECT COUNT(*) FROM exceptions e JOIN orders o ON o.id = e.order_ref
    WHERE o.order_id = '$D' AND e.kind = 'upstream_rejected' AND e.state = 'open'")" 0 \
    "open 'refused' exceptions of order D"
ctl -X DELETE "$base/control/faults" >/dev/null

for o in "$A" "$B" "$D"; do
    post outbound "{\"wh\":\"UK-GC\",\"id\":\"$o\",\"status\":\"shipped\"}" >/dev/null
done
for o in "$A" "$B" "$D"; do
    wait_until 60 fstate_is "$o" uploaded
    trk=$(ob UK-GC "$o" | jq -r .tracking_number)
    check_eq "$(sql "SELECT s.carrier || ' ' || s.tracking_no FROM shipments s
        JOIN orders r ON r.id = s.order_ref WHERE r.order_id = '$o'")" "UK-RM48 $trk" \
        "order $o's shipment (carrier = Goodcang's shipping_method, tracking_no)"
    check_eq "$(ctl "$base/control/fulfilments" | jq -r --arg id "$o" '[.orders[$id][]
        | .service_name + " " + .logistics_no + " " + .result] | join(",")')" \
        "CPAM $trk applied" "order $o's upload (under the service UK-RM48 maps to)"
done

# ===================================================================================== 3
echo "== 3: a cancel"
C=$(new_order 1)
wait_until 60 fstate_is "$C" sent
post "orders/$C/status" '{"status":"IN_CANCEL"}' >/dev/null
ob_cancelled() { [ "$(ob UK-GC "$C" | jq -r .status)" = cancelled ]; }
wait_until 60 ob_cancelled
cancel_done() {
    [ "$(sql "SELECT state FROM outbox WHERE kind = 'outbound_cancel' AND entity = '$C'")" = done ]
}
wait_until 60 cancel_done
released() {
    [ "$(sql "SELECT COUNT(*) FROM allocations a JOIN orders o ON o.id = a.order_ref
        WHERE o.order_id = '$C' AND a.state = 'reserved'")" = 0 ]
}
wait_until 60 released

# E: the create is applied and its answer lost; the marketplace cancels the order while the
# create waits to be sent again. The cancel goes after the create's look-up, finds the order
# and cancels it: no second create, nothing held.
post faults '{"target":"wh:UK-GC","call":"order/create_order","kind":"lost_answer","count":1}' \
    >/dev/null
creates_before=$(requests order/create_order)
E=$(new_order 1)
wait_until 60 create_seen
post "orders/$E/status" '{"status":"IN_CANCEL"}' >/dev/null
e_cancelled() { [ "$(ob UK-GC "$E" | jq -r .status)" = cancelled ]; }
wait_until 60 e_cancelled
e_rows_done() {
    [ "$(sql "SELECT COUNT(*) FROM outbox WHERE entity = '$E' AND target = 'wh:UK-GC'
        AND state = 'done'")" = 2 ]
}
wait_until 60 e_rows_done
check_eq "$(sql "SELECT kind || ' ' || state FROM outbox WHERE entity = '$E'
    AND target = 'wh:UK-GC' ORDER BY id" | tr '\n' ,)" "outbound done,outbound_cancel done," \
    "order E's rows after a lost create answer and a cancel"
check_eq "$(ob UK-GC "$E" | jq .create_count)" 1 "order E's creates at UK-GC"
ctl -X DELETE "$base/control/faults" >/dev/null

# F: the marketplace cancels; UK-GC ships the order while the cancel_order is on its way. The
# refused cancel is held and the order has one cancelled-after-pick exception (as for a
# tally warehouse); the shipment is still recorded.
F=$(new_order 1)
wait_until 60 fstate_is "$F" sent
post faults '{"target":"wh:UK-GC","call":"order/cancel_order","latency_ms":1500,"count":1}' \
    >/dev/null
cancels_before=$(requests order/cancel_order)
post "orders/$F/status" '{"status":"IN_CANCEL"}' >/dev/null
cancel_seen() { [ "$(requests order/cancel_order)" -gt "$cancels_before" ]; }
wait_until 60 cancel_seen
post outbound "{\"wh\":\"UK-GC\",\"id\":\"$F\",\"status\":\"shipped\"}" >/dev/null
f_cancel_held() {
    [ "$(sql "SELECT state FROM outbox WHERE kind = 'outbound_cancel' AND entity = '$F'")" = held ]
}
wait_until 60 f_cancel_held
check_eq "$(sql "SELECT state FROM outbox WHERE kind = 'outbound_cancel' AND entity = '$F'")" \
    held "order F's cancel after UK-GC shipped it"
f_cap() {
    [ "$(sql "SELECT COUNT(*) FROM exceptions e JOIN orders o ON o.id = e.order_ref
        WHERE o.order_id = '$F' AND e.kind = 'cancelled_after_pick' AND e.state <> 'resolved'")" = 1 ]
}
wait_until 60 f_cap
check_eq "$(sql "SELECT COUNT(*) FROM exceptions e JOIN orders o ON o.id = e.order_ref
    WHERE o.order_id = '$F' AND e.kind = 'cancelled_after_pick'")" 1 \
    "order F's cancelled-after-pick exceptions"
f_shipped() { [ "$(sql "SELECT COUNT(*) FROM shipments s JOIN orders o ON o.id = s.order_ref
    WHERE o.order_id = '$F'")" = 1 ]; }
wait_until 60 f_shipped
ctl -X DELETE "$base/control/faults" >/dev/null

# ===================================================================================== 4
echo "== 4: an inbound notice"
mp_str() { printf '%02x' $((0xa0 + ${#1})); printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
payload="84$(mp_str id)$(mp_str IN-GC-1)$(mp_str warehouse)$(mp_str UK-GC)"
payload+="$(mp_str lines)9182$(mp_str sku)$(mp_str "$sku")$(mp_str qty)07"
payload+="$(mp_str from)$(mp_str ES-MAD)"
kill -TERM "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
sqlite3 -cmd ".timeout 10000" "$tmp/state/replica.db" "INSERT INTO outbox(key, target, entity, kind, payload,
    next_attempt_at, created_at) VALUES('in:UK-GC:IN-GC-1', 'wh:UK-GC', 'IN-GC-1', 'inbound',
    X'$payload', 0, strftime('%s','now'))"
# The clock went back a day while tallyd was stopped (as seen from the replica: its UK-GC
# stock versions, the read times in ms, are a day ahead): fresh reads must still apply.
sqlite3 -cmd ".timeout 10000" "$tmp/state/replica.db" "UPDATE stock SET upstream_version = upstream_version + 86400000
    WHERE warehouse = (SELECT id FROM warehouses WHERE code = 'UK-GC')"
# While stopped: the replica's figure of one SKU goes wrong (a lost write, a bad restore), and
# another SKU moves at Goodcang (in its stock log). The first round after the start reconciles:
# the first is drift (counted, repaired, an exception), the second a change, not drift. (SKUs
# whose last movement is over two days old, in any server zone: a movement within the log's
# overlap of the last log round would mark them as moved.)
gc inventory/get_inventory_log '{"warehouse_code":"UK-GC","page":1,"pageSize":100}' |
    jq -r --argjson t "$(($(date +%s) - 2 * 86400))" '.data[]
        | select(.ibl_add_time | strptime("%Y-%m-%d %H:%M:%S") | mktime > $t) | .product_sku' \
        >"$tmp/gc-moved.txt"
mapfile -t two < <(sql "SELECT s.code FROM stock t JOIN skus s ON s.id = t.sku JOIN warehouses w
    ON w.id = t.warehouse WHERE w.code = 'UK-GC' AND t.snapshot > 0 ORDER BY s.code DESC" |
    grep -vxF -f "$tmp/gc-moved.txt" | head -2)
check_eq "${#two[@]}" 2 "UK-GC SKUs that never moved (for the drift check)"
sqlite3 -cmd ".timeout 10000" "$tmp/state/replica.db" "UPDATE stock SET snapshot = snapshot + 5 WHERE warehouse =
    (SELECT id FROM warehouses WHERE code = 'UK-GC') AND sku =
    (SELECT id FROM skus WHERE code = '${two[0]:-}')"
post stock "{\"changes\":1,\"wh\":\"UK-GC\",\"sku\":\"${two[1]:-}\",\"delta\":3}" >/dev/null
onway() {
    gc inventory/get_product_inventory "{\"warehouse_code\":\"UK-GC\",\"product_sku\":\"$sku\",
        \"page\":1,\"pageSize\":1}" | jq '.data[0].onway'
}
onway_before=$(onway)
post faults '{"target":"wh:UK-GC","call":"inbound_order/create_grn","kind":"lost_answer","count":1}' \
    >/dev/null
start_tallyd
notice_done() { [ "$(sql "SELECT state FROM outbox WHERE key = 'in:UK-GC:IN-GC-1'")" = done ]; }
wait_until 60 notice_done
check_eq "$(gc inbound_order/get_grn_list '{"page":1,"pageSize":100}' |
    jq '[.data[] | select(.reference_no == "IN-GC-1")] | length')" 1 "GRNs with the notice's reference"
check_eq "$(($(onway) - onway_before))" 7 "units on the way to UK-GC after the notice"
if [ "$(requests inbound_order/get_grn_list)" -ge 1 ]; then ok; else
    bad "no GRN look-up after the lost answer"
fi
check_eq "$(requests inbound_order/create_grn)" 1 "create_grn calls (the lost one; none after it)"
ctl -X DELETE "$base/control/faults" >/dev/null

# ===================================================================================== 5
echo "== 5: no order at two warehouses, nothing held"
es=$(ctl "$base/control/outbound?wh=ES-MAD" | jq -r '.items[].id' | sort)
uk=$(ctl "$base/control/outbound?wh=UK-GC" | jq -r '.items[].id' | sort)
check_eq "$(comm -12 <(echo "$es") <(echo "$uk") | grep -c .)" 0 "orders at both warehouses"
check_eq "$(echo "$uk" | grep -c .)" 6 "outbound orders at UK-GC"
check_eq "$(sql "SELECT COUNT(*) FROM outbox WHERE state = 'held' AND entity <> '$F'")" 0 \
    "held outbox rows (besides order F's cancel)"
sql "SELECT key, last_error FROM outbox WHERE state = 'held'" >&2
check_eq "$(sql "SELECT COUNT(*) FROM outbox WHERE target = 'wh:UK-GC' AND state <> 'done'
    AND entity <> '$F'")" 0 "UK-GC rows not done (besides order F's cancel)"
post stock "{\"changes\":1,\"wh\":\"UK-GC\",\"sku\":\"${skus[0]}\",\"delta\":5}" >/dev/null
mark_rounds
wait_until 60 inventory_done
wait_until 30 compare_gc
same_gc "at the end (a change after the clock went back)"
same_inbound UK-GC "at the end (a notice's goods on their way)"
# Shown by `tally stock`, never counted as on hand or available.
check_eq "$(t --json stock "$sku" | jq '.warehouses[] | select(.warehouse == "UK-GC") | .inbound')" \
    "$(onway)" "$sku's goods on their way to UK-GC in tally stock"
check_eq "$(t --json stock "$sku" | jq '.warehouses[] | select(.warehouse == "UK-GC")
    | .on_hand == .snapshot + .pending')" true "UK-GC on hand without the goods on their way"
if grep -q INBOUND <<<"$(t stock "$sku")"; then ok; else bad "no INBOUND column in tally stock"; fi
check_eq "$(t --json exceptions --kind stock_drift | jq '.items | length')" 1 \
    "drift exceptions after the reconciliation"
check_eq "$(t --json exceptions --kind stock_drift | jq -r '.items[0].sku // empty')" "${two[0]:-}" \
    "the drifted SKU (its figure was wrong in the replica)"
check_eq "$(st | jq '[.upstreams[] | select(.name == "wh:UK-GC") | .streams[]
    | select(.name | endswith(":inventory")) | .repaired // 0] | add')" 1 \
    "rows repaired by reconciliation (the SKU moved at Goodcang is not drift)"
# A sanitizer build reports here (UBSan goes on after a report).
if grep -E "runtime error|Sanitizer" "$tmp/tallyd.log" "$tmp/sim.err" >&2; then
    bad "sanitizer reports"
else ok; fi
[ "$fails" = 0 ]
