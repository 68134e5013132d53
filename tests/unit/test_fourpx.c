/*
 * The 4PX connector's pure parts (daemon/fpx.h, daemon/fpx_sign.h) against the public sources'
 * facts pinned in tests/fixtures/fourpx/:
 *   - the signer against vectors computed by md5sum (sign_vector.sh), not by this code;
 *   - the router URL's query names and the request bodies' member names against the lists
 *     copied from the SDKs' DTO classes (every name emitted is documented, required ones are
 *     there);
 *   - the sample answers through the envelope and row readers; the status table; bad rows and
 *     answers of another kind.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "check.h"
#include "codec.h"
#include "coord.h"
#include "fpx.h"
#include "fpx_sign.h"
#include "json.h"
#include "replica_harness.h"
#include "tallyd.h"
#include "upstream.h"

#ifndef FIXTURES_DIR
#error "FIXTURES_DIR must name tests/fixtures/fourpx"
#endif

static char *slurp(const char *file, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FIXTURES_DIR, file);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

static cJSON *fixture(const char *file)
{
    size_t n;
    char *t = slurp(file, &n);
    cJSON *d = t ? cJSON_ParseWithLength(t, n) : NULL;
    free(t);
    if (!d)
        fprintf(stderr, "fixture %s is not JSON\n", file);
    return d;
}

/* The value of `name=` in sign_vector.txt (one line each). */
static void vector_get(const char *text, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    out[0] = 0;
    for (const char *p = text; p && *p;) {
        if (!strncmp(p, name, n) && p[n] == '=') {
            const char *e = strchr(p + n + 1, '\n');
            size_t k = e ? (size_t)(e - p - n - 1) : strlen(p + n + 1);
            if (k >= outlen)
                k = outlen - 1;
            memcpy(out, p + n + 1, k);
            out[k] = 0;
            return;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
}

static void test_sign_vectors(void)
{
    char *t = slurp("sign_vector.txt", NULL);
    CHECK(t != NULL);
    if (!t)
        return;
    char k[128], f[16], m[64], ts[32], v[16], body[512], secret[128], want[40], got[FPX_SIGN_LEN];
    vector_get(t, "app_key", k, sizeof k);
    vector_get(t, "format", f, sizeof f);
    vector_get(t, "method", m, sizeof m);
    vector_get(t, "timestamp", ts, sizeof ts);
    vector_get(t, "v", v, sizeof v);
    vector_get(t, "body", body, sizeof body);
    vector_get(t, "secret", secret, sizeof secret);
    vector_get(t, "sign", want, sizeof want);
    CHECK_EQ_INT(strlen(want), 32);
    CHECK_EQ_INT(fpx_sign(k, f, m, ts, v, body, strlen(body), secret, got), 0);
    CHECK_EQ_STR(got, want);
    /* the second vector: UTF-8 in the body, another method, version and secret */
    vector_get(t, "method2", m, sizeof m);
    vector_get(t, "v2", v, sizeof v);
    vector_get(t, "body2", body, sizeof body);
    vector_get(t, "secret2", secret, sizeof secret);
    vector_get(t, "sign2", want, sizeof want);
    CHECK_EQ_INT(fpx_sign(k, f, m, ts, v, body, strlen(body), secret, got), 0);
    CHECK_EQ_STR(got, want);
    /* one byte of the body changed: another signature */
    body[strlen(body) - 2] ^= 1;
    CHECK_EQ_INT(fpx_sign(k, f, m, ts, v, body, strlen(body), secret, got), 0);
    CHECK(strcmp(got, want) != 0);
    free(t);
}

/* Whether `name` is in the string array member `list` of a fixture. */
static bool listed(const cJSON *fx, const char *list, const char *name)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(fx, list))
    {
        if (cJSON_IsString(it) && !strcmp(it->valuestring, name))
            return true;
    }
    return false;
}

/* Every member name of obj is in the fixture's list; every name of `required` is in obj. */
static void names_documented(const cJSON *obj, const cJSON *fx, const char *list,
                             const char *required)
{
    CHECK(cJSON_IsObject(obj));
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        if (!listed(fx, list, it->string)) {
            fprintf(stderr, "  %s is not in %s\n", it->string, list);
            CHECK(!"an undocumented name was sent");
        }
    }
    if (!required)
        return;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(fx, required))
    {
        if (!cJSON_GetObjectItemCaseSensitive(obj, it->valuestring)) {
            fprintf(stderr, "  required %s is missing\n", it->valuestring);
            CHECK(!"a required name is missing");
        }
    }
}

