/* json_in: range-checked readers on top of cJSON's parse tree.
 *
 * cJSON stores every number as a double (its valueint is 32-bit), so 64-bit quantities are read
 * from valuedouble and accepted only when integral and within +-2^53, where doubles are exact.
 * Ids that may exceed that (AliExpress order ids are 16 digits) are also accepted as strings of
 * digits. */
#ifndef SIM_JSON_IN_H
#define SIM_JSON_IN_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define JIN_MAX_EXACT 9007199254740992LL /* 2^53 */

/* An integral number in [-2^53, 2^53]. */
bool jin_i64(const cJSON *item, int64_t *out);

/* Like jin_i64, but a string of 1-18 decimal digits is accepted too. */
bool jin_id(const cJSON *item, int64_t *out);

/* The string member `key` of obj, or NULL when absent or not a string. */
const char *jin_str(const cJSON *obj, const char *key);

/* A string parameter value (from a form) holding 1-18 decimal digits. */
bool jin_parse_digits(const char *s, int64_t *out);

#endif
