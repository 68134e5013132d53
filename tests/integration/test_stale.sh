#!/usr/bin/env bash
# The stale-data policy against tally-sim: with [stock] stale_policy = zero, a warehouse that
# has not been heard from for stale_after seconds stops counting towards marketplace stock
# (the published value drops to the other warehouses' share), and counts again once its
# inventory is pulled again.
#   test_stale.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-stale.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap sync_cleanup EXIT
start_sim --skus 300 --orders 1 --seed 5 --warehouses ES-MAD,FR-PAR --outbound-step-seconds 0
write_config ES-MAD FR-PAR
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
carriers_conf >>"$tmp/tallyd.conf"
printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\napp_secret_file = %s\naccess_token_file = %s\ncatalog_interval = 3\norders_interval = 2\n[stock]\nstale_after = 4\nstale_policy = zero\n' \
    "$base" "$tmp/app.secret" "$tmp/access.token" >>"$tmp/tallyd.conf"
start_tallyd
round_mark=0
all_done() {
    st | jq -e --argjson since "$round_mark" '[.upstreams[].streams[]
        | select(.name | test("inventory|catalog"))
        | (.last_success_at // 0) > $since and (.in_round | not)] | all' >/dev/null
}
wait_until 60 all_done
db() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }
# A listed SKU with stock in both warehouses, nothing reserved.
sku=$(db "SELECT s.code FROM skus s JOIN products p ON p.id = s.product
    JOIN stock a ON a.sku = s.id JOIN warehouses wa ON wa.id = a.warehouse AND wa.code = 'ES-MAD'
    JOIN stock b ON b.sku = s.id JOIN warehouses wb ON wb.id = b.warehouse AND wb.code = 'FR-PAR'
    WHERE p.product_id <> '~unlisted' AND a.snapshot > 0 AND b.snapshot > 0
      AND a.reserved = 0 AND b.reserved = 0 ORDER BY s.code LIMIT 1")
[ -n "$sku" ] || { bad "no SKU stocked in both warehouses"; echo "test_stale: $checks checks, $fails failed"; exit 1; }
es=$(db "SELECT t.snapshot FROM stock t JOIN skus s ON s.id = t.sku JOIN warehouses w
    ON w.id = t.warehouse WHERE s.code = '$sku' AND w.code = 'ES-MAD'")
fr=$(db "SELECT t.snapshot FROM stock t JOIN skus s ON s.id = t.sku JOIN warehouses w
    ON w.id = t.warehouse WHERE s.code = '$sku' AND w.code = 'FR-PAR'")
published() { ctl "$base/control/published?sku=$sku" | jq -r '.value // empty'; }
published_is() { [ "$(published)" = "$1" ]; }
wait_until 30 published_is $((es + fr))
check_eq "$(published)" $((es + fr)) "$sku published with both warehouses fresh"
check_eq "$(db "SELECT stale FROM warehouses WHERE code = 'FR-PAR'")" 0 "FR-PAR fresh"

# FR-PAR goes quiet: after stale_after (4 s) it is stale and counts as empty.
ctl -X POST -d '{"target":"wh:FR-PAR","up":false}' "$base/control/link" >/dev/null
fr_stale() { [ "$(db "SELECT stale FROM warehouses WHERE code = 'FR-PAR'")" = 1 ]; }
wait_until 20 fr_stale
check_eq "$(db "SELECT stale FROM warehouses WHERE code = 'ES-MAD'")" 0 "ES-MAD still fresh"
wait_until 30 published_is "$es"
check_eq "$(published)" "$es" "$sku published without stale FR-PAR"

# Heard from again: fresh, and its stock counts again.
ctl -X POST -d '{"target":"wh:FR-PAR","up":true}' "$base/control/link" >/dev/null
fr_fresh() { [ "$(db "SELECT stale FROM warehouses WHERE code = 'FR-PAR'")" = 0 ]; }
wait_until 30 fr_fresh
wait_until 30 published_is $((es + fr))
check_eq "$(published)" $((es + fr)) "$sku published with FR-PAR fresh again"
echo "stale-data policy: $sku published $((es + fr)), then $es while FR-PAR was stale, then $((es + fr))"
echo "test_stale: $checks checks, $fails failed"
[ "$fails" = 0 ]
