/*
 * Protocol abuse against a real tallyd (an ASan build in CI):
 *   test_abuse TALLYD
 *
 * Oversized frames, garbage, truncated and byte-by-byte frames, deep nesting, wrong types,
 * client-sent responses, too many connections, 1000 pipelined requests, clients that never
 * read, msgid bounds. After every case a fresh connection must get a correct `status` answer
 * and the daemon must still be running; a bystander connection opened at the start, idle all
 * along, must answer `hello` at the end; and tallyd must then stop cleanly on SIGTERM (exit
 * status 0, so no sanitizer report either).
 *
 * The daemon runs with [limits] max_connections = 32 and max_output_bytes = 65536 and the
 * default max_message_bytes (1 MiB).
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"

#define MAX_CONNECTIONS 32
#define MAX_OUTPUT 65536
#define MAX_MESSAGE (1u << 20)
#define NSKU 500 /* SKUs seeded, each in both warehouses: 1000 stock rows */
#define TIMEOUT 10000
#define RSS_LIMIT_KB (200L * 1024)       /* the daemon's VmRSS, at any time in case (i) */
#define RSS_GROWTH_LIMIT_KB (32L * 1024) /* its growth during case (i) */

static struct th_daemon D;
static bool verbose; /* TALLY_TEST_VERBOSE set: say what each case saw */
static const char *const WH[2] = {"ES-MAD", "PL-WAW"};

static void sku_code(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "A-%04d", i);
}

static long long seeded_on_hand(int i, int w)
{
    return (i * 7 + w * 3) % 50 + 1;
}

/* xorshift64*: the garbage generator, seeded for reproducible runs. */
static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* ---- building raw messages ---- */

