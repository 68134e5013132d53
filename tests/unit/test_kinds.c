/*
 * Warehouse kinds at the station (issue 9 B.3) and the outbox as one module (B.4), through
 * the dispatcher on a temp replica (replica_harness): warehouses A (kind tally), B (goodcang),
 * D (fourpx) in the config, C only in the replica.
 *   - a receive / pick / adjust / count / return at B or D is refused before anything is
 *     written, saying why and what to do instead; the same for returns.receive, an import of
 *     opening stock and a transfer out of B; C (not configured) keeps today's behaviour;
 *   - a transfer A -> B records A's leg alone and an inbound notice for B in the same
 *     transaction (its payload as the connectors read it); a failing notice undoes the leg;
 *   - inbound.create / inbound.list: idempotent by id, refused for a tally warehouse;
 *   - the outbox table: per-kind rules, answers and discards of movement and inbound rows,
 *     the key builders;
 *   - an existing replica of the schema before inbound notices upgrades.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "check.h"
#include "codec.h"
#include "config.h"
#include "outbox.h"
#include "replica_harness.h"
#include "store.h"
#include "tallyd.h"
#include "tally/protocol.h"

static struct rh *h;
static struct tallyd *d;

static void add_wh(const char *code, int kind)
{
    struct tally_config *cfg = &d->cfg;
    struct wh_config *w = &cfg->wh[cfg->nwh++];
    memset(w, 0, sizeof *w);
    snprintf(w->code, sizeof w->code, "%s", code);
    w->kind = kind;
    snprintf(w->fulfilment, sizeof w->fulfilment, "outbound");
}

static void fixture(void)
{
    rh_open(h);
    rh_seed_standard(h); /* A, B; S1, S2; S1@A = 10 */
    RH_EXEC(h, "INSERT INTO warehouses(code, name, country, created_at) VALUES"
               " ('C', 'Gamma', 'DE', 0), ('D', 'Delta', 'US', 0)");
    d->cfg.nwh = 0;
    add_wh("A", WH_KIND_TALLY);
    add_wh("B", WH_KIND_GOODCANG);
    add_wh("D", WH_KIND_FOURPX);
}

static int64_t written(void)
{
    return rh_q64(h, "SELECT (SELECT COUNT(*) FROM movements) * 1000000"
                     " + (SELECT COUNT(*) FROM outbox) * 1000"
                     " + (SELECT COALESCE(SUM(pending), 0) FROM stock)"
                     " + (SELECT COUNT(*) FROM inbound_notices) * 100");
}

static bool msg_has(const char *needle)
{
    bool ok = strstr(rh_last_message(h), needle) != NULL;
    if (!ok)
        fprintf(stderr, "  message '%s' lacks '%s'\n", rh_last_message(h), needle);
    return ok;
}

static const msgpack_object *move(const char *kind, const char *wh, const char *qty)
{
    return rh_call(h, "stock.move", kind, "sku=S1", wh, qty, "reason=r", NULL);
}

