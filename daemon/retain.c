/*
 * Retention of the outbox (retain.h).
 *
 * An outbox row that reached 'done' (its upstream confirmed it) or 'discarded' (an operator
 * gave it up before it could have left) is never sent again. Left alone such rows grow without
 * bound (about 100,000 a day at a normal order rate, each with its MessagePack payload). But a
 * row's unique `key` is also how tallyd knows an effect was asked for already: a row looked up
 * by key and not found is created again, and its effect sent upstream a second time. So a row
 * is deleted only when another record, never deleted, answers every lookup of its key; each
 * lookup, what a missing row would mean, and the record that guards it:
 *
 *  - movement / transfer rows (key = the movement id, stock.c append_outbox; shipment lines'
 *    movements too, outbox_line_movement_id): a client retrying a movement with the same id
 *    is answered from the ledger, `movements` (stock.c movement_exists, before any outbox
 *    row is made): no new row, nothing sent again. outbox_id_of only fills the duplicate's
 *    answer (its outbox_id is 0 once the row is gone). The origin leg of a transfer into a
 *    warehouse that keeps its own stock is also read by outbox_waits (the notice waits while
 *    the leg is not 'done') and withdraw_notices (SQL_NOTICES_OF_LEG, on the leg's discard):
 *    a missing leg would let a waiting notice go. Guard: the movement's leg 0 exists, and for
 *    a transfer no notice referring to it (inbound_notices.ref) is still pending or refused.
 *  - inbound rows (key "in:<WH>:<notice id>", inbound.c): a retried `tally inbound create`
 *    is found by its notice id in `inbound_notices` first (the outbox lookup after it only
 *    fills the answer's outbox_id); a transfer's notice is made in the transfer's own
 *    transaction, guarded by the movement. cmd_inbound.c's listing joins the row for its state
 *    (LEFT JOIN: shown empty once gone; the notice's own state says sent or discarded).
 *    Guard: the notice row exists.
 *  - fulfil rows (key "ful:<shipment id>", fulfil.c upload): appended only with the shipment
 *    row's insert, or when the shipment's missing tracking number arrives (tracking_no NULL
 *    -> set, in the same transaction); a retried `tally ship` and a warehouse's repeated
 *    "shipped" report find the `shipments` row (fulfil_ship, outbound_shipped). Guard: the
 *    shipment exists with its tracking number.
 *  - outbound / outbound_cancel rows (keys "ob:<WH>:<order>", "obc:<WH>:<order>", fulfil.c
 *    decision_key): the fulfilment pass asks `outbox_has(key)` before it sends an order to a
 *    warehouse or asks it to cancel: a missing row while the order can still move would send
 *    it again, and the warehouse deduplicates by the order id forever (a refusal or a second
 *    parcel). outbound_asked, release_by_cancel and reopen (which bans the warehouses that had
 *    the order when a cancelled order is to be shipped after all) read them too, and
 *    handled_here (a warehouse's report of an order this station never handled is an
 *    "unexpected order"). Guard: the order is 'finished' (the one state the pass never moves
 *    an order out of: no send, no cancel, no reopen; 'cancelled' can reopen) since before the
 *    cutoff, and its allocations or allocation bans remain (handled_here's other records).
 *    Rows of orders that never finish (cancelled ones, those still open) are kept.
 *  - any other kind: kept.
 * Other readers need no guard: sync.c reads only pending/inflight rows, conn_aliexpress.c
 * and cmd_sync.c read a row by id (retry and discard refuse done rows; a gone row is "no
 * outbox row N"), privacy.c scrubs payloads of rows still there, the status counters
 * (migration 16) count pending and held rows only, so deleting done rows leaves them right.
 *
 * A row kept past the retention loses its payload (an empty map): nothing reads the payload
 * of a done or discarded row (only sync.c, of rows to send), and an order's payload holds its
 * buyer's address.
 *
 * The retention ([sync] outbox_keep_days, 14 by default) is not what makes this safe (the
 * guards are); it keeps two weeks of history for `tally outbox` and for an operator looking
 * back at an incident, which is longer than any retry of a key: the CLI retries for seconds,
 * a client's offline queue is meant for hours, and order-keyed rows wait for their order to
 * finish anyway.
 *
 * The rows are walked by id (the rowid, no index written by the drain): ids grow with
 * created_at, and a row is done after it was created, so a pass ends at the first row created
 * after the cutoff. A pass goes on from where the last one ended, and from the first row once
 * a day (RETAIN_FULL_EVERY_S) for the rows kept because their entity had not settled yet.
 */
