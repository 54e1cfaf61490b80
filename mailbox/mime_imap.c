/*
 * mime_imap.c - the IMAP text of what mime.c found: ENVELOPE, BODYSTRUCTURE
 * and BODY (RFC 3501 7.4.2), written once at delivery.
 *
 * Runs in the delivering process, called by mime_analyse() only.  The
 * strings written come from untrusted headers: every one is sent as a
 * quoted string with escapes or, when it holds CR, LF or 8-bit bytes, as a
 * literal; NUL (not allowed even in a literal) is sent as a space.  Types,
 * subtypes, parameter names and encodings are upper-cased, as in RFC 3501's
 * examples; values keep their case.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "strnum.h"
#include "xmalloc.h"

#include "mime.h"
#include "mime_priv.h"

/* ---- IMAP output -------------------------------------------------- */

static void
out_str(struct buf *o, const char *s)
{
	(void)buf_append_str(o, s);
}

/*
 * An IMAP string: quoted if every byte is 7-bit text other than CR, LF
 * and NUL, else a literal.  NUL cannot appear even in a literal (RFC 3501
 * CHAR8), so it is sent as a space.
 */
static void
out_string(struct buf *o, const char *s, size_t len, int upper)
{
	size_t i;
	int literal = 0;

	for (i = 0; i < len; i++) {
		uint8_t c = (uint8_t)s[i];

		if (c >= 0x80 || c == '\r' || c == '\n' || c == 0) {
			literal = 1;
			break;
		}
	}
	if (literal) {
		(void)buf_printf(o, "{%zu}\r\n", len);
		for (i = 0; i < len; i++)
			(void)buf_append_byte(o, s[i] == 0 ? ' ' : (uint8_t)s[i]);
		return;
	}
	(void)buf_append_byte(o, '"');
	for (i = 0; i < len; i++) {
		int c = (uint8_t)s[i];

		if (c == '"' || c == '\\')
			(void)buf_append_byte(o, '\\');
		(void)buf_append_byte(o, (uint8_t)(upper ? mime_upper(c) : c));
	}
	(void)buf_append_byte(o, '"');
}

static void
out_nstring(struct buf *o, const char *s, int upper)
{
	if (s == NULL)
		out_str(o, "NIL");
	else
		out_string(o, s, strlen(s), upper);
}

/* A header value as an nstring: NIL when absent or empty. */
static void
out_field(struct mime_ctx *ctx, struct buf *o, const struct mime_node *node,
    enum mime_field f)
{
	size_t len;
	const char *v = mime_field_value(ctx, node, f, &len);

	if (v == NULL || len == 0)
		out_str(o, "NIL");
	else
		out_string(o, v, len, 0);
}

/* ---- ENVELOPE ----------------------------------------------------- */

/* Something to show: an address or at least a name ("<>" is nothing). */
static int
mime_mailbox_usable(const struct mailimf_mailbox *mb)
{
	const char *spec;
	size_t len;

	mime_addr_trim(mb->mb_addr_spec, &spec, &len);
	return len > 0 || (mb->mb_display_name != NULL &&
	    mb->mb_display_name[0] != '\0');
}

static void
out_mailbox(struct buf *o, const struct mailimf_mailbox *mb)
{
	const char *spec, *at;
	size_t len;

	(void)buf_append_byte(o, '(');
	if (mb->mb_display_name != NULL && mb->mb_display_name[0] != '\0')
		out_nstring(o, mb->mb_display_name, 0);
	else
		out_str(o, "NIL");
	out_str(o, " NIL ");
	mime_addr_trim(mb->mb_addr_spec, &spec, &len);
	at = len > 0 ? memrchr(spec, '@', len) : NULL;
	if (at == NULL) {
		/* "" rather than NIL: a NIL host marks a group (RFC 3501
		 * 7.4.2).  No domain: Dovecot's placeholder. */
		out_string(o, spec, len, 0);
		out_str(o, len > 0 ? " \"MISSING_DOMAIN\"" : " \"\"");
	} else {
		out_string(o, spec, (size_t)(at - spec), 0);
		(void)buf_append_byte(o, ' ');
		out_string(o, at + 1, len - (size_t)(at + 1 - spec), 0);
	}
	(void)buf_append_byte(o, ')');
}

