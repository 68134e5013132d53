/* control: the simulator's control interface, /control/... on the same port, without auth —
 * faults, link switches, state for assertions (movement apply counts, stock, published values,
 * fulfilments, outbound orders, stats) and generators (orders, stock changes, catalog changes,
 * clock advance). Every endpoint is documented in README.md. */
#ifndef SIM_CONTROL_H
#define SIM_CONTROL_H

#include "http.h"

struct sim;

void control_handle(struct sim *s, const struct http_req *rq, struct http_resp *out);

#endif
