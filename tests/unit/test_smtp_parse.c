/*
 * Unit tests for smtpd/smtp_parse.c: command verbs and control bytes;
 * paths (relay hacks, source routes, quoted local parts, literals,
 * trailing dots, UTF-8) and ESMTP parameters, table-driven; the DATA
 * reader fed whole, byte by byte and in random splits, with the smuggling
 * cases; line and size limits at N-1, N and N+1; the From: header.
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
#include "smtp_parse.h"
#include "xmalloc.h"

static void
test_cmd(void **state)
{
	static const struct {
		const char *line;
		int cmd;
		const char *arg;
	} cases[] = {
		{ "EHLO client.example", SMTP_CMD_EHLO, "client.example" },
		{ "ehlo x", SMTP_CMD_EHLO, "x" },
		{ "HELO", SMTP_CMD_HELO, "" },
		{ "MAIL FROM:<a@b.c>", SMTP_CMD_MAIL, "FROM:<a@b.c>" },
		{ "rcpt TO:<a@b.c>", SMTP_CMD_RCPT, "TO:<a@b.c>" },
		{ "DATA", SMTP_CMD_DATA, "" },
		{ "BDAT 10 LAST", SMTP_CMD_BDAT, "10 LAST" },
		{ "StartTLS", SMTP_CMD_STARTTLS, "" },
		{ "AUTH PLAIN", SMTP_CMD_AUTH, "PLAIN" },
		{ "QUIT", SMTP_CMD_QUIT, "" },
		{ "RSET", SMTP_CMD_RSET, "" },
		{ "NOOP x", SMTP_CMD_NOOP, "x" },
		{ "VRFY a", SMTP_CMD_VRFY, "a" },
		{ "HELP", SMTP_CMD_HELP, "" },
		{ "DATAX", SMTP_CMD_UNKNOWN, "" },
		{ "MAILFROM:<a@b>", SMTP_CMD_UNKNOWN, "" },
		{ "", SMTP_CMD_UNKNOWN, "" },
		{ "GET / HTTP/1.0", SMTP_CMD_UNKNOWN, "" },
		{ "NOOP \x01", -1, "" },
		{ "NOOP a\rb", -1, "" },
		{ "NOOP a\nb", -1, "" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *arg = NULL;
		int r = smtp_cmd_parse(cases[i].line, strlen(cases[i].line),
		    &arg);

		if (r != cases[i].cmd)
			fail_msg("case %zu '%s': got %d", i, cases[i].line, r);
		if (r > 0)
			assert_string_equal(arg, cases[i].arg);
	}
	/* An embedded NUL. */
	{
		const char line[] = "NOOP a\0b";
		const char *arg;

		assert_int_equal(smtp_cmd_parse(line, sizeof(line) - 1, &arg),
		    -1);
	}
	assert_string_equal(smtp_cmd_name(SMTP_CMD_BDAT), "BDAT");
}

