#!/usr/bin/env bash
# Refused credentials are one upstream-level problem (issue 8, defect 6), for both connectors:
# a warehouse whose bearer token is wrong (HTTP 401) and a marketplace whose access token is
# wrong (IllegalAccessToken) each show link `auth_failed` in `tally status`, with ONE open
# exception each, while the station's movements wait as `pending` (never held, no exception
# per row). Writing the right token into the file tallyd reads fixes it without a restart or a
# `tally sync`: the rows drain, applied once each, and the exceptions resolve by themselves.
# Then the interactions: a refused token and a cut link at once (no hot loop; the marketplace
# goes on), a restart after the token was fixed (the old exception resolves), a file fixed
# before the refusal came back (read again).
#   test_auth.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-auth.XXXXXX)
. "$(dirname "$0")/synclib.sh"
trap 'sync_cleanup; echo "test_auth: $((checks - fails)) passed, $fails failed"' EXIT

sql() { sqlite3 -readonly "$tmp/state/replica.db" "$@"; }
link_of() { st | jq -r --arg n "$1" '.upstreams[] | select(.name == $n) | .link'; }
link_is() { [ "$(link_of "$1")" = "$2" ]; }
open_exceptions() { sql "SELECT COUNT(*) FROM exceptions WHERE state <> 'resolved'"; }

start_sim --skus 40 --orders 0 --seed 8 --warehouses ES-MAD
write_config ES-MAD
echo tally-sim-app-secret >"$tmp/app.secret"
echo tally-sim-access-token >"$tmp/access.token"
{
    carriers_conf
    printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
    printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
    printf 'catalog_interval = 2\norders_interval = 2\n'
} >>"$tmp/tallyd.conf"

# 1. With the right tokens: the catalog and the stock are known, both links up.
start_tallyd
mark_rounds
wait_until 60 inventory_done
wait_until 30 link_is mp up
kill -TERM "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=

# 2. Both tokens expire (tallyd reads the old ones at start): every call is refused.
echo expired-wh-token >"$tmp/wh.token"
echo expired-access-token >"$tmp/access.token"
start_tallyd
wait_until 30 link_is wh:ES-MAD auth_failed
wait_until 30 link_is mp auth_failed
skus=($(sql "SELECT code FROM skus ORDER BY id LIMIT 5"))
for i in 0 1 2 3 4; do
    t receive "${skus[$i]}" 2 --warehouse ES-MAD --id "auth-$i" >/dev/null ||
        bad "receive auth-$i refused"
done
# Probes (one request at a time, every retry_max = 2 s) meet the same refusal: let a few run.
# Rows refused for the token (the old behaviour) would be held, each with its exception.
sleep 4.5
check_eq "$(link_of wh:ES-MAD)" auth_failed "warehouse link after a refused token"
check_eq "$(link_of mp)" auth_failed "marketplace link after a refused token"
check_eq "$(st | jq '[.upstreams[] | select(.name == "wh:ES-MAD") | .outbox.held] | add')" 0 \
    "rows held for a refused token"
check_eq "$(st | jq '[.upstreams[] | select(.name == "wh:ES-MAD") | .outbox.pending] | add')" 5 \
    "rows waiting for the token"
check_eq "$(sql "SELECT COUNT(*) FROM outbox WHERE state = 'held'")" 0 "held outbox rows"
check_eq "$(open_exceptions)" 2 "open exceptions (one per upstream with a refused token)"
check_eq "$(sql "SELECT COUNT(*) FROM exceptions WHERE state <> 'resolved'
    AND kind = 'upstream_rejected' AND message LIKE 'wh:ES-MAD refused%credentials%'")" 1 \
    "the warehouse's credentials exception"
check_eq "$(sql "SELECT COUNT(*) FROM exceptions WHERE state <> 'resolved'
    AND kind = 'upstream_rejected' AND message LIKE 'mp refused%credentials%'")" 1 \
    "the marketplace's credentials exception"
st | jq -e '.upstreams[] | select(.name == "wh:ES-MAD") | .last_error | test("401")' \
    >/dev/null && ok || bad "status does not say why the warehouse link failed"
