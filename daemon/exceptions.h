/*
 * Exceptions: problems a person must act on, each with a deadline (DESIGN.md: out of stock,
 * bad address, payment held... must be handled within 24 hours).
 *
 * One open (or acknowledged) row per dedupe key — the kind and what it is about (order, SKU,
 * warehouse, outbox row) — so raising the same problem again changes nothing. tallyd resolves
 * an exception itself when its cause goes away (exceptions_clear), recording "tallyd" as who
 * resolved it; people acknowledge and resolve with a note (exceptions.ack / .resolve).
 */
#ifndef TALLY_EXCEPTIONS_H
#define TALLY_EXCEPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "tallyd.h"

/* The kinds, as stored and shown. */
#define EXC_OUT_OF_STOCK "out_of_stock"
#define EXC_BAD_ADDRESS "bad_address"
#define EXC_PAYMENT_HELD "payment_held"
#define EXC_DEADLINE "deadline"
#define EXC_WAREHOUSE "warehouse"
#define EXC_UPSTREAM_REJECTED "upstream_rejected"
#define EXC_STOCK_DRIFT "stock_drift"
#define EXC_CANCELLED_AFTER_PICK "cancelled_after_pick"
#define EXC_COORDINATOR "coordinator" /* another coordinator's mark was seen (coord.h) */

struct exc_raise {
    const char *kind;
    int64_t order_ref;   /* orders.id, 0 when none */
    int64_t sku;         /* skus.id, 0 when none */
    int64_t wh;          /* warehouses.id, 0 when none */
    const char *subject; /* extra dedupe text (an outbox key), NULL when none */
    const char *message;
};

/*
 * Raises an exception unless one with the same key is open or acknowledged. The deadline is
 * now + [exceptions] deadline_hours, or the order's ship_by when that is sooner (even when it
 * has passed: the exception of a late order is overdue at once); raising an open one again
 * brings its deadline forward to the ship-by when that moved earlier. Runs inside the
 * caller's transaction. *created (may be NULL) says whether a row was added; a `watch` event
 * announces it.
 */
int exceptions_raise(struct tallyd *d, const struct exc_raise *e, bool *created);
/* The same on connection `st`, which may be a worker's (worker.h): d is then read for its
 * configuration only, and the event is held with store_after_commit on `st` (it is sent from
 * the loop after the commit). */
struct store;
int exceptions_raise_on(struct tallyd *d, struct store *st, const struct exc_raise *e,
                        bool *created);

/* Resolves, as "tallyd" with `note`, the open or acknowledged exception of that key, if any.
 * Runs inside the caller's transaction. */
int exceptions_clear(struct tallyd *d, const struct exc_raise *e, const char *note);

/* The same, as `who` (an operator's decision that settles the cause). */
int exceptions_resolve(struct tallyd *d, const struct exc_raise *e, const char *who,
                       const char *note);

/* Resolves, as "tallyd" with `note`, every open or acknowledged exception of an order. */
int exceptions_clear_all(struct tallyd *d, int64_t order_ref, const char *note);

#endif
