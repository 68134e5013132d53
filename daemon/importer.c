#include "importer.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
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
    int r = import_call(st, kind, rows, STORE_DURABLE, res, err, errlen);
    int t = store_set_triggers(st, true);
    return r ? r : t;
}

/* A call's rows: an array of 1 to TALLY_MAX_PAGE maps (each map is read by its kind). */
static bool rows_ok(const msgpack_object *rows, char *err, size_t errlen)
{
    if (rows->type == MSGPACK_OBJECT_ARRAY && rows->via.array.size > 0 &&
        rows->via.array.size <= TALLY_MAX_PAGE)
        return true;
    snprintf(err, errlen, "field 'rows' must be an array of 1-%d maps", TALLY_MAX_PAGE);
    return false;
}

int import_rows_in(struct store *st, int kind, const msgpack_object *rows,
                   struct import_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    if (!rows_ok(rows, err, errlen))
        return TALLY_E_INVALID_PARAMS;
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

/*
 * Catalog rows set-based.
 *
 * Row by row, each catalog row costs a product upsert (once per run of rows of one product), a
 * SKU upsert, and the SKU's triggers, each a sub-program of its own: the counter
 * (count_skus_ins, count_products_ins) and the title queue (skus_title_queue_ins, which reads
 * the table it writes and so builds an ephemeral table per row); perf showed that, with the
 * statements' own overhead, to be most of the writer's time during a large import. Here a
 * call's rows are applied by statements over IMPORT_SET_ROWS rows at a time (a VALUES list:
 * products by product_id, each once per call; then SKUs, joined to their product, in the rows'
 * order so that new SKUs get their ids as row by row), with the connection's triggers off
 * (store_set_triggers), and what the triggers on the tables written would do is done once per
 * call, set-based:
 *
 *  - count_products_ins, count_skus_ins: the counters move by the rows inserted, the rows
 *    whose id is above the table's largest id before the call (an INTEGER PRIMARY KEY without
 *    AUTOINCREMENT gives a new row the largest id + 1; set_apply leaves a table whose largest
 *    id is near the top of the range to the row-by-row path);
 *  - skus_title_queue_ins: those SKUs are queued for the title index in one statement;
 *  - skus_title_queue_upd and skus_listed, for a SKU whose title or product the row changes:
 *    the rows of a batch are first applied where nothing of that changes (the upsert's DO
 *    UPDATE ... WHERE); when some row was left out, the rows whose title or product differs
 *    are read, and each gets what the triggers' bodies would do (the same statements, values
 *    bound), before the batch is applied again without the condition.
 *
 * A product ends as the rows one after another would leave it: a new one with the title of
 * the first row naming it (its product_title, else its title), then any product's title the
 * last product_title given for it; each product named is touched (updated_at).
 *
 * Only where the triggers on those tables are the ones this was written for
 * (import_set_allowed compares their names and SQL by SET_TRIGGERS_HASH: a migration that
 * changes one closes the set-based path until this code is changed with it and the hash
 * updated; unit.test_import_set says so; looked at before a call and again inside its
 * transaction, where no other connection can change a trigger until it ends), and only for a
 * call whose SKU codes are all
 * different (a SKU twice in one call is applied twice, in order, by the row-by-row path).
 * Rows are read and validated before anything is written, with the row-by-row path's messages
 * (catalog_read); a call is all or nothing either way. unit.test_import_set compares replicas
 * filled by both paths.
 */
#define IMPORT_ROWWISE 1 /* set_apply: nothing written, the row-by-row path applies the call */
#define IMPORT_SET_ROWS 64

#define SR2 "(?,?)"
#define SR2x4 SR2 "," SR2 "," SR2 "," SR2
#define SR2x16 SR2x4 "," SR2x4 "," SR2x4 "," SR2x4
#define SR3 "(?,?,?)"
#define SR3x4 SR3 "," SR3 "," SR3 "," SR3
#define SR3x16 SR3x4 "," SR3x4 "," SR3x4 "," SR3x4
#define SR8 "(?,?,?,?,?,?,?,?)"
#define SR8x4 SR8 "," SR8 "," SR8 "," SR8
#define SR8x16 SR8x4 "," SR8x4 "," SR8x4 "," SR8x4
_Static_assert(IMPORT_SET_ROWS == 64, "the set statements are written for 64 rows");

/* New products with the title of the first row naming them; each product named is touched
 * (updated_at), as each row's upsert does. Unused rows are NULL. */
static const char set_products_sql[] =
    "INSERT INTO products(product_id, title, updated_at) SELECT v.column1, v.column2, ?1"
    " FROM (VALUES " SR2x16 "," SR2x16 "," SR2x16 "," SR2x16 ") AS v"
    " WHERE v.column1 IS NOT NULL"
    " ON CONFLICT(product_id) DO UPDATE SET updated_at = excluded.updated_at";
/* The title the call's last product_title gives a product (rows without one leave it). */
static const char set_product_titles_sql[] =
    "UPDATE products SET title = v.column2 FROM (VALUES " SR2x16 "," SR2x16 "," SR2x16 "," SR2x16
    ") AS v WHERE products.product_id = v.column1 AND products.title IS NOT v.column2";
/* The SKU upsert of the row-by-row path, for 64 rows in their order (CROSS JOIN: the VALUES
 * list is the outer loop, so new SKUs get their ids in the rows' order). */
#define SET_SKUS_UPSERT                                                                            \
    "INSERT INTO skus(code, product, mp_sku_id, title, attributes, price_minor, currency,"         \
    " weight_g, updated_at) SELECT v.column1, p.id, v.column3, v.column4, v.column5, v.column6,"   \
    " v.column7, v.column8, ?1 FROM (VALUES " SR8x16 "," SR8x16 "," SR8x16 "," SR8x16 ") AS v"     \
    " CROSS JOIN products AS p ON p.product_id = v.column2 WHERE true"                             \
    " ON CONFLICT(code) DO UPDATE SET product = excluded.product,"                                 \
    " mp_sku_id = excluded.mp_sku_id, title = excluded.title, attributes = excluded.attributes,"   \
    " price_minor = excluded.price_minor, currency = excluded.currency,"                           \
    " weight_g = excluded.weight_g, updated_at = excluded.updated_at"
static const char set_skus_same_sql[] =
    SET_SKUS_UPSERT " WHERE skus.title IS excluded.title AND skus.product = excluded.product";
static const char set_skus_sql[] = SET_SKUS_UPSERT;
/* The rows whose SKU exists with another title or product (the update triggers' WHEN). */
static const char set_changed_sql[] =
    "SELECT s.id, s.title, s.title IS NOT v.column2, s.product <> p.id FROM (VALUES " SR3x16
    "," SR3x16 "," SR3x16 "," SR3x16 ") AS v CROSS JOIN skus AS s ON s.code = v.column1"
    " CROSS JOIN products AS p ON p.product_id = v.column3"
    " WHERE s.title IS NOT v.column2 OR s.product <> p.id";

/* FNV-1a (64 bits) of "name\0sql\0" of each trigger on the tables the set statements write
 * (schema 21: skus_title_queue_new, whose work set_apply does by its ON CONFLICT DO NOTHING),
 * in name order: the triggers set_apply does the work of. whfeed_skus_begin relies on it too
 * (the placeholders made ahead of a warehouse page: the work of count_skus_ins and
 * skus_title_queue_new, whfeed_skus_end). */
#define SET_TRIGGERS_HASH 0xf9f2bc8ea625b8c3ULL

struct cat_product {
    const char *pid, *first, *upd; /* upd: the last product_title given, NULL when none */
    size_t pid_n, first_n, upd_n;
};

/* A catalog call's rows, read (set_read), and what set_apply needs for them. */
struct cat_set {
    struct cat_row *rows;
    uint32_t n;
    struct cat_product *prods;
    uint32_t nprods;
    msgpack_sbuffer attrs;
    uint32_t *sku_slots, *prod_slots; /* open addressing: index + 1, 0 empty */
    size_t nslots;                    /* a power of two, at least twice n */
    msgpack_sbuffer old;              /* old titles of the rows a batch changes */
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

uint64_t import_set_triggers_hash(struct store *st)
{
    sqlite3_stmt *s =
        store_stmt(st, "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name"
                       " IN ('products', 'skus', 'publish', 'sku_titles', 'sku_titles_todo',"
                       " 'counters') ORDER BY name");
    if (!s)
        return 0;
    uint64_t h = 14695981039346656037ULL;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        for (int c = 0; c < 2; c++) {
            const unsigned char *t = sqlite3_column_text(s, c);
            h = fnv(h, t ? (const char *)t : "", t ? (size_t)sqlite3_column_bytes(s, c) + 1 : 1);
        }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? h : 0;
}

bool import_set_allowed(struct store *st)
{
    return import_set_triggers_hash(st) == SET_TRIGGERS_HASH;
}

static void set_free(struct cat_set *cs)
{
    free(cs->rows);
    free(cs->prods);
    free(cs->sku_slots);
    free(cs->prod_slots);
    msgpack_sbuffer_destroy(&cs->attrs);
    msgpack_sbuffer_destroy(&cs->old);
}

/* The slot of key (s, n) in slots, whose entries are indexes + 1 into items of `stride`
 * bytes with the key's pointer and length at key_off and len_off. */
static uint32_t *slot_for(uint32_t *slots, size_t nslots, const void *items, size_t stride,
                          size_t key_off, size_t len_off, const char *s, size_t n)
{
    size_t i = (size_t)fnv(14695981039346656037ULL, s, n) & (nslots - 1);
    for (;; i = (i + 1) & (nslots - 1)) {
        if (!slots[i])
            return &slots[i];
        const char *item = (const char *)items + (size_t)(slots[i] - 1) * stride;
        const char *k;
        size_t kn;
        memcpy(&k, item + key_off, sizeof k);
        memcpy(&kn, item + len_off, sizeof kn);
        if (kn == n && memcmp(k, s, n) == 0)
            return &slots[i];
    }
}

/*
 * Reads and validates a catalog call's rows (the array is checked already): 0; an error, with
 * the first refused row's message in err (nothing is written for a call with one, as the
 * row-by-row path writes nothing of it either); IMPORT_ROWWISE when a SKU is named twice.
 */
static int set_read(struct cat_set *cs, const msgpack_object *rows, char *err, size_t errlen)
{
    uint32_t n = rows->via.array.size;
    size_t nslots = 16;
    while (nslots < 2 * (size_t)n)
        nslots *= 2;
    cs->rows = calloc(n, sizeof *cs->rows);
    cs->prods = calloc(n, sizeof *cs->prods);
    cs->sku_slots = calloc(nslots, sizeof *cs->sku_slots);
    cs->prod_slots = calloc(nslots, sizeof *cs->prod_slots);
    cs->nslots = nslots;
    if (!cs->rows || !cs->prods || !cs->sku_slots || !cs->prod_slots) {
        snprintf(err, errlen, "out of memory");
        return TALLY_E_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "row %u: ", i + 1);
        struct mp_params p = {.map = &rows->via.array.ptr[i], .prefix = prefix};
        if (p.map->type != MSGPACK_OBJECT_MAP) {
            snprintf(err, errlen, "row %u: must be a map", i + 1);
            return TALLY_E_INVALID_PARAMS;
        }
        p.err[0] = 0;
        int r = catalog_read(&p, &cs->attrs, &cs->rows[i]);
        if (r) {
            if (p.err[0])
                snprintf(err, errlen, "%s", p.err);
            else
                snprintf(err, errlen, "row %u: %s", i + 1, tally_strerror(r));
            return r;
        }
        cs->n = i + 1;
    }
    int dup = 0;
    for (uint32_t i = 0; i < n && !dup; i++) {
        const struct cat_row *w = &cs->rows[i];
        uint32_t *sl =
            slot_for(cs->sku_slots, nslots, cs->rows, sizeof *w, offsetof(struct cat_row, sku),
                     offsetof(struct cat_row, sku_n), w->sku, w->sku_n);
        if (*sl) {
            dup = 1;
            break;
        }
        *sl = i + 1;
        /* The product's final title: the last product_title given for it, else (new) the
         * title of the first row naming it. */
        sl = slot_for(cs->prod_slots, nslots, cs->prods, sizeof *cs->prods,
                      offsetof(struct cat_product, pid), offsetof(struct cat_product, pid_n),
                      w->pid, w->pid_n);
        struct cat_product *pr;
        if (!*sl) {
            pr = &cs->prods[cs->nprods++];
            *sl = cs->nprods;
            pr->pid = w->pid;
            pr->pid_n = w->pid_n;
            pr->first = w->pt;
            pr->first_n = w->pt_n;
        } else {
            pr = &cs->prods[*sl - 1];
        }
        if (w->have_pt) {
            pr->upd = w->pt;
            pr->upd_n = w->pt_n;
        }
    }
    return dup ? IMPORT_ROWWISE : 0;
}

static int set_step(struct store *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(st, rc, what);
}

/* Rows [at, at + m) of the call bound to one of the SKU upserts. */
static void bind_skus(sqlite3_stmt *s, const struct cat_set *cs, uint32_t at, uint32_t m,
                      int64_t now)
{
    sqlite3_bind_int64(s, 1, now);
    for (uint32_t j = 0; j < m; j++) {
        const struct cat_row *w = &cs->rows[at + j];
        int b = 2 + 8 * (int)j;
        sqlite3_bind_text(s, b, w->sku, (int)w->sku_n, SQLITE_STATIC);
        sqlite3_bind_text(s, b + 1, w->pid, (int)w->pid_n, SQLITE_STATIC);
        if (w->have_mp)
            sqlite3_bind_text(s, b + 2, w->mp, (int)w->mp_n, SQLITE_STATIC);
        sqlite3_bind_text(s, b + 3, w->title, (int)w->title_n, SQLITE_STATIC);
        sqlite3_bind_blob(s, b + 4, cs->attrs.data + w->attrs_off, (int)w->attrs_len,
                          SQLITE_STATIC);
        sqlite3_bind_int64(s, b + 5, w->price);
        sqlite3_bind_text(s, b + 6, w->currency, -1, SQLITE_STATIC);
        if (w->have_w)
            sqlite3_bind_int64(s, b + 7, w->weight);
    }
}

/* What skus_title_queue_upd and skus_listed do for the rows [at, at + m) whose SKU exists with
 * another title or product, before the batch is applied to them. */
static int set_changed(struct store *st, struct cat_set *cs, uint32_t at, uint32_t m)
{
    struct changed {
        int64_t id;
        size_t title_off, title_n;
        bool title, product;
    } ch[IMPORT_SET_ROWS];
    int nch = 0;
    sqlite3_stmt *s = store_stmt(st, set_changed_sql);
    if (!s)
        return TALLY_E_STORAGE;
    for (uint32_t j = 0; j < m; j++) {
        const struct cat_row *w = &cs->rows[at + j];
        sqlite3_bind_text(s, 1 + 3 * (int)j, w->sku, (int)w->sku_n, SQLITE_STATIC);
        sqlite3_bind_text(s, 2 + 3 * (int)j, w->title, (int)w->title_n, SQLITE_STATIC);
        sqlite3_bind_text(s, 3 + 3 * (int)j, w->pid, (int)w->pid_n, SQLITE_STATIC);
    }
    msgpack_sbuffer_clear(&cs->old);
    int rc;
    while (nch < IMPORT_SET_ROWS && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct changed *c = &ch[nch++];
        c->id = sqlite3_column_int64(s, 0);
        const void *t = sqlite3_column_blob(s, 1);
        c->title_n = (size_t)sqlite3_column_bytes(s, 1);
        c->title_off = cs->old.size;
        if (c->title_n && msgpack_sbuffer_write(&cs->old, t, c->title_n) != 0) {
            sqlite3_reset(s);
            return TALLY_E_NOMEM;
        }
        c->title = sqlite3_column_int(s, 2) != 0;
        c->product = sqlite3_column_int(s, 3) != 0;
    }
    if (nch == IMPORT_SET_ROWS)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(st, rc, "catalog changes");
    for (int i = 0; i < nch; i++) {
        int r;
        if (ch[i].title) {
            /* skus_title_queue_upd: the old title leaves the index unless it is still
             * queued (then it was never indexed), and the SKU is queued. */
            s = store_stmt(st, "INSERT INTO sku_titles(sku_titles, rowid, title)"
                               " SELECT 'delete', ?1, ?2"
                               " WHERE NOT EXISTS (SELECT 1 FROM sku_titles_todo WHERE id = ?1)");
            if (!s)
                return TALLY_E_STORAGE;
            sqlite3_bind_int64(s, 1, ch[i].id);
            sqlite3_bind_text(s, 2, cs->old.data ? cs->old.data + ch[i].title_off : "",
                              (int)ch[i].title_n, SQLITE_STATIC);
            if ((r = set_step(st, s, "title index")) != 0)
                return r;
            s = store_stmt(st, "INSERT INTO sku_titles_todo(id) SELECT ?1"
                               " WHERE NOT EXISTS (SELECT 1 FROM sku_titles_todo WHERE id = ?1)");
            if (!s)
                return TALLY_E_STORAGE;
            sqlite3_bind_int64(s, 1, ch[i].id);
            if ((r = set_step(st, s, "title queue")) != 0)
                return r;
        }
        if (ch[i].product) {
            /* skus_listed: a SKU given another product is due for publishing. */
            s = store_stmt(st, "INSERT INTO publish(sku, value, gen, dirty) VALUES(?1, 0, 1, 1)"
                               " ON CONFLICT(sku) DO UPDATE SET gen = gen + 1, dirty = 1");
            if (!s)
                return TALLY_E_STORAGE;
            sqlite3_bind_int64(s, 1, ch[i].id);
            if ((r = set_step(st, s, "publish")) != 0)
                return r;
        }
    }
    return 0;
}

/* The one value of a statement of one row (a table's largest id, 0 when empty), or -1. */
static int64_t max_id(struct store *st, const char *sql)
{
    sqlite3_stmt *s = store_stmt(st, sql);
    if (!s)
        return -1;
    int rc = sqlite3_step(s);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    return v;
}

/*
 * Applies the rows read by set_read, in the open transaction, with the connection's triggers
 * off: 0, an error (the caller rolls back), or IMPORT_ROWWISE with nothing written (a trigger
 * it does not know, a table's largest id near the top of the range).
 */
static int set_apply(struct store *st, struct cat_set *cs, struct import_result *res)
{
    if (store_triggers_on(st))
        return TALLY_E_INTERNAL; /* the triggers would do their work twice */
    /* Again under the transaction's write lock: import_call looked before it began, and
     * another process (an operator's sqlite3 shell) may have changed a trigger since; from
     * here on no other connection changes the schema until this one commits. */
    if (!import_set_allowed(st))
        return IMPORT_ROWWISE;
    int64_t sku_max = max_id(st, "SELECT COALESCE(max(id), 0) FROM skus");
    int64_t prod_max = max_id(st, "SELECT COALESCE(max(id), 0) FROM products");
    if (sku_max < 0 || prod_max < 0)
        return TALLY_E_STORAGE;
    /* New rows would not be given the largest id + 1 (SQLite picks a free one at random). */
    if (sku_max > INT64_MAX - 2 * TALLY_MAX_PAGE || prod_max > INT64_MAX - 2 * TALLY_MAX_PAGE)
        return IMPORT_ROWWISE;
    int64_t now = store_now();
    int r;
    for (uint32_t at = 0; at < cs->nprods; at += IMPORT_SET_ROWS) {
        uint32_t m = cs->nprods - at < IMPORT_SET_ROWS ? cs->nprods - at : IMPORT_SET_ROWS;
        sqlite3_stmt *s = store_stmt(st, set_products_sql);
        if (!s)
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, now);
        for (uint32_t j = 0; j < m; j++) {
            const struct cat_product *pr = &cs->prods[at + j];
            sqlite3_bind_text(s, 2 + 2 * (int)j, pr->pid, (int)pr->pid_n, SQLITE_STATIC);
            sqlite3_bind_text(s, 3 + 2 * (int)j, pr->first, (int)pr->first_n, SQLITE_STATIC);
        }
        if ((r = set_step(st, s, "product upsert")) != 0)
            return r;
        s = store_stmt(st, set_product_titles_sql);
        if (!s)
            return TALLY_E_STORAGE;
        int bound = 0;
        for (uint32_t j = 0; j < m; j++) {
            const struct cat_product *pr = &cs->prods[at + j];
            if (!pr->upd)
                continue;
            sqlite3_bind_text(s, 1 + 2 * bound, pr->pid, (int)pr->pid_n, SQLITE_STATIC);
            sqlite3_bind_text(s, 2 + 2 * bound, pr->upd, (int)pr->upd_n, SQLITE_STATIC);
            bound++;
        }
        if (bound && (r = set_step(st, s, "product title")) != 0)
            return r;
    }
    for (uint32_t at = 0; at < cs->n; at += IMPORT_SET_ROWS) {
        uint32_t m = cs->n - at < IMPORT_SET_ROWS ? cs->n - at : IMPORT_SET_ROWS;
        /* Where no row changes a SKU's title or product, one statement does it all. */
        sqlite3_stmt *s = store_stmt(st, set_skus_same_sql);
        if (!s)
            return TALLY_E_STORAGE;
        bind_skus(s, cs, at, m, now);
        if ((r = set_step(st, s, "sku upsert")) != 0)
            return r;
        if (sqlite3_changes64(store_db(st)) == (int64_t)m)
            continue;
        if ((r = set_changed(st, cs, at, m)) != 0)
            return r;
        if (!(s = store_stmt(st, set_skus_sql)))
            return TALLY_E_STORAGE;
        bind_skus(s, cs, at, m, now);
        if ((r = set_step(st, s, "sku upsert")) != 0)
            return r;
    }
    /* count_skus_ins, skus_title_queue_ins, count_products_ins for the rows inserted. */
    int64_t inserted;
    sqlite3_stmt *s = store_stmt(st, "SELECT count(*) FROM skus WHERE id > ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, sku_max);
    int rc = sqlite3_step(s);
    inserted = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return store_error(st, rc, "sku count");
    if (inserted > 0) {
        if (!(s = store_stmt(st, "INSERT INTO sku_titles_todo(id) SELECT id FROM skus"
                                 " WHERE id > ?1 ON CONFLICT(id) DO NOTHING")))
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, sku_max);
        if ((r = set_step(st, s, "title queue")) != 0)
            return r;
        if (!(s = store_stmt(st, "UPDATE counters SET n = n + ?1 WHERE name = 'skus'")))
            return TALLY_E_STORAGE;
        sqlite3_bind_int64(s, 1, inserted);
        if ((r = set_step(st, s, "sku counter")) != 0)
            return r;
    }
    if (!(s = store_stmt(st, "UPDATE counters SET n = n + (SELECT count(*) FROM products"
                             " WHERE id > ?1 AND product_id <> '~unlisted')"
                             " WHERE name = 'products'")))
        return TALLY_E_STORAGE;
    sqlite3_bind_int64(s, 1, prod_max);
    if ((r = set_step(st, s, "product counter")) != 0)
        return r;
    res->rows = cs->n;
    res->inserted = inserted;
    res->updated = cs->n - inserted;
    res->set_rows = cs->n;
    return 0;
}