static void
test_path(void **state)
{
	static const struct {
		const char *arg;
		int rcpt;
		int utf8;
		enum smtp_path_error want;
		const char *addr;
	} cases[] = {
		{ "FROM:<a@b.example>", 0, 0, SMTP_PATH_OK, "a@b.example" },
		{ "from: <A.B@EXAMPLE.cn>", 0, 0, SMTP_PATH_OK,
		  "A.B@example.cn" },
		{ "FROM:<>", 0, 0, SMTP_PATH_OK, "" },
		{ "TO:<>", 1, 0, SMTP_PATH_NULL, NULL },
		{ "TO:<Postmaster>", 1, 0, SMTP_PATH_OK, "postmaster" },
		{ "TO:<user@local.example>", 1, 0, SMTP_PATH_OK,
		  "user@local.example" },
		{ "TO:user@local.example", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user@local.example", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user%other.example@local.example>", 1, 0,
		  SMTP_PATH_RELAY_HACK, NULL },
		{ "TO:<other.example!user@local.example>", 1, 0,
		  SMTP_PATH_RELAY_HACK, NULL },
		{ "TO:<other.example!user>", 1, 0, SMTP_PATH_RELAY_HACK, NULL },
		{ "TO:<@local.example:user@other.example>", 1, 0,
		  SMTP_PATH_ROUTE, NULL },
		{ "TO:<@a,@b:user@other.example>", 1, 0, SMTP_PATH_ROUTE,
		  NULL },
		{ "TO:<\"user@other.example\"@local.example>", 1, 0,
		  SMTP_PATH_QUOTED, NULL },
		{ "TO:<\"x\"@local.example>", 1, 0, SMTP_PATH_QUOTED, NULL },
		{ "TO:<user@other.example@local.example>", 1, 0,
		  SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user@@local.example>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user@local.example.>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user@local..example>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user@[127.0.0.1]>", 1, 0, SMTP_PATH_LITERAL, NULL },
		{ "TO:<user@[IPv6:::1]>", 1, 0, SMTP_PATH_LITERAL, NULL },
		{ "TO:<.user@local.example>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user.@local.example>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<us..er@local.example>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<us er@local.example>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user@-x.example>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user@x-.example>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user@x_y.example>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<@local.example>", 1, 0, SMTP_PATH_ROUTE, NULL },
		{ "TO:<user>", 1, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<张三@local.example>", 1, 0, SMTP_PATH_UTF8, NULL },
		{ "TO:<张三@local.example>", 1, 1, SMTP_PATH_OK,
		  "张三@local.example" },
		{ "TO:<\xe5\xbc@local.example>", 1, 1, SMTP_PATH_UTF8, NULL },
		{ "TO:<\xc0\xaf@local.example>", 1, 1, SMTP_PATH_UTF8, NULL },
		{ "TO:<\xed\xa0\x80@local.example>", 1, 1, SMTP_PATH_UTF8,
		  NULL },
		{ "FROM:<张三@local.example>", 0, 0, SMTP_PATH_UTF8, NULL },
		{ "FROM:<张三@local.example> SMTPUTF8", 0, 0, SMTP_PATH_OK,
		  "张三@local.example" },
		{ "FROM:<a@b.example> SIZE=1000 BODY=8BITMIME", 0, 0,
		  SMTP_PATH_OK, "a@b.example" },
		{ "FROM:<a@b.example> size=1000 body=7bit ret=HDRS envid=x+2B1",
		  0, 0, SMTP_PATH_OK, "a@b.example" },
		{ "FROM:<a@b.example> SIZE=", 0, 0, SMTP_PATH_PARAM, NULL },
		{ "FROM:<a@b.example> SIZE=-1", 0, 0, SMTP_PATH_PARAM, NULL },
		{ "FROM:<a@b.example> SIZE=99999999999999999999999", 0, 0,
		  SMTP_PATH_PARAM, NULL },
		{ "FROM:<a@b.example> SIZE=1 SIZE=2", 0, 0, SMTP_PATH_PARAM,
		  NULL },
		{ "FROM:<a@b.example> BODY=BINARYMIME", 0, 0, SMTP_PATH_PARAM,
		  NULL },
		{ "FROM:<a@b.example> SMTPUTF8=yes", 0, 0, SMTP_PATH_PARAM,
		  NULL },
		{ "FROM:<a@b.example> RET=ALL", 0, 0, SMTP_PATH_DSN, NULL },
		{ "FROM:<a@b.example> RET=FULL RET=HDRS", 0, 0, SMTP_PATH_DSN,
		  NULL },
		{ "FROM:<a@b.example> ENVID=a+2", 0, 0, SMTP_PATH_DSN, NULL },
		{ "FROM:<a@b.example> ENVID=a+2b", 0, 0, SMTP_PATH_DSN, NULL },
		{ "FROM:<a@b.example> ENVID=a+0A", 0, 0, SMTP_PATH_DSN, NULL },
		{ "FROM:<a@b.example> ENVID=a+", 0, 0, SMTP_PATH_DSN, NULL },
		{ "FROM:<a@b.example> ENVID=\xe4\xb8\x89", 0, 0, SMTP_PATH_DSN,
		  NULL },
		{ "FROM:<a@b.example> ENVID=a+20b", 0, 0, SMTP_PATH_OK,
		  "a@b.example" },
		{ "FROM:<a@b.example> XFOO", 0, 0, SMTP_PATH_PARAM, NULL },
		{ "FROM:<a@b.example> AUTH=<>", 0, 0, SMTP_PATH_OK,
		  "a@b.example" },
		{ "FROM:<a@b.example>junk", 0, 0, SMTP_PATH_SYNTAX, NULL },
		{ "TO:<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b.example",
		  1, 0, SMTP_PATH_OK, "a@b.example" },
		{ "TO:<a@b.example> NOTIFY=NEVER", 1, 0, SMTP_PATH_OK,
		  "a@b.example" },
		{ "TO:<a@b.example> NOTIFY=NEVER,DELAY", 1, 0, SMTP_PATH_DSN,
		  NULL },
		{ "TO:<a@b.example> NOTIFY=SUCCESS,", 1, 0, SMTP_PATH_DSN,
		  NULL },
		{ "TO:<a@b.example> NOTIFY=SOMETIMES", 1, 0, SMTP_PATH_DSN,
		  NULL },
		{ "TO:<a@b.example> NOTIFY=SUCCESS NOTIFY=DELAY", 1, 0,
		  SMTP_PATH_DSN, NULL },
		{ "TO:<a@b.example> ORCPT=nosemicolon", 1, 0, SMTP_PATH_DSN,
		  NULL },
		{ "TO:<a@b.example> ORCPT=;a@b", 1, 0, SMTP_PATH_DSN, NULL },
		{ "TO:<a@b.example> ORCPT=rfc822;a+", 1, 0, SMTP_PATH_DSN,
		  NULL },
		{ "TO:<a@b.example> ORCPT=rfc822;a+2Bb@c", 1, 0, SMTP_PATH_OK,
		  "a@b.example" },
		{ "TO:<a@b.example> ORCPT=utf-8;\\x{5F20}@c", 1, 0, SMTP_PATH_OK,
		  "a@b.example" },
		{ "TO:<a@b.example> ORCPT=utf-8;\\x{41}@c", 1, 0, SMTP_PATH_DSN,
		  NULL },
		{ "TO:<a@b.example> ORCPT=utf-8;\xe5\xbc\xa0@c", 1, 0,
		  SMTP_PATH_DSN, NULL },
		{ "TO:<a@b.example> ORCPT=utf-8;\xe5\xbc\xa0@c", 1, 1,
		  SMTP_PATH_OK, "a@b.example" },
		{ "TO:<a@b.example> SIZE=10", 1, 0, SMTP_PATH_PARAM, NULL },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_path path;
		struct smtp_mail_params mp;
		struct smtp_rcpt_params rp;
		const char *what = NULL;
		enum smtp_path_error e;

		e = smtp_path_parse(cases[i].arg, cases[i].rcpt,
		    cases[i].utf8, &path, &mp, &rp, &what);
		if (e != cases[i].want)
			fail_msg("case %zu '%s': got %d (%s) want %d", i,
			    cases[i].arg, e, what, cases[i].want);
		if (e == SMTP_PATH_OK && cases[i].addr != NULL)
			assert_string_equal(path.addr, cases[i].addr);
		if (e != SMTP_PATH_OK)
			assert_true(what != NULL && what[0] != '\0');
	}
}

static void
test_path_params_values(void **state)
{
	struct smtp_path path;
	struct smtp_mail_params mp;
	struct smtp_rcpt_params rp;
	const char *what;

	(void)state;
	assert_int_equal(smtp_path_parse("FROM:<a@b.example> SIZE=1234 "
	    "BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=QQ314159", 0, 0, &path,
	    &mp, &rp, &what), SMTP_PATH_OK);
	assert_true(mp.has_size);
	assert_int_equal(mp.size, 1234);
	assert_int_equal(mp.body, SMTP_BODY_8BITMIME);
	assert_true(mp.smtputf8);
	assert_int_equal(mp.ret, SMTP_RET_FULL);
	assert_string_equal(mp.envid, "QQ314159");
	assert_int_equal(smtp_path_parse("TO:<a@b.example> "
	    "NOTIFY=FAILURE,DELAY ORCPT=rfc822;x@y", 1, 0, &path, &mp, &rp,
	    &what), SMTP_PATH_OK);
	assert_int_equal(rp.notify, SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
	assert_string_equal(rp.orcpt, "rfc822;x@y");
}

/* Limits: local part 64, domain label 63, ENVID 100 at N-1, N, N+1. */
static void
test_path_limits(void **state)
{
	char arg[1024], local[128], label[128], envid[128];
	struct smtp_path path;
	struct smtp_mail_params mp;
	struct smtp_rcpt_params rp;
	const char *what;
	size_t n;

	(void)state;
	for (n = SMTP_LOCAL_MAX - 1; n <= SMTP_LOCAL_MAX + 1; n++) {
		memset(local, 'a', n);
		local[n] = '\0';
		snprintf(arg, sizeof(arg), "TO:<%s@x.example>", local);
		assert_int_equal(smtp_path_parse(arg, 1, 0, &path, &mp, &rp,
		    &what), n <= SMTP_LOCAL_MAX ? SMTP_PATH_OK :
		    SMTP_PATH_TOO_LONG);
	}
	for (n = 62; n <= 64; n++) {
		memset(label, 'b', n);
		label[n] = '\0';
		snprintf(arg, sizeof(arg), "TO:<a@%s.example>", label);
		assert_int_equal(smtp_path_parse(arg, 1, 0, &path, &mp, &rp,
		    &what), n <= 63 ? SMTP_PATH_OK : SMTP_PATH_TOO_LONG);
	}
	for (n = SMTP_ENVID_MAX - 1; n <= SMTP_ENVID_MAX + 1; n++) {
		memset(envid, 'e', n);
		envid[n] = '\0';
		snprintf(arg, sizeof(arg), "FROM:<a@b.example> ENVID=%s",
		    envid);
		assert_int_equal(smtp_path_parse(arg, 0, 0, &path, &mp, &rp,
		    &what), n <= SMTP_ENVID_MAX ? SMTP_PATH_OK :
		    SMTP_PATH_DSN);
	}
	/* ORCPT: the whole value "rfc822;..." at 499, 500, 501. */
	for (n = SMTP_ORCPT_MAX - 1; n <= SMTP_ORCPT_MAX + 1; n++) {
		char orcpt[SMTP_ORCPT_MAX + 8];

		memcpy(orcpt, "rfc822;", 7);
		memset(orcpt + 7, 'o', n - 7);
		orcpt[n] = '\0';
		snprintf(arg, sizeof(arg), "TO:<a@b.example> ORCPT=%s", orcpt);
		assert_int_equal(smtp_path_parse(arg, 1, 0, &path, &mp, &rp,
		    &what), n <= SMTP_ORCPT_MAX ? SMTP_PATH_OK :
		    SMTP_PATH_DSN);
		if (n <= SMTP_ORCPT_MAX)
			assert_string_equal(rp.orcpt, orcpt);
	}
}

/* xtext both ways, and ORCPT as the DSN's Original-Recipient shows it. */
static void
test_xtext(void **state)
{
	static const struct {
		const char *in;
		int rc;
		const char *out;
	} dec[] = {
		{ "abc", 0, "abc" },
		{ "a+2Bb+3Dc", 0, "a+b=c" },
		{ "a+20b", 0, "a b" },
		{ "a+2b", -1, NULL },		/* lower-case hex */
		{ "a+2", -1, NULL },
		{ "a=b", -1, NULL },
		{ "a+0Ab", -1, NULL },		/* decodes to a control */
		{ "a+E4", -1, NULL },		/* not ASCII */
		{ "", -1, NULL },
	}, orc[] = {
		{ "rfc822;a+2Bb@c.example", 0, "rfc822;a+b@c.example" },
		{ "RFC822;x@y", 0, "RFC822;x@y" },
		{ "utf-8;\\x{5F20}@c", 0, "utf-8;\\x{5F20}@c" },
		{ "utf-8;\xe5\xbc\xa0\xe4\xb8\x89@c", 0,
		  "utf-8;\\x{5F20}\\x{4E09}@c" },
		{ "nosemicolon", -1, NULL },
	};
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(dec) / sizeof(dec[0]); i++) {
		assert_int_equal(smtp_xtext_decode(dec[i].in, out,
		    sizeof(out)), dec[i].rc);
		if (dec[i].rc == 0)
			assert_string_equal(out, dec[i].out);
	}
	for (i = 0; i < sizeof(orc) / sizeof(orc[0]); i++) {
		assert_int_equal(smtp_orcpt_text(orc[i].in, out, sizeof(out)),
		    orc[i].rc);
		if (orc[i].rc == 0)
			assert_string_equal(out, orc[i].out);
	}
	assert_int_equal(smtp_xtext_encode("a+b=c d", out, sizeof(out)), 0);
	assert_string_equal(out, "a+2Bb+3Dc+20d");
	assert_int_equal(smtp_xtext_decode(out, out + 32, 32), 0);
	assert_string_equal(out + 32, "a+b=c d");
	/* Room: "a+2B" needs 5 bytes with the NUL (N-1, N). */
	assert_int_equal(smtp_xtext_encode("a+", out, 4), -1);
	assert_int_equal(smtp_xtext_encode("a+", out, 5), 0);
	assert_int_equal(smtp_xtext_decode("abc", out, 3), -1);
	assert_int_equal(smtp_xtext_decode("abc", out, 4), 0);
}

/* Feed s in pieces given by mode: 0 whole, 1 byte by byte, 2 random. */
static enum smtp_data_result
feed(const char *s, size_t len, int mode, size_t max, struct buf *out,
    struct smtp_data *d, size_t *consumed_r)
{
	size_t off = 0, used;
	enum smtp_data_result r = SMTP_DATA_MORE;

	buf_init(out, max);
	smtp_data_init(d);
	while (off < len) {
		size_t n = len - off;

		if (mode == 1)
			n = 1;
		else if (mode == 2)
			n = 1 + (size_t)(rand() % 7) < n ?
			    1 + (size_t)(rand() % 7) : n;
		r = smtp_data_feed(d, (const uint8_t *)s + off, n, out, &used);
		off += used;
		if (r != SMTP_DATA_MORE)
			break;
		assert_int_equal(used, n);
	}
	*consumed_r = off;
	return r;
}

static void
test_data(void **state)
{
	static const struct {
		const char *in;
		enum smtp_data_result want;
		const char *out;	/* for END */
		size_t consumed;	/* for END (0: all) and BARE */
		unsigned faults;
	} cases[] = {
		{ "hello\r\n.\r\n", SMTP_DATA_END, "hello\r\n", 0, 0 },
		{ ".\r\n", SMTP_DATA_END, "", 0, 0 },
		{ "a\r\n..b\r\n.\r\n", SMTP_DATA_END, "a\r\n.b\r\n", 0, 0 },
		{ "a\r\n...\r\n.\r\nMAIL", SMTP_DATA_END, "a\r\n..\r\n", 11,
		  0 },
		{ "\r\n\r\n.\r\n", SMTP_DATA_END, "\r\n\r\n", 0, 0 },
		{ "a\r\n.x\r\n.\r\n", SMTP_DATA_END, "a\r\nx\r\n", 0, 0 },
		{ "a\r\n.\r", SMTP_DATA_MORE, NULL, 0, 0 },
		/* smuggling */
		{ "a\n.\n", SMTP_DATA_BARE, NULL, 1, 0 },
		{ "a\r\n.\n", SMTP_DATA_BARE, NULL, 4, 0 },
		{ "a\n.\r\n", SMTP_DATA_BARE, NULL, 1, 0 },
		{ "a\r.\r", SMTP_DATA_BARE, NULL, 2, 0 },
		{ "a\r\r\n.\r\r\n", SMTP_DATA_BARE, NULL, 2, 0 },
		{ "a\r\n.\r\r\n", SMTP_DATA_BARE, NULL, 5, 0 },
		{ "\n.\r\n", SMTP_DATA_BARE, NULL, 0, 0 },
		{ "x\r\n.\rx\r\n.\r\n", SMTP_DATA_BARE, NULL, 5, 0 },
		{ "a\0b\r\n.\r\n", SMTP_DATA_END, NULL, 0, SMTP_DATA_F_NUL },
	};
	size_t i;
	int mode;

	(void)state;
	srand(42);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].in);

		if (cases[i].faults & SMTP_DATA_F_NUL)
			len = 8;
		for (mode = 0; mode < 3; mode++) {
			struct smtp_data d;
			struct buf out;
			size_t consumed;
			enum smtp_data_result r;

			r = feed(cases[i].in, len, mode, 1 << 20, &out, &d,
			    &consumed);
			if (r != cases[i].want)
				fail_msg("case %zu mode %d: got %d", i, mode,
				    r);
			if (r == SMTP_DATA_END && cases[i].out != NULL) {
				assert_int_equal(out.len,
				    strlen(cases[i].out));
				assert_memory_equal(out.data, cases[i].out,
				    out.len);
			}
			if (r != SMTP_DATA_MORE)
				assert_int_equal(consumed,
				    cases[i].consumed ||
				    r == SMTP_DATA_BARE ? cases[i].consumed :
				    len);
			assert_int_equal(d.faults, cases[i].faults);
			buf_free(&out);
		}
	}
}

