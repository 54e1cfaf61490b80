/*
 * cmd_select.c - the selected mailbox: SELECT/EXAMINE (CONDSTORE,
 * QRESYNC), CLOSE, UNSELECT, CHECK, EXPUNGE/UID EXPUNGE, IDLE, and the
 * session's view of the mailbox (sequence numbers <-> UIDs) kept
 * consistent with other sessions' changes through untagged EXISTS,
 * EXPUNGE/VANISHED and FETCH responses.
 *
 * govmail-imapd workers.  Changes come from the store (HIGHESTMODSEQ,
 * UIDNEXT, the expunge log) and its change notification (IDLE); nothing
 * polls.  Client input here is sequence sets and flag lists, checked.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "imap_util.h"
#include "imapd.h"
#include "log.h"
#include "strnum.h"
#include "xmalloc.h"

/* ---- the view ---- */

uint32_t
imap_view_seq(const struct imap_view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v->uids[mid] < uid)
			lo = mid + 1;
		else if (v->uids[mid] > uid)
			hi = mid;
		else
			return (uint32_t)mid + 1;
	}
	return 0;
}

struct msgs_load_ctx {
	const uint32_t *uids;
	size_t n, next;
	struct store_msg *out;
	size_t nout;
};

static int
msgs_load_cb(const struct store_msg *m, void *ctx)
{
	struct msgs_load_ctx *c = ctx;

	while (c->next < c->n && c->uids[c->next] < m->uid)
		c->next++;
	if (c->next < c->n && c->uids[c->next] == m->uid) {
		c->out[c->nout++] = *m;
		c->next++;
	}
	return 0;
}

int
imap_msgs_load(struct imap_session *s, const uint32_t *uids, size_t n,
    struct store_msg **msgs_r, size_t *n_r, const char **error_r)
{
	struct store_uid_range *r;
	struct msgs_load_ctx c;
	size_t i, nr = 0;
	uint32_t prev_seq = 0;
	int rc;

	*msgs_r = NULL;
	*n_r = 0;
	if (n == 0)
		return 0;
	r = xreallocarray(NULL, n, sizeof(*r));
	for (i = 0; i < n; i++) {
		uint32_t seq = imap_view_seq(&s->mb, uids[i]);

		if (nr > 0 && seq != 0 && prev_seq != 0 && seq == prev_seq + 1)
			r[nr - 1].hi = uids[i];
		else {
			r[nr].lo = r[nr].hi = uids[i];
			nr++;
		}
		prev_seq = seq;
	}
	memset(&c, 0, sizeof(c));
	c.uids = uids;
	c.n = n;
	c.out = xreallocarray(NULL, n, sizeof(*c.out));
	rc = store_msg_list(s->w->store, s->mb.id, r, nr, 0, msgs_load_cb,
	    &c, error_r);
	free(r);
	if (rc < 0) {
		free(c.out);
		return rc;
	}
	*msgs_r = c.out;
	*n_r = c.nout;
	return 0;
}

static void
view_push(struct imap_view *v, uint32_t uid)
{
	if (v->n == v->cap) {
		v->cap = v->cap == 0 ? 64 : xmul(v->cap, 2);
		v->uids = xreallocarray(v->uids, v->cap, sizeof(uint32_t));
	}
	v->uids[v->n++] = uid;
}

static void
view_remove(struct imap_view *v, uint32_t seq)
{
	memmove(&v->uids[seq - 1], &v->uids[seq], (v->n - seq) *
	    sizeof(uint32_t));
	v->n--;
}

int
imap_view_ranges(struct imap_session *s, const char *set, int uid,
    struct store_uid_range **ranges_r, size_t *n_r, const char **error_r)
{
	struct imap_view *v = &s->mb;
	struct store_uid_range *r;
	size_t n, i;

