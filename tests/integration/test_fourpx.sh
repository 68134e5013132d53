#!/usr/bin/env bash
# tallyd against a 4PX warehouse (tally-sim --warehouses ES-MAD:tally,US-4PX:fourpx): the FOP
# connector's whole path, signed requests included.
#   A. stock: the replica's on-hand at US-4PX equals the simulator's, SKU for SKU (full read),
#      and again after warehouse-side changes (incremental rounds from fu.wms.inventory.getlog);
#   B. an order allocated to US-4PX gets its outbound order created exactly once through a lost
#      answer (the retry looks the ref_no up first), progresses to shipped with carrier and
#      tracking, and uploads to the marketplace;
#   C. the same through a kill -9 of tallyd while the create is in flight;
#   D. a cancel before shipping reaches 4PX (status X);
#   E. an inbound notice (an outbox row of kind "inbound", appended to the stopped daemon's
#      replica) is created once, through a lost answer;
#   F. no order at two warehouses; a bad signature secret is refused (auth_failed);
#   (A also: the in-transit figures, onway_stock and the tally warehouse's inbound, arrive.)
#   G. outbound orders last read over 30 days ago: a warehouse exception says some may be out
#      of 4PX's list window (never silently lost); the first round after the start reconciles
#      over more than one page: it ends, a replica figure gone wrong is drift (counted, an
#      exception), a SKU moved at 4PX meanwhile is not;
#   H. a create in flight at a kill -9 and the restart a day later (4PX's list defaults to
#      "today"): the look-up still finds it, nothing is created twice.
#   test_fourpx.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-fourpx.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap 'sync_cleanup; echo "test_fourpx: $((checks - fails)) passed, $fails failed"' EXIT

sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }
post() { ctl -X POST -H 'Content-Type: application/json' -d "$2" "$base/control/$1"; }
fstate() { sql "SELECT fstate FROM orders WHERE order_id = '$1'"; }
fstate_is() { [ "$(fstate "$1")" = "$2" ]; }
ob_json() { ctl "$base/control/outbound?wh=$1" | jq -c --arg id "$2" '.items[] | select(.id == $id)'; }
ob_field() { ob_json "$1" "$2" | jq -r ".$3"; }
stat_of() { ctl "$base/control/stats" | jq --arg k "$1" '[.. | objects | to_entries[]
    | select(.key == $k) | .value | numbers] | add // 0'; }

# Seed 42: a SKU held in two batches straddles the first page boundary (50 rows) of a full read.
start_sim --skus 40 --orders 0 --seed 42 --warehouses ES-MAD:tally,US-4PX:fourpx \
    --outbound-step-seconds 0
echo tally-sim-wh-token >"$tmp/wh.token"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
write_conf() {
    {
        printf '[station]\nname = FPX-TEST\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
        printf 'reconcile_interval = 30\n'
        carriers_conf
        printf '[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = %s\ncountry = ES\n' \
            "$base" "$tmp/wh.token"
        printf 'inventory_interval = 2\noutbound_interval = 1\n'
        printf '[warehouse US-4PX]\nkind = fourpx\napp_key = tally-sim-3pl-key\n'
        printf 'app_secret_file = %s\nurl = %s/wh/US-4PX\ncountry = US\n' "$1" "$base"
        printf 'shipping_method = FPX-US-GROUND\n'
        printf 'inventory_interval = 2\noutbound_interval = 1\n'
        printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
        printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
        printf 'catalog_interval = 2\norders_interval = 1\n'
    } >"$tmp/tallyd.conf"
}
write_conf "$tmp/wh.token"
start_tallyd
mark_rounds
wait_until 60 inventory_done

