/*
 * The personal-data purge. An order whose purged_at is set holds no buyer data: its name,
 * address, city, postcode and phone are NULL, no outbox row of that order (entity = its
 * order id) carries a ship-to any more, and free text about it from people or upstreams
 * (notes, warehouses' reasons, upstream errors) is gone. The order, its lines, allocations and
 * shipments stay: sales figures, reports and returns still need them.
 *
 * Work is bounded: at most PURGE_SLICE orders per transaction, found through the partial
 * index orders_to_purge(finished_at) WHERE purged_at IS NULL, so a purge never scans orders
 * it already purged. With tallyd's workers (worker.h), a purge runs as write jobs on the
 * writer's connection, off the loop: each job runs slices for about PURGE_JOB_US, one
 * transaction each (the writer lock is let go between them, so a loop write waits for one
 * slice at most), then hands over to the next write job, so an import is not held up for the
 * whole purge; the loop keeps answering meanwhile and does no purge work itself. Without
 * workers, one slice runs per loop iteration (an idle handle). A dry run counts index entries
 * only, in slices on the loop. The WAL checkpoint that
 * follows copies the frames on a worker thread and empties the WAL on the loop's own
 * connection (see on_checkpoint_work), so it never makes a loop write fail as busy.
 */
#include "privacy.h"

#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <uv.h>

#include "log.h"
#include "store.h"
#include "tally/protocol.h"
#include "worker.h"

/* Orders per transaction: one slice holds the loop well under a millisecond or two. */
#define PURGE_SLICE 64
/* Orders a dry run counts per slice (index entries only). */
#define COUNT_SLICE 2048
/* How long one write job of a purge runs slices before letting the next write job go. */
#define PURGE_JOB_US 20000
#define DAY_S 86400

/* Top-level payload keys that carry personal data: the ship-to map of an outbound request,
 * and the order's own column names, should a payload ever carry them flat. */
static const char *const personal_keys[] = {"ship_to", "buyer_name", "address",
                                            "city",    "postcode",   "phone"};

static bool is_personal(const msgpack_object *k)
{
    if (k->type != MSGPACK_OBJECT_STR)
        return false;
    for (size_t i = 0; i < sizeof personal_keys / sizeof personal_keys[0]; i++)
        if (strlen(personal_keys[i]) == k->via.str.size &&
            memcmp(personal_keys[i], k->via.str.ptr, k->via.str.size) == 0)
            return true;
    return false;
}

/*
 * Re-packs a payload map without its personal keys into `sb`. Returns 1 when `sb` holds the
 * new payload, 0 when the payload has nothing to remove. A payload that is not a MessagePack
 * map cannot be checked and becomes an empty map (still a readable payload).
 */
static int scrub(const void *data, size_t len, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int ret = 1;
    if (!data || msgpack_unpack_next(&u, data, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_pack_map(&pk, 0);
        msgpack_unpacked_destroy(&u);
        return 1;
    }
    const msgpack_object_map *m = &u.data.via.map;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < m->size; i++)
        keep += !is_personal(&m->ptr[i].key);
    if (keep == m->size) {
        ret = 0;
    } else {
        msgpack_pack_map(&pk, keep);
        for (uint32_t i = 0; i < m->size; i++) {
            if (is_personal(&m->ptr[i].key))
                continue;
            msgpack_pack_object(&pk, m->ptr[i].key);
            msgpack_pack_object(&pk, m->ptr[i].val);
        }
    }
    msgpack_unpacked_destroy(&u);
    return ret;
}

static int set_payload(struct store *st, int64_t id, const msgpack_sbuffer *sb)
{
    sqlite3_stmt *s = store_stmt(st, "UPDATE outbox SET payload = ?2 WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_blob(s, 2, sb->data ? sb->data : "", (int)sb->size, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "outbox scrub");
}

/*
 * Scrubs the outbox rows of one order. The rows are found per target through
 * outbox_entity(target, entity, id): outbound requests go to 'wh:<code>', and the marketplace
 * target 'mp' is looked at too. Rewriting the payload of the row just read is safe: payload
 * is in no index.
 */
static int scrub_outbox(struct store *st, const char *order_id)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT id, payload FROM outbox WHERE target IN"
                                     " (SELECT 'wh:' || code FROM warehouses UNION ALL SELECT 'mp')"
                                     " AND entity = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_TRANSIENT);
    int rc, r = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        int64_t id = sqlite3_column_int64(s, 0);
        const void *blob = sqlite3_column_blob(s, 1);
        if (scrub(blob, (size_t)sqlite3_column_bytes(s, 1), &sb) == 1)
            r = set_payload(st, id, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (r)
            break;
    }
    sqlite3_reset(s);
    if (r)
        return r;
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "outbox scrub");
}

