#include "rpc.h"

#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "cmd.h"
#include "gcommit.h"
#include "log.h"
#include "server.h"
#include "store.h"
#include "worker.h"
#include "wire.h"
#include "tally/protocol.h"

/* The method table is data: adding a method is one line here and one handler in cmd_*.c. */
static const struct rpc_method methods[] = {
    {"hello", cmd_hello, false},
    {"status", cmd_status, false},
    {"catalog.get", cmd_catalog_get, false},
    {"catalog.search", cmd_catalog_search, false},
    {"stock.get", cmd_stock_get, false},
    {"stock.list", cmd_stock_list, false},
    {"stock.move", cmd_stock_move, true},
    {"orders.list", cmd_orders_list, false},
    {"orders.get", cmd_orders_get, false},
    {"outbox.list", cmd_outbox_list, false},
    {"import", cmd_import, true},
    {"sync", cmd_sync, true},
    {"watch", cmd_watch, false},
    {"outbox.retry", cmd_outbox_retry, true},
    {"outbox.discard", cmd_outbox_discard, true},
    {"orders.allocate", cmd_orders_allocate, true},
    {"orders.ship", cmd_orders_ship, true},
    {"exceptions.list", cmd_exceptions_list, false},
    {"exceptions.ack", cmd_exceptions_ack, true},
    {"exceptions.resolve", cmd_exceptions_resolve, true},
    {"stock.set", cmd_stock_set, true},
    {"returns.receive", cmd_returns_receive, true},
    {"returns.inspect", cmd_returns_inspect, true},
    {"returns.list", cmd_returns_list, false},
    {"promo.check", cmd_promo_check, false},
    {"report", cmd_report, false},
    {"privacy.purge", cmd_privacy_purge, true},
    {"inbound.create", cmd_inbound_create, true},
    {"inbound.list", cmd_inbound_list, false},
    {"carriers.list", cmd_carriers_list, false},
};

/* Bulk writes (an import, a purge) run one large transaction of their own on the loop's
 * connection, not a savepoint in the turn's group commit (gcommit.h): that savepoint's undo
 * log would hold every page they change, in memory, and they gain nothing from sharing an
 * fsync. */
static bool is_bulk(const struct rpc_method *m)
{
    return m->fn == cmd_import || m->fn == cmd_privacy_purge;
}

const struct rpc_method *rpc_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strlen(methods[i].name) == len && memcmp(methods[i].name, name, len) == 0)
            return &methods[i];
    return NULL;
}

bool rpc_must_wait(struct tallyd *d, void *conn, const msgpack_object *msg)
{
    if (!conn || !gcommit_active(d))
        return false;
    if (msg->type != MSGPACK_OBJECT_ARRAY || msg->via.array.size != 4 ||
        msg->via.array.ptr[2].type != MSGPACK_OBJECT_STR)
        return false; /* rpc_handle answers it (an error) */
    const msgpack_object *a = msg->via.array.ptr;
    const struct rpc_method *m = rpc_find(a[2].via.str.ptr, a[2].via.str.size);
    if (!m)
        return false;
    /* A write waits while the group's connection commits on its thread (the writer lock is
     * the group's until then); a read after this connection's own write waits for that
     * write's answer (its sync), so that answers keep the connection's order and the read sees
     * it; so does a bulk write (its own transaction may be durable before that sync). */
    if (m->write && !is_bulk(m))
        return gcommit_committing(d);
    return (m->write && gcommit_committing(d)) || server_conn_owed(conn) > 0;
}

bool rpc_passes_hold(const msgpack_object *msg)
{
    if (msg->type != MSGPACK_OBJECT_ARRAY || msg->via.array.size != 4 ||
        msg->via.array.ptr[2].type != MSGPACK_OBJECT_STR)
        return false;
    const msgpack_object *m = &msg->via.array.ptr[2];
    return m->via.str.size == 6 && memcmp(m->via.str.ptr, "import", 6) == 0;
}

const struct rpc_method *rpc_method_at(size_t i)
{
    return i < sizeof methods / sizeof methods[0] ? &methods[i] : NULL;
}

const char *rpc_role_name(int role)
{
    return role == TALLY_ROLE_WRITER ? "writer" : "reader";
}

