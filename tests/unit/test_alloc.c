/*
 * Allocation, table by table: each case is an order (ship-to country and lines), the
 * warehouses with their stock, the rules, and the decision expected. Every case also runs with
 * the warehouses in reverse order and must decide the same, so no answer depends on the order
 * fulfil.c happens to read them in. Distances from ES used below (geo.c's centroids): PT 377,
 * FR 846, GB 1515, DE 1618, PL 2157 km.
 */
#include "alloc.h"
#include "check.h"
#include "geo.h"

struct wh_spec {
    const char *code, *country;
    bool off; /* not eligible */
    int64_t avail[3];
};

struct part_spec {
    int line;
    const char *wh;
    int64_t qty;
};

struct alloc_case {
    const char *name;
    const char *ship;
    int nlines;
    struct {
        const char *sku;
        int64_t qty;
    } lines[3];
    int nwh;
    struct wh_spec whs[5];
    int max_km;          /* 0: the default */
    const char *prio[3]; /* the priority list, NULL-terminated */
    bool no_split;
    int npriority; /* overrides the list's length when non-zero (invalid input) */

    int rc;
    int rule;
    int nparts;
    struct part_spec parts[6];
    int short_line;
    int64_t short_by;
    const char *why; /* a substring of out.why */
};

/* Two lines by default: KX-1 x2, KX-2 x1. */
#define TWO_LINES .nlines = 2, .lines = {{"KX-1", 2}, {"KX-2", 1}}
#define BOTH(wh)                                                                                   \
    {                                                                                              \
        {0, wh, 2},                                                                                \
        {                                                                                          \
            1, wh, 1                                                                               \
        }                                                                                          \
    }

