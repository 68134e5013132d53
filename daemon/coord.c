#include "coord.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "exceptions.h"
#include "log.h"
#include "store.h"
#include "tally/protocol.h"

#define ACK_REREAD_S 30 /* a resolution's time is read again after this long */
#define NAME_MAX_LEN 32

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static bool hex_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int coord_parse(const char *text, char *name, size_t cap, uint64_t *id)
{
    if (!text)
        return 0;
    size_t len = strnlen(text, 4096);
    /* The last '#' followed by exactly 16 hex digits (then the end or a non-name character),
     * preceded by 1 to 32 name characters. */
    for (size_t i = len; i-- > 0;) {
        if (text[i] != '#' || i + 17 > len)
            continue;
        bool ok = true;
        for (size_t k = 1; k <= 16 && ok; k++)
            ok = hex_char(text[i + k]);
        if (!ok || (i + 17 < len && (name_char(text[i + 17]) || text[i + 17] == '#')))
            continue;
        size_t b = i;
        while (b > 0 && name_char(text[b - 1]) && i - b < NAME_MAX_LEN)
            b--;
        if (b == i || (b > 0 && (name_char(text[b - 1]) || text[b - 1] == '#')))
            continue;
        uint64_t v = 0;
        for (size_t k = 1; k <= 16; k++) {
            char c = text[i + k];
            v = v << 4 | (uint64_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        if (v == 0)
            continue;
        snprintf(name, cap, "%.*s", (int)(i - b), text + b);
        *id = v;
        return 1;
    }
    return 0;
}

static void make_mark(struct tallyd *d)
{
    char name[NAME_MAX_LEN + 1];
    size_t n = 0;
    for (const char *p = d->cfg.station; *p && n < NAME_MAX_LEN; p++)
        name[n++] = name_char(*p) ? *p : '_';
    if (n == 0)
        name[n++] = '_';
    name[n] = 0;
    snprintf(d->coord.mark, sizeof d->coord.mark, "%s#%016" PRIx64, name, d->coord.id);
}

/* Reads the station id; without one (a unit test's replica), the mark stays "". */
static void load(struct tallyd *d)
{
    if (d->coord.loaded)
        return;
    int64_t id = store_count(d->store, "SELECT n FROM counters WHERE name = 'station_id'", 0);
    d->coord.loaded = true;
    d->coord.id = id > 0 ? (uint64_t)id : 0;
    if (d->coord.id)
        make_mark(d);
}

int coord_start(struct tallyd *d, char *err, size_t errlen)
{
    struct store *st = d->store;
    d->coord.loaded = false;
    load(d);
    if (d->coord.id == 0) {
        uint64_t v = 0;
        while (v == 0) {
            if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
                snprintf(err, errlen, "cannot make a station id: no random numbers");
                return TALLY_E_INTERNAL;
            }
            v &= INT64_MAX; /* a positive counter */
        }
        int r = store_begin(st);
        sqlite3_stmt *s = r ? NULL
                            : store_stmt(st, "INSERT OR IGNORE INTO counters(name, n)"
                                             " VALUES('station_id', ?1)");
        if (!s) {
            if (r == 0)
                store_rollback(st);
            snprintf(err, errlen, "cannot record the station id");
            return TALLY_E_STORAGE;
        }
        sqlite3_bind_int64(s, 1, (int64_t)v);
        int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE || store_commit(st) != 0) {
            if (rc != SQLITE_DONE)
                store_rollback(st);
            snprintf(err, errlen, "cannot record the station id");
            return TALLY_E_STORAGE;
        }
        d->coord.loaded = false;
        load(d);
    }
    d->coord.reads_done = false;
    log_info("station mark %s%s", d->coord.mark,
             d->cfg.coordinator ? " (coordinator)" : " (not the coordinator)");
    return 0;
}

const char *coord_mark(struct tallyd *d)
{
    load(d);
    return d->coord.mark;
}

