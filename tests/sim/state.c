#include "state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "gen.h"
#include "rng.h"
#include "simtime.h"
#include "stats.h"
#include "strmap.h"

/* Order ids look like the platform's (16 digits) and stay below 2^53, so a client that parses
 * JSON numbers as doubles keeps them exact. id = BASE + (index + 1) * 1000 + random 0..999. */
#define ORDER_ID_BASE 3050000000000000LL
#define PRODUCT_ID_BASE 1005006000000000LL

static const char *const order_status_names[OS_COUNT] = {
    "PLACE_ORDER_SUCCESS",
    "RISK_CONTROL",
    "WAIT_SELLER_SEND_GOODS",
    "SELLER_PART_SEND_GOODS",
    "WAIT_BUYER_ACCEPT_GOODS",
    "IN_CANCEL",
    "IN_ISSUE",
    "IN_FROZEN",
    "FUND_PROCESSING",
    "WAIT_SELLER_EXAMINE_MONEY",
    "FINISH",
};

static const char *const ob_status_names[] = {"accepted", "picking",   "packed",
                                              "shipped",  "cancelled", "exception"};

const char *order_status_name(int status)
{
    return status >= 0 && status < OS_COUNT ? order_status_names[status] : "UNKNOWN";
}

int order_status_parse(const char *s)
{
    for (int i = 0; s && i < OS_COUNT; i++)
        if (strcmp(s, order_status_names[i]) == 0)
            return i;
    return -1;
}

const char *sim_wh_kind_name(int kind)
{
    static const char *const names[] = {"tally", "goodcang", "fourpx"};
    return kind >= SIM_WH_TALLY && kind <= SIM_WH_FOURPX ? names[kind] : "unknown";
}

const char *ob_status_name(int status)
{
    return status >= OB_ACCEPTED && status <= OB_EXCEPTION ? ob_status_names[status] : "unknown";
}

int ob_status_parse(const char *s)
{
    for (int i = OB_ACCEPTED; s && i <= OB_EXCEPTION; i++)
        if (strcmp(s, ob_status_names[i]) == 0)
            return i;
    return -1;
}

/* --- lifecycle ---------------------------------------------------------------------------- */

struct sim *sim_new(const struct sim_config *cfg, char *err, size_t errlen)
{
    struct sim *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    pthread_mutex_init(&s->lock, NULL);
    s->clock_base_sim_ms = cfg->start_time ? cfg->start_time * 1000 : st_realtime_ms();
    s->clock_base_mono_ms = st_monotonic_ms();
    s->ctl_rng = rng_stream(cfg->seed, 0xC0DE);
    s->n_wh = cfg->n_warehouses;
    for (size_t i = 0; i < s->n_wh; i++) {
        struct warehouse *w = &s->wh[i];
        snprintf(w->code, sizeof(w->code), "%s", cfg->warehouses[i]);
        w->index = (int)i;
        w->ob_next_due = INT64_MAX;
        w->movement_ids = strmap_new(1024);
        w->transfer_ids = strmap_new(64);
        w->outbound_ids = strmap_new(256);
        if (!w->movement_ids || !w->transfer_ids || !w->outbound_ids) {
            snprintf(err, errlen, "out of memory");
            sim_free(s);
            return NULL;
        }
    }
    s->faults = faults_new(cfg->seed);
    s->stats = stats_new();
    if (!s->faults || !s->stats) {
        snprintf(err, errlen, "out of memory");
        sim_free(s);
        return NULL;
    }
    if (gen_world(s, err, errlen) < 0) {
        sim_free(s);
        return NULL;
    }
    return s;
}

static void free_warehouse(struct warehouse *w)
{
    free(w->rows);
    free(w->vlog);
    strmap_free(w->movement_ids);
    free(w->movements);
    strmap_free(w->transfer_ids);
    free(w->transfers);
    for (size_t i = 0; i < w->n_outbound; i++) {
        free(w->outbound[i].lines);
        free(w->outbound[i].ship_to);
        free(w->outbound[i].service);
        free(w->outbound[i].note);
        free(w->outbound[i].reason);
    }
    strmap_free(w->outbound_ids);
    free(w->outbound);
    free(w->ob_log);
}

void sim_free(struct sim *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_wh; i++)
        free_warehouse(&s->wh[i]);
    for (size_t i = 0; i < s->n_orders; i++) {
        struct order *o = &s->orders[i];
        for (uint32_t f = 0; f < o->n_ful; f++) {
            free(o->ful[f].logistics_no);
            free(o->ful[f].send_type);
            free(o->ful[f].service_name);
            free(o->ful[f].tracking_website);
        }
        free(o->ful);
    }
    free(s->orders);
    free(s->products);
    free(s->skus);
    strmap_free(s->sku_codes);
    free(s->mp_stock);
    free(s->mp_ordered);
    free(s->pub_count);
    free(s->pub_head);
    free(s->pub_tail);
    free(s->pub);
    faults_free(s->faults);
    stats_free(s->stats);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* --- clock and lookups -------------------------------------------------------------------- */

