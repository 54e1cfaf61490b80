/*
 * store_mailbox.c - mailboxes of an account: create (with the hierarchy
 * above), delete, rename, subscribe, list, \Recent hand-over and the
 * per-mailbox keyword slot table.
 *
 * Runs in imapd (client commands) and govmailctl.  Mailbox names come from
 * IMAP clients already decoded to UTF-8: they are checked here (length,
 * depth, UTF-8, no wildcards or control characters) before use as keys.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <db.h>

#include "buf.h"
#include "log.h"
#include "xmalloc.h"
#include "mailbox_priv.h"

#define ST_MBOX_KEY_MAX (4 + STORE_MAILBOX_NAME_MAX)
#define ST_SPECIAL_USE_ALL (STORE_USE_INBOX | STORE_USE_SENT | \
	STORE_USE_DRAFTS | STORE_USE_TRASH | STORE_USE_JUNK | STORE_USE_ARCHIVE)

int
st_mailbox_name_norm(const char *name, char *out, size_t outsz,
    const char **error_r)
{
	size_t n, i, depth = 1;
	unsigned char c;

	n = strlen(name);
	if (n == 0 || n > STORE_MAILBOX_NAME_MAX || n >= outsz) {
		*error_r = "mailbox name length out of range";
		return STORE_EINVAL;
	}
	if (name[0] == '/' || name[n - 1] == '/') {
		*error_r = "mailbox name starts or ends with the delimiter";
		return STORE_EINVAL;
	}
	for (i = 0; i < n; i++) {
		c = (unsigned char)name[i];
		if (c < 0x20 || c == 0x7f || c == '*' || c == '%') {
			*error_r = "bad character in mailbox name";
			return STORE_EINVAL;
		}
		if (c == '/') {
			if (name[i + 1] == '/') {
				*error_r = "empty level in mailbox name";
				return STORE_EINVAL;
			}
			depth++;
		}
	}
	if (depth > STORE_MAILBOX_DEPTH_MAX) {
		*error_r = "mailbox hierarchy too deep";
		return STORE_EINVAL;
	}
	{
		/* Same UTF-8 check as addresses, without the address rules. */
		const uint8_t *p = (const uint8_t *)name;
		size_t k, more;

		for (i = 0; i < n;) {
			if (p[i] < 0x80) {
				i++;
				continue;
			}
			more = (p[i] & 0xe0) == 0xc0 ? 1 : (p[i] & 0xf0) ==
			    0xe0 ? 2 : (p[i] & 0xf8) == 0xf0 ? 3 : 0;
			if (more == 0 || n - i - 1 < more ||
			    (p[i] & 0xfe) == 0xc0) {
				*error_r = "mailbox name is not UTF-8";
				return STORE_EINVAL;
			}
			for (k = 1; k <= more; k++)
				if ((p[i + k] & 0xc0) != 0x80) {
					*error_r = "mailbox name is not UTF-8";
					return STORE_EINVAL;
				}
			i += more + 1;
		}
	}
	memcpy(out, name, n + 1);
	/* RFC 3501 5.1: INBOX is case-insensitive (and so its children). */
	if (n >= 5 && str_casecmp(out, "INBOX") == 0)
		memcpy(out, "INBOX", 5);
	else if (n > 5 && out[5] == '/') {
		char first[6];

		memcpy(first, out, 5);
		first[5] = '\0';
		if (str_casecmp(first, "INBOX") == 0)
			memcpy(out, "INBOX", 5);
	}
	return 0;
}

static size_t
st_mbox_key(uint8_t *k, uint32_t acct_id, const char *name)
{
	size_t n = strlen(name);

	be32_put(k, acct_id);
	memcpy(k + 4, name, n);
	return 4 + n;
}

