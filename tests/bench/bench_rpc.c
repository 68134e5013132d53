/*
 * bench_rpc: load on tallyd's socket the way redis-benchmark loads Redis: one thread, C
 * connections, each keeping P requests in flight, for D seconds, waiting on them with epoll (as
 * redis-benchmark's event loop does on Linux). Prints requests per second and latency
 * percentiles.
 *
 *   bench_rpc SOCKET [-c CONNECTIONS] [-P PIPELINE] [-d SECONDS] [-m METHOD] [-k SKU]
 *             [-a KEY=VALUE]... [-n COUNT] [--until-file F] [--allow-errors] [--kv PREFIX]
 *             [--size] [--rate R] [--resp KEY] [--keys-file F]
 *
 * -a adds a parameter to the request (VALUE sent as an integer when it is one, true/false as a
 * boolean, else as a string; -k "" leaves out sku), e.g. -m stock.move -a kind=receive
 * -a warehouse=ES-MAD -a qty=1 records one movement per request. -n stops after COUNT answers.
 * --until-file stops as soon as F exists (checked every 10 ms; -d stays the upper bound), so a
 * script can measure latency during a window (a sync, a purge). --allow-errors counts error
 * answers (e.g. not_found before a sync brought the SKU) without failing. --kv also prints the
 * figures as lines `PREFIX_rps`, `PREFIX_p50_us`, `PREFIX_p99_us`, `PREFIX_p999_us`,
 * `PREFIX_max_us`, `PREFIX_n`, `PREFIX_errors`. --size sends one request and prints the
 * answer's size in bytes (`answer_bytes N`), to size a same-size anchor value. --rate R paces
 * the requests at R a second in all (the k-th request is not sent before start + k/R; with one
 * connection and -P 1 a light, steady reader, as scripts/soak.sh uses; latency is still measured
 * from each request's send).
 *
 * --resp KEY loads a Redis server's socket instead, with the same connections, pipelines, timing
 * and percentiles: each request is `GET KEY` in RESP, each answer a bulk string (a nil or an
 * error answer counts as an error). bench_stockget.sh measures Redis GET's latency at one
 * connection so, beside stock.get's, by one client to the microsecond (redis-benchmark keeps
 * latencies in buckets of 8 µs at that size).
 *
 * --keys-file F asks for the keys listed in F (one a line, up to 100,000; each the SKU of -k, or
 * the KEY of --resp), in turn: each connection starts at its own place in the list and takes the
 * next key for each request it sends. --kv also prints `PREFIX_cpu_pct`: this client's CPU time
 * (user and system) over the run, in percent of one CPU, which says when the client, not the
 * server, is the limit.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "codec.h"
#include "tally/protocol.h"
#include "wire.h"

struct bconn {
    int fd;
    msgpack_unpacker unp;
    char *rbuf; /* the bytes read and not parsed yet (unp: --size only) */
    size_t rlen;
    uint64_t *sent_at; /* ring of send times, P entries */
    unsigned head, inflight;
    unsigned next_key; /* --keys-file: the key of its next request */
};

/* Appends one request for `key` to req: stock.get's (or METHOD's, with the -a parameters; an
 * empty key leaves sku out), or with `resp` Redis's GET key. 0, or -1 (said why). */
static int pack_request(msgpack_sbuffer *req, const char *method, const char *key, bool resp,
                        const char **extra, int nextra)
{
    if (resp) {
        char line[600];
        int n = snprintf(line, sizeof line, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", strlen(key), key);
        if (n < 0 || (size_t)n >= sizeof line) {
            fprintf(stderr, "bench_rpc: --resp KEY too long\n");
            return -1;
        }
        msgpack_sbuffer_write(req, line, (size_t)n);
        return 0;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, req, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, 1);
    mp_pack_strz(&pk, method);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, (uint32_t)(nextra + (key[0] ? 1 : 0)));
    if (key[0])
        mp_pack_kv_str(&pk, "sku", key);
    for (int i = 0; i < nextra; i++) {
        const char *eq = strchr(extra[i], '='), *val = eq + 1;
        char *end;
        mp_pack_strn(&pk, extra[i], (size_t)(eq - extra[i]));
        errno = 0;
        long long n = strtoll(val, &end, 10);
        if (*val && !*end && !errno)
            msgpack_pack_int64(&pk, n);
        else if (!strcmp(val, "true"))
            msgpack_pack_true(&pk);
        else if (!strcmp(val, "false"))
            msgpack_pack_false(&pk);
        else
            mp_pack_strz(&pk, val);
    }
    return 0;
}

