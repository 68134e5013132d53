/* outbox.list */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "enums.h"
#include "store.h"

struct cmd_outbox_list_args {
    int64_t after, limit;
    char state[32];
    size_t sn;
    bool has_state;
};

/* One page, on any connection (a worker's: rpc_defer_read). */
static int outbox_list_pack(struct store *st, msgpack_packer *pk, const void *arg, char *err,
                            size_t errlen)
{
    const struct cmd_outbox_list_args *a = arg;
    /* 'pending' covers rows waiting and rows in flight; 'done' covers discarded ones too. */
    sqlite3_stmt *s = store_stmt(
        st, "SELECT id, key, target, entity, kind, attempts, next_attempt_at, last_error, state,"
            " created_at FROM outbox WHERE id > ?1 AND (?2 IS NULL"
            "  OR (?2 = 'pending' AND state IN ('pending','inflight'))"
            "  OR (?2 = 'held' AND state = 'held')"
            "  OR (?2 = 'done' AND state IN ('done','discarded')))"
            " ORDER BY id LIMIT ?3");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, a->after);
    if (a->has_state)
        sqlite3_bind_text(s, 2, a->state, (int)a->sn, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, a->limit + 1);
    msgpack_pack_map(pk, 2);
    mp_pack_key(pk, "items");
    size_t arr = mp_array_begin(pk);
    uint32_t count = 0;
    bool more = false;
    int64_t last = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == a->limit) {
            more = true;
            break;
        }
        last = sqlite3_column_int64(s, 0);
        msgpack_pack_map(pk, 10);
        mp_pack_kv_int(pk, "id", last);
        mp_pack_kv_str(pk, "key", (const char *)sqlite3_column_text(s, 1));
        mp_pack_kv_str(pk, "target", (const char *)sqlite3_column_text(s, 2));
        mp_pack_kv_str(pk, "entity", (const char *)sqlite3_column_text(s, 3));
        mp_pack_kv_str(pk, "kind", (const char *)sqlite3_column_text(s, 4));
        mp_pack_kv_int(pk, "attempts", sqlite3_column_int64(s, 5));
        mp_pack_kv_int(pk, "next_attempt_at", sqlite3_column_int64(s, 6));
        mp_pack_kv_str(pk, "last_error", (const char *)sqlite3_column_text(s, 7));
        mp_pack_kv_str(pk, "state", (const char *)sqlite3_column_text(s, 8));
        mp_pack_kv_int(pk, "created_at", sqlite3_column_int64(s, 9));
        count++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        snprintf(err, errlen, "the replica could not be read");
        return store_error(st, rc, "outbox.list");
    }
    mp_array_end(pk, arr, count);
    mp_pack_key(pk, "next_cursor");
    if (more) {
        char cur[32];
        snprintf(cur, sizeof cur, "%lld", (long long)last);
        mp_pack_strz(pk, cur);
    } else {
        msgpack_pack_nil(pk);
    }
    return 0;
}

int cmd_outbox_list(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct page_req pg;
    const char *state = NULL;
    size_t sn = 0;
    int r = cmd_page_params(c, &p, &pg);
    if (r)
        return r;
    int idx;
    if ((r = cmd_param_enum(c, &p, "state", false, &enum_outbox_state, &state, &sn, &idx)) != 0)
        return r;
    int64_t after = 0;
    if (pg.cursor) {
        char buf[32], *end;
        if (pg.cursor_len >= sizeof buf)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
        memcpy(buf, pg.cursor, pg.cursor_len);
        buf[pg.cursor_len] = 0;
        after = strtoll(buf, &end, 10);
        if (*end || after < 0)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
    }
    struct cmd_outbox_list_args la = {.after = after, .limit = pg.limit};
    if (state) {
        if (sn >= sizeof la.state)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "field 'state' is not known");
        memcpy(la.state, state, sn);
        la.sn = sn;
        la.has_state = true;
    }
    /* A state filter walks the rows in id order past every row of other states (a drained outbox
     * holds many done ones): off the loop then, as a deferred read. */
    if (la.has_state)
        return rpc_defer_read(c, outbox_list_pack, &la, sizeof la);
    return outbox_list_pack(c->d->store, c->pk, &la, c->err, sizeof c->err);
}
