#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "control.h"
#include "faults.h"
#include "marketplace.h"
#include "state.h"
#include "stats.h"
#include "warehouse.h"

/* Per-connection limits: a GET /sync with its parameters in the query string needs more than
 * libmicrohttpd's default 32 KiB of connection memory. */
#define CONNECTION_MEMORY (256 * 1024)
#define CONNECTION_LIMIT 4096
#define IDLE_TIMEOUT_S 600
#define WAIT_STEP_MS 20

struct http_server {
    struct MHD_Daemon *d;
    struct sim *s;
    uint16_t port;
};

/* What libmicrohttpd keeps for one request between its calls (con_cls). */
struct upload {
    char *body;
    size_t len, cap;
    bool too_large;
};

/* --- http_resp ---------------------------------------------------------------------------- */

void http_resp_init(struct http_resp *r)
{
    memset(r, 0, sizeof(*r));
    jb_init(&r->body, HTTP_MAX_RESPONSE);
    r->status = 200;
    r->content_type = "application/json";
    r->retry_after = -1;
}

void http_resp_free(struct http_resp *r)
{
    jb_free(&r->body);
}

void http_resp_error(struct http_resp *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->status = status;
    r->content_type = "application/json";
    jb_reset(&r->body);
    jb_obj(&r->body);
    jb_kv_obj(&r->body, "error");
    jb_kv_str(&r->body, "code", code);
    jb_kv_str(&r->body, "message", msg);
    jb_obj_end(&r->body);
    jb_obj_end(&r->body);
}

/* --- connection helpers ------------------------------------------------------------------- */

