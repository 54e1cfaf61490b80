/*
 * Unit tests for mailbox/mime.c: every tests/data/mime/NAME.eml is analysed
 * and compared with NAME.exp; generated messages probe the limits
 * (MIME_DEPTH_MAX, MIME_PARTS_MAX, MIME_FIELD_MAX at N-1, N, N+1) and
 * random truncations of every sample must not crash.
 *
 * NAME.exp holds one "key: value" per line (C escapes \r \n \\ \xNN in
 * values): envelope, bodystructure, body, header_size, lines, subject,
 * from, message_id, date, and "part SECTION HOFF HLEN BOFF BLEN" or
 * "nopart SECTION" lines for mime_partmap_find().  Every key present is
 * checked.  "test_mime --print FILE" prints a message's analysis in this
 * format (to review by hand, never to copy blindly).
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "xmalloc.h"
#include "mime.h"

static const char *const samples[] = {
	"simple", "alternative", "mixed", "rfc822", "digest", "groups",
	"missing", "eightbit", "noblank", "barelf", "subject_utf8",
	"subject_gb2312", "subject_gbk", "subject_gb18030", "subject_big5",
	"subject_raw_gbk", "emptyparts", "badboundary", "nested",
	"onlyheader", "empty", "subject_split", "dovecot_lf", "dovecot_crlf",
	"smime_signed", "smime_enveloped", "rfc2231", "types",
};
#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

static char *
data_path(const char *name, const char *ext)
{
	const char *top = getenv("top_srcdir");

	return xasprintf("%s/tests/data/mime/%s%s", top != NULL ? top : "..",
	    name, ext);
}

static uint8_t *
read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	uint8_t tmp[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	buf_init(&b, BUF_UNBOUNDED);
	(void)buf_append(&b, "", 0);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		(void)buf_append(&b, tmp, n);
	fclose(f);
	*len_r = b.len;
	if (b.data == NULL)
		return (uint8_t *)xstrdup("");
	return (uint8_t *)buf_steal(&b);
}

static void
print_escaped(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\r')
			fputs("\\r", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\\')
			fputs("\\\\", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

/* Undo print_escaped() in place. */
static void
unescape(char *s)
{
	char *o = s;

	while (*s != '\0') {
		if (*s != '\\' || s[1] == '\0') {
			*o++ = *s++;
			continue;
		}
		s++;
		switch (*s) {
		case 'r':
			*o++ = '\r';
			s++;
			break;
		case 'n':
			*o++ = '\n';
			s++;
			break;
		case 'x': {
			char hex[3] = { s[1], s[1] ? s[2] : 0, 0 };

			*o++ = (char)strtoul(hex, NULL, 16);
			s += 3;
			break;
		}
		default:
			*o++ = *s++;
			break;
		}
	}
	*o = '\0';
}

/* Every section the part map knows, in document order, for --print. */
static void
print_parts(FILE *f, const struct mime_info *info)
{
	/* Walk candidate names breadth-first up to a small depth. */
	char *queue[4096];
	size_t qh = 0, qt = 0, k;
	uint64_t ho, hl, bo, bl;

	queue[qt++] = xstrdup("");
	while (qh < qt) {
		char *name = queue[qh++];

		if (mime_partmap_find(info->partmap, info->partmap_len, name,
		    &ho, &hl, &bo, &bl) == 0) {
			fprintf(f, "part %s %llu %llu %llu %llu\n",
			    name[0] ? name : "\"\"", (unsigned long long)ho,
			    (unsigned long long)hl, (unsigned long long)bo,
			    (unsigned long long)bl);
			for (k = 1; k <= 9 && qt < 4096; k++)
				queue[qt++] = name[0] ?
				    xasprintf("%s.%zu", name, k) :
				    xasprintf("%zu", k);
			if (name[0] != '\0') {
				char *h = xasprintf("%s.HEADER", name);

				if (mime_partmap_find(info->partmap,
				    info->partmap_len, h, &ho, &hl, &bo,
				    &bl) == 0)
					fprintf(f, "part %s %llu %llu %llu "
					    "%llu\n", h, (unsigned long long)ho,
					    (unsigned long long)hl,
					    (unsigned long long)bo,
					    (unsigned long long)bl);
				free(h);
			}
		}
		free(name);
	}
	while (qh < qt)
		free(queue[qh++]);
}

static void
print_info(FILE *f, const struct mime_info *info)
{
	fputs("envelope: ", f);
	print_escaped(f, info->envelope);
	fputs("\nbodystructure: ", f);
	print_escaped(f, info->bodystructure);
	fputs("\nbody: ", f);
	print_escaped(f, info->body);
	fprintf(f, "\nheader_size: %llu\nlines: %u\nsubject: ",
	    (unsigned long long)info->header_size, info->lines);
	print_escaped(f, info->subject);
	fputs("\nfrom: ", f);
	print_escaped(f, info->from);
	fputs("\nmessage_id: ", f);
	print_escaped(f, info->message_id);
	fprintf(f, "\ndate: %lld\n", (long long)info->date);
	print_parts(f, info);
}

