/*
 * daemon/sync.c's push side, driven through a connector of the test's own (no HTTP): the
 * test takes each batch the engine hands over, answers it with sync_push_done, and runs the
 * scheduler with sync_tick.
 *
 * - An answer the replica cannot record (the write fails: an injected trigger stands for a
 *   full disk or an I/O error) is recorded as soon as writes work again, without a restart:
 *   the row does not stay in flight, its entity's later rows go, and the movement's stock is
 *   counted once (a page that already holds it waits until the answer is recorded).
 * - Rows that cannot go (in backoff, in flight, or behind such a row of their entity) never
 *   hide a row that can, however many there are; each entity's rows still go in order.
 * - A seeded random run (TALLY_SYNC_SEED=N replays one) checks both over many looks.
 * - A batch's answers, recorded set-based (done rows in one statement, their movements
 *   acknowledged together), leave the replica exactly as the same answers one row at a time.
 *   So do they beside a second attempt, an id JSON escapes, a transfer's leg sent as a
 *   movement, an answer older than the snapshot, and a page applied between take and answer.
 *   A write failing in the middle of the set-based acknowledgement keeps nothing of the answer;
 *   the rows go again and end as if nothing had failed.
 * - A take whose mark in flight misses a row it looked at takes nothing (the set-based mark
 *   counts its rows): no row goes unmarked.
 * - Pages applied off the loop (pull_page.off_loop): a query is answered from committed data
 *   while a page's write job holds its transaction; the page goes in several transactions with
 *   the checkpoint in the last only; a page that fails between slices (a crash) leaves the
 *   checkpoint where it was, and applied again it converges, each row counted once;
 *   reconciliation on the worker repairs drift and raises its exception.
 * - The loop's transactions that give way to a group commit (store_begin_yield, driven here by
 *   a before_begin that answers busy): an outcome and a page wait without an error and are
 *   done in order when it returns (sync_writer_free); a parked page is released at a stop; a
 *   round whose end gave way stays in_round (status, `tally sync --wait`) until that end is done.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "gcommit.h"
#include "replica_harness.h"
#include "stock.h"
#include "store.h"
#include "sync.h"
#include "tallyd.h"
#include "upstream.h"
#include "whfeed.h"
#include "worker.h"

static struct rh *h;
static struct tallyd *d;
static uv_loop_t loop;

/* ---- the test's connector: it keeps every batch it is given, unanswered ---- */

#define MAX_BATCHES 64

static struct push_batch *batches[MAX_BATCHES];
static int nbatches;
static struct upstream *fake_u; /* the engine's upstream of the running test */

static int fake_init(struct upstream *u, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    fake_u = u;
    return 0;
}

static void fz_check_batch(const struct push_batch *b, int push_limit);
static int fz_answering; /* fz_run answering: push_limit of the batches handed over meanwhile */

static void fake_push(struct upstream *u, struct push_batch *b)
{
    (void)u;
    if (fz_answering)
        fz_check_batch(b, fz_answering);
    if (nbatches == MAX_BATCHES) {
        fprintf(stderr, "more batches than the test keeps\n");
        exit(2);
    }
    batches[nbatches++] = b;
}

static void fake_free(struct upstream *u)
{
    (void)u;
}

/* Set before each engine starts: rows per batch. */
static struct connector_ops fake = {
    .kind = "fake",
    .push_limit = 1,
    .init = fake_init,
    .push = fake_push,
    .free = fake_free,
};

static struct push_batch *next_batch(void);

/* An engine for upstream wh:A with connector `ops`, no batch handed over yet. */
static struct sync_engine *start_ops(const struct connector_ops *ops)
{
    struct sync_engine *e = NULL;
    nbatches = 0;
    CHECK_EQ_INT(sync_start_with(d, ops, "wh:A", &e), 0);
    if (!e)
        exit(2);
    return e;
}

static struct sync_engine *start(int push_limit)
{
    fake.push_limit = push_limit;
    return start_ops(&fake);
}

static void stop(struct sync_engine *e)
{
    /* Batches still unanswered (an answer may have handed over the next) are given back as
     * a stopping connector gives back its abandoned requests: the engine, stopping, frees
     * them (before its tick handle closes, which frees the engine). */
    sync_stop(e);
    struct push_batch *b;
    while ((b = next_batch()) != NULL)
        sync_push_done(b);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* Takes the oldest batch handed over; NULL when there is none. */
static struct push_batch *next_batch(void)
{
    if (nbatches == 0)
        return NULL;
    struct push_batch *b = batches[0];
    memmove(batches, batches + 1, (size_t)--nbatches * sizeof *batches);
    return b;
}

static const char *batch_keys(const struct push_batch *b)
{
    static char out[1024];
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; b && i < b->n && len < sizeof out - 100; i++)
        len += (size_t)snprintf(out + len, sizeof out - len, "%s%s", i ? "," : "", b->items[i].key);
    return out;
}

/* Answers every batch handed over as done. An answer may hand over the next batch at once
 * (sync.c record_and_take): those wait for the test. */
static void answer_all_done(void)
{
    struct push_batch *b;
    for (int n = nbatches; n > 0 && (b = next_batch()) != NULL; n--) {
        b->outcome = SYNC_OK;
        for (int i = 0; i < b->n; i++)
            b->items[i].outcome = SYNC_OK;
        sync_push_done(b);
    }
}

static const char *row_state(const char *key)
{
    return rh_qtext(h, "SELECT state FROM outbox WHERE key = '%s'", key);
}

#define ON_HAND "snapshot + pending"

/* Whether `tally status` (the engine's part of it) says `text` anywhere. */
static bool status_says(struct sync_engine *e, const char *text)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sync_pack_status(e, &pk);
    bool found = sb.data && memmem(sb.data, sb.size, text, strlen(text)) != NULL;
    msgpack_sbuffer_destroy(&sb);
    return found;
}

static const char *taken(void);

/* ---- the pages a warehouse would send: one snapshot row ---- */

struct snap_page {
    struct pull_page pg;
    int64_t on_hand, version;
};

static int apply_snap(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                      size_t errlen)
{
    struct snap_page *p = (struct snap_page *)pg;
    (void)cp, (void)err, (void)errlen;
    return stock_apply_snapshot(st, rh_sku_id(h, "S1"), rh_wh_id(h, "A"), p->on_hand, p->version,
                                store_now());
}

static void release_snap(struct pull_page *pg)
{
    (void)pg;
}

/* A page as the connector hands it over at the end of a pull. */
static void make_page(struct snap_page *p, int64_t on_hand, int64_t version)
{
    memset(p, 0, sizeof *p);
    p->pg.outcome = SYNC_OK;
    p->pg.retry_after_s = -1;
    p->pg.total = -1;
    p->pg.rows = 1;
    p->pg.apply = apply_snap;
    p->pg.release = release_snap;
    p->on_hand = on_hand;
    p->version = version;
}

/* ---- a failed outcome write ---- */

/* Stands for a full disk: every outcome written to the outbox fails. */
static void fault_on(void)
{
    RH_EXEC(h, "CREATE TEMP TRIGGER no_outcome BEFORE UPDATE OF state ON outbox"
               " WHEN new.state <> 'inflight' BEGIN SELECT RAISE(ABORT, 'injected'); END");
}

static void fault_off(void)
{
    RH_EXEC(h, "DROP TRIGGER temp.no_outcome");
}

static void test_outcome_write_fails(void)
{
    rh_open(h);
    d = rh_daemon(h);
    d->loop = &loop;
    rh_seed_standard(h);
    struct sync_engine *e = start(MAX_BATCHES);
    int64_t held = rh_q64(h,
                          "SELECT upstream_version FROM stock WHERE sku = %lld AND"
                          " warehouse = %lld",
                          (long long)rh_sku_id(h, "S1"), (long long)rh_wh_id(h, "A"));

    /* A receive of 5 goes out; the warehouse applies it (its stock is now 15 at held + 1). */
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=r1", "sku=S1", "warehouse=A", "qty=#5",
                  NULL) != NULL);
    sync_tick(e);
    struct push_batch *b = next_batch();
    CHECK(b != NULL);
    if (!b)
        return;
    CHECK_EQ_STR(batch_keys(b), "r1");
    CHECK_EQ_STR(row_state("r1"), "inflight");

    /* ...but the replica cannot record the answer. */
    fault_on();
    b->outcome = SYNC_OK;
    b->items[0].outcome = SYNC_OK;
    b->items[0].version = held + 1;
    sync_push_done(b);
    CHECK_EQ_STR(row_state("r1"), "inflight");
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 15);
    /* The operator sees why nothing goes. */
    CHECK(status_says(e, "nothing is sent: a push outcome is not recorded"));

    /* A later movement of the same SKU waits behind it; while the answer is not recorded,
     * nothing new goes out (its answer could not be recorded either). */
    CHECK(rh_call(h, "stock.move", "kind=pick", "id=p1", "sku=S1", "warehouse=A", "qty=#2", NULL) !=
          NULL);
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=r2", "sku=S2", "warehouse=A", "qty=#1",
                  NULL) != NULL);
    sync_tick(e);
    sync_tick(e);
    CHECK_EQ_INT(nbatches, 0);

    /* The warehouse's next page holds the receive: it is not applied while the receive's
     * answer is unrecorded, so the receive is not counted twice (15 + 5). */
    struct snap_page page;
    make_page(&page, 15, held + 1);
    sync_pull_done(fake_u, 0, &page.pg);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S1", "A"), 10);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 13); /* 10 + 5 - 2 */

    /* Writes work again: the next tick records the answer, no restart needed. */
    fault_off();
    sync_tick(e);
    CHECK_EQ_STR(row_state("r1"), "done");
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM movements WHERE id = 'r1'"), "acked");
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 13);
    /* ...and the rows that waited go: p1 behind r1, r2 on its own. */
    CHECK_EQ_STR(row_state("p1"), "inflight");
    CHECK_EQ_STR(row_state("r2"), "inflight");
    CHECK_EQ_STR(taken(), "[p1,r2]");
    /* The warehouse applies the pick after the receive. */
    if (nbatches == 1 && batches[0]->n == 2)
        batches[0]->items[0].version = held + 2;
    answer_all_done();

    /* The page, asked again, now settles the receive: 15 - 2, each counted once. */
    make_page(&page, 15, held + 1);
    sync_pull_done(fake_u, 0, &page.pg);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S1", "A"), 15);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 13);
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM movements WHERE id = 'r1'"), "settled");
    stop(e);
}

/* An answer that says "again later" is kept the same way: the row goes back to waiting. */
static void test_transient_outcome_write_fails(void)
{
    rh_open(h);
    d = rh_daemon(h);
    d->loop = &loop;
    rh_seed_standard(h);
    struct sync_engine *e = start(MAX_BATCHES);
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=r3", "sku=S2", "warehouse=A", "qty=#4",
                  NULL) != NULL);
    sync_tick(e);
    struct push_batch *b = next_batch();
    CHECK(b != NULL);
    if (!b)
        return;
    fault_on();
    b->outcome = SYNC_TRANSIENT;
    snprintf(b->error, sizeof b->error, "HTTP 503");
    sync_push_done(b);
    CHECK_EQ_STR(row_state("r3"), "inflight");
    fault_off();
    sync_tick(e);
    CHECK_EQ_STR(row_state("r3"), "pending");
    CHECK_EQ_INT(rh_q64(h, "SELECT attempts FROM outbox WHERE key = 'r3'"), 1);
    CHECK_EQ_STR(rh_qtext(h, "SELECT last_error FROM outbox WHERE key = 'r3'"), "HTTP 503");
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S2", "A"), 4);
    answer_all_done();
    stop(e);
}

/* An outcome whose recording fails for its own rows alone (the rows can still be put back to
 * waiting) does not hold everything else: its rows wait to be sent again. */
static void test_outcome_of_one_row_fails(void)
{
    rh_open(h);
    d = rh_daemon(h);
    d->loop = &loop;
    rh_seed_standard(h);
    struct sync_engine *e = start(MAX_BATCHES);
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=r7", "sku=S1", "warehouse=A", "qty=#3",
                  NULL) != NULL);
    sync_tick(e);
    struct push_batch *b = next_batch();
    CHECK(b != NULL);
    if (!b)
        return;
    RH_EXEC(h, "CREATE TEMP TRIGGER no_done BEFORE UPDATE OF state ON outbox"
               " WHEN new.state = 'done' BEGIN SELECT RAISE(ABORT, 'injected'); END");
    b->outcome = SYNC_OK;
    b->items[0].outcome = SYNC_OK;
    sync_push_done(b);
    CHECK_EQ_STR(row_state("r7"), "pending");
    CHECK_EQ_INT(rh_q64(h, "SELECT attempts FROM outbox WHERE key = 'r7'"), 1);
    CHECK_EQ_STR(rh_qtext(h, "SELECT last_error FROM outbox WHERE key = 'r7'"),
                 "answer not recorded");
    CHECK(rh_q64(h, "SELECT next_attempt_at FROM outbox WHERE key = 'r7'") >= store_now() - 1);
    /* Other rows still go (r7 waits for its backoff, here an hour). */
    RH_EXEC(h, "UPDATE outbox SET next_attempt_at = next_attempt_at + 3600 WHERE key = 'r7'");
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=r8", "sku=S2", "warehouse=A", "qty=#1",
                  NULL) != NULL);
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[r8]");
    RH_EXEC(h, "DROP TRIGGER temp.no_done");
    answer_all_done();
    RH_EXEC(h, "UPDATE outbox SET next_attempt_at = 0 WHERE key = 'r7'");
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[r7]");
    answer_all_done();
    CHECK_EQ_STR(row_state("r7"), "done");
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 13);
    stop(e);
}

/* A disk that is full for the outcome's write but still takes the smaller write that would put
 * the row back to waiting: the disk is full for everything, not for this row alone, so the
 * answer is kept (the row stays in flight) rather than the movement counted twice: pending
 * again, while the page that already holds it is applied. */
