/* The loop's hot reads in one read transaction per turn (loopread.h). */
#include "loopread.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <sqlite3.h>
#include <uv.h>

#include "log.h"
#include "store.h"
#include "tallyd.h"
#include "worker.h"

struct loopread {
    struct store *st;
    uv_check_t end;      /* the turn's end */
    uv_prepare_t before; /* before the loop waits (a read after the turn's end, or before it) */
    bool open;           /* a read transaction is open on st */
    bool stopped;
    /* what was committed when it began: tallyd's commits, and the loop's connection's changes */
    uint64_t seq;
    int64_t changes;
};

static void end_tx(struct loopread *lr)
{
    if (!lr->open)
        return;
    lr->open = false;
    uv_check_stop(&lr->end);
    uv_prepare_stop(&lr->before);
    /* (a read transaction's end cannot fail but for misuse; none is left open all the same) */
    if (store_run(lr->st, "COMMIT", "loop read") != 0 && !sqlite3_get_autocommit(store_db(lr->st)))
        sqlite3_exec(store_db(lr->st), "ROLLBACK", NULL, NULL, NULL);
}

static void on_turn_end(uv_check_t *h)
{
    end_tx(h->data);
}

static void on_before_wait(uv_prepare_t *h)
{
    end_tx(h->data);
}

int loopread_start(struct tallyd *d)
{
    struct loopread *lr = calloc(1, sizeof *lr);
    if (!lr)
        return -1;
    char err[300];
    if (store_open_extra(store_path(d->store), d->cfg.sync_full, true, &lr->st, err, sizeof err) !=
        0) {
        log_warn("loop reads on the loop's connection: %s", err);
        free(lr);
        return -1;
    }
    store_set_cache_kib(lr->st, WORKER_READ_CACHE_KIB);
    uv_check_init(d->loop, &lr->end);
    lr->end.data = lr;
    uv_unref((uv_handle_t *)&lr->end);
    uv_prepare_init(d->loop, &lr->before);
    lr->before.data = lr;
    uv_unref((uv_handle_t *)&lr->before);
    d->lread = lr;
    return 0;
}

struct store *loopread(struct tallyd *d)
{
    struct loopread *lr = d->lread;
    if (!lr || lr->stopped)
        return d->store;
    uint64_t seq = store_commit_seq();
    int64_t changes = sqlite3_total_changes64(store_db(d->store));
    if (lr->open && (seq != lr->seq || changes != lr->changes))
        end_tx(lr);
    if (!lr->open) {
        /* read before BEGIN: a commit between them is in the snapshot and ends it next time */
        lr->seq = seq;
        lr->changes = changes;
        if (store_run(lr->st, "BEGIN", "loop read") != 0)
            return d->store;
        lr->open = true;
        uv_check_start(&lr->end, on_turn_end);
        uv_prepare_start(&lr->before, on_before_wait);
    }
    return lr->st;
}

void loopread_stop(struct tallyd *d)
{
    struct loopread *lr = d->lread;
    if (!lr || lr->stopped)
        return;
    end_tx(lr);
    lr->stopped = true;
    uv_close((uv_handle_t *)&lr->end, NULL);
    uv_close((uv_handle_t *)&lr->before, NULL);
}

void loopread_free(struct tallyd *d)
{
    struct loopread *lr = d->lread;
    if (!lr)
        return;
    end_tx(lr);
    store_close(lr->st);
    free(lr);
    d->lread = NULL;
}