int rpc_fail(struct rpc_call *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

int rpc_pack_result_head(msgpack_packer *pk, uint32_t msgid)
{
    return msgpack_pack_array(pk, 4) || msgpack_pack_int(pk, TALLY_MSG_RESPONSE) ||
           msgpack_pack_uint32(pk, msgid) || msgpack_pack_nil(pk);
}

void rpc_pack_error(msgpack_packer *pk, uint32_t msgid, int code, const char *message)
{
    rpc_pack_error_id(pk, msgid, code, message, NULL);
}

void rpc_pack_error_id(msgpack_packer *pk, uint32_t msgid, int code, const char *message,
                       const char *id)
{
    bool with_id = id && *id;
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, TALLY_MSG_RESPONSE);
    msgpack_pack_uint32(pk, msgid);
    msgpack_pack_map(pk, with_id ? 3 : 2);
    mp_pack_kv_str(pk, "code", tally_strerror_code(code));
    mp_pack_kv_str(pk, "message", message && *message ? message : tally_strerror(code));
    if (with_id)
        mp_pack_kv_str(pk, "id", id);
    msgpack_pack_nil(pk);
}

void cmd_caller_name(struct rpc_call *c, char *buf, size_t cap)
{
    uid_t uid = server_conn_uid(c->conn);
    struct passwd pw, *res = NULL;
    char tmp[1024];
    if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) == 0 && res && res->pw_name[0])
        snprintf(buf, cap, "%s", res->pw_name);
    else
        snprintf(buf, cap, "uid %u", (unsigned)uid);
}

