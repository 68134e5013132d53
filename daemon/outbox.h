/*
 * The outbox: every local write appends one row in the same transaction as the write itself,
 * so a write is acknowledged only together with the promise to send it upstream. The sync
 * engine drains it; here it is appended to and read.
 */
#ifndef TALLY_OUTBOX_H
#define TALLY_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct tallyd;

/* An outbox row's kind: what it asks of its upstream. Stored by name (outbox.kind). */
enum outbox_kind {
    OBX_MOVEMENT = 0,    /* a stock movement at a tally warehouse ("movement") */
    OBX_TRANSFER,        /* a transfer between warehouses ("transfer") */
    OBX_OUTBOUND,        /* create an outbound order ("outbound") */
    OBX_OUTBOUND_CANCEL, /* cancel it ("outbound_cancel") */
    OBX_INBOUND,         /* an inbound notice to a third-party warehouse ("inbound") */
    OBX_FULFIL,          /* upload a shipment to the marketplace ("fulfil") */
    OBX_KIND_COUNT,
};
/* The stored name of a kind; NULL when out of range. */
const char *outbox_kind_name(int kind);
/* The kind stored as `name`, or -1. */
int outbox_kind_parse(const char *name);

/*
 * What each kind does, in one table (outbox.c): how it is sent, and what its answer and its
 * discard do to the replica. In short:
 *
 *   kind             per call  done                     held (refused)        discarded
 *   movement         batch     stock_ack (settles)      exception on the SKU  stock_discard,
 *                                                                             exception resolved
 *   transfer         one       stock_ack (both legs)    exception on the SKU  as movement
 *   outbound         one       order sent, exc. cleared exception (order)     released, wh banned
 *                                                                             for the order
 *   outbound_cancel  one       nothing                  warehouse exception   exception resolved
 *   inbound          one       notice sent, exc.cleared notice refused, exc.  notice discarded,
 *                                                                             exception resolved
 *   fulfil           batch     shipment uploaded        exception (order)     exception resolved
 *
 * A movement (the origin's leg of a transfer into a third-party warehouse) given up also gives
 * up the inbound notice that transfer made; that notice is not sent before the leg is done
 * (after_origin_leg, outbox_waits), so the third party is never told of goods that never left.
 *
 * A row sent and not answered is never discarded, whatever its kind (outbox_may_discard); an
 * outbound order its warehouse's feed reports it holds is not discarded either. The engine (sync.c
 * record_item), `outbox.discard` (cmd_sync.c) and outbox_may_discard follow it; no other file
 * compares kinds.
 */
struct outbox_rules {
    const char *name;
    bool one_per_call; /* its route takes one row per request (else push_limit per batch) */
    /* on success (done) */
    bool ack_movement;   /* acknowledges its stock movement (stock_ack): it settles when a
                          * snapshot includes it */
    bool quiet_first_ok; /* done at the first attempt: nothing can be open about it (the
                          * drain's hot path skips the fulfilment look) */
    bool notice;         /* an inbound notice: inbound_notices.state follows the row
                          * (sent / refused / discarded) */
    /* on success and on refusal (held): fulfil_outbox_result. A refusal raises an exception
     * (upstream_rejected for the row's order or stock row; a warehouse exception for a
     * refused cancel); a later success clears it. Every kind calls it. */
    /* on discard */
    bool discard_movement; /* the movement leaves the local view (stock_discard) */
    /* every kind: fulfil_outbox_discarded resolves the exception the refusal raised (an
     * outbound order given up is also released and its warehouse banned for the order) */
    bool order_held_by_feed; /* not discarded while its warehouse's feed reports it holds the
                              * order (outbound) */
    bool names_order;        /* outbox_may_discard's refusal of a row sent and unanswered
                              * speaks of the order the upstream may hold */
    /* before sending */
    bool after_origin_leg; /* a notice a transfer made waits until the transfer's leg at its
                            * origin is done (outbox_waits): goods are announced once they
                            * leave; a leg given up gives the notice up with it */
};
/* The rules of `kind`; an unknown kind (-1, a row of a newer version) gets the most careful
 * rules: nothing settles, nothing is released. */
const struct outbox_rules *outbox_rules(int kind);

/* ---- keys and targets: every outbox key and target is built here ---- */

/* The marketplace's target. */
#define OUTBOX_TARGET_MP "mp"
/* "wh:<code>", the target of a warehouse's rows (and its upstream's name). */
void outbox_target_wh(char *buf, size_t cap, const char *code);
/* The warehouse code of a target "wh:<code>", NULL for another target. */
const char *outbox_target_code(const char *target);
/* The key of a decision about an order at a warehouse: "ob:<WH>:<order id>" for
 * OBX_OUTBOUND, "obc:<WH>:<order id>" for OBX_OUTBOUND_CANCEL. */
