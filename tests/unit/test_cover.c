/*
 * Days of cover and stock rules: cover_threshold / cover_suggest arithmetic (table-driven,
 * ceil edges, zero sales, figures up to 10^12), cover_refresh over a replica with sales inside
 * and outside the window, and stock.set / stock.list through rpc_handle (each field, the
 * validation, safety reaching marketplace stock and publishing).
 */
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "check.h"
#include "codec.h"
#include "cover.h"
#include "replica_harness.h"
#include "reserve.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"
#include "worker.h"

static struct rh *h;
static struct tallyd *d;

/* ---- sales ---- */

/* An order of its own (allocations are unique per order x SKU x warehouse) with one
 * allocation; `days_ago` < 0 leaves shipped_at NULL. */
static void add_alloc(const char *order, const char *sku, const char *wh, int qty,
                      const char *state, int days_ago)
{
    char sql[1024];
    int64_t now = store_now();
    snprintf(sql, sizeof sql,
             "INSERT INTO orders(order_id, status, created_at, updated_at, country, currency)"
             " VALUES('%s', 'WAIT_SELLER_SEND_GOODS', %lld, %lld, 'ES', 'EUR');"
             "INSERT INTO allocations(order_ref, sku, warehouse, qty, state, created_at,"
             " shipped_at) VALUES((SELECT id FROM orders WHERE order_id = '%s'),"
             " (SELECT id FROM skus WHERE code = '%s'), (SELECT id FROM warehouses WHERE"
             " code = '%s'), %d, '%s', %lld, %s);",
             order, (long long)now, (long long)now, order, sku, wh, qty, state, (long long)now,
             days_ago < 0 ? "NULL" : "?");
    if (days_ago >= 0) {
        char shipped[32];
        snprintf(shipped, sizeof shipped, "%lld", (long long)(now - days_ago * 86400LL + 60));
        char *q = strstr(sql, "?");
        char tail[64];
        snprintf(tail, sizeof tail, "%s);", shipped);
        snprintf(q, sizeof sql - (size_t)(q - sql), "%s", tail);
    }
    RH_EXEC(h, "%s", sql);
}

static void refresh_reserved(const char *sku, const char *wh)
{
    int64_t skuid = rh_sku_id(h, sku);
    int64_t whid = rh_wh_id(h, wh);
    CHECK_EQ_INT(store_begin(d->store), 0);
    CHECK_EQ_INT(reserve_refresh(d->store, skuid, whid, NULL), 0);
    CHECK_EQ_INT(store_commit(d->store), 0);
}

/* The sales every test below starts from (window 28 days by default):
 *   S1@A: 20 shipped 10 days ago + 8 consumed 1 day ago = 28 in the window; 100 shipped 40
 *         days ago (outside); 5 reserved (not sold, but reserved)
 *   S1@B: 50 shipped 2 days ago;  S2@A: 7 shipped 3 days ago */
static void add_sales(void)
{
    add_alloc("O1", "S1", "A", 20, "shipped", 10);
    add_alloc("O2", "S1", "A", 8, "consumed", 1);
    add_alloc("O3", "S1", "A", 100, "shipped", 40);
    add_alloc("O4", "S1", "A", 5, "reserved", -1);
    add_alloc("O5", "S1", "B", 50, "shipped", 2);
    add_alloc("O6", "S2", "A", 7, "shipped", 3);
    refresh_reserved("S1", "A"); /* 8 consumed + 5 reserved */
}

/* ---- arithmetic ---- */

