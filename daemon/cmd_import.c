/* import */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "enums.h"
#include "importer.h"
#include "server.h"
#include "stock.h"
#include "worker.h"

/*
 * An import call runs as a write job (worker.h): its rows are applied on the writer's
 * connection, off the loop, in one transaction of its own, so reads are answered meanwhile
 * (WAL) and a write on the loop waits at most for one call; the caller is answered once it is
 * durable. The rows are copied (packed) into the job: the request's buffer is the connection's.
 * The caller's connection waits (server_hold) so its next requests are handled after the
 * import, as before; its next imports are not kept waiting (pipelined: server.h), and other
 * connections are answered meanwhile.
 *
 * Calls that arrive while the writer is busy join the job queued and not yet started (up to
 * IMPORT_JOB_CALLS): it applies them in order, each in its own transaction as before, and they
 * share one fsync: every commit but the last is lazy (store.h "Lazy commits": written to the
 * WAL, not synced), the last is durable, and a durable commit makes every commit before it
 * durable. When the last call is refused (rolled back), a small durable write does it
 * (import_barrier). No call is answered before that. (Savepoints in one transaction would share
 * the commit's pages too, but a statement inside a savepoint pays for a statement journal:
 * perf showed more CPU than the fsyncs saved.)
 *
 * Catalog calls are applied set-based with the writer's triggers off (importer.h import_call);
 * the job turns them back on once its calls are done, before the barrier and before any other
 * job uses the connection (worker.c checks it too).
 */
#define IMPORT_JOB_CALLS 8

struct import_call {
    struct import_call *next;
    struct server *srv; /* server_hold'ed: it lives until server_send_resume, even stopping */
    uint64_t conn;
    uint32_t msgid;
    int kind;
    /* the `rows` array: in the request's own zone (server_take_request), or packed */
    msgpack_zone *zone;
    const msgpack_object *obj;
    msgpack_sbuffer rows;
    struct import_result res;
    int status;
    char err[256];
};

struct import_job {
    struct worker_job job; /* first: the job is the import_job */
    struct tallyd *d;
    pthread_mutex_t mu; /* started, and the list while it is not */
    bool started;
    struct import_call *head, **tail;
    int ncalls;
    atomic_bool stop;               /* tallyd stops: the calls not begun are not run */
    struct import_job *prev, *next; /* live jobs (loop only) */
};

/* The job queued and not yet started that later calls join, and every job not done yet
 * (loop only). */
static struct import_job *open_job, *live_jobs;

void cmd_import_stop(struct tallyd *d)
{
    for (struct import_job *ij = live_jobs; ij; ij = ij->next)
        if (ij->d == d)
            atomic_store(&ij->stop, true);
}

/* One call in a transaction of its own, lazy or durable: 0, or its error (nothing written).
 * A catalog call leaves the connection's triggers off (import_call): import_run turns them
 * back on. */
static int run_call(struct store *st, struct import_call *k, bool durable)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *rows = k->obj;
    int r = 0;
    if (!rows) {
        if (msgpack_unpack_next(&u, k->rows.data, k->rows.size, NULL) == MSGPACK_UNPACK_SUCCESS)
            rows = &u.data;
        else {
            snprintf(k->err, sizeof k->err, "the rows could not be read back");
            r = TALLY_E_INTERNAL;
        }
    }
    if (r == 0)
        r = import_call(st, k->kind, rows, durable ? STORE_DURABLE : STORE_LAZY, &k->res, k->err,
                        sizeof k->err);
    msgpack_unpacked_destroy(&u);
    return r;
}

/* A durable commit of a small write of its own: the lazy commits before it become durable. */
static int import_barrier(struct store *st)
{
    int r = store_begin(st);
    if (r)
        return r;
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO counters(name, n) VALUES('import_barriers', 1)"
                                     " ON CONFLICT(name) DO UPDATE SET n = n + 1");
    int rc = s ? sqlite3_step(s) : SQLITE_ERROR;
    if (s)
        sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        store_rollback(st);
        return s ? store_error(st, rc, "import barrier") : TALLY_E_STORAGE;
    }
    return store_commit(st);
}

