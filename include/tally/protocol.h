/*
 * tally wire protocol constants, shared by tallyd, the client library and any C client.
 *
 * The protocol itself (framing, methods, params, results) is specified in proto/PROTOCOL.md;
 * this header only names what both sides must agree on: the protocol version, the message
 * kinds, the error codes and the default limits.
 */
#ifndef TALLY_PROTOCOL_H
#define TALLY_PROTOCOL_H

#define TALLY_PROTOCOL_VERSION 1

/* MessagePack-RPC message kinds: the first element of every message array. */
enum tally_msg_kind {
    TALLY_MSG_REQUEST = 0,      /* [0, msgid, method, [params]] */
    TALLY_MSG_RESPONSE = 1,     /* [1, msgid, error, result]    */
    TALLY_MSG_NOTIFICATION = 2, /* [2, method, [params]]        */
};

/*
 * Error codes. In C they are negative ints (0 is success); on the wire an error is a map
 * {"code": <string>, "message": <string>} whose code is the stable name given by
 * tally_strerror_code(). Codes are never renumbered or renamed; new ones are appended.
 */
enum tally_err {
    TALLY_OK = 0,
    TALLY_E_INTERNAL = -1,        /* "internal": a bug or an unexpected failure, logged */
    TALLY_E_BAD_REQUEST = -2,     /* "bad_request": envelope is not a valid request */
    TALLY_E_UNKNOWN_METHOD = -3,  /* "unknown_method" */
    TALLY_E_INVALID_PARAMS = -4,  /* "invalid_params": missing field, wrong type, out of range */
    TALLY_E_NOT_FOUND = -5,       /* "not_found": the SKU, warehouse, order... does not exist */
    TALLY_E_FORBIDDEN = -6,       /* "forbidden": the caller's role may not do this */
    TALLY_E_CONFLICT = -7,        /* "conflict": id reused with different content */
    TALLY_E_INSUFFICIENT = -8,    /* "insufficient_stock": would take stock below zero */
    TALLY_E_TOO_LARGE = -9,       /* "too_large": a message exceeds max_message_bytes */
    TALLY_E_MALFORMED = -10,      /* "malformed": bytes are not valid MessagePack */
    TALLY_E_TOO_DEEP = -11,       /* "too_deep": nesting exceeds the protocol's depth limit */
    TALLY_E_OVERLOADED = -12,     /* "overloaded": connection or output limits reached */
    TALLY_E_STORAGE = -13,        /* "storage": the replica could not be read or written */
    TALLY_E_DISK_FULL = -14,      /* "disk_full": the write was not made, nothing changed */
    TALLY_E_HELLO_REQUIRED = -15, /* reserved; hello is optional in protocol version 1 */
    TALLY_E_VERSION = -16,        /* "version_mismatch": client asked for an unknown version */
    TALLY_E_SHUTTING_DOWN = -17,  /* "shutting_down": the daemon is stopping */
    TALLY_E_IO = -18,             /* client side: the connection failed */
    TALLY_E_TIMEOUT = -19,        /* client side: no answer in time */
    TALLY_E_NOT_RUNNING = -20,    /* client side: nothing listens on the socket */
    TALLY_E_NOMEM = -21,          /* "no_memory" */
    TALLY_E_BUSY = -22,           /* "busy": the replica is locked by another process, or the
                                     same work is already running; nothing changed: retry */
};

/* Stable wire name of an error code ("internal", "not_found", ...); "internal" if unknown. */
const char *tally_strerror_code(int err);
/* Error code for a wire name; TALLY_E_INTERNAL if unknown. */
int tally_error_from_code(const char *code, unsigned len);
/* A short English description of an error code. */
const char *tally_strerror(int err);

/* Roles, decided by tallyd from the peer's credentials (SO_PEERCRED), never by the client. */
enum tally_role {
    TALLY_ROLE_READER = 0,
    TALLY_ROLE_WRITER = 1,
};

/* Default limits (each a setting in tallyd.conf [limits]; see README). */
#define TALLY_DEFAULT_MAX_MESSAGE_BYTES (1u << 20) /* one request or response frame */
#define TALLY_DEFAULT_MAX_CONNECTIONS 256          /* simultaneous clients */
#define TALLY_DEFAULT_MAX_OUTPUT_BYTES (16u << 20) /* queued, unsent output per connection */
#define TALLY_MAX_DEPTH 16                         /* nesting of arrays and maps */

/* Ranges every input is checked against. */
#define TALLY_MAX_QTY 1000000000000LL /* |quantity| and any stock figure: 10^12 units */
#define TALLY_MAX_ID_LEN 64           /* SKU codes, warehouse codes, movement and order ids */
#define TALLY_MAX_TEXT_LEN 1024       /* titles, reasons, notes */
#define TALLY_MAX_REF_LEN 128         /* a movement's reference (order id, delivery note) */
#define TALLY_MAX_PAGE 1000           /* rows per page of any list method */
#define TALLY_DEFAULT_PAGE 100

#define TALLY_DEFAULT_SOCKET "/run/tally/tally.sock"

#endif