struct buf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void buf_init(struct buf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void buf_free(struct buf *b)
{
    msgpack_sbuffer_destroy(&b->sb);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* ---- expectations ---- */

/* The daemon is alive and a fresh connection gets a correct status answer. */
static void after_case(const char *name)
{
    bool alive = th_daemon_alive(&D);
    CHECK(alive);
    bool ok = alive && th_status_ok(D.sock);
    CHECK(ok);
    if (!alive || !ok) {
        fprintf(stderr, "after %s: daemon %s\n", name, alive ? "not serving" : "gone");
        th_daemon_dump_log(&D, 30);
    }
}

static bool code_in(const char *code, const char *const *codes)
{
    for (; *codes; codes++)
        if (!strcmp(code, *codes))
            return true;
    return false;
}

/*
 * A framing-level offence: sends `n` bytes on a fresh connection (a send cut short because
 * the daemon closed is fine), then expects one error response with msgid 0 and a code among
 * `codes`, and then the connection closed. With strict_eof (everything sent was read by the
 * daemon) the close must be a clean EOF; otherwise ECONNRESET is accepted too, since Linux
 * reports a close with unread data as a reset once the buffered answer has been read.
 */
static void expect_fatal(const char *what, const void *bytes, size_t n, const char *const *codes,
                         bool strict_eof)
{
    struct th_conn c;
    if (th_connect(&c, D.sock) != 0) {
        fprintf(stderr, "%s: cannot connect\n", what);
        CHECK(!"connect");
        th_close(&c);
        return;
    }
    int s = th_send(&c, bytes, n, 5000);
    CHECK(s == 0 || s == TH_RESET || s == TH_TIMEOUT);
    struct th_resp r;
    int rr = th_read_response(&c, TIMEOUT, &r);
    if (rr != TH_ERRRESP || !code_in(r.code, codes) || r.msgid != 0) {
        fprintf(stderr, "%s: got %s code '%s' msgid %llu, want an error", what, th_outcome(rr),
                r.code, (unsigned long long)r.msgid);
        for (const char *const *k = codes; *k; k++)
            fprintf(stderr, " %s", *k);
        fprintf(stderr, " with msgid 0\n");
        CHECK(!"expected error response");
    } else {
        CHECK(1);
    }
    int cl = th_wait_closed(&c, TIMEOUT);
    if (verbose)
        printf("  %s: send %s, answer %s '%s' (%s), then %s\n", what, th_outcome(s), th_outcome(rr),
               r.code, r.message, th_outcome(cl));
    if (!(cl == TH_EOF || (!strict_eof && cl == TH_RESET))) {
        fprintf(stderr, "%s: after the error, wanted the connection closed%s, got %s\n", what,
                strict_eof ? " (read returning 0)" : "", th_outcome(cl));
        CHECK(!"connection closed after a framing error");
    } else {
        CHECK(1);
    }
    th_close(&c);
    after_case(what);
}

/*
 * An error inside a well-formed message: answered on the same connection with `code` and
 * msgid `msgid` (or alt_msgid, when not -1), after which the same connection answers hello.
 * code "" means a success is expected.
 */
static void expect_answer(struct th_conn *c, const char *what, const struct buf *b,
                          const char *code, long long msgid, long long alt_msgid)
{
    int s = th_send(c, b->sb.data, b->sb.size, 5000);
    CHECK_EQ_INT(s, 0);
    struct th_resp r;
    int rr = th_read_response(c, TIMEOUT, &r);
    bool want_ok = !code[0];
    bool good = (want_ok ? rr == TH_OK : rr == TH_ERRRESP && !strcmp(r.code, code)) &&
                ((long long)r.msgid == msgid || (long long)r.msgid == alt_msgid);
    if (!good) {
        fprintf(stderr, "%s: got %s code '%s' msgid %llu (%s), want %s msgid %lld\n", what,
                th_outcome(rr), r.code, (unsigned long long)r.msgid, r.message,
                want_ok ? "success" : code, msgid);
        CHECK(!"expected answer");
    } else {
        CHECK(1);
    }
    bool hello = th_hello_ok(c, TIMEOUT);
    if (!hello)
        fprintf(stderr, "%s: the connection no longer answers hello\n", what);
    CHECK(hello);
}

/* status.connections as seen from a fresh connection (which counts itself), or -1. */
static long long connections_now(void)
{
    struct th_conn c;
    long long n = -1;
    struct th_resp r;
    if (th_connect(&c, D.sock) == 0 && th_call(&c, TIMEOUT, &r, "status", "") == TH_OK)
        th_get_int(r.result, "connections", &n);
    th_close(&c);
    return n;
}

/* Waits until the daemon counts `others` connections besides the asking one. */
static bool wait_connections(long long others, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    long long n = -1;
    do {
        n = connections_now();
        if (n == others + 1) {
            th_sleep_ms(50); /* the asking connection's own close is processed */
            return true;
        }
        th_sleep_ms(20);
    } while (th_now_ms() < deadline);
    fprintf(stderr, "connections: daemon counts %lld, expected %lld\n", n, others + 1);
    return false;
}

/* ---- seed ---- */

static int seed(void)
{
    struct th_rows wh, cat, stock;
    th_rows_init(&wh);
    th_rows_init(&cat);
    th_rows_init(&stock);
    th_rows_add(&wh, "sss", "code", WH[0], "name", "Madrid", "country", "ES");
    th_rows_add(&wh, "sssb", "code", WH[1], "name", "Warsaw", "country", "PL", "serves_marketplace",
                0);
    for (int i = 1; i <= NSKU; i++) {
        char sku[16], pid[16], title[64];
        sku_code(i, sku, sizeof sku);
        snprintf(pid, sizeof pid, "P-%03d", (i - 1) / 5);
        snprintf(title, sizeof title, "Abuse item %d", i);
        th_rows_add(&cat, "sssis", "sku", sku, "product_id", pid, "title", title, "price_minor",
                    (long long)(100 + i), "currency", "EUR");
        for (int w = 0; w < 2; w++)
            th_rows_add(&stock, "ssi", "sku", sku, "warehouse", WH[w], "on_hand",
                        seeded_on_hand(i, w));
    }
    int rc = th_seed(D.sock, &wh, &cat, &stock);
    th_rows_free(&wh);
    th_rows_free(&cat);
    th_rows_free(&stock);
    return rc;
}

/* ---- (a) oversized frames ---- */

static const char *const TOO_LARGE[] = {"too_large", NULL};

static void case_oversized(void)
{
    /* A str32 header claiming 2 MiB as the method: refused from the header alone. */
    const unsigned char head[] = {0x94, 0x00, 0x01, 0xdb, 0x00, 0x20, 0x00, 0x00};
    expect_fatal("str32 header of 2 MiB", head, sizeof head, TOO_LARGE, true);

    /* The same header followed by its 2 MiB of data. */
    size_t n = sizeof head + (2u << 20);
    unsigned char *big = malloc(n);
    memcpy(big, head, sizeof head);
    memset(big + sizeof head, 'x', n - sizeof head);
    expect_fatal("str32 of 2 MiB with its data", big, n, TOO_LARGE, false);
    free(big);

    /* A legit-looking request whose params hold 1.5 MiB of small ints in one flat array. */
    struct buf b;
    buf_init(&b);
    msgpack_pack_array(&b.pk, 4);
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 2);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 1);
    pk_str(&b.pk, "pad");
    size_t count = 1536u * 1024;
    msgpack_pack_array(&b.pk, count);
    for (size_t i = 0; i < count; i++)
        msgpack_pack_int(&b.pk, (int)(i % 100));
    expect_fatal("1.5 MiB array of small ints", b.sb.data, b.sb.size, TOO_LARGE, false);
    buf_free(&b);

    /* The same size as 1536 arrays of 1000 ints: no header lies about the size, so the
     * daemon has to notice while buffering. */
    buf_init(&b);
    msgpack_pack_array(&b.pk, 4);
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 3);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 1);
    pk_str(&b.pk, "pad");
    msgpack_pack_array(&b.pk, 1536);
    for (int i = 0; i < 1536; i++) {
        msgpack_pack_array(&b.pk, 1000);
        for (int k = 0; k < 1000; k++)
            msgpack_pack_int(&b.pk, k % 100);
    }
    expect_fatal("1.5 MiB of nested small arrays", b.sb.data, b.sb.size, TOO_LARGE, false);
    buf_free(&b);

    /* Either side of the limit: a request of max_message_bytes - 64 is answered, one of
     * max_message_bytes + 64 is refused. */
    for (int over = 0; over < 2; over++) {
        size_t target = over ? MAX_MESSAGE + 64 : MAX_MESSAGE - 64;
        buf_init(&b);
        msgpack_pack_array(&b.pk, 4);
        msgpack_pack_int(&b.pk, 0);
        msgpack_pack_uint32(&b.pk, 4);
        pk_str(&b.pk, "hello");
        msgpack_pack_array(&b.pk, 1);
        msgpack_pack_map(&b.pk, 1);
        pk_str(&b.pk, "pad");
        size_t pad = target - b.sb.size - 5; /* str32 header */
        char *s = malloc(pad);
        memset(s, 'p', pad);
        msgpack_pack_str(&b.pk, pad);
        msgpack_pack_str_body(&b.pk, s, pad);
        free(s);
        CHECK_EQ_INT(b.sb.size, target);
        if (over) {
            expect_fatal("request of max_message_bytes + 64", b.sb.data, b.sb.size, TOO_LARGE,
                         false);
        } else {
            struct th_conn c;
            CHECK_EQ_INT(th_connect(&c, D.sock), 0);
            expect_answer(&c, "request of max_message_bytes - 64", &b, "", 4, -1);
            th_close(&c);
            after_case("request of max_message_bytes - 64");
        }
        buf_free(&b);
    }
}

