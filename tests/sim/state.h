/* state: the simulated world — catalog, stock per warehouse, orders, what was published to the
 * marketplace, movements, transfers and outbound orders — and every change to it.
 *
 * One process-wide lock (struct sim.lock) guards all of it: every function here that reads or
 * changes the world expects the caller to hold it. Request handlers take the lock for the whole
 * of their work, so each request sees and leaves a consistent world.
 *
 * Versions: each warehouse has a version counter that grows by exactly one per stock-row change,
 * so a row's version names the change that produced it and `vlog` (version -> SKU) lets the
 * inventory feed walk changes in version order without sorting. Outbound orders have their own
 * counter and log in the same way. */
#ifndef SIM_STATE_H
#define SIM_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strmap;
struct fault_set;
struct stats;

#define SIM_MAX_WAREHOUSES 32
#define SIM_WH_CODE_MAX 16
#define SIM_SECRET_MAX 256
#define ORDER_MAX_LINES 3
#define OB_MAX_LINES 100

/* Order statuses of the marketplace, in the platform's spelling (order_status_name). */
enum order_status {
    OS_PLACE_ORDER_SUCCESS,
    OS_RISK_CONTROL,
    OS_WAIT_SELLER_SEND_GOODS,
    OS_SELLER_PART_SEND_GOODS,
    OS_WAIT_BUYER_ACCEPT_GOODS,
    OS_IN_CANCEL,
    OS_IN_ISSUE,
    OS_IN_FROZEN,
    OS_FUND_PROCESSING,
    OS_WAIT_SELLER_EXAMINE_MONEY,
    OS_FINISH,
    OS_COUNT
};

const char *order_status_name(int status);
/* The status called s, or -1. */
int order_status_parse(const char *s);

enum ob_status { OB_ACCEPTED, OB_PICKING, OB_PACKED, OB_SHIPPED, OB_CANCELLED, OB_EXCEPTION };

const char *ob_status_name(int status);
int ob_status_parse(const char *s);

/* The API a simulated warehouse speaks (--warehouses CODE:KIND). A third-party warehouse's
 * app key is SIM_TPL_APP_KEY; its app token (Goodcang) or app secret (4PX) is the warehouses'
 * token (--wh-token-file). */
enum sim_wh_kind { SIM_WH_TALLY = 0, SIM_WH_GOODCANG, SIM_WH_FOURPX };
#define SIM_TPL_APP_KEY "tally-sim-3pl-key"
const char *sim_wh_kind_name(int kind);

struct sim_config {
    uint64_t seed;
    size_t n_skus;
    size_t n_orders;
    size_t n_warehouses;
    char warehouses[SIM_MAX_WAREHOUSES][SIM_WH_CODE_MAX + 1];
    int wh_kinds[SIM_MAX_WAREHOUSES]; /* enum sim_wh_kind: the API each warehouse speaks */
    char app_key[SIM_SECRET_MAX];
    char app_secret[SIM_SECRET_MAX];
    char access_token[SIM_SECRET_MAX];
    char wh_token[SIM_SECRET_MAX];
    int64_t start_time;        /* sim clock at start, epoch seconds; 0 = wall clock */
    int64_t outbound_step;     /* sim seconds between outbound states; 0 = only by control */
    int64_t timestamp_window;  /* max |timestamp - now| accepted by the gateway; 0 = any */
    bool outbound_stock_check; /* picking with too little stock -> exception */
    bool outbound_consume;     /* shipping takes the lines off on_hand */
    bool verbose;
    char listen[16]; /* IPv4 address served on, dotted (default 127.0.0.1) */
};

struct product {
    int64_t created, modified; /* sim seconds */
    uint32_t first_sku;
    uint16_t n_skus;
    uint8_t brand;
    uint8_t offline;
    uint32_t title_seed;
};

#define SKU_NO_ATTR 0xFF

struct sku {
    const char *code; /* owned by sim.sku_codes */
    uint32_t product;
    int32_t price_cents;
    uint8_t colour, size; /* indexes into gen's tables, or SKU_NO_ATTR */
};

struct stock_row {
    int64_t on_hand;
    int64_t version;
    uint32_t updated_at; /* sim seconds */
    int32_t inbound;
};