static void test_threshold(void)
{
    static const struct {
        int64_t sold, window, cover, want;
    } cases[] = {
        {0, 28, 7, 0},  /* no sales: no threshold */
        {28, 28, 7, 7}, /* exact */
        {29, 28, 7, 8}, /* 7.25 -> 8 */
        {27, 28, 7, 7}, /* 6.75 -> 7 */
        {1, 28, 1, 1},  /* any sale at all needs a unit of cover */
        {28, 28, 1, 1}, /* exact 1 */
        {29, 28, 1, 2}, /* just over */
        {56, 28, 1, 2}, /* exact 2 */
        {1, 365, 365, 1},
        {364, 365, 1, 1},
        {365, 365, 1, 1},
        {366, 365, 1, 2},
        {14, 28, 30, 15}, /* 15 exactly */
        {15, 28, 30, 17}, /* 16.07 -> 17 */
        {1000000000000LL, 1, 365, 365000000000000LL},
        {1000000000000LL, 7, 365, 52142857142858LL},
        {999999999999LL, 365, 364, 997260273972LL},
        {1000000000000LL, 365, 1, 2739726028LL},
        {999999999999LL, 28, 30, 1071428571428LL},
        {-5, 28, 7, 0}, /* nonsense in: nothing out */
        {28, 0, 7, 0},
        {28, 28, 0, 0},
        {28, -1, 7, 0},
        /* absurd inputs: clamped (10^15 units), then saturated; never an overflow, which
         * UBSan would trap */
        {INT64_MAX, 1, 365, 365000000000000000LL},
        {INT64_MAX, 1, INT64_MAX, INT64_MAX / 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = cover_threshold(cases[i].sold, cases[i].window, cases[i].cover);
        if (got != cases[i].want)
            fprintf(stderr, "case %zu: cover_threshold(%lld, %lld, %lld)\n", i,
                    (long long)cases[i].sold, (long long)cases[i].window,
                    (long long)cases[i].cover);
        CHECK_EQ_INT(got, cases[i].want);
    }
}

static void test_suggest(void)
{
    static const struct {
        int64_t sold, window, cover, on_hand, reserved, want;
    } cases[] = {
        {28, 28, 30, 10, 0, 20}, /* needs 30, has 10 */
        {28, 28, 30, 30, 0, 0},  /* exactly enough */
        {28, 28, 30, 40, 0, 0},  /* more than enough */
        {28, 28, 30, 40, 15, 5}, /* reserved units do not cover sales */
        {29, 28, 30, 0, 0, 32},  /* 31.07 -> 32 */
        {0, 28, 30, 0, 0, 0},    /* no sales, nothing held: nothing to receive */
        {0, 28, 30, 2, 5, 3},    /* no sales, but reservations exceed on hand */
        {28, 28, 30, -4, 0, 34}, /* a negative local view needs making up too */
        {28, 28, 0, 0, 0, 0},    /* no cover asked */
        {1000000000000LL, 365, 365, 0, 0, 1000000000000LL},
        {1000000000000LL, 1, 365, 1000000000000LL, 0, 364000000000000LL},
        {1000000000000LL, 1, 365, -1000000000000LL, 1000000000000LL, 367000000000000LL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = cover_suggest(cases[i].sold, cases[i].window, cases[i].cover,
                                    cases[i].on_hand, cases[i].reserved);
        if (got != cases[i].want)
            fprintf(stderr, "suggest case %zu\n", i);
        CHECK_EQ_INT(got, cases[i].want);
    }
    CHECK(cover_suggest(INT64_MAX, 1, 365, INT64_MIN, INT64_MAX) > 0);
}

/* ---- cover_refresh ---- */

static void test_refresh(void)
{
    rh_open(h);
    rh_seed_standard(h);
    add_sales();
    /* S1@A: by 7 days of cover. S2@A: 14 days, threshold from before to be replaced.
     * S2@B: 10 days, no sales at all. S1@B: a fixed threshold, sales notwithstanding. */
    RH_EXEC(h, "UPDATE stock SET cover_days = 7 WHERE sku = (SELECT id FROM skus WHERE code = 'S1')"
               " AND warehouse = (SELECT id FROM warehouses WHERE code = 'A')");
    RH_EXEC(
        h,
        "INSERT INTO stock(sku, warehouse, snapshot, threshold, cover_days) VALUES"
        " ((SELECT id FROM skus WHERE code = 'S2'), (SELECT id FROM warehouses WHERE code = 'A'),"
        "  20, 9, 14),"
        " ((SELECT id FROM skus WHERE code = 'S2'), (SELECT id FROM warehouses WHERE code = 'B'),"
        "  20, 6, 10),"
        " ((SELECT id FROM skus WHERE code = 'S1'), (SELECT id FROM warehouses WHERE code = 'B'),"
        "  20, 5, 0)");
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 0);
    CHECK_EQ_INT(cover_refresh(d), 0);
    /* 28 sold in 28 days, 7 days of cover */
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 7);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S2", "A"), 4);  /* 7 * 14 / 28 = 3.5 -> 4 */
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S2", "B"), 0);  /* nothing sold */
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "B"), 5);  /* not by cover: untouched */
    CHECK_EQ_INT(rh_stock_figure(h, "cover_days", "S1", "A"), 7); /* the setting stays */
    /* S1@A: on hand 10, reserved 13: available 0, now at or below 7: low. */
    const msgpack_object *r = rh_call(h, "stock.list", "low=!1", NULL);
    const msgpack_object *items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->via.array.size == 1);
    if (items && items->via.array.size == 1) {
        CHECK_EQ_STR(rh_sget(&items->via.array.ptr[0], "sku"), "S1");
        CHECK_EQ_STR(rh_sget(&items->via.array.ptr[0], "warehouse"), "A");
    }

    /* Again with nothing changed: same thresholds. */
    CHECK_EQ_INT(cover_refresh(d), 0);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 7);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S2", "A"), 4);

    /* The 20 of ten days ago age out of the window: 8 left, 8 * 7 / 28 = 2. */
    RH_EXEC(h, "UPDATE allocations SET shipped_at = shipped_at - 20 * 86400"
               " WHERE order_ref = (SELECT id FROM orders WHERE order_id = 'O1')");
    CHECK_EQ_INT(cover_refresh(d), 0);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 2);
    /* A shorter window: S2@A's sale of 3 days ago is older than 2 days. */
    d->cfg.sales_window_days = 2;
    CHECK_EQ_INT(cover_refresh(d), 0);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S2", "A"), 0);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 28); /* 8 in 2 days: 4 a day, 7 days */
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "B"), 5);

    /* A failure leaves every threshold as it was. */
    RH_EXEC(h, "CREATE TEMP TRIGGER no_stock BEFORE UPDATE OF threshold ON stock"
               " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    d->cfg.sales_window_days = 28;
    CHECK(cover_refresh(d) != 0);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 28);
    RH_EXEC(h, "DROP TRIGGER temp.no_stock");
    CHECK_EQ_INT(cover_refresh(d), 0);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 2);
}

