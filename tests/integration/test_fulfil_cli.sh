#!/usr/bin/env bash
# Integration: the part-3 fulfilment commands through the real tally binary.
#   test_fulfil_cli.sh TALLYD TALLY
# Seeds an offline station by import (three warehouses with station fulfilment, a small catalog,
# stock, and orders: one to allocate in-country, one with a bad ES postcode, one held by risk
# control, one no warehouse can fill, one to ship in two parts, one finished long ago), waits for
# the fulfilment pass, then drives allocation, shipping, exceptions, stock rules, returns, promo
# checks, the report and the privacy purge through the CLI, asserting exact values.
set -uo pipefail
TALLYD=$1 TALLY=$2
tmp=$(mktemp -d /tmp/tally-fulfil.XXXXXX)
chmod 755 "$tmp"
sock=$tmp/tally.sock
pid= watch_pid=
fails=0 checks=0

cleanup() {
    [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$1" == "$2" ]; then ok; else bad "$3: expected '$2', got '$1'"; fi; }
# grep reads a here-string: with pipefail, grep -q quitting at the first match made printf's
# SIGPIPE fail the check now and then.
expect_match() { if grep -Eq -- "$2" <<<"$1"; then ok; else bad "$3: '$2' not in: $1"; fi; }

start() {
    "$TALLYD" --state-dir "$tmp/state" --socket "$sock" --station FULFIL-TEST "$@" \
        >>"$tmp/tallyd.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        "$TALLY" --socket "$sock" status >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "tallyd did not start:" >&2
    cat "$tmp/tallyd.log" >&2
    exit 1
}
t() { "$TALLY" --socket "$sock" "$@"; }
j() { "$TALLY" --socket "$sock" --json "$@"; }
# rc COMMAND...: the exit status of a tally command, its output discarded.
rc() { "$TALLY" --socket "$sock" "$@" >/dev/null 2>&1; echo $?; }
# stk SKU WAREHOUSE FIELD: one figure of `tally stock SKU`.
stk() { j stock "$1" | jq -r --arg w "$2" --arg f "$3" '.warehouses[] | select(.warehouse == $w) | .[$f]'; }
ids() { jq -r '[.items[].order_id] | sort | join(",")'; }

now=$(date +%s)
created=$((now - 60))
# The orders must be created on the day the shipments are made, for the report's figures.
[ "$(date -d "@$created" +%F)" == "$(date -d "@$now" +%F)" ] || created=$now
day=$(date -d "@$created" +%F)
later=$((now + 3 * 86400))
soon=$((now + 2 * 3600))
old=$((now - 40 * 86400))
me=$(id -un)

mkdir -p "$tmp/data"
cat >"$tmp/data/warehouses.csv" <<EOF
code,name,country,serves_marketplace,fulfilment
ES-MAD,Madrid,ES,true,station
FR-PAR,Paris,FR,true,station
US-LAX,Los Angeles,US,true,station
EOF
cat >"$tmp/data/catalog.csv" <<EOF
sku,product_id,title,product_title,price_minor,currency,weight_g
TS-RED-M,P-TS,T-shirt red M,T-shirt,1299,EUR,180
TS-RED-L,P-TS,T-shirt red L,T-shirt,1499,EUR,190
MUG-1,P-MUG,Mug white,Mug,899,EUR,350
RARE-1,P-RARE,Rare lamp,Lamp,5000,EUR,900
EOF
cat >"$tmp/data/stock.csv" <<EOF
sku,warehouse,on_hand
TS-RED-M,ES-MAD,10
TS-RED-M,FR-PAR,5
TS-RED-M,US-LAX,3
TS-RED-L,ES-MAD,4
TS-RED-L,FR-PAR,2
MUG-1,ES-MAD,6
MUG-1,US-LAX,2
EOF
h=order_id,status,created_at,ship_by,country,currency,sku,qty,price_minor,service,buyer_name,address,city,postcode,phone
w=WAIT_SELLER_SEND_GOODS
cat >"$tmp/data/orders.csv" <<EOF
$h
O-ES-1,$w,$created,$later,ES,EUR,TS-RED-M,2,1299,CAINIAO_STANDARD,Ana Garcia,Calle Mayor 1,Madrid,28013,+34600000001
O-ES-1,$w,$created,$later,ES,EUR,MUG-1,1,899,CAINIAO_STANDARD,Ana Garcia,Calle Mayor 1,Madrid,28013,+34600000001
O-BAD-1,$w,$created,$later,ES,EUR,TS-RED-M,1,1299,CAINIAO_STANDARD,Luis Perez,Calle Sol 2,Sevilla,ABC12,+34600000002
O-RISK-1,RISK_CONTROL,$created,$later,FR,EUR,TS-RED-M,1,1299,CAINIAO_STANDARD,Marie Dupont,1 rue de Rivoli,Paris,75001,+33600000003
O-OOS-1,$w,$created,$later,US,USD,RARE-1,1,5000,CAINIAO_STANDARD,John Smith,100 Main St,Los Angeles,90012,+12135550104
O-FR-1,$w,$created,$soon,FR,EUR,TS-RED-L,1,1499,CAINIAO_STANDARD,Paul Martin,2 rue Cler,Paris,75007,+33600000005
O-FR-1,$w,$created,$soon,FR,EUR,TS-RED-M,1,1299,CAINIAO_STANDARD,Paul Martin,2 rue Cler,Paris,75007,+33600000005
O-OLD-1,FINISH,$old,,ES,EUR,TS-RED-M,1,1299,CAINIAO_STANDARD,Old Buyer,Calle Vieja 3,Madrid,28001,+34600000006
EOF

start
t watch >"$tmp/watch.log" 2>&1 &
watch_pid=$!

for kind in warehouses catalog stock orders; do
    out=$(t import "$kind" "$tmp/data/$kind.csv" 2>&1)
    expect_eq "$?" 0 "import $kind ($out)"
done

# The fulfilment pass (every 2 s) allocates what it can and raises the exceptions.
fstate=
for _ in $(seq 100); do
    fstate=$(j orders show O-ES-1 2>/dev/null | jq -r .fstate)
    case "$fstate" in new | ready | null | "") sleep 0.2 ;; *) break ;; esac
