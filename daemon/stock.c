#include "stock.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <msgpack.h>

#include "catalog.h"
#include "codec.h"
#include "inbound.h"
#include "json.h"
#include "log.h"
#include "outbox.h"
#include "upstream.h"

static const char *const kind_names[] = {"receive", "pick",     "adjust",
                                         "count",   "transfer", "return"};

int stock_kind_parse(const char *s, size_t n)
{
    for (int i = 0; i < (int)(sizeof kind_names / sizeof kind_names[0]); i++)
        if (strlen(kind_names[i]) == n && memcmp(kind_names[i], s, n) == 0)
            return i;
    return -1;
}

const char *stock_kind_name(int kind)
{
    return kind >= 0 && kind <= STOCK_RETURN ? kind_names[kind] : "?";
}

/* ---- warehouse kinds: what the station may record where ---- */

unsigned stock_wh_caps(const struct tally_config *cfg, const char *code, int *kind)
{
    if (kind)
        *kind = -1;
    for (unsigned i = 0; cfg && i < cfg->nwh; i++) {
        if (strcmp(cfg->wh[i].code, code) != 0)
            continue;
        const struct connector_ops *ops = upstream_wh_ops(cfg->wh[i].kind);
        if (kind)
            *kind = cfg->wh[i].kind;
        return ops ? ops->caps : 0;
    }
    return ~0u;
}

/* Who keeps the stock of a warehouse of kind `kind`, in the refusals. */
static const char *keeper(int kind)
{
    switch (kind) {
    case WH_KIND_GOODCANG:
        return "Goodcang";
    case WH_KIND_FOURPX:
        return "4PX";
    }
    return "its own warehouse system";
}

static const char *with_article(int kind)
{
    switch (kind) {
    case STOCK_RECEIVE:
        return "a receive";
    case STOCK_PICK:
        return "a pick";
    case STOCK_ADJUST:
        return "an adjust";
    case STOCK_COUNT:
        return "a count";
    case STOCK_RETURN:
        return "a return";
    }
    return "a transfer";
}

/* "stock at UK-GC is kept by Goodcang (kind goodcang): " */
static int kept_by(char *err, size_t errlen, const char *wh, int kind)
{
    return snprintf(err, errlen, "stock at %s is kept by %s (kind %s): ", wh, keeper(kind),
                    wh_kind_name(kind) ? wh_kind_name(kind) : "?");
}

int stock_move_allowed(const struct tally_config *cfg, struct stock_move *m, char *err,
                       size_t errlen)
{
    int kind, tokind;
    unsigned caps = stock_wh_caps(cfg, m->warehouse, &kind);
    m->to_notice = false;
    if (m->kind == STOCK_TRANSFER) {
        unsigned tocaps = stock_wh_caps(cfg, m->to, &tokind);
        if (!(caps & CAP_TRANSFER_OUT)) {
            int n = kept_by(err, errlen, m->warehouse, kind);
            if (n >= 0 && (size_t)n < errlen)
                snprintf(err + n, errlen - (size_t)n,
                         "the station cannot record a transfer out of it; %s ships it: create an"
                         " outbound order there (in %s's system), then %s",
                         keeper(kind), keeper(kind),
                         tocaps & CAP_MOVEMENTS
                             ? "record the arrival with `tally receive` at the receiving"
                               " warehouse"
                             : "announce the goods to the receiving warehouse with `tally"
                               " inbound create`");
            return TALLY_E_INVALID_PARAMS;
        }
        if (tocaps & CAP_TRANSFER_IN)
            return 0;
        if (tocaps & CAP_INBOUND_NOTICE) {
            m->to_notice = true;
            return 0;
        }
        int n = kept_by(err, errlen, m->to, tokind);
        if (n >= 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n,
                     "it takes neither transfers nor inbound notices from the station");
        return TALLY_E_INVALID_PARAMS;
    }
    if (caps & CAP_MOVEMENTS)
        return 0;
    int n = kept_by(err, errlen, m->warehouse, kind);
    if (n < 0 || (size_t)n >= errlen)
        return TALLY_E_INVALID_PARAMS;
    char *e = err + n;
    size_t cap = errlen - (size_t)n;
    const char *who = keeper(kind);
    switch (m->kind) {
    case STOCK_RECEIVE:
    case STOCK_RETURN:
        snprintf(e, cap,
                 "the station cannot record %s there; announce goods with `tally inbound create"
                 " --warehouse %s ...`; its stock comes from %s's feed",
                 with_article(m->kind), m->warehouse, who);
        break;
    case STOCK_PICK:
        snprintf(e, cap,
                 "the station cannot record a pick there; %s picks and ships: orders allocated"
                 " there go to it as outbound orders; its stock comes from %s's feed",
                 who, who);
        break;
    default:
        snprintf(e, cap,
                 "the station cannot record %s there; correct the stock in %s's system: its"
                 " figures come from %s's feed (`tally sync` reads them now)",
                 with_article(m->kind), who, who);
        break;
    }
    return TALLY_E_INVALID_PARAMS;
}

