/* import */
#include "cmd.h"
#include "enums.h"
#include "importer.h"

int cmd_import(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    const char *kind;
    size_t n;
    int idx;
    int r = cmd_param_enum(c, &p, "kind", true, &enum_import_kind, &kind, &n, &idx);
    if (r)
        return r;
    int k = import_kind_parse(kind, n);
    if (k < 0) /* enum_import_kind and the importer disagree */
        return rpc_fail(c, TALLY_E_INTERNAL, "import kind '%.*s' unknown to the importer", (int)n,
                        kind);
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
