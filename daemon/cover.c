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
#include <stdint.h>
#include <stdlib.h>

#include "events.h"
#include "log.h"
#include "stock.h"
#include "store.h"
#include "tally/protocol.h"
#include "worker.h"

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

/* Where a refresh is: the last (sku, warehouse) looked at, and the events found so far. */
struct cover_walk {
    int64_t window_days, since; /* sales counted from `since` (epoch seconds) */
    int64_t after_sku, after_wh;
    struct low_event *ev;
    int nev;
    int64_t nlow;
};

/* Rows read per statement in a slice (the budget is checked between rows). */
#define COVER_ROWS 256

/*
 * Walks the rows with cover_days > 0 from w's position (the partial index stock_cover, in
 * (sku, warehouse) order), each with its sales in the window (one range of
 * allocations_sold_by_sku per row), and rewrites the thresholds that changed, inside the
 * caller's transaction, for about budget_us of work (UINT64_MAX: to the end). 1: more rows
 * remain (w says where), 0: done, or an error. Updating the current row of the walk is safe:
 * threshold is not part of any index the walk uses.
 */
static int refresh_slice(struct store *st, struct cover_walk *w, uint64_t budget_us)
{
    uint64_t t0 = budget_us == UINT64_MAX ? 0 : (uint64_t)worker_now_us();
    for (;;) {
        sqlite3_stmt *s = store_stmt(
            st, "SELECT st.sku, st.warehouse, st.snapshot, st.pending, st.reserved, st.safety,"
                " st.threshold, st.cover_days,"
                " COALESCE((SELECT SUM(a.qty) FROM allocations a"
                "   WHERE a.sku = st.sku AND a.warehouse = st.warehouse"
                "   AND a.state <> 'reserved' AND a.shipped_at >= ?1), 0), k.code, w.code"
                " FROM stock st INDEXED BY stock_cover"
                " CROSS JOIN skus k ON k.id = st.sku CROSS JOIN warehouses w ON w.id = st.warehouse"
                " WHERE st.cover_days > 0 AND (st.sku, st.warehouse) > (?2, ?3)"
                " ORDER BY st.sku, st.warehouse LIMIT ?4");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, w->since);
        sqlite3_bind_int64(s, 2, w->after_sku);
        sqlite3_bind_int64(s, 3, w->after_wh);
        sqlite3_bind_int(s, 4, COVER_ROWS);
        int rc, r = 0, rows = 0;
        bool out_of_time = false;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            rows++;
            w->after_sku = sqlite3_column_int64(s, 0);
            w->after_wh = sqlite3_column_int64(s, 1);
            struct stock_figures f = {
                .snapshot = sqlite3_column_int64(s, 2),
                .pending = sqlite3_column_int64(s, 3),
                .reserved = sqlite3_column_int64(s, 4),
                .safety = sqlite3_column_int64(s, 5),
                .threshold = sqlite3_column_int64(s, 6),
            };
            int64_t t = cover_threshold(sqlite3_column_int64(s, 8), w->window_days,
                                        sqlite3_column_int64(s, 7));
            if (t != f.threshold) {
                bool was_low = stock_is_low(&f);
                f.threshold = t;
                if ((r = set_threshold(st, w->after_sku, w->after_wh, t)))
                    break;
                if (!was_low && stock_is_low(&f)) {
                    w->nlow++;
                    if (w->nev < COVER_MAX_EVENTS) {
                        struct low_event *e = &w->ev[w->nev++];
                        copy_text(e->sku, sizeof e->sku, sqlite3_column_text(s, 9));
                        copy_text(e->warehouse, sizeof e->warehouse, sqlite3_column_text(s, 10));
                        e->available = stock_available(&f);
                        e->threshold = t;
                    }
                }
            }
            if (t0 && (uint64_t)worker_now_us() - t0 >= budget_us) {
                out_of_time = true;
                break;
            }
        }
        sqlite3_reset(s);
        if (r)
            return r;
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return store_error(st, rc, "cover refresh");
        if (rc == SQLITE_DONE && rows < COVER_ROWS)
            return 0; /* the walk's end */
        if (out_of_time)
            return 1;
    }
}

/* Announces the low-stock events from `from` on (on the loop, after their commit). */
static void announce(struct tallyd *d, const struct cover_walk *w, int from)
{
    for (int i = from; i < w->nev; i++)
        events_low_stock(d, w->ev[i].sku, w->ev[i].warehouse, w->ev[i].available,
                         w->ev[i].threshold);
}

