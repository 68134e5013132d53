/*
 * Integration: imports pipelined behind another held request (server_hold) on one connection.
 *   test_import_hold TALLYD
 * Imports pass the hold of the imports before them (SERVER_HOLD_PIPELINE: they join the write
 * jobs in order), but a purge (privacy.purge, write jobs, answered when over) also holds its
 * connection, and promises that the connection's next requests are handled after it (they see
 * what it did; an import of orders could otherwise be purged or not by chance). A client
 * pipelines, on one connection: a purge of many finished orders, two imports, a status. Each
 * import must be handled after the purge is over: the purge's answer comes first, then the
 * imports', then the status's. (Before, the imports passed the purge's hold: they were
 * answered while the purge still ran.)
 * Also: a watching connection that pipelines watch, import, import, status, import gets its
 * answers in that order (the status sees both imports); a client that pipelines imports and
 * goes away at once leaves each call whole or absent (its rows are read from the freed
 * connection's read buffer: ASan).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 60000
#define ROWS 200

static struct th_daemon D;

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
             " SELECT 'IH-' || n, 'FINISH', unixepoch() - 90 * 86400, unixepoch(), 'ES', 'EUR',"
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
        fprintf(stderr, "usage: test_import_hold TALLYD\n");
        return 2;
    }
    th_setup("test_import_hold", 120);
    long long norders = 20000; /* TALLY_PURGE_ORDERS: fewer under the sanitizers */
    const char *env = getenv("TALLY_PURGE_ORDERS");
    if (env && atoll(env) > 0)
        norders = atoll(env);
    /* No purge at start (retain_days): only the one asked for. */
    if (th_daemon_init(&D, argv[1], "import-hold") != 0 ||
        th_daemon_config(&D, "[station]\nname = IH\n[privacy]\nretain_days = 3650\n") != 0 ||
        th_daemon_start(&D) != 0) {
        fprintf(stderr, "cannot start tallyd\n");
        return 1;
    }
    CHECK(th_daemon_stop(&D, TIMEOUT) >= 0);
    CHECK_EQ_INT(seed(norders), 0);
    CHECK_EQ_INT(th_daemon_start(&D), 0);

    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    /* tallyd's own purge at start may still be running: a dry run answered says it is over. */
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
    /* A client that pipelines imports and goes away at once, the last one cut short: its
     * calls' rows are read by write jobs from its read buffer (server_take_request) while the
     * connection is freed (under the sanitizers, a use after free would end tallyd here). */
    {
        struct th_conn g;
        CHECK_EQ_INT(th_connect(&g, D.sock), 0);
        msgpack_sbuffer gb;
        msgpack_sbuffer_init(&gb);
        for (int m = 0; m < 8; m++) {
            char prefix[16];
            snprintf(prefix, sizeof prefix, "GONE%d", m);
            th_pack_import_catalog(&gb, (uint32_t)(m + 1), prefix, ROWS, false);
        }
        CHECK_EQ_INT(th_send(&g, gb.data, gb.size - 100, TIMEOUT), 0);
        msgpack_sbuffer_destroy(&gb);
        th_close(&g);
    }
    /* A watching connection that imports: watch, import, import, status, import pipelined.
     * The status waits for both imports before it (it sees them), the last import for the
     * status; notifications may come between answers, never instead of one. */
    {
        struct th_conn w;
        CHECK_EQ_INT(th_connect(&w, D.sock), 0);
        msgpack_sbuffer wb;
        msgpack_sbuffer_init(&wb);
        th_pack_request(&wb, 11, "watch", "");
        th_pack_import_catalog(&wb, 12, "IH_W1", ROWS, false);
        th_pack_import_catalog(&wb, 13, "IH_W2", ROWS, false);
        th_pack_request(&wb, 14, "status", "");
        th_pack_import_catalog(&wb, 15, "IH_W3", ROWS, false);
        CHECK_EQ_INT(th_send(&w, wb.data, wb.size, TIMEOUT), 0);
        msgpack_sbuffer_destroy(&wb);
        uint32_t seen[5] = {0};
        int got = 0, notes = 0;
        while (got < 5) {
            struct th_resp r;
            int o = th_read_response(&w, TIMEOUT, &r);
            if (o == TH_NOTRESP && notes++ < 1000)
                continue; /* a notification */
            if (o != TH_OK) {
                fprintf(stderr, "watching connection, answer %d: %s %s %s\n", got + 1,
                        th_outcome(o), o == TH_ERRRESP ? r.code : "",
                        o == TH_ERRRESP ? r.message : "");
                CHECK_EQ_INT(o, TH_OK);
                break;
            }
            seen[got++] = r.msgid;
        }
        printf("watching connection: watch(11) import(12) import(13) status(14) import(15)"
               " answered in the order %u %u %u %u %u (%d notifications)\n",
               seen[0], seen[1], seen[2], seen[3], seen[4], notes);
        for (int i = 0; i < 5; i++)
            CHECK_EQ_INT(seen[i], (uint32_t)(11 + i));
        th_close(&w);
    }
    /* One write: the purge, two imports, a status, pipelined. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    th_pack_request(&sb, 1, "privacy.purge", "i", "older_than_days", 0LL);
    th_pack_import_catalog(&sb, 2, "IH_A", ROWS, false);
    th_pack_import_catalog(&sb, 3, "IH_B", ROWS, false);
    th_pack_request(&sb, 4, "status", "");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    msgpack_sbuffer_destroy(&sb);

    uint32_t order[4] = {0};
    int n = 0;
    while (n < 4) {
        struct th_resp r;
        int o = th_read_response(&c, TIMEOUT, &r);
        if (o != TH_OK) {
            fprintf(stderr, "answer %d: %s%s%s%s\n", n + 1, th_outcome(o),
                    o == TH_ERRRESP ? " " : "", o == TH_ERRRESP ? r.code : "",
                    o == TH_ERRRESP ? r.message : "");
            CHECK_EQ_INT(o, TH_OK);
            break;
        }
        order[n++] = r.msgid;
        if (r.msgid == 1) {
            long long purged = -1;
            CHECK(th_get_int(r.result, "orders", &purged));
            CHECK_EQ_INT(purged, norders);
        }
    }
    th_close(&c);
    printf("%lld finished orders; pipelined purge(1), import(2), import(3), status(4): answered"
           " in the order %u %u %u %u\n",
           norders, order[0], order[1], order[2], order[3]);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(order[i], (uint32_t)(i + 1));
    int st = th_daemon_stop(&D, TIMEOUT);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    long long imported = th_db_int(D.db,
                                   "SELECT count(*) FROM skus WHERE code LIKE 'IH\\_%'"
                                   " ESCAPE '\\'",
                                   NULL);
    CHECK_EQ_INT(imported, 5 * ROWS); /* IH_A, IH_B, IH_W1-3 */
    /* The client that went away: each of its calls applied whole or not at all. */
    long long gone = th_db_int(D.db, "SELECT count(*) FROM skus WHERE code LIKE 'GONE%'", NULL);
    printf("the client gone at once: %lld of its rows imported\n", gone);
    CHECK(gone % ROWS == 0 && gone <= 7 * ROWS);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    return check_result("test_import_hold");
}
