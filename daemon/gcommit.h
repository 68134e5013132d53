/*
 * Group commit (issue 10 no. 7): writes arriving in one loop turn, from every connection and
 * every pipelined request, share one transaction and one fsync, and none is answered before
 * that commit returned (synchronous=FULL: durable).
 *
 * A write method's handler (rpc.c, `write = true`, called on a connection) runs with
 * d->store set to the group's connection (a connection of its own, in group mode, store.h
 * "Group commit"): its store_begin ... store_commit is a SAVEPOINT in the turn's transaction,
 * so a write that fails undoes itself alone, and a later write in the same turn sees the
 * earlier ones (a duplicate id is `duplicate`, stock is checked against them). Its answer is
 * held; at the end of the turn (a uv_check handle, after the poll phase's I/O callbacks) the
 * transaction commits and the answers go out, then the events the writes raised. A failed
 * commit (disk full, storage) fails every held answer with its code: none had been sent, so
 * none is lost. Reads on the loop's connection never see a group not yet committed (WAL).
 *
 * The loop's connection and the group's share the one writer lock (worker.h): before the
 * loop's connection begins a transaction of its own, the open group is committed first
 * (store_set_before_begin), so the loop never waits for itself; its answers and events go out
 * then, before what the loop's transaction raises (events in commit order).
 */
#ifndef TALLY_GCOMMIT_H
#define TALLY_GCOMMIT_H

/* Page cache of the group commit's connection (KiB). */
#define GCOMMIT_CACHE_KIB 2048

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tallyd;
struct store;

/* Opens the group's connection (after workers_start: it takes the writer lock) and the
 * end-of-turn handle. 0, or -1 with a message in err. */
int gcommit_start(struct tallyd *d, char *err, size_t errlen);
/* Commits what is open and sends its answers (tallyd stopping, before the server stops). */
void gcommit_stop(struct tallyd *d);
/* After the loop has run out: closes the connection. */
void gcommit_free(struct tallyd *d);

/* The group's connection, or NULL when group commit is not running. */
struct store *gcommit_store(struct tallyd *d);

/*
 * After a grouped handler returned `r`: when the group's transaction was lost during it,
 * every held answer fails with the loss's code, and so does a handler that said it
 * succeeded (its write was in the lost transaction). Returns r, or that code.
 */
int gcommit_after_call(struct tallyd *d, int r, char *err, size_t errlen);

/* Holds a successful answer (one whole encoded message) for `conn` until the group
 * commits: 1 held; 0 when no group is open (send it now); a TALLY_E_* code (negative) when it
 * could not be held and committing at once failed (send that error instead). */
int gcommit_hold(struct tallyd *d, void *conn, const char *data, size_t len);

/* Commits the open group now and sends its answers and events (a connection in a call gets
 * them before that call's answer; server.c). 0, or TALLY_E_BUSY when a write is open in the
 * group (nothing done), or the commit's error (the held answers fail with it). */
int gcommit_flush(struct tallyd *d);

/*
 * Makes every commit so far durable without an fsync on the loop (store.h "Lazy commits"): 0
 * when a group commit will (one open or in flight, or one opened now with a small write of its
 * own, handed to the commit thread at once); its end wakes the sync engine
 * (sync_writer_free), its durable commit clears store_sends_unsynced. TALLY_E_BUSY when no
 * commit thread runs (the caller commits durably itself), or the write's error.
 */
int gcommit_barrier(struct tallyd *d);

/* Answers held and not yet sent (tests, status). */
size_t gcommit_held(const struct tallyd *d);

/* Group commit is running (started, tallyd not stopping). */
bool gcommit_active(const struct tallyd *d);
/* A group's COMMIT is running on the commit thread: writes wait (rpc_must_wait). */
bool gcommit_in_flight(const struct tallyd *d);
/* Groups handed to the commit thread since the start (tests). */
uint64_t gcommit_off_loop(const struct tallyd *d);

/* Tests only: when set, the commit thread calls it before each COMMIT (to hold a commit in
 * flight while the test looks at the loop). NULL in tallyd. */
extern void (*gcommit_test_before_commit)(void);

#endif
