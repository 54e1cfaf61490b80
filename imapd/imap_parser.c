/*
 * imap_parser.c - incremental IMAP command parser (see imap_parser.h).
 *
 * govmail-imapd workers.  Trusts nothing in its input: every byte goes
 * through a state machine with counters checked against the limits as
 * bytes arrive; no recursion (the tree is built iteratively at the end).
 */
#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "imap_parser.h"
#include "strnum.h"
#include "xmalloc.h"

/* Longest command name kept for imap_parser_command(). */
#define IMAP_PARSER_CMD_MAX 32

enum pstate {
	ST_TOKEN,		/* between tokens */
	ST_ATOM,
	ST_ATOM_BRACKET,	/* inside [ ... ] of an atom */
	ST_QUOTED,
	ST_QUOTED_ESC,
	ST_TILDE,		/* '~' opening a token: literal8 or an atom */
	ST_LIT_SIZE,		/* after '{' */
	ST_LIT_CLOSE,		/* after '+': expect '}' */
	ST_LIT_CR,		/* after '}': expect CR or LF */
	ST_LIT_LF,		/* after CR: expect LF */
	ST_LIT_DATA,
	ST_CR,			/* CR at the end of a line: expect LF */
	ST_SKIP,		/* skipping the rest of a bad line */
};

enum tok_type {
	TOK_ATOM,
	TOK_STRING,
	TOK_LITERAL,
	TOK_OPEN,
	TOK_CLOSE,
};

/* Where the bytes of the literal being read go (APPEND hook). */
enum lit_mode {
	LIT_INLINE,
	LIT_SPOOL,
	LIT_DISCARD,
};

struct tok {
	enum tok_type type;
	int spooled, fd;	/* TOK_LITERAL written to fd at spool_off */
	uint64_t spool_off;
	size_t off, len;	/* into text */
	size_t nchild;		/* TOK_OPEN: direct children */
	size_t block;		/* TOK_OPEN: children at args[block] */
};

struct imap_parser {
	struct imap_parser_limits lim;
	enum pstate state;
	struct buf text;
	struct tok *toks;
	size_t ntoks, toks_cap;
	unsigned int depth;
	int need_sep;		/* a token ended: SP, ')' or EOL next */
	size_t line_used;	/* bytes outside literal data */
	size_t lit_total;
	uint64_t lit_size;	/* announced size while reading {n} */
	size_t lit_digits;
	int lit_plus;
	uint64_t lit_left;
	int is_append;
	int append_hook;	/* report APPEND literals (LITERAL result) */
	int lit_pending;	/* LITERAL returned, no decision yet */
	enum lit_mode lit_mode;
	int lit_fd;
	const char *failed;	/* discarded literal: answer NO */
	char tag[IMAP_TAG_MAX + 1];
	char cmd[IMAP_PARSER_CMD_MAX + 1];
	const char *error;
	int toobig;
	struct imap_arg *args;
	size_t nargs;
	size_t ntop;
	int done;		/* args are valid */
};

/* Longest decimal literal size we even look at ({99999999999}). */
#define IMAP_LITERAL_DIGITS_MAX 10

void
imap_parser_limits_preauth(struct imap_parser_limits *l)
{
	l->line_max = IMAP_LINE_MAX_PREAUTH;
	l->literal_max = IMAP_LITERAL_MAX_PREAUTH;
	l->append_max = IMAP_LITERAL_MAX_PREAUTH;
	l->literal_total_max = 2 * IMAP_LITERAL_MAX_PREAUTH;
	l->depth_max = IMAP_DEPTH_MAX_PREAUTH;
	l->args_max = 64;
}

void
imap_parser_limits_auth(struct imap_parser_limits *l, size_t append_max)
{
	l->line_max = IMAP_LINE_MAX;
	l->literal_max = IMAP_LITERAL_MAX;
	l->append_max = append_max;
	l->literal_total_max = xadd(append_max, IMAP_LITERAL_MAX);
	l->depth_max = IMAP_DEPTH_MAX;
	l->args_max = IMAP_ARGS_MAX;
}