static void test_outcome_disk_full_kept(void)
{
    rh_open(h);
    d = rh_daemon(h);
    d->loop = &loop;
    rh_seed_standard(h);
    struct sync_engine *e = start(MAX_BATCHES);
    int64_t held = rh_q64(h,
                          "SELECT upstream_version FROM stock WHERE sku = %lld AND"
                          " warehouse = %lld",
                          (long long)rh_sku_id(h, "S1"), (long long)rh_wh_id(h, "A"));
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=r9", "sku=S1", "warehouse=A", "qty=#5",
                  NULL) != NULL);
    sync_tick(e);
    struct push_batch *b = next_batch();
    CHECK(b != NULL);
    if (!b)
        return;
    /* Recording 'done' needs new pages (here: a filler row), which the full file refuses;
     * putting the row back to pending rewrites one page in place, which it takes. */
    RH_EXEC(h, "CREATE TABLE filler(b BLOB)");
    RH_EXEC(h, "CREATE TRIGGER needs_room AFTER UPDATE OF state ON outbox"
               " WHEN new.state = 'done' BEGIN INSERT INTO filler VALUES(zeroblob(65536)); END");
    int64_t pages = rh_q64(h, "PRAGMA page_count");
    CHECK(rh_q64(h, "PRAGMA max_page_count = %lld", (long long)pages) == pages);
    b->outcome = SYNC_OK;
    b->items[0].outcome = SYNC_OK;
    b->items[0].version = held + 1;
    sync_push_done(b);
    CHECK_EQ_STR(row_state("r9"), "inflight");
    struct snap_page page;
    make_page(&page, 15, held + 1);
    sync_pull_done(fake_u, 0, &page.pg);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 15);
    /* Room again: recorded at the next tick, and the page then settles it once. */
    rh_q64(h, "PRAGMA max_page_count = 1073741823");
    sync_tick(e);
    CHECK_EQ_STR(row_state("r9"), "done");
    make_page(&page, 15, held + 1);
    sync_pull_done(fake_u, 0, &page.pg);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 15);
    RH_EXEC(h, "DROP TRIGGER needs_room");
    stop(e);
}

/* Stopping with an answer unrecorded loses nothing: the row goes again at the next start. */
static void test_stop_with_outcome_unrecorded(void)
{
    rh_open(h);
    d = rh_daemon(h);
    d->loop = &loop;
    rh_seed_standard(h);
    struct sync_engine *e = start(MAX_BATCHES);
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=r4", "sku=S1", "warehouse=A", "qty=#1",
                  NULL) != NULL);
    sync_tick(e);
    struct push_batch *b = next_batch();
    CHECK(b != NULL);
    if (!b)
        return;
    fault_on();
    b->outcome = SYNC_OK;
    b->items[0].outcome = SYNC_OK;
    sync_push_done(b);
    stop(e); /* frees the kept answer (the sanitizer build checks it) */
    fault_off();
    CHECK_EQ_STR(row_state("r4"), "inflight");
    e = start(MAX_BATCHES);
    CHECK_EQ_STR(row_state("r4"), "pending");
    /* It may have been applied: the reset counts the attempt (a connector whose upstream
     * does not deduplicate, the marketplace's fulfil, reads back when attempts > 0). */
    CHECK_EQ_INT(rh_q64(h, "SELECT attempts FROM outbox WHERE key = 'r4'"), 1);
    sync_tick(e);
    CHECK_EQ_STR(batch_keys(nbatches ? batches[0] : NULL), "r4");
    answer_all_done();
    CHECK_EQ_STR(row_state("r4"), "done");
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 11);
    stop(e);
}

/* Rows left in flight by the last run that cannot be made pending at the start (the disk is
 * full) are made pending as soon as writes work; nothing is sent before. */
/* A connector whose init fails: sync_start_with fails and leaves nothing on the loop (the
 * upstream's HTTP client, made since each upstream has its own, is closed too). */
static int failing_init(struct upstream *u, char *err, size_t errlen)
{
    (void)u;
    snprintf(err, errlen, "injected");
    return -1;
}

static void count_handle(uv_handle_t *hd, void *arg)
{
    (void)hd;
    ++*(int *)arg;
}

static void test_start_init_fails(void)
{
    rh_open(h);
    d = rh_daemon(h);
    d->loop = &loop;
    uv_run(&loop, UV_RUN_DEFAULT);
    int before = 0, after = 0;
    uv_walk(&loop, count_handle, &before);
    struct connector_ops failing = fake;
    failing.init = failing_init;
    struct sync_engine *e = NULL;
    CHECK(sync_start_with(d, &failing, "wh:A", &e) != 0);
    CHECK(e == NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, count_handle, &after);
    CHECK_EQ_INT(after, before);
}

static void test_start_reset_fails(void)
{
    rh_open(h);
    d = rh_daemon(h);
    d->loop = &loop;
    rh_seed_standard(h);
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=r5", "sku=S1", "warehouse=A", "qty=#1",
                  NULL) != NULL);
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=r6", "sku=S2", "warehouse=A", "qty=#1",
                  NULL) != NULL);
    RH_EXEC(h, "UPDATE outbox SET state = 'inflight' WHERE key = 'r5'");
    RH_EXEC(h, "CREATE TEMP TRIGGER no_reset BEFORE UPDATE OF state ON outbox"
               " WHEN old.state = 'inflight' BEGIN SELECT RAISE(ABORT, 'injected'); END");
    struct sync_engine *e = start(MAX_BATCHES);
    sync_tick(e);
    CHECK_EQ_STR(row_state("r5"), "inflight");
    CHECK_EQ_INT(nbatches, 0);
    CHECK(status_says(e, "nothing is sent: rows in flight at the last stop"));
    RH_EXEC(h, "DROP TRIGGER temp.no_reset");
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[r5,r6]");
    CHECK_EQ_INT(rh_q64(h, "SELECT attempts FROM outbox WHERE key = 'r5'"), 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT attempts FROM outbox WHERE key = 'r6'"), 0);
    answer_all_done();
    CHECK_EQ_STR(row_state("r5"), "done");
    stop(e);
}

/* ---- which rows a batch takes ---- */

/* An outbox row for wh:A, due `due_in` seconds from now (negative: overdue). */
static void add_row(const char *key, const char *entity, const char *kind, int64_t due_in)
{
    RH_EXEC(h,
            "INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at, created_at)"
            " VALUES('%s', 'wh:A', '%s', '%s', x'80', %lld, %lld)",
            key, entity, kind, (long long)(store_now() + due_in), (long long)store_now());
}

/* Every key the batches handed over hold, in order, each batch in brackets. */
static const char *taken(void)
{
    static char out[4096];
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < nbatches && len < sizeof out - 1100; i++)
        len += (size_t)snprintf(out + len, sizeof out - len, "[%s]", batch_keys(batches[i]));
    return out;
}

static void fresh(void)
{
    rh_open(h);
    d = rh_daemon(h);
    d->loop = &loop;
}

/* Four marketplace-like rows (one per batch) in backoff ahead of a due one: it goes. */
static void test_backoff_ahead(void)
{
    fresh();
    for (int i = 0; i < 5; i++) {
        char key[16], entity[16];
        snprintf(key, sizeof key, "ful:%d", i);
        snprintf(entity, sizeof entity, "O%d", i);
        add_row(key, entity, "fulfil", 3600);
    }
    add_row("ful:due", "O9", "fulfil", -1);
    struct sync_engine *e = start(1);
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[ful:due]");
    answer_all_done();
    CHECK_EQ_STR(row_state("ful:due"), "done");
    CHECK_EQ_STR(row_state("ful:0"), "pending");
    stop(e);
}

/* A batch's request came back without an answer (the network): the link goes down. */
static void fail_for_network(struct push_batch *b)
{
    b->outcome = SYNC_TRANSIENT;
    snprintf(b->error, sizeof b->error, "no answer: Empty reply from server");
    sync_push_done(b);
}

/* The link has been down for `ms` (an outage from OUTAGE_MS on, sync.c link_ok). */
static void down_for(uint64_t ms)
{
    uint64_t now = uv_now(&loop);
    fake_u->down_since_ms = now > ms ? now - ms : 0;
}

/* Three entities' rows, each taken in a batch of its own, all three in flight. */
static struct sync_engine *three_in_flight(struct push_batch **a, struct push_batch **b,
                                           struct push_batch **c)
{
    add_row("ful:a1", "OA", "fulfil", -1);
    add_row("ful:b1", "OB", "fulfil", -1);
    add_row("ful:c1", "OC", "fulfil", -1);
    struct sync_engine *e = start(1);
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[ful:a1][ful:b1][ful:c1]");
    *a = next_batch();
    *b = next_batch();
    *c = next_batch();
    if (!*a || !*b || !*c)
        exit(2);
    return e;
}

/*
 * The link back after an outage (OUTAGE_MS): a row that failed during it goes at once, not
 * after its retry backoff, which held its entity's later rows too (up to retry_max, 300 s by
 * default; bench_drain.sh saw the drain stop 1.8 s at the link's return with retry_max 1).
 * After a failure shorter than an outage the row keeps its backoff.
 */
static void link_back_case(uint64_t outage_ms, const char *want, const char *a1_state)
{
    fresh();
    add_row("ful:a1", "OA", "fulfil", -1);
    add_row("ful:a2", "OA", "fulfil", -1);
    struct sync_engine *e = start(1);
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[ful:a1]");
    struct push_batch *b = next_batch();
    fail_for_network(b);
    CHECK_EQ_INT(fake_u->link, LINK_DOWN);
    CHECK_EQ_STR(row_state("ful:a1"), "pending");
    /* as a row retried all through a long outage: its next attempt an hour ahead */
    RH_EXEC(h, "UPDATE outbox SET attempts = 8, next_attempt_at = %lld WHERE key = 'ful:a1'",
            (long long)(store_now() + 3600));
    add_row("ful:b1", "OB", "fulfil", -1);
    down_for(outage_ms);
    fake_u->resume_ms = 0; /* the link's own backoff is over: a call may go */
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[ful:b1]"); /* the only row due */
    answer_all_done();                 /* it gets through: the link is up */
    CHECK_EQ_INT(fake_u->link, LINK_UP);
    sync_tick(e);
    CHECK_EQ_STR(taken(), want);
    answer_all_done();
    sync_tick(e);
    answer_all_done();
    CHECK_EQ_STR(row_state("ful:a1"), a1_state);
    CHECK_EQ_STR(row_state("ful:a2"), a1_state);
    stop(e);
}

/*
 * Batches in flight when the link comes back after an outage: one that then fails for the
 * network was sent in that outage (bench_drain.sh's slow drain: a batch sent just before the
 * link was restored came back "Empty reply" just after, took the link down again and held its
 * entity for its backoff). The link stays up and its row goes again at once; a batch taken
 * after the return that fails takes the link down as before.
 */
static void test_failure_after_outage(void)
{
    fresh();
    struct push_batch *a, *b, *c;
    struct sync_engine *e = three_in_flight(&a, &b, &c);
    fail_for_network(c);
    CHECK_EQ_INT(fake_u->link, LINK_DOWN);
    down_for(6000); /* an outage, not a failed call */
    b->outcome = SYNC_OK;
    b->items[0].outcome = SYNC_OK;
    sync_push_done(b); /* the link is back */
    CHECK_EQ_INT(fake_u->link, LINK_UP);
    fail_for_network(a); /* sent before the link came back */
    CHECK_EQ_INT(fake_u->link, LINK_UP);
    /* both go at once: c1's backoff lifted at the return, a1 given none (its answer is
     * recorded and the next batch taken in one transaction) */
    CHECK_EQ_STR(taken(), "[ful:c1][ful:a1]");
    CHECK_EQ_STR(row_state("ful:a1"), "inflight");
    /* taken after the return: its failure is the link's again */
    struct push_batch *c2 = next_batch();
    fail_for_network(c2);
    CHECK_EQ_INT(fake_u->link, LINK_DOWN);
    answer_all_done();
    stop(e);
}

static void test_link_back_lifts_backoff(void)
{
    link_back_case(6000, "[ful:a1]", "done");
    /* a failed call, not an outage: the row's own backoff holds (and its entity with it) */
    link_back_case(1000, "", "pending");
}

/* Rows behind their entity's row in backoff (many more than a batch's look used to see) do
 * not hide other entities' rows, and do not go before it; an entity's rows go in order. */
static void test_blocked_entity(void)
{
    fresh();
    add_row("e1-0", "E1", "movement", 3600);
    for (int i = 1; i <= 50; i++) {
        char key[16];
        snprintf(key, sizeof key, "e1-%d", i);
        add_row(key, "E1", "movement", -1);
    }
    add_row("h1", "H", "movement", -1);
    RH_EXEC(h, "UPDATE outbox SET state = 'held' WHERE key = 'h1'");
    add_row("x1", "X", "movement", -1);
    add_row("z1", "Z", "movement", -1);
    add_row("z2", "Z", "movement", -1);
    add_row("z3", "Z", "movement", -1);
    add_row("h2", "H", "movement", -1);
    struct sync_engine *e = start(2);
    sync_tick(e);
    /* Held rows do not hold their entity (h2); z1 goes, and z2 and z3 wait for it. */
    CHECK_EQ_STR(taken(), "[x1,z1][h2]");
    CHECK_EQ_STR(row_state("z2"), "pending");
    CHECK_EQ_STR(row_state("e1-1"), "pending");
    answer_all_done();
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[z2,z3]");
    answer_all_done();
    /* E1 goes once its first row is due, in order. */
    RH_EXEC(h, "UPDATE outbox SET next_attempt_at = 0 WHERE key = 'e1-0'");
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[e1-0,e1-1]");
    answer_all_done();
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[e1-2,e1-3]");
    answer_all_done();
    stop(e);
}

/* Notice `id` to B, as a transfer from A (`ref` its movement id, from_wh A) or by hand. */
static void add_notice(const char *id, const char *ref, const char *from)
{
    RH_EXEC(h,
            "INSERT INTO inbound_notices(id, warehouse, ref, from_wh, created_at, updated_at)"
            " VALUES('%s', %lld, %s%s%s, %s%s%s, 0, 0)",
            id, (long long)rh_wh_id(h, "B"), ref ? "'" : "", ref ? ref : "NULL", ref ? "'" : "",
            from ? "'" : "", from ? from : "NULL", from ? "'" : "");
    RH_EXEC(h,
            "INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at, created_at)"
            " VALUES('in:B:%s', 'wh:B', '%s', 'inbound', x'80', 0, 0)",
            id, id);
}

/*
 * An inbound notice a transfer made announces goods leaving its origin: it goes to the third
 * party only once the origin has taken the transfer's leg (its row done). While that row waits
 * (the origin's link down, a retry, a refusal held for the operator) the notice waits too, so
 * a leg given up never leaves a notice behind for goods that never left (test_kinds). A notice
 * made by hand, or whose ref is no movement of its origin, goes at once.
 */
