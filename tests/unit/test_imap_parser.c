/*
 * test_imap_parser.c - unit tests for imapd/imap_parser.c and
 * imapd/imap_util.c: commands fed whole, byte by byte and in random
 * splits; literal, line and nesting limits at N-1, N and N+1; sequence
 * sets; modified UTF-7; the APPEND literal hook (inline, spooled to a
 * file, dropped) whole and byte by byte.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <stdio.h>
#include <unistd.h>

#include "buf.h"
#include "imap_parser.h"
#include "imap_util.h"
#include "xmalloc.h"

/* Render args as text: atoms bare, strings "..", literals {..}, lists (). */
static void
render(struct buf *b, const struct imap_arg *a, size_t n)
{
	/* Iterative enough for tests: depth is bounded by the parser. */
	size_t i;

	for (i = 0; i < n; i++) {
		if (i > 0)
			buf_append_byte(b, ' ');
		switch (a[i].type) {
		case IMAP_ARG_ATOM:
			buf_append(b, a[i].str, a[i].len);
			break;
		case IMAP_ARG_STRING:
			buf_printf(b, "\"%s\"", a[i].str);
			break;
		case IMAP_ARG_LITERAL:
			buf_printf(b, "{%zu:", a[i].len);
			buf_append(b, a[i].str, a[i].len);
			buf_append_byte(b, '}');
			break;
		case IMAP_ARG_LIST:
			buf_append_byte(b, '(');
			render(b, a[i].list, a[i].nlist);
			buf_append_byte(b, ')');
			break;
		}
	}
}

/*
 * Feed input in pieces of the given sizes (0 = whole), answering
 * CONTINUE by counting; returns a transcript "OK:<args>|ERR:<tag>:<msg>|
 * CONT|FATAL" per event.
 */
static char *
run(const struct imap_parser_limits *lim, const char *in, size_t inlen,
    unsigned split_seed, int bytewise)
{
	struct imap_parser *p = imap_parser_new(lim);
	struct buf out;
	size_t off = 0;

	buf_init(&out, BUF_UNBOUNDED);
	srand(split_seed);
	while (off < inlen) {
		size_t chunk = inlen - off, used;
		enum imap_parse_result r;

		if (bytewise)
			chunk = 1;
		else if (split_seed != 0)
			chunk = 1 + (size_t)rand() % (chunk < 7 ? chunk : 7);
		{
			size_t pos = 0;

			while (pos < chunk) {
				r = imap_parser_feed(p,
				    (const uint8_t *)in + off + pos,
				    chunk - pos, &used);
				pos += used;
				if (r == IMAP_PARSE_MORE)
					break;
				if (r == IMAP_PARSE_OK) {
					const struct imap_arg *a;
					size_t n;

					a = imap_parser_args(p, &n);
					buf_append_str(&out, "OK:");
					render(&out, a, n);
					buf_append_byte(&out, '|');
				} else if (r == IMAP_PARSE_CONTINUE)
					buf_append_str(&out, "CONT|");
				else if (r == IMAP_PARSE_ERROR)
					buf_printf(&out, "ERR:%s:%s|",
					    imap_parser_tag(p),
					    imap_parser_error(p));
				else {
					buf_append_str(&out, "FATAL|");
					pos = chunk;
					off = inlen;
					break;
				}
			}
			if (off < inlen)
				off += chunk;
		}
	}
	imap_parser_free(p);
	return buf_steal(&out);
}

struct pcase {
	const char *in;
	const char *want;
};

