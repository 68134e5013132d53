/* Applying warehouse feeds to the replica, for every warehouse kind (whfeed.h). */
#include "whfeed.h"

#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "codec.h"
#include "coord.h"
#include "fulfil.h"
#include "importer.h"
#include "stock.h"
#include "tally/protocol.h"

int whfeed_warehouse(struct upstream *u, struct store *st, int64_t *wh, char *err, size_t errlen)
{
    int r = catalog_warehouse_id(st, u->code, strlen(u->code), wh);
    if (r)
        snprintf(err, errlen, "warehouse %s is not in the replica", u->code);
    return r;
}

/* Reconciliation: a row the replica holds at the same version with another figure has
 * drifted (a lost write, a bad restore); the upsert that follows repairs it. */
static int count_drift(struct upstream *u, struct store *st, int64_t sku, int64_t wh,
                       int64_t on_hand, int64_t version, struct pull_page *pg)
{
    sqlite3_stmt *s = store_stmt(st, "SELECT snapshot FROM stock WHERE sku = ?1 AND warehouse = ?2"
                                     " AND upstream_version = ?3 AND snapshot <> ?4");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, version);
    sqlite3_bind_int64(s, 4, on_hand);
    int rc = sqlite3_step(s);
    int64_t had = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc == SQLITE_ROW) {
        pg->repaired++;
        /* Repaired, and a person is told: drift means a write was lost somewhere. */
        return fulfil_stock_drift_on(u->d, st, sku, wh, had, on_hand);
    }
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "reconcile");
}

bool whfeed_plain(struct store *st)
{
    return !store_publishes(st) &&
           store_count(st, "SELECT EXISTS(SELECT 1 FROM movements WHERE state = 'acked')", 1) == 0;
}

int whfeed_stock(struct upstream *u, struct store *st, int64_t wh, const char *sku, int64_t on_hand,
                 int64_t inbound, int64_t version, int64_t at, bool reconcile, struct pull_page *pg)
{
    int64_t sku_id;
    int r;
    /* Nothing to settle, publish or compare: one statement for a SKU the replica knows. When
     * it changed nothing (a SKU not known yet, or a figure older than the one held), the
     * whole path below decides. */
    if (pg->plain && !reconcile) {
        bool applied = false;
        if ((r = stock_apply_snapshot_code(st, sku, wh, on_hand, inbound, version, at, &applied)) !=
                0 ||
            applied)
            return r;
    }
    r = catalog_sku_ensure(st, sku, &sku_id);
    if (r)
        return r;
    if (reconcile && (r = count_drift(u, st, sku_id, wh, on_hand, version, pg)) != 0)
        return r;
    return stock_apply_snapshot_inbound(st, sku_id, wh, on_hand, inbound, version, at);
}

/* The batch statements of whfeed_stock_batch, for exactly WHFEED_BATCH rows (64). The VALUES
 * list is the outer loop (CROSS JOIN: SQLite keeps the written order), so rows are applied in
 * the page's order; each finds its SKU by the skus.code index. */
#define WF_ROW5 "(?,?,?,?,?)"
#define WF_ROW5x4 WF_ROW5 "," WF_ROW5 "," WF_ROW5 "," WF_ROW5
#define WF_ROW5x16 WF_ROW5x4 "," WF_ROW5x4 "," WF_ROW5x4 "," WF_ROW5x4
#define WF_ROW1x4 "(?),(?),(?),(?)"
#define WF_ROW1x16 WF_ROW1x4 "," WF_ROW1x4 "," WF_ROW1x4 "," WF_ROW1x4
_Static_assert(WHFEED_BATCH == 64, "the batch statements are written for 64 rows");
static const char batch_upsert_sql[] =
    "INSERT INTO stock(sku, warehouse, snapshot, upstream_version, as_of, inbound)"
    " SELECT s.id, ?1, v.column2, v.column3, v.column4, v.column5 FROM (VALUES " WF_ROW5x16
    "," WF_ROW5x16 "," WF_ROW5x16 "," WF_ROW5x16 ") AS v CROSS JOIN skus AS s"
    " ON s.code = v.column1 WHERE true"
    " ON CONFLICT(sku, warehouse) DO UPDATE SET"
    " snapshot = excluded.snapshot, upstream_version = excluded.upstream_version,"
    " as_of = excluded.as_of, inbound = COALESCE(excluded.inbound, stock.inbound)"
    " WHERE excluded.upstream_version >= stock.upstream_version";
