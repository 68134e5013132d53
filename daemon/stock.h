/*
 * Stock: the local view of each SKU x warehouse, and the movements that change it.
 *
 * local on_hand = snapshot (last upstream figure) + pending (local movements not yet settled)
 * available     = max(0, on_hand - reserved - safety)
 *
 * A movement is one transaction: ledger row(s) + overlay update + one outbox row, committed
 * (fsynced when synchronous=full) before stock_move_apply() returns. A count becomes the delta
 * between the counted quantity and the local on_hand at that moment, so a count made offline
 * does not erase movements made elsewhere.
 */
#ifndef TALLY_STOCK_H
#define TALLY_STOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"
#include "tally/protocol.h"

enum stock_kind {
    STOCK_RECEIVE,
    STOCK_PICK,
    STOCK_ADJUST,
    STOCK_COUNT,
    STOCK_TRANSFER,
    STOCK_RETURN,
};

/* Parses a kind name ("receive"...); -1 when unknown. */
int stock_kind_parse(const char *s, size_t n);
const char *stock_kind_name(int kind);

struct stock_figures {
    int64_t snapshot, pending, reserved, safety, threshold;
};

static inline int64_t stock_on_hand(const struct stock_figures *f)
{
    return f->snapshot + f->pending;
}

static inline int64_t stock_available(const struct stock_figures *f)
{
    int64_t a = stock_on_hand(f) - f->reserved - f->safety;
    return a > 0 ? a : 0;
}

/* Out: nothing available (none on hand, or every unit reserved or held as safety stock). */
static inline bool stock_is_out(const struct stock_figures *f)
{
    return stock_available(f) == 0;
}

/*
 * Low: available at or below the threshold (>= 0); a row that is out is low whatever its
 * threshold (with the default 0, low means out). The one rule for the `low` flag, the
 * `low_stock` events and `stock.list low`, whose partial indexes stock_low and
 * stock_low_by_warehouse hold exactly these rows (snapshot + pending - reserved - safety -
 * threshold <= 0, the same test since the threshold is never negative).
 */
static inline bool stock_is_low(const struct stock_figures *f)
{
    return stock_available(f) <= f->threshold;
}

/* A movement request. Strings are NUL-terminated; empty means absent. */
struct stock_move {
    char id[TALLY_MAX_ID_LEN + 1]; /* empty: tallyd makes one */
    int kind;
    char sku[TALLY_MAX_ID_LEN + 1];
    char warehouse[TALLY_MAX_ID_LEN + 1];
    char to[TALLY_MAX_ID_LEN + 1]; /* transfer only */
    int64_t qty;
    char reason[TALLY_MAX_TEXT_LEN + 1];
    char ref[TALLY_MAX_REF_LEN + 1]; /* free text: an order id, a delivery note */
    bool force;
    /* A transfer into a warehouse that keeps its own stock (no CAP_TRANSFER_IN, but
     * CAP_INBOUND_NOTICE; set by stock_move_allowed): only the origin's leg is recorded (sent
     * to the origin as a movement), and an inbound notice for `to` is appended in the same
     * transaction (inbound.h); `to`'s stock comes from its own feed once the goods arrive, so
     * no leg there counts them twice. */
    bool to_notice;
    /* The coordinator's mark (coord.h) for that notice, when this station coordinates (set by
     * the caller; empty: none). */
    char station[80];
};

struct stock_leg {
    char warehouse[TALLY_MAX_ID_LEN + 1];
    int64_t delta;
    int64_t on_hand, available; /* after the movement (now, for a duplicate) */
    int64_t threshold;
    bool became_low; /* this movement took it to or below its low-stock threshold */
};

struct stock_move_result {
    char id[TALLY_MAX_ID_LEN + 1];
    bool duplicate;
    int64_t created_at;
    int nlegs;
    struct stock_leg legs[2];
    int64_t outbox_id;
    char notice_id[TALLY_MAX_ID_LEN + 1]; /* the inbound notice a transfer made, "" when none */
};

