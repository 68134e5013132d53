/*
 * whfeed_stock_batch (whfeed.h): a batch of a page's rows leaves the replica exactly as the same
 * rows applied one by one with whfeed_stock. Two replicas from the same seed take the same
 * random rows, one in batches, one row by row, and are compared after every batch: stock rows
 * (every column), the SKUs the rows created (id order, product, title), the counters and the
 * title queue. The rows mix what the batch statements must get right: SKUs the catalog knows,
 * SKUs new to the replica (placeholders), a SKU twice in one batch (the later row wins at an
 * equal version), versions older than the figure held (not applied), inbound not reported
 * (the stored figure stays), short batches, and transactions where the one-statement path is
 * closed (an acknowledged movement waits to settle; a publishing station). Also: version 0,
 * codes that differ only by case, the longest code with quotes and LIKE wildcards, and a
 * catalog import between pages (a placeholder listed under a product, a SKU the catalog brings
 * before a row made its placeholder).
 *
 * And the placeholders made ahead of a page's slices (whfeed_skus_begin, _batch, _end: on a
 * second connection whose triggers are off, doing the work of the triggers on an insert into
 * skus once per transaction): before half the full batches of the batched replica, the same end
 * state. With a trigger on skus the set path was not written for, it makes nothing (the
 * triggers would not run): the end state is the same again.
 *
 * And the SKU ids the writer keeps (whfeed_ids): the placeholders made ahead set their rows'
 * ids, kept once the transaction committed; a third of the batched replica's batches come with
 * no id of their own, so their ids come from what was kept. The replicas are equal all the
 * same, and rows were written by id. Ids of a transaction rolled back are forgotten (another
 * SKU may take them next): rows are never written to the SKU that took them. The store of ids
 * keeps the last WHFEED_IDS_GEN to 2 x WHFEED_IDS_GEN codes, no code longer than
 * WHFEED_IDS_CODE_MAX, no id <= 0.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "replica_harness.h"
#include "stock.h"
#include "store.h"
#include "tallyd.h"
#include "upstream.h"
#include "whfeed.h"

static uint64_t rng = 88172645463325252ULL;
static unsigned rnd(unsigned n)
{
    return check_rnd(&rng, n);
}

/* The replica's state the rows can touch, as one string. */
static char *dump(struct rh *h)
{
    const char *q[] = {
        "SELECT group_concat(x, ';') FROM (SELECT k.code || '@' || w.code || '=' || st.snapshot"
        " || '/' || st.pending || '/' || st.upstream_version || '/' || COALESCE(st.as_of, 'n')"
        " || '/' || COALESCE(st.inbound, 'n') AS x FROM stock st JOIN skus k ON k.id = st.sku"
        " JOIN warehouses w ON w.id = st.warehouse ORDER BY k.code, w.code)",
        "SELECT group_concat(x, ';') FROM (SELECT id || ':' || code || ':' || product || ':'"
        " || title || ':' || price_minor || currency AS x FROM skus ORDER BY id)",
        "SELECT group_concat(name || '=' || n, ';') FROM counters",
        "SELECT group_concat(id, ',') FROM (SELECT id FROM sku_titles_todo ORDER BY id)",
    };
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    out[0] = 0;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        const char *t = rh_qtext(h, "%s", q[i]);
        size_t n = strlen(t);
        if (len + n + 2 >= cap)
            break;
        memcpy(out + len, t, n);
        len += n;
        out[len++] = '|';
        out[len] = 0;
    }
    return out;
}

/* The placeholders of a full batch's SKUs made ahead on x, a connection to h's replica whose
 * triggers are off, in a transaction of its own; *made: how many (-1: the set path refused). */
static int make_ahead(struct store *x, const struct whfeed_row *rows, int64_t *made,
                      struct whfeed_ids *ids)
{
    if (store_begin(x) != 0)
        return -1;
    struct whfeed_skus s;
    int r = whfeed_skus_begin(x, &s);
    *made = r == 1 ? -1 : 0;
    if (r == 1) {
        store_rollback(x);
        return 0;
    }
    int m = 0;
    if (r == 0)
        r = whfeed_skus_batch(x, &s, rows, ids, &m);
    if (r == 0)
        r = whfeed_skus_end(x, &s);
    if (r == 0)
        r = store_commit(x);
    else
        store_rollback(x);
    whfeed_ids_end(ids, r == 0);
    *made = s.made;
    return r;
}

/* One page transaction's rows applied to replica h: batched or row by row. */
static int apply(struct rh *h, struct upstream *u, struct pull_page *pg, int64_t wh,
                 const struct whfeed_row *rows, int n, bool batched)
{
    struct store *st = rh_daemon(h)->store;
    u->d = rh_daemon(h);
    if (store_begin(st) != 0)
        return -1;
    pg->plain = whfeed_plain(st);
    int r = 0;
    if (batched) {
        r = whfeed_stock_batch(u, st, wh, rows, n, pg);
    } else {
        for (int i = 0; i < n && r == 0; i++)
            r = whfeed_stock(u, st, wh, rows[i].sku, rows[i].on_hand, rows[i].inbound,
                             rows[i].version, rows[i].at, false, pg);
    }
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    whfeed_ids_end(pg->ids, r == 0);
    return r;
}

