/* Catalog lookups shared by the domain modules: codes to row ids. */
#ifndef TALLY_CATALOG_H
#define TALLY_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Row id of the SKU / warehouse with this code: 0 and *id set, TALLY_E_NOT_FOUND, or a
 * storage error. */
int catalog_sku_id(struct store *st, const char *code, size_t len, int64_t *id);
int catalog_warehouse_id(struct store *st, const char *code, size_t len, int64_t *id);

/* Row id of the SKU `code`, creating a placeholder (under the '~unlisted' product) when the
 * catalog does not know it yet: a warehouse may report a SKU before the marketplace does. */
int catalog_sku_ensure(struct store *st, const char *code, int64_t *id);

#endif
