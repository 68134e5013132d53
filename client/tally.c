/*
 * tally: the station's command-line client.
 *
 * A thin client in the tmux sense: each subcommand maps its arguments to the params of one
 * method (proto/PROTOCOL.md), calls tallyd and renders the result, as an aligned table for
 * people or as JSON (--json) for scripts. Every rule (what a valid quantity is, who may write,
 * what "low" means) lives in the daemon, so scripts that speak the protocol directly get the
 * same behaviour. The client checks only what it needs to build a request: the command line
 * itself, integers, and the CSV files it reads for `tally import`.
 *
 * The command table (`commands`) is data: name, handler, accepted options, help text.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "csv.h"
#include "output.h"
#include "tally/client.h"
#include "tally/protocol.h"

#ifndef TALLY_VERSION
#define TALLY_VERSION "0.1.0"
#endif

/* Exit status, documented in `tally --help`. */
enum {
    EXIT_OK = 0,
    EXIT_SERVER = 1,      /* a server error not listed below */
    EXIT_USAGE = 2,       /* bad command line, or an unreadable / malformed input file */
    EXIT_NOT_RUNNING = 3, /* cannot connect: nothing listens on the socket */
    EXIT_NOT_FOUND = 4,
    EXIT_REFUSED = 5,   /* invalid_params, insufficient_stock, conflict */
    EXIT_FORBIDDEN = 6, /* the caller's role may not do this */
    EXIT_TRANSPORT = 7, /* connection lost, timeout, malformed answer, protocol mismatch */
};

/* Import batches: rows per `import` call (the most a call takes, TALLY_MAX_PAGE: each call is
 * one transaction made durable, so fewer calls are fewer fsyncs), and a byte budget well under
 * max_message_bytes. */
#define IMPORT_BATCH_ROWS 1000
#define IMPORT_BATCH_BYTES (512u * 1024)
/* Import calls in flight on the connection at once (pipelined: tallyd applies them in order and
 * shares a commit between those that wait; at most SERVER_HOLD_PIPELINE, daemon/server.h). */
#define IMPORT_INFLIGHT 8
/* msgids of import calls: far from the library's own counter (1, 2, ...) and the hello pair. */
#define IMPORT_MSGID0 0x40000000u

/* ------------------------------------------------------------------------------------------ */
/* Command-line options                                                                       */

/*
 * Some options share a name with a meaning that depends on the command (--state of the outbox,
 * of exceptions, of returns; --id of a movement, a shipment, a return; --from as a warehouse or
 * a day): each command accepts at most one of them, and its help shows the one that fits.
 */
enum opt_id {
    O_WAREHOUSE,
    O_FROM,
    O_TO,
    O_ID,
    O_REF,
    O_REASON,
    O_FORCE,
    O_LOW,
    O_STATUS,
    O_STATE,
    O_LIMIT,
    O_ALL,
    O_CURSOR,
    O_WAIT,
    O_TIMEOUT,
    O_FSTATE,
    O_DUE,
    O_RELEASE,
    O_CARRIER,
    O_TRACKING,
    O_LINE,
    O_SHIP_ID,
    O_EXC_STATE,
    O_KIND,
    O_ORDER,
    O_NOTE,
    O_SAFETY,
    O_THRESHOLD,
    O_COVER_DAYS,
    O_RET_STATE,
    O_RET_ID,
    O_RET_REASON,
    O_SELLABLE,
    O_DAMAGED,
    O_PROMO_SKUS,
    O_MIN,
    O_PER,
    O_DAY,
    O_FROM_DAY,
    O_TO_DAY,
    O_SKUS_LIMIT,
    O_CSV,
    O_OLDER_THAN,
    O_DRY_RUN,
    O_IN_SKU,
    O_IN_QTY,
    O_ETA,
    O_IN_REF,
    O_IN_ID,
    O_COUNT
};

_Static_assert(O_COUNT <= 64, "options are bits of a uint64_t");

#define OPT(o) (UINT64_C(1) << (o))
#define OPTS_MOVE (OPT(O_ID) | OPT(O_REF) | OPT(O_REASON) | OPT(O_FORCE))
#define OPTS_PAGE (OPT(O_LIMIT) | OPT(O_ALL) | OPT(O_CURSOR))

struct option_spec {
    const char *name;
    const char *arg; /* NULL for a flag */
    const char *help;
    bool repeat; /* may be given more than once; every value is kept */
};

static const struct option_spec option_specs[O_COUNT] = {
    [O_WAREHOUSE] = {"warehouse", "W", "warehouse code, e.g. ES-MAD"},
    [O_FROM] = {"from", "W", "warehouse the goods leave"},
    [O_TO] = {"to", "W2", "warehouse the goods arrive at"},
    [O_ID] = {"id", "ID",
              "movement id (default: one made here, shown in the answer and on a timeout);\n"
              "                     the same id is applied once"},
    [O_REF] = {"ref", "REF", "a reference kept with the movement: order id, delivery note..."},
    [O_REASON] = {"reason", "TEXT", "why (required by adjust, and with --force)"},
    [O_FORCE] = {"force", NULL, "record it even if on-hand stock goes below zero (needs --reason)"},
    [O_LOW] = {"low", NULL,
               "only rows that are out (nothing available) or at or below their threshold"},
    [O_STATUS] = {"status", "S", "marketplace order status, e.g. WAIT_SELLER_SEND_GOODS"},
    [O_STATE] = {"state", "STATE", "pending, held or done"},
    [O_LIMIT] = {"limit", "N", "rows per page, 1-1000 (default 100; 1000 with --all)"},
    [O_ALL] = {"all", NULL, "fetch every page, not just the first"},
    [O_CURSOR] = {"cursor", "C", "continue after an earlier page (its next_cursor)"},
    [O_WAIT] = {"wait", NULL, "wait until the rounds are done, showing progress"},
    [O_TIMEOUT] = {"timeout", "SECONDS", "give up waiting after SECONDS (exit 7)"},
    [O_FSTATE] = {"fstate", "S",
                  "fulfilment state: new, pending, ready, allocated, sent, picked, partial,\n"
                  "                     shipped, uploaded, finished or cancelled"},
    [O_DUE] = {"due", NULL, "only open orders, what must leave first on top"},
    [O_RELEASE] = {"release", NULL,
                   "first release what is reserved and not shipped, then allocate again"},
    [O_CARRIER] = {"carrier", "C", "logistics service, e.g. DHL or CAINIAO_STANDARD"},
    [O_TRACKING] = {"tracking", "T", "the carrier's tracking number"},
    [O_LINE] = {"line", "SKU=QTY",
                "ship only this (repeat for several lines; default: everything allocated\n"
                "                     to the warehouse and not yet shipped)",
                true},
    [O_SHIP_ID] = {"id", "ID",
                   "shipment id: give one when you may retry; the same id ships once\n"
                   "                     (default ORDER-WAREHOUSE-N)"},
    [O_EXC_STATE] = {"state", "STATE",
                     "open, acknowledged, resolved, all, or active (open and acknowledged,\n"
                     "                     the default)"},
    [O_KIND] = {"kind", "K",
                "out_of_stock, bad_address, payment_held, deadline, warehouse,\n"
                "                     upstream_rejected, stock_drift, cancelled_after_pick or\n"
                "                     coordinator"},
    [O_ORDER] = {"order", "ID", "marketplace order id"},
    [O_NOTE] = {"note", "TEXT", "what was done or found, kept with it (up to 1024 bytes)"},
    [O_SAFETY] = {"safety", "N", "units never offered to the marketplace (>= 0)"},
    [O_THRESHOLD] = {"threshold", "N", "low-stock threshold in units (>= 0; ends --cover-days)"},
    [O_COVER_DAYS] = {"cover-days", "D",
                      "low when stock covers fewer than D days of recent sales (1-365;\n"
                      "                     0 turns it off and keeps the threshold)"},
    [O_RET_STATE] = {"state", "STATE", "received (waiting for inspection) or inspected"},
    [O_RET_ID] = {"id", "ID", "return id, e.g. the RMA number: the same id is recorded once"},
    [O_RET_REASON] = {"reason", "TEXT", "why it came back (the buyer's reason)"},
    [O_SELLABLE] = {"sellable", "N", "units fit to sell again"},
    [O_DAMAGED] = {"damaged", "N", "units to write off"},
    [O_PROMO_SKUS] = {"skus", "FILE",
                      "SKUs to check, one per line or SKU,MIN (CSV; '-' reads stdin)"},
    [O_MIN] = {"min", "N", "minimum stock for lines without one (default 1)"},
    [O_PER] = {"per", "sku|product",
               "sku: the product's cheapest SKU must have MIN (default);\n"
               "                     product: all its SKUs together"},
    [O_DAY] = {"day", "YYYY-MM-DD", "one local day (default: today)"},
    [O_FROM_DAY] = {"from", "YYYY-MM-DD", "first local day of the period"},
    [O_TO_DAY] = {"to", "YYYY-MM-DD", "last local day of the period, included (default: today)"},
    [O_SKUS_LIMIT] = {"skus", "N", "rows of the per-SKU table, 1-1000 (default 50)"},
    [O_CSV] = {"csv", NULL, "print the tables as CSV, for a spreadsheet"},
    [O_OLDER_THAN] = {"older-than", "DAYS",
                      "orders finished or cancelled more than DAYS ago (default: the\n"
                      "                     daemon's [privacy] retain_days)"},
    [O_DRY_RUN] = {"dry-run", NULL, "only count the orders that would be purged"},
    [O_IN_SKU] = {"sku", "SKU", "a SKU coming in; each --sku is followed by its --qty", true},
    [O_IN_QTY] = {"qty", "N", "units of the --sku before it (> 0)", true},
    [O_ETA] = {"eta", "YYYY-MM-DD", "the day the goods are expected at the warehouse"},
    [O_IN_REF] = {"ref", "REF", "your reference: a purchase order, a shipment from the supplier"},
    [O_IN_ID] = {"id", "ID",
                 "notice id (default: one made here, shown in the answer and on a timeout);\n"
                 "                     the same id is recorded once"},
};

#define MAX_POS 3

struct args {
    const char *pos[MAX_POS];
    int npos;
    bool set[O_COUNT];
    const char *val[O_COUNT];
    const char **lines; /* every value of a repeatable option, in order; malloc'd */
    int *line_opts;     /* the option each of `lines` belongs to (O_LINE, O_IN_SKU...) */
    size_t nlines;
    int64_t limit; /* valid when set[O_LIMIT] */
    bool help;
};

/* What the whole invocation shares: global options and the one connection. */
struct cli {
    const char *socket_opt; /* --socket, or NULL */
    int timeout_s;          /* --timeout or TALLY_TIMEOUT; -1: the library's default */
    bool json;
    /* A write whose effect a transport failure leaves unknown: what it is ("movement") and
     * the id to retry it with (NULL: none makes a retry safe), and whether it was sent. */
    const char *write_what;
    const char *write_id;
    const char *write_order; /* without an id: the order to look at before a repeat */
    bool write_sent;
    struct tally_client *client;
    const struct command *cmd;
    char err_code[32]; /* the last error reported */
    char err_message[512];
};

struct command {
    const char *name; /* one or two words: "stock", "stock list" */
    int (*run)(struct cli *cli, const struct args *a);
    uint64_t opts;                /* OPT() bits accepted */
    uint64_t required;            /* OPT() bits that must be given */
    const char *pos[MAX_POS + 1]; /* positional argument names, NULL-terminated; all required */
    const char *summary;          /* one line, for `tally help` */
    const char *text;             /* what it does, for `tally CMD --help` */
    const char *example;
};

/* ------------------------------------------------------------------------------------------ */
/* Errors and exit codes                                                                      */

static int exit_code_for(int err)
{
    switch (err) {
    case TALLY_OK:
        return EXIT_OK;
    case TALLY_E_NOT_FOUND:
        return EXIT_NOT_FOUND;
    case TALLY_E_INVALID_PARAMS:
    case TALLY_E_INSUFFICIENT:
    case TALLY_E_CONFLICT:
        return EXIT_REFUSED;
    case TALLY_E_FORBIDDEN:
        return EXIT_FORBIDDEN;
    case TALLY_E_NOT_RUNNING:
        return EXIT_NOT_RUNNING;
    case TALLY_E_IO:
    case TALLY_E_TIMEOUT:
    case TALLY_E_MALFORMED:
    case TALLY_E_BAD_REQUEST:
    case TALLY_E_TOO_LARGE:
    case TALLY_E_TOO_DEEP:
    case TALLY_E_VERSION:
        return EXIT_TRANSPORT;
    default:
        return EXIT_SERVER;
    }
}

static void json_error_doc(const char *code, const char *message, const char *file,
                           unsigned long line)
{
    fputs("{\"error\":{\"code\":", stdout);
    json_write_str(stdout, code, strlen(code));
    fputs(",\"message\":", stdout);
    json_write_str(stdout, message, strlen(message));
    if (file) {
        fputs(",\"file\":", stdout);
        json_write_str(stdout, file, strlen(file));
    }
    if (line)
        printf(",\"line\":%lu", line);
    fputs("}}\n", stdout);
}

/*
 * Reports an error: "tally: MESSAGE (CODE)" on stderr and, with --json, the same as a JSON
 * document on stdout. Returns the exit code for `err`.
 */
static int report(struct cli *cli, int err, const char *code, const char *message)
{
    snprintf(cli->err_code, sizeof cli->err_code, "%s", code);
    snprintf(cli->err_message, sizeof cli->err_message, "%s", message);
    if (cli->json)
        json_error_doc(code, message, NULL, 0);
    fputs("tally: ", stderr);
    out_text(stderr, message, strlen(message));
    fprintf(stderr, " (%s)\n", code);
    return exit_code_for(err);
}

/* A client-side (transport) failure of the connection. For a write, whether it may have been
 * recorded and how to retry it safely: a caller at 3 a.m. must not record a pick twice. */
static int report_transport(struct cli *cli, int err)
{
    const char *why = tally_client_errmsg(cli->client);
    if (!cli->write_what)
        return report(cli, err, tally_strerror_code(err), why);
    char msg[768], again[300];
    if (cli->write_id)
        snprintf(again, sizeof again,
                 "run the same command again with --id %s (safe: a %s with the same id is applied"
                 " once)",
                 cli->write_id, cli->write_what);
    else
        snprintf(again, sizeof again,
                 "look with tally orders show %.64s before running it again: it was sent without"
                 " --id, so a repeat would be recorded as another %s",
                 cli->write_order ? cli->write_order : "ORDER", cli->write_what);
    char what[64];
    if (err == TALLY_E_TIMEOUT && cli->timeout_s > 0)
        snprintf(what, sizeof what, "no answer from tallyd within %d s", cli->timeout_s);
    else if (err == TALLY_E_TIMEOUT)
        snprintf(what, sizeof what, "no answer from tallyd in time");
    else
        snprintf(what, sizeof what, "the connection to tallyd failed");
    if (cli->write_sent)
        snprintf(msg, sizeof msg, "%s (%s): the %s may or may not be recorded; %s", what, why,
                 cli->write_what, again);
    else
        snprintf(msg, sizeof msg, "%s (%s): the %s was not sent, nothing was recorded; %s", what,
                 why, cli->write_what, again);
    return report(cli, err, tally_strerror_code(err), msg);
}

static int usage_error(const struct cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const struct cli *cli, const char *fmt, ...)
{
    va_list ap;
    fputs("tally: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cli->cmd)
        fprintf(stderr, "\nTry 'tally %s --help'.\n", cli->cmd->name);
    else
        fputs("\nTry 'tally help' for the list of commands.\n", stderr);
    return EXIT_USAGE;
}

/* ------------------------------------------------------------------------------------------ */
/* Talking to tallyd                                                                          */

enum kv_type { KV_STR, KV_INT, KV_BOOL, KV_RAW };

/* One params entry; entries with `on` false are left out of the map. */
struct kv {
    const char *key;
    enum kv_type type;
    bool on;
    const char *s; /* KV_STR: the string; KV_RAW: packed MessagePack */
    int64_t i;     /* KV_INT: the value; KV_RAW: the length of s */
};

static struct kv kv_str(const char *key, const char *value)
{
    return (struct kv){key, KV_STR, value != NULL, value, 0};
}

static struct kv kv_int(const char *key, int64_t value, bool present)
{
    return (struct kv){key, KV_INT, present, NULL, value};
}

/* A boolean sent only when true (false is every method's default). */
static struct kv kv_flag(const char *key, bool set)
{
    return (struct kv){key, KV_BOOL, set, NULL, 0};
}

/* A value the caller packed already (an array of maps: shipment lines, promo items). */
static struct kv kv_raw(const char *key, const msgpack_sbuffer *packed)
{
    return (struct kv){key, KV_RAW, packed->size > 0, packed->data, (int64_t)packed->size};
}

/* Packs the entries that are `on` as one map into sb (which the caller initialised). */
static void pack_params(msgpack_sbuffer *sb, const struct kv *kv, size_t n)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += kv[i].on;
    msgpack_pack_map(&pk, count);
    for (size_t i = 0; i < n; i++) {
        if (!kv[i].on)
            continue;
        if (kv[i].type == KV_STR)
            mp_pack_kv_str(&pk, kv[i].key, kv[i].s);
        else if (kv[i].type == KV_INT)
            mp_pack_kv_int(&pk, kv[i].key, kv[i].i);
        else if (kv[i].type == KV_RAW) {
            mp_pack_key(&pk, kv[i].key);
            msgpack_sbuffer_write(sb, kv[i].s, (size_t)kv[i].i); /* the packer buffers nothing */
        } else
            mp_pack_kv_bool(&pk, kv[i].key, true);
    }
}

/*
 * Connects (once per invocation) and says hello. hello's result is not needed, but its errors
 * are: version_mismatch means this client cannot talk to that daemon, and overloaded or
 * shutting_down arrive here too. unknown_method is tolerated (hello is optional).
 */
static int cli_connect_only(struct cli *cli)
{
    const char *path = tally_socket_path(cli->socket_opt);
    char why[512];
    int err = tally_connect(path, &cli->client, why, sizeof why);
    if (err == 0 && cli->timeout_s >= 0)
        tally_client_set_timeout(cli->client, cli->timeout_s * 1000);
    if (err) {
        if (cli->json)
            json_error_doc(tally_strerror_code(err), why, NULL, 0);
        fprintf(stderr, "tally: %s\n", why);
        return err == TALLY_E_INVALID_PARAMS ? EXIT_USAGE : exit_code_for(err);
    }
    return EXIT_OK;
}

static void pack_hello(msgpack_sbuffer *sb)
{
    const struct kv hello[] = {kv_int("version", TALLY_PROTOCOL_VERSION, true),
                               kv_str("client", "tally " TALLY_VERSION)};
    pack_params(sb, hello, sizeof hello / sizeof hello[0]);
}

/* hello's answer: EXIT_OK, or the exit code after reporting its error. */
static int hello_verdict(struct cli *cli, const struct tally_reply *r)
{
    if (r->err && r->err != TALLY_E_UNKNOWN_METHOD)
        return report(cli, r->err, r->code, r->message);
    return EXIT_OK;
}

static int cli_connect(struct cli *cli)
{
    if (cli->client)
        return 0;
    int rc = cli_connect_only(cli);
    if (rc)
        return rc;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_hello(&sb);
    struct tally_reply *r;
    int err = tally_call(cli->client, "hello", sb.data, sb.size, &r);
    msgpack_sbuffer_destroy(&sb);
    if (err)
        return report_transport(cli, err);
    rc = hello_verdict(cli, r);
    tally_reply_free(r);
    return rc;
}

/*
 * Methods that change nothing (rpc.c's table). The first of them on a new connection is sent
 * together with hello, so the command costs one round trip to tallyd, not two (a process that
 * asks one thing, `tally stock SKU`, mostly waits for tallyd to be scheduled: each round trip
 * is a wake-up of the daemon and of the client). Should hello then refuse (version_mismatch),
 * the answer to the read is dropped: nothing was changed. A write still waits for hello's
 * verdict before it is sent.
 */
static bool method_is_read(const char *method)
{
    static const char *const reads[] = {
        "status",      "catalog.get", "catalog.search", "stock.get",       "stock.list",
        "orders.list", "orders.get",  "outbox.list",    "exceptions.list", "returns.list",
        "promo.check", "report",      "inbound.list",   "carriers.list",
    };
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
        if (strcmp(method, reads[i]) == 0)
            return true;
    return false;
}

/* msgids of the pipelined pair: far from the library's own counter (1, 2, ...). */
#define HELLO_MSGID 0xfffffff0u
#define FIRST_READ_MSGID 0xfffffff1u

/* Connects and sends hello and `method` at once; *out as cli_request. */
static int cli_hello_and_read(struct cli *cli, const char *method, const msgpack_sbuffer *params,
                              struct tally_reply **out)
{
    int rc = cli_connect_only(cli);
    if (rc)
        return rc;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_hello(&sb);
    int err = tally_send(cli->client, HELLO_MSGID, "hello", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (err == 0)
        err = tally_send(cli->client, FIRST_READ_MSGID, method, params ? params->data : NULL,
                         params ? params->size : 0);
    if (err == TALLY_E_IO && tally_farewell(cli->client, out) == 0)
        return EXIT_OK; /* tallyd said why it closed the connection (overloaded) */
    struct tally_reply *hello = NULL, *answer = NULL;
    while (err == 0 && (!hello || !answer)) {
        struct tally_reply *r;
        err = tally_recv(cli->client, &r);
        if (err)
            break;
        if (r->msgid == 0 && r->err != 0) { /* a connection-level error: the connection ends */
            tally_reply_free(hello);
            tally_reply_free(answer);
            *out = r;
            return EXIT_OK;
        }
        if (r->msgid == HELLO_MSGID && !hello) {
            hello = r;
            if (hello->err && hello->err != TALLY_E_UNKNOWN_METHOD)
                break; /* refused: the read's answer does not matter */
        } else if (r->msgid == FIRST_READ_MSGID && !answer)
            answer = r;
        else
            tally_reply_free(r);
    }
    if (hello && hello->err && hello->err != TALLY_E_UNKNOWN_METHOD) {
        rc = hello_verdict(cli, hello);
        tally_reply_free(hello);
        tally_reply_free(answer);
        return rc;
    }
    tally_reply_free(hello);
    if (err) {
        tally_reply_free(answer);
        return report_transport(cli, err);
    }
    *out = answer;
    return EXIT_OK;
}

/*
 * Calls `method`. Returns EXIT_OK with *out set (the reply may carry a server error: check
 * (*out)->err), or an exit code after reporting a connection or transport failure.
 */
static int cli_request(struct cli *cli, const char *method, const msgpack_sbuffer *params,
                       struct tally_reply **out)
{
    *out = NULL;
    if (!cli->client && method_is_read(method))
        return cli_hello_and_read(cli, method, params, out);
    int rc = cli_connect(cli);
    if (rc)
        return rc;
    cli->write_sent = cli->write_what != NULL;
    int err = tally_call(cli->client, method, params ? params->data : NULL,
                         params ? params->size : 0, out);
    return err ? report_transport(cli, err) : EXIT_OK;
}

/* As cli_request, but a server error is reported too: *out is set only on success. */
static int cli_call(struct cli *cli, const char *method, const struct kv *kv, size_t n,
                    struct tally_reply **out)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_params(&sb, kv, n);
    int rc = cli_request(cli, method, &sb, out);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return rc;
    if ((*out)->err) {
        rc = report(cli, (*out)->err, (*out)->code, (*out)->message);
        tally_reply_free(*out);
        *out = NULL;
    }
    return rc;
}

/* The result is not shaped as PROTOCOL.md says: a protocol failure. */
static int bad_answer(struct cli *cli, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof msg, "unexpected answer from tallyd: %s", what);
    return report(cli, TALLY_E_MALFORMED, "malformed", msg);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading results                                                                            */

