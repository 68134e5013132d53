#include "warehouse.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fourpx.h"
#include "goodcang.h"
#include "json_in.h"
#include "json_out.h"
#include "simtime.h"
#include "state.h"

#define PAGE_MAX 5000
#define INVENTORY_PAGE_DEFAULT 1000
#define OUTBOUND_PAGE_DEFAULT 500
#define MOVEMENTS_MAX 1000
#define ID_MAX 128
#define DELTA_MAX 1000000000LL
#define QTY_MAX 1000000LL

static const char *const call_names[] = {
    "inventory",    "movements",       "outbound.create", "outbound.list",
    "outbound.get", "outbound.cancel", "transfers",       "unknown",
};

const char *wh_call_name(enum wh_call c)
{
    return call_names[c];
}

int wh_route(const struct sim *s, const char *method, const char *path, const struct params *query,
             struct wh_route *r)
{
    memset(r, 0, sizeof(*r));
    if (strncmp(path, "/wh/", 4) != 0)
        return -1;
    const char *code = path + 4;
    const char *slash = strchr(code, '/');
    size_t len = slash ? (size_t)(slash - code) : strlen(code);
    snprintf(r->target, sizeof(r->target), "wh:%.*s", (int)(len < 24 ? len : 24), code);
    r->wh = sim_wh_find(s, code, len);
    const char *rest = slash ? slash : "";
    r->kind = r->wh >= 0 ? s->cfg.wh_kinds[r->wh] : SIM_WH_TALLY;
    r->call = WH_UNKNOWN;
    if (r->kind == SIM_WH_GOODCANG) {
        r->tpl_call = gc_route(method, rest);
        return 0;
    }
    if (r->kind == SIM_WH_FOURPX) {
        r->tpl_call = fpx_route(method, rest, params_get(query, "method"));
        return 0;
    }
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    r->call = WH_UNKNOWN;
    if (strcmp(rest, "/v1/inventory") == 0 && get) {
        r->call = WH_INVENTORY;
    } else if (strcmp(rest, "/v1/movements") == 0 && post) {
        r->call = WH_MOVEMENTS;
    } else if (strcmp(rest, "/v1/transfers") == 0 && post) {
        r->call = WH_TRANSFERS;
    } else if (strcmp(rest, "/v1/outbound-orders") == 0) {
        r->call = post ? WH_OUTBOUND_CREATE : get ? WH_OUTBOUND_LIST : WH_UNKNOWN;
    } else if (strncmp(rest, "/v1/outbound-orders/", 20) == 0) {
        const char *id = rest + 20;
        const char *end = strchr(id, '/');
        r->id = id;
        r->id_len = end ? (size_t)(end - id) : strlen(id);
        if (!end && get)
            r->call = WH_OUTBOUND_GET;
        else if (end && strcmp(end, "/cancel") == 0 && post)
            r->call = WH_OUTBOUND_CANCEL;
    }
    return 0;
}

/* --- helpers ------------------------------------------------------------------------------ */

static cJSON *parse_body(const struct http_req *rq, struct http_resp *out)
{
    cJSON *doc = rq->body_len ? cJSON_ParseWithLength(rq->body, rq->body_len) : NULL;
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        http_resp_error(out, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return doc;
}

/* Optional integer query argument in [lo, hi]; false (with a 400 answer) when malformed. */
static bool query_int(const struct http_req *rq, const char *name, int64_t lo, int64_t hi,
                      int64_t *out, struct http_resp *resp)
{
    const char *v = params_get(&rq->query, name);
    if (!v || !*v)
        return true;
    int64_t n;
    if (!jin_parse_digits(v, &n) || n < lo || n > hi) {
        http_resp_error(resp, 400, "bad_request",
                        "%s must be an integer in [%" PRId64 ", %" PRId64 "]", name, lo, hi);
        return false;
    }
    *out = n;
    return true;
}

static bool valid_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7F)
            return false;
    return true;
}

static void kv_iso(struct jb *j, const char *key, int64_t t)
{
    char buf[ST_ISO_LEN];
    st_fmt_iso(t, buf);
    jb_kv_str(j, key, buf);
}

