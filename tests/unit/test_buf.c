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
	assert_true(str_has_prefix("class:citizen", "class:"));
	assert_false(str_has_prefix("cla", "class:"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_max),
		cmocka_unit_test(test_buf_growth),
		cmocka_unit_test(test_secret),
		cmocka_unit_test(test_str),
	};

	return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