/*
 * The reader of RFC 5321 4.5.2 one byte at a time, as plainly as it can be
 * written: the reference the real reader (which moves whole runs of
 * ordinary lines at once) must match byte for byte.
 */
struct ref_data {
	int state;		/* 0 BOL, 1 DOT, 2 DOTCR, 3 MID, 4 CR */
	size_t line_len;
	unsigned faults;
	uint64_t size;
};

static enum smtp_data_result
ref_feed(struct ref_data *d, const uint8_t *p, size_t n, struct buf *out,
    size_t *used_r)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (d->state == 0) {
			d->line_len = 0;
			d->state = c == '.' ? 1 : 3;
			if (c == '.') {
				d->line_len++;
				continue;
			}
		} else if (d->state == 1) {
			if (c == '\r') {
				d->state = 2;
				continue;
			}
			d->state = 3;
		} else if (d->state == 2) {
			*used_r = c == '\n' ? i + 1 : i;
			return c == '\n' ? SMTP_DATA_END : SMTP_DATA_BARE;
		} else if (d->state == 4) {
			if (c != '\n') {
				*used_r = i;
				return SMTP_DATA_BARE;
			}
			d->size += 2;
			if (!(d->faults & SMTP_DATA_F_TOO_BIG) &&
			    buf_append(out, "\r\n", 2) < 0)
				d->faults |= SMTP_DATA_F_TOO_BIG;
			d->state = 0;
			continue;
		}
		/* state 3, the byte inside a line */
		if (c == '\r') {
			d->state = 4;
			continue;
		}
		if (c == '\n') {
			*used_r = i;
			return SMTP_DATA_BARE;
		}
		if (c == '\0')
			d->faults |= SMTP_DATA_F_NUL;
		d->size++;
		if (!(d->faults & SMTP_DATA_F_TOO_BIG) &&
		    buf_append(out, &c, 1) < 0)
			d->faults |= SMTP_DATA_F_TOO_BIG;
		if (++d->line_len > SMTP_TEXT_LINE_MAX)
			d->faults |= SMTP_DATA_F_LONG_LINE;
	}
	*used_r = n;
	return SMTP_DATA_MORE;
}

