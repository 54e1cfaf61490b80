/*
 * govmailctl.c - the operator's command: main(), the command table, and
 * the helpers every command uses (errors, exit statuses, escaping,
 * password input, opening the store).
 *
 * Run by the operator (root or the govmail user) on the mail server, and
 * by quickstart.sh's demo step.  Its input is the command line, a
 * password on stdin, a file or the terminal, and messages on stdin (deliver):
 * the operator is trusted to name things, not to type them correctly, so
 * every argument is checked and every failure is one line on stderr with a
 * documented exit status (govmailctl(8)).  Text that came from mail
 * clients (subjects, mailbox names) is escaped before it is printed.
 *
 * SECURITY: there is no option that takes a password; passwords come from a
 * file, a pipe or the terminal, so they never show in ps output or shell
 * history, and they are wiped from memory after use.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "ctl.h"
#include "log.h"
#include "mailbox.h"
#include "xmalloc.h"

#define CTL_PROG "govmailctl"
/* Most words in a command name ("list member add"). */
#define CTL_WORDS_MAX 3

/* tools/ctl_notice.c */
extern const struct ctl_cmd ctl_notice_cmds[];

static const struct ctl_cmd *const ctl_families[] = {
	ctl_account_cmds,
	ctl_mail_cmds,
	ctl_admin_cmds,
	ctl_notice_cmds,
};
#define CTL_NFAMILIES (sizeof(ctl_families) / sizeof(ctl_families[0]))

static const struct ctl_cmd *ctl_current;

/* ---- messages ------------------------------------------------------- */

/* Replace anything that would break the line (or the terminal) with '?'. */
static void
ctl_one_line(struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++) {
		if (b->data[i] < 0x20 || b->data[i] == 0x7f)
			b->data[i] = '?';
	}
}

static void
ctl_vline(struct ctl *ctl, const char *fmt, va_list ap)
{
	struct buf b;

	buf_init(&b, BUF_UNBOUNDED);
	buf_printf(&b, "%s: ", CTL_PROG);
	if (ctl != NULL && ctl->cmd != NULL)
		buf_printf(&b, "%s: ", ctl->cmd);
	buf_vprintf(&b, fmt, ap);
	ctl_one_line(&b);
	fflush(stdout);
	fprintf(stderr, "%s\n", buf_str(&b));
	fflush(stderr);
	buf_free(&b);
}

int
ctl_fail(struct ctl *ctl, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ctl_vline(ctl, fmt, ap);
	va_end(ap);
	return code;
}

int
ctl_usage(struct ctl *ctl, const char *fmt, ...)
{
	struct buf b;
	va_list ap;

	buf_init(&b, BUF_UNBOUNDED);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (ctl_current != NULL)
		ctl_fail(ctl, CTL_EX_USAGE, "%s (usage: %s %s)", buf_str(&b),
		    CTL_PROG, ctl_current->usage);
	else
		ctl_fail(ctl, CTL_EX_USAGE, "%s (try %s --help)", buf_str(&b),
		    CTL_PROG);
	buf_free(&b);
	return CTL_EX_USAGE;
}

int
ctl_help(struct ctl *ctl)
{
	if (ctl_current != NULL)
		printf("usage: %s %s\n%s\n", CTL_PROG, ctl_current->usage,
		    ctl_current->summary);
	return ctl_flush(ctl);
}

int
ctl_flush(struct ctl *ctl)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		return ctl_fail(ctl, CTL_EX_IOERR, "writing output: %s",
		    strerror(errno));
	return CTL_EX_OK;
}

int
ctl_exit_code(int store_err)
{
	switch (store_err) {
	case STORE_OK:
		return CTL_EX_OK;
	case STORE_ETEMP:
		return CTL_EX_TEMPFAIL;
	case STORE_ENOTFOUND:
		return CTL_EX_NOUSER;
	case STORE_EEXISTS:
		return CTL_EX_CANTCREAT;
	case STORE_EINVAL:
		return CTL_EX_DATAERR;
	case STORE_EQUOTA:
		return CTL_EX_TEMPFAIL;
	case STORE_EPERM:
		return CTL_EX_NOPERM;
	case STORE_ETOOBIG:
		return CTL_EX_DATAERR;
	case STORE_EDAMAGED:
		return CTL_EX_DAMAGE;
	default:
		return CTL_EX_SOFTWARE;
	}
}

