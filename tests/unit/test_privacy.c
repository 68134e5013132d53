/*
 * privacy_purge / privacy.purge against a temp replica: orders finished or cancelled before
 * and after the cutoff, unfinished ones, a dry run that changes nothing, the outbox payloads
 * of purged orders searched byte by byte for the buyer's data (and other orders' payloads
 * keeping theirs), the database and WAL files free of it afterwards, batches of more than
 * one transaction, and a second purge that finds nothing. Once purged, the buyer's data never
 * comes back: not by a re-import, not by the marketplace's order rounds (the same upsert with
 * the receipt info), not in an outbound request built later; checked in the database and WAL
 * bytes.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <msgpack.h>
#include <sqlite3.h>
#include <uv.h>

#include "check.h"
#include "codec.h"
#include "fulfil.h"
#include "importer.h"
#include "orders.h"
#include "privacy.h"
#include "replica_harness.h"
#include "store.h"
#include "tally/protocol.h"
#include "tallyd.h"

static struct rh *h;
static struct tallyd *d;

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
    RH_EXEC(h, "%s", sql);
}

static void put_outbox(const char *key, const char *target, const char *entity, const char *kind,
                       const void *payload, size_t len)
{
    sqlite3_stmt *s;
    CHECK(sqlite3_prepare_v2(store_db(d->store),
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
    if (sqlite3_prepare_v2(store_db(d->store), "SELECT payload FROM outbox WHERE key = ?1", -1, &s,
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
    if (sqlite3_prepare_v2(store_db(d->store), "SELECT payload FROM outbox WHERE key = ?1", -1, &s,
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
    return rh_q64(h,
                  "SELECT purged_at IS NOT NULL AND buyer_name IS NULL AND address IS NULL AND"
                  " city IS NULL AND postcode IS NULL AND phone IS NULL FROM orders"
                  " WHERE order_id = '%s'",
                  id);
}

static int64_t intact(const char *id)
{
    return rh_q64(h,
                  "SELECT purged_at IS NULL AND buyer_name = 'Name-%s' AND address = '%s Secret"
                  " Street' AND city = 'City-%s' AND postcode = 'PC-%s' AND phone = 'Phone-%s'"
                  " FROM orders WHERE order_id = '%s'",
                  id, id, id, id, id, id);
}

static void test_purge(void)
{
    rh_open(h);
    rh_seed_standard(h);
    snprintf(db_path, sizeof db_path, "%s", store_path(d->store));
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
    RH_EXEC(h, "CREATE TEMP TABLE before AS SELECT key, payload FROM outbox");
    CHECK(payload_has("ob:A:O1", "Name-O1"));

    /* A dry run counts and changes nothing. */
    int64_t n = -1;
    CHECK_EQ_INT(privacy_purge(d, 30, true, &n), 0);
    CHECK_EQ_INT(n, 3);
    for (int i = 1; i <= 6; i++) {
        char id[8];
        snprintf(id, sizeof id, "O%d", i);
        CHECK_EQ_INT(intact(id), 1);
    }
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox o JOIN before b ON b.key = o.key"
                           " WHERE b.payload = o.payload"),
                 4);

    n = -1;
    CHECK_EQ_INT(privacy_purge(d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(purged("O1"), 1);
    CHECK_EQ_INT(purged("O4"), 1);
    CHECK_EQ_INT(purged("O5"), 1);
    CHECK_EQ_INT(intact("O2"), 1);
    CHECK_EQ_INT(intact("O3"), 1);
    CHECK_EQ_INT(intact("O6"), 1);
    CHECK(rh_q64(h, "SELECT purged_at FROM orders WHERE order_id = 'O1'") >= store_now() - 60);
    /* The order itself stays, with everything but the buyer. */
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM orders WHERE order_id = 'O1' AND country = 'ES'"
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
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox o JOIN before b ON b.key = o.key"
                           " WHERE b.payload = o.payload"),
                 3);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox o JOIN before b ON b.key = o.key"
                           " WHERE b.payload = o.payload AND o.key = 'obc:A:O1'"),
                 1);
    RH_EXEC(h, "DROP TABLE temp.before");

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
    CHECK_EQ_INT(privacy_purge(d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(privacy_purge(d, 30, true, &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(intact("O2"), 1);

    CHECK_EQ_INT(privacy_purge(d, -1, false, &n), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_INT(privacy_purge(d, 3651, false, &n), TALLY_E_INVALID_PARAMS);
}

static void test_rpc(void)
{
    rh_open(h);
    rh_seed_standard(h);
    add_order("O1", 40 * DAY, "finished");
    add_order("O2", 10 * DAY, "finished");
    add_order("O3", 1 * DAY, "cancelled");
    add_outbound("O2");

    const msgpack_object *r = rh_call(h, "privacy.purge", "older_than_days=#5", "dry_run=!1", NULL);
    CHECK(r && rh_iget(r, "orders") == 2);
    CHECK_EQ_INT(intact("O1") + intact("O2"), 2);
    /* Default: [privacy] retain_days. */
    d->cfg.retain_days = 30;
    r = rh_call(h, "privacy.purge", NULL);
    CHECK(r && rh_iget(r, "orders") == 1);
    CHECK_EQ_INT(purged("O1"), 1);
    CHECK_EQ_INT(intact("O2"), 1);
    r = rh_call(h, "privacy.purge", "older_than_days=#5", "dry_run=!0", NULL);
    CHECK(r && rh_iget(r, "orders") == 1);
    CHECK_EQ_INT(purged("O2"), 1);
    CHECK(!payload_has("ob:A:O2", "Name-O2"));
    r = rh_call(h, "privacy.purge", "older_than_days=#0", NULL);
    CHECK(r && rh_iget(r, "orders") == 1);
    CHECK_EQ_INT(purged("O3"), 1);

    CHECK(rh_call(h, "privacy.purge", "older_than_days=#3651", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "privacy.purge", "older_than_days=#-1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(rh_call(h, "privacy.purge", "dry_run=maybe", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    rh_set_role(h, TALLY_ROLE_READER);
    CHECK(rh_call(h, "privacy.purge", "dry_run=!1", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "forbidden");
    rh_set_role(h, TALLY_ROLE_WRITER);
}

/* More orders than one batch holds, each with an outbound request; one request whose payload
 * is not MessagePack at all. */
static void test_batches(void)
{
    rh_open(h);
    rh_seed_standard(h);
    RH_EXEC(h, "BEGIN");
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
    RH_EXEC(h, "COMMIT");

    int64_t n = -1;
    CHECK_EQ_INT(privacy_purge(d, 30, true, &n), 0);
    CHECK_EQ_INT(n, 1204);
    CHECK_EQ_INT(privacy_purge(d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 1204);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM orders WHERE purged_at IS NOT NULL"), 1204);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM orders WHERE buyer_name IS NOT NULL"), 1);
    CHECK_EQ_INT(
        rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE instr(payload, CAST('Name-' AS BLOB)) > 0"),
        1);
    CHECK(payload_has("ob:A:KEEP", "Name-KEEP"));
    CHECK(payload_scrubbed_map("ob:A:B0000", "B0000"));
    CHECK(payload_scrubbed_map("ob:A:B1202", "B1202"));
    CHECK_EQ_INT(rh_q64(h, "SELECT hex(payload) = '80' FROM outbox WHERE key = 'ob:A:G1'"), 1);
    CHECK_EQ_INT(privacy_purge(d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 0);
}

/* The import of order `id` with buyer data "<tag>-<id>..." and marketplace status `status`. */
static int import_order(const char *id, const char *tag, const char *status)
{
    char v[5][96];
    snprintf(v[0], sizeof v[0], "%s-Name-%s", tag, id);
    snprintf(v[1], sizeof v[1], "%s-Street-%s", tag, id);
    snprintf(v[2], sizeof v[2], "%s-City-%s", tag, id);
    snprintf(v[3], sizeof v[3], "%s-PC", tag);
    snprintf(v[4], sizeof v[4], "%s-Phone-%s", tag, id);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 13);
    mp_pack_kv_str(&pk, "order_id", id);
    mp_pack_kv_str(&pk, "status", status);
    mp_pack_kv_int(&pk, "created_at", store_now() - 90 * DAY);
    mp_pack_kv_str(&pk, "country", "ES");
    mp_pack_kv_str(&pk, "currency", "EUR");
    mp_pack_kv_str(&pk, "sku", "S1");
    mp_pack_kv_int(&pk, "qty", 1);
    mp_pack_kv_int(&pk, "price_minor", 1999);
    mp_pack_kv_str(&pk, "buyer_name", v[0]);
    mp_pack_kv_str(&pk, "address", v[1]);
    mp_pack_kv_str(&pk, "city", v[2]);
    mp_pack_kv_str(&pk, "postcode", v[3]);
    mp_pack_kv_str(&pk, "phone", v[4]);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int r = TALLY_E_INTERNAL;
    if (msgpack_unpack_next(&u, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS) {
        struct import_result res;
        char err[256] = "";
        r = import_rows(d->store, IMPORT_ORDERS, &u.data, &res, err, sizeof err);
        if (r)
            fprintf(stderr, "import %s: %s\n", id, err);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

/* The header a marketplace order round writes for order `id` (its receipt info included). */
static int marketplace_round(const char *id, const char *tag)
{
    char v[5][96];
    snprintf(v[0], sizeof v[0], "%s-Name-%s", tag, id);
    snprintf(v[1], sizeof v[1], "%s-Street-%s", tag, id);
    snprintf(v[2], sizeof v[2], "%s-City-%s", tag, id);
    snprintf(v[3], sizeof v[3], "%s-PC", tag);
    snprintf(v[4], sizeof v[4], "+34 %s-Phone-%s", tag, id);
    struct order_header hd = {
        .order_id = id,
        .status = "WAIT_SELLER_SEND_GOODS",
        .created_at = store_now() - 90 * DAY,
        .country = "ES",
        .currency = "EUR",
        .service = "standard",
        .buyer_name = v[0],
        .address = v[1],
        .city = v[2],
        .postcode = v[3],
        .phone = v[4],
    };
    int64_t ref;
    bool inserted;
    int r = store_begin(d->store);
    if (r == 0 && (r = orders_upsert_header(d->store, &hd, &ref, &inserted)) == 0)
        return store_commit(d->store);
    store_rollback(d->store);
    return r;
}

/* Whether the database or its WAL holds `needle` anywhere. */
static bool files_have(const char *needle)
{
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    return file_has(db_path, needle) || file_has(wal, needle);
}

/* Purge, then every way an order's header is written again: the buyer's data stays gone. */
static void test_purged_stays_purged(void)
{
    rh_open(h);
    rh_seed_standard(h);
    snprintf(db_path, sizeof db_path, "%s", store_path(d->store));
    /* Imported with a buyer, finished long ago, then purged. */
    CHECK_EQ_INT(import_order("R1", "Old", "FINISH"), 0);
    CHECK_EQ_INT(import_order("R2", "Old", "FINISH"), 0);
    /* R2 was cancelled: a marketplace that later says "ship it" reopens it. */
    RH_EXEC(h,
            "UPDATE orders SET fstate = IIF(order_id = 'R2', 'cancelled', 'finished'),"
            " finished_at = %lld",
            (long long)(store_now() - 40 * DAY));
    int64_t n = -1;
    CHECK_EQ_INT(privacy_purge(d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(purged("R1"), 1);
    CHECK(!files_have("Old-Name-R1"));

    /* Imported again, with its buyer: the order's other fields update, the buyer stays out. */
    CHECK_EQ_INT(import_order("R1", "New", "FINISH"), 0);
    CHECK_EQ_INT(purged("R1"), 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM orders WHERE order_id = 'R1'"), 1);
    CHECK(!files_have("New-Name-R1"));
    CHECK(!files_have("New-Street-R1"));
    CHECK(!files_have("New-Phone-R1"));
    CHECK(!files_have("New-City-R1"));

    /* A marketplace order round (order detail and receipt info) re-pulls it. */
    CHECK_EQ_INT(marketplace_round("R2", "Mp"), 0);
    CHECK_EQ_INT(purged("R2"), 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT status = 'WAIT_SELLER_SEND_GOODS' FROM orders"
                           " WHERE order_id = 'R2'"),
                 1);
    CHECK(!files_have("Mp-Name-R2"));
    CHECK(!files_have("Mp-Street-R2"));
    CHECK(!files_have("Mp-Phone-R2"));

    /* Whatever writes the columns directly (a path added later, a person's SQL) is undone in
     * the same statement. */
    RH_EXEC(h, "UPDATE orders SET buyer_name = 'Sql-Name-R1', phone = 'Sql-Phone-R1'"
               " WHERE order_id = 'R1'");
    CHECK_EQ_INT(purged("R1"), 1);

    /* The re-opened order is fulfilled from an outbound warehouse: the request built now
     * carries no buyer either. */
    RH_EXEC(h, "UPDATE warehouses SET fulfilment = 'outbound' WHERE code = 'A'");
    RH_EXEC(h, "UPDATE orders SET fdirty = 1");
    fulfil_pass(d, store_now());
    fulfil_pass(d, store_now());
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE entity = 'R2' AND kind = 'outbound'"),
                 1);
    CHECK_EQ_INT(
        rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE instr(payload, CAST('-Name-' AS BLOB)) > 0"
                  " OR instr(payload, CAST('-Phone-' AS BLOB)) > 0"),
        0);
    /* Nor any exception raised about it. */
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE message LIKE '%%-Name-%%'"
                           " OR message LIKE '%%-Street-%%' OR message LIKE '%%-PC%%'"),
                 0);
    sqlite3_exec(store_db(d->store), "PRAGMA wal_checkpoint(PASSIVE)", NULL, NULL, NULL);
    CHECK(!files_have("Mp-Name-R2"));
    CHECK(!files_have("Sql-Name-R1"));
    CHECK(!files_have("New-Name-R1"));

    /* Free text about an order from people and upstreams goes with the purge: an operator's
     * note, a warehouse's reason, an upstream's error quoting the street. */
    CHECK_EQ_INT(import_order("R3", "Old", "FINISH"), 0);
    RH_EXEC(h, "UPDATE orders SET fstate = 'finished', finished_at = %lld WHERE order_id = 'R3'",
            (long long)(store_now() - 40 * DAY));
    int64_t r3 = rh_q64(h, "SELECT id FROM orders WHERE order_id = 'R3'");
    RH_EXEC(h,
            "INSERT INTO exceptions(kind, order_ref, message, raised_at, deadline, state, note,"
            " dedupe) VALUES('warehouse', %lld, 'A reports: Txt-Street-R3 not found', 0, 0,"
            " 'resolved', 'called Txt-Name-R3', 'x:R3'), ('deadline', %lld, 'order R3 must ship',"
            " 0, 0, 'resolved', NULL, 'y:R3')",
            (long long)r3, (long long)r3);
    RH_EXEC(h, "INSERT INTO outbound_orders(warehouse, id, status, reason, updated_at)"
               " VALUES(1, 'R3', 'cancelled', 'no such street Txt-Street-R3', 0)");
    RH_EXEC(h,
            "INSERT INTO allocation_bans(order_ref, warehouse, reason, at)"
            " VALUES(%lld, 1, 'Txt-Street-R3 unreachable', 0)",
            (long long)r3);
    add_outbound("R3");
    RH_EXEC(h, "UPDATE outbox SET last_error = '422: Txt-Phone-R3 invalid' WHERE entity = 'R3'");
    CHECK_EQ_INT(privacy_purge(d, 30, false, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE message LIKE '%%Txt-%%'"
                           " OR note LIKE '%%Txt-%%'"),
                 0);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE message = 'order R3 must ship'"),
                 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbound_orders WHERE reason IS NOT NULL"), 0);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM allocation_bans WHERE reason LIKE '%%Txt-%%'"), 0);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE last_error LIKE '%%Txt-%%'"), 0);
    CHECK(!files_have("Txt-Street-R3"));
    CHECK(!files_have("Txt-Name-R3"));
    CHECK(!files_have("Txt-Phone-R3"));

    /* A purge finds nothing new to erase, and the data is still gone. */
    CHECK_EQ_INT(privacy_purge(d, 0, true, &n), 0);
    CHECK_EQ_INT(n, 0);
}

static int done_calls, done_r;
static int64_t done_n;
static off_t wal_at_done; /* the WAL file's size when the job reported (-1: none) */

static void on_done(struct tallyd *dd, void *arg, int r, int64_t n)
{
    (void)dd;
    (void)arg;
    done_calls++;
    done_r = r;
    done_n = n;
    char wal[160];
    struct stat sb;
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    wal_at_done = stat(wal, &sb) == 0 ? sb.st_size : -1;
}

static int64_t purged_count(void)
{
    return rh_q64(h, "SELECT COUNT(*) FROM orders WHERE purged_at IS NOT NULL");
}

/* Runs the loop until the job reports; the number of iterations it took. */
static int run_until_done(uv_loop_t *loop)
{
    int turns = 0;
    while (done_calls == 0 && turns < 100000) {
        uv_run(loop, UV_RUN_ONCE);
        turns++;
    }
    return turns;
}

/* On a loop, a purge runs one bounded slice per iteration: the replica is served between
 * slices, a second purge is refused as busy meanwhile, the outcome comes once at the end. */
static void test_slices(void)
{
    rh_open(h);
    rh_seed_standard(h);
    snprintf(db_path, sizeof db_path, "%s", store_path(d->store));
    RH_EXEC(h, "BEGIN");
    for (int i = 0; i < 1000; i++) {
        char id[16];
        snprintf(id, sizeof id, "L%04d", i);
        add_order(id, 40 * DAY + i, "finished");
        add_outbound(id);
    }
    add_order("LKEEP", 1 * DAY, "finished");
    RH_EXEC(h, "COMMIT");
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    d->loop = &loop;

    /* A dry run counts in slices too. */
    done_calls = 0;
    CHECK_EQ_INT(privacy_purge_start(d, 30, true, on_done, NULL), 0);
    run_until_done(&loop);
    CHECK_EQ_INT(done_calls, 1);
    CHECK_EQ_INT(done_r, 0);
    CHECK_EQ_INT(done_n, 1000);
    CHECK_EQ_INT(purged_count(), 0);

    done_calls = 0;
    CHECK_EQ_INT(privacy_purge_start(d, 30, false, on_done, NULL), 0);
    CHECK(privacy_running(d));
    CHECK_EQ_INT(privacy_purge_start(d, 30, false, on_done, NULL), TALLY_E_BUSY);
    CHECK_EQ_INT(purged_count(), 0); /* nothing done before the loop runs */
    uv_run(&loop, UV_RUN_NOWAIT);
    int64_t first = purged_count();
    CHECK(first > 0 && first < 1000);
    CHECK_EQ_INT(done_calls, 0);
    /* Between slices: clients are answered, and a purge through the method is refused as
     * busy (nothing changed). */
    const msgpack_object *r = rh_call(h, "status", NULL);
    CHECK(r != NULL);
    CHECK(rh_call(h, "privacy.purge", "older_than_days=#0", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "busy");
    CHECK_EQ_INT(intact("LKEEP"), 1);
    int turns = 1 + run_until_done(&loop);
    CHECK(turns >= 1000 / 64);
    CHECK_EQ_INT(done_calls, 1);
    CHECK_EQ_INT(done_r, 0);
    CHECK_EQ_INT(done_n, 1000);
    CHECK(!privacy_running(d));
    CHECK_EQ_INT(purged_count(), 1000);
    CHECK_EQ_INT(intact("LKEEP"), 1);
    CHECK(payload_scrubbed_map("ob:A:L0000", "L0000"));
    CHECK(payload_scrubbed_map("ob:A:L0999", "L0999"));
    /* The checkpoint ran on a worker thread: the WAL holds none of it. */
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    struct stat sb;
    CHECK(stat(wal, &sb) != 0 || sb.st_size == 0);
    CHECK(!file_has(db_path, "Name-L0000"));
    CHECK(!file_has(db_path, "L0500 Secret Street"));
    CHECK(!file_has(wal, "Name-L0999"));

    /* A daemon that stops ends a purge at its next slice: what was committed stays. */
    RH_EXEC(h, "UPDATE orders SET purged_at = NULL, buyer_name = 'again'");
    done_calls = 0;
    CHECK_EQ_INT(privacy_purge_start(d, 30, false, on_done, NULL), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    d->stopping = true;
    run_until_done(&loop);
    d->stopping = false;
    CHECK_EQ_INT(done_calls, 1);
    CHECK_EQ_INT(done_r, TALLY_E_SHUTTING_DOWN);
    CHECK(done_n > 0 && done_n < 1000);
    CHECK_EQ_INT(purged_count(), done_n);

    uv_run(&loop, UV_RUN_DEFAULT); /* the job's handle closes */
    d->loop = NULL;
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* ---- the checkpoint after a purge never refuses a loop write ---- */

struct writer {
    uv_idle_t idle;
    sqlite3 *reader; /* another process's reader, in and out of its snapshot */
    bool reading;
    int64_t writes, busy, failed;
};

/* One client write per loop iteration, as busy a loop as there can be, and every 25th write
 * the outside reader begins or ends a read transaction. */
static void on_write(uv_idle_t *i)
{
    struct writer *w = i->data;
    struct store *st = d->store;
    int r = store_begin(st);
    if (r == 0) {
        sqlite3_stmt *s = store_stmt(st, "INSERT INTO test_writes(b) VALUES(randomblob(3000))");
        r = s && sqlite3_step(s) == SQLITE_DONE ? 0 : TALLY_E_STORAGE;
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
    }
    w->writes++;
    w->busy += r == TALLY_E_BUSY;
    w->failed += r != 0 && r != TALLY_E_BUSY;
    if (w->writes % 25 == 0) {
        if (w->reading)
            CHECK(sqlite3_exec(w->reader, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
        else
            CHECK(sqlite3_exec(w->reader, "BEGIN; SELECT COUNT(*) FROM orders", NULL, NULL, NULL) ==
                  SQLITE_OK);
        w->reading = !w->reading;
    }
    if (done_calls > 0)
        uv_idle_stop(i);
}

/*
 * Purges on a loop that writes on every iteration while another process reads: the WAL
 * checkpoint that follows each purge never takes the write lock from the loop, so no loop
 * write is refused as busy. The loop's connection here waits for no lock at all (stricter
 * than STORE_BUSY_MS): any moment another connection holds the write lock shows as a refused
 * write. And the checkpoint still does its work: the WAL is empty when the purge reports, and
 * neither file holds the purged data.
 */
static void test_checkpoint_writes(void)
{
    rh_open(h);
    rh_seed_standard(h);
    snprintf(db_path, sizeof db_path, "%s", store_path(d->store));
    RH_EXEC(h, "CREATE TABLE test_writes(b BLOB)");
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    d->loop = &loop;
    struct writer w = {0};
    CHECK(sqlite3_open_v2(db_path, &w.reader, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_busy_timeout(store_db(d->store), 0);
    for (int round = 0; round < 3; round++) {
        RH_EXEC(h, "BEGIN");
        for (int i = 0; i < 300; i++) {
            char id[16];
            snprintf(id, sizeof id, "W%d%03d", round, i);
            add_order(id, 40 * DAY + i, "finished");
            add_outbound(id);
        }
        RH_EXEC(h, "COMMIT");
        done_calls = 0;
        wal_at_done = -1;
        CHECK_EQ_INT(uv_idle_init(&loop, &w.idle), 0);
        w.idle.data = &w;
        uv_idle_start(&w.idle, on_write);
        CHECK_EQ_INT(privacy_purge_start(d, 30, false, on_done, NULL), 0);
        run_until_done(&loop);
        uv_close((uv_handle_t *)&w.idle, NULL);
        uv_run(&loop, UV_RUN_NOWAIT);
        if (w.reading)
            CHECK(sqlite3_exec(w.reader, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
        w.reading = false;
        CHECK_EQ_INT(done_calls, 1);
        CHECK_EQ_INT(done_r, 0);
        CHECK_EQ_INT(done_n, 300);
        CHECK_EQ_INT(wal_at_done, 0);
        char name[32];
        snprintf(name, sizeof name, "Name-W%d150", round);
        CHECK(!file_has(db_path, name));
    }
    printf("checkpoint with loop writes: %lld writes, %lld busy, %lld failed\n",
           (long long)w.writes, (long long)w.busy, (long long)w.failed);
    CHECK(w.writes > 0);
    CHECK_EQ_INT(w.busy, 0);
    CHECK_EQ_INT(w.failed, 0);
    CHECK_EQ_INT(purged_count(), 900);
    sqlite3_busy_timeout(store_db(d->store), STORE_BUSY_MS);
    sqlite3_close(w.reader);
    uv_run(&loop, UV_RUN_DEFAULT);
    d->loop = NULL;
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* VM steps of the loop connection's cached statements whose SQL contains `needle`, since the
 * last call (rh_vm_steps). */
static int64_t scan_steps(const char *needle)
{
    return rh_vm_steps(d->store, needle);
}

/*
 * A dry run's slice starts in orders_to_purge at its cursor (finished_at, id), also inside a
 * run of orders finished in the same second (a pass that finished an import's orders): the
 * count costs the same per order wherever it is. (The row value was a range on finished_at
 * alone, the index's rowid not part of it: each slice read every order of the cursor's second
 * before the cursor again: 45 steps an order over 10,094 orders of one second, 7 now.)
 */
static void test_count_ties(void)
{
    enum { N = 10300 }; /* every 50th finished in a second of its own, the rest in one */
    rh_open(h);
    rh_seed_standard(h);
    int64_t at = store_now() - 40 * DAY;
    RH_EXEC(h,
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)"
            " INSERT INTO orders(order_id, status, created_at, updated_at, country, currency,"
            " buyer_name, finished_at, fstate) SELECT printf('T%%05d', i), 'FINISH', %lld, %lld,"
            " 'ES', 'EUR', 'Name', CASE WHEN i %% 50 = 0 THEN %lld - i ELSE %lld END,"
            " 'finished' FROM c",
            N, (long long)at, (long long)at, (long long)at, (long long)at);
    add_order("TKEEP", 1 * DAY, "finished");
    int64_t due = rh_q64(h, "SELECT COUNT(*) FROM orders WHERE finished_at <= %lld", (long long)at);
    int64_t n = -1;
    scan_steps("finished_at <= ?1");
    CHECK_EQ_INT(privacy_purge(d, 30, true, &n), 0);
    int64_t steps = scan_steps("finished_at <= ?1");
    CHECK_EQ_INT(n, due);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM orders WHERE purged_at IS NOT NULL"), 0);
    fprintf(
        stderr, "test_count_ties: %lld orders due (%lld in one second): %lld VM steps\n",
        (long long)due,
        (long long)rh_q64(h, "SELECT COUNT(*) FROM orders WHERE finished_at = %lld", (long long)at),
        (long long)steps);
    /* An index entry and its two columns: a few steps an order, however the seconds fall. */
    CHECK(steps < 20 * due);
}

/* ---- a failed sync of the WAL in the purge's checkpoint stops tallyd ---- */

/* A VFS over the default one whose next sync of a WAL fails (SQLITE_IOERR_FSYNC, as the unix
 * VFS says a failed fsync), made the default only while the purge's worker opens its own
 * connection: the store's connection, opened before, keeps the real one. */
struct ffile {
    sqlite3_file base;
    sqlite3_file *real;
    bool wal;
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fvfs;
static atomic_int fail_wal_sync;
static atomic_int hook_calls, hook_rc;
static char hook_what[96];

#define REAL(f) (((struct ffile *)(f))->real)
static int f_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}
static int f_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
    return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int f_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
    return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 n)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), n);
}
static int f_sync(sqlite3_file *f, int flags)
{
    if (((struct ffile *)f)->wal && atomic_exchange(&fail_wal_sync, 0))
        return SQLITE_IOERR_FSYNC;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *n)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), n);
}
static int f_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int f_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int f_reserved(sqlite3_file *f, int *r)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), r);
}
static int f_fcntl(sqlite3_file *f, int op, void *a)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, a);
}
static int f_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int f_dev(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int f_shm_map(sqlite3_file *f, int i, int sz, int ext, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), i, sz, ext, pp);
}
static int f_shm_lock(sqlite3_file *f, int o, int n, int fl)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), o, n, fl);
}
static void f_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int f_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int f_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}
#undef REAL