/*
 * Random streams of lines (ordinary, empty, dot-stuffed, long, with NULs,
 * bare CRs and LFs, "." alone) in random pieces: the real reader and the
 * reference agree on the result, the bytes consumed, the message, its size
 * and its faults.
 */
static void
test_data_reference(void **state)
{
	static const char *pieces[] = {
		"abc", "x", ".", "..", "\r\n", "\r", "\n", "\0", "\r\n.",
		"\r\n.\r\n", "\r\n..", "\r\r\n", ".\r", "\n.\n",
	};
	uint8_t *in = xmalloc(8192);
	int round;

	(void)state;
	srand(7);
	for (round = 0; round < 20000; round++) {
		size_t len = 0, off, used_a = 0, used_b = 0, max;
		struct smtp_data a;
		struct ref_data b = { 0, 0, 0, 0 };
		struct buf oa, ob;
		enum smtp_data_result ra = SMTP_DATA_MORE, rb = SMTP_DATA_MORE;

		while (len < 4000) {
			int k = rand() % 24;

			if (k < 10) {	/* an ordinary line */
				size_t n = (size_t)(rand() % 90);

				if (rand() % 200 == 0)
					n = SMTP_TEXT_LINE_MAX - 2 +
					    (size_t)(rand() % 5);
				/* letters, and bytes one bit from the
				 * special ones (the word-at-a-time scan) */
				static const uint8_t near[] = { 0x8d, 0x8a,
				    0x80, 0xff, 0x0c, 0x0e, 0x0b, 0x01 };

				memset(in + len, rand() % 3 == 0 ?
				    near[rand() % 8] : 'a' + rand() % 26, n);
				if (n > 0 && rand() % 2 == 0)
					in[len + (size_t)rand() % n] =
					    near[rand() % 8];
				memcpy(in + len + n, "\r\n", 2);
				len += n + 2;
			} else {
				const char *pc = pieces[rand() %
				    (int)(sizeof(pieces) / sizeof(pieces[0]))];
				size_t n = pc[0] == '\0' ? 1 : strlen(pc);

				memcpy(in + len, pc, n);
				len += n;
			}
		}
		max = rand() % 4 == 0 ? (size_t)(rand() % 3000) : 1 << 20;
		buf_init(&oa, max);
		buf_init(&ob, max);
		smtp_data_init(&a);
		for (off = 0; off < len && ra == SMTP_DATA_MORE;
		    off += used_a) {
			size_t n = len - off, cut = 1 + (size_t)(rand() % 600);

			if (rand() % 3 != 0 && cut < n)
				n = cut;
			ra = smtp_data_feed(&a, in + off, n, &oa, &used_a);
			rb = ref_feed(&b, in + off, n, &ob, &used_b);
			if (ra != rb || used_a != used_b)
				fail_msg("round %d at %zu: result %d/%d used "
				    "%zu/%zu", round, off, ra, rb, used_a,
				    used_b);
		}
		assert_int_equal(a.faults, b.faults);
		assert_int_equal(a.size, b.size);
		/* Past the size limit the message is refused, not kept. */
		if (!(a.faults & SMTP_DATA_F_TOO_BIG)) {
			assert_int_equal(oa.len, ob.len);
			if (oa.len > 0)
				assert_memory_equal(oa.data, ob.data, oa.len);
		}
		buf_free(&oa);
		buf_free(&ob);
	}
	free(in);
}

