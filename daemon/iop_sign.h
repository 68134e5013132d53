/*
 * Request signing of the AliExpress Open Platform (IOP) gateway.
 *
 * sha256: sort every parameter except `sign` by name (byte order), concatenate name + value
 * with no separators, prefix the API path when the API is addressed by path (a name starting
 * with '/'), HMAC-SHA256 with the app secret as key, upper-case hex.
 * md5 (legacy): MD5(secret + concatenation + secret), upper-case hex.
 */
#ifndef TALLY_IOP_SIGN_H
#define TALLY_IOP_SIGN_H

#include <stddef.h>

struct iop_param {
    const char *name;
    const char *value;
};

enum iop_sign_method { IOP_SIGN_SHA256, IOP_SIGN_MD5 };

/*
 * Writes the signature (64 or 32 upper-case hex digits and a NUL) into out (>= 65 bytes).
 * `api_path` is NULL for method-addressed APIs. `params` is not modified (a sorted copy of
 * the pointers is made). Returns 0, or -1 on allocation failure.
 */
int iop_sign(enum iop_sign_method m, const char *secret, const char *api_path,
             const struct iop_param *params, size_t n, char out[65]);

#endif
