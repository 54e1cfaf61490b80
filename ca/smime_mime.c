/*
 * smime_mime.c - the MIME side of S/MIME: CRLF canonicalisation, header
 * fields, Content-Type parameters, the multipart boundary scanner, base64,
 * quoted-printable, RFC 2047 encoded words, address parsing and message
 * assembly.  Part of libgovca, run by whichever process signs or verifies
 * (govmail-notice, smtpd, tests).
 *
 * Trust: the parsing functions take hostile input (a remote sender's
 * message).  They never recurse, walk their input once (or a bounded
 * number of times), and stop at the named limits in govca_cms.h.  The
 * building functions take trusted input from our own callers but still
 * refuse CR/LF in header values so nothing can inject a header.
 */
#include "autoconf.h"

#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "buf.h"
#include "govca_cms.h"
#include "idn.h"
#include "smime_priv.h"

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* RFC 2045 6.8: base64 lines of at most 76 characters. */
#define SMIME_B64_LINE		76
/* RFC 2045 6.7: quoted-printable lines of at most 76 characters. */
#define SMIME_QP_LINE		76
/* RFC 5322 2.1.1: header lines SHOULD stay within 78 characters. */
#define SMIME_HEADER_LINE	78

int
smime_canon_crlf(const uint8_t *in, size_t len, struct buf *out)
{
	size_t i, start = 0;

	for (i = 0; i < len; i++) {
		if (in[i] != '\n' || (i > 0 && in[i - 1] == '\r'))
			continue;
		if (buf_append(out, in + start, i - start) < 0 ||
		    buf_append(out, "\r\n", 2) < 0)
			return -1;
		start = i + 1;
	}
	if (buf_append(out, in + start, len - start) < 0)
		return -1;
	/* Make sure data is allocated even for empty input. */
	return buf_reserve(out, 0);
}

int
smime_entity_split(const uint8_t *msg, size_t len, struct smime_entity *e_r,
    const char **error_r)
{
	size_t pos = 0;
	const uint8_t *nl;

	e_r->hdr = msg;
	e_r->hdr_len = 0;
	e_r->body = msg + len;
	e_r->body_len = 0;
	while (pos < len) {
		if (len - pos >= 2 && msg[pos] == '\r' &&
		    msg[pos + 1] == '\n') {
			e_r->hdr_len = pos;
			e_r->body = msg + pos + 2;
			e_r->body_len = len - pos - 2;
			return 0;
		}
		if (pos > SMIME_MAX_HEADER_BYTES) {
			*error_r = "header too large";
			return -1;
		}
		nl = memchr(msg + pos, '\n', len - pos);
		pos = nl == NULL ? len : (size_t)(nl - msg) + 1;
	}
	if (len > SMIME_MAX_HEADER_BYTES) {
		*error_r = "header too large";
		return -1;
	}
	e_r->hdr_len = len;
	return 0;
}

/* Length of the field starting at off (with continuation lines). */
static size_t
field_len(const uint8_t *h, size_t len, size_t off)
{
	size_t pos = off;
	const uint8_t *nl;

	for (;;) {
		nl = memchr(h + pos, '\n', len - pos);
		pos = nl == NULL ? len : (size_t)(nl - h) + 1;
		if (pos >= len || (h[pos] != ' ' && h[pos] != '\t'))
			return pos - off;
	}
}

int
smime_header_each(const struct smime_entity *e,
    int (*fn)(const uint8_t *field, size_t len, void *ctx), void *ctx)
{
	size_t off = 0, n;

	while (off < e->hdr_len) {
		n = field_len(e->hdr, e->hdr_len, off);
		if (fn(e->hdr + off, n, ctx) < 0)
			return -1;
		off += n;
	}
	return 0;
}

/*
 * Does field f start with name and a colon?  RFC 5322 4.5.8 (obsolete
 * syntax) allows white space before the colon; readers accept it, so we
 * must see "Content-Type :" too or a second, hidden Content-Type slips by.
 * Returns the offset just past the colon, 0 if no match.
 */
