/*
 * Group commit (issue 10 no. 7): writes arriving in one loop turn, from every connection and
 * every pipelined request, share one transaction; the groups committed while one sync of the
 * WAL runs share the next one; and none is answered before a sync that covers its commit
 * returned (synchronous=FULL: durable).
 *
 * A write method's handler (rpc.c, `write = true`, called on a connection) runs with
 * d->store set to the group's connection (a connection of its own, in group mode, store.h
 * "Group commit"): its store_begin ... store_commit is a SAVEPOINT in the turn's transaction,
 * so a write that fails undoes itself alone, and a later write in the same turn sees the
 * earlier ones (a duplicate id is `duplicate`, stock is checked against them). Its answer is
 * held. At the end of the turn (a uv_check handle, after the poll phase's I/O callbacks) the
 * group goes to the commit thread, which runs its COMMIT at synchronous = NORMAL: the frames
 * are written to the WAL, the WAL's write lock is free at once, no fsync. Back on the loop
 * (uv_async) the writer lock is released and the group's answers and events wait in the
 * queue; the requests that waited for the COMMIT (rpc_must_wait) are taken up and their
 * writes make the next group at once.
 *
 * Syncs. The sync thread, on a connection of its own that only ever syncs (store_sync_wal:
 * SQLite's xSync of its handle of the WAL file), makes the WAL durable when asked: it reads
 * the number of the last commit (store_commit_seq), then syncs, so the sync covers every
 * commit up to that number, and the loop records it (store_synced). At most one sync runs;
 * the groups committed meanwhile are covered by the next one, asked for as soon as it is
 * back. So while one group's sync runs the next group's writes run and commit: the rate is
 * bounded by the writes' CPU or the sync, no longer their sum.
 *
 * Delivery. Decided commits wait in one queue, in commit order: a group's answers and its
 * events, a failed group's errors, and the events of the loop's own transactions and of write
 * jobs committed after a group still waiting (store_set_ready_gate, gcommit_run_ready). They
 * are sent from the head while the head is durable (store_durable_seq: a sync, or any durable
 * commit, covered it), so a later group's answers never pass an earlier group's, and watchers
 * hear of changes in the order they were committed, each after the answer of the request that
 * raised it. A read after its connection's own write waits for that write's answer.
 *
 * A failed COMMIT (disk full, storage) fails every answer of its group: nothing of it was
 * kept. In tallyd a failed sync of the WAL stops the process where it is seen (store.h
 * store_set_wal_sync_failed, main.c): nothing below runs. Where no such hook stops it (the
 * unit tests), a failed sync fails every answer of the groups it covered (none had been sent) and
 * drops their events; their commits had returned, so their changes stay in the replica, not
 * known durable (the answers say so: WHY_SYNC in gcommit.c). tallyd does not retry that sync
 * and answer success (after an fsync error the kernel may have dropped the pages). Until a
 * sync succeeds again the groups commit at FULL, the fsync inside their COMMIT as before: a
 * write refused while the disk keeps failing has changed nothing.
 *
 * The loop's connection and the group's share the one writer lock (worker.h): before the
 * loop's connection begins a transaction of its own, the open group is committed first
 * (store_set_before_begin; on the loop, at NORMAL: no fsync), so the loop never waits for
 * itself, and what the loop's transaction raises goes out behind the group's.
 *
 * With [sync] synchronous = normal there is no sync thread: every group commits at NORMAL and
 * is answered at its commit (store.h "Lazy commits"). Should the sync thread not start, each
 * group's COMMIT runs at FULL.
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

/* Commits the open group now, waits on the loop for its sync, and sends what is decided (a
 * connection in a call gets it before that call's answer; server.c). 0, or TALLY_E_BUSY when a
 * write is open in the group (nothing done), or the commit's error (the held answers fail with
 * it). Only for a read that must see its connection's write while tallyd is stopping. */
int gcommit_flush(struct tallyd *d);

/*
 * Makes every commit so far durable without an fsync on the loop (store.h "Lazy commits"): 0
 * when a sync will (asked now, or after the one running); its end wakes the sync engine
 * (sync_writer_free) and clears store_sends_unsynced. TALLY_E_BUSY when no sync thread runs
 * (the caller commits durably itself).
 */
int gcommit_barrier(struct tallyd *d);

/* Runs what a write job's commit raised (worker.c), behind the groups committed before it
 * that are not answered yet. */
struct store_ready;
void gcommit_run_ready(struct tallyd *d, struct store_ready *list);

/* Answers held and not yet sent (tests, status). */
size_t gcommit_held(const struct tallyd *d);

/* Group commit is running (started, tallyd not stopping). */
bool gcommit_active(const struct tallyd *d);
/* A group's COMMIT is running on the commit thread: writes wait (rpc_must_wait). */
bool gcommit_committing(const struct tallyd *d);
/* A group's COMMIT runs, or answers wait for a sync (status: commit_in_flight). */
bool gcommit_in_flight(const struct tallyd *d);
/* Groups handed to the commit thread since the start (tests). */
uint64_t gcommit_off_loop(const struct tallyd *d);
/* Groups committed since the start, on the commit thread or the loop (status). */
uint64_t gcommit_commits(const struct tallyd *d);
/* Syncs of the WAL done by the sync thread since the start (status, tests). */
uint64_t gcommit_syncs(const struct tallyd *d);
/* Groups commit at NORMAL and wait for the sync thread (synchronous = full, thread running). */
bool gcommit_lazy(const struct tallyd *d);

/* Tests only: when set, the commit thread calls it before each COMMIT (to hold a commit in
 * flight while the test looks at the loop). NULL in tallyd. */
extern void (*gcommit_test_before_commit)(void);
/* Tests only: when set, the sync thread calls it before each sync (to hold one); a non-zero
 * return is taken as that sync's error (TALLY_E_*), the WAL not synced. NULL in tallyd. */
extern int (*gcommit_test_before_sync)(void);

#endif
