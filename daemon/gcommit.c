/* Group commit: one transaction per loop turn of writes, one sync of the WAL for the groups
 * committed while the last one ran (gcommit.h). */
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

/* An answer waiting for its group's commit and sync. */
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

/* What one commit decided, to send in commit order (gcommit.h "Delivery"): a group's answers
 * and events, the answers of a group that failed, or the events of another connection's
 * commit that came after a group still waiting for its sync. */
struct batch {
    struct batch *next;
    uint64_t seq;   /* the group's commit number (store_last_seq) */
    bool wait_sync; /* sent once a sync covers seq (store_durable_seq) */
    struct alist answers;
    size_t n;
    struct store_ready *events;
};

struct gcommit {
    struct tallyd *d;
    struct store *st;  /* the group's connection */
    uv_check_t check;  /* the end of each loop turn */
    struct alist held; /* answers of the open group */
    size_t nheld;
    bool check_open;
    struct batch *q_head, **q_tail; /* decided and not yet sent, in commit order */
    size_t nqueued;                 /* answers in the queue */
    bool sent; /* answers sent since the requests that wait were last taken up */

    /* The commit thread: it runs the COMMIT of a detached group (store_group_commit_run),
     * the only thing it ever does, while the loop goes on; uv_async brings the result back. */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool thread_started;
    bool quit;           /* under mu: the threads end */
    bool job;            /* under mu: a group to commit (set by the loop, cleared by the thread) */
    bool job_done;       /* under mu: its result is in job_rc */
    int job_rc;          /* under mu */
    bool in_flight;      /* loop only: a group detached and not yet ended (commit_end) */
    struct alist flying; /* loop only: the answers of the group in flight */
    size_t nflying;
    uv_async_t async;
    bool async_open;
    uint64_t commits_off_loop; /* group commits run on the thread (status, tests) */
    uint64_t commits;          /* groups committed, on the thread or the loop (status) */
    uint64_t barriers;         /* syncs asked for by gcommit_barrier */

    /* The sync thread: on a connection of its own (sync_st), it syncs the WAL (store_sync_wal)
     * when the loop asks, one sync at a time; uv_async brings the result back. */
    bool lazy;       /* groups commit at NORMAL and their answers wait for a sync */
    bool level_full; /* loop: the group's connection's synchronous level is FULL */
    bool degraded;   /* loop: a sync failed; groups commit at FULL until one succeeds */
    struct store *sync_st;
    pthread_t sync_thread;
    pthread_cond_t scv;
    bool sync_started;
    bool sync_want;      /* under mu: a sync asked for (set by the loop, cleared by the thread) */
    bool sync_done;      /* under mu: its result is in sync_rc, sync_seq */
    int sync_rc;         /* under mu */
    uint64_t sync_seq;   /* under mu: every commit up to it had returned when the sync began */
    bool sync_running;   /* loop only: asked, result not taken back yet */
    bool sync_again;     /* loop only: another sync wanted once this one is back (a barrier) */
    uint64_t syncs;      /* syncs done (status, tests) */
    uint64_t sync_fails; /* of them failed */
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

static void al_free(struct alist *l)
{
    for (struct answer *a = l->head, *next; a; a = next) {
        next = a->next;
        free(a);
    }
    al_init(l);
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

/* The `id` of a success response's result map [1, msgid, nil, {id: str, ...}] into buf ("" when
 * none): what a write recorded under that id (a movement's, made by tallyd when the client gave
 * none). */
static void answer_result_id(const char *data, size_t len, char *buf, size_t cap)
{
    buf[0] = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 4 &&
        u.data.via.array.ptr[3].type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *m = &u.data.via.array.ptr[3].via.map;
        for (uint32_t i = 0; i < m->size; i++) {
            const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
            if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 2 &&
                !memcmp(k->via.str.ptr, "id", 2) && v->type == MSGPACK_OBJECT_STR &&
                v->via.str.size < cap) {
                memcpy(buf, v->via.str.ptr, v->via.str.size);
                buf[v->via.str.size] = 0;
                break;
            }
        }
    }
    msgpack_unpacked_destroy(&u);
}

/* What a failed commit says: nothing of the write was kept. */
static const char *why_commit(int code)
{
    return code == TALLY_E_DISK_FULL
               ? "disk full: the replica could not record the change; nothing changed"
               : "the replica could not record the change; nothing changed";
}

