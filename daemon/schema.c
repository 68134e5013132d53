/*
 * Schema migrations. Migration N (1-based) takes a replica from user_version N-1 to N. They are
 * append-only: a released migration is never edited, a change is a new migration. Each runs in
 * one transaction with its user_version bump, so a crash mid-migration leaves the old version.
 *
 * Stock invariant (kept by stock.c in the same transaction as each movement):
 *   stock.pending = SUM(movements.delta) over the SKU x warehouse's movements not 'settled'.
 * The local view of a SKU x warehouse is snapshot + pending.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

static const char *const migrations[] = {
    /* 1: the whole part-1 replica. */
    "CREATE TABLE warehouses("
    "  id INTEGER PRIMARY KEY,"
    "  code TEXT NOT NULL UNIQUE,"
    "  name TEXT NOT NULL,"
    "  country TEXT NOT NULL,"
    "  serves_marketplace INTEGER NOT NULL DEFAULT 1,"
    "  created_at INTEGER NOT NULL);"

    "CREATE TABLE products("
    "  id INTEGER PRIMARY KEY,"
    "  product_id TEXT NOT NULL UNIQUE," /* the marketplace's product id */
    "  title TEXT NOT NULL,"
    "  status TEXT,"
    "  updated_at INTEGER NOT NULL);"

    "CREATE TABLE skus("
    "  id INTEGER PRIMARY KEY,"
    "  code TEXT NOT NULL UNIQUE," /* the seller's SKU code (sku_code on the marketplace) */
    "  product INTEGER NOT NULL REFERENCES products(id),"
    "  mp_sku_id TEXT,"
    "  title TEXT NOT NULL,"
    "  attributes BLOB," /* a MessagePack map str -> str (variant attributes) */
    "  price_minor INTEGER NOT NULL,"
    "  currency TEXT NOT NULL,"
    "  weight_g INTEGER,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE INDEX skus_by_product ON skus(product);"

    "CREATE TABLE stock("
    "  sku INTEGER NOT NULL REFERENCES skus(id),"
    "  warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
    "  snapshot INTEGER NOT NULL DEFAULT 0," /* last figure from the warehouse */
    "  pending INTEGER NOT NULL DEFAULT 0,"  /* overlay: local movements not yet settled */
    "  reserved INTEGER NOT NULL DEFAULT 0,"
    "  safety INTEGER NOT NULL DEFAULT 0,"
    "  threshold INTEGER NOT NULL DEFAULT 0,"
    "  upstream_version INTEGER NOT NULL DEFAULT 0,"
    "  as_of INTEGER,"
    "  PRIMARY KEY(sku, warehouse)) WITHOUT ROWID;"
    "CREATE INDEX stock_by_warehouse ON stock(warehouse, sku);"

    "CREATE TABLE movements("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL,"               /* the movement id: idempotency key locally and upstream */
    "  leg INTEGER NOT NULL DEFAULT 0," /* a transfer has leg 0 (out) and leg 1 (in) */
    "  kind TEXT NOT NULL CHECK(kind IN "
    "    ('receive','pick','adjust','count','transfer','return')),"
    "  sku INTEGER NOT NULL REFERENCES skus(id),"
    "  warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
    "  peer INTEGER REFERENCES warehouses(id)," /* the other side of a transfer */
    "  qty INTEGER NOT NULL," /* as requested; for a count, the counted quantity */
    "  delta INTEGER NOT NULL,"
    "  reason TEXT,"
    "  ref TEXT,"
    "  forced INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'pending' CHECK(state IN ('pending','acked','settled')),"
    "  upstream_version INTEGER,"
    "  UNIQUE(id, leg));"
    "CREATE INDEX movements_open ON movements(sku, warehouse) WHERE state <> 'settled';"

    "CREATE TABLE orders("
    "  id INTEGER PRIMARY KEY,"
    "  order_id TEXT NOT NULL UNIQUE," /* the marketplace order id */
    "  status TEXT NOT NULL,"          /* the marketplace status, e.g. WAIT_SELLER_SEND_GOODS */
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  ship_by INTEGER,"
    "  country TEXT NOT NULL,"
    "  currency TEXT NOT NULL,"
    "  total_minor INTEGER NOT NULL DEFAULT 0,"
    "  service TEXT,"
    "  warehouse INTEGER REFERENCES warehouses(id),"
    "  buyer_name TEXT, address TEXT, city TEXT, postcode TEXT, phone TEXT,"
    "  finished_at INTEGER);"
    "CREATE INDEX orders_by_created ON orders(created_at, order_id);"
    "CREATE INDEX orders_by_status ON orders(status, created_at, order_id);"

    "CREATE TABLE order_lines("
    "  order_ref INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,"
    "  sku INTEGER NOT NULL REFERENCES skus(id),"
    "  qty INTEGER NOT NULL CHECK(qty > 0),"
    "  price_minor INTEGER NOT NULL,"
    "  PRIMARY KEY(order_ref, sku)) WITHOUT ROWID;"

    "CREATE TABLE shipments("
    "  id TEXT PRIMARY KEY,"
    "  order_ref INTEGER NOT NULL REFERENCES orders(id),"
    "  warehouse INTEGER REFERENCES warehouses(id),"
    "  carrier TEXT,"
    "  tracking_no TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'created');"
    "CREATE INDEX shipments_by_order ON shipments(order_ref);"

    "CREATE TABLE exceptions("
    "  id INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL,"
    "  order_ref INTEGER REFERENCES orders(id),"
    "  sku INTEGER REFERENCES skus(id),"
    "  message TEXT NOT NULL,"
    "  raised_at INTEGER NOT NULL,"
    "  deadline INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'open' CHECK(state IN ('open','acknowledged','resolved')),"
    "  resolved_by TEXT, resolved_at INTEGER, note TEXT);"

    /* One row per local write to send upstream; `key` is the idempotency key. Rows with the
     * same (target, entity) are sent in id order. */
    "CREATE TABLE outbox("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  key TEXT NOT NULL UNIQUE,"
    "  target TEXT NOT NULL,"
    "  entity TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  payload BLOB NOT NULL," /* MessagePack map: what the connector turns into a request */
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_at INTEGER NOT NULL,"
    "  last_error TEXT,"
    "  state TEXT NOT NULL DEFAULT 'pending'"
    "    CHECK(state IN ('pending','inflight','held','done','discarded')),"
    "  created_at INTEGER NOT NULL,"
    "  done_at INTEGER);"
    "CREATE INDEX outbox_due ON outbox(state, next_attempt_at);"
    "CREATE INDEX outbox_entity ON outbox(target, entity, id);"

    /* One row per pull stream: 'mp:catalog', 'mp:orders', 'wh:<code>:inventory',
     * 'wh:<code>:outbound'. A page is applied in the transaction that advances its row. */
    "CREATE TABLE checkpoints("
    "  stream TEXT PRIMARY KEY,"
    "  cursor TEXT,"
    "  version INTEGER NOT NULL DEFAULT 0,"
    "  modified_since INTEGER,"
    "  rows_total INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL);"
    "INSERT INTO checkpoints(stream, updated_at) VALUES"
    "  ('mp:catalog', strftime('%s','now')), ('mp:orders', strftime('%s','now'));",

    /* 2: what sync needs beyond part 1. */
    /* Status changes of fulfilment requests, as each warehouse reports them. */
    "CREATE TABLE outbound_orders("
    "  warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
    "  id TEXT NOT NULL," /* the client's reference: the marketplace order id */
    "  status TEXT NOT NULL,"
    "  carrier TEXT, tracking_no TEXT, reason TEXT,"
    "  version INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY(warehouse, id)) WITHOUT ROWID;"
    /* Marketplace stock publishing: the newest computed value per SKU and what was last
     * acknowledged by the marketplace. Only the coordinator fills it. */
    "CREATE TABLE publish("
    "  sku INTEGER PRIMARY KEY REFERENCES skus(id),"
    "  value INTEGER NOT NULL,"
    "  published INTEGER,"
    "  published_at INTEGER,"
    "  gen INTEGER NOT NULL DEFAULT 0," /* bumped by every change; see sync.c publish */
    "  dirty INTEGER NOT NULL DEFAULT 1);"
    "CREATE INDEX publish_dirty ON publish(dirty) WHERE dirty = 1;"
    /* The rows the sync engine looks at, in order, per upstream. */
    "CREATE INDEX outbox_work ON outbox(target, id) WHERE state IN ('pending', 'inflight');"
    "CREATE INDEX movements_acked ON movements(sku, warehouse, upstream_version)"
    "  WHERE state = 'acked';",

    /* 3: title search without a scan. A trigram index answers substring matches (3+ bytes,
     * case-insensitive) from the index; triggers keep it in step with skus. */
    "CREATE VIRTUAL TABLE sku_titles USING fts5(title, content='skus', content_rowid='id',"
    "  tokenize='trigram');"
    "CREATE TRIGGER skus_title_ins AFTER INSERT ON skus BEGIN"
    "  INSERT INTO sku_titles(rowid, title) VALUES(new.id, new.title); END;"
    "CREATE TRIGGER skus_title_del AFTER DELETE ON skus BEGIN"
    "  INSERT INTO sku_titles(sku_titles, rowid, title) VALUES('delete', old.id, old.title); END;"
    "CREATE TRIGGER skus_title_upd AFTER UPDATE OF title ON skus BEGIN"
    "  INSERT INTO sku_titles(sku_titles, rowid, title) VALUES('delete', old.id, old.title);"
    "  INSERT INTO sku_titles(rowid, title) VALUES(new.id, new.title); END;"
    "INSERT INTO sku_titles(sku_titles) VALUES('rebuild');"
    /* A SKU the warehouses reported first is not published while it is unlisted; when the
     * catalog gives it its product, its stock is due for publishing. */
    "CREATE TRIGGER skus_listed AFTER UPDATE OF product ON skus WHEN old.product <> new.product"
    " BEGIN INSERT INTO publish(sku, value, gen, dirty) VALUES(new.id, 0, 1, 1)"
    "  ON CONFLICT(sku) DO UPDATE SET gen = gen + 1, dirty = 1; END;",

    /* 4: fulfilment (fulfil.c). An order's own progress on this side (fstate) is kept apart
     * from the marketplace's status: the marketplace is the authority on its status, tally
     * on where the goods are. fdirty marks orders the fulfilment pass must look at; a
     * marketplace status change sets it. */
    "ALTER TABLE orders ADD COLUMN fstate TEXT NOT NULL DEFAULT 'new' CHECK(fstate IN"
    "  ('new','pending','ready','allocated','sent','picked','partial','shipped','uploaded',"
    "   'finished','cancelled'));"
    "ALTER TABLE orders ADD COLUMN fdirty INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE orders ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE orders ADD COLUMN priority_why TEXT;"
    "ALTER TABLE orders ADD COLUMN alloc_rule TEXT;"
    "ALTER TABLE orders ADD COLUMN alloc_why TEXT;"
    "ALTER TABLE orders ADD COLUMN buyer_level TEXT;"
    "ALTER TABLE orders ADD COLUMN shipped_at INTEGER;"
    "ALTER TABLE orders ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE orders ADD COLUMN purged_at INTEGER;"
    /* fdirty: 0 nothing to do, 1 look at it, 2 a look failed: again at the next retry
     * round (so one order that cannot be processed never holds up the others). */
    "CREATE INDEX orders_fdirty ON orders(id) WHERE fdirty <> 0;"
    /* Open orders: counted by state (status), listed by urgency (orders.list due: the same
     * expressions as its ORDER BY, so a page needs no sort), and the ready ones retried
     * most urgent first. */
    "CREATE INDEX orders_open ON orders(fstate)"
    "  WHERE fstate IN ('pending','ready','allocated','sent','picked','partial');"
    "CREATE INDEX orders_open_by_id ON orders(id)"
    "  WHERE fstate IN ('pending','ready','allocated','sent','picked','partial');"
    "CREATE INDEX orders_due ON orders(priority DESC, COALESCE(ship_by, 9223372036854775807),"
    "  order_id) WHERE fstate IN ('pending','ready','allocated','sent','picked','partial');"
    "CREATE INDEX orders_ready ON orders(priority DESC, COALESCE(ship_by, 9223372036854775807),"
    "  id) WHERE fstate = 'ready';"
    "CREATE INDEX orders_to_purge ON orders(finished_at) WHERE purged_at IS NULL;"
    "CREATE INDEX orders_open_by_ship_by ON orders(ship_by, id)"
    "  WHERE fstate IN ('pending','ready','allocated','sent','picked','partial');"
    "CREATE TRIGGER orders_status_changed AFTER UPDATE OF status, address, city, postcode,"
    "  buyer_name ON orders WHEN old.status IS NOT new.status OR old.address IS NOT new.address"
    "  OR old.city IS NOT new.city OR old.postcode IS NOT new.postcode"
    "  OR old.buyer_name IS NOT new.buyer_name"
    " BEGIN UPDATE orders SET fdirty = 1 WHERE id = new.id; END;"
    /* Where each line's units come from. A row counts in stock.reserved while 'reserved'
     * (allocated, not shipped) or 'consumed' (the warehouse shipped it, but the replica's
     * snapshot may not show it yet: it is released by the first inventory round of that
     * warehouse that began after consumed_at). 'shipped' rows are history (sales figures). */
    "CREATE TABLE allocations("
    "  id INTEGER PRIMARY KEY,"
    "  order_ref INTEGER NOT NULL REFERENCES orders(id),"
    "  sku INTEGER NOT NULL REFERENCES skus(id),"
    "  warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
    "  qty INTEGER NOT NULL CHECK(qty > 0),"
    "  state TEXT NOT NULL DEFAULT 'reserved' CHECK(state IN ('reserved','consumed','shipped')),"
    "  shipment TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  consumed_at INTEGER,"
    "  shipped_at INTEGER);"
    "CREATE INDEX allocations_by_order ON allocations(order_ref, warehouse);"
    "CREATE INDEX allocations_held ON allocations(sku, warehouse)"
    "  WHERE state IN ('reserved','consumed');"
    "CREATE INDEX allocations_consumed ON allocations(warehouse, consumed_at)"
    "  WHERE state = 'consumed';"
    "CREATE INDEX allocations_sold ON allocations(shipped_at, sku, warehouse)"
    "  WHERE state <> 'reserved';"
    "CREATE INDEX allocations_sold_by_sku ON allocations(sku, warehouse, shipped_at)"
    "  WHERE state <> 'reserved';"
    "ALTER TABLE shipments ADD COLUMN send_type TEXT;"
    "ALTER TABLE shipments ADD COLUMN service TEXT;"
    "ALTER TABLE shipments ADD COLUMN uploaded_at INTEGER;"
    "ALTER TABLE shipments ADD COLUMN on_time INTEGER;"
    "CREATE INDEX shipments_by_created ON shipments(created_at);"
    /* Exceptions: one open row per dedupe key (kind + what it is about), so raising the
     * same problem again refreshes nothing and duplicates nothing. */
    "ALTER TABLE exceptions ADD COLUMN warehouse INTEGER REFERENCES warehouses(id);"
    "ALTER TABLE exceptions ADD COLUMN dedupe TEXT;"
    "ALTER TABLE exceptions ADD COLUMN acknowledged_by TEXT;"
    "ALTER TABLE exceptions ADD COLUMN acknowledged_at INTEGER;"
    "CREATE UNIQUE INDEX exceptions_open ON exceptions(dedupe) WHERE state <> 'resolved';"
    "CREATE INDEX exceptions_active ON exceptions(deadline, id) WHERE state <> 'resolved';"
    "CREATE INDEX exceptions_by_order ON exceptions(order_ref) WHERE order_ref IS NOT NULL;"
    "CREATE INDEX exceptions_by_raised ON exceptions(raised_at);"
    "CREATE INDEX exceptions_by_resolved ON exceptions(resolved_at) WHERE resolved_at IS NOT NULL;"
    /* A warehouse that cancelled an order's outbound order by itself is not chosen for that
     * order again (its id is used up there: the warehouse deduplicates by it forever). */
    "CREATE TABLE allocation_bans("
    "  order_ref INTEGER NOT NULL REFERENCES orders(id),"
    "  warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
    "  reason TEXT, at INTEGER NOT NULL,"
    "  PRIMARY KEY(order_ref, warehouse)) WITHOUT ROWID;"
    /* Returns: received back (the units are in on_hand through a 'return' movement but held
     * out of sale, counted in stock.reserved, until inspected), then inspected: sellable
     * units are released for sale, damaged ones written off by an 'adjust' movement. */
    "CREATE TABLE returns("
    "  id TEXT PRIMARY KEY,"
    "  order_ref INTEGER REFERENCES orders(id),"
    "  sku INTEGER NOT NULL REFERENCES skus(id),"
    "  warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
    "  qty INTEGER NOT NULL CHECK(qty > 0),"
    "  state TEXT NOT NULL DEFAULT 'received' CHECK(state IN ('received','inspected')),"
    "  sellable INTEGER, damaged INTEGER,"
    "  reason TEXT, note TEXT,"
    "  received_at INTEGER NOT NULL, inspected_at INTEGER);"
    "CREATE INDEX returns_held ON returns(sku, warehouse) WHERE state = 'received';"
    /* Low stock by days of cover: threshold is then recomputed from recent sales. */
    "ALTER TABLE stock ADD COLUMN cover_days INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX stock_cover ON stock(sku, warehouse) WHERE cover_days > 0;"
    /* Per warehouse: how orders are fulfilled there ('outbound': the warehouse's system
     * picks and ships on request; 'station': picked and shipped at this station with
     * `tally ship`), and whether its stock data is too old to be trusted for publishing. */
    "ALTER TABLE warehouses ADD COLUMN fulfilment TEXT NOT NULL DEFAULT 'station'"
    "  CHECK(fulfilment IN ('station','outbound','none'));"
    "ALTER TABLE warehouses ADD COLUMN stale INTEGER NOT NULL DEFAULT 0;"
    /* Orders already in the replica: the pass looks at each once. */
    "UPDATE orders SET fdirty = 1;",

    /* 5: when a request for an outbox row may first have left (outbox_may_discard). Set by
     * the trigger in the transaction that takes the row in flight, before the request is
     * made, so no crash, lost answer or unrecorded outcome can leave a row that may have
     * reached its upstream looking unsent. A row from before this column that can still be
     * sent may have been (a crash in flight leaves no trace): it counts as sent. Rows that
     * are over are not rewritten (the outbox keeps them all: a year of them would grow the
     * WAL by the table's size before tallyd could start); a held row is discardable anyway. */
    "ALTER TABLE outbox ADD COLUMN sent_at INTEGER;"
    "UPDATE outbox SET sent_at = created_at WHERE state IN ('pending', 'inflight');"
    "CREATE TRIGGER outbox_sent AFTER UPDATE OF state ON outbox"
    "  WHEN new.state = 'inflight' AND new.sent_at IS NULL"
    " BEGIN UPDATE outbox SET sent_at = CAST(strftime('%s','now') AS INTEGER)"
    "  WHERE id = new.id; END;",

    /* 6: a purge is never undone. Whatever writes an order's buyer fields after its purge
     * (a path that forgets purged_at, a person's SQL) has them set back to NULL in the same
     * statement, so they never reach a committed page. orders_upsert_header keeps the rule
     * itself; this is the replica's own guard. */
    "CREATE TRIGGER orders_purged_stays_purged AFTER UPDATE OF buyer_name, address, city,"
    "  postcode, phone ON orders WHEN new.purged_at IS NOT NULL AND (new.buyer_name IS NOT NULL"
    "  OR new.address IS NOT NULL OR new.city IS NOT NULL OR new.postcode IS NOT NULL"
    "  OR new.phone IS NOT NULL)"
    " BEGIN UPDATE orders SET buyer_name = NULL, address = NULL, city = NULL, postcode = NULL,"
    "  phone = NULL WHERE id = new.id; END;",

    /* 7: what `status` shows, kept by triggers in the transactions that change it, so
     * status does constant work however large the replica (any client may call it, and it
     * runs on the loop). counters.n is, for each name: products (not the placeholder
     * '~unlisted'), skus, warehouses, orders_open (status not FINISH, WAIT_BUYER_ACCEPT_GOODS
     * or IN_CANCEL), fstate:<state> (orders in each open fulfilment state), movements_pending
     * (movement ids with a leg not settled), outbox_pending (pending or inflight rows),
     * outbox_held, exceptions_open (not resolved). exception_due counts open exceptions by
     * the hour of their deadline (overdue = the hours gone by, plus the current hour's rows
     * read through exceptions_active); a bucket that empties is deleted. */
    "CREATE TABLE counters(name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO counters(name, n)"
    "  SELECT 'products', COUNT(*) FROM products WHERE product_id <> '~unlisted'"
    "  UNION ALL SELECT 'skus', COUNT(*) FROM skus"
    "  UNION ALL SELECT 'warehouses', COUNT(*) FROM warehouses"
    "  UNION ALL SELECT 'orders_open', COUNT(*) FROM orders WHERE status NOT IN "
    "('FINISH','WAIT_BUYER_ACCEPT_GOODS','IN_CANCEL')"
    "  UNION ALL SELECT 'movements_pending', COUNT(DISTINCT id) FROM movements"
    "    WHERE state <> 'settled'"
    "  UNION ALL SELECT 'outbox_pending', COUNT(*) FROM outbox"
    "    WHERE state IN ('pending','inflight')"
    "  UNION ALL SELECT 'outbox_held', COUNT(*) FROM outbox WHERE state = 'held'"
    "  UNION ALL SELECT 'exceptions_open', COUNT(*) FROM exceptions WHERE state <> 'resolved';"
    "INSERT INTO counters(name, n) SELECT 'fstate:' || s.value, (SELECT COUNT(*) FROM orders"
    "  WHERE fstate = s.value) FROM (SELECT 'pending' AS value UNION ALL SELECT 'ready'"
    "  UNION ALL SELECT 'allocated' UNION ALL SELECT 'sent' UNION ALL SELECT 'picked'"
    "  UNION ALL SELECT 'partial') s;"
    "CREATE TRIGGER count_products_ins AFTER INSERT ON products BEGIN"
    "  UPDATE counters SET n = n + (new.product_id <> '~unlisted') WHERE name = 'products'; END;"
    "CREATE TRIGGER count_products_del AFTER DELETE ON products BEGIN"
    "  UPDATE counters SET n = n - (old.product_id <> '~unlisted') WHERE name = 'products'; END;"
    "CREATE TRIGGER count_products_upd AFTER UPDATE OF product_id ON products BEGIN"
    "  UPDATE counters SET n = n + (new.product_id <> '~unlisted')"
    "    - (old.product_id <> '~unlisted') WHERE name = 'products'; END;"
    "CREATE TRIGGER count_skus_ins AFTER INSERT ON skus BEGIN"
    "  UPDATE counters SET n = n + 1 WHERE name = 'skus'; END;"
    "CREATE TRIGGER count_skus_del AFTER DELETE ON skus BEGIN"
    "  UPDATE counters SET n = n - 1 WHERE name = 'skus'; END;"
    "CREATE TRIGGER count_warehouses_ins AFTER INSERT ON warehouses BEGIN"
    "  UPDATE counters SET n = n + 1 WHERE name = 'warehouses'; END;"
    "CREATE TRIGGER count_warehouses_del AFTER DELETE ON warehouses BEGIN"
    "  UPDATE counters SET n = n - 1 WHERE name = 'warehouses'; END;"
    "CREATE TRIGGER count_orders_ins AFTER INSERT ON orders BEGIN"
    "  UPDATE counters SET n = n + (new.status NOT IN "
    "('FINISH','WAIT_BUYER_ACCEPT_GOODS','IN_CANCEL')) WHERE name = 'orders_open';"
    "  UPDATE counters SET n = n + 1 WHERE name = 'fstate:' || new.fstate; END;"
    "CREATE TRIGGER count_orders_del AFTER DELETE ON orders BEGIN"
    "  UPDATE counters SET n = n - (old.status NOT IN "
    "('FINISH','WAIT_BUYER_ACCEPT_GOODS','IN_CANCEL')) WHERE name = 'orders_open';"
    "  UPDATE counters SET n = n - 1 WHERE name = 'fstate:' || old.fstate; END;"
    "CREATE TRIGGER count_orders_upd AFTER UPDATE OF status, fstate ON orders"
    "  WHEN old.status IS NOT new.status OR old.fstate IS NOT new.fstate BEGIN"
    "  UPDATE counters SET n = n + (new.status NOT IN "
    "('FINISH','WAIT_BUYER_ACCEPT_GOODS','IN_CANCEL')) - (old.status NOT IN "
    "('FINISH','WAIT_BUYER_ACCEPT_GOODS','IN_CANCEL'))"
    "    WHERE name = 'orders_open';"
    "  UPDATE counters SET n = n - 1 WHERE name = 'fstate:' || old.fstate;"
    "  UPDATE counters SET n = n + 1 WHERE name = 'fstate:' || new.fstate; END;"
    /* A movement id counts once while any of its legs is not settled. */
    "CREATE TRIGGER count_movements_ins AFTER INSERT ON movements WHEN new.state <> 'settled'"
    "  AND NOT EXISTS (SELECT 1 FROM movements WHERE id = new.id AND leg <> new.leg"
    "  AND state <> 'settled') BEGIN"
    "  UPDATE counters SET n = n + 1 WHERE name = 'movements_pending'; END;"
    "CREATE TRIGGER count_movements_del AFTER DELETE ON movements WHEN old.state <> 'settled'"
    "  AND NOT EXISTS (SELECT 1 FROM movements WHERE id = old.id AND state <> 'settled') BEGIN"
    "  UPDATE counters SET n = n - 1 WHERE name = 'movements_pending'; END;"
    "CREATE TRIGGER count_movements_upd AFTER UPDATE OF state, id ON movements"
    "  WHEN (old.state <> 'settled') IS NOT (new.state <> 'settled') OR old.id IS NOT new.id"
    " BEGIN"
    "  UPDATE counters SET n = n - 1 WHERE name = 'movements_pending' AND old.state <> 'settled'"
    "    AND NOT EXISTS (SELECT 1 FROM movements WHERE id = old.id AND state <> 'settled');"
    "  UPDATE counters SET n = n + 1 WHERE name = 'movements_pending' AND new.state <> 'settled'"
    "    AND NOT EXISTS (SELECT 1 FROM movements WHERE id = new.id AND seq <> new.seq"
    "    AND state <> 'settled'); END;"
    /* The outbox is counted per target too ('outbox_pending:<target>'...), for each
     * upstream's line in status. */
    "INSERT INTO counters(name, n) SELECT 'outbox_pending:' || target,"
    "  COUNT(*) FILTER (WHERE state IN ('pending','inflight')) FROM outbox GROUP BY target;"
    "INSERT INTO counters(name, n) SELECT 'outbox_held:' || target,"
    "  COUNT(*) FILTER (WHERE state = 'held') FROM outbox GROUP BY target;"
    "CREATE TRIGGER count_outbox_ins AFTER INSERT ON outbox BEGIN"
    "  INSERT OR IGNORE INTO counters(name, n) VALUES('outbox_pending:' || new.target, 0),"
    "    ('outbox_held:' || new.target, 0);"
    "  UPDATE counters SET n = n + 1 WHERE name IN (CASE WHEN new.state IN ('pending','inflight')"
    "    THEN 'outbox_pending' WHEN new.state = 'held' THEN 'outbox_held' END,"
    "    CASE WHEN new.state IN ('pending','inflight') THEN 'outbox_pending:'"
    "    WHEN new.state = 'held' THEN 'outbox_held:' END || new.target); END;"
    "CREATE TRIGGER count_outbox_del AFTER DELETE ON outbox BEGIN"
    "  UPDATE counters SET n = n - 1 WHERE name IN (CASE WHEN old.state IN ('pending','inflight')"
    "    THEN 'outbox_pending' WHEN old.state = 'held' THEN 'outbox_held' END,"
    "    CASE WHEN old.state IN ('pending','inflight') THEN 'outbox_pending:'"
    "    WHEN old.state = 'held' THEN 'outbox_held:' END || old.target); END;"
    "CREATE TRIGGER count_outbox_upd AFTER UPDATE OF state, target ON outbox"
    "  WHEN old.state IS NOT new.state OR old.target IS NOT new.target BEGIN"
    "  UPDATE counters SET n = n - 1 WHERE name IN (CASE WHEN old.state IN ('pending','inflight')"
    "    THEN 'outbox_pending' WHEN old.state = 'held' THEN 'outbox_held' END,"
    "    CASE WHEN old.state IN ('pending','inflight') THEN 'outbox_pending:'"
    "    WHEN old.state = 'held' THEN 'outbox_held:' END || old.target);"
    "  INSERT OR IGNORE INTO counters(name, n) VALUES('outbox_pending:' || new.target, 0),"
    "    ('outbox_held:' || new.target, 0);"
    "  UPDATE counters SET n = n + 1 WHERE name IN (CASE WHEN new.state IN ('pending','inflight')"
    "    THEN 'outbox_pending' WHEN new.state = 'held' THEN 'outbox_held' END,"
    "    CASE WHEN new.state IN ('pending','inflight') THEN 'outbox_pending:'"
    "    WHEN new.state = 'held' THEN 'outbox_held:' END || new.target); END;"
    /* The oldest unsent row of a target, without a scan of an outbox that backed up during
     * an outage. */
    "CREATE INDEX outbox_unsent ON outbox(target, created_at)"
    "  WHERE state IN ('pending','inflight','held');"
    "CREATE TABLE exception_due(hour INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
    "INSERT INTO exception_due(hour, n) SELECT deadline / 3600, COUNT(*) FROM exceptions"
    "  WHERE state <> 'resolved' GROUP BY deadline / 3600;"
    "CREATE TRIGGER count_exceptions_ins AFTER INSERT ON exceptions"
    "  WHEN new.state <> 'resolved' BEGIN"
    "  UPDATE counters SET n = n + 1 WHERE name = 'exceptions_open';"
    "  INSERT OR IGNORE INTO exception_due(hour, n) VALUES(new.deadline / 3600, 0);"
    "  UPDATE exception_due SET n = n + 1 WHERE hour = new.deadline / 3600; END;"
    "CREATE TRIGGER count_exceptions_del AFTER DELETE ON exceptions"
    "  WHEN old.state <> 'resolved' BEGIN"
    "  UPDATE counters SET n = n - 1 WHERE name = 'exceptions_open';"
    "  UPDATE exception_due SET n = n - 1 WHERE hour = old.deadline / 3600;"
    "  DELETE FROM exception_due WHERE hour = old.deadline / 3600 AND n <= 0; END;"
    "CREATE TRIGGER count_exceptions_upd AFTER UPDATE OF state, deadline ON exceptions"
    "  WHEN old.state IS NOT new.state OR old.deadline IS NOT new.deadline BEGIN"
    "  UPDATE counters SET n = n + (new.state <> 'resolved') - (old.state <> 'resolved')"
    "    WHERE name = 'exceptions_open';"
    "  UPDATE exception_due SET n = n - 1 WHERE old.state <> 'resolved'"
    "    AND hour = old.deadline / 3600;"
    "  DELETE FROM exception_due WHERE hour = old.deadline / 3600 AND n <= 0;"
    "  INSERT OR IGNORE INTO exception_due(hour, n) SELECT new.deadline / 3600, 0"
    "    WHERE new.state <> 'resolved';"
    "  UPDATE exception_due SET n = n + 1 WHERE new.state <> 'resolved'"
    "    AND hour = new.deadline / 3600; END;",

    /* 8: the rows that are low or out (stock_is_low), so that `stock.list low` pages through
     * them alone instead of scanning every SKU x warehouse. (Spelled "... - threshold <= 0":
     * SQLite 3.40 does not match "sum <= column" against a query's identical term.) */
    "CREATE INDEX stock_low ON stock(sku, warehouse)"
    "  WHERE snapshot + pending - reserved - safety - threshold <= 0;"
    "CREATE INDEX stock_low_by_warehouse ON stock(warehouse, sku)"
    "  WHERE snapshot + pending - reserved - safety - threshold <= 0;",

    /* 9: whether an older row of an entity waits (sync.c take_batch), in one seek: the
     * waiting rows per (target, entity), without the entity's history of done rows. */
    "CREATE INDEX outbox_active ON outbox(target, entity, id)"
    "  WHERE state IN ('pending', 'inflight');",

    /* 10: inbound notices to third-party warehouses (inbound.c): goods
     * announced as coming in, by `tally inbound create` or a transfer into such a warehouse.
     * id is client-made ("in-...") so a retried create is a duplicate; state follows the
     * notice's outbox row (key "in:<WH>:<id>"): pending, sent (done), refused (held),
     * discarded. */
    "CREATE TABLE inbound_notices("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  warehouse INTEGER NOT NULL REFERENCES warehouses(id),"
    "  state TEXT NOT NULL DEFAULT 'pending'"
    "    CHECK (state IN ('pending', 'sent', 'refused', 'discarded')),"
    "  eta INTEGER,"
    "  ref TEXT,"
    "  from_wh TEXT,"
    "  carrier TEXT,"
    "  tracking_no TEXT,"
    "  note TEXT,"
    "  created_by TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE INDEX inbound_by_warehouse ON inbound_notices(warehouse, seq);"
    "CREATE TABLE inbound_lines("
    "  notice INTEGER NOT NULL REFERENCES inbound_notices(seq),"
    "  line INTEGER NOT NULL,"
    "  sku INTEGER NOT NULL REFERENCES skus(id),"
    "  qty INTEGER NOT NULL CHECK (qty > 0),"
    "  PRIMARY KEY (notice, line),"
    "  UNIQUE (notice, sku)) WITHOUT ROWID;",
    /* 11: the marketplace's logistics services (aliexpress.logistics.redefining.
     * listlogisticsservice), replaced whole at each pull (conn_aliexpress.c): the keys a
     * fulfil's service_name takes, each with its tracking number rule. mp_services_pull says
     * when the list was last read (no row: never, and a fulfil waits for it). */
    "CREATE TABLE mp_services(service_name TEXT PRIMARY KEY, display_name TEXT,"
    "  logistics_company TEXT, tracking_no_regex TEXT, min_process_day INTEGER,"
    "  max_process_day INTEGER, recommend_order INTEGER) WITHOUT ROWID;"
    "CREATE TABLE mp_services_pull(id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  pulled_at INTEGER NOT NULL, services INTEGER NOT NULL);",
    /* 12: a ship-to the marketplace sent masked ("83****334", conn_aliexpress.c ae_masked):
     * receipt 1 = its full ship-to is still to be read (order.receiptinfo.get), 2 = that read
     * was refused (receipt_error says why); 0 = nothing to read. The order is reserved but
     * not sent to a warehouse while receipt <> 0 (fulfil.c). A purged order is never read. */
    "ALTER TABLE orders ADD COLUMN receipt INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE orders ADD COLUMN receipt_error TEXT;"
    "CREATE INDEX orders_receipt ON orders(id) WHERE receipt = 1;"
    /* Orders pulled before masked fields were recognised hold the masked text itself (a
     * re-pull keeps a stored field): those not sent to a warehouse yet get it read, so that
     * no outbound order carries "A** G*****" or "28***". */
    "UPDATE orders SET receipt = 1, fdirty = 1 WHERE purged_at IS NULL AND fstate IN ('new',"
    " 'pending', 'ready', 'allocated') AND (instr(buyer_name, '**') OR instr(address, '**')"
    " OR instr(city, '**') OR instr(postcode, '**') OR instr(phone, '**'));"
    "UPDATE orders SET buyer_name = IIF(instr(buyer_name, '**'), NULL, buyer_name),"
    " address = IIF(instr(address, '**'), NULL, address), city = IIF(instr(city, '**'), NULL,"
    " city), postcode = IIF(instr(postcode, '**'), NULL, postcode), phone = IIF(instr(phone,"
    " '**'), NULL, phone) WHERE receipt = 1;",
    /* 13: goods on their way into a warehouse as its last read reported them (tally Warehouse
     * API `inbound`, Goodcang `onway`, 4PX `onway_stock`; whfeed.c); NULL = never reported.
     * Shown only: never on hand, never available, never published. */
    "ALTER TABLE stock ADD COLUMN inbound INTEGER;",

    /* 14: open exceptions by the second of their deadline, beside exception_due's hours, so
     * that status counts the overdue ones of the current hour from at most 3,600 rows instead
     * of reading every such exception (an orders page that raises thousands at once gives them
     * all deadlines in one hour). Kept by the same changes as exception_due; a second that
     * empties is deleted. */
    "CREATE TABLE exception_due_s(second INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
    "INSERT INTO exception_due_s(second, n) SELECT deadline, COUNT(*) FROM exceptions"
    "  WHERE state <> 'resolved' GROUP BY deadline;"
    "CREATE TRIGGER count_exceptions_s_ins AFTER INSERT ON exceptions"
    "  WHEN new.state <> 'resolved' BEGIN"
    "  INSERT OR IGNORE INTO exception_due_s(second, n) VALUES(new.deadline, 0);"
    "  UPDATE exception_due_s SET n = n + 1 WHERE second = new.deadline; END;"
    "CREATE TRIGGER count_exceptions_s_del AFTER DELETE ON exceptions"
    "  WHEN old.state <> 'resolved' BEGIN"
    "  UPDATE exception_due_s SET n = n - 1 WHERE second = old.deadline;"
    "  DELETE FROM exception_due_s WHERE second = old.deadline AND n <= 0; END;"
    "CREATE TRIGGER count_exceptions_s_upd AFTER UPDATE OF state, deadline ON exceptions"
    "  WHEN old.state IS NOT new.state OR old.deadline IS NOT new.deadline BEGIN"
    "  UPDATE exception_due_s SET n = n - 1 WHERE old.state <> 'resolved'"
    "    AND second = old.deadline;"
    "  DELETE FROM exception_due_s WHERE second = old.deadline AND n <= 0;"
    "  INSERT OR IGNORE INTO exception_due_s(second, n) SELECT new.deadline, 0"
    "    WHERE new.state <> 'resolved';"
    "  UPDATE exception_due_s SET n = n + 1 WHERE new.state <> 'resolved'"
    "    AND second = new.deadline; END;",

    /* 15: where the fulfilment pass's rounds stand (fulfil.c), so that a start goes on from
     * there instead of going over every open order again: the ship-by scan's position in
     * (ship_by, id) order, the retry round's position in orders_ready order and when the
     * next round is due, the rescoring round's position (orders.id) and when the next is
     * due. One row, moved in the same transaction as the work it covers. A replica upgraded
     * to it starts at the beginning (the one full pass it would have done anyway). */
    "CREATE TABLE fulfil_cursor(id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  deadline_by INTEGER NOT NULL, deadline_id INTEGER NOT NULL,"
    "  retry_prio INTEGER NOT NULL, retry_by INTEGER NOT NULL, retry_id INTEGER NOT NULL,"
    "  next_retry INTEGER NOT NULL, priority_id INTEGER NOT NULL,"
    "  next_priority INTEGER NOT NULL);"
    "INSERT INTO fulfil_cursor VALUES(1, -9223372036854775808, 0, 9223372036854775807,"
    "  -9223372036854775808, 0, 0, 0, 0);",

    /* 16: the outbox counters for less per row (bench_drain.sh: a drain writes each row
     * twice, pending -> inflight -> done). Taking a row in flight no longer touches them
     * (pending and inflight both count as pending), and each counter is one lookup by its
     * name: `name IN (a, b)` built a temporary table per row. outbox_due (state,
     * next_attempt_at), which every change of state rewrote, gives way to the rows in flight
     * alone: the only query by state without a target resets those at a start. */
    "DROP TRIGGER IF EXISTS count_outbox_ins;"
    "CREATE TRIGGER count_outbox_ins AFTER INSERT ON outbox BEGIN"
    "  INSERT OR IGNORE INTO counters(name, n) VALUES('outbox_pending:' || new.target, 0),"
    "    ('outbox_held:' || new.target, 0);"
    "  UPDATE counters SET n = n + 1 WHERE new.state IN ('pending','inflight')"
    "    AND name = 'outbox_pending';"
    "  UPDATE counters SET n = n + 1 WHERE new.state IN ('pending','inflight')"
    "    AND name = 'outbox_pending:' || new.target;"
    "  UPDATE counters SET n = n + 1 WHERE new.state = 'held' AND name = 'outbox_held';"
    "  UPDATE counters SET n = n + 1 WHERE new.state = 'held'"
    "    AND name = 'outbox_held:' || new.target; END;"
    "DROP TRIGGER IF EXISTS count_outbox_upd;"
    "CREATE TRIGGER count_outbox_upd AFTER UPDATE OF state, target ON outbox"
    "  WHEN old.target IS NOT new.target"
    "  OR (CASE WHEN old.state IN ('pending','inflight') THEN 1 WHEN old.state = 'held' THEN 2"
    "      ELSE 0 END)"
    "  IS NOT (CASE WHEN new.state IN ('pending','inflight') THEN 1 WHEN new.state = 'held'"
    "      THEN 2 ELSE 0 END) BEGIN"
    "  UPDATE counters SET n = n - 1 WHERE old.state IN ('pending','inflight')"
    "    AND name = 'outbox_pending';"
    "  UPDATE counters SET n = n - 1 WHERE old.state IN ('pending','inflight')"
    "    AND name = 'outbox_pending:' || old.target;"
    "  UPDATE counters SET n = n - 1 WHERE old.state = 'held' AND name = 'outbox_held';"
    "  UPDATE counters SET n = n - 1 WHERE old.state = 'held'"
    "    AND name = 'outbox_held:' || old.target;"
    "  INSERT OR IGNORE INTO counters(name, n) SELECT 'outbox_pending:' || new.target, 0"
    "    WHERE old.target IS NOT new.target"
    "    UNION ALL SELECT 'outbox_held:' || new.target, 0 WHERE old.target IS NOT new.target;"
    "  UPDATE counters SET n = n + 1 WHERE new.state IN ('pending','inflight')"
    "    AND name = 'outbox_pending';"
    "  UPDATE counters SET n = n + 1 WHERE new.state IN ('pending','inflight')"
    "    AND name = 'outbox_pending:' || new.target;"
    "  UPDATE counters SET n = n + 1 WHERE new.state = 'held' AND name = 'outbox_held';"
    "  UPDATE counters SET n = n + 1 WHERE new.state = 'held'"
    "    AND name = 'outbox_held:' || new.target; END;"
    "DROP INDEX IF EXISTS outbox_due;"
    "CREATE INDEX outbox_inflight ON outbox(id) WHERE state = 'inflight';"
    /* outbox_unsent's condition without a list of three: SQLite builds a temporary table
     * for `IN` of more than two constants each time a statement that changes a row's state
     * runs (twice: old row and new), where `NOT IN` of two compares. The status reads name
     * the same condition, so that they still probe it. */
    "DROP INDEX IF EXISTS outbox_unsent;"
    "CREATE INDEX outbox_unsent ON outbox(target, created_at)"
    "  WHERE state NOT IN ('done', 'discarded');",

    /* 17: the title index filled in the background (titleidx.h): a SKU inserted, or whose
     * title changes, is queued (sku_titles_todo) instead of indexed in the writing
     * transaction (no OR IGNORE in the triggers: an upsert's conflict policy overrides it); a title
     * still queued is not in the index, so a change or a delete of it removes nothing from the
     * index. A replica upgraded to it has every title indexed and an empty queue. catalog.search
     * reads the queued titles too (cmd_catalog.c). */
    "CREATE TABLE sku_titles_todo(id INTEGER PRIMARY KEY);"
    "DROP TRIGGER IF EXISTS skus_title_ins;"
    "DROP TRIGGER IF EXISTS skus_title_del;"
    "DROP TRIGGER IF EXISTS skus_title_upd;"
    "CREATE TRIGGER skus_title_queue_ins AFTER INSERT ON skus BEGIN"
    "  INSERT INTO sku_titles_todo(id) SELECT new.id"
    "    WHERE NOT EXISTS (SELECT 1 FROM sku_titles_todo WHERE id = new.id); END;"
    "CREATE TRIGGER skus_title_queue_del AFTER DELETE ON skus BEGIN"
    "  INSERT INTO sku_titles(sku_titles, rowid, title) SELECT 'delete', old.id, old.title"
    "    WHERE NOT EXISTS (SELECT 1 FROM sku_titles_todo WHERE id = old.id);"
    "  DELETE FROM sku_titles_todo WHERE id = old.id; END;"
    "CREATE TRIGGER skus_title_queue_upd AFTER UPDATE OF title ON skus"
    "  WHEN old.title IS NOT new.title BEGIN"
    "  INSERT INTO sku_titles(sku_titles, rowid, title) SELECT 'delete', old.id, old.title"
    "    WHERE NOT EXISTS (SELECT 1 FROM sku_titles_todo WHERE id = old.id);"
    "  INSERT INTO sku_titles_todo(id) SELECT new.id"
    "    WHERE NOT EXISTS (SELECT 1 FROM sku_titles_todo WHERE id = new.id); END;",

    /* 18: what the marketplace's order list said of an order ("gmt_update|order_status",
     * conn_aliexpress.c order_seen) when its details were last stored: an orders round reads
     * the details again only when the list says otherwise. NULL (every order of a replica
     * upgraded to it, one the list gave no update time for, one imported) reads them. */
    "ALTER TABLE orders ADD COLUMN mp_seen TEXT;",

    /* 19: the outbox retention (retain.c) keeps a transfer's origin leg while the notice that
     * waits for it is not over: the notices of a leg by its movement id, in one seek. The
     * retention walks the outbox by id, so the drain writes no index for it. */
    "CREATE INDEX inbound_by_ref ON inbound_notices(ref) WHERE from_wh IS NOT NULL;",

    /* 20: the title index merges its segments in slices of its own (titleidx.h), never inside
     * an insert: no automatic merging, and a crisis merge (a whole level at once, in the
     * statement that writes a segment) only once a level holds 64 segments, which the
     * background job never lets happen. FTS5 keeps both in sku_titles_config. */
    "INSERT INTO sku_titles(sku_titles, rank) VALUES('automerge', 0);"
    "INSERT INTO sku_titles(sku_titles, rank) VALUES('crisismerge', 64);",

    /* 21: a new SKU queued for the title index by INSERT OR IGNORE instead of a NOT EXISTS
     * subquery, which cost 1.1 us a row more (200k placeholder SKUs: 0.77 s of CPU against
     * 0.54 s; the first warehouse of an initial sync creates one per SKU). The insert
     * trigger's OR IGNORE holds under the statements tallyd inserts SKUs with (plain
     * INSERT, and the insert path of an upsert: ON CONFLICT DO UPDATE / DO NOTHING;
     * unit.test_catalog test_title_queue_stale checks a queued id left behind); only an
     * outer INSERT OR ABORT / FAIL / ROLLBACK would override it, and none is used. The
     * update trigger keeps its NOT EXISTS: there an upsert's DO UPDATE does override the
     * trigger's conflict policy (migration 17). A new name, so that rh_rewind_schema takes
     * it away with the schema. */
    "DROP TRIGGER IF EXISTS skus_title_queue_ins;"
    "CREATE TRIGGER skus_title_queue_new AFTER INSERT ON skus BEGIN"
    "  INSERT OR IGNORE INTO sku_titles_todo(id) VALUES(new.id); END;",

    /* 22: the rows of an upstream waiting out a retry backoff, in one range: when the link is
     * back after an outage they go at once (sync.c lift_backoff), on the loop, without going
     * through every waiting row of the upstream (a drain's 100k). A row is in it only between
     * a failed attempt and the next: rows that never failed are not. */
    "CREATE INDEX outbox_backoff ON outbox(target, next_attempt_at)"
    "  WHERE state = 'pending' AND attempts > 0;",

    /* 23: the CHECK constraints that list more than two values compare with each instead
     * (checks_as_comparisons, below), and so do the orders' counter triggers: `status NOT IN
     * (three)` built its temporary index at every order inserted, deleted or whose status
     * changed (the same value: status is NOT NULL). */
    "DROP TRIGGER IF EXISTS count_orders_ins;"
    "DROP TRIGGER IF EXISTS count_orders_del;"
    "DROP TRIGGER IF EXISTS count_orders_upd;"
    "CREATE TRIGGER count_orders_ins AFTER INSERT ON orders BEGIN"
    "  UPDATE counters SET n = n + (new.status <> 'FINISH'"
    "    AND new.status <> 'WAIT_BUYER_ACCEPT_GOODS' AND new.status <> 'IN_CANCEL')"
    "    WHERE name = 'orders_open';"
    "  UPDATE counters SET n = n + 1 WHERE name = 'fstate:' || new.fstate; END;"
    "CREATE TRIGGER count_orders_del AFTER DELETE ON orders BEGIN"
    "  UPDATE counters SET n = n - (old.status <> 'FINISH'"
    "    AND old.status <> 'WAIT_BUYER_ACCEPT_GOODS' AND old.status <> 'IN_CANCEL')"
    "    WHERE name = 'orders_open';"
    "  UPDATE counters SET n = n - 1 WHERE name = 'fstate:' || old.fstate; END;"
    "CREATE TRIGGER count_orders_upd AFTER UPDATE OF status, fstate ON orders"
    "  WHEN old.status IS NOT new.status OR old.fstate IS NOT new.fstate BEGIN"
    "  UPDATE counters SET n = n + (new.status <> 'FINISH'"
    "    AND new.status <> 'WAIT_BUYER_ACCEPT_GOODS' AND new.status <> 'IN_CANCEL')"
    "    - (old.status <> 'FINISH' AND old.status <> 'WAIT_BUYER_ACCEPT_GOODS'"
    "    AND old.status <> 'IN_CANCEL') WHERE name = 'orders_open';"
    "  UPDATE counters SET n = n - 1 WHERE name = 'fstate:' || old.fstate;"
    "  UPDATE counters SET n = n + 1 WHERE name = 'fstate:' || new.fstate; END;",
};