/* The same for rows whose SKU ids are known (whfeed_ids): no lookup of the codes. */
static const char batch_upsert_ids_sql[] =
    "INSERT INTO stock(sku, warehouse, snapshot, upstream_version, as_of, inbound)"
    " SELECT v.column1, ?1, v.column2, v.column3, v.column4, v.column5 FROM (VALUES " WF_ROW5x16
    "," WF_ROW5x16 "," WF_ROW5x16 "," WF_ROW5x16 ") AS v WHERE true"
    " ON CONFLICT(sku, warehouse) DO UPDATE SET"
    " snapshot = excluded.snapshot, upstream_version = excluded.upstream_version,"
    " as_of = excluded.as_of, inbound = COALESCE(excluded.inbound, stock.inbound)"
    " WHERE excluded.upstream_version >= stock.upstream_version";
/* The ids of the batch's SKUs the replica holds (whfeed_ids), in the batch's order. */
static const char batch_lookup_sql[] =
    "SELECT s.id, s.code FROM (VALUES " WF_ROW1x16 "," WF_ROW1x16 "," WF_ROW1x16 "," WF_ROW1x16
    ") AS v CROSS JOIN skus AS s ON s.code = v.column1";
/* (RETURNING: the new SKUs' ids, for whfeed_ids; the inserted rows only) */
static const char batch_placeholders_sql[] =
    "INSERT INTO skus(code, product, title, price_minor, currency, updated_at)"
    " SELECT v.column1, p.id, v.column1, 0, 'XXX', ?1 FROM (VALUES " WF_ROW1x16 "," WF_ROW1x16
    "," WF_ROW1x16 "," WF_ROW1x16 ") AS v CROSS JOIN products AS p"
    " WHERE p.product_id = '~unlisted' ON CONFLICT(code) DO NOTHING RETURNING id, code";

/* The batch's upsert (the one-statement path of whfeed_stock for 64 rows), finding each row's
 * SKU by its code, or by ids[i] when ids is not NULL: *changed = rows applied. */
static int batch_upsert(struct store *st, int64_t wh, const struct whfeed_row *rows,
                        const int64_t *ids, int *changed)
{
    sqlite3_stmt *s = store_stmt(st, ids ? batch_upsert_ids_sql : batch_upsert_sql);
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, wh);
    for (int i = 0; i < WHFEED_BATCH; i++) {
        const struct whfeed_row *w = &rows[i];
        if (ids)
            sqlite3_bind_int64(s, 2 + 5 * i, ids[i]);
        else
            sqlite3_bind_text(s, 2 + 5 * i, w->sku, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3 + 5 * i, w->on_hand);
        sqlite3_bind_int64(s, 4 + 5 * i, w->version);
        sqlite3_bind_int64(s, 5 + 5 * i, w->at);
        if (w->inbound >= 0) /* (store_stmt cleared the bindings) */
            sqlite3_bind_int64(s, 6 + 5 * i, w->inbound);
    }
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "snapshot");
    *changed = sqlite3_changes(store_db(st));
    return 0;
}

/* Row i of a batch is SKU `code`, of id `id` (a lookup's or an insert's answer): into ids[i]
 * for the rows of that code whose id is not set yet (one per answer row: a code twice in the
 * batch is answered twice by a lookup, once by an insert), looked for at *hint first (SQLite
 * answers in the batch's order, but does not promise it). */
static void note_id(const struct whfeed_row *rows, int64_t *ids, int *hint, const char *code,
                    int64_t id)
{
    for (int k = 0; k < WHFEED_BATCH; k++) {
        int i = (*hint + k) % WHFEED_BATCH;
        if (ids[i] == 0 && strcmp(rows[i].sku, code) == 0) {
            ids[i] = id;
            *hint = i + 1;
            return;
        }
    }
}