static void test_notice_waits_for_leg(void)
{
    fresh();
    rh_seed_standard(h);
    RH_EXEC(h, "INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at,"
               " created_at) VALUES('t-7', 'wh:A', 'S1', 'movement', x'80', 0, 0)");
    add_notice("in-t-7", "t-7", "A");
    add_notice("in-h", "PO-1", NULL);
    add_notice("in-x", "t-7", "C"); /* t-7 is no movement at C */
    d->cfg.max_parallel = 4;
    struct sync_engine *e = NULL;
    nbatches = 0;
    CHECK_EQ_INT(sync_start_with(d, &fake, "wh:B", &e), 0);
    if (!e)
        exit(2);
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[in:B:in-h][in:B:in-x]");
    answer_all_done();
    RH_EXEC(h, "UPDATE outbox SET state = 'held' WHERE key = 't-7'");
    sync_tick(e);
    CHECK_EQ_STR(taken(), "");
    CHECK_EQ_STR(row_state("in:B:in-t-7"), "pending");
    RH_EXEC(h, "UPDATE outbox SET state = 'done' WHERE key = 't-7'");
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[in:B:in-t-7]");
    answer_all_done();
    CHECK_EQ_STR(row_state("in:B:in-t-7"), "done");
    stop(e);
}

/* Far more rows in backoff than one look goes through: the due row is still reached within a
 * few ticks (each look goes on where the last stopped), never starved. */
static void test_many_in_backoff(void)
{
    fresh();
    RH_EXEC(h, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1999)"
               " INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at,"
               " created_at) SELECT 'b' || i, 'wh:A', printf('B%%04d', i), 'fulfil', x'80',"
               " strftime('%%s','now') + 3600, strftime('%%s','now') FROM n");
    add_row("b7-next", "B0007", "fulfil", -1); /* due, but behind b7 */
    add_row("late", "ZZ", "fulfil", -1);
    struct sync_engine *e = start(1);
    int ticks = 0;
    while (nbatches == 0 && ticks < 20) {
        sync_tick(e);
        ticks++;
    }
    CHECK_EQ_STR(taken(), "[late]");
    CHECK(ticks < 20);
    answer_all_done();
    /* One of the oldest rows falls due: it goes as well (the looks go round). */
    RH_EXEC(h, "UPDATE outbox SET next_attempt_at = 0 WHERE key = 'b5'");
    for (ticks = 0; nbatches == 0 && ticks < 20; ticks++)
        sync_tick(e);
    CHECK_EQ_STR(taken(), "[b5]");
    CHECK(ticks < 20);
    answer_all_done();
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'"), 2000);
    CHECK_EQ_STR(row_state("b7-next"), "pending");
    stop(e);
}

/* Answers batch b: every row done but those named in `transient` (due again in an hour) /
 * `refused` (indexes). */
static void answer(struct push_batch *b, int transient, int refused)
{
    CHECK(b != NULL);
    if (!b)
        return;
    b->outcome = SYNC_OK;
    b->retry_after_s = 3600;
    for (int i = 0; i < b->n; i++) {
        b->items[i].outcome = i == transient ? SYNC_TRANSIENT
                              : i == refused ? SYNC_PERMANENT
                                             : SYNC_OK;
        if (i == transient || i == refused)
            snprintf(b->items[i].error, sizeof b->items[i].error, "no");
    }
    sync_push_done(b);
}

/*
 * A drain of one entity's rows (bench_drain.sh: one SKU's movements after an outage), many
 * more than a look goes through: one batch of it in flight at a time, its rows in order. Each
 * answer records its rows and hands over the next batch at once, in the same transaction,
 * without a tick, also after looks had gone on past those rows while they waited behind the
 * batch. A lost answer sends the same rows again, before any later one; a row refused mid-batch
 * is held (the rows after it go on); a row to be sent again mid-batch holds back every later
 * row of its entity not sent yet until it is done.
 */
static void test_drain_one_entity(void)
{
    fresh();
    RH_EXEC(h, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2999)"
               " INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at,"
               " created_at) SELECT printf('d%%04d', i), 'wh:A', 'S', 'movement', x'80', 0,"
               " strftime('%%s','now') FROM n");
    d->cfg.max_parallel = 4;
    d->cfg.retry_max_s = 60;
    struct sync_engine *e = start(4);
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[d0000,d0001,d0002,d0003]");
    /* Looks while it is in flight find nothing to send and go on past the entity's rows. */
    for (int i = 0; i < 3; i++)
        sync_tick(e);
    CHECK_EQ_INT(nbatches, 1);

    /* Its answer hands over the next rows at once. */
    answer(next_batch(), -1, -1);
    CHECK_EQ_STR(row_state("d0003"), "done");
    CHECK_EQ_STR(taken(), "[d0004,d0005,d0006,d0007]");
    CHECK_EQ_STR(row_state("d0004"), "inflight");

    /* A lost answer: the same rows go again once the backoff is over, first. */
    struct push_batch *b = next_batch();
    if (!b) {
        stop(e);
        return;
    }
    b->outcome = SYNC_TRANSIENT;
    b->retry_after_s = 3600; /* not due again before the test says so */
    snprintf(b->error, sizeof b->error, "no answer");
    sync_push_done(b);
    CHECK_EQ_INT(nbatches, 0);
    CHECK_EQ_STR(row_state("d0004"), "pending");
    CHECK_EQ_STR(row_state("d0008"), "pending");
    RH_EXEC(h, "UPDATE outbox SET next_attempt_at = 0 WHERE key < 'd0008'");
    fake_u->resume_ms = 0;
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[d0004,d0005,d0006,d0007]");

    /* Refused mid-batch: held, and the rows after it go on. */
    answer(next_batch(), -1, 1);
    CHECK_EQ_STR(row_state("d0005"), "held");
    CHECK_EQ_STR(row_state("d0006"), "done");
    CHECK_EQ_STR(taken(), "[d0008,d0009,d0010,d0011]");

    /* Again later mid-batch: nothing after it goes before it (the rows after it in its batch
     * the warehouse applied already). */
    answer(next_batch(), 1, -1);
    CHECK_EQ_STR(row_state("d0009"), "pending");
    CHECK_EQ_STR(row_state("d0010"), "done");
    sync_tick(e);
    CHECK_EQ_INT(nbatches, 0);
    CHECK_EQ_STR(row_state("d0012"), "pending");
    RH_EXEC(h, "UPDATE outbox SET next_attempt_at = 0 WHERE key = 'd0009'");
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[d0009,d0012,d0013,d0014]");

    /* The rest drains by answers alone, one batch at a time, in order. */
    int64_t last = rh_q64(h, "SELECT id - 1 FROM outbox WHERE key = 'd0009'");
    bool ordered = true, single = true;
    int answers = 0;
    while (nbatches > 0 && answers < 1000) {
        single = single && nbatches == 1;
        b = next_batch();
        for (int i = 0; i < b->n; i++) {
            ordered = ordered && b->items[i].outbox_id > last;
            last = b->items[i].outbox_id;
        }
        answer(b, -1, -1);
        answers++;
    }
    CHECK(ordered);
    CHECK(single);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state = 'done'"), 2999);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state <> 'done'"), 1);
    stop(e);
}

/*
 * An answer recorded, but the next batch's take fails (its rows cannot be marked in flight):
 * nothing of the transaction is kept, the answer is recorded alone, and the next look starts
 * at the answered batch's oldest row again, not past the rows the failed take had looked at
 * (one entity's later rows would then wait for the looks to go round the outbox, a tick each).
 */
static void test_drain_take_fails(void)
{
    fresh();
    /* Older rows, done: the drain's rows are not the outbox's first (a look from the first
     * row starts there again anyway). */
    RH_EXEC(h, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9)"
               " INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at,"
               " created_at, state) SELECT printf('x%%02d', i), 'wh:A', 'X', 'movement', x'80',"
               " 0, strftime('%%s','now'), 'done' FROM n");
    RH_EXEC(h, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2999)"
               " INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at,"
               " created_at) SELECT printf('d%%04d', i), 'wh:A', 'S', 'movement', x'80', 0,"
               " strftime('%%s','now') FROM n");
    d->cfg.max_parallel = 4;
    struct sync_engine *e = start(4);
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[d0000,d0001,d0002,d0003]");
    for (int i = 0; i < 3; i++)
        sync_tick(e); /* looks go on past the entity's rows */
    RH_EXEC(h, "CREATE TEMP TRIGGER no_take BEFORE UPDATE OF state ON outbox"
               " WHEN new.state = 'inflight' BEGIN SELECT RAISE(ABORT, 'injected'); END");
    answer(next_batch(), -1, -1);
    RH_EXEC(h, "DROP TRIGGER temp.no_take");
    CHECK_EQ_INT(nbatches, 0);
    CHECK_EQ_STR(row_state("d0003"), "done"); /* the answer, recorded alone */
    CHECK_EQ_STR(row_state("d0004"), "pending");
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[d0004,d0005,d0006,d0007]");
    answer_all_done();
    stop(e);
}

/* A row of another kind than the batch a look fills is where the next look starts. */
static void test_other_kind_next(void)
{
    fresh();
    for (int i = 0; i < 10; i++) {
        char key[16], entity[16];
        snprintf(key, sizeof key, "m%d", i);
        snprintf(entity, sizeof entity, "M%d", i);
        add_row(key, entity, "movement", -1);
        if (i == 5)
            add_row("t5", "M5x", "transfer", -1);
    }
    d->cfg.max_parallel = 3;
    struct sync_engine *e = start(4);
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[m0,m1,m2,m3][m4,m5,m6,m7][t5]");
    answer_all_done();
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[m8,m9]");
    answer_all_done();
    stop(e);
}

/* ---- randomized: every row that can go is taken within a bounded number of ticks ---- */

#define FZ_ROWS 2600  /* waiting rows at the start: more than two looks go through */
#define FZ_MAXID 8192 /* outbox ids the test keeps track of */
#define FZ_STEPS 200  /* ticks per seed */
#define FZ_ENTITIES 500
/* Ticks with room to spare (fewer batches taken than max_parallel) through which a row that
 * can go may wait: its look goes round the waiting rows in 3 (2600 / 1028), 1 more for a
 * change of kind. Ticks taken up by other rows that can go are not counted: the engine sends
 * as fast as it may, oldest first; those are the rows' turn, not starvation. */
#define FZ_BOUND 8

static uint64_t fz_seed;

static uint32_t fz_rand(void)
{
    fz_seed ^= fz_seed << 13;
    fz_seed ^= fz_seed >> 7;
    fz_seed ^= fz_seed << 17;
    return (uint32_t)(fz_seed >> 11);
}

static int fz_below(int n)
{
    return (int)(fz_rand() % (uint32_t)n);
}

static const char *const fz_kinds[] = {"movement", "transfer", "outbound", "fulfil"};

/* A row for a random entity and kind; due now, or in an hour (in backoff). */
static void fz_add(bool due)
{
    static int seq;
    char key[32], entity[16];
    snprintf(key, sizeof key, "fz%d", seq++);
    snprintf(entity, sizeof entity, "F%03d", fz_below(FZ_ENTITIES));
    add_row(key, entity, fz_kinds[fz_below(4)], due ? -1 : 3600);
}

/* Rows that can go now: pending, due, and no older row of their entity waiting. */
static const char SQL_CAN_GO[] =
    "SELECT o.id FROM outbox o WHERE o.target = 'wh:A' AND o.state = 'pending'"
    " AND o.next_attempt_at <= ?1 AND NOT EXISTS (SELECT 1 FROM outbox p"
    " WHERE p.target = o.target AND p.entity = o.entity AND p.id < o.id"
    " AND p.state IN ('pending', 'inflight'))";

static int fz_waited[FZ_MAXID], fz_spare[FZ_MAXID];
static bool fz_can_go[FZ_MAXID];

/* Checks one batch as the engine handed it over: one kind, within its limit, every row one
 * that could go before the tick or that follows, in this batch, the rows of its entity that
 * could. */
static void fz_check_batch(const struct push_batch *b, int push_limit)
{
    bool single = !strcmp(b->items[0].kind, "transfer") || !strcmp(b->items[0].kind, "outbound");
    CHECK(b->n >= 1 && b->n <= (single ? 1 : push_limit));
    char ids[2048] = "0";
    size_t len = 1;
    for (int i = 0; i < b->n; i++) {
        const struct push_item *it = &b->items[i];
        CHECK_EQ_STR(it->kind, b->items[0].kind);
        int64_t id = it->outbox_id;
        CHECK(id > 0 && id < FZ_MAXID);
        /* No older row of its entity waits, but those just before it in this batch. */
        int64_t older = rh_q64(h,
                               "SELECT COUNT(*) FROM outbox WHERE target = 'wh:A' AND entity ="
                               " '%s' AND id < %lld AND state IN ('pending', 'inflight')"
                               " AND id NOT IN (%s)",
                               it->entity, (long long)id, ids);
        if (older != 0)
            fprintf(stderr, "seed %llu: row %lld went before an older row of %s\n",
                    (unsigned long long)fz_seed, (long long)id, it->entity);
        CHECK_EQ_INT(older, 0);
        /* It was due and pending before the tick. */
        CHECK_EQ_STR(rh_qtext(h,
                              "SELECT next_attempt_at <= strftime('%%s','now') FROM outbox"
                              " WHERE id = %lld",
                              (long long)id),
                     "1");
        len += (size_t)snprintf(ids + len, sizeof ids - len, ",%lld", (long long)id);
    }
}

