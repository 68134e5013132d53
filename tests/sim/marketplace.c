#include "marketplace.h"

#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "gen.h"
#include "json_in.h"
#include "json_out.h"
#include "sign.h"
#include "simtime.h"
#include "state.h"
#include "stats.h"

/* Limits of the platform (see README for which are documented and which assumed). */
#define PRODUCT_PAGE_MAX 99 /* "The input value must be less than 100" */
#define ORDER_PAGE_MAX 50
#define INVENTORY_PRODUCTS_MAX 20
#define INVENTORY_SKUS_MAX 200
#define INVENTORY_VALUE_MAX 999999
#define HANDLING_DAYS 3
#define BUYER_ACCEPT_DAYS 75 /* freight_commit_day */
#define CANCEL_ANSWER_DAYS 5
#define RISK_REVIEW_HOURS 24
#define CHILD_ID_BASE 8000000000000000LL
#define CURRENCY "USD"
#define SELLER_LOGIN "tally-sim-seller"
#define SELLER_NAME "Tally Sim Store"

struct mp_error {
    const char *type; /* "ISV" (caller's fault) or "ISP" (platform's) */
    const char *code;
    char msg[256];
};

static int fail(struct mp_error *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct mp_error *e, const char *code, const char *fmt, ...)
{
    e->type = "ISV";
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

static int missing(struct mp_error *e, const char *name)
{
    return fail(e, "MissingParameter",
                "The input parameter \"%s\" that is mandatory for processing this request is "
                "not supplied",
                name);
}

static int invalid(struct mp_error *e, const char *name, const char *why)
{
    return fail(e, "InvalidParameter", "The specified parameter \"%s\" is not valid: %s", name,
                why);
}

/* For boolean checks: records the error (already done by the argument) and yields false. */
static bool refuse(int rc)
{
    (void)rc;
    return false;
}

/* --- small writers ------------------------------------------------------------------------ */

static void money_text(int64_t cents, char out[32])
{
    snprintf(out, 32, "%" PRId64 ".%02d", cents / 100, (int)(cents % 100));
}

/* SimpleMoney: {"currency_code","amount"} */
static void kv_money(struct jb *j, const char *key, int64_t cents)
{
    char amount[32];
    money_text(cents, amount);
    jb_kv_obj(j, key);
    jb_kv_str(j, "currency_code", CURRENCY);
    jb_kv_str(j, "amount", amount);
    jb_obj_end(j);
}

/* GlobalMoneyStr: adds cent and cent_factor. */
static void kv_money_detail(struct jb *j, const char *key, int64_t cents)
{
    char amount[32];
    money_text(cents, amount);
    jb_kv_obj(j, key);
    jb_kv_str(j, "currency_code", CURRENCY);
    jb_kv_str(j, "amount", amount);
    jb_kv_i64(j, "cent", cents);
    jb_kv_i64(j, "cent_factor", 100);
    jb_obj_end(j);
}

static void kv_time(struct jb *j, const char *key, int64_t t)
{
    char buf[ST_PACIFIC_LEN];
    st_fmt_pacific(t, buf);
    jb_kv_str(j, key, buf);
}

static void kv_image(struct jb *j, const char *key, size_t product)
{
    char url[96];
    snprintf(url, sizeof(url), "https://ae01.alicdn.com/kf/S%016" PRIx64 ".jpg",
             (uint64_t)sim_product_id(product) * UINT64_C(0x9E3779B97F4A7C15));
    jb_kv_str(j, key, url);
}

/* --- parameter readers -------------------------------------------------------------------- */

/* Parses a JSON-valued parameter; NULL (with e) if absent-but-required or malformed. */
static cJSON *json_param(const struct params *p, const char *name, bool required, int *rc,
                         struct mp_error *e)
{
    const char *v = params_get(p, name);
    *rc = 0;
    if (!v) {
        if (required)
            *rc = missing(e, name);
        return NULL;
    }
    cJSON *doc = cJSON_Parse(v);
    if (!doc)
        *rc = invalid(e, name, "not valid JSON");
    return doc;
}

/* Optional integer member; false (with e) when present but not an integer in [lo, hi]. */
static bool member_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi, int64_t *out,
                       struct mp_error *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it))
        return true;
    int64_t v;
    if (!jin_id(it, &v) || v < lo || v > hi) {
        char why[96];
        snprintf(why, sizeof(why), "must be an integer in [%" PRId64 ", %" PRId64 "]", lo, hi);
        invalid(e, key, why);
        return false;
    }
    *out = v;
    return true;
}

/* Optional Pacific-time member; false (with e) when present and malformed. */
static bool member_time(const cJSON *obj, const char *key, int64_t *out, struct mp_error *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it || cJSON_IsNull(it) || (cJSON_IsString(it) && !it->valuestring[0]))
        return true;
    if (!cJSON_IsString(it) || st_parse_pacific(it->valuestring, out) < 0) {
        invalid(e, key, "expected \"yyyy-MM-dd HH:mm:ss\" (US Pacific time)");
        return false;
    }
    return true;
}

/* --- aliexpress.solution.product.list.get -------------------------------------------------- */

struct product_filter {
    int status; /* -1 any, 0 onSelling, 1 offline */
    int64_t mod_from, mod_to, create_from, create_to;
    int64_t only; /* product index, or -1 */
};

static bool product_matches(const struct sim *s, size_t i, const struct product_filter *f)
{
    const struct product *p = &s->products[i];
    return (f->only < 0 || (size_t)f->only == i) && (f->status < 0 || f->status == p->offline) &&
           p->modified >= f->mod_from && p->modified <= f->mod_to && p->created >= f->create_from &&
           p->created <= f->create_to;
}

static void price_range(const struct sim *s, size_t i, int64_t *lo, int64_t *hi)
{
    const struct product *p = &s->products[i];
    *lo = INT64_MAX;
    *hi = 0;
    for (uint32_t k = 0; k < p->n_skus; k++) {
        int64_t c = s->skus[p->first_sku + k].price_cents;
        *lo = c < *lo ? c : *lo;
        *hi = c > *hi ? c : *hi;
    }
}

static void write_item_display(const struct sim *s, size_t i, struct jb *j)
{
    const struct product *p = &s->products[i];
    char title[160], lo_s[32], hi_s[32];
    int64_t lo, hi;
    gen_product_title(s, i, title, sizeof(title));
    price_range(s, i, &lo, &hi);
    money_text(lo, lo_s);
    money_text(hi, hi_s);
    jb_obj(j);
    jb_kv_i64(j, "product_id", sim_product_id(i));
    jb_kv_str(j, "subject", title);
    kv_time(j, "gmt_create", p->created);
    kv_time(j, "gmt_modified", p->modified);
    jb_kv_str(j, "product_min_price", lo_s);
    jb_kv_str(j, "product_max_price", hi_s);
    jb_kv_str(j, "currency_code", CURRENCY);
    kv_image(j, "image_u_r_ls", i);
    jb_kv_str(j, "owner_member_id", SELLER_LOGIN);
    jb_kv_i64(j, "owner_member_seq", 2000000001);
    jb_kv_i64(j, "freight_template_id", 1000);
    jb_kv_str(j, "src", "isv");
    if (p->offline)
        jb_kv_str(j, "ws_display", "user_offline");
    jb_obj_end(j);
}

