#!/usr/bin/env bash
# A hostile warehouse upstream (hostile_upstream.py, a tally Warehouse API v1 on 127.0.0.1)
# against tallyd: a body that never ends, an answer at 1 byte a second, a redirect to another
# host, an HTML page with the wrong content type, invalid UTF-8 in a row, numbers beyond 2^63.
# Each gives a clear error -- the inventory stream's (`status`), or a logged per-row error with
# the page's other rows applied -- within the request's time limit, with tallyd's memory bounded;
# and each time the upstream is sane again the stream recovers (the new figures are read, the
# error clears). Prints how long each misbehaviour took to be reported and tallyd's RSS.
#   test_hostile.sh TALLYD TALLY
set -uo pipefail
TALLYD=$1 TALLY=$2
tmp=$(mktemp -d /tmp/tally-hostile.XXXXXX)
. "$(dirname "$0")/synclib.sh"
up_pid=
cleanup() {
    [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null
    sync_cleanup
}
trap cleanup EXIT

python3 -u "$(dirname "$0")/hostile_upstream.py" >"$tmp/up.out" 2>"$tmp/up.err" &
up_pid=$!
for _ in $(seq 200); do
    grep -q listening "$tmp/up.out" 2>/dev/null && break
    sleep 0.05
done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/up.out")
[ -n "$port" ] || { echo "hostile upstream did not start" >&2; cat "$tmp/up.err" >&2; exit 1; }
up=http://127.0.0.1:$port
mode() { curl -sS --max-time 5 "$up/control/mode?m=$1" >/dev/null; }

echo hostile-token >"$tmp/wh.token"
# request_timeout 3 s: the bound every misbehaviour must be cut at (the stall guard is 1 s).
printf '[station]\nname = HOSTILE-TEST\n[sync]\nretry_max = 2\nrequest_timeout = 3\n[warehouse HOST-1]\nurl = %s\ntoken_file = %s\ninventory_interval = 1\noutbound_interval = 3600\n' \
    "$up" "$tmp/wh.token" >"$tmp/tallyd.conf"
start_tallyd

stream_error() {
    st | jq -r '.upstreams[].streams[] | select(.name == "wh:HOST-1:inventory") | .last_error // ""'
}
on_hand() { # SKU: its on hand at HOST-1 in the replica ("" when absent)
    sqlite3 -readonly "$tmp/state/replica.db" "SELECT t.snapshot + t.pending FROM stock t
        JOIN skus s ON s.id = t.sku WHERE s.code = '$1'" 2>/dev/null
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$tallyd_pid/status"; }
has_error() { [ -n "$(stream_error)" ]; }
no_error() { [ -z "$(stream_error)" ]; }
version=1
expect_sane() { # the honest page of the upstream's current version is in the replica
    [ "$(on_hand HOST-1)" = $((5 + version)) ] && [ "$(on_hand HOST-2)" = $((7 + version)) ] &&
        no_error
}

wait_until 30 expect_sane
base_rss=$(rss_kb)
echo "tallyd RSS at start: ${base_rss} kB"
max_growth=$((48 * 1024)) # kB: an endless body must not be buffered whole

# hostile MODE HOW PATTERN: HOW is "stream" (the stream's error matches PATTERN) or "row" (the
# log gets a per-row warning matching PATTERN, naming the row and why, and the honest row of
# the page is applied).
hostile() {
    local m=$1 how=$2 pattern=$3 t0 dt
    mode "$m"
    version=$((version + 1))
    local logstart
    logstart=$(wc -c <"$tmp/tallyd.log")
    t sync >/dev/null 2>&1
    t0=$(date +%s.%N)
    if [ "$how" = stream ]; then
        wait_until 30 has_error
        dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
        local e
        e=$(stream_error)
        if [[ "$e" =~ $pattern ]]; then ok; else bad "$m: stream error '$e' does not say /$pattern/"; fi
        echo "$m: stream error after ${dt}s: $e"
    else
        row_logged() { grep -qE "$pattern" < <(tail -c +"$((logstart + 1))" "$tmp/tallyd.log"); }
        wait_until 30 row_logged
        dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
        wait_until 10 eval '[ "$(on_hand HOST-2)" = $((7 + version)) ]'
        check_eq "$(on_hand HOST-1)" $((5 + version - 1)) "$m: the bad row must not be stored"
        echo "$m: per-row error after ${dt}s: $(tail -c +"$((logstart + 1))" "$tmp/tallyd.log" |
            grep -E "$pattern" | head -1 | cut -c1-200)"
    fi
    kill -0 "$tallyd_pid" 2>/dev/null && ok || bad "$m: tallyd died"
    local rss
    rss=$(rss_kb)
    echo "$m: tallyd RSS ${rss} kB"
    [ $((rss - base_rss)) -lt "$max_growth" ] && ok ||
        bad "$m: tallyd RSS grew by $((rss - base_rss)) kB (bound $max_growth)"
    # sane again: the stream recovers by itself (interval 1 s), the new figures are read
    mode sane
    version=$((version + 1))
    wait_until 40 expect_sane
}

hostile endless stream 'larger than'
hostile trickle stream '[Tt]ime|slow|[Oo]peration'
hostile redirect stream '302'
hostile ctype stream '.'
hostile badutf8 row 'unreadable inventory rows skipped \(the first: a row with no valid sku\)'
hostile bignum row 'unreadable inventory rows skipped \(the first: HOST-1: on_hand is not an integer'

echo "hostile upstream hits per mode: $(curl -sS "$up/control/hits")"
echo "$checks checks, $fails failed"
[ "$fails" = 0 ]
