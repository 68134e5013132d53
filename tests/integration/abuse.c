/*
 * Protocol abuse against a real tallyd: oversized frames, garbage, truncated frames, deep
 * nesting, wrong types, too many connections, a client that never reads. After each case a
 * fresh connection must still be answered, and a bystander connection opened at the start must
 * still work at the end: one bad client never disturbs the others.
 *   abuse TALLYD
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "check.h"
#include "codec.h"

static char dir[64], sock_path[100];
static pid_t daemon_pid;

static int connect_sock(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one message within timeout_ms into *out; 1 on success, 0 on EOF, -1 on timeout/error. */
static int recv_msg(int fd, msgpack_unpacker *u, msgpack_unpacked *out, int timeout_ms)
{
    for (;;) {
        msgpack_unpack_return r = msgpack_unpacker_next(u, out);
        if (r == MSGPACK_UNPACK_SUCCESS)
            return 1;
        if (r < 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0)
            return -1;
        msgpack_unpacker_reserve_buffer(u, 65536);
        ssize_t n = recv(fd, msgpack_unpacker_buffer(u), msgpack_unpacker_buffer_capacity(u), 0);
        if (n == 0)
            return 0;
        if (n < 0)
            return -1;
        msgpack_unpacker_buffer_consumed(u, (size_t)n);
    }
}

/* The error code of a response, or "" when it is a success. */
static void error_code(const msgpack_object *o, char *code, size_t cap)
{
    code[0] = 0;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4)
        return;
    const msgpack_object *c = mp_map_get(&o->via.array.ptr[2], "code");
    if (c && c->type == MSGPACK_OBJECT_STR)
        snprintf(code, cap, "%.*s", (int)c->via.str.size, c->via.str.ptr);
}

static void pack_request(msgpack_sbuffer *sb, uint32_t id, const char *method)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, id);
    mp_pack_strz(&pk, method);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 0);
}

/* Sends bytes on a new connection and returns the first answer's error code ("" = success,
 * "EOF" = closed without answer, "TIMEOUT"); *closed tells whether the server then closed. */
static void one_shot(const void *bytes, size_t n, char *code, size_t cap, int *closed,
                     int wait_close)
{
    int fd = connect_sock();
    msgpack_unpacker u;
    msgpack_unpacked m;
    msgpack_unpacker_init(&u, 65536);
    msgpack_unpacked_init(&m);
    snprintf(code, cap, "NOCONN");
    *closed = 0;
    if (fd >= 0) {
        send_all(fd, bytes, n);
        int r = recv_msg(fd, &u, &m, 5000);
        if (r == 1)
            error_code(&m.data, code, cap);
        else
            snprintf(code, cap, "%s", r == 0 ? "EOF" : "TIMEOUT");
        char b;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        /* A close with our unread bytes still in the daemon's buffer arrives as a reset. */
        ssize_t got = -2;
        if (r != 0 && wait_close && poll(&p, 1, 2000) == 1)
            got = recv(fd, &b, 1, 0);
        *closed = r == 0 || got == 0 || (got < 0 && got != -2 && errno == ECONNRESET);
        close(fd);
    }
    msgpack_unpacked_destroy(&m);
    msgpack_unpacker_destroy(&u);
}

/* A fresh connection gets a correct answer to `status`. */
static int daemon_serves(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_request(&sb, 77, "status");
    char code[64];
    int closed;
    one_shot(sb.data, sb.size, code, sizeof code, &closed, 0);
    msgpack_sbuffer_destroy(&sb);
    return code[0] == 0 && !closed;
}

static void expect(const char *what, const void *bytes, size_t n, const char *want_code,
                   int want_closed)
{
    char code[64];
    int closed;
    one_shot(bytes, n, code, sizeof code, &closed, want_closed);
    if (strcmp(code, want_code) != 0 || closed != want_closed) {
        fprintf(stderr, "%s: got code '%s' closed=%d, want '%s' closed=%d\n", what, code, closed,
                want_code, want_closed);
        CHECK(!"unexpected answer");
    } else {
        CHECK(1);
    }
    CHECK(daemon_serves());
}

