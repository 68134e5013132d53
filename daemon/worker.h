/*
 * Work off the loop (DESIGN.md "Engineering rules": nothing holds the loop for more than about a
 * millisecond). Two kinds of jobs, both on libuv's thread pool, each with a SQLite connection of
 * its own (store_open_extra), never the loop's:
 *
 *  - write jobs (worker_write): bulk ingest (pulled pages, reconciliation, imports),
 *    housekeeping. They run one at a time, in the order submitted, on the one writer
 *    connection. A write job keeps each transaction to about WORKER_SLICE_US (store_begin
 *    takes the process's writer lock, store.h), so a write on the loop waits for one slice at
 *    most, and reads on the loop never wait (WAL).
 *  - read jobs (worker_read): long reads (reports, exports, counts). Up to WORKER_READERS run
 *    at once, each on a read-only connection; a caller's answer is sent from `done`, so the
 *    loop goes on answering others meanwhile (rpc.c answers out of order).
 *
 * `run` executes on a worker thread with that job's connection; it must not touch the loop's
 * state (the loop's store, the server, the sync engine, uv handles): what it needs it copies
 * into the job before submitting, what it finds it leaves in the job. Work it holds with
 * store_after_commit on its connection runs on the loop, after `run` returned and before
 * `done` (events to watchers, in commit order).
 *
 * `done` executes on the loop, always exactly once per submitted job, with run's result, or
 * TALLY_E_SHUTTING_DOWN when the job was cancelled before it ran (tallyd stopping), or the
 * error of opening the connection. It owns the job from then on (frees it). During a stop
 * (d->stopping) `done` still runs: the job's owner must tolerate that, e.g. by having been
 * detached from the job by its own stop.
 */
#ifndef TALLY_WORKER_H
#define TALLY_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct tallyd;
struct store;
struct store_ready;

/* About how long one worker transaction holds the writer lock (microseconds). */
#define WORKER_SLICE_US 1000
/* Read jobs at once (libuv's pool has 4 threads: one stays for the writer, one for a checkpoint).
 */
#define WORKER_READERS 2
/* worker_bulk_store's page cache (KiB): its inserts go through skus in key order. */
#define WORKER_BULK_CACHE_KIB 1024
/* WAL frames (store_wal_frames) from which the next checkpoint runs in the write queue, not
 * beside it (workers_checkpoint_due). */
#define WORKER_CKPT_CATCHUP_FRAMES (4 * STORE_CHECKPOINT_FRAMES)
/* Tests only: when set, a checkpoint job calls it before it copies (a checkpoint thread that
 * gets no CPU for a while). NULL in tallyd. */
extern void (*worker_test_before_checkpoint)(void);
/* Page cache of a read job's connection, of the checkpoint's and of the writer's (KiB;
 * store_set_cache_kib). The writer's bulk work (pages of inventory, imports) goes through the
 * tables in key order: 4 MiB instead of the default 8 cost no CPU on a 1M x 4 sync and took
 * 4 MiB off tallyd's peak RSS. */
#define WORKER_READ_CACHE_KIB 2048
#define WORKER_CKPT_CACHE_KIB 256
#define WORKER_WRITE_CACHE_KIB 4096

struct worker_job {
    int (*run)(struct worker_job *job, struct store *st); /* on a worker thread */
    void (*done)(struct worker_job *job, int status);     /* on the loop */
    /* A write job that turns foreign keys off and releases them (store_set_foreign_keys):
     * the worker leaves them off for it; before any other write job it turns them on. */
    bool fk_off;
    /* private */
    uv_work_t work;
    struct workers *w;
    struct worker_job *next;
    struct store *st;
    struct store_ready *ready;
    int status;
    int slot; /* a read job's connection, rst[slot] */
    int is_write;
};

/* Sets up the writer lock on d->store and the pool (connections open on first use). */
int workers_start(struct tallyd *d, char *err, size_t errlen);
/* Cancels jobs not yet running (their done gets TALLY_E_SHUTTING_DOWN); running ones finish
 * and their done runs on the loop's last turns. */
void workers_stop(struct tallyd *d);
/* After the loop has run out: closes the connections. */
void workers_free(struct tallyd *d);

/* The process's writer lock (store_set_writer_lock), for another connection that writes
 * (gcommit.c); NULL before workers_start. */
pthread_mutex_t *workers_writer_lock(struct tallyd *d);

/* Queue a job; 0, or TALLY_E_SHUTTING_DOWN (stopping: done is not called). */
int worker_write(struct tallyd *d, struct worker_job *job);
/* In a write job's run, on its thread: the write jobs' second connection, opened on first use,
 * whose triggers are off for good (store_set_triggers; commits lazy; the writer lock; bulk:
 * store_set_bulk), for statements that do their tables' triggers' work themselves
 * (whfeed_skus_begin); NULL when it cannot be had. Its transactions never overlap the job's
 * own: one at a time, each begun and ended by the job. */
struct store *worker_bulk_store(struct worker_job *job);
/* In a write job's run, on its thread: the SKU ids the write jobs learnt (whfeed.h
 * whfeed_ids), made on first use; NULL when it cannot be had. Write jobs alone use it, one at
 * a time. */
struct whfeed_ids *worker_sku_ids(struct worker_job *job);
int worker_read(struct tallyd *d, struct worker_job *job);

/* Jobs submitted and not done yet (status; tests). */
int workers_pending(const struct tallyd *d);
/* Write jobs submitted since the start (a background job sees whether others write). */
uint64_t workers_writes_submitted(const struct tallyd *d);

/* On the loop, after commits: starts a passive WAL checkpoint when the WAL has grown past
 * STORE_CHECKPOINT_FRAMES (store.h "Checkpoints off the committing thread"); one at a time, on
 * a pool thread and a connection of its own, beside the write jobs (it takes no writer lock:
 * the writer appends to the WAL meanwhile), or in the write queue once the WAL holds
 * WORKER_CKPT_CATCHUP_FRAMES (so that it starts over). tallyd's connections never checkpoint
 * inside their commits. */
void workers_checkpoint_due(struct tallyd *d);
/* Checkpoint jobs done since the start (status, tests). */
uint64_t workers_checkpoints(const struct tallyd *d);

/* Monotonic microseconds, for slicing (CLOCK_MONOTONIC). */
int64_t worker_now_us(void);

#endif
