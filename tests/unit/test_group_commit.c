/*
 * Unit: the store's group mode (store.h "Group commit"), which gcommit.c uses so that the
 * writes of one loop turn share one transaction: each write is a savepoint, so
 *   - a write that fails undoes itself alone, what it held for the commit included, and its
 *     neighbours are kept;
 *   - a later write sees the earlier ones (a duplicate id is found, stock is checked against
 *     them) before anything is committed; another connection does not;
 *   - a write that leaves a deferred foreign key broken fails at its own end, not at the
 *     group's COMMIT (where it would fail every neighbour);
 *   - a full disk mid-group: either SQLite undid that statement alone (the group goes on and
 *     commits the others) or it rolled the whole group back (store_group_take_lost says
 *     disk_full once, and nothing of the group is in the replica);
 *   - a COMMIT that fails keeps nothing and runs nothing held;
 *   - the writer lock is held from the group's first write to its commit, and the loop's
 *     connection commits an open group before a transaction of its own (before_begin).
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

static long long q64(struct store *st, const char *sql)
{
    sqlite3_stmt *s;
    long long v = -1;
    if (sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL) != SQLITE_OK)
        return -2;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* One write of the group: insert x, hold `tag` for the commit, end with commit or rollback. */
static int write_x(struct store *g, int x, const char *tag, bool keep)
{
    int r = store_begin(g);
    if (r)
        return r;
    char sql[96];
    snprintf(sql, sizeof sql, "INSERT INTO t VALUES(%d)", x);
    if (exec(g, sql) != SQLITE_OK) {
        store_rollback(g);
        return TALLY_E_STORAGE;
    }
    store_after_commit(g, note, NULL, tag, strlen(tag));
    if (!keep) {
        store_rollback(g);
        return TALLY_E_INSUFFICIENT; /* any refusal */
    }
    return store_commit(g);
}

static int flushes;
static struct store *group_of_loop;

static int before_begin(void *arg, bool wait)
{
    (void)arg;
    (void)wait;
    flushes++;
    return store_group_in_write(group_of_loop) ? TALLY_E_BUSY : store_group_commit(group_of_loop);
}