if grep -q auth_failed <<<"$(t status)"; then ok; else bad "tally status does not show auth_failed"; fi
check_eq "$(ctl "$base/control/movements?wh=ES-MAD" | jq '[.movements | to_entries[]
    | select(.key | startswith("auth-"))] | length')" 0 "movements applied with a refused token"

# 3. The right tokens are written into the files tallyd reads: no restart, no `tally sync`.
echo tally-sim-wh-token >"$tmp/wh.token.new" && mv "$tmp/wh.token.new" "$tmp/wh.token"
echo tally-sim-access-token >"$tmp/access.token"
wait_until 30 outbox_empty
wait_until 30 link_is wh:ES-MAD up
wait_until 30 link_is mp up
ctl "$base/control/movements?wh=ES-MAD" >"$tmp/applied.json"
check_eq "$(jq '[.movements | to_entries[] | select(.key | startswith("auth-")) | .value]
    | (length, max)' "$tmp/applied.json" | paste -sd' ')" "5 1" \
    "movements applied once each after the fix"
check_eq "$(open_exceptions)" 0 "open exceptions after the fix"
check_eq "$(sql "SELECT COUNT(*) FROM exceptions WHERE resolved_by = 'tallyd'")" 2 \
    "exceptions resolved by tallyd"

post() { ctl -X POST -H 'Content-Type: application/json' -d "$2" "$base/control/$1"; }
refused_so_far() { ctl "$base/control/stats" | jq '.link_refused["wh:ES-MAD"] // 0'; }
# 4. The warehouse refuses the token (a 401 on every call), then its link is cut: the probes
#    fail for another reason now, and still wait between tries (each tick probing again would
#    be a hot loop). The marketplace, another upstream, is not held by the warehouse's token.
post faults '{"target":"wh:ES-MAD","kind":"status","status":401}' >/dev/null
wait_until 30 link_is wh:ES-MAD auth_failed
check_eq "$(link_of mp)" up "marketplace link while the warehouse refuses the token"
post link '{"target":"wh:ES-MAD","up":false}' >/dev/null
r0=$(refused_so_far)
sleep 6
r1=$(refused_so_far)
# retry_max = 2 s, jittered backoff: a dozen probes or so; without a wait, thousands.
if [ $((r1 - r0)) -le 40 ]; then ok; else
    bad "$((r1 - r0)) probes of a cut link in 6 s while the token is refused"
fi
check_eq "$(link_of wh:ES-MAD)" auth_failed "warehouse link while cut after a refused token"
check_eq "$(open_exceptions)" 1 "open exceptions while the warehouse refuses the token"

# 5. tallyd stops with the exception open; the token is fixed meanwhile: after the restart the
#    warehouse answers, and the exception of the previous run resolves.
kill -TERM "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
post link '{"target":"wh:ES-MAD","up":true}' >/dev/null
ctl -X DELETE "$base/control/faults" >/dev/null
start_tallyd
wait_until 30 link_is wh:ES-MAD up
wait_until 10 test "$(open_exceptions)" = 0

# 6. tallyd starts with an expired token and the file is fixed while its first calls are on
#    their way (the warehouse answers slowly): the refusal comes after the change. The file
#    is not the token tallyd holds: it is read again (not only after a later change).
kill -TERM "$tallyd_pid"
wait "$tallyd_pid" 2>/dev/null
tallyd_pid=
echo expired-wh-token >"$tmp/wh.token"
sed -i 's/^request_timeout = .*/request_timeout = 15/' "$tmp/tallyd.conf" # outlasts the latency
post faults '{"target":"wh:ES-MAD","latency_ms":3000}' >/dev/null
start_tallyd
echo tally-sim-wh-token >"$tmp/wh.token.new" && mv "$tmp/wh.token.new" "$tmp/wh.token"
wait_until 30 link_is wh:ES-MAD auth_failed
ctl -X DELETE "$base/control/faults" >/dev/null
wait_until 30 link_is wh:ES-MAD up
check_eq "$(open_exceptions)" 0 "open exceptions once the fixed file was read"
[ "$fails" = 0 ]
