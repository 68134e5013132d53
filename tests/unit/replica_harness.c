/*
 * The replica harness (replica_harness.h): one struct rh holds the daemon context, the
 * request and response buffers of the calls and the rotating buffers of rh_qtext.
 */
#include "replica_harness.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "config.h"
#include "importer.h"
#include "rpc.h"
#include "store.h"
#include "tallyd.h"
#include "tally/protocol.h"
#include "worker.h"

#define RH_TEXTS 8
#define RH_TEXT_LEN 1024
#define RH_MAX_PARAMS 16
#define RH_ROW_FIELDS 7

struct rh {
    char dir[64];
    int replicas; /* replica files opened so far: each gets a new name */
    struct tallyd d;
    int role;
    msgpack_sbuffer req;
    msgpack_packer pk;
    msgpack_sbuffer resp_buf;
    msgpack_unpacked resp; /* decoded from resp_buf; result maps point into it */
    char last_code[64];
    char last_message[1200];
    char text[RH_TEXTS][RH_TEXT_LEN];
    int next_text;
};

struct rh *rh_new(const char *name)
{
    struct rh *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    snprintf(h->dir, sizeof h->dir, "/tmp/%s-XXXXXX", name);
    if (!mkdtemp(h->dir)) {
        int e = errno;
        free(h);
        errno = e;
        return NULL;
    }
    h->role = TALLY_ROLE_WRITER;
    msgpack_sbuffer_init(&h->req);
    msgpack_sbuffer_init(&h->resp_buf);
    msgpack_unpacked_init(&h->resp);
    return h;
}

void rh_free(struct rh *h)
{
    if (!h)
        return;
    store_close(h->d.store);
    msgpack_unpacked_destroy(&h->resp);
    msgpack_sbuffer_destroy(&h->resp_buf);
    msgpack_sbuffer_destroy(&h->req);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", h->dir);
    free(h);
}

struct tallyd *rh_daemon(struct rh *h)
{
    return &h->d;
}

void rh_open(struct rh *h)
{
    char path[128], err[256];
    store_close(h->d.store);
    memset(&h->d, 0, sizeof h->d);
    config_defaults(&h->d.cfg);
    h->d.cfg.sync_full = false;
    snprintf(path, sizeof path, "%s/r-%d.db", h->dir, h->replicas++);
    if (store_open(path, false, &h->d.store, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(2);
    }
}

/* Packs one "key=value" param as rh_call describes. */
static void pack_kv(msgpack_packer *pk, const char *kv)
{
    const char *eq = strchr(kv, '=');
    mp_pack_strn(pk, kv, (size_t)(eq - kv));
    if (eq[1] == '#')
        msgpack_pack_int64(pk, strtoll(eq + 2, NULL, 10));
    else if (eq[1] == '!' && eq[2] == '1')
        msgpack_pack_true(pk);
    else if (eq[1] == '!')
        msgpack_pack_false(pk);
    else
        mp_pack_strz(pk, eq + 1);
}

/* Imports rows given as arrays of "key=value" (NULL-terminated unless full) through
 * import_rows. */
static void import_kv(struct rh *h, int kind, int nrows, const char *const rows[][RH_ROW_FIELDS])
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (size_t)nrows);
    for (int i = 0; i < nrows; i++) {
        int n = 0;
        while (n < RH_ROW_FIELDS && rows[i][n])
            n++;
        msgpack_pack_map(&pk, (size_t)n);
        for (int k = 0; k < n; k++)
            pack_kv(&pk, rows[i][k]);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, sb.data, sb.size, &off);
    struct import_result res;
    char err[256];
    if (import_rows(h->d.store, kind, &u.data, &res, err, sizeof err) != 0) {
        fprintf(stderr, "import: %s\n", err);
        exit(2);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

void rh_seed_standard(struct rh *h)
{
    static const char *const wh[][RH_ROW_FIELDS] = {
        {"code=A", "name=Alpha", "country=ES", NULL},
        {"code=B", "name=Beta", "country=FR", NULL},
    };
    static const char *const cat[][RH_ROW_FIELDS] = {
        {"sku=S1", "product_id=P1", "title=Shirt red M", "price_minor=#1999", "currency=EUR", NULL},
        {"sku=S2", "product_id=P1", "title=Shirt red L", "price_minor=#1999", "currency=EUR", NULL},
    };
    static const char *const stock[][RH_ROW_FIELDS] = {
        {"sku=S1", "warehouse=A", "on_hand=#10", NULL},
    };
    import_kv(h, IMPORT_WAREHOUSES, 2, wh);
    import_kv(h, IMPORT_CATALOG, 2, cat);
    import_kv(h, IMPORT_STOCK, 1, stock);
}

/* ---- SQL on the replica ---- */

/* The SQL of `fmt` in a buffer the caller frees; NULL when out of memory. */
static char *format_sql(const char *fmt, va_list ap)
{
    va_list len_ap;
    va_copy(len_ap, ap);
    int n = vsnprintf(NULL, 0, fmt, len_ap);
    va_end(len_ap);
    if (n < 0)
        return NULL;
    char *sql = malloc((size_t)n + 1);
    if (sql)
        vsnprintf(sql, (size_t)n + 1, fmt, ap);
    return sql;
}

/* The statement of `fmt` prepared, or NULL (said on stderr). */
static sqlite3_stmt *prepare(struct rh *h, const char *fmt, va_list ap)
{
    char *sql = format_sql(fmt, ap);
    if (!sql) {
        fprintf(stderr, "prepare: out of memory: %s\n", fmt);
        return NULL;
    }
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(store_db(h->d.store), sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(store_db(h->d.store)), sql);
        s = NULL;
    }
    free(sql);
    return s;
}

