/*
 * Orders in the replica: written by import now, by the marketplace pull later. The marketplace
 * is the authority on an order's header and lines; these functions only upsert what it says.
 */
#ifndef TALLY_ORDERS_H
#define TALLY_ORDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* An order header. String fields are NUL-terminated; NULL means absent (kept as it was). */
struct order_header {
    const char *order_id;
    const char *status;
    int64_t created_at;
    bool has_ship_by;
    int64_t ship_by;
    const char *country, *currency, *service;
    const char *buyer_name, *address, *city, *postcode, *phone;
    const char *buyer_level; /* for the priority rules ([priority] vip_levels); NULL: unknown */
};

/* Inserts or updates the header; *ref is the order's row id. Inside a transaction. */
int orders_upsert_header(struct store *st, const struct order_header *h, int64_t *ref,
                         bool *inserted);
/* Inserts or replaces the line of `sku` (a SKU row id) and refreshes the order's total. */
int orders_upsert_line(struct store *st, int64_t ref, int64_t sku, int64_t qty, int64_t price_minor,
                       bool *inserted);

#endif