static void test_url(void)
{
    cJSON *fx = fixture("common_params.json");
    struct jbuf q = {0};
    const char *body = "{\"warehouse_code\":\"US-4PX\",\"page_no\":1,\"page_size\":50}";
    CHECK_EQ_INT(fpx_url(&q, "https://open.4px.com", "fu.wms.inventory.get", "K1", "TOK",
                         1733371200123LL, body, strlen(body), "S1"),
                 0);
    const char *p = strstr(q.p, "/router/api/service?");
    CHECK(p != NULL);
    CHECK(!strncmp(q.p, "https://open.4px.com/router/api/service?", 40));
    /* every query name documented, each once; sign matches the signer */
    int seen = 0;
    for (char *s = p ? strchr(q.p, '?') + 1 : NULL; s && *s;) {
        char *amp = strchr(s, '&'), *eq = strchr(s, '=');
        char name[32] = "";
        if (eq && (!amp || eq < amp))
            snprintf(name, sizeof name, "%.*s", (int)(eq - s), s);
        CHECK(listed(fx, "query", name));
        seen++;
        s = amp ? amp + 1 : NULL;
    }
    CHECK_EQ_INT(seen, 7); /* method app_key v timestamp format access_token sign */
    char want[FPX_SIGN_LEN];
    fpx_sign("K1", "json", "fu.wms.inventory.get", "1733371200123", FPX_VERSION, body, strlen(body),
             "S1", want);
    char needle[64];
    snprintf(needle, sizeof needle, "&sign=%s", want);
    CHECK(strstr(q.p, needle) != NULL);
    CHECK(strstr(q.p, "&timestamp=1733371200123") != NULL);
    CHECK(strstr(q.p, "&access_token=TOK") != NULL);
    CHECK(strstr(q.p, "&format=json") != NULL);
    CHECK(strstr(q.p, "&v=1.0.0") != NULL);
    jb_free(&q);
    /* without an access token: not sent */
    CHECK_EQ_INT(fpx_url(&q, "http://x", "m", "K", "", 1, "", 0, "S"), 0);
    CHECK(strstr(q.p, "access_token") == NULL);
    jb_free(&q);
    cJSON_Delete(fx);
}

/* An outbound payload as fulfil.c packs it. */
static void pack_outbound(msgpack_sbuffer *sb, const char *id, const char *name,
                          const char *country)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mp_pack_kv_str(&pk, "id", id);
    mp_pack_key(&pk, "lines");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "sku", "EB-000001-BLK-M");
    mp_pack_kv_int(&pk, "qty", 2);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "sku", "QI-000002");
    mp_pack_kv_int(&pk, "qty", 1);
    mp_pack_key(&pk, "ship_to");
    msgpack_pack_map(&pk, 6);
    mp_pack_kv_str(&pk, "name", name);
    mp_pack_kv_str(&pk, "address", "1 Main St \"B\"");
    mp_pack_kv_str(&pk, "city", "Austin");
    mp_pack_kv_str(&pk, "postcode", "73301");
    mp_pack_kv_str(&pk, "country", country);
    mp_pack_kv_str(&pk, "phone", "+1 512 555 0100");
    mp_pack_kv_str(&pk, "service", "CAINIAO_STANDARD");
}