int stock_inbound_allowed(const struct tally_config *cfg, const char *wh, char *err, size_t errlen)
{
    int kind;
    unsigned caps = stock_wh_caps(cfg, wh, &kind);
    /* a warehouse not in the config has no connector here to carry a notice */
    if (kind >= 0 && (caps & CAP_INBOUND_NOTICE))
        return 0;
    if (kind < 0)
        snprintf(err, errlen,
                 "%s is not a third-party warehouse of this station's config: inbound notices"
                 " go to a Goodcang or 4PX warehouse; record goods arriving with `tally"
                 " receive`",
                 wh);
    else
        snprintf(err, errlen,
                 "%s (kind %s) takes no inbound notices: the station records its stock itself;"
                 " use `tally receive SKU QTY --warehouse %s` when the goods arrive",
                 wh, wh_kind_name(kind) ? wh_kind_name(kind) : "?", wh);
    return TALLY_E_INVALID_PARAMS;
}

int stock_figures_allowed(const struct tally_config *cfg, const char *wh, char *err, size_t errlen)
{
    int kind;
    if (stock_wh_caps(cfg, wh, &kind) & CAP_MOVEMENTS)
        return 0;
    int n = kept_by(err, errlen, wh, kind);
    if (n >= 0 && (size_t)n < errlen)
        snprintf(err + n, errlen - (size_t)n,
                 "its on-hand figures come from %s's feed and are not imported; set safety stock"
                 " and thresholds with `tally stock set`",
                 keeper(kind));
    return TALLY_E_INVALID_PARAMS;
}

int stock_figures_get(struct store *st, int64_t sku, int64_t wh, struct stock_figures *f)
{
    memset(f, 0, sizeof *f);
    sqlite3_stmt *s = store_stmt(st, "SELECT snapshot, pending, reserved, safety, threshold"
                                     " FROM stock WHERE sku = ?1 AND warehouse = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        f->snapshot = sqlite3_column_int64(s, 0);
        f->pending = sqlite3_column_int64(s, 1);
        f->reserved = sqlite3_column_int64(s, 2);
        f->safety = sqlite3_column_int64(s, 3);
        f->threshold = sqlite3_column_int64(s, 4);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : store_error(st, rc, "stock read");
}

/* Marks the SKU's marketplace stock for (re)computation and publishing; only when this
 * station publishes. The value itself is computed when it is sent, so only the newest is. */
static int mark_publish(struct store *st, int64_t sku)
{
    if (!store_publishes(st))
        return 0;
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO publish(sku, value, gen, dirty) VALUES(?1,0,1,1)"
                                     " ON CONFLICT(sku) DO UPDATE SET gen = gen + 1, dirty = 1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "publish mark");
}

static int add_pending(struct store *st, int64_t sku, int64_t wh, int64_t delta)
{
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO stock(sku, warehouse, pending) VALUES(?1,?2,?3)"
                                     " ON CONFLICT(sku, warehouse)"
                                     " DO UPDATE SET pending = pending + excluded.pending");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, delta);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "stock update");
    return mark_publish(st, sku);
}

static int insert_leg(struct store *st, const struct stock_move *m, int leg, int64_t sku,
                      int64_t wh, int64_t peer, int64_t delta, int64_t now)
{
    sqlite3_stmt *s = store_stmt(
        st, "INSERT INTO movements(id, leg, kind, sku, warehouse, peer, qty, delta, reason, ref,"
            " forced, created_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, leg);
    sqlite3_bind_text(s, 3, stock_kind_name(m->kind), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, sku);
    sqlite3_bind_int64(s, 5, wh);
    if (peer)
        sqlite3_bind_int64(s, 6, peer);
    sqlite3_bind_int64(s, 7, m->qty);
    sqlite3_bind_int64(s, 8, delta);
    if (m->reason[0])
        sqlite3_bind_text(s, 9, m->reason, -1, SQLITE_STATIC);
    if (m->ref[0])
        sqlite3_bind_text(s, 10, m->ref, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 11, m->force);
    sqlite3_bind_int64(s, 12, now);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "movement insert");
}