static const struct pcase pcases[] = {
	{ "a1 NOOP\r\n", "OK:a1 NOOP|" },
	{ "a1 NOOP\n", "OK:a1 NOOP|" },
	{ "\r\na1 NOOP\r\n", "OK:a1 NOOP|" },
	{ "a LOGIN \"us\\\"er\" {3}\r\npw1\r\n",
	    "CONT|OK:a LOGIN \"us\"er\" {3:pw1}|" },
	{ "a LOGIN {4+}\r\nuser {0}\r\n\r\n",
	    "CONT|OK:a LOGIN {4:user} {0:}|" },
	{ "t FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)\r\n",
	    "OK:t FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]"
	    "<0.10>)|" },
	{ "t STORE 1 +FLAGS (\\Seen \\Deleted)\r\n",
	    "OK:t STORE 1 +FLAGS (\\Seen \\Deleted)|" },
	{ "t X \"\"\r\n", "OK:t X \"\"|" },
	/* literal8 (RFC 3516) for APPEND's message; '~' atoms elsewhere */
	{ "a APPEND INBOX ~{3}\r\nabc\r\n", "CONT|OK:a APPEND INBOX {3:abc}|" },
	{ "a APPEND INBOX (\\Seen) ~{2+}\r\nxy\r\n",
	    "OK:a APPEND INBOX (\\Seen) {2:xy}|" },
	{ "a LIST \"\" ~user/x\r\n", "OK:a LIST \"\" ~user/x|" },
	{ "a LIST \"\" ~\r\n", "OK:a LIST \"\" ~|" },
	{ "a LOGIN ~{3}\r\nb NOOP\r\n",
	    "ERR:a:literal8 is for APPEND's message only|OK:b NOOP|" },
	{ "a APPEND INBOX (~{1}\r\nb NOOP\r\n",
	    "ERR:a:literal8 is for APPEND's message only|OK:b NOOP|" },
	/* errors, each followed by a good command: the parser recovers */
	{ "t X (a\r\nb NOOP\r\n", "ERR:t:Unbalanced parentheses|OK:b NOOP|" },
	{ "t X a)\r\nb NOOP\r\n", "ERR:t:Unbalanced parentheses|OK:b NOOP|" },
	{ "t X \"a\\n\"\r\nb NOOP\r\n",
	    "ERR:t:Invalid escape in string|OK:b NOOP|" },
	{ "t X \"a\r\nb NOOP\r\n",
	    "ERR:t:Invalid character in string|OK:b NOOP|" },
	{ "t X {-1}\r\nb NOOP\r\n", "ERR:t:Invalid literal size|OK:b NOOP|" },
	{ "t X {1x}\r\nb NOOP\r\n", "ERR:t:Invalid literal size|OK:b NOOP|" },
	{ "t X {99999999999}\r\nb NOOP\r\n",
	    "ERR:t:[TOOBIG] Literal too large|OK:b NOOP|" },
	{ "t X {2} x\r\nb NOOP\r\n",
	    "ERR:t:Literal must end the line|OK:b NOOP|" },
	{ "t X \"a\"\"b\"\r\nb NOOP\r\n", "ERR:t:Missing space|OK:b NOOP|" },
	{ "t X a\rb\r\nb NOOP\r\n", "ERR:t:Bare CR|OK:b NOOP|" },
	{ "a+b NOOP\r\nb NOOP\r\n", "ERR:*:Invalid tag|OK:b NOOP|" },
	{ "\"t\" NOOP\r\n", "ERR:*:Invalid tag|" },
	{ "lonely\r\n", "ERR:lonely:Missing command|" },
	{ "t X BODY[\r\nb NOOP\r\n", "ERR:t:Invalid section|OK:b NOOP|" },
	{ "t X \x01\r\nb NOOP\r\n", "ERR:t:Invalid character|OK:b NOOP|" },
	/* pre-auth: one list level */
	{ "t X ((a))\r\nb NOOP\r\n", "ERR:t:Lists nested too deep|OK:b NOOP|" },
	/* pre-auth literal cap 4096: non-synchronising over it is fatal */
	{ "t LOGIN {4097+}\r\nxx", "FATAL|" },
	{ "t LOGIN {4097}\r\nb NOOP\r\n",
	    "ERR:t:[TOOBIG] Literal too large|OK:b NOOP|" },
};

/* Nested lists need the limits of an authenticated session. */
static const struct pcase pcases_auth[] = {
	{ "t X (a (b c) () d)\r\n", "OK:t X (a (b c) () d)|" },
	{ "t X ((a) (b (c)))\r\n", "OK:t X ((a) (b (c)))|" },
	{ "t X (((a)) b) (c)\r\n", "OK:t X (((a)) b) (c)|" },
	{ "t X ((a)\r\nb NOOP\r\n",
	    "ERR:t:Unbalanced parentheses|OK:b NOOP|" },
};

