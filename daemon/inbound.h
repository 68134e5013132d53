/*
 * Inbound notices: goods announced to a third-party warehouse (Goodcang, 4PX) as coming in.
 * Such a warehouse keeps its own stock (DESIGN.md "Warehouse kinds"): the station cannot
 * record a receive there; it announces the goods, and the warehouse's feed shows them once
 * received. A notice is made by `tally inbound create` (inbound.create) or by a transfer into
 * such a warehouse (stock.c), recorded in inbound_notices + inbound_lines with one outbox row
 * (kind "inbound", key "in:<WH>:<id>", target "wh:<WH>", entity the id) in the same
 * transaction; its state follows that row (outbox.c): pending, sent, refused, discarded.
 */
#ifndef TALLY_INBOUND_H
#define TALLY_INBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "tally/protocol.h"

#define INBOUND_MAX_LINES 100

struct inbound_line {
    char sku[TALLY_MAX_ID_LEN + 1];
    int64_t qty;
};

/* A notice to record. Strings NUL-terminated; empty means absent (eta 0: none). */
struct inbound_req {
    char id[TALLY_MAX_ID_LEN + 1]; /* empty: tallyd makes one ("in-...") */
    char warehouse[TALLY_MAX_ID_LEN + 1];
    int nlines;
    struct inbound_line lines[INBOUND_MAX_LINES];
    int64_t eta; /* epoch seconds */
    char ref[TALLY_MAX_REF_LEN + 1];
    char from[TALLY_MAX_ID_LEN + 1]; /* origin warehouse code */
    char carrier[TALLY_MAX_ID_LEN + 1];
    char tracking_no[TALLY_MAX_ID_LEN + 1];
    char note[TALLY_MAX_TEXT_LEN + 1];
    char created_by[128];
    /* The coordinator's mark (coord.h) when this station coordinates, else empty: the
     * connector puts it where the warehouse keeps and echoes a text of the notice. */
    char station[80];
};

struct inbound_result {
    char id[TALLY_MAX_ID_LEN + 1];
    bool duplicate;
    char state[16];
    int64_t created_at;
    int64_t outbox_id;
};

/*
 * Records a notice and appends its outbox row, inside the caller's transaction. An id used
 * before for the same warehouse and lines answers the first (duplicate); for other content it
 * is TALLY_E_CONFLICT. Returns 0, or TALLY_E_INVALID_PARAMS / NOT_FOUND / CONFLICT / STORAGE
 * with a message in err; on an error the caller rolls back. Whether the warehouse takes
 * notices (CAP_INBOUND_NOTICE) is the caller's check (stock_inbound_allowed).
 */
int inbound_create_locked(struct store *st, const struct inbound_req *req,
                          struct inbound_result *res, char *err, size_t errlen);

/* The MessagePack payload of a notice (the contract with the connectors, upstream.h):
 * {"id","warehouse","lines":[{"sku","qty"}], optional "ref","from","eta","carrier",
 * "tracking_no","note","station"}. Returns 0 or TALLY_E_NOMEM; the caller destroys sb. */
int inbound_payload(const struct inbound_req *req, void *sb);

#endif
