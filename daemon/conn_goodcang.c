/*
 * Connector for a third-party warehouse run on the Goodcang OMS open API (UPSTREAM.md §3).
 *
 * Every call is `POST {url}/public_open/{module}/{action}` with a JSON body and the headers
 * `app-key` and `app-token` (url stands for https://oms.goodcang.net; sandbox
 * https://uat-oms.eminxing.com). Facts and where they come from: tests/fixtures/goodcang/README.md
 * (EalenXie/sdk-all goodcang-sdk, AkaneMurakawa/tool goodcang).
 *
 * Answers: {"ask": "Success"|"Failure", "message", "data", "Error": {"errMessage", "errCode"}};
 * list answers add "count", "nextPage" and "pagination": {"page", "pageSize"}; a newer
 * envelope of the SDK reads {"code": 1} as success too, so both are accepted. An answer with
 * neither "ask" nor "code" is not Goodcang's (a tally Warehouse API error, an HTML page): a
 * clear error, never read as rows.
 *
 * Streams:
 * - inventory: a full read (inventory/get_product_inventory by warehouse_code, paged by page /
 *   pageSize) on the first round and on every reconciliation; the rounds in between read the
 *   stock log (inventory/get_inventory_log by create_date_from / create_date_end, paged) and
 *   read again the stock of the SKUs it names (get_product_inventory with product_sku_arr):
 *   the log gives a change (ibl_change_quantity), not the quantity after it. on_hand =
 *   sellable + reserved (reserved = its outbound orders not yet shipped, which tally reserves
 *   itself); onway and pending (goods not yet put away) are not on hand. version = the read
 *   time in milliseconds, strictly increasing per connector and above every version the
 *   replica holds for the warehouse (a clock set back must not make fresh reads stale).
 *   Reconciliation (a full read) repairs every figure. With no version of Goodcang's own
 *   (whfeed_stock's equal-version check never matches), each page of it also reads the stock
 *   log, after the figures, from the last log round's window (the stored checkpoint's
 *   modified_since, less GC_OVERLAP_S) to now: a SKU the log does not name has not moved since
 *   the replica's figure was read, so a different figure is drift (whfeed_stock_unlogged:
 *   counted, repaired, a stock_drift exception); a SKU the log names is a change. More than
 *   GC_DLOG_PAGES log pages, or a log read Goodcang refuses: repaired, not counted.
 * - outbound: order/get_order_list by modify_date_from / modify_date_to (window with overlap),
 *   rows of this warehouse_code only; order_status W -> accepted, D -> shipped (carrier =
 *   shipping_method, tracking_no), N and P -> exception (abnormal_problem_reason), X ->
 *   cancelled; any other status is a logged per-row error. version = date_modify.
 * - order_desc (CreateOrderDTO's remark, echoed by Order.java) carries the coordinator's mark
 *   ("tally coordinator <mark>", coord.h); a mark read there goes to whfeed_mark.
 * Push (one row per batch):
 * - outbound: order/create_order with reference_no = the order id and verify = 1 (submitted,
 *   not a draft); when an earlier attempt may have reached Goodcang, order/get_order_by_ref_code
 *   first, and an order found there (this warehouse_code, the payload's lines when the answer
 *   lists items) is done (also after a refused create: see below).
 * - outbound_cancel: get_order_by_ref_code for the order_code, then order/cancel_order.
 * - inbound: inbound_order/create_grn (reference_no = the notice id); the look-up before a
 *   re-send is inbound_order/get_grn_list over the last GC_GRN_LOOKUP_DAYS, matched on
 *   reference_no (the sources show no reference filter for that list).
 * Classification: no answer, 408, 429, 5xx: transient; 401/403: SYNC_AUTH; other 4xx and
 * ask = Failure: refused (permanent, with Goodcang's message); a push whose answer is not
 * Goodcang's is transient (it may have been applied: the next attempt looks it up first).
 *
 * What the public sources do not settle, and how this code reads it:
 * - the HTTP status of refused credentials: 401/403 are taken as SYNC_AUTH; an ask = Failure
 *   on HTTP 200 is shown with its message (a refused key shows there as such);
 * - the page-size parameter: the older SDK DTOs and the demo client send "pageSize", the newer
 *   PagePayload "page_size": both are sent, with the same value (100; the order list's
 *   documented maximum);
 * - "nextPage" is typed as a string: "true"/"1"/true mean more; without it, page * pageSize <
 *   count says whether more follow;
 * - the time zone of dates (date_modify, ibl_add_time, the *_from / *_to filters) is not
 *   given: windows are computed from the server's own dates seen (the newest minus
 *   GC_OVERLAP_S); where none was seen yet, from tally's UTC clock widened by
 *   GC_ZONE_SLACK_S, so a server clock in any zone up to UTC+14 loses nothing; filters are sent
 *   as "YYYY-MM-DD HH:MM:SS" (OrderListDTO calls its date filters "datetime"; the demo client
 *   sends the log's as a date alone; how the server reads a time there is not shown);
 * - "not found" from get_order_by_ref_code may be ask = Failure or a Success without data:
 *   both mean not found;
 * - cancel_status (2 = cancelled in the SDK; other values unnamed): a Success is done, the
 *   order's later status comes through the outbound stream;
 * - create_grn's transit_type and receiving_shipping_type take integers whose meanings the
 *   sources do not list: they are not sent (the account's defaults apply);
 * - a second create_order with a reference_no already used: the real system's answer is not
 *   shown; tally looks up first when an attempt may have landed, and after any refused
 *   create_order / create_grn looks the reference up once more: found there, the row is done
 *   (an earlier attempt's answer was lost and the look-up before the re-send failed), else it
 *   is held with Goodcang's reason.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "codec.h"
#include "coord.h"
#include "json.h"
#include "log.h"
#include "outbox.h"
#include "secret.h"
#include "tally/protocol.h"
#include "upstream.h"
#include "whfeed.h"

#define GC_PAGE 100                     /* rows per page asked (order list: at most 100) */
#define GC_OVERLAP_S 300                /* windows re-read this much before the newest seen */
#define GC_ZONE_SLACK_S (14 * 3600)     /* the server's clock may run up to UTC+14 */
#define GC_FIRST_WINDOW_S (30 * 86400)  /* the first outbound round reads 30 days back */
#define GC_GRN_LOOKUP_DAYS 60           /* a notice's look-up reads the last 60 days */
#define GC_LOOKUP_PAGES 50              /* and at most 50 pages of them */
#define GC_TIME_MIN 946684800LL         /* 2000-01-01: older dates are not honest */
#define GC_TIME_MAX 253402300799LL      /* 9999-12-31 */
#define GC_MAX_ANSWER ((size_t)2 << 20) /* a page of 100 orders is far under this */
#define GC_DLOG_PAGES 20                /* log pages a reconciliation page reads at most */

enum { STREAM_INVENTORY, STREAM_OUTBOUND };
static const char *const gc_streams[] = {"inventory", "outbound"};

/* What one call is for. */
enum gc_step {
    GC_INV_FULL,   /* a page of the full stock read */
    GC_INV_LOG,    /* a page of the stock log */
    GC_INV_SKUS,   /* the stock of the SKUs a log page named */
    GC_OB_LIST,    /* a page of the outbound order list */
    GC_OB_LOOKUP,  /* get_order_by_ref_code before a create or for a cancel */
    GC_OB_CREATE,  /* create_order */
    GC_OB_CANCEL,  /* cancel_order */
    GC_GRN_LOOKUP, /* a page of get_grn_list before a re-sent notice */
    GC_GRN_CREATE, /* create_grn */
};

/* Answer verdicts besides enum sync_outcome. */
enum { GC_REFUSED = 10, GC_FOREIGN = 11 };

struct gc_call;

struct gc {
    char token[1024];
    char h_key[200];    /* "app-key: ..." */
    char h_token[1100]; /* "app-token: ..." (secret) */
    const char *hdrs[3];
    int64_t last_version; /* the last stock version given (ms) */
    struct call_link *calls;
};

struct gc_call {
    struct http_req req;
    struct upstream *u;
    int stream;
    int step;
    struct push_batch *batch;
    char url[700];
    struct jbuf body;
    struct pull_page page;
    cJSON *doc;  /* the answer of a pull (for GC_INV_SKUS: the log page's) */
    cJSON *doc2; /* GC_INV_SKUS: the stock answer */
    bool reconcile;
    /* a round's position: page, window, the round's start and the newest date seen */
    int64_t pg, from, to, start, seen, version;
    int lookups; /* GRN look-up pages read */
    /* reconciliation: the SKUs the stock log names since the last log round (from dfrom) */
    int64_t dfrom, dpg;
    bool drift_ok;
    char (*logged)[TALLY_MAX_ID_LEN + 1];
    int nlogged;
    /* A create refused: Goodcang's reason, kept while the reference is looked up (a refused
     * duplicate reference_no means the order / GRN is there: done, never held). */
    char refused[256];
    struct call_link link; /* in the connector's list while in flight */
};