static void
check_table(const struct imap_parser_limits *lim, const struct pcase *pc,
    size_t npc)
{
	size_t i;
	unsigned seed;

	for (i = 0; i < npc; i++) {
		const char *in = pc[i].in;
		size_t len = strlen(in);
		char *got;

		got = run(lim, in, len, 0, 0);
		if (strcmp(got, pc[i].want) != 0)
			fail_msg("whole %zu: %s -> %s", i, in, got);
		free(got);
		got = run(lim, in, len, 0, 1);
		if (strcmp(got, pc[i].want) != 0)
			fail_msg("bytewise %zu: %s -> %s", i, in, got);
		free(got);
		for (seed = 1; seed <= 20; seed++) {
			got = run(lim, in, len, seed, 0);
			if (strcmp(got, pc[i].want) != 0)
				fail_msg("split %u %zu: %s -> %s", seed, i, in,
				    got);
			free(got);
		}
	}
}

static void
test_parser_table(void **state)
{
	struct imap_parser_limits lim;

	(void)state;
	imap_parser_limits_preauth(&lim);
	check_table(&lim, pcases, sizeof(pcases) / sizeof(pcases[0]));
	imap_parser_limits_auth(&lim, 1000);
	check_table(&lim, pcases_auth,
	    sizeof(pcases_auth) / sizeof(pcases_auth[0]));
}

/* A command with a literal of n bytes, synchronising or not. */
static char *
literal_cmd(const char *cmd, size_t n, int plus, size_t *len_r)
{
	struct buf b;
	size_t i;

	buf_init(&b, BUF_UNBOUNDED);
	buf_printf(&b, "t %s {%zu%s}\r\n", cmd, n, plus ? "+" : "");
	for (i = 0; i < n; i++)
		buf_append_byte(&b, 'x');
	buf_append_str(&b, "\r\nb NOOP\r\n");
	*len_r = b.len;
	return buf_steal(&b);
}

static void
check_literal(const struct imap_parser_limits *lim, const char *cmd,
    size_t n, int plus, int want_ok)
{
	size_t len;
	char *in = literal_cmd(cmd, n, plus, &len);
	char *got = run(lim, in, len, 7, 0);

	if (want_ok)
		assert_true(str_has_prefix(got, plus ? "OK:t " : "CONT|OK:t "));
	else if (plus)
		assert_string_equal(got, "FATAL|");
	else
		assert_true(str_has_prefix(got, "ERR:t:[TOOBIG]"));
	free(got);
	free(in);
}

static void
test_literal_limits(void **state)
{
	struct imap_parser_limits pre, post;
	int plus;

	(void)state;
	imap_parser_limits_preauth(&pre);
	imap_parser_limits_auth(&post, 100000);
	for (plus = 0; plus <= 1; plus++) {
		check_literal(&pre, "LOGIN", IMAP_LITERAL_MAX_PREAUTH - 1,
		    plus, 1);
		check_literal(&pre, "LOGIN", IMAP_LITERAL_MAX_PREAUTH, plus, 1);
		check_literal(&pre, "LOGIN", IMAP_LITERAL_MAX_PREAUTH + 1,
		    plus, 0);
		check_literal(&post, "X", IMAP_LITERAL_MAX - 1, plus, 1);
		check_literal(&post, "X", IMAP_LITERAL_MAX, plus, 1);
		check_literal(&post, "X", IMAP_LITERAL_MAX + 1, plus, 0);
		check_literal(&post, "APPEND", 100000, plus, 1);
		check_literal(&post, "append", 100001, plus, 0);
	}
}

static void
check_line(const struct imap_parser_limits *lim, size_t total, int want_ok)
{
	struct buf b;
	char *got;
	size_t len;

	/* "t X aaaa...\r\n": total bytes before the CRLF. */
	buf_init(&b, BUF_UNBOUNDED);
	buf_append_str(&b, "t X ");
	while (b.len < total)
		buf_append_byte(&b, 'a');
	/* The line limit counts the terminator's bytes too. */
	buf_append_str(&b, "\r\nb NOOP\r\n");
	len = b.len;
	got = run(lim, (const char *)b.data, len, 3, 0);
	if (want_ok)
		assert_true(str_has_prefix(got, "OK:t X a"));
	else
		assert_string_equal(got, "ERR:t:Line too long|OK:b NOOP|");
	free(got);
	buf_free(&b);
}

