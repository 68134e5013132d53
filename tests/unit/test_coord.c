/*
 * Two coordinators (coord.h), on a temp replica (replica_harness):
 *   - the mark "<name>#<16 hex>" read out of free text, and what is not a mark;
 *   - the station id is made once per replica and kept across starts;
 *   - another coordinator's mark raises one `coordinator` exception and stops the decisions
 *     (status's why quotes it); this station's own mark, a non-coordinator, no mark: nothing;
 *   - once a person resolved it, that station's marks on orders placed before the resolution
 *     (or unknown here) are history, on an order placed after it they raise again;
 *   - before every outbound warehouse's orders were read once, no decision;
 *   - inbound notices read back (coord_seen_notice): another coordinator's mark in a notice's
 *     echoed remark raises the same exception, in a transaction of its own or the caller's;
 *     after a resolution, only notices created after it count.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "coord.h"
#include "replica_harness.h"
#include "store.h"
#include "tallyd.h"

static struct rh *h;
static struct tallyd *d;

static void test_parse(void)
{
    char name[40];
    uint64_t id = 0;
    CHECK_EQ_INT(coord_parse("ES-MAD-01#5a15f5639b41649b", name, sizeof name, &id), 1);
    CHECK_EQ_STR(name, "ES-MAD-01");
    CHECK(id == 0x5a15f5639b41649bULL);
    CHECK_EQ_INT(coord_parse("tally coordinator W_2.x#0123456789ABCDEF", name, sizeof name, &id),
                 1);
    CHECK_EQ_STR(name, "W_2.x");
    CHECK(id == 0x0123456789abcdefULL);
    /* the last mark in the text counts */
    CHECK_EQ_INT(coord_parse("A#0000000000000001 B#0000000000000002", name, sizeof name, &id), 1);
    CHECK_EQ_STR(name, "B");
    CHECK(id == 2);
    static const char *const not_marks[] = {
        "",
        "please ship fast",
        "#0123456789abcdef",                                  /* no name */
        "A#0123456789abcde",                                  /* 15 digits */
        "A#0123456789abcdef0",                                /* 17 digits */
        "A#0123456789abcdeg",                                 /* not hex */
        "A#0000000000000000",                                 /* id 0 */
        "A#0123456789abcdefx",                                /* glued to more text */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAX#0123456789abcdef", /* a name of 33 */
    };
    for (size_t i = 0; i < sizeof not_marks / sizeof not_marks[0]; i++) {
        if (coord_parse(not_marks[i], name, sizeof name, &id) != 0) {
            fprintf(stderr, "read as a mark: \"%s\"\n", not_marks[i]);
            CHECK(!"not a mark");
        }
    }
    CHECK_EQ_INT(coord_parse(NULL, name, sizeof name, &id), 0);
}

static int64_t open_coord_exc(void)
{
    return rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE kind = 'coordinator'"
                     " AND state <> 'resolved'");
}

static int seen(const char *order, const char *mark)
{
    CHECK_EQ_INT(store_begin(d->store), 0);
    int r = coord_seen(d, 1, order, mark);
    CHECK_EQ_INT(store_commit(d->store), 0);
    return r;
}

static void add_order(const char *id, int64_t created)
{
    RH_EXEC(h,
            "INSERT INTO orders(order_id, status, created_at, updated_at, country, currency)"
            " VALUES('%s', 'WAIT_SELLER_SEND_GOODS', %" PRId64 ", %" PRId64 ", 'ES', 'EUR')",
            id, created, created);
}