int import_call(struct store *st, int kind, const msgpack_object *rows, enum store_durability how,
                struct import_result *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    if (!rows_ok(rows, err, errlen))
        return TALLY_E_INVALID_PARAMS;
    struct cat_set cs = {0};
    msgpack_sbuffer_init(&cs.attrs);
    msgpack_sbuffer_init(&cs.old);
    bool set = false;
    int r = 0;
    if (kind == IMPORT_CATALOG) {
        r = set_read(&cs, rows, err, errlen);
        if (r != 0 && r != IMPORT_ROWWISE) {
            set_free(&cs);
            return r;
        }
        /* (set_apply looks at the triggers again once the transaction has begun) */
        set = r == 0 && !store_in_tx(st) && import_set_allowed(st);
    }
    for (;;) {
        if ((r = store_set_triggers(st, !set)) != 0) {
            if (set) {
                set = false;
                continue;
            }
            snprintf(err, errlen, "cannot turn the replica's triggers back on");
            break;
        }
        if ((r = store_begin_as(st, how)) != 0) {
            snprintf(err, errlen, "cannot start a transaction");
            break;
        }
        if (set) {
            r = set_apply(st, &cs, res);
            if (r == IMPORT_ROWWISE) {
                store_rollback(st);
                set = false;
                continue;
            }
            if (r)
                snprintf(err, errlen, "%s", tally_strerror(r));
        } else {
            r = import_rows_in(st, kind, rows, res, err, errlen);
        }
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
        break;
    }
    set_free(&cs);
    return r;
}