/*
 * Migration 23. SQLite evaluates `x IN (a, b, c, ...)` of more than two constants by building a
 * temporary index of the list (OpenEphemeral: a b-tree, its pager and their allocations) each
 * time a statement that checks it runs; a CHECK constraint is checked by every INSERT, and by
 * every UPDATE of its column. A movement (stock.move) ran three of them (movements.kind and
 * .state, outbox.state), about a fifth of the loop's time per movement written; a drain, the
 * fulfilment pass and an order's every step ran them too. `x = a OR x = b OR ...` is the same
 * constraint (the same affinity and collation, and NULL passes both), compared in place.
 *
 * A table's constraints cannot be altered, and rebuilding the tables (with their indexes and
 * triggers) would copy every row at the upgrade. A CHECK constraint holds no data: the
 * definition in sqlite_master is rewritten instead, as SQLite's documentation describes for
 * such changes (lang_altertable.html, "Making Other Kinds Of Table Schema Changes": in one
 * transaction, writable_schema on, the table's sql updated, schema_version incremented), in
 * the migration's transaction. The schema is then read again on this connection
 * (writable_schema=RESET) and every table's definition prepared by SQLite's own parser before
 * the commit: a rewrite it could not read fails the migration, rolled back with nothing
 * changed. Each rewrite is the exact text an earlier migration wrote; one not found as written
 * (a replica whose schema was edited by hand, or a test's replica taken back to an older
 * schema, rh_rewind_schema, whose tables keep their newer text) is left as it is: both forms
 * hold the same rows.
 */