struct movement {
    const char *id; /* owned by the warehouse's movement_ids */
    uint32_t sku;
    uint32_t apply_count;
    int64_t delta;
    int64_t version;
};

struct transfer {
    const char *id;
    uint32_t sku;
    uint32_t apply_count;
    int64_t qty;
    int to;
    int64_t from_version, to_version;
};

struct ob_line {
    uint32_t sku;
    int64_t qty;
};

struct outbound {
    const char *id;
    struct ob_line *lines;
    uint32_t n_lines;
    uint8_t status;
    char *ship_to; /* canonical JSON text of ship_to, or NULL */
    char *service; /* or NULL */
    char *reason;  /* for exception / cancelled, or NULL */
    char *note;    /* the client's text kept and echoed (tally API "station", Goodcang
                    * order_desc), from the first create; or NULL */
    int64_t version;
    int64_t created_at, updated_at, next_due; /* sim seconds; next_due INT64_MAX = none */
    uint32_t create_count;                    /* times a create was applied: 1, always */
    uint32_t repeat_count; /* identical creates answered with the existing order */
    char carrier[24];
    char tracking[40];
};

struct warehouse {
    char code[SIM_WH_CODE_MAX + 1];
    int index;
    int64_t version_base; /* versions of this warehouse start after this */
    int64_t version;      /* current */
    struct stock_row *rows;
    uint32_t *vlog; /* vlog[v - version_base - 1] = SKU that got version v */
    size_t vlog_len, vlog_cap;

    struct strmap *movement_ids;
    struct movement *movements;
    size_t n_movements, cap_movements;

    struct strmap *transfer_ids;
    struct transfer *transfers;
    size_t n_transfers, cap_transfers;

    struct strmap *outbound_ids;
    struct outbound *outbound;
    size_t n_outbound, cap_outbound;
    int64_t ob_version;
    uint32_t *ob_log; /* ob_log[v - 1] = outbound order that got version v */
    size_t ob_log_len, ob_log_cap;
    int64_t ob_next_due; /* earliest pending automatic transition */
    uint64_t tracking_seq;
};

enum ful_result { FUL_APPLIED, FUL_ALREADY_SHIPPED, FUL_REJECTED, FUL_INITIAL };

struct fulfilment {
    char *logistics_no, *send_type, *service_name, *tracking_website;
    char code[48]; /* error code for a rejected one */
    int64_t at_ms;
    uint8_t result;
};

struct order_line {
    uint32_t sku;
    uint32_t qty;
    int32_t unit_price_cents;
};

struct order {
    int64_t id;
    uint64_t buyer_seed;             /* the buyer and ship-to address are regenerated from this */
    int64_t created, modified, paid; /* sim seconds; paid = 0 when not paid */
    uint8_t status, country, n_lines;
    struct order_line lines[ORDER_MAX_LINES];
    struct fulfilment *ful;
    uint32_t n_ful, cap_ful;
};

struct pub_entry {
    int64_t value;
    int64_t at_ms;
    /* When it was published: the units of the SKU in orders placed since start (mp_ordered)
     * and on hand at every warehouse (their sum): what was truly there to sell is
     * warehouses - ordered while nothing of those orders has shipped. */
    int64_t ordered, warehouses;
    uint32_t next; /* index + 1 of the next entry of the same SKU; 0 = last */
};

struct sim {
    pthread_mutex_t lock;
    struct sim_config cfg;

    int64_t clock_base_sim_ms, clock_base_mono_ms;
    _Atomic int64_t clock_offset_ms; /* /control/advance */
    atomic_bool stopping;
    _Atomic uint64_t request_seq;

    uint64_t ctl_rng; /* draws of the control generators */

    struct product *products;
    size_t n_products;
    struct sku *skus;
    size_t n_skus;
    struct strmap *sku_codes;

    struct warehouse wh[SIM_MAX_WAREHOUSES];
    size_t n_wh;

    struct order *orders;
    size_t n_orders, cap_orders;

