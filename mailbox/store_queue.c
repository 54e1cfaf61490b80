/*
 * store_queue.c - what a delivery records besides its index records, in
 * the same transaction: the outbound queue (smtpd's entries, opaque
 * here), submission de-duplication (account, Message-ID), and the hook
 * into the notice report (store_notice.c).  store_deliver_ex() is here.
 *
 * Run by govmail-smtpd (deliveries on helper threads, the delivery agent)
 * and govmailctl (queue list/flush, maintenance).  Queue bytes are the
 * caller's and only length-checked; ids and Message-IDs are checked to be
 * printable ASCII of bounded length before they become keys.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "log.h"
#include "xmalloc.h"
#include "mailbox_priv.h"

/* The running delivery transaction as queue_cb sees it. */
struct store_txn_queue {
	struct store *s;
	DB_TXN *txn;
	size_t nput;		/* entries added: the message was accepted */
};

/* 1 if text is 1..max bytes of printable ASCII without space. */
static int
st_token_ok(const char *text, size_t max)
{
	size_t i, len;

	if (text == NULL)
		return 0;
	len = strlen(text);
	if (len == 0 || len > max)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)text[i] <= 0x20 ||
		    (unsigned char)text[i] >= 0x7f)
			return 0;
	return 1;
}

/* ---- queue ---- */

/*
 * Value: u64 next_try, u16 summary length, the summary, the caller's
 * bytes.  next_try first, so that flush rewrites eight bytes.
 */
#define QUEUE_HEAD 10

int
st_queue_rec_ok(const uint8_t *v, size_t len)
{
	size_t sl;

	if (len < QUEUE_HEAD)
		return 0;
	sl = (size_t)v[8] << 8 | v[9];
	return sl <= STORE_QUEUE_SUMMARY_MAX && sl <= len - QUEUE_HEAD;
}

static int
st_queue_put(struct store *s, DB_TXN *txn, const struct store_queue_item *it)
{
	size_t sl = it->summary != NULL ? strlen(it->summary) : 0;
	uint8_t *v;
	int r;

	if (!st_token_ok(it->id, STORE_QUEUE_ID_MAX))
		return st_fail(s, STORE_EINVAL, "bad queue entry id");
	if (it->len > s->message_max + STORE_QUEUE_OVERHEAD_MAX)
		return st_fail(s, STORE_ETOOBIG, "queue entry too large");
	if (sl > STORE_QUEUE_SUMMARY_MAX)
		sl = STORE_QUEUE_SUMMARY_MAX;
	v = xmalloc(QUEUE_HEAD + sl + it->len);
	be64_put(v, (uint64_t)it->next_try);
	v[8] = (uint8_t)(sl >> 8);
	v[9] = (uint8_t)sl;
	if (sl > 0)
		memcpy(v + QUEUE_HEAD, it->summary, sl);
	if (it->len > 0)
		memcpy(v + QUEUE_HEAD + sl, it->data, it->len);
	r = st_put(s, SDB_QUEUE, txn, it->id, strlen(it->id), v,
	    QUEUE_HEAD + sl + it->len, 0);
	free(v);
	return r;
}

