/*
 * cmd_mailbox.c - IMAP mailbox commands that need no selected mailbox:
 * NAMESPACE, LIST (LIST-EXTENDED, SPECIAL-USE, LIST-STATUS), LSUB, CREATE,
 * DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS (STATUS=SIZE), GETQUOTA
 * and GETQUOTAROOT; and the mailbox name codec (modified UTF-7 or UTF-8).
 *
 * govmail-imapd workers, authenticated state.  Names and patterns are
 * untrusted: decoded and checked here, and checked again by the store.
 * Pattern matching simulates the pattern as an automaton: no recursion,
 * cost bounded by name length times (collapsed) pattern length.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "imap_util.h"
#include "imapd.h"
#include "log.h"
#include "xmalloc.h"

/* Longest pattern kept after collapsing runs of wildcards, bytes. */
#define IMAPD_PATTERN_MAX (2 * STORE_MAILBOX_NAME_MAX + 2)
/* Patterns in one LIST-EXTENDED command. */
#define IMAPD_PATTERNS_MAX 16

int
imap_mailbox_name(struct imap_session *s, const struct imap_arg *a,
    char *out, const char **error_r)
{
	struct buf b;

	if (!imap_arg_is_string(a) || a->len > IMAPD_MAILBOX_WIRE_MAX ||
	    memchr(a->str, '\0', a->len) != NULL) {
		*error_r = "Invalid mailbox name";
		return -1;
	}
	buf_init(&b, STORE_MAILBOX_NAME_MAX);
	if (imap_names_utf8(s)) {
		if (!imap_utf8_valid((const uint8_t *)a->str, a->len) ||
		    buf_append(&b, a->str, a->len) < 0) {
			buf_free(&b);
			*error_r = "Invalid mailbox name";
			return -1;
		}
	} else if (imap_utf7_to_utf8(a->str, &b, error_r) < 0) {
		buf_free(&b);
		return -1;
	}
	if (b.len == 0 || b.len > STORE_MAILBOX_NAME_MAX) {
		buf_free(&b);
		*error_r = "Invalid mailbox name";
		return -1;
	}
	memcpy(out, b.data, b.len + 1);
	/* INBOX is case-insensitive, also as the parent of a hierarchy. */
	if (b.len >= 5 && strncasecmp(out, "INBOX", 5) == 0 &&
	    (out[5] == '\0' || out[5] == '/'))
		memcpy(out, "INBOX", 5);
	buf_free(&b);
	return 0;
}

void
imap_append_mailbox(struct imap_session *s, struct buf *out, const char *name)
{
	struct buf enc;
	const char *err;

	if (imap_names_utf8(s)) {
		imap_append_string(out, name, 1);
		return;
	}
	buf_init(&enc, BUF_UNBOUNDED);
	if (imap_utf8_to_utf7(name, &enc, &err) < 0) {
		buf_reset(&enc);
		(void)buf_append_str(&enc, name);
	}
	imap_append_string(out, imap_bstr(&enc), 0);
	buf_free(&enc);
}

/* ---- pattern matching ---- */

struct pattern {
	char p[IMAPD_PATTERN_MAX + 1];
	size_t len;
	int never;		/* more literal bytes than a name holds */
};

static void
pattern_make(struct pattern *pt, const char *ref, const char *pat)
{
	size_t literal = 0, i;
	const char *parts[2] = { ref, pat };
	int k;

	pt->len = 0;
	pt->never = 0;
	for (k = 0; k < 2; k++) {
		for (i = 0; parts[k][i] != '\0'; i++) {
			char c = parts[k][i];

			if ((c == '*' || c == '%') && pt->len > 0) {
				char prev = pt->p[pt->len - 1];

				if (prev == '*')
					continue;
				if (prev == '%') {
					pt->p[pt->len - 1] = c;
					continue;
				}
			}
			if (c != '*' && c != '%' &&
			    ++literal > STORE_MAILBOX_NAME_MAX) {
				pt->never = 1;
				return;
			}
			if (pt->len >= IMAPD_PATTERN_MAX) {
				pt->never = 1;
				return;
			}
			pt->p[pt->len++] = c;
		}
	}
	pt->p[pt->len] = '\0';
	/* INBOX is case-insensitive, also as a pattern's first level. */
	if (pt->len >= 5 && strncasecmp(pt->p, "INBOX", 5) == 0 &&
	    (pt->p[5] == '\0' || pt->p[5] == '/'))
		memcpy(pt->p, "INBOX", 5);
}

