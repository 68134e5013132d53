/*
 * daemon/store.c and daemon/schema.c: a fresh replica is created at the latest schema, owner-only,
 * in WAL mode with every table; reopening is a no-op; a newer or a foreign file is refused with a
 * message and without a crash; the statement cache survives growth.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "outbox.h"
#include "replica_harness.h"
#include "store.h"
#include "tally/protocol.h"

static char tmpdir[64];

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static int file_mode(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return -1;
    return (int)(sb.st_mode & 07777);
}

static char *pragma_text(struct store *st, const char *sql)
{
    static char out[64];
    sqlite3_stmt *s;
    out[0] = 0;
    if (sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL) != SQLITE_OK)
        return out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        snprintf(out, sizeof out, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
}

static int64_t one_int(struct store *st, const char *sql)
{
    sqlite3_stmt *s;
    int64_t v = -12345;
    if (sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(store_db(st)), sql);
        return v;
    }
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static bool table_exists(struct store *st, const char *name)
{
    sqlite3_stmt *s;
    bool found = false;
    if (sqlite3_prepare_v2(store_db(st),
                           "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    found = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return found;
}

static void test_fresh(void)
{
    char path[128], wal[140], err[512] = "";
    path_of(path, sizeof path, "fresh.db");
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct store *st = NULL;

    mode_t old = umask(022); /* a permissive umask must not leak into the replica's mode */
    int r = store_open(path, true, &st, err, sizeof err);
    CHECK_EQ_INT(umask(old), 022); /* store_open restored the caller's umask */
    CHECK_EQ_INT(r, 0);
    if (r != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return;
    }
    CHECK(schema_latest() >= 1);
    CHECK_EQ_INT(store_schema_version(st), schema_latest());
    CHECK_EQ_INT(one_int(st, "PRAGMA user_version"), schema_latest());
    CHECK_EQ_STR(store_path(st), path);
    CHECK_EQ_INT(file_mode(path), 0600);
    CHECK_EQ_STR(pragma_text(st, "PRAGMA journal_mode"), "wal");
    CHECK_EQ_INT(one_int(st, "PRAGMA synchronous"), 2); /* FULL */
    CHECK_EQ_INT(one_int(st, "PRAGMA foreign_keys"), 1);

    const char *tables[] = {"warehouses", "products", "skus",        "stock",
                            "movements",  "orders",   "order_lines", "shipments",
                            "exceptions", "outbox",   "checkpoints"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        if (!table_exists(st, tables[i]))
            fprintf(stderr, "missing table %s\n", tables[i]);
        CHECK(table_exists(st, tables[i]));
    }
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM checkpoints WHERE stream IN"
                             " ('mp:catalog','mp:orders')"),
                 2);
    int64_t checkpoints = one_int(st, "SELECT COUNT(*) FROM checkpoints");

    /* A write makes the WAL file; it holds the same personal data and must be owner-only too. */
    CHECK_EQ_INT(sqlite3_exec(store_db(st),
                              "INSERT INTO warehouses(code, name, country, created_at)"
                              " VALUES('A', 'Alpha', 'ES', 1)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(file_mode(wal), 0600);

    /* The stock invariant's index and the outbox's unique key exist. */
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND"
                             " name IN ('movements_open', 'outbox_inflight', 'outbox_entity')"),
                 3);
    store_close(st);

    /* Reopen: no migration runs again, data and version intact. */
    st = NULL;
    CHECK_EQ_INT(store_open(path, false, &st, err, sizeof err), 0);
    if (!st)
        return;
    CHECK_EQ_INT(store_schema_version(st), schema_latest());
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM warehouses WHERE code = 'A'"), 1);
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM checkpoints"), checkpoints);
    CHECK_EQ_INT(one_int(st, "PRAGMA synchronous"), 1); /* NORMAL when not sync_full */
    CHECK_EQ_STR(pragma_text(st, "PRAGMA journal_mode"), "wal");
    store_close(st);
    store_close(NULL); /* a no-op */
}

/* An existing, world-readable empty file is adopted and tightened to 0600. */
static void test_existing_file_mode(void)
{
    char path[128], err[512] = "";
    path_of(path, sizeof path, "existing.db");
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    chmod(path, 0644);
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), 0);
    CHECK_EQ_INT(file_mode(path), 0600);
    if (st) {
        CHECK_EQ_INT(store_schema_version(st), schema_latest());
        CHECK_EQ_INT(sqlite3_exec(store_db(st),
                                  "INSERT INTO warehouses(code, name, country, created_at)"
                                  " VALUES('A', 'Alpha', 'ES', 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
        char wal[140];
        snprintf(wal, sizeof wal, "%s-wal", path);
        CHECK_EQ_INT(file_mode(wal), 0600);
    }
    store_close(st);
}

static void test_newer(void)
{
    char path[128], err[512] = "";
    path_of(path, sizeof path, "newer.db");
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), 0);
    store_close(st);

    sqlite3 *db;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", schema_latest() + 1);
    CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    st = (struct store *)&st; /* must not be touched on failure */
    struct store *sentinel = st;
    err[0] = 0;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), -1);
    CHECK(st == sentinel);
    CHECK(strstr(err, "newer") != NULL);
    CHECK(strstr(err, path) != NULL);

    /* And the refused file was left as it was. */
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
    CHECK_EQ_INT(sqlite3_step(s), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(s, 0), schema_latest() + 1);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* An upgrade test's replica of an older schema: made fresh as `name` in the temp dir (its path
 * in path), taken back to schema `version` (rh_rewind_schema), then `sql` run on it when not
 * NULL (rows of that schema); `absent`, when not NULL, must fail there (it reads what the
 * upgrade adds). */
