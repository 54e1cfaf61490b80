/* Unit tests for lib/buf.c: the hard maximum at N-1, N, N+1; bounded strings. */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "idn.h"

static void
test_buf_max(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "123456789", 9), 0);	/* N-1 */
	assert_int_equal(buf_append_byte(&b, 'x'), 0);		/* N */
	assert_int_equal(b.len, 10);
	assert_int_equal(buf_append_byte(&b, 'y'), -1);		/* N+1 */
	assert_int_equal(b.len, 10);
	assert_string_equal(buf_str(&b), "123456789x");
	buf_consume(&b, 3);
	assert_string_equal(buf_str(&b), "456789x");
	assert_int_equal(buf_printf(&b, "%d", 123), 0);
	assert_int_equal(buf_printf(&b, "%d", 1), -1);
	assert_string_equal(buf_str(&b), "456789x123");
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	buf_shrink(&b);
	assert_null(b.data);
	buf_free(&b);
}

static void
test_buf_growth(void **state)
{
	struct buf b;
	size_t i;

	(void)state;
	buf_init(&b, BUF_UNBOUNDED);
	for (i = 0; i < 100000; i++)
		assert_int_equal(buf_append_byte(&b, (uint8_t)('a' + i % 26)), 0);
	assert_int_equal(b.len, 100000);
	assert_int_equal(b.data[b.len], 0);
	assert_int_equal(b.data[26], 'a');
	buf_truncate(&b, 5);
	assert_string_equal(buf_str(&b), "abcde");
	{
		char *s = buf_steal(&b);
		assert_string_equal(s, "abcde");
		free(s);
	}
	assert_null(b.data);
	buf_free(&b);
}

static void
test_secret(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 1024);
	b.secret = 1;
	assert_int_equal(buf_append_str(&b, "password"), 0);
	assert_int_equal(buf_append_str(&b, "-and-more-to-force-a-regrow-of-the-buffer-past-64-bytes-of-capacity"), 0);
	assert_true(strncmp(buf_str(&b), "password-", 9) == 0);
	buf_free(&b);
}

/* Consuming from a secret leaves no copy of it beyond len. */
static void
test_secret_consume(void **state)
{
	struct buf b;
	size_t i;

	(void)state;
	buf_init(&b, 1024);
	b.secret = 1;
	assert_int_equal(buf_append_str(&b, "0123456789secret"), 0);
	buf_consume(&b, 10);
	assert_string_equal(buf_str(&b), "secret");
	for (i = b.len; i < 16; i++)
		assert_int_equal(b.data[i], 0);
	/* A plain buffer keeps the same contents (only secrets are wiped). */
	buf_free(&b);
	buf_init(&b, 1024);
	assert_int_equal(buf_append_str(&b, "0123456789plain"), 0);
	buf_consume(&b, 10);
	assert_string_equal(buf_str(&b), "plain");
	buf_consume(&b, 5);
	assert_int_equal(b.len, 0);
	assert_string_equal(buf_str(&b), "");
	buf_free(&b);
}

/* buf_tail/buf_commit within what buf_reserve made room for. */
static void
test_tail_commit(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_reserve(&b, 8), 0);
	memcpy(buf_tail(&b), "abcdefgh", 8);
	buf_commit(&b, 8);
	assert_int_equal(b.len, 8);
	assert_string_equal(buf_str(&b), "abcdefgh");
	assert_int_equal(buf_reserve(&b, 1), -1);	/* N+1 past max */
	buf_free(&b);
}

static void
test_str(void **state)
{
	char d[6];

	(void)state;
	assert_int_equal(str_copy(d, sizeof(d), "hello"), 0);
	assert_string_equal(d, "hello");
	assert_int_equal(str_copy(d, sizeof(d), "hello!"), -1);
	assert_string_equal(d, "hello");
	assert_int_equal(str_copy(d, sizeof(d), "ab"), 0);
	assert_int_equal(str_append(d, sizeof(d), "cde"), 0);
	assert_string_equal(d, "abcde");
	assert_int_equal(str_append(d, sizeof(d), "f"), -1);
	assert_int_equal(str_casecmp("HeLLo", "hello"), 0);
	assert_true(str_casecmp("a", "b") < 0);
	/* n bytes, any bytes, ASCII letters only folded */
	assert_true(str_ncaseeq("Message-ID:", "message-id: x", 11));
	assert_false(str_ncaseeq("Message-ID:", "message-ix:", 11));
	assert_true(str_ncaseeq("A\0B", "a\0b", 3));
	assert_false(str_ncaseeq("\xc9", "\xe9", 1));	/* not Latin-1 folding */
	assert_true(str_ncaseeq("x", "y", 0));
	{
		static const char hay[] = "From: Mayor <Mayor@GOV.Example>";
		const char *f = str_casefind(hay, sizeof(hay) - 1,
		    "@gov.example", 12);

		assert_ptr_equal(f, hay + 18);
		assert_null(str_casefind(hay, sizeof(hay) - 1, "@gov.examplex",
		    13));
		assert_ptr_equal(str_casefind(hay, 3, "", 0), hay);
		assert_null(str_casefind(hay, 3, "From", 4));	/* past hlen */
		assert_ptr_equal(str_casefind(hay, sizeof(hay) - 1, ">", 1),
		    hay + sizeof(hay) - 2);
	}
	assert_true(str_has_prefix("class:citizen", "class:"));
	assert_false(str_has_prefix("cla", "class:"));
}

