/* Group commit: one transaction and one fsync per loop turn of writes (gcommit.h). */
#include "gcommit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <uv.h>

#include "log.h"
#include "rpc.h"
#include "server.h"
#include "fulfil.h"
#include "store.h"
#include "sync.h"
#include "tally/protocol.h"
#include "tallyd.h"
#include "worker.h"

/* An answer waiting for its group's commit. */
struct answer {
    struct answer *next;
    uint64_t conn;
    uint32_t msgid;
    size_t len;
    char data[];
};

struct alist {
    struct answer *head, **tail;
};

struct gcommit {
    struct tallyd *d;
    struct store *st;  /* the group's connection */
    uv_check_t check;  /* the end of each loop turn */
    struct alist held; /* answers of the open group */
    struct alist out;  /* decided (committed or failed), to send at the end of the turn */
    size_t nheld;
    bool check_open;

    /* The commit thread: it runs the COMMIT of a detached group (store_group_commit_run),
     * the only thing it ever does, while the loop goes on; uv_async brings the result back. */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool thread_started;
    bool quit;           /* under mu: the thread ends */
    bool job;            /* under mu: a group to commit (set by the loop, cleared by the thread) */
    bool job_done;       /* under mu: its result is in job_rc */
    int job_rc;          /* under mu */
    bool in_flight;      /* loop only: a group detached and not yet ended (commit_end) */
    struct alist flying; /* loop only: the answers of the group in flight */
    size_t nflying;
    uv_async_t async;
    bool async_open;
    uint64_t commits_off_loop; /* group commits run on the thread (status, tests) */
    uint64_t barriers;         /* groups opened by gcommit_barrier */
};