/* The placeholders (catalog_sku_ensure) of the batch's SKUs the replica does not know;
 * *made = how many. Their ids are staged in c, and set in ids[] (when not NULL) for their
 * rows. */
static int batch_placeholders(struct store *st, const struct whfeed_row *rows, int64_t *ids,
                              struct whfeed_ids *c, int *made)
{
    sqlite3_stmt *s = store_stmt(st, batch_placeholders_sql);
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, store_now());
    for (int i = 0; i < WHFEED_BATCH; i++)
        sqlite3_bind_text(s, 2 + i, rows[i].sku, -1, SQLITE_STATIC);
    int rc, n = 0, hint = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        n++;
        const char *code = (const char *)sqlite3_column_text(s, 1);
        int64_t id = sqlite3_column_int64(s, 0);
        if (!code)
            continue;
        whfeed_ids_stage(c, code, id);
        if (ids)
            note_id(rows, ids, &hint, code, id);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "sku placeholder");
    *made = n;
    return 0;
}

/* The ids of the batch's SKUs the replica holds, into ids[] (the rows of SKUs it does not
 * hold keep 0), staged in c. */
static int batch_lookup(struct store *st, const struct whfeed_row *rows, int64_t *ids,
                        struct whfeed_ids *c)
{
    sqlite3_stmt *s = store_stmt(st, batch_lookup_sql);
    if (!s)
        return TALLY_E_STORAGE;
    for (int i = 0; i < WHFEED_BATCH; i++)
        sqlite3_bind_text(s, 1 + i, rows[i].sku, -1, SQLITE_STATIC);
    int rc, hint = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *code = (const char *)sqlite3_column_text(s, 1);
        int64_t id = sqlite3_column_int64(s, 0);
        if (!code || id <= 0)
            continue;
        whfeed_ids_stage(c, code, id);
        note_id(rows, ids, &hint, code, id);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "sku lookup");
}

/* ---- the SKU ids the writer learnt (whfeed_ids) ---- */

_Static_assert(WHFEED_IDS_GEN < 65536, "slots hold an entry's index + 1 in 16 bits");
struct ids_ent {
    uint64_t h;
    int64_t id;
    char code[WHFEED_IDS_CODE_MAX + 1];
};
struct ids_gen {
    uint32_t n;
    uint16_t slot[2 * WHFEED_IDS_GEN]; /* open addressing, at most half full; 0 = empty */
    struct ids_ent ent[WHFEED_IDS_GEN];
};
struct whfeed_ids {
    struct ids_gen g[2];
    int cur; /* the generation new ones go into; the other is older */
    /* The open transaction's ids (whfeed_ids_stage) are the last ones put in: from entry
     * t_n of generation t_gen on (and the whole of the other one once t_rotated). */
    bool t_open, t_rotated;
    int t_gen;
    uint32_t t_n;
};

/* FNV-1a, folded (the slots take its low bits); *len = the code's length */
static uint64_t ids_hash(const char *code, size_t *len)
{
    uint64_t h = 14695981039346656037ULL;
    size_t n = 0;
    for (; code[n]; n++)
        h = (h ^ (unsigned char)code[n]) * 1099511628211ULL;
    *len = n;
    return h ^ (h >> 29);
}

