/*
 * powercut.so: a power-cut and I/O-fault shim for tallyd (tests/README.md "Reliability").
 *
 * Loaded with LD_PRELOAD; its constructor registers a SQLite VFS that wraps the default one
 * and makes itself the default (sqlite3_vfs_register(vfs, 1)), so tallyd needs no change: it
 * links libsqlite3 dynamically and opens its replica through the default VFS. The model is
 * that of SQLite's own crash tests (src/test6.c, the "crash" VFS): the bytes of a file are
 * durable only once the file has been synced. For every database, WAL and journal file the
 * shim keeps, since that file's last xSync, the original content of every sector written or
 * truncated away and the file's synced size. At a power cut it puts those bytes back (and the
 * synced size), so the files hold what the last sync of each made durable, and kills the
 * process with SIGKILL before anything else can be written.
 *
 * Environment:
 *   TALLY_POWERCUT_FILE=PATH     cut when PATH exists (checked every millisecond by a thread
 *                                of the shim, and before every write and sync)
 *   TALLY_POWERCUT_AFTER_SYNCS=K cut at the K-th xSync, instead of doing it (a cut during a
 *                                sync: that sync's bytes are lost)
 *   TALLY_POWERCUT_AFTER_WRITES=K  cut at the K-th xWrite, before doing it
 *   TALLY_POWERCUT_MODE=drop|torn  drop (default): every unsynced write is lost. torn: each
 *                                unsynced 512-byte sector independently keeps its new bytes or
 *                                gets its old ones back (a sector is never half written: the
 *                                disk's sectors are atomic, as SQLite assumes with
 *                                POWERSAFE_OVERWRITE); an unsynced size change survives or not,
 *                                per file; sectors appended and lost read as zeros.
 *   TALLY_POWERCUT_SEED=N        the seed of torn mode's choices (default: the pid)
 *   TALLY_FAULT_FILE=PATH        I/O faults while PATH exists; its first word says which:
 *                                "eio-write" (xWrite and xTruncate fail with EIO),
 *                                "eio-fsync" (xSync fails with EIO), "eio" (both), "full"
 *                                (xWrite fails as on a full disk), "eio-db" (xWrite, xTruncate
 *                                and xSync of the main database file only: in WAL mode only
 *                                checkpoints write it, so commits go on and checkpoints fail),
 *                                "hold-sync" (every xSync waits, before doing anything, for
 *                                as long as the file says so: a commit held in flight),
 *                                "eio-fsync-once" (the next xSync fails with EIO, and the
 *                                shim removes PATH: the syncs after it succeed),
 *                                "eio-fsync-wal-once" (the same, for the next xSync of a WAL).
 *                                A failed sync is modelled as Linux fails one: the kernel
 *                                drops the pages it could not write and marks them clean, so
 *                                a later sync that succeeds does not write them. The bytes
 *                                unsynced at a failed xSync and not written again since are
 *                                lost at a cut even after a later xSync succeeded.
 *                                Reads are never failed.
 *   TALLY_POWERCUT_LOG=PATH      one line per tracked file per cut (what was dropped), for
 *                                the test's report; a WAL's line also says how many commits
 *                                were not durable ("N commits dropped", "unsynced" in torn mode)
 *
 * What is not modelled: directory operations (a file created or deleted stays so: SQLite
 * syncs the directory itself where it matters), the -shm file (not durable by design: SQLite
 * rebuilds it after a crash), reordering beyond the sector (torn mode is its coarse form).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 512

struct saved {
    int64_t sector;
    int len;  /* bytes of the sector that existed at the last sync */
    int lost; /* unsynced at a sync that failed, not written since: a later sync keeps it */
    unsigned char data[SECTOR];
};

/* One durable file, by path: outlives SQLite's handles (a WAL closed unsynced still loses). */
struct tracked {
    char *path;
    int fd;           /* our own descriptor, for reading originals and restoring */
    int64_t synced;   /* size at the last sync */
    int main_db;      /* the main database file (not its WAL or journal) */
    struct saved *sv; /* sectors changed since the last sync, their synced bytes */
    size_t nsv, capsv;
    uint8_t *bits; /* which sectors are in sv */
    size_t nbits_bytes;
    /* Sectors appended past the synced size before a sync that failed and not written since:
     * the disk holds zeros there whatever a later sync says ("A failed sync" above). */
    uint8_t *lbits;
    size_t nlbits_bytes;
    struct tracked *next;
};

