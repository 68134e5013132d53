/*
 * Dispatch: one decoded message in, one response packed out. The transport (server.c) knows
 * nothing of methods; handlers (cmd_*.c) know nothing of framing.
 */
#ifndef TALLY_RPC_H
#define TALLY_RPC_H

#include <stdbool.h>
#include <stdint.h>
#include <msgpack.h>

#include "tallyd.h"

struct rpc_call {
    struct tallyd *d;
    const msgpack_object *params; /* the params map, or NULL when none was given */
    msgpack_packer *pk;           /* a handler packs exactly one result object here */
    int role;                     /* TALLY_ROLE_* of the caller, from its credentials */
    void *conn;                   /* the caller's connection (server.c), for watch */
    uint32_t msgid;               /* the request's msgid, for an answer sent later */
    char err[256];                /* the error message when the handler fails */
    /* Set by a handler whose result has a fixed shape, packed by code its tests decode whole
     * (stock.get): the dispatcher then skips its check that the result is one complete object,
     * a scan of every byte that costs a hot path a sixth of its time. */
    bool exact;
};

/*
 * A handler returns 0 after packing its result, or a negative TALLY_E_* code with c->err set
 * (via rpc_fail). Whatever it packed before failing is discarded by the dispatcher.
 */
typedef int (*rpc_fn)(struct rpc_call *c);

/*
 * A handler that answers later returns RPC_DEFERRED: nothing is sent now (whatever it packed
 * is dropped), and it owes the caller exactly one response with c->msgid, sent through
 * server_send() to server_conn_id(c->conn) (which drops it if the connection is gone by
 * then). Only with a connection: a call without one (tests, fuzzing) is answered at once.
 */
#define RPC_DEFERRED 1

/*
 * A long read (a report, a search over many rows) answered later, off the loop: `pack` runs as
 * a read job (worker.h) on a read-only connection of its own, inside one read transaction (its
 * figures agree with each other), and packs the result object into `pk` from `arg` (a copy of
 * arg_len bytes the job owns); on failure it returns a TALLY_E_* code with a message in err. The
 * caller is then sent [1, msgid, nil, result], or the error; the loop answers everyone else
 * meanwhile, the same connection's later requests included (their answers may come first).
 * Without a connection or workers (tests, fuzzing) it runs at once on d->store into c->pk.
 * A handler returns what this returns (RPC_DEFERRED, or pack's result).
 */
struct store;
typedef int (*rpc_read_fn)(struct store *st, msgpack_packer *pk, const void *arg, char *err,
                           size_t errlen);
int rpc_defer_read(struct rpc_call *c, rpc_read_fn pack, const void *arg, size_t arg_len);
/* At tallyd's stop, before the server stops: answers every deferred read not answered yet with
 * shutting_down (its connection can still take it) and detaches it from its job. */
void rpc_defer_stop(struct tallyd *d);

struct rpc_method {
    const char *name;
    rpc_fn fn;
    bool write; /* only writers may call it */
};

/* The method table; NULL when unknown. */
const struct rpc_method *rpc_find(const char *name, size_t len);
/*
 * Whether the request `msg` (decoded, not yet handled) from a connection must wait for the
 * group commit in flight (gcommit.h): the server keeps it, and the connection's later ones,
 * unhandled until gcommit resumes the connection (server_resume_waiting).
 */
bool rpc_must_wait(struct tallyd *d, void *conn, const msgpack_object *msg);
/* Whether the request `msg` may be handled while the connection's earlier answers are held
 * (server_hold): an import, which joins the write jobs in order (pipelined imports). */
bool rpc_passes_hold(const msgpack_object *msg);
/* The table's i-th method, NULL past its end: for tests that must cover every method
 * (unit/test_reader_writes.c refuses each write method to a reader). */
const struct rpc_method *rpc_method_at(size_t i);

/* Sets c->err from a format and returns `code`. */
int rpc_fail(struct rpc_call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Packs the head of a successful response, [1, msgid, nil, ...: the result object follows;
 * nonzero when the packer failed (out of memory). */
int rpc_pack_result_head(msgpack_packer *pk, uint32_t msgid);
/* Packs a whole error response [1, msgid, {code, message}, nil]. */
void rpc_pack_error(msgpack_packer *pk, uint32_t msgid, int code, const char *message);
/* The same with an `id` in the error map (NULL or empty: none): the id of what the failed call
 * recorded all the same (a write whose sync failed, gcommit.c), for the client's retry. */
void rpc_pack_error_id(msgpack_packer *pk, uint32_t msgid, int code, const char *message,
                       const char *id);

/*
 * Handles one message decoded from a connection and appends the response to `out`.
 * Returns 0 when the connection stays usable, or a negative code when the message was not a
 * request at all and the connection must be closed once `out` is sent.
 */
int rpc_handle(struct tallyd *d, int role, void *conn, const msgpack_object *msg,
               msgpack_sbuffer *out);

/*
 * The hot read without decoding: when the bytes at p (n of them, the connection's unread
 * input) begin with the request [0, msgid, "stock.get", [{"sku": S}]] in the encoding tally's
 * clients and msgpack-c's packer give it (msgid an unsigned integer of up to 32 bits in its
 * smallest form, S a fixstr or str 8) and stock.get's answer for S is kept for the data the
 * loop reads now (cmd_stock_get_kept), appends the response to `out`, the same bytes
 * rpc_handle would, and returns the request's length. Else 0, and the general path takes it
 * (decoded, checked, dispatched). Only for a connection rpc_handle would answer at once with
 * nothing else to do first (the caller checks: no answers owed or held, not stopping).
 */
size_t rpc_fast_answer(struct tallyd *d, const unsigned char *p, size_t n, msgpack_sbuffer *out);

/* Role names for hello/status. */
const char *rpc_role_name(int role);

#endif
