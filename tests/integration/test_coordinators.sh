#!/usr/bin/env bash
# Two coordinators on one account (DESIGN.md "Several stations, one seller"), against one
# tally-sim: station A runs (a coordinator by default) and allocates the paid orders; station B
# is set up from the same example config (the same station name, coordinator by default, other
# allocation rules, so that a second decision would go elsewhere) and started on a replica of
# its own. B must read the warehouses' outbound orders before its first decision, find A's mark
# there, allocate nothing, publish nothing and raise a `coordinator` exception; `status` says
# why. New orders placed while both run are allocated by A alone. No order is ever held at two
# warehouses. A sees nothing of B (B never sent anything), so A raises nothing and goes on.
# Then B is made a non-coordinator (config + restart), as its exception says.
#   test_coordinators.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-coord.XXXXXX)
. "$(dirname "$0")/synclib.sh"
pid_b=
on_exit() {
    local rc=$?
    trap - EXIT
    for p in $tallyd_pid $pid_b; do
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
        { wait "$p"; } 2>/dev/null
    done
    tallyd_pid=
    if [ "$fails" != 0 ]; then
        echo "--- A's log" >&2
        tail -n 15 "$tmp/a.log" >&2
        echo "--- B's log" >&2
        tail -n 15 "$tmp/b.log" >&2
    fi
    sync_cleanup
    [ "$rc" != 0 ] && [ "$fails" = 0 ] && bad "aborted (exit status $rc)"
    [ "$rc" = 0 ] && [ "$fails" != 0 ] && rc=1
    echo "test_coordinators: $((checks - fails)) passed, $fails failed"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

WHS=(ES-MAD FR-PAR PL-WAW US-LAX)
declare -A WHC=([ES-MAD]=ES [FR-PAR]=FR [PL-WAW]=PL [US-LAX]=US)

start_sim --skus 200 --orders 30 --seed 11 --warehouses "$(IFS=,; echo "${WHS[*]}")" \
    --outbound-step-seconds 3600

# conf STATION_DIR STATION_EXTRA ALLOCATION: the example config's station part (name
# ES-MAD-01, coordinator left at its default) and STATION_EXTRA, this simulator's upstreams,
# then the [allocation] section's lines. split = false everywhere: an order at two warehouses
# is then always a second decision, never the parts of one.
conf() {
    echo tally-sim-wh-token >"$tmp/wh.token"
    echo tally-sim-app-secret >"$tmp/app.secret"
    echo tally-sim-access-token >"$tmp/access.token"
    {
        printf '[station]\nname = ES-MAD-01\n%b[sync]\nretry_max = 2\nrequest_timeout = 3\n' "$2"
        for w in "${WHS[@]}"; do
            printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\ncountry = %s\n' \
                "$w" "$base" "$w" "$tmp/wh.token" "${WHC[$w]}"
            printf 'inventory_interval = 2\noutbound_interval = 1\n'
        done
        carriers_conf
        printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
        printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" \
            "$tmp/access.token"
        printf 'catalog_interval = 2\norders_interval = 1\n'
        printf '[allocation]\nsplit = false\n%b' "$3"
    } >"$1/tallyd.conf"
}
# start STATION_DIR LOG: starts tallyd there; prints its pid.
start() {
    "$TALLYD" --config "$1/tallyd.conf" --state-dir "$1/state" --socket "$1/tally.sock" \
        --log-level info >/dev/null 2>>"$2" &
    local p=$!
    for _ in $(seq 400); do
        "$TALLY" --socket "$1/tally.sock" status >/dev/null 2>&1 && { echo $p; return 0; }
        sleep 0.025
    done
    echo "tallyd did not start" >&2
    cat "$2" >&2
    exit 1
}
A=$tmp/a B=$tmp/b
mkdir -p "$A" "$B"
ta() { "$TALLY" --socket "$A/tally.sock" "$@"; }
tb() { "$TALLY" --socket "$B/tally.sock" "$@"; }
sqa() { sqlite3 -readonly "$A/state/replica.db" "$@"; }
sqb() { sqlite3 -readonly "$B/state/replica.db" "$@"; }
# Every order id held at more than one warehouse of the simulator, one a line.
doubles() {
    for w in "${WHS[@]}"; do
        ctl "$base/control/outbound?wh=$w" | jq -r --arg w "$w" '.items[] | "\(.id) \($w)"'
    done | sort -u | awk '{ n[$1]++ } END { for (o in n) if (n[o] > 1) print o }'
}
paid=$(ctl "$base/control/orders?status=WAIT_SELLER_SEND_GOODS" | jq '.count')
# A's allocations settled: A decides (it has read every outbound feed once: before that the
# pass looks at the paid orders and leaves them, so nothing is new, dirty or waiting), no order
# new or to look at, nothing waiting to be sent.
a_settled() {
    ta --json status | jq -e '.coordination.deciding' >/dev/null &&
        [ "$(ta --json status | jq '.outbox.pending')" = 0 ] &&
        [ "$(sqa "SELECT COUNT(*) FROM orders WHERE fdirty = 1 OR fstate = 'new'")" = 0 ] &&
        [ "$(sqa "SELECT COUNT(*) FROM orders")" -ge "$paid" ]
}
sent_a() { sqa "SELECT COUNT(*) FROM outbox WHERE key LIKE 'ob:%' AND state = 'done'"; }

echo "== A: the first station, coordinator by default"
conf "$A" "" ""
tallyd_pid=$(start "$A" "$tmp/a.log")
wait_until 90 a_settled
na=$(sent_a)
echo "A: $paid paid orders at the simulator, $na outbound orders sent"
[ "$na" -gt 0 ] && ok || bad "A sent no outbound order: nothing for B to find"
mark_a=$(ta --json status | jq -r .coordination.mark)
case $mark_a in ES-MAD-01\#????????????????) ok ;; *) bad "A's mark: $mark_a" ;; esac
# The mark is what the warehouses echo.
n_marked=$(for w in "${WHS[@]}"; do ctl "$base/control/outbound?wh=$w"; done |
    jq -s --arg m "$mark_a" '[.[].items[] | select(.station == $m)] | length')
[ "$n_marked" -ge "$na" ] && ok || bad "outbound orders carrying A's mark: $n_marked of $na"

echo "== B: a second station from the same example config, other allocation rules"
conf "$B" "" 'max_distance_km = 100\npriority = US-LAX, PL-WAW, FR-PAR, ES-MAD\n'
pid_b=$(start "$B" "$tmp/b.log")
b_blocked() {
    tb --json status | jq -e '.coordination.deciding == false and
        (.coordination.why | test("another coordinator: station"))' >/dev/null
}
wait_until 60 b_blocked
mark_b=$(tb --json status | jq -r .coordination.mark)
[ "$mark_b" != "$mark_a" ] && ok || bad "A and B share the mark $mark_a"
human=$(tb status)
grep -q "NOT deciding.*another coordinator: station $mark_a" <<<"$human" && ok ||
    bad "B's status does not say why: $(echo "$human" | grep coordination)"
exc=$(tb --json exceptions --kind coordinator | jq '[.items[]]')
[ "$(echo "$exc" | jq length)" = 1 ] && ok || bad "B's coordinator exceptions: $exc"

echo "== new orders while both run"
ctl -X POST -d '{"count": 8}' "$base/control/orders" >/dev/null
paid=$(ctl "$base/control/orders?status=WAIT_SELLER_SEND_GOODS" | jq '.count')
wait_until 60 a_settled
b_knows() { [ "$(sqb "SELECT COUNT(*) FROM orders")" -ge "$paid" ]; }
wait_until 60 b_knows
sleep 3 # B's passes and retry rounds over the new orders (a decision would show by now)
na2=$(sent_a)
[ "$na2" -gt "$na" ] && ok || bad "A sent no outbound order for the new orders ($na2)"
check_eq "$(sqb "SELECT COUNT(*) FROM allocations")" 0 "B's allocations"
check_eq "$(sqb "SELECT COUNT(*) FROM outbox WHERE key LIKE 'ob:%'")" 0 "B's outbound orders"
check_eq "$(sqb "SELECT COUNT(*) FROM publish WHERE published_at IS NOT NULL")" 0 \
    "SKUs published by B"
d=$(doubles)
check_eq "$d" "" "orders held at two warehouses"
# A saw nothing of B: B never sent a thing, so A has no mark of B to find (and must not stop).
check_eq "$(ta --json exceptions --kind coordinator | jq '.items | length')" \
    0 "A's coordinator exceptions"
check_eq "$(ta --json status | jq .coordination.deciding)" true "A decides"
pa=$(sqa "SELECT COUNT(*) FROM publish WHERE published_at IS NOT NULL")
[ "$pa" -gt 0 ] && ok || bad "A published no SKU"

echo "== B made a non-coordinator, as its exception says (config, restart)"
# B is not this shell's child (started in a command substitution): wait for its exit by polling.
kill -TERM "$pid_b"
for _ in $(seq 300); do
    kill -0 "$pid_b" 2>/dev/null || break
    sleep 0.1
done
pid_b=
conf "$B" 'coordinator = false\n' 'max_distance_km = 100\npriority = US-LAX, PL-WAW, FR-PAR, ES-MAD\n'
pid_b=$(start "$B" "$tmp/b.log")
human=$(tb status)
grep -q "coordination.*not the coordinator" <<<"$human" && ok ||
    bad "B's status after the change: $(echo "$human" | grep coordination)"
check_eq "$(sqb "SELECT COUNT(*) FROM allocations")" 0 "B's allocations after the restart"
check_eq "$(doubles)" "" "orders held at two warehouses at the end"
