/*
 * bench_rpc: load on tallyd's socket the way redis-benchmark loads Redis: one thread, C
 * connections, each keeping P requests in flight, for D seconds. Prints requests per second
 * and latency percentiles.
 *
 *   bench_rpc SOCKET [-c CONNECTIONS] [-P PIPELINE] [-d SECONDS] [-m METHOD] [-k SKU]
 *             [-w WAREHOUSE] [-n TOTAL]
 *
 * -n TOTAL sends that many requests in all and ends once all are answered (or -d passed).
 * -m stock.move records movements: each request a `receive` of 1 of SKU at WAREHOUSE
 * (default ES-MAD) with an id of its own ("b<pid>-<n>"), so every one is a new write (the
 * answer is sent only once it is durable: group commit); the figure is movements/s.
 *
 * SIGTERM or SIGINT ends the run early and still prints the figures (a load measured while
 * something else runs, for as long as it runs: tests/bench/bench_import.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "codec.h"
#include "wire.h"

struct bconn {
    int fd;
    msgpack_unpacker unp;
    uint64_t *sent_at; /* ring of send times, P entries */
    unsigned head, inflight;
};

static volatile sig_atomic_t stop_early;

static void on_stop(int sig)
{
    (void)sig;
    stop_early = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* Gives the k requests at p fresh ids: the last 16 bytes of each are its counter. */
static void stamp_ids(char *p, size_t reqlen, unsigned k, unsigned long long *seq)
{
    for (unsigned i = 0; i < k; i++) {
        char digits[17];
        snprintf(digits, sizeof digits, "%016llu", ++*seq);
        memcpy(p + (size_t)(i + 1) * reqlen - 16, digits, 16);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_rpc SOCKET [-c N] [-P N] [-d SECONDS] [-m METHOD] [-k SKU] "
                        "[-w WAREHOUSE] [-n TOTAL]\n");
        return 2;
    }
    const char *path = argv[1], *method = "stock.get", *sku = "EB-1001-BLK-M", *wh = "ES-MAD";
    int nconn = 50, pipeline = 1;
    unsigned long long total = 0, sent = 0; /* -n: 0 is no limit */
    double secs = 5;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-c"))
            nconn = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-P"))
            pipeline = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-d"))
            secs = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "-m"))
            method = argv[i + 1];
        else if (!strcmp(argv[i], "-k"))
            sku = argv[i + 1];
        else if (!strcmp(argv[i], "-w"))
            wh = argv[i + 1];
        else if (!strcmp(argv[i], "-n"))
            total = strtoull(argv[i + 1], NULL, 10);
    }
    bool moves = !strcmp(method, "stock.move");
    unsigned long long seq = 0;
    if (nconn < 1 || nconn > 10000 || pipeline < 1 || pipeline > 1000 || secs <= 0) {
        fprintf(stderr, "bench_rpc: bad arguments\n");
        return 2;
    }

    /* One request, packed once; the msgid does not matter for a closed-loop load. */
    msgpack_sbuffer req;
    msgpack_packer pk;
    msgpack_sbuffer_init(&req);
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, 1);
    mp_pack_strz(&pk, method);
    msgpack_pack_array(&pk, 1);
    if (moves) {
        /* The id is the last field, a fixed-width string, rewritten in place per request. */
        msgpack_pack_map(&pk, 5);
        mp_pack_kv_str(&pk, "kind", "receive");
        mp_pack_kv_str(&pk, "sku", sku);
        mp_pack_kv_str(&pk, "warehouse", wh);
        mp_pack_kv_int(&pk, "qty", 1);
        char id[32];
        snprintf(id, sizeof id, "b%08d-%016llu", (int)getpid() % 100000000, 0ULL);
        mp_pack_kv_str(&pk, "id", id);
    } else {
        msgpack_pack_map(&pk, 1);
        mp_pack_kv_str(&pk, "sku", sku);
    }

    struct bconn *cs = calloc((size_t)nconn, sizeof *cs);
    struct pollfd *pfd = calloc((size_t)nconn, sizeof *pfd);
    size_t lat_cap = 1 << 22, nlat = 0;
    uint32_t *lat = malloc(lat_cap * sizeof *lat);
    char *burst = malloc(req.size * (size_t)pipeline);
    for (int p = 0; p < pipeline; p++)
        memcpy(burst + (size_t)p * req.size, req.data, req.size);
    for (int i = 0; i < nconn; i++) {
        cs[i].fd = connect_to(path);
        msgpack_unpacker_init(&cs[i].unp, 1 << 16);
        cs[i].sent_at = calloc((size_t)pipeline, sizeof(uint64_t));
        pfd[i].fd = cs[i].fd;
        pfd[i].events = POLLIN;
    }
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9);
    uint64_t done = 0, errors = 0;
    /* Prime every connection with its full pipeline. */
    for (int i = 0; i < nconn; i++) {
        uint64_t t = now_ns();
        unsigned k = (unsigned)pipeline;
        if (total && total - sent < k)
            k = (unsigned)(total - sent);
        if (moves)
            stamp_ids(burst, req.size, k, &seq);
        if (k && write(cs[i].fd, burst, req.size * k) != (ssize_t)(req.size * k)) {
            fprintf(stderr, "bench_rpc: short write\n");
            return 1;
        }
        for (unsigned p = 0; p < k; p++)
            cs[i].sent_at[p] = t;
        cs[i].inflight = k;
        sent += k;
    }
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    while (now_ns() < end && !(total && done >= total) && !stop_early) {
        int n = poll(pfd, (nfds_t)nconn, 1000);
        if (n <= 0)
            continue;
        for (int i = 0; i < nconn; i++) {
            if (!(pfd[i].revents & POLLIN))
                continue;
            struct bconn *c = &cs[i];
            msgpack_unpacker_reserve_buffer(&c->unp, 1 << 16);
            ssize_t r = read(c->fd, msgpack_unpacker_buffer(&c->unp),
                             msgpack_unpacker_buffer_capacity(&c->unp));
            if (r <= 0) {
                fprintf(stderr, "bench_rpc: connection closed by tallyd\n");
                return 1;
            }
            msgpack_unpacker_buffer_consumed(&c->unp, (size_t)r);
            unsigned got = 0;
            uint64_t t = now_ns();
            while (msgpack_unpacker_next(&c->unp, &msg) == MSGPACK_UNPACK_SUCCESS) {
                const msgpack_object *o = &msg.data;
                if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4 ||
                    o->via.array.ptr[2].type != MSGPACK_OBJECT_NIL)
                    errors++;
                if (nlat < lat_cap)
                    lat[nlat++] = (uint32_t)((t - c->sent_at[c->head]) / 1000);
                c->head = (c->head + 1) % (unsigned)pipeline;
                got++;
            }
            done += got;
            /* Closed loop: send as many as came back. */
            unsigned again = got;
            if (total && total - sent < again)
                again = (unsigned)(total - sent);
            sent += again;
            if (again) {
                if (moves)
                    stamp_ids(burst, req.size, again, &seq);
                if (write(c->fd, burst, req.size * again) != (ssize_t)(req.size * again)) {
                    fprintf(stderr, "bench_rpc: short write\n");
                    return 1;
                }
                unsigned tail = c->head;
                for (unsigned k = 0; k < again; k++)
                    c->sent_at[(tail + (unsigned)pipeline - got + k) % (unsigned)pipeline] = t;
            }
        }
    }
    double elapsed = (double)(now_ns() - start) / 1e9;
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    if (errors && moves)
        fprintf(stderr, "bench_rpc: %llu movements refused (is %s in %s's catalog?)\n",
                (unsigned long long)errors, sku, wh);
    printf("%s: %d connections, pipeline %d, %.1f s: %.0f req/s, errors %llu, latency us p50 %u "
           "p99 %u p99.9 %u max %u\n",
           method, nconn, pipeline, elapsed, (double)done / elapsed, (unsigned long long)errors,
           nlat ? lat[nlat / 2] : 0, nlat ? lat[nlat * 99 / 100] : 0,
           nlat ? lat[nlat * 999 / 1000] : 0, nlat ? lat[nlat - 1] : 0);
    msgpack_unpacked_destroy(&msg);
    for (int i = 0; i < nconn; i++) {
        close(cs[i].fd);
        msgpack_unpacker_destroy(&cs[i].unp);
        free(cs[i].sent_at);
    }
    free(cs);
    free(pfd);
    free(lat);
    free(burst);
    msgpack_sbuffer_destroy(&req);
    return errors ? 1 : 0;
}
