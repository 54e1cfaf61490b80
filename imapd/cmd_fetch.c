/*
 * cmd_fetch.c - FETCH / UID FETCH (RFC 3501 6.4.5, CONDSTORE CHANGEDSINCE,
 * QRESYNC VANISHED) and STORE / UID STORE (UNCHANGEDSINCE).
 *
 * govmail-imapd workers.  FETCH is resumable: it collects the UIDs first,
 * then answers message by message, yielding whenever IMAPD_OUTPUT_SLICE
 * bytes are queued and continuing from on_drain; a body literal larger
 * than IMAPD_STREAM_CHUNK is streamed from the store in chunks, so neither
 * a large mailbox nor a large message stalls the loop or grows the output
 * queue without bound.  ENVELOPE and BODYSTRUCTURE come precomputed from
 * the store; sections are located with store_msg_section().  Fetch item
 * names and section specs are untrusted and fully parsed here.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "conn.h"
#include "imap_util.h"
#include "imap_meta.h"
#include "imapd.h"
#include "log.h"
#include "strnum.h"
#include "xmalloc.h"

/* Fetch items in one command. */
#define IMAPD_FETCH_ITEMS_MAX 64
/* Header field names in one HEADER.FIELDS list. */
#define IMAPD_FETCH_FIELDS_MAX 64
/* Longest section part number ("1.2.3..."), bytes. */
#define IMAPD_SECTION_PART_MAX 64

enum fetch_kind {
	F_FLAGS,
	F_UID,
	F_INTERNALDATE,
	F_SIZE,
	F_ENVELOPE,
	F_BODYSTRUCTURE,
	F_BODY,			/* BODY without a section */
	F_SECTION,		/* BODY[...] and the RFC822 forms */
	F_MODSEQ,
	F_BINARY,		/* BINARY[part] (RFC 3516, IMAP4rev2) */
	F_BINSIZE,		/* BINARY.SIZE[part] */
};

enum sect_type {
	SECT_ALL,		/* BODY[] or BODY[part] */
	SECT_HEADER,
	SECT_FIELDS,
	SECT_FIELDS_NOT,
	SECT_TEXT,
	SECT_MIME,
};

struct fetch_item {
	enum fetch_kind kind;
	enum sect_type type;
	char part[IMAPD_SECTION_PART_MAX + 1];
	char **fields;
	size_t nfields;
	int partial;
	uint64_t p_off, p_len;
	int peek;
	char *name;		/* as echoed: "BODY[HEADER]", "RFC822" */
};

struct fetch_state {
	struct fetch_item items[IMAPD_FETCH_ITEMS_MAX];
	size_t nitems;
	uint32_t *uids;
	size_t nuids, next;
	int uid_cmd;
	int set_seen;
	int need_meta;
	/* streaming a literal */
	int streaming;
	struct buf mem;		/* decoded BINARY, streamed */
	int from_mem;
	uint8_t blob[STORE_BLOB_KEY_LEN];
	uint64_t s_off, s_left;
	size_t resume_item;
	struct store_msg cur;
	/* records of uids[batch_start .. batch_end), read in one go */
	struct store_msg *batch;
	size_t bn, bi, batch_end;
	struct store_msg_meta meta;
	int have_meta;
	int in_msg;
	const char *sep;
};

static void
fetch_state_free(void *arg)
{
	struct fetch_state *f = arg;
	size_t i, k;

	for (i = 0; i < f->nitems; i++) {
		for (k = 0; k < f->items[i].nfields; k++)
			free(f->items[i].fields[k]);
		free(f->items[i].fields);
		free(f->items[i].name);
	}
	if (f->have_meta)
		store_msg_meta_free(&f->meta);
	buf_free(&f->mem);
	free(f->batch);
	free(f->uids);
	free(f);
}

