# Shared by the sync tests: start tally-sim and tallyd on a temporary directory, talk to both,
# compare the replica with the simulator. Sourced; expects TALLYD, TALLY, SIM and tmp set.
# tallyd refuses config and secret files that group or others may read (mode & 077):
# everything the sync tests write is their owner's alone.
umask 077
fails=0 checks=0
sim_pid= tallyd_pid=
ok() { checks=$((checks + 1)); }
bad() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*" >&2; }
check_eq() { if [ "$1" == "$2" ]; then ok; else bad "$3: expected '$2', got '$1'"; fi; }

sync_cleanup() {
    [ -n "$tallyd_pid" ] && kill -9 "$tallyd_pid" 2>/dev/null
    [ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    [ -n "${KEEP_TMP:-}" ] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}

# start_sim ARGS...: starts tally-sim on a free port; sets sim_pid and base.
start_sim() {
    "$SIM" --port 0 "$@" >"$tmp/sim.out" 2>"$tmp/sim.err" &
    sim_pid=$!
    for _ in $(seq 600); do
        grep -q listening "$tmp/sim.out" 2>/dev/null && break
        sleep 0.05
    done
    port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/sim.out")
    [ -n "$port" ] || { echo "tally-sim did not start" >&2; cat "$tmp/sim.err" >&2; exit 1; }
    base=http://127.0.0.1:$port
}

ctl() { curl -sS --max-time 30 "$@"; }

# write_config WAREHOUSES...: tallyd.conf for these warehouses of the simulator.
write_config() {
    echo tally-sim-wh-token >"$tmp/wh.token"
    {
        printf '[station]\nname = SYNC-TEST\n[sync]\nretry_max = 2\nrequest_timeout = 3\nreconcile_interval = 10\n'
        for w in "$@"; do
            printf '[warehouse %s]\nurl = %s/wh/%s\ntoken_file = %s\ninventory_interval = 2\n' \
                "$w" "$base" "$w" "$tmp/wh.token"
            printf 'outbound_interval = 5\n'
        done
    } >"$tmp/tallyd.conf"
}

# carriers_conf: a [carriers] section mapping every carrier tally-sim's warehouses report
# (tests/sim/gen.c gen_tracking) to the marketplace's logistics service CPAM, whose rule (two
# letters, nine digits, two letters) their tracking numbers match; without it every upload is
# held before it is sent ("maps to no logistics service"). Print it before a section header.
carriers_conf() {
    printf '[carriers]\n'
    for c in Correos "La Poste" "Poczta Polska" USPS Correios PostNL "Deutsche Post" \
        "Poste Italiane" DHL; do
        printf '%s = CPAM\n' "$c"
    done
}

# run_tallyd [NAME=VALUE...]: starts tallyd on $tmp with that environment added (the power-cut
# shim's, say) and waits until it answers; sets tallyd_pid.
run_tallyd() {
    env "$@" "$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" \
        --socket "$tmp/tally.sock" --log-level warning 2>>"$tmp/tallyd.log" &
    tallyd_pid=$!
    for _ in $(seq 400); do
        "$TALLY" --socket "$tmp/tally.sock" status >/dev/null 2>&1 && return 0
        sleep 0.025
    done
    echo "tallyd did not start" >&2
    tail -20 "$tmp/tallyd.log" >&2
    exit 1
}
start_tallyd() { run_tallyd; }

t() { "$TALLY" --socket "$tmp/tally.sock" "$@"; }
st() { t --json status; }

# wait_until SECONDS COMMAND...: polls until COMMAND succeeds; fails the test on time-out.
wait_until() {
    local limit=$1
    shift
    local end=$((SECONDS + limit))
    while [ $SECONDS -lt $end ]; do
        "$@" && return 0
        sleep 0.2
    done
    bad "timed out after ${limit}s waiting for: $*"
    return 1
}

# True when every inventory stream has finished a round since the call to mark_rounds.
inventory_done() {
    st | jq -e --argjson since "$round_mark" '[.upstreams[].streams[]
        | select(.name | endswith(":inventory"))
        | (.last_success_at // 0) > $since and (.in_round | not)] | all' >/dev/null
}
mark_rounds() { round_mark=$(date +%s); sleep 1.1; }

outbox_empty() {
    [ "$(st | jq '.outbox.pending')" = 0 ]
}
settled() {
    [ "$(st | jq '.replica.movements_pending')" = 0 ]
}

# compare_stock WAREHOUSE: replica (sku, on_hand, version) == simulator's, row for row.
compare_stock() {
    local w=$1
    ctl "$base/control/stock?wh=$w&format=csv" | tail -n +2 | awk -F, '{print $1","$2","$4}' |
        sort >"$tmp/sim-$w.csv"
    sqlite3 -readonly -csv "$tmp/state/replica.db" "SELECT s.code, t.snapshot + t.pending,
        t.upstream_version FROM stock t JOIN skus s ON s.id = t.sku
        JOIN warehouses w ON w.id = t.warehouse WHERE w.code = '$w'" | sort >"$tmp/rep-$w.csv"
    local d
    d=$(diff "$tmp/sim-$w.csv" "$tmp/rep-$w.csv" | grep -c '^[<>]')
    if [ "$d" = 0 ]; then ok; else
        bad "$w: replica differs from the simulator in $d lines ($(wc -l <"$tmp/sim-$w.csv") rows)"
        diff "$tmp/sim-$w.csv" "$tmp/rep-$w.csv" | head -6 >&2
    fi
}