static int64_t run(unsigned seed, bool publish, bool extra_trigger)
{
    rng = 88172645463325252ULL ^ ((uint64_t)seed * 0x9E3779B97F4A7C15ULL);
    struct rh *a = rh_new("whfeed-a"), *b = rh_new("whfeed-b");
    CHECK(a && b);
    if (!a || !b)
        return 0;
    rh_open(a);
    rh_open(b);
    rh_seed_standard(a);
    rh_seed_standard(b);
    store_set_publish(rh_daemon(a)->store, publish);
    store_set_publish(rh_daemon(b)->store, publish);
    if (extra_trigger) { /* one the set path does not know: it must leave the SKUs alone */
        const char *sql = "CREATE TRIGGER test_skus_extra AFTER INSERT ON skus BEGIN"
                          " UPDATE counters SET n = n + 1 WHERE name = 'warehouses'; END";
        RH_EXEC(a, "%s", sql);
        RH_EXEC(b, "%s", sql);
    }
    /* a's second connection, triggers off, for the placeholders made ahead */
    struct store *x = NULL;
    char err[256];
    CHECK_EQ_INT(
        store_open_extra(store_path(rh_daemon(a)->store), true, false, &x, err, sizeof err), 0);
    CHECK(x && store_set_triggers(x, false) == 0);
    int64_t ahead = 0, refused = 0;
    int64_t wh[2] = {rh_q64(a, "SELECT id FROM warehouses WHERE code = 'A'"),
                     rh_q64(a, "SELECT id FROM warehouses WHERE code = 'B'")};
    CHECK_EQ_INT(wh[0], rh_q64(b, "SELECT id FROM warehouses WHERE code = 'A'"));
    struct upstream ua = {0}, ub = {0};
    snprintf(ua.code, sizeof ua.code, "A");
    snprintf(ub.code, sizeof ub.code, "A");
    struct pull_page pa = {0}, pb = {0};
    struct whfeed_ids *ids = whfeed_ids_new();
    CHECK(ids != NULL);
    pa.ids = ids;
    int64_t at = 1700000000;
    int mismatches = 0, batches = 0, full = 0;
    for (int round = 0; round < 60; round++) {
        struct whfeed_row rows[WHFEED_BATCH];
        /* mostly full batches (the batch statements), some short (row by row) */
        int n = rnd(5) == 0 ? 1 + (int)rnd(WHFEED_BATCH) : WHFEED_BATCH;
        /* a pool that grows, so early rounds make placeholders and later ones update */
        unsigned pool = 40 + (unsigned)round * 8;
        /* Half the rounds are fresh, as an initial sync is: every version above any held, so
         * a full batch is applied by the batch statements alone (their figures are what the
         * replica keeps, nothing row by row re-applies them); the others are stale-heavy. */
        bool fresh = rnd(2) == 0;
        for (int i = 0; i < n; i++) {
            struct whfeed_row *w = &rows[i];
            unsigned k = rnd(pool + 2);
            if (k < 2)
                snprintf(w->sku, sizeof w->sku, "S%u", k + 1); /* in the catalog */
            else if (rnd(16) == 0) /* another SKU than N%04u: codes compare case-sensitively */
                snprintf(w->sku, sizeof w->sku, "n%04u", k);
            else if (rnd(32) == 0) /* the longest code (TALLY_MAX_ID_LEN), quotes and all */
                snprintf(w->sku, sizeof w->sku, "L'\"%%_%059u", k);
            else
                snprintf(w->sku, sizeof w->sku, "N%04u", k);
            int dup = i > 0 && rnd(10) == 0 ? (int)rnd((unsigned)i) : -1;
            if (dup >= 0) /* the same SKU again in this batch */
                memcpy(w->sku, rows[dup].sku, sizeof w->sku);
            w->on_hand = (int64_t)rnd(500) - 20;
            w->inbound = rnd(3) == 0 ? -1 : (int64_t)rnd(50);
            if (fresh) /* a repeated SKU at the same version: the later row wins */
                w->version = dup >= 0 ? rows[dup].version : 1000 * (round + 1) + i;
            else /* versions from a small range: equal and older ones are common */
                w->version = rnd(20) == 0 ? 0 : 1 + (int64_t)rnd((unsigned)round + 3);
            w->at = at++;
        }
        int64_t w = wh[rnd(2)];
        /* now and then an acknowledged movement waits to settle: the plain path is closed */
        if (rnd(8) == 0) {
            const char *sql =
                "INSERT INTO movements(id, kind, sku, warehouse, qty, delta,"
                " created_at, state, upstream_version) SELECT 'm%d', 'receive', id, %" PRId64
                ", 1, 1, 0, 'acked', 1000 FROM skus WHERE code = 'S1'";
            RH_EXEC(a, sql, round, w);
            RH_EXEC(b, sql, round, w);
        } else if (rnd(8) == 0) {
            RH_EXEC(a, "DELETE FROM movements WHERE state = 'acked'");
            RH_EXEC(b, "DELETE FROM movements WHERE state = 'acked'");
        }
        /* Between pages a catalog import lists a placeholder (another product and title) or
         * brings a SKU the rows will name before any row made its placeholder. */
        if (rnd(6) == 0) {
            const char *sql = "UPDATE skus SET product = (SELECT id FROM products WHERE"
                              " product_id = 'P1'), title = 'listed ' || code, price_minor = 5"
                              " WHERE code = 'N%04u'";
            unsigned k = 2 + rnd(pool);
            RH_EXEC(a, sql, k);
            RH_EXEC(b, sql, k);
        }
        if (rnd(6) == 0) {
            const char *sql = "INSERT OR IGNORE INTO skus(code, product, title, price_minor,"
                              " currency, updated_at) SELECT 'N%04u', id, 'new', 7, 'EUR', 0"
                              " FROM products WHERE product_id = 'P1'";
            unsigned k = 2 + rnd(pool + 40);
            RH_EXEC(a, sql, k);
            RH_EXEC(b, sql, k);
        }
        if (x && n == WHFEED_BATCH && (round & 1) == 0) { /* (not rnd: the rows stay as before) */
            int64_t made = 0;
            CHECK_EQ_INT(make_ahead(x, rows, &made, ids), 0);
            if (made < 0)
                refused++;
            else
                ahead += made;
        }

        CHECK_EQ_INT(apply(a, &ua, &pa, w, rows, n, true), 0);
        CHECK_EQ_INT(apply(b, &ub, &pb, w, rows, n, false), 0);
        batches++;
        full += n == WHFEED_BATCH;
        char *da = dump(a), *db = dump(b);
        if (strcmp(da, db) != 0) {
            if (mismatches++ == 0)
                fprintf(stderr,
                        "seed %u round %d: batched and row by row differ:\n  %.600s\n  %.600s\n",
                        seed, round, da, db);
        }
        free(da);
        free(db);
    }
    CHECK_EQ_INT(mismatches, 0);
    /* The batch statements did apply rows on their own (not only followed by row by row),
     * and never where the one-statement path is closed (a publishing station). */
    if (publish)
        CHECK_EQ_INT(pa.batched, 0);
    else
        CHECK(pa.batched >= 5 * WHFEED_BATCH);
    /* (some by the SKUs' ids: main sums them over the seeds) */
    if (publish)
        CHECK_EQ_INT(pa.by_id, 0);
    whfeed_ids_free(ids);
    CHECK_EQ_INT(pb.batched, 0);
    /* placeholders were made ahead, or (a trigger the set path does not know) none ever */
    if (extra_trigger) {
        CHECK_EQ_INT(ahead, 0);
        CHECK(refused > 0);
    } else {
        CHECK(ahead > 50);
        CHECK_EQ_INT(refused, 0);
    }
    store_close(x);
    /* the rows did reach the replica: placeholders made, figures held */
    CHECK(rh_q64(a, "SELECT count(*) FROM skus WHERE code LIKE 'N%%'") > 100);
    CHECK(rh_q64(a, "SELECT count(*) FROM stock WHERE upstream_version > 0") > 100);
    printf("seed %u%s%s: %d batches (%d full; %" PRId64 " rows by the batch statements alone;"
           " %" PRId64 " of them by SKU id; %" PRId64 " placeholders made ahead), replicas equal"
           " after each\n",
           seed, publish ? " (publishing)" : "", extra_trigger ? " (a trigger unknown)" : "",
           batches, full, pa.batched, pa.by_id, ahead);
    rh_free(a);
    rh_free(b);
    return pa.by_id;
}

