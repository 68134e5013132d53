#include "server.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <msgpack.h>

#include "log.h"
#include "rpc.h"
#include "tally/protocol.h"
#include "wire.h"

#define READ_CHUNK (64 * 1024)

/*
 * Fairness between connections: one connection's requests are handled for at most
 * TURN_REQUESTS requests in one turn, or TURN_NS of the loop's time once TURN_MIN_REQUESTS are
 * done (so a short pipelined batch is still handled in one turn, as before: a deferred read's
 * answer does not land inside it; integration.reads). Then it yields: its reading stops, what it
 * sent already waits in its unpacker's buffer, and the server's idle handle takes it up again on
 * the next turn, after the loop has polled every other connection. Without it a client pipelining
 * as fast as it can (a read after each of its writes commits the group first: gcommit_flush) held
 * the loop for its whole read buffer, and another client's stock.get waited a second or more
 * (integration.flood).
 */
#define TURN_REQUESTS 64
#define TURN_MIN_REQUESTS 16
#define TURN_NS (2 * 1000 * 1000)

struct conn {
    uv_pipe_t pipe; /* first: the handle's address is the connection's */
    struct server *srv;
    msgpack_unpacker unp;
    msgpack_unpacked msg;
    msgpack_sbuffer out; /* responses to the current read batch */
    /* Notifications raised while one of this connection's requests is being handled: they go
     * out after its response, never inside it. */
    msgpack_sbuffer held;
    bool in_call;   /* rpc_handle is running for this connection */
    bool held_over; /* held notifications went over max_output_bytes: close after the call */
    size_t queued;  /* bytes handed to uv_write and not yet written */
    int role;
    pid_t pid;
    uid_t uid;
    int closing;
    bool watching; /* receives event notifications (the watch method) */
    uint64_t id;   /* unique for the server's life: names it for answers sent later */
    unsigned owed; /* answers held by the group commit (server_conn_owe) */
    bool eof_wait; /* the peer is done sending: finish once nothing is owed */
    /* server_hold calls whose server_send_resume has not come: its next requests wait for
     * those answers, except imports (rpc_passes_hold), up to SERVER_HOLD_PIPELINE held. */
    unsigned ordered;
    /* The held answer is that of a request other than an import (a purge): then it is the
     * only one held, and no request passes it, imports included. */
    bool hold_strict;
    bool call_passes; /* the request being handled may pass a hold (rpc_passes_hold) */
    bool held_msg;    /* c->msg holds a request decoded earlier that waits for the held answers */
    bool yielded;     /* its turn's budget is spent: reading stopped until on_resume */
    /* Its next request, decoded in msg, waits for the group commit in flight (rpc_must_wait):
     * reading stopped until server_resume_waiting. */
    bool waiting;
    bool waiting_counted; /* the request in msg was counted in commit_waits already */
    struct conn *prev, *next;

    /* Deferred reads' answers still to come (server_conn_defer): owed too, at EOF. */
    unsigned deferred;
};

struct server {
    struct tallyd *d;
    uv_pipe_t listener;
    struct conn *conns;
    unsigned nconns;
    int stopping;
    int listener_closed;
    int timer_open; /* the stop timer exists and is not yet closed */
    uv_timer_t stop_timer;
    char path[108];
    uint64_t last_id; /* of the last connection accepted */
    unsigned holds;   /* server_hold calls whose server_send_resume has not come yet */
    uv_idle_t resume; /* takes up yielded connections on the next turn (made when first needed) */
    bool resume_open; /* resume was initialised and is not yet closed */
    uint64_t yields;  /* conn_yield calls (status: connection_yields) */
    unsigned waiting; /* connections with a request waiting for the group commit */
    uint64_t waits;   /* requests that waited so (status: commit_waits) */
};

/* How long a stopping server waits for clients to take their last answers. */
#define STOP_GRACE_MS 2000

