#!/usr/bin/env bash
# The demo: installs what is missing, builds, seeds a station that was never connected with
# generated data (a few hundred SKUs in four overseas warehouses, some orders), starts tallyd
# on it and shows the client answering. The daemon keeps running afterwards; stop it with
#   scripts/demo.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
demo=$top/demo
sock=$demo/tally.sock

stop_daemon() {
    if [ -f "$demo/tallyd.pid" ] && kill -0 "$(cat "$demo/tallyd.pid")" 2>/dev/null; then
        kill -TERM "$(cat "$demo/tallyd.pid")"
        for _ in $(seq 50); do kill -0 "$(cat "$demo/tallyd.pid")" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$demo/tallyd.pid"
}

if [ "${1:-}" = stop ]; then
    stop_daemon
    echo "demo tallyd stopped"
    exit 0
fi

scripts/install-deps.sh
echo "== building"
scripts/build.sh build
tally() { "$top/build/tally" --socket "$sock" "$@"; }

stop_daemon
rm -rf "$demo"
mkdir -p "$demo"
echo "== generating demo data (tests/gen/tally-gen)"
build/tests/tally-gen --out "$demo/data" --skus 300 --warehouses 4 --orders 40 --seed 11
echo "== starting tallyd (state in demo/, log in demo/tallyd.log)"
build/tallyd --state-dir "$demo/state" --socket "$sock" --station DEMO-ES-01 \
    >"$demo/tallyd.log" 2>&1 &
echo $! >"$demo/tallyd.pid"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done

echo "== seeding the station offline: tally import"
for kind in warehouses catalog stock orders; do
    tally import "$kind" "$demo/data/$kind.csv"
done

sku=$(tally --json stock list --low --limit 1 | sed -n 's/.*"sku":"\([^"]*\)".*/\1/p')
sku=${sku:-$(sed -n '2p' "$demo/data/catalog.csv" | cut -d, -f1)}

show() {
    echo
    echo "\$ tally $*"
    local t0 t1
    t0=$(date +%s%N)
    tally "$@"
    t1=$(date +%s%N)
    echo "($(( (t1 - t0) / 1000000 )) ms, whole command)"
}
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
echo
echo "tallyd is still running (pid $(cat "$demo/tallyd.pid")). Try:"
echo "  export TALLY_SOCKET=$sock"
echo "  build/tally --help"
echo "  build/tally stock $sku --json"
echo "Stop it with: scripts/demo.sh stop"
