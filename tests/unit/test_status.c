/*
 * status from maintained counters: after a seeded random mix of inserts, updates and deletes
 * on every table status counts (through SQL, as any writer would, and through the methods
 * that write), each figure status reports equals the COUNT(*) it stands for; and the queries
 * status runs read a bounded number of rows (their plans search indexes, never scan a table).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "check.h"
#include "codec.h"
#include "replica_harness.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"

static struct rh *h;
static struct tallyd *d;

static uint64_t rng = 88172645463325252ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static const char *const mp_status[] = {"WAIT_SELLER_SEND_GOODS", "FINISH",
                                        "WAIT_BUYER_ACCEPT_GOODS", "IN_CANCEL",
                                        "PLACE_ORDER_SUCCESS"};
static const char *const fstates[] = {"new",      "pending",  "ready",    "allocated",
                                      "sent",     "picked",   "partial",  "shipped",
                                      "uploaded", "finished", "cancelled"};
static const char *const ostates[] = {"pending", "inflight", "held", "done", "discarded"};
static const char *const mstates[] = {"pending", "acked", "settled"};
static const char *const estates[] = {"open", "acknowledged", "resolved"};
static const char *const targets[] = {"wh:A", "wh:B", "mp"};

static void one_op(int i)
{
    int64_t now = store_now();
    unsigned k = rnd(100);
    switch (rnd(14)) {
    case 0:
        RH_EXEC(h, "INSERT INTO products(product_id, title, updated_at) VALUES('RP%d', 't', 0)", i);
        break;
    case 1:
        RH_EXEC(h, "DELETE FROM products WHERE id = (SELECT id FROM products"
                   " WHERE product_id LIKE 'RP%%' ORDER BY random() LIMIT 1)");
        break;
    case 2:
        RH_EXEC(h,
                "INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
                " VALUES('RS%d', 1, 't', 1, 'EUR', 0)",
                i);
        break;
    case 3:
        RH_EXEC(h, "DELETE FROM skus WHERE id = (SELECT id FROM skus WHERE code LIKE 'RS%%'"
                   " ORDER BY random() LIMIT 1)");
        break;
    case 4:
        RH_EXEC(h,
                "INSERT INTO warehouses(code, name, country, created_at)"
                " VALUES('RW%d', 'n', 'ES', 0)",
                i);
        if (k < 40)
            RH_EXEC(h, "DELETE FROM warehouses WHERE code = 'RW%d'", i);
        break;
    case 5:
        RH_EXEC(h,
                "INSERT INTO orders(order_id, status, created_at, updated_at, country, currency,"
                " fstate) VALUES('RO%d', '%s', 0, 0, 'ES', 'EUR', '%s')",
                i, mp_status[rnd(5)], fstates[rnd(11)]);
        break;
    case 6:
        RH_EXEC(h,
                "UPDATE orders SET status = '%s', fstate = '%s' WHERE id = (SELECT id FROM"
                " orders ORDER BY random() LIMIT 1)",
                mp_status[rnd(5)], fstates[rnd(11)]);
        break;
    case 7:
        RH_EXEC(h,
                "UPDATE orders SET %s = '%s' WHERE id IN (SELECT id FROM orders"
                " ORDER BY random() LIMIT 3)",
                k < 50 ? "status" : "fstate", k < 50 ? mp_status[rnd(5)] : fstates[rnd(11)]);
        if (k < 10)
            RH_EXEC(h, "DELETE FROM orders WHERE id = (SELECT id FROM orders WHERE order_id"
                       " LIKE 'RO%%' ORDER BY random() LIMIT 1)");
        break;
    case 8: /* a movement of one or two legs */
        for (int leg = 0; leg < (k < 50 ? 2 : 1); leg++)
            RH_EXEC(h,
                    "INSERT INTO movements(id, leg, kind, sku, warehouse, qty, delta,"
                    " created_at, state) VALUES('RM%d', %d, 'transfer', 1, 1, 1, 1, 0, '%s')",
                    i, leg, mstates[rnd(3)]);
        break;
    case 9:
        RH_EXEC(h,
                "UPDATE movements SET state = '%s' WHERE seq = (SELECT seq FROM movements"
                " ORDER BY random() LIMIT 1)",
                mstates[rnd(3)]);
        if (k < 15)
            RH_EXEC(h, "DELETE FROM movements WHERE seq = (SELECT seq FROM movements"
                       " ORDER BY random() LIMIT 1)");
        break;
    case 10:
        RH_EXEC(h,
                "INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at,"
                " created_at, state) VALUES('RX%d', '%s', 'e', 'movement', x'80', 0, %lld,"
                " '%s')",
                i, targets[rnd(3)], (long long)(now - rnd(5000)), ostates[rnd(5)]);
        break;
    case 11:
        RH_EXEC(h,
                "UPDATE outbox SET state = '%s' WHERE id = (SELECT id FROM outbox"
                " ORDER BY random() LIMIT 1)",
                ostates[rnd(5)]);
        if (k < 15)
            RH_EXEC(h, "DELETE FROM outbox WHERE id = (SELECT id FROM outbox"
                       " ORDER BY random() LIMIT 1)");
        break;
    case 12: /* deadlines from two days ago to two days ahead, some within this very hour */
        RH_EXEC(h,
                "INSERT INTO exceptions(kind, message, raised_at, deadline, state, dedupe)"
                " VALUES('deadline', 'm', 0, %lld, '%s', 'RE%d')",
                (long long)(k < 30 ? now - 1800 + (int64_t)rnd(3600)
                                   : now - 2 * 86400 + (int64_t)rnd(4 * 86400)),
                estates[rnd(3)], i);
        break;
    default:
        RH_EXEC(h,
                "UPDATE exceptions SET %s WHERE id = (SELECT id FROM exceptions"
                " ORDER BY random() LIMIT 1)",
                k < 50 ? (k < 25 ? "state = 'resolved'" : "state = 'acknowledged'")
                       : "deadline = deadline + 5000");
        if (k < 10)
            RH_EXEC(h, "DELETE FROM exceptions WHERE id = (SELECT id FROM exceptions"
                       " ORDER BY random() LIMIT 1)");
        break;
    }
}

