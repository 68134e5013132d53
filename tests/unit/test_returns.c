/*
 * returns.receive / returns.inspect / returns.list through rpc_handle against a temp replica
 * (warehouses A and B, SKUs S1 and S2, S1@A on hand 10): the figures before and after, the
 * ledger rows and outbox rows each step writes (ids, kinds, deltas), idempotency by id, the
 * refusals, and injected failures in the middle of a transaction that must leave nothing
 * behind.
 */
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "check.h"
#include "codec.h"
#include "replica_harness.h"
#include "store.h"
#include "tallyd.h"

static struct rh *h;
static struct tallyd *d;

/* ---- figures ---- */

#define ON_HAND "snapshot + pending"
#define AVAILABLE "MAX(0, snapshot + pending - reserved - safety)"

/* What a refused or failed write must leave exactly as it was. */
struct world {
    int64_t movements, outbox, returns, pending, reserved, inspected;
};

static struct world world_now(void)
{
    struct world w = {
        .movements = rh_q64(h, "SELECT COUNT(*) FROM movements"),
        .outbox = rh_q64(h, "SELECT COUNT(*) FROM outbox"),
        .returns = rh_q64(h, "SELECT COUNT(*) FROM returns"),
        .pending = rh_q64(h, "SELECT SUM(pending) FROM stock"),
        .reserved = rh_q64(h, "SELECT SUM(reserved) FROM stock"),
        .inspected = rh_q64(h, "SELECT COUNT(*) FROM returns WHERE state = 'inspected'"),
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
    if (sqlite3_prepare_v2(store_db(d->store), "SELECT payload FROM outbox WHERE key = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return v;
    sqlite3_bind_text(s, 1, okey, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        if (msgpack_unpack_next(&u, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                                &off) == MSGPACK_UNPACK_SUCCESS)
            v = rh_iget(&u.data, key);
        msgpack_unpacked_destroy(&u);
    }
    sqlite3_finalize(s);
    return v;
}

/* ---- tests ---- */

static void test_receive(void)
{
    rh_open(h);
    rh_seed_standard(h);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 10);
    CHECK_EQ_INT(rh_stock_figure(h, "reserved", "S1", "A"), 0);
    CHECK_EQ_INT(rh_stock_figure(h, AVAILABLE, "S1", "A"), 10);

    const msgpack_object *r = rh_call(h, "returns.receive", "id=R1", "sku=S1", "warehouse=A",
                                      "qty=#3", "reason=wrong size", NULL);
    CHECK(r != NULL);
    CHECK_EQ_STR(rh_sget(r, "id"), "R1");
    CHECK_EQ_STR(rh_sget(r, "sku"), "S1");
    CHECK_EQ_STR(rh_sget(r, "warehouse"), "A");
    CHECK_EQ_INT(rh_iget(r, "qty"), 3);
    CHECK_EQ_STR(rh_sget(r, "state"), "received");
    CHECK_EQ_STR(rh_sget(r, "reason"), "wrong size");
    CHECK(rh_is_nil(r, "order_id") && rh_is_nil(r, "sellable") && rh_is_nil(r, "damaged"));
    CHECK(rh_is_nil(r, "note") && rh_is_nil(r, "inspected_at"));
    CHECK(rh_iget(r, "received_at") > 1600000000);
    CHECK(mp_map_get(r, "duplicate") && !rh_bget(r, "duplicate"));

    /* On hand again, but held out of sale until inspected. */
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 13);
    CHECK_EQ_INT(rh_stock_figure(h, "pending", "S1", "A"), 3);
    CHECK_EQ_INT(rh_stock_figure(h, "reserved", "S1", "A"), 3);
    CHECK_EQ_INT(rh_stock_figure(h, AVAILABLE, "S1", "A"), 10);
    r = rh_call(h, "stock.get", "sku=S1", NULL);
    CHECK(r && rh_iget(r, "marketplace_available") == 10);

