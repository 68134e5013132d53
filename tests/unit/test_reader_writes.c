/*
 * Every write method tried by a reader (issue 11, "Security, tested"). The methods come from the
 * dispatcher's own table (rpc_method_at), so a method added later cannot be forgotten: each one
 * is either in READS below (a reader may call it, and doing so changes nothing in the replica)
 * or refused to a reader with the documented error (`forbidden`, PROTOCOL.md "Roles"), message
 * naming the method, and the replica unchanged, byte for byte of every row of every table. A
 * method in neither set fails the test: whoever adds one decides here which it is.
 *
 * The refusal is tried twice per method: with no params, and with a params map a write would
 * accept (sku, warehouse, qty, id, ...): a dispatcher that let the call through to its handler
 * would either change the replica or answer another error than `forbidden`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "check.h"
#include "replica_harness.h"
#include "rpc.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"

/* The methods a reader may call. A new read method is added here, deliberately. */
static const char *const READS[] = {
    "hello",       "status",     "catalog.get",     "catalog.search",
    "stock.get",   "stock.list", "orders.list",     "orders.get",
    "outbox.list", "watch",      "exceptions.list", "returns.list",
    "promo.check", "report",     "inbound.list",    "carriers.list",
};

static bool in_reads(const char *name)
{
    for (size_t i = 0; i < sizeof READS / sizeof READS[0]; i++)
        if (!strcmp(READS[i], name))
            return true;
    return false;
}

/* FNV-1a over every row of every table (names, in order; each value with its type). */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t replica_digest(struct tallyd *d, long *rows)
{
    sqlite3 *db = store_db(d->store);
    uint64_t h = 14695981039346656037ull;
    *rows = 0;
    sqlite3_stmt *tabs;
    if (sqlite3_prepare_v2(db,
                           "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT "
                           "LIKE 'sqlite_%' ORDER BY name",
                           -1, &tabs, NULL) != SQLITE_OK) {
        CHECK(!"cannot list the replica's tables");
        return 0;
    }
    while (sqlite3_step(tabs) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(tabs, 0);
        h = fnv(h, t, strlen(t) + 1);
        char sql[256];
        /* table names come from the replica's own schema, quoted */
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" ORDER BY rowid", t);
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
            /* a WITHOUT ROWID table: its primary key orders it */
            snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", t);
            if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
                CHECK(!"cannot read a table of the replica");
                continue;
            }
        }
        while (sqlite3_step(s) == SQLITE_ROW) {
            (*rows)++;
            for (int c = 0; c < sqlite3_column_count(s); c++) {
                int ty = sqlite3_column_type(s, c);
                h = fnv(h, &ty, sizeof ty);
                const void *v = sqlite3_column_blob(s, c);
                h = fnv(h, v ? v : "", (size_t)sqlite3_column_bytes(s, c));
            }
        }
        sqlite3_finalize(s);
    }
    sqlite3_finalize(tabs);
    return h;
}

int main(void)
{
    struct rh *h = rh_new("tally-reader-writes");
    if (!h) {
        perror("rh_new");
        return 2;
    }
    struct tallyd *d = rh_daemon(h);
    rh_open(h);
    rh_seed_standard(h);
    /* Rows for the writes to find: a movement, an outbox row, an order line would all do;
     * the seed's S1 at A (10 on hand) is enough for stock.move/stock.set to succeed. */

    long rows;
    uint64_t before = replica_digest(d, &rows);
    CHECK(rows > 0);

    /* The digest sees a write: a writer's movement changes it (else the test tests nothing). */
    rh_set_role(h, TALLY_ROLE_WRITER);
    CHECK(rh_call(h, "stock.move", "kind=receive", "sku=S1", "warehouse=A", "qty=#1",
                  "id=writer-control-1", NULL));
    uint64_t after_write = replica_digest(d, &rows);
    CHECK(after_write != before);
    before = after_write;

    rh_set_role(h, TALLY_ROLE_READER);
    int nwrites = 0, nreads = 0;
    const struct rpc_method *m;
    for (size_t i = 0; (m = rpc_method_at(i)) != NULL; i++) {
        bool listed = in_reads(m->name);
        /* 1. with no params */
        const msgpack_object *r = rh_call(h, m->name, NULL);
        bool refused = !r && !strcmp(rh_last_code(h), "forbidden");
        if (!listed) {
            if (!refused) {
                fprintf(stderr,
                        "FAIL: %s is not in READS and a reader was not refused it "
                        "(answer: %s): refuse it to readers (write = true in rpc.c) or add it "
                        "to READS here\n",
                        m->name, r ? "a result" : rh_last_code(h));
                CHECK(!"a method neither read nor refused to readers");
                continue;
            }
            nwrites++;
            CHECK(m->write);
            /* the documented message names the method */
            if (!strstr(rh_last_message(h), m->name)) {
                fprintf(stderr, "FAIL: %s refused with '%s'\n", m->name, rh_last_message(h));
                CHECK(!"the refusal does not name the method");
            }
            /* 2. with params a write would accept */
            r = rh_call(h, m->name, "sku=S1", "warehouse=A", "qty=#1", "id=reader-1",
                        "kind=receive", "order=O1", "carrier=DHL", "tracking=AB123456789ES",
                        "on_hand=#5", "exception=#1", "note=reader", "file=/dev/null", "confirm=!1",
                        NULL);
            if (r || strcmp(rh_last_code(h), "forbidden") != 0) {
                fprintf(stderr, "FAIL: %s with params: %s\n", m->name,
                        r ? "a result" : rh_last_code(h));
                CHECK(!"a write with params was not refused to a reader");
            }
        } else {
            nreads++;
            CHECK(!m->write);
            if (refused) {
                fprintf(stderr, "FAIL: read method %s refused to a reader\n", m->name);
                CHECK(!"a read method refused to a reader");
            }
        }
        uint64_t now = replica_digest(d, &rows);
        if (now != before) {
            fprintf(stderr, "FAIL: %s called by a reader changed the replica\n", m->name);
            CHECK(!"the replica changed");
            before = now;
        }
        printf("%-20s %s\n", m->name, listed ? "read: allowed" : "write: forbidden to readers");
    }
    /* Every name in READS is a method of the table (a renamed method leaves no stale entry). */
    for (size_t i = 0; i < sizeof READS / sizeof READS[0]; i++)
        if (!rpc_find(READS[i], strlen(READS[i]))) {
            fprintf(stderr, "FAIL: READS names %s, which is no method\n", READS[i]);
            CHECK(!"a stale READS entry");
        }
    printf("%d write methods refused to a reader, %d read methods allowed\n", nwrites, nreads);
    CHECK(nwrites > 0);
    rh_free(h);
    return check_result("test_reader_writes");
}
