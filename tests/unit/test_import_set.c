/*
 * The set-based catalog import (importer.c "Catalog rows set-based") leaves the replica exactly
 * as the same calls applied row by row with the triggers on (import_rows_in). Two replicas
 * take the same random calls, one through import_call, one row by row, and are compared after
 * every call: skus and products (every column but updated_at, ids included), the counters,
 * the title queue, publish, and the title index itself (every term instance, through
 * fts5vocab); the answers (rows, inserted, updated; a refused call's code and message) must be
 * the same too. The calls mix what the set statements must get right: new SKUs, SKUs imported
 * before (unchanged, or with another title, product, price or attributes), placeholders a
 * warehouse reported (product '~unlisted', listed by the import), titles still queued or
 * already indexed when they change, products named by rows far apart, with and without
 * product_title, the product '~unlisted' named by a row (not counted), calls of 1 to 1,000
 * rows (several 64-row batches, a short last one), a SKU twice in one call (row by row on both
 * sides), and refused rows (nothing written on either side). At the end both title indexes pass
 * FTS5's integrity check once their queues are indexed.
 *
 * Also: the set path is open on a fresh replica (its triggers are the ones importer.c does the
 * work of), and closed by a trigger another process adds after import_call looked and before
 * its transaction began; triggers are back on after an import, for the statements cached
 * meanwhile too; and a connection in group mode never has its triggers turned off.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "catalog.h"
#include "check.h"
#include "codec.h"
#include "importer.h"
#include "store.h"
#include "tally/protocol.h"
#include "titleidx.h"

static char tmpdir[64];
static int db_counter;

static uint64_t rng = 88172645463325252ULL;
static unsigned rnd(unsigned n)
{
    return check_rnd(&rng, n);
}

static struct store *fresh_store(sqlite3 **raw)
{
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/set-%d.db", tmpdir, db_counter++);
    struct store *st = NULL;
    if (store_open(path, false, &st, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(2);
    }
    /* A connection of its own for reading the replica back (and the vocabulary table in its
     * temp schema), so the store's connection runs only what the import runs. */
    if (raw && (sqlite3_open(path, raw) != SQLITE_OK ||
                sqlite3_exec(*raw,
                             "CREATE VIRTUAL TABLE temp.vocab USING"
                             " fts5vocab(main, 'sku_titles', 'instance')",
                             NULL, NULL, NULL) != SQLITE_OK)) {
        fprintf(stderr, "raw connection: %s\n", sqlite3_errmsg(*raw));
        exit(2);
    }
    return st;
}

static char *qtext(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    char *out = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(db), sql);
        return strdup("(error)");
    }
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        out = strdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out ? out : strdup("(null)");
}

static int64_t q64(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    int64_t v = -999999;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(db), sql);
        return v;
    }
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* What an import can touch, as one string per table. */
static const char *const dump_sql[] = {
    "SELECT group_concat(x, ';') FROM (SELECT id || ':' || code || ':' || product || ':'"
    " || COALESCE(mp_sku_id, 'n') || ':' || title || ':' || hex(attributes) || ':' || price_minor"
    " || currency || ':' || COALESCE(weight_g, 'n') AS x FROM skus ORDER BY id)",
    "SELECT group_concat(x, ';') FROM (SELECT id || ':' || product_id || ':' || title || ':'"
    " || COALESCE(status, 'n') AS x FROM products ORDER BY id)",
    "SELECT group_concat(name || '=' || n, ';') FROM (SELECT * FROM counters ORDER BY name)",
    "SELECT group_concat(id, ',') FROM (SELECT id FROM sku_titles_todo ORDER BY id)",
    "SELECT group_concat(x, ';') FROM (SELECT sku || ':' || value || ':' || gen || ':' || dirty"
    " AS x FROM publish ORDER BY sku)",
    "SELECT group_concat(x, ';') FROM (SELECT term || '@' || doc || '.' || offset AS x"
    " FROM temp.vocab ORDER BY doc, offset, term)",
};
static const char *const dump_names[] = {"skus", "products", "counters",
                                         "todo", "publish",  "title index"};

/* The generator's catalog: what each SKU code was last given. */
#define POOL 1200
#define PRODUCTS 300
struct gen_sku {
    bool imported;
    unsigned product, title_v, price, attrs;
};
static struct gen_sku skus[POOL];
static unsigned ptitle_v[PRODUCTS];