/* A replica with the standard seed and the product placeholders are listed under; NULL when
 * it cannot be had (said). */
static struct rh *seeded(const char *name)
{
    struct rh *a = rh_new(name);
    CHECK(a != NULL);
    if (!a)
        return NULL;
    rh_open(a);
    rh_seed_standard(a);
    RH_EXEC(a, "INSERT OR IGNORE INTO products(product_id, title, status, updated_at)"
               " VALUES('~unlisted', 'SKUs not (yet) in the marketplace catalog', 'unlisted', 0)");
    return a;
}

/* A replica whose largest SKU id is the largest rowid (9223372036854775807: restored, or
 * written by hand): SQLite then gives new rows free ids at random, below it, so "the ids above
 * the largest when the transaction began" are not the SKUs the transaction made. The triggers
 * queue each new SKU for the title index all the same; placeholders made ahead must leave
 * none unqueued (whfeed_skus_begin refuses there, as the catalog import's set path does), else
 * the title index never learns of them. */
static void top_id(void)
{
    struct rh *a = seeded("whfeed-top");
    if (!a)
        return;
    RH_EXEC(a, "INSERT INTO skus(id, code, product, title, price_minor, currency, updated_at)"
               " SELECT 9223372036854775807, 'TOP', id, 'TOP', 0, 'XXX', 0 FROM products"
               " WHERE product_id = 'P1'");
    struct store *x = NULL;
    char err[256];
    CHECK_EQ_INT(
        store_open_extra(store_path(rh_daemon(a)->store), true, false, &x, err, sizeof err), 0);
    CHECK(x && store_set_triggers(x, false) == 0);
    struct whfeed_row rows[WHFEED_BATCH];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < WHFEED_BATCH; i++) {
        snprintf(rows[i].sku, sizeof rows[i].sku, "M%02d", i);
        rows[i].on_hand = i;
        rows[i].inbound = -1;
        rows[i].version = 1 + i;
        rows[i].at = 1700000000 + i;
    }
    int64_t made = 0;
    if (x)
        CHECK_EQ_INT(make_ahead(x, rows, &made, NULL), 0);
    /* then the page's slice, with the triggers, as tallyd applies it */
    struct upstream u = {0};
    snprintf(u.code, sizeof u.code, "A");
    struct pull_page pg = {0};
    int64_t wh = rh_q64(a, "SELECT id FROM warehouses WHERE code = 'A'");
    CHECK_EQ_INT(apply(a, &u, &pg, wh, rows, WHFEED_BATCH, true), 0);
    CHECK_EQ_INT(rh_q64(a, "SELECT count(*) FROM skus WHERE code GLOB 'M[0-9][0-9]'"),
                 WHFEED_BATCH);
    CHECK_EQ_INT(rh_q64(a, "SELECT count(*) FROM skus WHERE code GLOB 'M[0-9][0-9]'"
                           " AND id NOT IN (SELECT id FROM sku_titles_todo)"),
                 0);
    CHECK_EQ_INT(rh_q64(a, "SELECT n FROM counters WHERE name = 'skus'"),
                 rh_q64(a, "SELECT count(*) FROM skus"));
    printf("top id: %" PRId64 " placeholders made ahead (-1: refused)\n", made);
    store_close(x);
    rh_free(a);
}

