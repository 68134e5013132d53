#!/usr/bin/env bash
# Real network faults (tests/README.md "Reliability"): tallyd in one network namespace, tally-sim
# (two tally warehouses, a Goodcang one, a 4PX one and the marketplace) in another, joined by a
# veth pair that this test creates and removes. tallyd reaches the simulator over the veth
# through netproxy.py (a small TCP proxy in the simulator's namespace), by plain http to the veth
# address: each upstream section says allow_insecure_http = true, the config's explicit
# per-upstream opt-in (a warning at every start); nothing is changed in tallyd for the test.
# Scenarios, one after the other on the same tallyd, each while two clients record movements
# (receives, transfers into the Goodcang warehouse), new orders arrive at the marketplace and
# the warehouses ship what they were sent:
#   loss       nftables on tallyd's veth drops 20 % of the packets each way (numgen random)
#   partition  nftables drops everything, then heals
#   throttle   tc tbf on both ends of the veth (RATE, default 256kbit)
#   latency    the proxy delivers every chunk 400 ms late, each way
#   reorder    the proxy holds each new connection and each request chunk a random 0-1.5 s,
#              so requests sent later overtake earlier ones
#   blackhole  the proxy accepts and never answers (open connections stop passing too)
# After each, once the fault is gone: the time until tallyd has converged (printed), then every
# acknowledged movement is in the ledger once and applied upstream exactly once, every outbound
# order was created once and at one warehouse, every shipment uploaded once, the replica's stock
# equals every warehouse's and its orders the marketplace's. Ends with a table.
#   test_netfault.sh TALLYD TALLY TALLY_SIM [--full] [--table FILE]
# --full: the long durations (a 60 s partition; scripts/netfault-test.sh); default: the short
# ones CTest runs. Needs root (CAP_NET_ADMIN), ip, tc and nft: without them it exits 77 (skip).
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
shift 3
full= table_file=
while [ $# -gt 0 ]; do
    case $1 in
    --full) full=1 ;;
    --table) table_file=$2; shift ;;
    *) echo "usage: test_netfault.sh TALLYD TALLY TALLY_SIM [--full] [--table FILE]" >&2; exit 2 ;;
    esac
    shift
done
here=$(cd "$(dirname "$0")" && pwd)

skip() {
    echo "SKIP: test_netfault: $* (network namespaces, veth, tc and nftables need root with CAP_NET_ADMIN)"
    exit 77
}
[ "$(id -u)" = 0 ] || skip "not root"
for c in ip tc nft curl jq sqlite3; do
    command -v "$c" >/dev/null || skip "$c is not installed (scripts/install-deps.sh)"
done
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

if [ -n "$full" ]; then
    declare -A DUR=([loss]=30 [partition]=60 [throttle]=30 [latency]=20 [reorder]=20 [blackhole]=20)
else
    declare -A DUR=([loss]=5 [partition]=10 [throttle]=5 [latency]=4 [reorder]=4 [blackhole]=5)
fi
SCENARIOS=(loss partition throttle latency reorder blackhole)
RATE=${NETFAULT_RATE:-256kbit}
CONVERGE_LIMIT=${NETFAULT_CONVERGE_LIMIT:-150}

