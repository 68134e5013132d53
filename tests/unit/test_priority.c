/*
 * Order priority: scores and reasons for each rule alone and together, the rule boundaries,
 * configured variations, and a reasons buffer that is too small.
 */
#include <stdbool.h>

#include "check.h"
#include "priority.h"

#define NOW INT64_C(1700000000)
#define H 3600

static void vip_gold(struct priority_rules *r)
{
    snprintf(r->vip_levels[0], sizeof r->vip_levels[0], "%s", "gold");
    snprintf(r->vip_levels[1], sizeof r->vip_levels[1], "%s", "Platinum");
    r->nvip = 2;
}

static void no_deadline_points(struct priority_rules *r)
{
    r->deadline_points = 0;
}

static void zero_hours(struct priority_rules *r)
{
    r->deadline_hours = 0;
}

static void value_off(struct priority_rules *r)
{
    r->value_minor = 0;
}

/* An empty name in the list must not make every service express. */
static void empty_express(struct priority_rules *r)
{
    r->express[0][0] = '\0';
    r->nexpress = 1;
}

static void express_count_too_big(struct priority_rules *r)
{
    r->nexpress = 99;
    r->nvip = -3;
}

struct priority_case {
    const char *name;
    void (*tweak)(struct priority_rules *r); /* NULL: the defaults */
    int64_t ship_by;                         /* relative to NOW; 0 unknown */
    bool ship_by_known;
    int64_t total_minor;
    const char *service, *level;
    int score;
    const char *why; /* exact */
};

static const struct priority_case cases[] = {
    {"nothing applies", NULL, 0, false, 5000, "Cainiao Standard", NULL, 0, ""},
    {"all unknown", NULL, 0, false, 0, NULL, NULL, 0, ""},
    {"ship-by in 5 h", NULL, 5 * H, true, 0, NULL, NULL, 100, "ship-by in 5 h (+100)"},
    {"hours round down", NULL, 5 * H + 1800, true, 0, NULL, NULL, 100, "ship-by in 5 h (+100)"},
    {"exactly at the window", NULL, 24 * H, true, 0, NULL, NULL, 100, "ship-by in 24 h (+100)"},
    {"just outside the window", NULL, 24 * H + 1, true, 0, NULL, NULL, 0, ""},
    {"minutes", NULL, 30 * 60, true, 0, NULL, NULL, 100, "ship-by in 30 min (+100)"},
    {"seconds", NULL, 20, true, 0, NULL, NULL, 100, "ship-by in 20 s (+100)"},
    {"overdue by 3 h", NULL, -3 * H, true, 0, NULL, NULL, 200, "overdue by 3 h (+200)"},
    {"due this second", NULL, 0, true, 0, NULL, NULL, 200, "overdue by 0 s (+200)"},
    {"value above", NULL, 0, false, 15000, NULL, NULL, 20, "value 150.00 (+20)"},
    {"value at", NULL, 0, false, 10000, NULL, NULL, 20, "value 100.00 (+20)"},
    {"value cents", NULL, 0, false, 12345, NULL, NULL, 20, "value 123.45 (+20)"},
    {"value below", NULL, 0, false, 9999, NULL, NULL, 0, ""},
    {"value rule off", value_off, 0, false, 99999999, NULL, NULL, 0, ""},
    {"express", NULL, 0, false, 0, "DHL Express", NULL, 30, "express DHL (+30)"},
    {"express lower case", NULL, 0, false, 0, "dhl_es", NULL, 30, "express DHL (+30)"},
    {"express as substring", NULL, 0, false, 0, "AliExpress Premium Shipping", NULL, 30,
     "express PREMIUM (+30)"},
    {"express FedEx", NULL, 0, false, 0, "FedEx IE", NULL, 30, "express FEDEX (+30)"},
    {"not express", NULL, 0, false, 0, "Correos Standard", NULL, 0, ""},
    {"empty service", NULL, 0, false, 0, "", NULL, 0, ""},
    {"empty express name", empty_express, 0, false, 0, "Correos", NULL, 0, ""},
    {"list counts out of range", express_count_too_big, 0, false, 0, "UPS Saver", "gold", 30,
     "express UPS (+30)"},
    {"vip", vip_gold, 0, false, 0, NULL, "GOLD", 10, "VIP buyer gold (+10)"},
    {"vip second", vip_gold, 0, false, 0, NULL, "platinum", 10, "VIP buyer Platinum (+10)"},
    {"vip is exact", vip_gold, 0, false, 0, NULL, "golden", 0, ""},
    {"no vip by default", NULL, 0, false, 0, NULL, "gold", 0, ""},
    {"deadline points off", no_deadline_points, 2 * H, true, 0, NULL, NULL, 0, ""},
    {"zero-hour window", zero_hours, 5 * H, true, 0, NULL, NULL, 0, ""},
    {"zero-hour window, overdue", zero_hours, -H, true, 0, NULL, NULL, 200,
     "overdue by 1 h (+200)"},
    {"three rules", NULL, 5 * H, true, 15000, "DHL", NULL, 150,
     "ship-by in 5 h (+100), value 150.00 (+20), express DHL (+30)"},
    {"overdue and express", NULL, -26 * H, true, 100, "FEDEX International", NULL, 230,
     "overdue by 26 h (+200), express FEDEX (+30)"},
    {"all four", vip_gold, -2 * H, true, 20000, "ems", "Gold", 260,
     "overdue by 2 h (+200), value 200.00 (+20), express EMS (+30), VIP buyer gold (+10)"},
};