/* Whether counters holds `prefix` + `code` (a first read recorded), or -1 unreadable. */
static int recorded(struct tallyd *d, const char *prefix, const char *code)
{
    sqlite3_stmt *s = store_stmt(d->store, "SELECT 1 FROM counters WHERE name = ?1");
    if (!s)
        return -1;
    char name[100];
    snprintf(name, sizeof name, "%s%s", prefix, code);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
    bool read = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return read;
}

/* The first warehouse not read to the end once, or NULL: the outbound orders of every
 * outbound warehouse (another coordinator's marks), and the inventory of every warehouse
 * with an upstream (an allocation made before a warehouse's stock is known sends orders past
 * the warehouse that holds their goods). *what says which. */
static const char *unread(struct tallyd *d, const char **what)
{
    if (d->coord.reads_done)
        return NULL;
    for (unsigned i = 0; i < d->cfg.nwh; i++) {
        const struct wh_config *w = &d->cfg.wh[i];
        if (!strcmp(w->fulfilment, "outbound") && recorded(d, "coord_read:", w->code) != 1) {
            *what = "outbound orders";
            return w->code;
        }
        if (w->url[0] && recorded(d, "coord_inv:", w->code) != 1) {
            *what = "inventory";
            return w->code;
        }
    }
    d->coord.reads_done = true;
    return NULL;
}

bool coord_decides(struct tallyd *d, char *why, size_t cap)
{
    if (!d->cfg.coordinator) {
        if (why)
            snprintf(why, cap, "not the coordinator ([station] coordinator = false)");
        return false;
    }
    const char *what = "";
    const char *wh = unread(d, &what);
    if (wh) {
        if (why)
            snprintf(why, cap,
                     "waiting for the first read of the %s of %s (another coordinator's marks"
                     " and every warehouse's stock are looked at before the first decision)",
                     what, wh);
        return false;
    }
    sqlite3_stmt *s =
        store_stmt(d->store, "SELECT message FROM exceptions"
                             " WHERE dedupe >= 'coordinator|' AND dedupe < 'coordinator}'"
                             " AND state <> 'resolved' ORDER BY id LIMIT 1");
    if (!s)
        return false; /* unreadable: no decision rather than a second one */
    bool blocked = sqlite3_step(s) == SQLITE_ROW;
    if (blocked && why) {
        const unsigned char *m = sqlite3_column_text(s, 0);
        snprintf(why, cap, "%s", m ? (const char *)m : "another coordinator");
    }
    sqlite3_reset(s);
    return !blocked;
}

static void subject_of(uint64_t id, char *out, size_t cap)
{
    snprintf(out, cap, "station %016" PRIx64, id);
}

/* When a person last resolved the exception about station `id` (0: never). */
static int64_t ack_time(struct tallyd *d, uint64_t id)
{
    struct coord_state *c = &d->coord;
    int64_t now = store_now();
    int k = -1;
    for (int i = 0; i < c->nacks; i++)
        if (c->acks[i].id == id)
            k = i;
    if (k >= 0 && now - c->acks[k].read_at < ACK_REREAD_S)
        return c->acks[k].ack_at;
    char subject[64], key[128];
    subject_of(id, subject, sizeof subject);
    snprintf(key, sizeof key, "%s|0|0|0|%s", EXC_COORDINATOR, subject);
    sqlite3_stmt *s = store_stmt(d->store, "SELECT MAX(resolved_at) FROM exceptions"
                                           " WHERE kind = 'coordinator' AND dedupe = ?1"
                                           " AND state = 'resolved'");
    int64_t at = 0;
    if (s) {
        sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) == SQLITE_ROW)
            at = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
    }
    if (k < 0) {
        k = c->nacks < (int)(sizeof c->acks / sizeof c->acks[0]) ? c->nacks++ : 0;
        c->acks[k].id = id;
    }
    c->acks[k].ack_at = at;
    c->acks[k].read_at = now;
    return at;
}

