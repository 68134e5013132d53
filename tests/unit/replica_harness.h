/*
 * A replica harness for unit tests that drive the daemon without sockets: a struct tallyd on
 * a temporary replica, calls through rpc_handle as if a client had sent them, and one-value
 * SQL queries to read the replica back.
 *
 * Ownership: rh_new allocates the harness and its temporary directory; rh_free closes the
 * replica, removes the directory and frees everything; rh_free(NULL) is a no-op. The harness
 * owns the daemon context (rh_daemon: the same pointer for the harness's whole life), the
 * replica's store, the request being built, the last response and every string it returns:
 * a result map and rh_last_code live until the next call, rh_qtext and rh_sget strings until
 * eight more calls of the same function.
 *
 * Failures: a replica that cannot be opened or seeded ends the program (exit 2), since no
 * test can run without one. SQL that fails prints the statement and SQLite's message to
 * stderr: rh_exec returns -1 (RH_EXEC records a failed CHECK at the caller's line), rh_q64
 * returns RH_NONE and rh_qtext "(none)". The harness itself records no check: check.h keeps
 * its counts per test program.
 *
 * SQL is formatted printf-style from literals the test owns; it is never for input from
 * outside the test.
 */
#ifndef TALLY_REPLICA_HARNESS_H
#define TALLY_REPLICA_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

struct rh;
struct store;
struct tallyd;

/* What rh_q64 and rh_iget answer for no row, a NULL, a failed query or a missing field. */
#define RH_NONE (-999999)

/* A harness with a fresh directory /tmp/<name>-XXXXXX and no replica yet; NULL with errno
 * set when the directory or the memory cannot be had. Calls are made as a writer. */
/* Takes the replica file `path` (closed) back to schema `version`, as an upgrade test needs:
 * every table, index and trigger a later migration made is dropped, every column it added
 * removed (the data of the older schema stays), and user_version set. The older schema is
 * learnt by running migrations 1..version in a scratch database, so the function follows
 * whatever migrations are added later. 0 on success. */
int rh_rewind_schema(const char *path, int version);

struct rh *rh_new(const char *name);
void rh_free(struct rh *h);

/* The daemon context: fields (cfg, store) may be read and set between calls. */
struct tallyd *rh_daemon(struct rh *h);

/* Closes the previous replica, if any, and opens an empty one in a new file: config
 * defaults, sync_full off, no loop and no server (events are no-ops). The role stays. */
void rh_open(struct rh *h);

/* Imports the fixture several tests start from: warehouses A (Alpha, ES) and B (Beta, FR);
 * SKUs S1 and S2 of product P1 at 1999 EUR minor units; S1 at A with 10 on hand. */
void rh_seed_standard(struct rh *h);

/* ---- SQL on the replica ---- */

int rh_exec(struct rh *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* rh_exec, with a failure recorded as a failed CHECK where the test calls it (needs
 * check.h); a statement that succeeds adds no check. */
#define RH_EXEC(h, ...)                                                                            \
    do {                                                                                           \
        if (rh_exec((h), __VA_ARGS__) != 0)                                                        \
            CHECK(!"rh_exec failed");                                                              \
    } while (0)

/* `sql` in a transaction of a connection of its own on the replica (store_open_extra, as a
 * write job's or the group commit's), committed: a commit the daemon's connections did not
 * make. 0, or -1 (the error on stderr). */
int rh_exec_other(struct rh *h, const char *sql);

/* The first column of the first row as an integer. */
int64_t rh_q64(struct rh *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first column of the first row as text: "(null)" for NULL, "(none)" for no row. */
const char *rh_qtext(struct rh *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One figure of a SKU x warehouse: `expr` over the columns of its stock row (alias st), by
 * SKU and warehouse code; RH_NONE when there is no such row. */
int64_t rh_stock_figure(struct rh *h, const char *expr, const char *sku, const char *wh);

int64_t rh_sku_id(struct rh *h, const char *code);
int64_t rh_wh_id(struct rh *h, const char *code);

/* ---- calls through the dispatcher ---- */

/* The role (TALLY_ROLE_*) later calls are made with. */
void rh_set_role(struct rh *h, int role);

/* Calls `method` with NULL-terminated "key=value" params (at most 16): "key=#123" packs an
 * integer, "key=!1" / "key=!0" a boolean, anything else a string. Returns the result, or NULL
 * with the error's code in rh_last_code. */
const msgpack_object *rh_call(struct rh *h, const char *method, ...);

/* For params rh_call cannot spell: starts [0, 7, method, [{...}]] with a map of `nfields`
 * that the caller packs, then rh_req_send sends it as rh_call does. */
msgpack_packer *rh_req_begin(struct rh *h, const char *method, uint32_t nfields);
const msgpack_object *rh_req_send(struct rh *h);

/* The last call's error code: "" when it succeeded, "bad response" when the answer was not a
 * response. */
const char *rh_last_code(const struct rh *h);
/* The last call's error message: "" when it succeeded or the error had none. */
const char *rh_last_message(const struct rh *h);

/* ---- fields of a result map ---- */

int64_t rh_iget(const msgpack_object *m, const char *key);
/* A copy of a string field; NULL when absent, nil or not a string. */
const char *rh_sget(const msgpack_object *m, const char *key);
/* True only for a boolean true. */
bool rh_bget(const msgpack_object *m, const char *key);
/* True when the field is present and nil. */
bool rh_is_nil(const msgpack_object *m, const char *key);

/* ---- a bare daemon context (the worker and group-commit tests) ---- */

/* Gives d (zeroed) a replica of its own at r.db in a fresh directory /tmp/<name>.XXXXXX (its
 * path written to dir, cap bytes) holding one table t(x INTEGER), opened with sync_full (also
 * d->cfg.sync_full), the default loop, and the worker threads started. A failure ends the
 * program (exit 2): no test can run without them. */
void rh_bare_start(struct tallyd *d, const char *name, bool sync_full, char *dir, size_t cap);
/* After the test's own workers_stop and workers_free (and gcommit's): closes the loop and the
 * replica and removes the directory. 0, or 2 when it could not be removed. */
int rh_bare_end(struct tallyd *d, const char *dir);

/* VM steps (SQLITE_STMTSTATUS_VM_STEP) of the connection's cached statements whose SQL
 * contains `needle`, since the last call (each counter is reset as it is read): how much of an
 * index a scan read, for tests that a scan starts at its position. */
int64_t rh_vm_steps(struct store *st, const char *needle);

/* ---- text ---- */

/* Whether s is well-formed UTF-8 (sequence lengths and continuation bytes). */
bool rh_utf8_ok(const char *s);
/* Notes as long as a text may be (TALLY_MAX_TEXT_LEN bytes), for the tests that a connector
 * cuts a text at a character's boundary: k = 1 of ASCII 'n's, 2 of 2-byte characters (U+00E9),
 * 3 of 3-byte characters (U+4E2D; as many whole ones as fit); k = 0 (or any other) NULL, no
 * note. Static storage, made at the first call. */
const char *rh_long_note(int k);

#endif
