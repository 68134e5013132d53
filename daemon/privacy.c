/*
 * The personal-data purge. An order whose purged_at is set holds no buyer data: its name,
 * address, city, postcode and phone are NULL, and no outbox row of that order (entity = its
 * order id) carries a ship-to any more. The order, its lines, allocations and shipments stay:
 * sales figures, reports and returns still need them.
 *
 * Work is bounded: at most PURGE_BATCH orders per transaction, found through the partial
 * index orders_to_purge(finished_at) WHERE purged_at IS NULL, so a purge never scans orders
 * it already purged and queries get the lock between batches.
 */
#include "privacy.h"

#include <string.h>

#include <msgpack.h>

#include "log.h"
#include "store.h"
#include "tally/protocol.h"

#define PURGE_BATCH 500
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
 * Purges the next batch inside a transaction; *n gets its size (PURGE_BATCH: there may be
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
    sqlite3_bind_int(s, 3, PURGE_BATCH);
    int rc, r = 0;
    *n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        (*n)++;
        if ((r = scrub_outbox(st, (const char *)sqlite3_column_text(s, 0))) != 0)
            break;
    }
    sqlite3_reset(s);
    if (r)
        return r;
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "purge");
}

static int count_due(struct store *st, int64_t cutoff, int64_t *n)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT COUNT(*) FROM orders"
                                     " WHERE purged_at IS NULL AND finished_at <= ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, cutoff);
    int rc = sqlite3_step(s);
    *n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : store_error(st, rc, "purge count");
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

static int purge_all(struct store *st, int64_t cutoff, int64_t *orders)
{
    int64_t n;
    do {
        int r = store_begin(st);
        if (r)
            return r;
        r = purge_batch(st, cutoff, store_now(), &n);
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
        if (r)
            return r;
        *orders += n;
    } while (n == PURGE_BATCH);
    return 0;
}

int privacy_purge(struct tallyd *d, int64_t older_than_days, bool dry_run, int64_t *orders)
{
    struct store *st = d->store;
    *orders = 0;
    if (older_than_days < 0 || older_than_days > 3650)
        return TALLY_E_INVALID_PARAMS;
    int64_t cutoff = store_now() - older_than_days * DAY_S;
    if (dry_run)
        return count_due(st, cutoff, orders);
    sqlite3 *db = store_db(st);
    /* Freed cell content is overwritten only with secure_delete; it is on in Debian's build,
     * and is turned on here for the purge whatever the build says. */
    int was = secure_delete(db, -1);
    if (was == 0)
        secure_delete(db, 1);
    int r = purge_all(st, cutoff, orders);
    if (was == 0)
        secure_delete(db, 0);
    if (*orders > 0) {
        /* The old pages, data and all, stay in the WAL until a checkpoint copies the new ones
         * into the database; TRUNCATE then empties the WAL file. A reader holding an old
         * snapshot can keep it from completing; the frames are then overwritten as the WAL is
         * reused after later checkpoints. */
        char *msg = NULL;
        if (sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, &msg) != SQLITE_OK)
            log_warn("privacy: WAL checkpoint failed: %s", msg ? msg : "?");
        sqlite3_free(msg);
        log_info("privacy: purged the personal data of %lld orders", (long long)*orders);
    }
    return r;
}
