/*
 * Integration: long reads off the loop (issue 10 no. 1 and 4), against a real tallyd.
 *   test_reads TALLYD
 *
 * A report runs as a read job on a worker and is answered later (RPC_DEFERRED):
 *  (a) a report and a stock.get sent in ONE write on one connection: the stock.get is answered
 *      first (the report's answer comes from the worker, after the batch it came in), both
 *      answers carry their own msgid, and the report's figures are those of the data imported;
 *      the same with a run of stock.gets and statuses behind the report;
 *      catalog.search, a deferred read too, likewise, and its cursor pages on;
 *      outbox.list, returns.list, orders.list and stock.list with a filter (deferred) answer
 *      right; exceptions.list (always deferred) is answered after reads sent behind it;
 *  (b) a watching connection asks for a report: its answer comes, events or not;
 *  (c) connections closed right after sending a report (a dozen of them, pipelined reports
 *      too): tallyd drops those answers and goes on answering;
 *  (d) forty reports and a stock.get in one write, SIGTERM once the stock.get is answered (the
 *      reports are then queued, running or done): every report is answered exactly once,
 *      with its figures or shutting_down, before the connection ends; tallyd exits with 0.
 * No timing is asserted: the order in (a) follows from how the loop works, not from speed.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"

#define TIMEOUT 20000
#define NORDERS 30
#define NSTOP 40 /* reports in flight at the stop: more than the readers, so some wait */

static struct th_daemon D;
static long long t_now;

static int seed(void)
{
    struct th_conn c;
    struct th_resp r;
    msgpack_sbuffer b;
    msgpack_packer pk;
    int rc = th_connect(&c, D.sock);
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    th_pack_map(&pk, "sss", "code", "ES-MAD", "name", "Madrid", "country", "ES");
    th_pack_map(&pk, "sss", "code", "FR-PAR", "name", "Paris", "country", "FR");
    if (rc == 0 && th_import(&c, "warehouses", 2, &b, &r) != TH_OK)
        rc = -1;
    msgpack_sbuffer_clear(&b);
    th_pack_map(&pk, "sssiss", "sku", "A-1", "product_id", "P", "title", "Alpha one", "price_minor",
                1000LL, "currency", "EUR", "product_title", "P");
    th_pack_map(&pk, "sssiss", "sku", "A-2", "product_id", "P", "title", "Alpha two", "price_minor",
                1000LL, "currency", "EUR", "product_title", "P");
    if (rc == 0 && th_import(&c, "catalog", 2, &b, &r) != TH_OK)
        rc = -1;
    msgpack_sbuffer_clear(&b);
    th_pack_map(&pk, "ssi", "sku", "A-1", "warehouse", "FR-PAR", "on_hand", 7LL);
    th_pack_map(&pk, "ssi", "sku", "A-1", "warehouse", "ES-MAD", "on_hand", 10LL);
    if (rc == 0 && th_import(&c, "stock", 2, &b, &r) != TH_OK)
        rc = -1;
    msgpack_sbuffer_clear(&b);
    for (int i = 0; i < NORDERS; i++) {
        char id[32];
        snprintf(id, sizeof id, "O-%d", i);
        /* Cancelled: the fulfilment pass leaves them alone; the report still counts them. */
        th_pack_map(&pk, "ssissssiissss", "order_id", id, "status", "FINISH", "created_at",
                    t_now - 3600 - i, "country", "ES", "currency", "EUR", "sku", "A-1",
                    "buyer_name", "Ana", "qty", 1LL, "price_minor", 1000LL, "address",
                    "Calle Mayor 1", "city", "Madrid", "postcode", "28013", "phone",
                    "+34600000000");
    }
    if (rc == 0 && th_import(&c, "orders", NORDERS, &b, &r) != TH_OK) {
        fprintf(stderr, "orders import: %s %s\n", r.code, r.message);
        rc = -1;
    }
    msgpack_sbuffer_destroy(&b);
    th_close(&c);
    return rc;
}

static void pack_report(msgpack_sbuffer *sb, uint32_t msgid)
{
    th_pack_request(sb, msgid, "report", "ii", "from", t_now - 86400, "to", t_now + 60);
}

