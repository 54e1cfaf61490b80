/*
 * cmd_search.c - SEARCH / UID SEARCH: every RFC 3501 search key, CHARSET
 * UTF-8 / US-ASCII, MODSEQ (CONDSTORE), ESEARCH RETURN (MIN MAX COUNT ALL
 * SAVE) and SEARCHRES ($).  Text keys match case-insensitively (ASCII
 * folding) on the raw text and on decoded text: RFC 2047 encoded words in
 * headers, quoted-printable and base64 bodies, and GB2312, GBK, GB18030,
 * Big5 (or any charset iconv knows) converted to UTF-8, so Chinese text is
 * found in subjects, addresses and bodies.
 *
 * govmail-imapd workers.  The search program is untrusted: its nesting is
 * bounded (IMAPD_SEARCH_DEPTH_MAX) and so is every recursion here.
 * Message contents are untrusted too: decoders are bounded by the part
 * sizes and IMAPD_SEARCH_PARTS_MAX.
 */
#include "autoconf.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "imap_util.h"
#include "imap_meta.h"
#include "imapd.h"
#include "log.h"
#include "strnum.h"
#include "xmalloc.h"

/* Nesting of NOT / OR / parenthesised keys. */
#define IMAPD_SEARCH_DEPTH_MAX 64
/* Keys in one program. */
#define IMAPD_SEARCH_KEYS_MAX 1024
/* MIME parts decoded per message for BODY/TEXT. */
#define IMAPD_SEARCH_PARTS_MAX 64
/* Longest charset name honoured. */
#define IMAPD_CHARSET_MAX 40

enum skey {
	K_ALL, K_AND, K_OR, K_NOT,
	K_FLAG, K_NOFLAG, K_KEYWORD, K_UNKEYWORD,
	K_RECENT, K_NEW, K_OLD,
	K_LARGER, K_SMALLER,
	K_SET,			/* sequence or UID set, as UID ranges */
	K_BEFORE, K_ON, K_SINCE,
	K_SENTBEFORE, K_SENTON, K_SENTSINCE,
	K_HEADER, K_SUBJECT, K_FROM, K_BODY, K_TEXT,
	K_MODSEQ,
};

struct snode {
	enum skey key;
	uint32_t flag;
	uint64_t num;
	int64_t days;
	char *str;
	char *field;
	struct store_uid_range *r;
	size_t nr;
	struct snode **kids;
	size_t nkids;
};

struct sparse {
	struct imap_session *s;
	int uid;
	size_t nkeys;
	const char *error;
	int badcharset;
};

static void
snode_free(struct snode *n)
{
	size_t i;

	if (n == NULL)
		return;
	for (i = 0; i < n->nkids; i++)
		snode_free(n->kids[i]);
	free(n->kids);
	free(n->str);
	free(n->field);
	free(n->r);
	free(n);
}

static void
kid_add(struct snode *n, struct snode *k)
{
	n->kids = xreallocarray(n->kids, n->nkids + 1, sizeof(*n->kids));
	n->kids[n->nkids++] = k;
}

static struct snode *parse_key(struct sparse *p, const struct imap_arg *a,
    size_t n, size_t *i, unsigned depth);

static int
need_string(struct sparse *p, const struct imap_arg *a, size_t n, size_t *i,
    char **out)
{
	if (*i >= n || !imap_arg_is_string(&a[*i])) {
		p->error = "Search key needs an argument";
		return -1;
	}
	if (memchr(a[*i].str, '\0', a[*i].len) != NULL ||
	    !imap_utf8_valid((const uint8_t *)a[*i].str, a[*i].len)) {
		p->error = "Search string is not UTF-8";
		return -1;
	}
	*out = xstrdup(a[*i].str);
	(*i)++;
	return 0;
}

static int
need_number(struct sparse *p, const struct imap_arg *a, size_t n, size_t *i,
    uint64_t *v)
{
	const char *err;

	if (*i >= n || a[*i].type != IMAP_ARG_ATOM ||
	    strnum_u64(a[*i].str, 0, INT64_MAX, v, &err) < 0) {
		p->error = "Search key needs a number";
		return -1;
	}
	(*i)++;
	return 0;
}

static int
need_date(struct sparse *p, const struct imap_arg *a, size_t n, size_t *i,
    int64_t *days)
{
	if (*i >= n || !imap_arg_is_string(&a[*i]) ||
	    imap_parse_date(a[*i].str, days) < 0) {
		p->error = "Search key needs a date";
		return -1;
	}
	(*i)++;
	return 0;
}

static struct snode *
parse_list(struct sparse *p, const struct imap_arg *a, size_t n,
    unsigned depth)
{
	struct snode *and = xcalloc(1, sizeof(*and));
	size_t i = 0;

	and->key = K_AND;
	while (i < n) {
		struct snode *k = parse_key(p, a, n, &i, depth);

		if (k == NULL) {
			snode_free(and);
			return NULL;
		}
		kid_add(and, k);
	}
	return and;
}

