/*
 * Integration: a client that watches events and writes on the same connection.
 *   test_watch TALLYD [TALLY_SIM]
 *
 * PROTOCOL.md lets one connection both `watch` and call methods, pipelined. Events raised while
 * a request of that very connection is being handled (a pick that makes a row low, an
 * allocation that raises or resolves an exception, ...) must never land inside that request's
 * response: every message on the connection is either a complete response answering one of
 * the requests sent, with that request's result, or a notification [2, "event", [{...}]] with
 * the fields PROTOCOL.md lists for its type.
 *
 * (a) local: a watcher sends, in ONE write(), hello (so the response buffer is not empty when
 *     the events come), picks and transfers that cross low-stock thresholds, a stock.set that
 *     makes a row low, an order import and allocations that raise and then resolve an
 *     out_of_stock exception, reads in between; every response and event is checked, the
 *     low_stock and exception events must all arrive (also at a second, idle watcher), and the
 *     movements are applied exactly once.
 * (c) a transaction that raises an exception and then rolls back (its commit fails) announces
 *     nothing; the same raise, kept, is announced with the id of the row that is there.
 * (b) with tally-sim: the same connection watches while the station syncs a warehouse and the
 *     marketplace: `sync` and `order` events arrive between the responses to pipelined
 *     movements, which are checked as in (a); new orders whose page cannot be committed are
 *     not announced, and are once it can.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 10000

static struct th_daemon D;

/* ---- packing ---- */

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* Appends an import request of one kind; rows already packed back to back in `rows`. */
static void pack_import(msgpack_sbuffer *sb, uint32_t msgid, const char *kind, uint32_t nrows,
                        const msgpack_sbuffer *rows)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, msgid);
    pk_str(&pk, "import");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "kind");
    pk_str(&pk, kind);
    pk_str(&pk, "rows");
    msgpack_pack_array(&pk, nrows);
    msgpack_sbuffer_write(sb, rows->data, rows->size);
}

/* ---- what was sent, and what must come back ---- */

/* What a request's answer must be. */
enum expect { E_OK, E_ANY /* success or a well-formed error */ };

struct req {
    uint32_t msgid;
    const char *method;
    enum expect expect;
    const char *check_key; /* a result key that must be there on success ... */
    const char *check_str; /* ... with this string value (NULL: any value) */
    bool answered;
};

#define MAX_REQS 64
static struct req reqs[MAX_REQS];
static int nreqs;
static uint32_t next_msgid = 100;

static uint32_t expect_req(const char *method, enum expect e, const char *key, const char *val)
{
    struct req *r = &reqs[nreqs++];
    *r = (struct req){next_msgid++, method, e, key, val, false};
    return r->msgid;
}

/* Events seen, by type, on one connection. */
struct seen {
    int sync, sync_down, low_stock, order, exception_open, exception_resolved;
    char low[16][64]; /* "SKU@WAREHOUSE" of the low_stock events */
    int nlow;
    char oos_open[64], oos_resolved[64]; /* the order of an out_of_stock exception event */
    long long oos_open_id;               /* and the id of the (last) open one */
};

static bool is_str(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_STR;
}

static bool is_int(const msgpack_object *o)
{
    return o && (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                 o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER);
}