# Names unique to this process, so that tests running side by side do not collide; leftovers of
# a run that died (its pid gone) are removed first.
tag=$$
NS_D=tallynf-$tag-d NS_S=tallynf-$tag-s VD=nfd$tag VS=nfs$tag
ADDR_D=10.213.7.1 ADDR_S=10.213.7.2
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^tallynf-[0-9]*-[ds]$'); do
    p=${ns#tallynf-}
    p=${p%-*}
    kill -0 "$p" 2>/dev/null && continue
    for q in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$q" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null && echo "removed the namespace $ns left by a run that died"
done

tmp=$(mktemp -d /tmp/tally-netfault.XXXXXX)
. "$here/synclib.sh"
proxy_pid= load_pids=()
ns_made=
on_exit() {
    local rc=$?
    trap - EXIT
    touch "$tmp/stop"
    for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${load_pids[@]}"; do wait "$p" 2>/dev/null; done
    if [ -n "$tallyd_pid" ]; then
        kill -TERM "$tallyd_pid" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$tallyd_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$tallyd_pid" 2>/dev/null
        { wait "$tallyd_pid"; } 2>/dev/null
        tallyd_pid=
    fi
    if [ -n "$proxy_pid" ]; then
        kill -TERM "$proxy_pid" 2>/dev/null
        { wait "$proxy_pid"; } 2>/dev/null
    fi
    if [ -s "$tmp/tallyd.log" ] && { [ "$fails" != 0 ] || { [ "$rc" != 0 ] && [ "$rc" != 77 ]; }; }; then
        echo "--- tallyd's log (last lines)" >&2
        tail -n 25 "$tmp/tallyd.log" >&2
    fi
    sync_cleanup_keep=${KEEP_TMP:-}
    KEEP_TMP=1 sync_cleanup 2>/dev/null
    if [ -n "$ns_made" ]; then
        ip netns del "$NS_D" 2>/dev/null
        ip netns del "$NS_S" 2>/dev/null
    fi
    [ -n "$sync_cleanup_keep" ] && echo "kept $tmp" >&2 || rm -rf "$tmp"
    [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ "$fails" = 0 ] && echo "FAIL: aborted (exit status $rc)" >&2
    [ "$rc" = 0 ] && [ "$fails" != 0 ] && rc=1
    echo "test_netfault: $((checks - fails)) passed, $fails failed"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# (Processes started in the background use ip netns exec itself, which execs the command, so
# that $! is the process.)
nd() { ip netns exec "$NS_D" "$@"; }
ns() { ip netns exec "$NS_S" "$@"; }
ip netns add "$NS_D" 2>"$tmp/err" || skip "cannot create a network namespace: $(cat "$tmp/err")"
ns_made=1
ip netns add "$NS_S" || skip "cannot create a second network namespace"
ip link add "$VD" type veth peer name "$VS" 2>"$tmp/err" || skip "cannot create a veth pair: $(cat "$tmp/err")"
ip link set "$VD" netns "$NS_D" && ip link set "$VS" netns "$NS_S" &&
    ip -n "$NS_D" addr add "$ADDR_D/30" dev "$VD" && ip -n "$NS_S" addr add "$ADDR_S/30" dev "$VS" &&
    ip -n "$NS_D" link set "$VD" up && ip -n "$NS_S" link set "$VS" up &&
    ip -n "$NS_D" link set lo up && ip -n "$NS_S" link set lo up || skip "cannot set up the veth pair"
# The fault tools must work here too (nftables' numgen, tc tbf), else skip rather than fail.
nd nft add table inet tallynf_probe 2>"$tmp/err" || skip "nftables does not work: $(cat "$tmp/err")"
nd nft delete table inet tallynf_probe
nd tc qdisc add dev "$VD" root tbf rate "$RATE" burst 4kb latency 500ms 2>"$tmp/err" ||
    skip "tc tbf does not work: $(cat "$tmp/err")"
nd tc qdisc del dev "$VD" root

# ---------------------------------------------------------------------- the simulator, the proxy
WHS=(ES-MAD PL-WAW UK-GC US-4PX)
TALLY_WHS=(ES-MAD PL-WAW)
ip netns exec "$NS_S" "$SIM" --listen "$ADDR_S" --port 0 --skus 300 --orders 20 --seed 71 \
    --warehouses ES-MAD:tally,PL-WAW:tally,UK-GC:goodcang,US-4PX:fourpx \
    --outbound-step-seconds 0 >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim_pid=$!
for _ in $(seq 600); do
    grep -q listening "$tmp/sim.out" 2>/dev/null && break
    sleep 0.05
done
port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$tmp/sim.out")
[ -n "$port" ] || { bad "tally-sim did not start: $(cat "$tmp/sim.err")"; exit 1; }
base=http://$ADDR_S:$port # the control interface: from the simulator's namespace, over its lo
ctl() { ns curl -sS --noproxy '*' --max-time 30 "$@"; }
post() { ctl -X POST -H 'Content-Type: application/json' -d "$2" "$base/control/$1"; }

: >"$tmp/proxy.mode"
ip netns exec "$NS_S" "$PY" "$here/netproxy.py" "$ADDR_S:0" "$ADDR_S:$port" "$tmp/proxy.mode" \
    >"$tmp/proxy.out" 2>"$tmp/proxy.err" &
proxy_pid=$!
for _ in $(seq 200); do
    grep -q listening "$tmp/proxy.out" 2>/dev/null && break
    sleep 0.05
done
pport=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$tmp/proxy.out")
[ -n "$pport" ] || { bad "netproxy.py did not start: $(cat "$tmp/proxy.err")"; exit 1; }
up=http://$ADDR_S:$pport # what tallyd talks to, across the veth
# tallyd's namespace reaches the simulator only through the veth (and not its control port
# from there: nothing in the test needs it).
nd curl -sS --noproxy '*' --max-time 5 -o /dev/null "$up/control/health" ||
    { bad "tallyd's namespace cannot reach the proxy at $up"; exit 1; }

# ---------------------------------------------------------------------- tallyd
echo tally-sim-wh-token >"$tmp/wh.token"
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
{
    printf '[station]\nname = NETFAULT\n[sync]\nretry_max = 5\nrequest_timeout = 3\n'
    printf 'reconcile_interval = 10\n'
    carriers_conf
    printf 'UK-RM48 = CPAM\nFPX-US-GROUND = CPAM\n'
    printf '[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = %s\ncountry = ES\n' "$up" "$tmp/wh.token"
    printf 'allow_insecure_http = true\ninventory_interval = 2\noutbound_interval = 1\n'
    printf '[warehouse PL-WAW]\nurl = %s/wh/PL-WAW\ntoken_file = %s\ncountry = PL\n' "$up" "$tmp/wh.token"
    printf 'allow_insecure_http = true\ninventory_interval = 2\noutbound_interval = 1\n'
    printf '[warehouse UK-GC]\nkind = goodcang\nurl = %s/wh/UK-GC\napp_key = tally-sim-3pl-key\n' "$up"
    printf 'app_token_file = %s\ncountry = GB\nshipping_method = UK-RM48\n' "$tmp/wh.token"
    printf 'allow_insecure_http = true\ninventory_interval = 2\noutbound_interval = 1\n'
    printf '[warehouse US-4PX]\nkind = fourpx\napp_key = tally-sim-3pl-key\n'
    printf 'app_secret_file = %s\nurl = %s/wh/US-4PX\ncountry = US\n' "$tmp/wh.token" "$up"
    printf 'shipping_method = FPX-US-GROUND\n'
    printf 'allow_insecure_http = true\ninventory_interval = 2\noutbound_interval = 1\n'
    printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$up"
    printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
    printf 'allow_insecure_http = true\ncatalog_interval = 2\norders_interval = 1\n'
    printf '[allocation]\nsplit = false\n'
} >"$tmp/tallyd.conf"

ip netns exec "$NS_D" "$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" --socket "$tmp/tally.sock" \
    --log-level warning 2>>"$tmp/tallyd.log" &
tallyd_pid=$!
for _ in $(seq 400); do
    "$TALLY" --socket "$tmp/tally.sock" status >/dev/null 2>&1 && break
    sleep 0.025
done
t status >/dev/null 2>&1 || { bad "tallyd did not start: $(tail -5 "$tmp/tallyd.log")"; exit 1; }
if grep -q "allow_insecure_http" "$tmp/tallyd.log"; then ok; else
    bad "tallyd does not warn about plain http to a non-loopback upstream"
fi

sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }

# ---------------------------------------------------------------------- convergence
# streams_done: every stream finished a round since $round_mark and is not in one.
round_mark=0
streams_done() {
    st | jq -e --argjson since "$round_mark" '[.upstreams[].streams[]
        | (.last_success_at // 0) > $since and (.in_round | not)] | length > 0 and all' >/dev/null
}
# same_stock WH: the replica's figures == the simulator's (tally warehouses: on hand and
# version; Goodcang and 4PX: on hand), quietly; the files stay for a report.
same_stock() {
    local w=$1 f='{print $1","$2}' q="s.code, t.snapshot + t.pending"
    case $w in ES-MAD | PL-WAW) f='{print $1","$2","$4}' q="$q, t.upstream_version" ;; esac
    ctl "$base/control/stock?wh=$w&format=csv" | tail -n +2 | awk -F, "$f" | sort >"$tmp/sim-$w.csv"
    sql -csv "SELECT $q FROM stock t JOIN skus s ON s.id = t.sku JOIN warehouses w
        ON w.id = t.warehouse WHERE w.code = '$w'" | sort >"$tmp/rep-$w.csv"
    [ -s "$tmp/sim-$w.csv" ] && cmp -s "$tmp/sim-$w.csv" "$tmp/rep-$w.csv"
}
# same_orders: every marketplace order is in the replica with the marketplace's status (but
# for orders that were FINISH before the first round, which leaves them out by design).
same_orders() {
    sql -csv "SELECT order_id, status FROM orders" | sort >"$tmp/rep-orders.csv"
    ctl "$base/control/orders" | jq -r '.items[] | "\(.order_id),\(.status)"' | sort |
        awk -F, 'NR == FNR { rep[$1] = 1; next } $2 != "FINISH" || ($1 in rep)' \
            "$tmp/rep-orders.csv" - >"$tmp/sim-orders.csv"
    cmp -s "$tmp/sim-orders.csv" "$tmp/rep-orders.csv"
}
# Allocation done: nothing dirty or new, nothing allocated and unsent unless held back by an
# exception a person must resolve, every shipped outbound order uploaded.
orders_settled() {
    [ "$(sql "SELECT COUNT(*) FROM orders o WHERE o.fdirty = 1 OR o.fstate = 'new'
        OR (o.fstate = 'allocated' AND NOT EXISTS (SELECT 1 FROM exceptions e
            WHERE e.order_ref = o.id AND e.state <> 'resolved'))")" = 0 ]
}
publish_drained() { [ "$(sql "SELECT COUNT(*) FROM publish WHERE dirty = 1")" = 0 ]; }
notices_sent() { [ "$(sql "SELECT COUNT(*) FROM inbound_notices WHERE state <> 'sent'")" = 0 ]; }
converged() {
    outbox_empty && settled && publish_drained && notices_sent && orders_settled &&
        streams_done && same_orders && for w in "${WHS[@]}"; do same_stock "$w" || return 1; done
}
# wait_converged LIMIT: seconds (tenths) until converged, or empty after LIMIT seconds.
wait_converged() {
    local t0 end
    t0=$(date +%s%N)
    end=$((SECONDS + $1))
    while [ $SECONDS -lt $end ]; do
        if converged; then
            echo $((($(date +%s%N) - t0) / 100000000)) | sed 's/.$/.&/; s/^\./0./'
            return 0
        fi
        sleep 0.3
    done
    return 1
}

# ---------------------------------------------------------------------- the load
stop_file=$tmp/stop
mapfile -t SKUS < <(ctl "$base/control/stock?wh=ES-MAD&format=csv" | tail -n +2 | cut -d, -f1 | head -60)
[ "${#SKUS[@]}" -ge 20 ] || { bad "too few SKUs at the simulator"; exit 1; }
# client N WAREHOUSE SCENARIO: receives (and, client 1, every fifth a transfer into UK-GC of the
# unit it received just before: an ES-MAD leg and an inbound notice) until the stop file
# appears; each acknowledged id goes to acked-N-SCENARIO.
client() {
    local n=0 id s=
    while [ ! -e "$stop_file" ]; do
        n=$((n + 1))
        id=nf-$3-c$1-$n
        if [ "$1" = 1 ] && [ $((n % 5)) = 0 ] && [ -n "$s" ]; then
            t transfer "$s" 1 --from ES-MAD --to UK-GC --id "$id" >/dev/null 2>>"$tmp/client.err" &&
                echo "$id" >>"$tmp/acked-$1-$3"
        else
            s=${SKUS[RANDOM % ${#SKUS[@]}]}
            t receive "$s" 1 --warehouse "$2" --id "$id" >/dev/null 2>>"$tmp/client.err" &&
                echo "$id" >>"$tmp/acked-$1-$3"
        fi
        sleep 0.15
    done
}
# market SCENARIO: a new paid order every 1.5 s; every 3 s each warehouse ships its oldest open
# outbound order (the simulator's clock steps are off: only this moves them).
market() {
    local i=0 w id
    while [ ! -e "$stop_file" ]; do
        post orders '{"count":1}' | jq -r '.created[]' >>"$tmp/orders-$1" 2>/dev/null
        i=$((i + 1))
        if [ $((i % 2)) = 0 ]; then
            for w in "${WHS[@]}"; do
                id=$(ctl "$base/control/outbound?wh=$w" | jq -r '[.items[] | select(.status
                    == "accepted" or .status == "picking" or .status == "packed")][0].id // empty')
                [ -n "$id" ] && post outbound "{\"wh\":\"$w\",\"id\":\"$id\",\"status\":\"shipped\"}" \
                    >/dev/null 2>&1 && echo "$w $id" >>"$tmp/shipped-$1"
            done
        fi
        sleep 1.5
    done
}
start_load() {
    rm -f "$stop_file"
    : >"$tmp/acked-1-$1"
    : >"$tmp/acked-2-$1"
    : >"$tmp/orders-$1"
    : >"$tmp/shipped-$1"
    client 1 ES-MAD "$1" &
    load_pids=($!)
    client 2 PL-WAW "$1" &
    load_pids+=($!)
    market "$1" &
    load_pids+=($!)
}
stop_load() {
    touch "$stop_file"
    for p in "${load_pids[@]}"; do wait "$p" 2>/dev/null; done
    load_pids=()
}

# ---------------------------------------------------------------------- the faults
nft_drop() { # PERCENT (100: a partition)
    local rule="drop"
    [ "$1" -lt 100 ] && rule="numgen random mod 100 < $1 drop"
    nd nft -f - <<EOF
table inet tallynf {
    chain in { type filter hook input priority 0; policy accept; iifname "$VD" $rule; }
    chain out { type filter hook output priority 0; policy accept; oifname "$VD" $rule; }
}
EOF
}
fault_on() {
    case $1 in
    loss) nft_drop 20 ;;
    partition) nft_drop 100 ;;
    throttle)
        nd tc qdisc add dev "$VD" root tbf rate "$RATE" burst 4kb latency 500ms &&
            ns tc qdisc add dev "$VS" root tbf rate "$RATE" burst 4kb latency 500ms
        ;;
    latency) echo "latency 400" >"$tmp/proxy.mode" ;;
    reorder) echo "reorder 1500" >"$tmp/proxy.mode" ;;
    blackhole) echo blackhole >"$tmp/proxy.mode" ;;
    esac
}
fault_off() {
    case $1 in
    loss | partition) nd nft delete table inet tallynf ;;
    throttle) nd tc qdisc del dev "$VD" root && ns tc qdisc del dev "$VS" root ;;
    *) echo pass >"$tmp/proxy.mode" ;;
    esac
}