static const struct {
	const char *name;
	enum skey key;
	uint32_t flag;
} simple_keys[] = {
	{ "ALL", K_ALL, 0 },
	{ "ANSWERED", K_FLAG, STORE_FLAG_ANSWERED },
	{ "DELETED", K_FLAG, STORE_FLAG_DELETED },
	{ "DRAFT", K_FLAG, STORE_FLAG_DRAFT },
	{ "FLAGGED", K_FLAG, STORE_FLAG_FLAGGED },
	{ "SEEN", K_FLAG, STORE_FLAG_SEEN },
	{ "UNANSWERED", K_NOFLAG, STORE_FLAG_ANSWERED },
	{ "UNDELETED", K_NOFLAG, STORE_FLAG_DELETED },
	{ "UNDRAFT", K_NOFLAG, STORE_FLAG_DRAFT },
	{ "UNFLAGGED", K_NOFLAG, STORE_FLAG_FLAGGED },
	{ "UNSEEN", K_NOFLAG, STORE_FLAG_SEEN },
	{ "RECENT", K_RECENT, 0 },
	{ "NEW", K_NEW, 0 },
	{ "OLD", K_OLD, 0 },
};

static const struct {
	const char *name;
	enum skey key;
	const char *field;
} string_keys[] = {
	{ "BCC", K_HEADER, "Bcc" },
	{ "CC", K_HEADER, "Cc" },
	{ "TO", K_HEADER, "To" },
	{ "FROM", K_FROM, "From" },
	{ "SUBJECT", K_SUBJECT, "Subject" },
	{ "BODY", K_BODY, NULL },
	{ "TEXT", K_TEXT, NULL },
};

static const struct {
	const char *name;
	enum skey key;
} date_keys[] = {
	{ "BEFORE", K_BEFORE }, { "ON", K_ON }, { "SINCE", K_SINCE },
	{ "SENTBEFORE", K_SENTBEFORE }, { "SENTON", K_SENTON },
	{ "SENTSINCE", K_SENTSINCE },
};

static struct snode *
parse_key(struct sparse *p, const struct imap_arg *a, size_t n, size_t *i,
    unsigned depth)
{
	const struct imap_arg *k = &a[*i];
	struct snode *node;
	size_t j;
	const char *err;

	if (depth > IMAPD_SEARCH_DEPTH_MAX) {
		p->error = "Search program nested too deep";
		return NULL;
	}
	if (++p->nkeys > IMAPD_SEARCH_KEYS_MAX) {
		p->error = "Too many search keys";
		return NULL;
	}
	(*i)++;
	if (k->type == IMAP_ARG_LIST) {
		if (k->nlist == 0) {
			p->error = "Empty search list";
			return NULL;
		}
		return parse_list(p, k->list, k->nlist, depth + 1);
	}
	if (k->type != IMAP_ARG_ATOM) {
		p->error = "Search key expected";
		return NULL;
	}
	node = xcalloc(1, sizeof(*node));
	for (j = 0; j < sizeof(simple_keys) / sizeof(simple_keys[0]); j++) {
		if (str_casecmp(k->str, simple_keys[j].name) == 0) {
			node->key = simple_keys[j].key;
			node->flag = simple_keys[j].flag;
			return node;
		}
	}
	for (j = 0; j < sizeof(string_keys) / sizeof(string_keys[0]); j++) {
		if (str_casecmp(k->str, string_keys[j].name) == 0) {
			node->key = string_keys[j].key;
			if (string_keys[j].field != NULL)
				node->field = xstrdup(string_keys[j].field);
			if (need_string(p, a, n, i, &node->str) < 0)
				goto fail;
			return node;
		}
	}
	for (j = 0; j < sizeof(date_keys) / sizeof(date_keys[0]); j++) {
		if (str_casecmp(k->str, date_keys[j].name) == 0) {
			node->key = date_keys[j].key;
			if (need_date(p, a, n, i, &node->days) < 0)
				goto fail;
			return node;
		}
	}
	if (str_casecmp(k->str, "HEADER") == 0) {
		node->key = K_HEADER;
		if (need_string(p, a, n, i, &node->field) < 0 ||
		    need_string(p, a, n, i, &node->str) < 0)
			goto fail;
		return node;
	}
	if (str_casecmp(k->str, "KEYWORD") == 0 ||
	    str_casecmp(k->str, "UNKEYWORD") == 0) {
		node->key = k->str[0] == 'U' || k->str[0] == 'u' ?
		    K_UNKEYWORD : K_KEYWORD;
		if (need_string(p, a, n, i, &node->str) < 0)
			goto fail;
		return node;
	}
	if (str_casecmp(k->str, "LARGER") == 0 ||
	    str_casecmp(k->str, "SMALLER") == 0) {
		node->key = k->str[0] == 'L' || k->str[0] == 'l' ? K_LARGER :
		    K_SMALLER;
		if (need_number(p, a, n, i, &node->num) < 0)
			goto fail;
		return node;
	}
	if (str_casecmp(k->str, "MODSEQ") == 0) {
		node->key = K_MODSEQ;
		/* MODSEQ [entry-name entry-type] number */
		if (*i + 2 < n && imap_arg_is_string(&a[*i]) &&
		    a[*i].type != IMAP_ARG_ATOM)
			*i += 2;
		if (need_number(p, a, n, i, &node->num) < 0)
			goto fail;
		p->s->mb.condstore = 1;
		return node;
	}
	if (str_casecmp(k->str, "NOT") == 0) {
		struct snode *kid;

		node->key = K_NOT;
		if (*i >= n) {
			p->error = "NOT needs a key";
			goto fail;
		}
		kid = parse_key(p, a, n, i, depth + 1);
		if (kid == NULL)
			goto fail;
		kid_add(node, kid);
		return node;
	}
	if (str_casecmp(k->str, "OR") == 0) {
		int m;

		node->key = K_OR;
		for (m = 0; m < 2; m++) {
			struct snode *kid;

			if (*i >= n) {
				p->error = "OR needs two keys";
				goto fail;
			}
			kid = parse_key(p, a, n, i, depth + 1);
			if (kid == NULL)
				goto fail;
			kid_add(node, kid);
		}
		return node;
	}
	if (str_casecmp(k->str, "UID") == 0) {
		node->key = K_SET;
		if (*i >= n || a[*i].type != IMAP_ARG_ATOM ||
		    imap_view_ranges(p->s, a[*i].str, 1, &node->r, &node->nr,
		    &err) < 0) {
			p->error = "UID needs a UID set";
			goto fail;
		}
		(*i)++;
		return node;
	}
	/* A sequence set, or $. */
	node->key = K_SET;
	if (imap_view_ranges(p->s, k->str, 0, &node->r, &node->nr, &err) < 0) {
		p->error = "Unknown search key";
		goto fail;
	}
	if (strcmp(k->str, "$") == 0) {
		/* $ holds UIDs: sort them into proper ranges. */
		size_t x, y;

		for (x = 1; x < node->nr; x++)
			for (y = x; y > 0 && node->r[y - 1].lo > node->r[y].lo;
			    y--) {
				struct store_uid_range t = node->r[y];

				node->r[y] = node->r[y - 1];
				node->r[y - 1] = t;
			}
	}
	return node;
fail:
	snode_free(node);
	return NULL;
}

