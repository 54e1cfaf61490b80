/*
 * idn.c - IDNA2008 conversions for the store, smtpd and the S/MIME code,
 * all through libidn2 with the same flags (idn.h).
 */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include <idn2.h>

#include "buf.h"
#include "idn.h"

#define IDN_FLAGS (IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL)

int
idn_needed(const char *name)
{
	const char *p, *label = name;
	int ace = 0;

	for (p = name; *p != '\0'; p++) {
		if ((unsigned char)*p >= 0x80)
			return 1;
		if (p == label && strlen(p) >= 4 && str_ncaseeq(p, "xn--", 4))
			ace = 1;
		if (*p == '.')
			label = p + 1;
	}
	return ace;
}

int
idn_ascii(const char *name, char *out, size_t outsz)
{
	char *a = NULL;
	int r;

	if (!idn_needed(name))
		return str_copy(out, outsz, name) < 0 ? -1 : 0;
	if (idn2_to_ascii_8z(name, &a, IDN_FLAGS) != IDN2_OK) {
		idn2_free(a);
		return -1;
	}
	r = str_copy(out, outsz, a) < 0 ? -1 : 0;
	idn2_free(a);
	return r;
}

int
idn_unicode(const char *name, char *out, size_t outsz)
{
	char *a = NULL, *u = NULL;
	int r = -1;

	if (!idn_needed(name))
		return str_copy(out, outsz, name) < 0 ? -1 : 0;
	/* Through the A-labels: that validates, and maps (NFC, case). */
	if (idn2_to_ascii_8z(name, &a, IDN_FLAGS) == IDN2_OK &&
	    idn2_to_unicode_8z8z(a, &u, 0) == IDN2_OK)
		r = str_copy(out, outsz, u) < 0 ? -1 : 0;
	idn2_free(a);
	idn2_free(u);
	return r;
}

int
idn_address(const char *address, int to_ascii, char *out, size_t outsz)
{
	const char *at = strrchr(address, '@');
	char dom[256];
	int n;

	if (at == NULL || (to_ascii ? idn_ascii(at + 1, dom, sizeof(dom)) :
	    idn_unicode(at + 1, dom, sizeof(dom))) == -1)
		return -1;
	n = snprintf(out, outsz, "%.*s@%s", (int)(at - address), address,
	    dom);
	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}
