#include "fulfil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "address.h"
#include "alloc.h"
#include "codec.h"
#include "coord.h"
#include "cover.h"
#include "events.h"
#include "exceptions.h"
#include "log.h"
#include "outbox.h"
#include "priority.h"
#include "privacy.h"
#include "retain.h"
#include "reserve.h"
#include "stock.h"
#include "store.h"
#include "tally/protocol.h"

#define PRIORITY_EVERY_S 60      /* priorities follow the clock (deadlines come nearer) */
#define DEADLINE_EVERY_S 60      /* ship-by warnings */
#define RETRY_EVERY_S 10         /* allocation of orders still waiting for stock */
#define STALE_EVERY_S 30         /* warehouses' data age, for the stale-data policy (at most) */
#define COVER_EVERY_S 600        /* days-of-cover thresholds */
#define PURGE_EVERY_S 3600       /* personal data of finished orders */
#define PURGE_RETRY_S 60         /* after a purge found the replica locked */
#define PRIORITY_BATCH 200       /* orders rescored per slice */
#define RETRY_BATCH 24           /* waiting orders tried per slice (also the largest batch) */
#define FULFIL_BUDGET_NS 1000000 /* one slice's work on changed orders: 1 ms */

#define SLICE_BUCKET_US 100 /* slice figures: 100 us buckets up to 20 ms, then one more */
#define SLICE_BUCKETS 200
#define SLICE_LOG_MIN 50                /* slices in a run before its figures are logged */
#define SLICE_LOG_EVERY_NS 10000000000u /* and every 10 s while a run goes on */

struct fulfil {
    struct tallyd *d;
    uv_timer_t timer;
    uv_idle_t idle; /* runs slices back to back (between I/O) while work remains */
    int closed;     /* handles closed so far at a stop; freed at 2 */
    int64_t next_priority, next_deadline, next_retry, next_stale, next_cover, next_purge;
    int64_t priority_cursor; /* orders.id: rescoring goes round the open orders in batches */
    /* The deadline scan's position in (ship_by, id) order: each open order is looked at once,
     * when its ship-by comes within the warning horizon (order_step looks at an order whose
     * ship-by is already near when it changes). Starts before everything. */
    int64_t deadline_by, deadline_id;
    /* The retry round's position in orders_ready order; retry_by INT64_MIN: at the start. */
    int64_t retry_prio, retry_by, retry_id;
    /* A slice found the writer lock held by a write job (an import, a purge): it comes back
     * in WRITER_WAIT_MS rather than have the loop wait for that job's transaction. */
    bool writer_held;
    bool yielded; /* the pass gave way to a group commit (fulfil_writer_free) */
    /* How long the pass's slices held the loop (wall and the loop thread's CPU), in
     * SLICE_BUCKET_US buckets, logged when a run of slices ends (README "Performance"). */
    struct slice_stats {
        uint32_t n, wall[SLICE_BUCKETS + 1], cpu[SLICE_BUCKETS + 1];
        uint64_t wall_max_us, cpu_max_us, wall_sum_us;
        uint64_t since; /* uv_hrtime of the first slice counted */
    } stats;
};

#define WRITER_WAIT_MS 2

/* A transaction for the pass's own work (not for a caller waiting on it): never waits for a
 * write job's transaction, and is lazy (store.h "Lazy commits"): a decision lost at a power
 * cut is made again; what it sent was made durable before it left (the take is durable while
 * a lazy commit's rows wait). */
static int pass_begin(struct tallyd *d)
{
    bool held = false;
    int r = store_begin_nowait_as(d->store, STORE_LAZY, &held);
    /* A write job's transaction, or a group commit (handed to its thread): again in a moment,
     * or when that commit returns (fulfil_writer_free). */
    if ((held || store_yielded(d->store)) && d->fulfil)
        d->fulfil->writer_held = true;
    if (store_yielded(d->store) && d->fulfil)
        d->fulfil->yielded = true;
    return r;
}

/*
 * The rounds' positions, kept in the replica (fulfil_cursor, schema 14) so a start goes on
 * where the pass was: written inside the transaction of the work it covers, so after a crash
 * at any point the position read back is never past work that was not kept.
 */
static int cursor_save(struct store *st, const struct fulfil *f)
{
    sqlite3_stmt *s = store_stmt(st, "UPDATE fulfil_cursor SET deadline_by = ?1, deadline_id = ?2,"
                                     " retry_prio = ?3, retry_by = ?4, retry_id = ?5,"
                                     " next_retry = ?6, priority_id = ?7, next_priority = ?8"
                                     " WHERE id = 1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, f->deadline_by);
    sqlite3_bind_int64(s, 2, f->deadline_id);
    sqlite3_bind_int64(s, 3, f->retry_prio);
    sqlite3_bind_int64(s, 4, f->retry_by);
    sqlite3_bind_int64(s, 5, f->retry_id);
    sqlite3_bind_int64(s, 6, f->next_retry);
    sqlite3_bind_int64(s, 7, f->priority_cursor);
    sqlite3_bind_int64(s, 8, f->next_priority);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "fulfilment cursor");
}

/* Reads the positions back at a start; a replica without them starts at the beginning. A due
 * time further ahead than its period (the clock went back) is brought back to it. */
static void cursor_load(struct store *st, struct fulfil *f, int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT deadline_by, deadline_id, retry_prio, retry_by,"
                                     " retry_id, next_retry, priority_id, next_priority"
                                     " FROM fulfil_cursor WHERE id = 1");
    if (!s)
        return;
    if (sqlite3_step(s) == SQLITE_ROW) {
        f->deadline_by = sqlite3_column_int64(s, 0);
        f->deadline_id = sqlite3_column_int64(s, 1);
        f->retry_prio = sqlite3_column_int64(s, 2);
        f->retry_by = sqlite3_column_int64(s, 3);
        f->retry_id = sqlite3_column_int64(s, 4);
        f->next_retry = sqlite3_column_int64(s, 5);
        f->priority_cursor = sqlite3_column_int64(s, 6);
        f->next_priority = sqlite3_column_int64(s, 7);
        if (f->next_retry > now + RETRY_EVERY_S)
            f->next_retry = now + RETRY_EVERY_S;
        if (f->next_priority > now + PRIORITY_EVERY_S)
            f->next_priority = now + PRIORITY_EVERY_S;
        if (f->priority_cursor < 0)
            f->priority_cursor = 0;
    }
    sqlite3_reset(s);
}

/* ---- the marketplace status, as the fulfilment side sees it ---- */

enum mp_class { MP_UNPAID, MP_HELD, MP_SHIP, MP_SHIPPED, MP_CANCEL, MP_FINISH, MP_OTHER };

static int mp_class(const char *status)
{
    static const struct {
        const char *status;
        int cls;
    } map[] = {
        {"PLACE_ORDER_SUCCESS", MP_UNPAID},
        {"RISK_CONTROL", MP_HELD},
        {"IN_FROZEN", MP_HELD},
        {"WAIT_SELLER_SEND_GOODS", MP_SHIP},
        {"SELLER_PART_SEND_GOODS", MP_SHIP},
        {"WAIT_BUYER_ACCEPT_GOODS", MP_SHIPPED},
        {"FUND_PROCESSING", MP_SHIPPED},
        {"IN_ISSUE", MP_SHIPPED},
        {"IN_CANCEL", MP_CANCEL},
        {"FINISH", MP_FINISH},
    };
    for (size_t i = 0; status && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i].status, status))
            return map[i].cls;
    return MP_OTHER;
}

/* ---- small helpers ---- */

struct order {
    int64_t ref;
    char order_id[TALLY_MAX_ID_LEN + 1];
    char status[TALLY_MAX_ID_LEN + 1];
    char fstate[16];
    char country[8];
    char currency[8];
    char service[TALLY_MAX_ID_LEN * 2 + 1];
    char buyer_level[33];
    int64_t ship_by; /* 0 when unknown */
    int64_t total_minor;
    int64_t created_at;
    bool cancel_requested;
    bool has_finished;
};

static void col_text(sqlite3_stmt *s, int col, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

#define ORDER_SELECT                                                                               \
    "SELECT id, order_id, status, fstate, country, currency, service, buyer_level, ship_by,"       \
    " total_minor, created_at, cancel_requested, finished_at FROM orders"

static void order_read(sqlite3_stmt *s, struct order *o)
{
    memset(o, 0, sizeof *o);
    o->ref = sqlite3_column_int64(s, 0);
    col_text(s, 1, o->order_id, sizeof o->order_id);
    col_text(s, 2, o->status, sizeof o->status);
    col_text(s, 3, o->fstate, sizeof o->fstate);
    col_text(s, 4, o->country, sizeof o->country);
    col_text(s, 5, o->currency, sizeof o->currency);
    col_text(s, 6, o->service, sizeof o->service);
    col_text(s, 7, o->buyer_level, sizeof o->buyer_level);
    o->ship_by = sqlite3_column_int64(s, 8);
    o->total_minor = sqlite3_column_int64(s, 9);
    o->created_at = sqlite3_column_int64(s, 10);
    o->cancel_requested = sqlite3_column_int(s, 11) != 0;
    o->has_finished = sqlite3_column_type(s, 12) != SQLITE_NULL;
}

static int order_load(struct store *st, int64_t ref, struct order *o)
{
    sqlite3_stmt *s = store_stmt(st, ORDER_SELECT " WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        order_read(s, o);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return TALLY_E_NOT_FOUND;
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "order");
}

static int order_by_id(struct store *st, const char *order_id, struct order *o)
{
    sqlite3_stmt *s = store_stmt(st, ORDER_SELECT " WHERE order_id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        order_read(s, o);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return TALLY_E_NOT_FOUND;
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "order");
}

static int set_fstate(struct store *st, struct order *o, const char *fstate, int64_t now)
{
    bool ends = !strcmp(fstate, "finished") || !strcmp(fstate, "cancelled");
    bool ships = !strcmp(fstate, "shipped");
    sqlite3_stmt *s = store_stmt(st, "UPDATE orders SET fstate = ?2,"
                                     " finished_at = CASE WHEN ?3 THEN COALESCE(finished_at, ?4)"
                                     "   ELSE finished_at END,"
                                     " shipped_at = CASE WHEN ?5 THEN COALESCE(shipped_at, ?4)"
                                     "   ELSE shipped_at END"
                                     " WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    sqlite3_bind_text(s, 2, fstate, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, ends);
    sqlite3_bind_int64(s, 4, now);
    sqlite3_bind_int(s, 5, ships);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "order state");
    if (strcmp(o->fstate, fstate) != 0)
        log_debug("order %s: %s -> %s", o->order_id, o->fstate, fstate);
    snprintf(o->fstate, sizeof o->fstate, "%s", fstate);
    return 0;
}

static bool fstate_is(const struct order *o, const char *a)
{
    return !strcmp(o->fstate, a);
}

static int raise_order(struct tallyd *d, const struct order *o, const char *kind, int64_t wh,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int raise_order(struct tallyd *d, const struct order *o, const char *kind, int64_t wh,
                       const char *fmt, ...)
{
    char msg[TALLY_MAX_TEXT_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct exc_raise e = {.kind = kind, .order_ref = o->ref, .wh = wh, .message = msg};
    return exceptions_raise(d, &e, NULL);
}

static int clear_order(struct tallyd *d, const struct order *o, const char *kind, const char *note)
{
    struct exc_raise e = {.kind = kind, .order_ref = o->ref};
    return exceptions_clear(d, &e, note);
}

static bool exception_open(struct store *st, int64_t ref, const char *kind)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT 1 FROM exceptions WHERE order_ref = ?1 AND kind = ?2"
                                     " AND state <> 'resolved' LIMIT 1");
    if (!s)
        return false;
    sqlite3_bind_int64(s, 1, ref);
    sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
    bool open = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return open;
}

static void warehouse_code(struct store *st, int64_t wh, char *out, size_t cap)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT code FROM warehouses WHERE id = ?1");
    out[0] = 0;
    if (!s)
        return;
    sqlite3_bind_int64(s, 1, wh);
    if (sqlite3_step(s) == SQLITE_ROW)
        col_text(s, 0, out, cap);
    sqlite3_reset(s);
}

/* Announces a row that became low by a reservation (after the fact: events are advice). */
static int refresh(struct tallyd *d, int64_t sku, int64_t wh)
{
    struct reserve_change ch;
    int r = reserve_refresh(d->store, sku, wh, &ch);
    if (r == 0 && ch.became_low) {
        char code[TALLY_MAX_ID_LEN + 1] = "", whc[TALLY_MAX_ID_LEN + 1];
        sqlite3_stmt *s = store_stmt(d->store, "SELECT code FROM skus WHERE id = ?1");
        if (s) {
            sqlite3_bind_int64(s, 1, sku);
            if (sqlite3_step(s) == SQLITE_ROW)
                col_text(s, 0, code, sizeof code);
            sqlite3_reset(s);
        }
        warehouse_code(d->store, wh, whc, sizeof whc);
        events_low_stock(d, code, whc, ch.available, ch.threshold);
    }
    return r;
}

/* ---- priority ---- */

