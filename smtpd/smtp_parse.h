/*
 * smtp_parse.h - the SMTP server's parsers: command lines, paths
 * (addresses) with their ESMTP parameters, the DATA stream (dot-unstuffing
 * and end-of-data detection) and the From: header of a submission.
 *
 * govmail-smtpd workers, on the event loop.  Everything parsed here comes
 * from the network and is trusted for nothing: every length is bounded by
 * a named constant, and the parsers never allocate per byte or recurse.
 * Pure functions (no I/O), so tests/unit/test_smtp_parse.c feeds them
 * byte by byte and tests/fuzz/fuzz_smtp.c fuzzes them.
 */
#ifndef GOVMAIL_SMTP_PARSE_H
#define GOVMAIL_SMTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

struct buf;

/*
 * Longest command line, terminator not counted.  RFC 5321 4.5.3.1.4 sets
 * 512 octets including CRLF and lets each extension add to it: SIZE
 * (RFC 1870: 26), BODY (RFC 6152: 16), SMTPUTF8 (RFC 6531: 10), DSN
 * (RFC 3461: ENVID 100 + RET 9 on MAIL, NOTIFY 32 + ORCPT 500 on RCPT),
 * AUTH= (RFC 4954: 500).  Our limit is the sum rounded up: 2048.
 */
#define SMTP_CMD_LINE_MAX 2048
/*
 * Longest AUTH command or AUTH continuation line (RFC 4954 section 4:
 * 12288 octets); conn's line limit is set to this and every other
 * command is checked against SMTP_CMD_LINE_MAX after it is read.
 */
#define SMTP_AUTH_LINE_MAX 12288
/* Longest text line in DATA, CRLF not counted (RFC 5321 4.5.3.1.6: 1000). */
#define SMTP_TEXT_LINE_MAX 998
/* Longest ENVID (RFC 3461 4.4: 100 characters) and ORCPT value (500). */
#define SMTP_ENVID_MAX 100
#define SMTP_ORCPT_MAX 500
/* Longest HELO/EHLO argument kept (a domain or address literal). */
#define SMTP_HELO_MAX 255
/* Longest path, "<" and ">" not counted (RFC 5321 4.5.3.1.3: 256). */
#define SMTP_PATH_MAX 256
/* Longest local part and domain (RFC 5321 4.5.3.1.1-2). */
#define SMTP_LOCAL_MAX 64
#define SMTP_DOMAIN_MAX 253
/* Longest From: header block looked at in a submission, bytes. */
#define SMTP_FROM_HEADER_MAX 8192
/* Most addresses in one From: header accepted in a submission. */
#define SMTP_FROM_ADDRS_MAX 8

enum smtp_cmd {
	SMTP_CMD_UNKNOWN = 0,
	SMTP_CMD_HELO,
	SMTP_CMD_EHLO,
	SMTP_CMD_MAIL,
	SMTP_CMD_RCPT,
	SMTP_CMD_DATA,
	SMTP_CMD_BDAT,
	SMTP_CMD_RSET,
	SMTP_CMD_NOOP,
	SMTP_CMD_QUIT,
	SMTP_CMD_VRFY,
	SMTP_CMD_EXPN,
	SMTP_CMD_HELP,
	SMTP_CMD_STARTTLS,
	SMTP_CMD_AUTH,
};

/*
 * Split a command line (len bytes, terminator removed) into its verb and
 * argument.  *arg_r points into line after the single space that follows
 * the verb ("" if none); the caller's line must be NUL-terminated at len.
 * Returns the command, SMTP_CMD_UNKNOWN for an unknown verb, or -1 if the
 * line holds a NUL byte, a bare CR or LF, or any control character other
 * than TAB (the caller answers 500 5.5.2).  Verbs are case-insensitive
 * (RFC 5321 2.4).  "MAIL FROM:" and "RCPT TO:" keep their "FROM:"/"TO:"
 * in the argument.
 */
int smtp_cmd_parse(const char *line, size_t len, const char **arg_r);
/* The verb of a command as text ("MAIL"), for logs. */
const char *smtp_cmd_name(enum smtp_cmd cmd);

/* An address as parsed from "<local@domain>". */
struct smtp_path {
	int null;			/* "<>" */
	int utf8;			/* holds non-ASCII (needs SMTPUTF8) */
	char local[SMTP_LOCAL_MAX + 1];
	char domain[SMTP_DOMAIN_MAX + 1];	/* lower-cased ASCII part */
	char addr[SMTP_PATH_MAX + 1];	/* "local@domain" or "" */
};

