/*
 * The harness of the connector fuzz targets (fuzz_wms.c, fuzz_goodcang.c, fuzz_fourpx.c,
 * fuzz_aliexpress.c): arbitrary bytes become the answers of one upstream, read by the
 * connector's own code and applied by the real sync engine into a temporary replica.
 *
 * A target defines `http_start` as `fuzz_http_start` and then includes its connector's .c file,
 * so the connector's requests go to the fake below instead of libcurl; everything else is the
 * daemon's (sync.c's scheduler and transactions, whfeed.c, orders.c, ...). Then it includes this
 * file and defines fz_configure() (the [warehouse] / [marketplace] section) and fz_seed() (the
 * rows that make the engine push: movements, notices, outbound orders, shipments).
 *
 * One input is a sequence of answers separated by a line "@@" ("\n@@\n"). An answer is
 *   [NNN[ R]\n]BODY    HTTP status NNN (default 200), Retry-After R seconds, then the body;
 *   !                  no answer at all (a transport failure: timeout);
 * A body longer than the request's max_response fails as libcurl makes it fail (too_large).
 * Each answer goes to the oldest request in flight; between answers the engine's scheduler runs
 * (sync_tick), and every stream is asked for a round again when nothing is in flight, so one
 * input can walk through several pages, look-ups and pushes. Every input starts from the same
 * replica (a copy of a template made once), so a crash reproduces from its input alone.
 *
 * After the answers, the replica must pass `PRAGMA quick_check`, and no stock figure may be
 * beyond +-TALLY_MAX_QTY (a bad row must be refused, never stored), and no outbox row may be
 * lost.
 */
#ifndef TALLY_FUZZ_CONN_H
#define TALLY_FUZZ_CONN_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <sqlite3.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "rpc.h"
#include "store.h"
#include "sync.h"
#include "tallyd.h"
#include "upstream.h"
#include "tally/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Defined by the target. */
static void fz_configure(struct tally_config *cfg, const char *dir);
static void fz_seed(struct tallyd *d);

#define FZ_MAX_PENDING 64
#define FZ_MAX_ANSWERS 48

static struct http_req *fz_pending[FZ_MAX_PENDING];
static int fz_npending;
static long fz_requests; /* requests started in this input */

/* The connector's http_start: the request waits for an answer from the input. */
int fuzz_http_start(struct http *h, struct http_req *r);
int fuzz_http_start(struct http *h, struct http_req *r)
{
    (void)h;
    if (fz_npending == FZ_MAX_PENDING)
        return -1; /* as a real client that cannot start one more */
    http_req_reset(r);
    r->curl_code = 0;
    r->status = 0;
    r->retry_after_s = -1;
    r->date = 0;
    r->error[0] = 0;
    r->too_large = 0;
    if (!r->max_response)
        r->max_response = HTTP_MAX_ANSWER;
    fz_pending[fz_npending++] = r;
    fz_requests++;
    if (getenv("FUZZ_TRACE")) /* what the connector asked, to write seeds by */
        fprintf(stderr, "fuzz: request %d: %s %s %.300s\n", fz_npending, r->method, r->url,
                r->body ? r->body : "");
    return 0;
}

static void fz_die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz harness: %s: %s\n", what, detail ? detail : "");
    abort();
}

static void fz_write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        fz_die("cannot write", path);
    close(fd);
}

static void fz_set(struct tally_config *cfg, const char *section, const char *key,
                   const char *value)
{
    char err[256];
    if (config_set(cfg, section, key, value, err, sizeof err) != 0)
        fz_die("config_set", err);
}

static int64_t fz_outbox_rows; /* in the template */

