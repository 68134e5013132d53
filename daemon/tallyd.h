/*
 * The daemon's single context, passed down to every module that needs more than its own state.
 * Owned by main.c; nothing else in tallyd is global and mutable.
 */
#ifndef TALLY_TALLYD_H
#define TALLY_TALLYD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "config.h"

struct store;
struct server;
struct sync_engine;
struct fulfil;
struct privacy;
struct workers;
struct gcommit;

struct tallyd {
    uv_loop_t *loop;
    struct tally_config cfg;
    struct store *store;
    struct server *server;
    struct sync_engine *sync;
    struct fulfil *fulfil;   /* fulfil.c: the order lifecycle's timer */
    struct privacy *privacy; /* privacy.c: the purge in progress, or NULL */
    struct workers *workers; /* worker.c: jobs off the loop, the writer lock */
    struct gcommit *gc;      /* gcommit.c: writes of one loop turn share a commit */
    int64_t started_at;
    bool have_writer_gid; /* writer_group resolved to a gid at start */
    gid_t writer_gid;
    bool stopping;
};

#endif
