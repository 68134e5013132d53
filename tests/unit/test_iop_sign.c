/*
 * The IOP signature, pinned by vectors computed independently with the openssl command line:
 *
 *   printf 'access_tokenTOKapp_key12345formatjsonmethodaliexpress.solution.product.list.get'\
 *          'sign_methodsha256timestamp1700000000000' | openssl dgst -sha256 -hmac 'secret-abc'
 *   printf 'secret-abcaccess_tokenTOKapp_key12345formatjsonmethod'\
 *          'aliexpress.solution.product.list.getsign_methodmd5timestamp1700000000000secret-abc' \
 *          | openssl dgst -md5
 *   printf '/auth/token/createapp_key12345codeXYZsign_methodsha256timestamp1700000000000' \
 *          | openssl dgst -sha256 -hmac 'secret-abc'
 */
#include "check.h"
#include "iop_sign.h"

int main(void)
{
    char sig[65];
    /* Unsorted on purpose, and with a `sign` parameter that must be left out. */
    struct iop_param p[] = {
        {"timestamp", "1700000000000"},
        {"sign", "IGNORED"},
        {"method", "aliexpress.solution.product.list.get"},
        {"app_key", "12345"},
        {"sign_method", "sha256"},
        {"format", "json"},
        {"access_token", "TOK"},
    };
    CHECK_EQ_INT(iop_sign(IOP_SIGN_SHA256, "secret-abc", NULL, p, 7, sig), 0);
    CHECK_EQ_STR(sig, "F91A6CED04581635477EA8A3A999205FDD9A59490B9028FCBACF00BB58E05609");

    p[4].value = "md5";
    CHECK_EQ_INT(iop_sign(IOP_SIGN_MD5, "secret-abc", NULL, p, 7, sig), 0);
    CHECK_EQ_STR(sig, "34352EF6AC4406C0210464DFA3585F61");

    struct iop_param q[] = {
        {"code", "XYZ"},
        {"app_key", "12345"},
        {"timestamp", "1700000000000"},
        {"sign_method", "sha256"},
    };
    CHECK_EQ_INT(iop_sign(IOP_SIGN_SHA256, "secret-abc", "/auth/token/create", q, 4, sig), 0);
    CHECK_EQ_STR(sig, "9A078E1A883FDCF686BD3167AD7D4C950AAB287A987639A534A0B26352A281E9");

    /* A changed value or secret changes the signature. */
    q[0].value = "XYZ2";
    CHECK_EQ_INT(iop_sign(IOP_SIGN_SHA256, "secret-abc", "/auth/token/create", q, 4, sig), 0);
    CHECK(strcmp(sig, "9A078E1A883FDCF686BD3167AD7D4C950AAB287A987639A534A0B26352A281E9") != 0);
    return check_result("test_iop_sign");
}