static int product_list_get(struct sim *s, const struct params *prm, struct jb *j,
                            struct mp_error *e)
{
    int rc;
    /* product_status_type is required inside it ("required": true in the metadata), so the
     * query object is too. */
    cJSON *q = json_param(prm, "aeop_a_e_product_list_query", true, &rc, e);
    if (rc < 0)
        return -1;
    int64_t page = 1, size = 20;
    struct product_filter f = {-1, INT64_MIN, INT64_MAX, INT64_MIN, INT64_MAX, -1};
    int64_t product_id = 0;
    bool ok = true;
    if (q && !cJSON_IsObject(q)) {
        invalid(e, "aeop_a_e_product_list_query", "not a JSON object");
        ok = false;
    }
    ok = ok && member_int(q, "current_page", 1, INT32_MAX, &page, e) &&
         member_int(q, "page_size", 1, PRODUCT_PAGE_MAX, &size, e) &&
         member_time(q, "gmt_modified_start", &f.mod_from, e) &&
         member_time(q, "gmt_modified_end", &f.mod_to, e) &&
         member_time(q, "gmt_create_start", &f.create_from, e) &&
         member_time(q, "gmt_create_end", &f.create_to, e) &&
         member_int(q, "product_id", 1, INT64_MAX, &product_id, e);
    const char *status = q ? jin_str(q, "product_status_type") : NULL;
    const char *sku_code = q ? jin_str(q, "sku_code") : NULL;
    if (ok && !status)
        ok = refuse(missing(e, "product_status_type"));
    if (ok && status) {
        if (strcmp(status, "onSelling") == 0)
            f.status = 0;
        else if (strcmp(status, "offline") == 0)
            f.status = 1;
        else if (strcmp(status, "auditing") == 0 || strcmp(status, "editingRequired") == 0)
            f.status = 2; /* the simulator has none in these states */
        else
            ok = refuse(invalid(e, "product_status_type",
                                "one of onSelling, offline, auditing, editingRequired"));
    }
    bool none = false;
    if (ok && product_id) {
        f.only = sim_product_find(s, product_id);
        none = f.only < 0;
    }
    if (ok && sku_code) {
        int64_t k = sim_sku_find(s, sku_code, strlen(sku_code));
        none = none || k < 0 || (f.only >= 0 && f.only != s->skus[k].product);
        if (k >= 0)
            f.only = s->skus[k].product;
    }
    cJSON_Delete(q);
    if (!ok)
        return -1;

    bool unfiltered = f.only < 0 && f.status < 0 && f.mod_from == INT64_MIN &&
                      f.mod_to == INT64_MAX && f.create_from == INT64_MIN &&
                      f.create_to == INT64_MAX;
    size_t total = 0;
    int64_t skip = (page - 1) * size;
    jb_kv_obj(j, "result");
    jb_kv_obj(j, "aeop_a_e_product_display_d_t_o_list");
    jb_kv_arr(j, "item_display_dto");
    if (none) {
        /* nothing */
    } else if (unfiltered) {
        total = s->n_products;
        for (int64_t i = skip; i < skip + size && (size_t)i < s->n_products; i++)
            write_item_display(s, (size_t)i, j);
    } else {
        for (size_t i = 0; i < s->n_products; i++) {
            if (!product_matches(s, i, &f))
                continue;
            if ((int64_t)total >= skip && (int64_t)total < skip + size)
                write_item_display(s, i, j);
            total++;
        }
    }
    jb_arr_end(j);
    jb_obj_end(j);
    jb_kv_i64(j, "current_page", page);
    jb_kv_i64(j, "page_size", size);
    jb_kv_i64(j, "product_count", (int64_t)total);
    jb_kv_i64(j, "total_page", ((int64_t)total + size - 1) / size);
    jb_kv_bool(j, "success", true);
    jb_obj_end(j);
    return 0;
}

/* --- aliexpress.solution.product.info.get ------------------------------------------------- */

static void write_sku(const struct sim *s, uint32_t k, struct jb *j)
{
    const struct sku *sk = &s->skus[k];
    char price[32], id[64];
    money_text(sk->price_cents, price);
    int n = 0;
    id[0] = '\0';
    if (sk->colour != SKU_NO_ATTR)
        n += snprintf(id, sizeof(id), "%d:%" PRId64, GEN_COLOUR_PROPERTY_ID,
                      gen_colour_value_id(sk->colour));
    if (sk->size != SKU_NO_ATTR)
        snprintf(id + n, sizeof(id) - (size_t)n, "%s%d:%" PRId64, n ? ";" : "",
                 GEN_SIZE_PROPERTY_ID, gen_size_value_id(sk->size));
    jb_obj(j);
    jb_kv_str(j, "id", id[0] ? id : "<none>");
    jb_kv_str(j, "sku_code", sk->code);
    jb_kv_str(j, "sku_price", price);
    jb_kv_i64(j, "ipm_sku_stock", s->mp_stock[k]);
    jb_kv_bool(j, "sku_stock", s->mp_stock[k] > 0);
    jb_kv_str(j, "currency_code", CURRENCY);
    jb_kv_obj(j, "aeop_s_k_u_property_list");
    jb_kv_arr(j, "global_aeop_sku_property");
    if (sk->colour != SKU_NO_ATTR) {
        jb_obj(j);
        jb_kv_i64(j, "sku_property_id", GEN_COLOUR_PROPERTY_ID);
        jb_kv_i64(j, "property_value_id", gen_colour_value_id(sk->colour));
        jb_kv_str(j, "property_value_definition_name", gen_colour_name(sk->colour));
        jb_obj_end(j);
    }
    if (sk->size != SKU_NO_ATTR) {
        jb_obj(j);
        jb_kv_i64(j, "sku_property_id", GEN_SIZE_PROPERTY_ID);
        jb_kv_i64(j, "property_value_id", gen_size_value_id(sk->size));
        jb_kv_str(j, "property_value_definition_name", gen_size_name(sk->size));
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
    jb_obj_end(j);
}

static int product_info_get(struct sim *s, const struct params *prm, struct jb *j,
                            struct mp_error *e)
{
    const char *pid = params_get(prm, "product_id");
    int64_t id;
    if (!pid)
        return missing(e, "product_id");
    if (!jin_parse_digits(pid, &id))
        return invalid(e, "product_id", "not a number");
    int64_t i = sim_product_find(s, id);
    if (i < 0)
        return fail(e, "ProductNotFound", "product %" PRId64 " does not exist", id);
    const struct product *p = &s->products[i];
    char title[160], price[32];
    int64_t lo, hi;
    gen_product_title(s, (size_t)i, title, sizeof(title));
    price_range(s, (size_t)i, &lo, &hi);
    money_text(lo, price);

    jb_kv_obj(j, "result");
    jb_kv_i64(j, "product_id", id);
    jb_kv_str(j, "subject", title);
    jb_kv_str(j, "product_status_type", p->offline ? "offline" : "onSelling");
    kv_time(j, "gmt_create", p->created);
    kv_time(j, "gmt_modified", p->modified);
    jb_kv_str(j, "currency_code", CURRENCY);
    jb_kv_str(j, "product_price", price);
    jb_kv_i64(j, "category_id", 200000000 + (int64_t)(p->title_seed % 997));
    jb_kv_i64(j, "delivery_time", HANDLING_DAYS);
    jb_kv_i64(j, "lot_num", 1);
    jb_kv_i64(j, "product_unit", 100000015);
    jb_kv_bool(j, "package_type", false);
    kv_image(j, "image_u_r_ls", (size_t)i);
    jb_kv_str(j, "owner_member_id", SELLER_LOGIN);
    jb_kv_obj(j, "multi_language_subject_list");
    jb_kv_arr(j, "global_subject");
    jb_obj(j);
    jb_kv_str(j, "locale", "en_US");
    jb_kv_str(j, "subject", title);
    jb_obj_end(j);
    jb_arr_end(j);
    jb_obj_end(j);
    jb_kv_obj(j, "aeop_ae_product_s_k_us");
    jb_kv_arr(j, "global_aeop_ae_product_sku");
    for (uint32_t k = 0; k < p->n_skus; k++)
        write_sku(s, p->first_sku + k, j);
    jb_arr_end(j);
    jb_obj_end(j);
    jb_obj_end(j);
    return 0;
}

/* --- aliexpress.solution.batch.product.inventory.update ------------------------------------ */

struct product_check {
    int64_t product_id;
    const char *code; /* NULL when valid */
    char msg[160];
};

/* Validates one entry of mutiple_product_update_list; nothing is applied here. */
static void check_product_update(struct sim *s, const cJSON *item, struct product_check *c)
{
    c->code = NULL;
    c->product_id = 0;
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(item, "product_id");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(item, "multiple_sku_update_list");
    if (!cJSON_IsObject(item) || !jin_id(pid, &c->product_id)) {
        c->code = "PARAM_ERROR";
        snprintf(c->msg, sizeof(c->msg), "product_id is missing or not a number");
        return;
    }
    int64_t p = sim_product_find(s, c->product_id);
    if (p < 0) {
        c->code = "PRODUCT_NOT_FOUND";
        snprintf(c->msg, sizeof(c->msg), "product %" PRId64 " does not exist", c->product_id);
        return;
    }
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    if (n < 1 || n > INVENTORY_SKUS_MAX) {
        c->code = "PARAM_ERROR";
        snprintf(c->msg, sizeof(c->msg), "multiple_sku_update_list must hold 1 to %d SKUs",
                 INVENTORY_SKUS_MAX);
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        const char *code = jin_str(it, "sku_code");
        int64_t inv;
        int64_t k = code ? sim_sku_find(s, code, strlen(code)) : -1;
        if (k < 0 || s->skus[k].product != (uint32_t)p) {
            c->code = "SKU_NOT_FOUND";
            snprintf(c->msg, sizeof(c->msg), "sku_code %s is not a SKU of product %" PRId64,
                     code ? code : "(missing)", c->product_id);
            return;
        }
        if (!jin_i64(cJSON_GetObjectItemCaseSensitive(it, "inventory"), &inv) || inv < 0 ||
            inv > INVENTORY_VALUE_MAX) {
            c->code = "INVALID_INVENTORY";
            snprintf(c->msg, sizeof(c->msg), "inventory of %s must be an integer in [0, %d]", code,
                     INVENTORY_VALUE_MAX);
            return;
        }
    }
}

static int apply_product_update(struct sim *s, const cJSON *item)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(item, "multiple_sku_update_list"))
    {
        const char *code = jin_str(it, "sku_code");
        int64_t inv = 0;
        jin_i64(cJSON_GetObjectItemCaseSensitive(it, "inventory"), &inv);
        if (publish_record(s, (uint32_t)sim_sku_find(s, code, strlen(code)), inv) < 0)
            return -1;
    }
    return 0;
}