done
expect_eq "$fstate" allocated "O-ES-1 allocated by the fulfilment pass"

# --- allocation, shown by orders show
o=$(j orders show O-ES-1)
expect_eq "$(echo "$o" | jq -r .warehouse)" ES-MAD "O-ES-1 warehouse"
expect_eq "$(echo "$o" | jq -r .allocation.rule)" in-country "O-ES-1 allocation rule"
expect_eq "$(echo "$o" | jq -r '[.allocation.parts[] | "\(.sku):\(.warehouse):\(.qty):\(.state)"] | sort | join(",")')" \
    "MUG-1:ES-MAD:1:reserved,TS-RED-M:ES-MAD:2:reserved" "O-ES-1 allocation parts"
out=$(t orders show O-ES-1)
expect_match "$out" "fulfilment +allocated" "orders show: fulfilment state"
expect_match "$out" "allocation +in-country" "orders show: allocation rule"
expect_match "$out" "TS-RED-M +ES-MAD +2 +reserved" "orders show: parts table"
expect_match "$out" "priority +[0-9]+" "orders show: priority"
expect_eq "$(j orders show O-RISK-1 | jq -r .fstate)" pending "risk-controlled order is pending"
expect_eq "$(j orders show O-OOS-1 | jq -r .fstate)" ready "out-of-stock order stays ready"

# --- exceptions raised by the pass
for kv in out_of_stock=O-OOS-1 bad_address=O-BAD-1 payment_held=O-RISK-1; do
    expect_eq "$(j exceptions --kind "${kv%%=*}" | ids)" "${kv#*=}" "exception ${kv%%=*}"
done
expect_eq "$(j exceptions --order O-OOS-1 | jq -r '[.items[].kind] | join(",")')" out_of_stock \
    "exceptions --order"
out=$(t exceptions)
expect_match "$out" "out_of_stock +open +O-OOS-1 .* in 2[34]h " "exceptions table: relative deadline"
expect_match "$out" "^[0-9]+ open, [0-9]+ acknowledged, [0-9]+ overdue" "exceptions counts line"
expect_eq "$(j exceptions --state open | jq '.counts.open == (.items | length)')" true \
    "counts.open matches the open list"

# --- orders: fstate filter, --due by urgency
expect_eq "$(j orders --fstate pending | ids)" O-RISK-1 "orders --fstate pending"
due=$(j orders --due)
expect_eq "$(echo "$due" | ids)" "O-BAD-1,O-ES-1,O-FR-1,O-OOS-1,O-RISK-1" "orders --due: the open orders"
expect_eq "$(echo "$due" | jq '[.items[] | [-.priority, (.ship_by // 1e18), .order_id]] | . == sort')" true \
    "orders --due: priority, then ship-by, then id"
