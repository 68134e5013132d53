#!/usr/bin/env bash
# Integration: an import call is applied whole or not at all, even when tallyd is killed
# (kill -9) while the import runs off the loop (a write job, issue 10 item 5).
#   test_import_crash.sh TALLYD TALLY TALLY_GEN
# `tally import catalog` of 12,000 SKUs sends calls of 1,000 rows; tallyd is killed once some
# calls are in. Afterwards: the SKU count is a whole number of calls, every SKU has its product
# and its title in the title index or its queue (titleidx.h), the database passes its integrity
# check; a restarted tallyd answers, and importing the file again inserts exactly the SKUs
# the killed import had not written and updates the others.
set -uo pipefail
TALLYD=$1 TALLY=$2 GEN=$3
tmp=$(mktemp -d /tmp/tally-impcrash.XXXXXX)
sock=$tmp/tally.sock
db=$tmp/state/replica.db
pid= ipid=
fails=0 checks=0
cleanup() {
    [ -n "$ipid" ] && kill "$ipid" 2>/dev/null
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$1" == "$2" ]; then ok; else bad "$3: expected '$2', got '$1'"; fi; }
t() { "$TALLY" --socket "$sock" "$@"; }
q() { sqlite3 -cmd ".timeout 5000" "$db" "$1"; }
start() {
    "$TALLYD" --state-dir "$tmp/state" --socket "$sock" --station CRASH >>"$tmp/tallyd.log" 2>&1 &
    pid=$!
    for _ in $(seq 400); do
        t status >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "tallyd did not start" >&2
    cat "$tmp/tallyd.log" >&2
    exit 1
}

n=12000
"$GEN" --out "$tmp/data" --skus $n --warehouses 1 --orders 0 --seed 3 >/dev/null || exit 1
start
out=$(t import warehouses "$tmp/data/warehouses.csv" 2>&1)
expect_eq "$?" 0 "import warehouses ($out)"

t import catalog "$tmp/data/catalog.csv" >"$tmp/import.out" 2>&1 &
ipid=$!
# Kill tallyd once a call or more is in, while the import goes on.
for _ in $(seq 2000); do
    c=$(q "SELECT COUNT(*) FROM skus" 2>/dev/null || echo 0)
    [ "${c:-0}" -ge 1000 ] && break
    sleep 0.005
done
kill -9 "$pid"
wait "$pid" 2>/dev/null
pid=
wait "$ipid"
irc=$?
ipid=
written=$(q "SELECT COUNT(*) FROM skus")
echo "killed after $written of $n SKUs (import exit $irc)"
if [ "$written" -lt "$n" ]; then
    [ "$irc" -ne 0 ] && ok || bad "the killed import said it succeeded: $(cat "$tmp/import.out")"
fi
expect_eq "$((written % 1000))" 0 "SKUs written are whole calls of 1,000 ($written)"
expect_eq "$(q "SELECT COUNT(*) FROM skus WHERE product NOT IN (SELECT id FROM products)")" 0 \
    "every SKU has its product"
expect_eq "$(q "PRAGMA integrity_check")" "ok" "database integrity"
# The title index is filled in the background (titleidx.h): each SKU written is in the index
# or in its queue, never both, never neither (the index's FTS integrity check, once the queue
# is empty, below).
expect_eq "$(q "SELECT COUNT(*) FROM skus WHERE (id IN (SELECT id FROM sku_titles_todo)) =
    (id IN (SELECT id FROM sku_titles_docsize))")" 0 "each SKU's title indexed or queued"
expect_eq "$(q "SELECT n FROM counters WHERE name = 'skus'")" "$written" "maintained SKU count"

start
out=$(t --json import catalog "$tmp/data/catalog.csv" 2>&1)
expect_eq "$?" 0 "import again after the restart ($out)"
expect_eq "$(printf '%s' "$out" | jq -r .inserted)" "$((n - written))" "inserted: the SKUs not written"
expect_eq "$(printf '%s' "$out" | jq -r .updated)" "$written" "updated: the SKUs written before"
expect_eq "$(q "SELECT COUNT(*) FROM skus")" "$n" "every SKU in the end"
first=$(sed -n 2p "$tmp/data/catalog.csv" | cut -d, -f1)
# Found by its title at once (from the index or from the queue), and the queue drains.
last=$(tail -n 1 "$tmp/data/catalog.csv" | cut -d, -f1)
title=$(q "SELECT substr(title, 1, 20) FROM skus WHERE code = '$last'")
expect_eq "$(t --json search "$title" --limit 1000 | jq --arg s "$last" '[.items[] | select(.sku == $s)] | length')" \
    1 "the last SKU found by its title at once"
for _ in $(seq 600); do
    [ "$(q "SELECT COUNT(*) FROM sku_titles_todo")" = 0 ] && break
    sleep 0.05
done
expect_eq "$(q "SELECT COUNT(*) FROM sku_titles_todo")" 0 "every title indexed in the background"
expect_eq "$(q "INSERT INTO sku_titles(sku_titles) VALUES('integrity-check'); SELECT 'ok'" 2>&1)" \
    "ok" "title index matches the SKUs"
# the last SKU's title (written by the second import) is found through the title index
id=$(q "SELECT id FROM skus WHERE code = '$last'")
expect_eq "$(q "SELECT COUNT(*) FROM sku_titles WHERE sku_titles MATCH (SELECT '\"' ||
    replace(substr(title, 1, 10), '\"', '\"\"') || '\"' FROM skus WHERE id = $id) AND rowid = $id")" \
    1 "the last SKU found by its title"

echo "test_import_crash: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
