#include "address.h"

#include <stdio.h>
#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_letter(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static char upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* Whether s has exactly the shape of pat: '9' a digit, 'A' a letter of either case, anything
 * else that character. */
static bool shape(const char *s, const char *pat)
{
    for (; *pat; s++, pat++) {
        bool ok = *pat == '9' ? is_digit(*s) : *pat == 'A' ? is_letter(*s) : *s == *pat;
        if (!ok)
            return false; /* also stops at the end of s: '\0' matches no pattern character */
    }
    return *s == '\0';
}

static bool five_digits(const char *s)
{
    return shape(s, "99999");
}

/* Spanish postcodes start with the province number, 01 (Álava) to 52 (Melilla). */
static bool es_ok(const char *s)
{
    if (!five_digits(s))
        return false;
    int province = (s[0] - '0') * 10 + (s[1] - '0');
    return province >= 1 && province <= 52;
}

static bool pl_ok(const char *s)
{
    return shape(s, "99-999");
}

static bool us_ok(const char *s)
{
    return shape(s, "99999") || shape(s, "99999-9999");
}

static bool br_ok(const char *s)
{
    return shape(s, "99999-999") || shape(s, "99999999");
}

static bool ru_ok(const char *s)
{
    return shape(s, "999999");
}

/* Dutch: four digits not starting with 0, two letters; SA, SD and SS are never issued. */
static bool nl_ok(const char *s)
{
    const char *letters;
    if (shape(s, "9999 AA"))
        letters = s + 5;
    else if (shape(s, "9999AA"))
        letters = s + 4;
    else
        return false;
    char a = upper(letters[0]), b = upper(letters[1]);
    if (a == 'S' && (b == 'A' || b == 'D' || b == 'S'))
        return false;
    return s[0] != '0';
}

/* UK: an outward code of one of six shapes, an optional single space, an inward code 9AA. */
static bool gb_ok(const char *s)
{
    static const char *const outward[] = {"A9", "A99", "A9A", "AA9", "AA99", "AA9A"};
    size_t n = strlen(s);
    if (n < 5 || !shape(s + n - 3, "9AA"))
        return false;
    size_t out_len = s[n - 4] == ' ' ? n - 4 : n - 3;
    char out[8];
    if (out_len >= sizeof out)
        return false;
    memcpy(out, s, out_len);
    out[out_len] = '\0';
    for (size_t i = 0; i < sizeof outward / sizeof outward[0]; i++)
        if (shape(out, outward[i]))
            return true;
    return false;
}

struct postcode_format {
    const char *country;
    bool (*ok)(const char *postcode);
    const char *hint; /* the format, for the operator */
};

static const struct postcode_format formats[] = {
    {"ES", es_ok, "5 digits, 01xxx to 52xxx"},
    {"FR", five_digits, "5 digits"},
    {"PL", pl_ok, "NN-NNN, e.g. 00-950"},
    {"US", us_ok, "NNNNN or NNNNN-NNNN"},
    {"BR", br_ok, "NNNNN-NNN or 8 digits"},
    {"RU", ru_ok, "6 digits"},
    {"NL", nl_ok, "NNNN AA, e.g. 1012 AB"},
    {"IT", five_digits, "5 digits"},
    {"DE", five_digits, "5 digits"},
    {"GB", gb_ok, "e.g. SW1A 1AA"},
    {"UK", gb_ok, "e.g. SW1A 1AA"},
};

/*
 * Countries where addresses have no postcode (or, as in IE, one that is commonly left out), so
 * an empty one is fine. A short list of the destinations sellers actually ship to; any country
 * not listed is assumed to use postcodes.
 */
static const char *const no_postcode[] = {"AE", "AG", "AO", "BS", "BZ", "FJ", "GH",
                                          "HK", "IE", "MO", "QA", "UG", "YE", "ZW"};

static const struct postcode_format *format_of(const char *country)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(formats[i].country, country) == 0)
            return &formats[i];
    return NULL;
}

static bool uses_postcodes(const char *country)
{
    for (size_t i = 0; i < sizeof no_postcode / sizeof no_postcode[0]; i++)
        if (strcmp(no_postcode[i], country) == 0)
            return false;
    return true;
}

/* Any other country: 1 to 12 printable ASCII characters, no space at either end. */
static bool generic_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 12 || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

static bool is_blank(const char *s)
{
    if (!s)
        return true;
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            return false;
    return true;
}

/* A bounded, printable copy of untrusted text for a message: at most 16 characters,
 * anything unprintable shown as '?', "..." when cut. */
static void quote_for_operator(const char *s, char *out, size_t cap)
{
    size_t i = 0, k = 0;
    for (; s[i] && i < 16 && k + 1 < cap; i++, k++)
        out[k] = s[i] >= 0x20 && s[i] <= 0x7e ? s[i] : '?';
    out[k] = '\0';
    if (s[i] && k + 4 <= cap)
        memcpy(out + k, "...", 4);
}

bool address_postcode_ok(const char *country, const char *postcode)
{
    if (!country)
        return false;
    bool empty = !postcode || !postcode[0];
    const struct postcode_format *f = format_of(country);
    if (f)
        return !empty && f->ok(postcode);
    if (empty)
        return !uses_postcodes(country);
    return generic_ok(postcode);
}

static bool country_ok(const char *c)
{
    return c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' && c[2] == '\0' &&
           strcmp(c, "ZZ") != 0;
}

/* The reason names the format, never the value: exceptions are shown to readers and kept in
 * logs, and a buyer's postcode is personal data (README "Personal data"). */
static void postcode_reason(const char *country, const char *postcode, char *why, size_t cap)
{
    if (!postcode || !postcode[0]) {
        snprintf(why, cap, "no postcode (required for %s)", country);
        return;
    }
    const struct postcode_format *f = format_of(country);
    if (f)
        snprintf(why, cap, "the postcode is not a valid %s postcode (%s)", country, f->hint);
    else
        snprintf(why, cap,
                 "the postcode is not valid for %s (1-12 printable characters, no spaces at"
                 " either end)",
                 country);
}

/* Whitespace-only fields count as missing: a label cannot be printed from them either. */
int address_check(const char *country, const char *name, const char *street, const char *city,
                  const char *postcode, char *why, size_t cap)
{
    char scratch[1];
    if (!why || cap == 0) {
        why = scratch;
        cap = sizeof scratch;
    }
    why[0] = '\0';
    if (is_blank(name)) {
        snprintf(why, cap, "no recipient name");
        return -1;
    }
    if (is_blank(street)) {
        snprintf(why, cap, "no street address");
        return -1;
    }
    if (is_blank(city)) {
        snprintf(why, cap, "no city");
        return -1;
    }
    if (!country || !country[0]) {
        snprintf(why, cap, "no country");
        return -1;
    }
    if (!country_ok(country)) {
        char q[24];
        quote_for_operator(country, q, sizeof q);
        snprintf(why, cap, "unknown country '%s'", q);
        return -1;
    }
    if (!address_postcode_ok(country, postcode)) {
        postcode_reason(country, postcode, why, cap);
        return -1;
    }
    return 0;
}
