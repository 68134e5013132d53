/* The loop's hot reads in read transactions of a millisecond or two (loopread.h). */
#include "loopread.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "log.h"
#include "store.h"
#include "tallyd.h"
#include "worker.h"

/* Answers kept: two slots per hash of the key (FNV-1a); a key takes its own slot again, else
 * the one that has room for it when only one has (past the bound below), else one holding no
 * answer of the open transaction's data, else the one used longer ago. 4096 slots (384 KiB,
 * touched as they are used) for a station's SKUs asked between two commits; their answers' bytes
 * (~0.9 KiB at four warehouses) at most ANSWER_BYTES in all: past it, room is made by freeing
 * the bytes of stale slots (answers of older data, which are never given again) from a cursor
 * that goes round the slots, up to RECLAIM_SCAN of them a time, and failing that an answer is
 * kept only in the room its slot already has. */
#define RECLAIM_SCAN 64
#define ANSWER_BYTES (2u << 20)

struct answer {
    uint64_t id;   /* the data it was read from (struct loopread's id); 0: empty */
    uint64_t used; /* when it was last kept or given (struct loopread's uses) */
    uint16_t klen;
    uint16_t len, cap;
    char key[LOOPREAD_KEY_MAX];
    unsigned char *bytes;
};

struct loopread {
    struct store *st;
    uv_loop_t *loop;
    /* A timerfd on the loop (not a uv timer: a timer of the loop's turns every wait into one
     * with a timeout, and a wait with a timeout arms a kernel timer each time, which on a VM
     * costs more than the read transaction saved; this one is armed once per transaction). */
    int tfd;
    uv_poll_t tpoll;
    bool armed; /* tfd will expire */
    bool open;  /* a read transaction is open on st */
    bool stopped;
    /* what was committed when it began: tallyd's commits, and the loop's connection's changes */
    uint64_t seq;
    int64_t changes;
    uint64_t began; /* the loop's clock (uv_now, milliseconds) when it began */
    /* The data the open transaction reads: the same id, the same data (see the header); the
     * connection's data version when it began, and the last id given. */
    uint64_t id, last_id;
    int64_t version;
    bool version_known;
    struct answer *answers; /* LOOPREAD_SLOTS, or NULL (none kept) */
    size_t bytes;           /* their bytes allocated, <= ANSWER_BYTES */
    unsigned reclaim_at;    /* the slot reclaim looks at next */
    uint64_t given;         /* answers given from them (status: stock_get_kept) */
    uint64_t uses;          /* answers kept and given: the clock of their slots' `used` */
};

/* Reads the connection's data version inside the transaction just begun (which takes its
 * snapshot) and names the data it reads: the id of the transaction before when the version is
 * the same, a new one when not, or when it cannot be read. */
static void name_data(struct loopread *lr)
{
    sqlite3_stmt *s = store_stmt(lr->st, "PRAGMA data_version");
    bool known = s && sqlite3_step(s) == SQLITE_ROW;
    int64_t v = known ? sqlite3_column_int64(s, 0) : 0;
    if (s)
        sqlite3_reset(s);
    if (!(known && lr->version_known && v == lr->version)) /* (the first: not known before) */
        lr->last_id++;
    lr->id = lr->last_id;
    lr->version = v;
    lr->version_known = known;
}

static uint32_t key_hash(const char *key, size_t klen)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    return h;
}

static void end_tx(struct loopread *lr)
{
    if (!lr->open)
        return;
    lr->open = false;
    /* (a read transaction's end cannot fail but for misuse; none is left open all the same) */
    if (store_run(lr->st, "COMMIT", "loop read") != 0 && !sqlite3_get_autocommit(store_db(lr->st)))
        sqlite3_exec(store_db(lr->st), "ROLLBACK", NULL, NULL, NULL);
}

static bool held_long(const struct loopread *lr)
{
    return uv_now(lr->loop) - lr->began >= LOOPREAD_HOLD_MS;
}

