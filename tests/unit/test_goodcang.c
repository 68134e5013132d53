/*
 * The Goodcang connector against the public sources (tests/fixtures/goodcang/, README.md there
 * says where each file comes from):
 *
 * - every request body the connector builds (stock pages, stock of named SKUs, the stock log,
 *   the order list, the look-up by reference, create_order, cancel_order, create_grn, the GRN
 *   list) carries only documented members, the required ones present, items / boxes / box
 *   details with documented members only;
 * - the answers are read by the connector's own parsers: stock rows (on_hand = sellable +
 *   reserved, numbers sent as strings, rows of another warehouse skipped), order rows (each
 *   documented status in tally's words; an undocumented one, a row without reference_no, a
 *   shipped one without tracking number are per-row errors), paging (nextPage, count);
 * - the envelope: Success, Failure (refused, with Goodcang's message), 401 (credentials), 503
 *   (transient), and answers that are not Goodcang's (a tally Warehouse API error, HTML) are
 *   told apart;
 * - payloads that cannot become a request (no address, no shipping method) are refused with
 *   a reason before anything is sent.
 *
 * The connector's functions are static: this file includes conn_goodcang.c.
 */
#include "../../daemon/conn_goodcang.c"

#include "check.h"
#include "replica_harness.h"

#ifndef FIXTURES_DIR
#error "FIXTURES_DIR must name tests/fixtures/goodcang"
#endif

#define MAX_SPEC 96

struct spec {
    char kind[MAX_SPEC][16];
    char name[MAX_SPEC][64];
    int n;
};

static void spec_load(const char *file, struct spec *s)
{
    char path[512], line[256];
    snprintf(path, sizeof path, "%s/%s", FIXTURES_DIR, file);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    s->n = 0;
    while (f && fgets(line, sizeof line, f) && s->n < MAX_SPEC) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%15s %63s", s->kind[s->n], s->name[s->n]) == 2)
            s->n++;
    }
    if (f)
        fclose(f);
}

static bool spec_has(const struct spec *s, const char *kind, const char *name)
{
    for (int i = 0; i < s->n; i++) {
        bool k = !strcmp(s->kind[i], kind) ||
                 (!strcmp(kind, "top") &&
                  (!strcmp(s->kind[i], "required") || !strcmp(s->kind[i], "optional")));
        if (k && !strcmp(s->name[i], name))
            return true;
    }
    return false;
}

/* Every member of o is a documented one of `kind`. */
static void members_documented(const cJSON *o, const struct spec *s, const char *kind,
                               const char *what)
{
    const cJSON *m;
    CHECK(cJSON_IsObject(o));
    cJSON_ArrayForEach(m, o)
    {
        if (!spec_has(s, kind, m->string)) {
            fprintf(stderr, "%s: member %s is not documented\n", what, m->string);
            CHECK(false);
        }
    }
}

/* A body against the .params file: documented members only, the required ones there. */
static cJSON *check_body(const struct jbuf *b, const char *file)
{
    struct spec s;
    spec_load(file, &s);
    CHECK(!b->failed);
    cJSON *doc = cJSON_ParseWithLength(b->p, b->len);
    CHECK(cJSON_IsObject(doc));
    if (!doc) {
        fprintf(stderr, "%s: not JSON: %.*s\n", file, (int)b->len, b->p);
        return NULL;
    }
    members_documented(doc, &s, "top", file);
    for (int i = 0; i < s.n; i++)
        if (!strcmp(s.kind[i], "required") && !cJSON_GetObjectItemCaseSensitive(doc, s.name[i])) {
            fprintf(stderr, "%s: required member %s missing\n", file, s.name[i]);
            CHECK(false);
        }
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(doc, "items"), *it, *d;
    cJSON_ArrayForEach(it, items)
    {
        bool boxes = spec_has(&s, "box", "box_details");
        members_documented(it, &s, boxes ? "box" : "item", file);
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(it, "box_details"))
            members_documented(d, &s, "detail", file);
    }
    return doc;
}

