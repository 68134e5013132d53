/*
 * Integration: movements written by many clients while the power is cut (tests/power/
 * powercut.so), against the group commit whose groups commit without an fsync and are
 * answered only once a sync of the WAL covers them (gcommit.h "Syncs").
 *   test_write_powercut TALLYD POWERCUT_SO [TRIALS]
 * Each trial starts tallyd under the shim and writes receives (stock.move, an id of their own)
 * from one connection keeping PIPELINE in flight and from CONNS connections keeping one each,
 * each answer followed by the next request, until the cut: on even trials a cut file made
 * once the trial's number of answers has come (the shim cuts within a millisecond), on odd
 * ones the shim's TALLY_POWERCUT_AFTER_SYNCS (the cut lands in a sync, whose bytes are lost);
 * every third trial in torn mode (unsynced sectors kept or not, one by one). The shim puts
 * back every byte no sync made durable and kills tallyd. Then, on the replica as the cut left
 * it: every movement answered OK is there (once), the overlay is the ledger's sum for every
 * SKU (no movement half applied), every movement has its outbox row, and integrity_check
 * answers ok. The next trial starts tallyd on that replica (its recovery of the WAL).
 *
 * A last trial fails one sync of the WAL amid the load (the shim's "eio-fsync-wal-once", which
 * loses what that sync was to write, as Linux does: a later sync that succeeds does not write
 * it), then
 * cuts the power 300 answers later. tallyd must not acknowledge anything
 * after that failure (main.c wal_sync_failed: it stops, exit 74); had it gone on, the later
 * answers would be lost at the cut (the WAL's recovery stops at the first frame not on the
 * disk). Same checks, and tallyd's end: exit 74 or the cut.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 30000
#define CONNS 20    /* one movement in flight each */
#define PIPELINE 64 /* in flight on the pipelining connection (index CONNS) */
#define SKUS 4
#define MAX_ACKED 400000

static struct th_daemon D;

struct acked {
    int trial, conn;
    uint32_t n;
};
static struct acked *acked;
static int nacked;

static void move_id(char *buf, size_t cap, int trial, int conn, uint32_t n)
{
    snprintf(buf, cap, "w%d-%d-%u", trial, conn, n);
}

