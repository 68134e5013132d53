#!/usr/bin/env bash
# The long run of the crash loop (tests/README.md "Reliability"): tests/integration/
# test_crash_loop.sh on an existing build, in runs of up to 100 trials (each run a fresh
# simulator and state dir, so that every run also kills its initial sync), seeds S, S+1, ...
#   scripts/crash-loop.sh [BUILD_DIR] [--trials N] [--seed S] [--per-run K] [--verbose]
#                         [--check-every K] [--power-cut [--power-mode drop|torn|mixed]]
# Defaults: build/, 1,000 trials, seed 1, 100 trials a run. Prints every violation (trial,
# phase, invariant, detail), each run's totals line, then the totals over all runs. Exit
# status 0 when no invariant failed. --power-cut: every kill is a power cut through
# BUILD_DIR/tests/powercut.so (target tally_powercut; test_crash_loop.sh --power-cut); the run
# logs are then /tmp/crash-loop-power-seed-S.log (without it /tmp/crash-loop-seed-S.log).
set -uo pipefail
cd "$(dirname "$0")/.."
dir=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then dir=$1; shift; fi
trials=1000 seed=1 per=100 pass=() power=
while [ $# -gt 0 ]; do
    case $1 in
    --trials) trials=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --per-run) per=$2; shift 2 ;;
    --power-cut) power=1; shift ;;
    *) pass+=("$1"); shift ;;
    esac
done
bins=("$dir/tallyd" "$dir/tally" "$dir/tests/sim/tally-sim" "$dir/tests/rewind_schema")
for b in "${bins[@]}"; do
    [ -x "$b" ] || { echo "crash-loop: $b missing (build first: scripts/build.sh $dir)" >&2; exit 2; }
done
if [ -n "$power" ]; then
    [ -f "$dir/tests/powercut.so" ] || { echo "crash-loop: $dir/tests/powercut.so missing (build target tally_powercut)" >&2; exit 2; }
    pass+=(--power-cut --shim "$dir/tests/powercut.so")
fi
t0=$SECONDS left=$trials s=$seed failed=() logs=()
while [ "$left" -gt 0 ]; do
    n=$((left < per ? left : per))
    log=/tmp/crash-loop${power:+-power}-seed-$s.log
    tests/integration/test_crash_loop.sh "${bins[@]}" --trials "$n" --seed "$s" "${pass[@]}" >"$log" 2>&1 ||
        failed+=("$s")
    grep -E '^(VIOLATION|crash loop seed)' "$log"
    grep -q '^crash loop seed' "$log" || { echo "crash-loop: seed $s ended without its totals (log $log):"; tail -5 "$log"; }
    logs+=("$log")
    left=$((left - n)) s=$((s + 1))
done
# The totals: sums of the per-run lines' figures.
grep -h '^crash loop seed' "${logs[@]}" | awk '
    function num(re,   v) {
        if (!match($0, re)) return 0
        v = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", v); return v + 0
    }
    {
        T += num("[0-9]+ trials,"); K += num("[0-9]+ kills \\(")
        A += num("[0-9]+ acknowledged writes"); L += num("[0-9]+ lost,")
        D += num("[0-9]+ duplicated in the ledger"); U += num("[0-9]+ not applied upstream")
        O += num("[0-9]+ double orders"); P += num("[0-9]+ published above")
        S += num("available \\([0-9]+ samples"); MM += num("completed [0-9]+, after")
        V += num("; [0-9]+ violations")
        if ($0 ~ /replica == simulator: no/) C++
        PC += num("[0-9]+ landed"); PU += num("[0-9]+ before the replica was open"); PF += num("[0-9]+ fell back"); PB += num("WAL [0-9]+ bytes")
        PS += num("[0-9]+ sectors dropped"); PK += num("[0-9]+ commits dropped")
        PD += num("database [0-9]+ sectors")
        s = $0; sub(/.*kills \(/, "", s); sub(/; migration.*/, "", s)
        n = split(s, parts, ", ")
        for (i = 1; i <= n; i++) { split(parts[i], kv, " "); ph[kv[1]] += kv[2] }
    }
    END {
        b = ""; for (p in ph) b = b (b == "" ? "" : ", ") p " " ph[p]
        if (PC + PF > 0)
            printf "crash-loop: power cuts: %d landed (%d before the replica was open), %d fell back to SIGKILL; they dropped %d WAL bytes beyond the synced size, %d WAL sectors, %d commits, %d database sectors\n", PC, PU, PF, PB, PS, PK, PD
        printf "crash-loop: %d trials, %d kills (by phase: %s; %d of the migration kills before the upgrade completed), %d acknowledged writes, %d lost, %d duplicated in the ledger, %d not applied upstream exactly once (0 duplicated upstream unless listed above), %d orders at two warehouses / created or uploaded twice, %d published above available in %d samples, %d runs where the replica did not converge to the simulator; %d violations\n", T, K, b, MM, A, L, D, U, O, P, S, C, V
    }'
echo "crash-loop: $((SECONDS - t0)) s${failed[*]:+; seeds with a violation or an error: ${failed[*]}}"
[ ${#failed[@]} = 0 ]
