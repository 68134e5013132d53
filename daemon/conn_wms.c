/*
 * Connector for the tally Warehouse API v1 (../shared/UPSTREAM.md §2): one warehouse system.
 *
 * Streams: inventory (GET /v1/inventory, by version, paged by cursor) and outbound (GET
 * /v1/outbound-orders, status changes of fulfilment requests, handed to fulfil.c). Push:
 * movements in batches (POST /v1/movements, idempotent by id forever), transfers one by one
 * (POST /v1/transfers), outbound orders one by one (POST /v1/outbound-orders: the order id is
 * the warehouse's idempotency key; 409 = the same id with other content: held) and their
 * cancels (POST /v1/outbound-orders/{id}/cancel; 409 = already shipped: held, and fulfil.c
 * turns that into a cancelled-after-pick exception).
 * Classification: no answer, 429 and 5xx are transient; 401 and 403 refuse the token, not the
 * request (SYNC_AUTH: the whole warehouse waits for a new token, its rows stay pending); other
 * 4xx are permanent; a 2xx whose body cannot be read is transient (every request here is
 * idempotent, so sending it again is safe).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "catalog.h"
#include "codec.h"
#include "fulfil.h"
#include "json.h"
#include "log.h"
#include "secret.h"
#include "stock.h"
#include "tally/protocol.h"
#include "outbox.h"
#include "upstream.h"
#include "whfeed.h"
#include "worker.h"

#define INVENTORY_PAGE 5000
/* An inventory row is {"sku" (at most 64 bytes), "on_hand", "inbound", "version",
 * "updated_at"}: under 256 bytes; 512 leaves room for escapes and fields not read here. A page
 * larger than INVENTORY_PAGE such rows is not an honest page: the pull fails (http.h). Other
 * answers (outbound pages, whose size the warehouse picks, and push results) are bounded by
 * HTTP_MAX_ANSWER (outbound pages ask for OUTBOUND_PAGE orders, below). */
#define INVENTORY_ROW_MAX 512
/* How far past its slice (WORKER_SLICE_US) an inventory slice may go while nothing waits for
 * the writer lock (inventory_slice), in CPU microseconds. */
#define INVENTORY_SLICE_MAX_US 20000
#define INVENTORY_MAX_ANSWER ((size_t)INVENTORY_PAGE * INVENTORY_ROW_MAX + 65536)
/* Outbound orders per feed page, asked for: left to the warehouse (up to 5,000), an honest page
 * of orders of up to 100 lines could hold far more than JSON_MAX_VALUES values. 100 orders of
 * 100 lines are about 53,000 values and half a MiB. */
#define OUTBOUND_PAGE 100
/* The Warehouse API takes 1-1,000 movements per request (tests/sim/README.md, `POST
 * /v1/movements`: 413 beyond): a drain after an outage goes in as few calls, transactions and
 * looks as the API allows (bench_drain.sh). */
#define MOVEMENTS_PER_CALL 1000

struct wms_call;

struct wms {
    char token[1024];        /* secret */
    struct call_link *calls; /* in flight, so a stop can release them */
};

/* One request in flight: a page pull or a push. */
struct wms_call {
    struct http_req req;
    struct upstream *u;
    int stream;
    struct push_batch *batch;
    char url[1100];
    struct jbuf body;
    struct pull_page page;
    cJSON *doc;
    int64_t new_version;
    char new_cursor[256];
    bool reconcile;
    /* An inventory page is read in place (inv_scan): the items array's span in the answer,
     * the next row's offset, and what the rows so far found. */
    size_t items_at, items_end, pos;
    int64_t skipped, maxv;
    char why[160]; /* the first skipped row's SKU and reason */
    /* The page's readable rows, read before its write job by inventory_prepare (then the
     * answer's body is freed); the slices apply them from rows[ri]. NULL: the slices read the
     * body themselves. */
    struct whfeed_row *rows;
    size_t nrows, ri;
    size_t si;             /* inventory_make_skus: the next row whose SKU it looks at */
    struct call_link link; /* in the connector's list while in flight */
};

enum { STREAM_INVENTORY, STREAM_OUTBOUND };
static const char *const wms_streams[] = {"inventory", "outbound"};

static void call_free(struct wms_call *c);

static int wms_init(struct upstream *u, char *err, size_t errlen)
{
    struct wms *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (secret_read(u->wh->token_file, w->token, sizeof w->token, err, errlen) != 0) {
        free(w);
        return -1;
    }
    u->conn = w;
    return 0;
}

/* The token file changed (or `tally sync` asks after a refused token): read it again. */
static int wms_reload(struct upstream *u, char *err, size_t errlen)
{
    struct wms *w = u->conn;
    char token[sizeof w->token];
    if (!w || secret_read(u->wh->token_file, token, sizeof token, err, errlen) != 0)
        return -1;
    memcpy(w->token, token, sizeof token); /* requests in flight copied the old one */
    explicit_bzero(token, sizeof token);
    return 0;
}

static void wms_free(struct upstream *u)
{
    struct wms *w = u->conn;
    if (!w)
        return;
    /* Requests abandoned by the stop: pages are dropped (their rows come again), batches go
     * back to the engine, which drops them too (their rows stay 'inflight' and are sent
     * again at the next start). */
    while (w->calls) {
        struct wms_call *c = CALL_OWNER(w->calls, struct wms_call);
        struct push_batch *b = c->batch;
        call_free(c);
        if (b)
            sync_push_done(b);
    }
    memset(w->token, 0, sizeof w->token);
    free(w);
    u->conn = NULL;
}

static struct wms_call *call_new(struct upstream *u)
{
    struct wms_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    struct wms *w = u->conn;
    call_link_add(&w->calls, &c->link);
    c->u = u;
    c->req.data = c;
    c->req.auth_bearer = ((struct wms *)u->conn)->token;
    upstream_timeouts(u, &c->req);
    c->page.retry_after_s = -1;
    return c;
}

