/*
 * The replica: one SQLite database in WAL mode, opened once by tallyd, migrated at start.
 *
 * Statements are prepared once and cached by the address of their SQL text, so SQL stays
 * next to the code that runs it and is never built from input: every value is bound.
 * store_stmt() hands out a reset statement with cleared bindings; the caller steps it and
 * need not reset it (the next store_stmt() of the same SQL does).
 */
#ifndef TALLY_STORE_H
#define TALLY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <sqlite3.h>

struct store;

/* How long the loop's connection waits for a lock another process holds (an operator's
 * sqlite3 shell in a transaction, a backup): short, so nothing stalls the loop. Readers are
 * not concerned: in WAL mode a read never waits for a writer. */
#define STORE_BUSY_MS 2

/*
 * Opens (creating if needed) the replica at `path`, sets WAL mode and the synchronous level
 * (FULL when sync_full: every commit is fsynced before it returns, which is what makes an
 * acknowledged write durable), and runs pending schema migrations. Refuses a database whose
 * schema is newer than this build knows. Returns 0, or -1 with a message in err.
 */
int store_open(const char *path, bool sync_full, struct store **out, char *err, size_t errlen);
void store_close(struct store *st); /* NULL is a no-op */

/*
 * One more connection to the replica store_open opened and migrated (worker.c's threads):
 * refuses any other schema version, runs no migration, keeps a busy timeout of 5 s (it never
 * runs on the loop). `readonly` opens it read-only (long reads: reports, exports, counts).
 * A connection is used by one thread at a time.
 */
int store_open_extra(const char *path, bool sync_full, bool readonly, struct store **out, char *err,
                     size_t errlen);
/* The connection's page cache, in KiB (every connection opens with 8 MiB: the loop's, which
 * answers queries, and the writer's, which applies bulk loads). Connections that do not need
 * it take less, so that tallyd keeps within its memory budget on a large replica (README
 * "Performance"): 0 or a TALLY_E_* code. */
int store_set_cache_kib(struct store *st, int kib);

/*
 * One writer at a time, in the process (README "Architecture"): every connection that writes
 * is given the same mutex; store_begin takes it before BEGIN IMMEDIATE and the transaction's
 * end (commit, rollback, failed begin) releases it. A thread holds it for one transaction
 * only and never waits for another thread while holding it, so it cannot deadlock; the loop
 * waits at most for one worker transaction, which workers keep to about a millisecond
 * (WORKER_SLICE_US, worker.h). Writes outside store_begin (autocommit) do not take it: on the
 * loop they fail with TALLY_E_BUSY after STORE_BUSY_MS, like any lock held elsewhere.
 */
void store_set_writer_lock(struct store *st, pthread_mutex_t *mu);
/* Whether a thread is blocked waiting for the writer lock now: a bulk job holding it ends its
 * transaction early (titleidx.c, the inventory slices) so the waiter gets it at once. */
bool store_writer_wanted(void);
/* Marks the connection's transactions as bulk work (the slices of warehouse pages): while its
 * thread waits for the writer lock it does not count in store_writer_wanted, so bulk jobs do
 * not end one another's transactions early (four inventory streams at once cut each other's
 * slices to a millisecond, a commit each, and handed the lock round and round); every other
 * waiter (the loop, a client's write, a checkpoint, the title index) still does. Set and
 * cleared outside a transaction by the job that uses the connection. */
void store_set_bulk(struct store *st, bool bulk);

/*
 * On a worker's connection, work held with store_after_commit must run on the loop, not on
 * the worker's thread: with keep on, a commit moves it to a ready list instead of running it;
 * store_take_ready takes that list (NULL when empty) for store_ready_run on the loop (which
 * frees it) or store_ready_free.
 */
struct store_ready;
void store_keep_held(struct store *st, bool keep);
struct store_ready *store_take_ready(struct store *st);
void store_ready_run(struct store_ready *list);
void store_ready_free(struct store_ready *list);
/* The list a, then b (either may be NULL). */
struct store_ready *store_ready_join(struct store_ready *a, struct store_ready *b);

/* Steps one cached statement that returns no row (BEGIN, COMMIT): 0, or a TALLY_E_* code (said
 * in the log, as store_error says). */
int store_run(struct store *st, const char *sql, const char *what);

sqlite3 *store_db(struct store *st);
const char *store_path(const struct store *st);
int store_schema_version(struct store *st);

/* Cached prepared statement for `sql` (a string literal), or NULL (logged). */
sqlite3_stmt *store_stmt(struct store *st, const char *sql);

/* Transactions. begin is BEGIN IMMEDIATE: a writer takes the lock up front, never upgrades.
 * A failed commit rolls back. */
