#!/usr/bin/env bash
# Integration: `tally import` keeps several calls in flight on its connection (pipelined, issue 10
# item 5); what that could break.
#   test_import_pipeline.sh TALLYD TALLY TALLY_GEN
# 1. A refused row in the middle: a catalog of 14,000 SKUs (14 calls of 1,000 rows) whose line
#    9503 (call 10) has a bad currency. The CLI says exactly what a call sent alone said (the
#    file line, the message, the rows before that call; text and --json) and exits 5; the
#    refused call wrote nothing, the 9 calls before it are in, and the calls already in flight
#    behind it were applied whole (at least one: they were sent before the refusal came back),
#    never a part of one.
# 2. Importing the corrected file again converges: every SKU once, the counts of inserted and
#    updated rows are what was missing and what was there.
# 3. The CLI killed (kill -9) with calls in flight, on a fresh replica: tallyd applies or drops
#    each call whole, keeps answering, and a re-run converges. TALLY_IMPORT_PIPE_ROWS rows
#    (30,000; CTest gives 12,000 under sanitizers).
set -uo pipefail
TALLYD=$1 TALLY=$2 GEN=$3
tmp=$(mktemp -d /tmp/tally-imppipe.XXXXXX)
sock=$tmp/tally.sock
db=$tmp/state/replica.db
pid='' ipid=''
fails=0 checks=0
cleanup() {
    [ -n "$ipid" ] && kill -9 "$ipid" 2>/dev/null
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
    mkdir -p -m 700 "$tmp/state"
    "$TALLYD" --state-dir "$tmp/state" --socket "$sock" --station PIPE >>"$tmp/tallyd.log" 2>&1 &
    pid=$!
    for _ in $(seq 400); do
        t status >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    cat "$tmp/tallyd.log" >&2
    echo "tallyd did not start" >&2
    exit 1
}
start

"$GEN" --out "$tmp/gen" --skus 14000 --warehouses 1 --orders 1 >/dev/null
good=$tmp/gen/catalog.csv
n=$(($(wc -l <"$good") - 1))
expect_eq "$n" 14000 "rows in the generated catalog"
# Line 9503 is row 9502 of the data: the 502nd row of call 10 (lines 9002-10001).
bad_csv=$tmp/bad.csv
sed '9503s/,USD,/,usd,/' "$good" >"$bad_csv"
cmp -s "$good" "$bad_csv" && bad "line 9503 was not changed (the generator's format changed?)"
# SKU codes of data lines FROM..TO of the first catalog present in the replica.
present() {
    q "SELECT code FROM skus" >"$tmp/have"
    awk -F, -v a="$1" -v b="$2" 'FNR == NR { have[$1] = 1; next }
        FNR >= a && FNR <= b && ($1 in have) { k++ } END { print k + 0 }' "$tmp/have" "$good"
}

# 1. the refused row
t import catalog "$bad_csv" >"$tmp/out" 2>"$tmp/err"
expect_eq "$?" 5 "exit status of a refused row (invalid_params)"
expect_eq "$(cat "$tmp/out")" "" "stdout of the refused import"
printf 'tally: %s:9503: field '\''currency'\'' must be 3 upper-case letters (ISO) (invalid_params)\ntally: the 9000 rows before that batch were imported; importing the file again is harmless\n' \
    "$bad_csv" >"$tmp/want"
if cmp -s "$tmp/err" "$tmp/want"; then ok; else
    bad "stderr of the refused import differs from a call sent alone:"
    diff "$tmp/want" "$tmp/err" >&2
fi
expect_eq "$(present 2 9001)" 9000 "SKUs of the 9 calls before the refused one"
expect_eq "$(present 9002 10001)" 0 "SKUs of the refused call (all or nothing)"
after=0
for c in $(seq 11 14); do
    from=$(((c - 1) * 1000 + 2))
    k=$(present "$from" $((from + 999)))
    if [ "$k" != 0 ] && [ "$k" != 1000 ]; then bad "call $c applied in part: $k of 1000 SKUs"; fi
    [ "$k" = 1000 ] && after=$((after + 1))
