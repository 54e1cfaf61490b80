/*
 * idn.h - internationalized domain names (IDNA2008, non-transitional,
 * NFC input; libidn2), one set of rules for every part: the store keeps
 * a domain by its U-labels, DNS lookups and the S/MIME address match use
 * its A-labels.
 */
#ifndef IDN_H
#define IDN_H

#include <stddef.h>

/* 1 if name holds a byte >= 0x80 or an "xn--" label. */
int idn_needed(const char *name);

/*
 * name by its A-labels (lower case) in out; name itself when it needs no
 * conversion (idn_needed).  Returns 0, or -1 when it is no valid IDN or
 * out is too small.
 */
int idn_ascii(const char *name, char *out, size_t outsz);

/* name by its U-labels, validated the same way; 0 or -1. */
int idn_unicode(const char *name, char *out, size_t outsz);

/*
 * The address local@domain in out with its domain by its A-labels
 * (to_ascii) or its U-labels; the local part as it is.  0, or -1 when
 * there is no '@', the domain is no valid IDN or out is too small.
 */
int idn_address(const char *address, int to_ascii, char *out,
    size_t outsz);

#endif
