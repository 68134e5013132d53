/*
 * fuzz_replay: runs the fuzz target without libFuzzer, over seed requests for every method
 * and seeded random mutations of them (bit flips, truncation, splices, length changes).
 *   fuzz_replay [ITERATIONS] [SEED]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct seed {
    char *data;
    size_t len;
};

static void request(msgpack_sbuffer *sb, const char *method, int nkv, const char *const *kv,
                    const char *int_key, int64_t int_val)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, 7);
    mp_pack_strz(&pk, method);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, (size_t)nkv + (int_key != NULL));
    for (int i = 0; i < nkv; i++)
        mp_pack_kv_str(&pk, kv[2 * i], kv[2 * i + 1]);
    if (int_key)
        mp_pack_kv_int(&pk, int_key, int_val);
}

static void import_rows(msgpack_sbuffer *sb, const char *kind, int nf, const char *const *kv)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, 9);
    mp_pack_strz(&pk, "import");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "kind", kind);
    mp_pack_key(&pk, "rows");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, (size_t)nf);
    for (int i = 0; i < nf; i++)
        mp_pack_kv_str(&pk, kv[2 * i], kv[2 * i + 1]);
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 20000;
    rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    msgpack_sbuffer sbs[16];
    int n = 0;
    for (int i = 0; i < 16; i++)
        msgpack_sbuffer_init(&sbs[i]);
    static const char *const wh[] = {"code", "ES-MAD", "name", "Madrid", "country", "ES"};
    static const char *const cat[] = {"sku", "S1",          "product_id", "P1",       "title",
                                      "Mat", "price_minor", "100",        "currency", "EUR"};
    static const char *const stk[] = {"sku", "S1", "warehouse", "ES-MAD", "on_hand", "5"};
    static const char *const ord[] = {
        "order_id",   "O1",         "status",      "WAIT_SELLER_SEND_GOODS",
        "created_at", "1700000000", "country",     "ES",
        "currency",   "EUR",        "sku",         "S1",
        "qty",        "2",          "price_minor", "100"};
    static const char *const mv[] = {"kind",      "pick",   "sku", "S1",
                                     "warehouse", "ES-MAD", "id",  "x1"};
    static const char *const sku[] = {"sku", "S1"};
    static const char *const q[] = {"q", "S"};
    static const char *const oid[] = {"order_id", "O1"};
    import_rows(&sbs[n++], "warehouses", 3, wh);
    import_rows(&sbs[n++], "catalog", 5, cat);
    import_rows(&sbs[n++], "stock", 3, stk);
    import_rows(&sbs[n++], "orders", 8, ord);
    request(&sbs[n++], "stock.move", 4, mv, "qty", 2);
    request(&sbs[n++], "stock.get", 1, sku, NULL, 0);
    request(&sbs[n++], "stock.list", 0, NULL, "limit", 3);
    request(&sbs[n++], "catalog.get", 1, sku, NULL, 0);
    request(&sbs[n++], "catalog.search", 1, q, NULL, 0);
    request(&sbs[n++], "orders.list", 0, NULL, "limit", 2);
    request(&sbs[n++], "orders.get", 1, oid, NULL, 0);
    request(&sbs[n++], "outbox.list", 0, NULL, NULL, 0);
    request(&sbs[n++], "status", 0, NULL, NULL, 0);
    request(&sbs[n++], "hello", 0, NULL, "version", 1);

    /* The seeds themselves, in order, so later ones find data. */
    for (int i = 0; i < n; i++)
        LLVMFuzzerTestOneInput((const uint8_t *)sbs[i].data, sbs[i].size);
    uint8_t buf[4096];
    for (long it = 0; it < iterations; it++) {
        const msgpack_sbuffer *a = &sbs[rnd() % (uint64_t)n], *b = &sbs[rnd() % (uint64_t)n];
        size_t len = a->size < sizeof buf ? a->size : sizeof buf;
        memcpy(buf, a->data, len);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            switch (rnd() % 5) {
            case 0: /* flip a bit */
                buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
                break;
            case 1: /* random byte */
                buf[rnd() % len] = (uint8_t)rnd();
                break;
            case 2: /* truncate */
                len = 1 + rnd() % len;
                break;
            case 3: { /* splice the tail of another seed */
                size_t at = rnd() % len, from = rnd() % b->size, k = b->size - from;
                if (at + k > sizeof buf)
                    k = sizeof buf - at;
                memcpy(buf + at, b->data + from, k);
                len = at + k;
                break;
            }
            default: /* append another whole seed (pipelining) */
                if (len + b->size <= sizeof buf) {
                    memcpy(buf + len, b->data, b->size);
                    len += b->size;
                }
            }
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    for (int i = 0; i < 16; i++)
        msgpack_sbuffer_destroy(&sbs[i]);
    printf("fuzz_replay: %ld mutated inputs, no crash, every response well-formed\n", iterations);
    return 0;
}
