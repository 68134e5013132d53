/* stock.get, stock.list, stock.move, stock.set */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "coord.h"
#include "cover.h"
#include "events.h"
#include "loopread.h"
#include "cmd.h"
#include "enums.h"
#include "reserve.h"
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
    mp_pack_kv_bool(pk, "out", stock_is_out(f));
}

static void read_figures(sqlite3_stmt *s, int col, struct stock_figures *f)
{
    f->snapshot = sqlite3_column_int64(s, col);
    f->pending = sqlite3_column_int64(s, col + 1);
    f->reserved = sqlite3_column_int64(s, col + 2);
    f->safety = sqlite3_column_int64(s, col + 3);
    f->threshold = sqlite3_column_int64(s, col + 4);
}

/* One warehouse's row of stock.get, read before packing so the rows can be put in warehouse
 * code order without a sorter in the statement. */
struct stock_get_row {
    char code[TALLY_MAX_ID_LEN + 1];
    char country[TALLY_MAX_ID_LEN + 1];
    bool serves;
    struct stock_figures f;
    int64_t version, as_of, inbound;
    bool as_of_nil, inbound_nil;
};

/* Warehouses a SKU may have rows in, kept on the stack; more are read in further batches. */
#define STOCK_GET_ROWS 16

static void copy_col(char *dst, size_t cap, sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    size_t n = t ? (size_t)sqlite3_column_bytes(s, col) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, t, n);
    dst[n] = 0;
}

/*
 * stock.get's rows are encoded here straight into a buffer on the stack and appended in one
 * write: a row is 15 keys and values, and going through the packer a call per key and per value
 * cost more than the read itself. The encoding is MessagePack's, in the smallest form of each
 * value, as msgpack-c's packer makes it (positive fixint, int8..int64, uint8..uint64).
 */
#define GET_ROW_MAX 1024 /* 15 keys (< 32 bytes each), two codes (<= 64 bytes), 12 ints */

static unsigned char *put_raw(unsigned char *p, const void *b, size_t n)
{
    memcpy(p, b, n);
    return p + n;
}

/* A key of fewer than 32 bytes, as a fixstr (`k` a string literal). */
#define PUT_KEY(p, k) put_raw(put_u8((p), 0xa0 | (sizeof(k) - 1)), (k), sizeof(k) - 1)

static unsigned char *put_u8(unsigned char *p, unsigned v)
{
    *p = (unsigned char)v;
    return p + 1;
}

static unsigned char *put_be(unsigned char *p, unsigned tag, uint64_t v, int bytes)
{
    *p++ = (unsigned char)tag;
    for (int i = bytes - 1; i >= 0; i--)
        *p++ = (unsigned char)(v >> (8 * i));
    return p;
}

static unsigned char *put_int(unsigned char *p, int64_t v)
{
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u < 128)
            return put_u8(p, (unsigned)u);
        if (u <= UINT8_MAX)
            return put_be(p, 0xcc, u, 1);
        if (u <= UINT16_MAX)
            return put_be(p, 0xcd, u, 2);
        if (u <= UINT32_MAX)
            return put_be(p, 0xce, u, 4);
        return put_be(p, 0xcf, u, 8);
    }
    if (v >= -32)
        return put_u8(p, (unsigned)(v & 0xff));
    if (v >= INT8_MIN)
        return put_be(p, 0xd0, (uint64_t)v, 1);
    if (v >= INT16_MIN)
        return put_be(p, 0xd1, (uint64_t)v, 2);
    if (v >= INT32_MIN)
        return put_be(p, 0xd2, (uint64_t)v, 4);
    return put_be(p, 0xd3, (uint64_t)v, 8);
}

static unsigned char *put_str(unsigned char *p, const char *s)
{
    size_t n = strlen(s); /* <= TALLY_MAX_ID_LEN (copy_col bounds it) */
    p = n < 32 ? put_u8(p, 0xa0 | (unsigned)n) : put_be(p, 0xd9, n, 1);
    return put_raw(p, s, n);
}

static unsigned char *put_bool(unsigned char *p, bool b)
{
    return put_u8(p, b ? 0xc3 : 0xc2);
}

static unsigned char *put_int_or_nil(unsigned char *p, bool nil, int64_t v)
{
    return nil ? put_u8(p, 0xc0) : put_int(p, v);
}