int
st_mbox_load(struct store *s, DB_TXN *txn, uint32_t id, struct mbox_rec *m)
{
	struct st_val v;
	uint8_t k[4];
	int r;

	be32_put(k, id);
	memset(m, 0, sizeof(*m));
	if ((r = st_get(s, SDB_MBOX_BY_ID, txn, k, 4, &v)) != 0) {
		if (r == STORE_ENOTFOUND)
			return st_fail(s, r, "no such mailbox");
		return r;
	}
	r = mbox_rec_decode(v.data, v.len, m);
	free(v.data);
	if (r != 0)
		return st_fail(s, STORE_EDAMAGED, "damaged mailbox record");
	if (s->txn_write)
		st_modseq_note(s, id, m->highestmodseq, 0);
	return 0;
}

/*
 * Note a mailbox's HIGHESTMODSEQ in the running write transaction: the
 * first load gives "before", every save "after" (a save without a load
 * before it gets before 0, which no session has seen).
 */
void
st_modseq_note(struct store *s, uint32_t id, uint64_t modseq, int saved)
{
	size_t i;

	for (i = 0; i < s->nmodseq_run; i++)
		if (s->modseq_run[i].id == id) {
			if (saved)
				s->modseq_run[i].after = modseq;
			return;
		}
	if (s->nmodseq_run == ST_MODSEQ_NOTES)
		return;		/* not noted: store_last_write says so */
	s->modseq_run[i].id = id;
	s->modseq_run[i].before = saved ? 0 : modseq;
	s->modseq_run[i].after = modseq;
	s->nmodseq_run++;
}

int
store_last_write(struct store *s, uint32_t mailbox_id, uint64_t *before_r,
    uint64_t *after_r)
{
	size_t i;

	for (i = 0; i < s->nmodseq_done; i++)
		if (s->modseq_done[i].id == mailbox_id) {
			*before_r = s->modseq_done[i].before;
			*after_r = s->modseq_done[i].after;
			return 0;
		}
	return STORE_ENOTFOUND;
}

int
st_mbox_save(struct store *s, DB_TXN *txn, uint32_t id,
    const struct mbox_rec *m)
{
	struct buf b;
	uint8_t k[4];
	int r;

	be32_put(k, id);
	buf_init(&b, BUF_UNBOUNDED);
	mbox_rec_encode(m, &b);
	r = st_put(s, SDB_MBOX_BY_ID, txn, k, 4, b.data, b.len, 0);
	buf_free(&b);
	if (r == 0) {
		st_notify(s, id);
		st_modseq_note(s, id, m->highestmodseq, 1);
	}
	return r;
}

int
st_mbox_find(struct store *s, DB_TXN *txn, uint32_t acct_id, const char *name,
    uint32_t *id_r)
{
	struct st_val v;
	uint8_t k[ST_MBOX_KEY_MAX];
	size_t kl;
	int r;

	kl = st_mbox_key(k, acct_id, name);
	if ((r = st_get(s, SDB_MAILBOXES, txn, k, kl, &v)) != 0) {
		if (r == STORE_ENOTFOUND)
			return st_fail(s, r, "no such mailbox");
		return r;
	}
	if (v.len != 4) {
		free(v.data);
		return st_fail(s, STORE_EDAMAGED, "damaged mailbox index");
	}
	*id_r = be32_get(v.data);
	free(v.data);
	return 0;
}

