#include "output.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- a growable byte buffer (an allocation failure is sticky and reported once at the end) */

struct buf {
    char *data;
    size_t len, cap;
    bool oom;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *d = realloc(b->data, ncap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_putc(struct buf *b, char c)
{
    buf_put(b, &c, 1);
}

static void buf_puts(struct buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---- UTF-8 */

/*
 * Decodes one UTF-8 sequence at s[0..n). Returns its length and the code point in *cp, or 0
 * when the bytes there are not valid UTF-8 (overlong forms, surrogates and values beyond
 * U+10FFFF included).
 */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t more;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0) {
        more = 1;
        v = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        more = 2;
        v = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        more = 3;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (more >= n)
        return 0;
    for (size_t k = 1; k <= more; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[k] & 0x3f);
    }
    if ((more == 1 && v < 0x80) || (more == 2 && v < 0x800) || (more == 3 && v < 0x10000) ||
        (v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff)
        return 0;
    *cp = v;
    return more + 1;
}

/* Terminal columns of one code point: 0 for combining marks, 2 for wide East Asian ones. */
static size_t cp_width(uint32_t cp)
{
    if ((cp >= 0x0300 && cp <= 0x036f) || (cp >= 0x200b && cp <= 0x200f) ||
        (cp >= 0xfe00 && cp <= 0xfe0f))
        return 0;
    if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf && cp != 0x303f) ||
        (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
        (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
        (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1faff) ||
        (cp >= 0x20000 && cp <= 0x3fffd))
        return 2;
    return 1;
}

size_t text_width(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(p + i, n - i, &cp);
        if (k == 0) {
            w++;
            i++;
            continue;
        }
        w += cp_width(cp);
        i += k;
    }
    return w;
}

static bool is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

void out_text(FILE *f, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_control((unsigned char)s[i]))
            continue;
        fwrite(s + start, 1, i - start, f);
        fputc('?', f);
        start = i + 1;
    }
    fwrite(s + start, 1, n - start, f);
}

/* ---- JSON */

static void json_str(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    buf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            size_t j = i + 1;
            while (j < n && p[j] >= 0x20 && p[j] < 0x7f && p[j] != '"' && p[j] != '\\')
                j++;
            buf_put(b, s + i, j - i);
            i = j;
            continue;
        }
        switch (c) {
        case '"':
            buf_puts(b, "\\\"");
            i++;
            continue;
        case '\\':
            buf_puts(b, "\\\\");
            i++;
            continue;
        case '\n':
            buf_puts(b, "\\n");
            i++;
            continue;
        case '\r':
            buf_puts(b, "\\r");
            i++;
            continue;
        case '\t':
            buf_puts(b, "\\t");
            i++;
            continue;
        case '\b':
            buf_puts(b, "\\b");
            i++;
            continue;
        case '\f':
            buf_puts(b, "\\f");
            i++;
            continue;
        default:
            break;
        }
        if (c < 0x80) { /* other control characters, and DEL */
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_put(b, esc, sizeof esc);
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = utf8_decode(p + i, n - i, &cp);
        if (k == 0) {
            buf_puts(b, "\\ufffd");
            i++;
        } else if (cp == 0x2028 || cp == 0x2029) {
            /* valid JSON either way; escaped so the text is also a valid JavaScript literal */
            buf_puts(b, cp == 0x2028 ? "\\u2028" : "\\u2029");
            i += k;
        } else {
            buf_put(b, s + i, k);
            i += k;
        }
    }
    buf_putc(b, '"');
}

static void base64(struct buf *b, const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char out[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63],
                       i + 1 < n ? tab[(v >> 6) & 63] : '=', i + 2 < n ? tab[v & 63] : '='};
        buf_put(b, out, sizeof out);
    }
    buf_putc(b, '"');
}

/* The shortest decimal that reads back as the same value (JSON has no NaN or infinity). */
static void json_double(struct buf *b, double v, bool single)
{
    char tmp[40];
    if (!isfinite(v)) {
        buf_puts(b, "null");
        return;
    }
    for (int prec = single ? 6 : 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        double back = strtod(tmp, NULL);
        if (single ? (float)back == (float)v : back == v)
            break;
    }
    buf_puts(b, tmp);
}

static void json_value(struct buf *b, const msgpack_object *o);

static void json_key(struct buf *b, const msgpack_object *k)
{
    if (k->type == MSGPACK_OBJECT_STR) {
        json_str(b, k->via.str.ptr, k->via.str.size);
        return;
    }
    /* JSON keys are strings: use the key's own JSON text (42 -> "42", nil -> "null"). */
    struct buf tmp = {0};
    json_value(&tmp, k);
    if (tmp.oom)
        b->oom = true;
    else
        json_str(b, tmp.data ? tmp.data : "", tmp.len);
    free(tmp.data);
}

