/*
 * The title index filled in the background (titleidx.h, migration 17): catalog.search finds
 * every committed SKU by its title after a load (nothing indexed yet), during the indexing
 * (part indexed), after it, and after a crash in the middle of a load and of its indexing
 * (a child process killed with SIGKILL) and a restart; title changes and deletes of indexed
 * and of queued SKUs keep the index and the queue exact (FTS5 'integrity-check' once the queue
 * is empty; every SKU indexed or queued, never both). And the upgrade of a replica of schema
 * 15 (every title indexed by the old triggers): its titles stay found, new ones are queued.
 * And the index's segments (migration 20: FTS5 merges nothing by itself, the job merges in
 * transactions of its own): bounded after loads and title changes, search still exact.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "catalog.h"
#include "check.h"
#include "codec.h"
#include "replica_harness.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"
#include "titleidx.h"

static struct rh *h;
static struct tallyd *d;

/* Hits of catalog.search for q (all pages), or -1 when the call failed. */
static int64_t search_hits(const char *q)
{
    int64_t hits = 0;
    char cursor[TALLY_MAX_ID_LEN + 16] = "";
    for (int page = 0; page < 100; page++) {
        char qp[200], cp[sizeof cursor + 8];
        snprintf(qp, sizeof qp, "q=%s", q);
        snprintf(cp, sizeof cp, "cursor=%s", cursor);
        const msgpack_object *r = cursor[0]
                                      ? rh_call(h, "catalog.search", qp, "limit=#1000", cp, NULL)
                                      : rh_call(h, "catalog.search", qp, "limit=#1000", NULL);
        if (!r)
            return -1;
        const msgpack_object *items = mp_map_get(r, "items");
        if (!items || items->type != MSGPACK_OBJECT_ARRAY)
            return -1;
        hits += items->via.array.size;
        const char *next = rh_sget(r, "next_cursor");
        if (!next || !next[0])
            return hits;
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    return -1;
}

/* Titles in the index (FTS5's docsize table: one row per indexed document). */
static int64_t indexed(void)
{
    return rh_q64(h, "SELECT COUNT(*) FROM sku_titles_docsize");
}

/* Every SKU is indexed or queued, never both and never neither. */
static void check_exact(const char *when)
{
    int64_t skus = rh_q64(h, "SELECT COUNT(*) FROM skus");
    int64_t both = rh_q64(h, "SELECT COUNT(*) FROM sku_titles_todo WHERE id IN"
                             " (SELECT id FROM sku_titles_docsize)");
    int64_t neither = rh_q64(h, "SELECT COUNT(*) FROM skus WHERE id NOT IN"
                                " (SELECT id FROM sku_titles_todo) AND id NOT IN"
                                " (SELECT id FROM sku_titles_docsize)");
    if (both != 0 || neither != 0 || indexed() + titleidx_behind(d->store) != skus)
        fprintf(stderr, "check_exact (%s): skus %lld, both %lld, neither %lld\n", when,
                (long long)skus, (long long)both, (long long)neither);
    CHECK_EQ_INT(both, 0);
    CHECK_EQ_INT(neither, 0);
    CHECK_EQ_INT(indexed() + titleidx_behind(d->store), skus);
}

static void drain(void)
{
    bool empty = false;
    for (int i = 0; i < 10000 && !empty; i++) {
        int64_t n = 0;
        CHECK_EQ_INT(titleidx_step(d->store, TITLEIDX_BATCH, INT64_MAX, &n, &empty), 0);
    }
    CHECK(empty);
    CHECK_EQ_INT(titleidx_behind(d->store), 0);
    /* the index holds exactly the SKUs' titles */
    CHECK_EQ_INT(rh_exec(h, "INSERT INTO sku_titles(sku_titles) VALUES('integrity-check')"), 0);
}

/* n SKUs TX<first>.. with titles "Widget <k> zq<k>x" (a word unique to each). */
static void load(int first, int n)
{
    RH_EXEC(h,
            "WITH RECURSIVE k(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM k WHERE i < %d)"
            " INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
            " SELECT 'TX' || i, (SELECT id FROM products LIMIT 1), 'Widget ' || i || ' zq' || i"
            " || 'x', 100, 'EUR', 0 FROM k",
            first, first + n - 1);
}

static void test_load_during_after(void)
{
    rh_open(h);
    rh_seed_standard(h);
    drain(); /* the seed's two SKUs */
    load(1, 3000);
    /* After the load, nothing of it indexed: every title is found (from the queue). */
    CHECK_EQ_INT(titleidx_behind(d->store), 3000);
    CHECK_EQ_INT(indexed(), 2);
    CHECK_EQ_INT(search_hits("Widget"), 3000);
    CHECK_EQ_INT(search_hits("zq2999x"), 1);
    CHECK_EQ_INT(search_hits("widget 1"), 1111); /* 1, 10-19, 100-199, 1000-1999 */
    check_exact("after the load");

    /* During: a third indexed, in id order. */
    int64_t n = 0;
    bool empty = true;
    CHECK_EQ_INT(titleidx_step(d->store, 1000, INT64_MAX, &n, &empty), 0);
    CHECK_EQ_INT(n, 1000);
    CHECK(!empty);
    CHECK_EQ_INT(titleidx_behind(d->store), 2000);
    CHECK_EQ_INT(search_hits("Widget"), 3000); /* from both halves, each once */
    CHECK_EQ_INT(search_hits("zq5x"), 1);      /* indexed */
    CHECK_EQ_INT(search_hits("zq2999x"), 1);   /* queued */
    check_exact("during");

    /* Changes meanwhile: an indexed title changed and one deleted, a queued one changed and
     * one deleted; a title set to what it was queues nothing. */
    RH_EXEC(h, "UPDATE skus SET title = 'Gadget renamed' WHERE code = 'TX5'");
    RH_EXEC(h, "DELETE FROM skus WHERE code = 'TX6'");
    RH_EXEC(h, "UPDATE skus SET title = 'Gizmo renamed' WHERE code = 'TX2500'");
    RH_EXEC(h, "DELETE FROM skus WHERE code = 'TX2501'");
    RH_EXEC(h, "UPDATE skus SET title = title WHERE code = 'TX7'");
    CHECK_EQ_INT(search_hits("zq5x"), 0);
    CHECK_EQ_INT(search_hits("zq6x"), 0);
    CHECK_EQ_INT(search_hits("zq2500x"), 0);
    CHECK_EQ_INT(search_hits("zq2501x"), 0);
    CHECK_EQ_INT(search_hits("zq7x"), 1);
    CHECK_EQ_INT(search_hits("renamed"), 2);
    CHECK_EQ_INT(search_hits("Widget"), 2996);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM sku_titles_todo WHERE id = %lld",
                        (long long)rh_sku_id(h, "TX7")),
                 0);
    check_exact("after changes");

    /* After: the index alone answers, and matches the SKUs exactly. */
    drain();
    CHECK_EQ_INT(search_hits("Widget"), 2996);
    CHECK_EQ_INT(search_hits("renamed"), 2);
    CHECK_EQ_INT(search_hits("zq2999x"), 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM sku_titles WHERE sku_titles MATCH '\"renamed\"'"),
                 2);
    check_exact("after");
    /* A step with nothing queued does nothing. */
    CHECK_EQ_INT(titleidx_step(d->store, 10, INT64_MAX, &n, &empty), 0);
    CHECK_EQ_INT(n, 0);
    CHECK(empty);
}

