/*
 * Group commit against a real tallyd (gcommit.h): the writes that arrive in one loop turn
 * share one transaction and one fsync, and none is answered before it is durable.
 *   test_group_commit TALLYD
 *
 *  (a) one connection, one pipelined burst: a movement, the same id again (answered
 *      `duplicate`, of the first, not yet committed when it was decided), a pick that needs
 *      the first one's stock, a pick the earlier writes leave no stock for
 *      (insufficient_stock), an unknown SKU (not_found), another receive, and a stock.get:
 *      each answer is what one-at-a-time would give, the refused ones fail alone, and the
 *      read sees the connection's own writes before it;
 *  (b) 20 connections x 10 pipelined movements, then kill -9 the moment the last answer is
 *      read: after a restart every acknowledged movement is in the ledger and the outbox,
 *      once, and the stock counts them all;
 *  (c) a client that sends a movement and shuts its side (half-close) still gets the answer;
 *  (d) SIGTERM right after a pipelined burst is sent: every answer is a success or
 *      shutting_down; every success is in the replica after a restart, no refused one is.
 *
 * Semantics only: no timing is asserted (tests/bench/bench_write.sh measures).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 15000

static struct th_daemon D;

static long long db_q64(const char *sql, const char *arg)
{
    return th_db_int(D.db, sql, arg);
}

static long long on_hand(const char *sku)
{
    return th_db_int(D.db,
                     "SELECT t.snapshot + t.pending FROM stock t JOIN skus s ON s.id = t.sku"
                     " WHERE s.code = ?1",
                     sku);
}

static int seed(void)
{
    return th_seed_madrid(D.sock, "G-", 1, 4, "Group item", 5);
}

/* Appends a stock.move request. */
static void pack_move(msgpack_sbuffer *sb, uint32_t msgid, const char *kind, const char *sku,
                      long long qty, const char *id)
{
    th_pack_request(sb, msgid, "stock.move", "sssis", "kind", kind, "sku", sku, "warehouse",
                    "ES-MAD", "qty", qty, "id", id);
}

/* The on_hand of the first leg of a stock.move answer, or of ES-MAD in a stock.get answer. */
static long long answer_on_hand(const msgpack_object *res, const char *list)
{
    const msgpack_object *a = th_get(res, list);
    long long v = -1;
    if (a && a->type == MSGPACK_OBJECT_ARRAY && a->via.array.size >= 1)
        th_get_int(&a->via.array.ptr[0], "on_hand", &v);
    return v;
}

/* (a) one burst on one connection */
static void case_pipeline(void)
{
    enum { N = 7 };
    struct th_conn c;
    CHECK(th_connect(&c, D.sock) == 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_move(&sb, 1, "receive", "G-1", 1, "g-1");
    pack_move(&sb, 2, "receive", "G-1", 1, "g-1");
    pack_move(&sb, 3, "pick", "G-1", 6, "g-2");
    pack_move(&sb, 4, "pick", "G-1", 1, "g-3");
    pack_move(&sb, 5, "receive", "NO-SUCH-SKU", 1, "g-4");
    pack_move(&sb, 6, "receive", "G-1", 2, "g-5");
    th_pack_request(&sb, 7, "stock.get", "s", "sku", "G-1");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    bool seen[N + 1] = {0};
    for (int k = 0; k < N; k++) {
        struct th_resp r;
        int o = th_read_response(&c, TIMEOUT, &r);
        if (o != TH_OK && o != TH_ERRRESP) {
            fprintf(stderr, "(a) answer %d: %s\n", k, th_outcome(o));
            CHECK(0);
            break;
        }
        CHECK(r.msgid >= 1 && r.msgid <= N && !seen[r.msgid]);
        if (r.msgid < 1 || r.msgid > N)
            continue;
        seen[r.msgid] = true;
        bool dup = true;
        switch (r.msgid) {
        case 1:
        case 2:
            CHECK_EQ_INT(o, TH_OK);
            CHECK(o == TH_OK && th_get_bool(r.result, "duplicate", &dup) && dup == (r.msgid == 2));
            break;
        case 3:
            CHECK_EQ_INT(o, TH_OK); /* 5 + the first receive's 1 */
            CHECK_EQ_INT(o == TH_OK ? answer_on_hand(r.result, "stock") : -1, 0);
            break;
        case 4:
            CHECK_EQ_STR(r.code, "insufficient_stock");
            break;
        case 5:
            CHECK_EQ_STR(r.code, "not_found");
            break;
        case 6:
            CHECK_EQ_INT(o, TH_OK);
            CHECK_EQ_INT(o == TH_OK ? answer_on_hand(r.result, "stock") : -1, 2);
            break;
        case 7: /* after the connection's own writes */
            CHECK_EQ_INT(o, TH_OK);
            CHECK_EQ_INT(o == TH_OK ? answer_on_hand(r.result, "warehouses") : -1, 2);
            break;
        }
    }
    CHECK_EQ_INT(on_hand("G-1"), 2);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM outbox WHERE key IN ('g-1', 'g-2', 'g-5')", NULL), 3);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM outbox WHERE key IN ('g-3', 'g-4')", NULL), 0);
    msgpack_sbuffer_destroy(&sb);
    th_close(&c);
}