static cJSON *load_json(const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FIXTURES_DIR, file);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *doc = json_parse(buf, n);
    CHECK(doc != NULL);
    return doc;
}

/* ---- payloads as fulfil.c and the outbox module pack them ---- */

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pk_kv(msgpack_packer *pk, const char *k, const char *v)
{
    pk_str(pk, k);
    pk_str(pk, v);
}

static void pack_lines(msgpack_packer *pk)
{
    pk_str(pk, "lines");
    msgpack_pack_array(pk, 2);
    msgpack_pack_map(pk, 2);
    pk_kv(pk, "sku", "EB-000002");
    pk_str(pk, "qty");
    msgpack_pack_int(pk, 2);
    msgpack_pack_map(pk, 2);
    pk_kv(pk, "sku", "KX-000003-GRY");
    pk_str(pk, "qty");
    msgpack_pack_int(pk, 1);
}

/* {id, lines, ship_to{...}, service}; with_city = false leaves the city out. */
static void outbound_payload(msgpack_sbuffer *sb, bool with_city, const char *service)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, service ? 4 : 3);
    pk_kv(&pk, "id", "3050000000001635");
    pack_lines(&pk);
    pk_str(&pk, "ship_to");
    msgpack_pack_map(&pk, with_city ? 6 : 5);
    pk_kv(&pk, "name", "Ann \"Q\" Buyer");
    pk_kv(&pk, "address", "1 High Street");
    if (with_city)
        pk_kv(&pk, "city", "London");
    pk_kv(&pk, "postcode", "SW1A 1AA");
    pk_kv(&pk, "country", "GB");
    pk_kv(&pk, "phone", "+44 20 7946 0000");
    if (service)
        pk_kv(&pk, "service", service);
}

static void inbound_payload(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    pk_kv(&pk, "id", "IN-GC-1");
    pk_kv(&pk, "warehouse", "UK-GC");
    pack_lines(&pk);
    pk_kv(&pk, "ref", "TR-9");
    pk_kv(&pk, "from", "ES-MAD");
    pk_kv(&pk, "tracking_no", "PK296543664ES");
    pk_str(&pk, "eta");
    msgpack_pack_int64(&pk, 1700000000);
}

static void item_of(struct push_item *it, msgpack_sbuffer *sb, int okind)
{
    memset(it, 0, sizeof *it);
    it->payload = sb->data;
    it->payload_len = sb->size;
    it->okind = okind;
}

/* ---- requests ---- */

