#!/usr/bin/env bash
# The marketplace against tally-sim: catalog and orders pulled (orders arriving during the
# sync included), and marketplace stock published so that no published value ever exceeds what
# was truly available: the seeded stock less every pick acknowledged before it (one second of
# grace for a value that was in flight when a pick came), through a marketplace link cut; and
# a purged order pulled again by an order round gets none of its buyer's data back.
#   test_marketplace.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-mp.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap sync_cleanup EXIT
WHS=(ES-MAD FR-PAR PL-WAW US-LAX)
start_sim --skus 3000 --orders 150 --seed 8 --warehouses "$(IFS=,; echo "${WHS[*]}")" \
    --outbound-step-seconds 0
write_config "${WHS[@]}"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
carriers_conf >>"$tmp/tallyd.conf"
printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\napp_secret_file = %s\naccess_token_file = %s\ncatalog_interval = 3\norders_interval = 2\n' \
    "$base" "$tmp/app.secret" "$tmp/access.token" >>"$tmp/tallyd.conf"

round_mark=0
start_tallyd
# Orders arrive while the first rounds run.
ctl -X POST -d '{"count": 40}' "$base/control/orders" >/dev/null
all_done() {
    st | jq -e --argjson since "$round_mark" '[.upstreams[].streams[]
        | select(.name | test("inventory|catalog|orders"))
        | (.last_success_at // 0) > $since and (.in_round | not)] | all' >/dev/null
}
wait_until 120 all_done
ctl -X POST -d '{"count": 25}' "$base/control/orders" >/dev/null
mark_rounds
wait_until 180 all_done

# Catalog: every SKU of the simulator, listed under its product (none left as a placeholder).
check_eq "$(st | jq .replica.skus)" 3000 "SKUs in the replica"
check_eq "$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT COUNT(*) FROM skus s JOIN products p
    ON p.id = s.product WHERE p.product_id = '~unlisted'")" 0 "SKUs still unlisted"
# Orders: the simulator's non-finished orders, all of them, with their lines.
ctl "$base/control/orders" >"$tmp/orders.json"
jq -r '.items[] | select(.status != "FINISH") | "\(.order_id) \(.status) \([.lines[].qty] | add)"' \
    "$tmp/orders.json" | sort >"$tmp/sim-orders"
sqlite3 -readonly "$tmp/state/replica.db" "SELECT o.order_id, o.status, SUM(l.qty) FROM orders o
    JOIN order_lines l ON l.order_ref = o.id WHERE o.status <> 'FINISH' GROUP BY o.id" |
    tr '|' ' ' | sort >"$tmp/rep-orders"
d=$(diff "$tmp/sim-orders" "$tmp/rep-orders" | grep -c '^[<>]')
check_eq "$d" 0 "orders differing from the simulator ($(wc -l <"$tmp/sim-orders") orders)"

# Publishing under picks, every fault kind on the marketplace, and a marketplace link cut.
for spec in '{"target":"mp","kind":"lost_answer","count":1}' \
    '{"target":"mp","kind":"stall","stall_ms":5000,"count":1}' \
    '{"target":"mp","kind":"malformed","count":1}' \
    '{"target":"mp","kind":"reset","count":1}' \
    '{"target":"mp","kind":"api_error","code":"ApiCallLimit","count":1}' \
    '{"target":"mp","kind":"status","status":503,"retry_after":1,"count":1}' \
    '{"target":"mp","kind":"malformed","rate":0.1}' \
    '{"target":"mp","kind":"truncate","rate":0.1}' \
    '{"target":"mp","kind":"reset","rate":0.1}' \
    '{"target":"mp","kind":"api_error","code":"ApiCallLimit","rate":0.1}' \
    '{"target":"mp","kind":"status","status":503,"retry_after":1,"rate":0.1}' \
    '{"target":"mp","kind":"status","status":429,"retry_after":1,"rate":0.1}'; do
    ctl -X POST -H 'Content-Type: application/json' -d "$spec" "$base/control/faults" >/dev/null ||
        bad "could not set fault $spec"
done
skus=($(sqlite3 -readonly "$tmp/state/replica.db" "SELECT s.code FROM skus s JOIN stock t
    ON t.sku = s.id GROUP BY s.id HAVING MIN(t.snapshot) >= 10 ORDER BY s.code LIMIT 6"))
# Per warehouse: what it offered at the start (available = on hand - reserved - safety, never
# below 0). A pick at a warehouse whose units are all reserved for orders does not lower what
# is offered, so the model is the sum over warehouses of max(0, offered there - picked there).
for s in "${skus[@]}"; do
    t --json stock "$s" | jq -r '.warehouses[] | select(.serves_marketplace) | "\(.warehouse) \(.available)"' >"$tmp/seed-$s"
done
# Values published before the seed (e.g. before an order reserved some of it) are not judged
# against it; one second of grace, as for picks, for a value in flight at that moment.
seeded_ms=$(($(date +%s%3N) + 1000))
: >"$tmp/picks"
for i in $(seq 90); do
    s=${skus[RANDOM % ${#skus[@]}]} w=${WHS[RANDOM % 4]} q=$((RANDOM % 3 + 1))
    t pick "$s" "$q" --warehouse "$w" --id "pub-$i" >/dev/null 2>&1 &&
        echo "$s $q $(date +%s%3N) $w" >>"$tmp/picks"
    [ "$i" = 30 ] && ctl -X POST -d '{"target":"mp","up":false}' "$base/control/link" >/dev/null
    [ "$i" = 60 ] && ctl -X POST -d '{"target":"mp","up":true}' "$base/control/link" >/dev/null
    sleep 0.03
done
# Keep the faults on until every kind has been dealt at least once (tallyd backs off after
# each failure, so this takes a few rounds), asking for rounds to make requests.
dealt_all() {
    ctl "$base/control/stats" >"$tmp/stats.json"
    t sync mp >/dev/null 2>&1
    for kind in lost_answer stall malformed reset api_error status; do
        [ "$(jq --arg k "$kind" '[.faults // {} | to_entries[] | select(.key | contains($k))
            | .value] | add // 0' "$tmp/stats.json")" -gt 0 ] || return 1
    done
}
wait_until 90 dealt_all
echo "marketplace faults dealt: $(jq -c '.faults' "$tmp/stats.json" | head -c 300)"
ctl -X DELETE "$base/control/faults" >/dev/null
wait_until 60 outbox_empty
mark_rounds
wait_until 180 all_done
sleep 2 # the last published values
violations=0 published=0
for s in "${skus[@]}"; do
    while read -r value at; do
        published=$((published + 1))
        avail=$(awk -v s="$s" -v t="$at" 'FNR == NR { seed[$1] = $2; next }
            $1 == s && $3 < t - 1000 { picked[$4] += $2 }
            END { for (w in seed) { a = seed[w] - picked[w]; if (a > 0) n += a }; print n + 0 }' \
            "$tmp/seed-$s" "$tmp/picks")
        if [ "$value" -gt "$avail" ]; then
            violations=$((violations + 1))
            echo "published $value for $s at $at, but only $avail were available" >&2
        fi
    done < <(ctl "$base/control/published?sku=$s" | jq -r '.history[] | "\(.value) \(.at_ms)"' |
        awk -v from="$seeded_ms" '$2 >= from')
    final=$(ctl "$base/control/published?sku=$s" | jq '.value')
    check_eq "$final" "$(t --json stock "$s" | jq .marketplace_available)" "$s: last published value"
done
check_eq "$violations" 0 "published values above the truly available stock"
echo "publishing: $published values published for ${#skus[@]} SKUs over $(wc -l <"$tmp/picks") picks, every marketplace fault kind and a link cut; none above the available stock"

# A purged order pulled again by an order round (its detail and receipt info re-read after the
# buyer asks to cancel) gets none of its buyer's data back, in the rows or the file bytes.
db=$tmp/state/replica.db
# (A street and a phone no other order has: names repeat among the simulator's buyers.)
IFS='|' read -r oid bstreet bphone < <(sqlite3 -readonly "$db" "SELECT order_id, address, phone
    FROM orders o WHERE buyer_name IS NOT NULL AND address IS NOT NULL AND phone IS NOT NULL
    AND status = 'WAIT_SELLER_SEND_GOODS'
    AND (SELECT COUNT(*) FROM orders x WHERE x.address = o.address) = 1
    AND (SELECT COUNT(*) FROM orders x WHERE x.phone = o.phone) = 1 ORDER BY order_id LIMIT 1")
if [ -n "$oid" ]; then ok; else bad "no order with a buyer to purge"; fi
sqlite3 -cmd ".timeout 5000" "$db" "UPDATE orders SET fstate = 'cancelled',
    finished_at = strftime('%s','now') - 40 * 86400 WHERE order_id = '$oid'"
check_eq "$(t --json purge --older-than 30 | jq .orders)" 1 "orders purged"
ctl -X POST -d '{"status": "IN_CANCEL"}' "$base/control/orders/$oid/status" >/dev/null
repulled() {
    [ "$(sqlite3 -readonly "$db" "SELECT status FROM orders WHERE order_id = '$oid'")" = IN_CANCEL ]
}
wait_until 60 repulled
check_eq "$(sqlite3 -readonly "$db" "SELECT (purged_at IS NOT NULL) || (buyer_name IS NULL)
    || (address IS NULL) || (city IS NULL) || (postcode IS NULL) || (phone IS NULL)
    FROM orders WHERE order_id = '$oid'")" 111111 "the re-pulled order stays purged"
for v in "$bstreet" "$bphone"; do
    if grep -aqF -- "$v" "$db" "$db-wal" 2>/dev/null; then
        bad "the re-pulled order's buyer data ('$v') is in the database or WAL bytes"
    else
        ok
    fi
done

echo "test_marketplace: $checks checks, $fails failed"
[ "$fails" = 0 ]
