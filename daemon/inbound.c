#include "inbound.h"

#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "catalog.h"
#include "codec.h"
#include "outbox.h"

int inbound_payload(const struct inbound_req *req, void *sbv)
{
    msgpack_sbuffer *sb = sbv;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    size_t n = 3 + (req->ref[0] != 0) + (req->from[0] != 0) + (req->eta > 0) +
               (req->carrier[0] != 0) + (req->tracking_no[0] != 0) + (req->note[0] != 0) +
               (req->station[0] != 0);
    msgpack_pack_map(&pk, n);
    mp_pack_kv_str(&pk, "id", req->id);
    mp_pack_kv_str(&pk, "warehouse", req->warehouse);
    mp_pack_key(&pk, "lines");
    msgpack_pack_array(&pk, (size_t)req->nlines);
    for (int i = 0; i < req->nlines; i++) {
        msgpack_pack_map(&pk, 2);
        mp_pack_kv_str(&pk, "sku", req->lines[i].sku);
        mp_pack_kv_int(&pk, "qty", req->lines[i].qty);
    }
    if (req->ref[0])
        mp_pack_kv_str(&pk, "ref", req->ref);
    if (req->from[0])
        mp_pack_kv_str(&pk, "from", req->from);
    if (req->eta > 0)
        mp_pack_kv_int(&pk, "eta", req->eta);
    if (req->carrier[0])
        mp_pack_kv_str(&pk, "carrier", req->carrier);
    if (req->tracking_no[0])
        mp_pack_kv_str(&pk, "tracking_no", req->tracking_no);
    if (req->note[0])
        mp_pack_kv_str(&pk, "note", req->note);
    if (req->station[0])
        mp_pack_kv_str(&pk, "station", req->station);
    return sb->data || sb->size == 0 ? 0 : TALLY_E_NOMEM;
}

static int validate(const struct inbound_req *req, char *err, size_t errlen)
{
    if (req->nlines < 1 || req->nlines > INBOUND_MAX_LINES) {
        snprintf(err, errlen, "an inbound notice needs 1 to %d lines (sku and qty)",
                 INBOUND_MAX_LINES);
        return TALLY_E_INVALID_PARAMS;
    }
    for (int i = 0; i < req->nlines; i++) {
        if (!req->lines[i].sku[0]) {
            snprintf(err, errlen, "line %d: a sku is required", i + 1);
            return TALLY_E_INVALID_PARAMS;
        }
        if (req->lines[i].qty < 1 || req->lines[i].qty > TALLY_MAX_QTY) {
            snprintf(err, errlen, "line %d: qty must be within 1..%lld", i + 1,
                     (long long)TALLY_MAX_QTY);
            return TALLY_E_INVALID_PARAMS;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(req->lines[j].sku, req->lines[i].sku)) {
                snprintf(err, errlen, "line %d: %s is already on line %d (one line per SKU)", i + 1,
                         req->lines[i].sku, j + 1);
                return TALLY_E_INVALID_PARAMS;
            }
    }
    if (req->eta < 0) {
        snprintf(err, errlen, "eta must be a time (epoch seconds)");
        return TALLY_E_INVALID_PARAMS;
    }
    return 0;
}