static int inventory_update(struct sim *s, const struct params *prm, struct jb *j,
                            struct mp_error *e)
{
    int rc;
    cJSON *list = json_param(prm, "mutiple_product_update_list", true, &rc, e);
    if (rc < 0)
        return -1;
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    if (n < 1 || n > INVENTORY_PRODUCTS_MAX) {
        cJSON_Delete(list);
        return invalid(e, "mutiple_product_update_list", "must be an array of 1 to 20 products");
    }
    struct product_check checks[INVENTORY_PRODUCTS_MAX];
    int failed = 0, i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        struct product_check *c = &checks[i++];
        check_product_update(s, item, c);
        if (!c->code && apply_product_update(s, item) < 0) {
            c->code = "SYSTEM_ERROR";
            snprintf(c->msg, sizeof(c->msg), "out of memory");
        }
        failed += c->code != NULL;
    }
    cJSON_Delete(list);

    jb_kv_bool(j, "update_success", failed == 0);
    if (failed) {
        jb_kv_str(j, "update_error_code", failed == n ? "ALL_FAILED" : "PART_FAILED");
        jb_kv_str(j, "update_error_message",
                  "some products were not updated, see update_failed_list");
    }
    jb_kv_obj(j, "update_successful_list");
    jb_kv_arr(j, "synchronize_product_response_dto");
    for (int k = 0; k < n; k++) {
        if (checks[k].code)
            continue;
        jb_obj(j);
        jb_kv_i64(j, "product_id", checks[k].product_id);
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
    jb_kv_obj(j, "update_failed_list");
    jb_kv_arr(j, "synchronize_product_response_dto");
    for (int k = 0; k < n; k++) {
        if (!checks[k].code)
            continue;
        jb_obj(j);
        jb_kv_i64(j, "product_id", checks[k].product_id);
        jb_kv_str(j, "error_code", checks[k].code);
        jb_kv_str(j, "error_message", checks[k].msg);
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
    return 0;
}

/* --- orders: shared writers --------------------------------------------------------------- */

static int64_t order_total(const struct order *o)
{
    int64_t sum = 0;
    for (int i = 0; i < o->n_lines; i++)
        sum += (int64_t)o->lines[i].unit_price_cents * o->lines[i].qty;
    return sum;
}

static int64_t child_id(const struct sim *s, const struct order *o, int line)
{
    return CHILD_ID_BASE + (int64_t)(o - s->orders) * 4 + line + 1;
}

static const char *fund_status(const struct order *o)
{
    return o->status == OS_PLACE_ORDER_SUCCESS         ? "NOT_PAY"
           : o->status == OS_WAIT_SELLER_EXAMINE_MONEY ? "WAIT_SELLER_CHECK"
                                                       : "PAY_SUCCESS";
}

static const char *logistics_status(const struct order *o)
{
    switch (o->status) {
    case OS_WAIT_SELLER_SEND_GOODS:
    case OS_RISK_CONTROL:
        return "WAIT_SELLER_SEND_GOODS";
    case OS_SELLER_PART_SEND_GOODS:
        return "SELLER_SEND_PART_GOODS";
    case OS_WAIT_BUYER_ACCEPT_GOODS:
    case OS_FUND_PROCESSING:
        return "SELLER_SEND_GOODS";
    case OS_FINISH:
        return "BUYER_ACCEPT_GOODS";
    default:
        return "NO_LOGISTICS";
    }
}

/* Latest time an accepted fulfilment was recorded, or 0. */
static int64_t last_sent(const struct order *o)
{
    int64_t t = 0;
    for (uint32_t i = 0; i < o->n_ful; i++)
        if (o->ful[i].result == FUL_APPLIED || o->ful[i].result == FUL_INITIAL)
            t = o->ful[i].at_ms / 1000;
    return t;
}

static void write_order_product(const struct sim *s, const struct order *o, int i,
                                const struct buyer *b, struct jb *j)
{
    const struct order_line *l = &o->lines[i];
    const struct sku *k = &s->skus[l->sku];
    char title[160], standard[64], snap[128];
    gen_product_title(s, k->product, title, sizeof(title));
    gen_sku_standard(k, standard, sizeof(standard));
    snprintf(snap, sizeof(snap), "//www.aliexpress.com/snapshot/null.html?orderId=%" PRId64,
             child_id(s, o, i));
    jb_obj(j);
    jb_kv_i64(j, "child_id", child_id(s, o, i));
    jb_kv_i64(j, "order_id", o->id);
    jb_kv_i64(j, "product_id", sim_product_id(k->product));
    jb_kv_str(j, "product_name", title);
    jb_kv_str(j, "sku_code", k->code);
    jb_kv_str(j, "product_standard", standard);
    jb_kv_i64(j, "product_count", l->qty);
    jb_kv_str(j, "product_unit", "piece");
    kv_money(j, "product_unit_price", l->unit_price_cents);
    kv_money(j, "total_product_amount", (int64_t)l->unit_price_cents * l->qty);
    kv_money(j, "logistics_amount", 0);
    jb_kv_str(j, "son_order_status", order_status_name(o->status));
    jb_kv_str(j, "show_status", order_status_name(o->status));
    jb_kv_str(j, "fund_status", fund_status(o));
    jb_kv_str(j, "issue_status", o->status == OS_IN_ISSUE ? "IN_ISSUE" : "NO_ISSUE");
    jb_kv_str(j, "send_goods_operator", "SELLER_SEND_GOODS");
    jb_kv_str(j, "logistics_type", "CAINIAO_STANDARD");
    jb_kv_str(j, "logistics_service_name", "AliExpress Standard Shipping");
    jb_kv_i64(j, "goods_prepare_time", HANDLING_DAYS);
    jb_kv_str(j, "freight_commit_day", "75");
    jb_kv_str(j, "delivery_time", "7-15");
    jb_kv_str(j, "escrow_fee_rate", "0.08");
    jb_kv_str(j, "buyer_signer_first_name", b->first);
    jb_kv_str(j, "buyer_signer_last_name", b->last);
    jb_kv_bool(j, "money_back3x", false);
    jb_kv_bool(j, "can_submit_issue", false);
    kv_image(j, "product_img_url", k->product);
    jb_kv_str(j, "product_snap_url", snap);
    jb_obj_end(j);
}

static void write_deadline(struct jb *j, const struct order *o, int64_t now)
{
    int64_t left = (o->paid ? o->paid : o->created) + HANDLING_DAYS * 86400 - now;
    char d[24], h[24], m[24];
    int64_t a = left < 0 ? 0 : left;
    snprintf(d, sizeof(d), "%" PRId64, a / 86400);
    snprintf(h, sizeof(h), "%" PRId64, a % 86400 / 3600);
    snprintf(m, sizeof(m), "%" PRId64, a % 3600 / 60);
    jb_kv_str(j, "left_send_good_day", d);
    jb_kv_str(j, "left_send_good_hour", h);
    jb_kv_str(j, "left_send_good_min", m);
    jb_kv_i64(j, "timeout_left_time", left * 1000);
}

/* The end of the current status's time limit (sim seconds) for the statuses other than
 * waiting to be shipped, 0 when it has none (the simulator's reading: see README). */
static int64_t status_deadline(const struct order *o)
{
    switch (o->status) {
    case OS_RISK_CONTROL:
        return (o->paid ? o->paid : o->created) + RISK_REVIEW_HOURS * 3600;
    case OS_WAIT_BUYER_ACCEPT_GOODS:
        return o->modified + BUYER_ACCEPT_DAYS * 86400;
    case OS_IN_CANCEL:
        return o->modified + CANCEL_ANSWER_DAYS * 86400;
    default:
        return 0;
    }
}

static void write_order_dto(const struct sim *s, const struct order *o, int64_t now, struct jb *j)
{
    struct buyer b;
    char full[72];
    gen_buyer(o->buyer_seed, o->country, &b);
    snprintf(full, sizeof(full), "%s %s", b.first, b.last);
    jb_obj(j);
    jb_kv_i64(j, "order_id", o->id);
    jb_kv_str(j, "order_status", order_status_name(o->status));
    kv_time(j, "gmt_create", o->created);
    kv_time(j, "gmt_update", o->modified);
    if (o->paid)
        kv_time(j, "gmt_pay_time", o->paid);
    if (last_sent(o))
        kv_time(j, "gmt_send_goods_time", last_sent(o));
    jb_kv_str(j, "buyer_login_id", b.login);
    jb_kv_str(j, "buyer_signer_fullname", full);
    jb_kv_str(j, "seller_login_id", SELLER_LOGIN);
    jb_kv_str(j, "seller_operator_login_id", SELLER_LOGIN);
    jb_kv_str(j, "seller_signer_fullname", SELLER_NAME);
    jb_kv_str(j, "biz_type", "AE_COMMON");
    jb_kv_str(j, "fund_status", fund_status(o));
    jb_kv_str(j, "frozen_status", o->status == OS_IN_FROZEN ? "IN_FROZEN" : "NO_FROZEN");
    jb_kv_str(j, "issue_status", o->status == OS_IN_ISSUE ? "IN_ISSUE" : "NO_ISSUE");
    jb_kv_str(j, "logistics_status", logistics_status(o));
    jb_kv_str(j, "payment_type", "MIXEDCARD");
    jb_kv_bool(j, "phone", false);
    jb_kv_bool(j, "has_request_loan", false);
    kv_money(j, "pay_amount", order_total(o));
    /* timeout_left_time is "the remain time of the current status" (OrderDto): the handling
     * time only while the order waits to be shipped; after shipping the buyer's acceptance
     * window, in IN_CANCEL the seller's time to answer the request, under risk control the
     * review. left_send_good_* (time left to ship) only while it waits to be shipped. */
    if (o->status == OS_WAIT_SELLER_SEND_GOODS || o->status == OS_SELLER_PART_SEND_GOODS)
        write_deadline(j, o, now);
    else if (status_deadline(o) > 0)
        jb_kv_i64(j, "timeout_left_time", (status_deadline(o) - now) * 1000);
    jb_kv_obj(j, "product_list");
    jb_kv_arr(j, "order_product_dto");
    for (int i = 0; i < o->n_lines; i++)
        write_order_product(s, o, i, &b, j);
    jb_arr_end(j);
    jb_obj_end(j);
    jb_obj_end(j);
}

/* --- aliexpress.solution.order.get -------------------------------------------------------- */

struct order_filter {
    uint32_t status_mask;
    int64_t create_from, create_to, mod_from, mod_to;
    const char *buyer;
};

static bool order_matches(const struct order *o, const struct order_filter *f)
{
    if (!(f->status_mask & (1u << o->status)) || o->created < f->create_from ||
        o->created > f->create_to || o->modified < f->mod_from || o->modified > f->mod_to)
        return false;
    if (f->buyer) {
        struct buyer b;
        gen_buyer(o->buyer_seed, o->country, &b);
        return strcmp(b.login, f->buyer) == 0;
    }
    return true;
}

static bool read_status_filter(const cJSON *q, uint32_t *mask, struct mp_error *e)
{
    *mask = 0;
    const char *one = jin_str(q, "order_status");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(q, "order_status_list");
    if (one && *one) {
        int st = order_status_parse(one);
        if (st < 0)
            return refuse(invalid(e, "order_status", "unknown order status"));
        *mask |= 1u << st;
    }
    if (list && !cJSON_IsNull(list)) {
        if (!cJSON_IsArray(list))
            return refuse(invalid(e, "order_status_list", "must be an array of statuses"));
        const cJSON *it;
        cJSON_ArrayForEach(it, list)
        {
            int st = cJSON_IsString(it) ? order_status_parse(it->valuestring) : -1;
            if (st < 0)
                return refuse(invalid(e, "order_status_list", "unknown order status"));
            *mask |= 1u << st;
        }
    }
    if (*mask == 0) /* finished orders are only listed when asked for */
        *mask = ((1u << OS_COUNT) - 1) & ~(1u << OS_FINISH);
    return true;
}

static int order_get(struct sim *s, const struct params *prm, struct jb *j, struct mp_error *e)
{
    int rc;
    cJSON *q = json_param(prm, "param0", true, &rc, e);
    if (rc < 0)
        return -1;
    int64_t page = 0, size = 0;
    struct order_filter f = {0, INT64_MIN, INT64_MAX, INT64_MIN, INT64_MAX, NULL};
    bool ok = cJSON_IsObject(q);
    if (!ok)
        invalid(e, "param0", "not a JSON object");
    ok = ok && member_int(q, "current_page", 1, INT32_MAX, &page, e) &&
         member_int(q, "page_size", 1, ORDER_PAGE_MAX, &size, e) &&
         member_time(q, "create_date_start", &f.create_from, e) &&
         member_time(q, "create_date_end", &f.create_to, e) &&
         member_time(q, "modified_date_start", &f.mod_from, e) &&
         member_time(q, "modified_date_end", &f.mod_to, e) &&
         read_status_filter(q, &f.status_mask, e);
    if (ok && page == 0)
        ok = refuse(missing(e, "current_page"));
    if (ok && size == 0)
        ok = refuse(missing(e, "page_size"));
    f.buyer = ok ? jin_str(q, "buyer_login_id") : NULL;
    if (f.buyer && !*f.buyer)
        f.buyer = NULL;
    if (!ok) {
        cJSON_Delete(q);
        return -1;
    }
    int64_t now = sim_now(s);
    char stamp[ST_PACIFIC_LEN];
    st_fmt_gmt8(now, stamp);
    int64_t total = 0, skip = (page - 1) * size;
    /* newest first, like the platform's order list */
    jb_kv_obj(j, "result");
    for (size_t i = s->n_orders; i-- > 0;) {
        const struct order *o = &s->orders[i];
        if (!order_matches(o, &f))
            continue;
        if (total >= skip && total < skip + size) {
            if (total == skip) {
                jb_kv_obj(j, "target_list");
                jb_kv_arr(j, "order_dto");
            }
            write_order_dto(s, o, now, j);
            if (total == skip + size - 1) {
                jb_arr_end(j);
                jb_obj_end(j);
            }
        }
        total++;
    }
    if (total > skip && total < skip + size) { /* a last, partial page: close the list */
        jb_arr_end(j);
        jb_obj_end(j);
    }
    cJSON_Delete(q);
    jb_kv_i64(j, "total_count", total);
    jb_kv_i64(j, "page_size", size);
    jb_kv_i64(j, "current_page", page);
    jb_kv_i64(j, "total_page", (total + size - 1) / size);
    jb_kv_bool(j, "success", true);
    jb_kv_str(j, "time_stamp", stamp);
    jb_obj_end(j);
    return 0;
}

/* --- aliexpress.solution.order.info.get --------------------------------------------------- */

/* The platform masks the buyer's personal data in order details ("83****334"): the first two
 * and last three characters of a text of 8 or more, the first one of a shorter one, with
 * "****" between (only ASCII characters are kept, so the text stays UTF-8); a text of 2 or
 * fewer becomes "**". The full ship-to is read with order.receiptinfo.get. */
static void mask(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in), head = n >= 8 ? 2 : n > 2 ? 1 : 0, tail = n >= 8 ? 3 : 0;
    for (size_t i = 0; i < head; i++)
        if ((unsigned char)in[i] >= 0x80)
            head = i;
    for (size_t i = n - tail; i < n; i++)
        if ((unsigned char)in[i] >= 0x80)
            tail = 0;
    snprintf(out, cap, "%.*s%s%s", (int)head, in, n > 2 ? "****" : "**", in + n - tail);
}

