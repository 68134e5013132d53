/*
 * wire_frame_scan(): complete frames of every MessagePack type, every strict prefix, frames back
 * to back, the reserved byte, the depth and size limits, and a seeded random sweep checked
 * against msgpack-c's own unpacker. Buffers handed to the scanner are allocated to their exact
 * length so that AddressSanitizer catches any read past `len`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "check.h"
#include "tally/protocol.h"
#include "wire.h"

#define MIB (1024u * 1024u)
#define MAXF TALLY_DEFAULT_MAX_MESSAGE_BYTES

/* Scans a private, exactly sized copy of buf[0..len), so any over-read is caught by ASan. */
static ssize_t scan(const void *buf, size_t len, size_t max_frame, int max_depth)
{
    if (len > 64 * MIB) /* no test frame is this long; tells the compiler len is bounded */
        abort();
    unsigned char *copy = malloc(len ? len : 1);
    if (len)
        memcpy(copy, buf, len);
    /* With len 0 hand the scanner a pointer whose every byte is out of bounds. */
    ssize_t n = wire_frame_scan(len ? copy : copy + 1, len, max_frame, max_depth);
    free(copy);
    return n;
}

/* msgpack-c agrees that buf[0..len) starts with one object of exactly `want` bytes. */
static int unpacks_to(const void *buf, size_t len, size_t want)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&u, buf, len, &off);
    msgpack_unpacked_destroy(&u);
    return r == MSGPACK_UNPACK_SUCCESS && off == want;
}

/*
 * The checks every valid frame must pass: complete -> its length; each strict prefix -> 0;
 * followed by another frame or by garbage -> still its own length; exactly at max_frame ->
 * accepted, one byte over -> too large.
 */