static int start_daemon(const char *tallyd, const char *config)
{
    char state[128];
    snprintf(state, sizeof state, "%s/state", dir);
    daemon_pid = fork();
    if (daemon_pid == 0) {
        execl(tallyd, tallyd, "--state-dir", state, "--socket", sock_path, "--config", config,
              "--log-level", "error", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) {
        int fd = connect_sock();
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(25000);
    }
    return -1;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static void case_framing(void)
{
    /* (a) a str32 claiming 2 MiB: refused from its header, before the data arrives */
    unsigned char big[] = {0x94, 0x00, 0x01, 0xdb, 0x00, 0x20, 0x00, 0x00};
    expect("str32 of 2 MiB", big, sizeof big, "too_large", 1);
    /* an array of 1.5 MiB of small ints, each byte real */
    size_t n = 1536 * 1024;
    unsigned char *arr = malloc(n + 5);
    arr[0] = 0xdd;
    arr[1] = (unsigned char)(n >> 24);
    arr[2] = (unsigned char)(n >> 16);
    arr[3] = (unsigned char)(n >> 8);
    arr[4] = (unsigned char)n;
    memset(arr + 5, 0x01, n);
    expect("1.5 MiB array", arr, n + 5, "too_large", 1);
    free(arr);
    /* (b) garbage */
    unsigned char garbage[65536];
    srand(42);
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (unsigned char)rand();
    garbage[0] = 0xc1; /* never valid MessagePack */
    expect("garbage", garbage, sizeof garbage, "malformed", 1);
    /* (d) deep nesting: 100 arrays in the params */
    unsigned char deep[120];
    size_t k = 0;
    deep[k++] = 0x94;
    deep[k++] = 0x00;
    deep[k++] = 0x01;
    deep[k++] = 0xa6;
    memcpy(deep + k, "status", 6);
    k += 6;
    for (int i = 0; i < 100; i++)
        deep[k++] = 0x91;
    deep[k++] = 0xc0;
    expect("100 nested arrays", deep, k, "too_deep", 1);
    /* (f) a response sent by a client; a bare integer */
    unsigned char resp[] = {0x94, 0x01, 0x01, 0xc0, 0xc0};
    expect("a response from a client", resp, sizeof resp, "bad_request", 1);
    unsigned char bare[] = {0x2a};
    expect("a bare integer", bare, sizeof bare, "bad_request", 1);
}

/* (e) errors inside well-formed requests are answered and the connection stays usable. */
static void case_wrong_types(void)
{
    struct {
        const char *what, *code;
        unsigned char bytes[64];
        size_t n;
    } cases[] = {
        {"method as int", "bad_request", {0x94, 0x00, 0x01, 0x07, 0x91, 0x80}, 6},
        {"msgid as string",
         "bad_request",
         {0x94, 0x00, 0xa1, 'x', 0xa5, 'h', 'e', 'l', 'l', 'o', 0x91, 0x80},
         12},
        {"params not an array",
         "bad_request",
         {0x94, 0x00, 0x01, 0xa5, 'h', 'e', 'l', 'l', 'o', 0x80},
         10},
        {"params [1]",
         "bad_request",
         {0x94, 0x00, 0x01, 0xa5, 'h', 'e', 'l', 'l', 'o', 0x91, 0x01},
         11},
        {"three elements", "bad_request", {0x93, 0x00, 0x01, 0xa5, 'h', 'e', 'l', 'l', 'o'}, 9},
        {"unknown method",
         "unknown_method",
         {0x94, 0x00, 0x01, 0xa3, 'n', 'o', 'p', 0x91, 0x80},
         9},
        {"sku as int",
         "invalid_params",
         {0x94, 0x00, 0x01, 0xa9, 's',  't',  'o', 'c', 'k', '.',
          'g',  'e',  't',  0x91, 0x81, 0xa3, 's', 'k', 'u', 0x05},
         20},
        {"msgid 2^32",
         "bad_request",
         {0x94, 0x00, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0xa5, 'h', 'e', 'l', 'l', 'o', 0x91, 0x80},
         19},
        {"msgid 2^32-1",
         "",
         {0x94, 0x00, 0xce, 0xff, 0xff, 0xff, 0xff, 0xa5, 'h', 'e', 'l', 'l', 'o', 0x91, 0x80},
         15},
    };
    int fd = connect_sock();
    msgpack_unpacker u;
    msgpack_unpacked m;
    msgpack_unpacker_init(&u, 65536);
    msgpack_unpacked_init(&m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char code[64] = "EOF";
        send_all(fd, cases[i].bytes, cases[i].n);
        if (recv_msg(fd, &u, &m, 5000) == 1)
            error_code(&m.data, code, sizeof code);
        if (strcmp(code, cases[i].code) != 0)
            fprintf(stderr, "%s: got '%s', want '%s'\n", cases[i].what, code, cases[i].code);
        CHECK_EQ_STR(code, cases[i].code);
    }
    /* The same connection still answers. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_request(&sb, 5, "hello");
    send_all(fd, sb.data, sb.size);
    char code[64] = "EOF";
    CHECK_EQ_INT(recv_msg(fd, &u, &m, 5000), 1);
    error_code(&m.data, code, sizeof code);
    CHECK_EQ_STR(code, "");
    msgpack_sbuffer_destroy(&sb);
    close(fd);
    msgpack_unpacked_destroy(&m);
    msgpack_unpacker_destroy(&u);
    CHECK(daemon_serves());
}

/* (c) truncated frames: half then close; half, a pause, the rest; one byte at a time. */
static void case_truncated(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_request(&sb, 9, "status");
    int fd = connect_sock();
    send_all(fd, sb.data, sb.size / 2);
    close(fd);
    CHECK(daemon_serves());

    msgpack_unpacker u;
    msgpack_unpacked m;
    msgpack_unpacker_init(&u, 65536);
    msgpack_unpacked_init(&m);
    fd = connect_sock();
    send_all(fd, sb.data, sb.size / 2);
    usleep(500000);
    send_all(fd, sb.data + sb.size / 2, sb.size - sb.size / 2);
    CHECK_EQ_INT(recv_msg(fd, &u, &m, 5000), 1);
    char code[64] = "x";
    error_code(&m.data, code, sizeof code);
    CHECK_EQ_STR(code, "");
    for (size_t i = 0; i < sb.size; i++) {
        send_all(fd, sb.data + i, 1);
        usleep(2000);
    }
    CHECK_EQ_INT(recv_msg(fd, &u, &m, 5000), 1);
    error_code(&m.data, code, sizeof code);
    CHECK_EQ_STR(code, "");
    close(fd);
    msgpack_unpacked_destroy(&m);
    msgpack_unpacker_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

/* (h) 1000 pipelined requests in one write: 1000 answers, every msgid once. */
static void case_pipelining(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (uint32_t id = 1; id <= 1000; id++)
        pack_request(&sb, id, id % 3 ? "hello" : "status");
    int fd = connect_sock();
    send_all(fd, sb.data, sb.size);
    static int seen[1001];
    memset(seen, 0, sizeof seen);
    msgpack_unpacker u;
    msgpack_unpacked m;
    msgpack_unpacker_init(&u, 65536);
    msgpack_unpacked_init(&m);
    int got = 0;
    while (got < 1000 && recv_msg(fd, &u, &m, 5000) == 1) {
        const msgpack_object *o = &m.data;
        if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 4 &&
            o->via.array.ptr[1].via.u64 <= 1000 && o->via.array.ptr[2].type == MSGPACK_OBJECT_NIL)
            seen[o->via.array.ptr[1].via.u64]++;
        got++;
    }
    CHECK_EQ_INT(got, 1000);
    int once = 0;
    for (int i = 1; i <= 1000; i++)
        once += seen[i] == 1;
    CHECK_EQ_INT(once, 1000);
    close(fd);
    msgpack_unpacked_destroy(&m);
    msgpack_unpacker_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

/* Sends hello on fd and returns its error code ("" success, "EOF", "TIMEOUT"). */
static void hello_on(int fd, char *code, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_request(&sb, 3, "hello");
    msgpack_unpacker u;
    msgpack_unpacked m;
    msgpack_unpacker_init(&u, 4096);
    msgpack_unpacked_init(&m);
    send_all(fd, sb.data, sb.size);
    int r = recv_msg(fd, &u, &m, 3000);
    if (r == 1)
        error_code(&m.data, code, cap);
    else
        snprintf(code, cap, "%s", r == 0 ? "EOF" : "TIMEOUT");
    msgpack_unpacked_destroy(&m);
    msgpack_unpacker_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

/* (g) more connections than max_connections (32 in this test's config, one of them the
 * bystander): opened one by one, each either served or told `overloaded` and closed. */
static void case_connections(void)
{
    enum { MAX = 32, OPEN = MAX + 20 };
    int fds[OPEN], served = 0, overloaded = 0;
    usleep(300000); /* earlier cases' connections finish closing */
    for (int i = 0; i < OPEN; i++) {
        char code[64];
        fds[i] = connect_sock();
        hello_on(fds[i], code, sizeof code);
        served += code[0] == 0;
        overloaded += strcmp(code, "overloaded") == 0;
        if (code[0]) {
            close(fds[i]);
            fds[i] = -1;
            usleep(20000); /* its slot is given back once the close is done */
        }
    }
    CHECK_EQ_INT(served, MAX - 1);
    CHECK_EQ_INT(overloaded, OPEN - (MAX - 1));
    /* Those served are still served. */
    int fine = 0;
    for (int i = 0; i < OPEN; i++) {
        if (fds[i] < 0)
            continue;
        char code[64];
        hello_on(fds[i], code, sizeof code);
        fine += code[0] == 0;
        close(fds[i]);
    }
    CHECK_EQ_INT(fine, MAX - 1);
    usleep(200000);
    CHECK(daemon_serves());
}

/* (i) a client that sends and never reads is cut off at max_output_bytes (64 KiB here); the
 * daemon's memory stays bounded and everyone else is served. */
static void case_slow_reader(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (uint32_t id = 1; id <= 200; id++)
        pack_request(&sb, id, "status");
    int fd = connect_sock();
    fcntl(fd, F_SETFL, O_NONBLOCK);
    int setsz = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &setsz, sizeof setsz);
    long before = rss_kb(daemon_pid);
    int cut = 0;
    for (int round = 0; round < 500 && !cut; round++) {
        if (send(fd, sb.data, sb.size, MSG_NOSIGNAL) < 0 && errno != EAGAIN)
            cut = 1;
        if (round % 50 == 0)
            CHECK(daemon_serves());
        usleep(2000);
    }
    long after = rss_kb(daemon_pid);
    CHECK(cut);
    /* Under AddressSanitizer freed memory sits in a quarantine (256 MB by default) before it
     * is reused, so the daemon's resident size says little; without it, it must stay small. */
#if defined(__SANITIZE_ADDRESS__)
    CHECK(after - before < 400 * 1024);
#else
    CHECK(after - before < 32 * 1024);
#endif
    close(fd);
    msgpack_sbuffer_destroy(&sb);
    CHECK(daemon_serves());
}

int main(int argc, char **argv)
{
    umask(077); /* tallyd refuses config and secret files others may read */
    if (argc != 2) {
        fprintf(stderr, "usage: abuse TALLYD\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "/tmp/tally-abuse.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(sock_path, sizeof sock_path, "%s/tally.sock", dir);
    char config[128];
    snprintf(config, sizeof config, "%s/tallyd.conf", dir);
    FILE *f = fopen(config, "w");
    fprintf(f, "[limits]\nmax_connections = 32\nmax_output_bytes = 65536\n");
    fclose(f);
    if (start_daemon(argv[1], config) != 0) {
        fprintf(stderr, "tallyd did not start\n");
        return 1;
    }
    int bystander = connect_sock();
    CHECK(daemon_serves());
    case_framing();
    case_wrong_types();
    case_truncated();
    case_pipelining();
    case_connections();
    case_slow_reader();
    /* The bystander, idle all along, is still served. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_request(&sb, 1, "hello");
    msgpack_unpacker u;
    msgpack_unpacked m;
    msgpack_unpacker_init(&u, 4096);
    msgpack_unpacked_init(&m);
    send_all(bystander, sb.data, sb.size);
    CHECK_EQ_INT(recv_msg(bystander, &u, &m, 5000), 1);
    msgpack_unpacked_destroy(&m);
    msgpack_unpacker_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    close(bystander);
    kill(daemon_pid, SIGTERM);
    int status = 0;
    waitpid(daemon_pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_result("abuse");
}
