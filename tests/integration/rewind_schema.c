/*
 * rewind_schema DB VERSION: takes the replica file DB (closed: no tallyd on it) back to schema
 * VERSION with rh_rewind_schema (tests/unit/replica_harness.c), so that a test can start tallyd
 * on an old-schema replica and kill it during the upgrade (test_crash_loop.sh).
 */
#include <stdio.h>
#include <stdlib.h>

#include "unit/replica_harness.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: rewind_schema DB VERSION\n");
        return 2;
    }
    char *end = NULL;
    long v = strtol(argv[2], &end, 10);
    if (!end || *end || v < 1 || v > 1000) {
        fprintf(stderr, "rewind_schema: bad version %s\n", argv[2]);
        return 2;
    }
    if (rh_rewind_schema(argv[1], (int)v) != 0) {
        fprintf(stderr, "rewind_schema: %s could not be taken back to schema %ld\n", argv[1], v);
        return 1;
    }
    return 0;
}