/* ESMTP parameters of MAIL and RCPT (RFC 1870, 6152, 6531, 3461). */
enum smtp_body {
	SMTP_BODY_NONE = 0,
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
};

enum smtp_ret {
	SMTP_RET_NONE = 0,
	SMTP_RET_FULL,
	SMTP_RET_HDRS,
};

/* NOTIFY bits (RFC 3461 4.1); NEVER excludes the others. */
#define SMTP_NOTIFY_NEVER 0x1
#define SMTP_NOTIFY_SUCCESS 0x2
#define SMTP_NOTIFY_FAILURE 0x4
#define SMTP_NOTIFY_DELAY 0x8

struct smtp_mail_params {
	uint64_t size;			/* SIZE=, 0 if absent */
	int has_size;
	enum smtp_body body;
	int smtputf8;
	enum smtp_ret ret;
	char envid[SMTP_ENVID_MAX + 1];	/* xtext as received, "" if absent */
};

struct smtp_rcpt_params {
	unsigned notify;		/* SMTP_NOTIFY_* bits, 0 if absent */
	/*
	 * "addr-type;xtext" as received, checked: xtext (RFC 3461 4) or,
	 * for addr-type utf-8, RFC 6533's utf-8-addr-xtext (raw UTF-8 too
	 * when the transaction is SMTPUTF8).  "" if absent.
	 */
	char orcpt[SMTP_ORCPT_MAX + 1];
};

/*
 * Decode xtext (RFC 3461 4: "+XX" is the octet XX, upper-case hex) into
 * out (outsz bytes with the NUL).  Returns 0, or -1 if in is not xtext,
 * decodes to anything but printable US-ASCII (RFC 3461 4.2, 4.4), or does
 * not fit.
 */
int smtp_xtext_decode(const char *in, char *out, size_t outsz);
/*
 * Encode NUL-terminated text as xtext ("+", "=", controls, space and
 * octets over 126 become "+XX").  Returns 0, or -1 if it does not fit.
 */
int smtp_xtext_encode(const char *in, char *out, size_t outsz);
/*
 * A checked ORCPT value as the DSN's Original-Recipient field wants it
 * (RFC 3464 2.3.1): "rfc822;" and the xtext-decoded address; for
 * addr-type utf-8 (RFC 6533) the utf-8-addr-xtext form, raw UTF-8
 * written as "\x{HEX}", so the field stays ASCII.  Returns 0 or -1 (bad
 * value, or does not fit in outsz).
 */
int smtp_orcpt_text(const char *orcpt, char *out, size_t outsz);

/* What went wrong with a path: the reply the server gives. */
enum smtp_path_error {
	SMTP_PATH_OK = 0,
	SMTP_PATH_SYNTAX,	/* 501 5.1.3 (or 5.1.7 for a sender) */
	SMTP_PATH_ROUTE,	/* source route "<@a,@b:u@c>": 553 5.7.1 */
	SMTP_PATH_QUOTED,	/* quoted local part: 553 5.1.3 */
	SMTP_PATH_RELAY_HACK,	/* '%' or '!' in a local part: 553 5.7.1 */
	SMTP_PATH_LITERAL,	/* address literal "[1.2.3.4]": 553 5.7.1 */
	SMTP_PATH_TOO_LONG,	/* over SMTP_LOCAL/DOMAIN/PATH_MAX: 501 5.1.3 */
	SMTP_PATH_UTF8,		/* non-ASCII without SMTPUTF8 or invalid
				   UTF-8: 553 5.6.7 */
	SMTP_PATH_PARAM,	/* unknown or malformed parameter: 555 5.5.4 */
	SMTP_PATH_NULL,		/* "<>" where not allowed: 501 5.1.3 */
	SMTP_PATH_DSN,		/* a DSN parameter (RFC 3461) malformed:
				   bad xtext, ENVID over 100 or ORCPT over
				   500 characters, an unknown RET or NOTIFY
				   value, NEVER with others, given twice:
				   501 5.5.4 */
};