	if (strcmp(set, "$") == 0) {
		/* SEARCHRES: the saved result, as UIDs. */
		r = xcalloc(s->nsaved == 0 ? 1 : s->nsaved, sizeof(*r));
		for (i = 0; i < s->nsaved; i++)
			r[i].lo = r[i].hi = s->saved[i];
		*ranges_r = r;
		*n_r = s->nsaved;
		return 0;
	}
	if (uid)
		return imap_seqset_parse(set, v->n > 0 ? v->uids[v->n - 1] :
		    0, ranges_r, n_r, error_r);
	if (imap_seqset_parse(set, (uint32_t)v->n, &r, &n, error_r) < 0)
		return -1;
	if (v->n == 0) {
		/*
		 * An empty mailbox: "1:*" or "*" (every range touching '*',
		 * which is 0 here) means nothing, as clients expect; any
		 * other number does not exist.
		 */
		for (i = 0; i < n; i++) {
			if (r[i].lo != 0) {
				free(r);
				*error_r = "Invalid message sequence number";
				return -1;
			}
		}
		free(r);
		*ranges_r = NULL;
		*n_r = 0;
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (r[i].lo == 0 || r[i].hi > v->n) {
			free(r);
			*error_r = "Invalid message sequence number";
			return -1;
		}
		r[i].lo = v->uids[r[i].lo - 1];
		r[i].hi = v->uids[r[i].hi - 1];
	}
	*ranges_r = r;
	*n_r = n;
	return 0;
}

/* ---- flags ---- */

static const struct {
	uint32_t bit;
	const char *name;
} system_flags[] = {
	{ STORE_FLAG_ANSWERED, "\\Answered" },
	{ STORE_FLAG_FLAGGED, "\\Flagged" },
	{ STORE_FLAG_DELETED, "\\Deleted" },
	{ STORE_FLAG_SEEN, "\\Seen" },
	{ STORE_FLAG_DRAFT, "\\Draft" },
};

static void
keywords_load(struct imap_session *s)
{
	const char *err;

	char *kw[STORE_KEYWORDS_MAX];
	size_t i;

	memset(kw, 0, sizeof(kw));
	if (store_mailbox_keywords(s->w->store, s->mb.id, kw, &err) < 0)
		memset(kw, 0, sizeof(kw));
	if (s->mb.kw != NULL) {
		store_keywords_free(s->mb.kw);
		free(s->mb.kw);
		s->mb.kw = NULL;
	}
	for (i = 0; i < STORE_KEYWORDS_MAX; i++)
		if (kw[i] != NULL) {
			s->mb.kw = xreallocarray(NULL, STORE_KEYWORDS_MAX,
			    sizeof(*s->mb.kw));
			memcpy(s->mb.kw, kw, sizeof(kw));
			break;
		}
	s->mb.kw_loaded = 1;
}

void
imap_append_flags(struct imap_session *s, struct buf *out, uint32_t flags,
    uint64_t keywords, int recent)
{
	const char *sep = "";
	size_t i;

	(void)buf_append_byte(out, '(');
	for (i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++) {
		if (flags & system_flags[i].bit) {
			(void)buf_printf(out, "%s%s", sep,
			    system_flags[i].name);
			sep = " ";
		}
	}
	if (recent && !(s->enabled & IMAPD_EN_REV2)) {
		(void)buf_printf(out, "%s\\Recent", sep);
		sep = " ";
	}
	for (i = 0; i < STORE_KEYWORDS_MAX && keywords != 0; i++) {
		if (!(keywords & (1ULL << i)))
			continue;
		if (!s->mb.kw_loaded || imap_keyword(&s->mb, i) == NULL)
			keywords_load(s);
		if (imap_keyword(&s->mb, i) != NULL) {
			(void)buf_printf(out, "%s%s", sep,
			    imap_keyword(&s->mb, i));
			sep = " ";
		}
	}
	(void)buf_append_byte(out, ')');
}

static int
keyword_ok(const char *k, size_t len)
{
	size_t i;

	if (len == 0 || len > STORE_KEYWORD_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		uint8_t c = (uint8_t)k[i];

		/* RFC 3501 atom without list-wildcards and resp-specials. */
		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return 0;
	}
	return 1;
}

