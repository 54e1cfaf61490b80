/*
 * smtp_mx.h - where outbound mail for a domain goes (RFC 5321 5.1): the
 * [smtpd] relayhost, or the domain's MX hosts in order of preference
 * (RFC 7505 null MX, the implicit MX of a domain without one), each with
 * all its addresses, up to SMTP_DEST_MAX of them.
 */
#ifndef SMTP_MX_H
#define SMTP_MX_H

#include <netinet/in.h>
#include <stddef.h>

/* MX records read from one answer; more are ignored. */
#define SMTP_MX_MAX 16
/*
 * Addresses tried for one delivery, over every MX host (Postfix's
 * smtp_mx_address_limit is 5 as well).
 */
#define SMTP_DEST_MAX 5
/* Longest host name from MX or relayhost. */
#define SMTP_OUT_HOST_MAX 256

struct smtp_mx {
	char host[SMTP_OUT_HOST_MAX];	/* "" for a null MX (".") */
	unsigned pref;
};

struct smtp_dest {
	char host[SMTP_OUT_HOST_MAX];	/* for TLS: SNI and verification */
	char ip[INET6_ADDRSTRLEN];
};

/*
 * The MX records of a DNS answer (as res_query returns it), in order of
 * preference; records of equal preference in a random order (RFC 5321
 * 5.1).  A null MX (RFC 7505: preference 0, host ".") is returned with an
 * empty host.  Returns the number of records, or -1 when the answer is
 * malformed.
 */
int smtp_mx_parse(const unsigned char *answer, int len, struct smtp_mx *mx,
    size_t max);

/*
 * Where mail for domain goes: relayhost ("host", "host:port", "[ip]" or
 * "[ip]:port") if not empty, else domain's MX hosts on port 25, through
 * the system resolver.  Blocking: for a helper thread.  Fills up to max
 * destinations in the order to try them and returns how many (> 0); or
 * returns -1 with *permanent_r and a diagnostic in the form of an SMTP
 * reply ("550 5.1.2 ..."), which the DSN's Status: is taken from:
 *   - the domain does not exist, or has neither MX nor address:
 *     permanent, 5.1.2;
 *   - a null MX: permanent, 5.1.10 (RFC 7505 4.2);
 *   - the resolver failed, or no MX host has an address yet: temporary,
 *     4.4.3.
 */
/*
 * address with its domain as A-labels, for a server without SMTPUTF8
 * (RFC 6531 3.2 lets the domain be converted; the local part cannot be):
 * returns 0 with out filled (a copy when there is nothing to convert), or
 * -1 when the local part is UTF-8 or the domain no valid IDN.
 */
int smtp_addr_alabels(const char *address, char *out, size_t outsz);

int smtp_route(const char *domain, const char *relayhost, char *port,
    size_t portsz, struct smtp_dest *dest, size_t max, int *permanent_r,
    char *diag, size_t diagsz);

#endif