    /* Marketplace stock: the value currently shown per SKU, and every published value. */
    int64_t *mp_stock;
    int64_t *mp_ordered; /* units of each SKU in orders placed since start (order_place) */
    uint32_t *pub_count, *pub_head, *pub_tail;
    struct pub_entry *pub;
    size_t n_pub, cap_pub;

    struct fault_set *faults;
    struct stats *stats;
};

/* Builds the world from cfg (generation included). NULL with a message in err on failure. */
struct sim *sim_new(const struct sim_config *cfg, char *err, size_t errlen);
/* Frees everything; NULL is a no-op. No request may be running. */
void sim_free(struct sim *s);

/* The simulated clock: wall (or --start-time) time moving with the monotonic clock, plus
 * whatever /control/advance added. These do not need the lock. */
int64_t sim_now(const struct sim *s);
int64_t sim_now_ms(const struct sim *s);
void sim_advance(struct sim *s, int64_t seconds);

int sim_wh_find(const struct sim *s, const char *code, size_t len);
int64_t sim_sku_find(const struct sim *s, const char *code, size_t len);
int64_t sim_product_id(size_t product_index);
/* Index of the product with that id, or -1. */
int64_t sim_product_find(const struct sim *s, int64_t product_id);

/* Adds delta to a stock row and gives it the warehouse's next version; returns that version, or
 * -1 when out of memory (nothing changed then). */
int64_t stock_change(struct sim *s, struct warehouse *w, uint32_t sku, int64_t delta);

enum mv_status { MV_APPLIED, MV_DUPLICATE, MV_CONFLICT, MV_NOMEM };

/* The movement recorded under id, or NULL. */
const struct movement *movement_find(const struct warehouse *w, const char *id, size_t idlen);

/* Applies movement id once: the first time it changes stock; again with the same SKU and delta
 * it is a duplicate; with other content a conflict. *m gets the stored movement. */
enum mv_status movement_apply(struct sim *s, struct warehouse *w, const char *id, size_t idlen,
                              uint32_t sku, int64_t delta, const struct movement **m);

/* Moves qty of sku from w to warehouse `to`, once per id (same rules as movement_apply). */
enum mv_status transfer_apply(struct sim *s, struct warehouse *w, const char *id, size_t idlen,
                              uint32_t sku, int64_t qty, int to, const struct transfer **t);

/* Records value as published for sku at the current sim time. 0 ok, -1 out of memory. */
int publish_record(struct sim *s, uint32_t sku, int64_t value);

struct order *order_find(struct sim *s, int64_t order_id);
/* Creates an order at sim time `created`. lines may be NULL (random lines). Returns the order or
 * NULL when out of memory. The pointer is valid until the next order_create. */
struct order *order_create(struct sim *s, uint64_t *rng, int64_t created, int status,
                           const struct order_line *lines, int n_lines);
int order_add_fulfilment(struct order *o, const char *logistics_no, const char *send_type,
                         const char *service_name, const char *tracking_website, int result,
                         const char *code, int64_t at_ms);
void order_set_status(struct sim *s, struct order *o, int status);
/* An order is placed: as the platform does, its units are taken off each SKU's marketplace
 * stock (never below 0) and counted in mp_ordered. */
void order_place(struct sim *s, const struct order *o);

struct outbound *ob_find(struct warehouse *w, const char *id, size_t idlen);
/* Stores a new outbound order (status accepted); takes ownership of lines, ship_to and service
 * (also on failure). Returns the order or NULL when out of memory. */
struct outbound *ob_insert(struct sim *s, struct warehouse *w, const char *id, size_t idlen,
                           struct ob_line *lines, uint32_t n_lines, char *ship_to, char *service);
/* Moves an order to status (at sim time `at`), giving it the next outbound version; shipping
 * assigns carrier and tracking number and, if configured, takes the lines off the stock. */
int ob_set_status(struct sim *s, struct warehouse *w, struct outbound *o, int status,
                  const char *reason, int64_t at);
/* Applies every automatic transition due by sim time now. */
void ob_tick(struct sim *s, struct warehouse *w, int64_t now);
void ob_tick_all(struct sim *s);

/* A request id for the marketplace's answers (unique per process). */
void sim_request_id(struct sim *s, char out[32]);

#endif