static const struct alloc_case cases[] = {
    /* Rule 1: in-country. */
    {"in-country",
     "ES",
     TWO_LINES,
     2,
     {{"FR-PAR", "FR", false, {9, 9}}, {"ES-MAD", "ES", false, {2, 1}}},
     .rule = ALLOC_IN_COUNTRY,
     .nparts = 2,
     .parts = BOTH("ES-MAD"),
     .why = "ES-MAD: in-country (ES) with every line"},
    {"in-country tie by code",
     "ES",
     TWO_LINES,
     2,
     {{"ES-MAD", "ES", false, {5, 5}}, {"ES-BCN", "ES", false, {5, 5}}},
     .rule = ALLOC_IN_COUNTRY,
     .nparts = 2,
     .parts = BOTH("ES-BCN"),
     .why = "preferred to ES-MAD (code order)"},
    {"in-country tie by priority list",
     "ES",
     TWO_LINES,
     2,
     {{"ES-BCN", "ES", false, {5, 5}}, {"ES-MAD", "ES", false, {5, 5}}},
     .prio = {"DE-BER", "ES-MAD"},
     .rule = ALLOC_IN_COUNTRY,
     .nparts = 2,
     .parts = BOTH("ES-MAD"),
     .why = "ES-MAD: in-country (ES) with every line; preferred to ES-BCN (priority list)"},
    {"UK is GB",
     "UK",
     TWO_LINES,
     2,
     {{"FR-PAR", "FR", false, {5, 5}}, {"GB-LON", "GB", false, {5, 5}}},
     .rule = ALLOC_IN_COUNTRY,
     .nparts = 2,
     .parts = BOTH("GB-LON"),
     .why = "GB-LON: in-country"},

    /* Rule 2: nearest within max_distance_km. */
    {"in-country not eligible",
     "ES",
     TWO_LINES,
     2,
     {{"ES-MAD", "ES", true, {9, 9}}, {"FR-PAR", "FR", false, {9, 9}}},
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = BOTH("FR-PAR"),
     .why = "FR-PAR: nearest to ES (846 km) with every line; ES-MAD not eligible"},
    {"in-country lacks a line",
     "ES",
     TWO_LINES,
     2,
     {{"ES-MAD", "ES", false, {9, 0}}, {"FR-PAR", "FR", false, {9, 9}}},
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = BOTH("FR-PAR"),
     .why = "ES-MAD lacks KX-2 (needs 1, has 0)"},
    {"nearest of two",
     "ES",
     TWO_LINES,
     2,
     {{"FR-PAR", "FR", false, {9, 9}}, {"PT-LIS", "PT", false, {9, 9}}},
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = BOTH("PT-LIS"),
     .why = "PT-LIS: nearest to ES (377 km)"},
    {"nearer one lacks",
     "ES",
     TWO_LINES,
     3,
     {{"PT-LIS", "PT", false, {1, 9}},
      {"FR-PAR", "FR", false, {9, 9}},
      {"ES-MAD", "ES", false, {0, 0}}},
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = BOTH("FR-PAR"),
     .why = "(846 km) with every line; ES-MAD lacks KX-1 (needs 2, has 0); PT-LIS lacks KX-1 "
            "(needs 2, has 1)"},
    {"nearest tie by code",
     "ES",
     TWO_LINES,
     2,
     {{"FR-PAR", "FR", false, {9, 9}}, {"FR-LYS", "FR", false, {9, 9}}},
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = BOTH("FR-LYS"),
     .why = "FR-LYS: nearest"},
    {"nearest tie by priority list",
     "ES",
     TWO_LINES,
     2,
     {{"FR-LYS", "FR", false, {9, 9}}, {"FR-PAR", "FR", false, {9, 9}}},
     .prio = {"FR-PAR"},
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = BOTH("FR-PAR"),
     .why = "FR-PAR: nearest"},
    {"wider radius",
     "ES",
     TWO_LINES,
     1,
     {{"DE-BER", "DE", false, {9, 9}}},
     .max_km = 2000,
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = BOTH("DE-BER"),
     .why = "DE-BER: nearest to ES (1618 km)"},
    {"nearest ignores an unknown country",
     "ES",
     TWO_LINES,
     2,
     {{"XX-1", "XX", false, {9, 9}}, {"PT-LIS", "PT", false, {9, 9}}},
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = BOTH("PT-LIS"),
     .why = "PT-LIS: nearest"},

    /* Rule 3: the priority list, or everything nearest first. */
    {"beyond the radius, no list",
     "ES",
     TWO_LINES,
     3,
     {{"PL-WAW", "PL", false, {9, 9}},
      {"DE-BER", "DE", false, {9, 9}},
      {"FR-PAR", "FR", false, {9, 0}}},
     .rule = ALLOC_PRIORITY,
     .nparts = 2,
     .parts = BOTH("DE-BER"),
     .why = "DE-BER: priority (no list): nearest with every line, 1618 km from ES (beyond 1500 "
            "km); FR-PAR lacks KX-2 (needs 1, has 0)"},
    {"no list, unknown distances last",
     "ES",
     TWO_LINES,
     2,
     {{"AA-1", "XX", false, {9, 9}}, {"PL-WAW", "PL", false, {9, 9}}},
     .rule = ALLOC_PRIORITY,
     .nparts = 2,
     .parts = BOTH("PL-WAW"),
     .why = "PL-WAW: priority"},
    {"unknown ship-to country",
     "XX",
     TWO_LINES,
     2,
     {{"FR-PAR", "FR", false, {9, 9}}, {"ES-MAD", "ES", false, {9, 9}}},
     .rule = ALLOC_PRIORITY,
     .nparts = 2,
     .parts = BOTH("ES-MAD"),
     .why = "ES-MAD: priority (no list): first by code with every line (no distance from XX)"},
    {"no ship-to country",
     NULL,
     TWO_LINES,
     1,
     {{"FR-PAR", "FR", false, {9, 9}}},
     .rule = ALLOC_PRIORITY,
     .nparts = 2,
     .parts = BOTH("FR-PAR"),
     .why = "no distance from an unknown country"},
    {"list order beats distance",
     "ES",
     TWO_LINES,
     2,
     {{"DE-BER", "DE", false, {9, 9}}, {"PL-WAW", "PL", false, {9, 9}}},
     .prio = {"PL-WAW", "DE-BER"},
     .rule = ALLOC_PRIORITY,
     .nparts = 2,
     .parts = BOTH("PL-WAW"),
     .why = "PL-WAW: priority list #1 with every line"},
    {"first listed lacks, near ones too",
     "ES",
     TWO_LINES,
     3,
     {{"PL-WAW", "PL", false, {9, 0}},
      {"DE-BER", "DE", false, {9, 9}},
      {"FR-PAR", "FR", true, {9, 9}}},
     .prio = {"PL-WAW", "DE-BER"},
     .rule = ALLOC_PRIORITY,
     .nparts = 2,
     .parts = BOTH("DE-BER"),
     .why = "DE-BER: priority list #2 with every line; FR-PAR not eligible; PL-WAW lacks KX-2"},
    {"listed one not eligible",
     "ES",
     TWO_LINES,
     2,
     {{"PL-WAW", "PL", true, {9, 9}}, {"DE-BER", "DE", false, {9, 9}}},
     .prio = {"PL-WAW", "DE-BER"},
     .rule = ALLOC_PRIORITY,
     .nparts = 2,
     .parts = BOTH("DE-BER"),
     .why = "priority list #2 with every line; PL-WAW not eligible"},

    /* Rule 4: split. */
    {"split over two",
     "ES",
     TWO_LINES,
     2,
     {{"FR-PAR", "FR", false, {0, 5}}, {"ES-MAD", "ES", false, {5, 0}}},
     .rule = ALLOC_SPLIT,
     .nparts = 2,
     .parts = {{0, "ES-MAD", 2}, {1, "FR-PAR", 1}},
     .why = "split over 2 warehouses: ES-MAD (KX-1), FR-PAR (KX-2); no warehouse has every line; "
            "ES-MAD lacks KX-2"},
    {"split takes the most units first",
     "ES",
     .nlines = 3,
     .lines = {{"A", 5}, {"B", 1}, {"C", 1}},
     3,
     {{"ES-MAD", "ES", false, {0, 1, 1}},
      {"FR-PAR", "FR", false, {5, 0, 0}},
      {"DE-BER", "DE", false, {5, 1, 0}}},
     .rule = ALLOC_SPLIT,
     .nparts = 3,
     .parts = {{0, "DE-BER", 5}, {1, "DE-BER", 1}, {2, "ES-MAD", 1}},
     .why = "split over 2 warehouses: ES-MAD (C), DE-BER (A, B)"},
    {"split tie by distance",
     "ES",
     TWO_LINES,
     3,
     {{"FR-PAR", "FR", false, {0, 1}},
      {"PT-LIS", "PT", false, {0, 1}},
      {"ES-MAD", "ES", false, {2, 0}}},
     .rule = ALLOC_SPLIT,
     .nparts = 2,
     .parts = {{0, "ES-MAD", 2}, {1, "PT-LIS", 1}},
     .why = "ES-MAD (KX-1), PT-LIS (KX-2)"},
    {"split tie by code",
     "ES",
     TWO_LINES,
     3,
     {{"FR-PAR", "FR", false, {0, 1}},
      {"FR-LYS", "FR", false, {0, 1}},
      {"ES-MAD", "ES", false, {2, 0}}},
     .rule = ALLOC_SPLIT,
     .nparts = 2,
     .parts = {{0, "ES-MAD", 2}, {1, "FR-LYS", 1}},
     .why = "ES-MAD (KX-1), FR-LYS (KX-2)"},
    {"a line from two warehouses, nearest first",
     "ES",
     .nlines = 1,
     .lines = {{"KX-1", 5}},
     3,
     {{"FR-PAR", "FR", false, {2}}, {"PT-LIS", "PT", false, {3}}, {"ES-MAD", "ES", false, {2}}},
     .rule = ALLOC_SPLIT,
     .nparts = 2,
     .parts = {{0, "ES-MAD", 2}, {0, "PT-LIS", 3}},
     .why = "split over 2 warehouses: ES-MAD (KX-1 2 of 5), PT-LIS (KX-1 3 of 5)"},
    {"a line from three, another whole",
     "ES",
     .nlines = 2,
     .lines = {{"KX-1", 6}, {"KX-2", 1}},
     3,
     {{"FR-PAR", "FR", false, {2, 1}},
      {"PT-LIS", "PT", false, {2, 0}},
      {"ES-MAD", "ES", false, {2, 0}}},
     .rule = ALLOC_SPLIT,
     .nparts = 4,
     .parts = {{0, "ES-MAD", 2}, {0, "PT-LIS", 2}, {0, "FR-PAR", 2}, {1, "FR-PAR", 1}},
     .why = "split over 3 warehouses: ES-MAD (KX-1 2 of 6), PT-LIS (KX-1 2 of 6), FR-PAR (KX-1 "
            "2 of 6, KX-2)"},
    {"split skips an ineligible warehouse",
     "ES",
     TWO_LINES,
     3,
     {{"ES-MAD", "ES", true, {9, 9}},
      {"FR-PAR", "FR", false, {2, 0}},
      {"DE-BER", "DE", false, {0, 1}}},
     .rule = ALLOC_SPLIT,
     .nparts = 2,
     .parts = {{0, "FR-PAR", 2}, {1, "DE-BER", 1}},
     .why = "FR-PAR (KX-1), DE-BER (KX-2); no warehouse has every line; ES-MAD not eligible; "
            "FR-PAR lacks KX-2"},
    {"split: list leaves out the only full one",
     "ES",
     TWO_LINES,
     2,
     {{"PL-WAW", "PL", false, {9, 9}}, {"FR-PAR", "FR", false, {0, 9}}},
     .prio = {"DE-BER"},
     .rule = ALLOC_SPLIT,
     .nparts = 2,
     .parts = BOTH("PL-WAW"),
     .why = "split over 1 warehouse: PL-WAW (KX-1, KX-2); no warehouse within 1500 km or on the "
            "priority list has every line"},
    {"two lines of one SKU share its stock",
     "ES",
     .nlines = 2,
     .lines = {{"KX-1", 2}, {"KX-1", 2}},
     2,
     {{"ES-MAD", "ES", false, {3, 3}}, {"FR-PAR", "FR", false, {4, 4}}},
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = {{0, "FR-PAR", 2}, {1, "FR-PAR", 2}},
     .why = "ES-MAD lacks KX-1 (needs 4, has 3)"},
    {"two lines of one SKU, split",
     "ES",
     .nlines = 2,
     .lines = {{"KX-1", 2}, {"KX-1", 2}},
     2,
     {{"ES-MAD", "ES", false, {3, 3}}, {"FR-PAR", "FR", false, {1, 1}}},
     .rule = ALLOC_SPLIT,
     .nparts = 3,
     .parts = {{0, "ES-MAD", 2}, {1, "ES-MAD", 1}, {1, "FR-PAR", 1}},
     .why = "ES-MAD (KX-1, KX-1 1 of 2), FR-PAR (KX-1 1 of 2)"},
    {"negative stock counts as none",
     "ES",
     TWO_LINES,
     2,
     {{"ES-MAD", "ES", false, {-5, 9}}, {"FR-PAR", "FR", false, {2, 1}}},
     .rule = ALLOC_NEAREST,
     .nparts = 2,
     .parts = BOTH("FR-PAR"),
     .why = "ES-MAD lacks KX-1 (needs 2, has 0)"},

    /* Rule 5: none. */
    {"out of stock",
     "ES",
     .nlines = 2,
     .lines = {{"KX-1", 2}, {"KX-2", 3}},
     2,
     {{"ES-MAD", "ES", false, {2, 1}}, {"FR-PAR", "FR", false, {2, 0}}},
     .rule = ALLOC_NONE,
     .short_line = 1,
     .short_by = 2,
     .why = "out of stock: KX-2 needs 3, 1 available in all warehouses"},
    {"out of stock, stock where it cannot be taken",
     "ES",
     TWO_LINES,
     2,
     {{"ES-MAD", "ES", false, {1, 1}}, {"DE-BER", "DE", true, {9, 9}}},
     .rule = ALLOC_NONE,
     .short_line = 0,
     .short_by = 1,
     .why = "out of stock: KX-1 needs 2, 1 available in eligible warehouses (not eligible: "
            "DE-BER)"},
    {"no warehouses", "ES", TWO_LINES, 0, .rule = ALLOC_NONE, .short_line = 0, .short_by = 2,
     .why = "out of stock: KX-1 needs 2, no warehouses"},
    {"split off: a line no single warehouse has",
     "ES",
     .nlines = 1,
     .lines = {{"KX-1", 4}},
     2,
     {{"FR-PAR", "FR", false, {2}}, {"ES-MAD", "ES", false, {2}}},
     .no_split = true,
     .rule = ALLOC_NONE,
     .short_line = 0,
     .short_by = 2,
     .why = "none: KX-1 needs 4, at most 2 in one warehouse (ES-MAD) and splitting is off"},
    {"split off: every line somewhere, never together",
     "ES",
     TWO_LINES,
     2,
     {{"FR-PAR", "FR", false, {0, 5}}, {"ES-MAD", "ES", false, {5, 0}}},
     .no_split = true,
     .rule = ALLOC_NONE,
     .short_line = 1,
     .short_by = 1,
     .why = "none: no warehouse has every line and splitting is off; ES-MAD lacks KX-2 (needs 1, "
            "has 0)"},
    {"split off: truly out of stock",
     "ES",
     TWO_LINES,
     1,
     {{"ES-MAD", "ES", false, {2, 0}}},
     .no_split = true,
     .rule = ALLOC_NONE,
     .short_line = 1,
     .short_by = 1,
     .why = "out of stock: KX-2 needs 1, 0 available in all warehouses"},
    {"split off: the only full one is left out",
     "ES",
     TWO_LINES,
     1,
     {{"PL-WAW", "PL", false, {9, 9}}},
     .prio = {"DE-BER"},
     .no_split = true,
     .rule = ALLOC_NONE,
     .short_line = 0,
     .short_by = 0,
     .why = "none: only PL-WAW has every line, but it is beyond 1500 km and not on the priority "
            "list, and splitting is off"},
    {"nothing eligible",
     "ES",
     TWO_LINES,
     1,
     {{"ES-MAD", "ES", true, {9, 9}}},
     .rule = ALLOC_NONE,
     .short_line = 0,
     .short_by = 2,
     .why = "0 available in eligible warehouses (not eligible: ES-MAD)"},

    /* Invalid input. */
    {"no lines", "ES", .nlines = 0, .rc = -1, .why = "invalid input"},
    {"too many lines", "ES", .nlines = ALLOC_MAX_LINES + 1, .rc = -1},
    {"zero quantity", "ES", .nlines = 2, .lines = {{"KX-1", 1}, {"KX-2", 0}}, .rc = -1},
    {"negative quantity", "ES", .nlines = 1, .lines = {{"KX-1", -3}}, .rc = -1},
    {"too many warehouses", "ES", TWO_LINES, ALLOC_MAX_WH + 1, .rc = -1},
    {"negative warehouses", "ES", TWO_LINES, -1, .rc = -1},
    {"priority list too long", "ES", TWO_LINES, .npriority = ALLOC_MAX_WH + 1, .rc = -1},
};

