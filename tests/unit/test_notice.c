/*
 * test_notice.c - unit tests for govmail-notice's pieces (tools/libnotice):
 * charset detection and GB18030 conversion, the RFC 4180 CSV parser (quoted
 * fields, embedded line breaks, BOM, limits at N-1, N, N+1, every
 * truncation of a sample), templates and {{placeholder}} merge (header
 * injection refused), and the resumable journal (replay, torn last line,
 * foreign input, two writers).
 *
 * Runs under make check; trusts nothing; scratch files under /tmp.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "buf.h"
#include "notice.h"
#include "xmalloc.h"

/* ----------------------------------------------------------- charset */

static void
test_utf8_valid(void **state)
{
	static const struct {
		const char *s;
		int ok;
	} cases[] = {
		{ "plain ascii", 1 },
		{ "\xe5\xbc\xa0\xe4\xbc\x9f", 1 },		/* 张伟 */
		{ "\xf0\x9f\x98\x80", 1 },			/* U+1F600 */
		{ "\xc0\xaf", 0 },				/* overlong */
		{ "\xe0\x80\xaf", 0 },				/* overlong */
		{ "\xed\xa0\x80", 0 },				/* surrogate */
		{ "\xf4\x90\x80\x80", 0 },			/* > 10FFFF */
		{ "\xe5\xbc", 0 },				/* truncated */
		{ "\xd5\xc5\xce\xb0", 0 },			/* GB18030 */
		{ "\x80", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(str_utf8_valid((const uint8_t *)
		    cases[i].s, strlen(cases[i].s)), cases[i].ok);
}

static void
test_charset(void **state)
{
	static const struct {
		const char *in;
		const char *charset;
		int ret;
		const char *out;
		const char *used;
	} cases[] = {
		{ "a,b\n", NULL, 0, "a,b\n", "utf-8" },
		{ "\xef\xbb\xbf" "a\n", "auto", 0, "a\n", "utf-8" },
		{ "\xe5\xbc\xa0", "utf-8", 0, "\xe5\xbc\xa0", "utf-8" },
		/* 张伟 in GB18030, detected and given */
		{ "\xd5\xc5\xce\xb0", NULL, 0, "\xe5\xbc\xa0\xe4\xbc\x9f",
		    "gb18030" },
		{ "\xd5\xc5\xce\xb0", "GB18030", 0,
		    "\xe5\xbc\xa0\xe4\xbc\x9f", "gb18030" },
		{ "\xd5\xc5\xce\xb0", "gbk", 0, "\xe5\xbc\xa0\xe4\xbc\x9f",
		    "gb18030" },
		/* a four-byte GB18030 sequence: U+00A5 */
		{ "\x81\x30\x84\x36", "gb18030", 0, "\xc2\xa5", "gb18030" },
		{ "\xd5\xc5\xce\xb0", "utf-8", -1, NULL, NULL },
		{ "ok\x81", "gb18030", -1, NULL, NULL },	/* truncated */
		{ "x", "latin1", -1, NULL, NULL },
	};
	struct buf out;
	const char *err, *used;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_init(&out, 4096);
		used = NULL;
		assert_int_equal(csv_charset_to_utf8((const uint8_t *)
		    cases[i].in, strlen(cases[i].in), cases[i].charset, &out,
		    &used, &err), cases[i].ret);
		if (cases[i].ret == 0) {
			assert_string_equal(buf_str(&out), cases[i].out);
			assert_string_equal(used, cases[i].used);
		}
		buf_free(&out);
	}
	/* The output bound holds: 4 bytes of GB18030 become 6 of UTF-8. */
	buf_init(&out, 5);
	assert_int_equal(csv_charset_to_utf8((const uint8_t *)
	    "\xd5\xc5\xce\xb0", 4, "gb18030", &out, &used, &err), -1);
	buf_free(&out);
	buf_init(&out, 6);
	assert_int_equal(csv_charset_to_utf8((const uint8_t *)
	    "\xd5\xc5\xce\xb0", 4, "gb18030", &out, &used, &err), 0);
	buf_free(&out);
}

/* ---------------------------------------------------------------- CSV */

static void
test_csv_good(void **state)
{
	static const struct {
		const char *in;
		size_t rows, cols;
		const char *cells;	/* names then cells, '|' separated */
	} cases[] = {
		{ "a,b\n1,2\n", 1, 2, "a|b|1|2" },
		{ "a,b\r\n1,2\r\n3,4", 2, 2, "a|b|1|2|3|4" },
		{ "\xef\xbb\xbf" "name\nx\n", 1, 1, "name|x" },
		{ " a , b \n1,2\n", 1, 2, "a|b|1|2" },
		{ "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n", 1, 2,
		    "a|b|x,y|say \"hi\"" },
		{ "a,b\n\"line1\nline2\",z\n", 1, 2, "a|b|line1\nline2|z" },
		{ "a,b\n\"l1\r\nl2\",z\r\n", 1, 2, "a|b|l1\r\nl2|z" },
		{ "a,b,c\n,,\n", 1, 3, "a|b|c|||" },
		{ "a,b\n1,\n", 1, 2, "a|b|1|" },
		{ "a,b\n1,", 1, 2, "a|b|1|" },
		{ "a\n\n1\n\r\n2\n", 2, 1, "a|1|2" },
		{ "a,b\n\"\",\"\"\n", 1, 2, "a|b||" },
		{ "\xe5\xa7\x93\xe5\x90\x8d,email\n\xe5\xbc\xa0,z@x\n", 1, 2,
		    "\xe5\xa7\x93\xe5\x90\x8d|email|\xe5\xbc\xa0|z@x" },
		{ "only\n", 0, 1, "only" },
	};
	struct csv csv;
	const char *err;
	char *want, *tok, *save;
	size_t i, k, r, c;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(csv_parse((const uint8_t *)
		    cases[i].in, strlen(cases[i].in), &csv, &err), 0);
		assert_int_equal(csv.n_rows, cases[i].rows);
		assert_int_equal(csv.n_cols, cases[i].cols);
		want = xstrdup(cases[i].cells);
		k = 0;
		for (tok = want; ; tok = save + 1) {
			save = strchr(tok, '|');
			if (save != NULL)
				*save = '\0';
			if (k < csv.n_cols)
				assert_string_equal(csv.names[k], tok);
			else {
				r = (k - csv.n_cols) / csv.n_cols;
				c = (k - csv.n_cols) % csv.n_cols;
				assert_string_equal(csv_cell(&csv, r,
				    c), tok);
			}
			k++;
			if (save == NULL)
				break;
		}
		assert_int_equal(k, csv.n_cols * (csv.n_rows + 1));
		free(want);
		csv_free(&csv);
	}
}