/* Reads responses until `want` is seen (notifications skipped); the msgids in order. */
static int read_responses(struct th_conn *c, uint32_t *order, int max, int want)
{
    int n = 0;
    while (n < max && n < want) {
        int r = th_recv(c, TIMEOUT);
        if (r != TH_MSG)
            return n;
        const msgpack_object *o = &c->msg.data;
        if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3)
            continue; /* a notification */
        struct th_resp resp;
        if (th_parse_response(o, &resp) != 0 || resp.is_error) {
            fprintf(stderr, "unexpected answer: %s %s\n", resp.code, resp.message);
            order[n++] = 0;
            continue;
        }
        order[n++] = (uint32_t)resp.msgid;
        if (resp.msgid == 1) { /* the report: its figures */
            const msgpack_object *orders = th_get(resp.result, "orders");
            long long created = -1, from = -1;
            CHECK(th_get_int(orders, "created", &created));
            CHECK_EQ_INT(created, NORDERS);
            CHECK(th_get_int(resp.result, "from", &from));
            CHECK_EQ_INT(from, t_now - 86400);
        } else {
            CHECK(th_get(resp.result, "sku") || th_get(resp.result, "station"));
        }
    }
    return n;
}

static void case_out_of_order(void)
{
    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_report(&sb, 1);
    th_pack_request(&sb, 2, "stock.get", "s", "sku", "A-1");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0); /* one write() */
    uint32_t order[8];
    CHECK_EQ_INT(read_responses(&c, order, 8, 2), 2);
    CHECK_EQ_INT(order[0], 2); /* stock.get, sent after the report, answered first */
    CHECK_EQ_INT(order[1], 1);

    /* A report, then a run of reads behind it: every one answered, the report last. */
    msgpack_sbuffer_clear(&sb);
    pack_report(&sb, 1);
    for (uint32_t id = 2; id <= 7; id++) {
        if (id % 2)
            th_pack_request(&sb, id, "status", "");
        else
            th_pack_request(&sb, id, "stock.get", "s", "sku", "A-1");
    }
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    CHECK_EQ_INT(read_responses(&c, order, 8, 7), 7);
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(order[i], (uint32_t)i + 2);
    CHECK_EQ_INT(order[6], 1);
    msgpack_sbuffer_destroy(&sb);
    th_close(&c);
}

/* catalog.search is a deferred read too: answered with the right page after a stock.get sent
 * behind it; its cursor pages on. */
static void case_search(void)
{
    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    th_pack_request(&sb, 1, "catalog.search", "si", "q", "Alpha", "limit", 1LL);
    th_pack_request(&sb, 2, "stock.get", "s", "sku", "A-1");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    struct th_resp r;
    CHECK_EQ_INT(th_read_response(&c, TIMEOUT, &r), TH_OK);
    CHECK_EQ_INT(r.msgid, 2);
    CHECK_EQ_INT(th_read_response(&c, TIMEOUT, &r), TH_OK);
    CHECK_EQ_INT(r.msgid, 1);
    const msgpack_object *items = th_get(r.result, "items");
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1);
    if (items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1) {
        char sku[32] = "";
        CHECK(th_get_str(&items->via.array.ptr[0], "sku", sku, sizeof sku));
        CHECK_EQ_STR(sku, "A-1");
    }
    char cursor[64] = "";
    CHECK(th_get_str(r.result, "next_cursor", cursor, sizeof cursor));
    CHECK_EQ_STR(cursor, "A-1");
    CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "catalog.search", "ss", "q", "Alpha", "cursor", cursor),
                 TH_OK);
    items = th_get(r.result, "items");
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1);
    msgpack_sbuffer_destroy(&sb);
    th_close(&c);
}

/* exceptions.list is a deferred read (a filter walks past what it leaves out; the counts read
 * every exception not resolved): a stock.get sent behind it in one write is answered first,
 * and the list's answer has its page and counts. */
static void case_exceptions_deferred(void)
{
    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    th_pack_request(&sb, 1, "exceptions.list", "s", "kind", "deadline");
    th_pack_request(&sb, 2, "stock.get", "s", "sku", "A-1");
    th_pack_request(&sb, 3, "exceptions.list", "");
    th_pack_request(&sb, 4, "status", "");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0); /* one write() */
    uint32_t order[4] = {0};
    for (int i = 0; i < 4; i++) {
        struct th_resp r;
        CHECK_EQ_INT(th_read_response(&c, TIMEOUT, &r), TH_OK);
        order[i] = (uint32_t)r.msgid;
        if (r.msgid == 1 || r.msgid == 3) {
            const msgpack_object *items = th_get(r.result, "items");
            CHECK(items && items->type == MSGPACK_OBJECT_ARRAY);
            long long open = -1;
            CHECK(th_get_int(th_get(r.result, "counts"), "open", &open));
            CHECK(open >= 0);
        }
    }
    CHECK_EQ_INT(order[0], 2); /* the loop's answers first, in the order asked */
    CHECK_EQ_INT(order[1], 4);
    CHECK((order[2] == 1 && order[3] == 3) || (order[2] == 3 && order[3] == 1));
    msgpack_sbuffer_destroy(&sb);
    th_close(&c);
}

