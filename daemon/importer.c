#include "importer.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "codec.h"
#include "enums.h"
#include "orders.h"
#include "tally/protocol.h"

#define MAX_PRICE_MINOR 10000000000LL /* 10^10 minor units per unit */
#define MAX_LINE_QTY 1000000LL
#define MAX_TIME 253402300799LL /* 9999-12-31 */
#define MAX_ATTRIBUTES 32

static const char *const kind_names[] = {"warehouses", "catalog", "stock", "orders"};

int import_kind_parse(const char *s, size_t n)
{
    for (int i = 0; i < 4; i++)
        if (strlen(kind_names[i]) == n && memcmp(kind_names[i], s, n) == 0)
            return i;
    return -1;
}

const char *import_kind_name(int kind)
{
    return kind >= 0 && kind < 4 ? kind_names[kind] : "?";
}

/* Checks a string field as `text` does, without copying it: *s and *n point into the request
 * (not NUL-terminated; never holds a NUL: identifiers and text refuse control characters). */
static int text_ref(struct mp_params *p, const char *key, bool required, bool id, size_t cap,
                    const char **s, size_t *n, bool *present)
{
    bool have = false;
    int r = id ? mp_param_id(p, key, required, s, n, &have)
               : mp_param_str(p, key, required, cap - 1, s, n, &have);
    if (present)
        *present = have;
    if (r || !have)
        return r;
    if (*n >= cap) {
        snprintf(p->err, sizeof p->err, "%sfield '%s' is longer than %zu bytes",
                 p->prefix ? p->prefix : "", key, cap - 1);
        return TALLY_E_INVALID_PARAMS;
    }
    return 0;
}

/* Reads a string field into buf (NUL-terminated). `id` selects identifier rules. A value that
 * does not fit `cap` is refused, whatever rules it otherwise passes. */
static int text(struct mp_params *p, const char *key, bool required, bool id, char *buf, size_t cap,
                bool *present)
{
    const char *s;
    size_t n;
    bool have = false;
    int r = text_ref(p, key, required, id, cap, &s, &n, &have);
    if (present)
        *present = have;
    if (r || !have)
        return r;
    memcpy(buf, s, n);
    buf[n] = 0;
    return 0;
}

/* ISO codes: `len` upper-case ASCII letters (country: 2, currency: 3). */
static int iso_code(struct mp_params *p, const char *key, size_t len, char *buf)
{
    int r = text(p, key, true, true, buf, len + 2, NULL);
    /* Any malformed value (too long, spaces, ...) gets the ISO message below. */
    if (r == TALLY_E_INVALID_PARAMS && !strstr(p->err, "is required"))
        r = 0, buf[0] = 0;
    if (r)
        return r;
    bool ok = strlen(buf) == len;
    for (size_t i = 0; ok && i < len; i++)
        ok = isupper((unsigned char)buf[i]);
    if (!ok) {
        snprintf(p->err, sizeof p->err, "%sfield '%s' must be %zu upper-case letters (ISO)",
                 p->prefix ? p->prefix : "", key, len);
        return TALLY_E_INVALID_PARAMS;
    }
    return 0;
}

/* A value outside its list (enums.c), refused as the methods refuse one. */
static int refuse_enum(struct mp_params *p, const struct param_enum *e, const char *key,
                       const char *value)
{
    int pl = snprintf(p->err, sizeof p->err, "%s", p->prefix ? p->prefix : "");
    size_t off = pl < 0 ? 0 : (size_t)pl < sizeof p->err ? (size_t)pl : sizeof p->err - 1;
    enum_refusal(e, key, value, strlen(value), p->err + off, sizeof p->err - off);
    return TALLY_E_INVALID_PARAMS;
}

static int fail_row(struct mp_params *p, const char *fmt, const char *what)
{
    char tmp[200];
    snprintf(tmp, sizeof tmp, fmt, what);
    snprintf(p->err, sizeof p->err, "%s%s", p->prefix ? p->prefix : "", tmp);
    return 0;
}