struct order {
    struct alloc_line lines[ALLOC_MAX_LINES + 1];
    struct alloc_wh whs[ALLOC_MAX_WH + 1];
    struct alloc_rules rules;
};

/* Builds the inputs of case k; with reversed, the warehouses in the opposite order. */
static void build(const struct alloc_case *k, bool reversed, struct order *o)
{
    memset(o, 0, sizeof *o);
    for (int l = 0; l < 3; l++) {
        if (k->lines[l].sku)
            snprintf(o->lines[l].sku, sizeof o->lines[l].sku, "%s", k->lines[l].sku);
        o->lines[l].qty = k->lines[l].qty;
    }
    for (int i = 0; i < 5; i++) {
        const struct wh_spec *s = &k->whs[i];
        if (!s->code)
            continue;
        struct alloc_wh *w = &o->whs[reversed && i < k->nwh ? k->nwh - 1 - i : i];
        snprintf(w->code, sizeof w->code, "%s", s->code);
        snprintf(w->country, sizeof w->country, "%s", s->country);
        w->eligible = !s->off;
        memcpy(w->avail, s->avail, sizeof s->avail);
    }
    alloc_rules_defaults(&o->rules);
    if (k->max_km)
        o->rules.max_distance_km = k->max_km;
    for (int i = 0; i < 3 && k->prio[i]; i++)
        snprintf(o->rules.priority[o->rules.npriority++], sizeof o->rules.priority[0], "%s",
                 k->prio[i]);
    if (k->npriority)
        o->rules.npriority = k->npriority;
    o->rules.allow_split = !k->no_split;
}