static int send_move(struct th_conn *c, int trial, int conn, uint32_t n)
{
    char id[48], sku[16];
    move_id(id, sizeof id, trial, conn, n);
    snprintf(sku, sizeof sku, "W-%d", 1 + (conn + (int)n) % SKUS);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    th_pack_request(&sb, n, "stock.move", "sssis", "kind", "receive", "sku", sku, "warehouse",
                    "ES-MAD", "qty", 1LL, "id", id);
    int r = th_send(c, sb.data, sb.size, TIMEOUT);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static long long q1(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        return -2;
    }
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void make_file(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0)
        close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s TALLYD POWERCUT_SO [TRIALS]\n", argv[0]);
        return 2;
    }
    int trials = argc > 3 ? atoi(argv[3]) : 6;
    if (trials < 1 || trials > 100)
        trials = 6;
    int failed_sync_trial = trials++; /* the last one */
    int failed_sync_exit = -1;
    th_setup("test_write_powercut", 600);
    CHECK_EQ_INT(th_daemon_init(&D, argv[1], "write-powercut"), 0);
    char cut[400], plog[400], fault[400];
    snprintf(cut, sizeof cut, "%s/cut", D.dir);
    snprintf(fault, sizeof fault, "%s/fault", D.dir);
    setenv("TALLY_FAULT_FILE", fault, 1);
    snprintf(plog, sizeof plog, "%s/powercut.log", D.dir);
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    setenv("TALLY_POWERCUT_FILE", cut, 1);
    setenv("TALLY_POWERCUT_LOG", plog, 1);
    acked = calloc(MAX_ACKED, sizeof *acked);
    CHECK(acked != NULL);
    if (!acked)
        return 1;
    int lost = 0, unbalanced = 0, no_outbox = 0, total_acked = 0;
    long long kept_unacked = 0;
    for (int t = 0; t < trials; t++) {
        unlink(cut);
        unlink(fault);
        bool fail_sync = t == failed_sync_trial;
        char env[32];
        if (t % 2 && !fail_sync) {
            /* Into a sync some way into the load (a start makes a few syncs of its own). */
            snprintf(env, sizeof env, "%d", 300 + 137 * t);
            setenv("TALLY_POWERCUT_AFTER_SYNCS", env, 1);
        } else {
            unsetenv("TALLY_POWERCUT_AFTER_SYNCS");
        }
        if (t % 3 == 2 && !fail_sync) {
            setenv("TALLY_POWERCUT_MODE", "torn", 1);
            snprintf(env, sizeof env, "%d", 1000 + t);
            setenv("TALLY_POWERCUT_SEED", env, 1);
        } else {
            unsetenv("TALLY_POWERCUT_MODE");
        }
        setenv("LD_PRELOAD", argv[2], 1);
        int started = th_daemon_start(&D);
        unsetenv("LD_PRELOAD");
        CHECK_EQ_INT(started, 0);
        if (started != 0)
            break;
        if (t == 0)
            CHECK_EQ_INT(th_seed_madrid(D.sock, "W-", 1, SKUS, "Powercut item", 0), 0);

        struct th_conn c[CONNS + 1];
        uint32_t next[CONNS + 1];
        bool open_[CONNS + 1];
        int trial_first = nacked;
        for (int k = 0; k <= CONNS; k++) {
            open_[k] = th_connect(&c[k], D.sock) == 0;
            CHECK(open_[k]);
            next[k] = 1;
            int window = k == CONNS ? PIPELINE : 1;
            for (int i = 0; open_[k] && i < window; i++)
                if (send_move(&c[k], t, k, next[k]++) != 0)
                    open_[k] = false;
        }
        /* A file cut once this many answers have come. */
        int cut_after = 500 + 700 * t, answers = 0;
        bool cut_made = t % 2 == 1 && !fail_sync; /* odd trials: the shim cuts in a sync */
        /* the failed-sync trial: a sync of the WAL fails after fail_after answers, the cut
         * comes 300 answers later, before a checkpoint has let the WAL start over (which
         * writes its first frames again) */
        int fail_after = fail_sync ? 1500 : 0;
        if (fail_sync)
            cut_after = fail_after + 300;
        bool fail_made = !fail_sync;
        int64_t deadline = th_now_ms() + 60000;
        for (;;) {
            struct pollfd pf[CONNS + 1];
            int nopen = 0;
            for (int k = 0; k <= CONNS; k++) {
                pf[k].fd = open_[k] ? c[k].fd : -1;
                pf[k].events = POLLIN;
                pf[k].revents = 0;
                nopen += open_[k];
            }
            if (nopen == 0)
                break;
            if (th_now_ms() > deadline) {
                if (cut_made)
                    break; /* the cut did not end it: reported by the checks below */
                cut_made = true;
                make_file(cut);
                deadline = th_now_ms() + 10000;
            }
            if (poll(pf, CONNS + 1, 100) < 0)
                continue;
            for (int k = 0; k <= CONNS; k++) {
                if (!open_[k] || !pf[k].revents)
                    continue;
                for (;;) {
                    struct th_resp r;
                    int o = th_read_response(&c[k], 0, &r);
                    if (o == TH_TIMEOUT)
                        break;
                    if (o != TH_OK && o != TH_ERRRESP) {
                        open_[k] = false; /* the cut */
                        break;
                    }
                    answers++;
                    if (o == TH_OK && nacked < MAX_ACKED)
                        acked[nacked++] = (struct acked){t, k, (uint32_t)r.msgid};
                    if (!fail_made && answers >= fail_after) {
                        /* whole or not at all: the shim reads an empty file as "eio" */
                        char tmpf[420];
                        snprintf(tmpf, sizeof tmpf, "%s.tmp", fault);
                        int fd = open(tmpf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                        CHECK(fd >= 0 && write(fd, "eio-fsync-wal-once", 18) == 18);
                        if (fd >= 0)
                            close(fd);
                        CHECK_EQ_INT(rename(tmpf, fault), 0);
                        fail_made = true;
                    }
                    /* the failed-sync trial: the cut only once the sync has failed (the shim
                     * removes the fault file then) */
                    if (!cut_made && answers >= cut_after &&
                        (!fail_sync || access(fault, F_OK) != 0)) {
                        make_file(cut);
                        cut_made = true;
                    }
                    if (send_move(&c[k], t, k, next[k]++) != 0) {
                        open_[k] = false;
                        break;
                    }
                }
            }
        }
        for (int k = 0; k <= CONNS; k++)
            th_close(&c[k]);
        int st = th_daemon_reap(&D, TIMEOUT);
        if (fail_sync) {
            /* stopped at the failed sync (exit 74), or killed by the cut */
            failed_sync_exit = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
            CHECK(failed_sync_exit == 74 || failed_sync_exit == -SIGKILL);
            CHECK(access(fault, F_OK) != 0); /* the failure did happen */
        } else {
            CHECK(st != 0); /* killed by the cut, not ended some other way */
        }
        total_acked += nacked - trial_first;

        /* The replica as the cut left it (SQLite recovers the WAL on open). */
        sqlite3 *db = NULL;
        CHECK_EQ_INT(sqlite3_open_v2(D.db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_stmt *has = NULL;
        CHECK_EQ_INT(
            sqlite3_prepare_v2(db, "SELECT count(*) FROM movements WHERE id = ?1", -1, &has, NULL),
            SQLITE_OK);
        int trial_lost = 0;
        for (int i = trial_first; has && i < nacked; i++) {
            char id[48];
            move_id(id, sizeof id, acked[i].trial, acked[i].conn, acked[i].n);
            sqlite3_bind_text(has, 1, id, -1, SQLITE_TRANSIENT);
            long long n = sqlite3_step(has) == SQLITE_ROW ? sqlite3_column_int64(has, 0) : -1;
            sqlite3_reset(has);
            if (n != 1) {
                if (trial_lost++ < 5)
                    fprintf(stderr, "trial %d: movement %s answered OK, %lld in the replica\n", t,
                            id, n);
            }
        }
        sqlite3_finalize(has);
        lost += trial_lost;
        char like[96];
        snprintf(like, sizeof like, "SELECT count(*) FROM movements WHERE id LIKE 'w%d-%%'", t);
        long long in_replica = q1(db, like);
        kept_unacked += in_replica - (nacked - trial_first);
        long long ub = q1(db, "SELECT count(*) FROM stock s WHERE s.pending <>"
                              " (SELECT coalesce(sum(m.delta), 0) FROM movements m"
                              "  WHERE m.sku = s.sku AND m.warehouse = s.warehouse)");
        long long nb = q1(db, "SELECT count(*) FROM movements m"
                              " WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.key = m.id)");
        CHECK_EQ_INT((int)ub, 0);
        CHECK_EQ_INT((int)nb, 0);
        unbalanced += ub != 0;
        no_outbox += nb != 0;
        sqlite3_stmt *s;
        char *ic = NULL;
        if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK) {
            if (sqlite3_step(s) == SQLITE_ROW)
                ic = strdup((const char *)sqlite3_column_text(s, 0));
            sqlite3_finalize(s);
        }
        CHECK(ic && strcmp(ic, "ok") == 0);
        free(ic);
        sqlite3_close(db);
        printf("trial %d (%s%s): %d answered OK, %lld in the replica, %d of them lost\n", t,
               fail_sync ? "a sync failed, then a cut file"
               : t % 2   ? "cut in a sync"
                         : "cut file",
               t % 3 == 2 && !fail_sync ? ", torn" : "", nacked - trial_first, in_replica,
               trial_lost);
        if (fail_sync)
            printf("trial %d: tallyd ended %s\n", t,
                   failed_sync_exit == 74 ? "at the failed sync (exit 74)" : "by the cut");
    }
    printf("%d power cuts amid movements from %d connections (1 pipelining %d): %d answered OK,"
           " %d of them lost; %lld kept without an answer\n",
           trials, CONNS + 1, PIPELINE, total_acked, lost, kept_unacked);
    CHECK(total_acked > 0);
    CHECK_EQ_INT(lost, 0);
    CHECK_EQ_INT(unbalanced, 0);
    CHECK_EQ_INT(no_outbox, 0);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    free(acked);
    th_daemon_cleanup(&D);
    return check_result("test_write_powercut");
}
