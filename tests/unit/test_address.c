/*
 * Ship-to addresses: postcode formats of the ten main markets, the other countries, and the
 * reasons a whole address is refused.
 */
#include "address.h"
#include "check.h"

struct postcode_case {
    const char *country, *postcode;
    bool ok;
};

static const struct postcode_case postcodes[] = {
    /* ES: 5 digits, province 01 to 52. */
    {"ES", "28013", true},
    {"ES", "01001", true},
    {"ES", "52001", true},
    {"ES", "08080", true},
    {"ES", "00123", false},
    {"ES", "53001", false},
    {"ES", "99999", false},
    {"ES", "2801", false},
    {"ES", "280130", false},
    {"ES", "28 013", false},
    {"ES", "2801A", false},
    /* FR */
    {"FR", "75008", true},
    {"FR", "97400", true},
    {"FR", "7500", false},
    {"FR", "75 008", false},
    {"FR", "F-75008", false},
    /* PL */
    {"PL", "00-950", true},
    {"PL", "31-154", true},
    {"PL", "00950", false},
    {"PL", "00 950", false},
    {"PL", "0-0950", false},
    /* US */
    {"US", "10001", true},
    {"US", "10001-1234", true},
    {"US", "1000", false},
    {"US", "10001-123", false},
    {"US", "10001 1234", false},
    {"US", "100011234", false},
    /* BR */
    {"BR", "01310-100", true},
    {"BR", "01310100", true},
    {"BR", "01310-10", false},
    {"BR", "0131-0100", false},
    {"BR", "0131010", false},
    /* RU */
    {"RU", "101000", true},
    {"RU", "10100", false},
    {"RU", "1010000", false},
    {"RU", "10100A", false},
    /* NL: 4 digits (not from 0), 2 letters, not SA/SD/SS. */
    {"NL", "1012 AB", true},
    {"NL", "1012AB", true},
    {"NL", "1012ab", true},
    {"NL", "9999 ZZ", true},
    {"NL", "0123 AB", false},
    {"NL", "1012 SA", false},
    {"NL", "1012sd", false},
    {"NL", "1012 Ss", false},
    {"NL", "1012 SB", true},
    {"NL", "1012  AB", false},
    {"NL", "1012 A", false},
    {"NL", "1012 A1", false},
    /* IT */
    {"IT", "00184", true},
    {"IT", "0018", false},
    {"IT", "I-00184", false},
    /* DE */
    {"DE", "10115", true},
    {"DE", "01067", true},
    {"DE", "1011", false},
    {"DE", "101155", false},
    /* GB and UK: outward A9, A99, A9A, AA9, AA99, AA9A; optional space; inward 9AA. */
    {"GB", "M1 1AE", true},
    {"GB", "B33 8TH", true},
    {"GB", "W1A 0AX", true},
    {"GB", "CR2 6XH", true},
    {"GB", "DN55 1PT", true},
    {"GB", "EC1A 1BB", true},
    {"GB", "ec1a1bb", true},
    {"UK", "SW1A 1AA", true},
    {"UK", "sw1a 1aa", true},
    {"GB", "EC1A  1BB", false},
    {"GB", "EC1A 1B", false},
    {"GB", "EC1AB 1BB", false},
    {"GB", "1A 1AA", false},
    {"GB", "A 1AA", false},
    {"GB", "AAA 1AA", false},
    {"GB", "EC1A 11B", false},
    {"GB", " EC1A 1BB", false},
    {"GB", "EC1A 1BB ", false},
    /* The main markets need a postcode. */
    {"ES", "", false},
    {"DE", NULL, false},
    {"GB", "", false},
    /* Countries without postcodes: empty is fine, a given one must still be sane. */
    {"AE", "", true},
    {"HK", NULL, true},
    {"IE", "", true},
    {"IE", "D02 X285", true},
    {"QA", "", true},
    {"AE", "\x01", false},
    /* Other countries: 1 to 12 printable characters, no space at either end. */
    {"JP", "100-0001", true},
    {"CA", "K1A 0B1", true},
    {"SE", "114 55", true},
    {"JP", "", false},
    {"JP", NULL, false},
    {"JP", "1234567890123", false},
    {"JP", "123456789012", true},
    {"JP", " 100-0001", false},
    {"JP", "100-0001 ", false},
    {"JP", "100\t0001", false},
    {"JP", "100\xc3\xa9", false},
    {NULL, "28013", false},
};

struct address_case {
    const char *country, *name, *street, *city, *postcode;
    int rc;
    const char *why; /* exact */
};

