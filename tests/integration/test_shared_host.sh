#!/usr/bin/env bash
# Upstreams on one host do not starve each other (found by integration.netfault: under latency
# and loss, requests of one upstream timed out "after 0 milliseconds" or "Failed to resolve
# host" without ever being sent). libcurl queued every request past max_parallel connections to
# a host -- a cap per host, where [sync] max_parallel is documented per upstream -- and a
# request's timeout runs while it waits in that queue. Five tally warehouses of tally-sim share
# 127.0.0.1:PORT (as several warehouses of one 3PL share its API host); every warehouse call is
# answered 2 s late (request_timeout 9 s: a stall guard of 3 s, a connect timeout of 5 s; max_parallel 1): alone,
# each call is in time; five queued behind one connection are not. Each upstream's calls must
# all succeed: no "no answer" in the log, every link up, every warehouse's streams finish rounds.
#   test_shared_host.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-sharedhost.XXXXXX)
. "$(dirname "$0")/synclib.sh"
on_exit() {
    local rc=$?
    trap - EXIT
    [ "$fails" != 0 ] && tail -n 8 "$tmp/tallyd.log" >&2
    sync_cleanup
    [ "$rc" != 0 ] && [ "$fails" = 0 ] && bad "aborted (exit status $rc)"
    [ "$rc" = 0 ] && [ "$fails" != 0 ] && rc=1
    echo "test_shared_host: $((checks - fails)) passed, $fails failed"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

start_sim --skus 50 --orders 0 --seed 5 --warehouses ES-MAD,PL-WAW,FR-PAR,US-LAX,DE-BER
echo tally-sim-wh-token >"$tmp/wh.token"
{
    printf '[station]\nname = SHARED-HOST\n[sync]\nretry_max = 2\nrequest_timeout = 9\nmax_parallel = 1\n'
    for w in ES-MAD PL-WAW FR-PAR US-LAX DE-BER; do
        printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\n' "$w" "$base" "$w" "$tmp/wh.token"
        printf 'inventory_interval = 1\noutbound_interval = 1\n'
    done
} >"$tmp/tallyd.conf"
start_tallyd
mark_rounds
wait_until 30 inventory_done || exit 1
# Every warehouse call from now on answers 2 s late.
ctl -X POST -d '{"target":"wh:*","latency_ms":2000}' "$base/control/faults" >/dev/null
: >"$tmp/tallyd.log"
sleep 3
mark=$(date +%s)
sleep 14
check_eq "$(grep -c 'no answer' "$tmp/tallyd.log")" 0 \
    "calls that failed while each alone was in time ($(grep 'no answer' "$tmp/tallyd.log" | head -2 | cut -c1-160))"
for w in ES-MAD PL-WAW FR-PAR US-LAX DE-BER; do
    check_eq "$(st | jq -r --arg n "wh:$w" '.upstreams[] | select(.name == $n) | .link')" up \
        "wh:$w's link"
    check_eq "$(st | jq --arg n "wh:$w:inventory" --argjson m "$mark" '.upstreams[].streams[]
        | select(.name == $n) | .last_success_at > $m')" true "wh:$w's inventory read during the latency"
done
check_eq "$(ctl "$base/control/stats" | jq '.faults.latency > 10')" true \
    "the latency fault delayed the calls"