void outbox_key_order(char *buf, size_t cap, int kind, const char *wh, const char *order_id);
/* The warehouse code of an outbound row's key "ob:<WH>:<order id>" into code (cap bytes);
 * false when the key names none. */
bool outbox_key_order_wh(const char *key, const char *order_id, char *code, size_t cap);
/* "ful:<shipment id>": a shipment's upload to the marketplace. */
void outbox_key_fulfil(char *buf, size_t cap, const char *ship_id);
/* The shipment id of a "ful:" key, NULL for another key. */
const char *outbox_key_fulfil_ship(const char *key);
/* "in:<WH>:<notice id>": an inbound notice to a third-party warehouse. */
void outbox_key_inbound(char *buf, size_t cap, const char *wh, const char *notice_id);
/* A fresh movement id ("m-<ms hex>-<64 random bits hex>"; a movement's key is its id):
 * time-ordered, never the same at two stations. */
void outbox_movement_id(char *buf, size_t cap);
/* The id of the pick movement of a shipment line made at this station: "<shipment id>:<sku>",
 * or, when that exceeds an id's 64 bytes, the shipment id's start and a hash of both
 * (FNV-1a): one fixed id per shipment line, so a retry is a duplicate. */
void outbox_line_movement_id(const char *ship, const char *sku, char *out, size_t cap);
/* A fresh inbound notice id ("in-<ms hex>-<64 random bits hex>"). */
void outbox_notice_id(char *buf, size_t cap);
/* The notice id of the inbound notice a transfer `transfer_id` makes: "in-<transfer id>",
 * or when that exceeds an id's 64 bytes "in-" and a hash of it; one fixed id per transfer. */
void outbox_transfer_notice_id(char *buf, size_t cap, const char *transfer_id);

/*
 * Appends a pending row. `key` is the idempotency key sent upstream (unique), `target` names
 * the upstream ("wh:ES-MAD", "mp"), `entity` orders rows for the same thing (a SKU code),
 * `payload` a MessagePack map, `kind` an enum outbox_kind. Must run inside a transaction. Returns 0
 * and *id, or an error.
 */
int outbox_append(struct store *st, const char *key, const char *target, const char *entity,
                  int kind, const void *payload, size_t payload_len, int64_t *id);

/*
 * Whether outbox row `id` may be given up (outbox.discard), for every kind: only when its
 * request cannot have taken effect upstream. That is a row
 *   - `held`: the upstream refused it, a permanent refusal, so it was not applied (every
 *     upstream deduplicates by the key: one applied by an earlier attempt whose answer was lost
 *     is answered as a duplicate, never refused); except an outbound order that its warehouse's
 *     feed reports it holds (a refusal of a conflicting copy: the order is there all the same);
 *   - `pending` and never sent (sent_at NULL: no request for it ever left).
 * A row sent whose answer never came (a lost answer, a time-out, a 5xx, the daemon stopped
 * while it was in flight) may have been applied: giving it up would drop from the replica a
 * movement the warehouse made, or give an order to a second warehouse while the first ships
 * it. It is sent again until its upstream answers; then it is done, or held and discardable.
 * Returns 0 when it may go, TALLY_E_NOT_FOUND, or TALLY_E_CONFLICT with why and what to do
 * in `why`; TALLY_E_STORAGE on a read error. Run it inside the discarding transaction.
 */
int outbox_may_discard(struct store *st, int64_t id, char *why, size_t cap);

/*
 * An answered row's consequences, by its kind's rules, inside the caller's transaction (the
 * row itself is already marked done / held): `done` (applied or a duplicate) with the
 * upstream's `version` / `to_version`, else refused with `error`. `attempts` counts this
 * one. 0 or a TALLY_E_* code.
 */
int outbox_answered(struct tallyd *d, const char *target, int kind, const char *key,
                    const char *entity, bool done, const char *error, int64_t version,
                    int64_t to_version, int64_t attempts);
/* Whether a done answer (attempt `attempts`, `to_version` as outbox_answered) does nothing
 * but acknowledge its movement's one leg (stock_ack without a receiving side): such answers
 * of a batch may be acknowledged together (stock_ack_many) instead of by outbox_answered. */
bool outbox_done_acks_only(int kind, int64_t to_version, int64_t attempts);

/* 1 when a row of `kind` for `entity` must not be sent yet (an inbound notice whose
 * transfer's leg at the origin is not done: pending, held or given up), 0 when it may go, or a
 * TALLY_E_* code. The engine asks it of each row it would take (sync.c take_batch). */
int outbox_waits(struct store *st, int kind, const char *entity);

/* A discarded row's consequences (outbox.discard, after outbox_may_discard allowed it and
 * the row is marked discarded), inside the caller's transaction. 0 or a TALLY_E_* code. */
int outbox_discarded(struct tallyd *d, int kind, const char *key, const char *entity,
                     const char *who, const char *reason);

#endif
