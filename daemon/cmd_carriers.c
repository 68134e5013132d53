/* carriers.list: the carrier -> logistics service mapping of the config and the marketplace's
 * logistics services as last pulled (conn_aliexpress.c, table mp_services). */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "store.h"
#include "tallyd.h"

/* Whether the pulled list has service `key`: 1, 0, or -1 when it cannot be read. */
static int service_known(struct store *st, const char *key)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT COUNT(*) FROM mp_services WHERE service_name = ?1");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_reset(s);
    return n < 0 ? -1 : n > 0;
}

int cmd_carriers_list(struct rpc_call *c)
{
    struct store *st = c->d->store;
    const struct tally_config *cfg = &c->d->cfg;
    msgpack_packer *pk = c->pk;
    int64_t pulled_at = 0;
    sqlite3_stmt *s = store_stmt(st, "SELECT pulled_at FROM mp_services_pull");
    if (!s)
        return TALLY_E_STORAGE;
    bool pulled = sqlite3_step(s) == SQLITE_ROW;
    if (pulled)
        pulled_at = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    msgpack_pack_map(pk, 3);
    /* mappings: the config's, the warehouses' own first; "*" is the default for any. */
    mp_pack_key(pk, "mappings");
    msgpack_pack_array(pk, cfg->ncarriers);
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < cfg->ncarriers; i++) {
            const struct carrier_map *m = &cfg->carriers[i];
            if ((pass == 0) != (m->wh[0] != 0))
                continue;
            int known = pulled ? service_known(st, m->service) : -1;
            msgpack_pack_map(pk, 5);
            mp_pack_kv_str(pk, "carrier", m->carrier);
            mp_pack_kv_str(pk, "warehouse", m->wh[0] ? m->wh : "*");
            mp_pack_kv_str(pk, "service", m->service);
            if (m->website[0])
                mp_pack_kv_str(pk, "tracking_website", m->website);
            else
                mp_pack_kv_nil(pk, "tracking_website");
            /* whether the marketplace lists the key: nil while the list was never pulled */
            if (known < 0)
                mp_pack_kv_nil(pk, "known");
            else
                mp_pack_kv_bool(pk, "known", known == 1);
        }
    }
    mp_pack_key(pk, "services");
    s = store_stmt(st, "SELECT service_name, display_name, logistics_company, tracking_no_regex,"
                       " min_process_day, max_process_day, recommend_order FROM mp_services"
                       " ORDER BY recommend_order IS NULL, recommend_order, service_name");
    if (!s)
        return TALLY_E_STORAGE;
    size_t arr = mp_array_begin(pk);
    uint32_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        msgpack_pack_map(pk, 6);
        cmd_pack_col_text(pk, "service_name", s, 0);
        cmd_pack_col_text(pk, "display_name", s, 1);
        cmd_pack_col_text(pk, "logistics_company", s, 2);
        cmd_pack_col_text(pk, "tracking_no_regex", s, 3);
        cmd_pack_col_int(pk, "min_process_day", s, 4);
        cmd_pack_col_int(pk, "max_process_day", s, 5);
        n++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "carriers.list");
    mp_array_end(pk, arr, n);
    mp_pack_key(pk, "pulled_at");
    if (pulled)
        msgpack_pack_int64(pk, pulled_at);
    else
        msgpack_pack_nil(pk);
    return 0;
}