static void
check_part(const struct mime_info *info, char *args, int want)
{
	char *name = args, *sp;
	unsigned long long v[4] = { 0, 0, 0, 0 };
	uint64_t ho, hl, bo, bl;
	int r;

	sp = strchr(args, ' ');
	if (sp != NULL) {
		*sp = '\0';
		if (sscanf(sp + 1, "%llu %llu %llu %llu", &v[0], &v[1], &v[2],
		    &v[3]) != 4)
			fail_msg("bad part line for %s", name);
	}
	if (strcmp(name, "\"\"") == 0)
		name[0] = '\0';
	r = mime_partmap_find(info->partmap, info->partmap_len, name, &ho, &hl,
	    &bo, &bl);
	if (!want) {
		if (r != -1)
			fail_msg("part \"%s\" should not exist", name);
		return;
	}
	if (r != 0)
		fail_msg("part \"%s\" not found", name);
	if (ho != v[0] || hl != v[1] || bo != v[2] || bl != v[3])
		fail_msg("part \"%s\": got %llu %llu %llu %llu, want %llu %llu "
		    "%llu %llu", name, (unsigned long long)ho,
		    (unsigned long long)hl, (unsigned long long)bo,
		    (unsigned long long)bl, v[0], v[1], v[2], v[3]);
}

static void
check_str(const char *sample, const char *key, const char *got,
    const char *want)
{
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "# %s %s:\n#  got: ", sample, key);
		print_escaped(stderr, got);
		fprintf(stderr, "\n# want: ");
		print_escaped(stderr, want);
		fprintf(stderr, "\n");
		fail_msg("%s: %s differs", sample, key);
	}
}

static void
check_sample(const char *sample)
{
	char *path = data_path(sample, ".eml"), *xpath = data_path(sample,
	    ".exp");
	uint8_t *msg, *exp;
	size_t len, xlen;
	struct mime_info info;
	const char *error;
	char *line, *next, num[32];

	msg = read_file(path, &len);
	if (msg == NULL)
		fail_msg("cannot read %s", path);
	exp = read_file(xpath, &xlen);
	if (exp == NULL)
		fail_msg("cannot read %s", xpath);
	assert_int_equal(mime_analyse(msg, len, &info, &error), 0);
	for (line = (char *)exp; line != NULL && *line != '\0'; line = next) {
		char *colon, *val;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (strncmp(line, "part ", 5) == 0) {
			check_part(&info, line + 5, 1);
			continue;
		}
		if (strncmp(line, "nopart ", 7) == 0) {
			check_part(&info, line + 7, 0);
			continue;
		}
		colon = strstr(line, ": ");
		if (colon == NULL)
			continue;
		*colon = '\0';
		val = colon + 2;
		unescape(val);
		if (strcmp(line, "envelope") == 0)
			check_str(sample, line, info.envelope, val);
		else if (strcmp(line, "bodystructure") == 0)
			check_str(sample, line, info.bodystructure, val);
		else if (strcmp(line, "body") == 0)
			check_str(sample, line, info.body, val);
		else if (strcmp(line, "subject") == 0)
			check_str(sample, line, info.subject, val);
		else if (strcmp(line, "from") == 0)
			check_str(sample, line, info.from, val);
		else if (strcmp(line, "message_id") == 0)
			check_str(sample, line, info.message_id, val);
		else if (strcmp(line, "header_size") == 0) {
			snprintf(num, sizeof(num), "%llu",
			    (unsigned long long)info.header_size);
			check_str(sample, line, num, val);
		} else if (strcmp(line, "lines") == 0) {
			snprintf(num, sizeof(num), "%u", info.lines);
			check_str(sample, line, num, val);
		} else if (strcmp(line, "date") == 0) {
			snprintf(num, sizeof(num), "%lld", (long long)info.date);
			check_str(sample, line, num, val);
		} else
			fail_msg("%s: unknown key %s", sample, line);
	}
	mime_info_free(&info);
	free(msg);
	free(exp);
	free(path);
	free(xpath);
}

static void
test_samples(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NSAMPLES; i++)
		check_sample(samples[i]);
}

/*
 * Cross-check with Dovecot: dovecot_crlf.eml is the message of Dovecot's
 * src/lib-imap/test-imap-bodystructure.c with CRLF line ends, so the sizes
 * must be Dovecot's own figures (it counts CRLF sizes).  Below is Dovecot's
 * expected BODYSTRUCTURE, wrapped in the outer parentheses it leaves to
 * the caller, with its Content-MD5 value replaced by NIL (we always send
 * NIL there).  Dovecot keeps the header's case, we upper-case tokens:
 * compare without case.
 */
static const char dovecot_bodystructure[] =
"((\"text\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") "
"\"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1 NIL "
"(\"inline\" (\"foo\" \"bar\")) (\"en\" \"fi\" \"se\") "
"\"http://example.com/test.txt\")(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" "
"412 (\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" "
"((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) "
"((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub-to1\" \"domain.org\")"
"(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) ((\"text\" \"html\" "
"(\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1 NIL NIL NIL NIL)(\"text\" "
"\"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1 NIL NIL NIL NIL) "
"\"alternative\" (\"boundary\" \"sub1\") NIL NIL NIL) 21 NIL NIL NIL NIL) "
"\"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)";