/* Number of mailboxes of an account. */
static int
st_mbox_count(struct store *s, DB_TXN *txn, uint32_t acct_id, size_t *n_r)
{
	struct st_cursor c;
	uint8_t k[4];
	int r;

	*n_r = 0;
	be32_put(k, acct_id);
	if ((r = st_cursor_open(s, SDB_MAILBOXES, txn, &c)) != 0)
		return r;
	r = st_cursor_get(&c, k, 4, DB_SET_RANGE);
	while (r == 0 && c.k.size >= 4 && memcmp(c.k.data, k, 4) == 0) {
		(*n_r)++;
		r = st_cursor_get(&c, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&c);
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
st_mbox_create(struct store *s, DB_TXN *txn, uint32_t acct_id,
    const char *name, unsigned special_use, int subscribed, uint32_t *id_r)
{
	struct mbox_rec m;
	uint8_t k[ST_MBOX_KEY_MAX], v[4];
	size_t kl, n;
	uint32_t id;
	int r;

	kl = st_mbox_key(k, acct_id, name);
	r = st_exists(s, SDB_MAILBOXES, txn, k, kl);
	if (r == 0)
		return st_fail(s, STORE_EEXISTS, "mailbox exists already");
	if (r != STORE_ENOTFOUND)
		return r;
	if ((r = st_mbox_count(s, txn, acct_id, &n)) != 0)
		return r;
	if (n >= STORE_MAILBOXES_MAX)
		return st_fail(s, STORE_EINVAL, "too many mailboxes");
	memset(&m, 0, sizeof(m));
	if ((r = st_counter_next(s, txn, "mbox", 1, &id)) != 0)
		return r;
	/* UIDVALIDITY: store-wide, increasing, seeded from the clock. */
	if ((r = st_counter_next(s, txn, "uidv", (uint32_t)time(NULL),
	    &m.uidvalidity)) != 0)
		return r;
	m.account_id = acct_id;
	m.uidnext = 1;
	m.highestmodseq = 1;
	m.recent_uid = 1;
	m.special_use = special_use;
	m.subscribed = subscribed ? 1 : 0;
	(void)str_copy(m.name, sizeof(m.name), name);
	be32_put(v, id);
	if ((r = st_put(s, SDB_MAILBOXES, txn, k, kl, v, 4, 0)) != 0)
		return r;
	if ((r = st_mbox_save(s, txn, id, &m)) != 0)
		return r;
	*id_r = id;
	return 0;
}

/* Delete every key of db that starts with prefix. */
static int
st_del_prefix(struct store *s, DB_TXN *txn, int dbi, const uint8_t *prefix,
    size_t plen)
{
	struct st_cursor c;
	int r;

	if ((r = st_cursor_open(s, dbi, txn, &c)) != 0)
		return r;
	r = st_cursor_get(&c, prefix, plen, DB_SET_RANGE);
	while (r == 0 && c.k.size >= plen &&
	    memcmp(c.k.data, prefix, plen) == 0) {
		if ((r = st_cursor_del(&c)) != 0)
			break;
		r = st_cursor_get(&c, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&c);
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
st_mbox_destroy(struct store *s, DB_TXN *txn, uint32_t id)
{
	struct mbox_rec m;
	struct st_cursor c;
	struct store_msg msg;
	uint8_t k[ST_MBOX_KEY_MAX];
	uint64_t bytes = 0, count = 0;
	size_t kl;
	int r;

	if ((r = st_mbox_load(s, txn, id, &m)) != 0)
		return r;
	be32_put(k, id);
	if ((r = st_cursor_open(s, SDB_MESSAGES, txn, &c)) != 0)
		return r;
	r = st_cursor_get(&c, k, 4, DB_SET_RANGE);
	while (r == 0 && c.k.size == 8 && memcmp(c.k.data, k, 4) == 0) {
		if (msg_rec_decode(c.v.data, c.v.size,
		    be32_get((uint8_t *)c.k.data + 4), &msg) == 0) {
			if ((r = st_blob_ref(s, txn, msg.blob, -1)) != 0)
				break;
			bytes += msg.size;
			count++;
		}
		if ((r = st_cursor_del(&c)) != 0)
			break;
		r = st_cursor_get(&c, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&c);
	if (r != 0 && r != STORE_ENOTFOUND)
		return r;
	if ((r = st_usage_add(s, txn, m.account_id, -(int64_t)bytes,
	    -(int64_t)count)) != 0)
		return r;
	if ((r = st_del_prefix(s, txn, SDB_EXPUNGED, k, 4)) != 0)
		return r;
	if ((r = st_del_prefix(s, txn, SDB_KEYWORDS, k, 4)) != 0)
		return r;
	if ((r = st_del(s, SDB_MBOX_BY_ID, txn, k, 4)) != 0)
		return r;
	kl = st_mbox_key(k, m.account_id, m.name);
	if ((r = st_del(s, SDB_MAILBOXES, txn, k, kl)) != 0)
		return r;
	st_notify(s, id);
	return 0;
}

/* ---- keywords ---- */

int
st_kw_load(struct store *s, DB_TXN *txn, uint32_t id,
    char *names[STORE_KEYWORDS_MAX])
{
	struct st_cursor c;
	uint8_t k[4], slot;
	int r;

	memset(names, 0, sizeof(char *) * STORE_KEYWORDS_MAX);
	be32_put(k, id);
	if ((r = st_cursor_open(s, SDB_KEYWORDS, txn, &c)) != 0)
		return r;
	r = st_cursor_get(&c, k, 4, DB_SET_RANGE);
	while (r == 0 && c.k.size == 5 && memcmp(c.k.data, k, 4) == 0) {
		slot = ((uint8_t *)c.k.data)[4];
		if (slot < STORE_KEYWORDS_MAX && names[slot] == NULL)
			names[slot] = xmemdup(c.v.data, c.v.size);
		r = st_cursor_get(&c, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&c);
	if (r != 0 && r != STORE_ENOTFOUND) {
		store_keywords_free(names);
		return r;
	}
	return 0;
}

/* RFC 3501 flag-keyword: an atom, not a system flag. */
static int
st_keyword_ok(const char *kw)
{
	size_t i, n = strlen(kw);

	if (n == 0 || n > STORE_KEYWORD_MAX || kw[0] == '\\')
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)kw[i];

		if (c <= ' ' || c >= 0x7f || strchr("(){%*\"\\]", c))
			return 0;
	}
	return 1;
}

int
st_kw_bits(struct store *s, DB_TXN *txn, uint32_t id, struct mbox_rec *m,
    char *names[STORE_KEYWORDS_MAX], const char *const *kw, size_t nkw,
    int create, uint64_t *bits_r)
{
	uint8_t k[5];
	size_t i;
	int slot, free_slot, r;

	*bits_r = 0;
	for (i = 0; i < nkw; i++) {
		if (!st_keyword_ok(kw[i]))
			return st_fail(s, STORE_EINVAL, "bad keyword");
		free_slot = -1;
		for (slot = 0; slot < STORE_KEYWORDS_MAX; slot++) {
			if (names[slot] == NULL) {
				if (free_slot < 0)
					free_slot = slot;
				continue;
			}
			if (str_casecmp(names[slot], kw[i]) == 0)
				break;
		}
		if (slot < STORE_KEYWORDS_MAX) {
			*bits_r |= 1ULL << slot;
			continue;
		}
		if (!create)
			continue;
		if (free_slot < 0)
			return st_fail(s, STORE_EINVAL,
			    "no free keyword slot in this mailbox");
		be32_put(k, id);
		k[4] = (uint8_t)free_slot;
		if ((r = st_put(s, SDB_KEYWORDS, txn, k, 5, kw[i],
		    strlen(kw[i]), 0)) != 0)
			return r;
		names[free_slot] = xstrdup(kw[i]);
		m->keywords_mask |= 1ULL << free_slot;
		*bits_r |= 1ULL << free_slot;
	}
	return 0;
}

void
store_keywords_free(char *names[STORE_KEYWORDS_MAX])
{
	int i;

	for (i = 0; i < STORE_KEYWORDS_MAX; i++) {
		free(names[i]);
		names[i] = NULL;
	}
}

/* ---- public mailbox calls ---- */

struct mbox_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
	char name[STORE_MAILBOX_NAME_MAX + 1];
	char to[STORE_MAILBOX_NAME_MAX + 1];
	unsigned special_use;
	int flag;
	uint32_t id;
	struct store_mailbox_info info;
	char owner[STORE_ADDRESS_MAX + 1];
	struct store_mailbox_info *v;
	size_t n;
	uint32_t first_recent;
	char *kw[STORE_KEYWORDS_MAX];
};

static void
st_mbox_info(const struct mbox_rec *m, uint32_t id,
    struct store_mailbox_info *info)
{
	memset(info, 0, sizeof(*info));
	(void)str_copy(info->name, sizeof(info->name), m->name);
	info->id = id;
	info->uidvalidity = m->uidvalidity;
	info->uidnext = m->uidnext;
	info->highestmodseq = m->highestmodseq;
	info->messages = m->messages;
	info->unseen = m->unseen;
	info->recent = m->recent;
	info->recent_uid = m->recent_uid;
	info->size = m->size;
	info->special_use = m->special_use;
	info->subscribed = m->subscribed;
	info->keywords_mask = m->keywords_mask;
}

/* Account id of c->norm, or an error. */
static int
st_mbox_account(struct store *s, DB_TXN *txn, struct mbox_ctx *c,
    uint32_t *acct_r)
{
	struct acct_rec a;
	int r;

	if ((r = st_account_load(s, txn, c->norm, &a)) != 0) {
		if (r == STORE_ENOTFOUND)
			return st_fail(s, r, "no such account");
		return r;
	}
	*acct_r = a.id;
	acct_rec_clear(&a);
	return 0;
}

/* Create the missing levels above name (unsubscribed, like Dovecot). */
static int
st_mbox_parents(struct store *s, DB_TXN *txn, uint32_t acct, const char *name)
{
	char parent[STORE_MAILBOX_NAME_MAX + 1];
	uint32_t id;
	size_t i;
	int r;

	for (i = 0; name[i] != '\0'; i++) {
		if (name[i] != '/')
			continue;
		memcpy(parent, name, i);
		parent[i] = '\0';
		r = st_mbox_find(s, txn, acct, parent, &id);
		if (r == STORE_ENOTFOUND)
			r = st_mbox_create(s, txn, acct, parent, 0, 0, &id);
		if (r != 0)
			return r;
	}
	s->err = NULL;
	return 0;
}

static int
st_mailbox_create_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct mbox_ctx *c = arg;
	uint32_t acct = 0;
	int r;

	if ((r = st_mbox_account(s, txn, c, &acct)) != 0)
		return r;
	if ((r = st_mbox_parents(s, txn, acct, c->name)) != 0)
		return r;
	return st_mbox_create(s, txn, acct, c->name, c->special_use, 0,
	    &c->id);
}

static int
st_mbox_args(struct mbox_ctx *c, const char *address, const char *name,
    const char **error_r)
{
	const char *err;
	int r;

	memset(c, 0, sizeof(*c));
	if ((r = st_address_norm(address, c->norm, sizeof(c->norm),
	    &err)) == 0 && name != NULL)
		r = st_mailbox_name_norm(name, c->name, sizeof(c->name), &err);
	if (r != 0 && error_r != NULL)
		*error_r = err;
	return r;
}

int
store_mailbox_create(struct store *s, const char *address, const char *name,
    unsigned special_use, const char **error_r)
{
	struct mbox_ctx c;
	int r;

	if ((r = st_mbox_args(&c, address, name, error_r)) != 0)
		return r;
	if ((special_use & ~(unsigned)ST_SPECIAL_USE_ALL) != 0 ||
	    (special_use & STORE_USE_INBOX) != 0) {
		if (error_r != NULL)
			*error_r = "bad special-use";
		return STORE_EINVAL;
	}
	c.special_use = special_use;
	return st_txn_run(s, ST_TXN_WRITE, st_mailbox_create_fn, &c, error_r);
}

static int
st_mailbox_delete_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct mbox_ctx *c = arg;
	uint32_t acct = 0, id = 0;
	int r;

	if ((r = st_mbox_account(s, txn, c, &acct)) != 0)
		return r;
	if ((r = st_mbox_find(s, txn, acct, c->name, &id)) != 0)
		return r;
	return st_mbox_destroy(s, txn, id);
}

int
store_mailbox_delete(struct store *s, const char *address, const char *name,
    const char **error_r)
{
	struct mbox_ctx c;
	int r;

	if ((r = st_mbox_args(&c, address, name, error_r)) != 0)
		return r;
	if (strcmp(c.name, "INBOX") == 0) {
		if (error_r != NULL)
			*error_r = "INBOX cannot be deleted";
		return STORE_EPERM;
	}
	return st_txn_run(s, ST_TXN_WRITE, st_mailbox_delete_fn, &c, error_r);
}

/* Rename one mailbox record (same id, same UIDVALIDITY). */
static int
st_mbox_rename_one(struct store *s, DB_TXN *txn, uint32_t acct, uint32_t id,
    const char *from, const char *to)
{
	struct mbox_rec m;
	uint8_t k[ST_MBOX_KEY_MAX], v[4];
	size_t kl;
	int r;

	if ((r = st_mbox_load(s, txn, id, &m)) != 0)
		return r;
	kl = st_mbox_key(k, acct, from);
	if ((r = st_del(s, SDB_MAILBOXES, txn, k, kl)) != 0)
		return r;
	kl = st_mbox_key(k, acct, to);
	be32_put(v, id);
	if ((r = st_put(s, SDB_MAILBOXES, txn, k, kl, v, 4,
	    DB_NOOVERWRITE)) != 0)
		return r == STORE_EEXISTS ? st_fail(s, r,
		    "target mailbox exists already") : r;
	(void)str_copy(m.name, sizeof(m.name), to);
	return st_mbox_save(s, txn, id, &m);
}

static int
st_mailbox_rename_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct mbox_ctx *c = arg;
	struct st_cursor cur;
	struct mbox_rec src;
	uint8_t k[ST_MBOX_KEY_MAX];
	char **names = NULL, *nn;
	uint32_t acct = 0, id = 0, dst, *ids = NULL;
	size_t kl, n = 0, i, fl = strlen(c->name), tl = strlen(c->to);
	int r;

	if ((r = st_mbox_account(s, txn, c, &acct)) != 0)
		return r;
	if ((r = st_mbox_find(s, txn, acct, c->name, &id)) != 0)
		return r;
	r = st_mbox_find(s, txn, acct, c->to, &dst);
	if (r == 0)
		return st_fail(s, STORE_EEXISTS, "target mailbox exists");
	if (r != STORE_ENOTFOUND)
		return r;
	if ((r = st_mbox_parents(s, txn, acct, c->to)) != 0)
		return r;
	if (strcmp(c->name, "INBOX") == 0) {
		/* RFC 3501 6.3.5: move INBOX's messages, INBOX stays. */
		if ((r = st_mbox_create(s, txn, acct, c->to, 0, 0,
		    &dst)) != 0)
			return r;
		if ((r = st_mbox_load(s, txn, id, &src)) != 0)
			return r;
		return st_msg_move_all(s, txn, id, dst);
	}
	/* The mailbox and its children, collected first, renamed after. */
	kl = st_mbox_key(k, acct, c->name);
	k[kl++] = '/';
	if ((r = st_cursor_open(s, SDB_MAILBOXES, txn, &cur)) != 0)
		return r;
	r = st_cursor_get(&cur, k, kl, DB_SET_RANGE);
	while (r == 0 && cur.k.size >= kl && memcmp(cur.k.data, k, kl) == 0) {
		names = xreallocarray(names, n + 1, sizeof(*names));
		ids = xreallocarray(ids, n + 1, sizeof(*ids));
		names[n] = xmemdup((uint8_t *)cur.k.data + 4, cur.k.size - 4);
		ids[n] = cur.v.size == 4 ? be32_get(cur.v.data) : 0;
		n++;
		r = st_cursor_get(&cur, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&cur);
	if (r != 0 && r != STORE_ENOTFOUND)
		goto out;
	r = st_mbox_rename_one(s, txn, acct, id, c->name, c->to);
	for (i = 0; i < n && r == 0; i++) {
		if (tl + strlen(names[i]) - fl > STORE_MAILBOX_NAME_MAX) {
			r = st_fail(s, STORE_EINVAL,
			    "renamed child name too long");
			break;
		}
		nn = xasprintf("%s%s", c->to, names[i] + fl);
		r = st_mbox_rename_one(s, txn, acct, ids[i], names[i], nn);
		free(nn);
	}
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(ids);
	return r;
}

int
store_mailbox_rename(struct store *s, const char *address, const char *from,
    const char *to, const char **error_r)
{
	struct mbox_ctx c;
	const char *err;
	size_t fl;
	int r;

	if ((r = st_mbox_args(&c, address, from, error_r)) != 0)
		return r;
	if ((r = st_mailbox_name_norm(to, c.to, sizeof(c.to), &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	fl = strlen(c.name);
	if (strcmp(c.to, "INBOX") == 0 || strcmp(c.name, c.to) == 0 ||
	    (strncmp(c.to, c.name, fl) == 0 && c.to[fl] == '/')) {
		if (error_r != NULL)
			*error_r = "cannot rename a mailbox to that name";
		return STORE_EINVAL;
	}
	return st_txn_run(s, ST_TXN_WRITE, st_mailbox_rename_fn, &c, error_r);
}

static int
st_mailbox_subscribe_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct mbox_ctx *c = arg;
	struct mbox_rec m;
	uint32_t acct = 0, id = 0;
	int r;

	if ((r = st_mbox_account(s, txn, c, &acct)) != 0)
		return r;
	if ((r = st_mbox_find(s, txn, acct, c->name, &id)) != 0)
		return r;
	if ((r = st_mbox_load(s, txn, id, &m)) != 0)
		return r;
	if (m.subscribed == (c->flag ? 1 : 0))
		return 0;
	m.subscribed = c->flag ? 1 : 0;
	return st_mbox_save(s, txn, id, &m);
}

int
store_mailbox_subscribe(struct store *s, const char *address,
    const char *name, int subscribed, const char **error_r)
{
	struct mbox_ctx c;
	int r;

	if ((r = st_mbox_args(&c, address, name, error_r)) != 0)
		return r;
	c.flag = subscribed;
	return st_txn_run(s, ST_TXN_WRITE, st_mailbox_subscribe_fn, &c,
	    error_r);
}

static int
st_mailbox_get_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct mbox_ctx *c = arg;
	struct mbox_rec m;
	uint32_t acct = 0, id = 0;
	int r;

	if ((r = st_mbox_account(s, txn, c, &acct)) != 0)
		return r;
	if ((r = st_mbox_find(s, txn, acct, c->name, &id)) != 0)
		return r;
	if ((r = st_mbox_load(s, txn, id, &m)) != 0)
		return r;
	st_mbox_info(&m, id, &c->info);
	return 0;
}

int
store_mailbox_get(struct store *s, const char *address, const char *name,
    struct store_mailbox_info *info_r, const char **error_r)
{
	struct mbox_ctx c;
	int r;

	if ((r = st_mbox_args(&c, address, name, error_r)) != 0)
		return r;
	r = st_txn_run(s, ST_TXN_READ, st_mailbox_get_fn, &c, error_r);
	if (r == 0)
		*info_r = c.info;
	return r;
}

static int
st_mailbox_get_id_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct mbox_ctx *c = arg;
	struct mbox_rec m;
	struct acct_rec a;
	int r;

	if ((r = st_mbox_load(s, txn, c->id, &m)) != 0)
		return r;
	st_mbox_info(&m, c->id, &c->info);
	if ((r = st_account_load_id(s, txn, m.account_id, &a)) != 0)
		return r == STORE_ENOTFOUND ? st_fail(s, STORE_EDAMAGED,
		    "mailbox without an account") : r;
	(void)str_copy(c->owner, sizeof(c->owner), a.address);
	acct_rec_clear(&a);
	return 0;
}

int
store_mailbox_get_id(struct store *s, uint32_t mailbox_id,
    struct store_mailbox_info *info_r, char *owner, const char **error_r)
{
	struct mbox_ctx c;
	int r;

	memset(&c, 0, sizeof(c));
	c.id = mailbox_id;
	r = st_txn_run(s, ST_TXN_READ, st_mailbox_get_id_fn, &c, error_r);
	if (r == 0) {
		*info_r = c.info;
		if (owner != NULL)
			(void)str_copy(owner, STORE_ADDRESS_MAX + 1, c.owner);
	}
	return r;
}

static int
st_mailbox_list_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct mbox_ctx *c = arg;
	struct st_cursor cur;
	struct mbox_rec m;
	uint32_t acct = 0, *ids = NULL;
	uint8_t k[4];
	size_t n = 0, i;
	int r;

	free(c->v);
	c->v = NULL;
	c->n = 0;
	if ((r = st_mbox_account(s, txn, c, &acct)) != 0)
		return r;
	be32_put(k, acct);
	if ((r = st_cursor_open(s, SDB_MAILBOXES, txn, &cur)) != 0)
		return r;
	r = st_cursor_get(&cur, k, 4, DB_SET_RANGE);
	while (r == 0 && cur.k.size >= 4 && memcmp(cur.k.data, k, 4) == 0) {
		if (cur.v.size == 4) {
			ids = xreallocarray(ids, n + 1, sizeof(*ids));
			ids[n++] = be32_get(cur.v.data);
		}
		r = st_cursor_get(&cur, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&cur);
	if (r != 0 && r != STORE_ENOTFOUND)
		goto out;
	r = 0;
	c->v = xcalloc(n > 0 ? n : 1, sizeof(*c->v));
	for (i = 0; i < n; i++) {
		if ((r = st_mbox_load(s, txn, ids[i], &m)) != 0)
			break;
		st_mbox_info(&m, ids[i], &c->v[c->n++]);
	}
out:
	free(ids);
	return r;
}

int
store_mailbox_list(struct store *s, const char *address,
    int (*cb)(const struct store_mailbox_info *, void *), void *ctx,
    const char **error_r)
{
	struct mbox_ctx *c;
	size_t i;
	int r;

	/* The context holds whole infos: keep it off the stack. */
	c = xmalloc(sizeof(*c));
	if ((r = st_mbox_args(c, address, NULL, error_r)) != 0) {
		free(c);
		return r;
	}
	r = st_txn_run(s, ST_TXN_READ, st_mailbox_list_fn, c, error_r);
	for (i = 0; r == 0 && i < c->n; i++)
		if (cb(&c->v[i], ctx) != 0)
			break;
	free(c->v);
	free(c);
	return r;
}

static int
st_take_recent_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct mbox_ctx *c = arg;
	struct mbox_rec m;
	int r;

	if ((r = st_mbox_load(s, txn, c->id, &m)) != 0)
		return r;
	c->first_recent = m.recent_uid;
	if (m.recent_uid == m.uidnext && m.recent == 0)
		return 0;
	m.recent_uid = m.uidnext;
	m.recent = 0;
	return st_mbox_save(s, txn, c->id, &m);
}

