/*
 * notice.h - the pieces of govmail-notice (department side, issue 6):
 * CSV input (RFC 4180, UTF-8 or GB18030), template merge, the resumable
 * journal, a blocking SMTP submission client and a tiny HTTP GET client.
 *
 * Runs in the govmail-notice command only (a department's workstation or
 * batch host).  Trust: the CSV, the template and the PKCS#12 are the
 * department's own files, but they are still checked (limits, header
 * injection); replies from the SMTP server and the CA repository are
 * treated as untrusted text (bounded, never echoed unescaped).
 *
 * Conventions: functions return 0, or -1 with *error_r set to a static
 * or module-owned reason (valid until the next call into this module).
 */
#ifndef GOVMAIL_NOTICE_H
#define GOVMAIL_NOTICE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "csv.h"

/* CSV input (charset, parsing): lib/csv.h. */

/* -------------------------------------------------------- template */

/* Longest template file. */
#define NOTICE_TEMPLATE_MAX		(4u * 1024 * 1024)
/* Longest placeholder name between the braces. */
#define NOTICE_PLACEHOLDER_MAX		CSV_MAX_NAME

/*
 * A template: header fields From, To, Cc (optional), Subject and optional
 * Content-Type (text/plain or text/html; default text/plain), then an
 * empty line, then the body.  {{name}} anywhere in values or body is
 * replaced by that column of the row; "{{{{" is a literal "{{".
 */
struct notice_template {
	char *from;
	char *to;
	char *cc;		/* NULL if none */
	char *subject;
	char *content_type;	/* "text/plain; charset=utf-8" or html */
	char *body;
};

/*
 * Parse template text (UTF-8, LF or CRLF).  Unknown header fields,
 * missing From/To/Subject, placeholders naming no column of csv (csv may
 * be NULL to skip that check) and unterminated placeholders fail.
 */
int notice_template_parse(const char *text, const struct csv *csv,
    struct notice_template *t, const char **error_r);
void notice_template_free(struct notice_template *t);

/*
 * Substitute the placeholders of src with row's fields, appending to out.
 * With header != 0 a value holding CR or LF fails (SECURITY: no header
 * injection from a CSV field).  -1 if a placeholder is unknown or
 * unterminated, or out is full.
 */
int notice_merge(const char *src, const struct csv *csv, size_t row,
    int header, struct buf *out, const char **error_r);

/* --------------------------------------------------------- journal */

/* Longest journal line accepted when reading. */
#define NOTICE_JOURNAL_MAX_LINE		4096
/* Length of a journal id (hex characters). */
#define NOTICE_JOURNAL_ID_LEN		32

enum notice_row_state {
	NOTICE_ROW_NEW = 0,	/* never started */
	NOTICE_ROW_STARTED,	/* "about to send" recorded, no outcome: in
				 * doubt (the server may have accepted it) */
	NOTICE_ROW_DEFERRED,	/* a temporary failure was recorded */
	NOTICE_ROW_DONE,	/* final outcome recorded (sent, skipped or
				 * permanently failed) */
};

struct notice_journal_row {
	enum notice_row_state state;
	unsigned int starts;	/* how many "about to send" lines */
	char *status;		/* DONE/DEFERRED: status word */
	char *address;
	char *message_id;
	char *error;		/* "" when none */
};

struct notice_journal;

/*
 * Open (or create, mode 0600) the journal at path for an input whose
 * BLAKE2b-256 digest is hash.  A new journal gets a fresh random id.  An
 * existing one must carry the same hash (else -1: it belongs to another
 * CSV or template); its lines are replayed; a torn last line (no LF, from
 * a crash while writing) is cut off.  The caller owns *j_r.
 */
int notice_journal_open(const char *path, const uint8_t hash[32],
    struct notice_journal **j_r, const char **error_r);
void notice_journal_close(struct notice_journal *j);

/* The journal id (NOTICE_JOURNAL_ID_LEN hex characters). */
const char *notice_journal_id(const struct notice_journal *j);

/*
 * Record "about to send row", "row done" (status one word, address and
 * message_id without spaces, error free text or NULL) or "row deferred".
 * Each is one line written with a single write() on an O_APPEND
 * descriptor, so several processes sharing the journal never interleave
 * within a line, and a process killed after the call loses nothing.  By
 * default each line is made durable with fdatasync() before returning;
 * see notice_journal_set_sync for group syncing.
 */
int notice_journal_start(struct notice_journal *j, size_t row,
    const char **error_r);
int notice_journal_done(struct notice_journal *j, size_t row,
    const char *status, const char *address, const char *message_id,
    const char *error, const char **error_r);