static int import_run(struct worker_job *job, struct store *st)
{
    struct import_job *ij = (struct import_job *)job;
    pthread_mutex_lock(&ij->mu);
    ij->started = true; /* the list is fixed from here on */
    pthread_mutex_unlock(&ij->mu);
    bool unsynced = false; /* a lazy commit not yet followed by a durable one */
    for (struct import_call *k = ij->head; k; k = k->next) {
        if (k != ij->head && atomic_load(&ij->stop)) {
            /* tallyd stops: the calls not begun are answered at once, none written (its
             * server waits for those answers a short while only). */
            k->status = TALLY_E_SHUTTING_DOWN;
            snprintf(k->err, sizeof k->err, "tallyd is stopping; nothing of this call was written");
            continue;
        }
        /* durable when no later call will run (the next ones are skipped by a stop) */
        k->status = run_call(st, k, k->next == NULL || atomic_load(&ij->stop));
        if (k->status == 0)
            unsynced = k->next != NULL;
    }
    /* Before anything else is written on this connection (the barrier, the next job; worker.c
     * makes sure of it too). */
    store_set_triggers(st, true);
    if (unsynced) {
        int r = import_barrier(st);
        if (r) {
            /* Written, but not known durable: not answered as done (a re-run converges). */
            for (struct import_call *k = ij->head; k; k = k->next)
                if (k->status == 0) {
                    k->status = r;
                    snprintf(k->err, sizeof k->err,
                             "%s: the rows were written but could not be made durable",
                             tally_strerror(r));
                }
        }
    }
    return 0;
}

static void answer_call(struct import_call *k, int status)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (status == 0)
        status = k->status;
    if (status) {
        if (status == TALLY_E_SHUTTING_DOWN && !k->err[0])
            snprintf(k->err, sizeof k->err, "tallyd is stopping; nothing of this call was written");
        else if (!k->err[0])
            snprintf(k->err, sizeof k->err, "%s", tally_strerror(status));
        rpc_pack_error(&pk, k->msgid, status, k->err);
    } else {
        rpc_pack_result_head(&pk, k->msgid);
        msgpack_pack_map(&pk, 4);
        mp_pack_kv_str(&pk, "kind", import_kind_name(k->kind));
        mp_pack_kv_int(&pk, "rows", k->res.rows);
        mp_pack_kv_int(&pk, "inserted", k->res.inserted);
        mp_pack_kv_int(&pk, "updated", k->res.updated);
    }
    /* Answered even when tallyd is stopping (done or shutting_down): the server waits for
     * it (server_hold), so the caller knows whether its rows were written. */
    if (k->srv)
        server_send_resume(k->srv, k->conn, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void call_free(struct import_call *k)
{
    if (k->zone)
        msgpack_zone_free(k->zone);
    msgpack_sbuffer_destroy(&k->rows);
    free(k);
}

static void import_done(struct worker_job *job, int status)
{
    struct import_job *ij = (struct import_job *)job;
    if (open_job == ij)
        open_job = NULL;
    if (ij->prev)
        ij->prev->next = ij->next;
    else
        live_jobs = ij->next;
    if (ij->next)
        ij->next->prev = ij->prev;
    for (struct import_call *k = ij->head, *next; k; k = next) {
        next = k->next;
        answer_call(k, status);
        call_free(k);
    }
    pthread_mutex_destroy(&ij->mu);
    free(ij);
}

/* Joins the open job when it has not started: true when k is in it. */
static bool join_open(struct tallyd *d, struct import_call *k)
{
    struct import_job *ij = open_job;
    if (!ij || ij->d != d || ij->ncalls >= IMPORT_JOB_CALLS)
        return false;
    pthread_mutex_lock(&ij->mu);
    bool joined = !ij->started;
    if (joined) {
        *ij->tail = k;
        ij->tail = &k->next;
        ij->ncalls++;
    }
    pthread_mutex_unlock(&ij->mu);
    return joined;
}

/* Hands the call to the writer; RPC_DEFERRED, or an error answered at once. */
static int import_deferred(struct rpc_call *c, int kind, const msgpack_object *rows)
{
    struct import_call *k = calloc(1, sizeof *k);
    if (!k)
        return rpc_fail(c, TALLY_E_NOMEM, "out of memory");
    k->conn = server_conn_id(c->conn);
    k->msgid = c->msgid;
    k->kind = kind;
    msgpack_sbuffer_init(&k->rows);
    /* The rows stay where the request was decoded (no copy); packed only when its zone
     * cannot be taken. */
    k->zone = server_take_request(c->conn);
    if (k->zone) {
        k->obj = rows;
    } else {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &k->rows, msgpack_sbuffer_write);
        if (msgpack_pack_object(&pk, *rows) != 0) {
            msgpack_sbuffer_destroy(&k->rows);
            free(k);
            return rpc_fail(c, TALLY_E_NOMEM, "out of memory");
        }
    }
    k->srv = c->conn ? c->d->server : NULL; /* held below: answered there, even stopping */
    if (!join_open(c->d, k)) {
        struct import_job *ij = calloc(1, sizeof *ij);
        if (!ij || pthread_mutex_init(&ij->mu, NULL) != 0) {
            free(ij);
            call_free(k);
            return rpc_fail(c, TALLY_E_NOMEM, "out of memory");
        }
        ij->job.run = import_run;
        ij->job.done = import_done;
        ij->d = c->d;
        ij->head = k;
        ij->tail = &k->next;
        ij->ncalls = 1;
        int r = worker_write(c->d, &ij->job);
        if (r) {
            pthread_mutex_destroy(&ij->mu);
            free(ij);
            call_free(k);
            return rpc_fail(c, r, "tallyd is stopping; nothing was written");
        }
        open_job = ij;
        ij->next = live_jobs;
        if (live_jobs)
            live_jobs->prev = ij;
        live_jobs = ij;
    }
    /* This connection's next requests see what the import wrote, as if it had run inline. */
    server_hold(c->conn);
    return RPC_DEFERRED;
}