static void test_requests(void)
{
    struct jbuf b = {0};
    cJSON *doc;

    body_inventory(&b, "UK-GC", 3, NULL, 0);
    doc = check_body(&b, "get_product_inventory.params");
    CHECK_EQ_STR(json_str(doc, "warehouse_code"), "UK-GC");
    int64_t v = 0;
    CHECK(json_int(doc, "page", 1, 1000, &v) == 0 && v == 3);
    CHECK(json_int(doc, "pageSize", 1, 100, &v) == 0 && v == GC_PAGE);
    CHECK(json_int(doc, "page_size", 1, 100, &v) == 0 && v == GC_PAGE);
    cJSON_Delete(doc);
    jb_free(&b);

    char skus[2][80] = {"EB-000002", "KX-000003-GRY"};
    memset(&b, 0, sizeof b);
    body_inventory(&b, "UK-GC", 1, skus, 2);
    doc = check_body(&b, "get_product_inventory.params");
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "product_sku_arr")), 2);
    cJSON_Delete(doc);
    jb_free(&b);

    memset(&b, 0, sizeof b);
    body_log(&b, "UK-GC", 1674209472, 1674295872, 2);
    doc = check_body(&b, "get_inventory_log.params");
    CHECK_EQ_STR(json_str(doc, "create_date_from"), "2023-01-20 10:11:12");
    CHECK_EQ_STR(json_str(doc, "create_date_end"), "2023-01-21 10:11:12");
    cJSON_Delete(doc);
    jb_free(&b);

    memset(&b, 0, sizeof b);
    body_orders(&b, 1674209472, 1674295872, 1);
    doc = check_body(&b, "get_order_list.params");
    CHECK_EQ_STR(json_str(doc, "modify_date_from"), "2023-01-20 10:11:12");
    CHECK(json_int(doc, "pageSize", 1, 100, &v) == 0); /* documented maximum 100 */
    cJSON_Delete(doc);
    jb_free(&b);

    memset(&b, 0, sizeof b);
    body_grn_list(&b, 1674209472, 1674295872, 1);
    cJSON_Delete(check_body(&b, "get_grn_list.params"));
    jb_free(&b);

    /* create_order from fulfil.c's payload; the warehouse's shipping_method wins. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    outbound_payload(&sb, true, "CAINIAO_STANDARD");
    struct push_item it;
    item_of(&it, &sb, OBX_OUTBOUND);
    char err[256] = "";
    memset(&b, 0, sizeof b);
    CHECK_EQ_INT(body_create_order(&b, &it, "UK-GC", "UK-RM48", err, sizeof err), 0);
    doc = check_body(&b, "create_order.params");
    CHECK_EQ_STR(json_str(doc, "reference_no"), "3050000000001635");
    CHECK_EQ_STR(json_str(doc, "warehouse_code"), "UK-GC");
    CHECK_EQ_STR(json_str(doc, "shipping_method"), "UK-RM48");
    CHECK_EQ_STR(json_str(doc, "country_code"), "GB");
    CHECK_EQ_STR(json_str(doc, "name"), "Ann \"Q\" Buyer");
    CHECK_EQ_STR(json_str(doc, "address1"), "1 High Street");
    CHECK_EQ_STR(json_str(doc, "zipcode"), "SW1A 1AA");
    CHECK(json_int(doc, "verify", 0, 1, &v) == 0 && v == 1);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(doc, "items");
    CHECK_EQ_INT(cJSON_GetArraySize(items), 2);
    CHECK_EQ_STR(json_str(cJSON_GetArrayItem(items, 0), "product_sku"), "EB-000002");
    CHECK(json_int(cJSON_GetArrayItem(items, 0), "quantity", 1, 9, &v) == 0 && v == 2);
    cJSON_Delete(doc);
    jb_free(&b);
    /* without a configured one, the order's service */
    memset(&b, 0, sizeof b);
    CHECK_EQ_INT(body_create_order(&b, &it, "UK-GC", "", err, sizeof err), 0);
    doc = check_body(&b, "create_order.params");
    CHECK_EQ_STR(json_str(doc, "shipping_method"), "CAINIAO_STANDARD");
    cJSON_Delete(doc);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);

    /* no city: refused before anything is sent, saying why */
    msgpack_sbuffer_init(&sb);
    outbound_payload(&sb, false, "X");
    item_of(&it, &sb, OBX_OUTBOUND);
    memset(&b, 0, sizeof b);
    CHECK_EQ_INT(body_create_order(&b, &it, "UK-GC", "", err, sizeof err), -1);
    CHECK(strstr(err, "city") != NULL);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);
    /* no service and no shipping_method: the config key is named */
    msgpack_sbuffer_init(&sb);
    outbound_payload(&sb, true, NULL);
    item_of(&it, &sb, OBX_OUTBOUND);
    memset(&b, 0, sizeof b);
    CHECK_EQ_INT(body_create_order(&b, &it, "UK-GC", "", err, sizeof err), -1);
    CHECK(strstr(err, "shipping_method") != NULL);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);

    /* create_grn from an inbound notice */
    msgpack_sbuffer_init(&sb);
    inbound_payload(&sb);
    item_of(&it, &sb, OBX_INBOUND);
    memset(&b, 0, sizeof b);
    CHECK_EQ_INT(body_create_grn(&b, &it, "UK-GC", err, sizeof err), 0);
    doc = check_body(&b, "create_grn.params");
    CHECK_EQ_STR(json_str(doc, "reference_no"), "IN-GC-1");
    CHECK_EQ_STR(json_str(doc, "tracking_number"), "PK296543664ES");
    CHECK_EQ_STR(json_str(doc, "eta_date"), "2023-11-14");
    CHECK(strstr(json_str(doc, "receiving_desc"), "TR-9") != NULL);
    const cJSON *box = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "items"), 0);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(box, "box_details")), 2);
    cJSON_Delete(doc);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- answers ---- */

