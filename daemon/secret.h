/*
 * Secrets (app secret, access token, warehouse tokens) come from files: an absolute path, or a
 * name looked up in $CREDENTIALS_DIRECTORY (systemd's LoadCredential=). They are never logged.
 */
#ifndef TALLY_SECRET_H
#define TALLY_SECRET_H

#include <stddef.h>

/* Reads the secret named `name` into buf (NUL-terminated, trailing newline removed).
 * Returns 0, or -1 with a message (naming the file, never the content) in err. A file that
 * group or others may access (mode & 077) is refused, at start and at every later read; a
 * systemd credential (a relative name in $CREDENTIALS_DIRECTORY) is not checked: systemd
 * restricts it to the unit's user with an ACL, which stat shows as mode 0440. */
int secret_read(const char *name, char *buf, size_t cap, char *err, size_t errlen);

/* What identifies a secret file's current content without reading it: device, inode, size and
 * change times. Two equal stamps mean the file was not replaced or written in between. */
struct secret_stamp {
    unsigned long long dev, ino, size;
    long long mtime_ns, ctime_ns;
};

/* Fills *st for the secret `name` (resolved as secret_read does); all zero when it cannot be
 * looked at. */
void secret_stamp(const char *name, struct secret_stamp *st);

#endif