static void test_refusals(void)
{
    fixture();
    int64_t before = written();
    CHECK(move("kind=receive", "warehouse=B", "qty=#5") == NULL);
    CHECK_EQ_STR(rh_last_code(h), "invalid_params");
    CHECK(msg_has("stock at B is kept by Goodcang (kind goodcang)"));
    CHECK(msg_has("cannot record a receive there"));
    CHECK(msg_has("tally inbound create --warehouse B"));
    CHECK(msg_has("its stock comes from Goodcang's feed"));
    CHECK(move("kind=pick", "warehouse=B", "qty=#1") == NULL);
    CHECK(msg_has("cannot record a pick there") && msg_has("outbound orders"));
    CHECK(move("kind=adjust", "warehouse=B", "qty=#-1") == NULL);
    CHECK(msg_has("cannot record an adjust there"));
    CHECK(move("kind=count", "warehouse=B", "qty=#3") == NULL);
    CHECK(msg_has("cannot record a count there"));
    CHECK(move("kind=return", "warehouse=B", "qty=#1") == NULL);
    CHECK(msg_has("cannot record a return there"));
    CHECK(move("kind=receive", "warehouse=D", "qty=#5") == NULL);
    CHECK(msg_has("stock at D is kept by 4PX (kind fourpx)"));
    /* a transfer out of a third-party warehouse: it ships it itself */
    CHECK(rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=B", "to=A", "qty=#1",
                  NULL) == NULL);
    CHECK(msg_has("transfer out of it") && msg_has("outbound order"));
    /* a parcel coming back to B */
    CHECK(rh_call(h, "returns.receive", "sku=S1", "warehouse=B", "qty=#1", NULL) == NULL);
    CHECK(msg_has("cannot record a return there"));
    /* opening stock for B: its figures come from its feed */
    msgpack_packer *pk = rh_req_begin(h, "import", 2);
    mp_pack_kv_str(pk, "kind", "stock");
    mp_pack_key(pk, "rows");
    msgpack_pack_array(pk, 2);
    msgpack_pack_map(pk, 3);
    mp_pack_kv_str(pk, "sku", "S2");
    mp_pack_kv_str(pk, "warehouse", "A");
    mp_pack_kv_int(pk, "on_hand", 4);
    msgpack_pack_map(pk, 3);
    mp_pack_kv_str(pk, "sku", "S2");
    mp_pack_kv_str(pk, "warehouse", "B");
    mp_pack_kv_int(pk, "on_hand", 4);
    CHECK(rh_req_send(h) == NULL);
    CHECK(msg_has("row 2: stock at B is kept by Goodcang"));
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot", "S2", "A"), RH_NONE); /* nothing imported */
    CHECK_EQ_INT(written(), before);

    /* what stays allowed: A (tally) and C (not in the config: as before kinds) */
    CHECK(move("kind=receive", "warehouse=A", "qty=#5") != NULL);
    CHECK(move("kind=receive", "warehouse=C", "qty=#5") != NULL);
    CHECK(rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=A", "to=C", "qty=#1",
                  NULL) != NULL);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE leg = 1"), 1); /* A -> C: 2 legs */
    /* inbound notices: only for a warehouse that takes them */
    CHECK(rh_call(h, "stock.move", "kind=receive", "sku=S1", "warehouse=B", "qty=#1", NULL) ==
          NULL);
    CHECK(rh_call(h, "stock.move", "kind=receive", "sku=S1", "warehouse=C", "qty=#1", NULL) !=
          NULL);
}

/* Reads the payload of outbox row `key` into *u (to destroy); the map, or NULL. */
static const msgpack_object *payload_of(const char *key, msgpack_unpacked *u)
{
    msgpack_unpacked_init(u);
    sqlite3_stmt *s = store_stmt(d->store, "SELECT payload FROM outbox WHERE key = ?1");
    if (!s)
        return NULL;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    const msgpack_object *m = NULL;
    if (sqlite3_step(s) == SQLITE_ROW) {
        /* the unpacked strings point into the bytes: a copy outlives the statement */
        static char buf[4096];
        size_t off = 0, n = (size_t)sqlite3_column_bytes(s, 0);
        if (n > sizeof buf)
            n = 0;
        memcpy(buf, sqlite3_column_blob(s, 0), n);
        if (n && msgpack_unpack_next(u, buf, n, &off) == MSGPACK_UNPACK_SUCCESS &&
            u->data.type == MSGPACK_OBJECT_MAP)
            m = &u->data;
    }
    sqlite3_reset(s);
    return m;
}