static void server_maybe_free(struct server *srv)
{
    /* A held answer still to come (server_send_resume) keeps it: its caller holds srv. */
    if (srv->listener_closed && !srv->timer_open && srv->nconns == 0 && srv->holds == 0 &&
        !srv->resume_open)
        free(srv);
}

static void on_stop_timer_closed(uv_handle_t *h)
{
    struct server *srv = h->data;
    srv->timer_open = 0;
    server_maybe_free(srv);
}

struct write_req {
    uv_write_t req;
    struct conn *c;
    size_t len;
    char *data;
};

bool server_has_watchers(const struct server *srv)
{
    for (const struct conn *c = srv && !srv->stopping ? srv->conns : NULL; c; c = c->next)
        if (c->watching && !c->closing)
            return true;
    return false;
}

unsigned server_connections(const struct server *srv)
{
    return srv ? srv->nconns : 0;
}

uint64_t server_yields(const struct server *srv)
{
    return srv ? srv->yields : 0;
}

uint64_t server_waits(const struct server *srv)
{
    return srv ? srv->waits : 0;
}

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    struct server *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    msgpack_unpacked_destroy(&c->msg);
    msgpack_unpacker_destroy(&c->unp);
    msgpack_sbuffer_destroy(&c->out);
    msgpack_sbuffer_destroy(&c->held);
    free(c);
    if (srv->stopping && srv->nconns == 0 && srv->timer_open &&
        !uv_is_closing((uv_handle_t *)&srv->stop_timer))
        uv_close((uv_handle_t *)&srv->stop_timer, on_stop_timer_closed);
    server_maybe_free(srv);
}

static void conn_close(struct conn *c)
{
    if (c->closing == 1)
        return;
    c->closing = 1;
    uv_read_stop((uv_stream_t *)&c->pipe);
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    free(req);
    conn_close(c);
}

/* Stops reading and closes once what is queued has been written. */
static void conn_finish(struct conn *c)
{
    if (c->closing)
        return;
    uv_read_stop((uv_stream_t *)&c->pipe);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) != 0) {
        free(req);
        conn_close(c);
        return;
    }
    req->data = c;
    c->closing = 2; /* no more reads or dispatch; the close follows the shutdown */
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    w->c->queued -= w->len;
    if (status < 0 && status != UV_ECANCELED)
        conn_close(w->c);
    free(w->data);
    free(w);
}

/* Sends c->out: directly when the socket takes it, else queued on libuv (bounded). */
static void conn_flush(struct conn *c)
{
    if (c->out.size == 0 || c->closing == 1)
        return;
    size_t off = 0;
    if (c->queued == 0) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.size);
        int n = uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
        if (n > 0)
            off = (size_t)n;
        else if (n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
    }
    if (off == c->out.size) {
        c->out.size = 0;
        return;
    }
    size_t rest = c->out.size - off;
    if (c->queued + rest > c->srv->d->cfg.max_output_bytes) {
        log_warn("client pid %d: unsent output over %zu bytes, disconnecting", (int)c->pid,
                 c->srv->d->cfg.max_output_bytes);
        conn_close(c);
        return;
    }
    struct write_req *w = malloc(sizeof *w);
    char *data = malloc(rest);
    if (!w || !data) {
        free(w);
        free(data);
        conn_close(c);
        return;
    }
    memcpy(data, c->out.data + off, rest);
    c->out.size = 0;
    w->c = c;
    w->len = rest;
    w->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)rest);
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_written) != 0) {
        free(data);
        free(w);
        conn_close(c);
        return;
    }
    c->queued += rest;
}

/* Why a watcher is cut off when events for it were dropped. */
#define EVENTS_OVER                                                                                \
    "events for this watching connection went over max_output_bytes and some were dropped; "       \
    "the responses before this one were sent; connect again, watch, and re-read the state"

