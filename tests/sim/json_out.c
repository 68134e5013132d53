#include "json_out.h"

#include <stdlib.h>
#include <string.h>

void jb_init(struct jb *j, size_t max_bytes)
{
    memset(j, 0, sizeof(*j));
    j->max = max_bytes;
    j->first[0] = true;
}

void jb_free(struct jb *j)
{
    free(j->buf);
    jb_init(j, j->max);
}

void jb_reset(struct jb *j)
{
    j->len = 0;
    j->depth = 0;
    j->after_key = false;
    j->failed = false;
    j->first[0] = true;
    if (j->buf)
        j->buf[0] = '\0';
}

char *jb_steal(struct jb *j, size_t *len)
{
    char *b = j->buf;
    if (len)
        *len = j->len;
    size_t max = j->max;
    jb_init(j, max);
    return b;
}

bool jb_failed(const struct jb *j)
{
    return j->failed;
}

static bool reserve(struct jb *j, size_t n)
{
    if (j->failed)
        return false;
    if (j->len + n + 1 > j->max) {
        j->failed = true;
        return false;
    }
    if (j->len + n + 1 <= j->cap)
        return true;
    size_t cap = j->cap ? j->cap : 1024;
    while (cap < j->len + n + 1)
        cap *= 2;
    if (cap > j->max)
        cap = j->max;
    char *b = realloc(j->buf, cap);
    if (!b) {
        j->failed = true;
        return false;
    }
    j->buf = b;
    j->cap = cap;
    return true;
}

void jb_append(struct jb *j, const char *s, size_t n)
{
    if (!reserve(j, n))
        return;
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

static void put_char(struct jb *j, char c)
{
    if (!reserve(j, 1))
        return;
    j->buf[j->len++] = c;
    j->buf[j->len] = '\0';
}

void jb_append_i64(struct jb *j, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    jb_append(j, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Emits the comma that separates this value from the previous one, if any. */
static void pre_value(struct jb *j)
{
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (!j->first[j->depth])
        put_char(j, ',');
    j->first[j->depth] = false;
}

static void begin(struct jb *j, char c)
{
    pre_value(j);
    put_char(j, c);
    if (j->depth + 1 >= JB_MAX_DEPTH) {
        j->failed = true;
        return;
    }
    j->first[++j->depth] = true;
}

static void end(struct jb *j, char c)
{
    if (j->depth > 0)
        j->depth--;
    put_char(j, c);
}

void jb_obj(struct jb *j)
{
    begin(j, '{');
}

void jb_obj_end(struct jb *j)
{
    end(j, '}');
}

void jb_arr(struct jb *j)
{
    begin(j, '[');
}

void jb_arr_end(struct jb *j)
{
    end(j, ']');
}

static void put_escaped(struct jb *j, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    put_char(j, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        jb_append(j, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        size_t len = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        }
        jb_append(j, esc, len);
    }
    jb_append(j, s + run, n - run);
    put_char(j, '"');
}

void jb_key(struct jb *j, const char *key)
{
    pre_value(j);
    put_escaped(j, key, strlen(key));
    put_char(j, ':');
    j->after_key = true;
}

void jb_strn(struct jb *j, const char *s, size_t n)
{
    pre_value(j);
    put_escaped(j, s, n);
}

void jb_str(struct jb *j, const char *s)
{
    if (!s) {
        jb_null(j);
        return;
    }
    jb_strn(j, s, strlen(s));
}

void jb_i64(struct jb *j, int64_t v)
{
    pre_value(j);
    jb_append_i64(j, v);
}

void jb_bool(struct jb *j, bool v)
{
    pre_value(j);
    jb_append(j, v ? "true" : "false", v ? 4 : 5);
}

void jb_null(struct jb *j)
{
    pre_value(j);
    jb_append(j, "null", 4);
}

void jb_json(struct jb *j, const char *json, size_t n)
{
    pre_value(j);
    jb_append(j, json, n);
}

void jb_kv_str(struct jb *j, const char *key, const char *s)
{
    jb_key(j, key);
    jb_str(j, s);
}

void jb_kv_i64(struct jb *j, const char *key, int64_t v)
{
    jb_key(j, key);
    jb_i64(j, v);
}

void jb_kv_bool(struct jb *j, const char *key, bool v)
{
    jb_key(j, key);
    jb_bool(j, v);
}

void jb_kv_obj(struct jb *j, const char *key)
{
    jb_key(j, key);
    jb_obj(j);
}

void jb_kv_arr(struct jb *j, const char *key)
{
    jb_key(j, key);
    jb_arr(j);
}
