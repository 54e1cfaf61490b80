/*
 * ctl.h - internal interface of govmailctl, the operator's command.
 *
 * Only govmailctl's own files include this.  govmailctl.c holds main(),
 * the command table and the helpers below; ctl_account.c (domains,
 * accounts, aliases, lists), ctl_mail.c (mailboxes, ls, cat, deliver) and
 * ctl_admin.c (check, backup, restore, stats) hold the commands.
 *
 * Every command returns an exit status from the CTL_EX_* set (the
 * sysexits.h values, documented in govmailctl(8)); a failing command has
 * printed exactly one line to stderr before it returns.
 */
#ifndef GOVMAIL_CTL_H
#define GOVMAIL_CTL_H

#include <stddef.h>
#include <stdio.h>

#include "mailbox.h"

struct buf;
struct config;

/* Exit statuses (sysexits.h numbers; govmailctl(8) "EXIT STATUS"). */
#define CTL_EX_OK 0
#define CTL_EX_DAMAGE 1		/* check found damage */
#define CTL_EX_USAGE 64		/* bad command line */
#define CTL_EX_DATAERR 65	/* bad data: address, USCC, ID, message */
#define CTL_EX_NOINPUT 66	/* an input file cannot be read */
#define CTL_EX_NOUSER 67	/* no such domain, address, mailbox, message */
#define CTL_EX_UNAVAILABLE 69	/* the store cannot be opened or used */
#define CTL_EX_SOFTWARE 70	/* an unexpected answer from the store */
#define CTL_EX_CANTCREAT 73	/* already exists; target folder not empty */
#define CTL_EX_IOERR 74		/* writing the output failed */
#define CTL_EX_TEMPFAIL 75	/* try again later; over quota */
#define CTL_EX_NOPERM 77	/* not allowed; wrong password */
#define CTL_EX_CONFIG 78	/* the configuration file is wrong */

/* How a command uses the store. */
enum ctl_store_mode {
	CTL_STORE_NONE = 0,	/* no store handle (restore) */
	CTL_STORE_EXISTING,	/* the store must exist (not domain add) */
	CTL_STORE_CREATE,	/* created if missing (domain add, the first
				   command of an installation) */
};

/* What every command gets. */
struct ctl {
	const char *conf_arg;		/* -c argument or NULL */
	const char *cmd;		/* "user add", for messages */
	struct config *cfg;		/* loaded by ctl_config() */
	struct store *store;		/* opened by ctl_store() */
};

/* One command: its words, its usage line (without the program name). */
struct ctl_cmd {
	const char *words;		/* "list member add" */
	int (*run)(struct ctl *ctl, int argc, char **argv);
	const char *usage;		/* "list member add LIST SELECTOR" */
	const char *summary;		/* one line for --help */
};

/* Longest password accepted on input (store limit plus a line end). */
#define CTL_PASSWORD_READ_MAX (STORE_PASSWORD_MAX + 2)
/* Longest escaped text printed for one client-provided field. */
#define CTL_ESCAPE_MAX 4096

/*
 * Print "govmailctl: CMD: MESSAGE" as one line on stderr (control bytes in
 * the message replaced so it stays one line) and return code.
 */
int ctl_fail(struct ctl *ctl, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* One-line usage error for the current command; returns CTL_EX_USAGE. */
int ctl_usage(struct ctl *ctl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Usage line of the current command on stdout (for -h); returns 0. */
int ctl_help(struct ctl *ctl);

/* The exit status for a negative store error code. */
int ctl_exit_code(int store_err);
/*
 * Report a failed store call: "govmailctl: CMD: WHAT: reason" where the
 * reason is error (when not NULL) or store_strerror(err).  Returns the
 * exit status for err.
 */
int ctl_store_fail(struct ctl *ctl, int err, const char *what,
    const char *error);

/*
 * Load the configuration (once) and open the store (once) in the given
 * mode.  On failure an error line has been printed and the exit status
 * is returned; 0 on success (ctl->store is set).
 */
int ctl_config(struct ctl *ctl);
int ctl_store(struct ctl *ctl, enum ctl_store_mode mode);

/*
 * Parse the options of a command with getopt_long.  Handles -h/--help
 * (prints the usage line, *done_r = 1) and unknown options (one-line usage
 * error).  Returns the option character, -1 at the end of options, or
 * '?' after an error has been printed (the caller returns CTL_EX_USAGE).
 */
struct option;
int ctl_getopt(struct ctl *ctl, int argc, char **argv, const char *shortopts,
    const struct option *longopts);

/*
 * Escape client-provided text for one line of output: control bytes
 * (C0, DEL, C1), backslash and invalid UTF-8 become \xNN (backslash
 * becomes \\); valid printable UTF-8 is kept.  Appends at most
 * CTL_ESCAPE_MAX bytes to out, then "...".
 */
void ctl_escape(struct buf *out, const char *text, size_t len);
/* ctl_escape() of a NUL-terminated string, printed to f. */
void ctl_print_escaped(FILE *f, const char *text);
/* Flush stdout; on a write error print one line and return CTL_EX_IOERR. */
int ctl_flush(struct ctl *ctl);

/*
 * Read a password (never from the command line): from file when not NULL,
 * else from stdin when it is not a terminal, else prompted twice on the
 * terminal without echo (confirm != 0) or once (confirm == 0).  One
 * trailing LF or CRLF is removed.  The password lands in *pw (a secret
 * buffer the caller frees with buf_free(), which wipes it).  Returns 0, or
 * an exit status after printing the reason (empty, too long, NUL byte,
 * mismatch, unreadable file).
 */
int ctl_read_password(struct ctl *ctl, const char *file, int confirm,
    struct buf *pw);

/*
 * Read the file at path ("-": standard input), at most max bytes, into
 * *out (the caller frees it).  Returns 0 or an exit status after one line.
 */
int ctl_read_file(struct ctl *ctl, const char *path, size_t max,
    struct buf *out);
/*
 * Check an address given on the command line before it reaches the store:
 * non-empty, at most STORE_ADDRESS_MAX bytes, one '@' with text on both
 * sides, no control bytes or spaces.  Returns 0 or prints and returns
 * CTL_EX_DATAERR.
 */
int ctl_check_address(struct ctl *ctl, const char *address);

/*
 * user add --issue-cert (ctl_cert.c).  ctl_cert_begin opens the CA ([ca]
 * dir, with the keys: [ca] passphrase_file) and creates p12_path (new,
 * 0600) before the account exists; ctl_cert_issue issues the certificate
 * of the account just made from spec, writes the PKCS#12, records the
 * serial on the account and prints "serial", "pkcs12" and "password"
 * lines (the password shown once); on failure it revokes what it issued
 * and the caller deletes the account.  ctl_cert_end closes the CA and
 * removes the file unless a certificate went into it.  Both return 0 or an
 * exit status after printing one line.
 */
struct ctl_cert;
int ctl_cert_begin(struct ctl *ctl, const char *p12_path,
    struct ctl_cert **cert_r);
int ctl_cert_issue(struct ctl *ctl, struct ctl_cert *cert,
    const struct store_account_spec *spec);
void ctl_cert_end(struct ctl_cert *cert);

/* The command families. */
extern const struct ctl_cmd ctl_account_cmds[];
extern const struct ctl_cmd ctl_mail_cmds[];
extern const struct ctl_cmd ctl_admin_cmds[];

#endif