struct imap_parser *
imap_parser_new(const struct imap_parser_limits *l)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));

	p->lim = *l;
	buf_init(&p->text, BUF_UNBOUNDED);
	/*
	 * SECURITY: commands carry passwords (LOGIN, AUTHENTICATE's initial
	 * response): the buffer is wiped whenever it is reset, grown or freed.
	 */
	p->text.secret = 1;
	imap_parser_reset(p);
	return p;
}

void
imap_parser_free(struct imap_parser *p)
{
	if (p == NULL)
		return;
	buf_free(&p->text);
	free(p->toks);
	free(p->args);
	free(p);
}

void
imap_parser_set_limits(struct imap_parser *p,
    const struct imap_parser_limits *l)
{
	p->lim = *l;
}

void
imap_parser_reset(struct imap_parser *p)
{
	buf_reset(&p->text);
	buf_shrink(&p->text);
	free(p->toks);
	p->toks = NULL;
	p->ntoks = p->toks_cap = 0;
	free(p->args);
	p->args = NULL;
	p->nargs = p->ntop = 0;
	p->done = 0;
	p->state = ST_TOKEN;
	p->depth = 0;
	p->need_sep = 0;
	p->line_used = 0;
	p->lit_total = 0;
	p->is_append = 0;
	p->lit_pending = 0;
	p->lit_mode = LIT_INLINE;
	p->lit_fd = -1;
	p->failed = NULL;
	p->tag[0] = '\0';
	p->cmd[0] = '\0';
}

int
imap_parser_idle(const struct imap_parser *p)
{
	return p->state == ST_TOKEN && p->ntoks == 0 && p->text.len == 0;
}

const char *
imap_parser_tag(const struct imap_parser *p)
{
	return p->tag[0] != '\0' ? p->tag : "*";
}

const char *
imap_parser_command(const struct imap_parser *p)
{
	return p->cmd;
}

const char *
imap_parser_error(const struct imap_parser *p)
{
	return p->error != NULL ? p->error : "Syntax error";
}

int
imap_parser_error_toobig(const struct imap_parser *p)
{
	return p->toobig;
}

const struct imap_arg *
imap_parser_args(const struct imap_parser *p, size_t *n_r)
{
	*n_r = p->done ? p->ntop : 0;
	return p->done ? p->args : NULL;
}

void
imap_parser_set_append_hook(struct imap_parser *p, int on)
{
	p->append_hook = on;
}

uint64_t
imap_parser_literal_size(const struct imap_parser *p)
{
	return p->lit_size;
}

int
imap_parser_literal_sync(const struct imap_parser *p)
{
	return !p->lit_plus;
}

int
imap_parser_literal_inline(struct imap_parser *p)
{
	if (p->lit_size > p->lim.append_max ||
	    p->lit_size > p->lim.literal_total_max - p->lit_total)
		return -1;
	p->lit_pending = 0;
	p->lit_mode = LIT_INLINE;
	p->lit_total += (size_t)p->lit_size;
	if (buf_reserve(&p->text, (size_t)p->lit_size + 1) < 0)
		abort();
	return 0;
}

void
imap_parser_literal_spool(struct imap_parser *p, int fd, uint64_t off)
{
	p->lit_pending = 0;
	p->lit_mode = LIT_SPOOL;
	p->lit_fd = fd;
	p->toks[p->ntoks - 1].spooled = 1;
	p->toks[p->ntoks - 1].fd = fd;
	p->toks[p->ntoks - 1].spool_off = off;
}

void
imap_parser_literal_discard(struct imap_parser *p, const char *error)
{
	p->lit_pending = 0;
	p->lit_mode = LIT_DISCARD;
	if (p->failed == NULL)
		p->failed = error;
}

const char *
imap_parser_failed(const struct imap_parser *p)
{
	return p->done ? p->failed : NULL;
}

