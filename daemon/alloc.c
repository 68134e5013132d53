#include "alloc.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "geo.h"
#include "why.h"

/* A line of more than this many units is a data error, not an order. With it, sums over all
 * lines and warehouses stay far from overflow. */
#define QTY_LIMIT INT64_C(1000000000000)
/* Stock beyond what any order can need (every line at QTY_LIMIT, one SKU) changes no decision;
 * clamping to it keeps totals in range. */
#define STOCK_LIMIT (QTY_LIMIT * ALLOC_MAX_LINES)

#define CODE_MAX ((int)sizeof(((struct alloc_wh *)0)->code) - 1)
#define SKU_MAX ((int)sizeof(((struct alloc_line *)0)->sku) - 1)

/* Everything the rules look at, computed once per decision. */
struct ctx {
    const char *ship; /* ship-to country; "" when unknown */
    const struct alloc_line *lines;
    int nlines;
    const struct alloc_wh *whs;
    int nwh;
    const struct alloc_rules *rules;
    /* Lines of one SKU draw on the same stock: head[l] is the first line with l's SKU, and
     * need[] and stock[][] are kept at heads only (a line with an empty SKU is its own head). */
    int head[ALLOC_MAX_LINES];
    int64_t need[ALLOC_MAX_LINES]; /* units of the head's SKU the whole order needs */
    int64_t stock[ALLOC_MAX_WH][ALLOC_MAX_LINES]; /* available units, >= 0; never changed */
    int64_t left[ALLOC_MAX_WH][ALLOC_MAX_LINES];  /* rule 4's working copy: not yet taken */
    int dist[ALLOC_MAX_WH];  /* km from the ship-to country; 0 in-country; -1 unknown */
    int rank[ALLOC_MAX_WH];  /* first position in the priority list; npriority when absent */
    bool near[ALLOC_MAX_WH]; /* in-country or within max_distance_km: rules 1 and 2's ground */
};

typedef int (*wh_cmp)(const struct ctx *c, int a, int b);

/* ---- the explanation ---------------------------------------------------------------- */

static const char *code_of(const struct ctx *c, int w)
{
    return c->whs[w].code;
}

/* A line as the operator knows it: its SKU, or its position when the SKU is empty. */
static const char *line_name(const struct ctx *c, int l, char *buf, size_t cap)
{
    if (c->lines[l].sku[0])
        snprintf(buf, cap, "%.*s", SKU_MAX, c->lines[l].sku);
    else
        snprintf(buf, cap, "line %d", l + 1);
    return buf;
}

/* The ship-to country comes from the order: printed with "%.20s" at most, so that a malformed
 * one cannot crowd out the explanation. */
static const char *ship_name(const struct ctx *c)
{
    return c->ship[0] ? c->ship : "an unknown country";
}

/* ---- facts about warehouses ----------------------------------------------------------- */

static const char *normal_country(const char *cc)
{
    return strncmp(cc, "UK", 3) == 0 ? "GB" : cc; /* as geo.c: marketplaces say UK */
}

static bool in_country(const struct ctx *c, int w)
{
    return c->ship[0] &&
           strncmp(normal_country(c->ship), normal_country(c->whs[w].country), 3) == 0;
}

/* The first head line whose SKU w does not have enough of, or -1 when w has every line. */
static int first_lack(const struct ctx *c, int w)
{
    for (int l = 0; l < c->nlines; l++)
        if (c->head[l] == l && c->stock[w][l] < c->need[l])
            return l;
    return -1;
}

static bool has_every_line(const struct ctx *c, int w)
{
    return first_lack(c, w) < 0;
}

static bool usable(const struct ctx *c, int w)
{
    return c->whs[w].eligible && has_every_line(c, w);
}

/* Total orders; the index breaks ties between equal codes, so every order is strict. */
static int cmp_code(const struct ctx *c, int a, int b)
{
    int r = strncmp(code_of(c, a), code_of(c, b), (size_t)CODE_MAX + 1);
    return r ? r : (a > b) - (a < b);
}

