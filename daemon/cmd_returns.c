/*
 * returns.receive, returns.inspect, returns.list.
 *
 * A return is received in one transaction: a 'return' movement (id = the return id, sent to
 * the warehouse like any movement: the units are on hand again), the returns row, and the
 * reservation that holds the units out of sale (reserve_refresh counts returns in state
 * 'received'). Inspection, again in one transaction, releases the sellable units (the row
 * leaves 'received') and writes the damaged ones off with an 'adjust' movement.
 */
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "cmd.h"
#include "enums.h"
#include "events.h"
#include "reserve.h"
#include "stock.h"
#include "store.h"

/* A return's write-off movement is "<return id>:writeoff", itself an id of at most
 * TALLY_MAX_ID_LEN bytes; return ids are shorter by the suffix. */
#define WRITEOFF_SUFFIX ":writeoff"
#define RETURN_MAX_ID_LEN (TALLY_MAX_ID_LEN - (int)(sizeof WRITEOFF_SUFFIX - 1))
#define WRITEOFF_REASON "write-off: damaged return"

/* Columns of a returns.list item, in the order pack_item reads them. */
#define RETURN_COLS                                                                                \
    "r.id, k.code, w.code, r.qty, r.state, o.order_id, r.sellable, r.damaged, r.reason, r.note,"   \
    " r.received_at, r.inspected_at"                                                               \
    " FROM returns r JOIN skus k ON k.id = r.sku JOIN warehouses w ON w.id = r.warehouse"          \
    " LEFT JOIN orders o ON o.id = r.order_ref"

/* The 12 fields of a list item; the caller has packed a map header that counts them. */
static void pack_item(msgpack_packer *pk, sqlite3_stmt *s)
{
    cmd_pack_col_text(pk, "id", s, 0);
    cmd_pack_col_text(pk, "sku", s, 1);
    cmd_pack_col_text(pk, "warehouse", s, 2);
    mp_pack_kv_int(pk, "qty", sqlite3_column_int64(s, 3));
    cmd_pack_col_text(pk, "state", s, 4);
    cmd_pack_col_text(pk, "order_id", s, 5);
    cmd_pack_col_int(pk, "sellable", s, 6);
    cmd_pack_col_int(pk, "damaged", s, 7);
    cmd_pack_col_text(pk, "reason", s, 8);
    cmd_pack_col_text(pk, "note", s, 9);
    mp_pack_kv_int(pk, "received_at", sqlite3_column_int64(s, 10));
    cmd_pack_col_int(pk, "inspected_at", s, 11);
}

/* Packs the return `id` as the result: its list item, plus `duplicate` when with_dup. */
static int pack_return(struct rpc_call *c, const char *id, bool with_dup, bool dup)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT " RETURN_COLS " WHERE r.id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        msgpack_pack_map(c->pk, with_dup ? 13 : 12);
        pack_item(c->pk, s);
        if (with_dup)
            mp_pack_kv_bool(c->pk, "duplicate", dup);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "return read");
}

/* Figures whose change by a return may take a row to its low-stock threshold. */
struct low_check {
    struct stock_figures before, after;
};

static bool became_low(const struct low_check *lc)
{
    return !stock_is_low(&lc->before) && stock_is_low(&lc->after);
}

/* ---- returns.receive ---- */

struct receive_req {
    char id[TALLY_MAX_ID_LEN + 1]; /* empty: tallyd makes one (the movement id) */
    char sku[TALLY_MAX_ID_LEN + 1];
    char warehouse[TALLY_MAX_ID_LEN + 1];
    char order_id[TALLY_MAX_ID_LEN + 1]; /* empty: none */
    char reason[TALLY_MAX_TEXT_LEN + 1]; /* empty: none */
    int64_t qty;
};

static bool same_text(const unsigned char *stored, const char *given)
{
    return stored ? strcmp((const char *)stored, given) == 0 : given[0] == 0;
}

