#!/usr/bin/env bash
# Secrets (issue 11, "Security, tested"), against tally-sim with every kind of upstream: a tally
# warehouse (bearer token), Goodcang (app-token header), 4PX (signed URLs) and the marketplace
# (signed requests, access token), each secret a random string made here.
#   1. A config file or a secret file that group or others may read (mode & 077) is refused at
#      start, the message naming the file and the fix (chmod 600), never the secret.
#   2. A run with refused credentials (wrong tokens: auth failures, exceptions), then the right
#      ones written into the files (re-read: signing, headers, pushes), with --log-level debug:
#      no secret, right or wrong, in the log, in any client output (status, outbox, exceptions,
#      their --json forms), or in the replica's files (database, WAL).
#   3. No core dump: tallyd is not dumpable (prctl PR_SET_DUMPABLE 0, main.c). With
#      `ulimit -c unlimited` and the kernel's core_pattern writing "core" files in the working
#      directory, a SIGABRT leaves no core of tallyd; a control process (sleep) in the same
#      directory does leave one (else the machine writes no cores there: that part is skipped,
#      said so). Should a core of tallyd exist, it is grepped for the secrets.
#   test_secrets.sh TALLYD TALLY TALLY_SIM
set -uo pipefail
export LC_ALL=C
TALLYD=$(realpath "$1") TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-secrets.XXXXXX)
. "$(dirname "$0")/synclib.sh" # umask 077
trap 'sync_cleanup; echo "test_secrets: $((checks - fails)) passed, $fails failed"' EXIT

rnd() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
WH_TOKEN=whtok-$(rnd)
APP_SECRET=appsec-$(rnd)
ACCESS_TOKEN=acctok-$(rnd)
WRONG_WH=wrongwh-$(rnd)
WRONG_ACCESS=wrongacc-$(rnd)
WRONG_APP=wrongapp-$(rnd)
secrets=("$WH_TOKEN" "$APP_SECRET" "$ACCESS_TOKEN" "$WRONG_WH" "$WRONG_ACCESS" "$WRONG_APP")
mkdir -p "$tmp/sim"
echo "$WH_TOKEN" >"$tmp/sim/wh.token"
echo "$APP_SECRET" >"$tmp/sim/app.secret"
echo "$ACCESS_TOKEN" >"$tmp/sim/access.token"
start_sim --skus 20 --orders 4 --seed 5 --warehouses ES-MAD:tally,UK-GC:goodcang,US-4PX:fourpx \
    --wh-token-file "$tmp/sim/wh.token" --app-secret-file "$tmp/sim/app.secret" \
    --access-token-file "$tmp/sim/access.token"

# The files tallyd reads: wrong ones first.
echo "$WRONG_WH" >"$tmp/wh.token"
echo "$WRONG_APP" >"$tmp/fpx.secret"
echo "$WRONG_APP" >"$tmp/app.secret" # the marketplace's signing key, wrong
echo "$WRONG_ACCESS" >"$tmp/access.token"
{
    printf '[station]\nname = SECRETS-TEST\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
    carriers_conf
    printf '[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = %s\n' "$base" "$tmp/wh.token"
    printf 'inventory_interval = 1\noutbound_interval = 2\n'
    printf '[warehouse UK-GC]\nkind = goodcang\nurl = %s/wh/UK-GC\n' "$base"
    printf 'app_key = tally-sim-3pl-key\napp_token_file = %s\n' "$tmp/wh.token"
    printf 'inventory_interval = 1\noutbound_interval = 2\n'
    printf '[warehouse US-4PX]\nkind = fourpx\nurl = %s/wh/US-4PX\n' "$base"
    printf 'app_key = tally-sim-3pl-key\napp_secret_file = %s\n' "$tmp/fpx.secret"
    printf 'inventory_interval = 1\noutbound_interval = 2\n'
    printf '[marketplace]\ngateway = %s/sync\napp_key = tally-sim-app-key\n' "$base"
    printf 'app_secret_file = %s\naccess_token_file = %s\n' "$tmp/app.secret" "$tmp/access.token"
    printf 'catalog_interval = 2\norders_interval = 2\n'
} >"$tmp/tallyd.conf"