static void old_replica(char *path, size_t cap, const char *name, int version, const char *sql,
                        const char *absent)
{
    char err[512] = "";
    path_of(path, cap, name);
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), 0);
    if (st)
        store_close(st);
    CHECK(schema_latest() > version);
    CHECK_EQ_INT(rh_rewind_schema(path, version), 0);
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    if (sql && sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s (schema %d) setup: %s\n", name, version, sqlite3_errmsg(db));
        CHECK(false);
    }
    if (absent)
        CHECK(sqlite3_exec(db, absent, NULL, NULL, NULL) != SQLITE_OK);
    sqlite3_close(db);
}

/* Opens the replica at path, which upgrades it, and checks it is then at the latest schema:
 * the store, or NULL (said why). */
static struct store *upgraded(const char *path)
{
    char err[512] = "";
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(path, false, &st, err, sizeof err), 0);
    if (!st) {
        fprintf(stderr, "store_open %s: %s\n", path, err);
        return NULL;
    }
    CHECK_EQ_INT(store_schema_version(st), schema_latest());
    return st;
}

/* An existing replica of schema 4 (before the low-stock indexes), with stock rows in it: the
 * upgrade adds stock_low and stock_low_by_warehouse over the rows already there, holding
 * exactly the rows stock_is_low calls low (out ones whatever the threshold). */
static void test_upgrade_low_indexes(void)
{
    char path[128];
    old_replica(path, sizeof path, "v4low.db", 4,
                "INSERT INTO warehouses(id, code, name, country, created_at)"
                " VALUES(1, 'A', 'A', 'ES', 1), (2, 'B', 'B', 'ES', 1);"
                "INSERT INTO products(id, product_id, title, updated_at)"
                " VALUES(1, 'P', 'P', 1);"
                "INSERT INTO skus(id, code, product, title, price_minor, currency,"
                " updated_at) VALUES(1, 'S1', 1, 't', 1, 'EUR', 1),"
                " (2, 'S2', 1, 't', 1, 'EUR', 1);"
                /* out (threshold 0), fine, low (3 <= 5), out by reservations */
                "INSERT INTO stock(sku, warehouse, snapshot, pending, reserved,"
                " safety, threshold) VALUES(1, 1, 0, 0, 0, 0, 0),"
                " (1, 2, 9, 0, 0, 0, 0), (2, 1, 4, -1, 0, 0, 5),"
                " (2, 2, 2, 0, 2, 1, 0);",
                NULL);
    struct store *st = upgraded(path);
    if (!st)
        return;
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND"
                             " name IN ('stock_low', 'stock_low_by_warehouse')"),
                 2);
    CHECK_EQ_STR(pragma_text(st, "SELECT group_concat(sku || '@' || warehouse) FROM (SELECT sku,"
                                 " warehouse FROM stock INDEXED BY stock_low WHERE snapshot +"
                                 " pending - reserved - safety - threshold <= 0 ORDER BY sku,"
                                 " warehouse)"),
                 "1@1,2@1,2@2");
    store_close(st);
}

/* An existing replica from before the masked ship-to columns, with an order in it: the
 * upgrade adds receipt (0: nothing to read) and receipt_error, and the order keeps its data. */
static void test_upgrade_receipt(void)
{
    char path[128];
    old_replica(path, sizeof path, "v9receipt.db", 11,
                "INSERT INTO orders(order_id, status, created_at, updated_at,"
                " country, currency, buyer_name, address)"
                " VALUES('O1', 'WAIT_SELLER_SEND_GOODS', 1, 1, 'ES', 'EUR',"
                " 'Ana', 'Calle 1');"
                /* pulled masked before masking was recognised: one open, not
                 * sent yet; one sent already */
                "INSERT INTO orders(order_id, status, created_at, updated_at,"
                " country, currency, buyer_name, address, postcode, fstate)"
                " VALUES('O2', 'WAIT_SELLER_SEND_GOODS', 1, 1, 'ES', 'EUR',"
                " 'A** G*****', 'Calle 1', '28***', 'allocated'),"
                " ('O3', 'WAIT_SELLER_SEND_GOODS', 1, 1, 'ES', 'EUR',"
                " 'A** G*****', 'Calle 1', '28***', 'sent')",
                "SELECT receipt FROM orders");
    struct store *st = upgraded(path);
    if (!st)
        return;
    CHECK_EQ_STR(pragma_text(st, "SELECT order_id || ':' || receipt || ':' ||"
                                 " IFNULL(receipt_error, '-') || ':' || address FROM orders"
                                 " WHERE order_id = 'O1'"),
                 "O1:0:-:Calle 1");
    /* The open one waits for its ship-to, its masked fields gone; the sent one is left. */
    CHECK_EQ_STR(pragma_text(st, "SELECT group_concat(x, ' ') FROM (SELECT order_id || ':' ||"
                                 " receipt || ':' || IFNULL(buyer_name, '-') || ':' || address"
                                 " || ':' || IFNULL(postcode, '-') AS x FROM orders WHERE"
                                 " order_id <> 'O1' ORDER BY order_id)"),
                 "O2:1:-:Calle 1:- O3:0:A** G*****:Calle 1:28***");
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'orders_receipt'"),
                 1);
    store_close(st);
}

/* Migration 13 on an existing replica: its stock rows keep their figures and have no
 * in-transit figure yet (NULL, shown as "-"), until a warehouse reports one. */