/* Write a spooled literal's bytes; on failure drop the rest. */
static void
lit_spool_write(struct imap_parser *p, const uint8_t *data, size_t n)
{
	while (n > 0) {
		ssize_t w = write(p->lit_fd, data, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			p->lit_mode = LIT_DISCARD;
			if (p->failed == NULL)
				p->failed = "[UNAVAILABLE] Cannot store the "
				    "message now, try again later";
			return;
		}
		data += w;
		n -= (size_t)w;
	}
}

int
imap_arg_is_string(const struct imap_arg *a)
{
	return a->type != IMAP_ARG_LIST;
}

int
imap_arg_atom_is(const struct imap_arg *a, const char *word)
{
	return a->type == IMAP_ARG_ATOM && str_casecmp(a->str, word) == 0;
}

/* RFC 3501 ASTRING-CHAR minus '+' (tag), checked on the finished tag. */
static int
tag_char_ok(uint8_t c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return strchr("(){%*\"\\+", c) == NULL;
}

static int
atom_char_ok(uint8_t c)
{
	return c > 0x20 && c != 0x7f && c != '(' && c != ')' &&
	    c != '{' && c != '"';
}

/* Start a token; returns its index or -1 when there are too many. */
static int
tok_push(struct imap_parser *p, enum tok_type type)
{
	struct tok *t;

	if (p->ntoks >= p->lim.args_max)
		return -1;
	if (p->ntoks == p->toks_cap) {
		p->toks_cap = p->toks_cap == 0 ? 16 : xmul(p->toks_cap, 2);
		p->toks = xreallocarray(p->toks, p->toks_cap, sizeof(*t));
	}
	t = &p->toks[p->ntoks++];
	memset(t, 0, sizeof(*t));
	t->type = type;
	t->off = p->text.len;
	return 0;
}

static void
text_add(struct imap_parser *p, const void *data, size_t n)
{
	if (buf_append(&p->text, data, n) < 0)
		abort();	/* unbounded buffer: only overflow gets here */
}

/* The current token's text ends here: NUL-terminate and record length. */
static void
tok_end(struct imap_parser *p)
{
	struct tok *t = &p->toks[p->ntoks - 1];
	uint8_t nul = 0;

	t->len = p->text.len - t->off;
	text_add(p, &nul, 1);
	p->need_sep = 1;
	if (p->depth == 0 && p->ntoks == 1) {
		/* The tag. */
		size_t i;
		int ok = t->type == TOK_ATOM && t->len <= IMAP_TAG_MAX;

		for (i = 0; ok && i < t->len; i++)
			ok = tag_char_ok(p->text.data[t->off + i]);
		if (ok)
			memcpy(p->tag, p->text.data + t->off, t->len + 1);
	} else if (p->depth == 0 && p->ntoks == 2 && t->type == TOK_ATOM) {
		p->is_append = str_casecmp((const char *)p->text.data + t->off,
		    "APPEND") == 0;
		if (t->len <= IMAP_PARSER_CMD_MAX)
			memcpy(p->cmd, p->text.data + t->off, t->len + 1);
	}
}

static enum imap_parse_result
fail(struct imap_parser *p, const char *why, int at_eol)
{
	p->error = why;
	p->done = 0;
	/* Keep the tag for the reply; drop everything else. */
	{
		char tag[IMAP_TAG_MAX + 1];

		memcpy(tag, p->tag, sizeof(tag));
		imap_parser_reset(p);
		memcpy(p->tag, tag, sizeof(tag));
	}
	p->state = at_eol ? ST_TOKEN : ST_SKIP;
	return IMAP_PARSE_ERROR;
}