int store_begin(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);
/*
 * As store_begin, but without waiting for the process's writer lock: when another thread (a
 * write job, worker.h) holds it, returns TALLY_E_BUSY at once with *held_elsewhere set, and
 * nothing is begun. For background work on the loop that can come back a moment later (the
 * fulfilment pass), so the loop never waits for a worker's transaction. held_elsewhere may
 * be NULL.
 */
int store_begin_nowait(struct store *st, bool *held_elsewhere);

/*
 * Lazy commits. A connection's own level is FULL by default ([sync] synchronous): each COMMIT
 * is fsynced before it returns. A transaction begun with STORE_LAZY runs at NORMAL: its COMMIT
 * writes the WAL and returns without an fsync. A process crash (kill -9) loses nothing of it;
 * a power cut may lose it, with every later commit not durable either, never a part of it
 * and never an earlier one: the commits that survive a cut are a prefix (WAL frames are
 * checksummed in a chain; recovery stops at the first one not written), and a durable commit
 * makes every commit before it durable (it syncs the whole WAL). For work that is redone
 * when lost, so the loop does not wait for an fsync (DESIGN.md "nothing holds the loop"):
 * pulled pages (their checkpoint is in the same transaction), push outcomes (the row is sent
 * again; the upstream deduplicates by key), the fulfilment pass's decisions (made again).
 *
 * What leaves the station must be durable before it leaves. Rows to send are appended by
 * outbox_append, which calls store_note_send: when the transaction is not durable, the
 * process's sends are unsynced from its commit on, until a durable commit. A transaction
 * begun with STORE_SEND (the sync engine's take of rows to send) is durable while they are
 * unsynced, lazy otherwise: whatever it takes was made durable by then. Clients' groups
 * commit at NORMAL too and are answered after a sync (gcommit.h "Syncs"), so their rows are
 * unsynced until it; the sync engine then takes lazily and sends once a sync covers the take
 * (sync.c TAKE_PARK).
 *
 * With [sync] synchronous = normal every commit is lazy (the window, tests/README "Power
 * cuts"). The level changes only outside a transaction (SQLite refuses it inside one).
 */
/*
 * STORE_SEND_STATE: a take of values computed from the replica's state rather than of rows
 * appended to send (the marketplace stock figures, sync.c take_publish): any lazy commit that
 * changed rows (a reservation, a pulled page) may be in them, so it is durable while one is
 * not yet followed by a durable commit, lazy otherwise. (Were it lazy, a power cut could undo
 * the state a figure was computed from and the record of its publication, while the
 * marketplace shows it; a later figure equal to the restored record would not be sent.)
 */
enum store_durability { STORE_DURABLE = 0, STORE_LAZY, STORE_SEND, STORE_SEND_STATE };
int store_begin_as(struct store *st, enum store_durability how);
int store_begin_nowait_as(struct store *st, enum store_durability how, bool *held_elsewhere);
/*
 * As store_begin_as, for the loop's own work that can come back a moment later: it never waits
 * for a group commit (the before_begin callback is asked not to wait: an open group is handed
 * to its commit thread and TALLY_E_BUSY returned, nothing begun). It may still wait for the
 * writer lock held by a write job's transaction (about WORKER_SLICE_US).
 */
int store_begin_yield(struct store *st, enum store_durability how);
/* The last store_begin_yield or store_begin_nowait(_as) answered TALLY_E_BUSY because it gave
 * way to a group commit (not because another process holds the database's lock). */
bool store_yielded(const struct store *st);
/* The open transaction appends rows that will be sent upstream (outbox.c). */
void store_note_send(struct store *st);
/* The open transaction appended such rows (they must not be taken in it unless it is durable). */
bool store_tx_sends(const struct store *st);
/* Sends appended by a commit not durable, not made durable since (tests, status). */
bool store_sends_unsynced(void);
/* A commit that was not durable changed rows, not made durable since (STORE_SEND_STATE). */
bool store_state_unsynced(void);

/*
 * Syncs. Every commit, on any connection, takes the next number (in commit order, before its
 * writer lock is released); store_last_seq is that of the connection's last commit. Every
 * commit numbered up to store_durable_seq is durable: a durable commit that changed rows
 * raises it to its own number (it synced the whole WAL; one that changed nothing wrote no frame
 * and synced nothing), and so does store_synced(n) after a sync of the WAL that
 * began once commit n had returned (gcommit.c's sync thread reads store_commit_seq, then
 * syncs). The unsynced states above are kept by these numbers.
 */
uint64_t store_commit_seq(void);
uint64_t store_durable_seq(void);
uint64_t store_last_seq(const struct store *st);
void store_synced(uint64_t seq);
/* Opens the WAL on this connection (a read of the schema's version) and checks that SQLite
 * hands out its file object: 0 or TALLY_E_STORAGE. The connection must then stay without a
 * transaction: its only use is store_sync_wal. */
