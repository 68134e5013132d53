/* hello, status */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "server.h"
#include "store.h"
#include "sync.h"

int cmd_hello(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    int64_t version = TALLY_PROTOCOL_VERSION;
    const char *name;
    size_t n;
    int r;
    if ((r = mp_param_int(&p, "version", false, 0, 1000000, &version, NULL)) ||
        (r = mp_param_str(&p, "client", false, 128, &name, &n, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    if (version != TALLY_PROTOCOL_VERSION)
        return rpc_fail(c, TALLY_E_VERSION, "this tallyd speaks protocol version %d, not %lld",
                        TALLY_PROTOCOL_VERSION, (long long)version);
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 5);
    mp_pack_kv_int(pk, "protocol", TALLY_PROTOCOL_VERSION);
    mp_pack_kv_str(pk, "server", "tallyd " TALLY_VERSION);
    mp_pack_kv_str(pk, "station", c->d->cfg.station);
    mp_pack_kv_str(pk, "role", rpc_role_name(c->role));
    mp_pack_kv_bool(pk, "coordinator", c->d->cfg.coordinator);
    return 0;
}

/* Open orders by fulfilment state (from the partial index of open orders) and exceptions. */
static void pack_fulfilment(struct store *st, msgpack_packer *pk, int64_t now)
{
    static const char *const states[] = {"pending", "ready",  "allocated",
                                         "sent",    "picked", "partial"};
    int64_t n[6] = {0};
    sqlite3_stmt *s = store_stmt(st, "SELECT fstate, COUNT(*) FROM orders WHERE fstate IN"
                                     " ('pending','ready','allocated','sent','picked','partial')"
                                     " GROUP BY fstate");
    while (s && sqlite3_step(s) == SQLITE_ROW)
        for (int i = 0; i < 6; i++)
            if (!strcmp((const char *)sqlite3_column_text(s, 0), states[i]))
                n[i] = sqlite3_column_int64(s, 1);
    if (s)
        sqlite3_reset(s);
    int64_t open = 0, overdue = 0;
    s = store_stmt(st, "SELECT COUNT(*), COUNT(*) FILTER (WHERE deadline < ?1) FROM exceptions"
                       " WHERE state <> 'resolved'");
    if (s) {
        sqlite3_bind_int64(s, 1, now);
        if (sqlite3_step(s) == SQLITE_ROW) {
            open = sqlite3_column_int64(s, 0);
            overdue = sqlite3_column_int64(s, 1);
        }
        sqlite3_reset(s);
    }
    mp_pack_key(pk, "fulfilment");
    msgpack_pack_map(pk, 8);
    for (int i = 0; i < 6; i++)
        mp_pack_kv_int(pk, states[i], n[i]);
    mp_pack_kv_int(pk, "exceptions_open", open);
    mp_pack_kv_int(pk, "exceptions_overdue", overdue);
}

int cmd_status(struct rpc_call *c)
{
    struct tallyd *d = c->d;
    struct store *st = d->store;
    msgpack_packer *pk = c->pk;
    int64_t now = store_now();
    /* The replica's size on disk is the database plus its write-ahead log. */
    struct stat sb;
    char wal[600];
    int64_t size = stat(store_path(st), &sb) == 0 ? (int64_t)sb.st_size : 0;
    snprintf(wal, sizeof wal, "%s-wal", store_path(st));
    if (stat(wal, &sb) == 0)
        size += (int64_t)sb.st_size;

    msgpack_pack_map(pk, 10);
    mp_pack_kv_str(pk, "station", d->cfg.station);
    mp_pack_kv_str(pk, "server", "tallyd " TALLY_VERSION);
    mp_pack_kv_int(pk, "started_at", d->started_at);
    mp_pack_kv_int(pk, "uptime_s", now - d->started_at);
    mp_pack_kv_str(pk, "role", rpc_role_name(c->role));

    mp_pack_key(pk, "replica");
    msgpack_pack_map(pk, 8);
    mp_pack_kv_str(pk, "path", store_path(st));
    mp_pack_kv_int(pk, "schema_version", store_schema_version(st));
    mp_pack_kv_int(
        pk, "products",
        store_count(st, "SELECT COUNT(*) FROM products WHERE product_id <> '~unlisted'", 0));
    mp_pack_kv_int(pk, "skus", store_count(st, "SELECT COUNT(*) FROM skus", 0));
    mp_pack_kv_int(pk, "warehouses", store_count(st, "SELECT COUNT(*) FROM warehouses", 0));
    mp_pack_kv_int(pk, "orders_open",
                   store_count(st,
                               "SELECT COUNT(*) FROM orders WHERE status NOT IN"
                               " ('FINISH','WAIT_BUYER_ACCEPT_GOODS','IN_CANCEL')",
                               0));
    mp_pack_kv_int(
        pk, "movements_pending",
        store_count(st, "SELECT COUNT(DISTINCT id) FROM movements WHERE state <> 'settled'", 0));
    mp_pack_kv_int(pk, "size_bytes", size);

    mp_pack_key(pk, "outbox");
    msgpack_pack_map(pk, 3);
    mp_pack_kv_int(
        pk, "pending",
        store_count(st, "SELECT COUNT(*) FROM outbox WHERE state IN ('pending','inflight')", 0));
    mp_pack_kv_int(pk, "held",
                   store_count(st, "SELECT COUNT(*) FROM outbox WHERE state='held'", 0));
    int64_t oldest = store_count(
        st, "SELECT MIN(created_at) FROM outbox WHERE state IN ('pending','inflight','held')", -1);
    mp_pack_key(pk, "oldest_age_s");
    if (oldest < 0)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_int64(pk, now - oldest);

    pack_fulfilment(st, pk, now);
    mp_pack_key(pk, "upstreams");
    sync_pack_status(d->sync, pk);
    mp_pack_kv_int(pk, "connections", server_connections(d->server));
    return 0;
}