/* Build the argument tree from the flat token list, without recursion. */
static enum imap_parse_result
finish(struct imap_parser *p)
{
	size_t stack_n = p->lim.depth_max + 2;
	size_t *stack = xcalloc(stack_n, sizeof(size_t));
	size_t *fill = xcalloc(stack_n, sizeof(size_t));
	size_t i, sp = 0, nargs = 0, next;
	struct imap_arg *args;

	/* Pass 1: direct children of each list, and the top level. */
	p->ntop = 0;
	for (i = 0; i < p->ntoks; i++) {
		struct tok *t = &p->toks[i];

		if (t->type == TOK_CLOSE) {
			sp--;
			continue;
		}
		nargs++;
		if (sp == 0)
			p->ntop++;
		else
			p->toks[stack[sp - 1]].nchild++;
		if (t->type == TOK_OPEN)
			stack[sp++] = i;
	}
	/* Blocks: top level first, then each list in order. */
	next = p->ntop;
	for (i = 0; i < p->ntoks; i++) {
		if (p->toks[i].type == TOK_OPEN) {
			p->toks[i].block = next;
			next += p->toks[i].nchild;
		}
	}
	args = xcalloc(nargs == 0 ? 1 : nargs, sizeof(*args));
	/* Pass 2: place each token in its parent's block. */
	sp = 0;
	fill[0] = 0;
	for (i = 0; i < p->ntoks; i++) {
		struct tok *t = &p->toks[i];
		struct imap_arg *a;

		if (t->type == TOK_CLOSE) {
			sp--;
			continue;
		}
		a = &args[fill[sp]++];
		switch (t->type) {
		case TOK_ATOM:
			a->type = IMAP_ARG_ATOM;
			break;
		case TOK_STRING:
			a->type = IMAP_ARG_STRING;
			break;
		case TOK_LITERAL:
			a->type = IMAP_ARG_LITERAL;
			break;
		default:
			a->type = IMAP_ARG_LIST;
			break;
		}
		if (t->type == TOK_OPEN) {
			a->list = &args[t->block];
			a->nlist = t->nchild;
			fill[++sp] = t->block;
		} else {
			a->str = (const char *)p->text.data + t->off;
			a->len = t->len;
			a->spooled = t->spooled;
			a->fd = t->spooled ? t->fd : -1;
			a->off = t->spool_off;
		}
	}
	free(stack);
	free(fill);
	p->args = args;
	p->nargs = nargs;
	p->done = 1;
	p->state = ST_TOKEN;
	return IMAP_PARSE_OK;
}

/* End of line outside literals and quotes. */
static enum imap_parse_result
end_of_line(struct imap_parser *p)
{
	if (p->depth > 0)
		return fail(p, "Unbalanced parentheses", 1);
	if (p->ntoks == 0) {
		/* An empty line: ignored. */
		p->state = ST_TOKEN;
		return IMAP_PARSE_MORE;
	}
	if (p->tag[0] == '\0')
		return fail(p, "Invalid tag", 1);
	if (p->ntoks < 2)
		return fail(p, "Missing command", 1);
	return finish(p);
}