int
store_mailbox_take_recent(struct store *s, uint32_t mailbox_id,
    uint32_t *first_recent_uid_r, const char **error_r)
{
	struct mbox_ctx c;
	int r;

	memset(&c, 0, sizeof(c));
	c.id = mailbox_id;
	/* \Recent is advisory: a crash may hand it out again. */
	r = st_txn_run(s, ST_TXN_WRITE | ST_TXN_NOSYNC, st_take_recent_fn, &c,
	    error_r);
	if (r == 0)
		*first_recent_uid_r = c.first_recent;
	return r;
}

static int
st_mailbox_keywords_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct mbox_ctx *c = arg;
	struct mbox_rec m;
	int r;

	store_keywords_free(c->kw);
	if ((r = st_mbox_load(s, txn, c->id, &m)) != 0)
		return r;
	return st_kw_load(s, txn, c->id, c->kw);
}

int
store_mailbox_keywords(struct store *s, uint32_t mailbox_id,
    char *names[STORE_KEYWORDS_MAX], const char **error_r)
{
	struct mbox_ctx *c;
	int r;

	memset(names, 0, sizeof(char *) * STORE_KEYWORDS_MAX);
	c = xcalloc(1, sizeof(*c));
	c->id = mailbox_id;
	r = st_txn_run(s, ST_TXN_READ, st_mailbox_keywords_fn, c, error_r);
	if (r == 0)
		memcpy(names, c->kw, sizeof(c->kw));
	else
		store_keywords_free(c->kw);
	free(c);
	return r;
}