static const struct address_case addresses[] = {
    {"ES", "Ana Ruiz", "Calle Mayor 1", "Madrid", "28013", 0, ""},
    {"UK", "J Smith", "10 Downing St", "London", "SW1A 2AA", 0, ""},
    {"AE", "A Khan", "Sheikh Zayed Rd", "Dubai", NULL, 0, ""},
    {"ES", NULL, "Calle Mayor 1", "Madrid", "28013", -1, "no recipient name"},
    {"ES", "  ", "Calle Mayor 1", "Madrid", "28013", -1, "no recipient name"},
    {"ES", "Ana Ruiz", "", "Madrid", "28013", -1, "no street address"},
    {"ES", "Ana Ruiz", "Calle Mayor 1", NULL, "28013", -1, "no city"},
    {"ES", "Ana Ruiz", "Calle Mayor 1", "\t", "28013", -1, "no city"},
    {NULL, "Ana Ruiz", "Calle Mayor 1", "Madrid", "28013", -1, "no country"},
    {"ZZ", "Ana Ruiz", "Calle Mayor 1", "Madrid", "28013", -1, "unknown country 'ZZ'"},
    {"es", "Ana Ruiz", "Calle Mayor 1", "Madrid", "28013", -1, "unknown country 'es'"},
    {"ESP", "Ana Ruiz", "Calle Mayor 1", "Madrid", "28013", -1, "unknown country 'ESP'"},
    {"ES", "Ana Ruiz", "Calle Mayor 1", "Madrid", "2800", -1,
     "the postcode is not a valid ES postcode (5 digits, 01xxx to 52xxx)"},
    {"ES", "Ana Ruiz", "Calle Mayor 1", "Madrid", "", -1, "no postcode (required for ES)"},
    {"NL", "Jan", "Damrak 1", "Amsterdam", "1012 SS", -1,
     "the postcode is not a valid NL postcode (NNNN AA, e.g. 1012 AB)"},
    {"UK", "J Smith", "10 Downing St", "London", "SW1A", -1,
     "the postcode is not a valid UK postcode (e.g. SW1A 1AA)"},
    {"PL", "Jan", "Marszalkowska 1", "Warszawa", "00950", -1,
     "the postcode is not a valid PL postcode (NN-NNN, e.g. 00-950)"},
    {"JP", "Taro", "1-1 Chiyoda", "Tokyo", "1234567890123456789", -1,
     "the postcode is not valid for JP (1-12 printable characters, no spaces"
     " at either end)"},
    {"JP", "Taro", "1-1 Chiyoda", "Tokyo", "10\n0", -1,
     "the postcode is not valid for JP (1-12 printable characters, no spaces at either end)"},
    /* The first problem is the one reported. */
    {NULL, NULL, NULL, NULL, NULL, -1, "no recipient name"},
};

int main(void)
{
    for (size_t i = 0; i < sizeof postcodes / sizeof postcodes[0]; i++) {
        const struct postcode_case *k = &postcodes[i];
        bool ok = address_postcode_ok(k->country, k->postcode);
        if (ok != k->ok)
            fprintf(stderr, "postcode %s '%s': expected %s\n", k->country ? k->country : "NULL",
                    k->postcode ? k->postcode : "NULL", k->ok ? "valid" : "invalid");
        CHECK(ok == k->ok);
    }

    for (size_t i = 0; i < sizeof addresses / sizeof addresses[0]; i++) {
        const struct address_case *k = &addresses[i];
        char why[200] = "junk";
        CHECK_EQ_INT(
            address_check(k->country, k->name, k->street, k->city, k->postcode, why, sizeof why),
            k->rc);
        CHECK_EQ_STR(why, k->why);
    }

    /* A short buffer is cut, never overrun; no buffer at all is allowed. */
    char small[8];
    CHECK_EQ_INT(address_check("ES", "A", "B", "C", "2800", small, sizeof small), -1);
    CHECK_EQ_STR(small, "the pos");
    CHECK_EQ_INT(address_check("ES", "A", "B", "C", "2800", NULL, 0), -1);
    CHECK_EQ_INT(address_check("ES", "A", "B", "C", "28013", NULL, 0), 0);
    /* The reason never carries the buyer's postcode itself (exceptions are shown to readers). */
    char why[256];
    CHECK_EQ_INT(address_check("PL", "A", "B", "C", "00950", why, sizeof why), -1);
    CHECK(strstr(why, "00950") == NULL);
    return check_result("test_address");
}
