#!/usr/bin/env bash
# The demo: installs what is missing, builds, then
#   scripts/demo.sh           starts tally-sim (a marketplace and five overseas warehouses on
#                             loopback: three speak tally's Warehouse API, UK-GC is run by
#                             Goodcang and US-4PX by 4PX), starts tallyd against it, shows the
#                             station syncing and answering; orders allocated to the right
#                             overseas warehouse, shipped and uploaded (from the third-party
#                             warehouses too), exceptions raised and resolved; a receive at
#                             UK-GC refused, a transfer into it announced as an inbound notice;
#                             then cuts a warehouse's link: queries still answered, movements
#                             queued, drained once the link is back.
#   scripts/demo.sh offline   a station that was never connected, seeded from CSV files.
#   scripts/demo.sh stop      stops what a demo left running.
# tallyd (and tally-sim) keep running afterwards so you can try the client yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
demo=$top/demo
sock=$demo/tally.sock

stop_pidfile() {
    local f=$1
    if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
        kill -TERM "$(cat "$f")"
        for _ in $(seq 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$f"
}
stop_all() {
    stop_pidfile "$demo/tallyd.pid"
    stop_pidfile "$demo/sim.pid"
}

mode=${1:-sync}
case $mode in
stop) stop_all; echo "demo stopped"; exit 0 ;;
sync | offline) ;;
*) echo "usage: scripts/demo.sh [offline|sync|stop]" >&2; exit 2 ;;
esac

scripts/install-deps.sh
echo "== building"
scripts/build.sh build
tally() { "$top/build/tally" --socket "$sock" "$@"; }
show() {
    echo
    echo "\$ tally $*"
    local t0 t1
    t0=$(date +%s%N)
    tally "$@" || true
    t1=$(date +%s%N)
    echo "($(( (t1 - t0) / 1000000 )) ms, whole command)"
}
start_tallyd() { # extra args
    build/tallyd --state-dir "$demo/state" --socket "$sock" --station DEMO-ES-01 "$@" \
        >>"$demo/tallyd.log" 2>&1 &
    echo $! >"$demo/tallyd.pid"
    for _ in $(seq 200); do tally status >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "tallyd did not start; see demo/tallyd.log" >&2
    exit 1
}

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds (quietly), at most SECONDS.
wait_for() {
    local n=$(($1 * 10))
    shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}
no_order_in() { # STATE...: no order is in any of these fulfilment states
    local s
    for s in "$@"; do
        [ "$(tally --json orders --fstate "$s" --limit 1 | jq '.items | length')" = 0 ] || return 1
    done
}
ctl() { curl -sS --max-time 10 "$@"; }
fulfilment_demo() {
    echo
    echo "== fulfilment: every paid order is allocated to a warehouse, its stock reserved, and"
    echo "   sent to the warehouse as an outbound order"
    wait_for 20 no_order_in new ready || true
    show orders --due --limit 6
    local oid="" o
    # One that went to the warehouse in its own country, to show the rule that decided.
    for o in $(tally --json orders --fstate sent --limit 40 | jq -r '.items[].order_id'); do
        oid=$o
        [ "$(tally --json orders show "$o" | jq -r '.allocation.rule')" = in-country ] && break
    done
    show orders show "$oid"
    echo
    echo "== an order for more than any warehouse holds: out of stock, an exception"
    local big
    big=$(ctl -X POST -d "{\"count\":1,\"sku\":\"$sku\",\"qty\":900}" "$base/control/orders" | jq -r '.created[0]')
    tally sync mp:orders --wait --timeout 60 >/dev/null
    wait_for 20 sh -c "'$top/build/tally' --socket '$sock' --json exceptions --kind out_of_stock | jq -e '.items | length > 0'" || true
    show exceptions --kind out_of_stock
    echo
    echo "== the warehouses pick, pack and ship (the simulator's clock moves 4 minutes); the"
    echo "   shipments are uploaded to the marketplace (order.fulfill)"
    ctl -X POST -d '{"seconds":240}' "$base/control/advance" >/dev/null
    tally sync outbound --wait --timeout 60 >/dev/null
    wait_for 30 no_order_in sent picked shipped || true
    show orders show "$oid"
    echo "marketplace uploads (tally-sim): $(ctl "$base/control/fulfilments" | jq -c '{count, max_applied_per_tracking}')"
    echo
    echo "== new orders arrive; a warehouse reports a problem with one of them"
    ctl -X POST -d '{"count":4}' "$base/control/orders" >/dev/null
    tally sync mp:orders --wait --timeout 60 >/dev/null
    wait_for 20 no_order_in new ready allocated || true
    local sent wh
    sent=$(tally --json orders --fstate sent --limit 1 | jq -r '.items[0].order_id')
    wh=$(tally --json orders --fstate sent --limit 1 | jq -r '.items[0].warehouse')
    ctl -X POST -d "{\"wh\":\"$wh\",\"id\":\"$sent\",\"status\":\"exception\",\"reason\":\"carton damaged at packing\"}" \
        "$base/control/outbound" >/dev/null
    tally sync outbound --wait --timeout 60 >/dev/null
    show exceptions --kind warehouse
    local eid
    eid=$(tally --json exceptions --kind warehouse | jq -r '.items[0].id')
    show exceptions resolve "$eid" --note "repacked in a new carton; $wh confirmed by phone"
    echo
    echo "== the buyer cancels an order that has already shipped: never a silent overwrite"
    ctl -X POST -d '{"status":"IN_CANCEL"}' "$base/control/orders/$oid/status" >/dev/null
    tally sync mp:orders --wait --timeout 60 >/dev/null
    wait_for 20 sh -c "'$top/build/tally' --socket '$sock' --json exceptions --kind cancelled_after_pick | jq -e '.items | length > 0'" || true
    show exceptions --kind cancelled_after_pick
    show report --skus 8
}