static void
test_line_limits(void **state)
{
	struct imap_parser_limits pre;

	(void)state;
	imap_parser_limits_preauth(&pre);
	/* line_max counts every byte of the line, CRLF included. */
	check_line(&pre, IMAP_LINE_MAX_PREAUTH - 3, 1);
	check_line(&pre, IMAP_LINE_MAX_PREAUTH - 2, 1);
	check_line(&pre, IMAP_LINE_MAX_PREAUTH - 1, 0);
}

static void
test_depth_limits(void **state)
{
	struct imap_parser_limits post;
	struct buf b;
	unsigned d;
	char *got;

	(void)state;
	imap_parser_limits_auth(&post, 1000);
	for (d = IMAP_DEPTH_MAX - 1; d <= IMAP_DEPTH_MAX + 1; d++) {
		unsigned i;

		buf_init(&b, BUF_UNBOUNDED);
		buf_append_str(&b, "t SEARCH ");
		for (i = 0; i < d; i++)
			buf_append_byte(&b, '(');
		buf_append_str(&b, "ALL");
		for (i = 0; i < d; i++)
			buf_append_byte(&b, ')');
		buf_append_str(&b, "\r\n");
		got = run(&post, (const char *)b.data, b.len, 0, 1);
		if (d <= IMAP_DEPTH_MAX)
			assert_true(str_has_prefix(got, "OK:t SEARCH ((("));
		else
			assert_string_equal(got,
			    "ERR:t:Lists nested too deep|");
		free(got);
		buf_free(&b);
	}
	/* 100000 '(' after login: refused at once, no recursion. */
	buf_init(&b, BUF_UNBOUNDED);
	buf_append_str(&b, "t X ");
	for (d = 0; d < 60000; d++)
		buf_append_byte(&b, '(');
	buf_append_str(&b, "\r\nb NOOP\r\n");
	got = run(&post, (const char *)b.data, b.len, 0, 0);
	assert_string_equal(got, "ERR:t:Lists nested too deep|OK:b NOOP|");
	free(got);
	buf_free(&b);
}

static void
test_args_limit(void **state)
{
	struct imap_parser_limits pre;
	struct buf b;
	size_t i;
	char *got;

	(void)state;
	imap_parser_limits_preauth(&pre);
	for (i = pre.args_max - 1; i <= pre.args_max + 1; i++) {
		size_t k;

		buf_init(&b, BUF_UNBOUNDED);
		buf_append_str(&b, "t X");
		for (k = 2; k < i; k++)
			buf_append_str(&b, " a");
		buf_append_str(&b, "\r\n");
		got = run(&pre, (const char *)b.data, b.len, 0, 0);
		if (i <= pre.args_max)
			assert_true(str_has_prefix(got, "OK:t X a a"));
		else
			assert_string_equal(got, "ERR:t:Too many arguments|");
		free(got);
		buf_free(&b);
	}
}

static void
test_command_name(void **state)
{
	struct imap_parser_limits lim;
	struct imap_parser *p;
	const char *in = "t1 append INBOX {5}\r\n";
	size_t used;

	(void)state;
	imap_parser_limits_preauth(&lim);
	p = imap_parser_new(&lim);
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, strlen(in),
	    &used), IMAP_PARSE_CONTINUE);
	assert_string_equal(imap_parser_command(p), "append");
	assert_string_equal(imap_parser_tag(p), "t1");
	imap_parser_reset(p);
	assert_string_equal(imap_parser_command(p), "");
	assert_true(imap_parser_idle(p));
	imap_parser_free(p);
}

struct scase {
	const char *in;
	uint32_t star;
	const char *want;	/* "lo-hi,..." or NULL for an error */
};