/* The notice `id` exists: the same warehouse and lines answer it (duplicate), else conflict. */
static int answer_duplicate(struct store *st, const struct inbound_req *req, int64_t seq,
                            int64_t wh, struct inbound_result *res, char *err, size_t errlen)
{
    sqlite3_stmt *s =
        store_stmt(st, "SELECT n.warehouse, n.state, n.created_at,"
                       " (SELECT COUNT(*) FROM inbound_lines l WHERE l.notice = n.seq)"
                       " FROM inbound_notices n WHERE n.seq = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, seq);
    int rc = sqlite3_step(s);
    bool same = false;
    if (rc == SQLITE_ROW) {
        same = sqlite3_column_int64(s, 0) == wh && sqlite3_column_int(s, 3) == req->nlines;
        snprintf(res->state, sizeof res->state, "%s", (const char *)sqlite3_column_text(s, 1));
        res->created_at = sqlite3_column_int64(s, 2);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return store_error(st, rc, "inbound notice");
    s = store_stmt(st, "SELECT 1 FROM inbound_lines l JOIN skus k ON k.id = l.sku"
                       " WHERE l.notice = ?1 AND k.code = ?2 AND l.qty = ?3");
    if (!s)
        return TALLY_E_STORAGE;
    for (int i = 0; same && i < req->nlines; i++) {
        sqlite3_bind_int64(s, 1, seq);
        sqlite3_bind_text(s, 2, req->lines[i].sku, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, req->lines[i].qty);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return store_error(st, rc, "inbound lines");
        same = rc == SQLITE_ROW;
    }
    if (!same) {
        snprintf(err, errlen, "inbound notice id '%s' was already used for a different notice",
                 req->id);
        return TALLY_E_CONFLICT;
    }
    snprintf(res->id, sizeof res->id, "%s", req->id);
    res->duplicate = true;
    char key[160];
    outbox_key_inbound(key, sizeof key, req->warehouse, req->id);
    s = store_stmt(st, "SELECT id FROM outbox WHERE key = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        res->outbox_id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return 0;
}

static void bind_opt(sqlite3_stmt *s, int col, const char *v)
{
    if (v[0])
        sqlite3_bind_text(s, col, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, col);
}

int inbound_create_locked(struct store *st, const struct inbound_req *reqin,
                          struct inbound_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    err[0] = 0;
    int r = validate(reqin, err, errlen);
    if (r)
        return r;
    struct inbound_req req = *reqin;
    if (!req.id[0])
        outbox_notice_id(req.id, sizeof req.id);
    int64_t wh, skus[INBOUND_MAX_LINES];
    r = catalog_warehouse_id(st, req.warehouse, strlen(req.warehouse), &wh);
    if (r == TALLY_E_NOT_FOUND)
        snprintf(err, errlen, "no warehouse '%s'", req.warehouse);
    if (r)
        return r;
    for (int i = 0; i < req.nlines; i++) {
        r = catalog_sku_id(st, req.lines[i].sku, strlen(req.lines[i].sku), &skus[i]);
        if (r == TALLY_E_NOT_FOUND)
            snprintf(err, errlen, "line %d: no SKU '%s' in the catalog", i + 1, req.lines[i].sku);
        if (r)
            return r;
    }
    sqlite3_stmt *s = store_stmt(st, "SELECT seq FROM inbound_notices WHERE id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, req.id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t seq = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_error(st, rc, "inbound notice");
    if (seq)
        return answer_duplicate(st, &req, seq, wh, res, err, errlen);

    int64_t now = store_now();
    s = store_stmt(st, "INSERT INTO inbound_notices(id, warehouse, eta, ref, from_wh, carrier,"
                       " tracking_no, note, created_by, created_at, updated_at)"
                       " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?10)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, req.id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, wh);
    if (req.eta > 0)
        sqlite3_bind_int64(s, 3, req.eta);
    else
        sqlite3_bind_null(s, 3);
    bind_opt(s, 4, req.ref);
    bind_opt(s, 5, req.from);
    bind_opt(s, 6, req.carrier);
    bind_opt(s, 7, req.tracking_no);
    bind_opt(s, 8, req.note);
    bind_opt(s, 9, req.created_by);
    sqlite3_bind_int64(s, 10, now);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "inbound notice insert");
    seq = sqlite3_last_insert_rowid(store_db(st));
    s = store_stmt(st, "INSERT INTO inbound_lines(notice, line, sku, qty) VALUES(?1,?2,?3,?4)");
    if (!s)
        return TALLY_E_STORAGE;
    for (int i = 0; i < req.nlines; i++) {
        sqlite3_bind_int64(s, 1, seq);
        sqlite3_bind_int(s, 2, i + 1);
        sqlite3_bind_int64(s, 3, skus[i]);
        sqlite3_bind_int64(s, 4, req.lines[i].qty);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_error(st, rc, "inbound line insert");
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char key[160], target[80];
    outbox_key_inbound(key, sizeof key, req.warehouse, req.id);
    outbox_target_wh(target, sizeof target, req.warehouse);
    r = inbound_payload(&req, &sb);
    if (r == 0)
        r = outbox_append(st, key, target, req.id, OBX_INBOUND, sb.data, sb.size, &res->outbox_id);
    msgpack_sbuffer_destroy(&sb);
    if (r)
        return r;
    snprintf(res->id, sizeof res->id, "%s", req.id);
    snprintf(res->state, sizeof res->state, "pending");
    res->created_at = now;
    return 0;
}
