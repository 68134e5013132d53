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
#include "retain.h"

struct store;
struct server;
struct sync_engine;
struct fulfil;
struct privacy;
struct cover_job;
struct workers;
struct gcommit;
struct titleidx;
struct retain_job;

/* coord.c: this station's mark and what it knows of other coordinators. */
struct coord_state {
    bool loaded;     /* the station id was read */
    bool reads_done; /* every outbound warehouse's orders were read once */
    uint64_t id;     /* the station id (0: unknown) */
    char mark[64];   /* "<name>#<16 hex>" */
    struct {
        uint64_t id;     /* another coordinator's station id */
        int64_t ack_at;  /* its exception's last resolution (0: none) */
        int64_t read_at; /* when ack_at was read */
    } acks[8];
    int nacks;
};

struct tallyd {
    uv_loop_t *loop;
    struct tally_config cfg;
    struct store *store;
    struct server *server;
    struct sync_engine *sync;
    struct fulfil *fulfil;    /* fulfil.c: the order lifecycle's timer */
    struct privacy *privacy;  /* privacy.c: the purge in progress, or NULL */
    struct cover_job *cover;  /* cover.c: the days-of-cover refresh in progress, or NULL */
    struct workers *workers;  /* worker.c: jobs off the loop, the writer lock */
    struct gcommit *gc;       /* gcommit.c: writes of one loop turn share a commit */
    struct coord_state coord; /* coord.c */
    struct titleidx *titles;  /* titleidx.c: the title index filled in the background */
    struct loopread *lread;   /* loopread.c: the loop's hot reads, a snapshot held ~1 ms */

    /* retain.c: the outbox retention pass in progress (or NULL), and what the passes did */
    struct retain_job *retain;
    struct retain_stats retained;

    int64_t started_at;
    bool have_writer_gid; /* writer_group resolved to a gid at start */
    gid_t writer_gid;
    bool stopping;
};

#endif