/* Text line limit 998 at N-1, N, N+1 (a stuffed dot counts on the wire). */
static void
test_data_line_limit(void **state)
{
	char *msg = xmalloc(SMTP_TEXT_LINE_MAX + 16);
	size_t n;
	int dot;

	(void)state;
	for (dot = 0; dot < 2; dot++) {
		for (n = SMTP_TEXT_LINE_MAX - 1; n <= SMTP_TEXT_LINE_MAX + 1;
		    n++) {
			struct smtp_data d;
			struct buf out;
			size_t used;

			memset(msg, 'x', n);
			if (dot)
				msg[0] = '.';
			memcpy(msg + n, "\r\n.\r\n", 5);
			buf_init(&out, BUF_UNBOUNDED);
			smtp_data_init(&d);
			assert_int_equal(smtp_data_feed(&d, (uint8_t *)msg,
			    n + 5, &out, &used), SMTP_DATA_END);
			assert_int_equal(!!(d.faults & SMTP_DATA_F_LONG_LINE),
			    n > SMTP_TEXT_LINE_MAX);
			buf_free(&out);
		}
	}
	free(msg);
}

/* Size: a buffer max of N keeps N bytes; N+1 sets TOO_BIG but ends. */
static void
test_data_size(void **state)
{
	const char *in = "0123456789\r\n.\r\n";	/* 12 bytes kept */
	size_t max;

	(void)state;
	for (max = 11; max <= 13; max++) {
		struct smtp_data d;
		struct buf out;
		size_t used;

		for (int mode = 0; mode < 3; mode++) {
			assert_int_equal(feed(in, strlen(in), mode, max, &out,
			    &d, &used), SMTP_DATA_END);
			assert_int_equal(d.size, 12);
			assert_int_equal(!!(d.faults & SMTP_DATA_F_TOO_BIG),
			    max < 12);
			buf_free(&out);
		}
	}
}

