/* Open addressing with linear probing over an index table; entries are kept in insertion order
 * in a separate array, so the table itself is 4 bytes per slot. The load factor stays <= 1/2. */
#include "strmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (1u << 20)

struct entry {
    const char *key;
    uint32_t len;
    uint32_t value;
    uint64_t hash;
};

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, size;
    char data[];
};

struct strmap {
    uint32_t *slots; /* entry index + 1; 0 = empty */
    size_t mask;
    struct entry *entries;
    size_t count, cap;
    struct arena_chunk *chunks;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001B3ull;
    }
    return h ^ (h >> 29);
}

static char *arena_copy(struct strmap *m, const char *s, size_t n)
{
    struct arena_chunk *c = m->chunks;
    if (!c || c->size - c->used < n + 1) {
        size_t size = n + 1 > ARENA_CHUNK ? n + 1 : ARENA_CHUNK;
        c = malloc(sizeof(*c) + size);
        if (!c)
            return NULL;
        c->next = m->chunks;
        c->used = 0;
        c->size = size;
        m->chunks = c;
    }
    char *p = c->data + c->used;
    memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

struct strmap *strmap_new(size_t expected)
{
    struct strmap *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    size_t slots = 16;
    while (slots < expected * 2)
        slots *= 2;
    m->slots = calloc(slots, sizeof(*m->slots));
    m->cap = expected > 8 ? expected : 8;
    m->entries = malloc(m->cap * sizeof(*m->entries));
    if (!m->slots || !m->entries) {
        strmap_free(m);
        return NULL;
    }
    m->mask = slots - 1;
    return m;
}

void strmap_free(struct strmap *m)
{
    if (!m)
        return;
    struct arena_chunk *c = m->chunks;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(m->slots);
    free(m->entries);
    free(m);
}

static size_t find_slot(const struct strmap *m, const char *key, size_t len, uint64_t h,
                        bool *found)
{
    size_t i = (size_t)h & m->mask;
    for (;;) {
        uint32_t e = m->slots[i];
        if (e == 0) {
            *found = false;
            return i;
        }
        const struct entry *en = &m->entries[e - 1];
        if (en->hash == h && en->len == len && memcmp(en->key, key, len) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & m->mask;
    }
}

static int grow_slots(struct strmap *m)
{
    size_t n = (m->mask + 1) * 2;
    uint32_t *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t e = 0; e < m->count; e++) {
        size_t i = (size_t)m->entries[e].hash & (n - 1);
        while (slots[i])
            i = (i + 1) & (n - 1);
        slots[i] = (uint32_t)(e + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->mask = n - 1;
    return 0;
}

int64_t strmap_get(const struct strmap *m, const char *key, size_t len)
{
    bool found;
    size_t i = find_slot(m, key, len, hash_bytes(key, len), &found);
    return found ? (int64_t)m->entries[m->slots[i] - 1].value : -1;
}

int strmap_put(struct strmap *m, const char *key, size_t len, uint32_t value, const char **stored)
{
    if (len > UINT32_MAX || m->count >= UINT32_MAX - 1)
        return -1;
    uint64_t h = hash_bytes(key, len);
    bool found;
    size_t i = find_slot(m, key, len, h, &found);
    if (found) {
        if (stored)
            *stored = m->entries[m->slots[i] - 1].key;
        return 0;
    }
    if ((m->count + 1) * 2 > m->mask + 1) {
        if (grow_slots(m) < 0)
            return -1;
        i = find_slot(m, key, len, h, &found);
    }
    if (m->count == m->cap) {
        size_t cap = m->cap * 2;
        struct entry *e = realloc(m->entries, cap * sizeof(*e));
        if (!e)
            return -1;
        m->entries = e;
        m->cap = cap;
    }
    char *copy = arena_copy(m, key, len);
    if (!copy)
        return -1;
    m->entries[m->count] = (struct entry){copy, (uint32_t)len, value, h};
    m->slots[i] = (uint32_t)(++m->count);
    if (stored)
        *stored = copy;
    return 1;
}
