/*
 * Unit: worker.c, work off the loop. Write jobs run one at a time in the order submitted on a
 * connection of their own; what they hold for their commit runs on the loop before their done;
 * a loop transaction and a worker transaction never overlap (the writer lock), and the loop
 * reads committed data while a worker writes; read jobs see committed data on read-only
 * connections and cannot write; a WAL checkpoint runs beside a write job that holds the write
 * queue (it takes no writer lock); a stop cancels queued jobs with TALLY_E_SHUTTING_DOWN.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "replica_harness.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"
#include "worker.h"

static pthread_t loop_thread;
static char order[64];   /* the order done callbacks ran in */
static char events[256]; /* after-commit work, in the order it ran */
static int done_status[16];
static atomic_int in_worker_tx; /* a worker transaction is open */
static atomic_int overlap;      /* the loop saw one open while it held its own */

struct tjob {
    struct worker_job job;
    int n;
    int rows;
};

static void on_event(void *arg, const void *data, size_t len)
{
    (void)arg;
    /* runs on the loop's thread */
    if (!pthread_equal(pthread_self(), loop_thread))
        strcat(events, "!");
    strncat(events, data, len);
}

static int run_insert(struct worker_job *job, struct store *st)
{
    struct tjob *t = (struct tjob *)job;
    for (int k = 0; k < t->rows; k++) {
        int r = store_begin(st);
        if (r)
            return r;
        atomic_store(&in_worker_tx, 1);
        sqlite3_stmt *s = store_stmt(st, "INSERT INTO t(x) VALUES (?1)");
        sqlite3_bind_int(s, 1, t->n * 1000 + k);
        int rc = sqlite3_step(s);
        usleep(200);
        char c = (char)('a' + t->n);
        store_after_commit(st, on_event, NULL, &c, 1);
        atomic_store(&in_worker_tx, 0);
        if (rc != SQLITE_DONE) {
            store_rollback(st);
            return TALLY_E_STORAGE;
        }
        if ((r = store_commit(st)) != 0)
            return r;
    }
    return 0;
}

static int run_count(struct worker_job *job, struct store *st)
{
    struct tjob *t = (struct tjob *)job;
    t->rows = (int)store_count(st, "SELECT count(*) FROM t", -1);
    /* a read-only connection cannot write */
    if (sqlite3_exec(store_db(st), "INSERT INTO t(x) VALUES (1)", NULL, NULL, NULL) == SQLITE_OK)
        return TALLY_E_INTERNAL;
    return 0;
}

static void on_done(struct worker_job *job, int status)
{
    struct tjob *t = (struct tjob *)job;
    char c[2] = {(char)('0' + t->n), 0};
    strcat(order, c);
    done_status[t->n] = status;
}

static struct tallyd d;

/* A write job that holds the write queue (no transaction) until the loop releases it. */
static atomic_int release, holding;
static int run_hold(struct worker_job *job, struct store *st)
{
    (void)job;
    (void)st;
    atomic_store(&holding, 1);
    for (int i = 0; i < 10000 && !atomic_load(&release); i++)
        usleep(1000);
    return 0;
}

static uint64_t ckpt_before;
static bool ckpt_beside; /* a checkpoint completed while the write job still held the queue */
static int ckpt_commits;

/* Grows the WAL by commits on the loop until a checkpoint has completed (then releases the
 * held job), or 5 s have passed. */
static void on_ckpt_tick(uv_timer_t *tm)
{
    if (workers_checkpoints(&d) > ckpt_before) {
        ckpt_beside = !atomic_load(&release);
        atomic_store(&release, 1);
        uv_timer_stop(tm);
        return;
    }
    if (++ckpt_commits > 5000) {
        atomic_store(&release, 1);
        uv_timer_stop(tm);
        return;
    }
    if (atomic_load(&holding) && store_begin(d.store) == 0) {
        sqlite3_exec(store_db(d.store), "INSERT INTO t(x) VALUES (-2)", NULL, NULL, NULL);
        sqlite3_exec(store_db(d.store), "UPDATE t SET x = x WHERE rowid % 7 = 0", NULL, NULL, NULL);
        store_commit(d.store);
    }
}

/* Write jobs back to back, as an initial sync's pages: each rewrites a few large rows in
 * BULK_COMMITS commits, and its done submits the next until BULK_FRAMES frames were written.
 * The largest WAL seen (store_wal_frames, the frames since it last started over). */
