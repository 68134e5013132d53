/*
 * The outbox: every local write appends one row in the same transaction as the write itself,
 * so a write is acknowledged only together with the promise to send it upstream. The sync
 * engine drains it; here it is appended to and read.
 */
#ifndef TALLY_OUTBOX_H
#define TALLY_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/*
 * Appends a pending row. `key` is the idempotency key sent upstream (unique), `target` names
 * the upstream ("wh:ES-MAD", "mp"), `entity` orders rows for the same thing (a SKU code),
 * `payload` a MessagePack map. Must run inside a transaction. Returns 0 and *id, or an error.
 */
int outbox_append(struct store *st, const char *key, const char *target, const char *entity,
                  const char *kind, const void *payload, size_t payload_len, int64_t *id);

#endif
