/*
 * Connector for a third-party warehouse run on the Goodcang OMS open API (UPSTREAM.md §3).
 * Not written yet: every pull is a stream error that says so and every push waits (its rows
 * stay pending), so the station's own capabilities (what it refuses for such a warehouse)
 * work before the connector does.
 */
#include <stdio.h>
#include <stdlib.h>

#include "upstream.h"

static const char *const gc_streams[] = {"inventory", "outbound"};

static int gc_init(struct upstream *u, char *err, size_t errlen)
{
    (void)u;
    (void)err;
    (void)errlen;
    return 0;
}

static void release_page(struct pull_page *pg)
{
    free(pg);
}

static void gc_pull(struct upstream *u, int stream, const struct checkpoint *cp)
{
    (void)cp;
    struct pull_page *pg = calloc(1, sizeof *pg);
    if (!pg)
        return;
    pg->outcome = SYNC_PERMANENT;
    pg->retry_after_s = -1;
    pg->release = release_page;
    snprintf(pg->error, sizeof pg->error, "this build has no Goodcang connector yet");
    sync_pull_done(u, stream, pg);
}

static void gc_push(struct upstream *u, struct push_batch *b)
{
    (void)u;
    b->outcome = SYNC_TRANSIENT;
    b->retry_after_s = -1;
    snprintf(b->error, sizeof b->error, "this build has no Goodcang connector yet");
    for (int i = 0; i < b->n; i++)
        b->items[i].outcome = SYNC_TRANSIENT;
    sync_push_done(b);
}

static void gc_free(struct upstream *u)
{
    (void)u;
}

const struct connector_ops conn_goodcang_ops = {
    .kind = "goodcang",
    .caps = CAP_INBOUND_NOTICE | CAP_OUTBOUND | CAP_STOCK_LOG,
    .nstreams = 2,
    .streams = gc_streams,
    .push_limit = 1,
    .init = gc_init,
    .pull = gc_pull,
    .push = gc_push,
    .free = gc_free,
};
