/*
 * privacy_purge / privacy.purge against a temp replica: orders finished or cancelled before
 * and after the cutoff, unfinished ones, a dry run that changes nothing, the outbox payloads
 * of purged orders searched byte by byte for the buyer's data (and other orders' payloads
 * keeping theirs), the database and WAL files free of it afterwards, batches of more than
 * one transaction, and a second purge that finds nothing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <msgpack.h>

#include "check.h"
#include "codec.h"
#include "config.h"
#include "importer.h"
#include "privacy.h"
#include "rpc.h"
#include "store.h"
#include "tally/protocol.h"

static char tmpdir[64];
static int db_counter;
static struct tallyd d;

/* ---- harness: a daemon context on a temp replica, and calls through the dispatcher ---- */

static void exec_sql(const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(store_db(d.store), sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "exec: %s: %s\n", msg, sql);
        sqlite3_free(msg);
        CHECK(0);
    }
}

static int64_t q64(const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    sqlite3_stmt *s;
    int64_t v = -999999;
    if (sqlite3_prepare_v2(store_db(d.store), sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(store_db(d.store)), sql);
        return v;
    }
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Packs one "key=value" argument: "#123" is an integer, "!1"/"!0" a boolean, else a string. */
static void pack_kv(msgpack_packer *pk, const char *kv)
{
    const char *eq = strchr(kv, '=');
    mp_pack_strn(pk, kv, (size_t)(eq - kv));
    if (eq[1] == '#')
        msgpack_pack_int64(pk, strtoll(eq + 2, NULL, 10));
    else if (eq[1] == '!' && eq[2] == '1')
        msgpack_pack_true(pk);
    else if (eq[1] == '!')
        msgpack_pack_false(pk);
    else
        mp_pack_strz(pk, eq + 1);
}

static msgpack_sbuffer resp_buf;
static msgpack_unpacked resp;
static char last_code[64];
static int call_role = TALLY_ROLE_WRITER;

/* Calls `method` with the NULL-terminated "key=value" params; returns the result map, or
 * NULL with the error code in last_code. The result lives until the next call. */
static const msgpack_object *call(const char *method, ...)
{
    const char *args[16];
    int n = 0;
    va_list ap;
    va_start(ap, method);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 16)
        args[n++] = a;
    va_end(ap);
    msgpack_sbuffer req;
    msgpack_packer pk;
    msgpack_sbuffer_init(&req);
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 7);
    mp_pack_strz(&pk, method);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, (size_t)n);
    for (int i = 0; i < n; i++)
        pack_kv(&pk, args[i]);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, req.data, req.size, &off);
    msgpack_sbuffer_destroy(&resp_buf);
    msgpack_sbuffer_init(&resp_buf);
    rpc_handle(&d, call_role, NULL, &u.data, &resp_buf);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&req);
    msgpack_unpacked_destroy(&resp);
    msgpack_unpacked_init(&resp);
    off = 0;
    last_code[0] = 0;
    if (msgpack_unpack_next(&resp, resp_buf.data, resp_buf.size, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != resp_buf.size || resp.data.type != MSGPACK_OBJECT_ARRAY ||
        resp.data.via.array.size != 4) {
        snprintf(last_code, sizeof last_code, "bad response");
        return NULL;
    }
    const msgpack_object *e = &resp.data.via.array.ptr[2];
    if (e->type != MSGPACK_OBJECT_NIL) {
        const msgpack_object *code = mp_map_get(e, "code");
        snprintf(last_code, sizeof last_code, "%.*s", code ? (int)code->via.str.size : 1,
                 code ? code->via.str.ptr : "?");
        return NULL;
    }
    return &resp.data.via.array.ptr[3];
}

