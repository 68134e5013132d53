/*
 * Connector for a third-party warehouse run on the 4PX open platform's fulfilment API ("FOP",
 * fu.wms.*; UPSTREAM.md §3). Facts from two public SDKs (tests/fixtures/fourpx/README.md):
 * EalenXie/sdk-all fop-sdk and AkaneMurakawa/tool fpx.
 *
 * Every call is POST {url}/router/api/service?method&app_key&v&timestamp&format[&access_token]
 * &sign with a JSON body; sign = md5("app_key"K"format"F"method"M"timestamp"T"v"V + body +
 * secret), lower-case hex (fpx_sign.c); timestamp in epoch ms. Answers are FopResp: {"result":
 * "1"|"0", "msg", "errors": [{"error_code", "error_msg"}], "data"}; pages are FopPage: {"page_no",
 * "page_size", "total", "data": [...]}.
 *
 * Streams:
 * - inventory: a full read pages fu.wms.inventory.get by warehouse_code (the first round, every
 *   reconciliation round, and when the log checkpoint is older than the log's 30-day window);
 *   incremental rounds page fu.wms.inventory.getlog over [checkpoint - 5 min, now] and read the
 *   SKUs it names with fu.wms.inventory.get lstsku=[...] (at most 50 per page: the limit is
 *   100). A full read's pages are read the same way: each page's SKUs again by lstsku, so a
 *   SKU's rows (one per batch and quality) count together even when a page boundary splits
 *   them (the cost: two calls per page). The log's own figures (io_qty, balance_stock) are not
 * used: the sources do not say which stock balance_stock counts, so the current figures are read
 * instead. on_hand = available_stock + pending_stock of good-quality ("G") rows (DESIGN: sellable +
 * reserved; onway_stock is in transit). A SKU asked for by lstsku and absent from the answer has 0.
 *   version: the read time in ms (kept increasing per warehouse), checkpoint.version = the end
 *   of the last log window read (ms).
 * - outbound: fu.wms.outbound.getlist has no "changed since" filter, only create_time and
 *   complete_time windows (at most 30 days). Each round reads the orders created in
 *   [checkpoint - 5 min, now], where checkpoint.version is the creation time of the oldest
 *   order still open and created within the last day (or the round's end when none was): every
 *   recent open order is read each round until it is final. Orders open for longer ("old",
 *   checkpoint.modified_since = the oldest one's creation) are read by a sweep, a round once an
 *   hour (and the first after a start) reading from the oldest: a stuck order costs one wide
 *   round an hour, not every round (fpx_ob_plan). An order open for 28 days raises a warehouse
 *   exception (it is about to leave the 30-day window; cleared when it is seen final); a window
 *   that had to be cut at 30 days (tally off that long, or an order open past it) raises one
 *   for the warehouse: never silently lost. Statuses (OutboundList.status): N draft -> accepted, S
 * being shipped out -> picking, P picked (off the shelf) -> packed, C shipped out -> shipped, X
 *   cancelled -> cancelled, D deleted -> cancelled, E exception -> exception (reason from
 *   sub_status G/B/R/S and error_message_origin). Unknown status: a logged per-row error.
 *   A row's remark may hold a coordinator's mark (sent in the create's remark): whfeed_mark.
 *   Tracking: shipping_no (the carrier's number), else 4px_tracking_no; carrier: carrier_code,
 *   else logistics_product_code. version: update_time, else complete_time, else create_time.
 *
 * Push, one row per call: outbound (fu.wms.outbound.create, ref_no = the order id, consignment
 * type S, stock quality G, logistics_product_code = the warehouse's shipping_method, else the
 * order's service), outbound_cancel
 * (fu.wms.outbound.cancel by ref_no, cancel_type OT) and inbound (fu.wms.inbound.create, ref_no
 * = the notice id, to_warehouse_code = from_warehouse_code = this warehouse: the goods come by
 * the seller's own transport). No call has an idempotency key: when push_item.maybe_sent, the
 * reference is looked up first (fu.wms.outbound.getlist / fu.wms.inbound.getlist by ref_no)
 * and found = done. A refused create is looked up too (whether 4PX refuses or accepts a
 * repeated ref_no the sources do not say: both readings end in one order). A refused cancel
 * whose order is X or D (or absent) is done; C is held ("already shipped").
 *
 * Classification: no answer, 5xx, 429 and an answer that is not JSON are transient; 401/403,
 * and a refusal whose message speaks of the signature, the app key or the access token, are
 * SYNC_AUTH (the sources document no error codes, so the message is what there is); any other
 * refusal (result "0") is permanent with 4PX's message; JSON of another kind (no "result": a
 * tally Warehouse API error, a proxy's page) is a permanent, named error.
 *
 * Not verifiable without a live account: error codes; whether FopPage.total counts rows or
 * pages (pages are read until a short page, never by total); whether a repeated ref_no is
 * refused; the `v` value (1.0.0 in both SDKs; some public clients send 1.0); whether an
 * inbound notice without supplier_address / transport_type is accepted (a refusal is held
 * with 4PX's message); whether a SKU that leaves the warehouse entirely is still listed (a
 * log round reads it by lstsku and sets 0 when absent; a full read cannot see it).
 *
 * Drift: each read has its own version (the read time), so whfeed_stock's equal-version check
 * never matches here. A reconciliation page therefore also reads the stock log from the last
 * log round's window (the stored inventory checkpoint, less 5 min) to now (plus 5 min), after
 * the figures: a SKU the log does not name has not moved since the replica's figure was read,
 * so a different figure is drift (whfeed_stock_unlogged: counted, repaired, a person told);
 * a SKU the log names is a change. More than 20 log pages: repaired, not counted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "catalog.h"
#include "codec.h"
#include "coord.h"
#include "exceptions.h"
#include "fpx.h"
#include "fpx_sign.h"
#include "json.h"
#include "log.h"
#include "outbox.h"
#include "secret.h"
#include "tally/protocol.h"
#include "upstream.h"
#include "whfeed.h"

#define PAGE_SIZE 50        /* rows asked per page (the SDKs' default) */
#define LOG_PAGE_SIZE 50    /* log rows per page: at most 50 SKUs to read by lstsku (<= 100) */
#define LSTSKU_PAGE 100     /* rows per page of an lstsku read */
#define LSTSKU_MAX_PAGES 20 /* batches of 50 SKUs: 2,000 rows is plenty */
#define OB_PAGE_SIZE 100    /* outbound rows per page (at most 500) */
#define OVERLAP_MS FPX_OVERLAP_MS
#define WINDOW_MS FPX_WINDOW_MS /* the 30-day window of getlog and getlist */
#define MAX_PAGES 100000

enum { STREAM_INVENTORY, STREAM_OUTBOUND };
static const char *const fpx_streams[] = {"inventory", "outbound"};

enum op {
    OP_INV_FULL,   /* fu.wms.inventory.get by warehouse */
    OP_INV_LOG,    /* fu.wms.inventory.getlog */
    OP_INV_SKUS,   /* fu.wms.inventory.get lstsku (after a log page) */
    OP_INV_DLOG,   /* fu.wms.inventory.getlog since the last log round (reconciliation) */
    OP_OB_LIST,    /* fu.wms.outbound.getlist by window */
    OP_OB_LOOKUP,  /* fu.wms.outbound.getlist by ref_no, before a create */
    OP_OB_CREATE,  /* fu.wms.outbound.create */
    OP_OB_VERIFY,  /* fu.wms.outbound.getlist by ref_no, after a refused create */
    OP_OB_CANCEL,  /* fu.wms.outbound.cancel */
    OP_OB_CVERIFY, /* fu.wms.outbound.getlist by ref_no, after a refused cancel */
    OP_IN_LOOKUP,  /* fu.wms.inbound.getlist by ref_no, before a create */
    OP_IN_CREATE,  /* fu.wms.inbound.create */
    OP_IN_VERIFY,  /* fu.wms.inbound.getlist by ref_no, after a refused create */
};

static const char *op_method(int op)
{
    switch (op) {
    case OP_INV_FULL:
    case OP_INV_SKUS:
        return "fu.wms.inventory.get";
    case OP_INV_LOG:
    case OP_INV_DLOG:
        return "fu.wms.inventory.getlog";
    case OP_OB_CREATE:
        return "fu.wms.outbound.create";
    case OP_OB_CANCEL:
        return "fu.wms.outbound.cancel";
    case OP_IN_LOOKUP:
    case OP_IN_VERIFY:
        return "fu.wms.inbound.getlist";
    case OP_IN_CREATE:
        return "fu.wms.inbound.create";
    default:
        return "fu.wms.outbound.getlist";
    }
}

struct fpx_call;