/* Parse "[section]<partial>" starting at p (just after "BODY" etc). */
static int
parse_section(struct fetch_item *it, const char *p, const char **error_r)
{
	const char *end = strchr(p, ']');
	const char *s = p + 1;
	size_t plen = 0;

	*error_r = "Invalid section";
	if (*p != '[' || end == NULL)
		return -1;
	/* part number: digits and dots */
	while (s + plen < end && ((s[plen] >= '0' && s[plen] <= '9') ||
	    s[plen] == '.')) {
		if (s[plen] == '.' && (s + plen + 1 >= end ||
		    s[plen + 1] < '0' || s[plen + 1] > '9'))
			break;
		plen++;
	}
	if (plen > IMAPD_SECTION_PART_MAX)
		return -1;
	if (plen > 0 && (s[0] == '0' || s[0] == '.'))
		return -1;
	memcpy(it->part, s, plen);
	it->part[plen] = '\0';
	s += plen;
	if (s < end && plen > 0) {
		if (*s != '.')
			return -1;
		s++;
	}
	if (s == end)
		it->type = SECT_ALL;
	else if ((size_t)(end - s) == 6 && strncasecmp(s, "HEADER", 6) == 0)
		it->type = SECT_HEADER;
	else if ((size_t)(end - s) == 4 && strncasecmp(s, "TEXT", 4) == 0)
		it->type = SECT_TEXT;
	else if ((size_t)(end - s) == 4 && strncasecmp(s, "MIME", 4) == 0 &&
	    plen > 0)
		it->type = SECT_MIME;
	else if (strncasecmp(s, "HEADER.FIELDS", 13) == 0) {
		const char *q = s + 13, *close;

		it->type = SECT_FIELDS;
		if (strncasecmp(q, ".NOT", 4) == 0) {
			it->type = SECT_FIELDS_NOT;
			q += 4;
		}
		if (q[0] != ' ' || q[1] != '(')
			return -1;
		q += 2;
		close = memchr(q, ')', (size_t)(end - q));
		if (close == NULL || close + 1 != end)
			return -1;
		while (q < close) {
			size_t len = 0;

			while (q + len < close && q[len] != ' ')
				len++;
			if (len == 0 || it->nfields >= IMAPD_FETCH_FIELDS_MAX)
				return -1;
			it->fields = xreallocarray(it->fields, it->nfields + 1,
			    sizeof(char *));
			it->fields[it->nfields++] = xstrndup(q, len);
			q += len;
			if (q < close && *q == ' ')
				q++;
		}
		if (it->nfields == 0)
			return -1;
	} else
		return -1;
	p = end + 1;
	if (*p == '<') {
		const char *dot = strchr(p, '.'), *gt = strchr(p, '>');

		if (dot == NULL || gt == NULL || dot > gt || gt[1] != '\0' ||
		    strnum_u64_n(p + 1, (size_t)(dot - p - 1), UINT32_MAX,
		    &it->p_off, error_r) < 0 ||
		    strnum_u64_n(dot + 1, (size_t)(gt - dot - 1), UINT32_MAX,
		    &it->p_len, error_r) < 0 || it->p_len == 0) {
			*error_r = "Invalid partial";
			return -1;
		}
		it->partial = 1;
	} else if (*p != '\0')
		return -1;
	/* The echoed name: the item up to ']' (partial shows origin only). */
	return 0;
}

