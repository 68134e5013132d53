/* fourpx: a warehouse of kind fourpx, as the 4PX open platform's fulfilment API is documented
 * by the public SDKs (EalenXie/sdk-all fop-sdk, AkaneMurakawa/tool fpx; the facts are pinned in
 * tests/fixtures/fourpx/), mapped onto the simulator's shared world (state.h): stock rows,
 * outbound orders with their create / repeat counts and progression (ob_tick), faults and the
 * control interface work as for any warehouse.
 *
 * Every call is POST /wh/{CODE}/router/api/service?method&app_key&v&timestamp&format[&access_token]
 * &sign, JSON body. The signature is checked here with its own code (not the daemon's): md5 over
 * "app_key" K "format" F "method" M "timestamp" T "v" V, the body as received and the secret
 * (the warehouses' token), lower-case hex. Answers are FopResp {"result","msg","errors","data"};
 * lists are FopPage {"page_no","page_size","total","data"}. Readings where the sources are silent
 * are listed in README.md ("4PX warehouses"). */
#include "fourpx.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "json_in.h"
#include "state.h"
#include "strmap.h"
#include "warehouse.h"

#define ROUTER "/router/api/service"
#define ID_MAX 64
#define QTY_MAX 1000000LL
#define SKUS_MAX 100                    /* oconsignment_sku, iconsignment_sku, lstsku */
#define WINDOW_MS (30LL * 86400 * 1000) /* getlog / getlist: at most one month */

static const char *const methods[] = {
    "fu.wms.inventory.get",   "fu.wms.inventory.getlog", "fu.wms.outbound.create",
    "fu.wms.outbound.cancel", "fu.wms.outbound.getlist", "fu.wms.inbound.create",
    "fu.wms.inbound.getlist",
};
enum { M_INV_GET, M_INV_LOG, M_OB_CREATE, M_OB_CANCEL, M_OB_LIST, M_IN_CREATE, M_IN_LIST, M_COUNT };

const char *fpx_route(const char *method, const char *rest, const char *api_method)
{
    if (strcmp(method, "POST") != 0 || strcmp(rest, ROUTER) != 0 || !api_method)
        return NULL;
    for (int i = 0; i < M_COUNT; i++)
        if (strcmp(api_method, methods[i]) == 0)
            return methods[i];
    return NULL;
}

/* ---- answers ---------------------------------------------------------------------------- */

/* result "0": the envelope of FopResp with one Error. */
static void refuse(struct http_resp *out, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(struct http_resp *out, const char *code, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jb_reset(&out->body);
    struct jb *j = &out->body;
    jb_obj(j);
    jb_kv_str(j, "result", "0");
    jb_kv_str(j, "msg", msg);
    jb_kv_arr(j, "errors");
    jb_obj(j);
    jb_kv_str(j, "error_code", code);
    jb_kv_str(j, "error_msg", msg);
    jb_key(j, "error_data");
    jb_null(j);
    jb_key(j, "referenceCode");
    jb_null(j);
    jb_obj_end(j);
    jb_arr_end(j);
    jb_key(j, "data");
    jb_null(j);
    jb_obj_end(j);
}

static void ok_begin(struct jb *j)
{
    jb_obj(j);
    jb_kv_str(j, "result", "1");
    jb_kv_str(j, "msg", "");
    jb_kv_arr(j, "errors");
    jb_arr_end(j);
    jb_key(j, "data");
}

static void ok_end(struct jb *j)
{
    jb_obj_end(j);
}

void fpx_fault_response(const struct fault_action *a, struct http_resp *out)
{
    out->content_type = "application/json";
    out->status = a->status;
    refuse(out, "SIM-FAULT", "injected fault: HTTP %d", a->status);
    out->retry_after = a->retry_after;
}

/* ---- signature (a reading of the SDKs' format string, written apart from the daemon's) ---- */

static bool sign_ok(const char *secret, const struct http_req *rq, const char *app_key,
                    const char *format, const char *method, const char *ts, const char *v,
                    const char *sign)
{
    const char *parts[] = {"app_key", app_key,     "format", format, "method",
                           method,    "timestamp", ts,       "v",    v};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_md5(), NULL) == 1;
    for (size_t i = 0; ok && i < sizeof parts / sizeof *parts; i++)
        ok = EVP_DigestUpdate(c, parts[i], strlen(parts[i])) == 1;
    if (ok && rq->body_len)
        ok = EVP_DigestUpdate(c, rq->body, rq->body_len) == 1;
    ok = ok && EVP_DigestUpdate(c, secret, strlen(secret)) == 1 &&
         EVP_DigestFinal_ex(c, md, &mdlen) == 1;
    EVP_MD_CTX_free(c);
    if (!ok || strlen(sign) != 2 * (size_t)mdlen)
        return false;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    unsigned diff = 0; /* constant time; upper case is not what the SDKs send */
    for (size_t i = 0; i < 2 * (size_t)mdlen; i++)
        diff |= (unsigned)(hex[i] ^ sign[i]);
    return diff == 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static bool valid_ref(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7F)
            return false;
    return true;
}

