/*
 * The outbox retention (daemon/retain.c) on a replica holding done and discarded rows of every
 * key family, old (past the retention) and new:
 *   - a movement, a transfer into a third-party warehouse (its origin leg and its inbound
 *     notice), an inbound notice made by hand, a discarded notice, an order sent to an
 *     outbound warehouse, shipped and uploaded, then finished (its "ob:" and "ful:" rows), and
 *     an order still under way there (its "ob:" row);
 *   - after a pass: the old guarded rows gone, the young ones and the unguarded old ones kept
 *     (their payload dropped), the counters equal to COUNT(*);
 *   - then each key retried (the same movement id, the same transfer, the same notice, the
 *     fulfilment pass over the same orders, the warehouse's repeated "shipped"): no new outbox
 *     row, nothing to send upstream again;
 *   - the transfer's leg kept while its notice waits, pruned once the notice is sent;
 *   - the guard matters: the under-way order's row deleted by hand is created again by the pass;
 *   - a replica of schema 18 upgrades (migration 19's index) and keeps its rows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <sqlite3.h>

#include "check.h"
#include "codec.h"
#include "fulfil.h"
#include "replica_harness.h"
#include "retain.h"
#include "store.h"
#include "tallyd.h"
#include "tally/protocol.h"

#define DAY 86400

static struct rh *h;
static struct tallyd *d;

static int64_t rows(const char *where)
{
    return rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE %s", where);
}

/* The outbox counters (migration 16) equal what they count. */
static void check_counters(void)
{
    CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'outbox_pending'"),
                 rows("state IN ('pending', 'inflight')"));
    CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'outbox_held'"),
                 rows("state = 'held'"));
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM counters c WHERE c.name LIKE 'outbox_pending:%%'"
                           " AND c.n <> (SELECT COUNT(*) FROM outbox o WHERE o.target ="
                           " substr(c.name, 16) AND o.state IN ('pending', 'inflight'))"),
                 0);
}

/* A row answered done by its upstream, as the sync engine records it, with its hook. */
static void done(const char *key, const char *target, const char *kind, const char *entity,
                 bool fulfil_hook)
{
    int r = store_begin(d->store);
    CHECK_EQ_INT(r, 0);
    RH_EXEC(h,
            "UPDATE outbox SET state = 'done', done_at = strftime('%%s','now'),"
            " attempts = attempts + 1 WHERE key = '%s'",
            key);
    CHECK_EQ_INT(sqlite3_changes(store_db(d->store)), 1);
    if (fulfil_hook)
        r = fulfil_outbox_result(d, target, kind, key, entity, true, NULL);
    if (r == 0)
        r = store_commit(d->store);
    else
        store_rollback(d->store);
    CHECK_EQ_INT(r, 0);
}

/* Takes a row's life `days` back in time (it was created and done then). */
static void age(const char *key, int days)
{
    RH_EXEC(h,
            "UPDATE outbox SET created_at = created_at - %d, done_at = done_at - %d,"
            " sent_at = sent_at - %d WHERE key = '%s'",
            days * DAY, days * DAY, days * DAY, key);
}

static void wh_status(const char *wh, const char *oid, const char *status, const char *carrier,
                      const char *tracking)
{
    int r = store_begin(d->store);
    if (r == 0)
        r = fulfil_outbound_status(d, rh_wh_id(h, wh), oid, status, carrier, tracking, NULL);
    if (r == 0)
        r = store_commit(d->store);
    else
        store_rollback(d->store);
    CHECK_EQ_INT(r, 0);
}

/* The fulfilment pass over every order. B's configuration is left out meanwhile: a configured
 * outbound warehouse whose orders were never read holds every decision (coord.h). */
static void pass(void)
{
    unsigned nwh = d->cfg.nwh;
    d->cfg.nwh = 0;
    RH_EXEC(h, "UPDATE orders SET fdirty = 1");
    CHECK(fulfil_pass(d, store_now()) >= 0);
    d->cfg.nwh = nwh;
}

static void add_order(const char *oid)
{
    int64_t now = store_now();
    RH_EXEC(h,
            "INSERT INTO orders(order_id, status, created_at, updated_at, country, currency,"
            " total_minor, service, buyer_name, address, city, postcode, phone)"
            " VALUES('%s', 'WAIT_SELLER_SEND_GOODS', %lld, %lld, 'ES', 'EUR', 5000, 'DHL',"
            " 'Ana Garcia', 'Calle Mayor 1', 'Madrid', '28001', '+34600000000')",
            oid, (long long)now, (long long)now);
    RH_EXEC(h,
            "INSERT INTO order_lines(order_ref, sku, qty, price_minor) SELECT o.id, k.id, 1,"
            " 1000 FROM orders o, skus k WHERE o.order_id = '%s' AND k.code = 'S2'",
            oid);
}

static const msgpack_object *notice(const char *id)
{
    msgpack_packer *pk = rh_req_begin(h, "inbound.create", 3);
    mp_pack_kv_str(pk, "id", id);
    mp_pack_kv_str(pk, "warehouse", "B");
    mp_pack_key(pk, "lines");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    mp_pack_kv_str(pk, "sku", "S2");
    mp_pack_kv_int(pk, "qty", 4);
    return rh_req_send(h);
}