static void walk_init(struct cover_walk *w, struct tallyd *d, struct low_event *ev)
{
    *w = (struct cover_walk){.window_days = d->cfg.sales_window_days,
                             .since = store_now() - d->cfg.sales_window_days * 86400,
                             .after_sku = INT64_MIN,
                             .after_wh = INT64_MIN,
                             .ev = ev};
}

/*
 * Low stock by days of cover. A stock row with cover_days > 0 has its threshold recomputed
 * from sales: threshold = ceil(sold / window_days * cover_days), where sold is the units
 * shipped from that warehouse in the last [stock] sales_window_days (allocations shipped or
 * consumed). A row that becomes low by it is announced with a low_stock event.
 */
int cover_refresh(struct tallyd *d)
{
    struct store *st = d->store;
    struct low_event *ev = malloc(COVER_MAX_EVENTS * sizeof *ev);
    if (!ev)
        return TALLY_E_NOMEM;
    struct cover_walk w;
    walk_init(&w, d, ev);
    int r = store_begin(st);
    if (r == 0) {
        while ((r = refresh_slice(st, &w, UINT64_MAX)) == 1)
            ;
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
    }
    /* Announced only once committed: a watcher never hears of a threshold that was not kept. */
    if (r == 0) {
        announce(d, &w, 0);
        if (w.nlow > w.nev)
            log_info("cover: %lld more rows became low (see stock.list low)",
                     (long long)(w.nlow - w.nev));
    }
    free(ev);
    return r;
}

/*
 * The same off the loop: a write job (worker.h) on the writer's connection, in transactions
 * of about WORKER_SLICE_US each (the walk's position kept in the job between them; a row's
 * threshold depends on that row alone, so a stop between slices leaves every row either
 * refreshed or as it was), for about COVER_JOB_US per job, queued again until the walk ends.
 * The events of a job's slices are announced from the loop once the job is done (after their
 * commits).
 */
#define COVER_JOB_US 20000

struct cover_job {
    struct worker_job job; /* first */
    struct tallyd *d;
    struct cover_walk w;
    int announced; /* events announced so far */
    struct low_event ev[COVER_MAX_EVENTS];
};

static int cover_job_run(struct worker_job *job, struct store *st)
{
    struct cover_job *cj = (struct cover_job *)job;
    int64_t t0 = worker_now_us();
    int more;
    do {
        int r = store_begin(st);
        if (r)
            return r;
        int saved_nev = cj->w.nev;
        int64_t saved_nlow = cj->w.nlow, saved_sku = cj->w.after_sku, saved_wh = cj->w.after_wh;
        more = refresh_slice(st, &cj->w, WORKER_SLICE_US);
        if (more >= 0 && (r = store_commit(st)) != 0)
            more = r;
        else if (more < 0)
            store_rollback(st);
        if (more < 0) { /* nothing of this slice kept: neither its position nor its events */
            cj->w.nev = saved_nev, cj->w.nlow = saved_nlow;
            cj->w.after_sku = saved_sku, cj->w.after_wh = saved_wh;
        }
    } while (more == 1 && worker_now_us() - t0 < COVER_JOB_US);
    return more;
}

static void cover_job_done(struct worker_job *job, int status)
{
    struct cover_job *cj = (struct cover_job *)job;
    struct tallyd *d = cj->d;
    if (!d->stopping) {
        announce(d, &cj->w, cj->announced);
        cj->announced = cj->w.nev;
    }
    if (status == 1 && !d->stopping && worker_write(d, &cj->job) == 0)
        return;
    if (status < 0 && status != TALLY_E_SHUTTING_DOWN)
        log_error("days-of-cover thresholds: %s", tally_strerror(status));
    else if (status == 0 && cj->w.nlow > cj->w.nev)
        log_info("cover: %lld more rows became low (see stock.list low)",
                 (long long)(cj->w.nlow - cj->w.nev));
    d->cover = NULL;
    free(cj);
}

int cover_refresh_start(struct tallyd *d)
{
    if (!d->workers || !d->loop)
        return cover_refresh(d);
    if (d->cover)
        return 0; /* one is running: it will do */
    struct cover_job *cj = calloc(1, sizeof *cj);
    if (!cj)
        return TALLY_E_NOMEM;
    cj->d = d;
    walk_init(&cj->w, d, cj->ev);
    cj->job.run = cover_job_run;
    cj->job.done = cover_job_done;
    int r = worker_write(d, &cj->job);
    if (r) {
        free(cj);
        return r == TALLY_E_SHUTTING_DOWN ? 0 : r;
    }
    d->cover = cj;
    return 0;
}
