/*
 * daemon/http.c against a tiny local HTTP server (a thread on 127.0.0.1): an answer larger than
 * the request's bound (by default HTTP_MAX_ANSWER, a few MiB: what an upstream's page can
 * honestly be) fails the request with a clear error, whether the server announces its length
 * (refused before the body is read) or streams it without one; answers within the bound
 * arrive whole. And an answer's parse is bounded by its number of values (json_parse), which
 * is what cJSON's memory grows with, not by its bytes alone. And requests given up while their
 * sockets are being watched (connecting, waiting for an answer), then the whole client closed,
 * round after round, leave the loop sound: a poll handle left on a socket curl closed made
 * libuv abort (epoll_ctl EBADF) at tallyd's stop (scripts/soak.sh, 2 stops in 7).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "http.h"
#include "json.h"

static int listen_fd;
static int port;

/* Serves GET /len/N (Content-Length: N) and GET /chunk/N (no length, then close) with N
 * bytes of '{'... until the listening socket is shut down. */
static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(listen_fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char req[4096];
        size_t got = 0;
        while (got < sizeof req - 1) {
            ssize_t n = read(c, req + got, sizeof req - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            req[got] = 0;
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        req[got] = 0;
        long n = 0;
        bool with_len = strncmp(req, "GET /len/", 9) == 0;
        if (with_len)
            n = atol(req + 9);
        else if (strncmp(req, "GET /chunk/", 11) == 0)
            n = atol(req + 11);
        char head[256];
        int hl = with_len
                     ? snprintf(head, sizeof head,
                                "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n"
                                "Connection: close\r\n\r\n",
                                n)
                     : snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        if (write(c, head, (size_t)hl) != hl) {
            close(c);
            continue;
        }
        static char block[65536];
        memset(block, '7', sizeof block);
        while (n > 0) {
            size_t k = n < (long)sizeof block ? (size_t)n : sizeof block;
            ssize_t w = write(c, block, k);
            if (w <= 0)
                break; /* the client gave up: expected for the oversized ones */
            n -= w;
        }
        close(c);
    }
}

static bool finished;

static void on_done(struct http_req *r)
{
    (void)r;
    finished = true;
}

/* One GET through http.c on its own loop; fills *r. */
static void get(const char *path, size_t max_response, struct http_req *r)
{
    static char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct http *h = NULL;
    CHECK_EQ_INT(http_init(&loop, 4, NULL, &h), 0);
    memset(r, 0, sizeof *r);
    r->url = url;
    r->method = "GET";
    r->max_response = max_response;
    r->done = on_done;
    finished = false;
    CHECK_EQ_INT(http_start(h, r), 0);
    while (!finished)
        uv_run(&loop, UV_RUN_ONCE);
    http_close(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

static void expect_too_large(const char *path, size_t max_response)
{
    struct http_req r;
    get(path, max_response, &r);
    if (r.curl_code == 0)
        fprintf(stderr, "%s: accepted %zu bytes (bound %zu)\n", path, r.response_len,
                max_response ? max_response : (size_t)HTTP_MAX_ANSWER);
    CHECK(r.curl_code != 0);
    if (!strstr(r.error, "larger than"))
        fprintf(stderr, "%s: error \"%s\"\n", path, r.error);
    CHECK(strstr(r.error, "larger than") != NULL);
    CHECK(r.too_large); /* what the connectors read to fail the stream, not the link */
    CHECK(r.response_len <= (max_response ? max_response : HTTP_MAX_ANSWER));
    http_req_reset(&r);
}

static void expect_whole(const char *path, size_t max_response, size_t len)
{
    struct http_req r;
    get(path, max_response, &r);
    if (r.curl_code != 0)
        fprintf(stderr, "%s: %s\n", path, r.error);
    CHECK_EQ_INT(r.curl_code, 0);
    CHECK(!r.too_large);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.response_len, len);
    http_req_reset(&r);
}

/* An inventory page of `rows` honest rows. */
static char *inventory_page(int rows, size_t *len)
{
    size_t cap = (size_t)rows * 160 + 64, n = 0;
    char *p = malloc(cap);
    n += (size_t)snprintf(p + n, cap - n, "{\"items\":[");
    for (int i = 0; i < rows; i++)
        n += (size_t)snprintf(p + n, cap - n,
                              "%s{\"sku\":\"SKU-%06d\",\"on_hand\":%d,\"inbound\":0,"
                              "\"version\":%d,\"updated_at\":1700000000}",
                              i ? "," : "", i, i % 50, i + 1);
    n += (size_t)snprintf(p + n, cap - n, "],\"next_cursor\":null,\"version\":%d}", rows);
    *len = n;
    return p;
}

static void test_json_bound(void)
{
    /* A full inventory page (5,000 rows) parses. */
    size_t len;
    char *page = inventory_page(5000, &len);
    CHECK(len < HTTP_MAX_ANSWER);
    cJSON *doc = json_parse(page, len);
    CHECK(doc != NULL);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "items")), 5000);
    cJSON_Delete(doc);
    free(page);

    /* Tiny values packed within the byte bound: refused before cJSON allocates them. */
    size_t n = 2 * (size_t)JSON_MAX_VALUES + 1;
    char *zeros = malloc(n + 2);
    zeros[0] = '[';
    for (size_t i = 0; i < JSON_MAX_VALUES; i++) {
        zeros[1 + 2 * i] = '0';
        zeros[2 + 2 * i] = ',';
    }
    zeros[n - 1] = '0';
    zeros[n] = ']';
    CHECK(n + 1 < HTTP_MAX_ANSWER);
    CHECK(json_parse(zeros, n + 1) == NULL);
    CHECK(!json_within_bound(zeros, n + 1)); /* refused for its size, not as not-JSON */
    /* Within the bound: parsed. */
    zeros[n - 3] = ']';
    doc = json_parse(zeros, n - 2);
    CHECK(doc != NULL);
    CHECK_EQ_INT(cJSON_GetArraySize(doc), JSON_MAX_VALUES - 1);
    cJSON_Delete(doc);
    free(zeros);

    /* Commas, colons and brackets inside strings (with escaped quotes) are not values. */
    size_t sl = 3 * (size_t)JSON_MAX_VALUES;
    char *str = malloc(sl + 16);
    size_t k = 0;
    str[k++] = '[';
    str[k++] = '"';
    str[k++] = '\\';
    str[k++] = '"';
    for (size_t i = 0; i < sl; i++)
        str[k++] = ",:[{"[i % 4];
    str[k++] = '\\';
    str[k++] = '"';
    str[k++] = '"';
    str[k++] = ']';
    doc = json_parse(str, k);
    CHECK(doc != NULL);
    CHECK_EQ_INT(cJSON_GetArraySize(doc), 1);
    cJSON_Delete(doc);
    free(str);
    CHECK(json_parse(NULL, 0) == NULL);
    CHECK(json_parse("{", 1) == NULL);
    CHECK(json_within_bound("{", 1));
}