int
ctl_store_fail(struct ctl *ctl, int err, const char *what, const char *error)
{
	const char *reason = error != NULL && *error != '\0' ? error :
	    store_strerror(err);

	if (what != NULL)
		return ctl_fail(ctl, ctl_exit_code(err), "%s: %s", what,
		    reason);
	return ctl_fail(ctl, ctl_exit_code(err), "%s", reason);
}

/* ---- configuration and store ---------------------------------------- */

int
ctl_config(struct ctl *ctl)
{
	const char *path, *error = NULL;

	if (ctl->cfg != NULL)
		return CTL_EX_OK;
	path = config_path(ctl->conf_arg);
	if (config_load(path, &ctl->cfg, &error) != 0) {
		ctl->cfg = NULL;
		return ctl_fail(ctl, CTL_EX_CONFIG, "%s",
		    error != NULL ? error : path);
	}
	return CTL_EX_OK;
}

int
ctl_store(struct ctl *ctl, enum ctl_store_mode mode)
{
	const char *error = NULL;
	unsigned flags;
	int rc;

	if ((rc = ctl_config(ctl)) != 0)
		return rc;
	if (ctl->store != NULL || mode == CTL_STORE_NONE)
		return CTL_EX_OK;
	flags = mode == CTL_STORE_CREATE ? STORE_OPEN_CREATE : 0;
	rc = store_open(ctl->cfg, flags, &ctl->store, &error);
	if (rc != 0) {
		ctl->store = NULL;
		return ctl_fail(ctl, rc == STORE_ETEMP ? CTL_EX_TEMPFAIL :
		    CTL_EX_UNAVAILABLE, "cannot open the store %s: %s",
		    config_path_get(ctl->cfg, "store", "path"),
		    error != NULL ? error : store_strerror(rc));
	}
	return CTL_EX_OK;
}

/* ---- options -------------------------------------------------------- */

int
ctl_getopt(struct ctl *ctl, int argc, char **argv, const char *shortopts,
    const struct option *longopts)
{
	const char *text;
	size_t len;
	int c, longindex;

	opterr = 0;
	longindex = -1;
	c = getopt_long(argc, argv, shortopts, longopts, &longindex);
	if (c != '?' && c != ':' && c != -1 && longindex >= 0) {
		/*
		 * SECURITY: no abbreviated long options.  getopt_long would
		 * take "--password SECRET" as "--password-file SECRET" and
		 * then name the secret in an error line.
		 */
		text = optarg != NULL && optind >= 2 &&
		    optarg == argv[optind - 1] ? argv[optind - 2] :
		    argv[optind - 1];
		len = strlen(longopts[longindex].name);
		if (strncmp(text, "--", 2) != 0 ||
		    strncmp(text + 2, longopts[longindex].name, len) != 0 ||
		    (text[2 + len] != '\0' && text[2 + len] != '=')) {
			ctl_usage(ctl, "unknown option (options may not be "
			    "abbreviated)");
			return '?';
		}
	}
	if (c == '?') {
		if (optopt != 0)
			ctl_usage(ctl, "unknown option '-%c'", optopt);
		else {
			/* Never echo a value given with '=' (a secret?). */
			text = argv[optind - 1];
			ctl_usage(ctl, "unknown option '%.*s'",
			    (int)strcspn(text, "="), text);
		}
		return '?';
	}
	if (c == ':') {
		ctl_usage(ctl, "option '%s' needs a value", argv[optind - 1]);
		return '?';
	}
	return c;
}

/* ---- escaping ------------------------------------------------------- */