/* What the background job does (titleidx_work), until the queue is empty and nothing is left
 * to merge; the most segments seen after any round. */
static int64_t work_all(void)
{
    bool empty = false, idle = false;
    int64_t most = 0;
    for (int i = 0; i < 100000 && !(empty && idle); i++) {
        int64_t n = 0;
        CHECK_EQ_INT(
            titleidx_work(d->store, titleidx_cpu_us() + TITLEIDX_JOB_US, &n, &empty, &idle), 0);
        int64_t segs = titleidx_segments(d->store);
        if (segs > most)
            most = segs;
    }
    CHECK(empty && idle);
    return most;
}

/* catalog.search and the index itself find what a scan of the SKUs finds. */
static void check_search(const char *q)
{
    int64_t want = rh_q64(h, "SELECT COUNT(*) FROM skus WHERE instr(lower(title), lower('%s'))", q);
    CHECK_EQ_INT(search_hits(q), want);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM sku_titles WHERE sku_titles MATCH '\"%s\"'", q),
                 want);
}

/*
 * Loads of 1,000 titles, each indexed and merged as the job does: the segments stay few
 * (without the merges, 2 indexing transactions per load would leave 40 of them), the FTS5
 * structure agrees with the segments in the index's own tables, and search finds exactly what
 * a scan finds. Then 40 title changes of indexed SKUs, each in a transaction of its own:
 * each writes a segment (FTS5 merges nothing by itself), and the job merges them again.
 */
