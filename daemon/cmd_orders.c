/* orders.list, orders.get */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "cmd.h"
#include "enums.h"
#include "store.h"

/* Columns 0..11 shared by orders.list and orders.get. */
#define ORDER_COLS                                                                                 \
    "o.order_id, o.status, o.created_at, o.ship_by, o.country, o.currency, o.total_minor,"         \
    " (SELECT COUNT(*) FROM order_lines l WHERE l.order_ref = o.id),"                              \
    " (SELECT COALESCE(SUM(qty), 0) FROM order_lines l WHERE l.order_ref = o.id),"                 \
    " (SELECT code FROM warehouses w WHERE w.id = o.warehouse), o.fstate, o.priority"
#define ORDER_NCOLS 12

static void pack_order_summary(msgpack_packer *pk, sqlite3_stmt *s, bool lines_count)
{
    cmd_pack_col_text(pk, "order_id", s, 0);
    cmd_pack_col_text(pk, "status", s, 1);
    mp_pack_kv_int(pk, "created_at", sqlite3_column_int64(s, 2));
    cmd_pack_col_int(pk, "ship_by", s, 3);
    cmd_pack_col_text(pk, "country", s, 4);
    cmd_pack_col_text(pk, "currency", s, 5);
    mp_pack_kv_int(pk, "total_minor", sqlite3_column_int64(s, 6));
    if (lines_count)
        mp_pack_kv_int(pk, "line_count", sqlite3_column_int64(s, 7));
    mp_pack_kv_int(pk, "units", sqlite3_column_int64(s, 8));
    cmd_pack_col_text(pk, "warehouse", s, 9);
    cmd_pack_col_text(pk, "fstate", s, 10);
    mp_pack_kv_int(pk, "priority", sqlite3_column_int64(s, 11));
}

/* Cursor of orders.list: "<created_at> <order_id>". */
static int parse_cursor(const char *cur, size_t n, int64_t *at, char *id, size_t cap)
{
    char buf[128];
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, cur, n);
    buf[n] = 0;
    char *sp = strchr(buf, ' '), *end;
    if (!sp || strlen(sp + 1) >= cap || !*(sp + 1))
        return -1;
    *sp = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end || end == buf)
        return -1;
    *at = v;
    snprintf(id, cap, "%s", sp + 1);
    return 0;
}

/*
 * Packs {items, next_cursor} from stepped-to-be statements of ORDER_COLS (and, for the due
 * order, the ship-by key after them), read one after the other, limit + 1 rows asked for: the
 * extra row only says that another page follows. bind(s, i, left) binds the i-th statement
 * (left: the rows still wanted) before it is stepped. Cursors: "<created_at> <order_id>", or
 * for due "<priority> <ship-by key> <order_id>".
 */
static int pack_page(struct store *st, msgpack_packer *pk, sqlite3_stmt *const *ss, int ns,
                     void (*bind)(sqlite3_stmt *s, int i, int64_t left, const void *arg),
                     const void *arg, int64_t limit, bool due)
{
    msgpack_pack_map(pk, 2);
    mp_pack_key(pk, "items");
    size_t arr = mp_array_begin(pk);
    uint32_t count = 0;
    bool more = false;
    int rc = SQLITE_DONE;
    char cur[160] = "";
    for (int i = 0; i < ns && !more; i++) {
        sqlite3_stmt *s = ss[i];
        bind(s, i, limit + 1 - count, arg);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (count == limit) {
                more = true;
                break;
            }
            msgpack_pack_map(pk, ORDER_NCOLS);
            pack_order_summary(pk, s, true);
            if (due)
                snprintf(cur, sizeof cur, "%lld %lld %s", (long long)sqlite3_column_int64(s, 11),
                         (long long)sqlite3_column_int64(s, ORDER_NCOLS),
                         (const char *)sqlite3_column_text(s, 0));
            else
                snprintf(cur, sizeof cur, "%lld %s", (long long)sqlite3_column_int64(s, 2),
                         (const char *)sqlite3_column_text(s, 0));
            count++;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return store_error(st, rc, "orders.list");
    }
    mp_array_end(pk, arr, count);
    mp_pack_key(pk, "next_cursor");
    if (more)
        mp_pack_strz(pk, cur);
    else
        msgpack_pack_nil(pk);
    return 0;
}

/* ship_by for ordering: unknown last. */
#define DUE_BY "COALESCE(o.ship_by, 9223372036854775807)"

/*
 * orders.list: what a page needs, read from the params on the loop and bound on whatever
 * connection makes the page (a filtered list is a deferred read: rpc_defer_read).
 */
struct orders_list_args {
    bool due, has_status, has_fstate, has_cursor;
    char status[40], fstate[40];
    size_t sn, fn;
    int64_t whid, limit;
    int64_t cprio, cby; /* due: the cursor */
    int64_t cat;        /* by creation: the cursor */
    char cid[TALLY_MAX_ID_LEN + 1];
};