/* Length of a valid, printable UTF-8 sequence at s (n bytes left), or 0. */
static size_t
ctl_utf8_len(const uint8_t *s, size_t n)
{
	uint32_t cp;
	size_t len = str_utf8_decode(s, n, &cp);

	if (len < 2)
		return 0;		/* not a multi-byte sequence */
	if (cp >= 0x80 && cp <= 0x9f)
		return 0;		/* C1 controls */
	if (cp == 0x2028 || cp == 0x2029 || cp == 0x202e)
		return 0;		/* line breaks, bidi override */
	return len;
}

void
ctl_escape(struct buf *out, const char *text, size_t len)
{
	const uint8_t *s = (const uint8_t *)text;
	size_t i = 0, n, start = out->len;

	while (i < len) {
		if (out->len - start >= CTL_ESCAPE_MAX) {
			buf_append_str(out, "...");
			return;
		}
		if (s[i] == '\\') {
			buf_append_str(out, "\\\\");
			i++;
		} else if (s[i] >= 0x20 && s[i] < 0x7f) {
			buf_append_byte(out, s[i]);
			i++;
		} else if (s[i] >= 0x80 && (n = ctl_utf8_len(s + i,
		    len - i)) > 0) {
			buf_append(out, s + i, n);
			i += n;
		} else {
			buf_printf(out, "\\x%02x", s[i]);
			i++;
		}
	}
}

void
ctl_print_escaped(FILE *f, const char *text)
{
	struct buf b;

	buf_init(&b, BUF_UNBOUNDED);
	ctl_escape(&b, text, strlen(text));
	fputs(buf_str(&b) != NULL ? buf_str(&b) : "", f);
	buf_free(&b);
}

/* ---- addresses ------------------------------------------------------ */

int
ctl_check_address(struct ctl *ctl, const char *address)
{
	const char *at;
	size_t len = strlen(address), i;

	if (len == 0)
		return ctl_fail(ctl, CTL_EX_DATAERR, "empty address");
	if (len > STORE_ADDRESS_MAX)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "address longer than %d bytes", STORE_ADDRESS_MAX);
	for (i = 0; i < len; i++) {
		uint8_t c = (uint8_t)address[i];

		if (c <= 0x20 || c == 0x7f)
			return ctl_fail(ctl, CTL_EX_DATAERR,
			    "address with a space or control byte");
	}
	at = strrchr(address, '@');
	if (at == NULL || at == address || at[1] == '\0' ||
	    strchr(address, '@') != at)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "not an address (local@domain): %s", address);
	if ((size_t)(at - address) > STORE_LOCALPART_MAX)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "local part longer than %d bytes", STORE_LOCALPART_MAX);
	return CTL_EX_OK;
}

/* ---- passwords ------------------------------------------------------ */

static struct termios ctl_saved_tty;
static volatile sig_atomic_t ctl_tty_changed;

