/*
 * An RFC 4180 CSV reader: comma-separated fields, records ended by CRLF (a bare LF or CR is
 * accepted too), fields optionally enclosed in double quotes, within which commas, line breaks
 * and doubled quotes ("") are data. A UTF-8 byte order mark at the start is skipped, and so are
 * empty lines. The reader streams: it holds one record at a time.
 *
 * Stricter than some readers on purpose, because a silently mangled seed import is worse than a
 * refused one: text after a closing quote, an unterminated quoted field, a NUL byte, or a record
 * longer than CSV_MAX_RECORD bytes are errors, reported with their line.
 */
#ifndef TALLY_CSV_H
#define TALLY_CSV_H

#include <stddef.h>
#include <stdio.h>

#define CSV_MAX_RECORD (4u << 20) /* bytes of field data in one record */
#define CSV_MAX_FIELDS 4096

struct csv_reader;

/* A reader over `f`, which stays the caller's (not closed by csv_reader_free). NULL on OOM. */
struct csv_reader *csv_reader_new(FILE *f);

/* NULL is a no-op. */
void csv_reader_free(struct csv_reader *r);

/*
 * Reads the next record. Returns 1 when a record was read, 0 at the end of the input, or -1 on
 * an error (csv_reader_error() says what and where). Fields stay valid until the next call.
 */
int csv_read(struct csv_reader *r);

/* Number of fields of the current record (at least 1). */
size_t csv_nfields(const struct csv_reader *r);

/* Field i (0-based) of the current record, NUL-terminated; its length in *len if len given. */
const char *csv_field(const struct csv_reader *r, size_t i, size_t *len);

/* 1-based line of the input on which the current record starts. */
unsigned long csv_line(const struct csv_reader *r);

/* The last error, e.g. "NUL byte in the input", and the line it is on. */
const char *csv_reader_error(const struct csv_reader *r);
unsigned long csv_reader_error_line(const struct csv_reader *r);

#endif