static void fz_run(uint64_t seed, int push_limit, unsigned parallel)
{
    fresh();
    rh_seed_standard(h);
    fz_seed = seed;
    d->cfg.max_parallel = parallel;
    d->cfg.retry_max_s = 0; /* no jitter: the test sets each backoff itself */
    memset(fz_waited, 0, sizeof fz_waited);
    memset(fz_spare, 0, sizeof fz_spare);
    for (int i = 0; i < FZ_ROWS; i++)
        fz_add(fz_below(50) == 0);
    struct sync_engine *e = start(push_limit);
    sqlite3 *db = store_db(d->store);
    int worst = 0, worst_spare = 0, taken_rows = 0;
    for (int step = 0; step < FZ_STEPS; step++) {
        /* Now and then: rows fall due, new rows come, the operator holds or retries one. */
        for (int k = fz_below(4); k > 0; k--)
            RH_EXEC(h,
                    "UPDATE outbox SET next_attempt_at = 0 WHERE id = (SELECT id FROM outbox"
                    " WHERE state = 'pending' AND next_attempt_at > 0 ORDER BY id LIMIT 1"
                    " OFFSET %d)",
                    fz_below(FZ_ROWS));
        for (int k = fz_below(3); k > 0; k--)
            fz_add(fz_below(3) == 0);
        if (fz_below(10) == 0)
            RH_EXEC(h,
                    "UPDATE outbox SET state = 'held' WHERE id = (SELECT id FROM outbox"
                    " WHERE state = 'pending' ORDER BY id LIMIT 1 OFFSET %d)",
                    fz_below(FZ_ROWS));
        if (fz_below(10) == 0)
            RH_EXEC(h,
                    "UPDATE outbox SET state = 'pending', next_attempt_at = 0 WHERE id = (SELECT"
                    " id FROM outbox WHERE state = 'held' ORDER BY id LIMIT 1 OFFSET %d)",
                    fz_below(20));
        /* What can go before the tick. */
        memset(fz_can_go, 0, sizeof fz_can_go);
        sqlite3_stmt *q = NULL;
        CHECK_EQ_INT(sqlite3_prepare_v2(db, SQL_CAN_GO, -1, &q, NULL), SQLITE_OK);
        sqlite3_bind_int64(q, 1, store_now());
        while (q && sqlite3_step(q) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(q, 0);
            if (id > 0 && id < FZ_MAXID)
                fz_can_go[id] = true;
        }
        sqlite3_finalize(q);

        sync_tick(e);

        bool went[FZ_MAXID] = {0};
        for (int i = 0; i < nbatches; i++) {
            fz_check_batch(batches[i], push_limit);
            for (int j = 0; j < batches[i]->n; j++)
                if (batches[i]->items[j].outbox_id < FZ_MAXID)
                    went[batches[i]->items[j].outbox_id] = true;
        }
        bool spare = nbatches < (int)parallel;
        for (int id = 1; id < FZ_MAXID; id++) {
            bool waits = fz_can_go[id] && !went[id];
            fz_waited[id] = waits ? fz_waited[id] + 1 : 0;
            fz_spare[id] = waits ? fz_spare[id] + spare : 0;
            if (fz_waited[id] > worst)
                worst = fz_waited[id];
            if (fz_spare[id] > worst_spare)
                worst_spare = fz_spare[id];
            if (fz_spare[id] == FZ_BOUND + 1)
                fprintf(stderr,
                        "seed %llu: row %d could go through %d ticks with room and was not"
                        " taken\n",
                        (unsigned long long)seed, id, FZ_BOUND + 1);
        }

        /* The answers: mostly done; some again later (due now or in an hour); a few refused.
         * Now and then the replica cannot record them until the next tick. */
        bool fault = fz_below(15) == 0;
        if (fault)
            fault_on();
        int64_t later[MAX_BATCHES * 8];
        int nlater = 0;
        struct push_batch *b;
        /* An answer may hand over the next batch at once (record_and_take): checked as it is
         * handed over, and answered in this loop too. */
        fz_answering = push_limit;
        while ((b = next_batch()) != NULL) {
            b->outcome = SYNC_OK;
            for (int j = 0; j < b->n; j++) {
                int r = fz_below(20);
                b->items[j].outcome = r < 14 ? SYNC_OK : r < 19 ? SYNC_TRANSIENT : SYNC_PERMANENT;
                if (b->items[j].outcome != SYNC_OK)
                    snprintf(b->items[j].error, sizeof b->items[j].error, "no");
                if (b->items[j].outcome == SYNC_TRANSIENT && fz_below(2) &&
                    nlater < (int)(sizeof later / sizeof later[0]))
                    later[nlater++] = b->items[j].outbox_id;
                taken_rows++;
            }
            sync_push_done(b);
        }
        fz_answering = 0;
        if (fault) {
            fault_off();
        } else {
            CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state = 'inflight'"), 0);
            for (int j = 0; j < nlater; j++)
                RH_EXEC(h, "UPDATE outbox SET next_attempt_at = %lld WHERE id = %lld",
                        (long long)(store_now() + 3600), (long long)later[j]);
        }
    }
    CHECK(worst_spare <= FZ_BOUND);
    CHECK(taken_rows > FZ_STEPS / 4); /* the run did send */
    printf("take_batch seed %llu, %d per batch, %u parallel: %d rows sent; a row that could go"
           " waited at most %d ticks, %d of them with room\n",
           (unsigned long long)seed, push_limit, parallel, taken_rows, worst, worst_spare);
    stop(e);
}

static void test_random_looks(void)
{
    const char *env = getenv("TALLY_SYNC_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : 0x5eed;
    static const int limits[] = {1, 4, 50};
    for (int i = 0; i < 3; i++)
        fz_run(seed + (uint64_t)i, limits[i], (unsigned)(1 + i));
}

/* ---- pulls while the link is down: the probe goes to each stream in turn ---- */

static const char *const two_streams[] = {"catalog", "orders"};
static int pulls_of[2];
static int pending_pull = -1; /* the stream of the pull in flight, -1 when none */

static void release_none(struct pull_page *pg)
{
    (void)pg;
}

static void pull_record(struct upstream *u, int stream, const struct checkpoint *cp)
{
    (void)u, (void)cp;
    pulls_of[stream]++;
    CHECK_EQ_INT(pending_pull, -1);
    pending_pull = stream;
}

/* An engine whose connector has two streams (catalog, orders) that record their pulls. */
static struct sync_engine *start_two_streams(void)
{
    static struct connector_ops two;
    two = fake;
    two.nstreams = 2;
    two.streams = two_streams;
    two.pull = pull_record;
    pending_pull = -1;
    return start_ops(&two);
}

/* Answers the pull in flight as the failing catalog of the report did: transient. */
static void fail_pending(void)
{
    if (pending_pull < 0)
        return;
    static struct pull_page pg;
    memset(&pg, 0, sizeof pg);
    pg.outcome = SYNC_TRANSIENT;
    pg.retry_after_s = -1;
    pg.release = release_none;
    snprintf(pg.error, sizeof pg.error, "unreadable answer");
    int s = pending_pull;
    pending_pull = -1;
    sync_pull_done(fake_u, s, &pg);
}

/* Both streams keep failing while the link is down; each probe (the backoff over) goes to the
 * streams in turn, so the orders are asked as often as the catalog. */
static void test_probe_takes_turns(void)
{
    fresh();
    d->cfg.max_parallel = 1;
    struct connector_ops two = fake;
    two.nstreams = 2;
    two.streams = two_streams;
    two.pull = pull_record;
    pulls_of[0] = pulls_of[1] = 0;
    struct sync_engine *e = start_ops(&two);
    for (int step = 0; step < 20; step++) {
        fake_u->resume_ms = 0; /* the backoff is over */
        sync_tick(e);
        fail_pending();
    }
    CHECK_EQ_INT(fake_u->link, LINK_DOWN);
    CHECK_EQ_INT(pulls_of[0] + pulls_of[1], 20);
    CHECK(pulls_of[1] >= 9);
    CHECK(pulls_of[0] >= 9);
    stop(e);
}

/*
 * A drain keeps every request slot busy with batches that each answer hands over at once
 * (record_and_take); a stream that comes due meanwhile (the orders' round, a `tally sync`)
 * still gets a slot at the next tick, as it did when the tick handed out every slot: streams
 * first. With [sync] max_parallel = 1 the drain otherwise held the one slot until the outbox
 * was empty, and no page was asked for.
 */
static void test_drain_lets_pulls_in(void)
{
    fresh();
    RH_EXEC(h, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 199)"
               " INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at,"
               " created_at) SELECT printf('p%%04d', i), 'wh:A', printf('E%%d', i %% 7),"
               " 'movement', x'80', 0, strftime('%%s','now') FROM n");
    d->cfg.max_parallel = 1;
    struct connector_ops two = fake;
    two.nstreams = 2;
    two.streams = two_streams;
    two.pull = pull_record;
    two.push_limit = 4;
    pulls_of[0] = pulls_of[1] = 0;
    pending_pull = -1;
    struct sync_engine *e = start_ops(&two);
    /* No round due yet: the tick gives the slot to the outbox. */
    for (int k = 0; k < 2; k++)
        fake_u->streams[k].due_ms = UINT64_MAX;
    sync_tick(e);
    CHECK_EQ_INT(nbatches, 1);
    CHECK_EQ_INT(pulls_of[0] + pulls_of[1], 0);
    /* The orders' round comes due while a batch is in flight. */
    fake_u->streams[1].requested = true;
    for (int step = 0; step < 10 && pulls_of[1] == 0; step++) {
        struct push_batch *b = next_batch();
        if (b)
            answer(b, -1, -1);
        sync_tick(e);
    }
    CHECK_EQ_INT(pulls_of[1], 1);
    CHECK_EQ_INT(pulls_of[0], 0);
    /* The drain goes on once the page is in. */
    int64_t done = rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state = 'done'");
    CHECK(done > 0 && done < 200);
    answer_all_done();
    pending_pull = -1;
    stop(e);
}

/*
 * A request sent before the link came back from an outage, answered after it with a
 * Retry-After (a 429 or 503 that says how long to wait): the upstream spoke after the return,
 * and its word holds. The link goes down for that long and the batch's row waits as long, as
 * for any answer; neither the batch nor the page is taken for one that failed in the outage
 * (which would send at once to an upstream that asked for two minutes).
 */
static void test_retry_after_after_outage(void)
{
    fresh();
    d->cfg.max_parallel = 4;
    struct push_batch *a, *b, *c;
    struct sync_engine *e = three_in_flight(&a, &b, &c);
    fail_for_network(c);
    down_for(6000); /* an outage, not a failed call */
    b->outcome = SYNC_OK;
    b->items[0].outcome = SYNC_OK;
    sync_push_done(b); /* the link is back */
    CHECK_EQ_INT(fake_u->link, LINK_UP);
    a->outcome = SYNC_TRANSIENT;
    a->retry_after_s = 120;
    snprintf(a->error, sizeof a->error, "HTTP 429");
    sync_push_done(a); /* sent before the return, answered after it */
    CHECK_EQ_INT(fake_u->link, LINK_DOWN);
    CHECK(fake_u->resume_ms >= uv_now(&loop) + 120000);
    CHECK_EQ_STR(row_state("ful:a1"), "pending");
    CHECK(rh_q64(h, "SELECT next_attempt_at FROM outbox WHERE key = 'ful:a1'") >=
          store_now() + 119);
    answer_all_done();
    stop(e);

    /* A page asked before the return, answered after it with a Retry-After. */
    fresh();
    d->cfg.max_parallel = 3;
    add_row("ful:x1", "OX", "fulfil", -1);
    add_row("ful:y1", "OY", "fulfil", -1);
    e = start_two_streams();
    fake_u->streams[1].due_ms = UINT64_MAX;
    sync_tick(e);
    CHECK_EQ_INT(pending_pull, 0);
    CHECK_EQ_STR(taken(), "[ful:x1][ful:y1]");
    struct push_batch *x = next_batch(), *y = next_batch();
    fail_for_network(x);
    CHECK_EQ_INT(fake_u->link, LINK_DOWN);
    down_for(6000);
    y->outcome = SYNC_OK;
    y->items[0].outcome = SYNC_OK;
    sync_push_done(y); /* the link is back */
    CHECK_EQ_INT(fake_u->link, LINK_UP);
    static struct pull_page pg;
    memset(&pg, 0, sizeof pg);
    pg.outcome = SYNC_TRANSIENT;
    pg.retry_after_s = 120;
    pg.release = release_none;
    snprintf(pg.error, sizeof pg.error, "HTTP 503");
    pending_pull = -1;
    sync_pull_done(fake_u, 0, &pg);
    CHECK_EQ_INT(fake_u->link, LINK_DOWN);
    CHECK(fake_u->resume_ms >= uv_now(&loop) + 120000);
    answer_all_done();
    pending_pull = -1;
    stop(e);
}

static int apply_nothing(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                         size_t errlen)
{
    (void)pg, (void)st, (void)cp, (void)err, (void)errlen;
    return 0;
}

/*
 * The link back after an outage by a page (no push answer, so no record_and_take): the next
 * take lifts the rows' backoff, but its look ends in one entity's rows behind its row in flight
 * (more than a look goes through) and takes nothing. The lift is committed all the same, and
 * the row in backoff past them goes at the next look, not after its backoff (an hour here).
 */
static void test_lift_when_take_finds_nothing(void)
{
    fresh();
    d->cfg.max_parallel = 3;
    RH_EXEC(h, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1099)"
               " INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at,"
               " created_at) SELECT printf('a%%04d', i), 'wh:A', 'OA', 'fulfil', x'80', 0,"
               " strftime('%%s','now') FROM n");
    add_row("ful:b1", "OB", "fulfil", 3600);
    /* in backoff: it failed before (a row never tried is never in the future) */
    RH_EXEC(h, "UPDATE outbox SET attempts = 3 WHERE key = 'ful:b1'");
    add_row("ful:z1", "OZ", "fulfil", -1);
    struct sync_engine *e = start_two_streams();
    fake_u->streams[1].due_ms = UINT64_MAX;
    sync_tick(e);
    CHECK_EQ_INT(pending_pull, 0);
    sync_tick(e); /* z1 is past OA's rows: the next look */
    CHECK_EQ_STR(taken(), "[a0000][ful:z1]");
    struct push_batch *a = next_batch(), *z = next_batch();
    if (!z)
        exit(2);
    fail_for_network(z);
    CHECK_EQ_INT(fake_u->link, LINK_DOWN);
    down_for(6000); /* an outage, not a failed call */
    static struct pull_page pg;
    memset(&pg, 0, sizeof pg);
    pg.outcome = SYNC_OK;
    pg.retry_after_s = -1;
    pg.total = -1;
    pg.apply = apply_nothing;
    pg.release = release_none;
    pending_pull = -1;
    sync_pull_done(fake_u, 0, &pg); /* the link is back */
    CHECK_EQ_INT(fake_u->link, LINK_UP);
    fake_u->streams[1].due_ms = UINT64_MAX; /* one slot for the pull, one for a take */
    sync_tick(e);                           /* the take's look ends in OA's rows */
    CHECK_EQ_STR(taken(), "");
    CHECK(rh_q64(h, "SELECT next_attempt_at FROM outbox WHERE key = 'ful:b1'") <= store_now());
    pending_pull = -1;
    sync_tick(e);
    CHECK_EQ_STR(row_state("ful:b1"), "inflight");
    if (a)
        batches[nbatches++] = a;
    answer_all_done();
    pending_pull = -1;
    stop(e);
}

