/*
 * imap_util.c - sequence sets, modified UTF-7, UTF-8 checks and string
 * quoting for responses (see imap_util.h).
 *
 * govmail-imapd workers.  Trusts nothing it parses.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap_util.h"
#include "strnum.h"
#include "xmalloc.h"

static int
range_cmp(const void *a, const void *b)
{
	const struct store_uid_range *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return 0;
}

static int
seq_number(const char *s, size_t len, uint32_t star, uint32_t *v_r)
{
	uint64_t v;
	const char *err;

	if (len == 1 && s[0] == '*') {
		*v_r = star;
		return 0;
	}
	if (len == 0 || s[0] == '0')
		return -1;
	if (strnum_u64_n(s, len, UINT32_MAX, &v, &err) < 0)
		return -1;
	*v_r = (uint32_t)v;
	return 0;
}

int
imap_seqset_parse(const char *s, uint32_t star,
    struct store_uid_range **ranges_r, size_t *n_r, const char **error_r)
{
	struct store_uid_range *r = NULL;
	size_t n = 0, cap = 0, i, out;
	const char *p = s;

	*ranges_r = NULL;
	*n_r = 0;
	if (*s == '\0')
		goto bad;
	while (*p != '\0') {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		const char *colon = memchr(p, ':', len);
		uint32_t lo, hi;

		if (colon != NULL) {
			if (seq_number(p, (size_t)(colon - p), star, &lo) < 0 ||
			    seq_number(colon + 1, len - (size_t)(colon - p) - 1,
			    star, &hi) < 0)
				goto bad;
		} else {
			if (seq_number(p, len, star, &lo) < 0)
				goto bad;
			hi = lo;
		}
		if (lo > hi) {
			uint32_t t = lo;

			lo = hi;
			hi = t;
		}
		if (n >= IMAP_SEQSET_RANGES_MAX) {
			free(r);
			*error_r = "Too many ranges in sequence set";
			return -1;
		}
		if (n == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			r = xreallocarray(r, cap, sizeof(*r));
		}
		r[n].lo = lo;
		r[n].hi = hi;
		n++;
		if (comma == NULL)
			break;
		p = comma + 1;
		if (*p == '\0')
			goto bad;
	}
	qsort(r, n, sizeof(*r), range_cmp);
	out = 0;
	for (i = 0; i < n; i++) {
		if (out > 0 && (r[out - 1].hi == UINT32_MAX ||
		    r[i].lo <= r[out - 1].hi + 1)) {
			if (r[i].hi > r[out - 1].hi)
				r[out - 1].hi = r[i].hi;
			continue;
		}
		r[out++] = r[i];
	}
	*ranges_r = r;
	*n_r = out;
	return 0;
bad:
	free(r);
	*error_r = "Invalid sequence set";
	return -1;
}

int
imap_seqset_contains(const struct store_uid_range *r, size_t n, uint32_t v)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v < r[mid].lo)
			hi = mid;
		else if (v > r[mid].hi)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int
b64val(char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(b64chars, c);
	return p == NULL ? -1 : (int)(p - b64chars);
}

static void
put_utf8(struct buf *out, uint32_t cp)
{
	uint8_t b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (uint8_t)(0xc0 | (cp >> 6));
		b[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (uint8_t)(0xe0 | (cp >> 12));
		b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (uint8_t)(0xf0 | (cp >> 18));
		b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	(void)buf_append(out, b, n);
}

int
imap_utf7_to_utf8(const char *in, struct buf *out, const char **error_r)
{
	const char *p = in;

	while (*p != '\0') {
		uint32_t bits = 0, high = 0;
		int nbits = 0, units = 0;

		if ((uint8_t)*p < 0x20 || (uint8_t)*p > 0x7e) {
			*error_r = "Mailbox name is not 7-bit (modified UTF-7)";
			return -1;
		}
		if (*p != '&') {
			(void)buf_append_byte(out, (uint8_t)*p++);
			continue;
		}
		p++;
		if (*p == '-') {
			(void)buf_append_byte(out, '&');
			p++;
			continue;
		}
		while (*p != '-') {
			int v = b64val(*p);

			if (v < 0)
				goto bad;
			p++;
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			if (nbits >= 16) {
				uint32_t u;

				nbits -= 16;
				u = (bits >> nbits) & 0xffff;
				bits &= (1u << nbits) - 1;
				units++;
				if (high != 0) {
					if (u < 0xdc00 || u > 0xdfff)
						goto bad;
					put_utf8(out, 0x10000 +
					    ((high - 0xd800) << 10) +
					    (u - 0xdc00));
					high = 0;
				} else if (u >= 0xd800 && u <= 0xdbff)
					high = u;
				else if (u >= 0xdc00 && u <= 0xdfff)
					goto bad;
				else if (u >= 0x20 && u <= 0x7e)
					goto bad;	/* not shortest */
				else
					put_utf8(out, u);
			}
		}
		p++;
		if (units == 0 || high != 0 || nbits >= 6 || bits != 0)
			goto bad;
		/* Two encoded runs back to back are not canonical. */
		if (p[0] == '&' && p[1] != '-')
			goto bad;
	}
	return 0;