static void
test_from(void **state)
{
	static const struct {
		const char *msg;
		int n;
		const char *a0;
		const char *a1;
	} cases[] = {
		{ "From: a@b.example\r\n\r\nbody", 1, "a@b.example", NULL },
		{ "Subject: x\r\nfrom: Alice <Alice@B.Example>\r\n\r\n", 1,
		  "Alice@b.example", NULL },
		{ "From: \"Doe, <John>\" <j@x.example>\r\n\r\n", 1,
		  "j@x.example", NULL },
		{ "From: j@x.example (John <Doe>)\r\n\r\n", 1, "j@x.example",
		  NULL },
		{ "From: a@x.example,\r\n b@y.example\r\n\r\n", 2,
		  "a@x.example", "b@y.example" },
		{ "From: =?UTF-8?B?5byg5LiJ?= <张三@x.example>\r\n\r\n", 1,
		  "张三@x.example", NULL },
		{ "Subject: no from\r\n\r\nFrom: a@b.example\r\n", 0, NULL,
		  NULL },
		{ "From: a@b.example\r\nFrom: c@d.example\r\n\r\n", -1, NULL,
		  NULL },
		{ "From: undisclosed:;\r\n\r\n", -1, NULL, NULL },
		{ "From: nobody\r\n\r\n", -1, NULL, NULL },
		{ "From: <a@b.example\r\n\r\n", -1, NULL, NULL },
		{ "From: \r\n\r\n", -1, NULL, NULL },
	};
	char addrs[SMTP_FROM_ADDRS_MAX][SMTP_PATH_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = smtp_header_from((const uint8_t *)cases[i].msg,
		    strlen(cases[i].msg), addrs, SMTP_FROM_ADDRS_MAX);

		if (n != cases[i].n)
			fail_msg("case %zu: got %d", i, n);
		if (n >= 1)
			assert_string_equal(addrs[0], cases[i].a0);
		if (n >= 2)
			assert_string_equal(addrs[1], cases[i].a1);
	}
	/* Address count limit at max-1, max, max+1 (max = 2 here). */
	assert_int_equal(smtp_header_from((const uint8_t *)
	    "From: a@x.example\r\n\r\n", 21, addrs, 2), 1);
	assert_int_equal(smtp_header_from((const uint8_t *)
	    "From: a@x.example, b@x.example\r\n\r\n", 34, addrs, 2), 2);
	assert_int_equal(smtp_header_from((const uint8_t *)
	    "From: a@x.example, b@x.example, c@x.example\r\n\r\n", 47,
	    addrs, 2), -1);
}

