/*
 * HTTP on the daemon's loop: libcurl's multi interface driven by libuv (uv_poll per socket,
 * one uv_timer), the canonical multi-uv arrangement. Nothing here blocks: a request is
 * started, and its completion callback runs on the loop when curl reports it done.
 *
 * Connections are reused (the multi handle's cache); each request has a connect timeout, a
 * total timeout and a stall guard (a transfer slower than 1 byte/s for `stall_s` is aborted).
 * TLS peer and host verification are always on; `ca_file` may name the CA bundle.
 */
#ifndef TALLY_HTTP_H
#define TALLY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * The largest answer body a request accepts unless it sets its own max_response. An honest
 * answer is one page: a warehouse's inventory page is 5,000 rows of at most 512 bytes
 * (conn_wms.c: 2.5 MiB), a marketplace page 50 orders or 100 products. The daemon's memory
 * budget is 32 MiB (DESIGN.md) and a page parsed by cJSON costs several times its text, so a
 * larger answer is refused (the call fails with "answer larger than ... bytes"), never
 * buffered and parsed whole.
 */
#define HTTP_MAX_ANSWER (4u << 20)

struct http;
struct http_req;

typedef void (*http_done_fn)(struct http_req *req);

struct http_req {
    /* set by the caller before http_start; the strings must live until done */
    const char *url;
    const char *method;       /* "GET" or "POST" */
    const char *content_type; /* for POST bodies; NULL for none */
    const char *auth_bearer;  /* secret: never logged; NULL for none */
    /* More request headers, "Name: value" lines, NULL-terminated; NULL for none. They may
     * hold secrets (Goodcang's app-token): never logged. */
    const char *const *extra_headers;
    const char *body; /* POST body (copied by curl); NULL for none */
    size_t body_len;
    long connect_timeout_ms; /* default 5000 */
    long timeout_ms;         /* default 30000 */
    long stall_s;            /* default 10 */
    size_t max_response;     /* default HTTP_MAX_ANSWER; larger answers fail */
    bool fresh_connect;      /* not idempotent: on a new connection, so that libcurl never sends
                              * it again by itself when a reused connection drops unanswered */
    http_done_fn done;
    void *data; /* the caller's */

    /* results, valid in done() */
    int curl_code;      /* CURLE_OK when an HTTP answer arrived */
    long status;        /* HTTP status, 0 when none */
    long retry_after_s; /* from Retry-After (seconds form), -1 when absent */
    int64_t date;       /* the answer's Date header (epoch seconds), 0 when absent or unreadable */
    char error[256];    /* curl's message when curl_code != CURLE_OK */
    char *response;     /* NUL-terminated body (owned by the request until http_req_reset) */
    size_t response_len;

    /* private */
    void *easy;
    void *headers;
    struct http *http;
    size_t cap;
    /* The answer outgrew max_response (announced or as it arrived): the request failed. The
     * same request would get the same answer, so a read should not be retried as if the link
     * had failed (conn_wms.c, conn_aliexpress.c). */
    int too_large;
};

/* Creates the HTTP client on `loop`; max_per_host bounds parallel connections per host. */
int http_init(uv_loop_t *loop, long max_per_host, const char *ca_file, struct http **out);
/* Aborts running requests (their done() is not called) and frees once handles are closed. */
void http_close(struct http *h);

/* Starts a request. Returns 0, or -1 when it could not be started (done() is not called). */
int http_start(struct http *h, struct http_req *req);

/* Frees the response buffer and private state, so the request can be reused. */
void http_req_reset(struct http_req *req);
/* Frees the response buffer alone (a finished request's answer, read into something else);
 * touches nothing of libcurl's, so any one thread that owns the request may call it. */
void http_req_drop_response(struct http_req *req);

/* Requests running now. */
int http_running(const struct http *h);

#endif