expect_eq "$(echo "$due" | jq -r '.items[0].order_id')" O-FR-1 "orders --due: the soonest ship-by first"
out=$(t orders --due)
expect_match "$out" "ORDER_ID +STATUS +FSTATE +PRIORITY +SHIP_BY" "orders table columns"

# --- orders allocate
expect_eq "$(rc orders allocate O-RISK-1)" 5 "allocate an unpaid order: refused"
expect_eq "$(rc orders allocate NO-SUCH)" 4 "allocate an unknown order"

# --- a filter value outside its list is refused (exit 5) naming the valid ones, never "no match"
out=$(t exceptions --kind out-of-stock 2>&1); r=$?
expect_eq "$r" 5 "exceptions --kind out-of-stock is refused"
expect_match "$out" "out_of_stock.*cancelled_after_pick" "the refusal lists the kinds"
expect_eq "$(rc orders --fstate bogus)" 5 "orders --fstate bogus is refused"
expect_eq "$(rc orders --status wait_seller_send_goods)" 5 "a lower-case --status is refused"
expect_eq "$(rc orders --status WAIT_SELLER_SEND_GOODS)" 0 "the status as the marketplace spells it"
expect_eq "$(rc outbox --state Pending)" 5 "outbox --state Pending is refused"
j receive RARE-1 1 --warehouse US-LAX --id fcli-rare-1 >/dev/null
a=$(j orders allocate O-OOS-1)
expect_eq "$(echo "$a" | jq -r .fstate)" allocated "allocate after receiving the missing stock"
expect_eq "$(echo "$a" | jq -r '.allocation.parts[0].warehouse')" US-LAX "allocated where the stock is"
st=
for _ in $(seq 30); do
    st=$(j exceptions --order O-OOS-1 --state all |
        jq -r '.items[] | select(.kind == "out_of_stock") | "\(.state) \(.resolved_by)"')
    [ "$st" == "resolved tallyd" ] && break
    sleep 0.2
done
expect_eq "$st" "resolved tallyd" "out_of_stock resolved by tallyd once allocated"
expect_eq "$(j orders allocate O-FR-1 --release | jq -r '.fstate + " " + ([.allocation.parts[].warehouse] | unique | join(","))')" \
    "allocated FR-PAR" "allocate --release allocates again"

# --- ship: everything allocated at the warehouse
m0=$(stk TS-RED-M ES-MAD on_hand) r0=$(stk TS-RED-M ES-MAD reserved) g0=$(stk MUG-1 ES-MAD on_hand)
s=$(j ship O-ES-1 --warehouse ES-MAD --carrier DHL --tracking TRK-ES-1)
expect_eq "$(echo "$s" | jq -r '"\(.fstate) \(.send_type) \(.duplicate)"')" "shipped all false" "ship O-ES-1"
expect_eq "$(echo "$s" | jq -r '[.lines[] | "\(.sku)=\(.qty)"] | sort | join(",")')" "MUG-1=1,TS-RED-M=2" "shipped lines"
expect_eq "$(stk TS-RED-M ES-MAD on_hand)" $((m0 - 2)) "on hand after ship (TS-RED-M)"
expect_eq "$(stk MUG-1 ES-MAD on_hand)" $((g0 - 1)) "on hand after ship (MUG-1)"
expect_eq "$(stk TS-RED-M ES-MAD reserved)" $((r0 - 2)) "reservation consumed by the ship"
o=$(j orders show O-ES-1)
expect_eq "$(echo "$o" | jq -r '.shipments[0] | "\(.tracking_no) \(.carrier) \(.send_type)"')" "TRK-ES-1 DHL all" \
    "orders show: the shipment"
expect_eq "$(echo "$o" | jq -r '[.allocation.parts[].state] | unique | join(",")')" shipped "parts shipped"
expect_match "$(t orders show O-ES-1)" "TRK-ES-1 +all" "orders show: shipments table"

# --- ship in two parts, with an id
s=$(j ship O-FR-1 --warehouse FR-PAR --carrier "La Poste" --tracking TRK-FR-1 --line TS-RED-L=1 --id SHIP-FR-1)
expect_eq "$(echo "$s" | jq -r '"\(.id) \(.fstate) \(.send_type)"')" "SHIP-FR-1 partial part" "part shipment"
expect_eq "$(j ship O-FR-1 --warehouse FR-PAR --carrier "La Poste" --tracking TRK-FR-1 --line TS-RED-L=1 --id SHIP-FR-1 |
    jq -r .duplicate)" true "the same shipment id again is a duplicate"
