#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "log.h"
#include "tally/protocol.h"

void config_defaults(struct tally_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (gethostname(cfg->station, sizeof cfg->station - 1) != 0 || !cfg->station[0])
        snprintf(cfg->station, sizeof cfg->station, "station");
    cfg->coordinator = true;
    snprintf(cfg->state_dir, sizeof cfg->state_dir, "/var/lib/tally");
    snprintf(cfg->socket_path, sizeof cfg->socket_path, "%s", TALLY_DEFAULT_SOCKET);
    cfg->socket_mode = 0660;
    snprintf(cfg->writer_group, sizeof cfg->writer_group, "tally-writers");
    cfg->max_message_bytes = TALLY_DEFAULT_MAX_MESSAGE_BYTES;
    cfg->max_connections = TALLY_DEFAULT_MAX_CONNECTIONS;
    cfg->max_output_bytes = TALLY_DEFAULT_MAX_OUTPUT_BYTES;
    cfg->log_level = LOG_LVL_INFO;
    cfg->sync_full = true;
    cfg->max_parallel = 4;
    cfg->retry_max_s = 300;
    cfg->request_timeout_s = 30;
    cfg->reconcile_s = 21600;
    cfg->outbox_keep_days = 14;
    cfg->mp.catalog_interval_s = 300;
    cfg->mp.orders_interval_s = 60;
    cfg->mp.orders_overlap_s = 300;
    alloc_rules_defaults(&cfg->alloc);
    priority_rules_defaults(&cfg->priority);
    cfg->exc_deadline_h = 24;
    cfg->ship_by_warning_h = 24;
    cfg->retain_days = 30;
    cfg->sales_window_days = 28;
    cfg->restock_cover_days = 30;
    cfg->stale_after_s = 3600;
}

/* Splits a comma-separated list into up to `max` trimmed items of `cap` bytes each; returns
 * the count, or -1 with a message when an item is empty or too long or there are too many. */
static int set_list(char *items, size_t cap, int max, const char *v, char *errbuf, size_t errlen,
                    const char *key)
{
    /* Parsed aside first: a refused list leaves the setting as it was. */
    char tmp[ALLOC_MAX_WH * 65];
    if ((size_t)max * cap > sizeof tmp) {
        snprintf(errbuf, errlen, "%s: list too long", key);
        return -1;
    }
    int n = 0;
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0 || len >= cap || n == max) {
            snprintf(errbuf, errlen,
                     "%s: a comma-separated list of at most %d names of 1-%zu bytes", key, max,
                     cap - 1);
            return -1;
        }
        memcpy(tmp + (size_t)n * cap, p, len);
        tmp[(size_t)n * cap + len] = 0;
        n++;
        if (!e)
            break;
        p = e + 1;
    }
    memcpy(items, tmp, (size_t)n * cap);
    return n;
}

/* The [warehouse CODE] entry for `code`, created on first mention. */
static struct wh_config *warehouse_section(struct tally_config *cfg, const char *code, char *errbuf,
                                           size_t errlen)
{
    for (unsigned i = 0; i < cfg->nwh; i++)
        if (!strcmp(cfg->wh[i].code, code))
            return &cfg->wh[i];
    size_t n = strlen(code);
    bool ok = n > 0 && n <= TALLY_MAX_ID_LEN;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)code[i] > 0x20 && (unsigned char)code[i] < 0x7f;
    if (!ok) {
        snprintf(errbuf, errlen, "[warehouse %s]: the code must be 1-64 printable characters",
                 code);
        return NULL;
    }
    if (cfg->nwh == TALLY_MAX_UPSTREAM_WAREHOUSES) {
        snprintf(errbuf, errlen, "more than %d warehouse sections", TALLY_MAX_UPSTREAM_WAREHOUSES);
        return NULL;
    }
    struct wh_config *w = &cfg->wh[cfg->nwh++];
    memset(w, 0, sizeof *w);
    memcpy(w->code, code, n + 1);
    memcpy(w->name, code, n + 1);
    memcpy(w->country, "ZZ", 3);
    w->serves_marketplace = true;
    w->inventory_interval_s = 30;
    w->outbound_interval_s = 60;
    snprintf(w->fulfilment, sizeof w->fulfilment, "outbound");
    w->kind = WH_KIND_TALLY;
    return w;
}

