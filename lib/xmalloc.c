/*
 * xmalloc.c - allocation helpers that abort instead of returning NULL.
 * Used by every process; trusts nothing but its arguments.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xmalloc.h"

static void
oom(size_t size)
{
	log_fatalx("out of memory allocating %zu bytes", size);
}

void *
xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		oom(size);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size);

	if (p == NULL)
		oom(xmul(nmemb, size));
	return p;
}

void *
xreallocarray(void *ptr, size_t nmemb, size_t size)
{
	size_t n = xmul(nmemb, size);
	void *p = realloc(ptr, n == 0 ? 1 : n);

	if (p == NULL)
		oom(n);
	return p;
}

char *
xstrdup(const char *s)
{
	return xmemdup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	return xmemdup(s, strnlen(s, n));
}

void *
xmemdup(const void *p, size_t n)
{
	char *d = xmalloc(xadd(n, 1));

	if (n > 0)
		memcpy(d, p, n);
	d[n] = '\0';
	return d;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	return s;
}

size_t
xmul(size_t a, size_t b)
{
	size_t r;

	if (__builtin_mul_overflow(a, b, &r))
		log_fatalx("size overflow: %zu * %zu", a, b);
	return r;
}

size_t
xadd(size_t a, size_t b)
{
	size_t r;

	if (__builtin_add_overflow(a, b, &r))
		log_fatalx("size overflow: %zu + %zu", a, b);
	return r;
}