static int score(struct tallyd *d, struct order *o, int64_t now)
{
    struct priority_input in = {
        .now = now,
        .ship_by = o->ship_by,
        .total_minor = o->total_minor,
        .service = o->service[0] ? o->service : NULL,
        .buyer_level = o->buyer_level[0] ? o->buyer_level : NULL,
    };
    char why[512];
    int p = priority_score(&d->cfg.priority, &in, why, sizeof why);
    sqlite3_stmt *s = store_stmt(d->store, "UPDATE orders SET priority = ?2, priority_why = ?3"
                                           " WHERE id = ?1 AND (priority IS NOT ?2"
                                           "   OR priority_why IS NOT ?3)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    sqlite3_bind_int(s, 2, p);
    if (why[0])
        sqlite3_bind_text(s, 3, why, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? 0 : store_error(d->store, rc, "priority");
}

/* ---- allocation ---- */

struct alloc_in {
    struct alloc_line lines[ALLOC_MAX_LINES];
    int64_t line_sku[ALLOC_MAX_LINES];
    int nlines;
    struct alloc_wh whs[ALLOC_MAX_WH];
    int64_t wh_id[ALLOC_MAX_WH];
    char fulfilment[ALLOC_MAX_WH][12];
    int nwh;
};

static int gather(struct store *st, const struct order *o, struct alloc_in *in)
{
    memset(in, 0, sizeof *in);
    /* Each line's units that no allocation covers yet: all of it for a new order; for an
     * order a warehouse gave back part of, only that part. */
    sqlite3_stmt *s = store_stmt(
        st, "SELECT l.sku, k.code, l.qty - (SELECT COALESCE(SUM(a.qty), 0) FROM allocations a"
            "   WHERE a.order_ref = l.order_ref AND a.sku = l.sku) AS rest"
            " FROM order_lines l JOIN skus k ON k.id = l.sku WHERE l.order_ref = ?1"
            " AND rest > 0 ORDER BY k.code");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && in->nlines < ALLOC_MAX_LINES) {
        in->line_sku[in->nlines] = sqlite3_column_int64(s, 0);
        col_text(s, 1, in->lines[in->nlines].sku, sizeof in->lines[0].sku);
        in->lines[in->nlines].qty = sqlite3_column_int64(s, 2);
        in->nlines++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_error(st, rc, "order lines");
    s = store_stmt(st, "SELECT id, code, country, fulfilment FROM warehouses"
                       " ORDER BY code LIMIT ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int(s, 1, ALLOC_MAX_WH);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int i = in->nwh++;
        in->wh_id[i] = sqlite3_column_int64(s, 0);
        col_text(s, 1, in->whs[i].code, sizeof in->whs[i].code);
        col_text(s, 2, in->whs[i].country, sizeof in->whs[i].country);
        col_text(s, 3, in->fulfilment[i], sizeof in->fulfilment[i]);
        in->whs[i].eligible = strcmp(in->fulfilment[i], "none") != 0;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "warehouses");
    s = store_stmt(st, "SELECT warehouse FROM allocation_bans WHERE order_ref = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        for (int w = 0; w < in->nwh; w++)
            if (in->wh_id[w] == sqlite3_column_int64(s, 0))
                in->whs[w].eligible = false;
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "allocation bans");
    s = store_stmt(st, "SELECT MAX(0, snapshot + pending - reserved - safety) FROM stock"
                       " WHERE sku = ?1 AND warehouse = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    for (int w = 0; w < in->nwh; w++)
        for (int l = 0; l < in->nlines; l++) {
            sqlite3_bind_int64(s, 1, in->line_sku[l]);
            sqlite3_bind_int64(s, 2, in->wh_id[w]);
            rc = sqlite3_step(s);
            in->whs[w].avail[l] = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
            sqlite3_reset(s);
            if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                return store_error(st, rc, "stock");
        }
    return 0;
}

static int record_decision(struct store *st, const struct order *o, const char *rule,
                           const char *why, int64_t wh)
{
    sqlite3_stmt *s = store_stmt(st, "UPDATE orders SET alloc_rule = ?2, alloc_why = ?3,"
                                     " warehouse = CASE WHEN ?4 > 0 THEN ?4 ELSE warehouse END"
                                     " WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    sqlite3_bind_text(s, 2, rule, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, wh);
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "allocation");
}

static int send_outbound(struct tallyd *d, struct order *o);
static int set_dirty(struct store *st, int64_t ref, int v);

/*
 * Allocates a ready order: decides (alloc.c), reserves every part, and asks outbound
 * warehouses to ship. Out of stock keeps the order ready with an exception; the retry round
 * tries again. Sets *changed when the order moved on.
 */
static int allocate(struct tallyd *d, struct order *o, int64_t now, bool *changed)
{
    struct store *st = d->store;
    struct alloc_in *in = malloc(sizeof *in);
    struct alloc_result *res = malloc(sizeof *res);
    int r = (!in || !res) ? TALLY_E_NOMEM : gather(st, o, in);
    bool remainder = r == 0 && !fstate_is(o, "ready");
    if (r == 0 && in->nlines == 0) {
        if (!remainder)
            r = raise_order(d, o, EXC_OUT_OF_STOCK, 0, "order %s has no lines to allocate",
                            o->order_id);
        goto out;
    }
    if (r == 0 &&
        alloc_decide(o->country, in->lines, in->nlines, in->whs, in->nwh, &d->cfg.alloc, res) != 0)
        r = TALLY_E_INTERNAL;
    if (r)
        goto out;
    if (res->rule == ALLOC_NONE) {
        r = record_decision(st, o, alloc_rule_name(res->rule), res->why, 0);
        if (r == 0)
            r = raise_order(d, o, EXC_OUT_OF_STOCK, 0, "%s", res->why);
        /* A ready order is retried by the retry round; a remainder of an order under way is
         * looked at again then too. */
        if (r == 0 && remainder)
            r = set_dirty(st, o->ref, 2);
        goto out;
    }
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO allocations(order_ref, sku, warehouse, qty,"
                                     " created_at) VALUES(?1, ?2, ?3, ?4, ?5)");
    for (int i = 0; r == 0 && i < res->nparts; i++) {
        const struct alloc_part *p = &res->parts[i];
        if (!s) {
            r = TALLY_E_STORAGE;
            break;
        }
        sqlite3_bind_int64(s, 1, o->ref);
        sqlite3_bind_int64(s, 2, in->line_sku[p->line]);
        sqlite3_bind_int64(s, 3, in->wh_id[p->wh]);
        sqlite3_bind_int64(s, 4, p->qty);
        sqlite3_bind_int64(s, 5, now);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            r = store_error(st, rc, "allocation");
        else
            r = refresh(d, in->line_sku[p->line], in->wh_id[p->wh]);
    }
    if (r == 0)
        r = record_decision(st, o, alloc_rule_name(res->rule), res->why,
                            in->wh_id[res->parts[0].wh]);
    /* A remainder joins an order already under way: its state stays. */
    if (r == 0 && !remainder)
        r = set_fstate(st, o, "allocated", now);
    if (r == 0)
        r = clear_order(d, o, EXC_OUT_OF_STOCK, "allocated");
    if (r == 0)
        r = send_outbound(d, o);
    if (r == 0)
        *changed = true;
out:
    free(in);
    free(res);
    return r;
}

/* Drops the order's reservations that have not left (state 'reserved'): at one warehouse,
 * at all (wh 0), or at every warehouse without an outbound system (wh -1: nothing was asked
 * of them, so nothing needs cancelling there). */
static int release(struct tallyd *d, const struct order *o, int64_t wh)
{
    struct store *st = d->store;
    sqlite3_stmt *s = store_stmt(st, "DELETE FROM allocations WHERE order_ref = ?1"
                                     " AND state = 'reserved' AND (?2 = 0 OR warehouse = ?2"
                                     "   OR (?2 = -1 AND warehouse IN (SELECT id FROM warehouses"
                                     "     WHERE fulfilment <> 'outbound')))"
                                     " RETURNING sku, warehouse");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    sqlite3_bind_int64(s, 2, wh);
    int64_t pairs[ALLOC_MAX_PARTS][2];
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < ALLOC_MAX_PARTS) {
        pairs[n][0] = sqlite3_column_int64(s, 0);
        pairs[n][1] = sqlite3_column_int64(s, 1);
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "release");
    for (int i = 0; i < n; i++) {
        int r = refresh(d, pairs[i][0], pairs[i][1]);
        if (r)
            return r;
    }
    return 0;
}

static int count_allocations(struct store *st, int64_t ref, const char *state, int64_t wh)
{
    sqlite3_stmt *s =
        store_stmt(st, "SELECT COUNT(*) FROM allocations WHERE order_ref = ?1"
                       " AND (?2 IS NULL OR state = ?2) AND (?3 = 0 OR warehouse = ?3)");
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, ref);
    if (state)
        sqlite3_bind_text(s, 2, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, wh);
    int n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_reset(s);
    return n;
}

/* ---- outbound orders (warehouses with outbound fulfilment) ---- */

static bool outbox_has(struct store *st, const char *key)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT 1 FROM outbox WHERE key = ?1");
    if (!s)
        return false;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    bool has = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return has;
}

static void pack_col(msgpack_packer *pk, const char *key, sqlite3_stmt *s, int col)
{
    mp_pack_key(pk, key);
    const unsigned char *t = sqlite3_column_text(s, col);
    if (t)
        mp_pack_strz(pk, (const char *)t);
    else
        msgpack_pack_nil(pk);
}

/* Packs {id, lines: [{sku, qty}], ship_to: {...}, service, station} for one warehouse's part
 * (station: this coordinator's mark, coord.h, when it has one; each connector puts it where
 * its warehouse stores and echoes it). */
static int outbound_payload(struct tallyd *d, const struct order *o, int64_t wh,
                            msgpack_sbuffer *sb)
{
    struct store *st = d->store;
    const char *mark = coord_mark(d);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, mark[0] ? 5 : 4);
    mp_pack_kv_str(&pk, "id", o->order_id);
    if (mark[0])
        mp_pack_kv_str(&pk, "station", mark);
    mp_pack_key(&pk, "lines");
    sqlite3_stmt *s = store_stmt(st, "SELECT k.code, SUM(a.qty) FROM allocations a"
                                     " JOIN skus k ON k.id = a.sku WHERE a.order_ref = ?1"
                                     " AND a.warehouse = ?2 AND a.state = 'reserved'"
                                     " GROUP BY k.code ORDER BY k.code");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    sqlite3_bind_int64(s, 2, wh);
    size_t arr = mp_array_begin(&pk);
    uint32_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        msgpack_pack_map(&pk, 2);
        pack_col(&pk, "sku", s, 0);
        mp_pack_kv_int(&pk, "qty", sqlite3_column_int64(s, 1));
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbound lines");
    mp_array_end(&pk, arr, n);
    s = store_stmt(st, "SELECT buyer_name, address, city, postcode, country, phone, service"
                       " FROM orders WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
        sqlite3_reset(s);
        return store_error(st, rc, "outbound ship-to");
    }
    mp_pack_key(&pk, "ship_to"); /* six keys; "service" after them is the outer map's last */
    msgpack_pack_map(&pk, 6);
    pack_col(&pk, "name", s, 0);
    pack_col(&pk, "address", s, 1);
    pack_col(&pk, "city", s, 2);
    pack_col(&pk, "postcode", s, 3);
    pack_col(&pk, "country", s, 4);
    pack_col(&pk, "phone", s, 5);
    pack_col(&pk, "service", s, 6);
    sqlite3_reset(s);
    return n > 0 ? 0 : TALLY_E_NOT_FOUND;
}

/* The outbound-fulfilment warehouses holding a part of the order (only parts still waiting
 * to leave, with reserved_only), by code. */
struct wh_list {
    int n;
    int64_t id[ALLOC_MAX_WH];
    char code[ALLOC_MAX_WH][TALLY_MAX_ID_LEN + 1];
};

static int outbound_whs(struct store *st, int64_t ref, bool reserved_only, struct wh_list *out)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT DISTINCT a.warehouse, w.code FROM allocations a"
                                     " JOIN warehouses w ON w.id = a.warehouse"
                                     " WHERE a.order_ref = ?1 AND (?2 = 0 OR a.state = 'reserved')"
                                     " AND w.fulfilment = 'outbound' ORDER BY w.code");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    sqlite3_bind_int(s, 2, reserved_only);
    int rc;
    out->n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && out->n < ALLOC_MAX_WH) {
        out->id[out->n] = sqlite3_column_int64(s, 0);
        col_text(s, 1, out->code[out->n], sizeof out->code[0]);
        out->n++;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_error(st, rc, "outbound warehouses");
}

/* The outbox key of a decision about an order at a warehouse ("ob" create, "obc" cancel) and
 * its target; *due says whether it was not appended before (each is sent once, ever). */
static void decision_key(struct store *st, int kind, const char *code, const struct order *o,
                         char key[160], char target[80], bool *due)
{
    outbox_key_order(key, 160, kind, code, o->order_id);
    outbox_target_wh(target, 80, code);
    *due = !outbox_has(st, key);
}

/* Appends the cancel of order o at the warehouse of `target` under `key` (decision_key "obc"):
 * the warehouse is asked once, by the order id it deduplicates by. */
static int append_cancel(struct store *st, const struct order *o, const char *key,
                         const char *target)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_kv_str(&pk, "id", o->order_id);
    int64_t id;
    int r = outbox_append(st, key, target, o->order_id, OBX_OUTBOUND_CANCEL, sb.data, sb.size, &id);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

/* Whether the order's ship-to came masked and its full address is not read yet (orders.receipt
 * = 1, set by the marketplace connector; it reads it with order.receiptinfo.get) or its read
 * was refused (2): the order holds no address to send. */
static bool receipt_waiting(struct store *st, int64_t ref)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT 1 FROM orders WHERE id = ?1 AND receipt <> 0");
    if (!s)
        return true;
    sqlite3_bind_int64(s, 1, ref);
    bool w = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return w;
}

/*
 * Creates the outbound orders of an allocated order at its outbound warehouses: one outbox
 * row each, key "ob:<WH>:<order id>" (the warehouse deduplicates by the order id forever).
 * Held back while the order has an open bad-address or payment-held exception: goods must
 * not leave for an address a carrier cannot deliver to, or before the payment clears; and
 * while its masked ship-to waits for the full one.
 */
static int send_outbound(struct tallyd *d, struct order *o)
{
    struct store *st = d->store;
    /* An outbound order carries the full address: never the masked one. */
    if (!coord_decides(d, NULL, 0) || exception_open(st, o->ref, EXC_BAD_ADDRESS) ||
        exception_open(st, o->ref, EXC_PAYMENT_HELD) || receipt_waiting(st, o->ref))
        return 0;
    struct wh_list w;
    int r = outbound_whs(st, o->ref, true, &w);
    for (int i = 0; r == 0 && i < w.n; i++) {
        char key[160], target[80];
        bool due;
        decision_key(st, OBX_OUTBOUND, w.code[i], o, key, target, &due);
        if (!due)
            continue;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        int64_t id;
        r = outbound_payload(d, o, w.id[i], &sb);
        if (r == 0)
            r = outbox_append(st, key, target, o->order_id, OBX_OUTBOUND, sb.data, sb.size, &id);
        msgpack_sbuffer_destroy(&sb);
    }
    return r;
}

/* Whether an outbound order was asked of any warehouse holding a part (it may have reached
 * it): looked up by the rows' unique keys. A row the warehouse refused and the operator
 * discarded never created anything there. */
static bool outbound_asked(struct store *st, const struct order *o)
{
    struct wh_list w;
    if (outbound_whs(st, o->ref, false, &w) != 0)
        return true;
    sqlite3_stmt *s =
        store_stmt(st, "SELECT 1 FROM outbox WHERE key = ?1 AND state <> 'discarded'");
    if (!s)
        return true;
    for (int i = 0; i < w.n; i++) {
        char key[160];
        outbox_key_order(key, sizeof key, OBX_OUTBOUND, w.code[i], o->order_id);
        sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
        bool asked = sqlite3_step(s) == SQLITE_ROW;
        sqlite3_reset(s);
        if (asked)
            return true;
    }
    return false;
}

