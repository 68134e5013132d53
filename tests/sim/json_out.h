/* json_out: a small, bounded JSON (and CSV) text builder for responses.
 *
 * Faster than building a cJSON tree and printing it, which matters for pages of thousands of
 * rows. The builder inserts the commas itself: call jb_key before each member of an object and
 * nothing between the elements of an array. Output is bounded by `max` bytes; past it (or when
 * memory runs out) the builder stops writing and jb_failed() turns true, so callers check once
 * at the end. Strings are escaped for JSON; bytes >= 0x80 pass through (UTF-8 in, UTF-8 out). */
#ifndef SIM_JSON_OUT_H
#define SIM_JSON_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JB_MAX_DEPTH 48

struct jb {
    char *buf;
    size_t len, cap, max;
    int depth;
    bool after_key;
    bool failed;
    bool first[JB_MAX_DEPTH];
};

void jb_init(struct jb *j, size_t max_bytes);
void jb_free(struct jb *j);
/* Forgets the content but keeps the buffer. */
void jb_reset(struct jb *j);
/* Hands the NUL-terminated text to the caller (free() it) and leaves j empty. NULL if empty. */
char *jb_steal(struct jb *j, size_t *len);
bool jb_failed(const struct jb *j);

void jb_obj(struct jb *j);
void jb_obj_end(struct jb *j);
void jb_arr(struct jb *j);
void jb_arr_end(struct jb *j);
void jb_key(struct jb *j, const char *key);
void jb_str(struct jb *j, const char *s);
void jb_strn(struct jb *j, const char *s, size_t n);
void jb_i64(struct jb *j, int64_t v);
void jb_bool(struct jb *j, bool v);
void jb_null(struct jb *j);
/* A value that is already JSON text (e.g. a stored object). */
void jb_json(struct jb *j, const char *json, size_t n);

/* Key + value in one call. */
void jb_kv_str(struct jb *j, const char *key, const char *s);
void jb_kv_i64(struct jb *j, const char *key, int64_t v);
void jb_kv_bool(struct jb *j, const char *key, bool v);
void jb_kv_obj(struct jb *j, const char *key);
void jb_kv_arr(struct jb *j, const char *key);

/* Raw text, no JSON structure (CSV, or deliberately broken bodies). */
void jb_append(struct jb *j, const char *s, size_t n);
void jb_append_i64(struct jb *j, int64_t v);

#endif