/* Appends to buf (capacity cap, *len bytes used): what does not fit is cut off. */
static void appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = tally_obj_get(map, key);
    return o && o->type != MSGPACK_OBJECT_NIL ? o : NULL;
}

/* The string at key as a NUL-terminated copy in buf ("-" when absent or not a string). */
static const char *get_str(const msgpack_object *map, const char *key, char *buf, size_t cap)
{
    const msgpack_object *o = get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_STR) {
        snprintf(buf, cap, "-");
        return NULL;
    }
    snprintf(buf, cap, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    return buf;
}

static bool obj_int(const msgpack_object *o, int64_t *v)
{
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return true;
    }
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return true;
    }
    return false;
}

static bool get_int(const msgpack_object *map, const char *key, int64_t *v)
{
    return obj_int(get(map, key), v);
}

static bool get_bool(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = get(map, key);
    return o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

static const msgpack_object *get_array(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = get(map, key);
    return o && o->type == MSGPACK_OBJECT_ARRAY ? o : NULL;
}

/* Table cell helpers: "-" for an absent value. */
static void cell_str(struct table *t, const msgpack_object *map, const char *key)
{
    char buf[1100];
    table_cell(t, get_str(map, key, buf, sizeof buf) ? buf : "-");
}

static void cell_int(struct table *t, const msgpack_object *map, const char *key)
{
    int64_t v;
    if (get_int(map, key, &v))
        table_cellf(t, "%" PRId64, v);
    else
        table_cell(t, "-");
}

static void cell_time(struct table *t, const msgpack_object *map, const char *key, bool short_form)
{
    int64_t v;
    char buf[64];
    if (!get_int(map, key, &v)) {
        table_cell(t, "-");
        return;
    }
    fmt_time(buf, sizeof buf, v, short_form);
    table_cell(t, buf);
}

static void money_of(const msgpack_object *map, const char *amount_key, const char *currency,
                     char *buf, size_t cap)
{
    int64_t v;
    if (!get_int(map, amount_key, &v)) {
        snprintf(buf, cap, "-");
        return;
    }
    fmt_money(buf, cap, v, currency, currency ? strlen(currency) : 0);
}

/* "label        value" lines of the one-record views (status, sku, orders show). */
static void field(const char *label, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void field(const char *label, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    printf("%-13s ", label);
    out_text(stdout, buf, strlen(buf));
    fputc('\n', stdout);
}

static void fmt_bytes(char *buf, size_t cap, int64_t n)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(buf, cap, "%" PRId64 " bytes", n);
        return;
    }
    double v = (double)n;
    int u = -1;
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", v, unit[u]);
}

/* Prints the whole result as one JSON document (--json). */
static int print_json(const msgpack_object *o)
{
    if (json_write(stdout, o) != 0) {
        fputs("tally: out of memory\n", stderr);
        return EXIT_SERVER;
    }
    fputc('\n', stdout);
    return EXIT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Argument parsing                                                                           */

/* A strict int64: optional sign and decimal digits only ("12abc", " 5", "" and overflow fail). */
static int parse_int64(const char *s, int64_t *v)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return TALLY_E_INVALID_PARAMS;
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end)
        return TALLY_E_INVALID_PARAMS;
    if (errno == ERANGE)
        return TALLY_E_TOO_LARGE;
    *v = x;
    return 0;
}

/* Parses a positive decimal integer argument; false when it is not one. */
static bool parse_positive(const char *s, int64_t *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x <= 0)
        return false;
    *v = x;
    return true;
}

static int int_arg(const struct cli *cli, const char *name, const char *s, int64_t *v)
{
    int r = parse_int64(s, v);
    if (r == TALLY_E_TOO_LARGE)
        return usage_error(cli, "%s '%s' is out of range", name, s);
    if (r)
        return usage_error(cli, "%s must be an integer, not '%s'", name, s);
    return 0;
}

/* An integer option's value when it is given: 0, or the exit code of a usage error. */
static int opt_int(const struct cli *cli, const struct args *a, int o, int64_t *v)
{
    char name[40];
    if (!a->set[o])
        return 0;
    snprintf(name, sizeof name, "--%s", option_specs[o].name);
    return int_arg(cli, name, a->val[o], v);
}

/* --timeout / TALLY_TIMEOUT: whole seconds to wait for each answer, 0 for no limit. */
static int set_timeout(struct cli *cli, const char *what, const char *v)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || *end || errno || n > 86400)
        return usage_error(cli, "%s must be whole seconds from 0 (no limit) to 86400, not '%s'",
                           what, v);
    cli->timeout_s = (int)n;
    return 0;
}

/* "-5" is an argument (a signed quantity), "-x" and "--x" are options. */
static bool looks_like_option(const char *s)
{
    return s[0] == '-' && s[1] != '\0' && !isdigit((unsigned char)s[1]);
}

static bool is_global_flag(struct cli *cli, const char *s, struct args *a)
{
    if (strcmp(s, "--json") == 0) {
        cli->json = true;
        return true;
    }
    if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
        a->help = true;
        return true;
    }
    return false;
}

/*
 * Parses a subcommand's arguments: positionals and its options in any order, "--opt VALUE" or
 * "--opt=VALUE", "--" ending the options. --json, --help and --socket are accepted anywhere.
 */