/* The slot of `code` in g, or of the empty one where it would go. */
static uint32_t ids_find(const struct ids_gen *g, uint64_t h, const char *code)
{
    uint32_t mask = 2 * WHFEED_IDS_GEN - 1, i = (uint32_t)h & mask;
    while (g->slot[i] != 0) {
        const struct ids_ent *e = &g->ent[g->slot[i] - 1];
        if (e->h == h && strcmp(e->code, code) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

/* Takes g's entries from `from` on out, the last one first: each was put in after all the
 * others, so the slots on its probe path from its home to its own were all taken before it,
 * by entries still there (linear probing), and taking them out leaves every earlier entry's
 * path whole. */
static void ids_cut(struct ids_gen *g, uint32_t from)
{
    while (g->n > from) {
        const struct ids_ent *e = &g->ent[g->n - 1];
        g->slot[ids_find(g, e->h, e->code)] = 0;
        g->n--;
    }
}

struct whfeed_ids *whfeed_ids_new(void)
{
    return calloc(1, sizeof(struct whfeed_ids));
}

void whfeed_ids_free(struct whfeed_ids *c)
{
    free(c);
}

void whfeed_ids_stage(struct whfeed_ids *c, const char *code, int64_t id)
{
    size_t len;
    if (!c || id <= 0)
        return;
    uint64_t h = ids_hash(code, &len);
    if (len > WHFEED_IDS_CODE_MAX)
        return;
    /* (a code kept already keeps its id: a SKU's never changes) */
    struct ids_gen *g = &c->g[c->cur];
    const struct ids_gen *older = &c->g[c->cur ^ 1];
    uint32_t i = ids_find(g, h, code); /* and the slot it goes in, unless g is full */
    if (g->slot[i] != 0 || older->slot[ids_find(older, h, code)] != 0)
        return;
    if (!c->t_open) {
        c->t_open = true;
        c->t_rotated = false;
        c->t_gen = c->cur;
        c->t_n = g->n;
    }
    if (g->n == WHFEED_IDS_GEN) { /* full: the older one goes, and this one becomes it */
        if (c->t_rotated)
            return; /* (it holds the transaction's first ones: the rest are not kept) */
        c->t_rotated = true;
        c->cur ^= 1;
        g = &c->g[c->cur];
        memset(g->slot, 0, sizeof g->slot);
        g->n = 0;
        i = ids_find(g, h, code);
    }
    struct ids_ent *e = &g->ent[g->n];
    e->h = h;
    e->id = id;
    memcpy(e->code, code, len + 1);
    g->slot[i] = (uint16_t)++g->n;
}

void whfeed_ids_end(struct whfeed_ids *c, bool committed)
{
    if (!c || !c->t_open)
        return;
    c->t_open = false;
    if (committed)
        return;
    if (c->t_rotated) /* the generation begun in the transaction: all of it */
        ids_cut(&c->g[c->t_gen ^ 1], 0);
    ids_cut(&c->g[c->t_gen], c->t_n);
}

int64_t whfeed_ids_get(const struct whfeed_ids *c, const char *code)
{
    size_t len;
    if (!c)
        return 0;
    uint64_t h = ids_hash(code, &len);
    if (len > WHFEED_IDS_CODE_MAX)
        return 0;
    for (int k = 0; k < 2; k++) {
        const struct ids_gen *g = &c->g[c->cur ^ k];
        uint32_t i = ids_find(g, h, code);
        if (g->slot[i] != 0)
            return g->ent[g->slot[i] - 1].id;
    }
    return 0;
}

/* The ids of a full batch's SKUs kept in c into ids[] (0 for the others): how many; -1 when
 * some code is too long to be kept (WHFEED_IDS_CODE_MAX): a lookup would give the other
 * warehouses' pages nothing, and costs a statement more than the upsert that looks codes up. */
static int batch_ids(const struct whfeed_ids *c, const struct whfeed_row *rows, int64_t *ids)
{
    int known = 0;
    bool too_long = false;
    for (int i = 0; i < WHFEED_BATCH; i++) {
        ids[i] = whfeed_ids_get(c, rows[i].sku);
        known += ids[i] > 0;
        too_long |=
            ids[i] == 0 && strnlen(rows[i].sku, WHFEED_IDS_CODE_MAX + 1) > WHFEED_IDS_CODE_MAX;
    }
    return too_long ? -1 : known;
}

static bool all_known(const int64_t *ids)
{
    for (int i = 0; i < WHFEED_BATCH; i++)
        if (ids[i] <= 0)
            return false;
    return true;
}

int whfeed_skus_begin(struct store *st, struct whfeed_skus *s)
{
    s->made = 0;
    /* The triggers checked in the transaction: no other connection can change one until it
     * ends. */
    if (store_triggers_on(st) || !import_set_allowed(st))
        return 1;
    sqlite3_stmt *q = store_stmt(st, "SELECT COALESCE(MAX(id), 0) FROM skus");
    if (!q)
        return TALLY_E_STORAGE;
    int rc = sqlite3_step(q);
    s->before = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    if (rc != SQLITE_ROW)
        return store_error(st, rc, "skus");
    /* New rows take the largest id + 1 only while that is below the largest rowid: past it
     * SQLite picks free ids at random, below `before`, and whfeed_skus_end would queue none of
     * them for the title index (a replica restored or written by hand can hold such an id).
     * Far from it, as the catalog import's set path requires: no transaction makes 2^62. */
    return s->before >= INT64_MAX / 2 ? 1 : 0;
}

int whfeed_skus_batch(struct store *st, struct whfeed_skus *s, const struct whfeed_row *rows,
                      struct whfeed_ids *ids, int *made)
{
    int r = batch_placeholders(st, rows, NULL, ids, made);
    if (r == 0)
        s->made += *made;
    return r;
}

int whfeed_skus_end(struct store *st, struct whfeed_skus *s)
{
    if (s->made == 0)
        return 0;
    /* ids of rows inserted without AUTOINCREMENT: above the largest when the transaction
     * began, which no other writer can change meanwhile (the writer lock) */
    sqlite3_stmt *q = store_stmt(st, "UPDATE counters SET n = n + ?1 WHERE name = 'skus'");
    if (!q)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(q, 1, s->made);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "skus counter");
    q = store_stmt(st,
                   "INSERT OR IGNORE INTO sku_titles_todo(id) SELECT id FROM skus WHERE id > ?1");
    if (!q)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(q, 1, s->before);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "title queue");
}

int whfeed_stock_batch(struct upstream *u, struct store *st, int64_t wh,
                       const struct whfeed_row *rows, int n, struct pull_page *pg)
{
    int r, changed = 0, made = 0;
    if (n == WHFEED_BATCH && pg->plain) {
        /* With a store of ids (a write job): the ids kept, else the codes looked up once
         * (unless the batch before had new SKUs: then most likely this one too). Every id
         * known: written by id; a row older than the figure held left unapplied: row by row
         * (below) decides, as it would after the statements that follow. */
        int64_t ids[WHFEED_BATCH];
        bool known = false, looked = false;
        if (pg->ids) {
            int k = batch_ids(pg->ids, rows, ids);
            known = k == n;
            if (!known && k >= 0 && !pg->batch_new) {
                if ((r = batch_lookup(st, rows, ids, pg->ids)) != 0)
                    return r;
                known = all_known(ids);
                looked = true;
            }
            if (known) {
                if ((r = batch_upsert(st, wh, rows, ids, &changed)) != 0)
                    return r;
                if (changed == n) {
                    pg->batched += n;
                    pg->by_id += n;
                    return 0;
                }
                goto row_by_row;
            }
        }
        /* Some SKU may be new (the first warehouse of an initial sync: placeholders first
         * while the batches before had new ones, or the lookup found it missing), or a row
         * older than the figure held. */
        if (!pg->batch_new && !looked) {
            if ((r = batch_upsert(st, wh, rows, NULL, &changed)) != 0)
                return r;
            if (changed == n) {
                pg->batched += n;
                return 0;
            }
        }
        if ((r = batch_placeholders(st, rows, pg->ids ? ids : NULL, pg->ids, &made)) != 0)
            return r;
        pg->batch_new = made > 0;
        /* every id known now (those kept or looked up, those made): by id */
        if (pg->ids && all_known(ids)) {
            if ((r = batch_upsert(st, wh, rows, ids, &changed)) != 0)
                return r;
            if (changed == n)
                pg->by_id += n;
        } else if ((r = batch_upsert(st, wh, rows, NULL, &changed)) != 0) {
            return r;
        }
        if (changed == n) {
            pg->batched += n;
            return 0;
        }
    }
row_by_row:
    for (int i = 0; i < n; i++)
        if ((r = whfeed_stock(u, st, wh, rows[i].sku, rows[i].on_hand, rows[i].inbound,
                              rows[i].version, rows[i].at, false, pg)) != 0)
            return r;
    return 0;
}

int whfeed_stock_unlogged(struct upstream *u, struct store *st, int64_t wh, const char *sku,
                          int64_t on_hand, int64_t inbound, int64_t version, int64_t at,
                          struct pull_page *pg)
{
    int64_t sku_id;
    int r = catalog_sku_ensure(st, sku, &sku_id);
    if (r)
        return r;
    sqlite3_stmt *s = store_stmt(st, "SELECT snapshot FROM stock WHERE sku = ?1 AND warehouse = ?2"
                                     " AND upstream_version > 0 AND upstream_version < ?3"
                                     " AND snapshot <> ?4");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku_id);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, version);
    sqlite3_bind_int64(s, 4, on_hand);
    int rc = sqlite3_step(s);
    int64_t had = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc == SQLITE_ROW) {
        pg->repaired++;
        if ((r = fulfil_stock_drift_on(u->d, st, sku_id, wh, had, on_hand)) != 0)
            return r;
    } else if (rc != SQLITE_DONE) {
        return store_error(st, rc, "reconcile");
    }
    return stock_apply_snapshot_inbound(st, sku_id, wh, on_hand, inbound, version, at);
}

