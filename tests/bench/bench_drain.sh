#!/usr/bin/env bash
# Outbox drain after an outage (issue 10 no. 6): N movements recorded on a station whose
# warehouse link is down (tallyd runs without the warehouse's upstream), then tallyd restarts
# with tally-sim's warehouse configured and sends them; the figure is N over the time from
# that start to the last row done. The anchor: the same kind of movements sent one by one
# with curl (one POST each, one keep-alive connection) to the same tally-sim.
#   tests/bench/bench_drain.sh BUILD_DIR [N] [CURL_N]
# Prints:
#   drain_movements_per_s R
#   curl_one_by_one_per_s R
#   drain_vs_curl X
#   drain_s, drain_cpu_tallyd_s, drain_cpu_sim_s   the drain's wall time and the CPU each side
#                                                  used meanwhile (where the time goes)
# and checks exactly-once on the way (tally-sim counts each id applied once, N in all).
# Figures only, not a test (the machine may be shared; compare builds in one run).
set -euo pipefail
BUILD=$(cd "${1:?usage: bench_drain.sh BUILD_DIR [N] [CURL_N]}" && pwd)
N=${2:-100000}
CURL_N=${3:-$((N < 20000 ? N : 20000))}
TALLYD=$BUILD/tallyd TALLY=$BUILD/tally SIM=$BUILD/tests/sim/tally-sim
BENCH=${BENCH_RPC:-$BUILD/tests/bench_rpc}
[ -x "$SIM" ] || SIM=$(find "$BUILD" -name tally-sim -type f -perm -u+x | head -1)
NSKU=10
tmp=$(mktemp -d /tmp/tally-bench-drain.XXXXXX)
sim_pid= tallyd_pid=
cleanup() {
    [ -n "$tallyd_pid" ] && kill "$tallyd_pid" 2>/dev/null && wait "$tallyd_pid" 2>/dev/null
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
[ -z "${KEEP_LOG:-}" ] || trap 'cp "$tmp/tallyd.log" "$KEEP_LOG"; cleanup' EXIT
now() { date +%s.%N; }
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }

"$SIM" --port 0 --skus 40 --seed 3 --warehouses ES-MAD >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim_pid=$!
for _ in $(seq 600); do grep -q listening "$tmp/sim.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/sim.out")
base=http://127.0.0.1:$port
mapfile -t skus < <(curl -sS "$base/control/stock?wh=ES-MAD&format=csv" | sed 1d | cut -d, -f1 | head -$NSKU)

start_tallyd() {
    "$TALLYD" "$@" --state-dir "$tmp/state" --socket "$tmp/tally.sock" --log-level ${TALLYD_LOG:-error} \
        2>>"$tmp/tallyd.log" &
    tallyd_pid=$!
    for _ in $(seq 400); do "$TALLY" --socket "$tmp/tally.sock" status >/dev/null 2>&1 && return 0; sleep 0.025; done
    echo "tallyd did not start" >&2; cat "$tmp/tallyd.log" >&2; exit 1
}
stop_tallyd() { kill "$tallyd_pid"; wait "$tallyd_pid" || true; tallyd_pid=; }

# The outage: the station records, its warehouse link is down.
echo tally-sim-wh-token >"$tmp/wh.token"
printf '[station]\nname = DRAIN\n[warehouse ES-MAD]\nurl = http://127.0.0.1:9/wh/ES-MAD\ntoken_file = %s\ninventory_interval = 3600\n' \
    "$tmp/wh.token" >"$tmp/down.conf"
printf '[station]\nname = DRAIN\n[warehouse ES-MAD]\nurl = %s/wh/ES-MAD\ntoken_file = %s\ninventory_interval = 3600\n' \
    "$base" "$tmp/wh.token" >"$tmp/up.conf"
start_tallyd --config "$tmp/down.conf"
{ echo "sku,product_id,title,price_minor,currency"
  for s in "${skus[@]}"; do echo "$s,P-$s,Drain item,100,EUR"; done; } >"$tmp/cat.csv"