/*
 * A return with this id exists: the same content (SKU, warehouse, qty, order, reason) is a
 * retry and answers it again (*dup); anything else is a conflict. 0 and *exists false when
 * there is no such return.
 */
static int receive_existing(struct rpc_call *c, const struct receive_req *rq, int64_t sku,
                            int64_t wh, bool *exists)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT r.sku, r.warehouse, r.qty, o.order_id, r.reason"
                                     " FROM returns r LEFT JOIN orders o ON o.id = r.order_ref"
                                     " WHERE r.id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, rq->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    bool same = false;
    if (rc == SQLITE_ROW)
        same = sqlite3_column_int64(s, 0) == sku && sqlite3_column_int64(s, 1) == wh &&
               sqlite3_column_int64(s, 2) == rq->qty &&
               same_text(sqlite3_column_text(s, 3), rq->order_id) &&
               same_text(sqlite3_column_text(s, 4), rq->reason);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_error(st, rc, "return lookup");
    *exists = rc == SQLITE_ROW;
    if (*exists && !same)
        return rpc_fail(c, TALLY_E_CONFLICT,
                        "return id '%s' was already used for a different return", rq->id);
    return 0;
}

static int insert_return(struct store *st, const struct receive_req *rq, int64_t order_ref,
                         int64_t sku, int64_t wh, int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO returns(id, order_ref, sku, warehouse, qty,"
                                     " reason, received_at) VALUES(?1,?2,?3,?4,?5,?6,?7)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, rq->id, -1, SQLITE_STATIC);
    if (order_ref)
        sqlite3_bind_int64(s, 2, order_ref);
    sqlite3_bind_int64(s, 3, sku);
    sqlite3_bind_int64(s, 4, wh);
    sqlite3_bind_int64(s, 5, rq->qty);
    if (rq->reason[0])
        sqlite3_bind_text(s, 6, rq->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 7, now);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "return insert");
}

static int order_ref_of(struct rpc_call *c, const char *order_id, int64_t *ref)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT id FROM orders WHERE order_id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *ref = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return rpc_fail(c, TALLY_E_NOT_FOUND, "no order '%s'", order_id);
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "order lookup");
}

static int receive_locked(struct rpc_call *c, struct receive_req *rq, struct low_check *lc)
{
    struct store *st = c->d->store;
    int64_t sku, wh, order_ref = 0;
    int r = catalog_sku_id(st, rq->sku, strlen(rq->sku), &sku);
    if (r)
        return r == TALLY_E_NOT_FOUND ? rpc_fail(c, r, "no SKU '%s' in the catalog", rq->sku) : r;
    if ((r = catalog_warehouse_id(st, rq->warehouse, strlen(rq->warehouse), &wh)) != 0)
        return r == TALLY_E_NOT_FOUND ? rpc_fail(c, r, "no warehouse '%s'", rq->warehouse) : r;
    /* A warehouse that keeps its own stock receives returns itself (warehouse kinds). */
    struct stock_move chk = {.kind = STOCK_RETURN, .qty = rq->qty};
    snprintf(chk.sku, sizeof chk.sku, "%s", rq->sku);
    snprintf(chk.warehouse, sizeof chk.warehouse, "%s", rq->warehouse);
    if ((r = stock_move_allowed(&c->d->cfg, &chk, c->err, sizeof c->err)) != 0)
        return r;
    bool exists = false;
    if (rq->id[0] && (r = receive_existing(c, rq, sku, wh, &exists)) != 0)
        return r;
    if (exists)
        return pack_return(c, rq->id, true, true);
    if (rq->order_id[0] && (r = order_ref_of(c, rq->order_id, &order_ref)) != 0)
        return r;
    if ((r = stock_figures_get(st, sku, wh, &lc->before)) != 0)
        return r;

    struct stock_move m;
    memset(&m, 0, sizeof m);
    m.kind = STOCK_RETURN;
    m.qty = rq->qty;
    snprintf(m.id, sizeof m.id, "%s", rq->id);
    snprintf(m.sku, sizeof m.sku, "%s", rq->sku);
    snprintf(m.warehouse, sizeof m.warehouse, "%s", rq->warehouse);
    snprintf(m.reason, sizeof m.reason, "%s", rq->reason);
    snprintf(m.ref, sizeof m.ref, "%s", rq->order_id);
    struct stock_move_result res;
    if ((r = stock_move_apply_locked(st, &m, &res, c->err, sizeof c->err)) != 0)
        return r;
    /* The movement id is taken but no return has it: it belongs to another movement. */
    if (res.duplicate)
        return rpc_fail(c, TALLY_E_CONFLICT, "id '%s' was already used for a stock movement",
                        res.id);
    snprintf(rq->id, sizeof rq->id, "%s", res.id);
    if ((r = insert_return(st, rq, order_ref, sku, wh, res.created_at)) != 0 ||
        (r = reserve_refresh(st, sku, wh, NULL)) != 0 ||
        (r = stock_figures_get(st, sku, wh, &lc->after)) != 0)
        return r;
    return pack_return(c, rq->id, true, false);
}