static const char dovecot_body[] =
"((\"text\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") "
"\"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1)(\"message\" "
"\"rfc822\" NIL NIL NIL \"7bit\" 412 (\"Sun, 12 Aug 2012 12:34:56 +0300\" "
"\"submsg\" ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" "
"\"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub-to1\" "
"\"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL) "
"((\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1)"
"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1) "
"\"alternative\") 21) \"mixed\")";

/* RFC 3501 7.4.2's example ENVELOPE, without the SP it shows between two
 * addresses (its formal syntax has none: "(" 1*address ")"). */
static const char rfc3501_envelope[] =
"(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
"\"IMAP4rev1 WG mtg summary and minutes\" "
"((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
"((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
"((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
"((NIL NIL \"imap\" \"cac.washington.edu\")) "
"((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")"
"(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL "
"\"<B27397-0100000@cac.washington.edu>\")";

static void
test_reference_outputs(void **state)
{
	char *path;
	uint8_t *msg;
	size_t len;
	struct mime_info info;
	const char *error;

	(void)state;
	path = data_path("dovecot_crlf", ".eml");
	msg = read_file(path, &len);
	assert_non_null(msg);
	assert_int_equal(mime_analyse(msg, len, &info, &error), 0);
	if (str_casecmp(info.bodystructure, dovecot_bodystructure) != 0)
		fail_msg("BODYSTRUCTURE differs from Dovecot's: %s",
		    info.bodystructure);
	if (str_casecmp(info.body, dovecot_body) != 0)
		fail_msg("BODY differs from Dovecot's: %s", info.body);
	mime_info_free(&info);
	free(msg);
	free(path);

	path = data_path("simple", ".eml");
	msg = read_file(path, &len);
	assert_non_null(msg);
	assert_int_equal(mime_analyse(msg, len, &info, &error), 0);
	assert_string_equal(info.envelope, rfc3501_envelope);
	/* RFC 3501's example body part, with our own size and lines */
	assert_string_equal(info.body, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" "
	    "\"US-ASCII\") NIL NIL \"7BIT\" 68 2)");
	mime_info_free(&info);
	free(msg);
	free(path);
}

/*
 * Header fields, one message each: the decoded keys exactly, and a piece
 * the ENVELOPE must contain.  Dates checked with date -u -d @N.
 */
