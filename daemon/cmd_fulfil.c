/* orders.allocate, orders.ship, exceptions.list, exceptions.ack, exceptions.resolve */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "enums.h"
#include "fulfil.h"
#include "store.h"

int cmd_orders_allocate(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    char oid[TALLY_MAX_ID_LEN + 1] = "";
    bool rel = false;
    int r;
    if ((r = cmd_param_copy(&p, "order_id", true, true, oid, sizeof oid)) ||
        (r = mp_param_bool(&p, "release", false, &rel, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    char err[256] = "";
    struct fulfil_cancelling canc;
    if ((r = fulfil_allocate_now(c->d, oid, rel, &canc, err, sizeof err)) != 0)
        return rpc_fail(c, r, "%s", err[0] ? err : tally_strerror(r));
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT id, fstate, alloc_rule, alloc_why FROM orders"
                                     " WHERE order_id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, oid, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return TALLY_E_STORAGE;
    }
    int64_t ref = sqlite3_column_int64(s, 0);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 4);
    mp_pack_kv_str(pk, "order_id", oid);
    mp_pack_kv_str(pk, "fstate", (const char *)sqlite3_column_text(s, 1));
    mp_pack_key(pk, "cancelling");
    msgpack_pack_array(pk, (size_t)canc.n);
    for (int i = 0; i < canc.n; i++)
        mp_pack_strz(pk, canc.code[i]);
    mp_pack_key(pk, "allocation");
    char rule[32], why[600];
    snprintf(rule, sizeof rule, "%s",
             sqlite3_column_text(s, 2) ? (const char *)sqlite3_column_text(s, 2) : "");
    snprintf(why, sizeof why, "%s",
             sqlite3_column_text(s, 3) ? (const char *)sqlite3_column_text(s, 3) : "");
    sqlite3_reset(s);
    return cmd_pack_allocation(c, ref, rule, why);
}

int cmd_orders_ship(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct ship_req *req = calloc(1, sizeof *req);
    struct ship_result *res = calloc(1, sizeof *res);
    int r = (!req || !res) ? TALLY_E_NOMEM : 0;
    const char *trk = NULL;
    size_t tn = 0;
    if (r == 0 &&
        ((r = cmd_param_copy(&p, "order_id", true, true, req->order_id, sizeof req->order_id)) ||
         (r = cmd_param_copy(&p, "warehouse", true, true, req->warehouse, sizeof req->warehouse)) ||
         (r = cmd_param_copy(&p, "id", true, false, req->id, sizeof req->id)) ||
         (r = cmd_param_copy(&p, "carrier", false, true, req->carrier, sizeof req->carrier)) ||
         (r = mp_param_id(&p, "tracking_no", true, &trk, &tn, NULL))))
        r = rpc_fail(c, r, "%s", p.err);
    if (r == 0) {
        memcpy(req->tracking, trk, tn < sizeof req->tracking ? tn : sizeof req->tracking - 1);
        if (!req->carrier[0])
            r = rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'carrier' must not be empty");
    }
    const msgpack_object *lines = r == 0 && c->params ? mp_map_get(c->params, "lines") : NULL;
    if (r == 0 && lines && lines->type != MSGPACK_OBJECT_NIL) {
        if (lines->type != MSGPACK_OBJECT_ARRAY || lines->via.array.size == 0 ||
            lines->via.array.size > FULFIL_MAX_SHIP_LINES)
            r = rpc_fail(c, TALLY_E_INVALID_PARAMS,
                         "field 'lines' must be an array of 1-%d {sku, qty} maps",
                         FULFIL_MAX_SHIP_LINES);
        for (uint32_t i = 0; r == 0 && i < lines->via.array.size; i++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "line %u: ", i + 1);
            struct mp_params lp = {.map = &lines->via.array.ptr[i], .prefix = prefix};
            struct ship_line *l = &req->lines[req->nlines];
            if (lines->via.array.ptr[i].type != MSGPACK_OBJECT_MAP)
                r = rpc_fail(c, TALLY_E_INVALID_PARAMS, "%sa line is a map {sku, qty}", prefix);
            else if ((r = cmd_param_copy(&lp, "sku", true, true, l->sku, sizeof l->sku)) ||
                     (r = mp_param_int(&lp, "qty", true, 1, TALLY_MAX_QTY, &l->qty, NULL)))
                r = rpc_fail(c, r, "%s", lp.err);
            else
                req->nlines++;
        }
    }
    char err[256] = "";
    if (r == 0 && (r = fulfil_ship(c->d, req, res, err, sizeof err)) != 0)
        r = rpc_fail(c, r, "%s", err);
    if (r == 0) {
        msgpack_packer *pk = c->pk;
        msgpack_pack_map(pk, 6);
        mp_pack_kv_str(pk, "id", res->id);
        mp_pack_kv_str(pk, "order_id", req->order_id);
        mp_pack_kv_str(pk, "fstate", res->fstate);
        mp_pack_kv_str(pk, "send_type", res->send_type);
        mp_pack_kv_bool(pk, "duplicate", res->duplicate);
        mp_pack_key(pk, "lines");
        msgpack_pack_array(pk, (size_t)res->nlines);
        for (int i = 0; i < res->nlines; i++) {
            msgpack_pack_map(pk, 2);
            mp_pack_kv_str(pk, "sku", res->lines[i].sku);
            mp_pack_kv_int(pk, "qty", res->lines[i].qty);
        }
    }
    free(req);
    free(res);
    return r;
}