/* ---- (b) garbage ---- */

/*
 * Sends n bytes of garbage (after `prefix`, a valid request, when given) on a fresh connection.
 * Garbage can hold well-formed messages before the bytes that break framing, and those are
 * answered one by one; what must come is a framing error (msgid 0), then the close.
 */
static void garbage_once(const char *what, const unsigned char *g, size_t n, bool prefix)
{
    static const char *const framing[] = {"malformed", "bad_request", "too_large", "too_deep",
                                          NULL};
    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    struct buf b;
    buf_init(&b);
    if (prefix)
        th_pack_request(&b.sb, 7, "hello", "");
    msgpack_sbuffer_write(&b.sb, (const char *)g, n);
    int s = th_send(&c, b.sb.data, b.sb.size, 5000);
    buf_free(&b);
    CHECK(s == 0 || s == TH_RESET || s == TH_TIMEOUT);
    int answers = 0, rr;
    char last[48] = "";
    struct th_resp r;
    bool all_errors = true, last_msgid0 = false, first_ok = false;
    while ((rr = th_read_response(&c, TIMEOUT, &r)) == TH_ERRRESP || rr == TH_OK) {
        if (answers == 0)
            first_ok = rr == TH_OK && r.msgid == 7;
        else
            all_errors &= rr == TH_ERRRESP;
        if (answers == 0 && !prefix)
            all_errors &= rr == TH_ERRRESP;
        answers++;
        snprintf(last, sizeof last, "%s", r.code);
        last_msgid0 = r.msgid == 0;
        if (answers > 1000)
            break;
    }
    bool good = answers >= 1 + prefix && all_errors && code_in(last, framing) && last_msgid0 &&
                (rr == TH_EOF || rr == TH_RESET) && (!prefix || first_ok);
    if (!good)
        fprintf(stderr, "%s: %d answers, last code '%s', all errors %d, then %s\n", what, answers,
                last, all_errors, th_outcome(rr));
    CHECK(good);
    if (verbose)
        printf("  %s: %d answers, last '%s', then %s\n", what, answers, last, th_outcome(rr));
    th_close(&c);
    after_case(what);
}

static void case_garbage(void)
{
    enum { N = 64 * 1024, SEEDS = 32 };
    unsigned char *g = malloc(N);
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        rng_state = 0x9E3779B97F4A7C15ULL * seed;
        for (int i = 0; i < 4; i++)
            rng();
        for (size_t i = 0; i < N; i++)
            g[i] = (unsigned char)(rng() >> 56);
        char what[80];
        snprintf(what, sizeof what, "64 KiB of garbage (seed %llu, first byte 0x%02x)",
                 (unsigned long long)seed, g[0]);
        garbage_once(what, g, N, false);
        if (seed <= 4) {
            snprintf(what, sizeof what, "hello then 64 KiB of garbage (seed %llu)",
                     (unsigned long long)seed);
            garbage_once(what, g, N, true);
        }
    }
    free(g);
}

/* ---- (c) truncated frames, reassembly ---- */

static void check_hello_result(const struct th_resp *r, const char *what)
{
    long long proto = 0;
    bool ok = th_get_int(r->result, "protocol", &proto) && proto == 1;
    if (!ok)
        fprintf(stderr, "%s: hello result without protocol 1\n", what);
    CHECK(ok);
}

