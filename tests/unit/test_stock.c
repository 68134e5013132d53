/*
 * daemon/stock.c: movements against a temp replica seeded through import_rows (warehouses A and
 * B, SKUs S1 and S2, S1@A on hand 10). Each movement's delta and resulting figures, the count
 * rule (a delta against the local view), refusals that change nothing, idempotency by id, and a
 * seeded random run checked against the ledger invariant and the outbox.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "catalog.h"
#include "check.h"
#include "codec.h"
#include "importer.h"
#include "stock.h"
#include "store.h"
#include "tally/protocol.h"

static char tmpdir[64];
static int db_counter;

/* ---- seeding ---- */

/* Packs `rows` maps given as "key=value" strings (values starting with '#' are integers). */
static int import_kv(struct store *st, int kind, int nrows, const char *const rows[][8])
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (size_t)nrows);
    for (int i = 0; i < nrows; i++) {
        int n = 0;
        while (n < 8 && rows[i][n])
            n++;
        msgpack_pack_map(&pk, (size_t)n);
        for (int k = 0; k < n; k++) {
            const char *eq = strchr(rows[i][k], '=');
            mp_pack_strn(&pk, rows[i][k], (size_t)(eq - rows[i][k]));
            if (eq[1] == '#')
                msgpack_pack_int64(&pk, strtoll(eq + 2, NULL, 10));
            else
                mp_pack_strz(&pk, eq + 1);
        }
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, sb.data, sb.size, &off);
    struct import_result res;
    char err[256];
    int r = import_rows(st, kind, &u.data, &res, err, sizeof err);
    if (r)
        fprintf(stderr, "import failed: %s\n", err);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static struct store *fresh_store(void)
{
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/stock-%d.db", tmpdir, db_counter++);
    struct store *st = NULL;
    if (store_open(path, false, &st, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(2);
    }
    static const char *const wh[][8] = {
        {"code=A", "name=Alpha", "country=ES", NULL},
        {"code=B", "name=Beta", "country=FR", NULL},
    };
    static const char *const cat[][8] = {
        {"sku=S1", "product_id=P1", "title=Shirt red M", "price_minor=#1999", "currency=EUR", NULL},
        {"sku=S2", "product_id=P1", "title=Shirt red L", "price_minor=#1999", "currency=EUR", NULL},
    };
    static const char *const stock[][8] = {
        {"sku=S1", "warehouse=A", "on_hand=#10", NULL},
    };
    if (import_kv(st, IMPORT_WAREHOUSES, 2, wh) || import_kv(st, IMPORT_CATALOG, 2, cat) ||
        import_kv(st, IMPORT_STOCK, 1, stock))
        exit(2);
    return st;
}

/* ---- helpers ---- */

static int64_t q64(struct store *st, const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3_stmt *s;
    int64_t v = -999999;
    if (sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(store_db(st)), sql);
        return v;
    }
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void exec_sql(struct store *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(store_db(st), sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "exec: %s: %s\n", msg, sql);
        sqlite3_free(msg);
        CHECK(0);
    }
}

static struct stock_figures figs(struct store *st, const char *sku, const char *wh)
{
    struct stock_figures f;
    memset(&f, 0, sizeof f);
    int64_t s, w;
    if (catalog_sku_id(st, sku, strlen(sku), &s) || catalog_warehouse_id(st, wh, strlen(wh), &w)) {
        CHECK(0);
        return f;
    }
    CHECK_EQ_INT(stock_figures_get(st, s, w, &f), 0);
    return f;
}

static int64_t on_hand(struct store *st, const char *sku, const char *wh)
{
    struct stock_figures f = figs(st, sku, wh);
    return stock_on_hand(&f);
}

static char last_err[512];

/* One movement. `to`, `reason`, `id` may be NULL. */
static int mv(struct store *st, int kind, const char *sku, const char *wh, int64_t qty,
              const char *to, const char *reason, bool force, const char *id,
              struct stock_move_result *res)
{
    struct stock_move m;
    struct stock_move_result local;
    memset(&m, 0, sizeof m);
    m.kind = kind;
    snprintf(m.sku, sizeof m.sku, "%s", sku);
    snprintf(m.warehouse, sizeof m.warehouse, "%s", wh);
    if (to)
        snprintf(m.to, sizeof m.to, "%s", to);
    if (reason)
        snprintf(m.reason, sizeof m.reason, "%s", reason);
    if (id)
        snprintf(m.id, sizeof m.id, "%s", id);
    m.qty = qty;
    m.force = force;
    last_err[0] = 0;
    return stock_move_apply(st, &m, res ? res : &local, last_err, sizeof last_err);
}

/* Everything a refused movement must leave unchanged. */
struct snapshot {
    int64_t movements, outbox, stock_rows, sum_snapshot, sum_pending;
};

static struct snapshot snap(struct store *st)
{
    struct snapshot s = {
        .movements = q64(st, "SELECT COUNT(*) FROM movements"),
        .outbox = q64(st, "SELECT COUNT(*) FROM outbox"),
        .stock_rows = q64(st, "SELECT COUNT(*) FROM stock"),
        .sum_snapshot = q64(st, "SELECT TOTAL(snapshot) FROM stock"),
        .sum_pending = q64(st, "SELECT TOTAL(pending) FROM stock"),
    };
    return s;
}

static bool snap_eq(struct snapshot a, struct snapshot b)
{
    return a.movements == b.movements && a.outbox == b.outbox && a.stock_rows == b.stock_rows &&
           a.sum_snapshot == b.sum_snapshot && a.sum_pending == b.sum_pending;
}

