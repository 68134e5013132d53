/*
 * libtallyclient (include/tally/client.h): one blocking Unix-socket connection to tallyd.
 *
 * The socket is non-blocking underneath so that every wait is a poll() with the caller's
 * timeout. Incoming bytes go straight into a msgpack_unpacker's buffer; before the unpacker is
 * asked for an object, wire_frame_scan() (proto/wire.h) checks that one complete message is
 * buffered and that its declared sizes and nesting are within limits. So the unpacker never
 * holds a partial parse, never sizes an allocation from a lying header, and the next message
 * always starts at the unpacker's read offset.
 */
#include "tally/client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "wire.h"

#define CLIENT_DEFAULT_TIMEOUT_MS 30000
#define CLIENT_READ_CHUNK (64u * 1024)
/* A response can never be larger than what tallyd may queue for one connection. */
#define CLIENT_MAX_RESPONSE TALLY_DEFAULT_MAX_OUTPUT_BYTES
/* Notifications that arrive while a response is awaited are kept for
 * tally_recv_notification, up to this many bytes (the oldest are dropped past it). */
#define CLIENT_MAX_KEPT_NOTES (1024u * 1024)

/* A notification read while waiting for a response: its encoded bytes. */
struct kept_note {
    struct kept_note *next;
    size_t len;
    char data[];
};

struct tally_client {
    int fd;
    int timeout_ms;
    uint32_t last_msgid;
    bool broken; /* a transport failure happened: the stream position is unknown */
    msgpack_unpacker unp;
    msgpack_sbuffer tx;
    char errmsg[256];
    struct kept_note *notes, **notes_tail; /* oldest first */
    size_t notes_bytes;
};

static int set_error(struct tally_client *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_error(struct tally_client *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    return err;
}

/* A transport failure: the connection cannot be used any more. */
static int set_broken(struct tally_client *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_broken(struct tally_client *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    c->broken = true;
    return err;
}

const char *tally_socket_path(const char *explicit_path)
{
    if (explicit_path)
        return explicit_path;
    const char *env = getenv("TALLY_SOCKET");
    if (env && *env)
        return env;
    return TALLY_DEFAULT_SOCKET;
}

static void errbuf_set(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errbuf_set(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Maps a connect() errno to the library's code, with a message that names the socket. */
static int connect_error(int e, const char *path, char *errbuf, size_t errlen)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        errbuf_set(errbuf, errlen, "tallyd is not running (no socket at %s)", path);
        return TALLY_E_NOT_RUNNING;
    case ECONNREFUSED: {
        struct stat st;
        bool sock = stat(path, &st) != 0 || S_ISSOCK(st.st_mode);
        if (sock)
            errbuf_set(errbuf, errlen, "tallyd is not running (connection refused at %s)", path);
        else
            errbuf_set(errbuf, errlen, "tallyd is not running (%s is not a socket)", path);
        return TALLY_E_NOT_RUNNING;
    }
    case EACCES:
    case EPERM:
        errbuf_set(errbuf, errlen,
                   "permission denied opening %s (is this user in tallyd's socket group?)", path);
        return TALLY_E_FORBIDDEN;
    case EAGAIN:
        errbuf_set(errbuf, errlen, "tallyd is too busy to accept a connection at %s", path);
        return TALLY_E_IO;
    default:
        errbuf_set(errbuf, errlen, "cannot connect to %s: %s", path, strerror(e));
        return TALLY_E_IO;
    }
}

/* connect() on a blocking socket, finishing a connection that a signal interrupted. */
static int connect_blocking(int fd, const struct sockaddr_un *sa)
{
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
        return 0;
    if (errno != EINTR)
        return errno;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    do
        r = poll(&p, 1, -1);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        return errno;
    return soerr;
}

int tally_connect(const char *path, struct tally_client **out, char *errbuf, size_t errlen)
{
    struct sockaddr_un sa;
    *out = NULL;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sa.sun_path) {
        errbuf_set(errbuf, errlen, "socket path %s is %zu bytes; a Unix socket path must be 1-%zu",
                   n ? path : "\"\"", n, sizeof sa.sun_path - 1);
        return TALLY_E_INVALID_PARAMS;
    }
    memcpy(sa.sun_path, path, n + 1);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        errbuf_set(errbuf, errlen, "cannot create a socket: %s", strerror(errno));
        return TALLY_E_IO;
    }
    int e = connect_blocking(fd, &sa);
    if (e) {
        close(fd);
        return connect_error(e, path, errbuf, errlen);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        errbuf_set(errbuf, errlen, "cannot set up the socket: %s", strerror(errno));
        close(fd);
        return TALLY_E_IO;
    }

    struct tally_client *c = calloc(1, sizeof *c);
    if (!c || !msgpack_unpacker_init(&c->unp, CLIENT_READ_CHUNK)) {
        free(c);
        close(fd);
        errbuf_set(errbuf, errlen, "out of memory");
        return TALLY_E_NOMEM;
    }
    msgpack_sbuffer_init(&c->tx);
    c->notes_tail = &c->notes;
    c->fd = fd;
    c->timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
    *out = c;
    return 0;
}

