/*
 * loopread.c: stock.get reads in one read transaction per loop turn, on a read-only connection
 * of its own (loopread.h).
 * - Reads of one turn share its snapshot: a commit by another process (a raw connection, no
 *   store) between two of them is not seen by the second; the turn's end (the loop's check
 *   phase) ends the transaction, and the next read sees it.
 * - A commit of tallyd's between two reads of one turn (stock.move: store_commit_seq) is seen by
 *   the second: a client told its write is done reads it. So is a change the loop's own
 *   connection made outside a transaction.
 * - No transaction outlives its turn; once stopped, stock.get reads the loop's connection.
 * - Nor does one begun where the loop's check phase has passed or its wait is still to come:
 *   stock.get answered in a check callback (gcommit.c's on_check takes up waiting requests) or
 *   in an idle one (server.c's on_resume after a yield) is ended before the loop waits, so a
 *   commit of another process made meanwhile is read by the request that wakes the loop.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>
#include <uv.h>

#include "check.h"
#include "loopread.h"
#include "replica_harness.h"
#include "store.h"
#include "tallyd.h"

static struct rh *h;

static int64_t available(void)
{
    const msgpack_object *r = rh_call(h, "stock.get", "sku=S1", NULL);
    CHECK(r != NULL);
    return r ? rh_iget(r, "marketplace_available") : -999999;
}

/* Another process's write: a connection of its own, autocommit. */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    CHECK_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void on_alive(uv_timer_t *t)
{
    (void)t;
}

/* Requests answered outside the loop's poll phase (see the header), and the request that
 * wakes the loop (an async handle's callback runs in the poll phase, as a socket's read). */
static struct {
    struct tallyd *d;
    const char *path;
    char sql[300];
    int64_t before, after;
    uv_check_t check;
    uv_idle_t idle;
    uv_async_t wake;
    uv_thread_t thread;
    bool thread_started;
} ph;

static void on_phase_check(uv_check_t *c)
{
    ph.before = available();
    uv_check_stop(c);
}

static void on_wake(uv_async_t *a)
{
    ph.after = available();
    uv_stop(a->loop);
}

/* Another process commits while the loop waits, then a request wakes it. */
static void commit_then_wake(void *arg)
{
    (void)arg;
    raw_exec(ph.path, ph.sql);
    uv_async_send(&ph.wake);
}

static void on_phase_idle(uv_idle_t *i)
{
    ph.before = available();
    uv_idle_stop(i); /* as on_resume once no connection yielded: the loop may then wait */
    ph.thread_started = uv_thread_create(&ph.thread, commit_then_wake, NULL) == 0;
    CHECK(ph.thread_started);
}

static bool read_tx_open(struct tallyd *d)
{
    struct store *st = d->lread ? loopread(d) : NULL; /* (opens one when none is) */
    return st && st != d->store && !sqlite3_get_autocommit(store_db(st));
}

