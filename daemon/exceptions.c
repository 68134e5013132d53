#include "exceptions.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "codec.h"
#include "events.h"
#include "log.h"
#include "server.h"
#include "store.h"
#include "tally/protocol.h"

/* "kind|order|sku|warehouse|subject": what makes two raisings the same problem. */
static void dedupe_key(const struct exc_raise *e, char *out, size_t cap)
{
    snprintf(out, cap, "%s|%" PRId64 "|%" PRId64 "|%" PRId64 "|%s", e->kind, e->order_ref, e->sku,
             e->wh, e->subject ? e->subject : "");
}

static void bind_ref(sqlite3_stmt *s, int i, int64_t v)
{
    if (v > 0)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static void announce(struct tallyd *d, int64_t id, const char *state)
{
    struct store *st = d->store;
    if (!server_has_watchers(d->server))
        return; /* nobody listens: spare the query (100,000 orders can raise at once) */
    sqlite3_stmt *s = store_stmt(st, "SELECT e.kind, o.order_id, k.code, w.code, e.message,"
                                     " e.deadline FROM exceptions e"
                                     " LEFT JOIN orders o ON o.id = e.order_ref"
                                     " LEFT JOIN skus k ON k.id = e.sku"
                                     " LEFT JOIN warehouses w ON w.id = e.warehouse"
                                     " WHERE e.id = ?1");
    if (!s)
        return;
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_step(s) == SQLITE_ROW)
        events_exception(d, id, (const char *)sqlite3_column_text(s, 0), state,
                         (const char *)sqlite3_column_text(s, 1),
                         (const char *)sqlite3_column_text(s, 2),
                         (const char *)sqlite3_column_text(s, 3),
                         (const char *)sqlite3_column_text(s, 4), sqlite3_column_int64(s, 5));
    sqlite3_reset(s);
}

/* On the loop, after a worker's commit: the exception it raised is announced from the loop's
 * connection (it sees the committed row). */
static void announce_held(void *arg, const void *data, size_t len)
{
    int64_t id;
    if (len != sizeof id)
        return;
    memcpy(&id, data, sizeof id);
    announce(arg, id, "open");
}

int exceptions_raise(struct tallyd *d, const struct exc_raise *e, bool *created)
{
    return exceptions_raise_on(d, d->store, e, created);
}

int exceptions_raise_on(struct tallyd *d, struct store *st, const struct exc_raise *e,
                        bool *created)
{
    char key[256];
    dedupe_key(e, key, sizeof key);
    if (created)
        *created = false;
    int64_t now = store_now();
    int64_t deadline = now + (int64_t)d->cfg.exc_deadline_h * 3600;
    bool by_ship_by = false;
    if (e->order_ref > 0) {
        sqlite3_stmt *s = store_stmt(st, "SELECT ship_by FROM orders WHERE id = ?1");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, e->order_ref);
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
            int64_t by = sqlite3_column_int64(s, 0);
            /* The marketplace's handling deadline comes first, even when it has passed
             * already: an order late on arrival makes its exceptions overdue at once. */
            if (by > 0 && by < deadline) { /* 0: none (fulfil.c's reading too) */
                deadline = by;
                by_ship_by = true;
            }
        }
        sqlite3_reset(s);
    }
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO exceptions(kind, order_ref, sku, warehouse,"
                                     " message, raised_at, deadline, dedupe)"
                                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                                     " ON CONFLICT(dedupe) WHERE state <> 'resolved' DO NOTHING"
                                     " RETURNING id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, e->kind, -1, SQLITE_STATIC);
    bind_ref(s, 2, e->order_ref);
    bind_ref(s, 3, e->sku);
    bind_ref(s, 4, e->wh);
    sqlite3_bind_text(s, 5, e->message, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, now);
    sqlite3_bind_int64(s, 7, deadline);
    sqlite3_bind_text(s, 8, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "exception");
    if (id > 0) {
        if (created)
            *created = true;
        log_info("exception %" PRId64 " (%s): %s", id, e->kind, e->message);
        if (st == d->store)
            announce(d, id, "open");
        else if (store_after_commit(st, announce_held, d, &id, sizeof id) != 0)
            log_warn("exception %" PRId64 ": not announced to watchers (out of memory)", id);
    } else if (by_ship_by) {
        /* Raised again after the order's ship-by moved earlier: the open exception is due
         * no later than the ship-by now is. */
        s = store_stmt(st, "UPDATE exceptions SET deadline = ?2"
                           " WHERE dedupe = ?1 AND state <> 'resolved' AND deadline > ?2");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, deadline);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_error(st, rc, "exception deadline");
    }
    return 0;
}

int exceptions_clear(struct tallyd *d, const struct exc_raise *e, const char *note)
{
    return exceptions_resolve(d, e, "tallyd", note);
}

int exceptions_resolve(struct tallyd *d, const struct exc_raise *e, const char *who,
                       const char *note)
{
    struct store *st = d->store;
    char key[256];
    dedupe_key(e, key, sizeof key);
    sqlite3_stmt *s = store_stmt(st, "UPDATE exceptions SET state = 'resolved',"
                                     " resolved_by = ?4, resolved_at = ?2, note = ?3"
                                     " WHERE dedupe = ?1 AND state <> 'resolved' RETURNING id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, store_now());
    sqlite3_bind_text(s, 3, note, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, who, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "exception clear");
    if (id > 0)
        announce(d, id, "resolved");
    return 0;
}

int exceptions_clear_all(struct tallyd *d, int64_t order_ref, const char *note)
{
    struct store *st = d->store;
    sqlite3_stmt *s = store_stmt(st, "UPDATE exceptions SET state = 'resolved',"
                                     " resolved_by = 'tallyd', resolved_at = ?2, note = ?3"
                                     " WHERE order_ref = ?1 AND state <> 'resolved' RETURNING id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, order_ref);
    sqlite3_bind_int64(s, 2, store_now());
    sqlite3_bind_text(s, 3, note, -1, SQLITE_STATIC);
    int64_t ids[64];
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (n < 64)
            ids[n++] = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "exception clear");
    for (int i = 0; i < n; i++)
        announce(d, ids[i], "resolved");
    return 0;
}
