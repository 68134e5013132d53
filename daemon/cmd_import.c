/* import */
#include "cmd.h"
#include "importer.h"

int cmd_import(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    const char *kind;
    size_t n;
    int r = mp_param_id(&p, "kind", true, &kind, &n, NULL);
    if (r)
        return rpc_fail(c, r, "%s", p.err);
    int k = import_kind_parse(kind, n);
    if (k < 0)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS,
                        "field 'kind' must be warehouses, catalog, stock or orders");
    const msgpack_object *rows = mp_map_get(c->params, "rows");
    if (!rows)
        return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'rows' is required");
    struct import_result res;
    r = import_rows(c->d->store, k, rows, &res, c->err, sizeof c->err);
    if (r)
        return r;
    msgpack_pack_map(c->pk, 4);
    mp_pack_kv_str(c->pk, "kind", import_kind_name(k));
    mp_pack_kv_int(c->pk, "rows", res.rows);
    mp_pack_kv_int(c->pk, "inserted", res.inserted);
    mp_pack_kv_int(c->pk, "updated", res.updated);
    return 0;
}
