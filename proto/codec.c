#include "codec.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally/protocol.h"

void mp_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void mp_pack_strz(msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    mp_pack_strn(pk, s, strlen(s));
}

void mp_pack_key(msgpack_packer *pk, const char *key)
{
    mp_pack_strn(pk, key, strlen(key));
}

void mp_pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
    mp_pack_key(pk, key);
    mp_pack_strz(pk, val);
}

void mp_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val)
{
    mp_pack_key(pk, key);
    msgpack_pack_int64(pk, val);
}

void mp_pack_kv_bool(msgpack_packer *pk, const char *key, bool val)
{
    mp_pack_key(pk, key);
    if (val)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void mp_pack_kv_nil(msgpack_packer *pk, const char *key)
{
    mp_pack_key(pk, key);
    msgpack_pack_nil(pk);
}

bool mp_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

const msgpack_object *mp_map_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (mp_str_eq(&kv->key, key))
            return &kv->val;
    }
    return NULL;
}

bool mp_text_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        int more;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            more = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            more = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            more = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (int k = 1; k <= more; k++) {
            if (i + (size_t)k >= n || (p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        /* overlong forms, surrogates and values beyond U+10FFFF are invalid UTF-8 */
        if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return false;
        if (cp >= 0x80 && cp <= 0x9f) /* C1 control characters */
            return false;
        i += 1 + (size_t)more;
    }
    return true;
}

bool mp_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > TALLY_MAX_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static int fail(struct mp_params *p, const char *key, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(p->err, sizeof p->err, "%sfield '%s' %s", p->prefix ? p->prefix : "", key, what);
    return TALLY_E_INVALID_PARAMS;
}

/* Field lookup shared by the readers: absent and nil are both "not given". */
static int lookup(struct mp_params *p, const char *key, bool required, bool *present,
                  const msgpack_object **o)
{
    *o = mp_map_get(p->map, key);
    if (*o && (*o)->type == MSGPACK_OBJECT_NIL)
        *o = NULL;
    if (present)
        *present = *o != NULL;
    if (!*o && required)
        return fail(p, key, "is required");
    return 0;
}

int mp_param_str(struct mp_params *p, const char *key, bool required, size_t maxlen, const char **s,
                 size_t *len, bool *present)
{
    const msgpack_object *o;
    int r = lookup(p, key, required, present, &o);
    if (r || !o)
        return r;
    if (o->type != MSGPACK_OBJECT_STR)
        return fail(p, key, "must be a string");
    if (o->via.str.size == 0)
        return fail(p, key, "must not be empty");
    if (o->via.str.size > maxlen)
        return fail(p, key, "is longer than %zu bytes", maxlen);
    if (!mp_text_ok(o->via.str.ptr, o->via.str.size))
        return fail(p, key, "must be UTF-8 text without control characters");
    *s = o->via.str.ptr;
    *len = o->via.str.size;
    return 0;
}

int mp_param_id(struct mp_params *p, const char *key, bool required, const char **s, size_t *len,
                bool *present)
{
    const msgpack_object *o;
    int r = lookup(p, key, required, present, &o);
    if (r || !o)
        return r;
    if (o->type != MSGPACK_OBJECT_STR)
        return fail(p, key, "must be a string");
    if (!mp_id_ok(o->via.str.ptr, o->via.str.size))
        return fail(p, key, "must be 1-%d printable ASCII characters without spaces",
                    TALLY_MAX_ID_LEN);
    *s = o->via.str.ptr;
    *len = o->via.str.size;
    return 0;
}

static bool parse_dec(const char *s, size_t n, int64_t *v)
{
    char buf[32];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    for (size_t i = (buf[0] == '-' || buf[0] == '+'); i < n; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return false;
    if ((buf[0] == '-' || buf[0] == '+') && n == 1)
        return false;
    errno = 0;
    long long x = strtoll(buf, NULL, 10);
    if (errno)
        return false;
    *v = x;
    return true;
}

int mp_param_int(struct mp_params *p, const char *key, bool required, int64_t min, int64_t max,
                 int64_t *v, bool *present)
{
    const msgpack_object *o;
    int r = lookup(p, key, required, present, &o);
    if (r || !o)
        return r;
    int64_t x;
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return fail(p, key, "must be between %lld and %lld", (long long)min, (long long)max);
        x = (int64_t)o->via.u64;
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        x = o->via.i64;
        break;
    case MSGPACK_OBJECT_STR:
        if (!parse_dec(o->via.str.ptr, o->via.str.size, &x))
            return fail(p, key, "must be an integer");
        break;
    default:
        return fail(p, key, "must be an integer");
    }
    if (x < min || x > max)
        return fail(p, key, "must be between %lld and %lld", (long long)min, (long long)max);
    *v = x;
    return 0;
}

int mp_param_bool(struct mp_params *p, const char *key, bool required, bool *v, bool *present)
{
    const msgpack_object *o;
    int r = lookup(p, key, required, present, &o);
    if (r || !o)
        return r;
    if (o->type == MSGPACK_OBJECT_BOOLEAN) {
        *v = o->via.boolean;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= 1) {
        *v = o->via.u64 == 1;
        return 0;
    }
    if (mp_str_eq(o, "true") || mp_str_eq(o, "yes") || mp_str_eq(o, "1")) {
        *v = true;
        return 0;
    }
    if (mp_str_eq(o, "false") || mp_str_eq(o, "no") || mp_str_eq(o, "0")) {
        *v = false;
        return 0;
    }
    return fail(p, key, "must be a boolean");
}

size_t mp_array_begin(msgpack_packer *pk)
{
    msgpack_sbuffer *sb = pk->data;
    size_t off = sb->size;
    msgpack_pack_array(pk, 0x10000); /* any count >= 2^16 selects the array32 form */
    return off;
}

void mp_array_end(msgpack_packer *pk, size_t offset, uint32_t count)
{
    msgpack_sbuffer *sb = pk->data;
    /* The header must still be where mp_array_begin put it: a buffer emptied or cut below it
     * meanwhile (it must not be) leaves the count unwritten, and the dispatcher's frame check
     * then refuses the malformed result instead of this writing past the data. */
    if (offset > sb->size || sb->size - offset < 5 || (unsigned char)sb->data[offset] != 0xdd)
        return;
    unsigned char *h = (unsigned char *)sb->data + offset;
    h[1] = (unsigned char)(count >> 24);
    h[2] = (unsigned char)(count >> 16);
    h[3] = (unsigned char)(count >> 8);
    h[4] = (unsigned char)count;
}
