/* inbound.create, inbound.list: notices of goods coming in to a third-party warehouse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "coord.h"
#include "inbound.h"
#include "stock.h"
#include "store.h"

#define MAX_TIME 253402300799LL /* 9999-12-31T23:59:59Z */

/* Reads `lines`: an array of 1..INBOUND_MAX_LINES maps {sku, qty}. */
static int read_lines(struct rpc_call *c, struct inbound_req *rq)
{
    const msgpack_object *a = mp_map_get(c->params, "lines");
    if (!a || a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size < 1 ||
        a->via.array.size > INBOUND_MAX_LINES)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS,
                        "field 'lines' must be an array of 1 to %d maps {sku, qty}",
                        INBOUND_MAX_LINES);
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "line %u: ", i + 1);
        struct mp_params lp = {.map = &a->via.array.ptr[i], .prefix = prefix};
        if (lp.map->type != MSGPACK_OBJECT_MAP)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "line %u: must be a map {sku, qty}", i + 1);
        struct inbound_line *l = &rq->lines[i];
        int r = cmd_param_copy(&lp, "sku", true, true, l->sku, sizeof l->sku);
        if (r == 0)
            r = mp_param_int(&lp, "qty", true, 1, TALLY_MAX_QTY, &l->qty, NULL);
        if (r)
            return rpc_fail(c, r, "%s", lp.err);
    }
    rq->nlines = (int)a->via.array.size;
    return 0;
}

int cmd_inbound_create(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct inbound_req *rq = calloc(1, sizeof *rq);
    if (!rq)
        return TALLY_E_NOMEM;
    int r;
    if ((r = cmd_param_copy(&p, "id", true, false, rq->id, sizeof rq->id)) ||
        (r = cmd_param_copy(&p, "warehouse", true, true, rq->warehouse, sizeof rq->warehouse)) ||
        (r = mp_param_int(&p, "eta", false, 0, MAX_TIME, &rq->eta, NULL)) ||
        (r = cmd_param_copy(&p, "ref", false, false, rq->ref, sizeof rq->ref)) ||
        (r = cmd_param_copy(&p, "carrier", false, false, rq->carrier, sizeof rq->carrier)) ||
        (r = cmd_param_copy(&p, "tracking_no", false, false, rq->tracking_no,
                            sizeof rq->tracking_no)) ||
        (r = cmd_param_copy(&p, "note", false, false, rq->note, sizeof rq->note))) {
        r = rpc_fail(c, r, "%s", p.err);
        goto out;
    }
    if ((r = read_lines(c, rq)) != 0)
        goto out;
    if ((r = stock_inbound_allowed(&c->d->cfg, rq->warehouse, c->err, sizeof c->err)) != 0)
        goto out;
    cmd_caller_name(c, rq->created_by, sizeof rq->created_by);
    if (c->d->cfg.coordinator) /* a coordinator marks what it sends (coord.h) */
        snprintf(rq->station, sizeof rq->station, "%s", coord_mark(c->d));
    struct store *st = c->d->store;
    struct inbound_result res;
    if ((r = store_begin(st)) != 0)
        goto out;
    r = inbound_create_locked(st, rq, &res, c->err, sizeof c->err);
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    if (r)
        goto out;
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 6);
    mp_pack_kv_str(pk, "id", res.id);
    mp_pack_kv_str(pk, "warehouse", rq->warehouse);
    mp_pack_kv_bool(pk, "duplicate", res.duplicate);
    mp_pack_kv_str(pk, "state", res.state);
    mp_pack_kv_int(pk, "created_at", res.created_at);
    mp_pack_kv_int(pk, "outbox_id", res.outbox_id);
out:
    free(rq);
    return r;
}

/* The lines of notice `seq` as an array of {sku, qty}. */
static int pack_lines(struct rpc_call *c, int64_t seq)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT k.code, l.qty FROM inbound_lines l"
                                     " JOIN skus k ON k.id = l.sku WHERE l.notice = ?1"
                                     " ORDER BY l.line");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, seq);
    size_t arr = mp_array_begin(c->pk);
    uint32_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        msgpack_pack_map(c->pk, 2);
        cmd_pack_col_text(c->pk, "sku", s, 0);
        mp_pack_kv_int(c->pk, "qty", sqlite3_column_int64(s, 1));
        n++;
    }
    sqlite3_reset(s);
    mp_array_end(c->pk, arr, n);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "inbound lines");
}

