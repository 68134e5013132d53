/*
 * Seeding the replica without an upstream: rows of warehouses, catalog, opening stock and
 * orders (read from CSV by `tally import`), validated and upserted in one transaction per call.
 * Imported stock is a snapshot (the baseline a warehouse would report), not a movement.
 * Catalog calls are applied set-based, 64 rows to a statement, with the triggers' work done
 * once per call (importer.c "Catalog rows set-based"); every other kind row by row.
 */
#ifndef TALLY_IMPORTER_H
#define TALLY_IMPORTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#include "store.h"

enum import_kind { IMPORT_WAREHOUSES, IMPORT_CATALOG, IMPORT_STOCK, IMPORT_ORDERS };

int import_kind_parse(const char *s, size_t n); /* -1 when unknown */
const char *import_kind_name(int kind);

struct import_result {
    int64_t rows, inserted, updated;
    int64_t set_rows; /* of them, applied by the set-based catalog statements (tests) */
};

/*
 * One import call: `rows` (a msgpack array of maps) of `kind` in one transaction of its own,
 * begun `how` (store.h), all or nothing. Returns 0, or an error with a message starting
 * "row N: " in err (a row refused) or without a row (the replica could not be written).
 * Catalog rows are read and validated first, then applied set-based (importer.c "Catalog rows
 * set-based") with the connection's triggers off, which it leaves off: the caller turns them
 * back on (store_set_triggers) before the connection does other work. Any other kind, a call
 * naming a SKU twice, a connection in a transaction or where import_set_allowed is false, is
 * applied row by row (import_rows_in) with the triggers on.
 */
int import_call(struct store *st, int kind, const msgpack_object *rows, enum store_durability how,
                struct import_result *res, char *err, size_t errlen);
/* Whether the triggers on the tables the set-based catalog statements write are the ones
 * they do the work of; and the hash those are compared by (tests). */
bool import_set_allowed(struct store *st);
uint64_t import_set_triggers_hash(struct store *st);

/*
 * import_call, durable, with the connection's triggers on again after it.
 */
int import_rows(struct store *st, int kind, const msgpack_object *rows, struct import_result *res,
                char *err, size_t errlen);
/* Row by row, inside a transaction the caller opened (and ends), with the triggers on: on an
 * error, what the rows wrote must be undone by the caller (a savepoint rolled back, or the
 * transaction). */
int import_rows_in(struct store *st, int kind, const msgpack_object *rows,
                   struct import_result *res, char *err, size_t errlen);

#endif
