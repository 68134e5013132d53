#!/usr/bin/env bash
# Shipments go to the marketplace under the platform's logistics service keys (issue 9 A.4;
# UPSTREAM.md §1: service_name must be one of listlogisticsservice's keys, each with a
# tracking_no_regex):
#   A. a carrier no mapping knows (FR-PAR ships with La Poste; only Correos is mapped): the
#      upload is held with an exception before anything is sent, no fulfil reaches the
#      marketplace (its /control/stats count none);
#   B. a mapped carrier and a number matching the service's rule (ES-MAD, Correos -> CPAM):
#      uploaded once, under CPAM;
#   C. a mapped carrier with a number the rule refuses: held with an exception, not sent;
#   D. the mapping fixed (La Poste = CPAM), tallyd restarted, `tally outbox retry`: A's upload
#      goes, once;
#   E. a fulfil applied, its answer lost, the read-back failing; the mapping then changed (no
#      Correos) and tallyd restarted: the row is read back first (the marketplace has the
#      shipment: done), never held as "not uploaded" for a parcel the marketplace has;
#   and `tally carriers` shows the mapping and the services pulled.
#   test_logistics.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-logistics.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap 'sync_cleanup; echo "test_logistics: $((checks - fails)) passed, $fails failed"' EXIT

WHS=(ES-MAD FR-PAR)
sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }
post() { ctl -X POST -H 'Content-Type: application/json' -d "$2" "$base/control/$1"; }
fstate() { sql "SELECT fstate FROM orders WHERE order_id = '$1'"; }
fstate_is() { [ "$(fstate "$1")" = "$2" ]; }
fulfils_of() { ctl "$base/control/fulfilments" | jq --arg id "$1" '.orders[$id] // [] | length'; }
fulfil_calls() {
    ctl "$base/control/stats" | jq '.requests["mp:aliexpress.solution.order.fulfill"] // 0'
}
upload_state() { sql "SELECT state FROM outbox WHERE kind = 'fulfil' AND entity = '$1'"; }
upload_is() { [ "$(upload_state "$1")" = "$2" ]; }
open_exc() {
    sql "SELECT COUNT(*) FROM exceptions e JOIN orders o ON o.id = e.order_ref
         WHERE o.order_id = '$1' AND e.state <> 'resolved' AND e.kind = 'upstream_rejected'
         AND e.message LIKE '%$2%'"
}

start_sim --skus 40 --orders 0 --seed 47 --warehouses "$(IFS=,; echo "${WHS[*]}")" \
    --outbound-step-seconds 0
echo tally-sim-wh-token >"$tmp/wh.token"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
# conf EXTRA [CORREOS]: the config, with EXTRA lines in [carriers] (CORREOS: Correos's line,
# default Correos = CPAM).
conf() {
    {
        printf '[station]\nname = LOGISTICS\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
        printf '[carriers]\n%s\n%s' "${2-Correos = CPAM}" "$1"
        for w in "${WHS[@]}"; do
            printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\ncountry = %s\n' \
                "$w" "$base" "$w" "$tmp/wh.token" "${w%%-*}"
            printf 'inventory_interval = 2\noutbound_interval = 1\n'
        done
        printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
        printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
        printf 'catalog_interval = 2\norders_interval = 1\n'
    } >"$tmp/tallyd.conf"
}
conf ""
start_tallyd
mark_rounds
wait_until 60 inventory_done
services_pulled() { [ "$(sql "SELECT COUNT(*) FROM mp_services")" -gt 0 ]; }
wait_until 60 services_pulled
check_eq "$(sql "SELECT tracking_no_regex FROM mp_services WHERE service_name = 'CPAM'")" \
    '^[A-Z]{2}[0-9]{9}[A-Z]{2}$' "CPAM's rule in the replica"

# only_at WH: sets picked to a SKU with stock at WH alone (the other warehouse's set to 0),
# none picked before (not in a subshell: used must grow).
only_at() {
    local sku other have
    sku=$(sql "SELECT s.code FROM stock t JOIN skus s ON s.id = t.sku JOIN warehouses w
               ON w.id = t.warehouse WHERE w.code = '$1' AND t.snapshot >= 3
               AND s.code NOT IN (${used:-''}) ORDER BY s.code LIMIT 1")
    for other in "${WHS[@]}"; do
        [ "$other" = "$1" ] && continue
        have=$(ctl "$base/control/stock?wh=$other&format=csv" | awk -F, -v s="$sku" '$1 == s {print $2}')
        [ "${have:-0}" -gt 0 ] &&
            post stock "{\"changes\":1,\"wh\":\"$other\",\"sku\":\"$sku\",\"delta\":$((-have))}" >/dev/null
    done
    used="${used:+$used,}'$sku'"
    picked=$sku
}
used= picked=
only_at FR-PAR
skuF=$picked
only_at ES-MAD
skuE=$picked
only_at ES-MAD
skuE2=$picked
only_at ES-MAD
skuE3=$picked
[ -n "$skuF" ] && [ -n "$skuE" ] && [ -n "$skuE2" ] && [ -n "$skuE3" ] || { bad "no SKUs to order"; exit 1; }
mark_rounds
wait_until 60 inventory_done
new_order() { post orders "{\"count\":1,\"sku\":\"$1\",\"qty\":1}" | jq -r '.created[0]'; }
# ship ORDER WH [EXTRA JSON]: ships the order's outbound order at WH.
ship() {
    wait_until 60 fstate_is "$1" sent || return 1
    post outbound "{\"wh\":\"$2\",\"id\":\"$1\",\"status\":\"shipped\"${3:-}}" >/dev/null
}

# ===================================================================================== A
echo "== A: La Poste maps to no service: held before any upload"
A=$(new_order "$skuF")
ship "$A" FR-PAR
wait_until 60 upload_is "$A" held
check_eq "$(open_exc "$A" "not uploaded%La Poste%maps to no logistics service")" 1 \
    "order A's exception names the unmapped carrier"
check_eq "$(fulfil_calls)" 0 "order.fulfill calls received by the marketplace"
check_eq "$(fulfils_of "$A")" 0 "fulfils of order A"

# ===================================================================================== B
echo "== B: Correos -> CPAM, a matching number: uploaded once"
B=$(new_order "$skuE")
ship "$B" ES-MAD
wait_until 60 fstate_is "$B" uploaded
check_eq "$(ctl "$base/control/fulfilments" | jq -r --arg id "$B" '[.orders[$id][]
    | .service_name + ":" + .result] | join(",")')" "CPAM:applied" "order B's fulfils"
