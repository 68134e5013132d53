#include "sync.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "catalog.h"
#include "codec.h"
#include "coord.h"
#include "events.h"
#include "exceptions.h"
#include "fulfil.h"
#include "gcommit.h"
#include "log.h"
#include "stock.h"
#include "store.h"
#include "tally/protocol.h"
#include "outbox.h"
#include "upstream.h"
#include "whfeed.h"
#include "worker.h"

#define TICK_MS 100
#define BACKOFF_BASE_MS 1000

struct sync_engine {
    struct tallyd *d;
    uv_timer_t tick;
    struct upstream *ups;
    int nups;
    uint64_t rng;
    bool stopping;
    /* Push outcomes the replica refused to record, oldest first (see unrecorded_flush). */
    struct push_batch *unrecorded, **unrecorded_tail;
    uint64_t unrecorded_since_ms; /* loop time of the first refusal; 0 when none waits */
    bool stale_inflight; /* rows left 'inflight' by the last run are not pending again yet */
    /* Push batches taken while rows they may hold were not durable yet (TAKE_PARK), oldest
     * first: sent once a sync covers their take (push_or_park). */
    struct push_batch *parked, **parked_tail;
    /* The loop's own work that yielded to a group commit (store_begin_yield: a parked page,
     * an outcome not recorded yet) or waits for one to make rows durable before they are
     * taken (sync_barrier): the commit's end wakes the engine (sync_writer_free). */
    bool wants_writer;
    bool unrecorded_busy;          /* unrecorded_flush stopped at a group commit, not a fault */
    uint64_t barrier_since_ms;     /* loop time a take first waited for a barrier; 0: none */
    uint64_t pub_barrier_since_ms; /* the same for the marketplace figures (take_publish) */
    uint64_t barriers, yields;     /* since the start (status, tests) */
    int jobs;                      /* pages being applied off the loop (page_job) */
    bool tick_closed;              /* stopped: freed once no job is left too */
    /* take_batch's table of entities, kept from one look to the next: only the slots a look
     * used are cleared after it (a look of a 1,000-row batch has 16,384 slots, 1.5 MB:
     * allocating and clearing it all was about 5 % of tallyd's time in a drain, perf of
     * bench_drain.sh). */
    struct look_slot *look_slots;
    uint32_t *look_used;
    size_t look_nslots, look_cap;
};

static uint64_t rnd(struct sync_engine *e)
{
    uint64_t z = (e->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)). */
static uint64_t backoff_ms(struct sync_engine *e, int attempt)
{
    uint64_t cap = (uint64_t)e->d->cfg.retry_max_s * 1000, ceil = BACKOFF_BASE_MS;
    for (int i = 0; i < attempt && ceil < cap; i++)
        ceil *= 2;
    if (ceil > cap)
        ceil = cap;
    return rnd(e) % (ceil + 1);
}

static uint64_t now_ms(struct sync_engine *e)
{
    return uv_now(e->d->loop);
}

static void on_tick(uv_timer_t *t);
static bool unrecorded_flush(struct sync_engine *e);
static void stale_inflight_reset(struct sync_engine *e, bool first);

/* Runs the scheduler again as soon as the loop is free: a completion may have made work
 * possible (the next page, the next rows of an entity) that should not wait for the tick. */
static void kick(struct sync_engine *e)
{
    if (!e->stopping)
        uv_timer_start(&e->tick, on_tick, 0, TICK_MS);
}

/* ---- checkpoints ---- */

static int checkpoint_load(struct store *st, const char *stream, struct checkpoint *cp)
{
    memset(cp, 0, sizeof *cp);
    snprintf(cp->stream, sizeof cp->stream, "%s", stream);
    sqlite3_stmt *s = store_stmt(st, "SELECT cursor, version, modified_since, rows_total"
                                     " FROM checkpoints WHERE stream = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, stream, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *c = (const char *)sqlite3_column_text(s, 0);
        snprintf(cp->cursor, sizeof cp->cursor, "%s", c ? c : "");
        cp->version = sqlite3_column_int64(s, 1);
        cp->modified_since = sqlite3_column_int64(s, 2);
        cp->rows_total = sqlite3_column_int64(s, 3);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_error(st, rc, "checkpoint");
}

static int checkpoint_save(struct store *st, const struct checkpoint *cp, int64_t rows)
{
    sqlite3_stmt *s = store_stmt(
        st, "INSERT INTO checkpoints(stream, cursor, version, modified_since, rows_total,"
            " updated_at) VALUES(?1, NULLIF(?2, ''), ?3, ?4, ?5, ?6)"
            " ON CONFLICT(stream) DO UPDATE SET cursor = excluded.cursor,"
            " version = excluded.version, modified_since = excluded.modified_since,"
            " rows_total = checkpoints.rows_total + ?5, updated_at = excluded.updated_at");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, cp->stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, cp->cursor, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, cp->version);
    sqlite3_bind_int64(s, 4, cp->modified_since);
    sqlite3_bind_int64(s, 5, rows);
    sqlite3_bind_int64(s, 6, store_now());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "checkpoint save");
}

/* ---- link state ---- */

/* An outage shorter than this is a failed call, not a cut link: no catch-up round for it. */
#define OUTAGE_MS 5000

static void auth_resolved(struct upstream *u, bool was_refused);

static void link_ok(struct upstream *u)
{
    if (u->link == LINK_AUTH_FAILED) {
        /* The credentials work again: one problem, one resolution; every stream catches up. */
        auth_resolved(u, true);
        u->link = LINK_DOWN;
        u->down_since_ms = 0;
    } else if (u->link == LINK_UNKNOWN) {
        /* The first answer since start: a credentials exception left open by the previous
         * run (the token was fixed while tallyd was stopped) is over too. */
        auth_resolved(u, false);
    }
    bool was_down = u->link == LINK_DOWN;
    uint64_t down_for = was_down ? now_ms(u->engine) - u->down_since_ms : 0;
    u->link = LINK_UP;
    u->failures = 0;
    u->resume_ms = 0;
    u->last_success_at = store_now();
    /* One kind of call failing while others succeed (say, rate-limited details) must not
     * restart every round each time another call gets through. */
    if (was_down && down_for >= OUTAGE_MS) {
        log_info("%s: link is back", u->name);
        events_sync(u->engine->d, u->name, "up", "link is back");
        /* Catch up at once: every stream runs a round now, and the rows that failed during the
         * outage go now, not after their retry backoff (up to retry_max, 300 s by default:
         * each blocks its entity's later rows meanwhile). */
        for (int i = 0; i < u->ops->nstreams; i++)
            u->streams[i].due_ms = 0;
        u->lift_backoff = true;
        u->push_from = 0;
        u->link_gen++;
    }
}

/*
 * A request that went out before the link came back from an outage (its link_gen older than
 * the upstream's) and failed for the network: it failed in that outage, which is over. Not one
 * answered with a Retry-After (a 429 or 503 that says how long to wait): the upstream spoke
 * after the return, and its word holds for the link and the rows as for any other answer.
 */
static bool stale_failure(const struct upstream *u, uint64_t gen, long retry_after_s)
{
    return gen != u->link_gen && retry_after_s < 0;
}

static void link_failed(struct upstream *u, const char *error, long retry_after_s)
{
    struct sync_engine *e = u->engine;
    /* A probe that fails for another reason (the network, a 5xx) while the credentials are
     * refused leaves the link auth_failed, but waits like any failed call: without a new
     * resume time, the next tick would probe again at once, and again. */
    if (u->link != LINK_DOWN && u->link != LINK_AUTH_FAILED) {
        log_warn("%s: %s", u->name, error);
        events_sync(e->d, u->name, "down", error);
        u->down_since_ms = now_ms(e);
    }
    if (u->link != LINK_AUTH_FAILED)
        u->link = LINK_DOWN;
    u->failures++;
    u->last_error_at = store_now();
    snprintf(u->last_error, sizeof u->last_error, "%s", error);
    uint64_t wait = backoff_ms(e, u->failures);
    if (retry_after_s >= 0 && (uint64_t)retry_after_s * 1000 > wait)
        wait = (uint64_t)retry_after_s * 1000;
    u->resume_ms = now_ms(e) + wait;
}

/*
 * Credentials refused (SYNC_AUTH): not a row's fault and not the network's. The upstream is
 * one problem: link auth_failed, one exception (kind upstream_rejected, about the upstream),
 * every row waiting as it was (pending). Nothing is sent until the secret files change (looked
 * at every second), `tally sync` asks, or a slow probe (every retry_max) gets through.
 */
static struct exc_raise auth_exception(struct upstream *u, char *subject, size_t cap)
{
    int64_t wh = 0;
    if (u->wh)
        catalog_warehouse_id(u->store, u->code, strlen(u->code), &wh);
    snprintf(subject, cap, "auth:%s", u->name);
    return (struct exc_raise){.kind = EXC_UPSTREAM_REJECTED, .wh = wh, .subject = subject};
}

static void secrets_stamp(struct upstream *u)
{
    for (int i = 0; i < 2; i++)
        if (u->secret_files[i])
            secret_stamp(u->secret_files[i], &u->secret_stamps[i]);
}

static void link_auth_failed(struct upstream *u, const char *error)
{
    struct sync_engine *e = u->engine;
    u->last_error_at = store_now();
    snprintf(u->last_error, sizeof u->last_error, "%s", error);
    u->resume_ms = now_ms(e) + (uint64_t)e->d->cfg.retry_max_s * 1000;
    if (u->link == LINK_AUTH_FAILED)
        return;
    if (u->link != LINK_DOWN)
        u->down_since_ms = now_ms(e);
    u->link = LINK_AUTH_FAILED;
    /* The stamps are those of the secrets in use (taken when they were read): a file fixed
     * before the refusal came back is seen at the next look, not only a later change. */
    u->secret_check_ms = now_ms(e) + 1000;
    log_error("%s: credentials refused: %s", u->name, error);
    events_sync(e->d, u->name, "auth_failed", error);
    char subject[96], msg[TALLY_MAX_TEXT_LEN];
    snprintf(msg, sizeof msg,
             "%s refused tally's credentials (%.200s): nothing is sent to it or read from it"
             " until its token is fixed; its rows wait. tallyd reads the secret files again when"
             " they change, or on tally sync",
             u->name, error);
    struct exc_raise x = auth_exception(u, subject, sizeof subject);
    x.message = msg;
    struct store *st = u->store;
    if (store_begin(st) != 0)
        return;
    if (exceptions_raise(e->d, &x, NULL) == 0 && store_commit(st) == 0)
        return;
    store_rollback(st);
    log_error("%s: the credentials exception was not recorded", u->name);
}

static void auth_resolved(struct upstream *u, bool was_refused)
{
    char subject[96];
    struct exc_raise x = auth_exception(u, subject, sizeof subject);
    struct store *st = u->store;
    if (was_refused)
        log_info("%s: credentials accepted again", u->name);
    if (store_begin(st) != 0)
        return;
    if (exceptions_clear(u->d, &x, "credentials accepted again") == 0 && store_commit(st) == 0)
        return;
    store_rollback(st);
}

/* Reads the secrets again and lets the next tick probe the upstream at once. */
static void auth_retry(struct upstream *u)
{
    char err[256] = "";
    secrets_stamp(u);
    if (u->ops->reload && u->ops->reload(u, err, sizeof err) != 0) {
        log_error("%s: %s", u->name, err);
        snprintf(u->last_error, sizeof u->last_error, "%s", err);
        return;
    }
    u->resume_ms = 0;
}

/* While credentials are refused: a changed secret file is a fix to try at once. */
static void auth_watch(struct upstream *u)
{
    uint64_t now = now_ms(u->engine);
    if (u->link != LINK_AUTH_FAILED || now < u->secret_check_ms)
        return;
    u->secret_check_ms = now + 1000;
    for (int i = 0; i < 2; i++) {
        struct secret_stamp cur;
        if (!u->secret_files[i])
            continue;
        secret_stamp(u->secret_files[i], &cur);
        if (memcmp(&cur, &u->secret_stamps[i], sizeof cur) != 0) {
            log_info("%s: secret file changed, trying again", u->name);
            auth_retry(u);
            return;
        }
    }
}

/* ---- pulls ---- */

static void start_pull(struct upstream *u, int i)
{
    struct stream_state *ss = &u->streams[i];
    struct checkpoint cp;
    if (ss->has_ahead) {
        cp = ss->ahead; /* the page before is still being applied (pipelining) */
    } else if (checkpoint_load(u->store, ss->name, &cp) != 0) {
        ss->requested = false; /* else started again at once (see sync_pull_done) */
        ss->due_ms = now_ms(u->engine) + 10000;
        return;
    }
    ss->asked = cp;
    if (!ss->in_round) {
        ss->in_round = true;
        /* Orders placed from now on may be taken off the marketplace's stock before this
         * round shows them: a value computed before it ends is not sent (publish_gate). */
        if (i == u->orders_stream) {
            u->pub_open = false;
            u->pub_round_whole = !cp.cursor[0];
        }
        ss->round_rows = ss->round_pages = 0;
        ss->round_total = -1;
        ss->round_started_ms = now_ms(u->engine);
        /* A round resumed mid-way (after a restart or a failed page) read its earlier pages
         * before now: when it began is unknown, so its end proves nothing (0). */
        ss->round_started_at = cp.cursor[0] ? 0 : store_now();
        /* Now and then a round reads the whole stream again and repairs drift: rows the
         * replica holds at the same version with other figures. The first round is one
         * anyway (version 0). */
        ss->reconciling = ss->reconcilable && cp.version > 0 &&
                          now_ms(u->engine) >= ss->reconcile_ms && !cp.cursor[0];
    }
    if (ss->reconciling) {
        cp.version = 0;
        cp.reconcile = true;
    }
    ss->running = true;
    ss->pull_gen = u->link_gen;
    u->ops->pull(u, i, &cp);
}

