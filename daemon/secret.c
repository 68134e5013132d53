#include "secret.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The file of the secret `name`; returns whether it is a systemd credential (a relative name
 * in $CREDENTIALS_DIRECTORY). */
static bool secret_path(const char *name, char path[1024])
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (name[0] != '/' && dir && *dir) {
        snprintf(path, 1024, "%s/%s", dir, name);
        return true;
    }
    snprintf(path, 1024, "%s", name);
    return false;
}

void secret_stamp(const char *name, struct secret_stamp *st)
{
    char path[1024];
    struct stat sb;
    memset(st, 0, sizeof *st);
    secret_path(name, path);
    if (stat(path, &sb) != 0)
        return;
    st->dev = (unsigned long long)sb.st_dev;
    st->ino = (unsigned long long)sb.st_ino;
    st->size = (unsigned long long)sb.st_size;
    st->mtime_ns = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    st->ctime_ns = (long long)sb.st_ctim.tv_sec * 1000000000LL + sb.st_ctim.tv_nsec;
}

int secret_read(const char *name, char *buf, size_t cap, char *err, size_t errlen)
{
    char path[1024];
    bool credential = secret_path(name, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read secret %s: %s", path, strerror(errno));
        return -1;
    }
    /* Whoever may read the file holds the credential: only its owner may (mode 0600 or
     * 0400). Checked on the descriptor read, so a file swapped after a check is not read.
     * Not for a systemd credential: systemd writes it 0400, owned by root, and lets the unit's
     * user read it through an ACL entry, whose mask stat shows in the group bits (0440)
     * although no group may read it (systemd src/core/exec-credential.c, write_credential);
     * access to $CREDENTIALS_DIRECTORY is systemd's to restrict, to the unit's user. */
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "cannot read secret %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!credential && (sb.st_mode & 077)) {
        snprintf(err, errlen,
                 "secret %s is mode %04o: group or others may read it; chmod 600 %s (its owner "
                 "alone may read it)",
                 path, (unsigned)(sb.st_mode & 07777), path);
        close(fd);
        return -1;
    }
    ssize_t n = read(fd, buf, cap - 1);
    int e = errno;
    char extra;
    ssize_t more = n >= 0 && (size_t)n == cap - 1 ? read(fd, &extra, 1) : 0;
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "cannot read secret %s: %s", path, strerror(e));
        return -1;
    }
    if (more > 0) {
        memset(buf, 0, cap);
        snprintf(err, errlen, "secret %s is longer than %zu bytes", path, cap - 1);
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = 0;
    if (n == 0) {
        snprintf(err, errlen, "secret %s is empty", path);
        return -1;
    }
    for (ssize_t i = 0; i < n; i++) {
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) {
            memset(buf, 0, cap);
            snprintf(err, errlen, "secret %s contains control characters", path);
            return -1;
        }
    }
    return 0;
}