int
imap_parse_flags(const struct imap_arg *a, uint32_t *flags_r,
    const char **keywords, size_t *nkw_r, const char **error_r)
{
	const struct imap_arg *list = a;
	size_t n = 1, i, j;

	*flags_r = 0;
	*nkw_r = 0;
	if (a->type == IMAP_ARG_LIST) {
		list = a->list;
		n = a->nlist;
	}
	for (i = 0; i < n; i++) {
		const struct imap_arg *f = &list[i];
		int found = 0;

		if (f->type != IMAP_ARG_ATOM) {
			*error_r = "Flags must be atoms";
			return -1;
		}
		if (f->str[0] == '\\') {
			for (j = 0; j < sizeof(system_flags) /
			    sizeof(system_flags[0]); j++) {
				if (str_casecmp(f->str,
				    system_flags[j].name) == 0) {
					*flags_r |= system_flags[j].bit;
					found = 1;
				}
			}
			if (!found && str_casecmp(f->str, "\\Recent") != 0) {
				*error_r = "Unknown system flag";
				return -1;
			}
			continue;
		}
		if (!keyword_ok(f->str, f->len)) {
			*error_r = "Invalid keyword";
			return -1;
		}
		if (*nkw_r >= IMAPD_FLAGS_MAX) {
			*error_r = "Too many keywords";
			return -1;
		}
		keywords[(*nkw_r)++] = f->str;
	}
	return 0;
}

/* ---- watching ---- */

static void
watch_ref(struct imap_worker *w, uint32_t id, int delta)
{
	size_t i;

	for (i = 0; i < w->nwatch; i++) {
		if (w->watch_ids[i] != id)
			continue;
		if (delta > 0) {
			w->watch_refs[i]++;
			return;
		}
		if (--w->watch_refs[i] == 0) {
			if (w->watch != NULL)
				store_watch_remove(w->watch, id);
			w->watch_ids[i] = w->watch_ids[w->nwatch - 1];
			w->watch_refs[i] = w->watch_refs[w->nwatch - 1];
			w->nwatch--;
		}
		return;
	}
	if (delta < 0)
		return;
	if (w->nwatch == w->watch_cap) {
		w->watch_cap = w->watch_cap == 0 ? 16 : xmul(w->watch_cap, 2);
		w->watch_ids = xreallocarray(w->watch_ids, w->watch_cap,
		    sizeof(uint32_t));
		w->watch_refs = xreallocarray(w->watch_refs, w->watch_cap,
		    sizeof(unsigned));
	}
	if (w->watch != NULL && store_watch_add(w->watch, id) < 0)
		log_warnx("event=watch-add-failed mailbox=%u", id);
	w->watch_ids[w->nwatch] = id;
	w->watch_refs[w->nwatch] = 1;
	w->nwatch++;
}

void
imap_unselect(struct imap_session *s)
{
	if (!s->selected)
		return;
	watch_ref(s->w, s->mb.id, -1);
	free(s->mb.uids);
	free(s->mb.name);
	if (s->mb.kw != NULL) {
		store_keywords_free(s->mb.kw);
		free(s->mb.kw);
	}
	memset(&s->mb, 0, sizeof(s->mb));
	free(s->saved);
	s->saved = NULL;
	s->nsaved = 0;
	s->selected = 0;
	if (s->state == IMAP_STATE_SELECTED)
		s->state = IMAP_STATE_AUTH;
}

/* ---- sync ---- */

struct uid_vec {
	uint32_t *v;
	size_t n, cap;
};

static void
uid_vec_push(struct uid_vec *u, uint32_t uid)
{
	if (u->n == u->cap) {
		u->cap = u->cap == 0 ? 16 : xmul(u->cap, 2);
		u->v = xreallocarray(u->v, u->cap, sizeof(uint32_t));
	}
	u->v[u->n++] = uid;
}

static int
vanished_cb(uint32_t uid, void *ctx)
{
	uid_vec_push(ctx, uid);
	return 0;
}

/* Append uids (ascending) as a compact UID set. */
static void
append_uid_set(struct buf *out, const uint32_t *uids, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		while (j + 1 < n && uids[j + 1] == uids[j] + 1)
			j++;
		if (i > 0)
			(void)buf_append_byte(out, ',');
		if (j > i)
			(void)buf_printf(out, "%u:%u", uids[i], uids[j]);
		else
			(void)buf_printf(out, "%u", uids[i]);
		i = j + 1;
	}
}

struct sync_ctx {
	struct imap_session *s;
	struct buf *out;
	uint32_t last;		/* highest UID in the view before */
	size_t added;
};