static void case_truncated(void)
{
    struct buf b;
    buf_init(&b);
    th_pack_request(&b.sb, 21, "hello", "is", "version", 1LL, "client", "truncated-test");
    size_t half = b.sb.size / 2;

    /* Half a request, then close. */
    int fd = th_connect_fd(D.sock);
    CHECK(fd >= 0);
    CHECK_EQ_INT(th_send_fd(fd, b.sb.data, half, 5000), 0);
    close(fd);
    after_case("half a request then close");

    /* Half a request, a pause, the rest. */
    struct th_conn c;
    struct th_resp r;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    CHECK_EQ_INT(th_send(&c, b.sb.data, half, 5000), 0);
    int rr = th_read_response(&c, 1000, &r); /* nothing may come for half a request */
    CHECK_EQ_INT(rr, TH_TIMEOUT);
    CHECK_EQ_INT(th_send(&c, b.sb.data + half, b.sb.size - half, 5000), 0);
    rr = th_read_response(&c, TIMEOUT, &r);
    CHECK_EQ_INT(rr, TH_OK);
    CHECK_EQ_INT(r.msgid, 21);
    if (rr == TH_OK)
        check_hello_result(&r, "half, pause, rest");
    buf_free(&b);

    /* One byte per write, with small pauses: a stock.get, then two pipelined requests, the
     * first in valid but not minimal encodings (uint8 kind, uint32 msgid, str8 method, array16,
     * map16, str8/str16 keys, uint64 version, str16 value), so that every kind of header is
     * split at every byte. */
    buf_init(&b);
    th_pack_request(&b.sb, 22, "stock.get", "s", "sku", "A-0007");
    static const unsigned char wide[] = {0x94, 0xcc, 0x00, 0xce, 0x00, 0x00, 0x00, 23,   0xd9, 0x05,
                                         'h',  'e',  'l',  'l',  'o',  0xdc, 0x00, 0x01, 0xde, 0x00,
                                         0x02, 0xd9, 0x07, 'v',  'e',  'r',  's',  'i',  'o',  'n',
                                         0xcf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xda,
                                         0x00, 0x03, 'p',  'a',  'd',  0xda, 0x01, 0x2c};
    msgpack_sbuffer_write(&b.sb, (const char *)wide, sizeof wide);
    for (int i = 0; i < 300; i++)
        msgpack_sbuffer_write(&b.sb, "z", 1);
    th_pack_request(&b.sb, 24, "stock.get", "s", "sku", "A-0008");
    for (size_t i = 0; i < b.sb.size; i++) {
        if (th_send(&c, b.sb.data + i, 1, 5000) != 0) {
            CHECK(!"send of one byte");
            break;
        }
        th_sleep_ms(1);
    }
    for (uint32_t id = 22; id <= 24; id++) {
        rr = th_read_response(&c, TIMEOUT, &r);
        CHECK_EQ_INT(rr, TH_OK);
        CHECK_EQ_INT(r.msgid, id);
        if (rr != TH_OK)
            break;
        if (id == 23) {
            check_hello_result(&r, "byte by byte");
            continue;
        }
        char sku[16] = "";
        th_get_str(r.result, "sku", sku, sizeof sku);
        CHECK_EQ_STR(sku, id == 22 ? "A-0007" : "A-0008");
        long long on_hand = -1;
        const msgpack_object *tot = th_get(r.result, "total");
        th_get_int(tot, "on_hand", &on_hand);
        int i = id == 22 ? 7 : 8;
        CHECK_EQ_INT(on_hand, seeded_on_hand(i, 0) + seeded_on_hand(i, 1));
    }
    CHECK(th_hello_ok(&c, TIMEOUT));
    th_close(&c);
    buf_free(&b);
    after_case("truncated and byte-by-byte frames");
}

/* ---- (d) deep nesting ---- */

/* [0, msgid, "hello", [{"x": [[[...nil]]]}]] with `arrays` nested arrays under "x": the
 * message nests 3 + arrays levels (request, params, map, arrays). */
static void pack_nested(struct buf *b, uint32_t msgid, int arrays)
{
    msgpack_pack_array(&b->pk, 4);
    msgpack_pack_int(&b->pk, 0);
    msgpack_pack_uint32(&b->pk, msgid);
    pk_str(&b->pk, "hello");
    msgpack_pack_array(&b->pk, 1);
    msgpack_pack_map(&b->pk, 1);
    pk_str(&b->pk, "x");
    for (int i = 0; i < arrays; i++)
        msgpack_pack_array(&b->pk, 1);
    msgpack_pack_nil(&b->pk);
}

static void case_deep(void)
{
    static const char *const too_deep[] = {"too_deep", NULL};
    struct buf b;
    /* 100 nested arrays right inside params, as the brief of this case says. */
    buf_init(&b);
    msgpack_pack_array(&b.pk, 4);
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 31);
    pk_str(&b.pk, "hello");
    for (int i = 0; i < 100; i++)
        msgpack_pack_array(&b.pk, 1);
    msgpack_pack_nil(&b.pk);
    expect_fatal("100 nested arrays in params", b.sb.data, b.sb.size, too_deep, true);
    buf_free(&b);

    /* The limit itself: 16 levels in all are fine, 17 are too deep. */
    buf_init(&b);
    pack_nested(&b, 32, 16 - 3);
    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    expect_answer(&c, "16 levels of nesting", &b, "", 32, -1);
    th_close(&c);
    buf_free(&b);
    buf_init(&b);
    pack_nested(&b, 33, 17 - 3);
    expect_fatal("17 levels of nesting", b.sb.data, b.sb.size, too_deep, true);
    buf_free(&b);
}

/* ---- (e) wrong types, (j) msgid bounds ---- */

