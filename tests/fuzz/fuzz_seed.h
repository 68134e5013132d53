/*
 * The rows the connector fuzz targets start from (fuzz_conn.h's template replica), so that the
 * engine has something to push and the answers to pushes are read too: a catalog, orders,
 * movements through stock.move, an inbound notice through inbound.create, and outbound orders
 * and a cancel in the payload fulfil.c appends (outbound_payload, append_cancel), a shipment
 * upload (fulfil.c upload).
 */
#ifndef TALLY_FUZZ_SEED_H
#define TALLY_FUZZ_SEED_H

#include <msgpack.h>

#include "codec.h"
#include "outbox.h"
#include "store.h"

/* [0, 7, method, [{...}]]: the caller packs `nfields` pairs into the returned packer. */
static inline msgpack_packer *fz_req(msgpack_sbuffer *sb, msgpack_packer *pk, const char *method,
                                     uint32_t nfields)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, 0);
    msgpack_pack_uint32(pk, 7);
    mp_pack_strz(pk, method);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, nfields);
    return pk;
}

static inline void fz_send(struct tallyd *d, msgpack_sbuffer *sb)
{
    fz_rpc(d, sb);
    msgpack_sbuffer_destroy(sb);
}

/* Catalog (SKUs EB-000002, KX-000003-GRY of product 1005001) and order 3050000000001635. */
static inline void fz_seed_catalog_orders(struct tallyd *d)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    static const char *const skus[] = {"EB-000002", "KX-000003-GRY"};
    fz_req(&sb, &pk, "import", 2);
    mp_pack_kv_str(&pk, "kind", "catalog");
    mp_pack_key(&pk, "rows");
    msgpack_pack_array(&pk, 2);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_map(&pk, 5);
        mp_pack_kv_str(&pk, "sku", skus[i]);
        mp_pack_kv_str(&pk, "product_id", "1005001");
        mp_pack_kv_str(&pk, "title", "Fuzz item");
        mp_pack_kv_str(&pk, "price_minor", "1999");
        mp_pack_kv_str(&pk, "currency", "USD");
    }
    fz_send(d, &sb);
    fz_req(&sb, &pk, "import", 2);
    mp_pack_kv_str(&pk, "kind", "orders");
    mp_pack_key(&pk, "rows");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 8);
    mp_pack_kv_str(&pk, "order_id", "3050000000001635");
    mp_pack_kv_str(&pk, "status", "WAIT_SELLER_SEND_GOODS");
    mp_pack_kv_str(&pk, "created_at", "1700000000");
    mp_pack_kv_str(&pk, "country", "US");
    mp_pack_kv_str(&pk, "currency", "USD");
    mp_pack_kv_str(&pk, "sku", "EB-000002");
    mp_pack_kv_str(&pk, "qty", "2");
    mp_pack_kv_str(&pk, "price_minor", "1999");
    fz_send(d, &sb);
}

/* An outbound order of 3050000000001635 at `code` (fulfil.c outbound_payload's shape) and the
 * cancel of another order there (append_cancel's). */
static inline void fz_seed_outbound(struct tallyd *d, const char *code)
{
    char key[160], target[80];
    int64_t id;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    outbox_target_wh(target, sizeof target, code);
    if (store_begin(d->store) != 0)
        fz_die("seed", "store_begin");

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mp_pack_kv_str(&pk, "id", "3050000000001635");
    mp_pack_key(&pk, "lines");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "sku", "EB-000002");
    mp_pack_kv_int(&pk, "qty", 2);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "sku", "KX-000003-GRY");
    mp_pack_kv_int(&pk, "qty", 1);
    mp_pack_key(&pk, "ship_to");
    msgpack_pack_map(&pk, 6);
    mp_pack_kv_str(&pk, "name", "Ann \"Q\" Buyer");
    mp_pack_kv_str(&pk, "address", "1 High Street");
    mp_pack_kv_str(&pk, "city", "Los Angeles");
    mp_pack_kv_str(&pk, "postcode", "90001");
    mp_pack_kv_str(&pk, "country", "US");
    mp_pack_kv_str(&pk, "phone", "+1 213 555 0100");
    mp_pack_kv_str(&pk, "service", "CAINIAO_STANDARD");
    outbox_key_order(key, sizeof key, OBX_OUTBOUND, code, "3050000000001635");
    if (outbox_append(d->store, key, target, "3050000000001635", OBX_OUTBOUND, sb.data, sb.size,
                      &id) != 0)
        fz_die("seed", "outbound");
    msgpack_sbuffer_destroy(&sb);

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_kv_str(&pk, "id", "3050000000009999");
    outbox_key_order(key, sizeof key, OBX_OUTBOUND_CANCEL, code, "3050000000009999");
    if (outbox_append(d->store, key, target, "3050000000009999", OBX_OUTBOUND_CANCEL, sb.data,
                      sb.size, &id) != 0)
        fz_die("seed", "outbound_cancel");
    msgpack_sbuffer_destroy(&sb);
    if (store_commit(d->store) != 0)
        fz_die("seed", "store_commit");
}

/* An inbound notice to `code` through inbound.create. */
static inline void fz_seed_inbound(struct tallyd *d, const char *code)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    fz_req(&sb, &pk, "inbound.create", 6);
    mp_pack_kv_str(&pk, "id", "IN-FUZZ-1");
    mp_pack_kv_str(&pk, "warehouse", code);
    mp_pack_kv_int(&pk, "eta", 1700000000);
    mp_pack_kv_str(&pk, "ref", "TR-9");
    mp_pack_kv_str(&pk, "tracking_no", "PK296543664ES");
    mp_pack_key(&pk, "lines");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "sku", "EB-000002");
    mp_pack_kv_int(&pk, "qty", 12);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "sku", "KX-000003-GRY");
    mp_pack_kv_int(&pk, "qty", 3);
    fz_send(d, &sb);
}

/* A third-party warehouse: every kind of row its connector pushes. */
static inline void fz_seed_third_party(struct tallyd *d, const char *code)
{
    fz_seed_catalog_orders(d);
    fz_seed_inbound(d, code);
    fz_seed_outbound(d, code);
}

#endif
