/*
 * returns.receive / returns.inspect / returns.list through rpc_handle against a temp replica
 * (warehouses A and B, SKUs S1 and S2, S1@A on hand 10): the figures before and after, the
 * ledger rows and outbox rows each step writes (ids, kinds, deltas), idempotency by id, the
 * refusals, and injected failures in the middle of a transaction that must leave nothing
 * behind.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "check.h"
#include "codec.h"
#include "config.h"
#include "importer.h"
#include "rpc.h"
#include "store.h"
#include "tally/protocol.h"

static char tmpdir[64];
static int db_counter;
static struct tallyd d;

/* ---- harness: a daemon context on a temp replica, and calls through the dispatcher ---- */

static void exec_sql(const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(store_db(d.store), sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "exec: %s: %s\n", msg, sql);
        sqlite3_free(msg);
        CHECK(0);
    }
}

static int64_t q64(const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3_stmt *s;
    int64_t v = -999999;
    if (sqlite3_prepare_v2(store_db(d.store), sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(store_db(d.store)), sql);
        return v;
    }
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Packs one "key=value" argument: "#123" is an integer, "!1"/"!0" a boolean, else a string. */
static void pack_kv(msgpack_packer *pk, const char *kv)
{
    const char *eq = strchr(kv, '=');
    mp_pack_strn(pk, kv, (size_t)(eq - kv));
    if (eq[1] == '#')
        msgpack_pack_int64(pk, strtoll(eq + 2, NULL, 10));
    else if (eq[1] == '!' && eq[2] == '1')
        msgpack_pack_true(pk);
    else if (eq[1] == '!')
        msgpack_pack_false(pk);
    else
        mp_pack_strz(pk, eq + 1);
}

static msgpack_sbuffer resp_buf;
static msgpack_unpacked resp;
static char last_code[64];

/* Calls `method` with the NULL-terminated "key=value" params; returns the result map, or
 * NULL with the error code in last_code. The result lives until the next call. */
static const msgpack_object *call(const char *method, ...)
{
    const char *args[16];
    int n = 0;
    va_list ap;
    va_start(ap, method);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 16)
        args[n++] = a;
    va_end(ap);
    msgpack_sbuffer req;
    msgpack_packer pk;
    msgpack_sbuffer_init(&req);
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 7);
    mp_pack_strz(&pk, method);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, (size_t)n);
    for (int i = 0; i < n; i++)
        pack_kv(&pk, args[i]);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, req.data, req.size, &off);
    msgpack_sbuffer_destroy(&resp_buf);
    msgpack_sbuffer_init(&resp_buf);
    rpc_handle(&d, TALLY_ROLE_WRITER, NULL, &u.data, &resp_buf);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&req);
    msgpack_unpacked_destroy(&resp);
    msgpack_unpacked_init(&resp);
    off = 0;
    last_code[0] = 0;
    if (msgpack_unpack_next(&resp, resp_buf.data, resp_buf.size, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != resp_buf.size || resp.data.type != MSGPACK_OBJECT_ARRAY ||
        resp.data.via.array.size != 4) {
        snprintf(last_code, sizeof last_code, "bad response");
        return NULL;
    }
    const msgpack_object *e = &resp.data.via.array.ptr[2];
    if (e->type != MSGPACK_OBJECT_NIL) {
        const msgpack_object *code = mp_map_get(e, "code");
        snprintf(last_code, sizeof last_code, "%.*s", code ? (int)code->via.str.size : 1,
                 code ? code->via.str.ptr : "?");
        return NULL;
    }
    return &resp.data.via.array.ptr[3];
}

