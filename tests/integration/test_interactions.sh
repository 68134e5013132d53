#!/usr/bin/env bash
# The randomized interaction test: one tallyd against tally-sim, driven by a seeded generator of
# interleaved operations (the OPS table), checked after every step, at checkpoints and at the end
# against the invariants of the INVARIANTS table. tests/README.md describes it.
#
#   test_interactions.sh TALLYD TALLY TALLY_SIM INTERACT_RPC [--seed S]... [--steps N]
#                        [--check-every K] [--skip-op OP]... [--print-plan] [--verbose]
#                        [--plan FILE]
#
# Several --seed run one after the other (each with its own simulator and tallyd). The op
# sequence is a function of the seed and the step count only: the plan is generated before
# anything runs, so the same --seed and --steps replay the same sequence (timing may differ).
# --skip-op OP (repeatable) leaves an op class out while a known defect is being fixed; the plan
# is still generated whole, the skipped steps are only not executed. Steps default to
# $TALLY_INTERACTION_STEPS, else 60. --plan FILE runs a plan written by hand (or a shortened
# --print-plan output: lines "OP ARGS...", or "SEED STEP OP ARGS..."), to narrow a failure down. Exit status 0 when every invariant held, 1 otherwise.
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3 RPC=$4
shift 4
SEEDS=() STEPS=${TALLY_INTERACTION_STEPS:-60} CHECK_EVERY=25 SKIP=" " PRINT_PLAN= VERBOSE= PLAN_FILE=
while [ $# -gt 0 ]; do
    case $1 in
    --seed) SEEDS+=("$2"); shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --check-every) CHECK_EVERY=$2; shift 2 ;;
    --skip-op) SKIP+="$2 "; shift 2 ;;
    --print-plan) PRINT_PLAN=1; shift ;;
    --plan) PLAN_FILE=$2; shift 2 ;;
    --verbose) VERBOSE=1; shift ;;
    *) echo "test_interactions: unknown option $1" >&2; exit 2 ;;
    esac
done
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(1)
HERE=$(cd "$(dirname "$0")" && pwd)

WHS=(ES-MAD FR-PAR PL-WAW US-LAX)
declare -A WHC=([ES-MAD]=ES [FR-PAR]=FR [PL-WAW]=PL [US-LAX]=US)
WH_KINDS=(receive pick adjust count)

# ============================================================================ the generator
# splitmix64 in bash arithmetic (64-bit, wrapping; logical shifts by masking): the plan depends
# on the seed alone, not on bash's RANDOM.
rng_state=0
rnd() { # rnd N: R in [0, N)
    rng_state=$((rng_state - 7046029254386353131)) # + 0x9E3779B97F4A7C15
    local z=$rng_state
    z=$(((z ^ ((z >> 30) & 0x3FFFFFFFF)) * -4658895280553007687))
    z=$(((z ^ ((z >> 27) & 0x1FFFFFFFFF)) * -7723592293110705685))
    z=$((z ^ ((z >> 31) & 0x1FFFFFFFF)))
    R=$(((z & 0x7FFFFFFF) % $1))
}

# The ops: name and weight. gen_NAME prints the step's arguments (drawing only from rnd, so the
# plan is a function of the seed); exec_NAME ARGS performs it. SKUs and warehouses are named by
# index into HOT and WHS, resolved when the step runs.
OPS=(
    "move_id 14"       # receive/pick/adjust/count with a caller's id (sometimes sent twice)
    "move_noid 6"      # the same without an id (the client makes one)
    "transfer 5"       # a transfer with an id
    "import_orders 4"  # a CSV of finished orders with buyer data, or an earlier CSV again
    "mp_order 8"       # new paid orders at the marketplace
    "mp_cancel 4"      # a buyer cancels (again: the order is touched and pulled again)
    "wh_change 5"      # the warehouse's own stock changes
    "advance 7"        # simulated time passes: outbound orders progress and ship
    "discard 6"        # outbox discard, preferring rows already attempted
    "retry 3"          # outbox retry
    "watch_write 5"    # watch + pipelined writes on one raw connection
    "purge 3"          # tally purge --older-than 0
    "kill9 3"          # kill -9 tallyd and restart it
    "fault 8"          # a fault: lost answers, 503s, resets, latency
    "link_down 3"      # an upstream becomes unreachable
    "link_up 4"        # and comes back
    "disk_full 2"      # the state dir's filesystem fills while a push is in flight
    "safety 2"         # safety stock changes
    "pause 4"          # real time passes: tallyd's rounds and retries run between two ops
)
NHOT=6