/* The ledger invariant over every stock row, and the outbox's one row per movement id. */
static void check_invariants(struct store *st, const char *when)
{
    int64_t broken = q64(st, "SELECT COUNT(*) FROM stock s WHERE s.pending <>"
                             " (SELECT COALESCE(SUM(m.delta), 0) FROM movements m"
                             "  WHERE m.sku = s.sku AND m.warehouse = s.warehouse"
                             "  AND m.state <> 'settled')");
    if (broken)
        fprintf(stderr, "%s: %" PRId64 " stock rows break pending == SUM(delta)\n", when, broken);
    CHECK_EQ_INT(broken, 0);
    /* Movements on a SKU x warehouse that has no stock row would be invisible in the view. */
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM movements m WHERE NOT EXISTS (SELECT 1 FROM stock"
                         " s WHERE s.sku = m.sku AND s.warehouse = m.warehouse)"),
                 0);
    /* One outbox row per movement that changes something: a count that agreed (delta 0) has
     * nothing for the warehouse, which refuses a zero delta, and is settled at once. */
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM outbox"),
                 q64(st, "SELECT COUNT(DISTINCT id) FROM movements WHERE leg = 0 AND delta <> 0"));
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM (SELECT DISTINCT id FROM movements WHERE delta <> 0)"
                         " m WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.key = m.id)"),
                 0);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM movements WHERE delta = 0 AND state <> 'settled'"),
                 0);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM outbox o"
                         " WHERE NOT EXISTS (SELECT 1 FROM movements m WHERE m.id = o.key)"),
                 0);
    /* A transfer is exactly two legs, anything else one. */
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM (SELECT id, kind, COUNT(*) n FROM movements"
                         " GROUP BY id) WHERE n <> (CASE kind WHEN 'transfer' THEN 2 ELSE 1 END)"),
                 0);
}

/* Decodes every outbox payload and compares it with leg 0 of its movement. */
static void check_payloads(struct store *st)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(
        store_db(st),
        "SELECT o.key, o.payload, o.target, o.entity, o.kind, m.kind, k.code, w.code, m.delta,"
        " m.qty, p.code FROM outbox o JOIN movements m ON m.id = o.key AND m.leg = 0"
        " JOIN skus k ON k.id = m.sku JOIN warehouses w ON w.id = m.warehouse"
        " LEFT JOIN warehouses p ON p.id = m.peer",
        -1, &s, NULL);
    CHECK_EQ_INT(rc, SQLITE_OK);
    if (rc != SQLITE_OK)
        return;
    int rows = 0, bad = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        rows++;
        const char *key = (const char *)sqlite3_column_text(s, 0);
        const char *target = (const char *)sqlite3_column_text(s, 2);
        const char *entity = (const char *)sqlite3_column_text(s, 3);
        const char *okind = (const char *)sqlite3_column_text(s, 4);
        const char *kind = (const char *)sqlite3_column_text(s, 5);
        const char *sku = (const char *)sqlite3_column_text(s, 6);
        const char *wh = (const char *)sqlite3_column_text(s, 7);
        int64_t delta = sqlite3_column_int64(s, 8), qty = sqlite3_column_int64(s, 9);
        const char *peer = (const char *)sqlite3_column_text(s, 10);
        char want_target[80];
        snprintf(want_target, sizeof want_target, "wh:%s", wh);
        bool ok = strcmp(target, want_target) == 0 && strcmp(entity, sku) == 0 &&
                  strcmp(okind, strcmp(kind, "transfer") == 0 ? "transfer" : "movement") == 0;

        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        int len = sqlite3_column_bytes(s, 1);
        const char *blob = sqlite3_column_blob(s, 1);
        ok = ok && msgpack_unpack_next(&u, blob, (size_t)len, &off) == MSGPACK_UNPACK_SUCCESS &&
             off == (size_t)len && u.data.type == MSGPACK_OBJECT_MAP;
        if (ok) {
            const msgpack_object *m = &u.data;
            const msgpack_object *d = mp_map_get(m, "delta"), *qo = mp_map_get(m, "qty");
            ok = mp_str_eq(mp_map_get(m, "id"), key) && mp_str_eq(mp_map_get(m, "kind"), kind) &&
                 mp_str_eq(mp_map_get(m, "sku"), sku) &&
                 mp_str_eq(mp_map_get(m, "warehouse"), wh) && d &&
                 (d->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                  d->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) &&
                 d->via.i64 == delta && qo && qo->via.i64 == qty;
            if (peer)
                ok = ok && mp_str_eq(mp_map_get(m, "to"), peer);
            else
                ok = ok && mp_map_get(m, "to") == NULL;
        }
        msgpack_unpacked_destroy(&u);
        if (!ok && bad++ == 0)
            fprintf(stderr, "outbox payload of %s does not match its movement\n", key);
    }
    sqlite3_finalize(s);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(rows, q64(st, "SELECT COUNT(*) FROM outbox"));
}

/* ---- scenarios ---- */

