/*
 * The catalog's title index (sku_titles, FTS5 trigram, schema.c) filled in the background.
 *
 * A SKU written (inserted, or its title changed) is queued in sku_titles_todo by a trigger, in
 * the writing transaction: the write itself pays one small insert instead of the index's
 * ~70 trigrams (about 85 % of an imported row's cost). A write job on the worker's connection
 * (worker.h) then indexes the queue in id order, many titles per transaction (FTS5 writes a
 * segment per commit, or per statement that inserts several rows: one statement per title),
 * each transaction bounded in CPU time and ended early when another thread waits for the
 * writer lock (store_writer_wanted).
 *
 * FTS5 merges segments by itself inside the statement that writes one (automerge, and a
 * crisis merge of a whole level): tens of ms of CPU in one insert, with the writer lock held.
 * Migration 20 turns that off (automerge 0; crisismerge 64, a last resort only), and the job
 * merges in transactions of its own instead, a few pages per FTS5 'merge' command
 * (TITLEIDX_MERGE_PAGES; a positive count merges a level once it holds 'usermerge', 4,
 * segments, so their number grows with the log of the titles), one merge transaction after
 * each indexing transaction and then on until nothing is left to merge. Other writers'
 * title changes and deletes write a small segment each: the loop's tick sees the segment
 * count grow (titleidx_segments) and runs the job to merge them. No 'optimize': one would
 * rewrite the whole index in one statement. It runs after a tick (TITLEIDX_TICK_MS) in which no
 * other write job was submitted (a bulk load's calls and pages go first; during one it still runs
 * once a second, for a quarter of a job's time, TITLEIDX_BUSY_JOB_US, unless the index has more
 * than TITLEIDX_SEGMENTS_HIGH segments at the job's start), and from the start (a queue
 * left by a crash is finished). A title leaves the queue in the transaction that indexes it, so the
 * index and the queue never disagree.
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
#define TITLEIDX_BATCH 500
#define TITLEIDX_TX_US 4000
/* Leaf pages one FTS5 'merge' command writes at most, and the CPU time of a merge
 * transaction (µs; it ends after the command that passes it). */
#define TITLEIDX_MERGE_PAGES 8
#define TITLEIDX_MERGE_PAGES_SQL "8"
#define TITLEIDX_MERGE_TX_US 1000
/* Segments above which a job merges before it indexes more titles: FTS5's crisis merge
 * (crisismerge 64 segments in one level, schema.c migration 20) would otherwise merge a whole
 * level inside the commit of an indexing transaction. Above it a job during a bulk load also
 * takes TITLEIDX_JOB_US, not TITLEIDX_BUSY_JOB_US. */
#define TITLEIDX_SEGMENTS_HIGH 40
/* CPU time one job takes at most before it lets other write jobs run (µs), and the time of one
 * that runs during a bulk load (once a second, in the load's writer time: an initial sync of
 * 1M SKUs x 4 took 14 s, of which 13 jobs of 44 ms, 4 %; its backlog of 1M titles waits for the
 * load's end all the same), unless the index has more than TITLEIDX_SEGMENTS_HIGH segments at the
 * job's start. */
#define TITLEIDX_JOB_US 40000
#define TITLEIDX_BUSY_JOB_US 10000
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
/*
 * One transaction of FTS5 'merge' commands (TITLEIDX_MERGE_PAGES each) until one does no
 * work (*idle), or the thread's CPU clock passes until_cpu_us, or another thread waits for the
 * writer lock. 0 or a TALLY_E_* code (rolled back).
 */
int titleidx_merge(struct store *st, int64_t until_cpu_us, bool *idle);
/*
 * What the background job does, one round: an indexing transaction (titleidx_step, up to
 * TITLEIDX_BATCH titles), then a merge transaction, and when the queue is empty more merge
 * transactions until nothing is left to merge (*idle), the CPU clock passes until_cpu_us or
 * another thread waits for the writer lock. *done counts the titles indexed. Call it again
 * until *empty and *idle.
 */
int titleidx_work(struct store *st, int64_t until_cpu_us, int64_t *done, bool *empty, bool *idle);
/* The index's segments (from the FTS5 structure record), or -1 when it cannot be read. */
int64_t titleidx_segments(struct store *st);
/* Titles queued, not yet in the index (reads the queue: for status and tests). */
int64_t titleidx_behind(struct store *st);
/* The thread's CPU clock (µs). */
int64_t titleidx_cpu_us(void);

#endif
