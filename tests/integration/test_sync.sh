#!/usr/bin/env bash
# Sync against tally-sim on loopback: initial sync of 100,000 SKUs x 4 warehouses checked row
# for row, incremental sync after upstream changes, movements pushed exactly once and settled,
# and the same through every fault kind and a cut link.
#   test_sync.sh TALLYD TALLY TALLY_SIM [SKUS]
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3 SKUS=${4:-100000}
tmp=$(mktemp -d /tmp/tally-sync.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap sync_cleanup EXIT
WHS=(ES-MAD FR-PAR PL-WAW US-LAX)

start_sim --skus "$SKUS" --seed 5 --warehouses "$(IFS=,; echo "${WHS[*]}")"
write_config "${WHS[@]}"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
carriers_conf >>"$tmp/tallyd.conf"
printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\napp_secret_file = %s\naccess_token_file = %s\ncatalog_interval = 3600\norders_interval = 60\n' \
    "$base" "$tmp/app.secret" "$tmp/access.token" >>"$tmp/tallyd.conf"
catalog_done() {
    st | jq -e '[.upstreams[].streams[] | select(.name == "mp:catalog")
        | (.last_success_at // 0) > 0 and (.in_round | not)] | all' >/dev/null
}

# 1. Initial sync.
t0=$(date +%s%N)
round_mark=0
start_tallyd
wait_until 300 inventory_done
t1=$(date +%s%N)
rows=$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT COUNT(*) FROM stock")
ms=$(((t1 - t0) / 1000000))
echo "initial sync: $rows stock rows in $ms ms ($((rows * 1000 / (ms ? ms : 1))) rows/s)"
check_eq "$rows" $((SKUS * ${#WHS[@]})) "stock rows after the initial sync"
for w in "${WHS[@]}"; do compare_stock "$w"; done
# No page applied twice: checkpoints.rows_total counts every page applied, over every round,
# and with reconcile_interval = 10 a stream re-reads all its rows 10 s after its first round
# (while the comparisons above run, on a loaded machine): so each stream's total is read at an
# instant when none is mid-round (no cursor) and must be a whole number of full reads. A
# page applied twice in any round leaves a remainder (a page is 5,000 rows, fewer than SKUS).
totals=""
for _ in $(seq 200); do
    totals=$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT CASE WHEN SUM(cursor IS NOT NULL) = 0
        THEN group_concat(rows_total, ' ') END FROM checkpoints WHERE stream LIKE '%:inventory'")
    [ -n "$totals" ] && break
    sleep 0.1
done
[ -n "$totals" ] || bad "an inventory round was mid-way at every sample"
n=0
for t in $totals; do
    n=$((n + 1))
    [ $((t % SKUS)) = 0 ] && [ "$t" -ge "$SKUS" ] && ok ||
        bad "rows applied by an inventory stream: $t, not a whole number of reads of $SKUS (a page twice)"
done
check_eq "$n" ${#WHS[@]} "inventory streams with a checkpoint"
echo "rows applied per inventory stream: $totals ($SKUS per full read)"
# The marketplace catalog: every product and SKU of the simulator, none left unlisted.
wait_until 300 catalog_done
t2=$(date +%s%N)
ctl "$base/control/health" >"$tmp/health.json"
db() { sqlite3 -readonly "$tmp/state/replica.db" "$1"; }
check_eq "$(db "SELECT COUNT(*) FROM products WHERE product_id <> '~unlisted'")" \
    "$(jq .products "$tmp/health.json")" "products in the replica"
check_eq "$(db "SELECT COUNT(*) FROM skus")" "$(jq .skus "$tmp/health.json")" "SKUs in the replica"
check_eq "$(db "SELECT COUNT(*) FROM skus s JOIN products p ON p.id = s.product
    WHERE p.product_id = '~unlisted'")" 0 "SKUs left unlisted"
# Pages are applied without foreign key checks (sync.c page_run): no row of theirs lacks its
# parent, the placeholders the first pages made included.
check_eq "$(db "PRAGMA foreign_key_check")" "" "rows whose parent is missing"
echo "initial sync with the catalog: $(jq .products "$tmp/health.json") products, $SKUS SKUs, $rows stock rows in $(((t2 - t0) / 1000000)) ms"

# 2. Incremental: the warehouses change stock on their side.
ctl -X POST -d '{"changes": 3000}' "$base/control/stock" >/dev/null
mark_rounds
wait_until 60 inventory_done
for w in "${WHS[@]}"; do compare_stock "$w"; done

# 3. Movements from the station reach the warehouses once and settle.
skus=($(sqlite3 -readonly "$tmp/state/replica.db" "SELECT code FROM skus ORDER BY id LIMIT 40"))
: >"$tmp/acked"
move() { # id
    local sku=${skus[RANDOM % ${#skus[@]}]} wh=${WHS[RANDOM % 4]} q=$((RANDOM % 3 + 1)) out
    if [ $((RANDOM % 2)) = 0 ]; then
        out=$(t --json receive "$sku" "$q" --warehouse "$wh" --id "$1" 2>/dev/null)
    else
        out=$(t --json pick "$sku" "$q" --warehouse "$wh" --id "$1" 2>/dev/null)
    fi
    [ $? = 0 ] && echo "$1" >>"$tmp/acked"
}
for i in $(seq 200); do move "calm-$i"; done
wait_until 60 outbox_empty
mark_rounds
wait_until 60 inventory_done && wait_until 30 settled
for w in "${WHS[@]}"; do compare_stock "$w"; done

# 4. Faults of every kind on every warehouse call, and one link cut for a while: the station
#    keeps answering and accepting movements; afterwards it converges.
# Each kind once for certain (count 1), then all of them at random rates.
for spec in '{"target":"wh:*","call":"movements","kind":"lost_answer","count":1}' \
    '{"target":"wh:*","kind":"stall","stall_ms":8000,"count":1}' \
    '{"target":"wh:*","kind":"malformed","count":1}' \
    '{"target":"wh:*","kind":"truncate","count":1}' \
    '{"target":"wh:*","kind":"reset","count":1}' \
    '{"target":"wh:*","kind":"status","status":503,"retry_after":1,"rate":0.15}' \
    '{"target":"wh:*","kind":"status","status":429,"retry_after":1,"rate":0.1}' \
    '{"target":"wh:*","kind":"status","status":500,"rate":0.1}' \
    '{"target":"wh:*","kind":"reset","rate":0.1}' \
    '{"target":"wh:*","call":"movements","kind":"lost_answer","rate":0.2}' \
    '{"target":"wh:*","kind":"truncate","rate":0.05}' \
    '{"target":"wh:*","kind":"malformed","rate":0.05}' \
    '{"target":"wh:*","kind":"stall","stall_ms":8000,"rate":0.03}' \
    '{"target":"wh:*","latency_ms":30,"rate":0.5}'; do
    ctl -X POST -H 'Content-Type: application/json' -d "$spec" "$base/control/faults" >/dev/null ||
        bad "could not set fault $spec"
done
ctl -X POST -d '{"target":"wh:ES-MAD","up":false}' "$base/control/link" >/dev/null
ctl -X POST -d '{"changes": 2000}' "$base/control/stock" >/dev/null
slowest=0
for i in $(seq 300); do
    sleep 0.02 # movements spread out, so most go in requests of their own
    move "storm-$i"
    if [ $((i % 30)) = 0 ]; then
        q0=$(date +%s%N)
        t stock "${skus[0]}" >/dev/null || bad "query failed during faults"
        q=$((($(date +%s%N) - q0) / 1000000))
        [ $q -gt $slowest ] && slowest=$q
    fi
    [ "$i" = 150 ] && ctl -X POST -d '{"target":"wh:ES-MAD","up":true}' "$base/control/link" >/dev/null
done
echo "during faults: slowest query $slowest ms (whole tally command)"
[ "$slowest" -lt 1000 ] && ok || bad "a query took $slowest ms during faults"
# Every fault kind was actually dealt (the simulator counts them).
ctl "$base/control/stats" >"$tmp/stats.json"
for kind in status reset lost_answer truncate malformed stall; do
    n=$(jq --arg k "$kind" '[.faults // {} | to_entries[] | select(.key | contains($k)) | .value]
        | add // 0' "$tmp/stats.json")
    [ "$n" -gt 0 ] && ok || bad "fault kind $kind never happened (stats: $(jq -c .faults "$tmp/stats.json"))"
done
echo "faults dealt: $(jq -c '.faults' "$tmp/stats.json" | head -c 400)"
ctl -X DELETE "$base/control/faults" >/dev/null
wait_until 120 outbox_empty
check_eq "$(st | jq '.outbox.held')" 0 "rows held after transient faults"
mark_rounds
wait_until 120 inventory_done && wait_until 60 settled
for w in "${WHS[@]}"; do compare_stock "$w"; done

# Exactly once: every acknowledged movement applied once upstream, nothing applied twice.
ctl "$base/control/movements" >"$tmp/applied.json"
check_eq "$(jq .max "$tmp/applied.json")" 1 "largest apply count of any movement"
jq -r '.movements | to_entries[] | select(.value == 1) | .key' "$tmp/applied.json" |
    sort >"$tmp/once"
missing=$(sort "$tmp/acked" | comm -23 - "$tmp/once" | wc -l)
check_eq "$missing" 0 "acknowledged movements not applied exactly once"
echo "movements: $(wc -l <"$tmp/acked") acknowledged, applied once each upstream"

# 5. Drift: figures changed behind tallyd's back (a bad restore, a lost write) are found and
#    repaired by the next reconciliation round, which re-reads every row.
sqlite3 "$tmp/state/replica.db" "PRAGMA busy_timeout = 5000; UPDATE stock SET snapshot = snapshot + 7
    WHERE (sku, warehouse) IN (SELECT sku, warehouse FROM stock ORDER BY sku LIMIT 5)"
repaired() { [ "$(st | jq '[.upstreams[].streams[].repaired] | add')" -ge 5 ]; }
wait_until 60 repaired
echo "reconciliation repaired $(st | jq '[.upstreams[].streams[].repaired] | add') rows"
for w in "${WHS[@]}"; do compare_stock "$w"; done

echo "test_sync: $checks checks, $fails failed"
[ "$fails" = 0 ]
