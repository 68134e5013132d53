#include "store.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "tally/protocol.h"

struct stmt_slot {
    const char *sql;
    sqlite3_stmt *stmt;
};

/* Work held until the open transaction commits (store_after_commit). */
struct held_item {
    struct held_item *next;
    store_commit_fn fn;
    void *arg;
    size_t len;
    unsigned char data[];
};

struct store {
    sqlite3 *db;
    char *path;
    struct stmt_slot *slots; /* open addressing on the SQL text's address */
    size_t nslots, used;
    bool publish;
    bool in_tx; /* between a successful store_begin and its commit or rollback */
    struct held_item *held, **held_tail;
    size_t held_bytes;
    pthread_mutex_t *writer; /* store_set_writer_lock: held from begin to commit/rollback */
    bool locked;             /* this connection holds *writer */
    bool bulk;               /* store_set_bulk: its waits do not count in writer_waiters */
    bool keep_held;          /* store_keep_held: committed work waits in `ready` */
    struct held_item *ready, **ready_tail;
    /* Group commit (store_group_enable): store_begin opens a savepoint in one transaction
     * that store_group_commit ends; a write's store_commit releases only its savepoint. */
    bool group;                        /* group mode on */
    bool group_open;                   /* the group's transaction is open */
    int group_lost;                    /* TALLY_E_* of a group transaction lost, until taken */
    struct held_item **sp_tail;        /* held_tail when the write's savepoint was taken */
    size_t sp_bytes;                   /* held_bytes then */
    int (*before_begin)(void *, bool); /* store_set_before_begin */
    void *before_begin_arg;
    /* Durability (store.h "Lazy commits"). */
    bool level_full;   /* the connection's own level: synchronous = FULL */
    bool tx_lazy;      /* the open transaction runs at NORMAL (its own level restored at its end) */
    bool tx_sends;     /* the open transaction appended rows to send (store_note_send) */
    bool yielded;      /* the last store_begin_yield gave way to a group commit */
    bool triggers_off; /* store_set_triggers(st, false) */
    bool fk_off;       /* the connection's foreign keys are off (or not known to be on) */
    bool fk_job;       /* turned off by store_set_foreign_keys(st, false): a job wants them so */
    int64_t tx_changes0;     /* sqlite3_total_changes64 at its begin (state_unsynced) */
    uint64_t last_seq;       /* the number of this connection's last commit (store_last_seq) */
    void (*wal_due)(void *); /* store_defer_checkpoints */
    void *wal_due_arg;
    bool (*ready_gate)(void *, struct store_ready *); /* store_set_ready_gate */
    void *ready_gate_arg;
};

/*
 * Durability by commit number (store.h "Lazy commits", "Syncs"). Every commit takes the next
 * number, in commit order (under the writer lock, after its COMMIT
 * returned); every commit numbered up to durable_seq is durable (a durable commit syncs the
 * whole WAL, store_synced records a sync of it that began after those commits). sends_seq and
 * state_seq are the numbers of the last commit that was not durable and appended rows to send,
 * or changed rows at all: unsynced while above durable_seq. commit_seq, sends_seq and
 * state_seq change only under the writer lock; durable_seq only grows.
 */
static atomic_uint_fast64_t commit_seq, durable_seq, sends_seq, state_seq;

static void seq_raise(atomic_uint_fast64_t *v, uint64_t to)
{
    uint_fast64_t cur = atomic_load(v);
    while (cur < to && !atomic_compare_exchange_weak(v, &cur, to))
        ;
}

void store_set_publish(struct store *st, bool on)
{
    st->publish = on;
}

bool store_publishes(const struct store *st)
{
    return st->publish;
}

int64_t store_now(void)
{
    return (int64_t)time(NULL);
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
    }
    return rc;
}

/* PRAGMA journal_mode=WAL answers the mode in force, which is the old one when WAL cannot be
 * had (a VFS without shared memory, e.g. on some network filesystems): that is an error, not
 * a silent rollback journal. */
static int set_wal(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return rc;
    }
    rc = sqlite3_step(s);
    const char *mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
    if (rc != SQLITE_ROW)
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    else if (!mode || sqlite3_stricmp(mode, "wal") != 0)
        snprintf(err, errlen,
                 "cannot use WAL journal mode (journal_mode is %s): the replica needs a local "
                 "filesystem with shared memory",
                 mode ? mode : "unknown");
    else
        rc = SQLITE_OK;
    if (rc == SQLITE_ROW)
        rc = SQLITE_ERROR;
    sqlite3_finalize(s);
    return rc;
}