#define BULK_COMMITS 20
#define BULK_FRAMES 30000
static struct tjob bulk;
static int bulk_jobs, bulk_status;
static int64_t bulk_frames;
static int bulk_max;

static int run_bulk(struct worker_job *job, struct store *st)
{
    (void)job;
    for (int k = 0; k < BULK_COMMITS; k++) {
        int r = store_begin(st);
        if (r)
            return r;
        sqlite3_stmt *s =
            store_stmt(st, "UPDATE big SET b = zeroblob(16000 + ?1 / 8 % 2) WHERE id = ?1 % 8");
        sqlite3_bind_int(s, 1, bulk_jobs * BULK_COMMITS + k);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            store_rollback(st);
            return TALLY_E_STORAGE;
        }
        int before = store_wal_frames();
        if ((r = store_commit(st)) != 0)
            return r;
        int after = store_wal_frames();
        fprintf(stderr, "commit %d: %d -> %d\n", k, before, after);
        bulk_frames += after >= before ? after - before : after; /* or it started over */
    }
    return 0;
}

static void on_bulk_done(struct worker_job *job, int status)
{
    (void)job;
    int f = store_wal_frames();
    if (f > bulk_max)
        bulk_max = f;
    bulk_jobs++;
    if (status)
        bulk_status = status;
    if (status == 0 && bulk_frames < BULK_FRAMES && worker_write(&d, &bulk.job) != 0)
        bulk_status = TALLY_E_INTERNAL;
}

static void hold_checkpoint(void)
{
    usleep(200000);
}

/* While jobs run, the loop writes and reads too. */
static void on_tick(uv_timer_t *tm)
{
    if (store_begin(d.store) == 0) {
        if (atomic_load(&in_worker_tx))
            atomic_store(&overlap, 1);
        sqlite3_exec(store_db(d.store), "INSERT INTO t(x) VALUES (-1)", NULL, NULL, NULL);
        store_commit(d.store);
    }
    store_count(d.store, "SELECT count(*) FROM t", -1);
    if (workers_pending(&d) == 0)
        uv_timer_stop(tm);
}