static void call_free(struct gc_call *c);

static const char *remote_code(const struct upstream *u)
{
    return u->wh->remote_code[0] ? u->wh->remote_code : u->wh->code;
}

/* ---- credentials ---- */

static int load_token(struct upstream *u, struct gc *g, char *err, size_t errlen)
{
    char token[sizeof g->token];
    if (secret_read(u->wh->app_token_file, token, sizeof token, err, errlen) != 0)
        return -1;
    if (strlen(token) + 12 >= sizeof g->h_token || strchr(token, '\n') || strchr(token, '\r')) {
        snprintf(err, errlen, "app_token_file: not a usable token");
        explicit_bzero(token, sizeof token);
        return -1;
    }
    memcpy(g->token, token, sizeof token);
    snprintf(g->h_token, sizeof g->h_token, "app-token: %s", token);
    explicit_bzero(token, sizeof token);
    return 0;
}

static int gc_init(struct upstream *u, char *err, size_t errlen)
{
    if (!u->wh || !u->wh->app_key[0] || !u->wh->url[0]) {
        snprintf(err, errlen, "[warehouse] of kind goodcang needs url, app_key and app_token_file");
        return -1;
    }
    struct gc *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (strchr(u->wh->app_key, '\n') || strchr(u->wh->app_key, '\r')) {
        snprintf(err, errlen, "app_key: not a usable key");
        free(g);
        return -1;
    }
    snprintf(g->h_key, sizeof g->h_key, "app-key: %s", u->wh->app_key);
    if (load_token(u, g, err, errlen) != 0) {
        free(g);
        return -1;
    }
    g->hdrs[0] = g->h_key;
    g->hdrs[1] = g->h_token;
    g->hdrs[2] = NULL;
    u->conn = g;
    return 0;
}

static int gc_reload(struct upstream *u, char *err, size_t errlen)
{
    struct gc *g = u->conn;
    return g ? load_token(u, g, err, errlen) : -1;
}

static void gc_free(struct upstream *u)
{
    struct gc *g = u->conn;
    if (!g)
        return;
    while (g->calls) {
        struct gc_call *c = CALL_OWNER(g->calls, struct gc_call);
        struct push_batch *b = c->batch;
        call_free(c);
        if (b)
            sync_push_done(b);
    }
    explicit_bzero(g->token, sizeof g->token);
    explicit_bzero(g->h_token, sizeof g->h_token);
    free(g);
    u->conn = NULL;
}

static struct gc_call *call_new(struct upstream *u)
{
    struct gc *g = u->conn;
    struct gc_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    call_link_add(&g->calls, &c->link);
    c->u = u;
    c->req.data = c;
    c->page.retry_after_s = -1;
    return c;
}

static void call_free(struct gc_call *c)
{
    struct gc *g = c->u->conn;
    call_link_remove(g ? &g->calls : NULL, &c->link);
    http_req_reset(&c->req);
    jb_free(&c->body);
    cJSON_Delete(c->doc);
    cJSON_Delete(c->doc2);
    free(c->logged);
    free(c);
}

/* Starts POST {url}/public_open/{call} with c->body; 0 or -1. */
static int gc_send(struct gc_call *c, const char *call, http_done_fn done)
{
    struct upstream *u = c->u;
    struct gc *g = u->conn;
    if (c->body.failed || (size_t)snprintf(c->url, sizeof c->url, "%s/public_open/%s", u->wh->url,
                                           call) >= sizeof c->url)
        return -1;
    http_req_reset(&c->req);
    memset(&c->req, 0, sizeof c->req);
    c->req.data = c;
    c->req.url = c->url;
    c->req.method = "POST";
    c->req.content_type = "application/json";
    c->req.extra_headers = g->hdrs;
    c->req.body = c->body.p;
    c->req.body_len = c->body.len;
    c->req.max_response = GC_MAX_ANSWER;
    c->req.done = done;
    /* A create or cancel is not idempotent: libcurl must never send it again by itself when
     * a reused connection drops unanswered (the look-up decides). */
    c->req.fresh_connect = c->batch != NULL;
    upstream_timeouts(u, &c->req);
    return http_start(u->http, &c->req);
}

/* ---- dates ---- */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DD", "YYYY-MM-DD HH:MM" or "YYYY-MM-DD HH:MM:SS" (also with a 'T') as seconds, read
 * as if UTC (the server's own frame); -1 when not such a date or out of range. */
static int64_t gc_time_parse(const char *s)
{
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
    if (!s || strlen(s) > 32)
        return -1;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return -1;
    const char *p = s + n;
    if (*p == ' ' || *p == 'T') {
        int k = 0, got = sscanf(p + 1, "%2d:%2d%n:%2d%n", &h, &mi, &k, &se, &k);
        if (got < 2 || p[1 + k] != 0)
            return -1;
    } else if (*p) {
        return -1;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || h < 0 || mi < 0 ||
        se < 0)
        return -1;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    return t < GC_TIME_MIN || t > GC_TIME_MAX ? -1 : t;
}

static void gc_time_fmt(int64_t t, char out[20])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 20, "%Y-%m-%d %H:%M:%S", &tm);
}

static void jb_kv_time(struct jbuf *b, const char *key, int64_t t)
{
    char buf[20];
    gc_time_fmt(t, buf);
    jb_str(b, key);
    jb_lit(b, ":");
    jb_str(b, buf);
}

/* ---- request bodies (the parameter names are pinned by tests/fixtures/goodcang) ---- */

static void jb_kv_int(struct jbuf *b, const char *key, int64_t v)
{
    jb_str(b, key);
    jb_lit(b, ":");
    jb_int(b, v);
}

static void jb_kv_s(struct jbuf *b, const char *key, const char *v)
{
    jb_str(b, key);
    jb_lit(b, ":");
    jb_str(b, v);
}

static void body_paging(struct jbuf *b, int64_t page)
{
    jb_kv_int(b, "page", page);
    jb_lit(b, ",");
    jb_kv_int(b, "pageSize", GC_PAGE);
    jb_lit(b, ",");
    jb_kv_int(b, "page_size", GC_PAGE);
}

/* inventory/get_product_inventory: a page of the warehouse, or the SKUs named (n > 0). */
static void body_inventory(struct jbuf *b, const char *wh, int64_t page, char (*skus)[80], int n)
{
    jb_lit(b, "{");
    jb_kv_s(b, "warehouse_code", wh);
    if (n > 0) {
        jb_lit(b, ",\"product_sku_arr\":[");
        for (int i = 0; i < n; i++) {
            if (i)
                jb_lit(b, ",");
            jb_str(b, skus[i]);
        }
        jb_lit(b, "]");
    }
    jb_lit(b, ",");
    body_paging(b, page);
    jb_lit(b, "}");
}

/* inventory/get_inventory_log over [from, to]. */
static void body_log(struct jbuf *b, const char *wh, int64_t from, int64_t to, int64_t page)
{
    jb_lit(b, "{");
    jb_kv_s(b, "warehouse_code", wh);
    jb_lit(b, ",");
    jb_kv_time(b, "create_date_from", from);
    jb_lit(b, ",");
    jb_kv_time(b, "create_date_end", to);
    jb_lit(b, ",");
    body_paging(b, page);
    jb_lit(b, "}");
}

/* order/get_order_list modified in [from, to]. */
static void body_orders(struct jbuf *b, int64_t from, int64_t to, int64_t page)
{
    jb_lit(b, "{");
    jb_kv_time(b, "modify_date_from", from);
    jb_lit(b, ",");
    jb_kv_time(b, "modify_date_to", to);
    jb_lit(b, ",");
    jb_kv_int(b, "page", page);
    jb_lit(b, ",");
    jb_kv_int(b, "pageSize", GC_PAGE);
    jb_lit(b, "}");
}

