/*
 * smtp_parse.c - command lines, paths and parameters, the DATA stream and
 * the From: header of a submission (see smtp_parse.h).
 *
 * govmail-smtpd workers, on the event loop.  Trusts nothing: the input is
 * what a client sent.  No allocation, no recursion, every length bounded.
 */
#include "autoconf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "smtp_parse.h"
#include "strnum.h"

static const struct {
	const char *name;
	enum smtp_cmd cmd;
} smtp_verbs[] = {
	{ "HELO", SMTP_CMD_HELO },
	{ "EHLO", SMTP_CMD_EHLO },
	{ "MAIL", SMTP_CMD_MAIL },
	{ "RCPT", SMTP_CMD_RCPT },
	{ "DATA", SMTP_CMD_DATA },
	{ "BDAT", SMTP_CMD_BDAT },
	{ "RSET", SMTP_CMD_RSET },
	{ "NOOP", SMTP_CMD_NOOP },
	{ "QUIT", SMTP_CMD_QUIT },
	{ "VRFY", SMTP_CMD_VRFY },
	{ "EXPN", SMTP_CMD_EXPN },
	{ "HELP", SMTP_CMD_HELP },
	{ "STARTTLS", SMTP_CMD_STARTTLS },
	{ "AUTH", SMTP_CMD_AUTH },
};
#define SMTP_NVERBS (sizeof(smtp_verbs) / sizeof(smtp_verbs[0]))

static int
ascii_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static int
ascii_ncaseeq(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (ascii_lower((unsigned char)a[i]) !=
		    ascii_lower((unsigned char)b[i]))
			return 0;
	return 1;
}

int
smtp_cmd_parse(const char *line, size_t len, const char **arg_r)
{
	size_t i, vlen;

	*arg_r = "";
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
	}
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	for (i = 0; i < SMTP_NVERBS; i++) {
		if (strlen(smtp_verbs[i].name) == vlen &&
		    ascii_ncaseeq(line, smtp_verbs[i].name, vlen)) {
			*arg_r = vlen < len ? line + vlen + 1 : "";
			return smtp_verbs[i].cmd;
		}
	}
	return SMTP_CMD_UNKNOWN;
}

const char *
smtp_cmd_name(enum smtp_cmd cmd)
{
	size_t i;

	for (i = 0; i < SMTP_NVERBS; i++)
		if (smtp_verbs[i].cmd == cmd)
			return smtp_verbs[i].name;
	return "UNKNOWN";
}

int
smtp_utf8_valid(const uint8_t *s, size_t len)
{
	return str_utf8_valid(s, len);
}

/* RFC 5321 atext, without '%' and '!' (checked before) and '"'. */
static int
is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return strchr("#$&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * RFC 3461 4: xtext = *( xchar / hexchar ); xchar is "!" to "~" but "+"
 * and "="; hexchar is "+" and two UPPER-case hex digits.
 */
static int
is_xtext(const char *v, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '+') {
			if (len - i < 3 || hexval((unsigned char)v[i + 1]) < 0
			    || hexval((unsigned char)v[i + 2]) < 0)
				return 0;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=')
			return 0;
	}
	return 1;
}

int
smtp_xtext_decode(const char *in, char *out, size_t outsz)
{
	size_t i, n = 0, len = strlen(in);

	if (!is_xtext(in, len))
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '+') {
			c = (unsigned char)(16 *
			    hexval((unsigned char)in[i + 1]) +
			    hexval((unsigned char)in[i + 2]));
			i += 2;
			/* RFC 3461 4.2, 4.4: printable US-ASCII only. */
			if (c < 32 || c > 126)
				return -1;
		}
		if (n + 1 >= outsz)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

int
smtp_xtext_encode(const char *in, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *in != '\0'; in++) {
		unsigned char c = (unsigned char)*in;

		if (c < 33 || c > 126 || c == '+' || c == '=') {
			if (n + 3 >= outsz)
				return -1;
			out[n++] = '+';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		} else {
			if (n + 1 >= outsz)
				return -1;
			out[n++] = (char)c;
		}
	}
	if (n >= outsz)
		return -1;
	out[n] = '\0';
	return 0;
}

