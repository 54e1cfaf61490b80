/*
 * buf.c - bounded byte buffers and bounded string helpers.  Every process.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "log.h"
#include "xmalloc.h"

void
buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
	b->secret = 0;
}

static void
buf_release(struct buf *b)
{
	if (b->data != NULL && b->secret)
		sodium_memzero(b->data, b->cap);
	free(b->data);
	b->data = NULL;
	b->cap = 0;
}

void
buf_free(struct buf *b)
{
	buf_release(b);
	b->len = 0;
}

void
buf_reset(struct buf *b)
{
	if (b->secret && b->data != NULL)
		sodium_memzero(b->data, b->cap);
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
buf_shrink(struct buf *b)
{
	if (b->len == 0)
		buf_release(b);
}

int
buf_reserve(struct buf *b, size_t n)
{
	size_t need, ncap;
	uint8_t *nd;

	if (n > b->max || b->len > b->max - n)
		return -1;
	need = b->len + n + 1;		/* + NUL */
	if (need <= b->cap)
		return 0;
	ncap = b->cap < 64 ? 64 : b->cap;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (b->max != BUF_UNBOUNDED && ncap > b->max + 1)
		ncap = b->max + 1;
	if (b->secret) {
		/* Never leave a copy of a secret behind in freed memory. */
		nd = xmalloc(ncap);
		if (b->data != NULL) {
			memcpy(nd, b->data, b->len + 1);
			sodium_memzero(b->data, b->cap);
			free(b->data);
		}
	} else {
		nd = xreallocarray(b->data, ncap, 1);
	}
	if (b->data == NULL)
		nd[0] = '\0';
	b->data = nd;
	b->cap = ncap;
	return 0;
}

int
buf_append(struct buf *b, const void *data, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n > 0)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_append_byte(struct buf *b, uint8_t c)
{
	return buf_append(b, &c, 1);
}

int
buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	/* Do not leave a copy of the moved tail of a secret behind. */
	if (b->secret)
		sodium_memzero(b->data + b->len, n);
	b->data[b->len] = '\0';
}

void
buf_truncate(struct buf *b, size_t n)
{
	if (n < b->len) {
		b->len = n;
		b->data[n] = '\0';
	}
}

uint8_t *
buf_tail(struct buf *b)
{
	return b->data + b->len;
}

void
buf_commit(struct buf *b, size_t n)
{
	if (b->data == NULL || n > b->cap - b->len - 1)
		log_fatalx("buf_commit past capacity");
	b->len += n;
	b->data[b->len] = '\0';
}

char *
buf_steal(struct buf *b)
{
	char *s;

	if (b->data == NULL)
		return xstrdup("");
	s = (char *)b->data;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return s;
}

int
str_copy(char *dst, size_t dstsz, const char *src)
{
	size_t n = strlen(src);

	if (dstsz == 0)
		return -1;
	if (n >= dstsz) {
		memcpy(dst, src, dstsz - 1);
		dst[dstsz - 1] = '\0';
		return -1;
	}
	memcpy(dst, src, n + 1);
	return 0;
}

int
str_append(char *dst, size_t dstsz, const char *src)
{
	size_t l = strnlen(dst, dstsz);

	if (l == dstsz)
		return -1;
	return str_copy(dst + l, dstsz - l, src);
}

int
str_casecmp(const char *a, const char *b)
{
	unsigned char ca, cb;

	do {
		ca = (unsigned char)*a++;
		cb = (unsigned char)*b++;
		if (ca >= 'A' && ca <= 'Z')
			ca += 'a' - 'A';
		if (cb >= 'A' && cb <= 'Z')
			cb += 'a' - 'A';
	} while (ca == cb && ca != '\0');
	return (int)ca - (int)cb;
}

static unsigned char
ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

int
str_ncaseeq(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	size_t i;

	for (i = 0; i < n; i++)
		if (ascii_lower(x[i]) != ascii_lower(y[i]))
			return 0;
	return 1;
}

const void *
str_casefind(const void *hay, size_t hlen, const void *needle, size_t nlen)
{
	const unsigned char *h = hay, *nd = needle;
	unsigned char first;
	size_t i;

	if (nlen == 0)
		return hay;
	if (nlen > hlen)
		return NULL;
	/* Test the first byte inline: most positions fail there (SEARCH
	 * runs this over whole message bodies). */
	first = ascii_lower(nd[0]);
	for (i = 0; i + nlen <= hlen; i++)
		if (ascii_lower(h[i]) == first &&
		    str_ncaseeq(h + i + 1, nd + 1, nlen - 1))
			return h + i;
	return NULL;
}

void
str_lower(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + ('a' - 'A'));
	}
}

int
str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

char *
str_trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

size_t
str_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp_r)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80) {
		*cp_r = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n;
}

int
str_utf8_valid(const uint8_t *s, size_t len)
{
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		if ((n = str_utf8_decode(s + i, len - i, &cp)) == 0)
			return 0;
		i += n;
	}
	return 1;
}