static void test_marks(void)
{
    rh_open(h);
    rh_seed_standard(h);
    d->cfg.coordinator = true;
    d->cfg.nwh = 0;
    snprintf(d->cfg.station, sizeof d->cfg.station, "ES MAD/01");
    char err[200] = "";
    CHECK_EQ_INT(coord_start(d, err, sizeof err), 0);
    const char *mark = coord_mark(d);
    char mine[64];
    snprintf(mine, sizeof mine, "%s", mark);
    CHECK_EQ_INT((int)strlen(mine), 9 + 1 + 16);
    CHECK(strncmp(mine, "ES_MAD_01#", 10) == 0); /* the name's other characters become '_' */
    int64_t sid = rh_q64(h, "SELECT n FROM counters WHERE name = 'station_id'");
    CHECK(sid > 0);
    /* kept across starts */
    CHECK_EQ_INT(coord_start(d, err, sizeof err), 0);
    CHECK_EQ_STR(coord_mark(d), mine);
    CHECK(rh_q64(h, "SELECT n FROM counters WHERE name = 'station_id'") == sid);

    char why[600] = "";
    CHECK(coord_decides(d, why, sizeof why));
    int64_t now = store_now();
    add_order("O-OLD", now - 3600);

    /* nothing: no mark, own mark, a text without a mark */
    CHECK_EQ_INT(seen("O-OLD", NULL), 0);
    CHECK_EQ_INT(seen("O-OLD", mine), 0);
    CHECK_EQ_INT(seen("O-OLD", "tally coordinator of nobody"), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 0);
    /* a non-coordinator takes no decision to stop */
    d->cfg.coordinator = false;
    CHECK_EQ_INT(seen("O-OLD", "OTHER#00000000000000aa"), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 0);
    CHECK(!coord_decides(d, why, sizeof why));
    CHECK(strstr(why, "not the coordinator") != NULL);
    d->cfg.coordinator = true;

    /* another coordinator's mark, also on an order not pulled yet */
    CHECK_EQ_INT(seen("O-NOT-HERE", "tally coordinator OTHER#00000000000000aa"), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 1);
    CHECK(!coord_decides(d, why, sizeof why));
    CHECK(strstr(why, "another coordinator: station OTHER#00000000000000aa") != NULL);
    CHECK(strstr(why, "coordinator = false") != NULL);
    /* raised once per station */
    CHECK_EQ_INT(seen("O-OLD", "OTHER#00000000000000aa"), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 1);
    /* acknowledged: still no decision */
    RH_EXEC(h, "UPDATE exceptions SET state = 'acknowledged' WHERE kind = 'coordinator'");
    CHECK(!coord_decides(d, NULL, 0));

    /* resolved by a person (the other no longer coordinates): decisions again; its marks on
     * orders placed before, or unknown here, are history */
    RH_EXEC(h,
            "UPDATE exceptions SET state = 'resolved', resolved_by = 'op', resolved_at = %" PRId64
            " WHERE kind = 'coordinator'",
            now);
    d->coord.nacks = 0;
    CHECK(coord_decides(d, NULL, 0));
    CHECK_EQ_INT(seen("O-OLD", "OTHER#00000000000000aa"), 0);
    CHECK_EQ_INT(seen("O-NOT-HERE", "OTHER#00000000000000aa"), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 0);
    CHECK(coord_decides(d, NULL, 0));
    /* ... but on an order placed after the resolution: it still coordinates */
    add_order("O-NEW", now + 10);
    CHECK_EQ_INT(seen("O-NEW", "OTHER#00000000000000aa"), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 1);
    CHECK(!coord_decides(d, NULL, 0));
    /* a third station is a problem of its own */
    CHECK_EQ_INT(seen("O-OLD", "THIRD#00000000000000bb"), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 2);
}

static void test_first_read(void)
{
    rh_open(h);
    rh_seed_standard(h);
    d->cfg.coordinator = true;
    struct wh_config *w = &d->cfg.wh[0];
    memset(w, 0, sizeof *w);
    snprintf(w->code, sizeof w->code, "A");
    snprintf(w->fulfilment, sizeof w->fulfilment, "outbound");
    struct wh_config *w2 = &d->cfg.wh[1];
    memset(w2, 0, sizeof *w2);
    snprintf(w2->code, sizeof w2->code, "B");
    snprintf(w2->fulfilment, sizeof w2->fulfilment, "station"); /* no outbound orders there */
    d->cfg.nwh = 2;
    char err[200], why[600] = "";
    CHECK_EQ_INT(coord_start(d, err, sizeof err), 0);
    RH_EXEC(h, "INSERT INTO orders(order_id, status, created_at, updated_at, country, currency,"
               " fstate, fdirty) VALUES('R1', 'WAIT_SELLER_SEND_GOODS', 1, 1, 'ES', 'EUR',"
               " 'ready', 0)");
    CHECK(!coord_decides(d, why, sizeof why));
    CHECK(strstr(why, "first read of the outbound orders of A") != NULL);
    CHECK_EQ_INT(store_begin(d->store), 0);
    CHECK_EQ_INT(coord_outbound_read(d, "A"), 0);
    CHECK_EQ_INT(store_commit(d->store), 0);
    CHECK(coord_decides(d, why, sizeof why));
    /* the orders that waited are looked at now */
    CHECK_EQ_INT((int)rh_q64(h, "SELECT fdirty FROM orders WHERE order_id = 'R1'"), 1);
    /* kept in the replica: a restart does not wait again */
    CHECK_EQ_INT(coord_start(d, err, sizeof err), 0);
    CHECK(coord_decides(d, NULL, 0));
    d->cfg.nwh = 0;
}