/* An optional integer member in [lo, hi] (numbers or strings of digits); false when bad. */
static bool opt_int(const cJSON *doc, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    if (!v || cJSON_IsNull(v))
        return true;
    int64_t n;
    if (!jin_id(v, &n) || n < lo || n > hi)
        return false;
    *out = n;
    return true;
}

static void consignment_no(const struct warehouse *w, const struct outbound *o, char out[32])
{
    snprintf(out, 32, "OC%02d%014zu", w->index + 1, (size_t)(o - w->outbound) + 1);
}

static const char *status_code(const struct outbound *o)
{
    switch (o->status) {
    case OB_ACCEPTED:
        return "N";
    case OB_PICKING:
        return "S";
    case OB_PACKED:
        return "P";
    case OB_SHIPPED:
        return "C";
    case OB_CANCELLED:
        return "X";
    default:
        return "E";
    }
}

/* Units reserved by open outbound orders, per SKU (pending_stock); NULL when out of memory. */
static int64_t *reserved(const struct sim *s, const struct warehouse *w)
{
    int64_t *r = calloc(s->n_skus ? s->n_skus : 1, sizeof *r);
    for (size_t i = 0; r && i < w->n_outbound; i++) {
        const struct outbound *o = &w->outbound[i];
        if (o->status != OB_ACCEPTED && o->status != OB_PICKING && o->status != OB_PACKED)
            continue;
        for (uint32_t k = 0; k < o->n_lines; k++)
            r[o->lines[k].sku] += o->lines[k].qty;
    }
    return r;
}

static void page_begin(struct jb *j, int64_t page_no, int64_t page_size, int64_t total)
{
    jb_obj(j);
    jb_kv_i64(j, "page_no", page_no);
    jb_kv_i64(j, "page_size", page_size);
    jb_kv_i64(j, "total", total);
    jb_kv_arr(j, "data");
}

static void page_end(struct jb *j)
{
    jb_arr_end(j);
    jb_obj_end(j);
}

/* Rows of a SKU: one per batch. Every third SKU with at least 2 on hand is held in two batches
 * (B1, B2), so a reader must add a SKU's rows up, across pages too. */
static int stock_rows_of(const struct warehouse *w, uint32_t sku)
{
    return sku % 3 == 2 && w->rows[sku].on_hand >= 2 ? 2 : 1;
}

/* Batch `part` (0 or 1) of a SKU's stock. */
static void stock_row(const struct sim *s, const struct warehouse *w, uint32_t sku, int part,
                      const int64_t *res, struct jb *j)
{
    const struct stock_row *r = &w->rows[sku];
    int64_t on_hand = r->on_hand > 0 ? r->on_hand : 0;
    int64_t pending = res[sku] < on_hand ? res[sku] : on_hand;
    int64_t avail = on_hand - pending, onway = r->inbound > 0 ? r->inbound : 0;
    const char *batch = "";
    if (stock_rows_of(w, sku) == 2) {
        batch = part ? "B2" : "B1";
        avail = part ? avail - avail / 2 : avail / 2;
        pending = part ? pending - pending / 2 : pending / 2;
        onway = part ? 0 : onway;
    }
    char id[24];
    snprintf(id, sizeof id, "%" PRIu32, sku + 1);
    jb_obj(j);
    jb_kv_str(j, "customer_code", "SIM");
    jb_kv_str(j, "warehouse_code", w->code);
    jb_kv_str(j, "sku_id", id);
    jb_kv_str(j, "sku_code", s->skus[sku].code);
    jb_kv_str(j, "batch_no", batch);
    jb_kv_i64(j, "available_stock", avail);
    jb_kv_i64(j, "pending_stock", pending);
    jb_kv_i64(j, "onway_stock", onway);
    jb_kv_str(j, "stock_quality", "G");
    jb_obj_end(j);
}

/* The rows of `skus` (n of them; NULL: every SKU in order), paged by rows. */
static void stock_page(const struct sim *s, const struct warehouse *w, const uint32_t *skus,
                       size_t n, int64_t no, int64_t size, const int64_t *res, struct jb *j)
{
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += stock_rows_of(w, skus ? skus[i] : (uint32_t)i);
    page_begin(j, no, size, total);
    int64_t k = 0, from = (no - 1) * size, to = no * size;
    for (size_t i = 0; i < n && k < to; i++) {
        uint32_t sku = skus ? skus[i] : (uint32_t)i;
        for (int part = 0; part < stock_rows_of(w, sku) && k < to; part++, k++)
            if (k >= from)
                stock_row(s, w, sku, part, res, j);
    }
    page_end(j);
}