s=$(j ship O-FR-1 --warehouse FR-PAR --carrier "La Poste" --tracking TRK-FR-2)
expect_eq "$(echo "$s" | jq -r '"\(.fstate) \(.send_type) " + ([.lines[] | "\(.sku)=\(.qty)"] | join(","))')" \
    "shipped all TS-RED-M=1" "the rest ships as the final part"
expect_eq "$(rc ship O-FR-1 --warehouse FR-PAR --carrier X --tracking T --line TS-RED-L)" 2 "--line without =QTY"
expect_eq "$(rc ship O-FR-1 --warehouse FR-PAR --carrier X)" 2 "ship without --tracking"
expect_eq "$(rc ship NO-SUCH --warehouse FR-PAR --carrier X --tracking T)" 4 "ship an unknown order"
expect_eq "$(j orders --due | ids)" "O-BAD-1,O-OOS-1,O-RISK-1" "shipped orders leave the due list"

# --- exceptions ack / resolve
x=$(j exceptions --kind bad_address | jq -r '.items[0].id')
expect_eq "$(rc exceptions resolve "$x")" 2 "resolve without --note is a usage error"
expect_eq "$(rc exceptions resolve abc --note x)" 2 "resolve: ID must be a number"
expect_eq "$(rc exceptions resolve 999999 --note x)" 4 "resolve an unknown exception"
expect_eq "$(j exceptions ack "$x" --note "calling the buyer" | jq -r .state)" acknowledged "ack"
expect_eq "$(j exceptions --state acknowledged | jq -r '[.items[].id] | join(",")')" "$x" "listed as acknowledged"
r=$(j exceptions resolve "$x" --note "postcode corrected with the buyer")
expect_eq "$(echo "$r" | jq -r '"\(.state) \(.resolved_by) \(.note)"')" \
    "resolved $me postcode corrected with the buyer" "resolve with a note"
expect_eq "$(rc exceptions resolve "$x" --note again)" 5 "resolving twice is a conflict"
expect_eq "$(j exceptions --kind bad_address | jq '.items | length')" 0 "resolved leaves the active list"
expect_match "$(t exceptions --state resolved)" "bad_address +resolved +O-BAD-1" "listed as resolved"

# --- stock rules
expect_eq "$(rc stock set MUG-1 --warehouse ES-MAD)" 2 "stock set without a rule"
expect_eq "$(j stock set MUG-1 --warehouse ES-MAD --safety 2 | jq -r .safety)" 2 "stock set --safety"
expect_eq "$(stk MUG-1 ES-MAD safety)" 2 "safety in tally stock"
expect_eq "$(stk MUG-1 ES-MAD available)" $(($(stk MUG-1 ES-MAD on_hand) - $(stk MUG-1 ES-MAD reserved) - 2)) \
    "available excludes safety"
expect_match "$(t stock MUG-1)" "available excludes safety stock: ES-MAD 2" "tally stock shows the safety"
expect_eq "$(j stock set MUG-1 --warehouse ES-MAD --threshold 4 | jq -r '"\(.threshold) \(.low)"')" "4 true" \
    "stock set --threshold"
expect_eq "$(j stock list --warehouse ES-MAD --low | jq -r '[.items[].sku] | join(",")')" MUG-1 "stock list --low"
expect_eq "$(j stock list --warehouse ES-MAD | jq -r '.items[] | select(.sku == "TS-RED-M") | .sold')" 2 \
    "stock list: units sold"
expect_match "$(t stock list)" "THRESHOLD +LOW +SOLD +SUGGEST" "stock list columns"

# --- returns: held out of sale until inspected
oh=$(stk TS-RED-M ES-MAD on_hand) res=$(stk TS-RED-M ES-MAD reserved) av=$(stk TS-RED-M ES-MAD available)
r=$(j returns receive TS-RED-M 2 --warehouse ES-MAD --order O-ES-1 --reason "wrong size" --id RET-1)
expect_eq "$(echo "$r" | jq -r '"\(.duplicate) " + ((.return // .) | "\(.id) \(.state) \(.qty)")')" \
    "false RET-1 received 2" "returns receive"