done
ok
if [ "$after" -ge 1 ]; then ok; else
    bad "calls in flight behind the refused one applied: none (pipelined: expected 1-4)"
fi
expect_eq "$(q "SELECT n FROM counters WHERE name = 'skus'")" $((9000 + after * 1000)) \
    "the skus counter"
# The same refusal with --json: one document on stdout, the same text on stderr.
t --json import catalog "$bad_csv" >"$tmp/jout" 2>"$tmp/jerr"
expect_eq "$?" 5 "exit status of a refused row (--json)"
expect_eq "$(cat "$tmp/jout")" \
    "{\"error\":{\"code\":\"invalid_params\",\"message\":\"field 'currency' must be 3 upper-case letters (ISO)\",\"file\":\"$bad_csv\",\"line\":9503}}" \
    "the --json error document"
if cmp -s "$tmp/jerr" "$tmp/want"; then ok; else bad "stderr of the --json refusal differs"; fi

# 2. the corrected file converges
have=$(q "SELECT COUNT(*) FROM skus")
t import catalog "$good" >"$tmp/out" 2>"$tmp/err"
expect_eq "$?" 0 "exit status of the corrected import"
expect_eq "$(cat "$tmp/out")" \
    "catalog: imported 14000 rows ($((14000 - have)) inserted, $have updated)" "its summary"
expect_eq "$(q "SELECT COUNT(*) FROM skus")" 14000 "SKUs after the corrected import"
expect_eq "$(q "SELECT n FROM counters WHERE name = 'skus'")" 14000 "the skus counter after it"

# 3. the CLI killed with calls in flight, on a fresh replica
kill "$pid"
wait "$pid"
pid=''
rm -rf "$tmp/state"
start
"$GEN" --out "$tmp/gen2" --skus "${TALLY_IMPORT_PIPE_ROWS:-30000}" --warehouses 1 --orders 1 \
    >/dev/null
big=$tmp/gen2/catalog.csv
t import catalog "$big" >/dev/null 2>"$tmp/kerr" &
ipid=$!
for _ in $(seq 4000); do
    [ "$(q "SELECT COUNT(*) FROM skus")" -ge 2000 ] && break
    kill -0 "$ipid" 2>/dev/null || break
    sleep 0.005
done
if kill -9 "$ipid" 2>/dev/null; then ok; else bad "the import ended before it could be killed"; fi
wait "$ipid" 2>/dev/null
ipid=''
# What tallyd had taken is applied or dropped whole; it stays answering meanwhile.
prev=-1 same=0
for _ in $(seq 300); do
    cur=$(q "SELECT COUNT(*) FROM skus")
    if [ "$cur" = "$prev" ]; then same=$((same + 1)); else same=0; fi
    [ "$same" -ge 5 ] && break
    prev=$cur
    sleep 0.1
done
t status >/dev/null 2>&1
expect_eq "$?" 0 "tallyd answers after the CLI was killed"
expect_eq "$(q "PRAGMA integrity_check")" ok "integrity after the killed import"
expect_eq "$(($(q "SELECT COUNT(*) FROM skus") % 1000))" 0 \
    "SKUs after the killed import are whole calls of 1,000"
expect_eq "$(q "SELECT (SELECT n FROM counters WHERE name = 'skus') = COUNT(*) FROM skus")" 1 \
    "the skus counter after the killed import"
t import catalog "$big" >"$tmp/out" 2>"$tmp/err"
expect_eq "$?" 0 "exit status of the re-run"
rows=$(($(wc -l <"$big") - 1))
total=$(q "SELECT COUNT(*) FROM skus")
expect_eq "$(tail -n 1 "$tmp/out" | sed 's/ (.*//')" "catalog: imported $rows rows" "the re-run's summary"
expect_eq "$total" "$rows" "SKUs after the re-run (every code once)"
expect_eq "$(q "SELECT n FROM counters WHERE name = 'skus'")" "$total" "the skus counter after it"
t status >/dev/null 2>&1
expect_eq "$?" 0 "tallyd answers at the end"

echo "$checks checks, $fails failed"
[ "$fails" -eq 0 ]
