# The invariants shared by the randomized tests that run tallyd against tally-sim
# (test_interactions.sh, test_crash_loop.sh): talking to both, and the checks of
# no_double_shipment, exactly_once, published_le_available and the stock comparison.
# Sourced after synclib.sh; expects TALLY, tmp, base, WHS (the warehouse codes) set, and
# $tmp/acked, $tmp/discarded (exactly_once at the end).

# sql [-csv | -separator S] SQL: the replica, read-only (tallyd writes meanwhile: wait on locks).
sql() {
    local opts=()
    while [[ $1 == -* ]]; do
        opts+=("$1")
        [ "$1" = -separator ] && { opts+=("$2"); shift; }
        shift
    done
    sqlite3 -readonly -cmd '.timeout 5000' "${opts[@]}" "$tmp/state/replica.db" "$@"
}
post() { ctl -X POST -H 'Content-Type: application/json' -d "$2" "$base/control/$1"; }

# cli ARGS...: runs `tally --json ARGS`, output in $tmp/out.json, exit status in CLI_RC. Judges
# the answer for the responses_well_formed invariant: a transport or protocol failure (exit 7),
# an `internal` error, output that is not one JSON document, are violations.
cli() {
    "$TALLY" --socket "$tmp/tally.sock" --json "$@" >"$tmp/out.json" 2>"$tmp/out.err"
    CLI_RC=$?
    CLI_CODE=
    if ! jq -e . "$tmp/out.json" >/dev/null 2>&1; then
        viol responses_well_formed "tally $*: exit $CLI_RC, output not one JSON document: $(head -c 300 "$tmp/out.json") $(head -c 300 "$tmp/out.err")"
        return
    fi
    [ "$CLI_RC" = 0 ] || CLI_CODE=$(jq -r '.error.code // ""' "$tmp/out.json")
    case $CLI_RC:$CLI_CODE in
    0:) ;;
    7:* | *:internal | *:malformed | *:bad_request)
        viol responses_well_formed "tally $*: exit $CLI_RC, $(jq -c . "$tmp/out.json")" ;;
    esac
}

VIOL=()
# viol NAME TEXT: records a violation of invariant NAME (reported with the seed and step).
viol() {
    VIOL+=("$1|$2")
}