/*
 * RFC 6533 3: utf-8-addr-unitext (utf8 != 0) or utf-8-addr-xtext: QCHAR
 * ("!" to "~" but "+", "=" and "\\"), "\\x{HEX}" (1 to 6 upper-case hex
 * digits naming a scalar value that is not ASCII-printable-safe), and with
 * unitext well-formed UTF-8 characters.
 */
static int
is_utf8_addr_text(const char *v, size_t len, int utf8)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '\\') {
			size_t j = i + 3;
			uint32_t cp = 0;

			if (len - i < 5 || v[i + 1] != 'x' || v[i + 2] != '{')
				return 0;
			while (j < len && hexval((unsigned char)v[j]) >= 0 &&
			    j - (i + 3) < 6) {
				cp = cp * 16 +
				    (uint32_t)hexval((unsigned char)v[j]);
				j++;
			}
			if (j == i + 3 || j >= len || v[j] != '}' ||
			    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
			    (cp > 0x20 && cp < 0x7f && cp != '+' && cp != '=' &&
			    cp != '\\'))
				return 0;
			i = j;
		} else if (c >= 0x80) {
			size_t k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;

			if (!utf8 || len - i < k ||
			    !smtp_utf8_valid((const uint8_t *)v + i, k))
				return 0;
			i += k - 1;
		} else if (c < 33 || c > 126 || c == '+' || c == '=')
			return 0;
	}
	return 1;
}

/* ORCPT's value: addr-type ";" xtext (or RFC 6533 text for "utf-8"). */
static int
orcpt_valid(const char *v, size_t len, int utf8)
{
	const char *semi = memchr(v, ';', len);
	size_t tlen, i;

	if (semi == NULL || semi == v)
		return 0;
	tlen = (size_t)(semi - v);
	for (i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)v[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-'))
			return 0;
	}
	if (tlen == 5 && ascii_ncaseeq(v, "utf-8", 5))
		return is_utf8_addr_text(semi + 1, len - tlen - 1, utf8);
	return is_xtext(semi + 1, len - tlen - 1);
}

int
smtp_orcpt_text(const char *orcpt, char *out, size_t outsz)
{
	const char *semi = strchr(orcpt, ';');
	size_t tlen, n, i;

	if (semi == NULL || semi == orcpt || (size_t)(semi - orcpt) >= outsz)
		return -1;
	tlen = (size_t)(semi - orcpt) + 1;
	memcpy(out, orcpt, tlen);
	out[tlen] = '\0';
	if (tlen != 6 || !ascii_ncaseeq(orcpt, "utf-8", 5))
		return smtp_xtext_decode(semi + 1, out + tlen, outsz - tlen);
	/* utf-8: keep the escapes, turn raw UTF-8 into "\\x{HEX}". */
	n = tlen;
	for (i = 0; semi[1 + i] != '\0'; i++) {
		const unsigned char *p = (const unsigned char *)semi + 1 + i;
		uint32_t cp;
		size_t k;
		int w;

		if (*p < 0x80) {
			if (n + 1 >= outsz)
				return -1;
			out[n++] = (char)*p;
			continue;
		}
		k = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;
		cp = *p & (k == 4 ? 0x07 : k == 3 ? 0x0f : 0x1f);
		for (w = 1; w < (int)k && p[w] != '\0'; w++)
			cp = (cp << 6) | (p[w] & 0x3f);
		if (w != (int)k)
			return -1;
		w = snprintf(out + n, outsz - n, "\\x{%X}", (unsigned)cp);
		if (w < 0 || (size_t)w >= outsz - n)
			return -1;
		n += (size_t)w;
		i += k - 1;
	}
	out[n] = '\0';
	return 0;
}

static enum smtp_path_error
fail(const char **what_r, const char *what, enum smtp_path_error e)
{
	if (what_r != NULL)
		*what_r = what;
	return e;
}