/* ---- pages applied off the loop ---- */

#define SLOW_ROWS 3

/* A page of SLOW_ROWS rows, one per slice. Its first slice, on the worker, waits (its
 * transaction open) until the test lets it go; the failing one stops at row fail_at. */
struct slow_page {
    struct pull_page pg;
    int next;       /* the next row */
    int fail_at;    /* -1: none */
    bool reconcile; /* rows at the held version: drift */
    int64_t wh, version, on_hand[SLOW_ROWS];
    const char *sku[SLOW_ROWS];
    int64_t ckpt_rows_seen[SLOW_ROWS]; /* the stored checkpoint's rows_total in each slice */
    int fk_seen[SLOW_ROWS];            /* PRAGMA foreign_keys in each slice */
    int reprepared[SLOW_ROWS];         /* times that checkpoint query was prepared again */
};

static pthread_mutex_t slow_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slow_cv = PTHREAD_COND_INITIALIZER;
static bool slow_hold, slow_go;
static atomic_bool slow_inside, slow_timed_out;
static atomic_int slow_slices;

static int slow_slice(struct pull_page *pg, struct store *st, int64_t until_us, bool *finished,
                      char *err, size_t errlen)
{
    struct slow_page *p = (struct slow_page *)pg;
    (void)until_us;
    if (p->next == p->fail_at) {
        snprintf(err, errlen, "injected failure between slices");
        return TALLY_E_STORAGE;
    }
    int k = p->next++;
    atomic_fetch_add(&slow_slices, 1);
    sqlite3_stmt *s =
        store_stmt(st, "SELECT rows_total FROM checkpoints WHERE stream = 'wh:A:inventory'");
    p->ckpt_rows_seen[k] = s && sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    p->reprepared[k] = s ? sqlite3_stmt_status(s, SQLITE_STMTSTATUS_REPREPARE, 0) : -1;
    if (s)
        sqlite3_reset(s);
    sqlite3_stmt *fk = store_stmt(st, "PRAGMA foreign_keys");
    p->fk_seen[k] = fk && sqlite3_step(fk) == SQLITE_ROW ? sqlite3_column_int(fk, 0) : -1;
    if (fk)
        sqlite3_reset(fk);
    int r = whfeed_stock(fake_u, st, p->wh, p->sku[k], p->on_hand[k], -1, p->version, store_now(),
                         p->reconcile, pg);
    if (k == 0 && slow_hold) {
        /* Hold the slice's transaction open until the test has asked its query. */
        atomic_store(&slow_inside, true);
        pthread_mutex_lock(&slow_mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        while (!slow_go)
            if (pthread_cond_timedwait(&slow_cv, &slow_mu, &until) != 0) {
                atomic_store(&slow_timed_out, true);
                break;
            }
        pthread_mutex_unlock(&slow_mu);
    }
    *finished = p->next == SLOW_ROWS;
    return r;
}

static int slow_final(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                      size_t errlen)
{
    struct slow_page *p = (struct slow_page *)pg;
    (void)st, (void)err, (void)errlen;
    snprintf(cp->cursor, sizeof cp->cursor, "%s", pg->next_cursor); /* "": the round's last */
    if (!pg->next_cursor[0])
        cp->version = p->version;
    return 0;
}

static void slow_release(struct pull_page *pg)
{
    (void)pg;
}

/* A page of `rows` applied off the loop by `slice`, then slow_final (the checkpoint). */
static void off_loop_page(struct pull_page *pg, int64_t rows,
                          int (*slice)(struct pull_page *, struct store *, int64_t, bool *, char *,
                                       size_t))
{
    pg->outcome = SYNC_OK;
    pg->retry_after_s = -1;
    pg->total = -1;
    pg->rows = rows;
    pg->off_loop = true;
    pg->apply_slice = slice;
    pg->apply = slow_final;
    pg->release = slow_release;
}

static void slow_make(struct slow_page *p, int64_t version, int fail_at)
{
    memset(p, 0, sizeof *p);
    off_loop_page(&p->pg, SLOW_ROWS, slow_slice);
    p->fail_at = fail_at;
    p->wh = rh_wh_id(h, "A");
    p->version = version;
    static const char *const skus[SLOW_ROWS] = {"S1", "S2", "NEW-1"};
    for (int k = 0; k < SLOW_ROWS; k++) {
        p->sku[k] = skus[k];
        p->on_hand[k] = 20 + k;
    }
}

/* Runs the loop until every worker job is done (its done ran). */
static void drain_jobs(void)
{
    for (int i = 0; i < 100000 && workers_pending(d) > 0; i++)
        uv_run(&loop, UV_RUN_ONCE);
}

static int64_t ckpt_rows(void)
{
    return rh_q64(h, "SELECT COALESCE(MAX(rows_total), 0) FROM checkpoints"
                     " WHERE stream = 'wh:A:inventory'");
}

static const char *const inv_streams[] = {"inventory"};

/* The loop runs while pages are applied: its tick may ask for a page; the test answers. */
static char asked_cursor[sizeof((struct checkpoint *)0)->cursor];
static int asked_n;

static void pull_nothing(struct upstream *u, int stream, const struct checkpoint *cp)
{
    (void)u, (void)stream;
    snprintf(asked_cursor, sizeof asked_cursor, "%s", cp->cursor);
    asked_n++;
}

/* Runs the loop (its tick) until the engine asks for a page; false when it does not. */
static bool await_pull(int before)
{
    for (int i = 0; i < 200 && asked_n == before; i++)
        uv_run(&loop, UV_RUN_ONCE);
    return asked_n > before;
}

static struct sync_engine *start_inventory(void)
{
    static struct connector_ops inv;
    inv = fake;
    inv.nstreams = 1;
    inv.streams = inv_streams;
    inv.pull = pull_nothing;
    inv.push = NULL; /* no tick waits for the writer a held slice keeps (take_batch's mark) */
    return start_ops(&inv);
}

/* A fresh replica with its workers and an inventory engine (pages applied off the loop);
 * *held: S1's version at A. */
static struct sync_engine *start_off_loop(int64_t *held)
{
    fresh();
    rh_seed_standard(h);
    char err[256];
    CHECK_EQ_INT(workers_start(d, err, sizeof err), 0);
    struct sync_engine *e = start_inventory();
    *held = rh_q64(h,
                   "SELECT upstream_version FROM stock WHERE sku = %lld AND"
                   " warehouse = %lld",
                   (long long)rh_sku_id(h, "S1"), (long long)rh_wh_id(h, "A"));
    return e;
}

/* The engine stopped, then the workers, their jobs' ends run. */
static void stop_off_loop(struct sync_engine *e)
{
    stop(e);
    workers_stop(d);
    uv_run(&loop, UV_RUN_DEFAULT);
    workers_free(d);
}

/* ---- the loop's transactions give way to a group commit (store_begin_yield) ---- */

/* Stands for gcommit.c's before_begin with a group open or in flight: a begin that does not
 * wait gives way (TALLY_E_BUSY, store_yielded); one that waits goes on. */
static bool yield_on;
static int yielding_before_begin(void *arg, bool wait)
{
    (void)arg;
    return yield_on && !wait ? TALLY_E_BUSY : 0;
}

static int snap_releases;
static void release_snap_counted(struct pull_page *pg)
{
    (void)pg;
    snap_releases++;
}

/* A push's outcome and a page that gave way wait, with no error (not "nothing is sent"), and
 * are done, in order and each once, when the commit returns (sync_writer_free); a stop
 * releases a page still parked. */
static void test_outcome_yields(void)
{
    rh_open(h);
    d = rh_daemon(h);
    d->loop = &loop;
    rh_seed_standard(h);
    /* The test's connector with its inventory stream (the engine looks at its streams). */
    static struct connector_ops ops;
    ops = fake;
    ops.push_limit = MAX_BATCHES;
    ops.nstreams = 1;
    ops.streams = inv_streams;
    ops.pull = pull_nothing;
    nbatches = 0;
    struct sync_engine *e = NULL;
    CHECK_EQ_INT(sync_start_with(d, &ops, "wh:A", &e), 0);
    if (!e)
        return;
    fake_u->streams[0].due_ms = UINT64_MAX; /* pulls only when the test says */
    store_set_before_begin(d->store, yielding_before_begin, NULL);
    int64_t held = rh_q64(h,
                          "SELECT upstream_version FROM stock WHERE sku = %lld AND"
                          " warehouse = %lld",
                          (long long)rh_sku_id(h, "S1"), (long long)rh_wh_id(h, "A"));
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=y1", "sku=S1", "warehouse=A", "qty=#5",
                  NULL) != NULL);
    sync_tick(e);
    struct push_batch *b = next_batch();
    CHECK(b != NULL);
    if (!b)
        return;
    yield_on = true;
    b->outcome = SYNC_OK;
    b->items[0].outcome = SYNC_OK;
    b->items[0].version = held + 1;
    sync_push_done(b);
    CHECK_EQ_STR(row_state("y1"), "inflight");
    CHECK(!status_says(e, "nothing is sent"));
    uint64_t yields = 0, waits = 0;
    sync_yields(e, &yields, &waits);
    CHECK(yields > 0);
    /* The warehouse's page holds the receive: parked behind the outcome, not applied. */
    struct snap_page page;
    make_page(&page, 15, held + 1);
    sync_pull_done(fake_u, 0, &page.pg);
    CHECK(fake_u->streams[0].parked == &page.pg);
    CHECK(fake_u->streams[0].applying);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S1", "A"), 10);
    sync_tick(e); /* still giving way: nothing moves, nothing fails */
    CHECK(fake_u->streams[0].parked == &page.pg);
    CHECK_EQ_STR(fake_u->streams[0].last_error, "");
    /* The commit returned: the outcome first, then the page; the receive counted once. */
    yield_on = false;
    sync_writer_free(e);
    CHECK_EQ_STR(row_state("y1"), "done");
    CHECK(fake_u->streams[0].parked == NULL);
    CHECK(!fake_u->streams[0].applying);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S1", "A"), 15);
    CHECK_EQ_INT(rh_stock_figure(h, ON_HAND, "S1", "A"), 15);
    /* A page parked at a stop is released (the sanitizer build checks nothing leaks). */
    yield_on = true;
    snap_releases = 0;
    make_page(&page, 16, held + 2);
    page.pg.release = release_snap_counted;
    sync_pull_done(fake_u, 0, &page.pg);
    CHECK(fake_u->streams[0].parked == &page.pg);
    stop(e);
    CHECK_EQ_INT(snap_releases, 1);
    yield_on = false;
    store_set_before_begin(d->store, NULL, NULL);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S1", "A"), 15);
}

/* A warehouse's round whose end (reservations of shipped orders released: fulfil.c) gave way to
 * a group commit is not over yet in `status` (what `tally sync --wait` reads), until that end
 * is done when the commit returns. */
static void test_round_end_yields(void)
{
    fresh();
    rh_seed_standard(h);
    char err[256];
    CHECK_EQ_INT(workers_start(d, err, sizeof err), 0);
    struct sync_engine *e = start_inventory();
    static struct wh_config w;
    snprintf(w.code, sizeof w.code, "A");
    fake_u->wh = &w;
    struct stream_state *ss = &fake_u->streams[0];
    ss->reconcilable = true;
    ss->in_round = true; /* as start_pull leaves it */
    ss->round_started_at = store_now();
    ss->interval_s = 3600;
    int64_t held = rh_q64(h, "SELECT MAX(upstream_version) FROM stock");
    static struct slow_page p;
    slow_hold = false;
    slow_make(&p, held + 5, -1); /* the round's last page (no next cursor) */
    store_set_before_begin(d->store, yielding_before_begin, NULL);
    yield_on = true;
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    CHECK(!ss->applying);
    CHECK(ss->round_done_due);
    CHECK(status_says(e, "\xa8in_round\xc3"));
    CHECK(sync_busy(e, "inventory", 9));
    yield_on = false;
    sync_writer_free(e);
    CHECK(!ss->round_done_due);
    CHECK(status_says(e, "\xa8in_round\xc2"));
    store_set_before_begin(d->store, NULL, NULL);
    fake_u->wh = NULL;
    stop_off_loop(e);
}