static void test_kinds(void)
{
    struct store *st = fresh_store();
    struct stock_move_result res;

    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "A", 5, NULL, NULL, false, "r1", &res), 0);
    CHECK_EQ_STR(res.id, "r1");
    CHECK(!res.duplicate);
    CHECK_EQ_INT(res.nlegs, 1);
    CHECK_EQ_STR(res.legs[0].warehouse, "A");
    CHECK_EQ_INT(res.legs[0].delta, 5);
    CHECK_EQ_INT(res.legs[0].on_hand, 15);
    CHECK_EQ_INT(res.legs[0].available, 15);
    CHECK(res.outbox_id > 0);
    CHECK(res.created_at > 1600000000);
    struct stock_figures f = figs(st, "S1", "A");
    CHECK_EQ_INT(f.snapshot, 10);
    CHECK_EQ_INT(f.pending, 5);

    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 3, NULL, NULL, false, "p1", &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, -3);
    CHECK_EQ_INT(res.legs[0].on_hand, 12);

    CHECK_EQ_INT(mv(st, STOCK_RETURN, "S1", "A", 2, NULL, NULL, false, "ret1", &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, 2);
    CHECK_EQ_INT(res.legs[0].on_hand, 14);

    CHECK_EQ_INT(mv(st, STOCK_ADJUST, "S1", "A", -4, NULL, "damaged", false, "adj1", &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, -4);
    CHECK_EQ_INT(res.legs[0].on_hand, 10);
    CHECK_EQ_INT(mv(st, STOCK_ADJUST, "S1", "A", 1, NULL, "found one", false, "adj2", &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, 1);
    CHECK_EQ_INT(res.legs[0].on_hand, 11);

    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S1", "A", 7, NULL, NULL, false, "c1", &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, -4);
    CHECK_EQ_INT(res.legs[0].on_hand, 7);
    CHECK_EQ_INT(q64(st, "SELECT qty FROM movements WHERE id = 'c1'"), 7); /* what was counted */
    /* A count that agrees with the view is a movement with delta 0. */
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S1", "A", 7, NULL, NULL, false, "c2", &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, 0);
    CHECK_EQ_INT(res.legs[0].on_hand, 7);
    /* ... kept in the ledger, but with nothing for the warehouse (it refuses a zero delta, and
     * the row would be held forever) and settled at once; its id still answers a retry. */
    CHECK_EQ_INT(res.outbox_id, 0);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM outbox WHERE key = 'c2'"), 0);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM movements WHERE id = 'c2' AND state = 'settled'"),
                 1);
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S1", "A", 7, NULL, NULL, false, "c2", &res), 0);
    CHECK(res.duplicate);
    CHECK_EQ_INT(res.legs[0].on_hand, 7);

    /* Transfer: two legs, the receiving row created on the fly, one outbox row. */
    int64_t outbox_before = q64(st, "SELECT COUNT(*) FROM outbox");
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S1", "A", 2, "B", NULL, false, "t1", &res), 0);
    CHECK_EQ_INT(res.nlegs, 2);
    CHECK_EQ_STR(res.legs[0].warehouse, "A");
    CHECK_EQ_INT(res.legs[0].delta, -2);
    CHECK_EQ_INT(res.legs[0].on_hand, 5);
    CHECK_EQ_STR(res.legs[1].warehouse, "B");
    CHECK_EQ_INT(res.legs[1].delta, 2);
    CHECK_EQ_INT(res.legs[1].on_hand, 2);
    CHECK_EQ_INT(res.legs[1].available, 2);
    CHECK_EQ_INT(on_hand(st, "S1", "B"), 2);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM movements WHERE id = 't1'"), 2);
    CHECK_EQ_INT(q64(st, "SELECT SUM(delta) FROM movements WHERE id = 't1'"), 0);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM outbox"), outbox_before + 1);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM outbox WHERE key = 't1' AND target = 'wh:A'"
                         " AND entity = 'S1' AND kind = 'transfer' AND state = 'pending'"),
                 1);
    CHECK_EQ_INT(res.outbox_id, q64(st, "SELECT id FROM outbox WHERE key = 't1'"));
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM movements m JOIN warehouses w ON w.id = m.peer"
                         " WHERE m.id = 't1' AND ((m.leg = 0 AND w.code = 'B') OR"
                         " (m.leg = 1 AND w.code = 'A'))"),
                 2);

    /* Reason and ref are kept on the ledger row. */
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM movements WHERE id = 'adj1' AND reason = 'damaged'"),
                 1);
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 1, NULL, NULL, false, "p2", &res), 0);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM movements WHERE id = 'p2' AND reason IS NULL"
                         " AND ref IS NULL AND forced = 0 AND state = 'pending'"),
                 1);

    /* Without an id tallyd makes one: a valid id, different each time, and it is the key. */
    struct stock_move_result r2;
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S2", "B", 1, NULL, NULL, false, NULL, &res), 0);
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S2", "B", 1, NULL, NULL, false, NULL, &r2), 0);
    CHECK(mp_id_ok(res.id, strlen(res.id)));
    CHECK(strcmp(res.id, r2.id) != 0);
    CHECK(!r2.duplicate);
    CHECK_EQ_INT(on_hand(st, "S2", "B"), 2);
    CHECK(res.outbox_id != r2.outbox_id);

    check_invariants(st, "kinds");
    check_payloads(st);
    store_close(st);
}

static void test_available(void)
{
    struct store *st = fresh_store();
    struct stock_move_result res;
    exec_sql(st, "UPDATE stock SET safety = 3, reserved = 2");
    struct stock_figures f = figs(st, "S1", "A");
    CHECK_EQ_INT(stock_on_hand(&f), 10);
    CHECK_EQ_INT(stock_available(&f), 5);

    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "A", 4, NULL, NULL, false, NULL, &res), 0);
    CHECK_EQ_INT(res.legs[0].on_hand, 14);
    CHECK_EQ_INT(res.legs[0].available, 9);
    /* Picking into safety stock is allowed: only on_hand may not go below zero. */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 12, NULL, NULL, false, NULL, &res), 0);
    CHECK_EQ_INT(res.legs[0].on_hand, 2);
    CHECK_EQ_INT(res.legs[0].available, 0); /* never negative */
    f = figs(st, "S1", "A");
    CHECK_EQ_INT(f.reserved, 2);
    CHECK_EQ_INT(f.safety, 3);
    CHECK_EQ_INT(f.snapshot, 10);
    CHECK_EQ_INT(f.pending, -8);

    /* stock_is_low: available <= threshold; out (nothing available) is low whatever it is. */
    struct stock_figures g = {.snapshot = 10, .pending = 0, .reserved = 1, .safety = 1};
    CHECK(!stock_is_low(&g));
    CHECK(!stock_is_out(&g));
    struct stock_figures out = {.snapshot = 3, .pending = -1, .reserved = 1, .safety = 1};
    CHECK(stock_is_out(&out) && stock_is_low(&out));
    out.threshold = 0;
    out.safety = 5; /* available clamps at 0 */
    CHECK(stock_is_out(&out) && stock_is_low(&out));
    g.threshold = 8;
    CHECK(stock_is_low(&g));
    g.threshold = 7;
    CHECK(!stock_is_low(&g));
    store_close(st);
}