/* ---- exceptions ---- */

#define EXC_COLS                                                                                   \
    "e.id, e.kind, e.state, o.order_id, k.code, w.code, e.message, e.raised_at, e.deadline,"       \
    " e.acknowledged_by, e.resolved_by, e.resolved_at, e.note"
#define EXC_FROM                                                                                   \
    " FROM exceptions e LEFT JOIN orders o ON o.id = e.order_ref"                                  \
    " LEFT JOIN skus k ON k.id = e.sku LEFT JOIN warehouses w ON w.id = e.warehouse"

static void pack_exception(msgpack_packer *pk, sqlite3_stmt *s, int64_t now)
{
    msgpack_pack_map(pk, 14);
    mp_pack_kv_int(pk, "id", sqlite3_column_int64(s, 0));
    cmd_pack_col_text(pk, "kind", s, 1);
    cmd_pack_col_text(pk, "state", s, 2);
    cmd_pack_col_text(pk, "order_id", s, 3);
    cmd_pack_col_text(pk, "sku", s, 4);
    cmd_pack_col_text(pk, "warehouse", s, 5);
    cmd_pack_col_text(pk, "message", s, 6);
    mp_pack_kv_int(pk, "raised_at", sqlite3_column_int64(s, 7));
    mp_pack_kv_int(pk, "deadline", sqlite3_column_int64(s, 8));
    const char *state = (const char *)sqlite3_column_text(s, 2);
    mp_pack_kv_bool(pk, "overdue",
                    state && strcmp(state, "resolved") != 0 && sqlite3_column_int64(s, 8) < now);
    cmd_pack_col_text(pk, "acknowledged_by", s, 9);
    cmd_pack_col_text(pk, "resolved_by", s, 10);
    mp_pack_key(pk, "resolved_at");
    if (sqlite3_column_type(s, 11) == SQLITE_NULL)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_int64(pk, sqlite3_column_int64(s, 11));
    cmd_pack_col_text(pk, "note", s, 12);
}

/* Cursor: "<deadline> <id>" (active, open, acknowledged) or "<id>" (resolved, all). */
/*
 * exceptions.list's page, on any connection. It runs as a deferred read (rpc_defer_read): a
 * filter (kind, order, a state other than active or all) walks its index past every exception
 * it leaves out, and the counts beside every page read every exception not resolved; with many
 * exceptions (100k orders waiting for stock) either is more than the loop may spend.
 */
struct exc_list_args {
    int mode; /* the index in enum_exception_state (active 0, open 1, acknowledged 2,
               * resolved 3, all 4) */
    bool has_kind, has_oid;
    char kind[40], oid[TALLY_MAX_ID_LEN + 1];
    int64_t after_deadline, after_id, limit;
};