int store_wal_attach(struct store *st);
/* Makes everything written to the replica's WAL so far durable, through this connection's
 * own handle of the WAL file and SQLite's VFS (its xSync, as a commit at synchronous = FULL
 * syncs the WAL; the power-cut shim sees it): 0, or TALLY_E_STORAGE / TALLY_E_DISK_FULL. Safe
 * on its own thread while other connections write: it touches no SQLite state but the file's. */
/*
 * A sync of the replica's WAL that failed: the sync thread's (store_sync_wal) or the one inside
 * a COMMIT at synchronous = FULL (SQLITE_IOERR_FSYNC). After an fsync error the kernel may
 * have dropped the pages it could not write and marked them clean, so a later sync that
 * succeeds says nothing of them: commits after them would be acknowledged and still be lost
 * at a power cut (WAL recovery stops at the first frame that is not on the disk). Only a start
 * reads what the disk holds. `hook` is called on the thread that saw the failure, with what
 * failed and SQLite's code; tallyd's stops the process at once (main.c), tests observe it.
 * A checkpoint syncs the WAL before it copies: its failed sync is this too (store_check_sync).
 */
void store_set_wal_sync_failed(void (*hook)(const char *what, int rc));
/* Calls that hook when `rc` (SQLite's, extended) is SQLITE_IOERR_FSYNC, for what syncs outside
 * a COMMIT: a checkpoint (it syncs the WAL before it copies; a failed sync of the database file
 * after the copy stops tallyd too, as SQLite says the same of both), a write outside an
 * explicit transaction. */
void store_check_sync(int rc, const char *what);
int store_sync_wal(struct store *st);
/* On a connection whose committed work runs at once (not store_keep_held): `gate` is offered
 * the list first and returns true when it takes it (to run it later, with store_ready_run, in
 * order after work committed before it; gcommit.c), false to let it run now. */
void store_set_ready_gate(struct store *st, bool (*gate)(void *, struct store_ready *), void *arg);
/* Sets the connection's own level (a write job's connection for its bulk work), outside a
 * transaction: 0, or a TALLY_E_* code and the level unchanged. */
int store_set_durable(struct store *st, bool full);
/*
 * Turns the connection's triggers off or back on (SQLITE_DBCONFIG_ENABLE_TRIGGER), outside a
 * transaction: 0, or a TALLY_E_* code and the setting unchanged. For one writer only: the
 * catalog import's set-based statements (importer.c), which do the triggers' work themselves,
 * once per call, and turn them back on before the connection does anything else (every other
 * write, on this connection or another, keeps them). Every statement of the connection is
 * prepared again at its next step after a change.
 */
int store_set_triggers(struct store *st, bool on);
bool store_triggers_on(const struct store *st);
/*
 * Turns the connection's foreign key checks off or back on (PRAGMA foreign_keys), outside a
 * transaction and never in group mode: 0, or a TALLY_E_* code. For the one job whose every
 * row's parents are found in its own statements, in the same transaction (a warehouse page:
 * the SKU by its code, or a placeholder made for it; the warehouse by its code, sync.c
 * page_run): the checks cost 15% of the writer's CPU in an initial sync and could never fail
 * there. Everything else keeps them: the job releases them when it ends
 * (store_release_foreign_keys), and a connection whose checks are off and not wanted off
 * begins no transaction until they are back on (store_begin_as turns them on first, and
 * refuses to begin when that fails), so no other write runs without them.
 *
 * Each change is a flag pragma, which expires every statement the connection has prepared:
 * each is prepared again at its next step (the 64-row batch upsert of a page, 0.1 ms). So
 * releasing leaves them off: the next job that wants them off (the next page) finds them off
 * and changes nothing, and any other turns them on (worker.c does so before a write job that
 * does not say worker_job.fk_off, for its statements outside a transaction too).
 */
int store_set_foreign_keys(struct store *st, bool on);
void store_release_foreign_keys(struct store *st);

/*
 * Checkpoints off the committing thread. SQLite checkpoints the WAL inside the COMMIT that
 * takes it past 1000 frames, on whichever connection that is: fsyncs and page copies inside
 * the loop's commit, or inside a worker's while it holds the writer lock the loop may want.
 * store_defer_checkpoints turns that off for a connection (tallyd's own) and calls `due` (on
 * that connection's thread, after its commit) when the WAL holds STORE_CHECKPOINT_FRAMES or
 * more; store_checkpoint_passive, on a connection with no transaction open, then copies what
 * it can without waiting for readers or writers (worker.c runs it on a connection of its own,
 * beside the write jobs). Frames seen at the last commit of such a connection:
 * store_wal_frames (a checkpoint that copied all it saw sets it to 0 unless a commit counted
 * more meanwhile).
 */