/*
 * Warehouse kinds (DESIGN.md "Warehouse kinds"). stock_wh_caps: the capabilities of warehouse
 * `code` at this station: its configured kind's connector's (upstream_wh_ops(kind)->caps);
 * a warehouse not in the config (a replica-only one, kept by another station) keeps every
 * write (all bits), as before kinds; *kind (may be NULL) its enum wh_kind, -1 then.
 *
 * stock_move_allowed: whether movement m may be recorded here, checked before anything is
 * written: a receive / pick / adjust / count / return at a warehouse without CAP_MOVEMENTS
 * and a transfer out of one are refused (TALLY_E_INVALID_PARAMS, err says why and what to do
 * instead); a transfer into a warehouse without CAP_TRANSFER_IN that takes inbound notices
 * sets m->to_notice. Every path that records movements calls it (stock.move, returns, ship).
 *
 * stock_inbound_allowed: whether warehouse `wh` takes inbound notices (inbound.create).
 */
unsigned stock_wh_caps(const struct tally_config *cfg, const char *code, int *kind);
int stock_move_allowed(const struct tally_config *cfg, struct stock_move *m, char *err,
                       size_t errlen);
int stock_inbound_allowed(const struct tally_config *cfg, const char *wh, char *err, size_t errlen);
/* The refusal of stock figures written at `wh` by other means than its feed (an import of
 * opening stock): 0 when it keeps movements, else TALLY_E_INVALID_PARAMS with err. */
int stock_figures_allowed(const struct tally_config *cfg, const char *wh, char *err, size_t errlen);

/*
 * Validates and applies a movement. Returns 0, or TALLY_E_INVALID_PARAMS / NOT_FOUND /
 * INSUFFICIENT / CONFLICT / STORAGE / DISK_FULL with a message in err. On any error nothing
 * was changed.
 */
int stock_move_apply(struct store *st, const struct stock_move *m, struct stock_move_result *res,
                     char *err, size_t errlen);

/*
 * The same, inside the caller's transaction (no BEGIN/COMMIT), so a movement can be combined
 * with other writes (a return record, a reservation) that commit or roll back with it. On an
 * error the caller must roll back: part of the movement may have been written.
 */
int stock_move_apply_locked(struct store *st, const struct stock_move *m,
                            struct stock_move_result *res, char *err, size_t errlen);

/*
 * Sync side (each runs inside the caller's transaction):
 *
 * stock_apply_snapshot: a pulled figure for SKU x warehouse at `version`. Older versions than
 * the one held are ignored (an overlapping page never moves the snapshot back). Movements
 * acknowledged at or below `version` are in the figure: they leave the overlay ("settle").
 *
 * stock_ack: the warehouse applied movement `id` at `version` (and a transfer's receiving side
 * at `to_version`, 0 when unknown). If the snapshot held already includes it, it settles now.
 *
 * stock_discard: the operator gave up on a movement the upstream refused: it leaves the
 * overlay without ever reaching the warehouse.
 */
int stock_apply_snapshot(struct store *st, int64_t sku, int64_t wh, int64_t on_hand,
                         int64_t version, int64_t as_of);
/* The same with the in-transit figure read with the snapshot (stock.inbound), stored only when
 * the snapshot is; inbound < 0 (not reported) keeps the stored one. */
int stock_apply_snapshot_inbound(struct store *st, int64_t sku, int64_t wh, int64_t on_hand,
                                 int64_t inbound, int64_t version, int64_t as_of);
/* The same by SKU code, in one statement, for a caller that knows no acknowledged movement
 * waits to settle and no stock is published (whfeed_plain): *applied says whether a row was
 * written (false: no SKU of that code, or a figure older than the one held). */
int stock_apply_snapshot_code(struct store *st, const char *sku, int64_t wh, int64_t on_hand,
                              int64_t inbound, int64_t version, int64_t as_of, bool *applied);
int stock_ack(struct store *st, const char *id, int64_t version, int64_t to_version);
/* stock_ack of n movements' one leg each (no receiving side), ids[i] at versions[i], in a few
 * statements for them all (an outbox drain's batch: bench_drain.sh). 0 or a TALLY_E_* code. */
int stock_ack_many(struct store *st, const char *const *ids, const int64_t *versions, int n);
int stock_discard(struct store *st, const char *id);

/* Reads the figures of one SKU x warehouse (zeros and 0 returned when there is no row). */
int stock_figures_get(struct store *st, int64_t sku, int64_t wh, struct stock_figures *f);

#endif