static void test_segments_bounded(void)
{
    rh_open(h);
    rh_seed_standard(h);
    CHECK_EQ_INT(rh_q64(h, "SELECT v FROM sku_titles_config WHERE k = 'automerge'"), 0);
    CHECK_EQ_INT(rh_q64(h, "SELECT v FROM sku_titles_config WHERE k = 'crisismerge'"), 64);
    int64_t most = 0;
    for (int k = 0; k < 20; k++) {
        load(1 + k * 1000, 1000);
        int64_t m = work_all();
        if (m > most)
            most = m;
        int64_t segs = titleidx_segments(d->store);
        CHECK(segs >= 1 && segs <= 12);
        CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(DISTINCT segid) FROM sku_titles_idx"), segs);
    }
    printf("segments: %lld after 20 loads, at most %lld between rounds\n",
           (long long)titleidx_segments(d->store), (long long)most);
    CHECK(most <= 16);
    CHECK_EQ_INT(indexed(), 20002);
    CHECK_EQ_INT(rh_exec(h, "INSERT INTO sku_titles(sku_titles) VALUES('integrity-check')"), 0);
    check_search("Widget");
    check_search("widget 1");
    check_search("zq19999x");
    check_search("zq777x");
    check_search("get 12");

    int64_t before = titleidx_segments(d->store);
    for (int i = 1; i <= 40; i++)
        RH_EXEC(h, "UPDATE skus SET title = 'Gadget %d renamed' WHERE code = 'TX%d'", i, i * 7);
    int64_t after = titleidx_segments(d->store);
    printf("segments: %lld before 40 title changes, %lld after\n", (long long)before,
           (long long)after);
    CHECK(after >= before + 40);
    work_all();
    CHECK(titleidx_segments(d->store) <= 12);
    CHECK_EQ_INT(rh_exec(h, "INSERT INTO sku_titles(sku_titles) VALUES('integrity-check')"), 0);
    check_search("renamed");
    check_search("Widget");
    check_search("zq7x");
    check_search("zq8x");
    check_exact("after the merges");
}

/* The child: loads SKUs in transactions of 50 and indexes between them, until killed. */
static void child_load(const char *path)
{
    struct store *st = NULL;
    char err[256];
    if (store_open(path, false, &st, err, sizeof err) != 0)
        _exit(3);
    sqlite3_stmt *s = store_stmt(
        st, "INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
            " VALUES('CR' || ?1, (SELECT id FROM products LIMIT 1), 'Crashed ' || ?1 || ' zq'"
            " || ?1 || 'x', 1, 'EUR', 0)");
    for (int i = 1; i < 1000000; i++) {
        if (i % 50 == 1 && store_begin(st) != 0)
            _exit(4);
        sqlite3_bind_int(s, 1, i);
        if (sqlite3_step(s) != SQLITE_DONE)
            _exit(5);
        sqlite3_reset(s);
        if (i % 50 == 0) {
            if (store_commit(st) != 0)
                _exit(6);
            int64_t n;
            bool empty;
            if (i % 100 == 0 && titleidx_step(st, 60, INT64_MAX, &n, &empty) != 0)
                _exit(7);
        }
    }
    _exit(0);
}

static void test_crash(unsigned seed)
{
    rh_open(h);
    rh_seed_standard(h);
    char path[512];
    snprintf(path, sizeof path, "%s", store_path(d->store));
    store_close(d->store);
    d->store = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        child_load(path);
    CHECK(pid > 0);
    /* killed at some moment of the load: 0-250 ms after its first 100 SKUs are committed */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    for (int i = 0; i < 3000; i++) {
        sqlite3_stmt *q = NULL;
        int64_t c = 0;
        if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM skus WHERE code LIKE 'CR%'", -1, &q,
                               NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW)
            c = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        if (c >= 100)
            break;
        struct timespec pause = {0, 5000000L};
        nanosleep(&pause, NULL);
    }
    sqlite3_close(db);
    struct timespec ts = {0, (long)(seed % 250) * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));
    char err[256];
    CHECK_EQ_INT(store_open(path, false, &d->store, err, sizeof err), 0);
    int64_t written = rh_q64(h, "SELECT COUNT(*) FROM skus WHERE code LIKE 'CR%%'");
    int64_t behind = titleidx_behind(d->store);
    printf("crash %u: killed after %lld SKUs, %lld of them not indexed yet\n", seed,
           (long long)written, (long long)behind);
    CHECK(written > 0);
    CHECK_EQ_INT(written % 50, 0); /* whole transactions */
    check_exact("after the crash");
    /* after the restart, before indexing: every committed SKU found */
    CHECK_EQ_INT(search_hits("Crashed"), written);
    char q[32];
    snprintf(q, sizeof q, "zq%lldx", (long long)written);
    CHECK_EQ_INT(search_hits(q), 1);
    CHECK_EQ_INT(search_hits("zq1x"), 1);
    drain();
    CHECK_EQ_INT(search_hits("Crashed"), written);
    CHECK_EQ_INT(search_hits(q), 1);
    check_exact("after the restart");
}