static void fixture(void)
{
    rh_open(h);
    rh_seed_standard(h); /* A, B; S1, S2; S1@A = 10 */
    d->cfg.coordinator = true;
    d->cfg.nwh = 0;
    struct wh_config *w = &d->cfg.wh[d->cfg.nwh++];
    memset(w, 0, sizeof *w);
    snprintf(w->code, sizeof w->code, "B");
    w->kind = WH_KIND_GOODCANG;
    snprintf(w->fulfilment, sizeof w->fulfilment, "outbound");
    RH_EXEC(h, "INSERT INTO warehouses(code, name, country, created_at, fulfilment)"
               " VALUES('ES-OB', 'Outbound', 'ES', 0, 'outbound')");
    RH_EXEC(h, "INSERT INTO stock(sku, warehouse, snapshot, safety) SELECT k.id, w.id, 20, 0"
               " FROM skus k, warehouses w WHERE k.code = 'S2' AND w.code = 'ES-OB'");
}

static int64_t prune(struct retain_counts *n)
{
    memset(n, 0, sizeof *n);
    CHECK_EQ_INT(retain_run(d->store, store_now() - 14 * DAY, n), 0);
    return n->deleted;
}

static void test_every_family(void)
{
    fixture();
    struct retain_counts n;

    /* movements: one old, one young */
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=m-old", "sku=S1", "warehouse=A", "qty=#2",
                  NULL));
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=m-new", "sku=S1", "warehouse=A", "qty=#1",
                  NULL));
    done("m-old", "wh:A", "movement", "S1", false);
    done("m-new", "wh:A", "movement", "S1", false);
    age("m-old", 30);
    /* a transfer into B (keeps its own stock): A's leg and B's notice; the leg old and done,
     * the notice still waiting */
    const msgpack_object *r = rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=A",
                                      "to=B", "qty=#3", "id=t-1", NULL);
    CHECK(r && !strcmp(rh_sget(r, "inbound_notice") ? rh_sget(r, "inbound_notice") : "", "in-t-1"));
    done("t-1", "wh:A", "movement", "S1", false);
    age("t-1", 30);
    /* a notice made by hand, sent long ago; another given up long ago */
    CHECK(notice("in-x") != NULL);
    done("in:B:in-x", "wh:B", "inbound", "in-x", false);
    RH_EXEC(h, "UPDATE inbound_notices SET state = 'sent' WHERE id = 'in-x'");
    age("in:B:in-x", 30);
    CHECK(notice("in-d") != NULL);
    RH_EXEC(h, "UPDATE outbox SET state = 'discarded', done_at = strftime('%%s','now')"
               " WHERE key = 'in:B:in-d'");
    RH_EXEC(h, "UPDATE inbound_notices SET state = 'discarded' WHERE id = 'in-d'");
    age("in:B:in-d", 30);

    /* an order at the outbound warehouse: sent, shipped, uploaded, finished, long ago */
    add_order("Z1");
    pass();
    CHECK_EQ_STR(rh_qtext(h, "SELECT fstate FROM orders WHERE order_id = 'Z1'"), "allocated");
    CHECK_EQ_INT(rows("key = 'ob:ES-OB:Z1'"), 1);
    done("ob:ES-OB:Z1", "wh:ES-OB", "outbound", "Z1", true);
    wh_status("ES-OB", "Z1", "shipped", "SEUR", "SE123");
    CHECK_EQ_INT(rows("key = 'ful:Z1@ES-OB'"), 1);
    done("ful:Z1@ES-OB", "mp", "fulfil", "Z1", true);
    RH_EXEC(h, "UPDATE orders SET status = 'FINISH' WHERE order_id = 'Z1'");
    pass();
    CHECK_EQ_STR(rh_qtext(h, "SELECT fstate FROM orders WHERE order_id = 'Z1'"), "finished");
    age("ob:ES-OB:Z1", 30);
    age("ful:Z1@ES-OB", 30);
    RH_EXEC(h, "UPDATE orders SET finished_at = finished_at - %d WHERE order_id = 'Z1'", 20 * DAY);
    /* an order still under way there: its row done long ago */
    add_order("Z2");
    pass();
    done("ob:ES-OB:Z2", "wh:ES-OB", "outbound", "Z2", true);
    CHECK_EQ_STR(rh_qtext(h, "SELECT fstate FROM orders WHERE order_id = 'Z2'"), "sent");
    age("ob:ES-OB:Z2", 30);
    /* a row still to send, old: never touched */
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=m-wait", "sku=S1", "warehouse=A", "qty=#1",
                  NULL));
    age("m-wait", 30);
    int64_t total = rows("1");
    check_counters();

    CHECK_EQ_INT(prune(&n), 5);
    /* gone: the guarded old ones (Z1 finished before the cutoff, its allocations kept) */
    CHECK_EQ_INT(rows("key IN ('m-old', 'in:B:in-x', 'in:B:in-d', 'ful:Z1@ES-OB',"
                      " 'ob:ES-OB:Z1')"),
                 0);
    CHECK_EQ_INT(n.stripped, 2);
    /* kept: the young one, the one still to send, the leg whose notice waits, the order
     * under way; the old kept ones without their payload */
    CHECK_EQ_INT(rows("key IN ('m-new', 'm-wait', 't-1', 'in:B:in-t-1', 'ob:ES-OB:Z2')"), 5);
    CHECK_EQ_INT(rows("key = 't-1' AND payload = x'80'"), 1);
    CHECK_EQ_INT(rows("key = 'ob:ES-OB:Z2' AND payload = x'80'"), 1);
    CHECK_EQ_INT(rows("key = 'm-new' AND length(payload) > 1"), 1);
    CHECK_EQ_INT(rows("key = 'm-wait' AND length(payload) > 1 AND state = 'pending'"), 1);
    CHECK_EQ_INT(rows("1"), total - n.deleted);
    check_counters();
    /* a second pass finds nothing more */
    CHECK_EQ_INT(prune(&n), 0);
    CHECK_EQ_INT(n.stripped, 0);

    /* every key retried: no new row, nothing to send again */
    int64_t before = rows("1"), moves = rh_q64(h, "SELECT COUNT(*) FROM movements");
    r = rh_call(h, "stock.move", "kind=receive", "id=m-old", "sku=S1", "warehouse=A", "qty=#2",
                NULL);
    CHECK(r && rh_bget(r, "duplicate"));
    r = rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=A", "to=B", "qty=#3",
                "id=t-1", NULL);
    CHECK(r && rh_bget(r, "duplicate"));
    r = notice("in-x");
    CHECK(r && rh_bget(r, "duplicate"));
    r = notice("in-d");
    CHECK(r && rh_bget(r, "duplicate"));
    pass();
    wh_status("ES-OB", "Z1", "shipped", "SEUR", "SE123");
    CHECK_EQ_INT(rows("1"), before);
    CHECK_EQ_INT(rows("key IN ('m-old', 'in:B:in-x', 'in:B:in-d', 'ful:Z1@ES-OB',"
                      " 'ob:ES-OB:Z1')"),
                 0);
    CHECK_EQ_INT(rows("key = 'ob:ES-OB:Z2'"), 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements"), moves);
    CHECK_EQ_INT(rows("state IN ('pending', 'inflight') AND key <> 'm-wait'"), 1); /* in-t-1 */
    check_counters();

    /* the leg goes once its notice is sent (and old) */
    done("in:B:in-t-1", "wh:B", "inbound", "in-t-1", false);
    RH_EXEC(h, "UPDATE inbound_notices SET state = 'sent' WHERE id = 'in-t-1'");
    age("in:B:in-t-1", 30);
    CHECK_EQ_INT(prune(&n), 2);
    CHECK_EQ_INT(rows("key IN ('t-1', 'in:B:in-t-1')"), 0);
    r = rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=A", "to=B", "qty=#3",
                "id=t-1", NULL);
    CHECK(r && rh_bget(r, "duplicate"));
    CHECK_EQ_INT(rows("key IN ('t-1', 'in:B:in-t-1')"), 0);
    check_counters();

    /* The guard matters: the under-way order's row, deleted without it, is made again by the
     * pass (a second outbound order to the warehouse). */
    RH_EXEC(h, "DELETE FROM outbox WHERE key = 'ob:ES-OB:Z2'");
    RH_EXEC(h, "UPDATE orders SET fstate = 'allocated' WHERE order_id = 'Z2'");
    pass();
    CHECK_EQ_INT(rows("key = 'ob:ES-OB:Z2' AND state = 'pending'"), 1);
}

