/*
 * Seeding the replica without an upstream: rows of warehouses, catalog, opening stock and
 * orders (read from CSV by `tally import`), validated and upserted in one transaction per call.
 * Imported stock is a snapshot (the baseline a warehouse would report), not a movement.
 */
#ifndef TALLY_IMPORTER_H
#define TALLY_IMPORTER_H

#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#include "store.h"

enum import_kind { IMPORT_WAREHOUSES, IMPORT_CATALOG, IMPORT_STOCK, IMPORT_ORDERS };

int import_kind_parse(const char *s, size_t n); /* -1 when unknown */
const char *import_kind_name(int kind);

struct import_result {
    int64_t rows, inserted, updated;
};

/*
 * Applies `rows` (a msgpack array of maps) of `kind` in one transaction: all or nothing.
 * Returns 0, or an error with a message starting "row N: " in err.
 */
int import_rows(struct store *st, int kind, const msgpack_object *rows, struct import_result *res,
                char *err, size_t errlen);
/* The same inside a transaction the caller opened (and ends): on an error, what the rows
 * wrote must be undone by the caller (a savepoint rolled back, or the transaction). */
int import_rows_in(struct store *st, int kind, const msgpack_object *rows,
                   struct import_result *res, char *err, size_t errlen);

#endif
