#!/usr/bin/env bash
# Crash test: kill -9 tallyd again and again while a client records movements, restart it, and
# check after every round that
#   - every acknowledged movement is in the ledger exactly once,
#   - the outbox holds exactly the acknowledged movements, plus at most the one whose answer
#     the kill cut off; re-sending that one with its id settles which it was,
#   - every SKU x warehouse's on-hand equals the seeded figure plus the acknowledged deltas,
#   - the database passes PRAGMA integrity_check.
#   test_crash.sh TALLYD TALLY [ROUNDS] [SEED]
set -uo pipefail
TALLYD=$1 TALLY=$2 ROUNDS=${3:-20} SEED=${4:-7}
tmp=$(mktemp -d /tmp/tally-crash.XXXXXX)
sock=$tmp/tally.sock db=$tmp/state/replica.db
pid=
fails=0 checks=0
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
RANDOM=$SEED

start() {
    "$TALLYD" --state-dir "$tmp/state" --socket "$sock" --log-level error 2>>"$tmp/tallyd.log" &
    pid=$!
    for _ in $(seq 400); do
        "$TALLY" --socket "$sock" status >/dev/null 2>&1 && return 0
        sleep 0.025
    done
    echo "tallyd did not start" >&2
    cat "$tmp/tallyd.log" >&2
    exit 1
}
t() { "$TALLY" --socket "$sock" "$@"; }

# Seed: 2 warehouses, 5 SKUs, 50 of each everywhere.
mkdir -p "$tmp/seed"
printf 'code,name,country\nES-MAD,Madrid,ES\nPL-WAW,Warsaw,PL\n' >"$tmp/seed/wh.csv"
{ echo "sku,product_id,title,price_minor,currency"
  for i in 1 2 3 4 5; do echo "C-$i,P-$i,Crash item $i,100,EUR"; done; } >"$tmp/seed/cat.csv"
{ echo "sku,warehouse,on_hand"
  for i in 1 2 3 4 5; do echo "C-$i,ES-MAD,50"; echo "C-$i,PL-WAW,50"; done; } >"$tmp/seed/stock.csv"
start
t import warehouses "$tmp/seed/wh.csv" >/dev/null && t import catalog "$tmp/seed/cat.csv" >/dev/null &&
    t import stock "$tmp/seed/stock.csv" >/dev/null || { echo "seeding failed" >&2; exit 1; }
: >"$tmp/acked"   # one line per acknowledged movement id
: >"$tmp/legs"    # "sku warehouse delta" per leg of every acknowledged movement

# Records the legs of an answer (JSON on stdin) for SKU.
record_legs() {
    jq -r --arg s "$1" '.movements[] | "\($s) \(.warehouse) \(.delta)"' >>"$tmp/legs"
}

# One movement with a random kind; prints nothing; returns tally's exit code.
move() {
    local id=$1 sku=C-$((RANDOM % 5 + 1)) whs=(ES-MAD PL-WAW) out rc
    local wh=${whs[RANDOM % 2]} other=${whs[(RANDOM + 1) % 2]} q=$((RANDOM % 4 + 1))
    case $((RANDOM % 4)) in
    0) out=$(t --json receive "$sku" "$q" --warehouse "$wh" --id "$id" 2>/dev/null) ;;
    1) out=$(t --json pick "$sku" "$q" --warehouse "$wh" --id "$id" 2>/dev/null) ;;
    2) out=$(t --json adjust "$sku" "-$q" --warehouse "$wh" --reason "crash test" --id "$id" 2>/dev/null) ;;
    *) out=$(t --json transfer "$sku" "$q" --from "$wh" --to "$other" --id "$id" 2>/dev/null) ;;
    esac
    rc=$?
    echo "$id $rc $sku $out" >"$tmp/last"
    if [ $rc = 0 ]; then
        echo "$id" >>"$tmp/acked"
        printf '%s' "$out" | record_legs "$sku"
    fi
    return $rc
}