/* Checks a notification against PROTOCOL.md's `watch` table and records it. */
static bool check_event(const msgpack_object *m, struct seen *s, const char *where)
{
    const msgpack_object *a = m->via.array.ptr;
    if (m->via.array.size != 3 || !th_obj_str_eq(&a[1], "event") ||
        a[2].type != MSGPACK_OBJECT_ARRAY || a[2].via.array.size != 1 ||
        a[2].via.array.ptr[0].type != MSGPACK_OBJECT_MAP) {
        fprintf(stderr, "%s: a notification that is not [2, \"event\", [{...}]]\n", where);
        return false;
    }
    const msgpack_object *ev = &a[2].via.array.ptr[0];
    char type[32];
    if (!th_get_str(ev, "type", type, sizeof type) || !is_int(th_get(ev, "at"))) {
        fprintf(stderr, "%s: an event without type or at\n", where);
        return false;
    }
    static const char *const fields[][8] = {
        {"sync", "name", "state", "detail", NULL},
        {"low_stock", "sku", "warehouse", NULL},
        {"order", "order_id", "status", NULL},
        {"exception", "kind", "state", "message", NULL},
    };
    int k = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(type, fields[i][0]))
            k = i;
    if (k < 0) {
        fprintf(stderr, "%s: an event of unknown type '%s'\n", where, type);
        return false;
    }
    for (int i = 1; fields[k][i]; i++)
        if (!is_str(th_get(ev, fields[k][i]))) {
            fprintf(stderr, "%s: %s event without string '%s'\n", where, type, fields[k][i]);
            return false;
        }
    if ((k == 1 && (!is_int(th_get(ev, "available")) || !is_int(th_get(ev, "threshold")))) ||
        (k == 3 && (!is_int(th_get(ev, "id")) || !is_int(th_get(ev, "deadline"))))) {
        fprintf(stderr, "%s: %s event without its integer fields\n", where, type);
        return false;
    }
    char state[32] = "", kind[32] = "", sku[32] = "", wh[32] = "", oid[32] = "";
    th_get_str(ev, "state", state, sizeof state);
    switch (k) {
    case 0:
        s->sync++;
        s->sync_down += !strcmp(state, "down");
        break;
    case 1:
        s->low_stock++;
        th_get_str(ev, "sku", sku, sizeof sku);
        th_get_str(ev, "warehouse", wh, sizeof wh);
        if (s->nlow < 16)
            snprintf(s->low[s->nlow++], sizeof s->low[0], "%s@%s", sku, wh);
        break;
    case 2:
        s->order++;
        break;
    case 3:
        th_get_str(ev, "kind", kind, sizeof kind);
        th_get_str(ev, "order_id", oid, sizeof oid);
        if (!strcmp(state, "open"))
            s->exception_open++;
        else if (!strcmp(state, "resolved"))
            s->exception_resolved++;
        if (!strcmp(kind, "out_of_stock") && !strcmp(state, "open")) {
            snprintf(s->oos_open, sizeof s->oos_open, "%s", oid);
            th_get_int(ev, "id", &s->oos_open_id);
        }
        if (!strcmp(kind, "out_of_stock") && !strcmp(state, "resolved"))
            snprintf(s->oos_resolved, sizeof s->oos_resolved, "%s", oid);
        break;
    }
    return true;
}

static bool saw_low(const struct seen *s, const char *sku_at_wh)
{
    for (int i = 0; i < s->nlow; i++)
        if (!strcmp(s->low[i], sku_at_wh))
            return true;
    return false;
}

/* Checks a response against the request it answers. */
static bool check_response(const msgpack_object *m, const char *where)
{
    struct th_resp r;
    if (th_parse_response(m, &r) != 0) {
        fprintf(stderr, "%s: a malformed response (%s)\n", where, r.code);
        return false;
    }
    struct req *q = NULL;
    for (int i = 0; i < nreqs; i++)
        if (reqs[i].msgid == r.msgid)
            q = &reqs[i];
    if (!q) {
        fprintf(stderr, "%s: a response to msgid %llu, which was never sent\n", where,
                (unsigned long long)r.msgid);
        return false;
    }
    if (q->answered) {
        fprintf(stderr, "%s: msgid %u (%s) answered twice\n", where, q->msgid, q->method);
        return false;
    }
    q->answered = true;
    if (r.is_error) {
        if (q->expect == E_OK) {
            fprintf(stderr, "%s: %s (msgid %u) failed: %s %s\n", where, q->method, q->msgid, r.code,
                    r.message);
            return false;
        }
        return true;
    }
    if (r.result->type != MSGPACK_OBJECT_MAP) {
        fprintf(stderr, "%s: %s (msgid %u): the result is not a map (type %d)\n", where, q->method,
                q->msgid, (int)r.result->type);
        return false;
    }
    if (q->check_key) {
        const msgpack_object *v = th_get(r.result, q->check_key);
        if (!v || (q->check_str && !th_obj_str_eq(v, q->check_str))) {
            fprintf(stderr, "%s: %s (msgid %u): result key '%s' missing or not '%s'\n", where,
                    q->method, q->msgid, q->check_key, q->check_str ? q->check_str : "");
            return false;
        }
    }
    return true;
}

/* Set once a connection's stream cannot be read any further. */
static bool broken;

static int unanswered(void)
{
    int n = 0;
    for (int i = 0; i < nreqs; i++)
        n += !reqs[i].answered;
    return n;
}