/* One "KEY[=VALUE]" parameter of MAIL. */
static enum smtp_path_error
mail_param(const char *k, size_t klen, const char *v, size_t vlen, int has_v,
    struct smtp_mail_params *mp, unsigned *seen, const char **what_r)
{
	const char *err;

#define KEY_IS(s) (klen == sizeof(s) - 1 && ascii_ncaseeq(k, s, klen))
#define VAL_IS(s) (vlen == sizeof(s) - 1 && ascii_ncaseeq(v, s, vlen))
	if (KEY_IS("SIZE")) {
		if ((*seen & 1) || !has_v || vlen > 20 ||
		    strnum_u64_n(v, vlen, UINT64_MAX, &mp->size, &err) < 0)
			return fail(what_r, "bad SIZE parameter",
			    SMTP_PATH_PARAM);
		mp->has_size = 1;
		*seen |= 1;
	} else if (KEY_IS("BODY")) {
		if ((*seen & 2) || !has_v)
			return fail(what_r, "bad BODY parameter",
			    SMTP_PATH_PARAM);
		if (VAL_IS("7BIT"))
			mp->body = SMTP_BODY_7BIT;
		else if (VAL_IS("8BITMIME"))
			mp->body = SMTP_BODY_8BITMIME;
		else
			return fail(what_r, "unsupported BODY type",
			    SMTP_PATH_PARAM);
		*seen |= 2;
	} else if (KEY_IS("SMTPUTF8")) {
		if ((*seen & 4) || has_v)
			return fail(what_r, "bad SMTPUTF8 parameter",
			    SMTP_PATH_PARAM);
		mp->smtputf8 = 1;
		*seen |= 4;
	} else if (KEY_IS("RET")) {
		if ((*seen & 8) || !has_v)
			return fail(what_r, "Bad RET parameter syntax "
			    "(RET=FULL or RET=HDRS, once)", SMTP_PATH_DSN);
		if (VAL_IS("FULL"))
			mp->ret = SMTP_RET_FULL;
		else if (VAL_IS("HDRS"))
			mp->ret = SMTP_RET_HDRS;
		else
			return fail(what_r, "Bad RET parameter syntax "
			    "(RET=FULL or RET=HDRS, once)", SMTP_PATH_DSN);
		*seen |= 8;
	} else if (KEY_IS("ENVID")) {
		char dec[SMTP_ENVID_MAX + 1];

		if ((*seen & 16) || !has_v)
			return fail(what_r, "Bad ENVID parameter syntax",
			    SMTP_PATH_DSN);
		if (vlen > SMTP_ENVID_MAX)
			return fail(what_r, "ENVID longer than 100 characters "
			    "(RFC 3461)", SMTP_PATH_DSN);
		memcpy(mp->envid, v, vlen);
		mp->envid[vlen] = '\0';
		if (smtp_xtext_decode(mp->envid, dec, sizeof(dec)) < 0) {
			mp->envid[0] = '\0';
			return fail(what_r, "Bad ENVID parameter syntax (xtext "
			    "of printable ASCII)", SMTP_PATH_DSN);
		}
		*seen |= 16;
	} else if (KEY_IS("AUTH")) {
		/* RFC 4954 5: accepted and ignored (we trust no one's). */
		if ((*seen & 32) || !has_v || vlen > 500 || !is_xtext(v, vlen))
			return fail(what_r, "bad AUTH parameter",
			    SMTP_PATH_PARAM);
		*seen |= 32;
	} else
		return fail(what_r, "unknown MAIL parameter", SMTP_PATH_PARAM);
	return SMTP_PATH_OK;
}

#define NOTIFY_SYNTAX "Bad NOTIFY parameter syntax " \
	"(NEVER, or SUCCESS, FAILURE, DELAY separated by commas)"