static void pack_get_row(msgpack_packer *pk, const struct stock_get_row *w)
{
    unsigned char buf[GET_ROW_MAX], *p = buf;
    const struct stock_figures *f = &w->f;
    p = put_u8(p, 0x80 | 15); /* fixmap of 15 */
    p = put_str(PUT_KEY(p, "warehouse"), w->code);
    p = put_str(PUT_KEY(p, "country"), w->country);
    p = put_bool(PUT_KEY(p, "serves_marketplace"), w->serves);
    p = put_int(PUT_KEY(p, "snapshot"), f->snapshot);
    p = put_int(PUT_KEY(p, "pending"), f->pending);
    p = put_int(PUT_KEY(p, "on_hand"), stock_on_hand(f));
    p = put_int(PUT_KEY(p, "reserved"), f->reserved);
    p = put_int(PUT_KEY(p, "safety"), f->safety);
    p = put_int(PUT_KEY(p, "available"), stock_available(f));
    p = put_int(PUT_KEY(p, "threshold"), f->threshold);
    p = put_bool(PUT_KEY(p, "low"), stock_is_low(f));
    p = put_bool(PUT_KEY(p, "out"), stock_is_out(f));
    p = put_int(PUT_KEY(p, "upstream_version"), w->version);
    p = put_int_or_nil(PUT_KEY(p, "as_of"), w->as_of_nil, w->as_of);
    /* Goods on their way in, as the warehouse reported them (nil: never): shown only. */
    p = put_int_or_nil(PUT_KEY(p, "inbound"), w->inbound_nil, w->inbound);
    pk->callback(pk->data, (const char *)buf, (size_t)(p - buf));
}

/* The answer, packed into a buffer on the stack (a longer one, many warehouses: the heap), so
 * that it goes out in one append and can be kept for the next time (loopread_keep). */
struct answer_buf {
    char *p;
    size_t len, cap;
    bool failed;
    char small[2048];
};

static int answer_write(void *data, const char *buf, size_t n)
{
    struct answer_buf *b = data;
    if (b->failed)
        return -1;
    if (n > b->cap - b->len) {
        size_t cap = b->cap * 2 > b->len + n ? b->cap * 2 : b->len + n;
        char *p = b->p == b->small ? malloc(cap) : realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return -1;
        }
        if (b->p == b->small)
            memcpy(p, b->small, b->len);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, buf, n);
    b->len += n;
    return 0;
}

static int stock_get_read(struct rpc_call *c, struct store *st, msgpack_packer *pk, const char *sku,
                          size_t n);

/*
 * The hot path (issue 10: as fast as Redis GET). An answer read in the same data before is
 * given again (loopread.h: kept while no commit of anyone's came between); else one
 * statement, so one read transaction (each costs SQLite two fcntl locks on the WAL index): the
 * SKU by its code, its stock rows by the primary key (sku, warehouse), each warehouse by id; no
 * sorter and no allocation: the rows (a SKU is stocked in a handful of warehouses) are put in
 * warehouse code order here. The answer depends on the replica's data and the SKU asked alone
 * (not on the caller, the clock or the config), which is what lets it be kept.
 */
int cmd_stock_get(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    const char *sku;
    size_t n;
    int r = mp_param_id(&p, "sku", true, &sku, &n, NULL);
    if (r)
        return rpc_fail(c, r, "%s", p.err);
    struct store *st = loopread(c->d);
    c->exact = true; /* counts fixed below; tests decode it whole (test_stock.c) */
    size_t kept_len;
    const void *kept = loopread_answer(c->d, sku, n, &kept_len);
    if (kept)
        return c->pk->callback(c->pk->data, kept, kept_len) == 0 ? 0 : TALLY_E_INTERNAL;
    struct answer_buf b; /* (not zeroed: its 2 KiB are written before they are read) */
    b.p = b.small;
    b.len = 0;
    b.cap = sizeof b.small;
    b.failed = false;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, answer_write);
    r = stock_get_read(c, st, &pk, sku, n);
    if (r == 0 && b.failed)
        r = rpc_fail(c, TALLY_E_INTERNAL, "out of memory");
    if (r == 0 && c->pk->callback(c->pk->data, b.p, b.len) != 0)
        r = rpc_fail(c, TALLY_E_INTERNAL, "out of memory");
    if (r == 0)
        loopread_keep(c->d, sku, n, b.p, b.len);
    if (b.p != b.small)
        free(b.p);
    return r;
}

