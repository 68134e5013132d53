/* strmap: a string -> uint32 hash map with stable key copies.
 *
 * Used for every "find by name" the simulator needs: SKU codes (up to millions), movement ids,
 * transfer ids, outbound-order ids. Keys are copied into an arena owned by the map and never
 * move, so callers may keep the pointer strmap_put hands back for as long as the map lives.
 * Not thread-safe: callers hold the simulator's state lock. */
#ifndef SIM_STRMAP_H
#define SIM_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct strmap;

/* Returns a new map sized for about `expected` keys, or NULL when out of memory. */
struct strmap *strmap_new(size_t expected);

/* Frees the map and its key copies; NULL is a no-op. */
void strmap_free(struct strmap *m);

/* Returns the value stored for key, or -1 when absent. */
int64_t strmap_get(const struct strmap *m, const char *key, size_t len);

/* Adds key -> value unless key is present. Returns 1 when added, 0 when present (the stored
 * value is left unchanged), -1 when out of memory. *stored, if not NULL, receives the map's
 * NUL-terminated copy of the key (also when it was already present). */
int strmap_put(struct strmap *m, const char *key, size_t len, uint32_t value, const char **stored);

#endif