/* (b) many connections, kill -9 right after the last answer */
static void case_kill(void)
{
    enum { NC = 20, P = 10 };
    struct th_conn c[NC];
    char ids[NC * P][24];
    bool acked[NC * P] = {0};
    for (int i = 0; i < NC; i++)
        CHECK(th_connect(&c[i], D.sock) == 0);
    for (int i = 0; i < NC; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        for (int p = 0; p < P; p++) {
            snprintf(ids[i * P + p], sizeof ids[0], "k-%d-%d", i, p);
            pack_move(&sb, (uint32_t)(p + 1), "receive", "G-2", 1, ids[i * P + p]);
        }
        CHECK_EQ_INT(th_send(&c[i], sb.data, sb.size, TIMEOUT), 0);
        msgpack_sbuffer_destroy(&sb);
    }
    int nacked = 0;
    for (int i = 0; i < NC; i++)
        for (int p = 0; p < P; p++) {
            struct th_resp r;
            int o = th_read_response(&c[i], TIMEOUT, &r);
            CHECK_EQ_INT(o, TH_OK);
            if (o == TH_OK && r.msgid >= 1 && r.msgid <= P && !acked[i * P + r.msgid - 1]) {
                acked[i * P + r.msgid - 1] = true;
                nacked++;
            }
        }
    th_daemon_kill9(&D);
    CHECK_EQ_INT(nacked, NC * P);
    for (int i = 0; i < NC; i++)
        th_close(&c[i]);
    CHECK_EQ_INT(th_daemon_start(&D), 0);
    int missing = 0;
    for (int k = 0; k < NC * P; k++)
        if (acked[k] && db_q64("SELECT count(*) FROM outbox WHERE key = ?1", ids[k]) != 1)
            missing++;
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(db_q64("SELECT count(*) FROM movements WHERE id LIKE 'k-%'", NULL), NC * P);
    CHECK_EQ_INT(on_hand("G-2"), 5 + NC * P);
    CHECK_EQ_INT(
        db_q64("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'", NULL),
        0);
}

/* (c) half-close after a write */
static void case_half_close(void)
{
    struct th_conn c;
    CHECK(th_connect(&c, D.sock) == 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_move(&sb, 1, "receive", "G-3", 1, "h-1");
    pack_move(&sb, 2, "receive", "G-3", 1, "h-2");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    CHECK_EQ_INT(shutdown(c.fd, SHUT_WR), 0);
    for (int k = 0; k < 2; k++) {
        struct th_resp r;
        CHECK_EQ_INT(th_read_response(&c, TIMEOUT, &r), TH_OK);
    }
    int o = th_wait_closed(&c, TIMEOUT);
    CHECK(o == TH_EOF || o == TH_RESET);
    CHECK_EQ_INT(on_hand("G-3"), 7);
    msgpack_sbuffer_destroy(&sb);
    th_close(&c);
}

/* (d) SIGTERM right after a burst */
static void case_stop(void)
{
    enum { P = 100 };
    struct th_conn c;
    char ids[P][24];
    int state[P] = {0}; /* 1 success, 2 shutting_down */
    CHECK(th_connect(&c, D.sock) == 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (int p = 0; p < P; p++) {
        snprintf(ids[p], sizeof ids[0], "s-%d", p);
        pack_move(&sb, (uint32_t)(p + 1), "receive", "G-4", 1, ids[p]);
    }
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    kill(D.pid, SIGTERM);
    int ok = 0, refused = 0;
    for (;;) {
        struct th_resp r;
        int o = th_read_response(&c, TIMEOUT, &r);
        if (o != TH_OK && o != TH_ERRRESP)
            break; /* closed: the rest were never read */
        CHECK(r.msgid >= 1 && r.msgid <= P);
        if (r.msgid < 1 || r.msgid > P)
            continue;
        CHECK(o == TH_OK || strcmp(r.code, "shutting_down") == 0);
        state[r.msgid - 1] = o == TH_OK ? 1 : 2;
        if (o == TH_OK)
            ok++;
        else
            refused++;
    }
    int st = th_daemon_reap(&D, TIMEOUT);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    th_close(&c);
    CHECK_EQ_INT(th_daemon_start(&D), 0);
    int wrong = 0;
    for (int p = 0; p < P; p++) {
        long long n = db_q64("SELECT count(*) FROM outbox WHERE key = ?1", ids[p]);
        if ((state[p] == 1 && n != 1) || (state[p] == 2 && n != 0) || n > 1)
            wrong++;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(on_hand("G-4"),
                 5 + db_q64("SELECT count(*) FROM outbox WHERE key LIKE 's-%'", NULL));
    printf("(d) SIGTERM after a burst of %d: %d recorded, %d refused, %d unanswered\n", P, ok,
           refused, P - ok - refused);
    msgpack_sbuffer_destroy(&sb);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_group_commit TALLYD\n");
        return 2;
    }
    th_setup("test_group_commit", 120);
    if (th_daemon_init(&D, argv[1], "group-commit") != 0 || th_daemon_start(&D) != 0 ||
        seed() != 0) {
        fprintf(stderr, "cannot start and seed tallyd\n");
        return 1;
    }
    case_pipeline();
    case_kill();
    case_half_close();
    case_stop();
    int st = th_daemon_stop(&D, 15000);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    return check_result("test_group_commit");
}