/* One UTF-8 decoder for the whole tree: every boundary of RFC 3629. */
static void
test_utf8(void **state)
{
	static const struct {
		const char *in;
		size_t len;		/* of the first sequence, 0: invalid */
		uint32_t cp;
	} cases[] = {
		{ "A", 1, 0x41 },
		{ "\x7f", 1, 0x7f },
		{ "\xc2\x80", 2, 0x80 },
		{ "\xdf\xbf", 2, 0x7ff },
		{ "\xe0\xa0\x80", 3, 0x800 },
		{ "\xe5\xb8\x82", 3, 0x5e02 },	/* 市 */
		{ "\xed\x9f\xbf", 3, 0xd7ff },
		{ "\xee\x80\x80", 3, 0xe000 },
		{ "\xef\xbf\xbf", 3, 0xffff },
		{ "\xf0\x90\x80\x80", 4, 0x10000 },
		{ "\xf4\x8f\xbf\xbf", 4, 0x10ffff },
		{ "\x80", 0, 0 },		/* stray continuation */
		{ "\xc0\xaf", 0, 0 },		/* overlong '/' */
		{ "\xc1\xbf", 0, 0 },
		{ "\xe0\x9f\xbf", 0, 0 },	/* overlong 3-byte */
		{ "\xed\xa0\x80", 0, 0 },	/* surrogate D800 */
		{ "\xed\xbf\xbf", 0, 0 },	/* surrogate DFFF */
		{ "\xf0\x8f\xbf\xbf", 0, 0 },	/* overlong 4-byte */
		{ "\xf4\x90\x80\x80", 0, 0 },	/* beyond U+10FFFF */
		{ "\xf5\x80\x80\x80", 0, 0 },
		{ "\xff", 0, 0 },
		{ "\xe5\xb8", 0, 0 },		/* truncated */
		{ "\xe5\x41\x82", 0, 0 },	/* bad continuation */
	};
	size_t i;
	uint32_t cp;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = str_utf8_decode((const uint8_t *)cases[i].in,
		    strlen(cases[i].in), &cp);

		assert_int_equal(n, cases[i].len);
		if (n > 0)
			assert_int_equal(cp, cases[i].cp);
		assert_int_equal(str_utf8_valid((const uint8_t *)cases[i].in,
		    strlen(cases[i].in)), n > 0 && n == strlen(cases[i].in));
	}
	assert_int_equal(str_utf8_valid((const uint8_t *)"", 0), 1);
	assert_int_equal(str_utf8_valid((const uint8_t *)
	    "\xe5\xbc\xa0\xe4\xb8\x89@city.example", 18), 1);
	assert_int_equal(str_utf8_valid((const uint8_t *)
	    "ok\xe5\xbc\xa0\xe4\xb8", 7), 0);
}

/* lib/idn.c: which names need IDNA, and both directions. */
static void
test_idn(void **state)
{
	char out[256];

	(void)state;
	assert_false(idn_needed("city.example"));
	assert_false(idn_needed("axn--b.example"));	/* not a label start */
	assert_false(idn_needed("xn-"));
	assert_true(idn_needed("xn--mxtq1m.example"));
	assert_true(idn_needed("mail.Xn--mxtq1m.example"));
	assert_true(idn_needed("\xe6\x94\xbf\xe5\xba\x9c.example"));
	assert_int_equal(idn_ascii("\xe6\x94\xbf\xe5\xba\x9c.example", out,
	    sizeof(out)), 0);
	assert_string_equal(out, "xn--mxtq1m.example");
	assert_int_equal(idn_ascii("City.Example", out, sizeof(out)), 0);
	assert_string_equal(out, "City.Example");	/* untouched */
	assert_int_equal(idn_unicode("XN--MXTQ1M.example", out, sizeof(out)),
	    0);
	assert_string_equal(out, "\xe6\x94\xbf\xe5\xba\x9c.example");
	assert_int_equal(idn_unicode("xn--zz.example", out, sizeof(out)), -1);
	assert_int_equal(idn_ascii("\xff.example", out, sizeof(out)), -1);
	assert_int_equal(idn_ascii("\xe6\x94\xbf\xe5\xba\x9c.example", out,
	    8), -1);				/* no room */
	/* Addresses: the domain converted, the local part as it is. */
	assert_int_equal(idn_address("\xe5\xbc\xa0@\xe6\x94\xbf\xe5\xba"
	    "\x9c.example", 1, out, sizeof(out)), 0);
	assert_string_equal(out, "\xe5\xbc\xa0@xn--mxtq1m.example");
	assert_int_equal(idn_address("Li@XN--MXTQ1M.example", 0, out,
	    sizeof(out)), 0);
	assert_string_equal(out, "Li@\xe6\x94\xbf\xe5\xba\x9c.example");
	assert_int_equal(idn_address("li@city.example", 1, out, sizeof(out)),
	    0);
	assert_string_equal(out, "li@city.example");
	assert_int_equal(idn_address("no-at", 1, out, sizeof(out)), -1);
	assert_int_equal(idn_address("a@xn--zz.example", 0, out, sizeof(out)),
	    -1);
	assert_int_equal(idn_address("a@city.example", 1, out, 8), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_max),
		cmocka_unit_test(test_buf_growth),
		cmocka_unit_test(test_secret),
		cmocka_unit_test(test_secret_consume),
		cmocka_unit_test(test_tail_commit),
		cmocka_unit_test(test_str),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_idn),
	};

	return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
