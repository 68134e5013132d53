/*
 * report, promo.check: figures read from the replica alone.
 *
 * Every query is bounded by an index: the period's orders (orders_by_created), shipments
 * (shipments_by_created), sold allocations (allocations_sold) and exceptions
 * (exceptions_by_raised, exceptions_by_resolved); promo.check looks SKUs up by code and their
 * products' SKUs by skus_by_product. A report is one pass over its period's rows, never a
 * scan of a table; still, a whole year of 100,000 orders (~200,000 sold allocations) takes
 * about half a second, so a report from a client runs as a read job (rpc_defer_read, rpc.h)
 * on a read-only connection of its own, in one read transaction (its figures agree with each
 * other), and its caller is answered when it is done: the loop answers everyone else
 * meanwhile, the same connection's later requests included (their answers may come first).
 * A call without a connection (tests) is answered at once, on the loop's connection.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "enums.h"
#include "store.h"

/* Periods are bounded: a year and a day at most, between the epoch and the end of year 9999. */
#define REPORT_MAX_SPAN_S (366LL * 86400)
#define REPORT_MAX_TIME 253402300799LL
#define REPORT_DEFAULT_SKUS 50

/* gmv / orders rounded half up (toward +infinity on a tie); 0 when there are no orders. */
static int64_t div_round_half_up(int64_t num, int64_t den)
{
    if (den <= 0)
        return 0;
    int64_t q = num / den, r = num % den;
    if (r < 0) { /* C truncates toward zero: make it a floor division, 0 <= r < den */
        q--;
        r += den;
    }
    return r >= den - r ? q + 1 : q;
}

static void pack_kv_double(msgpack_packer *pk, const char *key, double v)
{
    mp_pack_key(pk, key);
    msgpack_pack_double(pk, v);
}

/*
 * sales (packed) and the order counts (returned for the `orders` map): one pass over the
 * orders created in the period. A currency gets a sales row when it has at least one order
 * that is not cancelled; the rows are ordered by currency code.
 */
static int pack_sales(struct store *st, msgpack_packer *pk, int64_t from, int64_t to,
                      int64_t *created, int64_t *cancelled)
{
    sqlite3_stmt *s = store_stmt(
        st, "SELECT o.currency, COUNT(*), SUM(o.fstate = 'cancelled'),"
            " SUM(CASE WHEN o.fstate <> 'cancelled' THEN o.total_minor ELSE 0 END),"
            " SUM(CASE WHEN o.fstate <> 'cancelled' THEN"
            "   (SELECT COALESCE(SUM(l.qty), 0) FROM order_lines l WHERE l.order_ref = o.id)"
            "   ELSE 0 END)"
            " FROM orders o WHERE o.created_at >= ?1 AND o.created_at < ?2"
            " GROUP BY o.currency ORDER BY o.currency");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, from);
    sqlite3_bind_int64(s, 2, to);
    mp_pack_key(pk, "sales");
    size_t arr = mp_array_begin(pk);
    uint32_t rows = 0;
    int rc;
    *created = *cancelled = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t all = sqlite3_column_int64(s, 1), gone = sqlite3_column_int64(s, 2);
        *created += all;
        *cancelled += gone;
        int64_t orders = all - gone;
        if (orders == 0)
            continue;
        int64_t gmv = sqlite3_column_int64(s, 3);
        msgpack_pack_map(pk, 5);
        mp_pack_kv_str(pk, "currency", (const char *)sqlite3_column_text(s, 0));
        mp_pack_kv_int(pk, "orders", orders);
        mp_pack_kv_int(pk, "units", sqlite3_column_int64(s, 4));
        mp_pack_kv_int(pk, "gmv_minor", gmv);
        mp_pack_kv_int(pk, "aov_minor", div_round_half_up(gmv, orders));
        rows++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "report sales");
    mp_array_end(pk, arr, rows);
    return 0;
}

/*
 * The orders map. A shipment is on time when made at or before its order's ship-by, or when
 * the order has none. This is computed here rather than read from shipments.on_time, which
 * is not filled for every shipment (those recorded from a warehouse's feed, older rows).
 * An 'unexpected' shipment (a copy of an order shipped by a warehouse it was not allocated
 * to: fulfil.c) fulfils nothing and is left out.
 */