/* Returns the number of address structures written (0: nothing usable). */
static size_t
out_address_list(struct buf *o, const char *v, size_t len)
{
	struct mailimf_address_list *al = NULL;
	clistiter *it, *jt;
	size_t n = 0;

	if ((al = mime_parse_addresses(v, len)) == NULL)
		return 0;
	for (it = clist_begin(al->ad_list); it != NULL; it = clist_next(it)) {
		struct mailimf_address *ad = clist_content(it);

		if (ad->ad_type == MAILIMF_ADDRESS_MAILBOX &&
		    !mime_mailbox_usable(ad->ad_data.ad_mailbox))
			continue;
		if (n == 0)
			(void)buf_append_byte(o, '(');
		if (ad->ad_type == MAILIMF_ADDRESS_MAILBOX) {
			out_mailbox(o, ad->ad_data.ad_mailbox);
			n++;
			continue;
		}
		/* RFC 3501: group start (NIL NIL "name" NIL), its members,
		 * group end (NIL NIL NIL NIL). */
		out_str(o, "(NIL NIL ");
		out_nstring(o, ad->ad_data.ad_group->grp_display_name, 0);
		out_str(o, " NIL)");
		if (ad->ad_data.ad_group->grp_mb_list != NULL)
			for (jt = clist_begin(
			    ad->ad_data.ad_group->grp_mb_list->mb_list);
			    jt != NULL; jt = clist_next(jt))
				out_mailbox(o, clist_content(jt));
		out_str(o, "(NIL NIL NIL NIL)");
		n++;
	}
	if (n > 0)
		(void)buf_append_byte(o, ')');
	mailimf_address_list_free(al);
	return n;
}

static void
out_addresses(struct mime_ctx *ctx, struct buf *o,
    const struct mime_node *node, enum mime_field f, enum mime_field dflt)
{
	size_t len;
	const char *v = mime_field_parsable(ctx, node, f, &len);

	if (v != NULL && len > 0 && out_address_list(o, v, len) > 0)
		return;
	if (dflt != MIME_F_COUNT) {
		out_addresses(ctx, o, node, dflt, MIME_F_COUNT);
		return;
	}
	out_str(o, "NIL");
}

void
mime_imap_write_envelope(struct mime_ctx *ctx, struct buf *o,
    const struct mime_node *node)
{
	(void)buf_append_byte(o, '(');
	out_field(ctx, o, node, MIME_F_DATE);
	(void)buf_append_byte(o, ' ');
	out_field(ctx, o, node, MIME_F_SUBJECT);
	(void)buf_append_byte(o, ' ');
	out_addresses(ctx, o, node, MIME_F_FROM, MIME_F_COUNT);
	(void)buf_append_byte(o, ' ');
	out_addresses(ctx, o, node, MIME_F_SENDER, MIME_F_FROM);
	(void)buf_append_byte(o, ' ');
	out_addresses(ctx, o, node, MIME_F_REPLY_TO, MIME_F_FROM);
	(void)buf_append_byte(o, ' ');
	out_addresses(ctx, o, node, MIME_F_TO, MIME_F_COUNT);
	(void)buf_append_byte(o, ' ');
	out_addresses(ctx, o, node, MIME_F_CC, MIME_F_COUNT);
	(void)buf_append_byte(o, ' ');
	out_addresses(ctx, o, node, MIME_F_BCC, MIME_F_COUNT);
	(void)buf_append_byte(o, ' ');
	out_field(ctx, o, node, MIME_F_IN_REPLY_TO);
	(void)buf_append_byte(o, ' ');
	out_field(ctx, o, node, MIME_F_MESSAGE_ID);
	(void)buf_append_byte(o, ')');
}

/* ---- BODYSTRUCTURE ------------------------------------------------ */

static void
out_both(struct buf *bs, struct buf *b, const char *s)
{
	out_str(bs, s);
	out_str(b, s);
}

static void
out_both_string(struct buf *bs, struct buf *b, const char *s, int upper)
{
	out_nstring(bs, s, upper);
	out_nstring(b, s, upper);
}

/* ---- parameters (RFC 2045 5.1, RFC 2231) --------------------------- */

/*
 * RFC 2231 continuations ("name*0*=...; name*1=...") are joined into one
 * parameter, as Dovecot sends them: "NAME" with the plain value, or
 * "NAME*" with the still percent-encoded value ("charset'lang'%xx...")
 * if any section is encoded.  Sections are taken in order from 0 and stop
 * at the first gap; at most MIME_RFC2231_SECTIONS_MAX per parameter.
 */
