/*
 * The group commit's COMMIT and its sync run off the loop (gcommit.h), against a real tallyd
 * whose syncs the power-cut shim can hold and fail (tests/power/powercut.c, TALLY_FAULT_FILE):
 *   test_commit_off_loop TALLYD POWERCUT_SO
 *
 *  1. every sync is held ("hold-sync"); connection A pipelines two movements: their group
 *     commits, its sync is held (status says commit_in_flight) and neither is answered;
 *  2. meanwhile connection B's stock.get is answered, from what was committed (A's movements
 *     are in it: committed, not yet known durable): the loop does not wait for the disk;
 *  3. connection C sends a movement and a stock.get: C's movement runs and commits while A's
 *     sync is held (its outbox row is in the replica: the next group's writes overlap the last
 *     one's sync), and is not answered (its own sync comes after A's); C's read waits for its
 *     write's answer; A is not answered either;
 *     (E, gone meanwhile, had sent a movement and a read: its movement is applied all the same)
 *  4. the held sync fails ("eio-fsync-once"): tallyd stops at once, exit 74 (main.c
 *     wal_sync_failed), answering neither A's movements nor C's: none is acknowledged;
 *  5. started again (the WAL checkpointed first, main.c wal_sync_recover): A's, C's and E's
 *     movements are in the replica (their commits had returned, and the shim loses nothing
 *     without a cut); A sends its movements again with their ids: duplicates, applied once;
 *     A's next movement succeeds;
 *  5b. one movement id in a group waiting for its sync and in a later write: a duplicate;
 *  5c. every sync fails ("eio-fsync"): tallyd stops at the first movement's sync; started while
 *     the disk still fails, it does not start (its first checkpoint fails: exit 74); once syncs
 *     work again it starts, and the movement sent again is applied once;
 *  6. SIGTERM while A's group and C's wait for a held sync: both are answered once it returns
 *     (durable) and kept, and tallyd exits 0.
 *
 * No timing is asserted: the waits below are upper bounds for a loaded machine, and "not
 * answered yet" is only checked while the sync is held (nothing can answer it then).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 15000

static struct th_daemon D;
static char fault[400];

static long long db_q64(const char *sql)
{
    return th_db_int(D.db, sql, NULL);
}

/* Writes the fault file whole (rename), so the shim never reads half of it. */
static int set_fault(const char *word)
{
    char tmp[420];
    snprintf(tmp, sizeof tmp, "%s.tmp", fault);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fputs(word, f);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, fault);
}