static int pack_orders(struct store *st, msgpack_packer *pk, int64_t from, int64_t to,
                       int64_t created, int64_t cancelled)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT COUNT(*), COALESCE(SUM(o.ship_by IS NULL"
                                     "   OR sh.created_at <= o.ship_by), 0)"
                                     " FROM shipments sh LEFT JOIN orders o ON o.id = sh.order_ref"
                                     " WHERE sh.created_at >= ?1 AND sh.created_at < ?2"
                                     " AND sh.state <> 'unexpected'");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, from);
    sqlite3_bind_int64(s, 2, to);
    int rc = sqlite3_step(s);
    int64_t shipped = 0, on_time = 0;
    if (rc == SQLITE_ROW) {
        shipped = sqlite3_column_int64(s, 0);
        on_time = sqlite3_column_int64(s, 1);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "report shipments");
    mp_pack_key(pk, "orders");
    msgpack_pack_map(pk, 5);
    mp_pack_kv_int(pk, "created", created);
    mp_pack_kv_int(pk, "cancelled", cancelled);
    mp_pack_kv_int(pk, "shipped", shipped);
    mp_pack_kv_int(pk, "on_time", on_time);
    if (shipped > 0)
        pack_kv_double(pk, "on_time_rate", (double)on_time / (double)shipped);
    else
        mp_pack_kv_nil(pk, "on_time_rate");
    return 0;
}

/*
 * The per-SKU table: units that left each SKU x warehouse in the period, i.e. allocations
 * consumed (the warehouse shipped them) or shipped, by shipped_at. `state <> 'reserved'` is
 * the same set as state IN ('consumed','shipped') (the table's CHECK) and is written so
 * because it is the WHERE of the partial index allocations_sold, which the planner can then
 * use. The codes the order needs are looked up per group; on_hand only for the `limit` rows
 * kept (SQLite bounds a sorter under ORDER BY ... LIMIT), which is what makes a year's report
 * over many SKUs affordable.
 */
static int pack_skus(struct store *st, msgpack_packer *pk, int64_t from, int64_t to, int64_t limit)
{
    sqlite3_stmt *s = store_stmt(
        st, "SELECT t.code, t.wcode, t.sold, COALESCE((SELECT snapshot + pending FROM stock"
            "   WHERE sku = t.sku AND warehouse = t.warehouse), 0)"
            " FROM (SELECT a.sku, a.warehouse, SUM(a.qty) AS sold,"
            "        (SELECT code FROM skus WHERE id = a.sku) AS code,"
            "        (SELECT code FROM warehouses WHERE id = a.warehouse) AS wcode"
            "       FROM allocations a"
            "       WHERE a.state <> 'reserved' AND a.shipped_at >= ?1 AND a.shipped_at < ?2"
            "       GROUP BY a.sku, a.warehouse HAVING sold > 0"
            "       ORDER BY sold DESC, code, wcode LIMIT ?3) t"
            " ORDER BY t.sold DESC, t.code, t.wcode");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, from);
    sqlite3_bind_int64(s, 2, to);
    sqlite3_bind_int64(s, 3, limit);
    mp_pack_key(pk, "skus");
    size_t arr = mp_array_begin(pk);
    uint32_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t sold = sqlite3_column_int64(s, 2), on_hand = sqlite3_column_int64(s, 3);
        double through_den = (double)sold + (double)on_hand;
        /* Average inventory over the period: (start + end) / 2 with start = on_hand + sold. */
        double avg = (double)on_hand + (double)sold / 2.0;
        msgpack_pack_map(pk, 6);
        mp_pack_kv_str(pk, "sku", (const char *)sqlite3_column_text(s, 0));
        mp_pack_kv_str(pk, "warehouse", (const char *)sqlite3_column_text(s, 1));
        mp_pack_kv_int(pk, "sold", sold);
        mp_pack_kv_int(pk, "on_hand", on_hand);
        pack_kv_double(pk, "sell_through", through_den != 0 ? (double)sold / through_den : 0.0);
        pack_kv_double(pk, "turnover", avg != 0 ? (double)sold / avg : 0.0);
        rows++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "report skus");
    mp_array_end(pk, arr, rows);
    return 0;
}

/* Exceptions raised and resolved in the period, by kind (each half on its own index). */
static int pack_exceptions(struct store *st, msgpack_packer *pk, int64_t from, int64_t to)
{
    sqlite3_stmt *s = store_stmt(
        st, "SELECT kind, SUM(opened), SUM(closed) FROM ("
            "  SELECT kind, 1 AS opened, 0 AS closed FROM exceptions"
            "   WHERE raised_at >= ?1 AND raised_at < ?2"
            "  UNION ALL"
            "  SELECT kind, 0, 1 FROM exceptions WHERE resolved_at >= ?1 AND resolved_at < ?2)"
            " GROUP BY kind ORDER BY kind");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, from);
    sqlite3_bind_int64(s, 2, to);
    mp_pack_key(pk, "exceptions");
    msgpack_pack_map(pk, 3);
    mp_pack_key(pk, "by_kind");
    size_t arr = mp_array_begin(pk);
    uint32_t rows = 0;
    int64_t opened = 0, closed = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t o = sqlite3_column_int64(s, 1), cl = sqlite3_column_int64(s, 2);
        msgpack_pack_map(pk, 3);
        mp_pack_kv_str(pk, "kind", (const char *)sqlite3_column_text(s, 0));
        mp_pack_kv_int(pk, "opened", o);
        mp_pack_kv_int(pk, "closed", cl);
        opened += o;
        closed += cl;
        rows++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "report exceptions");
    mp_array_end(pk, arr, rows);
    mp_pack_kv_int(pk, "opened", opened);
    mp_pack_kv_int(pk, "closed", closed);
    return 0;
}