static int parse_args(struct cli *cli, int argc, char **argv, struct args *a)
{
    const struct command *cmd = cli->cmd;
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (!options_done && strcmp(s, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || !looks_like_option(s)) {
            if (a->npos == MAX_POS || !cmd->pos[a->npos])
                return usage_error(cli, "unexpected argument '%s'", s);
            a->pos[a->npos++] = s;
            continue;
        }
        if (is_global_flag(cli, s, a))
            continue;
        const char *name = s + 2, *eq = strchr(s, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (s[1] == '-' && nlen == 6 && strncmp(name, "socket", 6) == 0) {
            if (!eq && i + 1 == argc)
                return usage_error(cli, "--socket needs a PATH");
            cli->socket_opt = eq ? eq + 1 : argv[++i];
            continue;
        }
        if (s[1] == '-' && nlen == 7 && strncmp(name, "timeout", 7) == 0) {
            if (!eq && i + 1 == argc)
                return usage_error(cli, "--timeout needs SECONDS");
            int rc = set_timeout(cli, "--timeout", eq ? eq + 1 : argv[++i]);
            if (rc)
                return rc;
            continue;
        }
        int o = O_COUNT;
        if (s[1] == '-')
            for (o = 0; o < O_COUNT; o++)
                if ((cmd->opts & OPT(o)) && strlen(option_specs[o].name) == nlen &&
                    strncmp(option_specs[o].name, name, nlen) == 0)
                    break;
        if (o == O_COUNT)
            return usage_error(cli, "unknown option '%.*s' for %s",
                               (int)(eq ? (size_t)(eq - s) : strlen(s)), s, cmd->name);
        const struct option_spec *spec = &option_specs[o];
        if (!spec->arg && eq)
            return usage_error(cli, "--%s takes no value", spec->name);
        if (spec->arg && !eq && i + 1 == argc)
            return usage_error(cli, "--%s needs a value (%s)", spec->name, spec->arg);
        a->set[o] = true;
        a->val[o] = spec->arg ? (eq ? eq + 1 : argv[++i]) : NULL;
        if (spec->repeat) {
            if ((!a->lines && !(a->lines = calloc((size_t)argc, sizeof *a->lines))) ||
                (!a->line_opts && !(a->line_opts = calloc((size_t)argc, sizeof *a->line_opts)))) {
                fputs("tally: out of memory\n", stderr);
                return EXIT_SERVER;
            }
            a->line_opts[a->nlines] = o;
            a->lines[a->nlines++] = a->val[o];
        }
    }
    return 0;
}

/* Checks what parse_args cannot: required arguments and option values. */
static int check_args(const struct cli *cli, struct args *a)
{
    const struct command *cmd = cli->cmd;
    /* A positional named "[NAME]" is optional. */
    if (a->npos < MAX_POS && cmd->pos[a->npos] && cmd->pos[a->npos][0] != '[')
        return usage_error(cli, "missing %s", cmd->pos[a->npos]);
    for (int o = 0; o < O_COUNT; o++)
        if ((cmd->required & OPT(o)) && !a->set[o])
            return usage_error(cli, "%s needs --%s %s", cmd->name, option_specs[o].name,
                               option_specs[o].arg);
    for (int o = 0; o < O_COUNT; o++)
        if (a->set[o] && option_specs[o].arg && a->val[o][0] == '\0')
            return usage_error(cli, "--%s must not be empty", option_specs[o].name);
    if (a->set[O_LIMIT]) {
        int r = int_arg(cli, "--limit", a->val[O_LIMIT], &a->limit);
        if (r)
            return r;
        if (a->limit < 1 || a->limit > TALLY_MAX_PAGE)
            return usage_error(cli, "--limit must be between 1 and %d", TALLY_MAX_PAGE);
    }
    /* Mirrors the usage line; tallyd checks it again. */
    if (a->set[O_FORCE] && !a->set[O_REASON])
        return usage_error(cli, "--force needs --reason TEXT (say why stock may go negative)");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Paged lists                                                                                */

struct lister {
    const char *method;
    const struct kv *filters;
    size_t nfilters;
    const struct table_col *cols;
    size_t ncols;
    void (*row)(struct table *t, const msgpack_object *item);
    const char *none; /* what to say when nothing matched */
    /* Optional: called with each page's whole result (tables only), e.g. to keep its counts. */
    void (*page)(void *ctx, const msgpack_object *result);
    void *ctx;
    /* Optional: a key of the result besides items kept in the --all --json document. */
    const char *extra;
};

/*
 * With --all --json the pages are streamed as one document. An error after the first page
 * ends it cleanly: next_cursor is where to resume, and "error" says what happened.
 */
static void json_all_end(const char *cursor, const char *code, const char *message,
                         const char *extra_key, const char *extra_json)
{
    fputs("],\"next_cursor\":", stdout);
    if (cursor)
        json_write_str(stdout, cursor, strlen(cursor));
    else
        fputs("null", stdout);
    if (extra_key && extra_json) {
        fputc(',', stdout);
        json_write_str(stdout, extra_key, strlen(extra_key));
        printf(":%s", extra_json);
    }
    if (code) {
        fputs(",\"error\":{\"code\":", stdout);
        json_write_str(stdout, code, strlen(code));
        fputs(",\"message\":", stdout);
        json_write_str(stdout, message, strlen(message));
        fputc('}', stdout);
    }
    fputs("}\n", stdout);
}

/* Fetches one page: filters + limit + cursor. */
static int fetch_page(struct cli *cli, const struct lister *l, int64_t limit, bool has_limit,
                      const char *cursor, struct tally_reply **out)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    struct kv *kv = calloc(l->nfilters + 2, sizeof *kv);
    if (!kv) {
        fputs("tally: out of memory\n", stderr);
        return EXIT_SERVER;
    }
    memcpy(kv, l->filters, l->nfilters * sizeof *kv);
    kv[l->nfilters] = kv_int("limit", limit, has_limit);
    kv[l->nfilters + 1] = kv_str("cursor", cursor);
    pack_params(&sb, kv, l->nfilters + 2);
    free(kv);
    int rc = cli_request(cli, l->method, &sb, out);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int run_list(struct cli *cli, const struct args *a, const struct lister *l)
{
    bool all = a->set[O_ALL];
    int64_t limit = a->set[O_LIMIT] ? a->limit : TALLY_MAX_PAGE;
    bool has_limit = a->set[O_LIMIT] || all;
    char *cursor = a->set[O_CURSOR] ? strdup(a->val[O_CURSOR]) : NULL;
    char *extra = NULL; /* JSON text of the last page's l->extra */
    struct table *t = cli->json ? NULL : table_new(l->cols, l->ncols);
    int64_t shown = 0, buffered = 0;
    bool more = false, started = false;
    int rc = EXIT_OK;

    if ((a->set[O_CURSOR] && !cursor) || (!cli->json && !t)) {
        free(cursor);
        fputs("tally: out of memory\n", stderr);
        return EXIT_SERVER;
    }
    for (;;) {
        struct tally_reply *r = NULL;
        bool json = cli->json;
        cli->json = json && !started; /* errors go inside the open document, not after it */
        rc = fetch_page(cli, l, limit, has_limit, cursor, &r);
        if (rc == 0 && r->err)
            rc = report(cli, r->err, r->code, r->message);
        const msgpack_object *items = NULL, *next = NULL;
        if (rc == 0) {
            items = get_array(&r->result, "items");
            next = get(&r->result, "next_cursor");
            if (!items || (next && next->type != MSGPACK_OBJECT_STR))
                rc = bad_answer(cli, "a page without items or with a bad next_cursor");
        }
        cli->json = json;
        if (rc && started)
            json_all_end(cursor, cli->err_code, cli->err_message, l->extra, extra);
        if (rc) {
            tally_reply_free(r);
            break;
        }
        if (cli->json && !all) {
            rc = print_json(&r->result);
        } else if (cli->json) {
            const msgpack_object *x = l->extra ? get(&r->result, l->extra) : NULL;
            if (x) {
                free(extra);
                extra = json_from_object(x, NULL);
            }
            fputs(started ? "" : "{\"items\":[", stdout);
            for (uint32_t i = 0; i < items->via.array.size; i++) {
                if (shown + i > 0)
                    fputc(',', stdout);
                json_write(stdout, &items->via.array.ptr[i]);
            }
            started = true;
        } else {
            for (uint32_t i = 0; i < items->via.array.size; i++)
                l->row(t, &items->via.array.ptr[i]);
            if (l->page)
                l->page(l->ctx, &r->result);
            buffered += items->via.array.size;
            /* Columns are sized by what is buffered: keep up to a page's worth, then print. */
            if (buffered >= TALLY_MAX_PAGE && table_flush(t, stdout) != 0)
                fputs("tally: out of memory\n", stderr);
            if (buffered >= TALLY_MAX_PAGE)
                buffered = 0;
        }
        shown += items->via.array.size;
        char *prev = cursor;
        cursor = next ? strndup(next->via.str.ptr, next->via.str.size) : NULL;
        more = cursor != NULL;
        tally_reply_free(r);
        if (next && !cursor) {
            fputs("tally: out of memory\n", stderr);
            rc = EXIT_SERVER;
        } else if (all && more && prev && strcmp(prev, cursor) == 0) {
            rc = bad_answer(cli, "the same next_cursor twice"); /* would loop forever */
        }
        free(prev);
        if (!all || !more || rc)
            break;
    }
    if (t && buffered && table_flush(t, stdout) != 0)
        fputs("tally: out of memory\n", stderr);
    if (rc == EXIT_OK && cli->json && started)
        json_all_end(NULL, NULL, NULL, l->extra, extra);
    if (rc == EXIT_OK && !cli->json) {
        if (shown == 0)
            printf("%s\n", l->none);
        if (more) /* a hint for people, on stderr so the table stays clean for pipes */
            fprintf(stderr,
                    "(%" PRId64 " shown; more: add --all, or --cursor '%s' for the next page)\n",
                    shown, cursor);
    }
    free(cursor);
    free(extra);
    table_free(t);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* status                                                                                     */

/* An age column: "12s", "3m 4s", or `none` when the field is absent. */
static void cell_age(struct table *t, const msgpack_object *map, const char *key, const char *none)
{
    int64_t v;
    char b[64];
    if (!get_int(map, key, &v)) {
        table_cell(t, none);
        return;
    }
    fmt_duration(b, sizeof b, v);
    table_cell(t, b);
}

static void print_upstreams(const msgpack_object *ups)
{
    if (!ups || ups->via.array.size == 0) {
        field("upstreams", "none configured (offline station)");
        return;
    }
    static const struct table_col cols[] = {
        {"UPSTREAM", TABLE_LEFT},  {"KIND", TABLE_LEFT},         {"CAPABILITIES", TABLE_LEFT},
        {"LINK", TABLE_LEFT},      {"LAST_SUCCESS", TABLE_LEFT}, {"OUTBOX", TABLE_RIGHT},
        {"HELD", TABLE_RIGHT},     {"OLDEST", TABLE_RIGHT},      {"RETRY_IN", TABLE_RIGHT},
        {"LAST_ERROR", TABLE_LEFT}};
    static const struct table_col scols[] = {{"STREAM", TABLE_LEFT},      {"ROUND", TABLE_LEFT},
                                             {"LAG", TABLE_RIGHT},        {"ROWS", TABLE_RIGHT},
                                             {"LAST_ROUND", TABLE_RIGHT}, {"REPAIRED", TABLE_RIGHT},
                                             {"ERROR", TABLE_LEFT}};
    struct table *t = table_new(cols, sizeof cols / sizeof cols[0]);
    struct table *ts = table_new(scols, sizeof scols / sizeof scols[0]);
    if (!t || !ts) {
        table_free(t);
        table_free(ts);
        return;
    }
    for (uint32_t i = 0; i < ups->via.array.size; i++) {
        const msgpack_object *u = &ups->via.array.ptr[i], *ob = get(u, "outbox");
        int64_t retry = 0;
        cell_str(t, u, "name");
        cell_str(t, u, "kind");
        /* what the station may ask of it (its connector's capabilities), comma-separated */
        const msgpack_object *caps = get_array(u, "capabilities");
        char cb[160] = "";
        size_t cl = 0;
        for (uint32_t j = 0; caps && j < caps->via.array.size; j++) {
            const msgpack_object *cv = &caps->via.array.ptr[j];
            if (cv->type != MSGPACK_OBJECT_STR)
                continue;
            int w = snprintf(cb + cl, sizeof cb - cl, "%s%.*s", cl ? "," : "",
                             (int)cv->via.str.size, cv->via.str.ptr);
            if (w < 0 || (size_t)w >= sizeof cb - cl)
                break;
            cl += (size_t)w;
        }
        table_cell(t, cl ? cb : "-");
        cell_str(t, u, "link");
        if (get(u, "last_success_at") && get(u, "last_success_at")->type != MSGPACK_OBJECT_NIL)
            cell_time(t, u, "last_success_at", false);
        else
            table_cell(t, "never");
        cell_int(t, ob, "pending");
        cell_int(t, ob, "held");
        cell_age(t, ob, "oldest_age_s", "-");
        if (get_int(u, "retry_in_s", &retry) && retry > 0)
            table_cellf(t, "%" PRId64 "s", retry);
        else
            table_cell(t, "-");
        cell_str(t, u, "last_error");
        const msgpack_object *streams = get_array(u, "streams");
        for (uint32_t j = 0; streams && j < streams->via.array.size; j++) {
            const msgpack_object *st = &streams->via.array.ptr[j];
            cell_str(ts, st, "name");
            table_cell(ts, get_bool(st, "in_round") ? "running" : "idle");
            cell_age(ts, st, "lag_s", "never");
            cell_int(ts, st, "round_rows");
            cell_int(ts, st, "last_round_rows");
            cell_int(ts, st, "repaired");
            cell_str(ts, st, "last_error");
        }
    }
    printf("\n");
    table_flush(t, stdout);
    printf("\n");
    table_flush(ts, stdout);
    table_free(t);
    table_free(ts);
}

static int run_status(struct cli *cli, const struct args *a)
{
    (void)a;
    struct tally_reply *r;
    int rc = cli_call(cli, "status", NULL, 0, &r);
    if (rc)
        return rc;
    const msgpack_object *s = &r->result;
    if (cli->json) {
        rc = print_json(s);
        tally_reply_free(r);
        return rc;
    }
    char b1[512], b2[512], b3[64];
    int64_t v, w, x, y;
    field("station", "%s", get_str(s, "station", b1, sizeof b1) ? b1 : "-");
    field("role", "%s", get_str(s, "role", b1, sizeof b1) ? b1 : "-");
    const msgpack_object *co = get(s, "coordination");
    if (co) {
        char why[700];
        get_str(co, "mark", b2, sizeof b2);
        if (!get_bool(co, "coordinator"))
            field("coordination", "not the coordinator (mark %s)", b2);
        else if (get_bool(co, "deciding"))
            field("coordination", "coordinator, deciding (mark %s)", b2);
        else
            field("coordination", "coordinator, NOT deciding (mark %s): %s", b2,
                  get_str(co, "why", why, sizeof why) ? why : "-");
    }
    get_str(s, "server", b1, sizeof b1);
    if (get_int(s, "uptime_s", &v) && get_int(s, "started_at", &w)) {
        fmt_duration(b2, sizeof b2, v);
        fmt_time(b3, sizeof b3, w, false);
        field("server", "%s, up %s (since %s)", b1, b2, b3);
    } else {
        field("server", "%s", b1);
    }
    const msgpack_object *rep = get(s, "replica");
    get_str(rep, "path", b1, sizeof b1);
    if (get_int(rep, "size_bytes", &v) && get_int(rep, "schema_version", &w)) {
        fmt_bytes(b2, sizeof b2, v);
        field("replica", "%s (%s, schema %" PRId64 ")", b1, b2, w);
    } else {
        field("replica", "%s", b1);
    }
    if (get_int(rep, "skus", &v) && get_int(rep, "products", &w) && get_int(rep, "warehouses", &x))
        field("catalog", "%" PRId64 " SKUs of %" PRId64 " products, %" PRId64 " warehouses", v, w,
              x);
    if (get_int(rep, "orders_open", &v))
        field("orders", "%" PRId64 " open", v);
    if (get_int(rep, "movements_pending", &v))
        field("movements", "%" PRId64 " not yet confirmed upstream", v);
    const msgpack_object *ob = get(s, "outbox");
    if (get_int(ob, "pending", &x) && get_int(ob, "held", &y)) {
        if (get_int(ob, "oldest_age_s", &v)) {
            fmt_duration(b3, sizeof b3, v);
            field("outbox", "%" PRId64 " pending, %" PRId64 " held%s, oldest %s", x, y,
                  y ? " (see: tally outbox --state held)" : "", b3);
        } else {
            field("outbox", "%" PRId64 " pending, %" PRId64 " held", x, y);
        }
        /* Done rows past their retention, deleted by tallyd (README "The outbox"). */
        if (get_int(ob, "keep_s", &v) && get_int(ob, "pruned", &w)) {
            fmt_duration(b3, sizeof b3, v);
            if (get_int(ob, "pruned_at", &x)) {
                fmt_duration(b2, sizeof b2, (int64_t)time(NULL) - x);
                field("retention", "done rows kept %s; %" PRId64 " pruned since start, last %s ago",
                      b3, w, b2);
            } else {
                field("retention", "done rows kept %s; none pruned yet", b3);
            }
        }
    }
    const msgpack_object *fu = get(s, "fulfilment");
    int64_t f[6], eo = 0, ev = 0;
    static const char *const fstates[] = {"pending", "ready",  "allocated",
                                          "sent",    "picked", "partial"};
    bool have_f = fu != NULL;
    for (int i = 0; have_f && i < 6; i++)
        have_f = get_int(fu, fstates[i], &f[i]);
    if (have_f) {
        field("fulfilment",
              "%" PRId64 " to allocate, %" PRId64 " allocated, %" PRId64
              " at the warehouses, %" PRId64 " partly shipped, %" PRId64 " not payable yet",
              f[1], f[2], f[3] + f[4], f[5], f[0]);
        if (get_int(fu, "exceptions_open", &eo) && get_int(fu, "exceptions_overdue", &ev))
            field("exceptions", "%" PRId64 " open, %" PRId64 " overdue%s", eo, ev,
                  eo ? " (see: tally exceptions)" : "");
    }
    if (get_int(s, "connections", &v))
        field("connections", "%" PRId64, v);
    print_upstreams(get_array(s, "upstreams"));
    tally_reply_free(r);
    return EXIT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* catalog: sku, search                                                                       */

static void format_attributes(const msgpack_object *attrs, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    if (!attrs || attrs->type != MSGPACK_OBJECT_MAP || attrs->via.map.size == 0) {
        snprintf(buf, cap, "-");
        return;
    }
    for (uint32_t i = 0; i < attrs->via.map.size; i++) {
        const msgpack_object *k = &attrs->via.map.ptr[i].key, *v = &attrs->via.map.ptr[i].val;
        if (k->type == MSGPACK_OBJECT_STR && v->type == MSGPACK_OBJECT_STR)
            appendf(buf, cap, &off, "%s%.*s=%.*s", off ? ", " : "", (int)k->via.str.size,
                    k->via.str.ptr, (int)v->via.str.size, v->via.str.ptr);
    }
}

static int run_sku(struct cli *cli, const struct args *a)
{
    const struct kv p[] = {kv_str("sku", a->pos[0])};
    struct tally_reply *r;
    int rc = cli_call(cli, "catalog.get", p, 1, &r);
    if (rc)
        return rc;
    const msgpack_object *s = &r->result;
    if (cli->json) {
        rc = print_json(s);
        tally_reply_free(r);
        return rc;
    }
    char b1[1100], b2[1100], cur[16];
    int64_t v;
    field("sku", "%s", get_str(s, "sku", b1, sizeof b1) ? b1 : "-");
    field("title", "%s", get_str(s, "title", b1, sizeof b1) ? b1 : "-");
    get_str(s, "product_id", b1, sizeof b1);
    if (get_str(s, "product_title", b2, sizeof b2))
        field("product", "%s  %s", b1, b2);
    else
        field("product", "%s", b1);
    format_attributes(get(s, "attributes"), b1, sizeof b1);
    field("attributes", "%s", b1);
    money_of(s, "price_minor", get_str(s, "currency", cur, sizeof cur), b1, sizeof b1);
    field("price", "%s", b1);
    if (get_int(s, "weight_g", &v))
        field("weight", "%" PRId64 " g", v);
    else
        field("weight", "-");
    field("marketplace", "SKU id %s", get_str(s, "mp_sku_id", b1, sizeof b1) ? b1 : "- (none)");
    if (get_int(s, "updated_at", &v)) {
        fmt_time(b1, sizeof b1, v, false);
        field("updated", "%s", b1);
    }
    tally_reply_free(r);
    return EXIT_OK;
}

static void search_row(struct table *t, const msgpack_object *it)
{
    char cur[16], price[64];
    cell_str(t, it, "sku");
    cell_str(t, it, "product_id");
    money_of(it, "price_minor", get_str(it, "currency", cur, sizeof cur), price, sizeof price);
    table_cell(t, price);
    cell_str(t, it, "title");
}

static int run_search(struct cli *cli, const struct args *a)
{
    static const struct table_col cols[] = {{"SKU", TABLE_LEFT},
                                            {"PRODUCT", TABLE_LEFT},
                                            {"PRICE", TABLE_RIGHT},
                                            {"TITLE", TABLE_LEFT}};
    const struct kv f[] = {kv_str("q", a->pos[0])};
    const struct lister l = {.method = "catalog.search",
                             .filters = f,
                             .nfilters = 1,
                             .cols = cols,
                             .ncols = 4,
                             .row = search_row,
                             .none = "no SKU matches"};
    return run_list(cli, a, &l);
}

/* ------------------------------------------------------------------------------------------ */
/* stock                                                                                      */

static void cell_signed(struct table *t, const msgpack_object *map, const char *key)
{
    int64_t v;
    if (!get_int(map, key, &v))
        table_cell(t, "-");
    else if (v > 0)
        table_cellf(t, "+%" PRId64, v);
    else
        table_cellf(t, "%" PRId64, v);
}

/* Notes under the stock table: what the marketplace sees, and what safety stock holds back. */
static void stock_notes(const msgpack_object *s, const msgpack_object *whs)
{
    char excluded[512] = "", safety[512] = "";
    size_t ne = 0, ns = 0;
    for (uint32_t i = 0; i < whs->via.array.size; i++) {
        const msgpack_object *w = &whs->via.array.ptr[i];
        char code[TALLY_MAX_ID_LEN + 1];
        int64_t v;
        get_str(w, "warehouse", code, sizeof code);
        const msgpack_object *serves = get(w, "serves_marketplace");
        if (serves && serves->type == MSGPACK_OBJECT_BOOLEAN && !serves->via.boolean)
            appendf(excluded, sizeof excluded, &ne, "%s%s", ne ? ", " : "", code);
        if (get_int(w, "safety", &v) && v > 0)
            appendf(safety, sizeof safety, &ns, "%s%s %" PRId64, ns ? ", " : "", code, v);
    }
    int64_t mp;
    const msgpack_object *total = get(s, "total");
    if (get_int(s, "marketplace_available", &mp) || get_int(total, "marketplace_available", &mp)) {
        printf("\nmarketplace available: %" PRId64, mp);
        if (ne) {
            fputs(" (not counted: ", stdout);
            out_text(stdout, excluded, strlen(excluded));
            fputs(", not serving the marketplace)", stdout);
        }
        fputc('\n', stdout);
    }
    if (ns) {
        fputs("available excludes safety stock: ", stdout);
        out_text(stdout, safety, strlen(safety));
        fputc('\n', stdout);
    }
}

/* The LOW column: OUT when nothing is available, LOW at or below the threshold. */
static const char *low_mark(const msgpack_object *row)
{
    return get_bool(row, "out") ? "OUT" : get_bool(row, "low") ? "LOW" : "";
}

static int run_stock(struct cli *cli, const struct args *a)
{
    static const struct table_col cols[] = {
        {"WAREHOUSE", TABLE_LEFT},  {"COUNTRY", TABLE_LEFT},  {"SNAPSHOT", TABLE_RIGHT},
        {"PENDING", TABLE_RIGHT},   {"ON_HAND", TABLE_RIGHT}, {"RESERVED", TABLE_RIGHT},
        {"AVAILABLE", TABLE_RIGHT}, {"INBOUND", TABLE_RIGHT}, {"LOW", TABLE_LEFT}};
    const struct kv p[] = {kv_str("sku", a->pos[0])};
    struct tally_reply *r;
    int rc = cli_call(cli, "stock.get", p, 1, &r);
    if (rc)
        return rc;
    const msgpack_object *s = &r->result;
    if (cli->json) {
        rc = print_json(s);
        tally_reply_free(r);
        return rc;
    }
    const msgpack_object *whs = get_array(s, "warehouses");
    if (!whs) {
        tally_reply_free(r);
        return bad_answer(cli, "stock.get without warehouses");
    }
    char sku[TALLY_MAX_ID_LEN + 1], title[1100];
    get_str(s, "sku", sku, sizeof sku);
    out_text(stdout, sku, strlen(sku));
    if (get_str(s, "title", title, sizeof title)) {
        fputs("  ", stdout);
        out_text(stdout, title, strlen(title));
    }
    fputc('\n', stdout);
    if (whs->via.array.size == 0) {
        printf("no stock of %s in any warehouse\n", sku);
        tally_reply_free(r);
        return EXIT_OK;
    }
    struct table *t = table_new(cols, sizeof cols / sizeof cols[0]);
    if (!t) {
        tally_reply_free(r);
        return EXIT_SERVER;
    }
    for (uint32_t i = 0; i < whs->via.array.size; i++) {
        const msgpack_object *w = &whs->via.array.ptr[i];
        cell_str(t, w, "warehouse");
        cell_str(t, w, "country");
        cell_int(t, w, "snapshot");
        cell_signed(t, w, "pending");
        cell_int(t, w, "on_hand");
        cell_int(t, w, "reserved");
        cell_int(t, w, "available");
        cell_int(t, w, "inbound");
        table_cell(t, low_mark(w));
    }
    const msgpack_object *tot = get(s, "total");
    table_cell(t, "TOTAL");
    table_cell(t, "");
    cell_int(t, tot, "snapshot");
    cell_signed(t, tot, "pending");
    cell_int(t, tot, "on_hand");
    cell_int(t, tot, "reserved");
    cell_int(t, tot, "available");
    table_cell(t, "");
    table_cell(t, "");
    fputc('\n', stdout);
    table_flush(t, stdout);
    table_free(t);
    stock_notes(s, whs);
    tally_reply_free(r);
    return EXIT_OK;
}

static const struct table_col stock_cols[] = {
    {"SKU", TABLE_LEFT},        {"WAREHOUSE", TABLE_LEFT}, {"ON_HAND", TABLE_RIGHT},
    {"RESERVED", TABLE_RIGHT},  {"SAFETY", TABLE_RIGHT},   {"AVAILABLE", TABLE_RIGHT},
    {"THRESHOLD", TABLE_RIGHT}, {"LOW", TABLE_LEFT},       {"SOLD", TABLE_RIGHT},
    {"SUGGEST", TABLE_RIGHT}};

#define STOCK_NCOLS (sizeof stock_cols / sizeof stock_cols[0])

static void stock_row(struct table *t, const msgpack_object *it)
{
    int64_t suggest;
    cell_str(t, it, "sku");
    cell_str(t, it, "warehouse");
    cell_int(t, it, "on_hand");
    cell_int(t, it, "reserved");
    cell_int(t, it, "safety");
    cell_int(t, it, "available");
    cell_int(t, it, "threshold");
    table_cell(t, low_mark(it));
    cell_int(t, it, "sold");
    /* Blank rather than 0: the rows that need restocking stand out. */
    if (get_int(it, "suggest", &suggest) && suggest > 0)
        table_cellf(t, "%" PRId64, suggest);
    else
        table_cell(t, "");
}

static int run_stock_list(struct cli *cli, const struct args *a)
{
    const struct kv f[] = {kv_str("warehouse", a->val[O_WAREHOUSE]), kv_flag("low", a->set[O_LOW])};
    const struct lister l = {.method = "stock.list",
                             .filters = f,
                             .nfilters = 2,
                             .cols = stock_cols,
                             .ncols = STOCK_NCOLS,
                             .row = stock_row,
                             .none =
                                 a->set[O_LOW] ? "no stock row is low or out" : "no stock rows"};
    return run_list(cli, a, &l);
}

static int run_stock_set(struct cli *cli, const struct args *a)
{
    int64_t safety = 0, threshold = 0, cover = 0;
    int rc = opt_int(cli, a, O_SAFETY, &safety);
    if (rc == 0)
        rc = opt_int(cli, a, O_THRESHOLD, &threshold);
    if (rc == 0)
        rc = opt_int(cli, a, O_COVER_DAYS, &cover);
    if (rc)
        return rc;
    if (!a->set[O_SAFETY] && !a->set[O_THRESHOLD] && !a->set[O_COVER_DAYS])
        return usage_error(cli, "give at least one of --safety, --threshold and --cover-days");
    const struct kv p[] = {kv_str("sku", a->pos[0]), kv_str("warehouse", a->val[O_WAREHOUSE]),
                           kv_int("safety", safety, a->set[O_SAFETY]),
                           kv_int("threshold", threshold, a->set[O_THRESHOLD]),
                           kv_int("cover_days", cover, a->set[O_COVER_DAYS])};
    struct tally_reply *r;
    rc = cli_call(cli, "stock.set", p, sizeof p / sizeof p[0], &r);
    if (rc)
        return rc;
    if (cli->json) {
        rc = print_json(&r->result);
        tally_reply_free(r);
        return rc;
    }
    struct table *t = table_new(stock_cols, STOCK_NCOLS);
    if (!t) {
        tally_reply_free(r);
        fputs("tally: out of memory\n", stderr);
        return EXIT_SERVER;
    }
    stock_row(t, &r->result);
    table_flush(t, stdout);
    table_free(t);
    int64_t days;
    if (get_int(&r->result, "cover_days", &days) && days > 0)
        printf("threshold follows sales: %" PRId64 " day%s of cover at the recent rate\n", days,
               days == 1 ? "" : "s");
    tally_reply_free(r);
    return EXIT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Movements: receive, pick, return, adjust, count, transfer                                  */

/* "on hand 12, available 10", or for a transfer "ES-MAD on hand 7, ...; PL-WAW on hand ..." */
static void print_legs(const msgpack_object *stock, bool name_them)
{
    for (uint32_t i = 0; stock && i < stock->via.array.size; i++) {
        const msgpack_object *s = &stock->via.array.ptr[i];
        char wh[TALLY_MAX_ID_LEN + 1];
        int64_t oh = 0, av = 0;
        get_str(s, "warehouse", wh, sizeof wh);
        get_int(s, "on_hand", &oh);
        get_int(s, "available", &av);
        if (i)
            fputs("; ", stdout);
        if (name_them)
            printf("%s ", wh);
        printf("on hand %" PRId64 ", available %" PRId64, oh, av);
    }
}

/* One line: "receive 5 × SKU-1 at ES-MAD (id m-...): on hand 12, available 10". */
static void print_move(const char *kind, int64_t qty, const struct args *a,
                       const msgpack_object *res)
{
    char id[TALLY_MAX_ID_LEN + 1], idnote[160];
    get_str(res, "id", id, sizeof id);
    snprintf(idnote, sizeof idnote, "(id %s%s)", id,
             get_bool(res, "duplicate") ? ", already recorded: not applied again" : "");
    const char *sku = a->pos[0];
    const msgpack_object *stock = get_array(res, "stock");
    const msgpack_object *legs = get_array(res, "movements");
    if (strcmp(kind, "transfer") == 0) {
        printf("transfer %" PRId64 " × %s from %s to %s %s: ", qty, sku, a->val[O_FROM],
               a->val[O_TO], idnote);
    } else if (strcmp(kind, "count") == 0) {
        int64_t delta = 0;
        if (legs && legs->via.array.size)
            get_int(&legs->via.array.ptr[0], "delta", &delta);
        printf("count %s at %s: counted %" PRId64 ", delta %+" PRId64 " %s: ", sku,
               a->val[O_WAREHOUSE], qty, delta, idnote);
    } else if (strcmp(kind, "adjust") == 0) {
        printf("adjust %+" PRId64 " × %s at %s %s: ", qty, sku, a->val[O_WAREHOUSE], idnote);
    } else {
        printf("%s %" PRId64 " × %s at %s %s: ", kind, qty, sku, a->val[O_WAREHOUSE], idnote);
    }
    print_legs(stock, strcmp(kind, "transfer") == 0);
    char notice[TALLY_MAX_ID_LEN + 1];
    if (get_str(res, "inbound_notice", notice, sizeof notice) && notice[0])
        printf("; announced to %s: inbound notice %s (its stock counts the units once %s"
               " receives them)",
               a->val[O_TO], notice, a->val[O_TO]);
    fputc('\n', stdout);
}

/* A fresh movement id, as tallyd makes them: time-ordered, with 64 random bits. The client
 * makes it (rather than tallyd) so that the caller knows it before sending: a call that gets
 * no answer can be repeated with it, and is applied once. */
static void make_write_id(const char *prefix, char *buf, size_t cap)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
            (uint64_t)getpid() << 32;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    snprintf(buf, cap, "%s-%011" PRIx64 "-%016" PRIx64, prefix, ms, r);
}

static int run_move(struct cli *cli, const struct args *a)
{
    const char *kind = cli->cmd->name;
    bool transfer = strcmp(kind, "transfer") == 0;
    int64_t qty;
    int rc = int_arg(cli, cli->cmd->pos[1], a->pos[1], &qty);
    if (rc)
        return rc;
    char made[40];
    const char *id = a->val[O_ID];
    if (!id) {
        make_write_id("m", made, sizeof made);
        id = made;
    }
    cli->write_what = "movement";
    cli->write_id = id;
    const struct kv p[] = {
        kv_str("kind", kind),
        kv_str("sku", a->pos[0]),
        kv_str("warehouse", transfer ? a->val[O_FROM] : a->val[O_WAREHOUSE]),
        kv_int("qty", qty, true),
        kv_str("to", a->val[O_TO]),
        kv_str("id", id),
        kv_str("reason", a->val[O_REASON]),
        kv_str("ref", a->val[O_REF]),
        kv_flag("force", a->set[O_FORCE]),
    };
    struct tally_reply *r;
    rc = cli_call(cli, "stock.move", p, sizeof p / sizeof p[0], &r);
    if (rc)
        return rc;
    if (cli->json)
        rc = print_json(&r->result);
    else
        print_move(kind, qty, a, &r->result);
    tally_reply_free(r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* orders, outbox                                                                             */

/* Fulfilment states in which an order has not left yet (orders.list's `due` set, and new). */
static bool fstate_open(const char *fstate)
{
    static const char *const open[] = {"new",  "pending", "ready",  "allocated",
                                       "sent", "picked",  "partial"};
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++)
        if (strcmp(fstate, open[i]) == 0)
            return true;
    return false;
}

/* Whether the ship-by of this order (list item or orders.get result) has passed unshipped. */
static bool order_overdue(const msgpack_object *o, int64_t now)
{
    char fs[32];
    int64_t ship_by;
    return get_int(o, "ship_by", &ship_by) && ship_by < now &&
           get_str(o, "fstate", fs, sizeof fs) && fstate_open(fs);
}

/* SHIP_BY: local time, marked when it has passed and the goods have not left. */
static void cell_ship_by(struct table *t, const msgpack_object *it)
{
    int64_t ship_by;
    char b[64];
    if (!get_int(it, "ship_by", &ship_by)) {
        table_cell(t, "-");
        return;
    }
    fmt_time(b, sizeof b, ship_by, true);
    if (order_overdue(it, (int64_t)time(NULL)))
        table_cellf(t, "%s OVERDUE", b);
    else
        table_cell(t, b);
}

static void order_row(struct table *t, const msgpack_object *it)
{
    cell_str(t, it, "order_id");
    cell_str(t, it, "status");
    cell_str(t, it, "fstate");
    cell_int(t, it, "priority");
    cell_ship_by(t, it);
    cell_str(t, it, "country");
    cell_int(t, it, "units");
    cell_str(t, it, "warehouse");
}

static int run_orders(struct cli *cli, const struct args *a)
{
    static const struct table_col cols[] = {{"ORDER_ID", TABLE_LEFT}, {"STATUS", TABLE_LEFT},
                                            {"FSTATE", TABLE_LEFT},   {"PRIORITY", TABLE_RIGHT},
                                            {"SHIP_BY", TABLE_LEFT},  {"COUNTRY", TABLE_LEFT},
                                            {"UNITS", TABLE_RIGHT},   {"WAREHOUSE", TABLE_LEFT}};
    const struct kv f[] = {kv_str("status", a->val[O_STATUS]), kv_str("fstate", a->val[O_FSTATE]),
                           kv_str("warehouse", a->val[O_WAREHOUSE]), kv_flag("due", a->set[O_DUE])};
    const struct lister l = {.method = "orders.list",
                             .filters = f,
                             .nfilters = sizeof f / sizeof f[0],
                             .cols = cols,
                             .ncols = sizeof cols / sizeof cols[0],
                             .row = order_row,
                             .none = a->set[O_DUE] ? "no open orders" : "no orders"};
    return run_list(cli, a, &l);
}

/* The erasure time of a purged ship-to: in the ship_to map, or beside it. */
static bool purged_at(const msgpack_object *order, const msgpack_object *ship_to, int64_t *when)
{
    return get_int(ship_to, "purged_at", when) || get_int(order, "purged_at", when);
}

static void print_ship_to(const msgpack_object *o)
{
    const msgpack_object *st = get(o, "ship_to");
    int64_t purged;
    char when[64];
    if (purged_at(o, st, &purged)) {
        fmt_time(when, sizeof when, purged, false);
        field("ship to", "purged %s (personal data erased)", when);
        return;
    }
    if (!st || st->type != MSGPACK_OBJECT_MAP) {
        field("ship to", "(buyer addresses are shown to writers only)");
        return;
    }
    static const char *const keys[] = {"name", "address", "city", "postcode", "country", "phone"};
    char out[2048] = "", part[1100];
    size_t off = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (get_str(st, keys[i], part, sizeof part) && part[0])
            appendf(out, sizeof out, &off, "%s%s", off ? ", " : "", part);
    field("ship to", "%s", off ? out : "-");
}

static void print_order_lines(const msgpack_object *lines, const char *cur)
{
    static const struct table_col cols[] = {
        {"SKU", TABLE_LEFT}, {"QTY", TABLE_RIGHT}, {"PRICE", TABLE_RIGHT}, {"TITLE", TABLE_LEFT}};
    fputc('\n', stdout);
    if (!lines || lines->via.array.size == 0) {
        printf("no lines\n");
        return;
    }
    struct table *t = table_new(cols, 4);
    if (!t)
        return;
    for (uint32_t i = 0; i < lines->via.array.size; i++) {
        const msgpack_object *l = &lines->via.array.ptr[i];
        char price[64];
        cell_str(t, l, "sku");
        cell_int(t, l, "qty");
        money_of(l, "price_minor", cur, price, sizeof price);
        table_cell(t, price);
        cell_str(t, l, "title");
    }
    table_flush(t, stdout);
    table_free(t);
}

/* "allocation  in-country: ES-MAD has every line", then the parts: what is where, in what state. */
static void print_allocation(const msgpack_object *alloc)
{
    static const struct table_col cols[] = {{"SKU", TABLE_LEFT},
                                            {"WAREHOUSE", TABLE_LEFT},
                                            {"QTY", TABLE_RIGHT},
                                            {"STATE", TABLE_LEFT}};
    char rule[64], why[1100];
    if (!alloc || alloc->type != MSGPACK_OBJECT_MAP) {
        field("allocation", "- (not allocated yet)");
        return;
    }
    get_str(alloc, "rule", rule, sizeof rule);
    if (get_str(alloc, "why", why, sizeof why))
        field("allocation", "%s: %s", rule, why);
    else
        field("allocation", "%s", rule);
    const msgpack_object *parts = get_array(alloc, "parts");
    if (!parts || parts->via.array.size == 0)
        return;
    struct table *t = table_new(cols, 4);
    if (!t)
        return;
    for (uint32_t i = 0; i < parts->via.array.size; i++) {
        const msgpack_object *p = &parts->via.array.ptr[i];
        cell_str(t, p, "sku");
        cell_str(t, p, "warehouse");
        cell_int(t, p, "qty");
        cell_str(t, p, "state");
    }
    fputc('\n', stdout);
    table_flush(t, stdout);
    table_free(t);
}

static void print_shipments(const msgpack_object *sh)
{
    static const struct table_col cols[] = {{"SHIPMENT", TABLE_LEFT}, {"WAREHOUSE", TABLE_LEFT},
                                            {"CARRIER", TABLE_LEFT},  {"TRACKING", TABLE_LEFT},
                                            {"SEND", TABLE_LEFT},     {"STATE", TABLE_LEFT},
                                            {"CREATED", TABLE_LEFT},  {"UPLOADED", TABLE_LEFT}};
    fputc('\n', stdout);
    if (!sh || sh->via.array.size == 0) {
        printf("no shipments yet\n");
        return;
    }
    struct table *t = table_new(cols, sizeof cols / sizeof cols[0]);
    if (!t)
        return;
    for (uint32_t i = 0; i < sh->via.array.size; i++) {
        const msgpack_object *s = &sh->via.array.ptr[i];
        cell_str(t, s, "id");
        cell_str(t, s, "warehouse");
        cell_str(t, s, "carrier");
        cell_str(t, s, "tracking_no");
        cell_str(t, s, "send_type");
        cell_str(t, s, "state");
        cell_time(t, s, "created_at", true);
        cell_time(t, s, "uploaded_at", true);
    }
    table_flush(t, stdout);
    table_free(t);
}

/* An exception's deadline: relative while it is active, the time itself once resolved. */
static void cell_deadline(struct table *t, const msgpack_object *x)
{
    int64_t deadline;
    char state[32], b[64];
    if (!get_int(x, "deadline", &deadline)) {
        table_cell(t, "-");
        return;
    }
    if (get_str(x, "state", state, sizeof state) && strcmp(state, "resolved") == 0)
        fmt_time(b, sizeof b, deadline, true);
    else
        fmt_deadline(b, sizeof b, deadline, (int64_t)time(NULL));
    table_cell(t, b);
}

/* The order's exceptions that still need someone; resolved ones are only counted. */
static void print_order_exceptions(const msgpack_object *xs, const char *order_id)
{
    static const struct table_col cols[] = {{"EXCEPTION", TABLE_RIGHT},
                                            {"KIND", TABLE_LEFT},
                                            {"STATE", TABLE_LEFT},
                                            {"DEADLINE", TABLE_LEFT},
                                            {"MESSAGE", TABLE_LEFT}};
    struct table *t = table_new(cols, sizeof cols / sizeof cols[0]);
    uint32_t active = 0, resolved = 0;
    if (!t)
        return;
    for (uint32_t i = 0; xs && i < xs->via.array.size; i++) {
        const msgpack_object *x = &xs->via.array.ptr[i];
        char state[32];
        if (get_str(x, "state", state, sizeof state) && strcmp(state, "resolved") == 0) {
            resolved++;
            continue;
        }
        active++;
        cell_int(t, x, "id");
        cell_str(t, x, "kind");
        cell_str(t, x, "state");
        cell_deadline(t, x);
        cell_str(t, x, "message");
    }
    fputc('\n', stdout);
    if (active)
        table_flush(t, stdout);
    else
        printf("no open exceptions\n");
    if (resolved)
        printf("(%u resolved: tally exceptions --order %s --state all)\n", resolved, order_id);
    table_free(t);
}

static int run_orders_show(struct cli *cli, const struct args *a)
{
    const struct kv p[] = {kv_str("order_id", a->pos[0])};
    struct tally_reply *r;
    int rc = cli_call(cli, "orders.get", p, 1, &r);
    if (rc)
        return rc;
    const msgpack_object *o = &r->result;
    if (cli->json) {
        rc = print_json(o);
        tally_reply_free(r);
        return rc;
    }
    char b1[1100], b2[64], b3[64], cur[16];
    int64_t v, units = 0, now = (int64_t)time(NULL);
    const char *currency = get_str(o, "currency", cur, sizeof cur);
    const msgpack_object *lines = get_array(o, "lines");
    field("order", "%s", get_str(o, "order_id", b1, sizeof b1) ? b1 : "-");
    field("status", "%s", get_str(o, "status", b1, sizeof b1) ? b1 : "-");
    field("fulfilment", "%s", get_str(o, "fstate", b1, sizeof b1) ? b1 : "-");
    if (get_int(o, "priority", &v)) {
        if (get_str(o, "priority_why", b1, sizeof b1))
            field("priority", "%" PRId64 ": %s", v, b1);
        else
            field("priority", "%" PRId64, v);
    }
    if (get_int(o, "created_at", &v)) {
        fmt_time(b2, sizeof b2, v, false);
        field("created", "%s", b2);
    }
    if (get_int(o, "ship_by", &v)) {
        get_str(o, "fstate", b1, sizeof b1);
        fmt_time(b2, sizeof b2, v, false);
        fmt_deadline(b3, sizeof b3, v, now);
        if (fstate_open(b1))
            field("ship by", "%s (%s)", b2, b3);
        else
            field("ship by", "%s", b2);
    }
    if (get_int(o, "updated_at", &v)) {
        fmt_time(b2, sizeof b2, v, false);
        field("updated", "%s", b2);
    }
    field("country", "%s", get_str(o, "country", b1, sizeof b1) ? b1 : "-");
    field("warehouse", "%s", get_str(o, "warehouse", b1, sizeof b1) ? b1 : "- (not allocated)");
    field("service", "%s", get_str(o, "service", b1, sizeof b1) ? b1 : "-");
    get_int(o, "units", &units);
    money_of(o, "total_minor", currency, b1, sizeof b1);
    uint32_t nlines = lines ? lines->via.array.size : 0;
    field("total", "%s (%u line%s, %" PRId64 " unit%s)", b1, nlines, nlines == 1 ? "" : "s", units,
          units == 1 ? "" : "s");
    print_ship_to(o);
    print_order_lines(lines, currency);
    fputc('\n', stdout);
    print_allocation(get(o, "allocation"));
    print_shipments(get_array(o, "shipments"));
    print_order_exceptions(get_array(o, "exceptions"), a->pos[0]);
    tally_reply_free(r);
    return EXIT_OK;
}

static int run_orders_allocate(struct cli *cli, const struct args *a)
{
    const struct kv p[] = {kv_str("order_id", a->pos[0]), kv_flag("release", a->set[O_RELEASE])};
    struct tally_reply *r;
    int rc = cli_call(cli, "orders.allocate", p, 2, &r);
    if (rc)
        return rc;
    if (cli->json) {
        rc = print_json(&r->result);
        tally_reply_free(r);
        return rc;
    }
    char b[1100];
    const msgpack_object *canc = get_array(&r->result, "cancelling");
    bool cancelling = canc && canc->via.array.size > 0;
    field("order", "%s%s", get_str(&r->result, "order_id", b, sizeof b) ? b : a->pos[0],
          cancelling          ? ""
          : a->set[O_RELEASE] ? " (unshipped reservations released first)"
                              : "");
    field("fulfilment", "%s", get_str(&r->result, "fstate", b, sizeof b) ? b : "-");
    if (cancelling) {
        size_t len = 0;
        b[0] = 0;
        for (uint32_t i = 0; i < canc->via.array.size; i++) {
            const msgpack_object *w = &canc->via.array.ptr[i];
            if (w->type == MSGPACK_OBJECT_STR)
                appendf(b, sizeof b, &len, "%s%.*s", i ? ", " : "", (int)w->via.str.size,
                        w->via.str.ptr);
        }
        field("cancelling",
              "asked %s to cancel its outbound order; the order is allocated again"
              " (elsewhere) once the cancel is confirmed — follow it with tally"
              " orders show",
              b);
    }
    print_allocation(get(&r->result, "allocation"));
    tally_reply_free(r);
    return EXIT_OK;
}

/*
 * Packs the --line SKU=QTY values as orders.ship's `lines` ([{sku, qty}, ...]); nothing when
 * none was given (the daemon then ships everything allocated there). 0 or a usage exit code.
 */
static int pack_ship_lines(const struct cli *cli, const struct args *a, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (a->nlines == 0)
        return 0;
    msgpack_pack_array(&pk, a->nlines);
    for (size_t i = 0; i < a->nlines; i++) {
        const char *v = a->lines[i], *eq = strrchr(v, '=');
        int64_t qty;
        if (!eq || eq == v || parse_int64(eq + 1, &qty) != 0)
            return usage_error(cli, "--line must be SKU=QTY (e.g. TS-RED-M=2), not '%s'", v);
        msgpack_pack_map(&pk, 2);
        mp_pack_key(&pk, "sku");
        mp_pack_strn(&pk, v, (size_t)(eq - v));
        mp_pack_kv_int(&pk, "qty", qty);
    }
    return 0;
}

/* "shipped 2 × TS-RED-M, 1 × MUG-1" */
static void print_shipped_lines(const msgpack_object *lines)
{
    for (uint32_t i = 0; lines && i < lines->via.array.size; i++) {
        char sku[TALLY_MAX_ID_LEN + 1];
        int64_t qty = 0;
        get_str(&lines->via.array.ptr[i], "sku", sku, sizeof sku);
        get_int(&lines->via.array.ptr[i], "qty", &qty);
        printf("%s%" PRId64 " × ", i ? ", " : "", qty);
        out_text(stdout, sku, strlen(sku));
    }
}

static int run_ship(struct cli *cli, const struct args *a)
{
    msgpack_sbuffer lines;
    msgpack_sbuffer_init(&lines);
    int rc = pack_ship_lines(cli, a, &lines);
    if (rc) {
        msgpack_sbuffer_destroy(&lines);
        return rc;
    }
    const struct kv p[] = {kv_str("order_id", a->pos[0]),
                           kv_str("warehouse", a->val[O_WAREHOUSE]),
                           kv_str("carrier", a->val[O_CARRIER]),
                           kv_str("tracking_no", a->val[O_TRACKING]),
                           kv_raw("lines", &lines),
                           kv_str("id", a->val[O_SHIP_ID])};
    struct tally_reply *r;
    /* Without --id, tallyd numbers the shipment (ORDER-WAREHOUSE-N): a repeat would be the
     * next number, so after a lost answer the caller must look first. */
    cli->write_what = "shipment";
    cli->write_id = a->val[O_SHIP_ID];
    cli->write_order = a->pos[0];
    rc = cli_call(cli, "orders.ship", p, sizeof p / sizeof p[0], &r);
    msgpack_sbuffer_destroy(&lines);
    if (rc)
        return rc;
    const msgpack_object *res = &r->result;
    if (cli->json) {
        rc = print_json(res);
        tally_reply_free(r);
        return rc;
    }
    char id[TALLY_MAX_ID_LEN + 1], fstate[32], send[16];
    get_str(res, "id", id, sizeof id);
    get_str(res, "fstate", fstate, sizeof fstate);
    get_str(res, "send_type", send, sizeof send);
    printf("shipment %s of order %s from %s (%s, tracking %s)", id, a->pos[0], a->val[O_WAREHOUSE],
           a->val[O_CARRIER], a->val[O_TRACKING]);
    if (get_bool(res, "duplicate"))
        fputs(" (already recorded: not applied again)", stdout);
    fputs(": ", stdout);
    print_shipped_lines(get_array(res, "lines"));
    printf("\norder is now %s (%s shipment; upload to the marketplace queued)\n", fstate,
           strcmp(send, "part") == 0 ? "part" : "final");
    tally_reply_free(r);
    return EXIT_OK;
}

static void outbox_row(struct table *t, const msgpack_object *it)
{
    cell_int(t, it, "id");
    cell_str(t, it, "state");
    cell_str(t, it, "target");
    cell_str(t, it, "kind");
    cell_str(t, it, "entity");
    cell_int(t, it, "attempts");
    cell_str(t, it, "key");
    cell_str(t, it, "last_error");
}

/* carriers: the config's carrier -> logistics service mapping and the marketplace's services. */
static int run_carriers(struct cli *cli, const struct args *a)
{
    (void)a;
    struct tally_reply *r;
    int rc = cli_call(cli, "carriers.list", NULL, 0, &r);
    if (rc)
        return rc;
    const msgpack_object *res = &r->result;
    if (cli->json) {
        rc = print_json(res);
        tally_reply_free(r);
        return rc;
    }
    static const struct table_col mcols[] = {{"CARRIER", TABLE_LEFT},
                                             {"WAREHOUSE", TABLE_LEFT},
                                             {"SERVICE", TABLE_LEFT},
                                             {"LISTED", TABLE_LEFT},
                                             {"TRACKING_WEBSITE", TABLE_LEFT}};
    static const struct table_col scols[] = {{"SERVICE", TABLE_LEFT},
                                             {"NAME", TABLE_LEFT},
                                             {"COMPANY", TABLE_LEFT},
                                             {"DAYS", TABLE_LEFT},
                                             {"TRACKING_NO_RULE", TABLE_LEFT}};
    const msgpack_object *maps = get_array(res, "mappings"), *svcs = get_array(res, "services");
    struct table *t = table_new(mcols, 5), *ts = table_new(scols, 5);
    if (!t || !ts) {
        table_free(t);
        table_free(ts);
        tally_reply_free(r);
        return EXIT_SERVER;
    }
    for (uint32_t i = 0; maps && i < maps->via.array.size; i++) {
        const msgpack_object *m = &maps->via.array.ptr[i];
        cell_str(t, m, "carrier");
        cell_str(t, m, "warehouse");
        cell_str(t, m, "service");
        table_cell(t, !get(m, "known") ? "unknown" : get_bool(m, "known") ? "yes" : "NO");
        cell_str(t, m, "tracking_website");
    }
    for (uint32_t i = 0; svcs && i < svcs->via.array.size; i++) {
        const msgpack_object *s = &svcs->via.array.ptr[i];
        int64_t lo = 0, hi = 0;
        cell_str(ts, s, "service_name");
        cell_str(ts, s, "display_name");
        cell_str(ts, s, "logistics_company");
        if (get_int(s, "min_process_day", &lo) && get_int(s, "max_process_day", &hi))
            table_cellf(ts, "%" PRId64 "-%" PRId64, lo, hi);
        else
            table_cell(ts, "-");
        cell_str(ts, s, "tracking_no_regex");
    }
    if (maps && maps->via.array.size)
        table_flush(t, stdout);
    else
        printf("no carrier is mapped: every upload is held ([carriers] in the config)\n");
    printf("\n");
    int64_t at = 0;
    char when[64];
    if (get_int(res, "pulled_at", &at)) {
        fmt_time(when, sizeof when, at, false);
        printf("logistics services of the marketplace (pulled %s):\n", when);
        table_flush(ts, stdout);
    } else {
        printf("the marketplace's logistics services were never pulled (tally sync logistics)\n");
    }
    table_free(t);
    table_free(ts);
    tally_reply_free(r);
    return EXIT_OK;
}

static int run_outbox(struct cli *cli, const struct args *a)
{
    static const struct table_col cols[] = {{"ID", TABLE_RIGHT},    {"STATE", TABLE_LEFT},
                                            {"TARGET", TABLE_LEFT}, {"KIND", TABLE_LEFT},
                                            {"ENTITY", TABLE_LEFT}, {"TRIES", TABLE_RIGHT},
                                            {"KEY", TABLE_LEFT},    {"LAST_ERROR", TABLE_LEFT}};
    const struct kv f[] = {kv_str("state", a->val[O_STATE])};
    const struct lister l = {.method = "outbox.list",
                             .filters = f,
                             .nfilters = 1,
                             .cols = cols,
                             .ncols = 8,
                             .row = outbox_row,
                             .none = a->set[O_STATE] ? "no outbox rows in that state"
                                                     : "outbox is empty"};
    return run_list(cli, a, &l);
}

/* ------------------------------------------------------------------------------------------ */
/* inbound notices                                                                            */

static bool parse_ymd(const char *s, int *y, int *m, int *d);
static int64_t local_midnight(int y, int m, int d);

/* Packs the --sku S --qty N pairs as inbound.create's `lines`. 0 or a usage exit code. */
static int pack_inbound_lines(const struct cli *cli, const struct args *a, msgpack_sbuffer *sb)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nlines; i++) {
        bool sku = a->line_opts[i] == O_IN_SKU;
        bool paired = i + 1 < a->nlines && a->line_opts[i + 1] == O_IN_QTY;
        if (sku && !paired)
            return usage_error(cli, "--sku %s needs its --qty right after it", a->lines[i]);
        if (!sku && (i == 0 || a->line_opts[i - 1] != O_IN_SKU))
            return usage_error(cli, "--qty %s must follow a --sku", a->lines[i]);
        n += sku;
    }
    if (n == 0)
        return usage_error(cli, "inbound create needs at least one --sku SKU --qty N");
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i + 1 < a->nlines; i += 2) {
        int64_t qty;
        if (parse_int64(a->lines[i + 1], &qty) != 0 || qty < 1)
            return usage_error(cli, "--qty must be a whole number > 0, not '%s'", a->lines[i + 1]);
        msgpack_pack_map(&pk, 2);
        mp_pack_kv_str(&pk, "sku", a->lines[i]);
        mp_pack_kv_int(&pk, "qty", qty);
    }
    return 0;
}

static int run_inbound_create(struct cli *cli, const struct args *a)
{
    int64_t eta = 0;
    if (a->set[O_ETA]) {
        int y, m, d;
        if (!parse_ymd(a->val[O_ETA], &y, &m, &d))
            return usage_error(cli, "--eta must be a day as YYYY-MM-DD, not '%s'", a->val[O_ETA]);
        eta = local_midnight(y, m, d);
    }
    msgpack_sbuffer lines;
    msgpack_sbuffer_init(&lines);
    int rc = pack_inbound_lines(cli, a, &lines);
    if (rc) {
        msgpack_sbuffer_destroy(&lines);
        return rc;
    }
    char made[40];
    const char *id = a->val[O_IN_ID];
    if (!id) {
        make_write_id("in", made, sizeof made);
        id = made;
    }
    cli->write_what = "notice";
    cli->write_id = id;
    const struct kv p[] = {kv_str("id", id),
                           kv_str("warehouse", a->val[O_WAREHOUSE]),
                           kv_raw("lines", &lines),
                           kv_int("eta", eta, a->set[O_ETA]),
                           kv_str("ref", a->val[O_IN_REF]),
                           kv_str("note", a->val[O_NOTE])};
    struct tally_reply *r;
    rc = cli_call(cli, "inbound.create", p, sizeof p / sizeof p[0], &r);
    msgpack_sbuffer_destroy(&lines);
    if (rc)
        return rc;
    if (cli->json) {
        rc = print_json(&r->result);
    } else {
        char rid[TALLY_MAX_ID_LEN + 1], state[16];
        int64_t ob = 0;
        get_str(&r->result, "id", rid, sizeof rid);
        get_str(&r->result, "state", state, sizeof state);
        get_int(&r->result, "outbox_id", &ob);
        printf("inbound notice %s to %s: %s%s (outbox row %" PRId64 ")\n", rid, a->val[O_WAREHOUSE],
               state, get_bool(&r->result, "duplicate") ? ", already recorded: not made again" : "",
               ob);
    }
    tally_reply_free(r);
    return rc;
}

static void inbound_row(struct table *t, const msgpack_object *it)
{
    cell_str(t, it, "id");
    cell_str(t, it, "warehouse");
    cell_str(t, it, "state");
    const msgpack_object *lines = get_array(it, "lines");
    char b[256] = "";
    size_t bl = 0;
    for (uint32_t i = 0; lines && i < lines->via.array.size; i++) {
        char sku[TALLY_MAX_ID_LEN + 1] = "";
        int64_t qty = 0;
        get_str(&lines->via.array.ptr[i], "sku", sku, sizeof sku);
        get_int(&lines->via.array.ptr[i], "qty", &qty);
        int w = snprintf(b + bl, sizeof b - bl, "%s%" PRId64 " × %s", bl ? ", " : "", qty, sku);
        if (w < 0 || (size_t)w >= sizeof b - bl)
            break;
        bl += (size_t)w;
    }
    table_cell(t, bl ? b : "-");
    int64_t eta;
    if (get_int(it, "eta", &eta)) {
        char d[64];
        fmt_time(d, sizeof d, eta, true);
        table_cell(t, d);
    } else {
        table_cell(t, "-");
    }
    cell_str(t, it, "from");
    cell_str(t, it, "ref");
    char waiting[512];
    if (get_str(it, "waiting", waiting, sizeof waiting) && waiting[0])
        table_cellf(t, "waiting %s", waiting);
    else
        cell_str(t, it, "last_error");
}

static int run_inbound_list(struct cli *cli, const struct args *a)
{
    static const struct table_col cols[] = {{"ID", TABLE_LEFT},    {"WAREHOUSE", TABLE_LEFT},
                                            {"STATE", TABLE_LEFT}, {"LINES", TABLE_LEFT},
                                            {"ETA", TABLE_LEFT},   {"FROM", TABLE_LEFT},
                                            {"REF", TABLE_LEFT},   {"ERROR/WAITING", TABLE_LEFT}};
    const struct kv f[] = {kv_str("warehouse", a->val[O_WAREHOUSE])};
    const struct lister l = {.method = "inbound.list",
                             .filters = f,
                             .nfilters = 1,
                             .cols = cols,
                             .ncols = 8,
                             .row = inbound_row,
                             .none = "no inbound notices"};
    return run_list(cli, a, &l);
}

/* ------------------------------------------------------------------------------------------ */
/* exceptions                                                                                 */

static void exception_row(struct table *t, const msgpack_object *it)
{
    cell_int(t, it, "id");
    cell_str(t, it, "kind");
    cell_str(t, it, "state");
    cell_str(t, it, "order_id");
    cell_str(t, it, "sku");
    cell_str(t, it, "warehouse");
    cell_deadline(t, it);
    cell_str(t, it, "message");
}

/* exceptions.list's counts (over all exceptions, the same on every page): the last page's. */
struct exception_counts {
    int64_t open, acknowledged, overdue;
    bool seen;
};

static void exception_counts_keep(void *ctx, const msgpack_object *result)
{
    struct exception_counts *c = ctx;
    const msgpack_object *counts = get(result, "counts");
    if (!counts)
        return;
    c->seen = true;
    get_int(counts, "open", &c->open);
    get_int(counts, "acknowledged", &c->acknowledged);
    get_int(counts, "overdue", &c->overdue);
}

static int run_exceptions(struct cli *cli, const struct args *a)
{
    static const struct table_col cols[] = {{"ID", TABLE_RIGHT},      {"KIND", TABLE_LEFT},
                                            {"STATE", TABLE_LEFT},    {"ORDER", TABLE_LEFT},
                                            {"SKU", TABLE_LEFT},      {"WAREHOUSE", TABLE_LEFT},
                                            {"DEADLINE", TABLE_LEFT}, {"MESSAGE", TABLE_LEFT}};
    struct exception_counts counts = {0};
    const struct kv f[] = {kv_str("state", a->val[O_EXC_STATE]), kv_str("kind", a->val[O_KIND]),
                           kv_str("order_id", a->val[O_ORDER])};
    const struct lister l = {.method = "exceptions.list",
                             .filters = f,
                             .nfilters = sizeof f / sizeof f[0],
                             .cols = cols,
                             .ncols = sizeof cols / sizeof cols[0],
                             .row = exception_row,
                             .none = a->set[O_EXC_STATE] || a->set[O_KIND] || a->set[O_ORDER]
                                         ? "no exceptions match"
                                         : "no open exceptions",
                             .page = exception_counts_keep,
                             .ctx = &counts,
                             .extra = "counts"};
    int rc = run_list(cli, a, &l);
    if (rc == EXIT_OK && !cli->json && counts.seen)
        printf("%" PRId64 " open, %" PRId64 " acknowledged, %" PRId64 " overdue (of all "
               "exceptions)\n",
               counts.open, counts.acknowledged, counts.overdue);
    return rc;
}

/* exceptions ack / resolve: one line saying what the exception is now. */
static int exception_action(struct cli *cli, const struct args *a, const char *method)
{
    int64_t id;
    if (!parse_positive(a->pos[0], &id))
        return usage_error(cli, "ID must be an exception number (see tally exceptions), not '%s'",
                           a->pos[0]);
    const struct kv p[] = {kv_int("id", id, true), kv_str("note", a->val[O_NOTE])};
    struct tally_reply *r;
    int rc = cli_call(cli, method, p, 2, &r);
    if (rc)
        return rc;
    const msgpack_object *x = &r->result;
    if (cli->json) {
        rc = print_json(x);
        tally_reply_free(r);
        return rc;
    }
    char kind[64], state[32], order[TALLY_MAX_ID_LEN + 1], by[128];
    get_str(x, "kind", kind, sizeof kind);
    get_str(x, "state", state, sizeof state);
    printf("exception %" PRId64 " (%s", id, kind);
    if (get_str(x, "order_id", order, sizeof order))
        printf(", order %s", order);
    printf("): %s", state);
    if (strcmp(state, "resolved") == 0 && get_str(x, "resolved_by", by, sizeof by))
        printf(" by %s", by);
    else if (strcmp(state, "acknowledged") == 0 && get_str(x, "acknowledged_by", by, sizeof by))
        printf(" by %s", by);
    fputc('\n', stdout);
    tally_reply_free(r);
    return EXIT_OK;
}

static int run_exceptions_ack(struct cli *cli, const struct args *a)
{
    return exception_action(cli, a, "exceptions.ack");
}

static int run_exceptions_resolve(struct cli *cli, const struct args *a)
{
    return exception_action(cli, a, "exceptions.resolve");
}

/* ------------------------------------------------------------------------------------------ */
/* returns                                                                                    */

static void return_row(struct table *t, const msgpack_object *it)
{
    cell_str(t, it, "id");
    cell_str(t, it, "sku");
    cell_str(t, it, "warehouse");
    cell_int(t, it, "qty");
    cell_str(t, it, "state");
    cell_int(t, it, "sellable");
    cell_int(t, it, "damaged");
    cell_str(t, it, "order_id");
    cell_time(t, it, "received_at", true);
    cell_str(t, it, "reason");
}

static int run_returns(struct cli *cli, const struct args *a)
{
    static const struct table_col cols[] = {{"ID", TABLE_LEFT},        {"SKU", TABLE_LEFT},
                                            {"WAREHOUSE", TABLE_LEFT}, {"QTY", TABLE_RIGHT},
                                            {"STATE", TABLE_LEFT},     {"SELLABLE", TABLE_RIGHT},
                                            {"DAMAGED", TABLE_RIGHT},  {"ORDER", TABLE_LEFT},
                                            {"RECEIVED", TABLE_LEFT},  {"REASON", TABLE_LEFT}};
    const struct kv f[] = {kv_str("state", a->val[O_RET_STATE])};
    const struct lister l = {.method = "returns.list",
                             .filters = f,
                             .nfilters = 1,
                             .cols = cols,
                             .ncols = sizeof cols / sizeof cols[0],
                             .row = return_row,
                             .none =
                                 a->set[O_RET_STATE] ? "no returns in that state" : "no returns"};
    return run_list(cli, a, &l);
}

/* The return in a returns.receive / returns.inspect result: the result itself, or its "return". */
static const msgpack_object *return_of(const msgpack_object *res)
{
    const msgpack_object *inner = get(res, "return");
    return inner && inner->type == MSGPACK_OBJECT_MAP ? inner : res;
}

static int run_returns_receive(struct cli *cli, const struct args *a)
{
    int64_t qty;
    int rc = int_arg(cli, "QTY", a->pos[1], &qty);
    if (rc)
        return rc;
    char made[40];
    const char *id = a->val[O_RET_ID];
    if (!id) {
        make_write_id("r", made, sizeof made);
        id = made;
    }
    cli->write_what = "return";
    cli->write_id = id;
    const struct kv p[] = {kv_str("id", id),
                           kv_str("sku", a->pos[0]),
                           kv_str("warehouse", a->val[O_WAREHOUSE]),
                           kv_int("qty", qty, true),
                           kv_str("order_id", a->val[O_ORDER]),
                           kv_str("reason", a->val[O_RET_REASON])};
    struct tally_reply *r;
    rc = cli_call(cli, "returns.receive", p, sizeof p / sizeof p[0], &r);
    if (rc)
        return rc;
    if (cli->json) {
        rc = print_json(&r->result);
        tally_reply_free(r);
        return rc;
    }
    const msgpack_object *ret = return_of(&r->result);
    char rid[TALLY_MAX_ID_LEN + 1];
    get_str(ret, "id", rid, sizeof rid);
    printf("return %s: %" PRId64 " × %s back at %s%s, held out of sale until inspected\n", rid, qty,
           a->pos[0], a->val[O_WAREHOUSE],
           get_bool(&r->result, "duplicate") ? " (already recorded: not applied again)" : "");
    printf("next: tally returns inspect %s --sellable N --damaged M\n", rid);
    tally_reply_free(r);
    return EXIT_OK;
}

static int run_returns_inspect(struct cli *cli, const struct args *a)
{
    int64_t sellable = 0, damaged = 0;
    int rc = opt_int(cli, a, O_SELLABLE, &sellable);
    if (rc == 0)
        rc = opt_int(cli, a, O_DAMAGED, &damaged);
    if (rc)
        return rc;
    const struct kv p[] = {kv_str("id", a->pos[0]), kv_int("sellable", sellable, true),
                           kv_int("damaged", damaged, true), kv_str("note", a->val[O_NOTE])};
    struct tally_reply *r;
    rc = cli_call(cli, "returns.inspect", p, sizeof p / sizeof p[0], &r);
    if (rc)
        return rc;
    if (cli->json) {
        rc = print_json(&r->result);
        tally_reply_free(r);
        return rc;
    }
    const msgpack_object *ret = return_of(&r->result);
    char sku[TALLY_MAX_ID_LEN + 1], wh[TALLY_MAX_ID_LEN + 1];
    get_str(ret, "sku", sku, sizeof sku);
    get_str(ret, "warehouse", wh, sizeof wh);
    get_int(ret, "sellable", &sellable);
    get_int(ret, "damaged", &damaged);
    printf("return %s inspected (%s at %s): %" PRId64 " back on sale, %" PRId64
           " written off as damaged\n",
           a->pos[0], sku, wh, sellable, damaged);
    tally_reply_free(r);
    return EXIT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* promo check                                                                                */

/* An error in an input file other than an import's: exit 2, with the file and line. */
static int input_error(const struct cli *cli, const char *file, unsigned long line, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
static int input_error(const struct cli *cli, const char *file, unsigned long line, const char *fmt,
                       ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cli->json)
        json_error_doc("invalid_input", msg, file, line);
    if (line)
        fprintf(stderr, "tally: %s:%lu: ", file, line);
    else
        fprintf(stderr, "tally: %s: ", file);
    out_text(stderr, msg, strlen(msg));
    fputc('\n', stderr);
    return EXIT_USAGE;
}

struct promo_item {
    char *sku;
    int64_t min;
    bool has_min;
};

struct promo_list {
    struct promo_item *v;
    size_t n, cap;
};

static void promo_list_free(struct promo_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].sku);
    free(l->v);
}

/* The field without the spaces and tabs a spreadsheet export may leave around it. */
static const char *trimmed(const char *s, size_t *len)
{
    while (*len && (*s == ' ' || *s == '\t')) {
        s++;
        (*len)--;
    }
    while (*len && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
        (*len)--;
    return s;
}

static bool is_sku_header(const char *s, size_t len)
{
    return len == 3 && tolower((unsigned char)s[0]) == 's' && tolower((unsigned char)s[1]) == 'k' &&
           tolower((unsigned char)s[2]) == 'u';
}

enum { PROMO_SKIP = -1, PROMO_HEADER = -2 }; /* promo_record's answers besides 0 and exit codes */

/* One record of the SKU file into l: 0, PROMO_SKIP, PROMO_HEADER, or an exit code. */
static int promo_record(const struct cli *cli, const char *file, struct csv_reader *csv, bool first,
                        struct promo_list *l)
{
    size_t nf = csv_nfields(csv), len, mlen = 0;
    unsigned long line = csv_line(csv);
    const char *sku = trimmed(csv_field(csv, 0, &len), &len), *min = "";
    if (nf > 1)
        min = trimmed(csv_field(csv, 1, &mlen), &mlen);
    if ((len == 0 && nf == 1) || (len > 0 && sku[0] == '#'))
        return PROMO_SKIP;
    if (first && is_sku_header(sku, len))
        return PROMO_HEADER;
    if (nf > 2)
        return input_error(cli, file, line, "%zu fields: expected SKU or SKU,MIN", nf);
    if (len == 0)
        return input_error(cli, file, line, "no SKU before the comma");
    struct promo_item it = {.sku = strndup(sku, len)};
    if (mlen) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.*s", (int)mlen, min);
        if (mlen >= sizeof buf || parse_int64(buf, &it.min) != 0) {
            free(it.sku);
            return input_error(cli, file, line, "MIN must be an integer, not '%.*s'", (int)mlen,
                               min);
        }
        it.has_min = true;
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 256;
        struct promo_item *v = realloc(l->v, ncap * sizeof *v);
        if (v) {
            l->v = v;
            l->cap = ncap;
        }
    }
    if (!it.sku || l->n == l->cap) {
        free(it.sku);
        fputs("tally: out of memory\n", stderr);
        return EXIT_SERVER;
    }
    l->v[l->n++] = it;
    return 0;
}

/*
 * Reads the SKU file whole before anything is sent, so a bad line is reported (exit 2) before
 * any output: one SKU per line, or SKU,MIN; a header "sku[,min]", blank lines and lines
 * starting with '#' are skipped.
 */
static int promo_read(const struct cli *cli, const char *path, struct promo_list *l)
{
    bool use_stdin = strcmp(path, "-") == 0;
    const char *name = use_stdin ? "(stdin)" : path;
    FILE *f = use_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        int e = errno;
        return input_error(cli, path, 0, "cannot open: %s", strerror(e));
    }
    struct csv_reader *csv = csv_reader_new(f);
    int rc = csv ? 0 : EXIT_SERVER, r = 0;
    bool first = true;
    while (rc == 0 && (r = csv_read(csv)) > 0) {
        int k = promo_record(cli, name, csv, first, l);
        if (k != PROMO_SKIP)
            first = false; /* only the first line that is not blank or a comment is a header */
        rc = k < 0 ? 0 : k;
    }
    if (rc == 0 && r < 0)
        rc = input_error(cli, name, csv_reader_error_line(csv), "%s", csv_reader_error(csv));
    if (rc == 0 && l->n == 0)
        rc = input_error(cli, name, 0, "no SKUs in the file");
    csv_reader_free(csv);
    if (!use_stdin)
        fclose(f);
    return rc;
}

