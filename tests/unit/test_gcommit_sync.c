/*
 * Unit: gcommit.c's syncs (gcommit.h "Syncs", "Delivery"): a group commits at NORMAL on the
 * commit thread and what it decided (its answers and the events its writes raised; events
 * stand for both here, they travel together) waits for a sync of the WAL that covers it. The
 * sync is held by a test hook on the sync thread (gcommit_test_before_sync):
 *  1. group A commits (the loop's connection sees it) while its sync is held: nothing of A
 *     is sent;
 *  2. meanwhile group B's writes run and commit (neither the writer lock nor SQLite's write
 *     lock is held through a sync): nothing of B is sent either;
 *  3. the sync released: A's then B's, in commit order, after one sync that covered both;
 *  4. the loop's own lazy transaction, committed while a group waits for its sync: what it
 *     raised goes out behind the group's; a durable commit of the loop's makes the group
 *     durable too (it synced the whole WAL), so the group goes out without its own sync, but
 *     a durable commit that changed nothing does not (it synced nothing);
 *  5. a failed sync: the group's events are dropped, its rows stay (committed), its rows to
 *     send stay unsynced; the next group commits at FULL (out at its commit, no sync), the
 *     one after it at NORMAL again (out after a sync).
 * No timing is asserted: "not sent" is checked only while the sync is held.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "replica_harness.h"
#include "gcommit.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"
#include "worker.h"

static struct tallyd d;
static char ran[64]; /* after-commit work, in the order it ran */

static atomic_int hold;      /* the sync thread waits in the hook while set */
static atomic_int entered;   /* syncs that reached the hook */
static atomic_int fail_next; /* the next sync fails (TALLY_E_STORAGE), the WAL not synced */

static int before_sync(void)
{
    atomic_fetch_add(&entered, 1);
    while (atomic_load(&hold))
        usleep(1000);
    return atomic_exchange(&fail_next, 0) ? TALLY_E_STORAGE : 0;
}

static void note(void *arg, const void *data, size_t len)
{
    (void)arg;
    strncat(ran, data, len);
}

/* One write: a row x, `tag` raised for its commit, rows to send when `sends`. */
static int write_tagged(struct store *st, int x, const char *tag, bool sends)
{
    int r = store_begin(st);
    if (r)
        return r;
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO t(x) VALUES (?1)");
    if (!s) {
        store_rollback(st);
        return TALLY_E_STORAGE;
    }
    sqlite3_bind_int(s, 1, x);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE || store_after_commit(st, note, NULL, tag, strlen(tag)) != 0) {
        store_rollback(st);
        return TALLY_E_STORAGE;
    }
    if (sends)
        store_note_send(st);
    return store_commit(st);
}

/* Rows x on the loop's connection (what a read sees). */
static int rows(int x)
{
    sqlite3_stmt *s = store_stmt(d.store, "SELECT count(*) FROM t WHERE x = ?1");
    if (!s)
        return -1;
    sqlite3_bind_int(s, 1, x);
    int n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_reset(s);
    return n;
}

static bool not_committing(void)
{
    return !gcommit_committing(&d);
}
static bool settled(void)
{
    return !gcommit_in_flight(&d);
}
static int want_entered;
static bool sync_held(void)
{
    return atomic_load(&entered) >= want_entered;
}

/* Runs loop turns until cond holds (bounded: 10 s). */
static bool until(bool (*cond)(void))
{
    for (int i = 0; i < 10000; i++) {
        uv_run(d.loop, UV_RUN_NOWAIT);
        if (cond())
            return true;
        usleep(1000);
    }
    return false;
}

/* A group of one write, handed to the commit thread at the end of the turn and committed. */
static void group(int x, const char *tag, bool sends)
{
    struct store *g = gcommit_store(&d);
    CHECK(g != NULL);
    CHECK_EQ_INT(write_tagged(g, x, tag, sends), 0);
    CHECK(store_group_open(g));
    uv_run(d.loop, UV_RUN_NOWAIT); /* the end of the turn: to the commit thread */
    CHECK(until(not_committing));
    CHECK(!store_group_open(g));
}

static void on_alive(uv_timer_t *t)
{
    (void)t;
}

