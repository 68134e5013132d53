/*
 * daemon/config.c: defaults, a file that sets every key, the INI syntax (comments, blank lines,
 * whitespace), and errors that name the file and line. A refused value leaves the setting as it
 * was.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "tally/protocol.h"

static char tmpdir[64];
static char last_err[512];

/* Writes `text` to a fresh file in the temp dir; returns its path (static). */
static const char *write_conf(const char *text)
{
    static char path[128];
    static int n;
    snprintf(path, sizeof path, "%s/tallyd-%d.conf", tmpdir, n++);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static int load(struct tally_config *cfg, const char *text)
{
    config_defaults(cfg);
    last_err[0] = 0;
    return config_load(cfg, write_conf(text), last_err, sizeof last_err);
}

static void test_defaults(void)
{
    struct tally_config cfg;
    memset(&cfg, 0xa5, sizeof cfg);
    config_defaults(&cfg);
    CHECK(cfg.station[0] != 0);
    CHECK(strlen(cfg.station) <= TALLY_MAX_ID_LEN);
    char host[256] = "";
    if (gethostname(host, sizeof host) == 0 && host[0] && strlen(host) <= 64)
        CHECK_EQ_STR(cfg.station, host);
    CHECK(cfg.coordinator);
    CHECK_EQ_STR(cfg.state_dir, "/var/lib/tally");
    CHECK_EQ_STR(cfg.socket_path, TALLY_DEFAULT_SOCKET);
    CHECK_EQ_STR(cfg.socket_path, "/run/tally/tally.sock");
    CHECK_EQ_INT(cfg.socket_mode, 0660);
    CHECK_EQ_STR(cfg.writer_group, "tally-writers");
    CHECK_EQ_INT(cfg.max_message_bytes, 1024 * 1024);
    CHECK_EQ_INT(cfg.max_connections, 256);
    CHECK_EQ_INT(cfg.max_output_bytes, 16 * 1024 * 1024);
    CHECK_EQ_INT(cfg.log_level, LOG_LVL_INFO);
    CHECK(cfg.sync_full);
}

static void test_full_file(void)
{
    struct tally_config cfg;
    int r = load(&cfg, "# tallyd.conf written by the test\n"
                       "; another comment style\n"
                       "\n"
                       "[station]\n"
                       "name = madrid-1\n"
                       "coordinator = false\n"
                       "  state_dir=/srv/tally/state  \n"
                       "socket\t=\t/tmp/tally-test.sock\n"
                       "socket_mode = 0600\n"
                       "writer_group = pickers\n"
                       "\n"
                       "   # indented comment\n"
                       "[limits]\n"
                       "max_message_bytes = 65536\n"
                       "max_connections = 32\n"
                       "max_output_bytes = 1048576\n"
                       "[ log ]\n"
                       "level = debug\n"
                       "[sync]\n"
                       "synchronous = normal\n");
    if (r)
        fprintf(stderr, "config_load: %s\n", last_err);
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_STR(cfg.station, "madrid-1");
    CHECK(!cfg.coordinator);
    CHECK_EQ_STR(cfg.state_dir, "/srv/tally/state");
    CHECK_EQ_STR(cfg.socket_path, "/tmp/tally-test.sock");
    CHECK_EQ_INT(cfg.socket_mode, 0600);
    CHECK_EQ_STR(cfg.writer_group, "pickers");
    CHECK_EQ_INT(cfg.max_message_bytes, 65536);
    CHECK_EQ_INT(cfg.max_connections, 32);
    CHECK_EQ_INT(cfg.max_output_bytes, 1048576);
    CHECK_EQ_INT(cfg.log_level, LOG_LVL_DEBUG);
    CHECK(!cfg.sync_full);

    /* CRLF line endings, no newline at the end, keys not set keep their defaults. */
    r = load(&cfg, "[station]\r\nname = es-2\r\n[log]\r\nlevel = warning");
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_STR(cfg.station, "es-2");
    CHECK_EQ_INT(cfg.log_level, LOG_LVL_WARNING);
    CHECK_EQ_INT(cfg.max_connections, 256);
    CHECK(cfg.coordinator);

    /* Boolean spellings, other log levels, an empty writer_group (no group). */
    const char *trues[] = {"true", "yes", "1", "on"};
    const char *falses[] = {"false", "no", "0", "off"};
    for (int i = 0; i < 4; i++) {
        char text[128];
        snprintf(text, sizeof text, "[station]\ncoordinator = %s\n", falses[i]);
        CHECK_EQ_INT(load(&cfg, text), 0);
        CHECK(!cfg.coordinator);
        snprintf(text, sizeof text, "[station]\ncoordinator=%s\n", trues[i]);
        CHECK_EQ_INT(load(&cfg, text), 0);
        CHECK(cfg.coordinator);
    }
    CHECK_EQ_INT(load(&cfg, "[log]\nlevel = error\n"), 0);
    CHECK_EQ_INT(cfg.log_level, LOG_LVL_ERROR);
    CHECK_EQ_INT(load(&cfg, "[log]\nlevel = info\n[sync]\nsynchronous = full\n"), 0);
    CHECK_EQ_INT(cfg.log_level, LOG_LVL_INFO);
    CHECK(cfg.sync_full);
    CHECK_EQ_INT(load(&cfg, "[station]\nwriter_group =\n"), 0);
    CHECK_EQ_STR(cfg.writer_group, "");
    /* Later lines win; a section may appear twice. */
    CHECK_EQ_INT(load(&cfg, "[limits]\nmax_connections = 5\n[log]\nlevel = debug\n"
                            "[limits]\nmax_connections = 6\n"),
                 0);
    CHECK_EQ_INT(cfg.max_connections, 6);
    /* An empty file is valid and changes nothing. */
    CHECK_EQ_INT(load(&cfg, ""), 0);
    CHECK_EQ_INT(cfg.max_connections, 256);

    /* Boundaries of the numeric ranges are inclusive. */
    CHECK_EQ_INT(load(&cfg, "[limits]\nmax_message_bytes = 4096\nmax_connections = 1\n"
                            "max_output_bytes = 65536\n"),
                 0);
    CHECK_EQ_INT(cfg.max_message_bytes, 4096);
    CHECK_EQ_INT(cfg.max_connections, 1);
    CHECK_EQ_INT(cfg.max_output_bytes, 65536);
    CHECK_EQ_INT(load(&cfg, "[limits]\nmax_message_bytes = 67108864\nmax_connections = 65536\n"
                            "max_output_bytes = 1073741824\n"),
                 0);
    CHECK_EQ_INT(cfg.max_message_bytes, 64 * 1024 * 1024);
    CHECK_EQ_INT(cfg.max_connections, 65536);
    CHECK_EQ_INT(cfg.max_output_bytes, 1024 * 1024 * 1024);
    CHECK_EQ_INT(load(&cfg, "[station]\nsocket_mode = 777\n"), 0);
    CHECK_EQ_INT(cfg.socket_mode, 0777);

    /* A socket path of exactly 107 bytes fits sun_path with its NUL. */
    char text[256], path107[108];
    memset(path107, 'p', 107);
    path107[0] = '/';
    path107[107] = 0;
    snprintf(text, sizeof text, "[station]\nsocket = %s\n", path107);
    CHECK_EQ_INT(load(&cfg, text), 0);
    CHECK_EQ_STR(cfg.socket_path, path107);
}

/* A load that must fail with "path:line: " and mention `needle`. */
static void expect_error(const char *text, int line, const char *needle)
{
    struct tally_config cfg;
    config_defaults(&cfg);
    const char *path = write_conf(text);
    last_err[0] = 0;
    int r = config_load(&cfg, path, last_err, sizeof last_err);
    char want[192];
    snprintf(want, sizeof want, "%s:%d: ", path, line);
    bool ok = r == -1 && strncmp(last_err, want, strlen(want)) == 0 &&
              (!needle || strstr(last_err, needle));
    if (!ok)
        fprintf(stderr, "config %s: got %d \"%s\", expected \"%s...%s\"\n", text, r, last_err, want,
                needle ? needle : "");
    CHECK_EQ_INT(r, -1);
    CHECK(strncmp(last_err, want, strlen(want)) == 0);
    if (needle)
        CHECK(strstr(last_err, needle) != NULL);
}

static void test_errors(void)
{
    expect_error("[station]\nname = x\n[bogus]\nkey = 1\n", 4, "bogus");
    expect_error("[station]\nnmae = x\n", 2, "nmae");
    expect_error("[limits]\nmax_conections = 5\n", 2, "max_conections");
    expect_error("[log]\nlevel = debug\nfile = /tmp/x\n", 3, "file");
    expect_error("name = x\n", 1, NULL);
    expect_error("# comment\n\nname = x\n[station]\n", 3, NULL);
    expect_error("[station]\njust some words\n", 2, NULL);
    expect_error("[station\nname = x\n", 1, NULL);
    expect_error("[station] extra\n", 1, NULL);

    /* Numbers. */
    expect_error("[limits]\nmax_connections = many\n", 2, "max_connections");
    expect_error("[limits]\nmax_connections = 12abc\n", 2, "max_connections");
    expect_error("[limits]\nmax_connections =\n", 2, "max_connections");
    expect_error("[limits]\nmax_connections = -1\n", 2, "max_connections");
    expect_error("[limits]\nmax_connections = 0\n", 2, "max_connections");
    expect_error("[limits]\nmax_connections = 65537\n", 2, "max_connections");
    expect_error("[limits]\nmax_connections = 99999999999999999999999\n", 2, "max_connections");
    expect_error("[limits]\nmax_message_bytes = 4095\n", 2, "max_message_bytes");
    expect_error("[limits]\nmax_message_bytes = 67108865\n", 2, "max_message_bytes");
    expect_error("[limits]\nmax_output_bytes = 1000\n", 2, "max_output_bytes");
    expect_error("[limits]\nmax_output_bytes = 1073741825\n", 2, "max_output_bytes");
    expect_error("[station]\nsocket_mode = 0999\n", 2, "socket_mode");
    expect_error("[station]\nsocket_mode = 01000\n", 2, "socket_mode");
    expect_error("[station]\nsocket_mode = rw\n", 2, "socket_mode");

    /* Booleans, enumerations, strings. */
    expect_error("[station]\ncoordinator = maybe\n", 2, "coordinator");
    expect_error("[station]\ncoordinator =\n", 2, "coordinator");
    expect_error("[log]\nlevel = verbose\n", 2, "level");
    expect_error("[sync]\nsynchronous = off\n", 2, "synchronous");
    expect_error("[station]\nname =\n", 2, "name");
    char text[512], long_name[66], path108[109];
    memset(long_name, 'n', 65);
    long_name[65] = 0;
    snprintf(text, sizeof text, "[station]\nname = %s\n", long_name);
    expect_error(text, 2, "name");
    memset(path108, 'p', 108);
    path108[0] = '/';
    path108[108] = 0;
    snprintf(text, sizeof text, "\n[station]\n\nsocket = %s\n", path108);
    expect_error(text, 4, "socket");
    CHECK(strstr(last_err, "107") != NULL);

    /* A line longer than the reader's buffer. */
    char *huge = malloc(3000);
    snprintf(huge, 3000, "[station]\nstate_dir = /");
    size_t n = strlen(huge);
    memset(huge + n, 'd', 2000);
    huge[n + 2000] = 0;
    expect_error(huge, 2, "long");
    free(huge);

    /* A file that cannot be read names itself. */
    struct tally_config cfg;
    config_defaults(&cfg);
    char missing[128];
    snprintf(missing, sizeof missing, "%s/does-not-exist.conf", tmpdir);
    last_err[0] = 0;
    CHECK_EQ_INT(config_load(&cfg, missing, last_err, sizeof last_err), -1);
    CHECK(strstr(last_err, missing) != NULL);
}

/* Fills a large stretch of stack with a pattern, so uninitialised locals are not zero. */
__attribute__((noinline)) static void dirty_stack(void)
{
    volatile unsigned char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = 0x5a;
}

/* A refused value leaves the setting as it was (config_set is also used for overrides). */
static void test_refused_keeps_value(void)
{
    struct tally_config cfg;
    config_defaults(&cfg);
    char err[256];
    struct {
        const char *section, *key, *value;
    } bad[] = {
        {"limits", "max_connections", "lots"},
        {"limits", "max_connections", "0"},
        {"limits", "max_message_bytes", "1"},
        {"limits", "max_output_bytes", "-5"},
        {"station", "socket_mode", "0999"},
        {"station", "coordinator", "perhaps"},
        {"log", "level", "loud"},
        {"sync", "synchronous", "sometimes"},
        {"station", "name", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dirty_stack();
        err[0] = 0;
        int r = config_set(&cfg, bad[i].section, bad[i].key, bad[i].value, err, sizeof err);
        CHECK_EQ_INT(r, -1);
        CHECK(err[0] != 0);
    }
    CHECK_EQ_INT(cfg.max_connections, 256);
    CHECK_EQ_INT(cfg.max_message_bytes, 1024 * 1024);
    CHECK_EQ_INT(cfg.max_output_bytes, 16 * 1024 * 1024);
    CHECK_EQ_INT(cfg.socket_mode, 0660);
    CHECK(cfg.coordinator);
    CHECK_EQ_INT(cfg.log_level, LOG_LVL_INFO);
    CHECK(cfg.sync_full);
    CHECK(cfg.station[0] != 0);

    /* And through a file: the value before the bad line survives. */
    CHECK_EQ_INT(load(&cfg, "[limits]\nmax_connections = 7\nmax_connections = 0\n"), -1);
    CHECK_EQ_INT(cfg.max_connections, 7);

    /* config_set accepts what the file accepts, and names unknown sections and keys. */
    CHECK_EQ_INT(config_set(&cfg, "limits", "max_connections", "9", err, sizeof err), 0);
    CHECK_EQ_INT(cfg.max_connections, 9);
    CHECK_EQ_INT(config_set(&cfg, "nope", "x", "1", err, sizeof err), -1);
    CHECK(strstr(err, "nope") != NULL);
    CHECK_EQ_INT(config_set(&cfg, "station", "x", "1", err, sizeof err), -1);
    CHECK(strstr(err, "'x'") != NULL);
}

/* Part 3: allocation, priority, exceptions, stock, privacy and a warehouse's fulfilment. */
static void test_fulfilment_keys(void)
{
    struct tally_config cfg;
    config_defaults(&cfg);
    CHECK_EQ_INT(cfg.alloc.max_distance_km, 1500);
    CHECK(cfg.alloc.allow_split);
    CHECK_EQ_INT(cfg.alloc.npriority, 0);
    CHECK_EQ_INT(cfg.exc_deadline_h, 24);
    CHECK_EQ_INT(cfg.retain_days, 30);
    CHECK(!cfg.stale_zero);
    CHECK_EQ_INT(cfg.priority.deadline_points, 100);
    int r = load(&cfg, "[allocation]\nmax_distance_km = 800\npriority = ES-MAD , PL-WAW,US-LAX\n"
                       "split = no\n[priority]\ndeadline_hours = 12\nexpress_services = DHL,"
                       " Premium\nvip_levels = gold\nvip_points = 7\nvalue_minor = 5000\n"
                       "[exceptions]\ndeadline_hours = 48\nship_by_warning_hours = 6\n"
                       "[stock]\nstale_after = 600\nstale_policy = zero\n"
                       "sales_window_days = 14\nrestock_cover_days = 45\n"
                       "[privacy]\nretain_days = 0\n"
                       "[warehouse ES-MAD]\nurl = http://127.0.0.1:1/wh\ntoken_file = t\n"
                       "fulfilment = station\n[warehouse PL-WAW]\nurl = http://127.0.0.1:1/p\n"
                       "token_file = t\n");
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(cfg.alloc.max_distance_km, 800);
    CHECK_EQ_INT(cfg.alloc.npriority, 3);
    CHECK_EQ_STR(cfg.alloc.priority[0], "ES-MAD");
    CHECK_EQ_STR(cfg.alloc.priority[1], "PL-WAW");
    CHECK_EQ_STR(cfg.alloc.priority[2], "US-LAX");
    CHECK(!cfg.alloc.allow_split);
    CHECK_EQ_INT(cfg.priority.deadline_hours, 12);
    CHECK_EQ_INT(cfg.priority.nexpress, 2);
    CHECK_EQ_STR(cfg.priority.express[1], "Premium");
    CHECK_EQ_INT(cfg.priority.nvip, 1);
    CHECK_EQ_STR(cfg.priority.vip_levels[0], "gold");
    CHECK_EQ_INT(cfg.priority.vip_points, 7);
    CHECK_EQ_INT(cfg.priority.value_minor, 5000);
    CHECK_EQ_INT(cfg.exc_deadline_h, 48);
    CHECK_EQ_INT(cfg.ship_by_warning_h, 6);
    CHECK_EQ_INT(cfg.stale_after_s, 600);
    CHECK(cfg.stale_zero);
    CHECK_EQ_INT(cfg.sales_window_days, 14);
    CHECK_EQ_INT(cfg.restock_cover_days, 45);
    CHECK_EQ_INT(cfg.retain_days, 0);
    CHECK_EQ_STR(cfg.wh[0].fulfilment, "station");
    CHECK_EQ_STR(cfg.wh[1].fulfilment, "outbound"); /* a configured warehouse's default */
    /* Refusals name the key; the old value stays. */
    char err[256];
    CHECK_EQ_INT(config_set(&cfg, "allocation", "priority", "A,,B", err, sizeof err), -1);
    CHECK_EQ_INT(cfg.alloc.npriority, 3);
    CHECK_EQ_STR(cfg.alloc.priority[0], "ES-MAD");
    CHECK_EQ_INT(config_set(&cfg, "stock", "stale_policy", "maybe", err, sizeof err), -1);
    CHECK(strstr(err, "stale_policy") != NULL);
    CHECK_EQ_INT(config_set(&cfg, "warehouse ES-MAD", "fulfilment", "drone", err, sizeof err), -1);
    CHECK_EQ_STR(cfg.wh[0].fulfilment, "station");
    CHECK_EQ_INT(config_set(&cfg, "exceptions", "deadline_hours", "0", err, sizeof err), -1);
    CHECK_EQ_INT(config_set(&cfg, "privacy", "retain_days", "3651", err, sizeof err), -1);
    CHECK_EQ_INT(cfg.retain_days, 0);
    CHECK_EQ_INT(config_set(&cfg, "allocation", "priority",
                            "A1,A2,A3,A4,A5,A6,A7,A8,A9,A10,A11,A12,A13,A14,A15,A16,A17,A18,A19,"
                            "A20,A21,A22,A23,A24,A25,A26,A27,A28,A29,A30,A31,A32,A33",
                            err, sizeof err),
                 -1);
}

/* An upstream URL and its warehouse section: 0 when accepted (config_load + config_check). */
static int upstream_url(const char *url, const char *extra)
{
    struct tally_config cfg;
    char text[1024];
    snprintf(text, sizeof text, "[warehouse W]\nurl = %s\ntoken_file = t\n%s", url, extra);
    int r = load(&cfg, text);
    if (r == 0)
        r = config_check(&cfg, last_err, sizeof last_err);
    return r;
}

static int gateway_url(const char *url, const char *extra)
{
    struct tally_config cfg;
    char text[1024];
    snprintf(text, sizeof text,
             "[marketplace]\n%sgateway = %s\napp_key = k\napp_secret_file = s\n"
             "access_token_file = t\n",
             extra, url);
    int r = load(&cfg, text);
    if (r == 0)
        r = config_check(&cfg, last_err, sizeof last_err);
    return r;
}

/* Plain http:// carries the bearer token in clear: only to this machine (loopback), unless the
 * upstream's section says allow_insecure_http = true. The host is read as curl reads it. */
/* [carriers] and carrier.NAME: the warehouse's own mapping first, then the default, the
 * carrier compared without case; "other" needs its tracking website, no other key takes one;
 * a carrier mapped twice in one scope, or a key with spaces, is an error. */
static void test_carriers(void)
{
    struct tally_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return;
    CHECK_EQ_INT(load(cfg, "[carriers]\nCorreos = CPAM\nLa Poste = CPAM\n"
                           "Local Van = other https://track.example/x\n"
                           "[warehouse ES-MAD]\nurl = https://w.example\ntoken_file = t\n"
                           "carrier.Correos = EMS\n"),
                 0);
    CHECK_EQ_INT(cfg->ncarriers, 4);
    const struct carrier_map *m = config_carrier(cfg, "FR-PAR", "correos");
    CHECK(m && !strcmp(m->service, "CPAM") && !m->wh[0]);
    m = config_carrier(cfg, "ES-MAD", "CORREOS");
    CHECK(m && !strcmp(m->service, "EMS") && !strcmp(m->wh, "ES-MAD"));
    m = config_carrier(cfg, "", "La Poste");
    CHECK(m && !strcmp(m->service, "CPAM"));
    m = config_carrier(cfg, "ES-MAD", "local van");
    CHECK(m && !strcmp(m->service, "other") && !strcmp(m->website, "https://track.example/x"));
    CHECK(config_carrier(cfg, "ES-MAD", "DHL") == NULL);
    CHECK(config_carrier(cfg, "ES-MAD", NULL) == NULL);
    free(cfg);
    expect_error("[carriers]\nCorreos = other\n", 2, "other");
    expect_error("[carriers]\nCorreos = CPAM https://x.example\n", 2, "other");
    expect_error("[carriers]\nCorreos = CPAM\ncorreos = EMS\n", 3, "twice");
    expect_error("[carriers]\nCorreos =\n", 2, "carrier");
    expect_error("[warehouse ES-MAD]\ncarrier. = CPAM\n", 2, "carrier");
    expect_error("[warehouse ES-MAD]\ncarriers.Correos = CPAM\n", 2, "carriers.Correos");
}

static void test_insecure_http(void)
{
    /* Loopback in every spelling, with and without a port and a path. */
    const char *loopback[] = {
        "http://127.0.0.1",
        "http://127.0.0.1:8080/wh/ES-MAD",
        "http://127.1.2.3:1/x",
        "http://127.255.255.254/",
        "http://localhost:9000",
        "http://LocalHost/wh",
        "http://[::1]:8443/wh",
        "http://[::1]",
        "http://127.0.0.1?x=1",
        "http://127.0.0.1/a@b/c",
        "https://127.0.0.1:1/x",
        "https://wms.example.com",
        "https://wms.example.com:8443/es",
        "https://[2001:db8::1]:443/x",
    };
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
        int r = upstream_url(loopback[i], "");
        if (r)
            fprintf(stderr, "refused %s: %s\n", loopback[i], last_err);
        CHECK_EQ_INT(r, 0);
        CHECK_EQ_INT(gateway_url(loopback[i], ""), 0);
    }
    /* Not loopback: refused without the flag, with a message naming the key and the flag. */
    const char *remote[] = {
        "http://wms.example.com/es",
        "http://10.0.0.5:8080",
        "http://127.0.0.1.evil.com/",
        "http://127.0.0.1.evil.com:80/",
        "http://localhost.evil.com",
        "http://localhost.",
        "http://evil.com/127.0.0.1",
        "http://evil.com?h=127.0.0.1",
        "http://evil.com#127.0.0.1",
        "http://[::2]:80/",
        "http://[::ffff:10.0.0.1]/",
        "http://128.0.0.1/",
        "http://0.0.0.0/",
        "http://2130706433/", /* 127.0.0.1 as one number: not taken as loopback */
        "http://0177.0.0.1/", /* octal: not taken as loopback */
        "http://127.1/",      /* short form: not taken as loopback */
        "http://127.0.0.01/", /* leading zero: not taken as loopback */
        "http://[0:0:0:0:0:0:0:2]/",
    };
    for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++) {
        int r = upstream_url(remote[i], "");
        if (r == 0)
            fprintf(stderr, "accepted plain %s\n", remote[i]);
        CHECK_EQ_INT(r, -1);
        CHECK(strstr(last_err, "allow_insecure_http") != NULL);
        CHECK_EQ_INT(gateway_url(remote[i], ""), -1);
        CHECK(strstr(last_err, "allow_insecure_http") != NULL);
        /* ... and accepted with it, for that section (before or after the url line). */
        r = upstream_url(remote[i], "allow_insecure_http = true\n");
        if (r)
            fprintf(stderr, "refused %s with the flag: %s\n", remote[i], last_err);
        CHECK_EQ_INT(r, 0);
        CHECK_EQ_INT(gateway_url(remote[i], "allow_insecure_http = yes\n"), 0);
    }
    /* The flag is per upstream: another warehouse's does not cover this one. */
    struct tally_config cfg;
    CHECK_EQ_INT(load(&cfg, "[warehouse A]\nurl = http://a.example.com\ntoken_file = t\n"
                            "allow_insecure_http = true\n"
                            "[warehouse B]\nurl = http://b.example.com\ntoken_file = t\n"),
                 0);
    CHECK(cfg.wh[0].allow_insecure_http);
    CHECK(!cfg.wh[1].allow_insecure_http);
    CHECK_EQ_INT(config_check(&cfg, last_err, sizeof last_err), -1);
    CHECK(strstr(last_err, "[warehouse B]") != NULL);
    CHECK(config_insecure_http("http://a.example.com"));
    CHECK(!config_insecure_http("http://127.0.0.1:1/x"));
    CHECK(!config_insecure_http("https://a.example.com"));
    CHECK_EQ_INT(upstream_url("http://a.example.com", "allow_insecure_http = maybe\n"), -1);

    /* URLs whose host cannot be read unambiguously are refused outright, flag or not. */
    const char *bad[] = {
        "http://localhost@evil.com/", /* userinfo: the host is evil.com */
        "http://127.0.0.1@evil.com",
        "http://user:pw@127.0.0.1/", /* credentials never go in the URL */
        "http://127.0.0.1:80@evil.com/",
        "http://127.0.0.1\\@evil.com/",
        "http://[::1/",
        "http://[::1]x/",
        "http://[::1]:/",
        "http://127.0.0.1:/",
        "http://127.0.0.1:65536/",
        "http://127.0.0.1:8o/",
        "http://127.0.0.1:-1/",
        "http:///x",
        "http://",
        "https://",
        "http://%31%32%37.0.0.1/",
        "http://127.0.0.1 /",
        "http://ex ample.com/",
        "ftp://127.0.0.1/",
        "HTTP://127.0.0.1/",
        "127.0.0.1:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = upstream_url(bad[i], "allow_insecure_http = true\n");
        if (r == 0)
            fprintf(stderr, "accepted bad URL %s\n", bad[i]);
        CHECK_EQ_INT(r, -1);
        CHECK(strstr(last_err, "url") != NULL);
        CHECK_EQ_INT(gateway_url(bad[i], "allow_insecure_http = true\n"), -1);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tally-config-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_defaults();
    test_full_file();
    test_errors();
    test_refused_keeps_value();
    test_fulfilment_keys();
    test_insecure_http();
    test_carriers();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_result("test_config");
}