for round in $(seq "$ROUNDS"); do
    # The client, in the background; the kill comes after 30-300 ms.
    (
        n=0
        while :; do
            n=$((n + 1))
            move "c-$round-$n"
            rc=$?
            [ $rc = 0 ] || [ $rc = 5 ] || break   # 5: refused (insufficient stock), fine
        done
    ) &
    client=$!
    sleep "0.$(printf '%03d' $((RANDOM % 270 + 30)))"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null
    pid=
    wait "$client" 2>/dev/null
    # The movement in flight at the kill: its command did not get an answer.
    read -r lastid lastrc lastsku _ <"$tmp/last"
    start

    # Ledger and outbox against what was acknowledged.
    sqlite3 -readonly "$db" "SELECT id FROM movements WHERE leg = 0 ORDER BY id" >"$tmp/ledger"
    sqlite3 -readonly "$db" "SELECT key FROM outbox ORDER BY key" >"$tmp/outbox"
    sort "$tmp/acked" >"$tmp/acked.sorted"
    dups=$(sort "$tmp/ledger" | uniq -d | wc -l)
    [ "$dups" = 0 ] && ok || bad "round $round: $dups movement ids twice in the ledger"
    missing=$(comm -23 "$tmp/acked.sorted" <(sort "$tmp/ledger") | wc -l)
    [ "$missing" = 0 ] && ok || bad "round $round: $missing acknowledged movements lost"
    extra=$(comm -13 "$tmp/acked.sorted" "$tmp/outbox")
    if [ -z "$extra" ] || { [ "$extra" = "$lastid" ] && [ "$lastrc" != 0 ]; }; then ok; else
        bad "round $round: outbox holds unacknowledged rows: $extra"
    fi
    missing=$(comm -23 "$tmp/acked.sorted" "$tmp/outbox" | wc -l)
    [ "$missing" = 0 ] && ok || bad "round $round: $missing acknowledged movements not in the outbox"
    # Re-send the cut-off movement with its id: applied now, or answered as a duplicate.
    if [ "$lastrc" != 0 ] && [ "$lastrc" != 5 ]; then
        kind=$(sqlite3 -readonly "$db" "SELECT kind FROM movements WHERE id = '$lastid' AND leg = 0")
        was_there=$([ -n "$kind" ] && echo 1 || echo 0)
        # Replay exactly the same command line: move() chose it at random, so re-derive it
        # from the ledger when it was committed; otherwise it never happened and is dropped.
        if [ "$was_there" = 1 ]; then
            sku=$(sqlite3 -readonly "$db" "SELECT s.code FROM movements m JOIN skus s ON s.id = m.sku WHERE m.id = '$lastid' AND m.leg = 0")
            wh=$(sqlite3 -readonly "$db" "SELECT w.code FROM movements m JOIN warehouses w ON w.id = m.warehouse WHERE m.id = '$lastid' AND m.leg = 0")
            qty=$(sqlite3 -readonly "$db" "SELECT qty FROM movements WHERE id = '$lastid' AND leg = 0")
            case $kind in
            receive) out=$(t --json receive "$sku" "$qty" --warehouse "$wh" --id "$lastid") ;;
            pick) out=$(t --json pick "$sku" "$qty" --warehouse "$wh" --id "$lastid") ;;
            adjust) out=$(t --json adjust "$sku" "$qty" --warehouse "$wh" --reason "crash test" --id "$lastid") ;;
            transfer)
                to=$(sqlite3 -readonly "$db" "SELECT w.code FROM movements m JOIN warehouses w ON w.id = m.peer WHERE m.id = '$lastid' AND m.leg = 0")
                out=$(t --json transfer "$sku" "$qty" --from "$wh" --to "$to" --id "$lastid") ;;
            esac
            [ "$(printf '%s' "$out" | jq -r .duplicate)" = true ] && ok ||
                bad "round $round: re-sent $lastid was not recognised as a duplicate"
            echo "$lastid" >>"$tmp/acked"
            printf '%s' "$out" | record_legs "$sku"
        fi
    fi
    sort "$tmp/acked" >"$tmp/acked.sorted"
    sqlite3 -readonly "$db" "SELECT key FROM outbox ORDER BY key" >"$tmp/outbox"
    [ "$(cat "$tmp/outbox")" = "$(cat "$tmp/acked.sorted")" ] && ok ||
        bad "round $round: outbox != acknowledged movements after the re-send"

    # Stock against the model: 50 + acknowledged deltas, per SKU x warehouse.
    awk '{ s[$1" "$2] += $3 } END { for (k in s) print k, s[k] }' "$tmp/legs" >"$tmp/model"
    for i in 1 2 3 4 5; do
        for wh in ES-MAD PL-WAW; do
            want=$((50 + $(awk -v k="C-$i $wh" '$1" "$2 == k { print $3 }' "$tmp/model" | head -1) + 0))
            got=$(t --json stock "C-$i" | jq -r --arg w "$wh" '.warehouses[] | select(.warehouse == $w) | .on_hand')
            [ "$got" = "$want" ] && ok || bad "round $round: C-$i at $wh on hand $got, model $want"
        done
    done
    [ "$(sqlite3 -readonly "$db" "PRAGMA integrity_check")" = ok ] && ok || bad "round $round: integrity_check"
done
echo "test_crash: $ROUNDS rounds, $(wc -l <"$tmp/acked") movements acknowledged"
echo "test_crash: $checks checks, $fails failed"
[ "$fails" = 0 ]