static void pack_promo_items(const struct promo_list *l, size_t from, size_t n, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, n);
    for (size_t i = from; i < from + n; i++) {
        msgpack_pack_map(&pk, l->v[i].has_min ? 2 : 1);
        mp_pack_kv_str(&pk, "sku", l->v[i].sku);
        if (l->v[i].has_min)
            mp_pack_kv_int(&pk, "min", l->v[i].min);
    }
}

static void promo_row(struct table *t, const msgpack_object *it)
{
    cell_str(t, it, "sku");
    cell_str(t, it, "product_id");
    cell_str(t, it, "checked");
    cell_int(t, it, "available");
    cell_int(t, it, "min");
    table_cell(t, get_bool(it, "ok") ? "yes" : "NO");
    cell_str(t, it, "reason");
}

/* One promo.check call for items [from, from + n): rows into t (or JSON without t), counts added.
 */
static int promo_call(struct cli *cli, const struct args *a, int64_t min,
                      const struct promo_list *l, size_t from, size_t n, struct table *t,
                      int64_t sums[3])
{
    static const char *const keys[3] = {"ok", "short", "unknown"};
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    pack_promo_items(l, from, n, &items);
    const struct kv p[] = {kv_raw("items", &items), kv_int("min", min, a->set[O_MIN]),
                           kv_str("per", a->val[O_PER])};
    struct tally_reply *r;
    int rc = cli_call(cli, "promo.check", p, sizeof p / sizeof p[0], &r);
    msgpack_sbuffer_destroy(&items);
    if (rc)
        return rc;
    const msgpack_object *res = get_array(&r->result, "items");
    if (!res) {
        tally_reply_free(r);
        return bad_answer(cli, "promo.check without items");
    }
    for (uint32_t i = 0; i < res->via.array.size; i++) {
        if (t) {
            promo_row(t, &res->via.array.ptr[i]);
            continue;
        }
        if (from + i > 0)
            fputc(',', stdout);
        json_write(stdout, &res->via.array.ptr[i]);
    }
    for (int k = 0; k < 3; k++) {
        int64_t v;
        if (get_int(&r->result, keys[k], &v))
            sums[k] += v;
    }
    tally_reply_free(r);
    return EXIT_OK;
}

