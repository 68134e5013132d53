/*
 * JSON for the upstream connectors: reading typed, range-checked values out of cJSON trees
 * (cJSON keeps numbers as doubles: integers are checked to be integral and within +-2^53),
 * and building request bodies into a growable buffer with correct string escaping.
 */
#ifndef TALLY_JSON_H
#define TALLY_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/*
 * The most values (and member names) an answer may hold: cJSON spends about 100 bytes on each,
 * so a body of "[0,0,0,...]" within HTTP_MAX_ANSWER would cost 50 times its size, far over the
 * daemon's 32 MiB. An honest page holds far fewer: a warehouse's inventory page of 5,000 rows
 * about 55,000, an order page of 50 orders a few thousand. 131,072 is about 13 MiB at most.
 */
#define JSON_MAX_VALUES 131072

/* Parses an upstream's answer (`len` bytes, not necessarily NUL-terminated); NULL when it is
 * not JSON, or holds more than JSON_MAX_VALUES values and names (counted before anything is
 * allocated). */
cJSON *json_parse(const char *p, size_t len);
/* Whether `len` bytes at `p` hold at most JSON_MAX_VALUES values and names (what json_parse
 * checks first): false tells an answer refused for its size from one that is not JSON. */
bool json_within_bound(const char *p, size_t len);

/* The string member `key` of `obj`, or NULL when absent or not a string. */
const char *json_str(const cJSON *obj, const char *key);
/* The integer member `key` in [min, max]: 0, or -1 when absent, not integral or out of range.
 * A string of decimal digits is accepted too (some APIs quote their numbers). */
int json_int(const cJSON *obj, const char *key, int64_t min, int64_t max, int64_t *v);

struct jbuf {
    char *p;
    size_t len, cap;
    bool failed; /* an allocation failed; the content is incomplete */
};

void jb_raw(struct jbuf *b, const char *s, size_t n);
void jb_lit(struct jbuf *b, const char *s); /* raw text */
void jb_str(struct jbuf *b, const char *s); /* a quoted, escaped JSON string */
void jb_int(struct jbuf *b, int64_t v);
void jb_free(struct jbuf *b);
/* Percent-encodes `s` for application/x-www-form-urlencoded. */
void jb_form(struct jbuf *b, const char *s);

#endif