# compare_4px: the replica's on-hand at US-4PX == the simulator's, for every SKU.
compare_4px() {
    ctl "$base/control/stock?wh=US-4PX&format=csv" | tail -n +2 | awk -F, '{print $1","$2}' |
        sort >"$tmp/sim-4px.csv"
    sql -csv "SELECT s.code, t.snapshot + t.pending FROM stock t JOIN skus s ON s.id = t.sku
        JOIN warehouses w ON w.id = t.warehouse WHERE w.code = 'US-4PX'" | sort >"$tmp/rep-4px.csv"
    local d
    d=$(diff "$tmp/sim-4px.csv" "$tmp/rep-4px.csv" | grep -c '^[<>]')
    if [ "$d" = 0 ] && [ -s "$tmp/sim-4px.csv" ]; then ok; else
        bad "$1: US-4PX replica differs from the simulator in $d lines ($(wc -l <"$tmp/sim-4px.csv") rows)"
        diff "$tmp/sim-4px.csv" "$tmp/rep-4px.csv" | head -6 >&2
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

# ===================================================================================== A
echo "== A: stock"
compare_4px "after the first (full) read"
same_inbound US-4PX "after the first (full) read"
same_inbound ES-MAD "after the first (full) read"
check_eq "$(st | jq -r '.upstreams[] | select(.name == "wh:US-4PX") | .kind // .connector // empty' |
    head -1)" fourpx "US-4PX's kind in status"
# warehouse-side changes: read by the next incremental rounds (getlog, then get by lstsku)
mapfile -t some < <(ctl "$base/control/stock?wh=US-4PX&format=csv" | tail -n +2 | cut -d, -f1 | head -5)
for s in "${some[@]}"; do
    post stock "{\"changes\":1,\"wh\":\"US-4PX\",\"sku\":\"$s\",\"delta\":7}" >/dev/null
done
mark_rounds
wait_until 60 inventory_done
compare_4px "after warehouse-side changes"
check_eq "$(stat_of 'wh:US-4PX:fu.wms.inventory.getlog' | awk '{print ($1 > 0)}')" 1 \
    "incremental rounds read 4PX's stock log"

# A SKU only US-4PX has: its orders go there.
sku=$(sql "SELECT s.code FROM stock t JOIN skus s ON s.id = t.sku JOIN warehouses w
           ON w.id = t.warehouse WHERE w.code = 'US-4PX' AND t.snapshot >= 10 ORDER BY s.code
           LIMIT 1")
[ -n "$sku" ] || { bad "no SKU with stock at US-4PX"; exit 1; }
have=$(ctl "$base/control/stock?wh=ES-MAD&format=csv" | awk -F, -v s="$sku" '$1 == s {print $2}')
[ "${have:-0}" -gt 0 ] && post stock "{\"changes\":1,\"wh\":\"ES-MAD\",\"sku\":\"$sku\",\"delta\":-$have}" >/dev/null
mark_rounds
wait_until 60 inventory_done
new_order() { post orders "{\"count\":1,\"sku\":\"$sku\",\"qty\":1}" | jq -r '.created[0]'; }
at_4px() { [ -n "$(ob_json US-4PX "$1")" ]; }

# ===================================================================================== B
echo "== B: the create's answer is lost"
post faults '{"target":"wh:US-4PX","call":"fu.wms.outbound.create","kind":"lost_answer","count":1}' >/dev/null
B=$(new_order)
wait_until 60 at_4px "$B"
wait_until 60 fstate_is "$B" sent
check_eq "$(ctl "$base/control/stats" | jq '[.faults | to_entries[]
    | select(.key | contains("lost_answer")) | .value] | add // 0')" 1 "lost answers dealt"
check_eq "$(ob_field US-4PX "$B" create_count)" 1 "order B: creates applied at 4PX"
# The coordinator's mark in the create's remark, kept by the simulator (coord.h)
check_eq "$(ob_field US-4PX "$B" station)" "tally coordinator $(st | jq -r .coordination.mark)" \
    "order B: remark at 4PX"
check_eq "$(ob_field US-4PX "$B" repeat_count)" 0 "order B: creates sent again (looked up instead)"
check_eq "$(ob_field US-4PX "$B" service)" FPX-US-GROUND \
    "order B: logistics_product_code = the warehouse's shipping_method"
check_eq "$(sql "SELECT state FROM outbox WHERE kind = 'outbound' AND entity = '$B'")" done \
    "order B's outbound row"
