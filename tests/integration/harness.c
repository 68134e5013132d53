/* Shared helpers of the C integration tests: see harness.h. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TH_MAX_DAEMONS 8
#define TH_READ_CHUNK (64 * 1024)

static struct th_daemon *registry[TH_MAX_DAEMONS];
static const char *test_name = "test";

/* ---- process and time ---- */

int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

long th_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* Async-signal-safe: kills every daemon and removes the files a daemon's dir can hold. */
static void emergency_cleanup(void)
{
    static const char *const sides[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < TH_MAX_DAEMONS; i++) {
        struct th_daemon *d = registry[i];
        if (!d)
            continue;
        if (d->pid > 0)
            kill(d->pid, SIGKILL);
        unlink(d->sock);
        unlink(d->log);
        if (d->config[0])
            unlink(d->config);
        for (size_t k = 0; k < sizeof sides / sizeof sides[0]; k++) {
            char p[sizeof d->db + 16];
            size_t n = strlen(d->db), m = strlen(sides[k]);
            memcpy(p, d->db, n);
            memcpy(p + n, sides[k], m + 1);
            unlink(p);
        }
        { /* and the lock tallyd holds in its state directory */
            char p[sizeof d->dir + 16];
            size_t n = strlen(d->dir);
            memcpy(p, d->dir, n);
            memcpy(p + n, "/tallyd.lock", sizeof "/tallyd.lock");
            unlink(p);
        }
        rmdir(d->dir);
    }
}

static void on_fatal_signal(int sig)
{
    static const char alarm_msg[] = ": time limit reached, giving up\n";
    static const char sig_msg[] = ": interrupted\n";
    ssize_t w = write(2, test_name, strlen(test_name));
    if (sig == SIGALRM)
        w = write(2, alarm_msg, sizeof alarm_msg - 1);
    else
        w = write(2, sig_msg, sizeof sig_msg - 1);
    (void)w;
    emergency_cleanup();
    _exit(3);
}

static void cleanup_at_exit(void)
{
    for (int i = 0; i < TH_MAX_DAEMONS; i++)
        if (registry[i])
            th_daemon_cleanup(registry[i]);
}

void th_setup(const char *name, unsigned limit_s)
{
    test_name = name;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    atexit(cleanup_at_exit);
    alarm(limit_s);
}

/* ---- the daemon ---- */

int th_daemon_init(struct th_daemon *d, const char *tallyd, const char *name)
{
    memset(d, 0, sizeof *d);
    d->log_level = "warning";
    if (!tallyd || strlen(tallyd) >= sizeof d->tallyd) {
        fprintf(stderr, "th_daemon_init: bad tallyd path\n");
        return -1;
    }
    snprintf(d->tallyd, sizeof d->tallyd, "%s", tallyd);
    if (access(tallyd, X_OK) != 0) {
        fprintf(stderr, "th_daemon_init: %s is not executable: %s\n", tallyd, strerror(errno));
        return -1;
    }
    snprintf(d->dir, sizeof d->dir, "/tmp/tally-%s.XXXXXX", name);
    if (!mkdtemp(d->dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", d->dir, strerror(errno));
        d->dir[0] = 0;
        return -1;
    }
    snprintf(d->sock, sizeof d->sock, "%s/tally.sock", d->dir);
    snprintf(d->db, sizeof d->db, "%s/replica.db", d->dir);
    snprintf(d->log, sizeof d->log, "%s/tallyd.log", d->dir);
    for (int i = 0; i < TH_MAX_DAEMONS; i++)
        if (!registry[i]) {
            registry[i] = d;
            return 0;
        }
    fprintf(stderr, "th_daemon_init: more than %d daemons\n", TH_MAX_DAEMONS);
    return -1;
}

int th_daemon_config(struct th_daemon *d, const char *text)
{
    snprintf(d->config, sizeof d->config, "%s/tallyd.conf", d->dir);
    FILE *f = fopen(d->config, "we");
    if (!f) {
        fprintf(stderr, "%s: %s\n", d->config, strerror(errno));
        return -1;
    }
    fputs(text, f);
    /* tallyd refuses a config file others may read (config_check_files) */
    if (fchmod(fileno(f), 0600) != 0) {
        fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

static void exec_daemon(const struct th_daemon *d)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_DFL);
    int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    for (int i = 3; i < 1024; i++)
        close(i);
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)d->tallyd;
    argv[n++] = "--state-dir";
    argv[n++] = (char *)d->dir;
    argv[n++] = "--socket";
    argv[n++] = (char *)d->sock;
    argv[n++] = "--station";
    argv[n++] = "itest";
    argv[n++] = "--log-level";
    argv[n++] = (char *)(d->log_level ? d->log_level : "warning");
    if (d->config[0]) {
        argv[n++] = "--config";
        argv[n++] = (char *)d->config;
    }
    argv[n] = NULL;
    execv(d->tallyd, argv);
    _exit(127);
}

