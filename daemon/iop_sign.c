#include "iop_sign.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

static int by_name(const void *a, const void *b)
{
    const struct iop_param *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name); /* strcmp compares as unsigned bytes */
}

static void hex_upper(const unsigned char *d, unsigned n, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = 0;
}

int iop_sign(enum iop_sign_method m, const char *secret, const char *api_path,
             const struct iop_param *params, size_t n, char out[65])
{
    const struct iop_param **sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(params[i].name, "sign") != 0)
            sorted[k++] = &params[i];
    qsort(sorted, k, sizeof *sorted, by_name);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int rc = -1;
    if (m == IOP_SIGN_SHA256) {
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *h = mac ? EVP_MAC_CTX_new(mac) : NULL;
        char digest[] = "SHA256";
        OSSL_PARAM ps[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
        if (h && EVP_MAC_init(h, (const unsigned char *)secret, strlen(secret), ps) == 1) {
            int ok = 1;
            if (api_path)
                ok &= EVP_MAC_update(h, (const unsigned char *)api_path, strlen(api_path));
            for (size_t i = 0; i < k; i++) {
                ok &= EVP_MAC_update(h, (const unsigned char *)sorted[i]->name,
                                     strlen(sorted[i]->name));
                ok &= EVP_MAC_update(h, (const unsigned char *)sorted[i]->value,
                                     strlen(sorted[i]->value));
            }
            size_t len = 0;
            if (ok && EVP_MAC_final(h, md, &len, sizeof md) == 1) {
                mdlen = (unsigned)len;
                rc = 0;
            }
        }
        EVP_MAC_CTX_free(h);
        EVP_MAC_free(mac);
    } else {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        if (c && EVP_DigestInit_ex(c, EVP_md5(), NULL) == 1) {
            int ok = EVP_DigestUpdate(c, secret, strlen(secret));
            if (api_path)
                ok &= EVP_DigestUpdate(c, api_path, strlen(api_path));
            for (size_t i = 0; i < k; i++) {
                ok &= EVP_DigestUpdate(c, sorted[i]->name, strlen(sorted[i]->name));
                ok &= EVP_DigestUpdate(c, sorted[i]->value, strlen(sorted[i]->value));
            }
            ok &= EVP_DigestUpdate(c, secret, strlen(secret));
            if (ok && EVP_DigestFinal_ex(c, md, &mdlen) == 1)
                rc = 0;
        }
        EVP_MD_CTX_free(c);
    }
    free(sorted);
    if (rc == 0)
        hex_upper(md, mdlen, out);
    return rc;
}