/* ---- text decoding ---- */

static int
ci_contains(const uint8_t *hay, size_t hlen, const char *needle)
{
	return str_casefind(hay, hlen, needle, strlen(needle)) != NULL;
}

/* Convert bytes in charset cs to UTF-8 (appended); raw copy if unknown. */
static void
to_utf8(const char *cs, const uint8_t *in, size_t len, struct buf *out)
{
	iconv_t cd;
	char *ip = (char *)(uintptr_t)in;
	size_t il = len;
	char tmp[4096];

	if (cs[0] == '\0' || str_casecmp(cs, "utf-8") == 0 ||
	    str_casecmp(cs, "us-ascii") == 0) {
		(void)buf_append(out, in, len);
		return;
	}
	/* GB2312 text is often really GBK/GB18030: decode with the superset. */
	if (str_casecmp(cs, "gb2312") == 0 || str_casecmp(cs, "gbk") == 0 ||
	    str_casecmp(cs, "x-gbk") == 0)
		cs = "GB18030";
	cd = iconv_open("UTF-8", cs);
	if (cd == (iconv_t)-1) {
		(void)buf_append(out, in, len);
		return;
	}
	while (il > 0) {
		char *op = tmp;
		size_t ol = sizeof(tmp);
		size_t r = iconv(cd, &ip, &il, &op, &ol);

		(void)buf_append(out, tmp, sizeof(tmp) - ol);
		if (r == (size_t)-1 && errno != E2BIG) {
			/* Skip one bad byte and go on. */
			ip++;
			il--;
		}
	}
	iconv_close(cd);
}

static int
b64val(uint8_t c)
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

void
imap_decode_base64(const uint8_t *in, size_t len, struct buf *out)
{
	uint32_t bits = 0;
	int n = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		int v = b64val(in[i]);

		if (v < 0)
			continue;
		bits = (bits << 6) | (uint32_t)v;
		n += 6;
		if (n >= 8) {
			n -= 8;
			(void)buf_append_byte(out, (uint8_t)(bits >> n));
			bits &= (1u << n) - 1;
		}
	}
}

static int
hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

void
imap_decode_qp(const uint8_t *in, size_t len, struct buf *out, int underscore)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (in[i] == '=' && i + 2 < len + 0 && hexval(in[i + 1]) >= 0 &&
		    hexval(in[i + 2]) >= 0) {
			(void)buf_append_byte(out, (uint8_t)(hexval(in[i + 1]) *
			    16 + hexval(in[i + 2])));
			i += 2;
		} else if (in[i] == '=' && i + 1 < len && (in[i + 1] == '\r' ||
		    in[i + 1] == '\n')) {
			/* soft line break */
			i++;
			if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
				i++;
		} else if (underscore && in[i] == '_')
			(void)buf_append_byte(out, ' ');
		else
			(void)buf_append_byte(out, in[i]);
	}
}

