/*
 * mime.c - MIME analysis at delivery: the entity tree, header fields,
 * decoded sort keys and a compact part map; mime_imap.c writes the IMAP
 * ENVELOPE, BODYSTRUCTURE and BODY (RFC 3501 7.4.2) from the tree.
 *
 * Runs in the delivering process (smtpd, imapd APPEND, govmailctl deliver),
 * once per stored message.  Trusts nothing in the message bytes.
 *
 * How: the entity tree (where each header and body lies, found by the
 * multipart boundaries) is built here without recursion, in a node array
 * with explicit limits (MIME_DEPTH_MAX, MIME_PARTS_MAX), because libetpan's
 * mailmime_parse() recurses as deep as the input nests and does not report
 * where each part's header starts.  libetpan parses every header field we
 * use: Content-Type and its parameters, Content-Transfer-Encoding,
 * Content-Disposition, address lists, Date, Message-ID, and RFC 2047 words
 * (with its iconv-based charconv for GB2312/GBK/GB18030/Big5/...).  Field
 * values are never longer than MIME_FIELD_MAX when handed to libetpan.
 *
 * Cost: the header scan is linear; each multipart level scans its body
 * once (memmem for the delimiter), so the total is linear in the message
 * size times the nesting depth (at most MIME_DEPTH_MAX).  Output recursion
 * follows our own tree, whose depth is bounded by MIME_DEPTH_MAX.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "strnum.h"
#include "xmalloc.h"

#include "mime.h"
#include "mime_priv.h"

#define MIME_FIELD_NAME(s)	{ s, sizeof(s) - 1 }
static const struct {
	const char *name;
	size_t len;
} mime_field_names[MIME_F_COUNT] = {
	MIME_FIELD_NAME("content-type"),
	MIME_FIELD_NAME("content-transfer-encoding"),
	MIME_FIELD_NAME("content-id"),
	MIME_FIELD_NAME("content-description"),
	MIME_FIELD_NAME("content-disposition"),
	MIME_FIELD_NAME("content-language"),
	MIME_FIELD_NAME("content-location"),
	MIME_FIELD_NAME("date"),
	MIME_FIELD_NAME("subject"),
	MIME_FIELD_NAME("from"),
	MIME_FIELD_NAME("sender"),
	MIME_FIELD_NAME("reply-to"),
	MIME_FIELD_NAME("to"),
	MIME_FIELD_NAME("cc"),
	MIME_FIELD_NAME("bcc"),
	MIME_FIELD_NAME("in-reply-to"),
	MIME_FIELD_NAME("message-id"),
};

/* ---- small helpers ------------------------------------------------ */

int
mime_ascii_caseeq(const uint8_t *a, size_t alen, const char *b)
{
	size_t i;

	if (alen != strlen(b))
		return 0;
	for (i = 0; i < alen; i++)
		if (mime_lower(a[i]) != b[i])
			return 0;
	return 1;
}

/* Lines of a body: LF count, plus one for a last line without LF. */
uint64_t
mime_count_lines(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len, *nl;
	uint64_t lines = 0;

	if (len == 0)
		return 0;
	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		lines++;
		p = nl + 1;
	}
	if (p < end)
		lines++;
	return lines;
}

/*
 * The unfolded, trimmed value of a field into ctx->scratch (CR and LF
 * removed, RFC 5322 2.2.3).  Returns NULL if the field is absent; the
 * result stays valid until the next call.  *len_r may count NUL bytes.
 */
const char *
mime_field_value(struct mime_ctx *ctx, const struct mime_node *node,
    enum mime_field f, size_t *len_r)
{
	const struct mime_span *sp = &node->fields[f];
	const uint8_t *p, *end;
	size_t start, stop;

	if (sp->off == MIME_ABSENT)
		return NULL;
	buf_reset(&ctx->scratch);
	(void)buf_reserve(&ctx->scratch, sp->len + 1);
	p = ctx->msg + sp->off;
	end = p + sp->len;
	for (; p < end; p++)
		if (*p != '\r' && *p != '\n')
			(void)buf_append_byte(&ctx->scratch, *p);
	if (ctx->scratch.data == NULL)
		(void)buf_append(&ctx->scratch, "", 0);
	start = 0;
	stop = ctx->scratch.len;
	while (start < stop && mime_is_wsp(ctx->scratch.data[start]))
		start++;
	while (stop > start && mime_is_wsp(ctx->scratch.data[stop - 1]))
		stop--;
	ctx->scratch.data[stop] = '\0';
	*len_r = stop - start;
	return (const char *)ctx->scratch.data + start;
}

/* The same, for a value handed to a libetpan parser: NULL if unsafe. */
const char *
mime_field_parsable(struct mime_ctx *ctx, const struct mime_node *node,
    enum mime_field f, size_t *len_r)
{
	const char *v = mime_field_value(ctx, node, f, len_r);

