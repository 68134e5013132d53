#include "fourpx.h"

#include "state.h"
#include "warehouse.h"

/* Not served yet: every call answers 501 (filled in by the 4PX warehouse work). */

const char *fpx_route(const char *method, const char *rest, const char *api_method)
{
    (void)method;
    (void)rest;
    (void)api_method;
    return NULL;
}

void fpx_handle(struct sim *s, const struct wh_route *r, const struct http_req *rq,
                struct http_resp *out)
{
    (void)s;
    (void)r;
    http_resp_error(out, 501, "not_implemented", "4PX warehouse calls are not served yet (%s)",
                    rq->path);
}

void fpx_fault_response(const struct fault_action *a, struct http_resp *out)
{
    http_resp_error(out, a->status, "fault", "injected fault: HTTP %d", a->status);
    out->retry_after = a->retry_after;
}