static void case_wrong_types(void)
{
    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    struct buf b;
#define BEGIN(n)                                                                                   \
    buf_init(&b);                                                                                  \
    msgpack_pack_array(&b.pk, n)
#define END(what, code, id, alt)                                                                   \
    expect_answer(&c, what, &b, code, id, alt);                                                    \
    buf_free(&b)

    BEGIN(4); /* method as an int */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 41);
    msgpack_pack_int(&b.pk, 7);
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 0);
    END("method as int", "bad_request", 41, 0);

    BEGIN(4); /* msgid as a string: it cannot be echoed, so 0 */
    msgpack_pack_int(&b.pk, 0);
    pk_str(&b.pk, "42");
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 0);
    END("msgid as string", "bad_request", 0, -1);

    BEGIN(4); /* msgid negative */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_int(&b.pk, -1);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 0);
    END("msgid -1", "bad_request", 0, -1);

    BEGIN(4); /* params a map, not an array */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 43);
    pk_str(&b.pk, "hello");
    msgpack_pack_map(&b.pk, 0);
    END("params not an array", "bad_request", 43, 0);

    BEGIN(4); /* params [1] */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 44);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_int(&b.pk, 1);
    END("params [1]", "bad_request", 44, 0);

    BEGIN(4); /* params [{}, {}] */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 45);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 2);
    msgpack_pack_map(&b.pk, 0);
    msgpack_pack_map(&b.pk, 0);
    END("params of two maps", "bad_request", 45, 0);

    BEGIN(4); /* params [] is documented to mean [{}] */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 46);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 0);
    END("params []", "", 46, -1);

    BEGIN(3); /* an array of 3 elements */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 47);
    pk_str(&b.pk, "hello");
    END("array of 3 elements", "bad_request", 0, 47);

    BEGIN(5); /* an array of 5 elements */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 48);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 0);
    msgpack_pack_nil(&b.pk);
    END("array of 5 elements", "bad_request", 0, 48);

    buf_init(&b);
    th_pack_request(&b.sb, 49, "no.such.method", "");
    END("unknown method", "unknown_method", 49, -1);

    buf_init(&b);
    th_pack_request(&b.sb, 50, "", "");
    END("empty method", "unknown_method", 50, -1);

    buf_init(&b);
    th_pack_request(&b.sb, 51, "stock.get", "i", "sku", 5LL);
    END("stock.get with sku as int", "invalid_params", 51, -1);

    buf_init(&b);
    th_pack_request(&b.sb, 52, "stock.get", "");
    END("stock.get without sku", "invalid_params", 52, -1);

    buf_init(&b);
    th_pack_request(&b.sb, 53, "stock.get", "s", "sku", "NO-SUCH-SKU");
    END("stock.get of an unknown SKU", "not_found", 53, -1);

    buf_init(&b);
    th_pack_request(&b.sb, 54, "stock.move", "sssss", "id", "abuse-1", "kind", "receive", "sku",
                    "A-0001", "warehouse", WH[0], "qty", "abc");
    END("stock.move with qty \"abc\"", "invalid_params", 54, -1);

    buf_init(&b);
    th_pack_request(&b.sb, 55, "stock.move", "sssi", "kind", "receive", "sku", "A-0001",
                    "warehouse", WH[0], "qty", -5LL);
    END("stock.move receive of -5", "invalid_params", 55, -1);

    buf_init(&b);
    th_pack_request(&b.sb, 56, "hello", "i", "version", 2LL);
    END("hello version 2", "version_mismatch", 56, -1);

    /* A map of 10000 keys (about 90 KiB): unknown keys are ignored, the one known is used. */
    buf_init(&b);
    msgpack_pack_array(&b.pk, 4);
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 57);
    pk_str(&b.pk, "stock.get");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 10000);
    for (int i = 0; i < 9999; i++) {
        char k[16];
        snprintf(k, sizeof k, "key%05d", i);
        pk_str(&b.pk, k);
        msgpack_pack_int(&b.pk, i);
    }
    pk_str(&b.pk, "sku");
    pk_str(&b.pk, "A-0003");
    CHECK(b.sb.size < MAX_MESSAGE);
    END("map of 10000 keys", "", 57, -1);

    /* (j) msgid bounds: 2^32-1 is echoed, 2^32 is not a msgid. */
    BEGIN(4);
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 4294967295u);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 0);
    END("msgid 4294967295", "", 4294967295LL, -1);

    BEGIN(4);
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint64(&b.pk, 4294967296ull);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 0);
    END("msgid 4294967296", "bad_request", 0, -1);

    BEGIN(4); /* msgid as a float */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_double(&b.pk, 1.0);
    pk_str(&b.pk, "hello");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 0);
    END("msgid 1.0", "bad_request", 0, -1);
#undef BEGIN
#undef END
    th_close(&c);
    after_case("wrong types");
}

/* ---- (f) messages that are not requests ---- */

static void case_not_requests(void)
{
    static const char *const bad[] = {"bad_request", NULL};
    const unsigned char response[] = {0x94, 0x01, 0x01, 0xc0, 0xc0};  /* [1, 1, nil, nil] */
    const unsigned char bare[] = {0x2a};                              /* 42 */
    const unsigned char notif[] = {0x93, 0x02, 0xa2, 'h', 'i', 0x90}; /* [2, "hi", []] */
    const unsigned char map[] = {0x81, 0xa1, 'a', 0x01};              /* {"a": 1} */
    const unsigned char empty[] = {0x90};                             /* [] */
    const unsigned char kind_str[] = {0x94, 0xa1, '0', 0x01, 0xa5, 'h',
                                      'e',  'l',  'l', 'o',  0x90}; /* ["0", 1, "hello", []] */
    expect_fatal("a response sent by a client", response, sizeof response, bad, true);
    expect_fatal("a bare integer", bare, sizeof bare, bad, true);
    expect_fatal("a notification sent by a client", notif, sizeof notif, bad, true);
    expect_fatal("a map as a message", map, sizeof map, bad, true);
    expect_fatal("an empty array", empty, sizeof empty, bad, true);
    expect_fatal("message kind as a string", kind_str, sizeof kind_str, bad, true);
}

/* ---- (g) connection limit ---- */

