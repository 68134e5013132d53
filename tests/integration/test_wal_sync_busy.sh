#!/usr/bin/env bash
# The start after a failed sync of the WAL (main.c wal_sync_recover: the mark
# STATE_DIR/wal-sync-failed) while another process reads the replica. The WAL holds frames (a
# writer that ended without a checkpoint) and a reader keeps a read transaction open in it:
#   - a reader that stays: tallyd does not serve (exit 74), the log says a reader keeps the WAL
#     from being emptied, and the mark stays for the next start;
#   - a reader that ends while tallyd waits for it (as opening waits, not the loop's 2 ms):
#     tallyd empties the WAL, removes the mark and serves;
#   - the WAL's frames are in the database after it.
#   test_wal_sync_busy.sh TALLYD TALLY
set -uo pipefail
TALLYD=$1 TALLY=$2
tmp=$(mktemp -d /tmp/tally-walbusy.XXXXXX)
pid= rpid=
fails=0 checks=0
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    [ -n "$rpid" ] && kill -9 "$rpid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
check_eq() { if [ "$1" == "$2" ]; then ok; else bad "$3: expected '$2', got '$1'"; fi; }

state=$tmp/state db=$tmp/state/replica.db sock=$tmp/s.sock
run() { exec "$TALLYD" --state-dir "$state" --socket "$sock" --station SD-TEST >>"$tmp/tallyd.log" 2>&1; }
serving() {
    for _ in $(seq 200); do "$TALLY" --socket "$sock" status >/dev/null 2>&1 && return 0; sleep 0.05; done
    return 1
}

# A replica, then frames left in its WAL by a writer that stops without a checkpoint.
run &
pid=$!
serving || { echo "tallyd did not start" >&2; cat "$tmp/tallyd.log" >&2; exit 1; }
kill -TERM "$pid"
wait "$pid"
pid=
# frames: appends a row in frames no checkpoint copied (a checkpoint copies all frames even
# when a reader keeps it from emptying the WAL; a reader then reads the database alone)
frames() {
    python3 - "$db" <<'PY'
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("CREATE TABLE IF NOT EXISTS walbusy(x)")
c.execute("INSERT INTO walbusy VALUES (1)")
os._exit(0)
PY
    [ -s "$db-wal" ] || { echo "no frames left in the WAL" >&2; exit 1; }
}
frames
: >"$state/wal-sync-failed"

# reader: holds a read transaction in the WAL until $tmp/release exists.
reader() {
    rm -f "$tmp/reading" "$tmp/release"
    python3 - "$db" "$tmp" <<'PY' &
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN")
c.execute("SELECT count(*) FROM walbusy").fetchall()
open(os.path.join(sys.argv[2], "reading"), "w").close()
while not os.path.exists(os.path.join(sys.argv[2], "release")):
    time.sleep(0.01)
c.execute("COMMIT")
PY
    rpid=$!
    for _ in $(seq 500); do [ -e "$tmp/reading" ] && return 0; sleep 0.01; done
    echo "the reader did not start" >&2
    exit 1
}

# 1. A reader that stays: no start.
reader
timeout -s KILL 60 "$TALLYD" --state-dir "$state" --socket "$sock" --station SD-TEST >>"$tmp/tallyd.log" 2>&1
check_eq "$?" 74 "exit status while a reader stays in the WAL"
check_eq "$(grep -c 'another process keeps a read transaction open on the replica' "$tmp/tallyd.log")" 1 \
    "the log says a reader keeps the WAL from being emptied"
check_eq "$([ -e "$state/wal-sync-failed" ] && echo kept)" kept "the mark kept for the next start"
: >"$tmp/release"
wait "$rpid"
rpid=

# 2. A reader that ends while tallyd waits for it: tallyd serves. The reader is released once
# tallyd holds the WAL open (it checkpoints right after opening the replica), or once tallyd
# is gone (a start that did not wait).
frames
reader
run &
pid=$!
while kill -0 "$pid" 2>/dev/null &&
    ! grep -q 'replica\.db-wal$' < <(ls -l "/proc/$pid/fd" 2>/dev/null); do
    sleep 0.01
done
: >"$tmp/release"
wait "$rpid"
rpid=
if serving; then ok; else bad "tallyd did not start once the reader ended: $(tail -3 "$tmp/tallyd.log")"; fi
check_eq "$([ -e "$state/wal-sync-failed" ] && echo left)" "" "the mark removed"
check_eq "$(grep -c 'the WAL emptied, before serving' "$tmp/tallyd.log")" 1 "the WAL emptied before serving"
check_eq "$(sqlite3 -readonly "$db" 'SELECT count(*) FROM walbusy')" 2 "the WAL's frames kept"
kill -TERM "$pid" 2>/dev/null
wait "$pid"
pid=
echo "wal_sync_busy: $checks checks, $fails failed"
[ "$fails" = 0 ]
