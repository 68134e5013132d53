/*
 * The 4PX connector's pure parts (conn_fourpx.c), apart so tests can reach them: the router URL
 * with its signed query, the answer envelope, status mapping, row readers and request bodies.
 * Every fact here comes from the public SDKs named in tests/fixtures/fourpx/README.md.
 */
#ifndef TALLY_FPX_H
#define TALLY_FPX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "json.h"
#include "tally/protocol.h"

#define FPX_FORMAT "json"
#define FPX_VERSION "1.0.0" /* CommonArgs.version and FpxProperties.version */

/* The router URL: base + "/router/api/service?" + method, app_key, v, timestamp, format,
 * [access_token,] sign (signed over the body exactly as sent). 0, or -1 when it failed. */
int fpx_url(struct jbuf *q, const char *base, const char *method, const char *app_key,
            const char *access_token, int64_t ts_ms, const char *body, size_t body_len,
            const char *secret);

/* Reads an answer (HTTP status, body) as FopResp: SYNC_OK with *doc (free it) and *data (its
 * "data", may be NULL) when result is "1"; otherwise the outcome (upstream.h enum
 * sync_outcome) and a message naming what came back. */
int fpx_envelope(long http_status, const char *text, size_t len, cJSON **doc, const cJSON **data,
                 char *err, size_t errlen);

/* The rows of a page answer (FopPage.data), or of a bare array; NULL when neither. */
const cJSON *fpx_page_rows(const cJSON *data);

/* tally's word (whfeed.h) for a 4PX outbound status (OutboundList.status), NULL when unknown. */
const char *fpx_status_word(const char *code);
/* Whether a 4PX outbound status can still change (N, S, P, E). */
bool fpx_status_open(const char *code);

/* One stock row (vo/Inventory). 1 when it counts (a good-quality row of this warehouse), 0 when
 * it is another warehouse's or another quality, -1 with err when unreadable. on_hand =
 * available_stock + pending_stock (onway_stock is in transit, not there). */
int fpx_stock_row(const cJSON *row, const char *wh_code, char sku[TALLY_MAX_ID_LEN + 1],
                  int64_t *on_hand, char *err, size_t errlen);

struct fpx_ob_row {
    char ref_no[TALLY_MAX_ID_LEN + 1];
    char code[4];       /* the 4PX status */
    const char *status; /* tally's word */
    char carrier[64];
    char tracking[64];
    char reason[200];
    char remark[128];    /* remark: may hold a coordinator's mark (coord.h); "" when none */
    int64_t version;     /* update_time (ms), else complete_time, else create_time; 0 when none */
    int64_t create_time; /* ms, 0 when absent */
    bool open;
};

/* One outbound row (vo/Outbound). 1 when read, 0 when it is another warehouse's or carries no
 * ref_no (not one of tally's), -1 with err (naming the row) when unreadable. */
int fpx_outbound_row(const cJSON *row, const char *wh_code, struct fpx_ob_row *r, char *err,
                     size_t errlen);

/* The outbound list's windows. fu.wms.outbound.getlist filters by creation time only (at
 * most 30 days), so an order is read by the window that holds its creation until it is final.
 * An order open longer than FPX_RECENT_MS is "old": it no longer holds back every round's
 * window (checkpoint.version) but only the sweep's (checkpoint.modified_since), a round once
 * per FPX_SWEEP_MS; an old order open past FPX_AGE_WARN_MS is about to leave the 30-day window:
 * a person is told. */
#define FPX_WINDOW_MS (30LL * 86400 * 1000)
#define FPX_RECENT_MS (86400LL * 1000)
#define FPX_SWEEP_MS (3600LL * 1000)
#define FPX_AGE_WARN_MS (28LL * 86400 * 1000)
#define FPX_OVERLAP_MS (300LL * 1000)
#define FPX_NONE (INT64_MAX / 4)

struct fpx_ob_plan {
    int64_t start, end;
    bool sweep;   /* reads from the oldest open order */
    bool clamped; /* the window needed reached back past 30 days: orders may be out of sight */
};

/* A new round's window at `now` from the checkpoint (version: the oldest recent open order's
 * creation or the last round's end, 0 for none; old: the oldest old open order's creation, 0
 * for none), a sweep when `sweep_due`. */
void fpx_ob_plan(int64_t now, int64_t cp_version, int64_t cp_old, bool sweep_due,
                 struct fpx_ob_plan *p);

/* Notes one read row in *minopen / *minold (FPX_NONE when none yet). 1 when the row is an
 * open order older than FPX_AGE_WARN_MS (a person is told), -1 when it is a final one that
 * old (the warning can go), 0 otherwise. */
int fpx_ob_note(const struct fpx_ob_row *r, int64_t now, int64_t *minopen, int64_t *minold);

/* The checkpoint after a round's last page: version, and old (0 for none). */
void fpx_ob_checkpoint(int64_t minopen, int64_t minold, int64_t end, bool sweep, int64_t *version,
                       int64_t *old);

/* Request bodies from outbox payloads (MessagePack, fulfil.c / outbox.h contracts). Each
 * writes the reference (order id or notice id) into ref. 0, or -1 with err. An outbound
 * order's logistics_product_code is `product` (the warehouse's configured shipping_method)
 * when set, else the order's own service; neither is a refusal before anything is sent. */
int fpx_outbound_body(const void *payload, size_t len, const char *wh_code, const char *product,
                      struct jbuf *b, char ref[TALLY_MAX_ID_LEN + 1], char *err, size_t errlen);
int fpx_cancel_body(const void *payload, size_t len, struct jbuf *b, char ref[TALLY_MAX_ID_LEN + 1],
                    char *err, size_t errlen);
int fpx_inbound_body(const void *payload, size_t len, const char *wh_code, struct jbuf *b,
                     char ref[TALLY_MAX_ID_LEN + 1], char *err, size_t errlen);

/* The rows of an inbound list page (fu.wms.inbound.getlist) read back by a look-up: another
 * coordinator's mark in a row's remark (InboundConsignment.remark) raises the `coordinator`
 * exception (coord_seen_notice) at warehouse wh_code. 0, or the first TALLY_E_* code. */
struct tallyd;
int fpx_inbound_marks(struct tallyd *d, const char *wh_code, const cJSON *data);

#endif
