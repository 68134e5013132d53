#include "params.h"

#include <stdlib.h>
#include <string.h>

void params_init(struct params *p)
{
    memset(p, 0, sizeof(*p));
}

void params_free(struct params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].name);
        free(p->v[i].value);
    }
    free(p->v);
    params_init(p);
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int params_add(struct params *p, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct param *v = realloc(p->v, cap * sizeof(*v));
        if (!v)
            return -1;
        p->v = v;
        p->cap = cap;
    }
    char *n = dup_n(name, nlen);
    char *val = dup_n(value ? value : "", value ? vlen : 0);
    if (!n || !val) {
        free(n);
        free(val);
        return -1;
    }
    p->v[p->n++] = (struct param){n, val};
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..n) into out (at most n bytes); returns the decoded length, or -1. */
static long decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return (long)o;
}

int params_parse_form(struct params *p, const char *s, size_t len)
{
    char *buf = malloc(len + 1);
    if (!buf)
        return -1;
    size_t pos = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        const char *amp = memchr(s + pos, '&', len - pos);
        size_t end = amp ? (size_t)(amp - s) : len;
        const char *pair = s + pos;
        size_t plen = end - pos;
        pos = end + 1;
        if (plen == 0)
            continue;
        const char *eq = memchr(pair, '=', plen);
        size_t nlen = eq ? (size_t)(eq - pair) : plen;
        long dn = decode(pair, nlen, buf);
        if (dn < 0) {
            rc = -1;
            break;
        }
        size_t vstart = (size_t)dn;
        long dv = eq ? decode(eq + 1, plen - nlen - 1, buf + vstart) : 0;
        if (dv < 0) {
            rc = -1;
            break;
        }
        rc = params_add(p, buf, vstart, buf + vstart, (size_t)dv);
    }
    free(buf);
    return rc;
}

const char *params_get(const struct params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, name) == 0)
            return p->v[i].value;
    return NULL;
}

const char *params_duplicate(const struct params *p)
{
    for (size_t i = 0; i < p->n; i++)
        for (size_t k = i + 1; k < p->n; k++)
            if (strcmp(p->v[i].name, p->v[k].name) == 0)
                return p->v[i].name;
    return NULL;
}