/* A framing error: answer it, then close, since the stream can no longer be resynchronised. */
static void conn_fatal(struct conn *c, int code, const char *message)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c->out, msgpack_sbuffer_write);
    rpc_pack_error(&pk, 0, code, message);
    log_info("client pid %d: %s, disconnecting", (int)c->pid, message);
    conn_flush(c);
    conn_finish(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = (struct conn *)h;
    if (!msgpack_unpacker_reserve_buffer(&c->unp, READ_CHUNK)) {
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init(msgpack_unpacker_buffer(&c->unp),
                       (unsigned)msgpack_unpacker_buffer_capacity(&c->unp));
}

static void conn_yield(struct conn *c);

/* Its requests wait for held answers (server_hold): reading stopped until server_send_resume. */
static bool conn_held(const struct conn *c)
{
    return c->held_msg || c->ordered >= SERVER_HOLD_PIPELINE;
}

/* After a request is answered: false when this turn's budget for c is spent (it yields). The
 * turn's time is counted from the end of its first request, and only when another follows it
 * (a pipelining client): a clock read per request costs the usual client, one request per
 * read, a few percent of its answer. */
static bool answered(struct conn *c, unsigned *handled, uint64_t *t0)
{
    /* Keep a pipelining client's batch bounded too. */
    if (c->out.size >= READ_CHUNK)
        conn_flush(c);
    if (++*handled == 1 && c->unp.used > c->unp.off)
        *t0 = uv_hrtime();
    if (*handled >= TURN_REQUESTS ||
        (*handled >= TURN_MIN_REQUESTS && uv_hrtime() - *t0 >= TURN_NS)) {
        if (!c->closing && !conn_held(c) && c->unp.used > c->unp.off)
            conn_yield(c);
        return false;
    }
    return true;
}

/* Decodes and answers the complete messages in the unpacker's buffer: all of them, or as many
 * as this turn's budget allows (the rest on the next turn: conn_yield). */
static void conn_process(struct conn *c)
{
    struct tallyd *d = c->srv->d;
    size_t max = d->cfg.max_message_bytes;
    unsigned handled = 0;
    uint64_t t0 = 0;                       /* (answered) */
    bool kept = c->waiting || c->held_msg; /* c->msg holds a request decoded earlier */
    c->waiting = false;
    c->held_msg = false;
    while (!c->closing) {
        if (!kept) {
            if (c->ordered >= SERVER_HOLD_PIPELINE)
                break;
            const unsigned char *p = (const unsigned char *)c->unp.buffer + c->unp.off;
            size_t avail = c->unp.used - c->unp.off;
            if (avail == 0)
                break;
            /* The hot read, answered from what is kept (rpc_fast_answer) when nothing is owed
             * to this connection first: then rpc_handle would answer it at once. */
            size_t fast = !c->ordered && !c->owed && !c->srv->stopping
                              ? rpc_fast_answer(d, p, avail, &c->out)
                              : 0;
            if (fast) {
                c->unp.off += fast; /* (between messages: the unpacker's state is initial) */
                if (!answered(c, &handled, &t0))
                    break;
                continue;
            }
            ssize_t n = wire_frame_scan(p, avail, max, TALLY_MAX_DEPTH);
            if (n == 0)
                break;
            if (n < 0) {
                conn_fatal(c, (int)n,
                           n == TALLY_E_TOO_LARGE  ? "message exceeds max_message_bytes"
                           : n == TALLY_E_TOO_DEEP ? "message nested too deeply"
                                                   : "bytes are not valid MessagePack");
                return;
            }
            msgpack_unpack_return ur = msgpack_unpacker_next(&c->unp, &c->msg);
            if (ur != MSGPACK_UNPACK_SUCCESS) {
                conn_fatal(c, ur == MSGPACK_UNPACK_NOMEM_ERROR ? TALLY_E_NOMEM : TALLY_E_MALFORMED,
                           "bytes are not valid MessagePack");
                return;
            }
        }
        kept = false;
        bool passes = rpc_passes_hold(&c->msg.data);
        if (c->ordered &&
            (c->srv->stopping || c->ordered >= SERVER_HOLD_PIPELINE || c->hold_strict || !passes)) {
            /* Kept, decoded, until the held answers are sent (server_send_resume): the
             * connection's order holds; nothing more is read meanwhile. */
            c->held_msg = true;
            uv_read_stop((uv_stream_t *)&c->pipe);
            conn_flush(c);
            return;
        }
        if (!c->srv->stopping && rpc_must_wait(d, c, &c->msg.data)) {
            /* Kept, decoded, for server_resume_waiting; nothing more is read meanwhile. */
            if (!c->waiting_counted)
                c->srv->waits++; /* each request once, however often it is taken up */
            c->waiting = true;
            c->waiting_counted = true;
            c->srv->waiting++;
            uv_read_stop((uv_stream_t *)&c->pipe);
            conn_flush(c);
            return;
        }
        c->waiting_counted = false;
        c->in_call = true;
        c->call_passes = passes;
        int hr = rpc_handle(d, c->role, c, &c->msg.data, &c->out);
        c->in_call = false;
        if (c->held_over) {
            /* Events for it were dropped: its response (in c->out: a write it made may have
             * been committed) still goes out, then an error saying why it is cut off. */
            c->held.size = 0;
            c->held_over = false;
            log_warn("client pid %d: events over max_output_bytes (%zu), disconnecting",
                     (int)c->pid, d->cfg.max_output_bytes);
            conn_fatal(c, TALLY_E_OVERLOADED, EVENTS_OVER);
            return;
        }
        if (c->held.size > 0) {
            msgpack_sbuffer_write(&c->out, c->held.data, c->held.size);
            c->held.size = 0;
        }
        if (hr != 0) {
            log_info("client pid %d: not a request, disconnecting", (int)c->pid);
            conn_flush(c);
            conn_finish(c);
            return;
        }
        if (!answered(c, &handled, &t0))
            break;
    }
    /* The last message's zone references the read buffer; release it so the unpacker can
     * reuse the buffer instead of growing a new one. */
    msgpack_unpacked_destroy(&c->msg);
    msgpack_unpacked_init(&c->msg);
    conn_flush(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_resume(uv_idle_t *h)
{
    struct server *srv = h->data;
    bool more = false;
    for (struct conn *c = srv->conns; c; c = c->next) {
        if (!c->yielded)
            continue;
        c->yielded = false;
        if (c->closing || conn_held(c) || c->waiting || srv->stopping)
            continue; /* closing; or held (server_send_resume, server_resume_waiting) */
        conn_process(c);
        if (c->yielded)
            more = true;
        else if (!c->closing && !conn_held(c) && !c->waiting)
            uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
    }
    if (!more)
        uv_idle_stop(h);
}

/* The turn's budget is spent: stop reading from c (its requests already read wait in the
 * unpacker) and take it up again on the next turn. */
static void conn_yield(struct conn *c)
{
    struct server *srv = c->srv;
    if (srv->stopping)
        return; /* conn_finish stops it; nothing more is handled */
    if (!srv->resume_open) {
        uv_idle_init(srv->d->loop, &srv->resume);
        srv->resume.data = srv;
        srv->resume_open = true;
    }
    c->yielded = true;
    srv->yields++;
    uv_read_stop((uv_stream_t *)&c->pipe);
    uv_idle_start(&srv->resume, on_resume);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)s;
    if (nread < 0) {
        if (nread == UV_ENOBUFS)
            conn_fatal(c, TALLY_E_NOMEM, "out of memory for the read buffer");
        else if (nread == UV_EOF && (c->owed || c->deferred || c->ordered)) {
            /* Answers to its writes wait for their commit, its deferred reads' for their
             * workers: finish once they are sent. */
            uv_read_stop(s);
            c->eof_wait = true;
        } else if (nread == UV_EOF)
            conn_finish(c); /* the peer is done sending: deliver what is queued, then close */
        else
            conn_close(c);
        return;
    }
    if (nread == 0 || c->closing)
        return;
    msgpack_unpacker_buffer_consumed(&c->unp, (size_t)nread);
    conn_process(c);
}

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux >= 4.13 */
#endif

/* Whether gid is among the peer's supplementary groups, as the kernel recorded them when the
 * peer connected (SO_PEERGROUPS: no /proc, which ProtectProc=invisible hides, and no race
 * with the peer's pid being reused). */
static bool peer_in_group(int fd, gid_t gid)
{
    gid_t small[64], *groups = small;
    socklen_t len = sizeof small;
    int r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    if (r != 0 && errno == ERANGE && len > sizeof small) {
        /* len now holds the size needed (NGROUPS_MAX is 65536). */
        groups = malloc(len);
        if (!groups)
            return false;
        r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    }
    bool in = false;
    static bool warned;
    if (r != 0 && !warned) {
        warned = true; /* once: it fails alike for every connection (a kernel before 4.13) */
        log_warn("SO_PEERGROUPS: %s; callers' supplementary groups are not known, so only a "
                 "primary group of writer_group makes a writer",
                 strerror(errno));
    } else if (r == 0)
        for (size_t i = 0; i < len / sizeof *groups && !in; i++)
            in = groups[i] == gid;
    if (groups != small)
        free(groups);
    return in;
}

/* The caller's role, from the kernel's view of the peer: uid, gid and supplementary groups. */
static int peer_role(struct server *srv, struct conn *c)
{
    uv_os_fd_t fd;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
        return TALLY_ROLE_READER;
    c->pid = cr.pid;
    c->uid = cr.uid;
    if (cr.uid == 0 || cr.uid == geteuid())
        return TALLY_ROLE_WRITER;
    if (!srv->d->have_writer_gid)
        return TALLY_ROLE_READER;
    if (cr.gid == srv->d->writer_gid || peer_in_group(fd, srv->d->writer_gid))
        return TALLY_ROLE_WRITER;
    return TALLY_ROLE_READER;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct server *srv = server->data;
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = srv;
    c->id = ++srv->last_id;
    uv_pipe_init(srv->d->loop, &c->pipe, 0);
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
        !msgpack_unpacker_init(&c->unp, READ_CHUNK)) {
        uv_close((uv_handle_t *)&c->pipe, (uv_close_cb)free);
        return;
    }
    msgpack_unpacked_init(&c->msg);
    msgpack_sbuffer_init(&c->out);
    msgpack_sbuffer_init(&c->held);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    c->role = peer_role(srv, c);
    if (srv->nconns > srv->d->cfg.max_connections) {
        conn_fatal(c, TALLY_E_OVERLOADED, "too many connections (max_connections)");
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct server *srv = h->data;
    srv->listener_closed = 1;
    server_maybe_free(srv);
}

/* Whether something already answers on the socket path (another tallyd). */
static int socket_in_use(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return r;
}

int server_start(struct tallyd *d, struct server **out, char *err, size_t errlen)
{
    const char *path = d->cfg.socket_path;
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "socket path is longer than 107 bytes: %s", path);
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket; refusing to replace it", path);
            return -1;
        }
        if (socket_in_use(path)) {
            snprintf(err, errlen, "another tallyd is already serving %s", path);
            return -1;
        }
        unlink(path);
    }
    struct server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    srv->d = d;
    snprintf(srv->path, sizeof srv->path, "%s", path);
    uv_pipe_init(d->loop, &srv->listener, 0);
    srv->listener.data = srv;
    /* Create the socket without group/other access, then open it to socket_mode before
     * listening, so there is no moment when it is wider than configured. */
    mode_t old = umask(0177);
    int r = uv_pipe_bind(&srv->listener, path);
    umask(old);
    if (r == 0 && chmod(path, d->cfg.socket_mode) != 0)
        r = uv_translate_sys_error(errno);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
    if (r != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, uv_strerror(r));
        srv->stopping = 1;
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
        *out = NULL;
        return -1;
    }
    *out = srv;
    return 0;
}

