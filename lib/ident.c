/*
 * ident.c - check characters of the Unified Social Credit Code (GB 32100)
 * and of the resident identity number (GB 11643, ISO 7064 MOD 11-2).
 *
 * Every process that takes holder data: govmailctl, the store, govmail-ca.
 * Input is untrusted text from an operator or a request; nothing is
 * assumed about its length or alphabet.  Pure functions, no state.
 */
#include "autoconf.h"

#include <stddef.h>
#include <string.h>

#include "ident.h"

/* GB 32100-2015: the 31 code characters, in value order (no I O Z S V). */
static const char ident_uscc_alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
#define IDENT_USCC_MOD 31

/* Weights 3^(i) mod 31 for positions 1..17. */
static const unsigned ident_uscc_weights[IDENT_USCC_LEN - 1] = {
	1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28
};

/* ISO 7064 MOD 11-2 weights 2^(17-i) mod 11 for positions 1..17. */
static const unsigned ident_id_weights[IDENT_RESIDENT_ID_LEN - 1] = {
	7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2
};
#define IDENT_ID_MOD 11

/* Value of one code character, or -1 if it is not in the alphabet. */
static int
ident_uscc_value(char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(ident_uscc_alphabet, c);
	if (p == NULL)
		return -1;
	return (int)(p - ident_uscc_alphabet);
}

/* Length of s, but stop counting past limit (s may be long or hostile). */
static size_t
ident_len(const char *s, size_t limit)
{
	size_t n = 0;

	while (n <= limit && s[n] != '\0')
		n++;
	return n;
}

char
ident_uscc_check_char(const char *code17)
{
	unsigned sum = 0;
	size_t i;

	if (code17 == NULL || ident_len(code17, IDENT_USCC_LEN - 1)
	    < IDENT_USCC_LEN - 1)
		return '\0';
	for (i = 0; i < IDENT_USCC_LEN - 1; i++) {
		int v = ident_uscc_value(code17[i]);

		if (v < 0)
			return '\0';
		sum += (unsigned)v * ident_uscc_weights[i];
	}
	return ident_uscc_alphabet[(IDENT_USCC_MOD - sum % IDENT_USCC_MOD)
	    % IDENT_USCC_MOD];
}

int
ident_uscc_valid(const char *code)
{
	char c;

	if (code == NULL || ident_len(code, IDENT_USCC_LEN) != IDENT_USCC_LEN)
		return 0;
	c = ident_uscc_check_char(code);
	return c != '\0' && code[IDENT_USCC_LEN - 1] == c;
}

char
ident_resident_id_check_char(const char *digits17)
{
	unsigned sum = 0, v;
	size_t i;

	if (digits17 == NULL || ident_len(digits17, IDENT_RESIDENT_ID_LEN - 1)
	    < IDENT_RESIDENT_ID_LEN - 1)
		return '\0';
	for (i = 0; i < IDENT_RESIDENT_ID_LEN - 1; i++) {
		if (digits17[i] < '0' || digits17[i] > '9')
			return '\0';
		sum += (unsigned)(digits17[i] - '0') * ident_id_weights[i];
	}
	v = (12 - sum % IDENT_ID_MOD) % IDENT_ID_MOD;
	return v == 10 ? 'X' : (char)('0' + v);
}

int
ident_resident_id_valid(const char *id)
{
	char c;

	if (id == NULL || ident_len(id, IDENT_RESIDENT_ID_LEN)
	    != IDENT_RESIDENT_ID_LEN)
		return 0;
	c = ident_resident_id_check_char(id);
	return c != '\0' && id[IDENT_RESIDENT_ID_LEN - 1] == c;
}
