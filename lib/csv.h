/*
 * csv.h - CSV input for the tools (govmail-notice merge, govmailctl user
 * import): conversion of UTF-8 or GB18030 text to UTF-8, and an RFC 4180
 * parser, record by record or into a table.
 *
 * The input is the operator's or the department's own file, still
 * bounded by the CSV_MAX_* limits below.
 */
#ifndef CSV_H
#define CSV_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Largest CSV file read (bytes, after conversion to UTF-8). */
#define CSV_MAX_BYTES		(512u * 1024 * 1024)
/* Most columns in one record. */
#define CSV_MAX_COLUMNS		256
/* Longest single field (bytes, quotes removed). */
#define CSV_MAX_FIELD		(64u * 1024)
/* Most data records (the header record not counted). */
#define CSV_MAX_ROWS		10000000u
/* Longest column name. */
#define CSV_MAX_NAME		64

/*
 * Convert text to UTF-8.  charset is "utf-8", "gb18030" (GBK and GB2312
 * are subsets) or NULL/"auto": valid UTF-8 stays UTF-8, anything else is
 * read as GB18030.  A UTF-8 byte order mark is dropped.  The result is
 * appended to out (bounded by its max); *used_r (may be NULL) gets the
 * charset that was used ("utf-8" or "gb18030").  -1 if the input is not
 * valid in the charset.
 */
int csv_charset_to_utf8(const uint8_t *in, size_t len, const char *charset,
    struct buf *out, const char **used_r, const char **error_r);

/*
 * The format (RFC 4180, already UTF-8): comma separated, fields
 * optionally in double quotes ("" inside quotes is one quote; quoted
 * fields may hold commas and line breaks), records end in CRLF or LF, a
 * final line break is optional, empty lines are skipped.  The first
 * record names the columns (unique, non-empty, at most CSV_MAX_NAME
 * bytes, no "{{" or "}}", spaces around them trimmed); every other record
 * must have exactly as many fields.  No NUL bytes.
 */

/* Record by record, over text the caller keeps. */
struct csv_reader {
	const uint8_t *data;
	size_t len, pos;
	char **names;		/* header record: n_cols column names */
	size_t n_cols;
	char **fields;		/* the current record: n_cols fields */
	size_t n_fields, cap;
	uint64_t line;		/* line number at pos (1-based) */
	uint64_t record_line;	/* line on which the current record began */
	uint64_t n_rows;	/* data records read so far */
	struct buf field;
};

/* Read the header record.  0, or -1 (*r is then empty). */
int csv_open(struct csv_reader *r, const uint8_t *data, size_t len,
    const char **error_r);
/*
 * The next data record into r->fields (borrowed until the next call):
 * 1, 0 at the end of the input, or -1.  r->record_line is the line on
 * which that record began, the one at fault after -1.
 */
int csv_next(struct csv_reader *r, const char **error_r);
/* Column index of name, or -1. */
int csv_reader_column(const struct csv_reader *r, const char *name);
void csv_close(struct csv_reader *r);

/* A whole file in memory. */
struct csv {
	char **names;		/* header record: n_cols column names */
	size_t n_cols;
	char **cells;		/* n_rows * n_cols fields, row-major */
	size_t n_rows;
};

/*
 * Parse data into *csv.  On success *csv owns everything (free with
 * csv_free); on -1 it is empty.
 */
int csv_parse(const uint8_t *data, size_t len, struct csv *csv,
    const char **error_r);
/* Field of data row (0-based) in column col; borrowed from csv. */
const char *csv_cell(const struct csv *csv, size_t row, size_t col);
/* Column index of name, or -1. */
int csv_column(const struct csv *csv, const char *name);
void csv_free(struct csv *csv);

#endif