/* Asks every outbound warehouse holding a part of the order to cancel it (once). */
static int request_cancel(struct tallyd *d, struct order *o)
{
    struct store *st = d->store;
    if (o->cancel_requested)
        return 0;
    struct wh_list w;
    int r = outbound_whs(st, o->ref, true, &w), rc; /* parts not yet left */
    for (int i = 0; r == 0 && i < w.n; i++) {
        char key[160], target[80];
        bool due;
        decision_key(st, OBX_OUTBOUND_CANCEL, w.code[i], o, key, target, &due);
        if (!due)
            continue;
        r = append_cancel(st, o, key, target);
    }
    if (r)
        return r;
    sqlite3_stmt *u = store_stmt(st, "UPDATE orders SET cancel_requested = 1 WHERE id = ?1");
    if (!u)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(u, 1, o->ref);
    rc = sqlite3_step(u);
    o->cancel_requested = true;
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "cancel request");
}

/* ---- the state machine ---- */

static bool vouched(struct store *st, int64_t ref)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT 1 FROM exceptions WHERE order_ref = ?1"
                                     " AND kind = 'bad_address' AND state = 'resolved'"
                                     " AND resolved_by <> 'tallyd' LIMIT 1");
    if (!s)
        return false;
    sqlite3_bind_int64(s, 1, ref);
    bool v = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return v;
}

static int check_address(struct tallyd *d, struct order *o)
{
    sqlite3_stmt *s = store_stmt(d->store, "SELECT buyer_name, address, city, postcode, purged_at,"
                                           " receipt, receipt_error FROM orders WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return store_error(d->store, rc, "address");
    }
    char why[256];
    /* Purged data cannot be checked; an address a person resolved as fine is not re-raised. */
    bool gone = sqlite3_column_type(s, 4) != SQLITE_NULL;
    bool purged = gone || vouched(d->store, o->ref);
    /* A masked ship-to is no bad address: it waits for its full one (receipt 1, nothing is
     * sent meanwhile); a refused read of it (receipt 2) is one, and no person can vouch for
     * it: there is no address to vouch for (resolving it reads it again: cmd_fulfil.c). */
    int receipt = sqlite3_column_int(s, 5);
    if (!purged && receipt == 1) {
        sqlite3_reset(s);
        return 0;
    }
    int bad = 0;
    if (!gone && receipt == 2) {
        const char *e = (const char *)sqlite3_column_text(s, 6);
        snprintf(why, sizeof why,
                 "the ship-to came masked and its full address could not be"
                 " read (%.150s)",
                 e ? e : "refused");
        bad = 1;
    } else if (!purged) {
        bad = address_check(o->country, (const char *)sqlite3_column_text(s, 0),
                            (const char *)sqlite3_column_text(s, 1),
                            (const char *)sqlite3_column_text(s, 2),
                            (const char *)sqlite3_column_text(s, 3), why, sizeof why);
    }
    sqlite3_reset(s);
    if (bad)
        return raise_order(d, o, EXC_BAD_ADDRESS, 0, "order %s: %s", o->order_id, why);
    return clear_order(d, o, EXC_BAD_ADDRESS, "address corrected");
}

static bool is_open(const struct order *o)
{
    static const char *const open[] = {"pending", "ready",  "allocated",
                                       "sent",    "picked", "partial"};
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++)
        if (fstate_is(o, open[i]))
            return true;
    return false;
}

/* The marketplace cancelled (or closed) the order. Never a silent overwrite of local work:
 * what has not left is released; what is being picked or has left becomes an exception. */
static int on_cancel(struct tallyd *d, struct order *o, int64_t now, bool *changed)
{
    struct store *st = d->store;
    int r;
    if (fstate_is(o, "new") || fstate_is(o, "pending") || fstate_is(o, "ready") ||
        (fstate_is(o, "allocated") && !outbound_asked(st, o))) {
        r = release(d, o, 0);
        if (r == 0)
            r = set_fstate(st, o, "cancelled", now);
        if (r == 0)
            r = exceptions_clear_all(d, o->ref, "the marketplace cancelled the order");
        *changed = true;
        return r;
    }
    if (!is_open(o) && !fstate_is(o, "shipped") && !fstate_is(o, "uploaded"))
        return 0; /* finished or cancelled already */
    /* What waits at warehouses without an outbound system never left: released now. What
     * waits at outbound warehouses is asked back; it is released when they confirm. */
    if ((r = release(d, o, -1)) != 0 || (r = request_cancel(d, o)) != 0)
        return r;
    bool shipped_some = count_allocations(st, o->ref, "consumed", 0) > 0 ||
                        count_allocations(st, o->ref, "shipped", 0) > 0;
    if (!shipped_some && count_allocations(st, o->ref, "reserved", 0) == 0) {
        *changed = true;
        if ((r = set_fstate(st, o, "cancelled", now)) == 0)
            r = exceptions_clear_all(d, o->ref, "the marketplace cancelled the order");
        return r;
    }
    if (shipped_some)
        return raise_order(d, o, EXC_CANCELLED_AFTER_PICK, 0,
                           "order %s was cancelled by the marketplace after it was shipped:"
                           " intercept it with the carrier or restock the return",
                           o->order_id);
    if (fstate_is(o, "picked"))
        return raise_order(d, o, EXC_CANCELLED_AFTER_PICK, 0,
                           "order %s was cancelled by the marketplace after the warehouse began"
                           " picking: intercept it (a cancel was sent) or restock the goods",
                           o->order_id);
    return 0;
}

static int deadline_raise(struct tallyd *d, const struct order *o, int64_t now)
{
    int64_t left = o->ship_by - now;
    if (left >= 0)
        return raise_order(d, o, EXC_DEADLINE, 0,
                           "order %s must ship within %" PRId64 " h %" PRId64
                           " min (ship-by deadline)",
                           o->order_id, left / 3600, left % 3600 / 60);
    return raise_order(d, o, EXC_DEADLINE, 0,
                       "order %s missed its ship-by deadline %" PRId64 " h %" PRId64 " min ago",
                       o->order_id, -left / 3600, -left % 3600 / 60);
}

/*
 * Looks at one order after a marketplace change (or for the first time). The marketplace
 * status decides what may happen; fstate records what has happened here.
 */
/* A cancelled order to be shipped after all: back to `to`, no cancel pending, the purge clock
 * stopped, and every warehouse that was sent its outbound order left out (the id is used up
 * there: the warehouse deduplicates by it forever). */
static int reopen(struct tallyd *d, struct order *o, const char *to, int64_t now)
{
    struct store *st = d->store;
    sqlite3_stmt *s = store_stmt(st, "INSERT OR IGNORE INTO allocation_bans(order_ref, warehouse,"
                                     " reason, at) SELECT ?1, w.id, 'cancelled there before', ?3"
                                     " FROM outbox x JOIN warehouses w ON x.key = 'ob:' || w.code"
                                     "   || ':' || ?2 WHERE x.entity = ?2 AND x.kind = 'outbound'");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    sqlite3_bind_text(s, 2, o->order_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "reopen");
    s = store_stmt(st, "UPDATE orders SET fstate = ?2, cancel_requested = 0, finished_at = NULL"
                       " WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    sqlite3_bind_text(s, 2, to, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(s)) != SQLITE_DONE)
        return store_error(st, rc, "reopen");
    log_info("order %s: the marketplace reopened it (%s)", o->order_id, o->status);
    snprintf(o->fstate, sizeof o->fstate, "%s", to);
    o->cancel_requested = false;
    return 0;
}

static int order_move(struct tallyd *d, struct order *o, int64_t now, bool *changed)
{
    struct store *st = d->store;
    int cls = mp_class(o->status);
    int r = score(d, o, now);
    if (r)
        return r;
    if (cls == MP_CANCEL ||
        (cls == MP_FINISH && !fstate_is(o, "shipped") && !fstate_is(o, "uploaded") &&
         !fstate_is(o, "partial") && !fstate_is(o, "finished") && !fstate_is(o, "new")))
        return on_cancel(d, o, now, changed);
    /* IN_CANCEL is the buyer's request; a seller may refuse it and the order is to be
     * shipped again: it reopens (away from any warehouse that already had its id). */
    if (fstate_is(o, "cancelled") && (cls == MP_SHIP || cls == MP_UNPAID || cls == MP_HELD)) {
        if ((r = reopen(d, o, cls == MP_SHIP ? "ready" : "pending", now)) != 0)
            return r;
        *changed = true;
    }
    if (fstate_is(o, "new")) {
        /* First sight. An order that left before this replica knew it needs nothing. */
        const char *to = cls == MP_UNPAID || cls == MP_HELD ? "pending"
                         : cls == MP_SHIP                   ? "ready"
                         : cls == MP_SHIPPED                ? "uploaded"
                         : cls == MP_FINISH                 ? "finished"
                         : cls == MP_CANCEL                 ? "cancelled"
                                                            : "pending";
        if ((r = set_fstate(st, o, to, now)) != 0)
            return r;
        *changed = true;
    }
    if (cls == MP_HELD &&
        (fstate_is(o, "pending") || fstate_is(o, "ready") || fstate_is(o, "allocated")))
        return raise_order(d, o, EXC_PAYMENT_HELD, 0,
                           "order %s: payment held by the marketplace's risk control (%s);"
                           " do not ship until it is released",
                           o->order_id, o->status);
    if (cls != MP_HELD && (r = clear_order(d, o, EXC_PAYMENT_HELD, "payment released")) != 0)
        return r;
    if (cls == MP_SHIP && fstate_is(o, "pending")) {
        if ((r = set_fstate(st, o, "ready", now)) != 0)
            return r;
        *changed = true;
    }
    if (cls == MP_SHIP && (fstate_is(o, "ready") || fstate_is(o, "allocated"))) {
        if ((r = check_address(d, o)) != 0)
            return r;
    }
    /* Account-wide decisions: only while this station coordinates (coord.h). */
    bool decides = cls == MP_SHIP && coord_decides(d, NULL, 0);
    if (cls == MP_SHIP && fstate_is(o, "ready") && decides)
        return allocate(d, o, now, changed);
    /* Under way: a part a warehouse gave back is allocated again (a no-op when none is). */
    if (cls == MP_SHIP && decides &&
        (fstate_is(o, "allocated") || fstate_is(o, "sent") || fstate_is(o, "picked") ||
         fstate_is(o, "partial")) &&
        (r = allocate(d, o, now, changed)) != 0)
        return r;
    if (cls == MP_SHIP && fstate_is(o, "allocated"))
        return send_outbound(d, o);
    if (cls == MP_FINISH &&
        (fstate_is(o, "shipped") || fstate_is(o, "uploaded") || fstate_is(o, "partial"))) {
        /* Closed with lines still waiting: they will not go (released here, asked back from
         * outbound warehouses). */
        if ((r = release(d, o, -1)) != 0 || (r = request_cancel(d, o)) != 0)
            return r;
        *changed = true;
        return set_fstate(st, o, "finished", now);
    }
    return 0;
}

/* One look at an order: its next step, then whether its ship-by is near. */
static int order_step(struct tallyd *d, struct order *o, int64_t now, bool *changed)
{
    int r = order_move(d, o, now, changed);
    int64_t horizon = now + (int64_t)d->cfg.ship_by_warning_h * 3600;
    if (r == 0 && is_open(o) && o->ship_by > 0 && o->ship_by <= horizon)
        r = deadline_raise(d, o, now);
    return r;
}

static int set_dirty(struct store *st, int64_t ref, int v)
{
    sqlite3_stmt *s = store_stmt(st, "UPDATE orders SET fdirty = ?2 WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    sqlite3_bind_int(s, 2, v);
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "order");
}

static int mark_dirty(struct store *st, int64_t ref)
{
    return set_dirty(st, ref, 1);
}

static int clear_dirty(struct store *st, int64_t ref)
{
    /* Only a plain "look at it": a 2 set during the look (a remainder still out of stock)
     * stays for the next retry round. */
    sqlite3_stmt *s = store_stmt(st, "UPDATE orders SET fdirty = 0 WHERE id = ?1 AND fdirty = 1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "order");
}

/* A round's position, written in the transaction of the orders it covers: called with how
 * many of the batch's orders were stepped (the first `done`). */
typedef int (*save_fn)(struct store *st, void *arg, int done);

/*
 * Steps orders refs[0..n) in one transaction; all or nothing. Once uv_hrtime() reaches
 * `until` it stops after the order in hand (at least one is stepped), so a slice holds the
 * loop for about its budget whatever an order costs (an allocation that raises an exception
 * costs a few hundred microseconds); *done says how many were stepped, the rest are the next
 * slice's. With `save`, the round's position is written in the same transaction.
 */
static int steps_until(struct tallyd *d, const int64_t *refs, int n, int64_t now, bool dirty,
                       int *moved, uint64_t until, int *done, save_fn save, void *save_arg)
{
    struct store *st = d->store;
    int r = pass_begin(d), k = 0, i = 0;
    while (r == 0 && i < n) {
        struct order o;
        bool changed = false;
        if ((r = order_load(st, refs[i], &o)) != 0)
            break;
        r = order_step(d, &o, now, &changed);
        if (r == 0 && dirty)
            r = clear_dirty(st, o.ref);
        if (r == 0 && changed)
            k++;
        if (r)
            log_error("order %s: fulfilment step failed: %s", o.order_id, tally_strerror(r));
        else if (++i < n && uv_hrtime() >= until)
            break;
    }
    if (r == 0 && save)
        r = save(st, save_arg, i);
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    if (r == 0) {
        *moved += k;
        if (done)
            *done = i;
    }
    return r;
}

static int steps(struct tallyd *d, const int64_t *refs, int n, int64_t now, bool dirty, int *moved)
{
    return steps_until(d, refs, n, now, dirty, moved, UINT64_MAX, NULL, NULL, NULL);
}

/* Runs `step` on up to `limit` orders chosen by `sql` (?1 = the limit) in one transaction,
 * stopping at `until` (steps_until: those left are chosen again by the next slice). A failure
 * on one order rolls the batch back and is reported; the next pass tries again. Returns how
 * many were stepped, or a TALLY_E_* code. */
static int batch(struct tallyd *d, const char *sql, int limit, int64_t now, bool dirty, int *moved,
                 uint64_t until)
{
    struct store *st = d->store;
    int64_t refs[RETRY_BATCH];
    int n = 0, rc;
    if (limit > RETRY_BATCH)
        limit = RETRY_BATCH;
    sqlite3_stmt *s = store_stmt(st, sql);
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int(s, 1, limit);
    sqlite3_bind_int64(s, 2, now);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < limit)
        refs[n++] = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_error(st, rc, "fulfilment batch");
    if (n == 0)
        return 0;
    int moved_here = 0, done = n;
    int r = steps_until(d, refs, n, now, dirty, &moved_here, until, &done, NULL, NULL);
    if (r == TALLY_E_BUSY) /* another process holds the lock: nothing changed, all again later */
        return r;
    if (r != 0) {
        /* An order failed and took its batch with it: go one by one, so one bad order
         * cannot hold up the others (nor, alone, the rest of the pass). */
        moved_here = 0;
        for (int i = 0; i < n; i++) {
            int one = n > 1 ? steps(d, &refs[i], 1, now, dirty, &moved_here) : r;
            if (one == TALLY_E_BUSY) { /* not this order's fault: the rest again later */
                *moved += moved_here;
                return one;
            }
            if (one == 0 || !dirty)
                continue;
            /* Set aside until the next retry round (logged with the reason by steps()): a
             * lasting fault does not spin, a passing one (disk full) is retried. */
            if (store_begin(st) == 0) {
                if (set_dirty(st, refs[i], 2) == 0)
                    store_commit(st);
                else
                    store_rollback(st);
            }
        }
        r = 0;
    }
    *moved += moved_here;
    return r ? r : done;
}

/*
 * (The scans here name their index: with fstate IN (...) the planner would otherwise take the
 * per-state index and sort every open order, tens of milliseconds on the loop each time. And a
 * scan that goes on from a position must start at it, or each batch reads every order before
 * the position again: a round over 80k orders past their ship-by read 600k index entries per
 * batch, 6 ms each, quadratic in the orders. So the scan is read in two parts, each a range of
 * orders_open_by_ship_by from the position: the rest of the position's ship-by (ship_by = ?3
 * AND id > ?4), then the later ones (ship_by > ?3, at least 0: no ship-by is no deadline). A
 * row value (ship_by, id) > (?3, ?4) is a range on ship_by alone (id is the rowid, which SQLite
 * does not take as the index's second column for it), so a batch read the position's ship-by
 * from its first order again, and with "ship_by > 0" beside it from the first ship-by.
 * unit.test_fulfil test_scan_from_position and test_deadline_scan_ties count the steps.)
 *
 * Orders whose ship-by came within the warning horizon since the last scan, that have not
 * left: one exception each. Goes on from the position (*pos_by, *pos_id): f's, kept in the
 * replica with the exceptions it covers, or without the timer (tests) the caller's, from the
 * start of its pass; until `until` (one at least). Returns how many it looked at, or a
 * TALLY_E_* code; *more: more may be due (a full batch, or stopped at `until`).
 */
static int deadlines(struct tallyd *d, struct fulfil *f, int64_t *pos_by, int64_t *pos_id,
                     int64_t now, uint64_t until, bool *more)
{
    struct store *st = d->store;
    int64_t horizon = now + (int64_t)d->cfg.ship_by_warning_h * 3600;
    int64_t by = *pos_by, id = *pos_id;
    static const char *const sql[2] = {
        ORDER_SELECT " INDEXED BY orders_open_by_ship_by WHERE fstate IN ('pending','ready',"
                     "'allocated','sent','picked','partial') AND ship_by = ?3 AND id > ?4"
                     " AND ship_by <= ?1 ORDER BY id LIMIT ?2",
        ORDER_SELECT " INDEXED BY orders_open_by_ship_by WHERE fstate IN ('pending','ready',"
                     "'allocated','sent','picked','partial') AND ship_by > ?3"
                     " AND ship_by <= ?1 ORDER BY ship_by, id LIMIT ?2",
    };
    struct order *os = calloc(RETRY_BATCH, sizeof *os);
    if (!os)
        return TALLY_E_NOMEM;
    int n = 0, rc = SQLITE_DONE;
    /* the first part only inside a ship-by (none before the first one: 0 or less is none) */
    for (int part = by > 0 ? 0 : 1; part < 2 && n < RETRY_BATCH; part++) {
        sqlite3_stmt *s = store_stmt(st, sql[part]);
        if (!s) {
            free(os);
            return TALLY_E_STORAGE;
        }
        sqlite3_bind_int64(s, 1, horizon);
        sqlite3_bind_int(s, 2, RETRY_BATCH - n);
        sqlite3_bind_int64(s, 3, by > 0 ? by : 0);
        sqlite3_bind_int64(s, 4, id); /* not in the second part: a no-op there */
        while (n < RETRY_BATCH && (rc = sqlite3_step(s)) == SQLITE_ROW)
            order_read(s, &os[n++]);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            break;
    }
    int r = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_error(st, rc, "deadlines");
    if (r == 0 && n > 0)
        r = pass_begin(d);
    /* Raised until `until` (one at least): those left are the next slice's. */
    int k = 0;
    while (r == 0 && k < n) {
        r = deadline_raise(d, &os[k++], now);
        if (r == 0 && k < n && uv_hrtime() >= until)
            break;
    }
    *more = n == RETRY_BATCH || k < n;
    if (r == 0 && k > 0) {
        /* The new position, kept with the exceptions it covers. */
        *pos_by = os[k - 1].ship_by;
        *pos_id = os[k - 1].ref;
        if (f)
            r = cursor_save(st, f);
    }
    if (r == 0 && n > 0) {
        r = store_commit(st);
    } else if (n > 0) {
        store_rollback(st);
    }
    if (r && n > 0) {
        *pos_by = by;
        *pos_id = id;
    }
    free(os);
    return r ? r : k;
}

/* Rescoring goes round the open orders PRIORITY_BATCH at a time, each batch until `until`
 * (one order at least; the next slice goes on from the last one rescored). */
static int rescore(struct fulfil *f, int64_t now, uint64_t until)
{
    struct tallyd *d = f->d;
    struct store *st = d->store;
    sqlite3_stmt *s =
        store_stmt(st, ORDER_SELECT
                   " INDEXED BY orders_open_by_id WHERE id > ?1 AND fstate IN ('pending','ready',"
                   "'allocated','sent','picked','partial')"
                   " ORDER BY id LIMIT ?2");
    struct order *os = calloc(PRIORITY_BATCH, sizeof *os);
    if (!s || !os) {
        free(os);
        return s ? TALLY_E_NOMEM : TALLY_E_STORAGE;
    }
    sqlite3_bind_int64(s, 1, f->priority_cursor);
    sqlite3_bind_int(s, 2, PRIORITY_BATCH);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < PRIORITY_BATCH)
        order_read(s, &os[n++]);
    sqlite3_reset(s);
    int r = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_error(st, rc, "priorities");
    int64_t was_cursor = f->priority_cursor, was_next = f->next_priority;
    if (n == 0) { /* round over: the next one in PRIORITY_EVERY_S */
        f->priority_cursor = 0;
        f->next_priority = now + PRIORITY_EVERY_S;
    }
    if (r == 0 && n > 0 && (r = pass_begin(d)) == 0) {
        int k = 0;
        while (r == 0 && k < n) {
            r = score(d, &os[k++], now);
            if (r == 0 && k < n && uv_hrtime() >= until)
                break;
        }
        f->priority_cursor = k == n && n < PRIORITY_BATCH ? 0 : os[k - 1].ref;
        if (f->priority_cursor == 0) /* round over: the next one in PRIORITY_EVERY_S */
            f->next_priority = now + PRIORITY_EVERY_S;
        if (r == 0)
            r = cursor_save(st, f); /* the position, kept with the scores it covers */
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
    }
    if (r) {
        f->priority_cursor = was_cursor;
        f->next_priority = was_next;
    }
    free(os);
    return r;
}