static void
test_csv_bad(void **state)
{
	static const char *const cases[] = {
		"",
		"\n\n",
		"a,b\n1\n",
		"a,b\n1,2,3\n",
		"a\n\"open\n",
		"a\n\"x\"y\n",
		"a\nx\"y\n",
		"a\nx\ry\n",
		"a,a\n1,2\n",
		"a,\n1,2\n",
		"{{a}}\n1\n",
	};
	struct csv csv;
	const char *err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err = NULL;
		assert_int_equal(csv_parse((const uint8_t *)cases[i],
		    strlen(cases[i]), &csv, &err), -1);
		assert_non_null(err);
		assert_null(csv.names);
	}
	/* NUL inside a field */
	assert_int_equal(csv_parse((const uint8_t *)"a\nx\0y\n", 6,
	    &csv, &err), -1);
}

/* Build a CSV: a header of ncols names (each name_len bytes), one row. */
static struct buf
csv_make(size_t ncols, size_t name_len, size_t field_len)
{
	struct buf b;
	size_t i, k;

	buf_init(&b, BUF_UNBOUNDED);
	for (i = 0; i < ncols; i++) {
		if (i > 0)
			buf_append_byte(&b, ',');
		buf_printf(&b, "c%zu", i);
		for (k = 0; k + 1 + 1 < name_len && name_len > 2; k++)
			buf_append_byte(&b, 'n');
		if (name_len > 1 && i < 10)
			buf_append_byte(&b, 'z');
	}
	buf_append_byte(&b, '\n');
	for (i = 0; i < ncols; i++) {
		if (i > 0)
			buf_append_byte(&b, ',');
		for (k = 0; k < field_len; k++)
			buf_append_byte(&b, 'v');
	}
	buf_append_byte(&b, '\n');
	return b;
}