/* Marks every leg of movement `id` settled (nothing left to reach the warehouse). */
static int settle_now(struct store *st, const char *id)
{
    sqlite3_stmt *s = store_stmt(st, "UPDATE movements SET state = 'settled' WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "settle");
}

/* The outbox payload: what the warehouse connector needs to send this movement. */
static int append_outbox(struct store *st, const struct stock_move *m, int64_t delta, int64_t now,
                         int64_t *outbox_id)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int n = 7 + (m->to[0] != 0) + (m->reason[0] != 0) + (m->ref[0] != 0);
    msgpack_pack_map(&pk, (size_t)n);
    mp_pack_kv_str(&pk, "id", m->id);
    mp_pack_kv_str(&pk, "kind", stock_kind_name(m->kind));
    mp_pack_kv_str(&pk, "sku", m->sku);
    mp_pack_kv_str(&pk, "warehouse", m->warehouse);
    mp_pack_kv_int(&pk, "delta", delta);
    mp_pack_kv_int(&pk, "qty", m->qty);
    mp_pack_kv_int(&pk, "at", now);
    if (m->to[0])
        mp_pack_kv_str(&pk, "to", m->to);
    if (m->reason[0])
        mp_pack_kv_str(&pk, "reason", m->reason);
    if (m->ref[0])
        mp_pack_kv_str(&pk, "ref", m->ref);
    char target[TALLY_MAX_ID_LEN + 4];
    outbox_target_wh(target, sizeof target, m->warehouse);
    /* A transfer into a warehouse that keeps its own stock is the origin's movement alone
     * (the destination gets an inbound notice): sent with the movements, never as a transfer
     * the origin's system would book into the other warehouse. */
    int kind = m->kind == STOCK_TRANSFER && !m->to_notice ? OBX_TRANSFER : OBX_MOVEMENT;
    int r = outbox_append(st, m->id, target, m->sku, kind, sb.data, sb.size, outbox_id);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

static int validate(const struct stock_move *m, char *err, size_t errlen)
{
    bool positive = m->kind == STOCK_RECEIVE || m->kind == STOCK_PICK || m->kind == STOCK_RETURN ||
                    m->kind == STOCK_TRANSFER;
    if (m->qty > TALLY_MAX_QTY || m->qty < -TALLY_MAX_QTY) {
        snprintf(err, errlen, "qty must be within +-%lld", (long long)TALLY_MAX_QTY);
        return TALLY_E_INVALID_PARAMS;
    }
    if (positive && m->qty <= 0) {
        snprintf(err, errlen, "qty of a %s must be greater than 0", stock_kind_name(m->kind));
        return TALLY_E_INVALID_PARAMS;
    }
    if (m->kind == STOCK_ADJUST && m->qty == 0) {
        snprintf(err, errlen, "qty of an adjust must not be 0");
        return TALLY_E_INVALID_PARAMS;
    }
    if (m->kind == STOCK_ADJUST && !m->reason[0]) {
        snprintf(err, errlen, "an adjust needs a reason");
        return TALLY_E_INVALID_PARAMS;
    }
    if (m->kind == STOCK_COUNT && m->qty < 0) {
        snprintf(err, errlen, "a count's qty is the counted quantity and must be >= 0");
        return TALLY_E_INVALID_PARAMS;
    }
    if (m->kind == STOCK_TRANSFER && !m->to[0]) {
        snprintf(err, errlen, "a transfer needs 'to' (the receiving warehouse)");
        return TALLY_E_INVALID_PARAMS;
    }
    if (m->kind != STOCK_TRANSFER && m->to[0]) {
        snprintf(err, errlen, "'to' is only for transfers");
        return TALLY_E_INVALID_PARAMS;
    }
    if (m->kind == STOCK_TRANSFER && strcmp(m->to, m->warehouse) == 0) {
        snprintf(err, errlen, "a transfer needs two different warehouses");
        return TALLY_E_INVALID_PARAMS;
    }
    if (m->force && !m->reason[0]) {
        snprintf(err, errlen, "force needs a reason");
        return TALLY_E_INVALID_PARAMS;
    }
    return 0;
}

/* Fills a leg's current figures. */
static int fill_leg(struct store *st, struct stock_leg *leg, int64_t sku, int64_t wh)
{
    struct stock_figures f;
    int r = stock_figures_get(st, sku, wh, &f);
    leg->on_hand = stock_on_hand(&f);
    leg->available = stock_available(&f);
    leg->threshold = f.threshold;
    return r;
}

/*
 * The id was used before: same content answers the original result (duplicate), different
 * content is a conflict. Content is what moves stock: kind, SKU, warehouses and qty.
 */
static int answer_duplicate(struct store *st, const struct stock_move *m, int64_t sku, int64_t wh,
                            int64_t peer, struct stock_move_result *res, char *err, size_t errlen)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT m.leg, m.kind, m.sku, m.warehouse, m.peer, m.qty,"
                                     " m.delta, m.created_at, w.code"
                                     " FROM movements m JOIN warehouses w ON w.id = m.warehouse"
                                     " WHERE m.id = ?1 ORDER BY m.leg");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
    int rc, same = 1;
    int64_t legwh[2] = {0, 0};
    res->nlegs = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && res->nlegs < 2) {
        int leg = sqlite3_column_int(s, 0);
        if (leg == 0) {
            const char *kind = (const char *)sqlite3_column_text(s, 1);
            same = strcmp(kind, stock_kind_name(m->kind)) == 0 &&
                   sqlite3_column_int64(s, 2) == sku && sqlite3_column_int64(s, 3) == wh &&
                   sqlite3_column_int64(s, 4) == peer && sqlite3_column_int64(s, 5) == m->qty;
            res->created_at = sqlite3_column_int64(s, 7);
        }
        struct stock_leg *l = &res->legs[res->nlegs];
        legwh[res->nlegs] = sqlite3_column_int64(s, 3);
        l->delta = sqlite3_column_int64(s, 6);
        snprintf(l->warehouse, sizeof l->warehouse, "%s", (const char *)sqlite3_column_text(s, 8));
        res->nlegs++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_error(st, rc, "movement lookup");
    if (!same) {
        snprintf(err, errlen, "movement id '%s' was already used for a different movement", m->id);
        return TALLY_E_CONFLICT;
    }
    for (int i = 0; i < res->nlegs; i++) {
        int r = fill_leg(st, &res->legs[i], sku, legwh[i]);
        if (r)
            return r;
    }
    snprintf(res->id, sizeof res->id, "%s", m->id);
    res->duplicate = true;
    if (m->kind == STOCK_TRANSFER && m->to_notice)
        outbox_transfer_notice_id(res->notice_id, sizeof res->notice_id, m->id);
    return 0;
}