/*
 * Stale-data policy ([stock] stale_after, stale_policy): a configured warehouse whose last
 * applied inventory page is older than stale_after is marked stale; with stale_policy = zero
 * its stock then counts as 0 towards marketplace stock (sync.c), so a warehouse that cannot
 * be heard from never props up what the marketplace shows. Every SKU stocked there is due for
 * publishing when the mark changes.
 */
static int stale_check(struct tallyd *d, int64_t now)
{
    struct store *st = d->store;
    for (unsigned i = 0; i < d->cfg.nwh; i++) {
        char stream[96];
        snprintf(stream, sizeof stream, "wh:%s:inventory", d->cfg.wh[i].code);
        sqlite3_stmt *s = store_stmt(st, "SELECT c.updated_at, c.version, w.stale, w.id"
                                         " FROM checkpoints c, warehouses w"
                                         " WHERE c.stream = ?1 AND w.code = ?2");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(s, 1, stream, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, d->cfg.wh[i].code, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_ROW) {
            sqlite3_reset(s);
            continue;
        }
        int64_t at = sqlite3_column_int64(s, 0), version = sqlite3_column_int64(s, 1);
        bool was = sqlite3_column_int(s, 2) != 0;
        int64_t wh = sqlite3_column_int64(s, 3);
        sqlite3_reset(s);
        /* Never synced (version 0) counts as stale too: nothing is known of it yet. */
        bool stale = version == 0 || now - at > (int64_t)d->cfg.stale_after_s;
        if (stale == was)
            continue;
        log_warn("wh:%s: stock data %s", d->cfg.wh[i].code,
                 stale ? "is stale (no inventory page applied recently)" : "is fresh again");
        int r = store_begin(st);
        sqlite3_stmt *u = store_stmt(st, "UPDATE warehouses SET stale = ?2 WHERE id = ?1");
        sqlite3_stmt *m = store_stmt(st, "INSERT INTO publish(sku, value, gen, dirty)"
                                         " SELECT sku, 0, 1, 1 FROM stock WHERE warehouse = ?1"
                                         " AND true ON CONFLICT(sku) DO UPDATE SET gen = gen + 1,"
                                         " dirty = 1");
        if (r == 0 && (!u || !m))
            r = TALLY_E_STORAGE;
        if (r == 0) {
            sqlite3_bind_int64(u, 1, wh);
            sqlite3_bind_int(u, 2, stale);
            if (sqlite3_step(u) != SQLITE_DONE)
                r = TALLY_E_STORAGE;
        }
        if (r == 0 && store_publishes(st) && d->cfg.stale_zero) {
            sqlite3_bind_int64(m, 1, wh);
            if (sqlite3_step(m) != SQLITE_DONE)
                r = TALLY_E_STORAGE;
        }
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
        if (r)
            return r;
    }
    return 0;
}

static struct fulfil *engine(struct tallyd *d)
{
    return d->fulfil;
}

/*
 * Orders still waiting for stock, most urgent first, RETRY_BATCH at a time from f's position
 * in (priority desc, ship-by, id) order, so a round goes past orders that can never be
 * allocated and reaches every waiting one. Returns how many it looked at.
 */
/* The retry round's batch: its orders' keys in orders_ready order, for the position. */
struct retry_keys {
    struct fulfil *f;
    int64_t now;
    int n;
    int64_t prio[RETRY_BATCH], by[RETRY_BATCH], id[RETRY_BATCH];
};

/* The retry round's position after the first `done` orders of the batch, written with them:
 * the last one's key, or the round over when the batch was its last and all were stepped. */
static int retry_save(struct store *st, void *arg, int done)
{
    struct retry_keys *k = arg;
    struct fulfil *f = k->f;
    if (done == k->n && k->n < RETRY_BATCH) {
        f->retry_prio = INT64_MAX, f->retry_by = INT64_MIN, f->retry_id = 0;
        f->next_retry = k->now + RETRY_EVERY_S;
    } else if (done > 0) {
        f->retry_prio = k->prio[done - 1];
        f->retry_by = k->by[done - 1];
        f->retry_id = k->id[done - 1];
    }
    return cursor_save(st, f);
}

/* One batch of the orders waiting for stock, from the round's position, stepped until `until`
 * (one at least). Returns how many were stepped or a TALLY_E_* code; *over: the round is over
 * (its last orders were stepped). */
