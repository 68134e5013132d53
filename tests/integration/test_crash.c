/*
 * kill -9 durability of stock movements against a real tallyd:
 *   test_crash TALLYD [SEED [ROUNDS]]
 *
 * Seeds 2 warehouses, 5 SKUs and their stock, then for ROUNDS rounds (default 20): a client
 * records stock.move requests one at a time, each with a caller-chosen id ("c-<round>-<n>"),
 * kinds receive / pick / adjust (with a reason) / transfer with small quantities, and after a
 * random delay (10-300 ms, seeded PRNG) the test SIGKILLs tallyd mid-stream. At most one
 * request is in flight at the kill: sent, its answer not (completely) read. tallyd is
 * restarted and the test checks, through the protocol (outbox.list paged through, stock.get
 * of every SKU) and directly in DIR/replica.db opened read-only:
 *
 *   - every acknowledged movement id is in `movements` exactly once (leg 0; a transfer also
 *     has its leg 1) and in the outbox exactly once (key == id);
 *   - the outbox keys are exactly the acknowledged ids, plus possibly the one in flight;
 *   - re-sending the in-flight request with its id answers duplicate = true when it had been
 *     committed, or applies it now (or refuses it, when the model says the stock is not
 *     there); after that the outbox keys are exactly the acknowledged ids;
 *   - every SKU x warehouse's figures match an independent model: on_hand = seeded snapshot +
 *     the deltas of all acknowledged movements (a transfer's two legs included); snapshot is
 *     the seeded one and pending the sum of the deltas;
 *   - refusals (insufficient_stock) happen exactly when the model says they must;
 *   - PRAGMA integrity_check says ok, and foreign_key_check finds nothing, after every round.
 *
 * At the end tallyd must stop cleanly on SIGTERM (exit status 0: no sanitizer report).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "harness.h"

#define NWH 2
#define NSKU 5
#define TIMEOUT 10000
#define PAGE 100 /* outbox.list page size: small, so paging is exercised */

static const char *const WH[NWH] = {"ES-MAD", "PL-WAW"};
static struct th_daemon D;
static bool verbose;

/* ---- seeded PRNG (xorshift64*) ---- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static int rng_below(int n)
{
    return (int)((rng() >> 33) % (uint64_t)n);
}

/* ---- the model ---- */

enum kind { RECEIVE, PICK, ADJUST, TRANSFER };
static const char *const KIND[] = {"receive", "pick", "adjust", "transfer"};

struct move {
    char id[32];
    enum kind kind;
    int sku, wh, to; /* indexes; `to` only for transfers */
    long long qty;   /* as sent: signed for an adjust */
};

static long long seeded[NSKU][NWH]; /* the imported snapshot */
static long long model[NSKU][NWH];  /* snapshot + deltas of acknowledged movements */

static struct move *acked;
static size_t nacked, cap_acked;

static void sku_code(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "C-%d", i + 1);
}

/* The deltas a movement makes: d[0] at its warehouse and, for a transfer, d[1] at `to`. */
static void deltas(const struct move *m, long long d[2])
{
    d[0] = d[1] = 0;
    switch (m->kind) {
    case RECEIVE:
        d[0] = m->qty;
        break;
    case PICK:
        d[0] = -m->qty;
        break;
    case ADJUST:
        d[0] = m->qty;
        break;
    case TRANSFER:
        d[0] = -m->qty;
        d[1] = m->qty;
        break;
    }
}

/* Whether the daemon must refuse m (insufficient_stock) in the model's state. */
static bool must_refuse(const struct move *m)
{
    long long d[2];
    deltas(m, d);
    return model[m->sku][m->wh] + d[0] < 0;
}

static void model_apply(const struct move *m)
{
    long long d[2];
    deltas(m, d);
    model[m->sku][m->wh] += d[0];
    if (m->kind == TRANSFER)
        model[m->sku][m->to] += d[1];
    if (nacked == cap_acked) {
        cap_acked = cap_acked ? 2 * cap_acked : 256;
        acked = realloc(acked, cap_acked * sizeof *acked);
        if (!acked) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    acked[nacked++] = *m;
}

static void random_move(struct move *m, int round, int n)
{
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "c-%d-%d", round, n);
    int k = rng_below(10);
    m->kind = k < 3 ? RECEIVE : k < 6 ? PICK : k < 8 ? ADJUST : TRANSFER;
    m->sku = rng_below(NSKU);
    m->wh = rng_below(NWH);
    m->to = 1 - m->wh;
    m->qty = 1 + rng_below(8);
    if (m->kind == ADJUST && rng_below(2))
        m->qty = -m->qty;
}