#define MIME_RFC2231_SECTIONS_MAX	1000

struct mime_param {
	const char *name;
	const char *value;
	size_t keylen;		/* bytes of name before its first '*' */
	uint32_t section;	/* continuation number; UINT32_MAX: none */
	int encoded;		/* "name*N*": the value is percent-encoded */
	size_t order;		/* input position, to keep the sort stable */
};

struct mime_params {
	struct mime_param *v;
	size_t n, cap;
};

static void
params_add(struct mime_params *ps, const char *name, const char *value)
{
	struct mime_param *p;
	const char *star, *end;
	uint64_t num;
	const char *errstr;

	if (name == NULL || value == NULL)
		return;
	if (ps->n == ps->cap) {
		ps->cap = ps->cap == 0 ? 8 : xmul(ps->cap, 2);
		ps->v = xreallocarray(ps->v, ps->cap, sizeof(*ps->v));
	}
	p = &ps->v[ps->n];
	p->name = name;
	p->value = value;
	p->keylen = strlen(name);
	p->section = UINT32_MAX;
	p->encoded = 0;
	p->order = ps->n++;
	if ((star = strchr(name, '*')) == NULL || star[1] == '\0')
		return;		/* "name" or "name*": sent as it is */
	end = strchr(star + 1, '*');
	if (end != NULL && end[1] != '\0')
		return;
	if (strnum_u64_n(star + 1, end != NULL ? (size_t)(end - star - 1) :
	    strlen(star + 1), MIME_RFC2231_SECTIONS_MAX - 1, &num,
	    &errstr) == -1)
		return;
	p->keylen = (size_t)(star - name);
	p->section = (uint32_t)num;
	p->encoded = end != NULL;
}

/* ASCII case-insensitive comparison of n bytes. */
static int
mime_casecmp_n(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int ca = mime_lower((uint8_t)a[i]), cb = mime_lower((uint8_t)b[i]);

		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	return 0;
}

static int
params_same_key(const struct mime_param *x, const struct mime_param *y)
{
	return x->keylen == y->keylen &&
	    mime_casecmp_n(x->name, y->name, x->keylen) == 0;
}

/* Order continuation sections by key, then section, then position. */
static int
params_cmp(const void *a, const void *b)
{
	const struct mime_param *x = a, *y = b;
	size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
	int r = mime_casecmp_n(x->name, y->name, n);

	if (r != 0)
		return r;
	if (x->keylen != y->keylen)
		return x->keylen < y->keylen ? -1 : 1;
	if (x->section != y->section)
		return x->section < y->section ? -1 : 1;
	return x->order < y->order ? -1 : (x->order > y->order);
}

static void
out_param(struct buf *o, int *n, const char *name, size_t namelen,
    const char *value, size_t valuelen)
{
	out_str(o, (*n)++ == 0 ? "(" : " ");
	out_string(o, name, namelen, 1);
	(void)buf_append_byte(o, ' ');
	out_string(o, value, valuelen, 0);
}

/* One RFC 2231 parameter from its sorted sections c[0..nc) into o. */
static void
out_param_joined(struct buf *o, int *n, const struct mime_param *c,
    size_t nc, struct buf *name, struct buf *value)
{
	uint32_t want = 0;
	size_t k;
	int encoded = 0;
	const char *v;

	if (c[0].section != 0)
		return;		/* no first section: nothing to join */
	for (k = 0; k < nc; k++)
		if (c[k].encoded)
			encoded = 1;
	buf_reset(name);
	buf_reset(value);
	(void)buf_append(name, c[0].name, c[0].keylen);
	(void)buf_append(value, "", 0);
	if (encoded) {
		(void)buf_append_byte(name, '*');
		if (!c[0].encoded)
			(void)buf_append_str(value, "''");
	}
	for (k = 0; k < nc && c[k].section <= want; k++) {
		if (c[k].section < want)
			continue;	/* a repeated section: first wins */
		want++;
		if (!encoded || c[k].encoded) {
			(void)buf_append_str(value, c[k].value);
			continue;
		}
		for (v = c[k].value; *v != '\0'; v++)
			if (*v == '%')
				(void)buf_append_str(value, "%25");
			else
				(void)buf_append_byte(value, (uint8_t)*v);
	}
	out_param(o, n, (const char *)name->data, name->len,
	    (const char *)value->data, value->len);
}

