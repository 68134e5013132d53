/*
 * The client of test_wait_flush.sh: on ONE connection, again and again for SECONDS, pipelines
 * a stock.move (receive 1, an id of its own) and a stock.get after it, and waits for both
 * answers (10 s each: far over any commit on a loaded machine; no time is measured).
 *   pair_probe SOCK SKU WAREHOUSE SECONDS
 * Prints "OK N pairs", or "HANG at pair I answer K" when an answer did not come (exit 1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: pair_probe SOCK SKU WAREHOUSE SECONDS\n");
        return 2;
    }
    struct th_conn c;
    if (th_connect(&c, argv[1]) != 0)
        return 3;
    int64_t end = th_now_ms() + 1000LL * atoi(argv[4]);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int i = 0;
    for (; th_now_ms() < end; i++) {
        char id[64];
        snprintf(id, sizeof id, "probe-%d-%d", (int)getpid(), i);
        msgpack_sbuffer_clear(&sb);
        th_pack_request(&sb, 2 * (uint32_t)i + 1, "stock.move", "sssis", "kind", "receive", "sku",
                        argv[2], "warehouse", argv[3], "qty", 1LL, "id", id);
        th_pack_request(&sb, 2 * (uint32_t)i + 2, "stock.get", "s", "sku", argv[2]);
        if (th_send(&c, sb.data, sb.size, 10000) != 0)
            return 4;
        for (int k = 0; k < 2; k++) {
            struct th_resp r;
            int o = th_read_response(&c, 10000, &r);
            if (o != TH_OK || r.msgid != 2 * (uint32_t)i + 1 + (uint32_t)k) {
                printf("HANG at pair %d answer %d: %s %s\n", i, k, th_outcome(o),
                       o == TH_ERRRESP ? r.code : "");
                return 1;
            }
        }
    }
    printf("OK %d pairs\n", i);
    msgpack_sbuffer_destroy(&sb);
    th_close(&c);
    return 0;
}