expect_eq "$(stk TS-RED-M ES-MAD on_hand) $(stk TS-RED-M ES-MAD reserved) $(stk TS-RED-M ES-MAD available)" \
    "$((oh + 2)) $((res + 2)) $av" "a received return is on hand but not available"
expect_eq "$(j returns receive TS-RED-M 2 --warehouse ES-MAD --order O-ES-1 --reason "wrong size" --id RET-1 |
    jq -r .duplicate)" true "the same return id again is a duplicate"
expect_eq "$(stk TS-RED-M ES-MAD on_hand)" $((oh + 2)) "duplicate return applied nothing"
expect_eq "$(j returns --state received | jq -r '[.items[].id] | join(",")')" RET-1 "returns --state received"
expect_eq "$(rc returns inspect RET-1 --sellable 1 --damaged 0)" 5 "inspect: counts must add up"
expect_eq "$(rc returns inspect RET-1 --sellable 1)" 2 "inspect without --damaged"
r=$(j returns inspect RET-1 --sellable 1 --damaged 1 --note "seam torn")
expect_eq "$(echo "$r" | jq -r '(.return // .) | "\(.state) \(.sellable) \(.damaged)"')" "inspected 1 1" "returns inspect"
expect_eq "$(stk TS-RED-M ES-MAD on_hand) $(stk TS-RED-M ES-MAD reserved) $(stk TS-RED-M ES-MAD available)" \
    "$((oh + 1)) $res $((av + 1))" "inspected: sellable released, damaged written off"
expect_eq "$(rc returns inspect RET-1 --sellable 2 --damaged 0)" 5 "inspecting twice is a conflict"
expect_eq "$(j returns --state inspected | jq -r '.items[0] | "\(.id) \(.sellable) \(.damaged)"')" "RET-1 1 1" \
    "returns --state inspected"
expect_eq "$(j outbox --limit 1000 | jq -r '[.items[].key | select(startswith("RET-1"))] | sort | join(",")')" \
    "RET-1,RET-1:writeoff" "return and write-off movements in the outbox"

# --- promo check
printf 'sku,min\n# campaign 11.11\n\nTS-RED-M,1\nTS-RED-L\n MUG-1 , 1 \n' >"$tmp/promo-ok.csv"
printf 'TS-RED-M\nRARE-1\nNOPE-1\n' >"$tmp/promo-bad.csv"
p=$(j promo check --skus "$tmp/promo-ok.csv"); prc=$?
expect_eq "$prc" 0 "promo check: all ok exits 0"
expect_eq "$(echo "$p" | jq -r '"\(.ok) \(.short) \(.unknown) \(.items | length)"')" "3 0 0 3" "promo check counts"
expect_eq "$(echo "$p" | jq -r '.items[1] | "\(.sku) \(.checked)"')" "TS-RED-L TS-RED-M" \
    "per sku: the product's cheapest SKU is checked"
out=$(t promo check --skus "$tmp/promo-ok.csv")
expect_match "$out" "3 ok, 0 short, 0 unknown" "promo check summary"
expect_match "$out" "SKU +PRODUCT +CHECKED +AVAILABLE +MIN +OK +REASON" "promo check columns"
out=$(t promo check --skus "$tmp/promo-bad.csv" 2>&1); prc=$?
expect_eq "$prc" 5 "promo check: short or unknown exits 5"
expect_match "$out" "1 ok, 1 short, 1 unknown" "promo check: short and unknown"
expect_eq "$(j promo check --skus "$tmp/promo-bad.csv" | jq -r '.items[2].reason')" "unknown SKU" "unknown SKU reason"
expect_eq "$(rc promo check --skus "$tmp/promo-ok.csv" --min 1000)" 5 "promo check --min 1000"
expect_eq "$(j promo check --skus "$tmp/promo-ok.csv" --per product | jq -r '.items[0].checked')" total \
    "per product: the total is checked"
p=$(yes MUG-1 | head -n 1001 | j promo check --skus -)
expect_eq "$(echo "$p" | jq -r '"\(.items | length) \(.ok)"')" "1001 1001" "promo check: 1001 SKUs in two calls"
printf 'TS-RED-M,abc\n' >"$tmp/promo-err.csv"
expect_eq "$(rc promo check --skus "$tmp/promo-err.csv")" 2 "promo check: bad MIN in the file"
expect_eq "$(rc promo check)" 2 "promo check without --skus"