int cmd_param_copy(struct mp_params *p, const char *key, bool id, bool required, char *dst,
                   size_t cap)
{
    const char *s;
    size_t n;
    bool have = false;
    int r = id ? mp_param_id(p, key, required, &s, &n, &have)
               : mp_param_str(p, key, required, cap - 1, &s, &n, &have);
    if (r || !have)
        return r;
    memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

void cmd_pack_col_text(msgpack_packer *pk, const char *key, sqlite3_stmt *s, int col)
{
    mp_pack_kv_str(pk, key, (const char *)sqlite3_column_text(s, col));
}

void cmd_pack_col_int(msgpack_packer *pk, const char *key, sqlite3_stmt *s, int col)
{
    mp_pack_key(pk, key);
    if (sqlite3_column_type(s, col) == SQLITE_NULL)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_int64(pk, sqlite3_column_int64(s, col));
}

int cmd_page_params(struct rpc_call *c, struct mp_params *p, struct page_req *pg)
{
    bool have;
    pg->limit = TALLY_DEFAULT_PAGE;
    pg->cursor = NULL;
    pg->cursor_len = 0;
    int r = mp_param_int(p, "limit", false, 1, TALLY_MAX_PAGE, &pg->limit, NULL);
    if (r == 0)
        r = mp_param_str(p, "cursor", false, 256, &pg->cursor, &pg->cursor_len, &have);
    if (r)
        return rpc_fail(c, r, "%s", p->err);
    return 0;
}

/* Where responses are built (see rpc_handle); reused, since the daemon handles one request
 * at a time. A buffer grown past SCRATCH_KEEP by a large answer is not kept. */
static msgpack_sbuffer scratch;
#define SCRATCH_KEEP (1024 * 1024)

/*
 * The packer's write for responses: msgpack_sbuffer_write's contract (grow, then append), with
 * the short appends that make most of a response (a type byte, a key, an integer: a few bytes
 * each, a hundred per stock.get) copied in line instead of through a call to memcpy, and a
 * first allocation big enough for the usual answer, so a reused buffer never grows again.
 */
static int res_write(void *data, const char *buf, size_t len)
{
    msgpack_sbuffer *sb = data;
    if (sb->alloc - sb->size < len) {
        size_t cap = sb->alloc ? sb->alloc : 4096;
        while (cap - sb->size < len) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        char *p = realloc(sb->data, cap);
        if (!p)
            return -1;
        sb->data = p;
        sb->alloc = cap;
    }
    char *dst = sb->data + sb->size;
    /* Two overlapping copies of a fixed size cover any length in [n, 2n]: each is a single
     * load and store, no call. */
    if (len >= 8 && len <= 16) {
        memcpy(dst, buf, 8);
        memcpy(dst + len - 8, buf + len - 8, 8);
    } else if (len >= 4 && len < 8) {
        memcpy(dst, buf, 4);
        memcpy(dst + len - 4, buf + len - 4, 4);
    } else if (len >= 2 && len < 4) {
        memcpy(dst, buf, 2);
        memcpy(dst + len - 2, buf + len - 2, 2);
    } else if (len == 1) {
        dst[0] = buf[0];
    } else if (len > 16) {
        memcpy(dst, buf, len);
    }
    sb->size += len;
    return 0;
}

size_t rpc_fast_answer(struct tallyd *d, const unsigned char *p, size_t n, msgpack_sbuffer *out)
{
    /* the method, then params: an array of one map of one key */
    static const unsigned char mid[] = "\xa9stock.get\x91\x81\xa3sku";
    const size_t mid_len = sizeof mid - 1;
    if (d->stopping || n < 3 || p[0] != 0x94 || p[1] != TALLY_MSG_REQUEST)
        return 0;
    size_t i = 2;
    uint32_t msgid;
    switch (p[i]) {
    case 0xcc:
        if (n - i < 2)
            return 0;
        msgid = p[i + 1];
        i += 2;
        break;
    case 0xcd:
        if (n - i < 3)
            return 0;
        msgid = (uint32_t)p[i + 1] << 8 | p[i + 2];
        i += 3;
        break;
    case 0xce:
        if (n - i < 5)
            return 0;
        msgid = (uint32_t)p[i + 1] << 24 | (uint32_t)p[i + 2] << 16 | (uint32_t)p[i + 3] << 8 |
                p[i + 4];
        i += 5;
        break;
    default:
        if (p[i] > 0x7f)
            return 0;
        msgid = p[i++];
    }
    if (n - i < mid_len + 1 || memcmp(p + i, mid, mid_len) != 0)
        return 0;
    i += mid_len;
    size_t len;
    if ((p[i] & 0xe0) == 0xa0) {
        len = p[i] & 0x1f;
        i++;
    } else if (p[i] == 0xd9 && n - i >= 2) {
        len = p[i + 1];
        i += 2;
    } else
        return 0;
    if (len > n - i)
        return 0;
    size_t kept_len;
    const void *kept = cmd_stock_get_kept(d, (const char *)p + i, len, &kept_len);
    if (!kept)
        return 0;
    i += len;
    size_t was = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    if (rpc_pack_result_head(&pk, msgid) || msgpack_sbuffer_write(out, kept, kept_len)) {
        out->size = was; /* out of memory: the general path says so */
        return 0;
    }
    return i;
}

int rpc_handle(struct tallyd *d, int role, void *conn, const msgpack_object *msg,
               msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);

    if (msg->type != MSGPACK_OBJECT_ARRAY || msg->via.array.size == 0 ||
        msg->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        msg->via.array.ptr[0].via.u64 != TALLY_MSG_REQUEST) {
        rpc_pack_error(&pk, 0, TALLY_E_BAD_REQUEST,
                       "expected a request [0, msgid, method, [params]]");
        return TALLY_E_BAD_REQUEST;
    }
    const msgpack_object *a = msg->via.array.ptr;
    uint32_t msgid = 0;
    if (msg->via.array.size != 4) {
        rpc_pack_error(&pk, 0, TALLY_E_BAD_REQUEST, "a request is an array of 4 elements");
        return 0;
    }
    if (a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[1].via.u64 > UINT32_MAX) {
        rpc_pack_error(&pk, 0, TALLY_E_BAD_REQUEST, "msgid must be an integer 0..4294967295");
        return 0;
    }
    msgid = (uint32_t)a[1].via.u64;
    if (a[2].type != MSGPACK_OBJECT_STR) {
        rpc_pack_error(&pk, msgid, TALLY_E_BAD_REQUEST, "method must be a string");
        return 0;
    }
    const msgpack_object *params = NULL;
    if (a[3].type != MSGPACK_OBJECT_ARRAY || a[3].via.array.size > 1 ||
        (a[3].via.array.size == 1 && a[3].via.array.ptr[0].type != MSGPACK_OBJECT_MAP &&
         a[3].via.array.ptr[0].type != MSGPACK_OBJECT_NIL)) {
        rpc_pack_error(&pk, msgid, TALLY_E_BAD_REQUEST, "params must be an array of one map");
        return 0;
    }
    if (a[3].via.array.size == 1 && a[3].via.array.ptr[0].type == MSGPACK_OBJECT_MAP)
        params = &a[3].via.array.ptr[0];

    const struct rpc_method *m = rpc_find(a[2].via.str.ptr, a[2].via.str.size);
    if (!m) {
        char text[128];
        int n = a[2].via.str.size > 64 ? 64 : (int)a[2].via.str.size;
        snprintf(text, sizeof text, "unknown method '%.*s'", n, a[2].via.str.ptr);
        if (!mp_text_ok(a[2].via.str.ptr, (size_t)n))
            snprintf(text, sizeof text, "unknown method");
        rpc_pack_error(&pk, msgid, TALLY_E_UNKNOWN_METHOD, text);
        return 0;
    }
    if (m->write && role != TALLY_ROLE_WRITER) {
        char text[160];
        snprintf(text, sizeof text,
                 "%s changes the replica; only root and members of the writer group may call it",
                 m->name);
        rpc_pack_error(&pk, msgid, TALLY_E_FORBIDDEN, text);
        return 0;
    }
    if (d->stopping) {
        rpc_pack_error(&pk, msgid, TALLY_E_SHUTTING_DOWN, NULL);
        return 0;
    }

    /* The response is built in a buffer of its own and appended whole: nothing written to
     * `out` meanwhile (a notification the handler raised, a flush) can land inside it or
     * move it, and a failed handler's partial result is dropped by emptying the buffer. */
    msgpack_sbuffer *res = &scratch;
    res->size = 0;
    msgpack_packer rpk;
    msgpack_packer_init(&rpk, res, res_write);
    rpc_pack_result_head(&rpk, msgid);
    struct rpc_call call = {
        .d = d, .params = params, .pk = &rpk, .role = role, .conn = conn, .msgid = msgid};
    /* Group commit (gcommit.h): a write called on a connection writes in this turn's shared
     * transaction and its answer waits for that commit (a bulk one begins its own, which
     * commits the group first: store_set_before_begin). A read from a connection still owed
     * such an answer commits the group first, so it sees that connection's own writes. */
    struct store *group = m->write && !is_bulk(m) && conn ? gcommit_store(d) : NULL,
                 *loop_store = d->store;
    if (!m->write && conn && server_conn_owed(conn))
        gcommit_flush(d);
    if (group)
        d->store = group;
    int r = m->fn(&call);
    if (group) {
        d->store = loop_store;
        r = gcommit_after_call(d, r, call.err, sizeof call.err);
    }
    if (r == RPC_DEFERRED) {
        res->size = 0; /* answered later, by the handler (server_send) */
        return 0;
    }
    /* A handler that packed a map or array count different from what it then wrote would
     * leave the client waiting for bytes that never come; check the response is exactly one
     * complete object (a linear scan, cheap next to the handler's own work). */
    if (r == 0 && !call.exact &&
        wire_frame_scan((const unsigned char *)res->data, res->size, SIZE_MAX, TALLY_MAX_DEPTH) !=
            (ssize_t)res->size) {
        snprintf(call.err, sizeof call.err, "%s produced a malformed result", m->name);
        r = TALLY_E_INTERNAL;
    }
    int held = 0;
    if (r == 0 && group) {
        held = gcommit_hold(d, conn, res->data, res->size);
        if (held < 0) {
            r = held;
            snprintf(call.err, sizeof call.err,
                     "the replica could not record the change; nothing changed");
        }
    }
    if (held > 0) {
        /* sent once the group's commit returned */
    } else if (r == 0 && out->size == 0) {
        /* The usual case (one answer per read): hand the buffer over instead of copying it;
         * the scratch takes the empty one. */
        msgpack_sbuffer t = *out;
        *out = *res;
        *res = t;
    } else if (r == 0) {
        msgpack_sbuffer_write(out, res->data, res->size);
    }
    res->size = 0;
    if (res->alloc > SCRATCH_KEEP) {
        msgpack_sbuffer_destroy(res);
        msgpack_sbuffer_init(res);
    }
    if (r != 0) {
        if (r == TALLY_E_INTERNAL || r == TALLY_E_STORAGE)
            log_error("%s failed: %s", m->name, call.err[0] ? call.err : tally_strerror(r));
        rpc_pack_error(&pk, msgid, r, call.err);
    }
    return 0;
}