static int retry_waiting(struct tallyd *d, struct fulfil *f, int64_t now, int *moved,
                         uint64_t until, bool *over)
{
    struct store *st = d->store;
    *over = true;
    /* The orders after the position (prio, by, id) in orders_ready's order (priority DESC,
     * ship-by, id), read in three parts so that each starts in the index at the position:
     * the rest of the position's (priority, ship-by), the rest of its priority, then the
     * lower priorities. (One condition with ORs, or a row value over the index's COALESCE
     * expression, is not used as the start of the index's range: every batch read all the
     * orders of its priority before the position again.) */
    static const char *const sql[3] = {
        "SELECT id, priority, COALESCE(ship_by, 9223372036854775807) FROM orders"
        " INDEXED BY orders_ready WHERE fstate = 'ready' AND priority = ?1"
        " AND COALESCE(ship_by, 9223372036854775807) = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
        "SELECT id, priority, COALESCE(ship_by, 9223372036854775807) FROM orders"
        " INDEXED BY orders_ready WHERE fstate = 'ready' AND priority = ?1"
        " AND COALESCE(ship_by, 9223372036854775807) > ?2"
        " ORDER BY COALESCE(ship_by, 9223372036854775807), id LIMIT ?4",
        "SELECT id, priority, COALESCE(ship_by, 9223372036854775807) FROM orders"
        " INDEXED BY orders_ready WHERE fstate = 'ready' AND priority < ?1"
        " ORDER BY priority DESC, COALESCE(ship_by, 9223372036854775807), id LIMIT ?4",
    };
    struct retry_keys keys = {.f = f, .now = now};
    int n = 0, rc = SQLITE_DONE;
    /* The keys are read before any step: a step may change an order's priority. */
    for (int part = 0; part < 3 && n < RETRY_BATCH; part++) {
        sqlite3_stmt *s = store_stmt(st, sql[part]);
        if (!s)
            return TALLY_E_STORAGE;
        /* ?2 and ?3 are unused in the later parts (bound all the same: ?4 is the highest) */
        sqlite3_bind_int64(s, 1, f ? f->retry_prio : INT64_MAX);
        sqlite3_bind_int64(s, 2, f ? f->retry_by : INT64_MIN);
        sqlite3_bind_int64(s, 3, f ? f->retry_id : 0);
        sqlite3_bind_int(s, 4, RETRY_BATCH - n);
        while (n < RETRY_BATCH && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            keys.id[n] = sqlite3_column_int64(s, 0);
            keys.prio[n] = sqlite3_column_int64(s, 1);
            keys.by[n] = sqlite3_column_int64(s, 2);
            n++;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return store_error(st, rc, "retry");
    }
    if (n == 0)
        return 0;
    keys.n = n;
    int64_t was_prio = f ? f->retry_prio : 0, was_by = f ? f->retry_by : 0;
    int64_t was_id = f ? f->retry_id : 0, was_next = f ? f->next_retry : 0;
    int done = n;
    int r = steps_until(d, keys.id, n, now, false, moved, f ? until : UINT64_MAX, &done,
                        f ? retry_save : NULL, &keys);
    if (r == TALLY_E_BUSY) { /* another process holds the lock: the same batch again later */
        if (f)
            f->retry_prio = was_prio, f->retry_by = was_by, f->retry_id = was_id,
            f->next_retry = was_next;
        return r;
    }
    if (r != 0) {
        /* One by one, so one bad order holds up nobody; the position as if all were stepped. */
        if (f) {
            if (n < RETRY_BATCH)
                f->retry_prio = INT64_MAX, f->retry_by = INT64_MIN, f->retry_id = 0,
                f->next_retry = now + RETRY_EVERY_S;
            else
                f->retry_prio = keys.prio[n - 1], f->retry_by = keys.by[n - 1],
                f->retry_id = keys.id[n - 1];
        }
        for (int i = 0; i < n; i++)
            steps(d, &keys.id[i], 1, now, false, moved);
        done = n;
    }
    *over = done == n && n < RETRY_BATCH;
    return done;
}

/*
 * One slice of work, about budget_ns: changed orders first (batches of FULFIL_BATCH, each its
 * own transaction), then whichever periodic work is due: orders waiting for stock, ship-by
 * deadlines, priorities, a batch at a time. *more says whether work remains that should go on
 * at once rather than at the next tick.
 */
static int pass_once(struct tallyd *d, int64_t now, uint64_t budget_ns, bool *more)
{
    struct fulfil *f = engine(d);
    int moved = 0, r;
    uint64_t t0 = uv_hrtime();
    /* Each round stops at `until`, after the order in hand: a slice holds the loop for about
     * budget_ns, plus one order's step, whatever is due. */
    uint64_t until = budget_ns >= UINT64_MAX - t0 ? UINT64_MAX : t0 + budget_ns;
    *more = false;
    for (;;) {
        /* "fdirty <> 0" lets SQLite use the partial index orders_fdirty (WHERE fdirty <> 0),
         * which it does not infer from "fdirty = 1": without it, every batch scanned the
         * orders table from its first row past every order already looked at (a pass over
         * 100k orders grew quadratic and held the loop for ms per slice). */
        r = batch(d, "SELECT id FROM orders WHERE fdirty <> 0 AND fdirty = 1 ORDER BY id LIMIT ?1",
                  FULFIL_BATCH, now, true, &moved, until);
        if (r < FULFIL_BATCH)
            break;
        if (uv_hrtime() >= until) {
            *more = true;
            return moved;
        }
    }
    if (r < 0)
        return r;
        /* The periodic rounds below come in the next slice when this one has used its budget. */
#define OVER_BUDGET() (f && uv_hrtime() >= until)
    if (OVER_BUDGET()) {
        *more = true;
        return moved;
    }
    if (!f || now >= f->next_retry) {
        if (!f || f->retry_by == INT64_MIN) {
            /* A new retry round: orders set aside after a failed look come back too. */
            sqlite3_stmt *u = store_stmt(d->store, "UPDATE orders SET fdirty = 1"
                                                   " WHERE fdirty <> 0 AND fdirty = 2"); /* index */
            if (u && pass_begin(d) == 0) {
                if (sqlite3_step(u) == SQLITE_DONE)
                    store_commit(d->store);
                else
                    store_rollback(d->store);
            }
        }
        bool over = true;
        r = coord_decides(d, NULL, 0) ? retry_waiting(d, f, now, &moved, until, &over) : 0;
        if (r < 0)
            return r;
        if (f) {
            /* Round over: the next in RETRY_EVERY_S; else on at once. */
            if (over)
                f->retry_prio = INT64_MAX, f->retry_by = INT64_MIN, f->retry_id = 0;
            f->next_retry = over ? now + RETRY_EVERY_S : now;
        }
        if (OVER_BUDGET()) {
            *more = true;
            return moved;
        }
    }
    if (!f || now >= f->next_deadline) {
        /* Without the engine the whole round, each batch from where the last one ended. */
        int64_t by = INT64_MIN, id = 0;
        bool due = false;
        do {
            r = deadlines(d, f, f ? &f->deadline_by : &by, f ? &f->deadline_id : &id, now,
                          f ? until : UINT64_MAX, &due);
        } while (!f && r == RETRY_BATCH);
        if (r < 0)
            return r;
        if (f)
            f->next_deadline = due ? now : now + DEADLINE_EVERY_S;
        if (OVER_BUDGET()) {
            *more = true;
            return moved;
        }
    }
#undef OVER_BUDGET
    if (f && now >= f->next_priority) {
        if ((r = rescore(f, now, until)) != 0)
            return r;
    }
    if (f)
        *more = f->next_retry <= now || f->next_deadline <= now || f->next_priority <= now;
    return moved;
}

int fulfil_pass(struct tallyd *d, int64_t now)
{
    bool more;
    return pass_once(d, now, UINT64_MAX, &more);
}

static void on_timer(uv_timer_t *t);

static uint64_t thread_cpu_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The bucket's upper bound (us) below which `q` of the n slices fell. */
static uint64_t stats_quantile(const uint32_t *h, uint32_t n, double q)
{
    uint64_t want = (uint64_t)(q * n + 0.999999), seen = 0;
    for (int i = 0; i <= SLICE_BUCKETS; i++) {
        seen += h[i];
        if (seen >= want)
            return (uint64_t)(i + 1) * SLICE_BUCKET_US;
    }
    return (uint64_t)(SLICE_BUCKETS + 1) * SLICE_BUCKET_US;
}

/* One slice as timed: pass_once with its wall and CPU time recorded. */
static int timed_slice(struct fulfil *f, int64_t now, bool *more)
{
    uint64_t w0 = uv_hrtime(), c0 = thread_cpu_us();
    int r = pass_once(f->d, now, FULFIL_BUDGET_NS, more);
    uint64_t wall = (uv_hrtime() - w0) / 1000u, cpu = thread_cpu_us() - c0;
    struct slice_stats *st = &f->stats;
    if (st->n++ == 0)
        st->since = w0;
    st->wall[wall / SLICE_BUCKET_US < SLICE_BUCKETS ? wall / SLICE_BUCKET_US : SLICE_BUCKETS]++;
    st->cpu[cpu / SLICE_BUCKET_US < SLICE_BUCKETS ? cpu / SLICE_BUCKET_US : SLICE_BUCKETS]++;
    st->wall_sum_us += wall;
    if (wall > st->wall_max_us)
        st->wall_max_us = wall;
    if (cpu > st->cpu_max_us)
        st->cpu_max_us = cpu;
    return r;
}

/* A run of slices is over (or has gone on for SLICE_LOG_EVERY_NS): its figures, when there
 * were enough to mean something. */
static void stats_log(struct fulfil *f, bool over)
{
    struct slice_stats *st = &f->stats;
    if (st->n < SLICE_LOG_MIN || (!over && uv_hrtime() - st->since < SLICE_LOG_EVERY_NS))
        return;
    log_info("fulfilment pass: %" PRIu32 " slices, %.3f s on the loop; a slice's wall time"
             " p50 %" PRIu64 " us, p99 %" PRIu64 " us, max %" PRIu64 " us; its CPU p99 %" PRIu64
             " us, max %" PRIu64 " us (bounds of 100 us buckets)",
             st->n, (double)st->wall_sum_us / 1e6, stats_quantile(st->wall, st->n, 0.5),
             stats_quantile(st->wall, st->n, 0.99), st->wall_max_us,
             stats_quantile(st->cpu, st->n, 0.99), st->cpu_max_us);
    memset(st, 0, sizeof *st);
}

/* One slice per loop iteration while work remains (see on_timer). */
static void on_idle(uv_idle_t *h)
{
    struct fulfil *f = h->data;
    bool more = false;
    if (f->d->stopping) {
        uv_idle_stop(h);
        return;
    }
    f->writer_held = false;
    int r = timed_slice(f, store_now(), &more);
    if (r == TALLY_E_BUSY && f->writer_held) {
        /* A write job holds the writer lock: back in a moment, the loop free meanwhile. */
        uv_idle_stop(h);
        uv_timer_start(&f->timer, on_timer, WRITER_WAIT_MS, FULFIL_TICK_MS);
        return;
    }
    if (r < 0)
        log_error("fulfilment pass: %s", tally_strerror(r));
    if (!more || r < 0)
        uv_idle_stop(h);
    stats_log(f, !more || r < 0);
}

static void on_purged(struct tallyd *d, void *arg, int r, int64_t n)
{
    (void)arg;
    if (r == TALLY_E_BUSY && d->fulfil) /* another process held the lock: again soon */
        d->fulfil->next_purge = store_now() + PURGE_RETRY_S;
    if (r)
        log_error("personal-data purge: %s", tally_strerror(r));
    else if (n > 0)
        log_info("personal data of %" PRId64 " finished orders purged", n);
}

static void on_timer(uv_timer_t *t)
{
    struct fulfil *f = t->data;
    struct tallyd *d = f->d;
    if (d->stopping)
        return;
    int64_t now = store_now();
    bool more = false;
    f->writer_held = false;
    int r = timed_slice(f, now, &more);
    if (r == TALLY_E_BUSY && f->writer_held) /* a write job's transaction: again in a moment */
        uv_timer_start(&f->timer, on_timer, WRITER_WAIT_MS, FULFIL_TICK_MS);
    else if (r < 0)
        log_error("fulfilment pass: %s", tally_strerror(r));
    /* More than one slice of work: go on in the idle phase of each loop iteration, after the
     * socket has been served (an initial sync of 100,000 orders must not stall queries).
     * Not a timer re-armed with 0: libuv 1.44 runs that again in the same iteration, before
     * any I/O, which would starve every client until the work is done. */
    if (more)
        uv_idle_start(&f->idle, on_idle);
    if (now >= f->next_stale) {
        /* A quarter of the limit, so a warehouse is marked stale within 25 % of it. */
        int64_t every = d->cfg.stale_after_s / 4;
        f->next_stale = now + (every < 1 ? 1 : every > STALE_EVERY_S ? STALE_EVERY_S : every);
        if ((r = stale_check(d, now)) != 0)
            log_error("stale-data check: %s", tally_strerror(r));
    }
    if (now >= f->next_cover) {
        f->next_cover = now + COVER_EVERY_S;
        if ((r = cover_refresh_start(d)) != 0) /* write jobs, off the loop */
            log_error("days-of-cover thresholds: %s", tally_strerror(r));
    }
    if (now >= f->next_purge) {
        /* In slices on the loop (privacy.c); one already running (tally purge) will do. */
        f->next_purge = now + PURGE_EVERY_S;
        if ((r = privacy_purge_start(d, d->cfg.retain_days, false, on_purged, NULL)) != 0 &&
            r != TALLY_E_BUSY)
            log_error("personal-data purge: %s", tally_strerror(r));
    }
    /* Done outbox rows past their retention (retain.h): write jobs, off the loop; when due. */
    if ((r = retain_start(d)) != 0)
        log_error("outbox retention: %s", tally_strerror(r));
}

int fulfil_start(struct tallyd *d, char *err, size_t errlen)
{
    struct fulfil *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->d = d;
    int64_t now = store_now();
    f->next_stale = now + 5; /* give the first inventory round a moment */
    f->deadline_by = INT64_MIN;
    f->retry_prio = INT64_MAX;
    f->retry_by = INT64_MIN;
    f->next_cover = now;
    f->next_purge = now;
    cursor_load(d->store, f, now);
    uv_timer_init(d->loop, &f->timer);
    uv_idle_init(d->loop, &f->idle);
    f->timer.data = f->idle.data = f;
    uv_timer_start(&f->timer, on_timer, 100, FULFIL_TICK_MS);
    d->fulfil = f;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct fulfil *f = h->data;
    if (++f->closed == 2)
        free(f);
}

void fulfil_stop(struct tallyd *d)
{
    struct fulfil *f = d ? d->fulfil : NULL;
    if (!f)
        return;
    d->fulfil = NULL;
    uv_timer_stop(&f->timer);
    uv_idle_stop(&f->idle);
    uv_close((uv_handle_t *)&f->timer, on_closed);
    uv_close((uv_handle_t *)&f->idle, on_closed);
}

void fulfil_writer_free(struct tallyd *d)
{
    struct fulfil *f = d ? d->fulfil : NULL;
    if (!f || !f->yielded || d->stopping)
        return;
    f->yielded = false;
    f->writer_held = false;
    bool more = false;
    int r = timed_slice(f, store_now(), &more);
    if (r == TALLY_E_BUSY && f->writer_held)
        uv_timer_start(&f->timer, on_timer, WRITER_WAIT_MS, FULFIL_TICK_MS);
    else if (r < 0)
        log_error("fulfilment pass: %s", tally_strerror(r));
    if (more)
        uv_idle_start(&f->idle, on_idle);
}

void fulfil_kick(struct tallyd *d)
{
    struct fulfil *f = d ? d->fulfil : NULL;
    if (f && !d->stopping)
        uv_timer_start(&f->timer, on_timer, 50, FULFIL_TICK_MS);
}

/* The state of the outbox row of `key`, in buf ("" when there is none), and its id. */
static void outbox_state(struct store *st, const char *key, char *buf, size_t cap, int64_t *id)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT state, id FROM outbox WHERE key = ?1");
    buf[0] = 0;
    *id = 0;
    if (!s)
        return;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        col_text(s, 0, buf, cap);
        *id = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
}

/*
 * orders.allocate release of an order an outbound warehouse may have: each outbound warehouse
 * holding a part not yet left is asked to cancel it (an "obc:" row, as for a marketplace
 * cancel, sent once) and left out for this order (allocation_bans). The part stays reserved
 * there until the warehouse confirms (fulfil_outbound_status "cancelled" then releases it and
 * the order is allocated again elsewhere); it never leaves for a second warehouse before. A
 * warehouse that refused the cancel (its row held), or whose cancel an operator discarded
 * (never sent again), still has the order: refused, saying so. A warehouse that refused the
 * outbound order itself (its "ob:" row held) never had it: no cancel is sent there (it could
 * not act on one); refused, naming the row whose discard moves the order (outbound_given_up).
 */
