/*
 * Unit: work held for a transaction's commit (store_after_commit), which is how events raised
 * inside a transaction reach watchers only if what raised them is kept: run in order after a
 * commit, dropped after a rollback, after a failed commit and after SQLite rolled back on its
 * own; run at once outside a transaction. And store_begin_nowait: with the process's writer
 * lock held elsewhere, busy at once and nothing begun; free, a transaction like store_begin's.
 * And store_set_foreign_keys: off for a job, back on after it, and no transaction begun without
 * them after a turn back on that failed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "store.h"
#include "tally/protocol.h"

static char ran[256];

static void note(void *arg, const void *data, size_t len)
{
    (void)arg;
    strncat(ran, data, len < sizeof ran - strlen(ran) - 1 ? len : 0);
}

static int exec(struct store *st, const char *sql)
{
    return sqlite3_exec(store_db(st), sql, NULL, NULL, NULL);
}

int main(void)
{
    char dir[] = "/tmp/tally-storetx.XXXXXX", path[128], err[256];
    if (!mkdtemp(dir))
        return 2;
    snprintf(path, sizeof path, "%s/r.db", dir);
    struct store *st = NULL;
    if (store_open(path, false, &st, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return 2;
    }
    CHECK_EQ_INT(exec(st,
                      "CREATE TABLE t(x INTEGER);"
                      "CREATE TABLE p(id INTEGER PRIMARY KEY);"
                      "CREATE TABLE c(p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"),
                 SQLITE_OK);

    /* Outside a transaction: at once. */
    CHECK(!store_in_tx(st));
    CHECK_EQ_INT(store_after_commit(st, note, NULL, "a", 1), 0);
    CHECK_EQ_STR(ran, "a");

    /* Committed: after the commit, in order, not before. */
    ran[0] = 0;
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK(store_in_tx(st));
    store_after_commit(st, note, NULL, "b", 1);
    store_after_commit(st, note, NULL, "c", 1);
    CHECK(store_held_bytes(st) > 0);
    CHECK_EQ_STR(ran, "");
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK_EQ_STR(ran, "bc");
    CHECK(!store_in_tx(st));
    CHECK_EQ_INT(store_held_bytes(st), 0);

    /* Rolled back: never. */
    ran[0] = 0;
    CHECK_EQ_INT(store_begin(st), 0);
    store_after_commit(st, note, NULL, "d", 1);
    store_rollback(st);
    CHECK(!store_in_tx(st));
    CHECK_EQ_INT(store_held_bytes(st), 0);
    CHECK_EQ_STR(ran, "");

    /* A commit that fails (a deferred constraint, as a full disk would): never, and the
     * transaction is over. */
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK_EQ_INT(exec(st, "INSERT INTO c VALUES(-1)"), SQLITE_OK);
    store_after_commit(st, note, NULL, "e", 1);
    CHECK(store_commit(st) != 0);
    CHECK(!store_in_tx(st));
    CHECK_EQ_STR(ran, "");
    CHECK_EQ_INT(store_begin(st), 0); /* a new one can start: nothing held from before */
    CHECK_EQ_INT(store_held_bytes(st), 0);
    store_after_commit(st, note, NULL, "f", 1);
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK_EQ_STR(ran, "f");

    /* SQLite ended the transaction itself (here a ROLLBACK behind the store's back, as it does
     * on SQLITE_FULL): the commit fails and what was held is dropped. */
    ran[0] = 0;
    CHECK_EQ_INT(store_begin(st), 0);
    store_after_commit(st, note, NULL, "g", 1);
    CHECK_EQ_INT(exec(st, "ROLLBACK"), SQLITE_OK);
    CHECK(store_commit(st) != 0);
    CHECK(!store_in_tx(st));
    CHECK_EQ_STR(ran, "");

    /* store_begin_nowait: another thread's transaction holds the writer lock (held here, as
     * that thread would hold it): busy at once, no transaction, the lock left to its holder. */
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    store_set_writer_lock(st, &mu);
    pthread_mutex_lock(&mu);
    bool held = false;
    CHECK_EQ_INT(store_begin_nowait(st, &held), TALLY_E_BUSY);
    CHECK(held);
    CHECK(!store_in_tx(st));
    pthread_mutex_unlock(&mu);
    /* free: begun, holding the lock until the commit lets it go */
    CHECK_EQ_INT(store_begin_nowait(st, &held), 0);
    CHECK(!held);
    CHECK(store_in_tx(st));
    CHECK(pthread_mutex_trylock(&mu) != 0);
    CHECK_EQ_INT(exec(st, "INSERT INTO t VALUES(7)"), SQLITE_OK);
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK(pthread_mutex_trylock(&mu) == 0);
    pthread_mutex_unlock(&mu);
    store_set_writer_lock(st, NULL);

    /* store_set_foreign_keys: off for a job, an orphan row is taken; back on, refused. */
    CHECK_EQ_INT(exec(st, "CREATE TABLE k(p INTEGER REFERENCES p(id))"), SQLITE_OK);
    CHECK_EQ_INT(store_set_foreign_keys(st, false), 0);
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK_EQ_INT(store_set_foreign_keys(st, true), TALLY_E_STORAGE); /* not inside one */
    CHECK_EQ_INT(exec(st, "INSERT INTO k VALUES(-2)"), SQLITE_OK);
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK_EQ_INT(store_set_foreign_keys(st, true), 0);
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK(exec(st, "INSERT INTO k VALUES(-3)") != SQLITE_OK);
    store_rollback(st);
    /* A turn back on that does not take (here: inside a transaction the store does not know
     * of, where SQLite ignores the pragma) leaves them off; the next transaction turns them on
     * first, and none begins without them. */
    CHECK_EQ_INT(store_set_foreign_keys(st, false), 0);
    CHECK_EQ_INT(exec(st, "BEGIN"), SQLITE_OK);
    CHECK_EQ_INT(store_set_foreign_keys(st, true), TALLY_E_STORAGE);
    CHECK_EQ_INT(exec(st, "COMMIT"), SQLITE_OK);
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK(exec(st, "INSERT INTO k VALUES(-4)") != SQLITE_OK);
    store_rollback(st);

    store_close(st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_result("test_store_tx");
}