static void test_stock_rows(void)
{
    cJSON *doc = load_json("get_product_inventory.answer.json");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    char sku[TALLY_MAX_ID_LEN + 1], err[200];
    int64_t on_hand = -1;
    CHECK_EQ_INT(stock_row(cJSON_GetArrayItem(data, 0), "UK-GC", sku, &on_hand, err, sizeof err),
                 0);
    CHECK_EQ_STR(sku, "EB-000002");
    CHECK_EQ_INT(on_hand, 29); /* sellable 26 + reserved 3; onway and pending are not on hand */
    CHECK_EQ_INT(stock_row(cJSON_GetArrayItem(data, 1), "UK-GC", sku, &on_hand, err, sizeof err),
                 0);
    CHECK_EQ_INT(on_hand, 7); /* numbers sent as strings */
    CHECK_EQ_INT(stock_row(cJSON_GetArrayItem(data, 2), "UK-GC", sku, &on_hand, err, sizeof err),
                 1); /* another warehouse's row */
    CHECK(!more_pages(doc, 1, 3));
    cJSON_Delete(doc);

    /* bad rows: each a per-row error */
    const char *bad[] = {
        "{\"product_sku\":\"EB-1\",\"warehouse_code\":\"UK-GC\",\"sellable\":-1,\"reserved\":0}",
        "{\"product_sku\":\"EB-1\",\"warehouse_code\":\"UK-GC\",\"sellable\":1}",
        "{\"product_sku\":\"EB-1\",\"warehouse_code\":\"UK-GC\",\"sellable\":1.5,\"reserved\":0}",
        "{\"product_sku\":\"has space\",\"sellable\":1,\"reserved\":0}",
        "{\"sellable\":1,\"reserved\":0}",
        "[1,2]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *r = cJSON_Parse(bad[i]);
        err[0] = 0;
        CHECK_EQ_INT(stock_row(r, "UK-GC", sku, &on_hand, err, sizeof err), -1);
        CHECK(err[0] != 0);
        cJSON_Delete(r);
    }

    doc = load_json("get_inventory_log.answer.json");
    const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "data"), 0);
    CHECK_EQ_STR(json_str(row, "product_sku"), "EB-000002");
    CHECK_EQ_INT(gc_time_parse(json_str(row, "ibl_add_time")), 1674295872);
    cJSON_Delete(doc);
}