static void
test_csv_limits(void **state)
{
	struct csv csv;
	struct buf b;
	const char *err;
	size_t n;
	int want;

	(void)state;
	/* columns: N-1, N, N+1 */
	for (n = CSV_MAX_COLUMNS - 1; n <= CSV_MAX_COLUMNS + 1;
	    n++) {
		b = csv_make(n, 1, 1);
		want = n <= CSV_MAX_COLUMNS ? 0 : -1;
		assert_int_equal(csv_parse(b.data, b.len, &csv, &err),
		    want);
		if (want == 0)
			assert_int_equal(csv.n_cols, n);
		csv_free(&csv);
		buf_free(&b);
	}
	/* field length: N-1, N, N+1 */
	for (n = CSV_MAX_FIELD - 1; n <= CSV_MAX_FIELD + 1;
	    n++) {
		b = csv_make(1, 1, n);
		want = n <= CSV_MAX_FIELD ? 0 : -1;
		assert_int_equal(csv_parse(b.data, b.len, &csv, &err),
		    want);
		if (want == 0)
			assert_int_equal(strlen(csv_cell(&csv, 0, 0)),
			    n);
		csv_free(&csv);
		buf_free(&b);
	}
	/* column name length: N-1, N, N+1 */
	for (n = CSV_MAX_NAME - 1; n <= CSV_MAX_NAME + 1; n++) {
		buf_init(&b, BUF_UNBOUNDED);
		while (b.len < n)
			buf_append_byte(&b, 'k');
		buf_append_str(&b, "\nv\n");
		want = n <= CSV_MAX_NAME ? 0 : -1;
		assert_int_equal(csv_parse(b.data, b.len, &csv, &err),
		    want);
		csv_free(&csv);
		buf_free(&b);
	}
}

static void
test_csv_truncations(void **state)
{
	static const char sample[] = "\xef\xbb\xbf" "name,email,note\r\n"
	    "\"Zhang, Wei\",z@x,\"a \"\"b\"\"\r\nc\"\r\n"
	    "\xe6\x9d\x8e,l@x,\r\n";
	struct csv csv;
	const char *err;
	size_t n;
	int r;

	(void)state;
	/* Every prefix parses or fails cleanly (run under ASan, too). */
	for (n = 0; n <= sizeof(sample) - 1; n++) {
		r = csv_parse((const uint8_t *)sample, n, &csv, &err);
		assert_true(r == 0 || r == -1);
		csv_free(&csv);
	}
	assert_int_equal(csv_parse((const uint8_t *)sample,
	    sizeof(sample) - 1, &csv, &err), 0);
	assert_int_equal(csv.n_rows, 2);
	assert_string_equal(csv_cell(&csv, 0, 2), "a \"b\"\r\nc");
	assert_int_equal(csv_column(&csv, "email"), 1);
	assert_int_equal(csv_column(&csv, "nope"), -1);
	csv_free(&csv);
}

/*
 * Record by record (csv_open/csv_next): the fields of each record, the
 * line each began on (lines inside quotes and empty lines counted), and
 * the line of a bad record.
 */