static void input_of(const struct priority_case *k, struct priority_input *in)
{
    in->now = NOW;
    in->ship_by = k->ship_by_known ? NOW + k->ship_by : 0;
    in->total_minor = k->total_minor;
    in->service = k->service;
    in->buyer_level = k->level;
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct priority_case *k = &cases[i];
        struct priority_rules r;
        priority_rules_defaults(&r);
        if (k->tweak)
            k->tweak(&r);
        struct priority_input in;
        input_of(k, &in);
        char why[256] = "junk";
        int score = priority_score(&r, &in, why, sizeof why);
        if (score != k->score || strcmp(why, k->why) != 0)
            fprintf(stderr, "case '%s':\n", k->name);
        CHECK_EQ_INT(score, k->score);
        CHECK_EQ_STR(why, k->why);
    }
}

static void test_defaults(void)
{
    struct priority_rules r;
    priority_rules_defaults(&r);
    CHECK_EQ_INT(r.deadline_hours, 24);
    CHECK_EQ_INT(r.deadline_points, 100);
    CHECK_EQ_INT(r.value_minor, 10000);
    CHECK_EQ_INT(r.value_points, 20);
    CHECK_EQ_INT(r.nexpress, 5);
    CHECK_EQ_STR(r.express[0], "DHL");
    CHECK_EQ_STR(r.express[4], "PREMIUM");
    CHECK_EQ_INT(r.express_points, 30);
    CHECK_EQ_INT(r.nvip, 0);
    CHECK_EQ_INT(r.vip_points, 10);
}

/* The score never depends on the buffer; the text is cut at a whole reason, with "...". */
static void test_small_buffers(void)
{
    struct priority_rules r;
    priority_rules_defaults(&r);
    struct priority_input in = {NOW, NOW + 5 * H, 15000, "DHL", NULL};
    char why[32];
    CHECK_EQ_INT(priority_score(&r, &in, why, sizeof why), 150);
    CHECK_EQ_STR(why, "ship-by in 5 h (+100)...");
    CHECK_EQ_INT(priority_score(&r, &in, why, 10), 150);
    CHECK_EQ_STR(why, "...");
    CHECK_EQ_INT(priority_score(&r, &in, why, 3), 150);
    CHECK_EQ_STR(why, "");
    CHECK_EQ_INT(priority_score(&r, &in, NULL, 0), 150);
    CHECK_EQ_INT(priority_score(NULL, &in, why, sizeof why), 0);
    CHECK_EQ_INT(priority_score(&r, NULL, why, sizeof why), 0);
}

/* Extreme values neither overflow (UBSan would stop the test) nor go negative. */
static void test_extremes(void)
{
    struct priority_rules r;
    priority_rules_defaults(&r);
    r.deadline_hours = INT64_MAX;
    r.deadline_points = 1000000;
    char why[256];
    struct priority_input in = {INT64_MIN, INT64_MAX, INT64_MAX, NULL, NULL};
    CHECK(priority_score(&r, &in, why, sizeof why) >= 0);
    in = (struct priority_input){INT64_MAX, INT64_MIN + 1, 0, NULL, NULL};
    CHECK(priority_score(&r, &in, why, sizeof why) >= 0);
    in = (struct priority_input){1, INT64_MIN + 1, 0, NULL, NULL}; /* overdue by -INT64_MIN */
    CHECK_EQ_INT(priority_score(&r, &in, why, sizeof why), 2000000);
    in = (struct priority_input){NOW, NOW + 1000 * 24 * H, 0, NULL, NULL};
    CHECK_EQ_INT(priority_score(&r, &in, why, sizeof why), 1000000);
    CHECK_EQ_STR(why, "ship-by in 24000 h (+1000000)");
}

int main(void)
{
    test_table();
    test_defaults();
    test_small_buffers();
    test_extremes();
    return check_result("test_priority");
}