int rh_exec(struct rh *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = format_sql(fmt, ap);
    va_end(ap);
    if (!sql) {
        fprintf(stderr, "exec: out of memory: %s\n", fmt);
        return -1;
    }
    char *msg = NULL;
    int rc = sqlite3_exec(store_db(h->d.store), sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "exec: %s: %s\n", msg, sql);
    sqlite3_free(msg);
    free(sql);
    return rc == SQLITE_OK ? 0 : -1;
}

int64_t rh_q64(struct rh *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *s = prepare(h, fmt, ap);
    va_end(ap);
    int64_t v = RH_NONE;
    if (!s)
        return v;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

const char *rh_qtext(struct rh *h, const char *fmt, ...)
{
    char *b = h->text[h->next_text++ % RH_TEXTS];
    snprintf(b, RH_TEXT_LEN, "(none)");
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *s = prepare(h, fmt, ap);
    va_end(ap);
    if (!s)
        return b;
    if (sqlite3_step(s) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        snprintf(b, RH_TEXT_LEN, "%s", t ? (const char *)t : "(null)");
    }
    sqlite3_finalize(s);
    return b;
}

int rh_exec_other(struct rh *h, const char *sql)
{
    struct store *w = NULL;
    char err[256];
    if (store_open_extra(store_path(h->d.store), false, false, &w, err, sizeof err) != 0) {
        fprintf(stderr, "rh_exec_other: %s\n", err);
        return -1;
    }
    int r = store_begin(w);
    if (r == 0 && sqlite3_exec(store_db(w), sql, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "rh_exec_other: %s: %s\n", sqlite3_errmsg(store_db(w)), sql);
        store_rollback(w);
        r = -1;
    } else if (r == 0)
        r = store_commit(w);
    store_close(w);
    return r == 0 ? 0 : -1;
}

int64_t rh_stock_figure(struct rh *h, const char *expr, const char *sku, const char *wh)
{
    return rh_q64(h,
                  "SELECT %s FROM stock st JOIN skus k ON k.id = st.sku"
                  " JOIN warehouses w ON w.id = st.warehouse WHERE k.code = '%s' AND w.code = '%s'",
                  expr, sku, wh);
}

int64_t rh_sku_id(struct rh *h, const char *code)
{
    return rh_q64(h, "SELECT id FROM skus WHERE code = '%s'", code);
}

int64_t rh_wh_id(struct rh *h, const char *code)
{
    return rh_q64(h, "SELECT id FROM warehouses WHERE code = '%s'", code);
}

/* ---- calls through the dispatcher ---- */

void rh_set_role(struct rh *h, int role)
{
    h->role = role;
}

msgpack_packer *rh_req_begin(struct rh *h, const char *method, uint32_t nfields)
{
    msgpack_sbuffer_destroy(&h->req);
    msgpack_sbuffer_init(&h->req);
    msgpack_packer_init(&h->pk, &h->req, msgpack_sbuffer_write);
    msgpack_pack_array(&h->pk, 4);
    msgpack_pack_int(&h->pk, 0);
    msgpack_pack_int(&h->pk, 7);
    mp_pack_strz(&h->pk, method);
    msgpack_pack_array(&h->pk, 1);
    msgpack_pack_map(&h->pk, nfields);
    return &h->pk;
}

const msgpack_object *rh_req_send(struct rh *h)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, h->req.data, h->req.size, &off);
    msgpack_sbuffer_destroy(&h->resp_buf);
    msgpack_sbuffer_init(&h->resp_buf);
    rpc_handle(&h->d, h->role, NULL, &u.data, &h->resp_buf);
    msgpack_unpacked_destroy(&u);
    msgpack_unpacked_destroy(&h->resp);
    msgpack_unpacked_init(&h->resp);
    off = 0;
    h->last_code[0] = 0;
    h->last_message[0] = 0;
    const msgpack_object *r = &h->resp.data;
    if (msgpack_unpack_next(&h->resp, h->resp_buf.data, h->resp_buf.size, &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        off != h->resp_buf.size || r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size != 4) {
        snprintf(h->last_code, sizeof h->last_code, "bad response");
        return NULL;
    }
    const msgpack_object *e = &r->via.array.ptr[2];
    if (e->type != MSGPACK_OBJECT_NIL) {
        const msgpack_object *code = mp_map_get(e, "code");
        snprintf(h->last_code, sizeof h->last_code, "%.*s", code ? (int)code->via.str.size : 1,
                 code ? code->via.str.ptr : "?");
        const msgpack_object *msg = mp_map_get(e, "message");
        if (msg && msg->type == MSGPACK_OBJECT_STR)
            snprintf(h->last_message, sizeof h->last_message, "%.*s", (int)msg->via.str.size,
                     msg->via.str.ptr);
        return NULL;
    }
    return &r->via.array.ptr[3];
}