/*
 * Free text about the order that came from people or upstreams and may quote the buyer (a
 * warehouse's reason "address not found: <street>", an upstream's error echoing a field, an
 * operator's note): erased too. tallyd's own exception messages never quote personal data
 * (address.c names formats, not values) and stay; those that carry an upstream's text
 * (warehouse, upstream_rejected) keep only what they are about.
 */
static int scrub_text(struct store *st, const char *order_id)
{
    static const char *const sql[] = {
        "UPDATE exceptions SET note = NULL, message = CASE WHEN kind IN ('warehouse',"
        " 'upstream_rejected') THEN 'order ' || ?1 || ': ' || kind || ' (the upstream''s"
        " text was erased with the personal data)' ELSE message END"
        " WHERE order_ref = (SELECT id FROM orders WHERE order_id = ?1)"
        " AND (note IS NOT NULL OR kind IN ('warehouse', 'upstream_rejected'))",
        "UPDATE outbound_orders SET reason = NULL WHERE warehouse IN (SELECT id FROM warehouses)"
        " AND id = ?1 AND reason IS NOT NULL",
        "UPDATE allocation_bans SET reason = NULL"
        " WHERE order_ref = (SELECT id FROM orders WHERE order_id = ?1) AND reason IS NOT NULL",
        "UPDATE outbox SET last_error = NULL WHERE target IN"
        " (SELECT 'wh:' || code FROM warehouses UNION ALL SELECT 'mp') AND entity = ?1"
        " AND last_error IS NOT NULL",
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        sqlite3_stmt *s = store_stmt(st, sql[i]);
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(s, 1, order_id, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_error(st, rc, "purge text");
    }
    return 0;
}

/*
 * Purges the next slice inside a transaction; *n gets its size (PURGE_SLICE: there may be
 * more). The UPDATE makes all its changes on its first step and only then hands out its
 * RETURNING rows, so scrubbing the outbox while reading them is safe.
 */
static int purge_batch(struct store *st, int64_t cutoff, int64_t now, int64_t *n)
{
    sqlite3_stmt *s = store_stmt(
        st, "UPDATE orders SET buyer_name = NULL, address = NULL, city = NULL, postcode = NULL,"
            " phone = NULL, purged_at = ?2 WHERE id IN (SELECT id FROM orders"
            "   WHERE purged_at IS NULL AND finished_at <= ?1 ORDER BY finished_at LIMIT ?3)"
            " RETURNING order_id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, cutoff);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int(s, 3, PURGE_SLICE);
    int rc, r = 0;
    *n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        (*n)++;
        const char *oid = (const char *)sqlite3_column_text(s, 0);
        if ((r = scrub_outbox(st, oid)) != 0 || (r = scrub_text(st, oid)) != 0)
            break;
    }
    sqlite3_reset(s);
    if (r)
        return r;
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "purge");
}

/*
 * Counts the next slice of orders due (a dry run), after the cursor (finished_at, id) in the
 * order of orders_to_purge; *n gets the slice's count, less than COUNT_SLICE at the end. Read
 * in two parts, each a range of the index that starts at the cursor: the rest of the cursor's
 * second (the index's rowid after the cursor's), then the later seconds. (The row value
 * (finished_at, id) > (?2, ?3) started the range at the cursor's second only, the rowid not
 * being a column of the index: a slice read every order finished in that second before the
 * cursor again, thousands when a pass finished an import's orders.)
 */
static int count_slice(struct store *st, int64_t cutoff, int64_t *after_fin, int64_t *after_id,
                       int64_t *n)
{
    static const char *const sql[2] = {
        "SELECT finished_at, id FROM orders WHERE purged_at IS NULL AND finished_at <= ?1"
        " AND finished_at = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
        "SELECT finished_at, id FROM orders WHERE purged_at IS NULL AND finished_at <= ?1"
        " AND finished_at > ?2 ORDER BY finished_at, id LIMIT ?4",
    };
    int64_t fin = *after_fin, id = *after_id;
    *n = 0;
    for (int part = 0; part < 2 && *n < COUNT_SLICE; part++) {
        sqlite3_stmt *s = store_stmt(st, sql[part]);
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, cutoff);
        sqlite3_bind_int64(s, 2, fin);
        sqlite3_bind_int64(s, 3, id); /* not in the second part: a no-op there */
        sqlite3_bind_int64(s, 4, COUNT_SLICE - *n);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            *after_fin = sqlite3_column_int64(s, 0);
            *after_id = sqlite3_column_int64(s, 1);
            (*n)++;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_error(st, rc, "purge count");
    }
    return 0;
}

