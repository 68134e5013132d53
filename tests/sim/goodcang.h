/* goodcang: a third-party warehouse of kind goodcang, as its public API is documented (UPSTREAM.md
 * section 3), served under /wh/{CODE}/... for a warehouse given as CODE:goodcang. */
#ifndef SIM_GOODCANG_H
#define SIM_GOODCANG_H

#include "faults.h"
#include "http.h"

struct sim;
struct wh_route;

/* The call's name (static) for the path under the warehouse, or NULL. */
const char *gc_route(const char *method, const char *rest);
/* Serves one request (auth included). Takes the world's lock itself. */
void gc_handle(struct sim *s, const struct wh_route *r, const struct http_req *rq,
               struct http_resp *out);
/* The answer of an injected "status" fault, in Goodcang's envelope. */
void gc_fault_response(const struct fault_action *a, struct http_resp *out);

#endif
