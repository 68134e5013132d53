#!/usr/bin/env bash
# A write that gets no answer says what to do: the client makes the movement id when none is
# given, and on a timeout or a lost connection names it ("run the same command again with
# --id ID"), exit 7; running it again with that id is applied once, whether or not the first
# one was recorded.
#   1. tallyd stopped (SIGSTOP): nothing is sent; after SIGCONT the retry is applied once.
#   2. the answer lost after the request reached tallyd (a proxy passes the request on and
#      drops its answer): recorded; the retry with the id is a duplicate, not applied again.
#   test_write_timeout.sh TALLYD TALLY TALLY_GEN
set -uo pipefail
TALLYD=$1 TALLY=$2 GEN=$3
tmp=$(mktemp -d /tmp/tally-wto.XXXXXX)
sock=$tmp/tally.sock
pid= proxy=
fails=0 checks=0

cleanup() {
    [ -n "$proxy" ] && kill "$proxy" 2>/dev/null
    if [ -n "$pid" ]; then
        kill -CONT "$pid" 2>/dev/null
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
expect_eq() { if [ "$1" == "$2" ]; then ok; else bad "$3: expected '$2', got '$1'"; fi; }
expect_match() { if grep -Eq -- "$2" <<<"$1"; then ok; else bad "$3: '$2' not in: $1"; fi; }

t() { "$TALLY" --socket "$sock" "$@"; }
j() { "$TALLY" --socket "$sock" --json "$@"; }

"$TALLYD" --state-dir "$tmp/state" --socket "$sock" --station WTO-TEST >>"$tmp/tallyd.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
    t status >/dev/null 2>&1 && break
    sleep 0.05
done
t status >/dev/null 2>&1 || { cat "$tmp/tallyd.log" >&2; exit 1; }
"$GEN" --out "$tmp/data" --skus 5 --warehouses 2 --orders 0 --seed 8 >/dev/null || exit 1
for kind in warehouses catalog stock; do
    t import "$kind" "$tmp/data/$kind.csv" >/dev/null || { echo "import $kind failed" >&2; exit 1; }
done
sku=$(sed -n 2p "$tmp/data/catalog.csv" | cut -d, -f1)
wh=$(sed -n 2p "$tmp/data/warehouses.csv" | cut -d, -f1)
onhand() { j stock "$sku" | jq -r --arg w "$wh" '.warehouses[] | select(.warehouse == $w) | .on_hand'; }
retry_id() { printf '%s' "$1" | grep -o -- '--id [^ ]*' | head -1 | cut -d' ' -f2; }
start=$(onhand)
[ -n "$start" ] && ok || bad "no stock row for $sku at $wh"

# --- 1. tallyd stopped: the hello gets no answer, the movement is never sent
kill -STOP "$pid"
out=$(TALLY_TIMEOUT=1 "$TALLY" --socket "$sock" receive "$sku" 5 --warehouse "$wh" 2>&1)
rc=$?
expect_eq "$rc" 7 "receive with tallyd stopped: exit status"
expect_match "$out" "no answer from tallyd within 1 s" "the message says how long it waited"
expect_match "$out" "not sent, nothing was recorded" "the message says it was not recorded"
expect_match "$out" "run the same command again with --id m-[0-9a-f]{11}-[0-9a-f]{16}" \
    "the message names the movement id to retry with"
id=$(retry_id "$out")
# A shipment without --id is numbered by tallyd: no id to name, a repeat would be another one.
out=$(TALLY_TIMEOUT=1 "$TALLY" --socket "$sock" ship O-77 --warehouse "$wh" --carrier C \
    --tracking T1 2>&1)
expect_eq "$?" 7 "ship with tallyd stopped: exit status"
expect_match "$out" "look with tally orders show O-77 before running it again" \
    "ship: the message names the order to look at"
expect_match "$out" "repeat would be recorded as another shipment" \
    "ship: the message says why a plain repeat is not safe"
kill -CONT "$pid"
r=$(j receive "$sku" 5 --warehouse "$wh" --id "$id")
expect_eq "$(printf '%s' "$r" | jq -r '"\(.id) \(.duplicate)"')" "$id false" "the retry with that id: applied"
r=$(j receive "$sku" 5 --warehouse "$wh" --id "$id")
expect_eq "$(printf '%s' "$r" | jq -r .duplicate)" true "once more: a duplicate"
expect_eq "$(onhand)" "$((start + 5))" "on hand: the receipt applied once"

# The id made by the client is the one recorded, also when all goes well.
r=$(j receive "$sku" 1 --warehouse "$wh")
expect_match "$(printf '%s' "$r" | jq -r .id)" "^m-[0-9a-f]{11}-[0-9a-f]{16}$" "a client-made id"
expect_eq "$(onhand)" "$((start + 6))" "on hand after a plain receive"

# --- 2. the request reaches tallyd, its answer is lost: a proxy passes on everything the
# client sends, and tallyd's answers until the client's second message (after hello).
cat >"$tmp/lossy.pl" <<'PERL'
use strict; use warnings;
use IO::Socket::UNIX; use IO::Select; use Socket qw(SOCK_STREAM);
my ($path, $target) = @ARGV;
unlink $path;
my $srv = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $path, Listen => 5) or die "listen: $!";
while (my $c = $srv->accept) {
    my $u = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $target) or die "connect: $!";
    my $sel = IO::Select->new($c, $u);
    my ($sent, $open) = (0, 1);
    while ($open) {
        for my $fh ($sel->can_read) {
            my $n = sysread($fh, my $buf, 65536);
            if (!$n) { $open = 0; last }
            if ($fh == $c) { $sent++; syswrite($u, $buf) }
            elsif ($sent < 2) { syswrite($c, $buf) }
        }
    }
    close $c; close $u;
}
PERL
perl "$tmp/lossy.pl" "$tmp/lossy.sock" "$sock" &
proxy=$!
for _ in $(seq 100); do [ -S "$tmp/lossy.sock" ] && break; sleep 0.05; done
before=$(onhand)
out=$("$TALLY" --socket "$tmp/lossy.sock" --timeout 1 pick "$sku" 2 --warehouse "$wh" 2>&1)
rc=$?
expect_eq "$rc" 7 "pick whose answer is lost: exit status"
expect_match "$out" "may or may not be recorded" "the message says the outcome is unknown"
expect_match "$out" "run the same command again with --id m-" "the message names the id"
id=$(retry_id "$out")
# tallyd recorded it (the answer only was lost)
for _ in $(seq 40); do [ "$(onhand)" = "$((before - 2))" ] && break; sleep 0.05; done
expect_eq "$(onhand)" "$((before - 2))" "the pick was recorded though its answer was lost"
r=$(j pick "$sku" 2 --warehouse "$wh" --id "$id")
expect_eq "$(printf '%s' "$r" | jq -r '"\(.id) \(.duplicate)"')" "$id true" "the retry: a duplicate"
expect_eq "$(onhand)" "$((before - 2))" "on hand: the pick applied once"
# JSON mode carries the same message, and a caller's own id is the one named.
out=$("$TALLY" --socket "$tmp/lossy.sock" --json --timeout 1 receive "$sku" 3 --warehouse "$wh" \
    --id RCV-42 2>/dev/null)
expect_eq "$(printf '%s' "$out" | jq -r .error.code)" timeout "--json: the error code"
expect_match "$(printf '%s' "$out" | jq -r .error.message)" "again with --id RCV-42 " \
    "--json: the message names the caller's id"

# --- the option and the variable are checked
expect_eq "$(t --timeout x status >/dev/null 2>&1; echo $?)" 2 "--timeout x: usage error"
expect_eq "$(TALLY_TIMEOUT=-1 t status >/dev/null 2>&1; echo $?)" 2 "TALLY_TIMEOUT=-1: usage error"
expect_eq "$(t status --timeout 5 >/dev/null 2>&1; echo $?)" 0 "--timeout after the command"

echo "test_write_timeout: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
