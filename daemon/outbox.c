#include "outbox.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "fulfil.h"
#include "log.h"
#include "stock.h"
#include "tallyd.h"
#include "tally/protocol.h"

/* The one table of the outbox's kinds (outbox.h struct outbox_rules). */
static const struct outbox_rules rules[OBX_KIND_COUNT] = {
    [OBX_MOVEMENT] = {.name = "movement",
                      .ack_movement = true,
                      .quiet_first_ok = true,
                      .discard_movement = true},
    [OBX_TRANSFER] = {.name = "transfer",
                      .one_per_call = true,
                      .ack_movement = true,
                      .quiet_first_ok = true,
                      .discard_movement = true},
    [OBX_OUTBOUND] = {.name = "outbound",
                      .one_per_call = true,
                      .order_held_by_feed = true,
                      .names_order = true},
    [OBX_OUTBOUND_CANCEL] = {.name = "outbound_cancel", .one_per_call = true},
    [OBX_INBOUND] = {.name = "inbound",
                     .one_per_call = true,
                     .notice = true,
                     .after_origin_leg = true},
    [OBX_FULFIL] = {.name = "fulfil"},
};
static const struct outbox_rules unknown_rules = {.name = "?"};

const struct outbox_rules *outbox_rules(int kind)
{
    return kind >= 0 && kind < OBX_KIND_COUNT ? &rules[kind] : &unknown_rules;
}

const char *outbox_kind_name(int kind)
{
    return kind >= 0 && kind < OBX_KIND_COUNT ? rules[kind].name : NULL;
}

int outbox_kind_parse(const char *name)
{
    for (int k = 0; name && k < OBX_KIND_COUNT; k++)
        if (!strcmp(name, rules[k].name))
            return k;
    return -1;
}

/* ---- keys and targets ---- */

void outbox_target_wh(char *buf, size_t cap, const char *code)
{
    snprintf(buf, cap, "wh:%.64s", code);
}

const char *outbox_target_code(const char *target)
{
    return !strncmp(target, "wh:", 3) ? target + 3 : NULL;
}

void outbox_key_order(char *buf, size_t cap, int kind, const char *wh, const char *order_id)
{
    snprintf(buf, cap, "%s:%.64s:%.64s", kind == OBX_OUTBOUND_CANCEL ? "obc" : "ob", wh, order_id);
}

bool outbox_key_order_wh(const char *key, const char *order_id, char *code, size_t cap)
{
    size_t kl = strlen(key), el = strlen(order_id);
    if (strncmp(key, "ob:", 3) != 0 || kl < 3 + el + 2 || kl - 3 - el - 1 > TALLY_MAX_ID_LEN)
        return false;
    size_t cl = kl - 3 - el - 1;
    if (cl + 1 > cap)
        return false;
    memcpy(code, key + 3, cl);
    code[cl] = 0;
    return true;
}

void outbox_key_fulfil(char *buf, size_t cap, const char *ship_id)
{
    snprintf(buf, cap, "ful:%s", ship_id);
}

const char *outbox_key_fulfil_ship(const char *key)
{
    return !strncmp(key, "ful:", 4) ? key + 4 : NULL;
}

void outbox_key_inbound(char *buf, size_t cap, const char *wh, const char *notice_id)
{
    snprintf(buf, cap, "in:%.64s:%.64s", wh, notice_id);
}

/* "<prefix>-<ms hex>-<64 random bits hex>": time-ordered, never the same at two stations. */
static void fresh_id(const char *prefix, char *buf, size_t cap)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    snprintf(buf, cap, "%s-%011" PRIx64 "-%016" PRIx64, prefix, ms, r);
}

void outbox_movement_id(char *buf, size_t cap)
{
    fresh_id("m", buf, cap);
}

