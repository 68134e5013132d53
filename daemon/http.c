#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "log.h"

struct http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int running;
    int closing;
    char *ca_file;
};

/* One per socket curl watches. */
struct http_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http *h;
};

static void check_done(struct http *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        struct http_req *req = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req);
        req->curl_code = (int)msg->data.result;
        if (msg->data.result == CURLE_OK)
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &req->status);
        else if (req->too_large || msg->data.result == CURLE_FILESIZE_EXCEEDED) {
            /* curl's own message ("Failure writing output") would hide why */
            req->too_large = 1;
            snprintf(req->error, sizeof req->error, "answer larger than %zu bytes",
                     req->max_response);
        } else if (!req->error[0])
            snprintf(req->error, sizeof req->error, "%s", curl_easy_strerror(msg->data.result));
        curl_multi_remove_handle(h->multi, easy);
        h->running--;
        req->done(req);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct http_sock *s = p->data;
    int flags = 0, still;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    struct http *h = s->h;
    curl_multi_socket_action(h->multi, s->fd, flags, &still);
    check_done(h);
}

static void on_timer(uv_timer_t *t)
{
    struct http *h = t->data;
    int still;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    check_done(h);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http *h = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void on_sock_closed(uv_handle_t *hd)
{
    free(hd->data);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http *h = userp;
    struct http_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(h->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

int http_init(uv_loop_t *loop, long max_per_host, const char *ca_file, struct http **out)
{
    struct http *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi || (ca_file && !(h->ca_file = strdup(ca_file)))) {
        curl_multi_cleanup(h->multi);
        free(h);
        return -1;
    }
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_per_host);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, max_per_host * 8);
    *out = h;
    return 0;
}

static void on_timer_closed(uv_handle_t *hd)
{
    struct http *h = hd->data;
    free(h->ca_file);
    free(h);
}

void http_close(struct http *h)
{
    if (!h)
        return;
    h->closing = 1;
    /* curl_multi_cleanup closes its sockets through socket_cb(REMOVE). */
    curl_multi_cleanup(h->multi);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

int http_running(const struct http *h)
{
    return h->running;
}

static size_t on_body(char *p, size_t size, size_t n, void *userp)
{
    struct http_req *r = userp;
    size_t len = size * n;
    if (len > r->max_response - r->response_len) {
        r->too_large = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR; check_done says why */
    }
    if (r->response_len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 16384;
        while (cap < r->response_len + len + 1)
            cap *= 2;
        if (cap > r->max_response + 1) /* never more than the bound, doubling or not */
            cap = r->max_response + 1;
        char *b = realloc(r->response, cap);
        if (!b)
            return 0;
        r->response = b;
        r->cap = cap;
    }
    memcpy(r->response + r->response_len, p, len);
    r->response_len += len;
    r->response[r->response_len] = 0;
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *userp)
{
    struct http_req *r = userp;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char buf[32];
        size_t k = len - 12 < sizeof buf - 1 ? len - 12 : sizeof buf - 1;
        memcpy(buf, p + 12, k);
        buf[k] = 0;
        char *end;
        long v = strtol(buf, &end, 10);
        if (end != buf && v >= 0 && v <= 86400)
            r->retry_after_s = v;
    }
    if (len > 5 && strncasecmp(p, "Date:", 5) == 0) {
        char buf[64];
        size_t k = len - 5 < sizeof buf - 1 ? len - 5 : sizeof buf - 1;
        memcpy(buf, p + 5, k);
        buf[k] = 0;
        time_t t = curl_getdate(buf, NULL); /* RFC 7231 IMF-fixdate and the obsolete forms */
        r->date = t > 0 ? (int64_t)t : 0;
    }
    return len;
}

void http_req_reset(struct http_req *req)
{
    if (req->easy)
        curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    free(req->response);
    req->easy = NULL;
    req->headers = NULL;
    req->response = NULL;
    req->response_len = req->cap = 0;
}

int http_start(struct http *h, struct http_req *r)
{
    if (h->closing)
        return -1;
    http_req_reset(r);
    r->curl_code = 0;
    r->status = 0;
    r->retry_after_s = -1;
    r->date = 0;
    r->error[0] = 0;
    r->http = h;
    r->too_large = 0;
    if (!r->max_response)
        r->max_response = HTTP_MAX_ANSWER;
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    r->easy = e;
    struct curl_slist *hdr = NULL;
    char line[1200];
    if (r->content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", r->content_type);
        hdr = curl_slist_append(hdr, line);
    }
    if (r->auth_bearer) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", r->auth_bearer);
        hdr = curl_slist_append(hdr, line);
        memset(line, 0, sizeof line); /* the token does not linger on the stack */
    }
    for (const char *const *x = r->extra_headers; x && *x; x++)
        hdr = curl_slist_append(hdr, *x);
    hdr = curl_slist_append(hdr, "Expect:"); /* no 100-continue round trip */
    r->headers = hdr;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (r->fresh_connect)
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     r->connect_timeout_ms ? r->connect_timeout_ms : 5000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms ? r->timeout_ms : 30000L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, r->stall_s ? r->stall_s : 10L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    /* An announced length over the bound is refused before the body is read; a compressed or
     * unannounced body is bounded as it arrives (on_body counts the decoded bytes). */
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_response);
    if (h->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    if (r->method && strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, r->body ? r->body : "");
    }
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        http_req_reset(r);
        return -1;
    }
    h->running++;
    return 0;
}