/* inbound_order/get_grn_list created in [from, to]. */
static void body_grn_list(struct jbuf *b, int64_t from, int64_t to, int64_t page)
{
    jb_lit(b, "{");
    jb_kv_time(b, "create_date_from", from);
    jb_lit(b, ",");
    jb_kv_time(b, "create_date_to", to);
    jb_lit(b, ",");
    jb_kv_int(b, "page", page);
    jb_lit(b, ",");
    jb_kv_int(b, "pageSize", GC_PAGE);
    jb_lit(b, "}");
}

/* A payload string member copied into out (NUL-terminated); 0, or -1 when absent, not a
 * string, empty or longer than outlen - 1. */
static int pl_str(const msgpack_object *map, const char *key, char *out, size_t outlen)
{
    const msgpack_object *v = mp_map_get(map, key);
    if (!v || v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 || v->via.str.size >= outlen)
        return -1;
    memcpy(out, v->via.str.ptr, v->via.str.size);
    out[v->via.str.size] = 0;
    return mp_text_ok(out, v->via.str.size) ? 0 : -1;
}

static int pl_int(const msgpack_object *map, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const msgpack_object *v = mp_map_get(map, key);
    if (!v)
        return -1;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= (uint64_t)INT64_MAX)
        *out = (int64_t)v->via.u64;
    else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = v->via.i64;
    else
        return -1;
    return *out < lo || *out > hi ? -1 : 0;
}

/* The "lines" of a payload as Goodcang items: [{"product_sku", "quantity"}] (outbound) or,
 * for a notice, one box [{"box_no": 1, "box_details": [...]}]. 0, or -1 with err. */
static int body_items(struct jbuf *b, const msgpack_object *map, bool box, char *err, size_t errlen)
{
    const msgpack_object *lines = mp_map_get(map, "lines");
    if (!lines || lines->type != MSGPACK_OBJECT_ARRAY || lines->via.array.size == 0 ||
        lines->via.array.size > 1000) {
        snprintf(err, errlen, "no lines to send");
        return -1;
    }
    jb_lit(b, box ? "\"items\":[{\"box_no\":1,\"box_details\":[" : "\"items\":[");
    for (uint32_t i = 0; i < lines->via.array.size; i++) {
        const msgpack_object *l = &lines->via.array.ptr[i];
        char sku[TALLY_MAX_ID_LEN + 1];
        int64_t qty;
        if (l->type != MSGPACK_OBJECT_MAP || pl_str(l, "sku", sku, sizeof sku) != 0 ||
            !mp_id_ok(sku, strlen(sku)) || pl_int(l, "qty", 1, 1000000, &qty) != 0) {
            snprintf(err, errlen, "line %u: no valid sku and qty", i + 1);
            return -1;
        }
        if (i)
            jb_lit(b, ",");
        jb_lit(b, "{");
        jb_kv_s(b, "product_sku", sku);
        jb_lit(b, ",");
        jb_kv_int(b, "quantity", qty);
        jb_lit(b, "}");
    }
    jb_lit(b, box ? "]}]" : "]");
    return 0;
}

static int unpack(const struct push_item *it, msgpack_unpacked *m)
{
    size_t off = 0;
    msgpack_unpacked_init(m);
    if (msgpack_unpack_next(m, it->payload, it->payload_len, &off) != MSGPACK_UNPACK_SUCCESS ||
        m->data.type != MSGPACK_OBJECT_MAP)
        return -1;
    return 0;
}

/* order/create_order from fulfil.c's payload {id, lines, ship_to{name, address, city,
 * postcode, country, phone}, service}. 0, or -1 with err (the row cannot be sent as it is). */
static int body_create_order(struct jbuf *b, const struct push_item *it, const char *wh,
                             const char *method_cfg, char *err, size_t errlen)
{
    msgpack_unpacked m;
    int r = -1;
    char id[TALLY_MAX_ID_LEN + 1], service[TALLY_MAX_ID_LEN * 2 + 1] = "";
    char name[257], address[513], city[257], postcode[65], country[8], phone[65] = "";
    if (unpack(it, &m) != 0) {
        snprintf(err, errlen, "unreadable payload");
        goto out;
    }
    const msgpack_object *ship = mp_map_get(&m.data, "ship_to");
    if (pl_str(&m.data, "id", id, sizeof id) != 0 || !mp_id_ok(id, strlen(id))) {
        snprintf(err, errlen, "payload without a valid order id");
        goto out;
    }
    if (!ship || ship->type != MSGPACK_OBJECT_MAP || pl_str(ship, "name", name, sizeof name) ||
        pl_str(ship, "address", address, sizeof address) ||
        pl_str(ship, "city", city, sizeof city) ||
        pl_str(ship, "country", country, sizeof country) || strlen(country) != 2) {
        snprintf(err, errlen,
                 "order %s: the ship-to address lacks a name, street, city or 2-letter country",
                 id);
        goto out;
    }
    if (pl_str(ship, "postcode", postcode, sizeof postcode) != 0)
        postcode[0] = 0;
    if (pl_str(ship, "phone", phone, sizeof phone) != 0)
        phone[0] = 0;
    if (pl_str(&m.data, "service", service, sizeof service) != 0)
        service[0] = 0;
    const char *method = method_cfg && method_cfg[0] ? method_cfg : service;
    if (!method[0]) {
        snprintf(err, errlen,
                 "order %s has no service and the warehouse no shipping_method: set"
                 " shipping_method in its [warehouse] section",
                 id);
        goto out;
    }
    jb_lit(b, "{");
    jb_kv_s(b, "reference_no", id);
    jb_lit(b, ",");
    jb_kv_s(b, "warehouse_code", wh);
    jb_lit(b, ",");
    jb_kv_s(b, "shipping_method", method);
    jb_lit(b, ",");
    jb_kv_s(b, "country_code", country);
    jb_lit(b, ",");
    jb_kv_s(b, "name", name);
    jb_lit(b, ",");
    jb_kv_s(b, "address1", address);
    jb_lit(b, ",");
    jb_kv_s(b, "city", city);
    if (postcode[0]) {
        jb_lit(b, ",");
        jb_kv_s(b, "zipcode", postcode);
    }
    if (phone[0]) {
        jb_lit(b, ",");
        jb_kv_s(b, "phone", phone);
    }
    /* The coordinator's mark (coord.h) in order_desc (CreateOrderDTO: 订单备注, the order's
     * remark; Order.java echoes it in the order list and by reference). The sources give no
     * length limit: the text is kept under 100 characters. */
    char mark[80];
    if (pl_str(&m.data, "station", mark, sizeof mark) == 0 && mark[0]) {
        char desc[100];
        snprintf(desc, sizeof desc, "tally coordinator %s", mark);
        jb_lit(b, ",");
        jb_kv_s(b, "order_desc", desc);
    }
    jb_lit(b, ",");
    jb_kv_int(b, "verify", 1);
    jb_lit(b, ",");
    if (body_items(b, &m.data, false, err, errlen) != 0)
        goto out;
    jb_lit(b, "}");
    r = b->failed ? -1 : 0;
    if (b->failed)
        snprintf(err, errlen, "out of memory");
out:
    msgpack_unpacked_destroy(&m);
    return r;
}

/* inbound_order/create_grn from a notice {id, warehouse, lines, ref?, from?, eta?, carrier?,
 * tracking_no?, note?}. 0, or -1 with err. */