/* Clients that did not take their last answers in time are cut off, so a client that never
 * reads cannot hold the daemon's stop. */
static void on_stop_timer(uv_timer_t *t)
{
    struct server *srv = t->data;
    for (struct conn *c = srv->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)t, on_stop_timer_closed);
}

static void on_resume_closed(uv_handle_t *h)
{
    struct server *srv = h->data;
    srv->resume_open = false;
    server_maybe_free(srv);
}

void server_stop(struct server *srv)
{
    if (!srv)
        return;
    srv->stopping = 1;
    unlink(srv->path);
    if (srv->resume_open && !uv_is_closing((uv_handle_t *)&srv->resume))
        uv_close((uv_handle_t *)&srv->resume, on_resume_closed);
    for (struct conn *c = srv->conns; c; c = c->next)
        if (!c->ordered) /* one held by an import is finished once that import is answered */
            conn_finish(c);
    if (srv->nconns > 0) {
        uv_timer_init(srv->d->loop, &srv->stop_timer);
        srv->stop_timer.data = srv;
        srv->timer_open = 1;
        uv_timer_start(&srv->stop_timer, on_stop_timer, STOP_GRACE_MS, 0);
    }
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}

void server_conn_watch(void *conn, bool on)
{
    ((struct conn *)conn)->watching = on;
}