/* Close a state set under "a wildcard may match nothing". */
static void
closure(const struct pattern *pt, uint8_t *set)
{
	size_t i;

	for (i = 0; i < pt->len; i++)
		if (set[i] && (pt->p[i] == '*' || pt->p[i] == '%'))
			set[i + 1] = 1;
}

static int
pattern_match(const struct pattern *pt, const char *name)
{
	uint8_t cur[IMAPD_PATTERN_MAX + 2], next[IMAPD_PATTERN_MAX + 2];
	size_t i, j;

	if (pt->never)
		return 0;
	memset(cur, 0, pt->len + 1);
	cur[0] = 1;
	closure(pt, cur);
	for (i = 0; name[i] != '\0'; i++) {
		int any = 0;

		memset(next, 0, pt->len + 1);
		for (j = 0; j < pt->len; j++) {
			char c = pt->p[j];

			if (!cur[j])
				continue;
			if (c == '*' || (c == '%' && name[i] != '/'))
				next[j] = any = 1;
			else if (c == name[i])
				next[j + 1] = any = 1;
		}
		if (!any)
			return 0;
		closure(pt, next);
		memcpy(cur, next, pt->len + 1);
	}
	return cur[pt->len];
}

/* ---- LIST ---- */

struct mb_list {
	struct store_mailbox_info *v;
	size_t n, cap;
};

static int
collect_cb(const struct store_mailbox_info *info, void *ctx)
{
	struct mb_list *l = ctx;

	if (l->n == l->cap) {
		l->cap = l->cap == 0 ? 16 : l->cap * 2;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n++] = *info;
	return 0;
}

static int
has_children(const struct mb_list *l, const char *name)
{
	size_t i, len = strlen(name);

	for (i = 0; i < l->n; i++)
		if (strncmp(l->v[i].name, name, len) == 0 &&
		    l->v[i].name[len] == '/')
			return 1;
	return 0;
}

/* 1 if a mailbox below name is subscribed (RFC 5258 CHILDINFO). */
static int
has_subscribed_child(const struct mb_list *l, const char *name)
{
	size_t i, len = strlen(name);

	for (i = 0; i < l->n; i++)
		if (l->v[i].subscribed && strncmp(l->v[i].name, name,
		    len) == 0 && l->v[i].name[len] == '/')
			return 1;
	return 0;
}

/* STATUS items, as bits. */
#define ST_MESSAGES 0x01
#define ST_RECENT 0x02
#define ST_UIDNEXT 0x04
#define ST_UIDVALIDITY 0x08
#define ST_UNSEEN 0x10
#define ST_HIGHESTMODSEQ 0x20
#define ST_SIZE 0x40
#define ST_DELETED 0x80	/* IMAP4rev2 */

static int
status_items(const struct imap_arg *a, unsigned *items_r)
{
	size_t i;

	*items_r = 0;
	if (a->type != IMAP_ARG_LIST || a->nlist == 0)
		return -1;
	for (i = 0; i < a->nlist; i++) {
		const struct imap_arg *x = &a->list[i];

		if (imap_arg_atom_is(x, "MESSAGES"))
			*items_r |= ST_MESSAGES;
		else if (imap_arg_atom_is(x, "RECENT"))
			*items_r |= ST_RECENT;
		else if (imap_arg_atom_is(x, "UIDNEXT"))
			*items_r |= ST_UIDNEXT;
		else if (imap_arg_atom_is(x, "UIDVALIDITY"))
			*items_r |= ST_UIDVALIDITY;
		else if (imap_arg_atom_is(x, "UNSEEN"))
			*items_r |= ST_UNSEEN;
		else if (imap_arg_atom_is(x, "HIGHESTMODSEQ"))
			*items_r |= ST_HIGHESTMODSEQ;
		else if (imap_arg_atom_is(x, "SIZE"))
			*items_r |= ST_SIZE;
		else if (imap_arg_atom_is(x, "DELETED"))
			*items_r |= ST_DELETED;
		else
			return -1;
	}
	return 0;
}

static int
deleted_cb(const struct store_msg *m, void *ctx)
{
	uint32_t *n = ctx;

	if (m->flags & STORE_FLAG_DELETED)
		(*n)++;
	return 0;
}

