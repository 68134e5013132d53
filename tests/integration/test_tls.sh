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
#   test_tls.sh TALLYD TALLY
set -uo pipefail
export LC_ALL=C
TALLYD=$1 TALLY=$2
umask 077
tmp=$(mktemp -d /tmp/tally-tls.XXXXXX)
. "$(dirname "$0")/synclib.sh"
up_pid=
cleanup() {
    [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null
    sync_cleanup
}
trap 'cleanup; echo "test_tls: $((checks - fails)) passed, $fails failed"' EXIT

# ---- the CA and the server's certificate (P-256 keys: quick to make)
pki=$tmp/pki
mkdir -p "$pki"
{
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 2 -subj "/CN=tally test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$pki/srv.key" -out "$pki/srv.csr" -subj "/CN=127.0.0.1" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
            >"$pki/ext" &&
        openssl x509 -req -in "$pki/srv.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
            -CAcreateserial -out "$pki/srv.pem" -days 2 -extfile "$pki/ext"
} >"$tmp/openssl.log" 2>&1 || {
    echo "openssl could not make the test CA:" >&2
    cat "$tmp/openssl.log" >&2
    exit 1
}
chmod 644 "$pki/ca.pem" # a CA certificate is public: any mode will do

python3 -u "$(dirname "$0")/hostile_upstream.py" --tls "$pki/srv.pem" "$pki/srv.key" \
    >"$tmp/up.out" 2>"$tmp/up.err" &
up_pid=$!
for _ in $(seq 200); do
    grep -q listening "$tmp/up.out" 2>/dev/null && break
    sleep 0.05
done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/up.out")
[ -n "$port" ] || { echo "TLS upstream did not start" >&2; cat "$tmp/up.err" >&2; exit 1; }
up=https://127.0.0.1:$port
uc() { curl -sS --max-time 5 --cacert "$pki/ca.pem" "$@"; }
mode() { uc "$up/control/mode?m=$1" >/dev/null; }
hits() { uc "$up/control/hits" | jq -r --arg m "$1" '.[$m] // 0'; }
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
stream_error() { # STREAM: its last error in `status --json` ("" when none)
    st | jq -r --arg n "wh:HOST-1:$1" '.upstreams[].streams[] | select(.name == $n)
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
if t status | grep -qi certificate; then ok; else bad "tally status does not show the certificate problem"; fi
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