static int
changed_cb(const struct store_msg *m, void *ctx)
{
	struct sync_ctx *c = ctx;
	struct imap_session *s = c->s;
	uint32_t seq;

	if (m->uid > c->last) {
		view_push(&s->mb, m->uid);
		c->added++;
		return 0;
	}
	seq = imap_view_seq(&s->mb, m->uid);
	if (seq == 0)
		return 0;
	(void)buf_printf(c->out, "* %u FETCH (UID %u FLAGS ", seq, m->uid);
	imap_append_flags(s, c->out, m->flags, m->keywords,
	    m->uid >= s->mb.first_recent);
	if (s->mb.condstore || (s->enabled & IMAPD_EN_CONDSTORE))
		(void)buf_printf(c->out, " MODSEQ (%llu)",
		    (unsigned long long)m->modseq);
	(void)buf_append_str(c->out, ")\r\n");
	return 0;
}

static void
send_expunged(struct imap_session *s, struct buf *out, const uint32_t *uids,
    size_t n)
{
	size_t i;

	if (n == 0)
		return;
	if (s->enabled & IMAPD_EN_QRESYNC) {
		(void)buf_append_str(out, "* VANISHED ");
		append_uid_set(out, uids, n);
		(void)buf_append_str(out, "\r\n");
	}
	for (i = 0; i < n; i++) {
		uint32_t seq = imap_view_seq(&s->mb, uids[i]);

		if (seq == 0)
			continue;
		if (!(s->enabled & IMAPD_EN_QRESYNC))
			(void)buf_printf(out, "* %u EXPUNGE\r\n", seq);
		view_remove(&s->mb, seq);
	}
}

void
imap_sync(struct imap_session *s, int allow_expunge)
{
	struct store_mailbox_info info;
	struct uid_vec gone = { NULL, 0, 0 };
	struct sync_ctx c;
	struct buf out;
	const char *err;
	size_t i, before;
	int pending = 0;

	if (!s->selected)
		return;
	if (store_mailbox_get_id(s->w->store, s->mb.id, &info, NULL,
	    &err) < 0)
		return;
	if (info.highestmodseq == s->mb.modseq &&
	    info.uidnext == s->mb.uidnext)
		return;
	buf_init(&out, BUF_UNBOUNDED);
	if (store_vanished(s->w->store, s->mb.id, s->mb.modseq, vanished_cb,
	    &gone, &err) == 0) {
		size_t k = 0;

		/* Only UIDs this session knows matter. */
		for (i = 0; i < gone.n; i++)
			if (imap_view_seq(&s->mb, gone.v[i]) != 0)
				gone.v[k++] = gone.v[i];
		gone.n = k;
		if (gone.n > 0 && !allow_expunge)
			pending = 1;
		else
			send_expunged(s, &out, gone.v, gone.n);
	} else
		pending = 1;
	free(gone.v);
	c.s = s;
	c.out = &out;
	c.last = s->mb.n > 0 ? s->mb.uids[s->mb.n - 1] : 0;
	c.added = 0;
	before = s->mb.n;
	if (info.highestmodseq == s->mb.modseq) {
		/* Only new messages (this session's APPEND): list them
		 * alone, not the mailbox. */
		struct store_uid_range nr;

		nr.lo = c.last + 1;
		nr.hi = UINT32_MAX;
		if (c.last < UINT32_MAX && store_msg_list(s->w->store,
		    s->mb.id, &nr, 1, 0, changed_cb, &c, &err) < 0)
			pending = 1;
	} else if (store_msg_list(s->w->store, s->mb.id, NULL, 0,
	    s->mb.modseq, changed_cb, &c, &err) < 0)
		pending = 1;
	if (c.added > 0) {
		size_t recent = 0;

		(void)before;
		for (i = 0; i < s->mb.n; i++)
			if (s->mb.uids[i] >= s->mb.first_recent)
				recent++;
		(void)buf_printf(&out, "* %zu EXISTS\r\n", s->mb.n);
		if (!(s->enabled & IMAPD_EN_REV2))
			(void)buf_printf(&out, "* %zu RECENT\r\n", recent);
	}
	if (!pending)
		s->mb.modseq = info.highestmodseq;
	if (info.uidnext > s->mb.uidnext)
		s->mb.uidnext = info.uidnext;
	if (out.len > 0)
		imap_write(s, out.data, out.len);
	buf_free(&out);
}

void
imap_own_write(struct imap_session *s)
{
	uint64_t before, after;

	if (s->selected && store_last_write(s->w->store, s->mb.id, &before,
	    &after) == 0 && before == s->mb.modseq)
		s->mb.modseq = after;
}

