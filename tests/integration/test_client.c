/*
 * Integration: the client library (include/tally/client.h) against a real tallyd.
 *   test_client TALLYD
 * Connect errors, hello, import, pipelined requests answered by msgid, server errors decoded
 * into codes, socket path resolution.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "codec.h"
#include "tally/client.h"

static char dir[64], sock[128];
static pid_t daemon_pid;

static void stop_daemon(void)
{
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGTERM);
        waitpid(daemon_pid, NULL, 0);
        daemon_pid = 0;
    }
}

static int start_daemon(const char *tallyd)
{
    char state[128];
    snprintf(state, sizeof state, "%s/state", dir);
    daemon_pid = fork();
    if (daemon_pid == 0) {
        execl(tallyd, tallyd, "--state-dir", state, "--socket", sock, "--log-level", "warning",
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        struct tally_client *c;
        if (tally_connect(sock, &c, NULL, 0) == 0) {
            tally_client_free(c);
            return 0;
        }
        usleep(50000);
    }
    return -1;
}

/* Packs {"kind": kind, "rows": [...]} with rows given as alternating key/value strings. */
static void pack_import(msgpack_sbuffer *sb, const char *kind, int nrows, int nfields,
                        const char *const *kv)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "kind", kind);
    mp_pack_key(&pk, "rows");
    msgpack_pack_array(&pk, (size_t)nrows);
    for (int r = 0; r < nrows; r++) {
        msgpack_pack_map(&pk, (size_t)nfields);
        for (int f = 0; f < nfields; f++)
            mp_pack_kv_str(&pk, kv[(r * nfields + f) * 2], kv[(r * nfields + f) * 2 + 1]);
    }
}

static int call_ok(struct tally_client *c, const char *method, msgpack_sbuffer *sb)
{
    struct tally_reply *rep = NULL;
    int r = tally_call(c, method, sb ? sb->data : NULL, sb ? sb->size : 0, &rep);
    int err = r ? r : rep->err;
    if (err)
        fprintf(stderr, "%s: %d %s %s\n", method, err, rep ? rep->code : "",
                rep ? rep->message : "");
    tally_reply_free(rep);
    return err;
}

static void seed(struct tally_client *c)
{
    static const char *const wh[] = {"code", "ES-MAD", "name", "Madrid", "country", "ES",
                                     "code", "PL-WAW", "name", "Warsaw", "country", "PL"};
    static const char *const cat[] = {"sku", "S-1",         "product_id", "P-1",      "title",
                                      "Mat", "price_minor", "1299",       "currency", "EUR"};
    static const char *const stk[] = {"sku", "S-1", "warehouse", "ES-MAD", "on_hand", "40"};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_import(&sb, "warehouses", 2, 3, wh);
    CHECK_EQ_INT(call_ok(c, "import", &sb), 0);
    msgpack_sbuffer_clear(&sb);
    pack_import(&sb, "catalog", 1, 5, cat);
    CHECK_EQ_INT(call_ok(c, "import", &sb), 0);
    msgpack_sbuffer_clear(&sb);
    pack_import(&sb, "stock", 1, 3, stk);
    CHECK_EQ_INT(call_ok(c, "import", &sb), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_not_running(void)
{
    struct tally_client *c = NULL;
    char err[256] = "";
    int r = tally_connect(sock, &c, err, sizeof err);
    CHECK_EQ_INT(r, TALLY_E_NOT_RUNNING);
    CHECK(c == NULL);
    CHECK(err[0] != 0);
    char longpath[300];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = 0;
    CHECK_EQ_INT(tally_connect(longpath, &c, err, sizeof err), TALLY_E_INVALID_PARAMS);
}

static void test_socket_path(void)
{
    CHECK_EQ_STR(tally_socket_path("/x/y.sock"), "/x/y.sock");
    setenv("TALLY_SOCKET", "/from/env.sock", 1);
    CHECK_EQ_STR(tally_socket_path(NULL), "/from/env.sock");
    setenv("TALLY_SOCKET", "", 1);
    CHECK_EQ_STR(tally_socket_path(NULL), TALLY_DEFAULT_SOCKET);
    unsetenv("TALLY_SOCKET");
    CHECK_EQ_STR(tally_socket_path(NULL), TALLY_DEFAULT_SOCKET);
}

static void test_hello_and_errors(struct tally_client *c)
{
    struct tally_reply *rep = NULL;
    CHECK_EQ_INT(tally_call(c, "hello", NULL, 0, &rep), 0);
    CHECK_EQ_INT(rep->err, 0);
    const msgpack_object *role = tally_obj_get(&rep->result, "role");
    CHECK(role && mp_str_eq(role, "writer"));
    tally_reply_free(rep);

    CHECK_EQ_INT(tally_call(c, "no.such.method", NULL, 0, &rep), 0);
    CHECK_EQ_INT(rep->err, TALLY_E_UNKNOWN_METHOD);
    CHECK_EQ_STR(rep->code, "unknown_method");
    CHECK(rep->result.type == MSGPACK_OBJECT_NIL);
    tally_reply_free(rep);

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_kv_str(&pk, "sku", "NOPE");
    CHECK_EQ_INT(tally_call(c, "stock.get", sb.data, sb.size, &rep), 0);
    CHECK_EQ_INT(rep->err, TALLY_E_NOT_FOUND);
    CHECK(strstr(rep->message, "NOPE") != NULL);
    tally_reply_free(rep);
    msgpack_sbuffer_destroy(&sb);
}

/* 200 requests sent before any answer is read; every answer matched by msgid. */
static void test_pipelining(struct tally_client *c)
{
    enum { N = 200 };
    int seen[N + 1] = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_kv_str(&pk, "sku", "S-1");
    for (uint32_t id = 1; id <= N; id++)
        CHECK_EQ_INT(tally_send(c, id, id % 2 ? "stock.get" : "status", sb.data, sb.size), 0);
    for (int i = 0; i < N; i++) {
        struct tally_reply *rep = NULL;
        if (tally_recv(c, &rep) != 0) {
            CHECK(!"tally_recv failed");
            break;
        }
        CHECK(rep->msgid >= 1 && rep->msgid <= N);
        if (rep->msgid >= 1 && rep->msgid <= N) {
            seen[rep->msgid]++;
            const msgpack_object *k =
                tally_obj_get(&rep->result, rep->msgid % 2 ? "sku" : "station");
            CHECK(k != NULL);
        }
        tally_reply_free(rep);
    }
    for (int id = 1; id <= N; id++)
        CHECK_EQ_INT(seen[id], 1);
    msgpack_sbuffer_destroy(&sb);
}

static int64_t on_hand(struct tally_client *c, const char *wh)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_kv_str(&pk, "sku", "S-1");
    struct tally_reply *rep = NULL;
    int64_t v = -1;
    if (tally_call(c, "stock.get", sb.data, sb.size, &rep) == 0 && rep->err == 0) {
        const msgpack_object *ws = tally_obj_get(&rep->result, "warehouses");
        for (uint32_t i = 0; ws && i < ws->via.array.size; i++)
            if (mp_str_eq(tally_obj_get(&ws->via.array.ptr[i], "warehouse"), wh))
                v = tally_obj_get(&ws->via.array.ptr[i], "on_hand")->via.i64;
    }
    tally_reply_free(rep);
    msgpack_sbuffer_destroy(&sb);
    return v;
}

static void test_move_and_restart(struct tally_client **cp, const char *tallyd)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mp_pack_kv_str(&pk, "id", "lib-1");
    mp_pack_kv_str(&pk, "kind", "pick");
    mp_pack_kv_str(&pk, "sku", "S-1");
    mp_pack_kv_str(&pk, "warehouse", "ES-MAD");
    mp_pack_kv_int(&pk, "qty", 15);
    CHECK_EQ_INT(call_ok(*cp, "stock.move", &sb), 0);
    CHECK_EQ_INT(on_hand(*cp, "ES-MAD"), 25);

    tally_client_free(*cp);
    stop_daemon();
    CHECK_EQ_INT(start_daemon(tallyd), 0);
    CHECK_EQ_INT(tally_connect(sock, cp, NULL, 0), 0);
    CHECK_EQ_INT(on_hand(*cp, "ES-MAD"), 25);
    /* The same id after a restart is still a duplicate, not a second pick. */
    struct tally_reply *rep = NULL;
    CHECK_EQ_INT(tally_call(*cp, "stock.move", sb.data, sb.size, &rep), 0);
    CHECK_EQ_INT(rep->err, 0);
    const msgpack_object *dup = tally_obj_get(&rep->result, "duplicate");
    CHECK(dup && dup->type == MSGPACK_OBJECT_BOOLEAN && dup->via.boolean);
    tally_reply_free(rep);
    CHECK_EQ_INT(on_hand(*cp, "ES-MAD"), 25);
    msgpack_sbuffer_destroy(&sb);
}