/*
 * body-fld-param from ps, or NIL: plain parameters in their order, then
 * the joined RFC 2231 ones.  With text set, a missing charset is sent as
 * "CHARSET" "US-ASCII", the RFC 2045 5.2 default, as Dovecot does.
 */
static void
out_param_list(struct buf *o, struct mime_params *ps, int text)
{
	struct mime_param *cont;
	struct buf name, value;
	size_t i, j, nc = 0;
	int n = 0, charset = 0;

	cont = xreallocarray(NULL, ps->n > 0 ? ps->n : 1, sizeof(*cont));
	for (i = 0; i < ps->n; i++) {
		const struct mime_param *p = &ps->v[i];

		if (p->section != UINT32_MAX) {
			cont[nc++] = *p;
			continue;
		}
		if (mime_casecmp_n(p->name, "charset", 7) == 0 &&
		    (p->name[7] == '\0' || strcmp(p->name + 7, "*") == 0))
			charset = 1;
		out_param(o, &n, p->name, strlen(p->name), p->value,
		    strlen(p->value));
	}
	qsort(cont, nc, sizeof(*cont), params_cmp);
	buf_init(&name, BUF_UNBOUNDED);
	buf_init(&value, BUF_UNBOUNDED);
	for (i = 0; i < nc; i = j) {
		for (j = i + 1; j < nc && params_same_key(&cont[j], &cont[i]);
		    j++)
			;
		if (cont[i].keylen == 7 &&
		    mime_casecmp_n(cont[i].name, "charset", 7) == 0)
			charset = 1;
		out_param_joined(o, &n, cont + i, j - i, &name, &value);
	}
	buf_free(&name);
	buf_free(&value);
	free(cont);
	if (text && !charset)
		out_param(o, &n, "CHARSET", 7, "US-ASCII", 8);
	out_str(o, n > 0 ? ")" : "NIL");
}

/* Content-Type parameters (libetpan's list) as body-fld-param. */
static void
out_params(struct buf *o, clist *params, int text)
{
	struct mime_params ps = { NULL, 0, 0 };
	clistiter *it;

	if (params != NULL)
		for (it = clist_begin(params); it != NULL; it = clist_next(it)) {
			struct mailmime_parameter *p = clist_content(it);

			params_add(&ps, p->pa_name, p->pa_value);
		}
	out_param_list(o, &ps, text);
	free(ps.v);
}

static const char *
mime_discrete_name(const struct mailmime_discrete_type *dt)
{
	switch (dt->dt_type) {
	case MAILMIME_DISCRETE_TYPE_TEXT:
		return "TEXT";
	case MAILMIME_DISCRETE_TYPE_IMAGE:
		return "IMAGE";
	case MAILMIME_DISCRETE_TYPE_AUDIO:
		return "AUDIO";
	case MAILMIME_DISCRETE_TYPE_VIDEO:
		return "VIDEO";
	case MAILMIME_DISCRETE_TYPE_APPLICATION:
		return "APPLICATION";
	default:
		return dt->dt_extension != NULL ? dt->dt_extension :
		    "APPLICATION";
	}
}

static const char *
mime_type_name(const struct mailmime_content *ct)
{
	const struct mailmime_composite_type *cp;

	if (ct->ct_type->tp_type == MAILMIME_TYPE_DISCRETE_TYPE)
		return mime_discrete_name(ct->ct_type->tp_data.tp_discrete_type);
	cp = ct->ct_type->tp_data.tp_composite_type;
	switch (cp->ct_type) {
	case MAILMIME_COMPOSITE_TYPE_MESSAGE:
		return "MESSAGE";
	case MAILMIME_COMPOSITE_TYPE_MULTIPART:
		return "MULTIPART";
	default:
		return cp->ct_token != NULL ? cp->ct_token : "APPLICATION";
	}
}

