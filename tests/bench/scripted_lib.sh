# What test_rpc_resp.sh and test_rpc_mp.sh share: bench_rpc against a scripted server
# (scripted_stream.py), counts and exit codes only. Sourced after setting
#   RPC       the bench_rpc under test
#   SERVER    the server script in this directory (resp_server.py, mp_server.py)
#   KEY       the key or SKU the server expects in every request
#   CLIENT    bench_rpc's arguments naming it (an array: (--resp k:1) or (-k SKU-1))
# Gives serve MODE..., run EXPECT_RC NAME ARGS..., counted, value_cases, kv NAME KEY,
# check NAME KEY WANT, bad MSG, finish WHAT (the verdict), $tmp (removed at exit) and $sock.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=$(command -v python3) || { echo "SKIP: no python3"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-scripted.XXXXXX")
srv=''
nsrv=0
fails=0
stop_server() {
    if [ -n "$srv" ]; then kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; fi
}
cleanup() {
    local rc=$?
    stop_server
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# serve MODE...: $SERVER on a fresh socket ($sock)
serve() {
    stop_server
    nsrv=$((nsrv + 1))
    sock=$tmp/s$nsrv.sock
    "$PY" "$here/$SERVER" "$sock" "$KEY" "$*" >"$tmp/srv$nsrv.out" 2>"$tmp/srv$nsrv.err" &
    srv=$!
    for _ in $(seq 500); do grep -q listening "$tmp/srv$nsrv.out" 2>/dev/null && break; sleep 0.02; done
    grep -q listening "$tmp/srv$nsrv.out" ||
        { cat "$tmp/srv$nsrv.err" >&2; echo "$SERVER did not start" >&2; exit 1; }
}
# run EXPECT_RC NAME ARGS...: bench_rpc CLIENT ARGS on $sock; its exit code must be
# EXPECT_RC; its --kv figures in $tmp/NAME
run() {
    local want=$1 name=$2 rc=0
    shift 2
    timeout 60 "$RPC" "$sock" "${CLIENT[@]}" -d 30 --kv x "$@" >"$tmp/$name" 2>"$tmp/$name.err" ||
        rc=$?
    [ "$rc" = "$want" ] || bad "$name: exit $rc, not $want ($(cat "$tmp/$name.err"))"
}
kv() { awk -v k="$2" '$1 == k { print $2 }' "$tmp/$1"; }
check() { # check NAME KEY WANT
    [ "$(kv "$1" "$2")" = "$3" ] || bad "$1: $2 is '$(kv "$1" "$2")', not $3"
}
# finish WHAT: exit 1 when a check failed, else say so
finish() {
    [ "$fails" = 0 ] || { echo "$fails failed" >&2; exit 1; }
    echo "$1: all cases passed"
}
# counted EXPECT_RC NAME N ERRORS ARGS...: run with -n N; N answers counted, ERRORS of them errors
counted() {
    local want=$1 name=$2 n=$3 errs=$4
    shift 4
    run "$want" "$name" -n "$n" "$@"
    check "$name" x_n "$n"
    check "$name" x_errors "$errs"
}
# value_cases P N: the answers both servers give as `value`: one at a time; N pipelined P deep
# on 3 connections; three that about fill the buffer (an answer kept across reads); empty ones
value_cases() {
    serve value 862
    counted 0 p1 500 0 -c 1 -P 1
    counted 0 pipelined "$2" 0 -c 3 -P "$1"
    serve value 300000
    counted 0 big 60 0 -c 2 -P 3
    serve value 0
    counted 0 empty 400 0 -c 1 -P 8
}