/* Reads from c until every request is answered, checking each message. */
static void read_all(struct th_conn *c, struct seen *s, const char *where)
{
    while (unanswered() > 0) {
        int rr = th_recv(c, TIMEOUT);
        if (rr != TH_MSG) {
            fprintf(stderr, "%s: %s with %d requests unanswered\n", where, th_outcome(rr),
                    unanswered());
            CHECK(rr == TH_MSG);
            broken = true;
            return;
        }
        const msgpack_object *m = &c->msg.data;
        if (m->type != MSGPACK_OBJECT_ARRAY || m->via.array.size == 0 ||
            m->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            (m->via.array.ptr[0].via.u64 != 1 && m->via.array.ptr[0].via.u64 != 2)) {
            fprintf(stderr, "%s: a message that is neither a response nor a notification\n", where);
            CHECK(!"message is a response or a notification");
            broken = true; /* the stream cannot be trusted any further */
            return;
        }
        if (m->via.array.ptr[0].via.u64 == 2)
            CHECK(check_event(m, s, where));
        else
            CHECK(check_response(m, where));
    }
}

/* When set (th_now_ms), drain_events returns then even if events keep coming. */
static int64_t drain_until;

/* Reads the events an idle watcher got, until none comes for quiet_ms. */
static void drain_events(struct th_conn *c, struct seen *s, const char *where, int quiet_ms)
{
    for (;;) {
        if (drain_until && th_now_ms() > drain_until)
            return;
        int rr = th_recv(c, quiet_ms);
        if (rr == TH_TIMEOUT)
            return;
        if (rr != TH_MSG) {
            fprintf(stderr, "%s: %s\n", where, th_outcome(rr));
            CHECK(rr == TH_MSG);
            return;
        }
        const msgpack_object *m = &c->msg.data;
        bool note = m->type == MSGPACK_OBJECT_ARRAY && m->via.array.size > 0 &&
                    m->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                    m->via.array.ptr[0].via.u64 == 2;
        if (!note) {
            fprintf(stderr, "%s: an idle watcher got something other than a notification\n", where);
            CHECK(note);
            broken = true;
            return;
        }
        CHECK(check_event(m, s, where));
    }
}

static bool start_watch(struct th_conn *c)
{
    struct th_resp r;
    if (th_connect(c, D.sock) != 0)
        return false;
    int rr = th_call(c, TIMEOUT, &r, "watch", "");
    bool on = false;
    if (rr != TH_OK || !th_get_bool(r.result, "watching", &on) || !on) {
        fprintf(stderr, "watch: %s %s %s\n", th_outcome(rr), r.code, r.message);
        return false;
    }
    return true;
}

static long long on_hand_at(const char *sku, const char *wh)
{
    struct th_conn c;
    struct th_resp r;
    long long v = -1;
    if (th_connect(&c, D.sock) == 0 &&
        th_call(&c, TIMEOUT, &r, "stock.get", "s", "sku", sku) == TH_OK) {
        const msgpack_object *ws = th_get(r.result, "warehouses");
        for (uint32_t i = 0; ws && ws->type == MSGPACK_OBJECT_ARRAY && i < ws->via.array.size; i++)
            if (th_obj_str_eq(th_get(&ws->via.array.ptr[i], "warehouse"), wh))
                th_get_int(&ws->via.array.ptr[i], "on_hand", &v);
    }
    th_close(&c);
    return v;
}

/* ---- (a) local events ---- */

static int seed_local(void)
{
    struct th_conn c;
    struct th_resp r;
    msgpack_sbuffer b;
    msgpack_packer pk;
    int rc = th_connect(&c, D.sock);
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    th_pack_map(&pk, "sss", "code", "ES-MAD", "name", "Madrid", "country", "ES");
    th_pack_map(&pk, "sss", "code", "FR-PAR", "name", "Paris", "country", "FR");
    if (rc == 0 && th_import(&c, "warehouses", 2, &b, &r) != TH_OK)
        rc = -1;
    msgpack_sbuffer_clear(&b);
    static const char *const skus[] = {"A-1", "A-2", "A-3", "A-4", "OOS-1"};
    for (int i = 0; i < 5; i++)
        th_pack_map(&pk, "sssiss", "sku", skus[i], "product_id", "P", "title", skus[i],
                    "price_minor", 1000LL, "currency", "EUR", "product_title", "P");
    if (rc == 0 && th_import(&c, "catalog", 5, &b, &r) != TH_OK)
        rc = -1;
    msgpack_sbuffer_clear(&b);
    th_pack_map(&pk, "ssii", "sku", "A-1", "warehouse", "ES-MAD", "on_hand", 10LL, "threshold",
                5LL);
    th_pack_map(&pk, "ssii", "sku", "A-2", "warehouse", "ES-MAD", "on_hand", 10LL, "threshold",
                0LL);
    th_pack_map(&pk, "ssii", "sku", "A-3", "warehouse", "ES-MAD", "on_hand", 10LL, "threshold",
                3LL);
    th_pack_map(&pk, "ssii", "sku", "A-4", "warehouse", "ES-MAD", "on_hand", 10LL, "threshold",
                2LL);
    if (rc == 0 && th_import(&c, "stock", 4, &b, &r) != TH_OK)
        rc = -1;
    msgpack_sbuffer_destroy(&b);
    th_close(&c);
    return rc;
}