/*
 * A watching connection that also calls: an event that arrives while tally_call waits for its
 * response is kept for tally_recv_notification, not lost.
 */
static void test_watch_and_call(void)
{
    struct tally_client *c = NULL;
    struct tally_reply *rep = NULL;
    CHECK_EQ_INT(tally_connect(sock, &c, NULL, 0), 0);
    if (!c)
        return;
    CHECK_EQ_INT(call_ok(c, "watch", NULL), 0);
    /* Raising the threshold above what is available makes the row low: a low_stock event,
     * sent after this call's response ... */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mp_pack_kv_str(&pk, "sku", "S-1");
    mp_pack_kv_str(&pk, "warehouse", "ES-MAD");
    mp_pack_kv_int(&pk, "threshold", 1000);
    CHECK_EQ_INT(call_ok(c, "stock.set", &sb), 0);
    msgpack_sbuffer_destroy(&sb);
    /* ... so the next call reads it before its own response. */
    CHECK_EQ_INT(call_ok(c, "hello", NULL), 0);
    CHECK_EQ_INT(tally_recv_notification(c, 2000, &rep), 0);
    if (rep) {
        CHECK_EQ_STR(rep->method, "event");
        const msgpack_object *type = tally_obj_get(&rep->result, "type");
        const msgpack_object *sku = tally_obj_get(&rep->result, "sku");
        CHECK(type && mp_str_eq(type, "low_stock"));
        CHECK(sku && mp_str_eq(sku, "S-1"));
    }
    tally_reply_free(rep);
    rep = NULL;
    /* Kept once: nothing more is pending. */
    CHECK_EQ_INT(tally_recv_notification(c, 200, &rep), TALLY_E_TIMEOUT);
    tally_reply_free(rep);
    tally_client_free(c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_client TALLYD\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "/tmp/tally-client.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(sock, sizeof sock, "%s/tally.sock", dir);
    test_socket_path();
    test_not_running();
    if (start_daemon(argv[1]) != 0) {
        fprintf(stderr, "tallyd did not start\n");
        return 1;
    }
    struct tally_client *c = NULL;
    CHECK_EQ_INT(tally_connect(sock, &c, NULL, 0), 0);
    if (c) {
        seed(c);
        test_hello_and_errors(c);
        test_pipelining(c);
        test_move_and_restart(&c, argv[1]);
        test_watch_and_call();
    }
    tally_client_free(c);
    stop_daemon();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_result("test_client");
}
