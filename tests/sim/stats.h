/* stats: counters for /control/stats — requests per route, faults applied, connections refused
 * by a down link, answers per HTTP status. Thread-safe (own lock). */
#ifndef SIM_STATS_H
#define SIM_STATS_H

#include <stdint.h>

struct jb;
struct stats;

enum stats_group { SG_REQUESTS, SG_FAULTS, SG_REFUSED, SG_STATUS, SG_COUNT };

struct stats *stats_new(void);
void stats_free(struct stats *st);
/* Adds one to counter key of group (keys past a fixed maximum are counted under "other"). */
void stats_count(struct stats *st, enum stats_group g, const char *key);
/* {"requests":{...},"faults":{...},"link_refused":{...},"responses":{...}} members (no braces). */
void stats_json_members(struct stats *st, struct jb *j);

#endif