static int release_by_cancel(struct tallyd *d, struct order *o, int64_t now,
                             struct fulfil_cancelling *out, char *err, size_t errlen)
{
    struct store *st = d->store;
    struct wh_list w;
    int r = outbound_whs(st, o->ref, true, &w);
    out->n = 0;
    for (int i = 0; r == 0 && i < w.n; i++) {
        char key[160], target[80], state[16];
        bool due;
        int64_t row;
        decision_key(st, OBX_OUTBOUND, w.code[i], o, key, target, &due);
        outbox_state(st, key, state, sizeof state, &row);
        if (!strcmp(state, "held")) {
            snprintf(err, errlen,
                     "%s refused outbound order %s (outbox row %" PRId64 ", held): it never had"
                     " it, so there is nothing to cancel; tally outbox discard %" PRId64
                     " --reason TEXT releases it there and allocates it elsewhere",
                     w.code[i], o->order_id, row, row);
            return TALLY_E_CONFLICT;
        }
        decision_key(st, OBX_OUTBOUND_CANCEL, w.code[i], o, key, target, &due);
        outbox_state(st, key, state, sizeof state, &row);
        if (!due && !strcmp(state, "held")) {
            snprintf(err, errlen,
                     "%s refused to cancel order %s (see tally outbox): it stays there; ship it"
                     " from %s, or settle it with them and run tally outbox retry on the cancel",
                     w.code[i], o->order_id, w.code[i]);
            return TALLY_E_CONFLICT;
        }
        if (!due && !strcmp(state, "discarded")) {
            snprintf(err, errlen,
                     "the cancel of order %s at %s was discarded (outbox row %" PRId64 ") and is"
                     " never sent again: the order stays at %s; settle it with them",
                     o->order_id, w.code[i], row, w.code[i]);
            return TALLY_E_CONFLICT;
        }
        if (due) {
            r = append_cancel(st, o, key, target);
            sqlite3_stmt *b = r ? NULL
                                : store_stmt(st, "INSERT OR IGNORE INTO allocation_bans(order_ref,"
                                                 " warehouse, reason, at) VALUES(?1, ?2,"
                                                 " 'released by an operator', ?3)");
            if (r == 0 && !b)
                r = TALLY_E_STORAGE;
            if (r == 0) {
                sqlite3_bind_int64(b, 1, o->ref);
                sqlite3_bind_int64(b, 2, w.id[i]);
                sqlite3_bind_int64(b, 3, now);
                int rc = sqlite3_step(b);
                sqlite3_reset(b);
                if (rc != SQLITE_DONE)
                    r = store_error(st, rc, "allocation ban");
            }
        }
        if (r == 0 && out->n < FULFIL_MAX_CANCELLING)
            snprintf(out->code[out->n++], sizeof out->code[0], "%s", w.code[i]);
    }
    if (r == 0 && out->n == 0) {
        snprintf(err, errlen,
                 "order %s has nothing waiting at a warehouse that could be released (%s)",
                 o->order_id, o->fstate);
        return TALLY_E_CONFLICT;
    }
    return r;
}

int fulfil_allocate_now(struct tallyd *d, const char *order_id, bool rel,
                        struct fulfil_cancelling *cancelling, char *err, size_t errlen)
{
    struct store *st = d->store;
    struct order o;
    struct fulfil_cancelling none;
    if (!cancelling)
        cancelling = &none;
    cancelling->n = 0;
    char why[600];
    if (!coord_decides(d, why, sizeof why)) {
        if (!d->cfg.coordinator)
            snprintf(err, errlen, "only the coordinator station allocates orders");
        else
            snprintf(err, errlen, "this station does not allocate orders now: %s", why);
        return TALLY_E_CONFLICT;
    }
    int r = store_begin(st);
    if (r)
        return r;
    if ((r = order_by_id(st, order_id, &o)) != 0) {
        store_rollback(st);
        if (r == TALLY_E_NOT_FOUND)
            snprintf(err, errlen, "no order '%s'", order_id);
        return r;
    }
    int64_t now = store_now();
    bool changed = false;
    if (rel && fstate_is(&o, "allocated") && !outbound_asked(st, &o)) {
        if ((r = release(d, &o, 0)) == 0)
            r = set_fstate(st, &o, "ready", now);
    } else if (rel &&
               (fstate_is(&o, "allocated") || fstate_is(&o, "sent") || fstate_is(&o, "picked"))) {
        /* A warehouse may have it: cancelled there first; allocated again on its answer. */
        if (mp_class(o.status) != MP_SHIP) {
            snprintf(err, errlen, "order %s is %s on the marketplace: not to be shipped", order_id,
                     o.status);
            r = TALLY_E_CONFLICT;
        } else {
            r = release_by_cancel(d, &o, now, cancelling, err, errlen);
        }
        if (r == 0)
            r = clear_dirty(st, o.ref);
        if (r == 0)
            return store_commit(st);
        store_rollback(st);
        return r;
    } else if (rel && fstate_is(&o, "partial")) {
        snprintf(err, errlen,
                 "order %s has shipped part of its lines already: it cannot be released; the"
                 " rest ships from where it is allocated (tally orders show %s)",
                 order_id, order_id);
        r = TALLY_E_CONFLICT;
    }
    if (r == 0 && fstate_is(&o, "new"))
        r = order_step(d, &o, now, &changed);
    if (r == 0 && !fstate_is(&o, "ready") && !(fstate_is(&o, "allocated") && changed)) {
        snprintf(err, errlen,
                 "order %s is %s (%s): only a paid order awaiting allocation can be"
                 " allocated",
                 order_id, o.fstate, o.status);
        r = TALLY_E_CONFLICT;
    }
    if (r == 0 && fstate_is(&o, "ready") && mp_class(o.status) == MP_SHIP) {
        r = check_address(d, &o);
        if (r == 0)
            r = allocate(d, &o, now, &changed);
    } else if (r == 0 && fstate_is(&o, "ready")) {
        snprintf(err, errlen, "order %s is %s on the marketplace: not to be shipped", order_id,
                 o.status);
        r = TALLY_E_CONFLICT;
    }
    if (r == 0)
        r = clear_dirty(st, o.ref);
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    return r;
}

/* ---- hooks from the sync engine and the connectors ---- */

static int64_t warehouse_id(struct store *st, const char *code)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT id FROM warehouses WHERE code = ?1");
    int64_t id = 0;
    if (!s)
        return 0;
    sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return id;
}

/* Whether every unit of the order has left (no reservation waits at any warehouse). */
static bool all_left(struct store *st, const struct order *o)
{
    /* Every unit of every line has left: counted in units against the lines, not as "nothing
     * reserved", which is also true of a line a warehouse gave back and nobody took yet. */
    sqlite3_stmt *s = store_stmt(st, "SELECT COALESCE(SUM(qty), 0) - (SELECT COALESCE(SUM(qty), 0)"
                                     " FROM allocations WHERE order_ref = ?1"
                                     " AND state IN ('consumed', 'shipped'))"
                                     " FROM order_lines WHERE order_ref = ?1");
    if (!s)
        return false;
    sqlite3_bind_int64(s, 1, o->ref);
    bool left = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) <= 0;
    sqlite3_reset(s);
    return left;
}

/* Appends the marketplace upload of a shipment: order.fulfill, key "ful:<shipment id>". The
 * carrier goes as the warehouse named it, with the warehouse: the connector maps it to the
 * platform's logistics service key ([carriers]) and checks the number when it sends. */
static int upload(struct store *st, const struct order *o, const char *ship_id,
                  const char *send_type, const char *carrier, const char *tracking,
                  const char *whcode)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mp_pack_kv_str(&pk, "order_id", o->order_id);
    mp_pack_kv_str(&pk, "send_type", send_type);
    mp_pack_kv_str(&pk, "logistics_no", tracking);
    mp_pack_kv_str(&pk, "carrier", carrier);
    mp_pack_kv_str(&pk, "warehouse", whcode);
    char key[160];
    outbox_key_fulfil(key, sizeof key, ship_id);
    int64_t id;
    int r =
        outbox_append(st, key, OUTBOX_TARGET_MP, o->order_id, OBX_FULFIL, sb.data, sb.size, &id);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static int insert_shipment(struct store *st, const struct order *o, const char *id, int64_t wh,
                           const char *carrier, const char *tracking, const char *send_type,
                           int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO shipments(id, order_ref, warehouse, carrier,"
                                     " tracking_no, created_at, send_type, service, on_time)"
                                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?4, ?8)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, o->ref);
    sqlite3_bind_int64(s, 3, wh);
    sqlite3_bind_text(s, 4, carrier, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, tracking, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now);
    sqlite3_bind_text(s, 7, send_type, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 8, o->ship_by <= 0 || now <= o->ship_by);
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "shipment");
}

/* After a shipment: partial or shipped, and the deadline exception met. */
static int after_shipment(struct tallyd *d, struct order *o, int64_t now)
{
    struct store *st = d->store;
    bool done = all_left(st, o);
    int r = set_fstate(st, o, done ? "shipped" : "partial", now);
    if (r == 0 && done)
        r = clear_order(d, o, EXC_DEADLINE, "shipped");
    if (r == 0 && mp_class(o->status) == MP_CANCEL)
        r = raise_order(d, o, EXC_CANCELLED_AFTER_PICK, 0,
                        "order %s was cancelled by the marketplace but has been shipped:"
                        " intercept it with the carrier or restock the return",
                        o->order_id);
    return r;
}

/* The warehouse shipped its part: the reservations become 'consumed' (they keep counting
 * until an inventory round shows the units gone), a shipment is recorded and uploaded. */
static int outbound_shipped(struct tallyd *d, struct order *o, int64_t wh, const char *whcode,
                            const char *carrier, const char *tracking, int64_t now)
{
    struct store *st = d->store;
    char ship_id[160];
    snprintf(ship_id, sizeof ship_id, "%s@%s", o->order_id, whcode);
    bool have_trk = tracking && tracking[0];
    const char *car = carrier && carrier[0] ? carrier : "unknown";
    sqlite3_stmt *s = store_stmt(st, "SELECT tracking_no IS NULL, send_type, tracking_no"
                                     " FROM shipments WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, ship_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    bool known = rc == SQLITE_ROW, waits = known && sqlite3_column_int(s, 0);
    char send_type[8] = "", had[65] = "";
    if (known) {
        col_text(s, 1, send_type, sizeof send_type);
        col_text(s, 2, had, sizeof had);
    }
    sqlite3_reset(s);
    if (known && !waits && have_trk && strcmp(had, tracking) != 0) {
        /* Another parcel, or a corrected number: either way not the one the marketplace has. */
        char msg[512];
        snprintf(msg, sizeof msg,
                 "%s reports order %s shipped under tracking number %s, but its shipment %s was"
                 " recorded with %s: check which parcel left and correct the upload",
                 whcode, o->order_id, tracking, ship_id, had);
        struct exc_raise e = {.kind = EXC_WAREHOUSE,
                              .order_ref = o->ref,
                              .wh = wh,
                              .subject = "another tracking number",
                              .message = msg};
        return exceptions_raise(d, &e, NULL);
    }
    if (known && !(waits && have_trk))
        return 0;
    if (known) {
        /* The tracking number came after the shipment: now it can be uploaded. */
        s = store_stmt(st, "UPDATE shipments SET tracking_no = ?2, carrier = ?3 WHERE id = ?1");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(s, 1, ship_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, tracking, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, car, -1, SQLITE_STATIC);
        if ((rc = sqlite3_step(s)) != SQLITE_DONE)
            return store_error(st, rc, "shipment tracking");
        struct exc_raise e = {
            .kind = EXC_WAREHOUSE, .order_ref = o->ref, .wh = wh, .subject = "no tracking"};
        int r = upload(st, o, ship_id, send_type[0] ? send_type : "all", car, tracking, whcode);
        return r ? r : exceptions_clear(d, &e, "tracking number received");
    }
    s = store_stmt(st, "UPDATE allocations SET state = 'consumed', consumed_at = ?3,"
                       " shipped_at = ?3, shipment = ?4"
                       " WHERE order_ref = ?1 AND warehouse = ?2 AND state = 'reserved'");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, now);
    sqlite3_bind_text(s, 4, ship_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "consume");
    const char *type = all_left(st, o) ? "all" : "part";
    int r = insert_shipment(st, o, ship_id, wh, car, have_trk ? tracking : NULL, type, now);
    if (r == 0 && have_trk) {
        r = upload(st, o, ship_id, type, car, tracking, whcode);
    } else if (r == 0) {
        /* Never a made-up number to the marketplace: the upload waits for the real one. */
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%s shipped order %s without a tracking number; its upload to the marketplace"
                 " waits until the warehouse reports one",
                 whcode, o->order_id);
        struct exc_raise e = {.kind = EXC_WAREHOUSE,
                              .order_ref = o->ref,
                              .wh = wh,
                              .subject = "no tracking",
                              .message = msg};
        r = exceptions_raise(d, &e, NULL);
    }
    if (r == 0)
        r = after_shipment(d, o, now);
    return r;
}

/*
 * Whether this replica fulfilled (or is to fulfil) the order: it is open, or something of it
 * was allocated, asked of a warehouse or left out here. 1 yes, 0 no, < 0 a read error. An
 * order that had left or was cancelled before this replica first saw it is none of these:
 * what a warehouse's feed reports of it (a new station's first sync reads the warehouses'
 * history) is history, not a second fulfilment. The outbound rows are found by their unique
 * keys "ob:<WH>:<order id>", never by a scan of the outbox. With !open_counts, an open order
 * counts only when something of it was decided here (a station that is not deciding now).
 */
static int handled_here(struct store *st, const struct order *o, bool open_counts)
{
    if (open_counts && is_open(o))
        return 1;
    sqlite3_stmt *s =
        store_stmt(st, "SELECT EXISTS(SELECT 1 FROM allocations WHERE order_ref = ?1)"
                       " OR EXISTS(SELECT 1 FROM allocation_bans WHERE order_ref = ?1)"
                       " OR EXISTS(SELECT 1 FROM warehouses w JOIN outbox x"
                       "   ON x.key = 'ob:' || w.code || ':' || ?2)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    sqlite3_bind_text(s, 2, o->order_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int yes = rc == SQLITE_ROW && sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? yes : store_error(st, rc, "order history");
}

/*
 * A warehouse cancelled a copy of the order that was not allocated there (the cancel the
 * "unexpected order" exception asks for, or one of its own): that exception's cause is gone,
 * so it is resolved; and the id is used up there (the warehouse deduplicates by it forever:
 * a later outbound order would meet the cancelled one), so that warehouse is left out for
 * this order.
 */
static int copy_cancelled(struct tallyd *d, const struct order *o, int64_t wh)
{
    struct store *st = d->store;
    sqlite3_stmt *b = store_stmt(st, "INSERT OR IGNORE INTO allocation_bans(order_ref, warehouse,"
                                     " reason, at) VALUES(?1, ?2, 'cancelled there before', ?3)");
    if (!b)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(b, 1, o->ref);
    sqlite3_bind_int64(b, 2, wh);
    sqlite3_bind_int64(b, 3, store_now());
    int rc = sqlite3_step(b);
    sqlite3_reset(b);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "allocation ban");
    struct exc_raise e = {
        .kind = EXC_WAREHOUSE, .order_ref = o->ref, .wh = wh, .subject = "unexpected order"};
    return exceptions_clear(d, &e, "the warehouse cancelled its copy of the order");
}

/*
 * A warehouse reports an outbound order that this replica does not expect there: nothing of
 * the order is allocated to it (the order was given up there, went to another warehouse, or
 * was cancelled). The order may be fulfilled twice, so a person is told at once; a shipment
 * it reports is recorded (orders.get lists it, state 'unexpected') but is not uploaded as the
 * order's: the marketplace gets the shipments of the warehouses the order is allocated to.
 * Only the coordinator allocates, so only it can tell what is expected. One that is not
 * deciding now (it stopped on another coordinator's marks, or has not read the warehouses'
 * orders once yet) speaks only of orders it decided something about: the others' copies are
 * the other coordinator's, and its `coordinator` exception says so.
 */
