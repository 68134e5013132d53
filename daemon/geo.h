/*
 * Countries and distances, for allocation ("the warehouse in, or nearest to, the ship-to
 * country"). A fixed table of country centroids (ISO 3166 alpha-2, latitude and longitude of
 * a central point, rounded to 0.1 degree); distance is the great-circle distance between two
 * centroids. Data, not a service: no lookup ever leaves the station.
 */
#ifndef TALLY_GEO_H
#define TALLY_GEO_H

#include <stdbool.h>

/* Whether the table knows `cc` (two upper-case letters). "UK" is taken as GB, as
 * marketplaces spell it. */
bool geo_known(const char *cc);

/* Great-circle distance in km between the centroids of two countries, rounded to the nearest
 * km; 0 for the same country; -1 when either is unknown (also when both are the same unknown
 * code: "unknown" is never "near"). */
int geo_distance_km(const char *a, const char *b);

#endif