static int body_create_grn(struct jbuf *b, const struct push_item *it, const char *wh, char *err,
                           size_t errlen)
{
    msgpack_unpacked m;
    int r = -1;
    char id[TALLY_MAX_ID_LEN + 1], tracking[TALLY_MAX_ID_LEN + 1], note[TALLY_MAX_TEXT_LEN + 1];
    char ref[TALLY_MAX_ID_LEN + 1], from[TALLY_MAX_ID_LEN + 1], carrier[TALLY_MAX_ID_LEN + 1];
    int64_t eta;
    if (unpack(it, &m) != 0) {
        snprintf(err, errlen, "unreadable payload");
        goto out;
    }
    if (pl_str(&m.data, "id", id, sizeof id) != 0 || !mp_id_ok(id, strlen(id))) {
        snprintf(err, errlen, "inbound notice without a valid id");
        goto out;
    }
    jb_lit(b, "{");
    jb_kv_s(b, "reference_no", id);
    jb_lit(b, ",");
    jb_kv_s(b, "warehouse_code", wh);
    if (pl_str(&m.data, "tracking_no", tracking, sizeof tracking) == 0) {
        jb_lit(b, ",");
        jb_kv_s(b, "tracking_number", tracking);
    }
    if (pl_int(&m.data, "eta", GC_TIME_MIN, GC_TIME_MAX, &eta) == 0) {
        char day[20];
        gc_time_fmt(eta, day);
        day[10] = 0; /* eta_date: a date */
        jb_lit(b, ",");
        jb_kv_s(b, "eta_date", day);
    }
    /* receiving_desc (remarks): what tally knows of the goods' origin, and last, never cut,
     * the coordinator's mark (coord.h, coord_seen_notice: read back from the GRN list). */
    char desc[TALLY_MAX_TEXT_LEN + 1], mark[80], tail[100] = "";
    if (pl_str(&m.data, "station", mark, sizeof mark) == 0 && mark[0])
        snprintf(tail, sizeof tail, "; tally coordinator %s", mark);
    size_t cap = sizeof desc - strlen(tail);
    int n = snprintf(desc, cap, "tally notice %s", id);
    if (n < (int)cap && pl_str(&m.data, "ref", ref, sizeof ref) == 0)
        n += snprintf(desc + n, cap - (size_t)n, "; transfer %s", ref);
    if (n < (int)cap && pl_str(&m.data, "from", from, sizeof from) == 0)
        n += snprintf(desc + n, cap - (size_t)n, " from %s", from);
    if (n < (int)cap && pl_str(&m.data, "carrier", carrier, sizeof carrier) == 0)
        n += snprintf(desc + n, cap - (size_t)n, "; carrier %s", carrier);
    if (n < (int)cap && pl_str(&m.data, "note", note, sizeof note) == 0)
        snprintf(desc + n, cap - (size_t)n, "; %s", note);
    /* A text cut short to leave room for the mark ends at a character's boundary: a
     * multi-byte character's first bytes alone would make the body's JSON string not UTF-8. */
    size_t len = strlen(desc), lead = len;
    while (lead > 0 && ((unsigned char)desc[lead - 1] & 0xC0) == 0x80)
        lead--;
    if (lead > 0 && (unsigned char)desc[lead - 1] >= 0xC0) {
        unsigned char c = (unsigned char)desc[lead - 1];
        size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (len - (lead - 1) < want)
            desc[lead - 1] = 0;
    }
    snprintf(desc + strlen(desc), sizeof desc - strlen(desc), "%s", tail);
    jb_lit(b, ",");
    jb_kv_s(b, "receiving_desc", desc);
    jb_lit(b, ",");
    jb_kv_int(b, "verify", 1);
    jb_lit(b, ",");
    if (body_items(b, &m.data, true, err, errlen) != 0)
        goto out;
    jb_lit(b, "}");
    r = b->failed ? -1 : 0;
    if (b->failed)
        snprintf(err, errlen, "out of memory");
out:
    msgpack_unpacked_destroy(&m);
    return r;
}

/* ---- answers ---- */

/* Goodcang's reason for a refusal: message, and Error.errMessage / errCode when given. */
static void refusal_text(const cJSON *doc, char *out, size_t outlen)
{
    const char *msg = json_str(doc, "message");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "Error");
    const char *em = json_str(e, "errMessage");
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(e, "errCode");
    char code[40] = "";
    if (cJSON_IsString(ec) && ec->valuestring[0])
        snprintf(code, sizeof code, " (%.30s)", ec->valuestring);
    else if (cJSON_IsNumber(ec))
        snprintf(code, sizeof code, " (%.0f)", ec->valuedouble);
    if (em && msg && strcmp(em, msg) != 0)
        snprintf(out, outlen, "%.100s: %.100s%s", msg, em, code);
    else
        snprintf(out, outlen, "%.160s%s", em ? em : msg ? msg : "no reason given", code);
}

/* Whether doc is Goodcang's envelope, and whether it says success. */
static int envelope(const cJSON *doc)
{
    if (!cJSON_IsObject(doc))
        return GC_FOREIGN;
    const cJSON *ask = cJSON_GetObjectItemCaseSensitive(doc, "ask");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(doc, "code");
    if (cJSON_IsString(ask))
        return !strcmp(ask->valuestring, "Success") ? SYNC_OK : GC_REFUSED;
    if (cJSON_IsNumber(code) && !cJSON_GetObjectItemCaseSensitive(doc, "error"))
        return code->valuedouble == 1 ? SYNC_OK : GC_REFUSED;
    return GC_FOREIGN;
}

/* The verdict on an answer: SYNC_OK (with *doc parsed), SYNC_TRANSIENT, SYNC_AUTH, SYNC_PERMANENT
 * (an HTTP refusal), GC_REFUSED (ask = Failure) or GC_FOREIGN (not Goodcang's answer). */
static int verdict(struct http_req *r, cJSON **doc, char *err, size_t errlen)
{
    *doc = NULL;
    if (r->curl_code != 0) {
        snprintf(err, errlen, "no answer: %.200s", r->error);
        return SYNC_TRANSIENT;
    }
    if (r->too_large) {
        snprintf(err, errlen, "answer larger than %zu bytes", r->max_response);
        return SYNC_PERMANENT;
    }
    cJSON *d = json_parse(r->response ? r->response : "", r->response_len);
    int env = envelope(d);
    char why[220] = "";
    if (env != GC_FOREIGN)
        refusal_text(d, why, sizeof why);
    if (r->status == 408 || r->status == 429 || r->status >= 500 || r->status < 200) {
        snprintf(err, errlen, "HTTP %ld%s%s", r->status, why[0] ? ": " : "", why);
        cJSON_Delete(d);
        return SYNC_TRANSIENT;
    }
    if (r->status == 401 || r->status == 403) {
        snprintf(err, errlen, "credentials refused (HTTP %ld)%s%s", r->status, why[0] ? ": " : "",
                 why);
        cJSON_Delete(d);
        return SYNC_AUTH;
    }
    if (env == GC_FOREIGN) {
        const cJSON *te = cJSON_GetObjectItemCaseSensitive(d, "error");
        const char *tm = json_str(te, "message");
        if (tm)
            snprintf(err, errlen,
                     "not a Goodcang answer (HTTP %ld, an error of another API: %.150s)", r->status,
                     tm);
        else
            snprintf(err, errlen, "not a Goodcang answer (HTTP %ld, %zu bytes%s)", r->status,
                     r->response_len, d ? "" : ", not JSON");
        cJSON_Delete(d);
        return GC_FOREIGN;
    }
    if (r->status >= 300) {
        snprintf(err, errlen, "HTTP %ld: %s", r->status, why);
        cJSON_Delete(d);
        return SYNC_PERMANENT;
    }
    if (env == GC_REFUSED) {
        snprintf(err, errlen, "Goodcang refused: %s", why);
        *doc = d;
        return GC_REFUSED;
    }
    *doc = d;
    return SYNC_OK;
}

/* Whether a list answer says more pages follow. */
static bool more_pages(const cJSON *doc, int64_t page, int nrows)
{
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(doc, "nextPage");
    if (cJSON_IsBool(np))
        return cJSON_IsTrue(np);
    if (cJSON_IsString(np))
        return !strcmp(np->valuestring, "true") || !strcmp(np->valuestring, "1");
    if (cJSON_IsNumber(np))
        return np->valuedouble != 0;
    int64_t count;
    if (json_int(doc, "count", 0, INT64_MAX / 2, &count) == 0)
        return page * GC_PAGE < count;
    return nrows >= GC_PAGE;
}

/* One stock row: 1 = a row of another warehouse (skipped), 0 = read, -1 = bad (why in err). */
static int stock_row(const cJSON *it, const char *wh, char sku[TALLY_MAX_ID_LEN + 1],
                     int64_t *on_hand, char *err, size_t errlen)
{
    const char *s = json_str(it, "product_sku"), *w = json_str(it, "warehouse_code");
    int64_t sellable, reserved;
    if (!cJSON_IsObject(it) || !s || !mp_id_ok(s, strlen(s))) {
        snprintf(err, errlen, "a stock row without a valid product_sku");
        return -1;
    }
    if (w && strcmp(w, wh) != 0)
        return 1;
    if (json_int(it, "sellable", 0, TALLY_MAX_QTY, &sellable) != 0 ||
        json_int(it, "reserved", 0, TALLY_MAX_QTY, &reserved) != 0) {
        snprintf(err, errlen, "%.64s: sellable and reserved must be counts", s);
        return -1;
    }
    snprintf(sku, TALLY_MAX_ID_LEN + 1, "%s", s);
    *on_hand = sellable + reserved;
    return 0;
}

