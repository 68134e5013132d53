/*
 * Shared helpers of the C integration tests that drive a real tallyd over its socket:
 *
 *   - a daemon under test (struct th_daemon): a temp dir made with mkdtemp that is both its
 *     state dir and the home of its socket, config and log; started with fork/execv, ready
 *     once the socket accepts connections, stopped with SIGTERM or killed with SIGKILL;
 *   - raw client connections (struct th_conn): AF_UNIX stream sockets, every send and every
 *     read bounded by a timeout, one MessagePack object read at a time with msgpack_unpacker;
 *   - request packing from a small format string, response parsing, map lookups, import.
 *
 * Nothing here uses the project's client library or proto/ code: the tests check the daemon
 * against PROTOCOL.md with an independent implementation of the framing.
 *
 * Cleanup is guaranteed: th_setup() installs an atexit handler and handlers for SIGALRM (the
 * test's overall time limit), SIGINT, SIGTERM and SIGHUP that kill every daemon started and
 * remove every temp dir; each daemon also gets PR_SET_PDEATHSIG, so it dies with the test.
 */
#ifndef TALLY_TEST_HARNESS_H
#define TALLY_TEST_HARNESS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <msgpack.h>

/* ---- process and time ---- */

/* Call first: SIGPIPE ignored, cleanup on exit and on signals, and an overall time limit
 * (SIGALRM after limit_s seconds fails the test, after cleaning up). */
void th_setup(const char *test_name, unsigned limit_s);
int64_t th_now_ms(void);   /* monotonic clock */
void th_sleep_ms(int ms);  /* sleeps, restarting after signals */
long th_rss_kb(pid_t pid); /* VmRSS from /proc/PID/status, -1 when unknown */

/* ---- the daemon under test ---- */

struct th_daemon {
    char tallyd[4096]; /* the binary */
    char dir[256];     /* temp dir: state dir, socket, config, log */
    char sock[300];
    char db[300];          /* dir/replica.db */
    char config[300];      /* "" when no config file was written */
    char log[300];         /* the daemon's stdout and stderr, appended across restarts */
    const char *log_level; /* --log-level, default "warning" */
    pid_t pid;             /* 0 when not running */
    int starts;
};

/* Makes the temp dir (/tmp/tally-<name>.XXXXXX). 0 or -1. */
int th_daemon_init(struct th_daemon *d, const char *tallyd, const char *name);
/* Writes dir/tallyd.conf with `text` and passes it with --config from then on. */
int th_daemon_config(struct th_daemon *d, const char *text);
/* Starts tallyd and waits (up to 10 s) until its socket accepts a connection. On failure the
 * child is killed, its log tail printed, and -1 returned. */
int th_daemon_start(struct th_daemon *d);
/* SIGTERM, then waits up to timeout_ms for the exit (SIGKILL after that). Returns the wait
 * status, or -1 when it had to be killed or was not running. */
int th_daemon_stop(struct th_daemon *d, int timeout_ms);
/* SIGKILL and reap. */
void th_daemon_kill9(struct th_daemon *d);
/* Waits up to timeout_ms for the daemon to end (after a kill sent by someone else) and reaps
 * it: the wait status, or -1 (it is then SIGKILLed). */
int th_daemon_reap(struct th_daemon *d, int timeout_ms);
/* Forks a helper that sends `sig` to `pid` after delay_us microseconds, independently of what
 * the caller is doing then. Returns the helper's pid (reap it with th_reap), or -1. */
pid_t th_signal_later(pid_t pid, int sig, long delay_us);
/* Kills (SIGKILL) and reaps a helper process; harmless when it already ended. */
void th_reap(pid_t pid);
/* Whether the child is still running (reaps it, and reports how it ended, if not). */
bool th_daemon_alive(struct th_daemon *d);
/* Prints the last max_lines lines of the daemon's log to stderr. */
void th_daemon_dump_log(const struct th_daemon *d, int max_lines);
/* Kills the daemon if running and removes the temp dir with everything in it. */
void th_daemon_cleanup(struct th_daemon *d);

/* ---- connections ---- */

/* Outcomes of reads and calls. */
enum {
    TH_OK = 0,       /* th_call: a success response */
    TH_MSG = 1,      /* th_recv: one message read, in c->msg */
    TH_ERRRESP = 2,  /* th_call: an error response (code in th_resp.code) */
    TH_EOF = -1,     /* the peer closed the connection (read returned 0) */
    TH_RESET = -2,   /* ECONNRESET / EPIPE: closed with data unread on its side */
    TH_TIMEOUT = -3, /* nothing (complete) within the timeout */
    TH_IOERR = -4,   /* any other socket error */
    TH_BADDATA = -5, /* bytes that are not MessagePack */
    TH_NOTRESP = -6, /* a message that is not a response, or for another msgid */
};
const char *th_outcome(int r); /* "ok", "eof", "timeout", ... */

struct th_conn {
    int fd; /* -1 when closed */
    msgpack_unpacker unp;
    msgpack_unpacked msg; /* the last message read; valid until the next read */
    uint32_t next_id;     /* msgid th_call uses next */
    bool inited;
};

/* A connected socket (SOCK_CLOEXEC), or -1. */
int th_connect_fd(const char *sock);
/* 0, or -1 (c->fd is then -1 but the struct may still be passed to th_close). */
int th_connect(struct th_conn *c, const char *sock);
void th_close(struct th_conn *c);
/* Sends all n bytes within timeout_ms: 0, TH_TIMEOUT, TH_RESET (EPIPE/ECONNRESET), TH_IOERR. */
int th_send_fd(int fd, const void *p, size_t n, int timeout_ms);
int th_send(struct th_conn *c, const void *p, size_t n, int timeout_ms);
/* Reads one MessagePack object within timeout_ms into c->msg: TH_MSG, or a negative outcome.
 * Bytes after the object stay buffered for the next call. */