static const char *const wh_kind_names[WH_KIND_COUNT] = {"tally", "goodcang", "fourpx"};

const char *wh_kind_name(int kind)
{
    return kind >= 0 && kind < WH_KIND_COUNT ? wh_kind_names[kind] : NULL;
}

int wh_kind_parse(const char *s)
{
    for (int k = 0; k < WH_KIND_COUNT; k++)
        if (!strcmp(s, wh_kind_names[k]))
            return k;
    return -1;
}

static int set_str(char *dst, size_t cap, const char *v, char *errbuf, size_t errlen,
                   const char *key);

/*
 * Reads an upstream URL: "http://" or "https://", then the authority up to the first '/', '?'
 * or '#': a host name, a dotted IPv4 address or a bracketed IPv6 address, then an optional
 * port. User information ('@'), percent-encoding, zone ids and any character a URL parser
 * might read another way are refused, so the host read here is the host curl connects to.
 * Returns 0 with the host (brackets removed) in `host`, or -1 with the reason in `why`.
 */
static int url_parse(const char *url, bool *https, char *host, size_t hostcap, const char **why)
{
    const char *p;
    if (!strncmp(url, "https://", 8)) {
        *https = true;
        p = url + 8;
    } else if (!strncmp(url, "http://", 7)) {
        *https = false;
        p = url + 7;
    } else {
        *why = "not an http:// or https:// URL";
        return -1;
    }
    size_t alen = strcspn(p, "/?#");
    const char *end = p + alen, *h = p, *hend;
    for (const char *q = p; q < end; q++) {
        if (*q == '@') {
            *why = "user information (name@host) is not allowed; the token comes from its file";
            return -1;
        }
    }
    bool v6 = *p == '[';
    if (v6) {
        h = p + 1;
        hend = memchr(h, ']', alen - 1); /* alen >= 1: it holds the '[' */
        if (!hend) {
            *why = "an IPv6 address without its closing ']'";
            return -1;
        }
        p = hend + 1;
    } else {
        hend = h;
        while (hend < end && *hend != ':')
            hend++;
        p = hend;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0 || hlen >= hostcap) {
        *why = hlen ? "the host name is too long" : "no host";
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = 0;
    if (v6) {
        struct in6_addr a6;
        for (size_t i = 0; i < hlen; i++)
            if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.') {
                *why = "not an IPv6 address between the brackets";
                return -1;
            }
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            *why = "not an IPv6 address between the brackets";
            return -1;
        }
    } else {
        for (size_t i = 0; i < hlen; i++)
            if (!isalnum((unsigned char)host[i]) && host[i] != '.' && host[i] != '-' &&
                host[i] != '_') {
                *why = "the host may hold only letters, digits, '.', '-' and '_'";
                return -1;
            }
    }
    if (p < end) {
        /* ":port", 1-65535 */
        if (*p != ':' || end - p < 2 || end - p > 6) {
            *why = "a port is ':' and a number from 1 to 65535";
            return -1;
        }
        long port = 0;
        for (const char *q = p + 1; q < end; q++) {
            if (!isdigit((unsigned char)*q)) {
                *why = "a port is ':' and a number from 1 to 65535";
                return -1;
            }
            port = port * 10 + (*q - '0');
        }
        if (port < 1 || port > 65535) {
            *why = "a port is ':' and a number from 1 to 65535";
            return -1;
        }
    }
    for (const char *q = end; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '\\') {
            *why = "spaces, control characters and '\\' are not allowed";
            return -1;
        }
    return 0;
}

/* localhost, 127.0.0.0/8 in strict dotted decimal, or ::1: the connection stays inside this
 * machine. Any other spelling (127.1, 0177.0.0.1, a number) counts as not loopback. */
static bool host_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!strcasecmp(host, "localhost"))
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