static void case_connections(void)
{
    enum { OPEN = MAX_CONNECTIONS + 20 };
    /* Only the bystander may be connected now. */
    CHECK(wait_connections(1, 5000));
    int slots = MAX_CONNECTIONS - 1; /* the bystander holds one of the 32 */
    struct th_conn c[OPEN];
    for (int i = 0; i < OPEN; i++) {
        int r = th_connect(&c[i], D.sock);
        CHECK_EQ_INT(r, 0);
    }
    /* The excess ones are told at once: wait until OPEN - slots of them have something to
     * read, and a little longer to see that no more do. */
    int want = OPEN - slots, readable = 0;
    bool has_data[OPEN];
    int64_t deadline = th_now_ms() + 5000, settle = 0;
    while (th_now_ms() < deadline) {
        struct pollfd pf[OPEN];
        for (int i = 0; i < OPEN; i++)
            pf[i] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
        poll(pf, OPEN, 50);
        readable = 0;
        for (int i = 0; i < OPEN; i++) {
            has_data[i] = pf[i].revents != 0;
            readable += has_data[i];
        }
        if (readable >= want && !settle)
            settle = th_now_ms() + 300;
        if (settle && th_now_ms() >= settle)
            break;
    }
    CHECK_EQ_INT(readable, want);
    int served = 0, overloaded = 0;
    for (int i = 0; i < OPEN; i++) {
        if (!has_data[i]) {
            bool ok = th_hello_ok(&c[i], TIMEOUT);
            served += ok;
            if (i >= slots)
                fprintf(stderr, "connection %d (beyond the limit) was served\n", i);
            continue;
        }
        struct th_resp r;
        int rr = th_read_response(&c[i], TIMEOUT, &r);
        bool over = rr == TH_ERRRESP && !strcmp(r.code, "overloaded") && r.msgid == 0;
        if (!over)
            fprintf(stderr, "connection %d: got %s '%s' msgid %llu, want overloaded\n", i,
                    th_outcome(rr), r.code, (unsigned long long)r.msgid);
        if (i < slots)
            fprintf(stderr, "connection %d (within the limit) was refused\n", i);
        int cl = th_wait_closed(&c[i], TIMEOUT);
        if (cl != TH_EOF)
            fprintf(stderr, "connection %d: after overloaded, got %s, want EOF\n", i,
                    th_outcome(cl));
        overloaded += over && cl == TH_EOF;
        th_close(&c[i]);
    }
    CHECK_EQ_INT(served, slots);
    CHECK_EQ_INT(overloaded, want);
    /* The served ones, all still served. */
    int again = 0;
    for (int i = 0; i < OPEN; i++)
        if (c[i].fd >= 0)
            again += th_hello_ok(&c[i], TIMEOUT);
    CHECK_EQ_INT(again, slots);
    for (int i = 0; i < OPEN; i++)
        th_close(&c[i]);
    /* Slots come back: after the close, a full set of new connections is served. */
    CHECK(wait_connections(1, 5000));
    int fresh = 0;
    for (int i = 0; i < slots; i++) {
        if (th_connect(&c[i], D.sock) == 0)
            fresh += th_hello_ok(&c[i], TIMEOUT);
    }
    CHECK_EQ_INT(fresh, slots);
    for (int i = 0; i < slots; i++)
        th_close(&c[i]);
    CHECK(wait_connections(1, 5000));
    after_case("connection limit");
}

/* ---- (h) pipelining ---- */

static int expected_sku(uint32_t id)
{
    return (int)(id % NSKU) + 1;
}

static void case_pipelining(void)
{
    enum { N = 1000 };
    struct buf b;
    buf_init(&b);
    for (uint32_t id = 1; id <= N; id++) {
        char sku[16];
        switch (id % 4) {
        case 0:
            th_pack_request(&b.sb, id, "hello", "s", "client", "pipeline");
            break;
        case 1:
            th_pack_request(&b.sb, id, "status", "");
            break;
        case 2:
            sku_code(expected_sku(id), sku, sizeof sku);
            th_pack_request(&b.sb, id, "stock.get", "s", "sku", sku);
            break;
        default:
            if (id % 20 == 3)
                th_pack_request(&b.sb, id, "stock.get", "s", "sku", "NOPE");
            else
                th_pack_request(&b.sb, id, "catalog.get", "s", "sku", "A-0001");
        }
    }
    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    /* One write() for all of it (about 25 KiB: far below a Unix socket's buffer). */
    ssize_t w = send(c.fd, b.sb.data, b.sb.size, MSG_NOSIGNAL);
    CHECK_EQ_INT(w, (ssize_t)b.sb.size);
    if (w > 0 && (size_t)w < b.sb.size)
        th_send(&c, b.sb.data + w, b.sb.size - (size_t)w, 5000);
    static int seen[N + 1];
    memset(seen, 0, sizeof seen);
    int got = 0, wrong = 0, rr = 0;
    size_t bytes = 0;
    struct th_resp r;
    for (; got < N; got++) {
        rr = th_read_response(&c, TIMEOUT, &r);
        if (rr != TH_OK && rr != TH_ERRRESP)
            break;
        if (r.msgid < 1 || r.msgid > N) {
            wrong++;
            continue;
        }
        uint32_t id = (uint32_t)r.msgid;
        seen[id]++;
        bool ok = false;
        long long v = 0;
        char s[80] = "";
        switch (id % 4) {
        case 0:
            ok = rr == TH_OK && th_get_int(r.result, "protocol", &v) && v == 1;
            break;
        case 1:
            ok = rr == TH_OK && th_get_str(r.result, "station", s, sizeof s) &&
                 !strcmp(s, "itest") && th_get(r.result, "replica");
            break;
        case 2: {
            char want[16];
            sku_code(expected_sku(id), want, sizeof want);
            const msgpack_object *whs = th_get(r.result, "warehouses");
            ok = rr == TH_OK && th_get_str(r.result, "sku", s, sizeof s) && !strcmp(s, want) &&
                 whs && whs->type == MSGPACK_OBJECT_ARRAY && whs->via.array.size == 2;
            for (uint32_t k = 0; ok && k < 2; k++) {
                const msgpack_object *wo = &whs->via.array.ptr[k];
                ok = th_get_str(wo, "warehouse", s, sizeof s) && !strcmp(s, WH[k]) &&
                     th_get_int(wo, "on_hand", &v) && v == seeded_on_hand(expected_sku(id), k);
            }
            break;
        }
        default:
            if (id % 20 == 3)
                ok = rr == TH_ERRRESP && !strcmp(r.code, "not_found");
            else
                ok = rr == TH_OK && th_get_str(r.result, "sku", s, sizeof s) &&
                     !strcmp(s, "A-0001") && th_get_str(r.result, "title", s, sizeof s) &&
                     !strcmp(s, "Abuse item 1");
        }
        if (!ok) {
            if (wrong < 5)
                fprintf(stderr, "pipelining: wrong answer to msgid %u (%s %s)\n", id,
                        th_outcome(rr), r.code);
            wrong++;
        }
    }
    bytes = b.sb.size;
    CHECK_EQ_INT(got, N);
    if (got != N)
        fprintf(stderr, "pipelining: %d answers (of %zu bytes of requests), then %s\n", got, bytes,
                th_outcome(rr));
    CHECK_EQ_INT(wrong, 0);
    int once = 0;
    for (int i = 1; i <= N; i++)
        once += seen[i] == 1;
    CHECK_EQ_INT(once, N);
    CHECK(th_hello_ok(&c, TIMEOUT));
    th_close(&c);
    buf_free(&b);
    after_case("pipelining");
}