int th_daemon_start(struct th_daemon *d)
{
    if (d->pid > 0) {
        fprintf(stderr, "th_daemon_start: already running\n");
        return -1;
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        if (getppid() != parent) /* the test died before PDEATHSIG was set */
            _exit(127);
        exec_daemon(d);
    }
    d->pid = pid;
    d->starts++;
    int64_t deadline = th_now_ms() + 10000;
    while (th_now_ms() < deadline) {
        if (!th_daemon_alive(d)) {
            fprintf(stderr, "tallyd exited during start\n");
            th_daemon_dump_log(d, 30);
            return -1;
        }
        int fd = th_connect_fd(d->sock);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        th_sleep_ms(10);
    }
    fprintf(stderr, "tallyd did not accept connections within 10 s\n");
    th_daemon_kill9(d);
    th_daemon_dump_log(d, 30);
    return -1;
}

static void report_end(const struct th_daemon *d, int status)
{
    if (WIFSIGNALED(status))
        fprintf(stderr, "tallyd (pid %d) ended by signal %d\n", (int)d->pid, WTERMSIG(status));
    else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        fprintf(stderr, "tallyd (pid %d) exited with status %d\n", (int)d->pid,
                WEXITSTATUS(status));
}

bool th_daemon_alive(struct th_daemon *d)
{
    if (d->pid <= 0)
        return false;
    int status;
    pid_t r = waitpid(d->pid, &status, WNOHANG);
    if (r == 0)
        return true;
    if (r == d->pid)
        report_end(d, status);
    d->pid = 0;
    return false;
}

int th_daemon_stop(struct th_daemon *d, int timeout_ms)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    int64_t deadline = th_now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(d->pid, &status, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            return status;
        }
        if (r < 0) {
            d->pid = 0;
            return -1;
        }
        if (th_now_ms() >= deadline)
            break;
        th_sleep_ms(5);
    }
    fprintf(stderr, "tallyd did not stop within %d ms of SIGTERM; killing it\n", timeout_ms);
    th_daemon_kill9(d);
    return -1;
}

int th_daemon_reap(struct th_daemon *d, int timeout_ms)
{
    if (d->pid <= 0)
        return -1;
    int64_t deadline = th_now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(d->pid, &status, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            return status;
        }
        if (r < 0 && errno != EINTR) {
            d->pid = 0;
            return -1;
        }
        if (th_now_ms() >= deadline)
            break;
        th_sleep_ms(2);
    }
    th_daemon_kill9(d);
    return -1;
}