static void test_outbound_body(void)
{
    cJSON *fx = fixture("fu.wms.outbound.create.json");
    msgpack_sbuffer sb;
    pack_outbound(&sb, "8100000000000001", "José Ñúñez", "US");
    struct jbuf b = {0};
    char ref[TALLY_MAX_ID_LEN + 1], err[256];
    CHECK_EQ_INT(fpx_outbound_body(sb.data, sb.size, "US-4PX", NULL, &b, ref, err, sizeof err), 0);
    CHECK_EQ_STR(ref, "8100000000000001");
    cJSON *d = cJSON_Parse(b.p);
    names_documented(d, fx, "request_params", "required");
    CHECK_EQ_STR(json_str(d, "ref_no"), "8100000000000001");
    CHECK_EQ_STR(json_str(d, "from_warehouse_code"), "US-4PX");
    CHECK_EQ_STR(json_str(d, "consignment_type"), "S");
    const cJSON *lsi = cJSON_GetObjectItemCaseSensitive(d, "logistics_service_info");
    names_documented(lsi, fx, "logistics_service_info_params", NULL);
    CHECK_EQ_STR(json_str(lsi, "logistics_product_code"), "CAINIAO_STANDARD");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(d, "oconsignment_desc");
    names_documented(desc, fx, "oconsignment_desc_params", "oconsignment_desc_required");
    CHECK_EQ_STR(json_str(desc, "first_name"), "José Ñúñez");
    CHECK_EQ_STR(json_str(desc, "street"), "1 Main St \"B\"");
    CHECK_EQ_STR(json_str(desc, "post_code"), "73301");
    const cJSON *skus = cJSON_GetObjectItemCaseSensitive(d, "oconsignment_sku"), *it;
    CHECK_EQ_INT(cJSON_GetArraySize(skus), 2);
    cJSON_ArrayForEach(it, skus)
    {
        names_documented(it, fx, "oconsignment_sku_params", "oconsignment_sku_required");
        CHECK_EQ_STR(json_str(it, "stock_quality"), "G");
    }
    int64_t qty = 0;
    CHECK_EQ_INT(json_int(cJSON_GetArrayItem(skus, 0), "qty", 1, 100, &qty), 0);
    CHECK_EQ_INT(qty, 2);
    cJSON_Delete(d);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);
    /* a ship-to without a country: refused here, never sent */
    pack_outbound(&sb, "8100000000000002", "A", "");
    CHECK_EQ_INT(fpx_outbound_body(sb.data, sb.size, "US-4PX", NULL, &b, ref, err, sizeof err), -1);
    CHECK(strstr(err, "country") != NULL);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);
    /* the warehouse's shipping_method is the 4PX product code, over the order's service */
    pack_outbound(&sb, "8100000000000003", "A", "US");
    CHECK_EQ_INT(fpx_outbound_body(sb.data, sb.size, "US-4PX", "F999", &b, ref, err, sizeof err),
                 0);
    d = cJSON_Parse(b.p);
    lsi = cJSON_GetObjectItemCaseSensitive(d, "logistics_service_info");
    CHECK_EQ_STR(json_str(lsi, "logistics_product_code"), "F999");
    cJSON_Delete(d);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);
    /* neither a shipping_method nor a service: refused here, naming the key to set */
    msgpack_sbuffer_init(&sb);
    {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        mp_pack_kv_str(&pk, "id", "8100000000000004");
        mp_pack_key(&pk, "lines");
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 2);
        mp_pack_kv_str(&pk, "sku", "EB-1");
        mp_pack_kv_int(&pk, "qty", 1);
        mp_pack_key(&pk, "ship_to");
        msgpack_pack_map(&pk, 4);
        mp_pack_kv_str(&pk, "name", "A");
        mp_pack_kv_str(&pk, "address", "1 Main St");
        mp_pack_kv_str(&pk, "country", "US");
        mp_pack_kv_str(&pk, "phone", "+1 512 555 0100");
    }
    CHECK_EQ_INT(fpx_outbound_body(sb.data, sb.size, "US-4PX", "", &b, ref, err, sizeof err), -1);
    CHECK(strstr(err, "shipping_method") != NULL);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);
    /* not MessagePack */
    CHECK_EQ_INT(fpx_outbound_body("\xc1", 1, "US-4PX", NULL, &b, ref, err, sizeof err), -1);
    jb_free(&b);
    cJSON_Delete(fx);
}

