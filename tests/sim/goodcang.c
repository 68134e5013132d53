/* goodcang: a warehouse speaking the Goodcang OMS open API (tests/sim/README.md "Goodcang"),
 * mapped onto the shared world (state.h): its stock rows, its outbound orders (progressing by
 * ob_tick, with their create counts), the control interface and the faults work as for a tally
 * warehouse. Calls: POST /wh/{CODE}/public_open/{module}/{action}, JSON body, headers app-key
 * (SIM_TPL_APP_KEY) and app-token (the warehouses' token).
 *
 * Answers: {"ask": "Success"|"Failure", "message", "data", "Error": {"errMessage"}} (+ "count",
 * "nextPage", "pagination" on lists), HTTP 200; refused credentials HTTP 401, unknown calls
 * HTTP 404, both in the same envelope. Dates are "YYYY-MM-DD HH:MM:SS" in GMT+8. */
#include "goodcang.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "json_in.h"
#include "json_out.h"
#include "simtime.h"
#include "state.h"
#include "warehouse.h"

#define GC_PAGE_MAX 100
#define GC_REF_MAX 64
#define GC_TEXT_MAX 200
#define GC_QTY_MAX 1000000LL
#define GC_GRN_MAX 100000

static const char *const calls[] = {
    "inventory/get_product_inventory", "inventory/get_inventory_log", "order/create_order",
    "order/get_order_by_ref_code",     "order/get_order_list",        "order/cancel_order",
    "inbound_order/create_grn",        "inbound_order/get_grn_list",
};
enum {
    C_INVENTORY,
    C_LOG,
    C_CREATE,
    C_BY_REF,
    C_LIST,
    C_CANCEL,
    C_GRN_CREATE,
    C_GRN_LIST,
    C_COUNT
};

/* Inbound notices (GRNs): the shared world has none, so they live here, under the world's
 * lock. The goods they announce show as the warehouse's onway (stock_row.inbound). */
struct grn {
    int wh;
    char ref[GC_REF_MAX + 1];
    char tracking[GC_REF_MAX + 1];
    char *desc; /* receiving_desc, echoed as the list's remark; NULL when none */
    int64_t created;
    uint32_t n_lines;
    struct ob_line *lines;
};
static struct grn *grns;
static size_t n_grns, cap_grns;

const char *gc_route(const char *method, const char *rest)
{
    if (strcmp(method, "POST") != 0 || strncmp(rest, "/public_open/", 13) != 0)
        return NULL;
    for (int i = 0; i < C_COUNT; i++)
        if (strcmp(rest + 13, calls[i]) == 0)
            return calls[i];
    return NULL;
}

static int call_index(const char *name)
{
    for (int i = 0; name && i < C_COUNT; i++)
        if (calls[i] == name)
            return i;
    return -1;
}

/* --- envelopes ---------------------------------------------------------------------------- */

static void __attribute__((format(printf, 3, 4)))
failure(struct http_resp *out, int status, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    jb_reset(&out->body);
    out->status = status;
    out->content_type = "application/json";
    struct jb *j = &out->body;
    jb_obj(j);
    jb_kv_str(j, "ask", "Failure");
    jb_kv_str(j, "message", msg);
    jb_kv_obj(j, "Error");
    jb_kv_str(j, "errMessage", msg);
    jb_obj_end(j);
    jb_obj_end(j);
}

static void success_begin(struct jb *j)
{
    jb_obj(j);
    jb_kv_str(j, "ask", "Success");
    jb_kv_str(j, "message", "Success");
}

static void list_end(struct jb *j, int64_t count, int64_t page, int64_t size)
{
    jb_arr_end(j);
    jb_kv_i64(j, "count", count);
    jb_kv_str(j, "nextPage", page * size < count ? "true" : "false");
    jb_kv_obj(j, "pagination");
    jb_kv_i64(j, "page", page);
    jb_kv_i64(j, "pageSize", size);
    jb_obj_end(j);
    jb_obj_end(j);
}

static void kv_time(struct jb *j, const char *key, int64_t t)
{
    char buf[ST_PACIFIC_LEN];
    st_fmt_gmt8(t, buf);
    jb_kv_str(j, key, buf);
}

/* --- parameters --------------------------------------------------------------------------- */

