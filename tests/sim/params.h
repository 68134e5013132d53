/* params: a list of name/value parameters, as sent to the marketplace gateway.
 *
 * Values are kept decoded (what the client signed). The list keeps arrival order; signing sorts
 * its own copy. Both strings of a parameter are owned by the list. */
#ifndef SIM_PARAMS_H
#define SIM_PARAMS_H

#include <stddef.h>

struct param {
    char *name;
    char *value;
};

struct params {
    struct param *v;
    size_t n, cap;
};

void params_init(struct params *p);
void params_free(struct params *p);

/* Appends a copy of name/value. Returns 0, or -1 when out of memory. */
int params_add(struct params *p, const char *name, size_t nlen, const char *value, size_t vlen);

/* Decodes application/x-www-form-urlencoded text ('+' is a space, %XX a byte) and appends each
 * pair. Returns 0, or -1 on a malformed escape or when out of memory. */
int params_parse_form(struct params *p, const char *s, size_t len);

/* The value of the first parameter called name, or NULL. */
const char *params_get(const struct params *p, const char *name);

/* The name of a parameter that appears twice, or NULL if every name is unique. */
const char *params_duplicate(const struct params *p);

#endif