static void test_page_off_loop(void)
{
    int64_t held;
    struct sync_engine *e = start_off_loop(&held);
    int64_t rows_before = ckpt_rows();

    /* The page's first slice holds its transaction open on the worker... */
    static struct slow_page p;
    slow_make(&p, held + 5, -1);
    slow_hold = true;
    slow_go = false;
    atomic_store(&slow_inside, false);
    atomic_store(&slow_timed_out, false);
    atomic_store(&slow_slices, 0);
    sync_pull_done(fake_u, 0, &p.pg);
    for (int i = 0; i < 2000 && !atomic_load(&slow_inside); i++)
        usleep(5000);
    CHECK(atomic_load(&slow_inside));
    /* ...and the loop answers a query meanwhile, from what is committed. */
    CHECK(rh_call(h, "stock.get", "sku=S1", NULL) != NULL);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S1", "A"), 10);
    CHECK(sync_busy(e, "inventory", 9));
    CHECK(!atomic_load(&slow_timed_out)); /* answered before the slice gave up waiting */
    pthread_mutex_lock(&slow_mu);
    slow_go = true;
    pthread_cond_signal(&slow_cv);
    pthread_mutex_unlock(&slow_mu);
    drain_jobs();
    CHECK(!atomic_load(&slow_timed_out));
    /* Every row in, in as many transactions as slices, the checkpoint written in the last. */
    CHECK_EQ_INT(atomic_load(&slow_slices), SLOW_ROWS);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S1", "A"), 20);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S2", "A"), 21);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "NEW-1", "A"), 22);
    for (int k = 0; k < SLOW_ROWS; k++)
        CHECK_EQ_INT(p.ckpt_rows_seen[k], rows_before);
    CHECK_EQ_INT(ckpt_rows(), rows_before + SLOW_ROWS);
    CHECK_EQ_INT(rh_q64(h, "SELECT version FROM checkpoints WHERE stream = 'wh:A:inventory'"),
                 held + 5);
    CHECK(!fake_u->streams[0].applying);

    /* A page that stops after its first slice (a crash between slices): that slice stays
     * (consistent: one row at the new version), the checkpoint does not move... */
    slow_hold = false;
    slow_make(&p, held + 9, 1);
    for (int k = 0; k < SLOW_ROWS; k++)
        p.on_hand[k] = 30 + k;
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S1", "A"), 30);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S2", "A"), 21);
    CHECK_EQ_INT(ckpt_rows(), rows_before + SLOW_ROWS);
    CHECK_EQ_INT(rh_q64(h, "SELECT version FROM checkpoints WHERE stream = 'wh:A:inventory'"),
                 held + 5);
    CHECK(status_says(e, "injected failure between slices"));
    /* ...and the page applied again converges, each row once, the checkpoint moved once. */
    slow_make(&p, held + 9, -1);
    for (int k = 0; k < SLOW_ROWS; k++)
        p.on_hand[k] = 30 + k;
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S1", "A"), 30);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S2", "A"), 31);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "NEW-1", "A"), 32);
    CHECK_EQ_INT(ckpt_rows(), rows_before + 2 * SLOW_ROWS);
    CHECK_EQ_INT(rh_q64(h, "SELECT version FROM checkpoints WHERE stream = 'wh:A:inventory'"),
                 held + 9);
    CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM skus WHERE code = 'NEW-1'"), 1);

    /* Reconciliation on the worker: S2 drifted (the replica has 5 at the warehouse's version,
     * the warehouse 31): repaired, counted, and a person told by an exception. */
    RH_EXEC(h, "UPDATE stock SET snapshot = 5 WHERE sku = (SELECT id FROM skus WHERE code = 'S2')");
    slow_make(&p, held + 9, -1);
    for (int k = 0; k < SLOW_ROWS; k++)
        p.on_hand[k] = 30 + k;
    p.reconcile = true;
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S2", "A"), 31);
    CHECK_EQ_INT(p.pg.repaired, 1);
    CHECK_EQ_INT(fake_u->streams[0].repaired, 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM exceptions WHERE kind = 'stock_drift'"
                           " AND sku = (SELECT id FROM skus WHERE code = 'S2')"),
                 1);

    /* Pipelining: while a page with more to come is applied, the next page (asked for from its
     * cursor meanwhile) is refused for good (SYNC_PERMANENT: the stream waits its interval).
     * The page before it then ends: the stream keeps waiting its interval, it does not ask
     * again at once, outside any round. */
    struct stream_state *ss = &fake_u->streams[0];
    ss->in_round = true; /* as start_pull leaves it */
    ss->interval_s = 3600;
    slow_make(&p, held + 11, -1);
    p.pg.more = true;
    snprintf(p.pg.next_cursor, sizeof p.pg.next_cursor, "c-next");
    slow_hold = true;
    slow_go = false;
    atomic_store(&slow_inside, false);
    atomic_store(&slow_timed_out, false);
    sync_pull_done(fake_u, 0, &p.pg);
    for (int i = 0; i < 2000 && !atomic_load(&slow_inside); i++)
        usleep(5000);
    CHECK(atomic_load(&slow_inside));
    CHECK(ss->applying);
    CHECK(ss->has_ahead);
    struct pull_page refused = {
        .outcome = SYNC_PERMANENT, .retry_after_s = -1, .total = -1, .release = slow_release};
    snprintf(refused.error, sizeof refused.error, "page refused: answer too large");
    sync_pull_done(fake_u, 0, &refused);
    CHECK(!ss->has_ahead);
    CHECK(!ss->in_round);
    pthread_mutex_lock(&slow_mu);
    slow_go = true;
    pthread_cond_signal(&slow_cv);
    pthread_mutex_unlock(&slow_mu);
    drain_jobs();
    slow_hold = false;
    CHECK(!ss->applying);
    CHECK(ss->due_ms > 0); /* was 0: asked again at once */
    CHECK(!ss->running);

    /* No page twice: the page asked for ahead fails (the link), the page before it is applied,
     * and the stream asks again from its checkpoint, where that page began: each page is
     * applied and counted once, and the round ends where the warehouse's did. */
    RH_EXEC(h, "UPDATE checkpoints SET cursor = NULL WHERE stream = 'wh:A:inventory'");
    int64_t rows0 = ckpt_rows();
    ss->in_round = true; /* as start_pull leaves it */
    ss->round_rows = 0;
    fake_u->resume_ms = 0; /* no backoff left from the cases before */
    slow_make(&p, held + 13, -1);
    p.pg.more = true;
    snprintf(p.pg.next_cursor, sizeof p.pg.next_cursor, "c-2");
    slow_hold = true;
    slow_go = false;
    atomic_store(&slow_inside, false);
    sync_pull_done(fake_u, 0, &p.pg);
    for (int i = 0; i < 2000 && !atomic_load(&slow_inside); i++)
        usleep(5000);
    CHECK(atomic_load(&slow_inside));
    int n0 = asked_n;
    CHECK(await_pull(n0));
    CHECK_EQ_STR(asked_cursor, "c-2");
    CHECK(ss->running);
    CHECK(ss->applying);
    struct pull_page lost = {
        .outcome = SYNC_TRANSIENT, .retry_after_s = -1, .total = -1, .release = slow_release};
    snprintf(lost.error, sizeof lost.error, "connection reset");
    sync_pull_done(fake_u, 0, &lost);
    CHECK(!ss->has_ahead);
    /* While the page is still being applied, its checkpoint is where it began: nothing is
     * asked for, even with the link's backoff over (it would be this page again). */
    fake_u->resume_ms = 0;
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ_INT(asked_n, n0 + 1);
    int n1 = asked_n;
    pthread_mutex_lock(&slow_mu);
    slow_go = true;
    pthread_cond_signal(&slow_cv);
    pthread_mutex_unlock(&slow_mu);
    drain_jobs();
    slow_hold = false;
    CHECK(!atomic_load(&slow_timed_out));
    CHECK_EQ_INT(ckpt_rows(), rows0 + SLOW_ROWS);
    CHECK_EQ_INT(rh_q64(h, "SELECT cursor = 'c-2' FROM checkpoints"
                           " WHERE stream = 'wh:A:inventory'"),
                 1);
    CHECK(await_pull(n1)); /* once applied (the link's backoff was cleared above) */
    CHECK_EQ_INT(asked_n, n1 + 1);
    CHECK_EQ_STR(asked_cursor, "c-2"); /* from the checkpoint: the failed page, not past it */
    slow_make(&p, held + 13, -1);      /* the round's last page */
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    CHECK_EQ_INT(ckpt_rows(), rows0 + 2 * SLOW_ROWS);
    CHECK_EQ_INT(rh_q64(h,
                        "SELECT cursor IS NULL AND version = %lld FROM checkpoints"
                        " WHERE stream = 'wh:A:inventory'",
                        (long long)(held + 13)),
                 1);
    CHECK(!ss->in_round);
    CHECK_EQ_INT(ss->round_rows, 2 * SLOW_ROWS);
    stop_off_loop(e);
}

/* A write job that is not a page's: what it finds of foreign keys on the writer's connection,
 * before it begins and in its transaction (an orphan stock row refused or not). */
static int probe_fk, probe_orphan_rc;
static int fk_probe_run(struct worker_job *job, struct store *st)
{
    (void)job;
    sqlite3_stmt *fk = store_stmt(st, "PRAGMA foreign_keys");
    probe_fk = fk && sqlite3_step(fk) == SQLITE_ROW ? sqlite3_column_int(fk, 0) : -1;
    if (fk)
        sqlite3_reset(fk);
    int r = store_begin(st);
    if (r)
        return r;
    probe_orphan_rc = sqlite3_exec(store_db(st), "INSERT INTO stock(sku, warehouse) VALUES(-7, -7)",
                                   NULL, NULL, NULL);
    store_rollback(st);
    return 0;
}

static void fk_probe_done(struct worker_job *job, int status)
{
    (void)job;
    CHECK_EQ_INT(status, 0);
}

/* Pages in a row on the writer's connection: foreign keys off in each, and a page prepares
 * none of its statements again (turning them off and on is a flag pragma, which expired every
 * statement of the connection twice per page: the 64-row batch upsert was parsed again at
 * each). A write job that is not a page's finds them on, before it begins and in its
 * transaction; the page after it finds them off again. */
static void test_pages_keep_statements(void)
{
    int64_t held;
    struct sync_engine *e = start_off_loop(&held);
    slow_hold = false;
    static struct slow_page p;
    slow_make(&p, held + 1, -1);
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    for (int k = 0; k < SLOW_ROWS; k++)
        CHECK_EQ_INT(p.fk_seen[k], 0);
    int prepared = p.reprepared[SLOW_ROWS - 1];
    slow_make(&p, held + 2, -1);
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S2", "A"), 21);
    for (int k = 0; k < SLOW_ROWS; k++) {
        CHECK_EQ_INT(p.fk_seen[k], 0);
        CHECK_EQ_INT(p.reprepared[k], prepared);
    }
    static struct worker_job probe;
    memset(&probe, 0, sizeof probe);
    probe.run = fk_probe_run;
    probe.done = fk_probe_done;
    probe_fk = -1;
    probe_orphan_rc = SQLITE_OK;
    CHECK_EQ_INT(worker_write(d, &probe), 0);
    drain_jobs();
    CHECK_EQ_INT(probe_fk, 1);
    CHECK_EQ_INT(probe_orphan_rc, SQLITE_CONSTRAINT_FOREIGNKEY);
    CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM stock WHERE sku = -7"), 0);
    slow_make(&p, held + 3, -1);
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    CHECK_EQ_INT(p.fk_seen[0], 0);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S2", "A"), 21);
    CHECK_EQ_INT(rh_q64(h, "SELECT version FROM checkpoints WHERE stream = 'wh:A:inventory'"),
                 held + 3);
    stop_off_loop(e);
}

/* pull_page.make_skus for slow pages: NEW-1's placeholder made ahead with the set path (a
 * batch of 64 rows naming it), and what the hook found: its connection and whether its
 * triggers were on; with make_fail it fails after making it (rolled back). */
static struct store *made_on;
static int made_triggers_on = -1, made_calls;
static bool make_fail;
static int slow_make_skus(struct pull_page *pg, struct store *st, int64_t until_us, bool *done)
{
    (void)pg, (void)until_us;
    made_on = st;
    made_triggers_on = store_triggers_on(st);
    made_calls++;
    *done = true;
    struct whfeed_row rows[WHFEED_BATCH];
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < WHFEED_BATCH; i++)
        snprintf(rows[i].sku, sizeof rows[i].sku, "NEW-1");
    struct whfeed_skus s;
    int made = 0, r = whfeed_skus_begin(st, &s);
    if (r == 0)
        r = whfeed_skus_batch(st, &s, rows, pg->ids, &made);
    if (r == 0)
        r = whfeed_skus_end(st, &s);
    return r == 0 && make_fail ? TALLY_E_STORAGE : r;
}

static struct store *slices_on;
static int slices_on_run(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                         size_t errlen)
{
    slices_on = st;
    return slow_final(pg, st, cp, err, errlen);
}

/* A page's placeholders made ahead of its slices (pull_page.make_skus), on the write jobs'
 * second connection (worker_bulk_store: not the slices', its triggers off), in a transaction
 * committed before the slices: they find the SKU, and the counter and the title queue are
 * what the triggers would have made. A hook that fails is rolled back and the page is applied
 * all the same, the slices making the SKU with the triggers. */
static void test_placeholders_ahead(void)
{
    int64_t held;
    struct sync_engine *e = start_off_loop(&held);
    for (int fail = 0; fail < 2; fail++) {
        if (fail)
            RH_EXEC(h, "DELETE FROM stock WHERE sku = (SELECT id FROM skus WHERE code = 'NEW-1');"
                       " DELETE FROM skus WHERE code = 'NEW-1'");
        int64_t skus0 = rh_q64(h, "SELECT count(*) FROM skus");
        CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'skus'"), skus0);
        slow_hold = false;
        make_fail = fail;
        made_calls = 0;
        made_on = slices_on = NULL;
        static struct slow_page p;
        slow_make(&p, held + 1 + fail, -1);
        p.pg.make_skus = slow_make_skus;
        p.pg.apply = slices_on_run;
        sync_pull_done(fake_u, 0, &p.pg);
        drain_jobs();
        CHECK_EQ_INT(made_calls, 1);
        CHECK(made_on != NULL && slices_on != NULL && made_on != slices_on);
        CHECK_EQ_INT(made_triggers_on, 0);
        CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "NEW-1", "A"), 22);
        CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM skus WHERE code = 'NEW-1'"), 1);
        CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM skus"), skus0 + 1);
        CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'skus'"), skus0 + 1);
        CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM sku_titles_todo WHERE id ="
                               " (SELECT id FROM skus WHERE code = 'NEW-1')"),
                     1);
        CHECK_EQ_INT(rh_q64(h, "SELECT version FROM checkpoints WHERE stream = 'wh:A:inventory'"),
                     held + 1 + fail);
    }
    make_fail = false;
    stop_off_loop(e);
}

/* A page of one full batch (whfeed_stock_batch) of SKUs `prefix`00..63, in one slice, which
 * fails after writing it when slice_fail is set (its transaction rolled back); with make_ahead,
 * its placeholders are made ahead (pull_page.make_skus), which then fails (rolled back). */
struct ids_page {
    struct pull_page pg;
    char prefix;
    bool slice_fail, make_fail;
    int64_t wh, version;
    int made_ahead; /* placeholders ids_make_skus made (then rolled back, with make_fail) */
};

static void ids_rows(const struct ids_page *p, struct whfeed_row *rows)
{
    memset(rows, 0, WHFEED_BATCH * sizeof *rows);
    for (int i = 0; i < WHFEED_BATCH; i++) {
        snprintf(rows[i].sku, sizeof rows[i].sku, "%c%02d", p->prefix, i);
        rows[i].on_hand = 100 + i;
        rows[i].inbound = -1;
        rows[i].version = p->version;
        rows[i].at = 1700000000 + i;
    }
}

static int ids_slice(struct pull_page *pg, struct store *st, int64_t until_us, bool *finished,
                     char *err, size_t errlen)
{
    struct ids_page *p = (struct ids_page *)pg;
    (void)until_us;
    struct whfeed_row rows[WHFEED_BATCH];
    ids_rows(p, rows);
    pg->plain = whfeed_plain(st);
    int r = whfeed_stock_batch(fake_u, st, p->wh, rows, WHFEED_BATCH, pg);
    if (r == 0 && p->slice_fail) {
        snprintf(err, errlen, "injected failure after the batch");
        return TALLY_E_STORAGE;
    }
    *finished = true;
    return r;
}