pid_t th_signal_later(pid_t pid, int sig, long delay_us)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t k = fork();
    if (k != 0)
        return k;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    struct timespec ts = {.tv_sec = delay_us / 1000000, .tv_nsec = (delay_us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    kill(pid, sig);
    _exit(0);
}

void th_reap(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

void th_daemon_kill9(struct th_daemon *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGKILL);
    while (waitpid(d->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    d->pid = 0;
}

void th_daemon_dump_log(const struct th_daemon *d, int max_lines)
{
    FILE *f = fopen(d->log, "re");
    if (!f)
        return;
    /* Two passes: count, then print the tail. */
    char line[2048];
    long total = 0;
    while (fgets(line, sizeof line, f))
        total++;
    rewind(f);
    long skip = total > max_lines ? total - max_lines : 0, i = 0;
    fprintf(stderr, "---- last %ld lines of %s ----\n", total - skip, d->log);
    while (fgets(line, sizeof line, f))
        if (i++ >= skip)
            fputs(line, stderr);
    fprintf(stderr, "----\n");
    fclose(f);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void th_daemon_cleanup(struct th_daemon *d)
{
    th_daemon_kill9(d);
    if (d->dir[0]) {
        nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        d->dir[0] = 0;
    }
    for (int i = 0; i < TH_MAX_DAEMONS; i++)
        if (registry[i] == d)
            registry[i] = NULL;
}

/* ---- connections ---- */

const char *th_outcome(int r)
{
    switch (r) {
    case TH_OK:
        return "ok";
    case TH_MSG:
        return "message";
    case TH_ERRRESP:
        return "error response";
    case TH_EOF:
        return "eof";
    case TH_RESET:
        return "reset";
    case TH_TIMEOUT:
        return "timeout";
    case TH_IOERR:
        return "i/o error";
    case TH_BADDATA:
        return "not MessagePack";
    case TH_NOTRESP:
        return "not the expected response";
    }
    return "?";
}

int th_connect_fd(const char *sock)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int th_connect(struct th_conn *c, const char *sock)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->next_id = 1;
    if (!msgpack_unpacker_init(&c->unp, TH_READ_CHUNK))
        return -1;
    msgpack_unpacked_init(&c->msg);
    c->inited = true;
    c->fd = th_connect_fd(sock);
    return c->fd >= 0 ? 0 : -1;
}

void th_close(struct th_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->inited) {
        msgpack_unpacked_destroy(&c->msg);
        msgpack_unpacker_destroy(&c->unp);
        c->inited = false;
    }
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - th_now_ms();
    return left < 0 ? 0 : (int)left;
}

int th_send_fd(int fd, const void *p, size_t n, int timeout_ms)
{
    if (fd < 0)
        return TH_IOERR;
    const char *b = p;
    int64_t deadline = th_now_ms() + timeout_ms;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            return TH_RESET;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return TH_IOERR;
        int left = remaining_ms(deadline);
        if (left == 0)
            return TH_TIMEOUT;
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int pr = poll(&pf, 1, left);
        if (pr < 0 && errno != EINTR)
            return TH_IOERR;
    }
    return 0;
}

int th_send(struct th_conn *c, const void *p, size_t n, int timeout_ms)
{
    return th_send_fd(c->fd, p, n, timeout_ms);
}

int th_recv(struct th_conn *c, int timeout_ms)
{
    if (!c->inited)
        return TH_IOERR;
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        msgpack_unpack_return ur = msgpack_unpacker_next(&c->unp, &c->msg);
        if (ur == MSGPACK_UNPACK_SUCCESS)
            return TH_MSG;
        if (ur == MSGPACK_UNPACK_PARSE_ERROR)
            return TH_BADDATA;
        if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
            return TH_IOERR;
        if (c->fd < 0)
            return TH_IOERR;
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pf, 1, remaining_ms(deadline));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return TH_IOERR;
        if (pr == 0)
            return TH_TIMEOUT;
        if (!msgpack_unpacker_reserve_buffer(&c->unp, TH_READ_CHUNK))
            return TH_IOERR;
        ssize_t got = recv(c->fd, msgpack_unpacker_buffer(&c->unp),
                           msgpack_unpacker_buffer_capacity(&c->unp), MSG_DONTWAIT);
        if (got == 0)
            return TH_EOF;
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return errno == ECONNRESET || errno == EPIPE ? TH_RESET : TH_IOERR;
        }
        msgpack_unpacker_buffer_consumed(&c->unp, (size_t)got);
    }
}

int th_wait_closed(struct th_conn *c, int timeout_ms)
{
    return th_recv(c, timeout_ms); /* a message, or how the stream ended */
}

/* ---- responses ---- */

bool th_obj_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