void tally_client_free(struct tally_client *c)
{
    if (!c)
        return;
    close(c->fd);
    for (struct kept_note *n = c->notes, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    msgpack_unpacker_destroy(&c->unp);
    msgpack_sbuffer_destroy(&c->tx);
    free(c);
}

void tally_client_set_timeout(struct tally_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
}

const char *tally_client_errmsg(const struct tally_client *c)
{
    return c->errmsg[0] ? c->errmsg : "no error";
}

/* ---- time */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deadline for one call: 0 means none. */
static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms > 0 ? now_ms() + timeout_ms : 0;
}

/*
 * Waits until fd is ready for `events` or the deadline passes. Returns 0 when ready, else
 * TALLY_E_TIMEOUT or TALLY_E_IO (with the message set).
 */
static int wait_fd(struct tally_client *c, short events, int64_t deadline, const char *what)
{
    for (;;) {
        int wait = -1;
        if (deadline) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return set_broken(c, TALLY_E_TIMEOUT, "timed out after %d ms %s", c->timeout_ms,
                                  what);
            wait = left > 0x7fffffff ? 0x7fffffff : (int)left;
        }
        struct pollfd p = {.fd = c->fd, .events = events};
        int r = poll(&p, 1, wait);
        if (r > 0)
            return 0; /* readable, writable, or hung up: the next read/send tells which */
        if (r < 0 && errno != EINTR)
            return set_broken(c, TALLY_E_IO, "poll failed: %s", strerror(errno));
    }
}

/* ---- sending */

static int send_all(struct tally_client *c, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(c, POLLOUT, deadline, "sending a request to tallyd");
            if (r)
                return r;
            continue;
        }
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            return set_broken(c, TALLY_E_IO, "tallyd closed the connection");
        return set_broken(c, TALLY_E_IO, "cannot send to tallyd: %s",
                          w < 0 ? strerror(errno) : "nothing written");
    }
    return 0;
}

/* A packed map starts with a fixmap, map16 or map32 byte. */
static bool is_packed_map(const char *params, size_t len)
{
    unsigned char b = len ? (unsigned char)params[0] : 0;
    return len > 0 && ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf);
}

static int send_request(struct tally_client *c, uint32_t msgid, const char *method,
                        const char *params, size_t params_len, int64_t deadline)
{
    if (c->broken)
        return set_error(c, TALLY_E_IO, "the connection to tallyd was lost earlier");
    if (params && !is_packed_map(params, params_len))
        return set_error(c, TALLY_E_INVALID_PARAMS, "params must be one packed MessagePack map");
    msgpack_packer pk;
    msgpack_sbuffer_clear(&c->tx);
    msgpack_packer_init(&pk, &c->tx, msgpack_sbuffer_write);
    size_t mlen = strlen(method);
    bool ok = msgpack_pack_array(&pk, 4) == 0 && msgpack_pack_uint8(&pk, TALLY_MSG_REQUEST) == 0 &&
              msgpack_pack_uint32(&pk, msgid) == 0 && msgpack_pack_str(&pk, mlen) == 0 &&
              msgpack_pack_str_body(&pk, method, mlen) == 0 && msgpack_pack_array(&pk, 1) == 0;
    if (ok && params)
        ok = msgpack_sbuffer_write(&c->tx, params, params_len) == 0;
    else if (ok)
        ok = msgpack_pack_map(&pk, 0) == 0;
    if (!ok)
        return set_error(c, TALLY_E_NOMEM, "out of memory packing the request");
    return send_all(c, c->tx.data, c->tx.size, deadline);
}

