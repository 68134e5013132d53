/*
 * Explanations for operators ("FR-PAR: nearest to ES ...", "ship-by in 5 h (+100), ..."),
 * built piece by piece into a caller's buffer. Invariant: len + 4 <= cap, so "..." always
 * fits. A piece is appended whole; the first that does not fit is replaced by "..." and
 * everything after it dropped, so a cut never falls inside a code or a number.
 */
#ifndef TALLY_WHY_H
#define TALLY_WHY_H

#include <stdbool.h>
#include <stddef.h>

struct why_buf {
    char *p; /* the caller's buffer, NUL-terminated at every step */
    size_t cap, len;
    bool cut;
};

void why_add(struct why_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