static const struct scase scases[] = {
	{ "1", 10, "1-1" },
	{ "1:*", 10, "1-10" },
	{ "*:3", 10, "3-10" },
	{ "5,1:3,4", 10, "1-5" },
	{ "1,3,5", 10, "1-1,3-3,5-5" },
	{ "4294967295", 10, "4294967295-4294967295" },
	{ "1:4294967295,7", 10, "1-4294967295" },
	{ "4294967296", 10, NULL },
	{ "0", 10, NULL },
	{ "0:5", 10, NULL },
	{ "", 10, NULL },
	{ "1,", 10, NULL },
	{ ",1", 10, NULL },
	{ "1::2", 10, NULL },
	{ "-1", 10, NULL },
	{ "a", 10, NULL },
	{ "01", 10, NULL },
	{ "1:*", 0, "0-1" },
};

static void
test_seqset(void **state)
{
	size_t i, k;

	(void)state;
	for (i = 0; i < sizeof(scases) / sizeof(scases[0]); i++) {
		struct store_uid_range *r;
		size_t n;
		const char *err;
		int rc = imap_seqset_parse(scases[i].in, scases[i].star, &r,
		    &n, &err);
		struct buf b;

		if (scases[i].want == NULL) {
			if (rc != -1)
				fail_msg("seqset %s accepted", scases[i].in);
			continue;
		}
		assert_int_equal(rc, 0);
		buf_init(&b, BUF_UNBOUNDED);
		for (k = 0; k < n; k++)
			buf_printf(&b, "%s%u-%u", k ? "," : "", r[k].lo,
			    r[k].hi);
		if (strcmp(buf_str(&b), scases[i].want) != 0)
			fail_msg("seqset %s -> %s", scases[i].in, buf_str(&b));
		assert_true(imap_seqset_contains(r, n, r[0].lo));
		buf_free(&b);
		free(r);
	}
}

static void
test_seqset_max(void **state)
{
	struct buf b;
	struct store_uid_range *r;
	size_t n, i;
	const char *err;

	(void)state;
	for (i = IMAP_SEQSET_RANGES_MAX - 1; i <= IMAP_SEQSET_RANGES_MAX + 1;
	    i++) {
		size_t k;

		buf_init(&b, BUF_UNBOUNDED);
		for (k = 0; k < i; k++)
			buf_printf(&b, "%s%zu", k ? "," : "", 2 * k + 1);
		if (i <= IMAP_SEQSET_RANGES_MAX) {
			assert_int_equal(imap_seqset_parse(buf_str(&b), 1,
			    &r, &n, &err), 0);
			assert_int_equal(n, i);
			assert_true(imap_seqset_contains(r, n, 2 * i - 1));
			assert_false(imap_seqset_contains(r, n, 2 * i));
			free(r);
		} else
			assert_int_equal(imap_seqset_parse(buf_str(&b), 1,
			    &r, &n, &err), -1);
		buf_free(&b);
	}
}

struct ucase {
	const char *utf7;
	const char *utf8;	/* NULL: utf7 is invalid */
};

static const struct ucase ucases[] = {
	{ "INBOX", "INBOX" },
	{ "&-", "&" },
	{ "a&-b", "a&b" },
	{ "&ZeVnLIqe-", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },
	{ "&U,BTFw-", "\xe5\x8f\xb0\xe5\x8c\x97" },
	{ "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
	    "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },
	{ "&2D3eAQ-", "\xf0\x9f\x98\x81" },	/* surrogate pair */
	{ "&AGE-", NULL },		/* 'a' encoded: not shortest */
	{ "&", NULL },
	{ "&Zm", NULL },
	{ "&A-", NULL },
	{ "&2D0-", NULL },		/* lone high surrogate */
	{ "&3gE-", NULL },		/* lone low surrogate */
	{ "&ZeW-", NULL },		/* non-zero padding bits */
	{ "&ZeVnLIqe-&U,BTFw-", NULL },	/* two runs back to back */
	{ "\xe6\x97\xa5", NULL },	/* 8-bit */
	{ "&Ze!-", NULL },
};

static void
test_utf7(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ucases) / sizeof(ucases[0]); i++) {
		struct buf b;
		const char *err;
		int rc;

		buf_init(&b, BUF_UNBOUNDED);
		rc = imap_utf7_to_utf8(ucases[i].utf7, &b, &err);
		if (ucases[i].utf8 == NULL) {
			if (rc != -1)
				fail_msg("utf7 %s accepted", ucases[i].utf7);
			buf_free(&b);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_string_equal(buf_str(&b), ucases[i].utf8);
		buf_reset(&b);
		assert_int_equal(imap_utf8_to_utf7(ucases[i].utf8, &b, &err),
		    0);
		assert_string_equal(buf_str(&b), ucases[i].utf7);
		buf_free(&b);
	}
}