static void test_transfer_into_third_party(void)
{
    fixture();
    const msgpack_object *r = rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=A",
                                      "to=B", "qty=#3", "id=t-1", NULL);
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_EQ_STR(rh_sget(r, "inbound_notice"), "in-t-1");
    /* A's leg alone: B's stock comes from its feed once the goods arrive */
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE id = 't-1'"), 1);
    CHECK_EQ_INT(rh_q64(h, "SELECT delta FROM movements WHERE id = 't-1' AND leg = 0"), -3);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot + pending", "S1", "A"), 7);
    int64_t atb = rh_stock_figure(h, "pending", "S1", "B");
    CHECK(atb == RH_NONE || atb == 0);
    /* sent to A as a movement (A's system must not book the units into B) */
    CHECK_EQ_STR(rh_qtext(h, "SELECT kind || ' ' || target FROM outbox WHERE key = 't-1'"),
                 "movement wh:A");
    CHECK_EQ_STR(rh_qtext(h, "SELECT kind || ' ' || target || ' ' || entity || ' ' || state"
                             " FROM outbox WHERE key = 'in:B:in-t-1'"),
                 "inbound wh:B in-t-1 pending");
    CHECK_EQ_STR(rh_qtext(h, "SELECT state || ' ' || ref || ' ' || from_wh FROM inbound_notices"
                             " WHERE id = 'in-t-1'"),
                 "pending t-1 A");
    /* the payload the connectors read (upstream.h contract) */
    msgpack_unpacked u;
    const msgpack_object *p = payload_of("in:B:in-t-1", &u);
    CHECK(p != NULL);
    if (p) {
        CHECK_EQ_STR(rh_sget(p, "id"), "in-t-1");
        CHECK_EQ_STR(rh_sget(p, "warehouse"), "B");
        CHECK_EQ_STR(rh_sget(p, "ref"), "t-1");
        CHECK_EQ_STR(rh_sget(p, "from"), "A");
        CHECK(mp_map_get(p, "eta") == NULL);
        const msgpack_object *lines = mp_map_get(p, "lines");
        CHECK(lines && lines->type == MSGPACK_OBJECT_ARRAY && lines->via.array.size == 1);
        if (lines && lines->type == MSGPACK_OBJECT_ARRAY && lines->via.array.size == 1) {
            CHECK_EQ_STR(rh_sget(&lines->via.array.ptr[0], "sku"), "S1");
            CHECK_EQ_INT(rh_iget(&lines->via.array.ptr[0], "qty"), 3);
        }
    }
    msgpack_unpacked_destroy(&u);
    /* a retry: the same answer, no second notice */
    r = rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=A", "to=B", "qty=#3",
                "id=t-1", NULL);
    CHECK(r && rh_bget(r, "duplicate"));
    CHECK_EQ_STR(r ? rh_sget(r, "inbound_notice") : NULL, "in-t-1");
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM inbound_notices"), 1);

    /* one transaction: a notice that cannot be made (its id taken by another notice) undoes
     * the leg at A */
    CHECK(rh_call(h, "inbound.create", "id=in-t-2", "warehouse=B", NULL) == NULL); /* no lines */
    msgpack_packer *pk = rh_req_begin(h, "inbound.create", 3);
    mp_pack_kv_str(pk, "id", "in-t-2");
    mp_pack_kv_str(pk, "warehouse", "B");
    mp_pack_key(pk, "lines");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    mp_pack_kv_str(pk, "sku", "S2");
    mp_pack_kv_int(pk, "qty", 1);
    CHECK(rh_req_send(h) != NULL);
    int64_t before = written();
    CHECK(rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=A", "to=B", "qty=#2",
                  "id=t-2", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");
    CHECK_EQ_INT(written(), before);
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM movements WHERE id = 't-2'"), 0);
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot + pending", "S1", "A"), 7);
}

/* inbound.create with lines (sku, qty)... */
static const msgpack_object *create(const char *id, const char *wh, int n, const char *skus[],
                                    const int64_t qty[], int64_t eta)
{
    msgpack_packer *pk = rh_req_begin(h, "inbound.create", 4 + (eta > 0));
    mp_pack_kv_str(pk, "id", id);
    mp_pack_kv_str(pk, "warehouse", wh);
    mp_pack_kv_str(pk, "ref", "PO-9");
    if (eta > 0)
        mp_pack_kv_int(pk, "eta", eta);
    mp_pack_key(pk, "lines");
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        msgpack_pack_map(pk, 2);
        mp_pack_kv_str(pk, "sku", skus[i]);
        mp_pack_kv_int(pk, "qty", qty[i]);
    }
    return rh_req_send(h);
}