bool config_insecure_http(const char *url)
{
    bool https;
    char host[256];
    const char *why;
    if (url_parse(url, &https, host, sizeof host, &why) != 0)
        return true;
    return !https && !host_loopback(host);
}

static int set_url(char *dst, size_t cap, const char *v, char *errbuf, size_t errlen,
                   const char *key)
{
    bool https;
    char host[256];
    const char *why;
    if (url_parse(v, &https, host, sizeof host, &why) != 0) {
        snprintf(errbuf, errlen, "%s must be an http:// or https:// URL: %s", key, why);
        return -1;
    }
    return set_str(dst, cap, v, errbuf, errlen, key);
}

static int set_str(char *dst, size_t cap, const char *v, char *errbuf, size_t errlen,
                   const char *key)
{
    size_t n = strlen(v);
    if (n >= cap) {
        snprintf(errbuf, errlen, "%s is longer than %zu bytes", key, cap - 1);
        return -1;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

static int set_bool(bool *dst, const char *v, char *errbuf, size_t errlen, const char *key)
{
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1") || !strcmp(v, "on")) {
        *dst = true;
        return 0;
    }
    if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0") || !strcmp(v, "off")) {
        *dst = false;
        return 0;
    }
    snprintf(errbuf, errlen, "%s must be true or false, not '%s'", key, v);
    return -1;
}

static int set_num(unsigned long long *dst, const char *v, int base, unsigned long long min,
                   unsigned long long max, char *errbuf, size_t errlen, const char *key)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, base);
    if (errno || end == v || *end || v[0] == '-' || x < min || x > max) {
        snprintf(errbuf, errlen, "%s must be a number from %llu to %llu, not '%s'", key, min, max,
                 v);
        return -1;
    }
    *dst = x;
    return 0;
}

const struct carrier_map *config_carrier(const struct tally_config *cfg, const char *wh,
                                         const char *carrier)
{
    const struct carrier_map *dflt = NULL;
    if (!carrier)
        return NULL;
    for (unsigned i = 0; i < cfg->ncarriers; i++) {
        const struct carrier_map *m = &cfg->carriers[i];
        if (strcasecmp(m->carrier, carrier) != 0)
            continue;
        if (m->wh[0] && wh && !strcmp(m->wh, wh))
            return m;
        if (!m->wh[0])
            dflt = m;
    }
    return dflt;
}

/* One carrier mapping: `carrier` (1-63 bytes of printable text) -> `value`, a service key (1-64
 * printable ASCII characters, no spaces), and for the key "other" its tracking website after
 * a blank; for warehouse `wh` ("" = the default). */
static int set_carrier(struct tally_config *cfg, const char *wh, const char *carrier,
                       const char *value, char *errbuf, size_t errlen)
{
    char service[80] = "", website[300] = "";
    size_t k = strcspn(value, " \t");
    if (k < sizeof service) {
        memcpy(service, value, k);
        service[k] = 0;
    }
    const char *w = value + k;
    while (*w == ' ' || *w == '\t')
        w++;
    snprintf(website, sizeof website, "%s", w);
    size_t n = strlen(carrier), nw = strlen(website);
    bool ok = n > 0 && n < sizeof cfg->carriers[0].carrier && k > 0 &&
              k < sizeof cfg->carriers[0].service && nw < sizeof cfg->carriers[0].website;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)carrier[i] >= 0x20 && carrier[i] != 0x7f;
    for (size_t i = 0; ok && i < k; i++)
        ok = service[i] > 0x20 && service[i] < 0x7f;
    for (size_t i = 0; ok && i < nw; i++)
        ok = website[i] > 0x20 && website[i] < 0x7f;
    if (!ok) {
        snprintf(errbuf, errlen,
                 "carrier mapping: the carrier must be 1-63 characters, the logistics service "
                 "key 1-64 printable characters without spaces (then, for the key other, its "
                 "tracking website)");
        return -1;
    }
    if (!strcmp(service, "other") != (nw > 0)) {
        snprintf(errbuf, errlen,
                 nw ? "carrier '%s': a tracking website goes only with the service key other"
                    : "carrier '%s': the service key other needs its tracking website after it "
                      "(other https://...)",
                 carrier);
        return -1;
    }
    for (unsigned i = 0; i < cfg->ncarriers; i++) {
        if (!strcmp(cfg->carriers[i].wh, wh) && !strcasecmp(cfg->carriers[i].carrier, carrier)) {
            snprintf(errbuf, errlen, "carrier '%s' is mapped twice", carrier);
            return -1;
        }
    }
    if (cfg->ncarriers >= TALLY_MAX_CARRIER_MAPS) {
        snprintf(errbuf, errlen, "more than %d carrier mappings", TALLY_MAX_CARRIER_MAPS);
        return -1;
    }
    struct carrier_map *m = &cfg->carriers[cfg->ncarriers++];
    snprintf(m->wh, sizeof m->wh, "%s", wh);
    snprintf(m->carrier, sizeof m->carrier, "%s", carrier);
    memcpy(m->service, service, k + 1); /* lengths checked above */
    memcpy(m->website, website, nw + 1);
    return 0;
}