/* page_no >= 1, page_size in [1, max] (default def); false with the refusal set. */
static bool paging(const cJSON *doc, int64_t def, int64_t max, int64_t *no, int64_t *size,
                   struct http_resp *out)
{
    *no = 1;
    *size = def;
    if (!opt_int(doc, "page_no", 1, 1000000, no) || !opt_int(doc, "page_size", 1, max, size)) {
        refuse(out, "SIM-PARAM", "page_no must be >= 1 and page_size in [1, %" PRId64 "]", max);
        return false;
    }
    return true;
}

/* A time window of create_time_start/_end (ms): both or neither, at most 30 days. */
static bool window(const cJSON *doc, const char *a, const char *b, int64_t *lo, int64_t *hi,
                   bool *given, struct http_resp *out)
{
    *lo = -1;
    *hi = -1;
    if (!opt_int(doc, a, 0, INT64_MAX / 4, lo) || !opt_int(doc, b, 0, INT64_MAX / 4, hi)) {
        refuse(out, "SIM-PARAM", "%s and %s must be times in epoch milliseconds", a, b);
        return false;
    }
    *given = *lo >= 0 || *hi >= 0;
    if (*given && (*lo < 0 || *hi < 0 || *hi < *lo || *hi - *lo > WINDOW_MS)) {
        refuse(out, "SIM-PARAM", "%s/%s: a window of at most one month (30 days) is supported", a,
               b);
        return false;
    }
    return true;
}

static bool own_warehouse(const struct warehouse *w, const cJSON *doc, const char *key,
                          bool required, struct http_resp *out)
{
    const char *code = jin_str(doc, key);
    if (!code && !required)
        return true;
    if (!code || strcmp(code, w->code) != 0) {
        refuse(out, "SIM-WAREHOUSE", "%s %.40s is not a warehouse of this account", key,
               code ? code : "(missing)");
        return false;
    }
    return true;
}

/* ---- fu.wms.inventory.get ---------------------------------------------------------------- */

static void inventory_get(struct sim *s, struct warehouse *w, const cJSON *doc,
                          struct http_resp *out)
{
    int64_t no, size;
    if (!own_warehouse(w, doc, "warehouse_code", false, out) ||
        !paging(doc, 50, 1000, &no, &size, out))
        return;
    const cJSON *lst = cJSON_GetObjectItemCaseSensitive(doc, "lstsku");
    if (lst && !cJSON_IsNull(lst) && (!cJSON_IsArray(lst) || cJSON_GetArraySize(lst) > SKUS_MAX)) {
        refuse(out, "SIM-PARAM", "lstsku: at most %d SKUs per query", SKUS_MAX);
        return;
    }
    int64_t *res = reserved(s, w);
    if (!res) {
        out->status = 500;
        refuse(out, "SIM-INTERNAL", "out of memory");
        return;
    }
    struct jb *j = &out->body;
    ok_begin(j);
    if (cJSON_IsArray(lst)) {
        /* the SKUs asked for that exist, in the order asked, each once */
        uint32_t want[SKUS_MAX];
        int n = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, lst)
        {
            int64_t k =
                cJSON_IsString(it) ? sim_sku_find(s, it->valuestring, strlen(it->valuestring)) : -1;
            bool dup = false;
            for (int i = 0; k >= 0 && i < n; i++)
                dup |= want[i] == (uint32_t)k;
            if (k >= 0 && !dup)
                want[n++] = (uint32_t)k;
        }
        stock_page(s, w, want, (size_t)n, no, size, res, j);
    } else {
        stock_page(s, w, NULL, s->n_skus, no, size, res, j);
    }
    ok_end(j);
    free(res);
}

/* ---- fu.wms.inventory.getlog ------------------------------------------------------------- */

/* One row per SKU whose stock last changed inside the window (the world keeps the time of a
 * row's last change only; that is what a reader of the log needs to know what changed). */