static int cmp_rank(const struct ctx *c, int a, int b)
{
    if (c->rank[a] != c->rank[b])
        return c->rank[a] < c->rank[b] ? -1 : 1;
    return cmp_code(c, a, b);
}

/* Known distances first, nearest first; then by code. */
static int cmp_nearest(const struct ctx *c, int a, int b)
{
    int da = c->dist[a], db = c->dist[b];
    if ((da < 0) != (db < 0))
        return da < 0 ? 1 : -1;
    if (da != db)
        return da < db ? -1 : 1;
    return cmp_code(c, a, b);
}

/* Rule 2's order: distance, then the priority list, then code. */
static int cmp_radius(const struct ctx *c, int a, int b)
{
    int da = c->dist[a], db = c->dist[b];
    if (da != db)
        return da < db ? -1 : 1;
    return cmp_rank(c, a, b);
}

/* The warehouses for which member() holds, sorted by cmp (insertion sort: n <= 32). */
static int sorted_whs(const struct ctx *c, bool (*member)(const struct ctx *, int), wh_cmp cmp,
                      int *idx)
{
    int n = 0;
    for (int w = 0; w < c->nwh; w++) {
        if (member && !member(c, w))
            continue;
        int k = n++;
        for (; k > 0 && cmp(c, w, idx[k - 1]) < 0; k--)
            idx[k] = idx[k - 1];
        idx[k] = w;
    }
    return n;
}

static bool is_near(const struct ctx *c, int w)
{
    return c->near[w];
}

static bool is_eligible(const struct ctx *c, int w)
{
    return c->whs[w].eligible;
}

/* "; ES-MAD lacks KX-2 (needs 2, has 1)" or "; ES-MAD not eligible"; nothing when w could
 * have taken the order. */
static void say_passed_over(const struct ctx *c, struct why_buf *b, int w)
{
    char name[80];
    if (!c->whs[w].eligible) {
        why_add(b, "; %.*s not eligible", CODE_MAX, code_of(c, w));
        return;
    }
    int l = first_lack(c, w);
    if (l >= 0)
        why_add(b, "; %.*s lacks %s (needs %" PRId64 ", has %" PRId64 ")", CODE_MAX, code_of(c, w),
                line_name(c, l, name, sizeof name), c->need[l], c->stock[w][l]);
}

/* Why each member ahead of `chosen` in cmp's order (all members when chosen < 0) lost. */
static void say_passed_before(const struct ctx *c, struct why_buf *b, int chosen,
                              bool (*member)(const struct ctx *, int), wh_cmp cmp)
{
    int idx[ALLOC_MAX_WH];
    int n = sorted_whs(c, member, cmp, idx);
    for (int i = 0; i < n && idx[i] != chosen; i++)
        say_passed_over(c, b, idx[i]);
}

/* ---- rules 1 to 3: one warehouse with every line -------------------------------------- */

static int best_usable(const struct ctx *c, bool (*member)(const struct ctx *, int), wh_cmp cmp,
                       int except)
{
    int best = -1;
    for (int w = 0; w < c->nwh; w++)
        if (w != except && (!member || member(c, w)) && usable(c, w) &&
            (best < 0 || cmp(c, w, best) < 0))
            best = w;
    return best;
}

static bool is_in_country(const struct ctx *c, int w)
{
    return in_country(c, w);
}

static int rule_in_country(const struct ctx *c, struct why_buf *b)
{
    int w = best_usable(c, is_in_country, cmp_rank, -1);
    if (w < 0)
        return -1;
    why_add(b, "%.*s: in-country (%.20s) with every line", CODE_MAX, code_of(c, w), c->ship);
    int next = best_usable(c, is_in_country, cmp_rank, w);
    if (next >= 0)
        why_add(b, "; preferred to %.*s (%s)", CODE_MAX, code_of(c, next),
                c->rank[w] != c->rank[next] ? "priority list" : "code order");
    return w;
}

static bool within_radius(const struct ctx *c, int w)
{
    return c->near[w] && c->dist[w] >= 0;
}