int main(void)
{
    char dir[64], err[256];
    rh_bare_start(&d, "tally-gcsync", true, dir, sizeof dir);
    gcommit_test_before_sync = before_sync;
    CHECK_EQ_INT(gcommit_start(&d, err, sizeof err), 0);
    CHECK(gcommit_lazy(&d));
    /* One UV_RUN_NOWAIT is one loop turn (the end-of-turn handle does not keep it alive). */
    uv_timer_t alive;
    uv_timer_init(d.loop, &alive);
    uv_timer_start(&alive, on_alive, 3600 * 1000, 0);

    /* 1. A commits; its sync is held; nothing of A is sent, though a read sees it. */
    atomic_store(&hold, 1);
    group(1, "A", false);
    want_entered = 1;
    CHECK(until(sync_held));
    CHECK_EQ_INT(rows(1), 1);
    CHECK(store_state_unsynced());
    CHECK(gcommit_in_flight(&d));
    CHECK_EQ_STR(ran, "");

    /* 2. B's writes run and commit while A's sync is held. */
    group(2, "B", false);
    CHECK_EQ_INT(rows(2), 1);
    for (int i = 0; i < 20; i++) {
        uv_run(d.loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    CHECK_EQ_STR(ran, "");
    CHECK_EQ_INT((int)gcommit_syncs(&d), 0);

    /* 3. Released: A's, then B's, after one sync that covered both. */
    atomic_store(&hold, 0);
    CHECK(until(settled));
    CHECK_EQ_STR(ran, "AB");
    CHECK_EQ_INT((int)gcommit_syncs(&d), 1);
    CHECK(!store_state_unsynced());

    /* 4. The loop's lazy transaction after a group that waits: its events behind the group's. */
    ran[0] = 0;
    atomic_store(&hold, 1);
    group(3, "C", false);
    want_entered = 2;
    CHECK(until(sync_held));
    CHECK_EQ_INT(store_begin_yield(d.store, STORE_LAZY), 0);
    CHECK_EQ_INT(store_after_commit(d.store, note, NULL, "D", 1), 0);
    CHECK_EQ_INT(store_commit(d.store), 0);
    uv_run(d.loop, UV_RUN_NOWAIT);
    CHECK_EQ_STR(ran, "");
    atomic_store(&hold, 0);
    CHECK(until(settled));
    CHECK_EQ_STR(ran, "CD");
    /* A durable commit of the loop's while the group's sync is held: the group is durable. */
    ran[0] = 0;
    uint64_t syncs = gcommit_syncs(&d);
    atomic_store(&hold, 1);
    group(4, "E", false);
    want_entered = 3;
    CHECK(until(sync_held));
    CHECK_EQ_INT(write_tagged(d.store, 5, "F", false), 0); /* store_begin: durable */
    uv_run(d.loop, UV_RUN_NOWAIT);
    CHECK_EQ_STR(ran, "EF");
    CHECK_EQ_INT((int)(gcommit_syncs(&d) - syncs), 0); /* the held one has not returned */
    atomic_store(&hold, 0);
    CHECK(until(settled));
    /* ... but not one that changed nothing: it wrote no frame and synced nothing. */
    ran[0] = 0;
    atomic_store(&hold, 1);
    group(9, "K", false);
    want_entered = 4;
    CHECK(until(sync_held));
    CHECK_EQ_INT(store_begin(d.store), 0);
    CHECK_EQ_INT(store_commit(d.store), 0);
    for (int i = 0; i < 20; i++) {
        uv_run(d.loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    CHECK_EQ_STR(ran, "");
    atomic_store(&hold, 0);
    CHECK(until(settled));
    CHECK_EQ_STR(ran, "K");

    /* 5. A failed sync: G's events dropped, its rows kept, its sends unsynced. */
    ran[0] = 0;
    syncs = gcommit_syncs(&d);
    atomic_store(&fail_next, 1);
    group(6, "G", true);
    CHECK(until(settled));
    CHECK_EQ_INT((int)(gcommit_syncs(&d) - syncs), 1);
    CHECK_EQ_STR(ran, "");
    CHECK_EQ_INT(rows(6), 1);
    CHECK(store_sends_unsynced());
    /* The next group commits at FULL: out at its commit, no sync; G is durable with it. */
    group(7, "H", false);
    CHECK(until(settled));
    CHECK_EQ_STR(ran, "H");
    CHECK_EQ_INT((int)(gcommit_syncs(&d) - syncs), 1);
    CHECK(!store_sends_unsynced());
    /* Then NORMAL again: out after a sync. */
    group(8, "I", false);
    CHECK(until(settled));
    CHECK_EQ_STR(ran, "HI");
    CHECK_EQ_INT((int)(gcommit_syncs(&d) - syncs), 2);
    CHECK_EQ_INT((int)gcommit_held(&d), 0);

    d.stopping = true;
    uv_close((uv_handle_t *)&alive, NULL);
    gcommit_stop(&d);
    workers_stop(&d);
    uv_run(d.loop, UV_RUN_DEFAULT);
    gcommit_free(&d);
    workers_free(&d);
    gcommit_test_before_sync = NULL;
    if (rh_bare_end(&d, dir) != 0)
        return 2;
    return check_result("test_gcommit_sync");
}
