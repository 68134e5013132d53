/*
 * The enumerated values methods accept, in one table: exception kinds and list states,
 * fulfilment states, marketplace order statuses (also of imported orders), outbox and returns
 * list states, promotion grouping, import kinds, warehouse fulfilment and movement kinds. A handler
 * reads such a param with cmd_param_enum, so a value outside the list (a typo, the wrong case) is
 * refused with `invalid_params` naming every valid value, never taken as a filter that matches
 * nothing.
 */
#ifndef TALLY_ENUMS_H
#define TALLY_ENUMS_H

#include <stdbool.h>
#include <stddef.h>

#include "codec.h"

struct rpc_call; /* rpc.h: not included, so that the importer can use the table without libuv */

struct param_enum {
    const char *const *values; /* NULL-terminated */
};

extern const struct param_enum enum_exception_kind;  /* exceptions.list kind */
extern const struct param_enum enum_exception_state; /* exceptions.list state */
extern const struct param_enum enum_fstate;          /* orders.list fstate */
extern const struct param_enum enum_order_status;    /* orders.list status */
extern const struct param_enum enum_outbox_state;    /* outbox.list state */
extern const struct param_enum enum_return_state;    /* returns.list state */
extern const struct param_enum enum_promo_per;       /* promo.check per */
extern const struct param_enum enum_import_kind;     /* import kind */
extern const struct param_enum enum_move_kind;       /* stock.move kind */
extern const struct param_enum enum_wh_fulfilment;   /* import warehouses: fulfilment */

/* The index of the n bytes at s among e's values; -1 when it is none of them. */
int enum_index(const struct param_enum *e, const char *s, size_t n);

/*
 * Reads the string param `key` and checks it against e. Returns 0 with *s / *n the value and
 * *idx its index (*s NULL and *idx -1 when absent and optional), or, through rpc_fail,
 * TALLY_E_INVALID_PARAMS ("field 'state' must be one of: open, acknowledged, ...") for a
 * value outside the list, or the codec's error for a missing or mistyped one.
 */
/* The refusal of the n bytes at s as `key`: "field 'key' must be one of: ... (not '...')". */
void enum_refusal(const struct param_enum *e, const char *key, const char *s, size_t n, char *out,
                  size_t cap);

int cmd_param_enum(struct rpc_call *c, struct mp_params *p, const char *key, bool required,
                   const struct param_enum *e, const char **s, size_t *n, int *idx);

#endif