static int ids_make_skus(struct pull_page *pg, struct store *st, int64_t until_us, bool *done)
{
    struct ids_page *p = (struct ids_page *)pg;
    (void)until_us;
    *done = true;
    struct whfeed_row rows[WHFEED_BATCH];
    ids_rows(p, rows);
    struct whfeed_skus s;
    int made = 0, r = whfeed_skus_begin(st, &s);
    if (r == 0)
        r = whfeed_skus_batch(st, &s, rows, pg->ids, &made);
    if (r == 0)
        r = whfeed_skus_end(st, &s);
    p->made_ahead = made;
    return r == 0 && p->make_fail ? TALLY_E_STORAGE : r;
}

static void ids_page_make(struct ids_page *p, char prefix, int64_t version)
{
    memset(p, 0, sizeof *p);
    off_loop_page(&p->pg, WHFEED_BATCH, ids_slice);
    p->prefix = prefix;
    p->wh = rh_wh_id(h, "A");
    p->version = version;
}

/* Every stock row at A of the SKUs `prefix`* holds its page's figure (100 + its number), and
 * no stock row names a SKU the replica does not hold. */
static void ids_check(char prefix, int64_t version)
{
    CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM skus WHERE code GLOB '%c[0-9][0-9]'", prefix),
                 WHFEED_BATCH);
    CHECK_EQ_INT(rh_q64(h,
                        "SELECT count(*) FROM stock st JOIN skus k ON k.id = st.sku"
                        " WHERE k.code GLOB '%c[0-9][0-9]' AND st.warehouse = %lld"
                        " AND st.snapshot = 100 + substr(k.code, 2)"
                        " AND st.upstream_version = %lld",
                        prefix, (long long)rh_wh_id(h, "A"), (long long)version),
                 WHFEED_BATCH);
    CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM stock WHERE sku NOT IN (SELECT id FROM skus)"), 0);
}

/* The SKU ids the writer keeps (whfeed_ids) come from committed transactions only, whichever
 * of the page job's transactions staged them: placeholders made ahead on the second connection
 * and then rolled back (make_skus), a slice that made them and failed (page_run). Their ids go
 * back; the page applied again, or other SKUs that took those ids, must not be written by
 * them: rows for SKUs that do not exist (foreign keys are off during pages), or for the wrong
 * SKU. */
static void test_ids_of_rolled_back_transactions(void)
{
    int64_t held;
    struct sync_engine *e = start_off_loop(&held);
    RH_EXEC(h, "INSERT OR IGNORE INTO products(product_id, title, status, updated_at)"
               " VALUES('~unlisted', 'SKUs not (yet) in the marketplace catalog', 'unlisted', 0)");
    static struct ids_page p;

    /* placeholders made ahead, rolled back; the page's slice makes them again */
    ids_page_make(&p, 'R', held + 1);
    p.make_fail = true;
    p.pg.make_skus = ids_make_skus;
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    CHECK_EQ_INT(p.made_ahead, WHFEED_BATCH);
    ids_check('R', held + 1);
    CHECK_EQ_INT(p.pg.by_id, WHFEED_BATCH); /* (looked up, made: by id) */

    /* a slice that made its placeholders and failed; other SKUs take their ids; the page
     * again */
    ids_page_make(&p, 'T', held + 2);
    p.slice_fail = true;
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    CHECK(status_says(e, "injected failure after the batch"));
    CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM skus WHERE code GLOB 'T*'"), 0);
    int64_t top = rh_q64(h, "SELECT max(id) FROM skus");
    RH_EXEC(h, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 63)"
               " INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
               " SELECT printf('Z%%02d', i), p.id, 'z', 1, 'EUR', 0 FROM n, products p"
               " WHERE p.product_id = '~unlisted' ORDER BY i");
    CHECK_EQ_INT(rh_q64(h, "SELECT min(id) FROM skus WHERE code GLOB 'Z*'"), top + 1);
    ids_page_make(&p, 'T', held + 2);
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    ids_check('T', held + 2);
    CHECK_EQ_INT(p.pg.by_id, WHFEED_BATCH);
    CHECK_EQ_INT(rh_q64(h, "SELECT count(*) FROM stock st JOIN skus k ON k.id = st.sku"
                           " WHERE k.code GLOB 'Z*'"),
                 0);

    /* kept from the committed ones: the same SKUs' page is written by them */
    ids_page_make(&p, 'T', held + 3);
    sync_pull_done(fake_u, 0, &p.pg);
    drain_jobs();
    ids_check('T', held + 3);
    CHECK_EQ_INT(p.pg.by_id, WHFEED_BATCH);
    stop_off_loop(e);
}

/* A tick whose upstream has no row in the outbox begins no transaction: take_batch's look takes
 * the writer lock, so at every tick of an initial sync it waited behind a page's transaction and
 * cut it short (store_writer_wanted). A row added is taken at the next tick. */
static int begins;
static int count_begins(void *arg, bool wait)
{
    (void)arg, (void)wait;
    begins++;
    return 0;
}

static void test_empty_outbox_no_begin(void)
{
    fresh();
    struct sync_engine *e = start(1);
    store_set_before_begin(d->store, count_begins, NULL);
    begins = 0;
    sync_tick(e);
    sync_tick(e);
    CHECK_EQ_INT(begins, 0);
    CHECK_EQ_STR(taken(), "");
    add_row("ful:1", "O1", "fulfil", -1);
    sync_tick(e);
    CHECK(begins > 0);
    CHECK_EQ_STR(taken(), "[ful:1]");
    answer_all_done();
    CHECK_EQ_STR(row_state("ful:1"), "done");
    store_set_before_begin(d->store, NULL, NULL);
    stop(e);
}

/* A client's row whose group COMMIT runs on the commit thread at the tick: the loop's
 * connection does not see it yet, and the take gives way to the COMMIT (store_begin_yield), so
 * that the COMMIT's end wakes the engine (sync_writer_free) and the row goes then, not a tick
 * later. The look that skips an empty outbox must not skip that. */
static atomic_int commit_held, commit_entered;
static void hold_commit(void)
{
    atomic_store(&commit_entered, 1);
    while (atomic_load(&commit_held))
        usleep(1000);
}

static void on_alive(uv_timer_t *t)
{
    (void)t;
}

static void test_row_in_flight_group_taken_at_commit(void)
{
    fresh();
    char err[256];
    CHECK_EQ_INT(workers_start(d, err, sizeof err), 0);
    CHECK_EQ_INT(gcommit_start(d, err, sizeof err), 0);
    struct sync_engine *e = start(1);
    d->sync = e;
    /* tallyd's loop is kept alive by its listener; here a timer does it, so that one
     * UV_RUN_NOWAIT is one loop turn, its end-of-turn handle included */
    uv_timer_t alive;
    uv_timer_init(&loop, &alive);
    uv_timer_start(&alive, on_alive, 3600 * 1000, 0);
    uv_run(&loop, UV_RUN_NOWAIT); /* the engine's first tick: nothing to take */
    CHECK_EQ_STR(taken(), "");
    CHECK(!store_yielded(d->store));
    struct store *g = gcommit_store(d);
    CHECK(g != NULL);
    atomic_store(&commit_held, 1);
    atomic_store(&commit_entered, 0);
    gcommit_test_before_commit = hold_commit;
    CHECK_EQ_INT(store_begin(g), 0);
    char sql[400];
    snprintf(sql, sizeof sql,
             "INSERT INTO outbox(key, target, entity, kind, payload, next_attempt_at, created_at)"
             " VALUES('ful:g', 'wh:A', 'OG', 'fulfil', x'80', %lld, %lld)",
             (long long)store_now() - 1, (long long)store_now());
    CHECK_EQ_INT(sqlite3_exec(store_db(g), sql, NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(store_commit(g), 0); /* the group is open */
    uv_run(&loop, UV_RUN_NOWAIT);     /* the end of the turn: to the commit thread */
    for (int i = 0; i < 5000 && !atomic_load(&commit_entered); i++)
        usleep(1000);
    CHECK(gcommit_committing(d));
    sync_tick(e);
    CHECK_EQ_STR(taken(), "");
    CHECK(store_yielded(d->store)); /* the take gave way to the COMMIT */
    atomic_store(&commit_held, 0);
    for (int i = 0; i < 5000 && gcommit_in_flight(d); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    gcommit_test_before_commit = NULL;
    CHECK_EQ_STR(taken(), "[ful:g]");
    answer_all_done();
    CHECK_EQ_STR(row_state("ful:g"), "done");
    d->sync = NULL;
    uv_close((uv_handle_t *)&alive, NULL);
    gcommit_stop(d); /* its handles closed by stop's loop run */
    stop(e);
    gcommit_free(d);
    workers_stop(d);
    uv_run(&loop, UV_RUN_DEFAULT);
    workers_free(d);
}

/*
 * A batch's answers are recorded set-based (sync.c record_items: the rows done in one
 * statement, their movements acknowledged together, stock_ack_many; the take's mark in flight
 * in one statement): the replica ends exactly as when each row goes and is answered alone
 * (batches of one take the row-by-row path). Answers: done at the held snapshot's version
 * (settles at once), done at a later version (acknowledged, waits for a page), done without a
 * version (the held one + 1), refused (held), again later (pending, in backoff), of movements
 * of two SKUs, one whose stock row at the warehouse the movement made.
 */
static const struct {
    const char *id, *sku, *kind;
    int qty;
    int outcome; /* SYNC_* */
    int version; /* relative to the held snapshot's; -1000: none (0) */
} ba_rows[] = {
    {"r1", "S1", "receive", 5, SYNC_OK, 0},        {"r2", "S1", "pick", 2, SYNC_OK, 5},
    {"r3", "S2", "receive", 1, SYNC_OK, -1000},    {"r4", "S1", "receive", 3, SYNC_PERMANENT, 0},
    {"r5", "S1", "receive", 7, SYNC_OK, -1000},    {"r6", "S2", "receive", 4, SYNC_OK, 2},
    {"r7", "S2", "receive", 9, SYNC_TRANSIENT, 0},
};
#define BA_ROWS (int)(sizeof ba_rows / sizeof ba_rows[0])

/* Runs the rows through an engine of `push_limit` rows per batch; the replica's outbox,
 * movements, stock and counters as text (*batches: how many batches went). */
static const char *batch_answers(int push_limit, int *nb)
{
    static char out[4096];
    fresh();
    rh_seed_standard(h);
    RH_EXEC(h, "UPDATE stock SET upstream_version = 10");
    int64_t held = rh_q64(h,
                          "SELECT upstream_version FROM stock WHERE sku = %lld AND"
                          " warehouse = %lld",
                          (long long)rh_sku_id(h, "S1"), (long long)rh_wh_id(h, "A"));
    for (int i = 0; i < BA_ROWS; i++) {
        char id[16], sku[16], kind[24], qty[16];
        snprintf(id, sizeof id, "id=%s", ba_rows[i].id);
        snprintf(sku, sizeof sku, "sku=%s", ba_rows[i].sku);
        snprintf(kind, sizeof kind, "kind=%s", ba_rows[i].kind);
        snprintf(qty, sizeof qty, "qty=#%d", ba_rows[i].qty);
        CHECK(rh_call(h, "stock.move", kind, id, sku, "warehouse=A", qty, NULL) != NULL);
    }
    struct sync_engine *e = start(push_limit);
    *nb = 0;
    sync_tick(e);
    for (struct push_batch *b; (b = next_batch()) != NULL && *nb < 100;) {
        ++*nb;
        b->outcome = SYNC_OK;
        b->retry_after_s = 3600;
        for (int i = 0; i < b->n; i++) {
            struct push_item *it = &b->items[i];
            for (int k = 0; k < BA_ROWS; k++)
                if (!strcmp(it->key, ba_rows[k].id)) {
                    it->outcome = ba_rows[k].outcome;
                    it->version = ba_rows[k].version == -1000 ? 0 : held + ba_rows[k].version;
                    if (it->outcome != SYNC_OK)
                        snprintf(it->error, sizeof it->error, "no (%s)", it->key);
                }
        }
        sync_push_done(b);
        if (nbatches == 0)
            sync_tick(e);
    }
    stop(e);
    snprintf(out, sizeof out, "%s | %s | %s | %s",
             rh_qtext(h, "SELECT group_concat(key || ':' || state || ':' || attempts || ':' ||"
                         " COALESCE(last_error, '-') || ':' || (sent_at IS NOT NULL) || ':' ||"
                         " (done_at IS NOT NULL), ' ') FROM (SELECT * FROM outbox ORDER BY key)"),
             rh_qtext(h,
                      "SELECT group_concat(id || ':' || leg || ':' || state || ':' ||"
                      " COALESCE(upstream_version - %lld, '-'), ' ') FROM"
                      " (SELECT * FROM movements ORDER BY id, leg)",
                      (long long)held),
             rh_qtext(h, "SELECT group_concat(sku || ':' || warehouse || ':' || snapshot || ':' ||"
                         " pending, ' ') FROM (SELECT * FROM stock ORDER BY sku, warehouse)"),
             rh_qtext(h, "SELECT group_concat(name || '=' || n, ' ') FROM (SELECT * FROM"
                         " counters WHERE name LIKE 'outbox%%' OR name = 'movements_pending'"
                         " ORDER BY name)"));
    return out;
}

static void test_batch_answers_set_based(void)
{
    int one_by_one, together;
    char alone[4096];
    snprintf(alone, sizeof alone, "%s", batch_answers(1, &one_by_one));
    const char *batch = batch_answers(16, &together);
    CHECK_EQ_INT(one_by_one, BA_ROWS);
    CHECK_EQ_INT(together, 1);
    CHECK_EQ_STR(batch, alone);
    /* ...and what that is, row by row. */
    CHECK(strstr(batch, "r1:0:settled:0 ") != NULL);       /* at the held version: settled */
    CHECK(strstr(batch, "r2:0:acked:5 ") != NULL);         /* later: waits for a page */
    CHECK(strstr(batch, "r5:0:acked:1 ") != NULL);         /* no version: held + 1 */
    CHECK(strstr(batch, "r4:held:1:no (r4):1:0") != NULL); /* refused */
    CHECK(strstr(batch, "r4:0:pending:-") != NULL);
    CHECK(strstr(batch, "r7:pending:1:no (r7):1:0") != NULL); /* again later */
    CHECK(strstr(batch, "r6:done:1:-:1:1") != NULL);
    CHECK(strstr(batch, "outbox_held=1 ") != NULL);
    CHECK(strstr(batch, "outbox_pending=1 ") != NULL);
    /* The counters as counted. */
    CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'movements_pending'"),
                 rh_q64(h, "SELECT COUNT(DISTINCT id) FROM movements WHERE state <> 'settled'"));
    CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'outbox_pending'"),
                 rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state IN ('pending','inflight')"));
    /* The overlay holds exactly the movements not settled. */
    CHECK_EQ_INT(rh_q64(h, "SELECT SUM(pending) FROM stock"),
                 rh_q64(h, "SELECT SUM(delta) FROM movements WHERE state <> 'settled'"));
}

/*
 * The set-based record beside what already existed (second review of it): one batch again
 * leaves the replica as the same rows one at a time, now with a row answered again later
 * (its second attempt, done, in the same batch as a first attempt: the one-by-one path beside
 * the set), an id JSON must escape (a quote and a backslash), a transfer's leg sent as a
 * movement (two legs: only the origin's is acknowledged), an answer older than the held
 * snapshot, and a snapshot page applied between the take and the answer (the acknowledgements
 * settle against the snapshot held when they are recorded).
 */
static const struct {
    const char *id, *sku, *kind;
    int qty;
    int first, again; /* SYNC_* of the first attempt and of any later one */
    int version;      /* relative to the held snapshot at the start; -1000: none (0) */
} bx_rows[] = {
    {"x1", "S1", "receive", 5, SYNC_OK, SYNC_OK, 0},
    {"x2", "S1", "receive", 2, SYNC_TRANSIENT, SYNC_OK, 2},
    {"x\"3\\", "S1", "receive", 4, SYNC_OK, SYNC_OK, 1},
    {"x4", "S1", "transfer", 1, SYNC_OK, SYNC_OK, 0},
    {"x5", "S2", "receive", 3, SYNC_OK, SYNC_OK, -1000},
    {"x6", "S1", "pick", 1, SYNC_OK, SYNC_OK, -3},
    {"x7", "S2", "receive", 6, SYNC_OK, SYNC_OK, 4},
};
#define BX_ROWS (int)(sizeof bx_rows / sizeof bx_rows[0])

/* Answers every batch handed over (and those its answers hand over) as bx_rows says; the
 * first answer applies a snapshot of S1 at A at held + 1 before it is recorded. *nb counts
 * the batches, *largest the most rows in one. */
static void bx_answer(int64_t held, bool *snap, int *nb, int *largest)
{
    for (struct push_batch *b; (b = next_batch()) != NULL && *nb < 100;) {
        ++*nb;
        if (b->n > *largest)
            *largest = b->n;
        if (!*snap) {
            *snap = true;
            struct store *st = d->store;
            CHECK_EQ_INT(store_begin(st), 0);
            CHECK_EQ_INT(stock_apply_snapshot(st, rh_sku_id(h, "S1"), rh_wh_id(h, "A"), 20,
                                              held + 1, store_now()),
                         0);
            CHECK_EQ_INT(store_commit(st), 0);
        }
        b->outcome = SYNC_OK;
        b->retry_after_s = 3600;
        for (int i = 0; i < b->n; i++) {
            struct push_item *it = &b->items[i];
            for (int k = 0; k < BX_ROWS; k++)
                if (!strcmp(it->key, bx_rows[k].id)) {
                    it->outcome = it->attempts == 0 ? bx_rows[k].first : bx_rows[k].again;
                    it->version = bx_rows[k].version == -1000 ? 0 : held + bx_rows[k].version;
                    if (it->outcome != SYNC_OK)
                        snprintf(it->error, sizeof it->error, "no (%s)", it->key);
                }
            if (!strcmp(it->key, "x8"))
                it->outcome = SYNC_OK, it->version = held + 1;
        }
        sync_push_done(b);
    }
}

static const char *batch_interactions(int push_limit, int *nb, int *largest)
{
    static char out[4096];
    fresh();
    rh_seed_standard(h);
    RH_EXEC(h, "UPDATE stock SET upstream_version = 10");
    int64_t held = 10;
    for (int i = 0; i < BX_ROWS; i++) {
        char id[16], sku[16], kind[24], qty[16];
        snprintf(id, sizeof id, "id=%s", bx_rows[i].id);
        snprintf(sku, sizeof sku, "sku=%s", bx_rows[i].sku);
        snprintf(kind, sizeof kind, "kind=%s", bx_rows[i].kind);
        snprintf(qty, sizeof qty, "qty=#%d", bx_rows[i].qty);
        CHECK(rh_call(h, "stock.move", kind, id, sku, "warehouse=A", qty,
                      strcmp(bx_rows[i].kind, "transfer") ? NULL : "to=B", NULL) != NULL);
    }
    /* A transfer into a warehouse that keeps its own stock goes as the origin's movement
     * (stock.c append_outbox): its movement has two legs, its row is of kind movement. */
    RH_EXEC(h, "UPDATE outbox SET kind = 'movement' WHERE key = 'x4'");
    struct sync_engine *e = start(push_limit);
    *nb = *largest = 0;
    bool snap = false;
    sync_tick(e);
    bx_answer(held, &snap, nb, largest);
    /* Later: one more movement, and the row in backoff due again (its second attempt). */
    CHECK(rh_call(h, "stock.move", "kind=receive", "id=x8", "sku=S1", "warehouse=A", "qty=#1",
                  NULL) != NULL);
    for (int round = 0; round < 10 && rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state ="
                                                " 'pending'") > 0;
         round++) {
        RH_EXEC(h, "UPDATE outbox SET next_attempt_at = 0 WHERE state = 'pending'");
        sync_tick(e);
        bx_answer(held, &snap, nb, largest);
    }
    stop(e);
    snprintf(out, sizeof out, "%s | %s | %s | %s",
             rh_qtext(h, "SELECT group_concat(key || ':' || state || ':' || attempts || ':' ||"
                         " COALESCE(last_error, '-') || ':' || (sent_at IS NOT NULL) || ':' ||"
                         " (done_at IS NOT NULL), ' ') FROM (SELECT * FROM outbox ORDER BY key)"),
             rh_qtext(h,
                      "SELECT group_concat(id || ':' || leg || ':' || state || ':' ||"
                      " COALESCE(upstream_version - %lld, '-'), ' ') FROM"
                      " (SELECT * FROM movements ORDER BY id, leg)",
                      (long long)held),
             rh_qtext(h, "SELECT group_concat(sku || ':' || warehouse || ':' || snapshot || ':' ||"
                         " pending || ':' || COALESCE(upstream_version, '-'), ' ') FROM"
                         " (SELECT * FROM stock ORDER BY sku, warehouse)"),
             rh_qtext(h, "SELECT group_concat(name || '=' || n, ' ') FROM (SELECT * FROM"
                         " counters WHERE name LIKE 'outbox%%' OR name = 'movements_pending'"
                         " ORDER BY name)"));
    return out;
}

static void test_batch_answers_interactions(void)
{
    int one_by_one, together, largest1, largest;
    char alone[4096];
    snprintf(alone, sizeof alone, "%s", batch_interactions(1, &one_by_one, &largest1));
    const char *batch = batch_interactions(16, &together, &largest);
    CHECK_EQ_INT(largest1, 1);
    CHECK_EQ_INT(largest, BX_ROWS); /* the first batch held them all: the set path ran */
    CHECK(together < one_by_one);
    CHECK_EQ_STR(batch, alone);
    CHECK(strstr(batch, "x1:0:settled:0 ") != NULL);     /* at the held version */
    CHECK(strstr(batch, "x2:0:acked:2 ") != NULL);       /* second attempt, later version */
    CHECK(strstr(batch, "x\"3\\:0:settled:1 ") != NULL); /* at the snapshot applied meanwhile */
    CHECK(strstr(batch, "x4:0:settled:0 x4:1:pending:-") != NULL); /* the origin's leg alone */
    CHECK(strstr(batch, "x6:0:settled:-3 ") != NULL); /* older than the held snapshot */
    CHECK(strstr(batch, "x2:done:2:-:1:1") != NULL);
    CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'movements_pending'"),
                 rh_q64(h, "SELECT COUNT(DISTINCT id) FROM movements WHERE state <> 'settled'"));
    CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'outbox_pending'"),
                 rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state IN ('pending','inflight')"));
    CHECK_EQ_INT(rh_q64(h, "SELECT SUM(pending) FROM stock"),
                 rh_q64(h, "SELECT SUM(delta) FROM movements WHERE state <> 'settled'"));
}

