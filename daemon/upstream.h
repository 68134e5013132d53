/*
 * The contract between the sync engine (sync.c) and the upstream connectors (conn_*.c).
 *
 * A connector knows one upstream's API: how to fetch the next page of each of its streams and
 * how to send a batch of outbox rows, and how to classify the answers (done, duplicate,
 * transient, permanent). It knows nothing of scheduling, retries or transactions. The engine
 * knows nothing of any API: it decides what runs when, applies each page in one transaction
 * with its checkpoint, and records push outcomes. A new marketplace or warehouse system is one
 * new connector file.
 *
 * Everything runs on the daemon's loop; connectors call back with sync_pull_done() and
 * sync_push_done() from their HTTP completions.
 */
#ifndef TALLY_UPSTREAM_H
#define TALLY_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "tallyd.h"
#include "http.h"
#include "secret.h"
#include "store.h"

enum sync_outcome {
    SYNC_OK = 0,        /* done (for a push item: applied, or a duplicate of an applied one) */
    SYNC_TRANSIENT = 1, /* network, timeout, 5xx, 429, unreadable answer: retry later */
    SYNC_PERMANENT = 2, /* the upstream refused it (4xx validation): hold for the operator */
    SYNC_AUTH = 3,      /* the upstream refused our credentials (HTTP 401/403, a bad token or
                         * signature): no row or value is at fault; the whole upstream waits
                         * (link auth_failed, one exception) until its secret files change or
                         * `tally sync` asks again, and the rows stay pending */
};

/* A pull stream's position, stored in `checkpoints` and advanced with each applied page. */
struct checkpoint {
    char stream[96];
    char cursor[256]; /* "" when none */
    int64_t version;
    int64_t modified_since;
    int64_t rows_total;
    bool reconcile; /* set by the engine for a reconciliation round: read everything again */
};

struct pull_page {
    int outcome;
    char error[256];
    long retry_after_s; /* -1 when none */
    bool more;          /* another page follows in this round */
    int64_t rows;       /* rows in this page */
    int64_t total;      /* rows expected in the round, -1 when unknown */
    int64_t repaired;   /* rows of a reconciliation round that differed from the replica */
    bool no_request;    /* the page asked the upstream nothing: it says nothing of the link */
    /* Applies the rows and writes the advanced position into *cp. Runs inside the engine's
     * transaction; returns 0 or a TALLY_E_* code (the transaction is then rolled back). */
    int (*apply)(struct pull_page *pg, struct store *st, struct checkpoint *cp, char *err,
                 size_t errlen);
    void (*release)(struct pull_page *pg);
    void *data;
    /*
     * Off the loop (sync.c, worker.h): with off_loop set, the engine applies the page in a
     * write job on the worker's connection. `apply_slice` and `apply` then run on a worker
     * thread and may use only `st` and the page's own data (never u->d, u->store, the
     * connector's shared state or anything of the loop; what must reach the loop is held with
     * store_after_commit on `st`). When apply_slice is set, the engine calls it in
     * transactions of about WORKER_SLICE_US: it applies rows from where the last slice stopped
     * until sync_slice_clock_us() >= until_us and sets *finished once no row is left; in the
     * transaction where it finished, `apply` follows (it then has no rows left, only the
     * position to write into *cp) with the checkpoint. A crash between slices leaves the
     * checkpoint at the previous page: the page is applied again, so applying a row twice must
     * have the effect of once (versions).
     */
    bool off_loop;
    int (*apply_slice)(struct pull_page *pg, struct store *st, int64_t until_us, bool *finished,
                       char *err, size_t errlen);
    /* Optional, with off_loop: run once on a pool thread before the page's write job, with no
     * connection (only the page's own data): reads the rows out of the answer, so that the
     * writer only writes them while the next page is read beside it. When it cannot, it leaves
     * the page as it was (apply_slice then reads the rows itself). */
    void (*prepare)(struct pull_page *pg);
    bool prepared; /* the engine ran prepare (sync.c) */
    /* Optional, with off_loop: called by the page's job before its first slice, in transactions
     * of its own on the writer's second connection, whose triggers are off (worker_bulk_store),
     * until it sets *done: makes the placeholders of the page's SKUs the replica does not know
     * yet, doing the work of the triggers itself (whfeed_skus_begin). The slices then find them;
     * whatever it leaves (it failed, it stopped early) they make as before, with the triggers. */
    int (*make_skus)(struct pull_page *pg, struct store *st, int64_t until_us, bool *done);
    /* In a write job: the SKU ids the writer learnt (whfeed.h whfeed_ids; the job's thread
     * alone uses it, and ends each of the job's transactions there: whfeed_ids_end); NULL on
     * the loop. */
    struct whfeed_ids *ids;
    /* Pipelining: with `more`, the next page's request may go out before this page is applied,
     * from the same position with this cursor (the page's apply writes that cursor and leaves
     * the version as it was). "" when the connector does not offer it. */
    char next_cursor[256];
    /* Set by a connector's apply_slice at the start of each transaction from whfeed_plain():
     * whfeed_stock may then apply a row of a SKU the replica knows in one statement. */
    bool plain;
    /* whfeed_stock_batch: the page's last batch had SKUs new to the replica (the first
     * warehouse of an initial sync), so the next one makes their placeholders first. */
    bool batch_new;
    /* whfeed_stock_batch: the page's rows its multi-row statements applied (the rest went row
     * by row); for tests and diagnostics. */
    int64_t batched;
    int64_t by_id; /* of those, the rows written by their SKUs' ids (whfeed_ids) */
};