/* Reads an integer PRAGMA back: SQLITE_OK when it is `want`. */
static int pragma_is(sqlite3 *db, const char *sql, int want, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW && sqlite3_column_int(s, 0) == want)
            rc = SQLITE_OK;
        else if (rc == SQLITE_ROW)
            snprintf(err, errlen, "%s is %d, not %d", sql + 7, sqlite3_column_int(s, 0), want);
        else
            snprintf(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
        if (rc == SQLITE_ROW)
            rc = SQLITE_ERROR;
        sqlite3_finalize(s);
    } else {
        snprintf(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
    }
    return rc;
}

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Opens one connection; `extra` is one more connection to a replica tallyd already opened
 * and migrated (store_open_extra), `readonly` one that never writes. */
static int open_conn(const char *path, bool sync_full, bool extra, bool readonly,
                     struct store **out, char *err, size_t errlen)
{
    struct store *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->path = strdup(path);
    st->level_full = sync_full;
    st->held_tail = &st->held;
    st->ready_tail = &st->ready;
    st->nslots = 256;
    st->slots = calloc(st->nslots, sizeof *st->slots);
    if (!st->path || !st->slots) {
        snprintf(err, errlen, "out of memory");
        store_close(st);
        return -1;
    }
    /* SQLite counts the memory it holds under a global mutex at every allocation (the
     * default): tallyd never reads those counts, and a bulk load allocates per row. Only
     * before SQLite is initialised (the first open); later calls are refused, harmlessly. */
    static atomic_bool configured;
    if (!atomic_exchange(&configured, true))
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* The replica holds buyers' personal data: owner-only from creation on. */
    mode_t old = umask(077);
    int flags =
        readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | (extra ? 0 : SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &st->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    umask(old);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : "cannot open");
        store_close(st);
        return -1;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 5000);
    char e[256];
    if ((!readonly && set_wal(st->db, e, sizeof e) != SQLITE_OK) ||
        exec(st->db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", e,
             sizeof e) != SQLITE_OK ||
        exec(st->db, "PRAGMA foreign_keys=ON", e, sizeof e) != SQLITE_OK ||
        /* 8 MiB of page cache keeps tallyd within its 32 MiB budget; reads of a large replica
         * are served by the kernel's page cache, which is not the daemon's memory. */
        exec(st->db, "PRAGMA cache_size=-8192", e, sizeof e) != SQLITE_OK ||
        exec(st->db, "PRAGMA temp_store=MEMORY", e, sizeof e) != SQLITE_OK ||
        /* A PRAGMA that cannot take effect says nothing: read each one back. */
        pragma_is(st->db, "PRAGMA synchronous", sync_full ? 2 : 1, e, sizeof e) != SQLITE_OK ||
        pragma_is(st->db, "PRAGMA foreign_keys", 1, e, sizeof e) != SQLITE_OK ||
        pragma_is(st->db, "PRAGMA temp_store", 2, e, sizeof e) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, e);
        store_close(st);
        return -1;
    }
    int v = user_version(st->db);
    if (v < 0) {
        snprintf(err, errlen, "%s: not a tally replica (or unreadable): %s", path,
                 sqlite3_errmsg(st->db));
        store_close(st);
        return -1;
    }
    if (extra && v != schema_latest()) {
        snprintf(err, errlen, "%s: schema version %d, expected %d", path, v, schema_latest());
        store_close(st);
        return -1;
    }
    if (extra) {
        *out = st; /* off the loop: keeps the long busy timeout of its own */
        return 0;
    }
    if (v > schema_latest()) {
        snprintf(err, errlen,
                 "%s: schema version %d is newer than this tallyd supports (%d); "
                 "run the tallyd that created it, or a newer one",
                 path, v, schema_latest());
        store_close(st);
        return -1;
    }
    /* Ours (or new): owner-only, whatever mode an older copy had. A file that is not a
     * replica was refused above without being touched. */
    chmod(path, 0600);
    char side[4096];
    snprintf(side, sizeof side, "%s-wal", path);
    chmod(side, 0600); /* SQLite gives these the database's mode when it creates them */
    snprintf(side, sizeof side, "%s-shm", path);
    chmod(side, 0600);
    if (v < schema_latest() && schema_migrate(st->db, v, err, errlen) != 0) {
        store_close(st);
        return -1;
    }
    /* From here on the connection serves the loop: it never waits on another process's lock
     * for more than STORE_BUSY_MS (opening and migrating above may wait longer, before the
     * loop runs). A write that cannot have the lock fails with TALLY_E_BUSY, uncommitted. */
    sqlite3_busy_timeout(st->db, STORE_BUSY_MS);
    *out = st;
    return 0;
}