bool th_obj_int(const msgpack_object *o, long long *v)
{
    if (!o)
        return false;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX) {
        *v = (long long)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = (long long)o->via.i64;
        return true;
    }
    return false;
}

const msgpack_object *th_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (th_obj_str_eq(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

bool th_get_int(const msgpack_object *map, const char *key, long long *v)
{
    return th_obj_int(th_get(map, key), v);
}

bool th_get_bool(const msgpack_object *map, const char *key, bool *v)
{
    const msgpack_object *o = th_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *v = o->via.boolean;
    return true;
}

bool th_get_str(const msgpack_object *map, const char *key, char *buf, size_t cap)
{
    const msgpack_object *o = th_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_STR || cap == 0)
        return false;
    size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
    memcpy(buf, o->via.str.ptr, n);
    buf[n] = 0;
    return true;
}

int th_parse_response(const msgpack_object *o, struct th_resp *r)
{
    memset(r, 0, sizeof *r);
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4) {
        snprintf(r->code, sizeof r->code, "(not an array of 4)");
        return -1;
    }
    const msgpack_object *a = o->via.array.ptr;
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 != 1) {
        snprintf(r->code, sizeof r->code, "(type is not 1)");
        return -1;
    }
    if (a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[1].via.u64 > UINT32_MAX) {
        snprintf(r->code, sizeof r->code, "(bad msgid)");
        return -1;
    }
    r->msgid = a[1].via.u64;
    bool err_nil = a[2].type == MSGPACK_OBJECT_NIL, res_nil = a[3].type == MSGPACK_OBJECT_NIL;
    if (err_nil == res_nil) { /* exactly one of error and result is nil */
        snprintf(r->code, sizeof r->code,
                 err_nil ? "(error and result both nil)" : "(error and result both set)");
        return -1;
    }
    if (err_nil) {
        r->result = &a[3];
        return 0;
    }
    r->is_error = true;
    r->error = &a[2];
    if (!th_get_str(&a[2], "code", r->code, sizeof r->code) || !r->code[0]) {
        snprintf(r->code, sizeof r->code, "(error without a code)");
        return -1;
    }
    if (!th_get_str(&a[2], "message", r->message, sizeof r->message)) {
        snprintf(r->code, sizeof r->code, "(error without a message)");
        return -1;
    }
    return 0;
}

/* ---- packing ---- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void th_vpack_map(msgpack_packer *pk, const char *fmt, va_list ap)
{
    size_t n = fmt ? strlen(fmt) : 0;
    msgpack_pack_map(pk, n);
    for (size_t i = 0; i < n; i++) {
        pack_str(pk, va_arg(ap, const char *));
        switch (fmt[i]) {
        case 's':
            pack_str(pk, va_arg(ap, const char *));
            break;
        case 'i':
            msgpack_pack_long_long(pk, va_arg(ap, long long));
            break;
        case 'u':
            msgpack_pack_unsigned_long_long(pk, va_arg(ap, unsigned long long));
            break;
        case 'b':
            if (va_arg(ap, int))
                msgpack_pack_true(pk);
            else
                msgpack_pack_false(pk);
            break;
        default: /* 'n' */
            msgpack_pack_nil(pk);
            break;
        }
    }
}

void th_pack_map(msgpack_packer *pk, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    th_vpack_map(pk, fmt, ap);
    va_end(ap);
}

static void pack_head(msgpack_packer *pk, uint32_t msgid, const char *method)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, 0);
    msgpack_pack_uint32(pk, msgid);
    pack_str(pk, method);
    msgpack_pack_array(pk, 1);
}

void th_pack_import_catalog(msgpack_sbuffer *sb, uint32_t msgid, const char *prefix, int nrows,
                            bool bad_last)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, msgid);
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "import", 6);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "kind", 4);
    msgpack_pack_str(&pk, 7);
    msgpack_pack_str_body(&pk, "catalog", 7);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "rows", 4);
    msgpack_pack_array(&pk, (uint32_t)nrows);
    for (int i = 0; i < nrows; i++) {
        char sku[80];
        snprintf(sku, sizeof sku, "%s-%d", prefix, i);
        th_pack_map(&pk, "sssis", "sku", sku, "product_id", "P-1", "title", "Imported item",
                    "price_minor", 100LL, "currency", bad_last && i == nrows - 1 ? "eur" : "EUR");
    }
}

