#include "control.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "faults.h"
#include "gen.h"
#include "json_in.h"
#include "json_out.h"
#include "rng.h"
#include "simtime.h"
#include "state.h"
#include "stats.h"
#include "strmap.h"
#include "warehouse.h"

#define ORDERS_PER_CALL_MAX 100000
#define CHANGES_PER_CALL_MAX 1000000

/* --- helpers ------------------------------------------------------------------------------ */

static cJSON *body_object(const struct http_req *rq, struct http_resp *out)
{
    cJSON *doc = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->body_len);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        http_resp_error(out, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return doc;
}

/* Optional integer member in [lo, hi]; false (with a 400 answer) when invalid. */
static bool member_int(const cJSON *doc, const char *key, int64_t lo, int64_t hi, int64_t *out,
                       struct http_resp *resp)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(doc, key);
    if (!it || cJSON_IsNull(it))
        return true;
    if (!jin_id(it, out) || *out < lo || *out > hi) {
        http_resp_error(resp, 400, "bad_request",
                        "\"%s\" must be an integer in [%" PRId64 ", %" PRId64 "]", key, lo, hi);
        return false;
    }
    return true;
}

static bool wants_csv(const struct http_req *rq)
{
    const char *f = params_get(&rq->query, "format");
    return f && strcmp(f, "csv") == 0;
}

static void ok_json(struct http_resp *out)
{
    out->status = 200;
    out->content_type = "application/json";
}

static void csv_field(struct jb *j, const char *s)
{
    jb_append(j, s, strlen(s)); /* SKU codes and ids: printable, no comma or quote */
}

/* Resolves ?wh=CODE; -1 (with a 400/404 answer) when missing or unknown. */
static int query_wh(const struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    const char *code = params_get(&rq->query, "wh");
    if (!code) {
        http_resp_error(out, 400, "bad_request", "give ?wh=CODE");
        return -1;
    }
    int w = sim_wh_find(s, code, strlen(code));
    if (w < 0)
        http_resp_error(out, 404, "unknown_warehouse", "no warehouse %.32s", code);
    return w;
}

/* --- faults and links --------------------------------------------------------------------- */

static bool known_target(const struct sim *s, const char *t)
{
    if (strcmp(t, "mp") == 0 || strcmp(t, "*") == 0 || strcmp(t, "wh:*") == 0)
        return true;
    return strncmp(t, "wh:", 3) == 0 && sim_wh_find(s, t + 3, strlen(t + 3)) >= 0;
}

/* One fault object or an array of them; all or nothing. */
static void faults_post(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    cJSON *doc = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->body_len);
    if (!cJSON_IsObject(doc) && !cJSON_IsArray(doc)) {
        cJSON_Delete(doc);
        http_resp_error(out, 400, "bad_request", "give a fault object or an array of them");
        return;
    }
    int ids[64];
    size_t n = 0;
    char err[200] = "";
    const cJSON *one = cJSON_IsArray(doc) ? doc->child : doc;
    for (; one && !err[0]; one = cJSON_IsArray(doc) ? one->next : NULL) {
        const char *target = jin_str(one, "target");
        int id = -1;
        if (target && !known_target(s, target))
            snprintf(err, sizeof(err), "unknown target %.40s", target);
        else if (n == sizeof(ids) / sizeof(ids[0]))
            snprintf(err, sizeof(err), "too many faults in one call");
        else if ((id = faults_add(s->faults, one, err, sizeof(err))) > 0)
            ids[n++] = id;
    }
    cJSON_Delete(doc);
    if (err[0]) {
        for (size_t i = 0; i < n; i++)
            faults_remove(s->faults, ids[i]);
        http_resp_error(out, 400, "bad_request", "%s", err);
        return;
    }
    ok_json(out);
    jb_obj(&out->body);
    jb_kv_arr(&out->body, "ids");
    for (size_t i = 0; i < n; i++)
        jb_i64(&out->body, ids[i]);
    jb_arr_end(&out->body);
    jb_obj_end(&out->body);
}

