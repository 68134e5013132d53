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

/* Titles indexed between two looks at the clock and at writers waiting. */
#define CHUNK 16

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
    int64_t rest_segs; /* the index's segments when a job last found nothing to merge */
    bool merging;      /* titles were indexed since a job last found nothing to merge */
};

/* The longest writer-lock hold of this module's transactions since it was last logged (µs,
 * wall clock: what a writer waiting for the lock waits at most). */
static _Atomic int64_t longest_tx_us, longest_tx_cpu_us;

static void note_max(_Atomic int64_t *m, int64_t v)
{
    int64_t cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
        ;
}

static void note_tx(int64_t began_us, int64_t began_cpu_us)
{
    note_max(&longest_tx_us, worker_now_us() - began_us);
    note_max(&longest_tx_cpu_us, titleidx_cpu_us() - began_cpu_us);
}

struct title_job {
    struct worker_job job;
    struct titleidx *ti;
    int64_t done;
    bool empty;        /* the queue is empty */
    bool idle;         /* and nothing is left to merge */
    int64_t segs;      /* the index's segments at the end */
    int64_t budget_us; /* CPU time the job may take (TITLEIDX_JOB_US or TITLEIDX_BUSY_JOB_US) */
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

static int64_t read_varint(const unsigned char *p, int n, int *at)
{
    int64_t v = 0;
    for (int i = 0; i < 9 && *at < n; i++) {
        unsigned char c = p[(*at)++];
        v = (v << 7) | (c & 0x7f);
        if (!(c & 0x80))
            return v;
    }
    return -1;
}

int64_t titleidx_segments(struct store *st)
{
    /* The structure record: a 4-byte cookie, [a 4-byte version mark FF 00 00 01 in the
     * record's second format, SQLite 3.44 and later], then varints nLevel, nSegment, ...;
     * its rowid is 10 (FTS5_STRUCTURE_ROWID). */
    sqlite3_stmt *s = store_stmt(st, "SELECT block FROM sku_titles_data WHERE id = 10");
    if (!s)
        return -1;
    int64_t n = -1;
    if (sqlite3_step(s) == SQLITE_ROW) {
        const unsigned char *b = sqlite3_column_blob(s, 0);
        int len = sqlite3_column_bytes(s, 0);
        int at = 4;
        if (b && len >= 8 && b[4] == 0xff && b[5] == 0 && b[6] == 0 && b[7] == 1)
            at = 8;
        if (b && len > at && read_varint(b, len, &at) >= 0)
            n = read_varint(b, len, &at);
    }
    sqlite3_reset(s);
    return n;
}

int titleidx_step(struct store *st, int max_rows, int64_t until_cpu_us, int64_t *done, bool *empty)
{
    *done = 0;
    *empty = false;
    int r = store_begin(st);
    if (r)
        return r;
    int64_t began = worker_now_us(), began_cpu = titleidx_cpu_us();
    int64_t after = 0;
    for (;;) {
        /* The next titles queued, one statement each: FTS5 keeps them in memory until the
         * commit and writes one segment then (a statement inserting several rows would write
         * one segment per statement, its statement transaction flushing FTS5's memory). */
        sqlite3_stmt *s = store_stmt(st, "SELECT t.id, s.title FROM sku_titles_todo t"
                                         " JOIN skus s ON s.id = t.id WHERE t.id > ?1"
                                         " ORDER BY t.id LIMIT ?2");
        sqlite3_stmt *ins = store_stmt(st, "INSERT INTO sku_titles(rowid, title) VALUES(?1, ?2)");
        sqlite3_stmt *del =
            store_stmt(st, "DELETE FROM sku_titles_todo WHERE id > ?1 AND id <= ?2");
        if (!s || !ins || !del) {
            r = TALLY_E_STORAGE;
            break;
        }
        int64_t want = max_rows - *done < CHUNK ? max_rows - *done : CHUNK;
        sqlite3_bind_int64(s, 1, after);
        sqlite3_bind_int64(s, 2, want);
        int64_t upto = after, got = 0;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            upto = sqlite3_column_int64(s, 0);
            got++;
            sqlite3_bind_int64(ins, 1, upto);
            sqlite3_bind_value(ins, 2, sqlite3_column_value(s, 1));
            rc = sqlite3_step(ins);
            sqlite3_reset(ins);
            if (rc != SQLITE_DONE)
                break;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            r = store_error(st, rc, "title index");
            break;
        }
        /* Off the queue: the titles indexed, and ids of the range whose SKU is gone. */
        sqlite3_bind_int64(del, 1, after);
        sqlite3_bind_int64(del, 2, got < want ? INT64_MAX : upto);
        rc = sqlite3_step(del);
        sqlite3_reset(del);
        if (rc != SQLITE_DONE) {
            r = store_error(st, rc, "title queue");
            break;
        }
        *done += sqlite3_changes(store_db(st));
        if (got < want) {
            *empty = true; /* we hold the writer lock: nothing was queued meanwhile */
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
    note_tx(began, began_cpu);
    if (r)
        *done = 0;
    return r;
}

int titleidx_merge(struct store *st, int64_t until_cpu_us, bool *idle)
{
    *idle = false;
    int r = store_begin(st);
    if (r)
        return r;
    int64_t began = worker_now_us(), began_cpu = titleidx_cpu_us();
    sqlite3 *db = store_db(st);
    for (;;) {
        sqlite3_stmt *s = store_stmt(st, "INSERT INTO sku_titles(sku_titles, rank)"
                                         " VALUES('merge', " TITLEIDX_MERGE_PAGES_SQL ")");
        if (!s) {
            r = TALLY_E_STORAGE;
            break;
        }
        /* The FTS5 documentation: the command did no work when sqlite3_total_changes grew
         * by less than two. */
        int64_t before = sqlite3_total_changes64(db);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            r = store_error(st, rc, "title index merge");
            break;
        }
        if (sqlite3_total_changes64(db) - before < 2) {
            *idle = true;
            break;
        }
        if (titleidx_cpu_us() >= until_cpu_us || store_writer_wanted())
            break;
    }
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    note_tx(began, began_cpu);
    return r;
}

int titleidx_work(struct store *st, int64_t until_cpu_us, int64_t *done, bool *empty, bool *idle)
{
    *done = 0;
    *empty = *idle = false;
    int r;
    /* Too many segments: merge before writing another (below), and index more only once they
     * are fewer, or once nothing is left to merge (FTS5 merges a level only when it holds
     * 'usermerge' segments). */
    while (titleidx_segments(st) > TITLEIDX_SEGMENTS_HIGH) {
        if ((r = titleidx_merge(st, titleidx_cpu_us() + TITLEIDX_MERGE_TX_US, idle)) != 0)
            return r;
        if (*idle)
            break;
        if (titleidx_cpu_us() >= until_cpu_us || store_writer_wanted())
            return 0; /* on at the job's next turn */
    }
    *idle = false;
    if ((r = titleidx_step(st, TITLEIDX_BATCH, titleidx_cpu_us() + TITLEIDX_TX_US, done, empty)) !=
        0)
        return r;
    /* Then merge what it wrote (and what other writers' deletes wrote), in transactions of
     * their own: while titles are queued one merge transaction per indexing transaction, and
     * more while the segments are over TITLEIDX_SEGMENTS_HIGH, so segments stay few and each
     * merge stays small (one indexing transaction writes a segment faster than one merge
     * transaction merges it: after a million titles queued, level 0 reached FTS5's crisis
     * merge, which merged the whole level inside one commit, 1.4-2 s with the writer lock
     * held); once the queue is empty, on until nothing is left to merge or the time is up. */
    do {
        if ((r = titleidx_merge(st, titleidx_cpu_us() + TITLEIDX_MERGE_TX_US, idle)) != 0)
            return r;
    } while (!*idle && titleidx_cpu_us() < until_cpu_us && !store_writer_wanted() &&
             (*empty || titleidx_segments(st) > TITLEIDX_SEGMENTS_HIGH));
    return 0;
}

/* ---- the background job ---- */

static void submit(struct titleidx *ti, int64_t budget_us);

static int job_run(struct worker_job *job, struct store *st)
{
    struct title_job *tj = (struct title_job *)job;
    int64_t start = titleidx_cpu_us();
    /* The job's commits need not be fsynced one by one (WAL, synchronous NORMAL): a crash
     * loses the last ones, and their titles are still queued. */
    store_set_durable(st, false);
    /* A job during a bulk load takes the whole job's time when the index already has more
     * segments than a job lets it keep (an import that changes titles writes a segment per
     * call): FTS5's crisis merge must not be what merges them, inside a commit. */
    if (tj->budget_us < TITLEIDX_JOB_US && titleidx_segments(st) > TITLEIDX_SEGMENTS_HIGH)
        tj->budget_us = TITLEIDX_JOB_US;
    int r = 0;
    while (!(tj->empty && tj->idle) && !tj->ti->stopped) {
        int64_t n = 0;
        if ((r = titleidx_work(st, start + tj->budget_us, &n, &tj->empty, &tj->idle)) != 0)
            break;
        tj->done += n;
        if (titleidx_cpu_us() - start >= tj->budget_us)
            break;
    }
    tj->segs = titleidx_segments(st);
    store_set_durable(st, tj->ti->d->cfg.sync_full);
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
        log_info("title index: %" PRId64
                 " titles indexed in %.3f s (longest transaction %.1f ms, %.1f ms CPU)",
                 ti->total, (double)(worker_now_us() - ti->since_us) / 1e6,
                 (double)atomic_exchange(&longest_tx_us, 0) / 1e3,
                 (double)atomic_exchange(&longest_tx_cpu_us, 0) / 1e3);
        ti->total = 0;
        ti->merging = true;
    }
    if (status == 0 && tj->empty && tj->idle) {
        if (ti->merging)
            log_info("title index: merged, %" PRId64
                     " segments (longest transaction %.1f ms, %.1f ms CPU)",
                     tj->segs, (double)atomic_exchange(&longest_tx_us, 0) / 1e3,
                     (double)atomic_exchange(&longest_tx_cpu_us, 0) / 1e3);
        ti->merging = false;
        ti->rest_segs = tj->segs;
    }
    bool more = status == 0 && !(tj->empty && tj->idle);
    free(tj);
    /* More to do and no other write job came meanwhile: on at once, not at the next tick. */
    if (more && !ti->stopped && !ti->d->stopping && workers_pending(ti->d) == 0 &&
        workers_writes_submitted(ti->d) - ti->own == ti->seen)
        submit(ti, TITLEIDX_JOB_US);
}

static void submit(struct titleidx *ti, int64_t budget_us)
{
    struct title_job *tj = calloc(1, sizeof *tj);
    if (!tj)
        return;
    tj->budget_us = budget_us;
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
    /* Titles queued, or segments written since a job last found nothing to merge (another
     * writer's title change or delete writes one: FTS5 merges nothing by itself, schema.c
     * migration 20). */
    if (store_count(ti->d->store, "SELECT EXISTS(SELECT 1 FROM sku_titles_todo)", 0) > 0 ||
        titleidx_segments(ti->d->store) > ti->rest_segs)
        submit(ti, busy ? TITLEIDX_BUSY_JOB_US : TITLEIDX_JOB_US);
}

int titleidx_start(struct tallyd *d, char *err, size_t errlen)
{
    struct titleidx *ti = calloc(1, sizeof *ti);
    if (!ti) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ti->d = d;
    ti->rest_segs = -1; /* unknown: the first tick looks */
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
