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

/* An outbox row's kind: what it asks of its upstream. Stored by name (outbox.kind). */
enum outbox_kind {
    OBX_MOVEMENT = 0,    /* a stock movement at a tally warehouse ("movement") */
    OBX_TRANSFER,        /* a transfer between warehouses ("transfer") */
    OBX_OUTBOUND,        /* create an outbound order ("outbound") */
    OBX_OUTBOUND_CANCEL, /* cancel it ("outbound_cancel") */
    OBX_INBOUND,         /* an inbound notice to a third-party warehouse ("inbound") */
    OBX_FULFIL,          /* upload a shipment to the marketplace ("fulfil") */
    OBX_KIND_COUNT,
};
/* The stored name of a kind; NULL when out of range. */
const char *outbox_kind_name(int kind);
/* The kind stored as `name`, or -1. */
int outbox_kind_parse(const char *name);

/*
 * Appends a pending row. `key` is the idempotency key sent upstream (unique), `target` names
 * the upstream ("wh:ES-MAD", "mp"), `entity` orders rows for the same thing (a SKU code),
 * `payload` a MessagePack map. Must run inside a transaction. Returns 0 and *id, or an error.
 */
int outbox_append(struct store *st, const char *key, const char *target, const char *entity,
                  const char *kind, const void *payload, size_t payload_len, int64_t *id);

/*
 * Whether outbox row `id` may be given up (outbox.discard), for every kind: only when its
 * request cannot have taken effect upstream. That is a row
 *   - `held`: the upstream refused it, a permanent refusal, so it was not applied (every
 *     upstream deduplicates by the key: one applied by an earlier attempt whose answer was lost
 *     is answered as a duplicate, never refused); except an outbound order that its warehouse's
 *     feed reports it holds (a refusal of a conflicting copy: the order is there all the same);
 *   - `pending` and never sent (sent_at NULL: no request for it ever left).
 * A row sent whose answer never came (a lost answer, a time-out, a 5xx, the daemon stopped
 * while it was in flight) may have been applied: giving it up would drop from the replica a
 * movement the warehouse made, or give an order to a second warehouse while the first ships
 * it. It is sent again until its upstream answers; then it is done, or held and discardable.
 * Returns 0 when it may go, TALLY_E_NOT_FOUND, or TALLY_E_CONFLICT with why and what to do
 * in `why`; TALLY_E_STORAGE on a read error. Run it inside the discarding transaction.
 */
int outbox_may_discard(struct store *st, int64_t id, char *why, size_t cap);

#endif