/* A warehouse's inventory round ended: shipments consumed before it began are in its
 * snapshot now, so their reservations end (fulfil.c). */
static void inventory_round_done(struct upstream *u, struct stream_state *ss, int64_t began)
{
    struct store *st = u->store;
    int64_t wh;
    ss->round_done_due = false;
    /* Lazy (store.h): lost at a power cut, the next round's end releases them. It gives way
     * to a group commit and is done again at the next tick (sync_tick). */
    if (catalog_warehouse_id(st, u->code, strlen(u->code), &wh) != 0)
        return;
    if (store_begin_yield(st, STORE_LAZY) != 0) {
        if (store_yielded(st)) {
            ss->round_done_due = true;
            ss->round_done_began = began; /* a round begun meanwhile is not this one */
            u->engine->wants_writer = true;
            u->engine->yields++;
        }
        return;
    }
    if (fulfil_inventory_round(u->d, wh, began) == 0 && store_commit(st) == 0)
        return;
    store_rollback(st);
    log_error("%s: reservations of shipped orders not released (next round tries again)", u->name);
}

/* ---- applying pages ---- */

/*
 * A page applied off the loop (pull_page.off_loop): a write job on the worker's connection
 * (worker.h), in slices of about WORKER_SLICE_US, the checkpoint saved in the last slice's
 * transaction. The loop goes on answering meanwhile; the stream's next request may already be
 * out (pipelining), and a page it brings waits (ss->waiting) until this job is done, so pages
 * of a stream are applied in order and at most one waits.
 */
struct page_job {
    struct worker_job job;
    struct upstream *u;
    int stream;
    struct pull_page *pg;
    char name[96];
    bool publish;        /* the loop's store_publishes(), for the worker's connection */
    bool sync_full;      /* [store] synchronous = full: restored after the page */
    _Atomic bool cancel; /* tallyd stops: no further slice */
    int64_t slices;
    /* for the debug log: when it was submitted, started, ended (worker_now_us) and its CPU */
    int64_t queued_us, start_us, end_us, cpu_us;
    char err[200];
};

static void page_applied(struct upstream *u, int i, struct pull_page *pg, int r, const char *err);
static void page_submit(struct upstream *u, int i, struct pull_page *pg);

int64_t sync_slice_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The page's placeholders ahead of its slices (pull_page.make_skus), in transactions of their
 * own on the write jobs' second connection (worker_bulk_store). Nothing it leaves is lost: the
 * slices make what it did not (a failure is logged and ends it; a stop ends it too). */
static void make_skus(struct page_job *pj, struct pull_page *pg)
{
    struct store *x = worker_bulk_store(&pj->job);
    bool done = !x;
    while (!done && !pj->cancel) {
        int r = store_begin(x);
        if (r == 0) {
            r = pg->make_skus(pg, x, sync_slice_clock_us() + WORKER_SLICE_US, &done);
            if (r == 0)
                r = store_commit(x);
            else
                store_rollback(x);
            whfeed_ids_end(pg->ids, r == 0);
        }
        if (r != 0) {
            log_warn("%s: placeholders ahead of the page: %s (its slices make them)", pj->name,
                     tally_strerror(r));
            break;
        }
        pj->slices++;
    }
}

static int page_run(struct worker_job *job, struct store *st)
{
    struct page_job *pj = (struct page_job *)job;
    struct pull_page *pg = pj->pg;
    struct checkpoint cp;
    store_set_publish(st, pj->publish);
    /* The slices' commits are not fsynced one by one (WAL, synchronous NORMAL: a crash or a
     * power cut loses the last slices, never the replica's consistency; the page is then
     * applied again from its checkpoint). Any later commit made durable (an acknowledged write
     * on the loop) makes these durable too: the WAL is synced as a whole. */
    pj->start_us = worker_now_us();
    int64_t cpu0 = sync_slice_clock_us();
    store_set_durable(st, false);
    store_set_bulk(st, true);
    /* Without foreign key checks (store_set_foreign_keys): every row a page writes finds its
     * SKU and warehouse in its own statements (conn_wms.c, whfeed.c), in the slice's
     * transaction, or takes its SKU's id from those a committed transaction saw (whfeed_ids:
     * a SKU's id and code never change). Kept on when that fails: the page is applied all the same,
     * with them. Off already when the job before was a page's (job.fk_off): turning them off or on
     * is a flag pragma, which expires every statement the connection has prepared, and a page's
     * statements (the 64-row batch upsert above all) were prepared again at each page. */
    store_set_foreign_keys(st, false);
    pg->ids = worker_sku_ids(&pj->job);
    int r = checkpoint_load(st, pj->name, &cp);
    if (r == 0 && pg->make_skus)
        make_skus(pj, pg);
    bool finished = !pg->apply_slice;
    while (r == 0) {
        if (pj->cancel) { /* the page comes again at the next start (its checkpoint is behind) */
            r = TALLY_E_SHUTTING_DOWN;
            break;
        }
        if ((r = store_begin(st)) != 0)
            break;
        if (!finished)
            r = pg->apply_slice(pg, st, sync_slice_clock_us() + WORKER_SLICE_US, &finished, pj->err,
                                sizeof pj->err);
        if (r == 0 && finished) {
            r = pg->apply(pg, st, &cp, pj->err, sizeof pj->err);
            if (r == 0)
                r = checkpoint_save(st, &cp, pg->rows);
        }
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
        whfeed_ids_end(pg->ids, r == 0);
        pj->slices++;
        if (finished)
            break;
    }
    store_set_bulk(st, false);
    /* Left off for the next page's job: any other job turns them back on before it runs
     * (worker.c on_work), and no transaction begins without them (store_begin_as). */
    store_release_foreign_keys(st);
    store_set_durable(st, pj->sync_full);
    pg->ids = NULL; /* (the writer's: another job's thread uses it next) */
    pj->cpu_us = sync_slice_clock_us() - cpu0;
    pj->end_us = worker_now_us();
    return r;
}

/* The jobs of a stopped engine end here: the page is dropped, and the connector's state and the
 * engine are freed once nothing of theirs is in use any more. */
static void engine_free_if_idle(struct sync_engine *e);

/* A page's job (prepare or write) ended while the engine stops: the page is dropped, and the
 * connector's state freed once none of its pages is in use. */
static void page_dropped_at_stop(struct upstream *u, struct pull_page *pg)
{
    pg->release(pg);
    bool busy = false;
    for (int k = 0; k < u->ops->nstreams; k++)
        busy |= u->streams[k].applying;
    if (!busy && !u->freed) {
        u->ops->free(u);
        u->freed = true;
    }
}

static void page_done(struct worker_job *job, int status)
{
    struct page_job *pj = (struct page_job *)job;
    struct upstream *u = pj->u;
    struct sync_engine *e = u->engine;
    struct stream_state *ss = &u->streams[pj->stream];
    struct pull_page *pg = pj->pg;
    ss->applying = false;
    ss->job = NULL;
    e->jobs--;
    if (e->stopping) {
        page_dropped_at_stop(u, pg);
        free(pj);
        engine_free_if_idle(e);
        return;
    }
    char err[200];
    snprintf(err, sizeof err, "%s", pj->err);
    int i = pj->stream;
    log_debug("%s: page of %" PRId64 " rows applied in %" PRId64 " transactions (%" PRId64
              " by batch statements alone, %" PRId64 " of them by SKU id), %" PRId64
              " ms after it was queued, %" PRId64 " ms to apply (CPU %" PRId64 " ms), done %" PRId64
              " ms ago",
              pj->name, pg->rows, pj->slices, pg->batched, pg->by_id,
              (pj->start_us - pj->queued_us) / 1000, (pj->end_us - pj->start_us) / 1000,
              pj->cpu_us / 1000, (worker_now_us() - pj->end_us) / 1000);
    free(pj);
    page_applied(u, i, pg, status, err);
}

/* Applies a page on the loop in one transaction with its checkpoint (small pages, and pages
 * whose apply needs the loop's state), as before part 6. */
static int apply_on_loop(struct upstream *u, int i, struct stream_state *ss, struct pull_page *pg,
                         char *err, size_t errlen)
{
    struct store *st = u->store;
    struct checkpoint cp;
    int r = checkpoint_load(st, ss->name, &cp);
    /* Lazy (store.h): lost at a power cut with its checkpoint, the page is pulled again. It
     * yields to a group commit (TALLY_E_BUSY: page_submit parks it). */
    if (r == 0)
        r = store_begin_yield(st, STORE_LAZY);
    if (r == 0) {
        bool finished = !pg->apply_slice;
        while (r == 0 && !finished)
            r = pg->apply_slice(pg, st, INT64_MAX, &finished, err, errlen);
        if (r == 0)
            r = pg->apply(pg, st, &cp, err, errlen);
        if (r == 0)
            r = checkpoint_save(st, &cp, pg->rows);
        /* A warehouse's outbound orders read to the end once: another coordinator's marks
         * there are known before this station's first decision (coord.h). Outbound pages
         * are applied here, on the loop, never as a write job (off_loop is for inventory). */
        if (r == 0 && u->wh && i == 1 && !pg->more)
            r = coord_outbound_read(u->d, u->code);
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
    }
    return r;
}

/* A page that yielded to a group commit waits for it (stream_state.parked). */
static void park(struct upstream *u, int i, struct pull_page *pg)
{
    struct stream_state *ss = &u->streams[i];
    ss->parked = pg;
    ss->applying = true;
    u->engine->wants_writer = true;
    u->engine->yields++;
}

/* Applies the pages that yielded (at a tick, or when the commit they gave way to returned). */
static void unpark(struct sync_engine *e)
{
    for (int k = 0; k < e->nups && !e->stopping; k++) {
        struct upstream *u = &e->ups[k];
        for (int i = 0; i < u->ops->nstreams; i++) {
            struct stream_state *ss = &u->streams[i];
            if (ss->round_done_due)
                inventory_round_done(u, ss, ss->round_done_began);
            struct pull_page *pg = ss->parked;
            if (!pg)
                continue;
            ss->parked = NULL;
            ss->applying = false;
            page_submit(u, i, pg);
        }
    }
}

/* A page's prepare (upstream.h) on a pool thread; the page's write job follows from its after. */
struct prep_job {
    uv_work_t work;
    struct upstream *u;
    int stream;
    struct pull_page *pg;
};

static void prep_work(uv_work_t *w)
{
    struct prep_job *p = w->data;
    p->pg->prepare(p->pg);
}

static void prep_after(uv_work_t *w, int status)
{
    (void)status; /* never cancelled: nothing calls uv_cancel on it */
    struct prep_job *p = w->data;
    struct upstream *u = p->u;
    struct sync_engine *e = u->engine;
    struct stream_state *ss = &u->streams[p->stream];
    struct pull_page *pg = p->pg;
    int i = p->stream;
    free(p);
    ss->applying = false;
    e->jobs--;
    if (e->stopping) {
        page_dropped_at_stop(u, pg);
        engine_free_if_idle(e);
        return;
    }
    page_submit(u, i, pg);
}

/* Starts the page's prepare; false when it cannot (the page goes on without). */
static bool prep_start(struct upstream *u, int i, struct pull_page *pg)
{
    struct sync_engine *e = u->engine;
    pg->prepared = true;
    struct prep_job *p = calloc(1, sizeof *p);
    if (!p)
        return false;
    p->u = u;
    p->stream = i;
    p->pg = pg;
    p->work.data = p;
    if (uv_queue_work(e->d->loop, &p->work, prep_work, prep_after) != 0) {
        free(p);
        return false;
    }
    u->streams[i].applying = true;
    e->jobs++;
    return true;
}