static void test_upgrade_inbound(void)
{
    char path[128];
    old_replica(path, sizeof path, "v12inbound.db", 12,
                "INSERT INTO stock(sku, warehouse, snapshot, upstream_version)"
                " VALUES(1, 1, 9, 4)",
                "SELECT inbound FROM stock");
    struct store *st = upgraded(path);
    if (!st)
        return;
    CHECK_EQ_STR(pragma_text(st, "SELECT snapshot || ':' || upstream_version || ':' ||"
                                 " IFNULL(inbound, '-') FROM stock"),
                 "9:4:-");
    CHECK_EQ_INT(sqlite3_exec(store_db(st), "UPDATE stock SET inbound = 3", NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(one_int(st, "SELECT inbound FROM stock"), 3);
    store_close(st);
}

/* Migration 15 on an existing replica: the fulfilment pass's positions start at the
 * beginning (one row), so the first start after the upgrade does the full pass it always did. */
static void test_upgrade_fulfil_cursor(void)
{
    char path[128];
    old_replica(path, sizeof path, "v13cursor.db", 13, NULL, "SELECT 1 FROM fulfil_cursor");
    struct store *st = upgraded(path);
    if (!st)
        return;
    CHECK_EQ_STR(pragma_text(st, "SELECT COUNT(*) || ':' || MIN(deadline_by) || ':' ||"
                                 " MIN(retry_by) || ':' || MIN(next_retry) || ':' ||"
                                 " MIN(priority_id) || ':' || MIN(next_priority)"
                                 " FROM fulfil_cursor"),
                 "1:-9223372036854775808:-9223372036854775808:0:0:0");
    /* one row only */
    CHECK(sqlite3_exec(store_db(st), "INSERT INTO fulfil_cursor VALUES(2, 0, 0, 0, 0, 0, 0, 0, 0)",
                       NULL, NULL, NULL) != SQLITE_OK);
    store_close(st);
}

/* Migration 18 on an existing replica: its orders keep their data and have no list entry
 * recorded (mp_seen NULL), so the next orders round reads each one's details once, as every
 * round did before; the column then takes what the connector records. */
static void test_upgrade_mp_seen(void)
{
    char path[128];
    old_replica(path, sizeof path, "v15seen.db", 15,
                "INSERT INTO orders(order_id, status, created_at, updated_at,"
                " country, currency, address)"
                " VALUES('O1', 'WAIT_SELLER_SEND_GOODS', 1, 1, 'ES', 'EUR',"
                " 'Calle 1')",
                "SELECT mp_seen FROM orders");
    struct store *st = upgraded(path);
    if (!st)
        return;
    CHECK_EQ_STR(pragma_text(st, "SELECT order_id || ':' || status || ':' || address || ':' ||"
                                 " IFNULL(mp_seen, '-') FROM orders"),
                 "O1:WAIT_SELLER_SEND_GOODS:Calle 1:-");
    CHECK_EQ_INT(sqlite3_exec(store_db(st),
                              "UPDATE orders SET mp_seen = '2026-12-01 10:00:00|IN_CANCEL'", NULL,
                              NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_STR(pragma_text(st, "SELECT mp_seen FROM orders"), "2026-12-01 10:00:00|IN_CANCEL");
    store_close(st);
}

/* Whether the plan of `sql` reads index `idx`. */
static bool uses_index(struct store *st, const char *sql, const char *idx)
{
    char q[512], want[96];
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    snprintf(want, sizeof want, "INDEX %s", idx);
    sqlite3_stmt *plan = NULL;
    if (sqlite3_prepare_v2(store_db(st), q, -1, &plan, NULL) != SQLITE_OK)
        return false;
    bool found = false;
    while (sqlite3_step(plan) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(plan, 3);
        const char *at = d ? strstr(d, want) : NULL;
        found = found || (at && (at[strlen(want)] == 0 || at[strlen(want)] == ' '));
    }
    sqlite3_finalize(plan);
    return found;
}

/* The outbox counters ('outbox_pending', 'outbox_held' and each per target) against a count
 * of the rows they stand for. */
static void check_outbox_counters(struct store *st, const char *when)
{
    static const char sql[] =
        "SELECT COUNT(*) FROM (SELECT 'outbox_pending' AS name,"
        "  COUNT(*) FILTER (WHERE state IN ('pending','inflight')) AS n FROM outbox"
        " UNION ALL SELECT 'outbox_held', COUNT(*) FILTER (WHERE state = 'held') FROM outbox"
        " UNION ALL SELECT 'outbox_pending:' || target,"
        "  COUNT(*) FILTER (WHERE state IN ('pending','inflight')) FROM outbox GROUP BY target"
        " UNION ALL SELECT 'outbox_held:' || target, COUNT(*) FILTER (WHERE state = 'held')"
        "  FROM outbox GROUP BY target) w"
        " WHERE w.n IS NOT (SELECT n FROM counters c WHERE c.name = w.name)";
    int64_t wrong = one_int(st, sql);
    if (wrong != 0)
        fprintf(stderr, "outbox counters wrong %s: %lld\n", when, (long long)wrong);
    CHECK_EQ_INT(wrong, 0);
}

/* Schema 16: the outbox counters' triggers no longer count a row taken in flight (pending and
 * inflight both count as pending) and outbox_due gives way to outbox_inflight. A replica of
 * schema 15 with rows in every state keeps its counters right through every change a row
 * can go through after the upgrade, and the reset of rows in flight at a start reads the new
 * index. */
static void test_upgrade_outbox_counters(void)
{
    char path[128], err[512] = "";
    path_of(path, sizeof path, "v15outbox.db");
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(schema_migrate_to(db, 0, 15, err, sizeof err), 0);
    CHECK_EQ_INT(sqlite3_exec(db,
                              "INSERT INTO outbox(key, target, entity, kind, payload,"
                              " next_attempt_at, state, created_at) VALUES"
                              " ('p', 'wh:A', 'S', 'movement', x'80', 0, 'pending', 10),"
                              " ('i', 'wh:A', 'S', 'movement', x'80', 0, 'inflight', 11),"
                              " ('h', 'wh:A', 'S', 'movement', x'80', 0, 'held', 12),"
                              " ('d', 'wh:A', 'S', 'movement', x'80', 0, 'done', 13),"
                              " ('m', 'mp', 'T', 'fulfil', x'80', 0, 'pending', 14);",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), 0);
    if (!st) {
        fprintf(stderr, "store_open: %s\n", err);
        return;
    }
    CHECK_EQ_INT(store_schema_version(st), schema_latest());
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'outbox_due'"), 0);
    CHECK_EQ_INT(one_int(st, "SELECT n FROM counters WHERE name = 'outbox_pending'"), 3);
    CHECK_EQ_INT(one_int(st, "SELECT n FROM counters WHERE name = 'outbox_held:wh:A'"), 1);
    check_outbox_counters(st, "after the upgrade");
    static const char *const steps[] = {
        "INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at, created_at)"
        " VALUES ('n1', 'wh:A', 'S', 'movement', x'80', 0, 20),"
        " ('n2', 'wh:B', 'S', 'movement', x'80', 0, 21)",
        "INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at, state,"
        " created_at) VALUES ('n3', 'wh:C', 'S', 'movement', x'80', 0, 'held', 22)",
        "UPDATE outbox SET state = 'inflight' WHERE state = 'pending'",
        "UPDATE outbox SET state = 'done' WHERE key IN ('n1', 'i')",
        "UPDATE outbox SET state = 'held' WHERE key = 'n2'",
        "UPDATE outbox SET state = 'pending', attempts = attempts + 1 WHERE state = 'inflight'",
        "UPDATE outbox SET target = 'wh:D' WHERE key IN ('p', 'h')",
        "UPDATE outbox SET state = 'discarded' WHERE key = 'h'",
        "UPDATE outbox SET state = 'pending' WHERE key = 'n3'",
        "DELETE FROM outbox WHERE key IN ('d', 'n2', 'p')",
        "UPDATE outbox SET state = 'done' WHERE state IN ('pending', 'inflight')",
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        CHECK_EQ_INT(sqlite3_exec(store_db(st), steps[i], NULL, NULL, NULL), SQLITE_OK);
        check_outbox_counters(st, steps[i]);
    }
    CHECK_EQ_INT(one_int(st, "SELECT n FROM counters WHERE name = 'outbox_pending'"), 0);
    /* the reset at a start finds the rows in flight by the new index */
    CHECK(uses_index(st,
                     "UPDATE outbox SET state = 'pending', attempts = attempts + 1"
                     " WHERE state = 'inflight'",
                     "outbox_inflight"));
    /* and status's oldest unsent row is one probe of outbox_unsent (sync.c, cmd_meta.c) */
    CHECK(uses_index(st,
                     "SELECT MIN(created_at) FROM outbox WHERE target = 'wh:A'"
                     " AND state NOT IN ('done', 'discarded')",
                     "outbox_unsent"));
    /* and the rows of an upstream waiting out a backoff are one range of outbox_backoff (the
     * statement of sync.c lift_backoff, at the link's return after an outage) */
    CHECK(uses_index(st,
                     "UPDATE outbox SET next_attempt_at = 5 WHERE state = 'pending'"
                     " AND attempts > 0 AND next_attempt_at > 5 AND target = 'wh:A'",
                     "outbox_backoff"));
    store_close(st);
}

/* The replica at path opened (and so migrated) at the latest schema; NULL, said, when not. */
static struct store *open_latest(const char *path)
{
    char err[512] = "";
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), 0);
    if (!st) {
        fprintf(stderr, "store_open: %s\n", err);
        return NULL;
    }
    CHECK_EQ_INT(store_schema_version(st), schema_latest());
    return st;
}

/* How many times a statement's program opens a temporary b-tree (OpenEphemeral). */
static int ephemerals(struct store *st, const char *sql)
{
    char explain[1024];
    snprintf(explain, sizeof explain, "EXPLAIN %s", sql);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(store_db(st), explain, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(store_db(st)), sql);
        return -1;
    }
    int n = 0;
    while (sqlite3_step(s) == SQLITE_ROW)
        n += strcmp((const char *)sqlite3_column_text(s, 1), "OpenEphemeral") == 0;
    sqlite3_finalize(s);
    return n;
}

/* A statement's outcome: SQLITE_OK, or its extended error code (SQLITE_CONSTRAINT_CHECK). */
static int exec_rc(struct store *st, const char *sql)
{
    int rc = sqlite3_exec(store_db(st), sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? rc : sqlite3_extended_errcode(store_db(st));
}

/* A row in every table migration 23 rewrites (check_constraints changes them). */
static const char check_rows[] =
    "INSERT INTO warehouses(id, code, name, country, created_at) VALUES(1, 'W-1', 'w', 'ES', 0);"
    "INSERT INTO products(id, product_id, title, updated_at) VALUES(1, 'P-1', 'p', 0);"
    "INSERT INTO skus(id, code, product, title, price_minor, currency, updated_at)"
    " VALUES(1, 'S-1', 1, 't', 1, 'EUR', 0);"
    "INSERT INTO movements(id, kind, sku, warehouse, qty, delta, created_at)"
    " VALUES('m-1', 'receive', 1, 1, 1, 1, 0);"
    "INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at, created_at)"
    " VALUES ('k-1', 'wh:W-1', 'S-1', 'movement', x'80', 0, 0);"
    "INSERT INTO orders(id, order_id, status, created_at, updated_at, country, currency)"
    " VALUES(1, 'O-1', 'WAIT_SELLER_SEND_GOODS', 0, 0, 'ES', 'EUR');"
    "INSERT INTO exceptions(kind, message, raised_at, deadline) VALUES('k', 'm', 0, 0);"
    "INSERT INTO allocations(order_ref, sku, warehouse, qty, created_at) VALUES(1, 1, 1, 1, 0);"
    "INSERT INTO inbound_notices(id, warehouse, created_at, updated_at) VALUES('n-1', 1, 0, 0);";

/* Each rewritten constraint refuses a value out of its list and takes one in it. */
static void check_constraints(struct store *st, const char *when)
{
    static const char *const refused[] = {
        "INSERT INTO warehouses(code, name, country, created_at, fulfilment)"
        " VALUES('X-BAD', 'x', 'ES', 0, 'drone')",
        "INSERT INTO movements(id, kind, sku, warehouse, qty, delta, created_at)"
        " VALUES('m-bad', 'teleport', 1, 1, 1, 1, 0)",
        "UPDATE movements SET state = 'lost' WHERE id = 'm-1'",
        "UPDATE orders SET fstate = 'lost' WHERE id = 1",
        "UPDATE exceptions SET state = 'ignored'",
        "UPDATE outbox SET state = 'lost' WHERE key = 'k-1'",
        "UPDATE allocations SET state = 'lost'",
        "UPDATE inbound_notices SET state = 'lost'",
    };
    static const char *const accepted[] = {
        "UPDATE warehouses SET fulfilment = 'outbound' WHERE code = 'W-1'",
        "UPDATE movements SET state = 'settled' WHERE id = 'm-1'",
        "UPDATE orders SET fstate = 'cancelled' WHERE id = 1",
        "UPDATE exceptions SET state = 'resolved'",
        "UPDATE outbox SET state = 'discarded' WHERE key = 'k-1'",
        "UPDATE allocations SET state = 'shipped'",
        "UPDATE inbound_notices SET state = 'refused'",
    };
    CHECK_EQ_INT(exec_rc(st, "SAVEPOINT t"), SQLITE_OK);
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (exec_rc(st, refused[i]) != SQLITE_CONSTRAINT_CHECK) {
            fprintf(stderr, "%s: not refused by its CHECK: %s\n", when, refused[i]);
            CHECK(false);
        }
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++)
        if (exec_rc(st, accepted[i]) != SQLITE_OK || sqlite3_changes(store_db(st)) != 1) {
            fprintf(stderr, "%s: refused, or no row: %s: %s\n", when, accepted[i],
                    sqlite3_errmsg(store_db(st)));
            CHECK(false);
        }
    CHECK_EQ_INT(exec_rc(st, "ROLLBACK TO t"), SQLITE_OK);
    CHECK_EQ_INT(exec_rc(st, "RELEASE t"), SQLITE_OK);
}

/* Migration 23 (schema.c checks_as_comparisons): the CHECK constraints that listed more than
 * two values compare with each, on a fresh replica and on one upgraded from schema 22 with
 * rows in those tables; they refuse and take what they did; writing a movement or an outbox
 * row builds no temporary b-tree any more (one per list before); a table whose definition is
 * not as an earlier migration wrote it is left as it is, and the upgrade goes on. */
static void test_checks_as_comparisons(void)
{
    /* definitions with a CHECK on a list of more than two (`returns` keeps its two) */
    static const char lists[] =
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name <> 'returns'"
        " AND (sql LIKE '%CHECK%IN (%' OR sql LIKE '%CHECK%IN  (%'"
        " OR sql LIKE '%CHECK%IN     (%')";
    static const char movement[] =
        "INSERT INTO movements(id, kind, sku, warehouse, qty, delta, created_at)"
        " VALUES('m-2', 'receive', 1, 1, 1, 1, 0)";
    static const char outbox_row[] =
        "INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at, created_at)"
        " VALUES ('k-2', 'wh:W-1', 'S-1', 'movement', x'80', 0, 0)";
    char path[128], err[512] = "";
    struct store *st = NULL;
    sqlite3 *db = NULL;

    /* fresh */
    path_of(path, sizeof path, "v23fresh.db");
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), 0);
    if (!st) {
        fprintf(stderr, "store_open: %s\n", err);
        return;
    }
    CHECK_EQ_INT(one_int(st, lists), 0);
    CHECK_EQ_INT(ephemerals(st, movement), 0);
    CHECK_EQ_INT(ephemerals(st, outbox_row), 0);
    CHECK_EQ_INT(ephemerals(st, "UPDATE outbox SET state = 'done' WHERE id = 1"), 0);
    CHECK_EQ_INT(exec_rc(st, check_rows), SQLITE_OK);
    check_constraints(st, "fresh");
    store_close(st);

    /* upgraded from 22, with a row in every table rewritten */
    path_of(path, sizeof path, "v22checks.db");
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(schema_migrate_to(db, 0, 22, err, sizeof err), 0);
    CHECK_EQ_INT(sqlite3_exec(db, check_rows, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    if (!(st = open_latest(path)))
        return;
    CHECK_EQ_INT(one_int(st, lists), 0);
    CHECK_EQ_INT(ephemerals(st, movement), 0);
    CHECK_EQ_INT(ephemerals(st, outbox_row), 0);
    CHECK_EQ_STR(pragma_text(st, "PRAGMA integrity_check"), "ok");
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM movements WHERE id = 'm-1'"), 1);
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM outbox WHERE key = 'k-1'"), 1);
    check_constraints(st, "upgraded from 22");
    /* the orders' counter triggers compare in place too (a trigger's program is not in its
     * statement's EXPLAIN: its text says), and count as before */
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'"
                             " AND tbl_name = 'orders' AND name LIKE 'count_orders_%'"
                             " AND sql NOT LIKE '%NOT IN%'"),
                 3);
    static const char *const order_steps[] = {
        "INSERT INTO orders(id, order_id, status, created_at, updated_at, country, currency)"
        " VALUES(2, 'O-2', 'IN_CANCEL', 0, 0, 'ES', 'EUR'),"
        " (3, 'O-3', 'WAIT_SELLER_SEND_GOODS', 0, 0, 'ES', 'EUR')",
        "UPDATE orders SET status = 'FINISH' WHERE id = 1",
        "UPDATE orders SET status = 'WAIT_SELLER_SEND_GOODS' WHERE id = 2",
        "UPDATE orders SET fstate = 'pending' WHERE id IN (2, 3)",
        "UPDATE orders SET status = 'WAIT_BUYER_ACCEPT_GOODS', fstate = 'ready' WHERE id = 2",
        "DELETE FROM orders WHERE id = 3",
    };
    for (size_t i = 0; i < sizeof order_steps / sizeof order_steps[0]; i++) {
        CHECK_EQ_INT(exec_rc(st, order_steps[i]), SQLITE_OK);
        CHECK_EQ_INT(one_int(st, "SELECT n FROM counters WHERE name = 'orders_open'"),
                     one_int(st, "SELECT COUNT(*) FROM orders WHERE status NOT IN"
                                 " ('FINISH', 'WAIT_BUYER_ACCEPT_GOODS', 'IN_CANCEL')"));
        CHECK_EQ_INT(one_int(st, "SELECT n FROM counters WHERE name = 'fstate:pending'"),
                     one_int(st, "SELECT COUNT(*) FROM orders WHERE fstate = 'pending'"));
    }
    store_close(st);

    /* at 22, as written: the lists are there (what `lists` looks for) */
    path_of(path, sizeof path, "v22edited.db");
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(schema_migrate_to(db, 0, 22, err, sizeof err), 0);
    sqlite3_stmt *q = NULL;
    int n22 = -1;
    if (sqlite3_prepare_v2(db, lists, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        n22 = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    CHECK_EQ_INT(n22, 7);
    /* outbox's definition edited (spaces in its list): left as it is, the others rewritten */
    CHECK_EQ_INT(sqlite3_exec(db,
                              "PRAGMA writable_schema=ON;"
                              "UPDATE sqlite_master SET sql = replace(sql,"
                              " '''pending'',''inflight'',''held'',''done'',''discarded''',"
                              " '''pending'', ''inflight'', ''held'', ''done'', ''discarded''')"
                              " WHERE type = 'table' AND name = 'outbox';"
                              "PRAGMA writable_schema=RESET;",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_changes(db), 1);
    sqlite3_close(db);
    if (!(st = open_latest(path)))
        return;
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'outbox'"
                             " AND sql LIKE '%''pending'', ''inflight'', ''held''%'"),
                 1);
    CHECK_EQ_INT(one_int(st, lists), 1);
    CHECK_EQ_INT(ephemerals(st, movement), 0);
    CHECK_EQ_INT(ephemerals(st, outbox_row), 1);
    CHECK_EQ_INT(exec_rc(st, check_rows), SQLITE_OK);
    check_constraints(st, "outbox edited by hand");
    store_close(st);
}