static int64_t iget(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = mp_map_get(m, key);
    if (!v ||
        (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER && v->type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
        return -999999;
    return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)v->via.u64 : v->via.i64;
}

/* Imports rows given as arrays of "key=value" through import_rows. */
static void import_kv(int kind, int nrows, const char *const rows[][7])
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (size_t)nrows);
    for (int i = 0; i < nrows; i++) {
        int n = 0;
        while (n < 7 && rows[i][n])
            n++;
        msgpack_pack_map(&pk, (size_t)n);
        for (int k = 0; k < n; k++)
            pack_kv(&pk, rows[i][k]);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, sb.data, sb.size, &off);
    struct import_result res;
    char err[256];
    if (import_rows(d.store, kind, &u.data, &res, err, sizeof err) != 0) {
        fprintf(stderr, "import: %s\n", err);
        exit(2);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

static void open_replica(void)
{
    char path[128], err[256];
    if (d.store)
        store_close(d.store);
    memset(&d, 0, sizeof d);
    config_defaults(&d.cfg);
    d.cfg.sync_full = false;
    snprintf(path, sizeof path, "%s/p-%d.db", tmpdir, db_counter++);
    if (store_open(path, false, &d.store, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(2);
    }
    static const char *const wh[][7] = {
        {"code=A", "name=Alpha", "country=ES", NULL},
        {"code=B", "name=Beta", "country=FR", NULL},
    };
    static const char *const cat[][7] = {
        {"sku=S1", "product_id=P1", "title=Shirt red M", "price_minor=#1999", "currency=EUR", NULL},
        {"sku=S2", "product_id=P1", "title=Shirt red L", "price_minor=#1999", "currency=EUR", NULL},
    };
    static const char *const stock[][7] = {{"sku=S1", "warehouse=A", "on_hand=#10", NULL}};
    import_kv(IMPORT_WAREHOUSES, 2, wh);
    import_kv(IMPORT_CATALOG, 2, cat);
    import_kv(IMPORT_STOCK, 1, stock);
}

/* ---- figures ---- */

#define DAY 86400LL

static char db_path[128];

/* An order with buyer data derived from its id ("Name-<id>", "<id> Secret Street"...),
 * finished `finished_ago` seconds ago (< 0: not finished). */
static void add_order(const char *id, int64_t finished_ago, const char *fstate)
{
    char sql[1024], fin[32] = "NULL";
    int64_t now = store_now();
    if (finished_ago >= 0)
        snprintf(fin, sizeof fin, "%lld", (long long)(now - finished_ago));
    snprintf(sql, sizeof sql,
             "INSERT INTO orders(order_id, status, created_at, updated_at, country, currency,"
             " buyer_name, address, city, postcode, phone, finished_at, fstate)"
             " VALUES('%s', 'FINISH', %lld, %lld, 'ES', 'EUR', 'Name-%s', '%s Secret Street',"
             " 'City-%s', 'PC-%s', 'Phone-%s', %s, '%s')",
             id, (long long)(now - 90 * DAY), (long long)now, id, id, id, id, id, fin, fstate);
    exec_sql(sql);
}

static void put_outbox(const char *key, const char *target, const char *entity, const char *kind,
                       const void *payload, size_t len)
{
    sqlite3_stmt *s;
    CHECK(sqlite3_prepare_v2(store_db(d.store),
                             "INSERT INTO outbox(key, target, entity, kind, payload,"
                             " next_attempt_at, created_at, state) VALUES(?1,?2,?3,?4,?5,0,0,"
                             "'done')",
                             -1, &s, NULL) == SQLITE_OK);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, target, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, entity, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, kind, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, payload, (int)len, SQLITE_STATIC);
    CHECK(sqlite3_step(s) == SQLITE_DONE);
    sqlite3_finalize(s);
}

/* The outbound request of order `id` at warehouse A, as fulfilment packs it. */
static void add_outbound(const char *id)
{
    char buf[4][96];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mp_pack_kv_str(&pk, "id", id);
    mp_pack_key(&pk, "lines");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "sku", "S1");
    mp_pack_kv_int(&pk, "qty", 2);
    mp_pack_key(&pk, "ship_to");
    msgpack_pack_map(&pk, 6);
    snprintf(buf[0], sizeof buf[0], "Name-%s", id);
    snprintf(buf[1], sizeof buf[1], "%s Secret Street", id);
    snprintf(buf[2], sizeof buf[2], "PC-%s", id);
    snprintf(buf[3], sizeof buf[3], "Phone-%s", id);
    mp_pack_kv_str(&pk, "name", buf[0]);
    mp_pack_kv_str(&pk, "address", buf[1]);
    mp_pack_kv_str(&pk, "city", "Madrid");
    mp_pack_kv_str(&pk, "postcode", buf[2]);
    mp_pack_kv_str(&pk, "country", "ES");
    mp_pack_kv_str(&pk, "phone", buf[3]);
    mp_pack_kv_str(&pk, "service", "standard");
    char key[96];
    snprintf(key, sizeof key, "ob:A:%s", id);
    put_outbox(key, "wh:A", id, "outbound", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Whether the payload of outbox row `key` contains `needle` anywhere in its bytes. */
static bool payload_has(const char *key, const char *needle)
{
    sqlite3_stmt *s;
    bool found = false;
    if (sqlite3_prepare_v2(store_db(d.store), "SELECT payload FROM outbox WHERE key = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 0) > 0)
        found = memmem(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), needle,
                       strlen(needle)) != NULL;
    sqlite3_finalize(s);
    return found;
}

/* The payload of `key` decoded: a map with `id` and `lines` and no ship_to. */
static bool payload_scrubbed_map(const char *key, const char *id)
{
    sqlite3_stmt *s;
    bool ok = false;
    if (sqlite3_prepare_v2(store_db(d.store), "SELECT payload FROM outbox WHERE key = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        if (msgpack_unpack_next(&u, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                                &off) == MSGPACK_UNPACK_SUCCESS &&
            off == (size_t)sqlite3_column_bytes(s, 0) && u.data.type == MSGPACK_OBJECT_MAP) {
            const msgpack_object *v = mp_map_get(&u.data, "id");
            const msgpack_object *lines = mp_map_get(&u.data, "lines");
            const msgpack_object *svc = mp_map_get(&u.data, "service");
            ok = v && mp_str_eq(v, id) && lines && lines->type == MSGPACK_OBJECT_ARRAY &&
                 lines->via.array.size == 1 && svc && mp_str_eq(svc, "standard") &&
                 !mp_map_get(&u.data, "ship_to") && u.data.via.map.size == 3;
        }
        msgpack_unpacked_destroy(&u);
    }
    sqlite3_finalize(s);
    return ok;
}

/* Whether the file at `path` holds `needle` anywhere (a missing file holds nothing). */
static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    bool found = false;
    if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n)
        found = memmem(buf, (size_t)n, needle, strlen(needle)) != NULL;
    free(buf);
    fclose(f);
    return found;
}

static int64_t purged(const char *id)
{
    return q64("SELECT purged_at IS NOT NULL AND buyer_name IS NULL AND address IS NULL AND"
               " city IS NULL AND postcode IS NULL AND phone IS NULL FROM orders"
               " WHERE order_id = '%s'",
               id);
}

static int64_t intact(const char *id)
{
    return q64("SELECT purged_at IS NULL AND buyer_name = 'Name-%s' AND address = '%s Secret"
               " Street' AND city = 'City-%s' AND postcode = 'PC-%s' AND phone = 'Phone-%s'"
               " FROM orders WHERE order_id = '%s'",
               id, id, id, id, id, id);
}

static void test_purge(void)
{
    open_replica();
    snprintf(db_path, sizeof db_path, "%s", store_path(d.store));
    add_order("O1", 40 * DAY, "finished");
    add_order("O2", 10 * DAY, "finished");       /* too recent */
    add_order("O3", -1, "allocated");            /* still open */
    add_order("O4", 31 * DAY, "cancelled");      /* cancelled counts as done */
    add_order("O5", 30 * DAY, "finished");       /* exactly at the cutoff */
    add_order("O6", 30 * DAY - 600, "finished"); /* ten minutes short of it */
    add_outbound("O1");
    add_outbound("O2");
    add_outbound("O3");
    static const unsigned char cancel[] = {0x81, 0xa2, 'i', 'd', 0xa2, 'O', '1'};
    put_outbox("obc:A:O1", "wh:A", "O1", "outbound_cancel", cancel, sizeof cancel);
    exec_sql("CREATE TEMP TABLE before AS SELECT key, payload FROM outbox");
    CHECK(payload_has("ob:A:O1", "Name-O1"));

    /* A dry run counts and changes nothing. */
    int64_t n = -1;
    CHECK_EQ_INT(privacy_purge(&d, 30, true, &n), 0);
    CHECK_EQ_INT(n, 3);
    for (int i = 1; i <= 6; i++) {
        char id[8];
        snprintf(id, sizeof id, "O%d", i);
        CHECK_EQ_INT(intact(id), 1);
    }
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM outbox o JOIN before b ON b.key = o.key"
                     " WHERE b.payload = o.payload"),
                 4);

    n = -1;
    CHECK_EQ_INT(privacy_purge(&d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(purged("O1"), 1);
    CHECK_EQ_INT(purged("O4"), 1);
    CHECK_EQ_INT(purged("O5"), 1);
    CHECK_EQ_INT(intact("O2"), 1);
    CHECK_EQ_INT(intact("O3"), 1);
    CHECK_EQ_INT(intact("O6"), 1);
    CHECK(q64("SELECT purged_at FROM orders WHERE order_id = 'O1'") >= store_now() - 60);
    /* The order itself stays, with everything but the buyer. */
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM orders WHERE order_id = 'O1' AND country = 'ES'"
                     " AND fstate = 'finished'"),
                 1);

    /* O1's outbound request no longer carries the buyer, byte for byte; it is still a
     * readable map with the rest of the request. */
    CHECK(!payload_has("ob:A:O1", "Name-O1"));
    CHECK(!payload_has("ob:A:O1", "O1 Secret Street"));
    CHECK(!payload_has("ob:A:O1", "PC-O1"));
    CHECK(!payload_has("ob:A:O1", "Phone-O1"));
    CHECK(!payload_has("ob:A:O1", "Madrid"));
    CHECK(payload_scrubbed_map("ob:A:O1", "O1"));
    /* Other orders' requests keep theirs; rows without a ship-to are left as they were. */
    CHECK(payload_has("ob:A:O2", "Name-O2") && payload_has("ob:A:O2", "O2 Secret Street"));
    CHECK(payload_has("ob:A:O3", "Phone-O3"));
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM outbox o JOIN before b ON b.key = o.key"
                     " WHERE b.payload = o.payload"),
                 3);
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM outbox o JOIN before b ON b.key = o.key"
                     " WHERE b.payload = o.payload AND o.key = 'obc:A:O1'"),
                 1);
    exec_sql("DROP TABLE temp.before");

    /* Nor do the files: the pages were overwritten and the WAL emptied. */
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    struct stat sb;
    CHECK(stat(wal, &sb) != 0 || sb.st_size == 0);
    CHECK(!file_has(db_path, "Name-O1"));
    CHECK(!file_has(db_path, "O1 Secret Street"));
    CHECK(!file_has(db_path, "Phone-O4"));
    CHECK(!file_has(wal, "Name-O1"));
    CHECK(file_has(db_path, "Name-O2")); /* the search does find what is there */

    /* Again: nothing left to purge. */
    CHECK_EQ_INT(privacy_purge(&d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(privacy_purge(&d, 30, true, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(intact("O2"), 1);

    CHECK_EQ_INT(privacy_purge(&d, -1, false, &n), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_INT(privacy_purge(&d, 3651, false, &n), TALLY_E_INVALID_PARAMS);
}

static void test_rpc(void)
{
    open_replica();
    add_order("O1", 40 * DAY, "finished");
    add_order("O2", 10 * DAY, "finished");
    add_order("O3", 1 * DAY, "cancelled");
    add_outbound("O2");

    const msgpack_object *r = call("privacy.purge", "older_than_days=#5", "dry_run=!1", NULL);
    CHECK(r && iget(r, "orders") == 2);
    CHECK_EQ_INT(intact("O1") + intact("O2"), 2);
    /* Default: [privacy] retain_days. */
    d.cfg.retain_days = 30;
    r = call("privacy.purge", NULL);
    CHECK(r && iget(r, "orders") == 1);
    CHECK_EQ_INT(purged("O1"), 1);
    CHECK_EQ_INT(intact("O2"), 1);
    r = call("privacy.purge", "older_than_days=#5", "dry_run=!0", NULL);
    CHECK(r && iget(r, "orders") == 1);
    CHECK_EQ_INT(purged("O2"), 1);
    CHECK(!payload_has("ob:A:O2", "Name-O2"));
    r = call("privacy.purge", "older_than_days=#0", NULL);
    CHECK(r && iget(r, "orders") == 1);
    CHECK_EQ_INT(purged("O3"), 1);

    CHECK(call("privacy.purge", "older_than_days=#3651", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("privacy.purge", "older_than_days=#-1", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    CHECK(call("privacy.purge", "dry_run=maybe", NULL) == NULL);
    CHECK_EQ_STR(last_code, "invalid_params");
    call_role = TALLY_ROLE_READER;
    CHECK(call("privacy.purge", "dry_run=!1", NULL) == NULL);
    CHECK_EQ_STR(last_code, "forbidden");
    call_role = TALLY_ROLE_WRITER;
}

/* More orders than one batch holds, each with an outbound request; one request whose payload
 * is not MessagePack at all. */
static void test_batches(void)
{
    open_replica();
    exec_sql("BEGIN");
    for (int i = 0; i < 1203; i++) {
        char id[16];
        snprintf(id, sizeof id, "B%04d", i);
        add_order(id, 40 * DAY + i, i % 2 ? "finished" : "cancelled");
        add_outbound(id);
    }
    add_order("G1", 40 * DAY, "finished");
    static const unsigned char junk[] = {0xc1, 'N', 'a', 'm', 'e', '-', 'G', '1'};
    put_outbox("ob:A:G1", "wh:A", "G1", "outbound", junk, sizeof junk);
    add_order("KEEP", 1 * DAY, "finished");
    add_outbound("KEEP");
    exec_sql("COMMIT");

    int64_t n = -1;
    CHECK_EQ_INT(privacy_purge(&d, 30, true, &n), 0);
    CHECK_EQ_INT(n, 1204);
    CHECK_EQ_INT(privacy_purge(&d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 1204);
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM orders WHERE purged_at IS NOT NULL"), 1204);
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM orders WHERE buyer_name IS NOT NULL"), 1);
    CHECK_EQ_INT(q64("SELECT COUNT(*) FROM outbox WHERE instr(payload, CAST('Name-' AS BLOB)) > 0"),
                 1);
    CHECK(payload_has("ob:A:KEEP", "Name-KEEP"));
    CHECK(payload_scrubbed_map("ob:A:B0000", "B0000"));
    CHECK(payload_scrubbed_map("ob:A:B1202", "B1202"));
    CHECK_EQ_INT(q64("SELECT hex(payload) = '80' FROM outbox WHERE key = 'ob:A:G1'"), 1);
    CHECK_EQ_INT(privacy_purge(&d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 0);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tally-privacy-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_purge();
    test_rpc();
    test_batches();

    store_close(d.store);
    msgpack_unpacked_destroy(&resp);
    msgpack_sbuffer_destroy(&resp_buf);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_result("test_privacy");
}
