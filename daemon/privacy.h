/*
 * Personal data: buyers' names, addresses and phone numbers are kept only while an order needs
 * them. privacy_purge() erases them (and the ship-to inside the order's outbound requests in
 * the outbox) from orders finished or cancelled more than `older_than_days` ago. SQLite's
 * SECURE_DELETE (turned on for the purge's transactions) overwrites the freed content; a WAL
 * checkpoint afterwards takes the old pages out of the write-ahead log too.
 */
#ifndef TALLY_PRIVACY_H
#define TALLY_PRIVACY_H

#include <stdbool.h>
#include <stdint.h>

#include "tallyd.h"

/* How a purge ended: r is 0 or a TALLY_E_* code (the orders purged before it stay purged);
 * orders is how many were purged (or counted, for a dry run). */
typedef void (*privacy_done_fn)(struct tallyd *d, void *arg, int r, int64_t orders);

/*
 * Starts a purge (or, with dry_run, a count) of orders finished more than older_than_days
 * ago. On d->loop it runs in slices, one transaction of a bounded number of orders per loop
 * iteration, then checkpoints the WAL on a worker thread; `done` (may be NULL) is called on
 * the loop when all is over. Without a loop everything runs, and `done` is called, before
 * this returns. Returns 0 (started), TALLY_E_INVALID_PARAMS, TALLY_E_BUSY when a purge is
 * already running (one at a time), or TALLY_E_NOMEM. A purge running when the daemon stops
 * ends at the next slice with TALLY_E_SHUTTING_DOWN.
 */
int privacy_purge_start(struct tallyd *d, int64_t older_than_days, bool dry_run,
                        privacy_done_fn done, void *arg);

/* Whether a purge is running. */
bool privacy_running(const struct tallyd *d);

/* A whole purge on the calling thread, before returning (tests; no loop involved). *orders
 * gets how many orders were purged (or would be). Returns 0 or a TALLY_E_* code. */
int privacy_purge(struct tallyd *d, int64_t older_than_days, bool dry_run, int64_t *orders);

#endif