static void
ctl_tty_signal(int sig)
{
	if (ctl_tty_changed)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Read fd to EOF (or, if line != 0, to the first LF) into pw.  Returns 0,
 * -1 on a read error (errno set), -2 if longer than pw's maximum.
 */
static int
ctl_read_secret(int fd, int line, struct buf *pw)
{
	uint8_t c;
	ssize_t n;

	for (;;) {
		if (buf_reserve(pw, 1) != 0)
			return -2;
		if (line)
			n = read(fd, &c, 1);
		else
			n = read(fd, buf_tail(pw), pw->cap - pw->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (line) {
			buf_append_byte(pw, c);
			if (c == '\n')
				return 0;
		} else
			buf_commit(pw, (size_t)n);
	}
}

static int
ctl_prompt(struct ctl *ctl, const char *prompt, struct buf *pw)
{
	struct termios raw;
	struct sigaction sa, old_int, old_term, old_hup;
	int rc;

	if (tcgetattr(STDIN_FILENO, &ctl_saved_tty) != 0)
		return ctl_fail(ctl, CTL_EX_NOINPUT, "terminal: %s",
		    strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ctl_tty_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	raw = ctl_saved_tty;
	raw.c_lflag &= ~(tcflag_t)ECHO;
	raw.c_lflag |= ECHONL;
	/* Echo off before the prompt shows: an answer typed as soon as the
	   prompt appears must not be echoed (TCSAFLUSH drops typeahead). */
	ctl_tty_changed = 1;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
	fputs(prompt, stderr);
	fflush(stderr);
	rc = ctl_read_secret(STDIN_FILENO, 1, pw);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &ctl_saved_tty);
	ctl_tty_changed = 0;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	if (rc == -1)
		return ctl_fail(ctl, CTL_EX_NOINPUT, "terminal: %s",
		    strerror(errno));
	if (rc == -2)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "password longer than %d bytes", STORE_PASSWORD_MAX);
	return CTL_EX_OK;
}

/* Drop one trailing LF or CRLF. */
static void
ctl_chomp(struct buf *pw)
{
	if (pw->len > 0 && pw->data[pw->len - 1] == '\n') {
		buf_truncate(pw, pw->len - 1);
		if (pw->len > 0 && pw->data[pw->len - 1] == '\r')
			buf_truncate(pw, pw->len - 1);
	}
}

int
ctl_read_file(struct ctl *ctl, const char *path, size_t max, struct buf *out)
{
	int fd, rc;

	buf_init(out, max);
	if (strcmp(path, "-") == 0)
		fd = STDIN_FILENO;
	else if ((fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC)) == -1)
		return ctl_fail(ctl, CTL_EX_NOINPUT, "%s: %s", path,
		    strerror(errno));
	rc = ctl_read_secret(fd, 0, out);
	if (fd != STDIN_FILENO)
		close(fd);
	if (rc == -1)
		return ctl_fail(ctl, CTL_EX_NOINPUT, "%s: %s", path,
		    strerror(errno));
	if (rc == -2)
		return ctl_fail(ctl, CTL_EX_DATAERR, "%s: larger than %zu "
		    "bytes", path, max);
	return CTL_EX_OK;
}

int
ctl_read_password(struct ctl *ctl, const char *file, int confirm,
    struct buf *pw)
{
	struct buf again;
	int fd, rc, same;

	buf_init(pw, CTL_PASSWORD_READ_MAX);
	pw->secret = 1;
	if (file != NULL || !isatty(STDIN_FILENO)) {
		if (file != NULL) {
			fd = open(file, O_RDONLY | O_NOCTTY | O_CLOEXEC);
			if (fd == -1)
				return ctl_fail(ctl, CTL_EX_NOINPUT, "%s: %s",
				    file, strerror(errno));
		} else
			fd = STDIN_FILENO;
		rc = ctl_read_secret(fd, 0, pw);
		if (fd != STDIN_FILENO)
			close(fd);
		if (rc == -1)
			return ctl_fail(ctl, CTL_EX_NOINPUT,
			    "reading the password: %s", strerror(errno));
		if (rc == -2)
			return ctl_fail(ctl, CTL_EX_DATAERR,
			    "password longer than %d bytes",
			    STORE_PASSWORD_MAX);
	} else {
		if ((rc = ctl_prompt(ctl, "Password: ", pw)) != 0)
			return rc;
		if (confirm) {
			buf_init(&again, CTL_PASSWORD_READ_MAX);
			again.secret = 1;
			rc = ctl_prompt(ctl, "Password again: ", &again);
			same = rc == 0 && again.len == pw->len &&
			    (pw->len == 0 || sodium_memcmp(again.data,
			    pw->data, pw->len) == 0);
			buf_free(&again);
			if (rc != 0)
				return rc;
			if (!same)
				return ctl_fail(ctl, CTL_EX_DATAERR,
				    "the passwords do not match");
		}
	}
	ctl_chomp(pw);
	if (pw->len == 0)
		return ctl_fail(ctl, CTL_EX_DATAERR, "empty password");
	if (pw->len > STORE_PASSWORD_MAX)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "password longer than %d bytes", STORE_PASSWORD_MAX);
	if (memchr(pw->data, '\0', pw->len) != NULL)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "password contains a NUL byte");
	return CTL_EX_OK;
}

/* ---- dispatch ------------------------------------------------------- */

