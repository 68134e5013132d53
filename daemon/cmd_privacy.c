/* privacy.purge */
#include "cmd.h"
#include "privacy.h"

int cmd_privacy_purge(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    int64_t days = c->d->cfg.retain_days;
    bool dry_run = false;
    int r;
    if ((r = mp_param_int(&p, "older_than_days", false, 0, 3650, &days, NULL)) ||
        (r = mp_param_bool(&p, "dry_run", false, &dry_run, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    int64_t n = 0;
    if ((r = privacy_purge(c->d, days, dry_run, &n)) != 0 && dry_run)
        return rpc_fail(c, r, "the replica could not be read");
    if (r)
        return rpc_fail(c, r,
                        "the purge stopped after %lld orders: the replica could not be written; "
                        "the orders not reached are unchanged",
                        (long long)n);
    msgpack_pack_map(c->pk, 1);
    mp_pack_kv_int(c->pk, "orders", n);
    return 0;
}
