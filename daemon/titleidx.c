/* The title index filled in the background (titleidx.h). */
#include "titleidx.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"
#include "worker.h"

/* Titles per statement pair (index, then leave the queue); the clock is read between them. */
#define CHUNK 32

struct titleidx {
    struct tallyd *d;
    uv_timer_t timer;
    bool running;         /* a job is submitted and its done has not run */
    _Atomic bool stopped; /* titleidx_stop: submit nothing more (read by the job too) */
    int skipped;          /* ticks that found other writers busy, in a row */
    uint64_t own;         /* write jobs this module submitted */
    uint64_t seen;        /* others' write jobs at the last tick */
    int64_t total;        /* titles indexed since the queue was last seen empty */
    int64_t since_us;
};

/* The longest writer-lock hold of this module's transactions since it was last logged (µs,
 * wall clock: what a writer waiting for the lock waits at most). */
static _Atomic int64_t longest_tx_us;

static void note_tx(int64_t began_us)
{
    int64_t held = worker_now_us() - began_us;
    int64_t cur = atomic_load(&longest_tx_us);
    while (held > cur && !atomic_compare_exchange_weak(&longest_tx_us, &cur, held))
        ;
}

struct title_job {
    struct worker_job job;
    struct titleidx *ti;
    int64_t done;
    bool empty;
};

int64_t titleidx_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t titleidx_behind(struct store *st)
{
    return store_count(st, "SELECT COUNT(*) FROM sku_titles_todo", 0);
}

/* Indexes the queued titles with ids in (after, upto] and takes them off the queue. */
static int index_range(struct store *st, int64_t after, int64_t upto, int64_t *n)
{
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO sku_titles(rowid, title) SELECT s.id, s.title"
                                     " FROM sku_titles_todo t JOIN skus s ON s.id = t.id"
                                     " WHERE t.id > ?1 AND t.id <= ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, upto);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "title index");
    s = store_stmt(st, "DELETE FROM sku_titles_todo WHERE id > ?1 AND id <= ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, upto);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "title queue");
    *n += sqlite3_changes(store_db(st));
    return 0;
}

int titleidx_step(struct store *st, int max_rows, int64_t until_cpu_us, int64_t *done, bool *empty)
{
    *done = 0;
    *empty = false;
    int r = store_begin(st);
    if (r)
        return r;
    int64_t began = worker_now_us();
    int64_t after = 0;
    for (;;) {
        /* The id CHUNK titles on (or the last one): the range indexed next. */
        sqlite3_stmt *s = store_stmt(st, "SELECT id FROM sku_titles_todo WHERE id > ?1"
                                         " ORDER BY id LIMIT 1 OFFSET ?2");
        if (!s) {
            r = TALLY_E_STORAGE;
            break;
        }
        int64_t want = max_rows - *done < CHUNK ? max_rows - *done : CHUNK;
        sqlite3_bind_int64(s, 1, after);
        sqlite3_bind_int64(s, 2, want - 1);
        int rc = sqlite3_step(s);
        int64_t upto = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : INT64_MAX;
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            r = store_error(st, rc, "title queue");
            break;
        }
        int64_t before = *done;
        if ((r = index_range(st, after, upto, done)) != 0)
            break;
        if (upto == INT64_MAX || *done == before) {
            *empty = true;
            break;
        }
        after = upto;
        if (*done >= max_rows || titleidx_cpu_us() >= until_cpu_us || store_writer_wanted())
            break;
    }
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    note_tx(began);
    if (r)
        *done = 0;
    return r;
}

/* ---- the background job ---- */

static void submit(struct titleidx *ti);