int64_t sim_now_ms(const struct sim *s)
{
    return s->clock_base_sim_ms + (st_monotonic_ms() - s->clock_base_mono_ms) +
           atomic_load(&s->clock_offset_ms);
}

int64_t sim_now(const struct sim *s)
{
    return sim_now_ms(s) / 1000;
}

void sim_advance(struct sim *s, int64_t seconds)
{
    atomic_fetch_add(&s->clock_offset_ms, seconds * 1000);
}

int sim_wh_find(const struct sim *s, const char *code, size_t len)
{
    for (size_t i = 0; i < s->n_wh; i++)
        if (strlen(s->wh[i].code) == len && memcmp(s->wh[i].code, code, len) == 0)
            return (int)i;
    return -1;
}

int64_t sim_sku_find(const struct sim *s, const char *code, size_t len)
{
    return strmap_get(s->sku_codes, code, len);
}

int64_t sim_product_id(size_t product_index)
{
    return PRODUCT_ID_BASE + (int64_t)product_index + 1;
}

int64_t sim_product_find(const struct sim *s, int64_t product_id)
{
    int64_t i = product_id - PRODUCT_ID_BASE - 1;
    return i >= 0 && (size_t)i < s->n_products ? i : -1;
}

void sim_request_id(struct sim *s, char out[32])
{
    uint64_t n = atomic_fetch_add(&s->request_seq, 1) + 1;
    snprintf(out, 32, "21%011" PRIx64 "%010" PRIu64,
             (uint64_t)st_realtime_ms() & UINT64_C(0xFFFFFFFFFFF), n % UINT64_C(10000000000));
}

/* --- stock -------------------------------------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *p = realloc(*arr, c * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = c;
    return 0;
}

/* Makes room for n more stock changes, so that the changes themselves cannot fail. */
static int vlog_reserve(struct warehouse *w, size_t n)
{
    return grow((void **)&w->vlog, &w->vlog_cap, w->vlog_len + n, sizeof(*w->vlog));
}

int64_t stock_change(struct sim *s, struct warehouse *w, uint32_t sku, int64_t delta)
{
    if (vlog_reserve(w, 1) < 0)
        return -1;
    struct stock_row *r = &w->rows[sku];
    r->on_hand += delta;
    r->version = ++w->version;
    r->updated_at = (uint32_t)sim_now(s);
    w->vlog[w->vlog_len++] = sku;
    return r->version;
}

const struct movement *movement_find(const struct warehouse *w, const char *id, size_t idlen)
{
    int64_t idx = strmap_get(w->movement_ids, id, idlen);
    return idx >= 0 ? &w->movements[idx] : NULL;
}

enum mv_status movement_apply(struct sim *s, struct warehouse *w, const char *id, size_t idlen,
                              uint32_t sku, int64_t delta, const struct movement **m)
{
    int64_t idx = strmap_get(w->movement_ids, id, idlen);
    if (idx >= 0) {
        *m = &w->movements[idx];
        return (*m)->sku == sku && (*m)->delta == delta ? MV_DUPLICATE : MV_CONFLICT;
    }
    if (grow((void **)&w->movements, &w->cap_movements, w->n_movements + 1, sizeof(*w->movements)) <
            0 ||
        vlog_reserve(w, 1) < 0)
        return MV_NOMEM;
    struct movement *mv = &w->movements[w->n_movements];
    if (strmap_put(w->movement_ids, id, idlen, (uint32_t)w->n_movements, &mv->id) != 1)
        return MV_NOMEM;
    w->n_movements++;
    mv->sku = sku;
    mv->delta = delta;
    mv->version = stock_change(s, w, sku, delta);
    mv->apply_count = 1;
    *m = mv;
    return MV_APPLIED;
}

enum mv_status transfer_apply(struct sim *s, struct warehouse *w, const char *id, size_t idlen,
                              uint32_t sku, int64_t qty, int to, const struct transfer **t)
{
    int64_t idx = strmap_get(w->transfer_ids, id, idlen);
    if (idx >= 0) {
        *t = &w->transfers[idx];
        return (*t)->sku == sku && (*t)->qty == qty && (*t)->to == to ? MV_DUPLICATE : MV_CONFLICT;
    }
    struct warehouse *dst = &s->wh[to];
    if (grow((void **)&w->transfers, &w->cap_transfers, w->n_transfers + 1, sizeof(*w->transfers)) <
            0 ||
        vlog_reserve(w, 1) < 0 || vlog_reserve(dst, 1) < 0)
        return MV_NOMEM;
    struct transfer *tr = &w->transfers[w->n_transfers];
    if (strmap_put(w->transfer_ids, id, idlen, (uint32_t)w->n_transfers, &tr->id) != 1)
        return MV_NOMEM;
    w->n_transfers++;
    tr->sku = sku;
    tr->qty = qty;
    tr->to = to;
    tr->from_version = stock_change(s, w, sku, -qty);
    tr->to_version = stock_change(s, dst, sku, qty);
    tr->apply_count = 1;
    *t = tr;
    return MV_APPLIED;
}

