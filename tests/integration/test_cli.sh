#!/usr/bin/env bash
# Integration: a real tallyd on a temporary state dir, driven by the real tally binary.
#   test_cli.sh TALLYD TALLY TALLY_GEN
# Seeds by import, moves stock, reads it back with and without --json, restarts the daemon
# and checks that everything persisted; checks exit codes and roles from SO_PEERCRED.
set -uo pipefail
TALLYD=$1 TALLY=$2 GEN=$3
tmp=$(mktemp -d /tmp/tally-cli.XXXXXX)
chmod 755 "$tmp"
sock=$tmp/tally.sock
pid=
fails=0 checks=0

cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$1" == "$2" ]; then ok; else bad "$3: expected '$2', got '$1'"; fi; }
expect_match() { if grep -Eq -- "$2" <<<"$1"; then ok; else bad "$3: '$2' not in: $1"; fi; }

start() {
    "$TALLYD" --state-dir "$tmp/state" --socket "$sock" --station CLI-TEST "$@" \
        >>"$tmp/tallyd.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        "$TALLY" --socket "$sock" status >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "tallyd did not start:" >&2
    cat "$tmp/tallyd.log" >&2
    exit 1
}
stop() {
    kill -TERM "$pid"
    wait "$pid"
    local rc=$?
    pid=
    expect_eq "$rc" 0 "tallyd exit status after SIGTERM"
    if [ -e "$sock" ]; then bad "socket left behind after stop"; else ok; fi
}
t() { "$TALLY" --socket "$sock" "$@"; }
j() { "$TALLY" --socket "$sock" --json "$@"; }
jget() { jq -r "$1"; }

# Not running: one line, exit 3.
out=$(t status 2>&1); rc=$?
expect_eq "$rc" 3 "exit code when tallyd is not running"
expect_eq "$(printf '%s\n' "$out" | wc -l)" 1 "one line when tallyd is not running"
expect_match "$out" "not running" "message when tallyd is not running"

"$GEN" --out "$tmp/data" --skus 60 --warehouses 3 --orders 12 --seed 5 >/dev/null || exit 1
start

# Seed by import.
for kind in warehouses catalog stock orders; do
    out=$(t import "$kind" "$tmp/data/$kind.csv" 2>&1); rc=$?
    expect_eq "$rc" 0 "import $kind ($out)"
done
expect_eq "$(j status | jget .replica.skus)" 60 "skus after import"
expect_eq "$(j status | jget .replica.warehouses)" 3 "warehouses after import"
# Importing again updates, inserts nothing.
out=$(t import stock "$tmp/data/stock.csv" 2>&1)
expect_match "$out" "0 inserted" "re-import inserts nothing"

sku=$(sed -n 2p "$tmp/data/catalog.csv" | cut -d, -f1)
wh=$(sed -n 2p "$tmp/data/warehouses.csv" | cut -d, -f1)
wh2=$(sed -n 3p "$tmp/data/warehouses.csv" | cut -d, -f1)
onhand() { j stock "$sku" | jq -r --arg w "$1" '.warehouses[] | select(.warehouse == $w) | .on_hand'; }
before=$(onhand "$wh")
before2=$(onhand "$wh2")
[ -n "$before" ] && ok || bad "no stock row for $sku at $wh"

# Human output names every warehouse and a total.
out=$(t stock "$sku")
expect_match "$out" "$wh" "stock table shows $wh"
expect_match "$out" "TOTAL|Total|total" "stock table shows a total"
expect_eq "$(t sku "$sku" >/dev/null; echo $?)" 0 "tally sku"

# Receive with an id; the same again is a duplicate; different content is a conflict.
out=$(j receive "$sku" 7 --warehouse "$wh" --id cli-r1 --ref PO-1)
expect_eq "$(echo "$out" | jget .duplicate)" false "first receive is not a duplicate"
expect_eq "$(onhand "$wh")" $((before + 7)) "on hand after receive"
out=$(j receive "$sku" 7 --warehouse "$wh" --id cli-r1 --ref PO-1)
expect_eq "$(echo "$out" | jget .duplicate)" true "same id again is a duplicate"
expect_eq "$(onhand "$wh")" $((before + 7)) "duplicate applied nothing"
t receive "$sku" 8 --warehouse "$wh" --id cli-r1 >/dev/null 2>&1
expect_eq "$?" 5 "same id, other qty: exit 5 (conflict)"
out=$(j receive "$sku" 8 --warehouse "$wh" --id cli-r1 2>/dev/null)
expect_eq "$(echo "$out" | jget .error.code)" conflict "conflict code in --json"