int tally_send(struct tally_client *c, uint32_t msgid, const char *method, const char *params,
               size_t params_len)
{
    return send_request(c, msgid, method, params, params_len, deadline_after(c->timeout_ms));
}

/* ---- receiving */

/* Bytes buffered in the unpacker and not yet parsed: the start of the next message. */
static const unsigned char *pending_bytes(const struct tally_client *c, size_t *len)
{
    *len = c->unp.used - c->unp.off;
    return (const unsigned char *)c->unp.buffer + c->unp.off;
}

/* Reads more bytes into the unpacker's buffer, waiting until the deadline. */
static int read_more(struct tally_client *c, int64_t deadline)
{
    if (!msgpack_unpacker_reserve_buffer(&c->unp, CLIENT_READ_CHUNK))
        return set_broken(c, TALLY_E_NOMEM, "out of memory reading from tallyd");
    for (;;) {
        ssize_t r = recv(c->fd, msgpack_unpacker_buffer(&c->unp),
                         msgpack_unpacker_buffer_capacity(&c->unp), 0);
        if (r > 0) {
            msgpack_unpacker_buffer_consumed(&c->unp, (size_t)r);
            return 0;
        }
        if (r == 0)
            return set_broken(c, TALLY_E_IO, "tallyd closed the connection");
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(c, POLLIN, deadline, "waiting for tallyd's answer");
            if (w)
                return w;
            continue;
        }
        if (errno == ECONNRESET)
            return set_broken(c, TALLY_E_IO, "tallyd closed the connection");
        return set_broken(c, TALLY_E_IO, "cannot read from tallyd: %s", strerror(errno));
    }
}

/* Decodes the next whole message into `msg`; when `raw` is not NULL, *raw and *rawlen are
 * its encoded bytes (valid while `msg` is). */
static int next_message(struct tally_client *c, msgpack_unpacked *msg, int64_t deadline,
                        const char **raw, size_t *rawlen)
{
    const unsigned char *p;
    ssize_t n;
    for (;;) {
        size_t len;
        p = pending_bytes(c, &len);
        n = len ? wire_frame_scan(p, len, CLIENT_MAX_RESPONSE, TALLY_MAX_DEPTH) : 0;
        if (n < 0)
            return set_broken(c, TALLY_E_MALFORMED, "malformed answer from tallyd (%s)",
                              tally_strerror((int)n));
        if (n > 0)
            break;
        int r = read_more(c, deadline);
        if (r)
            return r;
    }
    if (msgpack_unpacker_next(&c->unp, msg) != MSGPACK_UNPACK_SUCCESS)
        return set_broken(c, TALLY_E_MALFORMED, "malformed answer from tallyd");
    if (raw) {
        *raw = (const char *)p;
        *rawlen = (size_t)n;
    }
    return 0;
}

/* Keeps a notification read while a response was awaited, for tally_recv_notification. */
static void keep_note(struct tally_client *c, const char *data, size_t len)
{
    struct kept_note *k = malloc(sizeof *k + len);
    if (!k)
        return; /* lost, as it was before notifications were kept */
    k->next = NULL;
    k->len = len;
    memcpy(k->data, data, len);
    *c->notes_tail = k;
    c->notes_tail = &k->next;
    c->notes_bytes += len;
    while (c->notes_bytes > CLIENT_MAX_KEPT_NOTES && c->notes != k) {
        struct kept_note *old = c->notes;
        c->notes = old->next;
        c->notes_bytes -= old->len;
        free(old);
    }
}

static bool as_u32(const msgpack_object *o, uint32_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
        return false;
    *v = (uint32_t)o->via.u64;
    return true;
}

static void copy_str(char *dst, size_t cap, const msgpack_object *o)
{
    size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
    memcpy(dst, o->via.str.ptr, n);
    dst[n] = '\0';
}