/* cover_refresh_start: the same thresholds computed by write jobs off the loop (worker.h),
 * the job gone once its done ran; and a refresh queued when tallyd stops is cancelled and
 * freed, writing nothing. */
static void run_loop_until_no_cover(void)
{
    for (int i = 0; i < 100000 && d->cover; i++)
        uv_run(d->loop, UV_RUN_ONCE);
}

static void test_refresh_job(void)
{
    rh_open(h);
    rh_seed_standard(h);
    add_sales();
    RH_EXEC(h, "UPDATE stock SET cover_days = 7 WHERE sku = (SELECT id FROM skus WHERE code = 'S1')"
               " AND warehouse = (SELECT id FROM warehouses WHERE code = 'A')");
    RH_EXEC(
        h,
        "INSERT INTO stock(sku, warehouse, snapshot, threshold, cover_days) VALUES"
        " ((SELECT id FROM skus WHERE code = 'S2'), (SELECT id FROM warehouses WHERE code = 'A'),"
        "  20, 9, 14),"
        " ((SELECT id FROM skus WHERE code = 'S1'), (SELECT id FROM warehouses WHERE code = 'B'),"
        "  20, 5, 0)");
    char err[256];
    uv_loop_t loop;
    uv_loop_init(&loop);
    d->loop = &loop;
    d->stopping = false;
    CHECK_EQ_INT(workers_start(d, err, sizeof err), 0);
    CHECK_EQ_INT(cover_refresh_start(d), 0);
    CHECK(d->cover != NULL);                 /* queued: the loop goes on meanwhile */
    CHECK_EQ_INT(cover_refresh_start(d), 0); /* one at a time: this one does nothing */
    run_loop_until_no_cover();
    CHECK(d->cover == NULL);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 7);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S2", "A"), 4);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "B"), 5); /* not by cover */

    /* Queued at a stop: cancelled (done gets shutting_down), freed, nothing written. */
    RH_EXEC(h, "UPDATE stock SET threshold = 1 WHERE cover_days > 0");
    CHECK_EQ_INT(cover_refresh_start(d), 0);
    CHECK(d->cover != NULL);
    d->stopping = true;
    workers_stop(d);
    run_loop_until_no_cover();
    CHECK(d->cover == NULL);
    uv_run(d->loop, UV_RUN_DEFAULT);
    workers_free(d);
    d->loop = NULL;
    d->stopping = false;
    uv_loop_close(&loop);
    /* Cancelled before it ran, or stopped between its transactions: each row as it was or
     * refreshed, never anything else. */
    int64_t a = rh_stock_figure(h, "threshold", "S1", "A");
    int64_t b = rh_stock_figure(h, "threshold", "S2", "A");
    CHECK(a == 1 || a == 7);
    CHECK(b == 1 || b == 4);
}