int main(void)
{
    char dir[] = "/tmp/tally-group.XXXXXX", path[128], err[256];
    if (!mkdtemp(dir))
        return 2;
    snprintf(path, sizeof path, "%s/r.db", dir);
    struct store *loop = NULL, *g = NULL;
    if (store_open(path, true, &loop, err, sizeof err) != 0 ||
        store_open_extra(path, true, false, &g, err, sizeof err) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return 2;
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    store_set_writer_lock(loop, &mu);
    store_set_writer_lock(g, &mu);
    store_keep_held(g, true);
    store_group_enable(g, true);
    group_of_loop = g;
    store_set_before_begin(loop, before_begin, NULL);
    CHECK_EQ_INT(exec(loop, "CREATE TABLE t(x INTEGER UNIQUE);"
                            "CREATE TABLE p(id INTEGER PRIMARY KEY);"
                            "CREATE TABLE c(p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY "
                            "DEFERRED)"),
                 SQLITE_OK);

    /* Three writes, the middle one refused: the others are kept, its held work dropped. */
    ran[0] = 0;
    CHECK(!store_group_open(g));
    CHECK_EQ_INT(write_x(g, 1, "a", true), 0);
    CHECK(store_group_open(g));
    CHECK(store_in_tx(g));                  /* events raised now wait for the group's commit */
    CHECK(pthread_mutex_trylock(&mu) != 0); /* the writer lock is held */
    CHECK_EQ_INT(write_x(g, 2, "b", false), TALLY_E_INSUFFICIENT);
    CHECK_EQ_INT(write_x(g, 3, "c", true), 0);
    /* a later write sees the earlier ones; another connection sees nothing yet */
    CHECK_EQ_INT(q64(g, "SELECT count(*) FROM t"), 2);
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM t"), 0);
    /* the same key twice in one group: the second finds the first */
    CHECK(write_x(g, 1, "dup", true) != 0);
    CHECK_EQ_STR(ran, "");
    CHECK_EQ_INT(store_group_commit(g), 0);
    CHECK(!store_group_open(g));
    CHECK_EQ_STR(ran, ""); /* keep_held: on the loop, from the ready list */
    store_ready_run(store_take_ready(g));
    CHECK_EQ_STR(ran, "ac");
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM t"), 2);
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM t WHERE x = 3"), 1);
    CHECK(pthread_mutex_trylock(&mu) == 0); /* released by the commit */
    pthread_mutex_unlock(&mu);
    CHECK_EQ_INT(store_group_take_lost(g), 0);

    /* A write that leaves a deferred foreign key broken fails at its end, alone. */
    ran[0] = 0;
    CHECK_EQ_INT(write_x(g, 10, "d", true), 0);
    CHECK_EQ_INT(store_begin(g), 0);
    CHECK_EQ_INT(exec(g, "INSERT INTO c VALUES(-1)"), SQLITE_OK);
    store_after_commit(g, note, NULL, "e", 1);
    CHECK(store_commit(g) != 0);
    CHECK(store_group_open(g));
    CHECK_EQ_INT(write_x(g, 11, "f", true), 0);
    CHECK_EQ_INT(store_group_commit(g), 0);
    store_ready_run(store_take_ready(g));
    CHECK_EQ_STR(ran, "df");
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM t WHERE x IN (10, 11)"), 2);
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM c"), 0);

    /* A COMMIT that fails (broken outside any write's savepoint): nothing kept or run. */
    ran[0] = 0;
    CHECK_EQ_INT(write_x(g, 20, "g", true), 0);
    CHECK_EQ_INT(exec(g, "INSERT INTO c VALUES(-2)"), SQLITE_OK);
    CHECK(store_group_commit(g) != 0);
    CHECK(!store_group_open(g));
    store_ready_run(store_take_ready(g));
    CHECK_EQ_STR(ran, "");
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM t WHERE x = 20"), 0);
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM c"), 0);
    CHECK(pthread_mutex_trylock(&mu) == 0);
    pthread_mutex_unlock(&mu);

    /* The loop's connection begins: the open group is committed first. */
    ran[0] = 0;
    flushes = 0;
    CHECK_EQ_INT(write_x(g, 30, "h", true), 0);
    CHECK_EQ_INT(store_begin(loop), 0);
    CHECK_EQ_INT(flushes, 1);
    CHECK(!store_group_open(g));
    CHECK_EQ_INT(exec(loop, "INSERT INTO t VALUES(31)"), SQLITE_OK);
    CHECK_EQ_INT(store_commit(loop), 0);
    store_ready_run(store_take_ready(g));
    CHECK_EQ_STR(ran, "h");
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM t WHERE x IN (30, 31)"), 2);
    /* ... but not in the middle of a write: refused, nothing begun, nothing committed. */
    CHECK_EQ_INT(store_begin(g), 0);
    CHECK_EQ_INT(store_begin(loop), TALLY_E_BUSY);
    CHECK(!store_in_tx(loop));
    store_rollback(g);
    CHECK_EQ_INT(store_group_commit(g), 0);

    /* A full disk mid-group (max_page_count): every write is either kept or reported lost,
     * and a lost group keeps none of its writes. */
    CHECK_EQ_INT(exec(g, "CREATE TABLE big(b BLOB)"), SQLITE_OK);
    long long pages = q64(g, "PRAGMA page_count");
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", pages + 2);
    q64(g, sql);
    CHECK_EQ_INT(write_x(g, 40, "i", true), 0);
    CHECK_EQ_INT(store_begin(g), 0);
    int rc = exec(g, "INSERT INTO big VALUES(zeroblob(200000))");
    CHECK_EQ_INT(rc, SQLITE_FULL);
    store_rollback(g);
    int lost = store_group_take_lost(g);
    CHECK(lost == 0 || lost == TALLY_E_DISK_FULL);
    CHECK_EQ_INT(store_group_take_lost(g), 0); /* said once */
    if (lost) {
        CHECK(!store_group_open(g));
    } else {
        CHECK_EQ_INT(write_x(g, 41, "j", true), 0);
        CHECK_EQ_INT(store_group_commit(g), 0);
    }
    q64(g, "PRAGMA max_page_count = 1073741823");
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM t WHERE x IN (40, 41)"), lost ? 0 : 2);
    CHECK_EQ_INT(q64(loop, "SELECT count(*) FROM big"), 0);
    printf("disk full mid-group: %s\n", lost ? "the group was lost" : "the statement alone undone");
    sqlite3_stmt *s;
    CHECK(sqlite3_prepare_v2(store_db(loop), "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW &&
          strcmp((const char *)sqlite3_column_text(s, 0), "ok") == 0);
    sqlite3_finalize(s);

    store_close(g);
    store_close(loop);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 2;
    return check_result("test_group_commit");
}
