/* hello, status */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "coord.h"
#include "gcommit.h"
#include "loopread.h"
#include "retain.h"
#include "server.h"
#include "store.h"
#include "sync.h"
#include "worker.h"

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

/* A figure kept by the counting triggers (schema migration 6); 0 when unreadable. */
static int64_t counter(struct store *st, const char *name)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT n FROM counters WHERE name = ?1");
    if (!s)
        return 0;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return n;
}

/*
 * Open exceptions past their deadline: the hours gone by from exception_due (one row per hour
 * that has open exceptions), the current hour from exception_due_s (one row per second that
 * has some: at most 3,600 rows, however many exceptions fall in the hour).
 */
static int64_t exceptions_overdue(struct store *st, int64_t now)
{
    int64_t hour = now / 3600, n = 0;
    sqlite3_stmt *s = store_stmt(st, "SELECT COALESCE(SUM(n), 0) FROM exception_due"
                                     " WHERE hour < ?1");
    if (s) {
        sqlite3_bind_int64(s, 1, hour);
        if (sqlite3_step(s) == SQLITE_ROW)
            n = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    s = store_stmt(st, "SELECT COALESCE(SUM(n), 0) FROM exception_due_s"
                       " WHERE second >= ?1 AND second < ?2");
    if (s) {
        sqlite3_bind_int64(s, 1, hour * 3600);
        sqlite3_bind_int64(s, 2, now);
        if (sqlite3_step(s) == SQLITE_ROW)
            n += sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    return n;
}

/* Open orders by fulfilment state and exceptions, from the counters: constant work. */
static void pack_fulfilment(struct store *st, msgpack_packer *pk, int64_t now)
{
    static const char *const states[] = {"pending", "ready",  "allocated",
                                         "sent",    "picked", "partial"};
    mp_pack_key(pk, "fulfilment");
    msgpack_pack_map(pk, 8);
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof name, "fstate:%s", states[i]);
        mp_pack_kv_int(pk, states[i], counter(st, name));
    }
    mp_pack_kv_int(pk, "exceptions_open", counter(st, "exceptions_open"));
    mp_pack_kv_int(pk, "exceptions_overdue", exceptions_overdue(st, now));
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

    msgpack_pack_map(pk, 22);
    mp_pack_kv_str(pk, "station", d->cfg.station);
    mp_pack_kv_str(pk, "server", "tallyd " TALLY_VERSION);
    mp_pack_kv_int(pk, "started_at", d->started_at);
    mp_pack_kv_int(pk, "uptime_s", now - d->started_at);
    mp_pack_kv_str(pk, "role", rpc_role_name(c->role));

    /* Whether this station makes the account-wide decisions now, and why not (coord.h). */
    char why[600] = "";
    bool decides = coord_decides(d, why, sizeof why);
    mp_pack_key(pk, "coordination");
    msgpack_pack_map(pk, 4);
    mp_pack_kv_bool(pk, "coordinator", d->cfg.coordinator);
    mp_pack_kv_bool(pk, "deciding", decides);
    mp_pack_kv_str(pk, "mark", coord_mark(d));
    mp_pack_key(pk, "why");
    if (decides)
        msgpack_pack_nil(pk);
    else
        mp_pack_strz(pk, why);

    mp_pack_key(pk, "replica");
    msgpack_pack_map(pk, 8);
    mp_pack_kv_str(pk, "path", store_path(st));
    mp_pack_kv_int(pk, "schema_version", store_schema_version(st));
    mp_pack_kv_int(pk, "products", counter(st, "products"));
    mp_pack_kv_int(pk, "skus", counter(st, "skus"));
    mp_pack_kv_int(pk, "warehouses", counter(st, "warehouses"));
    mp_pack_kv_int(pk, "orders_open", counter(st, "orders_open"));
    mp_pack_kv_int(pk, "movements_pending", counter(st, "movements_pending"));
    mp_pack_kv_int(pk, "size_bytes", size);

    mp_pack_key(pk, "outbox");
    msgpack_pack_map(pk, 7);
    /* The retention of done rows (retain.h): from memory, no count of the table. */
    mp_pack_kv_int(pk, "keep_s", retain_keep_s(d));
    mp_pack_kv_int(pk, "pruned", d->retained.pruned);
    mp_pack_kv_int(pk, "pruned_last", d->retained.last_pruned);
    mp_pack_key(pk, "pruned_at");
    if (d->retained.last_at)
        msgpack_pack_int64(pk, d->retained.last_at);
    else
        msgpack_pack_nil(pk);
    mp_pack_kv_int(pk, "pending", counter(st, "outbox_pending"));
    mp_pack_kv_int(pk, "held", counter(st, "outbox_held"));
    /* One probe of the partial index outbox_unsent per target (the targets are named by
     * their counters). */
    int64_t oldest = store_count(
        st,
        "SELECT MIN((SELECT MIN(created_at) FROM outbox WHERE target = substr(c.name, 16)"
        " AND state NOT IN ('done', 'discarded'))) FROM counters c"
        " WHERE c.name >= 'outbox_pending:' AND c.name < 'outbox_pending;'",
        -1);
    mp_pack_key(pk, "oldest_age_s");
    if (oldest < 0)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_int64(pk, now - oldest);

    pack_fulfilment(st, pk, now);
    mp_pack_key(pk, "upstreams");
    sync_pack_status(d->sync, pk);
    mp_pack_kv_int(pk, "connections", server_connections(d->server));
    mp_pack_kv_int(pk, "connection_yields", (int64_t)server_yields(d->server));
    mp_pack_kv_int(pk, "commit_waits", (int64_t)server_waits(d->server));
    mp_pack_kv_int(pk, "stock_get_kept", (int64_t)loopread_given(d));
    mp_pack_key(pk, "commit_in_flight");
    if (gcommit_in_flight(d))
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    mp_pack_kv_int(pk, "group_commits", (int64_t)gcommit_commits(d));
    mp_pack_kv_int(pk, "group_syncs", (int64_t)gcommit_syncs(d));
    uint64_t yields, barrier_waits;
    sync_yields(d->sync, &yields, &barrier_waits);
    mp_pack_kv_int(pk, "loop_yields", (int64_t)yields);
    mp_pack_kv_int(pk, "barrier_waits", (int64_t)barrier_waits);
    mp_pack_kv_int(pk, "checkpoints", (int64_t)workers_checkpoints(d));
    mp_pack_kv_int(pk, "wal_frames", store_wal_frames());
    mp_pack_key(pk, "sends_unsynced");
    if (store_sends_unsynced())
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    return 0;
}
