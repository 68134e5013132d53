/* tally-sim: the upstream simulator — an AliExpress Open Platform gateway and N overseas
 * warehouses in one process on 127.0.0.1, with a seeded data generator, fault injection and a
 * control interface. See README.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "simtime.h"
#include "state.h"

#define DEFAULT_WAREHOUSES "ES-MAD,FR-PAR,PL-WAW,US-LAX"
#define DEFAULT_APP_KEY "tally-sim-app-key"
#define DEFAULT_APP_SECRET "tally-sim-app-secret"
#define DEFAULT_ACCESS_TOKEN "tally-sim-access-token"
#define DEFAULT_WH_TOKEN "tally-sim-wh-token"
#define MAX_SKUS 10000000ULL
#define MAX_ORDERS 5000000ULL

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tally-sim [options]\n"
            "\n"
            "Serves on 127.0.0.1: the AliExpress gateway (/sync), the warehouses\n"
            "(/wh/{CODE}/v1/...) and the control interface (/control/...). Prints\n"
            "\"tally-sim listening on ADDR:PORT\" once ready; stops on SIGTERM/SIGINT.\n"
            "\n"
            "  --port P                  TCP port, 0 = any free port (default 0)\n"
            "  --listen ADDR             IPv4 address to serve on (default 127.0.0.1; for\n"
            "                            tests across network namespaces)\n"
            "  --seed S                  data generator seed (default 1)\n"
            "  --skus N                  catalog size in SKUs (default 1000)\n"
            "  --warehouses A,B,...      warehouse codes (default " DEFAULT_WAREHOUSES "),\n"
            "                            each CODE or CODE:KIND with KIND tally (default),\n"
            "                            goodcang or fourpx: the API it speaks\n"
            "  --orders N                initial orders (default 50)\n"
            "  --app-key K               marketplace app key (default " DEFAULT_APP_KEY ")\n"
            "  --app-secret-file F       app secret (default " DEFAULT_APP_SECRET ")\n"
            "  --access-token-file F     seller access token (default " DEFAULT_ACCESS_TOKEN ")\n"
            "  --wh-token-file F         warehouses' bearer token (default " DEFAULT_WH_TOKEN ")\n"
            "  --start-time EPOCH        simulated clock at start (default: wall clock)\n"
            "  --outbound-step-seconds N simulated seconds between outbound-order states\n"
            "                            (default 60; 0 = only by POST /control/outbound)\n"
            "  --timestamp-window S      accepted skew of the gateway's timestamp parameter\n"
            "                            (default 900; 0 = any)\n"
            "  --no-outbound-stock-check do not turn short picks into exceptions\n"
            "  --no-outbound-consume     shipping an outbound order leaves on_hand alone\n"
            "  --verbose                 log requests to stderr\n"
            "  --help                    this text\n");
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Reads a secret: the whole file minus trailing white space; 1 to SIM_SECRET_MAX-1 bytes. */
static int read_secret(const char *path, char out[SIM_SECRET_MAX])
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tally-sim: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = fread(out, 1, SIM_SECRET_MAX, f);
    fclose(f);
    while (n > 0 &&
           (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ' || out[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= SIM_SECRET_MAX) {
        fprintf(stderr, "tally-sim: %s: expected 1 to %d bytes\n", path, SIM_SECRET_MAX - 1);
        return -1;
    }
    out[n] = '\0';
    return 0;
}

