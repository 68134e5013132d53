#include "priority.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "why.h"

void priority_rules_defaults(struct priority_rules *r)
{
    static const char *const express[] = {"DHL", "FEDEX", "UPS", "EMS", "PREMIUM"};
    memset(r, 0, sizeof *r);
    r->deadline_hours = 24;
    r->deadline_points = 100;
    r->value_minor = 10000;
    r->value_points = 20;
    for (int i = 0; i < (int)(sizeof express / sizeof express[0]); i++)
        snprintf(r->express[i], sizeof r->express[i], "%s", express[i]);
    r->nexpress = (int)(sizeof express / sizeof express[0]);
    r->express_points = 30;
    r->nvip = 0;
    r->vip_points = 10;
}

static const char *sep(const struct why_buf *b)
{
    return b->len ? ", " : "";
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* ASCII case-insensitive; locale-independent on purpose, so the score never depends on the
 * environment the daemon was started in. */
static bool equal_nocase(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (lower(*a) != lower(*b))
            return false;
    return *a == *b;
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && lower(hay[i]) == lower(needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return false;
}

/* Index of the first configured name (exact or substring) matching s, or -1. Empty names
 * never match: they would match every order. */
static int find_name(const char *s, const char *names, size_t stride, int count, bool substring)
{
    if (!s)
        return -1;
    if (count > PRIORITY_MAX_NAMES)
        count = PRIORITY_MAX_NAMES;
    for (int i = 0; i < count; i++) {
        const char *name = names + (size_t)i * stride;
        if (!memchr(name, '\0', stride) || !name[0])
            continue;
        if (substring ? contains_nocase(s, name) : equal_nocase(s, name))
            return i;
    }
    return -1;
}

/* "5 h", "40 min", "12 s": whole units, rounded down, the largest unit that is at least 1. */
static void duration(int64_t secs, char *out, size_t cap)
{
    if (secs >= 3600)
        snprintf(out, cap, "%" PRId64 " h", secs / 3600);
    else if (secs >= 60)
        snprintf(out, cap, "%" PRId64 " min", secs / 60);
    else
        snprintf(out, cap, "%" PRId64 " s", secs);
}

/* Points from the ship-by rule: 0, deadline_points when due within deadline_hours, twice that
 * when overdue (ship_by <= now). */
static int64_t deadline_points(const struct priority_rules *r, const struct priority_input *in,
                               struct why_buf *b)
{
    if (in->ship_by == 0 || r->deadline_points <= 0)
        return 0;
    int64_t left;
    if (__builtin_sub_overflow(in->ship_by, in->now, &left))
        return 0; /* absurd timestamps: neither due nor overdue */
    char d[32];
    if (left <= 0) {
        int64_t pts = 2 * (int64_t)r->deadline_points;
        duration(left == INT64_MIN ? INT64_MAX : -left, d, sizeof d);
        why_add(b, "%soverdue by %s (+%" PRId64 ")", sep(b), d, pts);
        return pts;
    }
    int64_t window;
    if (r->deadline_hours < 0 || __builtin_mul_overflow(r->deadline_hours, (int64_t)3600, &window))
        window = r->deadline_hours < 0 ? 0 : INT64_MAX;
    if (left > window)
        return 0;
    duration(left, d, sizeof d);
    why_add(b, "%sship-by in %s (+%d)", sep(b), d, r->deadline_points);
    return r->deadline_points;
}

/*
 * Rules with zero or negative points are off: they neither score nor appear in the reasons,
 * so a score of 0 always comes with "". The score saturates at INT_MAX.
 */
int priority_score(const struct priority_rules *r, const struct priority_input *in, char *why,
                   size_t cap)
{
    char scratch[1];
    if (!why || cap == 0) {
        why = scratch;
        cap = sizeof scratch;
    }
    why[0] = '\0';
    if (!r || !in)
        return 0;
    struct why_buf b = {why, cap, 0, false};
    int64_t score = deadline_points(r, in, &b);

    if (r->value_minor > 0 && r->value_points > 0 && in->total_minor >= r->value_minor) {
        why_add(&b, "%svalue %" PRId64 ".%02" PRId64 " (+%d)", sep(&b), in->total_minor / 100,
                in->total_minor % 100, r->value_points);
        score += r->value_points;
    }
    int i = find_name(in->service, &r->express[0][0], sizeof r->express[0], r->nexpress, true);
    if (i >= 0 && r->express_points > 0) {
        why_add(&b, "%sexpress %s (+%d)", sep(&b), r->express[i], r->express_points);
        score += r->express_points;
    }
    i = find_name(in->buyer_level, &r->vip_levels[0][0], sizeof r->vip_levels[0], r->nvip, false);
    if (i >= 0 && r->vip_points > 0) {
        why_add(&b, "%sVIP buyer %s (+%d)", sep(&b), r->vip_levels[i], r->vip_points);
        score += r->vip_points;
    }
    return score > INT_MAX ? INT_MAX : (int)score;
}