/* ---- (i) clients that never read ---- */

static void case_slow_reader(void)
{
    enum { READERS = 4, BATCH = 100, MAX_REQ = 100000 };
    struct buf b;
    buf_init(&b);
    for (uint32_t id = 1; id <= BATCH; id++)
        th_pack_request(&b.sb, id, "stock.list", "i", "limit", 1000LL);
    long rss0 = th_rss_kb(D.pid), rss_max = rss0;
    struct th_conn c[READERS];
    memset(c, 0, sizeof c);
    for (int k = 0; k < READERS; k++)
        c[k].fd = -1;
    int cut = 0;
    long sent_total = 0;
    bool runaway = false;
    /* Each reader sends batches of 100 stock.list (limit 1000: ~100 KiB per answer) and never
     * reads, until its sends fail because the daemon closed it (5 s at most each). Others are
     * served meanwhile. A daemon whose memory passes the limit ends the case at once. */
    for (int k = 0; k < READERS; k++) {
        CHECK_EQ_INT(th_connect(&c[k], D.sock), 0);
        long sent = 0;
        int64_t deadline = th_now_ms() + 5000;
        int s = 0;
        for (int batch = 1; sent < MAX_REQ && th_now_ms() < deadline && !runaway; batch++) {
            s = th_send(&c[k], b.sb.data, b.sb.size, 200);
            if (s == TH_RESET || s == TH_IOERR)
                break;
            if (s == 0)
                sent += BATCH;
            long rss = th_rss_kb(D.pid);
            if (rss > rss_max)
                rss_max = rss;
            if (rss > RSS_LIMIT_KB) {
                fprintf(stderr, "slow reader %d: daemon RSS %ld kB after %ld requests\n", k, rss,
                        sent);
                runaway = true;
            }
            if (batch % 10 == 0) {
                bool ok = th_status_ok(D.sock);
                CHECK(ok);
                if (!ok)
                    break;
            }
        }
        sent_total += sent;
        if (verbose)
            printf("  slow reader %d: %ld requests sent, last send %s, rss %ld kB\n", k, sent,
                   th_outcome(s), th_rss_kb(D.pid));
        if (s == TH_RESET)
            cut++;
        else
            fprintf(stderr, "slow reader %d: not disconnected after %ld requests (last send: %s)\n",
                    k, sent, th_outcome(s));
        if (runaway)
            break;
    }
    CHECK_EQ_INT(cut, READERS);
    /* Each was closed by the daemon: what was left for it is a few answers, then the end. */
    for (int k = 0; k < READERS; k++) {
        if (c[k].fd < 0 || runaway || k >= cut) {
            th_close(&c[k]);
            continue;
        }
        int answers = 0, rr;
        int64_t deadline = th_now_ms() + 5000;
        while ((rr = th_recv(&c[k], 1000)) == TH_MSG && answers < 1000 && th_now_ms() < deadline)
            answers++;
        CHECK(rr == TH_EOF || rr == TH_RESET);
        CHECK(answers < 100);
        if (verbose)
            printf("  slow reader %d: %d answers were left for it, then %s\n", k, answers,
                   th_outcome(rr));
        th_close(&c[k]);
    }
    for (int k = 0; k < READERS; k++)
        th_close(&c[k]);
    printf("  slow readers: %d of %d cut off after %ld requests in all; daemon RSS %ld kB "
           "before, %ld kB at most\n",
           cut, READERS, sent_total, rss0, rss_max);
    CHECK(rss_max > 0 && rss_max < RSS_LIMIT_KB);
    /* Under AddressSanitizer freed memory is quarantined rather than reused, so growth is
     * what was allocated: a few answers per reader, not the thousands it asked for. */
    CHECK(rss_max - rss0 < RSS_GROWTH_LIMIT_KB);
    buf_free(&b);
    CHECK(wait_connections(1, 5000));
    after_case("slow readers");
}