printf 'code,name,country\nES-MAD,Madrid,ES\n' >"$tmp/wh.csv"
"$TALLY" --socket "$tmp/tally.sock" import warehouses "$tmp/wh.csv" >/dev/null || true
"$TALLY" --socket "$tmp/tally.sock" import catalog "$tmp/cat.csv" >/dev/null
per=$((N / NSKU))
pids=()
for s in "${skus[@]}"; do
    "$BENCH" "$tmp/tally.sock" -m stock.move -k "$s" -w ES-MAD -c 1 -P 200 -n "$per" -d 600 \
        >"$tmp/rec.$s" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { echo "recording failed" >&2; cat "$tmp"/rec.* >&2; exit 1; }; done
N=$((per * NSKU))
stop_tallyd
waiting() { sqlite3 -readonly "$tmp/state/replica.db" \
    "SELECT count(*) FROM outbox WHERE target = 'wh:ES-MAD' AND state IN ('pending','inflight')"; }
w=$(waiting)
[ "$w" -eq "$N" ] || { echo "expected $N movements waiting, found $w" >&2; exit 1; }

# The link is back.
t0=$(now)
sim0=$(cpu_s "$sim_pid")
start_tallyd --config "$tmp/up.conf"
while [ "$(waiting)" -gt 0 ]; do sleep 0.05; done
t1=$(now)
# Where the time went: tallyd's CPU (take, send, record: the loop) and tally-sim's.
cpu_tallyd=$(cpu_s "$tallyd_pid") cpu_sim=$(echo "$(cpu_s "$sim_pid") - $sim0" | bc -l)
applied=$(curl -sS "$base/control/movements?wh=ES-MAD" | jq '[.movements[] | select(. == 1)] | length')
twice=$(curl -sS "$base/control/movements?wh=ES-MAD" | jq '[.movements[] | select(. > 1)] | length')
[ "$applied" -eq "$N" ] && [ "$twice" -eq 0 ] ||
    { echo "exactly-once broken: $applied applied once, $twice more than once, of $N" >&2; exit 1; }
stop_tallyd
drain=$(echo "$N / ($t1 - $t0)" | bc -l)

# The anchor: one POST per movement, one curl process, one keep-alive connection.
cfg=$tmp/curl.cfg
: >"$cfg"
for ((i = 0; i < CURL_N; i++)); do
    s=${skus[i % NSKU]}
    [ "$i" -eq 0 ] || echo next >>"$cfg"
    printf 'url = "%s/wh/ES-MAD/v1/movements"\nheader = "Authorization: Bearer tally-sim-wh-token"\nheader = "Content-Type: application/json"\ndata = "{\\"movements\\":[{\\"id\\":\\"curl-%d\\",\\"sku\\":\\"%s\\",\\"delta\\":1,\\"reason\\":\\"receive\\"}]}"\noutput = "/dev/null"\nsilent\n' \
        "$base" "$i" "$s" >>"$cfg"
done
t0=$(now)
curl --config "$cfg"
t1=$(now)
got=$(curl -sS "$base/control/movements?wh=ES-MAD" | jq '[.movements | keys[] | select(startswith("curl-"))] | length')
[ "$got" -eq "$CURL_N" ] || { echo "curl: $got of $CURL_N applied" >&2; exit 1; }
one=$(echo "$CURL_N / ($t1 - $t0)" | bc -l)
printf 'drain_movements_per_s %.0f\ncurl_one_by_one_per_s %.0f\ndrain_vs_curl %.2f\n' "$drain" "$one" \
    "$(echo "$drain / $one" | bc -l)"
printf 'drain_s %.2f\ndrain_cpu_tallyd_s %.2f\ndrain_cpu_sim_s %.2f\n' "$(echo "$N / $drain" | bc -l)" \
    "$cpu_tallyd" "$cpu_sim"