static void pack_move(msgpack_sbuffer *sb, uint32_t msgid, const struct move *m)
{
    char sku[16];
    sku_code(m->sku, sku, sizeof sku);
    if (m->kind == TRANSFER)
        th_pack_request(sb, msgid, "stock.move", "ssssis", "id", m->id, "kind", KIND[m->kind],
                        "sku", sku, "warehouse", WH[m->wh], "qty", m->qty, "to", WH[m->to]);
    else if (m->kind == ADJUST)
        th_pack_request(sb, msgid, "stock.move", "ssssis", "id", m->id, "kind", KIND[m->kind],
                        "sku", sku, "warehouse", WH[m->wh], "qty", m->qty, "reason", "crash test");
    else
        th_pack_request(sb, msgid, "stock.move", "ssssi", "id", m->id, "kind", KIND[m->kind], "sku",
                        sku, "warehouse", WH[m->wh], "qty", m->qty);
}

static int wh_index(const char *code)
{
    for (int w = 0; w < NWH; w++)
        if (!strcmp(code, WH[w]))
            return w;
    return -1;
}

/*
 * Checks a success answer to m against the model as it will be once m is applied: id, kind,
 * duplicate flag, the legs' deltas, the figures after the movement.
 */
static bool check_move_result(const struct move *m, const msgpack_object *res, bool duplicate)
{
    char s[64];
    bool dup = !duplicate, ok = true;
    long long d[2], v;
    deltas(m, d);
    if (!th_get_str(res, "id", s, sizeof s) || strcmp(s, m->id) != 0)
        ok = false;
    if (!th_get_str(res, "kind", s, sizeof s) || strcmp(s, KIND[m->kind]) != 0)
        ok = false;
    if (!th_get_bool(res, "duplicate", &dup) || dup != duplicate)
        ok = false;
    if (!th_get_int(res, "outbox_id", &v) || v <= 0)
        ok = false;
    const msgpack_object *legs = th_get(res, "movements");
    uint32_t want_legs = m->kind == TRANSFER ? 2 : 1;
    if (!legs || legs->type != MSGPACK_OBJECT_ARRAY || legs->via.array.size != want_legs) {
        ok = false;
    } else {
        for (uint32_t i = 0; i < want_legs; i++) {
            const msgpack_object *l = &legs->via.array.ptr[i];
            int w = th_get_str(l, "warehouse", s, sizeof s) ? wh_index(s) : -1;
            if (w != (i == 0 ? m->wh : m->to) || !th_get_int(l, "delta", &v) || v != d[i])
                ok = false;
        }
    }
    /* Figures after: the model plus this movement. */
    const msgpack_object *stock = th_get(res, "stock");
    if (!stock || stock->type != MSGPACK_OBJECT_ARRAY || stock->via.array.size != want_legs) {
        ok = false;
    } else {
        for (uint32_t i = 0; i < want_legs; i++) {
            const msgpack_object *l = &stock->via.array.ptr[i];
            int w = th_get_str(l, "warehouse", s, sizeof s) ? wh_index(s) : -1;
            long long want = model[m->sku][i == 0 ? m->wh : m->to] + (duplicate ? 0 : d[i]);
            if (w < 0 || !th_get_int(l, "on_hand", &v) || v != want) {
                if (verbose)
                    fprintf(stderr, "%s: leg %u on_hand %lld, model %lld\n", m->id, i, v, want);
                ok = false;
            }
        }
    }
    if (!ok)
        fprintf(stderr, "movement %s (%s %lld of C-%d at %s): unexpected answer\n", m->id,
                KIND[m->kind], m->qty, m->sku + 1, WH[m->wh]);
    return ok;
}

/* ---- seed ---- */

