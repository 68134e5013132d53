/*
 * Fuzz target: arbitrary answers of a Goodcang OMS (conn_goodcang.c) to every call the
 * connector makes -- stock pages, the stock log and the stock of the SKUs it names, the order
 * list, look-ups by reference, create_order, cancel_order, create_grn, the GRN list -- read by
 * the connector's own code and applied by the sync engine into a temporary replica.
 * The input format and the checks are fuzz_conn.h's.
 */
#define http_start fuzz_http_start
#include "../../daemon/conn_goodcang.c"
#undef http_start

#include "fuzz_conn.h"
#include "fuzz_seed.h"

static void fz_configure(struct tally_config *cfg, const char *dir)
{
    char p[160];
    fz_set(cfg, "warehouse GC-UK", "kind", "goodcang");
    fz_set(cfg, "warehouse GC-UK", "url", "http://127.0.0.1:9/gc");
    fz_set(cfg, "warehouse GC-UK", "app_key", "fuzz-key");
    snprintf(p, sizeof p, "%s/token", dir);
    fz_set(cfg, "warehouse GC-UK", "app_token_file", p);
    fz_set(cfg, "warehouse GC-UK", "remote_code", "UK-GC");
    fz_set(cfg, "warehouse GC-UK", "country", "GB");
}

static void fz_seed(struct tallyd *d)
{
    fz_seed_third_party(d, "GC-UK");
}