struct pfile {
    sqlite3_file base;
    struct tracked *t; /* NULL: not a durable file (temp, shm) */
    sqlite3_file *real;
};

static sqlite3_vfs *g_orig;
static sqlite3_vfs g_vfs;
static sqlite3_io_methods g_methods;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tracked *g_files;
static const char *g_cut_file, *g_fault_file, *g_log;
static long g_after_syncs, g_after_writes, g_syncs, g_writes;
static int g_torn;
static uint64_t g_rng;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static struct tracked *find_tracked(const char *path)
{
    for (struct tracked *t = g_files; t; t = t->next)
        if (!strcmp(t->path, path))
            return t;
    return NULL;
}

static int fd_size(int fd, int64_t *out)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return -1;
    *out = sb.st_size;
    return 0;
}

/* A sync succeeded: what it wrote is durable. Sectors lost at a failed sync before it stay
 * lost (it did not write them). */
static void forget(struct tracked *t)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->nsv; i++) {
        struct saved *v = &t->sv[i];
        if (v->lost)
            t->sv[keep++] = *v;
        else
            t->bits[v->sector / 8] &= (uint8_t) ~(1u << (v->sector % 8));
    }
    t->nsv = keep;
}

static int set_bit(uint8_t **bits, size_t *nbytes, int64_t s)
{
    size_t byte = (size_t)(s / 8);
    if (byte >= *nbytes) {
        size_t n = *nbytes ? *nbytes : 64;
        while (n <= byte)
            n *= 2;
        uint8_t *b = realloc(*bits, n);
        if (!b)
            return -1;
        memset(b + *nbytes, 0, n - *nbytes);
        *bits = b;
        *nbytes = n;
    }
    (*bits)[byte] |= (uint8_t)(1u << (s % 8));
    return 0;
}

static int bit_is(const uint8_t *bits, size_t nbytes, int64_t s)
{
    size_t byte = (size_t)(s / 8);
    return byte < nbytes && (bits[byte] & (1u << (s % 8)));
}

/* A sync failed: what was unsynced is lost for good (not rewritten by a later sync). */
static void sync_failed(struct tracked *t)
{
    for (size_t i = 0; i < t->nsv; i++)
        t->sv[i].lost = 1;
    int64_t cur;
    if (fd_size(t->fd, &cur) == 0)
        for (int64_t s = t->synced / SECTOR + (t->synced % SECTOR != 0); s * SECTOR < cur; s++)
            set_bit(&t->lbits, &t->nlbits_bytes, s);
}

/* Written again after a failed sync: the next sync that succeeds writes it. */
static void rewritten(struct tracked *t, int64_t off, int64_t len)
{
    for (int64_t s = off / SECTOR; s * SECTOR < off + len; s++) {
        if (bit_is(t->lbits, t->nlbits_bytes, s))
            t->lbits[s / 8] &= (uint8_t) ~(1u << (s % 8));
        if (bit_is(t->bits, t->nbits_bytes, s))
            for (size_t i = 0; i < t->nsv; i++)
                if (t->sv[i].sector == s)
                    t->sv[i].lost = 0;
    }
}

/* Saves the synced bytes of sectors [first, last] not saved yet. Called with g_mu held. */
static int save_range(struct tracked *t, int64_t off, int64_t len)
{
    if (len <= 0 || off >= t->synced)
        return 0;
    int64_t end = off + len;
    if (end > t->synced)
        end = t->synced;
    for (int64_t s = off / SECTOR; s * SECTOR < end; s++) {
        size_t byte = (size_t)(s / 8);
        if (byte >= t->nbits_bytes) {
            size_t n = t->nbits_bytes ? t->nbits_bytes : 64;
            while (n <= byte)
                n *= 2;
            uint8_t *b = realloc(t->bits, n);
            if (!b)
                return -1;
            memset(b + t->nbits_bytes, 0, n - t->nbits_bytes);
            t->bits = b;
            t->nbits_bytes = n;
        }
        if (t->bits[byte] & (1u << (s % 8)))
            continue;
        if (t->nsv == t->capsv) {
            size_t n = t->capsv ? t->capsv * 2 : 64;
            struct saved *v = realloc(t->sv, n * sizeof *v);
            if (!v)
                return -1;
            t->sv = v;
            t->capsv = n;
        }
        struct saved *v = &t->sv[t->nsv];
        int64_t want = t->synced - s * SECTOR;
        if (want > SECTOR)
            want = SECTOR;
        /* lost at a failed sync: the disk holds zeros there, not what the file reads */
        if (bit_is(t->lbits, t->nlbits_bytes, s))
            memset(v->data, 0, (size_t)want);
        else if (pread(t->fd, v->data, (size_t)want, s * SECTOR) != want)
            return -1;
        v->sector = s;
        v->len = (int)want;
        v->lost = 0;
        t->nsv++;
        t->bits[byte] |= (uint8_t)(1u << (s % 8));
    }
    return 0;
}