static void kv_cursor(struct jb *j, int64_t last, bool more)
{
    jb_key(j, "next_cursor");
    if (!more) {
        jb_null(j);
        return;
    }
    char c[24];
    snprintf(c, sizeof(c), "%" PRId64, last);
    jb_str(j, c);
}

/* --- GET /v1/inventory -------------------------------------------------------------------- */

static void inventory(struct sim *s, struct warehouse *w, const struct http_req *rq,
                      struct http_resp *out)
{
    int64_t since = 0, cursor = -1, limit = INVENTORY_PAGE_DEFAULT;
    if (!query_int(rq, "since", 0, INT64_MAX / 2, &since, out) ||
        !query_int(rq, "cursor", 0, INT64_MAX / 2, &cursor, out) ||
        !query_int(rq, "limit", 1, PAGE_MAX, &limit, out))
        return;
    int64_t v = cursor >= 0 ? cursor : since;
    if (v < w->version_base)
        v = w->version_base;
    struct jb *j = &out->body;
    int64_t n = 0, last = v;
    jb_obj(j);
    jb_kv_arr(j, "items");
    while (v < w->version && n < limit) {
        v++;
        uint32_t sku = w->vlog[v - w->version_base - 1];
        const struct stock_row *r = &w->rows[sku];
        if (r->version != v)
            continue; /* superseded by a later change of the same row */
        jb_obj(j);
        jb_kv_str(j, "sku", s->skus[sku].code);
        jb_kv_i64(j, "on_hand", r->on_hand);
        jb_kv_i64(j, "inbound", r->inbound);
        jb_kv_i64(j, "version", r->version);
        kv_iso(j, "updated_at", r->updated_at);
        jb_obj_end(j);
        n++;
        last = v;
    }
    jb_arr_end(j);
    kv_cursor(j, last, n == limit && last < w->version);
    jb_kv_i64(j, "version", w->version);
    jb_obj_end(j);
}

/* --- POST /v1/movements ------------------------------------------------------------------- */

static void movement_result(struct sim *s, struct warehouse *w, const cJSON *m, struct jb *j)
{
    const char *id = jin_str(m, "id");
    const char *sku_code = jin_str(m, "sku");
    int64_t delta = 0;
    const char *code = NULL;
    char msg[200] = "";
    if (!cJSON_IsObject(m) || !valid_id(id)) {
        code = "invalid";
        snprintf(msg, sizeof(msg), "id must be a string of 1 to %d characters", ID_MAX);
    } else if (!jin_i64(cJSON_GetObjectItemCaseSensitive(m, "delta"), &delta) || delta == 0 ||
               delta > DELTA_MAX || delta < -DELTA_MAX) {
        code = "invalid";
        snprintf(msg, sizeof(msg), "delta must be a non-zero integer within +-%lld", DELTA_MAX);
    } else if (!sku_code) {
        code = "invalid";
        snprintf(msg, sizeof(msg), "sku is required");
    }
    const struct movement *mv = NULL;
    enum mv_status st = MV_CONFLICT;
    if (!code) {
        int64_t sku = sim_sku_find(s, sku_code, strlen(sku_code));
        /* an id seen before is a duplicate or a conflict whatever its SKU; a new one needs a
         * SKU the warehouse knows */
        if (sku < 0 && !movement_find(w, id, strlen(id))) {
            code = "unknown_sku";
            snprintf(msg, sizeof(msg), "unknown SKU %.120s", sku_code);
        } else {
            st = movement_apply(s, w, id, strlen(id), sku < 0 ? UINT32_MAX : (uint32_t)sku, delta,
                                &mv);
        }
    }
    if (!code && st == MV_CONFLICT) {
        code = "id_conflict";
        snprintf(msg, sizeof(msg), "movement %.64s was applied with sku %s and delta %" PRId64, id,
                 s->skus[mv->sku].code, mv->delta);
    } else if (!code && st == MV_NOMEM) {
        code = "internal";
        snprintf(msg, sizeof(msg), "out of memory");
    }
    jb_obj(j);
    jb_key(j, "id");
    if (valid_id(id))
        jb_str(j, id);
    else
        jb_null(j);
    if (code) {
        jb_kv_str(j, "status", "rejected");
        jb_kv_obj(j, "error");
        jb_kv_str(j, "code", code);
        jb_kv_str(j, "message", msg);
        jb_obj_end(j);
    } else {
        jb_kv_str(j, "status", st == MV_APPLIED ? "applied" : "duplicate");
        jb_kv_i64(j, "version", mv->version);
    }
    jb_obj_end(j);
}

