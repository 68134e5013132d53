/* Seeded pseudo-random numbers for the simulator's data generator.
 *
 * splitmix64: one 64-bit word of state, fast, and the same seed always yields the same stream,
 * which is what makes the generated catalog, stock and orders reproducible. Not for secrets. */
#ifndef SIM_RNG_H
#define SIM_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n); the modulo bias is irrelevant for test data. n == 0 yields 0. */
static inline uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return n ? rng_next(state) % n : 0;
}

/* Uniform in [lo, hi], both inclusive. */
static inline int64_t rng_range(uint64_t *state, int64_t lo, int64_t hi)
{
    return lo + (int64_t)rng_below(state, (uint64_t)(hi - lo) + 1);
}

/* Uniform in [0, 1). */
static inline double rng_unit(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* An independent stream for one purpose ("stock of ES-MAD", "orders"), so that changing one
 * option (say --orders) does not change the data drawn for another (the stock). */
static inline uint64_t rng_stream(uint64_t seed, uint64_t salt)
{
    uint64_t s = seed ^ (salt * 0xD6E8FEB86659FD93ull);
    return rng_next(&s);
}

/* FNV-1a, used to turn names into salts. */
static inline uint64_t rng_hash_str(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 0x100000001B3ull;
    }
    return h;
}

#endif