static int
st_queue_del(struct store *s, DB_TXN *txn, const char *id)
{
	int r;

	if (!st_token_ok(id, STORE_QUEUE_ID_MAX))
		return st_fail(s, STORE_EINVAL, "bad queue entry id");
	r = st_del(s, SDB_QUEUE, txn, id, strlen(id));
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
store_txn_queue_put(struct store_txn_queue *tq,
    const struct store_queue_item *item)
{
	int r = st_queue_put(tq->s, tq->txn, item);

	if (r == 0)
		tq->nput++;
	return r;
}

int
store_txn_queue_del(struct store_txn_queue *tq, const char *id)
{
	return st_queue_del(tq->s, tq->txn, id);
}

struct queue_one_ctx {
	const struct store_queue_item *item;
	const char *id;
};

static int
st_queue_put_fn(struct store *s, DB_TXN *txn, void *arg)
{
	return st_queue_put(s, txn, ((struct queue_one_ctx *)arg)->item);
}

static int
st_queue_del_fn(struct store *s, DB_TXN *txn, void *arg)
{
	return st_queue_del(s, txn, ((struct queue_one_ctx *)arg)->id);
}

int
store_queue_put(struct store *s, const struct store_queue_item *item,
    const char **error_r)
{
	struct queue_one_ctx c = { item, NULL };

	return st_txn_run(s, ST_TXN_WRITE, st_queue_put_fn, &c, error_r);
}

int
store_queue_del(struct store *s, const char *id, const char **error_r)
{
	struct queue_one_ctx c = { NULL, id };

	return st_txn_run(s, ST_TXN_WRITE, st_queue_del_fn, &c, error_r);
}

struct queue_list_ctx {
	int64_t due;
	/* ids of the due entries, collected afresh by each attempt */
	char (*ids)[STORE_QUEUE_ID_MAX + 1];
	size_t n, cap;
	uint64_t changed;
};

/* Decode a SDB_QUEUE record into it (strings in the caller's buffers). */
static int
st_queue_item(const char *id, const uint8_t *v, size_t len,
    char summary[STORE_QUEUE_SUMMARY_MAX + 1], struct store_queue_item *it)
{
	size_t sl;

	if (!st_queue_rec_ok(v, len))
		return -1;
	sl = (size_t)v[8] << 8 | v[9];
	memcpy(summary, v + QUEUE_HEAD, sl);
	summary[sl] = '\0';
	it->id = id;
	it->next_try = (int64_t)be64_get(v);
	it->summary = summary;
	it->data = v + QUEUE_HEAD + sl;
	it->len = len - QUEUE_HEAD - sl;
	return 0;
}

/*
 * Phase 1: the ids of the due entries (small).  A deadlock retries the
 * whole function, so it starts its list afresh; nothing is handed to the
 * caller from inside the transaction (a retry would hand it twice).
 */
static int
st_queue_ids_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct queue_list_ctx *c = arg;
	struct st_cursor cur;
	const uint8_t *v;
	int r;

	c->n = 0;
	if ((r = st_cursor_open(s, SDB_QUEUE, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		v = cur.v.data;
		if (cur.k.size == 0 || cur.k.size > STORE_QUEUE_ID_MAX ||
		    !st_queue_rec_ok(v, cur.v.size))
			continue;	/* damaged: store_check reports it */
		if ((int64_t)be64_get(v) > c->due)
			continue;
		if (c->n == c->cap) {
			c->cap = c->cap == 0 ? 64 : c->cap * 2;
			c->ids = xreallocarray(c->ids, c->cap, sizeof(*c->ids));
		}
		memcpy(c->ids[c->n], cur.k.data, cur.k.size);
		c->ids[c->n][cur.k.size] = '\0';
		c->n++;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

struct queue_get_ctx {
	const char *id;
	struct st_val v;
};

static int
st_queue_get_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct queue_get_ctx *g = arg;

	free(g->v.data);
	g->v.data = NULL;
	g->v.len = 0;
	return st_get(s, SDB_QUEUE, txn, g->id, strlen(g->id), &g->v);
}

int
store_queue_list(struct store *s, int64_t due,
    int (*cb)(const struct store_queue_item *item, void *ctx), void *ctx,
    const char **error_r)
{
	struct queue_list_ctx c;
	struct queue_get_ctx g;
	struct store_queue_item it;
	char summary[STORE_QUEUE_SUMMARY_MAX + 1];
	size_t i;
	int r, stop = 0;

	memset(&c, 0, sizeof(c));
	c.due = due;
	r = st_txn_run(s, ST_TXN_READ, st_queue_ids_fn, &c, error_r);
	/* Phase 2: each entry read on its own and handed over. */
	for (i = 0; r == 0 && stop == 0 && i < c.n; i++) {
		memset(&g, 0, sizeof(g));
		g.id = c.ids[i];
		r = st_txn_run(s, ST_TXN_READ, st_queue_get_fn, &g, error_r);
		if (r == STORE_ENOTFOUND)
			r = 0;		/* removed meanwhile */
		else if (r == 0 && st_queue_item(c.ids[i], g.v.data, g.v.len,
		    summary, &it) == 0 && it.next_try <= due)
			stop = cb(&it, ctx);
		free(g.v.data);
	}
	free(c.ids);
	return r != 0 ? r : stop;
}

static int
st_queue_flush_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct queue_list_ctx *c = arg;
	struct st_cursor cur;
	uint8_t *v;
	int r;

	c->changed = 0;
	if ((r = st_cursor_open(s, SDB_QUEUE, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (cur.v.size < QUEUE_HEAD || be64_get(cur.v.data) == 0)
			continue;
		v = xmemdup(cur.v.data, cur.v.size);
		be64_put(v, 0);
		r = st_put(s, SDB_QUEUE, txn, cur.k.data, cur.k.size, v,
		    cur.v.size, 0);
		free(v);
		if (r != 0)
			break;
		c->changed++;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
store_queue_flush(struct store *s, uint64_t *n_r, const char **error_r)
{
	struct queue_list_ctx c;
	int r;

	memset(&c, 0, sizeof(c));
	r = st_txn_run(s, ST_TXN_WRITE, st_queue_flush_fn, &c, error_r);
	if (n_r != NULL)
		*n_r = r == 0 ? c.changed : 0;
	return r;
}

/* ---- de-duplication of submissions ---- */

/* key = lower-cased account address, NUL, Message-ID. */
static int
st_dedup_key(struct store *s, const struct store_deliver_opts *o,
    struct buf *key)
{
	char norm[STORE_ADDRESS_MAX + 1];
	const char *err;

	if (st_address_norm(o->dedup_account, norm, sizeof(norm), &err) != 0 ||
	    !st_token_ok(o->dedup_id, STORE_NOTICE_ID_MAX))
		return st_fail(s, STORE_EINVAL, "bad de-duplication key");
	buf_init(key, STORE_ADDRESS_MAX + STORE_NOTICE_ID_MAX + 2);
	if (buf_append_str(key, norm) < 0 || buf_append_byte(key, 0) < 0 ||
	    buf_append_str(key, o->dedup_id) < 0) {
		buf_free(key);
		return st_fail(s, STORE_EINVAL, "bad de-duplication key");
	}
	return 0;
}

static int
st_dedup_wanted(const struct store_deliver_opts *o)
{
	return o != NULL && o->dedup_account != NULL && o->dedup_id != NULL &&
	    o->dedup_id[0] != '\0' && o->dedup_until > 0;
}

int
st_dedup_check(struct store *s, DB_TXN *txn,
    const struct store_deliver_opts *o, char *ref_r)
{
	struct st_val v;
	struct buf key;
	int r;

	if (!st_dedup_wanted(o))
		return 0;
	if ((r = st_dedup_key(s, o, &key)) != 0)
		return r;
	r = st_get(s, SDB_DEDUP, txn, key.data, key.len, &v);
	buf_free(&key);
	if (r == STORE_ENOTFOUND)
		return 0;
	if (r != 0)
		return r;
	/* Expired but not yet removed: a new submission. */
	if (v.len < 8 || (int64_t)be64_get(v.data) < (int64_t)time(NULL)) {
		free(v.data);
		return 0;
	}
	if (ref_r != NULL) {
		size_t n = v.len - 8 > STORE_DEDUP_REF_MAX ?
		    STORE_DEDUP_REF_MAX : v.len - 8;

		memcpy(ref_r, v.data + 8, n);
		ref_r[n] = '\0';
	}
	free(v.data);
	return st_fail(s, STORE_EEXISTS, "already delivered");
}

static int
st_dedup_put(struct store *s, DB_TXN *txn, const struct store_deliver_opts *o)
{
	struct st_val old;
	struct buf key, exp;
	uint8_t *v;
	size_t rl;
	int r;

	if (!st_dedup_wanted(o))
		return 0;
	if ((r = st_dedup_key(s, o, &key)) != 0)
		return r;
	rl = o->dedup_ref != NULL ? strlen(o->dedup_ref) : 0;
	if (rl > STORE_DEDUP_REF_MAX)
		rl = STORE_DEDUP_REF_MAX;
	buf_init(&exp, BUF_UNBOUNDED);
	/* An expired record still there: its expiry entry goes. */
	r = st_get(s, SDB_DEDUP, txn, key.data, key.len, &old);
	if (r == 0) {
		if (old.len >= 8) {
			buf_append(&exp, old.data, 8);
			buf_append(&exp, key.data, key.len);
			r = st_del(s, SDB_DEDUP_EXP, txn, exp.data, exp.len);
			if (r == STORE_ENOTFOUND)
				r = 0;
		}
		free(old.data);
	} else if (r == STORE_ENOTFOUND)
		r = 0;
	if (r == 0) {
		v = xmalloc(8 + rl + 1);
		be64_put(v, (uint64_t)o->dedup_until);
		if (rl > 0)
			memcpy(v + 8, o->dedup_ref, rl);
		r = st_put(s, SDB_DEDUP, txn, key.data, key.len, v, 8 + rl, 0);
		free(v);
	}
	if (r == 0) {
		uint8_t t[8];

		buf_reset(&exp);
		be64_put(t, (uint64_t)o->dedup_until);
		buf_append(&exp, t, 8);
		buf_append(&exp, key.data, key.len);
		r = st_put(s, SDB_DEDUP_EXP, txn, exp.data, exp.len, "", 0, 0);
	}
	buf_free(&exp);
	buf_free(&key);
	return r;
}

struct expire_ctx {
	int64_t now;
	size_t removed;
};

static int
st_dedup_expire_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct expire_ctx *c = arg;
	struct st_cursor cur;
	int r;

	c->removed = 0;
	if ((r = st_cursor_open(s, SDB_DEDUP_EXP, txn, &cur)) != 0)
		return r;
	cur.rmw = 1;
	while (c->removed < STORE_DEDUP_EXPIRE_BATCH &&
	    (r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (cur.k.size >= 8 &&
		    (int64_t)be64_get(cur.k.data) >= c->now)
			break;
		if (cur.k.size > 8) {
			r = st_del(s, SDB_DEDUP, txn,
			    (const uint8_t *)cur.k.data + 8, cur.k.size - 8);
			if (r != 0 && r != STORE_ENOTFOUND)
				break;
		}
		if ((r = st_cursor_del(&cur)) != 0)
			break;
		c->removed++;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

/* Read-only look first: maintenance must be cheap when nothing expired. */
static int
st_dedup_due_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct expire_ctx *c = arg;
	struct st_cursor cur;
	int r;

	c->removed = 0;
	if ((r = st_cursor_open(s, SDB_DEDUP_EXP, txn, &cur)) != 0)
		return r;
	r = st_cursor_get(&cur, NULL, 0, DB_NEXT);
	if (r == 0 && cur.k.size >= 8 &&
	    (int64_t)be64_get(cur.k.data) < c->now)
		c->removed = 1;
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
st_dedup_expire(struct store *s, const char **error_r)
{
	struct expire_ctx c = { (int64_t)time(NULL), 0 };
	int r;

	r = st_txn_run(s, ST_TXN_READ, st_dedup_due_fn, &c, error_r);
	if (r != 0 || c.removed == 0)
		return r;
	return st_txn_run(s, ST_TXN_WRITE, st_dedup_expire_fn, &c, error_r);
}

/* ---- the extras of a delivery ---- */

int
st_deliver_extras(struct store *s, DB_TXN *txn,
    const struct store_deliver_opts *o, const struct store_rcpt_result *res,
    size_t n)
{
	struct store_txn_queue tq = { s, txn, 0 };
	size_t i, nok = 0;
	int r;

	if (o == NULL)
		return 0;
	for (i = 0; i < n; i++)
		if (res[i].status == STORE_OK)
			nok++;
	if (o->notice_id != NULL && (r = st_notice_record(s, txn,
	    o->notice_id, o->notice_list, o->notice_sender,
	    (int64_t)time(NULL), res, n, o->notice_defer)) != 0)
		return r;
	if (o->queue_cb != NULL &&
	    (r = o->queue_cb(&tq, res, n, o->queue_ctx)) != 0)
		return r < 0 ? r : 0;
	/*
	 * Remembered only when the message was accepted somewhere (a copy
	 * stored or an entry queued): a submission refused as a whole (all
	 * mailboxes full: 452) must be stored when the client tries again.
	 */
	if (nok == 0 && tq.nput == 0)
		return 0;
	return st_dedup_put(s, txn, o);
}