int main(void)
{
    h = rh_new("loopread");
    CHECK(h != NULL);
    if (!h)
        return check_result("test_loopread");
    rh_open(h);
    rh_seed_standard(h);
    struct tallyd *d = rh_daemon(h);
    uv_loop_t loop;
    uv_loop_init(&loop);
    d->loop = &loop;
    /* Something for the loop to wait for, as the daemon's socket is: a loop with nothing
     * active runs no turn at all. */
    uv_timer_t alive;
    uv_timer_init(&loop, &alive);
    uv_timer_start(&alive, on_alive, 3600 * 1000, 0);
    CHECK_EQ_INT(loopread_start(d), 0);
    char path[512];
    snprintf(path, sizeof path, "%s", store_path(d->store));
    const char *set_a = "UPDATE stock SET snapshot = %d WHERE warehouse = (SELECT id FROM"
                        " warehouses WHERE code = 'A') AND sku = (SELECT id FROM skus WHERE"
                        " code = 'S1')";
    char sql[300];

    /* One turn's reads share a snapshot; another process's commit is seen from the next turn. */
    int64_t a0 = available();
    CHECK(read_tx_open(d));
    snprintf(sql, sizeof sql, set_a, 40);
    raw_exec(path, sql);
    CHECK_EQ_INT(available(), a0);
    uv_run(&loop, UV_RUN_NOWAIT); /* the turn's end */
    int64_t a1 = available();
    CHECK(a1 > a0);

    /* tallyd's own commit between two reads of a turn: the second reads it. */
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=lr-1", "sku=S1", "warehouse=A", "qty=#5",
                  NULL) != NULL);
    CHECK_EQ_INT(available(), a1 + 5);
    /* A commit of another of tallyd's connections (a write job's, the group's). */
    struct store *w = NULL;
    char err[256];
    CHECK_EQ_INT(store_open_extra(path, false, false, &w, err, sizeof err), 0);
    CHECK(w && store_begin(w) == 0);
    snprintf(sql, sizeof sql, set_a, 50);
    CHECK(w && sqlite3_exec(store_db(w), sql, NULL, NULL, NULL) == SQLITE_OK);
    CHECK(w && store_commit(w) == 0);
    store_close(w);
    int64_t a15 = available();
    CHECK(a15 > a1 + 5);
    /* A change of the loop's connection outside a transaction: also read. */
    snprintf(sql, sizeof sql, set_a, 60);
    RH_EXEC(h, "%s", sql);
    int64_t a2 = available();
    CHECK(a2 > a15);

    /* No transaction outlives its turn. */
    CHECK(read_tx_open(d));
    uv_run(&loop, UV_RUN_NOWAIT);
    struct store *q = NULL;
    {
        /* look without opening one: the connection stock.get used */
        int64_t v = available();
        CHECK_EQ_INT(v, a2);
        q = loopread(d);
        uv_run(&loop, UV_RUN_NOWAIT);
        CHECK(q != d->store && sqlite3_get_autocommit(store_db(q)));
    }

    /* A read in the check phase, after the turn's end ran (gcommit.c's on_check answering
     * waiting reads): its transaction is over before the next turn's wait. */
    ph.d = d;
    ph.path = path;
    uv_check_init(&loop, &ph.check);
    uv_idle_init(&loop, &ph.idle);
    uv_async_init(&loop, &ph.wake, on_wake);
    uv_check_start(&ph.check, on_phase_check);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(ph.before, a2);
    snprintf(sql, sizeof sql, set_a, 90);
    raw_exec(path, sql);
    uv_async_send(&ph.wake);
    ph.after = -1;
    uv_run(&loop, UV_RUN_NOWAIT);
    int64_t a3 = ph.after;
    CHECK(a3 > a2);

    /* A read in the idle phase (server.c's on_resume): the loop's wait comes after it in the
     * same turn; another process's commit during the wait is read by the request that ends it. */
    snprintf(ph.sql, sizeof ph.sql, set_a, 100);
    uv_idle_start(&ph.idle, on_phase_idle);
    ph.after = -1;
    uv_run(&loop, UV_RUN_DEFAULT); /* until the request that wakes it (uv_stop) */
    if (ph.thread_started)
        uv_thread_join(&ph.thread);
    CHECK_EQ_INT(ph.before, a3);
    CHECK(ph.after > ph.before);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(sqlite3_get_autocommit(store_db(q)));
    uv_close((uv_handle_t *)&ph.check, NULL);
    uv_close((uv_handle_t *)&ph.idle, NULL);
    uv_close((uv_handle_t *)&ph.wake, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    int64_t a4 = available();
    uv_run(&loop, UV_RUN_NOWAIT);

    /* Stopped: the loop's connection. */
    loopread_stop(d);
    CHECK(loopread(d) == d->store);
    snprintf(sql, sizeof sql, set_a, 120);
    raw_exec(path, sql);
    CHECK(available() > a4);
    uv_close((uv_handle_t *)&alive, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    loopread_free(d);
    CHECK(d->lread == NULL);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    d->loop = NULL;
    rh_free(h);
    return check_result("test_loopread");
}