/* Fills err/code/message from the error element of a response ({code, message}). */
static void decode_error(struct tally_reply *r, const msgpack_object *e)
{
    const msgpack_object *code = tally_obj_get(e, "code");
    const msgpack_object *msg = tally_obj_get(e, "message");
    r->err = TALLY_E_INTERNAL;
    snprintf(r->code, sizeof r->code, "internal");
    if (code && code->type == MSGPACK_OBJECT_STR) {
        copy_str(r->code, sizeof r->code, code);
        r->err = tally_error_from_code(code->via.str.ptr, code->via.str.size);
        if (r->err == TALLY_OK) /* "ok" is not an error code on the wire */
            r->err = TALLY_E_INTERNAL;
    }
    if (msg && msg->type == MSGPACK_OBJECT_STR)
        copy_str(r->message, sizeof r->message, msg);
    else if (e->type == MSGPACK_OBJECT_STR) /* a plain MessagePack-RPC error string */
        copy_str(r->message, sizeof r->message, e);
    else
        snprintf(r->message, sizeof r->message, "%s", tally_strerror(r->err));
    r->result.type = MSGPACK_OBJECT_NIL;
}

/*
 * Checks the envelope of a decoded message. Returns 1 for a response (filled into r), 0 for a
 * notification (to skip), or TALLY_E_MALFORMED.
 */
static int decode_envelope(struct tally_client *c, struct tally_reply *r)
{
    const msgpack_object *m = &r->unpacked.data;
    uint32_t kind;
    if (m->type != MSGPACK_OBJECT_ARRAY || m->via.array.size == 0 ||
        !as_u32(&m->via.array.ptr[0], &kind))
        return set_broken(c, TALLY_E_MALFORMED, "tallyd sent a message that is not an array");
    const msgpack_object *a = m->via.array.ptr;
    if (kind == TALLY_MSG_NOTIFICATION && m->via.array.size == 3)
        return 0;
    if (kind != TALLY_MSG_RESPONSE || m->via.array.size != 4)
        return set_broken(c, TALLY_E_MALFORMED, "tallyd sent a message of unexpected kind %u",
                          kind);
    if (!as_u32(&a[1], &r->msgid))
        return set_broken(c, TALLY_E_MALFORMED, "tallyd sent a response without a valid msgid");
    if (a[2].type == MSGPACK_OBJECT_NIL) {
        r->err = 0;
        r->result = a[3];
    } else {
        decode_error(r, &a[2]);
    }
    return 1;
}

static int recv_reply(struct tally_client *c, struct tally_reply **out, int64_t deadline)
{
    *out = NULL;
    if (c->broken)
        return set_error(c, TALLY_E_IO, "the connection to tallyd was lost earlier");
    struct tally_reply *r = calloc(1, sizeof *r);
    if (!r)
        return set_error(c, TALLY_E_NOMEM, "out of memory");
    msgpack_unpacked_init(&r->unpacked);
    for (;;) {
        const char *raw = NULL;
        size_t rawlen = 0;
        int e = next_message(c, &r->unpacked, deadline, &raw, &rawlen);
        if (e == 0)
            e = decode_envelope(c, r);
        if (e == 1)
            break;
        if (e < 0) {
            tally_reply_free(r);
            return e;
        }
        keep_note(c, raw, rawlen); /* a notification: for tally_recv_notification */
    }
    *out = r;
    return 0;
}

