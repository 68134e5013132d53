#!/usr/bin/env bash
# The state directory belongs to one tallyd: a second tallyd on the same directory (with a
# socket of its own) is refused with an error naming the first one's pid, exits non-zero and
# leaves the first serving; a state directory others may write, or that another user owns, is
# refused before anything in it is opened; one others may only read is tightened to 0700.
#   test_state_dir.sh TALLYD TALLY
set -uo pipefail
TALLYD=$1 TALLY=$2
tmp=$(mktemp -d /tmp/tally-statedir.XXXXXX)
pids=()
fails=0 checks=0

cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$1" == "$2" ]; then ok; else bad "$3: expected '$2', got '$1'"; fi; }
expect_match() { if grep -Eq -- "$2" <<<"$1"; then ok; else bad "$3: '$2' not in: $1"; fi; }

# Starts tallyd in the background on state dir $1 and socket $2; waits until it answers.
start() {
    "$TALLYD" --state-dir "$1" --socket "$2" --station SD-TEST >>"$tmp/first.log" 2>&1 &
    first=$!
    pids+=("$first")
    for _ in $(seq 200); do
        "$TALLY" --socket "$2" status >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "tallyd did not start:" >&2
    cat "$tmp/first.log" >&2
    exit 1
}

# Runs tallyd in the foreground (bounded: a tallyd that starts serving is killed after 5 s).
run_second() {
    timeout -s KILL 5 "$TALLYD" --state-dir "$1" --socket "$2" --station SD-TEST 2>&1
}

# ---- two daemons on one state directory ----
mkdir -m 700 "$tmp/state"
start "$tmp/state" "$tmp/one.sock"
out=$(run_second "$tmp/state" "$tmp/two.sock"); rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 137 ]; then ok; else bad "second tallyd on the same state dir exited $rc"; fi
expect_match "$out" "pid $first\b" "second tallyd names the first one's pid"
expect_match "$out" "$tmp/state" "second tallyd names the state directory"
if [ -e "$tmp/two.sock" ]; then bad "second tallyd bound its socket"; else ok; fi
expect_eq "$(cat "$tmp/state/tallyd.lock" 2>/dev/null | tr -d '[:space:]')" "$first" \
    "the lock file holds the serving tallyd's pid"
# The first keeps serving, and writes still work.
out=$("$TALLY" --socket "$tmp/one.sock" status 2>&1); rc=$?
expect_eq "$rc" 0 "first tallyd still answers status"
kill -0 "$first" 2>/dev/null && ok || bad "first tallyd died"
# Once the first stops, the directory is free again.
kill -TERM "$first"
wait "$first"
expect_eq "$?" 0 "first tallyd stops cleanly"
start "$tmp/state" "$tmp/two.sock"
ok
kill -TERM "$first"
wait "$first"
# A kill -9 releases the lock too (the kernel drops it with the process).
start "$tmp/state" "$tmp/one.sock"
kill -9 "$first"
wait "$first" 2>/dev/null
start "$tmp/state" "$tmp/one.sock"
ok
kill -TERM "$first"
wait "$first"

# ---- modes and owners ----
mkdir -m 700 "$tmp/open"
chmod 0777 "$tmp/open"
out=$(run_second "$tmp/open" "$tmp/open.sock"); rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 137 ]; then ok; else bad "state dir mode 0777 accepted (exit $rc)"; fi
expect_match "$out" "$tmp/open.*(group|others)" "mode 0777 refused with a reason"
if [ -e "$tmp/open/replica.db" ]; then bad "replica created in a 0777 state dir"; else ok; fi
expect_eq "$(stat -c %a "$tmp/open")" 777 "a refused state dir is left as it was"

mkdir -m 700 "$tmp/gw"
chmod 0770 "$tmp/gw"
out=$(run_second "$tmp/gw" "$tmp/gw.sock"); rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 137 ]; then ok; else bad "group-writable state dir accepted (exit $rc)"; fi
if [ -e "$tmp/gw/replica.db" ]; then bad "replica created in a group-writable state dir"; else ok; fi

# Readable by others but writable only by us: tightened to 0700, then used.
mkdir -m 700 "$tmp/readable"
chmod 0755 "$tmp/readable"
start "$tmp/readable" "$tmp/readable.sock"
expect_eq "$(stat -c %a "$tmp/readable")" 700 "a 0755 state dir of ours is tightened to 0700"
kill -TERM "$first"
wait "$first"

# Owned by another user: refused, whatever its mode.
if [ "$(id -u)" = 0 ]; then
    mkdir -m 700 "$tmp/theirs"
    chown 65534:65534 "$tmp/theirs"
    theirs=$tmp/theirs
else
    theirs=/ # root's
fi
out=$(run_second "$theirs" "$tmp/theirs.sock"); rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 137 ]; then ok; else bad "state dir of another user accepted (exit $rc)"; fi
expect_match "$out" "owned by" "another user's state dir refused with a reason"
if [ -e "$theirs/replica.db" ] && [ "$theirs" != / ]; then bad "replica created in another user's dir"; else ok; fi

# A state dir that is not a directory.
: >"$tmp/plain"
out=$(run_second "$tmp/plain" "$tmp/plain.sock"); rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 137 ]; then ok; else bad "a file as state dir accepted (exit $rc)"; fi
expect_match "$out" "not a directory" "a file as state dir refused with a reason"

echo "test_state_dir: $checks checks, $fails failed"
[ "$fails" = 0 ]