static int seed(void)
{
    struct th_rows wh, cat, stock;
    th_rows_init(&wh);
    th_rows_init(&cat);
    th_rows_init(&stock);
    th_rows_add(&wh, "sss", "code", WH[0], "name", "Madrid", "country", "ES");
    th_rows_add(&wh, "sss", "code", WH[1], "name", "Warsaw", "country", "PL");
    for (int i = 0; i < NSKU; i++) {
        char sku[16], title[32];
        sku_code(i, sku, sizeof sku);
        snprintf(title, sizeof title, "Crash item %d", i + 1);
        th_rows_add(&cat, "sssis", "sku", sku, "product_id", "P-1", "title", title, "price_minor",
                    100LL, "currency", "EUR");
        for (int w = 0; w < NWH; w++) {
            seeded[i][w] = model[i][w] = 10 + 5 * i + 3 * w;
            th_rows_add(&stock, "ssi", "sku", sku, "warehouse", WH[w], "on_hand", seeded[i][w]);
        }
    }
    int rc = th_seed(D.sock, &wh, &cat, &stock);
    th_rows_free(&wh);
    th_rows_free(&cat);
    th_rows_free(&stock);
    return rc;
}

/* ---- verification ---- */

struct key_row {
    char key[72];
    char target[80];
    char entity[72];
    char kind[16];
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static int cmp_move(const void *a, const void *b)
{
    return strcmp(((const struct move *)a)->id, ((const struct move *)b)->id);
}

/* The outbox through the protocol, paged; NULL on failure. Ids must increase. */
static struct key_row *outbox_via_protocol(struct th_conn *c, size_t *n)
{
    size_t cap = 256, count = 0;
    struct key_row *rows = malloc(cap * sizeof *rows);
    char cursor[64] = "";
    long long last_id = 0;
    size_t max_pages = (nacked + 2) / PAGE + 10;
    for (size_t page = 0;; page++) {
        if (page > max_pages) {
            fprintf(stderr, "outbox.list: more pages than rows allow\n");
            free(rows);
            return NULL;
        }
        struct th_resp r;
        int rr = cursor[0] ? th_call(c, TIMEOUT, &r, "outbox.list", "is", "limit", (long long)PAGE,
                                     "cursor", cursor)
                           : th_call(c, TIMEOUT, &r, "outbox.list", "i", "limit", (long long)PAGE);
        if (rr != TH_OK) {
            fprintf(stderr, "outbox.list: %s %s %s\n", th_outcome(rr), r.code, r.message);
            free(rows);
            return NULL;
        }
        const msgpack_object *items = th_get(r.result, "items");
        const msgpack_object *next = th_get(r.result, "next_cursor");
        if (!items || items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size > PAGE ||
            !next) {
            fprintf(stderr, "outbox.list: malformed page\n");
            free(rows);
            return NULL;
        }
        for (uint32_t i = 0; i < items->via.array.size; i++) {
            const msgpack_object *it = &items->via.array.ptr[i];
            long long id = 0;
            if (count == cap) {
                cap *= 2;
                rows = realloc(rows, cap * sizeof *rows);
            }
            struct key_row *k = &rows[count++];
            memset(k, 0, sizeof *k);
            if (!th_get_int(it, "id", &id) || id <= last_id ||
                !th_get_str(it, "key", k->key, sizeof k->key) ||
                !th_get_str(it, "target", k->target, sizeof k->target) ||
                !th_get_str(it, "entity", k->entity, sizeof k->entity) ||
                !th_get_str(it, "kind", k->kind, sizeof k->kind)) {
                fprintf(stderr, "outbox.list: bad item (id %lld after %lld)\n", id, last_id);
                free(rows);
                return NULL;
            }
            last_id = id;
        }
        if (next->type == MSGPACK_OBJECT_NIL)
            break;
        if (next->type != MSGPACK_OBJECT_STR || next->via.str.size >= sizeof cursor ||
            items->via.array.size == 0) {
            fprintf(stderr, "outbox.list: bad next_cursor\n");
            free(rows);
            return NULL;
        }
        memcpy(cursor, next->via.str.ptr, next->via.str.size);
        cursor[next->via.str.size] = 0;
    }
    *n = count;
    return rows;
}

/*
 * Compares sorted outbox rows with the sorted acknowledged movements plus `extra` (may be
 * NULL): every key exactly once, nothing else, target / entity / kind right.
 */
static bool keys_match(struct key_row *rows, size_t n, const struct move *extra, const char *src)
{
    size_t nm = nacked + (extra != NULL);
    struct move *want = malloc((nm + 1) * sizeof *want);
    memcpy(want, acked, nacked * sizeof *want);
    if (extra)
        want[nacked] = *extra;
    qsort(want, nm, sizeof *want, cmp_move);
    qsort(rows, n, sizeof *rows, cmp_str);
    bool ok = true;
    int reported = 0;
    size_t i = 0, j = 0;
    while (i < n || j < nm) {
        int c = i == n ? 1 : j == nm ? -1 : strcmp(rows[i].key, want[j].id);
        if (c == 0 && i + 1 < n && !strcmp(rows[i].key, rows[i + 1].key)) {
            if (reported++ < 5)
                fprintf(stderr, "%s: outbox key %s more than once\n", src, rows[i].key);
            ok = false;
            i++;
            continue;
        }
        if (c < 0) {
            if (reported++ < 5)
                fprintf(stderr, "%s: outbox key %s was never acknowledged\n", src, rows[i].key);
            ok = false;
            i++;
        } else if (c > 0) {
            if (reported++ < 5)
                fprintf(stderr, "%s: acknowledged movement %s is not in the outbox\n", src,
                        want[j].id);
            ok = false;
            j++;
        } else {
            char target[80], sku[16];
            const struct move *m = &want[j];
            snprintf(target, sizeof target, "wh:%s", WH[m->wh]);
            sku_code(m->sku, sku, sizeof sku);
            if (strcmp(rows[i].target, target) || strcmp(rows[i].entity, sku) ||
                strcmp(rows[i].kind, m->kind == TRANSFER ? "transfer" : "movement")) {
                if (reported++ < 5)
                    fprintf(stderr, "%s: outbox row %s: target %s entity %s kind %s\n", src,
                            rows[i].key, rows[i].target, rows[i].entity, rows[i].kind);
                ok = false;
            }
            i++;
            j++;
        }
    }
    free(want);
    return ok;
}

/* stock.get of every SKU against the model (plus `extra` applied, when given). */
static bool stock_matches(struct th_conn *c, const struct move *extra)
{
    long long want[NSKU][NWH];
    memcpy(want, model, sizeof want);
    if (extra) {
        long long d[2];
        deltas(extra, d);
        want[extra->sku][extra->wh] += d[0];
        if (extra->kind == TRANSFER)
            want[extra->sku][extra->to] += d[1];
    }
    bool ok = true;
    for (int i = 0; i < NSKU; i++) {
        char sku[16];
        sku_code(i, sku, sizeof sku);
        struct th_resp r;
        int rr = th_call(c, TIMEOUT, &r, "stock.get", "s", "sku", sku);
        if (rr != TH_OK) {
            fprintf(stderr, "stock.get %s: %s %s\n", sku, th_outcome(rr), r.code);
            return false;
        }
        const msgpack_object *whs = th_get(r.result, "warehouses");
        if (!whs || whs->type != MSGPACK_OBJECT_ARRAY || whs->via.array.size != NWH) {
            fprintf(stderr, "stock.get %s: not %d warehouses\n", sku, NWH);
            return false;
        }
        long long total = 0;
        for (uint32_t k = 0; k < NWH; k++) {
            const msgpack_object *w = &whs->via.array.ptr[k];
            char code[16] = "";
            long long on_hand = -1, snapshot = -1, pending = -1;
            int wi = th_get_str(w, "warehouse", code, sizeof code) ? wh_index(code) : -1;
            th_get_int(w, "on_hand", &on_hand);
            th_get_int(w, "snapshot", &snapshot);
            th_get_int(w, "pending", &pending);
            if (wi < 0 || on_hand != want[i][wi] || snapshot != seeded[i][wi] ||
                pending != want[i][wi] - seeded[i][wi]) {
                fprintf(stderr,
                        "stock.get %s at %s: on_hand %lld snapshot %lld pending %lld; model "
                        "on_hand %lld snapshot %lld\n",
                        sku, code, on_hand, snapshot, pending, wi < 0 ? -1 : want[i][wi],
                        wi < 0 ? -1 : seeded[i][wi]);
                ok = false;
            }
            total += wi < 0 ? 0 : want[i][wi];
        }
        long long t = -1;
        th_get_int(th_get(r.result, "total"), "on_hand", &t);
        if (t != total) {
            fprintf(stderr, "stock.get %s: total on_hand %lld, model %lld\n", sku, t, total);
            ok = false;
        }
    }
    return ok;
}

static bool db_scalar(sqlite3 *db, const char *sql, const char *bind, long long *out)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s: %s\n", sql, sqlite3_errmsg(db));
        return false;
    }
    if (bind)
        sqlite3_bind_text(s, 1, bind, -1, SQLITE_STATIC);
    bool ok = sqlite3_step(s) == SQLITE_ROW;
    if (ok)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return ok;
}