static void test_order_rows(void)
{
    /* every documented status, in tally's words */
    struct spec s;
    spec_load("order_status.values", &s);
    CHECK_EQ_INT(s.n, 5);
    for (int i = 0; i < s.n; i++)
        CHECK_EQ_STR(status_word(s.kind[i]), s.name[i]);
    CHECK(status_word("Q") == NULL && status_word("") == NULL && status_word(NULL) == NULL);

    cJSON *doc = load_json("get_order_list.answer.json");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    struct ob_row o;
    char err[200];
    static const struct {
        int rc;
        const char *status, *tracking, *reason;
    } want[] = {
        {0, "accepted", NULL, NULL},
        {0, "shipped", "RM123456785GB", NULL},
        {0, "exception", NULL, "address cannot be delivered"},
        {0, "cancelled", NULL, NULL},
        {0, "exception", NULL, "parcel damaged"},
        {1, NULL, NULL, NULL},  /* another warehouse's */
        {-1, NULL, NULL, NULL}, /* status Q: not in any source */
    };
    CHECK_EQ_INT(cJSON_GetArraySize(data), 7);
    for (int i = 0; i < 7; i++) {
        int rc = order_row(cJSON_GetArrayItem(data, i), "UK-GC", &o, err, sizeof err);
        CHECK_EQ_INT(rc, want[i].rc);
        if (rc != 0)
            continue;
        CHECK_EQ_STR(o.status, want[i].status);
        CHECK_EQ_STR(o.carrier, "UK-RM48");
        CHECK((o.tracking == NULL) == (want[i].tracking == NULL));
        if (want[i].tracking)
            CHECK_EQ_STR(o.tracking, want[i].tracking);
        CHECK((o.reason == NULL) == (want[i].reason == NULL));
        if (want[i].reason)
            CHECK_EQ_STR(o.reason, want[i].reason);
        CHECK(o.modified > 0);
    }
    CHECK(strstr(err, "unknown order_status Q") != NULL);
    cJSON_Delete(doc);

    const char *bad[] = {
        "{\"order_status\":\"W\",\"warehouse_code\":\"UK-GC\"}",
        "{\"reference_no\":\"A1\",\"order_status\":\"D\",\"warehouse_code\":\"UK-GC\"}",
        "{\"reference_no\":\"A1\",\"order_status\":\"D\",\"tracking_no\":\"has space\"}",
        "{\"reference_no\":\"A1\",\"order_status\":3}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *r = cJSON_Parse(bad[i]);
        CHECK_EQ_INT(order_row(r, "UK-GC", &o, err, sizeof err), -1);
        cJSON_Delete(r);
    }

    doc = load_json("get_order_by_ref_code.answer.json");
    char other[80];
    CHECK(found_order(doc, "3050000000000001", "UK-GC", other, sizeof other) != NULL);
    CHECK_EQ_STR(other, "");
    CHECK(found_order(doc, "3050000000000009", "UK-GC", other, sizeof other) == NULL);
    /* The reference is the account's: an order of another of its warehouses (the order was
     * given up there and sent here) is not found here, and where it is is said. */
    CHECK(found_order(doc, "3050000000000001", "DE-GC", other, sizeof other) == NULL);
    CHECK_EQ_STR(other, "UK-GC");
    cJSON_Delete(doc);
    cJSON *empty = cJSON_Parse("{\"ask\":\"Success\",\"message\":\"Success\",\"data\":null}");
    CHECK(found_order(empty, "3050000000000001", "UK-GC", other, sizeof other) == NULL);
    cJSON_Delete(empty);
}

/* verdict() on a canned answer */
static int verdict_of(long status, const char *body, char *err, size_t errlen)
{
    struct http_req r;
    memset(&r, 0, sizeof r);
    r.status = status;
    r.response = (char *)body;
    r.response_len = strlen(body);
    cJSON *doc = NULL;
    int v = verdict(&r, &doc, err, errlen);
    cJSON_Delete(doc);
    return v;
}

static char *file_text(const char *file)
{
    static char buf[65536];
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FIXTURES_DIR, file);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    return buf;
}