static int import_warehouse(struct store *st, struct mp_params *p, bool *inserted)
{
    char code[TALLY_MAX_ID_LEN + 1], name[TALLY_MAX_TEXT_LEN + 1], country[4], mode[16] = "";
    bool serves = true, have_mode = false;
    int r;
    if ((r = text(p, "code", true, true, code, sizeof code, NULL)) ||
        (r = text(p, "name", true, false, name, sizeof name, NULL)) ||
        (r = iso_code(p, "country", 2, country)) ||
        (r = mp_param_bool(p, "serves_marketplace", false, &serves, NULL)) ||
        (r = text(p, "fulfilment", false, true, mode, sizeof mode, &have_mode)))
        return r;
    if (have_mode && enum_index(&enum_wh_fulfilment, mode, strlen(mode)) < 0)
        return refuse_enum(p, &enum_wh_fulfilment, "fulfilment", mode);
    int64_t id;
    r = catalog_warehouse_id(st, code, strlen(code), &id);
    if (r && r != TALLY_E_NOT_FOUND)
        return r;
    *inserted = r == TALLY_E_NOT_FOUND;
    /* An imported warehouse is picked and shipped at this station unless the file says
     * otherwise; a re-import without the column keeps what was set. */
    sqlite3_stmt *s = store_stmt(st, "INSERT INTO warehouses(code, name, country,"
                                     " serves_marketplace, created_at, fulfilment)"
                                     " VALUES(?1,?2,?3,?4,?5, COALESCE(?6, 'station'))"
                                     " ON CONFLICT(code) DO UPDATE SET name = excluded.name,"
                                     " country = excluded.country,"
                                     " serves_marketplace = excluded.serves_marketplace,"
                                     " fulfilment = COALESCE(?6, fulfilment)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, country, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, serves);
    sqlite3_bind_int64(s, 5, store_now());
    if (have_mode)
        sqlite3_bind_text(s, 6, mode, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "warehouse upsert");
    /* Each warehouse has two pull streams; their checkpoints exist from the start. */
    s = store_stmt(st,
                   "INSERT OR IGNORE INTO checkpoints(stream, updated_at)"
                   " VALUES('wh:' || ?1 || ':inventory', ?2), ('wh:' || ?1 || ':outbound', ?2)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, store_now());
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "checkpoint insert");
}

/* Validates a str -> str map of variant attributes and packs it for storage. */
static int attributes(struct mp_params *p, msgpack_sbuffer *sb)
{
    const msgpack_object *o = mp_map_get(p->map, "attributes");
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (!o || o->type == MSGPACK_OBJECT_NIL) {
        msgpack_pack_map(&pk, 0);
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size > MAX_ATTRIBUTES)
        return fail_row(p, "field 'attributes' must be a map of at most %s strings", "32"),
               TALLY_E_INVALID_PARAMS;
    msgpack_pack_map(&pk, o->via.map.size);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR ||
            k->via.str.size == 0 || k->via.str.size > TALLY_MAX_ID_LEN || v->via.str.size > 256 ||
            !mp_text_ok(k->via.str.ptr, k->via.str.size) ||
            !mp_text_ok(v->via.str.ptr, v->via.str.size))
            return fail_row(p, "field 'attributes' must map names to text (%s)",
                            "names 1-64 bytes, values up to 256"),
                   TALLY_E_INVALID_PARAMS;
        mp_pack_strn(&pk, k->via.str.ptr, k->via.str.size);
        mp_pack_strn(&pk, v->via.str.ptr, v->via.str.size);
    }
    return 0;
}

/*
 * One catalog row, validated (catalog_read: the row-by-row path and the set-based one read
 * rows alike): its strings point into the request, not NUL-terminated; pt is the title its
 * product is given (product_title, else the SKU's title); its attributes are packed at
 * attrs_off in the call's buffer.
 */
struct cat_row {
    const char *sku, *pid, *title, *pt, *mp;
    size_t sku_n, pid_n, title_n, pt_n, mp_n;
    bool have_pt, have_mp, have_w;
    int64_t price, weight;
    char currency[5];
    size_t attrs_off, attrs_len;
};

/* Reads and validates a catalog row: 0, or an error with its message in p->err. Its
 * attributes are appended to `attrs`. */
static int catalog_read(struct mp_params *p, msgpack_sbuffer *attrs, struct cat_row *w)
{
    memset(w, 0, sizeof *w);
    int r;
    if ((r = text_ref(p, "sku", true, true, TALLY_MAX_ID_LEN + 1, &w->sku, &w->sku_n, NULL)) ||
        (r = text_ref(p, "product_id", true, true, TALLY_MAX_ID_LEN + 1, &w->pid, &w->pid_n,
                      NULL)) ||
        (r = text_ref(p, "title", true, false, TALLY_MAX_TEXT_LEN + 1, &w->title, &w->title_n,
                      NULL)) ||
        (r = text_ref(p, "product_title", false, false, TALLY_MAX_TEXT_LEN + 1, &w->pt, &w->pt_n,
                      &w->have_pt)) ||
        (r = mp_param_int(p, "price_minor", true, 0, MAX_PRICE_MINOR, &w->price, NULL)) ||
        (r = iso_code(p, "currency", 3, w->currency)) ||
        (r = mp_param_int(p, "weight_g", false, 0, 1000000000, &w->weight, &w->have_w)) ||
        (r = text_ref(p, "mp_sku_id", false, true, TALLY_MAX_ID_LEN + 1, &w->mp, &w->mp_n,
                      &w->have_mp)))
        return r;
    if (!w->have_pt) {
        w->pt = w->title;
        w->pt_n = w->title_n;
    }
    w->attrs_off = attrs->size;
    if ((r = attributes(p, attrs)) != 0)
        return r;
    w->attrs_len = attrs->size - w->attrs_off;
    return 0;
}

