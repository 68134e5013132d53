/*
 * Low stock by days of cover. A stock row with cover_days > 0 has its threshold recomputed
 * from sales: threshold = ceil(sold / window_days * cover_days), where sold is the units
 * shipped from that warehouse in the last [stock] sales_window_days (allocations shipped or
 * consumed). A row that becomes low by it is announced with a low_stock event.
 */
#ifndef TALLY_COVER_H
#define TALLY_COVER_H

#include <stdint.h>

#include "tallyd.h"

/* Recomputes every row with cover_days > 0 (its own transaction). Returns 0 or TALLY_E_*. */
int cover_refresh(struct tallyd *d);
/*
 * The same as write jobs off the loop (worker.h), in transactions of about a millisecond, the
 * low-stock events announced from the loop after their commits; one at a time (a call while
 * one runs does nothing). Without workers or a loop (tests) it is cover_refresh. Returns 0 or
 * TALLY_E_* (queued: its outcome is logged).
 */
int cover_refresh_start(struct tallyd *d);

/* The threshold for `sold` units in `window_days` and `cover_days` of cover (ceil). */
int64_t cover_threshold(int64_t sold, int64_t window_days, int64_t cover_days);

/* Restock suggestion: units to receive so that on_hand - reserved covers `cover_days` at the
 * rate of `sold` per `window_days` (0 when it already does). */
int64_t cover_suggest(int64_t sold, int64_t window_days, int64_t cover_days, int64_t on_hand,
                      int64_t reserved);

#endif
