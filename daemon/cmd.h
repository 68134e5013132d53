/* Method handlers, one file per domain (cmd_<domain>.c); the table is in rpc.c. */
#ifndef TALLY_CMD_H
#define TALLY_CMD_H

#include "codec.h"
#include "rpc.h"
#include "tally/protocol.h"

int cmd_hello(struct rpc_call *c);
int cmd_status(struct rpc_call *c);
int cmd_catalog_get(struct rpc_call *c);
int cmd_catalog_search(struct rpc_call *c);
int cmd_stock_get(struct rpc_call *c);
int cmd_stock_list(struct rpc_call *c);
int cmd_stock_move(struct rpc_call *c);
int cmd_orders_list(struct rpc_call *c);
int cmd_orders_get(struct rpc_call *c);
int cmd_outbox_list(struct rpc_call *c);
int cmd_import(struct rpc_call *c);
int cmd_sync(struct rpc_call *c);
int cmd_watch(struct rpc_call *c);
int cmd_outbox_retry(struct rpc_call *c);
int cmd_outbox_discard(struct rpc_call *c);

/* Paging shared by list methods: reads `limit` and `cursor` from the params. */
struct page_req {
    int64_t limit;
    const char *cursor; /* NULL when absent */
    size_t cursor_len;
};
int cmd_page_params(struct rpc_call *c, struct mp_params *p, struct page_req *pg);

#endif
