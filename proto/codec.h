/*
 * MessagePack helpers used by both sides: packing strings and maps tersely, and reading typed,
 * range-checked fields out of a params map with an error message a human can act on.
 */
#ifndef TALLY_CODEC_H
#define TALLY_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

/* Packing. `s` may be NULL for the *_strz forms, which then pack nil. */
void mp_pack_strn(msgpack_packer *pk, const char *s, size_t n);
void mp_pack_strz(msgpack_packer *pk, const char *s);
void mp_pack_key(msgpack_packer *pk, const char *key); /* a map key (same as strz) */
void mp_pack_kv_str(msgpack_packer *pk, const char *key, const char *val);
void mp_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val);
void mp_pack_kv_bool(msgpack_packer *pk, const char *key, bool val);
void mp_pack_kv_nil(msgpack_packer *pk, const char *key);

/* Map lookup by string key; NULL when absent, or when `map` is NULL or not a map. */
const msgpack_object *mp_map_get(const msgpack_object *map, const char *key);
/* true when o is a str equal to s. */
bool mp_str_eq(const msgpack_object *o, const char *s);

/*
 * Field readers over a params map. Each returns 0, or TALLY_E_INVALID_PARAMS with a message
 * in p->err naming the field. With `required` false an absent (or nil) field leaves the output
 * untouched and returns 0 with *present (if given) false.
 */
struct mp_params {
    const msgpack_object *map; /* may be NULL: no params */
    const char *prefix;        /* prepended to messages, e.g. "row 3: "; may be NULL */
    char err[256];
};

/* A string of 1..maxlen bytes, valid UTF-8 without control characters. Not NUL-terminated. */
int mp_param_str(struct mp_params *p, const char *key, bool required, size_t maxlen, const char **s,
                 size_t *len, bool *present);
/* An identifier: 1..TALLY_MAX_ID_LEN bytes of printable ASCII without spaces. */
int mp_param_id(struct mp_params *p, const char *key, bool required, const char **s, size_t *len,
                bool *present);
/* An integer in [min, max]; accepts a string of decimal digits (with optional sign) too. */
int mp_param_int(struct mp_params *p, const char *key, bool required, int64_t min, int64_t max,
                 int64_t *v, bool *present);
/* A boolean; accepts true/false, 0/1 and the strings true/false/yes/no/1/0. */
int mp_param_bool(struct mp_params *p, const char *key, bool required, bool *v, bool *present);

/* Validation of raw text, shared with importers. */
bool mp_text_ok(const char *s, size_t n); /* UTF-8, no control characters */
bool mp_id_ok(const char *s, size_t n);   /* 1..64 printable ASCII, no spaces */

/*
 * An array whose length is known only after its elements are packed (rows streamed from a
 * query): mp_array_begin packs a 5-byte array32 header into the sbuffer behind `pk` and returns
 * its offset; mp_array_end writes the final count there. Nothing else may write to that
 * sbuffer in between (rpc.c packs each response in a buffer of its own for that).
 */
size_t mp_array_begin(msgpack_packer *pk);
void mp_array_end(msgpack_packer *pk, size_t offset, uint32_t count);
#endif
