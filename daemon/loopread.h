/*
 * The loop's hot reads (stock.get) on a read-only connection of their own, in a read
 * transaction shared by the reads of a millisecond or two instead of one per statement.
 *
 * A read transaction in WAL mode takes and drops a lock of the WAL index (two fcntl calls)
 * and SQLite begins and ends it: about 3 us of the loop's CPU, a tenth of what an answer
 * costs at one connection, where each request comes in a turn of its own. Here a read with no
 * transaction open begins one (BEGIN, the snapshot at its first statement), and later reads
 * take the same snapshot, in this turn or later ones, unless:
 * - tallyd committed something since it began (store_commit_seq: the loop's, the group's, the
 *   write jobs' commits, each numbered after its COMMIT returned, before any client is told of
 *   it), or the loop's own connection changed something (its total changes): it is ended
 *   first, so a client told that its write is done reads it;
 * - it is LOOPREAD_HOLD_MS old (the loop's clock, uv_now, whole milliseconds; libuv reads a
 *   coarse clock where the kernel's is 1 ms fine or finer, which may be 1 ms behind): ended first.
 * It is also ended by a timer once that old (a timerfd, armed once per transaction, whose
 * expiry the loop reads in its poll phase whether it waited or not), so an idle loop holds no
 * snapshot, nor does a busy one for longer. So no WAL frame stays pinned by it for more than
 * about LOOPREAD_HOLD_MS + 2 ms plus a turn (a checkpoint's TRUNCATE that met it is retried on
 * a timer, privacy.c), and a commit of another process (an operator's sqlite3 shell: not an
 * interface of tallyd) is read as late as that after it.
 *
 * Answers kept (stock.get's, by SKU): an answer read in one snapshot is the same in any
 * snapshot holding the same data, so it is kept with the id of the data it was read from and
 * given again while the id is the same. Each transaction begins by reading the connection's
 * data version (PRAGMA data_version, which also takes the snapshot): SQLite changes it when any
 * other connection committed since this one last read, and this connection never writes, so
 * every commit of tallyd's (the loop's, the group's, the write jobs', the workers') and of any
 * other process moves it. The same version as the transaction before keeps the id; another one
 * is a new id, and every answer kept before is stale at once (nothing to walk or free). So an
 * answer given from here is what the statement would have read in this snapshot, no older:
 * the rules above for when a snapshot ends hold for it unchanged.
 * Its own connection: a transaction open on the loop's would be in the way of that
 * connection's writes (BEGIN IMMEDIATE, autocommit ones).
 */
#ifndef TALLY_LOOPREAD_H
#define TALLY_LOOPREAD_H

#include <stddef.h>
#include <stdint.h>

struct tallyd;
struct store;

/* How long a read transaction of the loop's may serve reads (milliseconds, see above). */
#define LOOPREAD_HOLD_MS 1

/* Opens the connection (after the replica's migrations) and its handle on d->loop: 0, or -1
 * (said in the log) when it cannot, and then every read stays on d->store. */
int loopread_start(struct tallyd *d);
/* The connection to read from now, its transaction open and up to date as above; d->store
 * when not started (or when its BEGIN fails). On the loop only. */
struct store *loopread(struct tallyd *d);
/* An answer kept for `key` (klen <= LOOPREAD_KEY_MAX bytes) by loopread_keep and read from
 * data the same as the snapshot loopread() just gave holds: its bytes (valid until the next
 * loopread_keep), with *len; NULL when there is none (then read it from loopread()'s
 * connection). Call right after loopread(), on the loop only. */
#define LOOPREAD_KEY_MAX 64
#define LOOPREAD_ANSWER_MAX 4096 /* longer answers are not kept */
#define LOOPREAD_SLOTS 4096      /* answers kept at most, two slots to a hash (even) */
const void *loopread_answer(struct tallyd *d, const char *key, size_t klen, size_t *len);
/* Keeps `answer` (len bytes, copied) for `key`, read from loopread()'s connection in the
 * snapshot loopread() just gave (call before the next loopread()). It may replace another
 * key's (two slots per hash). Nothing when reads are on d->store, or the answer or key too long. */
void loopread_keep(struct tallyd *d, const char *key, size_t klen, const void *answer, size_t len);
/* Answers given by loopread_answer since tallyd started. */
uint64_t loopread_given(const struct tallyd *d);
/* Ends the transaction and closes the handle (before the loop's last run); loopread then
 * answers d->store. */
void loopread_stop(struct tallyd *d);
/* After the loop has run out: closes the connection. */
void loopread_free(struct tallyd *d);

#endif
