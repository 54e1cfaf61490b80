/*
 * notice_template.c - govmail-notice merge's template and its
 * {{placeholder}} merge with a CSV row (the CSV itself: lib/csv.c).
 *
 * Runs in govmail-notice.  Input: the department's template; values
 * merged into header fields may not carry line breaks.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "notice.h"
#include "xmalloc.h"

/* ----------------------------------------------------------- template */

/*
 * Walk src: copy text, resolve placeholders.  With csv == NULL only the
 * syntax is checked; with row == SIZE_MAX names are checked, not merged.
 */
static int
merge_walk(const char *src, const struct csv *csv, size_t row,
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
			col = csv_column(csv, str_trim(name));
			if (col < 0) {
				*error_r = "placeholder names no CSV column";
				return -1;
			}
			if (out != NULL) {
				val = csv_cell(csv, row, (size_t)col);
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
notice_merge(const char *src, const struct csv *csv, size_t row,
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
notice_template_parse(const char *text, const struct csv *csv,
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
		*slot = xstrdup(str_trim(val));
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
