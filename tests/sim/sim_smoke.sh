#!/usr/bin/env bash
# Self-test of tally-sim: starts it on a free port and checks, with curl and jq, the signed
# gateway, signature and credential rejections, inventory paging, movement idempotency, the
# lost-answer fault (applied exactly once), a 503 with Retry-After, link down/up, keep-alive,
# fulfilment, stock publishing, outbound orders and a stalled answer.
#
# usage: tests/sim/sim_smoke.sh [path/to/tally-sim]     (default: $TALLY_SIM or /tmp/sim/tally-sim)
# Bounded in time (each request 10 s, the whole run 120 s); stops the simulator it started;
# exit 0 only when every check passed.
set -u

SIM=${1:-${TALLY_SIM:-/tmp/sim/tally-sim}}
for tool in curl jq openssl timeout; do
    command -v "$tool" >/dev/null || { echo "sim_smoke: needs $tool" >&2; exit 2; }
done
[ -x "$SIM" ] || { echo "sim_smoke: no executable at $SIM" >&2; exit 2; }

# Bound the whole run: re-run under timeout(1) (SIM_SMOKE_TIMEOUT seconds, default 120);
# requests themselves are bounded to 10 s.
if [ -z "${SIM_SMOKE_BOUNDED:-}" ]; then
    SIM_SMOKE_BOUNDED=1 exec timeout -k 15 "${SIM_SMOKE_TIMEOUT:-120}" "$0" "$@"
fi