static void movements(struct sim *s, struct warehouse *w, const struct http_req *rq,
                      struct http_resp *out)
{
    cJSON *doc = parse_body(rq, out);
    if (!doc)
        return;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "movements");
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    if (n < 1 || n > MOVEMENTS_MAX) {
        http_resp_error(out, n > MOVEMENTS_MAX ? 413 : 400,
                        n > MOVEMENTS_MAX ? "too_large" : "bad_request",
                        "\"movements\" must be an array of 1 to %d movements", MOVEMENTS_MAX);
        cJSON_Delete(doc);
        return;
    }
    struct jb *j = &out->body;
    jb_obj(j);
    jb_kv_arr(j, "results");
    const cJSON *m;
    cJSON_ArrayForEach(m, list)
    {
        movement_result(s, w, m, j);
    }
    jb_arr_end(j);
    jb_kv_i64(j, "version", w->version);
    jb_obj_end(j);
    cJSON_Delete(doc);
}

/* --- outbound orders ---------------------------------------------------------------------- */

void wh_outbound_json(const struct sim *s, const struct outbound *o, bool with_counts, struct jb *j)
{
    jb_obj(j);
    jb_kv_str(j, "id", o->id);
    jb_kv_str(j, "status", ob_status_name(o->status));
    jb_kv_i64(j, "version", o->version);
    kv_iso(j, "created_at", o->created_at);
    kv_iso(j, "updated_at", o->updated_at);
    jb_kv_arr(j, "lines");
    for (uint32_t i = 0; i < o->n_lines; i++) {
        jb_obj(j);
        jb_kv_str(j, "sku", s->skus[o->lines[i].sku].code);
        jb_kv_i64(j, "qty", o->lines[i].qty);
        jb_obj_end(j);
    }
    jb_arr_end(j);
    if (o->service)
        jb_kv_str(j, "service", o->service);
    if (o->note)
        jb_kv_str(j, "station", o->note);
    if (o->status == OB_SHIPPED) {
        jb_kv_str(j, "carrier", o->carrier);
        jb_kv_str(j, "tracking_number", o->tracking);
    }
    if (o->reason)
        jb_kv_str(j, "reason", o->reason);
    if (with_counts) {
        jb_kv_i64(j, "create_count", o->create_count);
        jb_kv_i64(j, "repeat_count", o->repeat_count);
        if (o->ship_to) { /* what the order carried, as stored (control view only) */
            jb_key(j, "ship_to");
            jb_json(j, o->ship_to, strlen(o->ship_to));
        }
    }
    jb_obj_end(j);
}

static void write_outbound(const struct sim *s, const struct outbound *o, struct jb *j)
{
    wh_outbound_json(s, o, false, j);
}

/* Reads and checks the lines of a create request; NULL (with the answer set) when invalid. */
static struct ob_line *read_lines(struct sim *s, const cJSON *lines, uint32_t *n,
                                  struct http_resp *out)
{
    int count = cJSON_IsArray(lines) ? cJSON_GetArraySize(lines) : -1;
    if (count < 1 || count > OB_MAX_LINES) {
        http_resp_error(out, 422, "invalid", "\"lines\" must be an array of 1 to %d lines",
                        OB_MAX_LINES);
        return NULL;
    }
    struct ob_line *v = calloc((size_t)count, sizeof(*v));
    if (!v) {
        http_resp_error(out, 500, "internal", "out of memory");
        return NULL;
    }
    const cJSON *l;
    uint32_t i = 0;
    cJSON_ArrayForEach(l, lines)
    {
        const char *sku = jin_str(l, "sku");
        int64_t k = sku ? sim_sku_find(s, sku, strlen(sku)) : -1;
        int64_t qty;
        if (k < 0) {
            http_resp_error(out, 422, "unknown_sku", "line %u: unknown SKU %.120s", i + 1,
                            sku ? sku : "(missing)");
            free(v);
            return NULL;
        }
        if (!jin_i64(cJSON_GetObjectItemCaseSensitive(l, "qty"), &qty) || qty < 1 ||
            qty > QTY_MAX) {
            http_resp_error(out, 422, "invalid", "line %u: qty must be an integer in [1, %lld]",
                            i + 1, QTY_MAX);
            free(v);
            return NULL;
        }
        v[i].sku = (uint32_t)k;
        v[i++].qty = qty;
    }
    *n = i;
    return v;
}