/* An integer parameter (a number or a string of digits, as the SDKs send either). */
static bool param_int(const cJSON *doc, const char *key, int64_t lo, int64_t hi, int64_t *out,
                      bool *given, struct http_resp *resp)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    *given = v && !cJSON_IsNull(v);
    if (!*given)
        return true;
    int64_t n;
    if (!jin_id(v, &n) || n < lo || n > hi) {
        failure(resp, 200, "%s must be an integer in [%" PRId64 ", %" PRId64 "]", key, lo, hi);
        return false;
    }
    *out = n;
    return true;
}

/* page and pageSize (or page_size: both spellings appear in the public clients), required. */
static bool paging(const cJSON *doc, int64_t *page, int64_t *size, struct http_resp *out)
{
    bool g1, g2, g3;
    int64_t a = 0, b = 0;
    if (!param_int(doc, "page", 1, 1000000, page, &g1, out) ||
        !param_int(doc, "pageSize", 1, GC_PAGE_MAX, &a, &g2, out) ||
        !param_int(doc, "page_size", 1, GC_PAGE_MAX, &b, &g3, out))
        return false;
    if (!g1 || (!g2 && !g3)) {
        failure(out, 200, "page and pageSize are required");
        return false;
    }
    if (g2 && g3 && a != b) {
        failure(out, 200, "pageSize and page_size differ");
        return false;
    }
    *size = g2 ? a : b;
    return true;
}

/* "YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS", GMT+8, as epoch seconds. */
static bool parse_time(const char *s, int64_t *t)
{
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return false;
    if (s[10]) {
        int k = 0;
        if (s[10] != ' ' || sscanf(s + 11, "%2d:%2d:%2d%n", &h, &mi, &se, &k) != 3 || s[11 + k])
            return false;
    }
    if (y < 1970 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || se < 0 || se > 60)
        return false;
    int64_t yy = y - (mo <= 2);
    int64_t era = yy / 400, yoe = yy - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    *t = days * 86400 + h * 3600 + mi * 60 + se - 8 * 3600;
    return true;
}

/* An optional date filter; false (with the answer) when malformed. */
static bool param_time(const cJSON *doc, const char *key, int64_t *t, struct http_resp *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0]))
        return true;
    if (!cJSON_IsString(v) || !parse_time(v->valuestring, t)) {
        failure(out, 200, "%s must be a date (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)", key);
        return false;
    }
    return true;
}

static bool text_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return false;
    return true;
}

/* warehouse_code: required, and this warehouse's. */
static bool own_warehouse(const cJSON *doc, const struct warehouse *w, bool required,
                          struct http_resp *out)
{
    const char *code = jin_str(doc, "warehouse_code");
    if (!code && !required)
        return true;
    if (!code || strcmp(code, w->code) != 0) {
        failure(out, 200, "warehouse_code %.32s is not a warehouse of this account",
                code ? code : "(missing)");
        return false;
    }
    return true;
}

/* --- stock -------------------------------------------------------------------------------- */

/* Units of sku held by orders not yet shipped (Goodcang's reserved). */
static int64_t reserved_of(const struct warehouse *w, uint32_t sku)
{
    int64_t n = 0;
    for (size_t i = 0; i < w->n_outbound; i++) {
        const struct outbound *o = &w->outbound[i];
        if (o->status > OB_PACKED)
            continue;
        for (uint32_t k = 0; k < o->n_lines; k++)
            if (o->lines[k].sku == sku)
                n += o->lines[k].qty;
    }
    return n;
}

static void stock_json(const struct sim *s, const struct warehouse *w, uint32_t sku, struct jb *j)
{
    const struct stock_row *r = &w->rows[sku];
    int64_t have = r->on_hand > 0 ? r->on_hand : 0, want = reserved_of(w, sku);
    int64_t reserved = want < have ? want : have;
    jb_obj(j);
    jb_kv_str(j, "product_sku", s->skus[sku].code);
    jb_kv_str(j, "product_barcode", s->skus[sku].code);
    jb_kv_str(j, "warehouse_code", w->code);
    jb_kv_str(j, "warehouse_desc", w->code);
    jb_kv_i64(j, "onway", r->inbound);
    jb_kv_i64(j, "pending", 0);
    jb_kv_i64(j, "sellable", have - reserved);
    jb_kv_i64(j, "unsellable", 0);
    jb_kv_i64(j, "reserved", reserved);
    jb_kv_i64(j, "stocking", 0);
    jb_kv_i64(j, "pi_no_stock", want - reserved);
    jb_kv_i64(j, "pi_freeze", 0);
    jb_obj_end(j);
}

