#include "store.h"

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
};

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

int store_open(const char *path, bool sync_full, struct store **out, char *err, size_t errlen)
{
    struct store *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->path = strdup(path);
    st->held_tail = &st->held;
    st->nslots = 256;
    st->slots = calloc(st->nslots, sizeof *st->slots);
    if (!st->path || !st->slots) {
        snprintf(err, errlen, "out of memory");
        store_close(st);
        return -1;
    }
    /* The replica holds buyers' personal data: owner-only from creation on. */
    mode_t old = umask(077);
    int rc = sqlite3_open_v2(
        path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    umask(old);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : "cannot open");
        store_close(st);
        return -1;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 5000);
    char e[256];
    if (exec(st->db, "PRAGMA journal_mode=WAL", e, sizeof e) != SQLITE_OK ||
        exec(st->db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", e,
             sizeof e) != SQLITE_OK ||
        exec(st->db, "PRAGMA foreign_keys=ON", e, sizeof e) != SQLITE_OK ||
        /* 8 MiB of page cache keeps tallyd within its 32 MiB budget; reads of a large replica
         * are served by the kernel's page cache, which is not the daemon's memory. */
        exec(st->db, "PRAGMA cache_size=-8192", e, sizeof e) != SQLITE_OK ||
        exec(st->db, "PRAGMA temp_store=MEMORY", e, sizeof e) != SQLITE_OK) {
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
    *out = st;
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
    struct held_item *h = st->held;
    st->held = NULL;
    st->held_tail = &st->held;
    st->held_bytes = 0;
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
    log_error("%s: %s (%d)", what, sqlite3_errmsg(st->db), rc);
    return TALLY_E_STORAGE;
}

static int run_simple(struct store *st, const char *sql, const char *what)
{
    sqlite3_stmt *s = store_stmt(st, sql);
    if (!s)
        return TALLY_E_STORAGE;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, what);
    return 0;
}

int store_begin(struct store *st)
{
    int r = run_simple(st, "BEGIN IMMEDIATE", "begin");
    if (r == 0) {
        held_drop(st); /* nothing can be held outside a transaction; be sure */
        st->in_tx = true;
    }
    return r;
}

int store_commit(struct store *st)
{
    int r = run_simple(st, "COMMIT", "commit");
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
    tx_end(st, false);
    if (sqlite3_get_autocommit(st->db))
        return; /* SQLite already rolled back (e.g. after SQLITE_FULL) */
    run_simple(st, "ROLLBACK", "rollback");
}

bool store_in_tx(const struct store *st)
{
    return st->in_tx;
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