void outbox_line_movement_id(const char *ship, const char *sku, char *out, size_t cap)
{
    size_t a = strlen(ship), b = strlen(sku);
    if (a + 1 + b <= TALLY_MAX_ID_LEN && a + 1 + b < cap) {
        memcpy(out, ship, a);
        out[a] = ':';
        memcpy(out + a + 1, sku, b + 1);
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = ship; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    h = (h ^ ':') * 0x100000001b3ull;
    for (const char *p = sku; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    snprintf(out, cap, "%.40s:%016" PRIx64, ship, h);
}

void outbox_notice_id(char *buf, size_t cap)
{
    fresh_id("in", buf, cap);
}

void outbox_transfer_notice_id(char *buf, size_t cap, const char *transfer_id)
{
    size_t n = strlen(transfer_id);
    if (3 + n <= TALLY_MAX_ID_LEN && 3 + n < cap) {
        snprintf(buf, cap, "in-%s", transfer_id);
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = transfer_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    snprintf(buf, cap, "in-%.40s-%016" PRIx64, transfer_id, h);
}

/* ---- rows ---- */

int outbox_append(struct store *st, const char *key, const char *target, const char *entity,
                  int kind, const void *payload, size_t payload_len, int64_t *id)
{
    if (!outbox_kind_name(kind))
        return TALLY_E_INTERNAL;
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO outbox(key, target, entity, kind, payload,"
                                     " next_attempt_at, created_at) VALUES(?1,?2,?3,?4,?5,?6,?6)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, target, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, entity, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, outbox_kind_name(kind), -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, payload, (int)payload_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, store_now());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbox append");
    *id = sqlite3_last_insert_rowid(store_db(st));
    store_note_send(st); /* durable before it is taken to be sent (store.h "Lazy commits") */
    return 0;
}

/* "wh:ES-MAD" -> "ES-MAD", "mp" -> "the marketplace". */
static const char *upstream_name(const char *target)
{
    const char *code = outbox_target_code(target);
    return code ? code : "the marketplace";
}

/* The status a warehouse's outbound feed last reported for order `entity`, "" when none. */
static int feed_status(struct store *st, const char *target, const char *entity, char *out,
                       size_t cap)
{
    out[0] = 0;
    const char *code = outbox_target_code(target);
    if (!code)
        return 0;
    sqlite3_stmt *s = store_stmt(st, "SELECT b.status FROM outbound_orders b"
                                     " JOIN warehouses w ON w.id = b.warehouse"
                                     " WHERE w.code = ?1 AND b.id = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
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
    const struct outbox_rules *k = outbox_rules(outbox_kind_parse(kind));
    if (!strcmp(state, "inflight")) {
        snprintf(why, cap,
                 "outbox row %lld is being sent to %s now, so it is not discarded: wait"
                 " for its answer",
                 (long long)id, up);
        return TALLY_E_CONFLICT;
    }
    if (!strcmp(state, "pending") && sent && k->names_order) {
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
    if (k->order_held_by_feed) {
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

/* An inbound notice's state follows its outbox row: sent, refused (held) or discarded. */
static int notice_state(struct store *st, const char *notice_id, const char *state)
{
    sqlite3_stmt *s = store_stmt(st, "UPDATE inbound_notices SET state = ?2, updated_at = ?3"
                                     " WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, notice_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, store_now());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "inbound notice state");
}

int outbox_answered(struct tallyd *d, const char *target, int kind, const char *key,
                    const char *entity, bool done, const char *error, int64_t version,
                    int64_t to_version, int64_t attempts)
{
    const struct outbox_rules *k = outbox_rules(kind);
    int r = 0;
    if (done && k->ack_movement)
        r = stock_ack(d->store, key, version, to_version);
    if (r == 0 && k->notice)
        r = notice_state(d->store, entity, done ? "sent" : "refused");
    if (r == 0 && !(done && k->quiet_first_ok && attempts <= 1))
        r = fulfil_outbox_result(d, target, k->name, key, entity, done, error);
    return r;
}

bool outbox_done_acks_only(int kind, int64_t to_version, int64_t attempts)
{
    const struct outbox_rules *k = outbox_rules(kind);
    return k->ack_movement && !k->notice && k->quiet_first_ok && attempts <= 1 && to_version <= 0;
}

/* The notices a transfer made whose leg at its origin is row `key` (from_wh names the origin,
 * ref the movement): a notice made by hand has no origin, so a ref of its own never matches. */
#define SQL_NOTICES_OF_LEG                                                                         \
    " FROM inbound_notices n JOIN outbox l ON l.key = n.ref AND l.target = 'wh:' || n.from_wh"     \
    " JOIN outbox o ON o.kind = 'inbound' AND o.entity = n.id"

int outbox_waits(struct store *st, int kind, const char *entity)
{
    if (!outbox_rules(kind)->after_origin_leg)
        return 0;
    sqlite3_stmt *s = store_stmt(st, "SELECT 1 FROM inbound_notices n JOIN outbox l"
                                     " ON l.key = n.ref AND l.target = 'wh:' || n.from_wh"
                                     " WHERE n.id = ?1 AND n.from_wh IS NOT NULL"
                                     " AND l.state <> 'done' LIMIT 1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, entity, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store_error(st, rc, "inbound notice");
}

/* A transfer's leg given up: the goods never leave its origin, so the inbound notice that
 * announced them is given up with it (it waited for the leg: outbox_waits). One already sent
 * (only a replica that sent it before the wait existed) cannot be taken back from here. */
static int withdraw_notices(struct tallyd *d, const char *key, const char *who, const char *reason)
{
    struct store *st = d->store;
    sqlite3_stmt *s =
        store_stmt(st, "SELECT o.id, o.key, n.id, o.state, o.sent_at IS NOT NULL" SQL_NOTICES_OF_LEG
                       " WHERE l.key = ?1 ORDER BY o.id");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    struct {
        int64_t row;
        char key[160], id[TALLY_MAX_ID_LEN + 1];
        bool give_up;
    } n[4]; /* a transfer makes one notice */
    int count = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && count < 4) {
        const char *state = (const char *)sqlite3_column_text(s, 3);
        n[count].row = sqlite3_column_int64(s, 0);
        snprintf(n[count].key, sizeof n[count].key, "%s", (const char *)sqlite3_column_text(s, 1));
        snprintf(n[count].id, sizeof n[count].id, "%s", (const char *)sqlite3_column_text(s, 2));
        n[count].give_up =
            !strcmp(state, "held") || (!strcmp(state, "pending") && sqlite3_column_int(s, 4) == 0);
        if (!n[count].give_up && strcmp(state, "discarded") != 0)
            log_warn("transfer %s was discarded, but its inbound notice %s is %s at its"
                     " warehouse: cancel the notice there",
                     key, n[count].id, state);
        count++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_error(st, rc, "inbound notice");
    char why[TALLY_MAX_TEXT_LEN + 64];
    snprintf(why, sizeof why, "the transfer %.64s was discarded: %s", key, reason);
    for (int i = 0; i < count; i++) {
        if (!n[i].give_up)
            continue;
        s = store_stmt(st, "UPDATE outbox SET state = 'discarded', done_at = ?2,"
                           " last_error = 'discarded: ' || ?3 WHERE id = ?1");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, n[i].row);
        sqlite3_bind_int64(s, 2, store_now());
        sqlite3_bind_text(s, 3, why, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_error(st, rc, "outbox discard");
        int r = notice_state(st, n[i].id, "discarded");
        if (r == 0)
            r = fulfil_outbox_discarded(d, rules[OBX_INBOUND].name, n[i].key, n[i].id, who, why);
        if (r)
            return r;
    }
    return 0;
}

int outbox_discarded(struct tallyd *d, int kind, const char *key, const char *entity,
                     const char *who, const char *reason)
{
    const struct outbox_rules *k = outbox_rules(kind);
    int r = 0;
    if (k->discard_movement)
        r = stock_discard(d->store, key);
    if (r == 0 && k->discard_movement)
        r = withdraw_notices(d, key, who, reason);
    if (r == 0 && k->notice)
        r = notice_state(d->store, entity, "discarded");
    if (r == 0)
        r = fulfil_outbox_discarded(d, k->name, key, entity, who, reason);
    return r;
}