WORK=$(mktemp -d)
SIM_PID=
cleanup() {
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "sim_smoke: timed out or interrupted" >&2; exit 124' TERM INT

pass=0
failed=0
check() { # check NAME COMMAND...: runs the command; its status is the verdict
    local name=$1
    shift
    if "$@"; then
        pass=$((pass + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
    fi
}
eq() { [ "$1" = "$2" ] || { echo "     expected [$2], got [$1]" >&2; return 1; }; }
jqe() { jq -e "$@" >/dev/null; } # a jq filter on stdin that must hold

"$SIM" --port 0 --seed 7 --skus 2000 --orders 30 >"$WORK/out" 2>"$WORK/err" &
SIM_PID=$!
for _ in $(seq 100); do
    grep -q '^tally-sim listening on ' "$WORK/out" && break
    sleep 0.1
done
PORT=$(sed -n 's/^tally-sim listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$WORK/out")
check "starts and prints its port" eq "${PORT:+yes}" yes
[ -n "$PORT" ] || { cat "$WORK/err" >&2; echo "0 passed, 1 failed"; exit 1; }
BASE=http://127.0.0.1:$PORT
CURL=(curl -s --max-time 10)
AUTH="Authorization: Bearer tally-sim-wh-token"

ctl_get() { "${CURL[@]}" "$BASE/control/$1"; }
ctl_post() { "${CURL[@]}" -X POST "$BASE/control/$1" -d "$2"; }
wh_get() { "${CURL[@]}" -H "$AUTH" "${@:3}" "$BASE/wh/$1/v1/$2"; }             # CODE PATH [curl opts]
wh_post() { "${CURL[@]}" -H "$AUTH" -X POST "${@:4}" "$BASE/wh/$1/v1/$2" -d "$3"; } # CODE PATH BODY [opts]

# The platform's signature over name=value lines on stdin (sorted by name, byte order).
sign() {
    local text
    text=$(LC_ALL=C sort -t= -k1,1 | while IFS= read -r l; do printf '%s%s' "${l%%=*}" "${l#*=}"; done)
    case ${SIGN_METHOD:-sha256} in
    sha256) printf '%s' "$text" | openssl dgst -sha256 -hmac "$1" | awk '{print toupper($NF)}' ;;
    md5) printf '%s%s%s' "$1" "$text" "$1" | openssl dgst -md5 | awk '{print toupper($NF)}' ;;
    esac
}

# mp METHOD [name=value ...]: a signed gateway call; extra curl options in MP_CURL_OPTS.
MP_CURL_OPTS=()
mp() {
    local method=$1
    shift
    local -a kv=("app_key=${MP_APP_KEY:-tally-sim-app-key}" "method=$method"
        "timestamp=$(date +%s%3N)" "sign_method=${SIGN_METHOD:-sha256}"
        "${MP_TOKEN_NAME:-session}=${MP_TOKEN:-tally-sim-access-token}" "format=json" "$@")
    local sig
    sig=$(printf '%s\n' "${kv[@]}" | sign "${MP_SECRET:-tally-sim-app-secret}")
    local -a args=()
    for p in "${kv[@]}" "sign=$sig"; do args+=(--data-urlencode "$p"); done
    "${CURL[@]}" "${MP_CURL_OPTS[@]}" "$BASE/sync${MP_QUERY:-}" "${args[@]}"
}

check "health reports the catalog" eq "$(ctl_get health | jq -r .skus)" 2000

# --- marketplace gateway ------------------------------------------------------------------
PLQ='aeop_a_e_product_list_query={"current_page":1,"page_size":5,"product_status_type":"onSelling"}'
r=$(mp aliexpress.solution.product.list.get "$PLQ")
check "signed product.list.get answers a page" eq \
    "$(jq -r '.aliexpress_solution_product_list_get_response.result.aeop_a_e_product_display_d_t_o_list.item_display_dto | length' <<<"$r")" 5
check "product.list.get counts the products" jqe \
    '.aliexpress_solution_product_list_get_response.result.product_count > 100' <<<"$r"
r=$(SIGN_METHOD=md5 mp aliexpress.solution.product.list.get "$PLQ")
check "legacy md5 signature accepted" jqe '.aliexpress_solution_product_list_get_response.result.success' <<<"$r"
r=$(MP_SECRET=wrong-secret mp aliexpress.solution.product.list.get)
check "bad signature rejected (IncompleteSignature)" eq "$(jq -r .error_response.code <<<"$r")" IncompleteSignature
r=$(MP_APP_KEY=nobody mp aliexpress.solution.product.list.get)
check "unknown app_key rejected (InvalidAppKey)" eq "$(jq -r .error_response.code <<<"$r")" InvalidAppKey
r=$(MP_TOKEN=expired mp aliexpress.solution.product.list.get)
check "bad access_token rejected (IllegalAccessToken)" eq "$(jq -r .error_response.code <<<"$r")" IllegalAccessToken

r=$(mp aliexpress.solution.product.list.get 'aeop_a_e_product_list_query={"current_page":1,"page_size":5}')
check "product.list.get without product_status_type is refused (required)" eq \
    "$(jq -r .error_response.code <<<"$r")" MissingParameter
r=$(mp aliexpress.solution.product.list.get 'aeop_a_e_product_list_query={"current_page":1,"page_size":100,"product_status_type":"onSelling"}')
check "product.list.get page_size 100 is refused (must be less than 100)" eq \
    "$(jq -r .error_response.code <<<"$r")" InvalidParameter
r=$(MP_QUERY='?method=aliexpress.solution.product.list.get' mp aliexpress.solution.product.list.get "$PLQ")
check "method in the query string and the body (as the Java SDK sends it)" jqe \
    '.aliexpress_solution_product_list_get_response.result.success' <<<"$r"
r=$(MP_TOKEN_NAME=access_token mp aliexpress.solution.product.list.get "$PLQ")
check "the token under access_token alone is not the session" eq "$(jq -r .error_response.code <<<"$r")" MissingAccessToken
check "answers carry a Date header" grep -qi '^Date: .* GMT' <("${CURL[@]}" -D - -o /dev/null "$BASE/control/clock")

pid=$(mp aliexpress.solution.product.list.get "$PLQ" | jq -r '.aliexpress_solution_product_list_get_response.result.aeop_a_e_product_display_d_t_o_list.item_display_dto[0].product_id')
r=$(mp aliexpress.solution.product.info.get "product_id=$pid")
sku=$(jq -r '.aliexpress_solution_product_info_get_response.result.aeop_ae_product_s_k_us.global_aeop_ae_product_sku[0].sku_code' <<<"$r")
check "product.info.get lists SKUs with sku_code" eq "$(ctl_get "stock?sku=$sku" | jq -r .sku)" "$sku"

r=$(mp aliexpress.solution.batch.product.inventory.update \
    "mutiple_product_update_list=[{\"product_id\":$pid,\"multiple_sku_update_list\":[{\"sku_code\":\"$sku\",\"inventory\":5}]}]")
check "inventory.update succeeds" eq "$(jq -r .aliexpress_solution_batch_product_inventory_update_response.update_success <<<"$r")" true
check "published value recorded with its history" eq \
    "$(ctl_get "published?sku=$sku" | jq -c '[.value, .publishes, .history[0].value]')" "[5,1,5]"

oid=$(ctl_post orders '{"count":1}' | jq -r '.created[0]')
r=$(mp aliexpress.solution.order.get 'param0={"current_page":1,"page_size":50,"order_status":"WAIT_SELLER_SEND_GOODS"}')
check "order.get lists a new paid order" jqe --arg id "$oid" \
    '[.aliexpress_solution_order_get_response.result.target_list.order_dto[].order_id | tostring] | index($id) != null' <<<"$r"
r=$(mp aliexpress.logistics.redefining.listlogisticsservice)
check "listlogisticsservice lists CPAM with its tracking_no_regex" eq \
    "$(jq -r '.aliexpress_logistics_redefining_listlogisticsservice_response.result_list.aeop_logistics_service_result[] | select(.service_name == "CPAM") | .tracking_no_regex' <<<"$r")" \
    '^[A-Z]{2}[0-9]{9}[A-Z]{2}$'
fulx() { mp aliexpress.solution.order.fulfill "out_ref=$oid" send_type=all "logistics_no=$1" "service_name=$2"; }
check "order.fulfill refuses a carrier name that is no service key (result_success false, no code)" eq \
    "$(fulx LX123456789ES Correos | jq -c '.aliexpress_solution_order_fulfill_response.result | [.result_success, has("error_code")]')" \
    "[false,false]"
check "order.fulfill refuses a number not matching the service's regex" eq \
    "$(fulx 12345 CPAM | jq -r .aliexpress_solution_order_fulfill_response.result.result_success)" false
check "order.fulfill of service other wants tracking_website" eq \
    "$(fulx 12345 other | jq -r .aliexpress_solution_order_fulfill_response.result.result_success)" false
ful() { mp aliexpress.solution.order.fulfill "out_ref=$oid" send_type=all logistics_no=LX123456789ES service_name=CPAM; }
check "order.fulfill accepted" eq "$(ful | jq -r .aliexpress_solution_order_fulfill_response.result.result_success)" true
r=$(mp aliexpress.solution.order.info.get "param1={\"order_id\":$oid}")
check "order.info.get has no result_success (not documented)" jqe \
    '.aliexpress_solution_order_info_get_response.result | has("result_success") | not' <<<"$r"
ts=$(jq -r .aliexpress_solution_order_info_get_response.result.time_stamp <<<"$r")
skew=$(($(TZ=Asia/Shanghai date -d "$ts" +%s) - $(date -d "$(ctl_get clock | jq -r .now)" +%s)))
check "order.info.get time_stamp is GMT+8 (within 2 minutes of the simulated clock)" \
    test "${skew#-}" -le 120
check "order.info.get shows the order shipped" eq \
    "$(jq -r '.aliexpress_solution_order_info_get_response.result.data | .order_status + " " + .logistic_info_list.global_aeop_tp_logistic_info_dto[0].logistics_no' <<<"$r")" \
    "WAIT_BUYER_ACCEPT_GOODS LX123456789ES"
check "order.info.get masks the buyer's phone, street, postcode and name" jqe \
    '.aliexpress_solution_order_info_get_response.result.data.receipt_address
     | [.mobile_no, .detail_address, .zip, .contact_person] | all(test("[*][*]"))' <<<"$r"
r=$(mp aliexpress.solution.order.receiptinfo.get "param1={\"order_id\":$oid}")
check "order.receiptinfo.get answers the full ship-to, every documented member" jqe \
    '.aliexpress_solution_order_receiptinfo_get_response.result
     | (keys | length) == 17 and ([.mobile_no, .detail_address, .zip, .contact_person]
       | all(length > 0 and (test("[*]") | not)))' <<<"$r"
r=$(mp aliexpress.solution.order.receiptinfo.get)
check "order.receiptinfo.get without param1 is refused (MissingParameter)" eq \
    "$(jq -r .error_response.code <<<"$r")" MissingParameter
r=$(MP_SECRET=wrong mp aliexpress.solution.order.receiptinfo.get "param1={\"order_id\":$oid}")
check "order.receiptinfo.get badly signed is refused (IncompleteSignature)" eq \
    "$(jq -r .error_response.code <<<"$r")" IncompleteSignature
# No "already shipped" code is documented: the order has moved on, so the same fulfil is refused.
check "same fulfilment again is refused (order no longer waits to be shipped)" eq \
    "$(ful | jq -c '.aliexpress_solution_order_fulfill_response.result | [.result_success, has("error_code")]')" "[false,false]"
check "fulfilment applied once per tracking number" eq \
    "$(ctl_get fulfilments | jq -c --arg id "$oid" '[.max_applied_per_tracking, (.orders[$id] | length)]')" "[1,5]"

# --- warehouses ---------------------------------------------------------------------------
check "warehouse API wants the bearer token" eq \
    "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$BASE/wh/ES-MAD/v1/inventory")" 401

: >"$WORK/skus"
cursor=
pages=0
while :; do
    page=$(wh_get ES-MAD "inventory?since=0&limit=300${cursor:+&cursor=$cursor}")
    jq -r '.items[].sku' <<<"$page" >>"$WORK/skus"
    cursor=$(jq -r '.next_cursor // empty' <<<"$page")
    pages=$((pages + 1))
    [ -z "$cursor" ] || [ $pages -gt 50 ] && break
done
check "inventory paging: 7 pages of <= 300" eq "$pages" 7
check "inventory paging: every row exactly once" eq \
    "$(wc -l <"$WORK/skus") $(sort -u "$WORK/skus" | wc -l)" "2000 2000"
version=$(jq -r .version <<<"$page")
check "inventory since=current version is empty" eq "$(wh_get ES-MAD "inventory?since=$version" | jq '.items | length')" 0

sku2=$(ctl_get "stock?wh=ES-MAD&format=csv" | awk -F, 'NR > 1 && $2 >= 20 { print $1; exit }')
before=$(ctl_get "stock?wh=ES-MAD&sku=$sku2" | jq '.items[0].on_hand')
body="{\"movements\":[{\"id\":\"smoke-mv-1\",\"sku\":\"$sku2\",\"delta\":-3,\"reason\":\"pick\"}]}"
r1=$(wh_post ES-MAD movements "$body")
r2=$(wh_post ES-MAD movements "$body")
check "movement applied, then duplicate with the same version" eq \
    "$(jq -r '.results[0].status' <<<"$r1") $(jq -r '.results[0].status' <<<"$r2") $(jq -r '.results[0].version' <<<"$r1")" \
    "applied duplicate $(jq -r '.results[0].version' <<<"$r2")"
check "movement changed on_hand once" eq "$(ctl_get "stock?wh=ES-MAD&sku=$sku2" | jq '.items[0].on_hand')" $((before - 3))
check "/control/movements counts it once" eq "$(ctl_get movements | jq -c '[.movements["smoke-mv-1"], .max]')" "[1,1]"
r=$(wh_post ES-MAD movements "{\"movements\":[{\"id\":\"smoke-mv-1\",\"sku\":\"$sku2\",\"delta\":5}]}")
check "same id with other content is rejected" eq "$(jq -r '.results[0].error.code' <<<"$r")" id_conflict

ctl_post faults '{"target":"wh:ES-MAD","call":"movements","kind":"lost_answer","count":1}' >/dev/null
body="{\"movements\":[{\"id\":\"smoke-lost-1\",\"sku\":\"$sku2\",\"delta\":2}]}"
code=$(wh_post ES-MAD movements "$body" -o /dev/null -w '%{http_code}')
check "lost_answer: the client gets no answer" eq "$code" 000
check "lost_answer: the movement was applied once" eq "$(ctl_get movements | jq '.movements["smoke-lost-1"]')" 1
check "lost_answer: the retry answers duplicate" eq "$(wh_post ES-MAD movements "$body" | jq -r '.results[0].status')" duplicate

ctl_post faults '{"target":"wh:PL-WAW","call":"movements","kind":"stall","count":1}' >/dev/null
"${CURL[@]}" -m 1 -H "$AUTH" -X POST "$BASE/wh/PL-WAW/v1/movements" \
    -d "{\"movements\":[{\"id\":\"smoke-stall-1\",\"sku\":\"$sku2\",\"delta\":1}]}" >/dev/null
rc=$?
sleep 0.2
check "stall: the client times out" eq "$rc" 28
check "stall: a request given up on is not applied" eq "$(ctl_get movements | jq '.movements["smoke-stall-1"]')" null

ctl_post faults '{"target":"mp","kind":"status","status":503,"retry_after":7,"count":1}' >/dev/null
MP_CURL_OPTS=(-D "$WORK/headers" -o /dev/null)
mp aliexpress.solution.product.list.get
MP_CURL_OPTS=()
check "503 fault answers 503" eq "$(head -1 "$WORK/headers" | tr -d '\r' | cut -d' ' -f2)" 503
check "503 fault carries Retry-After" eq "$(grep -i '^retry-after:' "$WORK/headers" | tr -d '\r' | awk '{print $2}')" 7
check "the next call is served again" jqe '.aliexpress_solution_product_list_get_response.result.success' \
    <<<"$(mp aliexpress.solution.product.list.get "$PLQ")"
ctl_post faults '{"target":"mp","kind":"api_error","code":"ApiCallLimit","type":"ISV","count":1}' >/dev/null
check "api_error fault with type ISV: ApiCallLimit of type ISV" eq \
    "$(mp aliexpress.solution.product.list.get "$PLQ" | jq -r '.error_response | .type + " " + .code')" \
    "ISV ApiCallLimit"
check "stats count the faults applied" jqe '.faults | length >= 3' <<<"$(ctl_get stats)"
"${CURL[@]}" -X DELETE "$BASE/control/faults" >/dev/null

ctl_post link '{"target":"wh:FR-PAR","up":false}' >/dev/null
wh_get FR-PAR "inventory?limit=1" -o /dev/null -w '%{http_code}' >"$WORK/code"
rc=$?
check "link down: connection closed without answer" eq "$(cat "$WORK/code") $([ $rc -ne 0 ] && echo failed)" "000 failed"
check "link down: other warehouses still answer" eq "$(wh_get ES-MAD "inventory?limit=1" | jq '.items | length')" 1
ctl_post link '{"target":"wh:FR-PAR","up":true}' >/dev/null
check "link up: served again" eq "$(wh_get FR-PAR "inventory?limit=1" | jq '.items | length')" 1

reused=$("${CURL[@]}" -v -H "$AUTH" "$BASE/wh/ES-MAD/v1/inventory?limit=1" "$BASE/wh/ES-MAD/v1/inventory?limit=1" 2>&1 >/dev/null |
    grep -c 'Re-using existing connection')
check "HTTP/1.1 keep-alive reuses the connection" eq "$reused" 1

ob="{\"id\":\"$oid\",\"lines\":[{\"sku\":\"$sku2\",\"qty\":1}],\"ship_to\":{\"country\":\"ES\",\"zip\":\"28001\"},\"service\":\"standard\"}"
c1=$(wh_post ES-MAD outbound-orders "$ob" -o /dev/null -w '%{http_code}')
c2=$(wh_post ES-MAD outbound-orders "$ob" -o /dev/null -w '%{http_code}')
c3=$(wh_post ES-MAD outbound-orders "${ob/\"qty\":1/\"qty\":2}" -o /dev/null -w '%{http_code}')
check "outbound order: create 201, same again 200, different 409" eq "$c1 $c2 $c3" "201 200 409"
ctl_post advance '{"seconds":180}' >/dev/null
r=$(wh_get ES-MAD "outbound-orders?since=0")
check "outbound order shipped with a tracking number after 180 s" eq \
    "$(jq -r --arg id "$oid" '.items[] | select(.id == $id) | .status + " " + (.tracking_number | length | tostring)' <<<"$r")" \
    "shipped 13"
check "outbound order created once" eq "$(ctl_get "outbound?wh=ES-MAD" | jq -c '[.items[0].create_count, .items[0].repeat_count]')" "[1,1]"

tr=$(wh_post ES-MAD transfers "{\"id\":\"smoke-tr-1\",\"sku\":\"$sku2\",\"qty\":1,\"to\":\"US-LAX\"}" | jq -r .status)
tr2=$(wh_post ES-MAD transfers "{\"id\":\"smoke-tr-1\",\"sku\":\"$sku2\",\"qty\":1,\"to\":\"US-LAX\"}" | jq -r .status)
check "transfer applied once, then duplicate" eq "$tr $tr2" "applied duplicate"

# A Goodcang warehouse (tests/sim/README.md "Goodcang"), on a second simulator.
"$SIM" --port 0 --seed 7 --skus 50 --orders 0 --warehouses UK-GC:goodcang >"$WORK/gc.out" 2>"$WORK/gc.err" &
GC_PID=$!
trap 'kill "$GC_PID" 2>/dev/null; cleanup' EXIT
for _ in $(seq 100); do
    grep -q '^tally-sim listening on ' "$WORK/gc.out" && break
    sleep 0.1
done
GC_BASE=http://127.0.0.1:$(sed -n 's/^tally-sim listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$WORK/gc.out")/wh/UK-GC/public_open
gc() { "${CURL[@]}" -H 'app-key: tally-sim-3pl-key' -H 'app-token: tally-sim-wh-token' \
    -H 'Content-Type: application/json' -d "$2" "$GC_BASE/$1"; }
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -H 'app-key: tally-sim-3pl-key' -H 'app-token: wrong' \
    -d '{}' "$GC_BASE/inventory/get_product_inventory")