/* The first column of a statement's first row as text, on a raw connection ("" when none). */
static const char *db_text(sqlite3 *db, const char *sql)
{
    static char out[1 << 16];
    sqlite3_stmt *s;
    out[0] = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(db), sql);
        return out;
    }
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        snprintf(out, sizeof out, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
}

/* Migration 23 that fails (its rewrite refused: with SQLITE_DBCONFIG_DEFENSIVE the connection
 * cannot write sqlite_master) is rolled back whole: schema_migrate_to says which migration
 * failed; the replica is still at 22 with its definitions and schema_version as they were; the
 * connection that ran it is out of its transaction, writable_schema off, and checks the lists
 * as the replica's own definitions say; the next open completes the upgrade. */
static void test_checks_rewrite_fails(void)
{
    static const char defs[] =
        "SELECT group_concat(name || ': ' || sql, char(10)) FROM"
        " (SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name)";
    char path[128], err[512] = "", cookie[32];
    static char before[1 << 16];
    sqlite3 *db = NULL;
    path_of(path, sizeof path, "v22refused.db");
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(schema_migrate_to(db, 0, 22, err, sizeof err), 0);
    CHECK_EQ_INT(sqlite3_exec(db, check_rows, NULL, NULL, NULL), SQLITE_OK);
    snprintf(before, sizeof before, "%s", db_text(db, defs));
    snprintf(cookie, sizeof cookie, "%s", db_text(db, "PRAGMA schema_version"));
    CHECK(strstr(before, "CHECK(state IN ('pending','inflight','held','done','discarded'))"));

    CHECK_EQ_INT(sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL), SQLITE_OK);
    CHECK_EQ_INT(schema_migrate_to(db, 22, 23, err, sizeof err), -1);
    CHECK(strstr(err, "schema migration 23 failed") != NULL);
    CHECK_EQ_INT(sqlite3_get_autocommit(db), 1);
    CHECK_EQ_STR(db_text(db, "PRAGMA writable_schema"), "0");
    CHECK_EQ_STR(db_text(db, "PRAGMA user_version"), "22");
    CHECK_EQ_STR(db_text(db, "PRAGMA schema_version"), cookie);
    CHECK_EQ_STR(db_text(db, defs), before);
    /* the connection's own schema is the replica's: the list, as it was */
    CHECK_EQ_INT(sqlite3_exec(db, "UPDATE outbox SET state = 'lost'", NULL, NULL, NULL),
                 SQLITE_CONSTRAINT);
    CHECK(strstr(sqlite3_errmsg(db), "state IN ('pending','inflight'") != NULL);
    CHECK_EQ_STR(db_text(db, "PRAGMA integrity_check"), "ok");
    CHECK_EQ_INT(sqlite3_close(db), SQLITE_OK);

    struct store *st = NULL;
    if (!(st = open_latest(path)))
        return;
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'outbox'"
                             " AND sql LIKE '%CHECK(state = ''pending'' OR%'"),
                 1);
    check_constraints(st, "upgraded after a refused rewrite");
    store_close(st);
}