/* Rows of a one-text-column query, sorted; NULL on failure. */
static struct key_row *db_keys(sqlite3 *db, const char *sql, size_t *n)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s: %s\n", sql, sqlite3_errmsg(db));
        return NULL;
    }
    size_t cap = 256, count = 0;
    struct key_row *rows = malloc(cap * sizeof *rows);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            cap *= 2;
            rows = realloc(rows, cap * sizeof *rows);
        }
        struct key_row *k = &rows[count++];
        memset(k, 0, sizeof *k);
        const char *cols[4];
        for (int i = 0; i < 4; i++) {
            cols[i] = i < sqlite3_column_count(s) ? (const char *)sqlite3_column_text(s, i) : "";
            if (!cols[i])
                cols[i] = "";
        }
        snprintf(k->key, sizeof k->key, "%s", cols[0]);
        snprintf(k->target, sizeof k->target, "%s", cols[1]);
        snprintf(k->entity, sizeof k->entity, "%s", cols[2]);
        snprintf(k->kind, sizeof k->kind, "%s", cols[3]);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "sqlite: %s: %s\n", sql, sqlite3_errmsg(db));
        free(rows);
        return NULL;
    }
    *n = count;
    return rows;
}

/*
 * The replica itself, opened read-only beside the running daemon: integrity, every
 * acknowledged movement exactly once in the ledger and in the outbox, the outbox holding
 * nothing else (but `extra`), and the stock rows agreeing with the model and the ledger.
 */