static void test_cancel_and_inbound_bodies(void)
{
    cJSON *fx = fixture("fu.wms.outbound.cancel.json");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_kv_str(&pk, "id", "8100000000000001");
    struct jbuf b = {0};
    char ref[TALLY_MAX_ID_LEN + 1], err[256];
    CHECK_EQ_INT(fpx_cancel_body(sb.data, sb.size, &b, ref, err, sizeof err), 0);
    cJSON *d = cJSON_Parse(b.p);
    names_documented(d, fx, "request_params", NULL);
    CHECK_EQ_STR(json_str(d, "ref_no"), "8100000000000001");
    CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(fx, "cancel_type"),
                                           json_str(d, "cancel_type")) != NULL);
    cJSON_Delete(d);
    cJSON_Delete(fx);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);

    /* the inbound notice of the outbox contract */
    fx = fixture("fu.wms.inbound.create.json");
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    mp_pack_kv_str(&pk, "id", "IN-US-4PX-0001");
    mp_pack_kv_str(&pk, "warehouse", "US-4PX");
    mp_pack_key(&pk, "lines");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "sku", "QI-000002");
    mp_pack_kv_int(&pk, "qty", 40);
    mp_pack_kv_str(&pk, "ref", "TR-7");
    mp_pack_kv_str(&pk, "from", "ES-MAD");
    mp_pack_kv_str(&pk, "tracking_no", "1Z999");
    mp_pack_kv_int(&pk, "eta", 1733371200);
    CHECK_EQ_INT(fpx_inbound_body(sb.data, sb.size, "US-4PX", &b, ref, err, sizeof err), 0);
    CHECK_EQ_STR(ref, "IN-US-4PX-0001");
    d = cJSON_Parse(b.p);
    names_documented(d, fx, "request_params", NULL);
    CHECK_EQ_STR(json_str(d, "to_warehouse_code"), "US-4PX");
    CHECK_EQ_STR(json_str(d, "tracking_no"), "1Z999");
    CHECK(json_str(d, "remark") && strstr(json_str(d, "remark"), "TR-7"));
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "iconsignment_sku"))
    {
        names_documented(it, fx, "iconsignment_sku_params", NULL);
        int64_t q = 0;
        CHECK_EQ_INT(json_int(it, "plan_qty", 1, 1000, &q), 0);
        CHECK_EQ_INT(q, 40);
    }
    cJSON_Delete(d);
    cJSON_Delete(fx);
    jb_free(&b);
    msgpack_sbuffer_destroy(&sb);
}

static void test_status_table(void)
{
    cJSON *fx = fixture("fu.wms.outbound.getlist.json");
    /* every documented status has a word; nothing else has */
    const cJSON *st;
    int n = 0;
    cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(fx, "status"))
    {
        CHECK(fpx_status_word(st->string) != NULL);
        n++;
    }
    CHECK_EQ_INT(n, 7);
    CHECK_EQ_STR(fpx_status_word("N"), "accepted");
    CHECK_EQ_STR(fpx_status_word("S"), "picking");
    CHECK_EQ_STR(fpx_status_word("P"), "packed");
    CHECK_EQ_STR(fpx_status_word("C"), "shipped");
    CHECK_EQ_STR(fpx_status_word("X"), "cancelled");
    CHECK_EQ_STR(fpx_status_word("D"), "cancelled");
    CHECK_EQ_STR(fpx_status_word("E"), "exception");
    CHECK(fpx_status_word("Z") == NULL);
    CHECK(fpx_status_word("") == NULL);
    CHECK(fpx_status_word("CC") == NULL);
    CHECK(fpx_status_open("S") && fpx_status_open("E") && !fpx_status_open("C") &&
          !fpx_status_open("X"));
    cJSON_Delete(fx);
}

/* A fixture's sample answer as the text the server would send. */
static char *sample_text(const char *file)
{
    cJSON *fx = fixture(file);
    char *t = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(fx, "sample_answer"));
    cJSON_Delete(fx);
    return t;
}