/* The media type, subtype and parameters (body-fld-param) to both. */
static void
out_type(struct buf *bs, struct buf *b, const struct mime_node *node)
{
	static const char *const dflt =
	    "\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\")";

	switch (node->type_src) {
	case MIME_TYPE_DEFAULT:
		out_both(bs, b, dflt);
		return;
	case MIME_TYPE_DIGEST:
		out_both(bs, b, "\"MESSAGE\" \"RFC822\" NIL");
		return;
	case MIME_TYPE_OPAQUE:
		out_both(bs, b, "\"APPLICATION\" \"OCTET-STREAM\" NIL");
		return;
	case MIME_TYPE_PARSED:
		break;
	}
	out_both_string(bs, b, mime_type_name(node->ct), 1);
	out_both(bs, b, " ");
	out_both_string(bs, b, node->ct->ct_subtype != NULL ?
	    node->ct->ct_subtype : "OCTET-STREAM", 1);
	out_both(bs, b, " ");
	out_params(bs, node->ct->ct_parameters,
	    node->kind == MIME_KIND_TEXT);
	out_params(b, node->ct->ct_parameters, node->kind == MIME_KIND_TEXT);
}

static void
out_encoding(struct mime_ctx *ctx, struct buf *bs, struct buf *b,
    const struct mime_node *node)
{
	struct mailmime_mechanism *m = NULL;
	const char *v, *name = "7BIT";
	size_t len, idx = 0;

	v = mime_field_parsable(ctx, node, MIME_F_CONTENT_TRANSFER_ENCODING,
	    &len);
	if (v != NULL && len > 0 &&
	    mailmime_encoding_parse(v, len, &idx, &m) == MAILIMF_NO_ERROR) {
		switch (m->enc_type) {
		case MAILMIME_MECHANISM_8BIT:
			name = "8BIT";
			break;
		case MAILMIME_MECHANISM_BINARY:
			name = "BINARY";
			break;
		case MAILMIME_MECHANISM_QUOTED_PRINTABLE:
			name = "QUOTED-PRINTABLE";
			break;
		case MAILMIME_MECHANISM_BASE64:
			name = "BASE64";
			break;
		case MAILMIME_MECHANISM_TOKEN:
			if (m->enc_token != NULL)
				name = m->enc_token;
			break;
		default:
			break;
		}
	}
	out_both_string(bs, b, name, 1);
	if (m != NULL)
		mailmime_mechanism_free(m);
}

static void
out_disposition(struct mime_ctx *ctx, struct buf *o,
    const struct mime_node *node)
{
	struct mailmime_disposition *d = NULL;
	struct mime_params ps = { NULL, 0, 0 };
	const char *v, *type;
	clistiter *it;
	size_t len, idx = 0;
	char num[32] = "";

	v = mime_field_parsable(ctx, node, MIME_F_CONTENT_DISPOSITION, &len);
	if (v == NULL || len == 0 ||
	    mailmime_disposition_parse(v, len, &idx, &d) != MAILIMF_NO_ERROR) {
		out_str(o, "NIL");
		return;
	}
	switch (d->dsp_type->dsp_type) {
	case MAILMIME_DISPOSITION_TYPE_INLINE:
		type = "INLINE";
		break;
	case MAILMIME_DISPOSITION_TYPE_ATTACHMENT:
		type = "ATTACHMENT";
		break;
	default:
		type = d->dsp_type->dsp_extension != NULL ?
		    d->dsp_type->dsp_extension : "ATTACHMENT";
		break;
	}
	(void)buf_append_byte(o, '(');
	out_nstring(o, type, 1);
	(void)buf_append_byte(o, ' ');
	for (it = clist_begin(d->dsp_parms); it != NULL; it = clist_next(it)) {
		struct mailmime_disposition_parm *p = clist_content(it);

		switch (p->pa_type) {
		case MAILMIME_DISPOSITION_PARM_FILENAME:
			params_add(&ps, "FILENAME", p->pa_data.pa_filename);
			break;
		case MAILMIME_DISPOSITION_PARM_CREATION_DATE:
			params_add(&ps, "CREATION-DATE",
			    p->pa_data.pa_creation_date);
			break;
		case MAILMIME_DISPOSITION_PARM_MODIFICATION_DATE:
			params_add(&ps, "MODIFICATION-DATE",
			    p->pa_data.pa_modification_date);
			break;
		case MAILMIME_DISPOSITION_PARM_READ_DATE:
			params_add(&ps, "READ-DATE", p->pa_data.pa_read_date);
			break;
		case MAILMIME_DISPOSITION_PARM_SIZE:
			/* libetpan made it a number; one SIZE is kept */
			if (num[0] != '\0')
				break;
			(void)snprintf(num, sizeof(num), "%zu",
			    p->pa_data.pa_size);
			params_add(&ps, "SIZE", num);
			break;
		case MAILMIME_DISPOSITION_PARM_PARAMETER:
			if (p->pa_data.pa_parameter != NULL)
				params_add(&ps,
				    p->pa_data.pa_parameter->pa_name,
				    p->pa_data.pa_parameter->pa_value);
			break;
		default:
			break;
		}
	}
	out_param_list(o, &ps, 0);
	(void)buf_append_byte(o, ')');
	free(ps.v);
	mailmime_disposition_free(d);
}

