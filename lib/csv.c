/*
 * csv.c - CSV input for the tools: charset conversion (UTF-8 or GB18030
 * through iconv) and an RFC 4180 parser (csv.h).
 *
 * Input: the operator's or a department's file, bounded by CSV_MAX_*.
 */
#include "autoconf.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "csv.h"
#include "xmalloc.h"

int
csv_charset_to_utf8(const uint8_t *in, size_t len, const char *charset,
    struct buf *out, const char **used_r, const char **error_r)
{
	iconv_t cd;
	char *ip, *op;
	size_t il, ol, chunk;
	int gb;

	if (charset == NULL || str_casecmp(charset, "auto") == 0)
		gb = !str_utf8_valid(in, len);
	else if (str_casecmp(charset, "utf-8") == 0 ||
	    str_casecmp(charset, "utf8") == 0)
		gb = 0;
	else if (str_casecmp(charset, "gb18030") == 0 ||
	    str_casecmp(charset, "gbk") == 0 ||
	    str_casecmp(charset, "gb2312") == 0)
		gb = 1;
	else {
		*error_r = "unknown charset (utf-8, gb18030 or auto)";
		return -1;
	}
	if (used_r != NULL)
		*used_r = gb ? "gb18030" : "utf-8";
	if (!gb) {
		if (len >= 3 && in[0] == 0xef && in[1] == 0xbb &&
		    in[2] == 0xbf) {
			in += 3;
			len -= 3;
		}
		if (!str_utf8_valid(in, len)) {
			*error_r = "input is not valid UTF-8";
			return -1;
		}
		if (buf_append(out, in, len) == -1) {
			*error_r = "input too large";
			return -1;
		}
		return 0;
	}
	cd = iconv_open("UTF-8", "GB18030");
	if (cd == (iconv_t)-1) {
		*error_r = "iconv cannot convert GB18030";
		return -1;
	}
	ip = (char *)(uintptr_t)in;
	il = len;
	while (il > 0) {
		chunk = out->max - out->len < 64 * 1024 ? out->max - out->len :
		    64 * 1024;
		if (chunk == 0 || buf_reserve(out, chunk) == -1) {
			iconv_close(cd);
			*error_r = "input too large";
			return -1;
		}
		op = (char *)buf_tail(out);
		ol = chunk;
		if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1 &&
		    errno != E2BIG) {
			buf_commit(out, chunk - ol);
			iconv_close(cd);
			*error_r = "input is not valid GB18030";
			return -1;
		}
		if (ol == chunk && il > 0) {
			/* E2BIG with no room for even one character. */
			iconv_close(cd);
			*error_r = "input too large";
			return -1;
		}
		buf_commit(out, chunk - ol);
	}
	iconv_close(cd);
	return 0;
}

/* ---------------------------------------------------------------- CSV */

static void
csv_drop_fields(struct csv_reader *r)
{
	size_t i;

	for (i = 0; i < r->n_fields; i++)
		free(r->fields[i]);
	r->n_fields = 0;
}

static void
csv_push(struct csv_reader *r)
{
	if (r->n_fields == r->cap) {
		r->cap = r->cap ? xmul(r->cap, 2) : 16;
		r->fields = xreallocarray(r->fields, r->cap,
		    sizeof(*r->fields));
	}
	r->fields[r->n_fields++] = xmemdup(r->field.data, r->field.len);
}

/*
 * One record into r->fields, whatever its width: 1, 0 at the end of the
 * input, -1.
 */
static int
csv_record(struct csv_reader *r, const char **error_r)
{
	const uint8_t *data = r->data;
	size_t len = r->len, i = r->pos;
	int quoted;
	uint8_t c;

	csv_drop_fields(r);
	/* Empty lines between records. */
	for (;;) {
		if (i >= len) {
			r->pos = i;
			return 0;
		}
		if (data[i] == '\n')
			i++;
		else if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			i += 2;
		else
			break;
		r->line++;
	}
	r->record_line = r->line;
	for (;;) {
		/* At the start of a field (i < len). */
		buf_reset(&r->field);
		quoted = data[i] == '"';
		if (quoted)
			i++;
		for (;;) {
			if (i >= len) {
				if (quoted) {
					*error_r = "unterminated quoted field";
					goto fail;
				}
				break;
			}
			c = data[i];
			if (c == '\0') {
				*error_r = "NUL byte in CSV";
				goto fail;
			}
			if (quoted) {
				if (c == '"') {
					if (i + 1 < len && data[i + 1] == '"') {
						i += 2;
						if (buf_append_byte(&r->field,
						    '"') == -1)
							goto toolong;
						continue;
					}
					i++;
					quoted = 0;
					if (i < len && data[i] != ',' &&
					    data[i] != '\n' &&
					    data[i] != '\r') {
						*error_r = "text after a "
						    "closing quote";
						goto fail;
					}
					continue;
				}
				if (c == '\n')
					r->line++;
			} else {
				if (c == ',' || c == '\n')
					break;
				if (c == '\r') {
					if (i + 1 < len && data[i + 1] == '\n')
						break;
					*error_r = "bare CR in CSV";
					goto fail;
				}
				if (c == '"') {
					*error_r = "quote inside an unquoted "
					    "field";
					goto fail;
				}
			}
			if (buf_append_byte(&r->field, c) == -1)
				goto toolong;
			i++;
		}
		if (r->n_fields >= CSV_MAX_COLUMNS) {
			*error_r = "too many columns";
			goto fail;
		}
		csv_push(r);
		if (i >= len || data[i] != ',') {
			/* End of record (line break or end of input). */
			if (i < len) {
				i += data[i] == '\r' ? 2 : 1;
				r->line++;
			}
			break;
		}
		if (++i >= len) {
			/* "a,b," at the very end: one empty field. */
			buf_reset(&r->field);
			csv_push(r);
			break;
		}
	}
	r->pos = i;
	return 1;
toolong:
	*error_r = "field too long";
fail:
	r->pos = i;
	return -1;
}