static int64_t outbox_id_of(struct store *st, const char *key)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT id FROM outbox WHERE key = ?1");
    int64_t id = 0;
    if (!s)
        return 0;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return id;
}

static int movement_exists(struct store *st, const char *id, int *exists)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT 1 FROM movements WHERE id = ?1 AND leg = 0");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_error(st, rc, "movement lookup");
    *exists = rc == SQLITE_ROW;
    return 0;
}

/* The inbound notice of a transfer into a warehouse that keeps its own stock (to_notice): the
 * goods are announced to it; its feed shows them once received. */
static int transfer_notice(struct store *st, const struct stock_move *m,
                           struct stock_move_result *res, char *err, size_t errlen)
{
    struct inbound_req n;
    memset(&n, 0, sizeof n);
    outbox_transfer_notice_id(n.id, sizeof n.id, m->id);
    snprintf(n.warehouse, sizeof n.warehouse, "%s", m->to);
    n.nlines = 1;
    snprintf(n.lines[0].sku, sizeof n.lines[0].sku, "%s", m->sku);
    n.lines[0].qty = m->qty;
    snprintf(n.ref, sizeof n.ref, "%s", m->id);
    snprintf(n.from, sizeof n.from, "%s", m->warehouse);
    snprintf(n.note, sizeof n.note, "%s", m->reason);
    snprintf(n.station, sizeof n.station, "%s", m->station);
    struct inbound_result ir;
    int r = inbound_create_locked(st, &n, &ir, err, errlen);
    /* A retried transfer is answered before this (answer_duplicate): a notice already under
     * this id was made by hand, not by this transfer; taking it as this transfer's would
     * leave the transfer's leg without the notice that waits for it (outbox_waits). */
    if (r == 0 && ir.duplicate) {
        snprintf(err, errlen,
                 "inbound notice id '%s' is already used by a notice made by hand: give the"
                 " transfer another id",
                 n.id);
        return TALLY_E_CONFLICT;
    }
    if (r == 0)
        snprintf(res->notice_id, sizeof res->notice_id, "%s", ir.id);
    return r;
}