/* The bytes of c's next k requests: the burst ready (one key), or the next k keys' requests
 * copied into it; their length in *len. */
static const char *next_requests(struct bconn *c, unsigned k, const msgpack_sbuffer *req,
                                 const size_t *koff, int nkeys, char *burst, size_t *len)
{
    if (!nkeys) {
        *len = req->size * k;
        return burst;
    }
    size_t n = 0;
    for (unsigned j = 0; j < k; j++) {
        unsigned key = c->next_key;
        c->next_key = (c->next_key + 1) % (unsigned)nkeys;
        memcpy(burst + n, req->data + koff[key], koff[key + 1] - koff[key]);
        n += koff[key + 1] - koff[key];
    }
    *len = n;
    return burst;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

#define MAX_KEYS 100000

/* The keys of --keys-file, one a line: their count, or -1 (said why). */
static int read_keys(const char *path, char ***keys)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_rpc: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[512];
    int n = 0;
    *keys = calloc(MAX_KEYS, sizeof **keys);
    while (*keys && n < MAX_KEYS && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] && !((*keys)[n++] = strdup(line)))
            n = -1;
        if (n < 0)
            break;
    }
    fclose(f);
    if (n <= 0 || !*keys) {
        fprintf(stderr, "bench_rpc: %s: no keys\n", path);
        for (int k = 0; *keys && k < MAX_KEYS && (*keys)[k]; k++)
            free((*keys)[k]);
        free(*keys);
        *keys = NULL;
        return -1;
    }
    return n;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "bench_rpc: cannot connect to %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* --resp: the next whole answer at the start of the n bytes at b: 1 with *used its length
 * (*err set when it is not a bulk string: a nil, an error, a status or an integer), 0 when it
 * has not all arrived yet, -1 when it is not RESP (a line not ending in CRLF, a bulk string not
 * followed by CRLF, a length that is not a number, another type) or an answer larger than half
 * the buffer (it would not fit beside the next one). */
#define RESP_BUF (1 << 20)
static int resp_next(const char *b, size_t n, size_t *used, int *err)
{
    const char *nl = n ? memchr(b, '\n', n) : NULL;
    if (!nl)
        return n > 64 && b[0] == '$' ? -1 : 0;
    size_t head = (size_t)(nl - b) + 1;
    if (head < 3 || b[head - 2] != '\r')
        return -1;
    *used = head;
    *err = 1;
    if (b[0] == '-' || b[0] == '+' || b[0] == ':')
        return 1;
    if (b[0] != '$')
        return -1;
    char *end;
    errno = 0;
    long long len = strtoll(b + 1, &end, 10); /* stops at the '\r' */
    if (end == b + 1 || end != b + head - 2 || errno || len < -1 || len > RESP_BUF / 2)
        return -1;
    if (len == -1) /* nil: no such key */
        return 1;
    if (n < head + (size_t)len + 2)
        return 0;
    if (b[head + (size_t)len] != '\r' || b[head + (size_t)len + 1] != '\n')
        return -1;
    *used = head + (size_t)len + 2;
    *err = 0;
    return 1;
}

/* tallyd: the next whole answer at the start of the n bytes at b, framed without decoding it
 * (wire_frame_scan: no allocation, as resp_next does not copy Redis's value): 1 with *used its
 * length (*err set unless it is [type, msgid, nil, result], an answer without an error), 0 when
 * it has not all arrived yet, -1 when it is not MessagePack or larger than half the buffer.
 * The array of 4 is taken in any of its packings (fixarray, array 16, array 32), as a decoder
 * would: tallyd's msgpack-c packs a fixarray, but MessagePack does not require it. */