int whfeed_outbound(struct upstream *u, struct store *st, int64_t wh, const char *id,
                    const char *status, const char *carrier, const char *tracking,
                    const char *reason, int64_t version)
{
    int r;
    /* A warehouse's reason may quote the buyer ("no one at <street>"): for an order whose
     * personal data was purged it is neither stored nor passed on (privacy.c). */
    if (reason) {
        sqlite3_stmt *p = store_stmt(st, "SELECT 1 FROM orders WHERE order_id = ?1"
                                         " AND purged_at IS NOT NULL");
        if (!p)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(p, 1, id, -1, SQLITE_STATIC);
        int prc = sqlite3_step(p);
        sqlite3_reset(p);
        if (prc == SQLITE_ROW)
            reason = NULL;
        else if (prc != SQLITE_DONE)
            return store_error(st, prc, "outbound order");
    }
    sqlite3_stmt *s = store_stmt(
        st, "INSERT INTO outbound_orders(warehouse, id, status, carrier, tracking_no, reason,"
            " version, updated_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"
            " ON CONFLICT(warehouse, id) DO UPDATE SET status = excluded.status,"
            " carrier = COALESCE(excluded.carrier, carrier),"
            " tracking_no = COALESCE(excluded.tracking_no, tracking_no),"
            " reason = excluded.reason, version = excluded.version,"
            " updated_at = excluded.updated_at WHERE excluded.version > version"
            " OR (excluded.version = version AND excluded.status IS NOT status)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, wh);
    sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, status, -1, SQLITE_STATIC);
    if (carrier && mp_text_ok(carrier, strlen(carrier)))
        sqlite3_bind_text(s, 4, carrier, -1, SQLITE_STATIC);
    if (tracking && mp_text_ok(tracking, strlen(tracking)))
        sqlite3_bind_text(s, 5, tracking, -1, SQLITE_STATIC);
    if (reason && mp_text_ok(reason, strlen(reason)))
        sqlite3_bind_text(s, 6, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 7, version);
    sqlite3_bind_int64(s, 8, store_now());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "outbound order");
    /* A change (not an overlapping repeat) moves the order on (fulfil.c). Only what passed
     * the checks above reaches an order (and the marketplace). */
    const char *car_ok = carrier && mp_text_ok(carrier, strlen(carrier)) ? carrier : NULL;
    const char *trk_ok = tracking && mp_id_ok(tracking, strlen(tracking)) ? tracking : NULL;
    const char *why_ok = reason && mp_text_ok(reason, strlen(reason)) ? reason : NULL;
    if (sqlite3_changes(store_db(st)) > 0 &&
        (r = fulfil_outbound_status(u->d, wh, id, status, car_ok, trk_ok, why_ok)) != 0)
        return r;
    return 0;
}

int whfeed_mark(struct upstream *u, int64_t wh, const char *id, const char *mark)
{
    if (!mark || !mark[0])
        return 0;
    return coord_seen(u->d, wh, id, mark);
}
