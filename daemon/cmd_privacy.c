/* privacy.purge */
#include <stdlib.h>

#include "cmd.h"
#include "privacy.h"
#include "server.h"

/* started: the purge ran (a TALLY_E_BUSY then came from another process's lock, not from
 * another purge). */
static int fail(struct rpc_call *c, int r, bool dry_run, bool started, int64_t n)
{
    if (r == TALLY_E_BUSY && !started)
        return rpc_fail(c, r, "a purge is already running; try again when it has finished");
    if (r == TALLY_E_SHUTTING_DOWN && dry_run)
        return rpc_fail(c, r, "tallyd is stopping; the count was not finished");
    if (r == TALLY_E_SHUTTING_DOWN)
        return rpc_fail(c, r,
                        "tallyd is stopping: the purge stopped after %lld orders; those stay"
                        " purged, the others are unchanged: run it again once tallyd is back",
                        (long long)n);
    if (r == TALLY_E_BUSY)
        return rpc_fail(c, r,
                        "the purge stopped after %lld orders: the replica is locked by another"
                        " process (a sqlite3 shell?); those stay purged, the others are"
                        " unchanged: run it again when the lock is released",
                        (long long)n);
    if (dry_run)
        return rpc_fail(c, r, "the replica could not be read");
    return rpc_fail(c, r,
                    "the purge stopped after %lld orders: the replica could not be written; "
                    "the orders not reached are unchanged",
                    (long long)n);
}

/*
 * The caller of a purge running off the loop (write jobs) or in slices on it, answered when it
 * is over — also when tallyd stops meanwhile (the purge then ends after the slice running, and
 * the caller learns how far it got): the connection is held (server_hold), so the server waits
 * for this answer, as it does for an import's.
 */
struct purge_caller {
    struct server *srv;
    uint64_t conn;
    uint32_t msgid;
    bool dry_run;
};

static void on_purge_done(struct tallyd *d, void *arg, int r, int64_t n)
{
    struct purge_caller *pc = arg;
    struct rpc_call c = {.d = d, .msgid = pc->msgid};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (r) {
        fail(&c, r, pc->dry_run, true, n);
        rpc_pack_error(&pk, pc->msgid, r, c.err);
    } else {
        rpc_pack_result_head(&pk, pc->msgid);
        msgpack_pack_map(&pk, 1);
        mp_pack_kv_int(&pk, "orders", n);
    }
    server_send_resume(pc->srv, pc->conn, sb.data, sb.size); /* even stopping: held */
    msgpack_sbuffer_destroy(&sb);
    free(pc);
}

/*
 * A purge runs as write jobs (a count in slices on the loop), so other clients are answered
 * meanwhile; its caller gets the answer when it is over. A call without a connection (tests)
 * runs it whole and answers at once.
 */
int cmd_privacy_purge(struct rpc_call *c)
{
    struct mp_params p = {.map = c->params};
    int64_t days = c->d->cfg.retain_days;
    bool dry_run = false;
    int r;
    if ((r = mp_param_int(&p, "older_than_days", false, 0, 3650, &days, NULL)) ||
        (r = mp_param_bool(&p, "dry_run", false, &dry_run, NULL)))
        return rpc_fail(c, r, "%s", p.err);
    if (c->conn && c->d->loop && c->d->server) {
        struct purge_caller *pc = malloc(sizeof *pc);
        if (!pc)
            return rpc_fail(c, TALLY_E_NOMEM, "out of memory");
        *pc = (struct purge_caller){.srv = c->d->server,
                                    .conn = server_conn_id(c->conn),
                                    .msgid = c->msgid,
                                    .dry_run = dry_run};
        if ((r = privacy_purge_start(c->d, days, dry_run, on_purge_done, pc)) != 0) {
            free(pc);
            return fail(c, r, dry_run, false, 0);
        }
        /* The server keeps this connection for the answer, even stopping; its next requests
         * are handled after the purge (they see what it did). */
        server_hold(c->conn);
        return RPC_DEFERRED;
    }
    int64_t n = 0;
    bool running = privacy_running(c->d);
    if ((r = privacy_purge(c->d, days, dry_run, &n)) != 0)
        return fail(c, r, dry_run, !running, n);
    msgpack_pack_map(c->pk, 1);
    mp_pack_kv_int(c->pk, "orders", n);
    return 0;
}
