/*
 * loopread.c: stock.get reads in a read transaction shared by the reads of up to
 * LOOPREAD_HOLD_MS, on a read-only connection of its own (loopread.h).
 * - Reads share a snapshot while the loop's clock (uv_now: it moves only when the loop runs
 *   or uv_update_time is called, so these checks do not depend on the machine's speed) has
 *   not moved LOOPREAD_HOLD_MS past its begin: a commit by another process (a raw connection,
 *   no store) between two of them is not seen by the second. Once the clock has, the next read
 *   begins anew and sees it, even when the loop was held up and its expiry has not run yet.
 * - A snapshot serves reads of later turns too (checked when the turns took less than
 *   LOOPREAD_HOLD_MS on the loop's clock, which is nearly always).
 * - A commit of tallyd's between two reads (stock.move: store_commit_seq; a write job's or the
 *   group's connection) is seen by the second: a client told its write is done reads it. So is
 *   a change the loop's own connection made outside a transaction.
 * - An idle loop holds no snapshot: its wait ends the transaction (the timerfd), wherever the
 *   read that began it ran (a socket's read in the poll phase; gcommit.c's on_check in the check
 *   phase; server.c's on_resume in the idle phase), and the request that wakes the loop then
 *   reads what another process committed meanwhile. Without the expiry the loop would wait for
 *   its hour-long timer: a guard timer stops it and the check fails. Also when the expiry that
 *   runs was armed for the transaction before (due, not run yet, when a read past the hold
 *   began a new one): it is set again for the new one instead of being spent.
 * - Once stopped, stock.get reads the loop's connection.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* Reads begun outside the loop's poll phase (see the header). */
static struct {
    int64_t before, after;
    uv_check_t check;
    uv_idle_t idle;
    uv_async_t wake;
} ph;

static void on_phase_check(uv_check_t *c)
{
    ph.before = available();
    uv_check_stop(c);
}

static void on_phase_idle(uv_idle_t *i)
{
    ph.before = available();
    uv_idle_stop(i); /* as on_resume once no connection yielded: the loop may then wait */
}

/* The request that wakes the loop (an async handle's callback runs in the poll phase, as a
 * socket's read does). */
static void on_wake(uv_async_t *a)
{
    ph.after = available();
    uv_stop(a->loop);
}

static bool guard_fired;

static void on_guard(uv_timer_t *t)
{
    guard_fired = true;
    uv_stop(t->loop);
}

/* Lets the loop wait, turn by turn, until q's transaction has ended: true; false when 5 s
 * passed first (the guard's turn would end it, as any turn past the hold does). */
static bool wait_ended(uv_loop_t *loop, struct store *q)
{
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, on_guard, 5000, 0);
    guard_fired = false;
    while (!guard_fired && !sqlite3_get_autocommit(store_db(q)))
        uv_run(loop, UV_RUN_ONCE);
    bool ended = !guard_fired && sqlite3_get_autocommit(store_db(q));
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ended;
}