static void test_answers(void)
{
    char err[256];
    cJSON *doc;
    const cJSON *data;
    /* stock rows */
    char *t = sample_text("fu.wms.inventory.get.json");
    CHECK_EQ_INT(fpx_envelope(200, t, strlen(t), &doc, &data, err, sizeof err), SYNC_OK);
    const cJSON *rows = fpx_page_rows(data), *row;
    CHECK_EQ_INT(cJSON_GetArraySize(rows), 2);
    char sku[TALLY_MAX_ID_LEN + 1];
    int64_t on_hand = -1;
    row = cJSON_GetArrayItem(rows, 0);
    CHECK_EQ_INT(fpx_stock_row(row, "US-4PX", sku, &on_hand, err, sizeof err), 1);
    CHECK_EQ_STR(sku, "EB-000001-BLK-M");
    CHECK_EQ_INT(on_hand, 9); /* available 7 + pending 2; onway 30 is not there */
    CHECK_EQ_INT(fpx_stock_row(row, "UK-4PX", sku, &on_hand, err, sizeof err), 0);
    /* bad rows: a clear error each, never a crash */
    cJSON *bad = cJSON_Parse("[{\"sku_code\":\"A B\",\"available_stock\":1},"
                             "{\"sku_code\":\"X1\",\"available_stock\":-4},"
                             "{\"sku_code\":\"X2\",\"available_stock\":\"7\",\"pending_stock\":"
                             "\"2\"},"
                             "{\"sku_code\":\"X3\"},"
                             "{\"sku_code\":\"X4\",\"available_stock\":1.5},"
                             "{\"sku_code\":\"X5\",\"available_stock\":1,\"stock_quality\":\"B\"},"
                             "\"row\"]");
    int results[7], i = 0;
    cJSON_ArrayForEach(row, bad)
    {
        results[i++] = fpx_stock_row(row, "US-4PX", sku, &on_hand, err, sizeof err);
    }
    CHECK_EQ_INT(results[0], -1); /* a SKU code with a space */
    CHECK_EQ_INT(results[1], -1); /* negative */
    CHECK_EQ_INT(results[2], 1);  /* quoted numbers are read */
    CHECK_EQ_INT(results[3], -1); /* no available_stock */
    CHECK_EQ_INT(results[4], -1); /* not integral */
    CHECK_EQ_INT(results[5], 0);  /* damaged stock: not sellable, not counted */
    CHECK_EQ_INT(results[6], -1); /* not an object */
    cJSON_Delete(bad);
    cJSON_Delete(doc);
    free(t);

    /* outbound rows */
    t = sample_text("fu.wms.outbound.getlist.json");
    CHECK_EQ_INT(fpx_envelope(200, t, strlen(t), &doc, &data, err, sizeof err), SYNC_OK);
    rows = fpx_page_rows(data);
    struct fpx_ob_row o;
    CHECK_EQ_INT(fpx_outbound_row(cJSON_GetArrayItem(rows, 0), "US-4PX", &o, err, sizeof err), 1);
    CHECK_EQ_STR(o.ref_no, "8100000000000001");
    CHECK_EQ_STR(o.status, "shipped");
    CHECK_EQ_STR(o.tracking, "9400100000000000000001"); /* shipping_no, the carrier's number */
    CHECK_EQ_STR(o.carrier, "USPS");
    CHECK_EQ_INT(o.version, 1733374800123LL);
    CHECK(!o.open);
    CHECK_EQ_INT(fpx_outbound_row(cJSON_GetArrayItem(rows, 1), "US-4PX", &o, err, sizeof err), 1);
    CHECK_EQ_STR(o.status, "exception");
    CHECK(strstr(o.reason, "out of stock") != NULL);
    CHECK(o.open);
    CHECK_EQ_INT(fpx_outbound_row(cJSON_GetArrayItem(rows, 2), "US-4PX", &o, err, sizeof err), 1);
    CHECK_EQ_STR(o.status, "picking");
    CHECK_EQ_INT(o.create_time, 1733371200123LL);
    CHECK_EQ_STR(o.remark, ""); /* no remark: no mark */
    cJSON_Delete(doc);
    free(t);
    /* remark (vo/Outbound): where a coordinator's mark comes back */
    bad = cJSON_Parse("{\"ref_no\":\"M1\",\"status\":\"S\","
                      "\"remark\":\"tally coordinator ES-MAD-01#5a15f5639b41649b\"}");
    CHECK_EQ_INT(fpx_outbound_row(bad, "US-4PX", &o, err, sizeof err), 1);
    CHECK_EQ_STR(o.remark, "tally coordinator ES-MAD-01#5a15f5639b41649b");
    cJSON_Delete(bad);
    bad = cJSON_Parse("[{\"ref_no\":\"A1\",\"status\":\"Q\"},"
                      "{\"ref_no\":\"A2\",\"status\":\"C\"},"
                      "{\"ref_no\":\"A3\",\"status\":\"S\",\"from_warehouse_code\":\"DE-4PX\"},"
                      "{\"status\":\"S\"},"
                      "{\"ref_no\":\"A 5\",\"status\":\"S\"},"
                      "{\"ref_no\":\"A6\",\"status\":7}]");
    i = 0;
    cJSON_ArrayForEach(row, bad)
    {
        err[0] = 0;
        results[i++] = fpx_outbound_row(row, "US-4PX", &o, err, sizeof err);
        if (i == 1)
            CHECK(strstr(err, "unknown status Q") && strstr(err, "A1"));
    }
    CHECK_EQ_INT(results[0], -1); /* unknown status: a per-row error naming it */
    CHECK_EQ_INT(results[1], -1); /* shipped without a tracking number */
    CHECK_EQ_INT(results[2], 0);  /* another warehouse's */
    CHECK_EQ_INT(results[3], 0);  /* no ref_no: not one of tally's */
    CHECK_EQ_INT(results[4], -1); /* unreadable ref_no */
    CHECK_EQ_INT(results[5], -1); /* status of the wrong type */
    cJSON_Delete(bad);

    /* create / cancel answers */
    t = sample_text("fu.wms.outbound.create.json");
    CHECK_EQ_INT(fpx_envelope(200, t, strlen(t), &doc, &data, err, sizeof err), SYNC_OK);
    CHECK_EQ_STR(json_str(data, "consignment_no"), "OC0000000000000001");
    cJSON_Delete(doc);
    free(t);
    t = sample_text("fu.wms.inbound.create.json");
    CHECK_EQ_INT(fpx_envelope(200, t, strlen(t), &doc, &data, err, sizeof err), SYNC_OK);
    cJSON_Delete(doc);
    free(t);

    /* refusals, credentials, answers of another kind */
    cJSON *env = fixture("envelope.json");
    t = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(env, "refusal"));
    CHECK_EQ_INT(fpx_envelope(200, t, strlen(t), &doc, &data, err, sizeof err), SYNC_PERMANENT);
    CHECK(strstr(err, "ref_no already exists") != NULL);
    CHECK(doc == NULL);
    free(t);
    cJSON_Delete(env);
    const char *sig = "{\"result\":\"0\",\"msg\":\"\",\"errors\":[{\"error_code\":\"1\","
                      "\"error_msg\":\"Sign error\"}],\"data\":null}";
    CHECK_EQ_INT(fpx_envelope(200, sig, strlen(sig), &doc, &data, err, sizeof err), SYNC_AUTH);
    /* msg and error_msg saying the same: said once, with the code */
    const char *same = "{\"result\":\"0\",\"msg\":\"already shipped\",\"errors\":[{"
                       "\"error_code\":\"E9\",\"error_msg\":\"already shipped\"}],\"data\":null}";
    CHECK_EQ_INT(fpx_envelope(200, same, strlen(same), &doc, &data, err, sizeof err),
                 SYNC_PERMANENT);
    CHECK_EQ_STR(err, "refused by 4PX: already shipped E9");
    /* "consignment" holds "sign": a refusal about a consignment is not about credentials */
    const char *dup = "{\"result\":\"0\",\"msg\":\"ref_no R1 already exists (consignment "
                      "OC1)\",\"errors\":[],\"data\":null}";
    CHECK_EQ_INT(fpx_envelope(200, dup, strlen(dup), &doc, &data, err, sizeof err), SYNC_PERMANENT);
    const char *num = "{\"result\":1,\"data\":{\"page_no\":1,\"data\":[]}}";
    CHECK_EQ_INT(fpx_envelope(200, num, strlen(num), &doc, &data, err, sizeof err), SYNC_OK);
    CHECK_EQ_INT(cJSON_GetArraySize(fpx_page_rows(data)), 0);
    cJSON_Delete(doc);
    const char *tally = "{\"error\":{\"code\":\"not_found\",\"message\":\"no route\"}}";
    CHECK_EQ_INT(fpx_envelope(404, tally, strlen(tally), &doc, &data, err, sizeof err),
                 SYNC_PERMANENT);
    CHECK(strstr(err, "not a 4PX answer") && strstr(err, "no route"));
    CHECK_EQ_INT(fpx_envelope(200, tally, strlen(tally), &doc, &data, err, sizeof err),
                 SYNC_PERMANENT);
    const char *html = "<html><body>Bad gateway</body></html>";
    CHECK_EQ_INT(fpx_envelope(200, html, strlen(html), &doc, &data, err, sizeof err),
                 SYNC_TRANSIENT);
    CHECK(strstr(err, "not JSON") && strstr(err, "<html>"));
    CHECK_EQ_INT(fpx_envelope(502, html, strlen(html), &doc, &data, err, sizeof err),
                 SYNC_TRANSIENT);
    CHECK_EQ_INT(fpx_envelope(401, "", 0, &doc, &data, err, sizeof err), SYNC_AUTH);
    const char *trunc = "{\"result\":\"1\",\"data\":{\"page_no\":1,\"da";
    CHECK_EQ_INT(fpx_envelope(200, trunc, strlen(trunc), &doc, &data, err, sizeof err),
                 SYNC_TRANSIENT);
    CHECK(fpx_page_rows(NULL) == NULL);
}

