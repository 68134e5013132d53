#!/usr/bin/env bash
# Self-test of tally-sim's 4PX warehouse (README.md "4PX warehouses"), signing with md5sum in
# this script (a third reading of the SDKs' format, apart from the daemon's and the sim's):
# refusals of a bad signature, app key, version, body and fields in 4PX's envelope; stock rows
# per batch adding up to the world's figure; an outbound order created once (a repeated ref_no
# refused), listed with its status, shipped with tracking, not cancellable once shipped; the
# 30-day window; an injected fault in the 4PX envelope.
#
# usage: tests/sim/sim_fourpx.sh path/to/tally-sim
set -u
SIM=$1
for tool in curl jq md5sum timeout; do
    command -v "$tool" >/dev/null || { echo "sim_fourpx: needs $tool" >&2; exit 2; }
done
if [ -z "${SIM_FPX_BOUNDED:-}" ]; then
    SIM_FPX_BOUNDED=1 exec timeout -k 15 60 "$0" "$@"
fi
WORK=$(mktemp -d)
SIM_PID=
trap '[ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
pass=0 failed=0
check() {
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else
        failed=$((failed + 1))
        echo "FAIL $name" >&2
    fi
}

"$SIM" --port 0 --skus 30 --orders 0 --seed 7 --warehouses ES-MAD:tally,US-4PX:fourpx \
    --outbound-step-seconds 0 >"$WORK/out" 2>"$WORK/err" &
SIM_PID=$!
for _ in $(seq 200); do grep -q listening "$WORK/out" && break; sleep 0.05; done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/out")
[ -n "$port" ] || { echo "sim_fourpx: tally-sim did not start" >&2; exit 1; }
base=http://127.0.0.1:$port
KEY=tally-sim-3pl-key SECRET=tally-sim-wh-token

# fpx METHOD BODY [KEY SECRET V SIGNED_BODY]: a signed call; prints the answer.
fpx() {
    local m=$1 body=$2 key=${3:-$KEY} secret=${4:-$SECRET} v=${5:-1.0.0} signed=${6:-$2}
    local ts
    ts=$(date +%s%3N)
    local sign
    sign=$(printf '%s' "app_key${key}formatjsonmethod${m}timestamp${ts}v${v}${signed}${secret}" |
        md5sum | cut -d' ' -f1)
    curl -sS --max-time 10 -X POST -H 'Content-Type: application/json' -d "$body" \
        "$base/wh/US-4PX/router/api/service?method=$m&app_key=$key&v=$v&timestamp=$ts&format=json&sign=$sign"
}
is() { [ "$1" = "$2" ] || { echo "  got '$1', expected '$2'" >&2; return 1; }; }

inv='{"warehouse_code":"US-4PX","page_no":1,"page_size":100}'
a=$(fpx fu.wms.inventory.get "$inv")
check "a signed call succeeds" is "$(jq -r .result <<<"$a")" 1
check "FopPage fields" is "$(jq -r '.data | [has("page_no"), has("page_size"), has("total"), (.data | type)] | join(",")' <<<"$a")" "true,true,true,array"
b=$(fpx fu.wms.inventory.get "$inv" "$KEY" wrong-secret)
check "a bad signature is refused" is "$(jq -r '[.result, .errors[0].error_code, (.msg | test("sign"))] | join(",")' <<<"$b")" "0,SIM-AUTH,true"
b=$(fpx fu.wms.inventory.get "$inv" other-key)
check "another app key is refused" is "$(jq -r '.result + "," + .errors[0].error_code' <<<"$b")" "0,SIM-AUTH"
b=$(fpx fu.wms.inventory.get "$inv" "$KEY" "$SECRET" 2.0)
check "an unknown version is refused" is "$(jq -r .result <<<"$b")" 0
b=$(fpx fu.wms.inventory.get "$inv" "$KEY" "$SECRET" 1.0)
check "v=1.0 is accepted too" is "$(jq -r .result <<<"$b")" 1
b=$(fpx fu.wms.inventory.get '{"warehouse_code":"US-4PX","page_no":2}' "$KEY" "$SECRET" 1.0.0 "$inv")
check "a body other than the signed one is refused" is "$(jq -r .errors[0].error_code <<<"$b")" SIM-AUTH
lst=$(printf '"S%d",' $(seq 101))
b=$(fpx fu.wms.inventory.get "{\"lstsku\":[${lst%,}]}")
check "lstsku of 101 SKUs is refused" is "$(jq -r .result <<<"$b")" 0
b=$(fpx fu.wms.inventory.get '{"warehouse_code":"UK-GC"}')
check "another warehouse_code is refused" is "$(jq -r .errors[0].error_code <<<"$b")" SIM-WAREHOUSE