#include "retain.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"
#include "worker.h"

/* The rows in (?1, ?2] deleted: over, old enough (?3), and guarded (the head's analysis). */
#define SQL_PRUNE                                                                                  \
    "DELETE FROM outbox AS x WHERE x.id > ?1 AND x.id <= ?2"                                       \
    " AND x.state IN ('done', 'discarded') AND x.done_at <= ?3 AND CASE x.kind"                    \
    " WHEN 'movement' THEN EXISTS(SELECT 1 FROM movements m WHERE m.id = x.key AND m.leg = 0"      \
    "   AND (m.kind <> 'transfer' OR NOT EXISTS(SELECT 1 FROM inbound_notices n"                   \
    "     WHERE n.ref = x.key AND n.from_wh IS NOT NULL AND n.state IN ('pending', 'refused'))))"  \
    " WHEN 'transfer' THEN EXISTS(SELECT 1 FROM movements m WHERE m.id = x.key AND m.leg = 0)"     \
    " WHEN 'inbound' THEN EXISTS(SELECT 1 FROM inbound_notices n WHERE n.id = x.entity)"           \
    " WHEN 'fulfil' THEN substr(x.key, 1, 4) = 'ful:' AND EXISTS(SELECT 1 FROM shipments s"        \
    "   WHERE s.id = substr(x.key, 5) AND s.tracking_no IS NOT NULL)"                              \
    " WHEN 'outbound' THEN EXISTS(" SQL_ORDER_OVER ")"                                             \
    " WHEN 'outbound_cancel' THEN EXISTS(" SQL_ORDER_OVER ")"                                      \
    " ELSE 0 END"
#define SQL_ORDER_OVER                                                                             \
    "SELECT 1 FROM orders o WHERE o.order_id = x.entity AND o.fstate = 'finished'"                 \
    " AND o.finished_at <= ?3 AND (EXISTS(SELECT 1 FROM allocations a WHERE a.order_ref = o.id)"   \
    "   OR EXISTS(SELECT 1 FROM allocation_bans b WHERE b.order_ref = o.id))"

int64_t retain_keep_s(const struct tallyd *d)
{
    return d->cfg.outbox_keep_s ? (int64_t)d->cfg.outbox_keep_s
                                : (int64_t)d->cfg.outbox_keep_days * 86400;
}

int64_t retain_every_s(const struct tallyd *d)
{
    int64_t e = retain_keep_s(d) / 4;
    return e < 1 ? 1 : e > RETAIN_EVERY_S ? RETAIN_EVERY_S : e;
}

/* One chunk: the rows in (after, upto]. */
static int chunk(struct store *st, int64_t after, int64_t upto, int64_t cutoff,
                 struct retain_counts *n)
{
    sqlite3 *db = store_db(st);
    sqlite3_stmt *s = store_stmt(st, SQL_PRUNE);
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, upto);
    sqlite3_bind_int64(s, 3, cutoff);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbox prune");
    n->deleted += sqlite3_changes(db);
    s = store_stmt(st, "UPDATE outbox SET payload = x'80' WHERE id > ?1 AND id <= ?2"
                       " AND state IN ('done', 'discarded') AND done_at <= ?3"
                       " AND length(payload) > 1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, upto);
    sqlite3_bind_int64(s, 3, cutoff);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbox payload drop");
    n->stripped += sqlite3_changes(db);
    return 0;
}

