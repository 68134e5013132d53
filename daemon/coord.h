/*
 * Two coordinators on one account (DESIGN.md "Several stations, one seller"): the coordinator
 * marks what it sends in the references the upstreams echo back, and a coordinator that sees
 * another's mark stops making account-wide decisions (allocating orders, creating outbound
 * orders, publishing marketplace stock) and raises a `coordinator` exception until a person
 * resolves it.
 *
 * The mark is "<name>#<id>": the station's name (letters, digits, '.', '_', '-', at most 32)
 * and a random 64-bit station id in 16 lower-case hex digits, made once per replica
 * (counters 'station_id'), so two stations set up from the same example config (the same
 * name) still tell each other apart. A replica copied to a second machine keeps the id: that
 * second station is not told apart (README "Several stations").
 *
 * Before its first decision a coordinator reads, once per replica, the outbound orders of
 * every warehouse it sends outbound orders to (counters 'coord_read:<code>', set in the page
 * transaction of the round's last page): a second station sees the first one's marks before
 * it allocates anything.
 */
#ifndef TALLY_COORD_H
#define TALLY_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tallyd.h"

/* Reads (or makes, in its own transaction) the station id. Before the loop runs; 0 or a
 * TALLY_E_* code with err filled. */
int coord_start(struct tallyd *d, char *err, size_t errlen);

/* This station's mark ("" until coord_start ran). */
const char *coord_mark(struct tallyd *d);

/*
 * Whether this station makes the account-wide decisions now: it is the coordinator, has read
 * every outbound warehouse's orders once, and no `coordinator` exception is open or
 * acknowledged. When not and why is not NULL, why says why (for `status`).
 */
bool coord_decides(struct tallyd *d, char *why, size_t cap);

/* A warehouse's outbound feed echoed `mark` (a free text that may hold a mark: "" or NULL
 * when none) on order `order_id` at warehouse `wh`. Another coordinator's mark raises the
 * exception; once a person has resolved that station's exception, only its marks on orders
 * this replica knows and that were placed after the resolution do. Inside the page
 * transaction; 0 or a TALLY_E_* code. */
int coord_seen(struct tallyd *d, int64_t wh, const char *order_id, const char *mark);

/*
 * An inbound notice read back from a third-party warehouse (a look-up of its reference: the
 * only time the connectors read notices back) whose echoed remark `text` may end with a mark
 * ("tally coordinator NAME#ID" last, as the connectors write it, or the mark alone; a
 * station-like text elsewhere in the remark, e.g. in a note, is none): another coordinator's
 * raises the same `coordinator` exception as an outbound order would.
 * `created` is the notice's creation time at the warehouse (epoch seconds, 0 unknown): once a
 * person resolved that station's exception, only its notices created after the resolution
 * count. Where each kind echoes the mark: coord.c. Runs in the caller's transaction when one
 * is open, else in its own, begun only when the mark is another station's; 0 or TALLY_E_*.
 */
int coord_seen_notice(struct tallyd *d, const char *wh_code, const char *notice_id,
                      const char *text, int64_t created);

/* The last page of a round of warehouse `code`'s outbound stream was applied (inside its
 * transaction). */
int coord_outbound_read(struct tallyd *d, const char *code);
/* A warehouse's inventory read to the end once (sync.c, after the round's last page, in a
 * transaction of its own): until every warehouse with an upstream has been, the coordinator
 * decides nothing, so no order is allocated past the warehouse that holds its goods. */
int coord_inventory_read(struct tallyd *d, const char *code);

/* Parses the mark held in `text` (the last "<name>#<16 hex>" in it): 1 found (name and id
 * set), 0 none. Exposed for the unit test. */
int coord_parse(const char *text, char *name, size_t cap, uint64_t *id);

#endif