ctl -X DELETE "$base/control/faults" >/dev/null
post outbound "{\"wh\":\"US-4PX\",\"id\":\"$B\",\"status\":\"picking\"}" >/dev/null
post outbound "{\"wh\":\"US-4PX\",\"id\":\"$B\",\"status\":\"packed\"}" >/dev/null
post outbound "{\"wh\":\"US-4PX\",\"id\":\"$B\",\"status\":\"shipped\"}" >/dev/null
wait_until 60 fstate_is "$B" uploaded
trk=$(ob_field US-4PX "$B" tracking_number)
car=$(ob_field US-4PX "$B" carrier)
check_eq "$(sql "SELECT s.carrier || '|' || s.tracking_no FROM shipments s JOIN orders o
    ON o.id = s.order_ref WHERE o.order_id = '$B'")" "$car|$trk" "order B: carrier and tracking"
check_eq "$(ctl "$base/control/fulfilments" | jq -r --arg id "$B" '[.orders[$id][]
    | select(.result == "applied") | .logistics_no] | join(",")')" "$trk" \
    "order B: the tracking number uploaded to the marketplace"

# ===================================================================================== C
echo "== C: tallyd killed while the create is in flight"
post faults '{"target":"wh:US-4PX","call":"fu.wms.outbound.create","kind":"latency","latency_ms":2000,"count":1}' >/dev/null
before=$(stat_of 'wh:US-4PX:fu.wms.outbound.create')
C=$(new_order)
in_flight() { [ "$(stat_of 'wh:US-4PX:fu.wms.outbound.create')" -gt "$before" ]; }
wait_until 60 in_flight
kill -9 "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
wait_until 10 at_4px "$C" # the sim applies it after the delay, to a closed connection
start_tallyd
wait_until 60 fstate_is "$C" sent
check_eq "$(ob_field US-4PX "$C" create_count)" 1 "order C: creates applied at 4PX"
check_eq "$(ob_field US-4PX "$C" repeat_count)" 0 "order C: repeated creates refused at 4PX"
check_eq "$(stat_of 'wh:US-4PX:fu.wms.outbound.getlist' | awk '{print ($1 > 0)}')" 1 \
    "ref_no looked up"
ctl -X DELETE "$base/control/faults" >/dev/null

# ===================================================================================== D
echo "== D: a cancel"
post "orders/$C/status" '{"status":"IN_CANCEL"}' >/dev/null
c_cancelled() { [ "$(fstate "$C")" = cancelled ] && [ "$(ob_field US-4PX "$C" status)" = cancelled ]; }
wait_until 60 c_cancelled
check_eq "$(ob_field US-4PX "$C" status)" cancelled "order C at 4PX after the cancel"
check_eq "$(sql "SELECT state FROM outbox WHERE kind = 'outbound_cancel' AND entity = '$C'")" done \
    "order C's cancel row"

# ===================================================================================== E
echo "== E: an inbound notice, created once through a lost answer"
kill -TERM "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
hex=$(python3 - "$sku" <<'EOF'
import sys
def enc(o):
    if isinstance(o, dict):
        return bytes([0x80 | len(o)]) + b"".join(enc(k) + enc(v) for k, v in o.items())
    if isinstance(o, list):
        return bytes([0x90 | len(o)]) + b"".join(enc(v) for v in o)
    if isinstance(o, str):
        b = o.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else bytes([0xd9, len(b)])) + b
    return bytes([o]) if o < 128 else bytes([0xce]) + o.to_bytes(4, "big")
print(enc({"id": "IN-FPX-0001", "warehouse": "US-4PX",
           "lines": [{"sku": sys.argv[1], "qty": 24}], "from": "ES-MAD",
           "tracking_no": "1Z000001", "note": "restock"}).hex())
EOF
)
sqlite3 -cmd ".timeout 10000" "$tmp/state/replica.db" "INSERT INTO outbox(key, target, entity, kind, payload,
    next_attempt_at, created_at) VALUES('in:US-4PX:IN-FPX-0001', 'wh:US-4PX', 'IN-FPX-0001',
    'inbound', X'$hex', 0, strftime('%s','now'))"
post faults '{"target":"wh:US-4PX","call":"fu.wms.inbound.create","kind":"lost_answer","count":1}' >/dev/null
onway0=$(ctl "$base/control/stock?wh=US-4PX&format=csv" | awk -F, -v s="$sku" 'NR == 1 {
    for (i = 1; i <= NF; i++) if ($i == "inbound") c = i } $1 == s {print $c}')