struct report_args {
    int64_t from, to, limit;
};

/* The whole result map of a report, from `st` (any connection, one thread). */
static int report_pack(struct store *st, msgpack_packer *pk, const void *arg, char *err,
                       size_t errlen)
{
    const struct report_args *a = arg;
    msgpack_pack_map(pk, 6);
    mp_pack_kv_int(pk, "from", a->from);
    mp_pack_kv_int(pk, "to", a->to);
    int64_t created, cancelled;
    int r;
    if ((r = pack_sales(st, pk, a->from, a->to, &created, &cancelled)) ||
        (r = pack_orders(st, pk, a->from, a->to, created, cancelled)) ||
        (r = pack_skus(st, pk, a->from, a->to, a->limit)) ||
        (r = pack_exceptions(st, pk, a->from, a->to)))
        snprintf(err, errlen, "the report could not be read from the replica");
    return r;
}

int cmd_report(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct report_args a = {.limit = REPORT_DEFAULT_SKUS};
    int r;
    if ((r = mp_param_int(&p, "from", true, 0, REPORT_MAX_TIME, &a.from, NULL)) ||
        (r = mp_param_int(&p, "to", true, 0, REPORT_MAX_TIME, &a.to, NULL)) ||
        (r = mp_param_int(&p, "skus_limit", false, 1, TALLY_MAX_PAGE, &a.limit, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    if (a.to <= a.from)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'to' must be after 'from'");
    if (a.to - a.from > REPORT_MAX_SPAN_S)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "a report covers at most 366 days");
    return rpc_defer_read(c, report_pack, &a, sizeof a);
}

/* ---- promo.check ---- */

#define PROMO_MAX_ITEMS TALLY_MAX_PAGE

/*
 * Marketplace-available stock, as publishing computes it: the sum over warehouses serving the
 * marketplace of max(0, on_hand - reserved - safety). With `[stock] stale_policy = zero` a
 * warehouse marked stale contributes nothing (DESIGN.md: stale data counts conservatively). `id` is
 * a SKU, or with `product` a product (the total of its SKUs). Two statements rather than one with a
 * switch, so each is an index lookup (stock's key; skus_by_product then stock's key).
 */
static int promo_available(struct rpc_call *c, int64_t id, bool product, int64_t *out)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s =
        product ? store_stmt(st, "SELECT COALESCE(SUM(MAX(0, t.snapshot + t.pending - t.reserved"
                                 "   - t.safety)), 0)"
                                 " FROM skus k JOIN stock t ON t.sku = k.id"
                                 " JOIN warehouses w ON w.id = t.warehouse"
                                 " WHERE k.product = ?1 AND w.serves_marketplace = 1"
                                 "   AND NOT (?2 AND w.stale)")
                : store_stmt(st, "SELECT COALESCE(SUM(MAX(0, t.snapshot + t.pending - t.reserved"
                                 "   - t.safety)), 0)"
                                 " FROM stock t JOIN warehouses w ON w.id = t.warehouse"
                                 " WHERE t.sku = ?1 AND w.serves_marketplace = 1"
                                 "   AND NOT (?2 AND w.stale)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int(s, 2, c->d->cfg.stale_zero);
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "promo available");
}

struct promo_sku {
    bool known;
    int64_t product; /* products.id */
    char product_id[TALLY_MAX_ID_LEN + 1];
    int64_t checked; /* skus.id of the SKU checked (per sku) */
    char checked_code[TALLY_MAX_ID_LEN + 1];
};

/*
 * Looks the SKU up with its product and the product's lowest-priced SKU (ties by code).
 * A placeholder SKU (product '~unlisted': a warehouse reported it, the marketplace catalog
 * does not have it) is not in the catalog a campaign checks, so it is unknown too.
 */
static int promo_lookup(struct rpc_call *c, const char *code, size_t n, struct promo_sku *ps)
{
    struct store *st = c->d->store;
    sqlite3_stmt *s =
        store_stmt(st, "SELECT p.id, p.product_id, m.id, m.code FROM skus k"
                       " JOIN products p ON p.id = k.product"
                       " JOIN skus m ON m.id = (SELECT id FROM skus WHERE product = k.product"
                       "                        ORDER BY price_minor, code LIMIT 1)"
                       " WHERE k.code = ?1 AND p.product_id <> '~unlisted'");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, code, (int)n, SQLITE_STATIC);
    memset(ps, 0, sizeof *ps);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        ps->known = true;
        ps->product = sqlite3_column_int64(s, 0);
        snprintf(ps->product_id, sizeof ps->product_id, "%s",
                 (const char *)sqlite3_column_text(s, 1));
        ps->checked = sqlite3_column_int64(s, 2);
        snprintf(ps->checked_code, sizeof ps->checked_code, "%s",
                 (const char *)sqlite3_column_text(s, 3));
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "promo lookup");
}