static void run_case(const struct alloc_case *k, bool reversed, struct alloc_result *out)
{
    static struct order o;
    build(k, reversed, &o);
    int rc = alloc_decide(k->ship, o.lines, k->nlines, o.whs, k->nwh, &o.rules, out);
    if (rc != k->rc)
        fprintf(stderr, "case '%s'%s:\n", k->name, reversed ? " (reversed)" : "");
    CHECK_EQ_INT(rc, k->rc);
    if (rc != 0 || k->rc != 0)
        return;
    bool ok = out->rule == k->rule && out->nparts == k->nparts;
    for (int p = 0; ok && p < k->nparts; p++)
        ok = out->parts[p].line == k->parts[p].line && out->parts[p].qty == k->parts[p].qty &&
             strcmp(o.whs[out->parts[p].wh].code, k->parts[p].wh) == 0;
    if (k->rule == ALLOC_NONE)
        ok = ok && out->short_line == k->short_line && out->short_by == k->short_by;
    else
        ok = ok && out->short_line == -1;
    if (!ok) {
        fprintf(stderr, "case '%s'%s: rule %s, %d parts:", k->name, reversed ? " (reversed)" : "",
                alloc_rule_name(out->rule), out->nparts);
        for (int p = 0; p < out->nparts; p++)
            fprintf(stderr, " (%d %s %lld)", out->parts[p].line, o.whs[out->parts[p].wh].code,
                    (long long)out->parts[p].qty);
        fprintf(stderr, " short %d by %lld; why: %s\n", out->short_line, (long long)out->short_by,
                out->why);
    }
    CHECK(ok);
}