static int rule_nearest(const struct ctx *c, struct why_buf *b)
{
    int w = best_usable(c, within_radius, cmp_radius, -1);
    if (w < 0)
        return -1;
    why_add(b, "%.*s: nearest to %.20s (%d km) with every line", CODE_MAX, code_of(c, w), c->ship,
            c->dist[w]);
    say_passed_before(c, b, w, is_near, cmp_radius);
    return w;
}

static bool is_listed(const struct ctx *c, int w)
{
    return c->rank[w] < c->rules->npriority;
}

static bool listed_not_near(const struct ctx *c, int w)
{
    return is_listed(c, w) && !c->near[w];
}

static int rule_priority(const struct ctx *c, struct why_buf *b)
{
    if (c->rules->npriority > 0) {
        int w = best_usable(c, is_listed, cmp_rank, -1);
        if (w < 0)
            return -1;
        why_add(b, "%.*s: priority list #%d with every line", CODE_MAX, code_of(c, w),
                c->rank[w] + 1);
        say_passed_before(c, b, -1, is_near, cmp_radius);
        say_passed_before(c, b, w, listed_not_near, cmp_rank);
        return w;
    }
    int w = best_usable(c, NULL, cmp_nearest, -1);
    if (w < 0)
        return -1;
    if (c->dist[w] >= 0)
        why_add(
            b, "%.*s: priority (no list): nearest with every line, %d km from %.20s (beyond %d km)",
            CODE_MAX, code_of(c, w), c->dist[w], c->ship, c->rules->max_distance_km);
    else
        why_add(b,
                "%.*s: priority (no list): first by code with every line (no distance from %.20s)",
                CODE_MAX, code_of(c, w), ship_name(c));
    say_passed_before(c, b, w, NULL, cmp_nearest);
    return w;
}

static void one_warehouse(const struct ctx *c, int w, struct alloc_result *out)
{
    for (int l = 0; l < c->nlines; l++)
        out->parts[out->nparts++] = (struct alloc_part){l, w, c->lines[l].qty};
}

/* ---- rule 5: what is missing ---------------------------------------------------------- */

static void say_ineligible(const struct ctx *c, struct why_buf *b)
{
    const char *lead = " (not eligible: ";
    for (int w = 0; w < c->nwh; w++)
        if (!c->whs[w].eligible) {
            why_add(b, "%s%.*s", lead, CODE_MAX, code_of(c, w));
            lead = ", ";
        }
    if (lead[0] == ',')
        why_add(b, ")");
}

static int64_t total_eligible(const struct ctx *c, int l)
{
    int64_t t = 0;
    for (int w = 0; w < c->nwh; w++)
        if (c->whs[w].eligible)
            t += c->stock[w][l];
    return t;
}

/* The first head line of which the eligible warehouses together have too little, or -1. */
static int first_short_in_total(const struct ctx *c)
{
    for (int l = 0; l < c->nlines; l++)
        if (c->head[l] == l && total_eligible(c, l) < c->need[l])
            return l;
    return -1;
}

static void out_of_stock(const struct ctx *c, int l, struct alloc_result *out, struct why_buf *b)
{
    char name[80];
    int64_t total = total_eligible(c, l);
    out->short_line = l;
    out->short_by = c->need[l] - total;
    line_name(c, l, name, sizeof name);
    if (c->nwh == 0) {
        why_add(b, "out of stock: %s needs %" PRId64 ", no warehouses", name, c->need[l]);
        return;
    }
    bool all = true;
    for (int w = 0; w < c->nwh; w++)
        all = all && c->whs[w].eligible;
    why_add(b, "out of stock: %s needs %" PRId64 ", %" PRId64 " available in %s warehouses", name,
            c->need[l], total, all ? "all" : "eligible");
    say_ineligible(c, b);
}

/*
 * Splitting is off and no rule found one warehouse. short_line is the first line that no
 * single eligible warehouse has whole (short_by: what the best-stocked one lacks, or what all
 * lack together when even the total is short). When every line is whole somewhere: the
 * nearest eligible warehouse's first missing line, or 0 by 0 when some warehouse has every
 * line but rules 1-3 could not reach it.
 */