static void code_of(unsigned k, char *buf, size_t cap)
{
    if (k % 97 == 5) /* the longest code, quotes and LIKE wildcards in it */
        snprintf(buf, cap, "L'\"%%_%059u", k);
    else if (k % 31 == 7) /* codes that differ only by case are different SKUs */
        snprintf(buf, cap, "k%04u", k - 7);
    else
        snprintf(buf, cap, "K%04u", k);
}

static void pid_of(unsigned p, char *buf, size_t cap)
{
    if (p == 0)
        snprintf(buf, cap, "~unlisted"); /* the placeholders' product, named by a row */
    else
        snprintf(buf, cap, "P%03u", p);
}

/* Packs one catalog row for SKU k (as the generator has it now) into pk. */
static void pack_row(msgpack_packer *pk, unsigned k, int bad)
{
    struct gen_sku *g = &skus[k];
    char code[80], pid[16], title[96], pt[64], mp[24];
    code_of(k, code, sizeof code);
    pid_of(g->product, pid, sizeof pid);
    snprintf(title, sizeof title, "Item %u colour %u, v%u", k, k % 7, g->title_v);
    /* rows of one product usually agree on its title; now and then one says another */
    snprintf(pt, sizeof pt, "Product %u v%u", g->product,
             ptitle_v[g->product] + (rnd(12) == 0 ? 1 : 0));
    bool have_pt = rnd(5) != 0, have_w = rnd(4) != 0, have_mp = rnd(3) != 0;
    snprintf(mp, sizeof mp, "%u", 900000 + k);
    unsigned n = 5 + have_pt + have_w + have_mp + (g->attrs != 0);
    if (bad == 1) /* no title */
        n--;
    msgpack_pack_map(pk, n);
    mp_pack_kv_str(pk, "sku", code);
    mp_pack_kv_str(pk, "product_id", pid);
    if (bad != 1)
        mp_pack_kv_str(pk, "title", title);
    if (have_pt)
        mp_pack_kv_str(pk, "product_title", pt);
    if (bad == 2)
        mp_pack_kv_int(pk, "price_minor", -5);
    else
        mp_pack_kv_int(pk, "price_minor", g->price);
    mp_pack_kv_str(pk, "currency", bad == 3 ? "eur" : g->price % 2 ? "EUR" : "USD");
    if (have_w)
        mp_pack_kv_int(pk, "weight_g", 100 + k);
    if (have_mp)
        mp_pack_kv_str(pk, "mp_sku_id", mp);
    if (g->attrs) {
        mp_pack_strz(pk, "attributes");
        msgpack_pack_map(pk, 1);
        mp_pack_kv_str(pk, "size", g->attrs == 1 ? "M" : "XL");
    }
}

/* The same call on both replicas: a through import_call, b row by row. */
static int call_a(struct store *st, const msgpack_object *rows, struct import_result *res,
                  char *err, size_t errlen)
{
    err[0] = 0;
    int r = import_call(st, IMPORT_CATALOG, rows, STORE_DURABLE, res, err, errlen);
    CHECK_EQ_INT(store_set_triggers(st, true), 0);
    return r;
}

static int call_b(struct store *st, const msgpack_object *rows, struct import_result *res,
                  char *err, size_t errlen)
{
    err[0] = 0;
    if (store_begin(st) != 0)
        return -100;
    int r = import_rows_in(st, IMPORT_CATALOG, rows, res, err, errlen);
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    return r;
}

static void placeholder(struct store *st, const char *code)
{
    int64_t id;
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK_EQ_INT(catalog_sku_ensure(st, code, &id), 0);
    CHECK_EQ_INT(store_commit(st), 0);
}

static void index_some(struct store *st, int n)
{
    int64_t done;
    bool empty;
    CHECK_EQ_INT(titleidx_step(st, n, INT64_MAX, &done, &empty), 0);
}