uint64_t server_conn_id(void *conn)
{
    return conn ? ((struct conn *)conn)->id : 0;
}

msgpack_zone *server_take_request(void *conn)
{
    struct conn *c = conn;
    if (!c || !c->in_call)
        return NULL;
    msgpack_zone *z = c->msg.zone;
    c->msg.zone = NULL; /* msgpack_unpacked_destroy leaves it alone */
    return z;
}

void server_hold(void *conn)
{
    struct conn *c = conn;
    if (!c)
        return;
    c->srv->holds++; /* server_send_resume comes, whatever happens to the connection */
    if (c->closing)
        return;
    if (!c->in_call || !c->call_passes)
        c->hold_strict = true; /* handled only when nothing else was held: held alone */
    /* What is read stays in the unpacker's buffer; below the limit reading goes on, for the
     * imports that may follow (conn_process keeps any other request until the answers). */
    if (++c->ordered >= SERVER_HOLD_PIPELINE)
        uv_read_stop((uv_stream_t *)&c->pipe);
}

bool server_send_resume(struct server *srv, uint64_t conn_id, const char *data, size_t len)
{
    if (!srv)
        return false;
    if (srv->holds)
        srv->holds--;
    bool sent = false;
    for (struct conn *c = srv->conns; c; c = c->next) {
        if (c->id != conn_id)
            continue;
        if (c->closing)
            break;
        msgpack_sbuffer_write(&c->out, data, len);
        if (c->ordered)
            c->ordered--;
        if (!c->ordered)
            c->hold_strict = false;
        sent = true;
        if (srv->stopping) {
            /* The held answers were all it waited for (server_stop): its later requests are
             * not handled, as a stopping server reads no more. */
            conn_flush(c);
            if (!c->ordered)
                conn_finish(c);
            break;
        }
        conn_process(c); /* the requests that waited, then a flush */
        if (c->eof_wait && !c->closing && !c->ordered && !c->held_msg && !c->owed && !c->deferred) {
            conn_finish(c); /* the peer is done sending and has every answer */
            break;
        }
        if (!c->closing && !conn_held(c) && !c->yielded && !c->waiting && !c->eof_wait)
            uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
        break;
    }
    if (srv->stopping)
        server_maybe_free(srv);
    return sent;
}