int cmd_import(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    const char *kind;
    size_t n;
    int idx;
    int r = cmd_param_enum(c, &p, "kind", true, &enum_import_kind, &kind, &n, &idx);
    if (r)
        return r;
    int k = import_kind_parse(kind, n);
    if (k < 0) /* enum_import_kind and the importer disagree */
        return rpc_fail(c, TALLY_E_INTERNAL, "import kind '%.*s' unknown to the importer", (int)n,
                        kind);
    const msgpack_object *rows = mp_map_get(c->params, "rows");
    if (!rows)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'rows' is required");
    /* Opening stock is a warehouse's figure: one that keeps its own stock reports it through
     * its feed alone (warehouse kinds), so such rows are refused before anything is written. */
    if (k == IMPORT_STOCK && rows->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < rows->via.array.size; i++) {
            const msgpack_object *row = &rows->via.array.ptr[i];
            const msgpack_object *w =
                row->type == MSGPACK_OBJECT_MAP ? mp_map_get(row, "warehouse") : NULL;
            if (!w || w->type != MSGPACK_OBJECT_STR || w->via.str.size > TALLY_MAX_ID_LEN)
                continue; /* the importer refuses it with its own message */
            char code[TALLY_MAX_ID_LEN + 1], why[sizeof c->err - 16];
            memcpy(code, w->via.str.ptr, w->via.str.size);
            code[w->via.str.size] = 0;
            if (stock_figures_allowed(&c->d->cfg, code, why, sizeof why) != 0)
                return rpc_fail(c, TALLY_E_INVALID_PARAMS, "row %u: %s", i + 1, why);
        }
    }
    /* Refused at once, without a job: what the importer would refuse before any row. */
    if (rows->type != MSGPACK_OBJECT_ARRAY || rows->via.array.size == 0 ||
        rows->via.array.size > TALLY_MAX_PAGE)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'rows' must be an array of 1-%d maps",
                        TALLY_MAX_PAGE);
    if (c->conn && c->d->loop && c->d->server && c->d->workers)
        return import_deferred(c, k, rows);
    struct import_result res;
    r = import_rows(c->d->store, k, rows, &res, c->err, sizeof c->err);
    if (r)
        return r;
    msgpack_pack_map(c->pk, 4);
    mp_pack_kv_str(c->pk, "kind", import_kind_name(k));
    mp_pack_kv_int(c->pk, "rows", res.rows);
    mp_pack_kv_int(c->pk, "inserted", res.inserted);
    mp_pack_kv_int(c->pk, "updated", res.updated);
    return 0;
}
