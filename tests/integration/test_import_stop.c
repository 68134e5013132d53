/*
 * Integration: imports (write jobs, answered when done; server_hold keeps their connection's
 * next requests behind them) when tallyd stops. Several connections each pipeline imports,
 * then tallyd gets SIGTERM: an import handed to the writer must be answered before its
 * connection ends, with its counts (its rows are all in the replica) or shutting_down (none
 * is); one never handled (waiting behind another) may go unanswered, and then none of its rows
 * is in the replica. The stop is clean (exit 0). An import whose rows were written but that was
 * not answered leaves its caller not knowing it was done.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 30000
#define CONNS 3
#define ROWS 1000 /* the most one import call takes */
#define CALLS 4   /* pipelined on each connection */

static struct th_daemon D;

static long long db_count(const char *like)
{
    return th_db_int(D.db, "SELECT count(*) FROM skus WHERE code LIKE ?1 ESCAPE '\\'", like);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_import_stop TALLYD\n");
        return 2;
    }
    th_setup("test_import_stop", 120);
    if (th_daemon_init(&D, argv[1], "import-stop") != 0 || th_daemon_start(&D) != 0) {
        fprintf(stderr, "cannot start tallyd\n");
        return 1;
    }
    struct th_conn c[CONNS];
    for (int k = 0; k < CONNS; k++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        for (int m = 0; m < CALLS; m++) {
            char prefix[16];
            snprintf(prefix, sizeof prefix, "I%d_%d", k, m);
            th_pack_import_catalog(&sb, (uint32_t)(m + 1), prefix, ROWS, false);
        }
        CHECK_EQ_INT(th_connect(&c[k], D.sock), 0);
        CHECK_EQ_INT(th_send(&c[k], sb.data, sb.size, TIMEOUT), 0);
        msgpack_sbuffer_destroy(&sb);
    }
    th_sleep_ms(20); /* read by tallyd: the first imports are queued or running */
    kill(D.pid, SIGTERM);
    int state[CONNS][CALLS] = {{0}}; /* 1 done, 2 refused */
    int ok = 0, refused = 0;
    for (int k = 0; k < CONNS; k++) {
        for (;;) {
            struct th_resp r;
            int o = th_read_response(&c[k], TIMEOUT, &r);
            if (o != TH_OK && o != TH_ERRRESP)
                break; /* the connection ended */
            CHECK(r.msgid >= 1 && r.msgid <= CALLS);
            if (r.msgid < 1 || r.msgid > CALLS)
                continue;
            if (o == TH_ERRRESP && strcmp(r.code, "shutting_down") != 0)
                fprintf(stderr, "connection %d: %s: %s\n", k, r.code, r.message);
            CHECK(o == TH_OK || strcmp(r.code, "shutting_down") == 0);
            CHECK_EQ_INT(state[k][r.msgid - 1], 0);
            state[k][r.msgid - 1] = o == TH_OK ? 1 : 2;
            o == TH_OK ? ok++ : refused++;
        }
        th_close(&c[k]);
    }
    int st = th_daemon_reap(&D, TIMEOUT);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* What was answered is what the replica holds: done, all its rows; otherwise none. */
    int written_unanswered = 0, wrong = 0;
    for (int k = 0; k < CONNS; k++)
        for (int m = 0; m < CALLS; m++) {
            char like[24];
            snprintf(like, sizeof like, "I%d\\_%d-%%", k, m);
            long long n = db_count(like);
            if (state[k][m] == 0 && n != 0) {
                fprintf(stderr, "connection %d import %d: %lld rows written, no answer\n", k, m + 1,
                        n);
                written_unanswered++;
            } else if ((state[k][m] == 1 && n != ROWS) || (state[k][m] == 2 && n != 0)) {
                fprintf(stderr, "connection %d import %d: answered %s, %lld rows\n", k, m + 1,
                        state[k][m] == 1 ? "done" : "shutting_down", n);
                wrong++;
            }
        }
    printf("%d imports on %d connections, SIGTERM: %d done, %d refused, %d unanswered with rows"
           " written\n",
           CONNS * CALLS, CONNS, ok, refused, written_unanswered);
    CHECK_EQ_INT(written_unanswered, 0);
    CHECK_EQ_INT(wrong, 0);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    return check_result("test_import_stop");
}