/* 64 rows of SKUs `prefix`00..63, version v. */
static void rows_named(struct whfeed_row *rows, const char *prefix, int64_t v)
{
    memset(rows, 0, WHFEED_BATCH * sizeof *rows);
    for (int i = 0; i < WHFEED_BATCH; i++) {
        snprintf(rows[i].sku, sizeof rows[i].sku, "%s%02d", prefix, i);
        rows[i].on_hand = 100 + i;
        rows[i].inbound = -1;
        rows[i].version = v;
        rows[i].at = 1700000000 + i;
    }
}

/* Ids of placeholders whose transaction was rolled back are forgotten: the SKUs a catalog
 * import adds next take those same ids, and the rows are written to their own SKUs all the
 * same. Ids of a committed one are kept, and the same SKUs' batch of another warehouse is
 * written by them; a batch of SKUs the catalog brought is looked up once, then written by id,
 * and its ids kept. */
static void ids_rollback(void)
{
    struct rh *a = seeded("whfeed-ids");
    if (!a)
        return;
    struct store *x = NULL;
    char err[256];
    CHECK_EQ_INT(
        store_open_extra(store_path(rh_daemon(a)->store), true, false, &x, err, sizeof err), 0);
    CHECK(x && store_set_triggers(x, false) == 0);
    struct whfeed_ids *ids = whfeed_ids_new();
    CHECK(ids != NULL);
    if (!x || !ids) {
        store_close(x);
        whfeed_ids_free(ids);
        rh_free(a);
        return;
    }
    int64_t top = rh_q64(a, "SELECT max(id) FROM skus");
    struct whfeed_row rows[WHFEED_BATCH];
    rows_named(rows, "R", 5);
    /* made, then rolled back */
    struct whfeed_skus s;
    int made = 0;
    CHECK_EQ_INT(store_begin(x), 0);
    CHECK_EQ_INT(whfeed_skus_begin(x, &s), 0);
    CHECK_EQ_INT(whfeed_skus_batch(x, &s, rows, ids, &made), 0);
    CHECK_EQ_INT(made, WHFEED_BATCH);
    CHECK_EQ_INT(whfeed_ids_get(ids, "R00"), top + 1); /* for the transaction itself */
    CHECK_EQ_INT(whfeed_skus_end(x, &s), 0);
    store_rollback(x);
    whfeed_ids_end(ids, false);
    int left = 0;
    for (int i = 0; i < WHFEED_BATCH; i++)
        left += whfeed_ids_get(ids, rows[i].sku) != 0;
    CHECK_EQ_INT(left, 0);
    /* other SKUs take the ids the rollback gave back */
    RH_EXEC(a, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 63)"
               " INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
               " SELECT printf('Z%%02d', i), p.id, 'z', 1, 'EUR', 0 FROM n, products p"
               " WHERE p.product_id = 'P1' ORDER BY i");
    CHECK_EQ_INT(rh_q64(a, "SELECT min(id) FROM skus WHERE code GLOB 'Z*'"), top + 1);
    struct upstream u = {0};
    snprintf(u.code, sizeof u.code, "A");
    struct pull_page pg = {0};
    pg.ids = ids;
    int64_t wh = rh_q64(a, "SELECT id FROM warehouses WHERE code = 'A'");
    CHECK_EQ_INT(apply(a, &u, &pg, wh, rows, WHFEED_BATCH, true), 0);
    CHECK_EQ_INT(rh_q64(a, "SELECT count(*) FROM stock st JOIN skus k ON k.id = st.sku"
                           " WHERE k.code GLOB 'R*' AND st.snapshot = 100 + substr(k.code, 2)"),
                 WHFEED_BATCH);
    CHECK_EQ_INT(rh_q64(a, "SELECT count(*) FROM stock st JOIN skus k ON k.id = st.sku"
                           " WHERE k.code GLOB 'Z*'"),
                 0);
    /* (the lookup found none: placeholders, then every id known, by id) */
    CHECK_EQ_INT(pg.by_id, WHFEED_BATCH);
    CHECK_EQ_INT(whfeed_ids_get(ids, "R05"), rh_q64(a, "SELECT id FROM skus WHERE code = 'R05'"));
    /* made ahead and committed: kept, and another warehouse's batch of the same SKUs is
     * written by them, with no lookup */
    struct whfeed_row q[WHFEED_BATCH];
    rows_named(q, "Q", 5);
    int64_t m = 0;
    CHECK_EQ_INT(make_ahead(x, q, &m, ids), 0);
    CHECK_EQ_INT(m, WHFEED_BATCH);
    CHECK_EQ_INT(whfeed_ids_get(ids, "Q07"), rh_q64(a, "SELECT id FROM skus WHERE code = 'Q07'"));
    rows_named(q, "Q", 6);
    int64_t wb = rh_q64(a, "SELECT id FROM warehouses WHERE code = 'B'");
    pg.by_id = 0;
    CHECK_EQ_INT(apply(a, &u, &pg, wb, q, WHFEED_BATCH, true), 0);
    CHECK_EQ_INT(pg.by_id, WHFEED_BATCH);
    CHECK_EQ_INT(rh_q64(a,
                        "SELECT count(*) FROM stock st JOIN skus k ON k.id = st.sku"
                        " WHERE k.code GLOB 'Q*' AND st.warehouse = %" PRId64
                        " AND st.snapshot = 100 + substr(k.code, 2) AND st.upstream_version = 6",
                        wb),
                 WHFEED_BATCH);
    /* an older version among them: row by row decides; the newer figure stays */
    rows_named(q, "Q", 7);
    q[3].version = 2;
    pg.by_id = 0;
    CHECK_EQ_INT(apply(a, &u, &pg, wb, q, WHFEED_BATCH, true), 0);
    CHECK_EQ_INT(pg.by_id, 0);
    CHECK_EQ_INT(rh_q64(a,
                        "SELECT upstream_version FROM stock st JOIN skus k ON k.id = st.sku"
                        " WHERE k.code = 'Q03' AND st.warehouse = %" PRId64,
                        wb),
                 6);
    CHECK_EQ_INT(rh_q64(a,
                        "SELECT count(*) FROM stock WHERE warehouse = %" PRId64
                        " AND upstream_version = 7",
                        wb),
                 WHFEED_BATCH - 1);
    /* SKUs the catalog brought (not made here): looked up, written by id, kept */
    RH_EXEC(a, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 63)"
               " INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
               " SELECT printf('K%%02d', i), p.id, 'k', 1, 'EUR', 0 FROM n, products p"
               " WHERE p.product_id = 'P1' ORDER BY i DESC");
    rows_named(q, "K", 3);
    pg.by_id = 0;
    pg.batch_new = false;
    CHECK_EQ_INT(whfeed_ids_get(ids, "K00"), 0);
    CHECK_EQ_INT(apply(a, &u, &pg, wh, q, WHFEED_BATCH, true), 0);
    CHECK_EQ_INT(pg.by_id, WHFEED_BATCH);
    CHECK_EQ_INT(whfeed_ids_get(ids, "K00"), rh_q64(a, "SELECT id FROM skus WHERE code = 'K00'"));
    CHECK_EQ_INT(rh_q64(a, "SELECT count(*) FROM stock st JOIN skus k ON k.id = st.sku"
                           " WHERE k.code GLOB 'K*' AND st.snapshot = 100 + substr(k.code, 2)"),
                 WHFEED_BATCH);
    /* codes too long to be kept: not looked up (the upsert looks them up itself), not by id */
    RH_EXEC(a, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 63)"
               " INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
               " SELECT printf('LONG-%%030d', i), p.id, 'l', 1, 'EUR', 0 FROM n, products p"
               " WHERE p.product_id = 'P1'");
    for (int round = 0; round < 2; round++) {
        rows_named(q, "K", 4 + round);
        for (int i = 0; i < WHFEED_BATCH; i += 2)
            snprintf(q[i].sku, sizeof q[i].sku, "LONG-%030d", i);
        pg.by_id = 0;
        pg.batched = 0;
        CHECK_EQ_INT(apply(a, &u, &pg, wh, q, WHFEED_BATCH, true), 0);
        CHECK_EQ_INT(pg.by_id, 0);
        CHECK_EQ_INT(pg.batched, WHFEED_BATCH);
    }
    CHECK_EQ_INT(rh_q64(a, "SELECT count(*) FROM stock st JOIN skus k ON k.id = st.sku"
                           " WHERE k.code GLOB 'LONG-*' AND st.upstream_version = 5"),
                 WHFEED_BATCH / 2);
    CHECK_EQ_INT(whfeed_ids_get(ids, "LONG-000000000000000000000000000002"), 0);
    /* a transaction that writes by looked-up ids and is rolled back keeps none of them */
    RH_EXEC(a, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 63)"
               " INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
               " SELECT printf('J%%02d', i), p.id, 'j', 1, 'EUR', 0 FROM n, products p"
               " WHERE p.product_id = 'P1'");
    rows_named(q, "J", 3);
    struct store *st = rh_daemon(a)->store;
    CHECK_EQ_INT(store_begin(st), 0);
    pg.plain = whfeed_plain(st);
    CHECK_EQ_INT(whfeed_stock_batch(&u, st, wh, q, WHFEED_BATCH, &pg), 0);
    store_rollback(st);
    whfeed_ids_end(ids, false);
    CHECK_EQ_INT(whfeed_ids_get(ids, "J00"), 0);
    CHECK_EQ_INT(rh_q64(a, "SELECT count(*) FROM stock st JOIN skus k ON k.id = st.sku"
                           " WHERE k.code GLOB 'J*'"),
                 0);
    printf("ids: forgotten after a rollback, kept after a commit, looked up once\n");
    whfeed_ids_free(ids);
    store_close(x);
    rh_free(a);
}

