#!/usr/bin/env bash
# Warehouse kinds at the station (issue 9 B.3), against tally-sim with a tally warehouse
# (ES-MAD) and a Goodcang one (UK-GC):
#   1. `tally status` shows each upstream's kind and capabilities;
#   2. a local receive / pick / adjust / count / return at UK-GC is refused before anything is
#      written, saying why and what to do instead (exit 5);
#   3. a transfer ES-MAD -> UK-GC records the ES-MAD leg alone (sent to ES-MAD as a movement,
#      never booked into UK-GC by ES-MAD's system) and an inbound notice for UK-GC in the same
#      write (outbox kind inbound), which the Goodcang connector sends (create_grn; the
#      connector's own test covers lost answers); a transfer out of UK-GC is refused;
#      the notice carries the coordinator's mark, echoed in the GRN list's remark;
#   4. `tally inbound create` / `tally inbound list`: idempotent by id, refused for a tally
#      warehouse.
#   test_kinds.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-kinds.XXXXXX)
. "$(dirname "$0")/synclib.sh"
on_exit() {
    local rc=$?
    trap - EXIT
    sync_cleanup
    [ "$rc" = 0 ] && [ "$fails" != 0 ] && rc=1
    [ "$rc" != 0 ] && [ "$fails" = 0 ] && echo "FAIL: aborted (exit status $rc)" >&2
    echo "test_kinds: $((checks - fails)) passed, $fails failed"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }
# expect_refused CODE_PATTERN MESSAGE_PATTERN... -- COMMAND...: exit 5 and stderr matching.
expect_refused() {
    local pats=()
    while [ "$1" != -- ]; do pats+=("$1"); shift; done
    shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" != 5 ]; then
        bad "$*: exit $rc, expected 5 (refused): $(cat "$tmp/err")"
        return
    fi
    ok
    for p in "${pats[@]}"; do
        if grep -qF -- "$p" "$tmp/err"; then ok; else bad "$*: message lacks '$p': $(cat "$tmp/err")"; fi
    done
}

start_sim --skus 20 --orders 0 --seed 9 --warehouses ES-MAD:tally,UK-GC:goodcang
echo tally-sim-wh-token >"$tmp/wh.token"
{
    printf '[station]\nname = KINDS-TEST\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
    printf '[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = %s\n' "$base" "$tmp/wh.token"
    printf 'inventory_interval = 1\noutbound_interval = 5\n'
    printf '[warehouse UK-GC]\nkind = goodcang\nurl = %s/wh/UK-GC\n' "$base"
    printf 'app_key = tally-sim-3pl-key\napp_token_file = %s\n' "$tmp/wh.token"
    printf 'inventory_interval = 5\noutbound_interval = 5\n'
} >"$tmp/tallyd.conf"
start_tallyd
stock_known() { [ "$(sql "SELECT COUNT(*) FROM stock t JOIN warehouses w ON w.id = t.warehouse
    WHERE w.code = 'ES-MAD' AND t.snapshot >= 5")" -gt 0 ]; }
