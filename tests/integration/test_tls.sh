#!/usr/bin/env bash
# TLS to an upstream (issue 11, "Security, tested"): a local CA made here with the openssl CLI,
# a server certificate for 127.0.0.1 and localhost signed by it, and hostile_upstream.py (a
# tally Warehouse API v1) speaking HTTPS with it.
#   1. tallyd with `ca_file` = that CA trusts the server: the inventory is read.
#   2. tallyd without `ca_file` (the system's CAs) refuses it: the stream's error in `status`
#      names the certificate problem, nothing is stored, the server served no inventory.
#   3. A redirect is never followed, to another host or to this same host (http.c sets no
#      CURLOPT_FOLLOWLOCATION): the 302 is the stream's error, the target is never asked.
#   4. An answer larger than the cap (an endless body) is cut, reported on that stream only;
#      the warehouse's other stream has no error; the stream recovers when the server is sane.
#   5. A `ca_file` that does not exist stops tallyd at start, naming the file.
#   6. The host name is checked: servers with certificates signed by that same trusted CA, one
#      for `localhost` alone, one for `other.example` alone. Reached as https://localhost:PORT
#      (curl resolves `localhost` itself, without /etc/hosts) the first is read and the second
#      refused; the second reached as https://127.0.0.1:PORT is refused too. The refusals name
#      the host name in `status` and the log; nothing of theirs is stored, and their server
#      served no inventory. (With CURLOPT_SSL_VERIFYHOST off this part fails.)
#   7. An expired certificate (for 127.0.0.1 and localhost, signed by the trusted CA) is
#      refused the same way, naming the expiry.
#   test_tls.sh TALLYD TALLY
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2
umask 077
tmp=$(mktemp -d /tmp/tally-tls.XXXXXX)
. "$(dirname "$0")/synclib.sh"
up_pids=
cleanup() {
    for p in $up_pids; do kill "$p" 2>/dev/null; done
    sync_cleanup
}
trap 'cleanup; echo "test_tls: $((checks - fails)) passed, $fails failed"' EXIT

