/*
 * Unit: lazy commits (store.h "Lazy commits"). Through a VFS that counts the syncs SQLite asks
 * for on the replica's files:
 *  - a durable transaction's commit syncs; a lazy one's does not, and the connection's own
 *    level (FULL) is back after it, after a rollback and after a failed begin;
 *  - a lazy commit that appended rows to send marks the sends unsynced; a STORE_SEND
 *    transaction is then durable (it syncs, and clears the mark), otherwise lazy;
 *  - a durable commit of any kind clears the mark; a lazy one without rows to send leaves it;
 *  - on a connection at NORMAL ([sync] synchronous = normal) nothing syncs at commit and the
 *    mark stays (nothing there is durable at commit);
 *  - store_set_durable changes the level outside a transaction only;
 *  - a STORE_SEND_STATE take (the marketplace's figures) is durable while a lazy commit that
 *    changed rows waits, sends or not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "outbox.h"
#include "store.h"
#include "tally/protocol.h"

/* ---- a VFS that counts xSync on every file it opens ---- */

static sqlite3_vfs *real;
static int syncs;
/* Each method table the real VFS hands out (they differ by file), copied with xSync counted. */
#define TABLES 8
static struct {
    const sqlite3_io_methods *orig;
    sqlite3_io_methods copy;
} tables[TABLES];

static const sqlite3_io_methods *orig_of(sqlite3_file *f)
{
    for (int i = 0; i < TABLES; i++)
        if (f->pMethods == &tables[i].copy)
            return tables[i].orig;
    return NULL;
}

/* Run once at the next xSync, before it (then disarmed): a commit of another connection in the
 * middle of a checkpoint's copy. */
static void (*at_next_sync)(void);

static int counted_sync(sqlite3_file *f, int flags)
{
    syncs++;
    void (*fn)(void) = at_next_sync;
    at_next_sync = NULL;
    if (fn)
        fn();
    return orig_of(f)->xSync(f, flags);
}

static int counting_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
    (void)v;
    int rc = real->xOpen(real, name, f, flags, out);
    if (rc != SQLITE_OK || !f->pMethods)
        return rc;
    for (int i = 0; i < TABLES; i++) {
        if (!tables[i].orig) {
            tables[i].orig = f->pMethods;
            tables[i].copy = *f->pMethods;
            tables[i].copy.xSync = counted_sync;
        }
        if (tables[i].orig == f->pMethods) {
            f->pMethods = &tables[i].copy;
            return rc;
        }
    }
    abort(); /* more tables than this test expects */
}

static sqlite3_vfs counting;

