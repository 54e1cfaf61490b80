/*
 * cmd_sort.c - SORT and THREAD (RFC 5256): SORT by ARRIVAL, CC, DATE,
 * FROM, SIZE, SUBJECT, TO (each optionally REVERSE); THREAD=ORDEREDSUBJECT
 * and THREAD=REFERENCES (parent links from References/In-Reply-To; the
 * subject-merging steps of the full algorithm are not done).
 *
 * govmail-imapd workers.  The search program is untrusted and goes through
 * imap_search_run(); message headers are untrusted: thread trees built
 * from them are walked with explicit stacks (a reference chain as long as
 * the mailbox must not recurse), cycles are broken.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "imap_meta.h"
#include "imapd.h"
#include "log.h"
#include "xmalloc.h"

/* Sort criteria in one SORT command. */
#define IMAPD_SORT_KEYS_MAX 16
/* Bytes of a header kept for sorting and threading. */
#define IMAPD_SORT_HEADER_MAX 65536

enum sort_key {
	SK_ARRIVAL, SK_CC, SK_DATE, SK_FROM, SK_SIZE, SK_SUBJECT, SK_TO,
};

struct sort_msg {
	uint32_t uid;
	int64_t arrival;
	int64_t date;
	uint64_t size;
	char *subject;		/* base subject, upper-cased ASCII */
	/* the first mailbox's local part, lower-cased */
	char *from, *to, *cc;
	char *msgid;
	char *parent_id;	/* References then In-Reply-To, raw */
	size_t parent;		/* index, or SIZE_MAX */
	size_t *kids;
	size_t nkids;
};

struct sort_spec {
	enum sort_key key[IMAPD_SORT_KEYS_MAX];
	int reverse[IMAPD_SORT_KEYS_MAX];
	size_t n;
};

/* qsort has no context argument: the comparison reads this. */
static const struct sort_spec *sort_current;

/* ---- header helpers ---- */

/* Unfolded value of field in a header block into a fresh string, or NULL. */
static char *
hdr_get(const struct buf *h, const char *field)
{
	const char *p = (const char *)h->data, *end = p + h->len;
	size_t flen = strlen(field);
	struct buf v;
	int in = 0, found = 0;

	buf_init(&v, IMAPD_SORT_HEADER_MAX);
	while (p != NULL && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len == 0)
			break;
		if (p[0] == ' ' || p[0] == '\t') {
			if (in)
				(void)buf_append(&v, p, len);
		} else {
			in = !found && len > flen && p[flen] == ':' &&
			    strncasecmp(p, field, flen) == 0;
			if (in) {
				found = 1;
				(void)buf_append(&v, p + flen + 1,
				    len - flen - 1);
			}
		}
		p = nl != NULL ? nl + 1 : end;
	}
	if (!found) {
		buf_free(&v);
		return NULL;
	}
	return xstrdup(imap_bstr(&v));
}

/* The local part of the first address in an address header, lower-cased. */
static char *
first_local(const char *v)
{
	const char *at, *start;
	char *r;

	if (v == NULL)
		return xstrdup("");
	at = strchr(v, '@');
	if (at == NULL)
		return xstrdup("");
	start = at;
	while (start > v && start[-1] != '<' && start[-1] != ' ' &&
	    start[-1] != ',' && start[-1] != ':' && start[-1] != '\t')
		start--;
	r = xstrndup(start, (size_t)(at - start));
	str_lower(r);
	return r;
}

/* Message-ids of the thread's messages, sorted for bsearch. */
struct id_index {
	const char *id;
	size_t idx;
};

static int
id_cmp(const void *a, const void *b)
{
	return strcmp(((const struct id_index *)a)->id,
	    ((const struct id_index *)b)->id);
}

/*
 * The nearest ancestor present: walk the <ids> of refs from the right
 * and return the index of the first one some message carries.
 */