static void inventory(struct sim *s, struct warehouse *w, const cJSON *doc, struct http_resp *out)
{
    int64_t page, size;
    if (!paging(doc, &page, &size, out) || !own_warehouse(doc, w, false, out))
        return;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "product_sku_arr");
    const char *one = jin_str(doc, "product_sku");
    struct jb *j = &out->body;
    if ((arr && !cJSON_IsNull(arr) && !cJSON_IsArray(arr)) ||
        cJSON_GetArraySize(arr) > GC_PAGE_MAX) {
        failure(out, 200, "product_sku_arr must be an array of at most %d SKUs", GC_PAGE_MAX);
        return;
    }
    success_begin(j);
    jb_kv_arr(j, "data");
    int64_t count = 0;
    if (cJSON_GetArraySize(arr) > 0 || one) {
        /* the SKUs asked for (unknown ones have no row) */
        const cJSON *it;
        int64_t k;
        if (one && (k = sim_sku_find(s, one, strlen(one))) >= 0 && ++count > (page - 1) * size &&
            count <= page * size)
            stock_json(s, w, (uint32_t)k, j);
        cJSON_ArrayForEach(it, arr)
        {
            if (!cJSON_IsString(it) ||
                (k = sim_sku_find(s, it->valuestring, strlen(it->valuestring))) < 0)
                continue;
            if (++count > (page - 1) * size && count <= page * size)
                stock_json(s, w, (uint32_t)k, j);
        }
    } else {
        count = (int64_t)s->n_skus;
        for (int64_t i = (page - 1) * size; i < count && i < page * size; i++)
            stock_json(s, w, (uint32_t)i, j);
    }
    list_end(j, count, page, size);
}

/* The stock log: each stock change still current (a row's latest), oldest first. The sim
 * keeps no deltas, so ibl_change_quantity is not given. */
static void inventory_log(struct sim *s, struct warehouse *w, const cJSON *doc,
                          struct http_resp *out)
{
    int64_t page, size, from = INT64_MIN, to = INT64_MAX;
    if (!paging(doc, &page, &size, out) || !own_warehouse(doc, w, false, out) ||
        !param_time(doc, "create_date_from", &from, out) ||
        !param_time(doc, "create_date_end", &to, out))
        return;
    struct jb *j = &out->body;
    success_begin(j);
    jb_kv_arr(j, "data");
    int64_t count = 0;
    for (int64_t v = w->version_base + 1; v <= w->version; v++) {
        uint32_t sku = w->vlog[v - w->version_base - 1];
        const struct stock_row *r = &w->rows[sku];
        if (r->version != v || r->updated_at < from || r->updated_at > to)
            continue;
        if (++count <= (page - 1) * size || count > page * size)
            continue;
        jb_obj(j);
        jb_kv_str(j, "product_sku", s->skus[sku].code);
        jb_kv_str(j, "warehouse_code", w->code);
        jb_kv_str(j, "warehouse_name", w->code);
        kv_time(j, "ibl_add_time", r->updated_at);
        jb_obj_end(j);
    }
    list_end(j, count, page, size);
}

/* --- outbound orders ---------------------------------------------------------------------- */

static const char *status_code(int st)
{
    switch (st) {
    case OB_SHIPPED:
        return "D";
    case OB_CANCELLED:
        return "X";
    case OB_EXCEPTION:
        return "N";
    default:
        return "W"; /* accepted, picking, packed: waiting to ship */
    }
}

static void order_code(const struct warehouse *w, const struct outbound *o, char out[40])
{
    snprintf(out, 40, "%s-%06zu", w->code, (size_t)(o - w->outbound) + 1);
}

static struct outbound *by_code(struct warehouse *w, const char *code)
{
    size_t n = strlen(w->code);
    if (!code || strncmp(code, w->code, n) != 0 || code[n] != '-')
        return NULL;
    int64_t k;
    if (!jin_parse_digits(code + n + 1, &k) || k < 1 || (size_t)k > w->n_outbound)
        return NULL;
    return &w->outbound[k - 1];
}