start_tallyd
in_done() { [ "$(sql "SELECT state FROM outbox WHERE key = 'in:US-4PX:IN-FPX-0001'")" = done ]; }
wait_until 60 in_done
onway1=$(ctl "$base/control/stock?wh=US-4PX&format=csv" | awk -F, -v s="$sku" 'NR == 1 {
    for (i = 1; i <= NF; i++) if ($i == "inbound") c = i } $1 == s {print $c}')
check_eq "$((onway1 - onway0))" 24 "units announced to 4PX (onway) by the notice, once"
check_eq "$(stat_of 'wh:US-4PX:fu.wms.inbound.create')" 1 "inbound creates sent (the retry looked it up)"
check_eq "$(stat_of 'wh:US-4PX:fu.wms.inbound.getlist' | awk '{print ($1 > 0)}')" 1 \
    "the notice's ref_no looked up"
ctl -X DELETE "$base/control/faults" >/dev/null

# ===================================================================================== F
echo "== F: one warehouse per order; a wrong secret"
for o in "$B" "$C"; do
    check_eq "$(ctl "$base/control/outbound?wh=ES-MAD" | jq --arg id "$o" '[.items[]
        | select(.id == $id)] | length')" 0 "order $o at ES-MAD"
done
kill -TERM "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
echo not-the-secret >"$tmp/bad.secret"
write_conf "$tmp/bad.secret"
start_tallyd
auth_failed() { [ "$(st | jq -r '.upstreams[] | select(.name == "wh:US-4PX") | .link')" = auth_failed ]; }
wait_until 30 auth_failed
grep -q 'not-the-secret' "$tmp/tallyd.log" && bad "the secret was logged" || ok
# the secret file fixed while tallyd runs: re-read, the link comes back without a restart
echo tally-sim-wh-token >"$tmp/bad.secret"
link_up() { [ "$(st | jq -r '.upstreams[] | select(.name == "wh:US-4PX") | .link')" = up ]; }
wait_until 60 link_up

# ===================================================================================== G
echo "== G: outbound orders last read over 30 days ago: out of 4PX's list window, and said so"
kill -TERM "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
write_conf "$tmp/wh.token"
sqlite3 -cmd ".timeout 10000" "$tmp/state/replica.db" "UPDATE checkpoints SET cursor = '',
    version = (strftime('%s','now') - 31 * 86400) * 1000 WHERE stream = 'wh:US-4PX:outbound'"
# While stopped: the replica's figure of one SKU goes wrong (a lost write, a bad restore), and
# another SKU moves at 4PX (in its stock log). The first round after the start reconciles: the
# first is drift (counted, repaired, an exception), the second a change, not drift.
# (SKUs that did not move earlier in this test: a movement within the log's overlap of the
# last log round would mark them as moved.)
moved=$(printf "'%s'," "${some[@]}" "$sku")
mapfile -t two < <(sql "SELECT s.code FROM stock t JOIN skus s ON s.id = t.sku JOIN warehouses w
    ON w.id = t.warehouse WHERE w.code = 'US-4PX' AND t.snapshot > 0
    AND s.code NOT IN (${moved%,}) ORDER BY s.code DESC LIMIT 2")
sqlite3 -cmd ".timeout 10000" "$tmp/state/replica.db" "UPDATE stock SET snapshot = snapshot + 5 WHERE warehouse =
    (SELECT id FROM warehouses WHERE code = 'US-4PX') AND sku =
    (SELECT id FROM skus WHERE code = '${two[0]}')"
post stock "{\"changes\":1,\"wh\":\"US-4PX\",\"sku\":\"${two[1]}\",\"delta\":3}" >/dev/null
# ...and the figures were last written by a clock a day ahead of today's (a clock set back
# across the restart): the figures read now must still count.
sqlite3 -cmd ".timeout 10000" "$tmp/state/replica.db" "UPDATE stock SET upstream_version = upstream_version + 86400000
    WHERE warehouse = (SELECT id FROM warehouses WHERE code = 'US-4PX')"
check_eq "$(sql "SELECT COUNT(*) FROM checkpoints WHERE stream = 'wh:US-4PX:outbound'
    AND version < (strftime('%s','now') - 30 * 86400) * 1000")" 1 "US-4PX's outbound checkpoint, set back"
start_tallyd
window_exc() { t --json exceptions --kind warehouse | jq -e '[.items[]
    | select(.message | contains("30 days"))] | length > 0' >/dev/null; }
wait_until 60 window_exc
check_eq "$(t --json exceptions --kind warehouse | jq '[.items[]
    | select(.message | contains("30 days"))] | length')" 1 "the out-of-window exception, once"