static void inventory_log(struct sim *s, struct warehouse *w, const cJSON *doc,
                          struct http_resp *out)
{
    int64_t no, size, lo, hi;
    bool given;
    if (!own_warehouse(w, doc, "warehouse_code", false, out) ||
        !paging(doc, 50, 1000, &no, &size, out) ||
        !window(doc, "create_time_start", "create_time_end", &lo, &hi, &given, out))
        return;
    if (!given) { /* reading: the last 24 hours */
        hi = sim_now_ms(s);
        lo = hi - 86400000LL;
    }
    const char *only = jin_str(doc, "sku_code");
    struct jb *j = &out->body;
    ok_begin(j);
    /* Walk the version log newest-first is not needed: each SKU's latest change is the one
     * whose version equals the row's. */
    int64_t total = 0;
    for (int64_t v = w->version_base + 1; v <= w->version; v++) {
        uint32_t sku = w->vlog[v - w->version_base - 1];
        const struct stock_row *r = &w->rows[sku];
        int64_t t = (int64_t)r->updated_at * 1000;
        if (r->version == v && t >= lo && t <= hi &&
            (!only || strcmp(only, s->skus[sku].code) == 0))
            total++;
    }
    page_begin(j, no, size, total);
    int64_t k = 0;
    for (int64_t v = w->version_base + 1; v <= w->version && k < no * size; v++) {
        uint32_t sku = w->vlog[v - w->version_base - 1];
        const struct stock_row *r = &w->rows[sku];
        int64_t t = (int64_t)r->updated_at * 1000;
        if (r->version != v || t < lo || t > hi || (only && strcmp(only, s->skus[sku].code) != 0))
            continue;
        if (k++ < (no - 1) * size)
            continue;
        char id[24], bal[24];
        snprintf(id, sizeof id, "%" PRId64, v);
        snprintf(bal, sizeof bal, "%" PRId64, r->on_hand);
        jb_obj(j);
        jb_kv_str(j, "inventory_flow_id", id);
        jb_kv_str(j, "sku_code", s->skus[sku].code);
        jb_kv_str(j, "warehouse_code", w->code);
        jb_kv_str(j, "batch_no", "");
        jb_kv_str(j, "balance_stock", bal);
        jb_kv_str(j, "stock_quality", "G");
        jb_kv_i64(j, "create_time", t);
        jb_obj_end(j);
    }
    page_end(j);
    ok_end(j);
}

/* ---- outbound ---------------------------------------------------------------------------- */