static int exc_list_pack(struct store *st, msgpack_packer *pk, const void *arg, char *err,
                         size_t errlen)
{
    const struct exc_list_args *a = arg;
    bool by_id = a->mode >= 3;
    /* Two orders, two statements, each walking its index (no sort of every exception). */
    sqlite3_stmt *s =
        by_id
            ? store_stmt(st, "SELECT " EXC_COLS EXC_FROM " WHERE (?1 = 4 OR e.state = 'resolved')"
                             " AND (?2 IS NULL OR e.kind = ?2) AND (?3 IS NULL OR o.order_id = ?3)"
                             " AND e.id > ?5 ORDER BY e.id LIMIT ?6")
            : store_stmt(st, "SELECT " EXC_COLS " FROM exceptions e INDEXED BY exceptions_active"
                             " LEFT JOIN orders o ON o.id = e.order_ref"
                             " LEFT JOIN skus k ON k.id = e.sku"
                             " LEFT JOIN warehouses w ON w.id = e.warehouse"
                             " WHERE e.state <> 'resolved' AND (?1 = 0"
                             "   OR (?1 = 1 AND e.state = 'open')"
                             "   OR (?1 = 2 AND e.state = 'acknowledged'))"
                             " AND (?2 IS NULL OR e.kind = ?2) AND (?3 IS NULL OR o.order_id = ?3)"
                             " AND (e.deadline, e.id) > (?4, ?5) ORDER BY e.deadline, e.id"
                             " LIMIT ?6");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int(s, 1, a->mode);
    if (a->has_kind)
        sqlite3_bind_text(s, 2, a->kind, -1, SQLITE_STATIC);
    if (a->has_oid)
        sqlite3_bind_text(s, 3, a->oid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, a->after_deadline);
    sqlite3_bind_int64(s, 5, a->after_id);
    sqlite3_bind_int64(s, 6, a->limit + 1);
    int64_t now = store_now();
    msgpack_pack_map(pk, 3);
    mp_pack_key(pk, "items");
    size_t arr = mp_array_begin(pk);
    uint32_t count = 0;
    bool more = false;
    char cur[64] = "";
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == a->limit) {
            more = true;
            break;
        }
        pack_exception(pk, s, now);
        if (by_id)
            snprintf(cur, sizeof cur, "%" PRId64, (int64_t)sqlite3_column_int64(s, 0));
        else
            snprintf(cur, sizeof cur, "%" PRId64 " %" PRId64, (int64_t)sqlite3_column_int64(s, 8),
                     (int64_t)sqlite3_column_int64(s, 0));
        count++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        snprintf(err, errlen, "the replica could not be read");
        return store_error(st, rc, "exceptions.list");
    }
    mp_array_end(pk, arr, count);
    mp_pack_key(pk, "next_cursor");
    if (more)
        mp_pack_strz(pk, cur);
    else
        msgpack_pack_nil(pk);
    s = store_stmt(st, "SELECT COUNT(*) FILTER (WHERE state = 'open'),"
                       " COUNT(*) FILTER (WHERE state = 'acknowledged'),"
                       " COUNT(*) FILTER (WHERE deadline < ?1)"
                       " FROM exceptions WHERE state <> 'resolved'");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, now);
    rc = sqlite3_step(s);
    mp_pack_key(pk, "counts");
    msgpack_pack_map(pk, 3);
    mp_pack_kv_int(pk, "open", rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0);
    mp_pack_kv_int(pk, "acknowledged", rc == SQLITE_ROW ? sqlite3_column_int64(s, 1) : 0);
    mp_pack_kv_int(pk, "overdue", rc == SQLITE_ROW ? sqlite3_column_int64(s, 2) : 0);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    snprintf(err, errlen, "the replica could not be read");
    return store_error(st, rc, "exception counts");
}

