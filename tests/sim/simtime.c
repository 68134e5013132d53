#include "simtime.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Day number of the n-th Sunday of month m in year y. */
static int64_t nth_sunday(int64_t y, unsigned m, int n)
{
    int64_t d1 = days_from_civil(y, m, 1);
    int64_t wd = ((d1 + 4) % 7 + 7) % 7; /* 0 = Sunday; day 0 was a Thursday */
    return d1 + (7 - wd) % 7 + 7 * (n - 1);
}

static int64_t civil_year(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    return (int64_t)tm.tm_year + 1900;
}

/* Whether instant t (UTC seconds) falls in US Pacific daylight time. */
static int pacific_dst(int64_t t)
{
    int64_t y = civil_year(t - 8 * 3600);
    int64_t start = nth_sunday(y, 3, 2) * 86400 + 10 * 3600; /* 02:00 PST */
    int64_t end = nth_sunday(y, 11, 1) * 86400 + 9 * 3600;   /* 02:00 PDT */
    return t >= start && t < end;
}

static void fmt_utc(int64_t t, const char *fmt, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, fmt, &tm);
}

void st_fmt_pacific(int64_t t, char out[ST_PACIFIC_LEN])
{
    int64_t local = t + (pacific_dst(t) ? -7 : -8) * 3600;
    fmt_utc(local, "%Y-%m-%d %H:%M:%S", out, ST_PACIFIC_LEN);
}

void st_fmt_gmt8(int64_t t, char out[ST_PACIFIC_LEN])
{
    fmt_utc(t + 8 * 3600, "%Y-%m-%d %H:%M:%S", out, ST_PACIFIC_LEN);
}

int st_parse_pacific(const char *s, int64_t *t)
{
    int y, mo, d, h, mi, se;
    char tail;
    if (!s || sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &se, &tail) != 6)
        return -1;
    if (y < 1970 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        se > 60 || h < 0 || mi < 0 || se < 0)
        return -1;
    int64_t local = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
    int64_t as_pdt = local + 7 * 3600;
    *t = pacific_dst(as_pdt) ? as_pdt : local + 8 * 3600;
    return 0;
}

void st_fmt_iso(int64_t t, char out[ST_ISO_LEN])
{
    fmt_utc(t, "%Y-%m-%dT%H:%M:%SZ", out, ST_ISO_LEN);
}

void st_fmt_iso_ms(int64_t ms, char out[ST_ISO_MS_LEN])
{
    int64_t s = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    char base[ST_ISO_LEN - 1]; /* without the Z */
    fmt_utc(s, "%Y-%m-%dT%H:%M:%S", base, sizeof(base));
    snprintf(out, ST_ISO_MS_LEN, "%s.%03uZ", base, (unsigned)(ms - s * 1000) % 1000u);
}

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t st_realtime_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

int64_t st_monotonic_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}