struct fpx {
    char secret[1024];       /* app secret: signing key */
    char access_token[1024]; /* optional */
    int64_t last_version;    /* the last stock version handed out (ms) */
    int64_t next_sweep_ms;   /* when the outbound stream next reads from its oldest open order */
    bool seeded;             /* last_version was raised to the replica's newest */
    struct call_link *calls; /* in flight, so a stop can release them */
};

struct fpx_call {
    struct http_req req;
    struct upstream *u;
    int stream;
    struct push_batch *batch;
    int op;
    char *url;
    struct jbuf body;
    struct pull_page page;
    cJSON *doc; /* the answer being applied */
    /* inventory */
    bool reconcile;
    int64_t page_no, start, end, minopen, minold, read_ms;
    bool sweep, clamped;
    char cursor_next[256];
    bool last_page;
    char (*skus)[TALLY_MAX_ID_LEN + 1]; /* SKUs named by a log page */
    int nskus;
    cJSON *sku_rows; /* array: rows of the lstsku read */
    int64_t sku_page;
    /* reconciliation: the SKUs the log names since the last log round's window (log_from) */
    int64_t log_from, dlog_page;
    bool drift_ok;
    char (*logged)[TALLY_MAX_ID_LEN + 1];
    int nlogged;
    /* push */
    char ref[TALLY_MAX_ID_LEN + 1];
    char refusal[256];
    struct call_link link; /* in the connector's list while in flight */
};

static const char *wh_remote(const struct upstream *u)
{
    return u->wh->remote_code[0] ? u->wh->remote_code : u->code;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- pure parts (fpx.h) ---- */

int fpx_url(struct jbuf *q, const char *base, const char *method, const char *app_key,
            const char *access_token, int64_t ts_ms, const char *body, size_t body_len,
            const char *secret)
{
    char ts[24], sign[FPX_SIGN_LEN];
    snprintf(ts, sizeof ts, "%" PRId64, ts_ms);
    if (fpx_sign(app_key, FPX_FORMAT, method, ts, FPX_VERSION, body, body_len, secret, sign) != 0)
        return -1;
    jb_lit(q, base);
    jb_lit(q, "/router/api/service?method=");
    jb_form(q, method);
    jb_lit(q, "&app_key=");
    jb_form(q, app_key);
    jb_lit(q, "&v=" FPX_VERSION "&timestamp=");
    jb_lit(q, ts);
    jb_lit(q, "&format=" FPX_FORMAT);
    if (access_token && access_token[0]) {
        jb_lit(q, "&access_token=");
        jb_form(q, access_token);
    }
    jb_lit(q, "&sign=");
    jb_lit(q, sign);
    return q->failed ? -1 : 0;
}

/* Whether a refusal's text speaks of the credentials (no error codes are documented). */
static bool about_credentials(const char *s)
{
    /* whole phrases: "consignment" holds "sign", so a bare "sign" would not do */
    static const char *const words[] = {
        "signature", "sign error", "sign invalid", "invalid sign", "sign mismatch", "app_key",
        "appkey",    "app key",    "access_token", "access token", "签名"};
    char low[512];
    size_t n = 0;
    for (; s[n] && n < sizeof low - 1; n++)
        low[n] = (char)((s[n] >= 'A' && s[n] <= 'Z') ? s[n] + 32 : s[n]);
    low[n] = 0;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strstr(low, words[i]))
            return true;
    return false;
}

int fpx_envelope(long http_status, const char *text, size_t len, cJSON **doc, const cJSON **data,
                 char *err, size_t errlen)
{
    *doc = NULL;
    *data = NULL;
    if (http_status == 401 || http_status == 403) {
        snprintf(err, errlen, "HTTP %ld: credentials refused", http_status);
        return SYNC_AUTH;
    }
    if (http_status == 429 || http_status == 408 || http_status >= 500) {
        snprintf(err, errlen, "HTTP %ld", http_status);
        return SYNC_TRANSIENT;
    }
    cJSON *d = json_parse(text ? text : "", len);
    if (!d) {
        char head[24] = "";
        size_t k = 0;
        for (size_t i = 0; text && i < len && k < sizeof head - 1; i++)
            if (text[i] >= 0x20 && text[i] < 0x7f)
                head[k++] = text[i];
        head[k] = 0;
        snprintf(err, errlen, "HTTP %ld: answer is not JSON (%zu bytes: \"%s\")", http_status, len,
                 head);
        return http_status >= 400 ? SYNC_PERMANENT : SYNC_TRANSIENT;
    }
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(d, "result");
    if (!cJSON_IsObject(d) || !res) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(d, "error");
        const char *m = cJSON_IsObject(e) ? json_str(e, "message") : NULL;
        snprintf(err, errlen, "HTTP %ld: not a 4PX answer (no \"result\")%s%.150s", http_status,
                 m ? ": " : "", m ? m : "");
        cJSON_Delete(d);
        return SYNC_PERMANENT;
    }
    bool ok = (cJSON_IsString(res) && !strcmp(res->valuestring, "1")) ||
              (cJSON_IsNumber(res) && res->valuedouble == 1);
    if (ok && http_status >= 200 && http_status < 300) {
        *doc = d;
        *data = cJSON_GetObjectItemCaseSensitive(d, "data");
        return SYNC_OK;
    }
    /* A refusal: msg and every error_msg / error_code. */
    char text_all[512];
    size_t n = 0;
    const char *msg = json_str(d, "msg");
    n += (size_t)snprintf(text_all, sizeof text_all, "%s", msg ? msg : "");
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(d, "errors"), *e;
    if (!cJSON_IsArray(errs))
        errs = NULL;
    cJSON_ArrayForEach(e, errs)
    {
        const char *em = json_str(e, "error_msg");
        const cJSON *ec = cJSON_GetObjectItemCaseSensitive(e, "error_code");
        char code[40] = "";
        if (cJSON_IsString(ec))
            snprintf(code, sizeof code, "%.38s", ec->valuestring);
        else if (cJSON_IsNumber(ec))
            snprintf(code, sizeof code, "%.0f", ec->valuedouble);
        if (em && msg && !strcmp(em, msg))
            em = NULL; /* the same words as msg: only the code */
        if (n < sizeof text_all)
            n += (size_t)snprintf(text_all + n, sizeof text_all - n, "%s%s%s%s",
                                  n && (em || code[0]) ? (em ? "; " : " ") : "", em ? em : "",
                                  em && code[0] ? " " : "", code[0] ? code : "");
    }
    snprintf(err, errlen, "refused by 4PX: %.230s", text_all[0] ? text_all : "no reason given");
    int out = about_credentials(text_all) ? SYNC_AUTH : SYNC_PERMANENT;
    cJSON_Delete(d);
    return out;
}

const cJSON *fpx_page_rows(const cJSON *data)
{
    if (cJSON_IsArray(data))
        return data;
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(data, "data");
    return cJSON_IsArray(rows) ? rows : NULL;
}

static const struct {
    const char *code, *word;
    bool open;
} status_map[] = {
    {"N", "accepted", true},  {"S", "picking", true},    {"P", "packed", true},
    {"C", "shipped", false},  {"X", "cancelled", false}, {"D", "cancelled", false},
    {"E", "exception", true},
};

const char *fpx_status_word(const char *code)
{
    for (size_t i = 0; code && i < sizeof status_map / sizeof *status_map; i++)
        if (!strcmp(code, status_map[i].code))
            return status_map[i].word;
    return NULL;
}

bool fpx_status_open(const char *code)
{
    for (size_t i = 0; code && i < sizeof status_map / sizeof *status_map; i++)
        if (!strcmp(code, status_map[i].code))
            return status_map[i].open;
    return false;
}

/* A string field that must be an id (printable ASCII, 1..64 bytes). */
static bool read_id(const cJSON *row, const char *key, char out[TALLY_MAX_ID_LEN + 1])
{
    const char *s = json_str(row, key);
    if (!s || !mp_id_ok(s, strlen(s)))
        return false;
    snprintf(out, TALLY_MAX_ID_LEN + 1, "%s", s);
    return true;
}

/* A printable text field, copied (truncated) into out; "" when absent or not a string. */
static void read_text(const cJSON *row, const char *key, char *out, size_t outlen)
{
    const char *s = json_str(row, key);
    size_t k = 0;
    for (size_t i = 0; s && s[i] && k < outlen - 1; i++)
        if ((unsigned char)s[i] >= 0x20 && s[i] != 0x7f)
            out[k++] = s[i];
    out[k] = 0;
}

