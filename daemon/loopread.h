/*
 * The loop's hot reads (stock.get) on a read-only connection of their own, one read
 * transaction for a loop turn's reads instead of one per statement.
 *
 * A read transaction in WAL mode takes and drops a lock of the WAL index (two fcntl calls)
 * and SQLite begins and ends it: at 50 connections a fifth of the loop's CPU per answer. Here
 * the first read of a turn begins one (BEGIN, the snapshot at its first statement) and the
 * turn's end ends it (a uv_check handle: after the turn's I/O callbacks, so at one connection
 * the end comes after the answer is written, not before). In between every read takes the same
 * snapshot, unless something was committed since it began:
 * - any commit of tallyd's connections (store_commit_seq: the loop's, the group's, the write
 *   jobs', each numbered after its COMMIT returned, before any client is told of it), and any
 *   change the loop's own connection made (its total changes), end it first: a client told
 *   that its write is done reads it;
 * - another process's commit (an operator's sqlite3 shell) is seen from the next turn on.
 * It is also ended before the loop waits (a uv_prepare handle): a read made after the turn's
 * check handle ran (gcommit.c's on_check takes up waiting reads in the check phase) or before
 * the wait (server.c's on_resume, in the idle phase) would otherwise keep its snapshot over the
 * wait, for the request that wakes the loop to read, and its WAL frames pinned as long. So it
 * never holds a WAL frame over a wait, and a commit made while the loop waited is read. Its own
 * connection: a transaction open on the loop's would be in the way of that connection's
 * writes (BEGIN IMMEDIATE, autocommit ones).
 */
#ifndef TALLY_LOOPREAD_H
#define TALLY_LOOPREAD_H

struct tallyd;
struct store;

/* Opens the connection (after the replica's migrations) and its handle on d->loop: 0, or -1
 * (said in the log) when it cannot, and then every read stays on d->store. */
int loopread_start(struct tallyd *d);
/* The connection to read from now, its transaction open and up to date as above; d->store
 * when not started (or when its BEGIN fails). On the loop only. */
struct store *loopread(struct tallyd *d);
/* Ends the transaction and closes the handle (before the loop's last run); loopread then
 * answers d->store. */
void loopread_stop(struct tallyd *d);
/* After the loop has run out: closes the connection. */
void loopread_free(struct tallyd *d);

#endif