/* Goodcang's order_status in tally's words; NULL for a status the sources do not list. */
static const char *status_word(const char *s)
{
    static const struct {
        const char *gc, *tally;
    } map[] = {
        {"W", "accepted"},  /* 待发货: waiting to ship */
        {"D", "shipped"},   /* 已发货 */
        {"N", "exception"}, /* 异常订单: abnormal order */
        {"P", "exception"}, /* 问题件: problem parcel */
        {"X", "cancelled"}, /* 废弃: discarded */
    };
    for (size_t i = 0; s && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(s, map[i].gc))
            return map[i].tally;
    return NULL;
}

struct ob_row {
    const char *id, *status, *carrier, *tracking, *reason;
    const char *mark; /* order_desc: may hold a coordinator's mark (coord.h), or NULL */
    int64_t modified; /* -1 when absent */
};

/* One order row: 1 = another warehouse's (skipped), 0 = read, -1 = bad (why in err). */
static int order_row(const cJSON *it, const char *wh, struct ob_row *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    const char *w = json_str(it, "warehouse_code"), *st = json_str(it, "order_status");
    o->id = json_str(it, "reference_no");
    if (!cJSON_IsObject(it) || !o->id || !mp_id_ok(o->id, strlen(o->id))) {
        snprintf(err, errlen, "an order row without a valid reference_no");
        return -1;
    }
    if (w && strcmp(w, wh) != 0)
        return 1;
    o->status = status_word(st);
    if (!o->status) {
        snprintf(err, errlen, "order %.64s: unknown order_status %.20s", o->id, st ? st : "(none)");
        return -1;
    }
    o->modified = gc_time_parse(json_str(it, "date_modify"));
    o->mark = json_str(it, "order_desc");
    o->carrier = json_str(it, "shipping_method");
    o->tracking = json_str(it, "tracking_no");
    if (o->tracking && !o->tracking[0])
        o->tracking = NULL;
    if (o->tracking && !mp_id_ok(o->tracking, strlen(o->tracking))) {
        snprintf(err, errlen, "order %.64s: tracking_no is not a tracking number", o->id);
        return -1;
    }
    if (!strcmp(o->status, "shipped") && !o->tracking) {
        snprintf(err, errlen, "order %.64s: shipped without a tracking_no", o->id);
        return -1;
    }
    if (!strcmp(o->status, "exception") || !strcmp(o->status, "cancelled"))
        o->reason = json_str(it, "abnormal_problem_reason");
    if (o->reason && !o->reason[0])
        o->reason = NULL;
    return 0;
}

/* ---- pulls ---- */

static int64_t next_version(struct upstream *u)
{
    struct gc *g = u->conn;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    g->last_version = ms > g->last_version ? ms : g->last_version + 1;
    return g->last_version;
}

static void release_nothing(struct pull_page *pg)
{
    (void)pg;
}

static void release_page(struct pull_page *pg)
{
    call_free(pg->data);
}

/* Writes the round's position into cp->cursor: "<step>:<page>:<from>:<to>:<start>:<seen>". */
static void save_pos(struct checkpoint *cp, int step, int64_t pg, int64_t from, int64_t to,
                     int64_t start, int64_t seen)
{
    snprintf(cp->cursor, sizeof cp->cursor,
             "%d:%" PRId64 ":%" PRId64 ":%" PRId64 ":%" PRId64 ":%" PRId64, step, pg, from, to,
             start, seen);
}

static int load_pos(const char *cursor, int *step, int64_t *pg, int64_t *from, int64_t *to,
                    int64_t *start, int64_t *seen)
{
    return sscanf(cursor, "%d:%" SCNd64 ":%" SCNd64 ":%" SCNd64 ":%" SCNd64 ":%" SCNd64, step, pg,
                  from, to, start, seen) == 6 &&
                   *pg >= 1 && *pg < 1000000
               ? 0
               : -1;
}

/* The version is the read time: it must still be above every version the replica holds for
 * the warehouse, or the rows would be taken for stale and dropped (a clock set back across a
 * restart, a replica moved to another machine). Raises c->version (and the connector's last
 * version) above them; 0 or a TALLY_E_* code. */
static int version_above_held(struct gc_call *c, struct store *st, int64_t wh)
{
    sqlite3_stmt *s =
        store_stmt(st, "SELECT MAX(upstream_version) FROM stock WHERE warehouse = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, wh);
    int rc = sqlite3_step(s);
    int64_t held = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return store_error(st, rc, "stock version");
    struct gc *g = c->u->conn;
    if (c->version <= held) {
        log_warn("%s: stock read at %" PRId64 " ms, before the newest version held (%" PRId64
                 "): the clock went back; versions go on from there",
                 c->u->name, c->version, held);
        c->version = held + 1;
    }
    if (g && c->version > g->last_version)
        g->last_version = c->version;
    return 0;
}

static int apply_stock_rows(struct gc_call *c, const cJSON *doc, struct store *st, int64_t wh,
                            struct pull_page *pg)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data"), *it;
    int64_t bad = 0, now = store_now();
    char why[200] = "";
    int vr = version_above_held(c, st, wh);
    if (vr)
        return vr;
    cJSON_ArrayForEach(it, data)
    {
        char sku[TALLY_MAX_ID_LEN + 1];
        int64_t on_hand;
        int k = stock_row(it, remote_code(c->u), sku, &on_hand, why, sizeof why);
        if (k < 0) {
            bad++;
            log_warn("%s: inventory: %s", c->u->name, why);
        }
        if (k != 0)
            continue;
        int64_t onway = -1; /* goods on their way in: shown only, never on hand */
        if (json_int(it, "onway", 0, TALLY_MAX_QTY, &onway) != 0)
            onway = -1;
        bool logged = false;
        for (int i = 0; i < c->nlogged && !logged; i++)
            logged = !strcmp(c->logged[i], sku);
        int r = c->reconcile && c->drift_ok && c->step == GC_INV_FULL && !logged
                    ? whfeed_stock_unlogged(c->u, st, wh, sku, on_hand, onway, c->version, now, pg)
                    : whfeed_stock(c->u, st, wh, sku, on_hand, onway, c->version, now, c->reconcile,
                                   pg);
        if (r)
            return r;
    }
    if (bad)
        snprintf(pg->error, sizeof pg->error, "%" PRId64 " unreadable stock rows skipped: %s", bad,
                 why);
    return 0;
}

static int apply_inventory(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                           size_t errlen)
{
    struct gc_call *c = pg->data;
    int64_t wh;
    int r = whfeed_warehouse(c->u, st, &wh, err, errlen);
    if (r)
        return r;
    if (c->step == GC_INV_FULL)
        r = apply_stock_rows(c, c->doc, st, wh, pg);
    else if (c->doc2)
        r = apply_stock_rows(c, c->doc2, st, wh, pg);
    if (r)
        return r;
    if (pg->more) {
        save_pos(cp, c->step == GC_INV_FULL ? GC_INV_FULL : GC_INV_LOG, c->pg + 1, c->from, c->to,
                 c->start, c->seen);
        return 0;
    }
    cp->cursor[0] = 0;
    cp->version = c->version;
    if (c->step == GC_INV_FULL)
        /* The log rounds that follow start before this read began, in any server zone. */
        cp->modified_since = c->start - GC_ZONE_SLACK_S;
    else if (c->seen > cp->modified_since)
        cp->modified_since = c->seen;
    return 0;
}

static int apply_outbound(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                          size_t errlen)
{
    struct gc_call *c = pg->data;
    int64_t wh;
    int r = whfeed_warehouse(c->u, st, &wh, err, errlen);
    if (r)
        return r;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(c->doc, "data"), *it;
    int64_t bad = 0;
    char why[200] = "";
    cJSON_ArrayForEach(it, data)
    {
        struct ob_row o;
        int k = order_row(it, remote_code(c->u), &o, why, sizeof why);
        if (k < 0) {
            bad++;
            log_warn("%s: outbound: %s", c->u->name, why);
        }
        if (k != 0)
            continue;
        /* Only a date inside the window read moves the next window on: a server answers
         * none after modify_date_to, and a garbage date far ahead would leave every later
         * window empty (from > to) for good. */
        if (o.modified > c->seen && o.modified <= c->to)
            c->seen = o.modified;
        if ((r = whfeed_mark(c->u, wh, o.id, o.mark)) != 0)
            return r;
        r = whfeed_outbound(c->u, st, wh, o.id, o.status, o.carrier, o.tracking, o.reason,
                            o.modified > 0 ? o.modified : 0);
        if (r)
            return r;
    }
    if (bad)
        snprintf(pg->error, sizeof pg->error, "%" PRId64 " unreadable order rows skipped: %s", bad,
                 why);
    if (pg->more) {
        save_pos(cp, GC_OB_LIST, c->pg + 1, c->from, c->to, c->start, c->seen);
        return 0;
    }
    cp->cursor[0] = 0;
    if (c->seen > cp->modified_since)
        cp->modified_since = c->seen;
    cp->version++;
    return 0;
}

