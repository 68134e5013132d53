/*
 * Integration: the per-connection turn budget (server.c: a connection yields after 64 requests
 * or 2 ms of a turn) together with everything else that holds or defers a connection's
 * answers, on ONE connection that also watches events:
 *   - writes (stock.move) whose answers wait for the group commit (server_conn_owe),
 *   - reads after them (stock.get: the group commits first),
 *   - deferred reads answered by a worker (exceptions.list, outbox.list),
 *   - imports in the middle of the batch, which hold the connection (server_hold) until
 *     their answer (server_send_resume), the requests after them waiting in its buffer,
 *   - the client half-closing its side right after the batch (EOF with answers owed).
 * (a) the batch, far over one turn's budget, then EOF: every request answered exactly once,
 *     the events well-formed between answers, the connection closed by tallyd after the last
 *     answer, every write applied once.
 * (a2) reads only, as many, then EOF: answered in order, and the connection yielded (the
 *     budget itself: (a)'s reads wait for their writes' commits before it is spent).
 * (b) the same batch, then SIGTERM at once: every request answered at most once, each either
 *     done or shutting_down; the connection ends (no hang on a held or yielded connection);
 *     tallyd exits 0 (under the sanitizers: no error, no leak).
 *   test_turn_mix TALLYD
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 30000
#define BATCH 400

static struct th_daemon D;

static int seed(void)
{
    return th_seed_madrid(D.sock, "M-", 0, 1, "Mix item", 1000);
}

/* The batch: msgids first .. first + BATCH - 1; how many are writes in *writes. */
static void pack_batch(msgpack_sbuffer *sb, uint32_t first, const char *tag, long *writes)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    for (uint32_t i = 0; i < BATCH; i++) {
        uint32_t id = first + i;
        switch (i % 8) {
        case 0:
        case 3:
        case 5: {
            char mid[48];
            snprintf(mid, sizeof mid, "mix-%s-%u", tag, id);
            th_pack_request(sb, id, "stock.move", "sssis", "kind", "receive", "sku", "M-0",
                            "warehouse", "ES-MAD", "qty", 1LL, "id", mid);
            (*writes)++;
            break;
        }
        case 1:
            th_pack_request(sb, id, "exceptions.list", "");
            break;
        case 6:
            th_pack_request(sb, id, "outbox.list", "");
            break;
        case 7:
            if (i % 80 == 39) { /* an import now and then: the connection is held */
                char prefix[32];
                snprintf(prefix, sizeof prefix, "MI-%s-%u", tag, id);
                th_pack_import_catalog(sb, id, prefix, 1, false);
                break;
            }
            /* fall through */
        default:
            th_pack_request(sb, id, "stock.get", "s", "sku", "M-0");
            break;
        }
    }
}

/* The method pack_batch put at index i. */
static const char *kind_of(int i)
{
    switch (i % 8) {
    case 0:
    case 3:
    case 5:
        return "stock.move";
    case 1:
        return "exceptions.list";
    case 6:
        return "outbox.list";
    case 7:
        if (i % 80 == 39)
            return "import";
    }
    return "stock.get";
}

/* Reads until the connection ends: answers per msgid into seen[], events counted. Returns
 * how the stream ended (TH_EOF / TH_RESET / TH_TIMEOUT / ...). */
static const char *kind_of(int i);

/* Writes answered done, by drain. */
static long writes_done;

static int drain(struct th_conn *c, uint32_t first, int *seen, long *ok, long *stopping,
                 long *other, long *events, long *bad)
{
    for (;;) {
        int o = th_recv(c, TIMEOUT);
        if (o != TH_MSG)
            return o;
        const msgpack_object *m = &c->msg.data;
        if (m->type == MSGPACK_OBJECT_ARRAY && m->via.array.size == 3 &&
            m->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            m->via.array.ptr[0].via.u64 == 2) {
            (*events)++;
            continue;
        }
        struct th_resp r;
        if (th_parse_response(m, &r) != 0) {
            (*bad)++;
            continue;
        }
        if (r.msgid < first || r.msgid >= first + BATCH) {
            (*bad)++;
            continue;
        }
        seen[r.msgid - first]++;
        if (!r.is_error && strcmp(kind_of((int)(r.msgid - first)), "stock.move") == 0)
            writes_done++;
        if (!r.is_error)
            (*ok)++;
        else if (strcmp(r.code, "shutting_down") == 0)
            (*stopping)++;
        else {
            (*other)++;
            fprintf(stderr, "msgid %llu: %s %s\n", (unsigned long long)r.msgid, r.code, r.message);
        }
    }
}

static long long on_hand(void)
{
    struct th_conn c;
    struct th_resp r;
    long long v = -1;
    if (th_connect(&c, D.sock) == 0 &&
        th_call(&c, TIMEOUT, &r, "stock.get", "s", "sku", "M-0") == TH_OK) {
        const msgpack_object *a = th_get(r.result, "warehouses");
        if (a && a->type == MSGPACK_OBJECT_ARRAY && a->via.array.size >= 1)
            th_get_int(&a->via.array.ptr[0], "on_hand", &v);
    }
    th_close(&c);
    return v;
}

static long long yields(void)
{
    return th_status_int(D.sock, "connection_yields", TIMEOUT);
}

