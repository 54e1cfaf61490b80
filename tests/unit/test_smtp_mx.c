/*
 * test_smtp_mx.c - smtpd/smtp_mx.c: MX answers read and ordered (from DNS
 * answers built here, byte by byte), and the relayhost forms resolved
 * (literals and localhost: no DNS needed).
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

#include "smtp_mx.h"

/* ---- a DNS answer, built by hand ---- */

struct pkt {
	unsigned char b[2048];
	size_t n;
};

static void
put8(struct pkt *p, unsigned v)
{
	assert_true(p->n < sizeof(p->b));
	p->b[p->n++] = (unsigned char)v;
}

static void
put16(struct pkt *p, unsigned v)
{
	put8(p, v >> 8);
	put8(p, v & 0xff);
}

/* A name in labels; "" is the root. */
static void
put_name(struct pkt *p, const char *name)
{
	const char *dot;

	while (*name != '\0') {
		size_t l;

		dot = strchr(name, '.');
		l = dot != NULL ? (size_t)(dot - name) : strlen(name);
		put8(p, (unsigned)l);
		memcpy(p->b + p->n, name, l);
		p->n += l;
		name += l;
		if (*name == '.')
			name++;
	}
	put8(p, 0);
}

/* Header and the question "example.org MX", with ancount answers. */
static void
pkt_start(struct pkt *p, unsigned ancount)
{
	p->n = 0;
	put16(p, 0x1234);		/* id */
	put16(p, 0x8180);		/* response, RD, RA, NOERROR */
	put16(p, 1);
	put16(p, ancount);
	put16(p, 0);
	put16(p, 0);
	put_name(p, "example.org");	/* at offset 12 */
	put16(p, 15);
	put16(p, 1);
}

/* An answer owned by the question's name (a compression pointer). */
static void
rr_start(struct pkt *p, unsigned type)
{
	put16(p, 0xc00c);
	put16(p, type);
	put16(p, 1);
	put16(p, 0);
	put16(p, 300);
}

static void
add_mx(struct pkt *p, unsigned pref, const char *host)
{
	size_t at;

	rr_start(p, 15);
	at = p->n;
	put16(p, 0);			/* rdlength, below */
	put16(p, pref);
	put_name(p, host);
	p->b[at] = (unsigned char)((p->n - at - 2) >> 8);
	p->b[at + 1] = (unsigned char)((p->n - at - 2) & 0xff);
}

static void
test_order(void **state)
{
	struct smtp_mx mx[SMTP_MX_MAX];
	struct pkt p;

	(void)state;
	pkt_start(&p, 3);
	add_mx(&p, 20, "backup.example.org");
	add_mx(&p, 10, "mx1.example.org");
	add_mx(&p, 30, "last.example.net");
	assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx, SMTP_MX_MAX), 3);
	assert_string_equal(mx[0].host, "mx1.example.org");
	assert_int_equal(mx[0].pref, 10);
	assert_string_equal(mx[1].host, "backup.example.org");
	assert_string_equal(mx[2].host, "last.example.net");
	assert_int_equal(mx[2].pref, 30);
}

/* RFC 7505: preference 0 and the root as host. */
static void
test_null_mx(void **state)
{
	struct smtp_mx mx[SMTP_MX_MAX];
	struct pkt p;

	(void)state;
	pkt_start(&p, 1);
	add_mx(&p, 0, "");
	assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx, SMTP_MX_MAX), 1);
	assert_string_equal(mx[0].host, "");
	pkt_start(&p, 2);
	add_mx(&p, 0, "");
	add_mx(&p, 5, "mx.example.org");
	assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx, SMTP_MX_MAX), 2);
	assert_string_equal(mx[0].host, "");
	assert_string_equal(mx[1].host, "mx.example.org");
}

/* Equal preferences come in every order over many reads. */
static void
test_equal_prefs_shuffled(void **state)
{
	struct smtp_mx mx[SMTP_MX_MAX];
	struct pkt p;
	int first[3] = { 0, 0, 0 }, i;

	(void)state;
	pkt_start(&p, 4);
	add_mx(&p, 10, "a.example.org");
	add_mx(&p, 10, "b.example.org");
	add_mx(&p, 5, "best.example.org");
	add_mx(&p, 10, "c.example.org");
	for (i = 0; i < 300; i++) {
		assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx,
		    SMTP_MX_MAX), 4);
		assert_string_equal(mx[0].host, "best.example.org");
		assert_int_equal(mx[1].pref, 10);
		assert_int_equal(mx[3].pref, 10);
		assert_int_equal(strlen(mx[1].host), strlen("a.example.org"));
		first[mx[1].host[0] - 'a']++;
	}
	/* (2/3)^300: each is first at least once, or the order is fixed */
	assert_true(first[0] > 0 && first[1] > 0 && first[2] > 0);
}

/* Records of other types (a CNAME on the way) are skipped. */
static void
test_other_types(void **state)
{
	struct smtp_mx mx[SMTP_MX_MAX];
	struct pkt p;
	size_t at;

	(void)state;
	pkt_start(&p, 2);
	rr_start(&p, 5);		/* CNAME */
	at = p.n;
	put16(&p, 0);
	put_name(&p, "alias.example.org");
	p.b[at + 1] = (unsigned char)(p.n - at - 2);
	add_mx(&p, 10, "mx.example.org");
	assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx, SMTP_MX_MAX), 1);
	assert_string_equal(mx[0].host, "mx.example.org");
	/* no answers at all */
	pkt_start(&p, 0);
	assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx, SMTP_MX_MAX), 0);
}