static void test_count_rule(void)
{
    struct store *st = fresh_store();
    struct stock_move_result res;
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 3, NULL, NULL, false, NULL, &res), 0);
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S1", "A", 5, NULL, NULL, false, "cnt1", &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, -2);
    CHECK_EQ_INT(res.legs[0].on_hand, 5);
    CHECK_EQ_INT(q64(st, "SELECT delta FROM movements WHERE id = 'cnt1'"), -2);
    struct stock_figures f = figs(st, "S1", "A");
    CHECK_EQ_INT(f.snapshot, 10);
    CHECK_EQ_INT(f.pending, -5);

    /* Upstream reports a new figure (say, 10 received elsewhere): the view is snapshot+pending. */
    exec_sql(st, "UPDATE stock SET snapshot = 20");
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 15);
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S1", "A", 12, NULL, NULL, false, "cnt2", &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, -3);
    CHECK_EQ_INT(res.legs[0].on_hand, 12);
    f = figs(st, "S1", "A");
    CHECK_EQ_INT(f.snapshot, 20);
    CHECK_EQ_INT(f.pending, -8);

    /* Settled movements leave the overlay (the sync engine's job, simulated here). */
    exec_sql(st, "UPDATE movements SET state = 'settled' WHERE id = 'cnt1'");
    exec_sql(st, "UPDATE stock SET snapshot = snapshot - 2, pending = pending + 2");
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 12);
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S1", "A", 20, NULL, NULL, false, "cnt3", &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, 8);
    CHECK_EQ_INT(res.legs[0].on_hand, 20);

    /* A count where there was no stock row at all: the delta is the counted quantity. */
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S2", "B", 4, NULL, NULL, false, NULL, &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, 4);
    CHECK_EQ_INT(on_hand(st, "S2", "B"), 4);
    /* Counting zero empties the location. */
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S2", "B", 0, NULL, NULL, false, NULL, &res), 0);
    CHECK_EQ_INT(res.legs[0].delta, -4);
    CHECK_EQ_INT(on_hand(st, "S2", "B"), 0);
    check_invariants(st, "count");
    store_close(st);
}

static void test_refusals(void)
{
    struct store *st = fresh_store();
    struct stock_move_result res;
    struct snapshot before = snap(st);

    /* Insufficient stock: refused with a message, and nothing changed. */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 11, NULL, NULL, false, "x1", &res),
                 TALLY_E_INSUFFICIENT);
    CHECK(strstr(last_err, "S1") != NULL);
    CHECK(snap_eq(before, snap(st)));
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S1", "A", 11, "B", NULL, false, "x2", &res),
                 TALLY_E_INSUFFICIENT);
    CHECK(snap_eq(before, snap(st)));
    CHECK_EQ_INT(mv(st, STOCK_ADJUST, "S1", "A", -11, NULL, "shrink", false, "x3", &res),
                 TALLY_E_INSUFFICIENT);
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S2", "B", 1, NULL, NULL, false, "x4", &res),
                 TALLY_E_INSUFFICIENT); /* no stock row: on hand 0 */
    CHECK(snap_eq(before, snap(st)));
    /* The refused ids were not consumed. */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 10, NULL, NULL, false, "x1", &res), 0);
    CHECK(!res.duplicate);
    CHECK_EQ_INT(res.legs[0].on_hand, 0);
    before = snap(st);

    /* force needs a reason; with one it may go negative. */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 5, NULL, NULL, true, "f1", &res),
                 TALLY_E_INVALID_PARAMS);
    CHECK(strstr(last_err, "reason") != NULL);
    CHECK(snap_eq(before, snap(st)));
    CHECK_EQ_INT(
        mv(st, STOCK_PICK, "S1", "A", 5, NULL, "shipped before receipt booked", true, "f1", &res),
        0);
    CHECK_EQ_INT(res.legs[0].on_hand, -5);
    CHECK_EQ_INT(res.legs[0].available, 0);
    CHECK_EQ_INT(q64(st, "SELECT forced FROM movements WHERE id = 'f1'"), 1);
    before = snap(st);

    /* Quantity and shape rules. */
    struct {
        int kind;
        int64_t qty;
        const char *to, *reason;
        const char *what;
    } bad[] = {
        {STOCK_RECEIVE, 0, NULL, NULL, "receive 0"},
        {STOCK_RECEIVE, -1, NULL, NULL, "receive -1"},
        {STOCK_PICK, -3, NULL, NULL, "pick -3"},
        {STOCK_PICK, 0, NULL, NULL, "pick 0"},
        {STOCK_RETURN, 0, NULL, NULL, "return 0"},
        {STOCK_TRANSFER, 0, "B", NULL, "transfer 0"},
        {STOCK_TRANSFER, -2, "B", NULL, "transfer -2"},
        {STOCK_RECEIVE, TALLY_MAX_QTY + 1, NULL, NULL, "receive > max"},
        {STOCK_ADJUST, -TALLY_MAX_QTY - 1, NULL, "r", "adjust < -max"},
        {STOCK_COUNT, TALLY_MAX_QTY + 1, NULL, NULL, "count > max"},
        {STOCK_RECEIVE, INT64_MAX, NULL, NULL, "receive INT64_MAX"},
        {STOCK_ADJUST, INT64_MIN, NULL, "r", "adjust INT64_MIN"},
        {STOCK_ADJUST, 0, NULL, "r", "adjust 0"},
        {STOCK_ADJUST, 3, NULL, NULL, "adjust without reason"},
        {STOCK_COUNT, -1, NULL, NULL, "count -1"},
        {STOCK_TRANSFER, 1, "A", NULL, "transfer to the same warehouse"},
        {STOCK_TRANSFER, 1, NULL, NULL, "transfer without to"},
        {STOCK_RECEIVE, 1, "B", NULL, "to on a receive"},
        {STOCK_PICK, 1, "B", NULL, "to on a pick"},
        {STOCK_COUNT, 1, "B", NULL, "to on a count"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r =
            mv(st, bad[i].kind, "S1", "A", bad[i].qty, bad[i].to, bad[i].reason, false, NULL, &res);
        if (r != TALLY_E_INVALID_PARAMS)
            fprintf(stderr, "%s: %d (%s)\n", bad[i].what, r, last_err);
        CHECK_EQ_INT(r, TALLY_E_INVALID_PARAMS);
        CHECK(last_err[0] != 0);
    }
    CHECK(snap_eq(before, snap(st)));

    /* The limit itself is allowed; the resulting on_hand is bounded too. */
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S2", "A", TALLY_MAX_QTY, NULL, NULL, false, "big", &res),
                 0);
    CHECK_EQ_INT(res.legs[0].on_hand, TALLY_MAX_QTY);
    before = snap(st);
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S2", "A", 1, NULL, NULL, false, NULL, &res),
                 TALLY_E_INVALID_PARAMS);
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S2", "A", 5, "B", NULL, false, NULL, &res), 0);
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S2", "B", 10, NULL, NULL, false, NULL, &res), 0);
    CHECK_EQ_INT(on_hand(st, "S2", "A"), TALLY_MAX_QTY - 5);
    CHECK_EQ_INT(on_hand(st, "S2", "B"), 15);
    before = snap(st);
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S2", "B", TALLY_MAX_QTY, NULL, NULL, false, NULL, &res),
                 TALLY_E_INVALID_PARAMS);
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S2", "A", TALLY_MAX_QTY - 5, "B", NULL, false, NULL, &res),
                 TALLY_E_INVALID_PARAMS); /* the receiving side would pass the limit */
    CHECK(snap_eq(before, snap(st)));

    /* Unknown SKU or warehouse. */
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "NOPE", "A", 1, NULL, NULL, false, NULL, &res),
                 TALLY_E_NOT_FOUND);
    CHECK(strstr(last_err, "NOPE") != NULL);
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "ZZ", 1, NULL, NULL, false, NULL, &res),
                 TALLY_E_NOT_FOUND);
    CHECK(strstr(last_err, "ZZ") != NULL);
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S1", "B", 1, "ZZ", NULL, false, NULL, &res),
                 TALLY_E_NOT_FOUND);
    CHECK(strstr(last_err, "ZZ") != NULL);
    CHECK(snap_eq(before, snap(st)));
    check_invariants(st, "refusals");
    store_close(st);
}

