#!/usr/bin/env bash
# An answer larger than a page can honestly be (tally-sim's `oversized` fault: the real answer
# followed by megabytes of spaces) is refused; for a read (a warehouse's inventory page, a
# marketplace list page) that is the stream's failure, shown in its last_error and retried at its
# interval, not a failed link: the link stays up and the warehouse still takes the station's
# movements (a link marked down would have made that same page its probe, again and again, with
# every movement behind it). Once the answers are honest again the stream catches up.
#   test_oversized.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-oversized.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap sync_cleanup EXIT

start_sim --skus 300 --seed 4 --warehouses ES-MAD
echo tally-sim-wh-token >"$tmp/wh.token"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
# Outbound and orders rounds far apart: only the inventory and catalog rounds run meanwhile.
printf '[station]\nname = OVERSIZED-TEST\n[sync]\nretry_max = 2\nrequest_timeout = 5\n[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = %s\ninventory_interval = 1\noutbound_interval = 3600\n[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\napp_secret_file = %s\naccess_token_file = %s\ncatalog_interval = 1\norders_interval = 3600\n' \
    "$base" "$tmp/wh.token" "$base" "$tmp/app.secret" "$tmp/access.token" >"$tmp/tallyd.conf"
# Honest pages, however full, are taken: 300 outbound orders of 100 lines each at the
# warehouse (the most a line list may hold) make an outbound feed of about 150,000 values when a
# page holds as many orders as the warehouse likes (tally-sim: 500), so the station asks for
# pages of a size it can hold.
skus=($(ctl "$base/control/stock?wh=ES-MAD&format=csv" | tail -n +2 | cut -d, -f1 | head -100))
lines=$(for s in "${skus[@]}"; do printf '{"sku":"%s","qty":1},' "$s"; done)
mkdir "$tmp/ob"
for i in $(seq 300); do # one curl for the 300 requests
    printf '{"id":"ob-%d","lines":[%s],"service":"std"}' "$i" "${lines%,}" >"$tmp/ob/$i.json"
    [ "$i" = 1 ] || echo next
    echo "url = \"$base/wh/ES-MAD/v1/outbound-orders\""
    echo 'header = "Authorization: Bearer tally-sim-wh-token"'
    echo "data = \"@$tmp/ob/$i.json\""
    echo 'output = "/dev/null"'
    echo 'write-out = "%{http_code}\\n"'
done >"$tmp/create.curl"
grep -q ' 300 201$' <<<"$(curl -sS -K "$tmp/create.curl" | sort | uniq -c)" && ok ||
    bad "300 outbound orders not created"
round_mark=0
start_tallyd
wait_until 60 inventory_done
outbound_done() {
    st | jq -e '.upstreams[].streams[] | select(.name == "wh:ES-MAD:outbound")
        | (.last_success_at // 0) > 0 and (.in_round | not) and .last_error == null' >/dev/null
}
wait_until 30 outbound_done
check_eq "$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT rows_total FROM checkpoints
    WHERE stream = 'wh:ES-MAD:outbound'")" 300 "outbound orders read from the feed"

ctl -X POST -d '{"target":"wh:ES-MAD","call":"inventory","kind":"oversized"}' \
    "$base/control/faults" >/dev/null
ctl -X POST -d '{"target":"mp","call":"aliexpress.solution.product.list.get","kind":"oversized"}' \
    "$base/control/faults" >/dev/null
stream_error() { # stream: its last_error
    st | jq -r --arg s "$1" '.upstreams[].streams[] | select(.name == $s) | .last_error // ""'
}
refused() { grep -q 'larger than' <<<"$(stream_error "$1")"; }
wait_until 30 refused wh:ES-MAD:inventory
wait_until 30 refused mp:catalog
check_eq "$(st | jq -r '.upstreams[] | select(.name == "wh:ES-MAD") | .link')" up \
    "warehouse link while its inventory pages are refused"
check_eq "$(st | jq -r '.upstreams[] | select(.name == "mp") | .link')" up \
    "marketplace link while its list pages are refused"

# The warehouse still takes movements.
sku=$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT code FROM skus ORDER BY id LIMIT 1")
t receive "$sku" 3 --warehouse ES-MAD --id over-1 >/dev/null || bad "receive refused"
applied() { grep -q '"over-1"' <<<"$(ctl "$base/control/movements")"; }
wait_until 20 applied
# Several refused rounds later the link is still up (no flapping to down and back).
sleep 3
refused wh:ES-MAD:inventory && ok || bad "inventory stream error gone while pages are refused"
check_eq "$(st | jq -r '.upstreams[] | select(.name == "wh:ES-MAD") | .link')" up \
    "warehouse link after more refused pages"
grep -q 'wh:ES-MAD: .*larger than' "$tmp/tallyd.log" && bad "the link was reported failed" || ok

# Honest answers again: the streams catch up and their errors clear.
ctl -X DELETE "$base/control/faults" >/dev/null
mark_rounds
wait_until 30 inventory_done
cleared() { [ -z "$(stream_error "$1")" ]; }
wait_until 30 cleared wh:ES-MAD:inventory
wait_until 30 cleared mp:catalog
compare_stock ES-MAD

echo "test_oversized: $checks checks, $fails failed"
[ "$fails" = 0 ]