int cmd_returns_receive(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct receive_req rq;
    memset(&rq, 0, sizeof rq);
    int r;
    if ((r = cmd_param_copy(&p, "id", true, false, rq.id, sizeof rq.id)) ||
        (r = cmd_param_copy(&p, "sku", true, true, rq.sku, sizeof rq.sku)) ||
        (r = cmd_param_copy(&p, "warehouse", true, true, rq.warehouse, sizeof rq.warehouse)) ||
        (r = cmd_param_copy(&p, "order_id", true, false, rq.order_id, sizeof rq.order_id)) ||
        (r = cmd_param_copy(&p, "reason", false, false, rq.reason, sizeof rq.reason)) ||
        (r = mp_param_int(&p, "qty", true, 1, TALLY_MAX_QTY, &rq.qty, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    if (strlen(rq.id) > (size_t)RETURN_MAX_ID_LEN)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS,
                        "field 'id' of a return must be at most %d bytes (its write-off is "
                        "'<id>" WRITEOFF_SUFFIX "')",
                        RETURN_MAX_ID_LEN);
    struct store *st = c->d->store;
    if ((r = store_begin(st)) != 0)
        return rpc_fail(c, r, "cannot start a transaction");
    struct low_check lc;
    memset(&lc, 0, sizeof lc);
    r = receive_locked(c, &rq, &lc);
    if (r) {
        store_rollback(st);
        return r;
    }
    if ((r = store_commit(st)) != 0)
        return rpc_fail(c, r, "the replica could not record the return; nothing changed");
    if (became_low(&lc))
        events_low_stock(c->d, rq.sku, rq.warehouse, stock_available(&lc.after),
                         lc.after.threshold);
    return 0;
}

/* ---- returns.inspect ---- */

struct inspect_req {
    char id[TALLY_MAX_ID_LEN + 1];
    char note[TALLY_MAX_TEXT_LEN + 1]; /* empty: none */
    int64_t sellable, damaged;
};

/* What inspection needs of the return; the codes are kept for the low-stock event. */
struct return_row {
    int64_t sku, wh, qty;
    bool inspected;
    char sku_code[TALLY_MAX_ID_LEN + 1], wh_code[TALLY_MAX_ID_LEN + 1];
};

static int return_row_get(struct rpc_call *c, const char *id, struct return_row *rr)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT r.sku, r.warehouse, r.qty, r.state, k.code, w.code"
                                     " FROM returns r JOIN skus k ON k.id = r.sku"
                                     " JOIN warehouses w ON w.id = r.warehouse WHERE r.id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        rr->sku = sqlite3_column_int64(s, 0);
        rr->wh = sqlite3_column_int64(s, 1);
        rr->qty = sqlite3_column_int64(s, 2);
        rr->inspected = strcmp((const char *)sqlite3_column_text(s, 3), "inspected") == 0;
        snprintf(rr->sku_code, sizeof rr->sku_code, "%s", (const char *)sqlite3_column_text(s, 4));
        snprintf(rr->wh_code, sizeof rr->wh_code, "%s", (const char *)sqlite3_column_text(s, 5));
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return rpc_fail(c, TALLY_E_NOT_FOUND, "no return '%s'", id);
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "return lookup");
}

