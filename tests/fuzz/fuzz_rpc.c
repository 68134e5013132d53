/*
 * Fuzz target: arbitrary bytes through the daemon's whole request path — frame scanner,
 * msgpack-c decode, envelope validation, dispatch to every method against a real (temporary)
 * replica, as a writer. Every response must itself be a well-formed [1, msgid, error, result].
 *
 * Built as a libFuzzer target with clang (-fsanitize=fuzzer), and always as `fuzz_replay`,
 * which runs it over seed messages and seeded random mutations of them (a CTest test).
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "config.h"
#include "rpc.h"
#include "store.h"
#include "tally/protocol.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[] = "/tmp/tally-fuzz.XXXXXX";
static struct tallyd fuzz_d;

static void fuzz_cleanup(void)
{
    char path[64];
    store_close(fuzz_d.store);
    fuzz_d.store = NULL;
    static const char *const files[] = {"replica.db", "replica.db-wal", "replica.db-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, files[i]);
        unlink(path);
    }
    rmdir(fuzz_dir);
}

static struct tallyd *fuzz_daemon(void)
{
    struct tallyd *dp = &fuzz_d;
    static int ready;
    if (ready)
        return dp;
    char path[64], err[256];
    char *dir = mkdtemp(fuzz_dir);
    if (!dir)
        abort();
    snprintf(path, sizeof path, "%s/replica.db", dir);
    config_defaults(&dp->cfg);
    dp->cfg.sync_full = false; /* durability is not under test here; speed is */
    if (store_open(path, false, &dp->store, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    atexit(fuzz_cleanup);
    ready = 1;
    return dp;
}

static void check_response(const char *buf, size_t len)
{
    size_t off = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    while (off < len) {
        msgpack_unpack_return r = msgpack_unpack_next(&u, buf, len, &off);
        if (r != MSGPACK_UNPACK_SUCCESS)
            abort();
        const msgpack_object *o = &u.data;
        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 4 ||
            o->via.array.ptr[0].via.u64 != TALLY_MSG_RESPONSE)
            abort();
        /* exactly one of error and result is nil */
        int err_nil = o->via.array.ptr[2].type == MSGPACK_OBJECT_NIL;
        int res_nil = o->via.array.ptr[3].type == MSGPACK_OBJECT_NIL;
        if (err_nil == res_nil && !(err_nil && res_nil))
            abort();
        if (!err_nil && o->via.array.ptr[2].type != MSGPACK_OBJECT_MAP)
            abort();
    }
    msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tallyd *d = fuzz_daemon();
    size_t pos = 0;
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    while (pos < size) {
        ssize_t n = wire_frame_scan(data + pos, size - pos, 64 * 1024, TALLY_MAX_DEPTH);
        if (n <= 0)
            break;
        size_t off = 0;
        if (msgpack_unpack_next(&msg, (const char *)data + pos, (size_t)n, &off) !=
                MSGPACK_UNPACK_SUCCESS ||
            off != (size_t)n)
            abort(); /* the scanner said complete; the decoder must agree */
        int r = rpc_handle(d, TALLY_ROLE_WRITER, NULL, &msg.data, &out);
        pos += (size_t)n;
        if (r != 0)
            break;
    }
    check_response(out.data, out.size);
    msgpack_unpacked_destroy(&msg);
    msgpack_sbuffer_destroy(&out);
    return 0;
}
