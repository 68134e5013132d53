/*
 * Ship-to address checks: what a carrier needs before a parcel can leave. Postcode formats
 * for the main markets (ES, FR, PL, US, BR, RU, NL, IT, DE, GB — "UK" is accepted as GB);
 * other countries need a non-empty postcode of at most 12 printable characters only where
 * the table says the country uses postcodes, and are otherwise accepted.
 */
#ifndef TALLY_ADDRESS_H
#define TALLY_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

/* Whether `postcode` has the format of `country` (ISO alpha-2, upper case: "es" is not ES).
 * NULL or "" is not valid for a country that uses postcodes. Leading/trailing spaces are not
 * allowed. Countries without postcodes (a short list in address.c: AE, HK, IE, QA, ...) accept
 * an empty one; one given for them must still be 1-12 printable characters. */
bool address_postcode_ok(const char *country, const char *postcode);

/*
 * Checks a whole ship-to address. NULL, "" and whitespace only mean missing. Returns 0 when
 * usable, or -1 with a reason for the operator in why (e.g. "postcode '2800' is not a valid ES
 * postcode (5 digits)", "no street address", "no recipient name", "no city", "unknown country
 * 'ZZ'"). The first problem found is reported, in this order: name, street, city, country,
 * postcode. why is always NUL-terminated ("" when usable), and may be NULL when cap is 0.
 */
int address_check(const char *country, const char *name, const char *street, const char *city,
                  const char *postcode, char *why, size_t cap);

#endif