# ---------------------------------------------------------------------- the checks
# check_all SCENARIO: no duplicated effect anywhere, replica == simulator; prints the row.
check_all() {
    local sc=$1 conv=$2 w
    cat "$tmp"/acked-*-"$sc" | sort >"$tmp/acked-$sc"
    cat "$tmp"/acked-[12]-* | sort >"$tmp/acked-all"
    local sent applied dups=0 n
    sent=$(wc -l <"$tmp/acked-$sc")
    ctl "$base/control/movements" >"$tmp/mov.json"
    # Applied upstream: each id once (a transfer's ES-MAD leg under its id).
    jq -r '.movements | to_entries[] | "\(.key | sub("^transfer:"; "")) \(.value)"' "$tmp/mov.json" |
        sort >"$tmp/mov-counts"
    applied=$(join "$tmp/acked-$sc" "$tmp/mov-counts" | awk '$2 == 1' | wc -l)
    n=$(join "$tmp/acked-all" "$tmp/mov-counts" | awk '$2 > 1' | wc -l)
    dups=$((dups + n))
    check_eq "$(jq .max "$tmp/mov.json")" 1 "$sc: movements applied at most once at the simulator"
    check_eq "$(join -v1 "$tmp/acked-all" "$tmp/mov-counts" | wc -l)" 0 \
        "$sc: acknowledged movements never applied upstream"
    # In the ledger: each acknowledged id once, nothing else of ours.
    sql "SELECT id, COUNT(*) FROM movements WHERE id LIKE 'nf-%' GROUP BY id" | tr '|' ' ' |
        sort >"$tmp/ledger"
    check_eq "$(cut -d' ' -f1 "$tmp/ledger" | diff - "$tmp/acked-all" | grep -c '^[<>]')" 0 \
        "$sc: the ledger's movements == the acknowledged ones"
    n=$(awk '$2 != 1' "$tmp/ledger" | wc -l)
    dups=$((dups + n))
    check_eq "$n" 0 "$sc: movements twice in the ledger"
    # Outbound orders: created once, at one warehouse.
    for w in "${WHS[@]}"; do
        ctl "$base/control/outbound?wh=$w" | jq -r --arg w "$w" '.items[] | "\(.id) \($w) \(.status) \(.create_count)"'
    done >"$tmp/outbound"
    n=$(awk '$4 != 1' "$tmp/outbound" | wc -l)
    dups=$((dups + n))
    check_eq "$n" 0 "$sc: outbound orders created more than once"
    n=$(awk '$3 != "cancelled" { c[$1]++ } END { for (o in c) if (c[o] > 1) n++; print n + 0 }' "$tmp/outbound")
    dups=$((dups + n))
    check_eq "$n" 0 "$sc: orders held at two warehouses"
    # Uploads: each shipped outbound order's tracking number applied once at the marketplace.
    ctl "$base/control/fulfilments" >"$tmp/ful.json"
    check_eq "$(jq '.max_applied_per_tracking <= 1' "$tmp/ful.json")" true \
        "$sc: a tracking number applied twice at the marketplace"
    n=$(jq '[.orders[] | [.[] | select(.result == "applied")] | length | select(. > 1)] | length' "$tmp/ful.json")
    dups=$((dups + n))
    check_eq "$n" 0 "$sc: orders uploaded more than once"
    local shipped_here uploads
    shipped_here=$(sort -u "$tmp/shipped-$sc" | wc -l)
    jq -r '.orders | to_entries[] | "\(.key) \([.value[] | select(.result == "applied")] | length)"' \
        "$tmp/ful.json" | sort >"$tmp/applied"
    uploads=$(awk '{print $2}' "$tmp/shipped-$sc" | sort -u | join - "$tmp/applied" | awk '$2 == 1' | wc -l)
    check_eq "$uploads" "$shipped_here" "$sc: shipped orders uploaded once"
    # Inbound notices (the transfers into UK-GC): one per transfer, each sent.
    check_eq "$(sql "SELECT COUNT(*) FROM inbound_notices WHERE id LIKE 'in-nf-$sc-%'")" \
        "$(grep -- '-c1-' "$tmp/acked-$sc" | awk -F- '$NF % 5 == 0' | wc -l)" \
        "$sc: an inbound notice for each transfer"
    # Replica == simulator: part of convergence (each warehouse's stock, the orders), checked
    # there; after a time-out, say what differs.
    if [ "$conv" = "> $CONVERGE_LIMIT" ]; then
        for w in "${WHS[@]}"; do
            same_stock "$w" || diff "$tmp/sim-$w.csv" "$tmp/rep-$w.csv" | head -4 >&2
        done
        same_orders || diff "$tmp/sim-orders.csv" "$tmp/rep-orders.csv" | head -4 >&2
    fi
    local norders
    norders=$(wc -l <"$tmp/orders-$sc")
    printf '%-10s %7s %12s %9s %9s %7s %8s %8s %5s\n' "$sc" "${DUR[$sc]}" "$conv" "$sent" "$applied" \
        "$norders" "$shipped_here" "$uploads" "$dups" >>"$tmp/table"
}