bool server_send(struct server *srv, uint64_t conn_id, const char *data, size_t len)
{
    for (struct conn *c = srv ? srv->conns : NULL; c; c = c->next) {
        if (c->id != conn_id)
            continue;
        if (c->closing)
            return false;
        msgpack_sbuffer_write(&c->out, data, len);
        conn_flush(c);
        return true;
    }
    return false;
}

void server_conn_owe(void *conn)
{
    ((struct conn *)conn)->owed++;
}

unsigned server_conn_owed(void *conn)
{
    return conn ? ((struct conn *)conn)->owed : 0;
}

bool server_send_owed(struct server *srv, uint64_t conn_id, const char *data, size_t len)
{
    for (struct conn *c = srv ? srv->conns : NULL; c; c = c->next) {
        if (c->id != conn_id)
            continue;
        if (c->owed)
            c->owed--;
        bool sent = false;
        if (!c->closing && data) {
            /* Sent by server_flush_owed, once for all of a commit's answers. */
            msgpack_sbuffer_write(&c->out, data, len);
            sent = true;
        }
        if (c->owed == 0 && c->deferred == 0 && !c->ordered && c->eof_wait && !c->closing) {
            conn_flush(c);
            conn_finish(c);
        }
        return sent;
    }
    return false;
}

void server_conn_defer(void *conn)
{
    ((struct conn *)conn)->deferred++;
}

