/*
 * imap_parser.h - the incremental IMAP command parser (RFC 3501 section 9,
 * RFC 7888 literals), after Dovecot's lib-imap/imap-parser.
 *
 * govmail-imapd workers.  Input is untrusted client bytes.  The caller
 * feeds whatever arrived; the parser copies what it needs, says how much
 * it consumed and returns one of:
 *
 *   IMAP_PARSE_MORE      everything given was consumed; feed more later.
 *   IMAP_PARSE_OK        one complete command: imap_parser_args() until the
 *                        next feed or reset.
 *   IMAP_PARSE_CONTINUE  a synchronising literal {n} was announced and its
 *                        size accepted: send "+ ..." then feed again.
 *                        SECURITY: the size is checked BEFORE this result,
 *                        so "+" is never sent for a literal over the limit.
 *   IMAP_PARSE_ERROR     a client mistake in this command: reply
 *                        "TAG BAD <imap_parser_error()>" (tag may be "*").
 *                        The rest of the line is skipped by later feeds.
 *   IMAP_PARSE_FATAL     the stream cannot be resynchronised (a
 *                        non-synchronising literal over the limit, whose
 *                        bytes the client sends regardless): reply BYE and
 *                        close.
 *   IMAP_PARSE_LITERAL   only with imap_parser_set_append_hook(p, 1): a
 *                        literal of an APPEND command, of any size up to
 *                        10 digits, was announced (see "APPEND literals"
 *                        below); decide before the next feed.
 *
 * Nothing recurses: lists are tracked with a depth counter capped at
 * limits.depth_max, and the argument tree is built iteratively at the end.
 * Memory is bounded by limits.line_max (command text outside literals,
 * summed over the lines of a command), limits.literal_max (one literal)
 * and limits.literal_total_max (all literals of a command).  The parser
 * holds no buffer between commands (idle connections own no input memory).
 *
 * Literals: "{n}" (synchronising) and "{n+}" (RFC 7888 LITERAL+), and
 * APPEND's message also as a literal8 "~{n}" / "~{n+}" (RFC 3516 BINARY,
 * part of IMAP4rev2), which may hold NUL bytes; "~" followed by anything
 * else starts an atom.  We
 * announce LITERAL+: a non-synchronising literal may be as large as a
 * synchronising one in the same state.  Before authentication the daemon
 * sets literal_max to IMAP_LITERAL_MAX_PREAUTH (4096, the LITERAL- cap), so
 * an unauthenticated client can never make us buffer more than that per
 * literal.  A synchronising literal over the limit is an ERROR ("BAD
 * [TOOBIG]"): the client waits for "+" and sends nothing.  A
 * non-synchronising one over the limit is FATAL.
 *
 * APPEND literals (imap_parser_set_append_hook): APPEND's message is the
 * one literal that may be huge (APPENDLIMIT, tens of MB), so the parser
 * does not judge it: it returns IMAP_PARSE_LITERAL with the announced size
 * (imap_parser_literal_size) and kind (imap_parser_literal_sync), and the
 * caller, who knows APPENDLIMIT and the account's quota, chooses before
 * feeding again (and before sending "+" for a synchronising literal):
 *   imap_parser_literal_inline   keep it in the command buffer (small
 *                                ones; fails past literal_total_max);
 *   imap_parser_literal_spool    write its bytes to a file descriptor as
 *                                they arrive (at the fd's file position,
 *                                which the caller says is off): the
 *                                argument is then an IMAP_ARG_LITERAL with
 *                                spooled = 1, fd, off and len (str is "");
 *                                the caller owns the fd;
 *   imap_parser_literal_discard  (non-synchronising only) read the bytes
 *                                and drop them; the command still parses
 *                                to its end and then gives IMAP_PARSE_OK
 *                                with imap_parser_failed() != NULL: reply
 *                                NO with that text instead of running it.
 * For a synchronising literal it refuses, the caller replies NO itself and
 * calls imap_parser_reset (the client sends nothing more).  No decision
 * means inline.
 *
 * Atoms are lenient: any bytes above space except ( ) { " and DEL; a '['
 * inside an atom opens a section that runs to the matching ']' and may hold
 * spaces and parentheses (FETCH's BODY[HEADER.FIELDS (FROM TO)]<0.100> is
 * one atom, parsed by cmd_fetch).  Lines end with CRLF; a bare LF is
 * accepted (many clients), a bare CR is an error.
 */
#ifndef GOVMAIL_IMAP_PARSER_H
#define GOVMAIL_IMAP_PARSER_H

#include <stddef.h>
#include <stdint.h>

/* RFC 9051 section 4 suggests clients keep lines under 8192 octets. */
#define IMAP_LINE_MAX_PREAUTH 8192
/* After login: long UID sets and SEARCH programs (Dovecot uses 64 KiB). */
#define IMAP_LINE_MAX 65536
/* RFC 7888 LITERAL-: non-synchronising literals up to 4096 octets. */
#define IMAP_LITERAL_MAX_PREAUTH 4096
/* One literal in a non-APPEND command after login. */
#define IMAP_LITERAL_MAX 65536
/* List nesting: STYLE.md "one list level" before authentication. */
#define IMAP_DEPTH_MAX_PREAUTH 1
/* After login; SEARCH programs nest, but not deeper than this. */
#define IMAP_DEPTH_MAX 16
/* Tokens (atoms, strings, literals, lists) in one command. */
#define IMAP_ARGS_MAX 8192
/* Longest tag accepted. */
#define IMAP_TAG_MAX 64