int th_recv(struct th_conn *c, int timeout_ms);
/* Waits for the peer to close: TH_EOF or TH_RESET once it has; TH_MSG if a message came first
 * (in c->msg); TH_TIMEOUT. */
int th_wait_closed(struct th_conn *c, int timeout_ms);

/* A response [1, msgid, error, result], parsed. Pointers are into the message they came from. */
struct th_resp {
    uint64_t msgid;
    bool is_error;
    char code[48];     /* error code, "" for a success */
    char message[512]; /* error message */
    const msgpack_object *error;
    const msgpack_object *result;
};
/* 0 when o is a well-formed response (exactly one of error/result nil, error a map with a
 * string code); -1 otherwise (r->code then says why, for messages). */
int th_parse_response(const msgpack_object *o, struct th_resp *r);

/*
 * Packs a map from a format: one character per entry, each entry taking a key (const char *)
 * and then its value from the arguments:
 *   s  const char *     (a NULL string packs nil)
 *   i  long long
 *   u  unsigned long long
 *   b  int, as a bool
 *   n  nil (no value argument)
 * "" or NULL packs an empty map.
 */
void th_pack_map(msgpack_packer *pk, const char *fmt, ...);
void th_vpack_map(msgpack_packer *pk, const char *fmt, va_list ap);
/* Appends [0, msgid, method, [{...}]] to sb, the map packed from fmt as above. */
void th_pack_request(msgpack_sbuffer *sb, uint32_t msgid, const char *method, const char *fmt, ...);

/*
 * One call: sends a request (msgid c->next_id++, params packed from fmt) and reads its
 * response within timeout_ms. Returns TH_OK (result in r->result), TH_ERRRESP (r->code), or a
 * negative outcome; a response for another msgid is TH_NOTRESP.
 */
int th_call(struct th_conn *c, int timeout_ms, struct th_resp *r, const char *method,
            const char *fmt, ...);
/* The same with the params map already packed (raw MessagePack bytes of one map). */
int th_call_raw(struct th_conn *c, int timeout_ms, struct th_resp *r, const char *method,
                const void *params, size_t params_len);
/* Reads one response (any msgid) within timeout_ms: TH_OK, TH_ERRRESP or a negative outcome. */
int th_read_response(struct th_conn *c, int timeout_ms, struct th_resp *r);

/*
 * Imports nrows rows of `kind`; `rows` holds the rows' maps packed back to back (e.g. with
 * th_pack_map). TH_OK only when the answer says rows == nrows.
 */
int th_import(struct th_conn *c, const char *kind, uint32_t nrows, const msgpack_sbuffer *rows,
              struct th_resp *r);
/* Packs a whole catalog `import` request (msgid `msgid`) of nrows rows whose SKUs are
 * PREFIX-0 .. PREFIX-(nrows-1), product P-1, 100 EUR; with `bad_last` the last row's currency
 * is "eur", which the import refuses. For tests that pipeline several calls. */
void th_pack_import_catalog(msgpack_sbuffer *sb, uint32_t msgid, const char *prefix, int nrows,
                            bool bad_last);

/* ---- seeding a station ---- */

/* Rows for an import: maps packed back to back (th_rows_add takes th_pack_map's format) and
 * how many. */
struct th_rows {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n;
};
void th_rows_init(struct th_rows *rows);
void th_rows_add(struct th_rows *rows, const char *fmt, ...);
void th_rows_free(struct th_rows *rows);
/* Seeds a station over a fresh connection to sock: imports the warehouses, then the catalog,
 * then the stock (the order their references need). 0, or -1 after printing which import
 * failed and why. */
int th_seed(const char *sock, const struct th_rows *warehouses, const struct th_rows *catalog,
            const struct th_rows *stock);
/* The usual small station: warehouse ES-MAD (Madrid, ES) and n SKUs <prefix><i> for i = first
 * .. first + n - 1, each of product P-1 titled `title` at 100 EUR cents, with on_hand at
 * ES-MAD. 0 or -1, as th_seed. */
int th_seed_madrid(const char *sock, const char *prefix, int first, int n, const char *title,
                   long long on_hand);

/* A fresh connection to sock gets a correct `status` answer (station, server, connections
 * present and typed). Prints why not. */
bool th_status_ok(const char *sock);
/* The integer `key` of a `status` answer on a fresh connection to sock (timeout_ms), or -1. */
long long th_status_int(const char *sock, const char *key, int timeout_ms);
/* `hello` on c answers protocol 1 and server "tallyd ...". */
bool th_hello_ok(struct th_conn *c, int timeout_ms);

/* ---- reading the replica (harness_db.c; the test links SQLite) ---- */

/* The first column of the first row of `sql` (its ?1 bound to `arg` when not NULL) on the
 * replica at `path`, opened read-only with a 5 s busy timeout: -1 when there is no row or the
 * statement fails (printed), -2 when the replica cannot be opened. */
long long th_db_int(const char *path, const char *sql, const char *arg);

/* ---- reading objects ---- */

const msgpack_object *th_get(const msgpack_object *map, const char *key);
bool th_get_int(const msgpack_object *map, const char *key, long long *v);
bool th_get_bool(const msgpack_object *map, const char *key, bool *v);
/* Copies a string (NUL-terminated, truncated to cap). */
bool th_get_str(const msgpack_object *map, const char *key, char *buf, size_t cap);
bool th_obj_int(const msgpack_object *o, long long *v);
bool th_obj_str_eq(const msgpack_object *o, const char *s);

#endif