/* outbox.list, returns.list and orders.list with a filter are deferred reads: answered, right. */
static void case_filtered_lists(void)
{
    struct th_conn c;
    struct th_resp r;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    /* The pick of case (b) left one movement waiting in the outbox. */
    CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "outbox.list", "s", "state", "pending"), TH_OK);
    const msgpack_object *items = th_get(r.result, "items");
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1);
    if (items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1) {
        char key[64] = "";
        CHECK(th_get_str(&items->via.array.ptr[0], "key", key, sizeof key));
        CHECK_EQ_STR(key, "mv-w1");
    }
    CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "outbox.list", "s", "state", "held"), TH_OK);
    items = th_get(r.result, "items");
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 0);
    CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "returns.list", "s", "state", "received"), TH_OK);
    items = th_get(r.result, "items");
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 0);
    /* orders.list with a filter (deferred) pages through exactly the orders a client-side
     * filter of the unfiltered pages keeps. */
    int want = 0, got = 0;
    char cursor[200] = "";
    for (int page = 0; page < 20; page++) {
        int rr = cursor[0]
                     ? th_call(&c, TIMEOUT, &r, "orders.list", "is", "limit", 7LL, "cursor", cursor)
                     : th_call(&c, TIMEOUT, &r, "orders.list", "i", "limit", 7LL);
        CHECK_EQ_INT(rr, TH_OK);
        items = rr == TH_OK ? th_get(r.result, "items") : NULL;
        for (uint32_t i = 0; items && i < items->via.array.size; i++) {
            char st[40] = "";
            th_get_str(&items->via.array.ptr[i], "status", st, sizeof st);
            want += strcmp(st, "FINISH") == 0;
        }
        if (rr != TH_OK || !th_get_str(r.result, "next_cursor", cursor, sizeof cursor))
            break;
    }
    cursor[0] = 0;
    for (int page = 0; page < 20; page++) {
        int rr = cursor[0] ? th_call(&c, TIMEOUT, &r, "orders.list", "sis", "status", "FINISH",
                                     "limit", 7LL, "cursor", cursor)
                           : th_call(&c, TIMEOUT, &r, "orders.list", "si", "status", "FINISH",
                                     "limit", 7LL);
        CHECK_EQ_INT(rr, TH_OK);
        items = rr == TH_OK ? th_get(r.result, "items") : NULL;
        got += items ? (int)items->via.array.size : 0;
        if (rr != TH_OK || !th_get_str(r.result, "next_cursor", cursor, sizeof cursor))
            break;
    }
    CHECK_EQ_INT(want, NORDERS);
    CHECK_EQ_INT(got, want);
    /* stock.list of one warehouse (deferred): its rows only. */
    CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "stock.list", "s", "warehouse", "FR-PAR"), TH_OK);
    items = th_get(r.result, "items");
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1);
    if (items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1) {
        char sku[32] = "", wh[32] = "";
        long long on_hand = -1;
        CHECK(th_get_str(&items->via.array.ptr[0], "sku", sku, sizeof sku));
        CHECK(th_get_str(&items->via.array.ptr[0], "warehouse", wh, sizeof wh));
        CHECK(th_get_int(&items->via.array.ptr[0], "on_hand", &on_hand));
        CHECK_EQ_STR(sku, "A-1");
        CHECK_EQ_STR(wh, "FR-PAR");
        CHECK_EQ_INT(on_hand, 7);
    }
    CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "stock.list", "s", "warehouse", "XX-NONE"), TH_ERRRESP);
    CHECK_EQ_STR(r.code, "not_found");
    /* A bad state is refused at once, on the loop. */
    CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "outbox.list", "s", "state", "nonsense"), TH_ERRRESP);
    CHECK_EQ_STR(r.code, "invalid_params");
    th_close(&c);
}

static void case_watching(void)
{
    struct th_conn w;
    struct th_resp r;
    CHECK_EQ_INT(th_connect(&w, D.sock), 0);
    CHECK_EQ_INT(th_call(&w, TIMEOUT, &r, "watch", ""), TH_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_report(&sb, 1);
    /* A write on the same connection raises a low-stock event around the report's answer. */
    th_pack_request(&sb, 2, "stock.move", "ssssi", "id", "mv-w1", "kind", "pick", "sku", "A-1",
                    "warehouse", "ES-MAD", "qty", 10LL);
    CHECK_EQ_INT(th_send(&w, sb.data, sb.size, TIMEOUT), 0);
    uint32_t order[4] = {0};
    int n = 0;
    while (n < 2) {
        int rr = th_recv(&w, TIMEOUT);
        if (rr != TH_MSG)
            break;
        const msgpack_object *o = &w.msg.data;
        if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3)
            continue;
        struct th_resp resp;
        CHECK_EQ_INT(th_parse_response(o, &resp), 0);
        CHECK(!resp.is_error);
        order[n++] = (uint32_t)resp.msgid;
    }
    CHECK_EQ_INT(n, 2);
    CHECK((order[0] == 1 && order[1] == 2) || (order[0] == 2 && order[1] == 1));
    msgpack_sbuffer_destroy(&sb);
    th_close(&w);
}