static void
test_utf8_and_quote(void **state)
{
	struct buf b;
	const char *err;

	(void)state;
	assert_true(imap_utf8_valid((const uint8_t *)"\xe4\xb8\xad", 3));
	assert_false(imap_utf8_valid((const uint8_t *)"\xc0\xaf", 2));
	assert_false(imap_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));
	assert_false(imap_utf8_valid((const uint8_t *)"\xe4\xb8", 2));
	buf_init(&b, BUF_UNBOUNDED);
	assert_int_equal(imap_utf8_to_utf7("\xc0\xaf", &b, &err), -1);
	imap_append_string(&b, "a\"b\\c", 0);
	assert_string_equal(buf_str(&b), "\"a\\\"b\\\\c\"");
	buf_reset(&b);
	imap_append_string(&b, "a\r\nb", 0);
	assert_string_equal(buf_str(&b), "{4}\r\na\r\nb");
	buf_reset(&b);
	imap_append_string(&b, "\xe4\xb8\xad", 0);
	assert_string_equal(buf_str(&b), "{3}\r\n\xe4\xb8\xad");
	buf_reset(&b);
	imap_append_string(&b, "\xe4\xb8\xad", 1);
	assert_string_equal(buf_str(&b), "\"\xe4\xb8\xad\"");
	buf_reset(&b);
	imap_append_string(&b, NULL, 0);
	assert_string_equal(buf_str(&b), "NIL");
	buf_free(&b);
}

/* ---- the APPEND literal hook ---- */

enum hook_decision { HOOK_INLINE, HOOK_SPOOL, HOOK_DISCARD, HOOK_NONE };

static const struct hook_case {
	const char *in;
	enum hook_decision decide;
	int nlit;		/* IMAP_PARSE_LITERAL results expected */
	int ncont;		/* of which synchronising */
	const char *failed;	/* imap_parser_failed() at OK, or NULL */
	const char *spooled;	/* bytes expected in the spool file */
	size_t last_len;	/* len of the last argument */
} hook_cases[] = {
	{ "a APPEND INBOX {5}\r\nhello\r\n", HOOK_INLINE, 1, 1, NULL,
	  NULL, 5 },
	{ "a APPEND INBOX {5+}\r\nhello\r\n", HOOK_SPOOL, 1, 0, NULL,
	  "hello", 5 },
	{ "a APPEND INBOX (\\Seen) {3}\r\nabc {2+}\r\nde\r\n", HOOK_SPOOL,
	  2, 1, NULL, "abcde", 2 },
	{ "a APPEND INBOX {5+}\r\nhello {2+}\r\nxy\r\n", HOOK_DISCARD, 2,
	  0, "[TOOBIG] x", NULL, 0 },
	/* No decision: inline when it fits append_max, else dropped. */
	{ "a APPEND INBOX {4+}\r\nabcd\r\n", HOOK_NONE, 1, 0, NULL, NULL,
	  4 },
	{ "a APPEND INBOX {200+}\r\n"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "012345678901234567890123456789012345678901234567890123456789\r\n",
	  HOOK_NONE, 1, 0, "[TOOBIG] Message too large", NULL, 0 },
	/* Zero-length and non-APPEND literals never reach the hook. */
	{ "a APPEND INBOX {0+}\r\n\r\n", HOOK_INLINE, 0, 0, NULL, NULL, 0 },
	{ "a LOGIN u {1+}\r\np\r\n", HOOK_INLINE, 0, 0, NULL, NULL, 1 },
};

