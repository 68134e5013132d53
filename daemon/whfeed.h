/*
 * What a warehouse's feeds report, applied to the replica: one place for every warehouse kind
 * (tally Warehouse API, Goodcang, 4PX), so a connector maps its API's rows to these calls and
 * never writes the replica's stock or outbound tables itself. Each runs inside the engine's
 * page transaction (upstream.h pull_page.apply) and returns 0 or a TALLY_E_* code.
 */
#ifndef TALLY_WHFEED_H
#define TALLY_WHFEED_H

#include <stdbool.h>
#include <stdint.h>

#include "tally/protocol.h"
#include "upstream.h"

/* The warehouse's id in the replica for connector u; TALLY_E_* with err filled when missing. */
int whfeed_warehouse(struct upstream *u, struct store *st, int64_t *wh, char *err, size_t errlen);

/* One stock row: `on_hand` of `sku` at warehouse `wh` as of the warehouse's `version`
 * (monotonic per warehouse) at wall-clock `at`, and `inbound`, the goods on their way in
 * (stock.inbound: shown only, never on hand or available; -1 = not reported, the stored
 * figure stays). With `reconcile` (a full re-read), a row the
 * replica holds at the same version with another figure counts as drift in pg->repaired, is
 * repaired and a person is told (fulfil_stock_drift). */
int whfeed_stock(struct upstream *u, struct store *st, int64_t wh, const char *sku, int64_t on_hand,
                 int64_t inbound, int64_t version, int64_t at, bool reconcile,
                 struct pull_page *pg);

/* Whether the rows of the transaction now open may take whfeed_stock's one-statement path
 * (pull_page.plain): no acknowledged movement waits to settle anywhere (one seek of the
 * movements_acked index) and this station publishes no stock. Only a write in this same
 * transaction could change that, and a page writes snapshots alone. */
bool whfeed_plain(struct store *st);

/* Rows applied together: up to WHFEED_BATCH rows of one page, each as whfeed_stock would
 * apply it outside a reconciliation, in order. On the one-statement path (pull_page.plain) a
 * full batch costs one statement for rows of SKUs the replica knows, three when some SKU is
 * new (the upsert, the placeholders of the new SKUs, the upsert again), instead of one to five
 * per row; a row the batched statements leave unapplied (an older version, a SKU the
 * placeholders could not give a row) sends the whole batch through whfeed_stock, row by row
 * (applying a row again at the same version changes nothing). Otherwise row by row. In a
 * write job (pull_page.ids, whfeed_ids below) a full batch is written by its SKUs' ids when
 * they are known, or once looked up. */
#define WHFEED_BATCH 64
struct whfeed_row {
    char sku[TALLY_MAX_ID_LEN + 1];
    int64_t on_hand, inbound, version, at;
};
int whfeed_stock_batch(struct upstream *u, struct store *st, int64_t wh,
                       const struct whfeed_row *rows, int n, struct pull_page *pg);

/*
 * The SKU ids the writer learnt (pull_page.ids): the ids of the SKUs whfeed_stock_batch looked
 * up, and of the placeholders it or whfeed_skus_batch made, kept once their transaction
 * committed, so that the same SKUs in the other warehouses' pages (an initial sync pulls every
 * warehouse side by side, in the same order of codes) are written by id: a full batch whose 64
 * ids are all kept takes a statement that looks up no code in the skus index (about a fifth of
 * the upsert's CPU). A batch with some id not kept looks its codes up once (one statement),
 * then is written by id as well.
 *
 * An id kept is never wrong. A SKU's row keeps its id and its code for good: tallyd never
 * deletes a SKU nor changes a code (the catalog's and the marketplace's writes are upserts on
 * the code, ON CONFLICT DO UPDATE). And an id is kept only once the transaction that found it
 * committed: whfeed_ids_stage puts in what the open transaction found (whfeed_ids_get finds it
 * there, for that transaction's own statements), whfeed_ids_end(committed) keeps it or takes it
 * out (a rolled-back insert gives its id back, and another SKU may take it next). Every
 * transaction of the one thread that stages is ended with whfeed_ids_end before the next
 * begins.
 *
 * It keeps the last WHFEED_IDS_GEN to 2 x WHFEED_IDS_GEN SKUs (two generations: the older is
 * dropped when the newer is full; a transaction stages what is left of the newer one and one
 * generation more; one rolled back after it began a generation leaves only the generation it
 * began in, as it was then), codes of at most WHFEED_IDS_CODE_MAX bytes (longer ones are looked
 * up each time); ~0.8 MiB once full.
 * One thread at a time (the write jobs', in turn); every function takes NULL (does nothing,
 * finds nothing).
 */