gen_move_id() { rnd 4; local k=$R; rnd $NHOT; local s=$R; rnd 4; local w=$R; rnd 5; local q=$((R + 1))
    rnd 4; echo "$k $s $w $q $R"; }
gen_move_noid() { rnd 3; local k=$R; rnd $NHOT; local s=$R; rnd 4; local w=$R; rnd 4; echo "$k $s $w $((R + 1))"; }
gen_transfer() { rnd $NHOT; local s=$R; rnd 4; local w=$R; rnd 3; local to=$(((w + 1 + R) % 4)); rnd 3
    echo "$s $w $to $((R + 1))"; }
gen_import_orders() { rnd 3; if [ $R = 0 ]; then rnd 1000; echo "again $R"; else
    rnd 3; local n=$((R + 1)); rnd $NHOT; echo "new $n $R"; fi; }
gen_mp_order() { rnd 2; local mode=$R; rnd $NHOT; local s=$R; rnd 3; echo "$mode $s $((R + 1))"; }
gen_mp_cancel() { rnd 1000; echo "$R"; }
gen_wh_change() { rnd 3; local mode=$R; rnd $NHOT; local s=$R; rnd 4; local w=$R; rnd 10
    local d=$((R - 4)); [ $d = 0 ] && d=-2; echo "$mode $s $w $d"; }
