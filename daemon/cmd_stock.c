/* stock.get, stock.list, stock.move */
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "events.h"
#include "cmd.h"
#include "stock.h"
#include "store.h"

static void pack_figures(msgpack_packer *pk, const struct stock_figures *f)
{
    mp_pack_kv_int(pk, "snapshot", f->snapshot);
    mp_pack_kv_int(pk, "pending", f->pending);
    mp_pack_kv_int(pk, "on_hand", stock_on_hand(f));
    mp_pack_kv_int(pk, "reserved", f->reserved);
    mp_pack_kv_int(pk, "safety", f->safety);
    mp_pack_kv_int(pk, "available", stock_available(f));
    mp_pack_kv_int(pk, "threshold", f->threshold);
    mp_pack_kv_bool(pk, "low", stock_is_low(f));
}

static void read_figures(sqlite3_stmt *s, int col, struct stock_figures *f)
{
    f->snapshot = sqlite3_column_int64(s, col);
    f->pending = sqlite3_column_int64(s, col + 1);
    f->reserved = sqlite3_column_int64(s, col + 2);
    f->safety = sqlite3_column_int64(s, col + 3);
    f->threshold = sqlite3_column_int64(s, col + 4);
}

int cmd_stock_get(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    const char *sku;
    size_t n;
    int r = mp_param_id(&p, "sku", true, &sku, &n, NULL);
    if (r)
        return rpc_fail(c, r, "%s", p.err);
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT id, title FROM skus WHERE code = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, sku, (int)n, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return rpc_fail(c, TALLY_E_NOT_FOUND, "no SKU '%.*s' in the catalog", (int)n, sku);
    }
    int64_t id = sqlite3_column_int64(s, 0);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 5);
    mp_pack_key(pk, "sku");
    mp_pack_strn(pk, sku, n);
    mp_pack_key(pk, "title");
    mp_pack_strz(pk, (const char *)sqlite3_column_text(s, 1));
    sqlite3_reset(s);

    s = store_stmt(st, "SELECT w.code, w.country, w.serves_marketplace, st.snapshot, st.pending,"
                       " st.reserved, st.safety, st.threshold, st.upstream_version, st.as_of"
                       " FROM stock st JOIN warehouses w ON w.id = st.warehouse"
                       " WHERE st.sku = ?1 ORDER BY w.code");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, id);
    struct stock_figures tot = {0};
    int64_t mp_avail = 0, avail_sum = 0;
    uint32_t rows = 0;
    int rc;
    mp_pack_key(pk, "warehouses");
    size_t arr = mp_array_begin(pk);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct stock_figures f;
        read_figures(s, 3, &f);
        msgpack_pack_map(pk, 13);
        mp_pack_kv_str(pk, "warehouse", (const char *)sqlite3_column_text(s, 0));
        mp_pack_kv_str(pk, "country", (const char *)sqlite3_column_text(s, 1));
        mp_pack_kv_bool(pk, "serves_marketplace", sqlite3_column_int(s, 2) != 0);
        pack_figures(pk, &f);
        mp_pack_kv_int(pk, "upstream_version", sqlite3_column_int64(s, 8));
        mp_pack_key(pk, "as_of");
        if (sqlite3_column_type(s, 9) == SQLITE_NULL)
            msgpack_pack_nil(pk);
        else
            msgpack_pack_int64(pk, sqlite3_column_int64(s, 9));
        tot.snapshot += f.snapshot;
        tot.pending += f.pending;
        tot.reserved += f.reserved;
        avail_sum += stock_available(&f);
        if (sqlite3_column_int(s, 2))
            mp_avail += stock_available(&f);
        rows++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "stock.get");
    mp_array_end(pk, arr, rows);
    mp_pack_key(pk, "total");
    msgpack_pack_map(pk, 5);
    mp_pack_kv_int(pk, "snapshot", tot.snapshot);
    mp_pack_kv_int(pk, "pending", tot.pending);
    mp_pack_kv_int(pk, "on_hand", tot.snapshot + tot.pending);
    mp_pack_kv_int(pk, "reserved", tot.reserved);
    mp_pack_kv_int(pk, "available", avail_sum);
    mp_pack_kv_int(pk, "marketplace_available", mp_avail);
    return 0;
}

/* Cursor of stock.list: "<sku code> <warehouse code>" (codes contain no spaces). */
static int split_cursor(const char *cur, size_t n, char *sku, char *wh, size_t cap)
{
    const char *sp = memchr(cur, ' ', n);
    if (!sp || (size_t)(sp - cur) >= cap || n - (size_t)(sp - cur) - 1 >= cap)
        return -1;
    memcpy(sku, cur, (size_t)(sp - cur));
    sku[sp - cur] = 0;
    memcpy(wh, sp + 1, n - (size_t)(sp - cur) - 1);
    wh[n - (size_t)(sp - cur) - 1] = 0;
    return 0;
}