static void bind_due(sqlite3_stmt *s, int part, int64_t left, const void *arg)
{
    const struct orders_list_args *a = arg;
    (void)part; /* ?4 and ?5 are not in every part: binding an absent parameter is a no-op */
    if (a->has_status)
        sqlite3_bind_text(s, 1, a->status, (int)a->sn, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, a->whid);
    /* Before every row, without a cursor: a priority above any. */
    sqlite3_bind_int64(s, 3, a->has_cursor ? a->cprio : INT64_MAX);
    sqlite3_bind_int64(s, 4, a->has_cursor ? a->cby : INT64_MIN);
    sqlite3_bind_text(s, 5, a->cid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, left);
    if (a->has_fstate)
        sqlite3_bind_text(s, 7, a->fstate, (int)a->fn, SQLITE_STATIC);
}

static void bind_created(sqlite3_stmt *s, int part, int64_t left, const void *arg)
{
    const struct orders_list_args *a = arg;
    (void)part;
    sqlite3_bind_int64(s, 1, a->cat);
    sqlite3_bind_text(s, 2, a->cid, -1, SQLITE_STATIC);
    if (a->has_status)
        sqlite3_bind_text(s, 3, a->status, (int)a->sn, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, a->whid);
    sqlite3_bind_int64(s, 5, left);
    if (a->has_fstate)
        sqlite3_bind_text(s, 6, a->fstate, (int)a->fn, SQLITE_STATIC);
}

#define DUE_FROM                                                                                   \
    "SELECT " ORDER_COLS ", " DUE_BY " FROM orders o INDEXED BY orders_due"                        \
    " WHERE o.fstate IN ('pending','ready','allocated','sent','picked','partial')"                 \
    "   AND (?1 IS NULL OR o.status = ?1) AND (?2 = 0 OR o.warehouse = ?2)"                        \
    "   AND (?7 IS NULL OR o.fstate = ?7)"

/*
 * With due: open orders, most urgent first (priority desc, ship_by asc with unknown last,
 * order_id). Cursor: "<priority> <ship_by or max> <order_id>". Without: by creation.
 * The due page after a cursor is read in three parts, each a range of orders_due that starts
 * at the cursor: the rest of the cursor's (priority, ship-by), the rest of its priority, then
 * the lower priorities. (One condition with ORs is no start for the index's range: each page
 * read every open order before the cursor again, on the loop.)
 */
static int orders_list_pack(struct store *st, msgpack_packer *pk, const void *arg, char *err,
                            size_t errlen)
{
    const struct orders_list_args *a = arg;
    sqlite3_stmt *s[3];
    int ns, r;
    if (a->due) {
        s[0] = store_stmt(st, DUE_FROM " AND o.priority = ?3 AND " DUE_BY " = ?4"
                                       " AND o.order_id > ?5 ORDER BY o.order_id LIMIT ?6");
        s[1] = s[0] ? store_stmt(st, DUE_FROM " AND o.priority = ?3 AND " DUE_BY " > ?4"
                                              " ORDER BY " DUE_BY ", o.order_id LIMIT ?6")
                    : NULL;
        s[2] = s[1] ? store_stmt(st, DUE_FROM " AND o.priority < ?3"
                                              " ORDER BY o.priority DESC, " DUE_BY ", o.order_id"
                                              " LIMIT ?6")
                    : NULL;
        if (!s[2])
            return TALLY_E_STORAGE;
        ns = 3;
        r = pack_page(st, pk, s, ns, bind_due, a, a->limit, true);
    } else {
        s[0] = store_stmt(st, "SELECT " ORDER_COLS " FROM orders o"
                              " WHERE (o.created_at, o.order_id) > (?1, ?2)"
                              "   AND (?3 IS NULL OR o.status = ?3)"
                              "   AND (?4 = 0 OR o.warehouse = ?4)"
                              "   AND (?6 IS NULL OR o.fstate = ?6)"
                              " ORDER BY o.created_at, o.order_id LIMIT ?5");
        if (!s[0])
            return TALLY_E_STORAGE;
        ns = 1;
        r = pack_page(st, pk, s, ns, bind_created, a, a->limit, false);
    }
    if (r)
        snprintf(err, errlen, "the replica could not be read");
    return r;
}

/* The due cursor "<priority> <ship_by or max> <order_id>" into a. */
static int parse_due_cursor(const char *cur, size_t n, struct orders_list_args *a)
{
    char buf[160];
    long long x, y;
    int used = 0;
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, cur, n);
    buf[n] = 0;
    if (sscanf(buf, "%lld %lld %n", &x, &y, &used) != 2 || !buf[used] ||
        strlen(buf + used) > TALLY_MAX_ID_LEN)
        return -1;
    a->cprio = x;
    a->cby = y;
    snprintf(a->cid, sizeof a->cid, "%s", buf + used);
    return 0;
}