/*
 * The damaged units leave on-hand. They are physically there (the return movement put them
 * back), but the write-off is forced so that a local view that is behind never refuses it.
 * A movement already recorded under the write-off id with the same content (written off by
 * hand with that id) is that write-off: it is not applied twice.
 */
static int write_off(struct rpc_call *c, const char *id, const struct return_row *rr,
                     int64_t damaged)
{
    struct stock_move m;
    memset(&m, 0, sizeof m);
    m.kind = STOCK_ADJUST;
    m.qty = -damaged;
    m.force = true;
    /* returns.receive keeps ids short enough; a longer one was not made through it. */
    if (strlen(id) > (size_t)RETURN_MAX_ID_LEN)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "return id '%s' is too long for a write-off",
                        id);
    snprintf(m.id, sizeof m.id, "%s" WRITEOFF_SUFFIX, id);
    snprintf(m.sku, sizeof m.sku, "%s", rr->sku_code);
    snprintf(m.warehouse, sizeof m.warehouse, "%s", rr->wh_code);
    snprintf(m.reason, sizeof m.reason, "%s", WRITEOFF_REASON);
    snprintf(m.ref, sizeof m.ref, "%s", id);
    struct stock_move_result res;
    int r = stock_move_allowed(&c->d->cfg, &m, c->err, sizeof c->err);
    return r ? r : stock_move_apply_locked(c->d->store, &m, &res, c->err, sizeof c->err);
}

static int mark_inspected(struct store *st, const struct inspect_req *rq, int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, "UPDATE returns SET state = 'inspected', sellable = ?2,"
                                     " damaged = ?3, note = ?4, inspected_at = ?5 WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, rq->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, rq->sellable);
    sqlite3_bind_int64(s, 3, rq->damaged);
    if (rq->note[0])
        sqlite3_bind_text(s, 4, rq->note, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, now);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "return update");
}

static int inspect_locked(struct rpc_call *c, const struct inspect_req *rq, struct return_row *rr,
                          struct low_check *lc)
{
    struct store *st = c->d->store;
    int r = return_row_get(c, rq->id, rr);
    if (r)
        return r;
    if (rr->inspected)
        return rpc_fail(c, TALLY_E_CONFLICT, "return '%s' was already inspected", rq->id);
    if (rq->sellable + rq->damaged != rr->qty)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS,
                        "sellable (%lld) + damaged (%lld) must equal the return's qty (%lld)",
                        (long long)rq->sellable, (long long)rq->damaged, (long long)rr->qty);
    if ((r = stock_figures_get(st, rr->sku, rr->wh, &lc->before)) != 0)
        return r;
    if (rq->damaged > 0 && (r = write_off(c, rq->id, rr, rq->damaged)) != 0)
        return r;
    if ((r = mark_inspected(st, rq, store_now())) != 0 ||
        (r = reserve_refresh(st, rr->sku, rr->wh, NULL)) != 0 ||
        (r = stock_figures_get(st, rr->sku, rr->wh, &lc->after)) != 0)
        return r;
    return pack_return(c, rq->id, false, false);
}