/*
 * What one call's catalog rows share on the row-by-row path: the product of the row before (a
 * product's SKUs are usually next to each other in the file, so its upsert is done once for
 * them, not once per SKU) and the buffer attributes are packed in (reused, not allocated per
 * row).
 */
struct catalog_ctx {
    bool have_product;
    int64_t product;
    bool have_pt;
    size_t pid_n, pt_n;
    char pid[TALLY_MAX_ID_LEN + 1], ptitle[TALLY_MAX_TEXT_LEN + 1];
    msgpack_sbuffer attrs;
};

static int import_catalog_row(struct store *st, struct mp_params *p, struct catalog_ctx *cx,
                              bool *inserted)
{
    struct cat_row w;
    msgpack_sbuffer_clear(&cx->attrs);
    int r = catalog_read(p, &cx->attrs, &w);
    if (r)
        return r;
    int64_t now = store_now(), product = 0;
    /* The same product as the row before, with the same title to give it: the upsert would
     * write what it just wrote. */
    if (cx->have_product && cx->pid_n == w.pid_n && memcmp(cx->pid, w.pid, w.pid_n) == 0 &&
        cx->have_pt == w.have_pt && cx->pt_n == w.pt_n && memcmp(cx->ptitle, w.pt, w.pt_n) == 0) {
        product = cx->product;
    } else {
        sqlite3_stmt *s = store_stmt(st, "INSERT INTO products(product_id, title, updated_at)"
                                         " VALUES(?1,?2,?3) ON CONFLICT(product_id) DO UPDATE SET"
                                         " title = CASE WHEN ?4 THEN excluded.title ELSE title END,"
                                         " updated_at = excluded.updated_at");
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_text(s, 1, w.pid, (int)w.pid_n, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, w.pt, (int)w.pt_n, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, now);
        sqlite3_bind_int(s, 4, w.have_pt);
        /* Its id without RETURNING (an ephemeral table per statement): a new product's is the
         * last insert rowid (as for the SKU below); an existing one's is looked up. */
        sqlite3 *db = store_db(st);
        sqlite3_set_last_insert_rowid(db, 0);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        product = rc == SQLITE_DONE ? sqlite3_last_insert_rowid(db) : 0;
        if (rc == SQLITE_DONE && product == 0) {
            s = store_stmt(st, "SELECT id FROM products WHERE product_id = ?1");
            if (!s)
                return TALLY_E_STORAGE;
            sqlite3_bind_text(s, 1, w.pid, (int)w.pid_n, SQLITE_STATIC);
            rc = sqlite3_step(s);
            if (rc == SQLITE_ROW) {
                product = sqlite3_column_int64(s, 0);
                rc = SQLITE_DONE;
            }
            sqlite3_reset(s);
        }
        if (rc != SQLITE_DONE || product == 0) {
            cx->have_product = false;
            return store_error(st, rc, "product upsert");
        }
        cx->have_product = true;
        cx->product = product;
        cx->have_pt = w.have_pt;
        cx->pid_n = w.pid_n;
        cx->pt_n = w.pt_n;
        memcpy(cx->pid, w.pid, w.pid_n);
        memcpy(cx->ptitle, w.pt, w.pt_n);
    }
    sqlite3_stmt *s =
        store_stmt(st, "INSERT INTO skus(code, product, mp_sku_id, title, attributes, price_minor,"
                       " currency, weight_g, updated_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)"
                       " ON CONFLICT(code) DO UPDATE SET product = excluded.product,"
                       " mp_sku_id = excluded.mp_sku_id, title = excluded.title,"
                       " attributes = excluded.attributes, price_minor = excluded.price_minor,"
                       " currency = excluded.currency, weight_g = excluded.weight_g,"
                       " updated_at = excluded.updated_at");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, w.sku, (int)w.sku_n, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, product);
    if (w.have_mp)
        sqlite3_bind_text(s, 3, w.mp, (int)w.mp_n, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, w.title, (int)w.title_n, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, cx->attrs.data + w.attrs_off, (int)w.attrs_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, w.price);
    sqlite3_bind_text(s, 7, w.currency, -1, SQLITE_STATIC);
    if (w.have_w)
        sqlite3_bind_int64(s, 8, w.weight);
    sqlite3_bind_int64(s, 9, now);
    /* Inserted or updated, without a lookup first and without RETURNING (which collects its
     * rows before the first is stepped): an insert sets the connection's last insert rowid to
     * the new row's id (a trigger's inserts do not change it once the trigger is over); the
     * update of an existing row leaves it as it was, here 0. */
    sqlite3 *db = store_db(st);
    sqlite3_set_last_insert_rowid(db, 0);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "sku upsert");
    *inserted = sqlite3_last_insert_rowid(db) != 0;
    return 0;
}