static void no_split(const struct ctx *c, struct alloc_result *out, struct why_buf *b)
{
    char name[80];
    for (int l = 0; l < c->nlines; l++) {
        if (c->head[l] != l)
            continue;
        int most = -1;
        for (int w = 0; w < c->nwh; w++)
            if (c->whs[w].eligible &&
                (most < 0 || c->stock[w][l] > c->stock[most][l] ||
                 (c->stock[w][l] == c->stock[most][l] && cmp_nearest(c, w, most) < 0)))
                most = w;
        if (most >= 0 && c->stock[most][l] >= c->need[l])
            continue;
        if (most < 0 || total_eligible(c, l) < c->need[l]) {
            out_of_stock(c, l, out, b);
            return;
        }
        out->short_line = l;
        out->short_by = c->need[l] - c->stock[most][l];
        why_add(b,
                "none: %s needs %" PRId64 ", at most %" PRId64
                " in one warehouse (%.*s) and splitting is off",
                line_name(c, l, name, sizeof name), c->need[l], c->stock[most][l], CODE_MAX,
                code_of(c, most));
        return;
    }
    /* Every line is whole somewhere, just never all in one reachable place. */
    int far = best_usable(c, NULL, cmp_nearest, -1);
    if (far >= 0) {
        /* Only possible with a priority list that leaves it out, beyond max_distance_km. */
        out->short_line = 0;
        out->short_by = 0;
        why_add(b,
                "none: only %.*s has every line, but it is beyond %d km and not on the priority"
                " list, and splitting is off",
                CODE_MAX, code_of(c, far), c->rules->max_distance_km);
        return;
    }
    int idx[ALLOC_MAX_WH];
    sorted_whs(c, is_eligible, cmp_nearest, idx); /* non-empty: some line was whole */
    int l = first_lack(c, idx[0]);
    out->short_line = l;
    out->short_by = c->need[l] - c->stock[idx[0]][l];
    why_add(b, "none: no warehouse has every line and splitting is off");
    say_passed_over(c, b, idx[0]);
}

/* ---- rule 4: split -------------------------------------------------------------------- */

/*
 * Units of the not yet whole-filled lines (whole_wh[l] < 0) that w can fill whole, taking
 * lines in order so that lines of one SKU share its stock. With commit, records them.
 */
static int64_t fill_whole(struct ctx *c, int w, int *whole_wh, bool commit)
{
    int64_t left[ALLOC_MAX_LINES], units = 0;
    memcpy(left, c->left[w], sizeof left);
    for (int l = 0; l < c->nlines; l++) {
        int64_t q = c->lines[l].qty;
        if (whole_wh[l] >= 0 || left[c->head[l]] < q)
            continue;
        left[c->head[l]] -= q;
        units += q;
        if (commit)
            whole_wh[l] = w;
    }
    if (commit)
        memcpy(c->left[w], left, sizeof left);
    return units;
}

static bool add_part(struct alloc_result *out, int l, int w, int64_t qty)
{
    if (out->nparts >= ALLOC_MAX_PARTS)
        return false;
    out->parts[out->nparts++] = (struct alloc_part){l, w, qty};
    return true;
}

/* Fills line l from several warehouses, nearest first. Returns the units left unplaced: 0,
 * or more when the parts table is full. */
static int64_t fill_split_line(struct ctx *c, int l, const int *near_first, int n,
                               struct alloc_result *out)
{
    int64_t rem = c->lines[l].qty;
    for (int i = 0; i < n && rem > 0; i++) {
        int64_t *s = &c->left[near_first[i]][c->head[l]];
        int64_t take = *s < rem ? *s : rem;
        if (take == 0)
            continue;
        if (!add_part(out, l, near_first[i], take))
            return rem;
        *s -= take;
        rem -= take;
    }
    return rem;
}

/* "split over 2 warehouses: ES-MAD (KX-1, KX-2 3 of 5), FR-PAR (KX-2 2 of 5); ..." with the
 * warehouses nearest first. */