static void arm(struct loopread *lr, uint64_t ms)
{
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L}};
    /* (cannot fail with a valid descriptor and value; if it did, the next read would still
     * end the transaction once that old) */
    lr->armed = timerfd_settime(lr->tfd, 0, &its, NULL) == 0;
}

static void on_expiry(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct loopread *lr = h->data;
    uint64_t n;
    while (read(lr->tfd, &n, sizeof n) < 0 && errno == EINTR)
        ;
    lr->armed = false;
    if (!lr->open)
        return;
    if (held_long(lr))
        end_tx(lr);
    else /* it began after the expiry was set (for one before it) */
        arm(lr, LOOPREAD_HOLD_MS - (uv_now(lr->loop) - lr->began));
}

int loopread_start(struct tallyd *d)
{
    struct loopread *lr = calloc(1, sizeof *lr);
    if (!lr)
        return -1;
    lr->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (lr->tfd < 0) {
        log_warn("loop reads on the loop's connection: timerfd: %s", strerror(errno));
        free(lr);
        return -1;
    }
    char err[300];
    if (store_open_extra(store_path(d->store), d->cfg.sync_full, true, &lr->st, err, sizeof err) !=
        0) {
        log_warn("loop reads on the loop's connection: %s", err);
        close(lr->tfd);
        free(lr);
        return -1;
    }
    store_set_cache_kib(lr->st, WORKER_READ_CACHE_KIB);
    lr->answers = calloc(LOOPREAD_SLOTS, sizeof *lr->answers); /* (none: every read reads) */
    lr->loop = d->loop;
    uv_poll_init(d->loop, &lr->tpoll, lr->tfd);
    lr->tpoll.data = lr;
    uv_poll_start(&lr->tpoll, UV_READABLE, on_expiry);
    uv_unref((uv_handle_t *)&lr->tpoll);
    d->lread = lr;
    return 0;
}

struct store *loopread(struct tallyd *d)
{
    struct loopread *lr = d->lread;
    if (!lr || lr->stopped)
        return d->store;
    uint64_t seq = store_commit_seq();
    int64_t changes = sqlite3_total_changes64(store_db(d->store));
    /* (uv_now was taken when the loop's wait returned: the expiry may be due and not yet run
     * when the loop was held up) */
    if (lr->open && (seq != lr->seq || changes != lr->changes || held_long(lr)))
        end_tx(lr);
    if (!lr->open) {
        /* read before BEGIN: a commit between them is in the snapshot and ends it next time */
        lr->seq = seq;
        lr->changes = changes;
        if (store_run(lr->st, "BEGIN", "loop read") != 0)
            return d->store;
        lr->open = true;
        lr->began = uv_now(lr->loop);
        name_data(lr);
        if (sqlite3_get_autocommit(store_db(lr->st))) {
            /* (an error in it ended the transaction: no snapshot to name, none kept) */
            lr->open = false;
            return d->store;
        }
        if (!lr->armed)
            arm(lr, LOOPREAD_HOLD_MS);
    }
    return lr->st;
}

/* The pair of slots of `key`'s hash. */
static struct answer *slots_of(struct loopread *lr, const char *key, size_t klen)
{
    return &lr->answers[key_hash(key, klen) % (LOOPREAD_SLOTS / 2) * 2];
}

static bool holds(const struct answer *a, const char *key, size_t klen)
{
    return a->id && a->klen == klen && memcmp(a->key, key, klen) == 0;
}

static size_t cap_for(size_t len)
{
    return (len + 255) & ~(size_t)255;
}

/* Whether slot `a` can take an answer of len bytes: its room, or room to grow within the bound. */
static bool fits(const struct loopread *lr, const struct answer *a, size_t len)
{
    return len <= a->cap || lr->bytes - a->cap + cap_for(len) <= ANSWER_BYTES;
}

/* Past the bound: frees stale slots' bytes (not `keep`'s) until `need` more bytes fit, looking
 * at RECLAIM_SCAN slots at most. */