int config_set(struct tally_config *cfg, const char *section, const char *key, const char *value,
               char *errbuf, size_t errlen)
{
    unsigned long long n;
    int r;
    if (!strcmp(section, "station")) {
        if (!strcmp(key, "name")) {
            if (!*value || strlen(value) > TALLY_MAX_ID_LEN) {
                snprintf(errbuf, errlen, "name must be 1-%d characters", TALLY_MAX_ID_LEN);
                return -1;
            }
            return set_str(cfg->station, sizeof cfg->station, value, errbuf, errlen, key);
        }
        if (!strcmp(key, "coordinator"))
            return set_bool(&cfg->coordinator, value, errbuf, errlen, key);
        if (!strcmp(key, "state_dir"))
            return set_str(cfg->state_dir, sizeof cfg->state_dir, value, errbuf, errlen, key);
        if (!strcmp(key, "socket"))
            return set_str(cfg->socket_path, sizeof cfg->socket_path, value, errbuf, errlen,
                           "socket path (a Unix socket path is at most 107 bytes)");
        if (!strcmp(key, "socket_mode")) {
            if ((r = set_num(&n, value, 8, 0, 0777, errbuf, errlen, key)) == 0)
                cfg->socket_mode = (unsigned)n;
            return r;
        }
        if (!strcmp(key, "writer_group"))
            return set_str(cfg->writer_group, sizeof cfg->writer_group, value, errbuf, errlen, key);
    } else if (!strcmp(section, "limits")) {
        if (!strcmp(key, "max_message_bytes")) {
            if ((r = set_num(&n, value, 10, 4096, 64u << 20, errbuf, errlen, key)) == 0)
                cfg->max_message_bytes = (size_t)n;
            return r;
        }
        if (!strcmp(key, "max_connections")) {
            if ((r = set_num(&n, value, 10, 1, 65536, errbuf, errlen, key)) == 0)
                cfg->max_connections = (unsigned)n;
            return r;
        }
        if (!strcmp(key, "max_output_bytes")) {
            if ((r = set_num(&n, value, 10, 65536, 1u << 30, errbuf, errlen, key)) == 0)
                cfg->max_output_bytes = (size_t)n;
            return r;
        }
    } else if (!strcmp(section, "log")) {
        if (!strcmp(key, "level")) {
            int l = log_level_parse(value);
            if (l < 0) {
                snprintf(errbuf, errlen, "level must be error, warning, info or debug");
                return -1;
            }
            cfg->log_level = l;
            return 0;
        }
    } else if (!strcmp(section, "sync")) {
        if (!strcmp(key, "synchronous")) {
            if (strcmp(value, "full") && strcmp(value, "normal")) {
                snprintf(errbuf, errlen, "synchronous must be full or normal");
                return -1;
            }
            cfg->sync_full = !strcmp(value, "full");
            return 0;
        }
        if (!strcmp(key, "ca_file"))
            return set_str(cfg->ca_file, sizeof cfg->ca_file, value, errbuf, errlen, key);
        if (!strcmp(key, "max_parallel")) {
            if ((r = set_num(&n, value, 10, 1, 64, errbuf, errlen, key)) == 0)
                cfg->max_parallel = (unsigned)n;
            return r;
        }
        if (!strcmp(key, "retry_max")) {
            if ((r = set_num(&n, value, 10, 1, 86400, errbuf, errlen, key)) == 0)
                cfg->retry_max_s = (unsigned)n;
            return r;
        }
        if (!strcmp(key, "request_timeout")) {
            if ((r = set_num(&n, value, 10, 1, 600, errbuf, errlen, key)) == 0)
                cfg->request_timeout_s = (unsigned)n;
            return r;
        }
        if (!strcmp(key, "reconcile_interval")) {
            if ((r = set_num(&n, value, 10, 10, 30 * 86400, errbuf, errlen, key)) == 0)
                cfg->reconcile_s = (unsigned)n;
            return r;
        }
        if (!strcmp(key, "outbox_keep_days")) {
            if ((r = set_num(&n, value, 10, 1, 3650, errbuf, errlen, key)) == 0)
                cfg->outbox_keep_days = (unsigned)n;
            return r;
        }
        /* The retention in seconds, over outbox_keep_days (tests, soak runs). */
        if (!strcmp(key, "outbox_keep_seconds")) {
            if ((r = set_num(&n, value, 10, 0, 3650 * 86400, errbuf, errlen, key)) == 0)
                cfg->outbox_keep_s = (unsigned)n;
            return r;
        }
    } else if (!strcmp(section, "marketplace")) {
        struct mp_config *m = &cfg->mp;
        if (!strcmp(key, "gateway")) {
            if ((r = set_url(m->gateway, sizeof m->gateway, value, errbuf, errlen, key)) == 0)
                m->enabled = true;
            return r;
        }
        if (!strcmp(key, "allow_insecure_http"))
            return set_bool(&m->allow_insecure_http, value, errbuf, errlen, key);
        if (!strcmp(key, "app_key"))
            return set_str(m->app_key, sizeof m->app_key, value, errbuf, errlen, key);
        if (!strcmp(key, "app_secret_file"))
            return set_str(m->app_secret_file, sizeof m->app_secret_file, value, errbuf, errlen,
                           key);
        if (!strcmp(key, "access_token_file"))
            return set_str(m->access_token_file, sizeof m->access_token_file, value, errbuf, errlen,
                           key);
        if (!strcmp(key, "sign_method")) {
            if (strcmp(value, "sha256") && strcmp(value, "md5")) {
                snprintf(errbuf, errlen, "sign_method must be sha256 or md5");
                return -1;
            }
            m->sign_md5 = !strcmp(value, "md5");
            return 0;
        }
        if (!strcmp(key, "publish_buffer")) {
            if ((r = set_num(&n, value, 10, 0, 1000000, errbuf, errlen, key)) == 0)
                m->publish_buffer = (unsigned)n;
            return r;
        }
        unsigned *iv = !strcmp(key, "catalog_interval")  ? &m->catalog_interval_s
                       : !strcmp(key, "orders_interval") ? &m->orders_interval_s
                       : !strcmp(key, "orders_overlap")  ? &m->orders_overlap_s
                                                         : NULL;
        if (iv) {
            if ((r = set_num(&n, value, 10, 1, 86400, errbuf, errlen, key)) == 0)
                *iv = (unsigned)n;
            return r;
        }
    } else if (!strcmp(section, "allocation")) {
        if (!strcmp(key, "max_distance_km")) {
            if ((r = set_num(&n, value, 10, 0, 40000, errbuf, errlen, key)) == 0)
                cfg->alloc.max_distance_km = (int)n;
            return r;
        }
        if (!strcmp(key, "priority")) {
            int k = set_list(&cfg->alloc.priority[0][0], sizeof cfg->alloc.priority[0],
                             ALLOC_MAX_WH, value, errbuf, errlen, key);
            if (k >= 0)
                cfg->alloc.npriority = k;
            return k < 0 ? -1 : 0;
        }
        if (!strcmp(key, "split"))
            return set_bool(&cfg->alloc.allow_split, value, errbuf, errlen, key);
    } else if (!strcmp(section, "priority")) {
        struct priority_rules *pr = &cfg->priority;
        if (!strcmp(key, "express_services") || !strcmp(key, "vip_levels")) {
            bool ex = !strcmp(key, "express_services");
            int k = ex ? set_list(&pr->express[0][0], sizeof pr->express[0], PRIORITY_MAX_NAMES,
                                  value, errbuf, errlen, key)
                       : set_list(&pr->vip_levels[0][0], sizeof pr->vip_levels[0],
                                  PRIORITY_MAX_NAMES, value, errbuf, errlen, key);
            if (k >= 0)
                *(ex ? &pr->nexpress : &pr->nvip) = k;
            return k < 0 ? -1 : 0;
        }
        if (!strcmp(key, "deadline_hours") || !strcmp(key, "value_minor")) {
            if ((r = set_num(&n, value, 10, 0, 1000000000000ULL, errbuf, errlen, key)) == 0)
                *(!strcmp(key, "deadline_hours") ? &pr->deadline_hours : &pr->value_minor) =
                    (int64_t)n;
            return r;
        }
        int *pv = !strcmp(key, "deadline_points")  ? &pr->deadline_points
                  : !strcmp(key, "value_points")   ? &pr->value_points
                  : !strcmp(key, "express_points") ? &pr->express_points
                  : !strcmp(key, "vip_points")     ? &pr->vip_points
                                                   : NULL;
        if (pv) {
            if ((r = set_num(&n, value, 10, 0, 1000000, errbuf, errlen, key)) == 0)
                *pv = (int)n;
            return r;
        }
    } else if (!strcmp(section, "exceptions")) {
        unsigned *uv = !strcmp(key, "deadline_hours")          ? &cfg->exc_deadline_h
                       : !strcmp(key, "ship_by_warning_hours") ? &cfg->ship_by_warning_h
                                                               : NULL;
        if (uv) {
            if ((r = set_num(&n, value, 10, 1, 24 * 365, errbuf, errlen, key)) == 0)
                *uv = (unsigned)n;
            return r;
        }
    } else if (!strcmp(section, "privacy")) {
        if (!strcmp(key, "retain_days")) {
            if ((r = set_num(&n, value, 10, 0, 3650, errbuf, errlen, key)) == 0)
                cfg->retain_days = (unsigned)n;
            return r;
        }
    } else if (!strcmp(section, "stock")) {
        if (!strcmp(key, "stale_policy")) {
            if (strcmp(value, "keep") && strcmp(value, "zero")) {
                snprintf(errbuf, errlen, "stale_policy must be keep or zero");
                return -1;
            }
            cfg->stale_zero = !strcmp(value, "zero");
            return 0;
        }
        unsigned *uv = !strcmp(key, "sales_window_days")    ? &cfg->sales_window_days
                       : !strcmp(key, "restock_cover_days") ? &cfg->restock_cover_days
                       : !strcmp(key, "stale_after")        ? &cfg->stale_after_s
                                                            : NULL;
        if (uv) {
            unsigned long long hi = uv == &cfg->stale_after_s ? 30ULL * 86400 : 365;
            if ((r = set_num(&n, value, 10, 1, hi, errbuf, errlen, key)) == 0)
                *uv = (unsigned)n;
            return r;
        }
    } else if (!strcmp(section, "carriers")) {
        return set_carrier(cfg, "", key, value, errbuf, errlen);
    } else if (!strncmp(section, "warehouse ", 10)) {
        struct wh_config *w = warehouse_section(cfg, section + 10, errbuf, errlen);
        if (!w)
            return -1;
        if (!strncmp(key, "carrier.", 8))
            return set_carrier(cfg, w->code, key + 8, value, errbuf, errlen);
        if (!strcmp(key, "url"))
            return set_url(w->url, sizeof w->url, value, errbuf, errlen, key);
        if (!strcmp(key, "allow_insecure_http"))
            return set_bool(&w->allow_insecure_http, value, errbuf, errlen, key);
        if (!strcmp(key, "token_file"))
            return set_str(w->token_file, sizeof w->token_file, value, errbuf, errlen, key);
        if (!strcmp(key, "kind")) {
            int k = wh_kind_parse(value);
            if (k < 0) {
                snprintf(errbuf, errlen, "kind must be tally, goodcang or fourpx (not '%.40s')",
                         value);
                return -1;
            }
            w->kind = k;
            return 0;
        }
        if (!strcmp(key, "app_key"))
            return set_str(w->app_key, sizeof w->app_key, value, errbuf, errlen, key);
        if (!strcmp(key, "app_token_file"))
            return set_str(w->app_token_file, sizeof w->app_token_file, value, errbuf, errlen, key);
        if (!strcmp(key, "app_secret_file"))
            return set_str(w->app_secret_file, sizeof w->app_secret_file, value, errbuf, errlen,
                           key);
        if (!strcmp(key, "access_token_file"))
            return set_str(w->access_token_file, sizeof w->access_token_file, value, errbuf, errlen,
                           key);
        if (!strcmp(key, "remote_code"))
            return set_str(w->remote_code, sizeof w->remote_code, value, errbuf, errlen, key);
        if (!strcmp(key, "shipping_method"))
            return set_str(w->shipping_method, sizeof w->shipping_method, value, errbuf, errlen,
                           key);
        if (!strcmp(key, "name"))
            return set_str(w->name, sizeof w->name, value, errbuf, errlen, key);
        if (!strcmp(key, "country")) {
            if (strlen(value) != 2 || !isupper((unsigned char)value[0]) ||
                !isupper((unsigned char)value[1])) {
                snprintf(errbuf, errlen, "country must be 2 upper-case letters (ISO 3166)");
                return -1;
            }
            memcpy(w->country, value, 3);
            return 0;
        }
        if (!strcmp(key, "serves_marketplace"))
            return set_bool(&w->serves_marketplace, value, errbuf, errlen, key);
        if (!strcmp(key, "fulfilment")) {
            if (strcmp(value, "outbound") && strcmp(value, "station") && strcmp(value, "none")) {
                snprintf(errbuf, errlen, "fulfilment must be outbound, station or none");
                return -1;
            }
            return set_str(w->fulfilment, sizeof w->fulfilment, value, errbuf, errlen, key);
        }
        unsigned *iv = !strcmp(key, "inventory_interval")  ? &w->inventory_interval_s
                       : !strcmp(key, "outbound_interval") ? &w->outbound_interval_s
                                                           : NULL;
        if (iv) {
            if ((r = set_num(&n, value, 10, 1, 86400, errbuf, errlen, key)) == 0)
                *iv = (unsigned)n;
            return r;
        }
    } else {
        snprintf(errbuf, errlen, "unknown section [%s]", section);
        return -1;
    }
    snprintf(errbuf, errlen, "unknown key '%s' in [%s]", key, section);
    return -1;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    return s;
}