/* ---- stock.set and stock.list ---- */

static void test_set_fields(void)
{
    rh_open(h);
    rh_seed_standard(h);
    store_set_publish(d->store, true);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM publish"), 0);

    const msgpack_object *r = rh_call(h, "stock.set", "sku=S1", "warehouse=A", "safety=#2", NULL);
    CHECK(r != NULL);
    CHECK(r && r->via.map.size == 14);
    CHECK_EQ_STR(rh_sget(r, "sku"), "S1");
    CHECK_EQ_STR(rh_sget(r, "warehouse"), "A");
    CHECK_EQ_INT(rh_iget(r, "safety"), 2);
    CHECK_EQ_INT(rh_iget(r, "on_hand"), 10);
    CHECK_EQ_INT(rh_iget(r, "available"), 8);
    CHECK_EQ_INT(rh_iget(r, "threshold"), 0);
    CHECK_EQ_INT(rh_iget(r, "cover_days"), 0);
    CHECK_EQ_INT(rh_iget(r, "sold"), 0);
    CHECK_EQ_INT(rh_iget(r, "suggest"), 0);
    CHECK(mp_map_get(r, "low") && !rh_bget(r, "low"));
    CHECK_EQ_INT(rh_stock_figure(h, "safety", "S1", "A"), 2);
    r = rh_call(h, "stock.get", "sku=S1", NULL);
    CHECK(r && rh_iget(r, "marketplace_available") == 8);
    /* Safety is a term of what is published: the SKU is due for publishing. */
    CHECK_EQ_INT(rh_q64(h, "SELECT dirty FROM publish WHERE sku = (SELECT id FROM skus"
                           " WHERE code = 'S1')"),
                 1);
    int64_t gen = rh_q64(h, "SELECT gen FROM publish");
    RH_EXEC(h, "UPDATE publish SET dirty = 0");
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=A", "safety=#2", NULL)); /* no change */
    CHECK_EQ_INT(rh_q64(h, "SELECT dirty FROM publish"), 0);
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=A", "threshold=#3", NULL)); /* not a term */
    CHECK_EQ_INT(rh_q64(h, "SELECT dirty FROM publish"), 0);
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=A", "safety=#0", NULL));
    CHECK_EQ_INT(rh_q64(h, "SELECT dirty FROM publish"), 1);
    CHECK(rh_q64(h, "SELECT gen FROM publish") > gen);
    r = rh_call(h, "stock.get", "sku=S1", NULL);
    CHECK(r && rh_iget(r, "marketplace_available") == 10);

    /* Threshold: absolute; low when available <= threshold. */
    r = rh_call(h, "stock.set", "sku=S1", "warehouse=A", "threshold=#10", NULL);
    CHECK(r && rh_iget(r, "threshold") == 10 && rh_bget(r, "low"));
    r = rh_call(h, "stock.set", "sku=S1", "warehouse=A", "threshold=#9", NULL);
    CHECK(r && rh_iget(r, "threshold") == 9 && !rh_bget(r, "low"));
    r = rh_call(h, "stock.set", "sku=S1", "warehouse=A", "threshold=#0", NULL);
    CHECK(r && rh_iget(r, "threshold") == 0 && !rh_bget(r, "low"));

    /* All at once. */
    r = rh_call(h, "stock.set", "sku=S1", "warehouse=A", "safety=#4", "threshold=#6",
                "cover_days=#0", NULL);
    CHECK(r && rh_iget(r, "safety") == 4 && rh_iget(r, "threshold") == 6 &&
          rh_iget(r, "available") == 6);
    CHECK(r && rh_bget(r, "low"));

    /* A SKU x warehouse without a stock row gets one. */
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM stock WHERE sku = (SELECT id FROM skus"
                           " WHERE code = 'S2') AND warehouse = (SELECT id FROM warehouses"
                           " WHERE code = 'B')"),
                 0);
    r = rh_call(h, "stock.set", "sku=S2", "warehouse=B", "threshold=#1", NULL);
    CHECK(r && rh_iget(r, "on_hand") == 0 && rh_iget(r, "threshold") == 1 && rh_bget(r, "low"));
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S2", "B"), 1);
    CHECK_EQ_INT(rh_stock_figure(h, "reserved", "S2", "B"), 0);
}

