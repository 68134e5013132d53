/*
 * The catalog's title index (sku_titles, FTS5 trigram, schema.c) filled in the background.
 *
 * A SKU written (inserted, or its title changed) is queued in sku_titles_todo by a trigger, in
 * the writing transaction: the write itself pays one small insert instead of the index's
 * ~70 trigrams (about 85 % of an imported row's cost). A write job on the worker's connection
 * (worker.h) then indexes the queue in id order, many titles per transaction (FTS5 writes a
 * segment per commit: 1,000 titles per commit cost about a quarter of what 50 cost), each
 * transaction bounded in CPU time and ended early when another thread waits for the writer
 * lock (store_writer_wanted). It runs after a tick (TITLEIDX_TICK_MS) in which no other write
 * job was submitted (a bulk load's calls and pages go first; during one it still runs once a
 * second), and from the start (a queue left by a crash is finished). A title leaves the
 * queue in the transaction that indexes it, so the index and the queue never disagree.
 *
 * catalog.search reads both: the index, and the queued titles one by one (cmd_catalog.c), so
 * a search finds every committed SKU at any moment; while a bulk load is being indexed its
 * cost grows with the backlog (titleidx_behind).
 */
#ifndef TALLY_TITLEIDX_H
#define TALLY_TITLEIDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tallyd;
struct store;

/* Titles indexed per transaction at most, and the CPU time one transaction may take (µs). */
#define TITLEIDX_BATCH 1000
#define TITLEIDX_TX_US 8000
/* CPU time one job takes at most before it lets other write jobs run (µs). */
#define TITLEIDX_JOB_US 40000
/* How often the loop looks at the queue when no job runs (ms). */
#define TITLEIDX_TICK_MS 100

/* Starts the loop's timer (after workers_start); 0, or -1 with err. */
int titleidx_start(struct tallyd *d, char *err, size_t errlen);
/* Stops the timer; a job running ends after its transaction (its done frees nothing). */
void titleidx_stop(struct tallyd *d);
/* After the loop has run out. */
void titleidx_free(struct tallyd *d);

/*
 * One transaction (store_begin .. store_commit on st): indexes queued titles in id order until
 * max_rows are done, or the thread's CPU clock passes until_cpu_us (checked every few rows;
 * INT64_MAX: no limit), or another thread waits for the writer lock. *done counts the titles
 * indexed, *empty says the queue is empty now. 0 or a TALLY_E_* code (rolled back).
 */
int titleidx_step(struct store *st, int max_rows, int64_t until_cpu_us, int64_t *done, bool *empty);
/* Titles queued, not yet in the index (reads the queue: for status and tests). */
int64_t titleidx_behind(struct store *st);
/* The thread's CPU clock (µs). */
int64_t titleidx_cpu_us(void);

#endif
