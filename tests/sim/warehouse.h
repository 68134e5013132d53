/* warehouse: the tally Warehouse API v1 served for every simulated warehouse under
 * /wh/{CODE}/v1/... (UPSTREAM.md section 2): inventory feed, movements, outbound orders and
 * transfers, with the Bearer token checked. */
#ifndef SIM_WAREHOUSE_H
#define SIM_WAREHOUSE_H

#include "faults.h"
#include "http.h"

struct sim;

enum wh_call {
    WH_INVENTORY,
    WH_MOVEMENTS,
    WH_OUTBOUND_CREATE,
    WH_OUTBOUND_LIST,
    WH_OUTBOUND_GET,
    WH_OUTBOUND_CANCEL,
    WH_TRANSFERS,
    WH_UNKNOWN,
};

struct wh_route {
    int wh;               /* warehouse index, -1 when the code is unknown */
    int kind;             /* enum sim_wh_kind of the warehouse (tally when unknown) */
    enum wh_call call;    /* a tally warehouse's call */
    const char *tpl_call; /* a third-party warehouse's call name (static), NULL when unknown */
    char target[32];      /* "wh:CODE", for links, faults and stats */
    const char *id;       /* outbound order id inside the path (not NUL-terminated) */
    size_t id_len;
};

/* Reads /wh/{CODE}/... into r (a 4PX warehouse's call is named by the query's `method`).
 * Returns 0, or -1 when path is not under /wh/. */
struct params;
int wh_route(const struct sim *s, const char *method, const char *path, const struct params *query,
             struct wh_route *r);
/* The route's call name for faults and stats, for any kind. */
const char *wh_route_call_name(const struct wh_route *r);
/* The call's name for faults and stats: inventory, movements, outbound.create, outbound.list,
 * outbound.get, outbound.cancel, transfers, unknown. */
const char *wh_call_name(enum wh_call c);
/* Serves one request (auth included). Takes the world's lock itself. */
void wh_handle(struct sim *s, const struct wh_route *r, const struct http_req *rq,
               struct http_resp *out);
/* One outbound order as the API shows it; with_counts adds the control interface's
 * create_count and repeat_count. */
struct outbound;
void wh_outbound_json(const struct sim *s, const struct outbound *o, bool with_counts,
                      struct jb *j);
/* The answer of an injected "status" fault, in the envelope of the warehouse's kind. */
void wh_fault_response(const struct wh_route *r, const struct fault_action *a,
                       struct http_resp *out);

#endif