static int64_t sub_int(const msgpack_object *m, const char *map, const char *key)
{
    const msgpack_object *v = mp_map_get(m, map);
    return v && v->type == MSGPACK_OBJECT_MAP ? rh_iget(v, key) : RH_NONE;
}

/* Every figure of status against the COUNT(*) it stands for. */
static void check_status(int step)
{
    int64_t now = store_now();
    const msgpack_object *r = rh_call(h, "status", NULL);
    CHECK(r != NULL);
    if (!r)
        return;
    int failed = check_failures;
    CHECK_EQ_INT(sub_int(r, "replica", "products"),
                 rh_q64(h, "SELECT COUNT(*) FROM products WHERE product_id <> '~unlisted'"));
    CHECK_EQ_INT(sub_int(r, "replica", "skus"), rh_q64(h, "SELECT COUNT(*) FROM skus"));
    CHECK_EQ_INT(sub_int(r, "replica", "warehouses"), rh_q64(h, "SELECT COUNT(*) FROM warehouses"));
    CHECK_EQ_INT(sub_int(r, "replica", "orders_open"),
                 rh_q64(h, "SELECT COUNT(*) FROM orders WHERE status NOT IN"
                           " ('FINISH','WAIT_BUYER_ACCEPT_GOODS','IN_CANCEL')"));
    CHECK_EQ_INT(sub_int(r, "replica", "movements_pending"),
                 rh_q64(h, "SELECT COUNT(DISTINCT id) FROM movements WHERE state <> 'settled'"));
    CHECK_EQ_INT(sub_int(r, "outbox", "pending"),
                 rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state IN ('pending','inflight')"));
    CHECK_EQ_INT(sub_int(r, "outbox", "held"),
                 rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state = 'held'"));
    const msgpack_object *ob = mp_map_get(r, "outbox");
    const msgpack_object *age = ob ? mp_map_get(ob, "oldest_age_s") : NULL;
    int64_t oldest = rh_q64(h, "SELECT MIN(created_at) FROM outbox"
                               " WHERE state IN ('pending','inflight','held')");
    if (oldest == RH_NONE)
        CHECK(age && age->type == MSGPACK_OBJECT_NIL);
    else
        CHECK(age && age->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
              (int64_t)age->via.u64 >= now - oldest && (int64_t)age->via.u64 <= now - oldest + 2);
    static const char *const open_states[] = {"pending", "ready",  "allocated",
                                              "sent",    "picked", "partial"};
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(sub_int(r, "fulfilment", open_states[i]),
                     rh_q64(h, "SELECT COUNT(*) FROM orders WHERE fstate = '%s'", open_states[i]));
    CHECK_EQ_INT(sub_int(r, "fulfilment", "exceptions_open"),
                 rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE state <> 'resolved'"));
    CHECK_EQ_INT(sub_int(r, "fulfilment", "exceptions_overdue"),
                 rh_q64(h,
                        "SELECT COUNT(*) FROM exceptions WHERE state <> 'resolved'"
                        " AND deadline < %lld",
                        (long long)now));
    if (check_failures != failed)
        fprintf(stderr, "test_status: figures differ after step %d\n", step);
}

static void test_random_mix(void)
{
    rh_open(h);
    rh_seed_standard(h);
    RH_EXEC(h, "PRAGMA foreign_keys = OFF"); /* deletes of rows others refer to, as SQL may */
    check_status(0);
    for (int i = 1; i <= 1500; i++) {
        one_op(i);
        if (i % 50 == 0)
            check_status(i);
    }
    /* And through the methods that write. */
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof id, "id=mv-%d", i);
        CHECK(rh_call(h, "stock.move", "kind=receive", "sku=S1", "warehouse=A", "qty=#3", id,
                      NULL) != NULL);
    }
    check_status(-1);
    /* A transaction rolled back leaves the counters as they were. */
    RH_EXEC(h, "BEGIN");
    RH_EXEC(h, "INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
               " VALUES('GONE', 1, 't', 1, 'EUR', 0)");
    RH_EXEC(h, "DELETE FROM outbox");
    RH_EXEC(h, "ROLLBACK");
    check_status(-2);
    CHECK(rh_q64(h, "SELECT COUNT(*) FROM outbox") > 0);
}

/*
 * A replica of schema version `from` with data in every table status counts (the random mix)
 * is upgraded: the migrations' counters start from the real counts, and stay exact after.
 * From 4: before the counters (migration 7); from 13: before exception_due_s (14).
 */
static void test_upgrade_from(int from)
{
    rh_open(h);
    rh_seed_standard(h);
    RH_EXEC(h, "PRAGMA foreign_keys = OFF");
    for (int i = 1; i <= 600; i++)
        one_op(i);
    char path[512];
    snprintf(path, sizeof path, "%s", store_path(d->store));
    store_close(d->store);
    d->store = NULL;
    CHECK_EQ_INT(rh_rewind_schema(path, from), 0);
    { /* the older schema has no exception_due_s: the upgrade must make and fill it */
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        CHECK(sqlite3_open(path, &db) == SQLITE_OK);
        CHECK(sqlite3_prepare_v2(
                  db, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'exception_due_s'", -1, &q,
                  NULL) == SQLITE_OK);
        CHECK(sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 0);
        sqlite3_finalize(q);
        sqlite3_close(db);
    }

    char err[256];
    CHECK_EQ_INT(store_open(path, false, &d->store, err, sizeof err), 0);
    CHECK_EQ_INT(store_schema_version(d->store), schema_latest());
    check_status(-10);
    RH_EXEC(h, "PRAGMA foreign_keys = OFF");
    for (int i = 601; i <= 900; i++)
        one_op(i);
    check_status(-11);
}

/* The plans of what status runs: searches through indexes and keys, never a table scan. */
static void test_plans(void)
{
    static const char *const sql[] = {
        "SELECT n FROM counters WHERE name = ?1",
        "SELECT COALESCE(SUM(n), 0) FROM exception_due WHERE hour < ?1",
        "SELECT COALESCE(SUM(n), 0) FROM exception_due_s WHERE second >= ?1 AND second < ?2",
        "SELECT MIN((SELECT MIN(created_at) FROM outbox WHERE target = substr(c.name, 16)"
        " AND state IN ('pending','inflight','held'))) FROM counters c"
        " WHERE c.name >= 'outbox_pending:' AND c.name < 'outbox_pending;'",
        "SELECT (SELECT n FROM counters WHERE name = 'outbox_pending:' || ?1),"
        " (SELECT n FROM counters WHERE name = 'outbox_held:' || ?1),"
        " (SELECT MIN(created_at) FROM outbox WHERE target = ?1"
        "  AND state IN ('pending','inflight','held'))",
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        char q[1024];
        snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql[i]);
        sqlite3_stmt *s;
        CHECK(sqlite3_prepare_v2(store_db(d->store), q, -1, &s, NULL) == SQLITE_OK);
        int scans = 0;
        while (sqlite3_step(s) == SQLITE_ROW) {
            const char *detail = (const char *)sqlite3_column_text(s, 3);
            /* exception_due is searched by its key range; a plain SCAN of a table is not
             * allowed anywhere. */
            if (detail && strncmp(detail, "SCAN", 4) == 0 && !strstr(detail, "CONSTANT ROW")) {
                fprintf(stderr, "plan of [%s]: %s\n", sql[i], detail);
                scans++;
            }
        }
        sqlite3_finalize(s);
        CHECK_EQ_INT(scans, 0);
    }
}

int main(void)
{
    h = rh_new("tally-status");
    if (!h) {
        perror("mkdtemp");
        return 1;
    }
    d = rh_daemon(h);
    test_random_mix();
    test_plans();
    test_upgrade_from(4);
    test_upgrade_from(13);
    rh_free(h);
    return check_result("test_status");
}