static void test_inbound_rpc(void)
{
    fixture();
    const char *skus[] = {"S1", "S2"};
    const int64_t qty[] = {5, 7};
    const msgpack_object *r = create("in-1", "B", 2, skus, qty, 1893456000);
    CHECK(r != NULL);
    CHECK(r && !rh_bget(r, "duplicate"));
    CHECK_EQ_STR(r ? rh_sget(r, "state") : NULL, "pending");
    msgpack_unpacked u;
    const msgpack_object *p = payload_of("in:B:in-1", &u);
    CHECK(p && rh_iget(p, "eta") == 1893456000);
    CHECK(p && mp_map_get(p, "from") == NULL);
    msgpack_unpacked_destroy(&u);
    r = create("in-1", "B", 2, skus, qty, 1893456000);
    CHECK(r && rh_bget(r, "duplicate"));
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM outbox WHERE kind = 'inbound'"), 1);
    const int64_t other[] = {5, 8};
    CHECK(create("in-1", "B", 2, skus, other, 0) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");
    const char *dup[] = {"S1", "S1"};
    CHECK(create("in-2", "B", 2, dup, qty, 0) == NULL);
    CHECK(msg_has("one line per SKU"));
    CHECK(create("in-3", "A", 1, skus, qty, 0) == NULL);
    CHECK(msg_has("A (kind tally) takes no inbound notices") && msg_has("tally receive"));
    CHECK(create("in-4", "C", 1, skus, qty, 0) == NULL); /* not configured: no connector */
    CHECK(create("in-5", "D", 1, skus, qty, 0) != NULL);
    /* writers only */
    rh_set_role(h, TALLY_ROLE_READER);
    CHECK(create("in-6", "B", 1, skus, qty, 0) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "forbidden");
    r = rh_call(h, "inbound.list", "warehouse=B", NULL);
    rh_set_role(h, TALLY_ROLE_WRITER);
    CHECK(r != NULL);
    const msgpack_object *items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1);
    if (items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1) {
        const msgpack_object *it = &items->via.array.ptr[0];
        CHECK_EQ_STR(rh_sget(it, "id"), "in-1");
        CHECK_EQ_STR(rh_sget(it, "ref"), "PO-9");
        CHECK_EQ_INT(rh_iget(it, "eta"), 1893456000);
        const msgpack_object *l = mp_map_get(it, "lines");
        CHECK(l && l->type == MSGPACK_OBJECT_ARRAY && l->via.array.size == 2);
    }
    r = rh_call(h, "inbound.list", NULL);
    items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 2);
}

static int in_txn(int (*fn)(void *), void *arg)
{
    int r = store_begin(d->store);
    if (r == 0)
        r = fn(arg);
    if (r == 0)
        r = store_commit(d->store);
    else
        store_rollback(d->store);
    return r;
}

struct ans {
    int kind;
    const char *target, *key, *entity;
    bool done;
    const char *error;
    int64_t version, attempts;
    bool discard;
};

static int answer(void *v)
{
    struct ans *a = v;
    if (a->discard)
        return outbox_discarded(d, a->kind, a->key, a->entity, "alice", "given up");
    return outbox_answered(d, a->target, a->kind, a->key, a->entity, a->done, a->error, a->version,
                           0, a->attempts);
}