/* The creator's mark ("station"): kept from the first create and echoed, never compared (a
 * repeated create with another mark answers the stored order, which shows the first one). */
#define STATION_MAX 100

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* Whether a repeated create carries the same content as the stored order. */
static bool same_outbound(const struct outbound *o, const struct ob_line *lines, uint32_t n,
                          const cJSON *ship_to, const char *service)
{
    if (o->n_lines != n || memcmp(o->lines, lines, n * sizeof(*lines)) != 0)
        return false;
    if ((o->service == NULL) != (service == NULL) || (service && strcmp(o->service, service) != 0))
        return false;
    if ((o->ship_to == NULL) != (ship_to == NULL))
        return false;
    if (!ship_to)
        return true;
    cJSON *stored = cJSON_Parse(o->ship_to);
    bool same = stored && cJSON_Compare(stored, ship_to, true);
    cJSON_Delete(stored);
    return same;
}

static void outbound_create(struct sim *s, struct warehouse *w, const struct http_req *rq,
                            struct http_resp *out)
{
    cJSON *doc = parse_body(rq, out);
    if (!doc)
        return;
    const char *id = jin_str(doc, "id");
    const cJSON *ship_to = cJSON_GetObjectItemCaseSensitive(doc, "ship_to");
    const cJSON *service_item = cJSON_GetObjectItemCaseSensitive(doc, "service");
    const char *service = cJSON_IsString(service_item) ? service_item->valuestring : NULL;
    const cJSON *station_item = cJSON_GetObjectItemCaseSensitive(doc, "station");
    const char *station = cJSON_IsString(station_item) ? station_item->valuestring : NULL;
    uint32_t n = 0;
    struct ob_line *lines = NULL;
    if (cJSON_IsNull(ship_to))
        ship_to = NULL;
    if (!valid_id(id)) {
        http_resp_error(out, 422, "invalid", "id must be a string of 1 to %d characters", ID_MAX);
    } else if (ship_to && !cJSON_IsObject(ship_to)) {
        http_resp_error(out, 422, "invalid", "ship_to must be an object");
    } else if (service_item && !cJSON_IsNull(service_item) && (!service || strlen(service) > 64)) {
        http_resp_error(out, 422, "invalid", "service must be a string of at most 64 characters");
    } else if (station_item && !cJSON_IsNull(station_item) &&
               (!station || !station[0] || strlen(station) > STATION_MAX || !printable(station))) {
        http_resp_error(out, 422, "invalid",
                        "station must be a string of 1 to %d printable"
                        " ASCII characters",
                        STATION_MAX);
    } else {
        lines = read_lines(s, cJSON_GetObjectItemCaseSensitive(doc, "lines"), &n, out);
    }
    if (!lines) {
        cJSON_Delete(doc);
        return;
    }
    struct outbound *o = ob_find(w, id, strlen(id));
    if (o && !same_outbound(o, lines, n, ship_to, service)) {
        http_resp_error(out, 409, "conflict", "outbound order %.64s exists with different content",
                        id);
        free(lines);
    } else if (o) {
        o->repeat_count++;
        out->status = 200;
        write_outbound(s, o, &out->body);
        free(lines);
    } else {
        char *ship = ship_to ? cJSON_PrintUnformatted(ship_to) : NULL;
        char *svc = service ? strdup(service) : NULL;
        o = ob_insert(s, w, id, strlen(id), lines, n, ship, svc);
        if (o && station && !(o->note = strdup(station))) {
            http_resp_error(out, 500, "internal", "out of memory");
        } else if (o) {
            out->status = 201;
            write_outbound(s, o, &out->body);
        } else {
            http_resp_error(out, 500, "internal", "out of memory");
        }
    }
    cJSON_Delete(doc);
}