int fpx_stock_row(const cJSON *row, const char *wh_code, char sku[TALLY_MAX_ID_LEN + 1],
                  int64_t *on_hand, char *err, size_t errlen)
{
    if (!cJSON_IsObject(row)) {
        snprintf(err, errlen, "stock row is not an object");
        return -1;
    }
    if (!read_id(row, "sku_code", sku)) {
        snprintf(err, errlen, "stock row without a readable sku_code");
        return -1;
    }
    const char *wc = json_str(row, "warehouse_code");
    if (wc && wh_code && strcmp(wc, wh_code) != 0)
        return 0;
    const char *q = json_str(row, "stock_quality");
    if (q && q[0] && strcmp(q, "G") != 0)
        return 0;
    int64_t avail, pending = 0;
    if (json_int(row, "available_stock", 0, TALLY_MAX_QTY, &avail) != 0) {
        snprintf(err, errlen, "SKU %s: available_stock missing or out of range", sku);
        return -1;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(row, "pending_stock");
    if (p && !cJSON_IsNull(p) && json_int(row, "pending_stock", 0, TALLY_MAX_QTY, &pending) != 0) {
        snprintf(err, errlen, "SKU %s: pending_stock out of range", sku);
        return -1;
    }
    *on_hand = avail + pending;
    return 1;
}

static const char *sub_status_text(const char *s)
{
    if (!s)
        return NULL;
    if (!strcmp(s, "G"))
        return "in arrears at 4PX (sub-status G)";
    if (!strcmp(s, "B"))
        return "billing exception at 4PX (sub-status B)";
    if (!strcmp(s, "R"))
        return "failed 4PX's audit (sub-status R)";
    if (!strcmp(s, "S"))
        return "out of stock at 4PX (sub-status S)";
    return NULL;
}

int fpx_outbound_row(const cJSON *row, const char *wh_code, struct fpx_ob_row *r, char *err,
                     size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (!cJSON_IsObject(row)) {
        snprintf(err, errlen, "outbound row is not an object");
        return -1;
    }
    const char *ref = json_str(row, "ref_no");
    if (!ref || !ref[0])
        return 0; /* not created by a reference: not one of tally's */
    read_text(row, "remark", r->remark, sizeof r->remark);
    if (!read_id(row, "ref_no", r->ref_no)) {
        snprintf(err, errlen, "outbound row with an unreadable ref_no");
        return -1;
    }
    const char *wc = json_str(row, "from_warehouse_code");
    if (wc && wh_code && strcmp(wc, wh_code) != 0)
        return 0;
    const char *st = json_str(row, "status");
    r->status = fpx_status_word(st);
    if (!r->status) {
        snprintf(err, errlen, "outbound order %s: unknown status %.20s", r->ref_no,
                 st ? st : "(none)");
        return -1;
    }
    snprintf(r->code, sizeof r->code, "%s", st);
    r->open = fpx_status_open(st);
    int64_t t = 0;
    if (json_int(row, "create_time", 0, INT64_MAX / 4, &t) == 0)
        r->create_time = t;
    if (json_int(row, "update_time", 0, INT64_MAX / 4, &t) == 0 ||
        json_int(row, "complete_time", 0, INT64_MAX / 4, &t) == 0)
        r->version = t;
    else
        r->version = r->create_time;
    if (!strcmp(st, "C")) {
        read_text(row, "shipping_no", r->tracking, sizeof r->tracking);
        if (!r->tracking[0])
            read_text(row, "4px_tracking_no", r->tracking, sizeof r->tracking);
        read_text(row, "carrier_code", r->carrier, sizeof r->carrier);
        if (!r->carrier[0])
            read_text(row, "logistics_product_code", r->carrier, sizeof r->carrier);
        if (!r->tracking[0]) {
            snprintf(err, errlen, "outbound order %s: shipped (C) without a tracking number",
                     r->ref_no);
            return -1;
        }
        if (!r->carrier[0])
            snprintf(r->carrier, sizeof r->carrier, "4PX");
    } else if (!strcmp(st, "E")) {
        char origin[160];
        read_text(row, "error_message_origin", origin, sizeof origin);
        const char *sub = sub_status_text(json_str(row, "sub_status"));
        snprintf(r->reason, sizeof r->reason, "%.60s%s%.130s", sub ? sub : "exception at 4PX",
                 origin[0] ? ": " : "", origin);
    } else if (!strcmp(st, "D")) {
        snprintf(r->reason, sizeof r->reason, "deleted at 4PX (status D)");
    } else if (!strcmp(st, "X")) {
        snprintf(r->reason, sizeof r->reason, "cancelled at 4PX (status X)");
    }
    return 1;
}

void fpx_ob_plan(int64_t now, int64_t cp_version, int64_t cp_old, bool sweep_due,
                 struct fpx_ob_plan *p)
{
    int64_t floor = now - FPX_WINDOW_MS + 60000; /* the list's limit, with a minute to spare */
    memset(p, 0, sizeof *p);
    p->end = now;
    p->sweep = sweep_due && cp_old > 0;
    int64_t from = cp_version > 0 ? cp_version : floor;
    if (p->sweep && cp_old < from)
        from = cp_old;
    p->start = from - (cp_version > 0 ? FPX_OVERLAP_MS : 0);
    if (p->start < floor) {
        p->clamped = cp_version > 0 || cp_old > 0; /* a first round reads what there is */
        p->start = floor;
    }
}

int fpx_ob_note(const struct fpx_ob_row *r, int64_t now, int64_t *minopen, int64_t *minold)
{
    if (r->create_time <= 0)
        return 0;
    bool aged = r->create_time < now - FPX_AGE_WARN_MS;
    if (!r->open)
        return aged ? -1 : 0;
    int64_t *m = r->create_time < now - FPX_RECENT_MS ? minold : minopen;
    if (r->create_time < *m)
        *m = r->create_time;
    return aged ? 1 : 0;
}

void fpx_ob_checkpoint(int64_t minopen, int64_t minold, int64_t end, bool sweep, int64_t *version,
                       int64_t *old)
{
    *version = minopen < end ? minopen : end;
    if (sweep)
        *old = minold < FPX_NONE ? minold : 0; /* the sweep saw every old open order */
    else if (minold < FPX_NONE && (*old <= 0 || minold < *old))
        *old = minold; /* a recent one grew old in this round */
}

/* A MessagePack string as a NUL-terminated copy (truncated to outlen - 1); "" when absent. */
static void mp_text(const msgpack_object *o, char *out, size_t outlen)
{
    out[0] = 0;
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return;
    size_t n = o->via.str.size < outlen - 1 ? o->via.str.size : outlen - 1;
    /* cut short: at a UTF-8 character's boundary (a note cut mid-character, then more text
     * after it in a remark, would not be UTF-8) */
    while (n > 0 && n < o->via.str.size && ((unsigned char)o->via.str.ptr[n] & 0xC0) == 0x80)
        n--;
    memcpy(out, o->via.str.ptr, n);
    out[n] = 0;
}

static int unpack_map(const void *payload, size_t len, msgpack_unpacked *m)
{
    size_t off = 0;
    msgpack_unpacked_init(m);
    if (msgpack_unpack_next(m, payload, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        m->data.type != MSGPACK_OBJECT_MAP)
        return -1;
    return 0;
}

static int read_ref(const msgpack_object *map, char ref[TALLY_MAX_ID_LEN + 1], char *err,
                    size_t errlen)
{
    const msgpack_object *id = mp_map_get(map, "id");
    if (!id || id->type != MSGPACK_OBJECT_STR || !mp_id_ok(id->via.str.ptr, id->via.str.size)) {
        snprintf(err, errlen, "payload without a readable id");
        return -1;
    }
    mp_text(id, ref, TALLY_MAX_ID_LEN + 1);
    return 0;
}

/* Writes the lines [{"sku","qty"}] as 4PX SKU objects named `qty_key`; -1 when unreadable. */
static int write_lines(const msgpack_object *map, struct jbuf *b, const char *qty_key,
                       bool outbound, char *err, size_t errlen)
{
    const msgpack_object *lines = mp_map_get(map, "lines");
    if (!lines || lines->type != MSGPACK_OBJECT_ARRAY || lines->via.array.size < 1 ||
        lines->via.array.size > 100) {
        snprintf(err, errlen, "payload needs 1 to 100 lines (4PX takes at most 100 SKUs)");
        return -1;
    }
    jb_lit(b, "[");
    for (uint32_t i = 0; i < lines->via.array.size; i++) {
        const msgpack_object *l = &lines->via.array.ptr[i];
        const msgpack_object *sku = l->type == MSGPACK_OBJECT_MAP ? mp_map_get(l, "sku") : NULL;
        const msgpack_object *qty = l->type == MSGPACK_OBJECT_MAP ? mp_map_get(l, "qty") : NULL;
        if (!sku || sku->type != MSGPACK_OBJECT_STR ||
            !mp_id_ok(sku->via.str.ptr, sku->via.str.size) || !qty ||
            qty->type != MSGPACK_OBJECT_POSITIVE_INTEGER || qty->via.u64 < 1 ||
            qty->via.u64 > 1000000000ULL) {
            snprintf(err, errlen, "line %u: unreadable sku or qty", i + 1);
            return -1;
        }
        char code[TALLY_MAX_ID_LEN + 1];
        mp_text(sku, code, sizeof code);
        jb_lit(b, i ? ",{\"sku_code\":" : "{\"sku_code\":");
        jb_str(b, code);
        jb_lit(b, ",\"");
        jb_lit(b, qty_key);
        jb_lit(b, "\":");
        jb_int(b, (int64_t)qty->via.u64);
        if (outbound)
            jb_lit(b, ",\"stock_quality\":\"G\"");
        else
            jb_lit(b, ",\"box_no\":\"1\"");
        jb_lit(b, "}");
    }
    jb_lit(b, "]");
    return 0;
}

/* "key":"value" for a non-empty value of the payload map. */
static void kv_opt(struct jbuf *b, const char *key, const msgpack_object *v, size_t max)
{
    char tmp[TALLY_MAX_TEXT_LEN + 1];
    mp_text(v, tmp, max + 1 < sizeof tmp ? max + 1 : sizeof tmp);
    if (!tmp[0])
        return;
    jb_lit(b, ",");
    jb_str(b, key);
    jb_lit(b, ":");
    jb_str(b, tmp);
}

int fpx_outbound_body(const void *payload, size_t len, const char *wh_code, const char *product,
                      struct jbuf *b, char ref[TALLY_MAX_ID_LEN + 1], char *err, size_t errlen)
{
    msgpack_unpacked m;
    int r = -1;
    if (unpack_map(payload, len, &m) != 0) {
        snprintf(err, errlen, "unreadable payload");
        goto out;
    }
    if (read_ref(&m.data, ref, err, errlen) != 0)
        goto out;
    const msgpack_object *to = mp_map_get(&m.data, "ship_to");
    if (!to || to->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "payload without ship_to");
        goto out;
    }
    char country[8], name[256], street[TALLY_MAX_TEXT_LEN + 1], phone[64], service[128];
    mp_text(mp_map_get(to, "country"), country, sizeof country);
    mp_text(mp_map_get(to, "name"), name, sizeof name);
    mp_text(mp_map_get(to, "address"), street, sizeof street);
    mp_text(mp_map_get(to, "phone"), phone, sizeof phone);
    mp_text(mp_map_get(&m.data, "service"), service, sizeof service);
    /* country, street, first_name and phone are 必填 (required) in ConsigneeInfo. */
    if (strlen(country) != 2 || !street[0] || !name[0] || !phone[0]) {
        snprintf(err, errlen, "order %s: the ship-to lacks %s (4PX requires it)", ref,
                 strlen(country) != 2 ? "a country"
                 : !street[0]         ? "a street"
                 : !name[0]           ? "a name"
                                      : "a phone");
        goto out;
    }
    jb_lit(b, "{\"ref_no\":");
    jb_str(b, ref);
    jb_lit(b, ",\"from_warehouse_code\":");
    jb_str(b, wh_code);
    jb_lit(b, ",\"consignment_type\":\"S\"");
    /* The coordinator's mark (coord.h) in remark: OutboundCreate's remark, which vo/Outbound
     * lists among a row's fields. The sources give neither its length limit nor say that the
     * row's remark is the create's: a row without the mark is read as unmarked. */
    char mark[80];
    mp_text(mp_map_get(&m.data, "station"), mark, sizeof mark);
    if (mark[0]) {
        char remark[100];
        snprintf(remark, sizeof remark, "tally coordinator %s", mark);
        jb_lit(b, ",\"remark\":");
        jb_str(b, remark);
    }
    /* LogisticsServiceInfo.logistics_product_code is one of 4PX's product codes (its base
     * data lists them; the SDK does not mark it required, the simulator reads it so): the
     * configured product wins over the marketplace's service name, which 4PX does not know. */
    const char *code = product && product[0] ? product : service;
    if (!code[0]) {
        snprintf(err, errlen,
                 "order %s has no service and the warehouse no shipping_method: set"
                 " shipping_method (a 4PX logistics product code) in its [warehouse] section",
                 ref);
        goto out;
    }
    jb_lit(b, ",\"logistics_service_info\":{\"logistics_product_code\":");
    jb_str(b, code);
    jb_lit(b, "},\"oconsignment_desc\":{\"country\":");
    jb_str(b, country);
    kv_opt(b, "city", mp_map_get(to, "city"), 128);
    kv_opt(b, "post_code", mp_map_get(to, "postcode"), 32);
    jb_lit(b, ",\"street\":");
    jb_str(b, street);
    jb_lit(b, ",\"first_name\":");
    jb_str(b, name);
    jb_lit(b, ",\"phone\":");
    jb_str(b, phone);
    jb_lit(b, "},\"oconsignment_sku\":");
    if (write_lines(&m.data, b, "qty", true, err, errlen) != 0)
        goto out;
    jb_lit(b, "}");
    r = b->failed ? -1 : 0;
    if (r)
        snprintf(err, errlen, "out of memory");
out:
    msgpack_unpacked_destroy(&m);
    return r;
}

int fpx_cancel_body(const void *payload, size_t len, struct jbuf *b, char ref[TALLY_MAX_ID_LEN + 1],
                    char *err, size_t errlen)
{
    msgpack_unpacked m;
    int r = -1;
    if (unpack_map(payload, len, &m) != 0) {
        snprintf(err, errlen, "unreadable payload");
        goto out;
    }
    if (read_ref(&m.data, ref, err, errlen) != 0)
        goto out;
    jb_lit(b, "{\"ref_no\":");
    jb_str(b, ref);
    jb_lit(b, ",\"cancel_type\":\"OT\",\"cancel_remark\":\"cancelled by the seller\"}");
    r = b->failed ? -1 : 0;
out:
    msgpack_unpacked_destroy(&m);
    return r;
}

#define FPX_REMARK_MAX 500 /* an inbound notice's remark, at most (the sources give none) */

int fpx_inbound_body(const void *payload, size_t len, const char *wh_code, struct jbuf *b,
                     char ref[TALLY_MAX_ID_LEN + 1], char *err, size_t errlen)
{
    msgpack_unpacked m;
    int r = -1;
    if (unpack_map(payload, len, &m) != 0) {
        snprintf(err, errlen, "unreadable payload");
        goto out;
    }
    if (read_ref(&m.data, ref, err, errlen) != 0)
        goto out;
    jb_lit(b, "{\"ref_no\":");
    jb_str(b, ref);
    jb_lit(b, ",\"from_warehouse_code\":");
    jb_str(b, wh_code);
    jb_lit(b, ",\"to_warehouse_code\":");
    jb_str(b, wh_code);
    kv_opt(b, "tracking_no", mp_map_get(&m.data, "tracking_no"), 64);
    char note[600] = "", tmp[300];
    mp_text(mp_map_get(&m.data, "note"), tmp, sizeof tmp);
    if (tmp[0])
        snprintf(note, sizeof note, "%s", tmp);
    mp_text(mp_map_get(&m.data, "ref"), tmp, 80);
    if (tmp[0]) {
        size_t n = strlen(note);
        snprintf(note + n, sizeof note - n, "%stransfer %s", n ? "; " : "", tmp);
    }
    mp_text(mp_map_get(&m.data, "from"), tmp, 80);
    if (tmp[0]) {
        size_t n = strlen(note);
        snprintf(note + n, sizeof note - n, "%sfrom %s", n ? "; " : "", tmp);
    }
    /* Last, never cut, the coordinator's mark (coord.h): InboundConsignment's remark ("the
     * remark the customer wrote") echoes it in the inbound list, where coord_seen_notice
     * reads it. The remark is kept within 500 characters (no limit is in the sources; the
     * simulator's, as for outbound orders). */
    char mark[80], tail[100] = "";
    mp_text(mp_map_get(&m.data, "station"), mark, sizeof mark);
    if (mark[0])
        snprintf(tail, sizeof tail, "%stally coordinator %s", note[0] ? "; " : "", mark);
    size_t cap = FPX_REMARK_MAX - strlen(tail);
    if (strlen(note) > cap) {
        while (cap > 0 && ((unsigned char)note[cap] & 0xC0) == 0x80)
            cap--; /* not inside a UTF-8 sequence */
        note[cap] = 0;
    }
    snprintf(note + strlen(note), sizeof note - strlen(note), "%s", tail);
    if (note[0]) {
        jb_lit(b, ",\"remark\":");
        jb_str(b, note);
    }
    jb_lit(b, ",\"iconsignment_sku\":");
    if (write_lines(&m.data, b, "plan_qty", false, err, errlen) != 0)
        goto out;
    jb_lit(b, "}");
    r = b->failed ? -1 : 0;
    if (r)
        snprintf(err, errlen, "out of memory");
out:
    msgpack_unpacked_destroy(&m);
    return r;
}

/* ---- the connector ---- */

static void call_free(struct fpx_call *c);

static int fpx_init(struct upstream *u, char *err, size_t errlen)
{
    struct fpx *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!u->wh->app_key[0]) {
        snprintf(err, errlen, "warehouse %s (kind fourpx) needs app_key", u->code);
        free(f);
        return -1;
    }
    if (secret_read(u->wh->app_secret_file, f->secret, sizeof f->secret, err, errlen) != 0 ||
        (u->wh->access_token_file[0] && secret_read(u->wh->access_token_file, f->access_token,
                                                    sizeof f->access_token, err, errlen) != 0)) {
        explicit_bzero(f, sizeof *f);
        free(f);
        return -1;
    }
    u->conn = f;
    return 0;
}