static void call_free(struct wms_call *c)
{
    struct wms *w = c->u->conn;
    call_link_remove(w ? &w->calls : NULL, &c->link);
    http_req_reset(&c->req);
    jb_free(&c->body);
    cJSON_Delete(c->doc);
    free(c->rows);
    free(c);
}

/* Transport-level verdict: SYNC_OK when a 2xx arrived, else transient/permanent + message. */
static int classify(struct http_req *r, char *err, size_t errlen)
{
    if (r->curl_code != 0) {
        snprintf(err, errlen, "no answer: %.200s", r->error);
        return SYNC_TRANSIENT;
    }
    if (r->status >= 200 && r->status < 300)
        return SYNC_OK;
    const char *msg = "";
    cJSON *doc = json_parse(r->response, r->response_len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    if (e && json_str(e, "message"))
        msg = json_str(e, "message");
    snprintf(err, errlen, "HTTP %ld%s%.200s", r->status, msg[0] ? ": " : "", msg);
    cJSON_Delete(doc);
    if (r->status == 429 || r->status >= 500 || r->status == 408)
        return SYNC_TRANSIENT;
    if (r->status == 401 || r->status == 403)
        return SYNC_AUTH;
    return SYNC_PERMANENT;
}

/* ---- pulls ---- */

/* ---- inventory pages read in place ----
 *
 * An inventory page is up to INVENTORY_PAGE rows: parsed with cJSON it is some 30,000
 * allocations and several MB held while it waits to be applied. It is read in place instead:
 * on the loop, one pass checks the whole answer is well-formed JSON (strings, numbers,
 * literals, nesting up to JSON_SCAN_DEPTH) and finds "items", "next_cursor" and "version";
 * on the worker, each row is read from the answer's bytes as it is applied. A row that is not
 * an object, lacks a field or holds one of the wrong type or range is skipped and counted, as
 * with cJSON (json_int's readings: an integral number, or a string of digits). */
#define JSON_SCAN_DEPTH 32
#define JSON_SCAN_INT_MAX 9007199254740992.0 /* 2^53, as json.c: doubles are exact up to here */

struct jscan {
    const char *p, *end;
};

static void js_ws(struct jscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* A string at s->p: its bytes between the quotes (escapes undecoded) in *at, *len. */
static bool js_string(struct jscan *s, const char **at, size_t *len, bool *escaped)
{
    if (s->p >= s->end || *s->p != '"')
        return false;
    const char *q = ++s->p;
    bool esc = false;
    while (q < s->end && *q != '"') {
        unsigned char ch = (unsigned char)*q;
        if (ch < 0x20)
            return false;
        if (ch == '\\') {
            esc = true;
            if (++q >= s->end)
                return false;
            if (*q == 'u') {
                for (int k = 1; k <= 4; k++)
                    if (q + k >= s->end || !strchr("0123456789abcdefABCDEF", q[k]) || !q[k])
                        return false;
                q += 4;
            } else if (!strchr("\"\\/bfnrt", *q) || !*q) {
                return false;
            }
        }
        q++;
    }
    if (q >= s->end)
        return false;
    if (at)
        *at = s->p;
    if (len)
        *len = (size_t)(q - s->p);
    if (escaped)
        *escaped = esc;
    s->p = q + 1;
    return true;
}

static bool js_number(struct jscan *s)
{
    const char *q = s->p;
    if (q < s->end && *q == '-')
        q++;
    if (q >= s->end || *q < '0' || *q > '9')
        return false;
    if (*q == '0')
        q++;
    else
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    if (q < s->end && *q == '.') {
        if (++q >= s->end || *q < '0' || *q > '9')
            return false;
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < s->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < s->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= s->end || *q < '0' || *q > '9')
            return false;
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    }
    s->p = q;
    return true;
}

static bool js_value(struct jscan *s, int depth);

/* An array at s->p; *n counts its elements (may be NULL). */
static bool js_array(struct jscan *s, int depth, int64_t *n)
{
    s->p++;
    js_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return true;
    }
    for (;;) {
        if (!js_value(s, depth + 1))
            return false;
        if (n)
            (*n)++;
        js_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return true;
        }
        return false;
    }
}

static bool js_object(struct jscan *s, int depth)
{
    s->p++;
    js_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return true;
    }
    for (;;) {
        js_ws(s);
        if (!js_string(s, NULL, NULL, NULL))
            return false;
        js_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return false;
        s->p++;
        if (!js_value(s, depth + 1))
            return false;
        js_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return true;
        }
        return false;
    }
}

