/*
 * smtp_mx.c - where outbound mail for a domain goes: the relayhost, or
 * the domain's MX hosts in order of preference, each with all its
 * addresses (smtp_mx.h).  The DNS answer is read with libresolv's ns_*
 * parser; host addresses come from getaddrinfo; an internationalized
 * domain (SMTPUTF8) is looked up by its A-labels (lib/idn.c).
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "idn.h"
#include "smtp_mx.h"
#include "buf.h"

/* Largest DNS answer read (a longer one is cut: its first records). */
#define SMTP_MX_ANSWER_MAX 8192

int
smtp_mx_parse(const unsigned char *answer, int len, struct smtp_mx *mx,
    size_t max)
{
	ns_msg msg;
	ns_rr rr;
	size_t n = 0, i, j, run;
	int k;

	if (len <= 0 || ns_initparse(answer, len, &msg) < 0)
		return -1;
	for (k = 0; k < ns_msg_count(msg, ns_s_an) && n < max; k++) {
		char name[NS_MAXDNAME];

		if (ns_parserr(&msg, ns_s_an, k, &rr) < 0)
			return -1;
		if (ns_rr_type(rr) != ns_t_mx || ns_rr_class(rr) != ns_c_in)
			continue;	/* a CNAME on the way, say */
		if (ns_rr_rdlen(rr) < 3 || dn_expand(ns_msg_base(msg),
		    ns_msg_end(msg), ns_rr_rdata(rr) + 2, name,
		    sizeof(name)) < 0)
			return -1;
		if (strlen(name) >= sizeof(mx[n].host))
			continue;
		/* dn_expand gives "" for the root: RFC 7505's null MX. */
		(void)str_copy(mx[n].host, sizeof(mx[n].host),
		    strcmp(name, ".") == 0 ? "" : name);
		mx[n].pref = ns_get16(ns_rr_rdata(rr));
		n++;
	}
	/* By preference (insertion: a handful of records). */
	for (i = 1; i < n; i++) {
		struct smtp_mx t = mx[i];

		for (j = i; j > 0 && mx[j - 1].pref > t.pref; j--)
			mx[j] = mx[j - 1];
		mx[j] = t;
	}
	/* Equal preferences in a random order (RFC 5321 5.1). */
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && mx[j].pref == mx[i].pref; j++)
			;
		for (run = j - i; run > 1; run--) {
			size_t r = i + arc4random_uniform((uint32_t)run);
			struct smtp_mx t = mx[i + run - 1];

			mx[i + run - 1] = mx[r];
			mx[r] = t;
		}
	}
	return (int)n;
}

/*
 * Every address of host, after those in dest already (each once), up to
 * max.  *again when the resolver failed for the time being.
 */
static void
add_addrs(const char *host, const char *port, struct smtp_dest *dest,
    size_t max, size_t *n, int *again)
{
	struct addrinfo hints, *res = NULL, *ai;
	char ip[INET6_ADDRSTRLEN];
	size_t i;
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	r = getaddrinfo(host, port, &hints, &res);
	if (r == EAI_AGAIN)
		*again = 1;
	if (r != 0 || res == NULL)
		return;
	for (ai = res; ai != NULL && *n < max; ai = ai->ai_next) {
		const void *a;

		if (ai->ai_family == AF_INET)
			a = &((const struct sockaddr_in *)(const void *)
			    ai->ai_addr)->sin_addr;
		else if (ai->ai_family == AF_INET6)
			a = &((const struct sockaddr_in6 *)(const void *)
			    ai->ai_addr)->sin6_addr;
		else
			continue;
		if (inet_ntop(ai->ai_family, a, ip, sizeof(ip)) == NULL)
			continue;
		for (i = 0; i < *n; i++)
			if (strcmp(dest[i].ip, ip) == 0)
				break;
		if (i < *n)
			continue;
		(void)str_copy(dest[*n].host, sizeof(dest[*n].host), host);
		(void)str_copy(dest[*n].ip, sizeof(dest[*n].ip), ip);
		(*n)++;
	}
	freeaddrinfo(res);
}

int
smtp_addr_alabels(const char *address, char *out, size_t outsz)
{
	const char *at = strrchr(address, '@'), *p;
	char dom[SMTP_OUT_HOST_MAX];

	if (at == NULL)			/* <> */
		return str_copy(out, outsz, address) < 0 ? -1 : 0;
	for (p = address; p < at; p++)
		if ((unsigned char)*p >= 0x80)
			return -1;
	if (idn_ascii(at + 1, dom, sizeof(dom)) < 0)
		return -1;
	return snprintf(out, outsz, "%.*s@%s", (int)(at - address), address,
	    dom) < (int)outsz ? 0 : -1;
}