static int fpx_reload(struct upstream *u, char *err, size_t errlen)
{
    struct fpx *f = u->conn;
    char secret[sizeof f->secret], token[sizeof f->access_token] = "";
    if (!f || secret_read(u->wh->app_secret_file, secret, sizeof secret, err, errlen) != 0)
        return -1;
    if (u->wh->access_token_file[0] &&
        secret_read(u->wh->access_token_file, token, sizeof token, err, errlen) != 0) {
        explicit_bzero(secret, sizeof secret);
        return -1;
    }
    memcpy(f->secret, secret, sizeof secret);
    memcpy(f->access_token, token, sizeof token);
    explicit_bzero(secret, sizeof secret);
    explicit_bzero(token, sizeof token);
    return 0;
}

static void fpx_free(struct upstream *u)
{
    struct fpx *f = u->conn;
    if (!f)
        return;
    while (f->calls) {
        struct fpx_call *c = CALL_OWNER(f->calls, struct fpx_call);
        struct push_batch *b = c->batch;
        call_free(c);
        if (b)
            sync_push_done(b);
    }
    explicit_bzero(f, sizeof *f);
    free(f);
    u->conn = NULL;
}

static struct fpx_call *call_new(struct upstream *u)
{
    struct fpx_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    struct fpx *f = u->conn;
    call_link_add(&f->calls, &c->link);
    c->u = u;
    c->req.data = c;
    upstream_timeouts(u, &c->req);
    c->page.retry_after_s = -1;
    return c;
}