/* What a failed sync says: the commit had returned, so the change is in the replica, but the
 * disk did not make it durable; a power cut may or may not undo it. */
#define WHY_SYNC                                                                                   \
    "the disk could not make the change durable (sync failed): it is in the replica, but a "       \
    "power cut may undo it; check before repeating it (a movement sent again with the same id "    \
    "is applied once: the error's id)"

/* Every answer of `list` becomes the error `code` with `why`, into `failed`. `kept`: the
 * writes are in the replica all the same (a failed sync): each error carries the `id` its
 * answer's result had, so that a client that gave none can check for it and send it again
 * with it (applied once) instead of sending it again without one (applied twice). */
static void fail_into(struct gcommit *g, struct alist *list, int code, const char *why, bool kept,
                      struct alist *failed)
{
    for (struct answer *a = list->head, *next; a; a = next) {
        next = a->next;
        char id[TALLY_MAX_ID_LEN + 1] = "";
        if (kept)
            answer_result_id(a->data, a->len, id, sizeof id);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        rpc_pack_error_id(&pk, a->msgid, code, why, id);
        struct answer *e = malloc(sizeof *e + sb.size);
        if (e) {
            e->conn = a->conn;
            e->msgid = a->msgid;
            e->len = sb.size;
            memcpy(e->data, sb.data, sb.size);
            al_push(failed, e);
        } else {
            /* Owed all the same: the connection must not wait forever for it. */
            server_send_owed(g->d->server, a->conn, NULL, 0);
        }
        msgpack_sbuffer_destroy(&sb);
        free(a);
    }
    al_init(list);
}

/* ---- the queue of decided commits (gcommit.h "Delivery") ---- */

static bool pending_sync(const struct gcommit *g)
{
    uint64_t durable = store_durable_seq();
    for (const struct batch *b = g->q_head; b; b = b->next)
        if (b->wait_sync && b->seq > durable)
            return true;
    return false;
}

static void sync_wait_result(struct gcommit *g);
static void deliver(struct gcommit *g);

/* Appends a commit's answers (taken from `answers`) and events to the queue. */
static void q_add(struct gcommit *g, uint64_t seq, bool wait_sync, struct alist *answers, size_t n,
                  struct store_ready *events)
{
    if (!answers->head && !events)
        return;
    struct batch *b = malloc(sizeof *b);
    if (!b) {
        /* Cannot queue it: make it (and so everything before it) durable now, send what is
         * queued, then it. Out of memory only. */
        uint64_t fails = g->sync_fails;
        while (wait_sync && g->sync_started && seq > store_durable_seq() && g->sync_fails == fails)
            sync_wait_result(g);
        bool ok = !wait_sync || seq <= store_durable_seq();
        deliver(g); /* what came before it */
        struct alist failed;
        al_init(&failed);
        if (!ok)
            fail_into(g, answers, TALLY_E_STORAGE, WHY_SYNC, true, &failed);
        for (struct alist *l = ok ? answers : &failed; l->head;) {
            struct answer *a = l->head;
            l->head = a->next;
            server_send_owed(g->d->server, a->conn, a->data, a->len);
            free(a);
        }
        al_init(answers);
        if (ok)
            store_ready_run(events);
        else
            store_ready_free(events);
        server_flush_owed(g->d->server);
        return;
    }
    b->next = NULL;
    b->seq = seq;
    b->wait_sync = wait_sync;
    al_init(&b->answers);
    al_move(&b->answers, answers);
    b->n = n;
    b->events = events;
    *g->q_tail = b;
    g->q_tail = &b->next;
    g->nqueued += n;
}

/* Sends what is decided, in commit order, up to the first commit not yet durable: each
 * commit's answers, then the events it raised. */
static void deliver(struct gcommit *g)
{
    bool any = false;
    while (g->q_head) {
        struct batch *b = g->q_head;
        if (b->wait_sync && b->seq > store_durable_seq())
            break;
        g->q_head = b->next;
        if (!g->q_head)
            g->q_tail = &g->q_head;
        g->nqueued -= b->n;
        for (struct answer *a = b->answers.head, *next; a; a = next) {
            next = a->next;
            server_send_owed(g->d->server, a->conn, a->data, a->len);
            free(a);
            any = true;
        }
        /* The events after the answers, in the same connections' buffers. */
        store_ready_run(b->events);
        free(b);
    }
    if (any) {
        server_flush_owed(g->d->server);
        g->sent = true;
    }
}

