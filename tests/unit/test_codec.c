/*
 * proto/codec.c and proto/errors.c: text and id validation, the typed params readers (with the
 * messages a client sees), the error-code table, and the deferred-count array helpers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "check.h"
#include "codec.h"
#include "tally/protocol.h"

#define TEXT_OK(lit) CHECK(mp_text_ok(lit, sizeof(lit) - 1))
#define TEXT_BAD(lit) CHECK(!mp_text_ok(lit, sizeof(lit) - 1))

static void test_text(void)
{
    TEXT_OK("");
    TEXT_OK("plain ASCII, with punctuation: ~!@#$%^&*()_+{}|");
    TEXT_OK("\xc3\xa9");         /* U+00E9, 2 bytes */
    TEXT_OK("\xc2\xa0");         /* U+00A0, first 2-byte non-control */
    TEXT_OK("\xdf\xbf");         /* U+07FF, last 2-byte */
    TEXT_OK("\xe0\xa0\x80");     /* U+0800, first 3-byte */
    TEXT_OK("\xe2\x82\xac");     /* U+20AC euro sign */
    TEXT_OK("\xed\x9f\xbf");     /* U+D7FF, just below the surrogates */
    TEXT_OK("\xee\x80\x80");     /* U+E000, just above */
    TEXT_OK("\xef\xbf\xbd");     /* U+FFFD */
    TEXT_OK("\xf0\x90\x80\x80"); /* U+10000, first 4-byte */
    TEXT_OK("\xf0\x9f\x93\xa6"); /* U+1F4E6 package */
    TEXT_OK("\xf4\x8f\xbf\xbf"); /* U+10FFFF, the last code point */
    TEXT_OK("Caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x93\xa6"); /* mixed */

    /* overlong forms */
    TEXT_BAD("\xc0\x80");
    TEXT_BAD("\xc0\xaf");
    TEXT_BAD("\xc1\xbf");
    TEXT_BAD("\xe0\x80\x80");
    TEXT_BAD("\xe0\x9f\xbf");
    TEXT_BAD("\xf0\x80\x80\x80");
    TEXT_BAD("\xf0\x8f\xbf\xbf");
    /* UTF-16 surrogates */
    TEXT_BAD("\xed\xa0\x80");
    TEXT_BAD("\xed\xbf\xbf");
    TEXT_BAD("\xed\xa0\xbd\xed\xb2\xa9"); /* a CESU-8 pair */
    /* beyond U+10FFFF, and bytes that never start a sequence */
    TEXT_BAD("\xf4\x90\x80\x80");
    TEXT_BAD("\xf5\x80\x80\x80");
    TEXT_BAD("\xf7\xbf\xbf\xbf");
    TEXT_BAD("\xf8\x88\x80\x80\x80");
    TEXT_BAD("\xfc\x84\x80\x80\x80\x80");
    TEXT_BAD("\xfe");
    TEXT_BAD("\xff");
    /* continuation bytes without a lead, and bad continuations */
    TEXT_BAD("\x80");
    TEXT_BAD("\xbf");
    TEXT_BAD("a\x80z");
    TEXT_BAD("\xc3\x28");
    TEXT_BAD("\xe2\x28\xa1");
    TEXT_BAD("\xe2\x82\x28");
    TEXT_BAD("\xf0\x28\x8c\xbc");
    /* truncated sequences, alone and at the end */
    TEXT_BAD("\xc3");
    TEXT_BAD("\xe2\x82");
    TEXT_BAD("\xf0\x9f\x93");
    TEXT_BAD("abc\xe2\x82");
    TEXT_BAD("abc\xf0");
    /* The length bounds the check: a valid sequence cut by n is truncated. */
    CHECK(!mp_text_ok("\xe2\x82\xac", 2));
    CHECK(mp_text_ok("ab\xe2\x82\xac", 2));
    /* control characters */
    TEXT_BAD("\x01");
    TEXT_BAD("a\nb");
    TEXT_BAD("a\tb");
    TEXT_BAD("a\rb");
    TEXT_BAD("\x1b[31m");
    TEXT_BAD("\x7f");
    CHECK(!mp_text_ok("a\0b", 3));
    /* C1 controls (U+0080..U+009F) are control characters too; U+009B is a terminal CSI. */
    TEXT_BAD("\xc2\x80");
    TEXT_BAD("\xc2\x85");
    TEXT_BAD("\xc2\x9b[2J");
    TEXT_BAD("\xc2\x9f");
}