static void close_any(uv_handle_t *hd, void *arg)
{
    (void)arg;
    if (!uv_is_closing(hd))
        uv_close(hd, NULL);
}

static void on_done_count(struct http_req *r)
{
    (*(int *)r->data)++;
}

/* Requests to a port that takes connections and never answers (the kernel's backlog: nothing
 * accepts them), given up in every state, new ones started meanwhile, the client closed with
 * requests in flight; a second server answers between. The loop must never abort and must
 * end with nothing left after http_close. */
static void test_give_up(void)
{
    int mute = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(mute >= 0 && bind(mute, (struct sockaddr *)&a, sizeof a) == 0 && listen(mute, 512) == 0 &&
          getsockname(mute, (struct sockaddr *)&a, &al) == 0);
    char mute_url[64], ok_url[64];
    snprintf(mute_url, sizeof mute_url, "http://127.0.0.1:%d/stall", ntohs(a.sin_port));
    snprintf(ok_url, sizeof ok_url, "http://127.0.0.1:%d/len/10", port);
    enum { N = 12 };
    int done = 0, closed_ok = 0;
    for (int round = 0; round < 100; round++) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct http *h = NULL;
        CHECK_EQ_INT(http_init(&loop, 4, NULL, &h), 0);
        struct http_req r[N];
        memset(r, 0, sizeof r);
        for (int i = 0; i < N; i++) {
            r[i].url = i % 3 == 2 ? ok_url : mute_url;
            r[i].method = "GET";
            r[i].done = on_done_count;
            r[i].data = &done;
            r[i].timeout_ms = 60000;
            CHECK_EQ_INT(http_start(h, &r[i]), 0);
            if (i % 4 == round % 4)
                uv_run(&loop, UV_RUN_NOWAIT);
        }
        for (int k = 0; k < round % 5; k++)
            uv_run(&loop, UV_RUN_NOWAIT);
        /* give some up (curl closes their sockets), start others in their place */
        for (int i = round % 2; i < N; i += 2) {
            http_req_reset(&r[i]);
            if (i % 4 == 1)
                CHECK_EQ_INT(http_start(h, &r[i]), 0);
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_run(&loop, UV_RUN_NOWAIT);
        http_close(h);
        /* Everything is closed within a few turns: a handle left watching a socket curl closed
         * keeps the loop alive for ever (or makes libuv abort). At most 2 s. */
        for (int k = 0; k < 200 && uv_run(&loop, UV_RUN_NOWAIT); k++)
            usleep(10000);
        if (uv_loop_alive(&loop)) {
            uv_walk(&loop, close_any, NULL); /* so that the test goes on and says so */
            uv_run(&loop, UV_RUN_DEFAULT);
        } else
            closed_ok++;
        uv_loop_close(&loop);
        for (int i = 0; i < N; i++)
            http_req_reset(&r[i]);
    }
    CHECK_EQ_INT(closed_ok, 100); /* rounds whose loop had nothing left after http_close */
    close(mute);
}

