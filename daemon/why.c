#include "why.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void why_add(struct why_buf *b, const char *fmt, ...)
{
    if (b->cut || b->cap < 4)
        return;
    char piece[400];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(piece, sizeof piece, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof piece && b->len + (size_t)n + 4 <= b->cap) {
        memcpy(b->p + b->len, piece, (size_t)n + 1);
        b->len += (size_t)n;
        return;
    }
    b->cut = true;
    memcpy(b->p + b->len, "...", 4);
    b->len += 3;
}