static size_t
find_parent(const struct id_index *ix, size_t nix, const char *refs,
    size_t self)
{
	const char *end = refs + strlen(refs);

	while (end > refs) {
		const char *close = end - 1, *open;
		struct id_index key, *hit;
		char *id;

		while (close > refs && *close != '>')
			close--;
		if (*close != '>')
			break;
		open = close;
		while (open > refs && *open != '<')
			open--;
		if (*open != '<')
			break;
		id = xstrndup(open, (size_t)(close - open + 1));
		key.id = id;
		key.idx = 0;
		hit = bsearch(&key, ix, nix, sizeof(*ix), id_cmp);
		free(id);
		if (hit != NULL && hit->idx != self)
			return hit->idx;
		end = open;
	}
	return SIZE_MAX;
}

/* RFC 5256 2.1 base subject (simplified), upper-cased ASCII. */
static char *
base_subject(const char *subj)
{
	char *s = xstrdup(subj != NULL ? subj : ""), *p, *w;
	int changed;

	/* Collapse white space. */
	for (p = w = s; *p != '\0'; p++) {
		char c = *p == '\t' || *p == '\r' || *p == '\n' ? ' ' : *p;

		if (c == ' ' && (w == s || w[-1] == ' '))
			continue;
		*w++ = c;
	}
	*w = '\0';
	do {
		size_t len;

		changed = 0;
		len = strlen(s);
		while (len > 0 && s[len - 1] == ' ')
			s[--len] = '\0';
		if (len >= 5 && strcasecmp(s + len - 5, "(fwd)") == 0) {
			s[len - 5] = '\0';
			changed = 1;
			continue;
		}
		p = s;
		while (*p == ' ')
			p++;
		if (*p == '[') {
			char *close = strchr(p, ']');

			if (close != NULL && close[1] != '\0') {
				memmove(s, close + 1, strlen(close + 1) + 1);
				changed = 1;
				continue;
			}
		}
		{
			size_t k = 0;

			if (strncasecmp(p, "re", 2) == 0)
				k = 2;
			else if (strncasecmp(p, "fwd", 3) == 0)
				k = 3;
			else if (strncasecmp(p, "fw", 2) == 0)
				k = 2;
			if (k > 0) {
				char *q = p + k;

				while (*q == ' ')
					q++;
				if (*q == '[') {
					char *close = strchr(q, ']');

					q = close != NULL ? close + 1 : q;
				}
				if (*q == ':') {
					memmove(s, q + 1, strlen(q + 1) + 1);
					changed = 1;
					continue;
				}
			}
		}
		if (p != s) {
			memmove(s, p, strlen(p) + 1);
			changed = 1;
		}
		len = strlen(s);
		if (len > 6 && strncasecmp(s, "[fwd:", 5) == 0 &&
		    s[len - 1] == ']') {
			s[len - 1] = '\0';
			memmove(s, s + 5, len - 5);
			changed = 1;
		}
	} while (changed);
	for (p = s; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 32);
	return s;
}

static void
msgs_free(struct sort_msg *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(m[i].subject);
		free(m[i].from);
		free(m[i].to);
		free(m[i].cc);
		free(m[i].msgid);
		free(m[i].parent_id);
		free(m[i].kids);
	}
	free(m);
}

/* Load what sorting and threading need for each UID. */
static int
msgs_load(struct imap_session *s, const uint32_t *uids, size_t n,
    struct sort_msg **msgs_r, const char **error_r)
{
	struct sort_msg *m = xcalloc(n == 0 ? 1 : n, sizeof(*m));
	size_t i;

