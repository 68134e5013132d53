#include "sign.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "json_out.h"

enum sign_method sign_method_parse(const char *s)
{
    if (!s)
        return SIGN_MD5;
    if (strcmp(s, "sha256") == 0)
        return SIGN_SHA256;
    if (strcmp(s, "md5") == 0)
        return SIGN_MD5;
    if (strcmp(s, "hmac") == 0)
        return SIGN_HMAC_MD5;
    return SIGN_UNKNOWN;
}

static int by_name(const void *a, const void *b)
{
    const struct param *x = *(const struct param *const *)a;
    const struct param *y = *(const struct param *const *)b;
    return strcmp(x->name, y->name);
}

/* The text that is signed: [api_path] name1 value1 name2 value2 ... */
static char *signed_text(const char *api_path, const struct params *p, size_t *len)
{
    const struct param **sorted = malloc((p->n ? p->n : 1) * sizeof(*sorted));
    if (!sorted)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, "sign") != 0)
            sorted[n++] = &p->v[i];
    qsort(sorted, n, sizeof(*sorted), by_name);

    struct jb text;
    jb_init(&text, (size_t)1 << 30);
    if (api_path && api_path[0] == '/')
        jb_append(&text, api_path, strlen(api_path));
    for (size_t i = 0; i < n; i++) {
        jb_append(&text, sorted[i]->name, strlen(sorted[i]->name));
        jb_append(&text, sorted[i]->value, strlen(sorted[i]->value));
    }
    free(sorted);
    if (jb_failed(&text)) {
        jb_free(&text);
        return NULL;
    }
    jb_append(&text, "", 0); /* a NUL-terminated buffer even for empty text */
    return jb_steal(&text, len);
}

static void to_hex_upper(const unsigned char *md, unsigned n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * n] = '\0';
}

int sign_compute(enum sign_method m, const char *secret, const char *api_path,
                 const struct params *p, char out[SIGN_HEX_MAX])
{
    size_t len = 0;
    char *text = signed_text(api_path, p, &len);
    if (!text)
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int ok = 0;
    size_t slen = strlen(secret);
    switch (m) {
    case SIGN_SHA256:
        ok = HMAC(EVP_sha256(), secret, (int)slen, (const unsigned char *)text, len, md, &mdlen) !=
             NULL;
        break;
    case SIGN_HMAC_MD5:
        ok = HMAC(EVP_md5(), secret, (int)slen, (const unsigned char *)text, len, md, &mdlen) !=
             NULL;
        break;
    case SIGN_MD5: {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) &&
             EVP_DigestUpdate(ctx, secret, slen) && EVP_DigestUpdate(ctx, text, len) &&
             EVP_DigestUpdate(ctx, secret, slen) && EVP_DigestFinal_ex(ctx, md, &mdlen);
        EVP_MD_CTX_free(ctx);
        break;
    }
    case SIGN_UNKNOWN:
        break;
    }
    free(text);
    if (!ok)
        return -1;
    to_hex_upper(md, mdlen, out);
    return 0;
}

int sign_equal(const char *a, const char *b)
{
    size_t n = strlen(a);
    return n == strlen(b) && CRYPTO_memcmp(a, b, n) == 0;
}
