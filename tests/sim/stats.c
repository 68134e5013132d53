#include "stats.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "json_out.h"

#define STATS_MAX_KEYS 1024
#define STATS_KEY_MAX 96

struct counter {
    char key[STATS_KEY_MAX];
    uint64_t n;
};

struct stats {
    pthread_mutex_t lock;
    struct counter *c[SG_COUNT];
    size_t n[SG_COUNT];
};

static const char *const group_names[SG_COUNT] = {"requests", "faults", "link_refused",
                                                  "responses"};

struct stats *stats_new(void)
{
    struct stats *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    for (int g = 0; g < SG_COUNT; g++) {
        st->c[g] = calloc(STATS_MAX_KEYS, sizeof(struct counter));
        if (!st->c[g]) {
            stats_free(st);
            return NULL;
        }
    }
    pthread_mutex_init(&st->lock, NULL);
    return st;
}

void stats_free(struct stats *st)
{
    if (!st)
        return;
    for (int g = 0; g < SG_COUNT; g++)
        free(st->c[g]);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

void stats_count(struct stats *st, enum stats_group g, const char *key)
{
    pthread_mutex_lock(&st->lock);
    size_t i;
    for (i = 0; i < st->n[g]; i++)
        if (strncmp(st->c[g][i].key, key, STATS_KEY_MAX - 1) == 0)
            break;
    if (i == st->n[g]) {
        if (i >= STATS_MAX_KEYS - 1)
            key = "other";
        for (i = 0; i < st->n[g]; i++)
            if (strcmp(st->c[g][i].key, key) == 0)
                break;
        if (i == st->n[g]) {
            strncpy(st->c[g][i].key, key, STATS_KEY_MAX - 1);
            st->n[g]++;
        }
    }
    st->c[g][i].n++;
    pthread_mutex_unlock(&st->lock);
}

void stats_json_members(struct stats *st, struct jb *j)
{
    pthread_mutex_lock(&st->lock);
    for (int g = 0; g < SG_COUNT; g++) {
        jb_kv_obj(j, group_names[g]);
        for (size_t i = 0; i < st->n[g]; i++)
            jb_kv_i64(j, st->c[g][i].key, (int64_t)st->c[g][i].n);
        jb_obj_end(j);
    }
    pthread_mutex_unlock(&st->lock);
}
