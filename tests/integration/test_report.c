/*
 * Integration: `report` and `promo.check` against an independent computation.
 *   test_report TALLYD
 *
 * A seeded random data set (warehouses, products, SKUs with prices, stock, orders with lines,
 * shipments, allocations, exceptions) is generated into C arrays, written straight into the
 * replica of a tallyd that created and migrated it and was then stopped, and tallyd is
 * started again. Every figure the two methods answer is compared with one computed here from
 * the arrays, by loops, not by SQL. A last run with `[stock] stale_policy = zero` checks that a
 * stale warehouse then adds nothing to the marketplace-available stock.
 *
 * The orders are written in terminal fulfilment states and not dirty, and the exceptions name
 * no order, so tallyd's own passes (fulfilment, deadlines, auto-resolution) leave them alone.
 * TALLY_TEST_SEED overrides the seed.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "codec.h"
#include "tally/client.h"

enum {
    NWH = 3,
    NPROD = 12,
    NSKU = 40,
    NORD = 400,
    MAXLINES = 3,
    MAXSHIP = 2 * NORD + 1,
    NEXC = 60,
    NKIND = 5,
    DAY = 86400,
};

static const int64_t T0 = 1709251200; /* 2024-03-01 00:00:00 UTC */

/* ---- the data set ---- */

struct wh {
    const char *code;
    int serves, stale;
};
/* PL-WAW is marked stale: it counts under stale_policy keep (the default), not under zero. */
static const struct wh whs[NWH] = {{"ES-MAD", 1, 0}, {"PL-WAW", 1, 1}, {"US-LAX", 0, 0}};

static const char *const kinds[NKIND] = {"bad_address", "out_of_stock", "payment_held",
                                         "stock_drift", "warehouse"};

struct sku {
    char code[16];
    int product;
    int64_t price;
};

struct stock {
    bool has;
    int64_t snapshot, pending, reserved, safety;
};

struct line {
    int sku;
    int64_t qty, price;
};

struct order {
    char id[16];
    int64_t created, ship_by; /* ship_by -1: none */
    const char *currency, *fstate;
    int nlines;
    struct line lines[MAXLINES];
    int64_t total;
};

struct shipment {
    int order;
    int wh;
    int64_t created;
};

struct alloc {
    int order, sku, wh;
    int64_t qty;
    const char *state;
    int64_t shipped_at; /* -1: none */
};

struct exc {
    int kind;
    int64_t raised, resolved; /* resolved -1: not resolved */
};

static struct sku skus[NSKU];
static struct stock stock[NSKU][NWH];
static struct order orders[NORD];
static struct shipment ships[MAXSHIP];
static int nships;
static struct alloc allocs[NORD * MAXLINES];
static int nallocs;
static struct exc excs[NEXC];

/* A placeholder SKU a warehouse reported that the catalog does not have (product ~unlisted). */
static const char ghost_code[] = "GHOST-1";
static const int64_t ghost_on_hand = 30;

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic for a seed, good enough to spread test data */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static int64_t rnd_in(int64_t lo, int64_t hi) /* inclusive */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static void generate(uint64_t seed)
{
    rng_state = seed ? seed : 1;
    for (int s = 0; s < NSKU; s++) {
        snprintf(skus[s].code, sizeof skus[s].code, "S-%03d", s);
        skus[s].product = s < NPROD ? s : (int)rnd_in(0, NPROD - 1);
        skus[s].price = 100 * rnd_in(1, 6); /* few distinct prices: ties by code happen */
    }
    static const char *const done[] = {"shipped", "uploaded", "finished"};
    for (int o = 0; o < NORD; o++) {
        struct order *od = &orders[o];
        snprintf(od->id, sizeof od->id, "AE-%05d", o);
        od->created = T0 + rnd_in(0, 10 * DAY - 1);
        od->currency = rnd() % 2 ? "USD" : "EUR";
        od->fstate = rnd_in(0, 99) < 15 ? "cancelled" : done[rnd() % 3];
        od->ship_by = rnd() % 5 ? od->created + 2 * DAY : -1;
        od->nlines = (int)rnd_in(1, MAXLINES);
        od->total = 0;
        for (int l = 0; l < od->nlines; l++) {
            int s;
            bool dup;
            do {
                s = (int)rnd_in(0, NSKU - 1);
                dup = false;
                for (int k = 0; k < l; k++)
                    dup |= od->lines[k].sku == s;
            } while (dup);
            od->lines[l] = (struct line){s, rnd_in(1, 5), skus[s].price};
            od->total += od->lines[l].qty * od->lines[l].price;
        }
        od->total += rnd_in(0, 99); /* shipping: totals are not all multiples of 100 */
    }
    /* Boundaries: a period's start is in it, its end is not. */
    orders[0].created = T0 + 3 * DAY;
    orders[1].created = T0 + 4 * DAY;
    orders[2].created = T0 - 1;
    orders[3].created = T0 + 10 * DAY;
    orders[4].fstate = "shipped";
    orders[4].ship_by = orders[4].created + 2 * DAY;
    /* Day 20 holds only orders 5-7: EUR 1001 + 1000 (aov 1000.5 rounds up to 1001, where
     * truncation or rounding half to even would give 1000) and a cancelled USD order (so USD
     * gets no sales row). */
    static const int64_t day20_total[3] = {1001, 1000, 700};
    for (int i = 5; i < 8; i++) {
        orders[i].created = T0 + 20 * DAY + 3600 * i;
        orders[i].currency = i < 7 ? "EUR" : "USD";
        orders[i].fstate = i < 7 ? "finished" : "cancelled";
        orders[i].total = day20_total[i - 5];
    }
    for (int i = 0; i < 8; i++)
        if (orders[i].ship_by >= 0)
            orders[i].ship_by = orders[i].created + 2 * DAY;

    nships = 0;
    for (int o = 0; o < NORD; o++) {
        int k = (int)rnd_in(0, 2);
        for (int j = 0; j < k; j++)
            ships[nships++] = (struct shipment){o, (int)rnd_in(0, NWH - 1),
                                                orders[o].created + rnd_in(0, 4 * DAY)};
    }
    /* A shipment made exactly at its ship-by is on time. */
    ships[nships++] = (struct shipment){4, 0, orders[4].ship_by};

    nallocs = 0;
    for (int o = 0; o < NORD; o++)
        for (int l = 0; l < orders[o].nlines; l++) {
            if (rnd_in(0, 99) < 15)
                continue;
            struct alloc *a = &allocs[nallocs++];
            a->order = o;
            a->sku = orders[o].lines[l].sku;
            a->wh = (int)rnd_in(0, NWH - 1);
            a->qty = orders[o].lines[l].qty;
            int r = (int)rnd_in(0, 9);
            a->state = r < 2 ? "reserved" : r < 4 ? "consumed" : "shipped";
            a->shipped_at = orders[o].created + rnd_in(0, 3 * DAY);
            /* Reserved rows have no shipped_at, except a few that must still not count. */
            if (r < 2 && rnd() % 3)
                a->shipped_at = -1;
        }

    for (int s = 0; s < NSKU; s++)
        for (int w = 0; w < NWH; w++) {
            struct stock *st = &stock[s][w];
            st->has = rnd_in(0, 99) < 85;
            st->snapshot = rnd_in(0, 60);
            st->pending = rnd_in(-5, 5);
            st->safety = rnd_in(0, 4);
            st->reserved = 0;
        }
    /* reserved is derived (reserve.h): units of allocations reserved or consumed. */
    for (int i = 0; i < nallocs; i++)
        if (strcmp(allocs[i].state, "shipped") != 0) {
            stock[allocs[i].sku][allocs[i].wh].has = true;
            stock[allocs[i].sku][allocs[i].wh].reserved += allocs[i].qty;
        }

    for (int e = 0; e < NEXC; e++) {
        excs[e].kind = (int)rnd_in(0, NKIND - 1);
        excs[e].raised = T0 - DAY + rnd_in(0, 11 * DAY);
        excs[e].resolved = rnd_in(0, 9) < 6 ? excs[e].raised + rnd_in(0, 3 * DAY) : -1;
    }
    excs[0].raised = T0 + 3 * DAY;
    excs[1].raised = T0 + 2 * DAY;
    excs[1].resolved = T0 + 4 * DAY;
}

