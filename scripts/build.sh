#!/usr/bin/env bash
# Configures and builds tally into a build directory (default: build/).
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
# Prints compiler diagnostics only; fails when the build fails.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if cmake --build "$dir" -j"$(nproc)" >"$log" 2>&1; then
    grep -E 'warning|error' "$log" || true
else
    grep -Ev '^\[ *[0-9]+%\]|^-- ' "$log" >&2
    echo "build failed in $dir" >&2
    exit 1
fi