static int sector_saved(const struct tracked *t, int64_t s)
{
    size_t byte = (size_t)(s / 8);
    return byte < t->nbits_bytes && (t->bits[byte] & (1u << (s % 8)));
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* For a WAL file (the name ends in "-wal"), before the cut puts anything back: its commit
 * frames (a frame header whose "size of the database after the commit" is not zero, with the
 * salts of the WAL header now on the file) that are not durable: past the synced size, or in
 * a sector written since the last sync, or all of them when the header itself is (a WAL
 * restarted since the sync). In drop mode a cut loses exactly these commits; -1: not a WAL.
 * Frame layout: SQLite's file format, "WAL file format" (page size at header offset 8, salts
 * at 16; a frame's header is 24 bytes, commit size at 4, salts at 8). */
static long wal_unsynced_commits(const struct tracked *t, int64_t cur)
{
    size_t n = strlen(t->path);
    if (n < 4 || strcmp(t->path + n - 4, "-wal") != 0)
        return -1;
    unsigned char h[32];
    if (cur < 32 || pread(t->fd, h, sizeof h, 0) != (ssize_t)sizeof h)
        return 0;
    uint32_t ps = be32(h + 8);
    if (ps == 1)
        ps = 65536;
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)))
        return 0;
    int all = t->synced < 32 || sector_saved(t, 0);
    long c = 0;
    for (int64_t off = 32; off + 24 + ps <= cur; off += 24 + (int64_t)ps) {
        unsigned char f[24];
        if (pread(t->fd, f, sizeof f, off) != (ssize_t)sizeof f)
            break;
        if (memcmp(f + 8, h + 16, 8) != 0 || be32(f + 4) == 0)
            continue;
        if (all || off + 24 + ps > t->synced || sector_saved(t, off / SECTOR) ||
            sector_saved(t, (off + 23) / SECTOR))
            c++;
    }
    return c;
}

/* The cut: every tracked file back to what its last sync made durable, then SIGKILL.
 * Called with g_mu held, so no other thread writes in between; never returns. */
static void power_cut(const char *why)
{
    FILE *log = g_log ? fopen(g_log, "a") : NULL;
    for (struct tracked *t = g_files; t; t = t->next) {
        int64_t cur = 0;
        if (fd_size(t->fd, &cur) != 0)
            continue;
        long commits = wal_unsynced_commits(t, cur);
        int64_t size = t->synced;
        if (g_torn && (rnd() & 1))
            size = cur; /* the size change survived */
        size_t dropped = 0;
        for (size_t i = 0; i < t->nsv; i++) {
            struct saved *v = &t->sv[i];
            if (g_torn && (rnd() & 1))
                continue; /* this sector's new bytes survived */
            if (pwrite(t->fd, v->data, (size_t)v->len, v->sector * SECTOR) == v->len)
                dropped++;
        }
        /* Sectors appended since the sync: gone with the size, or zeros in torn mode. */
        if (g_torn && size > t->synced) {
            static const unsigned char zero[SECTOR];
            for (int64_t s = t->synced / SECTOR; s * SECTOR < size; s++) {
                int64_t from = s * SECTOR < t->synced ? t->synced : s * SECTOR;
                int64_t to = (s + 1) * SECTOR < size ? (s + 1) * SECTOR : size;
                if ((rnd() & 1) && pwrite(t->fd, zero, (size_t)(to - from), from) >= 0)
                    dropped++;
            }
        }
        /* Appended before a failed sync, never written since: zeros on the disk, whatever
         * size a later sync made durable. */
        static const unsigned char zeros[SECTOR];
        for (int64_t s = 0; (size_t)(s / 8) < t->nlbits_bytes && s * SECTOR < size; s++)
            if (bit_is(t->lbits, t->nlbits_bytes, s) &&
                pwrite(t->fd, zeros, SECTOR, s * SECTOR) == SECTOR)
                dropped++;
        if (ftruncate(t->fd, size) != 0 && log)
            fprintf(log, "ftruncate %s: %s\n", t->path, strerror(errno));
        if (log && commits >= 0)
            fprintf(log,
                    "cut (%s) %s: size %lld -> %lld, %zu unsynced sectors, %zu dropped, "
                    "%ld commits %s, %s\n",
                    why, t->path, (long long)cur, (long long)size, t->nsv, dropped, commits,
                    g_torn ? "unsynced" : "dropped",
                    dropped || size < cur ? "lost unsynced bytes" : "nothing lost");
        else if (log)
            fprintf(log, "cut (%s) %s: size %lld -> %lld, %zu unsynced sectors, %zu dropped, %s\n",
                    why, t->path, (long long)cur, (long long)size, t->nsv, dropped,
                    dropped || size < cur ? "lost unsynced bytes" : "nothing lost");
    }
    if (log)
        fclose(log);
    kill(getpid(), SIGKILL);
    for (;;)
        pause();
}