/* Everything of a movement that runs inside the transaction. */
static int apply_locked(struct store *st, struct stock_move *m, struct stock_move_result *res,
                        char *err, size_t errlen)
{
    int64_t sku, wh, peer = 0;
    int r = catalog_sku_id(st, m->sku, strlen(m->sku), &sku);
    if (r == TALLY_E_NOT_FOUND)
        snprintf(err, errlen, "no SKU '%s' in the catalog", m->sku);
    if (r)
        return r;
    r = catalog_warehouse_id(st, m->warehouse, strlen(m->warehouse), &wh);
    if (r == TALLY_E_NOT_FOUND)
        snprintf(err, errlen, "no warehouse '%s'", m->warehouse);
    if (r)
        return r;
    if (m->kind == STOCK_TRANSFER) {
        r = catalog_warehouse_id(st, m->to, strlen(m->to), &peer);
        if (r == TALLY_E_NOT_FOUND)
            snprintf(err, errlen, "no warehouse '%s'", m->to);
        if (r)
            return r;
    }
    int exists = 0;
    if ((r = movement_exists(st, m->id, &exists)) != 0)
        return r;
    if (exists)
        return answer_duplicate(st, m, sku, wh, peer, res, err, errlen);

    struct stock_figures f;
    if ((r = stock_figures_get(st, sku, wh, &f)) != 0)
        return r;
    int64_t on_hand = stock_on_hand(&f), delta;
    switch (m->kind) {
    case STOCK_RECEIVE:
    case STOCK_RETURN:
        delta = m->qty;
        break;
    case STOCK_PICK:
    case STOCK_TRANSFER:
        delta = -m->qty;
        break;
    case STOCK_COUNT:
        delta = m->qty - on_hand;
        break;
    default:
        delta = m->qty;
        break;
    }
    int64_t after = on_hand + delta;
    if (after < 0 && !m->force) {
        snprintf(err, errlen,
                 "%s of %lld would leave %lld on hand of %s at %s (on hand %lld); "
                 "use force with a reason to override",
                 stock_kind_name(m->kind), (long long)m->qty, (long long)after, m->sku,
                 m->warehouse, (long long)on_hand);
        return TALLY_E_INSUFFICIENT;
    }
    if (after > TALLY_MAX_QTY || after < -TALLY_MAX_QTY) {
        snprintf(err, errlen, "on hand would exceed %lld", (long long)TALLY_MAX_QTY);
        return TALLY_E_INVALID_PARAMS;
    }
    if (m->kind == STOCK_TRANSFER) {
        struct stock_figures g;
        if ((r = stock_figures_get(st, sku, peer, &g)) != 0)
            return r;
        if (stock_on_hand(&g) + m->qty > TALLY_MAX_QTY) {
            snprintf(err, errlen, "on hand at %s would exceed %lld", m->to,
                     (long long)TALLY_MAX_QTY);
            return TALLY_E_INVALID_PARAMS;
        }
    }

    int64_t now = store_now();
    if ((r = insert_leg(st, m, 0, sku, wh, peer, delta, now)) != 0 ||
        (r = add_pending(st, sku, wh, delta)) != 0)
        return r;
    res->nlegs = 1;
    snprintf(res->legs[0].warehouse, sizeof res->legs[0].warehouse, "%s", m->warehouse);
    res->legs[0].delta = delta;
    if (m->kind == STOCK_TRANSFER && m->to_notice) {
        if ((r = transfer_notice(st, m, res, err, errlen)) != 0)
            return r;
    } else if (m->kind == STOCK_TRANSFER) {
        if ((r = insert_leg(st, m, 1, sku, peer, wh, m->qty, now)) != 0 ||
            (r = add_pending(st, sku, peer, m->qty)) != 0)
            return r;
        res->nlegs = 2;
        snprintf(res->legs[1].warehouse, sizeof res->legs[1].warehouse, "%s", m->to);
        res->legs[1].delta = m->qty;
    }
    /* A count that agrees with the figures changes nothing: it is kept in the ledger (its id
     * answers a retry) but settled at once, with nothing for the warehouse, which refuses a
     * zero delta; the row would otherwise be held forever. */
    if (delta == 0) {
        if ((r = settle_now(st, m->id)) != 0)
            return r;
    } else if ((r = append_outbox(st, m, delta, now, &res->outbox_id)) != 0) {
        return r;
    }
    /* Leg 0's figures after the movement: the row read above plus its delta (add_pending
     * changed nothing else of it), not read again. */
    struct stock_figures after_f = f;
    after_f.pending += delta;
    res->legs[0].on_hand = stock_on_hand(&after_f);
    res->legs[0].available = stock_available(&after_f);
    res->legs[0].threshold = after_f.threshold;
    res->legs[0].became_low = !stock_is_low(&f) && res->legs[0].available <= res->legs[0].threshold;
    if (res->nlegs == 2 && (r = fill_leg(st, &res->legs[1], sku, peer)) != 0)
        return r;
    snprintf(res->id, sizeof res->id, "%s", m->id);
    res->duplicate = false;
    res->created_at = now;
    return 0;
}