/* The store of ids alone: what it keeps and for how long. */
static void ids_store(void)
{
    struct whfeed_ids *c = whfeed_ids_new();
    CHECK(c != NULL);
    if (!c)
        return;
    whfeed_ids_stage(c, "A", 1);
    CHECK_EQ_INT(whfeed_ids_get(c, "A"), 1); /* for the transaction itself */
    whfeed_ids_end(c, true);
    CHECK_EQ_INT(whfeed_ids_get(c, "A"), 1);
    CHECK_EQ_INT(whfeed_ids_get(c, "a"), 0);
    CHECK_EQ_INT(whfeed_ids_get(c, "B"), 0);
    whfeed_ids_stage(c, "B", 0); /* no id */
    whfeed_ids_stage(c, "C", 3);
    whfeed_ids_stage(c, "A", 9); /* kept already: left as it is */
    CHECK_EQ_INT(whfeed_ids_get(c, "C"), 3);
    whfeed_ids_end(c, false); /* rolled back */
    CHECK_EQ_INT(whfeed_ids_get(c, "A"), 1);
    whfeed_ids_end(c, true);
    CHECK_EQ_INT(whfeed_ids_get(c, "B"), 0);
    CHECK_EQ_INT(whfeed_ids_get(c, "C"), 0);
    /* NULL: nothing kept, nothing found */
    whfeed_ids_stage(NULL, "A", 1);
    whfeed_ids_end(NULL, true);
    CHECK_EQ_INT(whfeed_ids_get(NULL, "A"), 0);
    char code[TALLY_MAX_ID_LEN + 1];
    memset(code, 'x', sizeof code);
    code[WHFEED_IDS_CODE_MAX] = 0; /* the longest kept */
    whfeed_ids_stage(c, code, 7);
    whfeed_ids_end(c, true);
    CHECK_EQ_INT(whfeed_ids_get(c, code), 7);
    code[WHFEED_IDS_CODE_MAX] = 'x';
    code[WHFEED_IDS_CODE_MAX + 1] = 0; /* one more: not kept */
    whfeed_ids_stage(c, code, 8);
    whfeed_ids_end(c, true);
    CHECK_EQ_INT(whfeed_ids_get(c, code), 0);
    /* 3 x WHFEED_IDS_GEN codes into an empty one: the last two generations' are kept, the
     * first's are not */
    whfeed_ids_free(c);
    c = whfeed_ids_new();
    CHECK(c != NULL);
    if (!c)
        return;
    int n = 3 * WHFEED_IDS_GEN, kept = 0, old = 0;
    for (int i = 0; i < n; i++) { /* in transactions of 1,000 */
        snprintf(code, sizeof code, "C%d", i);
        whfeed_ids_stage(c, code, 1000 + i);
        if (i % 1000 == 999 || i == n - 1)
            whfeed_ids_end(c, true);
    }
    for (int i = 0; i < n; i++) {
        snprintf(code, sizeof code, "C%d", i);
        int64_t id = whfeed_ids_get(c, code);
        if (i < WHFEED_IDS_GEN)
            old += id != 0;
        else
            kept += id == 1000 + i;
    }
    CHECK_EQ_INT(old, 0);
    CHECK_EQ_INT(kept, 2 * WHFEED_IDS_GEN);
    snprintf(code, sizeof code, "C%d", n - 1); /* kept: staged again, it stays as it was */
    whfeed_ids_stage(c, code, 5);
    whfeed_ids_end(c, true);
    CHECK_EQ_INT(whfeed_ids_get(c, code), 1000 + n - 1);
    /* a transaction rolled back across a new generation: the ones kept before it are all
     * found, none of its own, and the store goes on */
    whfeed_ids_free(c);
    c = whfeed_ids_new();
    CHECK(c != NULL);
    if (!c)
        return;
    for (int i = 0; i < WHFEED_IDS_GEN - 100; i++) {
        snprintf(code, sizeof code, "E%d", i);
        whfeed_ids_stage(c, code, 1 + i);
    }
    whfeed_ids_end(c, true);
    for (int i = 0; i < 300; i++) {
        snprintf(code, sizeof code, "F%d", i);
        whfeed_ids_stage(c, code, 90000 + i);
    }
    CHECK_EQ_INT(whfeed_ids_get(c, "F299"), 90299);
    whfeed_ids_end(c, false);
    int found = 0, theirs = 0;
    for (int i = 0; i < WHFEED_IDS_GEN - 100; i++) {
        snprintf(code, sizeof code, "E%d", i);
        found += whfeed_ids_get(c, code) == 1 + i;
    }
    for (int i = 0; i < 300; i++) {
        snprintf(code, sizeof code, "F%d", i);
        theirs += whfeed_ids_get(c, code) != 0;
    }
    CHECK_EQ_INT(found, WHFEED_IDS_GEN - 100);
    CHECK_EQ_INT(theirs, 0);
    whfeed_ids_stage(c, "G", 77);
    whfeed_ids_end(c, true);
    CHECK_EQ_INT(whfeed_ids_get(c, "G"), 77);
    CHECK_EQ_INT(whfeed_ids_get(c, "E0"), 1);
    /* a transaction that stages more than two generations can hold: the first are kept (up to
     * a generation past where it began), the rest are not, and nothing older is lost but the
     * generation the store drops as always */
    whfeed_ids_free(c);
    c = whfeed_ids_new();
    CHECK(c != NULL);
    if (!c)
        return;
    n = 2 * WHFEED_IDS_GEN + 10;
    for (int i = 0; i < n; i++) {
        snprintf(code, sizeof code, "D%d", i);
        whfeed_ids_stage(c, code, 50000 + i);
    }
    whfeed_ids_end(c, true);
    kept = 0;
    for (int i = 0; i < n; i++) {
        snprintf(code, sizeof code, "D%d", i);
        kept += whfeed_ids_get(c, code) == 50000 + i;
    }
    CHECK_EQ_INT(kept, 2 * WHFEED_IDS_GEN);
    snprintf(code, sizeof code, "D%d", n - 1);
    CHECK_EQ_INT(whfeed_ids_get(c, code), 0);
    whfeed_ids_free(c);
}