/* --- marketplace stock -------------------------------------------------------------------- */

int publish_record(struct sim *s, uint32_t sku, int64_t value)
{
    if (s->n_pub >= UINT32_MAX - 1 ||
        grow((void **)&s->pub, &s->cap_pub, s->n_pub + 1, sizeof(*s->pub)) < 0)
        return -1;
    uint32_t idx = (uint32_t)s->n_pub++;
    int64_t on_hand = 0;
    for (size_t w = 0; w < s->n_wh; w++)
        on_hand += s->wh[w].rows[sku].on_hand;
    s->pub[idx] = (struct pub_entry){value, sim_now_ms(s), s->mp_ordered[sku], on_hand, 0};
    if (s->pub_tail[sku])
        s->pub[s->pub_tail[sku] - 1].next = idx + 1;
    else
        s->pub_head[sku] = idx + 1;
    s->pub_tail[sku] = idx + 1;
    s->pub_count[sku]++;
    s->mp_stock[sku] = value;
    return 0;
}

/* --- orders ------------------------------------------------------------------------------- */

struct order *order_find(struct sim *s, int64_t order_id)
{
    if (order_id < ORDER_ID_BASE + 1000)
        return NULL;
    int64_t q = (order_id - ORDER_ID_BASE) / 1000 - 1;
    if ((size_t)q >= s->n_orders || s->orders[q].id != order_id)
        return NULL;
    return &s->orders[q];
}