third_party_demo() {
    echo
    echo "== third-party warehouses: Goodcang runs UK-GC and 4PX runs US-4PX in their own systems;"
    echo "   tally reads their stock and stock log, sends them outbound orders and cancels, and"
    echo "   announces goods coming in (tally status shows each upstream's kind)"
    local w o
    for w in UK-GC US-4PX; do
        o=$(tally --json orders --fstate uploaded --limit 500 |
            jq -r --arg w "$w" '[.items[] | select(.warehouse == $w)]
                | (map(select(.status == "WAIT_BUYER_ACCEPT_GOODS")) + .)[0].order_id // empty')
        if [ -n "$o" ]; then
            show orders show "$o"
        else
            echo "(no order of this run was allocated to $w)"
        fi
    done
    echo "marketplace uploads (tally-sim): $(ctl "$base/control/fulfilments" | jq -c '{count, max_applied_per_tracking}')"
    echo
    echo "== a local receive at UK-GC: refused, saying why and what to do instead"
    show receive "$sku" 5 --warehouse UK-GC --id demo-receive-gc
    echo
    echo "== a transfer from ES-MAD into UK-GC: ES-MAD's leg is recorded, and Goodcang is sent an"
    echo "   inbound notice (a GRN) for the goods; UK-GC's stock grows when Goodcang receives them"
    show transfer "$sku" 3 --from ES-MAD --to UK-GC --id demo-transfer-gc
    wait_for 30 sh -c "'$top/build/tally' --socket '$sock' --json inbound --warehouse UK-GC | jq -e '.items[0].state == \"sent\"'" || true
    show inbound --warehouse UK-GC
}

stop_all
rm -rf "$demo"
mkdir -p "$demo"

if [ "$mode" = offline ]; then
    echo "== generating demo data (tests/gen/tally-gen)"
    build/tests/tally-gen --out "$demo/data" --skus 300 --warehouses 4 --orders 40 --seed 11
    echo "== starting tallyd (state in demo/, log in demo/tallyd.log)"
    start_tallyd
    echo "== seeding the station offline: tally import"
    for kind in warehouses catalog stock orders; do
        tally import "$kind" "$demo/data/$kind.csv"
    done
    sku=$(tally --json stock list --low --limit 1 | jq -r '.items[0].sku // empty')
    sku=${sku:-$(sed -n '2p' "$demo/data/catalog.csv" | cut -d, -f1)}
    show status
    show sku "$sku"
    show stock "$sku"
    show receive "$sku" 24 --warehouse ES-MAD --id demo-receive-1 --ref PO-7731
    show receive "$sku" 24 --warehouse ES-MAD --id demo-receive-1 --ref PO-7731
    show transfer "$sku" 5 --from ES-MAD --to PL-WAW --id demo-transfer-1
    show count "$sku" 3 --warehouse US-LAX --id demo-count-1
    show stock "$sku"
    show stock list --low --limit 8
    show orders --status WAIT_SELLER_SEND_GOODS --limit 5
    show outbox
else
    echo "== starting tally-sim: a marketplace and 5 overseas warehouses, 5,000 SKUs"
    build/tests/sim/tally-sim --port 0 --skus 5000 --orders 120 --seed 11 \
        --warehouses ES-MAD,FR-PAR,PL-WAW,UK-GC:goodcang,US-4PX:fourpx \
        >"$demo/sim.out" 2>"$demo/sim.log" &
    echo $! >"$demo/sim.pid"
    for _ in $(seq 100); do grep -q listening "$demo/sim.out" 2>/dev/null && break; sleep 0.05; done
    base=http://127.0.0.1:$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$demo/sim.out")
    echo "   $(cat "$demo/sim.out")"
    echo tally-sim-app-secret >"$demo/app.secret"
    echo tally-sim-access-token >"$demo/access.token"
    echo tally-sim-wh-token >"$demo/wh.token"
    chmod 600 "$demo"/*.secret "$demo"/*.token
    {
        printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
        printf 'app_secret_file = %s\naccess_token_file = %s\n' "$demo/app.secret" "$demo/access.token"
        printf 'orders_interval = 10\n[sync]\nretry_max = 5\nrequest_timeout = 10\n'
        # The marketplace's service key for each carrier the warehouses ship with (tally
        # carriers lists the keys); ES-MAD's Correos parcels go as EMS there, all else as CPAM.
        printf '[carriers]\nCorreos = CPAM\nLa Poste = CPAM\nPoczta Polska = CPAM\nUSPS = CPAM\n'
        printf 'DHL = CPAM\n'
        # Goodcang reports an order's shipping method as its carrier.
        printf 'UK-RM48 = CPAM\n'
        for w in ES-MAD FR-PAR PL-WAW; do
            printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\ninventory_interval = 5\n' \
                "$w" "$base" "$w" "$demo/wh.token"
            printf 'country = %s\n' "${w%%-*}"
            [ "$w" = ES-MAD ] && printf 'carrier.Correos = EMS\n'
        done
        # The third-party warehouses: the simulator's app key, and the warehouses' token as
        # Goodcang's app token and 4PX's signing secret.
        printf '[warehouse UK-GC]\nkind = goodcang\nurl = %s/wh/UK-GC\ncountry = GB\n' "$base"
        printf 'app_key = tally-sim-3pl-key\napp_token_file = %s\n' "$demo/wh.token"
        printf 'shipping_method = UK-RM48\ninventory_interval = 5\noutbound_interval = 10\n'
        printf '[warehouse US-4PX]\nkind = fourpx\nurl = %s/wh/US-4PX\ncountry = US\n' "$base"
        printf 'app_key = tally-sim-3pl-key\napp_secret_file = %s\n' "$demo/wh.token"
        printf 'shipping_method = F3\ninventory_interval = 5\noutbound_interval = 10\n'
    } >"$demo/tallyd.conf"
    chmod 600 "$demo/tallyd.conf" # tallyd refuses a config file others may read
    echo "== starting tallyd against it (config demo/tallyd.conf, log demo/tallyd.log)"
    start_tallyd --config "$demo/tallyd.conf"
    echo
    echo "\$ tally sync --wait"
    tally sync --wait --timeout 300
    sku=$(tally --json stock list --limit 1 | jq -r '.items[0].sku')
    show status
    show stock "$sku"
    show orders --status WAIT_SELLER_SEND_GOODS --limit 5

    fulfilment_demo
    third_party_demo
    echo
    echo "== cutting the link to ES-MAD (the simulator drops every connection to it)"
    curl -s -X POST -d '{"target":"wh:ES-MAD","up":false}' "$base/control/link" >/dev/null
    show receive "$sku" 12 --warehouse ES-MAD --id demo-offline-1 --ref PO-9001
    show pick "$sku" 2 --warehouse ES-MAD --id demo-offline-2 --ref ORDER-1
    sleep 2
    show stock "$sku"
    show outbox --state pending
    show status
    echo
    echo "== the link comes back"
    curl -s -X POST -d '{"target":"wh:ES-MAD","up":true}' "$base/control/link" >/dev/null
    for _ in $(seq 100); do
        [ "$(tally --json status | jq '.outbox.pending')" = 0 ] && break
        sleep 0.2
    done
    show outbox --limit 5
    echo
    echo "what the warehouse applied (tally-sim's count per movement id):"
    curl -s "$base/control/movements" | jq -c '.movements | with_entries(select(.key | startswith("demo-")))'
    tally sync --wait --timeout 60 >/dev/null || true
    show stock "$sku"
fi
echo
echo "tallyd is still running (pid $(cat "$demo/tallyd.pid")). Try:"
echo "  export TALLY_SOCKET=$sock"
echo "  build/tally --help"
echo "  build/tally stock list --low"
echo "Stop everything with: scripts/demo.sh stop"
