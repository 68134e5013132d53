/* Work off the loop: one writer connection, a few readers (worker.h). */
#include "worker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gcommit.h"
#include "log.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"
#include "whfeed.h"

struct jobq {
    struct worker_job *head, **tail;
};

struct workers {
    struct tallyd *d;
    pthread_mutex_t writer; /* the process's writer lock (store.h) */
    struct store *wst;      /* the writer connection; used by one job at a time */
    struct store *rst[WORKER_READERS];
    struct store *cst; /* the checkpoint's connection (JOB_CKPT) */
    struct store *xst; /* the write jobs' second connection, triggers off (worker_bulk_store) */
    struct whfeed_ids *ids; /* worker_sku_ids */
    bool rbusy[WORKER_READERS];
    struct jobq writes, reads; /* waiting to be handed to the pool */
    bool writing;              /* a write job is in the pool */
    int pending;               /* submitted, done not yet called */
    uint64_t writes_submitted; /* write jobs ever submitted (workers_writes_submitted) */
    bool stopping;
    /* The WAL checkpoint (store_defer_checkpoints): a job of its own kind (JOB_CKPT), on a
     * connection of its own, beside the write jobs: a PASSIVE checkpoint takes no writer lock
     * (SQLite lets a writer append to the WAL while it copies), so the writer goes on
     * meanwhile instead of waiting for its copy and its fsyncs in the write queue. */
    struct worker_job ckpt;
    bool ckpt_queued;
    int ckpt_after; /* frames left by the last one that could not copy all: wait for more */
    uint64_t checkpoints;
};

int64_t worker_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void q_push(struct jobq *q, struct worker_job *j)
{
    if (!q->tail)
        q->tail = &q->head;
    j->next = NULL;
    *q->tail = j;
    q->tail = &j->next;
}

/* Ahead of the queue: the catch-up checkpoint (JOB_CKPT_QUEUED) goes before the write jobs
 * waiting, so that none appends to a WAL past WORKER_CKPT_CATCHUP_FRAMES before it ran. */
static void q_push_front(struct jobq *q, struct worker_job *j)
{
    if (!q->tail)
        q->tail = &q->head;
    j->next = q->head;
    q->head = j;
    if (!j->next)
        q->tail = &j->next;
}

static struct worker_job *q_pop(struct jobq *q)
{
    struct worker_job *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = &q->head;
        j->next = NULL;
    }
    return j;
}

static void loop_wal_due(void *arg);
/* worker_job.is_write: what a job is */
enum { JOB_READ = 0, JOB_WRITE = 1, JOB_CKPT = 2, JOB_CKPT_QUEUED = 3 };
#define IS_CKPT(j) ((j)->is_write == JOB_CKPT || (j)->is_write == JOB_CKPT_QUEUED)

static int submit(struct tallyd *d, struct worker_job *j, int kind);

int workers_start(struct tallyd *d, char *err, size_t errlen)
{
    struct workers *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (pthread_mutex_init(&w->writer, NULL) != 0) {
        free(w);
        snprintf(err, errlen, "cannot create the writer lock");
        return -1;
    }
    w->d = d;
    w->writes.tail = &w->writes.head;
    w->reads.tail = &w->reads.head;
    store_set_writer_lock(d->store, &w->writer);
    store_defer_checkpoints(d->store, loop_wal_due, d);
    d->workers = w;
    return 0;
}

void (*worker_test_before_checkpoint)(void);

static void start_next(struct workers *w);

static int ckpt_run(struct worker_job *job, struct store *st)
{
    (void)job;
    if (worker_test_before_checkpoint)
        worker_test_before_checkpoint();
    int log_frames, copied;
    int r = store_checkpoint_passive(st, &log_frames, &copied);
    struct workers *w = (struct workers *)((char *)job - offsetof(struct workers, ckpt));
    /* Read on the loop in ckpt_done (after this job: no race). */
    w->ckpt_after = r == 0 && log_frames >= 0 && log_frames == copied ? 0 : store_wal_frames();
    return r;
}