const void *cmd_stock_get_kept(struct tallyd *d, const char *sku, size_t n, size_t *len)
{
    loopread(d);
    return loopread_answer(d, sku, n, len);
}

/* stock.get's answer for `sku`, read from st into pk. */
static int stock_get_read(struct rpc_call *c, struct store *st, msgpack_packer *pk, const char *sku,
                          size_t n)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT s.title, w.code, w.country, w.serves_marketplace,"
                                     " st.snapshot, st.pending, st.reserved, st.safety,"
                                     " st.threshold, st.upstream_version, st.as_of, st.inbound"
                                     " FROM skus s LEFT JOIN stock st ON st.sku = s.id"
                                     " LEFT JOIN warehouses w ON w.id = st.warehouse"
                                     " WHERE s.code = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, sku, (int)n, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_error(st, rc, "stock.get");
        return rpc_fail(c, TALLY_E_NOT_FOUND, "no SKU '%.*s' in the catalog", (int)n, sku);
    }
    msgpack_pack_map(pk, 5);
    mp_pack_key(pk, "sku");
    mp_pack_strn(pk, sku, n);
    mp_pack_key(pk, "title");
    mp_pack_strz(pk, (const char *)sqlite3_column_text(s, 0));

    struct stock_get_row small[STOCK_GET_ROWS], *rows = small;
    size_t nrows = 0, cap = STOCK_GET_ROWS;
    /* A SKU without stock rows comes back as one row with NULLs from the LEFT JOINs. */
    for (; rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        if (sqlite3_column_type(s, 1) == SQLITE_NULL)
            continue;
        if (nrows == cap) {
            struct stock_get_row *more =
                malloc(2 * cap * sizeof *more); /* many warehouses: rare, bounded by them */
            if (!more) {
                rc = SQLITE_NOMEM;
                break;
            }
            memcpy(more, rows, nrows * sizeof *rows);
            if (rows != small)
                free(rows);
            rows = more;
            cap *= 2;
        }
        struct stock_get_row *w = &rows[nrows];
        copy_col(w->code, sizeof w->code, s, 1);
        copy_col(w->country, sizeof w->country, s, 2);
        w->serves = sqlite3_column_int(s, 3) != 0;
        read_figures(s, 4, &w->f);
        w->version = sqlite3_column_int64(s, 9);
        w->as_of_nil = sqlite3_column_type(s, 10) == SQLITE_NULL;
        w->as_of = sqlite3_column_int64(s, 10);
        w->inbound_nil = sqlite3_column_type(s, 11) == SQLITE_NULL;
        w->inbound = sqlite3_column_int64(s, 11);
        /* Insertion into code order (byte order, as SQLite's BINARY collation). */
        size_t i = nrows++;
        if (i > 0 && strcmp(rows[i - 1].code, w->code) > 0) {
            struct stock_get_row t = *w;
            while (i > 0 && strcmp(rows[i - 1].code, t.code) > 0) {
                rows[i] = rows[i - 1];
                i--;
            }
            rows[i] = t;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        if (rows != small)
            free(rows);
        return store_error(st, rc, "stock.get");
    }

    struct stock_figures tot = {0};
    int64_t mp_avail = 0, avail_sum = 0;
    mp_pack_key(pk, "warehouses");
    msgpack_pack_array(pk, (uint32_t)nrows);
    for (size_t i = 0; i < nrows; i++) {
        const struct stock_get_row *w = &rows[i];
        pack_get_row(pk, w);
        tot.snapshot += w->f.snapshot;
        tot.pending += w->f.pending;
        tot.reserved += w->f.reserved;
        avail_sum += stock_available(&w->f);
        if (w->serves)
            mp_avail += stock_available(&w->f);
    }
    if (rows != small)
        free(rows);
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

/* Start of the sales window: sold figures count units shipped at or after it. */
static int64_t sales_since(const struct rpc_call *c)
{
    return store_now() - (int64_t)c->d->cfg.sales_window_days * 86400;
}

/* What a stock.list / stock.set row's suggestion needs from the config. */
struct row_cfg {
    unsigned window_days, cover_days;
};

static struct row_cfg row_cfg_of(const struct rpc_call *c)
{
    return (struct row_cfg){c->d->cfg.sales_window_days, c->d->cfg.restock_cover_days};
}

/* One row as stock.list and stock.set answer it. */
static void pack_row(msgpack_packer *pk, struct row_cfg rc, const char *sku, const char *wh,
                     const struct stock_figures *f, int64_t cover_days, int64_t sold)
{
    msgpack_pack_map(pk, 14);
    mp_pack_kv_str(pk, "sku", sku);
    mp_pack_kv_str(pk, "warehouse", wh);
    pack_figures(pk, f);
    mp_pack_kv_int(pk, "cover_days", cover_days);
    mp_pack_kv_int(pk, "sold", sold);
    mp_pack_kv_int(
        pk, "suggest",
        cover_suggest(sold, rc.window_days, rc.cover_days, stock_on_hand(f), f->reserved));
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

/* Cursor of stock.list with `low`: "<sku id>:<warehouse id>" (the low rows' index order). */
static int split_low_cursor(const char *cur, size_t n, int64_t *sku, int64_t *wh)
{
    char buf[48], *end;
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, cur, n);
    buf[n] = 0;
    if (buf[0] < '0' || buf[0] > '9')
        return -1;
    *sku = strtoll(buf, &end, 10);
    if (*end != ':' || end[1] < '0' || end[1] > '9')
        return -1;
    *wh = strtoll(end + 1, &end, 10);
    return *end ? -1 : 0;
}

/*
 * The page and its SKUs' sales in the window (see sold_of), in one statement. Every row, in
 * (SKU code, warehouse code) order; with `low`, only the low and out rows, read from the
 * partial index that holds them alone (INDEXED BY: a plan that scans every row is an error
 * here, not a slow call), in its (SKU id, warehouse id) order.
 */
#define LIST_SOLD                                                                                  \
    " sold AS (SELECT a.sku, a.warehouse, SUM(a.qty) AS q FROM allocations a"                      \
    "   WHERE a.state <> 'reserved' AND a.shipped_at >= ?6"                                        \
    "   AND a.sku IN (SELECT sku FROM page) GROUP BY a.sku, a.warehouse)"                          \
    " SELECT p.code, p.whcode, p.snapshot, p.pending, p.reserved, p.safety, p.threshold,"          \
    "   p.cover_days, COALESCE(sold.q, 0), p.sku, p.wh"                                            \
    " FROM page p LEFT JOIN sold ON sold.sku = p.sku AND sold.warehouse = p.wh"
#define LIST_PAGE_COLS                                                                             \
    "WITH page AS MATERIALIZED (SELECT s.code AS code, w.code AS whcode, st.sku AS sku,"           \
    "   st.warehouse AS wh, st.snapshot, st.pending, st.reserved, st.safety,"                      \
    "   st.threshold, st.cover_days"
#define LIST_LOW_WHERE                                                                             \
    " WHERE st.snapshot + st.pending - st.reserved - st.safety - st.threshold <= 0"

static sqlite3_stmt *list_stmt(struct store *st, bool low, bool one_wh)
{
    if (!low)
        return store_stmt(st, LIST_PAGE_COLS
                          " FROM skus s JOIN stock st ON st.sku = s.id"
                          " JOIN warehouses w ON w.id = st.warehouse"
                          " WHERE (s.code, w.code) > (?1, ?2) AND (?3 = 0 OR st.warehouse = ?3)"
                          " ORDER BY s.code, w.code LIMIT ?5)," LIST_SOLD
                          " ORDER BY p.code, p.whcode");
    if (one_wh)
        return store_stmt(st, LIST_PAGE_COLS
                          " FROM stock st INDEXED BY stock_low_by_warehouse"
                          " CROSS JOIN skus s ON s.id = st.sku CROSS JOIN warehouses w ON w.id = "
                          "st.warehouse" LIST_LOW_WHERE " AND st.warehouse = ?3 AND st.sku > ?1"
                          " ORDER BY st.sku LIMIT ?5)," LIST_SOLD " ORDER BY p.sku");
    return store_stmt(st, LIST_PAGE_COLS " FROM stock st INDEXED BY stock_low"
                                         " CROSS JOIN skus s ON s.id = st.sku CROSS JOIN "
                                         "warehouses w ON w.id = st.warehouse" LIST_LOW_WHERE
                                         " AND (st.sku, st.warehouse) > (?1, ?2)"
                                         " ORDER BY st.sku, st.warehouse LIMIT ?5)," LIST_SOLD
                                         " ORDER BY p.sku, p.wh");
}

struct stock_list_args {
    bool low, have_wh;
    int64_t whid, limit, since;
    char csku[TALLY_MAX_ID_LEN + 1], cwh[TALLY_MAX_ID_LEN + 1];
    int64_t after_sku, after_wh;
    struct row_cfg rc;
};

/* One page of stock.list, on any connection (a worker's: rpc_defer_read). */
static int stock_list_pack(struct store *st, msgpack_packer *pk, const void *arg, char *err,
                           size_t errlen)
{
    const struct stock_list_args *a = arg;
    sqlite3_stmt *s = list_stmt(st, a->low, a->have_wh);
    if (!s)
        return TALLY_E_STORAGE;
    if (a->low) {
        sqlite3_bind_int64(s, 1, a->after_sku);
        sqlite3_bind_int64(s, 2, a->after_wh);
    } else {
        sqlite3_bind_text(s, 1, a->csku, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, a->cwh, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(s, 3, a->whid);
    sqlite3_bind_int64(s, 5, a->limit + 1);
    sqlite3_bind_int64(s, 6, a->since);

    msgpack_pack_map(pk, 2);
    mp_pack_key(pk, "items");
    size_t arr = mp_array_begin(pk);
    int64_t count = 0, last_skuid = 0, last_whid = 0;
    int rc;
    char last_sku[TALLY_MAX_ID_LEN + 1] = "", last_wh[TALLY_MAX_ID_LEN + 1] = "";
    bool more = false;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == a->limit) {
            more = true;
            break;
        }
        struct stock_figures f;
        read_figures(s, 2, &f);
        const char *code = (const char *)sqlite3_column_text(s, 0);
        const char *whcode = (const char *)sqlite3_column_text(s, 1);
        pack_row(pk, a->rc, code, whcode, &f, sqlite3_column_int64(s, 7),
                 sqlite3_column_int64(s, 8));
        snprintf(last_sku, sizeof last_sku, "%s", code);
        snprintf(last_wh, sizeof last_wh, "%s", whcode);
        last_skuid = sqlite3_column_int64(s, 9);
        last_whid = sqlite3_column_int64(s, 10);
        count++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        snprintf(err, errlen, "the replica could not be read");
        return store_error(st, rc, "stock.list");
    }
    mp_array_end(pk, arr, (uint32_t)count);
    mp_pack_key(pk, "next_cursor");
    if (more) {
        char cur[2 * TALLY_MAX_ID_LEN + 2];
        if (a->low)
            snprintf(cur, sizeof cur, "%" PRId64 ":%" PRId64, last_skuid, last_whid);
        else
            snprintf(cur, sizeof cur, "%s %s", last_sku, last_wh);
        mp_pack_strz(pk, cur);
    } else {
        msgpack_pack_nil(pk);
    }
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
    struct stock_list_args a = {.low = low,
                                .have_wh = have_wh,
                                .limit = pg.limit,
                                .since = sales_since(c),
                                .rc = row_cfg_of(c)};
    if (have_wh && (r = catalog_warehouse_id(c->d->store, wh, whn, &a.whid)) != 0)
        return r == TALLY_E_NOT_FOUND ? rpc_fail(c, r, "no warehouse '%.*s'", (int)whn, wh) : r;
    if (pg.cursor &&
        (low ? split_low_cursor(pg.cursor, pg.cursor_len, &a.after_sku, &a.after_wh)
             : split_cursor(pg.cursor, pg.cursor_len, a.csku, a.cwh, sizeof a.csku)) != 0)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
    /* Every row in code order, of one warehouse: the page walks past the rows of the others,
     * all of them for a warehouse that holds few SKUs: off the loop then, as a deferred read.
     * The other pages read their index (low rows have partial indexes of their own) for at
     * most limit + 1 rows and stay on the loop. */
    if (have_wh && !low)
        return rpc_defer_read(c, stock_list_pack, &a, sizeof a);
    return stock_list_pack(c->d->store, c->pk, &a, c->err, sizeof c->err);
}

int cmd_stock_move(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct stock_move m;
    memset(&m, 0, sizeof m);
    const char *kind;
    size_t kn;
    int r, idx;
    if ((r = cmd_param_enum(c, &p, "kind", true, &enum_move_kind, &kind, &kn, &idx)) != 0)
        return r;
    m.kind = stock_kind_parse(kind, kn);
    if (m.kind < 0) /* enum_move_kind and stock.c disagree */
        return rpc_fail(c, TALLY_E_INTERNAL, "movement kind '%.*s' unknown to stock.c", (int)kn,
                        kind);
    if ((r = cmd_param_copy(&p, "id", true, false, m.id, sizeof m.id)) ||
        (r = cmd_param_copy(&p, "sku", true, true, m.sku, sizeof m.sku)) ||
        (r = cmd_param_copy(&p, "warehouse", true, true, m.warehouse, sizeof m.warehouse)) ||
        (r = cmd_param_copy(&p, "to", true, false, m.to, sizeof m.to)) ||
        (r = cmd_param_copy(&p, "reason", false, false, m.reason, sizeof m.reason)) ||
        (r = cmd_param_copy(&p, "ref", false, false, m.ref, sizeof m.ref)) ||
        (r = mp_param_int(&p, "qty", true, -TALLY_MAX_QTY, TALLY_MAX_QTY, &m.qty, NULL)) ||
        (r = mp_param_bool(&p, "force", false, &m.force, NULL)))
        return rpc_fail(c, r, "%s", p.err);

    /* What the warehouse's kind lets the station record there, before anything is written. */
    if ((r = stock_move_allowed(&c->d->cfg, &m, c->err, sizeof c->err)) != 0)
        return r;
    /* A transfer into a warehouse that keeps its own stock makes an inbound notice: a
     * coordinator marks it (coord.h). */
    if (m.to_notice && c->d->cfg.coordinator)
        snprintf(m.station, sizeof m.station, "%s", coord_mark(c->d));
    struct stock_move_result res;
    r = stock_move_apply(c->d->store, &m, &res, c->err, sizeof c->err);
    if (r)
        return r;
    for (int i = 0; i < res.nlegs; i++)
        if (res.legs[i].became_low)
            events_low_stock(c->d, m.sku, res.legs[i].warehouse, res.legs[i].available,
                             res.legs[i].threshold);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 8);
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
    /* A transfer into a warehouse that keeps its own stock announced the goods there. */
    mp_pack_key(pk, "inbound_notice");
    if (res.notice_id[0])
        mp_pack_strz(pk, res.notice_id);
    else
        msgpack_pack_nil(pk);
    return 0;
}

