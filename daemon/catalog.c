#include "catalog.h"

#include "tally/protocol.h"

static int lookup(struct store *st, const char *sql, const char *code, size_t len, int64_t *id)
{
    sqlite3_stmt *s = store_stmt(st, sql);
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, code, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? TALLY_E_NOT_FOUND : store_error(st, rc, "lookup");
}

int catalog_sku_id(struct store *st, const char *code, size_t len, int64_t *id)
{
    return lookup(st, "SELECT id FROM skus WHERE code = ?1", code, len, id);
}

int catalog_warehouse_id(struct store *st, const char *code, size_t len, int64_t *id)
{
    return lookup(st, "SELECT id FROM warehouses WHERE code = ?1", code, len, id);
}