static int parse_warehouses(const char *list, struct sim_config *c)
{
    c->n_warehouses = 0;
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t all = comma ? (size_t)(comma - p) : strlen(p);
        const char *colon = memchr(p, ':', all);
        size_t n = colon ? (size_t)(colon - p) : all;
        if (n < 2 || n > SIM_WH_CODE_MAX || c->n_warehouses == SIM_MAX_WAREHOUSES)
            return -1;
        int kind = SIM_WH_TALLY;
        if (colon) {
            const char *k = colon + 1;
            size_t kn = all - n - 1;
            kind = -1;
            for (int i = SIM_WH_TALLY; i <= SIM_WH_FOURPX; i++)
                if (strlen(sim_wh_kind_name(i)) == kn && !memcmp(sim_wh_kind_name(i), k, kn))
                    kind = i;
            if (kind < 0)
                return -1;
        }
        c->wh_kinds[c->n_warehouses] = kind;
        for (size_t i = 0; i < n; i++)
            if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'))
                return -1;
        char *code = c->warehouses[c->n_warehouses];
        memcpy(code, p, n);
        code[n] = '\0';
        for (size_t k = 0; k < c->n_warehouses; k++)
            if (strcmp(c->warehouses[k], code) == 0)
                return -1;
        c->n_warehouses++;
        p += all + (comma ? 1 : 0);
        if (comma && !*p)
            return -1;
    }
    return c->n_warehouses ? 0 : -1;
}

enum {
    OPT_PORT = 256,
    OPT_LISTEN,
    OPT_SEED,
    OPT_SKUS,
    OPT_WAREHOUSES,
    OPT_ORDERS,
    OPT_APP_KEY,
    OPT_APP_SECRET_FILE,
    OPT_ACCESS_TOKEN_FILE,
    OPT_WH_TOKEN_FILE,
    OPT_START_TIME,
    OPT_OUTBOUND_STEP,
    OPT_TIMESTAMP_WINDOW,
    OPT_NO_STOCK_CHECK,
    OPT_NO_CONSUME,
    OPT_VERBOSE,
    OPT_HELP,
};

static const struct option options[] = {
    {"port", required_argument, NULL, OPT_PORT},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"seed", required_argument, NULL, OPT_SEED},
    {"skus", required_argument, NULL, OPT_SKUS},
    {"warehouses", required_argument, NULL, OPT_WAREHOUSES},
    {"orders", required_argument, NULL, OPT_ORDERS},
    {"app-key", required_argument, NULL, OPT_APP_KEY},
    {"app-secret-file", required_argument, NULL, OPT_APP_SECRET_FILE},
    {"access-token-file", required_argument, NULL, OPT_ACCESS_TOKEN_FILE},
    {"wh-token-file", required_argument, NULL, OPT_WH_TOKEN_FILE},
    {"start-time", required_argument, NULL, OPT_START_TIME},
    {"outbound-step-seconds", required_argument, NULL, OPT_OUTBOUND_STEP},
    {"timestamp-window", required_argument, NULL, OPT_TIMESTAMP_WINDOW},
    {"no-outbound-stock-check", no_argument, NULL, OPT_NO_STOCK_CHECK},
    {"no-outbound-consume", no_argument, NULL, OPT_NO_CONSUME},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Fills c from argv. Returns 0, 1 when --help was shown, -1 on a usage error (reported). */