int tally_recv_notification(struct tally_client *c, int timeout_ms, struct tally_reply **out)
{
    *out = NULL;
    if (c->broken)
        return set_error(c, TALLY_E_IO, "the connection to tallyd was lost earlier");
    int64_t deadline = timeout_ms >= 0 ? now_ms() + (timeout_ms ? timeout_ms : 1) : 0;
    struct tally_reply *r = calloc(1, sizeof *r);
    if (!r)
        return set_error(c, TALLY_E_NOMEM, "out of memory");
    msgpack_unpacked_init(&r->unpacked);
    for (;;) {
        int e = 0;
        if (c->notes) {
            /* One kept while a response was awaited: decoded into a zone of its own that
             * also holds its bytes (the objects point into them). */
            struct kept_note *k = c->notes;
            c->notes = k->next;
            if (!c->notes)
                c->notes_tail = &c->notes;
            size_t len = k->len, off = 0;
            c->notes_bytes -= len;
            msgpack_unpacked_destroy(&r->unpacked);
            msgpack_zone *z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
            char *copy = z ? msgpack_zone_malloc(z, len) : NULL;
            if (copy)
                memcpy(copy, k->data, len);
            free(k);
            if (!copy ||
                msgpack_unpack(copy, len, &off, z, &r->unpacked.data) != MSGPACK_UNPACK_SUCCESS) {
                if (z)
                    msgpack_zone_free(z);
                tally_reply_free(r);
                return set_error(c, TALLY_E_NOMEM, "out of memory");
            }
            r->unpacked.zone = z;
        } else {
            e = next_message(c, &r->unpacked, deadline, NULL, NULL);
        }
        if (e < 0) {
            tally_reply_free(r);
            return e;
        }
        const msgpack_object *m = &r->unpacked.data;
        uint32_t kind;
        if (m->type != MSGPACK_OBJECT_ARRAY || m->via.array.size != 3 ||
            !as_u32(&m->via.array.ptr[0], &kind) || kind != TALLY_MSG_NOTIFICATION)
            continue; /* a response to an earlier request: not what is waited for here */
        const msgpack_object *name = &m->via.array.ptr[1], *params = &m->via.array.ptr[2];
        if (name->type != MSGPACK_OBJECT_STR)
            continue;
        size_t n =
            name->via.str.size < sizeof r->method - 1 ? name->via.str.size : sizeof r->method - 1;
        memcpy(r->method, name->via.str.ptr, n);
        r->method[n] = 0;
        if (params->type == MSGPACK_OBJECT_ARRAY && params->via.array.size == 1)
            r->result = params->via.array.ptr[0];
        else
            r->result = *params;
        *out = r;
        return 0;
    }
}

int tally_recv(struct tally_client *c, struct tally_reply **out)
{
    return recv_reply(c, out, deadline_after(c->timeout_ms));
}

/*
 * After a failed send, tallyd may already have explained why it closed the connection (e.g.
 * "overloaded", sent as msgid 0 right after accepting): read what is buffered without waiting.
 */
static struct tally_reply *farewell_error(struct tally_client *c)
{
    struct tally_reply *r = NULL;
    char saved[sizeof c->errmsg];
    memcpy(saved, c->errmsg, sizeof saved);
    c->broken = false;
    int e = recv_reply(c, &r, now_ms() + 1);
    c->broken = true;
    memcpy(c->errmsg, saved, sizeof saved);
    if (e == 0 && r->msgid == 0 && r->err != 0)
        return r;
    tally_reply_free(r);
    return NULL;
}

int tally_farewell(struct tally_client *c, struct tally_reply **out)
{
    *out = c->broken ? farewell_error(c) : NULL;
    return *out ? 0 : TALLY_E_IO;
}

int tally_call(struct tally_client *c, const char *method, const char *params, size_t params_len,
               struct tally_reply **out)
{
    *out = NULL;
    int64_t deadline = deadline_after(c->timeout_ms);
    uint32_t id = ++c->last_msgid;
    if (id == 0) /* msgid 0 is where tallyd reports connection-level errors */
        id = ++c->last_msgid;
    int e = send_request(c, id, method, params, params_len, deadline);
    if (e == TALLY_E_IO && c->broken) {
        *out = farewell_error(c);
        return *out ? 0 : e;
    }
    if (e)
        return e;
    for (;;) {
        struct tally_reply *r;
        e = recv_reply(c, &r, deadline);
        if (e)
            return e;
        /* Ours, or a connection-level error (framing, limits) that ends this connection. */
        if (r->msgid == id || (r->msgid == 0 && r->err != 0)) {
            *out = r;
            return 0;
        }
        tally_reply_free(r); /* an answer to an earlier tally_send the caller did not collect */
    }
}

void tally_reply_free(struct tally_reply *r)
{
    if (!r)
        return;
    msgpack_unpacked_destroy(&r->unpacked);
    free(r);
}

const msgpack_object *tally_obj_get(const msgpack_object *map, const char *key)
{
    return mp_map_get(map, key);
}
