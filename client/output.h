/*
 * What the tally CLI prints: aligned tables for people, JSON for scripts, and the formatting of
 * money, times and durations shared by the commands. Nothing here talks to tallyd.
 */
#ifndef TALLY_OUTPUT_H
#define TALLY_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <msgpack.h>

/*
 * JSON. Maps become objects (a key that is not a string is written as a string of its JSON
 * text), integers stay integers (full 64-bit range), bin and ext data become base64 strings,
 * and strings are escaped so that the output is valid JSON even when the input is not valid
 * UTF-8 (each invalid byte becomes U+FFFD). Output is compact: no whitespace.
 */

/* A malloc'd, NUL-terminated JSON text of `o` (length in *len if given); NULL on OOM. */
char *json_from_object(const msgpack_object *o, size_t *len);
/* Writes the JSON text of `o` (no newline). Returns 0, or -1 on OOM or a write error. */
int json_write(FILE *f, const msgpack_object *o);
/* Writes `s` (n bytes) as a JSON string literal, quotes included. */
void json_write_str(FILE *f, const char *s, size_t n);

/*
 * Tables: a header row and columns padded to their widest cell (measured in terminal columns,
 * not bytes), two spaces apart, numbers right-aligned. Rows are buffered until table_flush(),
 * which prints the header the first time only and keeps the widths, so a long listing can be
 * printed page by page without holding it all.
 */
enum table_align { TABLE_LEFT, TABLE_RIGHT };

struct table_col {
    const char *title;
    enum table_align align;
};

struct table;

/* A table of `ncols` columns (the array is copied). NULL on OOM. */
struct table *table_new(const struct table_col *cols, size_t ncols);
/* NULL is a no-op. */
void table_free(struct table *t);
/* Appends the next cell of the current row (rows wrap after ncols cells). NULL shows as "-". */
void table_cell(struct table *t, const char *s);
void table_cellf(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints buffered rows (and the header the first time). Returns 0, or -1 if memory ran out. */
int table_flush(struct table *t, FILE *f);

/* Prints n bytes of server-supplied text, control characters replaced by '?'. */
void out_text(FILE *f, const char *s, size_t n);
/* Terminal columns taken by n bytes of UTF-8 (wide East Asian characters count 2). */
size_t text_width(const char *s, size_t n);

/* "12.99 EUR": minor units shown with the currency's decimals (ISO 4217; 2 when unknown). */
void fmt_money(char *buf, size_t cap, int64_t minor, const char *currency, size_t currency_len);
/* "12.99": the same amount without the code, for CSV cells a spreadsheet reads as a number. */
void fmt_amount(char *buf, size_t cap, int64_t minor, const char *currency, size_t currency_len);
/* Local time, "2024-11-24 07:01" (long) or "11-24 07:01" (short). */
void fmt_time(char *buf, size_t cap, int64_t epoch_s, bool short_form);
/* A duration for people: "42s", "12m 05s", "3h 07m", "2d 04h". Negative shows as "0s". */
void fmt_duration(char *buf, size_t cap, int64_t seconds);
/*
 * How long until a deadline, or how long it has passed: "in 5h", "in 40m", "in 2d 3h",
 * "OVERDUE 2h". Coarse on purpose: an operator triaging exceptions needs the hour, not the second.
 */
void fmt_deadline(char *buf, size_t cap, int64_t deadline, int64_t now);

/*
 * CSV for spreadsheets: one cell, quoted as RFC 4180 says when it holds a comma, a double
 * quote, a line break or leading/trailing spaces (quotes doubled inside). Control characters
 * other than line breaks are replaced by '?', as in tables.
 */
void csv_write_cell(FILE *f, const char *s, size_t n);

#endif