static enum smtp_path_error
rcpt_param(const char *k, size_t klen, const char *v, size_t vlen, int has_v,
    int utf8, struct smtp_rcpt_params *rp, unsigned *seen,
    const char **what_r)
{
	if (KEY_IS("NOTIFY")) {
		size_t i = 0;

		if ((*seen & 1) || !has_v)
			return fail(what_r, NOTIFY_SYNTAX, SMTP_PATH_DSN);
		while (i < vlen) {
			size_t j = i;
			const char *w = v + i;
			size_t wl;

			while (j < vlen && v[j] != ',')
				j++;
			wl = j - i;
#define W_IS(s) (wl == sizeof(s) - 1 && ascii_ncaseeq(w, s, wl))
			if (W_IS("NEVER"))
				rp->notify |= SMTP_NOTIFY_NEVER;
			else if (W_IS("SUCCESS"))
				rp->notify |= SMTP_NOTIFY_SUCCESS;
			else if (W_IS("FAILURE"))
				rp->notify |= SMTP_NOTIFY_FAILURE;
			else if (W_IS("DELAY"))
				rp->notify |= SMTP_NOTIFY_DELAY;
			else
				return fail(what_r, NOTIFY_SYNTAX,
				    SMTP_PATH_DSN);
#undef W_IS
			i = j + 1;
			if (j + 1 == vlen)	/* trailing comma */
				return fail(what_r, NOTIFY_SYNTAX,
				    SMTP_PATH_DSN);
		}
		if ((rp->notify & SMTP_NOTIFY_NEVER) &&
		    rp->notify != SMTP_NOTIFY_NEVER)
			return fail(what_r, "NOTIFY=NEVER cannot be combined "
			    "with other values", SMTP_PATH_DSN);
		*seen |= 1;
	} else if (KEY_IS("ORCPT")) {
		if ((*seen & 2) || !has_v)
			return fail(what_r, "Bad ORCPT parameter syntax",
			    SMTP_PATH_DSN);
		if (vlen > SMTP_ORCPT_MAX)
			return fail(what_r, "ORCPT longer than 500 characters "
			    "(RFC 3461)", SMTP_PATH_DSN);
		if (!orcpt_valid(v, vlen, utf8))
			return fail(what_r, "Bad ORCPT parameter syntax "
			    "(addr-type;xtext)", SMTP_PATH_DSN);
		memcpy(rp->orcpt, v, vlen);
		rp->orcpt[vlen] = '\0';
		*seen |= 2;
	} else
		return fail(what_r, "unknown RCPT parameter", SMTP_PATH_PARAM);
#undef KEY_IS
#undef VAL_IS
	return SMTP_PATH_OK;
}

static enum smtp_path_error
parse_params(const char *p, int is_rcpt, int utf8,
    struct smtp_mail_params *mp,
    struct smtp_rcpt_params *rp, const char **what_r)
{
	unsigned seen = 0;
	enum smtp_path_error e;

	while (*p != '\0') {
		const char *k, *v = NULL, *end;
		size_t klen, vlen = 0;
		size_t i;

		if (*p != ' ')
			return fail(what_r, "junk after address",
			    SMTP_PATH_SYNTAX);
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		k = p;
		end = strchr(p, ' ');
		if (end == NULL)
			end = p + strlen(p);
		for (i = 0; k + i < end && k[i] != '='; i++) {
			unsigned char c = (unsigned char)k[i];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
			    || (c >= '0' && c <= '9') || (c == '-' && i > 0)))
				return fail(what_r, "bad parameter name",
				    SMTP_PATH_PARAM);
		}
		klen = i;
		if (klen == 0)
			return fail(what_r, "bad parameter name",
			    SMTP_PATH_PARAM);
		if (k + klen < end) {
			v = k + klen + 1;
			vlen = (size_t)(end - v);
			if (vlen == 0)
				return fail(what_r, "empty parameter value",
				    SMTP_PATH_PARAM);
		}
		if (is_rcpt)
			e = rcpt_param(k, klen, v, vlen, v != NULL, utf8, rp,
			    &seen, what_r);
		else
			e = mail_param(k, klen, v, vlen, v != NULL, mp, &seen,
			    what_r);
		if (e != SMTP_PATH_OK)
			return e;
		p = end;
	}
	return SMTP_PATH_OK;
}