static void test_id(void)
{
    char id64[65], id65[66];
    memset(id64, 'x', 64);
    id64[64] = 0;
    memset(id65, 'x', 65);
    id65[65] = 0;
    CHECK(mp_id_ok("S1", 2));
    CHECK(mp_id_ok("ES-MAD_01/a.b:c#d", 17));
    CHECK(mp_id_ok("!", 1));
    CHECK(mp_id_ok("~", 1));
    CHECK(mp_id_ok(id64, 64));
    CHECK(!mp_id_ok(id65, 65));
    CHECK(!mp_id_ok("", 0));
    CHECK(!mp_id_ok("a b", 3));
    CHECK(!mp_id_ok(" a", 2));
    CHECK(!mp_id_ok("a\t", 2));
    CHECK(!mp_id_ok("a\x7f", 2));
    CHECK(!mp_id_ok("\xc3\xa9", 2));
    CHECK(!mp_id_ok("a\0b", 3));
}

/* A params map built by the test; parsed into `u`. */
struct params {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
};

static void pm_begin(struct params *p, size_t n)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
    msgpack_unpacked_init(&p->u);
    msgpack_pack_map(&p->pk, n);
}

static const msgpack_object *pm_end(struct params *p)
{
    size_t off = 0;
    int r = msgpack_unpack_next(&p->u, p->sb.data, p->sb.size, &off);
    CHECK_EQ_INT(r, MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT(off, p->sb.size);
    return &p->u.data;
}

static void pm_free(struct params *p)
{
    msgpack_unpacked_destroy(&p->u);
    msgpack_sbuffer_destroy(&p->sb);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void test_param_int(void)
{
    struct params pm;
    pm_begin(&pm, 22);
    msgpack_packer *pk = &pm.pk;
    mp_pack_kv_int(pk, "i", 12);
    mp_pack_kv_int(pk, "neg", -3);
    mp_pack_kv_str(pk, "s12", "12");
    mp_pack_kv_str(pk, "sneg", "-3");
    mp_pack_kv_str(pk, "splus", "+7");
    mp_pack_kv_str(pk, "s12a", "12a");
    mp_pack_key(pk, "sempty");
    mp_pack_strn(pk, "", 0);
    mp_pack_kv_str(pk, "sign", "+");
    mp_pack_kv_str(pk, "minus", "-");
    mp_pack_kv_str(pk, "sover", "99999999999999999999");
    mp_pack_kv_str(pk, "sspace", " 12");
    mp_pack_kv_str(pk, "sfloat", "1.5");
    mp_pack_kv_nil(pk, "nil");
    mp_pack_key(pk, "u64max");
    msgpack_pack_uint64(pk, UINT64_MAX);
    mp_pack_key(pk, "i64min");
    msgpack_pack_int64(pk, INT64_MIN);
    mp_pack_key(pk, "i64max");
    msgpack_pack_uint64(pk, (uint64_t)INT64_MAX);
    mp_pack_key(pk, "dbl");
    msgpack_pack_double(pk, 12.0);
    mp_pack_kv_bool(pk, "bool", true);
    mp_pack_kv_str(pk, "smax", "9223372036854775807");
    mp_pack_kv_str(pk, "smin", "-9223372036854775808");
    mp_pack_key(pk, "arr");
    msgpack_pack_array(pk, 0);
    mp_pack_kv_str(pk, "sdoubleneg", "--3");
    struct mp_params p = {.map = pm_end(&pm), .prefix = "row 3: "};
    int64_t v;
    bool present;

    v = 0;
    CHECK_EQ_INT(mp_param_int(&p, "i", true, 0, 100, &v, &present), 0);
    CHECK_EQ_INT(v, 12);
    CHECK(present);
    CHECK_EQ_INT(mp_param_int(&p, "neg", true, -10, 10, &v, NULL), 0);
    CHECK_EQ_INT(v, -3);
    CHECK_EQ_INT(mp_param_int(&p, "s12", true, 0, 100, &v, NULL), 0);
    CHECK_EQ_INT(v, 12);
    CHECK_EQ_INT(mp_param_int(&p, "sneg", true, -10, 10, &v, NULL), 0);
    CHECK_EQ_INT(v, -3);
    CHECK_EQ_INT(mp_param_int(&p, "splus", true, -10, 10, &v, NULL), 0);
    CHECK_EQ_INT(v, 7);
    CHECK_EQ_INT(mp_param_int(&p, "i64min", true, INT64_MIN, INT64_MAX, &v, NULL), 0);
    CHECK(v == INT64_MIN);
    CHECK_EQ_INT(mp_param_int(&p, "i64max", true, INT64_MIN, INT64_MAX, &v, NULL), 0);
    CHECK(v == INT64_MAX);
    CHECK_EQ_INT(mp_param_int(&p, "smax", true, INT64_MIN, INT64_MAX, &v, NULL), 0);
    CHECK(v == INT64_MAX);
    CHECK_EQ_INT(mp_param_int(&p, "smin", true, INT64_MIN, INT64_MAX, &v, NULL), 0);
    CHECK(v == INT64_MIN);

    /* Wrong forms: error naming the field, with the prefix, and the output untouched. */
    const char *bad[] = {"s12a",   "sempty", "sign", "minus", "sover",     "sspace",
                         "sfloat", "dbl",    "bool", "arr",   "sdoubleneg"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        v = 777;
        p.err[0] = 0;
        int r = mp_param_int(&p, bad[k], true, INT64_MIN, INT64_MAX, &v, NULL);
        if (r != TALLY_E_INVALID_PARAMS)
            fprintf(stderr, "mp_param_int(%s) accepted -> %lld\n", bad[k], (long long)v);
        CHECK_EQ_INT(r, TALLY_E_INVALID_PARAMS);
        CHECK_EQ_INT(v, 777);
        char want[64];
        snprintf(want, sizeof want, "row 3: field '%s' ", bad[k]);
        CHECK(starts_with(p.err, want));
    }
    CHECK(strstr(p.err, "integer") != NULL);

    /* Out of range: the message says the range. */
    v = 777;
    CHECK_EQ_INT(mp_param_int(&p, "i", true, 13, 20, &v, NULL), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_INT(v, 777);
    CHECK_EQ_STR(p.err, "row 3: field 'i' must be between 13 and 20");
    CHECK_EQ_INT(mp_param_int(&p, "s12", true, 0, 11, &v, NULL), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_INT(mp_param_int(&p, "neg", true, 0, 11, &v, NULL), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_INT(mp_param_int(&p, "sneg", true, -2, 11, &v, NULL), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_INT(mp_param_int(&p, "u64max", true, 0, INT64_MAX, &v, NULL), TALLY_E_INVALID_PARAMS);
    CHECK(starts_with(p.err, "row 3: field 'u64max' "));
    CHECK_EQ_INT(v, 777);
    /* Bounds are inclusive. */
    CHECK_EQ_INT(mp_param_int(&p, "i", true, 12, 12, &v, NULL), 0);

    /* Required / optional / nil. */
    v = 777;
    present = true;
    CHECK_EQ_INT(mp_param_int(&p, "absent", false, 0, 10, &v, &present), 0);
    CHECK(!present);
    CHECK_EQ_INT(v, 777);
    present = true;
    CHECK_EQ_INT(mp_param_int(&p, "nil", false, 0, 10, &v, &present), 0);
    CHECK(!present);
    CHECK_EQ_INT(v, 777);
    CHECK_EQ_INT(mp_param_int(&p, "absent", true, 0, 10, &v, &present), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_STR(p.err, "row 3: field 'absent' is required");
    CHECK_EQ_INT(mp_param_int(&p, "nil", true, 0, 10, &v, NULL), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_STR(p.err, "row 3: field 'nil' is required");

    /* No prefix, and no params at all. */
    struct mp_params q = {.map = &pm.u.data};
    CHECK_EQ_INT(mp_param_int(&q, "absent", true, 0, 1, &v, NULL), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_STR(q.err, "field 'absent' is required");
    struct mp_params none = {.map = NULL};
    present = true;
    CHECK_EQ_INT(mp_param_int(&none, "i", false, 0, 1, &v, &present), 0);
    CHECK(!present);
    CHECK_EQ_INT(mp_param_int(&none, "i", true, 0, 1, &v, NULL), TALLY_E_INVALID_PARAMS);
    /* A params object that is not a map behaves as "no params". */
    struct mp_params notmap = {.map = &pm.u.data.via.map.ptr[0].val};
    CHECK_EQ_INT(mp_param_int(&notmap, "i", true, 0, 100, &v, NULL), TALLY_E_INVALID_PARAMS);
    pm_free(&pm);
}

static void test_param_str_id(void)
{
    struct params pm;
    pm_begin(&pm, 12);
    msgpack_packer *pk = &pm.pk;
    mp_pack_kv_str(pk, "s", "hello");
    mp_pack_kv_str(pk, "utf", "Caf\xc3\xa9");
    mp_pack_key(pk, "empty");
    mp_pack_strn(pk, "", 0);
    mp_pack_kv_str(pk, "ctl", "a\nb");
    mp_pack_kv_str(pk, "badutf", "\xc0\x80");
    mp_pack_kv_int(pk, "int", 5);
    mp_pack_kv_nil(pk, "nil");
    mp_pack_kv_str(pk, "id", "ES-MAD");
    mp_pack_kv_str(pk, "idspace", "ES MAD");
    char long65[66];
    memset(long65, 'L', 65);
    long65[65] = 0;
    mp_pack_kv_str(pk, "id65", long65);
    mp_pack_key(pk, "bin");
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "ab", 2);
    mp_pack_kv_str(pk, "idutf", "caf\xc3\xa9");
    struct mp_params p = {.map = pm_end(&pm), .prefix = "row 7: "};
    const char *s = "untouched";
    size_t n = 99;
    bool present = false;

    CHECK_EQ_INT(mp_param_str(&p, "s", true, 10, &s, &n, &present), 0);
    CHECK(present);
    CHECK_EQ_INT(n, 5);
    CHECK(memcmp(s, "hello", 5) == 0);
    CHECK_EQ_INT(mp_param_str(&p, "utf", true, 5, &s, &n, NULL), 0);
    CHECK_EQ_INT(n, 5);
    /* maxlen counts bytes, inclusive. */
    CHECK_EQ_INT(mp_param_str(&p, "utf", true, 4, &s, &n, NULL), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_STR(p.err, "row 7: field 'utf' is longer than 4 bytes");
    CHECK_EQ_INT(mp_param_str(&p, "s", true, 5, &s, &n, NULL), 0);

    struct {
        const char *key;
        const char *msg;
    } bad[] = {
        {"empty", "row 7: field 'empty' must not be empty"},
        {"ctl", "row 7: field 'ctl' must be UTF-8 text without control characters"},
        {"badutf", "row 7: field 'badutf' must be UTF-8 text without control characters"},
        {"int", "row 7: field 'int' must be a string"},
        {"bin", "row 7: field 'bin' must be a string"},
        {"missing", "row 7: field 'missing' is required"},
        {"nil", "row 7: field 'nil' is required"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        s = "untouched";
        n = 99;
        CHECK_EQ_INT(mp_param_str(&p, bad[k].key, true, 100, &s, &n, NULL), TALLY_E_INVALID_PARAMS);
        CHECK_EQ_STR(p.err, bad[k].msg);
        CHECK_EQ_STR(s, "untouched");
        CHECK_EQ_INT(n, 99);
    }
    /* Optional: absent and nil are fine, a present bad value is still an error. */
    present = true;
    CHECK_EQ_INT(mp_param_str(&p, "missing", false, 100, &s, &n, &present), 0);
    CHECK(!present);
    present = true;
    CHECK_EQ_INT(mp_param_str(&p, "nil", false, 100, &s, &n, &present), 0);
    CHECK(!present);
    CHECK_EQ_STR(s, "untouched");
    CHECK_EQ_INT(mp_param_str(&p, "int", false, 100, &s, &n, &present), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_INT(mp_param_str(&p, "empty", false, 100, &s, &n, &present), TALLY_E_INVALID_PARAMS);

    /* Ids. */
    CHECK_EQ_INT(mp_param_id(&p, "id", true, &s, &n, &present), 0);
    CHECK(present);
    CHECK_EQ_INT(n, 6);
    CHECK(memcmp(s, "ES-MAD", 6) == 0);
    const char *bad_ids[] = {"idspace", "id65", "empty", "idutf", "int"};
    for (size_t k = 0; k < sizeof bad_ids / sizeof bad_ids[0]; k++) {
        s = "untouched";
        CHECK_EQ_INT(mp_param_id(&p, bad_ids[k], true, &s, &n, NULL), TALLY_E_INVALID_PARAMS);
        char want[64];
        snprintf(want, sizeof want, "row 7: field '%s' ", bad_ids[k]);
        CHECK(starts_with(p.err, want));
        CHECK_EQ_STR(s, "untouched");
    }
    CHECK(strstr(p.err, "string") != NULL); /* "int" says it must be a string */
    CHECK_EQ_INT(mp_param_id(&p, "idspace", true, &s, &n, NULL), TALLY_E_INVALID_PARAMS);
    CHECK(strstr(p.err, "printable ASCII") != NULL);
    CHECK_EQ_INT(mp_param_id(&p, "missing", true, &s, &n, NULL), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_STR(p.err, "row 7: field 'missing' is required");
    present = true;
    CHECK_EQ_INT(mp_param_id(&p, "nil", false, &s, &n, &present), 0);
    CHECK(!present);
    pm_free(&pm);
}

static void test_param_bool(void)
{
    struct params pm;
    pm_begin(&pm, 16);
    msgpack_packer *pk = &pm.pk;
    mp_pack_kv_bool(pk, "t", true);
    mp_pack_kv_bool(pk, "f", false);
    mp_pack_kv_int(pk, "one", 1);
    mp_pack_kv_int(pk, "zero", 0);
    mp_pack_kv_str(pk, "strue", "true");
    mp_pack_kv_str(pk, "sfalse", "false");
    mp_pack_kv_str(pk, "syes", "yes");
    mp_pack_kv_str(pk, "sno", "no");
    mp_pack_kv_str(pk, "s1", "1");
    mp_pack_kv_str(pk, "s0", "0");
    mp_pack_kv_int(pk, "two", 2);
    mp_pack_kv_int(pk, "minus", -1);
    mp_pack_kv_str(pk, "maybe", "maybe");
    mp_pack_key(pk, "sempty");
    mp_pack_strn(pk, "", 0);
    mp_pack_kv_nil(pk, "nil");
    mp_pack_kv_str(pk, "strueish", "truex");
    struct mp_params p = {.map = pm_end(&pm), .prefix = "row 2: "};
    struct {
        const char *key;
        bool want;
    } good[] = {{"t", true},       {"f", false},   {"one", true},  {"zero", false}, {"strue", true},
                {"sfalse", false}, {"syes", true}, {"sno", false}, {"s1", true},    {"s0", false}};
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        bool v = !good[k].want, present = false;
        CHECK_EQ_INT(mp_param_bool(&p, good[k].key, true, &v, &present), 0);
        CHECK_EQ_INT(v, good[k].want);
        CHECK(present);
    }
    const char *bad[] = {"two", "minus", "maybe", "sempty", "strueish"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        bool v = true;
        CHECK_EQ_INT(mp_param_bool(&p, bad[k], true, &v, NULL), TALLY_E_INVALID_PARAMS);
        CHECK(v);
        char want[80];
        snprintf(want, sizeof want, "row 2: field '%s' must be a boolean", bad[k]);
        CHECK_EQ_STR(p.err, want);
    }
    bool v = true, present = true;
    CHECK_EQ_INT(mp_param_bool(&p, "nil", false, &v, &present), 0);
    CHECK(v);
    CHECK(!present);
    CHECK_EQ_INT(mp_param_bool(&p, "nil", true, &v, &present), TALLY_E_INVALID_PARAMS);
    CHECK_EQ_STR(p.err, "row 2: field 'nil' is required");
    pm_free(&pm);
}

/* Every code of protocol.h, and the wire names PROTOCOL.md §3 promises. */
static void test_errors(void)
{
    static const struct {
        int err;
        const char *code;
    } table[] = {
        {TALLY_OK, NULL},
        {TALLY_E_INTERNAL, "internal"},
        {TALLY_E_BAD_REQUEST, "bad_request"},
        {TALLY_E_UNKNOWN_METHOD, "unknown_method"},
        {TALLY_E_INVALID_PARAMS, "invalid_params"},
        {TALLY_E_NOT_FOUND, "not_found"},
        {TALLY_E_FORBIDDEN, "forbidden"},
        {TALLY_E_CONFLICT, "conflict"},
        {TALLY_E_INSUFFICIENT, "insufficient_stock"},
        {TALLY_E_TOO_LARGE, "too_large"},
        {TALLY_E_MALFORMED, "malformed"},
        {TALLY_E_TOO_DEEP, "too_deep"},
        {TALLY_E_OVERLOADED, "overloaded"},
        {TALLY_E_STORAGE, "storage"},
        {TALLY_E_DISK_FULL, "disk_full"},
        {TALLY_E_HELLO_REQUIRED, NULL},
        {TALLY_E_VERSION, "version_mismatch"},
        {TALLY_E_SHUTTING_DOWN, "shutting_down"},
        {TALLY_E_IO, NULL},
        {TALLY_E_TIMEOUT, NULL},
        {TALLY_E_NOT_RUNNING, NULL},
        {TALLY_E_NOMEM, "no_memory"},
    };
    size_t n = sizeof table / sizeof table[0];
    CHECK_EQ_INT(n, 1 - TALLY_E_NOMEM); /* the table covers 0 .. the last code */
    for (size_t i = 0; i < n; i++) {
        int e = table[i].err;
        CHECK_EQ_INT(e, -(int)i);
        const char *code = tally_strerror_code(e);
        CHECK(code != NULL && code[0] != 0);
        if (table[i].code)
            CHECK_EQ_STR(code, table[i].code);
        if (e != TALLY_E_INTERNAL)
            CHECK(strcmp(code, "internal") != 0); /* every code has a name of its own */
        CHECK_EQ_INT(tally_error_from_code(code, (unsigned)strlen(code)), e);
        const char *text = tally_strerror(e);
        CHECK(text != NULL && text[0] != 0 && strcmp(text, "unknown error") != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(code, tally_strerror_code(table[j].err)) != 0);
    }
    CHECK_EQ_STR(tally_strerror_code(-999), "internal");
    CHECK_EQ_STR(tally_strerror_code(5), "internal");
    CHECK_EQ_STR(tally_strerror(-999), "unknown error");
    CHECK_EQ_INT(tally_error_from_code("nope", 4), TALLY_E_INTERNAL);
    CHECK_EQ_INT(tally_error_from_code("", 0), TALLY_E_INTERNAL);
    /* Lengths are honoured: a prefix or a longer buffer is not a match. */
    CHECK_EQ_INT(tally_error_from_code("not_found_x", 9), TALLY_E_NOT_FOUND);
    CHECK_EQ_INT(tally_error_from_code("not_foun", 8), TALLY_E_INTERNAL);
    CHECK_EQ_INT(tally_error_from_code("conflicts", 9), TALLY_E_INTERNAL);
}

static void test_pack_helpers(void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    /* A deferred-count array, a second one after it, and an empty one. */
    msgpack_pack_array(&pk, 3);
    size_t a = mp_array_begin(&pk);
    for (int i = 0; i < 5; i++)
        msgpack_pack_int(&pk, i * 10);
    mp_array_end(&pk, a, 5);
    size_t b = mp_array_begin(&pk);
    mp_array_end(&pk, b, 0);
    size_t c = mp_array_begin(&pk);
    for (int i = 0; i < 70000; i++)
        msgpack_pack_nil(&pk);
    mp_array_end(&pk, c, 70000);
    CHECK_EQ_INT(a, 1);
    CHECK_EQ_INT(b, 1 + 5 + 5);

    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK_EQ_INT(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT(off, sb.size);
    const msgpack_object *o = &u.data;
    CHECK(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3);
    if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3) {
        const msgpack_object *x = &o->via.array.ptr[0];
        CHECK(x->type == MSGPACK_OBJECT_ARRAY);
        CHECK_EQ_INT(x->via.array.size, 5);
        for (uint32_t i = 0; i < x->via.array.size; i++)
            CHECK_EQ_INT(x->via.array.ptr[i].via.i64, 10 * (int)i);
        CHECK(o->via.array.ptr[1].type == MSGPACK_OBJECT_ARRAY);
        CHECK_EQ_INT(o->via.array.ptr[1].via.array.size, 0);
        CHECK_EQ_INT(o->via.array.ptr[2].via.array.size, 70000);
    }
    msgpack_unpacked_destroy(&u);

    /* kv helpers, strz(NULL) -> nil, map lookup and string compare. */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 5);
    mp_pack_kv_str(&pk, "s", "v");
    mp_pack_kv_str(&pk, "null", NULL);
    mp_pack_kv_int(&pk, "i", -5);
    mp_pack_kv_bool(&pk, "b", false);
    mp_pack_kv_nil(&pk, "n");
    msgpack_unpacked_init(&u);
    off = 0;
    CHECK_EQ_INT(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *m = &u.data;
    CHECK(mp_str_eq(mp_map_get(m, "s"), "v"));
    CHECK(!mp_str_eq(mp_map_get(m, "s"), "vv"));
    CHECK(!mp_str_eq(mp_map_get(m, "s"), ""));
    CHECK(!mp_str_eq(NULL, "v"));
    CHECK(mp_map_get(m, "null") && mp_map_get(m, "null")->type == MSGPACK_OBJECT_NIL);
    CHECK(mp_map_get(m, "i") && mp_map_get(m, "i")->via.i64 == -5);
    CHECK(mp_map_get(m, "b") && mp_map_get(m, "b")->type == MSGPACK_OBJECT_BOOLEAN &&
          !mp_map_get(m, "b")->via.boolean);
    CHECK(mp_map_get(m, "n") && mp_map_get(m, "n")->type == MSGPACK_OBJECT_NIL);
    CHECK(mp_map_get(m, "x") == NULL);
    CHECK(mp_map_get(m, "") == NULL);
    CHECK(mp_map_get(NULL, "s") == NULL);
    CHECK(mp_map_get(mp_map_get(m, "s"), "s") == NULL);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    test_text();
    test_id();
    test_param_int();
    test_param_str_id();
    test_param_bool();
    test_errors();
    test_pack_helpers();
    return check_result("test_codec");
}