int store_open(const char *path, bool sync_full, struct store **out, char *err, size_t errlen)
{
    return open_conn(path, sync_full, false, false, out, err, errlen);
}

int store_open_extra(const char *path, bool sync_full, bool readonly, struct store **out, char *err,
                     size_t errlen)
{
    return open_conn(path, sync_full, true, readonly, out, err, errlen);
}

int store_set_cache_kib(struct store *st, int kib)
{
    char sql[48], e[256];
    snprintf(sql, sizeof sql, "PRAGMA cache_size=-%d", kib > 0 ? kib : 1);
    if (exec(st->db, sql, e, sizeof e) != SQLITE_OK) {
        log_error("cache_size: %s", e);
        return TALLY_E_STORAGE;
    }
    return 0;
}

static void held_drop(struct store *st)
{
    for (struct held_item *h = st->held, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    st->held = NULL;
    st->held_tail = &st->held;
    st->held_bytes = 0;
}

/* The transaction ended: run what was held for its commit, or drop it. */
static void tx_end(struct store *st, bool committed)
{
    st->in_tx = false;
    /* Before the writer lock goes: no other transaction commits between, so numbers follow
     * the commits' order. A durable commit made every commit before it durable too. */
    if (committed) {
        uint64_t seq = atomic_fetch_add(&commit_seq, 1) + 1;
        st->last_seq = seq;
        bool changed = sqlite3_total_changes64(st->db) != st->tx_changes0;
        if (st->level_full && !st->tx_lazy) {
            /* Only a commit that wrote frames syncs the WAL: one that changed nothing wrote
             * none, synced nothing and vouches for nothing before it. */
            if (changed)
                seq_raise(&durable_seq, seq);
        } else {
            if (st->tx_sends)
                atomic_store(&sends_seq, seq);
            if (changed)
                atomic_store(&state_seq, seq);
        }
    }
    st->tx_sends = false;
    if (st->tx_lazy) {
        st->tx_lazy = false;
        if (store_run(st, "PRAGMA synchronous = FULL", "synchronous") != 0)
            log_error("store: synchronous = FULL not restored after a lazy commit");
    }
    if (st->locked) {
        st->locked = false;
        pthread_mutex_unlock(st->writer);
    }
    struct held_item *h = st->held;
    st->held = NULL;
    st->held_tail = &st->held;
    st->held_bytes = 0;
    if (committed && st->keep_held && h) {
        *st->ready_tail = h;
        while (h->next)
            h = h->next;
        st->ready_tail = &h->next;
        return;
    }
    if (committed && h && st->ready_gate &&
        st->ready_gate(st->ready_gate_arg, (struct store_ready *)h))
        return; /* the gate runs it later (gcommit.c: after what was committed before) */
    while (h) {
        struct held_item *next = h->next;
        if (committed)
            h->fn(h->arg, h->data, h->len);
        free(h);
        h = next;
    }
}

void store_close(struct store *st)
{
    if (!st)
        return;
    held_drop(st);
    store_ready_free(store_take_ready(st));
    for (size_t i = 0; i < st->nslots; i++)
        sqlite3_finalize(st->slots ? st->slots[i].stmt : NULL);
    if (st->db) {
        /* Leave no -wal/-shm behind on a clean stop; harmless if another reader holds them. */
        sqlite3_close(st->db);
    }
    free(st->slots);
    free(st->path);
    free(st);
}

sqlite3 *store_db(struct store *st)
{
    return st->db;
}

const char *store_path(const struct store *st)
{
    return st->path;
}

int store_schema_version(struct store *st)
{
    return user_version(st->db);
}

static size_t slot_of(const struct store *st, const char *sql)
{
    uintptr_t h = (uintptr_t)sql;
    h ^= h >> 17;
    h *= 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) & (st->nslots - 1);
}