int retain_step(struct store *st, int64_t cutoff, int64_t *after_id, int max_rows, int64_t until_us,
                struct retain_counts *n, bool *end)
{
    struct retain_counts got = {0, 0};
    int64_t after = *after_id;
    int looked = 0;
    *end = false;
    int r = store_begin(st);
    if (r)
        return r;
    for (;;) {
        /* The id RETAIN_CHUNK rows on (or the last one), and whether the range holds a row
         * too young for this pass (the pass ends with this chunk). */
        sqlite3_stmt *s = store_stmt(st, "SELECT id FROM outbox WHERE id > ?1"
                                         " ORDER BY id LIMIT 1 OFFSET ?2");
        if (!s) {
            r = TALLY_E_STORAGE;
            break;
        }
        sqlite3_bind_int64(s, 1, after);
        sqlite3_bind_int64(s, 2, RETAIN_CHUNK - 1);
        int rc = sqlite3_step(s);
        int64_t upto = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : INT64_MAX;
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            r = store_error(st, rc, "outbox retention");
            break;
        }
        s = store_stmt(st, "SELECT EXISTS(SELECT 1 FROM outbox WHERE id > ?1 AND id <= ?2"
                           " AND created_at > ?3)");
        if (!s) {
            r = TALLY_E_STORAGE;
            break;
        }
        sqlite3_bind_int64(s, 1, after);
        sqlite3_bind_int64(s, 2, upto);
        sqlite3_bind_int64(s, 3, cutoff);
        rc = sqlite3_step(s);
        bool young = rc == SQLITE_ROW && sqlite3_column_int(s, 0);
        sqlite3_reset(s);
        if (rc != SQLITE_ROW) {
            r = store_error(st, rc, "outbox retention");
            break;
        }
        if ((r = chunk(st, after, upto, cutoff, &got)) != 0)
            break;
        looked += RETAIN_CHUNK;
        if (upto == INT64_MAX || young) {
            /* Go on from here next time: the young rows were not looked at for good. */
            *end = true;
            break;
        }
        after = upto;
        if (looked >= max_rows || worker_now_us() >= until_us || store_writer_wanted())
            break;
    }
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    if (r)
        return r;
    *after_id = after;
    n->deleted += got.deleted;
    n->stripped += got.stripped;
    return 0;
}

int retain_run(struct store *st, int64_t cutoff, struct retain_counts *n)
{
    int64_t after = 0;
    bool end = false;
    while (!end) {
        int r = retain_step(st, cutoff, &after, 1 << 20, INT64_MAX, n, &end);
        if (r)
            return r;
    }
    return 0;
}

/* ---- the pass, as write jobs ---- */

struct retain_job {
    struct worker_job job; /* first */
    struct tallyd *d;
    int64_t cutoff;
    int64_t after;
    bool end;
    struct retain_counts n;
};

static int job_run(struct worker_job *job, struct store *st)
{
    struct retain_job *rj = (struct retain_job *)job;
    int64_t t0 = worker_now_us();
    /* As titleidx.c: a crash loses the last slices' deletes, and the next pass does them. */
    store_set_durable(st, false);
    int r = 0;
    while (!rj->end && worker_now_us() - t0 < RETAIN_JOB_US) {
        int64_t now = worker_now_us();
        if ((r = retain_step(st, rj->cutoff, &rj->after, 1 << 20, now + WORKER_SLICE_US, &rj->n,
                             &rj->end)) != 0)
            break;
    }
    store_set_durable(st, rj->d->cfg.sync_full);
    return r;
}

static void job_done(struct worker_job *job, int status)
{
    struct retain_job *rj = (struct retain_job *)job;
    struct tallyd *d = rj->d;
    struct retain_stats *rs = &d->retained;
    if (status == 0 && !rj->end && !d->stopping && worker_write(d, &rj->job) == 0)
        return; /* on with the pass */
    rs->pruned += rj->n.deleted;
    rs->stripped += rj->n.stripped;
    rs->resume_after = rj->after;
    if (status == 0) {
        rs->last_at = store_now();
        rs->last_pruned = rj->n.deleted;
        if (rj->n.deleted || rj->n.stripped)
            log_info("outbox retention: %" PRId64 " done rows deleted, %" PRId64
                     " payloads dropped",
                     rj->n.deleted, rj->n.stripped);
    } else if (status != TALLY_E_SHUTTING_DOWN) {
        log_warn("outbox retention: %s (tried again later)", tally_strerror(status));
    }
    d->retain = NULL;
    free(rj);
}

int retain_start(struct tallyd *d)
{
    struct retain_stats *rs = &d->retained;
    int64_t now = store_now();
    if (d->retain || now < rs->next_at)
        return 0;
    rs->next_at = now + retain_every_s(d);
    struct retain_job *rj = calloc(1, sizeof *rj);
    if (!rj)
        return TALLY_E_NOMEM;
    rj->d = d;
    rj->cutoff = now - retain_keep_s(d);
    int64_t full_every =
        retain_keep_s(d) < RETAIN_FULL_EVERY_S ? retain_every_s(d) : RETAIN_FULL_EVERY_S;
    if (rs->full_at == 0 || now - rs->full_at >= full_every) {
        rs->full_at = now;
        rs->resume_after = 0;
    }
    rj->after = rs->resume_after;
    rj->job.run = job_run;
    rj->job.done = job_done;
    int r = worker_write(d, &rj->job);
    if (r) {
        free(rj);
        return r == TALLY_E_SHUTTING_DOWN ? 0 : r;
    }
    d->retain = rj;
    return 0;
}
