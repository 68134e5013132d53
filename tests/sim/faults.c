#include "faults.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_in.h"
#include "json_out.h"
#include "rng.h"

#define FAULTS_MAX 64
#define LINKS_MAX 64
#define TARGET_MAX 32
#define CALL_MAX 96

struct fault {
    int id;
    char target[TARGET_MAX];
    char call[CALL_MAX];
    double rate;
    int64_t remaining; /* -1 = unlimited */
    uint64_t fired;
    struct fault_action action;
};

struct fault_set {
    pthread_mutex_t lock;
    struct fault v[FAULTS_MAX];
    size_t n;
    int next_id;
    uint64_t rng;
    char down[LINKS_MAX][TARGET_MAX];
    size_t n_down;
};

static const char *const kind_names[] = {"latency",     "status",    "reset",
                                         "stall",       "truncate",  "malformed",
                                         "lost_answer", "api_error", "oversized"};

const char *fault_kind_name(enum fault_kind k)
{
    return kind_names[k];
}

struct fault_set *faults_new(uint64_t seed)
{
    struct fault_set *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->next_id = 1;
    f->rng = rng_stream(seed, 0xFA017);
    return f;
}

void faults_free(struct fault_set *f)
{
    if (!f)
        return;
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* Reads optional integer member key into *out within [lo, hi]; false (with err) if invalid. */
static bool opt_int(const cJSON *spec, const char *key, int64_t lo, int64_t hi, int64_t *out,
                    char *err, size_t errlen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(spec, key);
    if (!it || cJSON_IsNull(it))
        return true;
    int64_t v;
    if (!jin_i64(it, &v) || v < lo || v > hi) {
        snprintf(err, errlen, "\"%s\" must be an integer in [%lld, %lld]", key, (long long)lo,
                 (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_kind(const char *s, enum fault_kind *k)
{
    for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
        if (strcmp(s, kind_names[i]) == 0) {
            *k = (enum fault_kind)i;
            return true;
        }
    }
    return false;
}

/* Whether the kind applies the request's effect unless the spec says otherwise. */
static bool default_apply(enum fault_kind k)
{
    return k == FK_LATENCY || k == FK_STALL || k == FK_TRUNCATE || k == FK_LOST_ANSWER ||
           k == FK_OVERSIZED;
}

static int parse_spec(const cJSON *spec, struct fault *out, char *err, size_t errlen)
{
    if (!cJSON_IsObject(spec)) {
        snprintf(err, errlen, "a fault is a JSON object");
        return -1;
    }
    const char *target = jin_str(spec, "target");
    const char *call = jin_str(spec, "call");
    const char *kind = jin_str(spec, "kind");
    if (!target || !*target || strlen(target) >= TARGET_MAX) {
        snprintf(err, errlen, "\"target\" must be \"mp\", \"wh:CODE\", \"wh:*\" or \"*\"");
        return -1;
    }
    if (call && (!*call || strlen(call) >= CALL_MAX)) {
        snprintf(err, errlen, "\"call\" must be a method or route name, or \"*\"");
        return -1;
    }
    snprintf(out->target, sizeof(out->target), "%s", target);
    snprintf(out->call, sizeof(out->call), "%s", call ? call : "*");

    struct fault_action *a = &out->action;
    a->kind = FK_LATENCY;
    a->retry_after = -1;
    a->truncate_bytes = -1;
    a->pad_bytes = 8 << 20;
    if (kind && !parse_kind(kind, &a->kind)) {
        snprintf(err, errlen, "unknown \"kind\" \"%s\"", kind);
        return -1;
    }
    int64_t status = 0, retry = -1, count = -1;
    if (!opt_int(spec, "latency_ms", 0, 600000, &a->latency_ms, err, errlen) ||
        !opt_int(spec, "status", 400, 599, &status, err, errlen) ||
        !opt_int(spec, "retry_after", 0, 86400, &retry, err, errlen) ||
        !opt_int(spec, "stall_ms", 0, 3600000, &a->stall_ms, err, errlen) ||
        !opt_int(spec, "truncate_bytes", 0, INT32_MAX, &a->truncate_bytes, err, errlen) ||
        !opt_int(spec, "pad_bytes", 0, 256 << 20, &a->pad_bytes, err, errlen) ||
        !opt_int(spec, "count", 1, INT32_MAX, &count, err, errlen))
        return -1;
    if (!kind && a->latency_ms == 0) {
        snprintf(err, errlen, "give a \"kind\", or \"latency_ms\" for a latency-only fault");
        return -1;
    }
    if (a->kind == FK_STATUS && status == 0) {
        snprintf(err, errlen, "kind \"status\" needs \"status\" (e.g. 503)");
        return -1;
    }
    if (a->kind == FK_API_ERROR && strcmp(out->target, "mp") != 0) {
        snprintf(err, errlen, "kind \"api_error\" is the marketplace's: give \"target\": \"mp\"");
        return -1;
    }
    a->status = (int)status;
    a->retry_after = (int)retry;
    out->remaining = count;

    out->rate = 1.0;
    const cJSON *rate = cJSON_GetObjectItemCaseSensitive(spec, "rate");
    if (rate && !cJSON_IsNull(rate)) {
        if (!cJSON_IsNumber(rate) || rate->valuedouble < 0 || rate->valuedouble > 1) {
            snprintf(err, errlen, "\"rate\" must be a number in [0, 1]");
            return -1;
        }
        out->rate = rate->valuedouble;
    }

    a->apply = default_apply(a->kind);
    const cJSON *apply = cJSON_GetObjectItemCaseSensitive(spec, "apply");
    if (apply && !cJSON_IsNull(apply)) {
        if (!cJSON_IsBool(apply)) {
            snprintf(err, errlen, "\"apply\" must be true or false");
            return -1;
        }
        a->apply = cJSON_IsTrue(apply);
    }
    const char *code = jin_str(spec, "code");
    snprintf(a->api_code, sizeof(a->api_code), "%s",
             code                      ? code
             : a->kind == FK_API_ERROR ? "ApiCallLimit"
                                       : "");
    /* The gateway's error type: the live gateway was seen answering ApiCallLimit with type ISV
     * as well as ISP (UPSTREAM.md §1), so a client must classify by code, not by type. */
    const char *type = jin_str(spec, "type");
    if (type && strcmp(type, "ISV") != 0 && strcmp(type, "ISP") != 0) {
        snprintf(err, errlen, "\"type\" must be \"ISV\" or \"ISP\"");
        return -1;
    }
    snprintf(a->api_type, sizeof(a->api_type), "%s", type ? type : "");
    return 0;
}

int faults_add(struct fault_set *f, const cJSON *spec, char *err, size_t errlen)
{
    struct fault nf;
    memset(&nf, 0, sizeof(nf));
    if (parse_spec(spec, &nf, err, errlen) < 0)
        return -1;
    pthread_mutex_lock(&f->lock);
    int id = -1;
    if (f->n < FAULTS_MAX) {
        nf.id = nf.action.id = id = f->next_id++;
        f->v[f->n++] = nf;
    } else {
        snprintf(err, errlen, "at most %d faults may be active", FAULTS_MAX);
    }
    pthread_mutex_unlock(&f->lock);
    return id;
}

void faults_clear(struct fault_set *f)
{
    pthread_mutex_lock(&f->lock);
    f->n = 0;
    pthread_mutex_unlock(&f->lock);
}

int faults_remove(struct fault_set *f, int id)
{
    int rc = -1;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n; i++) {
        if (f->v[i].id == id) {
            memmove(&f->v[i], &f->v[i + 1], (f->n - i - 1) * sizeof(f->v[0]));
            f->n--;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static bool target_matches(const char *pattern, const char *target)
{
    if (strcmp(pattern, "*") == 0)
        return true;
    if (strcmp(pattern, "wh:*") == 0)
        return strncmp(target, "wh:", 3) == 0;
    return strcmp(pattern, target) == 0;
}

void faults_decide(struct fault_set *f, const char *target, const char *call,
                   struct fault_action *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = FK_LATENCY;
    out->retry_after = -1;
    out->truncate_bytes = -1;
    out->apply = true;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n; i++) {
        struct fault *ft = &f->v[i];
        if (ft->remaining == 0 || !target_matches(ft->target, target))
            continue;
        if (strcmp(ft->call, "*") != 0 && strcmp(ft->call, call) != 0)
            continue;
        if (ft->action.kind != FK_LATENCY && out->kind != FK_LATENCY)
            continue; /* a misbehaviour is already chosen; this one would not show */
        if (ft->rate < 1.0 && rng_unit(&f->rng) >= ft->rate)
            continue;
        ft->fired++;
        if (ft->remaining > 0)
            ft->remaining--;
        out->latency_ms += ft->action.latency_ms;
        if (ft->action.kind != FK_LATENCY) {
            int64_t latency = out->latency_ms;
            *out = ft->action;
            out->latency_ms = latency;
        }
    }
    pthread_mutex_unlock(&f->lock);
}

void faults_json(struct fault_set *f, struct jb *j)
{
    pthread_mutex_lock(&f->lock);
    jb_arr(j);
    for (size_t i = 0; i < f->n; i++) {
        const struct fault *ft = &f->v[i];
        const struct fault_action *a = &ft->action;
        jb_obj(j);
        jb_kv_i64(j, "id", ft->id);
        jb_kv_str(j, "target", ft->target);
        jb_kv_str(j, "call", ft->call);
        jb_kv_str(j, "kind", fault_kind_name(a->kind));
        char rate[32];
        int n = snprintf(rate, sizeof(rate), "%.6g", ft->rate);
        jb_key(j, "rate");
        jb_json(j, rate, (size_t)n);
        jb_kv_i64(j, "latency_ms", a->latency_ms);
        if (a->kind == FK_STATUS)
            jb_kv_i64(j, "status", a->status);
        if (a->retry_after >= 0)
            jb_kv_i64(j, "retry_after", a->retry_after);
        if (a->kind == FK_STALL)
            jb_kv_i64(j, "stall_ms", a->stall_ms);
        if (a->kind == FK_TRUNCATE && a->truncate_bytes >= 0)
            jb_kv_i64(j, "truncate_bytes", a->truncate_bytes);
        if (a->kind == FK_API_ERROR)
            jb_kv_str(j, "code", a->api_code);
        if (a->kind == FK_API_ERROR && a->api_type[0])
            jb_kv_str(j, "type", a->api_type);
        if (a->kind == FK_OVERSIZED)
            jb_kv_i64(j, "pad_bytes", a->pad_bytes);
        jb_kv_bool(j, "apply", a->apply);
        if (ft->remaining >= 0)
            jb_kv_i64(j, "remaining", ft->remaining);
        jb_kv_i64(j, "fired", (int64_t)ft->fired);
        jb_obj_end(j);
    }
    jb_arr_end(j);
    pthread_mutex_unlock(&f->lock);
}

void links_set(struct fault_set *f, const char *target, bool up)
{
    pthread_mutex_lock(&f->lock);
    if (up && strcmp(target, "*") == 0)
        f->n_down = 0;
    size_t i;
    for (i = 0; i < f->n_down; i++)
        if (strcmp(f->down[i], target) == 0)
            break;
    if (up && i < f->n_down) {
        memmove(f->down[i], f->down[i + 1], (f->n_down - i - 1) * sizeof(f->down[0]));
        f->n_down--;
    } else if (!up && i == f->n_down && f->n_down < LINKS_MAX) {
        snprintf(f->down[f->n_down++], TARGET_MAX, "%s", target);
    }
    pthread_mutex_unlock(&f->lock);
}

bool links_down(struct fault_set *f, const char *target)
{
    bool down = false;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n_down && !down; i++)
        down = target_matches(f->down[i], target);
    pthread_mutex_unlock(&f->lock);
    return down;
}

void links_json(struct fault_set *f, struct jb *j)
{
    pthread_mutex_lock(&f->lock);
    jb_arr(j);
    for (size_t i = 0; i < f->n_down; i++)
        jb_str(j, f->down[i]);
    jb_arr_end(j);
    pthread_mutex_unlock(&f->lock);
}