struct push_item {
    int64_t outbox_id;
    char key[80];
    char kind[16]; /* the outbox row's kind by name (outbox.h) */
    int okind;     /* and as enum outbox_kind */
    /* An earlier attempt may have reached the upstream (outbox.sent_at was set before this
     * one): an upstream without an idempotency key is asked what it has (by the reference)
     * before the request is sent again. */
    bool maybe_sent;
    int64_t attempts; /* the row's attempts before this one (outbox.attempts when taken) */
    char entity[80];
    void *payload; /* MessagePack map, owned by the batch */
    size_t payload_len;
    /* outcome, set by the connector */
    int outcome;
    char error[256];
    int64_t version;    /* the upstream's version after applying it, 0 when unknown */
    int64_t to_version; /* a transfer's version at the receiving warehouse, 0 when unknown */
};

struct upstream;

struct push_batch {
    struct upstream *u;
    struct push_item *items;
    int n;
    int outcome; /* for the whole batch when the answer did not say per item */
    char error[256];
    long retry_after_s;      /* -1 when none */
    void *data;              /* the connector's */
    struct push_batch *next; /* the engine's: outcomes waiting to be recorded (sync.c), or
                                batches waiting for a sync (parked) */
    uint64_t park_seq;       /* sent once commits up to it are durable (sync.c take_batch) */
    uint64_t link_gen;       /* the upstream's link_gen when taken, or sent if parked (sync.c) */
};

/* Marketplace stock publishing (the coordinator only): the newest absolute value per SKU. */
struct publish_item {
    char sku[80];
    char product_id[80]; /* the marketplace's product id of the SKU */
    int64_t value;
    int64_t gen; /* the publish row's generation when read; a newer one keeps it dirty */
    int outcome;
    char error[256];
};

struct publish_batch {
    struct upstream *u;
    struct publish_item *items;
    int n;
    int outcome; /* for the whole batch when the answer did not say per item */
    char error[256];
    long retry_after_s;
    void *data;        /* the connector's */
    uint64_t park_seq; /* sent once commits up to it are durable (sync.c take_publish) */
    uint64_t link_gen; /* the upstream's link_gen when taken, or sent if parked (sync.c) */
};

/* What a connector can do (connector_ops.caps; DESIGN.md "Warehouse kinds"): the engine, the
 * CLI and `status` follow these. A write the warehouse's connector cannot carry is refused at
 * the station with what to do instead, never queued to be refused upstream. */
enum conn_cap {
    CAP_MOVEMENTS = 1u << 0,      /* receive / pick / adjust / count / return recorded there */
    CAP_TRANSFER_OUT = 1u << 1,   /* transfers out of it to another warehouse */
    CAP_TRANSFER_IN = 1u << 2,    /* transfers into it (a tally warehouse records the leg) */
    CAP_INBOUND_NOTICE = 1u << 3, /* announces goods coming in (outbox kind "inbound") */
    CAP_OUTBOUND = 1u << 4,       /* outbound orders and their cancels */
    CAP_STOCK_LOG = 1u << 5,      /* an incremental stock log besides full stock reads */
};

