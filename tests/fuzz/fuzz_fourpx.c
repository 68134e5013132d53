/*
 * Fuzz target: arbitrary answers of 4PX's FOP API (conn_fourpx.c) to every call the connector
 * makes -- inventory pages, the inventory log, the outbound list, outbound create and cancel,
 * inbound notices -- read by the connector's own code and applied by the sync engine into a
 * temporary replica. The input format and the checks are fuzz_conn.h's.
 */
#define http_start fuzz_http_start
#include "../../daemon/conn_fourpx.c"
#undef http_start

#include "fuzz_conn.h"
#include "fuzz_seed.h"

static void fz_configure(struct tally_config *cfg, const char *dir)
{
    char p[160];
    fz_set(cfg, "warehouse FPX-SZ", "kind", "fourpx");
    fz_set(cfg, "warehouse FPX-SZ", "url", "http://127.0.0.1:9");
    fz_set(cfg, "warehouse FPX-SZ", "app_key", "fuzz-key");
    snprintf(p, sizeof p, "%s/secret", dir);
    fz_set(cfg, "warehouse FPX-SZ", "app_secret_file", p);
    snprintf(p, sizeof p, "%s/access", dir);
    fz_set(cfg, "warehouse FPX-SZ", "access_token_file", p);
    fz_set(cfg, "warehouse FPX-SZ", "remote_code", "CNSZX");
    fz_set(cfg, "warehouse FPX-SZ", "country", "CN");
}

static void fz_seed(struct tallyd *d)
{
    fz_seed_third_party(d, "FPX-SZ");
}