static void say_split(const struct ctx *c, const struct alloc_result *out, struct why_buf *b)
{
    bool used[ALLOC_MAX_WH] = {false};
    int nused = 0;
    for (int p = 0; p < out->nparts; p++) {
        nused += !used[out->parts[p].wh];
        used[out->parts[p].wh] = true;
    }
    why_add(b, "split over %d warehouse%s:", nused, nused == 1 ? "" : "s");
    int idx[ALLOC_MAX_WH];
    int n = sorted_whs(c, is_eligible, cmp_nearest, idx);
    const char *wsep = " ";
    for (int i = 0; i < n; i++) {
        if (!used[idx[i]])
            continue;
        why_add(b, "%s%.*s (", wsep, CODE_MAX, code_of(c, idx[i]));
        wsep = ", ";
        const char *lead = "";
        for (int p = 0; p < out->nparts; p++) {
            const struct alloc_part *pt = &out->parts[p];
            char name[80];
            if (pt->wh != idx[i])
                continue;
            line_name(c, pt->line, name, sizeof name);
            if (pt->qty == c->lines[pt->line].qty)
                why_add(b, "%s%s", lead, name);
            else
                why_add(b, "%s%s %" PRId64 " of %" PRId64, lead, name, pt->qty,
                        c->lines[pt->line].qty);
            lead = ", ";
        }
        why_add(b, ")");
    }
    if (c->rules->npriority > 0)
        why_add(b, "; no warehouse within %d km or on the priority list has every line",
                c->rules->max_distance_km);
    else
        why_add(b, "; no warehouse has every line");
    say_passed_before(c, b, -1, is_near, cmp_radius);
}

/* Enough stock in total is a precondition (first_short_in_total() < 0). Returns 0, or -1 when
 * the order needs more than ALLOC_MAX_PARTS parts (out->short_* then name where it stopped). */
static int rule_split(struct ctx *c, struct alloc_result *out, struct why_buf *b)
{
    int whole_wh[ALLOC_MAX_LINES];
    memcpy(c->left, c->stock, sizeof c->left);
    for (int l = 0; l < c->nlines; l++)
        whole_wh[l] = -1;
    /* Greedy: each round, the warehouse that fills the most units whole. Every round fills at
     * least one line, so at most nlines rounds. */
    for (;;) {
        int best = -1;
        int64_t best_units = 0;
        for (int w = 0; w < c->nwh; w++) {
            if (!c->whs[w].eligible)
                continue;
            int64_t u = fill_whole(c, w, whole_wh, false);
            if (u > best_units || (u > 0 && u == best_units && cmp_nearest(c, w, best) < 0)) {
                best = w;
                best_units = u;
            }
        }
        if (best < 0)
            break;
        fill_whole(c, best, whole_wh, true);
    }
    int near_first[ALLOC_MAX_WH];
    int n = sorted_whs(c, is_eligible, cmp_nearest, near_first);
    for (int l = 0; l < c->nlines; l++) {
        int64_t rem = whole_wh[l] >= 0
                          ? (add_part(out, l, whole_wh[l], c->lines[l].qty) ? 0 : c->lines[l].qty)
                          : fill_split_line(c, l, near_first, n, out);
        if (rem > 0) {
            char name[80];
            out->short_line = l;
            out->short_by = rem;
            why_add(b, "none: splitting needs more than %d parts (stopped at %s)", ALLOC_MAX_PARTS,
                    line_name(c, l, name, sizeof name));
            return -1;
        }
    }
    say_split(c, out, b);
    return 0;
}

/* ---- the decision --------------------------------------------------------------------- */

void alloc_rules_defaults(struct alloc_rules *r)
{
    memset(r, 0, sizeof *r);
    r->max_distance_km = 1500;
    r->npriority = 0;
    r->allow_split = true;
}

const char *alloc_rule_name(int rule)
{
    static const char *const names[] = {"none", "in-country", "nearest", "priority", "split"};
    return rule >= ALLOC_NONE && rule <= ALLOC_SPLIT ? names[rule] : "?";
}

