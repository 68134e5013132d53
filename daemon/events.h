/*
 * Event notifications for `watch` subscribers: [2, "event", [{"type": ..., "at": ..., ...}]].
 * Types: "sync" (link up/down, a round that brought rows), "low_stock" (a SKU x warehouse fell
 * to or below its threshold), "order" (a new order arrived), "exception".
 */
#ifndef TALLY_EVENTS_H
#define TALLY_EVENTS_H

#include <stdint.h>

#include "tallyd.h"

void events_sync(struct tallyd *d, const char *name, const char *state, const char *detail);
void events_low_stock(struct tallyd *d, const char *sku, const char *warehouse, int64_t available,
                      int64_t threshold);
void events_order(struct tallyd *d, const char *order_id, const char *status);
/* order_id, sku and warehouse may be NULL. */
void events_exception(struct tallyd *d, int64_t id, const char *kind, const char *state,
                      const char *order_id, const char *sku, const char *warehouse,
                      const char *message, int64_t deadline);

#endif
