# Shared by the tests/bench/*.sh measurements. Sourced; the caller sets B (a build directory
# holding tallyd, tally, tests/bench_rpc, tests/tally-gen, tests/sim/tally-sim) and calls
# bench_init. Everything runs in one temporary directory, on loopback and Unix sockets, and is
# stopped on exit, also on failure. Figures are printed as lines `name value` on stdout;
# anything else goes to stderr.
TALLYD=$B/tallyd
TALLY=$B/tally
RPC=$B/tests/bench_rpc
GEN=$B/tests/tally-gen
SIM=$B/tests/sim/tally-sim
WAREHOUSES=(ES-MAD FR-PAR PL-WAW US-LAX)
sim_pid='' tallyd_pid='' extra_pids=''

bench_cleanup() {
    local rc=$? p
    set +e
    for p in $extra_pids; do kill "$p" 2>/dev/null; done
    [ -n "$tallyd_pid" ] && kill -9 "$tallyd_pid" 2>/dev/null
    [ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null
    wait 2>/dev/null
    [ -n "${tmp:-}" ] && rm -rf "$tmp"
    exit "$rc"
}

bench_init() {
    for f in "$TALLYD" "$TALLY" "$RPC" "$GEN" "$SIM" "$B/tests/proc_time" "$B/tests/noop_static"; do
        [ -x "$f" ] || { echo "$(basename "$0"): $f missing (build first)" >&2; exit 2; }
    done
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/tally-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    mkdir -m 700 "$tmp/state"
}

die() { echo "$(basename "$0"): $*" >&2; exit 1; }
fig() { printf '%s %s\n' "$1" "$2"; }
now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }

# start_sim ARGS...: tally-sim on a free loopback port; sets sim_pid, port, base.
start_sim() {
    "$SIM" --port 0 "$@" >"$tmp/sim.out" 2>"$tmp/sim.err" &
    sim_pid=$!
    for _ in $(seq 1200); do
        grep -q listening "$tmp/sim.out" 2>/dev/null && break
        kill -0 "$sim_pid" 2>/dev/null || break
        sleep 0.05
    done
    port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/sim.out")
    [ -n "$port" ] || { cat "$tmp/sim.err" >&2; die "tally-sim did not start"; }
    base=http://127.0.0.1:$port
}
ctl() { curl -sS --max-time 60 "$@"; }

# write_config [INTERVAL]: tallyd.conf for the simulator's four warehouses (no marketplace), or
# for an offline station when no simulator runs. Inventory rounds every INTERVAL s (default
# 3600: only the first round and what `sync` asks for); backoff at most 1 s, so a link that
# comes back is used again within a second; personal data kept 10 years (no purge at start).
write_config() {
    umask 077 # tallyd refuses config and secret files others may read
    local iv=${1:-3600}
    {
        printf '[station]\nname = BENCH\n[sync]\nretry_max = 1\nreconcile_interval = 10\n'
        # the hourly purge also runs at start: only `tally purge` (bench_fulfil.sh) purges
        printf '[privacy]\nretain_days = 3650\n'
        if [ -n "$sim_pid" ]; then
            echo tally-sim-wh-token >"$tmp/wh.token"
            for w in "${WAREHOUSES[@]}"; do
                printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\n' "$w" "$base" "$w" \
                    "$tmp/wh.token"
                printf 'inventory_interval = %s\noutbound_interval = 3600\n' "$iv"
            done
        fi
    } >"$tmp/tallyd.conf"
}

# start_tallyd: starts tallyd (info log in $tmp/tallyd.log) and waits for its first answer;
# sets tallyd_pid and first_answer_ms (exec to the first answered status).
start_tallyd() {
    local t0
    t0=$(now_ns)
    "$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" --socket "$tmp/tally.sock" \
        --log-level info 2>>"$tmp/tallyd.log" &
    tallyd_pid=$!
    for _ in $(seq 4000); do
        if [ -S "$tmp/tally.sock" ] && "$TALLY" --socket "$tmp/tally.sock" status >/dev/null 2>&1; then
            first_answer_ms=$(ms_since "$t0")
            return 0
        fi
        kill -0 "$tallyd_pid" 2>/dev/null || break
        sleep 0.005
    done
    cat "$tmp/tallyd.log" >&2
    die "tallyd did not start"
}
stop_tallyd() {
    kill -TERM "$tallyd_pid" 2>/dev/null
    wait "$tallyd_pid" 2>/dev/null
    tallyd_pid=''
}
t() { "$TALLY" --socket "$tmp/tally.sock" "$@"; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# cpu_s PID: the process's CPU time so far (user + system, seconds): what a loaded machine's
# wall clock hides
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }

# The replica's counter NAME, read by another connection (as a reader would: WAL), so polling
# costs tallyd nothing.
counter() {
    sqlite3 -readonly "$tmp/state/replica.db" "SELECT n FROM counters WHERE name = '$1'" \
        2>/dev/null
}

# log_ms LINE: the time of a tallyd log line (2026-12-05T05:46:37.650Z ...) in ms of its day.
log_ms() {
    awk '{ split(substr($1, 12, 12), a, ":"); printf "%d\n", (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 }' <<<"$1"
}

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# time_cmd_ms N COMMAND...: median wall time of N runs of a whole process, in ms (3 decimals),
# timed by tests/proc_time (spawn to exit): from bash, the fork of bash itself (a millisecond
# or more) would be inside every interval. floor_ms N: the same for a static program that
# does nothing (tests/noop_static), the floor of any whole-process figure on this machine.
time_cmd_ms() {
    local n=$1
    shift
    "$B/tests/proc_time" "$n" "$@"
}
floor_ms() { "$B/tests/proc_time" "$1" "$B/tests/noop_static"; }