int cmd_orders_list(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct page_req pg;
    const char *status = NULL, *wh = NULL, *fstate = NULL;
    size_t sn = 0, whn = 0, fn = 0;
    bool have_wh = false, due = false;
    int r = cmd_page_params(c, &p, &pg);
    if (r)
        return r;
    int idx;
    if ((r = cmd_param_enum(c, &p, "status", false, &enum_order_status, &status, &sn, &idx)) ||
        (r = cmd_param_enum(c, &p, "fstate", false, &enum_fstate, &fstate, &fn, &idx)))
        return r;
    if ((r = mp_param_bool(&p, "due", false, &due, NULL)) ||
        (r = mp_param_id(&p, "warehouse", false, &wh, &whn, &have_wh)))
        return rpc_fail(c, r, "%s", p.err);
    struct orders_list_args a = {.due = due, .limit = pg.limit, .cat = INT64_MIN};
    if (have_wh && (r = catalog_warehouse_id(c->d->store, wh, whn, &a.whid)) != 0)
        return r == TALLY_E_NOT_FOUND ? rpc_fail(c, r, "no warehouse '%.*s'", (int)whn, wh) : r;
    if (pg.cursor) {
        a.has_cursor = true;
        if (due ? parse_due_cursor(pg.cursor, pg.cursor_len, &a) != 0
                : parse_cursor(pg.cursor, pg.cursor_len, &a.cat, a.cid, sizeof a.cid) != 0)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
    }
    if (status) {
        if (sn >= sizeof a.status)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'status' is not known");
        memcpy(a.status, status, sn);
        a.sn = sn;
        a.has_status = true;
    }
    if (fstate) {
        if (fn >= sizeof a.fstate)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'fstate' is not known");
        memcpy(a.fstate, fstate, fn);
        a.fn = fn;
        a.has_fstate = true;
    }
    /* A filter walks the orders in page order past every order it leaves out (1M orders, a
     * few of them partial): off the loop then, as a deferred read. A page without one reads
     * at most limit + 1 rows and stays on the loop. */
    if (a.has_status || a.has_fstate || have_wh)
        return rpc_defer_read(c, orders_list_pack, &a, sizeof a);
    return orders_list_pack(c->d->store, c->pk, &a, c->err, sizeof c->err);
}

static int pack_lines(struct rpc_call *c, int64_t ref)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT s.code, s.title, l.qty, l.price_minor"
                                     " FROM order_lines l JOIN skus s ON s.id = l.sku"
                                     " WHERE l.order_ref = ?1 ORDER BY s.code");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    size_t arr = mp_array_begin(c->pk);
    uint32_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        msgpack_pack_map(c->pk, 4);
        cmd_pack_col_text(c->pk, "sku", s, 0);
        cmd_pack_col_text(c->pk, "title", s, 1);
        mp_pack_kv_int(c->pk, "qty", sqlite3_column_int64(s, 2));
        mp_pack_kv_int(c->pk, "price_minor", sqlite3_column_int64(s, 3));
        n++;
    }
    sqlite3_reset(s);
    mp_array_end(c->pk, arr, n);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "order lines");
}

static int pack_shipments(struct rpc_call *c, int64_t ref)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT sh.id, w.code, sh.carrier, sh.tracking_no,"
                                     " sh.created_at, sh.send_type, sh.state, sh.uploaded_at"
                                     " FROM shipments sh"
                                     " LEFT JOIN warehouses w ON w.id = sh.warehouse"
                                     " WHERE sh.order_ref = ?1 ORDER BY sh.created_at, sh.id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    size_t arr = mp_array_begin(c->pk);
    uint32_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        msgpack_pack_map(c->pk, 8);
        cmd_pack_col_text(c->pk, "id", s, 0);
        cmd_pack_col_text(c->pk, "warehouse", s, 1);
        cmd_pack_col_text(c->pk, "carrier", s, 2);
        cmd_pack_col_text(c->pk, "tracking_no", s, 3);
        mp_pack_kv_int(c->pk, "created_at", sqlite3_column_int64(s, 4));
        cmd_pack_col_text(c->pk, "send_type", s, 5);
        cmd_pack_col_text(c->pk, "state", s, 6);
        cmd_pack_col_int(c->pk, "uploaded_at", s, 7);
        n++;
    }
    sqlite3_reset(s);
    mp_array_end(c->pk, arr, n);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "shipments");
}

