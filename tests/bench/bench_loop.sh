#!/usr/bin/env bash
# Two builds side by side in one run, on copies of one replica (a station with N SKUs x 4
# warehouses and their stock, seeded by bench_fulfil.sh --cache DIR or as below): what a
# client waits for on a big station, idle, while ORDERS orders are imported and allocated (the
# fulfilment pass), and in the first seconds after a restart with those orders open.
#   tests/bench/bench_loop.sh REPLICA GEN_DIR WINDOW BUILD_A BUILD_B...
# REPLICA is a replica.db (copied, never changed); GEN_DIR holds tally-gen's orders.csv for it;
# WINDOW the seconds measured during the pass and after the restart. Per build, lines
# `BUILD name value`:
#   first_answer_ms            exec of tallyd to its first answered status
#   cli_stock_ms, cli_status_ms, true_ms   whole process, median of 7 (wall; /bin/true is the
#                              floor of starting any process on this machine now)
#   cli_stock_cpu_ms, cli_status_cpu_ms    its CPU (task-clock, perf stat, mean of 7)
#   rss_kb                     tallyd's VmRSS, idle
#   pass_lat_*                 stock.get at 1 connection for WINDOW s from the orders' import
#   cli_stock_pass_ms          whole process, median of 5, during that window
#   restart_lat_*              stock.get at 1 connection for WINDOW s after a restart with the
#                              orders open
#   cli_stock_restart_ms       whole process, median of 5, at once after that restart
# and tallyd's own "fulfilment pass: ... slices" log lines (builds that log them).
set -euo pipefail
usage="usage: bench_loop.sh REPLICA GEN_DIR WINDOW BUILD..."
replica=${1:?$usage} gendir=${2:?$usage} window=${3:?$usage}
shift 3
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
builds=("$@")
B=$(cd "${builds[0]}" && pwd)
. "$(dirname "$0")/lib.sh"
bench_init
write_config
sku=$(awk -F, 'NR == 2 { print $7 }' "$gendir/orders.csv")

cpu_ms() { # mean task-clock of 7 runs, ms
    perf stat -x, -e task-clock -r 7 "$@" 2>&1 >/dev/null | awk -F, '$3 ~ /task-clock/ { printf "%.3f\n", $1 }'
}

for b in "${builds[@]}"; do
    B=$(cd "$b" && pwd)
    TALLYD=$B/tallyd TALLY=$B/tally
    name=$(basename "$b")
    say() { printf '%s %s %s\n' "$name" "$1" "$2"; }
    rm -rf "$tmp/state" "$tmp/tallyd.log"
    mkdir -m 700 "$tmp/state"
    cp "$replica" "$tmp/state/replica.db"
    start_tallyd
    say first_answer_ms "$first_answer_ms"
    sleep 2
    say cli_stock_ms "$(time_cmd_ms 7 "$TALLY" --socket "$tmp/tally.sock" stock "$sku")"
    say cli_status_ms "$(time_cmd_ms 7 "$TALLY" --socket "$tmp/tally.sock" status)"
    say true_ms "$(time_cmd_ms 7 /bin/true)"
    if command -v perf >/dev/null; then
        say cli_stock_cpu_ms "$(cpu_ms "$TALLY" --socket "$tmp/tally.sock" stock "$sku")"
        say cli_status_cpu_ms "$(cpu_ms "$TALLY" --socket "$tmp/tally.sock" status)"
    fi
    say rss_kb "$(rss_kb "$tallyd_pid")"

    t --timeout 0 import orders "$gendir/orders.csv" >/dev/null 2>&1 &
    imp=$!
    "$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d "$window" --kv pass_lat 2>/dev/null |
        grep -v '^stock.get' | grep -Ev '_(n|errors) ' | sed "s/^/$name /" &
    lat=$!
    sleep $((window / 2))
    say cli_stock_pass_ms "$(time_cmd_ms 5 "$TALLY" --socket "$tmp/tally.sock" stock "$sku")"
    wait "$lat"
    kill -TERM "$tallyd_pid" 2>/dev/null
    wait "$tallyd_pid" 2>/dev/null || true
    tallyd_pid=''
    wait "$imp" 2>/dev/null || true
    say orders_in "$(sqlite3 -readonly "$tmp/state/replica.db" 'SELECT COUNT(*) FROM orders')"

    start_tallyd
    say cli_stock_restart_ms "$(time_cmd_ms 5 "$TALLY" --socket "$tmp/tally.sock" stock "$sku")"
    "$RPC" "$tmp/tally.sock" -k "$sku" -c 1 -d "$window" --kv restart_lat 2>/dev/null |
        grep -v '^stock.get' | grep -Ev '_(n|errors) ' | sed "s/^/$name /"
    stop_tallyd
    grep -h 'fulfilment pass:' "$tmp/tallyd.log" | sed "s/^/$name log: /" || true
done