static void ckpt_done(struct worker_job *job, int status)
{
    struct workers *w = (struct workers *)((char *)job - offsetof(struct workers, ckpt));
    w->ckpt_queued = false;
    w->checkpoints++;
    if (status != 0 && status != TALLY_E_SHUTTING_DOWN)
        log_warn("WAL checkpoint: %s (tried again after the next commits)", tally_strerror(status));
    /* The catch-up one when the WAL is still past its mark, then the write jobs held by
     * write_held_for_checkpoint. */
    workers_checkpoint_due(w->d);
    start_next(w);
}

/*
 * The WAL holds WORKER_CKPT_CATCHUP_FRAMES while a checkpoint beside the write jobs still
 * runs: the next write job waits for it (then the catch-up checkpoint is queued before it,
 * workers_checkpoint_due). Without this, a checkpoint thread that got no CPU for a while (a
 * loaded machine: CI ran two tests at once) let write jobs go on back to back with no
 * catch-up queued (one checkpoint at a time), and the WAL grew without bound
 * (unit.test_worker: 30,053 frames once; its second back-to-back run now holds every checkpoint
 * 200 ms: at most 4,000 frames).
 */
static bool write_held_for_checkpoint(const struct workers *w)
{
    return w->ckpt_queued && w->ckpt.is_write == JOB_CKPT &&
           store_wal_frames() >= WORKER_CKPT_CATCHUP_FRAMES;
}

void workers_checkpoint_due(struct tallyd *d)
{
    struct workers *w = d->workers;
    int frames = store_wal_frames();
    if (!w || w->stopping || d->stopping || w->ckpt_queued || frames < STORE_CHECKPOINT_FRAMES)
        return;
    /* One that could not copy everything (a reader holds an older snapshot) is tried again
     * once the WAL has grown by a quarter of the threshold, not after every commit. */
    if (w->ckpt_after && frames < w->ckpt_after + STORE_CHECKPOINT_FRAMES / 4)
        return;
    memset(&w->ckpt, 0, sizeof w->ckpt);
    w->ckpt.run = ckpt_run;
    w->ckpt.done = ckpt_done;
    /* Beside the write jobs, a checkpoint copies the frames of the snapshot it began with
     * while the writer appends more: back to back, the write jobs' slices never let one find
     * the whole WAL copied when a writer begins, and the WAL never starts over (an initial
     * sync of 100k SKUs x 4 grew it to 58-92 MB, against 12-14 MB with every checkpoint in
     * the write queue). Once it holds WORKER_CKPT_CATCHUP_FRAMES, the next one waits in the
     * write queue: no write job appends while it copies what the ones beside left (little),
     * and the write job after it starts the WAL over. */
    int kind = frames >= WORKER_CKPT_CATCHUP_FRAMES ? JOB_CKPT_QUEUED : JOB_CKPT;
    /* submit, not worker_write: not counted as another's write (workers_writes_submitted) */
    if (submit(d, &w->ckpt, kind) == 0)
        w->ckpt_queued = true;
}

uint64_t workers_checkpoints(const struct tallyd *d)
{
    return d->workers ? d->workers->checkpoints : 0;
}

static void loop_wal_due(void *arg)
{
    workers_checkpoint_due(arg);
}

pthread_mutex_t *workers_writer_lock(struct tallyd *d)
{
    return d->workers ? &d->workers->writer : NULL;
}

/* Opens a worker connection into *slot: read-only for a read job's; a write job's takes the
 * writer lock and keeps what its commits hold for the loop; every one but a read job's defers
 * its checkpoints (seen on the loop: on_after). 0, or -1 (said in the log). */
