#!/usr/bin/env bash
# The long power-cut run (tests/README.md "Reliability"): tests/integration/test_power_cut.sh
# over several seeds, each with TRIALS cuts, and the totals.
#   scripts/power-cut-test.sh [BUILD_DIR] [--seeds A..B] [--trials N] [other options: --sync
#   normal, --mode drop|torn|mixed, passed on]
# Default: seeds 1..50, 20 trials each (1,000 cuts), synchronous = full.
set -uo pipefail
cd "$(dirname "$0")/.."
build=build
[ $# -gt 0 ] && [ "${1#--}" = "$1" ] && { build=$1; shift; }
seeds=1..50 trials=20 pass=()
while [ $# -gt 0 ]; do
    case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --trials) trials=$2; shift 2 ;;
    *) pass+=("$1"); shift ;;
    esac
done
from=${seeds%..*} to=${seeds#*..}
cuts=0 acked=0 lost=0 bad=0 runs=0
for s in $(seq "$from" "$to"); do
    out=$(tests/integration/test_power_cut.sh "$build/tallyd" "$build/tally" \
        "$build/tests/sim/tally-sim" "$build/tests/powercut.so" --trials "$trials" --seed "$s" \
        "${pass[@]}" 2>&1)
    rc=$?
    runs=$((runs + 1))
    line=$(grep '^power cuts (' <<<"$out")
    echo "seed $s: rc $rc: ${line:-no summary}"
    [ $rc = 0 ] || { bad=$((bad + 1)); grep FAIL <<<"$out" | head -5; }
    c=$(sed -n 's/.*: \([0-9]*\) cuts.*/\1/p' <<<"$line")
    a=$(sed -n 's/.*, \([0-9]*\) writes acknowledged.*/\1/p' <<<"$line")
    l=$(sed -n 's/.*, \([0-9]*\) acknowledged writes lost.*/\1/p' <<<"$line")
    cuts=$((cuts + ${c:-0})) acked=$((acked + ${a:-0})) lost=$((lost + ${l:-0}))
done
echo "total: $runs seeds, $cuts power cuts, $acked writes acknowledged, $lost acknowledged writes lost, $bad seeds failed"
[ "$bad" = 0 ]
