/*
 * Unit: conn_wms.c's inventory pages read in place (inv_scan on the loop, inv_next on the
 * worker). A well-formed page gives its rows, version and cursor; an answer that is not
 * well-formed JSON, or lacks "items" or "version", is unreadable (the page fails, transient);
 * a row that is not an object, lacks a field or holds a wrong type or an out-of-range value is
 * skipped and counted, with json_int's readings (an integral number, or a string of digits).
 * inventory_prepare (on a pool thread before the page's write job) reads the same rows into
 * an array, and frees the answer; the array is bounded by the answer's size whatever the number
 * of elements. The connector's functions are static: this file includes conn_wms.c.
 */
#include <stdlib.h>

/* The largest single allocation conn_wms.c asks for (inventory_prepare's row array). */
static size_t largest_malloc;
static void *counted_malloc(size_t n)
{
    if (n > largest_malloc)
        largest_malloc = n;
    return malloc(n);
}
#define malloc(n) counted_malloc(n)
#include "../../daemon/conn_wms.c"
#undef malloc

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

static struct pull_page page;

/* Scans `body` as an answer of the page (a copy: the prepare frees it) and prepares it: 0 with
 * *rows, or -1. */
static int prepare(const char *body, int64_t *rows)
{
    free(call.rows);
    memset(&call, 0, sizeof call);
    memset(&page, 0, sizeof page);
    call.req.response = strdup(body);
    call.req.response_len = strlen(body);
    if (inv_scan(&call, body, strlen(body), rows) != 0) {
        free(call.req.response);
        return -1;
    }
    page.data = &call;
    page.rows = *rows;
    largest_malloc = 0;
    inventory_prepare(&page);
    return 0;
}

/* The prepared rows as rows_of() gives them but without the time (a row without one is read
 * at store_now()), the skipped ones at their end ('-' each). */
static const char *prepared_of(void)
{
    static char out[2048];
    size_t len = 0;
    out[0] = 0;
    for (size_t i = 0; i < call.nrows && len < sizeof out - 200; i++) {
        const struct whfeed_row *w = &call.rows[i];
        len +=
            (size_t)snprintf(out + len, sizeof out - len, "%s%s:%" PRId64 ":%" PRId64 ":%" PRId64,
                             len ? " " : "", w->sku, w->on_hand, w->version, w->inbound);
    }
    for (int64_t i = 0; i < call.skipped && len < sizeof out - 4; i++)
        len += (size_t)snprintf(out + len, sizeof out - len, "%s-", len ? " " : "");
    return out;
}

/* A page of `n` copies of `row` joined by ',' */
static char *page_of(const char *row, int n)
{
    size_t rl = strlen(row), cap = (rl + 1) * (size_t)n + 64, len = 0;
    char *b = malloc(cap);
    len += (size_t)snprintf(b, cap, "{\"version\":1,\"items\":[");
    for (int i = 0; i < n; i++) {
        memcpy(b + len, row, rl);
        len += rl;
        if (i + 1 < n)
            b[len++] = ',';
    }
    snprintf(b + len, cap - len, "]}");
    return b;
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

    /* The prepare reads the same rows (the readable ones in their order, the others counted)
     * and frees the answer; the version the rows reach is the page's. */
    const char *mixed = "{\"version\":3,\"items\":[5,{\"sku\":\"A\",\"on_hand\":4,\"version\":9},"
                        "{\"sku\":\"has space\",\"on_hand\":1,\"version\":1},"
                        "{\"version\":2,\"on_hand\":-1,\"sku\":\"B\",\"inbound\":3}]}";
    CHECK_EQ_INT(prepare(mixed, &rows), 0);
    CHECK_EQ_INT(rows, 4);
    CHECK(call.rows != NULL);
    CHECK(call.req.response == NULL);
    CHECK_EQ_STR(prepared_of(), "A:4:9:-1 B:-1:2:3 - -");
    CHECK_EQ_INT(call.skipped, 2);
    CHECK_EQ_INT(call.maxv, 9);
    CHECK_EQ_STR(call.why, "a row with not an object");

    /* Rows as short as a readable row can be: all of them read (the array's bound is not
     * below them). */
    char *shortest = page_of("{\"sku\":\"A\",\"on_hand\":0,\"version\":0}", 1000);
    CHECK_EQ_INT(prepare(shortest, &rows), 0);
    CHECK_EQ_INT(rows, 1000);
    CHECK(call.rows != NULL);
    CHECK_EQ_INT(call.nrows, 1000);
    CHECK_EQ_INT(call.skipped, 0);
    free(shortest);

    /* A page of elements far shorter than any row (a broken or hostile warehouse): all
     * skipped, and the array is not one row per element (20,000 x 104 bytes for an answer of
     * 40 kB) but within a few times the answer's size. */
    char *ones = page_of("1", 20000);
    size_t ones_len = strlen(ones);
    CHECK_EQ_INT(prepare(ones, &rows), 0);
    CHECK_EQ_INT(rows, 20000);
    CHECK_EQ_INT(call.nrows, 0);
    CHECK_EQ_INT(call.skipped, 20000);
    if (largest_malloc > 4 * ones_len)
        fprintf(stderr, "an answer of %zu bytes took an allocation of %zu\n", ones_len,
                largest_malloc);
    CHECK(largest_malloc <= 4 * ones_len);
    free(ones);
    free(call.rows);
    return check_result("test_wms_scan");
}
