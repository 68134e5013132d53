/* Method handlers, one file per domain (cmd_<domain>.c); the table is in rpc.c. */
#ifndef TALLY_CMD_H
#define TALLY_CMD_H

#include <sqlite3.h>

#include "codec.h"
#include "rpc.h"
#include "tally/protocol.h"

int cmd_hello(struct rpc_call *c);
int cmd_status(struct rpc_call *c);
int cmd_catalog_get(struct rpc_call *c);
int cmd_catalog_search(struct rpc_call *c);
int cmd_stock_get(struct rpc_call *c);
/* stock.get's answer for `sku` as kept for the data the loop reads now (loopread_answer), or
 * NULL (then cmd_stock_get reads it): the result object's bytes, *len of them. */
const void *cmd_stock_get_kept(struct tallyd *d, const char *sku, size_t n, size_t *len);
int cmd_stock_list(struct rpc_call *c);
int cmd_stock_move(struct rpc_call *c);
int cmd_orders_list(struct rpc_call *c);
int cmd_orders_get(struct rpc_call *c);
int cmd_outbox_list(struct rpc_call *c);
int cmd_import(struct rpc_call *c);
/* tallyd stops: import jobs run the call they are in and answer the others shutting_down. */
void cmd_import_stop(struct tallyd *d);
int cmd_sync(struct rpc_call *c);
int cmd_watch(struct rpc_call *c);
int cmd_outbox_retry(struct rpc_call *c);
int cmd_outbox_discard(struct rpc_call *c);
/* part 3: fulfilment */
int cmd_orders_allocate(struct rpc_call *c); /* cmd_fulfil.c */
int cmd_orders_ship(struct rpc_call *c);
int cmd_exceptions_list(struct rpc_call *c);
int cmd_exceptions_ack(struct rpc_call *c);
int cmd_exceptions_resolve(struct rpc_call *c);
int cmd_stock_set(struct rpc_call *c);       /* cmd_stock.c */
int cmd_returns_receive(struct rpc_call *c); /* cmd_returns.c */
int cmd_returns_inspect(struct rpc_call *c);
int cmd_returns_list(struct rpc_call *c);
int cmd_promo_check(struct rpc_call *c); /* cmd_report.c */
int cmd_report(struct rpc_call *c);
int cmd_privacy_purge(struct rpc_call *c);  /* cmd_privacy.c */
int cmd_inbound_create(struct rpc_call *c); /* cmd_inbound.c */
int cmd_inbound_list(struct rpc_call *c);
int cmd_carriers_list(struct rpc_call *c); /* cmd_carriers.c */

/* Packs an order's allocation {rule, why, parts} (nil when never allocated); cmd_orders.c. */
int cmd_pack_allocation(struct rpc_call *c, int64_t ref, const char *rule, const char *why);

/* The caller's user name from its credentials ("uid 1000" when it has none), for records of
 * who did what. */
void cmd_caller_name(struct rpc_call *c, char *buf, size_t cap);

/* Paging shared by list methods: reads `limit` and `cursor` from the params. */
struct page_req {
    int64_t limit;
    const char *cursor; /* NULL when absent */
    size_t cursor_len;
};
int cmd_page_params(struct rpc_call *c, struct mp_params *p, struct page_req *pg);

/* Copies a string param (an id when `id`, else text) into a NUL-terminated buffer of `cap`
 * bytes; an absent optional one leaves dst untouched. Returns 0 or a TALLY_E_* code with the
 * message in p->err. */
int cmd_param_copy(struct mp_params *p, const char *key, bool id, bool required, char *dst,
                   size_t cap);

/* Packs key and a result column: text (nil for NULL), or an integer (nil for NULL). */
void cmd_pack_col_text(msgpack_packer *pk, const char *key, sqlite3_stmt *s, int col);
void cmd_pack_col_int(msgpack_packer *pk, const char *key, sqlite3_stmt *s, int col);

#endif