static void page_submit(struct upstream *u, int i, struct pull_page *pg)
{
    struct sync_engine *e = u->engine;
    struct stream_state *ss = &u->streams[i];
    char err[200] = "";
    int r = 0;
    /* A page waits for the push outcomes the replica could not record yet (see
     * unrecorded_flush): it may already hold their movements. */
    if (e->unrecorded && !unrecorded_flush(e)) {
        if (e->unrecorded_busy) {
            park(u, i, pg);
            return;
        }
        page_applied(u, i, pg, TALLY_E_STORAGE, "push outcomes not recorded yet");
        return;
    }
    if (pg->off_loop && e->d->workers) {
        if (pg->prepare && !pg->prepared && prep_start(u, i, pg))
            return;
        struct page_job *pj = calloc(1, sizeof *pj);
        if (pj) {
            pj->job.run = page_run;
            pj->job.done = page_done;
            pj->job.fk_off = true;
            pj->u = u;
            pj->stream = i;
            pj->pg = pg;
            pj->publish = store_publishes(u->store);
            pj->sync_full = e->d->cfg.sync_full;
            snprintf(pj->name, sizeof pj->name, "%s", ss->name);
            pj->queued_us = worker_now_us();
            if (worker_write(e->d, &pj->job) == 0) {
                ss->applying = true;
                ss->job = pj;
                e->jobs++;
                return;
            }
            free(pj);
        }
        page_applied(u, i, pg, TALLY_E_NOMEM, "");
        return;
    }
    r = apply_on_loop(u, i, ss, pg, err, sizeof err);
    if (r == TALLY_E_BUSY && store_yielded(u->store)) {
        park(u, i, pg);
        return;
    }
    page_applied(u, i, pg, r, err);
}

void sync_pull_done(struct upstream *u, int i, struct pull_page *pg)
{
    struct sync_engine *e = u->engine;
    struct stream_state *ss = &u->streams[i];
    ss->running = false;
    kick(e);
    if (e->stopping) {
        pg->release(pg);
        return;
    }
    if (ss->drop_inflight) {
        /* The page before it was not applied: this one (asked from a position past it) is
         * dropped; the stream starts again from its checkpoint. */
        ss->drop_inflight = false;
        pg->release(pg);
        return;
    }
    if (pg->outcome == SYNC_TRANSIENT || pg->outcome == SYNC_AUTH) {
        snprintf(ss->last_error, sizeof ss->last_error, "%s", pg->error);
        if (i == u->orders_stream)
            u->pub_round_whole = false;
        if (pg->outcome == SYNC_AUTH)
            link_auth_failed(u, pg->error);
        else if (!stale_failure(u, ss->pull_gen, pg->retry_after_s))
            link_failed(u, pg->error, pg->retry_after_s); /* else asked in an outage over */
        ss->has_ahead = false;
        pg->release(pg);
        return;
    }
    if (!pg->no_request)
        link_ok(u);
    if (pg->outcome == SYNC_PERMANENT) {
        log_warn("%s: %s", ss->name, pg->error);
        snprintf(ss->last_error, sizeof ss->last_error, "%s", pg->error);
        ss->in_round = ss->requested = false;
        ss->has_ahead = false;
        ss->due_ms = now_ms(e) + (uint64_t)ss->interval_s * 1000;
        pg->release(pg);
        return;
    }
    /* Pipelining: the next page may be asked for now, from the position this page leads to
     * (the version stays; the cursor is the page's). */
    if (pg->more && pg->next_cursor[0] && pg->off_loop) {
        ss->ahead = ss->asked;
        snprintf(ss->ahead.cursor, sizeof ss->ahead.cursor, "%s", pg->next_cursor);
        ss->has_ahead = true;
        ss->due_ms = 0;
    } else {
        ss->has_ahead = false;
    }
    if (ss->applying) {
        ss->waiting = pg; /* one at most: no request goes out while a page waits */
        return;
    }
    page_submit(u, i, pg);
}

/* A page was applied (r == 0) or not: the stream moves on, on the loop. */
static void page_applied(struct upstream *u, int i, struct pull_page *pg, int r, const char *err)
{
    struct sync_engine *e = u->engine;
    struct stream_state *ss = &u->streams[i];
    kick(e);
    if (r != 0) {
        log_error("%s: page not applied: %s", ss->name, err && err[0] ? err : tally_strerror(r));
        snprintf(ss->last_error, sizeof ss->last_error, "page not applied: %s",
                 err && err[0] ? err : tally_strerror(r));
        /* Not `requested` any more either: a requested stream starts at once whatever its
         * due time, so a page the replica cannot take (disk full, I/O error) was pulled and
         * refused again and again, holding the loop. The operator's `sync --wait` ends here
         * with the stream's error; the page is tried again when due. */
        ss->in_round = ss->requested = false;
        ss->due_ms = now_ms(e) + 5000;
        ss->has_ahead = false;
        if (ss->running)
            ss->drop_inflight = true;
        pg->release(pg);
        if (ss->waiting) { /* asked from past the page that failed */
            ss->waiting->release(ss->waiting);
            ss->waiting = NULL;
        }
        return;
    }
    ss->last_error[0] = 0;
    fulfil_kick(e->d);
    ss->repaired += pg->repaired;
    if (pg->repaired > 0) {
        char detail[96];
        snprintf(detail, sizeof detail, "%" PRId64 " rows repaired by reconciliation",
                 pg->repaired);
        log_warn("%s: %s", ss->name, detail);
        events_sync(e->d, ss->name, "repaired", detail);
    }
    ss->round_rows += pg->rows;
    ss->round_pages++;
    if (pg->total >= 0)
        ss->round_total = pg->total;
    if (pg->more) {
        /* Not when the round ended meanwhile: the page asked for ahead of this one was refused
         * for good (SYNC_PERMANENT), and the stream waits the interval that set. */
        if (ss->in_round && !ss->has_ahead && !ss->running && !ss->waiting)
            ss->due_ms = 0; /* the next page at once */
    } else {
        if (u->wh && i == 0 && coord_inventory_read(e->d, u->code) != 0)
            log_warn("%s: the first read could not be recorded (again at the next round)",
                     ss->name);
        if (u->wh && ss->reconcilable)
            inventory_round_done(u, ss, ss->round_started_at);
        if (ss->reconciling || ss->reconcile_ms == 0)
            ss->reconcile_ms = now_ms(e) + (uint64_t)e->d->cfg.reconcile_s * 1000;
        ss->reconciling = false;
        ss->in_round = ss->requested = false;
        if (i == u->orders_stream && u->pub_round_whole) {
            u->pub_open = true; /* every order placed before the round began is in */
            u->pub_round_ms = now_ms(e);
        } else if (i == u->orders_stream) {
            /* It failed mid-way or was resumed: the orders placed while it waited may be
             * missing. Another round now (from this one's start), before any value goes. */
            log_info("%s: the round was resumed after a failure or a restart: another round"
                     " before marketplace stock is published",
                     ss->name);
            ss->requested = true;
        }
        ss->last_round_rows = ss->round_rows;
        ss->last_success_at = store_now();
        ss->due_ms = now_ms(e) + (uint64_t)ss->interval_s * 1000;
        if (ss->round_rows > 0) {
            char detail[64];
            snprintf(detail, sizeof detail, "%" PRId64 " rows", ss->round_rows);
            events_sync(e->d, ss->name, "round", detail);
        }
        if (ss->round_rows > 0)
            log_info("%s: %" PRId64 " rows in %" PRId64 " pages, %.1f s", ss->name, ss->round_rows,
                     ss->round_pages, (double)(now_ms(e) - ss->round_started_ms) / 1000.0);
    }
    pg->release(pg);
    if (ss->waiting) {
        struct pull_page *next = ss->waiting;
        ss->waiting = NULL;
        page_submit(u, i, next);
    }
}

/* ---- pushes ---- */

static void free_batch(struct push_batch *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->items[i].payload);
    free(b->items);
    free(b);
}

/* Kinds whose route takes one row go one per call (outbox.c's table); movements in
 * batches. */
static int limit_for(const struct upstream *u, const char *kind)
{
    return outbox_rules(outbox_kind_parse(kind))->one_per_call ? 1 : u->ops->push_limit;
}

/* The rows waiting for upstream ?1 (pending or in flight) after id ?2, oldest first. */
static const char SQL_WAITING[] =
    "SELECT id, key, entity, payload, kind, state, next_attempt_at, sent_at IS NOT NULL, attempts"
    " FROM outbox"
    " INDEXED BY outbox_work WHERE target = ?1 AND state IN ('pending', 'inflight')"
    " AND id > ?2 ORDER BY id";

/* Rows one look goes through at most, beyond four per row the batch can hold. */
#define PUSH_LOOK_MIN 1024

/* What one look knows of an entity: nothing yet, some rows taken (the next may follow), or
 * nothing more of it goes. */
enum { LOOK_NEW, LOOK_TAKING, LOOK_BLOCKED };

struct look_slot {
    uint64_t hash;
    char entity[80];
    unsigned char state;
};

/* The look's entities: an open-addressing table of 2^k slots, at most half full; `used`
 * lists the slots taken since the table was last cleared (up to `cap`; beyond, `all`). */
struct look {
    struct look_slot *slots;
    size_t mask;
    uint32_t *used;
    size_t nused, cap;
    bool all;
};

/* Empties the table: the slots taken, or all of them when more were taken than listed. */
static void look_clear(struct look *l)
{
    if (l->all)
        memset(l->slots, 0, (l->mask + 1) * sizeof *l->slots);
    else
        for (size_t i = 0; i < l->nused; i++)
            l->slots[l->used[i]].state = LOOK_NEW;
    l->nused = 0;
    l->all = false;
}

/* Entities are ids (TALLY_MAX_ID_LEN); one longer than a slot holds is known by its start. */
#define LOOK_KEY (sizeof((struct look_slot *)0)->entity - 1)

static uint64_t entity_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < LOOK_KEY && s[i]; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static struct look_slot *look_slot(struct look *l, const char *entity)
{
    uint64_t h = entity_hash(entity);
    for (size_t i = h & l->mask;; i = (i + 1) & l->mask) {
        struct look_slot *sl = &l->slots[i];
        if (sl->state == LOOK_NEW) {
            if (l->nused < l->cap)
                l->used[l->nused++] = (uint32_t)i;
            else
                l->all = true;
            sl->hash = h;
            snprintf(sl->entity, sizeof sl->entity, "%s", entity);
            return sl;
        }
        if (sl->hash == h && !strncmp(sl->entity, entity, LOOK_KEY))
            return sl;
    }
}

static sqlite3_stmt *seek_waiting(struct store *st, const char *target, int64_t after)
{
    sqlite3_stmt *s = store_stmt(st, SQL_WAITING);
    if (s) {
        sqlite3_bind_text(s, 1, target, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, after);
    }
    return s;
}

/* 1 when an older row of the entity waits (so this one cannot go yet), 0 when none, or a
 * TALLY_E_* code. outbox_active holds no done rows: one seek, whatever the history. */
static int older_waiting(struct store *st, const char *target, const char *entity, int64_t id)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT 1 FROM outbox INDEXED BY outbox_active"
                                     " WHERE target = ?1 AND entity = ?2 AND id < ?3"
                                     " AND state IN ('pending', 'inflight') LIMIT 1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, target, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, entity, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store_error(st, rc, "outbox");
}

/* Copies one waiting row (SQL_WAITING) into the batch's next item; false when out of memory. */
static bool add_item(struct push_batch *b, sqlite3_stmt *s, const char *kind)
{
    struct push_item *it = &b->items[b->n];
    memset(it, 0, sizeof *it); /* batch_new leaves them as malloc gave them */
    int len = sqlite3_column_bytes(s, 3);
    it->payload = malloc(len > 0 ? (size_t)len : 1);
    if (!it->payload)
        return false;
    memcpy(it->payload, sqlite3_column_blob(s, 3), (size_t)len);
    it->payload_len = (size_t)len;
    it->outbox_id = sqlite3_column_int64(s, 0);
    snprintf(it->key, sizeof it->key, "%s", (const char *)sqlite3_column_text(s, 1));
    snprintf(it->entity, sizeof it->entity, "%s", (const char *)sqlite3_column_text(s, 2));
    snprintf(it->kind, sizeof it->kind, "%s", kind);
    it->okind = outbox_kind_parse(kind);
    it->maybe_sent = sqlite3_column_int(s, 7) != 0;
    it->attempts = sqlite3_column_int64(s, 8);
    b->n++;
    return true;
}

static struct push_batch *batch_new(struct upstream *u)
{
    /* The items are not zeroed here (add_item clears each as it fills it): a batch has room for
     * push_limit rows (1,000 for a warehouse: ~490 KB), and the ticks made one per upstream
     * ten times a second, mostly to find nothing to take; calloc's memset of it all was the
     * loop's largest single cost in a soak (perf: batch_new 14 % of the loop thread's CPU). */
    struct push_batch *b = calloc(1, sizeof *b);
    if (!b || !(b->items = malloc((size_t)u->ops->push_limit * sizeof *b->items))) {
        if (b)
            free(b->items);
        free(b);
        return NULL;
    }
    b->u = u;
    b->retry_after_s = -1;
    b->link_gen = u->link_gen;
    return b;
}

/*
 * A statement over a set of the batch's rows at once: `sql` reads their outbox ids as the JSON
 * array ?1 (`id IN (SELECT value FROM json_each(?1))`), the rows whose outcome is `outcome`
 * (-1: every row). One statement for a batch's rows instead of one per row: each statement
 * opens and closes a statement journal and evaluates the `state` CHECK's list anew, about
 * half of tallyd's CPU in a drain (perf; bench_drain.sh). The ids are bound as text of the
 * statement's own (SQLITE_TRANSIENT); ids_done resets it. NULL on failure.
 */
