#!/usr/bin/env bash
# Runs one libFuzzer target (tests/fuzz/fuzz_TARGET.c) for SECONDS (default 300) under
# ASan+UBSan, one job, starting from its seed corpus:
#   scripts/fuzz.sh TARGET [SECONDS] [extra libFuzzer flags...]
# One process (no -jobs: the machine is shared). TARGET: rpc wms goodcang fourpx aliexpress csv config. Builds build-fuzz/ (clang, sanitizers,
# every module instrumented) when needed. New inputs go to build-fuzz/fuzz-corpus/TARGET (the
# seeds in tests/fuzz/corpus/TARGET are read, never written); a crash is written as
# build-fuzz/fuzz-crash-TARGET-*: copy it into tests/fuzz/corpus/TARGET/ once fixed, so CTest
# replays it (fuzz.TARGET_replay). Prints the executions, coverage and crashes of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET [SECONDS] [libFuzzer flags...]}
secs=${2:-300}
shift $(($# < 2 ? $# : 2))
dir=build-fuzz
if [ ! -f "$dir/CMakeCache.txt" ]; then
    CC=clang cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DTALLY_SANITIZE=ON -DTALLY_FUZZ=ON \
        >/dev/null
fi
cmake --build "$dir" -j2 --target "fuzz_$target" >"$dir/fuzz-build.log" 2>&1 ||
    { grep -Ev '^\[ *[0-9]+%\]' "$dir/fuzz-build.log" >&2; echo "build of fuzz_$target failed" >&2; exit 1; }
seeds=tests/fuzz/corpus/$target
[ -d "$seeds" ] || seeds= # fuzz_rpc has no corpus directory (replay.c makes its seeds)
work=$dir/fuzz-corpus/$target
mkdir -p "$work"
log=$dir/fuzz-$target.log
# leaks are reported at the end of each input (detect_leaks); a timeout over 10 s is a finding
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$dir/tests/fuzz_$target" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$dir/fuzz-crash-$target-" "$@" "$work" ${seeds:+"$seeds"} >"$log" 2>&1 || true
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
found=$(grep -cE '^==[0-9]+==ERROR|runtime error|SUMMARY: libFuzzer' "$log" || true)
cov=$(echo "$last" | grep -o 'cov: [0-9]*' || true)
ft=$(echo "$last" | grep -o 'ft: [0-9]*' || true)
crashes=$(find "$dir" -maxdepth 1 -name "fuzz-crash-$target-*" | wc -l)
echo "fuzz $target: ${secs}s, executions ${execs:-?}, ${cov:-cov: ?}, ${ft:-ft: ?}," \
     "findings in this run: $found, crash/leak/timeout inputs kept: $crashes (log: $log)"
