/*
 * Days of cover: thresholds and restock suggestions from the sales of the last window.
 *
 * Sales are allocations that left a warehouse: state 'consumed' or 'shipped', counted by
 * shipped_at. The query says `state <> 'reserved'`, which is the same set (the CHECK on
 * allocations.state admits only those three values) and is the exact WHERE of the partial
 * index allocations_sold(shipped_at, sku, warehouse), so SQLite uses it: one range scan over
 * the window, never a scan of every allocation ever made.
 */
#include "cover.h"

#include <stdbool.h>
#include <stdlib.h>

#include "events.h"
#include "log.h"
#include "stock.h"
#include "store.h"
#include "tally/protocol.h"

/* Inputs are clamped to these so that the arithmetic below stays within 64 bits: quantities
 * to 10^15 (a figure is at most 10^12, a sum of a few of them a little more) and days to 10^6
 * (the settings allow at most 365). */
#define COVER_MAX_UNITS 1000000000000000LL /* 10^15 */
#define COVER_MAX_DAYS 1000000LL           /* 10^6 */
/* A threshold too large to mean anything; still leaves room for the sums in cover_suggest. */
#define COVER_SATURATED (INT64_MAX / 4)

/* Low-stock events announced by one refresh; more rows than this show in `stock.list low`. */
#define COVER_MAX_EVENTS 256

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

int64_t cover_threshold(int64_t sold, int64_t window_days, int64_t cover_days)
{
    if (sold <= 0 || window_days <= 0 || cover_days <= 0)
        return 0;
    sold = clamp(sold, 0, COVER_MAX_UNITS);
    window_days = clamp(window_days, 1, COVER_MAX_DAYS);
    cover_days = clamp(cover_days, 1, COVER_MAX_DAYS);
    /* ceil(sold * cover / window) without forming sold * cover: with sold = q * window + r,
     * it is q * cover + ceil(r * cover / window). r < window <= 10^6 and cover <= 10^6, so
     * r * cover < 10^12; q * cover is checked (it exceeds 64 bits only for absurd inputs,
     * which saturate). For figures up to 10^12 and days up to 365 the result is exact. */
    int64_t q = sold / window_days, r = sold % window_days;
    if (q > COVER_SATURATED / cover_days)
        return COVER_SATURATED;
    return q * cover_days + (r * cover_days + window_days - 1) / window_days;
}

int64_t cover_suggest(int64_t sold, int64_t window_days, int64_t cover_days, int64_t on_hand,
                      int64_t reserved)
{
    int64_t need = cover_threshold(sold, window_days, cover_days);
    int64_t have = clamp(on_hand, -COVER_MAX_UNITS, COVER_MAX_UNITS) -
                   clamp(reserved, -COVER_MAX_UNITS, COVER_MAX_UNITS);
    /* need <= COVER_SATURATED + 10^6 and |have| <= 2 * 10^15: the difference fits. */
    return need > have ? need - have : 0;
}

struct low_event {
    char sku[TALLY_MAX_ID_LEN + 1];
    char warehouse[TALLY_MAX_ID_LEN + 1];
    int64_t available, threshold;
};

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < cap; i++)
        dst[i] = (char)src[i];
    dst[i] = 0;
}

static int set_threshold(struct store *st, int64_t sku, int64_t wh, int64_t threshold)
{
    sqlite3_stmt *s =
        store_stmt(st, "UPDATE stock SET threshold = ?3 WHERE sku = ?1 AND warehouse = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, threshold);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "cover threshold");
}

/*
 * Walks the rows with cover_days > 0, each with its sales in the window (the subquery is one
 * range scan of allocations_sold, grouped), and rewrites the thresholds that changed. Updating
 * the current row of the walk is safe: threshold is not part of any index the walk uses.
 */
static int refresh_locked(struct tallyd *d, int64_t now, struct low_event *ev, int *nev,
                          int64_t *nlow)
{
    struct store *st = d->store;
    int64_t window = d->cfg.sales_window_days;
    sqlite3_stmt *s = store_stmt(
        st, "SELECT st.sku, st.warehouse, st.snapshot, st.pending, st.reserved, st.safety,"
            " st.threshold, st.cover_days, COALESCE(x.sold, 0), k.code, w.code"
            " FROM stock st"
            " JOIN skus k ON k.id = st.sku JOIN warehouses w ON w.id = st.warehouse"
            " LEFT JOIN (SELECT sku, warehouse, SUM(qty) AS sold FROM allocations"
            "   WHERE state <> 'reserved' AND shipped_at >= ?1 GROUP BY sku, warehouse) x"
            "   ON x.sku = st.sku AND x.warehouse = st.warehouse"
            " WHERE st.cover_days > 0");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, now - window * 86400);
    int rc, r = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct stock_figures f = {
            .snapshot = sqlite3_column_int64(s, 2),
            .pending = sqlite3_column_int64(s, 3),
            .reserved = sqlite3_column_int64(s, 4),
            .safety = sqlite3_column_int64(s, 5),
            .threshold = sqlite3_column_int64(s, 6),
        };
        int64_t t = cover_threshold(sqlite3_column_int64(s, 8), window, sqlite3_column_int64(s, 7));
        if (t == f.threshold)
            continue;
        bool was_low = stock_is_low(&f);
        f.threshold = t;
        if ((r = set_threshold(st, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), t)))
            break;
        if (was_low || !stock_is_low(&f))
            continue;
        (*nlow)++;
        if (*nev < COVER_MAX_EVENTS) {
            struct low_event *e = &ev[(*nev)++];
            copy_text(e->sku, sizeof e->sku, sqlite3_column_text(s, 9));
            copy_text(e->warehouse, sizeof e->warehouse, sqlite3_column_text(s, 10));
            e->available = stock_available(&f);
            e->threshold = t;
        }
    }
    sqlite3_reset(s);
    if (r)
        return r;
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "cover refresh");
}

int cover_refresh(struct tallyd *d)
{
    struct store *st = d->store;
    struct low_event *ev = malloc(COVER_MAX_EVENTS * sizeof *ev);
    if (!ev)
        return TALLY_E_NOMEM;
    int nev = 0;
    int64_t nlow = 0;
    int r = store_begin(st);
    if (r == 0) {
        r = refresh_locked(d, store_now(), ev, &nev, &nlow);
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
    }
    /* Announced only once committed: a watcher never hears of a threshold that was not kept. */
    if (r == 0) {
        for (int i = 0; i < nev; i++)
            events_low_stock(d, ev[i].sku, ev[i].warehouse, ev[i].available, ev[i].threshold);
        if (nlow > nev)
            log_info("cover: %lld more rows became low (see stock.list low)",
                     (long long)(nlow - nev));
    }
    free(ev);
    return r;
}
