/*
 * Fuzz target: arbitrary answers of a tally Warehouse API v1 (conn_wms.c) to every call the
 * connector makes -- inventory pages, outbound pages, movement batches, outbound orders and
 * their cancels -- read by the connector's own code and applied by the sync engine into a
 * temporary replica. The input format and the checks are fuzz_conn.h's.
 */
#define http_start fuzz_http_start
#include "../../daemon/conn_wms.c"
#undef http_start

#include "fuzz_conn.h"
#include "fuzz_seed.h"

static void fz_configure(struct tally_config *cfg, const char *dir)
{
    char p[160];
    fz_set(cfg, "warehouse ES-MAD", "url", "http://127.0.0.1:9/es");
    snprintf(p, sizeof p, "%s/token", dir);
    fz_set(cfg, "warehouse ES-MAD", "token_file", p);
    fz_set(cfg, "warehouse ES-MAD", "country", "ES");
}

static void fz_move(struct tallyd *d, const char *kind, const char *id, const char *sku,
                    int64_t qty)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    fz_req(&sb, &pk, "stock.move", 5);
    mp_pack_kv_str(&pk, "kind", kind);
    mp_pack_kv_str(&pk, "id", id);
    mp_pack_kv_str(&pk, "sku", sku);
    mp_pack_kv_str(&pk, "warehouse", "ES-MAD");
    mp_pack_kv_int(&pk, "qty", qty);
    fz_send(d, &sb);
}

static void fz_seed(struct tallyd *d)
{
    fz_seed_catalog_orders(d);
    fz_move(d, "receive", "mv-fuzz-1", "EB-000002", 10);
    fz_move(d, "pick", "mv-fuzz-2", "EB-000002", 2);
    fz_move(d, "receive", "mv-fuzz-3", "KX-000003-GRY", 4);
    fz_seed_outbound(d, "ES-MAD");
}