static size_t
name_matches(const uint8_t *f, size_t len, const char *name)
{
	size_t n = strlen(name), i, c;

	if (len <= n)
		return 0;
	for (c = n; c < len && (f[c] == ' ' || f[c] == '\t'); c++)
		;
	if (c >= len || f[c] != ':')
		return 0;
	for (i = 0; i < n; i++) {
		uint8_t a = f[i], b = (uint8_t)name[i];

		if (a >= 'A' && a <= 'Z')
			a += 'a' - 'A';
		if (b >= 'A' && b <= 'Z')
			b += 'a' - 'A';
		if (a != b)
			return 0;
	}
	return c + 1;
}

int
smime_header_is_content(const uint8_t *p, size_t len)
{
	static const char pfx[] = "content-";
	size_t i;

	if (len < sizeof(pfx) - 1)
		return 0;
	for (i = 0; i < sizeof(pfx) - 1; i++) {
		uint8_t c = p[i];

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c != (uint8_t)pfx[i])
			return 0;
	}
	return 1;
}

struct header_get_ctx {
	const char *name;
	struct buf *value;
	size_t count;
	int toolong;
};

static int
header_get_one(const uint8_t *f, size_t len, void *arg)
{
	struct header_get_ctx *c = arg;
	size_t i, n;

	if ((n = name_matches(f, len, c->name)) == 0)
		return 0;
	if (c->count++ > 0)
		return 0;
	/* Unfold: drop CR and LF; skip leading white space. */
	while (n < len && (f[n] == ' ' || f[n] == '\t'))
		n++;
	for (i = n; i < len; i++) {
		if (f[i] == '\r' || f[i] == '\n')
			continue;
		if (buf_append_byte(c->value, f[i]) < 0) {
			c->toolong = 1;
			return -1;
		}
	}
	/* Trailing white space. */
	while (c->value->len > 0 && (c->value->data[c->value->len - 1] == ' ' ||
	    c->value->data[c->value->len - 1] == '\t'))
		buf_truncate(c->value, c->value->len - 1);
	return 0;
}

int
smime_header_get(const struct smime_entity *e, const char *name,
    struct buf *value, size_t *count_r)
{
	struct header_get_ctx c = { name, value, 0, 0 };

	buf_reset(value);
	value->max = SMIME_MAX_FIELD;
	if (buf_reserve(value, 0) < 0)
		return -1;
	smime_header_each(e, header_get_one, &c);
	*count_r = c.count;
	return c.toolong ? -1 : 0;
}

/* ---------------------------------------------------- Content-Type */

static int
is_tspecial(int c)
{
	return c != '\0' && strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static int
is_token_char(int c)
{
	return c > ' ' && c < 127 && !is_tspecial(c);
}

/* Skip white space and (nested) comments; bounded by the string. */
static const char *
skip_cfws(const char *p)
{
	int depth;

	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '(')
			return p;
		depth = 0;
		while (*p != '\0') {
			if (*p == '\\' && p[1] != '\0') {
				p += 2;
				continue;
			}
			if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
			p++;
		}
	}
}

static int
read_token(const char **pp, char *out, size_t outsz)
{
	const char *p = *pp;
	size_t n = 0;

	while (is_token_char((unsigned char)*p)) {
		if (n + 1 >= outsz)
			return -1;
		out[n++] = *p++;
	}
	out[n] = '\0';
	*pp = p;
	return n > 0 ? 0 : -1;
}

static int
read_value(const char **pp, char *out, size_t outsz)
{
	const char *p = *pp;
	size_t n = 0;

	if (*p != '"')
		return read_token(pp, out, outsz);
	p++;
	while (*p != '"') {
		if (*p == '\0')
			return -1;
		if (*p == '\\' && p[1] != '\0')
			p++;
		if (n + 1 >= outsz)
			return -1;
		out[n++] = *p++;
	}
	out[n] = '\0';
	*pp = p + 1;
	return 0;
}

static void
lower_str(char *s)
{
	str_lower(s);
}