static void maybe_cut(void)
{
    if (g_cut_file && access(g_cut_file, F_OK) == 0)
        power_cut("trigger file");
}

/* The fault in force for file t: 0 none, 'w' eio on write, 's' eio on sync, 'b' both,
 * 'f' full, 'h' hold syncs, 'o' one sync fails. */
static int fault_now(const struct tracked *t)
{
    if (!g_fault_file)
        return 0;
    int fd = open(g_fault_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[32] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 'b';
    if (!strncmp(buf, "eio-write", 9))
        return 'w';
    if (!strncmp(buf, "eio-fsync-wal-once", 18)) { /* before "eio-fsync": its prefix */
        size_t len = strlen(t->path);
        return len >= 4 && !strcmp(t->path + len - 4, "-wal") ? 'o' : 0;
    }
    if (!strncmp(buf, "eio-fsync-once", 14))
        return 'o';
    if (!strncmp(buf, "eio-fsync", 9))
        return 's';
    if (!strncmp(buf, "hold-sync", 9))
        return 'h';
    if (!strncmp(buf, "full", 4))
        return 'f';
    if (!strncmp(buf, "eio-db", 6))
        return t->main_db ? 'b' : 0;
    return 'b';
}

static void *watcher(void *arg)
{
    (void)arg;
    struct timespec ms = {0, 1000000};
    for (;;) {
        if (access(g_cut_file, F_OK) == 0) {
            pthread_mutex_lock(&g_mu);
            power_cut("trigger file");
        }
        nanosleep(&ms, NULL);
    }
    return NULL;
}

/* ---- io methods ---- */

static int p_close(sqlite3_file *f)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xClose(p->real);
}

static int p_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xRead(p->real, buf, n, off);
}

