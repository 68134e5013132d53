/*
 * Every enumerated param of every method: a value outside its list (a typo, another case, a
 * word from another vocabulary) is refused with invalid_params whose message names every valid
 * value; each valid value is accepted. The valid values are written out here from
 * PROTOCOL.md, not read from the daemon's table, so the two are checked against each other.
 */
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "check.h"
#include "replica_harness.h"

static struct rh *h;

struct enum_case {
    const char *method;
    const char *key;
    const char *extra;      /* one more "key=value" param the method needs, or NULL */
    bool lists;             /* a list method: a valid value must succeed outright */
    const char *valid[12];  /* NULL-terminated */
    const char *invalid[4]; /* NULL-terminated */
};

static const struct enum_case cases[] = {
    {"exceptions.list",
     "state",
     NULL,
     true,
     {"open", "acknowledged", "resolved", "active", "all", NULL},
     {"closed", "OPEN", "opened", NULL}},
    {"exceptions.list",
     "kind",
     NULL,
     true,
     {"out_of_stock", "bad_address", "payment_held", "deadline", "warehouse", "upstream_rejected",
      "stock_drift", "cancelled_after_pick", "coordinator", NULL},
     {"out-of-stock", "OUT_OF_STOCK", "stock", NULL}},
    {"orders.list",
     "status",
     NULL,
     true,
     {"PLACE_ORDER_SUCCESS", "RISK_CONTROL", "WAIT_SELLER_SEND_GOODS", "SELLER_PART_SEND_GOODS",
      "WAIT_BUYER_ACCEPT_GOODS", "IN_CANCEL", "IN_ISSUE", "IN_FROZEN", "FUND_PROCESSING",
      "WAIT_SELLER_EXAMINE_MONEY", "FINISH", NULL},
     {"wait_seller_send_goods", "bogus", "shipped", NULL}},
    {"orders.list",
     "fstate",
     NULL,
     true,
     {"new", "pending", "ready", "allocated", "sent", "picked", "partial", "shipped", "uploaded",
      "finished", "cancelled", NULL},
     {"bogus", "Ready", "WAIT_SELLER_SEND_GOODS", NULL}},
    {"orders.list",
     "fstate",
     "due=!1",
     true,
     {"pending", "ready", "allocated", NULL},
     {"bogus", NULL}},
    {"outbox.list",
     "state",
     NULL,
     true,
     {"pending", "held", "done", NULL},
     {"PENDING", "inflight", "discarded", NULL}},
    {"returns.list",
     "state",
     NULL,
     true,
     {"received", "inspected", NULL},
     {"open", "Received", NULL}},
    {"promo.check", "per", NULL, false, {"sku", "product", NULL}, {"SKU", "products", NULL}},
    {"import",
     "kind",
     NULL,
     false,
     {"warehouses", "catalog", "stock", "orders", NULL},
     {"skus", "Stock", NULL}},
    {"stock.move",
     "kind",
     NULL,
     false,
     {"receive", "pick", "adjust", "count", "transfer", "return", NULL},
     {"Receive", "ship", "move", NULL}},
};

static const msgpack_object *call(const struct enum_case *c, const char *value)
{
    char kv[160];
    snprintf(kv, sizeof kv, "%s=%s", c->key, value);
    return rh_call(h, c->method, kv, c->extra, NULL);
}

static void test_every_enum_param(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct enum_case *c = &cases[i];
        for (int b = 0; c->invalid[b]; b++) {
            const msgpack_object *r = call(c, c->invalid[b]);
            if (r != NULL || strcmp(rh_last_code(h), "invalid_params") != 0) {
                fprintf(stderr, "  %s %s=%s: accepted (%s)\n", c->method, c->key, c->invalid[b],
                        r ? "a result" : rh_last_code(h));
                CHECK(false);
                continue;
            }
            /* the message names the field and every valid value */
            const char *msg = rh_last_message(h);
            char field[64];
            snprintf(field, sizeof field, "'%s'", c->key);
            CHECK(strstr(msg, field) != NULL);
            for (int v = 0; c->valid[v]; v++) {
                if (!strstr(msg, c->valid[v])) {
                    fprintf(stderr, "  %s %s: '%s' not named in: %s\n", c->method, c->key,
                            c->valid[v], msg);
                    CHECK(false);
                }
            }
        }
        for (int v = 0; c->valid[v]; v++) {
            const msgpack_object *r = call(c, c->valid[v]);
            CHECK(r != NULL || !c->lists);
            if (c->lists && r == NULL) {
                fprintf(stderr, "  %s %s=%s refused: %s %s\n", c->method, c->key, c->valid[v],
                        rh_last_code(h), rh_last_message(h));
                CHECK(false);
            }
            /* other methods may fail for want of other params, never over this one */
            if (!r && strstr(rh_last_message(h), "must be one of")) {
                fprintf(stderr, "  %s %s=%s refused as a bad value: %s\n", c->method, c->key,
                        c->valid[v], rh_last_message(h));
                CHECK(false);
            }
        }
    }
    /* absent optional ones are no filter */
    CHECK(rh_call(h, "exceptions.list", NULL) != NULL);
    CHECK(rh_call(h, "orders.list", NULL) != NULL);
    /* a wrong type is still the codec's error */
    CHECK(rh_call(h, "orders.list", "fstate=#3", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
}

int main(void)
{
    h = rh_new("tally-enums");
    if (!h) {
        perror("mkdtemp");
        return 1;
    }
    rh_open(h);
    rh_seed_standard(h);
    test_every_enum_param();
    rh_free(h);
    return check_result("test_enums");
}