static int parse_args(int argc, char **argv, struct sim_config *c, uint16_t *port)
{
    memset(c, 0, sizeof(*c));
    c->seed = 1;
    c->n_skus = 1000;
    c->n_orders = 50;
    c->outbound_step = 60;
    c->timestamp_window = 900;
    c->outbound_stock_check = true;
    c->outbound_consume = true;
    snprintf(c->app_key, sizeof(c->app_key), "%s", DEFAULT_APP_KEY);
    snprintf(c->app_secret, sizeof(c->app_secret), "%s", DEFAULT_APP_SECRET);
    snprintf(c->access_token, sizeof(c->access_token), "%s", DEFAULT_ACCESS_TOKEN);
    snprintf(c->wh_token, sizeof(c->wh_token), "%s", DEFAULT_WH_TOKEN);
    parse_warehouses(DEFAULT_WAREHOUSES, c);
    snprintf(c->listen, sizeof(c->listen), "127.0.0.1");
    *port = 0;

    int opt;
    uint64_t v;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        const char *bad = NULL;
        switch (opt) {
        case OPT_PORT:
            if (parse_u64(optarg, 65535, &v) < 0)
                bad = "--port wants 0..65535";
            *port = (uint16_t)v;
            break;
        case OPT_LISTEN: {
            struct in_addr a;
            if (strlen(optarg) >= sizeof(c->listen) || inet_pton(AF_INET, optarg, &a) != 1)
                bad = "--listen wants an IPv4 address in dotted decimal";
            else
                snprintf(c->listen, sizeof(c->listen), "%s", optarg);
            break;
        }
        case OPT_SEED:
            if (parse_u64(optarg, UINT64_MAX, &c->seed) < 0)
                bad = "--seed wants an unsigned integer";
            break;
        case OPT_SKUS:
            if (parse_u64(optarg, MAX_SKUS, &v) < 0 || v == 0)
                bad = "--skus wants 1..10000000";
            c->n_skus = (size_t)v;
            break;
        case OPT_WAREHOUSES:
            if (parse_warehouses(optarg, c) < 0)
                bad = "--warehouses wants 1 to 32 distinct codes of 2-16 characters A-Z 0-9 -, "
                      "each optionally :tally, :goodcang or :fourpx";
            break;
        case OPT_ORDERS:
            if (parse_u64(optarg, MAX_ORDERS, &v) < 0)
                bad = "--orders wants 0..5000000";
            c->n_orders = (size_t)v;
            break;
        case OPT_APP_KEY:
            if (!*optarg || strlen(optarg) >= sizeof(c->app_key))
                bad = "--app-key wants 1 to 255 characters";
            snprintf(c->app_key, sizeof(c->app_key), "%s", optarg);
            break;
        case OPT_APP_SECRET_FILE:
            if (read_secret(optarg, c->app_secret) < 0)
                return -1;
            break;
        case OPT_ACCESS_TOKEN_FILE:
            if (read_secret(optarg, c->access_token) < 0)
                return -1;
            break;
        case OPT_WH_TOKEN_FILE:
            if (read_secret(optarg, c->wh_token) < 0)
                return -1;
            break;
        case OPT_START_TIME:
            if (parse_u64(optarg, 4102444800ULL, &v) < 0 || v < 86400 * 365)
                bad = "--start-time wants epoch seconds (1971..2100)";
            c->start_time = (int64_t)v;
            break;
        case OPT_OUTBOUND_STEP:
            if (parse_u64(optarg, 86400 * 30, &v) < 0)
                bad = "--outbound-step-seconds wants 0..2592000";
            c->outbound_step = (int64_t)v;
            break;
        case OPT_TIMESTAMP_WINDOW:
            if (parse_u64(optarg, 86400 * 365, &v) < 0)
                bad = "--timestamp-window wants seconds";
            c->timestamp_window = (int64_t)v;
            break;
        case OPT_NO_STOCK_CHECK:
            c->outbound_stock_check = false;
            break;
        case OPT_NO_CONSUME:
            c->outbound_consume = false;
            break;
        case OPT_VERBOSE:
            c->verbose = true;
            break;
        case OPT_HELP:
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "tally-sim: %s (got \"%s\")\n", bad, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tally-sim: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sim_config cfg;
    uint16_t port;
    int rc = parse_args(argc, argv, &cfg, &port);
    if (rc != 0)
        return rc > 0 ? 0 : 2;

    /* Every thread started from here on inherits the blocked set; main takes the signals. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[256];
    int64_t t0 = st_monotonic_ms();
    struct sim *s = sim_new(&cfg, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "tally-sim: %s\n", err);
        return 1;
    }
    struct http_server *h = http_start(s, port, err, sizeof(err));
    if (!h) {
        fprintf(stderr, "tally-sim: %s\n", err);
        sim_free(s);
        return 1;
    }
    if (cfg.verbose)
        fprintf(stderr,
                "tally-sim: %zu SKUs in %zu products, %zu orders, %zu warehouses in %" PRId64
                " ms\n",
                s->n_skus, s->n_products, s->n_orders, s->n_wh, st_monotonic_ms() - t0);
    printf("tally-sim listening on %s:%u\n", cfg.listen, (unsigned)http_port(h));
    fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);
    http_stop(h);
    sim_free(s);
    return 0;
}