static void test_idempotency(void)
{
    struct store *st = fresh_store();
    struct stock_move_result first, res;

    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "A", 5, NULL, NULL, false, "m-1", &first), 0);
    struct snapshot before = snap(st);
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "A", 5, NULL, NULL, false, "m-1", &res), 0);
    CHECK(res.duplicate);
    CHECK_EQ_STR(res.id, "m-1");
    CHECK_EQ_INT(res.nlegs, 1);
    CHECK_EQ_STR(res.legs[0].warehouse, "A");
    CHECK_EQ_INT(res.legs[0].delta, 5);
    CHECK_EQ_INT(res.legs[0].on_hand, 15);
    CHECK_EQ_INT(res.outbox_id, first.outbox_id);
    CHECK_EQ_INT(res.created_at, first.created_at);
    CHECK(snap_eq(before, snap(st)));
    /* Reason and ref are not content: a retry that adds a note is still the same movement. */
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "A", 5, NULL, "note", false, "m-1", &res), 0);
    CHECK(res.duplicate);

    /* Same id, different content. */
    struct {
        int kind;
        const char *sku, *wh;
        int64_t qty;
        const char *to, *reason;
        const char *what;
    } conflicts[] = {
        {STOCK_RECEIVE, "S1", "A", 6, NULL, NULL, "qty"},
        {STOCK_RETURN, "S1", "A", 5, NULL, NULL, "kind"},
        {STOCK_ADJUST, "S1", "A", 5, NULL, "r", "kind adjust"},
        {STOCK_RECEIVE, "S1", "B", 5, NULL, NULL, "warehouse"},
        {STOCK_RECEIVE, "S2", "A", 5, NULL, NULL, "sku"},
        {STOCK_TRANSFER, "S1", "A", 5, "B", NULL, "transfer"},
    };
    for (size_t i = 0; i < sizeof conflicts / sizeof conflicts[0]; i++) {
        int r = mv(st, conflicts[i].kind, conflicts[i].sku, conflicts[i].wh, conflicts[i].qty,
                   conflicts[i].to, conflicts[i].reason, false, "m-1", &res);
        if (r != TALLY_E_CONFLICT)
            fprintf(stderr, "same id, different %s: %d (%s)\n", conflicts[i].what, r, last_err);
        CHECK_EQ_INT(r, TALLY_E_CONFLICT);
        CHECK(strstr(last_err, "m-1") != NULL);
    }
    CHECK(snap_eq(before, snap(st)));

    /* Transfers: duplicate answers both legs; a different destination is a conflict. */
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S1", "A", 4, "B", NULL, false, "t-1", &first), 0);
    before = snap(st);
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S1", "A", 4, "B", NULL, false, "t-1", &res), 0);
    CHECK(res.duplicate);
    CHECK_EQ_INT(res.nlegs, 2);
    CHECK_EQ_STR(res.legs[0].warehouse, "A");
    CHECK_EQ_INT(res.legs[0].delta, -4);
    CHECK_EQ_INT(res.legs[0].on_hand, 11);
    CHECK_EQ_STR(res.legs[1].warehouse, "B");
    CHECK_EQ_INT(res.legs[1].delta, 4);
    CHECK_EQ_INT(res.legs[1].on_hand, 4);
    CHECK_EQ_INT(res.outbox_id, first.outbox_id);
    CHECK(snap_eq(before, snap(st)));
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S1", "B", 4, "A", NULL, false, "t-1", &res),
                 TALLY_E_CONFLICT);
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "A", 4, NULL, NULL, false, "t-1", &res),
                 TALLY_E_CONFLICT);
    CHECK(snap_eq(before, snap(st)));

    /* A count's duplicate answers the original delta, even though the view moved since. */
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S1", "A", 8, NULL, NULL, false, "c-1", &first), 0);
    CHECK_EQ_INT(first.legs[0].delta, -3);
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 1, NULL, NULL, false, NULL, &res), 0);
    before = snap(st);
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S1", "A", 8, NULL, NULL, false, "c-1", &res), 0);
    CHECK(res.duplicate);
    CHECK_EQ_INT(res.legs[0].delta, -3);
    CHECK_EQ_INT(res.legs[0].on_hand, 7);
    CHECK(snap_eq(before, snap(st)));

    /* A duplicate is recognised even when replaying it now would be refused. */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 7, NULL, NULL, false, "p-all", &first), 0);
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 7, NULL, NULL, false, "p-all", &res), 0);
    CHECK(res.duplicate);
    CHECK_EQ_INT(res.legs[0].on_hand, 0);
    check_invariants(st, "idempotency");
    check_payloads(st);
    store_close(st);
}