/* ---- deferred reads ---- */

struct read_job {
    struct worker_job job; /* first: done gets it back */
    struct tallyd *d;
    uint64_t conn;
    uint32_t msgid;
    rpc_read_fn pack;
    msgpack_sbuffer out; /* the whole response, packed on the worker */
    char err[256];
    bool detached; /* answered by rpc_defer_stop: done only frees it */
    struct read_job *prev, *next;
    size_t arg_len;
    unsigned char arg[]; /* the caller's arguments, copied */
};

static struct read_job *reads_pending; /* the loop's only */

static void read_unlink(struct read_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else if (reads_pending == j)
        reads_pending = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
}

static int read_run(struct worker_job *job, struct store *st)
{
    struct read_job *j = (struct read_job *)job;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->out, msgpack_sbuffer_write);
    rpc_pack_result_head(&pk, j->msgid);
    sqlite3 *db = store_db(st);
    int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return store_error(st, rc, "deferred read");
    int r = j->pack(st, &pk, j->arg, j->err, sizeof j->err);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL); /* a read: nothing to keep or lose */
    if (r == 0 && wire_frame_scan((const unsigned char *)j->out.data, j->out.size, SIZE_MAX,
                                  TALLY_MAX_DEPTH) != (ssize_t)j->out.size) {
        snprintf(j->err, sizeof j->err, "a deferred read produced a malformed result");
        r = TALLY_E_INTERNAL;
    }
    return r;
}