static void pull_done(struct gc_call *c)
{
    struct pull_page *pg = &c->page;
    pg->data = c;
    pg->release = release_page;
    sync_pull_done(c->u, c->stream, pg);
}

/* A stream's page failed: the stream's error, the link's when transient or auth. */
static void pull_failed(struct gc_call *c, int v)
{
    struct pull_page *pg = &c->page;
    pg->outcome = v == GC_REFUSED || v == GC_FOREIGN ? SYNC_PERMANENT : v;
    pg->apply = NULL;
    pg->more = false;
    pull_done(c);
}

static void on_skus(struct http_req *r)
{
    struct gc_call *c = r->data;
    struct pull_page *pg = &c->page;
    pg->retry_after_s = r->retry_after_s;
    int v = verdict(r, &c->doc2, pg->error, sizeof pg->error);
    if (v != SYNC_OK) {
        pull_failed(c, v);
        return;
    }
    c->version = next_version(c->u);
    pg->outcome = SYNC_OK;
    pull_done(c);
}

static void on_dlog(struct http_req *r);

/* A reconciliation page's log read (page c->dpg): 0, or -1 when it could not start. */
static int send_dlog(struct gc_call *c)
{
    jb_free(&c->body);
    memset(&c->body, 0, sizeof c->body);
    body_log(&c->body, remote_code(c->u), c->dfrom, store_now() + GC_ZONE_SLACK_S + 3600, c->dpg);
    return gc_send(c, "inventory/get_inventory_log", on_dlog);
}

