/*
 * buf.h - growable byte buffers with a hard maximum, and text on top.
 *
 * Every process.  A struct buf holds len bytes in cap bytes of storage and
 * never grows past max: an append that would exceed max fails with -1 and
 * leaves the buffer unchanged, so a client cannot make a buffer grow beyond
 * the limit its caller named.  data is always followed by a NUL byte (not
 * counted in len), so text in a buf can be passed to C string functions.
 *
 * A zeroed struct buf is not usable: call buf_init().  buf_free() releases
 * the storage (and wipes it first when buf->secret is set).
 */
#ifndef GOVMAIL_BUF_H
#define GOVMAIL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;	/* hard limit on len; SIZE_MAX - 1 for "unbounded" */
	int secret;	/* wipe with sodium_memzero before freeing */
};

#define BUF_UNBOUNDED ((size_t)-2)

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* Forget the contents but keep the storage. */
void buf_reset(struct buf *b);
/* Release the storage of an empty buffer (idle connections own none). */
void buf_shrink(struct buf *b);

/* Make room for n more bytes; -1 if len + n would exceed max. */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_append_byte(struct buf *b, uint8_t c);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Remove the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Set len to n (n <= len), keeping the NUL terminator. */
void buf_truncate(struct buf *b, size_t n);
/* Pointer to free space after len, and commit n bytes written there. */
uint8_t *buf_tail(struct buf *b);
void buf_commit(struct buf *b, size_t n);
/* Take ownership of the data as a NUL-terminated string; b is reset empty. */
char *buf_steal(struct buf *b);
/* The contents as text (data is always NUL-terminated). */
static inline const char *
buf_str(const struct buf *b)
{
	return (const char *)b->data;
}

/*
 * Bounded string helpers standing in for the banned C string copies.
 * str_copy/str_append copy at most dstsz-1 bytes, always NUL-terminate,
 * and return -1 if the result was truncated.
 */
int str_copy(char *dst, size_t dstsz, const char *src);
int str_append(char *dst, size_t dstsz, const char *src);
/* ASCII case-insensitive compare of NUL-terminated strings. */
int str_casecmp(const char *a, const char *b);
/* 1 if the first n bytes of a and b are equal, ASCII case-insensitively
 * (any bytes, NULs included; no locale). */
int str_ncaseeq(const void *a, const void *b, size_t n);
/* The first place in hay (hlen bytes) where needle (nlen bytes) occurs,
 * ASCII case-insensitively, or NULL; an empty needle is found at hay. */
const void *str_casefind(const void *hay, size_t hlen, const void *needle,
    size_t nlen);
/* Lowercase ASCII letters in place. */
void str_lower(char *s);
/* 1 if s starts with prefix. */
int str_has_prefix(const char *s, const char *prefix);
/* s without leading spaces and tabs, trailing ones cut off in place. */
char *str_trim(char *s);
/*
 * UTF-8 (RFC 3629): the length (1..4) of the well-formed sequence that
 * starts s[0..len), its code point in *cp_r; 0 if there is none (a stray
 * or truncated byte, an overlong form, a surrogate, beyond U+10FFFF).
 * len must be at least 1.
 */
size_t str_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp_r);
/* 1 if s[0..len) is well-formed UTF-8 throughout. */
int str_utf8_valid(const uint8_t *s, size_t len);

#endif
