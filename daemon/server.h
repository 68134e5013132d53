/*
 * The socket server: a Unix stream socket on the daemon's libuv loop. It owns connections,
 * framing (bytes <-> MessagePack messages) and the limits; rpc.c turns messages into answers.
 */
#ifndef TALLY_SERVER_H
#define TALLY_SERVER_H

#include <stdbool.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#include "tallyd.h"

struct server;

/*
 * Binds and listens on d->cfg.socket_path with mode d->cfg.socket_mode. Refuses a path too
 * long for a Unix socket, and refuses to start when another daemon answers on the path;
 * removes a stale socket file. Returns 0 or -1 with a message in err.
 */
int server_start(struct tallyd *d, struct server **out, char *err, size_t errlen);

/* Stops accepting, closes every connection (pending output is flushed first), unlinks the
 * socket. The server frees itself once all handles are closed. */
void server_stop(struct server *srv);

unsigned server_connections(const struct server *srv);
/* How many times a connection's turn budget ran out and it yielded the loop to the others
 * (server.c, TURN_REQUESTS), since the server started; 0 for NULL. */
uint64_t server_yields(const struct server *srv);
/* Requests that waited for a group commit in flight (rpc_must_wait), since the start. */
uint64_t server_waits(const struct server *srv);
/* Whether any connection watches events (so building one is worth it); NULL-safe. */
bool server_has_watchers(const struct server *srv);

/* Marks a connection (the `conn` of an rpc_call) as receiving event notifications. */
void server_conn_watch(void *conn, bool on);

/*
 * Answers sent later (RPC_DEFERRED, rpc.h): a connection's id (0 for NULL), and the sending
 * of one whole encoded message to it, from a loop callback (never from inside a handler).
 * Returns false, sending nothing, when that connection is closed or closing.
 */
uint64_t server_conn_id(void *conn);
bool server_send(struct server *srv, uint64_t conn_id, const char *data, size_t len);
/*
 * A deferred read's answer to come (rpc_defer_read): server_conn_defer counts it, from the
 * handler; server_send_deferred sends it (data NULL: nothing to send, the count is dropped)
 * and counts it sent. A connection whose peer stopped sending is finished only once none is
 * still to come, as for server_conn_owe: a request followed by EOF is answered.
 */
void server_conn_defer(void *conn);
bool server_send_deferred(struct server *srv, uint64_t conn_id, const char *data, size_t len);
/*
 * For a deferred write whose effects the same connection's next requests may depend on (an
 * import, then an allocation of the order it imported): server_hold, from the handler, keeps
 * the connection's next requests unread and unhandled until server_send_resume sends the
 * answer; they are then handled in order. Other connections are not concerned. Every
 * server_hold must be followed by exactly one server_send_resume on the same server, even
 * when the connection is gone or tallyd is stopping: until then the server is not freed
 * (server_stop leaves a held connection open for that answer, then finishes it).
 * Pipelined imports: while answers are held, the connection's next requests that are imports
 * (rpc_passes_hold) are still handled, in order, up to SERVER_HOLD_PIPELINE held at once (each
 * its own server_hold); any other request waits, decoded, until every held answer is sent.
 * Write jobs run in the order queued, so each import sees the ones before it. Only an
 * import's hold is passed so: an import behind a held answer of another method (a purge)
 * waits for it as any request does.
 */
#define SERVER_HOLD_PIPELINE 8
/*
 * From a handler: takes the zone of the request being handled (its decoded objects and the
 * read buffer their strings point into, kept by reference), so they outlive the call without a
 * copy (an import's rows, read by its write job); the taker frees it with msgpack_zone_free, on
 * the loop. NULL when none can be taken (not in a call): copy then.
 */
msgpack_zone *server_take_request(void *conn);
void server_hold(void *conn);
bool server_send_resume(struct server *srv, uint64_t conn_id, const char *data, size_t len);

/*
 * Answers held by the group commit (gcommit.h): server_conn_owe counts one more for a
 * connection; server_send_owed sends it (data NULL: nothing to send, the debt is dropped) and
 * counts it paid. A connection whose peer stopped sending is finished only once nothing is
 * owed, so its last answers are not lost.
 */
void server_conn_owe(void *conn);
unsigned server_conn_owed(void *conn);
bool server_send_owed(struct server *srv, uint64_t conn_id, const char *data, size_t len);
/* Sends what server_send_owed appended (one write per connection). */
void server_flush_owed(struct server *srv);
/* Takes up the connections whose next request waited for the group commit (rpc_must_wait),
 * from a loop callback once that commit's answers are sent (gcommit.c). */
void server_resume_waiting(struct server *srv);
/* Whether a connection's request waits so (server_resume_waiting would take it up). */
bool server_has_waiting(const struct server *srv);

/* The peer's uid (SO_PEERCRED); tallyd's own uid for a NULL connection (tests, fuzzing). */
uid_t server_conn_uid(void *conn);
/* Sends an encoded notification to every watching connection (each bounded by its output
 * limit like any answer). A connection whose request is being handled gets it after that
 * request's response, never inside it. */
void server_broadcast(struct server *srv, const char *data, size_t len);
/* Cuts off every watching connection with an `overloaded` error (msgid 0) saying events were
 * dropped; a connection whose request is being handled gets its response first. */
void server_drop_watchers(struct server *srv);

#endif