bool server_send_deferred(struct server *srv, uint64_t conn_id, const char *data, size_t len)
{
    for (struct conn *c = srv ? srv->conns : NULL; c; c = c->next) {
        if (c->id != conn_id)
            continue;
        if (c->deferred)
            c->deferred--;
        if (c->closing)
            return false;
        if (data)
            msgpack_sbuffer_write(&c->out, data, len);
        conn_flush(c);
        if (c->owed == 0 && c->deferred == 0 && !c->ordered && c->eof_wait && !c->closing)
            conn_finish(c);
        return data != NULL;
    }
    return false;
}

void server_resume_waiting(struct server *srv)
{
    if (!srv || !srv->waiting)
        return;
    /* Connections are taken up in the order they are listed; one that must wait again (a
     * read after the write it just made) is counted again by conn_process. */
    unsigned n = srv->waiting;
    srv->waiting = 0;
    for (struct conn *c = srv->conns, *next; c && n; c = next) {
        next = c->next;
        if (!c->waiting)
            continue;
        n--;
        if (c->closing)
            continue;
        conn_process(c);
        if (!c->closing && !conn_held(c) && !c->yielded && !c->waiting && !srv->stopping)
            uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
    }
}

bool server_has_waiting(const struct server *srv)
{
    for (const struct conn *c = srv && srv->waiting ? srv->conns : NULL; c; c = c->next)
        if (c->waiting && !c->closing)
            return true;
    return false;
}

void server_flush_owed(struct server *srv)
{
    for (struct conn *c = srv ? srv->conns : NULL; c; c = c->next)
        if (c->out.size && !c->in_call)
            conn_flush(c);
}

uid_t server_conn_uid(void *conn)
{
    return conn ? ((struct conn *)conn)->uid : geteuid();
}

void server_drop_watchers(struct server *srv)
{
    if (!srv)
        return;
    for (struct conn *c = srv->conns; c; c = c->next) {
        if (!c->watching || c->closing)
            continue;
        if (c->in_call) {
            c->held_over = true; /* after its response (conn_process) */
            continue;
        }
        log_warn("client pid %d: events over max_output_bytes (%zu), disconnecting", (int)c->pid,
                 srv->d->cfg.max_output_bytes);
        conn_fatal(c, TALLY_E_OVERLOADED, EVENTS_OVER);
    }
}

void server_broadcast(struct server *srv, const char *data, size_t len)
{
    if (!srv || srv->stopping)
        return;
    for (struct conn *c = srv->conns; c; c = c->next) {
        if (!c->watching || c->closing)
            continue;
        if (c->in_call) {
            /* This connection's response is being built in c->out's wake: hold the event
             * until the response is complete (conn_process appends it then). */
            if (c->queued + c->out.size + c->held.size + len > c->srv->d->cfg.max_output_bytes)
                c->held_over = true;
            else
                msgpack_sbuffer_write(&c->held, data, len);
            continue;
        }
        msgpack_sbuffer_write(&c->out, data, len);
        conn_flush(c);
    }
}