/* Resolves a SKU or warehouse code field to its row id, with a row-prefixed message. */
static int resolve(struct store *st, struct mp_params *p, const char *key, bool sku, int64_t *id)
{
    char code[TALLY_MAX_ID_LEN + 1];
    int r = text(p, key, true, true, code, sizeof code, NULL);
    if (r)
        return r;
    r = sku ? catalog_sku_id(st, code, strlen(code), id)
            : catalog_warehouse_id(st, code, strlen(code), id);
    if (r == TALLY_E_NOT_FOUND) {
        snprintf(p->err, sizeof p->err, "%sno %s '%s' (import %s first)",
                 p->prefix ? p->prefix : "", sku ? "SKU" : "warehouse", code,
                 sku ? "the catalog" : "warehouses");
    }
    return r;
}

static int import_stock_row(struct store *st, struct mp_params *p, bool *inserted)
{
    int64_t sku, wh, on_hand, safety = 0, threshold = 0;
    bool have_s = false, have_t = false;
    int r;
    if ((r = resolve(st, p, "sku", true, &sku)) || (r = resolve(st, p, "warehouse", false, &wh)) ||
        (r = mp_param_int(p, "on_hand", true, 0, TALLY_MAX_QTY, &on_hand, NULL)) ||
        (r = mp_param_int(p, "safety", false, 0, TALLY_MAX_QTY, &safety, &have_s)) ||
        (r = mp_param_int(p, "threshold", false, 0, TALLY_MAX_QTY, &threshold, &have_t)))
        return r;
    sqlite3_stmt *s = store_stmt(st, "SELECT 1 FROM stock WHERE sku = ?1 AND warehouse = ?2");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    *inserted = rc == SQLITE_DONE;
    s = store_stmt(st, "INSERT INTO stock(sku, warehouse, snapshot, safety, threshold, as_of)"
                       " VALUES(?1,?2,?3,COALESCE(?4,0),COALESCE(?5,0),?6)"
                       " ON CONFLICT(sku, warehouse) DO UPDATE SET snapshot = ?3,"
                       " safety = COALESCE(?4, safety), threshold = COALESCE(?5, threshold),"
                       " as_of = ?6");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku);
    sqlite3_bind_int64(s, 2, wh);
    sqlite3_bind_int64(s, 3, on_hand);
    if (have_s)
        sqlite3_bind_int64(s, 4, safety);
    if (have_t)
        sqlite3_bind_int64(s, 5, threshold);
    sqlite3_bind_int64(s, 6, store_now());
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, "stock upsert");
}