static int unexpected_outbound(struct tallyd *d, const struct order *o, int64_t wh,
                               const char *whcode, const char *status, const char *carrier,
                               const char *tracking)
{
    struct store *st = d->store;
    if (!d->cfg.coordinator)
        return 0;
    int rc = handled_here(st, o, coord_decides(d, NULL, 0));
    if (rc <= 0)
        return rc; /* history (or a read error) */
    if (!strcmp(status, "cancelled"))
        return copy_cancelled(d, o, wh);
    bool shipped = !strcmp(status, "shipped");
    if (shipped) {
        char ship_id[160];
        snprintf(ship_id, sizeof ship_id, "%s@%s", o->order_id, whcode);
        sqlite3_stmt *s = store_stmt(
            st, "INSERT INTO shipments(id, order_ref, warehouse, carrier, tracking_no, created_at,"
                " state, service) VALUES(?1, ?2, ?3, ?4, ?5, ?6, 'unexpected', ?4)"
                " ON CONFLICT(id) DO UPDATE SET tracking_no = COALESCE(tracking_no,"
                " excluded.tracking_no) WHERE state = 'unexpected'");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(s, 1, ship_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, o->ref);
        sqlite3_bind_int64(s, 3, wh);
        sqlite3_bind_text(s, 4, carrier && carrier[0] ? carrier : "unknown", -1, SQLITE_STATIC);
        if (tracking && tracking[0])
            sqlite3_bind_text(s, 5, tracking, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 5);
        sqlite3_bind_int64(s, 6, store_now());
        if ((rc = sqlite3_step(s)) != SQLITE_DONE)
            return store_error(st, rc, "unexpected shipment");
    }
    char where[200] = "";
    sqlite3_stmt *s = store_stmt(st, "SELECT group_concat(DISTINCT w.code) FROM allocations a"
                                     " JOIN warehouses w ON w.id = a.warehouse"
                                     " WHERE a.order_ref = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, o->ref);
    if ((rc = sqlite3_step(s)) == SQLITE_ROW && sqlite3_column_text(s, 0))
        snprintf(where, sizeof where, "the order is allocated to %s",
                 (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return store_error(st, rc, "allocations");
    if (fstate_is(o, "cancelled"))
        snprintf(where, sizeof where, "the order is cancelled");
    else if (!where[0])
        snprintf(where, sizeof where, "nothing of the order is allocated there");
    char msg[512];
    if (shipped)
        snprintf(msg, sizeof msg,
                 "%s reports order %s shipped (%s %s), but it was not expected there (%s): the"
                 " order may have been sent twice: intercept one parcel with the carrier",
                 whcode, o->order_id, carrier && carrier[0] ? carrier : "carrier unknown",
                 tracking && tracking[0] ? tracking : "no tracking number", where);
    else
        snprintf(msg, sizeof msg,
                 "%s reports order %s as %s, but it is not expected there (%s): the order may be"
                 " fulfilled twice: cancel it at %s",
                 whcode, o->order_id, status, where, whcode);
    struct exc_raise e = {.kind = EXC_WAREHOUSE,
                          .order_ref = o->ref,
                          .wh = wh,
                          .subject = shipped ? "unexpected shipment" : "unexpected order",
                          .message = msg};
    return exceptions_raise(d, &e, NULL);
}

int fulfil_outbound_status(struct tallyd *d, int64_t wh, const char *id, const char *status,
                           const char *carrier, const char *tracking, const char *reason)
{
    struct store *st = d->store;
    struct order o;
    int r = order_by_id(st, id, &o);
    if (r == TALLY_E_NOT_FOUND)
        return 0; /* not one of ours (or from before this replica) */
    if (r)
        return r;
    int n = count_allocations(st, o.ref, NULL, wh);
    if (n < 0)
        return TALLY_E_STORAGE;
    int64_t now = store_now();
    char whcode[TALLY_MAX_ID_LEN + 1];
    warehouse_code(st, wh, whcode, sizeof whcode);
    if (n == 0)
        return unexpected_outbound(d, &o, wh, whcode, status, carrier, tracking);
    if (!strcmp(status, "accepted")) {
        if (fstate_is(&o, "allocated"))
            return set_fstate(st, &o, "sent", now);
        return 0;
    }
    if (!strcmp(status, "picking") || !strcmp(status, "packed")) {
        if (fstate_is(&o, "allocated") || fstate_is(&o, "sent"))
            r = set_fstate(st, &o, "picked", now);
        if (r == 0 && mp_class(o.status) == MP_CANCEL)
            r = raise_order(d, &o, EXC_CANCELLED_AFTER_PICK, 0,
                            "order %s was cancelled by the marketplace while %s is picking it:"
                            " intercept it (a cancel was sent) or restock the goods",
                            o.order_id, whcode);
        return r;
    }
    if (!strcmp(status, "shipped"))
        return outbound_shipped(d, &o, wh, whcode, carrier, tracking, now);
    if (!strcmp(status, "exception"))
        return raise_order(d, &o, EXC_WAREHOUSE, wh, "%s reports a problem with order %s: %s",
                           whcode, o.order_id, reason && reason[0] ? reason : "no reason given");
    if (!strcmp(status, "cancelled")) {
        bool asked = o.cancel_requested || mp_class(o.status) == MP_CANCEL;
        /* Cancelled because an operator released the order (orders.allocate): asked for,
         * though the order itself is to be shipped, from another warehouse. */
        char ckey[160], ctarget[80];
        bool cdue = true;
        if (!asked)
            decision_key(st, OBX_OUTBOUND_CANCEL, whcode, &o, ckey, ctarget, &cdue);
        bool released = !asked && !cdue;
        if ((r = release(d, &o, wh)) != 0)
            return r;
        if (released) {
            struct exc_raise e = {.kind = EXC_WAREHOUSE, .order_ref = o.ref, .wh = wh};
            char note[200];
            snprintf(note, sizeof note,
                     "%s cancelled the outbound order on an operator's release; the order is"
                     " allocated again elsewhere",
                     whcode);
            r = exceptions_clear(d, &e, note);
            e.subject = "cancel";
            if (r == 0)
                r = exceptions_clear(d, &e, note);
            if (r)
                return r;
        }
        if (!asked && !released) {
            /* The warehouse gave up on it by itself: it is not asked again for this order
             * (the id is used up there); the order goes back to allocation elsewhere, and a
             * person is told. */
            sqlite3_stmt *b = store_stmt(st, "INSERT OR IGNORE INTO allocation_bans(order_ref,"
                                             " warehouse, reason, at) VALUES(?1, ?2, ?3, ?4)");
            if (!b)
                return TALLY_E_STORAGE;
            sqlite3_bind_int64(b, 1, o.ref);
            sqlite3_bind_int64(b, 2, wh);
            sqlite3_bind_text(b, 3, reason && reason[0] ? reason : "cancelled by the warehouse", -1,
                              SQLITE_STATIC);
            sqlite3_bind_int64(b, 4, now);
            if (sqlite3_step(b) != SQLITE_DONE)
                return TALLY_E_STORAGE;
            r = raise_order(d, &o, EXC_WAREHOUSE, wh,
                            "%s cancelled outbound order %s by itself (%s); its stock was"
                            " released and the order goes to another warehouse if one has it",
                            whcode, o.order_id, reason && reason[0] ? reason : "no reason");
        }
        if (r)
            return r;
        if (count_allocations(st, o.ref, NULL, 0) == 0)
            r = set_fstate(st, &o, asked ? "cancelled" : "ready", now);
        else if (!asked)
            r = mark_dirty(st, o.ref); /* other parts stay; the given-back one is re-allocated */
        else if (count_allocations(st, o.ref, "reserved", 0) == 0 &&
                 count_allocations(st, o.ref, "consumed", 0) == 0 &&
                 count_allocations(st, o.ref, "shipped", 0) == 0)
            r = set_fstate(st, &o, "cancelled", now);
        if (r == 0 && asked && fstate_is(&o, "cancelled"))
            r = exceptions_clear_all(d, o.ref,
                                     "the warehouse cancelled the outbound order: nothing left");
        return r;
    }
    return 0;
}

int fulfil_inventory_round(struct tallyd *d, int64_t wh, int64_t started_at)
{
    struct store *st = d->store;
    /* In chunks, each chunk's SKUs refreshed, until none is left: a promotion day can ship
     * thousands of parts between two rounds. */
    sqlite3_stmt *s = store_stmt(st, "UPDATE allocations SET state = 'shipped' WHERE id IN"
                                     " (SELECT id FROM allocations WHERE warehouse = ?1"
                                     "  AND state = 'consumed' AND consumed_at < ?2 LIMIT 256)"
                                     " RETURNING sku");
    for (;;) {
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, wh);
        sqlite3_bind_int64(s, 2, started_at);
        int64_t skus[256];
        int n = 0, rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            if (n < 256)
                skus[n++] = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_error(st, rc, "consumed");
        if (n == 0)
            return 0;
        for (int i = 0; i < n; i++) {
            int r = refresh(d, skus[i], wh);
            if (r)
                return r;
        }
    }
}

static int shipment_uploaded(struct tallyd *d, const char *ship_id, bool done, const char *error)
{
    struct store *st = d->store;
    sqlite3_stmt *s = store_stmt(st, "UPDATE shipments SET state = ?2, uploaded_at = ?3"
                                     " WHERE id = ?1 RETURNING order_ref");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, ship_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, done ? "uploaded" : "rejected", -1, SQLITE_STATIC);
    if (done)
        sqlite3_bind_int64(s, 3, store_now());
    int rc = sqlite3_step(s);
    int64_t ref = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "shipment upload");
    struct order o;
    if (ref == 0 || order_load(st, ref, &o) != 0)
        return 0;
    /* Held before it was sent (the carrier's logistics service, the tracking number's rule:
     * conn_aliexpress.c fulfil_service): no refusal of the marketplace's. */
    if (!done && error && !strncmp(error, "not sent: ", 10))
        return raise_order(d, &o, EXC_UPSTREAM_REJECTED, 0,
                           "the shipment %s of order %s was not uploaded: %s; then tally outbox"
                           " retry",
                           ship_id, o.order_id, error + 10);
    if (!done)
        return raise_order(d, &o, EXC_UPSTREAM_REJECTED, 0,
                           "the marketplace refused the shipment %s of order %s: %s", ship_id,
                           o.order_id, error ? error : "no reason given");
    s = store_stmt(st, "SELECT COUNT(*) FROM shipments WHERE order_ref = ?1"
                       " AND state NOT IN ('uploaded', 'unexpected')");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    int pending = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 1;
    sqlite3_reset(s);
    if (pending == 0 && fstate_is(&o, "shipped"))
        return set_fstate(st, &o, "uploaded", store_now());
    return 0;
}

