/*
 * Unit: conn_wms.c's inventory pages read in place (inv_scan on the loop, inv_next on the
 * worker). A well-formed page gives its rows, version and cursor; an answer that is not
 * well-formed JSON, or lacks "items" or "version", is unreadable (the page fails, transient);
 * a row that is not an object, lacks a field or holds a wrong type or an out-of-range value is
 * skipped and counted, with json_int's readings (an integral number, or a string of digits).
 * The connector's functions are static: this file includes conn_wms.c.
 */
#include "../../daemon/conn_wms.c"

#include "check.h"

static struct wms_call call;

/* Scans `body` as an answer: 0 with *rows, or -1. */
static int scan(const char *body, int64_t *rows)
{
    memset(&call, 0, sizeof call);
    call.req.response = (char *)body;
    call.req.response_len = strlen(body);
    return inv_scan(&call, body, strlen(body), rows);
}

/* The rows of the scanned page: "sku:on_hand:version:inbound:at" joined by ' ', '-' for a
 * skipped row. */
static const char *rows_of(void)
{
    static char out[2048];
    size_t len = 0;
    struct inv_row row;
    int k;
    out[0] = 0;
    while ((k = inv_next(&call, &row, 7)) >= 0 && len < sizeof out - 200) {
        if (k == 0)
            len += (size_t)snprintf(out + len, sizeof out - len, "%s-", len ? " " : "");
        else
            len += (size_t)snprintf(
                out + len, sizeof out - len, "%s%s:%" PRId64 ":%" PRId64 ":%" PRId64 ":%" PRId64,
                len ? " " : "", row.sku, row.on_hand, row.version, row.inbound, row.at);
    }
    return out;
}

int main(void)
{
    int64_t rows;
    /* A page as the Warehouse API sends it (fields in any order, unknown ones ignored). */
    CHECK_EQ_INT(scan("{\"items\":[{\"sku\":\"A-1\",\"on_hand\":41,\"inbound\":3,\"version\":9,"
                      "\"updated_at\":\"2026-12-01T18:34:50Z\"},"
                      " {\"version\":10,\"on_hand\":-2,\"sku\":\"B-2\",\"extra\":[1,{\"x\":null}],"
                      "\"updated_at\":1700000000}],\"next_cursor\":\"c5000\",\"version\":12}",
                      &rows),
                 0);
    CHECK_EQ_INT(rows, 2);
    CHECK_EQ_INT(call.new_version, 12);
    CHECK_EQ_STR(call.new_cursor, "c5000");
    CHECK_EQ_STR(rows_of(), "A-1:41:9:3:7 B-2:-2:10:-1:1700000000");

    /* The last page: no cursor (null or absent), an empty list; a numeric cursor. */
    CHECK_EQ_INT(scan(" {\"items\": [ ], \"next_cursor\": null, \"version\": 0} ", &rows), 0);
    CHECK_EQ_INT(rows, 0);
    CHECK_EQ_STR(call.new_cursor, "");
    CHECK_EQ_STR(rows_of(), "");
    CHECK_EQ_INT(scan("{\"version\":\"5\",\"items\":[],\"next_cursor\":5000}", &rows), 0);
    CHECK_EQ_STR(call.new_cursor, "5000");
    CHECK_EQ_INT(call.new_version, 5);

    /* Not well-formed, or not an inventory answer: unreadable. */
    const char *bad[] = {
        "",
        "[]",
        "{\"items\":[{\"sku\":\"A\",\"on_hand\":1,\"version\":1}],\"version\":1",     /* cut */
        "{\"items\":[{\"sku\":\"A\",\"on_hand\":1,\"version\":1}],\"version\":1}x",   /* trailing */
        "{\"items\":[{\"sku\":\"A\",\"on_hand\":1,\"version\":1},],\"version\":1}",   /* comma */
        "{\"items\":[{\"sku\":\"A\\q\",\"on_hand\":1,\"version\":1}],\"version\":1}", /* escape */
        "{\"items\":[{\"sku\":\"A\",\"on_hand\":01,\"version\":1}],\"version\":1}",   /* number */
        "{\"items\":[{\"sku\":\"A\",\"on_hand\":tru,\"version\":1}],\"version\":1}",  /* literal */
        "{\"items\":[],\"next_cursor\":\"x\"}", /* no version */
        "{\"items\":{},\"version\":1}",         /* not a list */
        "{\"items\":[],\"version\":-1}",        /* range */
        "{\"items\":[],\"version\":1.5}",
        "{\"items\":[\"a\nb\"],\"version\":1}", /* a control character in a string */
        "{\"items\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
        "]],"
        "\"version\":1}", /* too deep */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = scan(bad[i], &rows);
        if (r != -1)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK_EQ_INT(r, -1);
    }

    /* Rows that cannot be read are skipped, one by one; the others are applied. */
    CHECK_EQ_INT(
        scan("{\"version\":3,\"items\":["
             "5, \"x\", null, [1], {},"
             "{\"on_hand\":1,\"version\":1},"                           /* no sku */
             "{\"sku\":\"A\",\"version\":1},"                           /* no on_hand */
             "{\"sku\":\"A\",\"on_hand\":1},"                           /* no version */
             "{\"sku\":\"A\",\"on_hand\":1.5,\"version\":1},"           /* not integral */
             "{\"sku\":\"A\",\"on_hand\":1000000000001,\"version\":1}," /* out of range */
             "{\"sku\":\"A\",\"on_hand\":true,\"version\":1},"          /* wrong type */
             "{\"sku\":7,\"on_hand\":1,\"version\":1},"                 /* wrong type */
             "{\"sku\":\"A\\\"B\",\"on_hand\":1,\"version\":1},"        /* escaped id */
             "{\"sku\":\"has space\",\"on_hand\":1,\"version\":1},"     /* not an id */
             "{\"sku\":\""
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
             "\",\"on_hand\":1,\"version\":1}," /* 65 bytes */
             "{\"sku\":\"A\",\"on_hand\":\"12\",\"version\":2.0e0,\"inbound\":\"x\"},"
             "{\"sku\":\"B\",\"on_hand\":1,\"version\":1,\"sku\":\"C\"}," /* the first counts */
             /* plain digits are read without strtod up to 15 of them: a sign, the range,
              * and a 16-digit one read as before */
             "{\"sku\":\"D\",\"on_hand\":-5,\"version\":1234567890123456},"
             "{\"sku\":\"E\",\"on_hand\":999999999999999,\"version\":1},"
             "{\"sku\":\"F\",\"on_hand\":-0,\"version\":-1},"
             "{\"sku\":\"H\",\"on_hand\":-1000000000000,\"version\":0}"
             "]}",
             &rows),
        0);
    CHECK_EQ_INT(rows, 21);
    CHECK_EQ_STR(rows_of(), "- - - - - - - - - - - - - - - A:12:2:-1:7 B:1:1:-1:7"
                            " D:-5:1234567890123456:-1:7 - - H:-1000000000000:0:-1:7");
    return check_result("test_wms_scan");
}