static void test_outbox_table(void)
{
    /* the rules */
    for (int k = 0; k < OBX_KIND_COUNT; k++)
        CHECK_EQ_INT(outbox_kind_parse(outbox_kind_name(k)), k);
    CHECK_EQ_INT(outbox_kind_parse("nonsense"), -1);
    CHECK(outbox_kind_name(OBX_KIND_COUNT) == NULL);
    CHECK(!outbox_rules(OBX_MOVEMENT)->one_per_call && !outbox_rules(OBX_FULFIL)->one_per_call);
    CHECK(outbox_rules(OBX_TRANSFER)->one_per_call && outbox_rules(OBX_OUTBOUND)->one_per_call &&
          outbox_rules(OBX_OUTBOUND_CANCEL)->one_per_call &&
          outbox_rules(OBX_INBOUND)->one_per_call);
    CHECK(outbox_rules(OBX_MOVEMENT)->ack_movement && outbox_rules(OBX_TRANSFER)->ack_movement);
    CHECK(!outbox_rules(OBX_INBOUND)->ack_movement && outbox_rules(OBX_INBOUND)->notice);
    CHECK(outbox_rules(OBX_OUTBOUND)->order_held_by_feed);
    CHECK(!outbox_rules(OBX_OUTBOUND_CANCEL)->order_held_by_feed);
    const struct outbox_rules *unk = outbox_rules(-1);
    CHECK(!unk->ack_movement && !unk->discard_movement && !unk->notice && !unk->one_per_call);

    /* the key builders */
    char b[200], code[80], long_ship[65];
    memset(long_ship, 's', 64);
    long_ship[64] = 0;
    outbox_key_order(b, sizeof b, OBX_OUTBOUND, "ES-MAD", "81-1");
    CHECK_EQ_STR(b, "ob:ES-MAD:81-1");
    CHECK(outbox_key_order_wh(b, "81-1", code, sizeof code));
    CHECK_EQ_STR(code, "ES-MAD");
    outbox_key_order(b, sizeof b, OBX_OUTBOUND_CANCEL, "ES-MAD", "81-1");
    CHECK_EQ_STR(b, "obc:ES-MAD:81-1");
    CHECK(!outbox_key_order_wh(b, "81-1", code, sizeof code));
    outbox_key_fulfil(b, sizeof b, "81-1-ES-MAD-1");
    CHECK_EQ_STR(b, "ful:81-1-ES-MAD-1");
    CHECK_EQ_STR(outbox_key_fulfil_ship(b), "81-1-ES-MAD-1");
    CHECK(outbox_key_fulfil_ship("ob:x:y") == NULL);
    outbox_key_inbound(b, sizeof b, "UK-GC", "in-7");
    CHECK_EQ_STR(b, "in:UK-GC:in-7");
    outbox_target_wh(b, sizeof b, "UK-GC");
    CHECK_EQ_STR(b, "wh:UK-GC");
    CHECK_EQ_STR(outbox_target_code(b), "UK-GC");
    CHECK(outbox_target_code(OUTBOX_TARGET_MP) == NULL);
    outbox_movement_id(b, sizeof b);
    CHECK(strncmp(b, "m-", 2) == 0 && strlen(b) == 30);
    outbox_line_movement_id("81-1-ES-MAD-1", "TS-RED-M", b, sizeof b);
    CHECK_EQ_STR(b, "81-1-ES-MAD-1:TS-RED-M");
    outbox_line_movement_id(long_ship, "TS-RED-M", b, sizeof b);
    CHECK(strlen(b) <= 64 && strncmp(b, long_ship, 40) == 0);
    outbox_notice_id(b, sizeof b);
    CHECK(strncmp(b, "in-", 3) == 0 && strlen(b) == 31);
    char long_id[65], n1[80], n2[80];
    memset(long_id, 'x', 64);
    long_id[64] = 0;
    outbox_transfer_notice_id(n1, sizeof n1, long_id);
    outbox_transfer_notice_id(n2, sizeof n2, long_id);
    CHECK(strlen(n1) <= 64 && strncmp(n1, "in-", 3) == 0);
    CHECK_EQ_STR(n1, n2);
    long_id[63] = 'y';
    outbox_transfer_notice_id(n2, sizeof n2, long_id);
    CHECK(strcmp(n1, n2) != 0);

    /* answers and discards by the table */
    fixture();
    CHECK(move("kind=receive", "warehouse=A", "qty=#5") != NULL);
    const char *mid = rh_qtext(h, "SELECT id FROM movements");
    char mv[80];
    snprintf(mv, sizeof mv, "%s", mid);
    struct ans a = {.kind = OBX_MOVEMENT,
                    .target = "wh:A",
                    .key = mv,
                    .entity = "S1",
                    .done = true,
                    .version = 42,
                    .attempts = 1};
    CHECK_EQ_INT(in_txn(answer, &a), 0);
    CHECK_EQ_STR(rh_qtext(h, "SELECT state || ' ' || upstream_version FROM movements"), "acked 42");

    const char *skus[] = {"S1"};
    const int64_t qty[] = {5};
    CHECK(create("in-9", "B", 1, skus, qty, 0) != NULL);
    a = (struct ans){.kind = OBX_INBOUND,
                     .target = "wh:B",
                     .key = "in:B:in-9",
                     .entity = "in-9",
                     .done = false,
                     .error = "no such product",
                     .attempts = 1};
    CHECK_EQ_INT(in_txn(answer, &a), 0);
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM inbound_notices WHERE id = 'in-9'"), "refused");
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE kind = 'upstream_rejected'"
                           " AND state = 'open' AND message LIKE '%%in:B:in-9%%'"),
                 1);
    a.done = true;
    a.attempts = 2;
    CHECK_EQ_INT(in_txn(answer, &a), 0);
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM inbound_notices WHERE id = 'in-9'"), "sent");
    CHECK_EQ_INT(rh_q64(h, "SELECT COUNT(*) FROM exceptions WHERE state = 'open'"), 0);
    CHECK(create("in-10", "B", 1, skus, qty, 0) != NULL);
    a = (struct ans){.kind = OBX_INBOUND,
                     .target = "wh:B",
                     .key = "in:B:in-10",
                     .entity = "in-10",
                     .done = false,
                     .error = "refused",
                     .attempts = 1};
    CHECK_EQ_INT(in_txn(answer, &a), 0);
    a.discard = true;
    CHECK_EQ_INT(in_txn(answer, &a), 0);
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM inbound_notices WHERE id = 'in-10'"), "discarded");
    CHECK_EQ_STR(rh_qtext(h, "SELECT resolved_by FROM exceptions WHERE message LIKE"
                             " '%%in:B:in-10%%'"),
                 "alice");
    /* a held movement given up leaves the local view */
    CHECK(move("kind=receive", "warehouse=A", "qty=#4") != NULL);
    snprintf(mv, sizeof mv, "%s", rh_qtext(h, "SELECT id FROM movements WHERE qty = 4"));
    CHECK_EQ_INT(rh_stock_figure(h, "pending", "S1", "A"), 9);
    a = (struct ans){
        .kind = OBX_MOVEMENT, .target = "wh:A", .key = mv, .entity = "S1", .discard = true};
    CHECK_EQ_INT(in_txn(answer, &a), 0);
    CHECK_EQ_INT(rh_stock_figure(h, "pending", "S1", "A"), 5);
}