int fulfil_outbox_result(struct tallyd *d, const char *target, const char *kind, const char *key,
                         const char *entity, bool done, const char *error)
{
    struct store *st = d->store;
    struct order o;
    int r, k = outbox_kind_parse(kind);
    const char *whcode = outbox_target_code(target);
    if (k == OBX_FULFIL && outbox_key_fulfil_ship(key)) {
        r = shipment_uploaded(d, outbox_key_fulfil_ship(key), done, error);
        if (r == 0 && done && order_by_id(st, entity, &o) == 0)
            r = clear_order(d, &o, EXC_UPSTREAM_REJECTED, "uploaded after a retry");
        return r;
    }
    if (k == OBX_OUTBOUND || k == OBX_OUTBOUND_CANCEL) {
        if ((r = order_by_id(st, entity, &o)) != 0)
            return r == TALLY_E_NOT_FOUND ? 0 : r;
        int64_t wh = whcode ? warehouse_id(st, whcode) : 0;
        if (k == OBX_OUTBOUND) {
            if (!done)
                return raise_order(d, &o, EXC_UPSTREAM_REJECTED, wh,
                                   "%s refused outbound order %s: %s", target + 3, o.order_id,
                                   error ? error : "no reason given");
            struct exc_raise e = {.kind = EXC_UPSTREAM_REJECTED, .order_ref = o.ref, .wh = wh};
            r = exceptions_clear(d, &e, "accepted after a retry");
            if (r == 0 && fstate_is(&o, "allocated"))
                r = set_fstate(st, &o, "sent", store_now());
            return r;
        }
        if (!done && !o.cancel_requested && mp_class(o.status) != MP_CANCEL) {
            /* A cancel asked by an operator's release: the order stays at that warehouse. */
            char msg[TALLY_MAX_TEXT_LEN];
            if (wh && count_allocations(st, o.ref, "reserved", wh) == 0 &&
                count_allocations(st, o.ref, NULL, wh) > 0)
                /* Its shipment arrived before the answer: nothing is left to move. */
                snprintf(msg, sizeof msg,
                         "%s could not cancel outbound order %s (%s), asked for by a release:"
                         " it shipped the order from there before the cancel reached it; the"
                         " release did not happen",
                         target + 3, o.order_id, error ? error : "no reason given");
            else
                snprintf(msg, sizeof msg,
                         "%s could not cancel outbound order %s (%s), asked for by a release:"
                         " the order stays at %s; ship it from there, or settle it with them"
                         " and run tally outbox retry on the cancel",
                         target + 3, o.order_id, error ? error : "no reason given", target + 3);
            struct exc_raise e = {.kind = EXC_WAREHOUSE,
                                  .order_ref = o.ref,
                                  .wh = wh,
                                  .subject = "cancel",
                                  .message = msg};
            return exceptions_raise(d, &e, NULL);
        }
        if (!done) /* the same problem as a cancel that meets a shipment: one exception */
            return raise_order(d, &o, EXC_CANCELLED_AFTER_PICK, 0,
                               "order %s was cancelled by the marketplace, but %s could not"
                               " cancel its outbound order (%s): intercept it with the carrier"
                               " or restock the return",
                               o.order_id, target + 3, error ? error : "no reason given");
        return 0;
    }
    /* A movement or transfer: the stock row it is about. */
    int64_t sku = 0, wh = whcode ? warehouse_id(st, whcode) : 0;
    sqlite3_stmt *s = store_stmt(st, "SELECT id FROM skus WHERE code = ?1");
    if (s) {
        sqlite3_bind_text(s, 1, entity, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW)
            sku = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    char msg[TALLY_MAX_TEXT_LEN];
    snprintf(msg, sizeof msg,
             "%s refused %s %s: %s (the row is held: tally outbox retry or discard)", target, kind,
             key, error ? error : "no reason given");
    struct exc_raise e = {
        .kind = EXC_UPSTREAM_REJECTED, .sku = sku, .wh = wh, .subject = key, .message = msg};
    if (done) /* applied after all, on a retry after a fix: nothing left to do */
        return exceptions_clear(d, &e, "applied after a retry");
    return exceptions_raise(d, &e, NULL);
}

/* The warehouse of an outbound row's key "ob:<WH>:<order id>" (0 when it names none). */
static int64_t key_warehouse(struct store *st, const char *key, const char *order_id)
{
    char code[TALLY_MAX_ID_LEN + 1];
    return outbox_key_order_wh(key, order_id, code, sizeof code) ? warehouse_id(st, code) : 0;
}

/* An outbound order the operator gave up on: held after the warehouse refused it, or never
 * sent (outbox_may_discard lets no other row go), so that warehouse does not have it. Its
 * part is released and the warehouse left out for this order; the order is looked at again
 * (re-allocated elsewhere when nothing else of it is under way). */
static int outbound_given_up(struct tallyd *d, const char *key, const char *entity)
{
    struct store *st = d->store;
    struct order o;
    int64_t wh = key_warehouse(st, key, entity);
    if (!wh || order_by_id(st, entity, &o) != 0)
        return 0;
    sqlite3_stmt *b =
        store_stmt(st, "INSERT OR IGNORE INTO allocation_bans(order_ref, warehouse,"
                       " reason, at) VALUES(?1, ?2, 'refused the outbound order', ?3)");
    if (!b)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(b, 1, o.ref);
    sqlite3_bind_int64(b, 2, wh);
    sqlite3_bind_int64(b, 3, store_now());
    int r = sqlite3_step(b) == SQLITE_DONE ? release(d, &o, wh) : TALLY_E_STORAGE;
    if (r == 0 && count_allocations(st, o.ref, NULL, 0) == 0 && is_open(&o))
        r = set_fstate(st, &o, "ready", store_now());
    if (r == 0)
        r = mark_dirty(st, o.ref);
    return r;
}

int fulfil_outbox_discarded(struct tallyd *d, const char *kind, const char *key, const char *entity,
                            const char *who, const char *reason)
{
    struct store *st = d->store;
    int k = outbox_kind_parse(kind);
    if (k == OBX_OUTBOUND) {
        int r = outbound_given_up(d, key, entity);
        if (r)
            return r;
    }
    char note[TALLY_MAX_TEXT_LEN + 64];
    snprintf(note, sizeof note, "outbox row discarded: %s", reason);
    if (k == OBX_OUTBOUND || k == OBX_FULFIL) {
        /* Exactly the exception this row's refusal raised (an order may have several). */
        struct order o;
        if (order_by_id(st, entity, &o) != 0)
            return 0;
        struct exc_raise e = {.kind = EXC_UPSTREAM_REJECTED,
                              .order_ref = o.ref,
                              .wh = k == OBX_OUTBOUND ? key_warehouse(st, key, entity) : 0};
        return exceptions_resolve(d, &e, who, note);
    }
    /* A movement's: keyed by the row's key at the end of its dedupe text. */
    sqlite3_stmt *s = store_stmt(st, "UPDATE exceptions SET state = 'resolved', resolved_by = ?2,"
                                     " resolved_at = ?3, note = ?4"
                                     " WHERE kind = 'upstream_rejected' AND state <> 'resolved'"
                                     " AND substr(dedupe, -length(?1) - 1) = '|' || ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, who, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, store_now());
    sqlite3_bind_text(s, 4, note, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "exception resolve");
}

int fulfil_stock_drift(struct tallyd *d, int64_t sku, int64_t wh, int64_t had, int64_t upstream)
{
    return fulfil_stock_drift_on(d, d->store, sku, wh, had, upstream);
}

int fulfil_stock_drift_on(struct tallyd *d, struct store *st, int64_t sku, int64_t wh, int64_t had,
                          int64_t upstream)
{
    char whcode[TALLY_MAX_ID_LEN + 1], msg[256];
    warehouse_code(st, wh, whcode, sizeof whcode);
    snprintf(msg, sizeof msg,
             "reconciliation: the replica had %" PRId64
             " on hand at %s where the warehouse has %" PRId64
             "; repaired to the warehouse's figure: check for a lost or unrecorded movement",
             had, whcode, upstream);
    struct exc_raise e = {.kind = EXC_STOCK_DRIFT, .sku = sku, .wh = wh, .message = msg};
    return exceptions_raise_on(d, st, &e, NULL);
}

/* ---- shipments made at this station ---- */

struct held {
    int64_t id, sku, qty;
    char code[TALLY_MAX_ID_LEN + 1];
};

/* The order's reserved allocations at a warehouse. */
static int held_at(struct store *st, int64_t ref, int64_t wh, struct held *out, int cap)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT a.id, a.sku, a.qty, k.code FROM allocations a"
                                     " JOIN skus k ON k.id = a.sku WHERE a.order_ref = ?1"
                                     " AND a.warehouse = ?2 AND a.state = 'reserved'"
                                     " ORDER BY k.code");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    sqlite3_bind_int64(s, 2, wh);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < cap) {
        out[n].id = sqlite3_column_int64(s, 0);
        out[n].sku = sqlite3_column_int64(s, 1);
        out[n].qty = sqlite3_column_int64(s, 2);
        col_text(s, 3, out[n].code, sizeof out[n].code);
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_error(st, rc, "allocations");
    return n;
}

/* Ships `qty` of allocation `h`: all of it (the row becomes 'shipped') or part (the row keeps
 * the rest and a 'shipped' row takes the part). */
static int ship_allocation(struct store *st, const struct held *h, int64_t qty, const char *ship,
                           int64_t now)
{
    sqlite3_stmt *s;
    if (qty == h->qty) {
        s = store_stmt(st, "UPDATE allocations SET state = 'shipped', shipped_at = ?2,"
                           " shipment = ?3 WHERE id = ?1");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, h->id);
        sqlite3_bind_int64(s, 2, now);
        sqlite3_bind_text(s, 3, ship, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        return rc == SQLITE_DONE ? 0 : store_error(st, rc, "ship allocation");
    }
    s = store_stmt(st, "INSERT INTO allocations(order_ref, sku, warehouse, qty, state, shipment,"
                       " created_at, shipped_at) SELECT order_ref, sku, warehouse, ?2, 'shipped',"
                       " ?3, created_at, ?4 FROM allocations WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, h->id);
    sqlite3_bind_int64(s, 2, qty);
    sqlite3_bind_text(s, 3, ship, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, now);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "ship allocation");
    s = store_stmt(st, "UPDATE allocations SET qty = qty - ?2 WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, h->id);
    sqlite3_bind_int64(s, 2, qty);
    rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "ship allocation");
}

/* An existing shipment id: the same shipment again is a duplicate, anything else a conflict. */
static int ship_again(struct store *st, const struct order *o, int64_t wh, const char *tracking,
                      struct ship_result *res, char *err, size_t errlen)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT order_ref, warehouse, tracking_no, send_type"
                                     " FROM shipments WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, res->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? 1 : store_error(st, rc, "shipment");
    }
    const char *trk = (const char *)sqlite3_column_text(s, 2);
    bool same = sqlite3_column_int64(s, 0) == o->ref && sqlite3_column_int64(s, 1) == wh && trk &&
                !strcmp(trk, tracking);
    col_text(s, 3, res->send_type, sizeof res->send_type);
    sqlite3_reset(s);
    if (!same) {
        snprintf(err, errlen, "shipment id '%s' was already used for another shipment", res->id);
        return TALLY_E_CONFLICT;
    }
    res->duplicate = true;
    snprintf(res->fstate, sizeof res->fstate, "%s", o->fstate);
    s = store_stmt(st, "SELECT k.code, SUM(a.qty) FROM allocations a JOIN skus k ON k.id = a.sku"
                       " WHERE a.order_ref = ?2 AND a.shipment = ?1 GROUP BY k.code"
                       " ORDER BY k.code");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, res->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, o->ref);
    while (sqlite3_step(s) == SQLITE_ROW && res->nlines < FULFIL_MAX_SHIP_LINES) {
        col_text(s, 0, res->lines[res->nlines].sku, sizeof res->lines[0].sku);
        res->lines[res->nlines++].qty = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return 0;
}

/* "<order>-<warehouse>-<n>", or, when that exceeds an id's 64 bytes, the order's start and a
 * hash of all three (FNV-1a): distinct for distinct warehouses, never cut into a collision. */
static void default_shipment_id(const char *order, const char *wh, int n, char *out, size_t cap)
{
    char full[3 * TALLY_MAX_ID_LEN];
    int len = snprintf(full, sizeof full, "%s-%s-%d", order, wh, n);
    if (len > 0 && len <= TALLY_MAX_ID_LEN && (size_t)len < cap) {
        memcpy(out, full, (size_t)len + 1);
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = full; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    snprintf(out, cap, "%.40s-%016" PRIx64, order, h);
}

static int ship_locked(struct tallyd *d, const struct ship_req *req, struct ship_result *res,
                       char *err, size_t errlen)
{
    struct store *st = d->store;
    struct order o;
    int r = order_by_id(st, req->order_id, &o);
    if (r) {
        if (r == TALLY_E_NOT_FOUND)
            snprintf(err, errlen, "no order '%s'", req->order_id);
        return r;
    }
    sqlite3_stmt *s = store_stmt(st, "SELECT id, fulfilment FROM warehouses WHERE code = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, req->warehouse, -1, SQLITE_STATIC);
    int64_t wh = 0;
    char mode[16] = "";
    if (sqlite3_step(s) == SQLITE_ROW) {
        wh = sqlite3_column_int64(s, 0);
        col_text(s, 1, mode, sizeof mode);
    }
    sqlite3_reset(s);
    if (!wh) {
        snprintf(err, errlen, "no warehouse '%s'", req->warehouse);
        return TALLY_E_NOT_FOUND;
    }
    /* A warehouse that keeps its own stock picks and ships itself (warehouse kinds). */
    struct stock_move chk = {.kind = STOCK_PICK, .qty = 1};
    snprintf(chk.warehouse, sizeof chk.warehouse, "%s", req->warehouse);
    if ((r = stock_move_allowed(&d->cfg, &chk, err, errlen)) != 0)
        return r;
    int64_t now = store_now();
    int seq = count_allocations(st, o.ref, "shipped", wh);
    if (req->id[0])
        snprintf(res->id, sizeof res->id, "%s", req->id);
    else
        default_shipment_id(o.order_id, req->warehouse, seq < 0 ? 1 : seq + 1, res->id,
                            sizeof res->id);
    if (req->id[0] && (r = ship_again(st, &o, wh, req->tracking, res, err, errlen)) <= 0)
        return r;
    if (strcmp(mode, "station") != 0) {
        snprintf(err, errlen, "%s has %s fulfilment: %s", req->warehouse, mode,
                 !strcmp(mode, "outbound") ? "its own system ships outbound orders"
                                           : "it takes no orders");
        return TALLY_E_INVALID_PARAMS;
    }
    if (fstate_is(&o, "cancelled") || mp_class(o.status) == MP_CANCEL) {
        snprintf(err, errlen, "order %s is cancelled: do not ship it", o.order_id);
        return TALLY_E_CONFLICT;
    }
    if (exception_open(st, o.ref, EXC_PAYMENT_HELD) || mp_class(o.status) == MP_HELD) {
        snprintf(err, errlen, "order %s: payment held by risk control; do not ship yet",
                 o.order_id);
        return TALLY_E_CONFLICT;
    }
    struct held h[ALLOC_MAX_LINES];
    int nh = held_at(st, o.ref, wh, h, ALLOC_MAX_LINES);
    if (nh < 0)
        return nh;
    if (nh == 0) {
        snprintf(err, errlen, "order %s has nothing allocated at %s waiting to ship (it is %s)",
                 o.order_id, req->warehouse, o.fstate);
        return TALLY_E_INVALID_PARAMS;
    }
    int64_t take[ALLOC_MAX_LINES] = {0};
    if (req->nlines == 0) {
        for (int i = 0; i < nh; i++)
            take[i] = h[i].qty;
    }
    for (int l = 0; l < req->nlines; l++) {
        int i = 0;
        while (i < nh && strcmp(h[i].code, req->lines[l].sku) != 0)
            i++;
        if (i == nh) {
            snprintf(err, errlen, "%s is not allocated to %s for order %s", req->lines[l].sku,
                     req->warehouse, o.order_id);
            return TALLY_E_INVALID_PARAMS;
        }
        take[i] += req->lines[l].qty;
        if (req->lines[l].qty <= 0 || take[i] > h[i].qty) {
            snprintf(err, errlen, "%s: %" PRId64 " allocated at %s, not %" PRId64, h[i].code,
                     h[i].qty, req->warehouse, take[i]);
            return TALLY_E_INVALID_PARAMS;
        }
    }
    for (int i = 0; i < nh; i++) {
        if (take[i] == 0)
            continue;
        /* The goods left: the pick is recorded even if the local view has fewer (the
         * warehouse is the authority on what is there; it reconciles). */
        struct stock_move m = {.kind = STOCK_PICK, .qty = take[i], .force = true};
        outbox_line_movement_id(res->id, h[i].code, m.id, sizeof m.id);
        snprintf(m.sku, sizeof m.sku, "%s", h[i].code);
        snprintf(m.warehouse, sizeof m.warehouse, "%s", req->warehouse);
        snprintf(m.reason, sizeof m.reason, "shipment %s", res->id);
        snprintf(m.ref, sizeof m.ref, "%s", o.order_id);
        struct stock_move_result mr;
        if ((r = stock_move_apply_locked(st, &m, &mr, err, errlen)) != 0)
            return r;
        if ((r = ship_allocation(st, &h[i], take[i], res->id, now)) != 0 ||
            (r = refresh(d, h[i].sku, wh)) != 0)
            return r;
        if (res->nlines < FULFIL_MAX_SHIP_LINES) {
            snprintf(res->lines[res->nlines].sku, sizeof res->lines[0].sku, "%s", h[i].code);
            res->lines[res->nlines++].qty = take[i];
        }
    }
    const char *send_type = all_left(st, &o) ? "all" : "part";
    snprintf(res->send_type, sizeof res->send_type, "%s", send_type);
    if ((r = insert_shipment(st, &o, res->id, wh, req->carrier, req->tracking, send_type, now)) ||
        (r = upload(st, &o, res->id, send_type, req->carrier, req->tracking, req->warehouse)) ||
        (r = after_shipment(d, &o, now)))
        return r;
    snprintf(res->fstate, sizeof res->fstate, "%s", o.fstate);
    return 0;
}

int fulfil_ship(struct tallyd *d, const struct ship_req *req, struct ship_result *res, char *err,
                size_t errlen)
{
    memset(res, 0, sizeof *res);
    err[0] = 0;
    int r = store_begin(d->store);
    if (r)
        return r;
    r = ship_locked(d, req, res, err, errlen);
    if (r == 0)
        r = store_commit(d->store);
    else
        store_rollback(d->store);
    if (r && !err[0])
        snprintf(err, errlen, "the shipment was not recorded: %s", tally_strerror(r));
    return r;
}