static void outbound_row(const struct sim *s, const struct warehouse *w, const struct outbound *o,
                         struct jb *j)
{
    char cno[32], trk[32];
    consignment_no(w, o, cno);
    snprintf(trk, sizeof trk, "4PX%02d%012zu", w->index + 1, (size_t)(o - w->outbound) + 1);
    const char *st = status_code(o);
    jb_obj(j);
    jb_kv_str(j, "consignment_no", cno);
    jb_kv_str(j, "customer_code", "SIM");
    jb_kv_str(j, "4px_tracking_no", trk);
    jb_kv_str(j, "ref_no", o->id);
    jb_kv_str(j, "from_warehouse_code", w->code);
    jb_kv_str(j, "status", st);
    jb_kv_str(j, "consignment_type", "S");
    if (o->service)
        jb_kv_str(j, "logistics_product_code", o->service);
    if (o->status == OB_SHIPPED) {
        jb_kv_str(j, "shipping_no", o->tracking);
        jb_kv_str(j, "carrier_code", o->carrier);
        jb_kv_i64(j, "complete_time", o->updated_at * 1000);
    }
    if (o->status == OB_EXCEPTION) {
        bool short_stock = o->reason && strstr(o->reason, "insufficient stock");
        jb_kv_str(j, "sub_status", short_stock ? "S" : "R");
        jb_kv_str(j, "error_message_origin", o->reason ? o->reason : "");
    }
    jb_kv_i64(j, "create_time", o->created_at * 1000);
    /* The sub-second part orders transitions made within one simulated second. */
    jb_kv_i64(j, "update_time", o->updated_at * 1000 + o->version % 1000);
    /* remark: the create's (reading: vo/Outbound's remark is what OutboundCreate sent), else
     * the reason of a cancel */
    if (o->note)
        jb_kv_str(j, "remark", o->note);
    else if (o->reason && o->status != OB_EXCEPTION)
        jb_kv_str(j, "remark", o->reason);
    jb_kv_arr(j, "outboundlist_sku");
    for (uint32_t i = 0; i < o->n_lines; i++) {
        jb_obj(j);
        jb_kv_str(j, "sku_code", s->skus[o->lines[i].sku].code);
        jb_kv_i64(j, "qty", o->lines[i].qty);
        jb_kv_str(j, "stock_quality", "G");
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
}

static struct outbound *find_by_no(struct warehouse *w, const char *ref, const char *cno)
{
    if (ref)
        return ob_find(w, ref, strlen(ref));
    for (size_t i = 0; cno && i < w->n_outbound; i++) {
        char c[32];
        consignment_no(w, &w->outbound[i], c);
        if (strcmp(c, cno) == 0)
            return &w->outbound[i];
    }
    return NULL;
}

static void outbound_create(struct sim *s, struct warehouse *w, const cJSON *doc,
                            struct http_resp *out)
{
    static const char *const types[] = {"S", "D", "R", "DS", "P", "O"};
    const char *ref = jin_str(doc, "ref_no");
    const char *type = jin_str(doc, "consignment_type");
    const cJSON *lsi = cJSON_GetObjectItemCaseSensitive(doc, "logistics_service_info");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(doc, "oconsignment_desc");
    const cJSON *skus = cJSON_GetObjectItemCaseSensitive(doc, "oconsignment_sku");
    const char *product = jin_str(lsi, "logistics_product_code");
    /* remark: kept and echoed in the order's rows (its limit is not in the sources: 500 here) */
    const cJSON *remark_item = cJSON_GetObjectItemCaseSensitive(doc, "remark");
    const char *remark = jin_str(doc, "remark");
    if (remark_item && !cJSON_IsNull(remark_item) && !(remark && strlen(remark) <= 500)) {
        refuse(out, "SIM-PARAM", "remark must be a string of at most 500 characters");
        return;
    }
    bool type_ok = false;
    for (size_t i = 0; type && i < sizeof types / sizeof *types; i++)
        type_ok |= strcmp(type, types[i]) == 0;
    if (!valid_ref(ref)) {
        refuse(out, "SIM-PARAM", "ref_no is required (1 to %d characters)", ID_MAX);
        return;
    }
    if (!own_warehouse(w, doc, "from_warehouse_code", true, out))
        return;
    if (!type_ok) {
        refuse(out, "SIM-PARAM", "consignment_type must be one of S, D, R, DS, P, O");
        return;
    }
    if (!cJSON_IsObject(lsi) || !product || !product[0] || strlen(product) > 64) {
        refuse(out, "SIM-PARAM", "logistics_service_info.logistics_product_code is required");
        return;
    }
    const char *country = jin_str(desc, "country"), *street = jin_str(desc, "street"),
               *first = jin_str(desc, "first_name"), *phone = jin_str(desc, "phone");
    if (!cJSON_IsObject(desc) || !country || strlen(country) != 2 || !street || !street[0] ||
        !first || !first[0] || !phone || !phone[0]) {
        refuse(out, "SIM-PARAM",
               "oconsignment_desc needs country (2 letters), street, first_name and phone");
        return;
    }
    int n = cJSON_IsArray(skus) ? cJSON_GetArraySize(skus) : 0;
    if (n < 1 || n > SKUS_MAX) {
        refuse(out, "SIM-PARAM", "oconsignment_sku: 1 to %d SKUs", SKUS_MAX);
        return;
    }
    struct ob_line *lines = calloc((size_t)n, sizeof *lines);
    if (!lines) {
        out->status = 500;
        refuse(out, "SIM-INTERNAL", "out of memory");
        return;
    }
    const cJSON *l;
    int i = 0;
    cJSON_ArrayForEach(l, skus)
    {
        const char *code = jin_str(l, "sku_code"), *q = jin_str(l, "stock_quality");
        int64_t k = code ? sim_sku_find(s, code, strlen(code)) : -1, qty = 0;
        if (k < 0 || !jin_i64(cJSON_GetObjectItemCaseSensitive(l, "qty"), &qty) || qty < 1 ||
            qty > QTY_MAX || !q || (strcmp(type, "S") == 0 && strcmp(q, "G") != 0)) {
            refuse(out, "SIM-PARAM",
                   "oconsignment_sku %d: unknown sku_code, qty not in [1, %lld], or stock_quality "
                   "not G (a standard outbound takes good stock only)",
                   i + 1, QTY_MAX);
            free(lines);
            return;
        }
        lines[i].sku = (uint32_t)k;
        lines[i++].qty = qty;
    }
    struct outbound *o = ob_find(w, ref, strlen(ref));
    if (o) {
        /* reading: a customer reference is unique; a second create is refused */
        o->repeat_count++;
        free(lines);
        char cno[32];
        consignment_no(w, o, cno);
        refuse(out, "SIM-DUPLICATE", "ref_no %s already exists (consignment %s)", ref, cno);
        return;
    }
    char *ship = cJSON_PrintUnformatted(desc);
    char *svc = strdup(product);
    o = ob_insert(s, w, ref, strlen(ref), lines, (uint32_t)n, ship, svc);
    if (o && remark && remark[0] && !(o->note = strdup(remark)))
        o = NULL;
    if (!o) {
        out->status = 500;
        refuse(out, "SIM-INTERNAL", "out of memory");
        return;
    }
    char cno[32], trk[32];
    consignment_no(w, o, cno);
    snprintf(trk, sizeof trk, "4PX%02d%012zu", w->index + 1, (size_t)(o - w->outbound) + 1);
    struct jb *j = &out->body;
    ok_begin(j);
    jb_obj(j);
    jb_kv_str(j, "consignment_no", cno);
    jb_kv_str(j, "4px_tracking_no", trk);
    jb_obj_end(j);
    ok_end(j);
}

static void outbound_cancel(struct sim *s, struct warehouse *w, const cJSON *doc,
                            struct http_resp *out)
{
    static const char *const types[] = {"AP", "RO", "OS", "BC", "CF", "OT"};
    const char *ref = jin_str(doc, "ref_no"), *cno = jin_str(doc, "consignment_no");
    const char *type = jin_str(doc, "cancel_type");
    bool type_ok = false;
    for (size_t i = 0; type && i < sizeof types / sizeof *types; i++)
        type_ok |= strcmp(type, types[i]) == 0;
    if (!ref && !cno) {
        refuse(out, "SIM-PARAM", "consignment_no or ref_no is required");
        return;
    }
    if (!type_ok) {
        refuse(out, "SIM-PARAM", "cancel_type must be one of AP, RO, OS, BC, CF, OT");
        return;
    }
    struct outbound *o = find_by_no(w, ref, cno);
    if (!o) {
        refuse(out, "SIM-NOT-FOUND", "no outbound consignment %.64s", ref ? ref : cno);
        return;
    }
    if (o->status == OB_SHIPPED) {
        refuse(out, "SIM-STATUS", "consignment %.64s is already shipped out (C)", o->id);
        return;
    }
    if (o->status == OB_CANCELLED) {
        refuse(out, "SIM-STATUS", "consignment %.64s is already cancelled (X)", o->id);
        return;
    }
    char why[80];
    snprintf(why, sizeof why, "cancelled by client (cancel_type %s)", type);
    if (ob_set_status(s, w, o, OB_CANCELLED, why, sim_now(s)) < 0) {
        out->status = 500;
        refuse(out, "SIM-INTERNAL", "out of memory");
        return;
    }
    char c[32];
    consignment_no(w, o, c);
    struct jb *j = &out->body;
    ok_begin(j);
    jb_obj(j);
    jb_kv_str(j, "consignment_no", c);
    jb_kv_str(j, "status", "X");
    jb_kv_str(j, "ref_no", o->id);
    jb_obj_end(j);
    ok_end(j);
}

static void outbound_list(struct sim *s, struct warehouse *w, const cJSON *doc,
                          struct http_resp *out)
{
    int64_t no, size, clo, chi, plo, phi;
    bool cgiven, pgiven;
    if (!own_warehouse(w, doc, "from_warehouse_code", false, out) ||
        !paging(doc, 50, 500, &no, &size, out) ||
        !window(doc, "create_time_start", "create_time_end", &clo, &chi, &cgiven, out) ||
        !window(doc, "complete_time_start", "complete_time_end", &plo, &phi, &pgiven, out))
        return;
    const char *ref = jin_str(doc, "ref_no"), *cno = jin_str(doc, "consignment_no");
    const char *status = jin_str(doc, "status");
    /* "时间默认为当天": reading, the last 24 hours, by reference too (the SDK does not say a
     * ref_no or consignment_no lifts the default) */
    if (!cgiven && !pgiven) {
        chi = sim_now_ms(s);
        clo = chi - 86400000LL;
        cgiven = true;
    }
    struct jb *j = &out->body;
    ok_begin(j);
    /* two passes: the total, then the page */
    int64_t total = 0, k = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            page_begin(j, no, size, total);
        for (size_t i = 0; i < w->n_outbound; i++) {
            const struct outbound *o = &w->outbound[i];
            char c[32];
            consignment_no(w, o, c);
            int64_t created = o->created_at * 1000, done = o->updated_at * 1000;
            if ((ref && strcmp(ref, o->id) != 0) || (cno && strcmp(cno, c) != 0) ||
                (status && strcmp(status, status_code(o)) != 0) ||
                (cgiven && (created < clo || created > chi)) ||
                (pgiven && (o->status != OB_SHIPPED || done < plo || done > phi)))
                continue;
            if (pass == 0) {
                total++;
                continue;
            }
            if (k++ < (no - 1) * size || k > no * size)
                continue;
            outbound_row(s, w, o, j);
        }
    }
    page_end(j);
    ok_end(j);
}

