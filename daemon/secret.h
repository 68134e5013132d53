/*
 * Secrets (app secret, access token, warehouse tokens) come from files: an absolute path, or a
 * name looked up in $CREDENTIALS_DIRECTORY (systemd's LoadCredential=). They are never logged.
 */
#ifndef TALLY_SECRET_H
#define TALLY_SECRET_H

#include <stddef.h>

/* Reads the secret named `name` into buf (NUL-terminated, trailing newline removed).
 * Returns 0, or -1 with a message (naming the file, never the content) in err. */
int secret_read(const char *name, char *buf, size_t cap, char *err, size_t errlen);

#endif