static void test_set_validation(void)
{
    rh_open(h);
    rh_seed_standard(h);
    int64_t rows = rh_q64(h, "SELECT COUNT(*) FROM stock");
    static const char *const bad[][5] = {
        {"sku=S1", "warehouse=A", NULL}, /* nothing to set */
        {"sku=S1", "warehouse=A", "safety=#-1", NULL},
        {"sku=S1", "warehouse=A", "threshold=#-1", NULL},
        {"sku=S1", "warehouse=A", "safety=#1000000000001", NULL},
        {"sku=S1", "warehouse=A", "cover_days=#366", NULL},
        {"sku=S1", "warehouse=A", "cover_days=#-1", NULL},
        {"sku=S1", "warehouse=A", "safety=x", NULL},
        {"sku=S1", "warehouse=A", "threshold=#4", "cover_days=#5", NULL}, /* both ways at once */
        {"warehouse=A", "safety=#1", NULL},
        {"sku=S1", "safety=#1", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(rh_call(h, "stock.set", bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL) == NULL);
        CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    }
    CHECK(rh_call(h, "stock.set", "sku=S9", "warehouse=A", "safety=#1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "not_found");
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=Z", "safety=#1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "not_found");
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM stock"), rows);
    CHECK_EQ_INT(rh_stock_figure(h, "safety", "S1", "A"), 0);
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 0);
    /* The bounds themselves are accepted. */
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=A", "cover_days=#365", NULL) != NULL);
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=A", "cover_days=#0", NULL) != NULL);
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=A", "safety=#1000000000000", NULL) != NULL);
    /* Readers may not. */
    rh_set_role(h, TALLY_ROLE_READER);
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=A", "safety=#1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "forbidden");
    rh_set_role(h, TALLY_ROLE_WRITER);
    CHECK_EQ_INT(rh_stock_figure(h, "safety", "S1", "A"), 1000000000000LL);
}

static void test_set_cover(void)
{
    rh_open(h);
    rh_seed_standard(h);
    add_sales();
    /* S1@A: on hand 10, reserved 13 (8 consumed + 5 reserved), 28 sold in the window. */
    const msgpack_object *r =
        rh_call(h, "stock.set", "sku=S1", "warehouse=A", "cover_days=#7", NULL);
    CHECK(r != NULL);
    CHECK_EQ_INT(rh_iget(r, "cover_days"), 7);
    CHECK_EQ_INT(rh_iget(r, "sold"), 28);
    CHECK_EQ_INT(rh_iget(r, "threshold"), 7); /* applied at once */
    CHECK_EQ_INT(rh_iget(r, "reserved"), 13);
    CHECK_EQ_INT(rh_iget(r, "available"), 0);
    CHECK(rh_bget(r, "low"));
    CHECK_EQ_INT(rh_iget(r, "suggest"), 33); /* 30 days need 30; on hand - reserved = -3 */
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 7);
    CHECK_EQ_INT(rh_stock_figure(h, "cover_days", "S1", "A"), 7);

    /* 0 turns it off and keeps the threshold. */
    r = rh_call(h, "stock.set", "sku=S1", "warehouse=A", "cover_days=#0", NULL);
    CHECK(r && rh_iget(r, "cover_days") == 0 && rh_iget(r, "threshold") == 7);
    /* A threshold turns it off too. */
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=A", "cover_days=#14", NULL));
    CHECK_EQ_INT(rh_stock_figure(h, "threshold", "S1", "A"), 14);
    r = rh_call(h, "stock.set", "sku=S1", "warehouse=A", "threshold=#3", NULL);
    CHECK(r && rh_iget(r, "cover_days") == 0 && rh_iget(r, "threshold") == 3);
    CHECK_EQ_INT(rh_stock_figure(h, "cover_days", "S1", "A"), 0);

    /* The window is the setting's: in the last 7 days only the 8 consumed count. */
    d->cfg.sales_window_days = 7;
    r = rh_call(h, "stock.set", "sku=S1", "warehouse=A", "cover_days=#7", NULL);
    CHECK(r && rh_iget(r, "sold") == 8 && rh_iget(r, "threshold") == 8);
    d->cfg.sales_window_days = 28;

    /* stock.list carries the same figures for every row. */
    CHECK(rh_call(h, "stock.set", "sku=S1", "warehouse=B", "safety=#0", NULL)); /* creates S1@B */
    r = rh_call(h, "stock.list", NULL);
    const msgpack_object *items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->via.array.size == 2);
    CHECK(r && rh_is_nil(r, "next_cursor"));
    if (items && items->via.array.size == 2) {
        const msgpack_object *a = &items->via.array.ptr[0], *b = &items->via.array.ptr[1];
        CHECK_EQ_STR(rh_sget(a, "warehouse"), "A");
        CHECK_EQ_INT(a->via.map.size, 14);
        CHECK_EQ_INT(rh_iget(a, "cover_days"), 7);
        CHECK_EQ_INT(rh_iget(a, "sold"), 28);
        CHECK_EQ_INT(rh_iget(a, "threshold"), 8);
        CHECK_EQ_INT(rh_iget(a, "suggest"), 33);
        CHECK_EQ_INT(rh_iget(a, "on_hand"), 10);
        CHECK_EQ_STR(rh_sget(b, "warehouse"), "B");
        CHECK_EQ_INT(rh_iget(b, "cover_days"), 0);
        CHECK_EQ_INT(rh_iget(b, "sold"), 50);
        CHECK_EQ_INT(rh_iget(b, "suggest"), 54); /* 50 * 30 / 28 = 53.6 -> 54, nothing on hand */
    }
    /* Paged, the figures stay with their rows. */
    r = rh_call(h, "stock.list", "limit=#1", NULL);
    const char *cur = r ? rh_sget(r, "next_cursor") : NULL;
    CHECK(cur != NULL);
    char arg[160];
    snprintf(arg, sizeof arg, "cursor=%s", cur ? cur : "");
    r = rh_call(h, "stock.list", "limit=#1", arg, NULL);
    items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->via.array.size == 1);
    if (items && items->via.array.size == 1)
        CHECK_EQ_INT(rh_iget(&items->via.array.ptr[0], "sold"), 50);
    r = rh_call(h, "stock.list", "warehouse=B", NULL);
    items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->via.array.size == 1);
}