static int open_conn(struct workers *w, int kind, int cache_kib, struct store **slot)
{
    char err[300];
    if (store_open_extra(store_path(w->d->store), w->d->cfg.sync_full, kind == JOB_READ, slot, err,
                         sizeof err) != 0) {
        log_error("worker connection: %s", err);
        return -1;
    }
    if (kind == JOB_WRITE) {
        store_set_writer_lock(*slot, &w->writer);
        store_keep_held(*slot, true);
    }
    if (kind != JOB_READ)
        store_defer_checkpoints(*slot, NULL, NULL);
    store_set_cache_kib(*slot, cache_kib);
    return 0;
}

/* On a worker thread: the job's connection, opened on first use. */
static struct store *conn_for(struct workers *w, struct worker_job *j, int *status)
{
    struct store **slot = IS_CKPT(j)                 ? &w->cst
                          : j->is_write == JOB_WRITE ? &w->wst
                                                     : &w->rst[j->slot];
    if (*slot)
        return *slot;
    /* A long read streams through its rows and a checkpoint copies WAL frames past the cache:
     * neither keeps pages for long (store_set_cache_kib). */
    int cache_kib = j->is_write == JOB_READ ? WORKER_READ_CACHE_KIB
                    : IS_CKPT(j)            ? WORKER_CKPT_CACHE_KIB
                                            : WORKER_WRITE_CACHE_KIB;
    if (open_conn(w, IS_CKPT(j) ? JOB_CKPT : j->is_write, cache_kib, slot) != 0) {
        *status = TALLY_E_STORAGE;
        return NULL;
    }
    return *slot;
}

struct store *worker_bulk_store(struct worker_job *job)
{
    struct workers *w = job->w;
    if (job->is_write != JOB_WRITE || !w->wst)
        return NULL;
    if (w->xst)
        return w->xst;
    struct store *x = NULL;
    if (open_conn(w, JOB_WRITE, WORKER_BULK_CACHE_KIB, &x) != 0)
        return NULL;
    /* Its triggers off for good: its statements are prepared without them once. Its commits
     * are lazy, as a page's slices are: the WAL is synced as a whole by a later durable one. */
    if (store_set_triggers(x, false) != 0 || store_set_durable(x, false) != 0) {
        log_error("worker connection: cannot turn its triggers off");
        store_close(x);
        return NULL;
    }
    store_set_bulk(x, true);
    w->xst = x;
    return x;
}

struct whfeed_ids *worker_sku_ids(struct worker_job *job)
{
    struct workers *w = job->w;
    if (job->is_write != JOB_WRITE)
        return NULL;
    if (!w->ids)
        w->ids = whfeed_ids_new();
    return w->ids;
}

static void on_work(uv_work_t *req)
{
    struct worker_job *j = req->data;
    int status = 0;
    struct store *st = conn_for(j->w, j, &status);
    if (st) {
        j->st = st;
        /* A job that runs with them on finds them on, whatever the job before left
         * (store_release_foreign_keys); when that fails, store_begin_as refuses to begin. */
        if (j->is_write == JOB_WRITE && !j->fk_off)
            store_set_foreign_keys(st, true);
        status = j->run(j, st);
        /* No write job leaves the writer's triggers off for the next (store_set_triggers:
         * the catalog import turns them off for its own statements only). */
        if (!store_triggers_on(st) && store_set_triggers(st, true) != 0)
            log_error("the writer's triggers could not be turned back on");
        j->ready = store_take_ready(st);
        /* (worker_bulk_store's commits came before the job's last) */
        if (j->is_write == JOB_WRITE && j->w->xst)
            j->ready = store_ready_join(store_take_ready(j->w->xst), j->ready);
    }
    j->status = status;
}