/* Validates a request and gives it an id when it has none; runs before any transaction. */
static int prepare(const struct stock_move *req, struct stock_move *m,
                   struct stock_move_result *res, char *err, size_t errlen)
{
    *m = *req;
    memset(res, 0, sizeof *res);
    err[0] = 0;
    int r = validate(m, err, errlen);
    if (r)
        return r;
    if (!m->id[0])
        outbox_movement_id(m->id, sizeof m->id);
    return 0;
}

/* The movement itself, for a prepared request inside the caller's transaction. */
static int apply_prepared(struct store *st, struct stock_move *m, struct stock_move_result *res,
                          char *err, size_t errlen)
{
    int r = apply_locked(st, m, res, err, errlen);
    if (r == 0 && res->duplicate && res->outbox_id == 0)
        res->outbox_id = outbox_id_of(st, m->id);
    return r;
}

int stock_move_apply_locked(struct store *st, const struct stock_move *req,
                            struct stock_move_result *res, char *err, size_t errlen)
{
    struct stock_move m;
    int r = prepare(req, &m, res, err, errlen);
    return r ? r : apply_prepared(st, &m, res, err, errlen);
}

int stock_move_apply(struct store *st, const struct stock_move *req, struct stock_move_result *res,
                     char *err, size_t errlen)
{
    struct stock_move m;
    int r = prepare(req, &m, res, err, errlen);
    if (r)
        return r;
    if ((r = store_begin(st)) != 0) {
        snprintf(err, errlen, "%s",
                 r == TALLY_E_BUSY ? "the replica is locked by another process; nothing was"
                                     " recorded: retry with the same id"
                                   : "cannot start a transaction");
        return r;
    }
    r = apply_prepared(st, &m, res, err, errlen);
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    if (r == TALLY_E_DISK_FULL && !err[0])
        snprintf(err, errlen, "disk full: the movement was not recorded");
    else if (r && !err[0])
        snprintf(err, errlen, "the replica could not record the movement; nothing changed");
    return r;
}

/* Settles the acknowledged movements of SKU x warehouse that a snapshot at `version` includes. */
static int settle(struct store *st, int64_t sku, int64_t wh, int64_t version)
{
    sqlite3_stmt *s = store_stmt(
        st, "UPDATE stock SET pending = pending - (SELECT COALESCE(SUM(delta), 0) FROM movements"
            " WHERE sku = ?1 AND warehouse = ?2 AND state = 'acked' AND upstream_version <= ?3)"
            " WHERE sku = ?1 AND warehouse = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, version);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "settle");
    s = store_stmt(st, "UPDATE movements SET state = 'settled' WHERE sku = ?1 AND warehouse = ?2"
                       " AND state = 'acked' AND upstream_version <= ?3");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, version);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "settle");
}

int stock_apply_snapshot(struct store *st, int64_t sku, int64_t wh, int64_t on_hand,
                         int64_t version, int64_t as_of)
{
    return stock_apply_snapshot_inbound(st, sku, wh, on_hand, -1, version, as_of);
}