static int job_run(struct worker_job *job, struct store *st)
{
    struct title_job *tj = (struct title_job *)job;
    int64_t start = titleidx_cpu_us();
    /* The job's commits need not be fsynced one by one (WAL, synchronous NORMAL): a crash
     * loses the last ones, and their titles are still queued. */
    sqlite3_exec(store_db(st), "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    int r = 0;
    while (!tj->empty && !tj->ti->stopped) {
        int64_t n = 0;
        int64_t now = titleidx_cpu_us();
        if ((r = titleidx_step(st, TITLEIDX_BATCH, now + TITLEIDX_TX_US, &n, &tj->empty)) != 0)
            break;
        tj->done += n;
        if (titleidx_cpu_us() - start >= TITLEIDX_JOB_US)
            break;
    }
    sqlite3_exec(store_db(st),
                 tj->ti->d->cfg.sync_full ? "PRAGMA synchronous = FULL"
                                          : "PRAGMA synchronous = NORMAL",
                 NULL, NULL, NULL);
    return r;
}

static void job_done(struct worker_job *job, int status)
{
    struct title_job *tj = (struct title_job *)job;
    struct titleidx *ti = tj->ti;
    ti->running = false;
    ti->total += tj->done;
    if (status && status != TALLY_E_SHUTTING_DOWN && status != TALLY_E_BUSY)
        log_warn("title index: %s (tried again in %d ms)", tally_strerror(status),
                 TITLEIDX_TICK_MS);
    if (tj->empty && ti->total > 0) {
        log_info("title index: %" PRId64 " titles indexed in %.3f s (longest transaction %.1f ms)",
                 ti->total, (double)(worker_now_us() - ti->since_us) / 1e6,
                 (double)atomic_exchange(&longest_tx_us, 0) / 1e3);
        ti->total = 0;
    }
    bool more = status == 0 && !tj->empty;
    free(tj);
    /* More to do and no other write job came meanwhile: on at once, not at the next tick. */
    if (more && !ti->stopped && !ti->d->stopping && workers_pending(ti->d) == 0 &&
        workers_writes_submitted(ti->d) - ti->own == ti->seen)
        submit(ti);
}

static void submit(struct titleidx *ti)
{
    struct title_job *tj = calloc(1, sizeof *tj);
    if (!tj)
        return;
    tj->job.run = job_run;
    tj->job.done = job_done;
    tj->ti = ti;
    if (ti->total == 0)
        ti->since_us = worker_now_us();
    if (worker_write(ti->d, &tj->job) != 0) {
        free(tj);
        return;
    }
    ti->own++;
    ti->running = true;
}

static void tick(uv_timer_t *t)
{
    struct titleidx *ti = t->data;
    if (ti->running || ti->stopped || ti->d->stopping)
        return;
    /* A bulk load goes first (an import's calls, a sync's pages): the index waits for a tick
     * in which no other write job was submitted, or a second at most. */
    uint64_t others = workers_writes_submitted(ti->d) - ti->own;
    bool busy = others != ti->seen || workers_pending(ti->d) > 0;
    ti->seen = others;
    if (busy && ++ti->skipped < 1000 / TITLEIDX_TICK_MS)
        return;
    ti->skipped = 0;
    if (store_count(ti->d->store, "SELECT EXISTS(SELECT 1 FROM sku_titles_todo)", 0) > 0)
        submit(ti);
}

int titleidx_start(struct tallyd *d, char *err, size_t errlen)
{
    struct titleidx *ti = calloc(1, sizeof *ti);
    if (!ti) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ti->d = d;
    uv_timer_init(d->loop, &ti->timer);
    ti->timer.data = ti;
    uv_timer_start(&ti->timer, tick, 0, TITLEIDX_TICK_MS);
    d->titles = ti;
    return 0;
}

void titleidx_stop(struct tallyd *d)
{
    struct titleidx *ti = d->titles;
    if (!ti || ti->stopped)
        return;
    ti->stopped = true;
    uv_timer_stop(&ti->timer);
    if (!uv_is_closing((uv_handle_t *)&ti->timer))
        uv_close((uv_handle_t *)&ti->timer, NULL);
}

void titleidx_free(struct tallyd *d)
{
    free(d->titles);
    d->titles = NULL;
}