void
imap_notify(struct imap_worker *w, uint32_t mailbox_id)
{
	struct imap_session *s;

	for (s = w->sessions; s != NULL; s = s->next) {
		if (s->idling && s->selected && s->mb.id == mailbox_id &&
		    !conn_closing(s->conn))
			imap_sync(s, 1);
	}
}

/* ---- SELECT / EXAMINE ---- */

struct select_ctx {
	struct imap_session *s;
	uint32_t first_unseen;
};

static int
select_cb(const struct store_msg *m, void *ctx)
{
	struct select_ctx *c = ctx;

	view_push(&c->s->mb, m->uid);
	if (c->first_unseen == 0 && !(m->flags & STORE_FLAG_SEEN))
		c->first_unseen = (uint32_t)c->s->mb.n;
	return 0;
}

static int
qresync_fetch_cb(const struct store_msg *m, void *ctx)
{
	struct sync_ctx *c = ctx;
	uint32_t seq = imap_view_seq(&c->s->mb, m->uid);

	if (seq == 0)
		return 0;
	(void)buf_printf(c->out, "* %u FETCH (UID %u FLAGS ", seq, m->uid);
	imap_append_flags(c->s, c->out, m->flags, m->keywords,
	    m->uid >= c->s->mb.first_recent);
	(void)buf_printf(c->out, " MODSEQ (%llu))\r\n",
	    (unsigned long long)m->modseq);
	return 0;
}