/* A replica of schema 18 with done rows upgrades to 19 and is pruned alike. */
static void test_upgrade(void)
{
    fixture();
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=u-1", "sku=S1", "warehouse=A", "qty=#2",
                  NULL));
    done("u-1", "wh:A", "movement", "S1", false);
    age("u-1", 30);
    char path[512];
    snprintf(path, sizeof path, "%s", store_path(d->store));
    store_close(d->store);
    d->store = NULL;
    CHECK_EQ_INT(rh_rewind_schema(path, 18), 0);
    char err[256];
    CHECK_EQ_INT(store_open(path, false, &d->store, err, sizeof err), 0);
    if (!d->store)
        return;
    CHECK_EQ_INT(store_schema_version(d->store), schema_latest());
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'inbound_by_ref'"), 1);
    CHECK_EQ_INT(rows("key = 'u-1' AND state = 'done'"), 1);
    struct retain_counts n;
    CHECK_EQ_INT(prune(&n), 1);
    CHECK_EQ_INT(rows("key = 'u-1'"), 0);
    check_counters();
}

int main(void)
{
    h = rh_new("tally-retain");
    if (!h) {
        perror("mkdtemp");
        return 1;
    }
    d = rh_daemon(h);
    test_every_family();
    test_upgrade();
    rh_free(h);
    printf("test_retain: %d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