int main(void)
{
    /* The server thread writes answers the client gives up on (an oversized one is closed at
     * its bound): under load the close can come before the last write, whose SIGPIPE would end
     * the test (tallyd ignores it too). */
    signal(SIGPIPE, SIG_IGN);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(listen_fd, 16) != 0 || getsockname(listen_fd, (struct sockaddr *)&a, &al) != 0) {
        perror("listen");
        return 1;
    }
    port = ntohs(a.sin_port);
    pthread_t t;
    pthread_create(&t, NULL, serve, NULL);

    /* The default bound: a few MiB, well inside the daemon's 32 MiB budget (a parsed page
     * costs several times its text). */
    CHECK(HTTP_MAX_ANSWER >= (1u << 20));
    CHECK(HTTP_MAX_ANSWER <= (8u << 20));
    char path[64];
    snprintf(path, sizeof path, "/chunk/%u", 16u << 20); /* 16 MiB: accepted before */
    expect_too_large(path, 0);
    snprintf(path, sizeof path, "/len/%u", 16u << 20);
    expect_too_large(path, 0);
    snprintf(path, sizeof path, "/chunk/%u", HTTP_MAX_ANSWER + 1);
    expect_too_large(path, 0);
    snprintf(path, sizeof path, "/len/%u", HTTP_MAX_ANSWER);
    expect_whole(path, 0, HTTP_MAX_ANSWER);
    snprintf(path, sizeof path, "/chunk/%u", HTTP_MAX_ANSWER);
    expect_whole(path, 0, HTTP_MAX_ANSWER);

    /* A request's own bound, exact at the edge. */
    expect_whole("/len/1000", 0, 1000);
    expect_whole("/chunk/0", 0, 0);
    expect_whole("/chunk/5000", 5000, 5000);
    expect_whole("/len/5000", 5000, 5000);
    expect_too_large("/chunk/5001", 5000);
    expect_too_large("/len/5001", 5000);
    expect_too_large("/chunk/200000", 5000);

    test_json_bound();
    test_give_up();

    shutdown(listen_fd, SHUT_RDWR);
    close(listen_fd);
    pthread_join(t, NULL);
    return check_result("test_http");
}