/* Content-Language (RFC 3282) as a list of tags, or NIL. */
static void
out_language(struct mime_ctx *ctx, struct buf *o, const struct mime_node *node)
{
	const char *v;
	size_t len, i = 0, start;
	int n = 0;

	v = mime_field_value(ctx, node, MIME_F_CONTENT_LANGUAGE, &len);
	while (v != NULL && i < len) {
		int c = (uint8_t)v[i];

		if (c == '(') {
			/* a comment, not nested further than one level */
			while (i < len && v[i] != ')')
				i++;
			i++;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '*')) {
			i++;
			continue;
		}
		start = i;
		while (i < len && (((c = (uint8_t)v[i]) >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '*'))
			i++;
		out_str(o, n++ == 0 ? "(" : " ");
		out_string(o, v + start, i - start, 0);
	}
	out_str(o, n > 0 ? ")" : "NIL");
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc, to the extended output. */
static void
out_ext_tail(struct mime_ctx *ctx, struct buf *bs, const struct mime_node *node)
{
	out_disposition(ctx, bs, node);
	(void)buf_append_byte(bs, ' ');
	out_language(ctx, bs, node);
	(void)buf_append_byte(bs, ' ');
	out_field(ctx, bs, node, MIME_F_CONTENT_LOCATION);
}

/*
 * BODYSTRUCTURE into bs and BODY into b.  Recursion follows our own tree,
 * whose depth is at most MIME_DEPTH_MAX.
 */
void
mime_imap_write_body(struct mime_ctx *ctx, struct buf *bs, struct buf *b,
    uint32_t i)
{
	const struct mime_node *node = &ctx->nodes[i];
	const uint8_t *body = ctx->msg + mime_body_off(node);
	uint32_t c;

	out_both(bs, b, "(");
	if (node->kind == MIME_KIND_MULTIPART) {
		for (c = node->first_child; c != MIME_NONE;
		    c = ctx->nodes[c].next_sibling)
			mime_imap_write_body(ctx, bs, b, c);
		out_both(bs, b, " ");
		out_both_string(bs, b, node->ct->ct_subtype, 1);
		(void)buf_append_byte(bs, ' ');
		out_params(bs, node->ct->ct_parameters, 0);
		(void)buf_append_byte(bs, ' ');
		out_ext_tail(ctx, bs, node);
		out_both(bs, b, ")");
		return;
	}
	out_type(bs, b, node);
	out_both(bs, b, " ");
	out_field(ctx, bs, node, MIME_F_CONTENT_ID);
	out_field(ctx, b, node, MIME_F_CONTENT_ID);
	out_both(bs, b, " ");
	out_field(ctx, bs, node, MIME_F_CONTENT_DESCRIPTION);
	out_field(ctx, b, node, MIME_F_CONTENT_DESCRIPTION);
	out_both(bs, b, " ");
	out_encoding(ctx, bs, b, node);
	(void)buf_printf(bs, " %zu", node->body_len);
	(void)buf_printf(b, " %zu", node->body_len);
	if (node->kind == MIME_KIND_MESSAGE) {
		size_t mark = bs->len;

		out_both(bs, b, " ");
		mime_imap_write_envelope(ctx, bs, &ctx->nodes[node->first_child]);
		(void)buf_append(b, bs->data + mark + 1, bs->len - mark - 1);
		out_both(bs, b, " ");
		mime_imap_write_body(ctx, bs, b, node->first_child);
	}
	if (node->kind == MIME_KIND_TEXT || node->kind == MIME_KIND_MESSAGE) {
		uint64_t lines = mime_count_lines(body, node->body_len);

		(void)buf_printf(bs, " %llu", (unsigned long long)lines);
		(void)buf_printf(b, " %llu", (unsigned long long)lines);
	}
	out_str(bs, " NIL ");
	out_ext_tail(ctx, bs, node);
	out_both(bs, b, ")");
}