struct connector_ops {
    const char *kind; /* "wms", "goodcang", "fourpx", "aliexpress" */
    unsigned caps;    /* enum conn_cap; 0 for the marketplace */
    int nstreams;
    const char *const *streams; /* names, e.g. "inventory", "outbound" */
    int push_limit;             /* rows per batch the API accepts */
    int (*init)(struct upstream *u, char *err, size_t errlen);
    void (*pull)(struct upstream *u, int stream, const struct checkpoint *cp);
    void (*push)(struct upstream *u, struct push_batch *b);
    void (*free)(struct upstream *u);
    /* Optional: sends marketplace stock values; calls sync_publish_done(b) later. */
    void (*publish)(struct upstream *u, struct publish_batch *b);
    int publish_limit; /* SKUs per call */
    /* Optional: reads the upstream's secrets again (after its files changed); 0 or -1. */
    int (*reload)(struct upstream *u, char *err, size_t errlen);
};

enum link_state { LINK_UNKNOWN, LINK_UP, LINK_DOWN, LINK_AUTH_FAILED };

#define UPSTREAM_MAX_STREAMS 4

struct page_job; /* sync.c */

struct stream_state {
    char name[96];     /* checkpoint name: "wh:ES-MAD:inventory" */
    bool running;      /* a page request is in flight */
    uint64_t pull_gen; /* the upstream's link_gen when its last request went out */
    bool in_round;     /* between the first page and the last of a round */
    bool requested;    /* `sync` asked for a round */
    uint64_t due_ms;   /* next round (loop time) */
    unsigned interval_s;
    int64_t round_rows, round_pages, round_total;
    uint64_t round_started_ms;
    int64_t round_started_at; /* wall clock, seconds: what "after this round began" means */
    int64_t last_round_rows;
    bool reconcilable;       /* the connector can read the whole stream again (since 0) */
    bool reconciling;        /* this round is a reconciliation */
    uint64_t reconcile_ms;   /* next reconciliation round (loop time) */
    int64_t repaired;        /* rows repaired by reconciliation since start */
    int64_t last_success_at; /* wall clock, seconds */
    char last_error[256];
    /* Pages applied off the loop (sync.c): a page's write job is under way; the page fetched
     * meanwhile waits (one at most); the position after the page being applied, for the next
     * request (pipelining); the page in flight is dropped when the one before it failed. */
    bool applying;
    struct pull_page *waiting;
    bool has_ahead;
    struct checkpoint ahead;
    struct checkpoint asked; /* the position the request in flight was made from */
    bool drop_inflight;
    struct page_job *job;
    /* A page applied on the loop that found a group commit open or in flight (store_begin_yield):
     * it waits here (`applying` set) and is applied when the commit returns, or at the next
     * tick, so the loop never waits for that commit's fsync. */
    struct pull_page *parked;
    bool round_done_due;      /* inventory_round_done gave way to a group commit: again at a tick */
    int64_t round_done_began; /* ... for the round that began then */
};

struct sync_engine;