static void json_value(struct buf *b, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        buf_puts(b, "null");
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        buf_puts(b, o->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        buf_printf(b, "%" PRIu64, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        buf_printf(b, "%" PRId64, o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        json_double(b, o->via.f64, o->type == MSGPACK_OBJECT_FLOAT32);
        break;
    case MSGPACK_OBJECT_STR:
        json_str(b, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        base64(b, (const unsigned char *)o->via.bin.ptr, o->via.bin.size);
        break;
    case MSGPACK_OBJECT_EXT:
        buf_printf(b, "{\"ext_type\":%d,\"data\":", (int)o->via.ext.type);
        base64(b, (const unsigned char *)o->via.ext.ptr, o->via.ext.size);
        buf_putc(b, '}');
        break;
    case MSGPACK_OBJECT_ARRAY:
        buf_putc(b, '[');
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                buf_putc(b, ',');
            json_value(b, &o->via.array.ptr[i]);
        }
        buf_putc(b, ']');
        break;
    case MSGPACK_OBJECT_MAP:
        buf_putc(b, '{');
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i)
                buf_putc(b, ',');
            json_key(b, &o->via.map.ptr[i].key);
            buf_putc(b, ':');
            json_value(b, &o->via.map.ptr[i].val);
        }
        buf_putc(b, '}');
        break;
    default:
        buf_puts(b, "null");
        break;
    }
}

char *json_from_object(const msgpack_object *o, size_t *len)
{
    struct buf b = {0};
    json_value(&b, o);
    if (b.oom) {
        free(b.data);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.data;
}

int json_write(FILE *f, const msgpack_object *o)
{
    size_t n;
    char *s = json_from_object(o, &n);
    if (!s)
        return -1;
    size_t w = fwrite(s, 1, n, f);
    free(s);
    return w == n ? 0 : -1;
}

void json_write_str(FILE *f, const char *s, size_t n)
{
    struct buf b = {0};
    json_str(&b, s, n);
    if (!b.oom && b.data)
        fwrite(b.data, 1, b.len, f);
    else
        fputs("\"\"", f);
    free(b.data);
}

/* ---- tables */

#define TABLE_GAP 2

struct table {
    struct table_col *cols;
    size_t ncols;
    size_t *width;
    char **cells; /* rows * ncols, row-major; each malloc'd */
    size_t ncells, cap;
    bool header_done;
    bool oom;
};

struct table *table_new(const struct table_col *cols, size_t ncols)
{
    struct table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cols = malloc(ncols * sizeof *t->cols);
    t->width = calloc(ncols, sizeof *t->width);
    if (!t->cols || !t->width) {
        table_free(t);
        return NULL;
    }
    memcpy(t->cols, cols, ncols * sizeof *cols);
    t->ncols = ncols;
    for (size_t i = 0; i < ncols; i++)
        t->width[i] = text_width(cols[i].title, strlen(cols[i].title));
    return t;
}

static void table_clear(struct table *t)
{
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i]);
    t->ncells = 0;
}

void table_free(struct table *t)
{
    if (!t)
        return;
    table_clear(t);
    free(t->cells);
    free(t->cols);
    free(t->width);
    free(t);
}

void table_cell(struct table *t, const char *s)
{
    if (t->oom)
        return;
    if (t->ncells == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        char **n = realloc(t->cells, ncap * sizeof *n);
        if (!n) {
            t->oom = true;
            return;
        }
        t->cells = n;
        t->cap = ncap;
    }
    size_t len = strlen(s ? s : "-");
    char *copy = malloc(len + 1);
    if (!copy) {
        t->oom = true;
        return;
    }
    memcpy(copy, s ? s : "-", len + 1);
    for (size_t i = 0; i < len; i++)
        if (is_control((unsigned char)copy[i]))
            copy[i] = '?';
    t->cells[t->ncells++] = copy;
}

void table_cellf(struct table *t, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    table_cell(t, tmp);
}

static void pad(FILE *f, size_t n)
{
    while (n--)
        fputc(' ', f);
}

/* Padding is written only before text, so a row never ends in spaces. */
static void print_row(struct table *t, FILE *f, const char *const *cells)
{
    size_t spaces = 0;
    for (size_t c = 0; c < t->ncols; c++) {
        const char *s = cells[c];
        size_t w = text_width(s, strlen(s));
        size_t fill = t->width[c] > w ? t->width[c] - w : 0;
        if (c)
            spaces += TABLE_GAP;
        if (t->cols[c].align == TABLE_RIGHT)
            spaces += fill;
        if (*s) {
            pad(f, spaces);
            fputs(s, f);
            spaces = 0;
        }
        if (t->cols[c].align == TABLE_LEFT)
            spaces += fill;
    }
    fputc('\n', f);
}