/*
 * The store of ids against a model, at random: transactions of 1 to 28,000 stagings (many
 * crossing one generation, some past two: a sweep of codes in order, as a sync's), a third rolled
 * back, codes staged again in their own transaction and after (a code committed keeps its id; one
 * rolled back comes again with another), a quarter of them codes whose home slot is among the last
 * or first few of the slot array (one long cluster, wrapping round the end). After every
 * transaction's end, every code is looked up: found with an id only if a committed transaction
 * staged it, with that id (the open transaction's own while it runs); and found if the model of the
 * generations holds it (the newer one filled, the older dropped; a rollback takes out the
 * transaction's own, and the older generation stays dropped when the transaction had begun a new
 * one).
 */
#define MODEL_PLAIN (3 * WHFEED_IDS_GEN)
#define MODEL_EDGE 256
#define MODEL_CODES (MODEL_PLAIN + MODEL_EDGE)

/* the home slot of a code in whfeed.c's store (FNV-1a, folded): only to pick codes that
 * crowd at the end of the slot array; the checks hold whatever the store's hash is */
static uint32_t model_home(const char *code)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *code; code++)
        h = (h ^ (unsigned char)*code) * 1099511628211ULL;
    return (uint32_t)(h ^ (h >> 29)) & (2 * WHFEED_IDS_GEN - 1);
}

