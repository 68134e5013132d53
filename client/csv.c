#include "csv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CSV_IN_CHUNK 65536

struct csv_reader {
    FILE *f;
    unsigned char in[CSV_IN_CHUNK];
    size_t in_pos, in_len;
    bool started; /* the byte order mark check has been done */
    bool io_error;

    /* The current record: field bytes back to back, each followed by a NUL. */
    char *data;
    size_t len, cap;
    size_t *starts; /* offset in data of each field */
    size_t nfields, fields_cap;

    unsigned long line;     /* line of the next unread byte */
    unsigned long rec_line; /* line on which the current record starts */
    unsigned long err_line;
    char err[200];
};

struct csv_reader *csv_reader_new(FILE *f)
{
    struct csv_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->f = f;
    r->line = 1;
    return r;
}

void csv_reader_free(struct csv_reader *r)
{
    if (!r)
        return;
    free(r->data);
    free(r->starts);
    free(r);
}

static bool fill(struct csv_reader *r)
{
    if (r->io_error || feof(r->f))
        return false;
    r->in_len = fread(r->in, 1, sizeof r->in, r->f);
    r->in_pos = 0;
    if (r->in_len == 0 && ferror(r->f)) {
        r->io_error = true;
        r->err_line = r->line;
        snprintf(r->err, sizeof r->err, "read error: %s", strerror(errno));
    }
    return r->in_len > 0;
}

/* The next byte, or EOF at the end of the input (or on a read error: see io_error). */
static int get(struct csv_reader *r)
{
    if (r->in_pos == r->in_len && !fill(r))
        return EOF;
    return r->in[r->in_pos++];
}

static int peek(struct csv_reader *r)
{
    if (r->in_pos == r->in_len && !fill(r))
        return EOF;
    return r->in[r->in_pos];
}

/* Consumes the rest of a line break that began with `c` ('\r' or '\n'). */
static void end_line(struct csv_reader *r, int c)
{
    if (c == '\r' && peek(r) == '\n')
        r->in_pos++;
    r->line++;
}

static int fail(struct csv_reader *r, const char *what)
{
    r->err_line = r->line;
    snprintf(r->err, sizeof r->err, "%s", what);
    return -1;
}

static int append(struct csv_reader *r, char c)
{
    if (r->len + 1 >= r->cap) {
        if (r->cap >= CSV_MAX_RECORD)
            return fail(r, "record too long (more than 4 MiB)");
        size_t ncap = r->cap ? r->cap * 2 : 1024;
        char *n = realloc(r->data, ncap);
        if (!n)
            return fail(r, "out of memory");
        r->data = n;
        r->cap = ncap;
    }
    r->data[r->len++] = c;
    return 0;
}

static int begin_field(struct csv_reader *r)
{
    if (r->nfields == r->fields_cap) {
        if (r->fields_cap >= CSV_MAX_FIELDS)
            return fail(r, "too many fields in one record");
        size_t ncap = r->fields_cap ? r->fields_cap * 2 : 32;
        size_t *n = realloc(r->starts, ncap * sizeof *n);
        if (!n)
            return fail(r, "out of memory");
        r->starts = n;
        r->fields_cap = ncap;
    }
    r->starts[r->nfields++] = r->len;
    return 0;
}

/*
 * Reads a quoted field whose opening quote was consumed. Returns the byte after the closing
 * quote (',', a line break or EOF), or -2 on error.
 */
static int read_quoted(struct csv_reader *r)
{
    unsigned long opened = r->line;
    for (;;) {
        int c = get(r);
        if (c == EOF) {
            if (!r->io_error) {
                r->err_line = opened;
                snprintf(r->err, sizeof r->err, "a quoted field is never closed (missing '\"')");
            }
            return -2;
        }
        if (c == '"') {
            if (peek(r) != '"')
                break;
            r->in_pos++;
        } else if (c == 0) {
            fail(r, "NUL byte in the input");
            return -2;
        } else if (c == '\r' || c == '\n') {
            /* A line break inside quotes is data, kept byte for byte. */
            if (append(r, (char)c))
                return -2;
            if (c == '\r' && peek(r) == '\n') {
                r->in_pos++;
                if (append(r, '\n'))
                    return -2;
            }
            r->line++;
            continue;
        }
        if (append(r, (char)c))
            return -2;
    }
    int c = get(r);
    if (c != ',' && c != '\r' && c != '\n' && c != EOF) {
        fail(r, "unexpected text after a closing quote (a quote inside a quoted field must be "
                "doubled: \"\")");
        return -2;
    }
    return c;
}

/* Reads an unquoted field starting with byte c. Returns the byte that ended it, or -2. */
static int read_plain(struct csv_reader *r, int c)
{
    while (c != ',' && c != '\r' && c != '\n' && c != EOF) {
        if (c == 0) {
            fail(r, "NUL byte in the input");
            return -2;
        }
        if (append(r, (char)c))
            return -2;
        c = get(r);
    }
    return c;
}

int csv_read(struct csv_reader *r)
{
    static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};
    if (!r->started) {
        r->started = true;
        if (peek(r) != EOF && r->in_len >= 3 && memcmp(r->in, bom, 3) == 0)
            r->in_pos = 3;
    }
    r->len = 0;
    r->nfields = 0;

    int c;
    for (;;) { /* skip empty lines */
        c = get(r);
        if (c != '\r' && c != '\n')
            break;
        end_line(r, c);
    }
    if (c == EOF)
        return r->io_error ? -1 : 0;
    r->rec_line = r->line;
    for (;;) {
        if (begin_field(r))
            return -1;
        c = c == '"' ? read_quoted(r) : read_plain(r, c);
        if (c == -2 || append(r, '\0'))
            return -1;
        if (c != ',')
            break;
        c = get(r);
    }
    if (r->io_error)
        return -1;
    if (c != EOF)
        end_line(r, c);
    return 1;
}

size_t csv_nfields(const struct csv_reader *r)
{
    return r->nfields;
}

const char *csv_field(const struct csv_reader *r, size_t i, size_t *len)
{
    if (i >= r->nfields) {
        if (len)
            *len = 0;
        return "";
    }
    size_t end = i + 1 < r->nfields ? r->starts[i + 1] : r->len;
    if (len)
        *len = end - r->starts[i] - 1;
    return r->data + r->starts[i];
}

unsigned long csv_line(const struct csv_reader *r)
{
    return r->rec_line;
}

const char *csv_reader_error(const struct csv_reader *r)
{
    return r->err[0] ? r->err : "no error";
}

unsigned long csv_reader_error_line(const struct csv_reader *r)
{
    return r->err_line;
}