static void case_local(void)
{
    if (seed_local() != 0) {
        CHECK(!"seeding");
        return;
    }
    struct th_conn w, idle;
    CHECK(start_watch(&w));
    CHECK(start_watch(&idle));

    nreqs = 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    th_pack_request(&sb, expect_req("hello", E_OK, "protocol", NULL), "hello", "i", "version", 1LL);
    /* 10 -> 4, threshold 5: low. */
    th_pack_request(&sb, expect_req("stock.move", E_OK, "id", "mv-a1"), "stock.move", "ssssi", "id",
                    "mv-a1", "kind", "pick", "sku", "A-1", "warehouse", "ES-MAD", "qty", 6LL);
    th_pack_request(&sb, expect_req("status", E_OK, "station", NULL), "status", "");
    /* threshold 0 -> 20 with 10 available: low. */
    th_pack_request(&sb, expect_req("stock.set", E_OK, "sku", "A-2"), "stock.set", "ssi", "sku",
                    "A-2", "warehouse", "ES-MAD", "threshold", 20LL);
    /* 10 -> 3, threshold 3: low. */
    th_pack_request(&sb, expect_req("stock.move", E_OK, "id", "mv-a3"), "stock.move", "ssssi", "id",
                    "mv-a3", "kind", "pick", "sku", "A-3", "warehouse", "ES-MAD", "qty", 7LL);
    th_pack_request(&sb, expect_req("hello", E_OK, "protocol", NULL), "hello", "i", "version", 1LL);
    /* a transfer of 8 leaves 2 at ES-MAD, threshold 2: low at the source. */
    th_pack_request(&sb, expect_req("stock.move", E_OK, "id", "mv-a4"), "stock.move", "sssssi",
                    "id", "mv-a4", "kind", "transfer", "sku", "A-4", "warehouse", "ES-MAD", "to",
                    "FR-PAR", "qty", 8LL);
    /* A paid order of a SKU nobody holds: allocating it raises out_of_stock ... */
    msgpack_sbuffer rows;
    msgpack_sbuffer_init(&rows);
    msgpack_packer rpk;
    msgpack_packer_init(&rpk, &rows, msgpack_sbuffer_write);
    th_pack_map(&rpk, "ssissssiissss", "order_id", "O-1", "status", "WAIT_SELLER_SEND_GOODS",
                "created_at", (long long)time(NULL) - 60, "country", "ES", "currency", "EUR", "sku",
                "OOS-1", "buyer_name", "Ana", "qty", 1LL, "price_minor", 1000LL, "address",
                "Calle Mayor 1", "city", "Madrid", "postcode", "28013", "phone", "+34600000000");
    pack_import(&sb, expect_req("import", E_OK, "kind", "orders"), "orders", 1, &rows);
    msgpack_sbuffer_destroy(&rows);
    th_pack_request(&sb, expect_req("orders.allocate", E_ANY, "order_id", "O-1"), "orders.allocate",
                    "s", "order_id", "O-1");
    th_pack_request(&sb, expect_req("exceptions.list", E_OK, "items", NULL), "exceptions.list", "");
    /* ... and once stock arrives, allocating it resolves the exception. */
    th_pack_request(&sb, expect_req("stock.move", E_OK, "id", "mv-oos"), "stock.move", "ssssi",
                    "id", "mv-oos", "kind", "receive", "sku", "OOS-1", "warehouse", "ES-MAD", "qty",
                    5LL);
    th_pack_request(&sb, expect_req("orders.allocate", E_OK, "fstate", "allocated"),
                    "orders.allocate", "s", "order_id", "O-1");
    th_pack_request(&sb, expect_req("hello", E_OK, "protocol", NULL), "hello", "i", "version", 1LL);

    CHECK_EQ_INT(th_send(&w, sb.data, sb.size, TIMEOUT), 0); /* one write() */
    msgpack_sbuffer_destroy(&sb);
    struct seen s = {0};
    read_all(&w, &s, "(a) watcher that writes");
    CHECK_EQ_INT(unanswered(), 0);

    CHECK(saw_low(&s, "A-1@ES-MAD"));
    CHECK(saw_low(&s, "A-2@ES-MAD"));
    CHECK(saw_low(&s, "A-3@ES-MAD"));
    CHECK(saw_low(&s, "A-4@ES-MAD"));
    /* The exception events may follow the last response (the fulfilment pass may be the one
     * that resolves it): wait for them, checking everything that comes. */
    int64_t end = th_now_ms() + TIMEOUT;
    while (!broken && (!s.oos_open[0] || !s.oos_resolved[0]) && th_now_ms() < end)
        drain_events(&w, &s, "(a) watcher that writes, after its answers", 300);
    CHECK_EQ_STR(s.oos_open, "O-1");
    CHECK_EQ_STR(s.oos_resolved, "O-1");

    /* The idle watcher got the same events, and nothing else. */
    struct seen si = {0};
    broken = false;
    drain_events(&idle, &si, "(a) idle watcher", 500);
    CHECK(saw_low(&si, "A-1@ES-MAD"));
    CHECK(saw_low(&si, "A-4@ES-MAD"));
    CHECK_EQ_STR(si.oos_open, "O-1");

    /* Every movement applied once. */
    CHECK_EQ_INT(on_hand_at("A-1", "ES-MAD"), 4);
    CHECK_EQ_INT(on_hand_at("A-3", "ES-MAD"), 3);
    CHECK_EQ_INT(on_hand_at("A-4", "ES-MAD"), 2);
    CHECK_EQ_INT(on_hand_at("A-4", "FR-PAR"), 8);
    CHECK_EQ_INT(on_hand_at("OOS-1", "ES-MAD"), 5);
    th_close(&w);
    th_close(&idle);
}

