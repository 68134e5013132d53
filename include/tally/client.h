/*
 * libtallyclient: a small blocking client for the tally socket protocol (proto/PROTOCOL.md).
 *
 * One struct tally_client is one connection; it is not thread-safe. Calls return 0 or a
 * negative TALLY_E_* code (include/tally/protocol.h). Error text for the last failure is in
 * tally_client_errmsg(); nothing is printed.
 *
 * Parameters are a MessagePack map packed by the caller with msgpack-c (see tally_params_*);
 * results are msgpack objects that stay valid until the reply is freed.
 */
#ifndef TALLY_CLIENT_H
#define TALLY_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

#include "tally/protocol.h"

struct tally_client;

/* A decoded response. The caller owns it and frees it with tally_reply_free(). */
struct tally_reply {
    uint32_t msgid;
    int err;               /* 0 on success, else the TALLY_E_* named by error.code */
    char code[32];         /* error code string as sent ("" on success) */
    char message[512];     /* error message as sent ("" on success) */
    msgpack_object result; /* the result (type NIL on error); points into `unpacked` */
    msgpack_unpacked unpacked;
    char method[64]; /* for a notification (tally_recv_notification): its method name */
};

/*
 * Socket path to use: `explicit_path` if not NULL, else $TALLY_SOCKET if set and non-empty,
 * else TALLY_DEFAULT_SOCKET. Never NULL.
 */
const char *tally_socket_path(const char *explicit_path);

/*
 * Connects to tallyd at `path`. On success *out owns a new connection (free with
 * tally_client_free). Returns TALLY_E_NOT_RUNNING when nothing listens there (no such file,
 * connection refused), TALLY_E_FORBIDDEN when the socket exists but may not be opened,
 * TALLY_E_INVALID_PARAMS when the path is too long for a Unix socket, TALLY_E_IO otherwise.
 * `errbuf` (may be NULL) receives a one-line explanation.
 */
int tally_connect(const char *path, struct tally_client **out, char *errbuf, size_t errlen);

/* Closes and frees. NULL is a no-op. */
void tally_client_free(struct tally_client *c);

/* Per-call timeout in milliseconds for tally_call / tally_recv (default 30000; 0 = none). */
void tally_client_set_timeout(struct tally_client *c, int timeout_ms);

/* Human-readable text of the last transport failure on this connection. */
const char *tally_client_errmsg(const struct tally_client *c);

/*
 * Sends one request. `params` / `params_len` is one packed MessagePack map (NULL for {}).
 * The request is [0, msgid, method, [params]]. Returns 0 or TALLY_E_IO.
 */
int tally_send(struct tally_client *c, uint32_t msgid, const char *method, const char *params,
               size_t params_len);

/*
 * Receives the next response (any msgid). Notifications that arrive first are kept, in order,
 * for tally_recv_notification (up to 1 MiB of them; past that the oldest are dropped). On
 * success *out is a new
 * reply (free with tally_reply_free) whose `err` tells whether the server answered an error.
 * Returns 0 when a response was received, else TALLY_E_IO / TALLY_E_TIMEOUT /
 * TALLY_E_MALFORMED (transport failure: the connection is unusable afterwards).
 */
int tally_recv(struct tally_client *c, struct tally_reply **out);

/*
 * Sends a request and waits for its response. Returns 0 when a response arrived (check
 * (*out)->err for the server's verdict) or a transport error as tally_recv. Notifications that
 * arrive meanwhile (on a connection that called `watch`) are kept, as tally_recv does; responses
 * to earlier tally_send requests that were not collected are dropped.
 */
int tally_call(struct tally_client *c, const char *method, const char *params, size_t params_len,
               struct tally_reply **out);

/*
 * After tally_send failed with TALLY_E_IO: the connection-level error tallyd may have sent
 * before it closed the connection ("overloaded", msgid 0), as tally_call reports it. Returns 0
 * with *out set, or TALLY_E_IO (none; *out NULL).
 */
int tally_farewell(struct tally_client *c, struct tally_reply **out);

void tally_reply_free(struct tally_reply *r);

/*
 * Returns the next notification [2, method, [params]], as sent after `watch`: first those kept
 * while tally_call / tally_recv waited for a response (at once), else the next to arrive within
 * timeout_ms (< 0: no limit); responses that arrive meanwhile are dropped. On success *out is a
 * reply whose `method` names the notification and whose `result` is its params map. Returns 0,
 * TALLY_E_TIMEOUT, or a transport error as tally_recv.
 */
int tally_recv_notification(struct tally_client *c, int timeout_ms, struct tally_reply **out);

/* Looks up `key` in a msgpack map; NULL when absent or when `map` is not a map. */
const msgpack_object *tally_obj_get(const msgpack_object *map, const char *key);

#endif