static sqlite3_stmt *outbox_ids_in(struct store *st, const struct push_batch *b, int outcome,
                                   const char *sql)
{
    size_t cap = (size_t)b->n * 21 + 2; /* "[", up to 20 characters and "," per id, "]" */
    char *ids = malloc(cap);
    sqlite3_stmt *s = ids ? store_stmt(st, sql) : NULL;
    if (s) {
        size_t len = 0;
        ids[len++] = '[';
        for (int i = 0; i < b->n; i++)
            if (outcome < 0 || b->items[i].outcome == outcome)
                len += (size_t)snprintf(ids + len, cap - len - 1, "%s%" PRId64, len > 1 ? "," : "",
                                        b->items[i].outbox_id);
        ids[len++] = ']';
        if (sqlite3_bind_text(s, 1, ids, (int)len, SQLITE_TRANSIENT) != SQLITE_OK)
            s = NULL;
    }
    free(ids);
    return s;
}

static void ids_done(sqlite3_stmt *s)
{
    if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

/*
 * After an outage (upstream.lift_backoff): every row of u waiting out a retry backoff becomes
 * due, in the take's transaction. A row that failed for a reason of its own (the upstream
 * answered it "try later") gets one more attempt at the link's return and backs off again.
 * The flag is cleared here; a caller whose transaction is rolled back sets it again (the next
 * take lifts), and one that takes nothing commits the lift all the same (take_batch). 0 or -1.
 */
static int lift_backoff(struct upstream *u)
{
    u->lift_backoff = false;
    sqlite3_stmt *s =
        store_stmt(u->store, "UPDATE outbox SET next_attempt_at = ?2"
                             " WHERE state = 'pending' AND attempts > 0 AND next_attempt_at > ?2"
                             " AND target = ?1");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, u->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, store_now());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/*
 * Selects the next batch for upstream u and marks it in flight (take_into: in the open
 * transaction; take_batch: in one of its own). Rows are taken oldest first;
 * the batch has one kind (the first row's that can go) and holds, per entity, a prefix of its
 * waiting rows: once a row of an entity cannot go (in flight, not due yet, or of another
 * kind), no later row of that entity goes either, so each entity's rows reach the upstream in
 * order. Rows held for the operator do not block their entity.
 *
 * One look goes through at most 4 * push_limit + PUSH_LOOK_MIN rows. It starts at the oldest
 * row while the oldest rows leave room to fill batches; when a look runs out of rows to go
 * through first, the next goes on after the last row it saw, then round to the oldest rows
 * again: rows that cannot go (in backoff, in flight, behind such a row of their entity),
 * however many, never hide one that can for more than a few looks. A look that did not start
 * at the oldest row asks outbox_active whether an older row of an entity waits. A row skipped
 * for being of another kind than the batch is where the next look starts, so no kind waits
 * on another for ever.
 *
 * take_into: 0 (b->n rows taken, maybe none), or -1 (the transaction must be rolled back).
 */
static int take_into(struct upstream *u, struct push_batch *b)
{
    struct store *st = u->store;
    if (u->lift_backoff && lift_backoff(u) != 0)
        return -1;
    int64_t now = store_now(), start = u->push_from, last = start, other = -1;
    int cap = u->ops->push_limit, limit = cap, looked = 0, budget = 4 * cap + PUSH_LOOK_MIN;
    struct sync_engine *e = u->engine;
    size_t nslots = 1;
    while (nslots < (size_t)budget * 2)
        nslots *= 2;
    if (e->look_nslots < nslots) {
        struct look_slot *slots = calloc(nslots, sizeof *slots);
        uint32_t *used = calloc((size_t)budget, sizeof *used);
        if (!slots || !used) {
            free(slots);
            free(used);
            return -1;
        }
        free(e->look_slots);
        free(e->look_used);
        e->look_slots = slots;
        e->look_used = used;
        e->look_nslots = nslots;
        e->look_cap = (size_t)budget;
    }
    /* A smaller look (a connector of smaller batches) uses the table's start. */
    struct look l = {
        .slots = e->look_slots, .mask = nslots - 1, .used = e->look_used, .cap = e->look_cap};
    char kind[16] = "";
    bool round = false, whole = false;
    sqlite3_stmt *s = seek_waiting(st, u->name, start);
    int rc = SQLITE_DONE;
    while (s && b->n < limit) {
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
            if (rc != SQLITE_DONE)
                break;
            whole = start == 0 || round;
            if (whole)
                break;
            /* On from the oldest row, up to where this look began: what was learnt of the
             * entities so far holds for rows after `start` only. */
            round = true;
            look_clear(&l);
            s = seek_waiting(st, u->name, 0);
            continue;
        }
        int64_t id = sqlite3_column_int64(s, 0);
        if (round && id > start) {
            whole = true;
            rc = SQLITE_DONE;
            break;
        }
        if (looked++ >= budget)
            break;
        last = id;
        const char *entity = (const char *)sqlite3_column_text(s, 2);
        struct look_slot *sl = look_slot(&l, entity);
        if (sl->state == LOOK_BLOCKED)
            continue;
        bool head = sl->state == LOOK_NEW;
        if (head && start > 0 && !round) {
            int r = older_waiting(st, u->name, entity, id);
            if (r < 0) {
                rc = SQLITE_ERROR;
                break;
            }
            if (r > 0) {
                sl->state = LOOK_BLOCKED;
                continue;
            }
        }
        const char *rkind = (const char *)sqlite3_column_text(s, 4);
        bool due = !strcmp((const char *)sqlite3_column_text(s, 5), "pending") &&
                   sqlite3_column_int64(s, 6) <= now;
        /* A row that waits for another (a transfer's notice for the leg at its origin) is
         * not due; its entity waits with it (outbox.h after_origin_leg). */
        int waits = due ? outbox_waits(st, outbox_kind_parse(rkind), entity) : 0;
        if (waits < 0) {
            rc = SQLITE_ERROR;
            break;
        }
        due = due && !waits;
        if (!due || (kind[0] && strcmp(kind, rkind))) {
            if (due && head && other < 0)
                other = id;
            sl->state = LOOK_BLOCKED;
            continue;
        }
        if (!kind[0]) {
            snprintf(kind, sizeof kind, "%s", rkind);
            limit = limit_for(u, kind);
        }
        if (!add_item(b, s, kind)) {
            rc = SQLITE_NOMEM;
            break;
        }
        sl->state = LOOK_TAKING;
    }
    if (s)
        sqlite3_reset(s);
    look_clear(&l);
    bool ok = s && (rc == SQLITE_ROW || rc == SQLITE_DONE);
    if (ok) {
        /* From the oldest row again after a whole round, or when this look began there and
         * filled its batch; else on after the last row seen. */
        if (other >= 0)
            u->push_from = other - 1;
        else if (whole || (start == 0 && !round && b->n == limit))
            u->push_from = 0;
        else
            u->push_from = last;
    }
    /* Taking a row in flight also marks it as possibly sent (outbox_may_discard): no request
     * goes unless every row's mark is committed. The statement sets sent_at itself, as the
     * outbox_sent trigger would (which then has nothing to do): one write of the row, not two
     * (bench_drain.sh). One statement marks the whole batch (outbox_ids_in). */
    if (ok && b->n > 0) {
        sqlite3_stmt *m =
            outbox_ids_in(st, b, -1,
                          "UPDATE outbox SET state = 'inflight',"
                          " sent_at = COALESCE(sent_at, CAST(strftime('%s','now') AS INTEGER))"
                          " WHERE id IN (SELECT value FROM json_each(?1))");
        ok = m && sqlite3_step(m) == SQLITE_DONE && sqlite3_changes(store_db(st)) == b->n;
        ids_done(m);
    }
    return ok ? 0 : -1;
}

/* The next batch for upstream u, its rows marked in flight (committed); NULL when none can
 * go (or on failure). */
/* How long a take waits for barriers before it makes the rows durable itself. */
#define TAKE_BARRIER_MS 250

enum take_mode { TAKE_LAZY, TAKE_PARK, TAKE_WAIT, TAKE_DURABLE };

/*
 * How a take of rows to send commits (store.h "Lazy commits"). Lazy when every row it could
 * take is durable already. Otherwise, with the group commit's sync thread (gcommit_lazy:
 * clients' writes themselves commit lazily and are made durable by its syncs), the take is
 * lazy too and what it took is parked (TAKE_PARK): sent once a sync covers the take's own
 * commit, which makes every row it took, and every change a figure was computed from,
 * durable (push_or_park; gcommit_barrier asks for the sync, whose end wakes the engine:
 * sync_writer_free). Nothing waits on the loop, and clients writing all the time do not keep
 * the rows from going. Without that thread the rows wait (TAKE_WAIT, nothing taken) for a
 * commit that makes every commit before it durable; once the take has waited
 * TAKE_BARRIER_MS (lazy commits kept adding rows), the take itself is durable (TAKE_DURABLE:
 * one fsync on the loop).
 */
/* `state`: a take of figures computed from the replica's state (the marketplace stock,
 * take_publish), which any lazy change may be in (store.h STORE_SEND_STATE), rather than of
 * rows appended to send. */
static bool takes_lazily(const struct sync_engine *e, bool state)
{
    return !e->d->cfg.sync_full || !(state ? store_state_unsynced() : store_sends_unsynced());
}

static enum take_mode take_mode(struct sync_engine *e, bool state)
{
    uint64_t *since = state ? &e->pub_barrier_since_ms : &e->barrier_since_ms;
    if (takes_lazily(e, state)) {
        *since = 0;
        return TAKE_LAZY;
    }
    if (gcommit_lazy(e->d)) {
        *since = 0;
        return TAKE_PARK;
    }
    uint64_t now = now_ms(e);
    if (!*since)
        *since = now ? now : 1;
    if (now - *since < TAKE_BARRIER_MS && gcommit_barrier(e->d) == 0) {
        e->wants_writer = true;
        e->barriers++;
        return TAKE_WAIT;
    }
    return TAKE_DURABLE;
}

static struct push_batch *take_batch(struct upstream *u)
{
    enum take_mode how = take_mode(u->engine, false);
    if (how == TAKE_WAIT)
        return NULL;
    struct push_batch *b = batch_new(u);
    if (!b)
        return NULL;
    if ((how == TAKE_LAZY || how == TAKE_PARK ? store_begin_yield(u->store, STORE_LAZY)
                                              : store_begin_as(u->store, STORE_DURABLE)) != 0) {
        if (store_yielded(u->store))
            u->engine->wants_writer = true;
        free_batch(b);
        return NULL;
    }
    /* Under the writer lock now: a lazy take still finds every row durable, or parks what it
     * takes (a group committed meanwhile); without a sync thread it waits for the barrier. */
    bool lazy_ok = how != TAKE_LAZY || takes_lazily(u->engine, false);
    bool park = how == TAKE_PARK || (!lazy_ok && gcommit_lazy(u->d));
    /* A take that finds nothing to send still commits the lift of the rows' backoff after an
     * outage (take_into): its look may end before the rows lifted (behind an entity's many
     * rows in flight), which the next looks then find due. */
    bool lifting = u->lift_backoff;
    if ((!lazy_ok && !park) || take_into(u, b) != 0 || (b->n == 0 && !lifting) ||
        store_commit(u->store) != 0) {
        store_rollback(u->store);
        u->lift_backoff = lifting; /* lifted by the next take */
        free_batch(b);
        return NULL;
    }
    if (b->n == 0) {
        free_batch(b);
        return NULL;
    }
    b->park_seq = park ? store_last_seq(u->store) : 0;
    return b;
}

static void free_publish(struct publish_batch *b);

/* Sends a batch taken (its rows marked in flight), or parks it until a sync covers its take
 * (TAKE_PARK): in flight either way. */
static void push_or_park(struct upstream *u, struct push_batch *b)
{
    struct sync_engine *e = u->engine;
    if (b->park_seq <= store_durable_seq()) {
        u->ops->push(u, b);
        return;
    }
    b->next = NULL;
    *e->parked_tail = b;
    e->parked_tail = &b->next;
    e->barriers++;
    e->wants_writer = true;
    gcommit_barrier(e->d);
}

/* Sends the parked batches a sync has covered since, oldest first; at a stop drops them (their
 * rows stay 'inflight': the next start sends them again). */