int cmd_pack_allocation(struct rpc_call *c, int64_t ref, const char *rule, const char *why)
{
    msgpack_packer *pk = c->pk;
    if (!rule || !rule[0]) {
        msgpack_pack_nil(pk);
        return 0;
    }
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT k.code, w.code, SUM(a.qty), a.state"
                                     " FROM allocations a JOIN skus k ON k.id = a.sku"
                                     " JOIN warehouses w ON w.id = a.warehouse"
                                     " WHERE a.order_ref = ?1 GROUP BY k.code, w.code, a.state"
                                     " ORDER BY k.code, w.code, a.state");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    msgpack_pack_map(pk, 3);
    mp_pack_kv_str(pk, "rule", rule);
    mp_pack_kv_str(pk, "why", why);
    mp_pack_key(pk, "parts");
    size_t arr = mp_array_begin(pk);
    uint32_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        msgpack_pack_map(pk, 4);
        cmd_pack_col_text(pk, "sku", s, 0);
        cmd_pack_col_text(pk, "warehouse", s, 1);
        mp_pack_kv_int(pk, "qty", sqlite3_column_int64(s, 2));
        cmd_pack_col_text(pk, "state", s, 3);
        n++;
    }
    sqlite3_reset(s);
    mp_array_end(pk, arr, n);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "allocation parts");
}

static int pack_exceptions(struct rpc_call *c, int64_t ref)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT id, kind, state, message, deadline FROM exceptions"
                                     " WHERE order_ref = ?1 ORDER BY id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    size_t arr = mp_array_begin(c->pk);
    uint32_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        msgpack_pack_map(c->pk, 5);
        mp_pack_kv_int(c->pk, "id", sqlite3_column_int64(s, 0));
        cmd_pack_col_text(c->pk, "kind", s, 1);
        cmd_pack_col_text(c->pk, "state", s, 2);
        cmd_pack_col_text(c->pk, "message", s, 3);
        mp_pack_kv_int(c->pk, "deadline", sqlite3_column_int64(s, 4));
        n++;
    }
    sqlite3_reset(s);
    mp_array_end(c->pk, arr, n);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "order exceptions");
}

int cmd_orders_get(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    const char *oid;
    size_t n;
    int r = mp_param_id(&p, "order_id", true, &oid, &n, NULL);
    if (r)
        return rpc_fail(c, r, "%s", p.err);
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT " ORDER_COLS ", o.id, o.updated_at, o.service,"
                                     " o.buyer_name, o.address, o.city, o.postcode, o.phone,"
                                     " o.priority_why, o.alloc_rule, o.alloc_why, o.purged_at"
                                     " FROM orders o WHERE o.order_id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, oid, (int)n, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            return rpc_fail(c, TALLY_E_NOT_FOUND, "no order '%.*s'", (int)n, oid);
        return store_error(st, rc, "orders.get");
    }
    msgpack_packer *pk = c->pk;
    const int x = ORDER_NCOLS; /* first column after the summary's */
    int64_t ref = sqlite3_column_int64(s, x);
    msgpack_pack_map(pk, ORDER_NCOLS - 1 + 9);
    pack_order_summary(pk, s, false);
    mp_pack_kv_int(pk, "updated_at", sqlite3_column_int64(s, x + 1));
    cmd_pack_col_text(pk, "service", s, x + 2);
    cmd_pack_col_text(pk, "priority_why", s, x + 8);
    cmd_pack_col_int(pk, "purged_at", s, x + 11);
    mp_pack_key(pk, "ship_to");
    /* Buyers' personal data goes to writers only (they pack and ship). */
    if (c->role == TALLY_ROLE_WRITER) {
        msgpack_pack_map(pk, 6);
        cmd_pack_col_text(pk, "name", s, x + 3);
        cmd_pack_col_text(pk, "address", s, x + 4);
        cmd_pack_col_text(pk, "city", s, x + 5);
        cmd_pack_col_text(pk, "postcode", s, x + 6);
        cmd_pack_col_text(pk, "country", s, 4);
        cmd_pack_col_text(pk, "phone", s, x + 7);
    } else {
        msgpack_pack_nil(pk);
    }
    char rule[32], why[600];
    snprintf(rule, sizeof rule, "%s",
             sqlite3_column_text(s, x + 9) ? (const char *)sqlite3_column_text(s, x + 9) : "");
    snprintf(why, sizeof why, "%s",
             sqlite3_column_text(s, x + 10) ? (const char *)sqlite3_column_text(s, x + 10) : "");
    sqlite3_reset(s);
    mp_pack_key(pk, "allocation");
    if ((r = cmd_pack_allocation(c, ref, rule, why)) != 0)
        return r;
    mp_pack_key(pk, "lines");
    if ((r = pack_lines(c, ref)) != 0)
        return r;
    mp_pack_key(pk, "exceptions");
    if ((r = pack_exceptions(c, ref)) != 0)
        return r;
    mp_pack_key(pk, "shipments");
    return pack_shipments(c, ref);
}
