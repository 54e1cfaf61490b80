/* Unit tests for lib/strnum.c: table-driven, every boundary N-1, N, N+1. */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "strnum.h"

struct u64_case {
	const char *in;
	uint64_t min, max;
	int ok;
	uint64_t val;
};

static void
test_u64_table(void **state)
{
	static const struct u64_case cases[] = {
		{ "0", 0, 10, 1, 0 },
		{ "10", 0, 10, 1, 10 },
		{ "11", 0, 10, 0, 0 },
		{ "9", 0, 10, 1, 9 },
		{ "", 0, 10, 0, 0 },
		{ " 1", 0, 10, 0, 0 },
		{ "1 ", 0, 10, 0, 0 },
		{ "+1", 0, 10, 0, 0 },
		{ "-1", 0, 10, 0, 0 },
		{ "0x10", 0, 100, 0, 0 },
		{ "18446744073709551615", 0, UINT64_MAX, 1, UINT64_MAX },
		{ "18446744073709551616", 0, UINT64_MAX, 0, 0 },
		{ "99999999999999999999999", 0, UINT64_MAX, 0, 0 },
		{ "4", 5, 10, 0, 0 },
		{ "5", 5, 10, 1, 5 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *err = NULL;
		uint64_t v = 12345;
		int r = strnum_u64(cases[i].in, cases[i].min, cases[i].max, &v,
		    &err);

		if (cases[i].ok) {
			assert_int_equal(r, 0);
			assert_true(v == cases[i].val);
		} else {
			assert_int_equal(r, -1);
			assert_non_null(err);
			assert_true(v == 12345);
		}
	}
}

static void
test_i64(void **state)
{
	const char *err;
	int64_t v;

	(void)state;
	assert_int_equal(strnum_i64("-9223372036854775808", INT64_MIN,
	    INT64_MAX, &v, &err), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(strnum_i64("-9223372036854775809", INT64_MIN,
	    INT64_MAX, &v, &err), -1);
	assert_int_equal(strnum_i64("9223372036854775807", INT64_MIN,
	    INT64_MAX, &v, &err), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(strnum_i64("9223372036854775808", INT64_MIN,
	    INT64_MAX, &v, &err), -1);
	assert_int_equal(strnum_i64("-5", -4, 4, &v, &err), -1);
	assert_int_equal(strnum_i64("-4", -4, 4, &v, &err), 0);
	assert_true(v == -4);
	assert_int_equal(strnum_i64("-", -4, 4, &v, &err), -1);
}

static void
test_size_duration(void **state)
{
	const char *err;
	uint64_t v;

	(void)state;
	assert_int_equal(strnum_size("64K", UINT64_MAX, &v, &err), 0);
	assert_true(v == 65536);
	assert_int_equal(strnum_size("10M", UINT64_MAX, &v, &err), 0);
	assert_true(v == 10485760);
	assert_int_equal(strnum_size("2G", UINT64_MAX, &v, &err), 0);
	assert_true(v == 2147483648ULL);
	assert_int_equal(strnum_size("1K", 1023, &v, &err), -1);
	assert_int_equal(strnum_size("1K", 1024, &v, &err), 0);
	assert_int_equal(strnum_size("K", 1024, &v, &err), -1);
	assert_int_equal(strnum_size("17179869184G", UINT64_MAX, &v, &err), -1);
	assert_int_equal(strnum_duration("5m", UINT64_MAX, &v, &err), 0);
	assert_true(v == 300);
	assert_int_equal(strnum_duration("7d", UINT64_MAX, &v, &err), 0);
	assert_true(v == 604800);
	assert_int_equal(strnum_duration("30", UINT64_MAX, &v, &err), 0);
	assert_true(v == 30);
	assert_int_equal(strnum_duration("1x", UINT64_MAX, &v, &err), -1);
}

static void
test_bool(void **state)
{
	static const char *const yes[] = { "yes", "TRUE", "On", "1" };
	static const char *const no[] = { "no", "False", "OFF", "0" };
	static const char *const bad[] = { "", "y", "2", "yes ", "nope" };
	const char *err = NULL;
	size_t i;
	int b;

	(void)state;
	for (i = 0; i < 4; i++) {
		b = -1;
		assert_int_equal(strnum_bool(yes[i], &b, &err), 0);
		assert_int_equal(b, 1);
		assert_int_equal(strnum_bool(no[i], &b, &err), 0);
		assert_int_equal(b, 0);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		assert_int_equal(strnum_bool(bad[i], &b, &err), -1);
		assert_non_null(strstr(err, "boolean"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_u64_table),
		cmocka_unit_test(test_i64),
		cmocka_unit_test(test_size_duration),
		cmocka_unit_test(test_bool),
	};

	return cmocka_run_group_tests_name("strnum", tests, NULL, NULL);
}