static int p_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    struct pfile *p = (struct pfile *)f;
    if (!p->t)
        return p->real->pMethods->xWrite(p->real, buf, n, off);
    pthread_mutex_lock(&g_mu);
    maybe_cut();
    if (g_after_writes && ++g_writes >= g_after_writes)
        power_cut("after writes");
    int fault = fault_now(p->t);
    int rc;
    if (fault == 'w' || fault == 'b')
        rc = SQLITE_IOERR_WRITE;
    else if (fault == 'f')
        rc = SQLITE_FULL;
    else if (save_range(p->t, off, n) != 0)
        rc = SQLITE_IOERR_NOMEM;
    else
        rc = p->real->pMethods->xWrite(p->real, buf, n, off);
    if (rc == SQLITE_OK)
        rewritten(p->t, off, n);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static int p_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct pfile *p = (struct pfile *)f;
    if (!p->t)
        return p->real->pMethods->xTruncate(p->real, size);
    pthread_mutex_lock(&g_mu);
    maybe_cut();
    int fault = fault_now(p->t);
    int rc;
    if (fault == 'w' || fault == 'b')
        rc = SQLITE_IOERR_TRUNCATE;
    else if (save_range(p->t, size, p->t->synced - size) != 0)
        rc = SQLITE_IOERR_NOMEM;
    else
        rc = p->real->pMethods->xTruncate(p->real, size);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static int p_sync(sqlite3_file *f, int flags)
{
    struct pfile *p = (struct pfile *)f;
    if (!p->t)
        return p->real->pMethods->xSync(p->real, flags);
    struct timespec ms = {0, 1000000};
    while (fault_now(p->t) == 'h')
        nanosleep(&ms, NULL); /* not under g_mu: other threads' writes go on */
    pthread_mutex_lock(&g_mu);
    maybe_cut();
    if (g_after_syncs && ++g_syncs >= g_after_syncs)
        power_cut("during a sync");
    int fault = fault_now(p->t);
    int rc;
    if (fault == 'o' && unlink(g_fault_file) == 0) {
        rc = SQLITE_IOERR_FSYNC; /* once: whoever removed the file */
        sync_failed(p->t);
    } else if (fault == 's' || fault == 'b') {
        rc = SQLITE_IOERR_FSYNC;
        sync_failed(p->t);
    } else {
        rc = p->real->pMethods->xSync(p->real, flags);
        int64_t size;
        if (rc == SQLITE_OK && fd_size(p->t->fd, &size) == 0) {
            p->t->synced = size;
            forget(p->t);
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static int p_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xFileSize(p->real, size);
}
static int p_lock(sqlite3_file *f, int l)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xLock(p->real, l);
}
static int p_unlock(sqlite3_file *f, int l)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xUnlock(p->real, l);
}
static int p_check_reserved(sqlite3_file *f, int *out)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xCheckReservedLock(p->real, out);
}
static int p_file_control(sqlite3_file *f, int op, void *arg)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xFileControl(p->real, op, arg);
}
static int p_sector_size(sqlite3_file *f)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xSectorSize(p->real);
}
static int p_device_chars(sqlite3_file *f)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xDeviceCharacteristics(p->real);
}
static int p_shm_map(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xShmMap(p->real, pg, sz, ext, pp);
}
static int p_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xShmLock(p->real, off, n, flags);
}
static void p_shm_barrier(sqlite3_file *f)
{
    struct pfile *p = (struct pfile *)f;
    p->real->pMethods->xShmBarrier(p->real);
}
static int p_shm_unmap(sqlite3_file *f, int del)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xShmUnmap(p->real, del);
}
static int p_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xFetch(p->real, off, n, pp);
}
static int p_unfetch(sqlite3_file *f, sqlite3_int64 off, void *pg)
{
    struct pfile *p = (struct pfile *)f;
    return p->real->pMethods->xUnfetch(p->real, off, pg);
}

/* ---- vfs methods ---- */

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
    (void)vfs;
    struct pfile *p = (struct pfile *)f;
    p->real = (sqlite3_file *)(p + 1);
    p->t = NULL;
    int rc = g_orig->xOpen(g_orig, name, p->real, flags, out);
    if (rc != SQLITE_OK || !p->real->pMethods) {
        f->pMethods = NULL;
        return rc;
    }
    f->pMethods = &g_methods;
    int durable = SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL;
    if (!name || !(flags & durable) || (flags & SQLITE_OPEN_DELETEONCLOSE))
        return SQLITE_OK;
    pthread_mutex_lock(&g_mu);
    struct tracked *t = find_tracked(name);
    if (!t) {
        t = calloc(1, sizeof *t);
        int fd = t ? open(name, O_RDWR | O_CLOEXEC) : -1;
        if (!t || fd < 0 || !(t->path = strdup(name)) || fd_size(fd, &t->synced) != 0) {
            if (fd >= 0)
                close(fd);
            if (t)
                free(t->path);
            free(t);
            t = NULL;
        } else {
            t->fd = fd;
            t->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
            t->next = g_files;
            g_files = t;
        }
    }
    p->t = t;
    pthread_mutex_unlock(&g_mu);
    if (!t) {
        /* Not tracked, the cut could not restore it: refuse rather than pretend. */
        p->real->pMethods->xClose(p->real);
        f->pMethods = NULL;
        return SQLITE_CANTOPEN;
    }
    return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int dirsync)
{
    (void)vfs;
    pthread_mutex_lock(&g_mu);
    maybe_cut();
    struct tracked **pp = &g_files;
    while (*pp && strcmp((*pp)->path, name))
        pp = &(*pp)->next;
    int rc = g_orig->xDelete(g_orig, name, dirsync);
    if (*pp && rc == SQLITE_OK) {
        /* A deletion is durable at once (directory operations are not modelled). */
        struct tracked *t = *pp;
        *pp = t->next;
        close(t->fd);
        free(t->path);
        free(t->sv);
        free(t->bits);
        free(t);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static int v_access(sqlite3_vfs *v, const char *n, int fl, int *out)
{
    (void)v;
    return g_orig->xAccess(g_orig, n, fl, out);
}
static int v_full_pathname(sqlite3_vfs *v, const char *n, int len, char *out)
{
    (void)v;
    return g_orig->xFullPathname(g_orig, n, len, out);
}
static void *v_dlopen(sqlite3_vfs *v, const char *n)
{
    (void)v;
    return g_orig->xDlOpen(g_orig, n);
}
static void v_dlerror(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    g_orig->xDlError(g_orig, n, msg);
}
static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *s))(void)
{
    (void)v;
    return g_orig->xDlSym(g_orig, h, s);
}
static void v_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    g_orig->xDlClose(g_orig, h);
}
static int v_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_orig->xRandomness(g_orig, n, out);
}
static int v_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return g_orig->xSleep(g_orig, us);
}
static int v_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return g_orig->xCurrentTime(g_orig, out);
}
static int v_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_orig->xGetLastError(g_orig, n, out);
}
static int v_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return g_orig->xCurrentTimeInt64(g_orig, out);
}

