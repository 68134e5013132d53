/* sync, outbox.retry, outbox.discard */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "outbox.h"
#include "store.h"
#include "server.h"
#include "sync.h"

int cmd_sync(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    const char *f = NULL;
    size_t n = 0;
    int r = mp_param_id(&p, "stream", false, &f, &n, NULL);
    if (r)
        return rpc_fail(c, r, "%s", p.err);
    int k = sync_request(c->d->sync, f, n);
    if (k == 0)
        return rpc_fail(c, TALLY_E_NOT_FOUND,
                        f ? "no stream matches '%.*s' (see tally status)"
                          : "no upstream is configured%.*s",
                        (int)n, f ? f : "");
    msgpack_pack_map(c->pk, 1);
    mp_pack_kv_int(c->pk, "streams", k);
    return 0;
}

/* Reads the `id` of an outbox row and its current state. */
static int outbox_row(struct rpc_call *c, struct mp_params *p, int64_t *id, char *state, char *kind,
                      char *key)
{
    int r = mp_param_int(p, "id", true, 1, INT64_MAX, id, NULL);
    if (r)
        return rpc_fail(c, r, "%s", p->err);
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT state, kind, key FROM outbox WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, *id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        snprintf(state, 16, "%s", (const char *)sqlite3_column_text(s, 0));
        snprintf(kind, 16, "%s", (const char *)sqlite3_column_text(s, 1));
        snprintf(key, 160, "%s", (const char *)sqlite3_column_text(s, 2));
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return rpc_fail(c, TALLY_E_NOT_FOUND, "no outbox row %lld", (long long)*id);
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "outbox");
}

int cmd_outbox_retry(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    int64_t id;
    char state[16], kind[16], key[160];
    int r = outbox_row(c, &p, &id, state, kind, key);
    if (r)
        return r;
    if (strcmp(state, "held") && strcmp(state, "pending"))
        return rpc_fail(c, TALLY_E_CONFLICT,
                        "outbox row %lld is %s; only held or pending rows "
                        "can be retried",
                        (long long)id, state);
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "UPDATE outbox SET state = 'pending', next_attempt_at = ?2"
                                     " WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, store_now());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbox retry");
    msgpack_pack_map(c->pk, 2);
    mp_pack_kv_int(c->pk, "id", id);
    mp_pack_kv_str(c->pk, "state", "pending");
    return 0;
}

int cmd_outbox_discard(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    int64_t id;
    char state[16], kind[16], key[160];
    const char *reason;
    size_t rn;
    int r = outbox_row(c, &p, &id, state, kind, key);
    if (r)
        return r;
    if ((r = mp_param_str(&p, "reason", true, TALLY_MAX_TEXT_LEN, &reason, &rn, NULL)) != 0)
        return rpc_fail(c, r, "%s", p.err);
    struct store *st = c->d->store;
    if ((r = store_begin(st)) != 0)
        return r;
    /* Only a row that cannot have taken effect upstream is given up (outbox.h). */
    char refusal[256];
    if ((r = outbox_may_discard(st, id, refusal, sizeof refusal)) != 0) {
        store_rollback(st);
        return r == TALLY_E_STORAGE ? r : rpc_fail(c, r, "%s", refusal);
    }
    sqlite3_stmt *s = store_stmt(st, "UPDATE outbox SET state = 'discarded', done_at = ?2,"
                                     " last_error = 'discarded: ' || ?3 WHERE id = ?1"
                                     " AND (state = 'held' OR (state = 'pending'"
                                     " AND sent_at IS NULL))");
    if (!s) {
        store_rollback(st);
        return TALLY_E_STORAGE;
    }
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, store_now());
    sqlite3_bind_text(s, 3, reason, (int)rn, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    r = rc == SQLITE_DONE ? 0 : store_error(st, rc, "outbox discard");
    /* What giving it up does (a movement leaves the local view, the exception its refusal
     * raised is settled...): its kind's rules, outbox.c. */
    if (r == 0) {
        char who[128], why[TALLY_MAX_TEXT_LEN + 1], entity[TALLY_MAX_ID_LEN * 2 + 1] = "";
        sqlite3_stmt *q = store_stmt(st, "SELECT entity FROM outbox WHERE id = ?1");
        if (q) {
            sqlite3_bind_int64(q, 1, id);
            if (sqlite3_step(q) == SQLITE_ROW)
                snprintf(entity, sizeof entity, "%s", (const char *)sqlite3_column_text(q, 0));
            sqlite3_reset(q);
        }
        cmd_caller_name(c, who, sizeof who);
        snprintf(why, sizeof why, "%.*s", (int)rn, reason);
        r = outbox_discarded(c->d, outbox_kind_parse(kind), key, entity, who, why);
    }
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    if (r)
        return r;
    msgpack_pack_map(c->pk, 2);
    mp_pack_kv_int(c->pk, "id", id);
    mp_pack_kv_str(c->pk, "state", "discarded");
    return 0;
}

int cmd_watch(struct rpc_call *c)
{
    if (!c->conn)
        return rpc_fail(c, TALLY_E_BAD_REQUEST, "watch needs a connection");
    server_conn_watch(c->conn, true);
    msgpack_pack_map(c->pk, 2);
    mp_pack_kv_bool(c->pk, "watching", true);
    mp_pack_key(c->pk, "events");
    msgpack_pack_array(c->pk, 4);
    mp_pack_strz(c->pk, "sync");
    mp_pack_strz(c->pk, "low_stock");
    mp_pack_strz(c->pk, "order");
    mp_pack_strz(c->pk, "exception");
    return 0;
}