struct model {
    char code[MODEL_CODES][16];
    int64_t kept[MODEL_CODES]; /* a committed transaction's id (0: none) */
    int64_t open[MODEL_CODES]; /* the open transaction's (0: none) */
    int in[MODEL_CODES];       /* the generation holding it, -1: none */
    int g[2][WHFEED_IDS_GEN], n[2], cur;
    int staged[4 * WHFEED_IDS_GEN], nstaged; /* the open transaction's codes */
    bool t_open, t_rotated;
    int t_gen, t_n;
    int full; /* codes a transaction staged past both generations (not kept) */
};

static void model_stage(struct model *m, struct whfeed_ids *c, int i, int64_t *next)
{
    int64_t id = m->kept[i] ? m->kept[i] : m->open[i];
    if (!id) {
        id = m->open[i] = (*next)++;
        m->staged[m->nstaged++] = i;
    }
    whfeed_ids_stage(c, m->code[i], id);
    if (m->in[i] >= 0)
        return;
    if (!m->t_open) {
        m->t_open = true;
        m->t_rotated = false;
        m->t_gen = m->cur;
        m->t_n = m->n[m->cur];
    }
    if (m->n[m->cur] == WHFEED_IDS_GEN) {
        if (m->t_rotated) {
            m->full++;
            return;
        }
        m->t_rotated = true;
        m->cur ^= 1;
        for (int k = 0; k < m->n[m->cur]; k++)
            m->in[m->g[m->cur][k]] = -1;
        m->n[m->cur] = 0;
    }
    m->g[m->cur][m->n[m->cur]++] = i;
    m->in[i] = m->cur;
}