/* Check a domain in d[0..len) and copy it lower-cased into out. */
static enum smtp_path_error
parse_domain(const char *d, size_t len, int utf8_ok, char *out,
    const char **what_r)
{
	size_t i, label = 0;

	if (len == 0)
		return fail(what_r, "empty domain", SMTP_PATH_SYNTAX);
	if (d[0] == '[')
		return fail(what_r, "address literals not accepted",
		    SMTP_PATH_LITERAL);
	if (len > SMTP_DOMAIN_MAX)
		return fail(what_r, "domain too long", SMTP_PATH_TOO_LONG);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c == '.') {
			if (label == 0 || d[i - 1] == '-')
				return fail(what_r, i + 1 == len ?
				    "trailing dot in domain" :
				    "empty label in domain", SMTP_PATH_SYNTAX);
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || (c == '-' && label > 0)) {
			label++;
		} else if (c >= 0x80) {
			if (!utf8_ok)
				return fail(what_r, "non-ASCII domain without "
				    "SMTPUTF8", SMTP_PATH_UTF8);
			label++;
		} else
			return fail(what_r, "bad character in domain",
			    SMTP_PATH_SYNTAX);
		if (label > 63)
			return fail(what_r, "domain label too long",
			    SMTP_PATH_TOO_LONG);
		out[i] = (char)ascii_lower(c);
	}
	if (label == 0)
		return fail(what_r, "trailing dot in domain", SMTP_PATH_SYNTAX);
	if (d[len - 1] == '-')
		return fail(what_r, "bad domain", SMTP_PATH_SYNTAX);
	out[len] = '\0';
	return SMTP_PATH_OK;
}

enum smtp_path_error
smtp_path_parse(const char *arg, int is_rcpt, int utf8_ok,
    struct smtp_path *path_r, struct smtp_mail_params *mp,
    struct smtp_rcpt_params *rp, const char **what_r)
{
	const char *prefix = is_rcpt ? "TO:" : "FROM:";
	size_t plen = strlen(prefix);
	const char *p, *close, *at;
	size_t len, llen, i;
	enum smtp_path_error e;

	memset(path_r, 0, sizeof(*path_r));
	if (mp != NULL)
		memset(mp, 0, sizeof(*mp));
	if (rp != NULL)
		memset(rp, 0, sizeof(*rp));
	if (what_r != NULL)
		*what_r = "";
	if (strlen(arg) < plen || !ascii_ncaseeq(arg, prefix, plen))
		return fail(what_r, is_rcpt ? "syntax: RCPT TO:<address>" :
		    "syntax: MAIL FROM:<address>", SMTP_PATH_SYNTAX);
	p = arg + plen;
	while (*p == ' ')
		p++;
	if (*p != '<')
		return fail(what_r, "address must be in <>", SMTP_PATH_SYNTAX);
	p++;
	if (*p == '"')
		return fail(what_r, "quoted local parts not accepted",
		    SMTP_PATH_QUOTED);
	if (*p == '@')
		return fail(what_r, "source routes not accepted",
		    SMTP_PATH_ROUTE);
	close = strchr(p, '>');
	if (close == NULL)
		return fail(what_r, "missing >", SMTP_PATH_SYNTAX);
	len = (size_t)(close - p);
	if (memchr(p, '"', len) != NULL)
		return fail(what_r, "quoted local parts not accepted",
		    SMTP_PATH_QUOTED);
	if (memchr(p, '<', len) != NULL)
		return fail(what_r, "bad address", SMTP_PATH_SYNTAX);

	e = parse_params(close + 1, is_rcpt, utf8_ok, mp, rp, what_r);
	if (e != SMTP_PATH_OK)
		return e;
	if (!is_rcpt)
		utf8_ok = mp->smtputf8;