static void unpark_pushes(struct sync_engine *e)
{
    uint64_t durable = store_durable_seq();
    struct push_batch **pp = &e->parked;
    while (*pp) {
        struct push_batch *b = *pp;
        if (!e->stopping && b->park_seq > durable) {
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        b->next = NULL;
        if (e->stopping) {
            b->u->inflight_pushes--;
            free_batch(b);
        } else {
            b->link_gen = b->u->link_gen; /* it leaves now (outage_over) */
            b->u->ops->push(b->u, b);
        }
    }
    e->parked_tail = pp;
    for (int k = 0; k < e->nups; k++) {
        struct upstream *u = &e->ups[k];
        struct publish_batch *pb = u->pub_parked;
        if (!pb || (!e->stopping && pb->park_seq > durable))
            continue;
        u->pub_parked = NULL;
        if (e->stopping) {
            u->publishing = false;
            free_publish(pb);
        } else {
            pb->link_gen = u->link_gen; /* it leaves now */
            u->ops->publish(u, pb);
        }
    }
    /* What still waits is sent from the end of the sync that covers it (sync_writer_free). */
    bool waiting = e->parked != NULL;
    for (int k = 0; k < e->nups; k++)
        waiting = waiting || e->ups[k].pub_parked;
    if (waiting && !e->stopping)
        e->wants_writer = true;
}

static int64_t attempts_of(struct store *st, int64_t id)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT attempts FROM outbox WHERE id = ?1");
    int64_t n = 0;
    if (!s)
        return 0;
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return n;
}

/* Records one row's outcome: done (and the movement acknowledged), held, or due again later. */
static int record_item(struct upstream *u, const struct push_item *it, int64_t now,
                       long retry_after_s, bool again_now)
{
    struct store *st = u->store;
    sqlite3_stmt *s;
    int64_t delay_s = 0;
    if (it->outcome == SYNC_AUTH) {
        /* Not the row's fault: it waits, due, for the credentials (the link gates it). No
         * attempt is counted: the upstream refused the caller, not the request. */
        s = store_stmt(st, "UPDATE outbox SET state = 'pending', last_error = ?2"
                           " WHERE id = ?1 AND state = 'inflight'");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, it->outbox_id);
        sqlite3_bind_text(s, 2, it->error[0] ? it->error : "credentials refused", -1,
                          SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? 0 : store_error(st, rc, "outbox update");
    }
    /* The row's attempts were read when it was taken in flight, and nothing but this
     * engine changes a row in flight: this attempt is the next one. (No RETURNING: it
     * collects its rows in a temporary table, per row; bench_drain.sh.) */
    int64_t attempts = it->attempts + 1;
    if (it->outcome == SYNC_OK) {
        s = store_stmt(st, "UPDATE outbox SET state = 'done', done_at = ?2,"
                           " attempts = attempts + 1, last_error = NULL WHERE id = ?1");
    } else if (it->outcome == SYNC_PERMANENT) {
        s = store_stmt(st, "UPDATE outbox SET state = 'held', attempts = attempts + 1,"
                           " last_error = ?3 WHERE id = ?1");
    } else {
        delay_s = again_now ? 0 : (int64_t)(backoff_ms(u->engine, (int)attempts) / 1000);
        if (!again_now && retry_after_s > delay_s)
            delay_s = retry_after_s;
        s = store_stmt(st, "UPDATE outbox SET state = 'pending', attempts = attempts + 1,"
                           " last_error = ?3, next_attempt_at = ?2 + ?4 WHERE id = ?1");
    }
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, it->outbox_id);
    sqlite3_bind_int64(s, 2, now);
    if (it->outcome != SYNC_OK)
        sqlite3_bind_text(s, 3, it->error[0] ? it->error : "failed", -1, SQLITE_STATIC);
    if (it->outcome == SYNC_TRANSIENT)
        sqlite3_bind_int64(s, 4, delay_s);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbox update");
    /* What the answer does (a movement settles, fulfilment follows its decisions, a refused
     * row becomes an exception...): the kind's rules, outbox.c. */
    if (it->outcome == SYNC_TRANSIENT)
        return 0;
    return outbox_answered(u->d, u->name, it->okind, it->key, it->entity, it->outcome == SYNC_OK,
                           it->error, it->version, it->to_version, attempts);
}

/* Movement ids that go into a JSON string as they are (stock_ack_many); any other takes the
 * one-by-one path. */
static bool plain_key(const char *k)
{
    for (; *k; k++)
        if ((unsigned char)*k < 0x20 || (unsigned char)*k >= 0x7f || *k == '"' || *k == '\\')
            return false;
    return true;
}

/* A batch taken before the link came back from an outage that failed for the network. */
static bool outage_over(const struct push_batch *b)
{
    return b->outcome == SYNC_TRANSIENT && stale_failure(b->u, b->link_gen, b->retry_after_s);
}

/*
 * Records a batch's outcomes in the open transaction: 0 or a TALLY_E_* code (roll back). The
 * rows done go in one statement, and those whose answer only acknowledges their movement
 * (outbox_done_acks_only: a drain's rows) are acknowledged together (stock_ack_many); every
 * other row and answer as record_item (one by one, in the batch's order). The outcomes of
 * one batch are of different rows, so their order within the transaction changes nothing.
 */
static int record_items(struct upstream *u, struct push_batch *b, int64_t now)
{
    struct store *st = u->store;
    int nok = 0;
    for (int i = 0; i < b->n; i++)
        nok += b->items[i].outcome == SYNC_OK;
    if (nok < 2) {
        int r = 0;
        for (int i = 0; r == 0 && i < b->n; i++)
            r = record_item(u, &b->items[i], now, b->retry_after_s, outage_over(b));
        return r;
    }
    sqlite3_stmt *s = outbox_ids_in(st, b, SYNC_OK,
                                    "UPDATE outbox SET state = 'done', done_at = ?2,"
                                    " attempts = attempts + 1, last_error = NULL"
                                    " WHERE id IN (SELECT value FROM json_each(?1))");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 2, now);
    int rc = sqlite3_step(s);
    ids_done(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbox update");
    const char **ids = malloc((size_t)nok * sizeof *ids);
    int64_t *versions = malloc((size_t)nok * sizeof *versions);
    int nack = 0, r = 0;
    if (!ids || !versions)
        r = TALLY_E_NOMEM;
    for (int i = 0; r == 0 && i < b->n; i++) {
        const struct push_item *it = &b->items[i];
        if (it->outcome != SYNC_OK) {
            r = record_item(u, it, now, b->retry_after_s, outage_over(b));
        } else if (outbox_done_acks_only(it->okind, it->to_version, it->attempts + 1) &&
                   plain_key(it->key)) {
            ids[nack] = it->key;
            versions[nack++] = it->version;
        } else {
            r = outbox_answered(u->d, u->name, it->okind, it->key, it->entity, true, it->error,
                                it->version, it->to_version, it->attempts + 1);
        }
    }
    if (r == 0)
        r = stock_ack_many(st, ids, versions, nack);
    free(ids);
    free(versions);
    return r;
}

/* Records a batch's outcomes in one transaction: 0, or a TALLY_E_* code and nothing recorded. */
static int record_batch(struct push_batch *b)
{
    struct upstream *u = b->u;
    struct store *st = u->store;
    int64_t now = store_now();
    /* Lazy (store.h): an outcome lost at a power cut leaves its rows in flight, sent again
     * at the next start (as after a kill between the answer and this commit). It yields to
     * a group commit (TALLY_E_BUSY, store_yielded): the outcome waits, unrecorded_flush. */
    int r = store_begin_yield(st, STORE_LAZY);
    if (r == 0)
        r = record_items(u, b, now);
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    return r;
}

/*
 * Records a batch's outcomes and takes the next batch in one transaction (one commit, one
 * fsync, where recording then taking were two, with a loop turn between them): 0 and *next
 * (NULL when no row can go), or a TALLY_E_* code and nothing recorded or taken.
 */
static int record_and_take(struct push_batch *b, struct push_batch **next)
{
    struct upstream *u = b->u;
    struct store *st = u->store;
    int64_t now = store_now();
    struct push_batch *nb = NULL;
    *next = NULL;
    /* Where the look starts (sync_push_done: at this batch's oldest row). A take rolled back
     * takes nothing: the look starts there again, not past the rows it did not take (they
     * would wait for the looks to go round the outbox, a tick each). */
    int64_t from = u->push_from;
    bool lifting = u->lift_backoff;
    /* Lazy, and yields to a group commit (the answer then waits in `unrecorded`). No take when
     * rows appended by a lazy commit wait for a barrier, or when recording these answers
     * appended rows (a fulfilment step): taken by a later transaction, once durable. */
    int r = store_begin_yield(st, STORE_LAZY);
    if (r == 0)
        r = record_items(u, b, now);
    if (r == 0 && !(nb = batch_new(u)))
        r = TALLY_E_NOMEM;
    /* (take_mode's barrier is asked for by take_batch, outside any transaction: a group's BEGIN
     * takes the writer lock this transaction holds.) */
    if (r == 0 && takes_lazily(u->engine, false) && !store_tx_sends(st) && take_into(u, nb) != 0)
        r = TALLY_E_STORAGE;
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    if (r != 0) {
        u->push_from = from;
        u->lift_backoff = lifting; /* lifted by the next take */
    }
    if (r == 0 && nb->n > 0)
        *next = nb;
    else if (nb)
        free_batch(nb);
    return r;
}

static bool any_row(struct store *st, const char *sql);

/* Whether upstream u may send another batch now (run_upstream's rules). */
static bool push_room(struct upstream *u)
{
    struct sync_engine *e = u->engine;
    if (!u->ops->push || e->stopping || e->unrecorded || e->stale_inflight ||
        now_ms(e) < u->resume_ms)
        return false;
    unsigned max = e->d->cfg.max_parallel, inflight = (unsigned)u->inflight_pushes;
    for (int i = 0; i < u->ops->nstreams; i++)
        inflight += u->streams[i].running;
    if (u->link == LINK_DOWN || u->link == LINK_AUTH_FAILED)
        max = 1;
    if (inflight >= max)
        return false;
    /* The tick hands a free slot to the streams first, then to a publish, then to the
     * outbox. A slot taken back by each answer never came free at a tick: a drain kept every
     * slot until the outbox was empty, and a stream that came due (the orders' round) or the
     * marketplace stock waited for it (test_sync test_drain_lets_pulls_in). When one of them
     * may want the slot (a stock figure waits to be published: the partial index
     * publish_dirty), it goes back to the tick. */
    uint64_t now = now_ms(e);
    for (int i = 0; i < u->ops->nstreams; i++) {
        const struct stream_state *ss = &u->streams[i];
        if (!ss->running && !ss->waiting && !(ss->applying && !ss->has_ahead) &&
            (ss->requested || ss->due_ms <= now))
            return false;
    }
    return !(u->ops->publish && !u->publishing && store_publishes(u->store) &&
             coord_decides(e->d, NULL, 0) &&
             any_row(u->store, "SELECT 1 FROM publish WHERE dirty = 1 LIMIT 1"));
}

/*
 * Puts a batch whose answer cannot be recorded back to waiting, to be sent again after a
 * backoff (the upstream deduplicates by key, and answers again): for a write that keeps
 * failing for these rows alone, so they cannot hold everything else. 0 or a TALLY_E_* code.
 */
static int requeue_batch(struct push_batch *b)
{
    struct upstream *u = b->u;
    struct store *st = u->store;
    int64_t now = store_now();
    int r = store_begin_yield(st, STORE_LAZY); /* lost: the rows stay in flight, sent again */
    sqlite3_stmt *s = r ? NULL
                        : store_stmt(st, "UPDATE outbox SET state = 'pending',"
                                         " attempts = attempts + 1, next_attempt_at = ?2 + ?3,"
                                         " last_error = 'answer not recorded' WHERE id = ?1"
                                         " AND state = 'inflight'");
    for (int i = 0; s && i < b->n; i++) {
        int64_t id = b->items[i].outbox_id;
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_int64(s, 2, now);
        sqlite3_bind_int64(s, 3,
                           (int64_t)(backoff_ms(u->engine, (int)attempts_of(st, id) + 1) / 1000));
        bool ok = sqlite3_step(s) == SQLITE_DONE;
        sqlite3_reset(s);
        if (!ok)
            s = NULL;
    }
    if (r == 0 && !s)
        r = TALLY_E_STORAGE;
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    return r;
}

/* Sets every upstream's last error (shown by `tally status`): why the engine sends nothing. */
static void all_stopped(struct sync_engine *e, const char *why, const char *detail)
{
    for (int i = 0; i < e->nups; i++) {
        struct upstream *u = &e->ups[i];
        snprintf(u->last_error, sizeof u->last_error, "nothing is sent: %s: %s", why, detail);
        u->last_error_at = store_now();
    }
}

/*
 * Records the outcomes waiting in e->unrecorded, oldest first; true when none is left.
 *
 * An answer the replica cannot record (disk full, an I/O error) is not dropped: its batch
 * waits here and is recorded at every tick until the write goes through. Its rows stay
 * 'inflight' meanwhile, which holds their entities' later rows back. While any waits, no new
 * batch is taken (the replica cannot record their answers either) and no page is applied: a
 * snapshot that already holds a movement whose acknowledgement is not recorded would be
 * counted twice (snapshot + pending). When the outcome cannot be recorded but the rows can
 * be put back to waiting (a failure of these rows' outcome alone), they are, and go again;
 * never on a full disk or out of memory, which are no failure of these rows alone (a full
 * disk may still take the smaller write, and the movement would then count twice until
 * sent again).
 * Stopping drops what waits: the rows are then sent again at the next start, which the
 * upstreams' deduplication by key makes harmless.
 */