static void test_table(void)
{
    static struct alloc_result out;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct alloc_case *k = &cases[i];
        run_case(k, false, &out);
        if (k->why && !strstr(out.why, k->why)) {
            fprintf(stderr, "case '%s': why \"%s\" lacks \"%s\"\n", k->name, out.why, k->why);
            CHECK(0);
        }
        CHECK(strlen(out.why) < sizeof out.why);
        run_case(k, true, &out);
    }
}

static void test_rule_names(void)
{
    CHECK_EQ_STR(alloc_rule_name(ALLOC_NONE), "none");
    CHECK_EQ_STR(alloc_rule_name(ALLOC_IN_COUNTRY), "in-country");
    CHECK_EQ_STR(alloc_rule_name(ALLOC_NEAREST), "nearest");
    CHECK_EQ_STR(alloc_rule_name(ALLOC_PRIORITY), "priority");
    CHECK_EQ_STR(alloc_rule_name(ALLOC_SPLIT), "split");
    CHECK_EQ_STR(alloc_rule_name(99), "?");

    struct alloc_rules r;
    alloc_rules_defaults(&r);
    CHECK_EQ_INT(r.max_distance_km, 1500);
    CHECK_EQ_INT(r.npriority, 0);
    CHECK(r.allow_split);
}

