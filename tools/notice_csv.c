/*
 * notice_csv.c - CSV input for govmail-notice merge: charset detection and
 * conversion (UTF-8 or GB18030 through iconv) and an RFC 4180 parser, plus
 * the template and its {{placeholder}} merge.
 *
 * Runs in govmail-notice.  Input: the department's CSV and template; it is
 * its own data but still bounded by the NOTICE_CSV_* limits, and values
 * merged into header fields may not carry line breaks.
 */
#include "autoconf.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "notice.h"
#include "xmalloc.h"

int
notice_utf8_valid(const uint8_t *p, size_t len)
{
	return str_utf8_valid(p, len);
}

int
notice_charset_to_utf8(const uint8_t *in, size_t len, const char *charset,
    struct buf *out, const char **used_r, const char **error_r)
{
	iconv_t cd;
	char *ip, *op;
	size_t il, ol, chunk;
	int gb;

	if (charset == NULL || str_casecmp(charset, "auto") == 0)
		gb = !notice_utf8_valid(in, len);
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
		if (!notice_utf8_valid(in, len)) {
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

struct csv_state {
	char **cells;
	size_t n, cap;
	size_t rec_start;	/* index of the current record's first cell */
	size_t n_cols;		/* 0 until the header record is done */
	size_t n_rows;
};

static void
csv_push(struct csv_state *st, const struct buf *field)
{
	if (st->n == st->cap) {
		st->cap = st->cap ? xmul(st->cap, 2) : 64;
		st->cells = xreallocarray(st->cells, st->cap,
		    sizeof(*st->cells));
	}
	st->cells[st->n++] = xmemdup(field->data, field->len);
}

static void
csv_free_cells(struct csv_state *st)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		free(st->cells[i]);
	free(st->cells);
	st->cells = NULL;
	st->n = st->cap = 0;
}

static char *
trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* A record has ended: check its width; the first one names the columns. */
static int
csv_end_record(struct csv_state *st, const char **error_r)
{
	size_t width = st->n - st->rec_start, i, k;
	char *t;

	if (st->n_cols == 0) {
		if (width > NOTICE_CSV_MAX_COLUMNS) {
			*error_r = "too many columns";
			return -1;
		}
		for (i = 0; i < width; i++) {
			t = xstrdup(trim(st->cells[i]));
			free(st->cells[i]);
			st->cells[i] = t;
			if (t[0] == '\0') {
				*error_r = "empty column name";
				return -1;
			}
			if (strlen(t) > NOTICE_CSV_MAX_NAME) {
				*error_r = "column name too long";
				return -1;
			}
			if (strstr(t, "{{") != NULL ||
			    strstr(t, "}}") != NULL) {
				*error_r = "column name holds braces";
				return -1;
			}
			for (k = 0; k < i; k++)
				if (strcmp(st->cells[k], t) == 0) {
					*error_r = "duplicate column name";
					return -1;
				}
		}
		st->n_cols = width;
	} else {
		if (width != st->n_cols) {
			*error_r = "a record has the wrong number of fields";
			return -1;
		}
		if (st->n_rows == NOTICE_CSV_MAX_ROWS) {
			*error_r = "too many rows";
			return -1;
		}
		st->n_rows++;
	}
	st->rec_start = st->n;
	return 0;
}

int
notice_csv_parse(const uint8_t *data, size_t len, struct notice_csv *csv,
    const char **error_r)
{
	struct csv_state st;
	struct buf field;
	size_t i = 0;
	int quoted, in_record = 0;
	uint8_t c;

	memset(csv, 0, sizeof(*csv));
	memset(&st, 0, sizeof(st));
	if (len > NOTICE_CSV_MAX_BYTES) {
		*error_r = "CSV too large";
		return -1;
	}
	if (len >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf)
		i = 3;
	buf_init(&field, NOTICE_CSV_MAX_FIELD);
	while (i < len) {
		/* At the start of a field. */
		if (!in_record && (data[i] == '\n' || (data[i] == '\r' &&
		    i + 1 < len && data[i + 1] == '\n'))) {
			i += data[i] == '\r' ? 2 : 1;	/* empty line */
			continue;
		}
		in_record = 1;
		buf_reset(&field);
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
						if (buf_append_byte(&field,
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
			if (buf_append_byte(&field, c) == -1)
				goto toolong;
			i++;
		}
		if (st.n - st.rec_start >= NOTICE_CSV_MAX_COLUMNS) {
			*error_r = "too many columns";
			goto fail;
		}
		csv_push(&st, &field);
		if (i >= len || data[i] != ',') {
			/* End of record (line break or end of input). */
			if (i < len)
				i += data[i] == '\r' ? 2 : 1;
			if (csv_end_record(&st, error_r) == -1)
				goto fail;
			in_record = 0;
		} else {
			i++;
			if (i >= len) {
				/* "a,b," at the very end: one empty field. */
				buf_reset(&field);
				csv_push(&st, &field);
				if (csv_end_record(&st, error_r) == -1)
					goto fail;
				in_record = 0;
			}
		}
	}
	buf_free(&field);
	if (st.n_cols == 0) {
		*error_r = "no header record";
		csv_free_cells(&st);
		return -1;
	}
	csv->n_cols = st.n_cols;
	csv->n_rows = st.n_rows;
	csv->names = xreallocarray(NULL, st.n_cols, sizeof(char *));
	memcpy(csv->names, st.cells, st.n_cols * sizeof(char *));
	csv->cells = xreallocarray(NULL, st.n - st.n_cols + 1,
	    sizeof(char *));
	memcpy(csv->cells, st.cells + st.n_cols,
	    (st.n - st.n_cols) * sizeof(char *));
	free(st.cells);
	return 0;
toolong:
	*error_r = "field too long";
fail:
	buf_free(&field);
	csv_free_cells(&st);
	return -1;
}

const char *
notice_csv_cell(const struct notice_csv *csv, size_t row, size_t col)
{
	return csv->cells[row * csv->n_cols + col];
}

int
notice_csv_column(const struct notice_csv *csv, const char *name)
{
	size_t i;

	for (i = 0; i < csv->n_cols; i++)
		if (strcmp(csv->names[i], name) == 0)
			return (int)i;
	return -1;
}

void
notice_csv_free(struct notice_csv *csv)
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

/* ----------------------------------------------------------- template */

/*
 * Walk src: copy text, resolve placeholders.  With csv == NULL only the
 * syntax is checked; with row == SIZE_MAX names are checked, not merged.
 */
static int
merge_walk(const char *src, const struct notice_csv *csv, size_t row,
    int header, struct buf *out, const char **error_r)
{
	const char *p = src, *open, *close;
	char name[NOTICE_PLACEHOLDER_MAX + 1];
	const char *val;
	size_t nlen;
	int col;

	while ((open = strstr(p, "{{")) != NULL) {
		if (out != NULL && buf_append(out, p, (size_t)(open - p)) == -1)
			goto full;
		if (strncmp(open, "{{{{", 4) == 0) {
			if (out != NULL && buf_append_str(out, "{{") == -1)
				goto full;
			p = open + 4;
			continue;
		}
		close = strstr(open + 2, "}}");
		if (close == NULL || memchr(open + 2, '\n',
		    (size_t)(close - open - 2)) != NULL) {
			*error_r = "unterminated {{placeholder}}";
			return -1;
		}
		nlen = (size_t)(close - open - 2);
		if (nlen > NOTICE_PLACEHOLDER_MAX) {
			*error_r = "placeholder name too long";
			return -1;
		}
		memcpy(name, open + 2, nlen);
		name[nlen] = '\0';
		if (csv != NULL) {
			col = notice_csv_column(csv, trim(name));
			if (col < 0) {
				*error_r = "placeholder names no CSV column";
				return -1;
			}
			if (out != NULL) {
				val = notice_csv_cell(csv, row, (size_t)col);
				if (header && strpbrk(val, "\r\n") != NULL) {
					*error_r = "line break in a value "
					    "merged into a header field";
					return -1;
				}
				if (buf_append_str(out, val) == -1)
					goto full;
			}
		}
		p = close + 2;
	}
	if (out != NULL && buf_append_str(out, p) == -1)
		goto full;
	return 0;
full:
	*error_r = "merged message too large";
	return -1;
}

int
notice_merge(const char *src, const struct notice_csv *csv, size_t row,
    int header, struct buf *out, const char **error_r)
{
	if (row >= csv->n_rows) {
		*error_r = "no such row";
		return -1;
	}
	return merge_walk(src, csv, row, header, out, error_r);
}

void
notice_template_free(struct notice_template *t)
{
	free(t->from);
	free(t->to);
	free(t->cc);
	free(t->subject);
	free(t->content_type);
	free(t->body);
	memset(t, 0, sizeof(*t));
}

int
notice_template_parse(const char *text, const struct notice_csv *csv,
    struct notice_template *t, const char **error_r)
{
	const char *p = text, *eol, *colon;
	char **slot, *val;
	size_t n;

	memset(t, 0, sizeof(*t));
	if (strlen(text) > NOTICE_TEMPLATE_MAX) {
		*error_r = "template too large";
		return -1;
	}
	for (;;) {
		eol = strchr(p, '\n');
		if (eol == NULL) {
			*error_r = "template has no empty line after its "
			    "header";
			goto fail;
		}
		n = (size_t)(eol - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0) {
			p = eol + 1;
			break;
		}
		colon = memchr(p, ':', n);
		if (colon == NULL) {
			*error_r = "template header line without a colon";
			goto fail;
		}
#define FIELD(s) ((size_t)(colon - p) == strlen(s) && \
	strncasecmp(p, s, strlen(s)) == 0)
		if (FIELD("From"))
			slot = &t->from;
		else if (FIELD("To"))
			slot = &t->to;
		else if (FIELD("Cc"))
			slot = &t->cc;
		else if (FIELD("Subject"))
			slot = &t->subject;
		else if (FIELD("Content-Type"))
			slot = &t->content_type;
		else {
			*error_r = "template header field not one of From, "
			    "To, Cc, Subject, Content-Type";
			goto fail;
		}
#undef FIELD
		if (*slot != NULL) {
			*error_r = "template header field given twice";
			goto fail;
		}
		val = xstrndup(colon + 1, (size_t)(p + n - colon - 1));
		*slot = xstrdup(trim(val));
		free(val);
		p = eol + 1;
	}
	if (t->from == NULL || t->to == NULL || t->subject == NULL) {
		*error_r = "template needs From, To and Subject";
		goto fail;
	}
	if (t->content_type == NULL)
		t->content_type = xstrdup("text/plain; charset=utf-8");
	else if (str_casecmp(t->content_type, "text/plain") == 0 ||
	    str_casecmp(t->content_type, "text/html") == 0) {
		val = xasprintf("%s; charset=utf-8", t->content_type);
		free(t->content_type);
		t->content_type = val;
	} else {
		*error_r = "template Content-Type must be text/plain or "
		    "text/html";
		goto fail;
	}
	t->body = xstrdup(p);
	if (merge_walk(t->from, csv, SIZE_MAX, 1, NULL, error_r) == -1 ||
	    merge_walk(t->to, csv, SIZE_MAX, 1, NULL, error_r) == -1 ||
	    (t->cc != NULL &&
	    merge_walk(t->cc, csv, SIZE_MAX, 1, NULL, error_r) == -1) ||
	    merge_walk(t->subject, csv, SIZE_MAX, 1, NULL, error_r) == -1 ||
	    merge_walk(t->body, csv, SIZE_MAX, 0, NULL, error_r) == -1)
		goto fail;
	return 0;
fail:
	notice_template_free(t);
	return -1;
}
