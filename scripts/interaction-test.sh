#!/usr/bin/env bash
# The long run of the randomized interaction test (tests/README.md, "Randomized interaction
# test"): many seeds x many steps against tally-sim, on an existing build.
#   scripts/interaction-test.sh [BUILD_DIR] [--seeds FIRST..LAST] [--steps N] [OPTIONS...]
# OPTIONS are passed to tests/integration/test_interactions.sh (--skip-op OP, --check-every K,
# --verbose). Defaults: build/, seeds 1..20, 200 steps each. Prints, per seed, whether it ran
# clean (a failing seed prints its step, invariant and the command that replays it), then how
# many steps and seeds ran clean. Exit status 0 when every seed did.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then dir=$1; shift; fi
first=1 last=20 steps=200 pass=()
while [ $# -gt 0 ]; do
    case $1 in
    --seeds) first=${2%..*} last=${2#*..}; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    *) pass+=("$1"); shift ;;
    esac
done
bins=("$dir/tallyd" "$dir/tally" "$dir/tests/sim/tally-sim" "$dir/tests/interact_rpc")
for b in "${bins[@]}"; do
    [ -x "$b" ] || { echo "interaction-test: $b missing (build first: scripts/build.sh $dir)" >&2; exit 2; }
done
clean=0 failed=() t0=$SECONDS
for ((s = first; s <= last; s++)); do
    if tests/integration/test_interactions.sh "${bins[@]}" --seed "$s" --steps "$steps" "${pass[@]}" \
        >"/tmp/interaction-seed-$s.log" 2>&1; then
        clean=$((clean + 1))
        grep '^seed ' "/tmp/interaction-seed-$s.log"
        rm -f "/tmp/interaction-seed-$s.log"
    else
        failed+=("$s")
        echo "seed $s FAILED (log: /tmp/interaction-seed-$s.log):"
        grep -E '^(VIOLATION|replay)' "/tmp/interaction-seed-$s.log" | sed 's/^/  /'
    fi
done
echo "interaction-test: $clean of $((last - first + 1)) seeds ran clean ($((clean * steps)) steps clean," \
    "$steps steps each${pass[*]:+, options: ${pass[*]}}) in $((SECONDS - t0)) s${failed[*]:+; failed seeds: ${failed[*]}}"
[ ${#failed[@]} = 0 ]