int table_flush(struct table *t, FILE *f)
{
    if (t->oom) {
        table_clear(t);
        return -1;
    }
    while (t->ncells % t->ncols)
        table_cell(t, "");
    size_t nrows = t->ncells / t->ncols;
    for (size_t i = 0; i < t->ncells; i++) {
        size_t w = text_width(t->cells[i], strlen(t->cells[i]));
        if (w > t->width[i % t->ncols])
            t->width[i % t->ncols] = w;
    }
    if (!t->header_done) {
        const char **titles = malloc(t->ncols * sizeof *titles);
        if (!titles) {
            table_clear(t);
            return -1;
        }
        for (size_t c = 0; c < t->ncols; c++)
            titles[c] = t->cols[c].title;
        print_row(t, f, titles);
        free(titles);
        t->header_done = true;
    }
    for (size_t r = 0; r < nrows; r++)
        print_row(t, f, (const char *const *)&t->cells[r * t->ncols]);
    table_clear(t);
    return 0;
}

/* ---- money, times, durations */

/* ISO 4217 minor-unit exponents other than 2. */
static int currency_decimals(const char *cur, size_t n)
{
    static const char zero[][4] = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
                                   "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"};
    static const char three[][4] = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"};
    if (n != 3)
        return 2;
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (memcmp(cur, zero[i], 3) == 0)
            return 0;
    for (size_t i = 0; i < sizeof three / sizeof three[0]; i++)
        if (memcmp(cur, three[i], 3) == 0)
            return 3;
    return 2;
}

void fmt_amount(char *buf, size_t cap, int64_t minor, const char *currency, size_t currency_len)
{
    int dec = currency ? currency_decimals(currency, currency_len) : 2;
    uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    uint64_t scale = dec == 0 ? 1 : dec == 3 ? 1000 : 100;
    if (dec == 0)
        snprintf(buf, cap, "%s%" PRIu64, minor < 0 ? "-" : "", mag);
    else
        snprintf(buf, cap, "%s%" PRIu64 ".%0*" PRIu64, minor < 0 ? "-" : "", mag / scale, dec,
                 mag % scale);
}

void fmt_money(char *buf, size_t cap, int64_t minor, const char *currency, size_t currency_len)
{
    fmt_amount(buf, cap, minor, currency, currency_len);
    size_t n = strlen(buf);
    if (currency && currency_len && n + 1 < cap)
        snprintf(buf + n, cap - n, " %.*s", (int)currency_len, currency);
}

void fmt_time(char *buf, size_t cap, int64_t epoch_s, bool short_form)
{
    time_t t = (time_t)epoch_s;
    struct tm tm;
    if (!localtime_r(&t, &tm) ||
        strftime(buf, cap, short_form ? "%m-%d %H:%M" : "%Y-%m-%d %H:%M", &tm) == 0)
        snprintf(buf, cap, "%" PRId64, epoch_s);
}

void fmt_duration(char *buf, size_t cap, int64_t s)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(buf, cap, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(buf, cap, "%" PRId64 "m %02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%" PRId64 "h %02" PRId64 "m", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, cap, "%" PRId64 "d %02" PRId64 "h", s / 86400, s % 86400 / 3600);
}

/* The coarse form fmt_deadline uses: "42s", "40m", "23h", "2d 3h". */
static void fmt_coarse(char *buf, size_t cap, int64_t s)
{
    if (s < 60)
        snprintf(buf, cap, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(buf, cap, "%" PRId64 "m", s / 60);
    else if (s < 2 * 86400)
        snprintf(buf, cap, "%" PRId64 "h", s / 3600);
    else if (s % 86400 / 3600)
        snprintf(buf, cap, "%" PRId64 "d %" PRId64 "h", s / 86400, s % 86400 / 3600);
    else
        snprintf(buf, cap, "%" PRId64 "d", s / 86400);
}

void fmt_deadline(char *buf, size_t cap, int64_t deadline, int64_t now)
{
    char d[32];
    if (deadline >= now) {
        fmt_coarse(d, sizeof d, deadline - now);
        snprintf(buf, cap, "in %s", d);
    } else {
        fmt_coarse(d, sizeof d, now - deadline);
        snprintf(buf, cap, "OVERDUE %s", d);
    }
}

/* ---- CSV */

void csv_write_cell(FILE *f, const char *s, size_t n)
{
    bool quote = n > 0 && (s[0] == ' ' || s[n - 1] == ' ');
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (quote)
        fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            fputs("\"\"", f);
        else if (is_control(c) && c != '\n' && c != '\r')
            fputc('?', f);
        else
            fputc(c, f);
    }
    if (quote)
        fputc('"', f);
}