static bool unrecorded_flush(struct sync_engine *e)
{
    int r = 0, n = 0;
    e->unrecorded_busy = false;
    while (e->unrecorded) {
        struct push_batch *b = e->unrecorded;
        if ((r = record_batch(b)) == 0) {
            n += b->n;
        } else if (r == TALLY_E_BUSY && store_yielded(b->u->store)) {
            /* Gave way to a group commit: recorded when it returns (sync_writer_free). */
            e->unrecorded_busy = true;
            e->wants_writer = true;
            e->yields++;
            return false;
        } else if (r != TALLY_E_DISK_FULL && r != TALLY_E_NOMEM && requeue_batch(b) == 0) {
            log_error("%s: push outcome not recorded: %s (%d row(s) sent again)", b->u->name,
                      tally_strerror(r), b->n);
        } else {
            break;
        }
        e->unrecorded = b->next;
        free_batch(b);
    }
    if (!e->unrecorded) {
        e->unrecorded_tail = &e->unrecorded;
        if (e->unrecorded_since_ms)
            log_info("sync: %d push outcome(s) recorded after %.1f s", n,
                     (double)(now_ms(e) - e->unrecorded_since_ms) / 1000.0);
        e->unrecorded_since_ms = 0;
        return true;
    }
    if (!e->unrecorded_since_ms) {
        e->unrecorded_since_ms = now_ms(e) ? now_ms(e) : 1;
        log_error("%s: push outcome not recorded: %s (kept; recorded as soon as the replica"
                  " takes writes; nothing is sent meanwhile)",
                  e->unrecorded->u->name, tally_strerror(r));
        all_stopped(e, "a push outcome is not recorded yet (retried every tick)",
                    tally_strerror(r));
    }
    return false;
}

static void unrecorded_free(struct sync_engine *e)
{
    int n = 0;
    while (e->unrecorded) {
        struct push_batch *b = e->unrecorded;
        e->unrecorded = b->next;
        n += b->n;
        free_batch(b);
    }
    e->unrecorded_tail = &e->unrecorded;
    if (n)
        log_warn("sync: %d push outcome(s) never recorded: their rows go again at the next start",
                 n);
}

void sync_push_done(struct push_batch *b)
{
    struct upstream *u = b->u;
    struct sync_engine *e = u->engine;
    u->inflight_pushes--;
    kick(e);
    if (e->stopping) {
        free_batch(b);
        return;
    }
    /* The next look starts at this batch's oldest row (or before): the rows its answer
     * frees (the next ones of its entities) are found at once. Left where it was, a look that
     * had wandered on past them while they waited behind this batch (each look goes through
     * at most 4 * push_limit + PUSH_LOOK_MIN rows) found them only after going round the
     * whole outbox, a tick (TICK_MS) per look: up to 20 ticks per batch in a drain of one
     * entity's 100k rows (read from the code; test_sync test_drain_one_entity). */
    for (int i = 0; i < b->n; i++)
        if (b->items[i].outbox_id - 1 < u->push_from)
            u->push_from = b->items[i].outbox_id - 1;
    bool auth = b->outcome == SYNC_AUTH;
    for (int i = 0; !auth && b->outcome != SYNC_TRANSIENT && i < b->n; i++)
        if (b->items[i].outcome == SYNC_AUTH) {
            auth = true;
            snprintf(b->error, sizeof b->error, "%s", b->items[i].error);
        }
    if (b->outcome == SYNC_TRANSIENT || b->outcome == SYNC_AUTH) {
        for (int i = 0; i < b->n; i++) {
            b->items[i].outcome = b->outcome;
            snprintf(b->items[i].error, sizeof b->items[i].error, "%s", b->error);
        }
    }
    /* A batch sent before the link came back from an outage that failed for the network
     * failed in that outage: the link stays up and its rows go again at once (outage_over). */
    if (auth)
        link_auth_failed(u, b->error);
    else if (b->outcome == SYNC_TRANSIENT && !outage_over(b))
        link_failed(u, b->error, b->retry_after_s);
    else if (b->outcome != SYNC_TRANSIENT)
        link_ok(u);
    for (int i = 0; i < b->n; i++)
        if (b->items[i].outcome == SYNC_PERMANENT)
            log_warn("%s: %s %s refused: %s", u->name, b->items[i].kind, b->items[i].key,
                     b->items[i].error);
    b->next = NULL;
    /* Nothing waits to be recorded before it: this answer is recorded and the next batch
     * taken in one transaction, and sent at once (rows its answer freed, the next of its
     * entities, among them). On failure, the answer waits to be recorded as below. */
    struct push_batch *nb;
    if (!e->unrecorded && push_room(u) && record_and_take(b, &nb) == 0) {
        free_batch(b);
        if (nb) {
            u->inflight_pushes++;
            u->ops->push(u, nb);
        }
        return;
    }
    *e->unrecorded_tail = b;
    e->unrecorded_tail = &b->next;
    unrecorded_flush(e);
}

/* ---- marketplace stock ---- */

static void free_publish(struct publish_batch *b)
{
    free(b->items);
    free(b);
}

/*
 * Reads up to `limit` dirty SKUs with their value computed now from the local view:
 *   sum over warehouses serving the marketplace of max(0, on_hand - reserved - safety),
 *   less the units of the orders not allocated yet (pending: unpaid or held; ready: waiting
 *   for stock), which the marketplace took off when they were placed, and less
 *   [marketplace] publish_buffer (never below 0). (The first IN names orders_open's
 *   condition, so that the open orders are read from that index.)
 * A value equal to what was last published is not sent again; it just stops being dirty.
 * "Last published" is what the marketplace acknowledged, and only while no send since could
 * have changed it unseen: a send whose outcome is unknown (its answer lost, a transient failure,
 * a process killed before the outcome was recorded) leaves published NULL, so that the next
 * value goes whatever it is (sync_publish_done; the first take of a process forgets published
 * on the rows an earlier process left dirty: they may have been on their way when it died).
 * Else a lost send of a higher value, then a value back at the acknowledged one, would leave
 * the higher one on offer.
 */
static struct publish_batch *take_publish(struct upstream *u, int limit, enum take_mode how,
                                          bool *later)
{
    struct store *st = u->store;
    *later = false;
    struct publish_batch *b = calloc(1, sizeof *b);
    if (!b || !(b->items = calloc((size_t)limit, sizeof *b->items))) {
        free(b);
        return NULL;
    }
    b->u = u;
    b->retry_after_s = -1;
    b->link_gen = u->link_gen;
    /* The figures are computed from the replica's state, which lazy commits may be in: taken
     * lazily only when a durable commit came after them (take_mode; the barrier), otherwise
     * durable itself. A lazy take gives way to a group commit (then: later). */
    int r = how == TAKE_LAZY || how == TAKE_PARK ? store_begin_yield(st, STORE_LAZY)
                                                 : store_begin_as(st, STORE_SEND_STATE);
    bool park = how == TAKE_PARK;
    if (r == 0 && how == TAKE_LAZY && !takes_lazily(u->engine, true)) {
        if (gcommit_lazy(u->d)) {
            park = true; /* changed meanwhile (a group committed): sent after a sync */
        } else {
            store_rollback(st); /* changed meanwhile (a write job's slice): after its barrier */
            r = TALLY_E_BUSY;
            *later = true;
        }
    }
    if (r != 0) {
        if (store_yielded(st)) {
            *later = true;
            u->engine->wants_writer = true;
        }
        free_publish(b);
        return NULL;
    }
    if (!u->pub_forgot) {
        sqlite3_stmt *f = store_stmt(
            st, "UPDATE publish SET published = NULL WHERE dirty = 1 AND published IS NOT NULL");
        if (!f || sqlite3_step(f) != SQLITE_DONE) {
            if (f)
                sqlite3_reset(f);
            store_rollback(st);
            free_publish(b);
            return NULL;
        }
        sqlite3_reset(f);
    }
    sqlite3_stmt *s = store_stmt(
        st, "SELECT p.sku, s.code, pr.product_id, p.gen, p.published,"
            " MAX(0, (SELECT COALESCE(SUM(MAX(0, t.snapshot + t.pending - t.reserved"
            "  - t.safety)), 0) FROM stock t JOIN warehouses w ON w.id = t.warehouse"
            "  WHERE t.sku = p.sku AND w.serves_marketplace = 1 AND (?2 = 0 OR w.stale = 0))"
            "  - (SELECT COALESCE(SUM(l.qty), 0) FROM orders o JOIN order_lines l"
            "   ON l.order_ref = o.id AND l.sku = p.sku"
            "   WHERE o.fstate IN ('pending','ready','allocated','sent','picked','partial')"
            "   AND o.fstate IN ('pending','ready'))"
            "  - ?3)"
            " FROM publish p JOIN skus s ON s.id = p.sku JOIN products pr ON pr.id = s.product"
            " WHERE p.dirty = 1 LIMIT ?1");
    sqlite3_stmt *clear =
        store_stmt(st, "UPDATE publish SET dirty = 0, value = ?2 WHERE sku = ?1 AND gen = ?3");
    if (!s || !clear) {
        store_rollback(st);
        free_publish(b);
        return NULL;
    }
    sqlite3_bind_int(s, 1, limit * 4);
    /* [stock] stale_policy = zero: a warehouse whose data is too old counts as empty. */
    sqlite3_bind_int(s, 2, u->d->cfg.stale_zero);
    sqlite3_bind_int64(s, 3, u->mp ? (int64_t)u->mp->publish_buffer : 0);
    while (b->n < limit && sqlite3_step(s) == SQLITE_ROW) {
        int64_t sku = sqlite3_column_int64(s, 0), gen = sqlite3_column_int64(s, 3);
        int64_t value = sqlite3_column_int64(s, 5);
        const char *pid = (const char *)sqlite3_column_text(s, 2);
        bool unlisted = !strcmp(pid, "~unlisted");
        bool same = sqlite3_column_type(s, 4) != SQLITE_NULL && sqlite3_column_int64(s, 4) == value;
        if (unlisted || same) {
            /* Nothing to send: not on the marketplace, or already showing this value. */
            sqlite3_bind_int64(clear, 1, sku);
            sqlite3_bind_int64(clear, 2, value);
            sqlite3_bind_int64(clear, 3, gen);
            sqlite3_step(clear);
            sqlite3_reset(clear);
            continue;
        }
        struct publish_item *it = &b->items[b->n++];
        snprintf(it->sku, sizeof it->sku, "%s", (const char *)sqlite3_column_text(s, 1));
        snprintf(it->product_id, sizeof it->product_id, "%s", pid);
        it->value = value;
        it->gen = gen;
    }
    sqlite3_reset(s);
    if (store_commit(st) != 0) {
        free_publish(b);
        return NULL;
    }
    b->park_seq = park ? store_last_seq(st) : 0;
    u->pub_forgot = true;
    if (b->n == 0) {
        free_publish(b);
        return NULL;
    }
    return b;
}

/* A batch whose outcome is unknown: its values may show at the marketplace or not; published
 * forgotten (take_publish). Lazy: lost at a power cut or a kill, the rows are still dirty and
 * the next process forgets it itself. */
static void publish_unknown(struct publish_batch *b)
{
    struct store *st = b->u->store;
    if (store_begin_as(st, STORE_LAZY) != 0)
        return;
    sqlite3_stmt *s = store_stmt(st, "UPDATE publish SET published = NULL"
                                     " WHERE sku = (SELECT id FROM skus WHERE code = ?1)");
    for (int i = 0; s && i < b->n; i++) {
        sqlite3_bind_text(s, 1, b->items[i].sku, -1, SQLITE_STATIC);
        sqlite3_step(s);
        sqlite3_reset(s);
    }
    if (store_commit(st) != 0)
        log_error("%s: publish outcome not recorded", b->u->name);
}