static void on_after(uv_work_t *req, int uvstatus)
{
    struct worker_job *j = req->data;
    struct workers *w = j->w;
    int status = uvstatus == UV_ECANCELED ? TALLY_E_SHUTTING_DOWN : j->status;
    if (j->is_write == JOB_WRITE || j->is_write == JOB_CKPT_QUEUED)
        w->writing = false;
    else if (j->is_write == JOB_READ)
        w->rbusy[j->slot] = false;
    gcommit_run_ready(w->d, j->ready); /* commit order, on the loop (behind groups not synced) */
    j->ready = NULL;
    w->pending--;
    start_next(w);
    j->done(j, status);
    workers_checkpoint_due(w->d);
}

static void start_next(struct workers *w)
{
    if (w->stopping)
        return;
    if (!w->writing && w->writes.head && !write_held_for_checkpoint(w)) {
        struct worker_job *j = q_pop(&w->writes);
        w->writing = true;
        if (uv_queue_work(w->d->loop, &j->work, on_work, on_after) != 0) {
            w->writing = false;
            w->pending--;
            j->done(j, TALLY_E_INTERNAL);
        }
    }
    while (w->reads.head) {
        int slot = -1;
        for (int i = 0; i < WORKER_READERS && slot < 0; i++)
            if (!w->rbusy[i])
                slot = i;
        if (slot < 0)
            break;
        struct worker_job *j = q_pop(&w->reads);
        w->rbusy[slot] = true;
        j->slot = slot;
        if (uv_queue_work(w->d->loop, &j->work, on_work, on_after) != 0) {
            w->rbusy[slot] = false;
            w->pending--;
            j->done(j, TALLY_E_INTERNAL);
        }
    }
}

static int submit(struct tallyd *d, struct worker_job *j, int kind)
{
    struct workers *w = d->workers;
    if (!w || w->stopping || d->stopping)
        return TALLY_E_SHUTTING_DOWN;
    j->w = w;
    j->is_write = kind;
    j->st = NULL;
    j->ready = NULL;
    j->status = 0;
    j->slot = 0;
    j->work.data = j;
    w->pending++;
    if (kind == JOB_CKPT) { /* at once, beside the queues (one at a time: ckpt_queued) */
        if (uv_queue_work(w->d->loop, &j->work, on_work, on_after) != 0) {
            w->pending--;
            return TALLY_E_INTERNAL;
        }
        return 0;
    }
    if (kind == JOB_CKPT_QUEUED)
        q_push_front(&w->writes, j);
    else
        q_push(kind == JOB_READ ? &w->reads : &w->writes, j);
    start_next(w);
    return 0;
}

int worker_write(struct tallyd *d, struct worker_job *job)
{
    int r = submit(d, job, JOB_WRITE);
    if (r == 0)
        d->workers->writes_submitted++;
    return r;
}

uint64_t workers_writes_submitted(const struct tallyd *d)
{
    return d->workers ? d->workers->writes_submitted : 0;
}

int worker_read(struct tallyd *d, struct worker_job *job)
{
    return submit(d, job, JOB_READ);
}

int workers_pending(const struct tallyd *d)
{
    return d->workers ? d->workers->pending : 0;
}

void workers_stop(struct tallyd *d)
{
    struct workers *w = d->workers;
    if (!w || w->stopping)
        return;
    w->stopping = true;
    struct worker_job *j;
    while ((j = q_pop(&w->writes)) || (j = q_pop(&w->reads))) {
        w->pending--;
        j->done(j, TALLY_E_SHUTTING_DOWN);
    }
}

void workers_free(struct tallyd *d)
{
    struct workers *w = d->workers;
    if (!w)
        return;
    if (w->pending)
        log_warn("%d worker jobs not done at stop", w->pending);
    store_close(w->wst);
    for (int i = 0; i < WORKER_READERS; i++)
        store_close(w->rst[i]);
    store_close(w->cst);
    store_close(w->xst);
    whfeed_ids_free(w->ids);
    store_set_writer_lock(d->store, NULL);
    pthread_mutex_destroy(&w->writer);
    free(w);
    d->workers = NULL;
}
