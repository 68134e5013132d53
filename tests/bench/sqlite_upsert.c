/*
 * sqlite_upsert: the SQLite anchor of the initial-sync figure (tests/bench/bench_sync.sh).
 * Inserts what an initial sync of SKUS SKUs x 4 warehouses inserts, the same rows in the same
 * schema shape as the replica (a skus table with a unique code, and the stock table: WITHOUT
 * ROWID, keyed by (sku, warehouse), with its warehouse index), with prepared statements only:
 * per row the SKU's id by code (inserted the first time), then the stock upsert with the version
 * check tally's applies; 10,000 rows per transaction; WAL, synchronous FULL, like the replica.
 * Prints `sqlite_rows_per_s N` (and sqlite_seconds). Not a test: a figure.
 *
 *   sqlite_upsert SKUS [DB_PATH]     (DB_PATH defaults to a temporary file, removed after)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "sqlite_upsert: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
}

static void exec(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die(db, sql);
}

int main(int argc, char **argv)
{
    if (argc < 2 || atol(argv[1]) <= 0) {
        fprintf(stderr, "usage: sqlite_upsert SKUS [DB_PATH]\n");
        return 2;
    }
    long nskus = atol(argv[1]);
    char path[256];
    if (argc > 2)
        snprintf(path, sizeof path, "%s", argv[2]);
    else
        snprintf(path, sizeof path, "/tmp/sqlite_upsert.%ld.db", (long)getpid());
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(db, "open");
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
    exec(db, "CREATE TABLE IF NOT EXISTS warehouses(id INTEGER PRIMARY KEY, code TEXT UNIQUE);"
             "CREATE TABLE IF NOT EXISTS skus(id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE,"
             " title TEXT NOT NULL, price_minor INTEGER NOT NULL, currency TEXT NOT NULL,"
             " updated_at INTEGER NOT NULL);"
             "CREATE TABLE IF NOT EXISTS stock(sku INTEGER NOT NULL REFERENCES skus(id),"
             " warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
             " snapshot INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT 0,"
             " reserved INTEGER NOT NULL DEFAULT 0, safety INTEGER NOT NULL DEFAULT 0,"
             " threshold INTEGER NOT NULL DEFAULT 0, upstream_version INTEGER NOT NULL DEFAULT 0,"
             " as_of INTEGER, inbound INTEGER, PRIMARY KEY(sku, warehouse)) WITHOUT ROWID;"
             "CREATE INDEX IF NOT EXISTS stock_by_warehouse ON stock(warehouse, sku);"
             "INSERT OR IGNORE INTO warehouses(id, code) VALUES(1,'ES-MAD'),(2,'FR-PAR'),"
             "(3,'PL-WAW'),(4,'US-LAX');");
    sqlite3_stmt *find, *add, *up;
    if (sqlite3_prepare_v2(db, "SELECT id FROM skus WHERE code = ?1", -1, &find, NULL) ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO skus(code, title, price_minor, currency, updated_at)"
                           " VALUES(?1, ?1, 0, 'XXX', ?2) RETURNING id",
                           -1, &add, NULL) ||
        sqlite3_prepare_v2(
            db,
            "INSERT INTO stock(sku, warehouse, snapshot, upstream_version, as_of, inbound)"
            " VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(sku, warehouse) DO UPDATE SET"
            " snapshot = excluded.snapshot, upstream_version = excluded.upstream_version,"
            " as_of = excluded.as_of, inbound = COALESCE(excluded.inbound, stock.inbound)"
            " WHERE excluded.upstream_version >= stock.upstream_version",
            -1, &up, NULL))
        die(db, "prepare");
    long rows = 0;
    double t0 = now_s();
    exec(db, "BEGIN IMMEDIATE");
    for (int wh = 1; wh <= 4; wh++) {
        for (long i = 1; i <= nskus; i++) {
            char code[32];
            int n = snprintf(code, sizeof code, "EB-%06ld-BLK", i);
            int64_t id = 0;
            sqlite3_bind_text(find, 1, code, n, SQLITE_STATIC);
            if (sqlite3_step(find) == SQLITE_ROW)
                id = sqlite3_column_int64(find, 0);
            sqlite3_reset(find);
            if (!id) {
                sqlite3_bind_text(add, 1, code, n, SQLITE_STATIC);
                sqlite3_bind_int64(add, 2, 1764900000);
                if (sqlite3_step(add) != SQLITE_ROW)
                    die(db, "sku insert");
                id = sqlite3_column_int64(add, 0);
                sqlite3_reset(add);
            }
            sqlite3_bind_int64(up, 1, id);
            sqlite3_bind_int64(up, 2, wh);
            sqlite3_bind_int64(up, 3, (int64_t)(i * 7 % 100));
            sqlite3_bind_int64(up, 4, 890000 + i);
            sqlite3_bind_int64(up, 5, 1764900000);
            sqlite3_bind_int64(up, 6, 0);
            if (sqlite3_step(up) != SQLITE_DONE)
                die(db, "upsert");
            sqlite3_reset(up);
            if (++rows % 10000 == 0) {
                exec(db, "COMMIT");
                exec(db, "BEGIN IMMEDIATE");
            }
        }
    }
    exec(db, "COMMIT");
    double secs = now_s() - t0;
    sqlite3_finalize(find);
    sqlite3_finalize(add);
    sqlite3_finalize(up);
    sqlite3_close(db);
    if (argc <= 2) {
        char p2[300];
        unlink(path);
        snprintf(p2, sizeof p2, "%s-wal", path);
        unlink(p2);
        snprintf(p2, sizeof p2, "%s-shm", path);
        unlink(p2);
    }
    printf("sqlite_rows_per_s %.0f\n", (double)rows / secs);
    printf("sqlite_seconds %.3f\n", secs);
    /* CPU time too (user + system): on a shared machine, rows per CPU second is the steadier
     * figure (bench_sync.sh prints tallyd's). */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("sqlite_cpu_seconds %.2f\n", cpu);
    printf("sqlite_rows_per_cpu_s %.0f\n", cpu > 0 ? (double)rows / cpu : 0);
    return 0;
}