/* ---- the random run ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

struct model_move {
    int kind, sku, wh, to;
    int64_t qty;
    int64_t delta;
};

static void test_random(void)
{
    struct store *st = fresh_store();
    static const char *const skus[] = {"S1", "S2"};
    static const char *const whs[] = {"A", "B"};
    /* The model: on_hand per SKU x warehouse, and every accepted movement by id. */
    int64_t model[2][2] = {{10, 0}, {0, 0}};
    enum { N = 2000 };
    static struct model_move done[N];
    int ndone = 0, accepted = 0, dups = 0, conflicts = 0, insufficient = 0, mismatch = 0;

    for (int i = 0; i < N; i++) {
        struct model_move m = {0};
        char id[32];
        bool force = false;
        const char *reason = NULL;
        int reuse = ndone > 0 && rnd() % 10 == 0 ? (int)(rnd() % (uint64_t)ndone) : -1;
        if (reuse >= 0) {
            m = done[reuse];
            snprintf(id, sizeof id, "rnd-%d", reuse);
            if (rnd() % 2)
                m.qty += m.qty == -1 ? 2 : 1; /* different content (an adjust never becomes 0) */
        } else {
            m.kind = (int)(rnd() % 6);
            m.sku = (int)(rnd() % 2);
            m.wh = (int)(rnd() % 2);
            m.to = m.kind == STOCK_TRANSFER ? 1 - m.wh : -1;
            m.qty = (int64_t)(rnd() % 20) + 1;
            if (m.kind == STOCK_ADJUST && rnd() % 2)
                m.qty = -m.qty;
            if (m.kind == STOCK_COUNT)
                m.qty = (int64_t)(rnd() % 30);
            snprintf(id, sizeof id, "rnd-%d", ndone);
        }
        if (m.kind == STOCK_ADJUST || rnd() % 20 == 0) {
            reason = "random";
            force = rnd() % 8 == 0;
        }

        /* Predict. */
        int want;
        int64_t delta = 0;
        bool is_dup = reuse >= 0;
        if (is_dup) {
            const struct model_move *o = &done[reuse];
            bool same = o->kind == m.kind && o->sku == m.sku && o->wh == m.wh && o->to == m.to &&
                        o->qty == m.qty;
            want = same ? 0 : TALLY_E_CONFLICT;
        } else {
            int64_t oh = model[m.sku][m.wh];
            switch (m.kind) {
            case STOCK_PICK:
            case STOCK_TRANSFER:
                delta = -m.qty;
                break;
            case STOCK_COUNT:
                delta = m.qty - oh;
                break;
            default:
                delta = m.qty;
                break;
            }
            want = oh + delta < 0 && !force ? TALLY_E_INSUFFICIENT : 0;
        }

        struct stock_move_result res;
        int r = mv(st, m.kind, skus[m.sku], whs[m.wh], m.qty, m.to >= 0 ? whs[m.to] : NULL, reason,
                   force, id, &res);
        if (r != want) {
            if (mismatch++ < 5)
                fprintf(stderr, "random %d: %s %s@%s qty %lld id %s -> %d (%s), expected %d\n", i,
                        stock_kind_name(m.kind), skus[m.sku], whs[m.wh], (long long)m.qty, id, r,
                        last_err, want);
            continue;
        }
        if (r == TALLY_E_CONFLICT)
            conflicts++;
        if (r == TALLY_E_INSUFFICIENT)
            insufficient++;
        if (r != 0)
            continue;
        if (is_dup) {
            dups++;
            if (!res.duplicate || res.legs[0].delta != done[reuse].delta)
                mismatch++;
        } else {
            accepted++;
            m.delta = delta;
            done[ndone++] = m;
            model[m.sku][m.wh] += delta;
            if (m.kind == STOCK_TRANSFER)
                model[m.sku][m.to] += m.qty;
            if (res.duplicate || res.legs[0].delta != delta ||
                res.legs[0].on_hand != model[m.sku][m.wh])
                mismatch++;
        }
        /* Now and then the sync engine settles the oldest open movement (simulated). */
        if (i % 50 == 49)
            exec_sql(st, "UPDATE stock SET snapshot = snapshot + (SELECT delta FROM movements"
                         " WHERE seq = (SELECT MIN(seq) FROM movements WHERE state <> 'settled')),"
                         " pending = pending - (SELECT delta FROM movements"
                         " WHERE seq = (SELECT MIN(seq) FROM movements WHERE state <> 'settled'))"
                         " WHERE (sku, warehouse) = (SELECT sku, warehouse FROM movements"
                         " WHERE seq = (SELECT MIN(seq) FROM movements WHERE state <> 'settled'));"
                         "UPDATE movements SET state = 'settled' WHERE seq ="
                         " (SELECT MIN(seq) FROM movements WHERE state <> 'settled');");
        if (i % 500 == 0)
            check_invariants(st, "random (during)");
    }
    CHECK_EQ_INT(mismatch, 0);
    for (int s = 0; s < 2; s++)
        for (int w = 0; w < 2; w++)
            CHECK_EQ_INT(on_hand(st, skus[s], whs[w]), model[s][w]);
    check_invariants(st, "random");
    check_payloads(st);
    CHECK(q64(st, "SELECT COUNT(*) FROM movements WHERE state = 'settled'") > 10);
    CHECK(accepted > 1000);
    CHECK(dups > 20);
    CHECK(conflicts > 20);
    CHECK(insufficient > 20);
    printf("random run: %d accepted, %d duplicates, %d conflicts, %d insufficient\n", accepted,
           dups, conflicts, insufficient);
    store_close(st);
}