/* The stock log after a reconciliation page's figures: the SKUs it names have moved. */
static void on_dlog(struct http_req *r)
{
    struct gc_call *c = r->data;
    struct pull_page *pg = &c->page;
    char why[256];
    cJSON *ld;
    int v = verdict(r, &ld, why, sizeof why);
    if (v == SYNC_TRANSIENT || v == SYNC_AUTH) {
        cJSON_Delete(ld);
        snprintf(pg->error, sizeof pg->error, "%s", why);
        pg->retry_after_s = r->retry_after_s;
        pull_failed(c, v);
        return;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(ld, "data"), *it;
    if (v != SYNC_OK || (data && !cJSON_IsNull(data) && !cJSON_IsArray(data))) {
        /* The figures stand; without the log no drift can be told from a change. */
        log_warn("%s: reconciliation's stock log read: %s: drift repaired, not counted", c->u->name,
                 v != SYNC_OK ? why : "a Goodcang list answer without a data array");
        cJSON_Delete(ld);
        c->drift_ok = false;
        pull_done(c);
        return;
    }
    int n = cJSON_IsArray(data) ? cJSON_GetArraySize(data) : 0;
    char(*more)[TALLY_MAX_ID_LEN + 1] =
        n > 0 ? realloc(c->logged, (size_t)(c->nlogged + n) * sizeof *c->logged) : c->logged;
    if (n > 0 && !more) {
        cJSON_Delete(ld);
        snprintf(pg->error, sizeof pg->error, "out of memory");
        pull_failed(c, SYNC_TRANSIENT);
        return;
    }
    c->logged = more;
    cJSON_ArrayForEach(it, data)
    {
        const char *s = json_str(it, "product_sku"), *w = json_str(it, "warehouse_code");
        if (!s || !mp_id_ok(s, strlen(s)) || strlen(s) > TALLY_MAX_ID_LEN ||
            (w && strcmp(w, remote_code(c->u)) != 0))
            continue;
        snprintf(c->logged[c->nlogged++], sizeof *c->logged, "%s", s);
    }
    bool next = n > 0 && more_pages(ld, c->dpg, n);
    cJSON_Delete(ld);
    if (next && c->dpg < GC_DLOG_PAGES) {
        c->dpg++;
        if (send_dlog(c) != 0) {
            snprintf(pg->error, sizeof pg->error, "could not start a request");
            pull_failed(c, SYNC_TRANSIENT);
        }
        return;
    }
    c->drift_ok = !next; /* too many movements to tell: repaired, not counted */
    pull_done(c);
}

static void on_pulled(struct http_req *r)
{
    struct gc_call *c = r->data;
    struct pull_page *pg = &c->page;
    pg->retry_after_s = r->retry_after_s;
    pg->total = -1;
    int v = verdict(r, &c->doc, pg->error, sizeof pg->error);
    if (v != SYNC_OK) {
        pull_failed(c, v);
        return;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(c->doc, "data");
    if (cJSON_IsNull(data) || (!data && c->step != GC_INV_FULL)) {
        data = NULL; /* an empty page */
    } else if (!cJSON_IsArray(data)) {
        snprintf(pg->error, sizeof pg->error, "a Goodcang list answer without a data array");
        {
            pull_failed(c, GC_FOREIGN);
            return;
        }
    }
    int n = data ? cJSON_GetArraySize(data) : 0;
    pg->outcome = SYNC_OK;
    pg->rows = n;
    pg->more = n > 0 && more_pages(c->doc, c->pg, n);
    json_int(c->doc, "count", 0, INT64_MAX / 2, &pg->total);
    if (c->stream == STREAM_OUTBOUND) {
        pg->apply = apply_outbound;
        {
            pull_done(c);
            return;
        }
    }
    pg->apply = apply_inventory;
    if (c->step == GC_INV_FULL) {
        c->version = next_version(c->u);
        if (c->reconcile && c->dfrom > 0) {
            /* Read now, after the figures: a SKU the log does not name since the last log
             * round has not moved, so a figure other than the replica's is drift. */
            c->dpg = 1;
            if (send_dlog(c) != 0) {
                snprintf(pg->error, sizeof pg->error, "could not start a request");
                pull_failed(c, SYNC_TRANSIENT);
            }
            return;
        }
        pull_done(c);
        return;
    }
    /* A log page: the SKUs it names (of this warehouse), read again. */
    char skus[GC_PAGE][80];
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, data)
    {
        const char *s = json_str(it, "product_sku"), *w = json_str(it, "warehouse_code");
        int64_t t = gc_time_parse(json_str(it, "ibl_add_time"));
        if (t > c->seen && t <= c->to) /* as for the order list (apply_outbound) */
            c->seen = t;
        if (!s || !mp_id_ok(s, strlen(s)) || (w && strcmp(w, remote_code(c->u)) != 0))
            continue;
        bool dup = false;
        for (int i = 0; i < k && !dup; i++)
            dup = !strcmp(skus[i], s);
        if (!dup && k < GC_PAGE)
            snprintf(skus[k++], sizeof skus[0], "%s", s);
    }
    if (k == 0) {
        c->version = next_version(c->u);
        {
            pull_done(c);
            return;
        }
    }
    c->step = GC_INV_SKUS;
    jb_free(&c->body);
    memset(&c->body, 0, sizeof c->body);
    body_inventory(&c->body, remote_code(c->u), 1, skus, k);
    if (gc_send(c, "inventory/get_product_inventory", on_skus) != 0) {
        snprintf(pg->error, sizeof pg->error, "could not start a request");
        {
            pull_failed(c, SYNC_TRANSIENT);
            return;
        }
    }
}

static void gc_pull(struct upstream *u, int stream, const struct checkpoint *cp)
{
    struct gc_call *c = call_new(u);
    if (!c)
        goto fail;
    c->stream = stream;
    c->reconcile = cp->reconcile;
    int64_t now = store_now();
    /* A reconciliation round is handed the stored modified_since: the last log round's. */
    if (stream == STREAM_INVENTORY && cp->reconcile && cp->modified_since > GC_OVERLAP_S)
        c->dfrom = cp->modified_since - GC_OVERLAP_S;
    int step;
    if (cp->cursor[0] &&
        load_pos(cp->cursor, &step, &c->pg, &c->from, &c->to, &c->start, &c->seen) == 0 &&
        (stream == STREAM_OUTBOUND ? step == GC_OB_LIST
                                   : (step == GC_INV_FULL || step == GC_INV_LOG))) {
        c->step = step;
    } else if (stream == STREAM_OUTBOUND) {
        c->step = GC_OB_LIST;
        c->pg = 1;
        c->from =
            cp->modified_since > 0 ? cp->modified_since - GC_OVERLAP_S : now - GC_FIRST_WINDOW_S;
        c->to = now + GC_ZONE_SLACK_S + 3600;
        c->start = now;
        c->seen = cp->modified_since;
    } else if (cp->version == 0 || cp->reconcile || cp->modified_since <= 0) {
        c->step = GC_INV_FULL;
        c->pg = 1;
        c->start = now;
    } else {
        c->step = GC_INV_LOG;
        c->pg = 1;
        c->from = cp->modified_since - GC_OVERLAP_S;
        c->to = now + GC_ZONE_SLACK_S + 3600;
        c->start = now;
        c->seen = cp->modified_since;
    }
    const char *call;
    switch (c->step) {
    case GC_INV_FULL:
        body_inventory(&c->body, remote_code(u), c->pg, NULL, 0);
        call = "inventory/get_product_inventory";
        break;
    case GC_INV_LOG:
        body_log(&c->body, remote_code(u), c->from, c->to, c->pg);
        call = "inventory/get_inventory_log";
        break;
    default:
        body_orders(&c->body, c->from, c->to, c->pg);
        call = "order/get_order_list";
    }
    if (gc_send(c, call, on_pulled) == 0)
        return;
    call_free(c);
fail:;
    struct pull_page failed = {
        .outcome = SYNC_TRANSIENT, .retry_after_s = -1, .release = release_nothing};
    snprintf(failed.error, sizeof failed.error, "could not start a request");
    sync_pull_done(u, stream, &failed);
}

/* ---- pushes ---- */

static void push_finish(struct gc_call *c)
{
    struct push_batch *b = c->batch;
    call_free(c);
    sync_push_done(b);
}

/* The batch's one row ends with outcome (and its error). */
static void push_item_done(struct gc_call *c, int outcome, const char *err)
{
    struct push_batch *b = c->batch;
    struct push_item *it = &b->items[0];
    if (outcome == SYNC_TRANSIENT || outcome == SYNC_AUTH) {
        b->outcome = outcome;
        snprintf(b->error, sizeof b->error, "%s", err);
    } else {
        b->outcome = SYNC_OK;
        it->outcome = outcome;
        if (outcome != SYNC_OK)
            snprintf(it->error, sizeof it->error, "%s", err);
    }
    push_finish(c);
}

static void on_pushed(struct http_req *r);

/* Sends the next request of a push: body built by the caller into c->body. */
static void push_send(struct gc_call *c, int step, const char *call)
{
    c->step = step;
    if (gc_send(c, call, on_pushed) != 0)
        push_item_done(c, SYNC_TRANSIENT, "could not start a request");
}

static void send_lookup(struct gc_call *c)
{
    jb_free(&c->body);
    memset(&c->body, 0, sizeof c->body);
    jb_lit(&c->body, "{");
    jb_kv_s(&c->body, "reference_no", c->batch->items[0].entity);
    jb_lit(&c->body, "}");
    push_send(c, GC_OB_LOOKUP, "order/get_order_by_ref_code");
}

static void send_create(struct gc_call *c)
{
    char err[256];
    jb_free(&c->body);
    memset(&c->body, 0, sizeof c->body);
    if (body_create_order(&c->body, &c->batch->items[0], remote_code(c->u),
                          c->u->wh->shipping_method, err, sizeof err) != 0) {
        push_item_done(c, SYNC_PERMANENT, err);
        return;
    }
    push_send(c, GC_OB_CREATE, "order/create_order");
}

/* The GRNs of a look-up page, read back: another coordinator's mark in a row's remark raises
 * the `coordinator` exception (coord_seen_notice). The list's rows name the remark `remark`
 * (GrnInfo.java), get_grn_detail names it `receiving_desc`, the create's field: both are read.
 * 0, or the first TALLY_E_* code. */
static int grn_marks(struct upstream *u, const cJSON *data)
{
    const cJSON *g;
    int first = 0;
    cJSON_ArrayForEach(g, data)
    {
        const char *ref = json_str(g, "reference_no");
        if (!ref || !mp_id_ok(ref, strlen(ref)))
            continue;
        const char *at = json_str(g, "create_at");
        int64_t created = at ? gc_time_parse(at) : -1;
        const char *names[] = {"remark", "receiving_desc"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            const char *text = json_str(g, names[i]);
            if (!text || !text[0])
                continue;
            int r = coord_seen_notice(u->d, u->code, ref, text, created > 0 ? created : 0);
            if (r && !first)
                first = r;
        }
    }
    return first;
}

static void send_grn_lookup(struct gc_call *c)
{
    jb_free(&c->body);
    memset(&c->body, 0, sizeof c->body);
    int64_t now = store_now();
    body_grn_list(&c->body, now - GC_GRN_LOOKUP_DAYS * 86400LL, now + GC_ZONE_SLACK_S + 3600,
                  ++c->lookups);
    push_send(c, GC_GRN_LOOKUP, "inbound_order/get_grn_list");
}

static void send_grn(struct gc_call *c)
{
    char err[256];
    jb_free(&c->body);
    memset(&c->body, 0, sizeof c->body);
    if (body_create_grn(&c->body, &c->batch->items[0], remote_code(c->u), err, sizeof err) != 0) {
        push_item_done(c, SYNC_PERMANENT, err);
        return;
    }
    push_send(c, GC_GRN_CREATE, "inbound_order/create_grn");
}

/* The order of a get_order_by_ref_code answer at warehouse wh, NULL when it holds none for ref
 * there. A reference_no is looked up across the account: an order of another of its
 * warehouses (one that gave the order up before tally sent it here) is not this warehouse's,
 * and its warehouse_code goes into other (else other is ""). */
static const cJSON *found_order(const cJSON *doc, const char *ref, const char *wh, char *other,
                                size_t othercap)
{
    other[0] = 0;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(doc, "data");
    if (cJSON_IsArray(d))
        d = cJSON_GetArrayItem(d, 0);
    const char *r = json_str(d, "reference_no"), *code = json_str(d, "order_code");
    const char *w = json_str(d, "warehouse_code");
    if (!cJSON_IsObject(d) || !code || !code[0] || (r && strcmp(r, ref) != 0))
        return NULL;
    if (w && strcmp(w, wh) != 0) {
        snprintf(other, othercap, "%.64s", w);
        return NULL;
    }
    return d;
}

/* Whether the found order o carries the payload's lines (units per SKU): 1 the same, 0 other
 * lines (the reference_no was used for another order: not this row's), -1 when the answer
 * names no items (nothing to compare: taken as the same). */
static int same_lines(const cJSON *o, const struct push_item *it)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(o, "items"), *x;
    if (!cJSON_IsArray(items) || cJSON_GetArraySize(items) == 0)
        return -1;
    msgpack_unpacked m;
    if (unpack(it, &m) != 0) {
        msgpack_unpacked_destroy(&m);
        return -1;
    }
    const msgpack_object *lines = mp_map_get(&m.data, "lines");
    int r = lines && lines->type == MSGPACK_OBJECT_ARRAY ? 1 : -1;
    /* Each side's units of each SKU named on either side. */
    for (uint32_t i = 0; r == 1 && i < lines->via.array.size; i++) {
        const msgpack_object *l = &lines->via.array.ptr[i];
        char sku[TALLY_MAX_ID_LEN + 1];
        int64_t want = 0, have = 0, q;
        if (l->type != MSGPACK_OBJECT_MAP || pl_str(l, "sku", sku, sizeof sku) != 0) {
            r = -1;
            break;
        }
        for (uint32_t k = 0; k < lines->via.array.size; k++) {
            char s2[TALLY_MAX_ID_LEN + 1];
            const msgpack_object *l2 = &lines->via.array.ptr[k];
            if (l2->type == MSGPACK_OBJECT_MAP && pl_str(l2, "sku", s2, sizeof s2) == 0 &&
                !strcmp(s2, sku) && pl_int(l2, "qty", 1, 1000000, &q) == 0)
                want += q;
        }
        cJSON_ArrayForEach(x, items)
        {
            const char *s = json_str(x, "product_sku");
            if (s && !strcmp(s, sku) && json_int(x, "quantity", 0, TALLY_MAX_QTY, &q) == 0)
                have += q;
        }
        if (want != have)
            r = 0;
    }
    /* and no SKU at Goodcang the payload does not name */
    cJSON_ArrayForEach(x, items)
    {
        const char *s = json_str(x, "product_sku");
        bool named = false;
        for (uint32_t k = 0; r == 1 && s && !named && k < lines->via.array.size; k++) {
            char s2[TALLY_MAX_ID_LEN + 1];
            const msgpack_object *l2 = &lines->via.array.ptr[k];
            named = l2->type == MSGPACK_OBJECT_MAP && pl_str(l2, "sku", s2, sizeof s2) == 0 &&
                    !strcmp(s2, s);
        }
        if (r == 1 && !named)
            r = 0;
    }
    msgpack_unpacked_destroy(&m);
    return r;
}