int cmd_returns_inspect(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct inspect_req rq;
    memset(&rq, 0, sizeof rq);
    int r;
    if ((r = cmd_param_copy(&p, "id", true, true, rq.id, sizeof rq.id)) ||
        (r = cmd_param_copy(&p, "note", false, false, rq.note, sizeof rq.note)) ||
        (r = mp_param_int(&p, "sellable", true, 0, TALLY_MAX_QTY, &rq.sellable, NULL)) ||
        (r = mp_param_int(&p, "damaged", true, 0, TALLY_MAX_QTY, &rq.damaged, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    struct store *st = c->d->store;
    if ((r = store_begin(st)) != 0)
        return rpc_fail(c, r, "cannot start a transaction");
    struct return_row rr;
    struct low_check lc;
    memset(&rr, 0, sizeof rr);
    memset(&lc, 0, sizeof lc);
    r = inspect_locked(c, &rq, &rr, &lc);
    if (r) {
        store_rollback(st);
        return r;
    }
    if ((r = store_commit(st)) != 0)
        return rpc_fail(c, r, "the replica could not record the inspection; nothing changed");
    if (became_low(&lc))
        events_low_stock(c->d, rr.sku_code, rr.wh_code, stock_available(&lc.after),
                         lc.after.threshold);
    return 0;
}

/* ---- returns.list ---- */

struct cmd_returns_list_args {
    char cursor[TALLY_MAX_ID_LEN + 1];
    size_t cursor_len;
    char state[32];
    size_t sn;
    bool has_state;
    int64_t limit;
};

/* One page, on any connection (a worker's: rpc_defer_read). */
static int returns_list_pack(struct store *st, msgpack_packer *pk, const void *arg, char *err,
                             size_t errlen)
{
    const struct cmd_returns_list_args *a = arg;
    sqlite3_stmt *s = store_stmt(st, "SELECT " RETURN_COLS " WHERE r.id > ?1"
                                     " AND (?2 IS NULL OR r.state = ?2) ORDER BY r.id LIMIT ?3");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, a->cursor, (int)a->cursor_len, SQLITE_STATIC);
    if (a->has_state)
        sqlite3_bind_text(s, 2, a->state, (int)a->sn, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, a->limit + 1);

    msgpack_pack_map(pk, 2);
    mp_pack_key(pk, "items");
    size_t arr = mp_array_begin(pk);
    uint32_t count = 0;
    bool more = false;
    char last[TALLY_MAX_ID_LEN + 1] = "";
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == a->limit) {
            more = true;
            break;
        }
        msgpack_pack_map(pk, 12);
        pack_item(pk, s);
        snprintf(last, sizeof last, "%s", (const char *)sqlite3_column_text(s, 0));
        count++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        snprintf(err, errlen, "the replica could not be read");
        return store_error(st, rc, "returns.list");
    }
    mp_array_end(pk, arr, count);
    mp_pack_key(pk, "next_cursor");
    if (more)
        mp_pack_strz(pk, last);
    else
        msgpack_pack_nil(pk);
    return 0;
}

int cmd_returns_list(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct page_req pg;
    const char *state = NULL;
    size_t sn = 0;
    int r = cmd_page_params(c, &p, &pg);
    if (r)
        return r;
    int idx;
    if ((r = cmd_param_enum(c, &p, "state", false, &enum_return_state, &state, &sn, &idx)) != 0)
        return r;
    /* The cursor is the last id of the previous page (ids are printable, without spaces). */
    if (pg.cursor && !mp_id_ok(pg.cursor, pg.cursor_len))
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
    struct cmd_returns_list_args la = {.limit = pg.limit};
    if (pg.cursor) {
        if (pg.cursor_len >= sizeof la.cursor)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
        memcpy(la.cursor, pg.cursor, pg.cursor_len);
        la.cursor_len = pg.cursor_len;
    }
    if (state) {
        if (sn >= sizeof la.state)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'state' is not known");
        memcpy(la.state, state, sn);
        la.sn = sn;
        la.has_state = true;
    }
    /* A state filter walks the returns in id order past every return in other states: off the
     * loop then, as a deferred read. */
    if (la.has_state)
        return rpc_defer_read(c, returns_list_pack, &la, sizeof la);
    return returns_list_pack(c->d->store, c->pk, &la, c->err, sizeof c->err);
}