/* ---- the daemon ---- */

static char dir[64], sock[128], dbpath[128], logpath[128], confpath[128];
static const char *tallyd_path;
static volatile pid_t daemon_pid;

static void kill_daemon_now(void)
{
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGKILL);
        waitpid(daemon_pid, NULL, 0);
        daemon_pid = 0;
    }
}

/* SIGTERM, then up to 10 s for the exit; SIGKILL after that. 0 when it exited cleanly. */
static int stop_daemon(void)
{
    if (daemon_pid <= 0)
        return -1;
    kill(daemon_pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        int status;
        pid_t r = waitpid(daemon_pid, &status, WNOHANG);
        if (r == daemon_pid) {
            daemon_pid = 0;
            return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
        }
        usleep(10000);
    }
    kill_daemon_now();
    return -1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void cleanup(void)
{
    kill_daemon_now();
    if (dir[0]) {
        if (nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS) != 0)
            fprintf(stderr, "test_report: could not remove %s: %s\n", dir, strerror(errno));
        dir[0] = 0;
    }
}

/* Async-signal-safe: kill the daemon, remove the files its dir can hold, leave. */
static void on_fatal_signal(int sig)
{
    static const char msg[] = "test_report: interrupted or out of time, cleaning up\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    if (daemon_pid > 0)
        kill(daemon_pid, SIGKILL);
    if (dir[0]) {
        const char *const files[] = {dbpath, sock, logpath, confpath};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
            unlink(files[i]);
        static const char *const sides[] = {"-wal", "-shm", "-journal"};
        for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
            char p[sizeof dbpath + 16];
            size_t n = strlen(dbpath), m = strlen(sides[i]);
            memcpy(p, dbpath, n);
            memcpy(p + n, sides[i], m + 1);
            unlink(p);
        }
        { /* and the lock tallyd holds in its state directory */
            char p[sizeof dir + 16];
            size_t n = strlen(dir);
            memcpy(p, dir, n);
            memcpy(p + n, "/tallyd.lock", sizeof "/tallyd.lock");
            unlink(p);
        }
        rmdir(dir);
    }
    _exit(3);
}

static void dump_log(void)
{
    FILE *f = fopen(logpath, "r");
    char line[512];
    if (!f)
        return;
    fprintf(stderr, "--- tallyd log ---\n");
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

static int start_daemon(bool with_config)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (with_config)
            execl(tallyd_path, tallyd_path, "--state-dir", dir, "--socket", sock, "--station", "t",
                  "--log-level", "warning", "--config", confpath, (char *)NULL);
        else
            execl(tallyd_path, tallyd_path, "--state-dir", dir, "--socket", sock, "--station", "t",
                  "--log-level", "warning", (char *)NULL);
        _exit(127);
    }
    daemon_pid = pid;
    /* Ready once a request is answered: the socket accepts connections (listen backlog) a
     * moment before the loop runs, and tallyd's SIGTERM handler is installed only then. */
    for (int i = 0; i < 400; i++) {
        struct tally_client *c;
        if (tally_connect(sock, &c, NULL, 0) == 0) {
            struct tally_reply *rep = NULL;
            tally_client_set_timeout(c, 10000);
            bool up = tally_call(c, "hello", NULL, 0, &rep) == 0 && rep->err == 0;
            tally_reply_free(rep);
            tally_client_free(c);
            if (up)
                return 0;
            break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            daemon_pid = 0;
            break;
        }
        usleep(25000);
    }
    fprintf(stderr, "tallyd did not start\n");
    dump_log();
    kill_daemon_now();
    return -1;
}

/* ---- writing the replica ---- */

static sqlite3 *db;
static int sql_failures;

static sqlite3_stmt *prep(const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "prepare: %s: %s\n", sqlite3_errmsg(db), sql);
        sql_failures++;
    }
    return s;
}