static void
run_hook_case(const struct hook_case *c, int bytewise)
{
	struct imap_parser_limits lim;
	struct imap_parser *p;
	size_t off = 0, len = strlen(c->in), n = 0;
	int nlit = 0, ncont = 0, ok = 0;
	FILE *f = tmpfile();
	const struct imap_arg *a = NULL;

	assert_non_null(f);
	imap_parser_limits_auth(&lim, 100);
	p = imap_parser_new(&lim);
	imap_parser_set_append_hook(p, 1);
	while (off < len && !ok) {
		size_t used, chunk = bytewise ? 1 : len - off;
		enum imap_parse_result r;

		r = imap_parser_feed(p, (const uint8_t *)c->in + off, chunk,
		    &used);
		off += used;
		switch (r) {
		case IMAP_PARSE_LITERAL:
			nlit++;
			ncont += imap_parser_literal_sync(p);
			if (c->decide == HOOK_INLINE)
				assert_int_equal(imap_parser_literal_inline(p),
				    0);
			else if (c->decide == HOOK_SPOOL)
				imap_parser_literal_spool(p, fileno(f),
				    (uint64_t)lseek(fileno(f), 0, SEEK_CUR));
			else if (c->decide == HOOK_DISCARD)
				imap_parser_literal_discard(p, "[TOOBIG] x");
			break;
		case IMAP_PARSE_OK:
			ok = 1;
			a = imap_parser_args(p, &n);
			break;
		case IMAP_PARSE_MORE:
		case IMAP_PARSE_CONTINUE:
			break;
		default:
			fail_msg("unexpected result %d for %s", (int)r, c->in);
		}
	}
	assert_true(ok);
	assert_int_equal(nlit, c->nlit);
	assert_int_equal(ncont, c->ncont);
	if (c->failed == NULL)
		assert_null(imap_parser_failed(p));
	else
		assert_string_equal(imap_parser_failed(p), c->failed);
	if (c->failed == NULL) {
		assert_int_equal(a[n - 1].type, IMAP_ARG_LITERAL);
		assert_int_equal(a[n - 1].len, c->last_len);
		assert_int_equal(a[n - 1].spooled, c->spooled != NULL);
		if (c->spooled != NULL) {
			assert_int_equal(a[n - 1].fd, fileno(f));
			/* Literals of one command share the file. */
			assert_int_equal(a[n - 1].off,
			    strlen(c->spooled) - c->last_len);
		}
	}
	if (c->spooled != NULL) {
		char got[64];
		size_t k;

		rewind(f);
		k = fread(got, 1, sizeof(got) - 1, f);
		got[k] = '\0';
		assert_string_equal(got, c->spooled);
	}
	imap_parser_free(p);
	fclose(f);
}

static void
test_append_hook(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(hook_cases) / sizeof(hook_cases[0]); i++) {
		run_hook_case(&hook_cases[i], 0);
		run_hook_case(&hook_cases[i], 1);
	}
}

/* Without the hook, APPEND literals keep the old limits (BAD [TOOBIG]). */
static void
test_append_hook_off(void **state)
{
	struct imap_parser_limits lim;
	struct imap_parser *p;
	const char *in = "a APPEND INBOX {101}\r\n";
	size_t used;

	(void)state;
	imap_parser_limits_auth(&lim, 100);
	p = imap_parser_new(&lim);
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, strlen(in),
	    &used), IMAP_PARSE_ERROR);
	assert_true(imap_parser_error_toobig(p));
	imap_parser_set_append_hook(p, 1);
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, strlen(in),
	    &used), IMAP_PARSE_LITERAL);
	assert_int_equal(imap_parser_literal_size(p), 101);
	assert_int_equal(imap_parser_literal_inline(p), -1);
	imap_parser_reset(p);
	assert_true(imap_parser_idle(p));
	imap_parser_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parser_table),
		cmocka_unit_test(test_literal_limits),
		cmocka_unit_test(test_line_limits),
		cmocka_unit_test(test_depth_limits),
		cmocka_unit_test(test_args_limit),
		cmocka_unit_test(test_command_name),
		cmocka_unit_test(test_seqset),
		cmocka_unit_test(test_seqset_max),
		cmocka_unit_test(test_utf7),
		cmocka_unit_test(test_utf8_and_quote),
		cmocka_unit_test(test_append_hook),
		cmocka_unit_test(test_append_hook_off),
	};

	return cmocka_run_group_tests_name("imap_parser", tests, NULL, NULL);
}