#define STORE_CHECKPOINT_FRAMES 1000
void store_defer_checkpoints(struct store *st, void (*due)(void *), void *arg);
int store_wal_frames(void);
/* 0 (busy counts as done: another checkpoint runs), or a TALLY_E_* code. */
int store_checkpoint_passive(struct store *st, int *log_frames, int *copied);

/* Whether a transaction begun by store_begin is open (or, in group mode, the group's). */
bool store_in_tx(const struct store *st);

/*
 * Group commit (gcommit.h): writes arriving in one loop turn share one transaction (and the
 * groups committed during one sync share the next). With group mode on, store_begin opens the
 * group's transaction if it is not open (BEGIN IMMEDIATE, taking the writer lock) and a
 * SAVEPOINT for the write; store_commit releases the savepoint (nothing is durable yet: the
 * write's answer waits for store_group_commit and a sync); store_rollback undoes that write alone,
 * what it held included. Work held with store_after_commit waits for the group's commit. When
 * SQLite rolled the whole transaction back on its own (e.g. SQLITE_FULL), every write of the group
 * is lost: store_group_take_lost then answers its TALLY_E_* code once (0 when none was lost).
 * store_group_commit commits the group (0 when none is open) and releases the writer lock;
 * a failed commit rolls everything back and returns its code.
 */
void store_group_enable(struct store *st, bool on);
bool store_group_open(const struct store *st);
/* A write's savepoint is open (the group cannot be committed now). */
bool store_group_in_write(const struct store *st);
int store_group_commit(struct store *st);
int store_group_take_lost(struct store *st);
/*
 * store_group_commit in three steps, so that the COMMIT can run on another
 * thread (gcommit.c's commit thread) while the loop goes on: store_group_detach, on the
 * thread that owns the connection, closes the group to new writes (1; 0 when none is open;
 * TALLY_E_BUSY when a write is open, nothing done); store_group_commit_run, on any one thread
 * while no other uses the connection, runs COMMIT (a failed one rolls back) and returns 0 or
 * its code; store_group_commit_end, back on the thread that began the group (it holds the
 * writer lock), releases the writer lock and readies or drops what was held, by that code.
 */
int store_group_detach(struct store *st);
int store_group_commit_run(struct store *st);
void store_group_commit_end(struct store *st, int r);
/*
 * Called by store_begin before it begins a transaction of its own (not in group mode); a
 * non-zero return is store_begin's, nothing begun. The loop's connection uses it to commit
 * an open group first: both take the one writer lock, on the same thread. `wait` is false for
 * store_begin_nowait(_as) and store_begin_yield: the callback must not wait for a commit then
 * (it hands an open group to the commit thread and answers TALLY_E_BUSY).
 */
void store_set_before_begin(struct store *st, int (*fn)(void *, bool wait), void *arg);

/*
 * Work that must happen only if what the open transaction wrote is kept (announcing it to
 * watchers): inside a transaction, `fn(arg, data, len)` runs after a successful store_commit,
 * in the order held, and not at all after a rollback or a failed commit (the bytes are
 * copied); outside a transaction it runs at once. Returns 0 or TALLY_E_NOMEM (nothing held).
 */
typedef void (*store_commit_fn)(void *arg, const void *data, size_t len);
int store_after_commit(struct store *st, store_commit_fn fn, void *arg, const void *data,
                       size_t len);
/* Memory held so far for the open transaction (bytes, with each item's overhead). */
size_t store_held_bytes(const struct store *st);

/*
 * Maps an SQLite result code to a TALLY_E_* code, logging unexpected ones with `what`:
 * SQLITE_FULL -> TALLY_E_DISK_FULL, SQLITE_NOMEM -> TALLY_E_NOMEM, SQLITE_BUSY/LOCKED ->
 * TALLY_E_BUSY (another process holds the lock: nothing was written, retry), others ->
 * TALLY_E_STORAGE.
 */
int store_error(struct store *st, int rc, const char *what);

/* Small helpers for one-value queries; return the value or `dflt` when no row. */
int64_t store_count(struct store *st, const char *sql, int64_t dflt);

/*
 * Whether stock changes mark their SKU for marketplace publishing (the coordinator with a
 * marketplace configured). Off by default: an offline station pays nothing for it.
 */
void store_set_publish(struct store *st, bool on);
bool store_publishes(const struct store *st);

/* Wall clock in seconds since the epoch (one place, so tests could pin it). */
int64_t store_now(void);

/* Number of schema migrations this build knows (schema.c). */
int schema_latest(void);
/* Runs migrations after `from` up to schema_latest(), each in its own transaction. */
int schema_migrate(sqlite3 *db, int from, char *err, size_t errlen);
/* The same, up to version `to` only (tests build a replica of an older schema with it). */
int schema_migrate_to(sqlite3 *db, int from, int to, char *err, size_t errlen);

#endif
