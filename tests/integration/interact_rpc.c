/*
 * The "watch on a writing connection" step of the randomized interaction test
 * (test_interactions.sh), speaking the protocol directly (harness.c, not the client library):
 *
 *   interact_rpc SOCK MOVE...      MOVE = ID:KIND:SKU:WAREHOUSE:QTY[:TO]
 *
 * On ONE connection it sends, pipelined in a single write: hello, watch, a status, then one
 * stock.move per MOVE (with its id), then another status. It reads until every request has
 * its response (and 300 ms more of notifications), and checks each message:
 *
 *   - a response [1, msgid, error, result] is well-formed (exactly one of error/result nil,
 *     error a map with a string code), its msgid is one that was sent and not answered yet,
 *     and its result has the shape of the method asked (hello: protocol 1; watch: watching
 *     true; status: station; stock.move: the same id, a bool duplicate, a movements array);
 *     an `internal` error is a violation too (a write whose outcome the client cannot know);
 *   - a notification is [2, "event", [{type: str, at: int, ...}]];
 *   - nothing else arrives, and the connection is not closed before every answer.
 *
 * Prints one line per move: "ACK ID DUP" (DUP 0 or 1) or "ERR ID CODE", then "EVENTS N", and
 * "VIOLATION text" for each violation. Exit status 0 when there was none, 1 otherwise, 2 on
 * usage errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAXREQ 64
#define TIMEOUT_MS 20000

enum rkind { R_HELLO, R_WATCH, R_STATUS, R_MOVE };

struct req {
    enum rkind kind;
    char id[80];
    bool answered;
};

static struct req reqs[MAXREQ];
static int nreq, violations;

static void violation(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("VIOLATION ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    violations++;
}

static bool is_str(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_STR;
}

static void check_result(struct req *q, uint32_t msgid, const msgpack_object *res)
{
    long long v;
    bool b;
    char s[128];
    if (!res || res->type != MSGPACK_OBJECT_MAP) {
        violation("msgid %u: result is not a map", msgid);
        return;
    }
    switch (q->kind) {
    case R_HELLO:
        if (!th_get_int(res, "protocol", &v) || v != 1)
            violation("msgid %u (hello): no protocol 1 in the result", msgid);
        break;
    case R_WATCH:
        if (!th_get_bool(res, "watching", &b) || !b)
            violation("msgid %u (watch): result without watching: true", msgid);
        break;
    case R_STATUS:
        if (!is_str(th_get(res, "station")) || !th_get(res, "outbox"))
            violation("msgid %u (status): result without station/outbox", msgid);
        break;
    case R_MOVE: {
        const msgpack_object *mv = th_get(res, "movements");
        if (!th_get_str(res, "id", s, sizeof s) || strcmp(s, q->id) != 0)
            violation("msgid %u (stock.move %s): result for id '%s'", msgid, q->id,
                      th_get_str(res, "id", s, sizeof s) ? s : "(none)");
        else if (!th_get_bool(res, "duplicate", &b))
            violation("msgid %u (stock.move %s): no bool duplicate", msgid, q->id);
        else if (!mv || mv->type != MSGPACK_OBJECT_ARRAY)
            violation("msgid %u (stock.move %s): no movements array", msgid, q->id);
        else
            printf("ACK %s %d\n", q->id, b ? 1 : 0);
        break;
    }
    }
}

static void check_notification(const msgpack_object *o)
{
    const msgpack_object *a = o->via.array.ptr;
    long long at;
    if (o->via.array.size != 3 || !th_obj_str_eq(&a[1], "event") ||
        a[2].type != MSGPACK_OBJECT_ARRAY || a[2].via.array.size != 1 ||
        a[2].via.array.ptr[0].type != MSGPACK_OBJECT_MAP ||
        !is_str(th_get(&a[2].via.array.ptr[0], "type")) ||
        !th_get_int(&a[2].via.array.ptr[0], "at", &at))
        violation("a notification that is not [2, \"event\", [{type, at, ...}]]");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: interact_rpc SOCK ID:KIND:SKU:WAREHOUSE:QTY[:TO]...\n");
        return 2;
    }
    th_setup("interact_rpc", 60);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    reqs[nreq++].kind = R_HELLO;
    th_pack_request(&sb, 1, "hello", "is", "version", 1LL, "client", "interactions");
    reqs[nreq++].kind = R_WATCH;
    th_pack_request(&sb, 2, "watch", "");
    reqs[nreq++].kind = R_STATUS;
    th_pack_request(&sb, 3, "status", "");
    for (int i = 2; i < argc && nreq < MAXREQ - 1; i++) {
        char buf[512], *f[6] = {0};
        int nf = 0;
        snprintf(buf, sizeof buf, "%s", argv[i]);
        for (char *p = buf, *tok; nf < 6 && (tok = strsep(&p, ":")) != NULL;)
            f[nf++] = tok;
        if (nf < 5) {
            fprintf(stderr, "interact_rpc: bad move '%s'\n", argv[i]);
            return 2;
        }
        struct req *q = &reqs[nreq];
        q->kind = R_MOVE;
        snprintf(q->id, sizeof q->id, "%s", f[0]);
        long long qty = atoll(f[4]);
        uint32_t msgid = (uint32_t)(nreq + 1);
        if (nf == 6)
            th_pack_request(&sb, msgid, "stock.move", "sssssis", "id", f[0], "kind", f[1], "sku",
                            f[2], "warehouse", f[3], "reason", "interaction test", "qty", qty, "to",
                            f[5]);
        else
            th_pack_request(&sb, msgid, "stock.move", "sssssi", "id", f[0], "kind", f[1], "sku",
                            f[2], "warehouse", f[3], "reason", "interaction test", "qty", qty);
        nreq++;
    }
    reqs[nreq].kind = R_STATUS;
    th_pack_request(&sb, (uint32_t)(nreq + 1), "status", "");
    nreq++;

    struct th_conn c;
    if (th_connect(&c, argv[1]) != 0) {
        printf("VIOLATION cannot connect to %s\n", argv[1]);
        return 1;
    }
    if (th_send(&c, sb.data, sb.size, TIMEOUT_MS) != 0)
        violation("could not send the pipelined requests");
    msgpack_sbuffer_destroy(&sb);

    int answered = 0, events = 0;
    int64_t deadline = th_now_ms() + TIMEOUT_MS, drain_until = 0;
    while (violations == 0) {
        int64_t now = th_now_ms();
        if (answered == nreq && drain_until == 0)
            drain_until = now + 300;
        int64_t until = drain_until ? drain_until : deadline;
        if (now >= until)
            break;
        int r = th_recv(&c, (int)(until - now));
        if (r == TH_TIMEOUT)
            break;
        if (r != TH_MSG) {
            if (answered < nreq)
                violation("connection %s with %d of %d requests unanswered", th_outcome(r),
                          nreq - answered, nreq);
            break;
        }
        const msgpack_object *o = &c.msg.data;
        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1 ||
            o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            violation("a message that is not [type, ...]");
            break;
        }
        uint64_t type = o->via.array.ptr[0].via.u64;
        if (type == 2) {
            check_notification(o);
            events++;
            continue;
        }
        struct th_resp resp;
        if (type != 1 || th_parse_response(o, &resp) != 0) {
            violation("a malformed response (type %llu): %s", (unsigned long long)type,
                      type == 1 ? resp.code : "not a response or notification");
            break;
        }
        if (resp.msgid < 1 || resp.msgid > (uint64_t)nreq) {
            violation("a response for msgid %llu, never sent", (unsigned long long)resp.msgid);
            continue;
        }
        struct req *q = &reqs[resp.msgid - 1];
        if (q->answered) {
            violation("msgid %llu answered twice", (unsigned long long)resp.msgid);
            continue;
        }
        q->answered = true;
        answered++;
        if (resp.is_error) {
            if (strcmp(resp.code, "internal") == 0 || q->kind != R_MOVE)
                violation("msgid %llu answered with error %s: %s", (unsigned long long)resp.msgid,
                          resp.code, resp.message);
            if (q->kind == R_MOVE)
                printf("ERR %s %s\n", q->id, resp.code);
        } else {
            check_result(q, (uint32_t)resp.msgid, resp.result);
        }
    }
    if (answered < nreq && violations == 0)
        violation("%d of %d requests unanswered after %d ms", nreq - answered, nreq, TIMEOUT_MS);
    printf("EVENTS %d\n", events);
    th_close(&c);
    return violations ? 1 : 0;
}