	if (v == NULL || *len_r == 0 || !mime_value_parsable(v, *len_r))
		return NULL;
	return v;
}

/*
 * SECURITY: libetpan parses RFC 5322 comments recursively, one C frame per
 * "(" level.  A field value nested deeper than MIME_COMMENT_DEPTH_MAX is not
 * handed to it (the field is treated as unparsable), so the stack depth
 * never follows the input.
 */
#define MIME_COMMENT_DEPTH_MAX	16

int
mime_value_parsable(const char *v, size_t len)
{
	size_t i, depth = 0;
	int quoted = 0;

	for (i = 0; i < len; i++) {
		char c = v[i];

		if (c == '\\') {
			i++;
			continue;
		}
		if (quoted) {
			if (c == '"')
				quoted = 0;
			continue;
		}
		if (c == '"' && depth == 0)
			quoted = 1;
		else if (c == '(' && ++depth > MIME_COMMENT_DEPTH_MAX)
			return 0;
		else if (c == ')' && depth > 0)
			depth--;
	}
	return 1;
}

/* ---- addresses ---------------------------------------------------- */

/*
 * An addr-spec as libetpan left it, trimmed of the angle brackets it keeps
 * on odd input ("<>", "<<a@b>>"), in [*start_r, *start_r + *len_r).
 */
void
mime_addr_trim(const char *spec, const char **start_r, size_t *len_r)
{
	size_t len = spec != NULL ? strlen(spec) : 0;

	while (len > 0 && (spec[0] == '<' || mime_is_wsp(spec[0]))) {
		spec++;
		len--;
	}
	while (len > 0 && (spec[len - 1] == '>' || mime_is_wsp(spec[len - 1])))
		len--;
	*start_r = spec;
	*len_r = len;
}

#define MIME_ADDRESS_TRIES	32

/*
 * libetpan's address-list parser with two repairs first: an obsolete
 * source route ("<@relay,@relay2:user@host>", RFC 5322 4.4) is dropped
 * because libetpan stops at it, and the copy is bounded by the field.
 */
struct mailimf_address_list *
mime_parse_addresses(const char *v, size_t len)
{
	struct mailimf_address_list *al = NULL, *part;
	struct buf clean;
	const char *data;
	size_t i, j, idx = 0, tries;
	int quoted = 0, r;

	buf_init(&clean, BUF_UNBOUNDED);
	(void)buf_reserve(&clean, len + 1);
	for (i = 0; i < len; i++) {
		char c = v[i];

		(void)buf_append_byte(&clean, (uint8_t)c);
		if (c == '\\' && i + 1 < len) {
			(void)buf_append_byte(&clean, (uint8_t)v[++i]);
			continue;
		}
		if (c == '"')
			quoted = !quoted;
		if (quoted || c != '<')
			continue;
		for (j = i + 1; j < len && mime_is_wsp(v[j]); j++)
			;
		if (j >= len || v[j] != '@')
			continue;
		for (; j < len && v[j] != ':' && v[j] != '>'; j++)
			;
		if (j < len && v[j] == ':')
			i = j;	/* resume after the route */
	}
	/*
	 * libetpan stops at the first address it cannot read ("a@b,,c@d",
	 * "a@b; c@d"): resume after the next separator, a bounded number of
	 * times (each failed try may scan the rest of the field).
	 */
	data = (const char *)clean.data;
	for (tries = 0; idx < clean.len && tries < MIME_ADDRESS_TRIES;
	    tries++) {
		size_t start = idx;
		const char *sep;

		part = NULL;
		r = mailimf_address_list_parse(data, clean.len, &idx, &part);
		if (r == MAILIMF_NO_ERROR && idx > start) {
			if (al == NULL)
				al = part;
			else {
				clist_concat(al->ad_list, part->ad_list);
				mailimf_address_list_free(part);
			}
			if (idx < clean.len && (data[idx] == ',' ||
			    data[idx] == ';'))
				idx++;
			continue;
		}
		if (r == MAILIMF_NO_ERROR)
			mailimf_address_list_free(part);
		sep = memchr(data + start, ',', clean.len - start);
		if (sep == NULL)
			sep = memchr(data + start, ';', clean.len - start);
		if (sep == NULL)
			break;
		idx = (size_t)(sep - data) + 1;
	}
	buf_free(&clean);
	return al;
}

/* ---- the entity tree ---------------------------------------------- */

static void
mime_field_done(struct mime_ctx *ctx, struct mime_node *node, size_t name_off,
    size_t name_len, size_t val_off, size_t end)
{
	const uint8_t *name = ctx->msg + name_off;
	int f;

	while (name_len > 0 && mime_is_wsp(name[name_len - 1]))
		name_len--;
	if (end - val_off > MIME_FIELD_MAX)
		return;
	for (f = 0; f < MIME_F_COUNT; f++)
		if (name_len == mime_field_names[f].len &&
		    mime_ascii_caseeq(name, name_len, mime_field_names[f].name)) {
			if (node->fields[f].off == MIME_ABSENT) {
				node->fields[f].off = val_off;
				node->fields[f].len = end - val_off;
			}
			return;
		}
}

