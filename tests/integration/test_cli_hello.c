/*
 * Integration: the tally CLI's first round trip, against a stand-in for tallyd on a Unix socket
 * (this program), so what the CLI sends and when is seen exactly.
 *   test_cli_hello TALLY
 * - a read command (`tally stock SKU`) sends hello and its request together: the stand-in
 *   answers nothing until it has both, then answers; the CLI reports the read's answer
 *   (a not_found error here) — one round trip, not two;
 * - hello refused (version_mismatch) with a read pipelined: the CLI reports hello's refusal;
 * - a write (`tally receive`) is not sent before hello is answered: hello refused, the
 *   stand-in sees hello alone, then the CLI closes the connection.
 * The stand-in waits at most 20 s for anything (a broken CLI fails the test, it never hangs).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <msgpack.h>

#include "check.h"

#define WAIT_MS 20000

static char dir[64], sock_path[128];

struct req {
    uint32_t msgid;
    char method[64];
};

/* Reads requests from fd until `want` are in (or EOF, or nothing for WAIT_MS); returns how many. */
static int read_requests(int fd, msgpack_unpacker *u, struct req *out, int want)
{
    int n = 0;
    msgpack_unpacked m;
    msgpack_unpacked_init(&m);
    while (n < want) {
        while (n < want && msgpack_unpacker_next(u, &m) == MSGPACK_UNPACK_SUCCESS) {
            msgpack_object *o = &m.data;
            if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4)
                continue;
            msgpack_object *a = o->via.array.ptr;
            out[n].msgid = (uint32_t)a[1].via.u64;
            size_t len = a[2].via.str.size < 63 ? a[2].via.str.size : 63;
            memcpy(out[n].method, a[2].via.str.ptr, len);
            out[n].method[len] = 0;
            n++;
        }
        if (n >= want)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, WAIT_MS) <= 0)
            break;
        if (!msgpack_unpacker_reserve_buffer(u, 4096))
            break;
        ssize_t r = read(fd, msgpack_unpacker_buffer(u), msgpack_unpacker_buffer_capacity(u));
        if (r <= 0)
            break;
        msgpack_unpacker_buffer_consumed(u, (size_t)r);
    }
    msgpack_unpacked_destroy(&m);
    return n;
}

/* Sends [1, msgid, err, result]: an error {code, message} when code is set, else {}. With
 * `gone_ok`, the CLI may have closed the connection already (it had what it needed): a write
 * refused with EPIPE or ECONNRESET is not a failure then. */
static void answer_to(int fd, uint32_t msgid, const char *code, const char *message, bool gone_ok)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint32(&pk, msgid);
    if (code) {
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "code", 4);
        msgpack_pack_str_with_body(&pk, code, strlen(code));
        msgpack_pack_str_with_body(&pk, "message", 7);
        msgpack_pack_str_with_body(&pk, message, strlen(message));
        msgpack_pack_nil(&pk);
    } else {
        msgpack_pack_nil(&pk);
        msgpack_pack_map(&pk, 0);
    }
    ssize_t w = write(fd, sb.data, sb.size);
    if (!(w < 0 && gone_ok && (errno == EPIPE || errno == ECONNRESET)))
        CHECK_EQ_INT(w, (ssize_t)sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void answer(int fd, uint32_t msgid, const char *code, const char *message)
{
    answer_to(fd, msgid, code, message, false);
}

/* Starts the CLI with argv (after TALLY --socket PATH), its stderr into `errfile`. */
static pid_t run_cli(const char *tally, const char *errfile, const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        const char *args[16] = {tally, "--socket", sock_path, "--timeout", "20"};
        int n = 5;
        for (int i = 0; argv[i] && n < 15; i++)
            args[n++] = argv[i];
        args[n] = NULL;
        int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2);
        if (nul >= 0)
            dup2(nul, 1);
        execv(tally, (char *const *)args);
        _exit(127);
    }
    return pid;
}

static int accept_one(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS) <= 0)
        return -1;
    return accept(lfd, NULL, NULL);
}

