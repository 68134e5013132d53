/*
 * Integration: a purge (privacy.purge, write jobs, answered when over) when tallyd stops.
 *   test_purge_stop TALLYD
 * A replica with many finished orders holding buyer data; a client asks for a purge of them
 * all, and once the purge has committed its first slice (seen from another connection to the
 * replica) tallyd gets SIGTERM. The purge's caller must be answered before its connection
 * ends: with the whole count (every order purged), or shutting_down saying how far it got
 * (that many orders purged, the others untouched). tallyd exits with 0. Before, the answer was
 * dropped at the stop: the caller could not tell what had been purged.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 60000

static struct th_daemon D;

static long long db_q(const char *sql)
{
    return th_db_int(D.db, sql, NULL);
}

static int seed(long long n)
{
    sqlite3 *db;
    if (sqlite3_open(D.db, &db) != SQLITE_OK)
        return -1;
    char sql[1024];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < %lld)"
             " INSERT INTO orders(order_id, status, created_at, updated_at, country, currency,"
             " buyer_name, address, city, postcode, phone, finished_at, fstate)"
             " SELECT 'PS-' || n, 'FINISH', unixepoch() - 90 * 86400, unixepoch(), 'ES', 'EUR',"
             " 'Name-' || n, n || ' Secret Street', 'City', 'PC-' || n, 'Phone-' || n,"
             " unixepoch() - 40 * 86400, 'finished' FROM i",
             n);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fprintf(stderr, "seed: %s\n", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_purge_stop TALLYD\n");
        return 2;
    }
    th_setup("test_purge_stop", 240);
    long long norders = 40000; /* TALLY_PURGE_ORDERS: fewer under the sanitizers */
    const char *env = getenv("TALLY_PURGE_ORDERS");
    if (env && atoll(env) > 0)
        norders = atoll(env);
    /* No purge at start (retain_days): only the one asked for. */
    if (th_daemon_init(&D, argv[1], "purge-stop") != 0 ||
        th_daemon_config(&D, "[station]\nname = PS\n[privacy]\nretain_days = 3650\n") != 0 ||
        th_daemon_start(&D) != 0) {
        fprintf(stderr, "cannot start tallyd\n");
        return 1;
    }
    CHECK(th_daemon_stop(&D, TIMEOUT) >= 0);
    CHECK_EQ_INT(seed(norders), 0);
    CHECK_EQ_INT(th_daemon_start(&D), 0);

    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    /* tallyd's own purge at start (nothing to do at retain_days 3650) may still be running:
     * ours would be refused as busy. A dry run answered with a count says it is over. */
    for (int i = 0; i < 600; i++) {
        struct th_resp dr;
        int o = th_call(&c, TIMEOUT, &dr, "privacy.purge", "ib", "older_than_days", 0LL, "dry_run",
                        true);
        if (o == TH_OK)
            break;
        CHECK(o == TH_ERRRESP && strcmp(dr.code, "busy") == 0);
        if (o != TH_ERRRESP)
            break;
        th_sleep_ms(50);
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    th_pack_request(&sb, 7, "privacy.purge", "i", "older_than_days", 0LL);
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    msgpack_sbuffer_destroy(&sb);
    /* Running: its first slice committed (WAL: this read waits for nothing). */
    long long seen = 0;
    for (int64_t until = th_now_ms() + TIMEOUT; seen <= 0 && th_now_ms() < until;) {
        seen = db_q("SELECT COUNT(*) FROM orders WHERE purged_at IS NOT NULL");
        if (seen <= 0)
            th_sleep_ms(1);
    }
    CHECK(seen > 0);
    kill(D.pid, SIGTERM);

    struct th_resp r;
    int o = th_read_response(&c, TIMEOUT, &r);
    CHECK(o == TH_OK || o == TH_ERRRESP); /* answered, not a closed connection */
    long long answered = -1;
    if (o == TH_OK) {
        CHECK_EQ_INT(r.msgid, 7);
        CHECK(th_get_int(r.result, "orders", &answered));
        CHECK_EQ_INT(answered, norders);
    } else if (o == TH_ERRRESP) {
        CHECK_EQ_INT(r.msgid, 7);
        CHECK_EQ_STR(r.code, "shutting_down");
        const char *after = strstr(r.message, "stopped after ");
        CHECK(after != NULL);
        if (after)
            answered = atoll(after + strlen("stopped after "));
    }
    th_close(&c);
    int st = th_daemon_reap(&D, TIMEOUT);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* What the answer says is what the replica holds. */
    long long purged = db_q("SELECT COUNT(*) FROM orders WHERE purged_at IS NOT NULL"
                            " AND buyer_name IS NULL");
    long long half = db_q("SELECT COUNT(*) FROM orders WHERE (purged_at IS NULL)"
                          " <> (buyer_name IS NOT NULL)");
    printf("%lld finished orders, SIGTERM after %lld purged: answered %s, %lld; replica: %lld"
           " purged\n",
           norders, seen,
           o == TH_OK        ? "done"
           : o == TH_ERRRESP ? r.code
                             : "nothing",
           answered, purged);
    CHECK_EQ_INT(purged, answered);
    CHECK_EQ_INT(half, 0);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    return check_result("test_purge_stop");
}