static void test_garbage(void)
{
    char path[128], err[512] = "";
    path_of(path, sizeof path, "garbage.db");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    for (int i = 0; i < 512; i++)
        fputs("this is not an SQLite database. ", f);
    fclose(f);
    chmod(path, 0644);
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), -1);
    CHECK(st == NULL);
    CHECK(err[0] != 0);
    CHECK(strstr(err, path) != NULL);
    /* A file that is not ours is refused without being modified, its mode included. */
    CHECK_EQ_INT(file_mode(path), 0644);

    /* A short file that is not a database either. */
    path_of(path, sizeof path, "short.db");
    f = fopen(path, "w");
    fputs("SQLite format 3", f); /* almost a header */
    fclose(f);
    err[0] = 0;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), -1);
    CHECK(err[0] != 0);

    /* A path in a directory that does not exist. */
    path_of(path, sizeof path, "no/such/dir/x.db");
    err[0] = 0;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), -1);
    CHECK(err[0] != 0);
    CHECK(st == NULL);
}

/* Statements are cached by the address of their SQL; the cache grows past its first size. */
static void test_stmt_cache(void)
{
    char path[128], err[512] = "";
    path_of(path, sizeof path, "cache.db");
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), 0);
    if (!st)
        return;
    enum { N = 600 };
    static char sql[N][40];
    sqlite3_stmt *first[N];
    for (int i = 0; i < N; i++) {
        snprintf(sql[i], sizeof sql[i], "SELECT %d", i);
        first[i] = store_stmt(st, sql[i]);
        CHECK(first[i] != NULL);
    }
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        sqlite3_stmt *s = store_stmt(st, sql[i]);
        if (s != first[i] || sqlite3_step(s) != SQLITE_ROW || sqlite3_column_int(s, 0) != i)
            wrong++;
    }
    CHECK_EQ_INT(wrong, 0);
    /* A statement handed out again is reset with cleared bindings. */
    static const char q[] = "SELECT ?1";
    sqlite3_stmt *s = store_stmt(st, q);
    sqlite3_bind_int(s, 1, 7);
    CHECK_EQ_INT(sqlite3_step(s), SQLITE_ROW);
    s = store_stmt(st, q);
    CHECK_EQ_INT(sqlite3_step(s), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_type(s, 0), SQLITE_NULL);
    CHECK(store_stmt(st, "SELECT nonsense FROM nowhere") == NULL);

    CHECK_EQ_INT(store_count(st, "SELECT COUNT(*) FROM checkpoints", -1),
                 one_int(st, "SELECT COUNT(*) FROM checkpoints"));
    CHECK_EQ_INT(store_count(st, "SELECT COUNT(*) FROM checkpoints WHERE stream = 'mp:orders'", -1),
                 1);
    CHECK_EQ_INT(store_count(st, "SELECT 1 WHERE 0", -7), -7);
    CHECK_EQ_INT(store_count(st, "SELECT NULL", -8), -8);

    /* Transactions: rollback undoes, commit keeps. */
    CHECK_EQ_INT(store_begin(st), 0);
    sqlite3_exec(store_db(st), "INSERT INTO checkpoints(stream, updated_at) VALUES('t1', 1)", NULL,
                 NULL, NULL);
    store_rollback(st);
    CHECK_EQ_INT(store_count(st, "SELECT COUNT(*) FROM checkpoints WHERE stream = 't1'", -1), 0);
    CHECK_EQ_INT(store_begin(st), 0);
    sqlite3_exec(store_db(st), "INSERT INTO checkpoints(stream, updated_at) VALUES('t2', 1)", NULL,
                 NULL, NULL);
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK_EQ_INT(store_count(st, "SELECT COUNT(*) FROM checkpoints WHERE stream = 't2'", -1), 1);
    store_rollback(st); /* outside a transaction: a no-op */
    store_close(st);
}