int
smime_ctype_parse(const char *value, struct smime_ctype *ct,
    const char **error_r)
{
	char pname[SMIME_MAX_TOKEN + 1], pval[SMIME_MAX_TOKEN + 1];
	const char *p = value;
	size_t nparams = 0;

	memset(ct, 0, sizeof(*ct));
	p = skip_cfws(p);
	if (read_token(&p, ct->type, sizeof(ct->type)) < 0)
		goto bad;
	p = skip_cfws(p);
	if (*p++ != '/')
		goto bad;
	p = skip_cfws(p);
	if (read_token(&p, ct->subtype, sizeof(ct->subtype)) < 0)
		goto bad;
	lower_str(ct->type);
	lower_str(ct->subtype);
	for (;;) {
		p = skip_cfws(p);
		if (*p == '\0')
			break;
		if (*p != ';')
			goto bad;
		p = skip_cfws(p + 1);
		if (*p == '\0')
			break;	/* a trailing ";" is common */
		if (++nparams > SMIME_MAX_PARAMS) {
			*error_r = "too many Content-Type parameters";
			return -1;
		}
		if (read_token(&p, pname, sizeof(pname)) < 0)
			goto bad;
		p = skip_cfws(p);
		if (*p++ != '=')
			goto bad;
		p = skip_cfws(p);
		if (read_value(&p, pval, sizeof(pval)) < 0)
			goto bad;
		lower_str(pname);
		if (strcmp(pname, "boundary") == 0) {
			size_t bl = strlen(pval);

			if (ct->has_boundary || bl == 0 ||
			    bl > SMIME_BOUNDARY_MAX) {
				*error_r = "bad multipart boundary";
				return -1;
			}
			str_copy(ct->boundary, sizeof(ct->boundary), pval);
			ct->has_boundary = 1;
		} else if (strcmp(pname, "protocol") == 0) {
			str_copy(ct->protocol, sizeof(ct->protocol), pval);
			lower_str(ct->protocol);
		} else if (strcmp(pname, "smime-type") == 0) {
			str_copy(ct->smime_type, sizeof(ct->smime_type), pval);
			lower_str(ct->smime_type);
		} else if (strcmp(pname, "name") == 0) {
			str_copy(ct->name, sizeof(ct->name), pval);
		}
	}
	return 0;
bad:
	*error_r = "malformed Content-Type";
	return -1;
}

/* ------------------------------------------------------ multipart */

/*
 * Is the line at body[pos..eol) a delimiter for boundary?  Returns 1 for a
 * delimiter, 2 for the close delimiter, 0 otherwise.  RFC 2046 5.1.1:
 * "--" boundary, then optional "--", then optional linear white space.
 */
static int
delimiter_kind(const uint8_t *line, size_t n, const char *boundary,
    size_t blen)
{
	size_t i;
	int kind = 1;

	if (n < blen + 2 || line[0] != '-' || line[1] != '-' ||
	    memcmp(line + 2, boundary, blen) != 0)
		return 0;
	i = blen + 2;
	if (n - i >= 2 && line[i] == '-' && line[i + 1] == '-') {
		kind = 2;
		i += 2;
	}
	for (; i < n; i++) {
		if (line[i] != ' ' && line[i] != '\t')
			return 0;
	}
	return kind;
}

int
smime_multipart_split(const uint8_t *body, size_t len, const char *boundary,
    struct smime_span *parts, size_t max_parts, size_t *n_r,
    const char **error_r)
{
	size_t pos = 0, blen = strlen(boundary), n = 0, eol, next;
	const uint8_t *start = NULL, *nl;
	int kind, seen = 0;

	*n_r = 0;
	while (pos < len) {
		nl = memchr(body + pos, '\n', len - pos);
		next = nl == NULL ? len : (size_t)(nl - body) + 1;
		eol = next;
		if (nl != NULL)
			eol--;
		/* CRLF, or a CR cut off at the very end of the input. */
		if (eol > pos && body[eol - 1] == '\r')
			eol--;
		kind = delimiter_kind(body + pos, eol - pos, boundary, blen);
		if (kind != 0) {
			if (start != NULL) {
				/* The CRLF before a delimiter is its own. */
				size_t end = pos;

				if (end >= 2 && body[end - 2] == '\r')
					end -= 2;
				else if (end >= 1)
					end -= 1;
				if (end < (size_t)(start - body))
					end = (size_t)(start - body);
				if (n == max_parts) {
					*error_r = "too many body parts";
					return -1;
				}
				parts[n].p = start;
				parts[n].len = end - (size_t)(start - body);
				n++;
			}
			seen = 1;
			if (kind == 2) {
				if (start == NULL) {
					*error_r = "multipart without parts";
					return -1;
				}
				*n_r = n;
				return 0;
			}
			start = body + next;
		}
		pos = next;
	}
	*error_r = seen ? "multipart boundary never closed" :
	    "multipart boundary not found";
	return -1;
}