# ---- 1. files others may read are refused at start
# start_refused FILE: tallyd must not start while FILE is mode 0640; its message names FILE
# and chmod 600.
start_refused() {
    local f=$1
    chmod 640 "$f"
    "$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" --socket "$tmp/tally.sock" \
        >"$tmp/refused.out" 2>&1 &
    local pid=$! rc
    gone() { ! kill -0 "$pid" 2>/dev/null; }
    wait_until 15 gone || kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rc=$?
    chmod 600 "$f"
    echo "mode 0640 $(basename "$f"): exit $rc: $(grep -m1 -E 'mode|chmod' "$tmp/refused.out")"
    [ "$rc" != 0 ] && ok || bad "tallyd started with $f mode 0640"
    grep -qF "$f" "$tmp/refused.out" && ok || bad "the refusal does not name $f: $(cat "$tmp/refused.out")"
    grep -q "chmod 600" "$tmp/refused.out" && ok || bad "the refusal does not say chmod 600: $(cat "$tmp/refused.out")"
    cat "$tmp/refused.out" >>"$tmp/all-outputs"
}
start_refused "$tmp/tallyd.conf"
start_refused "$tmp/wh.token"
start_refused "$tmp/fpx.secret"
start_refused "$tmp/access.token"
start_refused "$tmp/app.secret"

# A systemd credential (a relative name in $CREDENTIALS_DIRECTORY) as systemd leaves it: 0400,
# its unit's user reading it through an ACL entry, which stat shows as mode 0440. Accepted:
# access to that directory is systemd's to restrict.
mkdir -p "$tmp/creds"
echo "$WH_TOKEN" >"$tmp/creds/wh"
chmod 440 "$tmp/creds/wh"
printf '[station]\nname = CREDS-TEST\n[sync]\nretry_max = 2\n[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = wh\ninventory_interval = 1\n' \
    "$base" >"$tmp/creds.conf"
CREDENTIALS_DIRECTORY=$tmp/creds "$TALLYD" --config "$tmp/creds.conf" --state-dir "$tmp/creds-state" \
    --socket "$tmp/creds.sock" 2>>"$tmp/tallyd.log" &
creds_pid=$!
creds_up() { "$TALLY" --socket "$tmp/creds.sock" --json status 2>/dev/null |
    jq -e '.upstreams[] | select(.name == "wh:ES-MAD") | .link == "up"' >/dev/null; }
wait_until 30 creds_up && ok
kill -TERM "$creds_pid" 2>/dev/null
wait "$creds_pid" 2>/dev/null
echo "systemd credential (mode 0440 in \$CREDENTIALS_DIRECTORY): accepted, link up"

# ---- 2. a run with refused credentials, then the right ones
"$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" --socket "$tmp/tally.sock" \
    --log-level debug 2>>"$tmp/tallyd.log" &
tallyd_pid=$!
up_sock() { t status >/dev/null 2>&1; }
wait_until 20 up_sock || exit 1
link_of() { st | jq -r --arg n "$1" '.upstreams[] | select(.name == $n) | .link'; }
link_is() { [ "$(link_of "$1")" = "$2" ]; }
for u in wh:ES-MAD wh:UK-GC wh:US-4PX mp; do wait_until 30 link_is $u auth_failed; done
# every output a client shows, while the links are refused
capture() {
    {
        t status
        st
        t outbox --limit 100
        t --json outbox --limit 100
        t exceptions
        t --json exceptions
        t sync
    } >>"$tmp/all-outputs" 2>&1
}
capture
exc=$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT COUNT(*) FROM exceptions WHERE state <> 'resolved'")
[ "${exc:-0}" -ge 1 ] && ok || bad "no exception for the refused credentials (the run tests less than it says)"