int stock_apply_snapshot_inbound(struct store *st, int64_t sku, int64_t wh, int64_t on_hand,
                                 int64_t inbound, int64_t version, int64_t as_of)
{
    /* One statement per row: the in-transit figure is set in the same upsert, so only when the
     * snapshot is (not stale); NULL (not reported) keeps the stored one. */
    sqlite3_stmt *s = store_stmt(
        st, "INSERT INTO stock(sku, warehouse, snapshot, upstream_version, as_of, inbound)"
            " VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(sku, warehouse) DO UPDATE SET"
            " snapshot = excluded.snapshot, upstream_version = excluded.upstream_version,"
            " as_of = excluded.as_of, inbound = COALESCE(excluded.inbound, stock.inbound)"
            " WHERE excluded.upstream_version >= stock.upstream_version");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, on_hand);
    sqlite3_bind_int64(s, 4, version);
    sqlite3_bind_int64(s, 5, as_of);
    if (inbound >= 0)
        sqlite3_bind_int64(s, 6, inbound);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "snapshot");
    if ((rc = mark_publish(st, sku)) != 0)
        return rc;
    /* Only rows with acknowledged movements need settling; the partial index makes the check
     * cheap for the common case of none. */
    s = store_stmt(st, "SELECT 1 FROM movements WHERE sku = ?1 AND warehouse = ?2"
                       " AND state = 'acked' AND upstream_version <= ?3 LIMIT 1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, version);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return settle(st, sku, wh, version);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "snapshot");
}

int stock_apply_snapshot_code(struct store *st, const char *sku, int64_t wh, int64_t on_hand,
                              int64_t inbound, int64_t version, int64_t as_of, bool *applied)
{
    *applied = false;
    sqlite3_stmt *s = store_stmt(
        st, "INSERT INTO stock(sku, warehouse, snapshot, upstream_version, as_of, inbound)"
            " SELECT id, ?2, ?3, ?4, ?5, ?6 FROM skus WHERE code = ?1"
            " ON CONFLICT(sku, warehouse) DO UPDATE SET"
            " snapshot = excluded.snapshot, upstream_version = excluded.upstream_version,"
            " as_of = excluded.as_of, inbound = COALESCE(excluded.inbound, stock.inbound)"
            " WHERE excluded.upstream_version >= stock.upstream_version");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, sku, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, on_hand);
    sqlite3_bind_int64(s, 4, version);
    sqlite3_bind_int64(s, 5, as_of);
    if (inbound >= 0)
        sqlite3_bind_int64(s, 6, inbound);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "snapshot");
    *applied = sqlite3_changes(store_db(st)) > 0;
    return 0;
}

/* The version of the snapshot held for SKU x warehouse, -1 when there is no row. */
static int64_t held_version(struct store *st, int64_t sku, int64_t wh)
{
    sqlite3_stmt *s =
        store_stmt(st, "SELECT upstream_version FROM stock WHERE sku = ?1 AND warehouse = ?2");
    int64_t held = -1;
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    if (sqlite3_step(s) == SQLITE_ROW)
        held = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return held;
}

static int ack_leg(struct store *st, const char *id, int leg, int64_t version)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT sku, warehouse FROM movements"
                                     " WHERE id = ?1 AND leg = ?2 AND state = 'pending'");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, leg);
    int rc = sqlite3_step(s);
    int64_t sku = 0, wh = 0;
    if (rc == SQLITE_ROW) {
        sku = sqlite3_column_int64(s, 0);
        wh = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0; /* already acknowledged (a duplicate answer), or not ours */
    if (rc != SQLITE_ROW)
        return store_error(st, rc, "ack");
    int64_t held = held_version(st, sku, wh);
    /* Without a version, the movement cannot be placed among the warehouse's changes: it is
     * taken to be in the first snapshot newer than the one held now, never in that one. */
    if (version <= 0)
        version = (held > 0 ? held : 0) + 1;
    s = store_stmt(st, "UPDATE movements SET state = 'acked', upstream_version = ?3"
                       " WHERE id = ?1 AND leg = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, leg);
    sqlite3_bind_int64(s, 3, version);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "ack");
    return held >= version ? settle(st, sku, wh, held) : 0;
}

