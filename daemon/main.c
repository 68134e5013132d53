/*
 * tallyd: the station daemon. Reads the config, opens (and migrates) the replica, serves the
 * socket on one libuv loop until SIGTERM/SIGINT. Requests are handled to completion one at a
 * time on the loop, so a signal is acted on between requests: a transaction in progress always
 * finishes (and its client is answered) before the daemon stops.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "config.h"
#include "coord.h"
#include "fulfil.h"
#include "gcommit.h"
#include "loopread.h"
#include "log.h"
#include "rpc.h"
#include "sdnotify.h"
#include "server.h"
#include "store.h"
#include "sync.h"
#include "tallyd.h"
#include "tally/protocol.h"
#include "titleidx.h"
#include "worker.h"

struct runtime {
    struct tallyd d;
    uv_signal_t sigterm, sigint;
    uv_timer_t watchdog;
    int have_watchdog;
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: tallyd [--config FILE] [--state-dir DIR] [--socket PATH] [--station NAME]\n"
            "              [--log-level LEVEL]\n"
            "\n"
            "The tally station daemon: keeps the local replica in STATE_DIR/replica.db and\n"
            "answers the tally client on a Unix socket. Runs in the foreground, logs to stderr.\n"
            "\n"
            "  -c, --config FILE     read settings from FILE (INI; see README 'Configuration')\n"
            "  -d, --state-dir DIR   directory of the replica (default /var/lib/tally); one\n"
            "                        tallyd per directory, owned by tallyd's user, mode 0700\n"
            "  -s, --socket PATH     socket to serve (default %s)\n"
            "  -n, --station NAME    this station's name (default: the host name)\n"
            "  -l, --log-level LVL   error, warning, info (default) or debug\n"
            "  -h, --help            this text\n"
            "  -V, --version         print the version\n"
            "\n"
            "Options on the command line override the config file.\n",
            TALLY_DEFAULT_SOCKET);
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void shutdown_daemon(struct runtime *rt, const char *why)
{
    if (rt->d.stopping)
        return;
    log_info("%s: stopping", why);
    sd_notify_send("STOPPING=1");
    rt->d.stopping = true;
    gcommit_stop(&rt->d); /* this turn's writes commit and are answered before the server stops */
    loopread_stop(&rt->d);
    rpc_defer_stop(&rt->d); /* deferred answers, while their connections can take them */
    server_stop(rt->d.server);
    rt->d.server = NULL;
    sync_stop(rt->d.sync);
    rt->d.sync = NULL;
    fulfil_stop(&rt->d);
    titleidx_stop(&rt->d);
    cmd_import_stop(&rt->d);
    workers_stop(&rt->d);
    uv_close((uv_handle_t *)&rt->sigterm, NULL);
    uv_close((uv_handle_t *)&rt->sigint, NULL);
    if (rt->have_watchdog)
        uv_close((uv_handle_t *)&rt->watchdog, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    shutdown_daemon(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_watchdog(uv_timer_t *t)
{
    sd_notify_send("WATCHDOG=1");
}

static int resolve_writer_group(struct tallyd *d)
{
    if (!d->cfg.writer_group[0])
        return 0;
    struct group gr, *res = NULL;
    char buf[16384];
    if (getgrnam_r(d->cfg.writer_group, &gr, buf, sizeof buf, &res) != 0 || !res) {
        log_warn("writer group '%s' does not exist: only root and this daemon's user may write",
                 d->cfg.writer_group);
        return 0;
    }
    d->writer_gid = res->gr_gid;
    d->have_writer_gid = true;
    return 0;
}

/*
 * The state directory holds buyers' personal data and the outbox: it must be this process's
 * user's, and nobody else may write in it (they could plant or swap files before the replica
 * is opened). One that others may only read is tightened to 0700 (like the database file,
 * store.c), with a warning; one that others may write, or another user owns, is refused.
 */
static int make_state_dir(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_error("cannot create state directory %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        log_error("state directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        log_error("state directory %s is not a directory", dir);
        return -1;
    }
    if (sb.st_uid != geteuid()) {
        log_error("state directory %s is owned by uid %lu, not by uid %lu that tallyd runs as: "
                  "run tallyd as its owner, or give it a directory of its own",
                  dir, (unsigned long)sb.st_uid, (unsigned long)geteuid());
        return -1;
    }
    if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
        log_error("state directory %s (mode %04o) may be written by group or others: "
                  "its contents cannot be trusted; check them, then chmod 0700 it",
                  dir, (unsigned)(sb.st_mode & 07777));
        return -1;
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
        if (chmod(dir, 0700) != 0) {
            log_error("state directory %s (mode %04o) may be read by group or others, and "
                      "cannot be made 0700: %s",
                      dir, (unsigned)(sb.st_mode & 07777), strerror(errno));
            return -1;
        }
        log_warn("state directory %s was mode %04o: now 0700 (it holds personal data)", dir,
                 (unsigned)(sb.st_mode & 07777));
    }
    return 0;
}

/*
 * One tallyd per state directory: an exclusive fcntl lock on STATE_DIR/tallyd.lock, taken
 * before the replica is opened or the socket bound, held until the process ends (the kernel
 * drops it then, however the process ends). The holder's pid is written in the file after
 * locking; a refused tallyd names it. The descriptor is never closed: closing any descriptor of
 * the file would drop a POSIX lock, and nothing else in tallyd opens it.
 */
static int lock_state_dir(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/tallyd.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        log_error("cannot open the lock file %s: %s", path, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    for (int tries = 0; fcntl(fd, F_SETLK, &fl) != 0; tries++) {
        if ((errno != EAGAIN && errno != EACCES) || tries == 20) {
            log_error("cannot lock %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        /* Held: by whom? The kernel knows (0 when the holder is in another pid namespace);
         * else the pid the holder wrote. No lock any more: the holder just ended, try again. */
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (fcntl(fd, F_GETLK, &who) == 0 && who.l_type == F_UNLCK)
            continue;
        long pid = who.l_pid > 0 ? (long)who.l_pid : 0;
        if (pid == 0) {
            char buf[32] = "";
            ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
            if (n > 0) {
                buf[n] = 0;
                pid = strtol(buf, NULL, 10);
            }
        }
        if (pid > 0)
            log_error("state directory %s is in use by another tallyd (pid %ld): stop it "
                      "first, or give this one its own --state-dir",
                      dir, pid);
        else
            log_error("state directory %s is in use by another tallyd (pid unknown; see %s): "
                      "stop it first, or give this one its own --state-dir",
                      dir, path);
        close(fd);
        return -1;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)
        log_warn("could not write this tallyd's pid into %s: %s", path, strerror(errno));
    return 0;
}

/* EX_IOERR (sysexits.h): tallyd stopped because the disk failed to sync the replica's WAL. */
#define EXIT_WAL_SYNC_FAILED 74
/* How long wal_sync_recover waits for another process's reader (as store_open waits). */
#define WAL_RECOVER_BUSY_MS 5000

/*
 * A sync of the WAL failed (store_set_wal_sync_failed): tallyd stops at once, on whichever
 * thread saw it, without closing the replica (a close may checkpoint, copying frames the disk
 * may not hold) and without answering what waits (every answer not sent was not
 * acknowledged: its connection closes, and a write sent again with the same id is applied
 * once). Going on would acknowledge later commits through syncs that say nothing of the pages
 * the kernel dropped. At the next start SQLite's recovery of the WAL keeps what the disk holds:
 * every acknowledged write (each one was covered by a sync that succeeded) and a consistent
 * replica. systemd starts it again (Restart=on-failure).
 */
static char sync_failed_mark[640]; /* STATE_DIR/wal-sync-failed */

static void wal_sync_failed(const char *what, int rc)
{
    log_error("%s failed (%s, %d): the disk may not hold what was written since the last sync;"
              " tallyd stops now (exit %d) and reads the replica again from the disk when it"
              " starts. Writes not answered were not acknowledged: send them again with their"
              " ids",
              what, sqlite3_errstr(rc), rc, EXIT_WAL_SYNC_FAILED);
    /* For the next start (wal_sync_recover); no sync of its own: lost with a power cut, it
     * is not needed (nothing unsynced is then left to copy). */
    int fd = open(sync_failed_mark, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    else
        log_error("%s: %s: the next start cannot know it must checkpoint the WAL first; stop"
                  " it and run `sqlite3 REPLICA 'PRAGMA wal_checkpoint(TRUNCATE)'` before it"
                  " serves",
                  sync_failed_mark, strerror(errno));
    _exit(EXIT_WAL_SYNC_FAILED);
}

/*
 * At a start after a failed sync (its mark in the state directory): the WAL's frames past the
 * last sync that succeeded may be in the kernel's page cache only (marked clean, never to be
 * written), and SQLite's recovery has just read them from there. A checkpoint that empties
 * the WAL writes them into the database file and syncs it, before anything is appended after
 * them and acknowledged; a frame read back from the disk as it was is refused by the
 * recovery's checksums, so the replica is what the disk held, whole. 0, or -1 (the disk still
 * fails, or a reader of another process stays in the WAL: tallyd does not start; systemd
 * tries again).
 */
static int wal_sync_recover(struct store *st)
{
    if (access(sync_failed_mark, F_OK) != 0)
        return 0;
    /* Before serving, a reader of another process (an operator's sqlite3 shell in a
     * transaction) is waited for as long as opening waits, not the loop's STORE_BUSY_MS. */
    sqlite3 *db = store_db(st);
    sqlite3_busy_timeout(db, WAL_RECOVER_BUSY_MS);
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_busy_timeout(db, STORE_BUSY_MS);
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
        /* Not emptied: a write appended after the frames the disk may not hold would be lost
         * with them at a power cut, and SQLite starts the WAL over only once no reader is in
         * it. Not served until then. */
        log_error("the last run stopped at a failed sync of the WAL, and another process keeps"
                  " a read transaction open on the replica (%s): its WAL cannot be emptied"
                  " before serving; tallyd starts once that reader ends",
                  sqlite3_errstr(rc));
        return -1;
    }
    if (rc != SQLITE_OK) {
        log_error("the last run stopped at a failed sync of the WAL, and the checkpoint that"
                  " writes its frames into the database failed too: %s (%d)",
                  sqlite3_errstr(rc), rc);
        return -1;
    }
    log_warn("the last run stopped at a failed sync of the WAL: its frames written into the"
             " database and synced, the WAL emptied, before serving");
    if (unlink(sync_failed_mark) != 0 && errno != ENOENT) {
        log_error("%s: %s", sync_failed_mark, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},    {"state-dir", required_argument, NULL, 'd'},
        {"socket", required_argument, NULL, 's'},    {"station", required_argument, NULL, 'n'},
        {"log-level", required_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},         {NULL, 0, NULL, 0},
    };
    /*
     * No core dumps, and no ptrace by this user's other processes: the process holds the
     * upstreams' secrets (app secrets, tokens) and buyers' personal data. Marking only the
     * buffers tallyd owns MADV_DONTDUMP would not be enough: libcurl keeps its own copies of
     * every header list (Authorization, app-token), URL and POST body (AliExpress and 4PX put
     * the access token and signature there), and OpenSSL its records, all in ordinary heap.
     * Not dumpable covers every copy. Set before the config or any secret is read; it holds
     * for the process's life (tallyd never execs). Debugging a crash needs root (gdb attach as
     * root still works) or a build without this line.
     */
    if (prctl(PR_SET_DUMPABLE, 0L, 0L, 0L, 0L) != 0)
        fprintf(stderr, "tallyd: warning: cannot turn core dumps off: %s\n", strerror(errno));
    /*
     * Buffers of 128 KiB and more (a warehouse page's answer and its rows, about 0.5 MB each,
     * several in flight on the pool's threads) are always mapped on their own and given back
     * when freed. By default glibc raises its mapping threshold to the size of the first such
     * buffer freed, and the later ones come from the threads' arenas, which keep the memory: a
     * sync of 1M SKUs x 4 peaked at 31.7 MiB of RSS (budget 32 MiB), 27.5 MiB with this, as
     * fast (bench_sync.sh, 2 runs each). Setting the threshold turns glibc's moving one off.
     * (Nothing is said when it cannot be set: under the sanitizers' allocator it is a no-op.)
     */
    (void)mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    struct runtime rt;
    memset(&rt, 0, sizeof rt);
    struct tallyd *d = &rt.d;
    config_defaults(&d->cfg);

    const char *config_path = NULL, *state_dir = NULL, *sock = NULL, *station = NULL, *level = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:d:s:n:l:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'd':
            state_dir = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 'n':
            station = optarg;
            break;
        case 'l':
            level = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("tallyd %s\n", TALLY_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tallyd: unexpected argument '%s' (see tallyd --help)\n", argv[optind]);
        return 2;
    }
    char err[512];
    if (config_path && config_load(&d->cfg, config_path, err, sizeof err) != 0) {
        fprintf(stderr, "tallyd: %s\n", err);
        return 2;
    }
    if ((state_dir && config_set(&d->cfg, "station", "state_dir", state_dir, err, sizeof err)) ||
        (sock && config_set(&d->cfg, "station", "socket", sock, err, sizeof err)) ||
        (station && config_set(&d->cfg, "station", "name", station, err, sizeof err)) ||
        (level && config_set(&d->cfg, "log", "level", level, err, sizeof err))) {
        fprintf(stderr, "tallyd: %s\n", err);
        return 2;
    }
    if (config_check(&d->cfg, err, sizeof err) != 0 ||
        config_check_files(&d->cfg, config_path, err, sizeof err) != 0) {
        fprintf(stderr, "tallyd: %s\n", err);
        return 2;
    }
    log_init(d->cfg.log_level);
    signal(SIGPIPE, SIG_IGN);

    config_warn_insecure(&d->cfg);

    if (make_state_dir(d->cfg.state_dir) != 0 || lock_state_dir(d->cfg.state_dir) != 0)
        return 1;
    char dbpath[600];
    snprintf(dbpath, sizeof dbpath, "%s/replica.db", d->cfg.state_dir);
    snprintf(sync_failed_mark, sizeof sync_failed_mark, "%s/wal-sync-failed", d->cfg.state_dir);
    store_set_wal_sync_failed(wal_sync_failed);
    if (store_open(dbpath, d->cfg.sync_full, &d->store, err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    if (wal_sync_recover(d->store) != 0) {
        store_close(d->store);
        return EXIT_WAL_SYNC_FAILED;
    }
    resolve_writer_group(d);
    d->loop = uv_default_loop();
    d->started_at = store_now();
    /* Signals first: once the socket is bound a client may be waiting, and a SIGTERM from
     * then on must be a clean stop (it is acted on when the loop runs), never a kill. */
    uv_signal_init(d->loop, &rt.sigterm);
    uv_signal_init(d->loop, &rt.sigint);
    rt.sigterm.data = rt.sigint.data = &rt;
    uv_signal_start(&rt.sigterm, on_signal, SIGTERM);
    uv_signal_start(&rt.sigint, on_signal, SIGINT);
    int failed = 0;
    if (workers_start(d, err, sizeof err) != 0) {
        log_error("%s", err);
        store_close(d->store);
        return 1;
    }
    loopread_start(d); /* (when it cannot, the loop's connection reads: said in the log) */
    if (gcommit_start(d, err, sizeof err) != 0 || coord_start(d, err, sizeof err) != 0) {
        failed = 1;
    } else if (server_start(d, &d->server, err, sizeof err) != 0) {
        failed = 1;
    } else if (sync_start(d, &d->sync, err, sizeof err) != 0) {
        failed = 2;
    } else if (fulfil_start(d, err, sizeof err) != 0) {
        failed = 3;
    } else if (titleidx_start(d, err, sizeof err) != 0) {
        failed = 4;
    }
    if (failed) {
        log_error("%s", err);
        if (failed > 3)
            fulfil_stop(d);
        if (failed > 2)
            sync_stop(d->sync);
        if (failed > 1)
            server_stop(d->server);
        uv_close((uv_handle_t *)&rt.sigterm, NULL);
        uv_close((uv_handle_t *)&rt.sigint, NULL);
        gcommit_stop(d);
        loopread_stop(d);
        workers_stop(d);
        uv_run(d->loop, UV_RUN_DEFAULT);
        gcommit_free(d);
        loopread_free(d);
        workers_free(d);
        store_close(d->store);
        return 1;
    }
    uint64_t wd = sd_watchdog_usec();
    if (wd > 0) {
        uv_timer_init(d->loop, &rt.watchdog);
        uv_timer_start(&rt.watchdog, on_watchdog, 0, wd / 2000 ? wd / 2000 : 1);
        rt.have_watchdog = 1;
    }

    log_info("station %s serving %s (replica %s, schema %d)", d->cfg.station, d->cfg.socket_path,
             dbpath, store_schema_version(d->store));
    sd_notify_send("READY=1\nSTATUS=serving");
    uv_run(d->loop, UV_RUN_DEFAULT);

    uv_walk(d->loop, on_walk_close, NULL);
    uv_run(d->loop, UV_RUN_DEFAULT);
    uv_loop_close(d->loop);
    gcommit_free(d);
    loopread_free(d);
    workers_free(d);
    titleidx_free(d);
    /* The last close checkpoints and says nothing of a failed sync: the WAL made durable
     * first, through the hook (a failure stops here with exit 74 and the mark). */
    store_sync_wal(d->store);
    store_close(d->store);
    log_info("stopped");
    return 0;
}
