/* sign: the AliExpress Open Platform request signature, as the gateway verifies it.
 *
 * Every parameter except "sign" is sorted by name (byte order) and concatenated as name+value
 * with no separator; an API addressed by path (name starting with '/') is prefixed with that
 * path. sha256: HMAC-SHA256 keyed with the app secret. md5 (legacy): MD5(secret + text +
 * secret). hmac (older TOP clients): HMAC-MD5 keyed with the secret. Upper-case hex. */
#ifndef SIM_SIGN_H
#define SIM_SIGN_H

#include "params.h"

#define SIGN_HEX_MAX 65

enum sign_method { SIGN_SHA256, SIGN_MD5, SIGN_HMAC_MD5, SIGN_UNKNOWN };

/* Maps the sign_method parameter; absent means the legacy md5. */
enum sign_method sign_method_parse(const char *s);

/* Writes the upper-case hex signature of p (NUL-terminated) into out. api_path may be NULL.
 * Returns 0, or -1 when out of memory or the method is unknown. */
int sign_compute(enum sign_method m, const char *secret, const char *api_path,
                 const struct params *p, char out[SIGN_HEX_MAX]);

/* Constant-time comparison of two signatures; true when equal. */
int sign_equal(const char *a, const char *b);

#endif