static void case_closed(void)
{
    for (int i = 0; i < 12; i++) {
        int fd = th_connect_fd(D.sock);
        CHECK(fd >= 0);
        if (fd < 0)
            return;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        for (uint32_t k = 1; k <= (uint32_t)(1 + i % 4); k++)
            pack_report(&sb, k);
        CHECK_EQ_INT(th_send_fd(fd, sb.data, sb.size, TIMEOUT), 0);
        close(fd); /* before any answer */
        msgpack_sbuffer_destroy(&sb);
    }
    /* Still answering, and the answers of the closed ones went nowhere. */
    struct th_conn c;
    struct th_resp r;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(
            th_call(&c, TIMEOUT, &r, "report", "ii", "from", t_now - 86400, "to", t_now + 60),
            TH_OK);
        CHECK_EQ_INT(th_call(&c, TIMEOUT, &r, "stock.get", "s", "sku", "A-1"), TH_OK);
    }
    th_close(&c);
    CHECK(th_status_ok(D.sock));
    CHECK(th_daemon_alive(&D));
}

static void case_stop(void)
{
    struct th_conn c;
    CHECK_EQ_INT(th_connect(&c, D.sock), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (uint32_t id = 41; id < 41 + NSTOP; id++)
        pack_report(&sb, id);
    th_pack_request(&sb, 40, "stock.get", "s", "sku", "A-1");
    CHECK_EQ_INT(th_send(&c, sb.data, sb.size, TIMEOUT), 0);
    msgpack_sbuffer_destroy(&sb);
    /* The stock.get's answer says the batch was read: the reports are queued, running or done.
     * Each must then be answered, with its figures or shutting_down, before the end. */
    struct th_resp resp;
    int r = th_read_response(&c, TIMEOUT, &resp);
    bool reports[NSTOP + 1] = {false};
    int got = 0, shutting = 0;
    /* Reports done already (a batch this long is handled over several loop turns, server.c's
     * per-connection budget: workers may answer the first reports in between). */
    while (r == TH_OK && resp.msgid > 40 && resp.msgid < 41 + NSTOP && !reports[resp.msgid - 40]) {
        reports[resp.msgid - 40] = true;
        got++;
        r = th_read_response(&c, TIMEOUT, &resp);
    }
    CHECK_EQ_INT(r, TH_OK);
    CHECK_EQ_INT(resp.msgid, 40);
    kill(D.pid, SIGTERM);
    for (;;) {
        r = th_read_response(&c, TIMEOUT, &resp);
        if (r != TH_OK && r != TH_ERRRESP) {
            CHECK(r == TH_EOF || r == TH_RESET);
            break;
        }
        CHECK(resp.msgid >= 41 && resp.msgid < 41 + NSTOP);
        if (resp.msgid >= 41 && resp.msgid < 41 + NSTOP) {
            CHECK(!reports[resp.msgid - 40]); /* once */
            reports[resp.msgid - 40] = true;
        }
        if (r == TH_ERRRESP) {
            CHECK_EQ_STR(resp.code, "shutting_down");
            shutting++;
        }
        got++;
    }
    CHECK_EQ_INT(got, NSTOP);
    printf("case (d): %d reports, stopped after they were read: %d answered shutting_down\n", NSTOP,
           shutting);
    th_close(&c);
    int status = th_daemon_reap(&D, TIMEOUT);
    CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_reads TALLYD\n");
        return 2;
    }
    th_setup("test_reads", 120);
    t_now = (long long)time(NULL);
    if (th_daemon_init(&D, argv[1], "reads") != 0 || th_daemon_start(&D) != 0) {
        th_daemon_cleanup(&D);
        return 1;
    }
    if (seed() != 0) {
        CHECK(!"seeding");
        th_daemon_dump_log(&D, 30);
        th_daemon_cleanup(&D);
        return check_result("test_reads");
    }
    case_out_of_order();
    case_search();
    case_watching();
    case_filtered_lists();
    case_exceptions_deferred();
    case_closed();
    case_stop();
    if (check_failures)
        th_daemon_dump_log(&D, 40);
    th_daemon_cleanup(&D);
    return check_result("test_reads");
}
