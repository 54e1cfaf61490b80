/*
 * mime.h - MIME analysis of a message at delivery: ENVELOPE, BODYSTRUCTURE,
 * BODY, the decoded sort keys and the part map (DESIGN.md 2).
 *
 * Runs in whichever process delivers or appends (smtpd, imapd APPEND,
 * govmailctl deliver), once per stored message; IMAP FETCH only reads what
 * the store kept.  The message bytes are untrusted: any byte sequence is
 * analysed, never rejected.  A message that breaks a limit below or does not
 * parse is still described, as far as is safe, and the rest is described as
 * one opaque part (application/octet-stream), so a delivery never fails on
 * odd MIME.
 *
 * Pure functions: no global state, no I/O, safe in any thread.
 */
#ifndef GOVMAIL_MIME_H
#define GOVMAIL_MIME_H

#include <stddef.h>
#include <stdint.h>

/*
 * Limits.  Each is a named constant; the tests hit N-1, N and N+1.
 *
 * MIME_DEPTH_MAX: nesting of entities (multipart inside multipart,
 *   message/rfc822 inside a part): the top-level message is depth 0.  A
 *   multipart or message/rfc822 part at depth MIME_DEPTH_MAX is not opened
 *   but described as application/octet-stream.  (RFC 2046 sets no limit;
 *   real mail rarely passes 5.)
 * MIME_PARTS_MAX: entities in one message (the top-level message, every
 *   body part and every embedded message count one).  Parts beyond it are
 *   folded into one application/octet-stream part covering the rest of their
 *   multipart; a container met when the budget is spent is not opened.
 * MIME_FIELD_MAX: bytes of one header field's value: from after the colon
 *   to the end of its last line, line break and folding included.  A longer
 *   field is ignored as if absent (RFC 5322 2.1.1 caps lines at 998 octets;
 *   folded address lists may be longer, hence the margin).  Fields nested
 *   deeper than 16 comment levels are treated as unparsable too.
 * MIME_BOUNDARY_MAX: bytes of a multipart boundary (RFC 2046 5.1.1: 70);
 *   a multipart with a longer or empty boundary, or without any delimiter
 *   line in its body, is described as text/plain (RFC 2045 5.2).
 */
#define MIME_DEPTH_MAX		32
#define MIME_PARTS_MAX		1000
#define MIME_FIELD_MAX		65536
#define MIME_BOUNDARY_MAX	200

struct mime_info {
	/*
	 * IMAP response text (RFC 3501 7.4.2), ready to send: envelope is
	 * "(date subject (from) (sender) (reply-to) (to) (cc) (bcc)
	 * in-reply-to message-id)"; bodystructure carries extension data
	 * (body-fld-md5 is always NIL), body does not.  Strings that cannot be
	 * quoted (CR, LF, 8-bit) are IMAP literals "{n}\r\n...".  Header
	 * values are sent raw (still RFC 2047-encoded).  Sizes are octets of
	 * the message as given (no CRLF conversion); lines count LFs, plus
	 * one for a last line without one.  Media types, subtypes, encodings
	 * and parameter names are upper-cased as in RFC 3501's examples,
	 * values keep their case; a text part without a charset parameter
	 * is given "CHARSET" "US-ASCII" (RFC 2045 5.2); RFC 2231 parameter
	 * continuations are joined (as Dovecot does).  Sender and Reply-To
	 * default to From.  Unparsable address fields are NIL.
	 */
	char *envelope;
	char *bodystructure;
	char *body;
	/* Bytes of the top-level header including the blank line. */
	uint64_t header_size;
	/* Lines of the top-level body (LF count, +1 for a last unended line). */
	uint32_t lines;
	/* Subject decoded to UTF-8 (RFC 2047, raw 8-bit as UTF-8 or GB18030);
	 * "" if none. */
	char *subject;
	/* First From: mailbox as "local@domain"; "" if none. */
	char *from;
	/* Message-ID as "<id>"; "" if none or unparsable. */
	char *message_id;
	/* Date: as seconds since the epoch, 0 if none or invalid. */
	int64_t date;
	/* Part offsets, opaque and self-contained: store the bytes as they
	 * are and give them back to mime_partmap_find(). */
	uint8_t *partmap;
	size_t partmap_len;
};

/*
 * Analyse msg[0..len).  Fills *info_r (every pointer owned by it; release
 * with mime_info_free()) and returns 0.  Returns -1 with *error_r set (a
 * static string) only for impossible input: msg NULL with len > 0.
 * Work is linear in len times the nesting depth (at most MIME_DEPTH_MAX).
 */
int mime_analyse(const uint8_t *msg, size_t len, struct mime_info *info_r,
    const char **error_r);

/* Free what mime_analyse() filled; info is left zeroed.  NULL-safe. */
void mime_info_free(struct mime_info *info);

/*
 * Where a body part lies in the message, from a stored part map.
 *
 * part is an IMAP section part number (RFC 3501 6.4.5): "" for the whole
 * message, "1", "1.2", "2.1.3", ...  A non-multipart message's body is part
 * "1" (its MIME header is the message header).  The ranges returned:
 *   header: the part's MIME header including its blank line (part.MIME; for
 *     "" the message header: HEADER),
 *   body: the part's body (BODY[part]; for "" the message body: TEXT).
 *   header_off + header_len == body_off always.
 * For a message/rfc822 part N, "N.HEADER" and "N.TEXT" (either name) give
 * the embedded message instead: header = its header (N.HEADER), body = its
 * body (N.TEXT); "HEADER" and "TEXT" give the same as "".
 *
 * Returns 0, or -1 if there is no such part or the map is damaged.  Linear
 * in the size of the map (at most MIME_PARTS_MAX entries); no allocation.
 */
int mime_partmap_find(const uint8_t *partmap, size_t partmap_len,
    const char *part, uint64_t *header_off_r, uint64_t *header_len_r,
    uint64_t *body_off_r, uint64_t *body_len_r);

#endif