void sync_publish_done(struct publish_batch *b)
{
    struct upstream *u = b->u;
    struct sync_engine *e = u->engine;
    u->publishing = false;
    kick(e);
    if (e->stopping) {
        free_publish(b);
        return;
    }
    if (b->outcome == SYNC_TRANSIENT || b->outcome == SYNC_AUTH) {
        if (b->outcome == SYNC_AUTH)
            link_auth_failed(u, b->error);
        else if (!stale_failure(u, b->link_gen, b->retry_after_s))
            link_failed(u, b->error, b->retry_after_s); /* else sent in an outage over */
        /* The rows stay dirty and go again with their newest values, even the value last
         * acknowledged: the marketplace may have applied this one and only the answer got lost. */
        publish_unknown(b);
        free_publish(b);
        return;
    }
    link_ok(u);
    struct store *st = u->store;
    /* Lazy (store.h): lost at a power cut, the figures are published again (the same ones). */
    if (store_begin_as(st, STORE_LAZY) != 0) {
        free_publish(b);
        return;
    }
    sqlite3_stmt *s = store_stmt(st, "UPDATE publish SET published = ?2, value = ?2,"
                                     " published_at = ?4, dirty = (gen <> ?3)"
                                     " WHERE sku = (SELECT id FROM skus WHERE code = ?1)");
    sqlite3_stmt *drop = store_stmt(st, "UPDATE publish SET dirty = 0 WHERE gen = ?2"
                                        " AND sku = (SELECT id FROM skus WHERE code = ?1)");
    /* An item the answer did not settle stays dirty, its value perhaps applied (take_publish). */
    sqlite3_stmt *unknown = store_stmt(st, "UPDATE publish SET published = NULL"
                                           " WHERE sku = (SELECT id FROM skus WHERE code = ?1)");
    for (int i = 0; s && drop && unknown && i < b->n; i++) {
        struct publish_item *it = &b->items[i];
        if (it->outcome == SYNC_OK) {
            sqlite3_bind_text(s, 1, it->sku, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, it->value);
            sqlite3_bind_int64(s, 3, it->gen);
            sqlite3_bind_int64(s, 4, store_now());
            sqlite3_step(s);
            sqlite3_reset(s);
        } else if (it->outcome == SYNC_PERMANENT) {
            /* Refused (e.g. the SKU is not on the marketplace): stop until it changes again. */
            log_warn("%s: stock of %s not published: %s", u->name, it->sku, it->error);
            sqlite3_bind_text(drop, 1, it->sku, -1, SQLITE_STATIC);
            sqlite3_bind_int64(drop, 2, it->gen);
            sqlite3_step(drop);
            sqlite3_reset(drop);
        } else {
            sqlite3_bind_text(unknown, 1, it->sku, -1, SQLITE_STATIC);
            sqlite3_step(unknown);
            sqlite3_reset(unknown);
        }
    }
    if (store_commit(st) != 0)
        log_error("%s: publish outcome not recorded", u->name);
    free_publish(b);
}

#define PUBLISH_FRESH_MS 10000 /* values are computed this long after an orders round ends */

/* Whether the query (one seek of a partial index) finds a row. */
static bool any_row(struct store *st, const char *sql)
{
    sqlite3_stmt *s = store_stmt(st, sql);
    if (!s)
        return false;
    bool any = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return any;
}

/*
 * Whether a marketplace stock value may be computed and sent now. The marketplace takes an
 * order's units off a SKU's stock itself when the order is placed; a value tally computed
 * without that order (not pulled yet) and sent after would put the units back on offer. So
 * values are computed only while no orders round is under way, one has completed since the
 * last publishing went quiet, and the fulfilment pass has looked at every order it brought:
 * every order placed before that round began is then in the reservations. When SKUs wait and the
 * state is not that fresh, an orders round is asked for at once; the values go when it completes
 * (and again after every orders round that changed a reservation, which makes its SKUs dirty), for
 * PUBLISH_FRESH_MS at most after the round: a SKU made dirty later waits for the next round. What
 * remains, orders placed while that round and the publish are under way, is what [marketplace]
 * publish_buffer is for.
 */
static bool publish_gate(struct upstream *u)
{
    if (u->orders_stream < 0)
        return true;
    struct stream_state *os = &u->streams[u->orders_stream];
    if (os->in_round || os->running)
        return false;
    if (u->pub_open && now_ms(u->engine) - u->pub_round_ms <= PUBLISH_FRESH_MS)
        /* The round's orders count once the fulfilment pass has reserved them (fdirty = 1:
         * an order it has not looked at yet; 2, a look that failed, waits for a retry). */
        return !any_row(u->store, "SELECT 1 FROM orders WHERE fdirty <> 0 AND fdirty = 1"
                                  " LIMIT 1");
    u->pub_open = false;
    /* Not while the stream's last page failed: its rounds then keep their interval (and the
     * link's backoff), never one a tick against a gateway that refuses them. */
    if (!os->requested && !os->last_error[0] &&
        any_row(u->store, "SELECT 1 FROM publish WHERE dirty = 1 LIMIT 1"))
        os->requested = true;
    return false;
}

/* ---- the tick ---- */

/* Whether the outbox holds a row for u, waiting or in flight: a read on the loop's connection,
 * without the writer lock (it sees the last commit; a row committed after it is found by the
 * next tick's look). take_batch takes the writer lock to look: with nothing there, it would only
 * wait behind a write job's transaction, and cut that short (store_writer_wanted: the pages of
 * an initial sync were applied in 3 to 5 transactions instead of one, by the ticks' looks).
 * When it cannot tell, it says yes. */
static bool outbox_has_rows(struct upstream *u)
{
    sqlite3_stmt *s =
        store_stmt(u->store, "SELECT 1 FROM outbox INDEXED BY outbox_work"
                             " WHERE target = ?1 AND state IN ('pending', 'inflight')");
    if (!s)
        return true;
    sqlite3_bind_text(s, 1, u->name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc != SQLITE_DONE;
}

static void run_upstream(struct upstream *u)
{
    struct sync_engine *e = u->engine;
    auth_watch(u);
    uint64_t now = now_ms(e);
    if (now < u->resume_ms)
        return;
    unsigned max = e->d->cfg.max_parallel, inflight = (unsigned)u->inflight_pushes;
    for (int i = 0; i < u->ops->nstreams; i++)
        inflight += u->streams[i].running;
    /* While the link is down (or refuses the credentials), one request at a time probes it,
     * and the streams take the probe in turn: a stream whose calls keep failing (a failed page
     * stays due) must not have every probe while the others wait (orders behind the catalog). */
    bool probing = u->link == LINK_DOWN || u->link == LINK_AUTH_FAILED;
    if (probing)
        max = 1;
    int n = u->ops->nstreams;
    for (int k = 0; k < n && inflight < max; k++) {
        int i = probing ? (u->probe_next + k) % n : k;
        struct stream_state *ss = &u->streams[i];
        /* Not while a page waits to be applied (one at most), nor while one is applied
         * without the position after it known (the checkpoint is not written yet). */
        if (ss->waiting || (ss->applying && !ss->has_ahead))
            continue;
        if (!ss->running && (ss->requested || ss->due_ms <= now)) {
            if (probing)
                u->probe_next = (i + 1) % n;
            start_pull(u, i);
            inflight++;
        }
    }
    if (inflight < max && u->ops->publish && !u->publishing && store_publishes(u->store) &&
        coord_decides(e->d, NULL, 0) && publish_gate(u)) {
        enum take_mode how = take_mode(e, true);
        bool later = how == TAKE_WAIT;
        struct publish_batch *b =
            later ? NULL : take_publish(u, u->ops->publish_limit, how, &later);
        if (b) {
            u->publishing = true;
            inflight++;
            if (b->park_seq > store_durable_seq()) {
                /* Figures computed from changes not yet durable: sent after a sync. */
                u->pub_parked = b;
                e->barriers++;
                e->wants_writer = true;
                gcommit_barrier(e->d);
            } else {
                u->ops->publish(u, b);
            }
        } else if (!later && u->orders_stream >= 0) {
            u->pub_open = false; /* all sent: what changes from now waits for a round */
        }
    }
    /* (a lift of the rows' backoff after an outage is committed by a take that finds none)
     * While a group's COMMIT runs on the commit thread, the rows it appends are not seen by
     * the loop's connection yet: the take goes on and gives way to it (store_begin_yield,
     * without the writer lock), so that the COMMIT's end wakes the engine (sync_writer_free)
     * and they go at once, not a tick later. */
    bool look = u->ops->push && (u->lift_backoff || gcommit_committing(e->d) || outbox_has_rows(u));
    while (inflight < max && look && !e->unrecorded && !e->stale_inflight) {
        struct push_batch *b = take_batch(u);
        if (!b)
            break;
        u->inflight_pushes++;
        inflight++;
        push_or_park(u, b);
    }
}

void sync_tick(struct sync_engine *e)
{
    if (e->stopping)
        return;
    e->wants_writer = false;
    if (e->unrecorded)
        unrecorded_flush(e);
    unpark(e);
    unpark_pushes(e);
    if (e->stale_inflight)
        stale_inflight_reset(e, false);
    for (int i = 0; i < e->nups; i++)
        run_upstream(&e->ups[i]);
}

static void on_tick(uv_timer_t *t)
{
    sync_tick(t->data);
}

void sync_yields(const struct sync_engine *e, uint64_t *yields, uint64_t *barrier_waits)
{
    *yields = e ? e->yields : 0;
    *barrier_waits = e ? e->barriers : 0;
}

void sync_writer_free(struct sync_engine *e)
{
    /* Now, not at a tick: by the next loop turn the writes that waited for this commit make
     * another group, and what gave way would give way again, for as long as clients write. */
    if (e && e->wants_writer && !e->stopping)
        sync_tick(e);
}

/* ---- set-up ---- */

static int ensure_warehouse(struct store *st, const struct wh_config *w)
{
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO warehouses(code, name, country,"
                                     " serves_marketplace, created_at, fulfilment)"
                                     " VALUES(?1, ?4, ?5, ?2, ?3, ?6)"
                                     " ON CONFLICT(code) DO UPDATE SET name = excluded.name,"
                                     " country = excluded.country,"
                                     " serves_marketplace = excluded.serves_marketplace,"
                                     " fulfilment = excluded.fulfilment");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, w->code, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, w->serves_marketplace);
    sqlite3_bind_int64(s, 3, store_now());
    sqlite3_bind_text(s, 4, w->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, w->country, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, w->fulfilment, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "warehouse");
}

/* Each upstream has an HTTP client of its own (a libcurl multi handle), whose connection cap
 * per host is [sync] max_parallel: libcurl's cap counts every connection to a host, and a
 * request waiting for one runs down its own timeouts meanwhile. With one client for all,
 * upstreams on one host (several warehouses of one 3PL, a test's simulator) shared
 * max_parallel connections, so a slow one held the others' calls in that queue until they
 * timed out unsent ("Connection timed out after 0 milliseconds"; integration.shared_host). */
static int add_upstream(struct sync_engine *e, const struct connector_ops *ops, const char *name,
                        const char *code)
{
    struct upstream *u = &e->ups[e->nups];
    memset(u, 0, sizeof *u);
    snprintf(u->name, sizeof u->name, "%s", name);
    snprintf(u->code, sizeof u->code, "%s", code);
    u->ops = ops;
    u->engine = e;
    u->d = e->d;
    u->store = e->d->store;
    const struct tally_config *cfg = &e->d->cfg;
    if (http_init(e->d->loop, (long)cfg->max_parallel, cfg->ca_file[0] ? cfg->ca_file : NULL,
                  &u->http) != 0)
        return -1;
    u->link = LINK_UNKNOWN;
    u->orders_stream = -1;
    u->request_timeout_s = e->d->cfg.request_timeout_s;
    for (int i = 0; i < ops->nstreams; i++) {
        snprintf(u->streams[i].name, sizeof u->streams[i].name, "%s:%s", name, ops->streams[i]);
        u->streams[i].due_ms = 0;
        u->streams[i].round_total = -1;
    }
    return 0;
}

/*
 * Rows that were in flight when the daemon stopped go again: the warehouses deduplicate by
 * the row's key, so sending twice has one effect. Each counts an attempt, for its request
 * may have been applied (its answer lost, or kept unrecorded when the daemon stopped): a
 * connector whose upstream does not deduplicate (a fulfil upload) reads back first when
 * attempts > 0. When the replica refuses the write (disk full), every tick tries again, and nothing
 * is sent before it succeeds: a later reset would also catch the rows of this run's own batches.
 */
static void stale_inflight_reset(struct sync_engine *e, bool first)
{
    char *msg = NULL;
    int rc = sqlite3_exec(store_db(e->d->store),
                          "UPDATE outbox SET state = 'pending', attempts = attempts + 1"
                          " WHERE state = 'inflight'",
                          NULL, NULL, &msg);
    if (rc != SQLITE_OK) /* an UPDATE outside a transaction commits (and syncs) by itself */
        store_check_sync(rc, "a commit's sync of the WAL");
    e->stale_inflight = rc != SQLITE_OK;
    if (e->stale_inflight && first)
        log_error("sync: rows in flight at the last stop not reset: %s (nothing is sent until"
                  " they are)",
                  msg ? msg : sqlite3_errstr(rc));
    if (e->stale_inflight)
        all_stopped(e, "rows in flight at the last stop are not reset yet (retried every tick)",
                    msg ? msg : sqlite3_errstr(rc));
    else if (!e->stale_inflight && !first)
        log_info("sync: rows in flight at the last stop reset: sending resumes");
    sqlite3_free(msg);
}

/* An engine for up to n upstreams, none added yet; NULL when out of memory. */
static struct sync_engine *engine_new(struct tallyd *d, unsigned n)
{
    struct sync_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->ups = calloc(n ? n : 1, sizeof *e->ups))) {
        free(e);
        return NULL;
    }
    e->d = d;
    e->unrecorded_tail = &e->unrecorded;
    e->parked_tail = &e->parked;
    if (getrandom(&e->rng, sizeof e->rng, 0) != (ssize_t)sizeof e->rng)
        e->rng = (uint64_t)uv_hrtime();
    stale_inflight_reset(e, true);
    return e;
}