/* Reads one item: its SKU code and minimum (`dflt` when it gives none). */
static int promo_item(struct rpc_call *c, const msgpack_object *item, uint32_t i, int64_t dflt,
                      const char **code, size_t *n, int64_t *min)
{
    char prefix[32];
    snprintf(prefix, sizeof prefix, "item %u: ", i + 1);
    if (item->type != MSGPACK_OBJECT_MAP)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "%smust be a map", prefix);
    struct mp_params p = {.map = item, .prefix = prefix};
    *min = dflt;
    int r;
    if ((r = mp_param_id(&p, "sku", true, code, n, NULL)) ||
        (r = mp_param_int(&p, "min", false, 0, TALLY_MAX_QTY, min, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    return 0;
}

int cmd_promo_check(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    int64_t dflt = 1;
    const char *per = NULL;
    size_t pern = 0;
    int r;
    int per_idx;
    if ((r = mp_param_int(&p, "min", false, 0, TALLY_MAX_QTY, &dflt, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    if ((r = cmd_param_enum(c, &p, "per", false, &enum_promo_per, &per, &pern, &per_idx)))
        return r;
    bool by_product = per_idx >= 0 && !strcmp(enum_promo_per.values[per_idx], "product");
    const msgpack_object *items = mp_map_get(c->params, "items");
    if (!items || items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size < 1 ||
        items->via.array.size > PROMO_MAX_ITEMS)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'items' must be an array of 1 to %d maps",
                        PROMO_MAX_ITEMS);
    /* Every item is validated before anything is packed: a bad item fails the whole call. */
    for (uint32_t i = 0; i < items->via.array.size; i++) {
        const char *code;
        size_t n;
        int64_t min;
        if ((r = promo_item(c, &items->via.array.ptr[i], i, dflt, &code, &n, &min)) != 0)
            return r;
    }

    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 4);
    mp_pack_key(pk, "items");
    msgpack_pack_array(pk, items->via.array.size);
    int64_t n_ok = 0, n_short = 0, n_unknown = 0;
    for (uint32_t i = 0; i < items->via.array.size; i++) {
        const char *code;
        size_t n;
        int64_t min, avail = 0;
        struct promo_sku ps;
        if ((r = promo_item(c, &items->via.array.ptr[i], i, dflt, &code, &n, &min)) ||
            (r = promo_lookup(c, code, n, &ps)))
            return r;
        if (ps.known &&
            (r = promo_available(c, by_product ? ps.product : ps.checked, by_product, &avail)) != 0)
            return r;
        bool ok = ps.known && avail >= min;
        msgpack_pack_map(pk, 7);
        mp_pack_key(pk, "sku");
        mp_pack_strn(pk, code, n);
        mp_pack_kv_str(pk, "product_id", ps.known ? ps.product_id : NULL);
        mp_pack_kv_str(pk, "checked", !ps.known ? NULL : by_product ? "total" : ps.checked_code);
        mp_pack_kv_int(pk, "available", avail);
        mp_pack_kv_int(pk, "min", min);
        mp_pack_kv_bool(pk, "ok", ok);
        mp_pack_key(pk, "reason");
        if (!ps.known) {
            mp_pack_strz(pk, "unknown SKU");
            n_unknown++;
        } else if (ok) {
            msgpack_pack_nil(pk);
            n_ok++;
        } else {
            char why[160];
            if (by_product)
                snprintf(why, sizeof why, "product total %lld is below the minimum %lld",
                         (long long)avail, (long long)min);
            else
                snprintf(why, sizeof why,
                         "lowest-priced SKU %s has %lld available, below the minimum %lld",
                         ps.checked_code, (long long)avail, (long long)min);
            mp_pack_strz(pk, why);
            n_short++;
        }
    }
    mp_pack_kv_int(pk, "ok", n_ok);
    mp_pack_kv_int(pk, "short", n_short);
    mp_pack_kv_int(pk, "unknown", n_unknown);
    return 0;
}