static void call_free(struct fpx_call *c)
{
    struct fpx *f = c->u->conn;
    call_link_remove(f ? &f->calls : NULL, &c->link);
    http_req_reset(&c->req);
    jb_free(&c->body);
    free(c->url);
    free(c->skus);
    free(c->logged);
    cJSON_Delete(c->doc);
    cJSON_Delete(c->sku_rows);
    free(c);
}

/* Sends c->body as `op` (a fresh signature and timestamp each time). 0, or -1. */
static int send_op(struct fpx_call *c, int op, http_done_fn done)
{
    struct fpx *f = c->u->conn;
    struct jbuf q = {0};
    c->op = op;
    http_req_reset(&c->req);
    c->req.data = c;
    upstream_timeouts(c->u, &c->req);
    if (c->body.failed ||
        fpx_url(&q, c->u->wh->url, op_method(op), c->u->wh->app_key, f->access_token, wall_ms(),
                c->body.p, c->body.len, f->secret) != 0) {
        jb_free(&q);
        return -1;
    }
    free(c->url);
    c->url = q.p; /* NUL-terminated by jbuf */
    c->req.url = c->url;
    c->req.method = "POST";
    c->req.content_type = "application/json";
    c->req.body = c->body.p;
    c->req.body_len = c->body.len;
    c->req.fresh_connect = op == OP_OB_CREATE || op == OP_IN_CREATE || op == OP_OB_CANCEL;
    c->req.done = done;
    return http_start(c->u->http, &c->req);
}

/* Transport verdict + envelope: SYNC_OK with c->doc and *data set. */
static int read_answer(struct fpx_call *c, struct http_req *r, const cJSON **data, char *err,
                       size_t errlen)
{
    cJSON_Delete(c->doc);
    c->doc = NULL;
    *data = NULL;
    if (r->curl_code != 0) {
        snprintf(err, errlen, "no answer: %.200s", r->error);
        return SYNC_TRANSIENT;
    }
    if (r->too_large) {
        snprintf(err, errlen, "answer larger than %zu bytes", r->max_response);
        return SYNC_PERMANENT;
    }
    return fpx_envelope(r->status, r->response, r->response_len, &c->doc, data, err, errlen);
}

/* ---- pulls ---- */

/* A stock version: the time in ms, above every version handed out before, by this process and
 * (seeded once from the replica) by earlier ones: a clock that went back across a restart
 * must not make the replica ignore every figure read until it catches up. */
static int64_t next_version(struct upstream *u, struct store *st, int64_t wh)
{
    struct fpx *f = u->conn;
    if (!f->seeded) {
        sqlite3_stmt *s = store_stmt(st, "SELECT COALESCE(MAX(upstream_version), 0) FROM stock"
                                         " WHERE warehouse = ?1");
        if (s) {
            sqlite3_bind_int64(s, 1, wh);
            if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) > f->last_version)
                f->last_version = sqlite3_column_int64(s, 0);
            sqlite3_reset(s);
            f->seeded = true;
        }
    }
    int64_t v = wall_ms();
    if (v <= f->last_version)
        v = f->last_version + 1;
    f->last_version = v;
    return v;
}

/* Applies rows (vo/Inventory) summed per SKU; with `asked`, SKUs asked for and absent are 0. */
static int apply_stock_rows(struct fpx_call *c, struct store *st, int64_t wh, const cJSON *rows,
                            struct pull_page *pg)
{
    struct upstream *u = c->u;
    int n = cJSON_GetArraySize(rows), r = 0, bad = 0;
    struct agg {
        char sku[TALLY_MAX_ID_LEN + 1];
        int64_t on_hand;
        int64_t onway; /* goods on their way in (onway_stock): -1 = not reported */
    } *a = calloc((size_t)(n + c->nskus + 1), sizeof *a);
    if (!a)
        return TALLY_E_NOMEM;
    int na = 0;
    for (int i = 0; i < c->nskus; i++) { /* asked for: 0 unless the answer has it */
        a[na].onway = -1;
        snprintf(a[na++].sku, sizeof a->sku, "%s", c->skus[i]);
    }
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        char sku[TALLY_MAX_ID_LEN + 1], err[200];
        int64_t on_hand = 0;
        int k = fpx_stock_row(row, wh_remote(u), sku, &on_hand, err, sizeof err);
        if (k < 0) {
            log_warn("%s: stock row skipped: %s", u->name, err);
            bad++;
            continue;
        }
        if (k == 0)
            continue;
        int j = 0;
        while (j < na && strcmp(a[j].sku, sku) != 0)
            j++;
        if (j == na) {
            a[na].onway = -1;
            snprintf(a[na++].sku, sizeof a->sku, "%s", sku);
        }
        if (a[j].on_hand + on_hand <= TALLY_MAX_QTY)
            a[j].on_hand += on_hand;
        int64_t onway;
        if (json_int(row, "onway_stock", 0, TALLY_MAX_QTY, &onway) == 0)
            a[j].onway = a[j].onway < 0                        ? onway
                         : a[j].onway + onway <= TALLY_MAX_QTY ? a[j].onway + onway
                                                               : a[j].onway;
    }
    int64_t version = next_version(u, st, wh), now = store_now();
    for (int j = 0; j < na && r == 0; j++) {
        bool logged = false;
        for (int k = 0; k < c->nlogged && !logged; k++)
            logged = !strcmp(c->logged[k], a[j].sku);
        if (c->reconcile && c->drift_ok && !logged)
            r = whfeed_stock_unlogged(u, st, wh, a[j].sku, a[j].on_hand, a[j].onway, version, now,
                                      pg);
        else
            r = whfeed_stock(u, st, wh, a[j].sku, a[j].on_hand, a[j].onway, version, now,
                             c->reconcile, pg);
    }
    free(a);
    if (bad)
        snprintf(pg->error, sizeof pg->error, "%d unreadable stock rows skipped (see the log)",
                 bad);
    return r;
}

static int apply_inventory(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                           size_t errlen)
{
    struct fpx_call *c = pg->data;
    int64_t wh;
    int r = whfeed_warehouse(c->u, st, &wh, err, errlen);
    if (r)
        return r;
    if (c->nskus > 0 && (r = apply_stock_rows(c, st, wh, c->sku_rows, pg)) != 0)
        return r;
    snprintf(cp->cursor, sizeof cp->cursor, "%s", c->cursor_next);
    if (c->last_page)
        cp->version = c->end;
    return 0;
}

/* An outbound order open at 4PX for FPX_AGE_WARN_MS leaves the list's 30-day window soon: after
 * that its progress is never read. A person is told (once; cleared when it is seen final). */