static int grow(struct store *st)
{
    size_t n = st->nslots * 2;
    struct stmt_slot *ns = calloc(n, sizeof *ns);
    if (!ns)
        return -1;
    struct stmt_slot *old = st->slots;
    size_t oldn = st->nslots;
    st->slots = ns;
    st->nslots = n;
    for (size_t i = 0; i < oldn; i++) {
        if (!old[i].sql)
            continue;
        size_t j = slot_of(st, old[i].sql);
        while (ns[j].sql)
            j = (j + 1) & (n - 1);
        ns[j] = old[i];
    }
    free(old);
    return 0;
}

sqlite3_stmt *store_stmt(struct store *st, const char *sql)
{
    size_t i = slot_of(st, sql);
    while (st->slots[i].sql) {
        if (st->slots[i].sql == sql) {
            sqlite3_stmt *s = st->slots[i].stmt;
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return s;
        }
        i = (i + 1) & (st->nslots - 1);
    }
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        log_error("prepare failed: %s: %s", sqlite3_errmsg(st->db), sql);
        return NULL;
    }
    if ((st->used + 1) * 2 > st->nslots) {
        if (grow(st) != 0) {
            sqlite3_finalize(s);
            return NULL;
        }
        i = slot_of(st, sql);
        while (st->slots[i].sql)
            i = (i + 1) & (st->nslots - 1);
    }
    st->slots[i].sql = sql;
    st->slots[i].stmt = s;
    st->used++;
    return s;
}

int store_error(struct store *st, int rc, const char *what)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_FULL) {
        log_error("%s: disk full", what);
        return TALLY_E_DISK_FULL;
    }
    if (primary == SQLITE_NOMEM)
        return TALLY_E_NOMEM;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
        log_warn("%s: the replica is locked by another process", what);
        return TALLY_E_BUSY;
    }
    log_error("%s: %s (%d)", what, sqlite3_errmsg(st->db), rc);
    return TALLY_E_STORAGE;
}

int store_run(struct store *st, const char *sql, const char *what)
{
    sqlite3_stmt *s = store_stmt(st, sql);
    if (!s)
        return TALLY_E_STORAGE;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    /* A COMMIT's fsync is the WAL's: tallyd's commits never checkpoint (store.h). */
    store_check_sync(rc, what);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, what);
    return 0;
}

/*
 * Threads blocked waiting for the writer lock (store_set_writer_lock; the process has one).
 * A mutex is not fair: a write job that commits a slice and begins the next takes the lock
 * again before a thread it woke (the loop, a client's write waiting) runs, so the loop could
 * wait for many slices instead of one. A thread about to take the lock first lets a waiter
 * that is already blocked have it (bounded: it never waits for that waiter's transaction).
 */
static atomic_int writer_waiters;

static void writer_lock(struct store *st)
{
    for (int i = 0; i < 10000 && atomic_load(&writer_waiters) > 0; i++)
        sched_yield();
    if (pthread_mutex_trylock(st->writer) != 0) {
        /* A bulk connection's wait is not counted (store_set_bulk): bulk jobs do not cut one
         * another's transactions short, nor yield to one another. */
        if (!st->bulk)
            atomic_fetch_add(&writer_waiters, 1);
        pthread_mutex_lock(st->writer);
        if (!st->bulk)
            atomic_fetch_sub(&writer_waiters, 1);
    }
    st->locked = true;
}

void store_set_bulk(struct store *st, bool bulk)
{
    st->bulk = bulk;
}

bool store_writer_wanted(void)
{
    return atomic_load(&writer_waiters) > 0;
}

static int group_begin(struct store *st);