static int
parse_item(struct fetch_state *f, const struct imap_arg *a,
    const char **error_r)
{
	struct fetch_item *it;
	const char *s = a->str;

	if (a->type != IMAP_ARG_ATOM) {
		*error_r = "Invalid fetch item";
		return -1;
	}
	if (f->nitems >= IMAPD_FETCH_ITEMS_MAX) {
		*error_r = "Too many fetch items";
		return -1;
	}
	it = &f->items[f->nitems];
	memset(it, 0, sizeof(*it));
	if (str_casecmp(s, "FLAGS") == 0)
		it->kind = F_FLAGS;
	else if (str_casecmp(s, "UID") == 0)
		it->kind = F_UID;
	else if (str_casecmp(s, "INTERNALDATE") == 0)
		it->kind = F_INTERNALDATE;
	else if (str_casecmp(s, "RFC822.SIZE") == 0)
		it->kind = F_SIZE;
	else if (str_casecmp(s, "ENVELOPE") == 0)
		it->kind = F_ENVELOPE;
	else if (str_casecmp(s, "BODYSTRUCTURE") == 0)
		it->kind = F_BODYSTRUCTURE;
	else if (str_casecmp(s, "BODY") == 0)
		it->kind = F_BODY;
	else if (str_casecmp(s, "MODSEQ") == 0)
		it->kind = F_MODSEQ;
	else if (str_casecmp(s, "RFC822") == 0) {
		it->kind = F_SECTION;
		it->type = SECT_ALL;
		it->name = xstrdup("RFC822");
	} else if (str_casecmp(s, "RFC822.HEADER") == 0) {
		it->kind = F_SECTION;
		it->type = SECT_HEADER;
		it->peek = 1;
		it->name = xstrdup("RFC822.HEADER");
	} else if (str_casecmp(s, "RFC822.TEXT") == 0) {
		it->kind = F_SECTION;
		it->type = SECT_TEXT;
		it->name = xstrdup("RFC822.TEXT");
	} else if (strncasecmp(s, "BINARY[", 7) == 0 ||
	    strncasecmp(s, "BINARY.PEEK[", 12) == 0 ||
	    strncasecmp(s, "BINARY.SIZE[", 12) == 0) {
		const char *br = strchr(s, '['), *close = strchr(br, ']');
		size_t plen = (size_t)(close != NULL ? close - br - 1 : 0), k;

		it->kind = strncasecmp(s, "BINARY.SIZE", 11) == 0 ? F_BINSIZE :
		    F_BINARY;
		it->peek = it->kind == F_BINSIZE || br - s == 11;
		if (close == NULL || plen > IMAPD_SECTION_PART_MAX) {
			*error_r = "Invalid binary section";
			return -1;
		}
		for (k = 0; k < plen; k++) {
			char c = br[1 + k];

			if (!((c >= '0' && c <= '9') || (c == '.' && k > 0 &&
			    k + 1 < plen && br[k] != '.')) ||
			    (c == '0' && (k == 0 || br[k] == '.'))) {
				*error_r = "Invalid binary section";
				return -1;
			}
		}
		memcpy(it->part, br + 1, plen);
		it->part[plen] = '\0';
		if (close[1] == '<' && it->kind == F_BINARY) {
			const char *dot = strchr(close, '.');
			const char *gt = strchr(close, '>');

			if (dot == NULL || gt == NULL || dot > gt ||
			    gt[1] != '\0' || strnum_u64_n(close + 2,
			    (size_t)(dot - close - 2), UINT32_MAX, &it->p_off,
			    error_r) < 0 || strnum_u64_n(dot + 1,
			    (size_t)(gt - dot - 1), UINT32_MAX, &it->p_len,
			    error_r) < 0 || it->p_len == 0) {
				*error_r = "Invalid partial";
				return -1;
			}
			it->partial = 1;
		} else if (close[1] != '\0') {
			*error_r = "Invalid binary section";
			return -1;
		}
		if (it->kind == F_BINSIZE)
			it->name = xasprintf("BINARY.SIZE[%s]", it->part);
		else if (it->partial)
			it->name = xasprintf("BINARY[%s]<%llu>", it->part,
			    (unsigned long long)it->p_off);
		else
			it->name = xasprintf("BINARY[%s]", it->part);
	} else if (strncasecmp(s, "BODY[", 5) == 0 ||
	    strncasecmp(s, "BODY.PEEK[", 10) == 0) {
		const char *br = strchr(s, '[');
		const char *close;

		it->kind = F_SECTION;
		it->peek = br - s == 9;
		if (parse_section(it, br, error_r) < 0) {
			size_t k;

			for (k = 0; k < it->nfields; k++)
				free(it->fields[k]);
			free(it->fields);
			return -1;
		}
		close = strchr(br, ']');
		if (it->partial)
			it->name = xasprintf("BODY%.*s<%llu>",
			    (int)(close - br + 1), br,
			    (unsigned long long)it->p_off);
		else
			it->name = xasprintf("BODY%.*s",
			    (int)(close - br + 1), br);
	} else {
		*error_r = "Unknown fetch item";
		return -1;
	}
	if ((it->kind == F_SECTION || it->kind == F_BINARY) && !it->peek)
		f->set_seen = 1;
	if (it->kind == F_ENVELOPE || it->kind == F_BODYSTRUCTURE ||
	    it->kind == F_BODY || it->kind == F_SECTION ||
	    it->kind == F_BINARY || it->kind == F_BINSIZE)
		f->need_meta = 1;
	f->nitems++;
	return 0;
}

static void
add_simple(struct fetch_state *f, enum fetch_kind k)
{
	size_t i;

	for (i = 0; i < f->nitems; i++)
		if (f->items[i].kind == k)
			return;
	if (f->nitems < IMAPD_FETCH_ITEMS_MAX) {
		memset(&f->items[f->nitems], 0, sizeof(f->items[0]));
		f->items[f->nitems++].kind = k;
	}
}

static int
parse_items(struct fetch_state *f, const struct imap_arg *a,
    const char **error_r)
{
	static const struct {
		const char *macro;
		enum fetch_kind k[5];
		size_t n;
	} macros[] = {
		{ "ALL", { F_FLAGS, F_INTERNALDATE, F_SIZE, F_ENVELOPE }, 4 },
		{ "FAST", { F_FLAGS, F_INTERNALDATE, F_SIZE }, 3 },
		{ "FULL", { F_FLAGS, F_INTERNALDATE, F_SIZE, F_ENVELOPE,
		    F_BODY }, 5 },
	};
	size_t i, k;

	if (a->type == IMAP_ARG_ATOM) {
		for (i = 0; i < sizeof(macros) / sizeof(macros[0]); i++) {
			if (str_casecmp(a->str, macros[i].macro) != 0)
				continue;
			for (k = 0; k < macros[i].n; k++)
				add_simple(f, macros[i].k[k]);
			if (macros[i].n >= 4)
				f->need_meta = 1;
			return 0;
		}
		return parse_item(f, a, error_r);
	}
	if (a->type != IMAP_ARG_LIST || a->nlist == 0) {
		*error_r = "Invalid fetch items";
		return -1;
	}
	for (i = 0; i < a->nlist; i++)
		if (parse_item(f, &a->list[i], error_r) < 0)
			return -1;
	return 0;
}

