#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds tally twice (release, and with
# AddressSanitizer + UndefinedBehaviorSanitizer) and runs every CTest test in both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
status=0
# Two tests at a time on the 2 cores (TALLY_TEST_JOBS to change it): three at a time was tried
# (the release run took 551 s, the long tests about twice their -j2 times: they are bound by
# CPU, not by waiting); the costliest start first (COST in tests/CMakeLists.txt).
jobs=${TALLY_TEST_JOBS:-2}
for variant in release asan; do
    dir=build-test-$variant
    args=()
    [ "$variant" = asan ] && args=(-DTALLY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
    echo "== build ($variant)"
    scripts/build.sh "$dir" "${args[@]}"
    echo "== ctest ($variant)"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if ! ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600; then
        status=1
    fi
done
exit $status
