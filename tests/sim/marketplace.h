/* marketplace: the AliExpress Open Platform gateway (POST or GET /sync) — signature, app key and
 * access token checks, and the methods tally uses, with the platform's method and field names:
 *
 *   aliexpress.solution.product.list.get            product.info.get
 *   aliexpress.solution.batch.product.inventory.update
 *   aliexpress.solution.order.get                   order.info.get
 *   aliexpress.solution.order.fulfill
 *
 * Answers are HTTP 200 with either {"<method_with_underscores>_response": {..., "request_id"}}
 * or {"error_response": {"type","code","msg","request_id"}}, as the platform does. */
#ifndef SIM_MARKETPLACE_H
#define SIM_MARKETPLACE_H

#include "faults.h"
#include "http.h"

struct sim;

/* The method a gateway request names ("" if none): the call name for faults and stats. */
const char *mp_call_name(const struct http_req *rq);
/* Verifies and serves one gateway request. Takes the world's lock itself. */
void mp_handle(struct sim *s, const struct http_req *rq, struct http_resp *out);
/* The answer of an injected "status" or "api_error" fault. */
void mp_fault_response(struct sim *s, const struct fault_action *a, struct http_resp *out);

#endif