const msgpack_object *rh_call(struct rh *h, const char *method, ...)
{
    const char *args[RH_MAX_PARAMS];
    uint32_t n = 0;
    va_list ap;
    va_start(ap, method);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < RH_MAX_PARAMS)
        args[n++] = a;
    va_end(ap);
    msgpack_packer *pk = rh_req_begin(h, method, n);
    for (uint32_t i = 0; i < n; i++)
        pack_kv(pk, args[i]);
    return rh_req_send(h);
}

const char *rh_last_code(const struct rh *h)
{
    return h->last_code;
}

const char *rh_last_message(const struct rh *h)
{
    return h->last_message;
}

/* ---- fields of a result map ---- */

int64_t rh_iget(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = mp_map_get(m, key);
    if (!v ||
        (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER && v->type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
        return RH_NONE;
    return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)v->via.u64 : v->via.i64;
}

const char *rh_sget(const msgpack_object *m, const char *key)
{
    /* Rotating copies, so that a few may be compared or printed in one expression; this
     * function's only state. */
    static char bufs[RH_TEXTS][RH_TEXT_LEN];
    static int next;
    const msgpack_object *v = mp_map_get(m, key);
    if (!v || v->type != MSGPACK_OBJECT_STR)
        return NULL;
    char *b = bufs[next++ % RH_TEXTS];
    snprintf(b, RH_TEXT_LEN, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    return b;
}

bool rh_bget(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = mp_map_get(m, key);
    return v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
}

bool rh_is_nil(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = mp_map_get(m, key);
    return v && v->type == MSGPACK_OBJECT_NIL;
}

/* Names (type:name) of the objects of schema `version`, and its columns (table.column). */
static int schema_names(int version, char *names, size_t cap)
{
    sqlite3 *db = NULL;
    char err[256];
    names[0] = 0;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        schema_migrate_to(db, 0, version, err, sizeof err) != 0) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT m.type || ':' || m.name FROM sqlite_master m"
                                " WHERE m.name NOT LIKE 'sqlite_%'"
                                " UNION ALL SELECT 'column:' || m.name || '.' || c.name"
                                " FROM sqlite_master m, pragma_table_info(m.name) c"
                                " WHERE m.type = 'table'",
                                -1, &s, NULL);
    size_t len = 0;
    while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        int n = snprintf(names + len, cap - len, "|%s|", (const char *)sqlite3_column_text(s, 0));
        if (n < 0 || (size_t)n >= cap - len) {
            rc = SQLITE_FULL;
            break;
        }
        len += (size_t)n;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

int rh_rewind_schema(const char *path, int version)
{
    static char keep[1 << 16];
    if (schema_names(version, keep, sizeof keep) != 0)
        return -1;
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    /* Triggers and indexes first (a column they use cannot be dropped), then tables, then
     * the columns of the tables that stay. */
    static const char *const passes[] = {
        "SELECT 'DROP TRIGGER \"' || name || '\"', 'trigger:' || name FROM sqlite_master"
        " WHERE type = 'trigger'",
        "SELECT 'DROP INDEX \"' || name || '\"', 'index:' || name FROM sqlite_master"
        " WHERE type = 'index' AND sql IS NOT NULL",
        "SELECT 'DROP TABLE \"' || name || '\"', 'table:' || name FROM sqlite_master"
        " WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        "SELECT 'ALTER TABLE \"' || m.name || '\" DROP COLUMN \"' || c.name || '\"',"
        " 'column:' || m.name || '.' || c.name FROM sqlite_master m,"
        " pragma_table_info(m.name) c WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
    };
    int r = sqlite3_exec(db, "PRAGMA foreign_keys = OFF", NULL, NULL, NULL);
    /* Titles still queued for the title index (sku_titles_todo, titleidx.h) were in the index
     * at once under the older schemas: indexed before the queue goes, so the older replica
     * is one those schemas could have made. Whether `version` has the queue is read from its
     * schema, not from a migration number (the lead renumbers migrations at merges). */
    sqlite3_stmt *q = NULL;
    bool queued = !strstr(keep, "|table:sku_titles_todo|") && r == SQLITE_OK &&
                  sqlite3_prepare_v2(db,
                                     "SELECT COUNT(*) FROM sqlite_master WHERE name IN"
                                     " ('sku_titles_todo', 'sku_titles')",
                                     -1, &q, NULL) == SQLITE_OK &&
                  sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 2;
    sqlite3_finalize(q);
    if (queued)
        r = sqlite3_exec(db,
                         "INSERT INTO sku_titles(rowid, title) SELECT s.id, s.title"
                         " FROM sku_titles_todo t JOIN skus s ON s.id = t.id;"
                         "DELETE FROM sku_titles_todo;",
                         NULL, NULL, NULL);
    for (size_t p = 0; r == SQLITE_OK && p < sizeof passes / sizeof passes[0]; p++) {
        char sql[8192] = "";
        size_t len = 0;
        sqlite3_stmt *s = NULL;
        r = sqlite3_prepare_v2(db, passes[p], -1, &s, NULL);
        while (r == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
            char name[300];
            snprintf(name, sizeof name, "|%s|", (const char *)sqlite3_column_text(s, 1));
            if (strstr(keep, name))
                continue;
            int n = snprintf(sql + len, sizeof sql - len, "%s;",
                             (const char *)sqlite3_column_text(s, 0));
            if (n < 0 || (size_t)n >= sizeof sql - len) {
                r = SQLITE_FULL;
                break;
            }
            len += (size_t)n;
        }
        sqlite3_finalize(s);
        if (r == SQLITE_OK && len)
            r = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    char bump[64];
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", version);
    if (r == SQLITE_OK)
        r = sqlite3_exec(db, bump, NULL, NULL, NULL);
    sqlite3_close(db);
    return r == SQLITE_OK ? 0 : -1;
}

int64_t rh_vm_steps(struct store *st, const char *needle)
{
    int64_t n = 0;
    sqlite3 *db = store_db(st);
    for (sqlite3_stmt *s = sqlite3_next_stmt(db, NULL); s; s = sqlite3_next_stmt(db, s)) {
        const char *sql = sqlite3_sql(s);
        if (sql && strstr(sql, needle))
            n += sqlite3_stmt_status(s, SQLITE_STMTSTATUS_VM_STEP, 1);
    }
    return n;
}

bool rh_utf8_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = *p < 0x80             ? 0
                : (*p & 0xE0) == 0xC0 ? 1
                : (*p & 0xF0) == 0xE0 ? 2
                : (*p & 0xF8) == 0xF0 ? 3
                                      : -1;
        if (n < 0)
            return false;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xC0) != 0x80)
                return false;
    }
    return true;
}