static const struct field_case {
	const char *msg;
	const char *subject, *from, *message_id;
	int64_t date;
	const char *in_envelope;
} field_cases[] = {
	{ "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\r\n",
	    "", "", "", 1057049557, "(\"Tue, 1 Jul 2003 10:52:37 +0200\" NIL" },
	{ "Date: 1 Jul 2003 10:52 +0200\r\n\r\n", "", "", "", 1057049520, NULL },
	{ "Date: Tue, 01 Jul 2003 10:52:37 GMT\r\n\r\n",
	    "", "", "", 1057056757, NULL },
	/* obsolete two-digit year and zone name (RFC 5322 4.3) */
	{ "Date: Tue, 1 Jul 03 10:52:37 EST\r\n\r\n",
	    "", "", "", 1057074757, NULL },
	{ "Date: Thu, 29 Feb 2024 23:59:60 -1200\r\n\r\n",
	    "", "", "", 1709294400, NULL },
	/* invalid: no 29 Feb in 2023, ISO 8601 is not RFC 5322 */
	{ "Date: Wed, 29 Feb 2023 12:00:00 +0000\r\n\r\n", "", "", "", 0, NULL },
	{ "Date: 2003-07-01T10:52:37Z\r\n\r\n", "", "", "", 0,
	    "(\"2003-07-01T10:52:37Z\" NIL" },
	{ "Date: Tue, 1 Jul 2003 25:52:37 +0200\r\n\r\n", "", "", "", 0, NULL },
	{ "Message-ID:\r\n <folded@example.com>\r\n\r\n", "", "",
	    "<folded@example.com>", 0, " \"<folded@example.com>\")" },
	{ "Message-ID: <a@b> <c@d>\r\nIn-Reply-To: <x@y>\r\n\t<z@w>\r\n\r\n",
	    "", "", "<a@b>", 0, "\"<x@y>\t<z@w>\" \"<a@b> <c@d>\")" },
	/* addresses: no domain, empty, source route, comment, quoting */
	{ "From: root\r\n\r\n", "", "root", "", 0,
	    "((NIL NIL \"root\" \"MISSING_DOMAIN\"))" },
	{ "From: <>\r\n\r\n", "", "", "", 0,
	    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)" },
	{ "From: x@y.z\r\nTo: <@relay,@r2:a@b.c>, d@e.f (Comment), "
	    "\"Quoted \\\"Name\\\"\" <q@b.c>\r\n\r\n", "", "x@y.z", "", 0,
	    "((NIL NIL \"a\" \"b.c\")(NIL NIL \"d\" \"e.f\")"
	    "(\"Quoted \\\"Name\\\"\" NIL \"q\" \"b.c\"))" },
	{ "From: \"Li, Si\" <li@x.cn>, wang@x.cn\r\n\r\n", "", "li@x.cn", "", 0,
	    "((\"Li, Si\" NIL \"li\" \"x.cn\")(NIL NIL \"wang\" \"x.cn\"))" },
	{ "From: Team: first@x.cn, second@x.cn;\r\n\r\n", "", "first@x.cn", "",
	    0, "((NIL NIL \"Team\" NIL)(NIL NIL \"first\" \"x.cn\")"
	    "(NIL NIL \"second\" \"x.cn\")(NIL NIL NIL NIL))" },
	/* libetpan stops at a bad address: resume after the separator */
	{ "From: x@y.z\r\nTo: a@b.c,, d@e.f; g@h.i\r\n\r\n", "", "x@y.z", "", 0,
	    "((NIL NIL \"a\" \"b.c\")(NIL NIL \"d\" \"e.f\")"
	    "(NIL NIL \"g\" \"h.i\"))" },
	/* display names stay RFC 2047-encoded in the ENVELOPE */
	{ "From: =?gbk?B?1tDOxA==?= <a@b.cn>\r\n\r\n", "", "a@b.cn", "", 0,
	    "((\"=?gbk?B?1tDOxA==?=\" NIL \"a\" \"b.cn\"))" },
	/* unparsable Sender/Reply-To default to From */
	{ "From: a@b.cn\r\nSender: <<<\r\nReply-To:\r\n\r\n", "", "a@b.cn", "",
	    0, "((NIL NIL \"a\" \"b.cn\")) ((NIL NIL \"a\" \"b.cn\")) "
	    "((NIL NIL \"a\" \"b.cn\")) NIL" },
	/* deep comments are never handed to libetpan */
	{ "From: ((((((((((((((((((x)))))))))))))))))) a@b.cn\r\n\r\n",
	    "", "", "", 0, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)" },
	{ "From: (((((((((((((((x))))))))))))))) a@b.cn\r\n\r\n",
	    "", "a@b.cn", "", 0, NULL },
	/* subjects: charsets, mixed words, raw 8-bit, control bytes */
	{ "Subject: =?ISO-8859-1?Q?caf=E9?= =?ISO-8859-2?Q?=B1=E6?=\r\n\r\n",
	    "caf\xc3\xa9\xc4\x85\xc4\x87", "", "", 0, NULL },
	{ "Subject: =?utf-8?q?=E6=94=BF=E5=8A=A1?= plain =?big5?B?s3Gqvg==?="
	    "\r\n\r\n", "\xe6\x94\xbf\xe5\x8a\xa1 plain \xe9\x80\x9a\xe7\x9f\xa5",
	    "", "", 0, NULL },
	/* labels wider in practice: GBK under gb2312, GB18030 under gbk,
	 * HKSCS under big5, an RFC 2231 language suffix */
	{ "Subject: =?gb2312?B?1uzpRrv5?=\r\n\r\n",
	    "\xe6\x9c\xb1\xe9\x95\x95\xe5\x9f\xba", "", "", 0, NULL },
	{ "Subject: =?GBK?B?lTSyNQ==?=\r\n\r\n", "\xf0\xa0\xae\xb7", "", "", 0,
	    NULL },
	{ "Subject: =?big5?B?rbu05PrAwtc=?=\r\n\r\n",
	    "\xe9\xa6\x99\xe6\xb8\xaf\xe6\xbb\x99\xe8\xb1\x90", "", "", 0,
	    NULL },
	{ "Subject: =?gb2312*zh?B?1tDOxA==?=\r\n\r\n", "\xe4\xb8\xad\xe6\x96\x87",
	    "", "", 0, NULL },
	{ "Subject: \xd5\xfe\xce\xf1 GBK raw\r\n\r\n",
	    "\xe6\x94\xbf\xe5\x8a\xa1 GBK raw", "", "", 0,
	    " {12}\r\n\xd5\xfe\xce\xf1 GBK raw NIL" },
	{ "Subject: bad \xff\xfe bytes\r\n\r\n", "bad ?? bytes", "", "", 0,
	    " {12}\r\nbad \xff\xfe bytes NIL" },
	{ "Subject: tab\there\x01\r\n\r\n", "tab here?", "", "", 0, NULL },
	{ "Subject: \"quotes\" and \\back\\\r\n\r\n", "\"quotes\" and \\back\\",
	    "", "", 0, " \"\\\"quotes\\\" and \\\\back\\\\\" NIL" },
	{ "Subject: folded\r\n  over\r\n\tlines\r\n\r\n", "folded over lines",
	    "", "", 0, NULL },
	{ "Subject:\r\n\r\n", "", "", "", 0, "(NIL NIL NIL" },
	{ "subject : Odd Case\r\n\r\n", "Odd Case", "", "", 0, NULL },
	{ "Subject: first\r\nSubject: second\r\n\r\n", "first", "", "", 0,
	    NULL },
};

static void
test_fields(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(field_cases) / sizeof(field_cases[0]); i++) {
		const struct field_case *c = &field_cases[i];
		struct mime_info info;
		const char *error;

		assert_int_equal(mime_analyse((const uint8_t *)c->msg,
		    strlen(c->msg), &info, &error), 0);
		check_str(c->msg, "subject", info.subject, c->subject);
		check_str(c->msg, "from", info.from, c->from);
		check_str(c->msg, "message_id", info.message_id,
		    c->message_id);
		if (info.date != c->date)
			fail_msg("case %zu: date %lld, want %lld", i,
			    (long long)info.date, (long long)c->date);
		if (c->in_envelope != NULL &&
		    strstr(info.envelope, c->in_envelope) == NULL)
			fail_msg("case %zu: envelope %s lacks %s", i,
			    info.envelope, c->in_envelope);
		mime_info_free(&info);
	}
}

