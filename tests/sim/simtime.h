/* simtime: time formats the two upstreams use.
 *
 * The marketplace speaks "yyyy-MM-dd HH:mm:ss" in US Pacific time (the platform documents its
 * order and product times that way), with US daylight saving computed here (second Sunday of
 * March to first Sunday of November), so nothing depends on the host's tz database. The
 * warehouses speak ISO 8601 UTC. All functions are pure and thread-safe. */
#ifndef SIM_SIMTIME_H
#define SIM_SIMTIME_H

#include <stdint.h>

#define ST_PACIFIC_LEN 20 /* "2026-11-24 07:31:00" + NUL */
#define ST_ISO_LEN 21     /* "2026-11-24T15:31:00Z" + NUL */
#define ST_ISO_MS_LEN 25  /* "2026-11-24T15:31:00.123Z" + NUL */

void st_fmt_pacific(int64_t t, char out[ST_PACIFIC_LEN]);
/* The same shape in GMT+8: the answers' time_stamp (a live capture of the gateway showed
 * GMT+8 there; the zone is not documented). */
void st_fmt_gmt8(int64_t t, char out[ST_PACIFIC_LEN]);
/* Parses a Pacific-time "yyyy-MM-dd HH:mm:ss" into epoch seconds; 0 ok, -1 malformed. */
int st_parse_pacific(const char *s, int64_t *t);
void st_fmt_iso(int64_t t, char out[ST_ISO_LEN]);
void st_fmt_iso_ms(int64_t ms, char out[ST_ISO_MS_LEN]);

/* Wall clock and monotonic clock, in milliseconds. */
int64_t st_realtime_ms(void);
int64_t st_monotonic_ms(void);

#endif
