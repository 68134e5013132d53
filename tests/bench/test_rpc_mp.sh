#!/usr/bin/env bash
# bench_rpc reads tallyd's answers right however they are cut: against mp_server.py (answers
# split between reads at every place, several pipelined answers to a read), every answer is
# counted once, an answer with an error (or not an array of 4) as an error, any packing of
# [type, msgid, nil, result] as none, and what is not MessagePack stops it.
#   tests/bench/test_rpc_mp.sh BENCH_RPC
# No figure is judged: counts and exit codes only.
RPC=${1:?usage: test_rpc_mp.sh BENCH_RPC}
SERVER=mp_server.py KEY=SKU-1
CLIENT=(-k SKU-1)
. "$(dirname "$0")/scripted_lib.sh"

value_cases 200 6000

serve wide 100
counted 0 wide 400 0 -c 1 -P 4

serve err 100
counted 1 err 500 250 -c 1 -P 5
run 0 err_allowed -c 1 -P 5 -n 500 --allow-errors
check err_allowed x_errors 250

serve short 100
counted 1 short 400 200 -c 1 -P 4

for m in malformed toobig; do
    serve "$m"
    run 1 "$m" -c 1 -P 1 -n 10
    grep -q 'not a MessagePack answer' "$tmp/$m.err" || bad "$m: $(cat "$tmp/$m.err")"
done

finish "bench_rpc"