static int wait_exit(pid_t pid)
{
    int st = 0;
    for (int i = 0; i < WAIT_MS / 10; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static bool file_has(const char *path, const char *needle)
{
    char buf[4096] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 && strstr(buf, needle) != NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_cli_hello TALLY\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *tally = argv[1];
    snprintf(dir, sizeof dir, "/tmp/tally-clihello.XXXXXX");
    if (!mkdtemp(dir))
        return 2;
    snprintf(sock_path, sizeof sock_path, "%s/s.sock", dir);
    char errfile[128];
    snprintf(errfile, sizeof errfile, "%s/err", dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, sock_path);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4)) {
        perror("listen");
        return 2;
    }

    /* 1. A read: both requests arrive before any answer. */
    {
        const char *args[] = {"stock", "NO-SUCH-SKU", NULL};
        pid_t pid = run_cli(tally, errfile, args);
        int fd = accept_one(lfd);
        CHECK(fd >= 0);
        msgpack_unpacker u;
        msgpack_unpacker_init(&u, 4096);
        struct req r[2] = {0};
        int n = fd >= 0 ? read_requests(fd, &u, r, 2) : 0;
        CHECK_EQ_INT(n, 2); /* a client waiting for hello's answer sends one only */
        CHECK_EQ_STR(r[0].method, "hello");
        CHECK_EQ_STR(r[1].method, "stock.get");
        CHECK(r[0].msgid != r[1].msgid);
        if (n == 2) {
            answer(fd, r[0].msgid, NULL, NULL);
            answer(fd, r[1].msgid, "not_found", "no SKU NO-SUCH-SKU (stand-in)");
        } else if (n == 1) {
            answer(fd, r[0].msgid, NULL, NULL); /* let the old client go on, to end it */
            n += read_requests(fd, &u, r + 1, 1);
            if (n == 2)
                answer(fd, r[1].msgid, "not_found", "no SKU NO-SUCH-SKU (stand-in)");
        }
        CHECK_EQ_INT(wait_exit(pid), 4); /* EXIT_NOT_FOUND: the read's answer was reported */
        CHECK(file_has(errfile, "no SKU NO-SUCH-SKU (stand-in)"));
        msgpack_unpacker_destroy(&u);
        if (fd >= 0)
            close(fd);
    }

    /* 2. hello refused, a read pipelined behind it: hello's refusal is what the CLI reports. */
    {
        const char *args[] = {"status", NULL};
        pid_t pid = run_cli(tally, errfile, args);
        int fd = accept_one(lfd);
        CHECK(fd >= 0);
        msgpack_unpacker u;
        msgpack_unpacker_init(&u, 4096);
        struct req r[2] = {0};
        int n = fd >= 0 ? read_requests(fd, &u, r, 2) : 0;
        CHECK_EQ_INT(n, 2);
        if (n >= 1)
            answer(fd, r[0].msgid, "version_mismatch", "speaks version 99 (stand-in)");
        /* The CLI exits on hello's refusal: it may be gone before this answer is written. */
        if (n == 2)
            answer_to(fd, r[1].msgid, NULL, NULL, true);
        CHECK_EQ_INT(wait_exit(pid), 7); /* EXIT_TRANSPORT: protocol mismatch */
        CHECK(file_has(errfile, "speaks version 99 (stand-in)"));
        msgpack_unpacker_destroy(&u);
        if (fd >= 0)
            close(fd);
    }

    /* 3. A write waits for hello's verdict: refused, the write is never sent. */
    {
        const char *args[] = {"receive", "A-1", "1", "--warehouse", "ES-MAD", NULL};
        pid_t pid = run_cli(tally, errfile, args);
        int fd = accept_one(lfd);
        CHECK(fd >= 0);
        msgpack_unpacker u;
        msgpack_unpacker_init(&u, 4096);
        struct req r[2] = {0};
        int n = fd >= 0 ? read_requests(fd, &u, r, 1) : 0;
        CHECK_EQ_INT(n, 1);
        CHECK_EQ_STR(r[0].method, "hello");
        if (n == 1)
            answer(fd, r[0].msgid, "version_mismatch", "speaks version 99 (stand-in)");
        int rc = wait_exit(pid);
        if (fd >= 0)
            n += read_requests(fd, &u, r + 1, 1); /* to EOF: the CLI has exited */
        CHECK_EQ_INT(n, 1);
        CHECK_EQ_INT(rc, 7);
        msgpack_unpacker_destroy(&u);
        if (fd >= 0)
            close(fd);
    }

    close(lfd);
    unlink(sock_path);
    unlink(errfile);
    rmdir(dir);
    return check_result("test_cli_hello");
}