static int aging_exception(struct fpx_call *c, struct store *st, int64_t wh,
                           const struct fpx_ob_row *o, bool raise)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT id FROM orders WHERE order_id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, o->ref_no, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t ref = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : store_error(st, rc, "order");
    char msg[480];
    snprintf(msg, sizeof msg,
             "%s: outbound order %s has been open at 4PX (status %s) for %" PRId64
             " days; 4PX lists orders by creation over at most 30 days, so after that tally no"
             " longer sees its progress: settle it in 4PX's console",
             c->u->code, o->ref_no, o->code, (c->read_ms - o->create_time) / 86400000);
    struct exc_raise e = {.kind = EXC_WAREHOUSE,
                          .order_ref = ref,
                          .wh = wh,
                          .subject = "4PX list window",
                          .message = msg};
    if (raise)
        return exceptions_raise(c->u->d, &e, NULL);
    return exceptions_clear(c->u->d, &e, "the order is final at 4PX");
}

static int apply_outbound(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                          size_t errlen)
{
    struct fpx_call *c = pg->data;
    int64_t wh;
    int r = whfeed_warehouse(c->u, st, &wh, err, errlen);
    if (r)
        return r;
    if (c->clamped && c->page_no == 1) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "%s: outbound orders were last read over 30 days ago (or one stayed open that"
                 " long); 4PX lists orders over at most 30 days: orders created before that and"
                 " still open are out of tally's sight: check them in 4PX's console",
                 c->u->code);
        struct exc_raise e = {
            .kind = EXC_WAREHOUSE, .wh = wh, .subject = "4PX list window", .message = msg};
        log_warn("%s", msg);
        if ((r = exceptions_raise(c->u->d, &e, NULL)) != 0)
            return r;
    }
    const cJSON *rows = fpx_page_rows(cJSON_GetObjectItemCaseSensitive(c->doc, "data")), *row;
    int bad = 0;
    cJSON_ArrayForEach(row, rows)
    {
        struct fpx_ob_row o;
        char why[256];
        int k = fpx_outbound_row(row, wh_remote(c->u), &o, why, sizeof why);
        if (k < 0) {
            log_warn("%s: outbound row skipped: %s", c->u->name, why);
            bad++;
            continue;
        }
        if (k == 0)
            continue;
        int aged = fpx_ob_note(&o, c->read_ms, &c->minopen, &c->minold);
        int64_t version = o.version > 0 ? o.version : c->read_ms;
        r = whfeed_mark(c->u, wh, o.ref_no, o.remark);
        if (r == 0)
            r = whfeed_outbound(c->u, st, wh, o.ref_no, o.status, o.carrier[0] ? o.carrier : NULL,
                                o.tracking[0] ? o.tracking : NULL, o.reason[0] ? o.reason : NULL,
                                version);
        if (r == 0 && aged != 0)
            r = aging_exception(c, st, wh, &o, aged > 0);
        if (r)
            return r;
    }
    if (bad)
        snprintf(pg->error, sizeof pg->error, "%d unreadable outbound rows skipped (see the log)",
                 bad);
    if (c->last_page) {
        cp->cursor[0] = 0;
        fpx_ob_checkpoint(c->minopen, c->minold, c->end, c->sweep, &cp->version,
                          &cp->modified_since);
        if (c->sweep) {
            struct fpx *f = c->u->conn;
            f->next_sweep_ms = c->read_ms + FPX_SWEEP_MS;
        }
    } else {
        snprintf(cp->cursor, sizeof cp->cursor,
                 "O:%" PRId64 ":%" PRId64 ":%" PRId64 ":%" PRId64 ":%" PRId64 ":%d", c->page_no + 1,
                 c->start, c->end, c->minopen, c->minold, c->sweep ? 1 : 0);
    }
    return 0;
}

static void release_page(struct pull_page *pg)
{
    call_free(pg->data);
}

static void release_nothing(struct pull_page *pg)
{
    (void)pg;
}

static void pull_done(struct fpx_call *c)
{
    c->page.data = c;
    c->page.release = release_page;
    c->page.total = -1;
    sync_pull_done(c->u, c->stream, &c->page);
}

static void pull_failed(struct fpx_call *c, int outcome, const char *err)
{
    c->page.outcome = outcome;
    snprintf(c->page.error, sizeof c->page.error, "%s", err);
    c->page.apply = NULL;
    pull_done(c);
}

static void on_pulled(struct http_req *r);

/* Body of an lstsku read of c->skus, page c->sku_page. */
static void skus_body(struct fpx_call *c)
{
    jb_free(&c->body);
    jb_lit(&c->body, "{\"warehouse_code\":");
    jb_str(&c->body, wh_remote(c->u));
    jb_lit(&c->body, ",\"lstsku\":[");
    for (int i = 0; i < c->nskus; i++) {
        if (i)
            jb_lit(&c->body, ",");
        jb_str(&c->body, c->skus[i]);
    }
    jb_lit(&c->body, "],\"page_no\":");
    jb_int(&c->body, c->sku_page);
    jb_lit(&c->body, ",\"page_size\":"
                     "100"
                     "}");
}

/* Body of a reconciliation's log read: every movement since the last log round's window. */
static void dlog_body(struct fpx_call *c)
{
    jb_free(&c->body);
    jb_lit(&c->body, "{\"warehouse_code\":");
    jb_str(&c->body, wh_remote(c->u));
    jb_lit(&c->body, ",\"create_time_start\":");
    jb_int(&c->body, c->log_from - OVERLAP_MS);
    jb_lit(&c->body, ",\"create_time_end\":");
    jb_int(&c->body, wall_ms() + OVERLAP_MS);
    jb_lit(&c->body, ",\"page_no\":");
    jb_int(&c->body, c->dlog_page);
    jb_lit(&c->body, ",\"page_size\":");
    jb_int(&c->body, LOG_PAGE_SIZE);
    jb_lit(&c->body, "}");
}

static void on_pulled(struct http_req *r)
{
    struct fpx_call *c = r->data;
    char err[256];
    const cJSON *data;
    c->page.retry_after_s = r->retry_after_s;
    int v = read_answer(c, r, &data, err, sizeof err);
    if (v != SYNC_OK) {
        pull_failed(c, v, err);
        return;
    }
    const cJSON *rows = fpx_page_rows(data);
    if (!rows) {
        pull_failed(c, SYNC_PERMANENT, "4PX answer without a page of rows in \"data\"");
        return;
    }
    int n = cJSON_GetArraySize(rows);
    c->page.outcome = SYNC_OK;
    switch (c->op) {
    case OP_INV_FULL:
    case OP_INV_LOG: {
        /* Either way the page names SKUs, whose rows (one per batch) are then read whole by
         * lstsku: a SKU's batch rows split over two pages still count together. */
        bool full = c->op == OP_INV_FULL;
        if (n > (full ? PAGE_SIZE : LOG_PAGE_SIZE)) { /* its SKUs must fit one lstsku read */
            char why[128];
            snprintf(why, sizeof why, "page of %d rows, more than the %d asked for", n,
                     full ? PAGE_SIZE : LOG_PAGE_SIZE);
            pull_failed(c, SYNC_PERMANENT, why);
            return;
        }
        c->last_page = n < (full ? PAGE_SIZE : LOG_PAGE_SIZE) || c->page_no >= MAX_PAGES;
        c->page.more = !c->last_page;
        if (c->last_page)
            c->cursor_next[0] = 0;
        else if (full)
            snprintf(c->cursor_next, sizeof c->cursor_next, "F:%" PRId64 ":%" PRId64,
                     c->page_no + 1, c->end);
        else
            snprintf(c->cursor_next, sizeof c->cursor_next, "L:%" PRId64 ":%" PRId64 ":%" PRId64,
                     c->page_no + 1, c->start, c->end);
        c->page.apply = apply_inventory;
        c->skus = calloc((size_t)n + 1, sizeof *c->skus);
        if (!c->skus) {
            pull_failed(c, SYNC_TRANSIENT, "out of memory");
            return;
        }
        const cJSON *row;
        int bad = 0;
        cJSON_ArrayForEach(row, rows)
        {
            char sku[TALLY_MAX_ID_LEN + 1];
            if (!read_id(row, "sku_code", sku)) {
                bad++;
                continue;
            }
            const char *wc = json_str(row, "warehouse_code");
            if (wc && strcmp(wc, wh_remote(c->u)) != 0)
                continue;
            int j = 0;
            while (j < c->nskus && strcmp(c->skus[j], sku) != 0)
                j++;
            if (j == c->nskus)
                snprintf(c->skus[c->nskus++], sizeof *c->skus, "%s", sku);
        }
        if (bad)
            log_warn("%s: %d stock rows without a readable sku_code skipped", c->u->name, bad);
        c->page.rows = c->nskus;
        if (c->nskus == 0) {
            pull_done(c);
            return;
        }
        c->sku_rows = cJSON_CreateArray();
        c->sku_page = 1;
        skus_body(c);
        if (!c->sku_rows || send_op(c, OP_INV_SKUS, on_pulled) != 0)
            pull_failed(c, SYNC_TRANSIENT, "could not start a request");
        return;
    }
    case OP_INV_SKUS: {
        /* Copies the rows into c->sku_rows; reads the next page while this one was full. */
        const cJSON *row;
        cJSON_ArrayForEach(row, rows)
        {
            cJSON *dup = cJSON_Duplicate(row, 1);
            if (!dup) {
                pull_failed(c, SYNC_TRANSIENT, "out of memory");
                return;
            }
            cJSON_AddItemToArray(c->sku_rows, dup);
        }
        if (n >= LSTSKU_PAGE && c->sku_page < LSTSKU_MAX_PAGES) {
            c->sku_page++;
            skus_body(c);
            if (send_op(c, OP_INV_SKUS, on_pulled) != 0)
                pull_failed(c, SYNC_TRANSIENT, "could not start a request");
            return;
        }
        c->page.apply = apply_inventory;
        if (c->reconcile && c->log_from > 0) {
            /* Read now, after the figures: a SKU the log does not name since the last log
             * round has not moved, so a figure other than the replica's is drift. */
            c->dlog_page = 1;
            dlog_body(c);
            if (send_op(c, OP_INV_DLOG, on_pulled) != 0)
                pull_failed(c, SYNC_TRANSIENT, "could not start a request");
            return;
        }
        pull_done(c);
        return;
    }
    case OP_INV_DLOG: {
        char(*more)[TALLY_MAX_ID_LEN + 1] =
            realloc(c->logged, (size_t)(c->nlogged + n + 1) * sizeof *c->logged);
        if (!more) {
            pull_failed(c, SYNC_TRANSIENT, "out of memory");
            return;
        }
        c->logged = more;
        const cJSON *row;
        cJSON_ArrayForEach(row, rows)
        {
            char sku[TALLY_MAX_ID_LEN + 1];
            const char *wc = json_str(row, "warehouse_code");
            if (!read_id(row, "sku_code", sku) || (wc && strcmp(wc, wh_remote(c->u)) != 0))
                continue;
            snprintf(c->logged[c->nlogged++], sizeof *c->logged, "%s", sku);
        }
        if (n >= LOG_PAGE_SIZE && c->dlog_page < LSTSKU_MAX_PAGES) {
            c->dlog_page++;
            dlog_body(c);
            if (send_op(c, OP_INV_DLOG, on_pulled) != 0)
                pull_failed(c, SYNC_TRANSIENT, "could not start a request");
            return;
        }
        c->drift_ok = n < LOG_PAGE_SIZE; /* too many movements to tell: repaired, not counted */
        pull_done(c);
        return;
    }
    default: /* OP_OB_LIST */
        c->page.apply = apply_outbound;
        c->page.rows = n;
        c->last_page = n < OB_PAGE_SIZE || c->page_no >= MAX_PAGES;
        c->page.more = !c->last_page;
        pull_done(c);
        return;
    }
}

