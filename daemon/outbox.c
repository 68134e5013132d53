#include "outbox.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tally/protocol.h"

static const char *const kind_names[OBX_KIND_COUNT] = {
    "movement", "transfer", "outbound", "outbound_cancel", "inbound", "fulfil",
};

const char *outbox_kind_name(int kind)
{
    return kind >= 0 && kind < OBX_KIND_COUNT ? kind_names[kind] : NULL;
}

int outbox_kind_parse(const char *name)
{
    for (int k = 0; k < OBX_KIND_COUNT; k++)
        if (!strcmp(name, kind_names[k]))
            return k;
    return -1;
}

int outbox_append(struct store *st, const char *key, const char *target, const char *entity,
                  const char *kind, const void *payload, size_t payload_len, int64_t *id)
{
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO outbox(key, target, entity, kind, payload,"
                                     " next_attempt_at, created_at) VALUES(?1,?2,?3,?4,?5,?6,?6)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, target, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, entity, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, kind, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, payload, (int)payload_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, store_now());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbox append");
    *id = sqlite3_last_insert_rowid(store_db(st));
    return 0;
}

/* "wh:ES-MAD" -> "ES-MAD", "mp" -> "the marketplace". */
static const char *upstream_name(const char *target)
{
    return !strncmp(target, "wh:", 3) ? target + 3 : "the marketplace";
}

/* The status a warehouse's outbound feed last reported for order `entity`, "" when none. */
static int feed_status(struct store *st, const char *target, const char *entity, char *out,
                       size_t cap)
{
    out[0] = 0;
    if (strncmp(target, "wh:", 3) != 0)
        return 0;
    sqlite3_stmt *s = store_stmt(st, "SELECT b.status FROM outbound_orders b"
                                     " JOIN warehouses w ON w.id = b.warehouse"
                                     " WHERE w.code = ?1 AND b.id = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, target + 3, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, entity, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_error(st, rc, "outbound feed");
}

int outbox_may_discard(struct store *st, int64_t id, char *why, size_t cap)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT state, kind, target, entity, sent_at IS NOT NULL"
                                     " FROM outbox WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_error(st, rc, "outbox");
        snprintf(why, cap, "no outbox row %lld", (long long)id);
        return TALLY_E_NOT_FOUND;
    }
    char state[16], kind[16], target[80], entity[TALLY_MAX_ID_LEN * 2 + 1];
    snprintf(state, sizeof state, "%s", (const char *)sqlite3_column_text(s, 0));
    snprintf(kind, sizeof kind, "%s", (const char *)sqlite3_column_text(s, 1));
    snprintf(target, sizeof target, "%s", (const char *)sqlite3_column_text(s, 2));
    snprintf(entity, sizeof entity, "%s", (const char *)sqlite3_column_text(s, 3));
    bool sent = sqlite3_column_int(s, 4) != 0;
    sqlite3_reset(s);
    const char *up = upstream_name(target);
    bool outbound = !strcmp(kind, "outbound");
    if (!strcmp(state, "inflight")) {
        snprintf(why, cap,
                 "outbox row %lld is being sent to %s now, so it is not discarded: wait"
                 " for its answer",
                 (long long)id, up);
        return TALLY_E_CONFLICT;
    }
    if (!strcmp(state, "pending") && sent && outbound) {
        snprintf(why, cap,
                 "outbox row %lld was sent to %s and not answered: %s may hold order %s, so the"
                 " row is not discarded; it is sent again until answered (now: tally outbox"
                 " retry %lld); to move the order, have %s cancel it",
                 (long long)id, up, up, entity, (long long)id, up);
        return TALLY_E_CONFLICT;
    }
    if (!strcmp(state, "pending") && sent) {
        snprintf(why, cap,
                 "outbox row %lld was sent to %s and not answered: it may have been applied"
                 " there, so it is not discarded; it is sent again until %s answers (now: tally"
                 " outbox retry %lld), then it is done or held",
                 (long long)id, up, up, (long long)id);
        return TALLY_E_CONFLICT;
    }
    if (strcmp(state, "pending") && strcmp(state, "held")) {
        snprintf(why, cap,
                 "outbox row %lld is %s; only held rows and pending rows never sent can be"
                 " discarded",
                 (long long)id, state);
        return TALLY_E_CONFLICT;
    }
    if (outbound) {
        char status[32];
        int r = feed_status(st, target, entity, status, sizeof status);
        if (r)
            return r;
        if (status[0] && strcmp(status, "cancelled") != 0) {
            snprintf(why, cap,
                     "%s reports it holds order %s (%s), so outbox row %lld is not discarded;"
                     " to move the order, have %s cancel it",
                     up, entity, status, (long long)id, up);
            return TALLY_E_CONFLICT;
        }
    }
    return 0;
}