static void test_envelopes(void)
{
    char err[256];
    static const char *const ok_files[] = {"create_order.answer.json", "cancel_order.answer.json",
                                           "create_grn.answer.json", "get_grn_list.answer.json",
                                           "get_order_by_ref_code.answer.json"};
    for (size_t i = 0; i < sizeof ok_files / sizeof ok_files[0]; i++)
        CHECK_EQ_INT(verdict_of(200, file_text(ok_files[i]), err, sizeof err), SYNC_OK);
    CHECK_EQ_INT(verdict_of(200, file_text("failure.answer.json"), err, sizeof err), GC_REFUSED);
    CHECK(strstr(err, "the shipping method is not available") != NULL);
    /* the newer envelope: code 1 */
    CHECK_EQ_INT(verdict_of(200, "{\"code\":1,\"message\":\"ok\",\"data\":[]}", err, sizeof err),
                 SYNC_OK);
    CHECK_EQ_INT(verdict_of(200, "{\"code\":0,\"message\":\"bad\"}", err, sizeof err), GC_REFUSED);
    CHECK_EQ_INT(verdict_of(200,
                            "{\"ask\":\"Failure\",\"message\":\"x\",\"Error\":{\"errMessage\":"
                            "\"y\",\"errCode\":\"T1\"}}",
                            err, sizeof err),
                 GC_REFUSED);
    CHECK(strstr(err, "x: y (T1)") != NULL);
    CHECK_EQ_INT(verdict_of(401, "{\"ask\":\"Failure\",\"message\":\"bad key\"}", err, sizeof err),
                 SYNC_AUTH);
    CHECK_EQ_INT(verdict_of(503, "", err, sizeof err), SYNC_TRANSIENT);
    CHECK_EQ_INT(verdict_of(429, "{}", err, sizeof err), SYNC_TRANSIENT);
    /* another API's error, HTML: not Goodcang's answer, said so */
    CHECK_EQ_INT(verdict_of(404,
                            "{\"error\":{\"code\":\"not_found\",\"message\":\"no route POST /x\"}}",
                            err, sizeof err),
                 GC_FOREIGN);
    CHECK(strstr(err, "not a Goodcang answer") && strstr(err, "no route"));
    CHECK_EQ_INT(verdict_of(200, "<html><body>login</body></html>", err, sizeof err), GC_FOREIGN);
    CHECK(strstr(err, "not JSON") != NULL);
    CHECK_EQ_INT(verdict_of(200, "{\"items\":[],\"version\":3}", err, sizeof err), GC_FOREIGN);

    /* paging */
    cJSON *p = cJSON_Parse("{\"nextPage\":\"true\",\"count\":1}");
    CHECK(more_pages(p, 1, 100));
    cJSON_Delete(p);
    p = cJSON_Parse("{\"count\":250}");
    CHECK(more_pages(p, 2, 100) && !more_pages(p, 3, 50));
    cJSON_Delete(p);
    p = cJSON_Parse("{\"nextPage\":false,\"count\":250}");
    CHECK(!more_pages(p, 1, 100));
    cJSON_Delete(p);
}