static bool js_lit(struct jscan *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool js_value(struct jscan *s, int depth)
{
    js_ws(s);
    if (s->p >= s->end || depth > JSON_SCAN_DEPTH)
        return false;
    switch (*s->p) {
    case '{':
        return js_object(s, depth);
    case '[':
        return js_array(s, depth, NULL);
    case '"':
        return js_string(s, NULL, NULL, NULL);
    case 't':
        return js_lit(s, "true");
    case 'f':
        return js_lit(s, "false");
    case 'n':
        return js_lit(s, "null");
    default:
        return js_number(s);
    }
}

/* json_int's reading of a value's bytes [at, end): an integral number, or a string of digits
 * (without escapes), within [min, max]. */
static int js_int(const char *at, const char *end, int64_t min, int64_t max, int64_t *out)
{
    char buf[64];
    bool str = at < end && *at == '"';
    if (str) {
        at++;
        end--;
    }
    size_t n = (size_t)(end - at);
    if (n == 0 || n >= sizeof buf)
        return -1;
    if (!str) {
        /* The common case without strtod: up to 15 digits, an optional '-' (below 2^53, so
         * the same value strtod's double would give). */
        size_t k = *at == '-' ? 1 : 0;
        if (n > k && n - k <= 15) {
            int64_t v = 0;
            size_t i = k;
            while (i < n && at[i] >= '0' && at[i] <= '9')
                v = v * 10 + (at[i++] - '0');
            if (i == n) {
                v = k ? -v : v;
                if (v < min || v > max)
                    return -1;
                *out = v;
                return 0;
            }
        }
    }
    memcpy(buf, at, n);
    buf[n] = 0;
    int64_t x;
    char *stop;
    if (str) {
        if (memchr(buf, '\\', n))
            return -1;
        errno = 0;
        long long ll = strtoll(buf, &stop, 10);
        if (*stop || errno)
            return -1;
        x = ll;
    } else {
        double d = strtod(buf, &stop);
        if (*stop || !isfinite(d) || d != floor(d) || fabs(d) > JSON_SCAN_INT_MAX)
            return -1;
        x = (int64_t)d;
    }
    if (x < min || x > max)
        return -1;
    *out = x;
    return 0;
}

/* The top-level pass over an inventory answer (on the loop): 0, or -1 when it is not a
 * well-formed object with an "items" array and a "version". */
static int inv_scan(struct wms_call *c, const char *body, size_t len, int64_t *rows)
{
    struct jscan s = {body, body + len};
    bool have_items = false, have_version = false;
    *rows = 0;
    js_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return -1;
    s.p++;
    js_ws(&s);
    if (s.p < s.end && *s.p == '}')
        return -1;
    for (;;) {
        const char *key;
        size_t klen;
        js_ws(&s);
        if (!js_string(&s, &key, &klen, NULL))
            return -1;
        js_ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return -1;
        s.p++;
        js_ws(&s);
        const char *v = s.p;
        if (klen == 5 && !memcmp(key, "items", 5) && !have_items) {
            if (s.p >= s.end || *s.p != '[')
                return -1;
            c->items_at = (size_t)(s.p - body);
            if (!js_array(&s, 1, rows))
                return -1;
            c->items_end = (size_t)(s.p - body);
            have_items = true;
        } else if (!js_value(&s, 1)) {
            return -1;
        } else if (klen == 7 && !memcmp(key, "version", 7) && !have_version) {
            if (js_int(v, s.p, 0, INT64_MAX / 2, &c->new_version) != 0)
                return -1;
            have_version = true;
        } else if (klen == 11 && !memcmp(key, "next_cursor", 11) && !c->new_cursor[0]) {
            size_t n = (size_t)(s.p - v);
            if (*v == '"') {
                /* A cursor is passed back as it came; one with escapes is not read here. */
                if (memchr(v, '\\', n) || n - 2 >= sizeof c->new_cursor)
                    return -1;
                memcpy(c->new_cursor, v + 1, n - 2);
                c->new_cursor[n - 2] = 0;
            } else if (*v != 'n') { /* a number (null: none) */
                int64_t x;
                if (*v == 't' || *v == 'f' || js_int(v, s.p, INT64_MIN, INT64_MAX, &x) != 0)
                    return -1;
                snprintf(c->new_cursor, sizeof c->new_cursor, "%" PRId64, x);
            }
        }
        js_ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        if (s.p < s.end && *s.p == '}') {
            s.p++;
            break;
        }
        return -1;
    }
    js_ws(&s);
    return s.p == s.end && have_items && have_version ? 0 : -1;
}

/* One inventory row read in place: 0 with the fields (sku copied, NUL-terminated), 1 when the
 * row is unreadable (skipped and counted). *next is the offset after the row. */
struct inv_row {
    char sku[TALLY_MAX_ID_LEN + 1];
    int64_t on_hand, version, at, inbound;
    const char *bad; /* an unreadable row: why (for the log) */
};

static int inv_row(const char *body, size_t from, size_t to, size_t *next, struct inv_row *row,
                   int64_t now)
{
    struct jscan s = {body + from, body + to};
    js_ws(&s);
    if (s.p < s.end && (*s.p == ',' || *s.p == '['))
        s.p++;
    js_ws(&s);
    const char *start = s.p;
    bool ok = s.p < s.end && *s.p == '{';
    row->sku[0] = 0;
    row->bad = "not an object";
    if (!ok) {
        js_value(&s, 1); /* well-formed: the top-level pass said so */
        *next = (size_t)(s.p - body);
        return 1;
    }
    bool have_sku = false, have_oh = false, have_v = false, seen_at = false, seen_in = false;
    bool sku_ok = true, oh_ok = true, v_ok = true;
    row->at = now;
    row->inbound = -1;
    s.p++;
    js_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
        *next = (size_t)(s.p - body);
        return 1;
    }
    for (;;) {
        const char *key;
        size_t klen;
        js_ws(&s);
        js_string(&s, &key, &klen, NULL);
        js_ws(&s);
        s.p++; /* ':' */
        js_ws(&s);
        const char *v = s.p;
        js_value(&s, 2);
        /* The first of a repeated name counts, as cJSON's lookup reads it. */
        if (klen == 3 && !memcmp(key, "sku", 3) && !have_sku) {
            size_t n = (size_t)(s.p - v);
            have_sku = true;
            if (*v != '"' || n - 2 > TALLY_MAX_ID_LEN || memchr(v, '\\', n))
                sku_ok = false; /* an id never needs an escape (mp_id_ok) */
            else {
                memcpy(row->sku, v + 1, n - 2);
                row->sku[n - 2] = 0;
            }
        } else if (klen == 7 && !memcmp(key, "on_hand", 7) && !have_oh) {
            have_oh = true;
            if (js_int(v, s.p, -TALLY_MAX_QTY, TALLY_MAX_QTY, &row->on_hand) != 0)
                oh_ok = false;
        } else if (klen == 7 && !memcmp(key, "version", 7) && !have_v) {
            have_v = true;
            if (js_int(v, s.p, 0, INT64_MAX / 2, &row->version) != 0)
                v_ok = false;
        } else if (klen == 10 && !memcmp(key, "updated_at", 10) && !seen_at) {
            seen_at = true;
            if (js_int(v, s.p, 0, 253402300799LL, &row->at) != 0)
                row->at = now;
        } else if (klen == 7 && !memcmp(key, "inbound", 7) && !seen_in) {
            seen_in = true;
            if (js_int(v, s.p, 0, TALLY_MAX_QTY, &row->inbound) != 0)
                row->inbound = -1;
        }
        js_ws(&s);
        if (s.p < s.end && *s.p == ',') {
            s.p++;
            continue;
        }
        s.p++; /* '}' */
        break;
    }
    (void)start;
    *next = (size_t)(s.p - body);
    if (!have_sku || !sku_ok || !mp_id_ok(row->sku, strlen(row->sku))) {
        row->sku[0] = 0;
        row->bad = "no valid sku";
    } else if (!have_oh || !oh_ok) {
        row->bad = "on_hand is not an integer within +-10^12";
    } else if (!have_v || !v_ok) {
        row->bad = "version is not an integer within 0..2^62";
    } else {
        row->bad = NULL;
    }
    return row->bad ? 1 : 0;
}