int config_load(struct tally_config *cfg, const char *path, char *errbuf, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[1024], section[64] = "";
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char err[256];
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(errbuf, errlen, "%s:%d: line too long", path, lineno);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (!e || e[1] || (size_t)(e - s - 1) >= sizeof section) {
                snprintf(errbuf, errlen, "%s:%d: bad section header", path, lineno);
                rc = -1;
                break;
            }
            *e = 0;
            snprintf(section, sizeof section, "%s", trim(s + 1));
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq || !section[0]) {
            snprintf(errbuf, errlen, "%s:%d: expected 'key = value' inside a [section]", path,
                     lineno);
            rc = -1;
            break;
        }
        *eq = 0;
        if (config_set(cfg, section, trim(s), trim(eq + 1), err, sizeof err) != 0) {
            snprintf(errbuf, errlen, "%s:%d: %s", path, lineno, err);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

int config_check(const struct tally_config *cfg, char *errbuf, size_t errlen)
{
    const struct mp_config *m = &cfg->mp;
    if (m->enabled && (!m->app_key[0] || !m->app_secret_file[0] || !m->access_token_file[0])) {
        snprintf(errbuf, errlen,
                 "[marketplace] needs app_key, app_secret_file and access_token_file");
        return -1;
    }
    /* Plain http:// sends the token in clear: only to this machine, or when the section says
     * so in as many words (logged as a warning at every start: config_warn_insecure). */
    if (m->enabled && !m->allow_insecure_http && config_insecure_http(m->gateway)) {
        snprintf(errbuf, errlen,
                 "[marketplace] gateway: plain http:// to a host other than this machine sends "
                 "the app's signature and token in clear; use https://, or set "
                 "allow_insecure_http = true in [marketplace]");
        return -1;
    }
    for (unsigned i = 0; i < cfg->nwh; i++) {
        const struct wh_config *w = &cfg->wh[i];
        if (!w->url[0]) {
            snprintf(errbuf, errlen, "[warehouse %s] needs url", w->code);
            return -1;
        }
        const char *need = NULL;
        switch (w->kind) {
        case WH_KIND_TALLY:
            need = !w->token_file[0] ? "token_file (kind = tally)" : NULL;
            break;
        case WH_KIND_GOODCANG:
            need = !w->app_key[0] || !w->app_token_file[0]
                       ? "app_key and app_token_file (kind = goodcang)"
                       : NULL;
            break;
        case WH_KIND_FOURPX:
            need = !w->app_key[0] || !w->app_secret_file[0]
                       ? "app_key and app_secret_file (kind = fourpx)"
                       : NULL;
            break;
        }
        if (need) {
            snprintf(errbuf, errlen, "[warehouse %s] needs %s", w->code, need);
            return -1;
        }
        if (w->kind != WH_KIND_TALLY && !strcmp(w->fulfilment, "station")) {
            snprintf(errbuf, errlen,
                     "[warehouse %s] fulfilment = station: a %s warehouse picks and ships in its "
                     "own system; use fulfilment = outbound (or none)",
                     w->code, wh_kind_name(w->kind));
            return -1;
        }
        if (!w->allow_insecure_http && config_insecure_http(w->url)) {
            snprintf(errbuf, errlen,
                     "[warehouse %s] url: plain http:// to a host other than this machine sends "
                     "the token in clear; use https://, or set allow_insecure_http = true in "
                     "[warehouse %s]",
                     w->code, w->code);
            return -1;
        }
    }
    return 0;
}

void config_warn_insecure(const struct tally_config *cfg)
{
    if (cfg->mp.enabled && config_insecure_http(cfg->mp.gateway))
        log_warn("[marketplace] gateway is plain http:// to another machine "
                 "(allow_insecure_http = true): requests and their signatures travel in clear");
    for (unsigned i = 0; i < cfg->nwh; i++)
        if (config_insecure_http(cfg->wh[i].url))
            log_warn("[warehouse %s] url is plain http:// to another machine "
                     "(allow_insecure_http = true): its token travels in clear",
                     cfg->wh[i].code);
}

int config_check_files(const struct tally_config *cfg, const char *path, char *errbuf,
                       size_t errlen)
{
    struct stat sb;
    /* The file names the secret files, the upstreams and the accounts: others have no
     * business reading it, and one others may write could point tallyd anywhere. */
    if (path && stat(path, &sb) == 0 && (sb.st_mode & 077)) {
        snprintf(errbuf, errlen,
                 "config file %s is mode %04o: group or others may read it; chmod 600 %s "
                 "(owned by the user tallyd runs as)",
                 path, (unsigned)(sb.st_mode & 07777), path);
        return -1;
    }
    /* A CA bundle that cannot be read would fail every TLS handshake later with a message
     * about certificates: say now what is wrong. */
    if (cfg->ca_file[0]) {
        int fd = open(cfg->ca_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(errbuf, errlen, "[sync] ca_file %s: %s", cfg->ca_file, strerror(errno));
            return -1;
        }
        int bad = fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode);
        close(fd);
        if (bad) {
            snprintf(errbuf, errlen, "[sync] ca_file %s is not a regular file", cfg->ca_file);
            return -1;
        }
    }
    return 0;
}