int cmd_stock_list(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct page_req pg;
    const char *wh = NULL;
    size_t whn = 0;
    bool low = false, have_wh = false;
    int r = cmd_page_params(c, &p, &pg);
    if (r)
        return r;
    if ((r = mp_param_id(&p, "warehouse", false, &wh, &whn, &have_wh)) ||
        (r = mp_param_bool(&p, "low", false, &low, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    struct store *st = c->d->store;
    int64_t whid = 0;
    if (have_wh && (r = catalog_warehouse_id(st, wh, whn, &whid)) != 0)
        return r == TALLY_E_NOT_FOUND ? rpc_fail(c, r, "no warehouse '%.*s'", (int)whn, wh) : r;
    char csku[TALLY_MAX_ID_LEN + 1] = "", cwh[TALLY_MAX_ID_LEN + 1] = "";
    if (pg.cursor && split_cursor(pg.cursor, pg.cursor_len, csku, cwh, sizeof csku) != 0)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");

    sqlite3_stmt *s = store_stmt(
        st, "SELECT s.code, w.code, st.snapshot, st.pending, st.reserved, st.safety, st.threshold"
            " FROM skus s JOIN stock st ON st.sku = s.id JOIN warehouses w ON w.id = st.warehouse"
            " WHERE (s.code, w.code) > (?1, ?2)"
            "   AND (?3 = 0 OR st.warehouse = ?3)"
            "   AND (?4 = 0 OR (st.threshold > 0 AND MAX(0, st.snapshot + st.pending"
            "        - st.reserved - st.safety) <= st.threshold))"
            " ORDER BY s.code, w.code LIMIT ?5");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, csku, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, cwh, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, whid);
    sqlite3_bind_int(s, 4, low);
    sqlite3_bind_int64(s, 5, pg.limit + 1);

    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 2);
    mp_pack_key(pk, "items");
    size_t arr = mp_array_begin(pk);
    int64_t count = 0;
    int rc;
    char last_sku[TALLY_MAX_ID_LEN + 1] = "", last_wh[TALLY_MAX_ID_LEN + 1] = "";
    bool more = false;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == pg.limit) {
            more = true;
            break;
        }
        struct stock_figures f;
        read_figures(s, 2, &f);
        const char *code = (const char *)sqlite3_column_text(s, 0);
        const char *whcode = (const char *)sqlite3_column_text(s, 1);
        msgpack_pack_map(pk, 10);
        mp_pack_kv_str(pk, "sku", code);
        mp_pack_kv_str(pk, "warehouse", whcode);
        pack_figures(pk, &f);
        snprintf(last_sku, sizeof last_sku, "%s", code);
        snprintf(last_wh, sizeof last_wh, "%s", whcode);
        count++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_error(st, rc, "stock.list");
    mp_array_end(pk, arr, (uint32_t)count);
    mp_pack_key(pk, "next_cursor");
    if (more) {
        char cur[2 * TALLY_MAX_ID_LEN + 2];
        snprintf(cur, sizeof cur, "%s %s", last_sku, last_wh);
        mp_pack_strz(pk, cur);
    } else {
        msgpack_pack_nil(pk);
    }
    return 0;
}

/* Copies an optional string param into a NUL-terminated buffer. */
static int copy_param(struct mp_params *p, const char *key, bool id, bool required, char *dst,
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

int cmd_stock_move(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct stock_move m;
    memset(&m, 0, sizeof m);
    const char *kind;
    size_t kn;
    int r;
    if ((r = mp_param_id(&p, "kind", true, &kind, &kn, NULL)) != 0)
        return rpc_fail(c, r, "%s", p.err);
    m.kind = stock_kind_parse(kind, kn);
    if (m.kind < 0)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS,
                        "field 'kind' must be one of receive, pick, adjust, count, transfer, "
                        "return");
    if ((r = copy_param(&p, "id", true, false, m.id, sizeof m.id)) ||
        (r = copy_param(&p, "sku", true, true, m.sku, sizeof m.sku)) ||
        (r = copy_param(&p, "warehouse", true, true, m.warehouse, sizeof m.warehouse)) ||
        (r = copy_param(&p, "to", true, false, m.to, sizeof m.to)) ||
        (r = copy_param(&p, "reason", false, false, m.reason, sizeof m.reason)) ||
        (r = copy_param(&p, "ref", false, false, m.ref, sizeof m.ref)) ||
        (r = mp_param_int(&p, "qty", true, -TALLY_MAX_QTY, TALLY_MAX_QTY, &m.qty, NULL)) ||
        (r = mp_param_bool(&p, "force", false, &m.force, NULL)))
        return rpc_fail(c, r, "%s", p.err);

    struct stock_move_result res;
    r = stock_move_apply(c->d->store, &m, &res, c->err, sizeof c->err);
    if (r)
        return r;
    for (int i = 0; i < res.nlegs; i++)
        if (res.legs[i].became_low)
            events_low_stock(c->d, m.sku, res.legs[i].warehouse, res.legs[i].available,
                             res.legs[i].threshold);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 7);
    mp_pack_kv_str(pk, "id", res.id);
    mp_pack_kv_str(pk, "kind", stock_kind_name(m.kind));
    mp_pack_kv_bool(pk, "duplicate", res.duplicate);
    mp_pack_kv_int(pk, "created_at", res.created_at);
    mp_pack_key(pk, "movements");
    msgpack_pack_array(pk, (size_t)res.nlegs);
    for (int i = 0; i < res.nlegs; i++) {
        msgpack_pack_map(pk, 2);
        mp_pack_kv_str(pk, "warehouse", res.legs[i].warehouse);
        mp_pack_kv_int(pk, "delta", res.legs[i].delta);
    }
    mp_pack_key(pk, "stock");
    msgpack_pack_array(pk, (size_t)res.nlegs);
    for (int i = 0; i < res.nlegs; i++) {
        msgpack_pack_map(pk, 3);
        mp_pack_kv_str(pk, "warehouse", res.legs[i].warehouse);
        mp_pack_kv_int(pk, "on_hand", res.legs[i].on_hand);
        mp_pack_kv_int(pk, "available", res.legs[i].available);
    }
    mp_pack_kv_int(pk, "outbox_id", res.outbox_id);
    return 0;
}