/*
 * Units of SKU x warehouse sold since `since`. `state <> 'reserved'` is 'consumed' or
 * 'shipped' (the CHECK on allocations.state) and is the WHERE of allocations_sold, which
 * this query then uses.
 */
static int sold_of(struct store *st, int64_t sku, int64_t wh, int64_t since, int64_t *sold)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT COALESCE(SUM(qty), 0) FROM allocations"
                                     " WHERE state <> 'reserved' AND shipped_at >= ?3"
                                     " AND sku = ?1 AND warehouse = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, since);
    int rc = sqlite3_step(s);
    *sold = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "sales");
}

/* What stock.set was asked to change; a field not given keeps its value. */
struct stock_rules {
    bool have_safety, have_threshold, have_cover;
    int64_t safety, threshold, cover_days;
};

/* The row of SKU x warehouse: figures and cover_days (a row is created when there is none). */
static int rules_row(struct store *st, int64_t sku, int64_t wh, struct stock_figures *f,
                     int64_t *cover_days)
{
    /* A new row holds nothing: reserved is 0 because an allocation or return of this SKU x
     * warehouse would have created the row already (reserve_refresh). */
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO stock(sku, warehouse) VALUES(?1, ?2)"
                                     " ON CONFLICT(sku, warehouse) DO NOTHING");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "stock row");
    s = store_stmt(st, "SELECT snapshot, pending, reserved, safety, threshold, cover_days"
                       " FROM stock WHERE sku = ?1 AND warehouse = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        read_figures(s, 0, f);
        *cover_days = sqlite3_column_int64(s, 5);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "stock row");
}