# --- report of the day, as CSV
t report --day "$day" --csv >"$tmp/report.csv"
expect_eq "$?" 0 "report --csv"
section() { awk -v s="# $1" '$0 == s { f = 1; next } f && /^$/ { exit } f' "$tmp/report.csv"; }
expect_eq "$(grep '^#' "$tmp/report.csv" | tr '\n' ' ')" "# sales # orders # skus # exceptions " "report sections"
expect_eq "$(section sales | head -n 1)" "currency,orders,units,gmv,aov" "sales header"
expect_eq "$(section sales | tail -n +2 | sort | tr '\n' ' ')" "EUR,4,7,88.93,22.23 USD,1,1,50.00,50.00 " \
    "sales of the day per currency"
expect_eq "$(section orders | tr '\n' ' ')" "created,cancelled,shipped,on_time,on_time_pct 5,0,3,3,100.0 " \
    "orders of the day"
expect_eq "$(section skus | tr '\n' ' ')" "sku,warehouse,sold,on_hand,sell_through_pct,turnover \
TS-RED-M,ES-MAD,2,9,18.2,0.20 MUG-1,ES-MAD,1,5,16.7,0.18 TS-RED-L,FR-PAR,1,1,50.0,0.67 \
TS-RED-M,FR-PAR,1,4,20.0,0.22 " "SKUs of the day"
ex=$(section exceptions)
expect_eq "$(echo "$ex" | head -n 1)" "kind,opened,closed" "exceptions header"
for row in bad_address,1,1 out_of_stock,1,1 payment_held,1,0; do
    expect_match "$ex" "^$row\$" "report exceptions $row"
done
expect_eq "$(t report --from "$day" --to "$day" --csv)" "$(cat "$tmp/report.csv")" "--from D --to D is --day D"
out=$(t report --day "$day")
expect_match "$out" "88.93 EUR" "report table: GMV"
expect_match "$out" "100.0%" "report table: on-time rate"
expect_eq "$(j report --day "$day" | jq -r '.orders.created')" 5 "report --json"
expect_eq "$(rc report --day 2024-02-30)" 2 "report: a day that does not exist"
expect_eq "$(rc report --day "$day" --from "$day")" 2 "report: --day with --from"
expect_eq "$(rc report --json --csv)" 2 "report: --json with --csv"

# --- privacy purge (only finished or cancelled orders)
expect_eq "$(j orders show O-OLD-1 | jq -r .fstate)" finished "an imported FINISH order is finished"
expect_eq "$(j purge --older-than 0 --dry-run | jq -r .orders)" 1 "purge --dry-run counts"
expect_eq "$(j orders show O-OLD-1 | jq -r .ship_to.name)" "Old Buyer" "dry run erased nothing"
expect_eq "$(j purge --older-than 0 | jq -r .orders)" 1 "purge --older-than 0"
o=$(j orders show O-OLD-1)
expect_eq "$(echo "$o" | jq -r '"\(.ship_to.name) \(.ship_to.phone) \((.purged_at // .ship_to.purged_at) != null)"')" \
    "null null true" "purged ship-to"
expect_match "$(t orders show O-OLD-1)" "ship to +purged 20" "orders show: purged"
expect_eq "$(j orders show O-ES-1 | jq -r .ship_to.name)" "Ana Garcia" "a shipped order keeps its address"
expect_eq "$(j purge --older-than 0 | jq -r .orders)" 0 "nothing left to purge"
expect_eq "$(rc purge --older-than soon)" 2 "purge: DAYS must be a number"

# --- watch printed the exception events readably
sleep 0.3
kill "$watch_pid" 2>/dev/null
wait "$watch_pid" 2>/dev/null
watch_pid=
w=$(cat "$tmp/watch.log")
expect_match "$w" "exception [0-9]+ out_of_stock open order O-OOS-1.*\(deadline in 2[34]h\)" "watch: exception raised"
expect_match "$w" "exception [0-9]+ out_of_stock resolved order O-OOS-1" "watch: exception resolved by tallyd"

# --- help
for cmd in "orders allocate" ship exceptions "exceptions ack" "exceptions resolve" "stock set" returns \
    "returns receive" "returns inspect" "promo check" report purge; do
    out=$(t help $cmd)
    expect_match "$out" "Example:" "tally help $cmd"
    expect_match "$(t help)" "  $cmd" "tally help lists $cmd"
done

kill -TERM "$pid"
wait "$pid"
expect_eq "$?" 0 "tallyd exit status after SIGTERM"
pid=
echo "test_fulfil_cli: $checks checks, $fails failed"
[ "$fails" = 0 ]