const char *rh_long_note(int k)
{
    static char note[4][TALLY_MAX_TEXT_LEN + 1];
    if (!note[1][0]) {
        memset(note[1], 'n', TALLY_MAX_TEXT_LEN);
        for (size_t i = 0; i + 2 <= TALLY_MAX_TEXT_LEN; i += 2)
            memcpy(note[2] + i, "\xc3\xa9", 2);
        for (size_t i = 0; i + 3 <= TALLY_MAX_TEXT_LEN; i += 3)
            memcpy(note[3] + i, "\xe4\xb8\xad", 3);
    }
    return k >= 1 && k <= 3 ? note[k] : NULL;
}

void rh_bare_start(struct tallyd *d, const char *name, bool sync_full, char *dir, size_t cap)
{
    char path[256], err[256];
    snprintf(dir, cap, "/tmp/%s.XXXXXX", name);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(path, sizeof path, "%s/r.db", dir);
    d->cfg.sync_full = sync_full;
    if (store_open(path, sync_full, &d->store, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(2);
    }
    if (sqlite3_exec(store_db(d->store), "CREATE TABLE t(x INTEGER)", NULL, NULL, NULL) !=
        SQLITE_OK) {
        fprintf(stderr, "CREATE TABLE t: %s\n", sqlite3_errmsg(store_db(d->store)));
        exit(2);
    }
    d->loop = uv_default_loop();
    if (workers_start(d, err, sizeof err) != 0) {
        fprintf(stderr, "workers_start: %s\n", err);
        exit(2);
    }
}

int rh_bare_end(struct tallyd *d, const char *dir)
{
    uv_loop_close(d->loop);
    store_close(d->store);
    d->store = NULL;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 2;
}