static void al_init(struct alist *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void al_push(struct alist *l, struct answer *a)
{
    a->next = NULL;
    *l->tail = a;
    l->tail = &a->next;
}

/* Appends all of `from` to `to`, leaving `from` empty. */
static void al_move(struct alist *to, struct alist *from)
{
    if (!from->head)
        return;
    *to->tail = from->head;
    to->tail = from->tail;
    al_init(from);
}

/* Reads a msgid back from an encoded response [1, msgid, ...] (we packed it: well formed). */
static uint32_t answer_msgid(const char *data, size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    uint32_t id = 0;
    if (msgpack_unpack_next(&u, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size >= 2 &&
        u.data.via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        id = (uint32_t)u.data.via.array.ptr[1].via.u64;
    msgpack_unpacked_destroy(&u);
    return id;
}

/* Every answer of `list` becomes the error `code`: its write was not kept. */
static void fail_list(struct gcommit *g, struct alist *list, size_t *n, int code)
{
    const char *why = code == TALLY_E_DISK_FULL
                          ? "disk full: the replica could not record the change; nothing changed"
                          : "the replica could not record the change; nothing changed";
    if (*n)
        log_error("group commit: %zu writes not recorded: %s", *n, tally_strerror(code));
    struct alist failed;
    al_init(&failed);
    for (struct answer *a = list->head, *next; a; a = next) {
        next = a->next;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        rpc_pack_error(&pk, a->msgid, code, why);
        struct answer *e = malloc(sizeof *e + sb.size);
        if (e) {
            e->conn = a->conn;
            e->msgid = a->msgid;
            e->len = sb.size;
            memcpy(e->data, sb.data, sb.size);
            al_push(&failed, e);
        } else {
            /* Owed all the same: the connection must not wait forever for it. */
            server_send_owed(g->d->server, a->conn, NULL, 0);
        }
        msgpack_sbuffer_destroy(&sb);
        free(a);
    }
    al_init(list);
    *n = 0;
    al_move(&g->out, &failed);
}

static void fail_held(struct gcommit *g, int code)
{
    fail_list(g, &g->held, &g->nheld, code);
}

/* ---- the commit thread ---- */

/* A test's hook (gcommit.h): runs on the commit thread before each COMMIT. */
void (*gcommit_test_before_commit)(void);

static void *commit_thread(void *arg)
{
    struct gcommit *g = arg;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->job && !g->quit)
            pthread_cond_wait(&g->cv, &g->mu);
        if (!g->job)
            break; /* quit, nothing to commit */
        pthread_mutex_unlock(&g->mu);
        /* The loop does not touch the group's connection while its group is in flight (no
         * write runs on it: rpc_must_wait; gcommit_store waits): one thread uses it at a
         * time, as SQLite's multi-thread mode (SQLITE_OPEN_NOMUTEX, store.c) requires. */
        if (gcommit_test_before_commit)
            gcommit_test_before_commit();
        int rc = store_group_commit_run(g->st);
        pthread_mutex_lock(&g->mu);
        g->job = false;
        g->job_done = true;
        g->job_rc = rc;
        pthread_cond_broadcast(&g->cv);
        uv_async_send(&g->async);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* The group in flight came back (the thread's result is in): the writer lock is released,
 * its answers are decided (sent by deliver). */
static void commit_end(struct gcommit *g, int rc)
{
    g->in_flight = false;
    store_group_commit_end(g->st, rc);
    if (rc)
        fail_list(g, &g->flying, &g->nflying, rc);
    else {
        al_move(&g->out, &g->flying);
        g->nflying = 0;
    }
}

/* Waits for the group in flight, on the loop (before the loop's own transaction, at a stop):
 * one COMMIT at most. */
static void wait_in_flight(struct gcommit *g)
{
    if (!g->in_flight)
        return;
    pthread_mutex_lock(&g->mu);
    while (!g->job_done)
        pthread_cond_wait(&g->cv, &g->mu);
    g->job_done = false;
    int rc = g->job_rc;
    pthread_mutex_unlock(&g->mu);
    commit_end(g, rc);
}

/* No group is open: the held answers go out, or fail with the code of a group that was lost.
 * Returns that code (0: none lost). */
static int settle_unopened(struct gcommit *g)
{
    int lost = store_group_take_lost(g->st);
    if (lost)
        fail_held(g, lost);
    else
        al_move(&g->out, &g->held), g->nheld = 0;
    return lost;
}

/* Hands the open group to the commit thread (at the end of a loop turn). */
static void dispatch(struct gcommit *g)
{
    if (g->in_flight || !g->thread_started)
        return;
    if (!store_group_open(g->st)) {
        settle_unopened(g);
        return;
    }
    if (store_group_detach(g->st) != 1)
        return; /* a write is open (cannot be at the end of a turn); the next turn */
    al_move(&g->flying, &g->held);
    g->nflying = g->nheld;
    g->nheld = 0;
    g->in_flight = true;
    g->commits_off_loop++;
    pthread_mutex_lock(&g->mu);
    g->job = true;
    g->job_done = false;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int flush(struct gcommit *g)
{
    wait_in_flight(g);
    if (!store_group_open(g->st))
        return settle_unopened(g);
    if (store_group_in_write(g->st))
        return TALLY_E_BUSY;
    int r = store_group_commit(g->st);
    if (r)
        fail_held(g, r);
    else {
        al_move(&g->out, &g->held);
        g->nheld = 0;
    }
    return r;
}

/* Sends what is decided, then the events the committed writes raised. */
static void deliver(struct gcommit *g)
{
    struct answer *a = g->out.head;
    al_init(&g->out);
    while (a) {
        struct answer *next = a->next;
        server_send_owed(g->d->server, a->conn, a->data, a->len);
        free(a);
        a = next;
    }
    server_flush_owed(g->d->server);
    store_ready_run(store_take_ready(g->st));
}

static void on_check(uv_check_t *h)
{
    struct gcommit *g = h->data;
    for (int round = 0; round < 64; round++) {
        if (g->thread_started)
            dispatch(g);
        else
            flush(g);
        deliver(g);
        /* A request that waits (rpc_must_wait) is taken up when the commit thread's result
         * comes back (on_async). When nothing is in flight, none will come: a read that waited
         * for its connection's write, whose group the loop's own transaction committed in this
         * turn (before_begin: a page applied, a push answer recorded), or committed just above
         * without a commit thread, would wait until some other client's write. Take them up
         * now; what they write makes a group dispatched on the next round. */
        if (g->in_flight || !server_has_waiting(g->d->server))
            break;
        server_resume_waiting(g->d->server);
        if (!store_group_open(g->st))
            break; /* nothing new to commit: what still waits is not waiting for this loop */
    }
}

/* The commit thread's result (or nothing left: wait_in_flight took it on the loop). */
static void on_async(uv_async_t *h)
{
    struct gcommit *g = h->data;
    if (g->in_flight) {
        pthread_mutex_lock(&g->mu);
        bool done = g->job_done;
        int rc = g->job_rc;
        if (done)
            g->job_done = false;
        pthread_mutex_unlock(&g->mu);
        if (!done)
            return;
        commit_end(g, rc);
    }
    deliver(g);
    /* The loop's own work that gave way to this commit goes first (no group is open now):
     * after the waiting writes it would give way again to the group they make. */
    sync_writer_free(g->d->sync);
    fulfil_writer_free(g->d);
    /* The requests that waited for it: their writes make the next group (committed at the
     * end of this turn, on the thread), their reads see what was just committed. */
    server_resume_waiting(g->d->server);
    workers_checkpoint_due(g->d);
}

int gcommit_barrier(struct tallyd *d)
{
    struct gcommit *g = d->gc;
    if (!g || !g->thread_started || d->stopping)
        return TALLY_E_BUSY;
    /* A group open or in flight holds the writer lock since its BEGIN: the lazy commits that
     * ask for a barrier came before it, and its COMMIT syncs them. */
    if (g->in_flight || store_group_open(g->st))
        return 0;
    int r = store_begin(g->st); /* opens a group (group mode) */
    sqlite3_stmt *s =
        r ? NULL
          : store_stmt(g->st, "INSERT INTO counters(name, n) VALUES('sync_barriers', 1)"
                              " ON CONFLICT(name) DO UPDATE SET n = n + 1");
    if (r == 0) {
        int rc = s ? sqlite3_step(s) : SQLITE_ERROR;
        if (s)
            sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            r = store_commit(g->st); /* the write's savepoint; the group stays open */
        else {
            r = TALLY_E_STORAGE;
            store_rollback(g->st);
        }
    }
    if (r == 0) {
        g->barriers++;
        dispatch(g); /* now, not at the end of the turn (a timer's turn may sleep in poll) */
    } else if (!store_group_in_write(g->st)) {
        settle_unopened(g);
    }
    return r;
}

/* The loop's connection is about to begin a transaction: the group goes first, and so do
 * its answers and events. What the loop's transaction raises goes out at its own commit, so
 * the group's events, held for the end of the turn, would reach watchers after the events of
 * a later commit (an order's "cancelled" after its "shipped"): watchers hear of changes in
 * the order they were committed. */
static int before_begin(void *arg, bool wait)
{
    struct gcommit *g = arg;
    /* The loop's own work that can come back later (store_begin_yield, the fulfilment pass):
     * the group goes to the commit thread as at the end of the turn, and the work waits for
     * its result (on_async wakes the sync engine), not for an fsync on the loop. */
    if (!wait && g->thread_started && (g->in_flight || store_group_open(g->st))) {
        dispatch(g);
        return TALLY_E_BUSY;
    }
    int r = flush(g);
    if (r == TALLY_E_BUSY)
        return TALLY_E_BUSY;
    deliver(g);
    return 0;
}

static void stop_thread(struct gcommit *g)
{
    if (!g->thread_started)
        return;
    wait_in_flight(g);
    pthread_mutex_lock(&g->mu);
    g->quit = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    g->thread_started = false;
}

int gcommit_start(struct tallyd *d, char *err, size_t errlen)
{
    struct gcommit *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    g->d = d;
    al_init(&g->held);
    al_init(&g->out);
    al_init(&g->flying);
    if (store_open_extra(store_path(d->store), d->cfg.sync_full, false, &g->st, err, errlen) != 0) {
        free(g);
        return -1;
    }
    /* It runs on the loop: it waits for another process's lock no longer than the loop's. */
    sqlite3_busy_timeout(store_db(g->st), STORE_BUSY_MS);
    store_set_writer_lock(g->st, workers_writer_lock(d));
    store_defer_checkpoints(g->st, NULL, NULL); /* seen on the loop: on_async */
    /* Clients' writes touch few pages (a movement, its outbox row, counters): a small cache
     * keeps tallyd within its memory budget (store_set_cache_kib). */
    store_set_cache_kib(g->st, GCOMMIT_CACHE_KIB);
    store_keep_held(g->st, true);
    store_group_enable(g->st, true);
    store_set_before_begin(d->store, before_begin, g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    uv_async_init(d->loop, &g->async, on_async);
    g->async.data = g;
    uv_unref((uv_handle_t *)&g->async); /* it does not keep the loop alive either */
    g->async_open = true;
    if (pthread_create(&g->thread, NULL, commit_thread, g) == 0)
        g->thread_started = true;
    else
        log_warn("group commit: no commit thread; groups commit on the loop");
    uv_check_init(d->loop, &g->check);
    g->check.data = g;
    uv_check_start(&g->check, on_check);
    uv_unref((uv_handle_t *)&g->check); /* it does not keep the loop alive */
    g->check_open = true;
    d->gc = g;
    return 0;
}

void gcommit_stop(struct tallyd *d)
{
    struct gcommit *g = d->gc;
    if (!g)
        return;
    flush(g);
    deliver(g);
    stop_thread(g);
    /* Requests that waited for the last commit: answered now (shutting_down for writes). */
    server_resume_waiting(d->server);
    if (g->async_open) {
        g->async_open = false;
        uv_close((uv_handle_t *)&g->async, NULL);
    }
    if (g->check_open) {
        g->check_open = false;
        uv_close((uv_handle_t *)&g->check, NULL);
    }
}

void gcommit_free(struct tallyd *d)
{
    struct gcommit *g = d->gc;
    if (!g)
        return;
    wait_in_flight(g);
    stop_thread(g);
    if (store_group_open(g->st))
        store_group_commit(g->st); /* nothing can be open here; be sure */
    store_ready_free(store_take_ready(g->st));
    for (struct alist *l = &g->held; l; l = l == &g->held ? &g->out : NULL)
        for (struct answer *a = l->head, *next; a; a = next) {
            next = a->next;
            free(a);
        }
    store_set_before_begin(d->store, NULL, NULL);
    store_close(g->st);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
    d->gc = NULL;
}

struct store *gcommit_store(struct tallyd *d)
{
    if (!d->gc || d->stopping)
        return NULL;
    /* Writes wait while a group is in flight (rpc_must_wait); should one come all the same,
     * it waits here for that commit: the connection is the commit thread's until then. */
    wait_in_flight(d->gc);
    /* Stock changes mark their SKU for publishing as on the loop's connection (the sync
     * engine turns that on there when it starts: store_set_publish). */
    store_set_publish(d->gc->st, store_publishes(d->store));
    return d->gc->st;
}

int gcommit_after_call(struct tallyd *d, int r, char *err, size_t errlen)
{
    struct gcommit *g = d->gc;
    if (!g || store_group_open(g->st))
        return r;
    int lost = store_group_take_lost(g->st);
    if (!lost)
        return r;
    fail_held(g, lost);
    if (r == 0 || r == RPC_DEFERRED) {
        /* It answered on a write the group lost: not kept, say so. (A deferred one owes its
         * answer itself; the caller drops it.) */
        snprintf(err, errlen, "the replica could not record the change; nothing changed");
        return r == 0 ? lost : r;
    }
    return r;
}

int gcommit_hold(struct tallyd *d, void *conn, const char *data, size_t len)
{
    struct gcommit *g = d->gc;
    if (!g || !conn || !store_group_open(g->st))
        return 0;
    struct answer *a = malloc(sizeof *a + len);
    if (!a) {
        /* Cannot hold it: commit now, so that answering at once answers a durable write. */
        int r = flush(g);
        return r ? r : 0;
    }
    a->conn = server_conn_id(conn);
    a->msgid = answer_msgid(data, len);
    a->len = len;
    memcpy(a->data, data, len);
    al_push(&g->held, a);
    g->nheld++;
    server_conn_owe(conn);
    return 1;
}

int gcommit_flush(struct tallyd *d)
{
    if (!d->gc)
        return 0;
    int r = flush(d->gc);
    if (r != TALLY_E_BUSY)
        deliver(d->gc);
    return r;
}

size_t gcommit_held(const struct tallyd *d)
{
    return d->gc ? d->gc->nheld + d->gc->nflying : 0;
}

bool gcommit_active(const struct tallyd *d)
{
    return d->gc && !d->stopping;
}

bool gcommit_in_flight(const struct tallyd *d)
{
    return d->gc && d->gc->in_flight;
}

uint64_t gcommit_off_loop(const struct tallyd *d)
{
    return d->gc ? d->gc->commits_off_loop : 0;
}