static void write_address(struct jb *j, const struct buyer *b)
{
    char contact[72], m_contact[80], m_zip[32], m_street[112], m_phone[40];
    snprintf(contact, sizeof(contact), "%s %s", b->first, b->last);
    mask(contact, m_contact, sizeof(m_contact));
    mask(b->zip, m_zip, sizeof(m_zip));
    mask(b->street, m_street, sizeof(m_street));
    mask(b->phone, m_phone, sizeof(m_phone));
    jb_kv_obj(j, "receipt_address");
    jb_kv_str(j, "contact_person", m_contact);
    jb_kv_str(j, "country", b->country);
    jb_kv_str(j, "province", b->province);
    jb_kv_str(j, "city", b->city);
    jb_kv_str(j, "zip", m_zip);
    jb_kv_str(j, "detail_address", m_street);
    jb_kv_str(j, "address2", "");
    jb_kv_str(j, "phone_country", b->phone_country);
    jb_kv_str(j, "mobile_no", m_phone);
    jb_obj_end(j);
}

static void write_child_order(const struct sim *s, const struct order *o, int i, struct jb *j)
{
    const struct order_line *l = &o->lines[i];
    const struct sku *k = &s->skus[l->sku];
    char title[160], standard[64];
    gen_product_title(s, k->product, title, sizeof(title));
    gen_sku_standard(k, standard, sizeof(standard));
    jb_obj(j);
    jb_kv_i64(j, "id", child_id(s, o, i));
    jb_kv_str(j, "order_status", order_status_name(o->status));
    jb_kv_i64(j, "product_id", sim_product_id(k->product));
    jb_kv_str(j, "product_name", title);
    jb_kv_str(j, "sku_code", k->code);
    jb_kv_str(j, "product_standard", standard);
    jb_kv_i64(j, "product_count", l->qty);
    jb_kv_str(j, "product_unit", "piece");
    jb_kv_i64(j, "lot_num", 1);
    kv_money_detail(j, "product_price", l->unit_price_cents);
    kv_money_detail(j, "init_order_amt", (int64_t)l->unit_price_cents * l->qty);
    jb_kv_str(j, "send_goods_operator", "SELLER_SEND_GOODS");
    jb_kv_str(j, "logistics_type", "CAINIAO_STANDARD");
    jb_kv_str(j, "logistics_service_name", "AliExpress Standard Shipping");
    jb_kv_i64(j, "goods_prepare_time", HANDLING_DAYS);
    jb_kv_str(j, "fund_status", fund_status(o));
    jb_kv_str(j, "frozen_status", o->status == OS_IN_FROZEN ? "IN_FROZEN" : "NO_FROZEN");
    jb_kv_str(j, "issue_status", o->status == OS_IN_ISSUE ? "IN_ISSUE" : "NO_ISSUE");
    jb_obj_end(j);
}