int coord_seen(struct tallyd *d, int64_t wh, const char *order_id, const char *mark)
{
    char name[NAME_MAX_LEN + 1];
    uint64_t id;
    load(d);
    if (!d->cfg.coordinator || !order_id || !coord_parse(mark, name, sizeof name, &id) ||
        id == d->coord.id)
        return 0;
    struct store *st = d->store;
    sqlite3_stmt *s = store_stmt(st, "SELECT created_at FROM orders WHERE order_id = ?1");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    int64_t created = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_error(st, rc, "order");
    /* A person resolved this station's exception (it no longer coordinates): its marks on
     * orders placed before that are its past decisions, not a second coordinator; so are its
     * marks on orders this replica does not know (older than its orders stream reaches).
     * Never resolved: any mark of it counts, also on an order not pulled yet (a new station
     * reads the warehouses' orders before the marketplace's). */
    int64_t ack = ack_time(d, id);
    if (ack > 0 && (rc == SQLITE_DONE || created < ack))
        return 0;
    char whcode[TALLY_MAX_ID_LEN + 1] = "";
    s = store_stmt(st, "SELECT code FROM warehouses WHERE id = ?1");
    if (s) {
        sqlite3_bind_int64(s, 1, wh);
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
            snprintf(whcode, sizeof whcode, "%s", (const char *)sqlite3_column_text(s, 0));
        sqlite3_reset(s);
    }
    char subject[64], msg[700];
    subject_of(id, subject, sizeof subject);
    snprintf(msg, sizeof msg,
             "another coordinator: station %s#%016" PRIx64 " sent order %s to %s, and this"
             " station (%s) is a coordinator too; this station stopped allocating orders and"
             " publishing marketplace stock. Make exactly one station the coordinator: set"
             " [station] coordinator = false here and restart tallyd, or, once the other"
             " station no longer coordinates, resolve this exception",
             name, id, order_id, whcode[0] ? whcode : "a warehouse", d->coord.mark);
    struct exc_raise e = {.kind = EXC_COORDINATOR, .subject = subject, .message = msg};
    bool created_now = false;
    int r = exceptions_raise(d, &e, &created_now);
    if (r == 0 && created_now)
        log_error("%s", msg);
    return r;
}

/*
 * Inbound notices (goods announced to a warehouse that keeps its own stock) carry the mark too,
 * put by the connector where the warehouse keeps and echoes a free text of the notice; a kind
 * without such a field carries none:
 * - tally Warehouse API v1: no inbound notices at all (a transfer into it is two movements,
 *   which carry no mark: movements are not account-wide decisions);
 * - Goodcang: inbound_order/create_grn's `receiving_desc` (CreateGrnPayload.java: 备注, a
 *   remark); read back from get_grn_list's rows, whose remark the sources name `remark`
 *   (GrnInfo.java; Goodcang's V1 page: InboundOrderItem.remark) while get_grn_detail names it
 *   `receiving_desc`: that the list's `remark` is the create's `receiving_desc` is not said, so
 *   both names are read;
 * - 4PX: fu.wms.inbound.create's `remark` (InboundCreate.java), echoed as the inbound list
 *   row's `remark` ("备注。客户填写的入库委托备注信息": the remark the customer wrote,
 *   vo/InboundConsignment.java).
 * Notices are read back only when a reference is looked up (Goodcang: before a re-sent
 * create_grn, every GRN of the last 60 days; 4PX: before every create, by ref_no, so only a
 * notice of the same reference), so a second coordinator is seen there later than on its
 * outbound orders, which every outbound round reads.
 */
/*
 * The mark a notice's remark ends with: "tally coordinator NAME#ID" last (as the connectors
 * write it), or the remark being the mark alone. A remark is mostly free text (the note, the
 * transfer's reference, the carrier; Goodcang's ends with the note), where a "name#16 hex
 * digits" is no mark: coord_parse alone, which takes the last one anywhere, would read a
 * note's invoice number as another coordinator, on a notice of a station that does not
 * coordinate or one made before notices were marked, and stop this station allocating.
 */