gen_advance() { rnd 90; echo "$((R + 20))"; }
gen_discard() { rnd 1000; echo "$R"; }
gen_retry() { rnd 1000; echo "$R"; }
gen_watch_write() {
    rnd 4; local n=$((R + 2)) i out=""
    rnd $NHOT; local s=$R; rnd 4; local w=$R
    out="$s $w"
    for ((i = 0; i < n; i++)); do rnd 3; local k=$R; rnd 2; local q=$((R + 1)); out+=" $k:$q"; done
    echo "$out"
}
gen_purge() { echo; }
gen_kill9() { echo; }
FAULTS=(
    'wh:W|{"target":"wh:W","call":"movements","kind":"lost_answer","count":C}'
    'wh:W|{"target":"wh:W","call":"outbound.create","kind":"lost_answer","count":C}'
    'wh:W|{"target":"wh:W","call":"outbound.cancel","kind":"lost_answer","count":C}'
    'wh:W|{"target":"wh:W","call":"transfers","kind":"lost_answer","count":C}'
    'mp|{"target":"mp","call":"aliexpress.solution.order.fulfill","kind":"lost_answer","count":C}'
    'mp|{"target":"mp","call":"aliexpress.solution.batch.product.inventory.update","kind":"status","status":503,"retry_after":1,"count":C}'
    'wh:W|{"target":"wh:W","call":"outbound.list","kind":"reset","count":C}'
    'wh:W|{"target":"wh:W","call":"movements","latency_ms":1200,"count":C}'
)
gen_fault() { rnd ${#FAULTS[@]}; local f=$R; rnd 4; local w=$R; rnd 5; echo "$f $w $((R + 1))"; }
gen_link_down() { rnd 5; echo "$R"; }
gen_link_up() { echo; }
gen_disk_full() { rnd $NHOT; local s=$R; rnd 4; echo "$s $R"; }
gen_pause() { rnd 3; echo "$((R + 1))"; }
gen_safety() { rnd $NHOT; local s=$R; rnd 4; local w=$R; rnd 4; echo "$s $w $R"; }

# make_plan SEED STEPS: PLAN[i] = "OP ARGS..." for steps 1..STEPS.
make_plan() {
    rng_state=$(($1 * 2654435761 + 88172645463325252))
    local total=0 e i name wt
    for e in "${OPS[@]}"; do total=$((total + ${e#* })); done
    PLAN=()
    for ((i = 1; i <= $2; i++)); do
        rnd $total
        local r=$R
        for e in "${OPS[@]}"; do
            name=${e% *} wt=${e#* }
            [ $r -lt "$wt" ] && break
            r=$((r - wt))
        done
        PLAN[i]="$name $(gen_"$name")"
    done
}

# ============================================================================ talking to both
# sql, post, cli, viol and the checks: invariants.sh.
. "$HERE/invariants.sh"
note() { [ -n "$VERBOSE" ] && echo "  [$step] $*"; return 0; }

# ============================================================================ the invariants
INVARIANTS=(
    "responses_well_formed|every response well-formed and answering its request (msgid, result shape, no internal error)"
    "no_double_shipment|no order shipped by two warehouses (more units out than ordered) or uploaded twice; orders show lists every shipment"
    "exactly_once|every acknowledged movement applied upstream at most once, and exactly once at the end unless discarded"
    "published_le_available|every published marketplace value <= truly available stock (at quiescent checkpoints)"
    "purged_never_back|purged buyer data never back: not in the orders table, the database or WAL bytes, or orders show"
    "converges|at the end (faults off, links up, sync) the replica's stock equals the upstreams', nothing left pending"
)

# check_responses_well_formed MODE: the violations were recorded as the steps ran (cli, rpc).
check_responses_well_formed() { :; }

# Markers: the buyer data (address, phone) of every order tallyd purged; $tmp/markers.
check_purged_never_back() {
    local n
    n=$(sql "SELECT group_concat(order_id, ' ') FROM orders WHERE purged_at IS NOT NULL AND
        (buyer_name IS NOT NULL OR address IS NOT NULL OR city IS NOT NULL OR postcode IS NOT NULL
         OR phone IS NOT NULL)")
    [ -z "$n" ] || viol purged_never_back "purged orders with buyer data again: ${n:0:200}"
    [ -s "$tmp/markers" ] || return 0
    # Data still legitimately held by an order not purged (generated data may repeat) is no proof.
    sql "SELECT address FROM orders WHERE purged_at IS NULL AND address IS NOT NULL
         UNION SELECT phone FROM orders WHERE purged_at IS NULL AND phone IS NOT NULL" >"$tmp/legit"
    local m
    sort -u "$tmp/markers" | while IFS= read -r m; do
        grep -qF -- "$m" "$tmp/legit" || printf '%s\n' "$m"
    done >"$tmp/markers.eff"
    [ -s "$tmp/markers.eff" ] || return 0
    local f found=""
    for f in "$tmp/state/replica.db" "$tmp/state/replica.db-wal"; do
        [ -f "$f" ] || continue
        n=$(grep -a -o -F -f "$tmp/markers.eff" "$f" | sort -u | head -3 | paste -sd, -)
        [ -z "$n" ] || found+=" ${f##*/}: $n;"
    done
    [ -z "$found" ] || viol purged_never_back "purged buyer data back in the bytes of$found"
    if [ "$1" != step ]; then
        local o
        for o in $(head -20 "$tmp/purged_ids"); do
            cli orders show "$o"
            jq -e '(.ship_to.name // null) == null and (.ship_to.address // null) == null and
                (.ship_to.phone // null) == null' "$tmp/out.json" >/dev/null ||
                viol purged_never_back "orders show $o: $(jq -c .ship_to "$tmp/out.json")"
        done
    fi
}

check_converges() {
    [ "$1" = final ] || return 0
    # The warehouses' clocks keep running (outbound orders ship): compare after a round, a few
    # times, before calling a difference a failure.
    local i
    for i in 1 2 3 4 5; do
        same_stock && break
        mark_rounds
        t sync >/dev/null 2>&1
        wait_until 30 streams_done >/dev/null 2>&1
    done
    same_stock || viol converges "replica (>) vs simulator (<), sku,on_hand,version: $(paste -sd' ' "$tmp/stockdiff")"
    local p
    p=$(sql "SELECT count(*) FROM stock WHERE pending <> 0")
    [ "$p" = 0 ] || viol converges "$p stock rows still with a pending overlay"
    cli status
    p=$(jq '.outbox.pending' "$tmp/out.json")
    [ "$p" = 0 ] || viol converges "outbox still has $p pending rows"
    local held
    held=$(jq '.outbox.held' "$tmp/out.json")
    cli outbox --state held --all
    # Held by design, not a failure to converge: a cancel the warehouse refused because the
    # order had shipped (409), with the order's cancelled-after-pick exception open for the
    # operator (conn_wms.c, fulfil.c). Any other held row is. The rows are matched by their
    # entity (the order id) against the orders with that exception open, in jq: no SQL is
    # built from an order id. A listing that failed, or that misses rows the status counts,
    # fails the check too (a missing listing would otherwise read as nothing held).
    sql -json "SELECT o.order_id FROM exceptions e JOIN orders o ON o.id = e.order_ref
        WHERE e.kind = 'cancelled_after_pick' AND e.state = 'open'" >"$tmp/cap.json"
    p=$(jq -r --slurpfile cap "$tmp/cap.json" --argjson held "${held:-null}" '
        ($cap | add // [] | map(.order_id)) as $ok
        | if .error != null or (.items | type) != "array" then
            "the held rows could not be listed: \(.error // "no items")"
          elif (.items | length) != $held then
            "status counts \($held) held rows, the listing has \(.items | length)"
          else
            [.items[] | select((.kind == "outbound_cancel"
                and ((.last_error // "") | contains("HTTP 409"))
                and (.entity as $e | any($ok[]; . == $e))) | not)
              | "\(.key): \(.last_error)"]
            | if length > 0 then "outbox has \(length) held rows: \(.[:4] | join("; "))"
              else empty end
          end' "$tmp/out.json" 2>&1)
    [ -z "$p" ] || viol converges "$p"
}

# check_all MODE (step | checkpoint | final): every invariant; a violation ends the run.
check_all() {
    local e
    for e in "${INVARIANTS[@]}"; do "check_${e%%|*}" "$1"; done
    if [ ${#VIOL[@]} -gt 0 ]; then
        for e in "${VIOL[@]}"; do
            echo "VIOLATION seed $SEED step $step ($1${LAST_OP:+, after op: $LAST_OP}): invariant ${e%%|*}: ${e#*|}" >&2
        done
        echo "replay: $0 TALLYD TALLY TALLY_SIM INTERACT_RPC --seed $SEED --steps $STEPS" \
            "--check-every $CHECK_EVERY$(for o in $SKIP; do printf ' --skip-op %s' "$o"; done)" >&2
        return 1
    fi
    return 0
}

# ============================================================================ the executors
hot() { S=${HOT[$1]}; }
# record_move KEY: an acknowledged movement, expected upstream exactly once.
record_move() { echo "$1" >>"$tmp/acked"; }
move_cmd() { # KIND SKU WH QTY -> CMD array
    case $1 in
    receive) CMD=(receive "$2" "$4" --warehouse "$3") ;;
    pick) CMD=(pick "$2" "$4" --warehouse "$3") ;;
    adjust) CMD=(adjust "$2" "$(($4 % 2 ? -$4 : $4))" --warehouse "$3" --reason "interaction step $step") ;;
    count)
        cli stock "$2"
        local oh
        oh=$(jq --arg w "$3" '[.warehouses[]? | select(.warehouse == $w) | .on_hand][0] // 0' "$tmp/out.json")
        oh=$((oh + $4 - 3))
        [ $oh -lt 0 ] && oh=0
        CMD=(count "$2" "$oh" --warehouse "$3") ;;
    esac
}
# judge_move ID: after cli; records an acknowledged movement (nonzero delta) and checks that the
# answer is for this movement.
judge_move() {
    [ "$CLI_RC" = 0 ] || return 0
    local id
    id=$(jq -r '.id // ""' "$tmp/out.json")
    if [ -n "$1" ] && [ "$id" != "$1" ]; then
        viol responses_well_formed "stock.move $1 answered for id '$id'"
        return
    fi
    [ -n "$id" ] || { viol responses_well_formed "stock.move answered without an id"; return; }
    if jq -e '[.movements[]?.delta] | any(. != 0)' "$tmp/out.json" >/dev/null; then
        case ${CMD[0]} in transfer) record_move "transfer:$id" ;; *) record_move "$id" ;; esac
    fi
}

exec_move_id() {
    hot "$2"
    local id="m$SEED-$step"
    move_cmd "${WH_KINDS[$1]}" "$S" "${WHS[$3]}" "$4"
    CMD+=(--id "$id")
    cli "${CMD[@]}"
    judge_move "$id"
    if [ "$CLI_RC" = 0 ] && [ "$5" = 0 ] && [ "${CMD[0]}" != count ]; then # a retry
        cli "${CMD[@]}"
        [ "$CLI_RC" != 0 ] || jq -e '.duplicate == true' "$tmp/out.json" >/dev/null ||
            viol responses_well_formed "movement $id sent again not answered as a duplicate: $(head -c 300 "$tmp/out.json")"
    fi
    note "${CMD[*]} -> $CLI_RC $CLI_CODE"
}
exec_move_noid() {
    hot "$2"
    move_cmd "${WH_KINDS[$1]}" "$S" "${WHS[$3]}" "$4"
    cli "${CMD[@]}"
    judge_move ""
    note "${CMD[*]} -> $CLI_RC $CLI_CODE"
}
exec_transfer() {
    hot "$1"
    local id="t$SEED-$step"
    CMD=(transfer "$S" "$4" --from "${WHS[$2]}" --to "${WHS[$3]}" --id "$id")
    cli "${CMD[@]}"
    judge_move "$id"
    note "${CMD[*]} -> $CLI_RC $CLI_CODE"
}
exec_import_orders() {
    local f
    if [ "$1" = again ] && [ ${#IMPORTS[@]} -gt 0 ]; then
        f=${IMPORTS[$2 % ${#IMPORTS[@]}]}
    else
        local n=${2:-1} k=${3:-0} i
        [ "$1" = again ] && n=1
        f="$tmp/imp-$step.csv"
        hot "$k"
        {
            echo "order_id,status,created_at,ship_by,country,currency,sku,qty,price_minor,service,buyer_name,address,city,postcode,phone"
            for ((i = 1; i <= n; i++)); do
                echo "IMP-$SEED-$step-$i,FINISH,$(($(date +%s) - 40 * 86400)),,ES,USD,$S,1,999,CAINIAO_STANDARD,Buyer S${SEED}x$step-$i,Calle Prueba $SEED-$step-$i,Madrid,28013,+3460$SEED$step$i"
            done
        } >"$f"
        IMPORTS+=("$f")
    fi
    cli import orders "$f"
    [ "$CLI_RC" = 0 ] || viol responses_well_formed "import orders ${f##*/} refused: $(jq -c . "$tmp/out.json")"
    note "import orders ${f##*/} -> $CLI_RC"
}
exec_mp_order() {
    hot "$2"
    local body
    if [ "$1" = 0 ]; then body="{\"count\":1,\"sku\":\"$S\",\"qty\":$3}"; else body="{\"count\":$3}"; fi
    CREATED+=($(post orders "$body" | jq -r '.created[]'))
    note "orders $body"
}
exec_mp_cancel() {
    [ ${#CREATED[@]} -gt 0 ] || return 0
    local o=${CREATED[$1 % ${#CREATED[@]}]}
    post "orders/$o/status" '{"status":"IN_CANCEL"}' >/dev/null
    note "cancel $o"
}
exec_wh_change() {
    hot "$2"
    if [ "$1" = 0 ]; then post stock '{"changes":5}' >/dev/null
    else post stock "{\"wh\":\"${WHS[$3]}\",\"sku\":\"$S\",\"delta\":$4}" >/dev/null; fi
}
exec_advance() { post advance "{\"seconds\":$1}" >/dev/null; }
# pick_row N STATE...: an outbox row (preferring rows already attempted): ROW_ID, ROW_KEY, ROW_ENT.
pick_row() {
    local n=$1
    shift
    cli outbox --all
    jq -c '[.items[] | select(.state == "pending" or .state == "inflight" or .state == "held")]' "$tmp/out.json" >"$tmp/rows.json"
    local tried
    tried=$(jq '[.[] | select((.attempts // 0) > 0)] | length' "$tmp/rows.json")
    local sel='.'
    [ "$tried" -gt 0 ] && sel='[.[] | select((.attempts // 0) > 0)]'
    read -r ROW_ID ROW_KEY ROW_ENT < <(jq -r --argjson n "$n" "$sel"' | if length == 0 then "" else
        .[$n % length] | "\(.id) \(.key) \(.entity)" end' "$tmp/rows.json")
}
exec_discard() {
    pick_row "$1"
    [ -n "${ROW_ID:-}" ] || { note "discard: no row ($(jq -c "[.items[] | [.id, .entity, .state, .attempts]] | .[-4:]" "$tmp/out.json"))"; return 0; }
    cli outbox discard "$ROW_ID" --reason "interaction step $step"
    if [ "$CLI_RC" = 0 ]; then
        echo "$ROW_KEY" >>"$tmp/discarded"
        echo "transfer:$ROW_KEY" >>"$tmp/discarded"
    fi
    note "discard $ROW_ID ($ROW_ENT $ROW_KEY) -> $CLI_RC $CLI_CODE"
}
exec_retry() {
    pick_row "$1"
    [ -n "${ROW_ID:-}" ] || return 0
    cli outbox retry "$ROW_ID"
    note "retry $ROW_ID ($ROW_ENT $ROW_KEY) -> $CLI_RC $CLI_CODE"
}
exec_watch_write() {
    hot "$1"
    local w=${WHS[$2]} m i=0 moves=() kinds=(pick receive pick)
    # A low-stock threshold just under what is available, so the first pick raises an event
    # while the connection writes.
    cli stock "$S"
    local av
    av=$(jq --arg w "$w" '[.warehouses[]? | select(.warehouse == $w) | .available][0] // 0' "$tmp/out.json")
    [ "$av" -gt 2 ] && cli stock set "$S" --warehouse "$w" --threshold $((av - 1))
    shift 2
    for m in "$@"; do
        i=$((i + 1))
        moves+=("w$SEED-$step-$i:${kinds[${m%%:*}]}:$S:$w:${m#*:}")
    done
    moves+=("w$SEED-$step-1:${moves[0]#*:}") # the first one again: a duplicate
    "$RPC" "$tmp/tally.sock" "${moves[@]}" >"$tmp/rpc.out" 2>"$tmp/rpc.err"
    local rc=$?
    grep '^VIOLATION' "$tmp/rpc.out" | while read -r _ text; do echo "$text"; done >"$tmp/rpc.viol"
    while read -r text; do viol responses_well_formed "watch + pipelined writes: $text"; done <"$tmp/rpc.viol"
    [ "$rc" = 0 ] || [ -s "$tmp/rpc.viol" ] || viol responses_well_formed "interact_rpc exit $rc: $(head -c 300 "$tmp/rpc.err")"
    awk '$1 == "ACK" { print $2 }' "$tmp/rpc.out" | sort -u >>"$tmp/acked"
    cli stock set "$S" --warehouse "$w" --threshold 0
    note "watch+write $S@$w: $(grep -c ACK "$tmp/rpc.out") acks, $(grep EVENTS "$tmp/rpc.out")"
}
exec_purge() {
    sql "SELECT order_id FROM orders WHERE purged_at IS NULL" | sort >"$tmp/before"
    sql -separator $'\t' "SELECT order_id, address, phone FROM orders WHERE purged_at IS NULL" >"$tmp/before.pii"
    cli purge --older-than 0
    sql "SELECT order_id FROM orders WHERE purged_at IS NOT NULL" | sort >"$tmp/after"
    comm -12 "$tmp/before" "$tmp/after" >"$tmp/newly"
    awk -F'\t' 'FNR == NR { p[$1] = 1; next } ($1 in p) { if ($2 != "") print $2; if ($3 != "") print $3 }' \
        "$tmp/newly" "$tmp/before.pii" >>"$tmp/markers"
    cat "$tmp/newly" >>"$tmp/purged_ids"
    note "purge: $(wc -l <"$tmp/newly") orders"
}
exec_kill9() {
    kill -9 "$tallyd_pid" 2>/dev/null
    wait "$tallyd_pid" 2>/dev/null
    start_tallyd
    note "kill -9 and restart"
}
exec_fault() {
    local e=${FAULTS[$1]} w=${WHS[$2]}
    local body=${e#*|}
    body=${body//wh:W/wh:$w}
    body=${body//\"count\":C/\"count\":$3}
    post faults "$body" >/dev/null
    note "fault $body"
}
exec_link_down() {
    local tg=mp
    [ "$1" -lt 4 ] && tg="wh:${WHS[$1]}"
    post link "{\"target\":\"$tg\",\"up\":false}" >/dev/null
    DOWN+=("$tg")
    note "link $tg down"
}
exec_link_up() {
    [ ${#DOWN[@]} -gt 0 ] || return 0
    post link "{\"target\":\"${DOWN[0]}\",\"up\":true}" >/dev/null
    note "link ${DOWN[0]} up"
    DOWN=("${DOWN[@]:1}")
}
exec_disk_full() {
    if [ -z "$TMPFS" ]; then
        [ -n "$DISK_NOTICE" ] || echo "  (disk_full steps skipped: no tmpfs could be mounted for the state dir)"
        DISK_NOTICE=1
        return 0
    fi
    hot "$1"
    local w=${WHS[$2]} id="d$SEED-$step"
    post faults "{\"target\":\"wh:$w\",\"call\":\"movements\",\"latency_ms\":1500,\"count\":1}" >/dev/null
    CMD=(receive "$S" 5 --warehouse "$w" --id "$id")
    cli "${CMD[@]}"
    judge_move "$id"
    sleep 0.4
    dd if=/dev/zero of="$tmp/state/fill" bs=64k 2>/dev/null
    CMD=(receive "$S" 1 --warehouse "$w" --id "$id-full")
    cli "${CMD[@]}" # refused (disk_full) or recorded; never an internal error
    judge_move "$id-full"
    sleep 2
    rm -f "$tmp/state/fill"
    note "disk full around a push of $id"
}
exec_pause() { sleep "$1"; }
exec_safety() {
    hot "$1"
    cli stock set "$S" --warehouse "${WHS[$2]}" --safety "$3"
}

# ============================================================================ one run
write_conf() {
    echo tally-sim-wh-token >"$tmp/wh.token"
    echo tally-sim-app-secret >"$tmp/app.secret"
    echo tally-sim-access-token >"$tmp/access.token"
    {
        printf '[station]\nname = INTERACTIONS\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
        printf 'reconcile_interval = 10\n'
        for w in "${WHS[@]}"; do
            printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\ncountry = %s\n' \
                "$w" "$base" "$w" "$tmp/wh.token" "${WHC[$w]}"
            printf 'inventory_interval = 2\noutbound_interval = 1\n'
        done
        carriers_conf
        printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
        printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
        printf 'catalog_interval = 2\norders_interval = 1\n'
    } >"$tmp/tallyd.conf"
}
round_mark=0
# heal: faults off, links up, then wait until tallyd has nothing left to do.
heal() {
    post link '{"target":"*","up":true}' >/dev/null
    ctl -X DELETE "$base/control/faults" >/dev/null
    DOWN=()
    t sync >/dev/null 2>&1
    wait_until 60 outbox_empty || viol converges "the outbox did not drain in 60 s after healing"
    mark_rounds
    t sync >/dev/null 2>&1
    wait_until 60 streams_done || viol converges "the streams did not finish a round in 60 s"
    wait_until 30 quiet || viol converges "tallyd not quiet 30 s after healing"
    local i
    for i in $(seq 50); do settled && break; sleep 0.2; done
}

cleanup_run() {
    if [ -n "${tallyd_pid:-}" ]; then
        kill -9 "$tallyd_pid" 2>/dev/null
        wait "$tallyd_pid" 2>/dev/null
        tallyd_pid=
    fi
    [ -n "${TMPFS:-}" ] && umount "$tmp/state" 2>/dev/null
    TMPFS=
    [ -n "${sim_pid:-}" ] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    sim_pid=
    [ -n "${KEEP:-}" ] || [ -z "${tmp:-}" ] || rm -rf "$tmp"
}

# run_seed SEED: one whole run. 0 when clean.
run_seed() {
    SEED=$1
    step=0 LAST_OP=
    VIOL=() IMPORTS=() CREATED=() DOWN=() DISK_NOTICE=
    make_plan "$SEED" "$STEPS"
    if [ -n "$PLAN_FILE" ]; then
        PLAN=()
        local line i=0
        while read -r line; do
            [[ $line =~ ^[0-9]+\ [0-9]+\ (.*)$ ]] && line=${BASH_REMATCH[1]}
            [ -n "$line" ] && PLAN[++i]=$line
        done <"$PLAN_FILE"
        STEPS=$i
    fi
    if [ -n "$PRINT_PLAN" ]; then
        for ((step = 1; step <= STEPS; step++)); do echo "$SEED $step ${PLAN[step]}"; done
        return 0
    fi
    tmp=$(mktemp -d /tmp/tally-interact.XXXXXX)
    [ -z "$VERBOSE" ] || echo "seed $SEED: working in $tmp"
    . "$HERE/synclib.sh"
    : >"$tmp/acked"; : >"$tmp/discarded"; : >"$tmp/markers"; : >"$tmp/purged_ids"
    mkdir -p "$tmp/state"
    TMPFS=
    if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=24m,mode=0700 tmpfs "$tmp/state" 2>/dev/null; then
        TMPFS=1
    fi
    start_sim --skus 300 --orders 30 --seed "$SEED" --warehouses "$(IFS=,; echo "${WHS[*]}")" \
        --outbound-step-seconds 60
    write_conf
    start_tallyd
    round_mark=0
    wait_until 90 streams_done || { echo "seed $SEED: tallyd never finished its first rounds" >&2; return 1; }
    # The hot SKUs: in stock (>= 10) in every warehouse; the ops name them by index.
    for w in "${WHS[@]}"; do ctl "$base/control/stock?wh=$w&format=csv" | tail -n +2 | cut -d, -f1,2 | tr , ' '; done |
        awk '{ n[$1]++; if (!($1 in m) || $2 < m[$1]) m[$1] = $2 }
            END { for (s in n) if (n[s] == 4 && m[s] >= 10) print s }' | sort | awk 'NR % 3 == 1' |
        head -$NHOT >"$tmp/hot"
    mapfile -t HOT <"$tmp/hot"
    [ ${#HOT[@]} = $NHOT ] || { echo "seed $SEED: only ${#HOT[@]} hot SKUs" >&2; return 1; }
    local t0=$SECONDS op args skipped=0
    for ((step = 1; step <= STEPS; step++)); do
        op=${PLAN[step]%% *}
        args=${PLAN[step]#"$op"}
        LAST_OP="$op$args"
        case $SKIP in *" $op "*) skipped=$((skipped + 1)); continue ;; esac
        # shellcheck disable=SC2086
        "exec_$op" $args
        check_all step || return 1
        if [ $((step % CHECK_EVERY)) = 0 ] && [ $step != "$STEPS" ]; then
            LAST_OP="checkpoint"
            heal
            check_all checkpoint || return 1
        fi
    done
    step=$STEPS LAST_OP="final"
    heal
    t sync --wait --timeout 60 >/dev/null 2>&1 || viol converges "tally sync --wait: exit $?"
    heal
    check_all final || return 1
    echo "seed $SEED: $STEPS steps clean ($skipped skipped: ${SKIP# }) in $((SECONDS - t0)) s;" \
        "$(sort -u "$tmp/acked" | wc -l) movements acknowledged, $(sort -u "$tmp/discarded" | grep -vc '^transfer:') discarded," \
        "$(wc -l <"$tmp/purged_ids") orders purged, ${#CREATED[@]} orders created at the marketplace" \
        "$([ -n "$TMPFS" ] || echo '(no tmpfs: disk_full skipped)')"
    return 0
}

trap 'cleanup_run' EXIT
trap 'exit 130' INT TERM
clean=0 failed=0
for s in "${SEEDS[@]}"; do
    if run_seed "$s"; then
        clean=$((clean + 1))
    else
        failed=$((failed + 1))
        [ -f "${tmp:-/nonexistent}/tallyd.log" ] && { echo "--- tallyd log (tail)" >&2; tail -15 "$tmp/tallyd.log" >&2; }
    fi
    [ -n "$PRINT_PLAN" ] || cleanup_run
done
[ -n "$PRINT_PLAN" ] && exit 0
echo "test_interactions: $clean seeds clean, $failed failed, $STEPS steps each"
[ "$failed" = 0 ]
