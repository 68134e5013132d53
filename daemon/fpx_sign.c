/* 4PX FOP request signing (fpx_sign.h). */
#include "fpx_sign.h"

#include <string.h>

#include <openssl/evp.h>

static int put(EVP_MD_CTX *c, const char *s, size_t n)
{
    return n == 0 || EVP_DigestUpdate(c, s, n) == 1;
}

int fpx_sign(const char *app_key, const char *format, const char *method, const char *timestamp,
             const char *v, const char *body, size_t body_len, const char *secret,
             char out[FPX_SIGN_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int rc = -1;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c && EVP_DigestInit_ex(c, EVP_md5(), NULL) == 1) {
        int ok = put(c, "app_key", 7) && put(c, app_key, strlen(app_key)) && put(c, "format", 6) &&
                 put(c, format, strlen(format)) && put(c, "method", 6) &&
                 put(c, method, strlen(method)) && put(c, "timestamp", 9) &&
                 put(c, timestamp, strlen(timestamp)) && put(c, "v", 1) && put(c, v, strlen(v)) &&
                 put(c, body ? body : "", body ? body_len : 0) && put(c, secret, strlen(secret));
        if (ok && EVP_DigestFinal_ex(c, md, &mdlen) == 1 && mdlen == 16)
            rc = 0;
    }
    EVP_MD_CTX_free(c);
    if (rc == 0) {
        static const char hex[] = "0123456789abcdef";
        for (unsigned i = 0; i < mdlen; i++) {
            out[2 * i] = hex[md[i] >> 4];
            out[2 * i + 1] = hex[md[i] & 15];
        }
        out[2 * mdlen] = 0;
    }
    return rc;
}