static void check_frame(const char *name, const msgpack_sbuffer *sb, int first_byte)
{
    const unsigned char *f = (const unsigned char *)sb->data;
    size_t len = sb->size;
    ssize_t n;

    if (first_byte >= 0 && f[0] != first_byte)
        fprintf(stderr, "frame %s: first byte 0x%02x, expected 0x%02x\n", name, f[0], first_byte);
    if (first_byte >= 0)
        CHECK_EQ_INT(f[0], first_byte);
    CHECK(unpacks_to(f, len, len)); /* the test's own frame is valid MessagePack */

    n = scan(f, len, MAXF, TALLY_MAX_DEPTH);
    if (n != (ssize_t)len)
        fprintf(stderr, "frame %s: scan returned %zd, expected %zu\n", name, n, len);
    CHECK_EQ_INT(n, len);

    /* Every strict prefix needs more bytes. Large frames: the header region and a sample. */
    int bad_prefix = 0;
    for (size_t k = 0; k < len; k++) {
        if (len > 4096 && k > 64 && k < len - 64 && k % 997 != 0)
            continue;
        n = scan(f, k, MAXF, TALLY_MAX_DEPTH);
        if (n != 0) {
            if (!bad_prefix)
                fprintf(stderr, "frame %s: prefix of %zu/%zu bytes -> %zd, expected 0\n", name, k,
                        len, n);
            bad_prefix++;
        }
    }
    CHECK_EQ_INT(bad_prefix, 0);

    /* Back to back with a second frame, and followed by bytes that are not MessagePack. */
    unsigned char *two = malloc(len + 4);
    memcpy(two, f, len);
    memcpy(two + len, "\x92\x01\xa1x", 4); /* [1, "x"] */
    CHECK_EQ_INT(scan(two, len + 4, MAXF, TALLY_MAX_DEPTH), len);
    CHECK_EQ_INT(scan(two + len, 4, MAXF, TALLY_MAX_DEPTH), 4);
    two[len] = 0xc1;
    CHECK_EQ_INT(scan(two, len + 1, MAXF, TALLY_MAX_DEPTH), len);
    free(two);

    /* The limit is inclusive: a frame of exactly max_frame bytes fits, one byte less does not. */
    CHECK_EQ_INT(scan(f, len, len, TALLY_MAX_DEPTH), len);
    if (len > 1)
        CHECK_EQ_INT(scan(f, len, len - 1, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
}

struct sb_pk {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void sp_init(struct sb_pk *s)
{
    msgpack_sbuffer_init(&s->sb);
    msgpack_packer_init(&s->pk, &s->sb, msgpack_sbuffer_write);
}

static void sp_check(struct sb_pk *s, const char *name, int first_byte)
{
    check_frame(name, &s->sb, first_byte);
    msgpack_sbuffer_destroy(&s->sb);
}

static void fill_str(msgpack_packer *pk, size_t n, int bin)
{
    char *b = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)('a' + i % 26);
    if (bin) {
        msgpack_pack_bin(pk, n);
        msgpack_pack_bin_body(pk, b, n);
    } else {
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, b, n);
    }
    free(b);
}

static void fill_ext(msgpack_packer *pk, size_t n, int8_t type)
{
    char *b = malloc(n ? n : 1);
    memset(b, 0x5a, n ? n : 1);
    msgpack_pack_ext(pk, n, type);
    msgpack_pack_ext_body(pk, b, n);
    free(b);
}

static void test_scalars(void)
{
    struct sb_pk s;
    struct {
        const char *name;
        int kind; /* 0 uint, 1 int, 2 float32, 3 float64 */
        uint64_t u;
        int64_t i;
        double d;
        int first;
    } nums[] = {
        {"posfixint 0", 0, 0, 0, 0, 0x00},      {"posfixint 127", 0, 127, 0, 0, 0x7f},
        {"uint8", 0, 200, 0, 0, 0xcc},          {"uint16", 0, 60000, 0, 0, 0xcd},
        {"uint32", 0, 4000000000u, 0, 0, 0xce}, {"uint64", 0, UINT64_MAX, 0, 0, 0xcf},
        {"negfixint -1", 1, 0, -1, 0, 0xff},    {"negfixint -32", 1, 0, -32, 0, 0xe0},
        {"int8", 1, 0, -100, 0, 0xd0},          {"int16", 1, 0, -30000, 0, 0xd1},
        {"int32", 1, 0, -2000000000, 0, 0xd2},  {"int64", 1, 0, INT64_MIN, 0, 0xd3},
        {"float32", 2, 0, 0, 1.5, 0xca},        {"float64", 3, 0, 0, 3.141592653589793, 0xcb},
    };
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        sp_init(&s);
        switch (nums[k].kind) {
        case 0:
            msgpack_pack_uint64(&s.pk, nums[k].u);
            break;
        case 1:
            msgpack_pack_int64(&s.pk, nums[k].i);
            break;
        case 2:
            msgpack_pack_float(&s.pk, (float)nums[k].d);
            break;
        default:
            msgpack_pack_double(&s.pk, nums[k].d);
            break;
        }
        sp_check(&s, nums[k].name, nums[k].first);
    }
    /* Explicit-width encodings of small values are valid too (msgpack-c picks the shortest). */
    static const unsigned char wide[][9] = {
        {0xcc, 0x01}, {0xcd, 0x00, 0x01}, {0xce, 0, 0, 0, 1}, {0xcf, 0, 0, 0, 0, 0, 0, 0, 1},
        {0xd0, 0x01}, {0xd1, 0x00, 0x01}, {0xd2, 0, 0, 0, 1}, {0xd3, 0, 0, 0, 0, 0, 0, 0, 1},
    };
    static const size_t wide_len[] = {2, 3, 5, 9, 2, 3, 5, 9};
    for (size_t k = 0; k < 8; k++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_sbuffer_write(&sb, (const char *)wide[k], wide_len[k]);
        check_frame("wide int", &sb, wide[k][0]);
        msgpack_sbuffer_destroy(&sb);
    }

    sp_init(&s);
    msgpack_pack_nil(&s.pk);
    sp_check(&s, "nil", 0xc0);
    sp_init(&s);
    msgpack_pack_true(&s.pk);
    sp_check(&s, "true", 0xc3);
    sp_init(&s);
    msgpack_pack_false(&s.pk);
    sp_check(&s, "false", 0xc2);
}