struct upstream {
    char name[80]; /* "mp" or "wh:ES-MAD": the outbox target */
    char code[65]; /* warehouse code; "" for the marketplace */
    const struct connector_ops *ops;
    struct sync_engine *engine;
    struct tallyd *d; /* for events (events.h) */
    struct store *store;
    const struct wh_config *wh; /* for a warehouse */
    const struct mp_config *mp; /* for the marketplace */
    struct http *http;
    void *conn;                 /* the connector's state */
    unsigned request_timeout_s; /* [sync] request_timeout */
    int link;
    int failures;           /* consecutive transport failures */
    uint64_t down_since_ms; /* loop time of the first failure of the current outage */
    uint64_t resume_ms;     /* backoff: nothing is sent before this loop time */
    /* The link is back after an outage (link_ok, OUTAGE_MS): the next take first makes this
     * upstream's rows waiting out a retry backoff due (sync.c lift_backoff). */
    bool lift_backoff;
    /* Counts the link's returns after an outage. A request that went out before the last one
     * (its batch's or stream's link_gen is older) and fails for the network failed in the
     * outage that is over: it neither takes the link down again nor backs its rows off. */
    uint64_t link_gen;
    int64_t last_success_at, last_error_at;
    char last_error[256];
    int inflight_pushes;
    bool publishing;                  /* a publish batch is in flight (one at a time) */
    struct publish_batch *pub_parked; /* that batch, while it waits for a sync (sync.c) */
    /* The files of its secrets (token, app secret), watched while the link is auth_failed. */
    const char *secret_files[2];
    struct secret_stamp secret_stamps[2];
    uint64_t secret_check_ms; /* next look at the files (loop time) */
    /* The outbox id after which the next push batch's look starts (sync.c take_batch): 0 from
     * the oldest row; further on while the oldest rows cannot go, so they hide none. */
    int64_t push_from;
    int probe_next; /* while the link is down: the stream whose turn the next probe is */
    /* Marketplace publishing follows the orders rounds (sync.c publish_gate): the orders
     * stream's index (-1: none, publishing is not gated), and whether values computed now
     * are at least as fresh as the last completed orders round (set when one completes,
     * cleared when the next begins and when nothing is left to publish). */
    int orders_stream;
    bool pub_open;
    /* The orders round under way began in this run from its first page and no page of it has
     * failed since: only such a round's end opens publishing. A round resumed (after a failed
     * page: its list may be reused, read long ago; after a restart) proves nothing of the
     * orders placed while it waited: another round follows at once. */
    bool pub_round_whole;
    uint64_t pub_round_ms; /* loop time the last orders round completed */
    bool freed;            /* ops->free ran (sync_stop, or after its last page job) */
    /* take_publish forgot published on the rows an earlier process left dirty (once a run). */
    bool pub_forgot;
    struct stream_state streams[UPSTREAM_MAX_STREAMS];
};

/* A connector's requests in flight, so that its free() can end them: each call structure holds
 * a `struct call_link link`, the connector's state a `struct call_link *calls` head. */
struct call_link {
    struct call_link *prev, *next;
};
#define CALL_OWNER(ptr, type) ((type *)(void *)((char *)(ptr)-offsetof(type, link)))

static inline void call_link_add(struct call_link **head, struct call_link *l)
{
    l->prev = NULL;
    l->next = *head;
    if (*head)
        (*head)->prev = l;
    *head = l;
}

/* Takes l out of the list; `head` may be NULL once the connector's state is gone. */
static inline void call_link_remove(struct call_link **head, struct call_link *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else if (head && *head == l)
        *head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
}

/* Applies the upstream's timeouts to a request: total, connect, and a stalled transfer. */
static inline void upstream_timeouts(const struct upstream *u, struct http_req *r)
{
    unsigned t = u->request_timeout_s ? u->request_timeout_s : 30;
    r->timeout_ms = (long)t * 1000;
    r->connect_timeout_ms = t < 5 ? (long)t * 1000 : 5000;
    r->stall_s = t / 3 > 10 ? 10 : (t / 3 ? (long)(t / 3) : 1);
}

/* The clock a slice of a page is measured on (pull_page.apply_slice's until_us): the calling
 * thread's CPU time in microseconds. A slice is about WORKER_SLICE_US of work: on a machine
 * whose cores are shared with other work a wall-clock slice would shrink to a few rows while
 * the thread waits for a core, and each transaction's commit cost would dominate. */
int64_t sync_slice_clock_us(void);

/* Connectors report here, on the loop. The engine takes ownership of the page / batch. */
void sync_pull_done(struct upstream *u, int stream, struct pull_page *page);
void sync_push_done(struct push_batch *b);
void sync_publish_done(struct publish_batch *b);

/* For tests (tests/unit/test_sync.c): an engine with the one upstream `name` ("wh:<code>"
 * or "mp", its outbox target) driven by `ops`, a connector of the test's; no HTTP, and no
 * timer runs it: sync_tick runs the scheduler once, as each tick does. sync_stop ends it
 * (its handle closes on d->loop). Returns 0 or a TALLY_E_* code. */
int sync_start_with(struct tallyd *d, const struct connector_ops *ops, const char *name,
                    struct sync_engine **out);
void sync_tick(struct sync_engine *e);

/* The connectors. */
extern const struct connector_ops conn_wms_ops;
extern const struct connector_ops conn_goodcang_ops;
extern const struct connector_ops conn_fourpx_ops;
extern const struct connector_ops conn_aliexpress_ops;

/* The connector of a warehouse of kind `kind` (enum wh_kind), NULL when out of range. */
const struct connector_ops *upstream_wh_ops(int kind);

#endif
