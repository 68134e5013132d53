/*
 * Order priority: a score from configurable rules, with the reasons, so that `tally orders
 * --due` lists first what must leave first. Higher is more urgent. Deterministic: the same
 * order, rules and time give the same score and text.
 */
#ifndef TALLY_PRIORITY_H
#define TALLY_PRIORITY_H

#include <stddef.h>
#include <stdint.h>

#define PRIORITY_MAX_NAMES 8

struct priority_rules {
    int64_t deadline_hours; /* ship_by within this many hours: deadline_points (default 24) */
    int deadline_points;    /* default 100; an overdue order gets twice as many */
    int64_t value_minor;    /* total_minor at or above this (order's own currency): value_points
                               (default 10000, i.e. 100.00); 0 = rule off */
    int value_points;       /* default 20 */
    char express[PRIORITY_MAX_NAMES][64]; /* logistics services that count as express, matched
                                             case-insensitively as a substring of the order's
                                             service (defaults: DHL, FEDEX, UPS, EMS, PREMIUM) */
    int nexpress;
    int express_points;                      /* default 30 */
    char vip_levels[PRIORITY_MAX_NAMES][32]; /* buyer levels that count (exact, case-insensitive;
                                                none by default) */
    int nvip;
    int vip_points; /* default 10 */
};

struct priority_input {
    int64_t now;             /* seconds since the epoch */
    int64_t ship_by;         /* 0 when unknown */
    int64_t total_minor;     /* order value */
    const char *service;     /* logistics service, NULL when unknown */
    const char *buyer_level; /* NULL when unknown */
};

void priority_rules_defaults(struct priority_rules *r);

/* Returns the score (>= 0) and writes the reasons ("ship-by in 5 h (+100), express DHL (+30)";
 * "" for a score of 0) into why. Details: a rule with points <= 0 is off and never listed;
 * times are whole hours, minutes or seconds rounded down ("overdue by 3 h", "ship-by in
 * 40 min"); express and VIP reasons name the configured entry that matched ("express DHL",
 * "VIP buyer gold"); the score saturates at INT_MAX and does not depend on cap; a text that
 * does not fit is cut after a whole reason and ends in "...". NULL r or in scores 0. */
int priority_score(const struct priority_rules *r, const struct priority_input *in, char *why,
                   size_t cap);

#endif