/* A replica of schema 15, its titles indexed by the old triggers, upgraded to the latest (17). */
static void test_upgrade(void)
{
    rh_open(h);
    char path[512];
    snprintf(path, sizeof path, "%s", store_path(d->store));
    store_close(d->store);
    d->store = NULL;
    char side[600];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    sqlite3 *db = NULL;
    char err[256];
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK_EQ_INT(schema_migrate_to(db, 0, 15, err, sizeof err), 0);
    /* FTS5's defaults before migration 20: nothing in its config table */
    sqlite3_stmt *cs = NULL;
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT COUNT(*) FROM sku_titles_config"
                             " WHERE k IN ('automerge', 'crisismerge')",
                             -1, &cs, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(cs) == SQLITE_ROW && sqlite3_column_int(cs, 0) == 0);
    sqlite3_finalize(cs);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO products(product_id, title, updated_at) VALUES('P', 'p', 0);"
                       "INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
                       " VALUES('OLD1', 1, 'Old lamp', 1, 'EUR', 0),"
                       " ('OLD2', 1, 'Old chair', 1, 'EUR', 0);",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(store_open(path, false, &d->store, err, sizeof err), 0);
    CHECK_EQ_INT(store_schema_version(d->store), schema_latest());
    CHECK_EQ_INT(titleidx_behind(d->store), 0); /* indexed already: nothing queued */
    CHECK_EQ_INT(indexed(), 2);
    /* migration 20: the index merges only in the job's own transactions */
    CHECK_EQ_INT(rh_q64(h, "SELECT v FROM sku_titles_config WHERE k = 'automerge'"), 0);
    CHECK_EQ_INT(rh_q64(h, "SELECT v FROM sku_titles_config WHERE k = 'crisismerge'"), 64);
    CHECK_EQ_INT(search_hits("old lamp"), 1);
    RH_EXEC(h, "INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
               " VALUES('NEW1', 1, 'New lamp', 1, 'EUR', 0)");
    RH_EXEC(h, "UPDATE skus SET title = 'Old table' WHERE code = 'OLD2'");
    CHECK_EQ_INT(titleidx_behind(d->store), 2);
    CHECK_EQ_INT(search_hits("lamp"), 2);
    CHECK_EQ_INT(search_hits("chair"), 0);
    CHECK_EQ_INT(search_hits("table"), 1);
    check_exact("upgraded");
    drain();
    CHECK_EQ_INT(search_hits("lamp"), 2);
    CHECK_EQ_INT(search_hits("chair"), 0);
    CHECK_EQ_INT(search_hits("old"), 2);
}

/*
 * A replica of the schema just before the title queue (whatever number its migration has after
 * merges), made by rewinding a replica with titles still queued, upgraded again: the rewound
 * replica has every title indexed, as that schema's triggers kept it, so after the upgrade
 * every title is found, nothing is queued, and the index is exact.
 */
static void test_upgrade_rewound(void)
{
    rh_open(h);
    rh_seed_standard(h);
    drain();
    load(1, 50);
    int64_t n = 0;
    bool empty = true;
    CHECK_EQ_INT(titleidx_step(d->store, 20, INT64_MAX, &n, &empty), 0);
    CHECK_EQ_INT(n, 20);
    CHECK_EQ_INT(titleidx_behind(d->store), 30);
    char path[512];
    snprintf(path, sizeof path, "%s", store_path(d->store));
    store_close(d->store);
    d->store = NULL;
    int v = schema_latest(), have = 1;
    while (have && --v > 0) {
        CHECK_EQ_INT(rh_rewind_schema(path, v), 0);
        sqlite3 *db = NULL;
        sqlite3_stmt *s = NULL;
        CHECK(sqlite3_open(path, &db) == SQLITE_OK);
        CHECK(sqlite3_prepare_v2(
                  db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sku_titles_todo'", -1, &s,
                  NULL) == SQLITE_OK);
        have = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        sqlite3_finalize(s);
        sqlite3_close(db);
    }
    printf("rewound to schema %d (the last one without the title queue)\n", v);
    CHECK(v > 0);
    char err[256];
    CHECK_EQ_INT(store_open(path, false, &d->store, err, sizeof err), 0);
    CHECK_EQ_INT(store_schema_version(d->store), schema_latest());
    CHECK_EQ_INT(titleidx_behind(d->store), 0);
    CHECK_EQ_INT(indexed(), 52);
    CHECK_EQ_INT(search_hits("Widget"), 50);
    CHECK_EQ_INT(search_hits("zq50x"), 1);
    check_exact("upgraded from the rewound replica");
    CHECK_EQ_INT(rh_exec(h, "INSERT INTO sku_titles(sku_titles) VALUES('integrity-check')"), 0);
}