static int invalid(struct alloc_result *out, const char *what)
{
    if (out) {
        memset(out, 0, sizeof *out);
        out->short_line = -1;
        snprintf(out->why, sizeof out->why, "invalid input: %s", what);
    }
    return -1;
}

static bool same_sku(const struct alloc_line *a, const struct alloc_line *b)
{
    return a->sku[0] && strncmp(a->sku, b->sku, (size_t)SKU_MAX + 1) == 0;
}

static void ctx_init(struct ctx *c)
{
    for (int l = 0; l < c->nlines; l++) {
        c->head[l] = l;
        for (int k = 0; k < l; k++)
            if (same_sku(&c->lines[k], &c->lines[l])) {
                c->head[l] = k;
                break;
            }
        c->need[l] = 0;
        c->need[c->head[l]] += c->lines[l].qty;
    }
    for (int w = 0; w < c->nwh; w++) {
        for (int l = 0; l < c->nlines; l++) {
            int64_t a = c->whs[w].avail[c->head[l]];
            c->stock[w][l] = a < 0 ? 0 : a > STOCK_LIMIT ? STOCK_LIMIT : a;
        }
        c->dist[w] = in_country(c, w) ? 0 : geo_distance_km(c->ship, c->whs[w].country);
        c->near[w] =
            in_country(c, w) || (c->dist[w] >= 0 && c->dist[w] <= c->rules->max_distance_km);
        c->rank[w] = c->rules->npriority;
        for (int i = 0; i < c->rules->npriority; i++)
            if (strncmp(c->rules->priority[i], code_of(c, w), (size_t)CODE_MAX + 1) == 0) {
                c->rank[w] = i;
                break;
            }
    }
}

int alloc_decide(const char *ship_country, const struct alloc_line *lines, int nlines,
                 const struct alloc_wh *whs, int nwh, const struct alloc_rules *rules,
                 struct alloc_result *out)
{
    if (!out)
        return -1;
    if (!lines || nlines < 1 || nlines > ALLOC_MAX_LINES)
        return invalid(out, "number of lines out of range");
    if (nwh < 0 || nwh > ALLOC_MAX_WH || (nwh > 0 && !whs))
        return invalid(out, "number of warehouses out of range");
    if (!rules || rules->npriority < 0 || rules->npriority > ALLOC_MAX_WH)
        return invalid(out, "bad allocation rules");
    for (int l = 0; l < nlines; l++)
        if (lines[l].qty <= 0 || lines[l].qty > QTY_LIMIT) {
            char what[64];
            snprintf(what, sizeof what, "line %d has quantity %" PRId64 " (1 to 10^12)", l + 1,
                     lines[l].qty);
            return invalid(out, what);
        }

    struct ctx c;
    memset(&c, 0, sizeof c);
    c.ship = ship_country ? ship_country : "";
    c.lines = lines;
    c.nlines = nlines;
    c.whs = whs;
    c.nwh = nwh;
    c.rules = rules;
    ctx_init(&c);

    memset(out, 0, sizeof *out);
    out->short_line = -1;
    struct why_buf b = {out->why, sizeof out->why, 0, false};
    int w;
    if ((w = rule_in_country(&c, &b)) >= 0)
        out->rule = ALLOC_IN_COUNTRY;
    else if ((w = rule_nearest(&c, &b)) >= 0)
        out->rule = ALLOC_NEAREST;
    else if ((w = rule_priority(&c, &b)) >= 0)
        out->rule = ALLOC_PRIORITY;
    if (w >= 0) {
        one_warehouse(&c, w, out);
        return 0;
    }
    out->rule = ALLOC_NONE;
    if (!rules->allow_split) {
        no_split(&c, out, &b);
        return 0;
    }
    int l = first_short_in_total(&c);
    if (l >= 0) {
        out_of_stock(&c, l, out, &b);
        return 0;
    }
    if (rule_split(&c, out, &b) == 0)
        out->rule = ALLOC_SPLIT;
    else
        out->nparts = 0;
    return 0;
}
