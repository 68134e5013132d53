#include "geo.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

struct centroid {
    char cc[3];
    double lat, lon; /* degrees, north and east positive */
};

/*
 * A central point of each country, rounded to 0.1 degree: good to tens of km, which is all
 * that "nearest warehouse" needs. Large countries use the centre of their main territory
 * (contiguous US, mainland NO/FR/ES/PT), so overseas territories do not pull the point into
 * the sea. Sorted by code so that a missing or duplicate entry is easy to spot.
 */
static const struct centroid centroids[] = {
    {"AE", 23.4, 53.8},   {"AL", 41.2, 20.2},   {"AR", -38.4, -63.6}, {"AT", 47.6, 14.1},
    {"AU", -25.3, 133.8}, {"BA", 43.9, 17.7},   {"BE", 50.6, 4.6},    {"BG", 42.7, 25.5},
    {"BR", -14.2, -51.9}, {"BY", 53.7, 27.9},   {"CA", 56.1, -106.3}, {"CH", 46.8, 8.2},
    {"CL", -35.7, -71.5}, {"CN", 35.9, 104.2},  {"CO", 4.6, -74.3},   {"CY", 35.1, 33.4},
    {"CZ", 49.8, 15.5},   {"DE", 51.2, 10.4},   {"DK", 56.0, 9.5},    {"EE", 58.6, 25.0},
    {"EG", 26.8, 30.8},   {"ES", 40.4, -3.7},   {"FI", 64.0, 26.0},   {"FR", 46.6, 2.4},
    {"GB", 54.0, -2.4},   {"GR", 39.1, 21.8},   {"HK", 22.4, 114.1},  {"HR", 45.1, 15.2},
    {"HU", 47.2, 19.5},   {"IE", 53.4, -8.2},   {"IL", 31.0, 34.9},   {"IN", 20.6, 79.0},
    {"IS", 65.0, -18.6},  {"IT", 42.8, 12.6},   {"JP", 36.2, 138.3},  {"KR", 35.9, 127.8},
    {"KZ", 48.0, 66.9},   {"LT", 55.2, 23.9},   {"LU", 49.8, 6.1},    {"LV", 56.9, 24.6},
    {"MA", 31.8, -7.1},   {"MD", 47.4, 28.4},   {"ME", 42.7, 19.4},   {"MK", 41.6, 21.7},
    {"MT", 35.9, 14.4},   {"MX", 23.6, -102.6}, {"NL", 52.1, 5.3},    {"NO", 61.4, 8.8},
    {"NZ", -40.9, 174.9}, {"PE", -9.2, -75.0},  {"PL", 51.9, 19.1},   {"PT", 39.6, -8.0},
    {"QA", 25.3, 51.2},   {"RO", 45.9, 25.0},   {"RS", 44.0, 20.9},   {"RU", 61.5, 105.3},
    {"SA", 23.9, 45.1},   {"SE", 62.2, 17.6},   {"SG", 1.4, 103.8},   {"SI", 46.1, 14.8},
    {"SK", 48.7, 19.7},   {"TR", 39.0, 35.2},   {"UA", 48.4, 31.2},   {"US", 39.8, -98.6},
    {"ZA", -30.6, 22.9},
};

static const struct centroid *lookup(const char *cc)
{
    if (!cc || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z' || cc[2] != '\0')
        return NULL;
    /* Marketplaces (AliExpress among them) spell the United Kingdom "UK". */
    if (strcmp(cc, "UK") == 0)
        cc = "GB";
    for (size_t i = 0; i < sizeof centroids / sizeof centroids[0]; i++)
        if (strcmp(centroids[i].cc, cc) == 0)
            return &centroids[i];
    return NULL;
}

bool geo_known(const char *cc)
{
    return lookup(cc) != NULL;
}

int geo_distance_km(const char *a, const char *b)
{
    const struct centroid *p = lookup(a), *q = lookup(b);
    if (!p || !q)
        return -1;
    if (p == q)
        return 0;
    /* Haversine on a sphere of the Earth's mean radius; stable for short distances too. */
    const double rad = 3.14159265358979323846 / 180.0, earth_km = 6371.0;
    double dlat = (q->lat - p->lat) * rad, dlon = (q->lon - p->lon) * rad;
    double h = sin(dlat / 2) * sin(dlat / 2) +
               cos(p->lat * rad) * cos(q->lat * rad) * sin(dlon / 2) * sin(dlon / 2);
    if (h > 1.0)
        h = 1.0; /* rounding near the antipode */
    return (int)lround(2.0 * earth_km * asin(sqrt(h)));
}