static bool db_matches(const struct move *extra)
{
    sqlite3 *db = NULL;
    bool ok = true;
    if (sqlite3_open_v2(D.db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: cannot open %s: %s\n", D.db, db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return false;
    }
    sqlite3_busy_timeout(db, 5000);
    /* integrity_check answers one row "ok" when all is well. */
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK) {
        int rows = 0;
        while (sqlite3_step(s) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            if (rows++ < 5 && (!t || strcmp(t, "ok") != 0)) {
                fprintf(stderr, "integrity_check: %s\n", t ? t : "(null)");
                ok = false;
            }
        }
        ok &= rows == 1;
        sqlite3_finalize(s);
    } else {
        ok = false;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW) {
            fprintf(stderr, "foreign_key_check: a row of %s violates a foreign key\n",
                    (const char *)sqlite3_column_text(s, 0));
            ok = false;
        }
        sqlite3_finalize(s);
    }
    if (!ok) {
        sqlite3_close(db);
        return false;
    }

    /* Each acknowledged movement: exactly one leg 0, the right number of legs, one outbox
     * row keyed by its id. */
    int reported = 0;
    for (size_t i = 0; i < nacked; i++) {
        const struct move *m = &acked[i];
        long long leg0 = -1, legs = -1, out = -1;
        db_scalar(db, "SELECT COUNT(*) FROM movements WHERE id = ?1 AND leg = 0", m->id, &leg0);
        db_scalar(db, "SELECT COUNT(*) FROM movements WHERE id = ?1", m->id, &legs);
        db_scalar(db, "SELECT COUNT(*) FROM outbox WHERE key = ?1", m->id, &out);
        if (leg0 != 1 || legs != (m->kind == TRANSFER ? 2 : 1) || out != 1) {
            if (reported++ < 5)
                fprintf(stderr, "replica: %s has %lld leg-0 rows, %lld rows, %lld outbox rows\n",
                        m->id, leg0, legs, out);
            ok = false;
        }
    }
    /* The outbox, and the ledger's ids, hold nothing else. */
    size_t n;
    struct key_row *rows = db_keys(db, "SELECT key, target, entity, kind FROM outbox", &n);
    if (!rows || !keys_match(rows, n, extra, "replica outbox"))
        ok = false;
    free(rows);
    rows = db_keys(db,
                   "SELECT m.id, 'wh:' || w.code, s.code,"
                   " CASE m.kind WHEN 'transfer' THEN 'transfer' ELSE 'movement' END"
                   " FROM movements m JOIN warehouses w ON w.id = m.warehouse"
                   " JOIN skus s ON s.id = m.sku WHERE m.leg = 0",
                   &n);
    if (!rows || !keys_match(rows, n, extra, "replica movements"))
        ok = false;
    free(rows);

    /* Stock rows: snapshot as seeded, pending = the ledger's deltas = the model's. */
    long long want[NSKU][NWH];
    memcpy(want, model, sizeof want);
    if (extra) {
        long long d[2];
        deltas(extra, d);
        want[extra->sku][extra->wh] += d[0];
        if (extra->kind == TRANSFER)
            want[extra->sku][extra->to] += d[1];
    }
    const char *sql = "SELECT s.code, w.code, st.snapshot, st.pending,"
                      " (SELECT COALESCE(SUM(m.delta), 0) FROM movements m"
                      "  WHERE m.sku = st.sku AND m.warehouse = st.warehouse)"
                      " FROM stock st JOIN skus s ON s.id = st.sku"
                      " JOIN warehouses w ON w.id = st.warehouse";
    int seen = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
        while (sqlite3_step(s) == SQLITE_ROW) {
            const char *sku = (const char *)sqlite3_column_text(s, 0);
            int i = sku && sku[0] == 'C' && sku[1] == '-' ? atoi(sku + 2) - 1 : -1;
            int w = wh_index((const char *)sqlite3_column_text(s, 1));
            long long snap = sqlite3_column_int64(s, 2), pend = sqlite3_column_int64(s, 3),
                      ledger = sqlite3_column_int64(s, 4);
            seen++;
            if (i < 0 || i >= NSKU || w < 0 || snap != seeded[i][w] ||
                pend != want[i][w] - seeded[i][w] || ledger != pend) {
                fprintf(stderr,
                        "replica: stock %s at %s: snapshot %lld pending %lld ledger %lld; "
                        "model: snapshot %lld pending %lld\n",
                        sku, sqlite3_column_text(s, 1), snap, pend, ledger,
                        i < 0 || w < 0 ? -1 : seeded[i][w],
                        i < 0 || w < 0 ? -1 : want[i][w] - seeded[i][w]);
                ok = false;
            }
        }
        sqlite3_finalize(s);
    } else {
        ok = false;
    }
    if (seen != NSKU * NWH) {
        fprintf(stderr, "replica: %d stock rows, want %d\n", seen, NSKU * NWH);
        ok = false;
    }
    sqlite3_close(db);
    return ok;
}