static void sleep_past_hold(void)
{
    usleep((LOOPREAD_HOLD_MS + 2) * 1000);
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

    /* Reads share a snapshot while the loop's clock stands: another process's commit is not
     * seen. */
    int64_t a0 = available();
    CHECK(read_tx_open(d));
    struct store *q = loopread(d); /* the connection stock.get reads */
    CHECK(q != d->store);
    snprintf(sql, sizeof sql, set_a, 40);
    raw_exec(path, sql);
    CHECK_EQ_INT(available(), a0);
    /* The clock moved past the hold, the expiry not run yet (a loop held up): the next read
     * begins anew. */
    sleep_past_hold();
    uv_update_time(&loop);
    int64_t a1 = available();
    CHECK(a1 > a0);
    /* Later turns within the hold read the same snapshot (tried until two turns ran within
     * the hold on the loop's clock, which a loaded machine may take a few tries for). */
    int held_over_turns = 0;
    sqlite3 *raw = NULL; /* opened once: an open per try could take the hold on a slow machine */
    CHECK_EQ_INT(sqlite3_open(path, &raw), SQLITE_OK);
    sqlite3_busy_timeout(raw, 2000);
    for (int k = 0; k < 50 && !held_over_turns; k++) {
        sleep_past_hold();
        uv_update_time(&loop);
        a1 = available(); /* a new snapshot, begun now */
        uint64_t t0 = uv_now(&loop);
        snprintf(sql, sizeof sql, set_a, 41 + k % 2);
        CHECK_EQ_INT(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_run(&loop, UV_RUN_NOWAIT);
        int64_t a1b = available();
        if (uv_now(&loop) - t0 < LOOPREAD_HOLD_MS) {
            CHECK_EQ_INT(a1b, a1);
            CHECK(!sqlite3_get_autocommit(store_db(q)));
            held_over_turns++;
        }
    }
    sqlite3_close(raw);
    CHECK(held_over_turns == 1);
    /* ...and a turn past it ends it (the expiry, read in the turn's poll phase). */
    sleep_past_hold();
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(sqlite3_get_autocommit(store_db(q)));
    a1 = available();
    CHECK(a1 > a0);

    /* tallyd's own commit between two reads of a turn: the second reads it. */
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=lr-1", "sku=S1", "warehouse=A", "qty=#5",
                  NULL) != NULL);
    CHECK_EQ_INT(available(), a1 + 5);
    /* A commit of another of tallyd's connections (a write job's, the group's). */
    snprintf(sql, sizeof sql, set_a, 50);
    CHECK_EQ_INT(rh_exec_other(h, sql), 0);
    int64_t a15 = available();
    CHECK(a15 > a1 + 5);
    /* A change of the loop's connection outside a transaction: also read. */
    snprintf(sql, sizeof sql, set_a, 60);
    RH_EXEC(h, "%s", sql);
    int64_t a2 = available();
    CHECK(a2 > a15);

    /* An idle loop holds no snapshot: its wait ends it... */
    CHECK(read_tx_open(d));
    CHECK(wait_ended(&loop, q));
    CHECK_EQ_INT(available(), a2);
    CHECK(wait_ended(&loop, q));

    /* ...also one begun while the expiry armed for the one before it was due and not yet run
     * (that one ended by a read past the hold): the expiry, early for it, is set again, and the
     * wait ends it. Tried until the expiry ran in the same millisecond of the loop's clock as
     * the later one began (else it is old enough and ended at once, which proves nothing). */
    int rearmed = 0;
    for (int i = 0; i < 50 && !rearmed; i++) {
        CHECK(read_tx_open(d)); /* the one before: its expiry is armed */
        sleep_past_hold();      /* ...and due */
        uv_update_time(&loop);
        CHECK_EQ_INT(available(), a2); /* ends it (past the hold), begins the later one */
        uint64_t began = uv_now(&loop);
        uv_run(&loop, UV_RUN_NOWAIT); /* the due expiry runs */
        rearmed = uv_now(&loop) == began && !sqlite3_get_autocommit(store_db(q));
        CHECK(wait_ended(&loop, q));
    }
    CHECK(rearmed);

    /* ...also one begun in the check phase (gcommit.c's on_check answering waiting reads) or
     * in the idle phase (server.c's on_resume); and the request that wakes the loop reads what
     * another process committed during the wait. */
    uv_check_init(&loop, &ph.check);
    uv_idle_init(&loop, &ph.idle);
    uv_async_init(&loop, &ph.wake, on_wake);
    int64_t last = a2;
    for (int phase = 0; phase < 2; phase++) {
        ph.before = ph.after = -1;
        if (phase == 0)
            uv_check_start(&ph.check, on_phase_check);
        else
            uv_idle_start(&ph.idle, on_phase_idle);
        uv_run(&loop, UV_RUN_NOWAIT);
        CHECK_EQ_INT(ph.before, last);
        CHECK(wait_ended(&loop, q));
        snprintf(sql, sizeof sql, set_a, 90 + 10 * phase);
        raw_exec(path, sql);
        uv_async_send(&ph.wake);
        uv_run(&loop, UV_RUN_DEFAULT); /* until the request that wakes it (uv_stop) */
        CHECK(ph.after > ph.before);
        last = ph.after;
        CHECK(wait_ended(&loop, q));
    }
    uv_close((uv_handle_t *)&ph.check, NULL);
    uv_close((uv_handle_t *)&ph.idle, NULL);
    uv_close((uv_handle_t *)&ph.wake, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    int64_t a4 = available();
    CHECK_EQ_INT(a4, last);
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