/* Reads "X:a:b[:c[:d[:e[:f]]]]" into v[]; the number of fields read. */
static int parse_cursor(const char *s, char tag, int64_t v[6])
{
    if (s[0] != tag || s[1] != ':')
        return 0;
    int n = sscanf(s + 2, "%" SCNd64 ":%" SCNd64 ":%" SCNd64 ":%" SCNd64 ":%" SCNd64 ":%" SCNd64,
                   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]);
    return n < 0 ? 0 : n;
}

/* The end of the last log round's window (the inventory checkpoint as stored: a
 * reconciliation round is handed version 0), 0 when none or past the log's 30 days. */
static int64_t log_checkpoint(struct upstream *u, int64_t now)
{
    char name[160];
    snprintf(name, sizeof name, "%s:%s", u->name, fpx_streams[STREAM_INVENTORY]);
    sqlite3_stmt *s = store_stmt(u->store, "SELECT version FROM checkpoints WHERE stream = ?1");
    if (!s)
        return 0;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return v > 0 && now - v < WINDOW_MS - 2 * OVERLAP_MS ? v : 0;
}

static void fpx_pull(struct upstream *u, int stream, const struct checkpoint *cp)
{
    struct fpx_call *c = call_new(u);
    if (!c) {
        struct pull_page failed = {
            .outcome = SYNC_TRANSIENT, .retry_after_s = -1, .release = release_nothing};
        snprintf(failed.error, sizeof failed.error, "out of memory");
        sync_pull_done(u, stream, &failed);
        return;
    }
    c->stream = stream;
    c->reconcile = cp->reconcile;
    c->read_ms = wall_ms();
    int64_t now = c->read_ms, v[6] = {0};
    int op;
    struct jbuf *b = &c->body;
    if (stream == STREAM_INVENTORY) {
        if (cp->reconcile)
            c->log_from = log_checkpoint(u, now);
        /* A full read's later pages, in a reconciliation round too (the engine starts one
         * only without a cursor, so an F cursor then is this round's own). */
        if (parse_cursor(cp->cursor, 'F', v) == 2 && v[0] >= 1) {
            op = OP_INV_FULL;
            c->page_no = v[0];
            c->end = v[1];
        } else if (parse_cursor(cp->cursor, 'L', v) == 3 && v[0] >= 1 && !cp->reconcile) {
            op = OP_INV_LOG;
            c->page_no = v[0];
            c->start = v[1];
            c->end = v[2];
        } else if (cp->version <= 0 || cp->reconcile ||
                   now - cp->version > WINDOW_MS - OVERLAP_MS) {
            op = OP_INV_FULL; /* a new full read: the log is read from its start after it */
            c->page_no = 1;
            c->end = now;
        } else {
            op = OP_INV_LOG;
            c->page_no = 1;
            c->start = cp->version - OVERLAP_MS;
            c->end = now;
        }
        jb_lit(b, "{\"warehouse_code\":");
        jb_str(b, wh_remote(u));
        if (op == OP_INV_LOG) {
            jb_lit(b, ",\"create_time_start\":");
            jb_int(b, c->start);
            jb_lit(b, ",\"create_time_end\":");
            jb_int(b, c->end);
        }
        jb_lit(b, ",\"page_no\":");
        jb_int(b, c->page_no);
        jb_lit(b, ",\"page_size\":");
        jb_int(b, op == OP_INV_LOG ? LOG_PAGE_SIZE : PAGE_SIZE);
        jb_lit(b, "}");
    } else {
        op = OP_OB_LIST;
        int nv = parse_cursor(cp->cursor, 'O', v);
        if ((nv == 4 || nv == 6) && v[0] >= 1) {
            c->page_no = v[0];
            c->start = v[1];
            c->end = v[2];
            c->minopen = v[3];
            c->minold = nv == 6 ? v[4] : FPX_NONE;
            c->sweep = nv == 6 && v[5] == 1;
        } else {
            struct fpx *f = u->conn;
            struct fpx_ob_plan p;
            fpx_ob_plan(now, cp->version, cp->modified_since, now >= f->next_sweep_ms, &p);
            c->page_no = 1;
            c->start = p.start;
            c->end = p.end;
            c->sweep = p.sweep;
            c->clamped = p.clamped;
            c->minopen = c->minold = FPX_NONE;
        }
        jb_lit(b, "{\"from_warehouse_code\":");
        jb_str(b, wh_remote(u));
        jb_lit(b, ",\"create_time_start\":");
        jb_int(b, c->start);
        jb_lit(b, ",\"create_time_end\":");
        jb_int(b, c->end);
        jb_lit(b, ",\"page_no\":");
        jb_int(b, c->page_no);
        jb_lit(b, ",\"page_size\":");
        jb_int(b, OB_PAGE_SIZE);
        jb_lit(b, "}");
    }
    c->req.max_response = HTTP_MAX_ANSWER;
    if (send_op(c, op, on_pulled) != 0) {
        call_free(c);
        struct pull_page failed = {
            .outcome = SYNC_TRANSIENT, .retry_after_s = -1, .release = release_nothing};
        snprintf(failed.error, sizeof failed.error, "could not start a request");
        sync_pull_done(u, stream, &failed);
    }
}

/* ---- pushes ---- */

static void push_finish(struct fpx_call *c, int outcome, const char *err)
{
    struct push_batch *b = c->batch;
    struct push_item *it = &b->items[0];
    if (outcome == SYNC_TRANSIENT || outcome == SYNC_AUTH) {
        b->outcome = outcome;
        snprintf(b->error, sizeof b->error, "%s", err ? err : "");
        it->outcome = outcome;
    } else {
        b->outcome = SYNC_OK;
        it->outcome = outcome;
    }
    if (err)
        snprintf(it->error, sizeof it->error, "%s", err);
    call_free(c);
    sync_push_done(b);
}

static void on_pushed(struct http_req *r);