/* --------------------------------------------------------- base64 */

int
smime_base64_encode(const uint8_t *in, size_t len, struct buf *out)
{
	size_t i, col = 0;
	char q[4];

	for (i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t left = len - i;

		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		q[0] = b64chars[(v >> 18) & 63];
		q[1] = b64chars[(v >> 12) & 63];
		q[2] = left > 1 ? b64chars[(v >> 6) & 63] : '=';
		q[3] = left > 2 ? b64chars[v & 63] : '=';
		if (buf_append(out, q, 4) < 0)
			return -1;
		col += 4;
		if (col >= SMIME_B64_LINE) {
			if (buf_append(out, "\r\n", 2) < 0)
				return -1;
			col = 0;
		}
	}
	if (col > 0 && buf_append(out, "\r\n", 2) < 0)
		return -1;
	return 0;
}

static int
b64_value(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
smime_base64_decode(const uint8_t *in, size_t len, struct buf *out,
    const char **error_r)
{
	uint32_t acc = 0;
	size_t i, nq = 0, pad = 0;
	int v;

	for (i = 0; i < len; i++) {
		uint8_t c = in[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			if (nq < 2 || ++pad > 2) {
				*error_r = "bad base64 padding";
				return -1;
			}
			acc <<= 6;
			if (++nq == 4) {
				uint8_t b[2] = { (uint8_t)(acc >> 16),
				    (uint8_t)(acc >> 8) };

				if (buf_append(out, b, 3 - pad) < 0)
					goto full;
				nq = 0;
				acc = 0;
			}
			continue;
		}
		if (pad > 0) {
			*error_r = "base64 data after padding";
			return -1;
		}
		if ((v = b64_value(c)) < 0) {
			*error_r = "bad base64 character";
			return -1;
		}
		acc = (acc << 6) | (uint32_t)v;
		if (++nq == 4) {
			uint8_t b[3] = { (uint8_t)(acc >> 16),
			    (uint8_t)(acc >> 8), (uint8_t)acc };

			if (buf_append(out, b, 3) < 0)
				goto full;
			nq = 0;
			acc = 0;
		}
	}
	if (nq != 0) {
		*error_r = "truncated base64";
		return -1;
	}
	return buf_reserve(out, 0);
full:
	*error_r = "base64 data too large";
	return -1;
}

int
smime_is_7bit(const uint8_t *p, size_t len, const char **error_r)
{
	size_t i, col = 0;

	for (i = 0; i < len; i++) {
		if (p[i] == 0 || p[i] >= 0x80) {
			*error_r = "entity is not 7-bit: encode the body "
			    "as base64 or quoted-printable";
			return 0;
		}
		if (p[i] == '\n') {
			col = 0;
			continue;
		}
		if (p[i] != '\r' && ++col > SMIME_MAX_LINE) {
			*error_r = "entity has a line over 998 characters";
			return 0;
		}
	}
	return 1;
}

/* ------------------------------------------------ quoted-printable */

static int
qp_encode(const uint8_t *in, size_t len, struct buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, col = 0;

	for (i = 0; i < len; i++) {
		uint8_t c = in[i];
		char enc[3];
		size_t n;
		int at_eol;

		if (c == '\r' && i + 1 < len && in[i + 1] == '\n') {
			if (buf_append(out, "\r\n", 2) < 0)
				return -1;
			i++;
			col = 0;
			continue;
		}
		/* White space before a line end (or the end) is encoded so
		 * that transports that strip it do not change the text. */
		at_eol = i + 1 == len || (in[i + 1] == '\r' && i + 2 < len &&
		    in[i + 2] == '\n');
		if ((c >= 33 && c <= 126 && c != '=') ||
		    ((c == ' ' || c == '\t') && !at_eol)) {
			enc[0] = (char)c;
			n = 1;
		} else {
			enc[0] = '=';
			enc[1] = hex[c >> 4];
			enc[2] = hex[c & 15];
			n = 3;
		}
		/* Leave room for a soft line break "=" on this line. */
		if (col + n > SMIME_QP_LINE - 1) {
			if (buf_append(out, "=\r\n", 3) < 0)
				return -1;
			col = 0;
		}
		/* A line must not start with "From " or "." alone: encode the
		 * first character of such lines to survive mbox and SMTP. */
		if (col == 0 && n == 1 && (c == '.' || (c == 'F' &&
		    len - i >= 5 && memcmp(in + i, "From ", 5) == 0))) {
			enc[0] = '=';
			enc[1] = hex[c >> 4];
			enc[2] = hex[c & 15];
			n = 3;
		}
		if (buf_append(out, enc, n) < 0)
			return -1;
		col += n;
	}
	if (len > 0 && !(len >= 2 && in[len - 2] == '\r' &&
	    in[len - 1] == '\n'))
		return buf_append(out, "\r\n", 2);
	return 0;
}

static int
has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

int
smime_entity_text(const char *content_type, enum smime_cte cte,
    const uint8_t *text, size_t len, struct buf *out, const char **error_r)
{
	struct buf canon;
	int r;

	if (content_type == NULL)
		content_type = "text/plain; charset=utf-8";
	if (has_crlf(content_type)) {
		*error_r = "line break in Content-Type";
		return -1;
	}
	buf_init(&canon, GOVCA_CMS_MAX_MESSAGE);
	if (smime_canon_crlf(text, len, &canon) < 0) {
		buf_free(&canon);
		*error_r = "text too large";
		return -1;
	}
	r = buf_printf(out, "Content-Type: %s\r\nContent-Transfer-Encoding: "
	    "%s\r\n\r\n", content_type,
	    cte == SMIME_CTE_BASE64 ? "base64" : "quoted-printable");
	if (r == 0) {
		r = cte == SMIME_CTE_BASE64 ?
		    smime_base64_encode(canon.data, canon.len, out) :
		    qp_encode(canon.data, canon.len, out);
	}
	buf_free(&canon);
	if (r < 0)
		*error_r = "entity too large";
	return r;
}

/* ---------------------------------------------------------- RFC 2047 */

static int
is_ascii_text(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s >= 0x80)
			return 0;
	}
	return 1;
}

