/*
 * Integration: pipelined imports and power cuts (tests/power/powercut.so).
 *   test_import_powercut TALLYD POWERCUT_SO [TRIALS]
 * Imports pipelined on two connections share write jobs whose calls commit lazily (no fsync)
 * but the job's last (store.h "Lazy commits"); a call is answered only once it and every call
 * before it are durable. Each trial pipelines CALLS imports on each connection and, once the
 * trial's number of answers has come, cuts the power (the shim drops every write not synced
 * and kills tallyd). One call of the second connection has a bad row: refused, it writes
 * nothing, and when it is its job's last the calls before it are made durable by a small
 * write of their own (import_barrier). Then, on the replica as the cut left it: every call
 * answered done has all its rows, every call has all or none of them (the refused one none),
 * and the database is intact. tallyd is started
 * again for the next trial (its recovery of the WAL). Fails if any commit answered is lazy.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 30000
#define CONNS 2
#define CALLS 8
#define ROWS 300
#define REFUSED 4 /* the call of the second connection whose last row is refused */

static struct th_daemon D;

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s TALLYD POWERCUT_SO [TRIALS]\n", argv[0]);
        return 2;
    }
    int trials = argc > 3 ? atoi(argv[3]) : 6;
    if (trials < 1 || trials > 100)
        trials = 6;
    th_setup("test_import_powercut", 240);
    CHECK_EQ_INT(th_daemon_init(&D, argv[1], "import-powercut"), 0);
    char cut[400];
    snprintf(cut, sizeof cut, "%s/cut", D.dir);
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    setenv("TALLY_POWERCUT_FILE", cut, 1);
    int acked_total = 0, lost = 0, partial = 0;
    for (int t = 0; t < trials; t++) {
        unlink(cut);
        setenv("LD_PRELOAD", argv[2], 1);
        int started = th_daemon_start(&D);
        unsetenv("LD_PRELOAD");
        CHECK_EQ_INT(started, 0);
        if (started != 0)
            break;
        struct th_conn c[CONNS];
        for (int k = 0; k < CONNS; k++) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            for (int m = 0; m < CALLS; m++) {
                char prefix[24];
                snprintf(prefix, sizeof prefix, "T%d_%d_%d", t, k, m);
                th_pack_import_catalog(&sb, (uint32_t)(m + 1), prefix, ROWS,
                                       k == 1 && m == REFUSED);
            }
            CHECK_EQ_INT(th_connect(&c[k], D.sock), 0);
            CHECK_EQ_INT(th_send(&c[k], sb.data, sb.size, TIMEOUT), 0);
            msgpack_sbuffer_destroy(&sb);
        }
        /* The cut once this many answers have come (1 .. CALLS on the first connection). */
        int cut_after = 1 + t % CALLS, answers = 0;
        bool done[CONNS][CALLS] = {{false}};
        bool cut_made = false;
        for (int k = 0; k < CONNS; k++) {
            for (;;) {
                if (!cut_made && (k > 0 || answers >= cut_after)) {
                    int fd = open(cut, O_CREAT | O_WRONLY, 0600);
                    if (fd >= 0)
                        close(fd);
                    cut_made = true;
                }
                struct th_resp r;
                int o = th_read_response(&c[k], TIMEOUT, &r);
                if (o != TH_OK && o != TH_ERRRESP)
                    break; /* the connection ended: the cut */
                if (r.msgid >= 1 && r.msgid <= CALLS && o == TH_OK) {
                    done[k][r.msgid - 1] = true;
                    acked_total++;
                }
                answers++;
            }
            th_close(&c[k]);
        }
        th_daemon_reap(&D, TIMEOUT);
        /* The replica as the cut left it (SQLite recovers the WAL on open). */
        for (int k = 0; k < CONNS; k++)
            for (int m = 0; m < CALLS; m++) {
                char like[32];
                snprintf(like, sizeof like, "T%d\\_%d\\_%d-%%", t, k, m);
                long long n = th_db_int(
                    D.db, "SELECT count(*) FROM skus WHERE code LIKE ?1 ESCAPE '\\'", like);
                if (k == 1 && m == REFUSED && (done[k][m] || n != 0)) {
                    fprintf(stderr, "trial %d: the refused call answered %s, %lld rows\n", t,
                            done[k][m] ? "done" : "refused", n);
                    partial++;
                } else if (done[k][m] && n != ROWS) {
                    fprintf(stderr, "trial %d: connection %d call %d answered done, %lld rows\n", t,
                            k, m + 1, n);
                    lost++;
                } else if (n != 0 && n != ROWS) {
                    fprintf(stderr, "trial %d: connection %d call %d: %lld rows\n", t, k, m + 1, n);
                    partial++;
                }
            }
        char *ic = NULL;
        sqlite3 *db;
        if (sqlite3_open(D.db, &db) == SQLITE_OK) {
            sqlite3_stmt *s;
            if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK) {
                if (sqlite3_step(s) == SQLITE_ROW)
                    ic = strdup((const char *)sqlite3_column_text(s, 0));
                sqlite3_finalize(s);
            }
        }
        sqlite3_close(db);
        CHECK(ic && strcmp(ic, "ok") == 0);
        free(ic);
    }
    /* A job whose last call is refused: three calls on one connection, the third refused; the
     * second, queued behind the first while the writer runs it, shares a job with the third and
     * commits lazily. Once the three answers have come, the cut: the second call must be in. */
    int barrier_lost = 0, barrier_runs = 3;
    for (int t = 0; t < barrier_runs; t++) {
        unlink(cut);
        setenv("LD_PRELOAD", argv[2], 1);
        int started = th_daemon_start(&D);
        unsetenv("LD_PRELOAD");
        CHECK_EQ_INT(started, 0);
        if (started != 0)
            break;
        struct th_conn c;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        for (int m = 0; m < 3; m++) {
            char prefix[24];
            snprintf(prefix, sizeof prefix, "B%d_%d", t, m);
            th_pack_import_catalog(&sb, (uint32_t)(m + 1), prefix, ROWS, m == 2);
        }
        CHECK_EQ_INT(th_connect(&c, D.sock), 0);
        CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
        msgpack_sbuffer_destroy(&sb);
        bool done[3] = {false};
        int got = 0;
        while (got < 3) {
            struct th_resp r;
            int o = th_read_response(&c, TIMEOUT, &r);
            if (o != TH_OK && o != TH_ERRRESP)
                break;
            if (r.msgid >= 1 && r.msgid <= 3)
                done[r.msgid - 1] = o == TH_OK;
            got++;
        }
        CHECK_EQ_INT(got, 3);
        int fd = open(cut, O_CREAT | O_WRONLY, 0600);
        if (fd >= 0)
            close(fd);
        th_wait_closed(&c, TIMEOUT);
        th_close(&c);
        th_daemon_reap(&D, TIMEOUT);
        CHECK(done[0] && done[1] && !done[2]);
        for (int m = 0; m < 3; m++) {
            char like[32];
            snprintf(like, sizeof like, "B%d\\_%d-%%", t, m);
            long long n =
                th_db_int(D.db, "SELECT count(*) FROM skus WHERE code LIKE ?1 ESCAPE '\\'", like);
            if (n != (done[m] ? ROWS : 0)) {
                fprintf(stderr, "barrier run %d: call %d answered %s, %lld rows\n", t, m + 1,
                        done[m] ? "done" : "refused", n);
                barrier_lost++;
            }
        }
    }
    CHECK_EQ_INT(barrier_lost, 0);
    printf("%d power cuts amid %d pipelined imports each: %d calls answered done, %d of them"
           " lost, %d calls partly written\n",
           trials, CONNS * CALLS, acked_total, lost, partial);
    CHECK(acked_total > 0);
    CHECK_EQ_INT(lost, 0);
    CHECK_EQ_INT(partial, 0);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    return check_result("test_import_powercut");
}