/* ---- structural checks for any input ------------------------------ */

/* One IMAP item (RFC 3501 syntax) at *p; -1 if malformed. */
static int
imap_item(const char **p, const char *end, int depth, int *nitems_r)
{
	const char *s = *p;

	if (s >= end || depth > 200)
		return -1;
	if (*s == '(') {
		int n = 0;

		s++;
		while (s < end && *s != ')') {
			if (n > 0) {
				if (*s == ' ')
					s++;
				else if (*s != '(')
					return -1;
			}
			if (imap_item(&s, end, depth + 1, NULL) == -1)
				return -1;
			n++;
		}
		if (s >= end)
			return -1;
		*p = s + 1;
		if (nitems_r != NULL)
			*nitems_r = n;
		return 0;
	}
	if (*s == '"') {
		for (s++; s < end && *s != '"'; s++) {
			if (*s == '\\') {
				s++;
				if (s >= end || (*s != '"' && *s != '\\'))
					return -1;
			} else if (*s == '\r' || *s == '\n' || (*s & 0x80))
				return -1;
		}
		if (s >= end)
			return -1;
		*p = s + 1;
		return 0;
	}
	if (*s == '{') {
		char *e;
		unsigned long n = strtoul(s + 1, &e, 10);

		if (e >= end || e[0] != '}' || end - e < 3 || e[1] != '\r' ||
		    e[2] != '\n' || (unsigned long)(end - (e + 3)) < n ||
		    memchr(e + 3, 0, n) != NULL)
			return -1;
		*p = e + 3 + n;
		return 0;
	}
	if (end - s >= 3 && memcmp(s, "NIL", 3) == 0) {
		*p = s + 3;
		return 0;
	}
	if (*s >= '0' && *s <= '9') {
		while (s < end && *s >= '0' && *s <= '9')
			s++;
		*p = s;
		return 0;
	}
	return -1;
}

static void
check_syntax(const char *what, const char *s, int want_items)
{
	const char *p = s, *end = s + strlen(s);
	int n = -1;

	if (imap_item(&p, end, 0, &n) == -1 || p != end || s[0] != '(')
		fail_msg("%s is not one IMAP list: %.200s", what, s);
	if (want_items > 0 && n != want_items)
		fail_msg("%s has %d items, want %d", what, n, want_items);
}

/* Every part the map names lies inside the message; "" and "1" exist. */
static void
check_partmap(const struct mime_info *info, size_t len)
{
	char *queue[2048];
	size_t qh = 0, qt = 0, k, found = 0;
	uint64_t ho, hl, bo, bl;

	assert_int_equal(mime_partmap_find(info->partmap, info->partmap_len,
	    "1", &ho, &hl, &bo, &bl), 0);
	queue[qt++] = xstrdup("");
	while (qh < qt) {
		char *name = queue[qh++];

		if (mime_partmap_find(info->partmap, info->partmap_len, name,
		    &ho, &hl, &bo, &bl) == 0) {
			found++;
			if (ho + hl != bo || bo > len || bl > len - bo)
				fail_msg("part %s out of range", name);
			for (k = 1; k <= 4 && qt < 2048; k++)
				queue[qt++] = name[0] ?
				    xasprintf("%s.%zu", name, k) :
				    xasprintf("%zu", k);
		}
		free(name);
	}
	while (qh < qt)
		free(queue[qh++]);
	assert_true(found >= 2);
	assert_true(info->header_size <= len);
}

static void
check_any(const uint8_t *msg, size_t len)
{
	struct mime_info info;
	const char *error;

	assert_int_equal(mime_analyse(msg, len, &info, &error), 0);
	check_syntax("envelope", info.envelope, 10);
	check_syntax("bodystructure", info.bodystructure, 0);
	check_syntax("body", info.body, 0);
	check_partmap(&info, len);
	assert_non_null(info.subject);
	assert_non_null(info.from);
	assert_non_null(info.message_id);
	mime_info_free(&info);
}

static size_t
count_str(const char *hay, const char *needle)
{
	size_t n = 0;
	const char *p = hay;

	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	return n;
}

static void
analyse_buf(const struct buf *b, struct mime_info *info)
{
	const char *error;

	assert_int_equal(mime_analyse(b->data, b->len, info, &error), 0);
	check_syntax("bodystructure", info->bodystructure, 0);
	check_syntax("body", info->body, 0);
	check_partmap(info, b->len);
}

static int
has_part(const struct mime_info *info, const char *name)
{
	uint64_t ho, hl, bo, bl;

	return mime_partmap_find(info->partmap, info->partmap_len, name, &ho,
	    &hl, &bo, &bl) == 0;
}

/* n nested multiparts (depths 0..n-1) around one text leaf. */
static void
gen_deep_multipart(struct buf *b, int n)
{
	int k;

	buf_init(b, BUF_UNBOUNDED);
	for (k = 0; k < n; k++)
		buf_printf(b, "Content-Type: multipart/mixed; boundary=b%d\r\n"
		    "\r\n--b%d\r\n", k, k);
	buf_printf(b, "Content-Type: text/plain\r\n\r\nleaf\r\n");
	for (k = n - 1; k >= 0; k--)
		buf_printf(b, "--b%d--\r\n", k);
}