static void test_null_inputs(void)
{
    static struct order o;
    static struct alloc_result out;
    build(&cases[0], false, &o);
    CHECK_EQ_INT(alloc_decide("ES", NULL, 2, o.whs, 2, &o.rules, &out), -1);
    CHECK_EQ_INT(alloc_decide("ES", o.lines, 2, NULL, 2, &o.rules, &out), -1);
    CHECK_EQ_INT(alloc_decide("ES", o.lines, 2, o.whs, 2, NULL, &out), -1);
    CHECK_EQ_INT(alloc_decide("ES", o.lines, 2, o.whs, 2, &o.rules, NULL), -1);
    CHECK_EQ_INT(alloc_decide("ES", o.lines, 2, NULL, 0, &o.rules, &out), 0);
    CHECK_EQ_INT(out.rule, ALLOC_NONE);
}

/* Every line in pieces from every warehouse: more parts than the result holds must not
 * overflow it, and an order that needs exactly ALLOC_MAX_PARTS fits. */
static void test_parts_limit(void)
{
    static struct order o;
    static struct alloc_result out;
    memset(&o, 0, sizeof o);
    alloc_rules_defaults(&o.rules);
    for (int l = 0; l < ALLOC_MAX_LINES; l++) {
        snprintf(o.lines[l].sku, sizeof o.lines[l].sku, "SKU-%d", l);
        o.lines[l].qty = ALLOC_MAX_WH;
    }
    for (int w = 0; w < ALLOC_MAX_WH; w++) {
        snprintf(o.whs[w].code, sizeof o.whs[w].code, "W%02d", w);
        snprintf(o.whs[w].country, sizeof o.whs[w].country, "%s", w % 2 ? "FR" : "DE");
        o.whs[w].eligible = true;
        for (int l = 0; l < ALLOC_MAX_LINES; l++)
            o.whs[w].avail[l] = 1;
    }
    CHECK_EQ_INT(alloc_decide("ES", o.lines, ALLOC_MAX_LINES, o.whs, ALLOC_MAX_WH, &o.rules, &out),
                 0);
    CHECK_EQ_INT(out.rule, ALLOC_NONE);
    CHECK_EQ_INT(out.nparts, 0);
    CHECK(strstr(out.why, "more than 400 parts") != NULL);

    for (int l = 0; l < ALLOC_MAX_LINES; l++)
        o.lines[l].qty = 4;
    CHECK_EQ_INT(alloc_decide("ES", o.lines, ALLOC_MAX_LINES, o.whs, 4, &o.rules, &out), 0);
    CHECK_EQ_INT(out.rule, ALLOC_SPLIT);
    CHECK_EQ_INT(out.nparts, ALLOC_MAX_PARTS);
    /* In line order, each line's parts nearest first: FR (odd codes) before DE. */
    CHECK_EQ_INT(out.parts[0].line, 0);
    CHECK_EQ_STR(o.whs[out.parts[0].wh].code, "W01");
    CHECK_EQ_STR(o.whs[out.parts[1].wh].code, "W03");
    CHECK_EQ_STR(o.whs[out.parts[2].wh].code, "W00");
    CHECK_EQ_INT(out.parts[ALLOC_MAX_PARTS - 1].line, ALLOC_MAX_LINES - 1);
    CHECK(strlen(out.why) < sizeof out.why);
}