/* Takes the writer lock if needed, sets the transaction's durability and begins. */
static int begin_as(struct store *st, enum store_durability how)
{
    if (st->in_tx) {
        log_error("begin: a transaction is already open on this connection");
        return TALLY_E_STORAGE;
    }
    /* A connection whose foreign keys could not be turned back on writes nothing more until
     * they are (store_set_foreign_keys). */
    if (st->fk_off && !st->fk_job && store_set_foreign_keys(st, true) != 0)
        return TALLY_E_STORAGE;
    if (st->writer && !st->locked)
        writer_lock(st);
    /* Under the writer lock: no commit makes sends unsynced until this one ends (a sync
     * recorded meanwhile only makes more of them durable). */
    bool lazy = how == STORE_LAZY || (how == STORE_SEND && !store_sends_unsynced()) ||
                (how == STORE_SEND_STATE && !store_state_unsynced());
    int r = 0;
    if (lazy && st->level_full) {
        r = store_run(st, "PRAGMA synchronous = NORMAL", "synchronous");
        st->tx_lazy = r == 0;
    }
    if (r == 0)
        r = store_run(st, "BEGIN IMMEDIATE", "begin");
    if (r == 0) {
        held_drop(st); /* nothing can be held outside a transaction; be sure */
        st->in_tx = true;
        st->tx_sends = false;
        st->tx_changes0 = sqlite3_total_changes64(st->db);
    } else {
        tx_end(st, false); /* the level back, the lock released */
    }
    return r;
}

int store_begin_as(struct store *st, enum store_durability how)
{
    if (st->group)
        return group_begin(st);
    if (st->before_begin && !st->in_tx) {
        int r = st->before_begin(st->before_begin_arg, true);
        if (r)
            return r;
    }
    return begin_as(st, how);
}

int store_begin_yield(struct store *st, enum store_durability how)
{
    st->yielded = false;
    if (st->group)
        return group_begin(st);
    if (st->before_begin && !st->in_tx) {
        int r = st->before_begin(st->before_begin_arg, false);
        if (r) {
            st->yielded = r == TALLY_E_BUSY;
            return r;
        }
    }
    return begin_as(st, how);
}

bool store_tx_sends(const struct store *st)
{
    return st->tx_sends;
}

bool store_yielded(const struct store *st)
{
    return st->yielded;
}

int store_begin(struct store *st)
{
    return store_begin_as(st, STORE_DURABLE);
}

int store_begin_nowait_as(struct store *st, enum store_durability how, bool *held_elsewhere)
{
    if (held_elsewhere)
        *held_elsewhere = false;
    st->yielded = false;
    /* The loop's own open group (gcommit.h) holds the writer lock on this very thread: it
     * goes to its commit thread (TALLY_E_BUSY, store_yielded), or is committed first where
     * none runs (as store_begin would); otherwise only another thread's lock says busy. */
    if (!st->group && st->before_begin && !st->in_tx) {
        int r = st->before_begin(st->before_begin_arg, false);
        if (r) {
            st->yielded = r == TALLY_E_BUSY;
            return r;
        }
    }
    if (st->writer && !st->locked) {
        if (pthread_mutex_trylock(st->writer) != 0) {
            if (held_elsewhere)
                *held_elsewhere = true;
            return TALLY_E_BUSY;
        }
        st->locked = true;
    }
    /* The lock is held: neither takes it again. */
    return st->group ? group_begin(st) : begin_as(st, how);
}

int store_begin_nowait(struct store *st, bool *held_elsewhere)
{
    return store_begin_nowait_as(st, STORE_DURABLE, held_elsewhere);
}

/* Frames in the WAL after the last commit of a connection that defers its checkpoints. */
static atomic_int wal_frames;

static int defer_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    struct store *st = arg;
    atomic_store(&wal_frames, frames);
    if (st->wal_due && frames >= STORE_CHECKPOINT_FRAMES)
        st->wal_due(st->wal_due_arg);
    return SQLITE_OK;
}

void store_defer_checkpoints(struct store *st, void (*due)(void *), void *arg)
{
    st->wal_due = due;
    st->wal_due_arg = arg;
    sqlite3_wal_hook(st->db, defer_hook, st); /* replaces the automatic checkpoint */
}

int store_wal_frames(void)
{
    return atomic_load(&wal_frames);
}

int store_checkpoint_passive(struct store *st, int *log_frames, int *copied)
{
    *log_frames = *copied = -1;
    if (st->in_tx || st->group_open)
        return TALLY_E_BUSY;
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, log_frames, copied);
    store_check_sync(rc, "a checkpoint's sync");
    /* All copied: the next writer starts the WAL over. But the checkpoint copies (and counts
     * in log_frames) the frames of the snapshot it began with: a writer on another connection
     * may have appended more meanwhile (worker.c's checkpoint runs beside the write jobs), and
     * its hook counted them. Only a count that is still the checkpoint's own goes to 0. */
    int seen = *log_frames;
    if (rc == SQLITE_OK && seen >= 0 && seen == *copied)
        atomic_compare_exchange_strong(&wal_frames, &seen, 0);
    if (rc == SQLITE_OK || rc == SQLITE_BUSY)
        return 0;
    return store_error(st, rc, "checkpoint");
}