/* The next row of the page after c->pos (the items array, from inv_scan): 1 with *row, 0 for
 * a row that is unreadable (skipped), -1 past the last row. */
static int inv_next(struct wms_call *c, struct inv_row *row, int64_t now)
{
    const char *body = c->req.response;
    if (c->pos == 0)
        c->pos = c->items_at; /* at the '[' */
    /* Rows are separated by ',' up to the array's closing ']' (items_end - 1). */
    if (c->pos >= c->items_end - 1)
        return -1;
    struct jscan probe = {body + c->pos, body + c->items_end - 1};
    js_ws(&probe);
    if (probe.p < probe.end && *probe.p == '[')
        probe.p++;
    js_ws(&probe);
    if (probe.p >= probe.end) { /* an empty array, or only blanks left */
        c->pos = c->items_end - 1;
        return -1;
    }
    size_t next;
    int k = inv_row(body, c->pos, c->items_end - 1, &next, row, now);
    c->pos = next;
    return k == 0 ? 1 : 0;
}

/* The shortest row that can be read: every shorter element of "items" is skipped. */
#define INV_ROW_MIN ((int64_t)sizeof "{\"sku\":\"A\",\"on_hand\":0,\"version\":0}" - 1)

/* A row read, as whfeed_stock_batch takes it. */
static void feed_row(struct whfeed_row *w, const struct inv_row *row)
{
    memcpy(w->sku, row->sku, sizeof w->sku);
    w->on_hand = row->on_hand;
    w->inbound = row->inbound;
    w->version = row->version;
    w->at = row->at;
}

/* An unreadable row skipped: counted, and the first one's reason kept, with its SKU when that
 * is printable (never raw bytes). */
static void note_skipped(struct wms_call *c, const struct inv_row *row)
{
    if (c->skipped++ == 0)
        snprintf(c->why, sizeof c->why, "%s%s%s", row->sku[0] ? row->sku : "",
                 row->sku[0] ? ": " : "a row with ", row->bad ? row->bad : "unreadable");
}

/* The page's rows into c->rows (inventory_prepare); 0, or -1 when out of memory (c->rows
 * stays NULL). The array holds at most as many rows as the items' bytes can hold readable ones
 * (INV_ROW_MIN each), not one per element: a page of short elements that are skipped (`[1,1,
 * ...]`, 2 bytes each) would otherwise take an array ~50 times the answer's size. */
static int read_rows(struct wms_call *c, int64_t nmax, int64_t now)
{
    int64_t fit = (int64_t)(c->items_end - c->items_at) / INV_ROW_MIN + 1;
    if (nmax > fit)
        nmax = fit;
    if (nmax <= 0)
        nmax = 1;
    struct whfeed_row *rows = malloc((size_t)nmax * sizeof *rows);
    if (!rows)
        return -1;
    size_t n = 0;
    struct inv_row row;
    int k;
    while ((k = inv_next(c, &row, now)) >= 0) {
        if (k == 0) {
            note_skipped(c, &row);
            continue;
        }
        if (n == (size_t)nmax) { /* more rows than inv_scan counted or fit: cannot be */
            free(rows);
            return -1;
        }
        feed_row(&rows[n++], &row);
        if (row.version > c->maxv)
            c->maxv = row.version;
    }
    c->rows = rows;
    c->nrows = n;
    c->ri = 0;
    return 0;
}

/* pull_page.prepare (upstream.h): on a pool thread before the page's write job, the rows are
 * read out of the answer, which is then freed (the rows take about its size), so that the
 * writer only writes them, while the next page is read beside it. */
static void inventory_prepare(struct pull_page *pg)
{
    struct wms_call *c = pg->data;
    if (c->rows || c->pos != 0)
        return; /* read already, or a slice has begun reading the body */
    int64_t skipped = c->skipped, maxv = c->maxv;
    char why[sizeof c->why];
    memcpy(why, c->why, sizeof why);
    if (read_rows(c, pg->rows, store_now()) != 0) {
        /* the slices read the body themselves, from its start */
        c->pos = 0;
        c->skipped = skipped;
        c->maxv = maxv;
        memcpy(c->why, why, sizeof why);
        return;
    }
    http_req_drop_response(&c->req);
}

/* pull_page.make_skus (upstream.h): the placeholders of the prepared rows' SKUs, 64 rows to a
 * statement (whfeed_skus_batch), sliced as inventory_slice is; the last rows that do not fill a
 * batch are left to the slices. A page whose first 64 SKUs are all known (every page of an
 * initial sync after the first warehouse's, and of every later round) stops there: its SKUs,
 * if any is new, are made by the slices, one statement for each batch that has one. */