bad:
	*error_r = "Invalid modified UTF-7 in mailbox name";
	return -1;
}


int
imap_utf8_valid(const uint8_t *s, size_t len)
{
	return str_utf8_valid(s, len);
}

static void
flush_b64(struct buf *out, uint32_t *bits, int *nbits)
{
	if (*nbits > 0) {
		(void)buf_append_byte(out,
		    (uint8_t)b64chars[(*bits << (6 - *nbits)) & 0x3f]);
		*nbits = 0;
		*bits = 0;
	}
}

int
imap_utf8_to_utf7(const char *in, struct buf *out, const char **error_r)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t len = strlen(in), i = 0;
	int in_b64 = 0, nbits = 0;
	uint32_t bits = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = str_utf8_decode(s + i, len - i, &cp);

		if (n == 0) {
			*error_r = "Invalid UTF-8 in mailbox name";
			return -1;
		}
		i += n;
		if (cp >= 0x20 && cp <= 0x7e) {
			if (in_b64) {
				flush_b64(out, &bits, &nbits);
				(void)buf_append_byte(out, '-');
				in_b64 = 0;
			}
			if (cp == '&')
				(void)buf_append_str(out, "&-");
			else
				(void)buf_append_byte(out, (uint8_t)cp);
			continue;
		}
		if (!in_b64) {
			(void)buf_append_byte(out, '&');
			in_b64 = 1;
		}
		{
			uint32_t u[2];
			int nu = 1, k;

			if (cp >= 0x10000) {
				u[0] = 0xd800 + ((cp - 0x10000) >> 10);
				u[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
				nu = 2;
			} else
				u[0] = cp;
			for (k = 0; k < nu; k++) {
				bits = (bits << 16) | u[k];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					(void)buf_append_byte(out, (uint8_t)
					    b64chars[(bits >> nbits) & 0x3f]);
				}
				bits &= (1u << nbits) - 1;
			}
		}
	}
	if (in_b64) {
		flush_b64(out, &bits, &nbits);
		(void)buf_append_byte(out, '-');
	}
	return 0;
}

void
imap_append_nstring(struct buf *out, const char *s, size_t len, int utf8)
{
	size_t i;
	int literal = 0;

	if (s == NULL) {
		(void)buf_append_str(out, "NIL");
		return;
	}
	for (i = 0; i < len; i++) {
		uint8_t c = (uint8_t)s[i];

		if (c == '\r' || c == '\n' || c == 0 ||
		    (c >= 0x80 && !utf8)) {
			literal = 1;
			break;
		}
	}
	if (!literal && utf8 && !imap_utf8_valid((const uint8_t *)s, len))
		literal = 1;
	if (literal) {
		(void)buf_printf(out, "{%zu}\r\n", len);
		(void)buf_append(out, s, len);
		return;
	}
	(void)buf_append_byte(out, '"');
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			(void)buf_append_byte(out, '\\');
		(void)buf_append_byte(out, (uint8_t)s[i]);
	}
	(void)buf_append_byte(out, '"');
}

void
imap_append_string(struct buf *out, const char *s, int utf8)
{
	imap_append_nstring(out, s, s == NULL ? 0 : strlen(s), utf8);
}