static void run(unsigned seed)
{
    rng = 88172645463325252ULL ^ ((uint64_t)seed * 0x9E3779B97F4A7C15ULL);
    memset(skus, 0, sizeof skus);
    for (unsigned p = 0; p < PRODUCTS; p++)
        ptitle_v[p] = 0;
    sqlite3 *ra, *rb;
    struct store *a = fresh_store(&ra), *b = fresh_store(&rb);
    int mismatches = 0, calls = 0, refused = 0, dups = 0;
    int64_t set_rows = 0, rows_total = 0, inserted = 0, updated = 0;
    for (int round = 0; round < 70; round++) {
        /* a pool that grows: early calls insert, later ones mostly update */
        unsigned pool = 60 + (unsigned)round * 16;
        if (pool > POOL)
            pool = POOL;
        unsigned n = rnd(8) == 0 ? 1 + rnd(1000) : rnd(3) == 0 ? 64 * (1 + rnd(3)) : 1 + rnd(200);
        if (n > pool)
            n = pool;
        /* distinct SKUs, in a random order; sometimes one named twice */
        unsigned *ks = malloc(n * sizeof *ks);
        for (unsigned i = 0; i < n; i++) {
            unsigned k;
            bool again;
            do {
                k = rnd(pool);
                again = false;
                for (unsigned j = 0; j < i && !again; j++)
                    again = ks[j] == k;
            } while (again);
            ks[i] = k;
        }
        bool dup = n > 2 && rnd(10) == 0;
        if (dup) { /* a row before j named again at j (never a row copied onto itself) */
            unsigned j = 1 + rnd(n - 1);
            ks[j] = ks[rnd(j)];
        }
        /* rows of one product next to each other, as files have them, except in some calls */
        if (rnd(3) != 0)
            for (unsigned i = 1; i < n; i++)
                for (unsigned j = i; j > 0 && skus[ks[j - 1]].product > skus[ks[j]].product; j--) {
                    unsigned t = ks[j];
                    ks[j] = ks[j - 1];
                    ks[j - 1] = t;
                }
        int bad_at = rnd(12) == 0 ? (int)rnd(n) : -1;
        /* what changes: new SKUs get everything; known ones now and then a new title,
         * product, price or attributes; a product's title moves on now and then */
        for (unsigned i = 0; i < n; i++) {
            struct gen_sku *g = &skus[ks[i]];
            if (!g->imported || rnd(10) == 0)
                g->product = rnd(25) == 0 ? 0 : 1 + rnd(PRODUCTS - 1);
            if (!g->imported || rnd(6) == 0)
                g->title_v++;
            if (!g->imported || rnd(8) == 0)
                g->price = 100 + rnd(5000);
            if (rnd(10) == 0)
                g->attrs = rnd(3);
            if (rnd(30) == 0)
                ptitle_v[g->product]++;
        }
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, n);
        for (unsigned i = 0; i < n; i++) /* packed once: both replicas get the same bytes */
            pack_row(&pk, ks[i], (int)i == bad_at ? 1 + (int)rnd(3) : 0);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
        struct import_result resa, resb;
        char erra[256], errb[256];
        int rpa = call_a(a, &u.data, &resa, erra, sizeof erra);
        int rpb = call_b(b, &u.data, &resb, errb, sizeof errb);
        calls++;
        CHECK_EQ_INT(rpa, rpb);
        if (rpa != 0 || rpb != 0) {
            CHECK(bad_at >= 0);
            CHECK_EQ_STR(erra, errb);
            refused++;
        } else {
            CHECK(bad_at < 0);
            for (unsigned i = 0; i < n; i++)
                skus[ks[i]].imported = true;
            CHECK_EQ_INT(resa.rows, resb.rows);
            CHECK_EQ_INT(resa.inserted, resb.inserted);
            CHECK_EQ_INT(resa.updated, resb.updated);
            CHECK_EQ_INT(resb.set_rows, 0);
            /* a SKU twice in a call goes row by row on both sides; all else set-based */
            CHECK_EQ_INT(resa.set_rows, dup ? 0 : (int64_t)n);
            dups += dup;
            set_rows += resa.set_rows;
            rows_total += resa.rows;
            inserted += resa.inserted;
            updated += resa.updated;
        }
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
        free(ks);
        /* Between calls: a warehouse reports SKUs the catalog does not list yet (placeholders
         * the next calls list), and the title index takes some of its queue. */
        if (rnd(4) == 0) {
            for (int i = 0; i < 3; i++) {
                unsigned k = rnd(POOL);
                char code[80];
                code_of(k, code, sizeof code);
                placeholder(a, code);
                placeholder(b, code);
            }
        }
        if (rnd(3) == 0) {
            int m = 1 + (int)rnd(400);
            index_some(a, m);
            index_some(b, m);
        }
        for (size_t q = 0; q < sizeof dump_sql / sizeof dump_sql[0]; q++) {
            char *da = qtext(ra, dump_sql[q]), *db = qtext(rb, dump_sql[q]);
            if (strcmp(da, db) != 0 && mismatches++ < 3)
                fprintf(stderr,
                        "seed %u round %d (%u rows): %s differ, set-based then row by row:\n"
                        "  %.400s\n  %.400s\n",
                        seed, round, n, dump_names[q], da, db);
            free(da);
            free(db);
        }
    }
    CHECK_EQ_INT(mismatches, 0);
    /* the counters are the tables' counts */
    CHECK_EQ_INT(q64(ra, "SELECT n FROM counters WHERE name = 'skus'"),
                 q64(ra, "SELECT count(*) FROM skus"));
    CHECK_EQ_INT(q64(ra, "SELECT n FROM counters WHERE name = 'products'"),
                 q64(ra, "SELECT count(*) FROM products WHERE product_id <> '~unlisted'"));
    /* the calls did what they are for: inserts, updates, refusals, SKUs twice */
    CHECK(set_rows > 2000 && inserted > 500 && updated > 1000);
    CHECK(refused > 0 && dups > 0);
    /* Each title index is what its SKUs' titles make once the queue is indexed. */
    index_some(a, 100000);
    index_some(b, 100000);
    CHECK_EQ_INT(q64(ra, "SELECT count(*) FROM sku_titles_todo"), 0);
    CHECK_EQ_INT(sqlite3_exec(ra,
                              "INSERT INTO sku_titles(sku_titles, rank)"
                              " VALUES('integrity-check', 1)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(rb,
                              "INSERT INTO sku_titles(sku_titles, rank)"
                              " VALUES('integrity-check', 1)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    printf("seed %u: %d calls (%d refused, %d with a SKU twice), %" PRId64 " rows (%" PRId64
           " set-based; %" PRId64 " inserted, %" PRId64 " updated), replicas equal after each\n",
           seed, calls, refused, dups, rows_total, set_rows, inserted, updated);
    sqlite3_close(ra);
    sqlite3_close(rb);
    store_close(a);
    store_close(b);
}

/* The set path is open on a replica of the latest schema. When this fails, a migration changed
 * a trigger on a table the set statements write: importer.c must do that trigger's work too
 * (or no longer do it), and SET_TRIGGERS_HASH take the value printed. */
static void test_triggers_known(void)
{
    sqlite3 *raw;
    struct store *st = fresh_store(&raw);
    bool ok = import_set_allowed(st);
    if (!ok) {
        char *t = qtext(raw, "SELECT group_concat(name || ': ' || sql, char(10)) FROM"
                             " (SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                             " AND tbl_name IN ('products', 'skus', 'publish', 'sku_titles',"
                             " 'sku_titles_todo', 'counters') ORDER BY name)");
        fprintf(stderr,
                "the triggers the set-based catalog import does the work of have changed"
                " (importer.c); they are now:\n%s\nhash 0x%016" PRIx64 "\n",
                t, import_set_triggers_hash(st));
        free(t);
    }
    CHECK(ok);
    /* A trigger added on one of those tables closes the set path (the row path runs). */
    CHECK_EQ_INT(sqlite3_exec(raw,
                              "CREATE TRIGGER extra AFTER INSERT ON skus BEGIN"
                              " UPDATE counters SET n = n + 1 WHERE name = 'extra'; END;"
                              "INSERT INTO counters(name, n) VALUES('extra', 0)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK(!import_set_allowed(st));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    skus[1] = (struct gen_sku){.product = 1, .price = 5};
    skus[2] = (struct gen_sku){.product = 1, .price = 6};
    pack_row(&pk, 1, 0);
    pack_row(&pk, 2, 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    struct import_result res;
    char err[256];
    CHECK_EQ_INT(import_rows(st, IMPORT_CATALOG, &u.data, &res, err, sizeof err), 0);
    CHECK_EQ_INT(res.inserted, 2);
    CHECK_EQ_INT(res.set_rows, 0);
    CHECK_EQ_INT(q64(raw, "SELECT n FROM counters WHERE name = 'extra'"), 2);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    sqlite3_close(raw);
    store_close(st);
}

/* Another process adds a trigger on skus (an operator's sqlite3 shell) after import_call has
 * looked at the triggers and before its transaction begins: the set path must not run with the
 * connection's triggers off past a trigger it does not know. The callback store_begin_as runs
 * first (store_set_before_begin) stands for that moment. */
static sqlite3 *added_by;
static int add_trigger_once(void *arg, bool wait)
{
    (void)wait;
    int *done = arg;
    if (!*done) {
        *done = 1;
        CHECK_EQ_INT(sqlite3_exec(added_by,
                                  "CREATE TRIGGER extra AFTER INSERT ON skus BEGIN"
                                  " UPDATE counters SET n = n + 1 WHERE name = 'extra'; END;"
                                  "INSERT INTO counters(name, n) VALUES('extra', 0)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    }
    return 0;
}

/* A call of three new SKUs (1, 2, 3), packed into sb and read back into u. */
static void three_rows(msgpack_sbuffer *sb, msgpack_unpacked *u)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    for (unsigned k = 1; k <= 3; k++) {
        skus[k] = (struct gen_sku){.product = k, .price = k};
        pack_row(&pk, k, 0);
    }
    msgpack_unpacked_init(u);
    CHECK(msgpack_unpack_next(u, sb->data, sb->size, NULL) == MSGPACK_UNPACK_SUCCESS);
}

static void test_trigger_added_meanwhile(void)
{
    sqlite3 *raw;
    struct store *st = fresh_store(&raw);
    CHECK(import_set_allowed(st));
    int done = 0;
    added_by = raw;
    store_set_before_begin(st, add_trigger_once, &done);
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    three_rows(&sb, &u);
    struct import_result res;
    char err[256];
    CHECK_EQ_INT(import_rows(st, IMPORT_CATALOG, &u.data, &res, err, sizeof err), 0);
    CHECK_EQ_INT(done, 1);
    CHECK_EQ_INT(res.inserted, 3);
    CHECK_EQ_INT(res.set_rows, 0);
    CHECK_EQ_INT(q64(raw, "SELECT n FROM counters WHERE name = 'extra'"), 3);
    CHECK_EQ_INT(q64(raw, "SELECT n FROM counters WHERE name = 'skus'"), 3);
    store_set_before_begin(st, NULL, NULL);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    sqlite3_close(raw);
    store_close(st);
}

/* After a set-based import the connection's triggers fire again, for its cached statements
 * too (prepared while they were off); a connection in group mode keeps them on. */
static void test_triggers_back(void)
{
    sqlite3 *raw;
    struct store *st = fresh_store(&raw);
    placeholder(st, "EARLY"); /* catalog_sku_ensure's statements prepared with triggers on */
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    three_rows(&sb, &u);
    struct import_result res;
    char err[256];
    /* left off by import_call: a placeholder made now would be neither counted nor queued */
    CHECK_EQ_INT(import_call(st, IMPORT_CATALOG, &u.data, STORE_DURABLE, &res, err, sizeof err), 0);
    CHECK_EQ_INT(res.set_rows, 3);
    CHECK(!store_triggers_on(st));
    CHECK_EQ_INT(store_set_triggers(st, true), 0);
    placeholder(st, "LATE"); /* the cached statements, prepared again with the triggers */
    CHECK_EQ_INT(q64(raw, "SELECT n FROM counters WHERE name = 'skus'"), 5);
    CHECK_EQ_INT(q64(raw, "SELECT count(*) FROM skus"), 5);
    CHECK_EQ_INT(q64(raw, "SELECT count(*) FROM sku_titles_todo"), 5);
    /* import_rows turns them back on itself */
    CHECK_EQ_INT(import_rows(st, IMPORT_CATALOG, &u.data, &res, err, sizeof err), 0);
    CHECK_EQ_INT(res.updated, 3);
    CHECK(store_triggers_on(st));
    /* never off where other writes share the transaction */
    store_group_enable(st, true);
    CHECK(store_set_triggers(st, false) != 0);
    CHECK(store_triggers_on(st));
    store_group_enable(st, false);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    sqlite3_close(raw);
    store_close(st);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tally-import-set-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_triggers_known();
    test_trigger_added_meanwhile();
    test_triggers_back();
    for (unsigned seed = 1; seed <= 4; seed++)
        run(seed);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_result("test_import_set");
}