/* ---- the sync side: snapshots, acknowledgements, discards ---- */

static int64_t id_of(struct store *st, bool sku, const char *code)
{
    int64_t id = 0;
    int r = sku ? catalog_sku_id(st, code, strlen(code), &id)
                : catalog_warehouse_id(st, code, strlen(code), &id);
    CHECK_EQ_INT(r, 0);
    return id;
}

static int snapshot_tx(struct store *st, const char *sku, const char *wh, int64_t on_hand_now,
                       int64_t version)
{
    int64_t k = id_of(st, true, sku), w = id_of(st, false, wh);
    CHECK_EQ_INT(store_begin(st), 0);
    int r = stock_apply_snapshot(st, k, w, on_hand_now, version, store_now());
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    return r;
}

static int ack_tx(struct store *st, const char *id, int64_t version, int64_t to_version)
{
    CHECK_EQ_INT(store_begin(st), 0);
    int r = stock_ack(st, id, version, to_version);
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    return r;
}

static const char *state_of(struct store *st, const char *id, int leg)
{
    static char out[16];
    sqlite3_stmt *s;
    snprintf(out, sizeof out, "(none)");
    if (sqlite3_prepare_v2(store_db(st), "SELECT state FROM movements WHERE id = ?1 AND leg = ?2",
                           -1, &s, NULL) != SQLITE_OK)
        return out;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, leg);
    if (sqlite3_step(s) == SQLITE_ROW)
        snprintf(out, sizeof out, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
}

static void test_sync_side(void)
{
    struct store *st = fresh_store();
    struct stock_move_result res;

    /* A pulled figure replaces the snapshot; an older version never moves it back. */
    CHECK_EQ_INT(snapshot_tx(st, "S1", "A", 10, 5), 0);
    CHECK_EQ_INT(figs(st, "S1", "A").snapshot, 10);
    CHECK_EQ_INT(snapshot_tx(st, "S1", "A", 3, 4), 0);
    CHECK_EQ_INT(figs(st, "S1", "A").snapshot, 10);

    /* Acknowledged at version 8 while the snapshot held is at 5: stays in the overlay ... */
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "A", 4, NULL, NULL, false, "r8", &res), 0);
    CHECK_EQ_INT(ack_tx(st, "r8", 8, 0), 0);
    CHECK_EQ_STR(state_of(st, "r8", 0), "acked");
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 14);
    /* ... a snapshot before it does not include it ... */
    CHECK_EQ_INT(snapshot_tx(st, "S1", "A", 10, 7), 0);
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 14);
    CHECK_EQ_STR(state_of(st, "r8", 0), "acked");
    /* ... the snapshot at its version does, and it leaves the overlay. */
    CHECK_EQ_INT(snapshot_tx(st, "S1", "A", 14, 8), 0);
    CHECK_EQ_STR(state_of(st, "r8", 0), "settled");
    CHECK_EQ_INT(figs(st, "S1", "A").pending, 0);
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 14);

    /* Acknowledged at a version the held snapshot already includes: settles at once. */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 2, NULL, NULL, false, "p9", &res), 0);
    CHECK_EQ_INT(snapshot_tx(st, "S1", "A", 12, 10), 0);
    CHECK_EQ_INT(ack_tx(st, "p9", 9, 0), 0);
    CHECK_EQ_STR(state_of(st, "p9", 0), "settled");
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 12);
    check_invariants(st, "sync (versioned)");

    /*
     * Acknowledged without a version: it cannot be matched to a snapshot, so it must stay in
     * the overlay until the next snapshot arrives (stock.c: "it settles with the next snapshot
     * row"). The snapshot held now (version 10) was pulled before the warehouse applied it.
     */
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "A", 3, NULL, NULL, false, "r-nov", &res), 0);
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 15);
    CHECK_EQ_INT(ack_tx(st, "r-nov", 0, 0), 0);
    if (on_hand(st, "S1", "A") != 15)
        fprintf(stderr,
                "an ack without a version settled against the snapshot held before it:"
                " on hand %lld, expected 15\n",
                (long long)on_hand(st, "S1", "A"));
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 15);
    CHECK_EQ_STR(state_of(st, "r-nov", 0), "acked");
    CHECK_EQ_INT(snapshot_tx(st, "S1", "A", 15, 11), 0);
    CHECK_EQ_STR(state_of(st, "r-nov", 0), "settled");
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 15);
    check_invariants(st, "sync (no version)");

    /* A transfer: each leg settles with its own warehouse's snapshot. */
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S1", "A", 5, "B", NULL, false, "tr", &res), 0);
    CHECK_EQ_INT(ack_tx(st, "tr", 12, 3), 0);
    CHECK_EQ_STR(state_of(st, "tr", 0), "acked");
    CHECK_EQ_STR(state_of(st, "tr", 1), "acked");
    CHECK_EQ_INT(snapshot_tx(st, "S1", "B", 5, 3), 0);
    CHECK_EQ_STR(state_of(st, "tr", 1), "settled");
    CHECK_EQ_STR(state_of(st, "tr", 0), "acked");
    CHECK_EQ_INT(on_hand(st, "S1", "B"), 5);
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 10);
    CHECK_EQ_INT(snapshot_tx(st, "S1", "A", 10, 12), 0);
    CHECK_EQ_STR(state_of(st, "tr", 0), "settled");
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 10);
    /* A second ack of a settled movement changes nothing. */
    CHECK_EQ_INT(ack_tx(st, "tr", 12, 3), 0);
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 10);
    check_invariants(st, "sync (transfer)");

    /* Discard: the movement leaves the view without ever reaching the warehouse. */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 4, NULL, NULL, false, "gone", &res), 0);
    CHECK_EQ_INT(mv(st, STOCK_TRANSFER, "S1", "A", 1, "B", NULL, false, "gone-t", &res), 0);
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 5);
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK_EQ_INT(stock_discard(st, "gone"), 0);
    CHECK_EQ_INT(stock_discard(st, "gone-t"), 0);
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK_EQ_INT(on_hand(st, "S1", "A"), 10);
    CHECK_EQ_INT(on_hand(st, "S1", "B"), 5);
    CHECK_EQ_INT(figs(st, "S1", "A").pending, 0);
    CHECK_EQ_INT(figs(st, "S1", "B").pending, 0);
    CHECK_EQ_STR(state_of(st, "gone", 0), "settled");
    CHECK_EQ_STR(state_of(st, "gone-t", 1), "settled");
    check_invariants(st, "sync (discard)");
    store_close(st);
}