# fetch URL_PATH FILE [URL_PATH FILE]...: the simulator's control answers into files, in one
# curl process (each check used to start a curl, a tail and a jq per warehouse: under load
# every process start costs tens to hundreds of ms, and the crash loop checks after every trial).
fetch() {
    local args=()
    while [ $# -gt 1 ]; do
        args+=("$base/control/$1" -o "$2")
        shift 2
    done
    curl -sS --max-time 30 "${args[@]}"
}

check_no_double_shipment() {
    local w a=() obs=()
    for w in "${WHS[@]}"; do a+=("outbound?wh=$w" "$tmp/ob-$w.json") obs+=("$tmp/ob-$w.json"); done
    fetch "${a[@]}" orders "$tmp/mporders.json" fulfilments "$tmp/fulfil.json"
    # In one jq: OVER lines, units out per order and SKU over every warehouse (outbound orders
    # not cancelled and not in exception) above the order's lines; RECREATED, the outbound
    # orders created more than once; MAXAPPLIED, the most uploads of a tracking number; UPLOADED
    # lines, orders with more applied fulfils than their shipped outbound orders (at least 1).
    local out over="" up="" n=0 maxap=0 line
    out=$(jq -rn --slurpfile o "$tmp/mporders.json" --slurpfile f "$tmp/fulfil.json" '
        ($o[0].items | map({key: (.order_id | tostring), value: .lines}) | from_entries) as $ord
        | [inputs | .items[]] as $obs
        | ([$obs[] | select(.status != "cancelled" and .status != "exception")
           | . as $ob | .lines[] | {id: $ob.id, sku: .sku, qty: .qty}]
           | group_by(.id + " " + .sku)[]
           | {id: .[0].id, sku: .[0].sku, qty: (map(.qty) | add), n: length} as $g
           | ([($ord[$g.id] // [])[] | select(.sku == $g.sku) | .qty] | add // 0) as $want
           | select($g.qty > $want)
           | "OVER order \($g.id) SKU \($g.sku): \($g.qty) units in \($g.n) live outbound orders, ordered \($want)"),
          "RECREATED \([$obs[] | select(.create_count != 1)] | length)",
          "MAXAPPLIED \($f[0].max_applied_per_tracking // 0)",
          (($obs | map(select(.status == "shipped") | .id) | group_by(.)
              | map({key: .[0], value: length}) | from_entries) as $ship
           | $f[0].orders | to_entries[]
           | ([.value[] | select(.result == "applied")] | length) as $a
           | ([$ship[.key] // 0, 1] | max) as $m
           | select($a > $m) | "UPLOADED order \(.key) uploaded \($a) times, \($m) shipment(s)")' \
        "${obs[@]}") || { viol no_double_shipment "the simulator's outbound orders, orders or fulfilments unreadable: ${out:0:300}"; return; }
    while IFS= read -r line; do
        case $line in
        OVER\ *) over+="${line#OVER }"$'\n' ;;
        RECREATED\ *) n=${line#RECREATED } ;;
        MAXAPPLIED\ *) maxap=${line#MAXAPPLIED } ;;
        UPLOADED\ *) up+="${line#UPLOADED }"$'\n' ;;
        esac
    done <<<"$out"
    over=${over%$'\n'} up=${up%$'\n'}
    [ -z "$over" ] || viol no_double_shipment "$(echo "$over" | head -3 | paste -sd';' -)$(
        for w in "${WHS[@]}"; do jq -r --arg w "$w" '.items[] | " [\($w) \(.id) \(.status)]"' "$tmp/ob-$w.json"; done |
            grep -F -f <(echo "$over" | awk '{print $2}') | paste -sd' ' -)"
    [ "$n" = 0 ] || viol no_double_shipment "$n outbound orders created more than once"
    [ "$maxap" -le 1 ] || viol no_double_shipment "a tracking number uploaded $maxap times"
    [ -z "$up" ] || viol no_double_shipment "$(echo "$up" | head -3 | paste -sd';' -)"
    if [ "$1" != step ]; then
        # Every shipment a warehouse reports is listed by orders show.
        local o
        : >"$tmp/shipmiss"
        for w in "${WHS[@]}"; do
            while read -r o; do
                cli orders show "$o"
                jq -e --arg w "$w" '[.shipments[]? | select(.warehouse == $w)] | length > 0' "$tmp/out.json" \
                    >/dev/null || echo "$o@$w" >>"$tmp/shipmiss"
            done < <(jq -r '.items[] | select(.status == "shipped") | .id' "$tmp/ob-$w.json")
        done
        # (a warehouse may ship between tallyd's last outbound round and this read: ask again
        # after a round)
        if [ -s "$tmp/shipmiss" ]; then
            t sync outbound >/dev/null 2>&1
            sleep 3
            local ow
            while read -r ow; do
                cli orders show "${ow%@*}"
                jq -e --arg w "${ow#*@}" '[.shipments[]? | select(.warehouse == $w)] | length > 0' \
                    "$tmp/out.json" >/dev/null || echo "$ow"
            done <"$tmp/shipmiss" >"$tmp/shipmiss2"
            mv "$tmp/shipmiss2" "$tmp/shipmiss"
        fi
        [ ! -s "$tmp/shipmiss" ] ||
            viol no_double_shipment "shipped at the warehouse but not in orders show: $(head -5 "$tmp/shipmiss" | paste -sd' ' -)"
    fi
}

check_exactly_once() {
    ctl "$base/control/movements" >"$tmp/mv.json"
    local max
    max=$(jq '.max' "$tmp/mv.json")
    [ "$max" -le 1 ] || viol exactly_once "a movement applied $max times: $(jq -c '[.movements | to_entries[] | select(.value > 1) | .key] | .[:5]' "$tmp/mv.json")"
    if [ "$1" = final ]; then
        # acked: "KEY" lines (the simulator's key: the id, or transfer:ID); minus discarded ones.
        # (the simulator's count of each, in one jq: one jq per movement took minutes for the
        # crash loop's thousands)
        jq -r '.movements | to_entries[] | "\(.key)\t\(.value)"' "$tmp/mv.json" >"$tmp/mv.counts"
        sort -u "$tmp/acked" | grep -vxF -f <(sort -u "$tmp/discarded"; echo '#') |
            awk -F'\t' 'FILENAME == ARGV[1] { c[$1] = $2; next }
                { v = ($0 in c) ? c[$0] : 0; if (v != 1) print $0 ":" v }' "$tmp/mv.counts" - >"$tmp/notonce"
        [ ! -s "$tmp/notonce" ] || viol exactly_once "acknowledged movements not applied exactly once at the end (id:count): $(head -8 "$tmp/notonce" | paste -sd' ' -) ($(wc -l <"$tmp/notonce") in all)"
    fi
}

# published <= truly available, judged as test_fulfil_sim.sh does: at a quiescent checkpoint,
# on a state read twice 2 s apart alike (tallyd may still act between two reads).
read_pub_state() {
    local w a=() pst=() pob=()
    for w in "${WHS[@]}"; do
        a+=("stock?wh=$w&format=csv" "$tmp/pst-$w.csv" "outbound?wh=$w" "$tmp/pob-$w.json")
        pst+=("$tmp/pst-$w.csv") pob+=("$tmp/pob-$w.json")
    done
    fetch "published?all=1&format=csv" "$tmp/pub.csv" "${a[@]}"
    : >"$tmp/pub"
    # One process per kind of source: the published values into $tmp/pub; H lines (on hand),
    # O (an outbound order the warehouse has), B (units of its live outbound orders); R
    # (tally's reservations), S (safety stock).
    {
        awk -F, -v pub="$tmp/pub" '
            FNR == 1 { f = FILENAME; sub(/.*\/pst-/, "", f); sub(/\.csv$/, "", f); next }
            FILENAME ~ /\/pub\.csv$/ { if ($3 > 0) print $1, $2 >pub; next }
            { print "H", f, $1, $2 }' "$tmp/pub.csv" "${pst[@]}"
        jq -r 'input_filename as $f | ($f | sub(".*/pob-"; "") | sub("\\.json$"; "")) as $w
            | (.items[] | "O \($w) \(.id)"),
              (.items[] | select(.status != "shipped" and .status != "cancelled")
               | .lines[] | "B \($w) \(.sku) \(.qty)")' "${pob[@]}"
    } >"$tmp/simstate"
    sql -separator ' ' "SELECT 'R', w.code, o.order_id, k.code, a.qty FROM allocations a
        JOIN orders o ON o.id = a.order_ref JOIN warehouses w ON w.id = a.warehouse
        JOIN skus k ON k.id = a.sku WHERE a.state = 'reserved'" "SELECT 'S', w.code, k.code, t.safety FROM stock t JOIN skus k ON k.id = t.sku
        JOIN warehouses w ON w.id = t.warehouse WHERE t.safety > 0" >>"$tmp/simstate"
}
# pub_judge [HOT...]: judges $tmp/pub (sku, published) against $tmp/simstate (rows H on hand, O
# outbound order, B its live lines, R tally's reservations, S safety, optionally P tally's pending
# overlay, shown in the diagnosis only): a SKU is over when its published value is above what is
# truly available over every warehouse (sum of max(0, on hand - live outbound lines - reserved
# for orders the warehouse has not got yet - safety)). Prints "VIOLATION ..." for the first five
# over, then "RESULT checked over hot_missing equal" (hot_missing: HOT SKUs not published;
# equal: SKUs published at exactly the available figure).
pub_judge() {
    awk -v hot="$*" '
    FNR == NR {
        if ($1 == "H") { onh[$2 " " $3] = $4; wh[$2] = 1 }
        else if ($1 == "O") ob[$2 " " $3] = 1
        else if ($1 == "B") held[$2 " " $3] += $4
        else if ($1 == "R") { if (!(($2 " " $3) in ob)) res[$2 " " $4] += $5 }
        else if ($1 == "S") saf[$2 " " $3] = $4
        else if ($1 == "P") pend[$2 " " $3] = $4
        next
    }
    {
        s = $1; v = $2; tot = 0; why = ""
        for (w in wh) {
            k = w " " s; a = onh[k] - held[k] - res[k] - saf[k]
            if (a < 0) a = 0
            tot += a
            why = why sprintf(" %s(on_hand %d, outbound %d, reserved %d, safety %d%s)", w, onh[k],
                held[k], res[k], saf[k], (k in pend) ? sprintf("; tally pending %d", pend[k]) : "")
        }
        n++
        if (v == tot) eq++
        if (v > tot) { bad++; if (bad <= 5) printf "VIOLATION %s published %d > available %d:%s\n", s, v, tot, why }
        seen[s] = 1
    }
    END {
        split(hot, h, " "); miss = 0
        for (i in h) if (!(h[i] in seen)) miss++
        printf "RESULT %d %d %d %d\n", n, bad + 0, miss, eq + 0
    }' "$tmp/simstate" "$tmp/pub"
}
# pub_over: from the state read_pub_state read, each SKU whose published value is above what is
# truly available (pub_judge), the first three with their figures; nothing when none is.
pub_over() {
    pub_judge | awk '/^VIOLATION / && ++k <= 3 { sub(/^VIOLATION /, ""); printf "%s; ", $0 }'
}
check_published_le_available() {
    [ "$1" = step ] && return
    local stable=0
    for _ in $(seq 10); do
        read_pub_state
        cp "$tmp/pub" "$tmp/pub.1"
        cp "$tmp/simstate" "$tmp/simstate.1"
        sleep 2
        read_pub_state
        if cmp -s "$tmp/pub" "$tmp/pub.1" && cmp -s "$tmp/simstate" "$tmp/simstate.1"; then
            stable=1
            break
        fi
    done
    [ "$stable" = 1 ] || echo "  (state still moving after 20 s; judged on the last read)"
    local out
    out=$(pub_over)
    [ -z "$out" ] || viol published_le_available "$out"
}

# same_stock: the replica's (sku, on_hand, version) equal the simulator's in every warehouse;
# the differences in $tmp/stockdiff.
# A warehouse listed in NOVERSION (" CODE ... ") is compared on (sku, on_hand) alone: a third-party
# kind's rows carry no version of the warehouse's, the replica keeps the time of its read.
same_stock() {
    local w
    : >"$tmp/stockdiff"
    for w in "${WHS[@]}"; do
        local v='","$4' vs=', t.upstream_version'
        case ${NOVERSION:-} in *" $w "*) v='' vs='' ;; esac
        ctl "$base/control/stock?wh=$w&format=csv" | tail -n +2 | awk -F, "{print \$1\",\"\$2$v}" |
            sort >"$tmp/sim-$w.csv"
        sql -csv "SELECT s.code, t.snapshot + t.pending$vs FROM stock t
            JOIN skus s ON s.id = t.sku JOIN warehouses w ON w.id = t.warehouse
            WHERE w.code = '$w'" | sort >"$tmp/rep-$w.csv"
        diff "$tmp/sim-$w.csv" "$tmp/rep-$w.csv" | grep '^[<>]' | head -4 | sed "s/^/$w /" >>"$tmp/stockdiff"
    done
    [ ! -s "$tmp/stockdiff" ]
}

# streams_done: every stream finished a round since mark_rounds; quiet: nothing left to send
# (outbox, publishing, fulfilment).
streams_done() {
    st | jq -e --argjson since "$round_mark" '[.upstreams[].streams[]
        | (.last_success_at // 0) > $since and (.in_round | not)] | length > 0 and all' >/dev/null
}
quiet() {
    outbox_empty && [ "$(sql "SELECT COUNT(*) FROM publish WHERE dirty = 1")" = 0 ] &&
        [ "$(sql "SELECT COUNT(*) FROM orders WHERE fdirty = 1")" = 0 ]
}