static int run_promo_check(struct cli *cli, const struct args *a)
{
    static const struct table_col cols[] = {{"SKU", TABLE_LEFT},     {"PRODUCT", TABLE_LEFT},
                                            {"CHECKED", TABLE_LEFT}, {"AVAILABLE", TABLE_RIGHT},
                                            {"MIN", TABLE_RIGHT},    {"OK", TABLE_LEFT},
                                            {"REASON", TABLE_LEFT}};
    struct promo_list l = {0};
    int64_t sums[3] = {0, 0, 0}, min = 0;
    bool json = cli->json;
    struct table *t = NULL;
    int rc = opt_int(cli, a, O_MIN, &min);
    if (rc == 0)
        rc = promo_read(cli, a->val[O_PROMO_SKUS], &l);
    if (rc == 0)
        rc = cli_connect(cli);
    if (rc == 0 && !json && !(t = table_new(cols, sizeof cols / sizeof cols[0]))) {
        fputs("tally: out of memory\n", stderr);
        rc = EXIT_SERVER;
    }
    if (rc) {
        promo_list_free(&l);
        return rc;
    }
    /*
     * The method takes at most TALLY_MAX_PAGE items: a longer list is checked call by call and
     * shown as one table, or one JSON document (errors then go inside it, not after it).
     */
    if (json)
        fputs("{\"items\":[", stdout);
    cli->json = false;
    for (size_t from = 0; from < l.n && rc == 0; from += TALLY_MAX_PAGE) {
        size_t n = l.n - from < TALLY_MAX_PAGE ? l.n - from : TALLY_MAX_PAGE;
        rc = promo_call(cli, a, min, &l, from, n, t, sums);
    }
    cli->json = json;
    if (json && rc == 0) {
        printf("],\"ok\":%" PRId64 ",\"short\":%" PRId64 ",\"unknown\":%" PRId64 "}\n", sums[0],
               sums[1], sums[2]);
    } else if (json) {
        fputs("],\"error\":{\"code\":", stdout);
        json_write_str(stdout, cli->err_code, strlen(cli->err_code));
        fputs(",\"message\":", stdout);
        json_write_str(stdout, cli->err_message, strlen(cli->err_message));
        fputs("}}\n", stdout);
    } else if (rc == 0) {
        table_flush(t, stdout);
        printf("%" PRId64 " ok, %" PRId64 " short, %" PRId64 " unknown\n", sums[0], sums[1],
               sums[2]);
    }
    table_free(t);
    promo_list_free(&l);
    /* Documented: a campaign list that would not pass is a refusal, so scripts can branch. */
    if (rc == 0 && sums[1] + sums[2] > 0)
        rc = EXIT_REFUSED;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* report, purge                                                                              */

static bool get_double(const msgpack_object *map, const char *key, double *v)
{
    const msgpack_object *o = get(map, key);
    int64_t i;
    if (o && (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)) {
        *v = o->via.f64;
        return true;
    }
    if (obj_int(o, &i)) {
        *v = (double)i;
        return true;
    }
    return false;
}

/* Local midnight at the start of day y-m-d; d may run past the month (mktime normalises). */
static int64_t local_midnight(int y, int m, int d)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_isdst = -1;
    return (int64_t)mktime(&tm);
}

/* A strict YYYY-MM-DD naming a day that exists (2024-02-30 is refused). */
static bool parse_ymd(const char *s, int *y, int *m, int *d)
{
    static const int digits[] = {0, 1, 2, 3, 5, 6, 8, 9};
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (size_t i = 0; i < sizeof digits / sizeof digits[0]; i++)
        if (!isdigit((unsigned char)s[digits[i]]))
            return false;
    *y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    *m = (s[5] - '0') * 10 + (s[6] - '0');
    *d = (s[8] - '0') * 10 + (s[9] - '0');
    struct tm tm = {0};
    tm.tm_year = *y - 1900;
    tm.tm_mon = *m - 1;
    tm.tm_mday = *d;
    tm.tm_isdst = -1;
    return *y >= 1970 && mktime(&tm) != (time_t)-1 && tm.tm_year == *y - 1900 &&
           tm.tm_mon == *m - 1 && tm.tm_mday == *d;
}

/* The report's period: [from, to) in epoch seconds, from local days; a label for people. */
struct period {
    int64_t from, to;
    char label[64];
};

static int report_period(const struct cli *cli, const struct args *a, struct period *p)
{
    int y1, m1, d1, y2, m2, d2;
    if (a->set[O_DAY] && (a->set[O_FROM_DAY] || a->set[O_TO_DAY]))
        return usage_error(cli, "give either --day or --from/--to, not both");
    if (a->set[O_TO_DAY] && !a->set[O_FROM_DAY])
        return usage_error(cli, "--to needs --from (the first day of the period)");
    const char *first = a->set[O_DAY] ? a->val[O_DAY] : a->val[O_FROM_DAY];
    const char *last = a->set[O_DAY] ? a->val[O_DAY] : a->val[O_TO_DAY];
    const char *names[2] = {a->set[O_DAY] ? "--day" : "--from", a->set[O_DAY] ? "--day" : "--to"};
    time_t now = time(NULL);
    struct tm today;
    localtime_r(&now, &today);
    y1 = y2 = today.tm_year + 1900;
    m1 = m2 = today.tm_mon + 1;
    d1 = d2 = today.tm_mday;
    if (first && !parse_ymd(first, &y1, &m1, &d1))
        return usage_error(cli, "%s must be a day as YYYY-MM-DD, not '%s'", names[0], first);
    if (last && !parse_ymd(last, &y2, &m2, &d2))
        return usage_error(cli, "%s must be a day as YYYY-MM-DD, not '%s'", names[1], last);
    p->from = local_midnight(y1, m1, d1);
    p->to = local_midnight(y2, m2, d2 + 1); /* the end of the last day: it is included */
    if (p->to <= p->from)
        return usage_error(cli, "--from must not be after --to");
    if (y1 == y2 && m1 == m2 && d1 == d2)
        snprintf(p->label, sizeof p->label, "%04d-%02d-%02d", y1, m1, d1);
    else
        snprintf(p->label, sizeof p->label, "%04d-%02d-%02d to %04d-%02d-%02d", y1, m1, d1, y2, m2,
                 d2);
    return 0;
}

/*
 * One table of the report, shown either way: aligned for people, or CSV (a "# name" line, a
 * header row, the rows) for a spreadsheet. Absent values are "-" in tables and empty in CSV.
 */
struct sheet_col {
    const char *title, *csv;
    enum table_align align;
};

#define SHEET_MAX_COLS 8

struct sheet {
    bool csv;
    struct table *t;
    size_t ncols, col, rows;
};

static void sheet_begin(struct sheet *sh, bool csv, bool first, const char *name,
                        const char *heading, const struct sheet_col *cols, size_t ncols)
{
    struct table_col tc[SHEET_MAX_COLS];
    *sh = (struct sheet){.csv = csv, .ncols = ncols};
    if (!first)
        fputc('\n', stdout);
    if (csv) {
        printf("# %s\n", name);
        for (size_t i = 0; i < ncols; i++)
            printf("%s%s", i ? "," : "", cols[i].csv);
        fputc('\n', stdout);
        return;
    }
    printf("%s\n", heading);
    for (size_t i = 0; i < ncols; i++)
        tc[i] = (struct table_col){cols[i].title, cols[i].align};
    sh->t = table_new(tc, ncols);
}

static void sheet_cell(struct sheet *sh, const char *v)
{
    if (sh->csv) {
        if (sh->col)
            fputc(',', stdout);
        csv_write_cell(stdout, v ? v : "", v ? strlen(v) : 0);
    } else if (sh->t) {
        table_cell(sh->t, v);
    }
    if (++sh->col == sh->ncols) {
        if (sh->csv)
            fputc('\n', stdout);
        sh->col = 0;
        sh->rows++;
    }
}