int cmd_inbound_list(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct page_req pg;
    char wh[TALLY_MAX_ID_LEN + 1] = "";
    int r = cmd_page_params(c, &p, &pg);
    if (r)
        return r;
    if ((r = cmd_param_copy(&p, "warehouse", true, false, wh, sizeof wh)) != 0)
        return rpc_fail(c, r, "%s", p.err);
    int64_t after = 0;
    if (pg.cursor) {
        char buf[32], *end;
        if (pg.cursor_len >= sizeof buf)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
        memcpy(buf, pg.cursor, pg.cursor_len);
        buf[pg.cursor_len] = 0;
        after = strtoll(buf, &end, 10);
        if (*end || after < 0)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
    }
    struct store *st = c->d->store;
    int64_t whid = 0;
    if (wh[0]) {
        sqlite3_stmt *q = store_stmt(st, "SELECT id FROM warehouses WHERE code = ?1");
        if (!q)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(q, 1, wh, -1, SQLITE_STATIC);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW)
            whid = sqlite3_column_int64(q, 0);
        sqlite3_reset(q);
        if (rc == SQLITE_DONE)
            return rpc_fail(c, TALLY_E_NOT_FOUND, "no warehouse '%s'", wh);
        if (rc != SQLITE_ROW)
            return store_error(st, rc, "inbound.list");
    }
    /* One warehouse's page walks inbound_by_warehouse (warehouse, seq) from the cursor: at
     * most limit + 1 rows read, however many notices other warehouses have. */
#define INBOUND_COLS                                                                               \
    "SELECT n.seq, n.id, w.code, n.state, n.eta, n.ref, n.from_wh, n.carrier,"                     \
    " n.tracking_no, n.note, n.created_by, n.created_at, n.updated_at, o.id,"                      \
    " o.last_error, l.id, l.state"
#define INBOUND_JOINS                                                                              \
    " JOIN warehouses w ON w.id = n.warehouse"                                                     \
    " LEFT JOIN outbox o ON o.key = 'in:' || w.code || ':' || n.id"                                \
    " LEFT JOIN outbox l ON n.from_wh IS NOT NULL AND l.key = n.ref"                               \
    " AND l.target = 'wh:' || n.from_wh"
    sqlite3_stmt *s =
        whid ? store_stmt(st, INBOUND_COLS
                          " FROM inbound_notices n INDEXED BY inbound_by_warehouse" INBOUND_JOINS
                          " WHERE n.warehouse = ?2 AND n.seq > ?1"
                          " ORDER BY n.seq LIMIT ?3")
             : store_stmt(st, INBOUND_COLS " FROM inbound_notices n" INBOUND_JOINS
                                           " WHERE n.seq > ?1 ORDER BY n.seq LIMIT ?3");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, after);
    if (whid)
        sqlite3_bind_int64(s, 2, whid);
    sqlite3_bind_int64(s, 3, pg.limit + 1);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 2);
    mp_pack_key(pk, "items");
    size_t arr = mp_array_begin(pk);
    uint32_t count = 0;
    bool more = false;
    int64_t last = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == pg.limit) {
            more = true;
            break;
        }
        last = sqlite3_column_int64(s, 0);
        msgpack_pack_map(pk, 16);
        cmd_pack_col_text(pk, "id", s, 1);
        cmd_pack_col_text(pk, "warehouse", s, 2);
        cmd_pack_col_text(pk, "state", s, 3);
        mp_pack_key(pk, "lines");
        if ((r = pack_lines(c, last)) != 0) {
            sqlite3_reset(s);
            return r;
        }
        cmd_pack_col_int(pk, "eta", s, 4);
        cmd_pack_col_text(pk, "ref", s, 5);
        cmd_pack_col_text(pk, "from", s, 6);
        cmd_pack_col_text(pk, "carrier", s, 7);
        cmd_pack_col_text(pk, "tracking_no", s, 8);
        cmd_pack_col_text(pk, "note", s, 9);
        cmd_pack_col_text(pk, "created_by", s, 10);
        cmd_pack_col_int(pk, "created_at", s, 11);
        cmd_pack_col_int(pk, "updated_at", s, 12);
        cmd_pack_col_int(pk, "outbox_id", s, 13);
        cmd_pack_col_text(pk, "last_error", s, 14);
        /* a transfer's notice waits for the transfer's leg at its origin (outbox_waits) */
        const char *nstate = (const char *)sqlite3_column_text(s, 3);
        const char *lstate = (const char *)sqlite3_column_text(s, 16);
        mp_pack_key(pk, "waiting");
        if (nstate && !strcmp(nstate, "pending") && lstate && strcmp(lstate, "done") != 0) {
            char why[TALLY_MAX_REF_LEN + TALLY_MAX_ID_LEN + 96];
            snprintf(why, sizeof why, "for transfer %s to leave %s (its outbox row %lld is %s)",
                     (const char *)sqlite3_column_text(s, 5),
                     (const char *)sqlite3_column_text(s, 6),
                     (long long)sqlite3_column_int64(s, 15), lstate);
            mp_pack_strz(pk, why);
        } else {
            msgpack_pack_nil(pk);
        }
        count++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_error(st, rc, "inbound.list");
    mp_array_end(pk, arr, count);
    mp_pack_key(pk, "next_cursor");
    if (more) {
        char cur[32];
        snprintf(cur, sizeof cur, "%lld", (long long)last);
        mp_pack_strz(pk, cur);
    } else {
        msgpack_pack_nil(pk);
    }
    return 0;
}