static void
format_date(struct buf *out, int64_t t, int32_t tz)
{
	static const char *mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t local = (time_t)(t + (int64_t)tz * 60);
	struct tm tm;
	int a = tz < 0 ? -tz : tz;

	if (gmtime_r(&local, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	(void)buf_printf(out, "\"%2d-%s-%04d %02d:%02d:%02d %c%02d%02d\"",
	    tm.tm_mday, mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, tz < 0 ? '-' : '+', a / 60, a % 60);
}

/* 1 if the header line starting at l names one of the fields. */
static int
field_listed(const struct fetch_item *it, const char *l, size_t len)
{
	const char *colon = memchr(l, ':', len);
	size_t n, i;

	if (colon == NULL)
		return 0;
	n = (size_t)(colon - l);
	while (n > 0 && (l[n - 1] == ' ' || l[n - 1] == '\t'))
		n--;
	for (i = 0; i < it->nfields; i++)
		if (strlen(it->fields[i]) == n &&
		    strncasecmp(it->fields[i], l, n) == 0)
			return 1;
	return 0;
}

/* Keep (or drop, for .NOT) the listed fields of a header block. */
static void
filter_fields(const struct fetch_item *it, const struct buf *hdr,
    struct buf *out)
{
	const char *p = (const char *)hdr->data, *end = p + hdr->len;
	int keep = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl != NULL ? (size_t)(nl - p + 1) :
		    (size_t)(end - p);

		if (len <= 2 && (p[0] == '\r' || p[0] == '\n'))
			break;	/* the blank line */
		if (p[0] != ' ' && p[0] != '\t') {
			keep = field_listed(it, p, len);
			if (it->type == SECT_FIELDS_NOT)
				keep = !keep;
		}
		if (keep)
			(void)buf_append(out, p, len);
		p += len;
	}
	(void)buf_append_str(out, "\r\n");
}

/* Where a section lies; -1 if the part does not exist (empty answer). */
static int
section_range(struct fetch_state *f, const struct fetch_item *it,
    uint64_t *off_r, uint64_t *len_r)
{
	struct store_section sec;
	char spec[IMAPD_SECTION_PART_MAX + 8];

	if (it->part[0] == '\0' && it->type == SECT_ALL) {
		*off_r = 0;
		*len_r = f->cur.size;
		return 0;
	}
	switch (it->type) {
	case SECT_HEADER:
	case SECT_FIELDS:
	case SECT_FIELDS_NOT:
	case SECT_TEXT:
		(void)snprintf(spec, sizeof(spec), "%s%s%s", it->part,
		    it->part[0] != '\0' ? "." : "",
		    it->type == SECT_TEXT ? "TEXT" : "HEADER");
		break;
	default:
		(void)str_copy(spec, sizeof(spec), it->part);
		break;
	}
	if (store_msg_section(&f->meta, spec, &sec) < 0)
		return -1;
	if (it->type == SECT_TEXT || it->type == SECT_ALL) {
		*off_r = sec.body_off;
		*len_r = sec.body_len;
	} else {
		*off_r = sec.header_off;
		*len_r = sec.header_len;
	}
	return 0;
}

/*
 * Append one section item.  Small answers go into out; a large one is
 * started as a stream (returns 1: out must be flushed, then streamed).
 */
static int
fetch_section(struct imap_session *s, struct fetch_state *f,
    const struct fetch_item *it, struct buf *out)
{
	uint64_t off = 0, len = 0;
	const char *err;
	struct buf data;

	(void)buf_printf(out, "%s ", it->name);
	if (!f->have_meta || section_range(f, it, &off, &len) < 0) {
		(void)buf_append_str(out, "\"\"");
		return 0;
	}
	if (it->type == SECT_FIELDS || it->type == SECT_FIELDS_NOT) {
		struct buf hdr;

		buf_init(&hdr, BUF_UNBOUNDED);
		buf_init(&data, BUF_UNBOUNDED);
		if (store_blob_read_range(s->w->store, f->cur.blob, off, len,
		    &hdr, &err) == 0)
			filter_fields(it, &hdr, &data);
		buf_free(&hdr);
		off = 0;
		len = data.len;
		if (it->partial) {
			off = it->p_off < len ? it->p_off : len;
			len = len - off < it->p_len ? len - off : it->p_len;
		}
		(void)buf_printf(out, "{%llu}\r\n", (unsigned long long)len);
		(void)buf_append(out, data.data + off, (size_t)len);
		buf_free(&data);
		return 0;
	}
	if (it->partial) {
		uint64_t o = it->p_off < len ? it->p_off : len;

		off += o;
		len -= o;
		if (len > it->p_len)
			len = it->p_len;
	}
	(void)buf_printf(out, "{%llu}\r\n", (unsigned long long)len);
	if (len > IMAPD_STREAM_CHUNK) {
		memcpy(f->blob, f->cur.blob, STORE_BLOB_KEY_LEN);
		f->s_off = off;
		f->s_left = len;
		f->streaming = 1;
		return 1;
	}
	buf_init(&data, BUF_UNBOUNDED);
	if (len > 0 && store_blob_read_range(s->w->store, f->cur.blob, off,
	    len, &data, &err) < 0)
		buf_reset(&data);
	/* Keep the literal's length honest even if the read fell short. */
	while (data.len < len)
		(void)buf_append_byte(&data, ' ');
	(void)buf_append(out, data.data, (size_t)len);
	buf_free(&data);
	return 0;
}

/*
 * The decoded content of a part into out (RFC 3516); -1 if the part does
 * not exist or its transfer encoding is unknown.
 */
static int
binary_content(struct imap_session *s, struct fetch_state *f,
    const struct fetch_item *it, struct buf *out)
{
	struct store_section sec;
	struct buf hdr, raw, cte;
	const char *err;
	int rc = 0;

	if (it->part[0] == '\0')
		return store_blob_read(s->w->store, f->cur.blob, out,
		    &err) < 0 ? -1 : 0;
	if (!f->have_meta || store_msg_section(&f->meta, it->part, &sec) < 0)
		return -1;
	buf_init(&hdr, BUF_UNBOUNDED);
	buf_init(&raw, BUF_UNBOUNDED);
	buf_init(&cte, 256);
	if (store_blob_read_range(s->w->store, f->cur.blob, sec.header_off,
	    sec.header_len, &hdr, &err) < 0 ||
	    store_blob_read_range(s->w->store, f->cur.blob, sec.body_off,
	    sec.body_len, &raw, &err) < 0)
		rc = -1;
	if (rc == 0) {
		char *v;

		(void)imap_header_value(hdr.data, hdr.len,
		    "Content-Transfer-Encoding", &cte);
		v = xstrdup(imap_bstr(&cte));
		{
			char *p = v, *q;

			while (*p == ' ' || *p == '\t')
				p++;
			q = p + strlen(p);
			while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
				*--q = '\0';
			if (*p == '\0' || str_casecmp(p, "7bit") == 0 ||
			    str_casecmp(p, "8bit") == 0 ||
			    str_casecmp(p, "binary") == 0)
				(void)buf_append(out, raw.data, raw.len);
			else if (str_casecmp(p, "base64") == 0)
				imap_decode_base64(raw.data, raw.len, out);
			else if (str_casecmp(p, "quoted-printable") == 0)
				imap_decode_qp(raw.data, raw.len, out, 0);
			else
				rc = -1;
		}
		free(v);
	}
	buf_free(&hdr);
	buf_free(&raw);
	buf_free(&cte);
	return rc;
}

/* BINARY[...] or BINARY.SIZE[...]; returns 1 if a stream was started. */
static int
fetch_binary(struct imap_session *s, struct fetch_state *f,
    const struct fetch_item *it, struct buf *out)
{
	struct buf data;
	uint64_t off = 0, len;

	(void)buf_printf(out, "%s ", it->name);
	buf_init(&data, BUF_UNBOUNDED);
	if (binary_content(s, f, it, &data) < 0) {
		buf_free(&data);
		(void)buf_append_str(out, it->kind == F_BINSIZE ? "0" : "NIL");
		return 0;
	}
	len = data.len;
	if (it->kind == F_BINSIZE) {
		(void)buf_printf(out, "%llu", (unsigned long long)len);
		buf_free(&data);
		return 0;
	}
	if (it->partial) {
		off = it->p_off < len ? it->p_off : len;
		len -= off;
		if (len > it->p_len)
			len = it->p_len;
	}
	/* literal8 when the content holds a NUL (RFC 3516 4.2). */
	(void)buf_printf(out, "%s{%llu}\r\n",
	    len > 0 && memchr(data.data + off, 0, (size_t)len) != NULL ?
	    "~" : "", (unsigned long long)len);
	if (len > IMAPD_STREAM_CHUNK) {
		buf_free(&f->mem);
		f->mem = data;
		f->from_mem = 1;
		f->s_off = off;
		f->s_left = len;
		f->streaming = 1;
		return 1;
	}
	(void)buf_append(out, data.data + off, (size_t)len);
	buf_free(&data);
	return 0;
}

/* Write items from it onward; returns 1 if a stream was started. */
static int
fetch_items(struct imap_session *s, struct fetch_state *f, size_t from,
    struct buf *out)
{
	size_t i;

	for (i = from; i < f->nitems; i++) {
		const struct fetch_item *it = &f->items[i];

		if (i > 0)
			(void)buf_append_byte(out, ' ');
		switch (it->kind) {
		case F_FLAGS:
			(void)buf_append_str(out, "FLAGS ");
			imap_append_flags(s, out, f->cur.flags,
			    f->cur.keywords, f->cur.uid >= s->mb.first_recent);
			break;
		case F_UID:
			(void)buf_printf(out, "UID %u", f->cur.uid);
			break;
		case F_INTERNALDATE:
			(void)buf_append_str(out, "INTERNALDATE ");
			format_date(out, f->cur.internaldate,
			    f->cur.internaldate_tz);
			break;
		case F_SIZE:
			(void)buf_printf(out, "RFC822.SIZE %llu",
			    (unsigned long long)f->cur.size);
			break;
		case F_MODSEQ:
			(void)buf_printf(out, "MODSEQ (%llu)",
			    (unsigned long long)f->cur.modseq);
			break;
		case F_ENVELOPE:
			(void)buf_printf(out, "ENVELOPE %s", f->have_meta ?
			    f->meta.envelope : "(NIL NIL NIL NIL NIL NIL NIL "
			    "NIL NIL NIL)");
			break;
		case F_BODYSTRUCTURE:
			(void)buf_printf(out, "BODYSTRUCTURE %s", f->have_meta ?
			    f->meta.bodystructure : "(\"text\" \"plain\" NIL "
			    "NIL NIL \"7bit\" 0 0)");
			break;
		case F_BODY:
			(void)buf_printf(out, "BODY %s", f->have_meta ?
			    f->meta.body : "(\"text\" \"plain\" NIL NIL NIL "
			    "\"7bit\" 0 0)");
			break;
		case F_BINARY:
		case F_BINSIZE:
			if (fetch_binary(s, f, it, out)) {
				f->resume_item = i + 1;
				return 1;
			}
			break;
		case F_SECTION:
			if (fetch_section(s, f, it, out)) {
				f->resume_item = i + 1;
				return 1;
			}
			break;
		}
	}
	(void)buf_append_str(out, ")\r\n");
	return 0;
}

static enum imap_cmd_result
fetch_continue(struct imap_session *s)
{
	struct fetch_state *f = s->cont_state;
	struct buf out;
	const char *err;
	size_t done = 0;
	int yield = 0;

	buf_init(&out, BUF_UNBOUNDED);
	while (imap_output_len(s) < IMAPD_OUTPUT_SLICE &&
	    !conn_closing(s->conn)) {
		if (++done > IMAPD_SLICE_MESSAGES) {
			/* Many small answers: let other clients run. */
			yield = 1;
			break;
		}
		if (f->streaming) {
			uint64_t n = f->s_left < IMAPD_STREAM_CHUNK ?
			    f->s_left : IMAPD_STREAM_CHUNK;

			buf_reset(&out);
			if (f->from_mem)
				(void)buf_append(&out, f->mem.data +
				    f->s_off, (size_t)n);
			else if (store_blob_read_range(s->w->store, f->blob,
			    f->s_off, n, &out, &err) < 0)
				buf_reset(&out);
			while (out.len < n)
				(void)buf_append_byte(&out, ' ');
			imap_write(s, out.data, (size_t)n);
			f->s_off += n;
			f->s_left -= n;
			if (f->s_left > 0)
				continue;
			f->streaming = 0;
			f->from_mem = 0;
			buf_reset(&f->mem);
			buf_reset(&out);
			if (fetch_items(s, f, f->resume_item, &out) == 0)
				f->in_msg = 0;
			imap_write(s, out.data, out.len);
			continue;
		}
		if (f->next >= f->nuids)
			break;
		{
			uint32_t uid, seq;

			if (f->next >= f->batch_end) {
				/* The next slice's records, one transaction. */
				size_t k = f->nuids - f->next;

				if (k > IMAPD_SLICE_MESSAGES)
					k = IMAPD_SLICE_MESSAGES;
				free(f->batch);
				f->batch = NULL;
				f->bn = f->bi = 0;
				f->batch_end = f->next + k;
				if (imap_msgs_load(s, f->uids + f->next, k,
				    &f->batch, &f->bn, &err) < 0)
					log_warnx("s=%s event=fetch-read-failed "
					    "error=%s", s->sid, err);
			}
			uid = f->uids[f->next++];
			seq = imap_view_seq(&s->mb, uid);
			if (f->bi >= f->bn || f->batch[f->bi].uid != uid)
				continue;	/* expunged meanwhile */
			f->cur = f->batch[f->bi++];
			if (seq == 0)
				continue;
			if (f->have_meta) {
				store_msg_meta_free(&f->meta);
				f->have_meta = 0;
			}
			if (f->need_meta && imap_meta_load(s->w->meta,
			    s->w->store, f->cur.blob, &f->meta, &err) == 0)
				f->have_meta = 1;
			buf_reset(&out);
			(void)buf_printf(&out, "* %u FETCH (", seq);
			f->in_msg = 1;
			if (fetch_items(s, f, 0, &out) == 0)
				f->in_msg = 0;
			imap_write(s, out.data, out.len);
		}
	}
	buf_free(&out);
	if (conn_closing(s->conn))
		return IMAP_CMD_DONE;
	if (f->streaming || f->next < f->nuids) {
		/* Output past the slice resumes us from on_drain. */
		if (yield && imap_output_len(s) < IMAPD_OUTPUT_SLICE)
			imap_command_yield(s);
		return IMAP_CMD_MORE;
	}
	imap_tagged(s, "OK", "%sFETCH completed", f->uid_cmd ? "UID " : "");
	return IMAP_CMD_DONE;
}

struct collect_ctx {
	struct imap_session *s;
	struct fetch_state *f;
	size_t cap;
};

static int
collect_cb(const struct store_msg *m, void *ctx)
{
	struct collect_ctx *c = ctx;
	struct fetch_state *f = c->f;

	if (imap_view_seq(&c->s->mb, m->uid) == 0)
		return 0;
	if (f->nuids == c->cap) {
		c->cap = c->cap == 0 ? 64 : xmul(c->cap, 2);
		f->uids = xreallocarray(f->uids, c->cap, sizeof(uint32_t));
	}
	f->uids[f->nuids++] = m->uid;
	return 0;
}

enum imap_cmd_result
cmd_fetch(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	struct fetch_state *f;
	struct store_uid_range *r = NULL;
	size_t nr = 0;
	uint64_t changedsince = 0;
	const char *err;
	struct collect_ctx cc;
	int rc;

	if ((n != 2 && n != 3) || args[0].type != IMAP_ARG_ATOM) {
		imap_tagged(s, "BAD", "FETCH needs a sequence set and items");
		return IMAP_CMD_DONE;
	}
	if (n == 3) {
		const struct imap_arg *m = &args[2];
		size_t i;

		if (m->type != IMAP_ARG_LIST) {
			imap_tagged(s, "BAD", "Invalid FETCH modifiers");
			return IMAP_CMD_DONE;
		}
		for (i = 0; i < m->nlist; i++) {
			if (imap_arg_atom_is(&m->list[i], "CHANGEDSINCE") &&
			    i + 1 < m->nlist &&
			    m->list[i + 1].type == IMAP_ARG_ATOM &&
			    strnum_u64(m->list[i + 1].str, 0, INT64_MAX,
			    &changedsince, &err) == 0) {
				i++;
				continue;
			}
			if (imap_arg_atom_is(&m->list[i], "VANISHED") && uid &&
			    (s->enabled & IMAPD_EN_QRESYNC))
				continue;
			imap_tagged(s, "BAD", "Invalid FETCH modifiers");
			return IMAP_CMD_DONE;
		}
	}
	f = xcalloc(1, sizeof(*f));
	buf_init(&f->mem, BUF_UNBOUNDED);
	f->uid_cmd = uid;
	if (parse_items(f, &args[1], &err) < 0) {
		fetch_state_free(f);
		imap_tagged(s, "BAD", "%s", err);
		return IMAP_CMD_DONE;
	}
	if (uid)
		add_simple(f, F_UID);
	if (changedsince > 0) {
		add_simple(f, F_MODSEQ);
		s->mb.condstore = 1;
	}
	if (f->set_seen && !s->mb.readonly)
		add_simple(f, F_FLAGS);
	if (imap_view_ranges(s, args[0].str, uid, &r, &nr, &err) < 0) {
		fetch_state_free(f);
		imap_tagged(s, "BAD", "%s", err);
		return IMAP_CMD_DONE;
	}
	{
		size_t i;

		for (i = 0; i < f->nitems; i++)
			if (f->items[i].kind == F_MODSEQ)
				s->mb.condstore = 1;
	}
	if (f->set_seen && !s->mb.readonly && nr > 0) {
		rc = store_flags_update(s->w->store, s->mb.id, r, nr,
		    STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0, 0, NULL, NULL,
		    NULL, &err);
		if (rc < 0)
			log_warnx("s=%s event=set-seen-failed error=%s",
			    s->sid, err);
	}
	cc.s = s;
	cc.f = f;
	cc.cap = 0;
	rc = nr == 0 ? 0 : store_msg_list(s->w->store, s->mb.id, r, nr,
	    changedsince, collect_cb, &cc, &err);
	free(r);
	if (rc < 0) {
		fetch_state_free(f);
		imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	s->cont = fetch_continue;
	s->cont_state = f;
	s->cont_free = fetch_state_free;
	if (fetch_continue(s) == IMAP_CMD_DONE)
		return IMAP_CMD_DONE;
	return IMAP_CMD_MORE;
}

/* ---- STORE ---- */

struct store_ctx {
	struct imap_session *s;
	struct buf *out;
	int silent;
	int uid_cmd;
	uint32_t *failed;
	size_t nfailed, cap;
};

static int
store_changed_cb(const struct store_msg *m, void *ctx)
{
	struct store_ctx *c = ctx;
	uint32_t seq = imap_view_seq(&c->s->mb, m->uid);
	int modseq = c->s->mb.condstore ||
	    (c->s->enabled & IMAPD_EN_CONDSTORE);

	if (seq == 0 || (c->silent && !modseq))
		return 0;
	(void)buf_printf(c->out, "* %u FETCH (", seq);
	if (!c->silent) {
		(void)buf_append_str(c->out, "FLAGS ");
		imap_append_flags(c->s, c->out, m->flags, m->keywords,
		    m->uid >= c->s->mb.first_recent);
	}
	if (c->uid_cmd)
		(void)buf_printf(c->out, "%sUID %u", c->silent ? "" : " ",
		    m->uid);
	if (modseq)
		(void)buf_printf(c->out, "%sMODSEQ (%llu)",
		    c->silent && !c->uid_cmd ? "" : " ",
		    (unsigned long long)m->modseq);
	(void)buf_append_str(c->out, ")\r\n");
	return 0;
}

static int
store_failed_cb(uint32_t uid, void *ctx)
{
	struct store_ctx *c = ctx;

	if (c->nfailed == c->cap) {
		c->cap = c->cap == 0 ? 16 : xmul(c->cap, 2);
		c->failed = xreallocarray(c->failed, c->cap, sizeof(uint32_t));
	}
	c->failed[c->nfailed++] = c->uid_cmd ? uid :
	    imap_view_seq(&c->s->mb, uid);
	return 0;
}

enum imap_cmd_result
cmd_store(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	const char *kw[IMAPD_FLAGS_MAX];
	size_t nkw = 0, nr = 0, i = 1;
	uint32_t flags;
	uint64_t unchanged = 0;
	struct store_uid_range *r = NULL;
	enum store_flag_op op;
	const char *item, *err;
	struct store_ctx c;
	struct buf out;
	int rc;

	if (n < 3 || args[0].type != IMAP_ARG_ATOM) {
		imap_tagged(s, "BAD", "STORE needs a set, an item and flags");
		return IMAP_CMD_DONE;
	}
	if (args[1].type == IMAP_ARG_LIST) {
		const struct imap_arg *m = &args[1];

		if (m->nlist != 2 ||
		    !imap_arg_atom_is(&m->list[0], "UNCHANGEDSINCE") ||
		    m->list[1].type != IMAP_ARG_ATOM ||
		    strnum_u64(m->list[1].str, 0, INT64_MAX, &unchanged,
		    &err) < 0) {
			imap_tagged(s, "BAD", "Invalid STORE modifier");
			return IMAP_CMD_DONE;
		}
		s->mb.condstore = 1;
		i = 2;
	}
	if (n < i + 2 || args[i].type != IMAP_ARG_ATOM) {
		imap_tagged(s, "BAD", "STORE needs an item and flags");
		return IMAP_CMD_DONE;
	}
	item = args[i].str;
	memset(&c, 0, sizeof(c));
	if (item[0] == '+') {
		op = STORE_FLAGS_ADD;
		item++;
	} else if (item[0] == '-') {
		op = STORE_FLAGS_REMOVE;
		item++;
	} else
		op = STORE_FLAGS_REPLACE;
	if (str_casecmp(item, "FLAGS.SILENT") == 0)
		c.silent = 1;
	else if (str_casecmp(item, "FLAGS") != 0) {
		imap_tagged(s, "BAD", "Invalid STORE item");
		return IMAP_CMD_DONE;
	}
	if (n == i + 2) {
		if (imap_parse_flags(&args[i + 1], &flags, kw, &nkw,
		    &err) < 0) {
			imap_tagged(s, "BAD", "%s", err);
			return IMAP_CMD_DONE;
		}
	} else {
		/* Flags without parentheses: "+FLAGS \Seen \Deleted". */
		struct imap_arg list;

		memset(&list, 0, sizeof(list));
		list.type = IMAP_ARG_LIST;
		list.list = &args[i + 1];
		list.nlist = n - i - 1;
		if (imap_parse_flags(&list, &flags, kw, &nkw, &err) < 0) {
			imap_tagged(s, "BAD", "%s", err);
			return IMAP_CMD_DONE;
		}
	}
	if (s->mb.readonly) {
		imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return IMAP_CMD_DONE;
	}
	if (imap_view_ranges(s, args[0].str, uid, &r, &nr, &err) < 0) {
		imap_tagged(s, "BAD", "%s", err);
		return IMAP_CMD_DONE;
	}
	buf_init(&out, BUF_UNBOUNDED);
	c.s = s;
	c.out = &out;
	c.uid_cmd = uid;
	rc = nr == 0 ? 0 : store_flags_update(s->w->store, s->mb.id, r, nr,
	    op, flags, kw, nkw, unchanged, store_changed_cb, store_failed_cb,
	    &c, &err);
	free(r);
	if (rc < 0) {
		buf_free(&out);
		free(c.failed);
		imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	imap_write(s, out.data, out.len);
	buf_free(&out);
	imap_own_write(s);
	if (c.nfailed > 0) {
		struct buf set;

		buf_init(&set, BUF_UNBOUNDED);
		for (i = 0; i < c.nfailed; i++)
			(void)buf_printf(&set, "%s%u", i ? "," : "",
			    c.failed[i]);
		imap_tagged(s, "OK", "[MODIFIED %s] Conditional STORE failed",
		    imap_bstr(&set));
		buf_free(&set);
	} else
		imap_tagged(s, "OK", "%sSTORE completed", uid ? "UID " : "");
	free(c.failed);
	return IMAP_CMD_DONE;
}
