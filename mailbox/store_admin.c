/*
 * store_admin.c - administration of the store: the consistency check (and
 * repair), statistics, hot backup and restore.
 *
 * Runs in govmailctl (check, stats, backup, restore) and the tests.  Trusts
 * the operator's arguments (a backup folder); reads every record of the
 * store and treats each as possibly damaged.
 */
#include "autoconf.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <db.h>
#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "xmalloc.h"
#include "mailbox_priv.h"

/* Problems reported in detail; past this only the count goes on. */
#define ST_CHECK_REPORT_MAX 1000
/* Copy buffer of backup/restore. */
#define ST_COPY_BUF 65536

struct chk_mbox {
	uint32_t id;
	struct mbox_rec rec;
	uint32_t messages, unseen, recent, max_uid;
	uint64_t size, max_modseq;
	int account_ok;
};

struct chk_blob {
	uint8_t key[STORE_BLOB_KEY_LEN];
	struct blob_rec rec;
	uint64_t refs;
	int missing;		/* a chunk is missing (already reported) */
};

struct chk_ctx {
	int repair, contents;
	char **problems;
	size_t nproblems;
	uint64_t count;
	struct chk_mbox *mb;
	size_t nmb, amb;
	struct chk_blob *bl;
	size_t nbl, abl;
};

/* What an account's mailboxes hold, summed (pass 6). */
struct chk_usage {
	uint32_t account_id;
	uint64_t bytes, messages;
};

static void
chk_reset(struct chk_ctx *c)
{
	size_t i;

	for (i = 0; i < c->nproblems; i++)
		free(c->problems[i]);
	free(c->problems);
	free(c->mb);
	free(c->bl);
	c->problems = NULL;
	c->nproblems = 0;
	c->count = 0;
	c->mb = NULL;
	c->nmb = c->amb = 0;
	c->bl = NULL;
	c->nbl = c->abl = 0;
}

static void chk_note(struct chk_ctx *c, int mended, const char *fmt,
    va_list ap) __attribute__((format(printf, 3, 0)));