static void outbound_list(struct sim *s, struct warehouse *w, const struct http_req *rq,
                          struct http_resp *out)
{
    int64_t since = 0, cursor = -1, limit = OUTBOUND_PAGE_DEFAULT;
    if (!query_int(rq, "since", 0, INT64_MAX / 2, &since, out) ||
        !query_int(rq, "cursor", 0, INT64_MAX / 2, &cursor, out) ||
        !query_int(rq, "limit", 1, PAGE_MAX, &limit, out))
        return;
    int64_t v = cursor >= 0 ? cursor : since, n = 0, last = v;
    struct jb *j = &out->body;
    jb_obj(j);
    jb_kv_arr(j, "items");
    while (v < w->ob_version && n < limit) {
        v++;
        const struct outbound *o = &w->outbound[w->ob_log[v - 1]];
        if (o->version != v)
            continue;
        write_outbound(s, o, j);
        n++;
        last = v;
    }
    jb_arr_end(j);
    kv_cursor(j, last, n == limit && last < w->ob_version);
    jb_kv_i64(j, "version", w->ob_version);
    jb_obj_end(j);
}

static void outbound_get(struct sim *s, struct warehouse *w, const struct wh_route *r,
                         struct http_resp *out)
{
    struct outbound *o = ob_find(w, r->id, r->id_len);
    if (!o) {
        http_resp_error(out, 404, "not_found", "no outbound order %.*s", (int)r->id_len, r->id);
        return;
    }
    write_outbound(s, o, &out->body);
}

static void outbound_cancel(struct sim *s, struct warehouse *w, const struct wh_route *r,
                            struct http_resp *out)
{
    struct outbound *o = ob_find(w, r->id, r->id_len);
    if (!o) {
        http_resp_error(out, 404, "not_found", "no outbound order %.*s", (int)r->id_len, r->id);
        return;
    }
    if (o->status == OB_SHIPPED) {
        http_resp_error(out, 409, "already_shipped", "outbound order %s was shipped (%s %s)", o->id,
                        o->carrier, o->tracking);
        return;
    }
    if (o->status != OB_CANCELLED &&
        ob_set_status(s, w, o, OB_CANCELLED, "cancelled by client", sim_now(s)) < 0) {
        http_resp_error(out, 500, "internal", "out of memory");
        return;
    }
    write_outbound(s, o, &out->body);
}

/* --- POST /v1/transfers ------------------------------------------------------------------- */

static void transfers(struct sim *s, struct warehouse *w, const struct http_req *rq,
                      struct http_resp *out)
{
    cJSON *doc = parse_body(rq, out);
    if (!doc)
        return;
    const char *id = jin_str(doc, "id");
    const char *sku = jin_str(doc, "sku");
    const char *to = jin_str(doc, "to");
    int64_t qty = 0;
    int64_t k = sku ? sim_sku_find(s, sku, strlen(sku)) : -1;
    int dst = to ? sim_wh_find(s, to, strlen(to)) : -1;
    if (!valid_id(id))
        http_resp_error(out, 422, "invalid", "id must be a string of 1 to %d characters", ID_MAX);
    else if (!jin_i64(cJSON_GetObjectItemCaseSensitive(doc, "qty"), &qty) || qty < 1 ||
             qty > QTY_MAX)
        http_resp_error(out, 422, "invalid", "qty must be an integer in [1, %lld]", QTY_MAX);
    else if (k < 0)
        http_resp_error(out, 422, "unknown_sku", "unknown SKU %.120s", sku ? sku : "(missing)");
    else if (dst < 0)
        http_resp_error(out, 422, "unknown_warehouse", "unknown warehouse %.32s",
                        to ? to : "(missing)");
    else if (dst == w->index)
        http_resp_error(out, 422, "invalid", "a transfer needs two different warehouses");
    if (out->status >= 400) {
        cJSON_Delete(doc);
        return;
    }
    const struct transfer *t = NULL;
    enum mv_status st = transfer_apply(s, w, id, strlen(id), (uint32_t)k, qty, dst, &t);
    if (st == MV_CONFLICT) {
        http_resp_error(out, 409, "conflict", "transfer %.64s exists with different content", id);
    } else if (st == MV_NOMEM) {
        http_resp_error(out, 500, "internal", "out of memory");
    } else {
        struct jb *j = &out->body;
        jb_obj(j);
        jb_kv_str(j, "id", t->id);
        jb_kv_str(j, "status", st == MV_APPLIED ? "applied" : "duplicate");
        jb_kv_str(j, "sku", s->skus[t->sku].code);
        jb_kv_i64(j, "qty", t->qty);
        jb_kv_obj(j, "from");
        jb_kv_str(j, "warehouse", w->code);
        jb_kv_i64(j, "version", t->from_version);
        jb_obj_end(j);
        jb_kv_obj(j, "to");
        jb_kv_str(j, "warehouse", s->wh[t->to].code);
        jb_kv_i64(j, "version", t->to_version);
        jb_obj_end(j);
        jb_obj_end(j);
    }
    cJSON_Delete(doc);
}