/* The (sku, warehouse) of every item of a stock.list page as "S@W,..."; *next gets the cursor
 * ("" when none). */
static const char *list_page(const char *cursor, const char *wh, int limit, char *next, size_t cap)
{
    static char buf[512];
    char lim[32], cur[160], whp[64];
    snprintf(lim, sizeof lim, "limit=#%d", limit);
    snprintf(cur, sizeof cur, "cursor=%s", cursor ? cursor : "");
    snprintf(whp, sizeof whp, "warehouse=%s", wh ? wh : "");
    const char *args[4] = {"low=!1", lim, NULL, NULL};
    int n = 2;
    if (cursor)
        args[n++] = cur;
    if (wh)
        args[n++] = whp;
    const msgpack_object *r = rh_call(h, "stock.list", args[0], args[1], n > 2 ? args[2] : NULL,
                                      n > 3 ? args[3] : NULL, NULL);
    buf[0] = 0;
    next[0] = 0;
    CHECK(r != NULL);
    if (!r)
        return buf;
    const msgpack_object *items = mp_map_get(r, "items");
    for (uint32_t i = 0; items && i < items->via.array.size; i++) {
        const msgpack_object *it = &items->via.array.ptr[i];
        size_t len = strlen(buf);
        snprintf(buf + len, sizeof buf - len, "%s%s@%s%s", len ? "," : "", rh_sget(it, "sku"),
                 rh_sget(it, "warehouse"), rh_bget(it, "out") ? ":out" : "");
        /* low is the rule the page was chosen by: every row listed is low */
        CHECK(rh_bget(it, "low"));
    }
    if (!rh_is_nil(r, "next_cursor"))
        snprintf(next, cap, "%s", rh_sget(r, "next_cursor"));
    return buf;
}

/*
 * stock.list low: a SKU x warehouse with nothing available is listed (as out) whatever its
 * threshold, the default 0 included; rows above their threshold are not; paging walks every
 * low row once, with and without a warehouse. (The query names the partial index of low rows
 * with INDEXED BY: a plan that cannot use it fails the call instead of scanning.)
 */
