/*
 * tallyd.conf: an INI file of [section] and `key = value` lines; `#` and `;` start comments.
 * Every key is documented in README.md ("Configuration"). Unknown sections or keys are errors,
 * so a typo never silently leaves a default in force.
 */
#ifndef TALLY_CONFIG_H
#define TALLY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "priority.h"

#define TALLY_MAX_UPSTREAM_WAREHOUSES 32

/* A warehouse system's kind: which API it speaks (DESIGN.md "Warehouse kinds", UPSTREAM.md
 * sections 2 and 3). A `tally` warehouse takes the station's movements; the third-party ones
 * (Goodcang, 4PX) keep their own stock: the station reads it, announces goods coming in and
 * sends outbound orders and cancels. */
enum wh_kind {
    WH_KIND_TALLY = 0, /* tally Warehouse API v1 (conn_wms.c) */
    WH_KIND_GOODCANG,  /* Goodcang OMS open API (conn_goodcang.c) */
    WH_KIND_FOURPX,    /* 4PX FOP fulfilment API (conn_fourpx.c) */
};
#define WH_KIND_COUNT 3
/* "tally", "goodcang", "fourpx"; NULL for a value out of range. */
const char *wh_kind_name(int kind);
/* The kind named `s`, or -1. */
int wh_kind_parse(const char *s);

/* [warehouse CODE]: one warehouse system and the API it speaks (`kind`). */
struct wh_config {
    char code[65];
    int kind;             /* enum wh_kind; default tally */
    char name[128];       /* shown in tables; default: the code */
    char country[3];      /* ISO 3166 alpha-2; default ZZ (unknown) */
    char url[512];        /* base URL, e.g. https://wms.example.com/es (no trailing /v1) */
    char token_file[512]; /* tally: bearer token; relative names are looked up in
                           * $CREDENTIALS_DIRECTORY */
    /* Third-party kinds. Goodcang: app_key + app_token_file (headers app-key, app-token).
     * 4PX: app_key + app_secret_file (signing), access_token_file optional. */
    char app_key[128];
    char app_token_file[512];
    char app_secret_file[512];
    char access_token_file[512];
    char remote_code[65]; /* the warehouse's own code in the third party's system (Goodcang
                           * `warehouse_code`, 4PX `warehouse_code`); default: code */
    /* Goodcang `shipping_method` / 4PX `logistics_product_code` (the logistics product code)
     * of every outbound order; "" = the order's own service. */
    char shipping_method[65];
    bool serves_marketplace;
    bool allow_insecure_http;      /* plain http:// to a non-loopback host (default false) */
    unsigned inventory_interval_s; /* default 30 */
    unsigned outbound_interval_s;  /* default 60 */
    /* fulfilment: how orders allocated here are shipped. "outbound" (default for a configured
     * warehouse: its system picks and ships on an outbound order), "station" (picked and
     * shipped at this station with `tally ship`), "none" (takes no orders). */
    char fulfilment[16];
};

/* [marketplace]: the AliExpress Open Platform gateway. */
struct mp_config {
    bool enabled;      /* true once gateway is set */
    char gateway[512]; /* e.g. https://api-sg.aliexpress.com/sync */
    char app_key[128];
    char app_secret_file[512];
    char access_token_file[512];
    bool sign_md5;               /* sign_method = md5 (legacy); default sha256 */
    bool allow_insecure_http;    /* plain http:// to a non-loopback host (default false) */
    unsigned catalog_interval_s; /* default 300 */
    unsigned orders_interval_s;  /* default 60 */
    unsigned orders_overlap_s;   /* default 300: re-read this much of the last window */
    unsigned publish_buffer;     /* default 0: units held back from every published value */
};

/* Carrier -> the marketplace's logistics service key (aliexpress.solution.order.fulfill
 * service_name; the keys come from listlogisticsservice). [carriers] `NAME = KEY` holds the
 * default for every warehouse; `carrier.NAME = KEY` in a [warehouse CODE] section overrides
 * it there. NAME is the carrier as the warehouse reports it, compared without letter case.
 * The service key "other" takes the tracking website after it: `NAME = other https://...`. */
#define TALLY_MAX_CARRIER_MAPS 64
struct carrier_map {
    char wh[65];       /* "" = the default, any warehouse */
    char carrier[64];  /* as the warehouse names it */
    char service[65];  /* the platform's service key */
    char website[257]; /* tracking_website: only with the service key "other" (required) */
};