	for (i = 0; i < n; i++) {
		struct store_msg sm;
		struct store_msg_meta meta;
		struct buf h;
		char *v;
		int rc;

		m[i].uid = uids[i];
		m[i].parent = SIZE_MAX;
		rc = store_msg_get(s->w->store, s->mb.id, uids[i], &sm,
		    error_r);
		if (rc < 0) {
			/* Expunged meanwhile: sorts as empty. */
			m[i].subject = xstrdup("");
			m[i].from = xstrdup("");
			m[i].to = xstrdup("");
			m[i].cc = xstrdup("");
			continue;
		}
		m[i].arrival = sm.internaldate;
		m[i].size = sm.size;
		m[i].date = sm.internaldate;
		buf_init(&h, BUF_UNBOUNDED);
		if (imap_meta_load(s->w->meta, s->w->store, sm.blob, &meta,
		    error_r) == 0) {
			if (meta.date != 0)
				m[i].date = meta.date;
			m[i].subject = base_subject(meta.subject);
			if (meta.message_id[0] != '\0')
				m[i].msgid = xstrdup(meta.message_id);
			(void)store_blob_read_range(s->w->store, sm.blob, 0,
			    meta.header_size < IMAPD_SORT_HEADER_MAX ?
			    meta.header_size : IMAPD_SORT_HEADER_MAX, &h,
			    error_r);
			store_msg_meta_free(&meta);
		} else
			m[i].subject = xstrdup("");
		v = hdr_get(&h, "From");
		m[i].from = first_local(v);
		free(v);
		v = hdr_get(&h, "To");
		m[i].to = first_local(v);
		free(v);
		v = hdr_get(&h, "Cc");
		m[i].cc = first_local(v);
		free(v);
		{
			char *refs = hdr_get(&h, "References");
			char *irt = hdr_get(&h, "In-Reply-To");

			/* Nearest ancestor last: In-Reply-To, then References. */
			m[i].parent_id = xasprintf("%s %s",
			    refs != NULL ? refs : "", irt != NULL ? irt : "");
			free(refs);
			free(irt);
		}
		buf_free(&h);
	}
	*msgs_r = m;
	return 0;
}

static int
cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b ? 1 : 0;
}

static int
sort_cmp(const void *pa, const void *pb)
{
	const struct sort_msg *a = pa, *b = pb;
	size_t i;

	for (i = 0; i < sort_current->n; i++) {
		int r = 0;

		switch (sort_current->key[i]) {
		case SK_ARRIVAL:
			r = cmp_i64(a->arrival, b->arrival);
			break;
		case SK_DATE:
			r = cmp_i64(a->date, b->date);
			break;
		case SK_SIZE:
			r = a->size < b->size ? -1 : a->size > b->size;
			break;
		case SK_SUBJECT:
			r = strcmp(a->subject, b->subject);
			break;
		case SK_FROM:
			r = strcmp(a->from, b->from);
			break;
		case SK_TO:
			r = strcmp(a->to, b->to);
			break;
		case SK_CC:
			r = strcmp(a->cc, b->cc);
			break;
		}
		if (r != 0)
			return sort_current->reverse[i] ? -r : r;
	}
	return a->uid < b->uid ? -1 : a->uid > b->uid;
}

/* "CHARSET keys..." after the criteria or algorithm; replies on error. */
static int
charset_ok(struct imap_session *s, const struct imap_arg *a)
{
	if (!imap_arg_is_string(a)) {
		imap_tagged(s, "BAD", "Charset expected");
		return 0;
	}
	if (str_casecmp(a->str, "UTF-8") != 0 &&
	    str_casecmp(a->str, "US-ASCII") != 0) {
		imap_tagged(s, "NO", "[BADCHARSET (UTF-8 US-ASCII)] "
		    "Unsupported charset");
		return 0;
	}
	return 1;
}

static int
search_for(struct imap_session *s, const struct imap_arg *args, size_t n,
    uint32_t **uids_r, size_t *nuids_r)
{
	const char *err = NULL;
	int rc = imap_search_run(s, args, n, uids_r, nuids_r, &err);

	if (rc == -1) {
		imap_tagged(s, "BAD", "%s", err);
		return -1;
	}
	if (rc < 0) {
		imap_tagged_store_error(s, rc, err);
		return -1;
	}
	return 0;
}

static uint32_t
out_id(struct imap_session *s, uint32_t uid, int uidcmd)
{
	return uidcmd ? uid : imap_view_seq(&s->mb, uid);
}