struct check_rewrite {
    const char *table, *from, *to;
};

static const struct check_rewrite check_rewrites[] = {
    {"warehouses", "CHECK(fulfilment IN ('station','outbound','none'))",
     "CHECK(fulfilment = 'station' OR fulfilment = 'outbound' OR fulfilment = 'none')"},
    {"movements", "CHECK(kind IN     ('receive','pick','adjust','count','transfer','return'))",
     "CHECK(kind = 'receive' OR kind = 'pick' OR kind = 'adjust' OR kind = 'count'"
     " OR kind = 'transfer' OR kind = 'return')"},
    {"movements", "CHECK(state IN ('pending','acked','settled'))",
     "CHECK(state = 'pending' OR state = 'acked' OR state = 'settled')"},
    {"orders",
     "CHECK(fstate IN  ('new','pending','ready','allocated','sent','picked','partial','shipped',"
     "'uploaded',   'finished','cancelled'))",
     "CHECK(fstate = 'new' OR fstate = 'pending' OR fstate = 'ready' OR fstate = 'allocated'"
     " OR fstate = 'sent' OR fstate = 'picked' OR fstate = 'partial' OR fstate = 'shipped'"
     " OR fstate = 'uploaded' OR fstate = 'finished' OR fstate = 'cancelled')"},
    {"exceptions", "CHECK(state IN ('open','acknowledged','resolved'))",
     "CHECK(state = 'open' OR state = 'acknowledged' OR state = 'resolved')"},
    {"outbox", "CHECK(state IN ('pending','inflight','held','done','discarded'))",
     "CHECK(state = 'pending' OR state = 'inflight' OR state = 'held' OR state = 'done'"
     " OR state = 'discarded')"},
    {"allocations", "CHECK(state IN ('reserved','consumed','shipped'))",
     "CHECK(state = 'reserved' OR state = 'consumed' OR state = 'shipped')"},
    {"inbound_notices", "CHECK (state IN ('pending', 'sent', 'refused', 'discarded'))",
     "CHECK (state = 'pending' OR state = 'sent' OR state = 'refused' OR state = 'discarded')"},
};