static int seed(struct th_conn *c)
{
    struct th_resp r;
    int rc = 0;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    th_pack_map(&pk, "sss", "code", "ES-MAD", "name", "Madrid", "country", "ES");
    if (th_import(c, "warehouses", 1, &sb, &r) != TH_OK)
        rc = -1;
    msgpack_sbuffer_clear(&sb);
    for (int i = 1; i <= 2; i++) {
        char sku[16];
        snprintf(sku, sizeof sku, "H-%d", i);
        th_pack_map(&pk, "sssis", "sku", sku, "product_id", "P-1", "title", "Held item",
                    "price_minor", 100LL, "currency", "EUR");
    }
    if (rc == 0 && th_import(c, "catalog", 2, &sb, &r) != TH_OK)
        rc = -1;
    msgpack_sbuffer_clear(&sb);
    for (int i = 1; i <= 2; i++) {
        char sku[16];
        snprintf(sku, sizeof sku, "H-%d", i);
        th_pack_map(&pk, "ssi", "sku", sku, "warehouse", "ES-MAD", "on_hand", 5LL);
    }
    if (rc == 0 && th_import(c, "stock", 2, &sb, &r) != TH_OK)
        rc = -1;
    if (rc)
        fprintf(stderr, "seed: %s %s\n", r.code, r.message);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void pack_move(msgpack_sbuffer *sb, uint32_t msgid, const char *sku, const char *id)
{
    th_pack_request(sb, msgid, "stock.move", "sssis", "kind", "receive", "sku", sku, "warehouse",
                    "ES-MAD", "qty", 1LL, "id", id);
}

static long long get_on_hand(const msgpack_object *res)
{
    const msgpack_object *a = th_get(res, "warehouses");
    long long v = -1;
    if (a && a->type == MSGPACK_OBJECT_ARRAY && a->via.array.size >= 1)
        th_get_int(&a->via.array.ptr[0], "on_hand", &v);
    return v;
}

/* Polls status on c until commit_in_flight is true (bounded). */
/* Until the replica's count says `want` (an upper bound of 15 s, not a timing). */
static bool wait_count(const char *sql, long long want)
{
    for (int i = 0; i < 1500; i++) {
        if (db_q64(sql) == want)
            return true;
        th_sleep_ms(10);
    }
    return false;
}

static bool wait_in_flight(struct th_conn *c)
{
    for (int i = 0; i < 1500; i++) {
        struct th_resp r;
        bool on = false;
        if (th_call(c, TIMEOUT, &r, "status", "") != TH_OK)
            return false;
        if (th_get_bool(r.result, "commit_in_flight", &on) && on)
            return true;
        th_sleep_ms(10);
    }
    return false;
}

/* After a start: its write jobs done before syncs are held again (see main's first wait),
 * and its personal-data purge too, whose checkpoint at the end a held sync would hold with
 * the writer lock (a dry run is refused while another purge runs). */
static void settle_start(struct th_conn *c)
{
    th_sleep_ms(1500);
    struct th_resp r;
    bool free_ = false;
    for (int i = 0; i < 200 && !free_; i++) {
        free_ = th_call(c, TIMEOUT, &r, "privacy.purge", "b", "dry_run", true) == TH_OK;
        if (!free_)
            th_sleep_ms(50);
    }
    CHECK(free_);
}

/* Starts tallyd again under the shim and connects a, b and c to it, settled (settle_start). */
static void restart(const char *shim, struct th_conn *a, struct th_conn *b, struct th_conn *c)
{
    setenv("LD_PRELOAD", shim, 1);
    CHECK_EQ_INT(th_daemon_start(&D), 0);
    unsetenv("LD_PRELOAD");
    CHECK_EQ_INT(th_connect(a, D.sock), 0);
    CHECK_EQ_INT(th_connect(b, D.sock), 0);
    CHECK_EQ_INT(th_connect(c, D.sock), 0);
    settle_start(b);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s TALLYD POWERCUT_SO\n", argv[0]);
        return 2;
    }
    th_setup("test_commit_off_loop", 120);
    CHECK_EQ_INT(th_daemon_init(&D, argv[1], "offloop"), 0);
    snprintf(fault, sizeof fault, "%s/fault", D.dir);
    /* The shim is not instrumented: ASan must not insist on coming first. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    setenv("TALLY_FAULT_FILE", fault, 1);
    setenv("LD_PRELOAD", argv[2], 1);
    if (th_daemon_start(&D) != 0) {
        th_daemon_cleanup(&D);
        return 1;
    }
    unsetenv("LD_PRELOAD");

    struct th_conn a, b, c;
    struct th_resp r;
    CHECK_EQ_INT(th_connect(&a, D.sock), 0);
    CHECK_EQ_INT(th_connect(&b, D.sock), 0);
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    CHECK_EQ_INT(seed(&b), 0);
    /* Let the import's follow-up write jobs (the title index, after 100 ms without another
     * write job) finish first: the shim holds every sync, a write job's commit included, and
     * a job held in its commit keeps the writer lock the group's first write then waits for. */
    th_sleep_ms(1500);

    /* 1. A's two movements, their commit held at its sync. */
    CHECK_EQ_INT(set_fault("hold-sync"), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_move(&sb, 1, "H-1", "held-1");
    pack_move(&sb, 2, "H-1", "held-2");
    CHECK_EQ_INT(th_send(&a, sb.data, sb.size, TIMEOUT), 0);
    bool flying = wait_in_flight(&b);
    CHECK(flying);
    /* commit_in_flight says so from the group's hand-over to the commit thread, before its
     * COMMIT returns: the read below is of what is committed, so wait for A's rows to be */
    CHECK(wait_count("SELECT count(*) FROM outbox WHERE key IN ('held-1', 'held-2')", 2));

    /* 2. A read on another connection is answered meanwhile, from committed data. */
    CHECK_EQ_INT(th_call(&b, TIMEOUT, &r, "stock.get", "s", "sku", "H-1"), TH_OK);
    CHECK_EQ_INT(get_on_hand(r.result), 7);

    /* 3. C's write commits meanwhile, unanswered; its read waits; A is not answered either. */
    msgpack_sbuffer_clear(&sb);
    pack_move(&sb, 1, "H-2", "next-1");
    th_pack_request(&sb, 2, "stock.get", "s", "sku", "H-2");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    CHECK(wait_count("SELECT count(*) FROM outbox WHERE key = 'next-1'", 1));
    CHECK_EQ_INT(th_read_response(&c, 300, &r), TH_TIMEOUT);
    CHECK_EQ_INT(th_read_response(&a, 100, &r), TH_TIMEOUT);
    /* E sends a movement and a read, and is gone before either is handled: its movement was
     * received whole, so it is handled with the next group like any other (applied, its
     * answer dropped with the connection); nothing of E's is used after it is freed (ASan). */
    {
        struct th_conn e;
        CHECK_EQ_INT(th_connect(&e, D.sock), 0);
        msgpack_sbuffer_clear(&sb);
        pack_move(&sb, 1, "H-2", "gone-1");
        th_pack_request(&sb, 2, "stock.get", "s", "sku", "H-2");
        CHECK_EQ_INT(th_send(&e, sb.data, sb.size, TIMEOUT), 0);
        CHECK_EQ_INT(th_read_response(&e, 200, &r), TH_TIMEOUT);
        th_close(&e);
    }
    /* B still answered, with C's write waiting for its sync. */
    CHECK_EQ_INT(th_call(&b, TIMEOUT, &r, "stock.get", "s", "sku", "H-2"), TH_OK);
    CHECK(get_on_hand(r.result) == 6 || get_on_hand(r.result) == 7);

    /* 4. The held sync fails: tallyd stops at once (exit 74), answering nobody. */
    CHECK_EQ_INT(set_fault("eio-fsync-once"), 0);
    int st = th_daemon_reap(&D, TIMEOUT);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 74);
    CHECK_EQ_INT(th_read_response(&a, TIMEOUT, &r), TH_EOF); /* neither of A's answered */
    CHECK_EQ_INT(th_read_response(&c, TIMEOUT, &r), TH_EOF); /* nor C's */
    CHECK_EQ_INT(access(fault, F_OK), -1);                   /* the failed sync was the only one */
    th_close(&a);
    th_close(&b);
    th_close(&c);

    /* 5. Started again: the movements committed before the failed sync are there (the shim
     * loses nothing without a cut); sent again with their ids, each is a duplicate. */
    restart(argv[2], &a, &b, &c);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM outbox WHERE key = 'next-1'"), 1);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM outbox WHERE key = 'gone-1'"), 1);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM outbox WHERE key IN ('held-1', 'held-2')"), 2);
    bool dup = false;
    for (int k = 1; k <= 2; k++) {
        char id[16];
        snprintf(id, sizeof id, "held-%d", k);
        CHECK_EQ_INT(th_call(&a, TIMEOUT, &r, "stock.move", "sssis", "kind", "receive", "sku",
                             "H-1", "warehouse", "ES-MAD", "qty", 1LL, "id", id),
                     TH_OK);
        CHECK(th_get_bool(r.result, "duplicate", &dup) && dup);
    }
    CHECK_EQ_INT(th_call(&a, TIMEOUT, &r, "stock.move", "sssis", "kind", "receive", "sku", "H-1",
                         "warehouse", "ES-MAD", "qty", 1LL, "id", "held-3"),
                 TH_OK);
    CHECK_EQ_INT(th_call(&b, TIMEOUT, &r, "stock.get", "s", "sku", "H-1"), TH_OK);
    CHECK_EQ_INT(get_on_hand(r.result), 8);

    /* 5b. The same movement id in the group in flight and in a write waiting for it (the
     * next group): the second sees the first committed, a duplicate; applied once. */
    CHECK_EQ_INT(set_fault("hold-sync"), 0);
    msgpack_sbuffer_clear(&sb);
    pack_move(&sb, 7, "H-1", "dup-1");
    CHECK_EQ_INT(th_send(&a, sb.data, sb.size, TIMEOUT), 0);
    flying = wait_in_flight(&b);
    CHECK(flying);
    msgpack_sbuffer_clear(&sb);
    pack_move(&sb, 8, "H-1", "dup-1");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    CHECK_EQ_INT(th_read_response(&c, 200, &r), TH_TIMEOUT);
    CHECK_EQ_INT(unlink(fault), 0);
    dup = true;
    CHECK_EQ_INT(th_read_response(&a, TIMEOUT, &r), TH_OK);
    CHECK(th_get_bool(r.result, "duplicate", &dup) && !dup);
    CHECK_EQ_INT(th_read_response(&c, TIMEOUT, &r), TH_OK);
    CHECK(th_get_bool(r.result, "duplicate", &dup) && dup);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM movements WHERE id = 'dup-1'"), 1);

    /* 5c. Every sync fails: tallyd stops at the first movement's sync; while the disk keeps
     * failing it does not start (its first checkpoint fails); then it does, and the movement
     * sent again is applied once. */
    CHECK_EQ_INT(set_fault("eio-fsync"), 0);
    msgpack_sbuffer_clear(&sb);
    pack_move(&sb, 31, "H-1", "eio-1");
    CHECK_EQ_INT(th_send(&a, sb.data, sb.size, TIMEOUT), 0);
    st = th_daemon_reap(&D, TIMEOUT);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 74);
    CHECK_EQ_INT(th_read_response(&a, TIMEOUT, &r), TH_EOF);
    th_close(&a);
    th_close(&b);
    th_close(&c);
    setenv("LD_PRELOAD", argv[2], 1);
    CHECK(th_daemon_start(&D) != 0); /* it stops before serving */
    unsetenv("LD_PRELOAD");
    CHECK_EQ_INT(unlink(fault), 0);
    restart(argv[2], &a, &b, &c);
    CHECK_EQ_INT(th_call(&a, TIMEOUT, &r, "stock.move", "sssis", "kind", "receive", "sku", "H-1",
                         "warehouse", "ES-MAD", "qty", 1LL, "id", "eio-1"),
                 TH_OK);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM movements WHERE id = 'eio-1'"), 1);

    /* 6. SIGTERM while A's group and C's wait for a held sync: both are answered once it
     * returns (durable) and kept, tallyd exits 0. A movement first: the first commit after
     * the WAL started over (the start's purge ends with a checkpoint that empties it) syncs
     * the WAL's new header inside its COMMIT, which a held sync would hold. */
    CHECK_EQ_INT(th_call(&a, TIMEOUT, &r, "stock.move", "sssis", "kind", "receive", "sku", "H-1",
                         "warehouse", "ES-MAD", "qty", 1LL, "id", "stop-0"),
                 TH_OK);
    CHECK_EQ_INT(set_fault("hold-sync"), 0);
    msgpack_sbuffer_clear(&sb);
    pack_move(&sb, 11, "H-1", "stop-1");
    pack_move(&sb, 12, "H-1", "stop-2");
    CHECK_EQ_INT(th_send(&a, sb.data, sb.size, TIMEOUT), 0);
    flying = wait_in_flight(&b);
    CHECK(flying);
    msgpack_sbuffer_clear(&sb);
    pack_move(&sb, 13, "H-2", "stop-3");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    CHECK_EQ_INT(th_read_response(&c, 300, &r), TH_TIMEOUT); /* it waits for a sync */
    kill(D.pid, SIGTERM);
    th_sleep_ms(200);
    CHECK_EQ_INT(unlink(fault), 0); /* the held sync goes on */
    for (int k = 11; k <= 12; k++) {
        CHECK_EQ_INT(th_read_response(&a, TIMEOUT, &r), TH_OK);
        CHECK_EQ_INT((int)r.msgid, k);
    }
    CHECK_EQ_INT(th_read_response(&c, TIMEOUT, &r), TH_OK);
    CHECK_EQ_INT((int)r.msgid, 13);
    st = th_daemon_reap(&D, TIMEOUT);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM outbox WHERE key IN ('stop-1', 'stop-2', 'stop-3')"),
                 3);

    msgpack_sbuffer_destroy(&sb);
    th_close(&a);
    th_close(&b);
    th_close(&c);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    return check_result("test_commit_off_loop");
}