/*
 * Find the header of the entity at [off, end): it runs to and including
 * the first empty line (CRLF or bare LF), or to end if there is none.
 * Remember where the fields we use are.  One pass, linear.
 */
static void
mime_scan_header(struct mime_ctx *ctx, struct mime_node *node, size_t end)
{
	const uint8_t *msg = ctx->msg;
	size_t p = node->hdr_off, ls, le, next;
	size_t name_off = 0, name_len = 0, val_off = 0;
	int in_field = 0;

	while (p < end) {
		const uint8_t *nl = memchr(msg + p, '\n', end - p);

		ls = p;
		le = nl != NULL ? (size_t)(nl - msg) : end;
		next = nl != NULL ? le + 1 : end;
		if (nl != NULL && (le == ls || (le == ls + 1 && msg[ls] == '\r'))) {
			if (in_field)
				mime_field_done(ctx, node, name_off, name_len,
				    val_off, ls);
			node->hdr_len = next - node->hdr_off;
			return;
		}
		if (mime_is_wsp(msg[ls])) {
			p = next;	/* continuation of in_field, if any */
			continue;
		}
		if (in_field)
			mime_field_done(ctx, node, name_off, name_len, val_off,
			    ls);
		in_field = 0;
		nl = memchr(msg + ls, ':', le - ls);
		if (nl != NULL) {
			in_field = 1;
			name_off = ls;
			name_len = (size_t)(nl - msg) - ls;
			val_off = (size_t)(nl - msg) + 1;
		}
		p = next;
	}
	if (in_field)
		mime_field_done(ctx, node, name_off, name_len, val_off, end);
	node->hdr_len = end - node->hdr_off;
}

static uint32_t
mime_node_new(struct mime_ctx *ctx, size_t off, size_t end, uint32_t parent,
    int no_header)
{
	struct mime_node *node;
	uint32_t i;
	int f;

	if (ctx->n == ctx->cap) {
		ctx->cap = ctx->cap == 0 ? 8 : ctx->cap * 2;
		ctx->nodes = xreallocarray(ctx->nodes, ctx->cap,
		    sizeof(*ctx->nodes));
	}
	i = ctx->n++;
	node = &ctx->nodes[i];
	memset(node, 0, sizeof(*node));
	node->hdr_off = off;
	node->parent = parent;
	node->first_child = node->last_child = MIME_NONE;
	node->next_sibling = MIME_NONE;
	node->depth = parent == MIME_NONE ? 0 : ctx->nodes[parent].depth + 1;
	node->kind = MIME_KIND_TEXT;
	node->type_src = MIME_TYPE_DEFAULT;
	for (f = 0; f < MIME_F_COUNT; f++)
		node->fields[f].off = MIME_ABSENT;
	if (no_header)
		node->no_header = 1;
	else
		mime_scan_header(ctx, node, end);
	node->body_len = end - mime_body_off(node);
	if (parent != MIME_NONE) {
		struct mime_node *pn = &ctx->nodes[parent];

		if (pn->last_child == MIME_NONE)
			pn->first_child = i;
		else
			ctx->nodes[pn->last_child].next_sibling = i;
		pn->last_child = i;
	}
	return i;
}

static const char *
mime_param(const struct mailmime_content *ct, const char *name)
{
	clistiter *it;

	for (it = clist_begin(ct->ct_parameters); it != NULL;
	    it = clist_next(it)) {
		struct mailmime_parameter *p = clist_content(it);

		if (p->pa_name != NULL && p->pa_value != NULL &&
		    mime_ascii_caseeq((const uint8_t *)p->pa_name,
		    strlen(p->pa_name), name))
			return p->pa_value;
	}
	return NULL;
}

static void
mime_make_opaque(struct mime_node *node)
{
	node->kind = MIME_KIND_BASIC;
	node->type_src = MIME_TYPE_OPAQUE;
}

/* Turn a multipart whose body cannot be split into text/plain. */
static void
mime_make_default(struct mime_ctx *ctx, uint32_t i)
{
	struct mime_node *node = &ctx->nodes[i];

	node->kind = MIME_KIND_TEXT;
	node->type_src = MIME_TYPE_DEFAULT;
	node->first_child = node->last_child = MIME_NONE;
}

/* Only transport padding (RFC 2046 5.1.1: LWSP) and a CR until the LF. */
static int
mime_blank_to_eol(const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!mime_is_wsp(p[i]) && !(p[i] == '\r' && i + 1 == len))
			return 0;
	return 1;
}

/*
 * Split a multipart body at its delimiter lines (RFC 2046 5.1.1): a line
 * "--boundary" followed only by white space; a line starting with
 * "--boundary--" closes.  The line break before
 * a delimiter belongs to the delimiter.  A missing close delimiter ends the
 * last part at the end of the body.  If MIME_PARTS_MAX would be passed,
 * the remaining parts become one opaque part.
 */