# The first round after a start is a reconciliation: a full read of more than one page
# (seed 42: over 50 rows) must end, and leave the replica equal to the simulator.
get0=$(stat_of 'wh:US-4PX:fu.wms.inventory.get')
mark_rounds
wait_until 60 inventory_done
compare_4px "after a reconciliation round"
check_eq "$(t --json exceptions --kind stock_drift | jq '.items | length')" 1 \
    "drift exceptions after the reconciliation"
check_eq "$(t --json exceptions --kind stock_drift | jq -r '.items[0].sku // empty')" "${two[0]}" \
    "the drifted SKU (its figure was wrong in the replica)"
check_eq "$(st | jq '[.upstreams[] | select(.name == "wh:US-4PX") | .streams[]
    | select(.name | endswith(":inventory")) | .repaired // 0] | add')" 1 \
    "rows repaired by reconciliation (the SKU moved at 4PX is not drift)"
check_eq "$(( $(stat_of 'wh:US-4PX:fu.wms.inventory.get') - get0 < 40 ))" 1 \
    "stock calls in one reconciliation round (pages are not read again and again)"
# ===================================================================================== I
echo "== I: a cancel racing the shipment (both happen while tallyd is stopped)"
I=$(new_order)
wait_until 60 fstate_is "$I" sent
kill -TERM "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
post outbound "{\"wh\":\"US-4PX\",\"id\":\"$I\",\"status\":\"shipped\"}" >/dev/null
post "orders/$I/status" '{"status":"IN_CANCEL"}' >/dev/null
# the first progress read is slow: the marketplace's cancel is seen first, the cancel is sent
post faults '{"target":"wh:US-4PX","call":"fu.wms.outbound.getlist","kind":"latency","latency_ms":4000,"count":1}' >/dev/null
start_tallyd
i_settled() { case "$(fstate "$I")" in shipped | uploaded | finished) true ;; *) false ;; esac; }
wait_until 60 i_settled
check_eq "$(ob_field US-4PX "$I" status)" shipped "order I at 4PX: shipped (a cancel cannot undo it)"
# a cancel sent after the shipment is held as "already shipped", never taken as done
check_eq "$(sql "SELECT COUNT(*) FROM outbox WHERE kind = 'outbound_cancel' AND entity = '$I'
    AND (state = 'done' OR (state = 'held' AND last_error NOT LIKE '%already shipped%'))")" 0 \
    "order I: no cancel row done, or held for another reason"

# ===================================================================================== H
echo "== H: a create in flight at a kill -9, the restart a day later: found by ref_no, not re-sent"
post faults '{"target":"wh:US-4PX","call":"fu.wms.outbound.create","kind":"latency","latency_ms":2000,"count":1}' >/dev/null
before=$(stat_of 'wh:US-4PX:fu.wms.outbound.create')
H=$(new_order)
wait_until 60 in_flight
kill -9 "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
wait_until 10 at_4px "$H"
ctl -X DELETE "$base/control/faults" >/dev/null
post advance '{"seconds":90000}' >/dev/null # 25 h: 4PX's "today" no longer holds the order
start_tallyd
wait_until 60 fstate_is "$H" sent
check_eq "$(ob_field US-4PX "$H" create_count)" 1 "order H: creates applied at 4PX"
check_eq "$(ob_field US-4PX "$H" repeat_count)" 0 "order H: creates sent again (refused as duplicates)"
check_eq "$(sql "SELECT state FROM outbox WHERE kind = 'outbound' AND entity = '$H'")" done \
    "order H's outbound row"
kill -TERM "$tallyd_pid" # (its exit is where a leak would be reported)
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
# A sanitizer build reports here (UBSan goes on after a report).
if grep -E "runtime error|Sanitizer" "$tmp/tallyd.log" "$tmp/sim.err" >&2; then
    bad "sanitizer reports"
else ok; fi
[ "$fails" = 0 ]