/* Length of the UTF-8 sequence that starts with byte c (1 for junk). */
static size_t
utf8_len(unsigned char c)
{
	if (c >= 0xf0 && c < 0xf8)
		return 4;
	if (c >= 0xe0)
		return c < 0xf0 ? 3 : 1;
	if (c >= 0xc0)
		return 2;
	return 1;
}

/*
 * Append s as UTF-8 base64 encoded-words of whole characters, each at
 * most SMIME_MAX_ENCODED_WORD long and sized to the room left on the line,
 * folding (CRLF SP) when a line is full.  *col is the current column.
 */
static int
rfc2047_encode(const char *s, struct buf *out, size_t *col)
{
	size_t len = strlen(s), i = 0, n, c, room, maxraw, wl;
	char word[SMIME_MAX_ENCODED_WORD + 1];
	int sep;

	while (i < len) {
		struct buf b64;

		sep = i > 0;
		room = SMIME_HEADER_LINE > *col + sep ?
		    SMIME_HEADER_LINE - *col - sep : 0;
		/* "=?UTF-8?B?" "?=" is 12; need room for one 4-byte char. */
		if (room < 12 + 8) {
			if (buf_append(out, "\r\n ", 3) < 0)
				return -1;
			*col = 1;
			sep = 0;
			room = SMIME_HEADER_LINE - 1;
		}
		if (room > SMIME_MAX_ENCODED_WORD)
			room = SMIME_MAX_ENCODED_WORD;
		maxraw = ((room - 12) / 4) * 3;
		n = 0;
		while (i + n < len) {
			c = utf8_len((unsigned char)s[i + n]);
			if (i + n + c > len)
				c = len - i - n;
			if (n + c > maxraw)
				break;
			n += c;
		}
		if (n == 0)
			n = 1;
		buf_init(&b64, 128);
		if (smime_base64_encode((const uint8_t *)s + i, n, &b64) < 0) {
			buf_free(&b64);
			return -1;
		}
		/* One line: strip the CRLF the encoder added. */
		while (b64.len > 0 && (b64.data[b64.len - 1] == '\n' ||
		    b64.data[b64.len - 1] == '\r'))
			buf_truncate(&b64, b64.len - 1);
		snprintf(word, sizeof(word), "=?UTF-8?B?%s?=", buf_str(&b64));
		buf_free(&b64);
		wl = strlen(word);
		if ((sep && buf_append(out, " ", 1) < 0) ||
		    buf_append(out, word, wl) < 0)
			return -1;
		*col += sep + wl;
		i += n;
	}
	return 0;
}