/* ---- (c) events of a transaction that rolls back ---- */

/* SQL on the replica behind tallyd's back (test fault injection): 0 or -1. */
static int db_exec(const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    int rc = sqlite3_open(D.db, &db);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    }
    if (rc != SQLITE_OK)
        fprintf(stderr, "sqlite: %s: %s\n", sql, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static long long db_q64(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_open(D.db, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "sqlite: %s: %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/*
 * An exception raised inside a transaction that then rolls back (here its COMMIT fails, as on
 * a full disk: a deferred foreign key a test trigger breaks whenever an exception row is
 * inserted) must not be announced: watchers would hear of an exception that does not exist,
 * whose id the next one then reuses. Once the fault is gone the same raise is announced, with
 * the id of the row that is there.
 */
static void case_rollback(void)
{
    struct th_conn c;
    struct th_resp r;
    msgpack_sbuffer rows;
    msgpack_packer rpk;
    msgpack_sbuffer_init(&rows);
    msgpack_packer_init(&rpk, &rows, msgpack_sbuffer_write);
    th_pack_map(&rpk, "sssiss", "sku", "OOS-2", "product_id", "P", "title", "OOS-2", "price_minor",
                1000LL, "currency", "EUR", "product_title", "P");
    CHECK(th_connect(&c, D.sock) == 0 && th_import(&c, "catalog", 1, &rows, &r) == TH_OK);
    th_close(&c);
    msgpack_sbuffer_clear(&rows);
    CHECK_EQ_INT(db_exec("CREATE TABLE t_inj_parent(id INTEGER PRIMARY KEY);"
                         "CREATE TABLE t_inj_child(p INTEGER REFERENCES t_inj_parent(id)"
                         " DEFERRABLE INITIALLY DEFERRED);"
                         "CREATE TRIGGER t_inj AFTER INSERT ON exceptions"
                         " BEGIN INSERT INTO t_inj_child VALUES(-1); END;"),
                 0);

    struct th_conn w, idle;
    CHECK(start_watch(&w));
    CHECK(start_watch(&idle));
    nreqs = 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    th_pack_map(&rpk, "ssissssiissss", "order_id", "O-2", "status", "WAIT_SELLER_SEND_GOODS",
                "created_at", (long long)time(NULL) - 60, "country", "ES", "currency", "EUR", "sku",
                "OOS-2", "buyer_name", "Ana", "qty", 1LL, "price_minor", 1000LL, "address",
                "Calle Mayor 1", "city", "Madrid", "postcode", "28013", "phone", "+34600000000");
    pack_import(&sb, expect_req("import", E_OK, "kind", "orders"), "orders", 1, &rows);
    /* raises out_of_stock, then the commit fails: an error answer */
    th_pack_request(&sb, expect_req("orders.allocate", E_ANY, NULL, NULL), "orders.allocate", "s",
                    "order_id", "O-2");
    th_pack_request(&sb, expect_req("hello", E_OK, "protocol", NULL), "hello", "i", "version", 1LL);
    CHECK_EQ_INT(th_send(&w, sb.data, sb.size, TIMEOUT), 0);
    struct seen s = {0}, si = {0};
    read_all(&w, &s, "(c) rolled back");
    CHECK_EQ_INT(unanswered(), 0);
    /* the fulfilment pass may try too, and fail alike: give it time */
    drain_events(&w, &s, "(c) rolled back, after", 1500);
    drain_events(&idle, &si, "(c) idle, rolled back", 200);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM exceptions e JOIN orders o ON o.id = e.order_ref"
                        " WHERE o.order_id = 'O-2'"),
                 0);
    CHECK_EQ_STR(s.oos_open, "");
    CHECK_EQ_STR(si.oos_open, "");

    /* Without the fault, the raise is kept and announced. */
    CHECK_EQ_INT(db_exec("DROP TRIGGER t_inj; DROP TABLE t_inj_child; DROP TABLE t_inj_parent;"),
                 0);
    msgpack_sbuffer_clear(&sb);
    th_pack_request(&sb, expect_req("orders.allocate", E_ANY, NULL, NULL), "orders.allocate", "s",
                    "order_id", "O-2");
    CHECK_EQ_INT(th_send(&w, sb.data, sb.size, TIMEOUT), 0);
    read_all(&w, &s, "(c) kept");
    int64_t end = th_now_ms() + TIMEOUT;
    while (!broken && !s.oos_open[0] && th_now_ms() < end)
        drain_events(&w, &s, "(c) kept, after", 300);
    CHECK_EQ_STR(s.oos_open, "O-2");
    CHECK_EQ_INT(s.oos_open_id,
                 db_q64("SELECT e.id FROM exceptions e JOIN orders o ON o.id = e.order_ref"
                        " WHERE o.order_id = 'O-2' AND e.kind = 'out_of_stock'"));
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&rows);
    th_close(&w);
    th_close(&idle);
}