/* Whether freed database content is overwritten; -1 when it cannot be read. */
static int secure_delete(sqlite3 *db, int set)
{
    sqlite3_stmt *s;
    const char *sql = set < 0 ? "PRAGMA secure_delete"
                      : set   ? "PRAGMA secure_delete = 1"
                              : "PRAGMA secure_delete = 0";
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    int v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_finalize(s);
    return v;
}

/* One purge or dry run in progress. */
struct privacy {
    struct worker_job job; /* first: a write job's slices (with workers) */
    struct tallyd *d;
    uv_idle_t idle; /* runs one slice per loop iteration */
    uv_work_t work; /* the WAL checkpoint, on a worker thread */
    char *db_path;  /* for the worker's own connection */
    int64_t cutoff;
    bool dry_run;
    int64_t orders;              /* purged (or counted) so far */
    int64_t after_fin, after_id; /* a dry run's cursor */
    int r;                       /* the first error, which ends the job */
    bool on_loop;                /* slices on the loop; else all at once on this thread */
    bool on_workers;             /* slices in write jobs (the idle handle is then unused) */
    uv_timer_t timer;            /* the checkpoint's TRUNCATE, tried again */
    bool timer_on;               /* timer initialised (closed with the job) */
    bool backfilled;             /* the worker's last round copied every frame */
    int rounds;                  /* worker rounds run */
    int truncate_tries;
    sqlite3_int64 changes; /* the loop connection's total changes when queued */
    privacy_done_fn done;
    void *arg;
};

/*
 * One slice: PURGE_SLICE orders purged in one transaction (or COUNT_SLICE counted). Returns
 * 1 when there is more to do, 0 when done, or a TALLY_E_* code (what was committed stays).
 * secure_delete is on for the slice's transaction whatever the build says: freed cell
 * content is overwritten.
 */
static int run_slice_on(struct privacy *p, struct store *st)
{
    int64_t n = 0;
    if (p->dry_run) {
        int r = count_slice(st, p->cutoff, &p->after_fin, &p->after_id, &n);
        if (r)
            return r;
        p->orders += n;
        return n == COUNT_SLICE;
    }
    sqlite3 *db = store_db(st);
    int was = secure_delete(db, -1);
    if (was == 0)
        secure_delete(db, 1);
    int r = store_begin(st);
    if (r == 0) {
        r = purge_batch(st, p->cutoff, store_now(), &n);
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
    }
    if (was == 0)
        secure_delete(db, 0);
    if (r)
        return r;
    p->orders += n;
    return n == PURGE_SLICE;
}

static int run_slice(struct privacy *p)
{
    return run_slice_on(p, p->d->store);
}

/*
 * The old pages, data and all, stay in the WAL until a checkpoint copies the new ones into
 * the database; TRUNCATE then empties the WAL file. A reader holding an old snapshot can keep
 * it from completing; the frames are then overwritten as the WAL is reused after later
 * checkpoints.
 */
static void checkpoint(sqlite3 *db)
{
    /* Not the pragma: it answers SQLITE_OK with busy = 1 in its row when a reader kept it
     * from completing. */
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    store_check_sync(rc, "the purge's checkpoint's sync");
    if (rc != SQLITE_OK)
        log_warn("privacy: WAL checkpoint: %s; the old frames are overwritten as the WAL is"
                 " reused",
                 sqlite3_errstr(rc));
}

/*
 * The checkpoint after a purge on a loop, in two parts, so that tallyd's own housekeeping
 * never takes the write lock from under the loop (whose writes wait only STORE_BUSY_MS for
 * it and would answer `busy`):
 *
 * 1. On a worker thread, with its own connection: PASSIVE checkpoints, which copy the frames
 *    into the database without the write lock, until one finds every frame of the WAL copied
 *    (a reader holding an old snapshot can keep it from getting there: it is tried again a
 *    moment later, up to CHECKPOINT_TRIES times). Copying and syncing, the slow part, is done
 *    here, holding neither the loop nor its writers.
 * 2. On the loop, with the loop's own connection (so no loop write can be refused by it):
 *    TRUNCATE, which then has nothing left to copy and only empties the WAL file. It waits for
 *    no one (no busy handler): when a reader is in the WAL just then, it is tried again on a
 *    timer. If the loop wrote while the worker ran, the worker runs again first, so the loop
 *    does not copy those frames itself; after CHECKPOINT_ROUNDS such rounds (writes without a
 *    pause) the loop copies what the last round left, a transaction or a few.
 */