# ---- the CA and the servers' certificates (P-256 keys: quick to make)
pki=$tmp/pki
mkdir -p "$pki"
# leaf NAME CN SAN [openssl ca dates...]: NAME.pem and NAME.key, for SAN, signed by the CA;
# with dates (-startdate/-enddate) through `openssl ca`, which can issue in the past.
leaf() {
    local n=$1 cn=$2 san=$3
    shift 3
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$pki/$n.key" -out "$pki/$n.csr" -subj "/CN=$cn" || return 1
    printf '[x]\nsubjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$san" >"$pki/$n.ext"
    printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >>"$pki/$n.ext"
    if [ $# = 0 ]; then
        openssl x509 -req -in "$pki/$n.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
            -CAcreateserial -out "$pki/$n.pem" -days 2 -extfile "$pki/$n.ext" -extensions x
    else
        : >"$pki/index.txt"
        echo 1000 >"$pki/serial"
        printf '[ca]\ndefault_ca = d\n[d]\ndatabase = %s\nnew_certs_dir = %s\nserial = %s\n' \
            "$pki/index.txt" "$pki" "$pki/serial" >"$pki/ca.cnf"
        printf 'default_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n' >>"$pki/ca.cnf"
        openssl ca -batch -config "$pki/ca.cnf" -cert "$pki/ca.pem" -keyfile "$pki/ca.key" \
            -in "$pki/$n.csr" -out "$pki/$n.pem" -notext -extfile "$pki/$n.ext" -extensions x "$@"
    fi
}
{
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 2 -subj "/CN=tally test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
        leaf srv 127.0.0.1 "IP:127.0.0.1,DNS:localhost" &&
        leaf name localhost "DNS:localhost" &&
        leaf other other.example "DNS:other.example" &&
        leaf expired 127.0.0.1 "IP:127.0.0.1,DNS:localhost" \
            -startdate 20250101000000Z -enddate 20250102000000Z
} >"$tmp/openssl.log" 2>&1 || {
    echo "openssl could not make the test CA:" >&2
    cat "$tmp/openssl.log" >&2
    exit 1
}
chmod 644 "$pki/ca.pem" # a CA certificate is public: any mode will do

# serve NAME...: hostile_upstream.py speaking HTTPS with NAME.pem, one for each NAME, started
# together; sets port_NAME (their pids in up_pids).
serve() {
    local n p
    for n; do
        python3 -u "$(dirname "$0")/hostile_upstream.py" --tls "$pki/$n.pem" "$pki/$n.key" \
            >"$tmp/up-$n.out" 2>"$tmp/up-$n.err" &
        up_pids="$up_pids $!"
    done
    for n; do
        for _ in $(seq 200); do
            grep -q listening "$tmp/up-$n.out" 2>/dev/null && break
            sleep 0.05
        done
        p=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/up-$n.out")
        [ -n "$p" ] || { echo "TLS upstream $n did not start" >&2; cat "$tmp/up-$n.err" >&2; exit 1; }
        printf -v "port_$n" %s "$p"
    done
}
serve srv name other expired
up=https://127.0.0.1:$port_srv
uc() { curl -sS --max-time 5 --cacert "$pki/ca.pem" "$@"; }
mode() { uc "$up/control/mode?m=$1" >/dev/null; }
hits() { uc "${2:-$up}/control/hits" "${@:3}" | jq -r --arg m "$1" '.[$m] // 0'; } # MODE [URL CURL-ARGS]
# The premise: the server speaks TLS with this chain (curl, with the CA, gets an answer).
uc "$up/control/hits" >/dev/null && ok || bad "curl with the test CA cannot reach the server"

echo tls-test-token >"$tmp/wh.token"
# conf [CA_FILE]: one warehouse at the TLS server, with ca_file when given.
conf() {
    {
        printf '[station]\nname = TLS-TEST\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
        [ -n "${1:-}" ] && printf 'ca_file = %s\n' "$1"
        printf '[warehouse HOST-1]\nurl = %s\ntoken_file = %s\n' "$up" "$tmp/wh.token"
        printf 'inventory_interval = 1\noutbound_interval = 1\n'
    } >"$tmp/tallyd.conf"
}
stop_tallyd() {
    kill -TERM "$tallyd_pid" 2>/dev/null
    wait "$tallyd_pid" 2>/dev/null
    tallyd_pid=
}
stream_error() { # STREAM [WAREHOUSE]: its last error in `status --json` ("" when none)
    st | jq -r --arg n "wh:${2:-HOST-1}:$1" '.upstreams[].streams[] | select(.name == $n)
        | .last_error // ""'
}
on_hand() {
    sqlite3 -readonly "$tmp/state/replica.db" "SELECT t.snapshot + t.pending FROM stock t
        JOIN skus s ON s.id = t.sku WHERE s.code = '$1'" 2>/dev/null
}
stored_rows() { sqlite3 -readonly "$tmp/state/replica.db" "SELECT COUNT(*) FROM stock" 2>/dev/null; }
has_error() { [ -n "$(stream_error inventory)" ]; }
version=1
expect_sane() {
    [ "$(on_hand HOST-1)" = $((5 + version)) ] && [ "$(on_hand HOST-2)" = $((7 + version)) ] &&
        [ -z "$(stream_error inventory)" ]
}

# ---- 2 first (a fresh replica): no ca_file, the system's CAs do not know ours
conf
start_tallyd
wait_until 20 has_error
e=$(stream_error inventory)
echo "without ca_file: inventory stream error: $e"
if [[ "$e" =~ [Cc]ertificate ]]; then ok; else bad "without ca_file: error '$e' does not name the certificate"; fi
grep -qi certificate "$tmp/tallyd.log" && ok || bad "without ca_file: the log does not name the certificate problem"
sleep 2 # a few more rounds (interval 1 s): still nothing may be accepted
check_eq "$(stored_rows)" 0 "stock rows stored from an untrusted server"
check_eq "$(hits sane)" 0 "inventory requests served to a client that should have refused the certificate"
if grep -qi certificate <<<"$(t status)"; then ok; else bad "tally status does not show the certificate problem"; fi
stop_tallyd

# ---- 1. with ca_file: trusted, the inventory is read
conf "$pki/ca.pem"
start_tallyd
wait_until 30 expect_sane
echo "with ca_file: HOST-1 on hand $(on_hand HOST-1), HOST-2 $(on_hand HOST-2); inventory requests $(hits sane)"

# ---- 3. redirects: not followed, to another host or to this one
for m in redirect redirect_same; do
    mode "$m"
    version=$((version + 1))
    wait_until 20 has_error
    e=$(stream_error inventory)
    echo "$m: inventory stream error: $e"
    if [[ "$e" =~ 302 ]]; then ok; else bad "$m: error '$e' does not say 302"; fi
    check_eq "$(on_hand HOST-1)" $((5 + version - 1)) "$m: figures read through a redirect"
    mode sane
    version=$((version + 1))
    wait_until 30 expect_sane
done
check_eq "$(hits moved)" 0 "requests that followed the same-host redirect"

# ---- 4. an answer over the cap: cut and reported on its stream only
mode endless
version=$((version + 1))
wait_until 30 has_error
e=$(stream_error inventory)
echo "endless body: inventory stream error: $e"
if [[ "$e" =~ larger\ than ]]; then ok; else bad "endless: error '$e' does not say 'larger than'"; fi
check_eq "$(stream_error outbound)" "" "the outbound stream's error while the inventory answer is too large"
kill -0 "$tallyd_pid" 2>/dev/null && ok || bad "tallyd died on an endless body"
mode sane
version=$((version + 1))
wait_until 40 expect_sane
stop_tallyd

# ---- 6 and 7. the host name and the expiry: one tallyd, ca_file given, four warehouses at
# the servers started above (name, other, expired)
{
    printf '[station]\nname = TLS-TEST\n[sync]\nretry_max = 2\nrequest_timeout = 3\n'
    printf 'ca_file = %s\n' "$pki/ca.pem"
    for w in NAME-OK:localhost:$port_name OTHER-LH:localhost:$port_other \
        OTHER-IP:127.0.0.1:$port_other EXPIRED:127.0.0.1:$port_expired; do
        printf '[warehouse %s]\nurl = https://%s\ntoken_file = %s\n' "${w%%:*}" "${w#*:}" "$tmp/wh.token"
        printf 'inventory_interval = 1\noutbound_interval = 1\n'
    done
} >"$tmp/tallyd.conf"
rows_of() { # WAREHOUSE: its stock rows in the replica
    sqlite3 -readonly "$tmp/state/replica.db" "SELECT COUNT(*) FROM stock t
        JOIN warehouses w ON w.id = t.warehouse WHERE w.code = '$1'" 2>/dev/null
}
refused() { [ -n "$(stream_error inventory OTHER-LH)" ] && [ -n "$(stream_error inventory OTHER-IP)" ] &&
    [ -n "$(stream_error inventory EXPIRED)" ]; }
name_read() { [ "$(rows_of NAME-OK)" = 2 ] && [ -z "$(stream_error inventory NAME-OK)" ]; }
mv "$tmp/state" "$tmp/state-1" # a replica of its own (these warehouses, no HOST-1)
start_tallyd
wait_until 30 name_read
wait_until 20 refused
sleep 2 # a few more rounds (interval 1 s): still nothing may be accepted from the refused
for w in OTHER-LH OTHER-IP EXPIRED; do
    e=$(stream_error inventory $w)
    echo "$w: inventory stream error: $e"
    if [ $w = EXPIRED ]; then
        [[ "$e" =~ expired ]] && ok || bad "$w: error '$e' does not say the certificate expired"
    else
        [[ "$e" =~ host\ name ]] && ok || bad "$w: error '$e' does not name the host name"
    fi
    check_eq "$(rows_of $w)" 0 "$w: stock rows stored from a server that should have been refused"
done
echo "NAME-OK (certificate for localhost, reached as localhost): $(rows_of NAME-OK) rows, error '$(stream_error inventory NAME-OK)'"
check_eq "$(rows_of NAME-OK)" 2 "NAME-OK: stock rows read from the server whose name matches"
# the servers' own counts (the test's curl reaches other.example by --resolve, no /etc/hosts;
# the expired one only with -k: that certificate is what tallyd is tested on, not curl)
check_eq "$(hits sane "https://other.example:$port_other" --resolve "other.example:$port_other:127.0.0.1")" 0 \
    "inventory requests served with the other.example certificate"
check_eq "$(hits sane "https://127.0.0.1:$port_expired" -k)" 0 \
    "inventory requests served with the expired certificate"
[ "$(hits sane "https://localhost:$port_name")" -gt 0 ] && ok ||
    bad "no inventory request reached the server whose name matches"
if grep -q "host name" <<<"$(t status)"; then ok; else bad "tally status does not show the host name problem"; fi
grep -q "host name" "$tmp/tallyd.log" && ok || bad "the log does not name the host name problem"
grep -q "expired" "$tmp/tallyd.log" && ok || bad "the log does not name the expired certificate"
stop_tallyd

# ---- 5. a ca_file that does not exist: refused at start, naming it
conf "$tmp/no-such-ca.pem"
"$TALLYD" --config "$tmp/tallyd.conf" --state-dir "$tmp/state" --socket "$tmp/tally.sock" \
    >"$tmp/start.out" 2>&1 &
pid=$!
wait_exit() { ! kill -0 "$pid" 2>/dev/null; }
wait_until 10 wait_exit
wait "$pid" 2>/dev/null
rc=$?
[ "$rc" != 0 ] && ok || bad "tallyd started with a missing ca_file"
grep -q "no-such-ca.pem" "$tmp/start.out" && ok ||
    bad "the refusal does not name the missing ca_file: $(cat "$tmp/start.out")"
echo "missing ca_file: exit $rc: $(head -1 "$tmp/start.out")"
# under the sanitizers: nothing reported
if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$tmp/tallyd.log"; then
    bad "the sanitizers reported: $(grep -m1 -E "AddressSanitizer|LeakSanitizer|runtime error:" "$tmp/tallyd.log")"
else ok; fi
[ "$fails" = 0 ]