int main(void)
{
    char dir[64];
    rh_bare_start(&d, "tally-worker", false, dir, sizeof dir);
    loop_thread = pthread_self();

    struct tjob w[3] = {{.n = 0, .rows = 20}, {.n = 1, .rows = 20}, {.n = 2, .rows = 20}};
    for (int i = 0; i < 3; i++) {
        w[i].job.run = run_insert;
        w[i].job.done = on_done;
        CHECK_EQ_INT(worker_write(&d, &w[i].job), 0);
    }
    uv_timer_t tm;
    uv_timer_init(d.loop, &tm);
    uv_timer_start(&tm, on_tick, 0, 1);
    uv_run(d.loop, UV_RUN_DEFAULT);
    CHECK_EQ_STR(order, "012");
    CHECK_EQ_INT(done_status[0] | done_status[1] | done_status[2], 0);
    CHECK_EQ_INT(atomic_load(&overlap), 0);
    /* 20 commits each, their work on the loop, in commit order */
    CHECK_EQ_INT((int)strlen(events), 60);
    CHECK(strchr(events, '!') == NULL);
    CHECK(strspn(events, "a") == 20 && strspn(events + 20, "b") == 20);
    CHECK_EQ_INT((int)store_count(d.store, "SELECT count(*) FROM t WHERE x >= 0", -1), 60);

    /* Reads: committed data, read-only. */
    order[0] = 0;
    struct tjob r1 = {.n = 3}, r2 = {.n = 4};
    r1.job.run = r2.job.run = run_count;
    r1.job.done = r2.job.done = on_done;
    CHECK_EQ_INT(worker_read(&d, &r1.job), 0);
    CHECK_EQ_INT(worker_read(&d, &r2.job), 0);
    uv_run(d.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(done_status[3], 0);
    CHECK_EQ_INT(done_status[4], 0);
    int64_t all = store_count(d.store, "SELECT count(*) FROM t", -1);
    CHECK_EQ_INT(r1.rows, (int)all);
    CHECK_EQ_INT(r2.rows, (int)all);

    /* A checkpoint does not wait in the write queue: a write job holds it while the loop's
     * commits grow the WAL past STORE_CHECKPOINT_FRAMES; the checkpoint completes meanwhile. */
    order[0] = 0;
    ckpt_before = workers_checkpoints(&d);
    struct tjob h = {.n = 8};
    h.job.run = run_hold;
    h.job.done = on_done;
    CHECK_EQ_INT(worker_write(&d, &h.job), 0);
    uv_timer_t ct;
    uv_timer_init(d.loop, &ct);
    uv_timer_start(&ct, on_ckpt_tick, 0, 1);
    uv_run(d.loop, UV_RUN_DEFAULT);
    CHECK(ckpt_beside);
    CHECK_EQ_INT(done_status[8], 0);
    printf("checkpoint beside a held write job: %s after %d loop commits\n",
           ckpt_beside ? "completed" : "NOT completed", ckpt_commits);

    /* Checkpoints beside write jobs that write without a pause: the WAL still starts over
     * (a checkpoint beside copies only its snapshot, never the frames appended meanwhile;
     * from WORKER_CKPT_CATCHUP_FRAMES on one runs in the write queue). */
    CHECK_EQ_INT(sqlite3_exec(store_db(d.store),
                              "CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB);"
                              "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n"
                              " WHERE i < 7) INSERT INTO big SELECT i, zeroblob(16000) FROM n",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    uint64_t ck0 = workers_checkpoints(&d);
    bulk.job.run = run_bulk;
    bulk.job.done = on_bulk_done;
    CHECK_EQ_INT(worker_write(&d, &bulk.job), 0);
    uv_run(d.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(bulk_status, 0);
    printf("write jobs back to back: %d jobs, %lld frames written, %llu checkpoints, the WAL "
           "held at most %d frames\n",
           bulk_jobs, (long long)bulk_frames, (unsigned long long)(workers_checkpoints(&d) - ck0),
           bulk_max);
    CHECK(bulk_frames >= BULK_FRAMES);
    CHECK(bulk_max <= 3 * WORKER_CKPT_CATCHUP_FRAMES);

    /* The same with every checkpoint held 200 ms before it copies, as a checkpoint thread
     * that gets no CPU on a loaded machine: once the WAL holds WORKER_CKPT_CATCHUP_FRAMES,
     * write jobs wait for the checkpoint beside them (before, they went on back to back with
     * no catch-up queued: 30,053 frames in a CI run, all of them). */
    worker_test_before_checkpoint = hold_checkpoint;
    bulk_jobs = 0, bulk_frames = 0, bulk_max = 0, bulk_status = 0;
    ck0 = workers_checkpoints(&d);
    CHECK_EQ_INT(worker_write(&d, &bulk.job), 0);
    uv_run(d.loop, UV_RUN_DEFAULT);
    worker_test_before_checkpoint = NULL;
    CHECK_EQ_INT(bulk_status, 0);
    printf("write jobs back to back, checkpoints held 200 ms: %d jobs, %lld frames written, %llu "
           "checkpoints, the WAL held at most %d frames\n",
           bulk_jobs, (long long)bulk_frames, (unsigned long long)(workers_checkpoints(&d) - ck0),
           bulk_max);
    CHECK(bulk_frames >= BULK_FRAMES);
    CHECK(bulk_max <= 3 * WORKER_CKPT_CATCHUP_FRAMES);

    /* A stop cancels what has not started: the second write waits behind the first. */
    order[0] = 0;
    struct tjob s1 = {.n = 5, .rows = 5}, s2 = {.n = 6, .rows = 5};
    s1.job.run = s2.job.run = run_insert;
    s1.job.done = s2.job.done = on_done;
    CHECK_EQ_INT(worker_write(&d, &s1.job), 0);
    CHECK_EQ_INT(worker_write(&d, &s2.job), 0);
    workers_stop(&d);
    CHECK_EQ_INT(done_status[6], TALLY_E_SHUTTING_DOWN);
    struct tjob s3 = {.n = 7};
    s3.job.run = run_insert;
    s3.job.done = on_done;
    CHECK_EQ_INT(worker_write(&d, &s3.job), TALLY_E_SHUTTING_DOWN);
    uv_run(d.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(done_status[5], 0);
    CHECK_EQ_STR(order, "65");

    workers_free(&d);
    if (rh_bare_end(&d, dir) != 0)
        return 2;
    return check_result("test_worker");
}