static void test_notices(void)
{
    rh_open(h);
    rh_seed_standard(h);
    d->cfg.coordinator = true;
    d->cfg.nwh = 0;
    snprintf(d->cfg.station, sizeof d->cfg.station, "ES-MAD-01");
    char err[200] = "", why[600] = "", mine[64];
    CHECK_EQ_INT(coord_start(d, err, sizeof err), 0);
    snprintf(mine, sizeof mine, "tally notice IN-1; tally coordinator %s", coord_mark(d));
    d->coord.nacks = 0;
    CHECK(coord_decides(d, NULL, 0));
    int64_t now = store_now();

    /* nothing: no remark, a remark without a mark, this station's own mark, a non-coordinator */
    CHECK_EQ_INT(coord_seen_notice(d, "UK-GC", "IN-1", NULL, now), 0);
    CHECK_EQ_INT(coord_seen_notice(d, "UK-GC", "IN-1", "fragile, handle with care", now), 0);
    CHECK_EQ_INT(coord_seen_notice(d, "UK-GC", "IN-1", mine, now), 0);
    d->cfg.coordinator = false;
    CHECK_EQ_INT(
        coord_seen_notice(d, "UK-GC", "IN-2", "tally coordinator OTHER#00000000000000aa", now), 0);
    d->cfg.coordinator = true;
    CHECK_EQ_INT((int)open_coord_exc(), 0);
    CHECK(!store_in_tx(d->store));
    /* A notice's remark holds free text (the note, the transfer's reference, the carrier:
     * Goodcang's receiving_desc ends with the note): a station-like "name#16 hex digits" in
     * it is no mark. Only "tally coordinator <mark>" ending the remark is (or a remark that is
     * the mark alone). A notice of a non-coordinator station, or one made before notices were
     * marked, ends with its note. */
    CHECK_EQ_INT(coord_seen_notice(d, "UK-GC", "IN-4",
                                   "tally notice IN-4; transfer T-4 from ES-MAD; invoice"
                                   " ACME#00000000000012ab",
                                   now),
                 0);
    CHECK_EQ_INT(coord_seen_notice(d, "US-4PX", "IN-5",
                                   "supplier box PO#0000000000000abc; transfer T-5 from ES-MAD",
                                   now),
                 0);
    CHECK_EQ_INT(coord_seen_notice(d, "UK-GC", "IN-6",
                                   "tally notice IN-6; tally coordinator OTHER#00000000000000aa;"
                                   " more text after it",
                                   now),
                 0);
    CHECK_EQ_INT((int)open_coord_exc(), 0);
    CHECK(!store_in_tx(d->store));

    /* another coordinator's mark on a notice: the exception, in a transaction of its own */
    CHECK_EQ_INT(coord_seen_notice(d, "UK-GC", "IN-2",
                                   "tally notice IN-2; transfer T-2 from ES-MAD; tally coordinator"
                                   " OTHER#00000000000000aa",
                                   now),
                 0);
    CHECK(!store_in_tx(d->store));
    CHECK_EQ_INT((int)open_coord_exc(), 1);
    CHECK(!coord_decides(d, why, sizeof why));
    CHECK(strstr(why, "station OTHER#00000000000000aa sent inbound notice IN-2 to UK-GC") != NULL);
    /* the same station, also seen on an order: still one exception */
    CHECK_EQ_INT(store_begin(d->store), 0);
    CHECK_EQ_INT(coord_seen(d, 1, "O-X", "OTHER#00000000000000aa"), 0);
    /* inside the caller's transaction: it stays open */
    CHECK_EQ_INT(coord_seen_notice(d, "US-4PX", "IN-3", "OTHER#00000000000000aa", now), 0);
    CHECK(store_in_tx(d->store));
    CHECK_EQ_INT(store_commit(d->store), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 1);

    /* resolved: that station's notices created before the resolution (or at an unknown time)
     * are its past; one created after it raises again */
    RH_EXEC(h,
            "UPDATE exceptions SET state = 'resolved', resolved_by = 'op', resolved_at = %" PRId64
            " WHERE kind = 'coordinator'",
            now);
    d->coord.nacks = 0;
    CHECK(coord_decides(d, NULL, 0));
    CHECK_EQ_INT(coord_seen_notice(d, "UK-GC", "IN-2", "OTHER#00000000000000aa", now - 60), 0);
    CHECK_EQ_INT(coord_seen_notice(d, "UK-GC", "IN-2", "OTHER#00000000000000aa", 0), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 0);
    CHECK_EQ_INT(coord_seen_notice(d, "UK-GC", "IN-9", "OTHER#00000000000000aa", now + 5), 0);
    CHECK_EQ_INT((int)open_coord_exc(), 1);
    CHECK(!coord_decides(d, NULL, 0));
}

int main(void)
{
    h = rh_new("test_coord");
    if (!h)
        return 2;
    d = rh_daemon(h);
    test_parse();
    test_marks();
    test_first_read();
    test_notices();
    rh_free(h);
    return check_result("test_coord");
}