static void run(sqlite3_stmt *s)
{
    if (!s)
        return;
    if (sqlite3_step(s) != SQLITE_DONE) {
        fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db));
        sql_failures++;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static void bind_opt(sqlite3_stmt *s, int i, int64_t v)
{
    if (v < 0)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_int64(s, i, v);
}

static void write_catalog(void)
{
    sqlite3_stmt *s = prep("INSERT INTO warehouses(id, code, name, country, serves_marketplace,"
                           " created_at, stale) VALUES(?1, ?2, ?2, 'ES', ?3, ?4, ?5)");
    for (int w = 0; s && w < NWH; w++) {
        sqlite3_bind_int(s, 1, w + 1);
        sqlite3_bind_text(s, 2, whs[w].code, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, whs[w].serves);
        sqlite3_bind_int64(s, 4, T0);
        sqlite3_bind_int(s, 5, whs[w].stale);
        run(s);
    }
    sqlite3_finalize(s);
    s = prep("INSERT INTO products(id, product_id, title, status, updated_at)"
             " VALUES(?1, ?2, ?2, 'onSelling', ?3)");
    for (int p = 0; s && p <= NPROD; p++) {
        char pid[16];
        snprintf(pid, sizeof pid, "P-%02d", p);
        sqlite3_bind_int(s, 1, p + 1);
        sqlite3_bind_text(s, 2, p < NPROD ? pid : "~unlisted", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 3, T0);
        run(s);
    }
    sqlite3_finalize(s);
    s = prep("INSERT INTO skus(id, code, product, title, price_minor, currency, updated_at)"
             " VALUES(?1, ?2, ?3, ?2, ?4, 'EUR', ?5)");
    for (int k = 0; s && k <= NSKU; k++) {
        sqlite3_bind_int(s, 1, k + 1);
        sqlite3_bind_text(s, 2, k < NSKU ? skus[k].code : ghost_code, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, k < NSKU ? skus[k].product + 1 : NPROD + 1);
        sqlite3_bind_int64(s, 4, k < NSKU ? skus[k].price : 0);
        sqlite3_bind_int64(s, 5, T0);
        run(s);
    }
    sqlite3_finalize(s);
    s = prep("INSERT INTO stock(sku, warehouse, snapshot, pending, reserved, safety)"
             " VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
    for (int k = 0; s && k < NSKU; k++)
        for (int w = 0; w < NWH; w++) {
            const struct stock *st = &stock[k][w];
            if (!st->has)
                continue;
            sqlite3_bind_int(s, 1, k + 1);
            sqlite3_bind_int(s, 2, w + 1);
            sqlite3_bind_int64(s, 3, st->snapshot);
            sqlite3_bind_int64(s, 4, st->pending);
            sqlite3_bind_int64(s, 5, st->reserved);
            sqlite3_bind_int64(s, 6, st->safety);
            run(s);
        }
    if (s) {
        sqlite3_bind_int(s, 1, NSKU + 1);
        sqlite3_bind_int(s, 2, 1);
        sqlite3_bind_int64(s, 3, ghost_on_hand);
        for (int i = 4; i <= 6; i++)
            sqlite3_bind_int(s, i, 0);
        run(s);
    }
    sqlite3_finalize(s);
}

static void write_orders(void)
{
    sqlite3_stmt *s =
        prep("INSERT INTO orders(id, order_id, status, created_at, updated_at, ship_by, country,"
             " currency, total_minor, fstate, fdirty) VALUES(?1, ?2, ?3, ?4, ?4, ?5, 'ES', ?6, ?7,"
             " ?8, 0)");
    sqlite3_stmt *l = prep("INSERT INTO order_lines(order_ref, sku, qty, price_minor)"
                           " VALUES(?1, ?2, ?3, ?4)");
    for (int o = 0; s && l && o < NORD; o++) {
        const struct order *od = &orders[o];
        bool gone = !strcmp(od->fstate, "cancelled");
        sqlite3_bind_int(s, 1, o + 1);
        sqlite3_bind_text(s, 2, od->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, gone ? "IN_CANCEL" : "FINISH", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, od->created);
        bind_opt(s, 5, od->ship_by);
        sqlite3_bind_text(s, 6, od->currency, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 7, od->total);
        sqlite3_bind_text(s, 8, od->fstate, -1, SQLITE_STATIC);
        run(s);
        for (int k = 0; k < od->nlines; k++) {
            sqlite3_bind_int(l, 1, o + 1);
            sqlite3_bind_int(l, 2, od->lines[k].sku + 1);
            sqlite3_bind_int64(l, 3, od->lines[k].qty);
            sqlite3_bind_int64(l, 4, od->lines[k].price);
            run(l);
        }
    }
    sqlite3_finalize(s);
    sqlite3_finalize(l);
    s = prep("INSERT INTO shipments(id, order_ref, warehouse, created_at) VALUES(?1, ?2, ?3, ?4)");
    for (int i = 0; s && i < nships; i++) {
        char id[32];
        snprintf(id, sizeof id, "SH-%04d", i);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(s, 2, ships[i].order + 1);
        sqlite3_bind_int(s, 3, ships[i].wh + 1);
        sqlite3_bind_int64(s, 4, ships[i].created);
        run(s);
    }
    sqlite3_finalize(s);
    s = prep("INSERT INTO allocations(id, order_ref, sku, warehouse, qty, state, created_at,"
             " consumed_at, shipped_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    for (int i = 0; s && i < nallocs; i++) {
        const struct alloc *a = &allocs[i];
        sqlite3_bind_int(s, 1, i + 1);
        sqlite3_bind_int(s, 2, a->order + 1);
        sqlite3_bind_int(s, 3, a->sku + 1);
        sqlite3_bind_int(s, 4, a->wh + 1);
        sqlite3_bind_int64(s, 5, a->qty);
        sqlite3_bind_text(s, 6, a->state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 7, orders[a->order].created);
        bind_opt(s, 8, strcmp(a->state, "reserved") ? a->shipped_at : -1);
        bind_opt(s, 9, a->shipped_at);
        run(s);
    }
    sqlite3_finalize(s);
}

static void write_exceptions(void)
{
    sqlite3_stmt *s = prep("INSERT INTO exceptions(id, kind, message, raised_at, deadline, state,"
                           " resolved_by, resolved_at, dedupe) VALUES(?1, ?2, 'test', ?3, ?4, ?5,"
                           " ?6, ?7, ?8)");
    for (int e = 0; s && e < NEXC; e++) {
        char dedupe[32];
        snprintf(dedupe, sizeof dedupe, "test:%d", e);
        bool res = excs[e].resolved >= 0;
        sqlite3_bind_int(s, 1, e + 1);
        sqlite3_bind_text(s, 2, kinds[excs[e].kind], -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, excs[e].raised);
        sqlite3_bind_int64(s, 4, excs[e].raised + DAY);
        sqlite3_bind_text(s, 5,
                          res     ? "resolved"
                          : e % 2 ? "acknowledged"
                                  : "open",
                          -1, SQLITE_STATIC);
        if (res)
            sqlite3_bind_text(s, 6, "tester", -1, SQLITE_STATIC);
        bind_opt(s, 7, excs[e].resolved);
        sqlite3_bind_text(s, 8, dedupe, -1, SQLITE_TRANSIENT);
        run(s);
    }
    sqlite3_finalize(s);
}

static int write_replica(void)
{
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "open %s: %s\n", dbpath, db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    write_catalog();
    write_orders();
    write_exceptions();
    int rc = sqlite3_exec(db, sql_failures ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    db = NULL;
    return rc == SQLITE_OK && !sql_failures ? 0 : -1;
}

/* ---- calls and result reading ---- */

static struct tally_client *cli;

/* A call with its params packed by `pack` (may be NULL: {}); the reply, or NULL. */
static struct tally_reply *call(const char *method, const msgpack_sbuffer *sb)
{
    struct tally_reply *rep = NULL;
    int r = tally_call(cli, method, sb ? sb->data : NULL, sb ? sb->size : 0, &rep);
    if (r != 0) {
        fprintf(stderr, "%s: transport error %d: %s\n", method, r, tally_client_errmsg(cli));
        tally_reply_free(rep);
        return NULL;
    }
    return rep;
}

static int64_t obj_int(const msgpack_object *o)
{
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        return (int64_t)o->via.u64;
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return o->via.i64;
    return INT64_MIN; /* missing or not an integer: compares unequal to any expected figure */
}

static int64_t geti(const msgpack_object *m, const char *key)
{
    return obj_int(tally_obj_get(m, key));
}

static double getd(const msgpack_object *m, const char *key)
{
    const msgpack_object *o = tally_obj_get(m, key);
    if (o && (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32))
        return o->via.f64;
    return NAN;
}

/* The string at key, "(nil)" for nil, "(missing)" when absent or of another type. */
static const char *get_s(const msgpack_object *m, const char *key, char *buf, size_t cap)
{
    const msgpack_object *o = tally_obj_get(m, key);
    if (o && o->type == MSGPACK_OBJECT_NIL)
        return "(nil)";
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return "(missing)";
    snprintf(buf, cap, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    return buf;
}

static bool getb(const msgpack_object *m, const char *key, bool *v)
{
    const msgpack_object *o = tally_obj_get(m, key);
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *v = o->via.boolean;
    return true;
}

static const msgpack_object *geta(const msgpack_object *m, const char *key)
{
    const msgpack_object *o = tally_obj_get(m, key);
    return o && o->type == MSGPACK_OBJECT_ARRAY ? o : NULL;
}

#define CHECK_NEAR(a, b) CHECK(fabs((double)(a) - (double)(b)) <= 1e-9)

/* ---- report: the expected figures ---- */

struct exp_sales {
    int64_t orders, units, gmv;
};

struct exp_sku {
    int sku, wh;
    int64_t sold, on_hand;
};

static int cmp_exp_sku(const void *a, const void *b)
{
    const struct exp_sku *x = a, *y = b;
    if (x->sold != y->sold)
        return x->sold > y->sold ? -1 : 1;
    int c = strcmp(skus[x->sku].code, skus[y->sku].code);
    return c ? c : strcmp(whs[x->wh].code, whs[y->wh].code);
}

static bool in(int64_t t, int64_t from, int64_t to)
{
    return t >= 0 && t >= from && t < to;
}

/* Half up, computed differently from the daemon: (2 gmv + n) / 2n for gmv >= 0. */
static int64_t aov(int64_t gmv, int64_t n)
{
    return n ? (2 * gmv + n) / (2 * n) : 0;
}

static void check_sales(const msgpack_object *res, int64_t from, int64_t to, int64_t *created,
                        int64_t *cancelled)
{
    static const char *const cur[2] = {"EUR", "USD"}; /* in code order */
    struct exp_sales e[2] = {{0}};
    *created = *cancelled = 0;
    for (int o = 0; o < NORD; o++) {
        const struct order *od = &orders[o];
        if (!in(od->created, from, to))
            continue;
        (*created)++;
        if (!strcmp(od->fstate, "cancelled")) {
            (*cancelled)++;
            continue;
        }
        struct exp_sales *x = &e[strcmp(od->currency, "USD") == 0];
        x->orders++;
        x->gmv += od->total;
        for (int l = 0; l < od->nlines; l++)
            x->units += od->lines[l].qty;
    }
    const msgpack_object *sales = geta(res, "sales");
    CHECK(sales != NULL);
    if (!sales)
        return;
    uint32_t n = 0;
    for (int k = 0; k < 2; k++) {
        if (!e[k].orders)
            continue;
        CHECK(n < sales->via.array.size);
        if (n >= sales->via.array.size)
            return;
        const msgpack_object *row = &sales->via.array.ptr[n++];
        char buf[16];
        CHECK_EQ_STR(get_s(row, "currency", buf, sizeof buf), cur[k]);
        CHECK_EQ_INT(geti(row, "orders"), e[k].orders);
        CHECK_EQ_INT(geti(row, "units"), e[k].units);
        CHECK_EQ_INT(geti(row, "gmv_minor"), e[k].gmv);
        CHECK_EQ_INT(geti(row, "aov_minor"), aov(e[k].gmv, e[k].orders));
    }
    CHECK_EQ_INT(sales->via.array.size, n);
}

static void check_orders(const msgpack_object *res, int64_t from, int64_t to, int64_t created,
                         int64_t cancelled, int64_t *shipped_out)
{
    int64_t shipped = 0, on_time = 0;
    for (int i = 0; i < nships; i++) {
        if (!in(ships[i].created, from, to))
            continue;
        shipped++;
        int64_t by = orders[ships[i].order].ship_by;
        if (by < 0 || ships[i].created <= by)
            on_time++;
    }
    *shipped_out = shipped;
    const msgpack_object *om = tally_obj_get(res, "orders");
    CHECK(om && om->type == MSGPACK_OBJECT_MAP);
    CHECK_EQ_INT(geti(om, "created"), created);
    CHECK_EQ_INT(geti(om, "cancelled"), cancelled);
    CHECK_EQ_INT(geti(om, "shipped"), shipped);
    CHECK_EQ_INT(geti(om, "on_time"), on_time);
    const msgpack_object *rate = tally_obj_get(om, "on_time_rate");
    if (shipped == 0) {
        CHECK(rate && rate->type == MSGPACK_OBJECT_NIL);
    } else {
        CHECK_NEAR(getd(om, "on_time_rate"), (double)on_time / (double)shipped);
    }
}

/* Returns how many SKU x warehouse pairs sold anything in the period. */
static int check_skus(const msgpack_object *res, int64_t from, int64_t to, int64_t limit)
{
    static struct exp_sku rows[NSKU * NWH];
    int64_t sold[NSKU][NWH] = {{0}};
    for (int i = 0; i < nallocs; i++) {
        const struct alloc *a = &allocs[i];
        if (!strcmp(a->state, "reserved") || !in(a->shipped_at, from, to))
            continue;
        sold[a->sku][a->wh] += a->qty;
    }
    int n = 0;
    for (int s = 0; s < NSKU; s++)
        for (int w = 0; w < NWH; w++)
            if (sold[s][w] > 0)
                rows[n++] = (struct exp_sku){
                    s, w, sold[s][w],
                    stock[s][w].has ? stock[s][w].snapshot + stock[s][w].pending : 0};
    qsort(rows, (size_t)n, sizeof rows[0], cmp_exp_sku);
    int want = n < limit ? n : (int)limit;
    const msgpack_object *arr = geta(res, "skus");
    CHECK(arr != NULL);
    if (!arr)
        return n;
    CHECK_EQ_INT(arr->via.array.size, want);
    for (int i = 0; i < want && i < (int)arr->via.array.size; i++) {
        const msgpack_object *row = &arr->via.array.ptr[i];
        const struct exp_sku *x = &rows[i];
        char buf[32];
        CHECK_EQ_STR(get_s(row, "sku", buf, sizeof buf), skus[x->sku].code);
        CHECK_EQ_STR(get_s(row, "warehouse", buf, sizeof buf), whs[x->wh].code);
        CHECK_EQ_INT(geti(row, "sold"), x->sold);
        CHECK_EQ_INT(geti(row, "on_hand"), x->on_hand);
        double den = (double)(x->sold + x->on_hand);
        double avg = (double)x->on_hand + (double)x->sold / 2.0;
        CHECK_NEAR(getd(row, "sell_through"), den != 0 ? (double)x->sold / den : 0.0);
        CHECK_NEAR(getd(row, "turnover"), avg != 0 ? (double)x->sold / avg : 0.0);
    }
    return n;
}

static void check_exceptions(const msgpack_object *res, int64_t from, int64_t to,
                             int64_t *opened_out)
{
    int64_t op[NKIND] = {0}, cl[NKIND] = {0}, opened = 0, closed = 0;
    for (int e = 0; e < NEXC; e++) {
        if (in(excs[e].raised, from, to)) {
            op[excs[e].kind]++;
            opened++;
        }
        if (in(excs[e].resolved, from, to)) {
            cl[excs[e].kind]++;
            closed++;
        }
    }
    *opened_out = opened;
    const msgpack_object *em = tally_obj_get(res, "exceptions");
    CHECK(em && em->type == MSGPACK_OBJECT_MAP);
    CHECK_EQ_INT(geti(em, "opened"), opened);
    CHECK_EQ_INT(geti(em, "closed"), closed);
    const msgpack_object *bk = geta(em, "by_kind");
    CHECK(bk != NULL);
    if (!bk)
        return;
    uint32_t n = 0;
    for (int k = 0; k < NKIND; k++) { /* kinds[] is in name order */
        if (!op[k] && !cl[k])
            continue;
        CHECK(n < bk->via.array.size);
        if (n >= bk->via.array.size)
            return;
        const msgpack_object *row = &bk->via.array.ptr[n++];
        char buf[32];
        CHECK_EQ_STR(get_s(row, "kind", buf, sizeof buf), kinds[k]);
        CHECK_EQ_INT(geti(row, "opened"), op[k]);
        CHECK_EQ_INT(geti(row, "closed"), cl[k]);
    }
    CHECK_EQ_INT(bk->via.array.size, n);
}

struct period_stats {
    int64_t created, cancelled, shipped, opened;
    int sold_pairs;
};

/* One report call (skus_limit 0: left to the default, 50) checked figure by figure. */
static struct period_stats check_report(int64_t from, int64_t to, int64_t limit)
{
    struct period_stats ps = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, limit ? 3 : 2);
    mp_pack_kv_int(&pk, "from", from);
    mp_pack_kv_int(&pk, "to", to);
    if (limit)
        mp_pack_kv_int(&pk, "skus_limit", limit);
    struct tally_reply *rep = call("report", &sb);
    msgpack_sbuffer_destroy(&sb);
    CHECK(rep && rep->err == 0);
    if (!rep || rep->err) {
        if (rep)
            fprintf(stderr, "report: %s %s\n", rep->code, rep->message);
        tally_reply_free(rep);
        return ps;
    }
    const msgpack_object *res = &rep->result;
    CHECK_EQ_INT(geti(res, "from"), from);
    CHECK_EQ_INT(geti(res, "to"), to);
    check_sales(res, from, to, &ps.created, &ps.cancelled);
    check_orders(res, from, to, ps.created, ps.cancelled, &ps.shipped);
    ps.sold_pairs = check_skus(res, from, to, limit ? limit : 50);
    check_exceptions(res, from, to, &ps.opened);
    tally_reply_free(rep);
    return ps;
}

static void test_report_periods(void)
{
    /* The whole range: the data set must exercise every figure. */
    struct period_stats all = check_report(T0, T0 + 10 * DAY, 0);
    CHECK(all.created > 300);
    CHECK(all.cancelled > 20);
    CHECK(all.shipped > 200);
    CHECK(all.opened > 30);
    CHECK(all.sold_pairs > 50); /* more than the default limit: the cut is tested */
    check_report(T0, T0 + 10 * DAY, 1000);
    check_report(T0 - DAY, T0 + 14 * DAY, 7);
    /* A single day, with orders created exactly at its start and at its end. */
    struct period_stats day = check_report(T0 + 3 * DAY, T0 + 4 * DAY, 0);
    CHECK(day.created > 10 && day.created < all.created);
    check_report(T0 + 3 * DAY + 1, T0 + 4 * DAY + 1, 0);
    check_report(T0 + 2 * DAY + DAY / 2, T0 + 6 * DAY + 3600, 5);
    check_report(T0 + 5 * DAY, T0 + 5 * DAY + 3600, 0);
    /* Rounding half up, and a currency whose only order was cancelled. */
    struct period_stats d20 = check_report(T0 + 20 * DAY, T0 + 21 * DAY, 0);
    CHECK_EQ_INT(d20.created, 3);
    CHECK_EQ_INT(d20.cancelled, 1);
    CHECK_EQ_INT(aov(2001, 2), 1001);
    /* Nothing happened then: empty tables, zero counts, nil rate. */
    struct period_stats none = check_report(T0 + 100 * DAY, T0 + 101 * DAY, 0);
    CHECK_EQ_INT(none.created, 0);
    CHECK_EQ_INT(none.shipped, 0);
    CHECK_EQ_INT(none.sold_pairs, 0);
    /* Exactly 366 days is allowed. */
    check_report(T0 - 200 * DAY, T0 + 166 * DAY, 0);
}

/* ---- promo.check: the expected figures ---- */

static bool stale_zero;

static int64_t mp_available(int s)
{
    int64_t sum = 0;
    for (int w = 0; w < NWH; w++) {
        const struct stock *st = &stock[s][w];
        if (!st->has || !whs[w].serves || (stale_zero && whs[w].stale))
            continue;
        int64_t a = st->snapshot + st->pending - st->reserved - st->safety;
        sum += a > 0 ? a : 0;
    }
    return sum;
}

static int lowest_priced(int product)
{
    int best = -1;
    for (int s = 0; s < NSKU; s++) {
        if (skus[s].product != product)
            continue;
        if (best < 0 || skus[s].price < skus[best].price ||
            (skus[s].price == skus[best].price && strcmp(skus[s].code, skus[best].code) < 0))
            best = s;
    }
    return best;
}

static int64_t product_available(int product)
{
    int64_t sum = 0;
    for (int s = 0; s < NSKU; s++)
        if (skus[s].product == product)
            sum += mp_available(s);
    return sum;
}

static int sku_index(const char *code)
{
    for (int s = 0; s < NSKU; s++)
        if (!strcmp(skus[s].code, code))
            return s;
    return -1;
}

struct promo_item {
    const char *sku;
    int64_t min; /* -1: not given */
};

/* One promo.check call (dflt_min -1: not given, per NULL: not given) checked item by item.
 * Returns how many items the daemon found short, for the caller's sanity checks. */
static int64_t check_promo(const struct promo_item *items, int n, int64_t dflt_min, const char *per)
{
    bool by_product = per && !strcmp(per, "product");
    int64_t dmin = dflt_min >= 0 ? dflt_min : 1;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1 + (dflt_min >= 0) + (per != NULL));
    mp_pack_key(&pk, "items");
    msgpack_pack_array(&pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        msgpack_pack_map(&pk, items[i].min >= 0 ? 2 : 1);
        mp_pack_kv_str(&pk, "sku", items[i].sku);
        if (items[i].min >= 0)
            mp_pack_kv_int(&pk, "min", items[i].min);
    }
    if (dflt_min >= 0)
        mp_pack_kv_int(&pk, "min", dflt_min);
    if (per)
        mp_pack_kv_str(&pk, "per", per);
    struct tally_reply *rep = call("promo.check", &sb);
    msgpack_sbuffer_destroy(&sb);
    CHECK(rep && rep->err == 0);
    if (!rep || rep->err) {
        if (rep)
            fprintf(stderr, "promo.check: %s %s\n", rep->code, rep->message);
        tally_reply_free(rep);
        return -1;
    }
    const msgpack_object *arr = geta(&rep->result, "items");
    CHECK(arr && arr->via.array.size == (uint32_t)n);
    int64_t n_ok = 0, n_short = 0, n_unknown = 0;
    for (int i = 0; arr && i < n && i < (int)arr->via.array.size; i++) {
        const msgpack_object *row = &arr->via.array.ptr[i];
        int s = sku_index(items[i].sku);
        int64_t min = items[i].min >= 0 ? items[i].min : dmin;
        char buf[160];
        bool ok = true;
        CHECK_EQ_STR(get_s(row, "sku", buf, sizeof buf), items[i].sku);
        CHECK_EQ_INT(geti(row, "min"), min);
        CHECK(getb(row, "ok", &ok));
        if (s < 0) {
            n_unknown++;
            CHECK(!ok);
            CHECK_EQ_STR(get_s(row, "reason", buf, sizeof buf), "unknown SKU");
            CHECK_EQ_STR(get_s(row, "product_id", buf, sizeof buf), "(nil)");
            CHECK_EQ_STR(get_s(row, "checked", buf, sizeof buf), "(nil)");
            CHECK_EQ_INT(geti(row, "available"), 0);
            continue;
        }
        int product = skus[s].product;
        char pid[16];
        snprintf(pid, sizeof pid, "P-%02d", product);
        int64_t avail =
            by_product ? product_available(product) : mp_available(lowest_priced(product));
        bool want_ok = avail >= min;
        CHECK_EQ_STR(get_s(row, "product_id", buf, sizeof buf), pid);
        CHECK_EQ_STR(get_s(row, "checked", buf, sizeof buf),
                     by_product ? "total" : skus[lowest_priced(product)].code);
        CHECK_EQ_INT(geti(row, "available"), avail);
        CHECK_EQ_INT(ok, want_ok);
        const char *reason = get_s(row, "reason", buf, sizeof buf);
        if (want_ok) {
            n_ok++;
            CHECK_EQ_STR(reason, "(nil)");
        } else {
            n_short++;
            CHECK(strcmp(reason, "(nil)") != 0 && strcmp(reason, "(missing)") != 0);
        }
    }
    CHECK_EQ_INT(geti(&rep->result, "ok"), n_ok);
    CHECK_EQ_INT(geti(&rep->result, "short"), n_short);
    CHECK_EQ_INT(geti(&rep->result, "unknown"), n_unknown);
    tally_reply_free(rep);
    return n_short;
}

static void test_promo(void)
{
    static struct promo_item items[NSKU + 2];
    int n = 0;
    for (int s = NSKU - 1; s >= 0; s--) /* not in code order: the answer keeps the order given */
        items[n++] = (struct promo_item){skus[s].code, s % 4 == 0 ? s % 25 : -1};
    items[n++] = (struct promo_item){"NOPE-1", -1};
    items[n++] = (struct promo_item){ghost_code, 5};
    int64_t short_sku = check_promo(items, n, 40, "sku");
    int64_t short_prod = check_promo(items, n, 40, "product");
    CHECK(short_sku > 0 && short_sku < NSKU);          /* some pass, some do not */
    CHECK(short_prod >= 0 && short_prod <= short_sku); /* a total is at least its cheapest SKU */
    check_promo(items, n, 0, "product");
    check_promo(items, n, 200, NULL);
    /* Defaults: min 1, per sku. */
    check_promo(items, 5, -1, NULL);
    check_promo(items + NSKU - 3, 5, -1, "sku");
}

/* ---- invalid requests ---- */

enum { P_END, P_INT, P_STR, P_BOOL, P_NIL, P_ARR_INT, P_EMPTY_ARR };

struct field {
    int type;
    const char *key;
    int64_t i;
    const char *s;
};

/* Sends a request whose params are the fields given; expects invalid_params. */
static void expect_invalid(const char *method, const struct field *f, const char *what)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t n = 0;
    while (f[n].type != P_END)
        n++;
    msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < n; i++) {
        mp_pack_key(&pk, f[i].key);
        switch (f[i].type) {
        case P_INT:
            msgpack_pack_int64(&pk, f[i].i);
            break;
        case P_STR:
            mp_pack_strz(&pk, f[i].s);
            break;
        case P_BOOL:
            msgpack_pack_true(&pk);
            break;
        case P_NIL:
            msgpack_pack_nil(&pk);
            break;
        case P_ARR_INT:
            msgpack_pack_array(&pk, 1);
            msgpack_pack_int64(&pk, f[i].i);
            break;
        default:
            msgpack_pack_array(&pk, 0);
            break;
        }
    }
    struct tally_reply *rep = call(method, &sb);
    msgpack_sbuffer_destroy(&sb);
    CHECK(rep != NULL);
    if (rep) {
        if (rep->err != TALLY_E_INVALID_PARAMS)
            fprintf(stderr, "%s (%s): got '%s' %s\n", method, what, rep->code, rep->message);
        CHECK_EQ_INT(rep->err, TALLY_E_INVALID_PARAMS);
        CHECK_EQ_STR(rep->code, "invalid_params");
        CHECK(rep->message[0] != 0);
    }
    tally_reply_free(rep);
}

