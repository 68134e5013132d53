/*
 * Reservations: stock.reserved of a SKU x warehouse is derived, never synced (DESIGN.md):
 *
 *   reserved = units of allocations in state 'reserved' or 'consumed'
 *            + units of returns received and not yet inspected
 *
 * Every change to either table is followed, in the same transaction, by reserve_refresh() of
 * the SKU x warehouse it touched; that keeps the invariant, marks the SKU for marketplace
 * publishing (when this station publishes) and says whether the row just became low.
 */
#ifndef TALLY_RESERVE_H
#define TALLY_RESERVE_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct reserve_change {
    int64_t before, after; /* reserved */
    int64_t available;     /* after: max(0, on_hand - reserved - safety) */
    int64_t threshold;
    bool became_low; /* available went from above the threshold to at or below it */
};

/* Recomputes reserved for one SKU x warehouse (creating the stock row when there is none).
 * Must run inside a transaction. `ch` may be NULL. */
int reserve_refresh(struct store *st, int64_t sku, int64_t wh, struct reserve_change *ch);

/* Marks a SKU's marketplace stock for recomputation and publishing (no-op unless this
 * station publishes). */
int reserve_mark_publish(struct store *st, int64_t sku);

#endif
