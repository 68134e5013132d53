#include "events.h"

#include <msgpack.h>

#include "codec.h"
#include "server.h"
#include "store.h"
#include "tally/protocol.h"

/* Starts [2, "event", [{type, at, ...nfields more}]] and returns the packer. */
static msgpack_packer *begin(msgpack_sbuffer *sb, msgpack_packer *pk, const char *type, int nfields)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, TALLY_MSG_NOTIFICATION);
    mp_pack_strz(pk, "event");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, (size_t)nfields + 2);
    mp_pack_kv_str(pk, "type", type);
    mp_pack_kv_int(pk, "at", store_now());
    return pk;
}

static void send_now(void *arg, const void *data, size_t len)
{
    struct tallyd *d = arg;
    server_broadcast(d->server, data, len);
}

static void cut_watchers(void *arg, const void *data, size_t len)
{
    (void)data;
    (void)len;
    struct tallyd *d = arg;
    server_drop_watchers(d->server);
}

/*
 * Sends the event to watchers once what raised it is kept: an event raised inside a
 * transaction waits for its commit and is dropped on rollback, so a watcher never hears of an
 * exception, a low row or an order the replica does not have. What one transaction holds is
 * bounded by max_output_bytes (no watcher could take more at once): past it, the rest is
 * dropped and every watcher is cut off after the commit, told why, rather than silently
 * missing events.
 */
static void broadcast(struct tallyd *d, msgpack_sbuffer *sb)
{
    struct store *st = d->store;
    size_t held = st ? store_held_bytes(st) : 0;
    if (!server_has_watchers(d->server)) {
        /* nobody listens */
    } else if (!st || !store_in_tx(st)) {
        server_broadcast(d->server, sb->data, sb->size);
    } else if (held + sb->size <= d->cfg.max_output_bytes) {
        if (store_after_commit(st, send_now, d, sb->data, sb->size) != 0)
            store_after_commit(st, cut_watchers, d, NULL, 0);
    } else if (held <= d->cfg.max_output_bytes) {
        store_after_commit(st, cut_watchers, d, NULL, 0); /* counts too: at most a few */
    }
    msgpack_sbuffer_destroy(sb);
}

void events_sync(struct tallyd *d, const char *name, const char *state, const char *detail)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    begin(&sb, &pk, "sync", 3);
    mp_pack_kv_str(&pk, "name", name);
    mp_pack_kv_str(&pk, "state", state);
    mp_pack_kv_str(&pk, "detail", detail);
    broadcast(d, &sb);
}

void events_low_stock(struct tallyd *d, const char *sku, const char *warehouse, int64_t available,
                      int64_t threshold)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    begin(&sb, &pk, "low_stock", 4);
    mp_pack_kv_str(&pk, "sku", sku);
    mp_pack_kv_str(&pk, "warehouse", warehouse);
    mp_pack_kv_int(&pk, "available", available);
    mp_pack_kv_int(&pk, "threshold", threshold);
    broadcast(d, &sb);
}

void events_order(struct tallyd *d, const char *order_id, const char *status)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    begin(&sb, &pk, "order", 2);
    mp_pack_kv_str(&pk, "order_id", order_id);
    mp_pack_kv_str(&pk, "status", status);
    broadcast(d, &sb);
}

void events_exception(struct tallyd *d, int64_t id, const char *kind, const char *state,
                      const char *order_id, const char *sku, const char *warehouse,
                      const char *message, int64_t deadline)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int n = 5 + (order_id != NULL) + (sku != NULL) + (warehouse != NULL);
    begin(&sb, &pk, "exception", n);
    mp_pack_kv_int(&pk, "id", id);
    mp_pack_kv_str(&pk, "kind", kind);
    mp_pack_kv_str(&pk, "state", state);
    if (order_id)
        mp_pack_kv_str(&pk, "order_id", order_id);
    if (sku)
        mp_pack_kv_str(&pk, "sku", sku);
    if (warehouse)
        mp_pack_kv_str(&pk, "warehouse", warehouse);
    mp_pack_kv_str(&pk, "message", message);
    mp_pack_kv_int(&pk, "deadline", deadline);
    broadcast(d, &sb);
}