void store_note_send(struct store *st)
{
    if (st->in_tx || st->group_open)
        st->tx_sends = true;
}

bool store_sends_unsynced(void)
{
    return atomic_load(&sends_seq) > atomic_load(&durable_seq);
}

bool store_state_unsynced(void)
{
    return atomic_load(&state_seq) > atomic_load(&durable_seq);
}

uint64_t store_commit_seq(void)
{
    return atomic_load(&commit_seq);
}

uint64_t store_durable_seq(void)
{
    return atomic_load(&durable_seq);
}

uint64_t store_last_seq(const struct store *st)
{
    return st->last_seq;
}

void store_synced(uint64_t seq)
{
    seq_raise(&durable_seq, seq);
}

static void (*wal_sync_failed)(const char *what, int rc);

void store_set_wal_sync_failed(void (*hook)(const char *what, int rc))
{
    wal_sync_failed = hook;
}

void store_check_sync(int rc, const char *what)
{
    if (rc == SQLITE_IOERR_FSYNC && wal_sync_failed)
        wal_sync_failed(what, rc);
}

int store_sync_wal(struct store *st)
{
    sqlite3_file *f = NULL;
    int rc = sqlite3_file_control(st->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
    if (rc != SQLITE_OK || !f || !f->pMethods) {
        log_error("sync: the replica's WAL is not open on this connection");
        return TALLY_E_STORAGE;
    }
    /* As SQLite syncs the WAL in a commit at synchronous = FULL (wal.c: the pager's sync
     * flags, SQLITE_SYNC_NORMAL unless fullfsync is on, which tallyd never sets). */
    rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
    if (rc != SQLITE_OK) {
        log_error("sync of the replica's WAL failed: %s (%d)", sqlite3_errstr(rc), rc);
        if (wal_sync_failed)
            wal_sync_failed("the sync thread's sync of the WAL", rc);
        return (rc & 0xff) == SQLITE_FULL ? TALLY_E_DISK_FULL : TALLY_E_STORAGE;
    }
    return 0;
}

int store_wal_attach(struct store *st)
{
    /* A connection opens the WAL at its first read of a WAL database and keeps it open while
     * it is open: read the schema's version once. */
    if (user_version(st->db) < 0)
        return TALLY_E_STORAGE;
    sqlite3_file *f = NULL;
    int rc = sqlite3_file_control(st->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
    return rc == SQLITE_OK && f && f->pMethods ? 0 : TALLY_E_STORAGE;
}

void store_set_ready_gate(struct store *st, bool (*gate)(void *, struct store_ready *), void *arg)
{
    st->ready_gate = gate;
    st->ready_gate_arg = arg;
}

int store_set_durable(struct store *st, bool full)
{
    if (st->in_tx || st->group_open)
        return TALLY_E_STORAGE;
    int r = store_run(st, full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                      "synchronous");
    if (r == 0)
        st->level_full = full;
    return r;
}

int store_set_triggers(struct store *st, bool on)
{
    if (st->triggers_off == !on)
        return 0;
    /* never on a connection whose transactions other writes share (group mode) */
    if (st->in_tx || st->group_open || (st->group && !on))
        return TALLY_E_STORAGE;
    /* SQLite compiles a table's triggers into each statement that writes it, and expires
     * every prepared statement of the connection when this setting changes: the cached ones
     * are prepared again, with or without them, at their next step. */
    int was;
    if (sqlite3_db_config(st->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, on ? 1 : 0, &was) != SQLITE_OK)
        return TALLY_E_STORAGE;
    st->triggers_off = !on;
    return 0;
}

int store_set_foreign_keys(struct store *st, bool on)
{
    if (st->in_tx || st->group)
        return TALLY_E_STORAGE;
    st->fk_job = !on;
    if (st->fk_off == !on)
        return 0;
    /* Read back: the pragma says nothing when it cannot take effect (inside a transaction). */
    char e[160];
    int rc = exec(st->db, on ? "PRAGMA foreign_keys=ON" : "PRAGMA foreign_keys=OFF", e, sizeof e);
    if (rc == SQLITE_OK)
        rc = pragma_is(st->db, "PRAGMA foreign_keys", on ? 1 : 0, e, sizeof e);
    if (rc != SQLITE_OK) {
        /* Not known: off until a turn back on succeeds (store_begin_as tries again). */
        st->fk_off = true;
        log_error("foreign keys %s: %s", on ? "on" : "off", e);
        return TALLY_E_STORAGE;
    }
    st->fk_off = !on;
    return 0;
}

void store_release_foreign_keys(struct store *st)
{
    st->fk_job = false;
}

bool store_triggers_on(const struct store *st)
{
    return !st->triggers_off;
}

void store_set_writer_lock(struct store *st, pthread_mutex_t *mu)
{
    st->writer = mu;
}

void store_keep_held(struct store *st, bool keep)
{
    st->keep_held = keep;
}

struct store_ready *store_take_ready(struct store *st)
{
    struct held_item *h = st->ready;
    st->ready = NULL;
    st->ready_tail = &st->ready;
    return (struct store_ready *)h;
}

struct store_ready *store_ready_join(struct store_ready *a, struct store_ready *b)
{
    if (!a)
        return b;
    struct held_item *h = (struct held_item *)a;
    while (h->next)
        h = h->next;
    h->next = (struct held_item *)b;
    return a;
}

void store_ready_run(struct store_ready *list)
{
    for (struct held_item *h = (struct held_item *)list, *next; h; h = next) {
        next = h->next;
        h->fn(h->arg, h->data, h->len);
        free(h);
    }
}

void store_ready_free(struct store_ready *list)
{
    for (struct held_item *h = (struct held_item *)list, *next; h; h = next) {
        next = h->next;
        free(h);
    }
}

static int group_release(struct store *st);
static void group_rollback_write(struct store *st);

int store_commit(struct store *st)
{
    if (st->group && st->group_open)
        return group_release(st);
    int r = store_run(st, "COMMIT", "commit");
    if (r != 0) {
        if (!sqlite3_get_autocommit(st->db))
            store_rollback(st);
        tx_end(st, false);
        return r;
    }
    tx_end(st, true);
    return 0;
}

void store_rollback(struct store *st)
{
    if (st->group && st->group_open) {
        group_rollback_write(st);
        return;
    }
    /* SQLite may have rolled back already (e.g. after SQLITE_FULL); the writer lock is
     * released after the rollback, never before. */
    if (!sqlite3_get_autocommit(st->db))
        store_run(st, "ROLLBACK", "rollback");
    tx_end(st, false);
}

bool store_in_tx(const struct store *st)
{
    return st->in_tx || st->group_open;
}

/* ---- group commit (store.h "Group commit") ---- */

void store_group_enable(struct store *st, bool on)
{
    st->group = on;
}

bool store_group_open(const struct store *st)
{
    return st->group_open;
}

bool store_group_in_write(const struct store *st)
{
    return st->group_open && st->in_tx;
}

int store_group_take_lost(struct store *st)
{
    int r = st->group_lost;
    st->group_lost = 0;
    return r;
}

void store_set_before_begin(struct store *st, int (*fn)(void *, bool), void *arg)
{
    st->before_begin = fn;
    st->before_begin_arg = arg;
}

/* The group's transaction is gone (SQLite rolled it back on its own, e.g. on SQLITE_FULL, or
 * a savepoint could not be undone): every write in it is lost, say so once. */
static void group_lose(struct store *st, int code)
{
    if (!sqlite3_get_autocommit(st->db))
        store_run(st, "ROLLBACK", "rollback");
    st->group_open = false;
    st->group_lost = code ? code : TALLY_E_STORAGE;
    st->sp_tail = NULL;
    tx_end(st, false);
}

/* Maps the connection's last error for a lost group (disk full stays disk full). */
static int group_code(struct store *st)
{
    int primary = sqlite3_errcode(st->db) & 0xff;
    return primary == SQLITE_FULL    ? TALLY_E_DISK_FULL
           : primary == SQLITE_NOMEM ? TALLY_E_NOMEM
                                     : TALLY_E_STORAGE;
}

static int group_begin(struct store *st)
{
    if (st->in_tx) {
        log_error("begin: a transaction is already open on this connection");
        return TALLY_E_STORAGE;
    }
    if (!st->group_open) {
        if (st->writer && !st->locked)
            writer_lock(st);
        int r = store_run(st, "BEGIN IMMEDIATE", "begin");
        if (r) {
            if (st->locked) {
                st->locked = false;
                pthread_mutex_unlock(st->writer);
            }
            return r;
        }
        held_drop(st);
        st->group_open = true;
        st->tx_changes0 = sqlite3_total_changes64(st->db);
    }
    int r = store_run(st, "SAVEPOINT w", "savepoint");
    if (r) {
        if (sqlite3_get_autocommit(st->db))
            group_lose(st, r);
        return r;
    }
    st->in_tx = true;
    st->sp_tail = st->held_tail;
    st->sp_bytes = st->held_bytes;
    return 0;
}

static int group_release(struct store *st)
{
    if (!st->in_tx) {
        log_error("commit: no write is open in the group");
        return TALLY_E_STORAGE;
    }
    /* What a COMMIT alone would refuse (a deferred foreign key left broken) fails this write
     * here, so that it does not fail the group's commit and its neighbours with it: rolling
     * back to the savepoint restores the count of open constraints too. */
    int cur = 0, hi = 0;
    if (sqlite3_db_status(st->db, SQLITE_DBSTATUS_DEFERRED_FKS, &cur, &hi, 0) == SQLITE_OK &&
        cur > 0) {
        log_error("commit: FOREIGN KEY constraint failed (deferred)");
        group_rollback_write(st);
        return TALLY_E_STORAGE;
    }
    int r = store_run(st, "RELEASE w", "release");
    if (r) {
        group_rollback_write(st);
        return r;
    }
    st->in_tx = false; /* what it held waits for the group's commit */
    st->sp_tail = NULL;
    return 0;
}

static void group_rollback_write(struct store *st)
{
    if (!st->in_tx)
        return;
    st->in_tx = false;
    if (sqlite3_get_autocommit(st->db)) {
        group_lose(st, group_code(st)); /* SQLite rolled the whole group back */
        return;
    }
    if (store_run(st, "ROLLBACK TO w", "rollback to savepoint") != 0 ||
        store_run(st, "RELEASE w", "release") != 0) {
        group_lose(st, TALLY_E_STORAGE);
        return;
    }
    /* Drop what this write held; its neighbours' stays. */
    struct held_item *h = *st->sp_tail;
    *st->sp_tail = NULL;
    st->held_tail = st->sp_tail;
    st->held_bytes = st->sp_bytes;
    st->sp_tail = NULL;
    while (h) {
        struct held_item *next = h->next;
        free(h);
        h = next;
    }
}

int store_group_detach(struct store *st)
{
    if (!st->group_open)
        return 0;
    if (st->in_tx) {
        log_error("group commit: a write is still open");
        return TALLY_E_BUSY;
    }
    st->group_open = false;
    return 1;
}

int store_group_commit_run(struct store *st)
{
    int r = store_run(st, "COMMIT", "group commit");
    if (r != 0 && !sqlite3_get_autocommit(st->db))
        store_run(st, "ROLLBACK", "rollback");
    return r;
}

void store_group_commit_end(struct store *st, int r)
{
    tx_end(st, r == 0);
}

int store_group_commit(struct store *st)
{
    int d = store_group_detach(st);
    if (d <= 0)
        return d;
    int r = store_group_commit_run(st);
    store_group_commit_end(st, r);
    return r;
}

size_t store_held_bytes(const struct store *st)
{
    return st->held_bytes;
}

int store_after_commit(struct store *st, store_commit_fn fn, void *arg, const void *data,
                       size_t len)
{
    if (!st->in_tx) {
        fn(arg, data, len);
        return 0;
    }
    struct held_item *h = malloc(sizeof *h + len);
    if (!h)
        return TALLY_E_NOMEM;
    h->next = NULL;
    h->fn = fn;
    h->arg = arg;
    h->len = len;
    if (len)
        memcpy(h->data, data, len);
    *st->held_tail = h;
    st->held_tail = &h->next;
    st->held_bytes += sizeof *h + len;
    return 0;
}

int64_t store_count(struct store *st, const char *sql, int64_t dflt)
{
    sqlite3_stmt *s = store_stmt(st, sql);
    if (!s)
        return dflt;
    int64_t v = dflt;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return v;
}
