/*
 * Retention of the outbox (README "The outbox", retain.c's head for the analysis): rows that
 * reached 'done' or 'discarded' more than [sync] outbox_keep_days ago are deleted when another
 * record already answers every lookup of their key, and lose their payload otherwise. Run by
 * the housekeeping timer (fulfil.c) as write jobs off the loop (worker.h), in transactions of
 * about WORKER_SLICE_US.
 */
#ifndef TALLY_RETAIN_H
#define TALLY_RETAIN_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct tallyd;

/* Rows looked at per statement pair (delete, then strip); the clock is read between them. */
#define RETAIN_CHUNK 64
/* About how long one job runs (its slices), as cover.c's. */
#define RETAIN_JOB_US 20000
/* The longest between two passes; a short retention (tests) runs them oftener. */
#define RETAIN_EVERY_S 3600
/* The longest between two passes from the first row (rows kept by a pass because their
 * entity was not settled yet are looked at again by them). */
#define RETAIN_FULL_EVERY_S 86400

struct retain_counts {
    int64_t deleted;  /* rows deleted */
    int64_t stripped; /* rows kept whose payload was dropped */
};

/* What status shows (tallyd.h struct tallyd.retained). */
struct retain_stats {
    int64_t pruned;       /* rows deleted since the start */
    int64_t stripped;     /* payloads dropped since the start */
    int64_t last_at;      /* when the last pass ended (0: none yet) */
    int64_t last_pruned;  /* rows the last pass deleted */
    int64_t next_at;      /* when the next pass is due */
    int64_t resume_after; /* where the next pass goes on from (0: the first row) */
    int64_t full_at;      /* when the last pass from the first row began */
};

/* The retention in seconds ([sync] outbox_keep_seconds, else outbox_keep_days). */
int64_t retain_keep_s(const struct tallyd *d);
/* How often passes run for that retention (seconds). */
int64_t retain_every_s(const struct tallyd *d);

/*
 * One transaction (store_begin .. commit) over the rows with ids after *after_id, RETAIN_CHUNK
 * at a time, until max_rows were looked at, the clock passed until_us (worker_now_us) or
 * another thread waits for the writer lock: deletes the safe done/discarded rows whose done_at
 * <= cutoff and drops the payload of the others. *after_id moves to the last row looked at;
 * *end is set when no row after it is old enough (created_at > cutoff, or none). Returns 0 or
 * a TALLY_E_* code (nothing of the slice kept, *after_id as it was).
 */
int retain_step(struct store *st, int64_t cutoff, int64_t *after_id, int max_rows, int64_t until_us,
                struct retain_counts *n, bool *end);

/* A whole pass on the calling thread (tests; no loop involved). */
int retain_run(struct store *st, int64_t cutoff, struct retain_counts *n);

/* Starts a pass as write jobs when one is due (the housekeeping timer calls it); 0 when one
 * runs already or none is due. */
int retain_start(struct tallyd *d);

#endif