static void test_raw(void)
{
    struct sb_pk s;
    struct {
        const char *name;
        size_t n;
        int bin, first;
    } raws[] = {
        {"fixstr 0", 0, 0, 0xa0},   {"fixstr 31", 31, 0, 0xbf}, {"str8", 32, 0, 0xd9},
        {"str8 255", 255, 0, 0xd9}, {"str16", 256, 0, 0xda},    {"str16 max", 65535, 0, 0xda},
        {"str32", 65536, 0, 0xdb},  {"bin8 0", 0, 1, 0xc4},     {"bin8", 200, 1, 0xc4},
        {"bin16", 300, 1, 0xc5},    {"bin32", 70000, 1, 0xc6},
    };
    for (size_t k = 0; k < sizeof raws / sizeof raws[0]; k++) {
        sp_init(&s);
        fill_str(&s.pk, raws[k].n, raws[k].bin);
        sp_check(&s, raws[k].name, raws[k].first);
    }
    struct {
        const char *name;
        size_t n;
        int first;
    } exts[] = {
        {"fixext1", 1, 0xd4},   {"fixext2", 2, 0xd5},    {"fixext4", 4, 0xd6},
        {"fixext8", 8, 0xd7},   {"fixext16", 16, 0xd8},  {"ext8 0", 0, 0xc7},
        {"ext8 3", 3, 0xc7},    {"ext8 255", 255, 0xc7}, {"ext16", 256, 0xc8},
        {"ext32", 65536, 0xc9},
    };
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
        sp_init(&s);
        fill_ext(&s.pk, exts[k].n, (int8_t)(k % 2 ? -5 : 7));
        sp_check(&s, exts[k].name, exts[k].first);
    }
}

static void test_containers(void)
{
    struct sb_pk s;

    sp_init(&s);
    msgpack_pack_array(&s.pk, 0);
    sp_check(&s, "fixarray 0", 0x90);

    sp_init(&s);
    msgpack_pack_array(&s.pk, 15);
    for (int i = 0; i < 15; i++)
        msgpack_pack_int(&s.pk, i * 1000);
    sp_check(&s, "fixarray 15", 0x9f);

    sp_init(&s);
    msgpack_pack_array(&s.pk, 16);
    for (int i = 0; i < 16; i++)
        msgpack_pack_nil(&s.pk);
    sp_check(&s, "array16", 0xdc);

    sp_init(&s);
    msgpack_pack_array(&s.pk, 65536);
    for (int i = 0; i < 65536; i++)
        msgpack_pack_uint8(&s.pk, (uint8_t)i);
    sp_check(&s, "array32", 0xdd);

    sp_init(&s);
    msgpack_pack_map(&s.pk, 0);
    sp_check(&s, "fixmap 0", 0x80);

    sp_init(&s);
    msgpack_pack_map(&s.pk, 2);
    msgpack_pack_str(&s.pk, 1);
    msgpack_pack_str_body(&s.pk, "a", 1);
    msgpack_pack_int(&s.pk, 1);
    msgpack_pack_int(&s.pk, 2); /* keys need not be strings */
    msgpack_pack_nil(&s.pk);
    sp_check(&s, "fixmap 2", 0x82);

    sp_init(&s);
    msgpack_pack_map(&s.pk, 20);
    for (int i = 0; i < 20; i++) {
        msgpack_pack_int(&s.pk, i);
        fill_str(&s.pk, (size_t)i, 0);
    }
    sp_check(&s, "map16", 0xde);

    sp_init(&s);
    msgpack_pack_map(&s.pk, 65536);
    for (int i = 0; i < 65536; i++) {
        msgpack_pack_int(&s.pk, i);
        msgpack_pack_true(&s.pk);
    }
    sp_check(&s, "map32", 0xdf);

    /* Non-minimal container headers: array32 of 2 and map32 of 1. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "\xdd\x00\x00\x00\x02\x01\xc0", 7);
    check_frame("array32 of 2", &sb, 0xdd);
    msgpack_sbuffer_clear(&sb);
    msgpack_sbuffer_write(&sb, "\xdf\x00\x00\x00\x01\xa1k\xc3", 8);
    check_frame("map32 of 1", &sb, 0xdf);
    msgpack_sbuffer_clear(&sb);
    msgpack_sbuffer_write(&sb, "\xdc\x00\x00", 3);
    check_frame("array16 of 0", &sb, 0xdc);
    msgpack_sbuffer_destroy(&sb);

    /* A request envelope with everything nested inside it. */
    sp_init(&s);
    msgpack_pack_array(&s.pk, 4);
    msgpack_pack_int(&s.pk, 0);
    msgpack_pack_uint32(&s.pk, 4000000000u);
    fill_str(&s.pk, 10, 0);
    msgpack_pack_array(&s.pk, 1);
    msgpack_pack_map(&s.pk, 6);
    fill_str(&s.pk, 3, 0);
    msgpack_pack_array(&s.pk, 5);
    msgpack_pack_double(&s.pk, -0.5);
    msgpack_pack_float(&s.pk, 2.0f);
    fill_str(&s.pk, 40, 1);
    fill_ext(&s.pk, 4, 1);
    msgpack_pack_map(&s.pk, 0);
    fill_str(&s.pk, 4, 0);
    msgpack_pack_map(&s.pk, 1);
    fill_str(&s.pk, 1, 0);
    msgpack_pack_array(&s.pk, 2);
    msgpack_pack_array(&s.pk, 0);
    msgpack_pack_array(&s.pk, 1);
    msgpack_pack_nil(&s.pk);
    fill_str(&s.pk, 5, 0);
    fill_str(&s.pk, 300, 0);
    fill_str(&s.pk, 6, 0);
    msgpack_pack_int64(&s.pk, -1234567890123LL);
    fill_str(&s.pk, 7, 0);
    fill_ext(&s.pk, 20, -1);
    fill_str(&s.pk, 8, 0);
    msgpack_pack_false(&s.pk);
    sp_check(&s, "nested request", 0x94);
}