/* Decode RFC 2047 encoded words in a header value (appended to out). */
static void
decode_words(const uint8_t *in, size_t len, struct buf *out)
{
	size_t i = 0;

	while (i < len) {
		const uint8_t *q1, *q2, *end;
		char cs[IMAPD_CHARSET_MAX + 1];
		size_t cslen;
		struct buf raw;

		if (!(in[i] == '=' && i + 1 < len && in[i + 1] == '?')) {
			(void)buf_append_byte(out, in[i++]);
			continue;
		}
		q1 = memchr(in + i + 2, '?', len - i - 2);
		if (q1 == NULL || q1 + 2 >= in + len || q1[2] != '?') {
			(void)buf_append_byte(out, in[i++]);
			continue;
		}
		q2 = q1 + 2;
		end = NULL;
		{
			const uint8_t *p = q2 + 1;

			while (p + 1 < in + len) {
				if (p[0] == '?' && p[1] == '=') {
					end = p;
					break;
				}
				p++;
			}
		}
		cslen = (size_t)(q1 - (in + i + 2));
		if (end == NULL || cslen == 0 || cslen > IMAPD_CHARSET_MAX) {
			(void)buf_append_byte(out, in[i++]);
			continue;
		}
		memcpy(cs, in + i + 2, cslen);
		cs[cslen] = '\0';
		{
			/* RFC 2231 language suffix */
			char *star = strchr(cs, '*');

			if (star != NULL)
				*star = '\0';
		}
		buf_init(&raw, BUF_UNBOUNDED);
		if (q1[1] == 'B' || q1[1] == 'b')
			imap_decode_base64(q2 + 1, (size_t)(end - q2 - 1),
			    &raw);
		else
			imap_decode_qp(q2 + 1, (size_t)(end - q2 - 1), &raw, 1);
		to_utf8(cs, raw.data, raw.len, out);
		buf_free(&raw);
		i = (size_t)(end + 2 - in);
		/* Whitespace between two encoded words is dropped. */
		{
			size_t k = i;

			while (k < len && (in[k] == ' ' || in[k] == '\t' ||
			    in[k] == '\r' || in[k] == '\n'))
				k++;
			if (k + 1 < len && in[k] == '=' && in[k + 1] == '?')
				i = k;
		}
	}
}

/*
 * Value of header field (unfolded, every occurrence joined by a space)
 * from a header block; returns 1 if the field exists.
 */
int
imap_header_value(const uint8_t *h, size_t len, const char *field,
    struct buf *out)
{
	size_t flen = strlen(field), i = 0;
	int found = 0, in = 0;

	while (i < len) {
		const uint8_t *nl = memchr(h + i, '\n', len - i);
		size_t l = nl != NULL ? (size_t)(nl - (h + i)) + 1 : len - i;
		const uint8_t *line = h + i;
		size_t ll = l;

		while (ll > 0 && (line[ll - 1] == '\n' || line[ll - 1] == '\r'))
			ll--;
		if (ll == 0)
			break;
		if (line[0] == ' ' || line[0] == '\t') {
			if (in)
				(void)buf_append(out, line, ll);
		} else {
			in = ll > flen && line[flen] == ':' &&
			    strncasecmp((const char *)line, field, flen) == 0;
			if (in) {
				if (found)
					(void)buf_append_byte(out, ' ');
				found = 1;
				(void)buf_append(out, line + flen + 1,
				    ll - flen - 1);
			}
		}
		i += l;
	}
	return found;
}

/* A MIME parameter (charset) from a Content-Type value. */
static void
param_value(const char *v, const char *name, char *out, size_t outsz)
{
	size_t nlen = strlen(name);
	const char *p = v;

	out[0] = '\0';
	while ((p = strchr(p, ';')) != NULL) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, name, nlen) == 0 && p[nlen] == '=') {
			size_t n = 0;

			p += nlen + 1;
			if (*p == '"')
				p++;
			while (p[n] != '\0' && p[n] != '"' && p[n] != ';' &&
			    p[n] != ' ' && n + 1 < outsz)
				n++;
			memcpy(out, p, n);
			out[n] = '\0';
			return;
		}
	}
}

/* ---- evaluation ---- */

struct msgctx {
	struct imap_session *s;
	struct store_msg m;
	struct store_msg_meta meta;
	int have_meta;
	struct buf blob;
	int have_blob;
	struct buf hdr;		/* the header block alone, when blob is not read */
	int have_hdr;
	struct buf body_text;	/* decoded text parts, UTF-8 */
	int have_body_text;
};

static int
load_meta(struct msgctx *c)
{
	const char *err;

	if (!c->have_meta && imap_meta_load(c->s->w->meta, c->s->w->store,
	    c->m.blob, &c->meta, &err) == 0)
		c->have_meta = 1;
	return c->have_meta ? 0 : -1;
}

static int
load_blob(struct msgctx *c)
{
	const char *err;

	if (!c->have_blob) {
		buf_reset(&c->blob);
		if (store_blob_read(c->s->w->store, c->m.blob, &c->blob,
		    &err) < 0)
			return -1;
		c->have_blob = 1;
	}
	return 0;
}

static uint64_t
header_len(struct msgctx *c)
{
	if (load_meta(c) == 0 && c->meta.header_size <= c->blob.len)
		return c->meta.header_size;
	return c->blob.len;
}

