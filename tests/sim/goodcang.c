#include "goodcang.h"

#include "state.h"
#include "warehouse.h"

/* Not served yet: every call answers 501 (filled in by the Goodcang warehouse work). */

const char *gc_route(const char *method, const char *rest)
{
    (void)method;
    (void)rest;
    return NULL;
}

void gc_handle(struct sim *s, const struct wh_route *r, const struct http_req *rq,
               struct http_resp *out)
{
    (void)s;
    (void)r;
    http_resp_error(out, 501, "not_implemented", "Goodcang warehouse calls are not served yet (%s)",
                    rq->path);
}

void gc_fault_response(const struct fault_action *a, struct http_resp *out)
{
    http_resp_error(out, a->status, "fault", "injected fault: HTTP %d", a->status);
    out->retry_after = a->retry_after;
}