/* ---- inbound notices (kept here: the world has no inbound orders; their units show as the
 * rows' inbound, i.e. onway_stock) ---------------------------------------------------------- */

struct notice {
    char ref[ID_MAX + 1];
    char no[32];
    int64_t created_ms;
    char remark[501]; /* the create's remark, echoed by the list */
    uint32_t n;
    uint32_t sku[SKUS_MAX];
    int64_t qty[SKUS_MAX];
};

static struct {
    struct notice *v;
    size_t n, cap;
} notices[SIM_MAX_WAREHOUSES]; /* under the world's lock */

static struct notice *notice_find(int wh, const char *ref)
{
    for (size_t i = 0; i < notices[wh].n; i++)
        if (strcmp(notices[wh].v[i].ref, ref) == 0)
            return &notices[wh].v[i];
    return NULL;
}

static void inbound_create(struct sim *s, struct warehouse *w, const cJSON *doc,
                           struct http_resp *out)
{
    const char *ref = jin_str(doc, "ref_no");
    const cJSON *skus = cJSON_GetObjectItemCaseSensitive(doc, "iconsignment_sku");
    if (!valid_ref(ref)) {
        refuse(out, "SIM-PARAM", "ref_no is required (1 to %d characters)", ID_MAX);
        return;
    }
    if (!own_warehouse(w, doc, "to_warehouse_code", true, out))
        return;
    int n = cJSON_IsArray(skus) ? cJSON_GetArraySize(skus) : 0;
    if (n < 1 || n > SKUS_MAX) {
        refuse(out, "SIM-PARAM", "iconsignment_sku: 1 to %d SKUs", SKUS_MAX);
        return;
    }
    /* remark: kept and echoed in the list's rows (InboundConsignment.remark, "the remark the
     * customer wrote"; its limit is not in the sources: 500 here, as for outbound orders) */
    const cJSON *remark_item = cJSON_GetObjectItemCaseSensitive(doc, "remark");
    const char *remark = jin_str(doc, "remark");
    if (remark_item && !cJSON_IsNull(remark_item) && !(remark && strlen(remark) <= 500)) {
        refuse(out, "SIM-PARAM", "remark must be a string of at most 500 characters");
        return;
    }
    struct notice nt;
    memset(&nt, 0, sizeof nt);
    if (remark)
        snprintf(nt.remark, sizeof nt.remark, "%s", remark);
    const cJSON *l;
    cJSON_ArrayForEach(l, skus)
    {
        const char *code = jin_str(l, "sku_code");
        int64_t k = code ? sim_sku_find(s, code, strlen(code)) : -1, qty = 0;
        if (k < 0 || !jin_i64(cJSON_GetObjectItemCaseSensitive(l, "plan_qty"), &qty) || qty < 1 ||
            qty > QTY_MAX) {
            refuse(out, "SIM-PARAM",
                   "iconsignment_sku %u: unknown sku_code or plan_qty not in "
                   "[1, %lld]",
                   nt.n + 1, QTY_MAX);
            return;
        }
        nt.sku[nt.n] = (uint32_t)k;
        nt.qty[nt.n++] = qty;
    }
    if (notice_find(w->index, ref)) {
        refuse(out, "SIM-DUPLICATE", "ref_no %s already exists", ref);
        return;
    }
    if (notices[w->index].n == notices[w->index].cap) {
        size_t cap = notices[w->index].cap ? 2 * notices[w->index].cap : 8;
        struct notice *v = realloc(notices[w->index].v, cap * sizeof *v);
        if (!v) {
            out->status = 500;
            refuse(out, "SIM-INTERNAL", "out of memory");
            return;
        }
        notices[w->index].v = v;
        notices[w->index].cap = cap;
    }
    snprintf(nt.ref, sizeof nt.ref, "%s", ref);
    snprintf(nt.no, sizeof nt.no, "IC%02d%014zu", w->index + 1, notices[w->index].n + 1);
    nt.created_ms = sim_now_ms(s);
    for (uint32_t i = 0; i < nt.n; i++)
        if (w->rows[nt.sku[i]].inbound + nt.qty[i] <= INT32_MAX)
            w->rows[nt.sku[i]].inbound += (int32_t)nt.qty[i];
    notices[w->index].v[notices[w->index].n++] = nt;
    struct jb *j = &out->body;
    ok_begin(j);
    jb_obj(j);
    jb_kv_str(j, "consignment_no", nt.no);
    jb_kv_str(j, "4px_tracking_no", nt.no);
    jb_obj_end(j);
    ok_end(j);
}