check_eq "$(fulfil_calls)" 1 "order.fulfill calls received by the marketplace"

# ===================================================================================== C
echo "== C: a number CPAM's rule refuses: held before any upload"
C=$(new_order "$skuE2")
ship "$C" ES-MAD ',"tracking":"ES-LOCAL-42"'
wait_until 60 upload_is "$C" held
check_eq "$(open_exc "$C" "ES-LOCAL-42 does not match the rule of service CPAM")" 1 \
    "order C's exception names the number and the service"
check_eq "$(fulfil_calls)" 1 "order.fulfill calls received by the marketplace"
check_eq "$(fulfils_of "$C")" 0 "fulfils of order C"

# `tally carriers`: the mapping and the services.
out=$(t --json carriers)
check_eq "$(jq -r '.mappings[] | select(.carrier == "Correos") | .service + " " + .warehouse + " " + (.known | tostring)' <<<"$out")" \
    "CPAM * true" "tally carriers: Correos's mapping"
check_eq "$(jq -r '[.services[].service_name] | index("CPAM") != null' <<<"$out")" true \
    "tally carriers lists CPAM"
check_eq "$(jq -r '.services[] | select(.service_name == "other") | .tracking_no_regex // ""' <<<"$out")" "" \
    "tally carriers: other has no rule"
check_eq "$(t carriers | awk '$1 == "Correos" {print $2, $3, $4}')" "* CPAM yes" \
    "tally carriers (table): Correos's mapping"

# ===================================================================================== D
echo "== D: La Poste mapped, tallyd restarted, the held upload retried: sent once"
kill -TERM "$tallyd_pid" && wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
conf 'La Poste = CPAM
'
start_tallyd
id=$(sql "SELECT id FROM outbox WHERE kind = 'fulfil' AND entity = '$A'")
t outbox retry "$id" >/dev/null || bad "tally outbox retry $id"
wait_until 60 fstate_is "$A" uploaded
check_eq "$(fulfils_of "$A")" 1 "fulfils of order A after the retry"
check_eq "$(open_exc "$A" "")" 0 "order A's open exceptions after the upload"
check_eq "$(upload_state "$C")" held "order C's upload (its number is still refused)"
check_eq "$(fulfil_calls)" 2 "order.fulfill calls received by the marketplace"

# ===================================================================================== E
echo "== E: applied, answer lost, mapping changed, restart: read back, not held"
post faults '{"target":"mp","call":"aliexpress.solution.order.fulfill","kind":"lost_answer","count":1}' \
    >/dev/null
E=$(new_order "$skuE3")
wait_until 60 fstate_is "$E" sent
# the read-back fails until the restart: the row stays attempted and pending
post faults '{"target":"mp","call":"aliexpress.solution.order.info.get","kind":"status","status":503}' \
    >/dev/null
ship "$E" ES-MAD
applied_once() { [ "$(fulfils_of "$1")" = 1 ]; }
wait_until 60 applied_once "$E"
tried() {
    [ "$(sql "SELECT COALESCE(MAX(attempts), 0) FROM outbox
              WHERE kind = 'fulfil' AND entity = '$1' AND state <> 'done'")" -ge 1 ]
}
wait_until 60 tried "$E"
kill -TERM "$tallyd_pid" && wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
ctl -X DELETE "$base/control/faults" >/dev/null
conf 'La Poste = CPAM
' ''
start_tallyd
wait_until 60 upload_is "$E" done
check_eq "$(upload_state "$E")" done "order E's upload row (the marketplace has it)"
check_eq "$(open_exc "$E" "not uploaded")" 0 "order E's 'not uploaded' exceptions"
check_eq "$(fulfils_of "$E")" 1 "fulfils of order E"
check_eq "$(fulfil_calls)" 3 "order.fulfill calls received by the marketplace"
[ "$fails" = 0 ]