static void
mime_split(struct mime_ctx *ctx, uint32_t i, const char *boundary)
{
	char delim[MIME_BOUNDARY_MAX + 2];
	size_t dlen, boff, bend, pos, start = 0, rest_start = 0;
	const uint8_t *msg = ctx->msg;
	int in_part = 0, rest = 0, rest_parts = 0;
	uint32_t child;

	dlen = strlen(boundary);
	delim[0] = '-';
	delim[1] = '-';
	memcpy(delim + 2, boundary, dlen);
	dlen += 2;
	boff = mime_body_off(&ctx->nodes[i]);
	bend = boff + ctx->nodes[i].body_len;
	pos = boff;
	while (pos < bend) {
		const uint8_t *hit = memmem(msg + pos, bend - pos, delim, dlen);
		size_t q, after, e, next;
		const uint8_t *nl;
		int close;

		if (hit == NULL)
			break;
		q = (size_t)(hit - msg);
		if (q > boff && msg[q - 1] != '\n') {
			/* Not at a line start: go on from the next line, so
			 * that a periodic boundary ("------") costs linear
			 * time, not one memmem per byte. */
			nl = memchr(hit, '\n', bend - q);
			pos = nl != NULL ? (size_t)(nl - msg) + 1 : bend;
			continue;
		}
		after = q + dlen;
		close = after + 2 <= bend && msg[after] == '-' &&
		    msg[after + 1] == '-';
		nl = memchr(msg + after, '\n', bend - after);
		next = nl != NULL ? (size_t)(nl - msg) + 1 : bend;
		if (!close && !mime_blank_to_eol(msg + after,
		    (nl != NULL ? (size_t)(nl - msg) : bend) - after)) {
			/* "--b1" does not delimit inside "--b10" */
			pos = next;
			continue;
		}
		e = q;
		if (e > boff) {
			e--;
			if (e > boff && msg[e - 1] == '\r')
				e--;
		}
		if (in_part) {
			if (e < start)
				e = start;	/* "--b\r\n--b": empty part */
			if (!rest) {
				child = mime_node_new(ctx, start, e, i, 0);
				(void)child;
			} else
				rest_parts++;
		}
		if (close) {
			in_part = 0;
			bend = e;	/* where the rest part ends */
			break;
		}
		in_part = 1;
		start = next;
		if (!rest && ctx->n + 1 >= MIME_PARTS_MAX) {
			rest = 1;
			rest_start = start;
		}
		pos = next;
	}
	if (in_part) {
		if (!rest)
			(void)mime_node_new(ctx, start, bend, i, 0);
		else
			rest_parts++;
	}
	if (rest && rest_parts > 0) {
		child = mime_node_new(ctx, rest_start, bend, i, rest_parts > 1);
		if (rest_parts > 1)
			mime_make_opaque(&ctx->nodes[child]);
	}
	if (ctx->nodes[i].first_child == MIME_NONE)
		mime_make_default(ctx, i);
}

/* Decide what node i is and add its children to the array. */
static void
mime_process(struct mime_ctx *ctx, uint32_t i)
{
	struct mime_node *node = &ctx->nodes[i];
	struct mailmime_content *ct = NULL;
	const struct mailmime_composite_type *cp;
	const char *v, *boundary;
	size_t len, idx = 0;
	uint32_t parent = node->parent;
	int in_digest = 0;

	if (node->type_src == MIME_TYPE_OPAQUE)
		return;
	if (parent != MIME_NONE && ctx->nodes[parent].kind ==
	    MIME_KIND_MULTIPART && ctx->nodes[parent].ct->ct_subtype != NULL &&
	    mime_ascii_caseeq((const uint8_t *)ctx->nodes[parent].ct->ct_subtype,
	    strlen(ctx->nodes[parent].ct->ct_subtype), "digest"))
		in_digest = 1;
	v = mime_field_parsable(ctx, node, MIME_F_CONTENT_TYPE, &len);
	if (v != NULL && len > 0 &&
	    mailmime_content_parse(v, len, &idx, &ct) == MAILIMF_NO_ERROR &&
	    ct->ct_type != NULL && ct->ct_subtype != NULL) {
		node->ct = ct;
		node->type_src = MIME_TYPE_PARSED;
		node->kind = MIME_KIND_BASIC;
	} else {
		if (ct != NULL)
			mailmime_content_free(ct);
		ct = NULL;
		if (in_digest) {
			node->type_src = MIME_TYPE_DIGEST;
			node->kind = MIME_KIND_MESSAGE;
		}
	}
	if (ct != NULL && ct->ct_type->tp_type == MAILMIME_TYPE_DISCRETE_TYPE &&
	    ct->ct_type->tp_data.tp_discrete_type->dt_type ==
	    MAILMIME_DISCRETE_TYPE_TEXT)
		node->kind = MIME_KIND_TEXT;
	if (ct != NULL && ct->ct_type->tp_type == MAILMIME_TYPE_COMPOSITE_TYPE) {
		cp = ct->ct_type->tp_data.tp_composite_type;
		if (cp->ct_type == MAILMIME_COMPOSITE_TYPE_MULTIPART) {
			boundary = mime_param(ct, "boundary");
			if (boundary == NULL || boundary[0] == '\0' ||
			    strlen(boundary) > MIME_BOUNDARY_MAX) {
				mailmime_content_free(ct);
				node->ct = NULL;
				mime_make_default(ctx, i);
				return;
			}
			if (node->depth >= MIME_DEPTH_MAX ||
			    ctx->n >= MIME_PARTS_MAX) {
				mime_make_opaque(node);
				return;
			}
			node->kind = MIME_KIND_MULTIPART;
			mime_split(ctx, i, boundary);
			return;
		}
		if (cp->ct_type == MAILMIME_COMPOSITE_TYPE_MESSAGE &&
		    mime_ascii_caseeq((const uint8_t *)ct->ct_subtype,
		    strlen(ct->ct_subtype), "rfc822"))
			node->kind = MIME_KIND_MESSAGE;
	}
	if (node->kind == MIME_KIND_MESSAGE) {
		if (node->depth >= MIME_DEPTH_MAX || ctx->n >= MIME_PARTS_MAX) {
			mime_make_opaque(node);
			return;
		}
		(void)mime_node_new(ctx, mime_body_off(node),
		    mime_body_off(node) + node->body_len, i, 0);
	}
}