/* --- dispatch ----------------------------------------------------------------------------- */

static bool authorized(const struct sim *s, const struct http_req *rq)
{
    const char *a = rq->authorization;
    return a && strncmp(a, "Bearer ", 7) == 0 && strcmp(a + 7, s->cfg.wh_token) == 0;
}

void wh_handle(struct sim *s, const struct wh_route *r, const struct http_req *rq,
               struct http_resp *out)
{
    out->status = 200;
    out->content_type = "application/json";
    if (r->wh < 0) {
        http_resp_error(out, 404, "unknown_warehouse", "no warehouse %s", r->target + 3);
        return;
    }
    if (r->kind == SIM_WH_GOODCANG) {
        gc_handle(s, r, rq, out);
        return;
    }
    if (r->kind == SIM_WH_FOURPX) {
        fpx_handle(s, r, rq, out);
        return;
    }
    if (!authorized(s, rq)) {
        out->www_authenticate = "Bearer realm=\"tally-sim\"";
        http_resp_error(out, 401, "unauthorized", "missing or invalid bearer token");
        return;
    }
    if (r->call == WH_UNKNOWN) {
        http_resp_error(out, 404, "not_found", "no route %s %s", rq->method, rq->path);
        return;
    }
    struct warehouse *w = &s->wh[r->wh];
    pthread_mutex_lock(&s->lock);
    ob_tick(s, w, sim_now(s));
    switch (r->call) {
    case WH_INVENTORY:
        inventory(s, w, rq, out);
        break;
    case WH_MOVEMENTS:
        movements(s, w, rq, out);
        break;
    case WH_OUTBOUND_CREATE:
        outbound_create(s, w, rq, out);
        break;
    case WH_OUTBOUND_LIST:
        outbound_list(s, w, rq, out);
        break;
    case WH_OUTBOUND_GET:
        outbound_get(s, w, r, out);
        break;
    case WH_OUTBOUND_CANCEL:
        outbound_cancel(s, w, r, out);
        break;
    case WH_TRANSFERS:
        transfers(s, w, rq, out);
        break;
    case WH_UNKNOWN:
        break;
    }
    pthread_mutex_unlock(&s->lock);
    if (jb_failed(&out->body))
        http_resp_error(out, 500, "internal", "answer too large");
}

const char *wh_route_call_name(const struct wh_route *r)
{
    if (r->kind != SIM_WH_TALLY)
        return r->tpl_call ? r->tpl_call : "unknown";
    return wh_call_name(r->call);
}

void wh_fault_response(const struct wh_route *r, const struct fault_action *a,
                       struct http_resp *out)
{
    if (r->kind == SIM_WH_GOODCANG) {
        gc_fault_response(a, out);
        return;
    }
    if (r->kind == SIM_WH_FOURPX) {
        fpx_fault_response(a, out);
        return;
    }
    const char *code = a->status == 429   ? "rate_limited"
                       : a->status == 503 ? "unavailable"
                       : a->status >= 500 ? "internal"
                                          : "bad_request";
    out->content_type = "application/json";
    http_resp_error(out, a->status, code, "injected fault: HTTP %d", a->status);
    out->retry_after = a->retry_after;
}
