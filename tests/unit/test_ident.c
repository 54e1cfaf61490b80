/*
 * Unit tests for lib/ident.c: published valid codes, every single-character
 * substitution, every adjacent transposition, lengths N-1/N/N+1, lower case
 * and the letters GB 32100 leaves out (I O Z S V).
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ident.h"

/* Codes whose check characters can be verified by hand / were published. */
static const char *const valid_uscc[] = {
	"91350100M000100Y43",
	"91110000600037341L",
	"91440300708461136T",
	"91310000775785552L",
};

static const char *const valid_id[] = {
	"11010519491231002X",	/* GB 11643-1999 example */
	"440524188001010014",	/* GB 11643-1999 example */
	"11010119900307803X",
};

static void
test_uscc_valid(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid_uscc) / sizeof(valid_uscc[0]); i++) {
		assert_int_equal(ident_uscc_valid(valid_uscc[i]), 1);
		assert_int_equal(ident_uscc_check_char(valid_uscc[i]),
		    valid_uscc[i][IDENT_USCC_LEN - 1]);
	}
}

static void
test_id_valid(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid_id) / sizeof(valid_id[0]); i++) {
		assert_int_equal(ident_resident_id_valid(valid_id[i]), 1);
		assert_int_equal(ident_resident_id_check_char(valid_id[i]),
		    valid_id[i][IDENT_RESIDENT_ID_LEN - 1]);
	}
}

/* Every byte 0x01..0xff other than the original, at every position. */
static void
check_substitutions(const char *code, int (*valid)(const char *))
{
	char buf[IDENT_USCC_LEN + 1];
	size_t pos;
	unsigned c;

	for (pos = 0; pos < IDENT_USCC_LEN; pos++) {
		for (c = 1; c < 256; c++) {
			memcpy(buf, code, IDENT_USCC_LEN + 1);
			if ((char)c == buf[pos])
				continue;
			buf[pos] = (char)c;
			if (valid(buf))
				fail_msg("%s accepted (pos %zu)", buf, pos);
		}
	}
}

static void
test_substitutions(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid_uscc) / sizeof(valid_uscc[0]); i++)
		check_substitutions(valid_uscc[i], ident_uscc_valid);
	for (i = 0; i < sizeof(valid_id) / sizeof(valid_id[0]); i++)
		check_substitutions(valid_id[i], ident_resident_id_valid);
}

static void
check_transpositions(const char *code, int (*valid)(const char *))
{
	char buf[IDENT_USCC_LEN + 1];
	size_t pos;
	int tested = 0;

	for (pos = 0; pos + 1 < IDENT_USCC_LEN; pos++) {
		char t;

		memcpy(buf, code, IDENT_USCC_LEN + 1);
		if (buf[pos] == buf[pos + 1])
			continue;
		t = buf[pos];
		buf[pos] = buf[pos + 1];
		buf[pos + 1] = t;
		tested++;
		if (valid(buf))
			fail_msg("%s accepted (swap at %zu)", buf, pos);
	}
	assert_true(tested > 5);
}

static void
test_transpositions(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid_uscc) / sizeof(valid_uscc[0]); i++)
		check_transpositions(valid_uscc[i], ident_uscc_valid);
	for (i = 0; i < sizeof(valid_id) / sizeof(valid_id[0]); i++)
		check_transpositions(valid_id[i], ident_resident_id_valid);
}

struct len_case {
	const char *in;
	int uscc_ok, id_ok;
};

static void
test_lengths_and_alphabet(void **state)
{
	static const struct len_case cases[] = {
		{ "", 0, 0 },
		{ "91350100M000100Y4", 0, 0 },		/* N-1 */
		{ "91350100M000100Y43", 1, 0 },		/* N */
		{ "91350100M000100Y430", 0, 0 },	/* N+1 */
		{ "91350100m000100y43", 0, 0 },		/* lower case */
		{ "11010519491231002", 0, 0 },		/* N-1 */
		{ "11010519491231002X", 0, 1 },		/* N */
		{ "11010519491231002X0", 0, 0 },	/* N+1 */
		{ "11010519491231002x", 0, 0 },		/* lower-case x */
		{ " 11010519491231002X", 0, 0 },
		{ "11010519491231002X ", 0, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(ident_uscc_valid(cases[i].in),
		    cases[i].uscc_ok);
		assert_int_equal(ident_resident_id_valid(cases[i].in),
		    cases[i].id_ok);
	}
	assert_int_equal(ident_uscc_valid(NULL), 0);
	assert_int_equal(ident_resident_id_valid(NULL), 0);
	assert_int_equal(ident_uscc_check_char(NULL), '\0');
	assert_int_equal(ident_uscc_check_char("9135010"), '\0');
	assert_int_equal(ident_resident_id_check_char("1101051949"), '\0');
	assert_int_equal(ident_resident_id_check_char("1101051949123100A"),
	    '\0');
}

/* I O Z S V are not code characters: no position may hold them. */
static void
test_forbidden_letters(void **state)
{
	static const char forbidden[] = "IOZSV";
	char buf[IDENT_USCC_LEN + 1];
	size_t i, pos;

	(void)state;
	for (i = 0; forbidden[i] != '\0'; i++) {
		for (pos = 0; pos < IDENT_USCC_LEN - 1; pos++) {
			memcpy(buf, valid_uscc[0], sizeof(buf));
			buf[pos] = forbidden[i];
			assert_int_equal(ident_uscc_check_char(buf), '\0');
			assert_int_equal(ident_uscc_valid(buf), 0);
		}
	}
}

/* The computed check character makes any 17-character body valid. */
static void
test_check_char_roundtrip(void **state)
{
	static const char alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
	char buf[IDENT_USCC_LEN + 1];
	unsigned seed = 12345;
	int n, pos;

	(void)state;
	for (n = 0; n < 1000; n++) {
		for (pos = 0; pos < IDENT_USCC_LEN - 1; pos++) {
			seed = seed * 1103515245u + 12345u;
			buf[pos] = alphabet[(seed >> 16) % 31];
		}
		buf[IDENT_USCC_LEN - 1] = '\0';
		buf[IDENT_USCC_LEN - 1] = ident_uscc_check_char(buf);
		buf[IDENT_USCC_LEN] = '\0';
		assert_int_equal(ident_uscc_valid(buf), 1);
		for (pos = 0; pos < IDENT_RESIDENT_ID_LEN - 1; pos++) {
			seed = seed * 1103515245u + 12345u;
			buf[pos] = (char)('0' + (seed >> 16) % 10);
		}
		buf[IDENT_RESIDENT_ID_LEN - 1] = '\0';
		buf[IDENT_RESIDENT_ID_LEN - 1] =
		    ident_resident_id_check_char(buf);
		assert_int_equal(ident_resident_id_valid(buf), 1);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uscc_valid),
		cmocka_unit_test(test_id_valid),
		cmocka_unit_test(test_substitutions),
		cmocka_unit_test(test_transpositions),
		cmocka_unit_test(test_lengths_and_alphabet),
		cmocka_unit_test(test_forbidden_letters),
		cmocka_unit_test(test_check_char_roundtrip),
	};

	return cmocka_run_group_tests_name("ident", tests, NULL, NULL);
}