static long env_long(const char *name)
{
    const char *s = getenv(name);
    return s ? strtol(s, NULL, 10) : 0;
}

__attribute__((constructor)) static void powercut_init(void)
{
    g_orig = sqlite3_vfs_find(NULL);
    if (!g_orig || g_orig->iVersion < 2) {
        fprintf(stderr, "powercut: no default SQLite VFS to wrap\n");
        _exit(70);
    }
    g_cut_file = getenv("TALLY_POWERCUT_FILE");
    g_fault_file = getenv("TALLY_FAULT_FILE");
    g_log = getenv("TALLY_POWERCUT_LOG");
    g_after_syncs = env_long("TALLY_POWERCUT_AFTER_SYNCS");
    g_after_writes = env_long("TALLY_POWERCUT_AFTER_WRITES");
    const char *mode = getenv("TALLY_POWERCUT_MODE");
    g_torn = mode && !strcmp(mode, "torn");
    long seed = env_long("TALLY_POWERCUT_SEED");
    g_rng = (uint64_t)(seed ? seed : getpid()) * 0x9E3779B97F4A7C15ull | 1;

    g_methods = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = p_close,
        .xRead = p_read,
        .xWrite = p_write,
        .xTruncate = p_truncate,
        .xSync = p_sync,
        .xFileSize = p_file_size,
        .xLock = p_lock,
        .xUnlock = p_unlock,
        .xCheckReservedLock = p_check_reserved,
        .xFileControl = p_file_control,
        .xSectorSize = p_sector_size,
        .xDeviceCharacteristics = p_device_chars,
        .xShmMap = p_shm_map,
        .xShmLock = p_shm_lock,
        .xShmBarrier = p_shm_barrier,
        .xShmUnmap = p_shm_unmap,
        .xFetch = p_fetch,
        .xUnfetch = p_unfetch,
    };
    g_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct pfile) + g_orig->szOsFile,
        .mxPathname = g_orig->mxPathname,
        .zName = "powercut",
        .xOpen = v_open,
        .xDelete = v_delete,
        .xAccess = v_access,
        .xFullPathname = v_full_pathname,
        .xDlOpen = v_dlopen,
        .xDlError = v_dlerror,
        .xDlSym = v_dlsym,
        .xDlClose = v_dlclose,
        .xRandomness = v_randomness,
        .xSleep = v_sleep,
        .xCurrentTime = v_current_time,
        .xGetLastError = v_last_error,
        .xCurrentTimeInt64 = v_current_time64,
    };
    if (sqlite3_vfs_register(&g_vfs, 1) != SQLITE_OK) {
        fprintf(stderr, "powercut: cannot register the VFS\n");
        _exit(70);
    }
    if (g_cut_file) {
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &a, watcher, NULL) != 0) {
            fprintf(stderr, "powercut: cannot start the watcher\n");
            _exit(70);
        }
        pthread_attr_destroy(&a);
    }
}