static int import_order_row(struct store *st, struct mp_params *p, bool *inserted)
{
    char oid[TALLY_MAX_ID_LEN + 1], status[TALLY_MAX_ID_LEN + 1], country[4], currency[5];
    char service[TALLY_MAX_ID_LEN + 1], name[257], address[TALLY_MAX_TEXT_LEN + 1], city[257],
        postcode[33], phone[33], level[33];
    bool h_service, h_name, h_addr, h_city, h_pc, h_phone, h_ship, h_level;
    int64_t created, ship_by = 0, qty, price, sku;
    int r;
    if ((r = text(p, "order_id", true, true, oid, sizeof oid, NULL)) ||
        (r = text(p, "status", true, true, status, sizeof status, NULL)) ||
        (r = mp_param_int(p, "created_at", true, 0, MAX_TIME, &created, NULL)) ||
        (r = mp_param_int(p, "ship_by", false, 0, MAX_TIME, &ship_by, &h_ship)) ||
        (r = iso_code(p, "country", 2, country)) || (r = iso_code(p, "currency", 3, currency)) ||
        (r = resolve(st, p, "sku", true, &sku)) ||
        (r = mp_param_int(p, "qty", true, 1, MAX_LINE_QTY, &qty, NULL)) ||
        (r = mp_param_int(p, "price_minor", true, 0, MAX_PRICE_MINOR, &price, NULL)) ||
        (r = text(p, "service", false, false, service, sizeof service, &h_service)) ||
        (r = text(p, "buyer_name", false, false, name, sizeof name, &h_name)) ||
        (r = text(p, "address", false, false, address, sizeof address, &h_addr)) ||
        (r = text(p, "city", false, false, city, sizeof city, &h_city)) ||
        (r = text(p, "postcode", false, false, postcode, sizeof postcode, &h_pc)) ||
        (r = text(p, "phone", false, false, phone, sizeof phone, &h_phone)) ||
        (r = text(p, "buyer_level", false, true, level, sizeof level, &h_level)))
        return r;
    /* A status the marketplace does not have is refused, as orders.list refuses it: an order
     * with one would wait in `pending` for ever, and no filter could find it. */
    if (enum_index(&enum_order_status, status, strlen(status)) < 0)
        return refuse_enum(p, &enum_order_status, "status", status);
    /* A ship-by of 0 is none (as fulfilment reads it): not a deadline in 1970. */
    h_ship = h_ship && ship_by > 0;
    struct order_header h = {
        .order_id = oid,
        .status = status,
        .created_at = created,
        .has_ship_by = h_ship,
        .ship_by = ship_by,
        .country = country,
        .currency = currency,
        .service = h_service ? service : NULL,
        .buyer_name = h_name ? name : NULL,
        .address = h_addr ? address : NULL,
        .city = h_city ? city : NULL,
        .postcode = h_pc ? postcode : NULL,
        .phone = h_phone ? phone : NULL,
        .buyer_level = h_level ? level : NULL,
    };
    int64_t ref;
    bool new_order;
    if ((r = orders_upsert_header(st, &h, &ref, &new_order)) != 0)
        return r;
    return orders_upsert_line(st, ref, sku, qty, price, inserted);
}

int import_rows(struct store *st, int kind, const msgpack_object *rows, struct import_result *res,
                char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    if (rows->type != MSGPACK_OBJECT_ARRAY || rows->via.array.size == 0 ||
        rows->via.array.size > TALLY_MAX_PAGE) {
        snprintf(err, errlen, "field 'rows' must be an array of 1-%d maps", TALLY_MAX_PAGE);
        return TALLY_E_INVALID_PARAMS;
    }
    int r = store_begin(st);
    if (r) {
        snprintf(err, errlen, "cannot start a transaction");
        return r;
    }
    r = import_rows_in(st, kind, rows, res, err, errlen);
    if (r == 0)
        r = store_commit(st);
    else
        store_rollback(st);
    return r;
}

int import_rows_in(struct store *st, int kind, const msgpack_object *rows,
                   struct import_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    if (rows->type != MSGPACK_OBJECT_ARRAY || rows->via.array.size == 0 ||
        rows->via.array.size > TALLY_MAX_PAGE) {
        snprintf(err, errlen, "field 'rows' must be an array of 1-%d maps", TALLY_MAX_PAGE);
        return TALLY_E_INVALID_PARAMS;
    }
    struct catalog_ctx cx = {0};
    msgpack_sbuffer_init(&cx.attrs);
    int r = 0;
    for (uint32_t i = 0; i < rows->via.array.size && r == 0; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "row %u: ", i + 1);
        struct mp_params p = {.map = &rows->via.array.ptr[i], .prefix = prefix};
        if (p.map->type != MSGPACK_OBJECT_MAP) {
            snprintf(err, errlen, "row %u: must be a map", i + 1);
            r = TALLY_E_INVALID_PARAMS;
            break;
        }
        bool inserted = false;
        p.err[0] = 0;
        switch (kind) {
        case IMPORT_WAREHOUSES:
            r = import_warehouse(st, &p, &inserted);
            break;
        case IMPORT_CATALOG:
            r = import_catalog_row(st, &p, &cx, &inserted);
            break;
        case IMPORT_STOCK:
            r = import_stock_row(st, &p, &inserted);
            break;
        default:
            r = import_order_row(st, &p, &inserted);
            break;
        }
        if (r) {
            if (p.err[0])
                snprintf(err, errlen, "%s", p.err);
            else
                snprintf(err, errlen, "row %u: %s", i + 1, tally_strerror(r));
            break;
        }
        res->rows++;
        if (inserted)
            res->inserted++;
        else
            res->updated++;
    }
    msgpack_sbuffer_destroy(&cx.attrs);
    return r;
}