static void reclaim(struct loopread *lr, const struct answer *keep, size_t need)
{
    for (int i = 0; i < RECLAIM_SCAN && lr->bytes + need > ANSWER_BYTES; i++) {
        struct answer *s = &lr->answers[lr->reclaim_at];
        lr->reclaim_at = (lr->reclaim_at + 1) % LOOPREAD_SLOTS;
        if (s == keep || !s->cap || s->id == lr->id)
            continue;
        lr->bytes -= s->cap;
        free(s->bytes);
        s->bytes = NULL;
        s->cap = s->len = 0;
        s->id = 0;
    }
}

const void *loopread_answer(struct tallyd *d, const char *key, size_t klen, size_t *len)
{
    struct loopread *lr = d->lread;
    if (!lr || lr->stopped || !lr->open || !lr->answers || klen > LOOPREAD_KEY_MAX)
        return NULL;
    struct answer *a = slots_of(lr, key, klen);
    if (!holds(a, key, klen))
        a++;
    if (a->id != lr->id || !holds(a, key, klen))
        return NULL;
    lr->given++;
    a->used = ++lr->uses;
    *len = a->len;
    return a->bytes;
}

void loopread_keep(struct tallyd *d, const char *key, size_t klen, const void *answer, size_t len)
{
    struct loopread *lr = d->lread;
    if (!lr || lr->stopped || !lr->open || !lr->answers || klen > LOOPREAD_KEY_MAX ||
        len > LOOPREAD_ANSWER_MAX)
        return;
    struct answer *pair = slots_of(lr, key, klen), *a = pair;
    if (!fits(lr, pair, len) && !fits(lr, &pair[1], len))
        reclaim(lr, NULL, cap_for(len));
    if (holds(&pair[1], key, klen))
        a = &pair[1];
    else if (!holds(pair, key, klen)) {
        bool fit0 = fits(lr, pair, len), fit1 = fits(lr, &pair[1], len);
        bool live0 = pair[0].id == lr->id, live1 = pair[1].id == lr->id;
        if (fit0 != fit1) /* (past the bound: not a slot that would stay as it is) */
            a = fit0 ? pair : &pair[1];
        else if (live0 != live1)
            a = live0 ? &pair[1] : pair;
        else
            a = pair[1].used < pair[0].used ? &pair[1] : pair;
    }
    if (len > a->cap) {
        size_t cap = cap_for(len);
        if (!fits(lr, a, len))
            reclaim(lr, a, cap - a->cap);
        unsigned char *b = !fits(lr, a, len) ? NULL : realloc(a->bytes, cap);
        if (!b)
            return; /* no room (or memory): the slot keeps what it has, for its key */
        lr->bytes += cap - a->cap;
        a->bytes = b;
        a->cap = (uint16_t)cap;
    }
    memcpy(a->bytes, answer, len);
    memcpy(a->key, key, klen);
    a->klen = (uint16_t)klen;
    a->len = (uint16_t)len;
    a->id = lr->id;
    a->used = ++lr->uses;
}

uint64_t loopread_given(const struct tallyd *d)
{
    return d->lread ? d->lread->given : 0;
}

void loopread_stop(struct tallyd *d)
{
    struct loopread *lr = d->lread;
    if (!lr || lr->stopped)
        return;
    end_tx(lr);
    lr->stopped = true;
    uv_poll_stop(&lr->tpoll);
    uv_close((uv_handle_t *)&lr->tpoll, NULL);
}

void loopread_free(struct tallyd *d)
{
    struct loopread *lr = d->lread;
    if (!lr)
        return;
    end_tx(lr);
    if (lr->answers)
        for (size_t i = 0; i < LOOPREAD_SLOTS; i++)
            free(lr->answers[i].bytes);
    free(lr->answers);
    store_close(lr->st);
    close(lr->tfd); /* (after its poll handle closed: loopread_stop, then the loop's last run) */
    free(lr);
    d->lread = NULL;
}