/*
 * The message's header block, for header keys: read alone (the first
 * chunk or so) unless the whole message is loaded already, so SUBJECT,
 * FROM, TO, CC, BCC and HEADER do not read every message body.
 */
static int
load_header(struct msgctx *c, const uint8_t **p_r, size_t *len_r)
{
	const char *err;

	if (!c->have_blob && !c->have_hdr) {
		buf_reset(&c->hdr);
		if (load_meta(c) == 0 && store_blob_read_range(
		    c->s->w->store, c->m.blob, 0, c->meta.header_size,
		    &c->hdr, &err) == 0)
			c->have_hdr = 1;
		else if (load_blob(c) < 0)
			return -1;
	}
	if (c->have_blob) {
		*p_r = c->blob.data;
		*len_r = (size_t)header_len(c);
	} else {
		*p_r = c->hdr.data;
		*len_r = c->hdr.len;
	}
	return 0;
}

/* Decode the text parts of the message into c->body_text. */
static void
load_body_text(struct msgctx *c)
{
	char parts[IMAPD_SEARCH_PARTS_MAX][16];
	size_t np = 0, qi = 0;
	unsigned k;

	if (c->have_body_text)
		return;
	c->have_body_text = 1;
	buf_reset(&c->body_text);
	if (load_blob(c) < 0 || load_meta(c) < 0)
		return;
	for (k = 1; k <= IMAPD_SEARCH_PARTS_MAX && np < IMAPD_SEARCH_PARTS_MAX;
	    k++) {
		struct store_section sec;

		(void)snprintf(parts[np], sizeof(parts[0]), "%u", k);
		if (store_msg_section(&c->meta, parts[np], &sec) < 0)
			break;
		np++;
	}
	/* Breadth-first: children of multiparts are appended as found. */
	while (qi < np) {
		struct store_section sec;
		struct buf ct, cte, raw;
		char cs[IMAPD_CHARSET_MAX + 1];
		char part[sizeof(parts[0])];

		memcpy(part, parts[qi++], sizeof(part));

		if (store_msg_section(&c->meta, part, &sec) < 0 ||
		    sec.body_off + sec.body_len > c->blob.len ||
		    sec.header_off + sec.header_len > c->blob.len)
			continue;
		buf_init(&ct, 4096);
		buf_init(&cte, 256);
		(void)imap_header_value(c->blob.data + sec.header_off,
		    (size_t)sec.header_len, "Content-Type", &ct);
		(void)imap_header_value(c->blob.data + sec.header_off,
		    (size_t)sec.header_len, "Content-Transfer-Encoding", &cte);
		if (ct.len > 0 && (ci_contains(ct.data, ct.len, "multipart/") ||
		    ci_contains(ct.data, ct.len, "message/rfc822"))) {
			for (k = 1; np < IMAPD_SEARCH_PARTS_MAX; k++) {
				struct store_section sub;
				int w = snprintf(parts[np], sizeof(parts[0]),
				    "%s.%u", part, k);

				if (w < 0 || (size_t)w >= sizeof(parts[0]) ||
				    store_msg_section(&c->meta, parts[np],
				    &sub) < 0)
					break;
				np++;
			}
			buf_free(&ct);
			buf_free(&cte);
			continue;
		}
		if (ct.len > 0 && !ci_contains(ct.data, ct.len, "text/")) {
			buf_free(&ct);
			buf_free(&cte);
			continue;
		}
		param_value(imap_bstr(&ct), "charset", cs, sizeof(cs));
		buf_init(&raw, BUF_UNBOUNDED);
		if (ci_contains(cte.data, cte.len, "base64"))
			imap_decode_base64(c->blob.data + sec.body_off,
			    (size_t)sec.body_len, &raw);
		else if (ci_contains(cte.data, cte.len, "quoted-printable"))
			imap_decode_qp(c->blob.data + sec.body_off,
			    (size_t)sec.body_len, &raw, 0);
		else
			(void)buf_append(&raw, c->blob.data + sec.body_off,
			    (size_t)sec.body_len);
		to_utf8(cs, raw.data, raw.len, &c->body_text);
		(void)buf_append_byte(&c->body_text, '\n');
		buf_free(&raw);
		buf_free(&ct);
		buf_free(&cte);
	}
}

static int
match_header(struct msgctx *c, const char *field, const char *needle)
{
	struct buf v, d;
	const uint8_t *hp;
	size_t hlen;
	int found, r = 0;

	if (load_header(c, &hp, &hlen) < 0)
		return 0;
	buf_init(&v, BUF_UNBOUNDED);
	found = imap_header_value(hp, hlen, field, &v);
	if (found) {
		if (needle[0] == '\0' || ci_contains(v.data, v.len, needle))
			r = 1;
		else {
			buf_init(&d, BUF_UNBOUNDED);
			decode_words(v.data, v.len, &d);
			r = ci_contains(d.data, d.len, needle);
			buf_free(&d);
		}
	}
	buf_free(&v);
	return r;
}

