/*
 * log.h - one line per event, key=value, to syslog (mail facility) or stderr.
 *
 * Every process.  A line looks like
 *     govmail-smtpd[123]: s=7f3a2c event=connect ip=127.0.0.1
 * where the prefix is the role given to log_init() and "s=" is the session
 * id when one is set.  log_warn*() append ": strerror(errno)"; the *x
 * variants do not (OpenSMTPD's convention).  log_fatal*() log and exit(1);
 * use them for broken invariants and start-up failures only.
 *
 * Text that came from a client must go through log_escape() first: it turns
 * control bytes, backslashes, quotes, spaces, '=' and non-ASCII into \xNN so
 * that nothing a client sends can forge a log line or a key=value pair.
 */
#ifndef GOVMAIL_LOG_H
#define GOVMAIL_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_target {
	LOG_TO_STDERR,
	LOG_TO_SYSLOG,
};

enum log_level {
	LOG_LEVEL_ERR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Set the role ("govmail-smtpd"), the target and the most verbose level kept. */
void log_init(const char *role, enum log_target target, enum log_level level);
/* Parse "err|warn|info|debug"; -1 if unknown. */
int log_level_parse(const char *s, enum log_level *level_r);
enum log_level log_get_level(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void log_fatalx(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void log_vlog(enum log_level level, int with_errno, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* Output bytes per escaped input byte ("\xNN"). */
#define LOG_ESCAPE_WIDTH 4

/*
 * Escape len bytes of untrusted text into out (size outsz > 0, always
 * NUL-terminated).  If the whole escaped text fits in outsz - 1 bytes it is
 * written whole; otherwise as much as fits in outsz - 4 bytes, never
 * splitting an escape, followed by "..." (fewer dots if outsz < 4).
 * A buffer of len * LOG_ESCAPE_WIDTH + 1 bytes always holds the whole text.
 * Returns out (untouched if outsz is 0).
 */
char *log_escape(const void *data, size_t len, char *out, size_t outsz);

#endif
