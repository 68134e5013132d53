#!/usr/bin/env bash
# A full disk while a push is in flight: the replica on a 3 MiB tmpfs, the warehouse slow to
# answer a receive, the disk filled before the answer comes, then freed. The answer is
# recorded once there is room again (no restart), and at no moment does the replica count
# the receive twice (the snapshot that holds it plus the overlay).
#   test_disk_full.sh TALLYD TALLY TALLY_SIM
# Needs root to mount the tmpfs; exits 77 (skipped) when the mount is refused.
set -uo pipefail
TALLYD=$1 TALLY=$2 SIM=$3
tmp=$(mktemp -d /tmp/tally-disk-full.XXXXXX)
. "$(dirname "$0")/synclib.sh"
mkdir -p "$tmp/state"
if ! mount -t tmpfs -o size=3m,mode=0700 tmpfs "$tmp/state" 2>/dev/null; then
    echo "SKIP: cannot mount a tmpfs (needs root)"
    rm -rf "$tmp"
    exit 77
fi
cleanup() {
    [ -n "$tallyd_pid" ] && kill -9 "$tallyd_pid" 2>/dev/null && wait "$tallyd_pid" 2>/dev/null
    tallyd_pid=
    umount "$tmp/state"
    sync_cleanup
}
trap cleanup EXIT

start_sim --skus 20 --seed 5 --warehouses ES-MAD
write_config ES-MAD
start_tallyd
round_mark=0
wait_until 60 inventory_done

sku=$(ctl "$base/control/stock?wh=ES-MAD&format=csv" | sed -n 2p | cut -d, -f1)
before=$(ctl "$base/control/stock?wh=ES-MAD&format=csv" | awk -F, -v s="$sku" '$1 == s {print $2}')
[ -n "$sku" ] && [ -n "$before" ] || { bad "no SKU in the simulator"; exit 1; }

# What the replica counts for the SKU: snapshot + pending.
on_hand() {
    sqlite3 -readonly "$tmp/state/replica.db" "SELECT t.snapshot + t.pending FROM stock t
        JOIN skus s ON s.id = t.sku JOIN warehouses w ON w.id = t.warehouse
        WHERE s.code = '$sku' AND w.code = 'ES-MAD'"
}

ctl -X POST -d '{"target":"wh:ES-MAD","call":"movements","latency_ms":2500}' \
    "$base/control/faults" >/dev/null
t receive "$sku" 5 --warehouse ES-MAD --id disk-full-r1 >/dev/null || bad "receive refused"
sleep 0.5
# Fill the disk while the receive is in flight.
dd if=/dev/zero of="$tmp/state/filler" bs=64k 2>/dev/null
wait_until 20 grep -q "push outcome not recorded" "$tmp/tallyd.log"
ctl -X DELETE "$base/control/faults" >/dev/null

# While the disk is full, inventory rounds come and go: the receive is counted once.
worst=0
for _ in $(seq 20); do
    v=$(on_hand)
    [ -n "$v" ] && [ "$v" -gt "$worst" ] && worst=$v
    sleep 0.25
done
check_eq "$worst" $((before + 5)) "the most the replica counted while the disk was full"

rm -f "$tmp/state/filler"
# Room again: the answer is recorded without a restart, and still nothing counts twice.
for _ in $(seq 24); do
    v=$(on_hand)
    [ -n "$v" ] && [ "$v" -gt "$worst" ] && worst=$v
    sleep 0.25
done
check_eq "$worst" $((before + 5)) "the most the replica counted once the disk was freed"
wait_until 20 outbox_empty
check_eq "$(sqlite3 -readonly "$tmp/state/replica.db" \
    "SELECT state FROM outbox WHERE key = 'disk-full-r1'")" done "the receive's row"
mark_rounds
wait_until 30 inventory_done
wait_until 30 settled
check_eq "$(on_hand)" $((before + 5)) "the SKU's stock after the disk was freed"
after=$(ctl "$base/control/stock?wh=ES-MAD&format=csv" | awk -F, -v s="$sku" '$1 == s {print $2}')
check_eq "$after" $((before + 5)) "the warehouse's stock (the receive applied once)"
compare_stock ES-MAD

echo "disk full: $checks checks, $fails failed"
[ "$fails" = 0 ]
