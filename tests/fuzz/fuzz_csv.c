/*
 * Fuzz target: an arbitrary file given to `tally import` -- the CLI's CSV reader (client/csv.c)
 * over the bytes, each record packed as the CLI packs it (pack_row in client/tally.c: the
 * header's names as keys, non-empty cells only, as strings), and the rows applied by the
 * daemon's importer (import_rows, one transaction) into a temporary replica.
 *
 * The first byte picks the kind (warehouses, catalog, stock, orders); the rest is the file.
 * Not covered here: the CLI's own column checks and the catalog "attributes" cell syntax
 * (static in client/tally.c); the importer sees any header, which is stricter than the CLI.
 * After each input: PRAGMA quick_check, and an import refused leaves the replica untouched.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>
#include <sqlite3.h>

#include "codec.h"
#include "csv.h"
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
    int kind = data[0] % 4;
    FILE *f = fmemopen((void *)(data + 1), size - 1, "rb");
    if (!f)
        return 0; /* fmemopen refuses a zero-length buffer on some libcs */
    struct csv_reader *r = csv_reader_new(f);
    if (!r)
        abort();
    char **header = NULL;
    size_t ncols = 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* the rows array is packed last, in front of them, once their number is known */
    msgpack_sbuffer rows;
    msgpack_sbuffer_init(&rows);
    msgpack_packer rk;
    msgpack_packer_init(&rk, &rows, msgpack_sbuffer_write);
    uint32_t nrows = 0;
    int rc;
    bool bad = false;
    while ((rc = csv_read(r)) > 0 && nrows < FZ_MAX_ROWS) {
        size_t nf = csv_nfields(r);
        if (nf < 1 || csv_line(r) < 1)
            abort(); /* the reader's contract */
        if (!header) {
            ncols = nf;
            header = calloc(ncols, sizeof *header);
            for (size_t i = 0; header && i < ncols; i++)
                header[i] = strdup(csv_field(r, i, NULL));
            continue;
        }
        if (nf != ncols) {
            bad = true; /* the CLI refuses the file */
            break;
        }
        uint32_t count = 0;
        for (size_t i = 0; i < nf; i++) {
            size_t len;
            const char *v = csv_field(r, i, &len);
            if (strlen(v) != len)
                abort(); /* a NUL inside a field must have been refused */
            count += len != 0;
        }
        msgpack_pack_map(&rk, count);
        for (size_t i = 0; i < nf; i++) {
            size_t len;
            const char *v = csv_field(r, i, &len);
            if (len == 0)
                continue;
            mp_pack_strz(&rk, header[i] ? header[i] : "");
            mp_pack_strn(&rk, v, len);
        }
        nrows++;
    }
    if (rc < 0 && (!csv_reader_error(r) || !csv_reader_error(r)[0]))
        abort(); /* an error says what it is */
    if (rc >= 0 && !bad && nrows > 0) {
        msgpack_pack_array(&pk, nrows);
        msgpack_sbuffer_write(&sb, rows.data, rows.size);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        if (msgpack_unpack_next(&u, sb.data, sb.size, &off) != MSGPACK_UNPACK_SUCCESS)
            abort();
        struct import_result res;
        char err[512];
        int64_t before = fz_changes(st);
        int r2 = import_rows(st, kind, &u.data, &res, err, sizeof err);
        if (r2 != 0 && fz_changes(st) != before)
            abort(); /* refused, yet something was written */
        if (r2 != 0 && !err[0])
            abort(); /* refused without saying why */
        if (r2 == 0 && (res.rows != nrows || res.inserted + res.updated > res.rows))
            abort();
        msgpack_unpacked_destroy(&u);
    }
    for (size_t i = 0; header && i < ncols; i++)
        free(header[i]);
    free(header);
    msgpack_sbuffer_destroy(&rows);
    msgpack_sbuffer_destroy(&sb);
    csv_reader_free(r);
    fclose(f);
    return 0;
}