enum imap_parse_result
imap_parser_feed(struct imap_parser *p, const uint8_t *data, size_t len,
    size_t *consumed_r)
{
	size_t i = 0;
	enum imap_parse_result r;

	if (p->done) {
		/* The previous command was handed out: start afresh. */
		imap_parser_reset(p);
	}
	p->toobig = 0;
	if (p->lit_pending && imap_parser_literal_inline(p) < 0) {
		/* No decision and too big for memory: never buffer it. */
		imap_parser_literal_discard(p, "[TOOBIG] Message too large");
	}
	while (i < len) {
		uint8_t c = data[i];

		if (p->state == ST_LIT_DATA) {
			size_t n = len - i;

			if (n > p->lit_left)
				n = (size_t)p->lit_left;
			if (p->lit_mode == LIT_INLINE)
				text_add(p, data + i, n);
			else if (p->lit_mode == LIT_SPOOL)
				lit_spool_write(p, data + i, n);
			i += n;
			p->lit_left -= n;
			if (p->lit_left == 0) {
				tok_end(p);
				if (p->toks[p->ntoks - 1].spooled)
					p->toks[p->ntoks - 1].len =
					    (size_t)p->lit_size;
				p->lit_mode = LIT_INLINE;
				p->state = ST_TOKEN;
			}
			continue;
		}
		if (p->state == ST_SKIP) {
			i++;
			if (c == '\n')
				p->state = ST_TOKEN;
			continue;
		}
		i++;
		if (++p->line_used > p->lim.line_max) {
			*consumed_r = i;
			return fail(p, "Line too long", c == '\n');
		}
		switch (p->state) {
		case ST_TOKEN:
			if (c == ' ') {
				p->need_sep = 0;
				break;
			}
			if (c == '\r') {
				p->state = ST_CR;
				break;
			}
			if (c == '\n') {
				r = end_of_line(p);
				if (r != IMAP_PARSE_MORE) {
					*consumed_r = i;
					return r;
				}
				break;
			}
			if (c == ')') {
				if (p->depth == 0) {
					*consumed_r = i;
					return fail(p,
					    "Unbalanced parentheses", 0);
				}
				if (tok_push(p, TOK_CLOSE) < 0)
					goto too_many;
				p->depth--;
				p->need_sep = 1;
				break;
			}
			if (p->need_sep) {
				*consumed_r = i;
				return fail(p, "Missing space", 0);
			}
			if (c == '(') {
				if (p->depth >= p->lim.depth_max) {
					*consumed_r = i;
					return fail(p, "Lists nested too deep",
					    0);
				}
				if (tok_push(p, TOK_OPEN) < 0)
					goto too_many;
				p->depth++;
				break;
			}
			if (c == '"') {
				if (tok_push(p, TOK_STRING) < 0)
					goto too_many;
				p->state = ST_QUOTED;
				break;
			}
			if (c == '{') {
				p->lit_size = 0;
				p->lit_digits = 0;
				p->lit_plus = 0;
				p->state = ST_LIT_SIZE;
				break;
			}
			if (c == '~') {
				/* "~{n}" is a literal8 (RFC 3516), else an atom. */
				p->state = ST_TILDE;
				break;
			}
			if (!atom_char_ok(c)) {
				*consumed_r = i;
				return fail(p, "Invalid character", 0);
			}
			if (tok_push(p, TOK_ATOM) < 0)
				goto too_many;
			text_add(p, &c, 1);
			p->state = c == '[' ? ST_ATOM_BRACKET : ST_ATOM;
			break;
		case ST_TILDE:
			if (c == '{') {
				/* Binary content is APPEND's message only. */
				if (!p->is_append || p->depth > 0) {
					*consumed_r = i;
					return fail(p, "literal8 is for APPEND's "
					    "message only", 0);
				}
				p->lit_size = 0;
				p->lit_digits = 0;
				p->lit_plus = 0;
				p->state = ST_LIT_SIZE;
				break;
			}
			/* An atom that starts with '~': go on as one. */
			if (tok_push(p, TOK_ATOM) < 0)
				goto too_many;
			{
				uint8_t t = '~';

				text_add(p, &t, 1);
			}
			p->state = ST_ATOM;
			i--;
			p->line_used--;
			break;
		case ST_ATOM:
			if (c == ' ' || c == ')' || c == '\r' || c == '\n') {
				tok_end(p);
				p->state = ST_TOKEN;
				i--;	/* handled as a separator */
				p->line_used--;
				break;
			}
			if (!atom_char_ok(c)) {
				*consumed_r = i;
				return fail(p, "Invalid character in atom", 0);
			}
			text_add(p, &c, 1);
			if (c == '[')
				p->state = ST_ATOM_BRACKET;
			break;
		case ST_ATOM_BRACKET:
			if (c == '\r' || c == '\n' || c == 0 || c == '[' ||
			    c == '{' || c == '"' || c == 0x7f) {
				*consumed_r = i;
				return fail(p, "Invalid section", c == '\n');
			}
			text_add(p, &c, 1);
			if (c == ']')
				p->state = ST_ATOM;
			break;
		case ST_QUOTED:
			if (c == '"') {
				tok_end(p);
				p->state = ST_TOKEN;
			} else if (c == '\\')
				p->state = ST_QUOTED_ESC;
			else if (c == '\r' || c == '\n' || c == 0) {
				*consumed_r = i;
				return fail(p, "Invalid character in string",
				    c == '\n');
			} else
				text_add(p, &c, 1);
			break;
		case ST_QUOTED_ESC:
			if (c != '"' && c != '\\') {
				*consumed_r = i;
				return fail(p, "Invalid escape in string",
				    c == '\n');
			}
			text_add(p, &c, 1);
			p->state = ST_QUOTED;
			break;
		case ST_LIT_SIZE:
			if (c >= '0' && c <= '9') {
				if (++p->lit_digits > IMAP_LITERAL_DIGITS_MAX) {
					*consumed_r = i;
					p->toobig = 1;
					return fail(p, "[TOOBIG] Literal too "
					    "large", 0);
				}
				p->lit_size = p->lit_size * 10 + (c - '0');
				break;
			}
			if (p->lit_digits == 0) {
				*consumed_r = i;
				return fail(p, "Invalid literal size",
				    c == '\n');
			}
			if (c == '+') {
				p->lit_plus = 1;
				p->state = ST_LIT_CLOSE;
				break;
			}
			if (c != '}') {
				*consumed_r = i;
				return fail(p, "Invalid literal size",
				    c == '\n');
			}
			p->state = ST_LIT_CR;
			break;
		case ST_LIT_CLOSE:
			if (c != '}') {
				*consumed_r = i;
				return fail(p, "Invalid literal size",
				    c == '\n');
			}
			p->state = ST_LIT_CR;
			break;
		case ST_LIT_CR:
		case ST_LIT_LF:
			if (c == '\r' && p->state == ST_LIT_CR) {
				p->state = ST_LIT_LF;
				break;
			}
			if (c != '\n') {
				*consumed_r = i;
				return fail(p, "Literal must end the line", 0);
			}
			if (p->append_hook && p->is_append && p->lit_size > 0) {
				/* The caller judges APPEND's literal. */
				if (tok_push(p, TOK_LITERAL) < 0)
					goto too_many;
				p->lit_left = p->lit_size;
				p->lit_pending = 1;
				p->lit_mode = LIT_INLINE;
				p->state = ST_LIT_DATA;
				*consumed_r = i;
				return IMAP_PARSE_LITERAL;
			}
			{
				size_t max = p->is_append ? p->lim.append_max :
				    p->lim.literal_max;

				/* SECURITY: checked before any "+". */
				if (p->lit_size > max || p->lit_size >
				    p->lim.literal_total_max - p->lit_total) {
					*consumed_r = i;
					if (p->lit_plus) {
						p->error = "[TOOBIG] Literal "
						    "too large";
						imap_parser_reset(p);
						return IMAP_PARSE_FATAL;
					}
					p->toobig = 1;
					return fail(p, "[TOOBIG] Literal too "
					    "large", 1);
				}
			}
			if (tok_push(p, TOK_LITERAL) < 0)
				goto too_many;
			p->lit_total += (size_t)p->lit_size;
			p->lit_left = p->lit_size;
			if (buf_reserve(&p->text, (size_t)p->lit_size + 1) < 0)
				abort();
			if (p->lit_size == 0) {
				tok_end(p);
				p->state = ST_TOKEN;
			} else
				p->state = ST_LIT_DATA;
			if (!p->lit_plus) {
				*consumed_r = i;
				return IMAP_PARSE_CONTINUE;
			}
			break;
		case ST_CR:
			if (c != '\n') {
				*consumed_r = i;
				return fail(p, "Bare CR", 0);
			}
			r = end_of_line(p);
			if (r != IMAP_PARSE_MORE) {
				*consumed_r = i;
				return r;
			}
			break;
		case ST_LIT_DATA:
		case ST_SKIP:
			break;
		}
	}
	*consumed_r = i;
	return IMAP_PARSE_MORE;

too_many:
	*consumed_r = i;
	return fail(p, "Too many arguments", data[i - 1] == '\n');
}