/* An MX host given with a compression pointer into the question. */
static void
test_compressed_host(void **state)
{
	struct smtp_mx mx[SMTP_MX_MAX];
	struct pkt p;
	size_t at;

	(void)state;
	pkt_start(&p, 1);
	rr_start(&p, 15);
	at = p.n;
	put16(&p, 0);
	put16(&p, 7);
	put8(&p, 4);
	memcpy(p.b + p.n, "mail", 4);
	p.n += 4;
	put16(&p, 0xc00c);		/* -> example.org */
	p.b[at + 1] = (unsigned char)(p.n - at - 2);
	assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx, SMTP_MX_MAX), 1);
	assert_string_equal(mx[0].host, "mail.example.org");
	assert_int_equal(mx[0].pref, 7);
}

/* Hostile answers: cut short at every byte, a pointer loop, no room. */
static void
test_malformed(void **state)
{
	struct smtp_mx mx[SMTP_MX_MAX];
	struct pkt p;
	size_t cut, full, at;
	int i;

	(void)state;
	pkt_start(&p, 2);
	add_mx(&p, 10, "mx1.example.org");
	add_mx(&p, 20, "mx2.example.org");
	full = p.n;
	for (cut = 0; cut < full; cut++) {
		int r = smtp_mx_parse(p.b, (int)cut, mx, SMTP_MX_MAX);

		assert_true(r == -1);
	}
	assert_int_equal(smtp_mx_parse(p.b, 0, mx, SMTP_MX_MAX), -1);
	assert_int_equal(smtp_mx_parse(p.b, -1, mx, SMTP_MX_MAX), -1);
	/* an MX whose host points at itself */
	pkt_start(&p, 1);
	rr_start(&p, 15);
	at = p.n;
	put16(&p, 4);
	put16(&p, 1);
	put16(&p, 0xc000 | (unsigned)(at + 4));
	assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx, SMTP_MX_MAX), -1);
	/* rdata too short for a preference and a name */
	pkt_start(&p, 1);
	rr_start(&p, 15);
	put16(&p, 2);
	put16(&p, 1);
	assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx, SMTP_MX_MAX), -1);
	/* more records than room: the first max */
	pkt_start(&p, SMTP_MX_MAX + 4);
	for (i = 0; i < SMTP_MX_MAX + 4; i++)
		add_mx(&p, (unsigned)(100 - i), "mx.example.org");
	assert_int_equal(smtp_mx_parse(p.b, (int)p.n, mx, SMTP_MX_MAX),
	    SMTP_MX_MAX);
	assert_int_equal(mx[0].pref, 100 - SMTP_MX_MAX + 1);
}

/* The relayhost forms; literals and localhost need no DNS. */
static void
test_relayhost(void **state)
{
	struct smtp_dest d[SMTP_DEST_MAX];
	char port[8], diag[300];
	int perm, n, i, v4 = 0;

	(void)state;
	n = smtp_route("example.org", "[127.0.0.1]:2525", port, sizeof(port),
	    d, SMTP_DEST_MAX, &perm, diag, sizeof(diag));
	assert_int_equal(n, 1);
	assert_string_equal(d[0].ip, "127.0.0.1");
	assert_string_equal(d[0].host, "127.0.0.1");
	assert_string_equal(port, "2525");
	n = smtp_route("example.org", "[::1]", port, sizeof(port), d,
	    SMTP_DEST_MAX, &perm, diag, sizeof(diag));
	assert_int_equal(n, 1);
	assert_string_equal(d[0].ip, "::1");
	assert_string_equal(port, "25");
	n = smtp_route("example.org", "[::1]:587", port, sizeof(port), d,
	    SMTP_DEST_MAX, &perm, diag, sizeof(diag));
	assert_int_equal(n, 1);
	assert_string_equal(port, "587");
	/* every address of a name, each once */
	n = smtp_route("example.org", "localhost:2525", port, sizeof(port),
	    d, SMTP_DEST_MAX, &perm, diag, sizeof(diag));
	assert_true(n >= 1);
	for (i = 0; i < n; i++) {
		assert_string_equal(d[i].host, "localhost");
		if (strcmp(d[i].ip, "127.0.0.1") == 0)
			v4++;
	}
	assert_int_equal(v4, 1);
	/* a domain that is no IDN (bad UTF-8): refused before any lookup */
	n = smtp_route("bad\xff\xfe.example", "", port, sizeof(port), d,
	    SMTP_DEST_MAX, &perm, diag, sizeof(diag));
	assert_int_equal(n, -1);
	assert_int_equal(perm, 1);
	assert_true(strncmp(diag, "550 5.1.3 ", 10) == 0);
}

/* For a server without SMTPUTF8: the domain as A-labels, if that is all. */
static void
test_addr_alabels(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(smtp_addr_alabels("mayor@\xe6\x94\xbf\xe5\xba\x9c.test",
	    out, sizeof(out)), 0);
	assert_string_equal(out, "mayor@xn--mxtq1m.test");
	assert_int_equal(smtp_addr_alabels("a@b.example", out, sizeof(out)),
	    0);
	assert_string_equal(out, "a@b.example");
	assert_int_equal(smtp_addr_alabels("", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* a UTF-8 local part cannot be converted */
	assert_int_equal(smtp_addr_alabels("\xe5\xb1\x80@b.example", out,
	    sizeof(out)), -1);
	/* no valid IDN; no room */
	assert_int_equal(smtp_addr_alabels("a@\xff.test", out, sizeof(out)),
	    -1);
	assert_int_equal(smtp_addr_alabels("mayor@\xe6\x94\xbf.test", out, 10),
	    -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_null_mx),
		cmocka_unit_test(test_equal_prefs_shuffled),
		cmocka_unit_test(test_other_types),
		cmocka_unit_test(test_compressed_host),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_relayhost),
		cmocka_unit_test(test_addr_alabels),
	};

	return cmocka_run_group_tests_name("smtp_mx", tests, NULL, NULL);
}