static int inventory_make_skus(struct pull_page *pg, struct store *st, int64_t until_us, bool *done)
{
    struct wms_call *c = pg->data;
    *done = true;
    if (!c->rows || c->si + WHFEED_BATCH > c->nrows)
        return 0;
    struct whfeed_skus s;
    int r = whfeed_skus_begin(st, &s);
    if (r != 0)
        return r < 0 ? r : 0; /* not allowed: the slices make them */
    while (c->si + WHFEED_BATCH <= c->nrows) {
        bool first = c->si == 0;
        int made;
        if ((r = whfeed_skus_batch(st, &s, &c->rows[c->si], pg->ids, &made)) != 0)
            return r;
        c->si += WHFEED_BATCH;
        if (first && made == 0) {
            c->si = c->nrows;
            break;
        }
        int64_t clock = sync_slice_clock_us();
        if (clock >= until_us &&
            (store_writer_wanted() || clock >= until_us + INVENTORY_SLICE_MAX_US)) {
            *done = c->si + WHFEED_BATCH > c->nrows;
            break;
        }
    }
    return whfeed_skus_end(st, &s);
}

/* inventory_slice over the rows inventory_prepare read: the same batches and slice ends. */
static int prepared_slice(struct wms_call *c, struct pull_page *pg, struct store *st, int64_t wh,
                          int64_t until_us, bool *finished)
{
    int r;
    unsigned n = 0;
    while (c->ri < c->nrows) {
        const struct whfeed_row *w = &c->rows[c->ri];
        if (!c->reconcile) {
            size_t m = c->nrows - c->ri < WHFEED_BATCH ? c->nrows - c->ri : WHFEED_BATCH;
            if ((r = whfeed_stock_batch(c->u, st, wh, w, (int)m, pg)) != 0)
                return r;
            c->ri += m;
        } else {
            if ((r = whfeed_stock(c->u, st, wh, w->sku, w->on_hand, w->inbound, w->version, w->at,
                                  true, pg)) != 0)
                return r;
            c->ri++;
            if ((++n & 31) != 0)
                continue;
        }
        /* as inventory_slice: past until_us while nobody waits for the writer lock, on up to
         * INVENTORY_SLICE_MAX_US */
        int64_t clock = sync_slice_clock_us();
        if (clock >= until_us &&
            (store_writer_wanted() || clock >= until_us + INVENTORY_SLICE_MAX_US))
            break;
    }
    *finished = c->ri >= c->nrows;
    return 0;
}

/* Applies the page's inventory rows from where the last call stopped, until `until_us`
 * (sync_slice_clock_us) or the end; *finished once none is left. Uses only `st` and the page (it
 * runs on a worker thread: upstream.h pull_page.off_loop). Every row is applied by version
 * (whfeed_stock), so a page applied again after a crash between slices changes nothing more. */
static int inventory_slice(struct pull_page *pg, struct store *st, int64_t until_us, bool *finished,
                           char *err, size_t errlen)
{
    struct wms_call *c = pg->data;
    int64_t wh;
    int r = whfeed_warehouse(c->u, st, &wh, err, errlen);
    if (r)
        return r;
    pg->plain = whfeed_plain(st);
    if (c->rows)
        return prepared_slice(c, pg, st, wh, until_us, finished);
    int64_t now = store_now();
    unsigned n = 0;
    struct inv_row row;
    /* Outside a reconciliation rows go in batches (whfeed_stock_batch): read into b, applied
     * when it is full or the rows end. A slice ends only between batches. */
    bool batch = !c->reconcile;
    struct whfeed_row b[WHFEED_BATCH];
    int nb = 0;
    int64_t bmax = 0;
    int k;
    while ((k = inv_next(c, &row, now)) >= 0) {
        if (k == 0) {
            note_skipped(c, &row);
            continue;
        }
        if (batch) {
            feed_row(&b[nb++], &row);
            if (row.version > bmax)
                bmax = row.version;
            if (nb < WHFEED_BATCH)
                continue;
            if ((r = whfeed_stock_batch(c->u, st, wh, b, nb, pg)) != 0)
                return r;
            nb = 0;
            n += WHFEED_BATCH - 1;
            if (bmax > c->maxv)
                c->maxv = bmax;
        } else {
            if ((r = whfeed_stock(c->u, st, wh, row.sku, row.on_hand, row.inbound, row.version,
                                  row.at, c->reconcile, pg)) != 0)
                return r;
            if (row.version > c->maxv)
                c->maxv = row.version;
        }
        /* Past until_us the slice goes on while no other thread waits for the writer lock,
         * up to INVENTORY_SLICE_MAX_US: fewer, larger transactions (each commit writes the
         * pages it touched to the WAL again); a waiter gets the lock within 64 rows. */
        if ((++n & 31) == 0 || batch) {
            int64_t clock = sync_slice_clock_us();
            if (clock >= until_us &&
                (store_writer_wanted() || clock >= until_us + INVENTORY_SLICE_MAX_US))
                break;
        }
    }
    if (nb > 0) { /* the page's last rows */
        if ((r = whfeed_stock_batch(c->u, st, wh, b, nb, pg)) != 0)
            return r;
        if (bmax > c->maxv)
            c->maxv = bmax;
    }
    *finished = c->pos >= c->items_end - 1;
    return 0;
}

static int apply_inventory(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                           size_t errlen)
{
    struct wms_call *c = pg->data;
    bool finished = false;
    int r = 0;
    while (r == 0 && !finished) /* the rows no slice applied (none when sliced) */
        r = inventory_slice(pg, st, INT64_MAX, &finished, err, errlen);
    if (r)
        return r;
    if (c->skipped)
        log_warn("%s: %" PRId64 " unreadable inventory rows skipped (the first: %s)", c->u->name,
                 c->skipped, c->why);
    snprintf(cp->cursor, sizeof cp->cursor, "%s", c->new_cursor);
    if (!c->new_cursor[0])
        cp->version = c->new_version > c->maxv ? c->new_version : c->maxv;
    return 0;
}