# Picking more than there is: refused, exit 5, nothing changed; forced with a reason: allowed.
t pick "$sku" 999999 --warehouse "$wh" >/dev/null 2>&1
expect_eq "$?" 5 "over-pick exit code"
expect_eq "$(onhand "$wh")" $((before + 7)) "over-pick changed nothing"

# Count is stored as a delta against the local view.
j count "$sku" 3 --warehouse "$wh" --id cli-c1 >/dev/null
expect_eq "$(onhand "$wh")" 3 "on hand after count"
out=$(j outbox --limit 1000)
expect_match "$out" "cli-c1" "count is in the outbox"

# Transfer moves stock between two warehouses.
j transfer "$sku" 2 --from "$wh" --to "$wh2" --id cli-t1 >/dev/null
expect_eq "$(onhand "$wh")" 1 "source after transfer"
expect_eq "$(onhand "$wh2")" $((before2 + 2)) "destination after transfer"

# Adjust needs a reason (usage or refusal, not success).
t adjust "$sku" -1 --warehouse "$wh" >/dev/null 2>&1
rc=$?
[ "$rc" = 2 ] || [ "$rc" = 5 ] && ok || bad "adjust without reason: exit $rc"
j adjust "$sku" -1 --warehouse "$wh" --reason "damaged in handling" --id cli-a1 >/dev/null
expect_eq "$(onhand "$wh")" 0 "after adjust"

# Errors: unknown SKU exit 4; usage error exit 2; --help on subcommands.
t stock NO-SUCH-SKU >/dev/null 2>&1
expect_eq "$?" 4 "unknown SKU exit code"
t receive "$sku" notanumber --warehouse "$wh" >/dev/null 2>&1
expect_eq "$?" 2 "bad quantity is a usage error"
t frobnicate >/dev/null 2>&1
expect_eq "$?" 2 "unknown command exit code"
for cmd in status sku stock receive pick count adjust transfer orders outbox import; do
    t "$cmd" --help >/dev/null 2>&1
    expect_eq "$?" 0 "tally $cmd --help"
done

# Lists, paged.
n=$(j stock list --all | jq 'if type == "array" then length else (.items | length) end')
[ "$n" -gt 100 ] && ok || bad "stock list --all returned $n rows"
out=$(t orders --limit 5)
expect_match "$out" "[A-Z]{2}" "orders table"
oid=$(sed -n 2p "$tmp/data/orders.csv" | cut -d, -f1)
expect_eq "$(j orders show "$oid" | jget .order_id)" "$oid" "orders show"
expect_match "$(j orders show "$oid" | jq -c .ship_to)" "name" "root sees ship_to"

# Restart: everything persisted.
snap_stock=$(j stock "$sku")
snap_outbox=$(j outbox --limit 1000 | jq -c '.items | map(.key)')
stop
start
expect_eq "$(j stock "$sku")" "$snap_stock" "stock identical after restart"
expect_eq "$(j outbox --limit 1000 | jq -c '.items | map(.key)')" "$snap_outbox" "outbox identical after restart"
expect_eq "$(j receive "$sku" 7 --warehouse "$wh" --id cli-r1 --ref PO-1 | jget .duplicate)" true \
    "ids remembered across restarts"
stop

# Roles come from SO_PEERCRED: 'nobody' is a reader unless in the writer group.
printf '[station]\nsocket_mode = 0666\nwriter_group = daemon\n' >"$tmp/open.conf"
chmod 600 "$tmp/open.conf" # tallyd refuses a config file others may read
start --config "$tmp/open.conf"
as_nobody() { setpriv --reuid=nobody --regid=nogroup "$@"; }
out=$(as_nobody --clear-groups "$TALLY" --socket "$sock" --json stock "$sku")
expect_eq "$(echo "$out" | jget .sku)" "$sku" "a reader can query"
as_nobody --clear-groups "$TALLY" --socket "$sock" receive "$sku" 1 --warehouse "$wh" >/dev/null 2>&1
expect_eq "$?" 6 "a reader may not write"
expect_eq "$(as_nobody --clear-groups "$TALLY" --socket "$sock" --json orders show "$oid" | jq -c .ship_to)" \
    null "a reader does not see buyer addresses"
out=$(as_nobody --groups="$(getent group daemon | cut -d: -f3)" "$TALLY" --socket "$sock" --json \
    receive "$sku" 1 --warehouse "$wh" --id cli-nobody-1)
expect_eq "$(echo "$out" | jget .duplicate)" false "a member of writer_group (supplementary) may write"
stop

echo "test_cli: $checks checks, $fails failed"
[ "$fails" = 0 ]
