/*
 * tallyd.conf: an INI file of [section] and `key = value` lines; `#` and `;` start comments.
 * Every key is documented in README.md ("Configuration"). Unknown sections or keys are errors,
 * so a typo never silently leaves a default in force.
 */
#ifndef TALLY_CONFIG_H
#define TALLY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct tally_config {
    char station[65];         /* [station] name; default: host name */
    bool coordinator;         /* [station] coordinator; default true */
    char state_dir[512];      /* [station] state_dir; default /var/lib/tally */
    char socket_path[108];    /* [station] socket; default /run/tally/tally.sock */
    unsigned socket_mode;     /* [station] socket_mode; default 0660 */
    char writer_group[65];    /* [station] writer_group; default tally-writers ("" = none) */
    size_t max_message_bytes; /* [limits] */
    unsigned max_connections;
    size_t max_output_bytes;
    int log_level;  /* [log] level */
    bool sync_full; /* [sync] synchronous = full (default) | normal */
};

/* Fills `cfg` with the defaults. */
void config_defaults(struct tally_config *cfg);

/*
 * Reads `path` over the current values. Returns 0, or -1 with a message naming the file and
 * line in errbuf.
 */
int config_load(struct tally_config *cfg, const char *path, char *errbuf, size_t errlen);

/* Sets one key as if read from the file (used for command-line overrides and by tests). */
int config_set(struct tally_config *cfg, const char *section, const char *key, const char *value,
               char *errbuf, size_t errlen);

#endif