/* relayhost: "host", "host:port", "[ip]", "[ip]:port". */
static void
relay_split(const char *rh, char *host, size_t hostsz, char *port,
    size_t portsz)
{
	const char *colon = strrchr(rh, ':');
	size_t hl;

	/* An IPv6 literal's colons are inside the brackets. */
	if (rh[0] == '[' && (colon == NULL || colon < strchr(rh, ']')))
		colon = NULL;
	hl = colon != NULL ? (size_t)(colon - rh) : strlen(rh);
	if (hl >= hostsz)
		hl = hostsz - 1;
	memcpy(host, rh, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	(void)str_copy(port, portsz, colon != NULL ? colon + 1 : "25");
}

int
smtp_route(const char *domain, const char *relayhost, char *port,
    size_t portsz, struct smtp_dest *dest, size_t max, int *permanent_r,
    char *diag, size_t diagsz)
{
	unsigned char *answer;
	struct smtp_mx mx[SMTP_MX_MAX];
	char host[SMTP_OUT_HOST_MAX], name[SMTP_OUT_HOST_MAX];
	size_t n = 0;
	int len, nmx = 0, i, again = 0, null = 0;

	*permanent_r = 0;
	if (relayhost[0] != '\0') {
		relay_split(relayhost, name, sizeof(name), port, portsz);
		if (idn_ascii(name, host, sizeof(host)) < 0)
			(void)str_copy(host, sizeof(host), name);
		add_addrs(host, port, dest, max, &n, &again);
		if (n == 0)
			(void)snprintf(diag, diagsz, "451 4.4.3 cannot resolve "
			    "the relay host %s%s", host, again ?
			    " (resolver failure)" : "");
		return n > 0 ? (int)n : -1;
	}
	(void)str_copy(port, portsz, "25");
	if (idn_ascii(domain, name, sizeof(name)) < 0) {
		*permanent_r = 1;
		(void)snprintf(diag, diagsz, "550 5.1.3 %s is not a valid "
		    "internationalized domain name", domain);
		return -1;
	}
	domain = name;
	answer = malloc(SMTP_MX_ANSWER_MAX);
	if (answer == NULL) {
		(void)snprintf(diag, diagsz, "451 4.3.0 out of memory");
		return -1;
	}
	len = res_query(domain, ns_c_in, ns_t_mx, answer, SMTP_MX_ANSWER_MAX);
	if (len > SMTP_MX_ANSWER_MAX)
		len = SMTP_MX_ANSWER_MAX;
	if (len >= 0)
		nmx = smtp_mx_parse(answer, len, mx, SMTP_MX_MAX);
	free(answer);
	if (len < 0 && h_errno == HOST_NOT_FOUND) {
		*permanent_r = 1;
		(void)snprintf(diag, diagsz, "550 5.1.2 the domain %s does "
		    "not exist (DNS)", domain);
		return -1;
	}
	if ((len < 0 && h_errno != NO_DATA) || nmx < 0) {
		(void)snprintf(diag, diagsz, "451 4.4.3 DNS lookup of the MX "
		    "of %s failed: %s", domain, nmx < 0 ?
		    "malformed answer" : hstrerror(h_errno));
		return -1;
	}
	for (i = 0; i < nmx; i++)
		if (mx[i].host[0] == '\0')
			null++;
	if (nmx > 0 && null == nmx) {
		*permanent_r = 1;
		(void)snprintf(diag, diagsz, "556 5.1.10 the domain %s "
		    "accepts no mail (null MX)", domain);
		return -1;
	}
	if (nmx == 0) {
		/* No MX: the domain itself (RFC 5321 5.1). */
		add_addrs(domain, port, dest, max, &n, &again);
		if (n == 0) {
			*permanent_r = !again;
			(void)snprintf(diag, diagsz, again ? "451 4.4.3 DNS "
			    "lookup of %s failed" : "550 5.1.2 the domain %s "
			    "has neither MX nor address (DNS)", domain);
		}
		return n > 0 ? (int)n : -1;
	}
	/* A null MX beside others is ignored (RFC 7505 3). */
	for (i = 0; i < nmx && n < max; i++)
		if (mx[i].host[0] != '\0')
			add_addrs(mx[i].host, port, dest, max, &n, &again);
	if (n == 0)
		(void)snprintf(diag, diagsz, "451 4.4.3 no MX host of %s has "
		    "an address%s", domain, again ? " (resolver failure)" :
		    "");
	return n > 0 ? (int)n : -1;
}
