#!/usr/bin/env bash
# The orders stream reads an order's details (aliexpress.solution.order.info.get) only when the
# order list says it changed since the replica's copy (its gmt_update and order_status), counted
# at the simulator: rounds over unchanged orders (windowed ones, and a reconciliation every
# 10 s listing every open order) ask for no detail; an order whose status changes at the
# marketplace is read again (its new status lands) and then no longer.
#   test_mp_unchanged.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-mpu.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap sync_cleanup EXIT
start_sim --skus 200 --orders 10 --seed 11 --warehouses ES-MAD
write_config
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\napp_secret_file = %s\naccess_token_file = %s\ncatalog_interval = 3600\norders_interval = 1\n' \
    "$base" "$tmp/app.secret" "$tmp/access.token" >>"$tmp/tallyd.conf"
db=$tmp/state/replica.db

calls() { ctl "$base/control/stats" | jq --arg k "mp:$1" '.requests[$k] // 0'; }
round_mark=0
orders_done() {
    st | jq -e --argjson since "$round_mark" '[.upstreams[].streams[]
        | select(.name | endswith("orders"))
        | (.last_success_at // 0) > $since and (.in_round | not)] | all and length > 0' >/dev/null
}
# n_rounds N: waits for N orders rounds begun after the call.
n_rounds() { for _ in $(seq "$1"); do mark_rounds; wait_until 60 orders_done; done; }

start_tallyd
wait_until 60 orders_done
# 40 new orders: within the list's window (orders_overlap, 300 s) for every round below.
ctl -X POST -d '{"count": 40}' "$base/control/orders" >/dev/null
n_rounds 1
check_eq "$(sqlite3 -readonly "$db" "SELECT COUNT(*) FROM orders")" 50 "orders in the replica"
sleep 2.5 # their update times settle (a gmt_update in the list answer's second is not trusted)
n_rounds 1

d0=$(calls aliexpress.solution.order.info.get) l0=$(calls aliexpress.solution.order.get)
s0=$SECONDS
n_rounds 3
d1=$(calls aliexpress.solution.order.info.get) l1=$(calls aliexpress.solution.order.get)
[ "$((l1 - l0))" -ge 3 ] && ok || bad "order lists during 3 rounds: $((l1 - l0))"
# Caught up, with no detail to wait for, a round is one list of one page at orders_interval
# (1 s): at most one list a second (plus the round under way at each end), never a loop that
# asks again as soon as a round ends (a real gateway rate-limits: ApiCallLimit).
[ "$((l1 - l0))" -le "$((SECONDS - s0 + 3))" ] && ok ||
    bad "order lists in $((SECONDS - s0)) s of caught-up rounds at 1 s: $((l1 - l0))"
check_eq "$((d1 - d0))" 0 "order details read in 3 rounds over 40 unchanged listed orders"

oid=$(sqlite3 -readonly "$db" "SELECT order_id FROM orders WHERE status = 'WAIT_SELLER_SEND_GOODS'
    ORDER BY created_at DESC LIMIT 1")
[ -n "$oid" ] && ok || bad "no order waiting to be shipped"
ctl -X POST -d '{"status": "IN_CANCEL"}' "$base/control/orders/$oid/status" >/dev/null
repulled() {
    [ "$(sqlite3 -readonly "$db" "SELECT status FROM orders WHERE order_id = '$oid'")" = IN_CANCEL ]
}
wait_until 60 repulled # (a failure: the changed order was not read again)
sleep 2.5
n_rounds 1
d2=$(calls aliexpress.solution.order.info.get)
# Read once, or twice when a round listed it within its update's second.
[ "$((d2 - d1))" -ge 1 ] && [ "$((d2 - d1))" -le 3 ] && ok ||
    bad "order details read for one changed order: $((d2 - d1))"
n_rounds 3
d3=$(calls aliexpress.solution.order.info.get)
check_eq "$((d3 - d2))" 0 "order details read in 3 rounds once the change was read"

echo "test_mp_unchanged: details read: $((d1 - d0)) in 3 unchanged rounds, $((d2 - d1)) for one change, $((d3 - d2)) after; $checks checks, $fails failed"
[ "$fails" = 0 ]