static int64_t
day_of(int64_t t)
{
	return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

static int
eval(struct msgctx *c, const struct snode *n, unsigned depth)
{
	size_t i;
	int64_t d;

	switch (n->key) {
	case K_ALL:
		return 1;
	case K_AND:
		for (i = 0; i < n->nkids; i++)
			if (!eval(c, n->kids[i], depth + 1))
				return 0;
		return 1;
	case K_OR:
		return eval(c, n->kids[0], depth + 1) ||
		    eval(c, n->kids[1], depth + 1);
	case K_NOT:
		return !eval(c, n->kids[0], depth + 1);
	case K_FLAG:
		return (c->m.flags & n->flag) != 0;
	case K_NOFLAG:
		return (c->m.flags & n->flag) == 0;
	case K_KEYWORD:
	case K_UNKEYWORD: {
		int has = 0;

		for (i = 0; i < STORE_KEYWORDS_MAX; i++) {
			if (!(c->m.keywords & (1ULL << i)))
				continue;
			if (!c->s->mb.kw_loaded ||
			    imap_keyword(&c->s->mb, i) == NULL) {
				struct buf tmp;

				/* imap_append_flags reloads the names. */
				buf_init(&tmp, BUF_UNBOUNDED);
				imap_append_flags(c->s, &tmp, 0, 1ULL << i, 0);
				buf_free(&tmp);
			}
			if (imap_keyword(&c->s->mb, i) != NULL &&
			    str_casecmp(imap_keyword(&c->s->mb, i),
			    n->str) == 0)
				has = 1;
		}
		return n->key == K_KEYWORD ? has : !has;
	}
	case K_RECENT:
		return c->m.uid >= c->s->mb.first_recent;
	case K_NEW:
		return c->m.uid >= c->s->mb.first_recent &&
		    !(c->m.flags & STORE_FLAG_SEEN);
	case K_OLD:
		return c->m.uid < c->s->mb.first_recent;
	case K_LARGER:
		return c->m.size > n->num;
	case K_SMALLER:
		return c->m.size < n->num;
	case K_MODSEQ:
		return c->m.modseq >= n->num;
	case K_SET:
		return imap_seqset_contains(n->r, n->nr, c->m.uid);
	case K_BEFORE:
	case K_ON:
	case K_SINCE:
		d = day_of(c->m.internaldate + (int64_t)c->m.internaldate_tz *
		    60);
		return n->key == K_BEFORE ? d < n->days :
		    n->key == K_ON ? d == n->days : d >= n->days;
	case K_SENTBEFORE:
	case K_SENTON:
	case K_SENTSINCE:
		if (load_meta(c) < 0 || c->meta.date == 0)
			return 0;
		d = day_of(c->meta.date);
		return n->key == K_SENTBEFORE ? d < n->days :
		    n->key == K_SENTON ? d == n->days : d >= n->days;
	case K_SUBJECT:
		/* The envelope's subject (RFC 3501 6.4.4), decoded once at
		 * delivery (RFC 2047 words, charsets, raw GB18030): the
		 * header block is read only if the metadata is missing. */
		if (load_meta(c) == 0)
			return ci_contains((const uint8_t *)c->meta.subject,
			    strlen(c->meta.subject), n->str);
		return match_header(c, "Subject", n->str);
	case K_FROM:
		if (load_meta(c) == 0 && ci_contains((const uint8_t *)
		    c->meta.from, strlen(c->meta.from), n->str))
			return 1;
		return match_header(c, "From", n->str);
	case K_HEADER:
		return match_header(c, n->field, n->str);
	case K_BODY:
	case K_TEXT:
		if (load_blob(c) < 0)
			return 0;
		if (n->key == K_TEXT) {
			struct buf dec;
			int r;

			if (ci_contains(c->blob.data, (size_t)header_len(c),
			    n->str))
				return 1;
			buf_init(&dec, BUF_UNBOUNDED);
			decode_words(c->blob.data, (size_t)header_len(c), &dec);
			r = ci_contains(dec.data, dec.len, n->str);
			buf_free(&dec);
			if (r)
				return 1;
		}
		{
			uint64_t h = header_len(c);

			if (ci_contains(c->blob.data + h, c->blob.len - h,
			    n->str))
				return 1;
		}
		load_body_text(c);
		return ci_contains(c->body_text.data, c->body_text.len,
		    n->str);
	}
	return 0;
}

/* ---- the command ---- */

struct search_collect {
	struct imap_session *s;
	struct snode *prog;
	uint32_t *uids;
	size_t n, cap;
	uint64_t maxmodseq;
	int failed;
};

static int
search_cb(const struct store_msg *m, void *ctx)
{
	struct search_collect *sc = ctx;
	struct msgctx c;
	int hit;

	if (imap_view_seq(&sc->s->mb, m->uid) == 0)
		return 0;
	memset(&c, 0, sizeof(c));
	c.s = sc->s;
	c.m = *m;
	buf_init(&c.blob, BUF_UNBOUNDED);
	buf_init(&c.hdr, BUF_UNBOUNDED);
	buf_init(&c.body_text, BUF_UNBOUNDED);
	hit = eval(&c, sc->prog, 0);
	if (c.have_meta)
		store_msg_meta_free(&c.meta);
	buf_free(&c.blob);
	buf_free(&c.hdr);
	buf_free(&c.body_text);
	if (!hit)
		return 0;
	if (sc->n == sc->cap) {
		sc->cap = sc->cap == 0 ? 64 : xmul(sc->cap, 2);
		sc->uids = xreallocarray(sc->uids, sc->cap, sizeof(uint32_t));
	}
	sc->uids[sc->n++] = m->uid;
	if (m->modseq > sc->maxmodseq)
		sc->maxmodseq = m->modseq;
	return 0;
}

static int
has_modseq(const struct snode *n, unsigned depth)
{
	size_t i;

	if (n->key == K_MODSEQ)
		return 1;
	for (i = 0; i < n->nkids && depth < IMAPD_SEARCH_DEPTH_MAX + 2; i++)
		if (has_modseq(n->kids[i], depth + 1))
			return 1;
	return 0;
}

#define RET_MIN 0x1
#define RET_MAX 0x2
#define RET_COUNT 0x4
#define RET_ALL 0x8
#define RET_SAVE 0x10

/* A SEARCH running in slices (IMAPD_SLICE_MESSAGES messages per turn). */
struct search_job {
	struct snode *prog;
	struct search_collect sc;
	uint32_t *uids;		/* the view when the command started */
	size_t n, next;
	int uid, esearch;
	unsigned ret;
};

static void
search_job_free(void *arg)
{
	struct search_job *j = arg;

	snode_free(j->prog);
	free(j->sc.uids);
	free(j->uids);
	free(j);
}

static void
search_finish(struct imap_session *s, struct search_job *j)
{
	struct buf out;
	size_t k;

	buf_init(&out, BUF_UNBOUNDED);
	if (!j->esearch) {
		(void)buf_append_str(&out, "* SEARCH");
		for (k = 0; k < j->sc.n; k++)
			(void)buf_printf(&out, " %u", j->uid ? j->sc.uids[k] :
			    imap_view_seq(&s->mb, j->sc.uids[k]));
		if (j->sc.n > 0 && has_modseq(j->prog, 0))
			(void)buf_printf(&out, " (MODSEQ %llu)",
			    (unsigned long long)j->sc.maxmodseq);
		(void)buf_append_str(&out, "\r\n");
	} else if (j->ret != RET_SAVE) {
		(void)buf_printf(&out, "* ESEARCH (TAG \"%s\")%s", s->tag,
		    j->uid ? " UID" : "");
		if (j->sc.n > 0 && (j->ret & RET_MIN))
			(void)buf_printf(&out, " MIN %u", j->uid ?
			    j->sc.uids[0] :
			    imap_view_seq(&s->mb, j->sc.uids[0]));
		if (j->sc.n > 0 && (j->ret & RET_MAX))
			(void)buf_printf(&out, " MAX %u", j->uid ?
			    j->sc.uids[j->sc.n - 1] :
			    imap_view_seq(&s->mb, j->sc.uids[j->sc.n - 1]));
		if (j->ret & RET_COUNT)
			(void)buf_printf(&out, " COUNT %zu", j->sc.n);
		if (j->sc.n > 0 && (j->ret & RET_ALL)) {
			size_t a = 0;

			(void)buf_append_str(&out, " ALL ");
			while (a < j->sc.n) {
				uint32_t lo = j->uid ? j->sc.uids[a] :
				    imap_view_seq(&s->mb, j->sc.uids[a]);
				uint32_t hi = lo;
				size_t b = a + 1;

				while (b < j->sc.n && (j->uid ? j->sc.uids[b] :
				    imap_view_seq(&s->mb, j->sc.uids[b])) ==
				    hi + 1) {
					hi++;
					b++;
				}
				if (a > 0)
					(void)buf_append_byte(&out, ',');
				if (hi > lo)
					(void)buf_printf(&out, "%u:%u", lo, hi);
				else
					(void)buf_printf(&out, "%u", lo);
				a = b;
			}
		}
		if (j->sc.n > 0 && has_modseq(j->prog, 0))
			(void)buf_printf(&out, " MODSEQ %llu",
			    (unsigned long long)j->sc.maxmodseq);
		(void)buf_append_str(&out, "\r\n");
	}
	if (j->ret & RET_SAVE) {
		free(s->saved);
		s->saved = j->sc.uids;
		s->nsaved = j->sc.n;
		j->sc.uids = NULL;
	}
	imap_write(s, out.data, out.len);
	buf_free(&out);
	imap_tagged(s, "OK", "%sSEARCH completed", j->uid ? "UID " : "");
}

/* Run one slice of j; 1 if messages remain, else 0. */
static int
search_slice(struct imap_session *s, struct search_job *j)
{
	size_t end = j->next + IMAPD_SLICE_MESSAGES;
	const char *err;

	if (end > j->n)
		end = j->n;
	{
		struct store_msg *msgs;
		size_t i, nm;

		/* One read transaction per slice; expunged ones are gone. */
		if (imap_msgs_load(s, j->uids + j->next, end - j->next, &msgs,
		    &nm, &err) == 0) {
			for (i = 0; i < nm; i++)
				(void)search_cb(&msgs[i], &j->sc);
			free(msgs);
		}
		j->next = end;
	}
	return j->next < j->n;
}

static enum imap_cmd_result
search_continue(struct imap_session *s)
{
	struct search_job *j = s->cont_state;

	if (search_slice(s, j)) {
		imap_command_yield(s);
		return IMAP_CMD_MORE;
	}
	search_finish(s, j);
	return IMAP_CMD_DONE;
}

/* ---- the same search in slices for SORT and THREAD (imapd.h) ---- */

struct imap_search_job {
	struct search_job j;
};

static void
search_job_init(struct imap_session *s, struct search_job *j,
    struct snode *prog, int uid)
{
	j->prog = prog;
	j->uid = uid;
	j->sc.s = s;
	j->sc.prog = prog;
	j->n = s->mb.n;
	j->uids = xcalloc(j->n == 0 ? 1 : j->n, sizeof(uint32_t));
	if (j->n > 0)
		memcpy(j->uids, s->mb.uids, j->n * sizeof(uint32_t));
}

int
imap_search_begin(struct imap_session *s, const struct imap_arg *args,
    size_t n, struct imap_search_job **job_r, const char **error_r)
{
	struct sparse p;
	struct snode *prog;
	struct imap_search_job *job;

	memset(&p, 0, sizeof(p));
	p.s = s;
	prog = parse_list(&p, args, n, 0);
	if (prog == NULL) {
		*error_r = p.error != NULL ? p.error : "Invalid search program";
		return -1;
	}
	job = xcalloc(1, sizeof(*job));
	search_job_init(s, &job->j, prog, 0);
	*job_r = job;
	return 0;
}

int
imap_search_step(struct imap_session *s, struct imap_search_job *job)
{
	return search_slice(s, &job->j);
}

void
imap_search_take(struct imap_search_job *job, uint32_t **uids_r,
    size_t *n_r)
{
	*uids_r = job->j.sc.uids;
	*n_r = job->j.sc.n;
	job->j.sc.uids = NULL;
	job->j.sc.n = job->j.sc.cap = 0;
}

void
imap_search_job_free(struct imap_search_job *job)
{
	if (job == NULL)
		return;
	snode_free(job->j.prog);
	free(job->j.sc.uids);
	free(job->j.uids);
	free(job);
}

enum imap_cmd_result
cmd_search(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	struct sparse p;
	struct snode *prog;
	struct search_job *j;
	size_t i = 0, k;
	unsigned ret = 0;
	int esearch = 0;

	if (i + 1 < n && imap_arg_atom_is(&args[i], "RETURN") &&
	    args[i + 1].type == IMAP_ARG_LIST) {
		const struct imap_arg *r = &args[i + 1];

		esearch = 1;
		for (k = 0; k < r->nlist; k++) {
			if (imap_arg_atom_is(&r->list[k], "MIN"))
				ret |= RET_MIN;
			else if (imap_arg_atom_is(&r->list[k], "MAX"))
				ret |= RET_MAX;
			else if (imap_arg_atom_is(&r->list[k], "COUNT"))
				ret |= RET_COUNT;
			else if (imap_arg_atom_is(&r->list[k], "ALL"))
				ret |= RET_ALL;
			else if (imap_arg_atom_is(&r->list[k], "SAVE"))
				ret |= RET_SAVE;
			else {
				imap_tagged(s, "BAD", "Unknown RETURN option");
				return IMAP_CMD_DONE;
			}
		}
		if (ret == 0)
			ret = RET_ALL;
		i += 2;
	}
	if (!esearch && (s->enabled & IMAPD_EN_REV2)) {
		/* RFC 9051 6.4.4: SEARCH answers with ESEARCH. */
		esearch = 1;
		ret = RET_ALL;
	}
	if (i + 1 < n && imap_arg_atom_is(&args[i], "CHARSET")) {
		if (!imap_arg_is_string(&args[i + 1]) ||
		    (str_casecmp(args[i + 1].str, "UTF-8") != 0 &&
		    str_casecmp(args[i + 1].str, "US-ASCII") != 0)) {
			imap_tagged(s, "NO", "[BADCHARSET (UTF-8 US-ASCII)] "
			    "Unsupported charset");
			return IMAP_CMD_DONE;
		}
		i += 2;
	}
	if (i >= n) {
		imap_tagged(s, "BAD", "SEARCH needs a search key");
		return IMAP_CMD_DONE;
	}
	memset(&p, 0, sizeof(p));
	p.s = s;
	p.uid = uid;
	prog = parse_list(&p, args + i, n - i, 0);
	if (prog == NULL) {
		imap_tagged(s, "BAD", "%s", p.error != NULL ? p.error :
		    "Invalid search program");
		return IMAP_CMD_DONE;
	}
	j = xcalloc(1, sizeof(*j));
	search_job_init(s, j, prog, uid);
	j->esearch = esearch;
	j->ret = ret;
	s->cont = search_continue;
	s->cont_state = j;
	s->cont_free = search_job_free;
	return search_continue(s);
}