/* Index of name among n column names, or -1. */
static int
csv_find(char *const *names, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

int
csv_open(struct csv_reader *r, const uint8_t *data, size_t len,
    const char **error_r)
{
	size_t i;
	char *t;
	int got;

	memset(r, 0, sizeof(*r));
	if (len > CSV_MAX_BYTES) {
		*error_r = "CSV too large";
		return -1;
	}
	if (len >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf)
		r->pos = 3;
	r->data = data;
	r->len = len;
	r->line = 1;
	buf_init(&r->field, CSV_MAX_FIELD);
	if ((got = csv_record(r, error_r)) <= 0) {
		if (got == 0)
			*error_r = "no header record";
		goto fail;
	}
	for (i = 0; i < r->n_fields; i++) {
		t = xstrdup(str_trim(r->fields[i]));
		free(r->fields[i]);
		r->fields[i] = t;
		if (t[0] == '\0') {
			*error_r = "empty column name";
			goto fail;
		}
		if (strlen(t) > CSV_MAX_NAME) {
			*error_r = "column name too long";
			goto fail;
		}
		if (strstr(t, "{{") != NULL || strstr(t, "}}") != NULL) {
			*error_r = "column name holds braces";
			goto fail;
		}
		if (csv_find(r->fields, i, t) != -1) {
			*error_r = "duplicate column name";
			goto fail;
		}
	}
	/* The header's cells become the names. */
	r->names = r->fields;
	r->n_cols = r->n_fields;
	r->fields = NULL;
	r->n_fields = r->cap = 0;
	return 0;
fail:
	csv_close(r);
	return -1;
}

int
csv_next(struct csv_reader *r, const char **error_r)
{
	int got;

	if ((got = csv_record(r, error_r)) <= 0)
		return got;
	if (r->n_fields != r->n_cols) {
		*error_r = "a record has the wrong number of fields";
		return -1;
	}
	if (r->n_rows == CSV_MAX_ROWS) {
		*error_r = "too many rows";
		return -1;
	}
	r->n_rows++;
	return 1;
}

int
csv_reader_column(const struct csv_reader *r, const char *name)
{
	return csv_find(r->names, r->n_cols, name);
}

void
csv_close(struct csv_reader *r)
{
	size_t i;

	csv_drop_fields(r);
	free(r->fields);
	for (i = 0; i < r->n_cols; i++)
		free(r->names[i]);
	free(r->names);
	buf_free(&r->field);
	memset(r, 0, sizeof(*r));
}

int
csv_parse(const uint8_t *data, size_t len, struct csv *csv,
    const char **error_r)
{
	struct csv_reader r;
	size_t n = 0, cap = 0;
	int got;

	memset(csv, 0, sizeof(*csv));
	if (csv_open(&r, data, len, error_r) == -1)
		return -1;
	while ((got = csv_next(&r, error_r)) == 1) {
		if (n + r.n_cols > cap) {
			cap = cap ? xmul(cap, 2) : xmul(r.n_cols, 64);
			csv->cells = xreallocarray(csv->cells, cap,
			    sizeof(char *));
		}
		/* The record's fields move into the table. */
		memcpy(csv->cells + n, r.fields, r.n_cols * sizeof(char *));
		n += r.n_cols;
		r.n_fields = 0;
	}
	if (got == -1) {
		while (n > 0)
			free(csv->cells[--n]);
		free(csv->cells);
		csv->cells = NULL;
		csv_close(&r);
		return -1;
	}
	if (csv->cells == NULL)
		csv->cells = xreallocarray(NULL, 1, sizeof(char *));
	csv->names = r.names;
	csv->n_cols = r.n_cols;
	csv->n_rows = r.n_rows;
	r.names = NULL;
	r.n_cols = 0;
	csv_close(&r);
	return 0;
}

const char *
csv_cell(const struct csv *csv, size_t row, size_t col)
{
	return csv->cells[row * csv->n_cols + col];
}

int
csv_column(const struct csv *csv, const char *name)
{
	return csv_find(csv->names, csv->n_cols, name);
}

void
csv_free(struct csv *csv)
{
	size_t i;

	if (csv->names != NULL) {
		for (i = 0; i < csv->n_cols; i++)
			free(csv->names[i]);
		for (i = 0; i < csv->n_rows * csv->n_cols; i++)
			free(csv->cells[i]);
	}
	free(csv->names);
	free(csv->cells);
	memset(csv, 0, sizeof(*csv));
}