/* ---- (b) sync and order events, from tally-sim ---- */

static pid_t sim_pid;
static int sim_port;

/* Starts tally-sim on a free port (it dies with this process). 0 or -1. */
static int start_sim(const char *sim)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    sim_pid = fork();
    if (sim_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(sim, sim, "--port", "0", "--skus", "40", "--orders", "3", "--seed", "11",
              "--warehouses", "ES-MAD", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[256] = "";
    size_t n = 0;
    while (n < sizeof line - 1 && !strchr(line, '\n')) {
        ssize_t k = read(fds[0], line + n, sizeof line - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        line[n] = 0;
    }
    close(fds[0]);
    const char *p = strstr(line, "127.0.0.1:");
    sim_port = p ? atoi(p + 10) : 0;
    if (sim_port <= 0) {
        fprintf(stderr, "tally-sim did not start: '%s'\n", line);
        return -1;
    }
    return 0;
}

static void stop_sim(void)
{
    if (sim_pid > 0) {
        kill(sim_pid, SIGTERM);
        waitpid(sim_pid, NULL, 0);
        sim_pid = 0;
    }
}

/* POSTs a JSON body to the simulator's control interface; true on a 200 answer. */
static bool sim_post(const char *path, const char *json)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sim_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     path, strlen(json), json);
    char ans[64] = "";
    bool ok = th_send_fd(fd, req, (size_t)n, TIMEOUT) == 0 && read(fd, ans, sizeof ans - 1) > 0 &&
              strncmp(ans, "HTTP/1.1 200", 12) == 0;
    close(fd);
    return ok;
}

static void case_sim_rollback(struct th_conn *w);