/* The outbound list's windows: an order open past 30 days is never silently out of sight, and
 * one long-open order does not make every round re-read 30 days. */
static void test_outbound_windows(void)
{
    const int64_t now = 1733371200123LL, day = 86400000LL;
    struct fpx_ob_plan p;
    /* first round: the last 30 days (less a minute), nothing to warn about */
    fpx_ob_plan(now, 0, 0, true, &p);
    CHECK_EQ_INT(p.end, now);
    CHECK_EQ_INT(p.start, now - FPX_WINDOW_MS + 60000);
    CHECK(!p.clamped && !p.sweep);
    /* an ordinary round: from the checkpoint, with overlap; old orders wait for the sweep */
    fpx_ob_plan(now, now - 60000, now - 10 * day, false, &p);
    CHECK_EQ_INT(p.start, now - 60000 - FPX_OVERLAP_MS);
    CHECK(!p.sweep && !p.clamped);
    /* the sweep reaches back to the oldest old open order */
    fpx_ob_plan(now, now - 60000, now - 10 * day, true, &p);
    CHECK(p.sweep);
    CHECK_EQ_INT(p.start, now - 10 * day - FPX_OVERLAP_MS);
    /* an open order older than the list's 30 days: the window is clamped and it says so */
    fpx_ob_plan(now, now - 60000, now - 31 * day, true, &p);
    CHECK(p.clamped);
    CHECK_EQ_INT(p.start, now - FPX_WINDOW_MS + 60000);
    fpx_ob_plan(now, now - 31 * day, 0, false, &p); /* tally was off for 31 days */
    CHECK(p.clamped);

    /* rows: recent open ones hold back every round, old ones only the sweep */
    int64_t minopen = FPX_NONE, minold = FPX_NONE;
    struct fpx_ob_row r = {.open = true, .create_time = now - 3600000};
    CHECK_EQ_INT(fpx_ob_note(&r, now, &minopen, &minold), 0);
    r.create_time = now - 5 * day;
    CHECK_EQ_INT(fpx_ob_note(&r, now, &minopen, &minold), 0);
    r.create_time = now - 29 * day; /* leaves the window within a day or two: a person is told */
    CHECK_EQ_INT(fpx_ob_note(&r, now, &minopen, &minold), 1);
    r.open = false; /* final, that old: the warning can go */
    CHECK_EQ_INT(fpx_ob_note(&r, now, &minopen, &minold), -1);
    r.open = false;
    r.create_time = now - 2 * day;
    CHECK_EQ_INT(fpx_ob_note(&r, now, &minopen, &minold), 0);
    CHECK_EQ_INT(minopen, now - 3600000);
    CHECK_EQ_INT(minold, now - 29 * day);
    int64_t version = 0, old = 0;
    fpx_ob_checkpoint(minopen, minold, now, false, &version, &old);
    CHECK_EQ_INT(version, now - 3600000); /* not held back 29 days */
    CHECK_EQ_INT(old, now - 29 * day);
    /* a later ordinary round with no old rows keeps the old checkpoint; a sweep that saw none
     * clears it */
    fpx_ob_checkpoint(FPX_NONE, FPX_NONE, now + 1000, false, &version, &old);
    CHECK_EQ_INT(version, now + 1000);
    CHECK_EQ_INT(old, now - 29 * day);
    fpx_ob_checkpoint(FPX_NONE, FPX_NONE, now + 2000, true, &version, &old);
    CHECK_EQ_INT(old, 0);
}