static long long waits(void)
{
    return th_status_int(D.sock, "commit_waits", TIMEOUT);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_turn_mix TALLYD\n");
        return 2;
    }
    th_setup("turn_mix", 240);
    if (th_daemon_init(&D, argv[1], "turn-mix") != 0 || th_daemon_start(&D) != 0 || seed() != 0) {
        fprintf(stderr, "tallyd did not start or could not be seeded\n");
        return 1;
    }
    static int seen[BATCH];

    /* (a) the batch, then EOF */
    long writes = 0, ok = 0, stopping = 0, other = 0, events = 0, bad = 0;
    long long y0 = yields(), w0 = waits(), before = on_hand();
    struct th_conn c;
    struct th_resp r;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "watch", ""), TH_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_batch(&sb, 1000, "a", &writes);
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    shutdown(c.fd, SHUT_WR);
    int end = drain(&c, 1000, seen, &ok, &stopping, &other, &events, &bad);
    th_close(&c);
    int missing = 0, twice = 0;
    for (int i = 0; i < BATCH; i++) {
        missing += seen[i] == 0;
        twice += seen[i] > 1;
        if (seen[i] != 1)
            fprintf(stderr, "(a) request %d (%s) answered %d times\n", i, kind_of(i), seen[i]);
    }
    long long after = on_hand(), y1 = yields(), w1 = waits();
    printf("(a) %d requests (%ld writes) then EOF: %ld answered, %ld errors, %d missing, %d twice,"
           " %ld events, %ld malformed; ended %s; on hand %lld -> %lld; yields %lld -> %lld\n",
           BATCH, writes, ok, other + stopping, missing, twice, events, bad, th_outcome(end),
           before, after, y0, y1);
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(twice, 0);
    CHECK_EQ_INT(ok, BATCH);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(end, TH_EOF);
    CHECK_EQ_INT(after, before + writes);
    /* The batch went over a turn's budget, or waited for its writes' commits (the group's
     * COMMIT runs on the commit thread: a read after a write waits for it, gcommit.h). */
    CHECK(y1 > y0 || w1 > w0);

    /* (a2) reads only, far over a turn's budget, then EOF. No read waits for a commit here
     * (none follows a write of its connection), so only the turn budget lets the loop go to
     * the others: connection_yields must grow. (a) no longer shows it: its reads after writes
     * wait for the commit thread before a turn's budget is spent (yields 0 -> 0). */
    {
        long long ya = yields();
        struct th_conn rc;
        CHECK_EQ_INT(th_connect(&rc, D.sock), 0);
        msgpack_sbuffer_clear(&sb);
        for (int i = 0; i < BATCH; i++)
            th_pack_request(&sb, 3000 + (uint32_t)i, "stock.get", "s", "sku", "M-0");
        CHECK_EQ_INT(th_send(&rc, sb.data, sb.size, TIMEOUT), 0);
        shutdown(rc.fd, SHUT_WR);
        int got = 0, wrong = 0, o;
        uint32_t next = 3000;
        while ((o = th_read_response(&rc, TIMEOUT, &r)) == TH_OK || o == TH_ERRRESP) {
            wrong += o != TH_OK || r.msgid != next; /* answered in order, each once */
            next++;
            got++;
        }
        th_close(&rc);
        long long yb = yields();
        printf("(a2) %d reads then EOF: %d answered, %d wrong or out of order; ended %s; yields "
               "%lld -> %lld\n",
               BATCH, got, wrong, th_outcome(o), ya, yb);
        CHECK_EQ_INT(got, BATCH);
        CHECK_EQ_INT(wrong, 0);
        CHECK_EQ_INT(o, TH_EOF);
        CHECK(ya >= 0 && yb > ya);
    }

    /* (b) the batch, then SIGTERM */
    memset(seen, 0, sizeof seen);
    writes = ok = stopping = other = events = bad = writes_done = 0;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "watch", ""), TH_OK);
    msgpack_sbuffer_clear(&sb);
    pack_batch(&sb, 5000, "b", &writes);
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    kill(D.pid, SIGTERM);
    end = drain(&c, 5000, seen, &ok, &stopping, &other, &events, &bad);
    th_close(&c);
    missing = twice = 0;
    for (int i = 0; i < BATCH; i++) {
        missing += seen[i] == 0;
        twice += seen[i] > 1;
    }
    for (int i = 0; i < BATCH && getenv("TURN_MIX_VERBOSE"); i++)
        if (seen[i] != 1)
            fprintf(stderr, "(b) request %d (%s) answered %d times\n", i, kind_of(i), seen[i]);
    int st = th_daemon_reap(&D, TIMEOUT);
    printf("(b) %d requests then SIGTERM: %ld answered, %ld shutting_down, %ld other errors, %d"
           " not answered, %d twice, %ld malformed; ended %s; exit %d\n",
           BATCH, ok, stopping, other, missing, twice, bad, th_outcome(end),
           st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    /* Every write applied was answered done, and no other (the replica, read directly). */
    long long applied = -1;
    sqlite3 *db;
    sqlite3_stmt *q;
    if (sqlite3_open_v2(D.db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM movements WHERE id LIKE 'mix-b-%'", -1, &q,
                           NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW)
            applied = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
    printf("(b) writes answered done %ld, applied %lld\n", writes_done, applied);
    CHECK_EQ_INT(applied, writes_done);
    CHECK_EQ_INT(twice, 0);
    CHECK_EQ_INT(other, 0);
    CHECK_EQ_INT(bad, 0);
    CHECK(end == TH_EOF || end == TH_RESET); /* ended, not left hanging */
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    msgpack_sbuffer_destroy(&sb);
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    return check_result("test_turn_mix");
}