static enum imap_cmd_result
do_select(struct imap_session *s, const struct imap_arg *args, size_t n,
    int readonly)
{
	char name[STORE_MAILBOX_NAME_MAX + 1];
	struct store_mailbox_info info;
	struct select_ctx sc;
	const char *err;
	int rc, condstore = 0, qresync = 0;
	uint64_t q_modseq = 0;
	uint32_t q_validity = 0;
	struct store_uid_range *known = NULL;
	size_t nknown = 0, i, recent = 0;
	struct buf out;

	if (n < 1 || n > 2) {
		imap_tagged(s, "BAD", "SELECT needs a mailbox name");
		return IMAP_CMD_DONE;
	}
	if (n == 2) {
		const struct imap_arg *p = &args[1];

		if (p->type != IMAP_ARG_LIST) {
			imap_tagged(s, "BAD", "Invalid SELECT parameters");
			return IMAP_CMD_DONE;
		}
		for (i = 0; i < p->nlist; i++) {
			const struct imap_arg *x = &p->list[i];

			if (imap_arg_atom_is(x, "CONDSTORE")) {
				condstore = 1;
				continue;
			}
			if (imap_arg_atom_is(x, "QRESYNC") &&
			    i + 1 < p->nlist &&
			    p->list[i + 1].type == IMAP_ARG_LIST &&
			    (s->enabled & IMAPD_EN_QRESYNC)) {
				const struct imap_arg *q = p->list[i + 1].list;
				size_t nq = p->list[i + 1].nlist;
				uint64_t v;

				if (nq < 2 || q[0].type != IMAP_ARG_ATOM ||
				    q[1].type != IMAP_ARG_ATOM ||
				    strnum_u64(q[0].str, 1, UINT32_MAX, &v,
				    &err) < 0) {
					imap_tagged(s, "BAD", "Invalid QRESYNC "
					    "parameters");
					return IMAP_CMD_DONE;
				}
				q_validity = (uint32_t)v;
				if (strnum_u64(q[1].str, 1, INT64_MAX,
				    &q_modseq, &err) < 0) {
					imap_tagged(s, "BAD", "Invalid QRESYNC "
					    "modseq");
					return IMAP_CMD_DONE;
				}
				if (nq >= 3 && q[2].type == IMAP_ARG_ATOM &&
				    imap_seqset_parse(q[2].str, UINT32_MAX,
				    &known, &nknown, &err) < 0) {
					imap_tagged(s, "BAD", "Invalid known "
					    "UIDs");
					return IMAP_CMD_DONE;
				}
				qresync = 1;
				i++;
				continue;
			}
			free(known);
			imap_tagged(s, "BAD", "Invalid SELECT parameters");
			return IMAP_CMD_DONE;
		}
	}
	if (s->selected) {
		imap_unselect(s);
		if (s->enabled & IMAPD_EN_QRESYNC)
			imap_printf(s, "* OK [CLOSED] Previous mailbox "
			    "closed\r\n");
	}
	if (imap_mailbox_name(s, &args[0], name, &err) < 0) {
		free(known);
		imap_tagged(s, "NO", "[CANNOT] %s", err);
		return IMAP_CMD_DONE;
	}
	rc = store_mailbox_get(s->w->store, s->user, name, &info, &err);
	if (rc < 0) {
		free(known);
		imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	memset(&s->mb, 0, sizeof(s->mb));
	s->mb.id = info.id;
	s->mb.name = xstrdup(name);
	s->mb.readonly = readonly;
	s->mb.uidvalidity = info.uidvalidity;
	s->mb.uidnext = info.uidnext;
	s->mb.modseq = info.highestmodseq;
	s->mb.condstore = condstore || qresync;
	s->mb.first_recent = UINT32_MAX;
	if (!readonly) {
		uint32_t r;

		if (store_mailbox_take_recent(s->w->store, info.id, &r,
		    &err) == 0)
			s->mb.first_recent = r;
	}
	sc.s = s;
	sc.first_unseen = 0;
	rc = store_msg_list(s->w->store, info.id, NULL, 0, 0, select_cb, &sc,
	    &err);
	if (rc < 0) {
		free(known);
		free(s->mb.uids);
		free(s->mb.name);
		memset(&s->mb, 0, sizeof(s->mb));
		imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	if (s->mb.n > 0 && s->mb.uids[s->mb.n - 1] >= s->mb.uidnext)
		s->mb.uidnext = s->mb.uids[s->mb.n - 1] + 1;
	for (i = 0; i < s->mb.n; i++)
		if (s->mb.uids[i] >= s->mb.first_recent)
			recent++;
	s->selected = 1;
	s->state = IMAP_STATE_SELECTED;
	watch_ref(s->w, info.id, 1);
	keywords_load(s);
	buf_init(&out, BUF_UNBOUNDED);
	(void)buf_append_str(&out, "* FLAGS (\\Answered \\Flagged \\Deleted "
	    "\\Seen \\Draft");
	for (i = 0; i < STORE_KEYWORDS_MAX; i++)
		if (imap_keyword(&s->mb, i) != NULL)
			(void)buf_printf(&out, " %s", imap_keyword(&s->mb, i));
	(void)buf_append_str(&out, ")\r\n* OK [PERMANENTFLAGS (\\Answered "
	    "\\Flagged \\Deleted \\Seen \\Draft");
	for (i = 0; i < STORE_KEYWORDS_MAX; i++)
		if (imap_keyword(&s->mb, i) != NULL)
			(void)buf_printf(&out, " %s", imap_keyword(&s->mb, i));
	(void)buf_printf(&out, " \\*)] Flags permitted\r\n"
	    "* %zu EXISTS\r\n", s->mb.n);
	if (!(s->enabled & IMAPD_EN_REV2))
		(void)buf_printf(&out, "* %zu RECENT\r\n", recent);
	/* RFC 9051 dropped UNSEEN from SELECT and requires a LIST reply. */
	if (sc.first_unseen != 0 && !(s->enabled & IMAPD_EN_REV2))
		(void)buf_printf(&out, "* OK [UNSEEN %u] First unseen\r\n",
		    sc.first_unseen);
	if (s->enabled & IMAPD_EN_REV2) {
		(void)buf_append_str(&out, "* LIST () \"/\" ");
		imap_append_mailbox(s, &out, name);
		(void)buf_append_str(&out, "\r\n");
	}
	(void)buf_printf(&out, "* OK [UIDVALIDITY %u] UIDs valid\r\n"
	    "* OK [UIDNEXT %u] Predicted next UID\r\n"
	    "* OK [HIGHESTMODSEQ %llu] Highest\r\n", s->mb.uidvalidity,
	    s->mb.uidnext, (unsigned long long)s->mb.modseq);
	if (qresync && q_validity == s->mb.uidvalidity) {
		struct uid_vec gone = { NULL, 0, 0 };
		struct sync_ctx c;

		if (store_vanished(s->w->store, s->mb.id, q_modseq,
		    vanished_cb, &gone, &err) == 0) {
			size_t k = 0;

			for (i = 0; i < gone.n; i++)
				if (known == NULL || imap_seqset_contains(
				    known, nknown, gone.v[i]))
					gone.v[k++] = gone.v[i];
			if (k > 0) {
				(void)buf_append_str(&out,
				    "* VANISHED (EARLIER) ");
				append_uid_set(&out, gone.v, k);
				(void)buf_append_str(&out, "\r\n");
			}
		}
		free(gone.v);
		c.s = s;
		c.out = &out;
		(void)store_msg_list(s->w->store, s->mb.id, NULL, 0, q_modseq,
		    qresync_fetch_cb, &c, &err);
	}
	free(known);
	imap_write(s, out.data, out.len);
	buf_free(&out);
	imap_tagged(s, "OK", "[%s] %s completed",
	    readonly ? "READ-ONLY" : "READ-WRITE",
	    readonly ? "EXAMINE" : "SELECT");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_select(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)uid;
	return do_select(s, args, n, 0);
}

enum imap_cmd_result
cmd_examine(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)uid;
	return do_select(s, args, n, 1);
}

enum imap_cmd_result
cmd_close(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	const char *err;

	(void)args;
	(void)uid;
	if (n != 0) {
		imap_tagged(s, "BAD", "CLOSE takes no arguments");
		return IMAP_CMD_DONE;
	}
	if (!s->mb.readonly)
		(void)store_expunge(s->w->store, s->mb.id, NULL, 0, NULL, NULL,
		    &err);
	imap_unselect(s);
	imap_tagged(s, "OK", "CLOSE completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_unselect(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)args;
	(void)uid;
	if (n != 0) {
		imap_tagged(s, "BAD", "UNSELECT takes no arguments");
		return IMAP_CMD_DONE;
	}
	imap_unselect(s);
	imap_tagged(s, "OK", "UNSELECT completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_check(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)args;
	(void)uid;
	if (n != 0) {
		imap_tagged(s, "BAD", "CHECK takes no arguments");
		return IMAP_CMD_DONE;
	}
	imap_tagged(s, "OK", "CHECK completed");
	return IMAP_CMD_DONE;
}

static int
expunge_cb(uint32_t uid, void *ctx)
{
	uid_vec_push(ctx, uid);
	return 0;
}

enum imap_cmd_result
cmd_expunge(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	struct store_uid_range *r = NULL;
	size_t nr = 0;
	struct uid_vec gone = { NULL, 0, 0 };
	const char *err;
	struct buf out;
	int rc;

	if (n != (uid ? 1u : 0u) ||
	    (uid && args[0].type != IMAP_ARG_ATOM)) {
		imap_tagged(s, "BAD", uid ? "UID EXPUNGE needs a UID set" :
		    "EXPUNGE takes no arguments");
		return IMAP_CMD_DONE;
	}
	if (s->mb.readonly) {
		imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return IMAP_CMD_DONE;
	}
	if (uid && imap_view_ranges(s, args[0].str, 1, &r, &nr, &err) < 0) {
		imap_tagged(s, "BAD", "%s", err);
		return IMAP_CMD_DONE;
	}
	if (uid && nr == 0) {
		free(r);
		imap_tagged(s, "OK", "EXPUNGE completed");
		return IMAP_CMD_DONE;
	}
	rc = store_expunge(s->w->store, s->mb.id, r, nr, expunge_cb, &gone,
	    &err);
	free(r);
	if (rc < 0) {
		free(gone.v);
		imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	buf_init(&out, BUF_UNBOUNDED);
	send_expunged(s, &out, gone.v, gone.n);
	imap_write(s, out.data, out.len);
	buf_free(&out);
	free(gone.v);
	imap_own_write(s);
	imap_tagged(s, "OK", "EXPUNGE completed");
	return IMAP_CMD_DONE;
}

/* ---- IDLE (RFC 2177) ---- */

enum imap_cmd_result
cmd_idle(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)args;
	(void)uid;
	if (n != 0) {
		imap_tagged(s, "BAD", "IDLE takes no arguments");
		return IMAP_CMD_DONE;
	}
	imap_sync(s, 1);
	imap_printf(s, "+ idling\r\n");
	s->idling = 1;
	conn_resume_input(s->conn);
	return IMAP_CMD_MORE;
}

void
imap_idle_line(struct imap_session *s, const char *line, size_t len)
{
	s->idling = 0;
	if (len == 4 && strncasecmp(line, "DONE", 4) == 0)
		imap_tagged(s, "OK", "IDLE terminated");
	else
		imap_tagged(s, "BAD", "Expected DONE");
	imap_command_finished(s);
}
