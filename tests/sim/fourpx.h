/* fourpx: a third-party warehouse of kind fourpx, as its public API is documented (UPSTREAM.md
 * section 3), served under /wh/{CODE}/... for a warehouse given as CODE:fourpx. */
#ifndef SIM_FOURPX_H
#define SIM_FOURPX_H

#include "faults.h"
#include "http.h"

struct sim;
struct wh_route;

/* The call's name (static) for the path under the warehouse and the query's method, or NULL. */
const char *fpx_route(const char *method, const char *rest, const char *api_method);
/* Serves one request (auth included). Takes the world's lock itself. */
void fpx_handle(struct sim *s, const struct wh_route *r, const struct http_req *rq,
                struct http_resp *out);
/* The answer of an injected "status" fault, in 4PX's envelope. */
void fpx_fault_response(const struct fault_action *a, struct http_resp *out);

#endif