# ---------------------------------------------------------------------- run
t_start=$SECONDS
round_mark=$(date +%s)
sleep 1.1
if c=$(wait_converged 120); then
    ok
    echo "initial sync over the veth: converged in $c s"
else
    bad "tallyd did not converge after its start (120 s)"
    exit 1
fi
printf '%-10s %7s %12s %9s %9s %7s %8s %8s %5s\n' scenario fault_s converge_s mov_sent \
    mov_applied orders shipped uploads dups >"$tmp/table"
for sc in "${SCENARIOS[@]}"; do
    start_load "$sc"
    sleep 1
    fault_on "$sc" || { bad "$sc: could not set the fault up"; stop_load; continue; }
    sleep "${DUR[$sc]}"
    stop_load
    fault_off "$sc" || bad "$sc: could not remove the fault"
    round_mark=$(date +%s)
    if c=$(wait_converged "$CONVERGE_LIMIT"); then
        ok
    else
        bad "$sc: not converged ${CONVERGE_LIMIT} s after the fault ended"
        c="> $CONVERGE_LIMIT"
        for f in outbox_empty settled publish_drained notices_sent orders_settled streams_done same_orders; do
            $f || echo "  $f: no" >&2
        done
        for w in "${WHS[@]}"; do same_stock "$w" || echo "  same_stock $w: no" >&2; done
    fi
    echo "$sc: ${DUR[$sc]} s of fault, converged ${c} s after it ended (at $((SECONDS - t_start)) s)"
    check_all "$sc" "$c"
done
check_eq "$(sql 'PRAGMA integrity_check')" ok "integrity_check"
echo
echo "network faults (retry_max 5 s, request_timeout 3 s, tbf $RATE; $((SECONDS - t_start)) s in all):"
cat "$tmp/table"
[ -n "$table_file" ] && cp "$tmp/table" "$table_file"
exit 0