void th_pack_request(msgpack_sbuffer *sb, uint32_t msgid, const char *method, const char *fmt, ...)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    pack_head(&pk, msgid, method);
    va_list ap;
    va_start(ap, fmt);
    th_vpack_map(&pk, fmt, ap);
    va_end(ap);
}

int th_read_response(struct th_conn *c, int timeout_ms, struct th_resp *r)
{
    memset(r, 0, sizeof *r);
    int rr = th_recv(c, timeout_ms);
    if (rr != TH_MSG)
        return rr;
    if (th_parse_response(&c->msg.data, r) != 0)
        return TH_NOTRESP;
    return r->is_error ? TH_ERRRESP : TH_OK;
}

static int call_sb(struct th_conn *c, int timeout_ms, struct th_resp *r, uint32_t msgid,
                   msgpack_sbuffer *sb)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    int s = th_send(c, sb->data, sb->size, timeout_ms);
    if (s != 0) {
        memset(r, 0, sizeof *r);
        /* The daemon may have answered (an error) before closing: read it if so. */
        if (s == TH_RESET) {
            int rr = th_read_response(c, 100, r);
            return rr == TH_ERRRESP ? rr : s;
        }
        return s;
    }
    int rr = th_read_response(c, remaining_ms(deadline), r);
    if ((rr == TH_OK || rr == TH_ERRRESP) && r->msgid != msgid)
        return TH_NOTRESP;
    return rr;
}

int th_call(struct th_conn *c, int timeout_ms, struct th_resp *r, const char *method,
            const char *fmt, ...)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t id = c->next_id++;
    pack_head(&pk, id, method);
    va_list ap;
    va_start(ap, fmt);
    th_vpack_map(&pk, fmt, ap);
    va_end(ap);
    int rr = call_sb(c, timeout_ms, r, id, &sb);
    msgpack_sbuffer_destroy(&sb);
    return rr;
}

int th_call_raw(struct th_conn *c, int timeout_ms, struct th_resp *r, const char *method,
                const void *params, size_t params_len)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t id = c->next_id++;
    pack_head(&pk, id, method);
    msgpack_sbuffer_write(&sb, params, params_len);
    int rr = call_sb(c, timeout_ms, r, id, &sb);
    msgpack_sbuffer_destroy(&sb);
    return rr;
}

int th_import(struct th_conn *c, const char *kind, uint32_t nrows, const msgpack_sbuffer *rows,
              struct th_resp *r)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "kind");
    pack_str(&pk, kind);
    pack_str(&pk, "rows");
    msgpack_pack_array(&pk, nrows);
    msgpack_sbuffer_write(&sb, rows->data, rows->size);
    int rr = th_call_raw(c, 30000, r, "import", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rr != TH_OK) {
        fprintf(stderr, "import %s: %s %s %s\n", kind, th_outcome(rr), r->code, r->message);
        return rr;
    }
    long long n = -1;
    if (!th_get_int(r->result, "rows", &n) || n != nrows) {
        fprintf(stderr, "import %s: answered rows %lld, sent %u\n", kind, n, nrows);
        return TH_NOTRESP;
    }
    return TH_OK;
}

void th_rows_init(struct th_rows *rows)
{
    msgpack_sbuffer_init(&rows->sb);
    msgpack_packer_init(&rows->pk, &rows->sb, msgpack_sbuffer_write);
    rows->n = 0;
}

void th_rows_add(struct th_rows *rows, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    th_vpack_map(&rows->pk, fmt, ap);
    va_end(ap);
    rows->n++;
}

void th_rows_free(struct th_rows *rows)
{
    msgpack_sbuffer_destroy(&rows->sb);
    rows->n = 0;
}