/* ---- (k) half-close ---- */

/*
 * A client that sends its requests and then shuts down its sending side (shutdown(SHUT_WR),
 * as `socat` or `nc -N` do at the end of their input) still gets every answer, then EOF.
 * It needs more output queued at the EOF than the socket buffer holds, so it runs against a
 * second tallyd with the default max_output_bytes (16 MiB): 20000 status answers are about
 * 7 MB.
 */
static void case_half_close(const char *tallyd)
{
    enum { N = 20000 };
    struct th_daemon d2;
    if (th_daemon_init(&d2, tallyd, "abuse-halfclose") != 0 || th_daemon_start(&d2) != 0) {
        CHECK(!"second tallyd started");
        th_daemon_cleanup(&d2);
        return;
    }
    struct buf b;
    buf_init(&b);
    for (uint32_t id = 1; id <= N; id++)
        th_pack_request(&b.sb, id, "status", "");
    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, d2.sock), 0);
    CHECK_EQ_INT(th_send(&c, b.sb.data, b.sb.size, TIMEOUT), 0);
    CHECK_EQ_INT(shutdown(c.fd, SHUT_WR), 0);
    static bool seen[N + 1];
    memset(seen, 0, sizeof seen);
    int got = 0, rr;
    struct th_resp r;
    int64_t deadline = th_now_ms() + 30000;
    while ((rr = th_read_response(&c, TIMEOUT, &r)) == TH_OK && th_now_ms() < deadline) {
        if (r.msgid >= 1 && r.msgid <= N && !seen[r.msgid]) {
            seen[r.msgid] = true;
            got++;
        }
    }
    if (got != N || rr != TH_EOF)
        fprintf(stderr,
                "half-close: %d requests then shutdown(SHUT_WR): %d answers, then %s (%s)\n", N,
                got, th_outcome(rr), r.code);
    CHECK_EQ_INT(got, N);
    CHECK_EQ_INT(rr, TH_EOF);
    th_close(&c);
    buf_free(&b);
    CHECK(th_daemon_alive(&d2) && th_status_ok(d2.sock));
    int status = th_daemon_stop(&d2, 15000);
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    th_daemon_cleanup(&d2);
    after_case("half-close");
}

/* ---- main ---- */

typedef void (*case_fn)(void);

static void run(const char *name, case_fn fn)
{
    int before = check_failures;
    int64_t t0 = th_now_ms();
    fn();
    if (verbose)
        printf("  daemon RSS %ld kB\n", th_rss_kb(D.pid));
    printf("case %-34s %s (%lld ms)\n", name, check_failures == before ? "ok" : "FAILED",
           (long long)(th_now_ms() - t0));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_abuse TALLYD\n");
        return 2;
    }
    th_setup("test_abuse", 300);
    verbose = getenv("TALLY_TEST_VERBOSE") != NULL;
    if (th_daemon_init(&D, argv[1], "abuse") != 0)
        return 1;
    char config[128];
    snprintf(config, sizeof config, "[limits]\nmax_connections = %d\nmax_output_bytes = %d\n",
             MAX_CONNECTIONS, MAX_OUTPUT);
    if (th_daemon_config(&D, config) != 0 || th_daemon_start(&D) != 0) {
        th_daemon_cleanup(&D);
        return 1;
    }
    if (seed() != 0) {
        fprintf(stderr, "seeding failed\n");
        th_daemon_dump_log(&D, 30);
        th_daemon_cleanup(&D);
        return 1;
    }
    struct th_conn bystander;
    CHECK_EQ_INT(th_connect(&bystander, D.sock), 0);
    CHECK(th_status_ok(D.sock));

    run("(a) oversized frames", case_oversized);
    run("(b) garbage", case_garbage);
    run("(c) truncated frames", case_truncated);
    run("(d) deep nesting", case_deep);
    run("(e,j) wrong types, msgid bounds", case_wrong_types);
    run("(f) messages that are not requests", case_not_requests);
    run("(g) connection limit", case_connections);
    run("(h) pipelining", case_pipelining);
    run("(i) slow readers", case_slow_reader);
    int64_t t0 = th_now_ms(), before = check_failures;
    case_half_close(argv[1]);
    printf("case %-34s %s (%lld ms)\n", "(k) half-close after requests",
           check_failures == before ? "ok" : "FAILED", (long long)(th_now_ms() - t0));

    /* The bystander, idle all along, is still served. */
    bool by = th_hello_ok(&bystander, TIMEOUT);
    if (!by)
        fprintf(stderr, "the bystander connection is no longer served\n");
    CHECK(by);
    th_close(&bystander);

    int status = th_daemon_stop(&D, 15000);
    bool clean = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!clean) {
        fprintf(stderr, "tallyd did not stop cleanly (wait status %d)\n", status);
        th_daemon_dump_log(&D, 60);
    }
    CHECK(clean);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    return check_result("test_abuse");
}
