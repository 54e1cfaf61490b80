/*
 * cmd_sort.c - SORT and THREAD (RFC 5256): SORT by ARRIVAL, CC, DATE,
 * FROM, SIZE, SUBJECT, TO (each optionally REVERSE); THREAD=ORDEREDSUBJECT
 * and THREAD=REFERENCES, whose algorithms live in imap_thread.c.
 *
 * govmail-imapd workers.  The search program is untrusted and goes through
 * imap_search_begin(); message headers are untrusted and only copied here.
 * Both commands run in slices: the search, then the metadata of
 * IMAPD_SLICE_MESSAGES messages per turn of the loop (imap_command_yield
 * between), so a large mailbox does not stall the worker's other clients;
 * the sort and the threading themselves run once everything is loaded.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "imap_meta.h"
#include "imap_thread.h"
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
	int64_t date;		/* sent date, else INTERNALDATE */
	uint64_t size;
	char *subject;		/* SORT: base subject; THREAD: decoded */
	/* the first mailbox's local part, lower-cased */
	char *from, *to, *cc;
	/* THREAD: raw Message-ID, References, In-Reply-To (or NULL) */
	char *msgid, *refs, *irt;
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
		free(m[i].refs);
		free(m[i].irt);
	}
	free(m);
}

/* A SORT or THREAD under way (s->cont_state). */
struct sort_job {
	int thread;			/* else SORT */
	enum imap_thread_algo algo;
	struct sort_spec spec;
	int uid;			/* UID SORT / UID THREAD */
	int need_addr;			/* SORT by FROM, TO or CC */
	struct imap_search_job *search;	/* phase 1; NULL once done */
	uint32_t *uids;			/* phase 2: the matches */
	size_t nuids, next;
	struct sort_msg *msgs;		/* loaded so far: [0, next) */
};

static void
sort_job_free(void *arg)
{
	struct sort_job *j = arg;

	imap_search_job_free(j->search);
	msgs_free(j->msgs, j->next);
	free(j->uids);
	free(j);
}

/* Fill m from the store record sm (or leave it empty if sm is NULL). */
static void
msg_fill(struct imap_session *s, const struct sort_job *j,
    struct sort_msg *m, const struct store_msg *sm)
{
	struct store_msg_meta meta;
	struct buf h;
	const char *err;
	int need_hdr = j->thread || j->need_addr;

	buf_init(&h, BUF_UNBOUNDED);
	if (sm != NULL) {
		m->arrival = sm->internaldate;
		m->size = sm->size;
		m->date = sm->internaldate;
		if (imap_meta_load(s->w->meta, s->w->store, sm->blob, &meta,
		    &err) == 0) {
			if (meta.date != 0)
				m->date = meta.date;
			m->subject = j->thread ? xstrdup(meta.subject) :
			    imap_base_subject(meta.subject, NULL);
			if (meta.message_id[0] != '\0')
				m->msgid = xstrdup(meta.message_id);
			if (need_hdr)
				(void)store_blob_read_range(s->w->store,
				    sm->blob, 0, meta.header_size <
				    IMAPD_SORT_HEADER_MAX ? meta.header_size :
				    IMAPD_SORT_HEADER_MAX, &h, &err);
			store_msg_meta_free(&meta);
		}
	}
	if (m->subject == NULL)
		m->subject = xstrdup("");
	if (j->thread) {
		m->refs = hdr_get(&h, "References");
		m->irt = hdr_get(&h, "In-Reply-To");
	} else if (j->need_addr) {
		char *v = hdr_get(&h, "From");

		m->from = first_local(v);
		free(v);
		v = hdr_get(&h, "To");
		m->to = first_local(v);
		free(v);
		v = hdr_get(&h, "Cc");
		m->cc = first_local(v);
		free(v);
	}
	if (m->from == NULL)
		m->from = xstrdup("");
	if (m->to == NULL)
		m->to = xstrdup("");
	if (m->cc == NULL)
		m->cc = xstrdup("");
	buf_free(&h);
}