/* Inbound notices carry the coordinator's mark (coord.h): fu.wms.inbound.create's remark
 * ends with it, within 500 characters however long the note; the inbound list read back
 * (InboundConsignment.remark) raises the `coordinator` exception for another station's mark,
 * never for this station's own. */
static void test_inbound_mark(void)
{
    struct rh *h = rh_new("fourpx_mark");
    rh_open(h);
    rh_seed_standard(h);
    struct tallyd *d = rh_daemon(h);
    d->cfg.coordinator = true;
    d->cfg.nwh = 0;
    snprintf(d->cfg.station, sizeof d->cfg.station, "FPX-COORD");
    char err[300] = "", mine[80], ref[TALLY_MAX_ID_LEN + 1];
    CHECK_EQ_INT(coord_start(d, err, sizeof err), 0);
    snprintf(mine, sizeof mine, "%s", coord_mark(d));
    /* k = 1..3: notes (rh_long_note) of 1-, 2- and 3-byte UTF-8 characters, longer than the
     * remark holds: cut at a character's boundary (the body stays UTF-8) */
    for (int k = 0; k < 4; k++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, k ? 5 : 4);
        mp_pack_kv_str(&pk, "id", "IN-US-4PX-0002");
        mp_pack_kv_str(&pk, "warehouse", "US-4PX");
        mp_pack_key(&pk, "lines");
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 2);
        mp_pack_kv_str(&pk, "sku", "QI-000002");
        mp_pack_kv_int(&pk, "qty", 4);
        mp_pack_kv_str(&pk, "station", mine);
        if (k)
            mp_pack_kv_str(&pk, "note", rh_long_note(k));
        struct jbuf b;
        memset(&b, 0, sizeof b);
        CHECK_EQ_INT(fpx_inbound_body(sb.data, sb.size, "US-4PX", &b, ref, err, sizeof err), 0);
        cJSON *doc = cJSON_Parse(b.p);
        const char *remark = json_str(doc, "remark");
        char tail[120], name[40];
        snprintf(tail, sizeof tail, "tally coordinator %s", mine);
        CHECK(remark && strlen(remark) <= 500 && strlen(remark) >= strlen(tail) &&
              !strcmp(remark + strlen(remark) - strlen(tail), tail));
        uint64_t id = 0;
        CHECK_EQ_INT(coord_parse(remark, name, sizeof name, &id), 1);
        CHECK(id == d->coord.id);
        CHECK(remark && rh_utf8_ok(remark));
        cJSON_Delete(doc);
        jb_free(&b);
        msgpack_sbuffer_destroy(&sb);
    }
    /* read back: a page (FopPage) of the inbound list */
    char text[600];
    snprintf(text, sizeof text,
             "{\"page_no\":1,\"page_size\":20,\"total\":2,\"data\":["
             "{\"consignment_no\":\"IC1\",\"ref_no\":\"IN-US-4PX-0002\",\"status\":\"S\","
             "\"create_time\":1733371200000,\"remark\":\"tally coordinator %s\"},"
             "{\"consignment_no\":\"IC2\",\"ref_no\":\"IN-US-4PX-0003\",\"status\":\"S\"}]}",
             mine);
    cJSON *own = cJSON_Parse(text);
    CHECK_EQ_INT(fpx_inbound_marks(d, "US-4PX", own), 0);
    CHECK_EQ_INT((int)rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE kind = 'coordinator'"), 0);
    /* the rows fed here use the documented row names only (remark among them) */
    cJSON *fx = fixture("fu.wms.inbound.create.json");
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(own, "data"))
        names_documented(row, fx, "getlist_row_fields", NULL);
    cJSON_Delete(fx);
    cJSON_Delete(own);
    cJSON *other = cJSON_Parse(
        "{\"page_no\":1,\"page_size\":20,\"total\":1,\"data\":[{\"consignment_no\":\"IC3\","
        "\"ref_no\":\"IN-US-4PX-0002\",\"status\":\"S\",\"create_time\":1733371200000,"
        "\"remark\":\"transfer T-1 from ES-MAD; tally coordinator ES-MAD-01#00000000000000aa\"}]}");
    CHECK_EQ_INT(fpx_inbound_marks(d, "US-4PX", other), 0);
    cJSON_Delete(other);
    CHECK_EQ_INT((int)rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE kind = 'coordinator'"
                                " AND message LIKE '%%inbound notice IN-US-4PX-0002 to US-4PX%%'"),
                 1);
    CHECK(!coord_decides(d, NULL, 0));
    rh_free(h);
}

int main(void)
{
    test_outbound_windows();
    test_sign_vectors();
    test_url();
    test_outbound_body();
    test_cancel_and_inbound_bodies();
    test_status_table();
    test_answers();
    test_inbound_mark();
    return check_result("test_fourpx");
}