static void
ctl_print_help(FILE *f)
{
	const struct ctl_cmd *c;
	size_t i;

	fprintf(f, "usage: %s [-c FILE] [-v] COMMAND [ARGS]\n"
	    "  -c FILE  configuration (else $GOVMAIL_CONF, else %s)\n"
	    "  -v       log store events at debug level\n"
	    "commands:\n", CTL_PROG, CONFIG_DEFAULT_PATH);
	for (i = 0; i < CTL_NFAMILIES; i++) {
		for (c = ctl_families[i]; c->words != NULL; c++)
			fprintf(f, "  %s %s\n", CTL_PROG, c->usage);
	}
	fprintf(f, "'%s COMMAND -h' explains one command; see govmailctl(8).\n",
	    CTL_PROG);
}

/* Number of words of cmd matching argv, or 0 if it does not match. */
static int
ctl_match(const struct ctl_cmd *cmd, int argc, char **argv)
{
	const char *w = cmd->words, *sp;
	size_t len;
	int n = 0;

	while (*w != '\0') {
		sp = strchr(w, ' ');
		len = sp != NULL ? (size_t)(sp - w) : strlen(w);
		if (n >= argc || strlen(argv[n]) != len ||
		    strncmp(argv[n], w, len) != 0)
			return 0;
		n++;
		w += len;
		if (*w == ' ')
			w++;
	}
	return n;
}

static const struct ctl_cmd *
ctl_find(int argc, char **argv, int *nwords_r)
{
	const struct ctl_cmd *c, *best = NULL;
	size_t i;
	int n, bestn = 0;

	for (i = 0; i < CTL_NFAMILIES; i++) {
		for (c = ctl_families[i]; c->words != NULL; c++) {
			n = ctl_match(c, argc, argv);
			if (n > bestn) {
				best = c;
				bestn = n;
			}
		}
	}
	*nwords_r = bestn;
	return best;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl;
	const struct ctl_cmd *cmd;
	enum log_level level = LOG_LEVEL_WARN;
	struct buf name;
	int c, nwords, rc, i, first;

	memset(&ctl, 0, sizeof(ctl));
	log_init(CTL_PROG, LOG_TO_STDERR, LOG_LEVEL_WARN);
	if (sodium_init() < 0)
		return ctl_fail(NULL, CTL_EX_SOFTWARE,
		    "libsodium: cannot start");

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:c:hv", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			ctl.conf_arg = optarg;
			break;
		case 'h':
			ctl_print_help(stdout);
			return ctl_flush(&ctl);
		case 'v':
			level = LOG_LEVEL_DEBUG;
			break;
		case ':':
			return ctl_usage(&ctl, "option '%s' needs a value",
			    argv[optind - 1]);
		default:
			/* Never echo a value given with '=' (a secret?). */
			return ctl_usage(&ctl, "unknown option '%.*s'",
			    (int)strcspn(argv[optind - 1], "="),
			    argv[optind - 1]);
		}
	}
	log_init(CTL_PROG, LOG_TO_STDERR, level);
	if (optind >= argc)
		return ctl_usage(&ctl, "no command");

	cmd = ctl_find(argc - optind, argv + optind, &nwords);
	if (cmd == NULL) {
		buf_init(&name, BUF_UNBOUNDED);
		for (i = optind; i < argc && i < optind + CTL_WORDS_MAX; i++) {
			if (i > optind)
				buf_append_byte(&name, ' ');
			ctl_escape(&name, argv[i], strlen(argv[i]));
		}
		rc = ctl_usage(&ctl, "unknown command '%s'", buf_str(&name));
		buf_free(&name);
		return rc;
	}
	ctl_current = cmd;
	ctl.cmd = cmd->words;

	/* The command sees its last word as argv[0]; getopt starts afresh. */
	first = optind + nwords - 1;
	optind = 0;
	rc = cmd->run(&ctl, argc - first, argv + first);
	if (rc == CTL_EX_OK)
		rc = ctl_flush(&ctl);
	if (ctl.store != NULL)
		store_close(ctl.store);
	if (ctl.cfg != NULL)
		config_free(ctl.cfg);
	return rc;
}