static void case_sim(const char *tallyd, const char *sim)
{
    /* D was cleaned up after (a): it is made anew for this daemon. */
    if (start_sim(sim) != 0 || th_daemon_init(&D, tallyd, "watch-sim") != 0) {
        CHECK(!"tally-sim and a second tallyd");
        stop_sim();
        return;
    }
    char path[512], conf[2048];
    snprintf(path, sizeof path, "%s/wh.token", D.dir);
    FILE *f = fopen(path, "we");
    if (f) {
        fputs("tally-sim-wh-token\n", f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/app.secret", D.dir);
    if ((f = fopen(path, "we"))) {
        fputs("tally-sim-app-secret\n", f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/access.token", D.dir);
    if ((f = fopen(path, "we"))) {
        fputs("tally-sim-access-token\n", f);
        fclose(f);
    }
    snprintf(conf, sizeof conf,
             "[sync]\nretry_max = 2\nrequest_timeout = 3\n"
             "[warehouse ES-MAD]\nurl = http://127.0.0.1:%d/wh/ES-MAD\ntoken_file = %s/wh.token\n"
             "inventory_interval = 1\noutbound_interval = 2\n"
             "[marketplace]\ngateway = http://127.0.0.1:%d/sync\napp_key = tally-sim-app-key\n"
             "app_secret_file = %s/app.secret\naccess_token_file = %s/access.token\n"
             "catalog_interval = 2\norders_interval = 1\n",
             sim_port, D.dir, sim_port, D.dir, D.dir);
    if (th_daemon_config(&D, conf) != 0 || th_daemon_start(&D) != 0) {
        CHECK(!"tallyd against tally-sim");
        th_daemon_cleanup(&D);
        stop_sim();
        return;
    }
    struct th_conn w;
    CHECK(start_watch(&w));
    /* A local warehouse and SKU to move stock on while the upstreams sync. */
    struct th_conn c;
    struct th_resp r;
    msgpack_sbuffer b;
    msgpack_packer pk;
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    bool seeded = th_connect(&c, D.sock) == 0;
    th_pack_map(&pk, "sss", "code", "LOC-1", "name", "Local", "country", "ES");
    seeded = seeded && th_import(&c, "warehouses", 1, &b, &r) == TH_OK;
    msgpack_sbuffer_clear(&b);
    th_pack_map(&pk, "sssis", "sku", "L-1", "product_id", "LP", "title", "Local", "price_minor",
                100LL, "currency", "EUR");
    seeded = seeded && th_import(&c, "catalog", 1, &b, &r) == TH_OK;
    msgpack_sbuffer_clear(&b);
    th_pack_map(&pk, "ssii", "sku", "L-1", "warehouse", "LOC-1", "on_hand", 10LL, "threshold",
                10LL);
    seeded = seeded && th_import(&c, "stock", 1, &b, &r) == TH_OK;
    msgpack_sbuffer_destroy(&b);
    th_close(&c);
    CHECK(seeded);

    /* Rounds of pipelined writes until every event kind came in between: a receive of 1 lifts
     * L-1 above its threshold, a pick of 1 makes it low again (a low_stock event inside that
     * call); new marketplace orders, then a cut warehouse link, raise order and sync events. */
    struct seen s = {0};
    int64_t end = th_now_ms() + 60000;
    int iter = 0, picks = 0;
    bool cut = false;
    while (!broken && th_now_ms() < end &&
           (s.sync == 0 || s.order == 0 || s.sync_down == 0 || s.low_stock < 3)) {
        char id1[32], id2[32];
        snprintf(id1, sizeof id1, "mv-b%d-r", iter);
        snprintf(id2, sizeof id2, "mv-b%d-p", iter);
        nreqs = 0;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        th_pack_request(&sb, expect_req("hello", E_OK, "protocol", NULL), "hello", "i", "version",
                        1LL);
        th_pack_request(&sb, expect_req("stock.move", E_OK, "id", id1), "stock.move", "ssssi", "id",
                        id1, "kind", "receive", "sku", "L-1", "warehouse", "LOC-1", "qty", 1LL);
        th_pack_request(&sb, expect_req("sync", E_OK, "streams", NULL), "sync", "");
        th_pack_request(&sb, expect_req("stock.move", E_OK, "id", id2), "stock.move", "ssssi", "id",
                        id2, "kind", "pick", "sku", "L-1", "warehouse", "LOC-1", "qty", 1LL);
        th_pack_request(&sb, expect_req("status", E_OK, "station", NULL), "status", "");
        CHECK_EQ_INT(th_send(&w, sb.data, sb.size, TIMEOUT), 0);
        msgpack_sbuffer_destroy(&sb);
        read_all(&w, &s, "(b) watcher that writes, syncing");
        picks++;
        /* Let events from the loop's own timers come between batches too. */
        drain_events(&w, &s, "(b) between batches", 200);
        if (iter % 5 == 2 && s.order == 0)
            sim_post("/control/orders", "{\"count\": 2}");
        if (s.order > 0 && s.sync > 0 && !cut) {
            CHECK(sim_post("/control/link", "{\"target\": \"wh:ES-MAD\", \"up\": false}"));
            cut = true;
        }
        iter++;
    }
    if (cut)
        CHECK(sim_post("/control/link", "{\"target\": \"*\", \"up\": true}"));
    printf("case (b): %d batches; events: %d sync, %d low_stock, %d order, %d exception\n", iter,
           s.sync, s.low_stock, s.order, s.exception_open + s.exception_resolved);
    CHECK(s.sync_down > 0);
    CHECK(s.order > 0);
    CHECK(s.low_stock >= picks);
    CHECK_EQ_INT(on_hand_at("L-1", "LOC-1"), 10);
    case_sim_rollback(&w);
    th_close(&w);
    CHECK(th_daemon_alive(&D));
    int status = th_daemon_stop(&D, 15000);
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    stop_sim();
}

/* Whether the daemon's log holds `needle`. */
static bool log_has(const char *needle)
{
    FILE *f = fopen(D.log, "r");
    char line[1024];
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return found;
}

/* Sends `sync` on the watcher and reads what comes until the events are quiet. */
static void sync_and_drain(struct th_conn *w, struct seen *s, const char *where)
{
    nreqs = 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    th_pack_request(&sb, expect_req("sync", E_OK, "streams", NULL), "sync", "");
    CHECK_EQ_INT(th_send(w, sb.data, sb.size, TIMEOUT), 0);
    msgpack_sbuffer_destroy(&sb);
    read_all(w, s, where);
    drain_until = th_now_ms() + 3000;
    drain_events(w, s, where, 500);
    drain_until = 0;
}

/*
 * (b, continued) New marketplace orders whose page cannot be committed (a deferred foreign key
 * a test trigger breaks whenever an order row is inserted: the COMMIT fails, as on a full
 * disk) are not announced: no watcher hears of an order the replica does not have. Once the
 * fault is gone, the same orders are stored and announced.
 */
static void case_sim_rollback(struct th_conn *w)
{
    long long before = db_q64("SELECT count(*) FROM orders");
    CHECK_EQ_INT(db_exec("CREATE TABLE t_inj_parent(id INTEGER PRIMARY KEY);"
                         "CREATE TABLE t_inj_child(p INTEGER REFERENCES t_inj_parent(id)"
                         " DEFERRABLE INITIALLY DEFERRED);"
                         "CREATE TRIGGER t_inj AFTER INSERT ON orders"
                         " BEGIN INSERT INTO t_inj_child VALUES(-1); END;"),
                 0);
    drain_events(w, &(struct seen){0}, "(b) before the fault", 300);
    CHECK(sim_post("/control/orders", "{\"count\": 2}"));
    struct seen f = {0};
    int64_t end = th_now_ms() + 30000;
    while (!broken && f.order == 0 && !log_has("mp:orders: page not applied") && th_now_ms() < end)
        sync_and_drain(w, &f, "(b) orders page not committed");
    CHECK(log_has("mp:orders: page not applied"));
    sync_and_drain(w, &f, "(b) orders page not committed, after");
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM orders"), before);
    CHECK_EQ_INT(f.order, 0);

    CHECK_EQ_INT(db_exec("DROP TRIGGER t_inj; DROP TABLE t_inj_child; DROP TABLE t_inj_parent;"),
                 0);
    struct seen k = {0};
    end = th_now_ms() + 30000;
    while (!broken && k.order < 2 && th_now_ms() < end)
        sync_and_drain(w, &k, "(b) orders page kept");
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM orders"), before + 2);
    CHECK_EQ_INT(k.order, 2);
    printf("case (b) orders page rolled back: %d order events; kept: %d\n", f.order, k.order);
}

int main(int argc, char **argv)
{
    umask(077); /* tallyd refuses config and secret files others may read */
    if (argc < 2) {
        fprintf(stderr, "usage: test_watch TALLYD [TALLY_SIM]\n");
        return 2;
    }
    th_setup("test_watch", 180);
    if (th_daemon_init(&D, argv[1], "watch") != 0 || th_daemon_start(&D) != 0) {
        th_daemon_cleanup(&D);
        return 1;
    }
    int64_t t0 = th_now_ms();
    case_local();
    printf("case (a) local events: %lld ms\n", (long long)(th_now_ms() - t0));
    broken = false;
    t0 = th_now_ms();
    case_rollback();
    printf("case (c) events of a rolled-back transaction: %lld ms\n",
           (long long)(th_now_ms() - t0));
    CHECK(th_daemon_alive(&D));
    int status = th_daemon_stop(&D, 15000);
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    if (argc > 2) {
        t0 = th_now_ms();
        broken = false;
        case_sim(argv[1], argv[2]);
        printf("case (b) sync and order events: %lld ms\n", (long long)(th_now_ms() - t0));
    }
    return check_result("test_watch");
}
