/*
 * Unit: gcommit.c with the loop's own transactions. When the loop's connection begins a
 * transaction while a group is open (a client's write, then in the same loop turn a page
 * applied on the loop, a coordinator's write, a bulk write), the group commits first
 * (store_set_before_begin). What the group's writes raised (events to watchers) must then go
 * out before what the loop's later transaction raises: watchers hear of changes in the order
 * they were committed, or the last event a watcher saw for an order or a SKU is not its state.
 * The group's answers are decided then too: a read on a connection owed a write's answer is
 * answered after that answer (gcommit_flush), not before it. The loop's begins that do not
 * wait give way to the group instead (it goes to the commit thread; they come back after it).
 */
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

static void note(void *arg, const void *data, size_t len)
{
    (void)arg;
    strncat(ran, data, len);
}

static int write_tagged(struct store *st, int x, const char *tag)
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
    return store_commit(st);
}

static void on_alive(uv_timer_t *t)
{
    (void)t;
}

int main(void)
{
    char dir[64], err[256];
    rh_bare_start(&d, "tally-gcorder", true, dir, sizeof dir);
    CHECK_EQ_INT(gcommit_start(&d, err, sizeof err), 0);
    struct store *g = gcommit_store(&d);
    CHECK(g != NULL);
    /* The daemon's loop is kept alive by its listener; here a timer does it, so that one
     * UV_RUN_NOWAIT is one loop turn (the end-of-turn handle does not keep the loop alive). */
    uv_timer_t alive;
    uv_timer_init(d.loop, &alive);
    uv_timer_start(&alive, on_alive, 3600 * 1000, 0);

    /* A client's write in the group, then the loop's own transaction in the same turn. */
    CHECK_EQ_INT(write_tagged(g, 1, "A"), 0);
    CHECK(store_group_open(g));
    CHECK_EQ_INT(write_tagged(d.store, 2, "B"), 0); /* commits the group first */
    CHECK(!store_group_open(g));
    uv_run(d.loop, UV_RUN_NOWAIT); /* the end of the turn */
    CHECK_EQ_STR(ran, "AB");
    CHECK_EQ_INT((int)store_count(d.store, "SELECT count(*) FROM t", -1), 2);
    CHECK_EQ_INT((int)store_count(d.store, "SELECT count(*) FROM t WHERE x = 1", -1), 1);

    /* The loop's begins that do not wait (the fulfilment pass: store_begin_nowait; a page, an
     * outcome: store_begin_yield) give way instead: the group goes to the commit thread, the
     * begin answers busy (store_yielded), nothing of the loop's begun; once the commit
     * returned the begin succeeds, and what the group raised went out first. */
    for (int k = 0; k < 2; k++) {
        ran[0] = 0;
        CHECK_EQ_INT(write_tagged(g, 3 + 10 * k, "C"), 0);
        CHECK_EQ_INT(k == 0 ? store_begin_nowait(d.store, NULL)
                            : store_begin_yield(d.store, STORE_LAZY),
                     TALLY_E_BUSY);
        CHECK(store_yielded(d.store));
        CHECK(!store_in_tx(d.store));
        CHECK(gcommit_in_flight(&d));
        CHECK_EQ_STR(ran, "");
        for (int i = 0; i < 5000 && gcommit_in_flight(&d); i++) {
            uv_run(d.loop, UV_RUN_NOWAIT);
            usleep(1000);
        }
        CHECK(!gcommit_in_flight(&d));
        CHECK_EQ_STR(ran, "C");
        CHECK_EQ_INT(
            k == 0 ? store_begin_nowait(d.store, NULL) : store_begin_yield(d.store, STORE_LAZY), 0);
        CHECK(!store_yielded(d.store));
        CHECK_EQ_INT(store_after_commit(d.store, note, NULL, "D", 1), 0);
        CHECK_EQ_INT(store_commit(d.store), 0);
        uv_run(d.loop, UV_RUN_NOWAIT);
        CHECK_EQ_STR(ran, "CD");
    }
    /* Without a group, neither gives way. */
    CHECK_EQ_INT(store_begin_yield(d.store, STORE_LAZY), 0);
    CHECK(!store_yielded(d.store));
    store_rollback(d.store);

    /* A read on a connection owed an answer commits the group first (rpc.c): what the group
     * raised goes out then, before that read's answer and before the end of the turn. */
    ran[0] = 0;
    CHECK_EQ_INT(write_tagged(g, 5, "F"), 0);
    CHECK_EQ_INT(gcommit_flush(&d), 0);
    CHECK_EQ_STR(ran, "F");
    uv_run(d.loop, UV_RUN_NOWAIT);
    CHECK_EQ_STR(ran, "F");

    /* A group lost before its commit raises nothing, even when the loop begins after it. */
    ran[0] = 0;
    CHECK_EQ_INT(store_begin(g), 0);
    CHECK_EQ_INT(store_after_commit(g, note, NULL, "X", 1), 0);
    store_rollback(g); /* that write alone is undone */
    CHECK_EQ_INT(write_tagged(d.store, 4, "E"), 0);
    uv_run(d.loop, UV_RUN_NOWAIT);
    CHECK_EQ_STR(ran, "E");
    CHECK_EQ_INT((int)gcommit_held(&d), 0);

    d.stopping = true;
    uv_close((uv_handle_t *)&alive, NULL);
    gcommit_stop(&d);
    workers_stop(&d);
    uv_run(d.loop, UV_RUN_DEFAULT);
    gcommit_free(&d);
    workers_free(&d);
    if (rh_bare_end(&d, dir) != 0)
        return 2;
    return check_result("test_gcommit_order");
}