/* What outbox.discard says of outbox row `id` (0 may go, else the error code). */
static int may_discard(struct store *st, int64_t id)
{
    char why[256];
    int r = store_begin(st);
    if (r == 0) {
        r = outbox_may_discard(st, id, why, sizeof why);
        store_rollback(st);
    }
    return r;
}

/*
 * Upgrade from schema 4 (no outbox.sent_at): a row that could still be sent (pending, or in
 * flight when the daemon stopped) may already have reached its upstream (a crash in flight
 * leaves no trace), so it counts as sent and is not discarded until answered; a held row
 * still may go. Rows that are over (done, discarded, held) are not rewritten: the outbox
 * keeps every row, and rewriting a year of them would grow the WAL by the table's size
 * before tallyd could start. After the upgrade the trigger marks rows as they go in flight.
 */
static void test_upgrade_sent_at(void)
{
    char path[128];
    old_replica(path, sizeof path, "v4.db", 4,
                "INSERT INTO outbox(key, target, entity, kind, payload,"
                " next_attempt_at, state, attempts, created_at) VALUES"
                " ('p0', 'wh:A', 'S', 'movement', x'80', 0, 'pending', 0, 10),"
                " ('p2', 'wh:A', 'S', 'movement', x'80', 0, 'pending', 2, 11),"
                " ('in', 'wh:A', 'S', 'movement', x'80', 0, 'inflight', 0, 12),"
                " ('he', 'wh:A', 'S', 'movement', x'80', 0, 'held', 1, 13),"
                " ('do', 'wh:A', 'S', 'movement', x'80', 0, 'done', 1, 14);",
                NULL);
    struct store *st = upgraded(path);
    if (!st)
        return;
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM outbox WHERE sent_at = created_at"
                             " AND key IN ('p0', 'p2', 'in')"),
                 3);
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"
                             " AND key IN ('he', 'do')"),
                 2);
    CHECK_EQ_INT(may_discard(st, one_int(st, "SELECT id FROM outbox WHERE key = 'p0'")),
                 TALLY_E_CONFLICT);
    CHECK_EQ_INT(may_discard(st, one_int(st, "SELECT id FROM outbox WHERE key = 'he'")), 0);
    CHECK_EQ_INT(may_discard(st, one_int(st, "SELECT id FROM outbox WHERE key = 'do'")),
                 TALLY_E_CONFLICT);
    /* a row made after the upgrade: may go until it first goes in flight, not after */
    CHECK_EQ_INT(sqlite3_exec(store_db(st),
                              "INSERT INTO outbox(key, target, entity, kind, payload,"
                              " next_attempt_at, created_at) VALUES"
                              " ('nw', 'wh:A', 'S', 'movement', x'80', 0, 20)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    int64_t nw = one_int(st, "SELECT id FROM outbox WHERE key = 'nw'");
    CHECK_EQ_INT(may_discard(st, nw), 0);
    CHECK_EQ_INT(sqlite3_exec(store_db(st),
                              "UPDATE outbox SET state = 'inflight' WHERE key = 'nw';"
                              "UPDATE outbox SET state = 'pending' WHERE key = 'nw'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK(one_int(st, "SELECT sent_at FROM outbox WHERE key = 'nw'") > 0);
    CHECK_EQ_INT(may_discard(st, nw), TALLY_E_CONFLICT);
    store_close(st);
}

/* Schema 10: a replica of schema 9 gets the logistics service tables, empty and never
 * pulled (a fulfil waits for the list rather than being checked against nothing). */
static void test_upgrade_services(void)
{
    char path[128];
    old_replica(path, sizeof path, "v9.db", 9, NULL, NULL);
    struct store *st = upgraded(path);
    if (!st)
        return;
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM mp_services"), 0);
    CHECK_EQ_INT(one_int(st, "SELECT COUNT(*) FROM mp_services_pull"), 0);
    CHECK_EQ_INT(sqlite3_exec(store_db(st),
                              "INSERT INTO mp_services(service_name, tracking_no_regex)"
                              " VALUES ('CPAM', '^[A-Z]{2}[0-9]{9}[A-Z]{2}$');"
                              "INSERT INTO mp_services_pull VALUES (1, 5, 1)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(one_int(st, "SELECT services FROM mp_services_pull"), 1);
    store_close(st);
}

/* A replica where WAL cannot be had (a VFS without shared memory, as SQLite's unix-dotfile
 * for network filesystems) is refused: SQLite answers PRAGMA journal_mode=WAL with the mode it
 * kept, and tallyd would otherwise run with a rollback journal, its readers blocked by every
 * write. */
static void test_no_wal(void)
{
    char path[128], err[512] = "";
    path_of(path, sizeof path, "nowal.db");
    sqlite3_vfs *dflt = sqlite3_vfs_find(NULL), *dot = sqlite3_vfs_find("unix-dotfile");
    CHECK(dot != NULL);
    if (!dot)
        return;
    CHECK_EQ_INT(sqlite3_vfs_register(dot, 1), SQLITE_OK);
    struct store *st = NULL;
    int r = store_open(path, true, &st, err, sizeof err);
    sqlite3_vfs_register(dflt, 1);
    if (r == 0)
        fprintf(stderr, "store_open without WAL succeeded\n");
    CHECK_EQ_INT(r, -1);
    CHECK(st == NULL);
    CHECK(strstr(err, "WAL") != NULL);
    CHECK(strstr(err, path) != NULL);
    store_close(st);
    /* With the ordinary VFS the same file opens, in WAL. */
    st = NULL;
    CHECK_EQ_INT(store_open(path, true, &st, err, sizeof err), 0);
    if (st)
        CHECK_EQ_STR(pragma_text(st, "PRAGMA journal_mode"), "wal");
    store_close(st);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tally-schema-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_fresh();
    test_existing_file_mode();
    test_newer();
    test_garbage();
    test_upgrade_low_indexes();
    test_stmt_cache();
    test_upgrade_sent_at();
    test_upgrade_services();
    test_upgrade_receipt();
    test_upgrade_inbound();
    test_upgrade_fulfil_cursor();
    test_upgrade_outbox_counters();
    test_upgrade_mp_seen();
    test_checks_as_comparisons();
    test_checks_rewrite_fails();
    test_no_wal();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_result("test_schema");
}