# stock: rows per batch add up to the world's on-hand
fpx fu.wms.inventory.get "$inv" | jq -r '.data.data[] | "\(.sku_code),\(.available_stock + .pending_stock)"' |
    awk -F, '{s[$1] += $2} END {for (k in s) print k "," s[k]}' | sort >"$WORK/fpx.csv"
curl -sS "$base/control/stock?wh=US-4PX&format=csv" | tail -n +2 | awk -F, '{print $1","$2}' |
    sort >"$WORK/world.csv"
check "stock rows add up to the world's on-hand" cmp -s "$WORK/fpx.csv" "$WORK/world.csv"
check "some SKU is held in two batches" is "$(fpx fu.wms.inventory.get "$inv" |
    jq '[.data.data[] | select(.batch_no == "B2")] | length > 0')" true

sku=$(sort -t, -k2 -n -r "$WORK/world.csv" | head -1 | cut -d, -f1)
ob() {
    printf '{"ref_no":"%s","from_warehouse_code":"US-4PX","consignment_type":"S",' "$1"
    printf '"logistics_service_info":{"logistics_product_code":"F999"},'
    printf '"oconsignment_desc":{"country":"US","street":"1 Main St","first_name":"A B","phone":"%s"},' "$2"
    printf '"oconsignment_sku":[{"sku_code":"%s","qty":1,"stock_quality":"%s"}]}' "$sku" "$3"
}
b=$(fpx fu.wms.outbound.create "$(ob R-1 "" G)")
check "a consignee without a phone is refused" is "$(jq -r .result <<<"$b")" 0
b=$(fpx fu.wms.outbound.create "$(ob R-1 555 B)")
check "damaged stock on a standard outbound is refused" is "$(jq -r .result <<<"$b")" 0
b=$(fpx fu.wms.outbound.create "$(ob R-1 555 G)")
check "an outbound order is created" is "$(jq -r '.result + "," + (.data.consignment_no | startswith("OC") | tostring)' <<<"$b")" "1,true"
b=$(fpx fu.wms.outbound.create "$(ob R-1 555 G)")
check "a repeated ref_no is refused" is "$(jq -r .errors[0].error_code <<<"$b")" SIM-DUPLICATE
check "created once, one repeat counted" is "$(curl -sS "$base/control/outbound?wh=US-4PX" |
    jq -r '.items[] | select(.id == "R-1") | "\(.create_count),\(.repeat_count)"')" "1,1"
b=$(fpx fu.wms.outbound.getlist '{"ref_no":"R-1"}')
check "listed by ref_no as N" is "$(jq -r '.data.data[0] | .ref_no + "," + .status' <<<"$b")" "R-1,N"
curl -sS -X POST -d '{"wh":"US-4PX","id":"R-1","status":"shipped"}' "$base/control/outbound" >/dev/null
b=$(fpx fu.wms.outbound.getlist '{"ref_no":"R-1"}')
check "shipped: C with shipping_no and carrier_code" is "$(jq -r '.data.data[0] | [.status, (.shipping_no | length > 0), (.carrier_code | length > 0), (.complete_time > 0)] | join(",")' <<<"$b")" "C,true,true,true"
b=$(fpx fu.wms.outbound.cancel '{"ref_no":"R-1","cancel_type":"OT"}')
check "a shipped order cannot be cancelled" is "$(jq -r .errors[0].error_code <<<"$b")" SIM-STATUS
b=$(fpx fu.wms.outbound.getlist '{"create_time_start":1,"create_time_end":2600000001}')
check "a window of more than 30 days is refused" is "$(jq -r .result <<<"$b")" 0

# an injected status fault answers in 4PX's envelope
curl -sS -X POST -d '{"target":"wh:US-4PX","call":"fu.wms.inventory.get","kind":"status","status":503,"count":1}' \
    "$base/control/faults" >/dev/null
code=$(curl -sS -o "$WORK/f.json" -w '%{http_code}' -X POST -d '{}' \
    "$base/wh/US-4PX/router/api/service?method=fu.wms.inventory.get&app_key=x&v=1.0.0&timestamp=1&format=json&sign=x")
check "a status fault: HTTP 503 with the 4PX envelope" is "$code,$(jq -r .result "$WORK/f.json")" "503,0"

echo "sim_fourpx: $pass passed, $failed failed"
[ "$failed" = 0 ]
