/* import */
#include <string.h>

#include "cmd.h"
#include "enums.h"
#include "importer.h"
#include "stock.h"

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
    /* Opening stock is a warehouse's figure: one that keeps its own stock reports it through
     * its feed alone (warehouse kinds), so such rows are refused before anything is written. */
    if (k == IMPORT_STOCK && rows->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < rows->via.array.size; i++) {
            const msgpack_object *row = &rows->via.array.ptr[i];
            const msgpack_object *w =
                row->type == MSGPACK_OBJECT_MAP ? mp_map_get(row, "warehouse") : NULL;
            if (!w || w->type != MSGPACK_OBJECT_STR || w->via.str.size > TALLY_MAX_ID_LEN)
                continue; /* the importer refuses it with its own message */
            char code[TALLY_MAX_ID_LEN + 1], why[sizeof c->err - 16];
            memcpy(code, w->via.str.ptr, w->via.str.size);
            code[w->via.str.size] = 0;
            if (stock_figures_allowed(&c->d->cfg, code, why, sizeof why) != 0)
                return rpc_fail(c, TALLY_E_INVALID_PARAMS, "row %u: %s", i + 1, why);
        }
    }
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