static int64_t fz_count_outbox(struct store *st)
{
    sqlite3_stmt *s = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(store_db(st), "SELECT count(*) FROM outbox", -1, &s, NULL) ==
            SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* ---- the replica every input starts from ---- */

/* In memory when the machine has /dev/shm: a replica per input on a disk is slow. */
static char fz_dir[64];
static char fz_template[128], fz_replica[128];
static char *fz_image;
static size_t fz_image_len;
static uv_loop_t fz_loop;
static struct tallyd fz_d;

static void fz_unlink_replica(const char *path)
{
    char p[160];
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

static void fz_cleanup(void)
{
    char p[160];
    fz_unlink_replica(fz_template);
    fz_unlink_replica(fz_replica);
    static const char *const secrets[] = {"token", "secret", "access"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", fz_dir, secrets[i]);
        unlink(p);
    }
    rmdir(fz_dir);
    free(fz_image);
}

static void fz_init(void)
{
    static int ready;
    if (ready)
        return;
    ready = 1;
    char err[256], p[160];
    snprintf(fz_dir, sizeof fz_dir, "%s/tally-fuzzconn.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(fz_dir))
        fz_die("mkdtemp", fz_dir);
    atexit(fz_cleanup);
    /* Secrets of every kind, mode 0600 as the daemon wants them. */
    snprintf(p, sizeof p, "%s/token", fz_dir);
    fz_write_file(p, "fuzz-token-0123456789\n");
    snprintf(p, sizeof p, "%s/secret", fz_dir);
    fz_write_file(p, "fuzz-secret-0123456789\n");
    snprintf(p, sizeof p, "%s/access", fz_dir);
    fz_write_file(p, "fuzz-access-0123456789\n");
    snprintf(fz_template, sizeof fz_template, "%s/template.db", fz_dir);
    snprintf(fz_replica, sizeof fz_replica, "%s/replica.db", fz_dir);
    if (uv_loop_init(&fz_loop) != 0)
        fz_die("uv_loop_init", NULL);
    log_init(getenv("FUZZ_LOG") ? LOG_LVL_DEBUG : (enum log_level)0); /* FUZZ_LOG=1: all of it */

    /* The template: migrations, the configured upstream's warehouse, the target's seed rows. */
    struct tallyd *d = &fz_d;
    memset(d, 0, sizeof *d);
    config_defaults(&d->cfg);
    d->cfg.sync_full = false; /* durability is not under test here; speed is */
    fz_configure(&d->cfg, fz_dir);
    if (config_check(&d->cfg, err, sizeof err) != 0)
        fz_die("config_check", err);
    d->loop = &fz_loop;
    if (store_open(fz_template, false, &d->store, err, sizeof err) != 0)
        fz_die("store_open", err);
    struct sync_engine *e = NULL;
    if (sync_start(d, &e, err, sizeof err) != 0) /* records the warehouses */
        fz_die("sync_start", err);
    sync_stop(e);
    uv_run(&fz_loop, UV_RUN_DEFAULT);
    fz_seed(d);
    fz_outbox_rows = fz_count_outbox(d->store);
    store_close(d->store);
    d->store = NULL;
    FILE *f = fopen(fz_template, "rb");
    if (!f)
        fz_die("cannot read", fz_template);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    fz_image = malloc((size_t)n);
    if (!fz_image || fread(fz_image, 1, (size_t)n, f) != (size_t)n)
        fz_die("cannot read", fz_template);
    fz_image_len = (size_t)n;
    fclose(f);
}

/* A call through the dispatcher while seeding (as a writer); aborts when it fails. */
static void fz_rpc(struct tallyd *d, const msgpack_sbuffer *req)
{
    msgpack_unpacked m;
    msgpack_unpacked_init(&m);
    size_t off = 0;
    if (msgpack_unpack_next(&m, req->data, req->size, &off) != MSGPACK_UNPACK_SUCCESS)
        fz_die("seed request", "not msgpack");
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    rpc_handle(d, TALLY_ROLE_WRITER, NULL, &m.data, &out);
    msgpack_unpacked r;
    msgpack_unpacked_init(&r);
    off = 0;
    if (msgpack_unpack_next(&r, out.data, out.size, &off) != MSGPACK_UNPACK_SUCCESS ||
        r.data.type != MSGPACK_OBJECT_ARRAY || r.data.via.array.size != 4)
        fz_die("seed call", "bad response");
    if (r.data.via.array.ptr[2].type != MSGPACK_OBJECT_NIL) {
        char buf[512];
        msgpack_object_print_buffer(buf, sizeof buf, r.data.via.array.ptr[2]);
        fz_die("seed call refused", buf);
    }
    msgpack_unpacked_destroy(&r);
    msgpack_sbuffer_destroy(&out);
    msgpack_unpacked_destroy(&m);
}

/* ---- one input ---- */

/* The next answer of the input: [*pos, end). Returns 0 when there is none left. */
static int fz_next_answer(const uint8_t *data, size_t size, size_t *pos, size_t *alen)
{
    if (*pos > size || (*pos == size && size > 0))
        return 0;
    const uint8_t *start = data + *pos;
    size_t left = size - *pos;
    const uint8_t *sep = left >= 4 ? memmem(start, left, "\n@@\n", 4) : NULL;
    *alen = sep ? (size_t)(sep - start) : left;
    *pos += *alen + (sep ? 4 : 0);
    if (!sep)
        *pos = size + 1; /* the last one */
    return 1;
}

/* Completes request r with the answer [a, a + n) as libcurl would. */
static void fz_answer(struct http_req *r, const uint8_t *a, size_t n)
{
    if (n == 1 && a[0] == '!') {
        r->curl_code = 28; /* CURLE_OPERATION_TIMEDOUT */
        snprintf(r->error, sizeof r->error, "Timeout was reached");
        r->done(r);
        return;
    }
    long status = 200, retry = -1;
    if (n >= 4 && a[0] >= '0' && a[0] <= '9' && a[1] >= '0' && a[1] <= '9' && a[2] >= '0' &&
        a[2] <= '9' && (a[3] == '\n' || a[3] == ' ')) {
        status = (a[0] - '0') * 100 + (a[1] - '0') * 10 + (a[2] - '0');
        size_t i = 3;
        if (a[3] == ' ') {
            retry = 0;
            for (i = 4; i < n && i < 12 && a[i] >= '0' && a[i] <= '9'; i++)
                retry = retry * 10 + (a[i] - '0');
        }
        while (i < n && a[i] != '\n')
            i++;
        if (i < n)
            i++;
        a += i;
        n -= i;
    }
    size_t keep = n;
    if (n > r->max_response) {
        keep = r->max_response;
        r->too_large = 1;
        r->curl_code = 23; /* CURLE_WRITE_ERROR */
        snprintf(r->error, sizeof r->error, "answer larger than %zu bytes", r->max_response);
    } else {
        r->status = status;
        r->retry_after_s = retry;
    }
    r->response = malloc(keep + 1);
    if (!r->response)
        fz_die("out of memory", NULL);
    memcpy(r->response, a, keep);
    r->response[keep] = 0;
    r->response_len = keep;
    r->cap = keep + 1;
    r->done(r);
}

static void fz_check_replica(struct store *st)
{
    sqlite3 *db = store_db(st);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL) != SQLITE_OK)
        fz_die("quick_check", sqlite3_errmsg(db));
    if (sqlite3_step(s) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(s, 0), "ok"))
        fz_die("replica damaged", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    char sql[200];
    /* A tally warehouse may report stock below zero (its movements can take it there), so the
     * bound is the connectors' own: -TALLY_MAX_QTY..TALLY_MAX_QTY. */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM stock WHERE abs(snapshot) > %lld",
             (long long)TALLY_MAX_QTY);
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fz_die("stock check", sqlite3_errmsg(db));
    if (sqlite3_step(s) != SQLITE_ROW || sqlite3_column_int64(s, 0) != 0)
        fz_die("stock check", "a stock figure out of range was stored");
    sqlite3_finalize(s);
    /* An answer ends a row (done, held) but never loses one: the outbox keeps every row. */
    if (fz_count_outbox(st) < fz_outbox_rows)
        fz_die("outbox check", "an outbox row was lost");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    fz_init();
    struct tallyd *d = &fz_d;
    fz_unlink_replica(fz_replica);
    int fd = open(fz_replica, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, fz_image, fz_image_len) != (ssize_t)fz_image_len)
        fz_die("cannot write", fz_replica);
    close(fd);
    if (store_open(fz_replica, false, &d->store, err, sizeof err) != 0)
        fz_die("store_open", err);
    struct sync_engine *e = NULL;
    if (sync_start(d, &e, err, sizeof err) != 0)
        fz_die("sync_start", err);
    fz_npending = 0;
    fz_requests = 0;
    size_t pos = 0, alen;
    int answers = 0;
    while (answers < FZ_MAX_ANSWERS) {
        sync_tick(e);
        if (fz_npending == 0) {
            sync_request(e, NULL, 0);
            sync_tick(e);
        }
        if (fz_npending == 0)
            break;
        size_t at = pos;
        if (!fz_next_answer(data, size, &pos, &alen))
            break;
        struct http_req *r = fz_pending[0];
        memmove(fz_pending, fz_pending + 1, (size_t)--fz_npending * sizeof *fz_pending);
        if (getenv("FUZZ_TRACE"))
            fprintf(stderr, "fuzz: answer %d (%zu bytes) to %s\n", answers + 1, alen, r->url);
        fz_answer(r, data + at, alen);
        answers++;
    }
    /* Requests still unanswered are ended by the connector's free (sync_stop). */
    fz_npending = 0;
    sync_stop(e);
    uv_run(&fz_loop, UV_RUN_DEFAULT);
    fz_check_replica(d->store);
    store_close(d->store);
    d->store = NULL;
    return 0;
}

#endif