static void
test_csv_reader(void **state)
{
	static const char in[] = "address, class\r\n"
	    "a@x,citizen\n"
	    "\n"
	    "\"b@x\",\"two\nlines\"\n"
	    "c@x,\n"
	    "d@x,1,2\n";
	struct csv_reader r;
	const char *err = NULL;

	(void)state;
	assert_int_equal(csv_open(&r, (const uint8_t *)in, sizeof(in) - 1,
	    &err), 0);
	assert_int_equal(r.n_cols, 2);
	assert_string_equal(r.names[1], "class");
	assert_int_equal(csv_reader_column(&r, "class"), 1);
	assert_int_equal(csv_reader_column(&r, "nope"), -1);
	assert_int_equal(csv_next(&r, &err), 1);
	assert_string_equal(r.fields[0], "a@x");
	assert_int_equal(r.record_line, 2);
	assert_int_equal(csv_next(&r, &err), 1);
	assert_string_equal(r.fields[1], "two\nlines");
	assert_int_equal(r.record_line, 4);
	assert_int_equal(csv_next(&r, &err), 1);
	assert_string_equal(r.fields[0], "c@x");
	assert_string_equal(r.fields[1], "");
	assert_int_equal(r.record_line, 6);
	assert_int_equal(csv_next(&r, &err), -1);
	assert_string_equal(err, "a record has the wrong number of fields");
	assert_int_equal(r.record_line, 7);
	assert_int_equal(r.n_rows, 3);
	csv_close(&r);

	/* The end: 0, and again 0. */
	assert_int_equal(csv_open(&r, (const uint8_t *)"a\nx\n", 4, &err),
	    0);
	assert_int_equal(csv_next(&r, &err), 1);
	assert_int_equal(csv_next(&r, &err), 0);
	assert_int_equal(csv_next(&r, &err), 0);
	csv_close(&r);
	/* No header: -1, and *r is empty (csv_close is not needed). */
	assert_int_equal(csv_open(&r, (const uint8_t *)"\n\n", 2, &err), -1);
	assert_string_equal(err, "no header record");
	assert_null(r.names);
}

/* ----------------------------------------------------------- template */

static struct csv
sample_csv(void)
{
	static const char in[] = "name,email,amount,bad\n"
	    "\xe5\xbc\xa0\xe4\xbc\x9f,z@city.example,88.00,\"x\ny\"\n";
	struct csv csv;
	const char *err;

	assert_int_equal(csv_parse((const uint8_t *)in,
	    sizeof(in) - 1, &csv, &err), 0);
	return csv;
}

static void
test_template_parse(void **state)
{
	static const struct {
		const char *text;
		int ret;
	} cases[] = {
		{ "From: a@b\nTo: {{email}}\nSubject: s\n\nbody\n", 0 },
		{ "From: a@b\r\nTo: {{email}}\r\nSubject: s\r\n\r\nbody", 0 },
		{ "From: a@b\nTo: x@y\nCc: c@d\nSubject: s\n"
		    "Content-Type: text/html\n\n<p>hi</p>\n", 0 },
		{ "from: a@b\nTO: x@y\nsubject: s\n\n", 0 },
		{ "From: a@b\nTo: x@y\nSubject: s\n", -1 },	/* no body */
		{ "From: a@b\nTo: x@y\n\nbody\n", -1 },	/* no subject */
		{ "From: a@b\nTo: x@y\nSubject: s\nX-Evil: 1\n\n", -1 },
		{ "From: a@b\nTo: x@y\nSubject: s\nSubject: t\n\n", -1 },
		{ "From: a@b\nTo: x@y\nSubject: s\nbroken line\n\n", -1 },
		{ "From: a@b\nTo: {{nope}}\nSubject: s\n\n", -1 },
		{ "From: a@b\nTo: x@y\nSubject: s\n\nhi {{name\n}}", -1 },
		{ "From: a@b\nTo: x@y\nSubject: s\nContent-Type: "
		    "application/pdf\n\n", -1 },
	};
	struct csv csv = sample_csv();
	struct notice_template t;
	const char *err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(notice_template_parse(cases[i].text, &csv,
		    &t, &err), cases[i].ret);
		if (cases[i].ret == 0) {
			assert_non_null(t.from);
			assert_non_null(t.content_type);
			assert_non_null(strstr(t.content_type,
			    "charset=utf-8"));
		}
		notice_template_free(&t);
	}
	assert_int_equal(notice_template_parse("From: a@b\nTo: "
	    "{{email}}\nSubject: s\n\nx", NULL, &t, &err), 0);
	assert_string_equal(t.body, "x");
	notice_template_free(&t);
	csv_free(&csv);
}