enum imap_cmd_result
cmd_sort(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	static const struct {
		const char *name;
		enum sort_key key;
	} keys[] = {
		{ "ARRIVAL", SK_ARRIVAL }, { "CC", SK_CC }, { "DATE", SK_DATE },
		{ "FROM", SK_FROM }, { "SIZE", SK_SIZE },
		{ "SUBJECT", SK_SUBJECT }, { "TO", SK_TO },
	};
	struct sort_spec spec;
	struct sort_msg *msgs = NULL;
	uint32_t *uids = NULL;
	size_t nuids = 0, i, k;
	const char *err;
	struct buf out;
	int reverse = 0;

	if (n < 3 || args[0].type != IMAP_ARG_LIST || args[0].nlist == 0) {
		imap_tagged(s, "BAD", "SORT needs criteria, a charset and "
		    "keys");
		return IMAP_CMD_DONE;
	}
	memset(&spec, 0, sizeof(spec));
	for (i = 0; i < args[0].nlist; i++) {
		const struct imap_arg *a = &args[0].list[i];

		if (imap_arg_atom_is(a, "REVERSE")) {
			reverse = 1;
			continue;
		}
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (imap_arg_atom_is(a, keys[k].name))
				break;
		if (k == sizeof(keys) / sizeof(keys[0]) ||
		    spec.n >= IMAPD_SORT_KEYS_MAX) {
			imap_tagged(s, "BAD", "Unknown sort criterion");
			return IMAP_CMD_DONE;
		}
		spec.key[spec.n] = keys[k].key;
		spec.reverse[spec.n++] = reverse;
		reverse = 0;
	}
	if (reverse || spec.n == 0) {
		imap_tagged(s, "BAD", "REVERSE needs a criterion");
		return IMAP_CMD_DONE;
	}
	if (!charset_ok(s, &args[1]))
		return IMAP_CMD_DONE;
	if (search_for(s, args + 2, n - 2, &uids, &nuids) < 0)
		return IMAP_CMD_DONE;
	(void)msgs_load(s, uids, nuids, &msgs, &err);
	sort_current = &spec;
	qsort(msgs, nuids, sizeof(*msgs), sort_cmp);
	sort_current = NULL;
	buf_init(&out, BUF_UNBOUNDED);
	(void)buf_append_str(&out, "* SORT");
	for (i = 0; i < nuids; i++)
		(void)buf_printf(&out, " %u", out_id(s, msgs[i].uid, uid));
	(void)buf_append_str(&out, "\r\n");
	imap_write(s, out.data, out.len);
	buf_free(&out);
	msgs_free(msgs, nuids);
	free(uids);
	imap_tagged(s, "OK", "%sSORT completed", uid ? "UID " : "");
	return IMAP_CMD_DONE;
}

/* ---- THREAD ---- */

static struct sort_msg *thread_msgs;

static int
date_cmp_idx(const void *pa, const void *pb)
{
	const struct sort_msg *a = &thread_msgs[*(const size_t *)pa];
	const struct sort_msg *b = &thread_msgs[*(const size_t *)pb];
	int r = cmp_i64(a->date, b->date);

	return r != 0 ? r : a->uid < b->uid ? -1 : a->uid > b->uid;
}

static void
kid_add(struct sort_msg *m, size_t parent, size_t kid)
{
	m[parent].kids = xreallocarray(m[parent].kids, m[parent].nkids + 1,
	    sizeof(size_t));
	m[parent].kids[m[parent].nkids++] = kid;
	m[kid].parent = parent;
}

/* Emit one thread tree rooted at r, iteratively. */
static void
emit_tree(struct imap_session *s, struct sort_msg *m, size_t r, int uidcmd,
    struct buf *out, size_t total)
{
	/* Actions: node index, or SIZE_MAX - c for the text character c. */
	size_t *stack = xcalloc(4 * total + 4, sizeof(size_t));
	size_t sp = 0;

#define PUSH_TEXT(c) (stack[sp++] = SIZE_MAX - (size_t)(c))
	(void)buf_append_byte(out, '(');
	stack[sp++] = r;
	while (sp > 0) {
		size_t a = stack[--sp];
		struct sort_msg *x;
		size_t k;

		if (a >= SIZE_MAX - 256) {
			(void)buf_append_byte(out, (uint8_t)(SIZE_MAX - a));
			continue;
		}
		x = &m[a];
		(void)buf_printf(out, "%u", out_id(s, x->uid, uidcmd));
		if (x->nkids == 1) {
			stack[sp++] = x->kids[0];
			PUSH_TEXT(' ');
		} else if (x->nkids > 1) {
			for (k = x->nkids; k > 0; k--) {
				PUSH_TEXT(')');
				stack[sp++] = x->kids[k - 1];
				PUSH_TEXT('(');
			}
			PUSH_TEXT(' ');
		}
	}
#undef PUSH_TEXT
	(void)buf_append_byte(out, ')');
	free(stack);
}