static void model_cut(struct model *m, int gen, int from)
{
    for (; m->n[gen] > from; m->n[gen]--)
        m->in[m->g[gen][m->n[gen] - 1]] = -1;
}

static void model_end(struct model *m, struct whfeed_ids *c, bool commit)
{
    whfeed_ids_end(c, commit);
    for (int k = 0; k < m->nstaged; k++) {
        int i = m->staged[k];
        if (commit)
            m->kept[i] = m->open[i];
        m->open[i] = 0;
    }
    m->nstaged = 0;
    if (m->t_open && !commit) {
        if (m->t_rotated)
            model_cut(m, m->t_gen ^ 1, 0);
        model_cut(m, m->t_gen, m->t_n);
    }
    m->t_open = false;
}

/* Codes found with an id not theirs, and codes the model holds not found. */
static bool model_check(const struct model *m, const struct whfeed_ids *c, int i, int *wrong,
                        int *lost)
{
    int64_t want = m->kept[i] ? m->kept[i] : m->open[i], got = whfeed_ids_get(c, m->code[i]);
    bool w = got != 0 && got != want, l = m->in[i] >= 0 && got != want;
    if ((w || l) && *wrong + *lost == 0)
        fprintf(stderr, "ids_model: %s: found %" PRId64 ", its id %" PRId64 ", %s\n", m->code[i],
                got, want, m->in[i] >= 0 ? "held" : "not held");
    *wrong += w;
    *lost += l;
    return !w && !l;
}

static void ids_model(void)
{
    struct model *m = calloc(1, sizeof *m);
    struct whfeed_ids *c = whfeed_ids_new();
    CHECK(m && c);
    if (!m || !c) {
        free(m);
        whfeed_ids_free(c);
        return;
    }
    for (int i = 0; i < MODEL_PLAIN; i++)
        snprintf(m->code[i], sizeof m->code[i], "S%d", i);
    int edge = MODEL_PLAIN, wraps = 0;
    for (unsigned k = 0; edge < MODEL_CODES; k++) { /* home among the last 6 slots or first 3 */
        char code[16];
        snprintf(code, sizeof code, "W%u", k);
        uint32_t home = model_home(code);
        if (home < 3 || home >= 2 * WHFEED_IDS_GEN - 6) {
            wraps += home < 3;
            memcpy(m->code[edge++], code, sizeof code);
        }
    }
    CHECK(wraps > 0);
    for (int i = 0; i < MODEL_CODES; i++)
        m->in[i] = -1;
    int64_t next = 1;
    int wrong = 0, lost = 0, rollbacks = 0, rotated_rollbacks = 0;
    for (int t = 0; t < 150 && wrong + lost == 0; t++) {
        unsigned kind = rnd(10);
        int size = kind < 6   ? 1 + (int)rnd(64)
                   : kind < 9 ? 64 + (int)rnd(2000)
                              : 8000 + (int)rnd(20000);
        int sweep = kind == 9 ? (int)rnd(MODEL_PLAIN) : -1; /* codes in order, as a sync's */
        for (int k = 0; k < size; k++) {
            int i;
            if (sweep >= 0)
                i = (sweep + k) % MODEL_PLAIN;
            else if (m->nstaged > 0 && rnd(8) == 0) /* again in its own transaction */
                i = m->staged[rnd((unsigned)m->nstaged)];
            else if (rnd(4) == 0)
                i = MODEL_PLAIN + (int)rnd(MODEL_EDGE);
            else
                i = (int)rnd(MODEL_PLAIN);
            model_stage(m, c, i, &next);
            model_check(m, c, i, &wrong, &lost);
            if (rnd(16) == 0) /* any code, while the transaction is open */
                model_check(m, c, (int)rnd(MODEL_CODES), &wrong, &lost);
        }
        bool commit = rnd(3) != 0;
        rollbacks += !commit;
        rotated_rollbacks += !commit && m->t_rotated;
        model_end(m, c, commit);
        for (int i = 0; i < MODEL_CODES; i++)
            model_check(m, c, i, &wrong, &lost);
    }
    printf("ids model: %" PRId64 " ids staged, %d rollbacks (%d across a new generation), %d "
           "codes past both generations\n",
           next - 1, rollbacks, rotated_rollbacks, m->full);
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(lost, 0);
    CHECK(rotated_rollbacks > 0 && rollbacks > rotated_rollbacks && m->full > 0);
    whfeed_ids_free(c);
    free(m);
}

int main(void)
{
    int64_t by_id = 0;
    for (unsigned seed = 1; seed <= 6; seed++)
        by_id += run(seed, false, false);
    /* some batches were written by their SKUs' ids (kept, looked up, made: few, since most
     * batches here hold an older version, or the longest code, which is never kept; ids_rollback
     * and test_sync check those paths one by one) */
    CHECK(by_id >= 2 * WHFEED_BATCH);
    run(7, true, false);
    run(1, false, true);
    top_id();
    ids_rollback();
    ids_store();
    ids_model();
    return check_result("test_whfeed");
}