static void
test_merge(void **state)
{
	static const struct {
		const char *src;
		int header;
		int ret;
		const char *out;
	} cases[] = {
		{ "Dear {{name}}, {{ amount }} yuan", 0, 0,
		    "Dear \xe5\xbc\xa0\xe4\xbc\x9f, 88.00 yuan" },
		{ "{{name}} <{{email}}>", 1, 0,
		    "\xe5\xbc\xa0\xe4\xbc\x9f <z@city.example>" },
		{ "literal {{{{ braces", 0, 0, "literal {{ braces" },
		{ "no placeholders", 1, 0, "no placeholders" },
		{ "}} stray close", 0, 0, "}} stray close" },
		{ "note: {{bad}}", 0, 0, "note: x\ny" },
		{ "Subject {{bad}}", 1, -1, NULL },	/* header injection */
		{ "{{unknown}}", 0, -1, NULL },
		{ "{{name", 0, -1, NULL },
		{ "{{" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    "aaaaaaaaaaaa}}", 0, -1, NULL },		/* 68 > 64 */
	};
	struct csv csv = sample_csv();
	struct buf out;
	const char *err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_init(&out, 4096);
		assert_int_equal(notice_merge(cases[i].src, &csv, 0,
		    cases[i].header, &out, &err), cases[i].ret);
		if (cases[i].ret == 0)
			assert_string_equal(buf_str(&out), cases[i].out);
		buf_free(&out);
	}
	buf_init(&out, 4096);
	assert_int_equal(notice_merge("{{name}}", &csv, 1, 0, &out, &err),
	    -1);					/* no row 1 */
	buf_free(&out);
	buf_init(&out, 8);				/* output bound */
	assert_int_equal(notice_merge("0123456789", &csv, 0, 0, &out, &err),
	    -1);
	buf_free(&out);
	csv_free(&csv);
}

/* ------------------------------------------------------------ journal */

static char *
tmp_journal(void)
{
	char *p = xstrdup("/tmp/test_notice_journal.XXXXXX");
	int fd = mkstemp(p);

	assert_true(fd >= 0);
	close(fd);
	unlink(p);		/* the journal creates it */
	return p;
}