    /* The ledger and the outbox: one 'return' movement of +3 under the return's id. */
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE id = 'R1'"), 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT delta FROM movements WHERE id = 'R1' AND kind = 'return'"), 3);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE key = 'R1' AND target = 'wh:A'"
                           " AND entity = 'S1' AND kind = 'movement'"),
                 1);
    CHECK_EQ_INT(payload_int("R1", "delta"), 3);
    CHECK_EQ_INT(payload_int("R1", "qty"), 3);

    /* The same call again: the same return, nothing applied twice. */
    struct world w = world_now();
    r = rh_call(h, "returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3",
                "reason=wrong size", NULL);
    CHECK(r && rh_bget(r, "duplicate"));
    CHECK_EQ_STR(rh_sget(r, "id"), "R1");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 13);

    /* The same id with different content. */
    CHECK(rh_call(h, "returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#4",
                  "reason=wrong size", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");
    CHECK(rh_call(h, "returns.receive", "id=R1", "sku=S1", "warehouse=B", "qty=#3",
                  "reason=wrong size", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");
    CHECK(rh_call(h, "returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");
    CHECK(world_eq(w, world_now()));

    /* An id a movement already has is not a return's. */
    CHECK(
        rh_call(h, "stock.move", "id=M1", "kind=return", "sku=S1", "warehouse=A", "qty=#1", NULL));
    w = world_now();
    CHECK(rh_call(h, "returns.receive", "id=M1", "sku=S1", "warehouse=A", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");
    CHECK(world_eq(w, world_now()));

    /* Orders: optional, but must exist when given. */
    CHECK(rh_call(h, "returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#1", "order_id=O404",
                  NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "not_found");
    CHECK(world_eq(w, world_now()));
    RH_EXEC(h, "INSERT INTO orders(order_id, status, created_at, updated_at, country, currency)"
               " VALUES('O1', 'FINISH', 1700000000, 1700000000, 'ES', 'EUR')");
    r = rh_call(h, "returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#1", "order_id=O1",
                NULL);
    CHECK(r && !rh_bget(r, "duplicate"));
    CHECK_EQ_STR(rh_sget(r, "order_id"), "O1");
    CHECK_EQ_INT(rh_q64(h, "SELECT order_ref FROM returns WHERE id = 'R2'"),
                 rh_q64(h, "SELECT id FROM orders WHERE order_id = 'O1'"));
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE id = 'R2' AND ref = 'O1'"), 1);
    r = rh_call(h, "returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#1", "order_id=O1",
                NULL);
    CHECK(r && rh_bget(r, "duplicate"));
    CHECK(rh_call(h, "returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");

    /* Without an id tallyd makes one, used for the movement too. */
    r = rh_call(h, "returns.receive", "sku=S2", "warehouse=B", "qty=#2", NULL);
    CHECK(r != NULL);
    const char *gen = rh_sget(r, "id");
    CHECK(gen && strlen(gen) > 0);
    char genid[80];
    snprintf(genid, sizeof genid, "%s", gen ? gen : "");
    CHECK_EQ_INT(rh_q64(h, "SELECT delta FROM movements WHERE id = '%s'", genid), 2);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S2", "B"), 2); /* the stock row is created */
    CHECK_EQ_INT(rh_stock_figure(h, "reserved", "S2", "B"), 2);
    CHECK_EQ_INT(rh_stock_figure(h, AVAILABLE, "S2", "B"), 0);

    /* Refusals change nothing. */
    w = world_now();
    CHECK(rh_call(h, "returns.receive", "sku=S9", "warehouse=A", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "not_found");
    CHECK(rh_call(h, "returns.receive", "sku=S1", "warehouse=Z", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "not_found");
    CHECK(rh_call(h, "returns.receive", "sku=S1", "warehouse=A", "qty=#0", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.receive", "sku=S1", "warehouse=A", "qty=#-2", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.receive", "sku=S1", "warehouse=A", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.receive", "id=has space", "sku=S1", "warehouse=A", "qty=#1", NULL) ==
          NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    /* 56 bytes: "<id>:writeoff" would not be an id any more. */
    CHECK(rh_call(h, "returns.receive",
                  "id=12345678901234567890123456789012345678901234567890123456", "sku=S1",
                  "warehouse=A", "qty=#1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.receive",
                  "id=1234567890123456789012345678901234567890123456789012345", "sku=S1",
                  "warehouse=A", "qty=#1", NULL) != NULL);
    w.movements++, w.outbox++, w.returns++, w.pending++, w.reserved++;
    CHECK(world_eq(w, world_now()));
}

static void test_inspect(void)
{
    rh_open(h);
    rh_seed_standard(h);
    CHECK(rh_call(h, "returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3", NULL));
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 13);
    CHECK_EQ_INT(rh_stock_figure(h, "reserved", "S1", "A"), 3);

    /* Sums that do not add up, unknown returns: refused, nothing changed. */
    struct world w = world_now();
    CHECK(rh_call(h, "returns.inspect", "id=R1", "sellable=#2", "damaged=#2", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.inspect", "id=R1", "sellable=#1", "damaged=#1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.inspect", "id=R1", "sellable=#-1", "damaged=#4", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.inspect", "id=R1", "sellable=#3", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.inspect", "id=R9", "sellable=#3", "damaged=#0", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "not_found");
    CHECK(world_eq(w, world_now()));

    /* 1 sellable, 2 damaged: the hold goes, the damaged units are written off. */
    const msgpack_object *r = rh_call(h, "returns.inspect", "id=R1", "sellable=#1", "damaged=#2",
                                      "note=box crushed", NULL);
    CHECK(r != NULL);
    CHECK_EQ_STR(rh_sget(r, "state"), "inspected");
    CHECK_EQ_INT(rh_iget(r, "sellable"), 1);
    CHECK_EQ_INT(rh_iget(r, "damaged"), 2);
    CHECK_EQ_STR(rh_sget(r, "note"), "box crushed");
    CHECK(rh_iget(r, "inspected_at") >= rh_iget(r, "received_at"));
    CHECK(mp_map_get(r, "duplicate") == NULL);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 11);
    CHECK_EQ_INT(rh_stock_figure(h, "reserved", "S1", "A"), 0);
    CHECK_EQ_INT(rh_stock_figure(h, AVAILABLE, "S1", "A"), 11);
    CHECK_EQ_INT(rh_q64(h,
                        "SELECT delta FROM movements WHERE id = 'R1:writeoff' AND kind = 'adjust'"
                        " AND forced = 1 AND reason = 'write-off: damaged return'"),
                 -2);
    CHECK_EQ_INT(rh_q64(h,
                        "SELECT COUNT(*) FROM outbox WHERE key = 'R1:writeoff' AND target = 'wh:A'"
                        " AND entity = 'S1'"),
                 1);
    CHECK_EQ_INT(payload_int("R1:writeoff", "delta"), -2);
    r = rh_call(h, "stock.get", "sku=S1", NULL);
    CHECK(r && rh_iget(r, "marketplace_available") == 11);

    /* Twice: refused, nothing changed. */
    w = world_now();
    CHECK(rh_call(h, "returns.inspect", "id=R1", "sellable=#1", "damaged=#2", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE id = 'R1:writeoff'"), 1);

    /* All sellable: no write-off at all. */
    CHECK(rh_call(h, "returns.receive", "id=R2", "sku=S1", "warehouse=A", "qty=#2", NULL));
    CHECK_EQ_INT(rh_stock_figure(h, AVAILABLE, "S1", "A"), 11);
    CHECK(rh_call(h, "returns.inspect", "id=R2", "sellable=#2", "damaged=#0", NULL));
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE id LIKE 'R2%%'"), 1);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 13);
    CHECK_EQ_INT(rh_stock_figure(h, AVAILABLE, "S1", "A"), 13);

    /* The write-off is forced: the local view may be behind (here the returned units were
     * picked meanwhile), yet the damaged units are written off. */
    CHECK(rh_call(h, "returns.receive", "id=R3", "sku=S2", "warehouse=B", "qty=#5", NULL));
    CHECK(rh_call(h, "stock.move", "kind=pick", "sku=S2", "warehouse=B", "qty=#5", NULL));
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S2", "B"), 0);
    CHECK(rh_call(h, "returns.inspect", "id=R3", "sellable=#0", "damaged=#5", NULL));
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S2", "B"), -5);
    CHECK_EQ_INT(rh_stock_figure(h, "reserved", "S2", "B"), 0);
    CHECK_EQ_INT(rh_stock_figure(h, AVAILABLE, "S2", "B"), 0);

    /* A movement already recorded under the write-off id with other content: a conflict, and
     * the return stays held. */
    CHECK(rh_call(h, "returns.receive", "id=R4", "sku=S1", "warehouse=A", "qty=#2", NULL));
    CHECK(rh_call(h, "stock.move", "id=R4:writeoff", "kind=adjust", "sku=S1", "warehouse=A",
                  "qty=#-1", "reason=by hand", NULL));
    w = world_now();
    CHECK(rh_call(h, "returns.inspect", "id=R4", "sellable=#0", "damaged=#2", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM returns WHERE id = 'R4' AND state = 'received'"),
                 1);
}

/* Failures injected after the movement is written, inside the transaction: the whole write
 * rolls back. */
static void test_rollback(void)
{
    rh_open(h);
    rh_seed_standard(h);
    RH_EXEC(h, "CREATE TEMP TRIGGER no_returns BEFORE INSERT ON returns"
               " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    struct world w = world_now();
    CHECK(rh_call(h, "returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "storage");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE id = 'R1'"), 0);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE key = 'R1'"), 0);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 10);
    RH_EXEC(h, "DROP TRIGGER temp.no_returns");

    CHECK(rh_call(h, "returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#3", NULL));
    RH_EXEC(h, "CREATE TEMP TRIGGER no_inspect BEFORE UPDATE ON returns"
               " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    w = world_now();
    CHECK(rh_call(h, "returns.inspect", "id=R1", "sellable=#1", "damaged=#2", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "storage");
    CHECK(world_eq(w, world_now()));
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE id = 'R1:writeoff'"), 0);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 13);
    CHECK_EQ_INT(rh_stock_figure(h, "reserved", "S1", "A"), 3);
    RH_EXEC(h, "DROP TRIGGER temp.no_inspect");

    /* Once the fault is gone the same calls go through. */
    CHECK(rh_call(h, "returns.inspect", "id=R1", "sellable=#1", "damaged=#2", NULL));
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 11);
}

static void test_list(void)
{
    rh_open(h);
    rh_seed_standard(h);
    CHECK(rh_call(h, "returns.receive", "id=R3", "sku=S1", "warehouse=A", "qty=#1", NULL));
    CHECK(rh_call(h, "returns.receive", "id=R1", "sku=S1", "warehouse=A", "qty=#2", NULL));
    CHECK(rh_call(h, "returns.receive", "id=R2", "sku=S2", "warehouse=B", "qty=#3", NULL));
    CHECK(rh_call(h, "returns.inspect", "id=R2", "sellable=#3", "damaged=#0", NULL));

    const msgpack_object *r = rh_call(h, "returns.list", NULL);
    CHECK(r != NULL);
    const msgpack_object *items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 3);
    if (items && items->via.array.size == 3) {
        CHECK_EQ_STR(rh_sget(&items->via.array.ptr[0], "id"), "R1");
        CHECK_EQ_STR(rh_sget(&items->via.array.ptr[1], "id"), "R2");
        CHECK_EQ_STR(rh_sget(&items->via.array.ptr[2], "id"), "R3");
        CHECK_EQ_STR(rh_sget(&items->via.array.ptr[1], "state"), "inspected");
        CHECK_EQ_INT(rh_iget(&items->via.array.ptr[1], "sellable"), 3);
        CHECK_EQ_STR(rh_sget(&items->via.array.ptr[1], "warehouse"), "B");
        CHECK_EQ_INT(items->via.array.ptr[0].via.map.size, 12);
    }
    CHECK(r && rh_is_nil(r, "next_cursor"));

    r = rh_call(h, "returns.list", "state=received", NULL);
    items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->via.array.size == 2);
    if (items && items->via.array.size == 2) {
        CHECK_EQ_STR(rh_sget(&items->via.array.ptr[0], "id"), "R1");
        CHECK_EQ_STR(rh_sget(&items->via.array.ptr[1], "id"), "R3");
    }
    r = rh_call(h, "returns.list", "state=inspected", NULL);
    items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->via.array.size == 1);

    /* Paging: one per page, in id order, until next_cursor is nil. */
    char cursor[80] = "";
    const char *seen[3] = {"R1", "R2", "R3"};
    for (int i = 0; i < 3; i++) {
        char arg[100];
        snprintf(arg, sizeof arg, "cursor=%s", cursor);
        r = i == 0 ? rh_call(h, "returns.list", "limit=#1", NULL)
                   : rh_call(h, "returns.list", "limit=#1", arg, NULL);
        items = r ? mp_map_get(r, "items") : NULL;
        CHECK(items && items->via.array.size == 1);
        if (items && items->via.array.size == 1)
            CHECK_EQ_STR(rh_sget(&items->via.array.ptr[0], "id"), seen[i]);
        const char *next = r ? rh_sget(r, "next_cursor") : NULL;
        if (i < 2)
            CHECK(next != NULL);
        else
            CHECK(r && rh_is_nil(r, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
    }

    CHECK(rh_call(h, "returns.list", "state=lost", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.list", "cursor=a b", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "returns.list", "limit=#0", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
}

int main(void)
{
    h = rh_new("tally-returns");
    if (!h) {
        perror("mkdtemp");
        return 1;
    }
    d = rh_daemon(h);
    test_receive();
    test_inspect();
    test_rollback();
    test_list();

    rh_free(h);
    return check_result("test_returns");
}
