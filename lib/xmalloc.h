/*
 * xmalloc.h - allocation that never returns NULL.
 *
 * Every process.  Memory is bounded by configured limits, not by checking
 * malloc: on exhaustion these abort, and a daemon's parent restarts the
 * worker.  Size arithmetic goes through xmul/xadd, which abort on overflow.
 */
#ifndef GOVMAIL_XMALLOC_H
#define GOVMAIL_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* Copy of the first n bytes of s (or fewer if s is shorter), NUL-terminated. */
char *xstrndup(const char *s, size_t n);
/* Copy of n bytes of p, plus a NUL so the result may be read as text. */
void *xmemdup(const void *p, size_t n);
/* printf into a fresh string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Overflow-checked size arithmetic; abort on overflow. */
size_t xmul(size_t a, size_t b);
size_t xadd(size_t a, size_t b);

#endif