static void order_json(const struct sim *s, const struct warehouse *w, const struct outbound *o,
                       struct jb *j)
{
    char code[40];
    order_code(w, o, code);
    jb_obj(j);
    jb_kv_str(j, "order_code", code);
    jb_kv_str(j, "reference_no", o->id);
    jb_kv_str(j, "order_status", status_code(o->status));
    jb_kv_str(j, "abnormal_problem_reason",
              o->reason && o->status >= OB_CANCELLED ? o->reason : "");
    jb_kv_str(j, "shipping_method", o->service ? o->service : "");
    jb_kv_str(j, "tracking_no", o->status == OB_SHIPPED ? o->tracking : "");
    jb_kv_str(j, "warehouse_code", w->code);
    jb_kv_str(j, "order_desc", o->note ? o->note : "");
    kv_time(j, "date_create", o->created_at);
    kv_time(j, "date_modify", o->updated_at);
    if (o->status == OB_SHIPPED)
        kv_time(j, "date_shipping", o->updated_at);
    cJSON *ship = o->ship_to ? cJSON_Parse(o->ship_to) : NULL;
    const char *country = jin_str(ship, "country"), *name = jin_str(ship, "name");
    const char *city = jin_str(ship, "city");
    jb_kv_str(j, "consignee_country_code", country ? country : "");
    jb_kv_str(j, "consignee_name", name ? name : "");
    jb_kv_str(j, "consignee_city", city ? city : "");
    cJSON_Delete(ship);
    jb_kv_arr(j, "items");
    for (uint32_t i = 0; i < o->n_lines; i++) {
        jb_obj(j);
        jb_kv_str(j, "product_sku", s->skus[o->lines[i].sku].code);
        jb_kv_i64(j, "quantity", o->lines[i].qty);
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
}

/* items: [{"product_sku", "quantity"}] (boxes = the GRN's [{"box_no", "box_details": [...]}]) */
static struct ob_line *read_items(struct sim *s, const cJSON *items, bool boxes, uint32_t *n,
                                  struct http_resp *out)
{
    int count = 0;
    const cJSON *b, *l;
    if (!cJSON_IsArray(items) || cJSON_GetArraySize(items) < 1) {
        failure(out, 200, "items is required");
        return NULL;
    }
    cJSON_ArrayForEach(b, items)
    {
        const cJSON *d = boxes ? cJSON_GetObjectItemCaseSensitive(b, "box_details") : NULL;
        if (boxes && (!cJSON_IsArray(d) || cJSON_GetArraySize(d) < 1)) {
            failure(out, 200, "each box needs box_details");
            return NULL;
        }
        count += boxes ? cJSON_GetArraySize(d) : 1;
    }
    if (count > OB_MAX_LINES) {
        failure(out, 200, "at most %d items", OB_MAX_LINES);
        return NULL;
    }
    struct ob_line *v = calloc((size_t)count, sizeof(*v));
    if (!v) {
        failure(out, 500, "out of memory");
        return NULL;
    }
    uint32_t i = 0;
    cJSON_ArrayForEach(b, items)
    {
        const cJSON *list = boxes ? cJSON_GetObjectItemCaseSensitive(b, "box_details") : NULL;
        const cJSON *one = boxes ? NULL : b;
        for (l = list ? list->child : one; l; l = list ? l->next : NULL) {
            const char *sku = jin_str(l, "product_sku");
            int64_t k = sku ? sim_sku_find(s, sku, strlen(sku)) : -1, qty;
            if (k < 0) {
                failure(out, 200, "product_sku %.64s does not exist", sku ? sku : "(missing)");
                free(v);
                return NULL;
            }
            if (!jin_id(cJSON_GetObjectItemCaseSensitive(l, "quantity"), &qty) || qty < 1 ||
                qty > GC_QTY_MAX) {
                failure(out, 200, "quantity of %.64s must be an integer in [1, %lld]", sku,
                        GC_QTY_MAX);
                free(v);
                return NULL;
            }
            v[i].sku = (uint32_t)k;
            v[i++].qty = qty;
        }
    }
    *n = i;
    return v;
}

static void create_order(struct sim *s, struct warehouse *w, const cJSON *doc,
                         struct http_resp *out)
{
    static const char *const need[] = {"reference_no", "shipping_method", "country_code",
                                       "name",         "address1",        "city"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (!text_ok(jin_str(doc, need[i]), i == 0 ? GC_REF_MAX : GC_TEXT_MAX)) {
            failure(out, 200, "%s is required (1 to %d characters)", need[i],
                    i == 0 ? GC_REF_MAX : GC_TEXT_MAX);
            return;
        }
    if (!own_warehouse(doc, w, true, out))
        return;
    const char *ref = jin_str(doc, "reference_no"), *country = jin_str(doc, "country_code");
    if (strlen(country) != 2) {
        failure(out, 200, "country_code must be a 2-letter code");
        return;
    }
    if (ob_find(w, ref, strlen(ref))) {
        failure(out, 200, "reference_no %.64s already exists", ref);
        return;
    }
    /* order_desc: the order's remark, kept and echoed (its limit is not in the sources:
     * GC_TEXT_MAX here) */
    const cJSON *desc_item = cJSON_GetObjectItemCaseSensitive(doc, "order_desc");
    const char *desc = jin_str(doc, "order_desc");
    if (desc_item && !cJSON_IsNull(desc_item) && !(desc && strlen(desc) <= GC_TEXT_MAX)) {
        failure(out, 200, "order_desc must be a string of at most %d characters", GC_TEXT_MAX);
        return;
    }
    uint32_t n = 0;
    struct ob_line *lines =
        read_items(s, cJSON_GetObjectItemCaseSensitive(doc, "items"), false, &n, out);
    if (!lines)
        return;
    /* ship_to in the world's canonical shape (as a tally warehouse stores it) */
    cJSON *ship = cJSON_CreateObject();
    static const char *const map[][2] = {
        {"name", "name"},        {"address", "address1"},     {"city", "city"},
        {"postcode", "zipcode"}, {"country", "country_code"}, {"phone", "phone"}};
    for (size_t i = 0; ship && i < 6; i++) {
        const char *v = jin_str(doc, map[i][1]);
        if (v)
            cJSON_AddStringToObject(ship, map[i][0], v);
    }
    char *ship_text = ship ? cJSON_PrintUnformatted(ship) : NULL;
    cJSON_Delete(ship);
    char *svc = strdup(jin_str(doc, "shipping_method"));
    struct outbound *o = ob_insert(s, w, ref, strlen(ref), lines, n, ship_text, svc);
    if (!o || (desc && desc[0] && !(o->note = strdup(desc)))) {
        failure(out, 500, "out of memory");
        return;
    }
    char code[40];
    order_code(w, o, code);
    success_begin(&out->body);
    jb_kv_str(&out->body, "order_code", code);
    jb_obj_end(&out->body);
}

static void order_by_ref(struct sim *s, struct warehouse *w, const cJSON *doc,
                         struct http_resp *out)
{
    const char *ref = jin_str(doc, "reference_no");
    if (!text_ok(ref, GC_REF_MAX)) {
        failure(out, 200, "reference_no is required");
        return;
    }
    struct outbound *o = ob_find(w, ref, strlen(ref));
    if (!o) {
        failure(out, 200, "no order with reference_no %.64s", ref);
        return;
    }
    success_begin(&out->body);
    jb_key(&out->body, "data");
    order_json(s, w, o, &out->body);
    jb_obj_end(&out->body);
}

static void order_list(struct sim *s, struct warehouse *w, const cJSON *doc, struct http_resp *out)
{
    int64_t page, size, mf = INT64_MIN, mt = INT64_MAX, cf = INT64_MIN, ct = INT64_MAX;
    if (!paging(doc, &page, &size, out) || !param_time(doc, "modify_date_from", &mf, out) ||
        !param_time(doc, "modify_date_to", &mt, out) ||
        !param_time(doc, "create_date_from", &cf, out) ||
        !param_time(doc, "create_date_to", &ct, out))
        return;
    const char *status = jin_str(doc, "order_status"), *code = jin_str(doc, "order_code");
    struct jb *j = &out->body;
    success_begin(j);
    jb_kv_arr(j, "data");
    int64_t count = 0;
    for (size_t i = 0; i < w->n_outbound; i++) {
        const struct outbound *o = &w->outbound[i];
        char oc[40];
        order_code(w, o, oc);
        if (o->updated_at < mf || o->updated_at > mt || o->created_at < cf || o->created_at > ct ||
            (status && status[0] && strcmp(status, status_code(o->status))) ||
            (code && code[0] && strcmp(code, oc)))
            continue;
        if (++count > (page - 1) * size && count <= page * size)
            order_json(s, w, o, j);
    }
    list_end(j, count, page, size);
}

static void cancel_order(struct sim *s, struct warehouse *w, const cJSON *doc,
                         struct http_resp *out)
{
    const char *code = jin_str(doc, "order_code");
    struct outbound *o = by_code(w, code);
    if (!o) {
        failure(out, 200, "order_code %.40s does not exist", code ? code : "(missing)");
        return;
    }
    if (o->status == OB_SHIPPED) {
        failure(out, 200, "order %.40s has been shipped and cannot be cancelled", code);
        return;
    }
    const char *reason = jin_str(doc, "reason");
    if (o->status != OB_CANCELLED &&
        ob_set_status(s, w, o, OB_CANCELLED, reason && reason[0] ? reason : "cancelled by client",
                      sim_now(s)) < 0) {
        failure(out, 500, "out of memory");
        return;
    }
    success_begin(&out->body);
    jb_kv_str(&out->body, "order_code", code);
    jb_kv_i64(&out->body, "cancel_status", 2);
    jb_obj_end(&out->body);
}

/* --- inbound notices ---------------------------------------------------------------------- */

static struct grn *grn_find(int wh, const char *ref)
{
    for (size_t i = 0; i < n_grns; i++)
        if (grns[i].wh == wh && strcmp(grns[i].ref, ref) == 0)
            return &grns[i];
    return NULL;
}

static void grn_code(const struct warehouse *w, size_t k, char out[40])
{
    snprintf(out, 40, "RV-%s-%06zu", w->code, k + 1);
}

static void create_grn(struct sim *s, struct warehouse *w, const cJSON *doc, struct http_resp *out)
{
    const char *ref = jin_str(doc, "reference_no"), *trk = jin_str(doc, "tracking_number");
    if (!text_ok(ref, GC_REF_MAX)) {
        failure(out, 200, "reference_no is required (1 to %d characters)", GC_REF_MAX);
        return;
    }
    if (!own_warehouse(doc, w, true, out))
        return;
    if (grn_find(w->index, ref)) {
        failure(out, 200, "reference_no %.64s already exists", ref);
        return;
    }
    if (n_grns >= GC_GRN_MAX) {
        failure(out, 200, "too many inbound orders");
        return;
    }
    /* receiving_desc (备注): kept and echoed as the list's remark (the sources give no limit:
     * none here; that the list's remark is this text is the simulator's reading) */
    const cJSON *desc_item = cJSON_GetObjectItemCaseSensitive(doc, "receiving_desc");
    const char *desc = jin_str(doc, "receiving_desc");
    if (desc_item && !cJSON_IsNull(desc_item) && !desc) {
        failure(out, 200, "receiving_desc must be a string");
        return;
    }
    uint32_t n = 0;
    struct ob_line *lines =
        read_items(s, cJSON_GetObjectItemCaseSensitive(doc, "items"), true, &n, out);
    if (!lines)
        return;
    if (n_grns == cap_grns) {
        size_t cap = cap_grns ? cap_grns * 2 : 16;
        struct grn *g = realloc(grns, cap * sizeof(*g));
        if (!g) {
            free(lines);
            failure(out, 500, "out of memory");
            return;
        }
        grns = g;
        cap_grns = cap;
    }
    struct grn *g = &grns[n_grns];
    memset(g, 0, sizeof(*g));
    g->wh = w->index;
    snprintf(g->ref, sizeof(g->ref), "%s", ref);
    if (trk && text_ok(trk, GC_REF_MAX))
        snprintf(g->tracking, sizeof(g->tracking), "%s", trk);
    g->created = sim_now(s);
    g->desc = desc && desc[0] ? strdup(desc) : NULL;
    g->lines = lines;
    g->n_lines = n;
    for (uint32_t i = 0; i < n; i++) {
        int64_t v = w->rows[lines[i].sku].inbound + lines[i].qty;
        w->rows[lines[i].sku].inbound = v > INT32_MAX ? INT32_MAX : (int32_t)v;
    }
    char code[40];
    grn_code(w, n_grns, code);
    n_grns++;
    success_begin(&out->body);
    jb_kv_obj(&out->body, "data");
    jb_kv_str(&out->body, "receiving_code", code);
    jb_obj_end(&out->body);
    jb_obj_end(&out->body);
}

static void grn_list(struct sim *s, struct warehouse *w, const cJSON *doc, struct http_resp *out)
{
    (void)s;
    int64_t page, size, cf = INT64_MIN, ct = INT64_MAX;
    if (!paging(doc, &page, &size, out) || !param_time(doc, "create_date_from", &cf, out) ||
        !param_time(doc, "create_date_to", &ct, out))
        return;
    struct jb *j = &out->body;
    success_begin(j);
    jb_kv_arr(j, "data");
    int64_t count = 0;
    for (size_t i = 0; i < n_grns; i++) {
        const struct grn *g = &grns[i];
        if (g->wh != w->index || g->created < cf || g->created > ct)
            continue;
        if (++count <= (page - 1) * size || count > page * size)
            continue;
        char code[40];
        int64_t units = 0;
        for (uint32_t k = 0; k < g->n_lines; k++)
            units += g->lines[k].qty;
        grn_code(w, i, code);
        jb_obj(j);
        jb_kv_str(j, "receiving_code", code);
        jb_kv_str(j, "reference_no", g->ref);
        jb_kv_str(j, "warehouse_code", w->code);
        jb_kv_str(j, "tracking_number", g->tracking);
        kv_time(j, "create_at", g->created);
        kv_time(j, "update_at", g->created);
        jb_kv_i64(j, "box_total_count", 1);
        jb_kv_i64(j, "sku_total_count", units);
        jb_kv_str(j, "remark", g->desc ? g->desc : "");
        jb_obj_end(j);
    }
    list_end(j, count, page, size);
}

/* --- dispatch ----------------------------------------------------------------------------- */

void gc_handle(struct sim *s, const struct wh_route *r, const struct http_req *rq,
               struct http_resp *out)
{
    out->status = 200;
    out->content_type = "application/json";
    if (!rq->app_key || !rq->app_token || strcmp(rq->app_key, SIM_TPL_APP_KEY) != 0 ||
        strcmp(rq->app_token, s->cfg.wh_token) != 0) {
        failure(out, 401, "app-key or app-token is invalid");
        return;
    }
    int call = call_index(r->tpl_call);
    if (call < 0) {
        failure(out, 404, "no such interface: %s %.200s", rq->method, rq->path);
        return;
    }
    cJSON *doc = rq->body_len ? cJSON_ParseWithLength(rq->body, rq->body_len) : NULL;
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        failure(out, 200, "the request body must be a JSON object");
        return;
    }
    struct warehouse *w = &s->wh[r->wh];
    pthread_mutex_lock(&s->lock);
    ob_tick(s, w, sim_now(s));
    switch (call) {
    case C_INVENTORY:
        inventory(s, w, doc, out);
        break;
    case C_LOG:
        inventory_log(s, w, doc, out);
        break;
    case C_CREATE:
        create_order(s, w, doc, out);
        break;
    case C_BY_REF:
        order_by_ref(s, w, doc, out);
        break;
    case C_LIST:
        order_list(s, w, doc, out);
        break;
    case C_CANCEL:
        cancel_order(s, w, doc, out);
        break;
    case C_GRN_CREATE:
        create_grn(s, w, doc, out);
        break;
    case C_GRN_LIST:
        grn_list(s, w, doc, out);
        break;
    }
    pthread_mutex_unlock(&s->lock);
    cJSON_Delete(doc);
    if (jb_failed(&out->body))
        failure(out, 500, "answer too large");
}

void gc_fault_response(const struct fault_action *a, struct http_resp *out)
{
    failure(out, a->status, "injected fault: HTTP %d", a->status);
    out->retry_after = a->retry_after;
}