/* A frame of `levels` nested arrays (or maps keyed by 0); the innermost holds `inner`. */
static void nested(msgpack_sbuffer *sb, int levels, int use_map, int inner_empty)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    for (int i = 0; i < levels; i++) {
        bool last = i == levels - 1;
        int n = last && inner_empty ? 0 : 1;
        if (use_map) {
            msgpack_pack_map(&pk, (size_t)n);
            if (n)
                msgpack_pack_int(&pk, 0);
        } else {
            msgpack_pack_array(&pk, (size_t)n);
        }
    }
    if (!inner_empty)
        msgpack_pack_int(&pk, 42);
}

static void test_depth(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int limits[] = {1, 2, 5, TALLY_MAX_DEPTH};
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        int d = limits[k];
        for (int use_map = 0; use_map <= 1; use_map++) {
            /* Exactly the maximum nesting passes. */
            nested(&sb, d, use_map, 0);
            ssize_t n = scan(sb.data, sb.size, MAXF, d);
            if (n != (ssize_t)sb.size)
                fprintf(stderr, "depth: %d nested %s (innermost [42]) with max_depth %d -> %zd\n",
                        d, use_map ? "maps" : "arrays", d, n);
            CHECK_EQ_INT(n, sb.size);
            CHECK(unpacks_to(sb.data, sb.size, sb.size));
            nested(&sb, d, use_map, 1);
            CHECK_EQ_INT(scan(sb.data, sb.size, MAXF, d), sb.size);

            /* One more level is refused, whether or not the innermost container is empty. */
            nested(&sb, d + 1, use_map, 0);
            CHECK_EQ_INT(scan(sb.data, sb.size, MAXF, d), TALLY_E_TOO_DEEP);
            nested(&sb, d + 1, use_map, 1);
            n = scan(sb.data, sb.size, MAXF, d);
            if (n != TALLY_E_TOO_DEEP)
                fprintf(stderr, "depth: %d nested %s (innermost empty) with max_depth %d -> %zd\n",
                        d + 1, use_map ? "maps" : "arrays", d, n);
            CHECK_EQ_INT(n, TALLY_E_TOO_DEEP);
            /* Refused as soon as the offending header is seen, before the rest arrives. */
            nested(&sb, d + 1, use_map, 0);
            CHECK_EQ_INT(scan(sb.data, sb.size - 1, MAXF, d), TALLY_E_TOO_DEEP);
        }
    }
    /* Scalars have no depth. */
    CHECK_EQ_INT(scan("\x01", 1, MAXF, 1), 1);
    /* Width is not depth: an array of 15 empty arrays is two levels. */
    CHECK_EQ_INT(
        scan("\x9f\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90\x90", 16, MAXF, 2), 16);
    msgpack_sbuffer_destroy(&sb);
}

static void test_malformed(void)
{
    CHECK_EQ_INT(scan("\xc1", 1, MAXF, TALLY_MAX_DEPTH), TALLY_E_MALFORMED);
    CHECK_EQ_INT(scan("\x92\x01\xc1", 3, MAXF, TALLY_MAX_DEPTH), TALLY_E_MALFORMED);
    CHECK_EQ_INT(scan("\x92\x01\xc1\x00", 4, MAXF, TALLY_MAX_DEPTH), TALLY_E_MALFORMED);
    CHECK_EQ_INT(scan("\x81\xc1\x01", 3, MAXF, TALLY_MAX_DEPTH), TALLY_E_MALFORMED);
    CHECK_EQ_INT(scan("\x81\x01\xc1", 3, MAXF, TALLY_MAX_DEPTH), TALLY_E_MALFORMED);
    /* 0xc1 inside a string's bytes is data, not a type byte. */
    CHECK_EQ_INT(scan("\xa2\xc1\xc1", 3, MAXF, TALLY_MAX_DEPTH), 3);
    CHECK_EQ_INT(scan("\xc4\x01\xc1", 3, MAXF, TALLY_MAX_DEPTH), 3);
    /* After the first frame ends the scanner does not look further. */
    CHECK_EQ_INT(scan("\xc0\xc1", 2, MAXF, TALLY_MAX_DEPTH), 1);
}