/* outbox.discard of row `key` through the dispatcher (as `tally outbox discard`). */
static const msgpack_object *discard_key(const char *key)
{
    char id[48];
    snprintf(id, sizeof id, "id=#%lld",
             (long long)rh_q64(h, "SELECT id FROM outbox WHERE key = '%s'", key));
    return rh_call(h, "outbox.discard", id, "reason=refused at the origin", NULL);
}

/*
 * A transfer into a third-party warehouse whose leg at the origin is refused and given up:
 * the goods never leave, so the inbound notice that announced them must not reach the third
 * party. It is discarded with the leg, in the same transaction (and it waits for the leg:
 * test_sync's test_notice_waits_for_leg).
 */
static void test_discarded_leg_withdraws_notice(void)
{
    fixture();
    CHECK(rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=A", "to=B", "qty=#3",
                  "id=t-5", NULL) != NULL);
    struct ans a = {.kind = OBX_MOVEMENT,
                    .target = "wh:A",
                    .key = "t-5",
                    .entity = "S1",
                    .done = false,
                    .error = "not enough stock at A",
                    .attempts = 1};
    CHECK_EQ_INT(in_txn(answer, &a), 0);
    RH_EXEC(h, "UPDATE outbox SET state = 'held' WHERE key = 't-5'");
    /* inbound.list says what the notice waits for */
    const msgpack_object *r = rh_call(h, "inbound.list", "warehouse=B", NULL);
    const msgpack_object *items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1);
    if (items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1) {
        const char *w = rh_sget(&items->via.array.ptr[0], "waiting");
        CHECK(w && strstr(w, "transfer t-5 to leave A") && strstr(w, "is held"));
    }
    CHECK(discard_key("t-5") != NULL);
    r = rh_call(h, "inbound.list", "warehouse=B", NULL);
    items = r ? mp_map_get(r, "items") : NULL;
    CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1);
    if (items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1) {
        const msgpack_object *w = mp_map_get(&items->via.array.ptr[0], "waiting");
        CHECK(w && w->type == MSGPACK_OBJECT_NIL);
    }
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM outbox WHERE key = 't-5'"), "discarded");
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM outbox WHERE key = 'in:B:in-t-5'"), "discarded");
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM inbound_notices WHERE id = 'in-t-5'"), "discarded");
    CHECK_EQ_INT(rh_stock_figure(h, "snapshot + pending", "S1", "A"), 10);

    /* a notice made by hand with the same ref is the operator's: a discarded movement whose
     * id equals its ref leaves it alone */
    CHECK(move("kind=receive", "warehouse=A", "qty=#2") != NULL);
    char mv[80];
    snprintf(mv, sizeof mv, "%s", rh_qtext(h, "SELECT id FROM movements WHERE qty = 2"));
    msgpack_packer *pk = rh_req_begin(h, "inbound.create", 4);
    mp_pack_kv_str(pk, "id", "in-hand");
    mp_pack_kv_str(pk, "warehouse", "B");
    mp_pack_kv_str(pk, "ref", mv);
    mp_pack_key(pk, "lines");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    mp_pack_kv_str(pk, "sku", "S1");
    mp_pack_kv_int(pk, "qty", 2);
    CHECK(rh_req_send(h) != NULL);
    CHECK(discard_key(mv) != NULL);
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM inbound_notices WHERE id = 'in-hand'"), "pending");
    CHECK_EQ_STR(rh_qtext(h, "SELECT state FROM outbox WHERE key = 'in:B:in-hand'"), "pending");

    /* a transfer whose notice id a hand-made notice of the same content already has: not
     * taken as the transfer's own (it has no origin, so nothing would wait for the leg) */
    pk = rh_req_begin(h, "inbound.create", 3);
    mp_pack_kv_str(pk, "id", "in-t-8");
    mp_pack_kv_str(pk, "warehouse", "B");
    mp_pack_key(pk, "lines");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    mp_pack_kv_str(pk, "sku", "S1");
    mp_pack_kv_int(pk, "qty", 3);
    CHECK(rh_req_send(h) != NULL);
    int64_t before = written();
    CHECK(rh_call(h, "stock.move", "kind=transfer", "sku=S1", "warehouse=A", "to=B", "qty=#3",
                  "id=t-8", NULL) == NULL);
    CHECK_EQ_STR(rh_last_code(h), "conflict");
    CHECK(msg_has("another id"));
    CHECK_EQ_INT(written(), before);
}