/*
 * Applies the rules inside the transaction and packs the row. *became_low says whether the
 * change took the row to or below its threshold; *after holds its figures.
 */
static int set_locked(struct rpc_call *c, const char *sku, size_t skun, const char *wh, size_t whn,
                      const struct stock_rules *rq, struct stock_figures *after, bool *became_low)
{
    struct store *st = c->d->store;
    int64_t skuid, whid, cover_days = 0, sold = 0;
    int r = catalog_sku_id(st, sku, skun, &skuid);
    if (r)
        return r == TALLY_E_NOT_FOUND
                   ? rpc_fail(c, r, "no SKU '%.*s' in the catalog", (int)skun, sku)
                   : r;
    if ((r = catalog_warehouse_id(st, wh, whn, &whid)) != 0)
        return r == TALLY_E_NOT_FOUND ? rpc_fail(c, r, "no warehouse '%.*s'", (int)whn, wh) : r;
    struct stock_figures before;
    if ((r = rules_row(st, skuid, whid, &before, &cover_days)) != 0 ||
        (r = sold_of(st, skuid, whid, sales_since(c), &sold)) != 0)
        return r;
    *after = before;
    if (rq->have_safety)
        after->safety = rq->safety;
    if (rq->have_threshold) {
        after->threshold = rq->threshold;
        cover_days = 0;
    }
    if (rq->have_cover) {
        cover_days = rq->cover_days;
        if (cover_days > 0)
            after->threshold = cover_threshold(sold, c->d->cfg.sales_window_days, cover_days);
    }
    sqlite3_stmt *s = store_stmt(st, "UPDATE stock SET safety = ?3, threshold = ?4, cover_days = ?5"
                                     " WHERE sku = ?1 AND warehouse = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, skuid);
    sqlite3_bind_int64(s, 2, whid);
    sqlite3_bind_int64(s, 3, after->safety);
    sqlite3_bind_int64(s, 4, after->threshold);
    sqlite3_bind_int64(s, 5, cover_days);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "stock.set");
    /* Safety is a term of marketplace stock: a change is due for publishing. */
    if (after->safety != before.safety && (r = reserve_mark_publish(st, skuid)) != 0)
        return r;
    *became_low = !stock_is_low(&before) && stock_is_low(after);
    char skucode[TALLY_MAX_ID_LEN + 1], whcode[TALLY_MAX_ID_LEN + 1];
    snprintf(skucode, sizeof skucode, "%.*s", (int)skun, sku);
    snprintf(whcode, sizeof whcode, "%.*s", (int)whn, wh);
    pack_row(c->pk, row_cfg_of(c), skucode, whcode, after, cover_days, sold);
    return 0;
}