static void write_logistics(const struct order *o, struct jb *j)
{
    jb_kv_obj(j, "logistic_info_list");
    jb_kv_arr(j, "global_aeop_tp_logistic_info_dto");
    for (uint32_t i = 0; i < o->n_ful; i++) {
        const struct fulfilment *f = &o->ful[i];
        if (f->result != FUL_APPLIED && f->result != FUL_INITIAL)
            continue;
        jb_obj(j);
        jb_kv_str(j, "logistics_no", f->logistics_no);
        jb_kv_str(j, "logistics_service_name", f->service_name ? f->service_name : "");
        jb_kv_str(j, "logistics_type_code", f->service_name ? f->service_name : "");
        kv_time(j, "gmt_send", f->at_ms / 1000);
        jb_kv_bool(j, "have_tracking_info", true);
        jb_kv_str(j, "receive_status", "default");
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
}

static void write_order_detail(const struct sim *s, const struct order *o, int64_t flags,
                               struct jb *j)
{
    struct buyer b;
    char full[72], masked_full[80], total[32];
    gen_buyer(o->buyer_seed, o->country, &b);
    snprintf(full, sizeof(full), "%s %s", b.first, b.last);
    mask(full, masked_full, sizeof(masked_full));
    money_text(order_total(o), total);
    jb_kv_obj(j, "data");
    jb_kv_i64(j, "id", o->id);
    jb_kv_str(j, "order_status", order_status_name(o->status));
    kv_time(j, "gmt_create", o->created);
    kv_time(j, "gmt_modified", o->modified);
    if (o->paid)
        kv_time(j, "gmt_pay_success", o->paid);
    if (o->status == OS_FINISH)
        kv_time(j, "gmt_trade_end", o->modified);
    jb_kv_str(j, "buyerloginid", b.login);
    jb_kv_str(j, "buyer_signer_fullname", masked_full);
    jb_kv_str(j, "seller_operator_login_id", SELLER_LOGIN);
    jb_kv_str(j, "seller_signer_fullname", SELLER_NAME);
    jb_kv_str(j, "fund_status", fund_status(o));
    jb_kv_str(j, "frozen_status", o->status == OS_IN_FROZEN ? "IN_FROZEN" : "NO_FROZEN");
    jb_kv_str(j, "issue_status", o->status == OS_IN_ISSUE ? "IN_ISSUE" : "NO_ISSUE");
    jb_kv_str(j, "logistics_status", logistics_status(o));
    jb_kv_str(j, "payment_type", "MIXEDCARD");
    jb_kv_bool(j, "is_phone", false);
    jb_kv_str(j, "settlement_currency", CURRENCY);
    jb_kv_str(j, "pay_amount_by_settlement_cur", total);
    kv_money_detail(j, "order_amount", order_total(o));
    kv_money_detail(j, "init_oder_amount", order_total(o));
    kv_money_detail(j, "logistics_amount", 0);
    if (flags & 8) {
        jb_kv_obj(j, "buyer_info");
        jb_kv_str(j, "login_id", b.login);
        jb_kv_str(j, "first_name", b.first);
        jb_kv_str(j, "last_name", b.last);
        jb_kv_str(j, "country", b.country);
        jb_obj_end(j);
    }
    write_address(j, &b);
    jb_kv_obj(j, "child_order_list");
    jb_kv_arr(j, "global_aeop_tp_child_order_dto");
    for (int i = 0; i < o->n_lines; i++)
        write_child_order(s, o, i, j);
    jb_arr_end(j);
    jb_obj_end(j);
    if (flags & 4)
        write_logistics(o, j);
    jb_obj_end(j);
}

static int order_info_get(struct sim *s, const struct params *prm, struct jb *j, struct mp_error *e)
{
    int rc;
    cJSON *q = json_param(prm, "param1", true, &rc, e);
    if (rc < 0)
        return -1;
    int64_t id = 0, flags = 31;
    bool ok = cJSON_IsObject(q);
    if (!ok)
        invalid(e, "param1", "not a JSON object");
    ok = ok && member_int(q, "order_id", 1, INT64_MAX, &id, e) &&
         member_int(q, "ext_info_bit_flag", 0, INT32_MAX, &flags, e);
    if (ok && id == 0)
        ok = refuse(missing(e, "order_id"));
    cJSON_Delete(q);
    if (!ok)
        return -1;
    char stamp[ST_PACIFIC_LEN];
    st_fmt_gmt8(sim_now(s), stamp);
    const struct order *o = order_find(s, id);
    /* The documented result: data, error_code, error_message, time_stamp (no success flag). */
    jb_kv_obj(j, "result");
    jb_kv_str(j, "time_stamp", stamp);
    if (o) {
        write_order_detail(s, o, flags, j);
    } else {
        jb_kv_str(j, "error_code", "ORDER_NOT_FOUND");
        jb_kv_str(j, "error_message", "order not found");
    }
    jb_obj_end(j);
    return 0;
}

/* --- aliexpress.logistics.redefining.listlogisticsservice --------------------------------- */

/* The seller's logistics services: service_name is the key order.fulfill takes. The answer's
 * fields are those of the platform's AeopLogisticsServiceResult (display_name,
 * logistics_company, max_process_day, min_process_day, recommend_order, service_name,
 * tracking_no_regex). The regexes are served as the platform writes them (Java syntax, e.g.
 * \d); `posix` is the same pattern for regcomp, which the simulator checks numbers with. */
static const struct mp_service {
    const char *name, *display, *company, *regex, *posix;
    int min_day, max_day;
} mp_services[] = {
    {"CPAM", "China Post Registered Air Mail", "CPAM", "^[A-Z]{2}[0-9]{9}[A-Z]{2}$",
     "^[A-Z]{2}[0-9]{9}[A-Z]{2}$", 1, 7},
    {"EMS", "EMS", "EMS", "^[A-Z]{2}[0-9]{9}[A-Z]{2}$", "^[A-Z]{2}[0-9]{9}[A-Z]{2}$", 1, 7},
    {"CAINIAO_STANDARD", "AliExpress Standard Shipping", "CAINIAO_STANDARD",
     "^(LP\\d{14}|[A-Z]{2}\\d{9}[A-Z]{2})$", "^(LP[0-9]{14}|[A-Z]{2}[0-9]{9}[A-Z]{2})$", 1, 7},
    {"DHL", "DHL", "DHL", "^\\d{10}$", "^[0-9]{10}$", 1, 5},
    {"UPS", "UPS Express Saver", "UPS", "^1Z[0-9A-Z]{16}$", "^1Z[0-9A-Z]{16}$", 1, 5},
    {"JADLOG_P_BR_STD", "JADLOG_P_BR", "JADLOG_P_BR_STD", "[0-9]{14}$", "[0-9]{14}$", 2, 15},
    {"other", "Seller's Shipping Method", "other", "", "", 1, 7},
};
#define N_MP_SERVICES (sizeof(mp_services) / sizeof(mp_services[0]))

static const struct mp_service *mp_service_find(const char *name)
{
    for (size_t i = 0; i < N_MP_SERVICES; i++)
        if (strcmp(mp_services[i].name, name) == 0)
            return &mp_services[i];
    return NULL;
}

/* Whether the tracking number matches the service's regex (an empty regex takes any). */
static bool mp_tracking_ok(const struct mp_service *sv, const char *no)
{
    if (!sv->posix[0])
        return true;
    regex_t re;
    if (regcomp(&re, sv->posix, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    bool ok = regexec(&re, no, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static int list_logistics_service(struct sim *s, const struct params *prm, struct jb *j,
                                  struct mp_error *e)
{
    (void)s;
    (void)prm;
    (void)e;
    jb_kv_obj(j, "result_list");
    jb_kv_arr(j, "aeop_logistics_service_result");
    for (size_t i = 0; i < N_MP_SERVICES; i++) {
        const struct mp_service *sv = &mp_services[i];
        jb_obj(j);
        jb_kv_str(j, "display_name", sv->display);
        jb_kv_str(j, "logistics_company", sv->company);
        jb_kv_i64(j, "max_process_day", sv->max_day);
        jb_kv_i64(j, "min_process_day", sv->min_day);
        jb_kv_i64(j, "recommend_order", (int64_t)i);
        jb_kv_str(j, "service_name", sv->name);
        jb_kv_str(j, "tracking_no_regex", sv->regex);
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
    jb_kv_bool(j, "result_success", true);
    return 0;
}

/* --- aliexpress.solution.order.receiptinfo.get ------------------------------------------- */

static const char *country_name(const char *code)
{
    static const char *const names[][2] = {
        {"ES", "Spain"},  {"FR", "France"},      {"PL", "Poland"},  {"US", "United States"},
        {"BR", "Brazil"}, {"NL", "Netherlands"}, {"DE", "Germany"}, {"IT", "Italy"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i][0], code) == 0)
            return names[i][1];
    return code;
}

/* param1 (SingleOrderQuery): order_id. result (OrderAddressDto): the full ship-to, every
 * member the metadata lists. An unknown order: InvalidParameter (no source names a code). */
static int order_receiptinfo_get(struct sim *s, const struct params *prm, struct jb *j,
                                 struct mp_error *e)
{
    int rc;
    cJSON *q = json_param(prm, "param1", true, &rc, e);
    if (rc < 0)
        return -1;
    int64_t id = 0;
    bool ok = cJSON_IsObject(q);
    if (!ok)
        invalid(e, "param1", "not a JSON object");
    ok = ok && member_int(q, "order_id", 1, INT64_MAX, &id, e);
    if (ok && id == 0)
        ok = refuse(missing(e, "order_id"));
    cJSON_Delete(q);
    if (!ok)
        return -1;
    const struct order *o = order_find(s, id);
    if (!o)
        return invalid(e, "order_id", "no such order");
    struct buyer b;
    char contact[72];
    gen_buyer(o->buyer_seed, o->country, &b);
    snprintf(contact, sizeof(contact), "%s %s", b.first, b.last);
    jb_kv_obj(j, "result");
    jb_kv_str(j, "country_name", country_name(b.country));
    jb_kv_str(j, "mobile_no", b.phone);
    jb_kv_str(j, "contact_person", contact);
    jb_kv_str(j, "phone_country", b.phone_country);
    jb_kv_str(j, "phone_area", "");
    jb_kv_str(j, "province", b.province);
    jb_kv_str(j, "address", b.street);
    jb_kv_str(j, "phone_number", "");
    jb_kv_str(j, "fax_number", "");
    jb_kv_str(j, "detail_address", b.street);
    jb_kv_str(j, "city", b.city);
    jb_kv_str(j, "country", b.country);
    jb_kv_str(j, "address2", "");
    jb_kv_str(j, "fax_country", "");
    jb_kv_str(j, "zip", b.zip);
    jb_kv_str(j, "fax_area", "");
    jb_kv_str(j, "localized_address", "");
    jb_obj_end(j);
    return 0;
}

/* --- aliexpress.solution.order.fulfill ---------------------------------------------------- */

static bool printable(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7F)
            return false;
    return true;
}

static void fulfil_result(struct jb *j, int64_t now, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The answer: BaseResult. Its metadata documents result_success (and the model error_code,
 * error_message) but no error code's value: a refusal is result_success false with a message
 * and no error_code (the simulator invents none; see README). */
static void fulfil_result(struct jb *j, int64_t now, bool ok, const char *fmt, ...)
{
    char stamp[ST_PACIFIC_LEN], msg[256];
    st_fmt_gmt8(now, stamp);
    jb_kv_obj(j, "result");
    jb_kv_bool(j, "result_success", ok);
    jb_kv_str(j, "time_stamp", stamp);
    if (!ok) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        jb_kv_str(j, "error_message", msg);
    }
    jb_obj_end(j);
}

static int order_fulfill(struct sim *s, const struct params *prm, struct jb *j, struct mp_error *e)
{
    const char *service = params_get(prm, "service_name");
    const char *ref = params_get(prm, "out_ref");
    const char *send_type = params_get(prm, "send_type");
    const char *logistics_no = params_get(prm, "logistics_no");
    const char *website = params_get(prm, "tracking_website");
    int64_t id;
    if (!service || !*service)
        return missing(e, "service_name");
    if (!ref)
        return missing(e, "out_ref");
    if (!send_type)
        return missing(e, "send_type");
    if (!logistics_no)
        return missing(e, "logistics_no");
    if (strcmp(send_type, "all") != 0 && strcmp(send_type, "part") != 0)
        return invalid(e, "send_type", "must be \"all\" or \"part\"");
    if (!printable(logistics_no, 64))
        return invalid(e, "logistics_no", "1 to 64 printable characters without spaces");
    if (!jin_parse_digits(ref, &id))
        return invalid(e, "out_ref", "not an order id");
    int64_t now = sim_now(s), now_ms = sim_now_ms(s);
    struct order *o = order_find(s, id);
    if (!o) {
        fulfil_result(j, now, false, "order %" PRId64 " does not exist", id);
        return 0;
    }
    /* service_name must be one of the seller's logistics service keys (listlogisticsservice),
     * the number must match its tracking_no_regex, and service "other" names its tracking
     * website (the metadata: "When serviceName=other, fill in the corresponding tracking
     * website"). Refused like any fulfil: result_success false. */
    const struct mp_service *sv = mp_service_find(service);
    const char *why = NULL;
    if (!sv)
        why = "unknown_service";
    else if (!mp_tracking_ok(sv, logistics_no))
        why = "tracking_mismatch";
    else if (!strcmp(sv->name, "other") && (!website || !*website))
        why = "website_missing";
    if (why) {
        order_add_fulfilment(o, logistics_no, send_type, service, website, FUL_REJECTED, why,
                             now_ms);
        fulfil_result(j, now, false, "%s",
                      !sv ? "service_name is not a logistics service of this seller"
                      : !strcmp(why, "tracking_mismatch")
                          ? "logistics_no does not match the service's tracking number rule"
                          : "tracking_website is required for the service other");
        return 0;
    }
    /* No "already shipped" code: the platform documents none. A fulfil of an order that is
     * no longer waiting to ship (shipped under any number, or cancelled) is refused like any
     * other call in the wrong state; who sent a fulfil whose answer was lost reads the order
     * back (its logistic_info_list) to learn whether it landed. */
    if (o->status != OS_WAIT_SELLER_SEND_GOODS && o->status != OS_SELLER_PART_SEND_GOODS) {
        order_add_fulfilment(o, logistics_no, send_type, service, website, FUL_REJECTED,
                             "status_not_allowed", now_ms);
        fulfil_result(j, now, false, "order %" PRId64 " is %s and cannot be shipped", id,
                      order_status_name(o->status));
        return 0;
    }
    if (order_add_fulfilment(o, logistics_no, send_type, service, website, FUL_APPLIED, NULL,
                             now_ms) < 0) {
        e->type = "ISP";
        e->code = "SystemError";
        snprintf(e->msg, sizeof(e->msg), "out of memory");
        return -1;
    }
    order_set_status(s, o,
                     strcmp(send_type, "all") == 0 ? OS_WAIT_BUYER_ACCEPT_GOODS
                                                   : OS_SELLER_PART_SEND_GOODS);
    fulfil_result(j, now, true, "%s", "");
    return 0;
}

/* --- the gateway -------------------------------------------------------------------------- */

typedef int (*mp_method_fn)(struct sim *s, const struct params *p, struct jb *j,
                            struct mp_error *e);

static const struct mp_method {
    const char *name;
    bool needs_session;
    mp_method_fn fn;
} methods[] = {
    {"aliexpress.solution.product.list.get", true, product_list_get},
    {"aliexpress.solution.product.info.get", true, product_info_get},
    {"aliexpress.solution.batch.product.inventory.update", true, inventory_update},
    {"aliexpress.solution.order.get", true, order_get},
    {"aliexpress.solution.order.info.get", true, order_info_get},
    {"aliexpress.solution.order.receiptinfo.get", true, order_receiptinfo_get},
    {"aliexpress.solution.order.fulfill", true, order_fulfill},
    {"aliexpress.logistics.redefining.listlogisticsservice", true, list_logistics_service},
};

const char *mp_call_name(const struct http_req *rq)
{
    const char *m = params_get(&rq->form, "method");
    return m ? m : "";
}

static const struct mp_method *find_method(const char *name)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].name, name) == 0)
            return &methods[i];
    return NULL;
}

