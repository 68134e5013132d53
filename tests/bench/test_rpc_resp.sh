#!/usr/bin/env bash
# bench_rpc --resp reads Redis's answers right however they are cut: against resp_server.py
# (answers split between reads at every place, several pipelined answers to a read), every
# answer is counted once, nils and errors as errors, and what is not RESP stops it.
#   tests/bench/test_rpc_resp.sh BENCH_RPC
# No figure is judged: counts and exit codes only.
RPC=${1:?usage: test_rpc_resp.sh BENCH_RPC}
SERVER=resp_server.py KEY=k:1
CLIENT=(--resp k:1)
. "$(dirname "$0")/scripted_lib.sh"

value_cases 16 3000

serve nil 862
counted 1 nil 400 200 -c 1 -P 4
run 0 nil_allowed -c 1 -P 4 -n 400 --allow-errors
check nil_allowed x_errors 200

serve err 100
counted 0 err 500 250 -c 1 -P 5 --allow-errors

for m in trailer noline toobig; do
    serve "$m"
    run 1 "$m" -c 1 -P 1 -n 10
    grep -q 'not a RESP answer' "$tmp/$m.err" || bad "$m: $(cat "$tmp/$m.err")"
done

# --size measures a tallyd answer: refused with --resp, before connecting
rc=0
"$RPC" "$tmp/none.sock" --resp k:1 --size >/dev/null 2>"$tmp/size.err" || rc=$?
[ "$rc" = 2 ] && grep -q 'not with --resp' "$tmp/size.err" || bad "--size with --resp: exit $rc"

# -c 0 or -P 0 asks nothing: refused, before connecting (-c 0 would wait on no connection, and
# epoll_wait refuses to wait for no event: it would spin until -d)
for a in -c:0 -P:0 -c:-1; do
    rc=0
    "$RPC" "$tmp/none.sock" --resp k:1 "${a%%:*}" "${a#*:}" -d 0.3 >/dev/null 2>"$tmp/zero.err" || rc=$?
    [ "$rc" = 2 ] && grep -q 'at least 1' "$tmp/zero.err" || bad "${a%%:*} ${a#*:}: exit $rc"
done

# --keys-file's refusals exit 2, before connecting, with nothing of theirs left allocated (an
# ASan build's LeakSanitizer would make it another exit code): a file of no keys, and --size
: >"$tmp/nokeys"
printf 'k:1\nk:2\n' >"$tmp/keys"
for c in nokeys:'no keys' size:'not with --keys-file'; do
    name=${c%%:*} rc=0
    extra=()
    [ "$name" = size ] && extra=(--size)
    f=$tmp/keys
    [ "$name" = nokeys ] && f=$tmp/nokeys
    "$RPC" "$tmp/none.sock" --keys-file "$f" "${extra[@]}" >/dev/null 2>"$tmp/$name.err" || rc=$?
    [ "$rc" = 2 ] && grep -q "${c#*:}" "$tmp/$name.err" || bad "--keys-file $name: exit $rc"
done

# --keys-file asks its keys in turn, each connection from its own place in the list: the server
# takes a connection's requests only in the list's order, round (another: it exits 3, and the
# connection's end fails bench_rpc), so the answers all counted say the order held; the same
# keys in another order fail.
printf 'k:1\nk:2\nk:3\n' >"$tmp/keys3"
printf 'k:1\nk:3\nk:2\n' >"$tmp/keys3x"
KEY=k:1,k:2,k:3
serve value 100
counted 0 rot 600 0 -c 2 -P 3 --keys-file "$tmp/keys3"
counted 0 rot1 301 0 -c 1 -P 1 --keys-file "$tmp/keys3"
run 1 rot_wrong -c 1 -P 1 -n 300 --keys-file "$tmp/keys3x"
grep -q 'not the request expected' "$tmp/srv$nsrv.err" || bad "rot_wrong: the server did not refuse"
KEY=k:1

finish "bench_rpc --resp"
