/*
 * The sync engine: pulls every configured upstream's streams into the replica and drains the
 * outbox to them, on the daemon's loop. See upstream.h for the connector contract.
 *
 * Pulls: each stream runs in rounds (periodic, on demand, and at once when a link comes back);
 * a round is pages; each page is applied in one transaction together with its checkpoint, so a
 * crash resumes at the last applied page and applies nothing twice.
 *
 * Push: outbox rows due for an upstream are sent in batches (the connector's limit), per
 * (target, entity) a prefix of its waiting rows only, so one entity's rows go in order while
 * different entities go in parallel (up to [sync] max_parallel requests per upstream); rows
 * that cannot go never hide rows that can. Transient
 * failures retry with exponential backoff and full jitter, capped at [sync] retry_max, never
 * sooner than a Retry-After; permanent ones are held with the upstream's reason for the
 * operator. An answer the replica cannot record is kept and recorded as soon as it can be.
 */
#ifndef TALLY_SYNC_H
#define TALLY_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <msgpack.h>

#include "tallyd.h"

struct sync_engine;

/* Reads secrets, creates the upstreams and starts the timers. With no upstream configured
 * the engine exists and does nothing. Returns 0 or -1 with a message. */
int sync_start(struct tallyd *d, struct sync_engine **out, char *err, size_t errlen);
void sync_stop(struct sync_engine *e); /* NULL is a no-op */

/*
 * Asks for a round of every stream whose name contains `filter` (NULL or "" for all: e.g.
 * "inventory", "wh:ES-MAD", "mp:orders"). Returns how many streams were asked.
 */
int sync_request(struct sync_engine *e, const char *filter, size_t len);

/* A group commit returned (gcommit.c), before the writes that waited for it run: what yielded
 * to it (a parked page, an outcome not recorded, a take waiting for a barrier) goes on now
 * (a tick, run at once), while no group is open. */
void sync_writer_free(struct sync_engine *e);
/* Since the start: the loop's own transactions that gave way to a group commit, and takes that
 * waited for one to make their rows durable (status, tests). */
void sync_yields(const struct sync_engine *e, uint64_t *yields, uint64_t *barrier_waits);

/* Packs the `upstreams` array of the status method. */
void sync_pack_status(struct sync_engine *e, msgpack_packer *pk);

/* True when at least one stream matching `filter` is in a round. */
bool sync_busy(struct sync_engine *e, const char *filter, size_t len);

#endif
