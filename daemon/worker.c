/* Work off the loop: one writer connection, a few readers (worker.h). */
#include "worker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"

struct jobq {
    struct worker_job *head, **tail;
};

struct workers {
    struct tallyd *d;
    pthread_mutex_t writer; /* the process's writer lock (store.h) */
    struct store *wst;      /* the writer connection; used by one job at a time */
    struct store *rst[WORKER_READERS];
    bool rbusy[WORKER_READERS];
    struct jobq writes, reads; /* waiting to be handed to the pool */
    bool writing;              /* a write job is in the pool */
    int pending;               /* submitted, done not yet called */
    uint64_t writes_submitted; /* write jobs ever submitted (workers_writes_submitted) */
    bool stopping;
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
    d->workers = w;
    return 0;
}

pthread_mutex_t *workers_writer_lock(struct tallyd *d)
{
    return d->workers ? &d->workers->writer : NULL;
}

/* On a worker thread: the job's connection, opened on first use. */
static struct store *conn_for(struct workers *w, struct worker_job *j, int *status)
{
    struct store **slot = j->is_write ? &w->wst : &w->rst[j->slot];
    if (*slot)
        return *slot;
    char err[300];
    if (store_open_extra(store_path(w->d->store), w->d->cfg.sync_full, !j->is_write, slot, err,
                         sizeof err) != 0) {
        log_error("worker connection: %s", err);
        *status = TALLY_E_STORAGE;
        return NULL;
    }
    if (j->is_write) {
        store_set_writer_lock(*slot, &w->writer);
        store_keep_held(*slot, true);
    }
    return *slot;
}

static void on_work(uv_work_t *req)
{
    struct worker_job *j = req->data;
    int status = 0;
    struct store *st = conn_for(j->w, j, &status);
    if (st) {
        j->st = st;
        status = j->run(j, st);
        j->ready = store_take_ready(st);
    }
    j->status = status;
}

static void start_next(struct workers *w);

static void on_after(uv_work_t *req, int uvstatus)
{
    struct worker_job *j = req->data;
    struct workers *w = j->w;
    int status = uvstatus == UV_ECANCELED ? TALLY_E_SHUTTING_DOWN : j->status;
    if (j->is_write)
        w->writing = false;
    else
        w->rbusy[j->slot] = false;
    store_ready_run(j->ready); /* commit order, on the loop */
    j->ready = NULL;
    w->pending--;
    start_next(w);
    j->done(j, status);
}

static void start_next(struct workers *w)
{
    if (w->stopping)
        return;
    if (!w->writing && w->writes.head) {
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

static int submit(struct tallyd *d, struct worker_job *j, bool is_write)
{
    struct workers *w = d->workers;
    if (!w || w->stopping || d->stopping)
        return TALLY_E_SHUTTING_DOWN;
    j->w = w;
    j->is_write = is_write;
    j->st = NULL;
    j->ready = NULL;
    j->status = 0;
    j->slot = 0;
    j->work.data = j;
    w->pending++;
    q_push(is_write ? &w->writes : &w->reads, j);
    start_next(w);
    return 0;
}

int worker_write(struct tallyd *d, struct worker_job *job)
{
    int r = submit(d, job, true);
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
    return submit(d, job, false);
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
    store_set_writer_lock(d->store, NULL);
    pthread_mutex_destroy(&w->writer);
    free(w);
    d->workers = NULL;
}