/* promo.check with the items array packed raw by `kind`. */
static void expect_invalid_items(int kind, const char *what)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_key(&pk, "items");
    switch (kind) {
    case 0: /* an element that is not a map */
        msgpack_pack_array(&pk, 2);
        msgpack_pack_map(&pk, 1);
        mp_pack_kv_str(&pk, "sku", "S-000");
        msgpack_pack_int(&pk, 7);
        break;
    case 1: /* a SKU that is not a string */
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 1);
        mp_pack_kv_int(&pk, "sku", 5);
        break;
    case 2: /* no SKU */
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 0);
        break;
    case 3: /* a negative minimum */
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 2);
        mp_pack_kv_str(&pk, "sku", "S-000");
        mp_pack_kv_int(&pk, "min", -3);
        break;
    case 4: /* a SKU code with a space */
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 1);
        mp_pack_kv_str(&pk, "sku", "S 000");
        break;
    default: /* 1001 items */
        msgpack_pack_array(&pk, 1001);
        for (int i = 0; i < 1001; i++) {
            msgpack_pack_map(&pk, 1);
            mp_pack_kv_str(&pk, "sku", "S-000");
        }
        break;
    }
    struct tally_reply *rep = call("promo.check", &sb);
    msgpack_sbuffer_destroy(&sb);
    CHECK(rep != NULL);
    if (rep) {
        if (rep->err != TALLY_E_INVALID_PARAMS)
            fprintf(stderr, "promo.check (%s): got '%s' %s\n", what, rep->code, rep->message);
        CHECK_EQ_INT(rep->err, TALLY_E_INVALID_PARAMS);
    }
    tally_reply_free(rep);
}