/* n nested message/rfc822 entities (depths 0..n-1) around a leaf. */
static void
gen_deep_message(struct buf *b, int n)
{
	int k;

	buf_init(b, BUF_UNBOUNDED);
	for (k = 0; k < n; k++)
		buf_printf(b, "Subject: level %d\r\n"
		    "Content-Type: message/rfc822\r\n\r\n", k);
	buf_printf(b, "Subject: leaf\r\n\r\nleaf\r\n");
}

static char *
path_of_ones(int n)
{
	struct buf b;
	int k;

	buf_init(&b, BUF_UNBOUNDED);
	for (k = 0; k < n; k++)
		buf_append_str(&b, k == 0 ? "1" : ".1");
	return buf_steal(&b);
}

static void
test_depth_multipart(void **state)
{
	int n;

	(void)state;
	for (n = MIME_DEPTH_MAX - 1; n <= MIME_DEPTH_MAX + 1; n++) {
		struct buf b;
		struct mime_info info;
		char *leaf = path_of_ones(n), *deeper = path_of_ones(n + 1);

		gen_deep_multipart(&b, n);
		analyse_buf(&b, &info);
		if (n <= MIME_DEPTH_MAX) {
			/* every level opened, the text leaf at depth n */
			assert_int_equal(count_str(info.body, "\"MIXED\""), n);
			assert_int_equal(count_str(info.body, "\"TEXT\""), 1);
			assert_true(has_part(&info, leaf));
			assert_false(has_part(&info, deeper));
		} else {
			/* the multipart at depth MIME_DEPTH_MAX stays shut */
			assert_int_equal(count_str(info.body, "\"MIXED\""),
			    MIME_DEPTH_MAX);
			assert_int_equal(count_str(info.body, "\"TEXT\""), 0);
			assert_int_equal(count_str(info.body,
			    "\"APPLICATION\" \"OCTET-STREAM\""), 1);
			assert_false(has_part(&info, leaf));
			free(leaf);
			leaf = path_of_ones(MIME_DEPTH_MAX);
			assert_true(has_part(&info, leaf));
		}
		mime_info_free(&info);
		buf_free(&b);
		free(leaf);
		free(deeper);
	}
}

static void
test_depth_message(void **state)
{
	int n;

	(void)state;
	for (n = MIME_DEPTH_MAX - 1; n <= MIME_DEPTH_MAX + 1; n++) {
		struct buf b;
		struct mime_info info;
		char *leaf = path_of_ones(n + 1);

		gen_deep_message(&b, n);
		analyse_buf(&b, &info);
		if (n <= MIME_DEPTH_MAX) {
			assert_int_equal(count_str(info.body, "\"RFC822\""), n);
			assert_int_equal(count_str(info.body, "\"leaf\""), 1);
			assert_true(has_part(&info, leaf));
		} else {
			assert_int_equal(count_str(info.body, "\"RFC822\""),
			    MIME_DEPTH_MAX);
			assert_int_equal(count_str(info.body, "\"leaf\""), 0);
			assert_int_equal(count_str(info.body,
			    "\"APPLICATION\" \"OCTET-STREAM\""), 1);
			assert_false(has_part(&info, leaf));
		}
		mime_info_free(&info);
		buf_free(&b);
		free(leaf);
	}
}

/* Far past the limit: no deep recursion anywhere, still described. */
static void
test_depth_huge(void **state)
{
	struct buf b;
	struct mime_info info;

	(void)state;
	gen_deep_multipart(&b, 20000);
	analyse_buf(&b, &info);
	assert_int_equal(count_str(info.body, "\"MIXED\""), MIME_DEPTH_MAX);
	mime_info_free(&info);
	buf_free(&b);
	gen_deep_message(&b, 20000);
	analyse_buf(&b, &info);
	assert_int_equal(count_str(info.body, "\"RFC822\""), MIME_DEPTH_MAX);
	mime_info_free(&info);
	buf_free(&b);
}