static void test_list_low_includes_out(void)
{
    rh_open(h);
    rh_seed_standard(h); /* S1@A 10 on hand */
    for (int i = 3; i <= 6; i++)
        RH_EXEC(h,
                "INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
                " SELECT 'S%d', product, 'x', 1, 'EUR', 0 FROM skus WHERE code = 'S1'",
                i);
    /* S2@A: never stocked (0 on hand, threshold 0): out.  S2@B: 5 on hand, threshold 0: fine.
     * S3@A: 4 on hand, all reserved: out.  S3@B: 3 on hand, threshold 5: low, not out.
     * S4@B: 6 on hand, safety 6: out.  S5@A: 8 on hand, threshold 2: fine.
     * S6@B: 1 on hand, threshold 1: low. */
    RH_EXEC(h, "WITH v(sku, wh, snap, res, saf, thr) AS (VALUES"
               " ('S2','A',0,0,0,0), ('S2','B',5,0,0,0), ('S3','A',4,4,0,0), ('S3','B',3,0,0,5),"
               " ('S4','B',6,0,6,0), ('S5','A',8,0,0,2), ('S6','B',1,0,0,1))"
               " INSERT INTO stock(sku, warehouse, snapshot, reserved, safety, threshold)"
               " SELECT k.id, w.id, v.snap, v.res, v.saf, v.thr FROM v"
               " JOIN skus k ON k.code = v.sku JOIN warehouses w ON w.code = v.wh");
    char next[160];
    char all[512];
    snprintf(all, sizeof all, "%s", list_page(NULL, NULL, 100, next, sizeof next));
    CHECK_EQ_STR(all, "S2@A:out,S3@A:out,S3@B,S4@B:out,S6@B");
    CHECK_EQ_STR(next, "");
    /* one page at a time: the same rows, each once */
    char walked[512] = "", cur[160] = "";
    for (int pages = 0; pages < 10; pages++) {
        const char *pg = list_page(pages ? cur : NULL, NULL, 2, next, sizeof next);
        size_t len = strlen(walked);
        snprintf(walked + len, sizeof walked - len, "%s%s", len && pg[0] ? "," : "", pg);
        if (!next[0])
            break;
        snprintf(cur, sizeof cur, "%s", next);
    }
    CHECK_EQ_STR(walked, all);
    CHECK_EQ_STR(list_page(NULL, "A", 100, next, sizeof next), "S2@A:out,S3@A:out");
    CHECK_EQ_STR(list_page(NULL, "B", 1, next, sizeof next), "S3@B");
    CHECK_EQ_STR(list_page(next, "B", 5, next, sizeof next), "S4@B:out,S6@B");
    /* a cursor of the unfiltered list is not one of the low list */
    CHECK(rh_call(h, "stock.list", "low=!1", "cursor=S1 A", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");

    /* the flags in stock.get agree */
    const msgpack_object *r = rh_call(h, "stock.get", "sku=S2", NULL);
    const msgpack_object *whs = r ? mp_map_get(r, "warehouses") : NULL;
    CHECK(whs && whs->via.array.size == 2);
    if (whs && whs->via.array.size == 2) {
        CHECK(rh_bget(&whs->via.array.ptr[0], "low") && rh_bget(&whs->via.array.ptr[0], "out"));
        CHECK(!rh_bget(&whs->via.array.ptr[1], "low") && !rh_bget(&whs->via.array.ptr[1], "out"));
    }
    /* receiving into an out row takes it off the list; the index follows every change */
    CHECK(rh_call(h, "stock.move", "kind=receive", "sku=S2", "warehouse=A", "qty=#3", NULL));
    CHECK_EQ_STR(list_page(NULL, "A", 100, next, sizeof next), "S3@A:out");
    CHECK(rh_call(h, "stock.move", "kind=pick", "sku=S2", "warehouse=A", "qty=#3", NULL));
    CHECK_EQ_STR(list_page(NULL, "A", 100, next, sizeof next), "S2@A:out,S3@A:out");
}

int main(void)
{
    h = rh_new("tally-cover");
    if (!h) {
        perror("mkdtemp");
        return 1;
    }
    d = rh_daemon(h);
    test_threshold();
    test_suggest();
    test_refresh();
    test_refresh_job();
    test_set_fields();
    test_set_validation();
    test_set_cover();
    test_list_low_includes_out();

    rh_free(h);
    return check_result("test_cover");
}
