/*
 * Allocation: which warehouse(s) an order's lines are taken from. A pure function of the
 * order, the warehouses' available stock and the rules, so it is deterministic, explained, and
 * tested table by table (tests/unit/test_alloc.c). fulfil.c gathers the inputs from the
 * replica and applies the decision (reservations) in one transaction.
 *
 * Rules, in order; the first that gives an answer wins:
 *   1. in-country: an eligible warehouse in the ship-to country that has every line
 *      (several: the one earlier in the priority list, then by code);
 *   2. nearest: the nearest eligible warehouse within max_distance_km of the ship-to country
 *      that has every line (ties: priority list, then code);
 *   3. priority: the first warehouse of the configured priority list that has every line;
 *      with no list configured, every eligible warehouse nearest first (unknown distances
 *      last, then by code);
 *   4. split (only when allow_split): the fewest warehouses, chosen greedily: repeatedly the
 *      warehouse that can fill the most still-unfilled units, counting only lines it can fill
 *      whole (ties: nearest, then code); a line no single warehouse can fill whole is then
 *      filled from several, nearest first;
 *   5. none: out of stock; short_line names the first line that cannot be filled.
 * A warehouse that is not eligible (not taking orders, or its stock data too old) is never
 * chosen. "has every line" means avail[line] >= qty for every line.
 */
#ifndef TALLY_ALLOC_H
#define TALLY_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ALLOC_MAX_WH 32
#define ALLOC_MAX_LINES 100
#define ALLOC_MAX_PARTS (ALLOC_MAX_LINES * 4)

struct alloc_line {
    char sku[65];
    int64_t qty; /* > 0 */
};

struct alloc_wh {
    char code[65];
    char country[3];
    bool eligible;
    int64_t avail[ALLOC_MAX_LINES]; /* available units of each line's SKU here (>= 0) */
};

struct alloc_rules {
    int max_distance_km;             /* rule 2's radius; default 1500 */
    char priority[ALLOC_MAX_WH][65]; /* rule 3's list of warehouse codes */
    int npriority;
    bool allow_split; /* rule 4; default true */
};

enum alloc_rule { ALLOC_NONE, ALLOC_IN_COUNTRY, ALLOC_NEAREST, ALLOC_PRIORITY, ALLOC_SPLIT };

struct alloc_part {
    int line;    /* index into lines */
    int wh;      /* index into whs */
    int64_t qty; /* > 0 */
};

struct alloc_result {
    int rule; /* enum alloc_rule */
    int nparts;
    struct alloc_part parts[ALLOC_MAX_PARTS]; /* in line order; a line's parts nearest first */
    int short_line;                           /* ALLOC_NONE: first line that cannot be filled */
    int64_t short_by;                         /* ALLOC_NONE: units missing for it in total */
    char why[512]; /* for the operator, e.g. "FR-PAR: nearest to ES (1054 km) with every line;
                      ES-MAD lacks KX-2 (needs 2, has 1)" */
};

void alloc_rules_defaults(struct alloc_rules *r);

/* Name of a rule as shown to operators: "in-country", "nearest", "priority", "split", "none". */
const char *alloc_rule_name(int rule);

/*
 * Decides. nlines 1..ALLOC_MAX_LINES, nwh 0..ALLOC_MAX_WH. Returns 0 (out->rule says which
 * rule decided, ALLOC_NONE when out of stock) or -1 for invalid input (counts out of range,
 * a qty <= 0 or above 10^12, npriority out of range, a NULL pointer other than ship_country;
 * out->why then says which, when out is not NULL).
 *
 * Also:
 *  - ship_country NULL or "" is an unknown country; "UK" is GB (see geo.h). A warehouse whose
 *    country equals the ship-to country is in-country at distance 0 even when geo.c does not
 *    know the country.
 *  - Lines with the same (non-empty) SKU draw on one stock: avail[] of the SKU's first line is
 *    used, and "has every line" means it covers the lines' quantities together.
 *  - short_line is -1 unless rule is ALLOC_NONE. With splitting allowed it is the first line
 *    (the first of its SKU) whose total over eligible warehouses is below what the order needs;
 *    short_by is the difference. With splitting off it is the first line that no single
 *    eligible warehouse has whole; short_by is what the best-stocked one lacks (what all lack
 *    together, when even the total is short). When every line is whole somewhere but never all
 *    in one warehouse: the nearest eligible warehouse's first missing line and what it lacks.
 *    When an eligible warehouse has every line but rules 1-3 do not reach it (beyond
 *    max_distance_km and left off the priority list): 0 and short_by 0.
 *  - A split needing more than ALLOC_MAX_PARTS parts is ALLOC_NONE with nparts 0, short_line
 *    the line where the parts ran out and short_by its units not placed.
 *  - why is always NUL-terminated; a long text is cut after a whole piece and ends in "...".
 */
int alloc_decide(const char *ship_country, const struct alloc_line *lines, int nlines,
                 const struct alloc_wh *whs, int nwh, const struct alloc_rules *rules,
                 struct alloc_result *out);

#endif