int notice_journal_defer(struct notice_journal *j, size_t row,
    const char *address, const char *message_id, const char *error,
    const char **error_r);

/* Group syncing: fdatasync() once rows lines are unsynced, or when a line
 * is written ms milliseconds or more after the oldest unsynced one.
 * rows = 0 (the default) syncs every line.  Only a machine crash (not a
 * killed process) can lose unsynced lines.  Per handle (per process). */
#define NOTICE_JOURNAL_SYNC_ROWS	256
#define NOTICE_JOURNAL_SYNC_MS		100
void notice_journal_set_sync(struct notice_journal *j, unsigned int rows,
    unsigned int ms);

/* fdatasync() what this handle wrote and has not synced; 0 if nothing. */
int notice_journal_sync(struct notice_journal *j, const char **error_r);

/* Lines this handle wrote since its last fdatasync(). */
unsigned int notice_journal_unsynced(const struct notice_journal *j);

/*
 * Read lines other processes appended since the last read.  *new_done_r
 * (may be NULL) gets how many rows became DONE.
 */
int notice_journal_refresh(struct notice_journal *j, size_t *new_done_r,
    const char **error_r);

/* The row's state; rows never mentioned read as NEW.  Borrowed. */
const struct notice_journal_row *notice_journal_row(
    const struct notice_journal *j, size_t row);

/* ------------------------------------------------------------ SMTP */

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; we allow more. */
#define NOTICE_SMTP_MAX_LINE		2048
/* Most lines in one multi-line reply. */
#define NOTICE_SMTP_MAX_REPLY_LINES	100
/* Seconds a read or write may wait. */
#define NOTICE_SMTP_TIMEOUT		60

enum notice_tls_mode {
	NOTICE_TLS_STARTTLS = 0,
	NOTICE_TLS_IMPLICIT,
	NOTICE_TLS_NONE,	/* loopback testing only (--tls none) */
};

struct notice_smtp_opts {
	const char *host;
	const char *port;
	enum notice_tls_mode tls;
	const char *cafile;	/* trust anchors; NULL: system store */
	const char *user;	/* NULL: no AUTH */
	const char *password;
	const char *helo;	/* NULL: "localhost" */
};

struct notice_smtp;

/*
 * Connect, read the greeting, EHLO, STARTTLS (or TLS at once), verify the
 * server's certificate chain against cafile and its name against host
 * (SECURITY: a failed check ends the connection before AUTH), EHLO again,
 * AUTH PLAIN.  *s_r is owned by the caller (notice_smtp_close).
 */
int notice_smtp_open(const struct notice_smtp_opts *o, struct notice_smtp **s_r,
    const char **error_r);

/*
 * Send one message in its own transaction: MAIL FROM, RCPT TO for each
 * of n recipients and DATA, batched in one write when the server offers
 * PIPELINING, then the message (CRLF lines, dot-stuffed here) and ".".
 * Returns 0 when the final reply is 2xx.  Otherwise -1 with *code_r the
 * failing reply code (0 if the connection broke) and *in_doubt_r 1 if the
 * message had been sent completely when the connection broke (the server
 * may have taken it).  Recipients refused while others were accepted
 * fail the whole message (RSET).
 */
int notice_smtp_send(struct notice_smtp *s, const char *from,
    char *const *rcpts, size_t n, const uint8_t *msg, size_t len,
    int *code_r, int *in_doubt_r, const char **error_r);

/* QUIT (best effort) and free. */
void notice_smtp_close(struct notice_smtp *s);

/* ------------------------------------------------------------ HTTP */

/* Largest HTTP response read (a certificate is a few KiB). */
#define NOTICE_HTTP_MAX_RESPONSE	(256u * 1024)
/* Seconds one GET may take in all, connection included. */
#define NOTICE_HTTP_TIMEOUT		30

struct notice_http;

/*
 * A client for the CA repository (libcurl): http:// or https:// only, no
 * redirects, connections kept alive between GETs.  For https the server's
 * chain is checked against cafile (NULL: the system store) and its name
 * against the URL's host.  NULL with *error_r if libcurl cannot start.
 */
struct notice_http *notice_http_new(const char *cafile, const char **error_r);

/*
 * GET url.  *status_r gets the status code and the body is appended to
 * body (at most NOTICE_HTTP_MAX_RESPONSE bytes).  -1 with *error_r on a
 * network, TLS or protocol error, or a response too large.
 */
int notice_http_get(struct notice_http *h, const char *url, int *status_r,
    struct buf *body, const char **error_r);

void notice_http_free(struct notice_http *h);

#endif
