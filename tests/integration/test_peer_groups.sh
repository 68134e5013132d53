#!/usr/bin/env bash
# Integration: a caller's role comes from the kernel's credentials of the socket's peer, with
# its SUPPLEMENTARY groups, even where tallyd cannot read other processes' /proc entries (the
# shipped unit has ProtectProc=invisible).
#   test_peer_groups.sh TALLYD TALLY
# Runs as root: tallyd (as user 'daemon') and its clients (as 'nobody') run in a private mount
# and PID namespace whose /proc is mounted hidepid=invisible, so tallyd sees no process of
# 'nobody' there. 'nobody' with the writer group as a supplementary group must be a writer
# (status says so, and a write succeeds); without it, a reader (a write is refused).
# Skips (exit 77) only when not root or when the namespaces cannot be made.
set -uo pipefail
TALLYD=$1 TALLY=$2
WRITER_GROUP=users
TALLYD_USER=daemon
CLIENT_USER=nobody

if [ -z "${TALLY_PEER_GROUPS_INNER:-}" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "SKIP: test_peer_groups needs root (namespaces, setpriv)" >&2
        exit 77
    fi
    if ! unshare --mount --pid --fork --propagation private true 2>/dev/null; then
        echo "SKIP: cannot create mount and PID namespaces here (unshare failed)" >&2
        exit 77
    fi
    tmp=$(mktemp -d /tmp/tally-peergroups.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    chmod 755 "$tmp"
    TALLY_PEER_GROUPS_INNER=$tmp unshare --mount --pid --fork --propagation private \
        "$BASH" "$0" "$TALLYD" "$TALLY"
    exit $?
fi

# ---- inside the namespaces ----
tmp=$TALLY_PEER_GROUPS_INNER
fails=0 checks=0
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$1" == "$2" ]; then ok; else bad "$3: expected '$2', got '$1'"; fi; }

if ! mount -t proc -o hidepid=invisible proc /proc 2>"$tmp/mount.err"; then
    echo "SKIP: cannot mount /proc with hidepid=invisible: $(cat "$tmp/mount.err")" >&2
    exit 77
fi
# The premise: tallyd's user sees no process of another user (here: this shell, root's).
if setpriv --reuid=$TALLYD_USER --regid=$TALLYD_USER --clear-groups test -e "/proc/$$/status"; then
    bad "hidepid=invisible does not hide /proc/$$ from $TALLYD_USER: the test tests nothing"
fi

wgid=$(getent group $WRITER_GROUP | cut -d: -f3)
mkdir -p "$tmp/run" && chown $TALLYD_USER "$tmp/run"
sock=$tmp/run/tally.sock
printf '[station]\nsocket_mode = 0666\nwriter_group = %s\n' $WRITER_GROUP >"$tmp/tallyd.conf"
chown $TALLYD_USER "$tmp/tallyd.conf" # its user alone may read it (tallyd refuses mode & 077)
chmod 600 "$tmp/tallyd.conf"
setpriv --reuid=$TALLYD_USER --regid=$TALLYD_USER --clear-groups \
    "$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/run/state" --socket "$sock" \
    --station PEER-TEST --log-level warning >>"$tmp/tallyd.log" 2>&1 &
pid=$!
up=
for _ in $(seq 200); do
    "$TALLY" --socket "$sock" status >/dev/null 2>&1 && up=1 && break
    sleep 0.05
done
if [ -z "$up" ]; then
    echo "tallyd did not start:" >&2
    cat "$tmp/tallyd.log" >&2
    kill -9 $pid 2>/dev/null
    exit 1
fi

# Seed one warehouse and one SKU (root is a writer).
printf 'code,name,country\nES-MAD,Madrid,ES\n' >"$tmp/warehouses.csv"
printf 'sku,product_id,title,price_minor,currency\nPG-1,P,Peer,100,EUR\n' >"$tmp/catalog.csv"
"$TALLY" --socket "$sock" import warehouses "$tmp/warehouses.csv" >/dev/null || bad "import warehouses"
"$TALLY" --socket "$sock" import catalog "$tmp/catalog.csv" >/dev/null || bad "import catalog"

as_client() { setpriv --reuid=$CLIENT_USER --regid=nogroup "$@"; }
role() { as_client "$@" "$TALLY" --socket "$sock" --json status | jq -r .role; }

expect_eq "$(role --groups="$wgid")" writer "$CLIENT_USER with supplementary group $WRITER_GROUP: role"
out=$(as_client --groups="$wgid" "$TALLY" --socket "$sock" --json receive PG-1 3 --warehouse ES-MAD \
    --id peer-1 2>&1)
expect_eq "$(echo "$out" | jq -r .duplicate 2>/dev/null)" false \
    "$CLIENT_USER with supplementary group $WRITER_GROUP may write ($out)"
expect_eq "$(role --clear-groups)" reader "$CLIENT_USER without the writer group: role"
as_client --clear-groups "$TALLY" --socket "$sock" receive PG-1 1 --warehouse ES-MAD >/dev/null 2>&1
expect_eq "$?" 6 "$CLIENT_USER without the writer group may not write"
# Many supplementary groups (more than fit a small buffer), the writer group last.
many=$(seq -s, 2000 2100),$wgid
expect_eq "$(role --groups="$many")" writer "$CLIENT_USER with 102 groups, the writer group last: role"
expect_eq "$(role --groups="$(seq -s, 2000 2100)")" reader "$CLIENT_USER with 101 other groups: role"

kill -TERM $pid
wait $pid
expect_eq "$?" 0 "tallyd exit status after SIGTERM"
[ "$fails" = 0 ] || tail -n 20 "$tmp/tallyd.log" >&2
echo "test_peer_groups: $checks checks, $fails failed"
[ "$fails" = 0 ]