/* became_low: set by the movement that takes available to or below the threshold. */
static void test_became_low(void)
{
    struct store *st = fresh_store();
    struct stock_move_result res;
    exec_sql(st, "UPDATE stock SET threshold = 5");
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 4, NULL, NULL, false, NULL, &res), 0);
    CHECK(!res.legs[0].became_low); /* 6 > 5 */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 1, NULL, NULL, false, NULL, &res), 0);
    CHECK(res.legs[0].became_low); /* 5 <= 5 */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S1", "A", 1, NULL, NULL, false, NULL, &res), 0);
    CHECK(!res.legs[0].became_low); /* was low already */
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S1", "A", 10, NULL, NULL, false, NULL, &res), 0);
    CHECK(!res.legs[0].became_low);
    CHECK_EQ_INT(mv(st, STOCK_COUNT, "S1", "A", 2, NULL, NULL, false, NULL, &res), 0);
    CHECK(res.legs[0].became_low);
    /* No threshold (0): low only when it runs out, and then whatever the threshold. */
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "S2", "B", 2, NULL, NULL, false, NULL, &res), 0);
    CHECK(!res.legs[0].became_low);
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S2", "B", 1, NULL, NULL, false, NULL, &res), 0);
    CHECK(!res.legs[0].became_low); /* 1 left */
    CHECK_EQ_INT(mv(st, STOCK_PICK, "S2", "B", 1, NULL, NULL, false, NULL, &res), 0);
    CHECK(res.legs[0].became_low); /* out */
    store_close(st);
}

/* catalog_sku_ensure: a SKU a warehouse reports before the catalog gets a placeholder. */
static void test_sku_ensure(void)
{
    struct store *st = fresh_store();
    int64_t s1 = id_of(st, true, "S1"), id = 0, id2 = 0, id3 = 0;
    CHECK_EQ_INT(catalog_sku_ensure(st, "S1", &id), 0);
    CHECK_EQ_INT(id, s1);
    int64_t skus = q64(st, "SELECT COUNT(*) FROM skus");
    CHECK_EQ_INT(catalog_sku_ensure(st, "NEW-1", &id), 0);
    CHECK(id > 0 && id != s1);
    CHECK_EQ_INT(catalog_sku_ensure(st, "NEW-1", &id2), 0);
    CHECK_EQ_INT(id2, id);
    CHECK_EQ_INT(catalog_sku_ensure(st, "NEW-2", &id3), 0);
    CHECK(id3 != id);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(*) FROM skus"), skus + 2);
    CHECK_EQ_INT(q64(st, "SELECT COUNT(DISTINCT product) FROM skus WHERE code LIKE 'NEW-%%'"), 1);
    int64_t found = 0;
    CHECK_EQ_INT(catalog_sku_id(st, "NEW-2", 5, &found), 0);
    CHECK_EQ_INT(found, id3);
    /* A placeholder SKU takes movements like any other. */
    struct stock_move_result res;
    CHECK_EQ_INT(mv(st, STOCK_RECEIVE, "NEW-1", "A", 2, NULL, NULL, false, NULL, &res), 0);
    CHECK_EQ_INT(on_hand(st, "NEW-1", "A"), 2);
    store_close(st);
}

static void test_kind_names(void)
{
    static const char *const names[] = {"receive", "pick", "adjust", "count", "transfer", "return"};
    for (int k = 0; k < 6; k++) {
        CHECK_EQ_STR(stock_kind_name(k), names[k]);
        CHECK_EQ_INT(stock_kind_parse(names[k], strlen(names[k])), k);
    }
    CHECK_EQ_INT(STOCK_RECEIVE, stock_kind_parse("receive", 7));
    CHECK_EQ_INT(STOCK_RETURN, stock_kind_parse("return", 6));
    CHECK_EQ_INT(stock_kind_parse("move", 4), -1);
    CHECK_EQ_INT(stock_kind_parse("pic", 3), -1);
    CHECK_EQ_INT(stock_kind_parse("picks", 5), -1);
    CHECK_EQ_INT(stock_kind_parse("", 0), -1);
    CHECK_EQ_STR(stock_kind_name(-1), "?");
    CHECK_EQ_STR(stock_kind_name(6), "?");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tally-stock-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_kind_names();
    test_kinds();
    test_available();
    test_count_rule();
    test_refusals();
    test_idempotency();
    test_random();
    test_sync_side();
    test_became_low();
    test_sku_ensure();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_result("test_stock");
}