static void
gen_many_parts(struct buf *b, int n)
{
	int k;

	buf_init(b, BUF_UNBOUNDED);
	buf_printf(b, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
	for (k = 0; k < n; k++)
		buf_printf(b, "--p\r\nContent-Type: text/plain\r\n\r\n%d\r\n",
		    k % 10);
	buf_printf(b, "--p--\r\n");
}

/* Without the close delimiter the folded rest runs to the end. */
static void
test_parts_unclosed(void **state)
{
	struct buf b;
	struct mime_info info;

	(void)state;
	gen_many_parts(&b, MIME_PARTS_MAX);
	buf_truncate(&b, b.len - 7);	/* drop "--p--\r\n" */
	analyse_buf(&b, &info);
	assert_int_equal(count_str(info.body, "\"TEXT\""), MIME_PARTS_MAX - 2);
	/* the last two parts, the second keeping its CRLF */
	assert_non_null(strstr(info.body, "\"OCTET-STREAM\" NIL NIL NIL "
	    "\"7BIT\" 67)"));
	mime_info_free(&info);
	buf_free(&b);
}

static void
test_parts_limit(void **state)
{
	int n;
	char name[32];

	(void)state;
	/* the top-level multipart counts one: N-1, N, N+1 entities */
	for (n = MIME_PARTS_MAX - 2; n <= MIME_PARTS_MAX; n++) {
		struct buf b;
		struct mime_info info;

		gen_many_parts(&b, n);
		analyse_buf(&b, &info);
		if (n + 1 <= MIME_PARTS_MAX) {
			assert_int_equal(count_str(info.body, "\"TEXT\""),
			    (size_t)n);
			snprintf(name, sizeof(name), "%d", n);
			assert_true(has_part(&info, name));
		} else {
			/* the last two parts folded into one opaque part */
			assert_int_equal(count_str(info.body, "\"TEXT\""),
			    (size_t)n - 2);
			assert_int_equal(count_str(info.body,
			    "\"APPLICATION\" \"OCTET-STREAM\""), 1);
			assert_non_null(strstr(info.body,
			    "\"7BIT\" 65)"));	/* 2 parts, 1 delimiter */
			snprintf(name, sizeof(name), "%d", n - 1);
			assert_true(has_part(&info, name));
			snprintf(name, sizeof(name), "%d", n);
			assert_false(has_part(&info, name));
		}
		mime_info_free(&info);
		buf_free(&b);
	}
}

static void
test_parts_huge(void **state)
{
	struct buf b;
	struct mime_info info;
	char name[32];

	(void)state;
	gen_many_parts(&b, 200000);
	analyse_buf(&b, &info);
	assert_int_equal(count_str(info.body, "\"TEXT\""), MIME_PARTS_MAX - 2);
	snprintf(name, sizeof(name), "%d", MIME_PARTS_MAX - 1);
	assert_true(has_part(&info, name));
	mime_info_free(&info);
	buf_free(&b);
}

/* A Subject whose value (after the colon, CRLF included) is n bytes. */
static void
test_field_limit(void **state)
{
	size_t n;

	(void)state;
	for (n = MIME_FIELD_MAX - 1; n <= MIME_FIELD_MAX + 1; n++) {
		struct buf b;
		struct mime_info info;
		size_t k;

		buf_init(&b, BUF_UNBOUNDED);
		buf_append_str(&b, "Subject: ");
		/* " " + text + CRLF = n; the text ends in a letter */
		for (k = 0; k < n - 3; k++)
			buf_append_byte(&b, (k % 71 == 70 && k != n - 4) ?
			    ' ' : 'x');
		buf_append_str(&b, "\r\n\r\nbody\r\n");
		analyse_buf(&b, &info);
		if (n <= MIME_FIELD_MAX)
			assert_int_equal(strlen(info.subject), n - 3);
		else
			assert_string_equal(info.subject, "");
		mime_info_free(&info);
		buf_free(&b);
	}
}

static void
test_boundary_limit(void **state)
{
	size_t n;

	(void)state;
	for (n = MIME_BOUNDARY_MAX - 1; n <= MIME_BOUNDARY_MAX + 1; n++) {
		struct buf b;
		struct mime_info info;
		char bnd[MIME_BOUNDARY_MAX + 2];

		memset(bnd, 'q', n);
		bnd[n] = '\0';
		buf_init(&b, BUF_UNBOUNDED);
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=\"%s\""
		    "\r\n\r\n--%s\r\n\r\none\r\n--%s--\r\n", bnd, bnd, bnd);
		analyse_buf(&b, &info);
		if (n <= MIME_BOUNDARY_MAX)
			assert_non_null(strstr(info.body, "\"MIXED\")"));
		else
			assert_null(strstr(info.body, "\"MIXED\""));
		mime_info_free(&info);
		buf_free(&b);
	}
}

/* A periodic boundary inside long lines: linear, still one part. */
static void
test_periodic_boundary(void **state)
{
	struct buf b;
	struct mime_info info;
	size_t k, j;

	(void)state;
	buf_init(&b, BUF_UNBOUNDED);
	buf_append_str(&b, "Content-Type: multipart/mixed; boundary=\"");
	for (k = 0; k < MIME_BOUNDARY_MAX; k++)
		buf_append_byte(&b, '-');
	buf_append_str(&b, "\"\r\n\r\n--");
	for (k = 0; k < MIME_BOUNDARY_MAX; k++)
		buf_append_byte(&b, '-');
	buf_append_str(&b, "\r\n\r\n");
	for (j = 0; j < 2000; j++) {
		buf_append_byte(&b, 'x');
		for (k = 0; k < 1000; k++)
			buf_append_byte(&b, '-');
		buf_append_str(&b, "\r\n");
	}
	analyse_buf(&b, &info);
	assert_int_equal(count_str(info.body, "\"TEXT\""), 1);
	assert_non_null(strstr(info.body, " 2006000 2000)"));
	mime_info_free(&info);
	buf_free(&b);
}

