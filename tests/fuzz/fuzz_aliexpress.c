/*
 * Fuzz target: arbitrary answers of the AliExpress Open Platform gateway (conn_aliexpress.c) to
 * every call the connector makes -- product list and product info pages, order list and order
 * pages, logistics services, receipt info (full ship-tos), stock publishing, shipment uploads --
 * with the platform's error envelopes among them, read by the connector's own code and applied by
 * the sync engine into a temporary replica. The input format and the checks are fuzz_conn.h's.
 */
#define http_start fuzz_http_start
#include "../../daemon/conn_aliexpress.c"
#undef http_start

#include "fuzz_conn.h"
#include "fuzz_seed.h"

static void fz_configure(struct tally_config *cfg, const char *dir)
{
    char p[160];
    fz_set(cfg, "marketplace", "gateway", "http://127.0.0.1:9/sync");
    fz_set(cfg, "marketplace", "app_key", "fuzz-key");
    snprintf(p, sizeof p, "%s/secret", dir);
    fz_set(cfg, "marketplace", "app_secret_file", p);
    snprintf(p, sizeof p, "%s/access", dir);
    fz_set(cfg, "marketplace", "access_token_file", p);
    fz_set(cfg, "carriers", "UPS", "UPS");
}

/* A shipment upload of order 3050000000001635 (fulfil.c upload's payload). */
static void fz_seed(struct tallyd *d)
{
    fz_seed_catalog_orders(d);
    char key[160];
    int64_t id;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    if (store_begin(d->store) != 0)
        fz_die("seed", "store_begin");
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mp_pack_kv_str(&pk, "order_id", "3050000000001635");
    mp_pack_kv_str(&pk, "send_type", "all");
    mp_pack_kv_str(&pk, "logistics_no", "1Z999AA10123456784");
    mp_pack_kv_str(&pk, "carrier", "UPS");
    mp_pack_kv_str(&pk, "warehouse", "ES-MAD");
    outbox_key_fulfil(key, sizeof key, "sh-fuzz-1");
    if (outbox_append(d->store, key, OUTBOX_TARGET_MP, "3050000000001635", OBX_FULFIL, sb.data,
                      sb.size, &id) != 0)
        fz_die("seed", "fulfil");
    msgpack_sbuffer_destroy(&sb);
    if (store_commit(d->store) != 0)
        fz_die("seed", "store_commit");
}