static void test_errors(void)
{
    const int64_t t = T0;
    const struct field to_eq_from[] = {
        {P_INT, "from", t, 0}, {P_INT, "to", t, 0}, {P_END, 0, 0, 0}};
    const struct field to_before[] = {
        {P_INT, "from", t, 0}, {P_INT, "to", t - 1, 0}, {P_END, 0, 0, 0}};
    const struct field too_long[] = {
        {P_INT, "from", t, 0}, {P_INT, "to", t + 366 * DAY + 1, 0}, {P_END, 0, 0, 0}};
    const struct field from_str[] = {
        {P_STR, "from", 0, "yesterday"}, {P_INT, "to", t, 0}, {P_END, 0, 0, 0}};
    const struct field from_bool[] = {
        {P_BOOL, "from", 0, 0}, {P_INT, "to", t, 0}, {P_END, 0, 0, 0}};
    const struct field to_arr[] = {
        {P_INT, "from", t, 0}, {P_ARR_INT, "to", t, 0}, {P_END, 0, 0, 0}};
    const struct field no_to[] = {{P_INT, "from", t, 0}, {P_END, 0, 0, 0}};
    const struct field neg_from[] = {
        {P_INT, "from", -5, 0}, {P_INT, "to", 10, 0}, {P_END, 0, 0, 0}};
    const struct field lim0[] = {{P_INT, "from", t, 0},
                                 {P_INT, "to", t + DAY, 0},
                                 {P_INT, "skus_limit", 0, 0},
                                 {P_END, 0, 0, 0}};
    const struct field lim1001[] = {{P_INT, "from", t, 0},
                                    {P_INT, "to", t + DAY, 0},
                                    {P_INT, "skus_limit", 1001, 0},
                                    {P_END, 0, 0, 0}};
    const struct field lim_str[] = {{P_INT, "from", t, 0},
                                    {P_INT, "to", t + DAY, 0},
                                    {P_STR, "skus_limit", 0, "ten"},
                                    {P_END, 0, 0, 0}};
    const struct field none[] = {{P_END, 0, 0, 0}};
    expect_invalid("report", to_eq_from, "to == from");
    expect_invalid("report", to_before, "to < from");
    expect_invalid("report", too_long, "366 days + 1 s");
    expect_invalid("report", from_str, "from a word");
    expect_invalid("report", from_bool, "from a bool");
    expect_invalid("report", to_arr, "to an array");
    expect_invalid("report", no_to, "no to");
    expect_invalid("report", neg_from, "negative from");
    expect_invalid("report", lim0, "skus_limit 0");
    expect_invalid("report", lim1001, "skus_limit 1001");
    expect_invalid("report", lim_str, "skus_limit a word");
    expect_invalid("report", none, "no params");

    const struct field no_items[] = {{P_INT, "min", 1, 0}, {P_END, 0, 0, 0}};
    const struct field empty_items[] = {{P_EMPTY_ARR, "items", 0, 0}, {P_END, 0, 0, 0}};
    const struct field str_items[] = {{P_STR, "items", 0, "S-000"}, {P_END, 0, 0, 0}};
    const struct field int_items[] = {{P_ARR_INT, "items", 3, 0}, {P_END, 0, 0, 0}};
    expect_invalid("promo.check", no_items, "no items");
    expect_invalid("promo.check", empty_items, "empty items");
    expect_invalid("promo.check", str_items, "items a string");
    expect_invalid("promo.check", int_items, "items of integers");
    expect_invalid("promo.check", none, "no params");
    for (int k = 0; k <= 5; k++)
        expect_invalid_items(k, "bad item");

    /* Top-level min and per. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    static const char *const bad_per[] = {"bogus", "SKU", ""};
    for (int i = 0; i < 4; i++) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        mp_pack_key(&pk, "items");
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 1);
        mp_pack_kv_str(&pk, "sku", "S-000");
        if (i < 3)
            mp_pack_kv_str(&pk, "per", bad_per[i]);
        else
            mp_pack_kv_int(&pk, "min", -1);
        struct tally_reply *rep = call("promo.check", &sb);
        msgpack_sbuffer_destroy(&sb);
        CHECK(rep && rep->err == TALLY_E_INVALID_PARAMS);
        tally_reply_free(rep);
    }
}

/* ---- main ---- */

static int connect_client(void)
{
    char err[256] = "";
    if (tally_connect(sock, &cli, err, sizeof err) != 0) {
        fprintf(stderr, "connect: %s\n", err);
        return -1;
    }
    tally_client_set_timeout(cli, 20000);
    return 0;
}

static int write_config(void)
{
    FILE *f = fopen(confpath, "we");
    if (!f)
        return -1;
    fputs("[stock]\nstale_policy = zero\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    umask(077); /* tallyd refuses config and secret files others may read */
    if (argc != 2) {
        fprintf(stderr, "usage: test_report TALLYD\n");
        return 2;
    }
    tallyd_path = argv[1];
    const char *env = getenv("TALLY_TEST_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 10) : 20240301;
    generate(seed);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "/tmp/tally-report.XXXXXX");
    if (!mkdtemp(dir)) {
        dir[0] = 0;
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);
    alarm(120);
    snprintf(sock, sizeof sock, "%s/s.sock", dir);
    snprintf(dbpath, sizeof dbpath, "%s/replica.db", dir);
    snprintf(logpath, sizeof logpath, "%s/tallyd.log", dir);
    snprintf(confpath, sizeof confpath, "%s/tallyd.conf", dir);

    /* First run: tallyd creates and migrates the replica. */
    if (start_daemon(false) != 0)
        return 1;
    if (stop_daemon() != 0) {
        fprintf(stderr, "tallyd did not stop cleanly\n");
        dump_log();
        return 1;
    }
    if (write_replica() != 0) {
        fprintf(stderr, "could not write the data set into %s\n", dbpath);
        return 1;
    }
    if (start_daemon(false) != 0 || connect_client() != 0)
        return 1;
    test_report_periods();
    stale_zero = false;
    test_promo();
    test_errors();
    /* The connection survived every refusal. */
    check_report(T0, T0 + DAY, 0);
    tally_client_free(cli);
    cli = NULL;
    CHECK_EQ_INT(stop_daemon(), 0);

    /* stale_policy = zero: a stale warehouse adds nothing to marketplace-available stock. */
    if (write_config() != 0 || start_daemon(true) != 0 || connect_client() != 0)
        return 1;
    stale_zero = true;
    test_promo();
    tally_client_free(cli);
    cli = NULL;
    CHECK_EQ_INT(stop_daemon(), 0);
    if (check_failures) {
        fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
        dump_log();
    }
    return check_result("test_report");
}
