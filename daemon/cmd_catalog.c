/* catalog.get, catalog.search */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "store.h"

/* Packs a stored MessagePack value verbatim (attributes were validated when imported). */
static void pack_raw(msgpack_packer *pk, const void *data, int n)
{
    if (!data || n <= 0) {
        msgpack_pack_map(pk, 0);
        return;
    }
    msgpack_sbuffer_write(pk->data, data, (size_t)n);
}

int cmd_catalog_get(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    const char *sku;
    size_t n;
    int r = mp_param_id(&p, "sku", true, &sku, &n, NULL);
    if (r)
        return rpc_fail(c, r, "%s", p.err);
    struct store *st = c->d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT s.code, s.title, p.product_id, p.title, s.mp_sku_id,"
                                     " s.attributes, s.price_minor, s.currency, s.weight_g,"
                                     " s.updated_at"
                                     " FROM skus s JOIN products p ON p.id = s.product"
                                     " WHERE s.code = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, sku, (int)n, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            return rpc_fail(c, TALLY_E_NOT_FOUND, "no SKU '%.*s' in the catalog", (int)n, sku);
        return store_error(st, rc, "catalog.get");
    }
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 10);
    mp_pack_kv_str(pk, "sku", (const char *)sqlite3_column_text(s, 0));
    mp_pack_kv_str(pk, "title", (const char *)sqlite3_column_text(s, 1));
    mp_pack_kv_str(pk, "product_id", (const char *)sqlite3_column_text(s, 2));
    mp_pack_kv_str(pk, "product_title", (const char *)sqlite3_column_text(s, 3));
    mp_pack_kv_str(pk, "mp_sku_id", (const char *)sqlite3_column_text(s, 4));
    mp_pack_key(pk, "attributes");
    pack_raw(pk, sqlite3_column_blob(s, 5), sqlite3_column_bytes(s, 5));
    mp_pack_kv_int(pk, "price_minor", sqlite3_column_int64(s, 6));
    mp_pack_kv_str(pk, "currency", (const char *)sqlite3_column_text(s, 7));
    cmd_pack_col_int(pk, "weight_g", s, 8);
    mp_pack_kv_int(pk, "updated_at", sqlite3_column_int64(s, 9));
    sqlite3_reset(s);
    return 0;
}

/* An FTS5 query matching `q` as one literal string: "q" with inner quotes doubled. */
static void fts_phrase(const char *q, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n && o + 3 < cap; i++) {
        if (q[i] == '"')
            out[o++] = '"';
        out[o++] = q[i];
    }
    out[o++] = '"';
    out[o] = 0;
}

struct search_args {
    char q[TALLY_MAX_ID_LEN + 1];
    size_t qn;
    char phrase[2 * TALLY_MAX_ID_LEN + 4], hi[TALLY_MAX_ID_LEN + 2], after[TALLY_MAX_ID_LEN + 1];
    int64_t limit;
};

/* One page of catalog.search, on any connection (a worker's: rpc_defer_read). */
static int search_pack(struct store *st, msgpack_packer *pk, const void *arg, char *err,
                       size_t errlen)
{
    const struct search_args *a = arg;
    /* The code prefix on skus' code index, the title on the trigram index (which needs 3
     * bytes; shorter queries match codes only), and the titles not indexed yet (titleidx.h)
     * read one by one: a bulk load's backlog, usually empty. lower() folds ASCII letters only,
     * the trigram index every letter: until indexed, a title with non-ASCII letters is found
     * by a query in its own case. */
    sqlite3_stmt *s =
        store_stmt(st, "SELECT s.code, s.title, p.product_id, s.price_minor, s.currency"
                       " FROM skus s JOIN products p ON p.id = s.product"
                       " WHERE s.code > ?4 AND s.id IN ("
                       "   SELECT id FROM skus WHERE code >= ?1 AND code < ?2"
                       "   UNION SELECT rowid FROM sku_titles WHERE ?6 >= 3 AND sku_titles MATCH ?3"
                       "   UNION SELECT t.id FROM sku_titles_todo t JOIN skus u ON u.id = t.id"
                       "     WHERE ?6 >= 3 AND instr(lower(u.title), lower(?1)) > 0)"
                       " ORDER BY s.code LIMIT ?5");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, a->q, (int)a->qn, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, a->hi, (int)a->qn + 1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, a->phrase, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, a->after, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, a->limit + 1);
    sqlite3_bind_int64(s, 6, (int64_t)a->qn);
    msgpack_pack_map(pk, 2);
    mp_pack_key(pk, "items");
    size_t arr = mp_array_begin(pk);
    uint32_t count = 0;
    bool more = false;
    int rc;
    char last[TALLY_MAX_ID_LEN + 1] = "";
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == a->limit) {
            more = true;
            break;
        }
        const char *code = (const char *)sqlite3_column_text(s, 0);
        msgpack_pack_map(pk, 5);
        mp_pack_kv_str(pk, "sku", code);
        mp_pack_kv_str(pk, "title", (const char *)sqlite3_column_text(s, 1));
        mp_pack_kv_str(pk, "product_id", (const char *)sqlite3_column_text(s, 2));
        mp_pack_kv_int(pk, "price_minor", sqlite3_column_int64(s, 3));
        mp_pack_kv_str(pk, "currency", (const char *)sqlite3_column_text(s, 4));
        snprintf(last, sizeof last, "%s", code);
        count++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        snprintf(err, errlen, "the catalog could not be read");
        return store_error(st, rc, "catalog.search");
    }
    mp_array_end(pk, arr, count);
    mp_pack_key(pk, "next_cursor");
    if (more)
        mp_pack_strz(pk, last);
    else
        msgpack_pack_nil(pk);
    return 0;
}

int cmd_catalog_search(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    struct page_req pg;
    const char *q;
    size_t qn;
    int r = cmd_page_params(c, &p, &pg);
    if (r)
        return r;
    if ((r = mp_param_str(&p, "q", true, TALLY_MAX_ID_LEN, &q, &qn, NULL)) != 0)
        return rpc_fail(c, r, "%s", p.err);
    struct search_args sa = {.qn = qn, .limit = pg.limit};
    memcpy(sa.q, q, qn);
    fts_phrase(q, qn, sa.phrase, sizeof sa.phrase);
    /* Codes are printable ASCII (below 0x7f), so those starting with q sort in [q, q + 0x7f). */
    memcpy(sa.hi, q, qn);
    sa.hi[qn] = 0x7f;
    sa.hi[qn + 1] = 0;
    if (pg.cursor) {
        if (pg.cursor_len > TALLY_MAX_ID_LEN)
            return rpc_fail(c, TALLY_E_INVALID_PARAMS, "cursor is not one this method returned");
        memcpy(sa.after, pg.cursor, pg.cursor_len);
        sa.after[pg.cursor_len] = 0;
    }
    /* A common word matches a large part of a big catalog, and a page in code order reads
     * every match: off the loop, as a deferred read. */
    return rpc_defer_read(c, search_pack, &sa, sizeof sa);
}
