#include "wire.h"

#include <stdint.h>

#include "tally/protocol.h"

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*
 * Header of the object at p: sets *hdr (header bytes), *payload (raw bytes after the header
 * for str/bin/ext) and *children (number of nested objects for arrays and maps).
 * Returns 1 on success, 0 when the header itself is incomplete, or a negative error.
 */
static int head(const unsigned char *p, size_t avail, size_t *hdr, uint64_t *payload,
                uint64_t *children, int *container)
{
    unsigned char b = p[0];
    *container = (b & 0xe0) == 0x80 || (b >= 0xdc && b <= 0xdf); /* fixmap/fixarray/16/32 */
    int n = 0;                                                   /* bytes of length field */
    *payload = 0;
    *children = 0;
    *hdr = 1;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 1;
    if ((b & 0xe0) == 0xa0) { /* fixstr */
        *payload = b & 0x1f;
        return 1;
    }
    if ((b & 0xf0) == 0x90) { /* fixarray */
        *children = b & 0x0f;
        return 1;
    }
    if ((b & 0xf0) == 0x80) { /* fixmap */
        *children = 2u * (b & 0x0f);
        return 1;
    }
    switch (b) {
    case 0xc1:
        return TALLY_E_MALFORMED;
    case 0xcc:
    case 0xd0:
        *payload = 1;
        return 1;
    case 0xcd:
    case 0xd1:
        *payload = 2;
        return 1;
    case 0xca:
    case 0xce:
    case 0xd2:
        *payload = 4;
        return 1;
    case 0xcb:
    case 0xcf:
    case 0xd3:
        *payload = 8;
        return 1;
    case 0xd4:
        *payload = 2;
        return 1; /* fixext 1: type + data */
    case 0xd5:
        *payload = 3;
        return 1;
    case 0xd6:
        *payload = 5;
        return 1;
    case 0xd7:
        *payload = 9;
        return 1;
    case 0xd8:
        *payload = 17;
        return 1;
    case 0xc4:
    case 0xd9:
        n = 1;
        break; /* bin8, str8 */
    case 0xc5:
    case 0xda:
        n = 2;
        break;
    case 0xc6:
    case 0xdb:
        n = 4;
        break;
    case 0xc7:
        n = 1;
        break; /* ext8: len, type */
    case 0xc8:
        n = 2;
        break;
    case 0xc9:
        n = 4;
        break;
    case 0xdc:
    case 0xde:
        n = 2;
        break; /* array16, map16 */
    case 0xdd:
    case 0xdf:
        n = 4;
        break;
    default:
        return TALLY_E_MALFORMED;
    }
    if (avail < (size_t)1 + n)
        return 0;
    uint64_t v = be(p + 1, n);
    *hdr = 1 + (size_t)n;
    if (b == 0xdc || b == 0xdd)
        *children = v;
    else if (b == 0xde || b == 0xdf)
        *children = 2 * v;
    else if (b >= 0xc7 && b <= 0xc9)
        *payload = v + 1; /* the ext type byte */
    else
        *payload = v;
    return 1;
}

/*
 * Bytes taken by the object led by each byte when that is fixed by the byte alone: the
 * scalars (fixints, nil, booleans, the numbers, fixext) and fixstr, header included; 0 for the
 * rest (containers, str/bin/ext with a length field, 0xc1). An answer is mostly such objects
 * (a stock.get answer: 149 objects, 8 of them containers), so wire_frame_scan steps over them
 * without head(), the two commonest (positive fixint, fixstr) without even the table: half the
 * time of a scan of that answer. test_wire's test_every_lead checks each entry against
 * msgpack-c's unpacker.
 */
/* clang-format off */
static const unsigned char fixed_size[256] = {
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0x00 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0x10 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0x20 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0x30 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0x40 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0x50 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0x60 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0x70 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 0x80 fixmap */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 0x90 fixarray */
     1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, 15, 16, /* 0xa0 fixstr */
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, /* 0xb0 fixstr */
     1,  0,  1,  1,  0,  0,  0,  0,  0,  0,  5,  9,  2,  3,  5,  9, /* 0xc0 */
     2,  3,  5,  9,  3,  4,  6, 10, 18,  0,  0,  0,  0,  0,  0,  0, /* 0xd0 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0xe0 */
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 0xf0 */
};
/* clang-format on */

ssize_t wire_frame_scan(const unsigned char *buf, size_t len, size_t max_frame, int max_depth)
{
    /* remaining[d]: objects still expected in the container open at depth d. */
    uint64_t remaining[TALLY_MAX_DEPTH + 2];
    int depth = 0;
    size_t pos = 0;

    if (max_depth > TALLY_MAX_DEPTH)
        max_depth = TALLY_MAX_DEPTH;
    remaining[0] = 1;
    while (depth >= 0) {
        /* The objects of fixed size at this level, stepped over in a tight loop; the checks are
         * those the general step below makes for them (no children, header and payload in one). */
        uint64_t left = remaining[depth];
        while (left > 0) {
            if (pos >= len)
                return len > max_frame ? TALLY_E_TOO_LARGE : 0;
            unsigned char b = buf[pos];
            size_t size = b <= 0x7f            ? 1
                          : (b & 0xe0) == 0xa0 ? (size_t)(b & 0x1f) + 1
                                               : fixed_size[b];
            if (size == 0)
                break;
            left--;
            if (pos + size > max_frame)
                return TALLY_E_TOO_LARGE;
            pos += size;
        }
        remaining[depth] = left;
        if (left == 0) {
            depth--;
            continue;
        }
        size_t hdr;
        uint64_t payload, children;
        int container;
        int r = head(buf + pos, len - pos, &hdr, &payload, &children, &container);
        if (r < 0)
            return r;
        if (r == 0)
            return len > max_frame ? TALLY_E_TOO_LARGE : 0;
        remaining[depth]--;
        /* Every child takes at least one byte, so a count larger than the frame can be is a lie. */
        if (payload > max_frame || children > max_frame ||
            pos + hdr + payload + children > max_frame)
            return TALLY_E_TOO_LARGE;
        pos += hdr + (size_t)payload;
        /* An empty container still counts as a level: the limit is on nesting as written. */
        if (container && depth + 1 > max_depth)
            return TALLY_E_TOO_DEEP;
        if (children > 0)
            remaining[++depth] = children;
    }
    if (pos > len)
        return len > max_frame ? TALLY_E_TOO_LARGE : 0;
    return (ssize_t)pos;
}
