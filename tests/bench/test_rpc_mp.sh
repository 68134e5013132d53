#!/usr/bin/env bash
# bench_rpc reads tallyd's answers right however they are cut: against mp_server.py (answers
# split between reads at every place, several pipelined answers to a read), every answer is
# counted once, an answer with an error (or not an array of 4) as an error, any packing of
# [type, msgid, nil, result] as none, and what is not MessagePack stops it.
#   tests/bench/test_rpc_mp.sh BENCH_RPC
# No figure is judged: counts and exit codes only.
set -euo pipefail
RPC=${1:?usage: test_rpc_mp.sh BENCH_RPC}
here=$(cd "$(dirname "$0")" && pwd)
PY=$(command -v python3) || { echo "SKIP: no python3"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-mp.XXXXXX")
srv=''
cleanup() {
    local rc=$?
    if [ -n "$srv" ]; then kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null || true; fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
fails=0
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# serve MODE...: mp_server.py on a fresh socket ($sock)
serve() {
    if [ -n "$srv" ]; then kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null || true; fi
    nsrv=$((${nsrv:-0} + 1))
    sock=$tmp/m$nsrv.sock
    "$PY" "$here/mp_server.py" "$sock" SKU-1 "$*" >"$tmp/srv$nsrv.out" 2>"$tmp/srv$nsrv.err" &
    srv=$!
    for _ in $(seq 500); do grep -q listening "$tmp/srv$nsrv.out" 2>/dev/null && break; sleep 0.02; done
    grep -q listening "$tmp/srv$nsrv.out" ||
        { cat "$tmp/srv$nsrv.err" >&2; echo "mp_server.py did not start" >&2; exit 1; }
}
# run EXPECT_RC NAME ARGS...: bench_rpc -k SKU-1 ARGS on $sock; its exit code must be
# EXPECT_RC; its --kv figures in $tmp/NAME
run() {
    local want=$1 name=$2 rc=0
    shift 2
    timeout 60 "$RPC" "$sock" -k SKU-1 -d 30 --kv x "$@" >"$tmp/$name" 2>"$tmp/$name.err" || rc=$?
    [ "$rc" = "$want" ] || bad "$name: exit $rc, not $want ($(cat "$tmp/$name.err"))"
}
kv() { awk -v k="$2" '$1 == k { print $2 }' "$tmp/$1"; }
check() { # check NAME KEY WANT
    [ "$(kv "$1" "$2")" = "$3" ] || bad "$1: $2 is '$(kv "$1" "$2")', not $3"
}

serve value 862
run 0 p1 -c 1 -P 1 -n 500
check p1 x_n 500
check p1 x_errors 0
run 0 pipelined -c 3 -P 200 -n 6000
check pipelined x_n 6000
check pipelined x_errors 0

serve value 300000 # three answers about fill the buffer: an answer kept across reads
run 0 big -c 2 -P 3 -n 60
check big x_n 60
check big x_errors 0

serve value 0
run 0 empty -c 1 -P 8 -n 400
check empty x_n 400
check empty x_errors 0

serve wide 100
run 0 wide -c 1 -P 4 -n 400
check wide x_n 400
check wide x_errors 0

serve err 100
run 1 err -c 1 -P 5 -n 500
check err x_n 500
check err x_errors 250
run 0 err_allowed -c 1 -P 5 -n 500 --allow-errors
check err_allowed x_errors 250

serve short 100
run 1 short -c 1 -P 4 -n 400
check short x_n 400
check short x_errors 200

for m in malformed toobig; do
    serve "$m"
    run 1 "$m" -c 1 -P 1 -n 10
    grep -q 'not a MessagePack answer' "$tmp/$m.err" || bad "$m: $(cat "$tmp/$m.err")"
done

[ "$fails" = 0 ] || { echo "$fails failed" >&2; exit 1; }
echo "bench_rpc: all cases passed"