static int apply_outbound(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                          size_t errlen)
{
    struct wms_call *c = pg->data;
    int64_t wh;
    int r = whfeed_warehouse(c->u, st, &wh, err, errlen);
    if (r)
        return r;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(c->doc, "items"), *it;
    int64_t maxv = 0;
    cJSON_ArrayForEach(it, items)
    {
        const char *id = json_str(it, "id"), *status = json_str(it, "status");
        int64_t version = 0;
        if (!id || !status || !mp_id_ok(id, strlen(id)) || !mp_id_ok(status, strlen(status)))
            continue;
        json_int(it, "version", 0, INT64_MAX / 2, &version);
        const char *carrier = json_str(it, "carrier"), *tracking = json_str(it, "tracking_no"),
                   *reason = json_str(it, "reason");
        if (!tracking)
            tracking = json_str(it, "tracking_number");
        /* "station": the mark of the coordinator that created it (absent from orders made
         * otherwise, or by a warehouse that does not keep it) */
        if ((r = whfeed_mark(c->u, wh, id, json_str(it, "station"))) != 0)
            return r;
        if ((r = whfeed_outbound(c->u, st, wh, id, status, carrier, tracking, reason, version)) !=
            0)
            return r;
        if (version > maxv)
            maxv = version;
    }
    snprintf(cp->cursor, sizeof cp->cursor, "%s", c->new_cursor);
    if (!c->new_cursor[0])
        cp->version = c->new_version > maxv ? c->new_version : maxv;
    return 0;
}

static void release_nothing(struct pull_page *pg)
{
    (void)pg;
}

static void release_page(struct pull_page *pg)
{
    call_free(pg->data);
}

static void on_pulled(struct http_req *r)
{
    struct wms_call *c = r->data;
    struct pull_page *pg = &c->page;
    pg->data = c;
    pg->release = release_page;
    pg->apply = c->stream == STREAM_INVENTORY ? apply_inventory : apply_outbound;
    pg->total = -1;
    pg->retry_after_s = r->retry_after_s;
    pg->outcome = classify(r, pg->error, sizeof pg->error);
    /* A page larger than a page can honestly be comes again when asked again: the stream
     * fails (its last_error says why; retried at its interval), not the link, which would hold
     * every other call to this warehouse behind a probe that cannot succeed. */
    if (r->too_large) {
        pg->outcome = SYNC_PERMANENT;
        snprintf(pg->error, sizeof pg->error, "page refused: answer larger than %zu bytes",
                 r->max_response);
    }
    if (pg->outcome == SYNC_OK && c->stream == STREAM_INVENTORY) {
        int64_t rows = 0;
        if (!r->response || inv_scan(c, r->response, r->response_len, &rows) != 0) {
            pg->outcome = SYNC_TRANSIENT;
            snprintf(pg->error, sizeof pg->error, "unreadable answer (%zu bytes)", r->response_len);
        } else {
            pg->more = c->new_cursor[0] != 0;
            pg->rows = rows;
            /* Off the loop, in slices, and the next page asked for meanwhile. Outbound pages
             * (OUTBOUND_PAGE orders) move orders on (fulfil.c, the loop's state): they stay on
             * the loop. */
            pg->off_loop = true;
            pg->apply_slice = inventory_slice;
            pg->prepare = inventory_prepare;
            /* (a reconciliation's rows are applied one by one, their SKUs made there) */
            pg->make_skus = c->reconcile ? NULL : inventory_make_skus;
            snprintf(pg->next_cursor, sizeof pg->next_cursor, "%s", c->new_cursor);
        }
    } else if (pg->outcome == SYNC_OK) {
        c->doc = json_parse(r->response ? r->response : "", r->response_len);
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(c->doc, "items");
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(c->doc, "next_cursor");
        if (!c->doc && r->response && !json_within_bound(r->response, r->response_len)) {
            pg->outcome = SYNC_PERMANENT;
            snprintf(pg->error, sizeof pg->error,
                     "page refused: answer of more than %d values (%zu bytes)", JSON_MAX_VALUES,
                     r->response_len);
        } else if (!cJSON_IsArray(items) ||
                   json_int(c->doc, "version", 0, INT64_MAX / 2, &c->new_version) != 0) {
            pg->outcome = SYNC_TRANSIENT;
            snprintf(pg->error, sizeof pg->error, "unreadable answer (%zu bytes)", r->response_len);
        } else {
            if (cJSON_IsString(next) && next->valuestring[0])
                snprintf(c->new_cursor, sizeof c->new_cursor, "%s", next->valuestring);
            else if (cJSON_IsNumber(next))
                snprintf(c->new_cursor, sizeof c->new_cursor, "%.0f", next->valuedouble);
            pg->more = c->new_cursor[0] != 0;
            pg->rows = cJSON_GetArraySize(items);
        }
    }
    sync_pull_done(c->u, c->stream, pg);
}

static void wms_pull(struct upstream *u, int stream, const struct checkpoint *cp)
{
    struct wms_call *c = call_new(u);
    if (!c)
        goto fail;
    c->stream = stream;
    c->reconcile = cp->reconcile;
    struct jbuf q = {0};
    jb_lit(&q, u->wh->url);
    jb_lit(&q, stream == STREAM_INVENTORY ? "/v1/inventory?since=" : "/v1/outbound-orders?since=");
    jb_int(&q, cp->version);
    jb_lit(&q, "&limit=");
    jb_int(&q, stream == STREAM_INVENTORY ? INVENTORY_PAGE : OUTBOUND_PAGE);
    if (cp->cursor[0]) {
        jb_lit(&q, "&cursor=");
        jb_form(&q, cp->cursor);
    }
    if (q.failed || q.len >= sizeof c->url) {
        jb_free(&q);
        call_free(c);
        goto fail;
    }
    memcpy(c->url, q.p, q.len + 1);
    jb_free(&q);
    c->req.url = c->url;
    c->req.method = "GET";
    c->req.max_response = stream == STREAM_INVENTORY ? INVENTORY_MAX_ANSWER : HTTP_MAX_ANSWER;
    c->req.done = on_pulled;
    if (http_start(u->http, &c->req) == 0)
        return;
    call_free(c);
fail:;
    struct pull_page failed = {
        .outcome = SYNC_TRANSIENT, .retry_after_s = -1, .release = release_nothing};
    snprintf(failed.error, sizeof failed.error, "could not start a request");
    sync_pull_done(u, stream, &failed);
}