static int conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* Whether the client has closed its side (gave up waiting). */
static bool client_gone(struct MHD_Connection *c)
{
    int fd = conn_fd(c);
    if (fd < 0)
        return false;
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
        return true;
    char b;
    return (p.revents & POLLIN) && recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits ms (forever when ms <= 0) in short steps. Returns false when the simulator is stopping
 * or, if c is given, the client went away. */
static bool wait_ms(struct sim *s, struct MHD_Connection *c, int64_t ms)
{
    for (int64_t waited = 0; ms <= 0 || waited < ms; waited += WAIT_STEP_MS) {
        if (atomic_load(&s->stopping) || (c && client_gone(c)))
            return false;
        int64_t step = ms > 0 && ms - waited < WAIT_STEP_MS ? ms - waited : WAIT_STEP_MS;
        sleep_ms(step);
    }
    return !atomic_load(&s->stopping);
}

/* Resets the connection now (TCP RST): connect() with AF_UNSPEC makes Linux disconnect a
 * connected TCP socket with a reset. The descriptor stays valid for libmicrohttpd to close. */
static void reset_now(struct MHD_Connection *c)
{
    int fd = conn_fd(c);
    struct sockaddr sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNSPEC;
    if (fd >= 0)
        connect(fd, &sa, sizeof(sa));
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct params *p = cls;
    params_add(p, key, strlen(key), value, value ? strlen(value) : 0);
    return MHD_YES;
}

/* --- sending ------------------------------------------------------------------------------ */

static void count_status(struct sim *s, int status)
{
    char key[16];
    snprintf(key, sizeof(key), "%d", status);
    stats_count(s->stats, SG_STATUS, key);
}

/* Date: the simulated clock (the clock every time in the answers is in), as IMF-fixdate. A
 * client learns the gateway's clock from it (the marketplace's time_stamp has no documented
 * zone); libmicrohttpd adds none of its own when the response has one. */
static void add_date(struct sim *s, struct MHD_Response *r)
{
    time_t t = (time_t)sim_now(s);
    struct tm tm;
    char v[64];
    if (gmtime_r(&t, &tm) && strftime(v, sizeof v, "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0)
        MHD_add_response_header(r, MHD_HTTP_HEADER_DATE, v);
}

static void add_headers(struct sim *s, struct MHD_Response *r, const struct http_resp *resp)
{
    add_date(s, r);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    if (resp->retry_after >= 0) {
        char v[16];
        snprintf(v, sizeof(v), "%d", resp->retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (resp->www_authenticate)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, resp->www_authenticate);
}

static enum MHD_Result send_resp(struct sim *s, struct MHD_Connection *c, struct http_resp *resp)
{
    size_t len = 0;
    char *buf = jb_steal(&resp->body, &len);
    struct MHD_Response *r =
        buf ? MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE)
            : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(buf);
        return MHD_NO;
    }
    add_headers(s, r, resp);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    count_status(s, resp->status);
    return rc;
}

struct truncated {
    char *data;
    size_t cut;
};

static ssize_t read_truncated(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct truncated *t = cls;
    if (pos >= t->cut)
        return MHD_CONTENT_READER_END_WITH_ERROR; /* closes the connection mid-body */
    size_t n = t->cut - (size_t)pos < max ? t->cut - (size_t)pos : max;
    memcpy(buf, t->data + pos, n);
    return (ssize_t)n;
}

static void free_truncated(void *cls)
{
    struct truncated *t = cls;
    free(t->data);
    free(t);
}

/* Announces the whole body in Content-Length, sends `cut` bytes of it, then closes. */
static enum MHD_Result send_truncated(struct sim *s, struct MHD_Connection *c,
                                      struct http_resp *resp, int64_t cut)
{
    struct truncated *t = calloc(1, sizeof(*t));
    size_t len = 0;
    t->data = t ? jb_steal(&resp->body, &len) : NULL;
    if (!t || !t->data || len == 0) {
        if (t)
            free_truncated(t);
        return MHD_NO;
    }
    t->cut = cut >= 0 && (size_t)cut < len ? (size_t)cut : len / 2;
    struct MHD_Response *r =
        MHD_create_response_from_callback(len, 16 * 1024, read_truncated, t, free_truncated);
    if (!r) {
        free_truncated(t);
        return MHD_NO;
    }
    add_headers(s, r, resp);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    stats_count(s->stats, SG_STATUS, "truncated");
    return rc;
}

/* --- upstream requests: faults between the socket and the handler ------------------------- */

struct upstream {
    const char *target; /* "mp" or "wh:CODE" */
    const char *call;
    const struct wh_route *route; /* NULL for the marketplace */
};

static void run_handler(struct sim *s, const struct upstream *u, const struct http_req *rq,
                        struct http_resp *resp)
{
    if (u->route)
        wh_handle(s, u->route, rq, resp);
    else
        mp_handle(s, rq, resp);
}

static void fault_response(struct sim *s, const struct upstream *u, const struct fault_action *a,
                           struct http_resp *resp)
{
    if (u->route)
        wh_fault_response(u->route, a, resp);
    else
        mp_fault_response(s, a, resp);
}

static enum MHD_Result closed(struct sim *s)
{
    stats_count(s->stats, SG_STATUS, "closed");
    return MHD_NO;
}

static enum MHD_Result serve_upstream(struct sim *s, struct MHD_Connection *c,
                                      const struct upstream *u, const struct http_req *rq)
{
    char key[160];
    snprintf(key, sizeof(key), "%s:%s", u->target, u->call[0] ? u->call : "unknown");
    stats_count(s->stats, SG_REQUESTS, key);

    struct fault_action a;
    faults_decide(s->faults, u->target, u->call, &a);
    if (a.id) {
        snprintf(key, sizeof(key), "%d:%s", a.id, fault_kind_name(a.kind));
        stats_count(s->stats, SG_FAULTS, key);
    } else if (a.latency_ms > 0) {
        stats_count(s->stats, SG_FAULTS, "latency");
    }
    if (a.latency_ms > 0 && !wait_ms(s, NULL, a.latency_ms))
        return closed(s);

    struct http_resp resp;
    http_resp_init(&resp);
    enum MHD_Result rc;
    switch (a.kind) {
    case FK_LATENCY:
        run_handler(s, u, rq, &resp);
        rc = send_resp(s, c, &resp);
        break;
    case FK_OVERSIZED:
        run_handler(s, u, rq, &resp);
        for (int64_t left = a.pad_bytes; left > 0;) {
            char spaces[4096];
            memset(spaces, ' ', sizeof spaces);
            size_t k = left < (int64_t)sizeof spaces ? (size_t)left : sizeof spaces;
            jb_append(&resp.body, spaces, k);
            left -= (int64_t)k;
        }
        rc = send_resp(s, c, &resp);
        break;
    case FK_STATUS:
    case FK_API_ERROR:
    case FK_MALFORMED:
        if (a.apply)
            run_handler(s, u, rq, &resp);
        http_resp_free(&resp);
        http_resp_init(&resp);
        if (a.kind == FK_MALFORMED) {
            static const char junk[] = "{\"result\":{\"success\":tru<html>502 Bad Gateway</html>";
            jb_append(&resp.body, junk, sizeof(junk) - 1);
        } else {
            fault_response(s, u, &a, &resp);
        }
        rc = send_resp(s, c, &resp);
        break;
    case FK_RESET:
    case FK_LOST_ANSWER:
        if (a.apply)
            run_handler(s, u, rq, &resp);
        if (a.kind == FK_RESET)
            reset_now(c);
        rc = closed(s);
        break;
    case FK_STALL:
        if (!wait_ms(s, c, a.stall_ms) || !a.apply) {
            rc = closed(s);
            break;
        }
        run_handler(s, u, rq, &resp);
        rc = send_resp(s, c, &resp);
        break;
    case FK_TRUNCATE:
        if (a.apply) {
            run_handler(s, u, rq, &resp);
        } else {
            struct fault_action unavailable = a;
            unavailable.kind = FK_STATUS;
            unavailable.status = 503;
            fault_response(s, u, &unavailable, &resp);
        }
        rc = send_truncated(s, c, &resp, a.truncate_bytes);
        break;
    default:
        rc = closed(s);
    }
    http_resp_free(&resp);
    return rc;
}

/* --- routing ------------------------------------------------------------------------------ */

static bool is_gateway(const char *url)
{
    return strcmp(url, "/sync") == 0 || strcmp(url, "/sync/") == 0;
}

/* The upstream a URL belongs to ("mp", "wh:CODE"), or false for control and unknown paths. */
static bool upstream_target(const char *url, char *target, size_t n)
{
    if (is_gateway(url)) {
        snprintf(target, n, "mp");
        return true;
    }
    if (strncmp(url, "/wh/", 4) != 0)
        return false;
    const char *code = url + 4, *slash = strchr(code, '/');
    int len = slash ? (int)(slash - code) : (int)strlen(code);
    snprintf(target, n, "wh:%.*s", len < 24 ? len : 24, code);
    return true;
}

static bool form_encoded(struct MHD_Connection *c)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    return !ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

static enum MHD_Result serve(struct http_server *h, struct MHD_Connection *c, const char *url,
                             const char *method, struct upload *up)
{
    struct sim *s = h->s;
    struct http_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.path = url;
    rq.body = up->body;
    rq.body_len = up->len;
    rq.authorization =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    rq.app_key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "app-key");
    rq.app_token = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "app-token");
    params_init(&rq.query);
    params_init(&rq.form);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &rq.query);

    enum MHD_Result rc;
    struct http_resp resp;
    http_resp_init(&resp);
    if (up->too_large) {
        http_resp_error(&resp, 413, "too_large", "request bodies are limited to %zu bytes",
                        HTTP_MAX_BODY);
        rc = send_resp(s, c, &resp);
    } else if (is_gateway(url)) {
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &rq.form);
        if (up->len && (!form_encoded(c) || params_parse_form(&rq.form, up->body, up->len) < 0))
            rq.form_malformed = true;
        struct upstream u = {"mp", mp_call_name(&rq), NULL};
        rc = serve_upstream(s, c, &u, &rq);
    } else if (strncmp(url, "/wh/", 4) == 0) {
        struct wh_route route;
        wh_route(s, method, url, &rq.query, &route);
        struct upstream u = {route.target, wh_route_call_name(&route), &route};
        rc = serve_upstream(s, c, &u, &rq);
    } else if (strncmp(url, "/control/", 9) == 0) {
        char key[160];
        snprintf(key, sizeof(key), "control:%s %.100s", method, url);
        stats_count(s->stats, SG_REQUESTS, key);
        control_handle(s, &rq, &resp);
        rc = send_resp(s, c, &resp);
    } else {
        http_resp_error(&resp, 404, "not_found",
                        "no such path %.200s (try /sync, /wh/{CODE}/..., /control/...)", url);
        rc = send_resp(s, c, &resp);
    }
    if (s->cfg.verbose)
        fprintf(stderr, "tally-sim: %s %s%s\n", method, url, rc == MHD_NO ? " (closed)" : "");
    http_resp_free(&resp);
    params_free(&rq.query);
    params_free(&rq.form);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct http_server *h = cls;
    struct upload *up = *con_cls;
    if (!up) {
        /* first call, headers only: a cut link refuses here, before reading any body */
        char target[40];
        if (upstream_target(url, target, sizeof(target)) && links_down(h->s->faults, target)) {
            stats_count(h->s->stats, SG_REFUSED, target);
            return MHD_NO;
        }
        up = calloc(1, sizeof(*up));
        if (!up)
            return MHD_NO;
        *con_cls = up;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (up->too_large || up->len + n > HTTP_MAX_BODY) {
            up->too_large = true;
            return MHD_YES;
        }
        if (up->len + n + 1 > up->cap) {
            size_t cap = up->cap ? up->cap : 4096;
            while (cap < up->len + n + 1)
                cap *= 2;
            char *b = realloc(up->body, cap);
            if (!b)
                return MHD_NO;
            up->body = b;
            up->cap = cap;
        }
        memcpy(up->body + up->len, upload_data, n);
        up->len += n;
        up->body[up->len] = '\0';
        return MHD_YES;
    }
    return serve(h, c, url, method, up);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct upload *up = *con_cls;
    if (up) {
        free(up->body);
        free(up);
        *con_cls = NULL;
    }
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fputs("tally-sim: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

struct http_server *http_start(struct sim *s, uint16_t port, char *err, size_t errlen)
{
    struct http_server *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->s = s;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, s->cfg.listen, &sa.sin_addr) != 1)
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (s->cfg.verbose)
        flags |= MHD_USE_ERROR_LOG;
    h->d = MHD_start_daemon(flags, port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
                            MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "cannot listen on %s:%u", s->cfg.listen, (unsigned)port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : port;
    return h;
}

uint16_t http_port(const struct http_server *h)
{
    return h->port;
}

void http_stop(struct http_server *h)
{
    if (!h)
        return;
    atomic_store(&h->s->stopping, true);
    MHD_stop_daemon(h->d);
    free(h);
}
