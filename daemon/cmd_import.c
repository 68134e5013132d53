/* import */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "enums.h"
#include "importer.h"
#include "server.h"
#include "stock.h"
#include "worker.h"

/*
 * An import call runs as a write job (worker.h): its one transaction is applied on the
 * writer's connection, off the loop, so reads are answered meanwhile (WAL) and a write on
 * the loop waits at most for that one call; the caller is answered once it is durable. The
 * rows are copied (packed) into the job: the request's buffer is the connection's. The
 * caller's connection waits (server_hold) so its next requests are handled after the import,
 * as before; other connections are answered meanwhile.
 */
struct import_job {
    struct worker_job job; /* first: the job is the import_job */
    struct tallyd *d;
    struct server *srv; /* server_hold'ed: it lives until server_send_resume, even stopping */
    uint64_t conn;
    uint32_t msgid;
    int kind;
    msgpack_sbuffer rows; /* the `rows` array, packed */
    struct import_result res;
    char err[256];
};

static int import_run(struct worker_job *job, struct store *st)
{
    struct import_job *ij = (struct import_job *)job;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int r;
    if (msgpack_unpack_next(&u, ij->rows.data, ij->rows.size, NULL) != MSGPACK_UNPACK_SUCCESS) {
        snprintf(ij->err, sizeof ij->err, "the rows could not be read back");
        r = TALLY_E_INTERNAL;
    } else {
        r = import_rows(st, ij->kind, &u.data, &ij->res, ij->err, sizeof ij->err);
    }
    msgpack_unpacked_destroy(&u);
    return r;
}

static void import_done(struct worker_job *job, int status)
{
    struct import_job *ij = (struct import_job *)job;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (status) {
        if (status == TALLY_E_SHUTTING_DOWN && !ij->err[0])
            snprintf(ij->err, sizeof ij->err,
                     "tallyd is stopping; nothing of this call was written");
        else if (!ij->err[0])
            snprintf(ij->err, sizeof ij->err, "%s", tally_strerror(status));
        rpc_pack_error(&pk, ij->msgid, status, ij->err);
    } else {
        msgpack_pack_array(&pk, 4);
        msgpack_pack_int(&pk, TALLY_MSG_RESPONSE);
        msgpack_pack_uint32(&pk, ij->msgid);
        msgpack_pack_nil(&pk);
        msgpack_pack_map(&pk, 4);
        mp_pack_kv_str(&pk, "kind", import_kind_name(ij->kind));
        mp_pack_kv_int(&pk, "rows", ij->res.rows);
        mp_pack_kv_int(&pk, "inserted", ij->res.inserted);
        mp_pack_kv_int(&pk, "updated", ij->res.updated);
    }
    /* Answered even when tallyd is stopping (done or shutting_down): the server waits for
     * it (server_hold), so the caller knows whether its rows were written. */
    if (ij->srv)
        server_send_resume(ij->srv, ij->conn, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&ij->rows);
    free(ij);
}

/* Hands the call to the writer; RPC_DEFERRED, or an error answered at once. */
static int import_deferred(struct rpc_call *c, int kind, const msgpack_object *rows)
{
    struct import_job *ij = calloc(1, sizeof *ij);
    if (!ij)
        return rpc_fail(c, TALLY_E_NOMEM, "out of memory");
    ij->job.run = import_run;
    ij->job.done = import_done;
    ij->d = c->d;
    ij->conn = server_conn_id(c->conn);
    ij->msgid = c->msgid;
    ij->kind = kind;
    msgpack_sbuffer_init(&ij->rows);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ij->rows, msgpack_sbuffer_write);
    if (msgpack_pack_object(&pk, *rows) != 0) {
        msgpack_sbuffer_destroy(&ij->rows);
        free(ij);
        return rpc_fail(c, TALLY_E_NOMEM, "out of memory");
    }
    ij->srv = c->conn ? c->d->server : NULL; /* held below: answered there, even stopping */
    int r = worker_write(c->d, &ij->job);
    if (r) {
        msgpack_sbuffer_destroy(&ij->rows);
        free(ij);
        return rpc_fail(c, r, "tallyd is stopping; nothing was written");
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