static void inbound_list(struct sim *s, struct warehouse *w, const cJSON *doc,
                         struct http_resp *out)
{
    int64_t no, size;
    if (!own_warehouse(w, doc, "warehouse_code", false, out) ||
        !paging(doc, 20, 100, &no, &size, out))
        return;
    const char *ref = jin_str(doc, "ref_no"), *cno = jin_str(doc, "consignment_no");
    struct jb *j = &out->body;
    ok_begin(j);
    int64_t total = 0, k = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            page_begin(j, no, size, total);
        for (size_t i = 0; i < notices[w->index].n; i++) {
            const struct notice *nt = &notices[w->index].v[i];
            if ((ref && strcmp(ref, nt->ref) != 0) || (cno && strcmp(cno, nt->no) != 0))
                continue;
            if (pass == 0) {
                total++;
                continue;
            }
            if (k++ < (no - 1) * size || k > no * size)
                continue;
            jb_obj(j);
            jb_kv_str(j, "consignment_no", nt->no);
            jb_kv_str(j, "ref_no", nt->ref);
            jb_kv_str(j, "to_warehouse_code", w->code);
            jb_kv_str(j, "status", "S");
            jb_kv_i64(j, "create_time", nt->created_ms);
            if (nt->remark[0])
                jb_kv_str(j, "remark", nt->remark);
            jb_kv_arr(j, "iconsignment_sku");
            for (uint32_t x = 0; x < nt->n; x++) {
                jb_obj(j);
                jb_kv_str(j, "sku_code", s->skus[nt->sku[x]].code);
                jb_kv_i64(j, "plan_qty", nt->qty[x]);
                jb_obj_end(j);
            }
            jb_arr_end(j);
            jb_obj_end(j);
        }
    }
    page_end(j);
    ok_end(j);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static bool digits(const char *s, size_t min, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

void fpx_handle(struct sim *s, const struct wh_route *r, const struct http_req *rq,
                struct http_resp *out)
{
    out->status = 200;
    out->content_type = "application/json";
    const struct params *q = &rq->query;
    const char *method = params_get(q, "method"), *app_key = params_get(q, "app_key");
    const char *v = params_get(q, "v"), *ts = params_get(q, "timestamp");
    const char *format = params_get(q, "format"), *sign = params_get(q, "sign");
    if (strcmp(rq->path + 4 + strlen(s->wh[r->wh].code), ROUTER) != 0 ||
        strcmp(rq->method, "POST") != 0) {
        out->status = 404;
        refuse(out, "SIM-ROUTE", "no route %s %s", rq->method, rq->path);
        return;
    }
    if (!app_key || strcmp(app_key, SIM_TPL_APP_KEY) != 0) {
        refuse(out, "SIM-AUTH", "invalid app_key");
        return;
    }
    if (!method || !r->tpl_call) {
        refuse(out, "SIM-METHOD", "unknown method %.80s", method ? method : "(none)");
        return;
    }
    if (!format || strcmp(format, "json") != 0) {
        refuse(out, "SIM-PARAM", "format must be json");
        return;
    }
    if (!v || (strcmp(v, "1.0.0") != 0 && strcmp(v, "1.0") != 0)) {
        refuse(out, "SIM-PARAM", "v: unsupported API version %.20s", v ? v : "(none)");
        return;
    }
    if (!digits(ts, 10, 16)) {
        refuse(out, "SIM-PARAM", "timestamp must be epoch milliseconds");
        return;
    }
    if (!sign || !sign_ok(s->cfg.wh_token, rq, app_key, format, method, ts, v, sign)) {
        refuse(out, "SIM-AUTH", "sign error: the signature does not match");
        return;
    }
    cJSON *doc = rq->body_len ? cJSON_ParseWithLength(rq->body, rq->body_len) : NULL;
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        refuse(out, "SIM-PARAM", "the body must be a JSON object");
        return;
    }
    struct warehouse *w = &s->wh[r->wh];
    pthread_mutex_lock(&s->lock);
    ob_tick(s, w, sim_now(s));
    if (r->tpl_call == methods[M_INV_GET])
        inventory_get(s, w, doc, out);
    else if (r->tpl_call == methods[M_INV_LOG])
        inventory_log(s, w, doc, out);
    else if (r->tpl_call == methods[M_OB_CREATE])
        outbound_create(s, w, doc, out);
    else if (r->tpl_call == methods[M_OB_CANCEL])
        outbound_cancel(s, w, doc, out);
    else if (r->tpl_call == methods[M_OB_LIST])
        outbound_list(s, w, doc, out);
    else if (r->tpl_call == methods[M_IN_CREATE])
        inbound_create(s, w, doc, out);
    else
        inbound_list(s, w, doc, out);
    pthread_mutex_unlock(&s->lock);
    cJSON_Delete(doc);
    if (jb_failed(&out->body)) {
        out->status = 500;
        refuse(out, "SIM-INTERNAL", "answer too large");
    }
}