static void
test_utf8(void **state)
{
	(void)state;
	assert_true(smtp_utf8_valid((const uint8_t *)"abc", 3));
	assert_true(smtp_utf8_valid((const uint8_t *)"张三", 6));
	assert_true(smtp_utf8_valid((const uint8_t *)"\xf0\x9f\x98\x80", 4));
	assert_false(smtp_utf8_valid((const uint8_t *)"\xe5\xbc", 2));
	assert_false(smtp_utf8_valid((const uint8_t *)"\xc0\x80", 2));
	assert_false(smtp_utf8_valid((const uint8_t *)"\xe0\x80\x80", 3));
	assert_false(smtp_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));
	assert_false(smtp_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4));
	assert_false(smtp_utf8_valid((const uint8_t *)"\xff", 1));
}

static void
test_header_len(void **state)
{
	static const char m1[] = "Subject: x\r\nFrom: a@b\r\n\r\nbody\r\n\r\n";
	static const char m2[] = "Subject: no body\r\n";

	(void)state;
	/* up to and including the first blank line, not a later one */
	assert_int_equal(smtp_header_len((const uint8_t *)m1, sizeof(m1) - 1),
	    25);
	/* no blank line: the whole message */
	assert_int_equal(smtp_header_len((const uint8_t *)m2, sizeof(m2) - 1),
	    sizeof(m2) - 1);
	assert_int_equal(smtp_header_len((const uint8_t *)"\r\n\r", 3), 3);
	assert_int_equal(smtp_header_len((const uint8_t *)"", 0), 0);
}