static void
append_raw(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void
test_journal(void **state)
{
	uint8_t hash[32], other[32];
	struct notice_journal *j, *j2;
	const struct notice_journal_row *r;
	char *path = tmp_journal(), id[NOTICE_JOURNAL_ID_LEN + 1];
	const char *err;
	size_t n;

	(void)state;
	memset(hash, 1, sizeof(hash));
	memset(other, 2, sizeof(other));
	assert_int_equal(notice_journal_open(path, hash, &j, &err), 0);
	assert_int_equal(strlen(notice_journal_id(j)), NOTICE_JOURNAL_ID_LEN);
	memcpy(id, notice_journal_id(j), sizeof(id));
	assert_int_equal(notice_journal_row(j, 1)->state, NOTICE_ROW_NEW);
	assert_int_equal(notice_journal_start(j, 1, &err), 0);
	assert_int_equal(notice_journal_row(j, 1)->state, NOTICE_ROW_STARTED);
	assert_int_equal(notice_journal_done(j, 1, "sent-signed", "a@x",
	    "<m1@x>", NULL, &err), 0);
	assert_int_equal(notice_journal_start(j, 2, &err), 0);
	assert_int_equal(notice_journal_start(j, 3, &err), 0);
	assert_int_equal(notice_journal_defer(j, 3, "c@x", "<m3@x>",
	    "451 4.3.0 try\nlater", &err), 0);
	assert_int_equal(notice_journal_start(j, 4, &err), 0);
	assert_int_equal(notice_journal_done(j, 4, "failed", "bad addr",
	    "<m4@x>", "550 no such user", &err), 0);
	assert_int_equal(notice_journal_done(j, 5, "bad status", "a", "m",
	    NULL, &err), -1);
	notice_journal_close(j);

	/* Replay. */
	assert_int_equal(notice_journal_open(path, hash, &j, &err), 0);
	assert_string_equal(notice_journal_id(j), id);
	r = notice_journal_row(j, 1);
	assert_int_equal(r->state, NOTICE_ROW_DONE);
	assert_int_equal(r->starts, 1);
	assert_string_equal(r->status, "sent-signed");
	assert_string_equal(r->message_id, "<m1@x>");
	assert_string_equal(r->error, "");
	assert_int_equal(notice_journal_row(j, 2)->state, NOTICE_ROW_STARTED);
	r = notice_journal_row(j, 3);
	assert_int_equal(r->state, NOTICE_ROW_DEFERRED);
	assert_string_equal(r->error, "451 4.3.0 try later");
	r = notice_journal_row(j, 4);
	assert_string_equal(r->address, "bad_addr");
	assert_string_equal(r->error, "550 no such user");
	assert_int_equal(notice_journal_row(j, 1000)->state, NOTICE_ROW_NEW);

	/* A second writer (another process) and refresh. */
	assert_int_equal(notice_journal_open(path, hash, &j2, &err), 0);
	assert_int_equal(notice_journal_start(j2, 2, &err), 0);
	assert_int_equal(notice_journal_done(j2, 2, "sent-encrypted", "b@x",
	    "<m2@x>", NULL, &err), 0);
	assert_int_equal(notice_journal_done(j2, 3, "sent-signed", "c@x",
	    "<m3@x>", NULL, &err), 0);
	notice_journal_close(j2);
	assert_int_equal(notice_journal_refresh(j, &n, &err), 0);
	assert_int_equal(n, 2);
	r = notice_journal_row(j, 2);
	assert_int_equal(r->state, NOTICE_ROW_DONE);
	assert_int_equal(r->starts, 2);		/* in doubt, then resent */
	assert_int_equal(notice_journal_refresh(j, &n, &err), 0);
	assert_int_equal(n, 0);
	notice_journal_close(j);

	/* A torn last line is cut; the next line starts clean. */
	append_raw(path, "S 9");
	assert_int_equal(notice_journal_open(path, hash, &j, &err), 0);
	assert_int_equal(notice_journal_row(j, 9)->state, NOTICE_ROW_NEW);
	assert_int_equal(notice_journal_start(j, 7, &err), 0);
	notice_journal_close(j);
	assert_int_equal(notice_journal_open(path, hash, &j, &err), 0);
	assert_int_equal(notice_journal_row(j, 7)->state, NOTICE_ROW_STARTED);
	assert_int_equal(notice_journal_row(j, 9)->state, NOTICE_ROW_NEW);
	notice_journal_close(j);

	/* Another input's digest, garbage lines, not a journal. */
	assert_int_equal(notice_journal_open(path, other, &j, &err), -1);
	append_raw(path, "X 1\n");
	assert_int_equal(notice_journal_open(path, hash, &j, &err), -1);
	unlink(path);
	{
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		fputs("hello world\n", f);
		fclose(f);
	}
	assert_int_equal(notice_journal_open(path, hash, &j, &err), -1);
	unlink(path);

	/* A header torn by a crash while creating: start afresh. */
	{
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		fputs("GOVMAIL-NOTICE-JOUR", f);
		fclose(f);
	}
	assert_int_equal(notice_journal_open(path, hash, &j, &err), 0);
	assert_int_equal(notice_journal_start(j, 1, &err), 0);
	notice_journal_close(j);
	assert_int_equal(notice_journal_open(path, hash, &j, &err), 0);
	assert_int_equal(notice_journal_row(j, 1)->state, NOTICE_ROW_STARTED);
	notice_journal_close(j);
	unlink(path);
	free(path);
}

/* Group syncing: lines are written at once (another handle reads them
 * before any fdatasync), synced every N lines (N-1, N, N+1) or once a
 * line comes M ms after the oldest unsynced one, and on request. */
static void
test_journal_sync(void **state)
{
	static const uint8_t hash[32] = { 7 };
	struct notice_journal *j, *reader;
	const char *err = NULL;
	char *path = tmp_journal();
	size_t n;

	(void)state;
	assert_int_equal(notice_journal_open(path, hash, &j, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 0);	/* header */
	/* The default: every line synced before the call returns. */
	assert_int_equal(notice_journal_start(j, 1, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 0);

	notice_journal_set_sync(j, 3, 60 * 60 * 1000);
	assert_int_equal(notice_journal_start(j, 2, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 1);
	assert_int_equal(notice_journal_done(j, 2, "sent-signed", "b@x",
	    "<m2@x>", NULL, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 2);	/* N-1 */
	/* Not yet synced, but written: another reader (the parent's
	 * progress, a rerun after a kill) sees the outcome already. */
	assert_int_equal(notice_journal_open(path, hash, &reader, &err), 0);
	assert_int_equal(notice_journal_row(reader, 2)->state,
	    NOTICE_ROW_DONE);
	assert_int_equal(notice_journal_start(j, 3, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 0);	/* N */
	assert_int_equal(notice_journal_done(j, 3, "sent-signed", "c@x",
	    "<m3@x>", NULL, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 1);	/* N+1 */
	assert_int_equal(notice_journal_refresh(reader, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(notice_journal_sync(j, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 0);
	assert_int_equal(notice_journal_sync(j, &err), 0);	/* nothing */

	/* By age: a line written 50 ms or more after the oldest unsynced
	 * one syncs both. */
	notice_journal_set_sync(j, 1000, 50);
	assert_int_equal(notice_journal_start(j, 4, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 1);
	usleep(60 * 1000);
	assert_int_equal(notice_journal_done(j, 4, "sent-signed", "d@x",
	    "<m4@x>", NULL, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 0);

	/* Closed without a sync (a killed sender): the lines stay. */
	assert_int_equal(notice_journal_start(j, 5, &err), 0);
	assert_int_equal(notice_journal_unsynced(j), 1);
	notice_journal_close(j);
	notice_journal_close(reader);
	assert_int_equal(notice_journal_open(path, hash, &j, &err), 0);
	assert_int_equal(notice_journal_row(j, 4)->state, NOTICE_ROW_DONE);
	assert_int_equal(notice_journal_row(j, 5)->state, NOTICE_ROW_STARTED);
	notice_journal_close(j);
	unlink(path);
	free(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_charset),
		cmocka_unit_test(test_csv_good),
		cmocka_unit_test(test_csv_bad),
		cmocka_unit_test(test_csv_limits),
		cmocka_unit_test(test_csv_truncations),
		cmocka_unit_test(test_csv_reader),
		cmocka_unit_test(test_template_parse),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_journal),
		cmocka_unit_test(test_journal_sync),
	};

	if (sodium_init() == -1)
		return 1;
	return cmocka_run_group_tests_name("notice", tests, NULL, NULL);
}