enum imap_parse_result {
	IMAP_PARSE_MORE = 0,
	IMAP_PARSE_OK,
	IMAP_PARSE_CONTINUE,
	IMAP_PARSE_ERROR,
	IMAP_PARSE_FATAL,
	IMAP_PARSE_LITERAL,
};

enum imap_arg_type {
	IMAP_ARG_ATOM,		/* NIL, numbers, flags, sequence sets */
	IMAP_ARG_STRING,	/* quoted, unescaped */
	IMAP_ARG_LITERAL,	/* {n} or {n+}; may hold any byte but NUL */
	IMAP_ARG_LIST,		/* ( ... ) */
};

struct imap_arg {
	enum imap_arg_type type;
	const char *str;	/* NUL-terminated; NULL for lists */
	size_t len;
	const struct imap_arg *list;	/* children of a list */
	size_t nlist;
	int spooled;		/* literal written to fd (APPEND hook) */
	int fd;			/* valid only when spooled; caller-owned */
	uint64_t off;		/* where in fd the literal starts */
};

struct imap_parser_limits {
	size_t line_max;	/* command bytes outside literals */
	size_t literal_max;	/* one literal (not APPEND's message) */
	size_t append_max;	/* one literal of an APPEND command */
	size_t literal_total_max;	/* all literals of one command */
	unsigned int depth_max;	/* list nesting */
	size_t args_max;	/* tokens */
};

struct imap_parser;

/* Limits for an unauthenticated and an authenticated session. */
void imap_parser_limits_preauth(struct imap_parser_limits *l);
void imap_parser_limits_auth(struct imap_parser_limits *l,
    size_t append_max);

/* A new parser (never fails).  Free with imap_parser_free(). */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *l);
void imap_parser_free(struct imap_parser *p);
/* Change limits; takes effect at the next command. */
void imap_parser_set_limits(struct imap_parser *p,
    const struct imap_parser_limits *l);

/*
 * Feed len bytes; *consumed_r says how many were used (the rest must be
 * fed again).  See the results above.  After OK, ERROR or FATAL the next
 * feed starts a new command (after skipping the rest of a bad line).
 */
enum imap_parse_result imap_parser_feed(struct imap_parser *p,
    const uint8_t *data, size_t len, size_t *consumed_r);

/*
 * After IMAP_PARSE_OK: the top-level arguments (tag and command name
 * included, as atoms), valid until the next feed or reset.
 */
const struct imap_arg *imap_parser_args(const struct imap_parser *p,
    size_t *n_r);
/* The tag of the current command once known, else "*"; never NULL. */
const char *imap_parser_tag(const struct imap_parser *p);
/*
 * The command name (second token) of the command being read, once known,
 * else "" -- for refusing a literal of a command that is not allowed in
 * the session's state before sending "+".
 */
const char *imap_parser_command(const struct imap_parser *p);
/* Why the last ERROR/FATAL (static text, ready for a BAD reply). */
const char *imap_parser_error(const struct imap_parser *p);
/* 1 if the last ERROR was a literal over its limit (reply BAD [TOOBIG]). */
int imap_parser_error_toobig(const struct imap_parser *p);
/* Forget the current command and release the buffers. */
void imap_parser_reset(struct imap_parser *p);
/* 1 while no command is partly read (nothing buffered). */
int imap_parser_idle(const struct imap_parser *p);

/* Report APPEND literals with IMAP_PARSE_LITERAL (see above). */
void imap_parser_set_append_hook(struct imap_parser *p, int on);
/* After IMAP_PARSE_LITERAL: the announced size, 1 if synchronising. */
uint64_t imap_parser_literal_size(const struct imap_parser *p);
int imap_parser_literal_sync(const struct imap_parser *p);
/*
 * After IMAP_PARSE_LITERAL, one of: keep in memory (-1 if the size passes
 * append_max or what literal_total_max leaves: spool or discard instead),
 * spool to fd (the parser writes with write(2); on a write error the rest
 * is dropped and the command fails with "[UNAVAILABLE] ..."), or drop the
 * bytes and fail the command with error (static text; non-synchronising
 * literals only).
 */
int imap_parser_literal_inline(struct imap_parser *p);
void imap_parser_literal_spool(struct imap_parser *p, int fd, uint64_t off);
void imap_parser_literal_discard(struct imap_parser *p, const char *error);
/*
 * After IMAP_PARSE_OK: NULL, or why the command must be answered NO
 * without running (a discarded or unwritable literal).  Static text.
 */
const char *imap_parser_failed(const struct imap_parser *p);

/* Helpers for command handlers. */
/* 1 if a is an atom, string or literal (an IMAP astring / nstring). */
int imap_arg_is_string(const struct imap_arg *a);
/* 1 if a is the atom word (case-insensitive). */
int imap_arg_atom_is(const struct imap_arg *a, const char *word);

#endif