static void
status_line(struct imap_session *s, const struct store_mailbox_info *info,
    unsigned items)
{
	struct buf out;
	const char *sep = "";
	uint32_t deleted = 0;
	const char *err;

	if (items & ST_DELETED)
		(void)store_msg_list(s->w->store, info->id, NULL, 0, 0,
		    deleted_cb, &deleted, &err);

	buf_init(&out, BUF_UNBOUNDED);
	(void)buf_append_str(&out, "* STATUS ");
	imap_append_mailbox(s, &out, info->name);
	(void)buf_append_str(&out, " (");
#define ITEM(bit, fmt, val) \
	if (items & (bit)) { \
		(void)buf_printf(&out, "%s" fmt, sep, val); \
		sep = " "; \
	}
	ITEM(ST_MESSAGES, "MESSAGES %u", info->messages);
	ITEM(ST_RECENT, "RECENT %u", info->recent);
	ITEM(ST_UIDNEXT, "UIDNEXT %u", info->uidnext);
	ITEM(ST_UIDVALIDITY, "UIDVALIDITY %u", info->uidvalidity);
	ITEM(ST_UNSEEN, "UNSEEN %u", info->unseen);
	ITEM(ST_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu",
	    (unsigned long long)info->highestmodseq);
	ITEM(ST_SIZE, "SIZE %llu", (unsigned long long)info->size);
	ITEM(ST_DELETED, "DELETED %u", deleted);
#undef ITEM
	(void)buf_append_str(&out, ")\r\n");
	imap_write(s, out.data, out.len);
	buf_free(&out);
}

static void
special_use_attrs(struct buf *out, unsigned use, const char **sep)
{
	static const struct {
		unsigned bit;
		const char *name;
	} su[] = {
		{ STORE_USE_SENT, "\\Sent" },
		{ STORE_USE_DRAFTS, "\\Drafts" },
		{ STORE_USE_TRASH, "\\Trash" },
		{ STORE_USE_JUNK, "\\Junk" },
		{ STORE_USE_ARCHIVE, "\\Archive" },
	};
	size_t i;

	for (i = 0; i < sizeof(su) / sizeof(su[0]); i++) {
		if (use & su[i].bit) {
			(void)buf_printf(out, "%s%s", *sep, su[i].name);
			*sep = " ";
		}
	}
}