struct order *order_create(struct sim *s, uint64_t *rng, int64_t created, int status,
                           const struct order_line *lines, int n_lines)
{
    if (grow((void **)&s->orders, &s->cap_orders, s->n_orders + 1, sizeof(*s->orders)) < 0)
        return NULL;
    struct order *o = &s->orders[s->n_orders];
    memset(o, 0, sizeof(*o));
    o->id = ORDER_ID_BASE + (int64_t)(s->n_orders + 1) * 1000 + (int64_t)rng_below(rng, 1000);
    o->buyer_seed = rng_next(rng);
    o->country = (uint8_t)gen_country(rng);
    if (lines && n_lines > 0) {
        o->n_lines = (uint8_t)(n_lines > ORDER_MAX_LINES ? ORDER_MAX_LINES : n_lines);
        memcpy(o->lines, lines, o->n_lines * sizeof(*lines));
    } else {
        o->n_lines = (uint8_t)gen_order_lines(s, rng, o->lines);
    }
    o->status = (uint8_t)status;
    o->created = created;
    o->modified = created;
    o->paid = status == OS_PLACE_ORDER_SUCCESS ? 0 : created;
    s->n_orders++;
    return o;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int order_add_fulfilment(struct order *o, const char *logistics_no, const char *send_type,
                         const char *service_name, const char *tracking_website, int result,
                         const char *code, int64_t at_ms)
{
    size_t cap = o->cap_ful;
    if (grow((void **)&o->ful, &cap, (size_t)o->n_ful + 1, sizeof(*o->ful)) < 0)
        return -1;
    o->cap_ful = (uint32_t)cap;
    struct fulfilment *f = &o->ful[o->n_ful];
    memset(f, 0, sizeof(*f));
    f->logistics_no = dup_or_null(logistics_no);
    f->send_type = dup_or_null(send_type);
    f->service_name = dup_or_null(service_name);
    f->tracking_website = dup_or_null(tracking_website);
    f->result = (uint8_t)result;
    f->at_ms = at_ms;
    snprintf(f->code, sizeof(f->code), "%s", code ? code : "");
    o->n_ful++;
    return 0;
}

void order_place(struct sim *s, const struct order *o)
{
    for (int i = 0; i < o->n_lines; i++) {
        uint32_t k = o->lines[i].sku;
        int64_t left = s->mp_stock[k] - (int64_t)o->lines[i].qty;
        s->mp_stock[k] = left > 0 ? left : 0;
        s->mp_ordered[k] += o->lines[i].qty;
    }
}

void order_set_status(struct sim *s, struct order *o, int status)
{
    o->status = (uint8_t)status;
    o->modified = sim_now(s);
    if (status != OS_PLACE_ORDER_SUCCESS && !o->paid)
        o->paid = o->modified;
}

/* --- outbound orders ---------------------------------------------------------------------- */

struct outbound *ob_find(struct warehouse *w, const char *id, size_t idlen)
{
    int64_t i = strmap_get(w->outbound_ids, id, idlen);
    return i >= 0 ? &w->outbound[i] : NULL;
}

static int ob_log_append(struct warehouse *w, struct outbound *o)
{
    if (grow((void **)&w->ob_log, &w->ob_log_cap, w->ob_log_len + 1, sizeof(*w->ob_log)) < 0)
        return -1;
    o->version = ++w->ob_version;
    w->ob_log[w->ob_log_len++] = (uint32_t)(o - w->outbound);
    return 0;
}

static void schedule(struct sim *s, struct warehouse *w, struct outbound *o, int64_t from)
{
    bool moving = o->status == OB_ACCEPTED || o->status == OB_PICKING || o->status == OB_PACKED;
    o->next_due = moving && s->cfg.outbound_step > 0 ? from + s->cfg.outbound_step : INT64_MAX;
    if (o->next_due < w->ob_next_due)
        w->ob_next_due = o->next_due;
}

struct outbound *ob_insert(struct sim *s, struct warehouse *w, const char *id, size_t idlen,
                           struct ob_line *lines, uint32_t n_lines, char *ship_to, char *service)
{
    if (grow((void **)&w->outbound, &w->cap_outbound, w->n_outbound + 1, sizeof(*w->outbound)) < 0)
        goto fail;
    struct outbound *o = &w->outbound[w->n_outbound];
    memset(o, 0, sizeof(*o));
    if (strmap_put(w->outbound_ids, id, idlen, (uint32_t)w->n_outbound, &o->id) != 1)
        goto fail;
    w->n_outbound++;
    o->lines = lines;
    o->n_lines = n_lines;
    o->ship_to = ship_to;
    o->service = service;
    o->status = OB_ACCEPTED;
    o->created_at = o->updated_at = sim_now(s);
    o->create_count = 1;
    if (ob_log_append(w, o) < 0)
        o->version = w->ob_version; /* listed late rather than lost; only when out of memory */
    schedule(s, w, o, o->created_at);
    return o;
fail:
    free(lines);
    free(ship_to);
    free(service);
    return NULL;
}

/* The first line the warehouse cannot pick, or -1. */
static int short_line(const struct warehouse *w, const struct outbound *o)
{
    for (uint32_t i = 0; i < o->n_lines; i++)
        if (w->rows[o->lines[i].sku].on_hand < o->lines[i].qty)
            return (int)i;
    return -1;
}

int ob_set_status(struct sim *s, struct warehouse *w, struct outbound *o, int status,
                  const char *reason, int64_t at)
{
    char why[160];
    if (status == OB_PICKING && s->cfg.outbound_stock_check) {
        int bad = short_line(w, o);
        if (bad >= 0) {
            const struct ob_line *l = &o->lines[bad];
            snprintf(why, sizeof(why),
                     "insufficient stock for %s: on hand %" PRId64 ", needed %" PRId64,
                     s->skus[l->sku].code, w->rows[l->sku].on_hand, l->qty);
            status = OB_EXCEPTION;
            reason = why;
        }
    }
    if (status == OB_SHIPPED) {
        if (vlog_reserve(w, o->n_lines) < 0)
            return -1;
        gen_tracking(w->code, (s->cfg.seed << 20) ^ ++w->tracking_seq, o->carrier, o->tracking);
        for (uint32_t i = 0; s->cfg.outbound_consume && i < o->n_lines; i++)
            stock_change(s, w, o->lines[i].sku, -o->lines[i].qty);
    }
    char *r = reason ? strdup(reason) : NULL;
    if (reason && !r)
        return -1;
    free(o->reason);
    o->reason = r;
    o->status = (uint8_t)status;
    o->updated_at = at;
    if (ob_log_append(w, o) < 0)
        return -1;
    schedule(s, w, o, at);
    return 0;
}

void ob_tick(struct sim *s, struct warehouse *w, int64_t now)
{
    if (now < w->ob_next_due)
        return;
    w->ob_next_due = INT64_MAX;
    for (size_t i = 0; i < w->n_outbound; i++) {
        struct outbound *o = &w->outbound[i];
        while (o->next_due <= now) {
            if (ob_set_status(s, w, o, o->status + 1, NULL, o->next_due) < 0)
                break;
        }
        if (o->next_due < w->ob_next_due)
            w->ob_next_due = o->next_due;
    }
}

void ob_tick_all(struct sim *s)
{
    int64_t now = sim_now(s);
    for (size_t i = 0; i < s->n_wh; i++)
        ob_tick(s, &s->wh[i], now);
}