int cmd_exceptions_list(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct page_req pg;
    const char *state, *kind, *oid = NULL;
    size_t sn, kn, on = 0;
    int mode, kind_idx;
    int r = cmd_page_params(c, &p, &pg);
    if (r)
        return r;
    /* mode: the index in enum_exception_state (active 0, open 1, acknowledged 2, resolved 3,
     * all 4); absent is active. */
    if ((r = cmd_param_enum(c, &p, "state", false, &enum_exception_state, &state, &sn, &mode)) ||
        (r = cmd_param_enum(c, &p, "kind", false, &enum_exception_kind, &kind, &kn, &kind_idx)))
        return r;
    if (mode < 0)
        mode = 0;
    if ((r = mp_param_id(&p, "order_id", false, &oid, &on, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    struct exc_list_args a = {.mode = mode, .after_deadline = INT64_MIN, .limit = pg.limit};
    if (kind) {
        if (kn >= sizeof a.kind)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'kind' is not known");
        memcpy(a.kind, kind, kn);
        a.has_kind = true;
    }
    if (oid) {
        if (on >= sizeof a.oid)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'order_id' is too long");
        memcpy(a.oid, oid, on);
        a.has_oid = true;
    }
    if (pg.cursor) {
        char buf[64], *end;
        if (pg.cursor_len >= sizeof buf)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
        memcpy(buf, pg.cursor, pg.cursor_len);
        buf[pg.cursor_len] = 0;
        if (mode >= 3) {
            a.after_id = strtoll(buf, &end, 10);
        } else {
            a.after_deadline = strtoll(buf, &end, 10);
            if (*end == ' ')
                a.after_id = strtoll(end + 1, &end, 10);
            else
                end = buf; /* no separator: not ours */
        }
        if (*end || end == buf)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
    }
    return rpc_defer_read(c, exc_list_pack, &a, sizeof a);
}

/* Acknowledge (resolve false) or resolve one exception, then answer it. */
static int act(struct rpc_call *c, bool resolve)
{
    struct mp_params p = {.map = c->params};
    int64_t id;
    char note[TALLY_MAX_TEXT_LEN + 1] = "";
    int r;
    if ((r = mp_param_int(&p, "id", true, 1, INT64_MAX, &id, NULL)) ||
        (r = cmd_param_copy(&p, "note", false, resolve, note, sizeof note)))
        return rpc_fail(c, r, "%s", p.err);
    if (resolve && !note[0])
        return rpc_fail(c, TALLY_E_INVALID_PARAMS,
                        "field 'note' must say what was done (not empty)");
    char who[128];
    cmd_caller_name(c, who, sizeof who);
    struct store *st = c->d->store;
    if ((r = store_begin(st)) != 0)
        return r;
    sqlite3_stmt *s = store_stmt(st, "SELECT state FROM exceptions WHERE id = ?1");
    if (!s) {
        store_rollback(st);
        return TALLY_E_STORAGE;
    }
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    char state[16] = "";
    if (rc == SQLITE_ROW)
        snprintf(state, sizeof state, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) {
        store_rollback(st);
        return rc == SQLITE_DONE ? rpc_fail(c, TALLY_E_NOT_FOUND, "no exception %" PRId64, id)
                                 : store_error(st, rc, "exception");
    }
    if (!strcmp(state, "resolved")) {
        store_rollback(st);
        return rpc_fail(c, TALLY_E_CONFLICT, "exception %" PRId64 " is already resolved", id);
    }
    s = resolve ? store_stmt(st, "UPDATE exceptions SET state = 'resolved', resolved_by = ?2,"
                                 " resolved_at = ?3, note = ?4 WHERE id = ?1")
                : store_stmt(st, "UPDATE exceptions SET state = 'acknowledged',"
                                 " acknowledged_by = ?2, acknowledged_at = ?3,"
                                 " note = COALESCE(?4, note) WHERE id = ?1");
    if (!s) {
        store_rollback(st);
        return TALLY_E_STORAGE;
    }
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, who, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, store_now());
    if (note[0])
        sqlite3_bind_text(s, 4, note, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    /* The order may be free to move on now (an address a person vouched for): it is looked
     * at again, decided in the same transaction as the resolution. */
    sqlite3_stmt *dirty = store_stmt(st, "UPDATE orders SET fdirty = 1"
                                         " WHERE id = (SELECT order_ref FROM exceptions"
                                         " WHERE id = ?1)");
    if (rc == SQLITE_DONE && dirty) {
        sqlite3_bind_int64(dirty, 1, id);
        rc = sqlite3_step(dirty);
    } else if (!dirty) {
        rc = SQLITE_ERROR;
    }
    /* A bad address that is a refused read of a masked ship-to (orders.receipt 2): there is no
     * address to vouch for; resolving it has mp:receipts read it again (until then nothing is
     * sent; a second refusal raises it again). */
    sqlite3_stmt *reread =
        resolve
            ? store_stmt(st, "UPDATE orders SET receipt = 1, receipt_error = NULL"
                             " WHERE receipt = 2 AND purged_at IS NULL AND id = (SELECT"
                             " order_ref FROM exceptions WHERE id = ?1 AND kind = 'bad_address')")
            : NULL;
    if (rc == SQLITE_DONE && reread) {
        sqlite3_bind_int64(reread, 1, id);
        rc = sqlite3_step(reread);
        sqlite3_reset(reread);
    } else if (resolve && !reread) {
        rc = SQLITE_ERROR;
    }
    if (rc != SQLITE_DONE || (r = store_commit(st)) != 0) {
        store_rollback(st);
        return rc != SQLITE_DONE ? store_error(st, rc, "exception update") : r;
    }
    fulfil_kick(c->d);
    s = store_stmt(st, "SELECT " EXC_COLS EXC_FROM " WHERE e.id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        pack_exception(c->pk, s, store_now());
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "exception");
}

int cmd_exceptions_ack(struct rpc_call *c)
{
    return act(c, false);
}

int cmd_exceptions_resolve(struct rpc_call *c)
{
    return act(c, true);
}
