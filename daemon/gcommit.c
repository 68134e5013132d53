/* Group commit: one transaction and one fsync per loop turn of writes (gcommit.h). */
#include "gcommit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <uv.h>

#include "log.h"
#include "rpc.h"
#include "server.h"
#include "store.h"
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

/* Every held answer becomes the error `code`: its write was not kept. */
static void fail_held(struct gcommit *g, int code)
{
    const char *why = code == TALLY_E_DISK_FULL
                          ? "disk full: the replica could not record the change; nothing changed"
                          : "the replica could not record the change; nothing changed";
    if (g->nheld)
        log_error("group commit: %zu writes not recorded: %s", g->nheld, tally_strerror(code));
    struct alist failed;
    al_init(&failed);
    for (struct answer *a = g->held.head, *next; a; a = next) {
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
    al_init(&g->held);
    g->nheld = 0;
    al_move(&g->out, &failed);
}

static int flush(struct gcommit *g)
{
    if (!store_group_open(g->st)) {
        int lost = store_group_take_lost(g->st);
        if (lost)
            fail_held(g, lost);
        else
            al_move(&g->out, &g->held), g->nheld = 0;
        return lost;
    }
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
    flush(g);
    deliver(g);
}

/* The loop's connection is about to begin a transaction: the group goes first, and so do
 * its answers and events. What the loop's transaction raises goes out at its own commit, so
 * the group's events, held for the end of the turn, would reach watchers after the events of
 * a later commit (an order's "cancelled" after its "shipped"): watchers hear of changes in
 * the order they were committed. */
static int before_begin(void *arg)
{
    struct gcommit *g = arg;
    int r = flush(g);
    if (r == TALLY_E_BUSY)
        return TALLY_E_BUSY;
    deliver(g);
    return 0;
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
    if (store_open_extra(store_path(d->store), d->cfg.sync_full, false, &g->st, err, errlen) != 0) {
        free(g);
        return -1;
    }
    /* It runs on the loop: it waits for another process's lock no longer than the loop's. */
    sqlite3_busy_timeout(store_db(g->st), STORE_BUSY_MS);
    store_set_writer_lock(g->st, workers_writer_lock(d));
    store_keep_held(g->st, true);
    store_group_enable(g->st, true);
    store_set_before_begin(d->store, before_begin, g);
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
    free(g);
    d->gc = NULL;
}

struct store *gcommit_store(struct tallyd *d)
{
    if (!d->gc || d->stopping)
        return NULL;
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
    return d->gc ? d->gc->nheld : 0;
}