int stock_ack(struct store *st, const char *id, int64_t version, int64_t to_version)
{
    int r = ack_leg(st, id, 0, version);
    if (r == 0 && to_version > 0)
        r = ack_leg(st, id, 1, to_version);
    return r;
}

/*
 * What ack_leg does for each movement, set-based: one UPDATE acknowledges them all (a
 * version of 0, unknown, is the held snapshot's + 1, as in ack_leg), one SELECT finds the
 * SKU x warehouse rows whose held snapshot already includes one of them, and each of those
 * settles once. Per movement, ack_leg ran three statements, each with its statement journal
 * and the `state` CHECK's list evaluated anew (perf of a drain: about a quarter of tallyd's
 * CPU). The ids go in as one JSON array (json_each): [[id, version], ...].
 */
int stock_ack_many(struct store *st, const char *const *ids, const int64_t *versions, int n)
{
    if (n <= 0)
        return 0;
    struct jbuf j = {0};
    jb_lit(&j, "[");
    for (int i = 0; i < n; i++) {
        jb_lit(&j, i ? ",[" : "[");
        jb_str(&j, ids[i]);
        jb_lit(&j, ",");
        jb_int(&j, versions[i] > 0 ? versions[i] : 0);
        jb_lit(&j, "]");
    }
    jb_lit(&j, "]");
    if (j.failed) {
        jb_free(&j);
        return TALLY_E_NOMEM;
    }
    int r = 0, npairs = 0;
    int64_t(*pairs)[3] = NULL;
    sqlite3_stmt *s = store_stmt(
        st, "UPDATE movements SET state = 'acked', upstream_version = CASE WHEN j.v > 0"
            " THEN j.v ELSE COALESCE((SELECT MAX(s.upstream_version, 0) FROM stock s"
            " WHERE s.sku = movements.sku AND s.warehouse = movements.warehouse), 0) + 1 END"
            " FROM (SELECT json_extract(value, '$[0]') AS id,"
            " json_extract(value, '$[1]') AS v FROM json_each(?1)) AS j"
            " WHERE movements.id = j.id AND movements.leg = 0 AND movements.state = 'pending'");
    if (!s) {
        r = TALLY_E_STORAGE;
        goto out;
    }
    sqlite3_bind_text(s, 1, j.p, (int)j.len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) {
        r = store_error(st, rc, "ack");
        goto out;
    }
    s = store_stmt(st, "SELECT DISTINCT m.sku, m.warehouse, s.upstream_version"
                       " FROM json_each(?1) AS j"
                       " JOIN movements m ON m.id = json_extract(j.value, '$[0]') AND m.leg = 0"
                       " JOIN stock s ON s.sku = m.sku AND s.warehouse = m.warehouse"
                       " WHERE m.state = 'acked' AND m.upstream_version <= s.upstream_version");
    if (!s || !(pairs = malloc((size_t)n * sizeof *pairs))) {
        r = s ? TALLY_E_NOMEM : TALLY_E_STORAGE;
        goto out;
    }
    sqlite3_bind_text(s, 1, j.p, (int)j.len, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && npairs < n) {
        pairs[npairs][0] = sqlite3_column_int64(s, 0);
        pairs[npairs][1] = sqlite3_column_int64(s, 1);
        pairs[npairs][2] = sqlite3_column_int64(s, 2);
        npairs++;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        r = store_error(st, rc, "ack");
        goto out;
    }
    for (int i = 0; r == 0 && i < npairs; i++)
        r = settle(st, pairs[i][0], pairs[i][1], pairs[i][2]);
out:
    free(pairs);
    jb_free(&j);
    return r;
}

int stock_discard(struct store *st, const char *id)
{
    if (store_publishes(st)) {
        sqlite3_stmt *q = store_stmt(st, "SELECT sku FROM movements WHERE id = ?1 AND leg = 0");
        if (!q)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
        int64_t sku = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
        sqlite3_reset(q);
        if (sku && mark_publish(st, sku) != 0)
            return TALLY_E_STORAGE;
    }
    sqlite3_stmt *s = store_stmt(st, "UPDATE stock SET pending = pending - m.delta"
                                     " FROM (SELECT sku, warehouse, delta FROM movements"
                                     "       WHERE id = ?1 AND state <> 'settled') AS m"
                                     " WHERE stock.sku = m.sku AND stock.warehouse = m.warehouse");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "discard");
    s = store_stmt(st, "UPDATE movements SET state = 'settled' WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "discard");
}