/*
 * Append ASCII text folded at its spaces so that lines stay within
 * SMIME_HEADER_LINE where the words allow (unfolding gives the text back).
 * -1 if a word alone would pass SMIME_MAX_LINE: the caller encodes instead.
 */
static int
fold_ascii(const char *s, size_t len, struct buf *out, size_t *col)
{
	size_t i = 0, j, wl;
	int first = 1;

	while (i <= len) {
		for (j = i; j < len && s[j] != ' '; j++)
			;
		wl = j - i;
		if (wl + 1 >= SMIME_MAX_LINE)
			return -1;
		if (!first) {
			if (*col + 1 + wl > SMIME_HEADER_LINE && *col > 1) {
				if (buf_append(out, "\r\n ", 3) < 0)
					return -1;
				*col = 1;
			} else {
				if (buf_append(out, " ", 1) < 0)
					return -1;
				(*col)++;
			}
		}
		if (buf_append(out, s + i, wl) < 0)
			return -1;
		*col += wl;
		first = 0;
		i = j + 1;
	}
	return 0;
}

/*
 * Append one mailbox ("Name <a@b>" or "a@b"), encoding a non-ASCII display
 * name.  The display name is taken as the text before the last '<'.
 */
static int
append_mailbox(const char *m, size_t mlen, struct buf *out, size_t *col)
{
	char tmp[SMIME_MAX_FIELD];
	const char *lt = NULL;
	size_t i, nl, s = 0;

	while (s < mlen && (m[s] == ' ' || m[s] == '\t'))
		s++;
	m += s;
	mlen -= s;
	while (mlen > 0 && (m[mlen - 1] == ' ' || m[mlen - 1] == '\t'))
		mlen--;
	for (i = 0; i < mlen; i++) {
		if (m[i] == '<')
			lt = m + i;
	}
	if (mlen >= sizeof(tmp))
		return -1;
	memcpy(tmp, m, mlen);
	tmp[mlen] = '\0';
	/* ASCII goes as is, folded at its spaces; a display name that is
	 * not ASCII (or has a word too long to fold) is encoded, which folds
	 * too (RFC 5322 2.1.1: lines within 78, never past 998). */
	if (lt == NULL || is_ascii_text(tmp)) {
		size_t mark = out->len, c0 = *col;

		if (fold_ascii(m, mlen, out, col) == 0)
			return 0;
		buf_truncate(out, mark);
		*col = c0;
		if (lt == NULL)
			return -1;
	}
	nl = (size_t)(lt - m);
	while (nl > 0 && (m[nl - 1] == ' ' || m[nl - 1] == '\t'))
		nl--;
	/* Drop the quotes around a quoted display name. */
	if (nl >= 2 && m[0] == '"' && m[nl - 1] == '"') {
		memcpy(tmp, m + 1, nl - 2);
		tmp[nl - 2] = '\0';
	} else {
		memcpy(tmp, m, nl);
		tmp[nl] = '\0';
	}
	if (rfc2047_encode(tmp, out, col) < 0)
		return -1;
	if (buf_append(out, " ", 1) < 0 ||
	    buf_append(out, lt, mlen - (size_t)(lt - m)) < 0)
		return -1;
	*col += 1 + mlen - (size_t)(lt - m);
	return 0;
}