static void test_dates(void)
{
    CHECK_EQ_INT(gc_time_parse("2023-01-20"), 1674172800);
    CHECK_EQ_INT(gc_time_parse("2023-01-20 10:11:12"), 1674209472);
    CHECK_EQ_INT(gc_time_parse("2023-01-20T10:11"), 1674209460);
    const char *bad[] = {"",           "2023-1-20",  "2023-01-20 25:00:00",
                         "2023-13-01", "1999-12-31", "2023-01-20 10:11:12x",
                         "yesterday",  NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(gc_time_parse(bad[i]), -1);
    char out[20];
    gc_time_fmt(1674209472, out);
    CHECK_EQ_STR(out, "2023-01-20 10:11:12");
}

/* A found order is this row's only with the payload's lines (units per SKU): a reference_no
 * taken by an order with other lines is not taken for it (the row is held, never done). */
static void test_same_lines(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    outbound_payload(&sb, true, NULL); /* EB-000002 x 2, KX-000003-GRY x 1 */
    struct push_item it;
    item_of(&it, &sb, OBX_OUTBOUND);
    static const struct {
        const char *items;
        int want;
    } cases[] = {
        {"[{\"product_sku\":\"KX-000003-GRY\",\"quantity\":1},"
         "{\"product_sku\":\"EB-000002\",\"quantity\":2}]",
         1},
        {"[{\"product_sku\":\"EB-000002\",\"quantity\":1},{\"product_sku\":\"EB-000002\","
         "\"quantity\":1},{\"product_sku\":\"KX-000003-GRY\",\"quantity\":1}]",
         1},
        {"[{\"product_sku\":\"EB-000002\",\"quantity\":3},"
         "{\"product_sku\":\"KX-000003-GRY\",\"quantity\":1}]",
         0},
        {"[{\"product_sku\":\"EB-000002\",\"quantity\":2}]", 0},
        {"[{\"product_sku\":\"EB-000002\",\"quantity\":2},"
         "{\"product_sku\":\"KX-000003-GRY\",\"quantity\":1},"
         "{\"product_sku\":\"ZZ-1\",\"quantity\":1}]",
         0},
        {"[]", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "{\"order_code\":\"G-1\",\"items\":%s}", cases[i].items);
        cJSON *o = cJSON_Parse(text);
        CHECK(o != NULL);
        CHECK_EQ_INT(same_lines(o, &it), cases[i].want);
        cJSON_Delete(o);
    }
    cJSON *doc = load_json("get_order_by_ref_code.answer.json"); /* no items given */
    CHECK_EQ_INT(same_lines(cJSON_GetObjectItemCaseSensitive(doc, "data"), &it), -1);
    cJSON_Delete(doc);
    msgpack_sbuffer_destroy(&sb);
}

/* The outbound window moves on from the newest date_modify read, but only from dates inside
 * the window asked: one garbage date far ahead (another answer, a broken row) must not leave
 * every later window empty (from > to). */
static void test_window_garbage_date(void)
{
    struct rh *h = rh_new("goodcang_window");
    rh_open(h);
    rh_seed_standard(h);
    struct wh_config wh = {0};
    snprintf(wh.code, sizeof wh.code, "A");
    struct gc g = {0};
    struct upstream u = {0};
    snprintf(u.name, sizeof u.name, "wh:A");
    snprintf(u.code, sizeof u.code, "A");
    u.wh = &wh;
    u.d = rh_daemon(h);
    u.store = u.d->store;
    u.conn = &g;
    struct gc_call *c = call_new(&u);
    CHECK(c != NULL);
    if (!c) {
        rh_free(h);
        return;
    }
    c->stream = STREAM_OUTBOUND;
    c->step = GC_OB_LIST;
    c->pg = 1;
    c->from = gc_time_parse("2023-01-20 00:00:00");
    c->to = gc_time_parse("2023-01-21 00:00:00");
    c->seen = c->from;
    c->doc = cJSON_Parse("{\"ask\":\"Success\",\"data\":["
                         "{\"order_code\":\"G-1\",\"reference_no\":\"X1\",\"order_status\":\"W\","
                         "\"warehouse_code\":\"A\",\"date_modify\":\"2023-01-20 10:00:00\"},"
                         "{\"order_code\":\"G-2\",\"reference_no\":\"X2\",\"order_status\":\"W\","
                         "\"warehouse_code\":\"A\",\"date_modify\":\"2099-01-01 00:00:00\"}]}");
    c->page.data = c;
    c->page.more = false;
    struct checkpoint cp = {0};
    char err[200] = "";
    struct store *st = u.store;
    CHECK_EQ_INT(store_begin(st), 0);
    CHECK_EQ_INT(apply_outbound(&c->page, st, &cp, err, sizeof err), 0);
    CHECK_EQ_INT(store_commit(st), 0);
    CHECK_EQ_INT(cp.modified_since, gc_time_parse("2023-01-20 10:00:00"));
    call_free(c);
    rh_free(h);
}

/* Inbound notices carry the coordinator's mark (coord.h): create_grn puts it last in
 * receiving_desc, never cut by a long note; the GRN list read back by a look-up raises the
 * `coordinator` exception for another station's mark in a row's remark (GrnInfo.remark) or
 * receiving_desc (get_grn_detail's name), never for this station's own. */
static void test_notice_mark(void)
{
    struct rh *h = rh_new("goodcang_mark");
    rh_open(h);
    rh_seed_standard(h);
    struct tallyd *d = rh_daemon(h);
    d->cfg.coordinator = true;
    d->cfg.nwh = 0;
    snprintf(d->cfg.station, sizeof d->cfg.station, "GC-COORD");
    char err[300] = "";
    CHECK_EQ_INT(coord_start(d, err, sizeof err), 0);
    char mine[80];
    snprintf(mine, sizeof mine, "%s", coord_mark(d));

    /* the body: the mark last, also after a note that fills the text; notes (rh_long_note) of
     * 2- and 3-byte UTF-8 characters: cut before the mark at a character's boundary (the body
     * stays UTF-8; one of the two lands mid-character) */
    for (int k = 0; k < 4; k++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, k ? 5 : 4);
        pk_kv(&pk, "id", "IN-GC-7");
        pk_kv(&pk, "warehouse", "UK-GC");
        pack_lines(&pk);
        pk_kv(&pk, "station", mine);
        if (k)
            pk_kv(&pk, "note", rh_long_note(k));
        struct push_item it;
        item_of(&it, &sb, OBX_INBOUND);
        struct jbuf b;
        memset(&b, 0, sizeof b);
        CHECK_EQ_INT(body_create_grn(&b, &it, "UK-GC", err, sizeof err), 0);
        cJSON *doc = check_body(&b, "create_grn.params");
        const char *desc = json_str(doc, "receiving_desc");
        char tail[120], name[40];
        snprintf(tail, sizeof tail, "tally coordinator %s", mine);
        CHECK(desc && strlen(desc) >= strlen(tail) &&
              !strcmp(desc + strlen(desc) - strlen(tail), tail));
        CHECK(desc && strlen(desc) <= TALLY_MAX_TEXT_LEN);
        CHECK(desc && strncmp(desc, "tally notice IN-GC-7", 20) == 0);
        CHECK(desc && rh_utf8_ok(desc));
        uint64_t id = 0;
        CHECK_EQ_INT(coord_parse(desc, name, sizeof name, &id), 1);
        CHECK(id == d->coord.id);
        cJSON_Delete(doc);
        jb_free(&b);
        msgpack_sbuffer_destroy(&sb);
    }

    /* read back: the fixture's row (remark ""), this station's own mark, another's */
    struct wh_config wh = {0};
    snprintf(wh.code, sizeof wh.code, "UK-GC");
    struct upstream u = {0};
    snprintf(u.name, sizeof u.name, "wh:UK-GC");
    snprintf(u.code, sizeof u.code, "UK-GC");
    u.wh = &wh;
    u.d = d;
    u.store = d->store;
    cJSON *fx = load_json("get_grn_list.answer.json");
    CHECK_EQ_INT(grn_marks(&u, cJSON_GetObjectItemCaseSensitive(fx, "data")), 0);
    cJSON_Delete(fx);
    char text[600];
    snprintf(text, sizeof text,
             "{\"ask\":\"Success\",\"data\":[{\"receiving_code\":\"RV-1\",\"reference_no\":"
             "\"IN-GC-7\",\"create_at\":\"2026-12-05 10:00:00\",\"remark\":\"tally notice"
             " IN-GC-7; tally coordinator %s\"}]}",
             mine);
    cJSON *own = cJSON_Parse(text);
    CHECK_EQ_INT(grn_marks(&u, cJSON_GetObjectItemCaseSensitive(own, "data")), 0);
    cJSON_Delete(own);
    CHECK_EQ_INT((int)rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE kind = 'coordinator'"), 0);
    CHECK(coord_decides(d, NULL, 0));
    cJSON *other = cJSON_Parse(
        "{\"ask\":\"Success\",\"data\":[{\"receiving_code\":\"RV-2\",\"reference_no\":"
        "\"in-T-1\",\"create_at\":\"2026-12-05 10:00:00\",\"receiving_desc\":\"tally notice"
        " in-T-1; tally coordinator ES-MAD-01#00000000000000aa\"}]}");
    CHECK_EQ_INT(grn_marks(&u, cJSON_GetObjectItemCaseSensitive(other, "data")), 0);
    cJSON_Delete(other);
    CHECK_EQ_INT((int)rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE kind = 'coordinator'"
                                " AND message LIKE '%%inbound notice in-T-1 to UK-GC%%'"),
                 1);
    char why[600] = "";
    CHECK(!coord_decides(d, why, sizeof why));
    CHECK(strstr(why, "ES-MAD-01#00000000000000aa") != NULL);
    rh_free(h);
}

int main(void)
{
    test_requests();
    test_stock_rows();
    test_order_rows();
    test_envelopes();
    test_dates();
    test_window_garbage_date();
    test_same_lines();
    test_notice_mark();
    return check_result("test_goodcang");
}