int sync_start_with(struct tallyd *d, const struct connector_ops *ops, const char *name,
                    struct sync_engine **out)
{
    struct sync_engine *e = engine_new(d, 1);
    char err[256];
    if (!e)
        return TALLY_E_NOMEM;
    if (add_upstream(e, ops, name, outbox_target_code(name) ? outbox_target_code(name) : "") != 0 ||
        (ops->init && ops->init(&e->ups[0], err, sizeof err) != 0)) {
        http_close(e->ups[0].http); /* its own client (NULL if it has none) */
        free(e->ups);
        free(e);
        return TALLY_E_INTERNAL;
    }
    e->nups = 1;
    uv_timer_init(d->loop, &e->tick);
    e->tick.data = e;
    *out = e;
    return 0;
}

int sync_start(struct tallyd *d, struct sync_engine **out, char *err, size_t errlen)
{
    unsigned n = d->cfg.nwh + (d->cfg.mp.enabled ? 1 : 0);
    struct sync_engine *e = engine_new(d, n);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < d->cfg.nwh; i++) {
        const struct wh_config *w = &d->cfg.wh[i];
        char name[80];
        outbox_target_wh(name, sizeof name, w->code);
        if (ensure_warehouse(d->store, w) != 0) {
            snprintf(err, errlen, "cannot record warehouse %s", w->code);
            goto fail;
        }
        if (add_upstream(e, upstream_wh_ops(w->kind), name, w->code) != 0) {
            snprintf(err, errlen, "cannot set up HTTP");
            goto fail;
        }
        struct upstream *u = &e->ups[e->nups];
        u->wh = w;
        u->streams[0].interval_s = w->inventory_interval_s;
        u->streams[0].reconcilable = true;
        u->streams[1].interval_s = w->outbound_interval_s;
        switch (w->kind) {
        case WH_KIND_GOODCANG:
            u->secret_files[0] = w->app_token_file;
            break;
        case WH_KIND_FOURPX:
            u->secret_files[0] = w->app_secret_file;
            u->secret_files[1] = w->access_token_file[0] ? w->access_token_file : NULL;
            break;
        default:
            u->secret_files[0] = w->token_file;
        }
        secrets_stamp(u); /* before init reads them: a change in between is seen later */
        if (u->ops->init(u, err, errlen) != 0)
            goto fail;
        e->nups++;
    }
    if (d->cfg.mp.enabled) {
        if (add_upstream(e, &conn_aliexpress_ops, "mp", "") != 0) {
            snprintf(err, errlen, "cannot set up HTTP");
            goto fail;
        }
        struct upstream *u = &e->ups[e->nups];
        u->mp = &d->cfg.mp;
        u->streams[0].interval_s = d->cfg.mp.catalog_interval_s;
        u->streams[1].interval_s = d->cfg.mp.orders_interval_s;
        u->streams[2].interval_s = d->cfg.mp.catalog_interval_s; /* logistics services */
        u->orders_stream = 1;
        /* Masked ship-tos: a round follows every orders page that found one (the connector
         * asks for it), and the interval's rounds retry what failed; a round with none to
         * read makes no request. */
        u->streams[3].interval_s = d->cfg.mp.orders_interval_s;
        u->secret_files[0] = d->cfg.mp.access_token_file;
        u->secret_files[1] = d->cfg.mp.app_secret_file;
        secrets_stamp(u);
        if (u->ops->init(u, err, errlen) != 0)
            goto fail;
        e->nups++;
        /* Only the account's coordinator publishes marketplace stock (DESIGN.md). */
        store_set_publish(d->store, d->cfg.coordinator);
    }
    uv_timer_init(d->loop, &e->tick);
    e->tick.data = e;
    /* The first tick at the loop's first turn: a fresh station's initial sync starts at once
     * (it waited a tick, 100 ms, before: 7% of an initial sync of 100k SKUs x 4). */
    uv_timer_start(&e->tick, on_tick, 0, TICK_MS);
    if (e->nups)
        log_info("sync: %d upstream(s) configured", e->nups);
    *out = e;
    return 0;
fail:
    for (int i = 0; i < e->nups; i++)
        e->ups[i].ops->free(&e->ups[i]);
    /* and the one being added when it failed (calloc'd: NULL if it has none) */
    for (unsigned i = 0; i < n && (int)i <= e->nups; i++)
        http_close(e->ups[i].http);
    free(e->ups);
    free(e);
    return -1;
}

static void engine_free_if_idle(struct sync_engine *e)
{
    if (!e->tick_closed || e->jobs > 0)
        return;
    free(e->look_slots);
    free(e->look_used);
    free(e->ups);
    free(e);
}

static void on_tick_closed(uv_handle_t *h)
{
    struct sync_engine *e = h->data;
    e->tick_closed = true;
    engine_free_if_idle(e);
}

void sync_stop(struct sync_engine *e)
{
    if (!e)
        return;
    e->stopping = true;
    uv_timer_stop(&e->tick);
    unrecorded_free(e);
    unpark_pushes(e); /* dropped: their rows go again at the next start */
    /* Abandoned requests leave their rows 'inflight'; the next start sends them again. */
    for (int i = 0; i < e->nups; i++)
        http_close(e->ups[i].http);
    for (int i = 0; i < e->nups; i++) {
        struct upstream *u = &e->ups[i];
        bool busy = false;
        for (int k = 0; k < u->ops->nstreams; k++) {
            struct stream_state *ss = &u->streams[k];
            if (ss->waiting) {
                ss->waiting->release(ss->waiting);
                ss->waiting = NULL;
            }
            if (ss->parked) { /* not applied: pulled again at the next start */
                ss->parked->release(ss->parked);
                ss->parked = NULL;
                ss->applying = false;
            }
            if (ss->job)
                ss->job->cancel = true; /* it ends after its slice; page_done frees the rest */
            busy |= ss->applying;
        }
        /* A page being applied still uses the connector's state: freed by page_done. */
        if (!busy) {
            u->ops->free(u);
            u->freed = true;
        }
    }
    uv_close((uv_handle_t *)&e->tick, on_tick_closed);
}

static bool matches(const struct stream_state *ss, const char *f, size_t n)
{
    if (!f || n == 0)
        return true;
    return memmem(ss->name, strlen(ss->name), f, n) != NULL;
}

int sync_request(struct sync_engine *e, const char *filter, size_t len)
{
    int k = 0;
    for (int i = 0; e && i < e->nups; i++) {
        struct upstream *u = &e->ups[i];
        int before = k;
        for (int j = 0; j < u->ops->nstreams; j++) {
            if (!matches(&u->streams[j], filter, len))
                continue;
            u->streams[j].requested = true;
            k++;
        }
        if (k > before && u->link == LINK_AUTH_FAILED)
            auth_retry(u); /* perhaps the token was fixed in place: read it again */
        if (k)
            u->resume_ms = 0; /* an operator's request overrides the backoff */
    }
    return k;
}

bool sync_busy(struct sync_engine *e, const char *filter, size_t len)
{
    for (int i = 0; e && i < e->nups; i++)
        for (int j = 0; j < e->ups[i].ops->nstreams; j++) {
            const struct stream_state *ss = &e->ups[i].streams[j];
            if (matches(ss, filter, len) && (ss->in_round || ss->requested || ss->running ||
                                             ss->applying || ss->round_done_due))
                return true;
        }
    return false;
}

static const char *link_name(int l)
{
    return l == LINK_UP            ? "up"
           : l == LINK_DOWN        ? "down"
           : l == LINK_AUTH_FAILED ? "auth_failed"
                                   : "unknown";
}

static void pack_opt_time(msgpack_packer *pk, const char *key, int64_t t)
{
    mp_pack_key(pk, key);
    if (t > 0)
        msgpack_pack_int64(pk, t);
    else
        msgpack_pack_nil(pk);
}

/* The names of a connector's capabilities (upstream.h enum conn_cap), in bit order. */
static const char *const cap_names[] = {"movements",      "transfer_out", "transfer_in",
                                        "inbound_notice", "outbound",     "stock_log"};

/* "capabilities": the names of the bits set in caps. */
static void pack_caps(msgpack_packer *pk, unsigned caps)
{
    size_t n = 0, count = sizeof cap_names / sizeof cap_names[0];
    for (size_t i = 0; i < count; i++)
        n += (caps >> i) & 1u;
    mp_pack_key(pk, "capabilities");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < count; i++)
        if ((caps >> i) & 1u)
            mp_pack_strz(pk, cap_names[i]);
}

void sync_pack_status(struct sync_engine *e, msgpack_packer *pk)
{
    int n = e ? e->nups : 0;
    msgpack_pack_array(pk, (size_t)n);
    int64_t now = store_now();
    uint64_t mnow = e ? now_ms(e) : 0;
    for (int i = 0; i < n; i++) {
        struct upstream *u = &e->ups[i];
        struct store *st = u->store;
        msgpack_pack_map(pk, 11);
        mp_pack_kv_str(pk, "name", u->name);
        /* the upstream's kind (a warehouse's configured kind, or the marketplace's), the
         * connector that speaks it, and what the station may ask of it */
        const char *kind = u->wh && wh_kind_name(u->wh->kind) ? wh_kind_name(u->wh->kind)
                           : u->mp                            ? "aliexpress"
                                                              : u->ops->kind;
        mp_pack_kv_str(pk, "kind", kind);
        mp_pack_kv_str(pk, "connector", u->ops->kind);
        pack_caps(pk, u->ops->caps);
        mp_pack_kv_str(pk, "link", link_name(u->link));
        pack_opt_time(pk, "last_success_at", u->last_success_at);
        mp_pack_kv_str(pk, "last_error", u->last_error[0] ? u->last_error : NULL);
        pack_opt_time(pk, "last_error_at", u->last_error_at);
        mp_pack_kv_int(pk, "retry_in_s",
                       u->resume_ms > mnow ? (int64_t)((u->resume_ms - mnow + 999) / 1000) : 0);
        /* outbox figures for this target: its counters (schema migration 6) and one probe
         * of the partial index outbox_unsent, so status does constant work */
        sqlite3_stmt *s =
            store_stmt(st, "SELECT (SELECT n FROM counters WHERE name = 'outbox_pending:' || ?1),"
                           " (SELECT n FROM counters WHERE name = 'outbox_held:' || ?1),"
                           " (SELECT MIN(created_at) FROM outbox WHERE target = ?1"
                           "  AND state NOT IN ('done', 'discarded'))");
        int64_t pend = 0, held = 0, oldest = 0;
        if (s) {
            sqlite3_bind_text(s, 1, u->name, -1, SQLITE_STATIC);
            if (sqlite3_step(s) == SQLITE_ROW) {
                pend = sqlite3_column_int64(s, 0);
                held = sqlite3_column_int64(s, 1);
                oldest = sqlite3_column_int64(s, 2);
            }
            sqlite3_reset(s);
        }
        mp_pack_key(pk, "outbox");
        msgpack_pack_map(pk, 3);
        mp_pack_kv_int(pk, "pending", pend);
        mp_pack_kv_int(pk, "held", held);
        mp_pack_key(pk, "oldest_age_s");
        if (oldest > 0)
            msgpack_pack_int64(pk, now - oldest);
        else
            msgpack_pack_nil(pk);
        mp_pack_key(pk, "streams");
        msgpack_pack_array(pk, (size_t)u->ops->nstreams);
        for (int j = 0; j < u->ops->nstreams; j++) {
            struct stream_state *ss = &u->streams[j];
            double secs = ss->in_round ? (double)(mnow - ss->round_started_ms) / 1000.0 : 0;
            msgpack_pack_map(pk, 11);
            mp_pack_kv_str(pk, "name", ss->name);
            mp_pack_kv_int(pk, "repaired", ss->repaired);
            /* A round whose end gave way to a group commit (round_done_due) is not over: what
             * `tally sync --wait` waits for includes the reservations that end releases. */
            mp_pack_kv_bool(pk, "in_round", ss->in_round || ss->requested || ss->round_done_due);
            pack_opt_time(pk, "last_success_at", ss->last_success_at);
            mp_pack_key(pk, "lag_s");
            if (ss->last_success_at > 0)
                msgpack_pack_int64(pk, now - ss->last_success_at);
            else
                msgpack_pack_nil(pk);
            mp_pack_kv_int(pk, "round_rows", ss->round_rows);
            mp_pack_kv_int(pk, "round_pages", ss->round_pages);
            mp_pack_kv_int(pk, "round_total", ss->round_total);
            mp_pack_kv_int(pk, "rate", secs > 0.05 ? (int64_t)((double)ss->round_rows / secs) : 0);
            mp_pack_kv_int(pk, "last_round_rows", ss->last_round_rows);
            mp_pack_kv_str(pk, "last_error", ss->last_error[0] ? ss->last_error : NULL);
        }
    }
}

const struct connector_ops *upstream_wh_ops(int kind)
{
    switch (kind) {
    case WH_KIND_TALLY:
        return &conn_wms_ops;
    case WH_KIND_GOODCANG:
        return &conn_goodcang_ops;
    case WH_KIND_FOURPX:
        return &conn_fourpx_ops;
    }
    return NULL;
}
