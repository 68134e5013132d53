#include "catalog.h"

#include <stdbool.h>
#include <string.h>

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

/* Inserts a placeholder SKU under the '~unlisted' product; 0 with *id, or TALLY_E_NOT_FOUND
 * when that product does not exist yet. */
static int insert_placeholder(struct store *st, const char *code, int64_t *id)
{
    sqlite3_stmt *s = store_stmt(
        st, "INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
            " SELECT ?1, id, ?1, 0, 'XXX', ?2 FROM products WHERE product_id = '~unlisted'"
            " RETURNING id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, store_now());
    int rc = sqlite3_step(s);
    bool hit = rc == SQLITE_ROW;
    if (hit) {
        *id = sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "sku placeholder");
    return hit ? 0 : TALLY_E_NOT_FOUND;
}

int catalog_sku_ensure(struct store *st, const char *code, int64_t *id)
{
    int r = catalog_sku_id(st, code, strlen(code), id);
    if (r != TALLY_E_NOT_FOUND)
        return r;
    if ((r = insert_placeholder(st, code, id)) != TALLY_E_NOT_FOUND)
        return r;
    /* The first placeholder: create the product they hang off until the catalog names them. */
    sqlite3_stmt *s =
        store_stmt(st, "INSERT OR IGNORE INTO products(product_id, title, status,"
                       " updated_at) VALUES('~unlisted',"
                       " 'SKUs not (yet) in the marketplace catalog', 'unlisted', 0)");
    if (!s)
        return TALLY_E_STORAGE;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "placeholder product");
    return insert_placeholder(st, code, id);
}
