#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
            r = set_num(&n, value, 8, 0, 0777, errbuf, errlen, key);
            cfg->socket_mode = (unsigned)n;
            return r;
        }
        if (!strcmp(key, "writer_group"))
            return set_str(cfg->writer_group, sizeof cfg->writer_group, value, errbuf, errlen, key);
    } else if (!strcmp(section, "limits")) {
        if (!strcmp(key, "max_message_bytes")) {
            r = set_num(&n, value, 10, 4096, 64u << 20, errbuf, errlen, key);
            cfg->max_message_bytes = (size_t)n;
            return r;
        }
        if (!strcmp(key, "max_connections")) {
            r = set_num(&n, value, 10, 1, 65536, errbuf, errlen, key);
            cfg->max_connections = (unsigned)n;
            return r;
        }
        if (!strcmp(key, "max_output_bytes")) {
            r = set_num(&n, value, 10, 65536, 1u << 30, errbuf, errlen, key);
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