/* Deep comments are not handed to libetpan; many header lines are fine. */
static void
test_hostile_headers(void **state)
{
	struct buf b;
	struct mime_info info;
	size_t k;

	(void)state;
	buf_init(&b, BUF_UNBOUNDED);
	buf_append_str(&b, "From: ");
	for (k = 0; k < 30000; k++)
		buf_append_byte(&b, '(');
	buf_append_str(&b, "a@b.c\r\nContent-Type: text/plain; (((((((((((((("
	    "(((((((((((((((((((((\r\n");
	/* a To: that makes every resumed parse scan to the end */
	buf_append_str(&b, "To: ");
	for (k = 0; k < 6000; k++)
		buf_append_str(&b, "\"x, ");
	buf_append_str(&b, "\r\n");
	for (k = 0; k < 200000; k++)
		buf_printf(&b, "X-Filler-%zu: %zu\r\n", k % 7, k);
	buf_append_str(&b, "Subject: last wins not\r\nSubject: second\r\n"
	    "\r\nbody\r\n");
	analyse_buf(&b, &info);
	assert_string_equal(info.from, "");
	assert_string_equal(info.subject, "last wins not");
	assert_int_equal(info.header_size, b.len - 6);
	mime_info_free(&info);
	buf_free(&b);
}

/* Every prefix of every sample, and random damage, must analyse cleanly. */
static void
test_truncations(void **state)
{
	size_t i, cut, k;
	unsigned seed = 12345;
	static const char noise[] = "\r\n-:;=\"\\()<>@ \t\x80\xff\x00Xb";

	(void)state;
	for (i = 0; i < NSAMPLES; i++) {
		char *path = data_path(samples[i], ".eml");
		size_t len;
		uint8_t *msg = read_file(path, &len), *copy;

		assert_non_null(msg);
		for (cut = 0; cut <= len; cut++) {
			/* a fresh allocation of exactly cut bytes, so that
			 * ASan sees any read past the end */
			copy = xmalloc(cut > 0 ? cut : 1);
			memcpy(copy, msg, cut);
			check_any(copy, cut);
			free(copy);
		}
		for (k = 0; k < 300 && len > 0; k++) {
			size_t j, flips = 1 + rand_r(&seed) % 8;

			copy = xmalloc(len);
			memcpy(copy, msg, len);
			for (j = 0; j < flips; j++)
				copy[rand_r(&seed) % len] = (uint8_t)noise[
				    rand_r(&seed) % (sizeof(noise) - 1)];
			cut = (size_t)rand_r(&seed) % (len + 1);
			check_any(copy, cut);
			free(copy);
		}
		free(msg);
		free(path);
	}
}

static void
test_api_edges(void **state)
{
	struct mime_info info;
	const char *error = NULL;
	uint64_t a, b, c, d;
	static const uint8_t bad[] = { 9, 0 };

	(void)state;
	assert_int_equal(mime_analyse(NULL, 5, &info, &error), -1);
	assert_non_null(error);
	assert_int_equal(mime_analyse(NULL, 0, &info, &error), 0);
	check_partmap(&info, 0);
	mime_info_free(&info);
	mime_info_free(&info);	/* idempotent */
	mime_info_free(NULL);
	assert_int_equal(mime_partmap_find(NULL, 0, "", &a, &b, &c, &d), -1);
	assert_int_equal(mime_partmap_find(bad, sizeof(bad), "", &a, &b, &c,
	    &d), -1);
	/* an empty header: the blank line alone is the header */
	assert_int_equal(mime_analyse((const uint8_t *)"\r\nbody\r\n", 8, &info,
	    &error), 0);
	assert_int_equal(info.header_size, 2);
	assert_int_equal(info.lines, 1);
	assert_string_equal(info.envelope,
	    "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	assert_int_equal(mime_partmap_find(info.partmap, info.partmap_len,
	    "1", &a, &b, &c, &d), 0);
	assert_true(a == 0 && b == 2 && c == 2 && d == 6);
	assert_int_equal(mime_partmap_find(info.partmap, info.partmap_len,
	    "TEXT", &a, &b, &c, &d), 0);
	assert_true(a == 0 && b == 2 && c == 2 && d == 6);
	mime_info_free(&info);
	/* a damaged map: cut at every length, never read past the end */
	assert_int_equal(mime_analyse((const uint8_t *)"Content-Type: "
	    "multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\na\r\n--x--\r\n",
	    56, &info, &error), 0);
	for (a = 0; a < info.partmap_len; a++) {
		uint8_t *cut = xmalloc(a > 0 ? a : 1);

		memcpy(cut, info.partmap, a);
		(void)mime_partmap_find(cut, a, "1", &b, &c, &d, &d);
		free(cut);
	}
	mime_info_free(&info);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_reference_outputs),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_depth_multipart),
		cmocka_unit_test(test_depth_message),
		cmocka_unit_test(test_depth_huge),
		cmocka_unit_test(test_parts_limit),
		cmocka_unit_test(test_parts_huge),
		cmocka_unit_test(test_parts_unclosed),
		cmocka_unit_test(test_field_limit),
		cmocka_unit_test(test_boundary_limit),
		cmocka_unit_test(test_periodic_boundary),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_api_edges),
	};

	if (argc == 3 && strcmp(argv[1], "--print") == 0) {
		struct mime_info info;
		const char *error;
		uint8_t *msg;
		size_t len;

		msg = read_file(argv[2], &len);
		if (msg == NULL || mime_analyse(msg, len, &info, &error) != 0)
			return 1;
		print_info(stdout, &info);
		mime_info_free(&info);
		free(msg);
		return 0;
	}
	return cmocka_run_group_tests_name("mime", tests, NULL, NULL);
}
