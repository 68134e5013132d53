#include "enums.h"

#include <stdio.h>
#include <string.h>

#include "exceptions.h"
#include "rpc.h"
#include "tally/protocol.h"

static const char *const exception_kinds[] = {EXC_OUT_OF_STOCK, EXC_BAD_ADDRESS,
                                              EXC_PAYMENT_HELD, EXC_DEADLINE,
                                              EXC_WAREHOUSE,    EXC_UPSTREAM_REJECTED,
                                              EXC_STOCK_DRIFT,  EXC_CANCELLED_AFTER_PICK,
                                              EXC_COORDINATOR,  NULL};
const struct param_enum enum_exception_kind = {exception_kinds};

/* active = open and acknowledged (the default); all includes resolved ones. */
static const char *const exception_states[] = {"active",   "open", "acknowledged",
                                               "resolved", "all",  NULL};
const struct param_enum enum_exception_state = {exception_states};

/* PROTOCOL.md's table of fulfilment states. */
static const char *const fstates[] = {"new",      "pending",  "ready",     "allocated",
                                      "sent",     "picked",   "partial",   "shipped",
                                      "uploaded", "finished", "cancelled", NULL};
const struct param_enum enum_fstate = {fstates};

/* The marketplace's order statuses: every one the orders stream asks for (conn_aliexpress.c),
 * FINISH last, which a stream's first round leaves out. */
static const char *const order_statuses[] = {"PLACE_ORDER_SUCCESS",
                                             "RISK_CONTROL",
                                             "WAIT_SELLER_SEND_GOODS",
                                             "SELLER_PART_SEND_GOODS",
                                             "WAIT_BUYER_ACCEPT_GOODS",
                                             "IN_CANCEL",
                                             "IN_ISSUE",
                                             "IN_FROZEN",
                                             "FUND_PROCESSING",
                                             "WAIT_SELLER_EXAMINE_MONEY",
                                             "FINISH",
                                             NULL};
const struct param_enum enum_order_status = {order_statuses};

/* pending covers rows waiting and rows in flight; done covers discarded ones too. */
static const char *const outbox_states[] = {"pending", "held", "done", NULL};
const struct param_enum enum_outbox_state = {outbox_states};

static const char *const return_states[] = {"received", "inspected", NULL};
const struct param_enum enum_return_state = {return_states};

static const char *const promo_pers[] = {"sku", "product", NULL};
const struct param_enum enum_promo_per = {promo_pers};

/* In the order of importer.h's IMPORT_* (import_kind_parse). */
static const char *const import_kinds[] = {"warehouses", "catalog", "stock", "orders", NULL};
const struct param_enum enum_import_kind = {import_kinds};

/* import warehouses: how a warehouse's orders are fulfilled. */
static const char *const wh_fulfilments[] = {"station", "outbound", "none", NULL};
const struct param_enum enum_wh_fulfilment = {wh_fulfilments};

/* In the order of stock.h's STOCK_* (stock_kind_parse). */
static const char *const move_kinds[] = {"receive",  "pick",   "adjust", "count",
                                         "transfer", "return", NULL};
const struct param_enum enum_move_kind = {move_kinds};

int enum_index(const struct param_enum *e, const char *s, size_t n)
{
    for (int i = 0; s && e->values[i]; i++)
        if (strlen(e->values[i]) == n && memcmp(e->values[i], s, n) == 0)
            return i;
    return -1;
}

int cmd_param_enum(struct rpc_call *c, struct mp_params *p, const char *key, bool required,
                   const struct param_enum *e, const char **s, size_t *n, int *idx)
{
    bool have = false;
    *s = NULL;
    *n = 0;
    *idx = -1;
    int r = mp_param_id(p, key, required, s, n, &have);
    if (r)
        return rpc_fail(c, r, "%s", p->err);
    if (!have) {
        *s = NULL;
        return 0;
    }
    if ((*idx = enum_index(e, *s, *n)) >= 0)
        return 0;
    char msg[640];
    enum_refusal(e, key, *s, *n, msg, sizeof msg);
    return rpc_fail(c, TALLY_E_INVALID_PARAMS, "%s", msg);
}

void enum_refusal(const struct param_enum *e, const char *key, const char *s, size_t n, char *out,
                  size_t cap)
{
    char list[512];
    size_t len = 0;
    list[0] = 0;
    for (int i = 0; e->values[i] && len < sizeof list; i++) {
        int w = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", e->values[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    snprintf(out, cap, "field '%s' must be one of: %s (not '%.*s')", key, list,
             (int)(n > 64 ? 64 : n), s);
}