static void faults_route(struct sim *s, const struct http_req *rq, const char *rest,
                         struct http_resp *out)
{
    bool get = strcmp(rq->method, "GET") == 0, post = strcmp(rq->method, "POST") == 0;
    bool del = strcmp(rq->method, "DELETE") == 0;
    ok_json(out);
    if (!*rest && get) {
        jb_obj(&out->body);
        jb_key(&out->body, "faults");
        faults_json(s->faults, &out->body);
        jb_obj_end(&out->body);
    } else if (!*rest && post) {
        faults_post(s, rq, out);
    } else if (!*rest && del) {
        faults_clear(s->faults);
        jb_obj(&out->body);
        jb_kv_bool(&out->body, "cleared", true);
        jb_obj_end(&out->body);
    } else if (*rest == '/' && del) {
        int64_t id;
        if (!jin_parse_digits(rest + 1, &id) || faults_remove(s->faults, (int)id) < 0) {
            http_resp_error(out, 404, "not_found", "no fault %.20s", rest + 1);
            return;
        }
        jb_obj(&out->body);
        jb_kv_i64(&out->body, "removed", id);
        jb_obj_end(&out->body);
    } else {
        http_resp_error(out, 405, "method_not_allowed", "%s /control/faults%s", rq->method, rest);
    }
}

static void link_route(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    if (strcmp(rq->method, "POST") == 0) {
        cJSON *doc = body_object(rq, out);
        if (!doc)
            return;
        const char *target = jin_str(doc, "target");
        const cJSON *up = cJSON_GetObjectItemCaseSensitive(doc, "up");
        if (!target || !known_target(s, target) || !cJSON_IsBool(up)) {
            http_resp_error(out, 400, "bad_request",
                            "give {\"target\": \"mp\" | \"wh:CODE\" | \"*\", \"up\": true|false}");
            cJSON_Delete(doc);
            return;
        }
        links_set(s->faults, target, cJSON_IsTrue(up));
        cJSON_Delete(doc);
    } else if (strcmp(rq->method, "GET") != 0) {
        http_resp_error(out, 405, "method_not_allowed", "GET or POST /control/link");
        return;
    }
    ok_json(out);
    jb_obj(&out->body);
    jb_key(&out->body, "down");
    links_json(s->faults, &out->body);
    jb_obj_end(&out->body);
}

/* --- assertions --------------------------------------------------------------------------- */

/* {"max", "count", "movements": {id: apply_count}} over the chosen warehouses; an id known to
 * several warehouses shows its largest apply count (the invariant holds per warehouse).
 * Transfers appear as "transfer:<id>". */
static void movements_get(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    int only = -1;
    if (params_get(&rq->query, "wh") && (only = query_wh(s, rq, out)) < 0)
        return;
    struct strmap *seen = strmap_new(1024);
    uint32_t *counts = NULL;
    size_t n = 0, cap = 0;
    const char **ids = NULL;
    if (!seen) {
        http_resp_error(out, 500, "internal", "out of memory");
        return;
    }
    char key[160];
    bool oom = false;
    for (size_t w = 0; w < s->n_wh && !oom; w++) {
        if (only >= 0 && (int)w != only)
            continue;
        struct warehouse *wh = &s->wh[w];
        for (size_t i = 0; i < wh->n_movements + wh->n_transfers && !oom; i++) {
            bool is_mv = i < wh->n_movements;
            const char *id = is_mv ? wh->movements[i].id : wh->transfers[i - wh->n_movements].id;
            uint32_t c = is_mv ? wh->movements[i].apply_count
                               : wh->transfers[i - wh->n_movements].apply_count;
            int len = snprintf(key, sizeof(key), "%s%s", is_mv ? "" : "transfer:", id);
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                uint32_t *nc = realloc(counts, cap * sizeof(*counts));
                const char **ni = nc ? realloc(ids, cap * sizeof(*ids)) : NULL;
                if (nc)
                    counts = nc;
                if (ni)
                    ids = ni;
                if (!nc || !ni) {
                    oom = true;
                    break;
                }
            }
            const char *stored;
            int rc = strmap_put(seen, key, (size_t)len, (uint32_t)n, &stored);
            if (rc < 0) {
                oom = true;
            } else if (rc == 1) {
                ids[n] = stored;
                counts[n++] = c;
            } else {
                uint32_t at = (uint32_t)strmap_get(seen, key, (size_t)len);
                counts[at] = c > counts[at] ? c : counts[at];
            }
        }
    }
    if (oom) {
        http_resp_error(out, 500, "internal", "out of memory");
    } else {
        uint32_t max = 0;
        for (size_t i = 0; i < n; i++)
            max = counts[i] > max ? counts[i] : max;
        struct jb *j = &out->body;
        ok_json(out);
        jb_obj(j);
        jb_kv_i64(j, "max", max);
        jb_kv_i64(j, "count", (int64_t)n);
        jb_kv_obj(j, "movements");
        for (size_t i = 0; i < n; i++)
            jb_kv_i64(j, ids[i], counts[i]);
        jb_obj_end(j);
        jb_kv_obj(j, "warehouses");
        for (size_t w = 0; w < s->n_wh; w++) {
            jb_kv_obj(j, s->wh[w].code);
            jb_kv_i64(j, "movements", (int64_t)s->wh[w].n_movements);
            jb_kv_i64(j, "transfers", (int64_t)s->wh[w].n_transfers);
            jb_kv_i64(j, "version", s->wh[w].version);
            jb_obj_end(j);
        }
        jb_obj_end(j);
        jb_obj_end(j);
    }
    free(counts);
    free(ids);
    strmap_free(seen);
}