static enum imap_cmd_result
do_list(struct imap_session *s, const struct imap_arg *args, size_t n,
    int lsub)
{
	int sel_subscribed = lsub, sel_special = 0, ret_subscribed = 0;
	int recursive = 0;
	int ret_children = 1, ret_special = 1;
	unsigned status = 0;
	const struct imap_arg *ref, *pats;
	size_t npats = 1, i, k;
	struct pattern *pt = NULL;
	char refname[IMAPD_MAILBOX_WIRE_MAX * 2 + 1];
	struct mb_list l = { NULL, 0, 0 };
	const char *err;
	int rc;
	struct buf out;

	i = 0;
	if (!lsub && n > 0 && args[0].type == IMAP_ARG_LIST) {
		for (k = 0; k < args[0].nlist; k++) {
			const struct imap_arg *o = &args[0].list[k];

			if (imap_arg_atom_is(o, "SUBSCRIBED"))
				sel_subscribed = ret_subscribed = 1;
			else if (imap_arg_atom_is(o, "SPECIAL-USE"))
				sel_special = 1;
			else if (imap_arg_atom_is(o, "RECURSIVEMATCH"))
				recursive = 1;
			else if (imap_arg_atom_is(o, "REMOTE"))
				;
			else {
				imap_tagged(s, "BAD", "Unknown selection "
				    "option");
				return IMAP_CMD_DONE;
			}
		}
		i = 1;
		/* RFC 5258 3: RECURSIVEMATCH needs a criterion to recurse. */
		if (recursive && !sel_subscribed) {
			imap_tagged(s, "BAD", "RECURSIVEMATCH needs another "
			    "selection option");
			return IMAP_CMD_DONE;
		}
	}
	if (n < i + 2 || !imap_arg_is_string(&args[i])) {
		imap_tagged(s, "BAD", "LIST needs a reference and a pattern");
		return IMAP_CMD_DONE;
	}
	ref = &args[i];
	pats = &args[i + 1];
	if (pats->type == IMAP_ARG_LIST) {
		if (lsub || pats->nlist == 0 ||
		    pats->nlist > IMAPD_PATTERNS_MAX) {
			imap_tagged(s, "BAD", "Invalid pattern list");
			return IMAP_CMD_DONE;
		}
		npats = pats->nlist;
		pats = pats->list;
	}
	i += 2;
	if (i < n) {
		if (lsub || !imap_arg_atom_is(&args[i], "RETURN") ||
		    i + 2 != n || args[i + 1].type != IMAP_ARG_LIST) {
			imap_tagged(s, "BAD", "Invalid LIST arguments");
			return IMAP_CMD_DONE;
		}
		for (k = 0; k < args[i + 1].nlist; k++) {
			const struct imap_arg *o = &args[i + 1].list[k];

			if (imap_arg_atom_is(o, "SUBSCRIBED"))
				ret_subscribed = 1;
			else if (imap_arg_atom_is(o, "CHILDREN"))
				ret_children = 1;
			else if (imap_arg_atom_is(o, "SPECIAL-USE"))
				ret_special = 1;
			else if (imap_arg_atom_is(o, "STATUS") &&
			    k + 1 < args[i + 1].nlist &&
			    status_items(&args[i + 1].list[k + 1],
			    &status) == 0)
				k++;
			else {
				imap_tagged(s, "BAD", "Unknown return option");
				return IMAP_CMD_DONE;
			}
		}
	}
	for (k = 0; k < npats; k++) {
		if (!imap_arg_is_string(&pats[k])) {
			imap_tagged(s, "BAD", "Invalid pattern");
			return IMAP_CMD_DONE;
		}
	}
	/* An empty pattern asks for the delimiter. */
	if (npats == 1 && pats[0].len == 0) {
		imap_printf(s, "* %s (\\Noselect) \"/\" \"\"\r\n",
		    lsub ? "LSUB" : "LIST");
		imap_tagged(s, "OK", "%s completed", lsub ? "LSUB" : "LIST");
		return IMAP_CMD_DONE;
	}
	{
		struct buf b;

		buf_init(&b, sizeof(refname) - 1);
		if (ref->len > IMAPD_MAILBOX_WIRE_MAX ||
		    (imap_names_utf8(s) ?
		    buf_append(&b, ref->str, ref->len) :
		    imap_utf7_to_utf8(ref->str, &b, &err)) < 0) {
			buf_free(&b);
			imap_tagged(s, "BAD", "Invalid reference");
			return IMAP_CMD_DONE;
		}
		(void)str_copy(refname, sizeof(refname), imap_bstr(&b));
		buf_free(&b);
	}
	pt = xcalloc(npats, sizeof(*pt));
	for (k = 0; k < npats; k++) {
		struct buf b;

		buf_init(&b, IMAPD_MAILBOX_WIRE_MAX * 2);
		if (pats[k].len > IMAPD_MAILBOX_WIRE_MAX ||
		    (imap_names_utf8(s) ?
		    buf_append(&b, pats[k].str, pats[k].len) :
		    imap_utf7_to_utf8(pats[k].str, &b, &err)) < 0) {
			buf_free(&b);
			free(pt);
			imap_tagged(s, "BAD", "Invalid pattern");
			return IMAP_CMD_DONE;
		}
		pattern_make(&pt[k], refname, imap_bstr(&b));
		buf_free(&b);
	}
	rc = store_mailbox_list(s->w->store, s->user, collect_cb, &l, &err);
	if (rc < 0) {
		free(pt);
		free(l.v);
		imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	buf_init(&out, BUF_UNBOUNDED);
	for (i = 0; i < l.n; i++) {
		const struct store_mailbox_info *mi = &l.v[i];
		const char *sep = "";
		int match = 0, childinfo = 0;

		for (k = 0; k < npats && !match; k++)
			match = pattern_match(&pt[k], mi->name);
		if (!match)
			continue;
		if (recursive && !lsub)
			childinfo = has_subscribed_child(&l, mi->name);
		/*
		 * RFC 5258: with RECURSIVEMATCH a parent that matches the
		 * pattern is listed for its subscribed descendants, marked
		 * ("CHILDINFO" ("SUBSCRIBED")).
		 */
		if (sel_subscribed && !mi->subscribed && !childinfo)
			continue;
		if (sel_special && (mi->special_use & ~STORE_USE_INBOX) == 0)
			continue;
		buf_reset(&out);
		(void)buf_printf(&out, "* %s (", lsub ? "LSUB" : "LIST");
		if (ret_children && !lsub) {
			(void)buf_append_str(&out, has_children(&l, mi->name) ?
			    "\\HasChildren" : "\\HasNoChildren");
			sep = " ";
		}
		if ((ret_subscribed || sel_subscribed) && !lsub &&
		    mi->subscribed) {
			(void)buf_printf(&out, "%s\\Subscribed", sep);
			sep = " ";
		}
		if (ret_special || sel_special)
			special_use_attrs(&out, mi->special_use, &sep);
		(void)buf_append_str(&out, ") \"/\" ");
		imap_append_mailbox(s, &out, mi->name);
		if (childinfo)
			(void)buf_append_str(&out,
			    " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
		(void)buf_append_str(&out, "\r\n");
		imap_write(s, out.data, out.len);
		if (status != 0)
			status_line(s, mi, status);
	}
	buf_free(&out);
	free(l.v);
	free(pt);
	imap_tagged(s, "OK", "%s completed", lsub ? "LSUB" : "LIST");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_list(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)uid;
	return do_list(s, args, n, 0);
}

enum imap_cmd_result
cmd_lsub(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)uid;
	if (n != 2) {
		imap_tagged(s, "BAD", "LSUB needs a reference and a pattern");
		return IMAP_CMD_DONE;
	}
	return do_list(s, args, n, 1);
}

enum imap_cmd_result
cmd_namespace(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)args;
	(void)uid;
	if (n != 0) {
		imap_tagged(s, "BAD", "NAMESPACE takes no arguments");
		return IMAP_CMD_DONE;
	}
	imap_printf(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	imap_tagged(s, "OK", "NAMESPACE completed");
	return IMAP_CMD_DONE;
}

/* One mailbox-name argument, decoded; replies BAD/NO itself on error. */
static int
one_name(struct imap_session *s, const struct imap_arg *args, size_t n,
    size_t want, char *name)
{
	const char *err;

	if (n != want) {
		imap_tagged(s, "BAD", "Wrong number of arguments");
		return -1;
	}
	if (imap_mailbox_name(s, &args[0], name, &err) < 0) {
		imap_tagged(s, "NO", "[CANNOT] %s", err);
		return -1;
	}
	return 0;
}

enum imap_cmd_result
cmd_create(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	char name[STORE_MAILBOX_NAME_MAX + 1];
	const char *err;
	size_t len;
	int rc;

	(void)uid;
	/* RFC 6154 CREATE-SPECIAL-USE is not offered: one name only. */
	if (one_name(s, args, n, 1, name) < 0)
		return IMAP_CMD_DONE;
	/* A trailing delimiter only announces children (RFC 3501 6.3.3). */
	len = strlen(name);
	if (len > 1 && name[len - 1] == '/')
		name[len - 1] = '\0';
	if (strpbrk(name, "*%") != NULL) {
		imap_tagged(s, "NO", "[CANNOT] Wildcards are not allowed in "
		    "mailbox names");
		return IMAP_CMD_DONE;
	}
	rc = store_mailbox_create(s->w->store, s->user, name, 0, &err);
	if (rc < 0)
		imap_tagged_store_error(s, rc, err);
	else
		imap_tagged(s, "OK", "CREATE completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_delete(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	char name[STORE_MAILBOX_NAME_MAX + 1];
	const char *err;
	int rc;

	(void)uid;
	if (one_name(s, args, n, 1, name) < 0)
		return IMAP_CMD_DONE;
	if (strcmp(name, "INBOX") == 0) {
		imap_tagged(s, "NO", "[CANNOT] INBOX cannot be deleted");
		return IMAP_CMD_DONE;
	}
	if (s->selected && strcmp(s->mb.name, name) == 0) {
		imap_unselect(s);
		s->state = IMAP_STATE_AUTH;
		imap_printf(s, "* OK [CLOSED] Mailbox deleted\r\n");
	}
	rc = store_mailbox_delete(s->w->store, s->user, name, &err);
	if (rc < 0)
		imap_tagged_store_error(s, rc, err);
	else
		imap_tagged(s, "OK", "DELETE completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_rename(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	char from[STORE_MAILBOX_NAME_MAX + 1], to[STORE_MAILBOX_NAME_MAX + 1];
	const char *err;
	int rc;

	(void)uid;
	if (n != 2) {
		imap_tagged(s, "BAD", "RENAME needs two mailbox names");
		return IMAP_CMD_DONE;
	}
	if (imap_mailbox_name(s, &args[0], from, &err) < 0 ||
	    imap_mailbox_name(s, &args[1], to, &err) < 0) {
		imap_tagged(s, "NO", "[CANNOT] %s", err);
		return IMAP_CMD_DONE;
	}
	if (strpbrk(to, "*%") != NULL) {
		imap_tagged(s, "NO", "[CANNOT] Wildcards are not allowed in "
		    "mailbox names");
		return IMAP_CMD_DONE;
	}
	rc = store_mailbox_rename(s->w->store, s->user, from, to, &err);
	if (rc < 0)
		imap_tagged_store_error(s, rc, err);
	else
		imap_tagged(s, "OK", "RENAME completed");
	return IMAP_CMD_DONE;
}

static enum imap_cmd_result
do_subscribe(struct imap_session *s, const struct imap_arg *args, size_t n,
    int on)
{
	char name[STORE_MAILBOX_NAME_MAX + 1];
	const char *err;
	int rc;

	if (one_name(s, args, n, 1, name) < 0)
		return IMAP_CMD_DONE;
	rc = store_mailbox_subscribe(s->w->store, s->user, name, on, &err);
	if (rc < 0)
		imap_tagged_store_error(s, rc, err);
	else
		imap_tagged(s, "OK", "%s completed",
		    on ? "SUBSCRIBE" : "UNSUBSCRIBE");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_subscribe(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)uid;
	return do_subscribe(s, args, n, 1);
}

enum imap_cmd_result
cmd_unsubscribe(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)uid;
	return do_subscribe(s, args, n, 0);
}

enum imap_cmd_result
cmd_status(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	char name[STORE_MAILBOX_NAME_MAX + 1];
	struct store_mailbox_info info;
	unsigned items;
	const char *err;
	int rc;

	(void)uid;
	if (n != 2 || status_items(&args[1], &items) < 0) {
		imap_tagged(s, "BAD", "STATUS needs a mailbox and items");
		return IMAP_CMD_DONE;
	}
	if (imap_mailbox_name(s, &args[0], name, &err) < 0) {
		imap_tagged(s, "NO", "[CANNOT] %s", err);
		return IMAP_CMD_DONE;
	}
	rc = store_mailbox_get(s->w->store, s->user, name, &info, &err);
	if (rc < 0) {
		imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	status_line(s, &info, items);
	imap_tagged(s, "OK", "STATUS completed");
	return IMAP_CMD_DONE;
}

static int
quota_line(struct imap_session *s)
{
	struct store_account *a;
	const char *err;
	int rc;

	rc = store_account_get(s->w->store, s->user, &a, &err);
	if (rc < 0) {
		imap_tagged_store_error(s, rc, err);
		return -1;
	}
	imap_printf(s, "* QUOTA \"\" (STORAGE %llu %llu MESSAGE %llu %llu)\r\n",
	    (unsigned long long)(a->used_bytes / 1024),
	    (unsigned long long)(a->quota_bytes / 1024),
	    (unsigned long long)a->used_messages,
	    (unsigned long long)a->quota_messages);
	store_account_free(a);
	return 0;
}

enum imap_cmd_result
cmd_getquota(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)uid;
	if (n != 1 || !imap_arg_is_string(&args[0])) {
		imap_tagged(s, "BAD", "GETQUOTA needs a quota root");
		return IMAP_CMD_DONE;
	}
	if (args[0].len != 0) {
		imap_tagged(s, "NO", "[NONEXISTENT] No such quota root");
		return IMAP_CMD_DONE;
	}
	if (quota_line(s) == 0)
		imap_tagged(s, "OK", "GETQUOTA completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_getquotaroot(struct imap_session *s, const struct imap_arg *args,
    size_t n, int uid)
{
	char name[STORE_MAILBOX_NAME_MAX + 1];
	struct store_mailbox_info info;
	const char *err;
	struct buf out;
	int rc;

	(void)uid;
	if (one_name(s, args, n, 1, name) < 0)
		return IMAP_CMD_DONE;
	rc = store_mailbox_get(s->w->store, s->user, name, &info, &err);
	if (rc < 0) {
		imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	buf_init(&out, BUF_UNBOUNDED);
	(void)buf_append_str(&out, "* QUOTAROOT ");
	imap_append_mailbox(s, &out, name);
	(void)buf_append_str(&out, " \"\"\r\n");
	imap_write(s, out.data, out.len);
	buf_free(&out);
	if (quota_line(s) == 0)
		imap_tagged(s, "OK", "GETQUOTAROOT completed");
	return IMAP_CMD_DONE;
}