/* Load the next slice of messages (one read transaction). */
static void
load_slice(struct imap_session *s, struct sort_job *j)
{
	size_t end = j->next + IMAPD_SLICE_MESSAGES, i, k = 0, nm = 0;
	struct store_msg *sms = NULL;
	const char *err;

	if (end > j->nuids)
		end = j->nuids;
	if (imap_msgs_load(s, j->uids + j->next, end - j->next, &sms, &nm,
	    &err) != 0)
		nm = 0;
	for (i = j->next; i < end; i++) {
		struct sort_msg *m = &j->msgs[i];

		memset(m, 0, sizeof(*m));
		m->uid = j->uids[i];
		/* Expunged meanwhile: sorts as empty. */
		if (k < nm && sms[k].uid == m->uid)
			msg_fill(s, j, m, &sms[k++]);
		else
			msg_fill(s, j, m, NULL);
	}
	free(sms);
	j->next = end;
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

static uint32_t
out_id(struct imap_session *s, uint32_t uid, int uidcmd)
{
	return uidcmd ? uid : imap_view_seq(&s->mb, uid);
}

/* Everything is loaded: sort or thread, answer. */
static void
sort_finish(struct imap_session *s, struct sort_job *j)
{
	struct buf out;
	size_t i;

	buf_init(&out, BUF_UNBOUNDED);
	if (!j->thread) {
		sort_current = &j->spec;
		qsort(j->msgs, j->nuids, sizeof(*j->msgs), sort_cmp);
		sort_current = NULL;
		(void)buf_append_str(&out, "* SORT");
		for (i = 0; i < j->nuids; i++)
			(void)buf_printf(&out, " %u", out_id(s, j->msgs[i].uid,
			    j->uid));
	} else {
		struct imap_thread_msg *tm = xcalloc(j->nuids == 0 ? 1 :
		    j->nuids, sizeof(*tm));

		for (i = 0; i < j->nuids; i++) {
			tm[i].id = out_id(s, j->msgs[i].uid, j->uid);
			tm[i].date = j->msgs[i].date;
			tm[i].message_id = j->msgs[i].msgid;
			tm[i].references = j->msgs[i].refs;
			tm[i].in_reply_to = j->msgs[i].irt;
			tm[i].subject = j->msgs[i].subject;
		}
		(void)buf_append_str(&out, "* THREAD ");
		imap_thread_run(j->algo, tm, j->nuids, &out);
		free(tm);
	}
	(void)buf_append_str(&out, "\r\n");
	imap_write(s, out.data, out.len);
	buf_free(&out);
	imap_tagged(s, "OK", "%s%s completed", j->uid ? "UID " : "",
	    j->thread ? "THREAD" : "SORT");
}

static enum imap_cmd_result
sort_continue(struct imap_session *s)
{
	struct sort_job *j = s->cont_state;

	if (j->search != NULL) {
		if (imap_search_step(s, j->search)) {
			imap_command_yield(s);
			return IMAP_CMD_MORE;
		}
		imap_search_take(j->search, &j->uids, &j->nuids);
		imap_search_job_free(j->search);
		j->search = NULL;
		j->msgs = xcalloc(j->nuids == 0 ? 1 : j->nuids,
		    sizeof(*j->msgs));
		imap_command_yield(s);
		return IMAP_CMD_MORE;
	}
	if (j->next < j->nuids) {
		load_slice(s, j);
		if (j->next < j->nuids) {
			imap_command_yield(s);
			return IMAP_CMD_MORE;
		}
	}
	sort_finish(s, j);
	return IMAP_CMD_DONE;
}

/* Start the job: the search program at args[0..n). */
static enum imap_cmd_result
sort_start(struct imap_session *s, struct sort_job *j,
    const struct imap_arg *args, size_t n)
{
	const char *err = NULL;

	if (imap_search_begin(s, args, n, &j->search, &err) < 0) {
		imap_tagged(s, "BAD", "%s", err);
		free(j);
		return IMAP_CMD_DONE;
	}
	s->cont = sort_continue;
	s->cont_state = j;
	s->cont_free = sort_job_free;
	return sort_continue(s);
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
	struct sort_job *j;
	struct sort_spec spec;
	size_t i, k;
	int reverse = 0, need_addr = 0;

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
		if (keys[k].key == SK_FROM || keys[k].key == SK_TO ||
		    keys[k].key == SK_CC)
			need_addr = 1;
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
	j = xcalloc(1, sizeof(*j));
	j->spec = spec;
	j->uid = uid;
	j->need_addr = need_addr;
	return sort_start(s, j, args + 2, n - 2);
}

enum imap_cmd_result
cmd_thread(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	struct sort_job *j;
	enum imap_thread_algo algo;

	if (n < 3 || args[0].type != IMAP_ARG_ATOM) {
		imap_tagged(s, "BAD", "THREAD needs an algorithm, a charset "
		    "and keys");
		return IMAP_CMD_DONE;
	}
	if (imap_arg_atom_is(&args[0], "REFERENCES"))
		algo = IMAP_THREAD_REFERENCES;
	else if (imap_arg_atom_is(&args[0], "ORDEREDSUBJECT"))
		algo = IMAP_THREAD_ORDEREDSUBJECT;
	else {
		imap_tagged(s, "BAD", "Unknown threading algorithm");
		return IMAP_CMD_DONE;
	}
	if (!charset_ok(s, &args[1]))
		return IMAP_CMD_DONE;
	j = xcalloc(1, sizeof(*j));
	j->thread = 1;
	j->algo = algo;
	j->uid = uid;
	return sort_start(s, j, args + 2, n - 2);
}
