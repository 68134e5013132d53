#include "orders.h"

#include "tally/protocol.h"

static void bind_opt(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/*
 * The buyer's fields of an order whose personal data was purged (purged_at set) stay NULL
 * whatever the import or the marketplace says about it again: a purge is never undone. The
 * trigger orders_purged_stays_purged (schema.c) keeps the same rule for any other writer.
 */
int orders_upsert_header(struct store *st, const struct order_header *h, int64_t *ref,
                         bool *inserted)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT id FROM orders WHERE order_id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, h->order_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *inserted = rc == SQLITE_DONE;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_error(st, rc, "order lookup");

    s = store_stmt(st,
                   "INSERT INTO orders(order_id, status, created_at, updated_at, ship_by, country,"
                   " currency, service, buyer_name, address, city, postcode, phone, buyer_level)"
                   " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"
                   " ON CONFLICT(order_id) DO UPDATE SET status = excluded.status,"
                   " created_at = excluded.created_at, updated_at = excluded.updated_at,"
                   " ship_by = COALESCE(excluded.ship_by, ship_by),"
                   " country = excluded.country, currency = excluded.currency,"
                   " service = COALESCE(excluded.service, service),"
                   " buyer_name = IIF(purged_at IS NULL, COALESCE(excluded.buyer_name,"
                   "   buyer_name), NULL),"
                   " address = IIF(purged_at IS NULL, COALESCE(excluded.address, address), NULL),"
                   " city = IIF(purged_at IS NULL, COALESCE(excluded.city, city), NULL),"
                   " postcode = IIF(purged_at IS NULL, COALESCE(excluded.postcode, postcode),"
                   "   NULL),"
                   " phone = IIF(purged_at IS NULL, COALESCE(excluded.phone, phone), NULL),"
                   " buyer_level = COALESCE(excluded.buyer_level, buyer_level),"
                   /* What the marketplace's list said when its details were stored
                    * (conn_aliexpress.c order_seen) no longer vouches for a row written
                    * over (an import): the next orders round reads the details again. The
                    * stream sets it again after this (mark_seen). */
                   " mp_seen = NULL"
                   " RETURNING id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, h->order_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, h->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, h->created_at);
    sqlite3_bind_int64(s, 4, store_now());
    if (h->has_ship_by)
        sqlite3_bind_int64(s, 5, h->ship_by);
    sqlite3_bind_text(s, 6, h->country, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, h->currency, -1, SQLITE_STATIC);
    bind_opt(s, 8, h->service);
    bind_opt(s, 9, h->buyer_name);
    bind_opt(s, 10, h->address);
    bind_opt(s, 11, h->city);
    bind_opt(s, 12, h->postcode);
    bind_opt(s, 13, h->phone);
    bind_opt(s, 14, h->buyer_level);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *ref = sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "order upsert");
}

int orders_upsert_line(struct store *st, int64_t ref, int64_t sku, int64_t qty, int64_t price_minor,
                       bool *inserted)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT 1 FROM order_lines WHERE order_ref = ?1 AND sku = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    sqlite3_bind_int64(s, 2, sku);
    int rc = sqlite3_step(s);
    *inserted = rc == SQLITE_DONE;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_error(st, rc, "order line lookup");

    s = store_stmt(st, "INSERT INTO order_lines(order_ref, sku, qty, price_minor)"
                       " VALUES(?1,?2,?3,?4) ON CONFLICT(order_ref, sku)"
                       " DO UPDATE SET qty = excluded.qty, price_minor = excluded.price_minor");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    sqlite3_bind_int64(s, 2, sku);
    sqlite3_bind_int64(s, 3, qty);
    sqlite3_bind_int64(s, 4, price_minor);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "order line upsert");

    s = store_stmt(st, "UPDATE orders SET total_minor = (SELECT COALESCE(SUM(qty * price_minor), 0)"
                       " FROM order_lines WHERE order_ref = ?1) WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, ref);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "order total");
}