/* Long codes and many passed-over warehouses: the text is cut at a whole piece, with "...". */
static void test_why_truncated(void)
{
    static struct order o;
    static struct alloc_result out;
    memset(&o, 0, sizeof o);
    alloc_rules_defaults(&o.rules);
    snprintf(o.lines[0].sku, sizeof o.lines[0].sku, "%s", "KX-1");
    o.lines[0].qty = 1;
    for (int w = 0; w < ALLOC_MAX_WH; w++) {
        memset(o.whs[w].code, 'A' + w % 26, sizeof o.whs[w].code - 1);
        o.whs[w].code[0] = (char)('A' + w / 26);
        snprintf(o.whs[w].country, sizeof o.whs[w].country, "%s",
                 w == ALLOC_MAX_WH - 1 ? "JP" : "FR");
        o.whs[w].eligible = true;
        o.whs[w].avail[0] = w == ALLOC_MAX_WH - 1;
    }
    CHECK_EQ_INT(alloc_decide("ES", o.lines, 1, o.whs, ALLOC_MAX_WH, &o.rules, &out), 0);
    CHECK_EQ_INT(out.rule, ALLOC_PRIORITY);
    size_t n = strlen(out.why);
    CHECK(n < sizeof out.why);
    CHECK(n > 3 && strcmp(out.why + n - 3, "...") == 0);
    CHECK(strstr(out.why, "(needs 1, has 0)...") != NULL);
}

static void test_deterministic(void)
{
    static struct order o;
    static struct alloc_result a, b;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].rc)
            continue;
        build(&cases[i], false, &o);
        alloc_decide(cases[i].ship, o.lines, cases[i].nlines, o.whs, cases[i].nwh, &o.rules, &a);
        alloc_decide(cases[i].ship, o.lines, cases[i].nlines, o.whs, cases[i].nwh, &o.rules, &b);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
    }
}

/* A deterministic pseudo-random sequence (a 64-bit LCG), so failures reproduce. */
static unsigned rnd(uint64_t *state, unsigned n)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (unsigned)(*state >> 33) % n;
}

/* Distance as the rules see it: in-country 0, unknown last. */
static int rank_km(const char *ship, const char *country)
{
    if (ship && ship[0] && strcmp(ship, country) == 0)
        return 0;
    int d = geo_distance_km(ship, country);
    return d < 0 ? 1000000 : d;
}

/*
 * Random orders against the invariants every decision keeps: each line's parts add up to its
 * quantity, nearest first; only eligible warehouses; never more of a SKU from a warehouse than
 * it has (lines of one SKU together); rules 1 to 3 use one warehouse; none has no parts.
 */
static void test_random_invariants(void)
{
    static const char *const countries[] = {"ES", "FR", "PT", "DE", "PL", "XX", "JP", ""};
    static struct order o;
    static struct alloc_result out;
    uint64_t seed = 12345;
    int decided[5] = {0};
    for (int round = 0; round < 4000; round++) {
        memset(&o, 0, sizeof o);
        alloc_rules_defaults(&o.rules);
        int nlines = 1 + (int)rnd(&seed, 6), nwh = (int)rnd(&seed, 9);
        const char *ship = countries[rnd(&seed, 8)];
        for (int l = 0; l < nlines; l++) {
            snprintf(o.lines[l].sku, sizeof o.lines[l].sku, "S%u", rnd(&seed, 5));
            o.lines[l].qty = 1 + rnd(&seed, 5);
        }
        for (int w = 0; w < nwh; w++) {
            snprintf(o.whs[w].code, sizeof o.whs[w].code, "W%u", rnd(&seed, 12));
            snprintf(o.whs[w].country, sizeof o.whs[w].country, "%s", countries[rnd(&seed, 7)]);
            o.whs[w].eligible = rnd(&seed, 5) != 0;
            for (int l = 0; l < nlines; l++)
                o.whs[w].avail[l] = (int64_t)rnd(&seed, 8) - 1;
            /* Lines of one SKU see the same stock, as fulfil.c would give it. */
            for (int l = 0; l < nlines; l++)
                for (int k = 0; k < l; k++)
                    if (strcmp(o.lines[k].sku, o.lines[l].sku) == 0)
                        o.whs[w].avail[l] = o.whs[w].avail[k];
        }
        for (int w = 0; w < nwh; w++)
            if (rnd(&seed, 3) == 0)
                snprintf(o.rules.priority[o.rules.npriority++], sizeof o.rules.priority[0], "%s",
                         o.whs[w].code);
        static const int radii[] = {0, 1000, 1500, 3000};
        o.rules.max_distance_km = radii[rnd(&seed, 4)];
        o.rules.allow_split = rnd(&seed, 3) != 0;

        int rc = alloc_decide(ship, o.lines, nlines, o.whs, nwh, &o.rules, &out);
        CHECK_EQ_INT(rc, 0);
        CHECK(out.rule >= ALLOC_NONE && out.rule <= ALLOC_SPLIT);
        decided[out.rule]++;
        CHECK(strlen(out.why) > 0 && strlen(out.why) < sizeof out.why);
        if (out.rule == ALLOC_NONE) {
            CHECK_EQ_INT(out.nparts, 0);
            CHECK(out.short_line >= 0 && out.short_line < nlines);
            CHECK(out.short_by >= 0);
            continue;
        }
        int64_t placed[ALLOC_MAX_LINES] = {0}, taken[ALLOC_MAX_WH][ALLOC_MAX_LINES] = {{0}};
        bool ok = out.short_line == -1;
        for (int p = 0; p < out.nparts; p++) {
            const struct alloc_part *pt = &out.parts[p];
            ok = ok && pt->line >= 0 && pt->line < nlines && pt->wh >= 0 && pt->wh < nwh &&
                 pt->qty > 0 && o.whs[pt->wh].eligible;
            if (!ok)
                break;
            if (p > 0) {
                const struct alloc_part *prev = &out.parts[p - 1];
                ok = prev->line < pt->line ||
                     (prev->line == pt->line && rank_km(ship, o.whs[prev->wh].country) <=
                                                    rank_km(ship, o.whs[pt->wh].country));
            }
            if (out.rule != ALLOC_SPLIT)
                ok = ok && pt->wh == out.parts[0].wh && out.nparts == nlines;
            placed[pt->line] += pt->qty;
            int head = pt->line;
            for (int k = 0; k < pt->line; k++)
                if (strcmp(o.lines[k].sku, o.lines[pt->line].sku) == 0) {
                    head = k;
                    break;
                }
            taken[pt->wh][head] += pt->qty;
            ok = ok && taken[pt->wh][head] <= o.whs[pt->wh].avail[head];
        }
        for (int l = 0; ok && l < nlines; l++)
            ok = placed[l] == o.lines[l].qty;
        if (ok && out.rule == ALLOC_IN_COUNTRY)
            ok = strcmp(o.whs[out.parts[0].wh].country, ship) == 0;
        if (!ok)
            fprintf(stderr, "random round %d: %s: %s\n", round, alloc_rule_name(out.rule), out.why);
        CHECK(ok);
    }
    for (int r = ALLOC_NONE; r <= ALLOC_SPLIT; r++)
        CHECK(decided[r] > 0); /* the generator reaches every rule */
}