static void on_pushed(struct http_req *r)
{
    struct gc_call *c = r->data;
    struct push_batch *b = c->batch;
    struct push_item *it = &b->items[0];
    char err[256];
    cJSON *doc = NULL;
    b->retry_after_s = r->retry_after_s;
    int v = verdict(r, &doc, err, sizeof err);
    int step = c->step;
    if (v == SYNC_TRANSIENT || v == SYNC_AUTH || v == GC_FOREIGN) {
        cJSON_Delete(doc);
        /* Not Goodcang's answer to a create: it may have been applied; the next attempt looks
         * the reference up first (maybe_sent). */
        {
            push_item_done(c, v == GC_FOREIGN ? SYNC_TRANSIENT : v, err);
            return;
        }
    }
    if (step == GC_OB_LOOKUP) {
        char other[80] = "";
        const cJSON *o = v == SYNC_OK
                             ? found_order(doc, it->entity, remote_code(c->u), other, sizeof other)
                             : NULL;
        char code[80] = "", status[8] = "";
        if (o) {
            snprintf(code, sizeof code, "%s", json_str(o, "order_code"));
            const char *s = json_str(o, "order_status");
            snprintf(status, sizeof status, "%s", s ? s : "");
        }
        int same = o && it->okind == OBX_OUTBOUND ? same_lines(o, it) : 1;
        cJSON_Delete(doc);
        if (it->okind == OBX_OUTBOUND && o && same == 0) {
            /* The reference is taken by an order with other lines (not one tally sent):
             * never taken for this row's, never created twice; held. */
            char msg[512];
            snprintf(msg, sizeof msg,
                     "Goodcang already has an order with reference_no %.64s (%.40s) with other"
                     " lines: not this outbound order; settle it at Goodcang, then tally outbox"
                     " retry or discard",
                     it->entity, code);
            push_item_done(c, SYNC_PERMANENT, msg);
            return;
        }
        if (it->okind == OBX_OUTBOUND) {
            if (o) {
                if (c->refused[0])
                    log_info("%s: create of outbound order %s refused (%s), but Goodcang has it"
                             " (%s): done",
                             c->u->name, it->entity, c->refused, code);
                push_item_done(c, SYNC_OK, "");
            } else if (c->refused[0] && other[0]) {
                char msg[512];
                snprintf(msg, sizeof msg,
                         "%.100s (Goodcang has reference_no %.64s at warehouse %.64s)", c->refused,
                         it->entity, other);
                push_item_done(c, SYNC_PERMANENT, msg);
            } else if (c->refused[0]) {
                push_item_done(c, SYNC_PERMANENT, c->refused);
            } else {
                send_create(c);
            }
            return;
        }
        /* a cancel */
        if (!o) {
            char msg[512];
            if (other[0])
                snprintf(msg, sizeof msg,
                         "no outbound order %.64s at Goodcang warehouse %.64s to cancel (its"
                         " reference_no is an order of warehouse %.64s)",
                         it->entity, remote_code(c->u), other);
            else
                snprintf(msg, sizeof msg, "no outbound order %.64s at Goodcang to cancel",
                         it->entity);
            {
                push_item_done(c, SYNC_PERMANENT, msg);
                return;
            }
        }
        if (!strcmp(status, "X")) {
            push_item_done(c, SYNC_OK, "");
            return;
        }
        if (!strcmp(status, "D")) {
            snprintf(err, sizeof err, "outbound order %.64s was already shipped", it->entity);
            {
                push_item_done(c, SYNC_PERMANENT, err);
                return;
            }
        }
        jb_free(&c->body);
        memset(&c->body, 0, sizeof c->body);
        jb_lit(&c->body, "{");
        jb_kv_s(&c->body, "order_code", code);
        jb_lit(&c->body, ",");
        jb_kv_s(&c->body, "reason", "cancelled by the seller");
        jb_lit(&c->body, "}");
        {
            push_send(c, GC_OB_CANCEL, "order/cancel_order");
            return;
        }
    }
    if (step == GC_GRN_LOOKUP) {
        const cJSON *data = v == SYNC_OK ? cJSON_GetObjectItemCaseSensitive(doc, "data") : NULL;
        const cJSON *g;
        bool found = false;
        int mr = grn_marks(c->u, data);
        if (mr != 0)
            log_warn("%s: GRN list: another coordinator's mark not recorded (error %d)", c->u->name,
                     mr);
        cJSON_ArrayForEach(g, data)
        {
            const char *ref = json_str(g, "reference_no");
            found = found || (ref && !strcmp(ref, it->entity));
        }
        bool more = v == SYNC_OK && !found && cJSON_GetArraySize(data) > 0 &&
                    more_pages(doc, c->lookups, cJSON_GetArraySize(data));
        cJSON_Delete(doc);
        if (found) {
            if (c->refused[0])
                log_info("%s: inbound notice %s refused (%s), but Goodcang has it: done",
                         c->u->name, it->entity, c->refused);
            push_item_done(c, SYNC_OK, "");
            return;
        }
        if (v != SYNC_OK) {
            push_item_done(c, SYNC_PERMANENT, c->refused[0] ? c->refused : err);
            return;
        }
        if (more && c->lookups < GC_LOOKUP_PAGES) {
            send_grn_lookup(c);
            return;
        }
        if (c->refused[0]) {
            push_item_done(c, SYNC_PERMANENT, c->refused);
            return;
        }
        {
            send_grn(c);
            return;
        }
    }
    /* create_order, cancel_order, create_grn */
    if (v == SYNC_OK) {
        if (step == GC_OB_CANCEL) {
            int64_t cs = 0;
            if (json_int(doc, "cancel_status", 0, 100, &cs) == 0 && cs != 2)
                log_info("%s: cancel of %s asked (cancel_status %" PRId64 ")", c->u->name,
                         it->entity, cs);
        }
        cJSON_Delete(doc);
        {
            push_item_done(c, SYNC_OK, "");
            return;
        }
    }
    cJSON_Delete(doc);
    if ((step == GC_OB_CREATE || step == GC_GRN_CREATE) && !c->refused[0]) {
        /* A refused create may be a refused duplicate reference_no (the real system's answer
         * to one is not shown): an order / GRN already there (an earlier attempt whose answer
         * was lost, a look-up that failed) is done, not held. Looked up once, then held. */
        snprintf(c->refused, sizeof c->refused, "%s", err);
        if (step == GC_OB_CREATE) {
            send_lookup(c);
        } else {
            c->lookups = 0;
            send_grn_lookup(c);
        }
        return;
    }
    push_item_done(c, SYNC_PERMANENT, err);
}

static void gc_push(struct upstream *u, struct push_batch *b)
{
    struct gc_call *c = call_new(u);
    if (!c) {
        b->outcome = SYNC_TRANSIENT;
        snprintf(b->error, sizeof b->error, "out of memory");
        {
            sync_push_done(b);
            return;
        }
    }
    c->batch = b;
    b->retry_after_s = -1;
    struct push_item *it = &b->items[0];
    for (int i = 1; i < b->n; i++)
        b->items[i].outcome = SYNC_TRANSIENT; /* one row per call (push_limit 1) */
    switch (it->okind) {
    case OBX_OUTBOUND:
        if (it->maybe_sent)
            send_lookup(c);
        else
            send_create(c);
        return;
    case OBX_OUTBOUND_CANCEL:
        send_lookup(c);
        return;
    case OBX_INBOUND:
        if (it->maybe_sent)
            send_grn_lookup(c);
        else
            send_grn(c);
        return;
    default: {
        char err[256];
        snprintf(err, sizeof err,
                 "a Goodcang warehouse takes no %s rows: its stock is kept by Goodcang", it->kind);
        push_item_done(c, SYNC_PERMANENT, err);
    }
    }
}

const struct connector_ops conn_goodcang_ops = {
    .kind = "goodcang",
    .caps = CAP_INBOUND_NOTICE | CAP_OUTBOUND | CAP_STOCK_LOG,
    .nstreams = 2,
    .streams = gc_streams,
    .push_limit = 1,
    .init = gc_init,
    .pull = gc_pull,
    .push = gc_push,
    .free = gc_free,
    .reload = gc_reload,
};