/* The look-up body: {"ref_no": ...} (+ the warehouse). */
static int lookup(struct fpx_call *c, int op)
{
    jb_free(&c->body);
    jb_lit(&c->body, "{\"ref_no\":");
    jb_str(&c->body, c->ref);
    jb_lit(&c->body, op == OP_IN_LOOKUP || op == OP_IN_VERIFY ? ",\"warehouse_code\":"
                                                              : ",\"from_warehouse_code\":");
    jb_str(&c->body, wh_remote(c->u));
    if (op != OP_IN_LOOKUP && op != OP_IN_VERIFY) {
        /* OutboundList's creation window is "默认为当天" (today by default), and the SDK does
         * not say a ref_no lifts it: without a window, an order created yesterday (an answer
         * lost before midnight, a restart the next day) would not be found, and created again.
         * So the widest window allowed (30 days), ending an hour ahead for clock skew. */
        int64_t now = wall_ms();
        jb_lit(&c->body, ",\"create_time_start\":");
        jb_int(&c->body, now + 3600000LL - WINDOW_MS + 60000);
        jb_lit(&c->body, ",\"create_time_end\":");
        jb_int(&c->body, now + 3600000LL);
    }
    jb_lit(&c->body, ",\"page_no\":1,\"page_size\":50}");
    return send_op(c, op, on_pushed);
}

/* The status of the row with our ref_no in a look-up answer: "" when none, NULL-safe. */
static bool find_ref(const struct fpx_call *c, const cJSON *data, char status[4])
{
    const cJSON *row;
    cJSON_ArrayForEach(row, fpx_page_rows(data))
    {
        const char *ref = json_str(row, "ref_no");
        if (ref && !strcmp(ref, c->ref)) {
            const char *s = json_str(row, "status");
            snprintf(status, 4, "%s", s ? s : "");
            return true;
        }
    }
    status[0] = 0;
    return false;
}

int fpx_inbound_marks(struct tallyd *d, const char *wh_code, const cJSON *data)
{
    const cJSON *row;
    int first = 0;
    cJSON_ArrayForEach(row, fpx_page_rows(data))
    {
        const char *ref = json_str(row, "ref_no"), *remark = json_str(row, "remark");
        if (!ref || !mp_id_ok(ref, strlen(ref)) || !remark || !remark[0])
            continue;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(row, "create_time");
        int64_t created = cJSON_IsNumber(t) && t->valuedouble > 0 && t->valuedouble < 1e15
                              ? (int64_t)(t->valuedouble / 1000)
                              : 0;
        int r = coord_seen_notice(d, wh_code, ref, remark, created);
        if (r && !first)
            first = r;
    }
    return first;
}

static void inbound_marks(struct fpx_call *c, const cJSON *data)
{
    int r = fpx_inbound_marks(c->u->d, c->u->code, data);
    if (r)
        log_warn("%s: inbound list: another coordinator's mark not recorded (error %d)", c->u->name,
                 r);
}

static int build_create(struct fpx_call *c, int op, char *err, size_t errlen)
{
    const struct push_item *it = &c->batch->items[0];
    jb_free(&c->body);
    int r = op == OP_OB_CREATE
                ? fpx_outbound_body(it->payload, it->payload_len, wh_remote(c->u),
                                    c->u->wh->shipping_method, &c->body, c->ref, err, errlen)
                : fpx_inbound_body(it->payload, it->payload_len, wh_remote(c->u), &c->body, c->ref,
                                   err, errlen);
    return r;
}

static void on_pushed(struct http_req *r)
{
    struct fpx_call *c = r->data;
    struct push_batch *b = c->batch;
    char err[256], status[4];
    const cJSON *data;
    b->retry_after_s = r->retry_after_s;
    int v = read_answer(c, r, &data, err, sizeof err);
    if (v == SYNC_TRANSIENT || v == SYNC_AUTH) {
        push_finish(c, v, err);
        return;
    }
    if ((c->op == OP_IN_LOOKUP || c->op == OP_IN_VERIFY) && v == SYNC_OK)
        inbound_marks(c, data);
    switch (c->op) {
    case OP_OB_LOOKUP:
    case OP_IN_LOOKUP:
        if (v != SYNC_OK) {
            push_finish(c, v, err);
        } else if (find_ref(c, data, status)) {
            push_finish(c, SYNC_OK, NULL); /* an earlier attempt created it */
        } else {
            int op = c->op == OP_OB_LOOKUP ? OP_OB_CREATE : OP_IN_CREATE;
            if (build_create(c, op, err, sizeof err) != 0)
                push_finish(c, SYNC_PERMANENT, err);
            else if (send_op(c, op, on_pushed) != 0)
                push_finish(c, SYNC_TRANSIENT, "could not start a request");
        }
        return;
    case OP_OB_CREATE:
    case OP_IN_CREATE:
        if (v == SYNC_OK) {
            push_finish(c, SYNC_OK, NULL);
            return;
        }
        /* Refused: it may be the reference already there (an earlier attempt). */
        snprintf(c->refusal, sizeof c->refusal, "%s", err);
        if (lookup(c, c->op == OP_OB_CREATE ? OP_OB_VERIFY : OP_IN_VERIFY) != 0)
            push_finish(c, SYNC_TRANSIENT, "could not start a request");
        return;
    case OP_OB_VERIFY:
    case OP_IN_VERIFY:
        if (v == SYNC_OK && find_ref(c, data, status))
            push_finish(c, SYNC_OK, NULL);
        else
            push_finish(c, SYNC_PERMANENT, c->refusal);
        return;
    case OP_OB_CANCEL:
        if (v == SYNC_OK) {
            push_finish(c, SYNC_OK, NULL);
            return;
        }
        snprintf(c->refusal, sizeof c->refusal, "%s", err);
        if (lookup(c, OP_OB_CVERIFY) != 0)
            push_finish(c, SYNC_TRANSIENT, "could not start a request");
        return;
    case OP_OB_CVERIFY:
        if (v != SYNC_OK) {
            push_finish(c, SYNC_PERMANENT, c->refusal);
        } else if (!find_ref(c, data, status) || !strcmp(status, "X") || !strcmp(status, "D")) {
            push_finish(c, SYNC_OK, NULL); /* cancelled, deleted, or never there */
        } else if (!strcmp(status, "C")) {
            snprintf(err, sizeof err, "already shipped at 4PX (status C): %.180s", c->refusal);
            push_finish(c, SYNC_PERMANENT, err);
        } else {
            push_finish(c, SYNC_PERMANENT, c->refusal);
        }
        return;
    default:
        push_finish(c, SYNC_PERMANENT, "unexpected answer");
    }
}

static void fpx_push(struct upstream *u, struct push_batch *b)
{
    struct push_item *it = &b->items[0];
    char err[256];
    struct fpx_call *c = call_new(u);
    if (!c) {
        b->outcome = SYNC_TRANSIENT;
        snprintf(b->error, sizeof b->error, "out of memory");
        sync_push_done(b);
        return;
    }
    c->batch = b;
    for (int i = 1; i < b->n; i++) { /* push_limit is 1: never more */
        b->items[i].outcome = SYNC_TRANSIENT;
        snprintf(b->items[i].error, sizeof b->items[i].error, "one row per call");
    }
    int rc;
    switch (it->okind) {
    case OBX_OUTBOUND:
    case OBX_INBOUND: {
        bool ob = it->okind == OBX_OUTBOUND;
        if (build_create(c, ob ? OP_OB_CREATE : OP_IN_CREATE, err, sizeof err) != 0) {
            push_finish(c, SYNC_PERMANENT, err);
            return;
        }
        if (it->maybe_sent)
            rc = lookup(c, ob ? OP_OB_LOOKUP : OP_IN_LOOKUP);
        else
            rc = send_op(c, ob ? OP_OB_CREATE : OP_IN_CREATE, on_pushed);
        break;
    }
    case OBX_OUTBOUND_CANCEL:
        if (fpx_cancel_body(it->payload, it->payload_len, &c->body, c->ref, err, sizeof err) != 0) {
            push_finish(c, SYNC_PERMANENT, err);
            return;
        }
        rc = send_op(c, OP_OB_CANCEL, on_pushed);
        break;
    default:
        snprintf(err, sizeof err, "a 4PX warehouse takes no %s rows (its stock is kept by 4PX)",
                 it->kind);
        push_finish(c, SYNC_PERMANENT, err);
        return;
    }
    if (rc != 0)
        push_finish(c, SYNC_TRANSIENT, "could not start a request");
}

const struct connector_ops conn_fourpx_ops = {
    .kind = "fourpx",
    .caps = CAP_INBOUND_NOTICE | CAP_OUTBOUND | CAP_STOCK_LOG,
    .nstreams = 2,
    .streams = fpx_streams,
    .push_limit = 1,
    .init = fpx_init,
    .pull = fpx_pull,
    .push = fpx_push,
    .free = fpx_free,
    .reload = fpx_reload,
};