static void chk_problem(struct chk_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void chk_damage(struct chk_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Note a problem; the first byte of the kept text says whether repair
 * mends it ('1') or not ('0'). */
static void
chk_note(struct chk_ctx *c, int mended, const char *fmt, va_list ap)
{
	char text[256];

	c->count++;
	if (c->nproblems >= ST_CHECK_REPORT_MAX)
		return;
	text[0] = mended ? '1' : '0';
	(void)vsnprintf(text + 1, sizeof(text) - 1, fmt, ap);
	c->problems = xreallocarray(c->problems, c->nproblems + 1,
	    sizeof(*c->problems));
	c->problems[c->nproblems++] = xstrdup(text);
}

/* A problem --repair mends. */
static void
chk_problem(struct chk_ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	chk_note(c, c->repair, fmt, ap);
	va_end(ap);
}

/* A problem no repair can mend (lost or damaged contents). */
static void
chk_damage(struct chk_ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	chk_note(c, 0, fmt, ap);
	va_end(ap);
}

static struct chk_mbox *
chk_mbox_find(struct chk_ctx *c, uint32_t id)
{
	size_t lo = 0, hi = c->nmb, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (c->mb[mid].id == id)
			return &c->mb[mid];
		if (c->mb[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct chk_blob *
chk_blob_find(struct chk_ctx *c, const uint8_t *key)
{
	size_t lo = 0, hi = c->nbl, mid;
	int d;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		d = memcmp(c->bl[mid].key, key, STORE_BLOB_KEY_LEN);
		if (d == 0)
			return &c->bl[mid];
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void
chk_hex(const uint8_t *key, char out[17])
{
	(void)sodium_bin2hex(out, 17, key, 8);
}

/* Pass 1: mailboxes and blobs into memory, sorted by key. */
static int
chk_load(struct store *s, DB_TXN *txn, struct chk_ctx *c)
{
	struct st_cursor cur;
	struct chk_mbox *m;
	struct chk_blob *b;
	char hex[17];
	int r;

	if ((r = st_cursor_open(s, SDB_MBOX_BY_ID, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (cur.k.size != 4) {
			chk_problem(c, "mailbox record with a bad key");
			continue;
		}
		if (c->nmb == c->amb) {
			c->amb = c->amb == 0 ? 1024 : c->amb * 2;
			c->mb = xreallocarray(c->mb, c->amb, sizeof(*c->mb));
		}
		m = &c->mb[c->nmb];
		memset(m, 0, sizeof(*m));
		m->id = be32_get(cur.k.data);
		if (mbox_rec_decode(cur.v.data, cur.v.size, &m->rec) != 0) {
			chk_problem(c, "mailbox %u: damaged record", m->id);
			continue;
		}
		c->nmb++;
	}
	st_cursor_close(&cur);
	if (r != STORE_ENOTFOUND)
		return r;
	if ((r = st_cursor_open(s, SDB_BLOBS, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (cur.k.size != STORE_BLOB_KEY_LEN) {
			chk_problem(c, "blob record with a bad key");
			continue;
		}
		if (c->nbl == c->abl) {
			c->abl = c->abl == 0 ? 1024 : c->abl * 2;
			c->bl = xreallocarray(c->bl, c->abl, sizeof(*c->bl));
		}
		b = &c->bl[c->nbl];
		memset(b, 0, sizeof(*b));
		memcpy(b->key, cur.k.data, STORE_BLOB_KEY_LEN);
		if (blob_rec_decode(cur.v.data, cur.v.size, &b->rec) != 0) {
			chk_hex(b->key, hex);
			chk_problem(c, "blob %s: damaged record", hex);
			continue;
		}
		c->nbl++;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

/* Pass 2: every index record points at a mailbox and a blob. */
static int
chk_messages(struct store *s, DB_TXN *txn, struct chk_ctx *c)
{
	struct st_cursor cur;
	struct store_msg msg;
	struct chk_mbox *m;
	struct chk_blob *b;
	char hex[17];
	uint32_t mid, uid;
	int r, bad;

	if ((r = st_cursor_open(s, SDB_MESSAGES, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		bad = 0;
		if (cur.k.size != 8)
			bad = 1;
		mid = bad ? 0 : be32_get(cur.k.data);
		uid = bad ? 0 : be32_get((uint8_t *)cur.k.data + 4);
		if (bad || msg_rec_decode(cur.v.data, cur.v.size, uid,
		    &msg) != 0) {
			chk_problem(c, "damaged message record");
			bad = 1;
		} else if ((m = chk_mbox_find(c, mid)) == NULL) {
			chk_problem(c, "message %u/%u in a missing mailbox",
			    mid, uid);
			bad = 1;
		} else if ((b = chk_blob_find(c, msg.blob)) == NULL) {
			chk_hex(msg.blob, hex);
			chk_problem(c, "message %u/%u: missing blob %s", mid,
			    uid, hex);
			bad = 1;
		} else {
			b->refs++;
			m->messages++;
			if (!(msg.flags & STORE_FLAG_SEEN))
				m->unseen++;
			if (uid >= m->rec.recent_uid)
				m->recent++;
			m->size += msg.size;
			if (uid > m->max_uid)
				m->max_uid = uid;
			if (msg.modseq > m->max_modseq)
				m->max_modseq = msg.modseq;
		}
		if (bad && c->repair && (r = st_cursor_del(&cur)) != 0)
			break;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

/* Pass 3: mailbox counters, their index entry and their account. */
static int
chk_mailboxes(struct store *s, DB_TXN *txn, struct chk_ctx *c)
{
	struct chk_mbox *m;
	struct st_val v;
	uint8_t k[4 + STORE_MAILBOX_NAME_MAX];
	size_t i, nl;
	int r, fix;

	for (i = 0; i < c->nmb; i++) {
		m = &c->mb[i];
		be32_put(k, m->rec.account_id);
		r = st_exists(s, SDB_ACCT_IDS, txn, k, 4);
		if (r != 0 && r != STORE_ENOTFOUND)
			return r;
		m->account_ok = r == 0;
		if (!m->account_ok)
			chk_problem(c, "mailbox %u belongs to no account",
			    m->id);
		nl = strlen(m->rec.name);
		memcpy(k + 4, m->rec.name, nl);
		r = st_get(s, SDB_MAILBOXES, txn, k, 4 + nl, &v);
		if (r != 0 && r != STORE_ENOTFOUND)
			return r;
		if (r == STORE_ENOTFOUND || v.len != 4 ||
		    be32_get(v.data) != m->id) {
			chk_problem(c, "mailbox %u: name index wrong", m->id);
			if (c->repair && (r = st_put(s, SDB_MAILBOXES, txn, k,
			    4 + nl, (uint8_t[4]){ (uint8_t)(m->id >> 24),
			    (uint8_t)(m->id >> 16), (uint8_t)(m->id >> 8),
			    (uint8_t)m->id }, 4, 0)) != 0) {
				free(v.data);
				return r;
			}
		}
		free(v.data);
		fix = 0;
		if (m->messages != m->rec.messages ||
		    m->unseen != m->rec.unseen || m->size != m->rec.size ||
		    m->recent != m->rec.recent) {
			chk_problem(c, "mailbox %u: counters %u/%u/%llu "
			    "recorded, %u/%u/%llu found", m->id,
			    m->rec.messages, m->rec.unseen,
			    (unsigned long long)m->rec.size, m->messages,
			    m->unseen, (unsigned long long)m->size);
			fix = 1;
		}
		if (m->max_uid >= m->rec.uidnext) {
			chk_problem(c, "mailbox %u: UID %u >= UIDNEXT %u",
			    m->id, m->max_uid, m->rec.uidnext);
			fix = 1;
		}
		if (m->max_modseq > m->rec.highestmodseq) {
			chk_problem(c, "mailbox %u: modseq above "
			    "HIGHESTMODSEQ", m->id);
			fix = 1;
		}
		if (fix && c->repair) {
			m->rec.messages = m->messages;
			m->rec.unseen = m->unseen;
			m->rec.size = m->size;
			m->rec.recent = m->recent;
			if (m->max_uid >= m->rec.uidnext)
				m->rec.uidnext = m->max_uid + 1;
			if (m->max_modseq > m->rec.highestmodseq)
				m->rec.highestmodseq = m->max_modseq;
			if ((r = st_mbox_save(s, txn, m->id, &m->rec)) != 0)
				return r;
		}
	}
	return 0;
}

/* Pass 4: reference counts and chunks of every blob. */
static int
chk_blobs(struct store *s, DB_TXN *txn, struct chk_ctx *c)
{
	struct chk_blob *b;
	uint8_t ck[STORE_BLOB_KEY_LEN + 4], rec[BLOB_REC_LEN];
	char hex[17];
	size_t i;
	uint32_t n;
	int r;

	for (i = 0; i < c->nbl; i++) {
		b = &c->bl[i];
		chk_hex(b->key, hex);
		for (n = 0; n < b->rec.nchunks; n++) {
			memcpy(ck, b->key, STORE_BLOB_KEY_LEN);
			be32_put(ck + STORE_BLOB_KEY_LEN, n);
			r = st_exists(s, SDB_CHUNKS, txn, ck, sizeof(ck));
			if (r == STORE_ENOTFOUND) {
				chk_damage(c, "blob %s: chunk %u missing",
				    hex, n);
				b->missing = 1;
				break;
			}
			if (r != 0)
				return r;
		}
		if (b->refs == b->rec.refcount)
			continue;
		chk_problem(c, "blob %s: reference count %llu, %llu "
		    "references found", hex,
		    (unsigned long long)b->rec.refcount,
		    (unsigned long long)b->refs);
		if (!c->repair)
			continue;
		if (b->refs == 0) {
			b->rec.refcount = 1;
			blob_rec_encode(&b->rec, rec);
			if ((r = st_put(s, SDB_BLOBS, txn, b->key,
			    STORE_BLOB_KEY_LEN, rec, sizeof(rec), 0)) != 0)
				return r;
			if ((r = st_blob_ref(s, txn, b->key, -1)) != 0)
				return r;
			continue;
		}
		b->rec.refcount = b->refs;
		blob_rec_encode(&b->rec, rec);
		if ((r = st_put(s, SDB_BLOBS, txn, b->key, STORE_BLOB_KEY_LEN,
		    rec, sizeof(rec), 0)) != 0)
			return r;
	}
	return 0;
}

/* Pass 5: chunks and metadata that belong to no blob. */
static int
chk_orphans(struct store *s, DB_TXN *txn, struct chk_ctx *c, int dbi,
    int chunks)
{
	struct st_cursor cur;
	struct chk_blob *b;
	char hex[17];
	int r, orphan;

	if ((r = st_cursor_open(s, dbi, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		orphan = cur.k.size < STORE_BLOB_KEY_LEN;
		b = orphan ? NULL : chk_blob_find(c, cur.k.data);
		if (b == NULL)
			orphan = 1;
		else if (chunks && (cur.k.size !=
		    STORE_BLOB_KEY_LEN + 4 || be32_get((uint8_t *)cur.k.data +
		    STORE_BLOB_KEY_LEN) >= b->rec.nchunks))
			orphan = 1;
		if (!orphan)
			continue;
		if (cur.k.size >= STORE_BLOB_KEY_LEN)
			chk_hex(cur.k.data, hex);
		else
			(void)str_copy(hex, sizeof(hex), "?");
		chk_problem(c, "%s of no blob (%s)", chunks ?
		    "chunk" : "metadata", hex);
		if (c->repair && (r = st_cursor_del(&cur)) != 0)
			break;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

static int
chk_usage_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct chk_usage *)a)->account_id;
	uint32_t y = ((const struct chk_usage *)b)->account_id;

	return x < y ? -1 : x > y;
}

/* Per account, the sums over its mailboxes, sorted; *n_r entries. */
static struct chk_usage *
chk_usage_sums(const struct chk_ctx *c, size_t *n_r)
{
	struct chk_usage *u;
	size_t i, n = 0;

	u = xcalloc(c->nmb > 0 ? c->nmb : 1, sizeof(*u));
	for (i = 0; i < c->nmb; i++) {
		u[i].account_id = c->mb[i].rec.account_id;
		u[i].bytes = c->mb[i].size;
		u[i].messages = c->mb[i].messages;
	}
	qsort(u, c->nmb, sizeof(*u), chk_usage_cmp);
	for (i = 0; i < c->nmb; i++) {
		if (n > 0 && u[n - 1].account_id == u[i].account_id) {
			u[n - 1].bytes += u[i].bytes;
			u[n - 1].messages += u[i].messages;
		} else
			u[n++] = u[i];
	}
	*n_r = n;
	return u;
}

/* Pass 6: every account's usage equals the sum over its mailboxes. */
static int
chk_usage(struct store *s, DB_TXN *txn, struct chk_ctx *c)
{
	struct st_cursor cur;
	struct chk_usage key, *sums, *found;
	uint64_t bytes, msgs, ub, um;
	uint32_t id;
	uint8_t v[STORE_USAGE_REC_LEN];
	size_t nsums;
	int r;

	sums = chk_usage_sums(c, &nsums);
	if ((r = st_cursor_open(s, SDB_ACCT_IDS, txn, &cur)) != 0) {
		free(sums);
		return r;
	}
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (cur.k.size != 4)
			continue;
		id = be32_get(cur.k.data);
		key.account_id = id;
		found = bsearch(&key, sums, nsums, sizeof(*sums),
		    chk_usage_cmp);
		bytes = found != NULL ? found->bytes : 0;
		msgs = found != NULL ? found->messages : 0;
		if ((r = st_usage_get(s, txn, id, &ub, &um)) != 0)
			break;
		if (ub == bytes && um == msgs)
			continue;
		chk_problem(c, "account %u: usage %llu bytes/%llu messages "
		    "recorded, %llu/%llu found", id, (unsigned long long)ub,
		    (unsigned long long)um, (unsigned long long)bytes,
		    (unsigned long long)msgs);
		if (c->repair) {
			st_usage_encode(v, bytes, msgs);
			if ((r = st_put(s, SDB_USAGE, txn, cur.k.data, 4, v,
			    sizeof(v), 0)) != 0)
				break;
		}
	}
	st_cursor_close(&cur);
	free(sums);
	return r == STORE_ENOTFOUND ? 0 : r;
}

/* Pass 7: the outbound queue's entries are well formed. */
static int
chk_queue(struct store *s, DB_TXN *txn, struct chk_ctx *c)
{
	struct st_cursor cur;
	char id[STORE_QUEUE_ID_MAX + 1];
	int r;

	if ((r = st_cursor_open(s, SDB_QUEUE, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (cur.k.size > 0 && cur.k.size <= STORE_QUEUE_ID_MAX &&
		    st_queue_rec_ok(cur.v.data, cur.v.size))
			continue;
		(void)snprintf(id, sizeof(id), "%.*s", (int)(cur.k.size >
		    STORE_QUEUE_ID_MAX ? STORE_QUEUE_ID_MAX : cur.k.size),
		    (const char *)cur.k.data);
		chk_problem(c, "queue entry %s: malformed", id);
		if (c->repair && (r = st_cursor_del(&cur)) != 0)
			break;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

static int
chk_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Pass 8: the notice report's recipient records belong to a notice. */
static int
chk_notices(struct store *s, DB_TXN *txn, struct chk_ctx *c)
{
	static const int tables[] = { SDB_NOTICE_OK, SDB_NOTICE_FAIL };
	struct st_cursor cur;
	uint32_t *nums = NULL, num;
	size_t n = 0, cap = 0, t;
	int r;

	if ((r = st_cursor_open(s, SDB_NOTICES, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (st_notice_num(cur.v.data, cur.v.size, &num) != 0) {
			chk_problem(c, "notice %.*s: damaged record",
			    (int)(cur.k.size > 80 ? 80 : cur.k.size),
			    (const char *)cur.k.data);
			continue;
		}
		if (n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			nums = xreallocarray(nums, cap, sizeof(*nums));
		}
		nums[n++] = num;
	}
	st_cursor_close(&cur);
	if (r != STORE_ENOTFOUND) {
		free(nums);
		return r;
	}
	if (n > 1)
		qsort(nums, n, sizeof(*nums), chk_u32_cmp);
	r = 0;
	for (t = 0; t < 2 && r == 0; t++) {
		if ((r = st_cursor_open(s, tables[t], txn, &cur)) != 0)
			break;
		while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
			if (cur.k.size >= 4) {
				num = be32_get(cur.k.data);
				if (bsearch(&num, nums, n, sizeof(*nums),
				    chk_u32_cmp) != NULL)
					continue;
			}
			chk_problem(c, "notice report: a %s record of no "
			    "notice", t == 0 ? "delivered" : "failed");
			if (c->repair && (r = st_cursor_del(&cur)) != 0)
				break;
		}
		st_cursor_close(&cur);
		if (r == STORE_ENOTFOUND)
			r = 0;
	}
	free(nums);
	return r;
}

/*
 * Pass 9: every de-duplication record has its expiry entry and every
 * expiry entry its record (store_maintain finds them by expiry).
 */
static int
chk_dedup(struct store *s, DB_TXN *txn, struct chk_ctx *c)
{
	struct st_cursor cur;
	struct st_val v;
	struct buf k;
	int r;

	buf_init(&k, BUF_UNBOUNDED);
	if ((r = st_cursor_open(s, SDB_DEDUP, txn, &cur)) != 0) {
		buf_free(&k);
		return r;
	}
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (cur.v.size < 8) {
			chk_problem(c, "submission record: damaged");
			if (c->repair && (r = st_cursor_del(&cur)) != 0)
				break;
			continue;
		}
		buf_reset(&k);
		buf_append(&k, cur.v.data, 8);
		buf_append(&k, cur.k.data, cur.k.size);
		r = st_exists(s, SDB_DEDUP_EXP, txn, k.data, k.len);
		if (r == 0)
			continue;
		if (r != STORE_ENOTFOUND)
			break;
		r = 0;
		chk_problem(c, "submission record without its expiry entry");
		if (c->repair && (r = st_put(s, SDB_DEDUP_EXP, txn, k.data,
		    k.len, "", 0, 0)) != 0)
			break;
	}
	st_cursor_close(&cur);
	buf_free(&k);
	if (r != STORE_ENOTFOUND && r != 0)
		return r;
	if ((r = st_cursor_open(s, SDB_DEDUP_EXP, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		int orphan = cur.k.size <= 8;

		if (!orphan) {
			r = st_get(s, SDB_DEDUP, txn,
			    (const uint8_t *)cur.k.data + 8, cur.k.size - 8,
			    &v);
			if (r != 0 && r != STORE_ENOTFOUND)
				break;
			orphan = r != 0 || v.len < 8 ||
			    memcmp(v.data, cur.k.data, 8) != 0;
			if (r == 0)
				free(v.data);
			r = 0;
		}
		if (!orphan)
			continue;
		chk_problem(c, "submission expiry entry of no record");
		if (c->repair && (r = st_cursor_del(&cur)) != 0)
			break;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

static int
st_check_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct chk_ctx *c = arg;
	int repair = c->repair, contents = c->contents, r, p;

	chk_reset(c);
	c->repair = repair;
	c->contents = contents;
	if ((r = chk_load(s, txn, c)) != 0 ||
	    (r = chk_messages(s, txn, c)) != 0 ||
	    (r = chk_mailboxes(s, txn, c)) != 0 ||
	    (r = chk_blobs(s, txn, c)) != 0 ||
	    (r = chk_orphans(s, txn, c, SDB_CHUNKS, 1)) != 0 ||
	    (r = chk_orphans(s, txn, c, SDB_META, 0)) != 0 ||
	    (r = chk_usage(s, txn, c)) != 0 ||
	    (r = chk_queue(s, txn, c)) != 0 ||
	    (r = chk_notices(s, txn, c)) != 0 ||
	    (r = chk_dedup(s, txn, c)) != 0)
		return r;
	for (p = 0; p < STORE_PARTS; p++)
		if ((r = chk_orphans(s, txn, c, SDB_PART(SDB_CHUNKS, p),
		    1)) != 0 ||
		    (r = chk_orphans(s, txn, c, SDB_PART(SDB_META, p),
		    0)) != 0)
			return r;
	return 0;
}

/* check --contents: blobs [from, to) of c->bl, in one read transaction. */
struct chk_slice {
	struct chk_ctx *c;
	size_t from, to;
	size_t nproblems;	/* c's notes before this slice */
	uint64_t count;
};

static int
st_check_contents_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct chk_slice *sl = arg;
	struct chk_ctx *c = sl->c;
	struct blob_rec rec;
	struct st_val v;
	struct chk_blob *b;
	char hex[17];
	size_t i;
	int r, bad;

	/* A retried transaction notes its problems again. */
	while (c->nproblems > sl->nproblems)
		free(c->problems[--c->nproblems]);
	c->count = sl->count;
	for (i = sl->from; i < sl->to; i++) {
		b = &c->bl[i];
		if (b->missing)
			continue;
		/* Afresh: it may have gone, or changed, since pass 1. */
		r = st_get(s, SDB_BLOBS, txn, b->key, STORE_BLOB_KEY_LEN, &v);
		if (r == STORE_ENOTFOUND)
			continue;
		if (r != 0)
			return r;
		bad = blob_rec_decode(v.data, v.len, &rec) != 0;
		free(v.data);
		if (bad)
			continue;	/* reported by pass 1 */
		r = st_blob_verify(s, txn, b->key, &rec);
		if (r == STORE_EDAMAGED || r == STORE_EINVAL) {
			chk_hex(b->key, hex);
			chk_damage(c, "blob %s: %s", hex, s->err);
		} else if (r != 0)
			return r;
	}
	return 0;
}

/* check --contents: every blob read back, in short read transactions. */
static int
chk_contents(struct store *s, struct chk_ctx *c, const char **error_r)
{
	struct chk_slice sl;
	size_t i;
	int r;

	sl.c = c;
	for (i = 0; i < c->nbl; i += ST_CHECK_CONTENTS_SLICE) {
		sl.from = i;
		sl.to = c->nbl - i < ST_CHECK_CONTENTS_SLICE ? c->nbl :
		    i + ST_CHECK_CONTENTS_SLICE;
		sl.nproblems = c->nproblems;
		sl.count = c->count;
		r = st_txn_run(s, ST_TXN_READ | ST_TXN_LONG,
		    st_check_contents_fn, &sl, error_r);
		if (r != 0)
			return r;
	}
	return 0;
}

int
store_check(struct store *s, unsigned flags,
    void (*report)(const char *, int, void *), void *ctx,
    const char **error_r)
{
	struct chk_ctx c;
	char more[64];
	size_t i;
	int r, repair = (flags & STORE_CHECK_REPAIR) != 0;

	memset(&c, 0, sizeof(c));
	c.repair = repair;
	c.contents = (flags & STORE_CHECK_CONTENTS) != 0;
	r = st_txn_run(s, (repair ? ST_TXN_WRITE : ST_TXN_READ) | ST_TXN_LONG,
	    st_check_fn, &c, error_r);
	if (r == 0 && c.contents)
		r = chk_contents(s, &c, error_r);
	if (r == 0 && c.count > 0) {
		for (i = 0; report != NULL && i < c.nproblems; i++)
			report(c.problems[i] + 1, c.problems[i][0] == '1',
			    ctx);
		if (report != NULL && c.count > c.nproblems) {
			(void)snprintf(more, sizeof(more), "%llu more problems",
			    (unsigned long long)(c.count - c.nproblems));
			report(more, 0, ctx);
		}
		r = STORE_EDAMAGED;
		if (error_r != NULL)
			*error_r = repair ? "damage found and repaired" :
			    "damage found";
	}
	chk_reset(&c);
	return r;
}

/* ---- statistics ---- */

struct stats_ctx {
	struct store_stats st;
};

static int
st_db_count(struct store *s, DB_TXN *txn, int dbi, uint64_t *keys_r)
{
	DB_BTREE_STAT *sp = NULL;
	int ret;

	ret = s->db[dbi]->stat(s->db[dbi], txn, &sp, 0);
	if (ret != 0)
		return st_dberr(s, ret, "stat");
	*keys_r = sp->bt_nkeys;
	free(sp);
	return 0;
}

static int
st_stats_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct stats_ctx *c = arg;
	struct st_cursor cur;
	struct blob_rec b;
	uint64_t n;
	int r, p;

	memset(&c->st, 0, sizeof(c->st));
	if ((r = st_db_count(s, txn, SDB_DOMAINS, &c->st.domains)) != 0 ||
	    (r = st_db_count(s, txn, SDB_ACCOUNTS, &c->st.accounts)) != 0 ||
	    (r = st_db_count(s, txn, SDB_ALIASES, &c->st.aliases)) != 0 ||
	    (r = st_db_count(s, txn, SDB_LISTS, &c->st.lists)) != 0 ||
	    (r = st_db_count(s, txn, SDB_MBOX_BY_ID, &c->st.mailboxes)) != 0 ||
	    (r = st_db_count(s, txn, SDB_MESSAGES, &c->st.messages)) != 0 ||
	    (r = st_db_count(s, txn, SDB_CHUNKS, &c->st.chunks)) != 0 ||
	    (r = st_db_count(s, txn, SDB_QUEUE, &c->st.queued)) != 0 ||
	    (r = st_db_count(s, txn, SDB_NOTICES, &c->st.notices)) != 0 ||
	    (r = st_db_count(s, txn, SDB_DEDUP, &c->st.dedup)) != 0)
		return r;
	for (p = 0; p < STORE_PARTS; p++) {
		if ((r = st_db_count(s, txn, SDB_PART(SDB_CHUNKS, p),
		    &n)) != 0)
			return r;
		c->st.chunks += n;
	}
	if ((r = st_cursor_open(s, SDB_BLOBS, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		c->st.blobs++;
		if (blob_rec_decode(cur.v.data, cur.v.size, &b) == 0)
			c->st.blob_bytes += b.size;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
store_stats(struct store *s, struct store_stats *stats_r,
    const char **error_r)
{
	struct stats_ctx c;
	struct dirent *de;
	struct stat sb;
	char **list = NULL, **p, path[4096];
	DIR *d;
	int r;

	memset(stats_r, 0, sizeof(*stats_r));
	r = st_txn_run(s, ST_TXN_READ | ST_TXN_LONG, st_stats_fn, &c,
	    error_r);
	if (r != 0)
		return r;
	if (s->env->log_archive(s->env, &list, DB_ARCH_LOG) == 0 &&
	    list != NULL) {
		for (p = list; *p != NULL; p++)
			c.st.log_files++;
		free(list);
	}
	if ((d = opendir(s->path)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (snprintf(path, sizeof(path), "%s/%s", s->path,
			    de->d_name) >= (int)sizeof(path))
				continue;
			if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
				c.st.env_bytes += (uint64_t)sb.st_size;
		}
		(void)closedir(d);
	}
	*stats_r = c.st;
	return 0;
}

/* ---- backup and restore ---- */

static int
st_copy_file(const char *from, const char *to)
{
	uint8_t *buf;
	ssize_t n;
	int in, out, r = -1;

	if ((in = open(from, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out == -1) {
		(void)close(in);
		return -1;
	}
	buf = xmalloc(ST_COPY_BUF);
	for (;;) {
		n = read(in, buf, ST_COPY_BUF);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n == 0 ? 0 : -1;
			break;
		}
		if (write(out, buf, (size_t)n) != n)
			break;
	}
	if (r == 0 && fsync(out) == -1)
		r = -1;
	sodium_memzero(buf, ST_COPY_BUF);
	free(buf);
	(void)close(in);
	if (close(out) == -1)
		r = -1;
	return r;
}

/* 1 if dir is missing or holds nothing but "." and "..", 0 if not. */
static int
st_dir_empty(const char *dir)
{
	struct dirent *de;
	DIR *d;
	int empty = 1;

	if ((d = opendir(dir)) == NULL)
		return errno == ENOENT;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0) {
			empty = 0;
			break;
		}
	(void)closedir(d);
	return empty;
}

int
store_backup(struct store *s, const char *dir, const char **error_r)
{
	char *to;
	int ret;

	if (!st_dir_empty(dir)) {
		if (error_r != NULL)
			*error_r = "backup folder exists and is not empty";
		return STORE_EEXISTS;
	}
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		log_warn("store: mkdir %s", dir);
		if (error_r != NULL)
			*error_r = "cannot create the backup folder";
		return STORE_ETEMP;
	}
	(void)s->env->txn_checkpoint(s->env, 0, 0, 0);
	/* db_hotbackup's way: databases first, then the logs after them. */
	ret = s->env->backup(s->env, dir, DB_BACKUP_SINGLE_DIR);
	if (ret != 0) {
		log_warnx("store: backup to %s: %s", dir, db_strerror(ret));
		if (error_r != NULL)
			*error_r = db_strerror(ret);
		return STORE_ETEMP;
	}
	/*
	 * The ID hash key goes with the backup (resident look-ups need it).
	 * SECURITY: the encryption key ([store] key_file) does not: a stolen
	 * backup must read nothing.  Keep that key apart.
	 */
	if (access(s->id_key_path, F_OK) == 0) {
		to = xasprintf("%s/id.key", dir);
		if (st_copy_file(s->id_key_path, to) == -1) {
			log_warn("store: backup id key to %s", to);
			free(to);
			if (error_r != NULL)
				*error_r = "cannot copy the ID hash key";
			return STORE_ETEMP;
		}
		free(to);
	}
	return 0;
}

int
store_restore(const struct config *cfg, const char *dir, const char **error_r)
{
	struct dirent *de;
	struct stat sb;
	DB_ENV *env;
	const char *path, *idkey;
	char *from, *to;
	DIR *d;
	int ret, r = 0;

	path = config_path_get(cfg, "store", "path");
	if (path[0] == '\0' || dir[0] == '\0') {
		if (error_r != NULL)
			*error_r = "no store path or backup folder";
		return STORE_EINVAL;
	}
	if (!st_dir_empty(path)) {
		if (error_r != NULL)
			*error_r = "store path is not empty: move the old "
			    "store away first";
		return STORE_EEXISTS;
	}
	if ((d = opendir(dir)) == NULL) {
		if (error_r != NULL)
			*error_r = "cannot read the backup folder";
		return STORE_ENOTFOUND;
	}
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		(void)closedir(d);
		if (error_r != NULL)
			*error_r = "cannot create the store folder";
		return STORE_ETEMP;
	}
	idkey = config_path_get(cfg, "store", "id_key_file");
	while (r == 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		from = xasprintf("%s/%s", dir, de->d_name);
		if (stat(from, &sb) == 0 && S_ISREG(sb.st_mode)) {
			if (strcmp(de->d_name, "id.key") == 0 &&
			    idkey[0] != '\0')
				to = xstrdup(idkey);
			else
				to = xasprintf("%s/%s", path, de->d_name);
			/* An ID key in place already is kept. */
			if ((strcmp(de->d_name, "id.key") != 0 ||
			    access(to, F_OK) != 0) &&
			    st_copy_file(from, to) == -1) {
				log_warn("store: restore %s", to);
				r = STORE_ETEMP;
			}
			free(to);
		}
		free(from);
	}
	(void)closedir(d);
	if (r != 0) {
		if (error_r != NULL)
			*error_r = "cannot copy the backup";
		return r;
	}
	/* Catastrophic recovery replays every log the backup holds. */
	if ((ret = db_env_create(&env, 0)) != 0) {
		if (error_r != NULL)
			*error_r = db_strerror(ret);
		return STORE_ETEMP;
	}
	ret = env->open(env, path, DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK |
	    DB_INIT_LOG | DB_INIT_MPOOL | DB_RECOVER_FATAL, 0600);
	if (ret != 0) {
		log_warnx("store: recovery of %s: %s", path, db_strerror(ret));
		(void)env->close(env, 0);
		if (error_r != NULL)
			*error_r = db_strerror(ret);
		return STORE_ETEMP;
	}
	(void)env->txn_checkpoint(env, 0, 0, 0);
	(void)env->close(env, 0);
	/*
	 * Everything is in the databases now: the regions this recovery
	 * made (files) go, and the first open makes them the way [store]
	 * regions asks, without recovering a second time.
	 */
	if (db_env_create(&env, 0) == 0)
		(void)env->remove(env, path, 0);
	if (error_r != NULL)
		*error_r = NULL;
	return 0;
}