/* The store's gate (store_set_ready_gate) for the loop's connection, and the write jobs' work
 * (gcommit_run_ready): what a commit raised waits behind the groups committed before it. */
static bool gate(void *arg, struct store_ready *list)
{
    struct gcommit *g = arg;
    if (!g->q_head)
        return false;
    struct alist none;
    al_init(&none);
    q_add(g, 0, false, &none, 0, list);
    return true;
}

void gcommit_run_ready(struct tallyd *d, struct store_ready *list)
{
    if (!list)
        return;
    if (!d->gc || !gate(d->gc, list))
        store_ready_run(list);
}

/* ---- the group's level ---- */

/* Lazy: NORMAL (the sync thread makes the WAL durable), FULL while degraded; otherwise the
 * configured level. Set between groups only (SQLite refuses it inside a transaction). */
static void set_level(struct gcommit *g)
{
    bool full = g->lazy ? g->degraded : g->d->cfg.sync_full;
    if (full == g->level_full || g->in_flight || store_group_open(g->st))
        return;
    if (store_set_durable(g->st, full) == 0)
        g->level_full = full;
    else
        log_error("group commit: cannot set synchronous = %s", full ? "FULL" : "NORMAL");
}

/* ---- the sync thread ---- */

/* A test's hook (gcommit.h): runs on the sync thread before each sync. */
int (*gcommit_test_before_sync)(void);

static void *sync_thread(void *arg)
{
    struct gcommit *g = arg;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->sync_want && !g->quit)
            pthread_cond_wait(&g->scv, &g->mu);
        if (!g->sync_want)
            break;
        g->sync_want = false;
        pthread_mutex_unlock(&g->mu);
        int rc = gcommit_test_before_sync ? gcommit_test_before_sync() : 0;
        /* Every commit numbered up to seq has returned: its frames are written to the WAL
         * before the sync begins, so the sync covers them. */
        uint64_t seq = store_commit_seq();
        if (rc == 0)
            rc = store_sync_wal(g->sync_st);
        pthread_mutex_lock(&g->mu);
        g->sync_done = true;
        g->sync_rc = rc;
        g->sync_seq = seq;
        pthread_cond_broadcast(&g->scv);
        uv_async_send(&g->async);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* Asks for a sync. One runs at a time: while one runs, the groups committed meanwhile wait
 * for the next (sync_end asks for it); `again` asks for one after it in any case (a barrier:
 * the lazy commits it is for may have come after the running sync began). */
static void request_sync(struct gcommit *g, bool again)
{
    if (!g->sync_started)
        return;
    if (g->sync_running) {
        g->sync_again = g->sync_again || again;
        return;
    }
    g->sync_running = true;
    g->sync_again = false;
    pthread_mutex_lock(&g->mu);
    g->sync_want = true;
    pthread_cond_signal(&g->scv);
    pthread_mutex_unlock(&g->mu);
}

/* A sync came back (on the loop): what it covered is durable, or, when it failed, every
 * group it covered fails (gcommit.h "A failed sync"). */
static void sync_end(struct gcommit *g, int rc, uint64_t seq)
{
    g->sync_running = false;
    g->syncs++;
    if (rc == 0) {
        store_synced(seq);
        if (g->degraded) {
            g->degraded = false;
            set_level(g);
        }
    } else {
        g->sync_fails++;
        size_t failed_n = 0;
        for (struct batch *b = g->q_head; b; b = b->next) {
            if (!b->wait_sync || b->seq > seq)
                continue;
            struct alist failed;
            al_init(&failed);
            fail_into(g, &b->answers, rc, WHY_SYNC, true, &failed);
            al_move(&b->answers, &failed);
            failed_n += b->n;
            b->wait_sync = false;
            /* A write that failed announces nothing (PROTOCOL.md "watch"). */
            store_ready_free(b->events);
            b->events = NULL;
        }
        log_error("group commit: the WAL's sync failed: %zu writes answered %s (in the replica, "
                  "not known durable); groups commit at FULL until a sync succeeds",
                  failed_n, tally_strerror(rc));
        g->degraded = true;
        set_level(g);
    }
    if (g->sync_again || pending_sync(g))
        request_sync(g, false);
}