# the right secrets, written into the files tallyd reads (re-read without a restart)
echo "$WH_TOKEN" >"$tmp/wh.token.new" && mv "$tmp/wh.token.new" "$tmp/wh.token"
echo "$WH_TOKEN" >"$tmp/fpx.secret.new" && mv "$tmp/fpx.secret.new" "$tmp/fpx.secret"
echo "$APP_SECRET" >"$tmp/app.secret.new" && mv "$tmp/app.secret.new" "$tmp/app.secret"
echo "$ACCESS_TOKEN" >"$tmp/access.token.new" && mv "$tmp/access.token.new" "$tmp/access.token"
for u in wh:ES-MAD wh:UK-GC wh:US-4PX mp; do wait_until 40 link_is $u up; done
# a movement pushed with the token (its Authorization header)
mark_rounds
wait_until 30 inventory_done
sku=$(sqlite3 -readonly "$tmp/state/replica.db" "SELECT s.code FROM stock t JOIN skus s
    ON s.id = t.sku JOIN warehouses w ON w.id = t.warehouse WHERE w.code = 'ES-MAD' LIMIT 1")
t receive "$sku" 2 --warehouse ES-MAD --id sec-1 >>"$tmp/all-outputs" 2>&1 ||
    bad "receive at ES-MAD refused"
wait_until 30 outbox_empty
mark_rounds
wait_until 30 inventory_done
capture
echo "links: $(st | jq -c '[.upstreams[] | {(.name): .link}] | add')"

# the secrets were in use: the simulator saw the movement pushed with the right token
check_eq "$(ctl "$base/control/movements?wh=ES-MAD" | jq '.movements["sec-1"] // 0')" 1 \
    "the movement pushed with the right token"

# ---- 3. core dumps (tallyd still running, all secrets loaded and used)
core_dir=$tmp/cwd
mkdir -p "$core_dir"
core_pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null)
(cd "$core_dir" && ulimit -c unlimited && exec sleep 60) &
ctl_pid=$!
sleep 0.3
kill -ABRT "$ctl_pid"
wait "$ctl_pid" 2>/dev/null
if ls "$core_dir"/core* >/dev/null 2>&1; then
    rm -f "$core_dir"/core*
    kill -TERM "$tallyd_pid"
    wait "$tallyd_pid" 2>/dev/null
    # same config, same secrets, read at start and used for a round
    (cd "$core_dir" && ulimit -c unlimited &&
        exec "$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" \
            --socket "$tmp/tally.sock" --log-level debug 2>>"$tmp/tallyd.log") &
    tallyd_pid=$!
    wait_until 20 up_sock
    for u in wh:ES-MAD wh:UK-GC wh:US-4PX mp; do wait_until 40 link_is $u up; done
    kill -ABRT "$tallyd_pid"
    wait "$tallyd_pid" 2>/dev/null
    tallyd_pid=
    sleep 0.5
    cores=$(ls "$core_dir"/core* 2>/dev/null)
    if [ -z "$cores" ]; then ok; else
        bad "tallyd left a core dump: $cores ($(du -k $cores | awk '{print $1}') kB)"
        for s in "${secrets[@]}"; do
            grep -aqF -- "$s" $cores && bad "the core dump holds a secret (${s%%-*}-...)"
        done
    fi
    echo "core dumps: control process left one (core_pattern '$core_pattern'); tallyd left ${cores:-none}"
else
    echo "SKIP (core part only): a control process left no core file in its directory" \
        "(core_pattern '$core_pattern'): cannot tell whether tallyd would"
    kill -TERM "$tallyd_pid"
    wait "$tallyd_pid" 2>/dev/null
    tallyd_pid=
fi

# ---- 2 (end). no secret anywhere
where=("$tmp/tallyd.log" "$tmp/all-outputs" "$tmp/state"/replica.db*)
echo "searched: $(du -ck "${where[@]}" | tail -1 | awk '{print $1}') kB in ${where[*]##*/}"
echo "log lines: $(wc -l <"$tmp/tallyd.log"), debug lines: $(grep -c -i debug "$tmp/tallyd.log")"
for s in "${secrets[@]}"; do
    found=$(grep -alF -- "$s" "${where[@]}" 2>/dev/null | tr '\n' ' ')
    if [ -z "$found" ]; then ok; else bad "secret ${s%%-*}-... found in: $found"; fi
done
# under the sanitizers: nothing reported
if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$tmp/tallyd.log"; then
    bad "the sanitizers reported: $(grep -m1 -E "AddressSanitizer|LeakSanitizer|runtime error:" "$tmp/tallyd.log")"
else ok; fi
# the search itself works: the secret files hold them
grep -qF -- "$WH_TOKEN" "$tmp/wh.token" && ok || bad "the search finds nothing even where it must"
[ "$fails" = 0 ]