/*
 * A write that fails in the middle of the set-based acknowledgement (the movements' UPDATE
 * aborts at the third of its rows; a disk error or SQLITE_FULL there rolls back the same way):
 * nothing of the batch's answer is kept (no row done, no movement acknowledged, the overlay and
 * the counters as before), the rows are put back to waiting (requeue_batch: a failure of these
 * rows alone) with an attempt counted, and go again; answered then, the replica ends as if
 * nothing had failed: every movement acknowledged once, the overlay and counters as counted.
 */
static void test_batch_ack_fails_midway(void)
{
    fresh();
    rh_seed_standard(h);
    RH_EXEC(h, "UPDATE stock SET upstream_version = 10");
    for (int i = 1; i <= 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "id=f%d", i);
        CHECK(rh_call(h, "stock.move", "kind=receive", id, "sku=S1", "warehouse=A", "qty=#2",
                      NULL) != NULL);
    }
    int64_t pending0 = rh_q64(h, "SELECT SUM(pending) FROM stock");
    int64_t counted0 = rh_q64(h, "SELECT n FROM counters WHERE name = 'movements_pending'");
    struct sync_engine *e = start(16);
    sync_tick(e);
    struct push_batch *b = next_batch();
    CHECK(b != NULL && b->n == 5);
    RH_EXEC(h, "CREATE TEMP TRIGGER no_ack BEFORE UPDATE OF state ON movements"
               " WHEN new.state = 'acked' AND new.id = 'f3'"
               " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    if (b) {
        b->outcome = SYNC_OK;
        for (int i = 0; i < b->n; i++) {
            b->items[i].outcome = SYNC_OK;
            b->items[i].version = 10; /* at the held snapshot: each settles at once */
        }
        sync_push_done(b);
    }
    RH_EXEC(h, "DROP TRIGGER temp.no_ack");
    CHECK_EQ_INT(nbatches, 0);
    CHECK_EQ_STR(rh_qtext(h, "SELECT group_concat(state || ':' || attempts, ' ') FROM"
                             " (SELECT * FROM outbox ORDER BY key)"),
                 "pending:1 pending:1 pending:1 pending:1 pending:1");
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE state <> 'pending'"), 0);
    CHECK_EQ_INT(rh_q64(h, "SELECT SUM(pending) FROM stock"), pending0);
    CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'movements_pending'"), counted0);
    RH_EXEC(h, "UPDATE outbox SET next_attempt_at = 0 WHERE state = 'pending'");
    sync_tick(e);
    b = next_batch();
    CHECK(b != NULL && b->n == 5);
    if (b) {
        b->outcome = SYNC_OK;
        for (int i = 0; i < b->n; i++) {
            b->items[i].outcome = SYNC_OK;
            b->items[i].version = 10;
        }
        sync_push_done(b);
    }
    stop(e);
    CHECK_EQ_STR(rh_qtext(h, "SELECT group_concat(state || ':' || attempts, ' ') FROM"
                             " (SELECT * FROM outbox ORDER BY key)"),
                 "done:2 done:2 done:2 done:2 done:2");
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE state = 'settled'"), 5);
    CHECK_EQ_INT(rh_q64(h, "SELECT SUM(pending) FROM stock"),
                 rh_q64(h, "SELECT COALESCE(SUM(delta), 0) FROM movements"
                           " WHERE state <> 'settled'"));
    CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'movements_pending'"), 0);
    CHECK_EQ_INT(rh_q64(h, "SELECT n FROM counters WHERE name = 'outbox_pending'"), 0);
}

/*
 * A take whose mark in flight does not reach every row it looked at (here a trigger skips one
 * row's UPDATE, as nothing in tallyd does: a check that the set-based mark counts its rows)
 * takes nothing: no row goes unless its mark is committed (outbox_may_discard reads it), so
 * no row is sent that `tally outbox discard` could then give up. Once every mark goes in,
 * the rows go.
 */
static void test_take_marks_every_row(void)
{
    fresh();
    for (int i = 0; i < 4; i++) {
        char key[16], entity[16];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(entity, sizeof entity, "K%d", i);
        add_row(key, entity, "movement", -1);
    }
    struct sync_engine *e = start(8);
    RH_EXEC(h, "CREATE TEMP TRIGGER skip_mark BEFORE UPDATE OF state ON outbox"
               " WHEN new.state = 'inflight' AND old.key = 'k2' BEGIN SELECT RAISE(IGNORE); END");
    sync_tick(e);
    CHECK_EQ_STR(taken(), "");
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND"
                           " sent_at IS NULL"),
                 4);
    RH_EXEC(h, "DROP TRIGGER temp.skip_mark");
    sync_tick(e);
    CHECK_EQ_STR(taken(), "[k0,k1,k2,k3]");
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE state = 'inflight' AND"
                           " sent_at IS NOT NULL"),
                 4);
    answer_all_done();
    stop(e);
}

int main(void)
{
    h = rh_new("tally-sync");
    if (!h || uv_loop_init(&loop) != 0) {
        perror("set-up");
        return 1;
    }
    test_outcome_write_fails();
    test_transient_outcome_write_fails();
    test_outcome_of_one_row_fails();
    test_outcome_disk_full_kept();
    test_stop_with_outcome_unrecorded();
    test_outcome_yields();
    test_start_reset_fails();
    test_start_init_fails();
    test_backoff_ahead();
    test_link_back_lifts_backoff();
    test_failure_after_outage();
    test_retry_after_after_outage();
    test_lift_when_take_finds_nothing();
    test_blocked_entity();
    test_many_in_backoff();
    test_drain_one_entity();
    test_drain_take_fails();
    test_batch_answers_set_based();
    test_batch_answers_interactions();
    test_batch_ack_fails_midway();
    test_take_marks_every_row();
    test_notice_waits_for_leg();
    test_other_kind_next();
    test_random_looks();
    test_probe_takes_turns();
    test_drain_lets_pulls_in();
    test_page_off_loop();
    test_pages_keep_statements();
    test_placeholders_ahead();
    test_ids_of_rolled_back_transactions();
    test_empty_outbox_no_begin();
    test_row_in_flight_group_taken_at_commit();
    test_round_end_yields();
    rh_free(h);
    uv_loop_close(&loop);
    return check_result("test_sync");
}