wait_until 60 stock_known || exit 1
S=$(sql "SELECT k.code FROM stock t JOIN skus k ON k.id = t.sku JOIN warehouses w
    ON w.id = t.warehouse WHERE w.code = 'ES-MAD' AND t.snapshot >= 5 ORDER BY k.code LIMIT 1")
[ -n "$S" ] || { bad "no SKU with stock at ES-MAD"; exit 1; }

# ---- 1. status: kinds and capabilities
up() { st | jq -r --arg n "$1" ".upstreams[] | select(.name == \$n) | $2"; }
check_eq "$(up wh:UK-GC .kind)" goodcang "UK-GC's kind in status --json"
check_eq "$(up wh:ES-MAD .kind)" tally "ES-MAD's kind in status --json"
check_eq "$(up wh:UK-GC '.capabilities | index("inbound_notice") != null')" true \
    "UK-GC takes inbound notices"
check_eq "$(up wh:UK-GC '.capabilities | index("movements") != null')" false \
    "UK-GC takes no movements"
check_eq "$(up wh:ES-MAD '.capabilities | index("movements") != null')" true \
    "ES-MAD takes movements"
t status >"$tmp/status.txt" 2>&1
if grep -E '^wh:UK-GC +goodcang +inbound_notice' "$tmp/status.txt" >/dev/null &&
    grep -E '^wh:ES-MAD +tally +movements' "$tmp/status.txt" >/dev/null; then ok; else
    bad "tally status does not show kinds and capabilities: $(cat "$tmp/status.txt")"
fi

# ---- 2. local movements at UK-GC are refused, nothing written
counts() { sql "SELECT (SELECT COUNT(*) FROM movements), (SELECT COUNT(*) FROM outbox),
    (SELECT COALESCE(SUM(pending), 0) FROM stock)"; }
before=$(counts)
expect_refused "stock at UK-GC is kept by Goodcang (kind goodcang)" \
    "cannot record a receive there" "tally inbound create --warehouse UK-GC" \
    "its stock comes from Goodcang's feed" -- t receive "$S" 5 --warehouse UK-GC
expect_refused "stock at UK-GC is kept by Goodcang" "cannot record a pick there" \
    "outbound orders" -- t pick "$S" 1 --warehouse UK-GC
expect_refused "stock at UK-GC is kept by Goodcang" "cannot record an adjust there" \
    -- t adjust "$S" -1 --warehouse UK-GC --reason broken
expect_refused "stock at UK-GC is kept by Goodcang" "cannot record a count there" \
    -- t count "$S" 3 --warehouse UK-GC
expect_refused "cannot record a return there" -- t return "$S" 1 --warehouse UK-GC
expect_refused "cannot record a return there" -- t returns receive "$S" 1 --warehouse UK-GC
expect_refused "transfer out of it" "outbound order" \
    -- t transfer "$S" 1 --from UK-GC --to ES-MAD
check_eq "$(counts)" "$before" "refused writes left movements, outbox and stock as they were"
# --json: the same refusal as a document
t --json receive "$S" 5 --warehouse UK-GC >"$tmp/out" 2>/dev/null
check_eq "$(jq -r .error.code "$tmp/out")" invalid_params "receive at UK-GC: error code (--json)"

# ---- 3. a transfer into UK-GC: the ES-MAD leg and an inbound notice
gc_sim_before=$(ctl "$base/control/stock?wh=UK-GC&format=csv" | awk -F, -v s="$S" '$1 == s {print $2}')
mad_before=$(sql "SELECT t.snapshot + t.pending FROM stock t JOIN skus k ON k.id = t.sku
    JOIN warehouses w ON w.id = t.warehouse WHERE w.code = 'ES-MAD' AND k.code = '$S'")
t transfer "$S" 3 --from ES-MAD --to UK-GC --id tr-kinds-1 >"$tmp/out" 2>"$tmp/err"
check_eq "$?" 0 "transfer ES-MAD -> UK-GC: exit status ($(cat "$tmp/err"))"
if grep -q "inbound notice in-tr-kinds-1" "$tmp/out"; then ok; else
    bad "transfer output does not name the inbound notice: $(cat "$tmp/out")"
fi
check_eq "$(sql "SELECT w.code || ',' || m.delta FROM movements m JOIN warehouses w
    ON w.id = m.warehouse WHERE m.id = 'tr-kinds-1' ORDER BY m.leg" | tr '\n' ' ')" \
    "ES-MAD,-3 " "the transfer's legs: ES-MAD's alone"
check_eq "$(sql "SELECT COALESCE(SUM(t.pending), 0) FROM stock t JOIN warehouses w
    ON w.id = t.warehouse WHERE w.code = 'UK-GC'")" 0 "nothing pending at UK-GC (its feed counts it)"
check_eq "$(sql "SELECT kind || ',' || target FROM outbox WHERE key = 'tr-kinds-1'")" \
    "movement,wh:ES-MAD" "the ES-MAD leg goes to ES-MAD as a movement"
check_eq "$(sql "SELECT kind || ',' || target || ',' || entity || ',' || state FROM outbox
    WHERE key = 'in:UK-GC:in-tr-kinds-1'" | sed -E 's/,(done|inflight)$/,pending/')" \
    "inbound,wh:UK-GC,in-tr-kinds-1,pending" "the inbound notice's outbox row (pending, in flight or sent)"
check_eq "$(sql "SELECT n.ref || ',' || n.from_wh || ',' || k.code || ',' || l.qty
    FROM inbound_notices n JOIN inbound_lines l ON l.notice = n.seq JOIN skus k ON k.id = l.sku
    WHERE n.id = 'in-tr-kinds-1'")" "tr-kinds-1,ES-MAD,$S,3" "the inbound notice"
notice_sent() { [ "$(sql "SELECT state FROM inbound_notices WHERE id = '$1'")" = sent ]; }
wait_until 60 notice_sent in-tr-kinds-1
check_eq "$(sql "SELECT state FROM outbox WHERE key = 'in:UK-GC:in-tr-kinds-1'")" done \
    "the notice's outbox row is done once Goodcang took it"
# This station is the coordinator (the default): the notice carries its mark (coord.h), which
# Goodcang echoes in the GRN list's remark (create_grn's receiving_desc).
mark=$(st | jq -r .coordination.mark)
grn_remark=$(ctl -X POST -H 'app-key: tally-sim-3pl-key' -H 'app-token: tally-sim-wh-token' \
    -H 'Content-Type: application/json' -d '{"page":1,"pageSize":100}' \
    "$base/wh/UK-GC/public_open/inbound_order/get_grn_list" |
    jq -r '.data[] | select(.reference_no == "in-tr-kinds-1") | .remark')
case $grn_remark in
*"; tally coordinator $mark") ok ;;
*) bad "the GRN's remark does not end with the coordinator's mark $mark: '$grn_remark'" ;;
esac
# The same transfer again (a retry): nothing new.
t transfer "$S" 3 --from ES-MAD --to UK-GC --id tr-kinds-1 >/dev/null 2>&1
check_eq "$(sql "SELECT COUNT(*) FROM inbound_notices")" 1 "a repeated transfer makes no second notice"
# The ES-MAD leg reaches ES-MAD and settles; UK-GC's stock at the simulator is untouched.
mad_settled() { [ "$(sql "SELECT state FROM movements WHERE id = 'tr-kinds-1'")" = settled ]; }
wait_until 60 mad_settled
check_eq "$(sql "SELECT t.snapshot + t.pending FROM stock t JOIN skus k ON k.id = t.sku
    JOIN warehouses w ON w.id = t.warehouse WHERE w.code = 'ES-MAD' AND k.code = '$S'")" \
    "$((mad_before - 3))" "ES-MAD's on hand after the transfer"
check_eq "$(ctl "$base/control/stock?wh=UK-GC&format=csv" | awk -F, -v s="$S" '$1 == s {print $2}')" \
    "$gc_sim_before" "UK-GC's stock at the warehouse is not booked by ES-MAD's system"
compare_stock ES-MAD

# ---- 4. tally inbound create / list
t inbound create --warehouse UK-GC --sku "$S" --qty 10 --sku "$S-X" --qty 1 --id in-kinds-2 \
    >/dev/null 2>"$tmp/err"
check_eq "$?" 4 "a notice with an unknown SKU: not found ($(cat "$tmp/err"))"
S2=$(sql "SELECT code FROM skus WHERE code <> '$S' ORDER BY code LIMIT 1")
t inbound create --warehouse UK-GC --sku "$S" --qty 10 --sku "$S2" --qty 4 --eta 2030-01-02 \
    --ref PO-1 --note "first lot" --id in-kinds-2 >"$tmp/out" 2>"$tmp/err"
check_eq "$?" 0 "inbound create ($(cat "$tmp/err"))"
t --json inbound create --warehouse UK-GC --sku "$S" --qty 10 --sku "$S2" --qty 4 \
    --id in-kinds-2 >"$tmp/out" 2>/dev/null
check_eq "$(jq -r .duplicate "$tmp/out")" true "the same notice id again: a duplicate"
expect_refused "already used for a different notice" \
    -- t inbound create --warehouse UK-GC --sku "$S" --qty 11 --id in-kinds-2
expect_refused "takes no inbound notices" "tally receive" \
    -- t inbound create --warehouse ES-MAD --sku "$S" --qty 1
t inbound create --warehouse UK-GC --sku "$S" --sku "$S2" --qty 1 >/dev/null 2>"$tmp/err"
check_eq "$?" 2 "a --sku without its --qty: a usage error"
if grep -q "needs its --qty" "$tmp/err"; then ok; else bad "usage error lacks why: $(cat "$tmp/err")"; fi
t --json inbound list --warehouse UK-GC >"$tmp/list" 2>"$tmp/err"
check_eq "$(jq -r '[.items[].id] | join(",")' "$tmp/list")" "in-tr-kinds-1,in-kinds-2" \
    "inbound list --warehouse UK-GC"
check_eq "$(jq -r '.items[1] | [.ref, .note, (.lines | length)] | join(",")' "$tmp/list")" \
    "PO-1,first lot,2" "the created notice in the list"
wait_until 60 notice_sent in-kinds-2
check_eq "$(sql "SELECT kind || ',' || state FROM outbox WHERE key = 'in:UK-GC:in-kinds-2'")" \
    "inbound,done" "the created notice's outbox row"
t inbound --warehouse UK-GC >"$tmp/out" 2>&1
if grep -q "in-kinds-2 *UK-GC *sent" "$tmp/out"; then ok; else
    bad "tally inbound does not list the notice: $(cat "$tmp/out")"
fi
