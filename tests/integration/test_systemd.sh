#!/usr/bin/env bash
# The systemd files are valid: the unit passes `systemd-analyze verify` (with ExecStart pointed
# at the built tallyd, since nothing is installed here), and the sysusers and tmpfiles snippets
# create what the unit expects when applied to an empty root.
#   test_systemd.sh SOURCE_DIR TALLYD
set -euo pipefail
src=$1 tallyd=$2
tmp=$(mktemp -d /tmp/tally-systemd.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0 checks=0
check() { checks=$((checks + 1)); if ! "$@"; then fails=$((fails + 1)); echo "FAIL: $*" >&2; fi; }

sed "s|/usr/local/sbin/tallyd|$tallyd|" "$src/systemd/tallyd.service" >"$tmp/tallyd.service"
out=$(timeout 60 systemd-analyze verify "$tmp/tallyd.service" 2>&1) || { echo "$out" >&2; fails=$((fails + 1)); }
checks=$((checks + 1))
if [ -n "$out" ]; then echo "systemd-analyze verify said: $out" >&2; fails=$((fails + 1)); fi
checks=$((checks + 1))

mkdir -p "$tmp/root/etc"
timeout 60 systemd-sysusers --root="$tmp/root" "$src/systemd/tally.sysusers" >/dev/null 2>&1
check grep -q '^tally:' "$tmp/root/etc/passwd"
check grep -q '^tally-writers:' "$tmp/root/etc/group"
timeout 60 systemd-tmpfiles --root="$tmp/root" --create "$src/systemd/tally.tmpfiles" >/dev/null 2>&1
check test "$(stat -c %a "$tmp/root/var/lib/tally")" = 700
check test -d "$tmp/root/etc/tally"

# The example config is accepted by tallyd as written (it only has to parse: start it on a
# temporary state dir and socket, then stop it).
sed -e "s|^state_dir = .*|state_dir = $tmp/state|" -e "s|^socket = .*|socket = $tmp/s.sock|" \
    -e "s|^writer_group = .*|writer_group = |" "$src/systemd/tallyd.conf.example" >"$tmp/tallyd.conf"
chmod 600 "$tmp/tallyd.conf" # as README "Running under systemd" says to install it
"$tallyd" --config "$tmp/tallyd.conf" --log-level warning &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/s.sock" ] && break; sleep 0.05; done
check test -S "$tmp/s.sock"
check test "$(stat -c %a "$tmp/s.sock")" = 660
kill -TERM $pid
wait $pid
check test $? -eq 0

echo "test_systemd: $checks checks, $fails failed"
[ "$fails" = 0 ]
