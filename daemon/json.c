#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_INT_MAX 9007199254740992.0 /* 2^53: doubles are exact up to here */

const char *json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int json_int(const cJSON *obj, const char *key, int64_t min, int64_t max, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    int64_t x;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!isfinite(d) || d != floor(d) || fabs(d) > JSON_INT_MAX)
            return -1;
        x = (int64_t)d;
    } else if (cJSON_IsString(v) && v->valuestring[0]) {
        char *end;
        long long ll = strtoll(v->valuestring, &end, 10);
        if (*end)
            return -1;
        x = ll;
    } else {
        return -1;
    }
    if (x < min || x > max)
        return -1;
    *out = x;
    return 0;
}

static void reserve(struct jbuf *b, size_t more)
{
    if (b->failed || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

void jb_raw(struct jbuf *b, const char *s, size_t n)
{
    reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void jb_lit(struct jbuf *b, const char *s)
{
    jb_raw(b, s, strlen(s));
}

void jb_str(struct jbuf *b, const char *s)
{
    jb_raw(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            jb_raw(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            jb_raw(b, esc, 6);
        } else {
            jb_raw(b, (const char *)p, 1);
        }
    }
    jb_raw(b, "\"", 1);
}

void jb_int(struct jbuf *b, int64_t v)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%" PRId64, v);
    jb_raw(b, buf, (size_t)n);
}

void jb_form(struct jbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            jb_raw(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            jb_raw(b, e, 3);
        }
    }
}

void jb_free(struct jbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

bool json_within_bound(const char *p, size_t len)
{
    /* Every value but the first follows a ',' or ':' or opens after '[' / '{' (outside
     * strings): their count bounds what cJSON would allocate. */
    size_t tokens = 1;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == ',' || ch == ':' || ch == '[' || ch == '{') {
            if (++tokens > JSON_MAX_VALUES)
                return false;
        }
    }
    return true;
}

cJSON *json_parse(const char *p, size_t len)
{
    if (!p || !json_within_bound(p, len))
        return NULL;
    return cJSON_ParseWithLength(p, len);
}
