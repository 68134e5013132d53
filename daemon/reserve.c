#include "reserve.h"

#include "stock.h"
#include "tally/protocol.h"

int reserve_mark_publish(struct store *st, int64_t sku)
{
    if (!store_publishes(st))
        return 0;
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO publish(sku, value, gen, dirty) VALUES(?1,0,1,1)"
                                     " ON CONFLICT(sku) DO UPDATE SET gen = gen + 1, dirty = 1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "publish mark");
}

int reserve_refresh(struct store *st, int64_t sku, int64_t wh, struct reserve_change *ch)
{
    struct stock_figures before;
    int r = stock_figures_get(st, sku, wh, &before);
    if (r)
        return r;
    sqlite3_stmt *s = store_stmt(
        st, "INSERT INTO stock(sku, warehouse, reserved) VALUES(?1, ?2,"
            " (SELECT COALESCE(SUM(qty), 0) FROM allocations WHERE sku = ?1 AND warehouse = ?2"
            "   AND state IN ('reserved', 'consumed'))"
            " + (SELECT COALESCE(SUM(qty), 0) FROM returns WHERE sku = ?1 AND warehouse = ?2"
            "   AND state = 'received'))"
            " ON CONFLICT(sku, warehouse) DO UPDATE SET reserved = excluded.reserved"
            " RETURNING reserved");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    int rc = sqlite3_step(s);
    int64_t after = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "reserve");
    if (after != before.reserved && (r = reserve_mark_publish(st, sku)) != 0)
        return r;
    if (ch) {
        struct stock_figures f = before;
        f.reserved = after;
        ch->before = before.reserved;
        ch->after = after;
        ch->available = stock_available(&f);
        ch->threshold = f.threshold;
        ch->became_low = !stock_is_low(&before) && stock_is_low(&f);
    }
    return 0;
}