/* timestamp: milliseconds since the epoch (IOP), or "yyyy-MM-dd HH:mm:ss" in GMT+8 (older TOP
 * clients). Returns epoch milliseconds, or -1. */
static int64_t parse_timestamp(const char *ts)
{
    int64_t ms;
    if (jin_parse_digits(ts, &ms))
        return ms;
    struct tm tm = {0};
    char tail;
    if (sscanf(ts, "%4d-%2d-%2d %2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &tail) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return ((int64_t)timegm(&tm) - 8 * 3600) * 1000;
}

static int check_gateway(struct sim *s, const struct params *p, const struct mp_method **m,
                         struct mp_error *e)
{
    const struct sim_config *c = &s->cfg;
    const char *dup = params_duplicate(p);
    if (dup)
        return invalid(e, dup, "given more than once");
    const char *app_key = params_get(p, "app_key");
    if (!app_key)
        return fail(e, "MissingAppKey", "Missing app key");
    if (strcmp(app_key, c->app_key) != 0)
        return fail(e, "InvalidAppKey", "The specified App Key is invalid");
    const char *method = params_get(p, "method");
    if (!method)
        return fail(e, "MissingMethod", "Missing method");
    const char *ts = params_get(p, "timestamp");
    if (!ts)
        return fail(e, "MissingTimestamp", "Missing timestamp");
    int64_t ms = parse_timestamp(ts);
    int64_t skew = ms - st_realtime_ms();
    if (ms < 0 || (c->timestamp_window > 0 &&
                   (skew > c->timestamp_window * 1000 || skew < -c->timestamp_window * 1000)))
        return fail(e, "InvalidTimestamp", "The request timestamp is invalid or out of range");
    const char *sign = params_get(p, "sign");
    if (!sign)
        return fail(e, "MissingSignature", "Missing signature");
    enum sign_method sm = sign_method_parse(params_get(p, "sign_method"));
    char expect[SIGN_HEX_MAX];
    if (sm == SIGN_UNKNOWN)
        return fail(e, "InvalidSignatureMethod", "The sign_method is not supported");
    if (sign_compute(sm, c->app_secret, NULL, p, expect) < 0 || !sign_equal(expect, sign))
        return fail(e, "IncompleteSignature",
                    "The request signature does not conform to platform standards");
    const char *format = params_get(p, "format");
    if (format && strcmp(format, "json") != 0)
        return fail(e, "InvalidFormat", "Only format=json is served");
    *m = find_method(method);
    if (!*m)
        return fail(e, "InvalidMethod", "The specified method %s is invalid", method);
    /* The seller's token as the official SDKs send it on /sync: session (the platform's page
     * names access_token; see README for the reading chosen). */
    const char *token = params_get(p, "session");
    if ((*m)->needs_session && !token)
        return fail(e, "MissingAccessToken", "Missing session");
    if ((*m)->needs_session && strcmp(token, c->access_token) != 0)
        return fail(e, "IllegalAccessToken", "The specified access token is invalid or expired");
    return 0;
}

static void write_error(struct sim *s, const struct mp_error *e, struct jb *j)
{
    char rid[32];
    sim_request_id(s, rid);
    jb_reset(j);
    jb_obj(j);
    jb_kv_obj(j, "error_response");
    jb_kv_str(j, "type", e->type);
    jb_kv_str(j, "code", e->code);
    jb_kv_str(j, "msg", e->msg);
    jb_kv_str(j, "request_id", rid);
    jb_obj_end(j);
    jb_obj_end(j);
}

/* The Java SDK sends method in the query string as well as in the body (and signs it once):
 * the same value twice is one parameter. Copies p into out without the repeat; 1 when there
 * was one, 0 when there was none (out untouched), -1 when out of memory. */
static int drop_repeated_method(const struct params *p, struct params *out)
{
    size_t first = p->n;
    bool repeat = false;
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->v[i].name, "method") != 0)
            continue;
        if (first == p->n)
            first = i;
        else if (strcmp(p->v[i].value, p->v[first].value) == 0)
            repeat = true;
        else
            return 0; /* two different methods: refused as a duplicate */
    }
    if (!repeat)
        return 0;
    params_init(out);
    for (size_t i = 0; i < p->n; i++) {
        if (i != first && strcmp(p->v[i].name, "method") == 0)
            continue;
        if (params_add(out, p->v[i].name, strlen(p->v[i].name), p->v[i].value,
                       strlen(p->v[i].value)) < 0) {
            params_free(out);
            return -1;
        }
    }
    return 1;
}