/* Runs one statement of no result (the pragmas below; nothing of input in them). */
static int run(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

/* The table's definition with `r` applied, in a new string (NULL: `from` is not in it exactly
 * once, or out of memory: *nomem says which). */
static char *rewrite_one(const char *sql, const struct check_rewrite *r, bool *nomem)
{
    const char *at = strstr(sql, r->from);
    size_t nfrom = strlen(r->from), nto = strlen(r->to), n = strlen(sql);
    *nomem = false;
    if (!at || strstr(at + 1, r->from))
        return NULL;
    char *out = malloc(n - nfrom + nto + 1);
    if (!out) {
        *nomem = true;
        return NULL;
    }
    size_t head = (size_t)(at - sql);
    memcpy(out, sql, head);
    memcpy(out + head, r->to, nto);
    memcpy(out + head + nto, at + nfrom, n - head - nfrom + 1);
    return out;
}

static int checks_as_comparisons(sqlite3 *db, char *err, size_t errlen)
{
    size_t nr = sizeof check_rewrites / sizeof check_rewrites[0];
    char *defs[sizeof check_rewrites / sizeof check_rewrites[0]] = {0};
    sqlite3_stmt *get = NULL, *put = NULL;
    int rc = sqlite3_prepare_v2(
        db, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", -1, &get, NULL);
    int changed = 0;
    /* The new definitions, table by table (defs[i]: the table of rewrite i, when it is the
     * first rewrite of its table and some rewrite of it applied). */
    for (size_t i = 0; rc == SQLITE_OK && i < nr; i++) {
        bool first = true;
        for (size_t k = 0; k < i; k++)
            first &= strcmp(check_rewrites[k].table, check_rewrites[i].table) != 0;
        if (!first)
            continue;
        sqlite3_bind_text(get, 1, check_rewrites[i].table, -1, SQLITE_STATIC);
        rc = sqlite3_step(get);
        char *def = NULL;
        if (rc == SQLITE_ROW && sqlite3_column_text(get, 0)) {
            def = strdup((const char *)sqlite3_column_text(get, 0));
            rc = def ? SQLITE_OK : SQLITE_NOMEM;
        } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
            rc = SQLITE_OK; /* no such table here: nothing to rewrite */
        }
        sqlite3_reset(get);
        bool any = false;
        for (size_t k = i; def && rc == SQLITE_OK && k < nr; k++) {
            if (strcmp(check_rewrites[k].table, check_rewrites[i].table) != 0)
                continue;
            bool nomem;
            char *next = rewrite_one(def, &check_rewrites[k], &nomem);
            if (nomem)
                rc = SQLITE_NOMEM;
            if (next) {
                free(def);
                def = next;
                any = true;
            }
        }
        if (any && rc == SQLITE_OK) {
            defs[i] = def;
            changed++;
        } else {
            free(def);
        }
    }
    sqlite3_finalize(get);
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "the CHECK constraints' rewrite: %s", sqlite3_errstr(rc));
    int version = 0;
    if (rc == SQLITE_OK && changed > 0) {
        sqlite3_stmt *v = NULL;
        rc = sqlite3_prepare_v2(db, "PRAGMA schema_version", -1, &v, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(v)) == SQLITE_ROW) {
            version = sqlite3_column_int(v, 0);
            rc = SQLITE_OK;
        }
        sqlite3_finalize(v);
        if (rc != SQLITE_OK)
            snprintf(err, errlen, "PRAGMA schema_version: %s", sqlite3_errmsg(db));
        if (rc == SQLITE_OK)
            rc = run(db, "PRAGMA writable_schema=ON", err, errlen);
        if (rc == SQLITE_OK) {
            rc = sqlite3_prepare_v2(
                db, "UPDATE sqlite_master SET sql = ?2 WHERE type = 'table' AND name = ?1", -1,
                &put, NULL);
            for (size_t i = 0; rc == SQLITE_OK && i < nr; i++) {
                if (!defs[i])
                    continue;
                sqlite3_bind_text(put, 1, check_rewrites[i].table, -1, SQLITE_STATIC);
                sqlite3_bind_text(put, 2, defs[i], -1, SQLITE_STATIC);
                rc = sqlite3_step(put);
                rc = rc == SQLITE_DONE && sqlite3_changes(db) == 1 ? SQLITE_OK
                     : rc == SQLITE_DONE                           ? SQLITE_CORRUPT
                                                                   : rc;
                sqlite3_reset(put);
            }
            if (rc != SQLITE_OK)
                snprintf(err, errlen, "the CHECK constraints' rewrite: %s", sqlite3_errmsg(db));
            sqlite3_finalize(put);
        }
        if (rc == SQLITE_OK) {
            char bump[64]; /* (an integer read from the replica) */
            snprintf(bump, sizeof bump, "PRAGMA schema_version=%d", version + 1);
            rc = run(db, bump, err, errlen);
        }
        /* Off in every case, and the schema read again: from the rewritten definitions when
         * they stand, else (the caller rolls back) from the replica's own. */
        char ignored[64];
        int off = run(db, "PRAGMA writable_schema=RESET", rc == SQLITE_OK ? err : ignored,
                      rc == SQLITE_OK ? errlen : sizeof ignored);
        if (rc == SQLITE_OK)
            rc = off;
    }
    for (size_t i = 0; i < nr; i++)
        free(defs[i]);
    if (rc != SQLITE_OK || changed == 0)
        return rc;
    /* Each table's new definition read by SQLite's parser (the schema is loaded again at the
     * next statement): one it cannot read fails here, before the commit. */
    sqlite3_stmt *t = NULL;
    rc =
        sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table'", -1, &t, NULL);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(t)) == SQLITE_ROW) {
        }
    }
    if (rc == SQLITE_DONE)
        rc = SQLITE_OK;
    else
        snprintf(err, errlen, "the schema after the CHECK constraints' rewrite: %s",
                 sqlite3_errmsg(db));
    sqlite3_finalize(t);
    return rc;
}