/*
 * Every lead byte, alone and as the element of an array, followed by zeros (so every length or
 * count it reads is 0, and the children of a fix container are fixints): the frame's length is
 * msgpack-c's, every strict prefix is incomplete, and a limit one byte under the frame refuses
 * it. This pins the scanner's table of fixed sizes against the unpacker, byte by byte.
 */
static void test_every_lead(void)
{
    for (int b = 0; b < 256; b++) {
        unsigned char buf[1 + 1 + 40] = {0};
        for (int inside = 0; inside < 2; inside++) {
            buf[0] = 0x91; /* the array, when inside */
            buf[1] = (unsigned char)b;
            const unsigned char *f = buf + (inside ? 0 : 1);
            size_t len = sizeof buf - (inside ? 0 : 1);
            ssize_t n = scan(f, len, MAXF, TALLY_MAX_DEPTH);
            if (b == 0xc1) {
                CHECK_EQ_INT(n, TALLY_E_MALFORMED);
                continue;
            }
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            size_t off = 0;
            msgpack_unpack_return r = msgpack_unpack_next(&u, (const char *)f, len, &off);
            msgpack_unpacked_destroy(&u);
            CHECK(r == MSGPACK_UNPACK_SUCCESS);
            if (n != (ssize_t)off)
                fprintf(stderr, "lead 0x%02x (inside %d): %zd, msgpack-c %zu\n", b, inside, n, off);
            CHECK_EQ_INT(n, (ssize_t)off);
            for (size_t k = 0; k < off; k++)
                CHECK_EQ_INT(scan(f, k, MAXF, TALLY_MAX_DEPTH), 0);
            CHECK_EQ_INT(scan(f, len, off, TALLY_MAX_DEPTH), (ssize_t)off);
            CHECK_EQ_INT(scan(f, len, off - 1, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
        }
    }
}

static void test_limits(void)
{
    /* Five bytes of array32 header claiming 2^32-1 elements: refused at once. */
    CHECK_EQ_INT(scan("\xdd\xff\xff\xff\xff", 5, MIB, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    CHECK_EQ_INT(scan("\xdf\xff\xff\xff\xff", 5, MIB, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    CHECK_EQ_INT(scan("\x91\xdd\xff\xff\xff\xff", 6, MIB, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    /* array16 / map16 whose element count alone cannot fit. */
    CHECK_EQ_INT(scan("\xdc\xff\xff", 3, 1000, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    CHECK_EQ_INT(scan("\xde\x02\x00", 3, 1000, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    /* Just fits: array16 of 997 elements needs 1000 bytes; only 3 present -> need more. */
    CHECK_EQ_INT(scan("\xdc\x03\xe5", 3, 1000, TALLY_MAX_DEPTH), 0);
    CHECK_EQ_INT(scan("\xdc\x03\xe6", 3, 1000, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    /* A header too short to read its length is "need more", never an error. */
    CHECK_EQ_INT(scan("\xdd\xff\xff\xff", 4, MIB, TALLY_MAX_DEPTH), 0);
    CHECK_EQ_INT(scan("\xdb\x05", 2, MIB, TALLY_MAX_DEPTH), 0);

    /* str32 / bin32 / ext32 claiming 100 MB. */
    CHECK_EQ_INT(scan("\xdb\x05\xf5\xe1\x00", 5, MIB, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    CHECK_EQ_INT(scan("\xc6\x05\xf5\xe1\x00", 5, MIB, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    CHECK_EQ_INT(scan("\xc9\x05\xf5\xe1\x00\x01", 6, MIB, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    CHECK_EQ_INT(scan("\xdb\xff\xff\xff\xff", 5, MIB, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    /* ... and a string that fits the limit but has not arrived yet is "need more". */
    CHECK_EQ_INT(scan("\xdb\x00\x0f\x00\x00", 5, MIB, TALLY_MAX_DEPTH), 0);
    /* A string inside an array: 1 + 3 + 495 + at least 1 for the second element fits 500. */
    CHECK_EQ_INT(scan("\x92\xda\x01\xef", 4, 500, TALLY_MAX_DEPTH), 0);
    CHECK_EQ_INT(scan("\x92\xda\x01\xf4", 4, 500, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    unsigned char *arr = malloc(500);
    memset(arr, 'y', 500);
    memcpy(arr, "\x92\xda\x01\xef", 4);
    arr[499] = 0x07;
    CHECK_EQ_INT(scan(arr, 500, 500, TALLY_MAX_DEPTH), 500);
    CHECK_EQ_INT(scan(arr, 500, 499, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    free(arr);

    /* An incomplete prefix longer than max_frame is too large, whatever its content. */
    unsigned char big[64];
    memset(big, 0xc0, sizeof big);
    big[0] = 0xdc; /* array16 of 40 nils: 43 bytes */
    big[1] = 0x00;
    big[2] = 40;
    CHECK_EQ_INT(scan(big, 43, 64, TALLY_MAX_DEPTH), 43);
    CHECK_EQ_INT(scan(big, 42, 64, TALLY_MAX_DEPTH), 0);
    CHECK_EQ_INT(scan(big, 42, 41, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    CHECK_EQ_INT(scan(big, 42, 42, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    /* A large stream of 1 MiB + 1 bytes of an unfinished string is too large. */
    size_t n = MIB + 16;
    unsigned char *stream = malloc(n);
    memset(stream, 'x', n);
    memcpy(stream, "\xdb\x00\x20\x00\x00", 5); /* str32 of 2 MiB */
    CHECK_EQ_INT(scan(stream, n, 4 * MIB, TALLY_MAX_DEPTH), 0);
    CHECK_EQ_INT(scan(stream, n, MIB, TALLY_MAX_DEPTH), TALLY_E_TOO_LARGE);
    free(stream);
}

/* xorshift64*: a seeded PRNG so the random sweep is reproducible. */
static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Bytes biased toward type headers and small lengths, so that many strings are whole frames. */
static unsigned char rnd_byte(void)
{
    static const unsigned char hdr[] = {
        0x90, 0x91, 0x92, 0x93, 0x80, 0x81, 0x82, 0xa0, 0xa1, 0xa3, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4,
        0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x00, 0x01, 0x02};
    switch (rnd() % 4) {
    case 0:
        return (unsigned char)rnd();
    case 1:
        return (unsigned char)(rnd() % 4);
    default:
        return hdr[rnd() % sizeof hdr];
    }
}

static void test_random(void)
{
    int complete = 0, need_more = 0, errors = 0, bad = 0;
    for (int iter = 0; iter < 10000; iter++) {
        size_t len = 1 + rnd() % 48;
        unsigned char *b = malloc(len); /* exact size: ASan flags any read past len */
        for (size_t i = 0; i < len; i++)
            b[i] = rnd_byte();
        size_t max_frame = iter % 3 == 0 ? 32 : MIB;
        int depth = iter % 5 == 0 ? 3 : TALLY_MAX_DEPTH;
        ssize_t n = wire_frame_scan(b, len, max_frame, depth);
        if (n > 0) {
            complete++;
            if ((size_t)n > len || (size_t)n > max_frame || !unpacks_to(b, (size_t)n, (size_t)n)) {
                if (!bad)
                    fprintf(stderr, "random %d: scan -> %zd of %zu bytes but msgpack disagrees\n",
                            iter, n, len);
                bad++;
            }
        } else if (n == 0) {
            need_more++;
            if (len > max_frame)
                bad++;
        } else {
            errors++;
            if (n != TALLY_E_MALFORMED && n != TALLY_E_TOO_DEEP && n != TALLY_E_TOO_LARGE)
                bad++;
            if (n == TALLY_E_MALFORMED && !memchr(b, 0xc1, len))
                bad++;
        }
        free(b);
    }
    CHECK_EQ_INT(bad, 0);
    /* The sweep exercised every outcome. */
    CHECK(complete > 1000);
    CHECK(need_more > 100);
    CHECK(errors > 100);
    printf("random sweep: %d complete, %d need more, %d errors\n", complete, need_more, errors);
}

int main(void)
{
    test_scalars();
    test_raw();
    test_containers();
    test_depth();
    test_malformed();
    test_every_lead();
    test_limits();
    test_random();
    return check_result("test_wire");
}