/* Append "Name: value" for an address list, CRLF-terminated. */
static int
append_address_field(const char *name, const char *value, struct buf *out)
{
	size_t col, i, start = 0;
	int inq = 0, first = 1;

	if (buf_printf(out, "%s: ", name) < 0)
		return -1;
	col = strlen(name) + 2;
	for (i = 0;; i++) {
		char c = value[i];

		if (c == '"' && (i == 0 || value[i - 1] != '\\'))
			inq = !inq;
		if (c != '\0' && (c != ',' || inq))
			continue;
		if (!first) {
			if (buf_append(out, ",\r\n ", 4) < 0)
				return -1;
			col = 1;
		}
		if (append_mailbox(value + start, i - start, out, &col) < 0)
			return -1;
		first = 0;
		start = i + 1;
		if (c == '\0')
			break;
	}
	return buf_append(out, "\r\n", 2);
}

static void
rfc5322_date(time_t t, char *out, size_t outsz)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed",
	    "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, outsz, "%s, %d %s %04d %02d:%02d:%02d +0000",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int
smime_message_build(const struct smime_headers *h, const uint8_t *entity,
    size_t len, struct buf *out, const char **error_r)
{
	char date[64], addr[GOVCA_CMS_MAX_ADDRESS + 1], msgid[512];
	const char *vals[6] = { h->from, h->to, h->cc, h->subject, h->date,
	    h->message_id };
	const char *at;
	uint8_t rnd[16];
	size_t i, count, col;

	if (h->from == NULL || h->to == NULL) {
		*error_r = "From and To are required";
		return -1;
	}
	for (i = 0; i < 6; i++) {
		if (vals[i] != NULL && (has_crlf(vals[i]) ||
		    strlen(vals[i]) >= SMIME_MAX_FIELD / 2)) {
			*error_r = "header value with a line break or too long";
			return -1;
		}
	}
	if (smime_address_parse(h->from, addr, sizeof(addr), &count) < 0 ||
	    (at = strrchr(addr, '@')) == NULL) {
		*error_r = "From has no address";
		return -1;
	}
	if (h->date == NULL)
		rfc5322_date(time(NULL), date, sizeof(date));
	else
		str_copy(date, sizeof(date), h->date);
	if (h->message_id == NULL) {
		char hex[sizeof(rnd) * 2 + 1];

		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			*error_r = "no random bytes for Message-ID";
			return -1;
		}
		for (i = 0; i < sizeof(rnd); i++)
			snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
		snprintf(msgid, sizeof(msgid), "<%s%s>", hex, at);
	} else {
		str_copy(msgid, sizeof(msgid), h->message_id);
	}
	if (append_address_field("From", h->from, out) < 0 ||
	    append_address_field("To", h->to, out) < 0 ||
	    (h->cc != NULL && append_address_field("Cc", h->cc, out) < 0))
		goto full;
	if (h->subject != NULL) {
		size_t mark;

		if (buf_append_str(out, "Subject: ") < 0)
			goto full;
		mark = out->len;
		col = 9;
		if (!is_ascii_text(h->subject) || fold_ascii(h->subject,
		    strlen(h->subject), out, &col) < 0) {
			buf_truncate(out, mark);
			col = 9;
			if (rfc2047_encode(h->subject, out, &col) < 0)
				goto full;
		}
		if (buf_append(out, "\r\n", 2) < 0)
			goto full;
	}
	if (buf_printf(out, "Date: %s\r\nMessage-ID: %s\r\n"
	    "MIME-Version: 1.0\r\n", date, msgid) < 0 ||
	    buf_append(out, entity, len) < 0)
		goto full;
	return 0;