enum imap_cmd_result
cmd_thread(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	struct sort_msg *m = NULL;
	uint32_t *uids = NULL;
	size_t nuids = 0, i, j, *roots, nroots = 0;
	int refs;
	const char *err;
	struct buf out;

	if (n < 3 || args[0].type != IMAP_ARG_ATOM) {
		imap_tagged(s, "BAD", "THREAD needs an algorithm, a charset "
		    "and keys");
		return IMAP_CMD_DONE;
	}
	if (imap_arg_atom_is(&args[0], "REFERENCES"))
		refs = 1;
	else if (imap_arg_atom_is(&args[0], "ORDEREDSUBJECT"))
		refs = 0;
	else {
		imap_tagged(s, "BAD", "Unknown threading algorithm");
		return IMAP_CMD_DONE;
	}
	if (!charset_ok(s, &args[1]))
		return IMAP_CMD_DONE;
	if (search_for(s, args + 2, n - 2, &uids, &nuids) < 0)
		return IMAP_CMD_DONE;
	(void)msgs_load(s, uids, nuids, &m, &err);
	thread_msgs = m;
	roots = xcalloc(nuids == 0 ? 1 : nuids, sizeof(size_t));
	if (refs) {
		struct id_index *ix = xcalloc(nuids == 0 ? 1 : nuids,
		    sizeof(*ix));
		size_t nix = 0;

		for (i = 0; i < nuids; i++) {
			if (m[i].msgid != NULL) {
				ix[nix].id = m[i].msgid;
				ix[nix++].idx = i;
			}
		}
		qsort(ix, nix, sizeof(*ix), id_cmp);
		for (i = 0; i < nuids; i++) {
			size_t p, steps = 0;

			if (m[i].parent_id == NULL)
				continue;
			p = find_parent(ix, nix, m[i].parent_id, i);
			if (p == SIZE_MAX)
				continue;
			/* Refuse a link that would close a cycle. */
			for (j = p; j != SIZE_MAX && steps <= nuids; steps++) {
				if (j == i)
					break;
				j = m[j].parent;
			}
			if (j == i)
				continue;
			kid_add(m, p, i);
		}
		free(ix);
		for (i = 0; i < nuids; i++)
			if (m[i].parent == SIZE_MAX)
				roots[nroots++] = i;
	} else {
		/* Group by base subject; the earliest message is the parent. */
		size_t *order = xcalloc(nuids == 0 ? 1 : nuids, sizeof(size_t));

		for (i = 0; i < nuids; i++)
			order[i] = i;
		qsort(order, nuids, sizeof(size_t), date_cmp_idx);
		for (i = 0; i < nuids; i++) {
			size_t x = order[i];

			for (j = 0; j < nroots; j++)
				if (strcmp(m[roots[j]].subject,
				    m[x].subject) == 0)
					break;
			if (j < nroots)
				kid_add(m, roots[j], x);
			else
				roots[nroots++] = x;
		}
		free(order);
	}
	for (i = 0; i < nuids; i++)
		if (m[i].nkids > 1)
			qsort(m[i].kids, m[i].nkids, sizeof(size_t),
			    date_cmp_idx);
	qsort(roots, nroots, sizeof(size_t), date_cmp_idx);
	buf_init(&out, BUF_UNBOUNDED);
	(void)buf_append_str(&out, "* THREAD ");
	for (i = 0; i < nroots; i++)
		emit_tree(s, m, roots[i], uid, &out, nuids);
	(void)buf_append_str(&out, "\r\n");
	imap_write(s, out.data, out.len);
	buf_free(&out);
	thread_msgs = NULL;
	free(roots);
	msgs_free(m, nuids);
	free(uids);
	imap_tagged(s, "OK", "%sTHREAD completed", uid ? "UID " : "");
	return IMAP_CMD_DONE;
}