static void
test_message_id(void **state)
{
	static const struct {
		const char *msg, *want;
	} cases[] = {
		{ "Message-ID: <a@b>\r\n\r\nbody\r\n", "<a@b>" },
		{ "Subject: x\r\nmessage-id:\r\n <folded@b>\r\n\r\n",
		  "<folded@b>" },
		{ "Subject: x\r\n\r\nMessage-ID: <in-body@b>\r\n", "" },
		{ "Subject: x\r\n X-Message-ID: <a@b>\r\n\r\n", "" },
		{ "Message-ID: no brackets\r\n\r\n", "" },
		{ "Message-ID: <>\r\n\r\n", "" },
		{ "Message-ID: <unterminated\r\n\r\n", "" },
		{ "Message-ID: <sp ace\x01@b>\r\n\r\n", "<space@b>" },
	};
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		smtp_message_id((const uint8_t *)cases[i].msg,
		    strlen(cases[i].msg), out, sizeof(out));
		if (strcmp(out, cases[i].want) != 0)
			fail_msg("case %zu: \"%s\", want \"%s\"", i, out,
			    cases[i].want);
	}
	/* too small a buffer gives "", never a cut id */
	smtp_message_id((const uint8_t *)"Message-ID: <abcdef@b>\r\n\r\n",
	    27, out, 6);
	assert_string_equal(out, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmd),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_path_params_values),
		cmocka_unit_test(test_path_limits),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_data),
		cmocka_unit_test(test_data_reference),
		cmocka_unit_test(test_data_line_limit),
		cmocka_unit_test(test_data_size),
		cmocka_unit_test(test_from),
		cmocka_unit_test(test_header_len),
		cmocka_unit_test(test_message_id),
		cmocka_unit_test(test_utf8),
	};

	return cmocka_run_group_tests_name("smtp_parse", tests, NULL, NULL);
}