static const sqlite3_io_methods fmethods = {
    3,          f_close,       f_read,      f_write, f_truncate, f_sync, f_size,
    f_lock,     f_unlock,      f_reserved,  f_fcntl, f_sector,   f_dev,  f_shm_map,
    f_shm_lock, f_shm_barrier, f_shm_unmap, f_fetch, f_unfetch,
};

static int f_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
    (void)v;
    struct ffile *ff = (struct ffile *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    ff->wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out);
    ff->base.pMethods = ff->real->pMethods ? &fmethods : NULL;
    return rc;
}

static void on_sync_failed(const char *what, int rc)
{
    snprintf(hook_what, sizeof hook_what, "%s", what);
    atomic_store(&hook_rc, rc);
    atomic_fetch_add(&hook_calls, 1); /* tallyd's hook stops it here (main.c) */
}

/* The checkpoint after a purge, on a worker thread with its own connection, syncs the WAL
 * before it copies: when that sync fails, the hook is told (tallyd stops: the kernel may have
 * dropped frames that a later sync would not write). */
static void test_checkpoint_sync_fails(void)
{
    rh_open(h);
    rh_seed_standard(h);
    snprintf(db_path, sizeof db_path, "%s", store_path(d->store));
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof id, "F%04d", i);
        add_order(id, 40 * DAY + i, "finished");
    }
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    d->loop = &loop;

    real_vfs = sqlite3_vfs_find(NULL);
    fvfs = *real_vfs;
    fvfs.zName = "tally-failsync";
    fvfs.szOsFile = (int)sizeof(struct ffile) + real_vfs->szOsFile;
    fvfs.xOpen = f_open;
    fvfs.pNext = NULL;
    CHECK_EQ_INT(sqlite3_vfs_register(&fvfs, 1), SQLITE_OK);
    store_set_wal_sync_failed(on_sync_failed);
    atomic_store(&hook_calls, 0);
    atomic_store(&fail_wal_sync, 1);

    done_calls = 0;
    CHECK_EQ_INT(privacy_purge_start(d, 30, false, on_done, NULL), 0);
    run_until_done(&loop);
    CHECK_EQ_INT(done_calls, 1);
    CHECK_EQ_INT(done_n, 10);
    CHECK_EQ_INT(atomic_load(&fail_wal_sync), 0); /* the checkpoint did sync the WAL */
    CHECK_EQ_INT(atomic_load(&hook_calls), 1);
    CHECK_EQ_INT(atomic_load(&hook_rc), SQLITE_IOERR_FSYNC);
    CHECK_EQ_STR(hook_what, "the purge's checkpoint's sync");

    store_set_wal_sync_failed(NULL);
    atomic_store(&fail_wal_sync, 0);
    sqlite3_vfs_unregister(&fvfs);
    sqlite3_vfs_register(real_vfs, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    d->loop = NULL;
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
    h = rh_new("tally-privacy");
    if (!h) {
        perror("mkdtemp");
        return 1;
    }
    d = rh_daemon(h);
    test_purge();
    test_rpc();
    test_batches();
    test_purged_stays_purged();
    test_slices();
    test_checkpoint_writes();
    test_checkpoint_sync_fails();
    test_count_ties();

    rh_free(h);
    return check_result("test_privacy");
}