/* ---- decoded keys ------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p, or 0. */
static size_t
mime_utf8_seq(const uint8_t *p, size_t len)
{
	uint32_t cp;

	return str_utf8_decode(p, len, &cp);
}

static int
mime_utf8_valid(const uint8_t *p, size_t len)
{
	return str_utf8_valid(p, len);
}

/* A copy of s with invalid UTF-8 and control bytes replaced by '?'. */
static char *
mime_utf8_clean(const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	char *out = xmalloc(xadd(len, 1));
	size_t i = 0, o = 0, n;

	while (i < len) {
		n = mime_utf8_seq(p + i, len - i);
		if (n == 0 || (n == 1 && (p[i] < 0x20 || p[i] == 0x7f))) {
			out[o++] = p[i] == '\t' ? ' ' : '?';
			i++;
			continue;
		}
		memcpy(out + o, p + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
	return out;
}

/*
 * Charset labels as Chinese mail uses them, mapped to the iconv superset
 * that decodes what the senders really wrote: mail labelled GB2312 often
 * holds GBK characters (and GBK mail GB18030 ones); Big5 mail holds HKSCS
 * characters.  RFC 2231 language suffixes ("gb2312*zh") are dropped.
 */
static const struct {
	const char *label;
	const char *iconv;
} mime_charset_aliases[] = {
	{ "gb2312", "GB18030" }, { "gb_2312-80", "GB18030" },
	{ "csgb2312", "GB18030" }, { "euc-cn", "GB18030" },
	{ "x-euc-cn", "GB18030" }, { "gbk", "GB18030" }, { "x-gbk", "GB18030" },
	{ "cp936", "GB18030" }, { "ms936", "GB18030" },
	{ "windows-936", "GB18030" }, { "gb18030", "GB18030" },
	{ "big5", "BIG5-HKSCS" }, { "x-big5", "BIG5-HKSCS" },
	{ "cn-big5", "BIG5-HKSCS" }, { "csbig5", "BIG5-HKSCS" },
	{ "big5-hkscs", "BIG5-HKSCS" }, { "utf8", "UTF-8" },
};
#define MIME_CHARSET_LABEL_MAX	64

/* Rewrite the charset of every "=?charset?" in v into out. */
static void
mime_fix_charsets(const char *v, size_t len, struct buf *out)
{
	size_t i = 0, cs, end, k, lablen;

	buf_reset(out);
	(void)buf_append(out, "", 0);
	while (i < len) {
		const char *q = memchr(v + i, '=', len - i), *name = NULL;

		if (q == NULL || (size_t)(q - v) + 1 >= len) {
			(void)buf_append(out, v + i, len - i);
			break;
		}
		cs = (size_t)(q - v) + 2;
		(void)buf_append(out, v + i, cs - i);
		if (v[cs - 1] != '?') {
			i = cs;
			continue;
		}
		for (end = cs; end < len && end - cs < MIME_CHARSET_LABEL_MAX &&
		    v[end] != '?'; end++)
			;
		if (end >= len || v[end] != '?') {
			i = cs;
			continue;
		}
		for (lablen = 0; cs + lablen < end && v[cs + lablen] != '*';
		    lablen++)
			;
		for (k = 0; k < sizeof(mime_charset_aliases) /
		    sizeof(mime_charset_aliases[0]); k++)
			if (mime_ascii_caseeq((const uint8_t *)v + cs, lablen,
			    mime_charset_aliases[k].label))
				name = mime_charset_aliases[k].iconv;
		if (name != NULL)
			(void)buf_append_str(out, name);
		else
			(void)buf_append(out, v + cs, lablen);
		i = end;
	}
}

/*
 * Subject decoded to UTF-8.  RFC 2047 words via libetpan (charsets through
 * iconv, labels widened by mime_fix_charsets()).  Raw 8-bit text that is
 * not UTF-8 is read as GB18030 (a superset of GB2312 and GBK), what
 * undeclared Chinese mail uses.
 */
static char *
mime_decode_subject(const char *v, size_t len)
{
	char *conv = NULL, *dec = NULL, *out;
	struct buf fixed;
	size_t idx = 0;

	if (!mime_utf8_valid((const uint8_t *)v, len) &&
	    charconv("utf-8", "gb18030", v, len, &conv) ==
	    MAIL_CHARCONV_NO_ERROR && conv != NULL) {
		v = conv;
		len = strlen(conv);
	}
	buf_init(&fixed, BUF_UNBOUNDED);
	mime_fix_charsets(v, len, &fixed);
	if (mailmime_encoded_phrase_parse("utf-8", (const char *)fixed.data,
	    fixed.len, &idx, "utf-8", &dec) == MAILIMF_NO_ERROR && dec != NULL)
		out = mime_utf8_clean(dec, strlen(dec));
	else
		out = mime_utf8_clean(v, len);
	buf_free(&fixed);
	free(dec);
	free(conv);
	return out;
}

static char *
mime_first_from(const char *v, size_t len)
{
	struct mailimf_address_list *al;
	const struct mailimf_mailbox *mb = NULL;
	clistiter *it, *jt;
	const char *spec;
	size_t slen;
	char *out;

	if ((al = mime_parse_addresses(v, len)) == NULL)
		return xstrdup("");
	for (it = clist_begin(al->ad_list); it != NULL && mb == NULL;
	    it = clist_next(it)) {
		struct mailimf_address *ad = clist_content(it);

		if (ad->ad_type == MAILIMF_ADDRESS_MAILBOX)
			mb = ad->ad_data.ad_mailbox;
		else if (ad->ad_data.ad_group->grp_mb_list != NULL &&
		    (jt = clist_begin(
		    ad->ad_data.ad_group->grp_mb_list->mb_list)) != NULL)
			mb = clist_content(jt);
	}
	if (mb == NULL) {
		mailimf_address_list_free(al);
		return xstrdup("");
	}
	mime_addr_trim(mb->mb_addr_spec, &spec, &slen);
	out = mime_utf8_clean(spec, slen);
	mailimf_address_list_free(al);
	return out;
}

static int64_t
mime_days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Date: (RFC 5322 3.3) as epoch seconds; 0 if absent or invalid. */
static int64_t
mime_parse_date(const char *v, size_t len)
{
	static const int mdays[12] =
	    { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	struct mailimf_date_time *dt = NULL;
	size_t idx = 0;
	int64_t t = 0, year;
	int zone, zh, zm, leap;

	if (mailimf_date_time_parse(v, len, &idx, &dt) != MAILIMF_NO_ERROR)
		return 0;
	year = dt->dt_year;
	if (year >= 0 && year < 50)
		year += 2000;	/* RFC 5322 4.3 obsolete two-digit years */
	else if (year >= 50 && year < 1000)
		year += 1900;
	zone = dt->dt_zone < 0 ? -dt->dt_zone : dt->dt_zone;
	zh = zone / 100;
	zm = zone % 100;
	leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (year < 1900 || year > 9999 || dt->dt_month < 1 ||
	    dt->dt_month > 12 || dt->dt_day < 1 ||
	    dt->dt_day > mdays[dt->dt_month - 1] ||
	    (dt->dt_month == 2 && dt->dt_day == 29 && !leap) ||
	    dt->dt_hour < 0 || dt->dt_hour > 23 || dt->dt_min < 0 ||
	    dt->dt_min > 59 || dt->dt_sec < 0 || dt->dt_sec > 60 ||
	    zh > 99 || zm > 59)
		goto out;
	t = mime_days_from_civil(year, dt->dt_month, dt->dt_day) * 86400 +
	    dt->dt_hour * 3600 + dt->dt_min * 60 + dt->dt_sec;
	t -= (int64_t)(dt->dt_zone < 0 ? -1 : 1) * (zh * 3600 + zm * 60);
out:
	mailimf_date_time_free(dt);
	return t;
}

static char *
mime_parse_message_id(const char *v, size_t len)
{
	char *id = NULL, *out;
	size_t idx = 0;

	if (mailimf_msg_id_parse(v, len, &idx, &id) != MAILIMF_NO_ERROR ||
	    id == NULL)
		return xstrdup("");
	out = xasprintf("<%s>", id);
	mailimf_msg_id_free(id);
	return out;
}

/* ---- the part map ------------------------------------------------- */

/*
 * Format (version 1): a byte 1, then one entry per part in document
 * order, every number an unsigned LEB128 varint:
 *   ncomp, comp[0..ncomp), flags, hdr_off, hdr_len, body_len
 *   [inner_hdr_len if flags & MIME_PM_MESSAGE]
 * body_off is hdr_off + hdr_len.  MIME_PM_MESSAGE marks a message/rfc822
 * part: its embedded message's header is the first inner_hdr_len bytes of
 * its body.
 */
#define MIME_PM_VERSION	1
#define MIME_PM_MESSAGE	0x1
#define MIME_PATH_MAX	(MIME_DEPTH_MAX + 2)

static void
pm_varint(struct buf *o, uint64_t v)
{
	while (v >= 0x80) {
		(void)buf_append_byte(o, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	(void)buf_append_byte(o, (uint8_t)v);
}

static void
pm_entry(struct mime_ctx *ctx, struct buf *o, const uint32_t *path,
    size_t np, uint32_t i)
{
	const struct mime_node *node = &ctx->nodes[i];
	size_t k;
	int msg = node->kind == MIME_KIND_MESSAGE &&
	    node->first_child != MIME_NONE;

	pm_varint(o, np);
	for (k = 0; k < np; k++)
		pm_varint(o, path[k]);
	pm_varint(o, msg ? MIME_PM_MESSAGE : 0);
	pm_varint(o, node->hdr_off);
	pm_varint(o, node->hdr_len);
	pm_varint(o, node->body_len);
	if (msg)
		pm_varint(o, ctx->nodes[node->first_child].hdr_len);
}

static void pm_walk_message(struct mime_ctx *, struct buf *, uint32_t *,
    size_t, uint32_t);

/* Part i, named path[0..np).  Recursion bounded by MIME_DEPTH_MAX. */
static void
pm_walk(struct mime_ctx *ctx, struct buf *o, uint32_t *path, size_t np,
    uint32_t i)
{
	const struct mime_node *node = &ctx->nodes[i];
	uint32_t c, k = 1;

	pm_entry(ctx, o, path, np, i);
	if (node->kind == MIME_KIND_MULTIPART && np < MIME_PATH_MAX) {
		for (c = node->first_child; c != MIME_NONE;
		    c = ctx->nodes[c].next_sibling) {
			path[np] = k++;
			pm_walk(ctx, o, path, np + 1, c);
		}
	} else if (node->kind == MIME_KIND_MESSAGE &&
	    node->first_child != MIME_NONE)
		pm_walk_message(ctx, o, path, np, node->first_child);
}

/* The parts of message m (top-level or embedded), named under path. */
static void
pm_walk_message(struct mime_ctx *ctx, struct buf *o, uint32_t *path,
    size_t np, uint32_t m)
{
	const struct mime_node *node = &ctx->nodes[m];
	uint32_t c, k = 1;

	if (np >= MIME_PATH_MAX)
		return;
	if (node->kind == MIME_KIND_MULTIPART) {
		for (c = node->first_child; c != MIME_NONE;
		    c = ctx->nodes[c].next_sibling) {
			path[np] = k++;
			pm_walk(ctx, o, path, np + 1, c);
		}
		return;
	}
	path[np] = 1;
	pm_walk(ctx, o, path, np + 1, m);
}

static int
pm_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *v_r)
{
	uint64_t v = 0;
	unsigned shift = 0;

	while (*pos < len) {
		uint8_t c = p[(*pos)++];

		if (shift > 63)
			return -1;
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v_r = v;
			return 0;
		}
		shift += 7;
	}
	return -1;
}

int
mime_partmap_find(const uint8_t *partmap, size_t partmap_len,
    const char *part, uint64_t *header_off_r, uint64_t *header_len_r,
    uint64_t *body_off_r, uint64_t *body_len_r)
{
	uint64_t want[MIME_PATH_MAX], v, ncomp, flags, hoff, hlen, blen;
	uint64_t ihlen = 0;
	size_t nwant = 0, pos = 1, k;
	const char *s = part, *dot;
	const char *errstr;
	int inner = 0, match;

	if (partmap == NULL || partmap_len < 1 || partmap[0] != MIME_PM_VERSION ||
	    part == NULL)
		return -1;
	/* "1.2.3", "" ; optionally ending in HEADER or TEXT */
	while (*s != '\0') {
		if (str_casecmp(s, "HEADER") == 0 || str_casecmp(s, "TEXT") == 0) {
			inner = 1;
			break;
		}
		dot = strchr(s, '.');
		k = dot != NULL ? (size_t)(dot - s) : strlen(s);
		if (nwant == MIME_PATH_MAX ||
		    strnum_u64_n(s, k, UINT32_MAX, &v, &errstr) == -1 || v == 0)
			return -1;
		want[nwant++] = v;
		if (dot == NULL)
			break;
		s = dot + 1;
		if (*s == '\0')
			return -1;
	}
	while (pos < partmap_len) {
		if (pm_get(partmap, partmap_len, &pos, &ncomp) == -1)
			return -1;
		match = ncomp == nwant;
		for (k = 0; k < ncomp; k++) {
			if (pm_get(partmap, partmap_len, &pos, &v) == -1)
				return -1;
			if (k < nwant && want[k] != v)
				match = 0;
		}
		if (pm_get(partmap, partmap_len, &pos, &flags) == -1 ||
		    pm_get(partmap, partmap_len, &pos, &hoff) == -1 ||
		    pm_get(partmap, partmap_len, &pos, &hlen) == -1 ||
		    pm_get(partmap, partmap_len, &pos, &blen) == -1)
			return -1;
		if ((flags & MIME_PM_MESSAGE) &&
		    pm_get(partmap, partmap_len, &pos, &ihlen) == -1)
			return -1;
		if (!match)
			continue;
		if (inner && nwant > 0) {
			if (!(flags & MIME_PM_MESSAGE) || ihlen > blen)
				return -1;
			hoff += hlen;
			hlen = ihlen;
			blen -= ihlen;
		}
		if (hoff > UINT64_MAX - hlen)
			return -1;
		*header_off_r = hoff;
		*header_len_r = hlen;
		*body_off_r = hoff + hlen;
		*body_len_r = blen;
		return 0;
	}
	return -1;
}

/* ---- entry points ------------------------------------------------- */

int
mime_analyse(const uint8_t *msg, size_t len, struct mime_info *info_r,
    const char **error_r)
{
	struct mime_ctx ctx;
	struct buf bs, b, pm;
	struct mime_node *root;
	uint32_t i, path[MIME_PATH_MAX];
	const char *v;
	size_t vlen;

	memset(info_r, 0, sizeof(*info_r));
	if (msg == NULL && len > 0) {
		*error_r = "mime_analyse: no message";
		return -1;
	}
	if (msg == NULL)
		msg = (const uint8_t *)"";
	memset(&ctx, 0, sizeof(ctx));
	ctx.msg = msg;
	ctx.len = len;
	buf_init(&ctx.scratch, BUF_UNBOUNDED);
	(void)mime_node_new(&ctx, 0, len, MIME_NONE, 0);
	/* Breadth-first: each node's children are appended behind it. */
	for (i = 0; i < ctx.n; i++)
		mime_process(&ctx, i);

	buf_init(&bs, BUF_UNBOUNDED);
	buf_init(&b, BUF_UNBOUNDED);
	buf_init(&pm, BUF_UNBOUNDED);
	mime_imap_write_body(&ctx, &bs, &b, 0);
	info_r->bodystructure = buf_steal(&bs);
	info_r->body = buf_steal(&b);
	mime_imap_write_envelope(&ctx, &bs, &ctx.nodes[0]);
	info_r->envelope = buf_steal(&bs);

	(void)buf_append_byte(&pm, MIME_PM_VERSION);
	pm_entry(&ctx, &pm, path, 0, 0);
	pm_walk_message(&ctx, &pm, path, 0, 0);
	info_r->partmap_len = pm.len;
	info_r->partmap = (uint8_t *)buf_steal(&pm);

	root = &ctx.nodes[0];
	info_r->header_size = root->hdr_len;
	{
		uint64_t lines = mime_count_lines(msg + root->hdr_len,
		    root->body_len);

		info_r->lines = lines > UINT32_MAX ? UINT32_MAX :
		    (uint32_t)lines;
	}
	v = mime_field_value(&ctx, root, MIME_F_SUBJECT, &vlen);
	info_r->subject = v != NULL ? mime_decode_subject(v, vlen) :
	    xstrdup("");
	v = mime_field_parsable(&ctx, root, MIME_F_FROM, &vlen);
	info_r->from = v != NULL ? mime_first_from(v, vlen) : xstrdup("");
	v = mime_field_parsable(&ctx, root, MIME_F_MESSAGE_ID, &vlen);
	info_r->message_id = v != NULL ? mime_parse_message_id(v, vlen) :
	    xstrdup("");
	v = mime_field_parsable(&ctx, root, MIME_F_DATE, &vlen);
	info_r->date = v != NULL ? mime_parse_date(v, vlen) : 0;

	for (i = 0; i < ctx.n; i++)
		if (ctx.nodes[i].ct != NULL)
			mailmime_content_free(ctx.nodes[i].ct);
	free(ctx.nodes);
	buf_free(&ctx.scratch);
	return 0;
}

void
mime_info_free(struct mime_info *info)
{
	if (info == NULL)
		return;
	free(info->envelope);
	free(info->bodystructure);
	free(info->body);
	free(info->subject);
	free(info->from);
	free(info->message_id);
	free(info->partmap);
	memset(info, 0, sizeof(*info));
}