static int64_t iget(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = mp_map_get(m, key);
    if (!v ||
        (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER && v->type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
        return -999999;
    return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)v->via.u64 : v->via.i64;
}

/* A string field copied into one of a few rotating buffers; NULL when absent or nil. */
static const char *sget(const msgpack_object *m, const char *key)
{
    static char bufs[4][256];
    static int next;
    const msgpack_object *v = mp_map_get(m, key);
    if (!v || v->type != MSGPACK_OBJECT_STR)
        return NULL;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%.*s", (int)v->via.str.size, v->via.str.ptr);
    return b;
}

static bool is_nil(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = mp_map_get(m, key);
    return v && v->type == MSGPACK_OBJECT_NIL;
}

static bool bget(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = mp_map_get(m, key);
    return v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
}

/* Imports rows given as arrays of "key=value" through import_rows. */
static void import_kv(int kind, int nrows, const char *const rows[][7])
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (size_t)nrows);
    for (int i = 0; i < nrows; i++) {
        int n = 0;
        while (n < 7 && rows[i][n])
            n++;
        msgpack_pack_map(&pk, (size_t)n);
        for (int k = 0; k < n; k++)
            pack_kv(&pk, rows[i][k]);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, sb.data, sb.size, &off);
    struct import_result res;
    char err[256];
    if (import_rows(d.store, kind, &u.data, &res, err, sizeof err) != 0) {
        fprintf(stderr, "import: %s\n", err);
        exit(2);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

static void open_replica(void)
{
    char path[128], err[256];
    if (d.store)
        store_close(d.store);
    memset(&d, 0, sizeof d);
    config_defaults(&d.cfg);
    d.cfg.sync_full = false;
    snprintf(path, sizeof path, "%s/r-%d.db", tmpdir, db_counter++);
    if (store_open(path, false, &d.store, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(2);
    }
    static const char *const wh[][7] = {
        {"code=A", "name=Alpha", "country=ES", NULL},
        {"code=B", "name=Beta", "country=FR", NULL},
    };
    static const char *const cat[][7] = {
        {"sku=S1", "product_id=P1", "title=Shirt red M", "price_minor=#1999", "currency=EUR", NULL},
        {"sku=S2", "product_id=P1", "title=Shirt red L", "price_minor=#1999", "currency=EUR", NULL},
    };
    static const char *const stock[][7] = {{"sku=S1", "warehouse=A", "on_hand=#10", NULL}};
    import_kv(IMPORT_WAREHOUSES, 2, wh);
    import_kv(IMPORT_CATALOG, 2, cat);
    import_kv(IMPORT_STOCK, 1, stock);
}

/* ---- figures ---- */

/* One figure of SKU x warehouse: `expr` over the stock row's columns. */
static int64_t fig(const char *expr, const char *sku, const char *wh)
{
    return q64("SELECT %s FROM stock st JOIN skus k ON k.id = st.sku"
               " JOIN warehouses w ON w.id = st.warehouse WHERE k.code = '%s' AND w.code = '%s'",
               expr, sku, wh);
}

#define ON_HAND "snapshot + pending"
#define AVAILABLE "MAX(0, snapshot + pending - reserved - safety)"

/* What a refused or failed write must leave exactly as it was. */
struct world {
    int64_t movements, outbox, returns, pending, reserved, inspected;
};

static struct world world_now(void)
{
    struct world w = {
        .movements = q64("SELECT COUNT(*) FROM movements"),
        .outbox = q64("SELECT COUNT(*) FROM outbox"),
        .returns = q64("SELECT COUNT(*) FROM returns"),
        .pending = q64("SELECT SUM(pending) FROM stock"),
        .reserved = q64("SELECT SUM(reserved) FROM stock"),
        .inspected = q64("SELECT COUNT(*) FROM returns WHERE state = 'inspected'"),
    };
    return w;
}

static bool world_eq(struct world a, struct world b)
{
    return a.movements == b.movements && a.outbox == b.outbox && a.returns == b.returns &&
           a.pending == b.pending && a.reserved == b.reserved && a.inspected == b.inspected;
}

/* The `key` integer of the outbox payload with idempotency key `okey`. */
static int64_t payload_int(const char *okey, const char *key)
{
    sqlite3_stmt *s;
    int64_t v = -999999;
    if (sqlite3_prepare_v2(store_db(d.store), "SELECT payload FROM outbox WHERE key = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return v;
    sqlite3_bind_text(s, 1, okey, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        if (msgpack_unpack_next(&u, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                                &off) == MSGPACK_UNPACK_SUCCESS)
            v = iget(&u.data, key);
        msgpack_unpacked_destroy(&u);
    }
    sqlite3_finalize(s);
    return v;
}

/* ---- tests ---- */

static void test_receive(void)
{
    open_replica();
    CHECK_EQ_INT(fig(ON_HAND, "S1", "A"), 10);
    CHECK_EQ_INT(fig("reserved", "S1", "A"), 0);
    CHECK_EQ_INT(fig(AVAILABLE, "S1", "A"), 10);

    const msgpack_object *r = call("returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3",
                                   "reason=wrong size", NULL);
    CHECK(r != NULL);
    CHECK_EQ_STR(sget(r, "id"), "R1");
    CHECK_EQ_STR(sget(r, "sku"), "S1");
    CHECK_EQ_STR(sget(r, "warehouse"), "A");
    CHECK_EQ_INT(iget(r, "qty"), 3);
    CHECK_EQ_STR(sget(r, "state"), "received");
    CHECK_EQ_STR(sget(r, "reason"), "wrong size");
    CHECK(is_nil(r, "order_id") && is_nil(r, "sellable") && is_nil(r, "damaged"));
    CHECK(is_nil(r, "note") && is_nil(r, "inspected_at"));
    CHECK(iget(r, "received_at") > 1600000000);
    CHECK(mp_map_get(r, "duplicate") && !bget(r, "duplicate"));

    /* On hand again, but held out of sale until inspected. */
    CHECK_EQ_INT(fig(ON_HAND, "S1", "A"), 13);
    CHECK_EQ_INT(fig("pending", "S1", "A"), 3);
    CHECK_EQ_INT(fig("reserved", "S1", "A"), 3);
    CHECK_EQ_INT(fig(AVAILABLE, "S1", "A"), 10);
    r = call("stock.get", "sku=S1", NULL);
    CHECK(r && iget(r, "marketplace_available") == 10);

    /* The ledger and the outbox: one 'return' movement of +3 under the return's id. */
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM movements WHERE id = 'R1'"), 1);
    CHECK_EQ_INT(q64("SELECT delta FROM movements WHERE id = 'R1' AND kind = 'return'"), 3);
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM outbox WHERE key = 'R1' AND target = 'wh:A'"
                     " AND entity = 'S1' AND kind = 'movement'"),
                 1);
    CHECK_EQ_INT(payload_int("R1", "delta"), 3);
    CHECK_EQ_INT(payload_int("R1", "qty"), 3);

    /* The same call again: the same return, nothing applied twice. */
    struct world w = world_now();
    r = call("returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3", "reason=wrong size",
             NULL);
    CHECK(r && bget(r, "duplicate"));
    CHECK_EQ_STR(sget(r, "id"), "R1");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(fig(ON_HAND, "S1", "A"), 13);

    /* The same id with different content. */
    CHECK(call("returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#4", "reason=wrong size",
               NULL) == NULL);
    CHECK_EQ_STR(last_code, "conflict");
    CHECK(call("returns.receive", "id=R1", "sku=S1", "warehouse=B", "qty=#3", "reason=wrong size",
               NULL) == NULL);
    CHECK_EQ_STR(last_code, "conflict");
    CHECK(call("returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3", NULL) == NULL);
    CHECK_EQ_STR(last_code, "conflict");
    CHECK(world_eq(w, world_now()));

    /* An id a movement already has is not a return's. */
    CHECK(call("stock.move", "id=M1", "kind=return", "sku=S1", "warehouse=A", "qty=#1", NULL));
    w = world_now();
    CHECK(call("returns.receive", "id=M1", "sku=S1", "warehouse=A", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(last_code, "conflict");
    CHECK(world_eq(w, world_now()));

    /* Orders: optional, but must exist when given. */
    CHECK(call("returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#1", "order_id=O404",
               NULL) == NULL);
    CHECK_EQ_STR(last_code, "not_found");
    CHECK(world_eq(w, world_now()));
    exec_sql("INSERT INTO orders(order_id, status, created_at, updated_at, country, currency)"
             " VALUES('O1', 'FINISH', 1700000000, 1700000000, 'ES', 'EUR')");
    r = call("returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#1", "order_id=O1", NULL);
    CHECK(r && !bget(r, "duplicate"));
    CHECK_EQ_STR(sget(r, "order_id"), "O1");
    CHECK_EQ_INT(q64("SELECT order_ref FROM returns WHERE id = 'R2'"),
                 q64("SELECT id FROM orders WHERE order_id = 'O1'"));
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM movements WHERE id = 'R2' AND ref = 'O1'"), 1);
    r = call("returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#1", "order_id=O1", NULL);
    CHECK(r && bget(r, "duplicate"));
    CHECK(call("returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(last_code, "conflict");

    /* Without an id tallyd makes one, used for the movement too. */
    r = call("returns.receive", "sku=S2", "warehouse=B", "qty=#2", NULL);
    CHECK(r != NULL);
    const char *gen = sget(r, "id");
    CHECK(gen && strlen(gen) > 0);
    char genid[80];
    snprintf(genid, sizeof genid, "%s", gen ? gen : "");
    CHECK_EQ_INT(q64("SELECT delta FROM movements WHERE id = '%s'", genid), 2);
    CHECK_EQ_INT(fig(ON_HAND, "S2", "B"), 2); /* the stock row is created */
    CHECK_EQ_INT(fig("reserved", "S2", "B"), 2);
    CHECK_EQ_INT(fig(AVAILABLE, "S2", "B"), 0);

    /* Refusals change nothing. */
    w = world_now();
    CHECK(call("returns.receive", "sku=S9", "warehouse=A", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(last_code, "not_found");
    CHECK(call("returns.receive", "sku=S1", "warehouse=Z", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(last_code, "not_found");
    CHECK(call("returns.receive", "sku=S1", "warehouse=A", "qty=#0", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.receive", "sku=S1", "warehouse=A", "qty=#-2", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.receive", "sku=S1", "warehouse=A", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.receive", "id=has space", "sku=S1", "warehouse=A", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    /* 56 bytes: "<id>:writeoff" would not be an id any more. */
    CHECK(call("returns.receive", "id=12345678901234567890123456789012345678901234567890123456",
               "sku=S1", "warehouse=A", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.receive", "id=1234567890123456789012345678901234567890123456789012345",
               "sku=S1", "warehouse=A", "qty=#1", NULL) != NULL);
    w.movements++, w.outbox++, w.returns++, w.pending++, w.reserved++;
    CHECK(world_eq(w, world_now()));
}

static void test_inspect(void)
{
    open_replica();
    CHECK(call("returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3", NULL));
    CHECK_EQ_INT(fig(ON_HAND, "S1", "A"), 13);
    CHECK_EQ_INT(fig("reserved", "S1", "A"), 3);

    /* Sums that do not add up, unknown returns: refused, nothing changed. */
    struct world w = world_now();
    CHECK(call("returns.inspect", "id=R1", "sellable=#2", "damaged=#2", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.inspect", "id=R1", "sellable=#1", "damaged=#1", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.inspect", "id=R1", "sellable=#-1", "damaged=#4", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.inspect", "id=R1", "sellable=#3", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.inspect", "id=R9", "sellable=#3", "damaged=#0", NULL) == NULL);
    CHECK_EQ_STR(last_code, "not_found");
    CHECK(world_eq(w, world_now()));

    /* 1 sellable, 2 damaged: the hold goes, the damaged units are written off. */
    const msgpack_object *r =
        call("returns.inspect", "id=R1", "sellable=#1", "damaged=#2", "note=box crushed", NULL);
    CHECK(r != NULL);
    CHECK_EQ_STR(sget(r, "state"), "inspected");
    CHECK_EQ_INT(iget(r, "sellable"), 1);
    CHECK_EQ_INT(iget(r, "damaged"), 2);
    CHECK_EQ_STR(sget(r, "note"), "box crushed");
    CHECK(iget(r, "inspected_at") >= iget(r, "received_at"));
    CHECK(mp_map_get(r, "duplicate") == NULL);
    CHECK_EQ_INT(fig(ON_HAND, "S1", "A"), 11);
    CHECK_EQ_INT(fig("reserved", "S1", "A"), 0);
    CHECK_EQ_INT(fig(AVAILABLE, "S1", "A"), 11);
    CHECK_EQ_INT(q64("SELECT delta FROM movements WHERE id = 'R1:writeoff' AND kind = 'adjust'"
                     " AND forced = 1 AND reason = 'write-off: damaged return'"),
                 -2);
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM outbox WHERE key = 'R1:writeoff' AND target = 'wh:A'"
                     " AND entity = 'S1'"),
                 1);
    CHECK_EQ_INT(payload_int("R1:writeoff", "delta"), -2);
    r = call("stock.get", "sku=S1", NULL);
    CHECK(r && iget(r, "marketplace_available") == 11);

    /* Twice: refused, nothing changed. */
    w = world_now();
    CHECK(call("returns.inspect", "id=R1", "sellable=#1", "damaged=#2", NULL) == NULL);
    CHECK_EQ_STR(last_code, "conflict");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM movements WHERE id = 'R1:writeoff'"), 1);

    /* All sellable: no write-off at all. */
    CHECK(call("returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#2", NULL));
    CHECK_EQ_INT(fig(AVAILABLE, "S1", "A"), 11);
    CHECK(call("returns.inspect", "id=R2", "sellable=#2", "damaged=#0", NULL));
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM movements WHERE id LIKE 'R2%%'"), 1);
    CHECK_EQ_INT(fig(ON_HAND, "S1", "A"), 13);
    CHECK_EQ_INT(fig(AVAILABLE, "S1", "A"), 13);

    /* The write-off is forced: the local view may be behind (here the returned units were
     * picked meanwhile), yet the damaged units are written off. */
    CHECK(call("returns.receive", "id=R3", "sku=S2", "warehouse=B", "qty=#5", NULL));
    CHECK(call("stock.move", "kind=pick", "sku=S2", "warehouse=B", "qty=#5", NULL));
    CHECK_EQ_INT(fig(ON_HAND, "S2", "B"), 0);
    CHECK(call("returns.inspect", "id=R3", "sellable=#0", "damaged=#5", NULL));
    CHECK_EQ_INT(fig(ON_HAND, "S2", "B"), -5);
    CHECK_EQ_INT(fig("reserved", "S2", "B"), 0);
    CHECK_EQ_INT(fig(AVAILABLE, "S2", "B"), 0);

    /* A movement already recorded under the write-off id with other content: a conflict, and
     * the return stays held. */
    CHECK(call("returns.receive", "id=R4", "sku=S1", "warehouse=A", "qty=#2", NULL));
    CHECK(call("stock.move", "id=R4:writeoff", "kind=adjust", "sku=S1", "warehouse=A", "qty=#-1",
               "reason=by hand", NULL));
    w = world_now();
    CHECK(call("returns.inspect", "id=R4", "sellable=#0", "damaged=#2", NULL) == NULL);
    CHECK_EQ_STR(last_code, "conflict");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM returns WHERE id = 'R4' AND state = 'received'"), 1);
}

/* Failures injected after the movement is written, inside the transaction: the whole write
 * rolls back. */
static void test_rollback(void)
{
    open_replica();
    exec_sql("CREATE TEMP TRIGGER no_returns BEFORE INSERT ON returns"
             " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    struct world w = world_now();
    CHECK(call("returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3", NULL) == NULL);
    CHECK_EQ_STR(last_code, "storage");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM movements WHERE id = 'R1'"), 0);
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM outbox WHERE key = 'R1'"), 0);
    CHECK_EQ_INT(fig(ON_HAND, "S1", "A"), 10);
    exec_sql("DROP TRIGGER temp.no_returns");

    CHECK(call("returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3", NULL));
    exec_sql("CREATE TEMP TRIGGER no_inspect BEFORE UPDATE ON returns"
             " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    w = world_now();
    CHECK(call("returns.inspect", "id=R1", "sellable=#1", "damaged=#2", NULL) == NULL);
    CHECK_EQ_STR(last_code, "storage");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM movements WHERE id = 'R1:writeoff'"), 0);
    CHECK_EQ_INT(fig(ON_HAND, "S1", "A"), 13);
    CHECK_EQ_INT(fig("reserved", "S1", "A"), 3);
    exec_sql("DROP TRIGGER temp.no_inspect");

    /* Once the fault is gone the same calls go through. */
    CHECK(call("returns.inspect", "id=R1", "sellable=#1", "damaged=#2", NULL));
    CHECK_EQ_INT(fig(ON_HAND, "S1", "A"), 11);
}

static void test_list(void)
{
    open_replica();
    CHECK(call("returns.receive", "id=R3", "sku=S1", "warehouse=A", "qty=#1", NULL));
    CHECK(call("returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#2", NULL));
    CHECK(call("returns.receive", "id=R2", "sku=S2", "warehouse=B", "qty=#3", NULL));
    CHECK(call("returns.inspect", "id=R2", "sellable=#3", "damaged=#0", NULL));

    const msgpack_object *r = call("returns.list", NULL);
    CHECK(r != NULL);
    const msgpack_object *items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 3);
    if (items && items->via.array.size == 3) {
        CHECK_EQ_STR(sget(&items->via.array.ptr[0], "id"), "R1");
        CHECK_EQ_STR(sget(&items->via.array.ptr[1], "id"), "R2");
        CHECK_EQ_STR(sget(&items->via.array.ptr[2], "id"), "R3");
        CHECK_EQ_STR(sget(&items->via.array.ptr[1], "state"), "inspected");
        CHECK_EQ_INT(iget(&items->via.array.ptr[1], "sellable"), 3);
        CHECK_EQ_STR(sget(&items->via.array.ptr[1], "warehouse"), "B");
        CHECK_EQ_INT(items->via.array.ptr[0].via.map.size, 12);
    }
    CHECK(r && is_nil(r, "next_cursor"));

    r = call("returns.list", "state=received", NULL);
    items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->via.array.size == 2);
    if (items && items->via.array.size == 2) {
        CHECK_EQ_STR(sget(&items->via.array.ptr[0], "id"), "R1");
        CHECK_EQ_STR(sget(&items->via.array.ptr[1], "id"), "R3");
    }
    r = call("returns.list", "state=inspected", NULL);
    items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->via.array.size == 1);

    /* Paging: one per page, in id order, until next_cursor is nil. */
    char cursor[80] = "";
    const char *seen[3] = {"R1", "R2", "R3"};
    for (int i = 0; i < 3; i++) {
        char arg[100];
        snprintf(arg, sizeof arg, "cursor=%s", cursor);
        r = i == 0 ? call("returns.list", "limit=#1", NULL)
                   : call("returns.list", "limit=#1", arg, NULL);
        items = r ? mp_map_get(r, "items") : NULL;
        CHECK(items && items->via.array.size == 1);
        if (items && items->via.array.size == 1)
            CHECK_EQ_STR(sget(&items->via.array.ptr[0], "id"), seen[i]);
        const char *next = r ? sget(r, "next_cursor") : NULL;
        if (i < 2)
            CHECK(next != NULL);
        else
            CHECK(r && is_nil(r, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
    }

    CHECK(call("returns.list", "state=lost", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.list", "cursor=a b", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("returns.list", "limit=#0", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tally-returns-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_receive();
    test_inspect();
    test_rollback();
    test_list();

    store_close(d.store);
    msgpack_unpacked_destroy(&resp);
    msgpack_sbuffer_destroy(&resp_buf);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_result("test_returns");
}