#define CHECKPOINT_TRIES 400
#define CHECKPOINT_PAUSE_US 5000
#define CHECKPOINT_ROUNDS 8
#define TRUNCATE_TRIES 400
#define TRUNCATE_PAUSE_MS 5

static void on_checkpoint_work(uv_work_t *w)
{
    struct privacy *p = w->data;
    sqlite3 *db = NULL;
    p->backfilled = false;
    if (sqlite3_open_v2(p->db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        log_warn("privacy: WAL checkpoint: cannot open %s", p->db_path);
        sqlite3_close(db);
        return;
    }
    /* SQLite's extended codes: without them a failed sync reads SQLITE_IOERR, not
     * SQLITE_IOERR_FSYNC, and store_check_sync would not see it. */
    sqlite3_extended_result_codes(db, 1);
    /* Closing never checkpoints on this connection's own (that could take the lock). */
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    /* A new connection opens the file, and learns it is in WAL mode, at its first read: a
     * checkpoint before that does nothing (and says SQLITE_OK). */
    int rc = sqlite3_exec(db, "SELECT COUNT(*) FROM sqlite_master", NULL, NULL, NULL);
    for (int i = 0; rc == SQLITE_OK && i < CHECKPOINT_TRIES; i++) {
        if (i > 0)
            uv_sleep(CHECKPOINT_PAUSE_US / 1000);
        int log_frames = -1, copied = -1;
        int r =
            sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &copied);
        store_check_sync(r, "the purge's checkpoint's sync");
        if (r == SQLITE_OK && log_frames >= 0 && log_frames == copied) {
            p->backfilled = true;
            break;
        }
        if (r != SQLITE_OK && (r & 0xff) != SQLITE_BUSY) /* busy: another checkpoint runs */
            rc = r;
    }
    sqlite3_close(db);
}

static void on_timer_closed(uv_handle_t *h);

static void on_idle_closed(uv_handle_t *h)
{
    struct privacy *p = h->data;
    if (p->timer_on) {
        p->timer_on = false;
        uv_close((uv_handle_t *)&p->timer, on_timer_closed);
        return;
    }
    free(p->db_path);
    free(p);
}

static void on_timer_closed(uv_handle_t *h)
{
    on_idle_closed(h);
}

/* The job is over: the caller learns its outcome and the job frees itself. */
static void finish(struct privacy *p)
{
    struct tallyd *d = p->d;
    if (!p->dry_run && p->orders > 0)
        log_info("privacy: purged the personal data of %lld orders", (long long)p->orders);
    d->privacy = NULL;
    if (p->done)
        p->done(d, p->arg, p->r, p->orders);
    if (p->on_loop && !p->on_workers)
        uv_close((uv_handle_t *)&p->idle, on_idle_closed);
    else
        on_idle_closed((uv_handle_t *)&p->idle);
}

static void queue_checkpoint(struct privacy *p);
static void try_truncate(struct privacy *p);

static void on_truncate_timer(uv_timer_t *t)
{
    try_truncate(t->data);
}

/* Part 2, on the loop: see above. */
static void try_truncate(struct privacy *p)
{
    struct store *st = p->d->store;
    sqlite3 *db = store_db(st);
    if (p->d->stopping) {
        finish(p);
        return;
    }
    if (sqlite3_total_changes64(db) != p->changes && p->rounds < CHECKPOINT_ROUNDS) {
        queue_checkpoint(p); /* the loop wrote meanwhile: the worker copies that first */
        return;
    }
    int rc = SQLITE_BUSY;
    if (!store_in_tx(st) && sqlite3_get_autocommit(db)) {
        sqlite3_busy_handler(db, NULL, NULL);
        rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        store_check_sync(rc, "the purge's checkpoint's sync");
        sqlite3_busy_timeout(db, STORE_BUSY_MS);
    }
    if (rc == SQLITE_OK) {
        finish(p);
        return;
    }
    if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && ++p->truncate_tries < TRUNCATE_TRIES) {
        uv_timer_start(&p->timer, on_truncate_timer, TRUNCATE_PAUSE_MS, 0);
        return;
    }
    log_warn("privacy: WAL checkpoint: %s; the old frames are overwritten as the WAL is reused",
             sqlite3_errstr(rc));
    finish(p);
}

static void on_checkpoint_done(uv_work_t *w, int status)
{
    struct privacy *p = w->data;
    p->rounds++;
    if (status != 0 || !p->backfilled) {
        log_warn("privacy: WAL checkpoint: a reader kept it from completing; the old frames"
                 " are overwritten as the WAL is reused");
        finish(p);
        return;
    }
    try_truncate(p);
}