static void test_geo(void)
{
    int es_fr = geo_distance_km("ES", "FR");
    CHECK(es_fr > 800 && es_fr < 1300);
    CHECK_EQ_INT(geo_distance_km("FR", "ES"), es_fr);
    CHECK(geo_distance_km("ES", "US") > 5000);
    CHECK_EQ_INT(geo_distance_km("ES", "US"), geo_distance_km("US", "ES"));
    CHECK(geo_distance_km("DE", "PL") > 400 && geo_distance_km("DE", "PL") < 900);
    CHECK(geo_distance_km("ES", "AU") > 15000 && geo_distance_km("ES", "AU") < 20016);
    CHECK(geo_distance_km("JP", "KR") < 1500);
    CHECK_EQ_INT(geo_distance_km("ES", "ES"), 0);
    CHECK_EQ_INT(geo_distance_km("UK", "GB"), 0);
    CHECK_EQ_INT(geo_distance_km("UK", "FR"), geo_distance_km("GB", "FR"));
    CHECK_EQ_INT(geo_distance_km("ES", "ZZ"), -1);
    CHECK_EQ_INT(geo_distance_km("ZZ", "ZZ"), -1);
    CHECK_EQ_INT(geo_distance_km(NULL, "ES"), -1);
    CHECK_EQ_INT(geo_distance_km("es", "FR"), -1);
    CHECK_EQ_INT(geo_distance_km("ESP", "FR"), -1);
    CHECK(geo_known("ES"));
    CHECK(geo_known("UK"));
    CHECK(!geo_known("ZZ"));
    CHECK(!geo_known(""));
    CHECK(!geo_known(NULL));

    /* Every country the brief names, and every EU member. */
    static const char *const required[] = {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
        "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "GB", "NO", "CH",
        "UA", "BY", "RS", "ME", "TR", "RU", "US", "CA", "MX", "BR", "AR", "CL", "CO", "PE", "AU",
        "NZ", "JP", "KR", "CN", "IN", "IL", "SA", "AE", "ZA", "EG", "MA", "KZ"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (!geo_known(required[i]))
            fprintf(stderr, "geo: %s missing\n", required[i]);
        CHECK(geo_known(required[i]));
    }
}

int main(void)
{
    test_table();
    test_rule_names();
    test_null_inputs();
    test_parts_limit();
    test_why_truncated();
    test_deterministic();
    test_random_invariants();
    test_geo();
    return check_result("test_alloc");
}
