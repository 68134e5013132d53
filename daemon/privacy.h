/*
 * Personal data: buyers' names, addresses and phone numbers are kept only while an order needs
 * them. privacy_purge() erases them (and the ship-to inside the order's outbound requests in
 * the outbox) from orders finished or cancelled more than `older_than_days` ago. SQLite's
 * SECURE_DELETE (on in Debian's build) overwrites the freed content; a WAL checkpoint
 * afterwards takes the old pages out of the write-ahead log too.
 */
#ifndef TALLY_PRIVACY_H
#define TALLY_PRIVACY_H

#include <stdbool.h>
#include <stdint.h>

#include "tallyd.h"

/* Runs its own transaction(s). *orders gets how many orders were purged (or would be, with
 * dry_run). Returns 0 or a TALLY_E_* code. */
int privacy_purge(struct tallyd *d, int64_t older_than_days, bool dry_run, int64_t *orders);

#endif
