/*
 * log.c - event logging to syslog or stderr.  Every process.
 * Trusts its format strings; untrusted text must be passed via log_escape().
 */
#include "autoconf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_role = "govmail";
static enum log_target log_target = LOG_TO_STDERR;
static enum log_level log_level = LOG_LEVEL_INFO;

void
log_init(const char *role, enum log_target target, enum log_level level)
{
	log_role = role;
	log_target = target;
	log_level = level;
	if (target == LOG_TO_SYSLOG)
		openlog(role, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

int
log_level_parse(const char *s, enum log_level *level_r)
{
	static const char *const names[] = { "err", "warn", "info", "debug" };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*level_r = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

void
log_vlog(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char msg[2048];
	int saved = errno;
	int n;

	if (level > log_level)
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		n = 0;
	if (with_errno && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(saved));
	if (log_target == LOG_TO_SYSLOG) {
		syslog(prio[level], "%s", msg);
	} else {
		fprintf(stderr, "%s[%ld]: %s\n", log_role, (long)getpid(), msg);
		fflush(stderr);
	}
	errno = saved;
}

#define LOG_FN(name, level, with_errno)				\
	void							\
	name(const char *fmt, ...)				\
	{							\
		va_list ap;					\
		va_start(ap, fmt);				\
		log_vlog(level, with_errno, fmt, ap);		\
		va_end(ap);					\
	}

LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_ERR, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vlog(LOG_LEVEL_ERR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Bytes one input byte takes in log_escape()'s output. */
static size_t
log_escape_width(unsigned char c)
{
	/* Space and '=' too: a client's text must not forge key=value. */
	if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"' || c == ' '
	    || c == '=')
		return LOG_ESCAPE_WIDTH;
	return 1;
}

char *
log_escape(const void *data, size_t len, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = data;
	size_t i, o = 0, total = 0, limit, dots;
	int fits;

	if (outsz == 0)
		return out;
	/* Does the whole text fit?  (Stop counting once it cannot.) */
	for (i = 0; i < len && total < outsz; i++)
		total += log_escape_width(p[i]);
	fits = i == len && total < outsz;
	/* If not, keep room for "..." and the NUL. */
	limit = fits ? outsz - 1 : (outsz > 4 ? outsz - 4 : 0);
	for (i = 0; i < len; i++) {
		unsigned char c = p[i];
		size_t need = log_escape_width(c);

		if (o + need > limit)
			break;
		if (need == LOG_ESCAPE_WIDTH) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		} else {
			out[o++] = (char)c;
		}
	}
	if (!fits) {
		dots = outsz - 1 - o < 3 ? outsz - 1 - o : 3;
		memset(out + o, '.', dots);
		o += dots;
	}
	out[o] = '\0';
	return out;
}