void mp_handle(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    struct mp_error e = {"ISV", NULL, ""};
    const struct mp_method *m = NULL;
    out->status = 200;
    out->content_type = "application/json;charset=UTF-8";
    if (rq->form_malformed) {
        fail(&e, "InvalidParameter", "The request body is not valid url-encoded form data");
        write_error(s, &e, &out->body);
        return;
    }
    struct params once;
    int dropped = drop_repeated_method(&rq->form, &once);
    if (dropped < 0) {
        fail(&e, "SystemError", "Out of memory");
        e.type = "ISP";
        write_error(s, &e, &out->body);
        return;
    }
    const struct params *form = dropped ? &once : &rq->form;
    if (check_gateway(s, form, &m, &e) < 0) {
        write_error(s, &e, &out->body);
        if (dropped)
            params_free(&once);
        return;
    }
    struct jb inner;
    jb_init(&inner, HTTP_MAX_RESPONSE);
    pthread_mutex_lock(&s->lock);
    int rc = m->fn(s, form, &inner, &e);
    pthread_mutex_unlock(&s->lock);
    if (dropped)
        params_free(&once);
    if (rc == 0 && jb_failed(&inner)) {
        rc = fail(&e, "SystemError", "The answer is too large");
        e.type = "ISP";
    }
    if (rc < 0) {
        write_error(s, &e, &out->body);
        jb_free(&inner);
        return;
    }
    char key[96], rid[32];
    snprintf(key, sizeof(key), "%s_response", m->name);
    for (char *c = key; *c; c++)
        *c = *c == '.' ? '_' : *c;
    sim_request_id(s, rid);
    struct jb *j = &out->body;
    jb_obj(j);
    jb_kv_obj(j, key);
    if (inner.len) {
        jb_json(j, inner.buf, inner.len);
        j->first[j->depth] = false;
    }
    jb_kv_str(j, "request_id", rid);
    jb_obj_end(j);
    jb_obj_end(j);
    jb_free(&inner);
}