static void stock_row_json(struct jb *j, const char *sku, const struct stock_row *r)
{
    char at[ST_ISO_LEN];
    st_fmt_iso(r->updated_at, at);
    jb_obj(j);
    jb_kv_str(j, "sku", sku);
    jb_kv_i64(j, "on_hand", r->on_hand);
    jb_kv_i64(j, "inbound", r->inbound);
    jb_kv_i64(j, "version", r->version);
    jb_kv_str(j, "updated_at", at);
    jb_obj_end(j);
}

static void stock_get(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    const char *sku_code = params_get(&rq->query, "sku");
    int64_t sku = -1;
    if (sku_code && (sku = sim_sku_find(s, sku_code, strlen(sku_code))) < 0) {
        http_resp_error(out, 404, "unknown_sku", "no SKU %.120s", sku_code);
        return;
    }
    struct jb *j = &out->body;
    if (sku >= 0 && !params_get(&rq->query, "wh")) { /* one SKU everywhere */
        ok_json(out);
        jb_obj(j);
        jb_kv_str(j, "sku", sku_code);
        jb_kv_i64(j, "marketplace", s->mp_stock[sku]);
        jb_kv_obj(j, "warehouses");
        for (size_t w = 0; w < s->n_wh; w++) {
            jb_key(j, s->wh[w].code);
            stock_row_json(j, sku_code, &s->wh[w].rows[sku]);
        }
        jb_obj_end(j);
        jb_obj_end(j);
        return;
    }
    int w = query_wh(s, rq, out);
    if (w < 0)
        return;
    const struct warehouse *wh = &s->wh[w];
    size_t from = sku >= 0 ? (size_t)sku : 0, to = sku >= 0 ? (size_t)sku + 1 : s->n_skus;
    if (wants_csv(rq)) {
        out->status = 200;
        out->content_type = "text/csv";
        jb_append(j, "sku,on_hand,inbound,version\n", 28);
        for (size_t i = from; i < to; i++) {
            const struct stock_row *r = &wh->rows[i];
            csv_field(j, s->skus[i].code);
            jb_append(j, ",", 1);
            jb_append_i64(j, r->on_hand);
            jb_append(j, ",", 1);
            jb_append_i64(j, r->inbound);
            jb_append(j, ",", 1);
            jb_append_i64(j, r->version);
            jb_append(j, "\n", 1);
        }
        return;
    }
    ok_json(out);
    jb_obj(j);
    jb_kv_str(j, "warehouse", wh->code);
    jb_kv_i64(j, "version", wh->version);
    jb_kv_arr(j, "items");
    for (size_t i = from; i < to; i++)
        stock_row_json(j, s->skus[i].code, &wh->rows[i]);
    jb_arr_end(j);
    jb_obj_end(j);
}