	if (len == 0) {
		if (is_rcpt)
			return fail(what_r, "null path not allowed here",
			    SMTP_PATH_NULL);
		path_r->null = 1;
		return SMTP_PATH_OK;
	}
	if (len > SMTP_PATH_MAX)
		return fail(what_r, "address too long", SMTP_PATH_TOO_LONG);
	for (i = 0; i < len; i++) {
		if ((unsigned char)p[i] >= 0x80) {
			if (!utf8_ok)
				return fail(what_r, "non-ASCII address "
				    "without SMTPUTF8", SMTP_PATH_UTF8);
			if (!smtp_utf8_valid((const uint8_t *)p, len))
				return fail(what_r, "invalid UTF-8 in address",
				    SMTP_PATH_UTF8);
			path_r->utf8 = 1;
			break;
		}
	}
	if (memchr(p, '%', len) != NULL || memchr(p, '!', len) != NULL)
		return fail(what_r, "'%' and '!' not accepted in addresses",
		    SMTP_PATH_RELAY_HACK);
	at = memchr(p, '@', len);
	if (at == NULL) {
		/* RFC 5321 4.5.1: "<Postmaster>" without a domain. */
		if (is_rcpt && len == 10 &&
		    ascii_ncaseeq(p, "postmaster", 10)) {
			memcpy(path_r->local, "postmaster", 11);
			memcpy(path_r->addr, "postmaster", 11);
			return SMTP_PATH_OK;
		}
		return fail(what_r, "address needs a domain", SMTP_PATH_SYNTAX);
	}
	llen = (size_t)(at - p);
	if (llen == 0)
		return fail(what_r, "empty local part", SMTP_PATH_SYNTAX);
	if (llen > SMTP_LOCAL_MAX)
		return fail(what_r, "local part too long", SMTP_PATH_TOO_LONG);
	for (i = 0; i < llen; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '.') {
			if (i == 0 || i + 1 == llen || p[i - 1] == '.')
				return fail(what_r, "bad dots in local part",
				    SMTP_PATH_SYNTAX);
		} else if (!is_atext(c) && c < 0x80)
			return fail(what_r, "bad character in local part",
			    SMTP_PATH_SYNTAX);
	}
	memcpy(path_r->local, p, llen);
	path_r->local[llen] = '\0';
	e = parse_domain(at + 1, len - llen - 1, utf8_ok, path_r->domain,
	    what_r);
	if (e != SMTP_PATH_OK)
		return e;
	if (memchr(at + 1, '@', len - llen - 1) != NULL)
		return fail(what_r, "bad address", SMTP_PATH_SYNTAX);
	/* len <= SMTP_PATH_MAX was checked: local '@' domain fits. */
	memcpy(path_r->addr, p, llen + 1);
	memcpy(path_r->addr + llen + 1, path_r->domain, len - llen - 1);
	path_r->addr[len] = '\0';
	return SMTP_PATH_OK;
}

/* ---- DATA ---- */

enum {
	D_BOL = 0,	/* at the start of a line */
	D_DOT,		/* a line started with '.' */
	D_DOTCR,	/* ".<CR>" at the start of a line */
	D_MID,		/* inside a line */
	D_CR,		/* <CR> inside a line */
};

void
smtp_data_init(struct smtp_data *d)
{
	memset(d, 0, sizeof(*d));
	d->state = D_BOL;
}

static void
data_emit(struct smtp_data *d, struct buf *out, const void *p, size_t n)
{
	d->size += n;
	if (d->faults & SMTP_DATA_F_TOO_BIG)
		return;
	if (buf_append(out, p, n) < 0)
		d->faults |= SMTP_DATA_F_TOO_BIG;
}

/* Bytes that end an ordinary run of DATA: CR, LF, NUL. */
static int
data_special(uint8_t c)
{
	return c == '\r' || c == '\n' || c == '\0';
}

/*
 * The first index from j on whose byte is special (or n).  Eight bytes at
 * a time: a word holds one of CR, LF or NUL when one of w, w ^ CRs and
 * w ^ LFs has a zero byte (the classic has-zero-byte test).
 */
static size_t
data_run_end(const uint8_t *p, size_t j, size_t n)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t highs = 0x8080808080808080ULL;
	uint64_t w, a, b;

	for (; n - j >= 8; j += 8) {
		memcpy(&w, p + j, 8);
		a = w ^ (ones * '\r');
		b = w ^ (ones * '\n');
		if ((((w - ones) & ~w) | ((a - ones) & ~a) |
		    ((b - ones) & ~b)) & highs)
			break;
	}
	while (j < n && !data_special(p[j]))
		j++;
	return j;
}

static void
data_line_bytes(struct smtp_data *d, size_t n)
{
	d->line_len += n;
	if (d->line_len > SMTP_TEXT_LINE_MAX)
		d->faults |= SMTP_DATA_F_LONG_LINE;
}

