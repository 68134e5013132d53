/* gen: the seeded, deterministic data generator.
 *
 * Same seed and options -> same catalog, stock and initial orders (only the times move with the
 * clock; --start-time pins that too). Each kind of data draws from its own stream, so e.g.
 * changing --orders does not change the stock. Buyers and addresses are not stored: they are
 * regenerated from an order's buyer_seed whenever an answer needs them. */
#ifndef SIM_GEN_H
#define SIM_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"

#define GEN_N_COUNTRIES 8
#define GEN_N_COLOURS 10
#define GEN_N_SIZES 6
#define GEN_COLOUR_PROPERTY_ID 14
#define GEN_SIZE_PROPERTY_ID 5

struct buyer {
    char first[32], last[32], login[40];
    char street[96], city[48], province[48], zip[16], phone[24];
    char country[3];
    char phone_country[6];
};

/* Generates catalog, stock of every warehouse, initial marketplace stock and initial orders.
 * 0, or -1 with a message in err. */
int gen_world(struct sim *s, char *err, size_t errlen);

/* Random lines for a new order (1-3 distinct SKUs); returns the number of lines. */
int gen_order_lines(const struct sim *s, uint64_t *rng, struct order_line *lines);
int gen_country(uint64_t *rng);
const char *gen_country_code(int country);
void gen_buyer(uint64_t buyer_seed, int country, struct buyer *b);

void gen_product_title(const struct sim *s, size_t product, char *out, size_t n);
const char *gen_colour_name(int c);
int64_t gen_colour_value_id(int c);
const char *gen_size_name(int sz);
int64_t gen_size_value_id(int sz);
/* "Color:Black Size:M", or "" for a product without variants. */
void gen_sku_standard(const struct sku *k, char *out, size_t n);

/* A carrier and a UPU S10 tracking number (with a valid check digit) for a parcel shipped from
 * the warehouse `wh_code`; serial makes it unique. */
void gen_tracking(const char *wh_code, uint64_t serial, char carrier[24], char tracking[40]);

#endif