check "goodcang: a wrong app-token is refused (401)" eq "$code" 401
r=$(gc inventory/get_product_inventory '{"warehouse_code":"UK-GC","page":2,"pageSize":20}')
check "goodcang: stock page 2 of 3" eq "$(jq -r '[.ask, (.data | length), .count, .nextPage] | join(" ")' <<<"$r")" \
    "Success 20 50 true"
gsku=$(jq -r '.data[0].product_sku' <<<"$r")
order="{\"reference_no\":\"SMOKE-1\",\"warehouse_code\":\"UK-GC\",\"shipping_method\":\"RM48\",\"country_code\":\"GB\",\"name\":\"A\",\"address1\":\"1 St\",\"city\":\"Leeds\",\"items\":[{\"product_sku\":\"$gsku\",\"quantity\":1}]}"
check "goodcang: create_order, then the same reference_no refused" eq \
    "$(gc order/create_order "$order" | jq -r .ask) $(gc order/create_order "$order" | jq -r .ask)" "Success Failure"
check "goodcang: the order found by its reference, waiting to ship" eq \
    "$(gc order/get_order_by_ref_code '{"reference_no":"SMOKE-1"}' | jq -r '.data.order_status')" W
kill "$GC_PID" 2>/dev/null && wait "$GC_PID" 2>/dev/null
trap cleanup EXIT

echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
