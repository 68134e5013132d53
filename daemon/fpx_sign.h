/*
 * Request signing of the 4PX open platform (FOP) router, as both public SDKs compute it
 * (EalenXie/sdk-all fop-sdk FopClient.callFop, AkaneMurakawa/tool FpxClient.getSign):
 *
 *   sign = md5("app_key" K "format" F "method" M "timestamp" T "v" V  body  secret)
 *
 * UTF-8 bytes, no separators, the JSON body exactly as sent, lower-case hex. access_token and
 * language travel in the query but are not signed.
 */
#ifndef TALLY_FPX_SIGN_H
#define TALLY_FPX_SIGN_H

#include <stddef.h>

#define FPX_SIGN_LEN 33 /* 32 hex digits and a NUL */

/* Writes the signature into out. Returns 0, or -1 when the digest failed. */
int fpx_sign(const char *app_key, const char *format, const char *method, const char *timestamp,
             const char *v, const char *body, size_t body_len, const char *secret,
             char out[FPX_SIGN_LEN]);

#endif
