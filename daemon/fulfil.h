/*
 * Fulfilment: the order lifecycle on this side (proto/PROTOCOL.md "Fulfilment states").
 *
 *   new -> pending (unpaid / payment held) -> ready (paid) -> allocated (stock reserved)
 *       -> sent (outbound order created at the warehouse) -> picked -> partial / shipped
 *       -> uploaded (order.fulfill acknowledged) -> finished;   cancelled from before a pick.
 *
 * The marketplace is the authority on an order's status; this module never writes `status`.
 * It reacts to status changes (orders.fdirty, set by a trigger) and to the warehouses'
 * outbound feed, decides allocation (alloc.c) and priority (priority.c) and raises
 * exceptions (exceptions.c). Every step is one transaction on the replica: reservations,
 * the outbox rows that carry decisions upstream, the state and the exceptions change
 * together or not at all.
 *
 * Only the coordinator allocates and creates outbound orders (DESIGN.md: decisions made once
 * per account); every station keeps the other records.
 *
 * The pass runs on a timer (FULFIL_TICK_MS) and whenever fulfil_kick() asks for it (a page of
 * orders or outbound status applied), each time doing bounded work so the loop stays free.
 */
#ifndef TALLY_FULFIL_H
#define TALLY_FULFIL_H

#include <stdbool.h>
#include <stdint.h>

#include "tallyd.h"
#include "tally/protocol.h"

#define FULFIL_TICK_MS 2000
#define FULFIL_BATCH 4 /* orders looked at per transaction (a few ms) */

struct fulfil;

/* Starts the timer. Returns 0 or -1 with a message. */
int fulfil_start(struct tallyd *d, char *err, size_t errlen);
void fulfil_stop(struct tallyd *d); /* NULL-safe */
void fulfil_kick(struct tallyd *d); /* run a pass soon */
/* A group commit returned (gcommit.c): a pass that gave way to it runs a slice now, before the
 * writes that waited for the commit make the next group. */
void fulfil_writer_free(struct tallyd *d);

/*
 * One whole pass at time `now`: every changed order (state machine), then the orders
 * waiting for stock (allocation again), deadline exceptions, and (with the timer running)
 * priorities. Returns the number of orders whose state changed, or a TALLY_E_* code.
 * Exposed for tests; the timer runs the same work in slices of a few milliseconds.
 */
int fulfil_pass(struct tallyd *d, int64_t now);

/* The warehouses an orders.allocate release asked to cancel the order (by code). */
#define FULFIL_MAX_CANCELLING 32
struct fulfil_cancelling {
    int n;
    char code[FULFIL_MAX_CANCELLING][TALLY_MAX_ID_LEN + 1];
};

/*
 * Allocates one order now (orders.allocate): ready orders only. With `release`, an allocated
 * order that no warehouse was asked to ship has its reservations dropped first and is
 * allocated again at once; an order whose outbound order a warehouse may have (allocated and
 * asked, sent or picked) is not moved yet: each such warehouse is asked to cancel it
 * (listed in *cancelling, which may be NULL) and left out for this order, and the order is
 * allocated again when the warehouse confirms the cancel — never at two warehouses at once.
 * Returns 0, TALLY_E_NOT_FOUND or TALLY_E_CONFLICT (with a reason in err).
 */
int fulfil_allocate_now(struct tallyd *d, const char *order_id, bool release,
                        struct fulfil_cancelling *cancelling, char *err, size_t errlen);

/* A shipment made at this station (orders.ship). */
#define FULFIL_MAX_SHIP_LINES 100

struct ship_line {
    char sku[TALLY_MAX_ID_LEN + 1];
    int64_t qty;
};

struct ship_req {
    char id[TALLY_MAX_ID_LEN + 1]; /* "" : made from the order, warehouse and a count */
    char order_id[TALLY_MAX_ID_LEN + 1];
    char warehouse[TALLY_MAX_ID_LEN + 1];
    char carrier[129];
    char tracking[65];
    struct ship_line lines[FULFIL_MAX_SHIP_LINES]; /* nlines 0: all allocated there */
    int nlines;
};

struct ship_result {
    char id[TALLY_MAX_ID_LEN + 1];
    char fstate[16];
    char send_type[8];
    bool duplicate;
    struct ship_line lines[FULFIL_MAX_SHIP_LINES];
    int nlines;
};

/* One transaction: picks, allocations shipped, the shipment and its upload. Returns 0 or
 * TALLY_E_NOT_FOUND / INVALID_PARAMS / CONFLICT / STORAGE with a reason in err. */
int fulfil_ship(struct tallyd *d, const struct ship_req *req, struct ship_result *res, char *err,
                size_t errlen);

/* ---- hooks, each inside the caller's transaction ---- */

/* A warehouse's outbound feed reported `status` for outbound order `id` (an order id). */
int fulfil_outbound_status(struct tallyd *d, int64_t wh, const char *id, const char *status,
                           const char *carrier, const char *tracking, const char *reason);

/* An inventory round of warehouse `wh` that began at `started_at` (wall clock, s) ended: the
 * units consumed by shipments before it began are in its snapshot, so they stop counting as
 * reserved. */
int fulfil_inventory_round(struct tallyd *d, int64_t wh, int64_t started_at);

/* An outbox row was answered: done (outcome 0) or held (refused: error says why). Kinds:
 * "outbound", "outbound_cancel", "fulfil", and movements (held ones raise exceptions). */
int fulfil_outbox_result(struct tallyd *d, const char *target, const char *kind, const char *key,
                         const char *entity, bool done, const char *error);

/* The operator gave up on an outbox row (outbox.discard): the exception its refusal raised is
 * resolved by `who` with the reason. */
int fulfil_outbox_discarded(struct tallyd *d, const char *kind, const char *key, const char *entity,
                            const char *who, const char *reason);

/* Reconciliation found a stock row different from the warehouse's figure. */
int fulfil_stock_drift(struct tallyd *d, int64_t sku, int64_t wh, int64_t had, int64_t upstream);
/* The same on connection `st` (a worker's: uses d only for its configuration; the exception's
 * event reaches watchers after the commit, on the loop). */
int fulfil_stock_drift_on(struct tallyd *d, struct store *st, int64_t sku, int64_t wh, int64_t had,
                          int64_t upstream);

#endif
