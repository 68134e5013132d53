/*
 * sqlite_upsert: the SQLite anchor of the initial-sync figure. Upserts the rows of warehouse
 * stock dumps (tally-sim's GET /control/stock?wh=CODE&format=csv: a header, then
 * `sku,on_hand,inbound,version`) into a fresh database, with one prepared statement, in
 * transactions of 10,000 rows, under the pragmas tallyd's store uses (WAL, synchronous=FULL,
 * an 8 MiB page cache, temp store in memory). Reading the files is not timed: the figure is what
 * SQLite itself takes to store the same rows.
 *
 *   sqlite_upsert DB WAREHOUSE=FILE.csv...
 *
 * Prints `sqlite_upsert_rows N`, `sqlite_upsert_seconds S`, `sqlite_upsert_rows_per_s R` and
 * `sqlite_upsert_cpu_s C` (the CPU time of the timed span).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#define TXN_ROWS 10000

struct row {
    char sku[72];
    int wh;
    long long on_hand, inbound, version;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(sqlite3 *db, int rc, const char *what)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite_upsert: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sqlite_upsert DB WAREHOUSE=FILE.csv...\n");
        return 2;
    }
    size_t n = 0, cap = 1 << 16;
    struct row *rows = malloc(cap * sizeof *rows);
    const char *codes[64];
    int ncodes = 0;
    char line[256];
    for (int a = 2; a < argc; a++) {
        char *eq = strchr(argv[a], '=');
        if (!eq || eq == argv[a] || ncodes == 64) {
            fprintf(stderr, "sqlite_upsert: want WAREHOUSE=FILE (at most 64): %s\n", argv[a]);
            return 2;
        }
        *eq = 0;
        codes[ncodes] = argv[a];
        FILE *f = fopen(eq + 1, "r");
        if (!f) {
            perror(eq + 1);
            return 1;
        }
        int lineno = 0;
        while (fgets(line, sizeof line, f)) {
            if (lineno++ == 0)
                continue; /* header */
            if (n == cap) {
                cap *= 2;
                rows = realloc(rows, cap * sizeof *rows);
                if (!rows) {
                    fprintf(stderr, "sqlite_upsert: out of memory\n");
                    return 1;
                }
            }
            struct row *r = &rows[n];
            char *c1 = strchr(line, ',');
            if (!c1 || (size_t)(c1 - line) >= sizeof r->sku ||
                sscanf(c1 + 1, "%lld,%lld,%lld", &r->on_hand, &r->inbound, &r->version) != 3) {
                fprintf(stderr, "sqlite_upsert: %s:%d: not sku,on_hand,inbound,version\n", eq + 1,
                        lineno);
                return 1;
            }
            memcpy(r->sku, line, (size_t)(c1 - line));
            r->sku[c1 - line] = 0;
            r->wh = ncodes;
            n++;
        }
        fclose(f);
        ncodes++;
    }

    sqlite3 *db;
    remove(argv[1]);
    if (sqlite3_open(argv[1], &db) != SQLITE_OK) {
        fprintf(stderr, "sqlite_upsert: cannot open %s\n", argv[1]);
        return 1;
    }
    check(db,
          sqlite3_exec(db,
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                       "PRAGMA cache_size=-8192; PRAGMA temp_store=MEMORY; "
                       "CREATE TABLE stock(sku TEXT NOT NULL, warehouse TEXT NOT NULL, "
                       "on_hand INTEGER NOT NULL, inbound INTEGER, version INTEGER NOT NULL, "
                       "PRIMARY KEY(sku, warehouse)) WITHOUT ROWID;",
                       NULL, NULL, NULL),
          "schema");
    sqlite3_stmt *up;
    check(db,
          sqlite3_prepare_v2(db,
                             "INSERT INTO stock(sku, warehouse, on_hand, inbound, version) "
                             "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(sku, warehouse) DO UPDATE "
                             "SET on_hand = excluded.on_hand, inbound = excluded.inbound, "
                             "version = excluded.version WHERE excluded.version > version",
                             -1, &up, NULL),
          "prepare");
    double t0 = now_s();
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    for (size_t i = 0; i < n; i++) {
        if (i % TXN_ROWS == 0)
            check(db, sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), "begin");
        sqlite3_bind_text(up, 1, rows[i].sku, -1, SQLITE_STATIC);
        sqlite3_bind_text(up, 2, codes[rows[i].wh], -1, SQLITE_STATIC);
        sqlite3_bind_int64(up, 3, rows[i].on_hand);
        sqlite3_bind_int64(up, 4, rows[i].inbound);
        sqlite3_bind_int64(up, 5, rows[i].version);
        check(db, sqlite3_step(up), "upsert");
        sqlite3_reset(up);
        if (i % TXN_ROWS == TXN_ROWS - 1 || i == n - 1)
            check(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), "commit");
    }
    double secs = now_s() - t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    sqlite3_finalize(up);
    sqlite3_close(db);
    free(rows);
    printf("sqlite_upsert_rows %zu\nsqlite_upsert_seconds %.3f\nsqlite_upsert_rows_per_s %.0f\n", n,
           secs, secs > 0 ? (double)n / secs : 0.0);
    /* The CPU time of the same span: on a loaded machine the wall clock measures the load. */
    printf("sqlite_upsert_cpu_s %.3f\n", cpu);
    return 0;
}