enum smtp_data_result
smtp_data_feed(struct smtp_data *d, const uint8_t *p, size_t n,
    struct buf *out, size_t *used_r)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = p[i];

		switch (d->state) {
		case D_BOL:
			d->line_len = 0;
			if (c == '.') {
				data_line_bytes(d, 1);
				d->state = D_DOT;
				i++;
				continue;
			}
			d->state = D_MID;
			continue;	/* the byte again, as MID */
		case D_DOT:
			if (c == '\r') {
				d->state = D_DOTCR;
				i++;
				continue;
			}
			/* A stuffed dot: dropped (RFC 5321 4.5.2). */
			d->state = D_MID;
			continue;
		case D_DOTCR:
			if (c == '\n') {
				*used_r = i + 1;
				return SMTP_DATA_END;
			}
			*used_r = i;
			return SMTP_DATA_BARE;
		case D_MID: {
			size_t j = i, run = i;

			/*
			 * Fast path: ordinary lines, each ended by <CR><LF>
			 * and followed by a line that does not start with a
			 * dot, go out as one run.  Whatever else comes (a
			 * dot, a bare CR or LF, a NUL, the end of this read)
			 * stops the run and is handled byte by byte below.
			 */
			for (;;) {
				j = data_run_end(p, j, n);
				data_line_bytes(d, j - i);
				i = j;
				if (n - j < 3 || p[j] != '\r' ||
				    p[j + 1] != '\n' || p[j + 2] == '.')
					break;
				i = j += 2;
				d->line_len = 0;
			}
			if (i > run) {
				data_emit(d, out, p + run, i - run);
				continue;
			}
			if (c == '\r') {
				d->state = D_CR;
				i++;
				continue;
			}
			if (c == '\n') {
				*used_r = i;
				return SMTP_DATA_BARE;
			}
			/* NUL */
			d->faults |= SMTP_DATA_F_NUL;
			data_emit(d, out, p + i, 1);
			data_line_bytes(d, 1);
			i++;
			continue;
		}
		case D_CR:
			if (c != '\n') {
				*used_r = i;
				return SMTP_DATA_BARE;
			}
			data_emit(d, out, "\r\n", 2);
			d->state = D_BOL;
			i++;
			continue;
		default:
			*used_r = i;
			return SMTP_DATA_BARE;
		}
	}
	*used_r = n;
	return SMTP_DATA_MORE;
}

/* ---- From: ---- */

/* Append the unfolded value of the From: field to val; -1 if too long. */
static int
header_find_from(const uint8_t *msg, size_t len, char *val, size_t valsz)
{
	size_t i = 0, vlen = 0;
	int found = 0;

	while (i < len) {
		size_t eol = i, next;
		int is_from;

		while (eol < len && msg[eol] != '\n')
			eol++;
		next = eol < len ? eol + 1 : len;
		if (eol > i && msg[eol - 1] == '\r')
			eol--;
		if (eol == i)	/* the blank line: end of header */
			break;
		is_from = (eol - i >= 5 && ascii_ncaseeq((const char *)msg + i,
		    "from:", 5));
		if (is_from) {
			size_t j;

			if (found)
				return -1;	/* repeated From: */
			found = 1;
			/* The value, then its continuation lines. */
			for (j = i + 5;;) {
				size_t n = eol - j;

				if (vlen + n + 1 >= valsz)
					return -1;
				memcpy(val + vlen, msg + j, n);
				vlen += n;
				val[vlen++] = ' ';
				i = next;
				if (i >= len || (msg[i] != ' ' &&
				    msg[i] != '\t'))
					break;
				eol = i;
				while (eol < len && msg[eol] != '\n')
					eol++;
				next = eol < len ? eol + 1 : len;
				if (eol > i && msg[eol - 1] == '\r')
					eol--;
				j = i;
			}
			continue;
		}
		i = next;
	}
	val[vlen] = '\0';
	return found;
}

/* Keep an address token: trim, check, lower-case the domain. */
static int
from_keep(const char *a, size_t n, char addrs[][SMTP_PATH_MAX + 1],
    size_t max, size_t *count)
{
	const char *at;
	size_t i;

	while (n > 0 && (*a == ' ' || *a == '\t')) {
		a++;
		n--;
	}
	while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t'))
		n--;
	if (n == 0)
		return 0;
	if (*count >= max || n > SMTP_PATH_MAX)
		return -1;
	at = memchr(a, '@', n);
	if (at == NULL || at == a || at == a + n - 1)
		return -1;
	for (i = 0; i < n; i++)
		if (a[i] == ' ' || a[i] == '\t' || a[i] == '<' || a[i] == '>')
			return -1;
	memcpy(addrs[*count], a, n);
	addrs[*count][n] = '\0';
	for (i = (size_t)(at - a); i < n; i++)
		addrs[*count][i] = (char)ascii_lower(
		    (unsigned char)addrs[*count][i]);
	(*count)++;
	return 0;
}