static void sheet_cellf(struct sheet *sh, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sheet_cellf(struct sheet *sh, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sheet_cell(sh, buf);
}

static void sheet_int(struct sheet *sh, const msgpack_object *map, const char *key)
{
    int64_t v;
    if (get_int(map, key, &v))
        sheet_cellf(sh, "%" PRId64, v);
    else
        sheet_cell(sh, NULL);
}

static void sheet_str(struct sheet *sh, const msgpack_object *map, const char *key)
{
    char buf[1100];
    sheet_cell(sh, get_str(map, key, buf, sizeof buf));
}

/* Money: "88.93 EUR" in tables, "88.93" in CSV (the currency has its own column there). */
static void sheet_money(struct sheet *sh, const msgpack_object *map, const char *key,
                        const char *currency)
{
    int64_t v;
    char buf[64];
    size_t clen = currency ? strlen(currency) : 0;
    if (!get_int(map, key, &v)) {
        sheet_cell(sh, NULL);
        return;
    }
    if (sh->csv)
        fmt_amount(buf, sizeof buf, v, currency, clen);
    else
        fmt_money(buf, sizeof buf, v, currency, clen);
    sheet_cell(sh, buf);
}

/* A fraction as a percentage: "95.0%" in tables, "95.0" in CSV. */
static void sheet_pct(struct sheet *sh, const msgpack_object *map, const char *key)
{
    double v;
    if (get_double(map, key, &v))
        sheet_cellf(sh, sh->csv ? "%.1f" : "%.1f%%", v * 100.0);
    else
        sheet_cell(sh, NULL);
}

static void sheet_end(struct sheet *sh, const char *none)
{
    if (!sh->csv && sh->rows)
        table_flush(sh->t, stdout);
    else if (!sh->csv)
        printf("%s\n", none);
    table_free(sh->t);
    sh->t = NULL;
}

static void report_sales(const msgpack_object *res, bool csv)
{
    static const struct sheet_col cols[] = {{"CURRENCY", "currency", TABLE_LEFT},
                                            {"ORDERS", "orders", TABLE_RIGHT},
                                            {"UNITS", "units", TABLE_RIGHT},
                                            {"GMV", "gmv", TABLE_RIGHT},
                                            {"AOV", "aov", TABLE_RIGHT}};
    const msgpack_object *sales = get_array(res, "sales");
    struct sheet sh;
    sheet_begin(&sh, csv, true, "sales", "sales (orders created in the period, not cancelled)",
                cols, 5);
    for (uint32_t i = 0; sales && i < sales->via.array.size; i++) {
        const msgpack_object *s = &sales->via.array.ptr[i];
        char cur[16];
        const char *c = get_str(s, "currency", cur, sizeof cur);
        sheet_cell(&sh, c);
        sheet_int(&sh, s, "orders");
        sheet_int(&sh, s, "units");
        sheet_money(&sh, s, "gmv_minor", c);
        sheet_money(&sh, s, "aov_minor", c);
    }
    sheet_end(&sh, "no sales in the period");
}

static void report_orders(const msgpack_object *res, bool csv)
{
    static const struct sheet_col cols[] = {{"CREATED", "created", TABLE_RIGHT},
                                            {"CANCELLED", "cancelled", TABLE_RIGHT},
                                            {"SHIPPED", "shipped", TABLE_RIGHT},
                                            {"ON_TIME", "on_time", TABLE_RIGHT},
                                            {"ON_TIME_RATE", "on_time_pct", TABLE_RIGHT}};
    const msgpack_object *o = get(res, "orders");
    struct sheet sh;
    sheet_begin(&sh, csv, false, "orders", "orders (shipped: shipments made in the period)", cols,
                5);
    sheet_int(&sh, o, "created");
    sheet_int(&sh, o, "cancelled");
    sheet_int(&sh, o, "shipped");
    sheet_int(&sh, o, "on_time");
    sheet_pct(&sh, o, "on_time_rate");
    sheet_end(&sh, "-");
}

static void report_skus(const msgpack_object *res, bool csv)
{
    static const struct sheet_col cols[] = {{"SKU", "sku", TABLE_LEFT},
                                            {"WAREHOUSE", "warehouse", TABLE_LEFT},
                                            {"SOLD", "sold", TABLE_RIGHT},
                                            {"ON_HAND", "on_hand", TABLE_RIGHT},
                                            {"SELL_THROUGH", "sell_through_pct", TABLE_RIGHT},
                                            {"TURNOVER", "turnover", TABLE_RIGHT}};
    const msgpack_object *skus = get_array(res, "skus");
    struct sheet sh;
    sheet_begin(&sh, csv, false, "skus", "SKUs by units sold (ON_HAND is now)", cols, 6);
    for (uint32_t i = 0; skus && i < skus->via.array.size; i++) {
        const msgpack_object *s = &skus->via.array.ptr[i];
        double turnover;
        sheet_str(&sh, s, "sku");
        sheet_str(&sh, s, "warehouse");
        sheet_int(&sh, s, "sold");
        sheet_int(&sh, s, "on_hand");
        sheet_pct(&sh, s, "sell_through");
        if (get_double(s, "turnover", &turnover))
            sheet_cellf(&sh, "%.2f", turnover);
        else
            sheet_cell(&sh, NULL);
    }
    sheet_end(&sh, "nothing shipped in the period");
}

static void report_exceptions(const msgpack_object *res, bool csv)
{
    static const struct sheet_col cols[] = {{"KIND", "kind", TABLE_LEFT},
                                            {"OPENED", "opened", TABLE_RIGHT},
                                            {"CLOSED", "closed", TABLE_RIGHT}};
    const msgpack_object *x = get(res, "exceptions"), *kinds = get_array(x, "by_kind");
    struct sheet sh;
    sheet_begin(&sh, csv, false, "exceptions", "exceptions (opened and resolved in the period)",
                cols, 3);
    for (uint32_t i = 0; kinds && i < kinds->via.array.size; i++) {
        const msgpack_object *k = &kinds->via.array.ptr[i];
        sheet_str(&sh, k, "kind");
        sheet_int(&sh, k, "opened");
        sheet_int(&sh, k, "closed");
    }
    /* A spreadsheet sums the rows itself; people get the total. */
    if (!csv && sh.rows) {
        sheet_cell(&sh, "TOTAL");
        sheet_int(&sh, x, "opened");
        sheet_int(&sh, x, "closed");
    }
    sheet_end(&sh, "no exceptions opened or closed in the period");
}

static int run_report(struct cli *cli, const struct args *a)
{
    struct period p;
    int64_t skus = 0;
    int rc = report_period(cli, a, &p);
    if (rc == 0)
        rc = opt_int(cli, a, O_SKUS_LIMIT, &skus);
    if (rc)
        return rc;
    if (cli->json && a->set[O_CSV])
        return usage_error(cli, "--csv and --json are two different outputs: pick one");
    const struct kv kv[] = {kv_int("from", p.from, true), kv_int("to", p.to, true),
                            kv_int("skus_limit", skus, a->set[O_SKUS_LIMIT])};
    struct tally_reply *r;
    rc = cli_call(cli, "report", kv, sizeof kv / sizeof kv[0], &r);
    if (rc)
        return rc;
    const msgpack_object *res = &r->result;
    bool csv = a->set[O_CSV];
    if (cli->json) {
        rc = print_json(res);
        tally_reply_free(r);
        return rc;
    }
    if (!csv) {
        char b1[64], b2[64];
        fmt_time(b1, sizeof b1, p.from, false);
        fmt_time(b2, sizeof b2, p.to, false);
        printf("report %s (local time %s to %s, end excluded)\n\n", p.label, b1, b2);
    }
    report_sales(res, csv);
    report_orders(res, csv);
    report_skus(res, csv);
    report_exceptions(res, csv);
    tally_reply_free(r);
    return EXIT_OK;
}

static int run_purge(struct cli *cli, const struct args *a)
{
    int64_t days = 0, n = 0;
    int rc = opt_int(cli, a, O_OLDER_THAN, &days);
    if (rc)
        return rc;
    const struct kv p[] = {kv_int("older_than_days", days, a->set[O_OLDER_THAN]),
                           kv_flag("dry_run", a->set[O_DRY_RUN])};
    struct tally_reply *r;
    rc = cli_call(cli, "privacy.purge", p, 2, &r);
    if (rc)
        return rc;
    if (cli->json) {
        rc = print_json(&r->result);
        tally_reply_free(r);
        return rc;
    }
    get_int(&r->result, "orders", &n);
    printf("%s the buyer's personal data of %" PRId64 " order%s",
           a->set[O_DRY_RUN] ? "would erase" : "erased", n, n == 1 ? "" : "s");
    if (a->set[O_OLDER_THAN])
        printf(" (finished or cancelled more than %" PRId64 " day%s ago)\n", days,
               days == 1 ? "" : "s");
    else
        printf(" (finished or cancelled longer ago than [privacy] retain_days)\n");
    tally_reply_free(r);
    return EXIT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* import                                                                                     */

struct import_kind {
    const char *name;
    const char *const *columns; /* PROTOCOL.md's import table, NULL-terminated */
    const char *group_by;       /* rows with the same value never go in two calls */
};

static const char *const warehouse_columns[] = {
    "code", "name", "country", "serves_marketplace", "fulfilment", NULL};
static const char *const catalog_columns[] = {
    "sku",      "product_id", "title",     "product_title", "price_minor",
    "currency", "weight_g",   "mp_sku_id", "attributes",    NULL};
static const char *const stock_columns[] = {"sku",    "warehouse", "on_hand",
                                            "safety", "threshold", NULL};
static const char *const order_columns[] = {
    "order_id", "status",   "created_at",  "ship_by",     "country",    "currency",
    "sku",      "qty",      "price_minor", "service",     "buyer_name", "address",
    "city",     "postcode", "phone",       "buyer_level", NULL};

static const struct import_kind import_kinds[] = {
    {"warehouses", warehouse_columns, NULL},
    {"catalog", catalog_columns, NULL},
    {"stock", stock_columns, NULL},
    {"orders", order_columns, "order_id"},
};

/* Rows packed for one `import` call, with the file line of each. */
struct batch {
    msgpack_sbuffer rows;
    size_t nrows;
    unsigned long *lines;
    size_t lines_cap;
};

/* The rows of one order (orders are imported whole). */
struct group {
    char *key;
    struct batch b;
};

/* An import call sent and not yet answered, or answered with an error kept for the end. */
struct flight {
    struct batch b;
    uint64_t seq; /* the call's number in the file's order */
    bool busy;    /* sent, not yet answered */
};

struct importer {
    struct cli *cli;
    /* pipelined calls (IMPORT_INFLIGHT): the first refused one in the file's order is kept */
    struct flight flights[IMPORT_INFLIGHT];
    uint64_t next_seq;
    int inflight;
    struct tally_reply *refused; /* the answer of the first refused call (lowest seq) */
    struct batch refused_b;      /* its rows' file lines */
    uint64_t refused_seq;
    int64_t rows_before; /* rows imported by the calls before it */
    int64_t *seq_rows;   /* rows answered per call, by seq (for rows_before) */
    size_t seq_rows_cap;
    const struct import_kind *kind;
    const char *file;
    struct csv_reader *csv;
    char **header;
    size_t ncols;
    int attributes_col; /* column of catalog attributes, or -1 */
    int group_col;      /* column that groups rows, or -1 */
    int64_t rows, inserted, updated;
    int batches;
    int progress; /* width of the progress line on stderr, 0 when none */
    /* orders: groups in order of first appearance, and a hash index over their keys */
    struct group *groups;
    size_t ngroups, groups_cap;
    size_t *index; /* group number + 1, 0 = empty slot */
    size_t index_cap;
};

static bool batch_add_line(struct batch *b, unsigned long line)
{
    if (b->nrows == b->lines_cap) {
        size_t ncap = b->lines_cap ? b->lines_cap * 2 : 64;
        unsigned long *n = realloc(b->lines, ncap * sizeof *n);
        if (!n)
            return false;
        b->lines = n;
        b->lines_cap = ncap;
    }
    b->lines[b->nrows++] = line;
    return true;
}

static void batch_reset(struct batch *b)
{
    msgpack_sbuffer_clear(&b->rows);
    b->nrows = 0;
}

static void batch_destroy(struct batch *b)
{
    msgpack_sbuffer_destroy(&b->rows);
    free(b->lines);
}

/* Appends another batch's rows (a whole group) to b. */
static bool batch_append(struct batch *b, const struct batch *g)
{
    if (msgpack_sbuffer_write(&b->rows, g->rows.data, g->rows.size) != 0)
        return false;
    for (size_t i = 0; i < g->nrows; i++)
        if (!batch_add_line(b, g->lines[i]))
            return false;
    return true;
}

/* Erases the progress line, if one is shown. */
static void progress_clear(struct importer *im)
{
    if (im->progress)
        fprintf(stderr, "\r%*s\r", im->progress, "");
    im->progress = 0;
}

/* An error in the input file: exit 2, with the file and line. */
static int import_file_error(struct importer *im, unsigned long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int import_drain(struct importer *im);
static int import_file_error(struct importer *im, unsigned long line, const char *fmt, ...)
{
    /* The calls in flight are answered first: a refused one before this line is what is
     * reported, and the count of rows imported before it is complete. */
    if (im->inflight > 0 || im->refused) {
        int rc = import_drain(im);
        if (rc)
            return rc;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    progress_clear(im);
    if (im->cli->json)
        json_error_doc("invalid_input", msg, im->file, line);
    if (line)
        fprintf(stderr, "tally: %s:%lu: ", im->file, line);
    else
        fprintf(stderr, "tally: %s: ", im->file);
    out_text(stderr, msg, strlen(msg));
    fputc('\n', stderr);
    if (im->rows > 0)
        fprintf(stderr,
                "tally: the %" PRId64 " rows before it were imported; importing the file again "
                "is harmless\n",
                im->rows);
    return EXIT_USAGE;
}

static int import_oom(struct importer *im)
{
    progress_clear(im);
    fputs("tally: out of memory\n", stderr);
    return EXIT_SERVER;
}

/* Checks the header row against the kind's columns. */
static int import_header(struct importer *im)
{
    int r = csv_read(im->csv);
    if (r < 0)
        return import_file_error(im, csv_reader_error_line(im->csv), "%s",
                                 csv_reader_error(im->csv));
    if (r == 0)
        return import_file_error(im, 0,
                                 "the file is empty (expected a header row naming the "
                                 "columns)");
    im->ncols = csv_nfields(im->csv);
    im->header = calloc(im->ncols, sizeof *im->header);
    if (!im->header)
        return import_oom(im);
    im->attributes_col = im->group_col = -1;
    for (size_t i = 0; i < im->ncols; i++) {
        const char *name = csv_field(im->csv, i, NULL);
        bool known = false;
        for (const char *const *c = im->kind->columns; *c && !known; c++)
            known = strcmp(*c, name) == 0;
        if (!known) {
            char list[512];
            size_t off = 0;
            for (const char *const *c = im->kind->columns; *c; c++)
                appendf(list, sizeof list, &off, "%s%s", off ? ", " : "", *c);
            return import_file_error(im, csv_line(im->csv),
                                     "unknown column '%s' for %s (columns: %s)", name,
                                     im->kind->name, list);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(im->header[j], name) == 0)
                return import_file_error(im, csv_line(im->csv), "column '%s' appears twice", name);
        if (!(im->header[i] = strdup(name)))
            return import_oom(im);
        if (strcmp(name, "attributes") == 0)
            im->attributes_col = (int)i;
        if (im->kind->group_by && strcmp(name, im->kind->group_by) == 0)
            im->group_col = (int)i;
    }
    return 0;
}

/*
 * Catalog attributes are written in one cell as "color=red;size=M": items separated by ';',
 * name and value by the first '='; spaces around names and values are dropped, and a backslash
 * makes the next character literal ("a\;b"). Packed as a map str -> str.
 */
struct attr {
    size_t name, name_len, value, value_len; /* offsets into the unescaped text */
};

#define MAX_ATTRS 64

static void trim(const char *base, size_t *off, size_t *len)
{
    while (*len && base[*off] == ' ') {
        (*off)++;
        (*len)--;
    }
    while (*len && base[*off + *len - 1] == ' ')
        (*len)--;
}

static int pack_attributes(struct importer *im, msgpack_packer *pk, const char *cell)
{
    size_t n = strlen(cell);
    char *text = malloc(n + 1);
    struct attr attrs[MAX_ATTRS];
    size_t count = 0, len = 0, item = 0, eq = SIZE_MAX;
    unsigned long line = csv_line(im->csv);
    int rc = 0;
    if (!text)
        return import_oom(im);
    /* Unescape into text, splitting items on unescaped ';' and names on the first '='. */
    for (size_t i = 0; i <= n && rc == 0; i++) {
        bool end = i == n || cell[i] == ';';
        if (!end && cell[i] == '\\' && i + 1 < n) {
            text[len++] = cell[++i];
            continue;
        }
        if (!end) {
            if (cell[i] == '=' && eq == SIZE_MAX)
                eq = len;
            text[len++] = cell[i];
            continue;
        }
        struct attr a = {item, (eq == SIZE_MAX ? len : eq) - item, 0, 0};
        if (eq != SIZE_MAX) {
            a.value = eq + 1;
            a.value_len = len - eq - 1;
        }
        trim(text, &a.name, &a.name_len);
        trim(text, &a.value, &a.value_len);
        bool blank = len == item || (a.name_len == 0 && eq == SIZE_MAX);
        if (!blank && (eq == SIZE_MAX || a.name_len == 0))
            rc = import_file_error(im, line, "attributes: '%.*s' is not name=value",
                                   (int)(len - item), text + item);
        for (size_t k = 0; !blank && rc == 0 && k < count; k++)
            if (attrs[k].name_len == a.name_len &&
                memcmp(text + attrs[k].name, text + a.name, a.name_len) == 0)
                rc = import_file_error(im, line, "attributes: '%.*s' is given twice",
                                       (int)a.name_len, text + a.name);
        if (!blank && rc == 0 && count == MAX_ATTRS)
            rc = import_file_error(im, line, "attributes: more than %d items", MAX_ATTRS);
        if (!blank && rc == 0)
            attrs[count++] = a;
        item = len;
        eq = SIZE_MAX;
    }
    if (rc == 0) {
        msgpack_pack_map(pk, count);
        for (size_t k = 0; k < count; k++) {
            mp_pack_strn(pk, text + attrs[k].name, attrs[k].name_len);
            mp_pack_strn(pk, text + attrs[k].value, attrs[k].value_len);
        }
    }
    free(text);
    return rc;
}

/* Packs the current CSV record as a row map into b: non-empty cells only, as strings. */
static int pack_row(struct importer *im, struct batch *b)
{
    size_t nf = csv_nfields(im->csv);
    unsigned long line = csv_line(im->csv);
    if (nf != im->ncols)
        return import_file_error(im, line, "%zu fields, but the header has %zu", nf, im->ncols);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b->rows, msgpack_sbuffer_write);
    size_t count = 0;
    for (size_t i = 0; i < nf; i++)
        count += csv_field(im->csv, i, NULL)[0] != '\0';
    msgpack_pack_map(&pk, count);
    for (size_t i = 0; i < nf; i++) {
        size_t len;
        const char *v = csv_field(im->csv, i, &len);
        if (len == 0)
            continue;
        mp_pack_strz(&pk, im->header[i]);
        if ((int)i == im->attributes_col) {
            int rc = pack_attributes(im, &pk, v);
            if (rc)
                return rc;
        } else {
            mp_pack_strn(&pk, v, len);
        }
    }
    return batch_add_line(b, line) ? 0 : import_oom(im);
}

/*
 * Maps tallyd's "row K: ..." to the file line of row K of the batch; returns the line (0 when
 * the message names no row) and the message without its row prefix.
 */
static unsigned long error_line(const struct batch *b, const char *msg, const char **rest)
{
    *rest = msg;
    if (strncmp(msg, "row ", 4) != 0 || !isdigit((unsigned char)msg[4]))
        return 0;
    char *end;
    unsigned long k = strtoul(msg + 4, &end, 10);
    if (end[0] != ':' || k == 0 || k > b->nrows)
        return 0;
    *rest = end[1] == ' ' ? end + 2 : end + 1;
    return b->lines[k - 1];
}

static void import_progress(struct importer *im)
{
    if (im->cli->json || !isatty(STDERR_FILENO))
        return;
    int n = fprintf(stderr, "\r%s: %" PRId64 " rows imported...", im->kind->name, im->rows);
    im->progress = n > 1 ? n - 1 : 0;
}

/* Reports the refused call's error as a call sent alone is reported; its exit status. */
static int report_refused(struct importer *im, struct tally_reply *r, const struct batch *b)
{
    const char *rest;
    unsigned long line = error_line(b, r->message, &rest);
    progress_clear(im);
    if (im->cli->json)
        json_error_doc(r->code, rest, im->file, line);
    if (line)
        fprintf(stderr, "tally: %s:%lu: ", im->file, line);
    else
        fprintf(stderr, "tally: %s (lines %lu-%lu): ", im->file, b->lines[0],
                b->lines[b->nrows - 1]);
    out_text(stderr, rest, strlen(rest));
    fprintf(stderr, " (%s)\n", r->code);
    if (im->rows_before > 0)
        fprintf(stderr,
                "tally: the %" PRId64 " rows before that batch were imported; importing the "
                "file again is harmless\n",
                im->rows_before);
    return exit_code_for(r->err);
}

/* Rows answered for call `seq` (kept to count the rows before a refused call). */
static bool note_seq_rows(struct importer *im, uint64_t seq, int64_t n)
{
    if (seq >= im->seq_rows_cap) {
        size_t ncap = im->seq_rows_cap ? im->seq_rows_cap * 2 : 256;
        while (ncap <= seq)
            ncap *= 2;
        int64_t *p = realloc(im->seq_rows, ncap * sizeof *p);
        if (!p)
            return false;
        memset(p + im->seq_rows_cap, 0, (ncap - im->seq_rows_cap) * sizeof *p);
        im->seq_rows = p;
        im->seq_rows_cap = ncap;
    }
    im->seq_rows[seq] = n;
    return true;
}

/* Receives one answer of the calls in flight. 0, or an exit status (transport failure). */
static int collect_one(struct importer *im)
{
    struct tally_reply *r;
    int err = tally_recv(im->cli->client, &r);
    if (err)
        return report_transport(im->cli, err);
    struct flight *f = NULL;
    if (r->msgid >= IMPORT_MSGID0 && r->msgid - IMPORT_MSGID0 < IMPORT_INFLIGHT &&
        im->flights[r->msgid - IMPORT_MSGID0].busy)
        f = &im->flights[r->msgid - IMPORT_MSGID0];
    if (!f && r->msgid == 0 && r->err != 0) {
        /* A connection-level error: the connection ends, no other answer comes. It is reported
         * as the answer of the oldest call in flight, as a call sent alone reports it. */
        for (int i = 0; i < IMPORT_INFLIGHT; i++)
            if (im->flights[i].busy && (!f || im->flights[i].seq < f->seq))
                f = &im->flights[i];
        for (int i = 0; i < IMPORT_INFLIGHT; i++)
            if (&im->flights[i] != f && im->flights[i].busy) {
                im->flights[i].busy = false;
                im->inflight--;
            }
    }
    if (!f) {
        tally_reply_free(r); /* not ours */
        return 0;
    }
    f->busy = false;
    im->inflight--;
    if (r->err) {
        if (!im->refused || f->seq < im->refused_seq) {
            /* the first refused call in the file's order is the one reported */
            tally_reply_free(im->refused);
            im->refused = r;
            im->refused_seq = f->seq;
            struct batch t = im->refused_b;
            im->refused_b = f->b;
            f->b = t;
        } else {
            tally_reply_free(r);
        }
        batch_reset(&f->b);
        return 0;
    }
    int64_t n = 0, ins = 0, upd = 0;
    get_int(&r->result, "rows", &n);
    get_int(&r->result, "inserted", &ins);
    get_int(&r->result, "updated", &upd);
    tally_reply_free(r);
    if (!note_seq_rows(im, f->seq, n))
        return import_oom(im);
    im->rows += n;
    im->inserted += ins;
    im->updated += upd;
    im->batches++;
    batch_reset(&f->b);
    if (!im->refused)
        import_progress(im);
    return 0;
}

/* Waits for every call in flight; then the exit status of the first refused one, if any. */
static int import_drain(struct importer *im)
{
    while (im->inflight > 0) {
        int rc = collect_one(im);
        if (rc)
            return rc;
    }
    if (!im->refused)
        return 0;
    im->rows_before = 0;
    for (uint64_t q = 0; q < im->refused_seq && q < im->seq_rows_cap; q++)
        im->rows_before += im->seq_rows[q];
    return report_refused(im, im->refused, &im->refused_b);
}

/*
 * Sends the rows of b as one import call, with up to IMPORT_INFLIGHT calls in flight: tallyd
 * applies them in order, each all or nothing. A refused call stops the sending; the calls in
 * flight are answered, and the first refused one in the file's order is reported as it would
 * have been alone (import_drain), with the rows of the calls before it. b is left empty.
 */
static int send_batch(struct importer *im, struct batch *b)
{
    if (b->nrows == 0)
        return 0;
    if (im->refused)
        return import_drain(im);
    int slot = -1;
    while (slot < 0) {
        for (int i = 0; i < IMPORT_INFLIGHT && slot < 0; i++)
            if (!im->flights[i].busy)
                slot = i;
        if (slot < 0) {
            int rc = collect_one(im);
            if (rc)
                return rc;
            if (im->refused)
                return import_drain(im);
        }
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mp_pack_strz(&pk, "kind");
    mp_pack_strz(&pk, im->kind->name);
    mp_pack_strz(&pk, "rows");
    msgpack_pack_array(&pk, b->nrows);
    msgpack_sbuffer_write(&sb, b->rows.data, b->rows.size);
    struct flight *f = &im->flights[slot];
    int err =
        tally_send(im->cli->client, IMPORT_MSGID0 + (uint32_t)slot, "import", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (err) {
        struct tally_reply *r;
        if (err == TALLY_E_IO && tally_farewell(im->cli->client, &r) == 0) {
            /* tallyd said why it closed the connection (overloaded): this call's answer, as
             * a call sent alone reports it; no other answer comes. */
            for (int i = 0; i < IMPORT_INFLIGHT; i++)
                im->flights[i].busy = false;
            im->inflight = 0;
            tally_reply_free(im->refused);
            im->refused = r;
            im->refused_seq = im->next_seq++;
            struct batch t = im->refused_b;
            im->refused_b = *b;
            *b = t;
            batch_reset(b);
            return import_drain(im);
        }
        return report_transport(im->cli, err);
    }
    /* The slot takes b's rows; b gets the slot's emptied buffers. */
    struct batch t = f->b;
    f->b = *b;
    *b = t;
    batch_reset(b);
    f->seq = im->next_seq++;
    f->busy = true;
    im->inflight++;
    return 0;
}

/* warehouses, catalog, stock: streamed, IMPORT_BATCH_ROWS rows (or bytes) per call. */
static int import_stream(struct importer *im)
{
    struct batch b = {0};
    int rc = 0, r;
    msgpack_sbuffer_init(&b.rows);
    while (rc == 0 && (r = csv_read(im->csv)) > 0) {
        rc = pack_row(im, &b);
        if (rc == 0 && (b.nrows == IMPORT_BATCH_ROWS || b.rows.size >= IMPORT_BATCH_BYTES))
            rc = send_batch(im, &b);
    }
    if (rc == 0 && r < 0)
        rc = import_file_error(im, csv_reader_error_line(im->csv), "%s", csv_reader_error(im->csv));
    if (rc == 0)
        rc = send_batch(im, &b);
    if (rc == 0)
        rc = import_drain(im);
    batch_destroy(&b);
    return rc;
}

static size_t hash_str(const char *s)
{
    size_t h = 14695981039346656037u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* The group for `key`, created when new. NULL on OOM. */
static struct group *group_for(struct importer *im, const char *key)
{
    if (im->ngroups && strcmp(im->groups[im->ngroups - 1].key, key) == 0)
        return &im->groups[im->ngroups - 1]; /* the usual case: rows of an order together */
    if (im->ngroups * 2 >= im->index_cap) {
        size_t ncap = im->index_cap ? im->index_cap * 2 : 1024;
        size_t *idx = calloc(ncap, sizeof *idx);
        if (!idx)
            return NULL;
        for (size_t g = 0; g < im->ngroups; g++) {
            size_t h = hash_str(im->groups[g].key) & (ncap - 1);
            while (idx[h])
                h = (h + 1) & (ncap - 1);
            idx[h] = g + 1;
        }
        free(im->index);
        im->index = idx;
        im->index_cap = ncap;
    }
    size_t h = hash_str(key) & (im->index_cap - 1);
    for (; im->index[h]; h = (h + 1) & (im->index_cap - 1))
        if (strcmp(im->groups[im->index[h] - 1].key, key) == 0)
            return &im->groups[im->index[h] - 1];
    if (im->ngroups == im->groups_cap) {
        size_t ncap = im->groups_cap ? im->groups_cap * 2 : 256;
        struct group *g = realloc(im->groups, ncap * sizeof *g);
        if (!g)
            return NULL;
        im->groups = g;
        im->groups_cap = ncap;
    }
    struct group *g = &im->groups[im->ngroups];
    memset(g, 0, sizeof *g);
    if (!(g->key = strdup(key)))
        return NULL;
    msgpack_sbuffer_init(&g->b.rows);
    im->index[h] = ++im->ngroups;
    return g;
}

/*
 * orders: every row of one order_id goes in the same call, so an order is imported whole even
 * when its rows are not next to each other in the file. The file is read first, grouped by
 * order_id in order of first appearance, then sent in calls of whole orders (at most
 * IMPORT_BATCH_ROWS rows, unless one order alone has more; never more than TALLY_MAX_PAGE).
 */
static int import_grouped(struct importer *im)
{
    int rc = 0, r;
    while (rc == 0 && (r = csv_read(im->csv)) > 0) {
        const char *key = im->group_col >= 0 ? csv_field(im->csv, (size_t)im->group_col, NULL) : "";
        struct group *g = group_for(im, key);
        if (!g)
            return import_oom(im);
        rc = pack_row(im, &g->b);
        if (rc == 0 && g->b.nrows > TALLY_MAX_PAGE)
            return import_file_error(im, g->b.lines[0],
                                     "order '%s' has more than %d rows; one import call takes "
                                     "at most %d",
                                     g->key, TALLY_MAX_PAGE, TALLY_MAX_PAGE);
    }
    if (rc)
        return rc;
    if (r < 0)
        return import_file_error(im, csv_reader_error_line(im->csv), "%s",
                                 csv_reader_error(im->csv));
    struct batch b = {0};
    msgpack_sbuffer_init(&b.rows);
    for (size_t i = 0; i < im->ngroups && rc == 0; i++) {
        const struct batch *g = &im->groups[i].b;
        if (b.nrows && (b.nrows + g->nrows > IMPORT_BATCH_ROWS ||
                        b.rows.size + g->rows.size > IMPORT_BATCH_BYTES))
            rc = send_batch(im, &b);
        if (rc == 0 && !batch_append(&b, g))
            rc = import_oom(im);
    }
    if (rc == 0)
        rc = send_batch(im, &b);
    if (rc == 0)
        rc = import_drain(im);
    batch_destroy(&b);
    return rc;
}

static void importer_free(struct importer *im)
{
    for (size_t i = 0; im->header && i < im->ncols; i++)
        free(im->header[i]);
    free(im->header);
    for (size_t i = 0; i < im->ngroups; i++) {
        free(im->groups[i].key);
        batch_destroy(&im->groups[i].b);
    }
    free(im->groups);
    free(im->index);
    for (int i = 0; i < IMPORT_INFLIGHT; i++)
        batch_destroy(&im->flights[i].b);
    batch_destroy(&im->refused_b);
    tally_reply_free(im->refused);
    free(im->seq_rows);
    csv_reader_free(im->csv);
}

static int import_report(struct importer *im)
{
    progress_clear(im);
    if (im->cli->json) {
        printf("{\"kind\":\"%s\",\"file\":", im->kind->name);
        json_write_str(stdout, im->file, strlen(im->file));
        printf(",\"rows\":%" PRId64 ",\"inserted\":%" PRId64 ",\"updated\":%" PRId64
               ",\"calls\":%d}\n",
               im->rows, im->inserted, im->updated, im->batches);
    } else {
        printf("%s: imported %" PRId64 " row%s (%" PRId64 " inserted, %" PRId64 " updated)\n",
               im->kind->name, im->rows, im->rows == 1 ? "" : "s", im->inserted, im->updated);
    }
    return EXIT_OK;
}

static int run_import(struct cli *cli, const struct args *a)
{
    struct importer im = {.cli = cli, .file = a->pos[1]};
    for (size_t i = 0; i < sizeof import_kinds / sizeof import_kinds[0]; i++)
        if (strcmp(import_kinds[i].name, a->pos[0]) == 0)
            im.kind = &import_kinds[i];
    if (!im.kind)
        return usage_error(cli, "KIND must be warehouses, catalog, stock or orders, not '%s'",
                           a->pos[0]);
    bool use_stdin = strcmp(im.file, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(im.file, "rb");
    if (!f) {
        int e = errno;
        fprintf(stderr, "tally: cannot open %s: %s\n", im.file, strerror(e));
        if (cli->json)
            json_error_doc("invalid_input", strerror(e), im.file, 0);
        return EXIT_USAGE;
    }
    if (use_stdin)
        im.file = "(stdin)";
    im.csv = csv_reader_new(f);
    int rc = im.csv ? import_header(&im) : import_oom(&im);
    if (rc == 0)
        rc = cli_connect(cli); /* after the header: a wrong file is reported without tallyd */
    if (rc == 0)
        rc = im.group_col >= 0 ? import_grouped(&im) : import_stream(&im);
    if (rc == 0)
        rc = import_report(&im);
    importer_free(&im);
    if (!use_stdin)
        fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The command table and help                                                                 */

static int run_help(struct cli *cli, const struct args *a);

/* ------------------------------------------------------------------------------------------ */
/* sync, outbox retry / discard, watch                                                        */

static bool stream_matches(const msgpack_object *st, const char *filter)
{
    char name[128];
    return !filter || (get_str(st, "name", name, sizeof name) && strstr(name, filter));
}

/* Sums the matching streams' progress; returns how many are still in a round. */
static int sync_progress(const msgpack_object *ups, const char *filter, int64_t *rows,
                         int64_t *pages, int64_t *total, int64_t *rate)
{
    int running = 0;
    *rows = *pages = *rate = 0;
    *total = 0;
    for (uint32_t i = 0; ups && i < ups->via.array.size; i++) {
        const msgpack_object *streams = get_array(&ups->via.array.ptr[i], "streams");
        for (uint32_t j = 0; streams && j < streams->via.array.size; j++) {
            const msgpack_object *st = &streams->via.array.ptr[j];
            int64_t v;
            if (!stream_matches(st, filter) || !get_bool(st, "in_round"))
                continue;
            running++;
            if (get_int(st, "round_rows", &v))
                *rows += v;
            if (get_int(st, "round_pages", &v))
                *pages += v;
            if (get_int(st, "rate", &v))
                *rate += v;
            if (*total >= 0 && get_int(st, "round_total", &v) && v >= 0)
                *total += v;
            else
                *total = -1;
        }
    }
    return running;
}

static int run_sync(struct cli *cli, const struct args *a)
{
    const char *filter = a->npos > 0 ? a->pos[0] : NULL;
    int64_t timeout_s = 0;
    if (a->set[O_TIMEOUT] && !parse_positive(a->val[O_TIMEOUT], &timeout_s)) {
        fprintf(stderr, "tally: --timeout needs a number of seconds\n");
        return EXIT_USAGE;
    }
    const struct kv p[] = {kv_str("stream", filter)};
    struct tally_reply *r;
    int rc = cli_call(cli, "sync", p, 1, &r);
    if (rc)
        return rc;
    int64_t asked = 0;
    get_int(&r->result, "streams", &asked);
    tally_reply_free(r);
    if (!a->set[O_WAIT]) {
        if (cli->json)
            printf("{\"streams\":%" PRId64 "}\n", asked);
        else
            printf("asked %" PRId64 " stream(s) for a round\n", asked);
        return EXIT_OK;
    }
    bool tty = !cli->json && isatty(STDOUT_FILENO);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (timeout_s && now.tv_sec - t0.tv_sec >= timeout_s) {
            if (tty)
                printf("\n");
            fprintf(stderr, "tally: the rounds did not finish within %" PRId64 " s\n", timeout_s);
            return EXIT_TRANSPORT;
        }
        /* Give the daemon a moment to start the rounds it was asked for. */
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL);
        rc = cli_call(cli, "status", NULL, 0, &r);
        if (rc)
            return rc;
        const msgpack_object *ups = get_array(&r->result, "upstreams");
        int64_t rows, pages, total, rate;
        int running = sync_progress(ups, filter, &rows, &pages, &total, &rate);
        if (running == 0) {
            if (tty)
                printf("\r\033[K");
            int failed = 0;
            if (cli->json) {
                print_json(ups);
            } else {
                for (uint32_t i = 0; ups && i < ups->via.array.size; i++) {
                    const msgpack_object *streams = get_array(&ups->via.array.ptr[i], "streams");
                    for (uint32_t j = 0; streams && j < streams->via.array.size; j++) {
                        const msgpack_object *st = &streams->via.array.ptr[j];
                        char name[128], err[300];
                        int64_t n = 0;
                        if (!stream_matches(st, filter))
                            continue;
                        get_str(st, "name", name, sizeof name);
                        get_int(st, "last_round_rows", &n);
                        bool e = get_str(st, "last_error", err, sizeof err);
                        failed += e;
                        printf("%-28s %10" PRId64 " rows%s%s\n", name, n, e ? "  error: " : "",
                               e ? err : "");
                    }
                }
            }
            tally_reply_free(r);
            if (failed) {
                fprintf(stderr, "tally: %d stream(s) ended with an error\n", failed);
                return EXIT_SERVER;
            }
            return EXIT_OK;
        }
        if (tty) {
            double secs =
                (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
            printf("\r\033[K%d stream(s) syncing: %" PRId64 " pages, %" PRId64 " rows, %" PRId64
                   " rows/s",
                   running, pages, rows, rate);
            if (total > 0 && rate > 0 && rows <= total)
                printf(", %.0f%%, about %" PRId64 " s left", 100.0 * (double)rows / (double)total,
                       (total - rows) / rate);
            printf(" (%.0f s)", secs);
            fflush(stdout);
        }
        tally_reply_free(r);
    }
}

static int outbox_action(struct cli *cli, const struct args *a, const char *method)
{
    int64_t id;
    if (!parse_positive(a->pos[0], &id)) {
        fprintf(stderr, "tally: ID must be an outbox row number (see tally outbox)\n");
        return EXIT_USAGE;
    }
    const struct kv p[] = {kv_int("id", id, true), kv_str("reason", a->val[O_REASON])};
    struct tally_reply *r;
    int rc = cli_call(cli, method, p, 2, &r);
    if (rc)
        return rc;
    if (cli->json) {
        rc = print_json(&r->result);
    } else {
        char state[32];
        printf("outbox row %" PRId64 ": %s\n", id,
               get_str(&r->result, "state", state, sizeof state) ? state : "?");
    }
    tally_reply_free(r);
    return rc;
}

static int run_outbox_retry(struct cli *cli, const struct args *a)
{
    return outbox_action(cli, a, "outbox.retry");
}

static int run_outbox_discard(struct cli *cli, const struct args *a)
{
    return outbox_action(cli, a, "outbox.discard");
}

static void on_watch_signal(int sig)
{
    (void)sig;
    _exit(EXIT_OK);
}

/*
 * An exception event, the way an operator reads it:
 * "14:02:11 exception 7 out_of_stock open order 8100012345 sku KX-2: no warehouse ... (deadline
 * in 23h)".
 */
static void print_exception_event(const msgpack_object *ev, const char *when)
{
    static const char *const refs[][2] = {
        {"order_id", "order"}, {"sku", "sku"}, {"warehouse", "warehouse"}};
    char kind[64], state[32], v[1100];
    int64_t id, deadline;
    get_str(ev, "kind", kind, sizeof kind);
    get_str(ev, "state", state, sizeof state);
    printf("%s exception ", when);
    if (get_int(ev, "id", &id))
        printf("%" PRId64 " ", id);
    out_text(stdout, kind, strlen(kind));
    fputc(' ', stdout);
    out_text(stdout, state, strlen(state));
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        if (!get_str(ev, refs[i][0], v, sizeof v))
            continue;
        printf(" %s ", refs[i][1]);
        out_text(stdout, v, strlen(v));
    }
    if (get_str(ev, "message", v, sizeof v)) {
        fputs(": ", stdout);
        out_text(stdout, v, strlen(v));
    }
    if (strcmp(state, "resolved") != 0 && get_int(ev, "deadline", &deadline)) {
        fmt_deadline(v, sizeof v, deadline, (int64_t)time(NULL));
        printf(" (deadline %s)", v);
    }
    fputc('\n', stdout);
}

/* One event, human form: "HH:MM:SS type key=value ...". */
static void print_event(const msgpack_object *ev)
{
    char type[32] = "?", when[32] = "";
    int64_t at;
    get_str(ev, "type", type, sizeof type);
    if (get_int(ev, "at", &at)) {
        time_t tt = (time_t)at;
        struct tm tm;
        localtime_r(&tt, &tm);
        strftime(when, sizeof when, "%H:%M:%S", &tm);
    }
    if (strcmp(type, "exception") == 0) {
        print_exception_event(ev, when);
        return;
    }
    printf("%s %s", when, type);
    for (uint32_t i = 0; ev->type == MSGPACK_OBJECT_MAP && i < ev->via.map.size; i++) {
        const msgpack_object *k = &ev->via.map.ptr[i].key, *v = &ev->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR ||
            (k->via.str.size == 4 && !memcmp(k->via.str.ptr, "type", 4)) ||
            (k->via.str.size == 2 && !memcmp(k->via.str.ptr, "at", 2)))
            continue;
        printf(" %.*s=", (int)k->via.str.size, k->via.str.ptr);
        if (v->type == MSGPACK_OBJECT_STR)
            printf("%.*s", (int)v->via.str.size, v->via.str.ptr);
        else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            printf("%" PRIu64, v->via.u64);
        else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            printf("%" PRId64, v->via.i64);
        else
            printf("-");
    }
    printf("\n");
}

static int run_watch(struct cli *cli, const struct args *a)
{
    (void)a;
    struct tally_reply *r;
    int rc = cli_call(cli, "watch", NULL, 0, &r);
    if (rc)
        return rc;
    tally_reply_free(r);
    signal(SIGINT, on_watch_signal);
    signal(SIGTERM, on_watch_signal);
    if (!cli->json) {
        printf("watching (sync, low_stock, order, exception); Ctrl-C to stop\n");
        fflush(stdout);
    }
    for (;;) {
        int e = tally_recv_notification(cli->client, -1, &r);
        if (e) {
            fprintf(stderr, "tally: %s\n", tally_client_errmsg(cli->client));
            return EXIT_TRANSPORT;
        }
        if (cli->json)
            print_json(&r->result);
        else
            print_event(&r->result);
        fflush(stdout);
        tally_reply_free(r);
    }
}

static const struct command commands[] = {
    {"status",
     run_status,
     0,
     0,
     {NULL},
     "daemon, replica and outbox health at a glance",
     "Shows the station, the daemon's uptime, the replica's size and contents, the outbox\n"
     "(writes waiting to reach the warehouses and the marketplace) and each upstream link:\n"
     "its KIND (tally, goodcang, fourpx, aliexpress) and CAPABILITIES, what the station may\n"
     "ask of it (movements, transfer_out, transfer_in, inbound_notice, outbound, stock_log).\n"
     "COORDINATION says whether the station makes the account-wide decisions (allocating\n"
     "orders, publishing marketplace stock) now, its mark, and why not: not the coordinator,\n"
     "waiting for the first read of a warehouse's outbound orders, or another coordinator's\n"
     "mark seen (a `coordinator` exception: set coordinator = false in this station's config\n"
     "and restart, or, once the other station no longer coordinates, tally exceptions\n"
     "resolve ID).",
     "tally status"},
    {"sku",
     run_sku,
     0,
     0,
     {"SKU", NULL},
     "one SKU from the catalog",
     "Shows a SKU's title, product, attributes (colour, size...), price and weight.",
     "tally sku TS-RED-M"},
    {"search",
     run_search,
     OPTS_PAGE,
     0,
     {"TEXT", NULL},
     "find SKUs by code prefix or title",
     "Lists SKUs whose code starts with TEXT or whose title or product title contains it\n"
     "(ASCII case-insensitive), ordered by SKU code.",
     "tally search t-shirt --limit 20"},
    {"stock",
     run_stock,
     0,
     0,
     {"SKU", NULL},
     "stock of one SKU in every warehouse",
     "Shows, per warehouse: the last upstream figure (SNAPSHOT), local movements not yet\n"
     "confirmed upstream (PENDING), ON_HAND = SNAPSHOT + PENDING, RESERVED for open orders\n"
     "and returns awaiting inspection, AVAILABLE = ON_HAND - RESERVED - safety stock, OUT when\n"
     "nothing is available and LOW when available is at or below the threshold, INBOUND the\n"
     "goods on their way in as the warehouse last reported them (never counted as on hand,\n"
     "available or published; - when never reported); then the totals and what may be\n"
     "published to the marketplace.\n"
     "(A SKU named \"list\" or \"set\" is shown with: tally stock -- list)",
     "tally stock TS-RED-M"},
    {"stock list",
     run_stock_list,
     OPT(O_WAREHOUSE) | OPT(O_LOW) | OPTS_PAGE,
     0,
     {NULL},
     "stock rows by SKU and warehouse",
     "Lists stock rows ordered by SKU and warehouse, one page at a time (--all for every\n"
     "page). SOLD is the units shipped from that warehouse in the daemon's sales window\n"
     "([stock] sales_window_days); SUGGEST, shown when stock runs short, is how many units to\n"
     "receive for [stock] restock_cover_days of cover at that rate. With --low, only the\n"
     "rows that are OUT (nothing available, whatever the threshold) or LOW (available at or\n"
     "below the threshold), in catalog order.",
     "tally stock list --warehouse ES-MAD --low"},
    {"stock set",
     run_stock_set,
     OPT(O_WAREHOUSE) | OPT(O_SAFETY) | OPT(O_THRESHOLD) | OPT(O_COVER_DAYS),
     OPT(O_WAREHOUSE),
     {"SKU", NULL},
     "set a SKU's safety stock and low threshold",
     "Sets the stock rules of SKU at one warehouse (at least one option): --safety units are\n"
     "never offered to the marketplace; the row is LOW when available stock is at or below\n"
     "--threshold units, or, with --cover-days D, below D days of sales at the recent rate\n"
     "(the threshold then follows the sales). Prints the row as tally stock list does.",
     "tally stock set TS-RED-M --warehouse ES-MAD --safety 2 --cover-days 7"},
    {"receive",
     run_move,
     OPT(O_WAREHOUSE) | OPTS_MOVE,
     OPT(O_WAREHOUSE),
     {"SKU", "QTY", NULL},
     "record goods arriving at a warehouse",
     "Records QTY (> 0) units of SKU received at the warehouse. The movement is stored on this\n"
     "station first and sent to the warehouse's system later. Refused (exit 5) for a\n"
     "third-party warehouse (kind goodcang or fourpx), which keeps its own stock: announce the\n"
     "goods there with tally inbound create.",
     "tally receive TS-RED-M 24 --warehouse ES-MAD --ref PO-7731 --id rcv-PO-7731-1"},
    {"pick",
     run_move,
     OPT(O_WAREHOUSE) | OPTS_MOVE,
     OPT(O_WAREHOUSE),
     {"SKU", "QTY", NULL},
     "record goods taken out for an order",
     "Records QTY (> 0) units of SKU picked at the warehouse. Refused with insufficient_stock\n"
     "if on-hand stock would go below zero, unless --force --reason is given. To ship an\n"
     "order, use tally ship: it records the picks with the shipment.",
     "tally pick TS-RED-M 2 --warehouse ES-MAD --ref 8100012345"},
    {"return",
     run_move,
     OPT(O_WAREHOUSE) | OPTS_MOVE,
     OPT(O_WAREHOUSE),
     {"SKU", "QTY", NULL},
     "record goods returned straight to sale",
     "Records QTY (> 0) units of SKU returned to sellable stock at the warehouse: a plain\n"
     "movement, available for sale at once. For a buyer's parcel that must be inspected first,\n"
     "use tally returns receive: it holds the units out of sale until tally returns inspect.",
     "tally return TS-RED-M 1 --warehouse ES-MAD --ref RMA-118"},
    {"returns",
     run_returns,
     OPT(O_RET_STATE) | OPTS_PAGE,
     0,
     {NULL},
     "returned parcels, received and inspected",
     "Lists returns recorded with tally returns receive, in id order: 'received' ones hold\n"
     "their units out of sale until inspected; 'inspected' ones show how many were sellable\n"
     "and how many damaged.",
     "tally returns --state received"},
    {"returns receive",
     run_returns_receive,
     OPT(O_WAREHOUSE) | OPT(O_ORDER) | OPT(O_RET_REASON) | OPT(O_RET_ID),
     OPT(O_WAREHOUSE),
     {"SKU", "QTY", NULL},
     "record a returned parcel, held until inspected",
     "Records QTY (> 0) units of SKU back at the warehouse (a return movement, sent to the\n"
     "warehouse) and holds them out of sale: they count as RESERVED until tally returns\n"
     "inspect says how many are sellable. (tally return SKU QTY puts units straight back on\n"
     "sale instead.) Give --id, e.g. the RMA number, when the command may be retried.",
     "tally returns receive TS-RED-M 2 --warehouse ES-MAD --order 8100012345 --id RMA-118"},
    {"returns inspect",
     run_returns_inspect,
     OPT(O_SELLABLE) | OPT(O_DAMAGED) | OPT(O_NOTE),
     OPT(O_SELLABLE) | OPT(O_DAMAGED),
     {"RETURN_ID", NULL},
     "end a return's hold: sellable or damaged",
     "Ends the hold of a received return: --sellable units go back on sale, --damaged units\n"
     "are written off (an adjust movement sent to the warehouse). The two must add up to the\n"
     "return's quantity.",
     "tally returns inspect RMA-118 --sellable 1 --damaged 1 --note \"seam torn\""},
    {"adjust",
     run_move,
     OPT(O_WAREHOUSE) | OPTS_MOVE,
     OPT(O_WAREHOUSE) | OPT(O_REASON),
     {"SKU", "DELTA", NULL},
     "correct stock by a signed amount",
     "Records a correction of DELTA units (signed, not 0: -3 takes three away) with a reason.",
     "tally adjust TS-RED-M -3 --warehouse ES-MAD --reason \"damaged in storage\""},
    {"count",
     run_move,
     OPT(O_WAREHOUSE) | OPTS_MOVE,
     OPT(O_WAREHOUSE),
     {"SKU", "COUNTED", NULL},
     "record a stock count",
     "Records that COUNTED (>= 0) units were counted. It is stored as the difference from the\n"
     "local figure at that moment, so a count made offline does not erase picks made\n"
     "elsewhere.",
     "tally count TS-RED-M 17 --warehouse ES-MAD --id count-2024-11-24-A3"},
    {"transfer",
     run_move,
     OPT(O_FROM) | OPT(O_TO) | OPTS_MOVE,
     OPT(O_FROM) | OPT(O_TO),
     {"SKU", "QTY", NULL},
     "move goods between warehouses",
     "Records QTY (> 0) units of SKU leaving one warehouse and arriving at another. Into a\n"
     "third-party warehouse (Goodcang, 4PX: it keeps its own stock), the station records the\n"
     "units leaving --from and announces them to --to with an inbound notice (see tally\n"
     "inbound), sent once --from has taken the transfer (discarding that leg discards the\n"
     "notice); they count there once its feed shows them received. Out of a third-party\n"
     "warehouse it is refused: that warehouse ships it on an outbound order of its own.",
     "tally transfer TS-RED-M 5 --from ES-MAD --to PL-WAW"},
    {"inbound create",
     run_inbound_create,
     OPT(O_WAREHOUSE) | OPT(O_IN_SKU) | OPT(O_IN_QTY) | OPT(O_ETA) | OPT(O_IN_REF) | OPT(O_NOTE) |
         OPT(O_IN_ID),
     OPT(O_WAREHOUSE) | OPT(O_IN_SKU) | OPT(O_IN_QTY),
     {NULL},
     "announce goods coming in to a third-party warehouse",
     "Records an inbound notice for a third-party warehouse (kind goodcang or fourpx: it keeps\n"
     "its own stock, so the station cannot record a receive there) and sends it to the\n"
     "warehouse's system, which receives the goods against it; the units count in its stock\n"
     "once its feed shows them received. One --sku SKU --qty N pair per line. The notice id\n"
     "(--id, default made here) makes a repeat safe. Refused for a tally warehouse: record\n"
     "goods arriving there with tally receive.",
     "tally inbound create --warehouse UK-GC --sku TS-RED-M --qty 120 --sku MUG-1 --qty 40 \\\n"
     "      --eta 2024-12-02 --ref PO-7731"},
    {"inbound",
     run_inbound_list,
     OPT(O_WAREHOUSE) | OPTS_PAGE,
     0,
     {NULL},
     "inbound notices and their state",
     "Lists inbound notices (made by tally inbound create or by a transfer into a third-party\n"
     "warehouse), oldest first: pending (not yet accepted by the warehouse), sent, refused\n"
     "(the warehouse refused it: see LAST_ERROR and tally outbox --state held) or discarded.",
     "tally inbound --warehouse UK-GC"},
    {"inbound list",
     run_inbound_list,
     OPT(O_WAREHOUSE) | OPTS_PAGE,
     0,
     {NULL},
     "inbound notices (the same as tally inbound)",
     "Lists inbound notices, oldest first, as tally inbound does.",
     "tally inbound list --warehouse UK-GC"},
    {"orders",
     run_orders,
     OPT(O_STATUS) | OPT(O_FSTATE) | OPT(O_WAREHOUSE) | OPT(O_DUE) | OPTS_PAGE,
     0,
     {NULL},
     "orders, oldest first; by urgency with --due",
     "Lists orders ordered by creation time, optionally only those in one marketplace status,\n"
     "one fulfilment state (FSTATE) or allocated to one warehouse. With --due, only open\n"
     "orders (not yet shipped or cancelled), what must leave first on top: highest PRIORITY,\n"
     "then earliest SHIP_BY. SHIP_BY is the promised handling deadline in local time, marked\n"
     "OVERDUE when it has passed and the goods have not left.",
     "tally orders --due --warehouse ES-MAD"},
    {"orders show",
     run_orders_show,
     0,
     0,
     {"ORDER_ID", NULL},
     "one order: allocation, shipments, exceptions",
     "Shows an order: marketplace status and fulfilment state, priority and why, dates,\n"
     "totals, lines, the allocation (the rule that chose the warehouse, why, and each part's\n"
     "state), shipments (and whether the marketplace has them) and open exceptions. The\n"
     "buyer's address is shown to writers only, and not at all once purged.",
     "tally orders show 8100012345"},
    {"orders allocate",
     run_orders_allocate,
     OPT(O_RELEASE),
     0,
     {"ORDER_ID", NULL},
     "allocate an order to warehouses now",
     "Runs allocation for one order at once instead of waiting for the fulfilment pass (after\n"
     "receiving the missing stock, for instance). With --release, what is reserved and not\n"
     "shipped is released first and the order allocated again: for an order its warehouse\n"
     "cannot ship. If that warehouse's system already has the order (sent, picked), it is\n"
     "asked to cancel it first and left out for this order; the order is allocated again\n"
     "once the cancel is confirmed, never at two warehouses at once. Only the coordinator\n"
     "station allocates; an order that is shipped (even in part), cancelled or not paid, or\n"
     "whose warehouse refused the cancel, is refused (exit 5).",
     "tally orders allocate 8100012345 --release"},
    {"ship",
     run_ship,
     OPT(O_WAREHOUSE) | OPT(O_CARRIER) | OPT(O_TRACKING) | OPT(O_LINE) | OPT(O_SHIP_ID),
     OPT(O_WAREHOUSE) | OPT(O_CARRIER) | OPT(O_TRACKING),
     {"ORDER_ID", NULL},
     "record a shipment made at this station",
     "Records that the order's goods left the warehouse with a carrier and tracking number: in\n"
     "one transaction a pick per line (sent to the warehouse), the reservations consumed and\n"
     "the shipment, whose upload to the marketplace is queued in the outbox. Without --line,\n"
     "everything allocated to the warehouse and not yet shipped goes; with --line, only those\n"
     "lines (a part shipment). Warehouses with outbound fulfilment ship by themselves.",
     "tally ship 8100012345 --warehouse ES-MAD --carrier DHL --tracking JD0141234567 --line "
     "TS-RED-M=2"},
    {"exceptions",
     run_exceptions,
     OPT(O_EXC_STATE) | OPT(O_KIND) | OPT(O_ORDER) | OPTS_PAGE,
     0,
     {NULL},
     "what needs a person, soonest deadline first",
     "Lists exceptions (out of stock, bad address, payment held, ship-by near, warehouse\n"
     "problems, refused uploads, stock drift, cancelled after pick), by default the active\n"
     "ones (open and acknowledged), soonest DEADLINE first: each must be handled within 24 h,\n"
     "or by the order's ship-by if sooner. Then the counts over all exceptions. tallyd\n"
     "resolves an exception itself when its cause goes away.",
     "tally exceptions --kind out_of_stock"},
    {"exceptions ack",
     run_exceptions_ack,
     OPT(O_NOTE),
     0,
     {"ID", NULL},
     "say someone is on an exception",
     "Marks an open exception acknowledged, so others see it is being handled; it stays\n"
     "active, and its deadline still counts.",
     "tally exceptions ack 17 --note \"asked the buyer for the postcode\""},
    {"exceptions resolve",
     run_exceptions_resolve,
     OPT(O_NOTE),
     OPT(O_NOTE),
     {"ID", NULL},
     "close an exception, saying what was done",
     "Closes an exception with a note of what was done; your user name is recorded with it.",
     "tally exceptions resolve 17 --note \"address corrected with the buyer\""},
    {"promo check",
     run_promo_check,
     OPT(O_PROMO_SKUS) | OPT(O_MIN) | OPT(O_PER),
     OPT(O_PROMO_SKUS),
     {NULL},
     "check SKUs against a campaign's stock minimum",
     "Checks each listed SKU as the marketplace checks campaign entries: with --per sku, its\n"
     "product's cheapest SKU (the one the campaign shows) must have at least MIN units of\n"
     "marketplace-available stock; with --per product, all the product's SKUs together.\n"
     "FILE has one SKU per line, or SKU,MIN (CSV; a header line sku,min, blank lines and\n"
     "lines starting with # are skipped; '-' reads stdin). Lists of any length are checked\n"
     "1000 at a time. Exit 0 when every SKU passes, 5 when any is short or unknown.",
     "tally promo check --skus black-friday.csv --min 50"},
    {"report",
     run_report,
     OPT(O_DAY) | OPT(O_FROM_DAY) | OPT(O_TO_DAY) | OPT(O_SKUS_LIMIT) | OPT(O_CSV),
     0,
     {NULL},
     "sales, orders, SKUs and exceptions of a period",
     "Figures for local days, from the replica alone: sales per currency (orders created and\n"
     "not cancelled, units, GMV, average order value), orders created, cancelled and shipped\n"
     "with the on-time rate, SKUs by units sold (sell-through = sold / (sold + on hand),\n"
     "turnover = sold / average stock), and exceptions opened and resolved by kind. The period\n"
     "is --day D, or --from D1 --to D2 (both days included), or today. --csv prints each table\n"
     "as CSV after a line '# sales', '# orders', '# skus' or '# exceptions', tables separated\n"
     "by a blank line, amounts as plain decimals.",
     "tally report --from 2024-11-01 --to 2024-11-30 --csv > november.csv"},
    {"outbox",
     run_outbox,
     OPT(O_STATE) | OPTS_PAGE,
     0,
     {NULL},
     "writes waiting to go upstream",
     "Lists outbox rows in id order: each is one local write (a movement, a shipment, an\n"
     "outbound order, an inbound notice...) to be sent to an upstream exactly once. 'held'\n"
     "rows stopped on a permanent failure; LAST_ERROR says why.",
     "tally outbox --state held"},
    {"outbox retry",
     run_outbox_retry,
     0,
     0,
     {"ID", NULL},
     "send a held outbox row again now",
     "Makes the outbox row ID (see `tally outbox --state held`) due now: use it after fixing\n"
     "what the upstream refused (an unknown SKU, a missing warehouse...).",
     "tally outbox retry 42"},
    {"outbox discard",
     run_outbox_discard,
     OPT(O_REASON),
     OPT(O_REASON),
     {"ID", NULL},
     "give up on an outbox row",
     "Only for a row its upstream refused (held) or one never sent: the row is never sent. A\n"
     "discarded movement also leaves the local stock figures, since the warehouse will never\n"
     "apply it; a discarded outbound order is allocated to another warehouse. The reason is\n"
     "kept with the row.\n"
     "A row sent without an answer (lost answer, time-out, tallyd stopped) may have been\n"
     "applied, so it is refused (exit 5): it is retried until answered, then done or held. To\n"
     "move such an order, have its warehouse cancel it; to undo a movement, record the\n"
     "opposite one.",
     "tally outbox discard 42 --reason \"SKU retired at the warehouse\""},
    {"carriers",
     run_carriers,
     0,
     0,
     {NULL},
     "carriers and the marketplace's logistics services",
     "Shows how each carrier a warehouse ships with maps to a logistics service key of the\n"
     "marketplace ([carriers] and carrier.NAME in [warehouse X] of the config; WAREHOUSE *\n"
     "is the default), whether the marketplace lists that key, and the services as last\n"
     "pulled with their tracking number rules. A shipment whose carrier maps to no listed key,\n"
     "or whose number breaks the rule, is held before upload with an exception: fix the\n"
     "config, restart tallyd, then tally outbox retry.",
     "tally carriers"},
    {"sync",
     run_sync,
     OPT(O_WAIT) | OPT(O_TIMEOUT),
     0,
     {"[STREAM]", NULL},
     "pull from the upstreams now",
     "Asks for a round of every stream (or those whose name contains STREAM: inventory,\n"
     "wh:ES-MAD, mp:orders...) at once, overriding any retry wait. With --wait, shows progress\n"
     "(pages, rows, rate) until the rounds are done, then each stream's rows; exit 1 if one\n"
     "ended with an error.",
     "tally sync inventory --wait"},
    {"watch",
     run_watch,
     0,
     0,
     {NULL},
     "follow events as they happen",
     "Prints events until interrupted: sync (link up/down, rounds that brought rows),\n"
     "low_stock (a SKU at a warehouse fell to its threshold or ran out), order (a new order),\n"
     "exception (raised, or resolved by tallyd: its id, kind, state, order or SKU, message\n"
     "and deadline). With --json, one JSON object per line.",
     "tally watch --json"},
    {"purge",
     run_purge,
     OPT(O_OLDER_THAN) | OPT(O_DRY_RUN),
     0,
     {NULL},
     "erase buyers' personal data of old orders",
     "Erases the buyer's name, address, city, postcode and phone of orders finished or\n"
     "cancelled more than DAYS ago (and the ship-to of their requests still in the outbox);\n"
     "the orders, their lines and figures stay. tallyd does this by itself every hour with\n"
     "[privacy] retain_days; this runs it now. --dry-run only counts.",
     "tally purge --older-than 90 --dry-run"},
    {"import",
     run_import,
     0,
     0,
     {"KIND", "FILE", NULL},
     "seed the replica from a CSV file",
     "KIND is warehouses, catalog, stock or orders (import them in that order). FILE is CSV\n"
     "(RFC 4180; '-' reads stdin) whose header row names the columns:\n"
     "  warehouses  code, name, country, serves_marketplace, fulfilment (station: this\n"
     "              station ships with tally ship; outbound: the warehouse's system ships;\n"
     "              none: not used for orders)\n"
     "  catalog     sku, product_id, title, product_title, price_minor, currency, weight_g,\n"
     "              mp_sku_id, attributes (written color=red;size=M; '\\' escapes ; and =)\n"
     "  stock       sku, warehouse, on_hand, safety, threshold\n"
     "  orders      order_id, status, created_at, ship_by, country, currency, sku, qty,\n"
     "              price_minor, service, buyer_name, address, city, postcode, phone,\n"
     "              buyer_level\n"
     "Empty cells are left out (optional fields stay unset). Rows are sent 1000 per call, each\n"
     "call all-or-nothing, 8 calls in flight; an order's rows always travel together. Rows are\n"
     "upserts, so importing a file again is harmless. A refused row is reported with its file\n"
     "line; calls sent after the refused one may have been applied.",
     "tally import catalog catalog.csv"},
    {"help",
     run_help,
     0,
     0,
     {NULL},
     "this text, or one command's: tally help COMMAND",
     "Prints the list of commands, or the usage of one command.",
     "tally help stock"},
};

static const size_t ncommands = sizeof commands / sizeof commands[0];

static void print_usage_line(FILE *f, const struct command *c)
{
    fprintf(f, "tally %s", c->name);
    for (int i = 0; c->pos[i]; i++)
        fprintf(f, " %s", c->pos[i]);
    for (int o = 0; o < O_COUNT; o++) {
        if (!(c->opts & OPT(o)))
            continue;
        bool req = c->required & OPT(o);
        const struct option_spec *s = &option_specs[o];
        fprintf(f, " %s--%s%s%s%s%s", req ? "" : "[", s->name, s->arg ? " " : "",
                s->arg ? s->arg : "", req ? "" : "]", s->repeat ? "..." : "");
    }
    fputc('\n', f);
}

static void print_command_help(FILE *f, const struct command *c)
{
    fputs("Usage: ", f);
    print_usage_line(f, c);
    fprintf(f, "\n%s\n", c->text);
    fputs("\nOptions:\n", f);
    for (int o = 0; o < O_COUNT; o++) {
        if (!(c->opts & OPT(o)))
            continue;
        char opt[32];
        const struct option_spec *s = &option_specs[o];
        snprintf(opt, sizeof opt, "--%s%s%s", s->name, s->arg ? " " : "", s->arg ? s->arg : "");
        fprintf(f, "  %-18s %s%s\n", opt, s->help, (c->required & OPT(o)) ? " (required)" : "");
    }
    fprintf(f, "  %-18s %s\n", "--json", "print the result as one JSON document");
    fprintf(f, "  %-18s %s\n", "--help", "this text");
    fprintf(f, "\nExample:\n  %s\n", c->example);
    fputs("\nExit status: 0 success, 1 server error, 2 usage, 3 tallyd not running, 4 not found,\n"
          "5 refused, 6 forbidden, 7 transport failure (details: tally --help).\n",
          f);
}

static void print_main_help(FILE *f)
{
    fprintf(f, "Usage: tally [--socket PATH] [--timeout SECS] [--json] COMMAND [ARGS...]\n"
               "\n"
               "The station's client of tallyd. Queries are answered from the local replica;\n"
               "stock movements are recorded on this station and reach the warehouse later.\n"
               "tallyd allocates orders to warehouses by itself: see what must leave first with\n"
               "'tally orders --due', ship with 'tally ship', handle what needs a person with\n"
               "'tally exceptions', and follow the day with 'tally report'.\n"
               "\n"
               "Commands (tally help COMMAND: its options and an example):\n");
    for (size_t i = 0; i < ncommands; i++) {
        const struct command *c = &commands[i];
        char use[128];
        size_t off = 0;
        appendf(use, sizeof use, &off, "%s", c->name);
        for (int p = 0; c->pos[p]; p++)
            appendf(use, sizeof use, &off, " %s", c->pos[p]);
        for (int o = 0; o < O_COUNT; o++)
            if (c->required & OPT(o))
                appendf(use, sizeof use, &off, " --%s %s", option_specs[o].name,
                        option_specs[o].arg);
        if (off > 30)
            fprintf(f, "  %s\n  %-30s %s\n", use, "", c->summary);
        else
            fprintf(f, "  %-30s %s\n", use, c->summary);
    }
    fprintf(f,
            "\n"
            "Options (before or after the command):\n"
            "  --socket PATH   tallyd's socket (default: $TALLY_SOCKET, else %s)\n"
            "  --timeout SECS  how long to wait for each answer (default: $TALLY_TIMEOUT, else\n"
            "                  30; 0 waits forever)\n"
            "  --json          print the result as one JSON document on stdout; errors too,\n"
            "                  as {\"error\":{\"code\":...,\"message\":...}}\n"
            "  --help, -h      usage (of a command: tally COMMAND --help)\n"
            "  --version, -V   print the version\n"
            "\n"
            "Exit status:\n"
            "  0  success\n"
            "  1  a server error not listed below (internal, storage, disk_full, overloaded...)\n"
            "  2  usage error, or an input file that cannot be read or is not valid CSV\n"
            "  3  tallyd is not running (nothing listens on the socket)\n"
            "  4  not found (SKU, warehouse, order)\n"
            "  5  refused: invalid_params, insufficient_stock or conflict\n"
            "  6  forbidden: this user may not write (or may not open the socket)\n"
            "  7  transport or protocol failure: connection lost, timeout, malformed answer,\n"
            "     protocol version mismatch. A movement or return that got no answer names its\n"
            "     id (made here when none is given): run the same command again with --id ID,\n"
            "     and it is applied once whether or not the first one was recorded\n"
            "\n"
            "Errors go to stderr as \"tally: MESSAGE (CODE)\".\n"
            "Example: tally stock TS-RED-M --json\n",
            TALLY_DEFAULT_SOCKET);
}

/* `tally help [COMMAND [SUB]]`: every command whose name starts with the topic. */
static int help_topic(struct cli *cli, const char *topic)
{
    size_t n = strlen(topic);
    bool found = false;
    for (size_t i = 0; i < ncommands; i++) {
        const char *name = commands[i].name;
        if (strncmp(name, topic, n) != 0 || (name[n] != '\0' && name[n] != ' '))
            continue;
        if (found)
            fputs("\n", stdout);
        print_command_help(stdout, &commands[i]);
        found = true;
    }
    if (!found) {
        cli->cmd = NULL;
        return usage_error(cli, "no command '%s'", topic);
    }
    return EXIT_OK;
}

static int run_help(struct cli *cli, const struct args *a)
{
    (void)cli;
    (void)a;
    print_main_help(stdout);
    return EXIT_OK;
}

/* Finds the command named by argv[0] (and argv[1] for "stock list", "orders show"). */
static const struct command *find_command(int argc, char **argv, int *used)
{
    for (size_t i = 0; argc >= 2 && i < ncommands; i++) {
        const char *sp = strchr(commands[i].name, ' ');
        if (sp && strncmp(commands[i].name, argv[0], (size_t)(sp - commands[i].name)) == 0 &&
            argv[0][sp - commands[i].name] == '\0' && strcmp(sp + 1, argv[1]) == 0) {
            *used = 2;
            return &commands[i];
        }
    }
    for (size_t i = 0; i < ncommands; i++) {
        if (strcmp(commands[i].name, argv[0]) == 0) {
            *used = 1;
            return &commands[i];
        }
    }
    return NULL;
}

/*
 * "tally promo" alone, or "tally exceptions frob": name the commands that begin with that
 * word, which is what the user most likely meant.
 */
static int unknown_command(struct cli *cli, int argc, char **argv)
{
    char list[256];
    size_t off = 0, n = strlen(argv[0]);
    for (size_t i = 0; i < ncommands; i++)
        if (strncmp(commands[i].name, argv[0], n) == 0 && commands[i].name[n] == ' ')
            appendf(list, sizeof list, &off, "%stally %s", off ? ", " : "", commands[i].name);
    if (!off)
        return usage_error(cli, "unknown command '%s'", argv[0]);
    if (argc > 1)
        return usage_error(cli, "unknown command '%s %s' (did you mean %s?)", argv[0], argv[1],
                           list);
    return usage_error(cli, "'%s' needs a subcommand: %s", argv[0], list);
}

/* ------------------------------------------------------------------------------------------ */

static int run(struct cli *cli, int argc, char **argv)
{
    int i = 1;
    cli->timeout_s = -1;
    const char *env = getenv("TALLY_TIMEOUT");
    if (env && env[0] && set_timeout(cli, "TALLY_TIMEOUT", env))
        return EXIT_USAGE;
    for (; i < argc && looks_like_option(argv[i]); i++) {
        const char *s = argv[i];
        if (strcmp(s, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(s, "--json") == 0) {
            cli->json = true;
        } else if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            print_main_help(stdout);
            return EXIT_OK;
        } else if (strcmp(s, "--version") == 0 || strcmp(s, "-V") == 0) {
            printf("tally %s (protocol %d)\n", TALLY_VERSION, TALLY_PROTOCOL_VERSION);
            return EXIT_OK;
        } else if (strcmp(s, "--socket") == 0 && i + 1 < argc) {
            cli->socket_opt = argv[++i];
        } else if (strncmp(s, "--socket=", 9) == 0) {
            cli->socket_opt = s + 9;
        } else if (strcmp(s, "--socket") == 0) {
            return usage_error(cli, "--socket needs a PATH");
        } else if (strcmp(s, "--timeout") == 0 && i + 1 < argc) {
            if (set_timeout(cli, "--timeout", argv[++i]))
                return EXIT_USAGE;
        } else if (strncmp(s, "--timeout=", 10) == 0) {
            if (set_timeout(cli, "--timeout", s + 10))
                return EXIT_USAGE;
        } else if (strcmp(s, "--timeout") == 0) {
            return usage_error(cli, "--timeout needs SECONDS");
        } else {
            return usage_error(cli, "unknown option '%s'", s);
        }
    }
    if (i == argc) {
        fputs("Usage: tally [--socket PATH] [--timeout SECS] [--json] COMMAND [ARGS...]\n"
              "Try 'tally help' for the list of commands.\n",
              stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[i], "help") == 0 && i + 1 < argc) {
        char topic[64];
        snprintf(topic, sizeof topic, "%s%s%s", argv[i + 1], i + 2 < argc ? " " : "",
                 i + 2 < argc ? argv[i + 2] : "");
        return help_topic(cli, topic);
    }
    int used = 0;
    cli->cmd = find_command(argc - i, argv + i, &used);
    if (!cli->cmd)
        return unknown_command(cli, argc - i, argv + i);
    struct args a = {0};
    int rc = parse_args(cli, argc - i - used, argv + i + used, &a);
    if (rc == 0 && a.help)
        print_command_help(stdout, cli->cmd);
    else if (rc == 0)
        rc = check_args(cli, &a);
    if (rc == 0 && !a.help)
        rc = cli->cmd->run(cli, &a);
    free(a.lines);
    free(a.line_opts);
    return rc;
}

int main(int argc, char **argv)
{
    struct cli cli = {0};
    int rc = run(&cli, argc, argv);
    tally_client_free(cli.client);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tally: cannot write the output: %s\n", strerror(errno));
        if (rc == EXIT_OK)
            rc = EXIT_SERVER;
    }
    return rc;
}