/* ---- one round ---- */

struct round_stats {
    int sent, acked, refused;
    bool inflight, inflight_committed;
    bool undelivered; /* the in-flight request's send failed: it cannot have been committed */
};

/*
 * Records movements one at a time while a helper process SIGKILLs tallyd after delay_ms,
 * independently of where the client is. Returns the request in flight at the kill in *fly
 * (fly->id[0] == 0 when none was: the kill fell between an answer and the next request).
 * false on an unexpected answer, or when tallyd ended other than by the kill.
 */
static bool record_until_kill(int round, int delay_ms, struct move *fly, struct round_stats *st)
{
    struct th_conn c;
    memset(fly, 0, sizeof *fly);
    if (th_connect(&c, D.sock) != 0) {
        fprintf(stderr, "round %d: cannot connect\n", round);
        th_close(&c);
        return false;
    }
    bool ok = true;
    pid_t killer = th_signal_later(D.pid, SIGKILL, delay_ms * 1000L + rng_below(1000));
    if (killer < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        th_close(&c);
        return false;
    }
    for (int n = 1; ok; n++) {
        struct move m;
        random_move(&m, round, n);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        pack_move(&sb, (uint32_t)n, &m);
        int s = th_send(&c, sb.data, sb.size, TIMEOUT);
        msgpack_sbuffer_destroy(&sb);
        if (s == TH_RESET) { /* the daemon is gone: this one never reached it */
            *fly = m;
            st->inflight = st->undelivered = true;
            break;
        }
        if (s != 0) {
            fprintf(stderr, "round %d: send of %s: %s\n", round, m.id, th_outcome(s));
            ok = false;
            break;
        }
        st->sent++;
        struct th_resp r;
        int rr = th_read_response(&c, TIMEOUT, &r);
        if (rr == TH_EOF || rr == TH_RESET) { /* killed with this one in flight */
            *fly = m;
            st->inflight = true;
            break;
        }
        if (rr != TH_OK && rr != TH_ERRRESP) {
            fprintf(stderr, "round %d: %s: %s\n", round, m.id, th_outcome(rr));
            ok = false;
        } else if (r.msgid != (uint64_t)n) {
            fprintf(stderr, "round %d: answer for msgid %llu, want %d\n", round,
                    (unsigned long long)r.msgid, n);
            ok = false;
        } else if (rr == TH_OK) {
            if (must_refuse(&m) || !check_move_result(&m, r.result, false))
                ok = false;
            model_apply(&m);
            st->acked++;
        } else if (!strcmp(r.code, "insufficient_stock") && must_refuse(&m)) {
            st->refused++;
        } else {
            fprintf(stderr, "round %d: %s (%s %lld of C-%d at %s): %s %s%s\n", round, m.id,
                    KIND[m.kind], m.qty, m.sku + 1, WH[m.wh], r.code, r.message,
                    must_refuse(&m) ? "" : " (the model has the stock)");
            ok = false;
        }
    }
    th_close(&c);
    th_reap(killer); /* cancels the kill if the round ended early */
    /* tallyd must have ended by that SIGKILL and nothing else. */
    int status = th_daemon_reap(&D, TIMEOUT);
    if (ok && !(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
        fprintf(stderr, "round %d: tallyd ended with wait status %d, not by the kill\n", round,
                status);
        th_daemon_dump_log(&D, 30);
        ok = false;
    }
    if (D.pid > 0)
        th_daemon_kill9(&D);
    return ok;
}

/* After the restart: the checks before and after settling the in-flight request. */
static bool verify_round(int round, const struct move *fly, struct round_stats *st)
{
    struct th_conn c;
    if (th_connect(&c, D.sock) != 0) {
        th_close(&c);
        return false;
    }
    bool ok = true;
    size_t n = 0;
    /* 1. The outbox: the acknowledged ids and maybe the one in flight. */
    struct key_row *rows = outbox_via_protocol(&c, &n);
    if (!rows) {
        th_close(&c);
        return false;
    }
    bool committed = false;
    if (fly->id[0])
        for (size_t i = 0; i < n; i++)
            if (!strcmp(rows[i].key, fly->id))
                committed = true;
    st->inflight_committed = committed;
    if (committed && st->undelivered) {
        fprintf(stderr, "round %d: %s is in the outbox, but its send had failed\n", round, fly->id);
        ok = false;
    }
    ok &= keys_match(rows, n, committed ? fly : NULL, "outbox.list");
    free(rows);
    ok &= stock_matches(&c, committed ? fly : NULL);
    ok &= db_matches(committed ? fly : NULL);

    /* 2. The in-flight request again, with its id: a duplicate if it was committed, else
     * applied now (or refused, when the stock is not there). */
    if (fly->id[0]) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        uint32_t id = c.next_id++;
        pack_move(&sb, id, fly);
        struct th_resp r;
        int rr = th_send(&c, sb.data, sb.size, TIMEOUT);
        msgpack_sbuffer_destroy(&sb);
        if (rr == 0)
            rr = th_read_response(&c, TIMEOUT, &r);
        if (rr == TH_OK && r.msgid == id) {
            if (committed) {
                /* Its effect is in the figures already: check against the model with it. */
                model_apply(fly);
                ok &= check_move_result(fly, r.result, true);
            } else {
                ok &= !must_refuse(fly) && check_move_result(fly, r.result, false);
                model_apply(fly);
            }
        } else if (rr == TH_ERRRESP && !committed && !strcmp(r.code, "insufficient_stock") &&
                   must_refuse(fly)) {
            /* Refused then, refused now: not in the outbox, nothing to add. */
        } else {
            fprintf(stderr, "round %d: re-sending %s (committed %d): %s %s %s\n", round, fly->id,
                    committed, th_outcome(rr), r.code, r.message);
            ok = false;
        }
        /* 3. Everything again, the in-flight one settled. */
        rows = outbox_via_protocol(&c, &n);
        ok &= rows && keys_match(rows, n, NULL, "outbox.list after the re-send");
        free(rows);
        ok &= stock_matches(&c, NULL);
        ok &= db_matches(NULL);
    }
    /* status agrees: with no upstream configured every outbox row is still pending. */
    struct th_resp r;
    long long pending = -1;
    if (th_call(&c, TIMEOUT, &r, "status", "") == TH_OK)
        th_get_int(th_get(r.result, "outbox"), "pending", &pending);
    if (pending != (long long)nacked) {
        fprintf(stderr, "round %d: status outbox.pending %lld, acknowledged movements %zu\n", round,
                pending, nacked);
        ok = false;
    }
    th_close(&c);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_crash TALLYD [SEED [ROUNDS]]\n");
        return 2;
    }
    unsigned long long seed_arg = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    int rounds = argc > 3 ? atoi(argv[3]) : 20;
    if (rounds < 1 || rounds > 1000)
        rounds = 20;
    th_setup("test_crash", 60 + 10 * (unsigned)rounds);
    verbose = getenv("TALLY_TEST_VERBOSE") != NULL;
    rng_state = 0x9E3779B97F4A7C15ULL * (seed_arg + 1);
    for (int i = 0; i < 8; i++)
        rng();

    if (th_daemon_init(&D, argv[1], "crash") != 0)
        return 1;
    D.log_level = "error";
    if (th_daemon_start(&D) != 0 || seed() != 0) {
        fprintf(stderr, "cannot start and seed tallyd\n");
        th_daemon_dump_log(&D, 30);
        th_daemon_cleanup(&D);
        return 1;
    }
    int64_t t0 = th_now_ms();
    int sent = 0, inflight = 0, committed = 0, refused = 0;
    for (int round = 1; round <= rounds; round++) {
        int delay = 10 + rng_below(291);
        struct move fly;
        struct round_stats st = {0};
        int before = check_failures;
        bool rec = record_until_kill(round, delay, &fly, &st);
        CHECK(rec);
        if (th_daemon_start(&D) != 0) {
            CHECK(!"restart after kill -9");
            break;
        }
        bool ver = verify_round(round, &fly, &st);
        CHECK(ver);
        sent += st.sent;
        refused += st.refused;
        inflight += st.inflight;
        committed += st.inflight_committed;
        if (verbose || check_failures != before)
            printf("round %2d: kill after %3d ms: %d sent, %d acknowledged, %d refused, in "
                   "flight: %s%s%s\n",
                   round, delay, st.sent, st.acked, st.refused, fly.id[0] ? fly.id : "none",
                   fly.id[0] ? (st.inflight_committed ? " (committed)" : " (not committed)") : "",
                   check_failures != before ? "  FAILED" : "");
        if (check_failures != before) {
            th_daemon_dump_log(&D, 20);
            break;
        }
    }
    printf("%d rounds in %lld ms: %d movements sent, %zu acknowledged in all, %d refused, %d in "
           "flight at a kill (%d of them committed)\n",
           rounds, (long long)(th_now_ms() - t0), sent, nacked, refused, inflight, committed);

    int status = th_daemon_stop(&D, 15000);
    bool clean = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!clean) {
        fprintf(stderr, "tallyd did not stop cleanly (wait status %d)\n", status);
        th_daemon_dump_log(&D, 60);
    }
    CHECK(clean);
    th_daemon_cleanup(&D);
    free(acked);
    return check_result("test_crash");
}