/*
 * A large queue at once (a bulk import's titles): one indexing transaction writes a segment
 * faster than one merge transaction merges it, so without merging more while the segments are
 * many they reached FTS5's crisis merge (64 in a level), which merged a whole level inside one
 * commit with the writer lock held (1.4-2 s after a million titles). The job keeps them at
 * TITLEIDX_SEGMENTS_HIGH (one more while a step writes its segment).
 */
static void test_big_queue(void)
{
    rh_open(h);
    rh_seed_standard(h);
    int n = getenv("TALLY_TITLEIDX_BIG") ? atoi(getenv("TALLY_TITLEIDX_BIG")) : 40000;
    /* titles as long and as varied as a real catalog's (tally-gen's): many trigrams each */
    RH_EXEC(h,
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < %d)"
            " INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
            " SELECT 'TX' || i, (SELECT id FROM products LIMIT 1), 'Widget ' || i || ' zq' || i"
            " || 'x LED Desk Lamp with Wireless Charger ' || hex(randomblob(6)) || ', Dimmable,"
            " Eye-Caring - ' || hex(randomblob(4)) || ' / EU plug', 100, 'EUR', 0 FROM k",
            n);
    int64_t most = work_all();
    printf("segments: at most %lld while %d queued titles were indexed (bound %d)\n",
           (long long)most, n, TITLEIDX_SEGMENTS_HIGH + 1);
    CHECK(most <= TITLEIDX_SEGMENTS_HIGH + 1);
    CHECK_EQ_INT(indexed(), n + 2);
    check_search("zq777x");
}

/*
 * Migration 21's insert trigger (INSERT OR IGNORE into the queue): a queued id left behind
 * (a replica written without triggers, say) does not make the next SKU's insert fail, by any
 * of the statements tallyd inserts SKUs with: a placeholder's plain INSERT (catalog_sku_ensure),
 * an upsert's insert (the catalog import) and its DO NOTHING form (whfeed's batch
 * placeholders). Each SKU ends up queued once, then indexed.
 */
static void test_title_queue_stale(void)
{
    rh_open(h);
    rh_seed_standard(h);
    drain();
    static const char *const how[] = {"ensure", "upsert", "nothing"};
    for (int k = 0; k < 3; k++) {
        int64_t next = rh_q64(h, "SELECT MAX(id) + 1 FROM skus");
        RH_EXEC(h, "INSERT INTO sku_titles_todo(id) VALUES(%lld)", (long long)next);
        int64_t id = 0;
        if (k == 0) {
            CHECK_EQ_INT(catalog_sku_ensure(d->store, "STALE0", &id), 0);
        } else {
            RH_EXEC(h,
                    "INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
                    " SELECT 'STALE%d', id, 'Stale %s qz%dq', 100, 'EUR', 0 FROM products"
                    " LIMIT 1 ON CONFLICT(code) DO %s",
                    k, how[k], k, k == 1 ? "UPDATE SET title = excluded.title" : "NOTHING");
            id = rh_q64(h, "SELECT id FROM skus WHERE code = 'STALE%d'", k);
        }
        CHECK_EQ_INT(id, next);
        CHECK_EQ_INT(
            rh_q64(h, "SELECT COUNT(*) FROM sku_titles_todo WHERE id = %lld", (long long)next), 1);
    }
    drain();
    check_exact("after stale queue entries");
    CHECK_EQ_INT(search_hits("qz2q"), 1);
}

int main(void)
{
    h = rh_new("test_titleidx");
    if (!h)
        return 2;
    d = rh_daemon(h);
    test_load_during_after();
    test_segments_bounded();
    test_big_queue();
    test_title_queue_stale();
    unsigned seed = (unsigned)time(NULL);
    for (unsigned k = 0; k < 3; k++)
        test_crash(seed + k * 97);
    test_upgrade();
    test_upgrade_rewound();
    rh_free(h);
    printf("test_titleidx: %d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
