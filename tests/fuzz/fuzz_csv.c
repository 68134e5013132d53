/*
 * Fuzz target: an arbitrary file given to `tally import` -- the CLI's own code (client/tally.c,
 * included with its main renamed: import_header checks the header against the kind's columns,
 * pack_row packs each record, "attributes" cells parsed by pack_attributes) over its CSV reader
 * (client/csv.c), and the rows applied by the daemon's importer (import_rows, one transaction,
 * as one `import` call does) into a temporary replica.
 *
 * The first byte picks the kind (warehouses, catalog, stock, orders); the rest is the file.
 * Checks: a file the CLI refuses was refused with a reason; an import refused by the daemon says
 * why and leaves the replica untouched; one accepted counts every row; PRAGMA quick_check.
 * The CLI prints its refusals to stderr, as `tally import` does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>
#include <sqlite3.h>

/* The CLI's struct import_kind would clash with the daemon's enum of that name. */
#define main tally_cli_main
#define import_kind cli_import_kind
int tally_cli_main(int argc, char **argv);
#include "../../client/tally.c"
#undef import_kind
#undef main

#include "importer.h"
#include "store.h"
#include "tally/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_ROWS TALLY_MAX_PAGE

/* In memory when the machine has /dev/shm: a replica per input on a disk is slow. */
static char fz_dir[64];
static struct store *fz_st;

static void fz_cleanup(void)
{
    char p[128];
    store_close(fz_st);
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/replica.db%s", fz_dir, sfx[i]);
        unlink(p);
    }
    rmdir(fz_dir);
}

static struct store *fz_store(void)
{
    if (fz_st)
        return fz_st;
    char p[128], err[256];
    snprintf(fz_dir, sizeof fz_dir, "%s/tally-fuzzcsv.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(fz_dir))
        abort();
    snprintf(p, sizeof p, "%s/replica.db", fz_dir);
    if (store_open(p, false, &fz_st, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        abort();
    }
    atexit(fz_cleanup);
    return fz_st;
}

static int64_t fz_changes(struct store *st)
{
    /* Rows of every table an import writes: an import refused must change none. */
    sqlite3_stmt *s = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(store_db(st),
                           "SELECT (SELECT count(*) FROM warehouses) + (SELECT count(*) FROM skus)"
                           " + (SELECT count(*) FROM stock) + (SELECT count(*) FROM orders)"
                           " + (SELECT total(snapshot) FROM stock)"
                           " + (SELECT total(price_minor) FROM skus)",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct store *st = fz_store();
    FILE *f = fmemopen((void *)(data + 1), size - 1, "rb");
    if (!f)
        return 0; /* fmemopen refuses a zero-length buffer on some libcs */
    struct cli cli = {.timeout_s = -1};
    struct importer im = {.cli = &cli, .kind = &import_kinds[data[0] % 4], .file = "fuzz.csv"};
    struct batch b = {0};
    msgpack_sbuffer_init(&b.rows);
    im.csv = csv_reader_new(f);
    if (!im.csv)
        abort();
    /* The CLI's own steps (import_file): the header, then each record packed as a row. */
    int rc = import_header(&im), r = 0;
    while (rc == 0 && b.nrows < FZ_MAX_ROWS && (r = csv_read(im.csv)) > 0) {
        if (csv_nfields(im.csv) < 1 || csv_line(im.csv) < 1)
            abort(); /* the reader's contract */
        rc = pack_row(&im, &b);
    }
    if (rc == 0 && r < 0) {
        if (!csv_reader_error(im.csv) || !csv_reader_error(im.csv)[0])
            abort(); /* an error says what it is */
        rc = EXIT_USAGE;
    }
    if (rc == 0 && b.nrows > 0) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, (uint32_t)b.nrows);
        msgpack_sbuffer_write(&sb, b.rows.data, b.rows.size);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        if (msgpack_unpack_next(&u, sb.data, sb.size, &off) != MSGPACK_UNPACK_SUCCESS ||
            off != sb.size)
            abort(); /* the CLI packed something that is not one document */
        struct import_result res;
        char err[512] = "";
        int64_t before = fz_changes(st);
        int kind = import_kind_parse(im.kind->name, strlen(im.kind->name));
        int ir = import_rows(st, kind, &u.data, &res, err, sizeof err);
        if (ir != 0 && fz_changes(st) != before)
            abort(); /* refused, yet something was written */
        if (ir != 0 && !err[0])
            abort(); /* refused without saying why */
        if (ir == 0 && (res.rows != (int64_t)b.nrows || res.inserted + res.updated > res.rows))
            abort();
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
    }
    for (size_t i = 0; im.header && i < im.ncols; i++)
        free(im.header[i]);
    free(im.header);
    batch_destroy(&b);
    csv_reader_free(im.csv);
    fclose(f);
    return 0;
}
