#include "http.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "log.h"

struct http_sock;

struct http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int running;
    int closing;
    char *ca_file;
    /* The watched socket of each fd (NULL: none), so that a socket curl closes is forgotten
     * by the loop first (on_close_socket). */
    struct http_sock **by_fd;
    size_t nby_fd;
    struct http_sock *all; /* every http_sock not freed yet (next/prev) */
};

/*
 * One per socket curl watches. Its poll handle is closed (uv_close, while the fd is still
 * open: libuv takes it out of epoll then) when curl closes the socket or says REMOVE,
 * whichever comes first: libcurl may close a socket before its REMOVE, or without one (a
 * connection closed by curl_multi_cleanup or because the cache is full), and a poll handle
 * left on a closed fd makes libuv abort (epoll_ctl EBADF) at its next change, or, once the
 * number is reused, take the new socket out of epoll. curl keeps the struct as the fd's
 * socketp until REMOVE (or until the same fd is announced again): it is freed once both the
 * handle is closed and curl no longer refers to it.
 */
struct http_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http *h;   /* NULL once http_close detached it */
    bool dead;        /* poll handle closed (or closing): curl closed fd or said REMOVE */
    bool handle_open; /* the close callback has not run yet */
    bool curl_ref;    /* curl holds it as the fd's socketp */
    struct http_sock *next, *prev;
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

static void sock_maybe_free(struct http_sock *s)
{
    if (s->handle_open || s->curl_ref)
        return;
    if (s->h) {
        if (s->prev)
            s->prev->next = s->next;
        else
            s->h->all = s->next;
        if (s->next)
            s->next->prev = s->prev;
    }
    free(s);
}

static void on_sock_closed(uv_handle_t *hd)
{
    struct http_sock *s = hd->data;
    s->handle_open = false;
    sock_maybe_free(s);
}

/* Stops watching s's fd for good, while the fd is still open. */
static void sock_kill(struct http_sock *s)
{
    if (s->dead)
        return;
    s->dead = true;
    if (s->h && (size_t)s->fd < s->h->nby_fd && s->h->by_fd[s->fd] == s)
        s->h->by_fd[s->fd] = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* CURLOPT_CLOSESOCKETFUNCTION: the loop forgets the fd before it is closed. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
    struct http *h = clientp;
    if (fd >= 0 && (size_t)fd < h->nby_fd && h->by_fd[fd])
        sock_kill(h->by_fd[fd]);
    return close(fd);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http *h = userp;
    struct http_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(h->multi, fd, NULL);
            s->curl_ref = false;
            sock_kill(s);
            sock_maybe_free(s);
        }
        return 0;
    }
    if (s && s->dead) {
        /* The fd was closed under it (no REMOVE came) and its number is curl's again. */
        s->curl_ref = false;
        sock_maybe_free(s);
        s = NULL;
    }
    if (!s) {
        if (fd < 0)
            return -1;
        if ((size_t)fd >= h->nby_fd) {
            size_t n = h->nby_fd ? h->nby_fd : 64;
            while (n <= (size_t)fd)
                n *= 2;
            struct http_sock **v = realloc(h->by_fd, n * sizeof *v);
            if (!v)
                return -1;
            memset(v + h->nby_fd, 0, (n - h->nby_fd) * sizeof *v);
            h->by_fd = v;
            h->nby_fd = n;
        }
        if (h->by_fd[fd]) /* a socket of this number curl never said REMOVE of */
            sock_kill(h->by_fd[fd]);
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
        s->handle_open = s->curl_ref = true;
        s->next = h->all;
        if (h->all)
            h->all->prev = s;
        h->all = s;
        h->by_fd[fd] = s;
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
    free(h->by_fd);
    free(h->ca_file);
    free(h);
}

void http_close(struct http *h)
{
    if (!h)
        return;
    h->closing = 1;
    /* curl_multi_cleanup closes its sockets (on_close_socket) and says REMOVE of most. */
    curl_multi_cleanup(h->multi);
    /* Whatever curl still referred to: nothing refers to it now. */
    struct http_sock *s = h->all, *next;
    h->all = NULL;
    for (; s; s = next) {
        next = s->next;
        s->h = NULL;
        s->curl_ref = false;
        sock_kill(s);
        sock_maybe_free(s);
    }
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

void http_req_drop_response(struct http_req *req)
{
    free(req->response);
    req->response = NULL;
    req->response_len = req->cap = 0;
}

void http_req_reset(struct http_req *req)
{
    if (req->easy)
        curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    req->easy = NULL;
    req->headers = NULL;
    http_req_drop_response(req);
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
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
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