void mp_fault_response(struct sim *s, const struct fault_action *a, struct http_resp *out)
{
    struct mp_error e = {"ISP", "ServiceUnavailable", "The service is temporarily unavailable"};
    if (a->kind == FK_STATUS) {
        out->status = a->status;
        if (a->status == 429) {
            e.code = "ApiCallLimit";
            snprintf(e.msg, sizeof(e.msg), "The request has exceeded the limit");
        } else if (a->status == 500) {
            e.code = "SystemError";
            snprintf(e.msg, sizeof(e.msg), "System error");
        } else if (a->status < 500) {
            e.type = "ISV";
            e.code = "InvalidRequest";
            snprintf(e.msg, sizeof(e.msg), "Injected HTTP %d", a->status);
        }
    } else {
        out->status = 200;
        e.code = a->api_code;
        bool limit = strstr(a->api_code, "CallLimit") != NULL;
        e.type = limit || strcmp(a->api_code, "SystemError") == 0 ||
                         strcmp(a->api_code, "ServiceUnavailable") == 0
                     ? "ISP"
                     : "ISV";
        if (a->api_type[0])
            e.type = a->api_type;
        snprintf(e.msg, sizeof(e.msg), "%s",
                 limit ? "The request has exceeded the limit" : "Injected platform error");
    }
    out->retry_after = a->retry_after;
    out->content_type = "application/json;charset=UTF-8";
    write_error(s, &e, &out->body);
}