/*
 * Parse the argument of MAIL ("FROM:<path> params") or RCPT ("TO:<path>
 * params"; is_rcpt != 0).  Spaces between the colon and "<" are tolerated.
 * A path must be a dot-string local part (RFC 5321 4.1.2; quoted strings,
 * '%' and '!' refused so that no relay hack ever reaches the store), '@',
 * and a domain of letter/digit/hyphen labels (UTF-8 labels allowed when
 * utf8_ok), without a trailing dot.  MAIL may be "<>"; RCPT may not.
 * For MAIL, utf8_ok is ignored: SMTPUTF8 among the parameters decides.
 * The parameters are filled into mp (MAIL) or rp (RCPT).  Returns
 * SMTP_PATH_OK or the error; *what_r (may be NULL) names the fault
 * (static text, safe to send).
 */
enum smtp_path_error smtp_path_parse(const char *arg, int is_rcpt,
    int utf8_ok, struct smtp_path *path_r, struct smtp_mail_params *mp,
    struct smtp_rcpt_params *rp, const char **what_r);

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
int smtp_utf8_valid(const uint8_t *s, size_t len);

/* ---- DATA ---- */

/* Result of smtp_data_feed(). */
enum smtp_data_result {
	SMTP_DATA_MORE = 0,	/* consumed everything, no end yet */
	SMTP_DATA_END,		/* "<CRLF>.<CRLF>" seen */
	SMTP_DATA_BARE,		/* a bare CR or LF: refuse and close */
};

/* Faults found in a message that still ended properly. */
#define SMTP_DATA_F_TOO_BIG 0x1	/* more than max bytes (not stored) */
#define SMTP_DATA_F_LONG_LINE 0x2	/* a line over SMTP_TEXT_LINE_MAX */
#define SMTP_DATA_F_NUL 0x4	/* a NUL byte */

struct smtp_data {
	int state;
	size_t line_len;
	unsigned faults;
	uint64_t size;		/* bytes of the message (unstuffed, CRLF) */
};

/* Start a DATA stream (the reader expects the first line). */
void smtp_data_init(struct smtp_data *d);

/*
 * Feed n bytes received after the DATA 354 reply.  Each line ends with
 * CRLF only; SECURITY (SMTP smuggling): a bare LF or a CR not followed by
 * LF is never part of a line end or of the end of data: the first one
 * returns SMTP_DATA_BARE (the session refuses the message and closes), so
 * "<LF>.<LF>", "<LF>.<CR><LF>", "<CR>.<CR>" and friends can never end the
 * message nor start another.  A leading dot is removed (RFC 5321 4.5.2).
 * The message (with CRLF line ends, without the final ".") is appended to
 * out while it stays within out->max; beyond that SMTP_DATA_F_TOO_BIG is
 * set and bytes are counted but no longer kept.  *used_r is the number of
 * bytes consumed: all n unless END or BARE, where it stops right after
 * the end of data (pipelined commands follow) or at the offending byte.
 */
enum smtp_data_result smtp_data_feed(struct smtp_data *d, const uint8_t *p,
    size_t n, struct buf *out, size_t *used_r);

/*
 * Find the addresses of the From: header in the header block of msg
 * (len bytes, CRLF lines).  Fills addrs (up to max entries, each
 * SMTP_PATH_MAX + 1 bytes, lower-cased domain as in struct smtp_path)
 * and returns their number, 0 if there is no From: header, or -1 if it is
 * malformed, repeated, too long or has more than max addresses.  Handles
 * folding, comments, display names (quoted or not) and groups no further
 * than this needs: "Name <a@b>", "a@b (Name)", "a@b, c@d".
 */
int smtp_header_from(const uint8_t *msg, size_t len,
    char addrs[][SMTP_PATH_MAX + 1], size_t max);

/*
 * The first header field called name (with the colon, any case) in msg
 * from off on, up to the blank line: its start and end (after its last
 * line's LF, folded lines included).  0 if found, -1 if not.
 */
int smtp_header_field(const uint8_t *msg, size_t len, size_t off,
    const char *name, size_t *start_r, size_t *end_r);

/*
 * The message's Message-ID ("<...>", printable ASCII) into out, or "" if
 * it has none or a malformed one.  The notice record, the de-duplication
 * of submissions and the local retry of deferred copies all key on this.
 */
void smtp_message_id(const uint8_t *msg, size_t len, char *out,
    size_t outsz);

/* Length of msg's header block, up to and including the blank line
 * (CRLF lines); len if there is no blank line. */
size_t smtp_header_len(const uint8_t *msg, size_t len);

#endif
