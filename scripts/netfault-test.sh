#!/usr/bin/env bash
# The long network-fault run (tests/README.md "Reliability"): tests/integration/test_netfault.sh
# with --full (20 % loss 30 s, a 60 s partition, a throttled link 30 s, latency, reordered
# connections and a peer that never answers, 20 s each), then its table: per scenario the
# fault's length, the convergence time after healing, movements sent (acknowledged) and applied
# upstream exactly once, orders placed, shipped and uploaded, duplicated effects.
#   scripts/netfault-test.sh [BUILD_DIR]          (as root; NETFAULT_RATE=128kbit etc.)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
table=$(mktemp)
trap 'rm -f "$table"' EXIT
tests/integration/test_netfault.sh "$build/tallyd" "$build/tally" "$build/tests/sim/tally-sim" \
    --full --table "$table"
rc=$?
echo
echo "== netfault (--full), $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$table"
exit $rc
