/*
 * Fuzz target: an arbitrary tallyd.conf through the daemon's config reader (config_load, every
 * key's parser through config_set) and the whole-file checks (config_check), as main.c reads
 * it at start. The bytes are written to a file first: config_load reads a path.
 * Checks: an error names the file; a file accepted leaves every bound the daemon relies on
 * (counts within their arrays, strings terminated).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* In memory when the machine has /dev/shm: a replica per input on a disk is slow. */
static char fz_dir[64];
static char fz_path[96];

static void fz_cleanup(void)
{
    unlink(fz_path);
    rmdir(fz_dir);
}

static void fz_terminated(const char *s, size_t cap)
{
    if (!memchr(s, 0, cap))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tally_config cfg;
    if (!fz_path[0]) {
        snprintf(fz_dir, sizeof fz_dir, "%s/tally-fuzzcfg.XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(fz_dir))
            abort();
        snprintf(fz_path, sizeof fz_path, "%s/tallyd.conf", fz_dir);
        atexit(fz_cleanup);
    }
    int fd = open(fz_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        abort();
    close(fd);
    char err[512] = "";
    config_defaults(&cfg);
    if (config_load(&cfg, fz_path, err, sizeof err) != 0) {
        if (strncmp(err, fz_path, strlen(fz_path)) != 0)
            abort(); /* a load error names the file (and line) */
        return 0;
    }
    if (config_check(&cfg, err, sizeof err) != 0) {
        if (!err[0])
            abort();
        return 0;
    }
    if (cfg.nwh > TALLY_MAX_UPSTREAM_WAREHOUSES || cfg.ncarriers > TALLY_MAX_CARRIER_MAPS)
        abort();
    fz_terminated(cfg.station, sizeof cfg.station);
    fz_terminated(cfg.state_dir, sizeof cfg.state_dir);
    fz_terminated(cfg.socket_path, sizeof cfg.socket_path);
    fz_terminated(cfg.mp.gateway, sizeof cfg.mp.gateway);
    for (unsigned i = 0; i < cfg.nwh; i++) {
        const struct wh_config *w = &cfg.wh[i];
        fz_terminated(w->code, sizeof w->code);
        fz_terminated(w->url, sizeof w->url);
        if (!wh_kind_name(w->kind) || !w->code[0])
            abort();
        /* config_check's promise: no token in clear to another machine unless allowed */
        if (!w->allow_insecure_http && config_insecure_http(w->url))
            abort();
    }
    for (unsigned i = 0; i < cfg.ncarriers; i++) {
        fz_terminated(cfg.carriers[i].carrier, sizeof cfg.carriers[i].carrier);
        if (config_carrier(&cfg, cfg.carriers[i].wh, cfg.carriers[i].carrier) == NULL)
            abort(); /* a mapping read is found again */
    }
    return 0;
}