static bool notice_mark(const char *text, char *name, size_t cap, uint64_t *id)
{
    static const char tag[] = "tally coordinator ";
    if (!text)
        return false;
    size_t len = strnlen(text, 4096);
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\n' || text[len - 1] == '\r' ||
                       text[len - 1] == '\t'))
        len--;
    size_t from = 0; /* where the mark would begin: after the last tag, else the start */
    for (size_t i = 0; i + sizeof tag - 1 <= len; i++)
        if (!memcmp(text + i, tag, sizeof tag - 1))
            from = i + sizeof tag - 1;
    char buf[NAME_MAX_LEN + 18];
    size_t n = len - from;
    if (n < 18 || n >= sizeof buf)
        return false;
    memcpy(buf, text + from, n);
    buf[n] = 0;
    char nm[NAME_MAX_LEN + 1];
    if (!coord_parse(buf, nm, sizeof nm, id) || strlen(nm) + 17 != n)
        return false; /* not a mark, or one with more text around it */
    snprintf(name, cap, "%s", nm);
    return true;
}

int coord_seen_notice(struct tallyd *d, const char *wh_code, const char *notice_id,
                      const char *text, int64_t created)
{
    char name[NAME_MAX_LEN + 1];
    uint64_t id;
    load(d);
    if (!d->cfg.coordinator || !notice_id || !notice_mark(text, name, sizeof name, &id) ||
        id == d->coord.id)
        return 0;
    struct store *st = d->store;
    bool own = !store_in_tx(st);
    int r = own ? store_begin(st) : 0;
    if (r)
        return r;
    int64_t ack = ack_time(d, id);
    if (ack == 0 || (created > 0 && created >= ack)) {
        char subject[64], msg[700];
        subject_of(id, subject, sizeof subject);
        snprintf(msg, sizeof msg,
                 "another coordinator: station %s#%016" PRIx64 " sent inbound notice %s to %s,"
                 " and this station (%s) is a coordinator too; this station stopped allocating"
                 " orders and publishing marketplace stock. Make exactly one station the"
                 " coordinator: set [station] coordinator = false here and restart tallyd, or,"
                 " once the other station no longer coordinates, resolve this exception",
                 name, id, notice_id, wh_code && wh_code[0] ? wh_code : "a warehouse",
                 d->coord.mark);
        struct exc_raise e = {.kind = EXC_COORDINATOR, .subject = subject, .message = msg};
        bool created_now = false;
        r = exceptions_raise(d, &e, &created_now);
        if (r == 0 && created_now)
            log_error("%s", msg);
    }
    if (own) {
        if (r == 0)
            r = store_commit(st);
        else
            store_rollback(st);
    }
    return r;
}

static int first_read(struct tallyd *d, const char *prefix, const char *code)
{
    char name[100];
    snprintf(name, sizeof name, "%s%s", prefix, code);
    sqlite3_stmt *s = store_stmt(d->store, "INSERT OR IGNORE INTO counters(name, n) VALUES(?1, 1)");
    if (!s)
        return TALLY_E_STORAGE;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_error(d->store, rc, "first read");
    if (sqlite3_changes(store_db(d->store)) == 0)
        return 0;
    /* The first read of this warehouse: the orders that waited for it are looked at now
     * rather than at the next retry round. */
    d->coord.reads_done = false;
    s = store_stmt(d->store, "UPDATE orders SET fdirty = 1 WHERE fstate = 'ready' AND fdirty = 0");
    if (!s)
        return TALLY_E_STORAGE;
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_error(d->store, rc, "orders");
}

int coord_outbound_read(struct tallyd *d, const char *code)
{
    return first_read(d, "coord_read:", code);
}

int coord_inventory_read(struct tallyd *d, const char *code)
{
    /* Recorded once: every later round ends here, and a read needs no transaction (one would
     * wait for a group commit in flight). */
    char name[100];
    snprintf(name, sizeof name, "coord_inv:%s", code);
    sqlite3_stmt *q = store_stmt(d->store, "SELECT 1 FROM counters WHERE name = ?1");
    if (q) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc == SQLITE_ROW)
            return 0;
    }
    int r = store_begin(d->store);
    if (r == 0 && (r = first_read(d, "coord_inv:", code)) == 0)
        return store_commit(d->store);
    if (store_in_tx(d->store))
        store_rollback(d->store);
    return r;
}