static void published_one(struct sim *s, int64_t sku, struct http_resp *out)
{
    struct jb *j = &out->body;
    char at[ST_ISO_MS_LEN];
    ok_json(out);
    jb_obj(j);
    jb_kv_str(j, "sku", s->skus[sku].code);
    jb_kv_i64(j, "value", s->mp_stock[sku]);
    jb_kv_i64(j, "publishes", s->pub_count[sku]);
    jb_kv_i64(j, "ordered", s->mp_ordered[sku]);
    jb_kv_arr(j, "history");
    for (uint32_t e = s->pub_head[sku]; e; e = s->pub[e - 1].next) {
        const struct pub_entry *p = &s->pub[e - 1];
        st_fmt_iso_ms(p->at_ms, at);
        jb_obj(j);
        jb_kv_i64(j, "value", p->value);
        jb_kv_str(j, "at", at);
        jb_kv_i64(j, "at_ms", p->at_ms);
        jb_kv_i64(j, "ordered", p->ordered);
        jb_kv_i64(j, "warehouses", p->warehouses);
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
}

static void published_get(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    const char *sku_code = params_get(&rq->query, "sku");
    if (sku_code) {
        int64_t sku = sim_sku_find(s, sku_code, strlen(sku_code));
        if (sku < 0)
            http_resp_error(out, 404, "unknown_sku", "no SKU %.120s", sku_code);
        else
            published_one(s, sku, out);
        return;
    }
    const char *all_p = params_get(&rq->query, "all");
    bool all = all_p && strcmp(all_p, "1") == 0, csv = wants_csv(rq);
    struct jb *j = &out->body;
    char at[ST_ISO_MS_LEN];
    out->status = 200;
    out->content_type = csv ? "text/csv" : "application/json";
    if (csv)
        jb_append(j, "sku,value,publishes,at_ms,published\n", 36);
    else {
        jb_obj(j);
        jb_kv_i64(j, "publishes", (int64_t)s->n_pub);
        jb_kv_arr(j, "items");
    }
    for (size_t i = 0; i < s->n_skus; i++) {
        uint32_t n = s->pub_count[i];
        if (!n && !all)
            continue;
        int64_t at_ms = n ? s->pub[s->pub_tail[i] - 1].at_ms : 0;
        if (csv) {
            csv_field(j, s->skus[i].code);
            jb_append(j, ",", 1);
            jb_append_i64(j, s->mp_stock[i]);
            jb_append(j, ",", 1);
            jb_append_i64(j, n);
            jb_append(j, ",", 1);
            jb_append_i64(j, at_ms);
            jb_append(j, ",", 1);
            if (n) /* the last value published, before any order took units off it */
                jb_append_i64(j, s->pub[s->pub_tail[i] - 1].value);
            jb_append(j, "\n", 1);
            continue;
        }
        jb_obj(j);
        jb_kv_str(j, "sku", s->skus[i].code);
        jb_kv_i64(j, "value", s->mp_stock[i]);
        jb_kv_i64(j, "publishes", n);
        if (n) {
            st_fmt_iso_ms(at_ms, at);
            jb_kv_str(j, "at", at);
        }
        jb_obj_end(j);
    }
    if (!csv) {
        jb_arr_end(j);
        jb_obj_end(j);
    }
}

static const char *const ful_result_names[] = {"applied", "already_shipped", "rejected", "initial"};

static void fulfilments_get(struct sim *s, struct http_resp *out)
{
    struct jb *j = &out->body;
    int64_t received = 0, max_per_tracking = 0;
    char at[ST_ISO_MS_LEN], id[24];
    ok_json(out);
    jb_obj(j);
    jb_kv_obj(j, "orders");
    for (size_t i = 0; i < s->n_orders; i++) {
        const struct order *o = &s->orders[i];
        bool any = false;
        for (uint32_t f = 0; f < o->n_ful; f++) {
            const struct fulfilment *fu = &o->ful[f];
            if (fu->result == FUL_INITIAL)
                continue;
            if (!any) {
                snprintf(id, sizeof(id), "%" PRId64, o->id);
                jb_kv_arr(j, id);
                any = true;
            }
            int64_t same = 0;
            for (uint32_t g = 0; g < o->n_ful; g++)
                same += o->ful[g].result == FUL_APPLIED &&
                        strcmp(o->ful[g].logistics_no, fu->logistics_no) == 0;
            max_per_tracking = same > max_per_tracking ? same : max_per_tracking;
            received++;
            st_fmt_iso_ms(fu->at_ms, at);
            jb_obj(j);
            jb_kv_str(j, "logistics_no", fu->logistics_no);
            jb_kv_str(j, "send_type", fu->send_type);
            jb_kv_str(j, "service_name", fu->service_name);
            if (fu->tracking_website)
                jb_kv_str(j, "tracking_website", fu->tracking_website);
            jb_kv_str(j, "result", ful_result_names[fu->result]);
            if (fu->code[0])
                jb_kv_str(j, "error_code", fu->code);
            jb_kv_str(j, "at", at);
            jb_obj_end(j);
        }
        if (any)
            jb_arr_end(j);
    }
    jb_obj_end(j);
    jb_kv_i64(j, "count", received);
    jb_kv_i64(j, "max_applied_per_tracking", max_per_tracking);
    jb_obj_end(j);
}

static void stats_get(struct sim *s, struct http_resp *out)
{
    struct jb *j = &out->body;
    ok_json(out);
    jb_obj(j);
    stats_json_members(s->stats, j);
    jb_key(j, "active_faults");
    faults_json(s->faults, j);
    jb_obj_end(j);
}

static void order_summary(const struct sim *s, const struct order *o, struct jb *j)
{
    char t[ST_ISO_LEN];
    jb_obj(j);
    jb_kv_i64(j, "order_id", o->id);
    jb_kv_str(j, "status", order_status_name(o->status));
    st_fmt_iso(o->created, t);
    jb_kv_str(j, "created", t);
    st_fmt_iso(o->modified, t);
    jb_kv_str(j, "modified", t);
    jb_kv_str(j, "country", gen_country_code(o->country));
    jb_kv_arr(j, "lines");
    for (int i = 0; i < o->n_lines; i++) {
        jb_obj(j);
        jb_kv_str(j, "sku", s->skus[o->lines[i].sku].code);
        jb_kv_i64(j, "qty", o->lines[i].qty);
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
}

static void orders_get(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    const char *st = params_get(&rq->query, "status");
    int status = st ? order_status_parse(st) : -1;
    if (st && status < 0) {
        http_resp_error(out, 400, "bad_request", "unknown status %.40s", st);
        return;
    }
    struct jb *j = &out->body;
    ok_json(out);
    jb_obj(j);
    jb_kv_i64(j, "count", (int64_t)s->n_orders);
    jb_kv_arr(j, "items");
    for (size_t i = 0; i < s->n_orders; i++)
        if (status < 0 || s->orders[i].status == status)
            order_summary(s, &s->orders[i], j);
    jb_arr_end(j);
    jb_obj_end(j);
}

/* --- generators --------------------------------------------------------------------------- */

static void orders_post(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    cJSON *doc = body_object(rq, out);
    if (!doc)
        return;
    int64_t count = 1, qty = 1;
    const char *sku_code = jin_str(doc, "sku");
    const char *st = jin_str(doc, "status");
    int status = st ? order_status_parse(st) : OS_WAIT_SELLER_SEND_GOODS;
    int64_t sku = sku_code ? sim_sku_find(s, sku_code, strlen(sku_code)) : -1;
    if (!member_int(doc, "count", 1, ORDERS_PER_CALL_MAX, &count, out) ||
        !member_int(doc, "qty", 1, 1000000, &qty, out)) {
        cJSON_Delete(doc);
        return;
    }
    cJSON_Delete(doc);
    if (status < 0 || (sku_code && sku < 0) || s->n_skus == 0) {
        http_resp_error(out, 400, "bad_request", "unknown %s", status < 0 ? "status" : "sku");
        return;
    }
    struct order_line line = {(uint32_t)(sku < 0 ? 0 : sku), (uint32_t)qty,
                              sku < 0 ? 0 : s->skus[sku].price_cents};
    struct jb *j = &out->body;
    ok_json(out);
    jb_obj(j);
    jb_kv_arr(j, "created");
    int64_t now = sim_now(s);
    for (int64_t i = 0; i < count; i++) {
        struct order *o =
            order_create(s, &s->ctl_rng, now, status, sku >= 0 ? &line : NULL, sku >= 0);
        if (!o) {
            http_resp_error(out, 500, "internal", "out of memory after %" PRId64 " orders", i);
            return;
        }
        order_place(s, o);
        jb_i64(j, o->id);
    }
    jb_arr_end(j);
    jb_obj_end(j);
}

static void order_status_post(struct sim *s, const struct http_req *rq, const char *id_text,
                              struct http_resp *out)
{
    int64_t id;
    struct order *o = jin_parse_digits(id_text, &id) ? order_find(s, id) : NULL;
    if (!o) {
        http_resp_error(out, 404, "not_found", "no order %.24s", id_text);
        return;
    }
    cJSON *doc = body_object(rq, out);
    if (!doc)
        return;
    int status = order_status_parse(jin_str(doc, "status"));
    cJSON_Delete(doc);
    if (status < 0) {
        http_resp_error(out, 400, "bad_request", "give {\"status\": \"IN_CANCEL\"} (any status)");
        return;
    }
    order_set_status(s, o, status);
    ok_json(out);
    order_summary(s, o, &out->body);
}

/* The seller ships an order outside tally (the seller centre): the order carries this
 * logistics number from now on, as if uploaded before; not counted as a fulfil received. */
static void order_ship_post(struct sim *s, const struct http_req *rq, const char *id_text,
                            struct http_resp *out)
{
    int64_t id;
    struct order *o = jin_parse_digits(id_text, &id) ? order_find(s, id) : NULL;
    if (!o) {
        http_resp_error(out, 404, "not_found", "no order %.24s", id_text);
        return;
    }
    cJSON *doc = body_object(rq, out);
    if (!doc)
        return;
    const char *no = jin_str(doc, "logistics_no"), *svc = jin_str(doc, "service_name");
    if (!no || !*no || strlen(no) > 64) {
        cJSON_Delete(doc);
        http_resp_error(out, 400, "bad_request", "give {\"logistics_no\": \"...\"}");
        return;
    }
    int rc = order_add_fulfilment(o, no, "all", svc ? svc : "OTHER", NULL, FUL_INITIAL, NULL,
                                  sim_now_ms(s));
    cJSON_Delete(doc);
    if (rc < 0) {
        http_resp_error(out, 500, "internal", "out of memory");
        return;
    }
    order_set_status(s, o, OS_WAIT_BUYER_ACCEPT_GOODS);
    ok_json(out);
    order_summary(s, o, &out->body);
}

/* A random warehouse-side change: goods received, found, damaged, sold elsewhere; never below
 * zero unless a delta is forced. */
static void stock_post(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    cJSON *doc = body_object(rq, out);
    if (!doc)
        return;
    int64_t changes = 1, delta = 0;
    const char *wh = jin_str(doc, "wh");
    const char *sku_code = jin_str(doc, "sku");
    int w = wh ? sim_wh_find(s, wh, strlen(wh)) : -1;
    int64_t sku = sku_code ? sim_sku_find(s, sku_code, strlen(sku_code)) : -1;
    bool ok = member_int(doc, "changes", 1, CHANGES_PER_CALL_MAX, &changes, out) &&
              member_int(doc, "delta", -1000000000, 1000000000, &delta, out);
    cJSON_Delete(doc);
    if (!ok)
        return;
    if ((wh && w < 0) || (sku_code && sku < 0) || s->n_wh == 0 || s->n_skus == 0) {
        http_resp_error(out, 400, "bad_request", "unknown %s", wh && w < 0 ? "wh" : "sku");
        return;
    }
    int64_t applied = 0;
    for (int64_t i = 0; i < changes; i++) {
        struct warehouse *x = &s->wh[w >= 0 ? (size_t)w : rng_below(&s->ctl_rng, s->n_wh)];
        uint32_t k = (uint32_t)(sku >= 0 ? (uint64_t)sku : rng_below(&s->ctl_rng, s->n_skus));
        int64_t d = delta;
        if (d == 0) {
            d = rng_range(&s->ctl_rng, -5, 20);
            if (x->rows[k].on_hand + d < 0)
                d = -x->rows[k].on_hand;
            if (d == 0)
                d = 1;
        }
        if (stock_change(s, x, k, d) < 0)
            break;
        applied++;
    }
    struct jb *j = &out->body;
    ok_json(out);
    jb_obj(j);
    jb_kv_i64(j, "applied", applied);
    jb_kv_obj(j, "versions");
    for (size_t i = 0; i < s->n_wh; i++)
        jb_kv_i64(j, s->wh[i].code, s->wh[i].version);
    jb_obj_end(j);
    jb_obj_end(j);
}

/* Random price changes: each touches one SKU and bumps its product's gmt_modified. */
static void catalog_post(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    cJSON *doc = body_object(rq, out);
    if (!doc)
        return;
    int64_t changes = 1;
    bool ok = member_int(doc, "changes", 1, CHANGES_PER_CALL_MAX, &changes, out);
    cJSON_Delete(doc);
    if (!ok)
        return;
    if (s->n_skus == 0) {
        http_resp_error(out, 400, "bad_request", "the catalog is empty");
        return;
    }
    struct jb *j = &out->body;
    int64_t now = sim_now(s);
    ok_json(out);
    jb_obj(j);
    jb_kv_arr(j, "changed");
    for (int64_t i = 0; i < changes; i++) {
        struct sku *k = &s->skus[rng_below(&s->ctl_rng, s->n_skus)];
        int32_t step = k->price_cents / 10 > 0 ? k->price_cents / 10 : 1;
        k->price_cents += (int32_t)rng_range(&s->ctl_rng, -step, step);
        if (k->price_cents < 1)
            k->price_cents = 1;
        s->products[k->product].modified = now;
        jb_obj(j);
        jb_kv_str(j, "sku", k->code);
        jb_kv_i64(j, "product_id", sim_product_id(k->product));
        jb_kv_i64(j, "price_cents", k->price_cents);
        jb_obj_end(j);
    }
    jb_arr_end(j);
    jb_obj_end(j);
}

static void clock_json(struct sim *s, struct http_resp *out)
{
    char now[ST_ISO_LEN];
    st_fmt_iso(sim_now(s), now);
    ok_json(out);
    jb_obj(&out->body);
    jb_kv_str(&out->body, "now", now);
    jb_kv_i64(&out->body, "now_ms", sim_now_ms(s));
    jb_kv_i64(&out->body, "offset_seconds", atomic_load(&s->clock_offset_ms) / 1000);
    jb_obj_end(&out->body);
}

static void advance_post(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    cJSON *doc = body_object(rq, out);
    if (!doc)
        return;
    int64_t seconds = -1;
    bool ok = member_int(doc, "seconds", 0, 10LL * 365 * 86400, &seconds, out);
    cJSON_Delete(doc);
    if (!ok)
        return;
    if (seconds < 0) {
        http_resp_error(out, 400, "bad_request", "give {\"seconds\": n}");
        return;
    }
    sim_advance(s, seconds);
    ob_tick_all(s);
    clock_json(s, out);
}

static void outbound_get(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    int w = query_wh(s, rq, out);
    if (w < 0)
        return;
    struct warehouse *wh = &s->wh[w];
    ob_tick(s, wh, sim_now(s));
    struct jb *j = &out->body;
    ok_json(out);
    jb_obj(j);
    jb_kv_str(j, "warehouse", wh->code);
    jb_kv_i64(j, "version", wh->ob_version);
    jb_kv_arr(j, "items");
    for (size_t i = 0; i < wh->n_outbound; i++)
        wh_outbound_json(s, &wh->outbound[i], true, j);
    jb_arr_end(j);
    jb_obj_end(j);
}

static void outbound_post(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    cJSON *doc = body_object(rq, out);
    if (!doc)
        return;
    const char *wh = jin_str(doc, "wh"), *id = jin_str(doc, "id");
    const char *reason = jin_str(doc, "reason");
    const char *carrier = jin_str(doc, "carrier"), *tracking = jin_str(doc, "tracking");
    int status = ob_status_parse(jin_str(doc, "status"));
    int w = wh ? sim_wh_find(s, wh, strlen(wh)) : -1;
    struct outbound *o = w >= 0 && id ? ob_find(&s->wh[w], id, strlen(id)) : NULL;
    if (!o || status <= OB_ACCEPTED) {
        http_resp_error(out, o ? 400 : 404, o ? "bad_request" : "not_found",
                        o ? "status must be picking, packed, shipped, cancelled or exception"
                          : "no such warehouse or outbound order");
    } else if (o->status == OB_SHIPPED || o->status == OB_CANCELLED) {
        http_resp_error(out, 409, "conflict", "outbound order %s is already %s", o->id,
                        ob_status_name(o->status));
    } else if ((carrier || tracking) &&
               (status != OB_SHIPPED ||
                (carrier && (!*carrier || strlen(carrier) >= sizeof o->carrier)) ||
                (tracking && (!*tracking || strlen(tracking) >= sizeof o->tracking)))) {
        http_resp_error(out, 400, "bad_request",
                        "carrier (1-23 bytes) and tracking (1-39 bytes) go only with shipped");
    } else if (ob_set_status(s, &s->wh[w], o, status,
                             reason                   ? reason
                             : status == OB_EXCEPTION ? "set by control"
                                                      : NULL,
                             sim_now(s)) < 0) {
        http_resp_error(out, 500, "internal", "out of memory");
    } else {
        /* The parcel's carrier and number as the warehouse reports them, instead of the
         * generated ones (a test's wrong number, or a carrier no mapping knows). */
        if (carrier)
            snprintf(o->carrier, sizeof o->carrier, "%s", carrier);
        if (tracking)
            snprintf(o->tracking, sizeof o->tracking, "%s", tracking);
        ok_json(out);
        wh_outbound_json(s, o, true, &out->body);
    }
    cJSON_Delete(doc);
}

static void health_get(struct sim *s, struct http_resp *out)
{
    struct jb *j = &out->body;
    ok_json(out);
    jb_obj(j);
    jb_kv_bool(j, "ok", true);
    jb_kv_i64(j, "skus", (int64_t)s->n_skus);
    jb_kv_i64(j, "products", (int64_t)s->n_products);
    jb_kv_i64(j, "orders", (int64_t)s->n_orders);
    jb_kv_arr(j, "warehouses");
    for (size_t i = 0; i < s->n_wh; i++)
        jb_str(j, s->wh[i].code);
    jb_arr_end(j);
    jb_obj_end(j);
}

/* --- dispatch: a table of (method, path) -> handler --------------------------------------- */

typedef void (*ctl_fn)(struct sim *s, const struct http_req *rq, struct http_resp *out);

static void h_health(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    (void)rq;
    health_get(s, out);
}

static void h_fulfilments(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    (void)rq;
    fulfilments_get(s, out);
}

static void h_stats(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    (void)rq;
    stats_get(s, out);
}

static void h_clock(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    (void)rq;
    clock_json(s, out);
}

static const struct ctl_route {
    const char *method, *path;
    bool locked; /* needs the world's lock */
    ctl_fn fn;
} routes[] = {
    {"GET", "/control/health", true, h_health},
    {"GET", "/control/link", false, link_route},
    {"POST", "/control/link", false, link_route},
    {"GET", "/control/movements", true, movements_get},
    {"GET", "/control/stock", true, stock_get},
    {"POST", "/control/stock", true, stock_post},
    {"GET", "/control/published", true, published_get},
    {"GET", "/control/fulfilments", true, h_fulfilments},
    {"GET", "/control/stats", false, h_stats},
    {"GET", "/control/orders", true, orders_get},
    {"POST", "/control/orders", true, orders_post},
    {"POST", "/control/catalog", true, catalog_post},
    {"POST", "/control/advance", true, advance_post},
    {"GET", "/control/clock", false, h_clock},
    {"GET", "/control/outbound", true, outbound_get},
    {"POST", "/control/outbound", true, outbound_post},
};

void control_handle(struct sim *s, const struct http_req *rq, struct http_resp *out)
{
    out->status = 200;
    out->content_type = "application/json";
    const char *p = rq->path;
    if (strncmp(p, "/control/faults", 15) == 0 && (p[15] == '\0' || p[15] == '/')) {
        faults_route(s, rq, p + 15, out);
        return;
    }
    if (strncmp(p, "/control/orders/", 16) == 0 && strcmp(rq->method, "POST") == 0) {
        const char *id = p + 16, *slash = strchr(id, '/');
        char id_text[32];
        if (slash && strcmp(slash, "/status") == 0 && (size_t)(slash - id) < sizeof(id_text)) {
            snprintf(id_text, sizeof(id_text), "%.*s", (int)(slash - id), id);
            pthread_mutex_lock(&s->lock);
            order_status_post(s, rq, id_text, out);
            pthread_mutex_unlock(&s->lock);
            return;
        }
        if (slash && strcmp(slash, "/ship") == 0 && (size_t)(slash - id) < sizeof(id_text)) {
            snprintf(id_text, sizeof(id_text), "%.*s", (int)(slash - id), id);
            pthread_mutex_lock(&s->lock);
            order_ship_post(s, rq, id_text, out);
            pthread_mutex_unlock(&s->lock);
            return;
        }
    }
    bool path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(routes[i].path, p) != 0)
            continue;
        path_known = true;
        if (strcmp(routes[i].method, rq->method) != 0)
            continue;
        if (routes[i].locked)
            pthread_mutex_lock(&s->lock);
        routes[i].fn(s, rq, out);
        if (routes[i].locked)
            pthread_mutex_unlock(&s->lock);
        if (jb_failed(&out->body))
            http_resp_error(out, 500, "internal", "answer too large");
        return;
    }
    if (path_known)
        http_resp_error(out, 405, "method_not_allowed", "%s is not served on %s", rq->method, p);
    else
        http_resp_error(out, 404, "not_found", "no control endpoint %s", p);
}