/* Migrations done in C, after their SQL (by migration number - 1). */
static int (*const migration_code[])(sqlite3 *, char *, size_t) = {
    [22] = checks_as_comparisons,
};

int schema_latest(void)
{
    return (int)(sizeof migrations / sizeof migrations[0]);
}

int schema_migrate(sqlite3 *db, int from, char *err, size_t errlen)
{
    return schema_migrate_to(db, from, schema_latest(), err, errlen);
}

int schema_migrate_to(sqlite3 *db, int from, int to, char *err, size_t errlen)
{
    if (to > schema_latest())
        to = schema_latest();
    for (int v = from; v < to; v++) {
        char *msg = NULL;
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version=%d", v + 1);
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, migrations[v], NULL, NULL, &msg);
        char cerr[256] = "";
        if (rc == SQLITE_OK && (size_t)v < sizeof migration_code / sizeof migration_code[0] &&
            migration_code[v] && (rc = migration_code[v](db, cerr, sizeof cerr)) != SQLITE_OK &&
            !msg)
            msg = sqlite3_mprintf("%s", cerr);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db, bump, NULL, NULL, &msg);
        if (rc == SQLITE_OK) {
            rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
            store_check_sync(sqlite3_extended_errcode(db), "a migration's sync of the WAL");
        }
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "schema migration %d failed: %s", v + 1,
                     msg ? msg : sqlite3_errstr(rc));
            sqlite3_free(msg);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    return 0;
}