/* Case-insensitive: does the field at p (n bytes) start with name? */
static int
hdr_field_is(const uint8_t *p, size_t n, const char *name)
{
	size_t len = strlen(name);

	return n >= len && str_ncaseeq(p, name, len);
}

int
smtp_header_field(const uint8_t *msg, size_t len, size_t off, const char *name,
    size_t *start_r, size_t *end_r)
{
	size_t i = off;

	while (i < len) {
		size_t end = i;

		if (msg[i] == '\r' || msg[i] == '\n')
			return -1;	/* the blank line */
		for (;;) {
			const uint8_t *nl = memchr(msg + end, '\n', len - end);

			end = nl != NULL ? (size_t)(nl - msg) + 1 : len;
			if (end >= len || (msg[end] != ' ' && msg[end] != '\t'))
				break;
		}
		if (hdr_field_is(msg + i, end - i, name)) {
			*start_r = i;
			*end_r = end;
			return 0;
		}
		i = end;
	}
	return -1;
}

void
smtp_message_id(const uint8_t *msg, size_t len, char *out, size_t outsz)
{
	size_t s, e, i, o = 0;
	int in = 0;

	out[0] = '\0';
	if (outsz < 4 || smtp_header_field(msg, len, 0, "Message-ID:", &s,
	    &e) < 0)
		return;
	for (i = s + strlen("Message-ID:"); i < e && o + 2 < outsz; i++) {
		unsigned char c = msg[i];

		if (c == '<')
			in = 1;
		if (!in || c <= 0x20 || c >= 0x7f)
			continue;
		out[o++] = (char)c;
		if (c == '>')
			break;
	}
	out[o] = '\0';
	if (o < 3 || out[o - 1] != '>')
		out[0] = '\0';
}

size_t
smtp_header_len(const uint8_t *msg, size_t len)
{
	const uint8_t *p = memmem(msg, len, "\r\n\r\n", 4);

	return p != NULL ? (size_t)(p - msg) + 4 : len;
}

int
smtp_header_from(const uint8_t *msg, size_t len,
    char addrs[][SMTP_PATH_MAX + 1], size_t max)
{
	char val[SMTP_FROM_HEADER_MAX];
	char bare[SMTP_FROM_HEADER_MAX];
	size_t count = 0, blen = 0, i;
	int r, depth = 0, quoted = 0, angle = 0;
	const char *astart = NULL;
	int have_angle = 0;

	r = header_find_from(msg, len, val, sizeof(val));
	if (r <= 0)
		return r;
	/*
	 * One pass: comments dropped, quoted display names dropped, the
	 * content of <...> taken as the address; without <>, the bare text
	 * between commas is the address.
	 */
	for (i = 0;; i++) {
		char c = val[i];

		if (c == '\0' || (c == ',' && !quoted && depth == 0 &&
		    !angle)) {
			if (!have_angle) {
				if (from_keep(bare, blen, addrs, max,
				    &count) < 0)
					return -1;
			}
			blen = 0;
			have_angle = 0;
			if (c == '\0')
				break;
			continue;
		}
		if (quoted) {
			if (c == '\\' && val[i + 1] != '\0')
				i++;
			else if (c == '"')
				quoted = 0;
			continue;
		}
		if (depth > 0) {
			if (c == '\\' && val[i + 1] != '\0')
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			if (depth > 8)
				return -1;
			continue;
		}
		if (angle) {
			if (c == '>') {
				angle = 0;
				have_angle = 1;
				if (from_keep(astart, (size_t)(val + i -
				    astart), addrs, max, &count) < 0)
					return -1;
			}
			continue;
		}
		if (c == '"') {
			quoted = 1;
			blen = 0;
		} else if (c == '(')
			depth = 1;
		else if (c == '<') {
			if (have_angle)
				return -1;
			angle = 1;
			astart = val + i + 1;
		} else if (c == ':' || c == ';')
			return -1;	/* groups: not in a submission */
		else
			bare[blen++] = c;
	}
	if (quoted || depth > 0 || angle)
		return -1;
	return count == 0 ? -1 : (int)count;
}