struct tally_config {
    char station[65];         /* [station] name; default: host name */
    bool coordinator;         /* [station] coordinator; default true */
    char state_dir[512];      /* [station] state_dir; default /var/lib/tally */
    char socket_path[108];    /* [station] socket; default /run/tally/tally.sock */
    unsigned socket_mode;     /* [station] socket_mode; default 0660 */
    char writer_group[65];    /* [station] writer_group; default tally-writers ("" = none) */
    size_t max_message_bytes; /* [limits] */
    unsigned max_connections;
    size_t max_output_bytes;
    int log_level;              /* [log] level */
    bool sync_full;             /* [sync] synchronous = full (default) | normal */
    char ca_file[512];          /* [sync] ca_file: CA bundle for TLS (default: the system's) */
    unsigned max_parallel;      /* [sync] requests in flight per upstream (default 4) */
    unsigned retry_max_s;       /* [sync] retry_max: cap of the retry backoff (default 300) */
    unsigned request_timeout_s; /* [sync] request_timeout: one request's limit (default 30) */
    unsigned reconcile_s;       /* [sync] reconcile_interval: full re-read of stock (21600) */
    unsigned outbox_keep_days;  /* [sync] outbox_keep_days: done rows kept this long (14) */
    unsigned outbox_keep_s;     /* [sync] outbox_keep_seconds: the same in seconds (0: days) */
    struct mp_config mp;
    /* Fulfilment (fulfil.c, README "Fulfilment"). */
    struct alloc_rules alloc;       /* [allocation] max_distance_km, priority, split */
    struct priority_rules priority; /* [priority] */
    unsigned exc_deadline_h;        /* [exceptions] deadline_hours (24) */
    unsigned ship_by_warning_h;     /* [exceptions] ship_by_warning_hours (24) */
    unsigned retain_days;           /* [privacy] retain_days (30) */
    unsigned sales_window_days;     /* [stock] sales_window_days (28) */
    unsigned restock_cover_days;    /* [stock] restock_cover_days (30) */
    unsigned stale_after_s;         /* [stock] stale_after (3600): inventory older than this */
    bool stale_zero;                /* [stock] stale_policy = zero (default keep) */
    struct wh_config wh[TALLY_MAX_UPSTREAM_WAREHOUSES];
    unsigned nwh;
    struct carrier_map carriers[TALLY_MAX_CARRIER_MAPS]; /* [carriers], carrier.NAME */
    unsigned ncarriers;
};

/* The mapping a shipment of `carrier` from warehouse `wh` is uploaded under: the warehouse's
 * own, else the [carriers] default; NULL when none maps it. */
const struct carrier_map *config_carrier(const struct tally_config *cfg, const char *wh,
                                         const char *carrier);

/* Fills `cfg` with the defaults. */
void config_defaults(struct tally_config *cfg);

/*
 * Reads `path` over the current values. Returns 0, or -1 with a message naming the file and
 * line in errbuf.
 */
int config_load(struct tally_config *cfg, const char *path, char *errbuf, size_t errlen);

/* Sets one key as if read from the file (used for command-line overrides and by tests). */
int config_set(struct tally_config *cfg, const char *section, const char *key, const char *value,
               char *errbuf, size_t errlen);

/* Checks what only the whole file can tell (e.g. a warehouse without a URL, or a plain
 * http:// URL to another machine without allow_insecure_http = true in its section). */
int config_check(const struct tally_config *cfg, char *errbuf, size_t errlen);

/* Checks the files the daemon reads at start, before it serves: the config file `path` (NULL
 * for none) must not be accessible to group or others (mode & 077 == 0), and `ca_file`, when
 * set, must be a readable regular file. Returns 0, or -1 with a message naming the file and the
 * fix. (Secret files are checked where they are read: secret_read.) */
int config_check_files(const struct tally_config *cfg, const char *path, char *errbuf,
                       size_t errlen);

/* Whether `url` is plain http:// to a host other than this machine's loopback (localhost,
 * 127.0.0.0/8, ::1), or unreadable: a bearer token sent there travels in clear. */
bool config_insecure_http(const char *url);

/* Logs a warning for each upstream that config_check let through with allow_insecure_http. */
void config_warn_insecure(const struct tally_config *cfg);

#endif