int th_seed(const char *sock, const struct th_rows *warehouses, const struct th_rows *catalog,
            const struct th_rows *stock)
{
    struct th_conn c;
    if (th_connect(&c, sock) != 0) {
        fprintf(stderr, "seed: cannot connect to %s\n", sock);
        th_close(&c);
        return -1;
    }
    const char *kind[3] = {"warehouses", "catalog", "stock"};
    const struct th_rows *rows[3] = {warehouses, catalog, stock};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        struct th_resp r;
        if (rows[i] && rows[i]->n > 0 &&
            th_import(&c, kind[i], rows[i]->n, &rows[i]->sb, &r) != TH_OK) {
            fprintf(stderr, "seed: importing %s failed (said above)\n", kind[i]);
            rc = -1;
        }
    }
    th_close(&c);
    return rc;
}

int th_seed_madrid(const char *sock, const char *prefix, int first, int n, const char *title,
                   long long on_hand)
{
    struct th_rows wh, cat, stock;
    th_rows_init(&wh);
    th_rows_init(&cat);
    th_rows_init(&stock);
    th_rows_add(&wh, "sss", "code", "ES-MAD", "name", "Madrid", "country", "ES");
    for (int i = first; i < first + n; i++) {
        char sku[64];
        snprintf(sku, sizeof sku, "%s%d", prefix, i);
        th_rows_add(&cat, "sssis", "sku", sku, "product_id", "P-1", "title", title, "price_minor",
                    100LL, "currency", "EUR");
        th_rows_add(&stock, "ssi", "sku", sku, "warehouse", "ES-MAD", "on_hand", on_hand);
    }
    int rc = th_seed(sock, &wh, &cat, &stock);
    th_rows_free(&wh);
    th_rows_free(&cat);
    th_rows_free(&stock);
    return rc;
}

bool th_hello_ok(struct th_conn *c, int timeout_ms)
{
    struct th_resp r;
    int rr = th_call(c, timeout_ms, &r, "hello", "i", "version", 1LL);
    if (rr != TH_OK) {
        fprintf(stderr, "hello: %s %s %s\n", th_outcome(rr), r.code, r.message);
        return false;
    }
    long long proto = 0;
    char server[64] = "";
    if (!th_get_int(r.result, "protocol", &proto) || proto != 1 ||
        !th_get_str(r.result, "server", server, sizeof server) ||
        strncmp(server, "tallyd ", 7) != 0) {
        fprintf(stderr, "hello: unexpected result (protocol %lld, server '%s')\n", proto, server);
        return false;
    }
    return true;
}

long long th_status_int(const char *sock, const char *key, int timeout_ms)
{
    struct th_conn c;
    struct th_resp r;
    long long v = -1;
    if (th_connect(&c, sock) == 0 && th_call(&c, timeout_ms, &r, "status", "") == TH_OK)
        th_get_int(r.result, key, &v);
    th_close(&c);
    return v;
}

bool th_status_ok(const char *sock)
{
    struct th_conn c;
    bool ok = false;
    if (th_connect(&c, sock) != 0) {
        fprintf(stderr, "status: cannot connect to %s: %s\n", sock, strerror(errno));
        th_close(&c);
        return false;
    }
    struct th_resp r;
    int rr = th_call(&c, 10000, &r, "status", "");
    if (rr != TH_OK) {
        fprintf(stderr, "status: %s %s %s\n", th_outcome(rr), r.code, r.message);
    } else {
        char station[80] = "", server[64] = "";
        long long conns = -1;
        const msgpack_object *replica = th_get(r.result, "replica");
        ok = th_get_str(r.result, "station", station, sizeof station) &&
             !strcmp(station, "itest") && th_get_str(r.result, "server", server, sizeof server) &&
             !strncmp(server, "tallyd ", 7) && th_get_int(r.result, "connections", &conns) &&
             conns >= 1 && replica && replica->type == MSGPACK_OBJECT_MAP;
        if (!ok)
            fprintf(stderr, "status: unexpected result (station '%s', server '%s', conns %lld)\n",
                    station, server, conns);
    }
    th_close(&c);
    return ok;
}