static int mp_next(const char *b, size_t n, size_t *used, int *err)
{
    const unsigned char *u = (const unsigned char *)b;
    ssize_t len = wire_frame_scan(u, n, RESP_BUF / 2, TALLY_MAX_DEPTH);
    if (len <= 0)
        return len == 0 ? 0 : -1;
    *used = (size_t)len;
    *err = 1;
    size_t at; /* the array's header: it is complete, the whole frame is */
    if (u[0] == 0x94)
        at = 1;
    else if (u[0] == 0xdc && u[1] == 0 && u[2] == 4)
        at = 3;
    else if (u[0] == 0xdd && u[1] == 0 && u[2] == 0 && u[3] == 0 && u[4] == 4)
        at = 5;
    else /* not an array of 4 */
        return 1;
    for (int k = 0; k < 2; k++) { /* the type, the msgid: two whole objects inside the frame */
        ssize_t l = wire_frame_scan(u + at, (size_t)len - at, RESP_BUF / 2, TALLY_MAX_DEPTH);
        if (l <= 0)
            return -1;
        at += (size_t)l;
    }
    *err = at >= (size_t)len || u[at] != 0xc0; /* the error: nil */
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_rpc SOCKET [-c N] [-P N] [-d SECONDS] [-m METHOD] [-k SKU] "
                        "[-a KEY=VALUE]... [-n COUNT] [--until-file F] [--allow-errors] "
                        "[--kv PREFIX] [--size] [--rate R] [--resp KEY]\n");
        return 2;
    }
    const char *path = argv[1], *method = "stock.get", *sku = "EB-1001-BLK-M";
    const char *until_file = NULL, *kv = NULL, *resp = NULL, *keys_file = NULL;
    const char *extra[32];
    int nextra = 0, allow_errors = 0, size_only = 0;
    int nconn = 50, pipeline = 1;
    long long max_count = 0;
    double secs = 5, rate = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--allow-errors")) {
            allow_errors = 1;
            continue;
        }
        if (!strcmp(argv[i], "--size")) {
            size_only = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_rpc: %s wants a value\n", argv[i]);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(argv[i - 1], "-c"))
            nconn = atoi(v);
        else if (!strcmp(argv[i - 1], "-P"))
            pipeline = atoi(v);
        else if (!strcmp(argv[i - 1], "-d"))
            secs = atof(v);
        else if (!strcmp(argv[i - 1], "-m"))
            method = v;
        else if (!strcmp(argv[i - 1], "-k"))
            sku = v;
        else if (!strcmp(argv[i - 1], "-n"))
            max_count = atoll(v);
        else if (!strcmp(argv[i - 1], "--until-file"))
            until_file = v;
        else if (!strcmp(argv[i - 1], "--kv"))
            kv = v;
        else if (!strcmp(argv[i - 1], "--rate"))
            rate = atof(v);
        else if (!strcmp(argv[i - 1], "--resp"))
            resp = v;
        else if (!strcmp(argv[i - 1], "--keys-file"))
            keys_file = v;
        else if (!strcmp(argv[i - 1], "-a")) {
            if (nextra >= (int)(sizeof extra / sizeof *extra) || !strchr(v, '=') || v[0] == '=') {
                fprintf(stderr, "bench_rpc: -a wants KEY=VALUE (at most 32)\n");
                return 2;
            }
            extra[nextra++] = v;
        } else {
            fprintf(stderr, "bench_rpc: unknown option %s\n", argv[i - 1]);
            return 2;
        }
    }
    if (nconn < 1 || pipeline < 1) { /* (epoll_wait refuses a wait for no event: it would spin) */
        fprintf(stderr, "bench_rpc: -c and -P want at least 1\n");
        return 2;
    }
    if (size_only)
        nconn = pipeline = 1;
    if (resp && size_only) {
        fprintf(stderr, "bench_rpc: --size is for tallyd, not with --resp\n");
        return 2;
    }
    /* The requests, packed once (one, or one per key of --keys-file, back to back); the msgid
     * does not matter for a closed-loop load. */
    char **keys = NULL;
    int nkeys = 0;
    if (keys_file && size_only) {
        fprintf(stderr, "bench_rpc: --size asks -k's SKU, not with --keys-file\n");
        return 2;
    }
    if (keys_file && (nkeys = read_keys(keys_file, &keys)) < 0)
        return 2;
    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    size_t *koff = calloc((size_t)(nkeys ? nkeys : 1) + 1, sizeof *koff);
    for (int k = 0; k < (nkeys ? nkeys : 1); k++) {
        koff[k] = req.size;
        if (pack_request(&req, method,
                         nkeys  ? keys[k]
                         : resp ? resp
                                : sku,
                         resp != NULL, extra, nextra) != 0)
            return 2;
    }
    koff[nkeys ? nkeys : 1] = req.size;
    if (resp)
        method = "GET";
    size_t req_max = 0; /* the longest request */
    for (int k = 0; k < (nkeys ? nkeys : 1); k++)
        if (koff[k + 1] - koff[k] > req_max)
            req_max = koff[k + 1] - koff[k];
    struct bconn *cs = calloc((size_t)nconn, sizeof *cs);
    /* epoll, not poll: a wait costs the kernel the connections ready, not all of them (with
     * poll over 50, this client spent more of its CPU waiting than the servers it loads) */
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event *evs = calloc((size_t)nconn, sizeof *evs);
    if (epfd < 0 || !evs) {
        fprintf(stderr, "bench_rpc: epoll: %s\n", strerror(errno));
        exit(1);
    }
    size_t lat_cap = 1 << 22, nlat = 0;
    uint32_t *lat = malloc(lat_cap * sizeof *lat);
    /* One key: the pipeline's worth of its request, ready; more: made up for each write. */
    char *burst = malloc(req_max * (size_t)pipeline);
    for (int p = 0; p < pipeline && !nkeys; p++)
        memcpy(burst + (size_t)p * req.size, req.data, req.size);
    for (int i = 0; i < nconn; i++) {
        cs[i].fd = connect_to(path);
        msgpack_unpacker_init(&cs[i].unp, 1 << 16);
        if (!(cs[i].rbuf = malloc(RESP_BUF))) {
            fprintf(stderr, "bench_rpc: out of memory\n");
            exit(1); /* exit, not return: main's buffers stay reachable for LeakSanitizer */
        }
        cs[i].sent_at = calloc((size_t)pipeline, sizeof(uint64_t));
        cs[i].next_key = nkeys ? (unsigned)((uint64_t)i * (unsigned)nkeys / (unsigned)nconn) : 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0) {
            fprintf(stderr, "bench_rpc: epoll_ctl: %s\n", strerror(errno));
            exit(1);
        }
    }
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    int size_rc = 0;
    uint64_t done = 0, errors = 0, sent = 0;
    if (size_only) {
        /* One request, one answer: its bytes on the wire. */
        struct bconn *c = &cs[0];
        size_t total = 0;
        int fl = fcntl(c->fd, F_GETFL);
        fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
        if (write(c->fd, req.data, req.size) != (ssize_t)req.size) {
            fprintf(stderr, "bench_rpc: short write\n");
            exit(1);
        }
        for (;;) {
            msgpack_unpacker_reserve_buffer(&c->unp, 1 << 16);
            ssize_t r = read(c->fd, msgpack_unpacker_buffer(&c->unp),
                             msgpack_unpacker_buffer_capacity(&c->unp));
            if (r <= 0) {
                fprintf(stderr, "bench_rpc: connection closed by tallyd\n");
                exit(1);
            }
            msgpack_unpacker_buffer_consumed(&c->unp, (size_t)r);
            total += (size_t)r;
            if (msgpack_unpacker_next(&c->unp, &msg) == MSGPACK_UNPACK_SUCCESS)
                break;
        }
        const msgpack_object *o = &msg.data;
        int ok = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 4 &&
                 o->via.array.ptr[2].type == MSGPACK_OBJECT_NIL;
        printf("answer_bytes %zu\n", total);
        if (!ok)
            fprintf(stderr, "bench_rpc: the answer is an error\n");
        size_rc = ok ? 0 : 1;
        goto out;
    }
    uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), checked = start;
    uint64_t cpu0 = cpu_ns();
    /* Prime every connection with its full pipeline (or what -n leaves). */
    for (int i = 0; i < nconn; i++) {
        uint64_t t = now_ns();
        unsigned k = (unsigned)pipeline;
        if (max_count && sent + k > (uint64_t)max_count)
            k = (unsigned)((uint64_t)max_count - sent);
        if (k == 0)
            break;
        size_t len;
        const char *b = next_requests(&cs[i], k, &req, koff, nkeys, burst, &len);
        if (write(cs[i].fd, b, len) != (ssize_t)len) {
            fprintf(stderr, "bench_rpc: short write\n");
            exit(1);
        }
        for (unsigned p = 0; p < k; p++)
            cs[i].sent_at[p] = t;
        cs[i].inflight = k;
        sent += k;
    }
    int stop = 0;
    while (!stop) {
        uint64_t tn = now_ns();
        if (tn >= end || (max_count && done >= (uint64_t)max_count))
            break;
        if (until_file && tn - checked >= 10000000u) {
            struct stat sb;
            checked = tn;
            if (stat(until_file, &sb) == 0)
                break;
        }
        int n = epoll_wait(epfd, evs, nconn, until_file ? 10 : 1000);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "bench_rpc: epoll_wait: %s\n", strerror(errno));
            exit(1);
        }
        if (n <= 0)
            continue;
        for (int e = 0; e < n; e++) {
            /* (readable, or closed or in error: the read says which) */
            struct bconn *c = &cs[evs[e].data.u32];
            ssize_t r = read(c->fd, c->rbuf + c->rlen, RESP_BUF - c->rlen);
            if (r <= 0) {
                fprintf(stderr, "bench_rpc: connection closed by the server\n");
                exit(1);
            }
            unsigned got = 0;
            uint64_t t = now_ns();
            {
                c->rlen += (size_t)r;
                size_t off = 0, used = 0;
                int rc, err = 0;
                while ((rc = resp ? resp_next(c->rbuf + off, c->rlen - off, &used, &err)
                                  : mp_next(c->rbuf + off, c->rlen - off, &used, &err)) == 1) {
                    off += used;
                    errors += (uint64_t)err;
                    if (nlat < lat_cap)
                        lat[nlat++] = (uint32_t)((t - c->sent_at[c->head]) / 1000);
                    c->head = (c->head + 1) % (unsigned)pipeline;
                    got++;
                }
                if (rc < 0) {
                    fprintf(stderr, "bench_rpc: not a %s answer (or larger than %d bytes)\n",
                            resp ? "RESP" : "MessagePack", RESP_BUF / 2);
                    exit(1);
                }
                /* The part of an answer not all arrived yet moves to the start, once a read
                 * (not once an answer: a read brings up to P answers). */
                memmove(c->rbuf, c->rbuf + off, c->rlen - off);
                c->rlen -= off;
                if (c->rlen == RESP_BUF) { /* a line of 1 MiB without its end */
                    fprintf(stderr, "bench_rpc: not a RESP answer (a line of %d bytes)\n",
                            RESP_BUF);
                    exit(1);
                }
            }
            done += got;
            c->inflight -= got;
            /* Closed loop: send as many as came back (no more than -n leaves). */
            unsigned k = got;
            if (max_count && sent + k > (uint64_t)max_count)
                k = (unsigned)((uint64_t)max_count - sent);
            if (k && rate > 0) {
                /* Paced: wait for the k-th request's turn (start + sent / rate), not past -d. */
                uint64_t due = start + (uint64_t)((double)sent / rate * 1e9);
                if (due > end)
                    due = end;
                uint64_t tw = now_ns();
                if (due > tw) {
                    struct timespec ts = {(time_t)((due - tw) / 1000000000u),
                                          (long)((due - tw) % 1000000000u)};
                    nanosleep(&ts, NULL);
                }
                t = now_ns();
                if (t >= end)
                    k = 0;
            }
            if (k) {
                /* Stamped at the write, not at the read before it: the time this client
                 * spent decoding the answers just read is not the daemon's. */
                t = now_ns();
                size_t len;
                const char *b = next_requests(c, k, &req, koff, nkeys, burst, &len);
                if (write(c->fd, b, len) != (ssize_t)len) {
                    fprintf(stderr, "bench_rpc: short write\n");
                    exit(1);
                }
                unsigned tail = (c->head + c->inflight) % (unsigned)pipeline;
                for (unsigned j = 0; j < k; j++)
                    c->sent_at[(tail + j) % (unsigned)pipeline] = t;
                c->inflight += k;
                sent += k;
            }
        }
    }
    double elapsed = (double)(now_ns() - start) / 1e9;
    double cpu_pct = (double)(cpu_ns() - cpu0) / 1e9 / elapsed * 100;
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    unsigned p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[nlat * 99 / 100] : 0,
             p999 = nlat ? lat[nlat * 999 / 1000] : 0, pmax = nlat ? lat[nlat - 1] : 0;
    printf("%s: %d connections, pipeline %d, %.1f s: %.0f req/s, errors %llu, latency us p50 %u "
           "p99 %u p99.9 %u max %u\n",
           method, nconn, pipeline, elapsed, (double)done / elapsed, (unsigned long long)errors,
           p50, p99, p999, pmax);
    if (kv)
        printf("%s_rps %.0f\n%s_p50_us %u\n%s_p99_us %u\n%s_p999_us %u\n%s_max_us %u\n"
               "%s_n %llu\n%s_errors %llu\n",
               kv, (double)done / elapsed, kv, p50, kv, p99, kv, p999, kv, pmax, kv,
               (unsigned long long)done, kv, (unsigned long long)errors);
    if (kv)
        printf("%s_cpu_pct %.0f\n", kv, cpu_pct);
out:
    msgpack_unpacked_destroy(&msg);
    for (int i = 0; i < nconn; i++) {
        close(cs[i].fd);
        msgpack_unpacker_destroy(&cs[i].unp);
        free(cs[i].rbuf);
        free(cs[i].sent_at);
    }
    free(cs);
    free(evs);
    close(epfd);
    free(lat);
    free(burst);
    free(koff);
    for (int k = 0; k < nkeys; k++)
        free(keys[k]);
    free(keys);
    msgpack_sbuffer_destroy(&req);
    if (size_only)
        return size_rc;
    return errors && !allow_errors ? 1 : 0;
}