#define WHFEED_IDS_GEN 8192
#define WHFEED_IDS_CODE_MAX 31
struct whfeed_ids;
struct whfeed_ids *whfeed_ids_new(void); /* NULL when out of memory */
void whfeed_ids_free(struct whfeed_ids *c);
/* Found in the open transaction (a code kept already is left as it is). */
void whfeed_ids_stage(struct whfeed_ids *c, const char *code, int64_t id);
void whfeed_ids_end(struct whfeed_ids *c, bool committed);
/* 0: not kept nor staged by the open transaction */
int64_t whfeed_ids_get(const struct whfeed_ids *c, const char *code);

/*
 * Placeholders made ahead of a page's slices (pull_page.make_skus), on a connection whose
 * triggers are off, in a transaction of its own (begun by the caller): whfeed_skus_begin (0, 1
 * when the set path is not allowed: the triggers on the tables it writes are not the ones it
 * does the work of, import_set_allowed; or skus' largest id is so near the largest rowid that
 * new ones may be given below it; or a TALLY_E_* code), whfeed_skus_batch for each
 * WHFEED_BATCH rows (the placeholders of their SKUs the replica does not know: *made; their
 * ids staged in `ids`, whfeed_ids_stage), then
 * whfeed_skus_end before the commit, which does what the triggers of an insert into skus do
 * (count_skus_ins: the skus counter; skus_title_queue_new: the title index's queue) once for
 * every SKU the transaction made. An insert into skus with the triggers costs two trigger
 * programs per row: ~10 % of an initial sync of 1M SKUs x 4 warehouses.
 */
struct whfeed_skus {
    int64_t before; /* skus' largest id when the transaction began: the new ones are above */
    int64_t made;
};
int whfeed_skus_begin(struct store *st, struct whfeed_skus *s);
int whfeed_skus_batch(struct store *st, struct whfeed_skus *s, const struct whfeed_row *rows,
                      struct whfeed_ids *ids, int *made);
int whfeed_skus_end(struct store *st, struct whfeed_skus *s);

/* The same for a warehouse whose versions are read times (Goodcang, 4PX: no figure there has a
 * version of its own, so two reads never share one and whfeed_stock's check cannot match), in
 * a reconciliation, for a SKU the warehouse's stock log shows no movement of since the
 * replica's figure was read (the connector read the log over that span). A figure other than
 * the replica's is then drift (a change the incremental rounds missed, a lost write, a bad
 * restore): counted in pg->repaired, repaired and a person is told. A SKU the replica has no
 * figure for is not drift. */
int whfeed_stock_unlogged(struct upstream *u, struct store *st, int64_t wh, const char *sku,
                          int64_t on_hand, int64_t inbound, int64_t version, int64_t at,
                          struct pull_page *pg);

/* One outbound order's state as the warehouse reports it, in tally's words (UPSTREAM.md §2):
 * `status` accepted | picking | packed | shipped | cancelled | exception, with the carrier and
 * tracking number of a shipped one and the reason of an exception (NULL when none). `version`
 * orders the reports of one order (a later report with a lower version is ignored). A report
 * that changes the replica moves the order on (fulfil_outbound_status). A reason quoting the
 * buyer of an order whose personal data was purged is neither stored nor passed on. */
int whfeed_outbound(struct upstream *u, struct store *st, int64_t wh, const char *id,
                    const char *status, const char *carrier, const char *tracking,
                    const char *reason, int64_t version);

/* The mark a warehouse echoes on outbound order `id` (the free text it stores for the
 * client: tally's `station`, Goodcang's order_desc, ...; NULL or "" when none): another
 * coordinator's mark stops this station's account-wide decisions (coord.h). Call it before
 * whfeed_outbound for the same row. */
int whfeed_mark(struct upstream *u, int64_t wh, const char *id, const char *mark);

#endif