static int level(struct store *st)
{
    sqlite3_stmt *s = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(store_db(st), "PRAGMA synchronous", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int append(struct store *st, const char *key)
{
    int64_t id;
    return outbox_append(st, key, "wh:ES-MAD", "SKU-1", OBX_MOVEMENT, "\x80", 1, &id);
}

/* Commits one transaction begun as `how` with one row (a row to send when `send`); the syncs
 * its commit asked for, or -1 when it failed. */
static int one(struct store *st, enum store_durability how, const char *key, bool send)
{
    if (store_begin_as(st, how) != 0)
        return -1;
    int r = send ? append(st, key)
                 : sqlite3_exec(store_db(st), "INSERT INTO t VALUES(1)", NULL, NULL, NULL);
    if (r != 0) {
        store_rollback(st);
        return -1;
    }
    int before = syncs;
    if (store_commit(st) != 0)
        return -1;
    return syncs - before;
}

/* The writer of the checkpoint case below: its commit lands while the checkpoint copies. */
static struct store *ck_writer;
static int ck_commit_rc = -1;

static void commit_during_checkpoint(void)
{
    ck_commit_rc = store_begin_as(ck_writer, STORE_LAZY);
    for (int i = 0; ck_commit_rc == 0 && i < 5; i++)
        ck_commit_rc = sqlite3_exec(store_db(ck_writer), "INSERT INTO t VALUES(zeroblob(3000))",
                                    NULL, NULL, NULL);
    if (ck_commit_rc == 0)
        ck_commit_rc = store_commit(ck_writer);
    else
        store_rollback(ck_writer);
}

/*
 * A PASSIVE checkpoint on a connection of its own (worker.c's JOB_CKPT) beside a writer that
 * commits while it copies: the checkpoint copies (and reports) the frames of its snapshot
 * only, so "all copied" does not mean the WAL is empty; store_wal_frames must still count the
 * frames the writer appended meanwhile (the writer's hook said so), not 0.
 */
static void test_checkpoint_beside_writer(const char *dir)
{
    char path[160], err[256];
    snprintf(path, sizeof path, "%s/ck.db", dir);
    struct store *w = NULL, *ck = NULL;
    if (store_open(path, false, &w, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        CHECK(false);
        return;
    }
    store_defer_checkpoints(w, NULL, NULL);
    CHECK_EQ_INT(sqlite3_exec(store_db(w), "CREATE TABLE t(x BLOB)", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ_INT(store_begin(w), 0);
        CHECK_EQ_INT(
            sqlite3_exec(store_db(w), "INSERT INTO t VALUES(zeroblob(3000))", NULL, NULL, NULL),
            SQLITE_OK);
        CHECK_EQ_INT(store_commit(w), 0);
    }
    int before = store_wal_frames();
    CHECK(before > 0);
    if (store_open_extra(path, false, false, &ck, err, sizeof err) != 0) {
        fprintf(stderr, "store_open_extra: %s\n", err);
        CHECK(false);
        store_close(w);
        return;
    }
    store_defer_checkpoints(ck, NULL, NULL);
    ck_writer = w;
    at_next_sync = commit_during_checkpoint; /* the checkpoint's sync of the WAL, before copying */
    int log_frames = -1, copied = -1;
    CHECK_EQ_INT(store_checkpoint_passive(ck, &log_frames, &copied), 0);
    at_next_sync = NULL;
    CHECK_EQ_INT(ck_commit_rc, 0);
    int after_commit = store_wal_frames(); /* what is in the WAL now */
    printf("checkpoint beside a writer: %d frames before, copied %d of %d, the writer's commit "
           "meanwhile, store_wal_frames %d\n",
           before, copied, log_frames, after_commit);
    CHECK_EQ_INT(copied, before);
    /* the truth: a second checkpoint sees the WAL with the writer's frames */
    int log2 = -1, copied2 = -1;
    CHECK_EQ_INT(
        sqlite3_wal_checkpoint_v2(store_db(ck), NULL, SQLITE_CHECKPOINT_PASSIVE, &log2, &copied2),
        SQLITE_OK);
    CHECK(log2 > before);
    CHECK_EQ_INT(after_commit, log2);
    store_close(ck);
    store_close(w);
}

int main(void)
{
    real = sqlite3_vfs_find(NULL);
    counting = *real;
    counting.zName = "counting";
    counting.xOpen = counting_open;
    sqlite3_vfs_register(&counting, 1);

    char dir[] = "/tmp/tally-lazy.XXXXXX", path[128], path2[128], err[256];
    if (!mkdtemp(dir))
        return 2;
    snprintf(path, sizeof path, "%s/r.db", dir);
    snprintf(path2, sizeof path2, "%s/n.db", dir);
    struct store *st = NULL, *nm = NULL;
    if (store_open(path, true, &st, err, sizeof err) != 0 ||
        store_open(path2, false, &nm, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return 2;
    }
    CHECK_EQ_INT(sqlite3_exec(store_db(st), "CREATE TABLE t(x INTEGER)", NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(store_db(nm), "CREATE TABLE t(x INTEGER)", NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(level(st), 2);

    /* Durable: the commit syncs (the WAL). Lazy: it does not, and FULL is back after it. */
    CHECK(one(st, STORE_DURABLE, NULL, false) >= 1);
    CHECK_EQ_INT(store_begin_as(st, STORE_LAZY), 0);
    CHECK_EQ_INT(level(st), 1);
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK_EQ_INT(level(st), 2);
    CHECK_EQ_INT(one(st, STORE_LAZY, NULL, false), 0);
    CHECK_EQ_INT(level(st), 2);
    /* ... and after a rollback */
    CHECK_EQ_INT(store_begin_as(st, STORE_LAZY), 0);
    store_rollback(st);
    CHECK_EQ_INT(level(st), 2);
    CHECK(!store_sends_unsynced());

    /* Nothing unsynced: a take is lazy. */
    CHECK_EQ_INT(one(st, STORE_SEND, NULL, false), 0);
    /* A lazy commit appends rows to send: unsynced; a lazy commit without rows leaves it so. */
    CHECK_EQ_INT(one(st, STORE_LAZY, "m-1", true), 0);
    CHECK(store_sends_unsynced());
    CHECK_EQ_INT(one(st, STORE_LAZY, NULL, false), 0);
    CHECK(store_sends_unsynced());
    /* A rolled back append marks nothing more (and clears nothing). */
    CHECK_EQ_INT(store_begin_as(st, STORE_LAZY), 0);
    CHECK_EQ_INT(append(st, "m-rolled-back"), 0);
    store_rollback(st);
    CHECK(store_sends_unsynced());
    /* A durable commit that changed nothing writes no frame and syncs nothing: it makes no
     * commit before it durable (the group commit's answers rely on that: gcommit.h). */
    int before = syncs;
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK_EQ_INT(syncs - before, 0);
    CHECK(store_sends_unsynced());
    CHECK(store_state_unsynced());
    /* The take is durable now (it syncs, so every commit before it is durable), and clears. */
    CHECK(one(st, STORE_SEND, NULL, false) >= 1);
    CHECK(!store_sends_unsynced());
    CHECK_EQ_INT(one(st, STORE_SEND, NULL, false), 0);
    /* Any durable commit clears, rows of its own or not; a durable append marks nothing. */
    CHECK_EQ_INT(one(st, STORE_LAZY, "m-2", true), 0);
    CHECK(store_sends_unsynced());
    CHECK(one(st, STORE_DURABLE, NULL, false) >= 1);
    CHECK(!store_sends_unsynced());
    CHECK(one(st, STORE_DURABLE, "m-3", true) >= 1);
    CHECK(!store_sends_unsynced());

    /* A take of values computed from the state (the marketplace's stock figures): durable
     * while a lazy commit that changed rows waits, whether it appended rows to send or not; a
     * lazy commit that changed nothing leaves it lazy. (A plain take stays lazy there: the
     * figures would have left computed from a commit a power cut may undo.) */
    CHECK(!store_state_unsynced());
    CHECK_EQ_INT(one(st, STORE_SEND_STATE, NULL, false), 0); /* its own change: lazy, marks */
    CHECK(store_state_unsynced());
    CHECK(one(st, STORE_DURABLE, NULL, false) >= 1);
    CHECK(!store_state_unsynced());
    CHECK_EQ_INT(store_begin_as(st, STORE_LAZY), 0);
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK(!store_state_unsynced());
    CHECK_EQ_INT(one(st, STORE_LAZY, NULL, false), 0); /* a reservation, a pulled page */
    CHECK(store_state_unsynced());
    CHECK(!store_sends_unsynced());
    CHECK_EQ_INT(store_begin_as(st, STORE_SEND), 0);
    CHECK_EQ_INT(level(st), 1);
    store_rollback(st);
    CHECK_EQ_INT(store_begin_as(st, STORE_SEND_STATE), 0);
    CHECK_EQ_INT(level(st), 2);
    store_rollback(st);
    CHECK(store_state_unsynced()); /* a rollback clears nothing */
    CHECK(one(st, STORE_SEND_STATE, NULL, false) >= 1);
    CHECK(!store_state_unsynced());

    /* store_set_durable: refused inside a transaction; outside, the connection's own level
     * (a write job's bulk work), under which every commit is lazy and sends stay unsynced. */
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK(store_set_durable(st, false) != 0);
    CHECK_EQ_INT(level(st), 2);
    store_rollback(st);
    CHECK_EQ_INT(store_set_durable(st, false), 0);
    CHECK_EQ_INT(level(st), 1);
    CHECK_EQ_INT(one(st, STORE_DURABLE, "m-4", true), 0);
    CHECK(store_sends_unsynced());
    CHECK_EQ_INT(store_set_durable(st, true), 0);
    CHECK(one(st, STORE_SEND, NULL, false) >= 1);
    CHECK(!store_sends_unsynced());

    /* [sync] synchronous = normal: no commit syncs, a take neither; the mark stays. */
    CHECK_EQ_INT(level(nm), 1);
    CHECK_EQ_INT(one(nm, STORE_DURABLE, "n-1", true), 0);
    CHECK(store_sends_unsynced());
    CHECK_EQ_INT(one(nm, STORE_SEND, NULL, false), 0);
    CHECK(store_sends_unsynced());
    CHECK_EQ_INT(level(nm), 1);

    test_checkpoint_beside_writer(dir);

    store_close(st);
    store_close(nm);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_result("test_store_lazy");
}