/* Waits on the loop for the sync in flight (asking for one if none runs) and takes its
 * result. */
static void sync_wait_result(struct gcommit *g)
{
    if (!g->sync_started)
        return;
    if (!g->sync_running)
        request_sync(g, false);
    pthread_mutex_lock(&g->mu);
    while (!g->sync_done)
        pthread_cond_wait(&g->scv, &g->mu);
    g->sync_done = false;
    int rc = g->sync_rc;
    uint64_t seq = g->sync_seq;
    pthread_mutex_unlock(&g->mu);
    sync_end(g, rc, seq);
}

/* Waits on the loop until nothing queued waits for a sync (tallyd stopping; a read that must
 * see its own write answered). */
static void wait_synced(struct gcommit *g)
{
    while (g->sync_started && (g->sync_running || pending_sync(g)))
        sync_wait_result(g);
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

/* A group's COMMIT returned (rc), on the thread or the loop, and store_group_commit_end ran:
 * its answers (taken from `answers`) and events join the queue; a lazy one asks for a sync. */
static void settle_commit(struct gcommit *g, int rc, struct alist *answers, size_t *n)
{
    size_t k = *n;
    *n = 0;
    g->commits += rc == 0;
    if (rc) {
        if (k)
            log_error("group commit: %zu writes not recorded: %s", k, tally_strerror(rc));
        struct alist failed;
        al_init(&failed);
        fail_into(g, answers, rc, why_commit(rc), false, &failed);
        q_add(g, 0, false, &failed, k, NULL);
        store_ready_free(store_take_ready(g->st));
    } else {
        uint64_t seq = store_last_seq(g->st);
        bool wait = g->lazy && seq > store_durable_seq();
        q_add(g, seq, g->lazy, answers, k, store_take_ready(g->st));
        if (wait)
            request_sync(g, false);
        else if (g->degraded && seq <= store_durable_seq())
            g->degraded = false; /* a group committed at FULL: the disk syncs again */
    }
    set_level(g);
}

/* The group in flight came back (the thread's result is in): the writer lock is released,
 * its answers are decided (sent by deliver once durable). */
static void commit_end(struct gcommit *g, int rc)
{
    g->in_flight = false;
    store_group_commit_end(g->st, rc);
    settle_commit(g, rc, &g->flying, &g->nflying);
}

/* Waits for the group in flight, on the loop (before the loop's own transaction, at a stop):
 * one COMMIT at most (no fsync: the group's sync runs on the sync thread). */
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

/* No group is open: the held answers fail with the code of a group that was lost, or join
 * the queue behind the connection's last commit. Returns that code (0: none lost). */
static int settle_unopened(struct gcommit *g)
{
    int lost = store_group_take_lost(g->st);
    if (lost) {
        struct alist failed;
        al_init(&failed);
        size_t k = g->nheld;
        if (k)
            log_error("group commit: %zu writes not recorded: %s", k, tally_strerror(lost));
        fail_into(g, &g->held, lost, why_commit(lost), false, &failed);
        g->nheld = 0;
        q_add(g, 0, false, &failed, k, NULL);
    } else {
        q_add(g, store_last_seq(g->st), g->lazy, &g->held, g->nheld, NULL);
        g->nheld = 0;
    }
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

/* Commits the open group on the loop (after the one in flight): at NORMAL when lazy, so no
 * fsync here; its answers wait for a sync like any group's. */
static int flush(struct gcommit *g)
{
    wait_in_flight(g);
    if (!store_group_open(g->st))
        return settle_unopened(g);
    if (store_group_in_write(g->st))
        return TALLY_E_BUSY;
    int r = store_group_commit(g->st);
    settle_commit(g, r, &g->held, &g->nheld);
    return r;
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
        /* Writes that wait for the COMMIT in flight are taken up when it returns (on_async).
         * A read waits for its connection's answers: take it up once some were sent (here,
         * or by a commit the loop's own transaction made in this turn, before_begin), or it
         * would wait until some other client's write; what the reads taken up write makes a
         * group dispatched on the next round. */
        if (g->in_flight || !g->sent || !server_has_waiting(g->d->server))
            break;
        g->sent = false;
        server_resume_waiting(g->d->server);
        if (!store_group_open(g->st))
            break; /* nothing new to commit: what still waits is not waiting for this loop */
    }
}

/* The commit thread's or the sync thread's result (or nothing left: the loop took it). */
static void on_async(uv_async_t *h)
{
    struct gcommit *g = h->data;
    pthread_mutex_lock(&g->mu);
    bool committed = g->in_flight && g->job_done;
    int crc = g->job_rc;
    if (committed)
        g->job_done = false;
    bool synced = g->sync_running && g->sync_done;
    int src = g->sync_rc;
    uint64_t sseq = g->sync_seq;
    if (synced)
        g->sync_done = false;
    pthread_mutex_unlock(&g->mu);
    if (committed)
        commit_end(g, crc);
    if (synced)
        sync_end(g, src, sseq);
    if (g->in_flight)
        return; /* a sync came back while a COMMIT runs: deliver then */
    deliver(g);
    /* The loop's own work that gave way to this commit goes first (no group is open now):
     * after the waiting writes it would give way again to the group they make. A sync's
     * end wakes the sync engine too (gcommit_barrier). */
    sync_writer_free(g->d->sync);
    fulfil_writer_free(g->d);
    /* The requests that waited: writes for the COMMIT, their reads for their answers. */
    g->sent = false;
    server_resume_waiting(g->d->server);
    workers_checkpoint_due(g->d);
}

int gcommit_barrier(struct tallyd *d)
{
    struct gcommit *g = d->gc;
    if (!g || !g->sync_started || d->stopping)
        return TALLY_E_BUSY;
    /* A sync begun from now on covers every commit so far, the lazy ones that ask for it. */
    g->barriers++;
    request_sync(g, true);
    return 0;
}

/* The loop's connection is about to begin a transaction: the group goes first (the writer
 * lock), and so does what it decided: what the loop's transaction raises waits behind it in
 * the queue (gate), so watchers hear of changes in the order they were committed. */
static int before_begin(void *arg, bool wait)
{
    struct gcommit *g = arg;
    /* The loop's own work that can come back later (store_begin_yield, the fulfilment pass):
     * the group goes to the commit thread as at the end of the turn, and the work waits for
     * its COMMIT (on_async wakes the sync engine), not on the loop. */
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

static void stop_threads(struct gcommit *g)
{
    wait_in_flight(g);
    if (g->sync_started && g->sync_running)
        sync_wait_result(g);
    pthread_mutex_lock(&g->mu);
    g->quit = true;
    pthread_cond_broadcast(&g->cv);
    pthread_cond_broadcast(&g->scv);
    pthread_mutex_unlock(&g->mu);
    if (g->thread_started)
        pthread_join(g->thread, NULL);
    if (g->sync_started)
        pthread_join(g->sync_thread, NULL);
    g->thread_started = false;
    g->sync_started = false;
}

/* The sync thread and its connection (synchronous = full only: with normal no answer waits
 * for a sync). False when it cannot run: groups then commit at FULL. */
static bool start_sync(struct gcommit *g, char *err, size_t errlen)
{
    if (!g->d->cfg.sync_full || !g->thread_started)
        return false;
    if (store_open_extra(store_path(g->d->store), false, false, &g->sync_st, err, errlen) != 0)
        return false;
    /* It never writes and never reads after this: it holds no snapshot a checkpoint would
     * wait for, and keeps the WAL file open for its syncs. */
    if (store_wal_attach(g->sync_st) != 0) {
        snprintf(err, errlen, "the WAL's file is not open on the sync thread's connection");
        store_close(g->sync_st);
        g->sync_st = NULL;
        return false;
    }
    if (pthread_create(&g->sync_thread, NULL, sync_thread, g) != 0) {
        snprintf(err, errlen, "cannot start the sync thread");
        store_close(g->sync_st);
        g->sync_st = NULL;
        return false;
    }
    g->sync_started = true;
    return true;
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
    al_init(&g->flying);
    g->q_tail = &g->q_head;
    if (store_open_extra(store_path(d->store), d->cfg.sync_full, false, &g->st, err, errlen) != 0) {
        free(g);
        return -1;
    }
    g->level_full = d->cfg.sync_full;
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
    store_set_ready_gate(d->store, gate, g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    pthread_cond_init(&g->scv, NULL);
    uv_async_init(d->loop, &g->async, on_async);
    g->async.data = g;
    uv_unref((uv_handle_t *)&g->async); /* it does not keep the loop alive either */
    g->async_open = true;
    if (pthread_create(&g->thread, NULL, commit_thread, g) == 0)
        g->thread_started = true;
    else
        log_warn("group commit: no commit thread; groups commit on the loop");
    char serr[256] = "";
    g->lazy = start_sync(g, serr, sizeof serr);
    if (!g->lazy && d->cfg.sync_full && g->thread_started)
        log_warn("group commit: no sync thread (%s); each group's COMMIT syncs", serr);
    set_level(g);
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
    wait_synced(g);
    deliver(g);
    stop_threads(g);
    deliver(g);
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
    stop_threads(g);
    if (store_group_open(g->st))
        store_group_commit(g->st); /* nothing can be open here; be sure */
    store_ready_free(store_take_ready(g->st));
    al_free(&g->held);
    al_free(&g->flying);
    while (g->q_head) {
        struct batch *b = g->q_head;
        g->q_head = b->next;
        al_free(&b->answers);
        store_ready_free(b->events);
        free(b);
    }
    store_set_before_begin(d->store, NULL, NULL);
    store_set_ready_gate(d->store, NULL, NULL);
    store_close(g->sync_st);
    store_close(g->st);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    pthread_cond_destroy(&g->scv);
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
    struct alist failed;
    al_init(&failed);
    size_t k = g->nheld;
    fail_into(g, &g->held, lost, why_commit(lost), false, &failed);
    g->nheld = 0;
    q_add(g, 0, false, &failed, k, NULL);
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
    if (!g || !conn)
        return 0;
    /* No group open: the write's group was committed during the call (the loop's own
     * transaction went first, before_begin); committed lazily, its answer still waits for the
     * sync that covers the group's last commit, behind what is queued. */
    bool committed = !store_group_open(g->st);
    if (committed && !(g->lazy && store_last_seq(g->st) > store_durable_seq()))
        return 0;
    struct answer *a = malloc(sizeof *a + len);
    if (!a) {
        /* Cannot hold it: commit and sync now, so that answering at once answers a durable
         * write (after every answer decided before it). */
        int r = flush(g);
        if (r == 0) {
            wait_synced(g);
            deliver(g);
            if (g->lazy && store_durable_seq() < store_last_seq(g->st))
                r = TALLY_E_STORAGE; /* the sync failed: it is not durable */
        }
        return r;
    }
    a->conn = server_conn_id(conn);
    a->msgid = answer_msgid(data, len);
    a->len = len;
    memcpy(a->data, data, len);
    server_conn_owe(conn);
    if (committed) {
        struct alist one;
        al_init(&one);
        al_push(&one, a);
        q_add(g, store_last_seq(g->st), true, &one, 1, NULL);
        return 1;
    }
    al_push(&g->held, a);
    g->nheld++;
    return 1;
}

int gcommit_flush(struct tallyd *d)
{
    struct gcommit *g = d->gc;
    if (!g)
        return 0;
    int r = flush(g);
    if (r == TALLY_E_BUSY)
        return r;
    wait_synced(g);
    deliver(g);
    return r;
}

size_t gcommit_held(const struct tallyd *d)
{
    return d->gc ? d->gc->nheld + d->gc->nflying + d->gc->nqueued : 0;
}

bool gcommit_active(const struct tallyd *d)
{
    return d->gc && !d->stopping;
}

bool gcommit_committing(const struct tallyd *d)
{
    return d->gc && d->gc->in_flight;
}

bool gcommit_in_flight(const struct tallyd *d)
{
    return d->gc && (d->gc->in_flight || d->gc->sync_running || pending_sync(d->gc));
}

uint64_t gcommit_off_loop(const struct tallyd *d)
{
    return d->gc ? d->gc->commits_off_loop : 0;
}

uint64_t gcommit_commits(const struct tallyd *d)
{
    return d->gc ? d->gc->commits : 0;
}

uint64_t gcommit_syncs(const struct tallyd *d)
{
    return d->gc ? d->gc->syncs : 0;
}

bool gcommit_lazy(const struct tallyd *d)
{
    return d->gc && d->gc->lazy;
}