full:
	*error_r = "message too large";
	return -1;
}

/* ------------------------------------------------------- addresses */

/*
 * Walk an address list once, tracking quotes, comments and angle brackets;
 * split at top-level commas.  For each mailbox, the address is the text in
 * its last top-level <...>, else the mailbox without comments and spaces.
 */
int
smime_address_parse(const char *value, char *addr, size_t addrsz,
    size_t *count_r)
{
	char cur[GOVCA_CMS_MAX_ADDRESS + 1], plain[GOVCA_CMS_MAX_ADDRESS + 1];
	size_t count = 0, cl = 0, pl = 0;
	int inq = 0, depth = 0, inangle = 0, angled = 0, toolong = 0, got = 0;
	const char *p;

	*count_r = 0;
	if (addrsz > 0)
		addr[0] = '\0';
	for (p = value;; p++) {
		char c = *p;

		if (c == '\0' || (c == ',' && !inq && depth == 0 && !inangle)) {
			const char *a = angled ? cur : plain;
			size_t al = angled ? cl : pl;

			if (al > 0 && !toolong) {
				if (count == 0) {
					if (al >= addrsz)
						return -1;
					memcpy(addr, a, al);
					addr[al] = '\0';
					got = 1;
				}
				count++;
			}
			cl = pl = 0;
			angled = inangle = toolong = 0;
			if (c == '\0')
				break;
			continue;
		}
		if (c == '\\' && (inq || depth > 0) && p[1] != '\0') {
			/* A quoted-pair: kept inside <...>, else dropped. */
			p++;
			if (depth == 0 && inangle) {
				if (cl + 2 < sizeof(cur)) {
					cur[cl++] = '\\';
					cur[cl++] = *p;
				} else {
					toolong = 1;
				}
			}
			continue;
		}
		if (depth > 0) {
			if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		if (c == '"') {
			inq = !inq;
			if (inangle) {
				if (cl < sizeof(cur) - 1)
					cur[cl++] = c;
				else
					toolong = 1;
			}
			continue;
		}
		if (inq) {
			if (inangle) {
				if (cl < sizeof(cur) - 1)
					cur[cl++] = c;
				else
					toolong = 1;
			}
			continue;
		}
		if (c == '(') {
			depth = 1;
			continue;
		}
		if (c == '<') {
			inangle = 1;
			angled = 1;
			cl = 0;
			continue;
		}
		if (c == '>' && inangle) {
			inangle = 0;
			continue;
		}
		if (c == ' ' || c == '\t')
			continue;
		if (inangle) {
			if (cl < sizeof(cur) - 1)
				cur[cl++] = c;
			else
				toolong = 1;
		} else if (!angled) {
			if (pl < sizeof(plain) - 1)
				plain[pl++] = c;
			else
				toolong = 1;
		}
	}
	*count_r = count;
	if (!got)
		return -1;
	/* An address needs exactly one '@' outside quotes, not at either
	 * end (a bare display name is not an address). */
	{
		const char *at = strrchr(addr, '@');

		if (at == NULL || at == addr || at[1] == '\0')
			return -1;
	}
	return 0;
}

int
smime_address_equal(const char *a, const char *b)
{
	const char *ata = strrchr(a, '@'), *atb = strrchr(b, '@');
	char xa[256], xb[256];

	if (ata == NULL || atb == NULL || ata - a != atb - b)
		return 0;
	if (memcmp(a, b, (size_t)(ata - a)) != 0)
		return 0;
	if (str_casecmp(ata + 1, atb + 1) == 0)
		return 1;
	/* U-labels on one side: both by their A-labels. */
	return (idn_needed(ata + 1) || idn_needed(atb + 1)) &&
	    idn_ascii(ata + 1, xa, sizeof(xa)) == 0 &&
	    idn_ascii(atb + 1, xb, sizeof(xb)) == 0 &&
	    str_casecmp(xa, xb) == 0;
}