/* Part 1: from the loop, onto a worker thread. */
static void queue_checkpoint(struct privacy *p)
{
    p->changes = sqlite3_total_changes64(store_db(p->d->store));
    p->work.data = p;
    if (uv_queue_work(p->d->loop, &p->work, on_checkpoint_work, on_checkpoint_done) != 0) {
        p->rounds = CHECKPOINT_ROUNDS; /* no worker: the loop does it all */
        try_truncate(p);
    }
}

/* After the last slice: the checkpoint (when anything was purged), then the outcome. */
static void slices_over(struct privacy *p)
{
    if (p->dry_run || p->orders == 0) {
        finish(p);
        return;
    }
    if (!p->on_loop) {
        checkpoint(store_db(p->d->store));
        finish(p);
        return;
    }
    uv_timer_init(p->d->loop, &p->timer);
    p->timer.data = p;
    p->timer_on = true;
    queue_checkpoint(p);
}

static void on_idle(uv_idle_t *h)
{
    struct privacy *p = h->data;
    int more = p->d->stopping ? TALLY_E_SHUTTING_DOWN : run_slice(p);
    if (more == 1)
        return;
    uv_idle_stop(h);
    if (more < 0)
        p->r = more;
    slices_over(p);
}

/* On the writer's thread: slices for about PURGE_JOB_US. 1: more to do, 0: done, or an
 * error (what was committed stays). */
static int purge_job_run(struct worker_job *job, struct store *st)
{
    struct privacy *p = (struct privacy *)job;
    int64_t t0 = worker_now_us();
    int more;
    do
        more = run_slice_on(p, st);
    while (more == 1 && worker_now_us() - t0 < PURGE_JOB_US);
    return more;
}

/* On the loop: the next job, or the end. */
static void purge_job_done(struct worker_job *job, int status)
{
    struct privacy *p = (struct privacy *)job;
    if (status == 1 && !p->d->stopping && worker_write(p->d, &p->job) == 0)
        return;
    if (status == 1)
        status = TALLY_E_SHUTTING_DOWN;
    if (status < 0)
        p->r = status;
    if (p->d->stopping) {
        finish(p);
        return;
    }
    slices_over(p);
}

static int start(struct tallyd *d, int64_t older_than_days, bool dry_run, bool on_loop,
                 privacy_done_fn done, void *arg)
{
    if (older_than_days < 0 || older_than_days > 3650)
        return TALLY_E_INVALID_PARAMS;
    if (d->privacy)
        return TALLY_E_BUSY;
    struct privacy *p = calloc(1, sizeof *p);
    if (!p || !(p->db_path = strdup(store_path(d->store)))) {
        free(p);
        return TALLY_E_NOMEM;
    }
    p->d = d;
    p->cutoff = store_now() - older_than_days * DAY_S;
    p->dry_run = dry_run;
    p->after_fin = INT64_MIN;
    p->after_id = INT64_MIN;
    p->done = done;
    p->arg = arg;
    p->idle.data = p;
    p->on_loop = on_loop;
    d->privacy = p;
    if (!on_loop) {
        int more;
        while ((more = run_slice(p)) == 1)
            ;
        if (more < 0)
            p->r = more;
        slices_over(p);
        return 0;
    }
    if (!dry_run && d->workers) {
        p->on_workers = true;
        p->job.run = purge_job_run;
        p->job.done = purge_job_done;
        int r = worker_write(d, &p->job);
        if (r) {
            d->privacy = NULL;
            free(p->db_path);
            free(p);
        }
        return r;
    }
    uv_idle_init(d->loop, &p->idle);
    uv_idle_start(&p->idle, on_idle);
    return 0;
}

int privacy_purge_start(struct tallyd *d, int64_t older_than_days, bool dry_run,
                        privacy_done_fn done, void *arg)
{
    /* Without a loop to come back to, every slice now. */
    return start(d, older_than_days, dry_run, d->loop != NULL, done, arg);
}

bool privacy_running(const struct tallyd *d)
{
    return d->privacy != NULL;
}

struct sync_result {
    int r;
    int64_t orders;
};

static void on_sync_done(struct tallyd *d, void *arg, int r, int64_t orders)
{
    (void)d;
    struct sync_result *res = arg;
    res->r = r;
    res->orders = orders;
}

int privacy_purge(struct tallyd *d, int64_t older_than_days, bool dry_run, int64_t *orders)
{
    struct sync_result res = {.r = 0, .orders = 0};
    *orders = 0;
    int r = start(d, older_than_days, dry_run, false, on_sync_done, &res);
    if (r)
        return r;
    *orders = res.orders;
    return res.r;
}