/* ---- pushes ---- */

/* Reads the movement fields of an outbox payload into the JSON body. */
static int payload_to_json(const struct push_item *it, struct jbuf *b, bool transfer)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int r = -1;
    if (msgpack_unpack_next(&u, it->payload, it->payload_len, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP)
        goto out;
    static const char *const mv_keys[] = {"id", "sku", "delta", "reason", "ref", "at"};
    static const char *const tr_keys[] = {"id", "sku", "qty", "to"};
    const char *const *keys = transfer ? tr_keys : mv_keys;
    int nkeys = transfer ? 4 : 6, first = 1;
    jb_lit(b, "{");
    for (int k = 0; k < nkeys; k++) {
        const msgpack_object *v = mp_map_get(&u.data, keys[k]);
        if (!v || v->type == MSGPACK_OBJECT_NIL)
            continue;
        if (!first)
            jb_lit(b, ",");
        first = 0;
        jb_str(b, keys[k]);
        jb_lit(b, ":");
        if (v->type == MSGPACK_OBJECT_STR) {
            char tmp[TALLY_MAX_TEXT_LEN + 1];
            size_t n = v->via.str.size < sizeof tmp - 1 ? v->via.str.size : sizeof tmp - 1;
            memcpy(tmp, v->via.str.ptr, n);
            tmp[n] = 0;
            jb_str(b, tmp);
        } else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            jb_int(b, (int64_t)v->via.u64);
        } else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            jb_int(b, v->via.i64);
        } else {
            jb_lit(b, "null");
        }
    }
    jb_lit(b, "}");
    r = b->failed ? -1 : 0;
out:
    msgpack_unpacked_destroy(&u);
    return r;
}

/* Writes a MessagePack value (from an outbox payload tallyd packed) as JSON. Strings were
 * validated before they were packed; depth is bounded by what tallyd packs (3). */
static void mp_json(struct jbuf *b, const msgpack_object *o, int depth)
{
    char tmp[TALLY_MAX_TEXT_LEN + 1];
    size_t n;
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        n = o->via.str.size < sizeof tmp - 1 ? o->via.str.size : sizeof tmp - 1;
        memcpy(tmp, o->via.str.ptr, n);
        tmp[n] = 0;
        jb_str(b, tmp);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        jb_int(b, (int64_t)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        jb_int(b, o->via.i64);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        jb_lit(b, o->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_ARRAY:
        jb_lit(b, "[");
        for (uint32_t i = 0; depth < 8 && i < o->via.array.size; i++) {
            if (i)
                jb_lit(b, ",");
            mp_json(b, &o->via.array.ptr[i], depth + 1);
        }
        jb_lit(b, "]");
        break;
    case MSGPACK_OBJECT_MAP:
        jb_lit(b, "{");
        for (uint32_t i = 0, k = 0; depth < 8 && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type == MSGPACK_OBJECT_NIL)
                continue;
            if (k++)
                jb_lit(b, ",");
            mp_json(b, &kv->key, depth + 1);
            jb_lit(b, ":");
            mp_json(b, &kv->val, depth + 1);
        }
        jb_lit(b, "}");
        break;
    default:
        jb_lit(b, "null");
    }
}

/* An outbound order (POST /v1/outbound-orders) or its cancel (POST .../{id}/cancel): one per
 * call. The payload is what fulfil.c packed: {id, lines, ship_to, service} or {id}. */
static int outbound_request(struct upstream *u, struct wms_call *c, const struct push_item *it,
                            bool cancel)
{
    msgpack_unpacked m;
    msgpack_unpacked_init(&m);
    size_t off = 0;
    int r = -1;
    if (msgpack_unpack_next(&m, it->payload, it->payload_len, &off) != MSGPACK_UNPACK_SUCCESS ||
        m.data.type != MSGPACK_OBJECT_MAP)
        goto out;
    const msgpack_object *id = mp_map_get(&m.data, "id");
    if (!id || id->type != MSGPACK_OBJECT_STR || !mp_id_ok(id->via.str.ptr, id->via.str.size))
        goto out;
    struct jbuf q = {0};
    jb_lit(&q, u->wh->url);
    jb_lit(&q, "/v1/outbound-orders");
    if (cancel) {
        char tmp[TALLY_MAX_ID_LEN + 1];
        memcpy(tmp, id->via.str.ptr, id->via.str.size);
        tmp[id->via.str.size] = 0;
        jb_lit(&q, "/");
        jb_form(&q, tmp);
        jb_lit(&q, "/cancel");
        jb_lit(&c->body, "{}");
    } else {
        mp_json(&c->body, &m.data, 0);
    }
    if (!q.failed && q.len < sizeof c->url) {
        memcpy(c->url, q.p, q.len + 1);
        r = c->body.failed ? -1 : 0;
    }
    jb_free(&q);
out:
    msgpack_unpacked_destroy(&m);
    return r;
}