/* Sends an error response to the job's caller (dropped when its connection is gone). */
static void read_send_error(struct read_job *j, int code, const char *message)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    rpc_pack_error(&pk, j->msgid, code, message);
    server_send_deferred(j->d->server, j->conn, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

#define STOPPING_MESSAGE "tallyd is stopping; the read was not made"

static void read_done(struct worker_job *job, int status)
{
    struct read_job *j = (struct read_job *)job;
    if (!j->detached) {
        read_unlink(j);
        if (status == 0) {
            server_send_deferred(j->d->server, j->conn, j->out.data, j->out.size);
        } else {
            if (status == TALLY_E_INTERNAL || status == TALLY_E_STORAGE)
                log_error("deferred read failed: %s", j->err[0] ? j->err : tally_strerror(status));
            read_send_error(j, status, status == TALLY_E_SHUTTING_DOWN ? STOPPING_MESSAGE : j->err);
        }
    }
    msgpack_sbuffer_destroy(&j->out);
    free(j);
}

void rpc_defer_stop(struct tallyd *d)
{
    struct read_job *j = reads_pending, *next;
    for (; j; j = next) {
        next = j->next;
        if (j->d != d)
            continue;
        read_unlink(j);
        j->detached = true;
        read_send_error(j, TALLY_E_SHUTTING_DOWN, STOPPING_MESSAGE);
    }
}

int rpc_defer_read(struct rpc_call *c, rpc_read_fn pack, const void *arg, size_t arg_len)
{
    if (!c->conn || !c->d->server || !c->d->workers)
        return pack(c->d->store, c->pk, arg, c->err, sizeof c->err);
    struct read_job *j = calloc(1, sizeof *j + arg_len);
    if (!j)
        return rpc_fail(c, TALLY_E_NOMEM, "out of memory");
    j->job.run = read_run;
    j->job.done = read_done;
    j->d = c->d;
    j->conn = server_conn_id(c->conn);
    j->msgid = c->msgid;
    j->pack = pack;
    j->arg_len = arg_len;
    memcpy(j->arg, arg, arg_len);
    msgpack_sbuffer_init(&j->out);
    server_conn_defer(c->conn); /* its connection waits for this answer at EOF */
    int r = worker_read(c->d, &j->job);
    if (r != 0) {
        server_send_deferred(c->d->server, j->conn, NULL, 0); /* none to come: answered now */
        free(j);
        return rpc_fail(c, r, "%s", tally_strerror(r));
    }
    j->next = reads_pending;
    if (reads_pending)
        reads_pending->prev = j;
    reads_pending = j;
    return RPC_DEFERRED;
}