int cmd_stock_set(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct stock_rules rq = {0};
    const char *sku, *wh;
    size_t skun, whn;
    int r;
    if ((r = mp_param_id(&p, "sku", true, &sku, &skun, NULL)) ||
        (r = mp_param_id(&p, "warehouse", true, &wh, &whn, NULL)) ||
        (r = mp_param_int(&p, "safety", false, 0, TALLY_MAX_QTY, &rq.safety, &rq.have_safety)) ||
        (r = mp_param_int(&p, "threshold", false, 0, TALLY_MAX_QTY, &rq.threshold,
                          &rq.have_threshold)) ||
        (r = mp_param_int(&p, "cover_days", false, 0, 365, &rq.cover_days, &rq.have_cover)))
        return rpc_fail(c, r, "%s", p.err);
    if (!rq.have_safety && !rq.have_threshold && !rq.have_cover)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS,
                        "give at least one of 'safety', 'threshold', 'cover_days'");
    if (rq.have_threshold && rq.have_cover && rq.cover_days > 0)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS,
                        "'threshold' and 'cover_days' > 0 exclude each other: a threshold by "
                        "days of cover is computed from sales");
    struct store *st = c->d->store;
    if ((r = store_begin(st)) != 0)
        return rpc_fail(c, r, "cannot start a transaction");
    struct stock_figures after;
    bool became_low = false;
    r = set_locked(c, sku, skun, wh, whn, &rq, &after, &became_low);
    if (r) {
        store_rollback(st);
        return r;
    }
    if ((r = store_commit(st)) != 0)
        return rpc_fail(c, r, "the replica could not record the change; nothing changed");
    if (became_low) {
        char skucode[TALLY_MAX_ID_LEN + 1], whcode[TALLY_MAX_ID_LEN + 1];
        snprintf(skucode, sizeof skucode, "%.*s", (int)skun, sku);
        snprintf(whcode, sizeof whcode, "%.*s", (int)whn, wh);
        events_low_stock(c->d, skucode, whcode, stock_available(&after), after.threshold);
    }
    return 0;
}