/* Fills one item's outcome from a per-movement result object. */
static void item_result(struct push_item *it, const cJSON *res)
{
    const char *status = json_str(res, "status");
    json_int(res, "version", 0, INT64_MAX / 2, &it->version);
    json_int(res, "to_version", 0, INT64_MAX / 2, &it->to_version);
    /* A transfer answers each side's version in its own object: {"from": {"warehouse",
     * "version"}, "to": {...}}. Without the receiving side's version its leg would never
     * settle, and the destination would count the units twice (snapshot + pending). */
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(res, "from");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(res, "to");
    if (cJSON_IsObject(from))
        json_int(from, "version", 0, INT64_MAX / 2, &it->version);
    if (cJSON_IsObject(to))
        json_int(to, "version", 0, INT64_MAX / 2, &it->to_version);
    if (status && (!strcmp(status, "applied") || !strcmp(status, "duplicate"))) {
        it->outcome = SYNC_OK;
    } else if (status && !strcmp(status, "rejected")) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(res, "error");
        const char *msg = cJSON_IsString(e) ? e->valuestring : json_str(e, "message");
        it->outcome = SYNC_PERMANENT;
        snprintf(it->error, sizeof it->error, "rejected by the warehouse: %.200s",
                 msg ? msg : "no reason given");
    } else {
        it->outcome = SYNC_TRANSIENT;
        snprintf(it->error, sizeof it->error, "answer without a status for %s", it->key);
    }
}

static void on_pushed(struct http_req *r)
{
    struct wms_call *c = r->data;
    struct push_batch *b = c->batch;
    b->retry_after_s = r->retry_after_s;
    int verdict = classify(r, b->error, sizeof b->error);
    if (verdict == SYNC_PERMANENT) {
        for (int i = 0; i < b->n; i++) {
            b->items[i].outcome = SYNC_PERMANENT;
            snprintf(b->items[i].error, sizeof b->items[i].error, "%s", b->error);
        }
        b->outcome = SYNC_OK;
    } else if (verdict == SYNC_TRANSIENT || verdict == SYNC_AUTH) {
        b->outcome = verdict;
    } else {
        cJSON *doc = json_parse(r->response ? r->response : "", r->response_len);
        b->outcome = SYNC_OK;
        if (!doc) {
            b->outcome = SYNC_TRANSIENT;
            snprintf(b->error, sizeof b->error, "unreadable answer (%zu bytes)", r->response_len);
        } else if (b->items[0].okind == OBX_TRANSFER) {
            item_result(&b->items[0], doc);
        } else if (b->items[0].okind == OBX_OUTBOUND || b->items[0].okind == OBX_OUTBOUND_CANCEL) {
            /* 200/201 with the order: the warehouse has it (created now, or before with the
             * same content, or cancelled). */
            b->items[0].outcome = SYNC_OK;
        } else {
            /* Per-movement results, matched by id (in any order). */
            const cJSON *list = cJSON_IsArray(doc) ? doc : NULL, *res;
            if (!list)
                list = cJSON_GetObjectItemCaseSensitive(doc, "results");
            if (!cJSON_IsArray(list))
                list = cJSON_GetObjectItemCaseSensitive(doc, "movements");
            for (int i = 0; i < b->n; i++) {
                b->items[i].outcome = SYNC_TRANSIENT;
                snprintf(b->items[i].error, sizeof b->items[i].error,
                         "no result for this movement in the answer");
            }
            /* The API answers one result per movement in order (tests/sim/README.md): the
             * k-th result is tried against the k-th movement first, so a batch of n costs n
             * comparisons, not n * n (bench_drain.sh, 10,000 movements: tallyd's CPU 0.71 s
             * -> 0.61 s); any other order still matches, by a search. */
            int k = 0;
            cJSON_ArrayForEach(res, list)
            {
                const char *id = json_str(res, "id");
                if (id && k < b->n && !strcmp(b->items[k].key, id))
                    item_result(&b->items[k], res);
                else
                    for (int i = 0; id && i < b->n; i++)
                        if (!strcmp(b->items[i].key, id))
                            item_result(&b->items[i], res);
                k++;
            }
        }
        cJSON_Delete(doc);
    }
    call_free(c);
    sync_push_done(b);
}

static void wms_push(struct upstream *u, struct push_batch *b)
{
    struct wms_call *c = call_new(u);
    bool transfer = b->items[0].okind == OBX_TRANSFER;
    if (!c)
        goto fail;
    c->batch = b;
    bool outbound = b->items[0].okind == OBX_OUTBOUND || b->items[0].okind == OBX_OUTBOUND_CANCEL;
    if (outbound) {
        if (outbound_request(u, c, &b->items[0], b->items[0].okind == OBX_OUTBOUND_CANCEL))
            goto fail_call;
    } else if (transfer) {
        if (payload_to_json(&b->items[0], &c->body, true) != 0)
            goto fail_call;
    } else {
        jb_lit(&c->body, "{\"movements\":[");
        for (int i = 0; i < b->n; i++) {
            if (i)
                jb_lit(&c->body, ",");
            if (payload_to_json(&b->items[i], &c->body, false) != 0)
                goto fail_call;
        }
        jb_lit(&c->body, "]}");
    }
    if (!outbound)
        snprintf(c->url, sizeof c->url, "%s%s", u->wh->url,
                 transfer ? "/v1/transfers" : "/v1/movements");
    c->req.url = c->url;
    c->req.method = "POST";
    c->req.content_type = "application/json";
    c->req.body = c->body.p;
    c->req.body_len = c->body.len;
    c->req.done = on_pushed;
    if (!c->body.failed && http_start(u->http, &c->req) == 0)
        return;
fail_call:
    call_free(c);
fail:
    b->outcome = SYNC_TRANSIENT;
    snprintf(b->error, sizeof b->error, "could not build the request");
    sync_push_done(b);
}

const struct connector_ops conn_wms_ops = {
    .kind = "wms",
    .caps = CAP_MOVEMENTS | CAP_TRANSFER_OUT | CAP_TRANSFER_IN | CAP_OUTBOUND,
    .nstreams = 2,
    .streams = wms_streams,
    .push_limit = MOVEMENTS_PER_CALL,
    .init = wms_init,
    .pull = wms_pull,
    .push = wms_push,
    .free = wms_free,
    .reload = wms_reload,
};