/* A replica of the schema before inbound notices (9) upgrades, keeping its rows. */
static void test_upgrade(void)
{
    char path[256], err[512] = "";
    snprintf(path, sizeof path, "/tmp/tally-kinds-upgrade-%d.db", (int)getpid());
    struct store *st = NULL;
    CHECK_EQ_INT(store_open(path, false, &st, err, sizeof err), 0);
    store_close(st);
    /* back, one version at a time, to the newest schema without inbound notices (whatever
     * number its migration gets when branches merge) */
    sqlite3 *db = NULL;
    int v = schema_latest(), have = 1;
    while (have && --v > 0) {
        CHECK_EQ_INT(rh_rewind_schema(path, v), 0);
        CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
        sqlite3_stmt *s = NULL;
        CHECK_EQ_INT(sqlite3_prepare_v2(db,
                                        "SELECT COUNT(*) FROM sqlite_master WHERE name ="
                                        " 'inbound_notices'",
                                        -1, &s, NULL),
                     SQLITE_OK);
        have = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        sqlite3_finalize(s);
        if (have)
            sqlite3_close(db);
    }
    CHECK(v >= 9 && have == 0);
    if (have != 0)
        return;
    CHECK_EQ_INT(sqlite3_exec(db,
                              "INSERT INTO warehouses(code, name, country, created_at)"
                              " VALUES('OLD', 'Old', 'ES', 1)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    /* rows of every kind the previous version wrote, waiting (the kinds are stored by name) */
    CHECK_EQ_INT(sqlite3_exec(db,
                              "INSERT INTO outbox(key, target, entity, kind, payload,"
                              " next_attempt_at, created_at) VALUES"
                              " ('m-1', 'wh:OLD', 'S1', 'movement', x'80', 0, 1),"
                              " ('t-1', 'wh:OLD', 'S1', 'transfer', x'80', 0, 1),"
                              " ('ob:OLD:81', 'wh:OLD', '81', 'outbound', x'80', 0, 1),"
                              " ('obc:OLD:81', 'wh:OLD', '81', 'outbound_cancel', x'80', 0, 1),"
                              " ('ful:81-OLD-1', 'mp', '81', 'fulfil', x'80', 0, 1)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(store_open(path, false, &st, err, sizeof err), 0);
    if (st) {
        CHECK_EQ_INT(store_schema_version(st), schema_latest());
        sqlite3_stmt *q = store_stmt(st, "SELECT (SELECT COUNT(*) FROM inbound_notices),"
                                         " (SELECT COUNT(*) FROM inbound_lines),"
                                         " (SELECT COUNT(*) FROM warehouses WHERE code = 'OLD')");
        CHECK(q != NULL);
        if (q) {
            CHECK_EQ_INT(sqlite3_step(q), SQLITE_ROW);
            CHECK_EQ_INT(sqlite3_column_int(q, 0), 0);
            CHECK_EQ_INT(sqlite3_column_int(q, 1), 0);
            CHECK_EQ_INT(sqlite3_column_int(q, 2), 1);
            sqlite3_reset(q);
        }
        /* each waiting row keeps its state, reads as its kind, and waits for nothing */
        q = store_stmt(st, "SELECT kind, entity, state FROM outbox ORDER BY id");
        int rows = 0;
        while (q && sqlite3_step(q) == SQLITE_ROW) {
            int k = outbox_kind_parse((const char *)sqlite3_column_text(q, 0));
            CHECK(k >= 0 && k != OBX_INBOUND);
            CHECK_EQ_STR((const char *)sqlite3_column_text(q, 2), "pending");
            CHECK_EQ_INT(outbox_waits(st, k, (const char *)sqlite3_column_text(q, 1)), 0);
            rows++;
        }
        if (q)
            sqlite3_reset(q);
        CHECK_EQ_INT(rows, 5);
        store_close(st);
    }
    unlink(path);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

int main(void)
{
    h = rh_new("tally-kinds");
    if (!h) {
        perror("mkdtemp");
        return 1;
    }
    d = rh_daemon(h);
    test_refusals();
    test_transfer_into_third_party();
    test_inbound_rpc();
    test_outbox_table();
    test_discarded_leg_withdraws_notice();
    test_upgrade();
    rh_free(h);
    return check_result("test_kinds");
}
