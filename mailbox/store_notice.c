/*
 * store_notice.c - the delivery report of signed notices: for each notice
 * (by Message-ID) the list, the poster and when, and for each recipient
 * the delivery status and the mailbox/UID it went to, so that
 * `govmailctl notice report` can look up \Seen live in the store.
 *
 * Written by govmail-smtpd inside the delivery's own transaction
 * (store_deliver_ex with notice_id: the copy and its report record are
 * durable together), by its delivery agent when a deferred copy is
 * finally delivered or given up; read by govmailctl.  Inputs are
 * addresses the store resolved and a Message-ID smtpd already reduced to
 * printable ASCII; lengths are checked again here.
 *
 * Tables (mailbox_priv.h):
 *   SDB_NOTICES:     message-id -> u8 version, u32 number, u64 when,
 *                    u32 batches, u8 has-failed, str list, str sender
 *                    (has-failed: a failed or deferred record was ever
 *                    written, so a delivery must look for one to clear;
 *                    a clean fan-out in batches does no such look-ups)
 *   SDB_NOTICE_OK:   u32 number, u32 batch -> up to STORE_NOTICE_PACK_MAX
 *                    (mailbox id, UID) pairs as LEB128 varints: a
 *                    delivered recipient costs about five bytes (its
 *                    address is the mailbox's owner, looked up when the
 *                    report is made), so a 100,000-citizen fan-out stays
 *                    within its per-recipient budget
 *   SDB_NOTICE_FAIL: u32 number, address -> u8 deferred, u32 status
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xmalloc.h"
#include "mailbox_priv.h"

#define NOTICE_REC_VERSION 1
/* Longest LEB128 encoding of a u32. */
#define NOTICE_VARINT_MAX 5

static int
id_ok(const char *id)
{
	size_t i, len;

	if (id == NULL)
		return 0;
	len = strlen(id);
	if (len == 0 || len > STORE_NOTICE_ID_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)id[i] <= 0x20 ||
		    (unsigned char)id[i] >= 0x7f)
			return 0;
	return 1;
}

struct notice_rec {
	uint32_t num;
	int64_t when;
	uint32_t nbatch;
	uint8_t has_fail;
	char *list, *sender;
};

static void
notice_rec_clear(struct notice_rec *n)
{
	free(n->list);
	free(n->sender);
	memset(n, 0, sizeof(*n));
}

static void
notice_rec_encode(const struct notice_rec *n, struct buf *out)
{
	buf_init(out, BUF_UNBOUNDED);
	rec_u8(out, NOTICE_REC_VERSION);
	rec_u32(out, n->num);
	rec_u64(out, (uint64_t)n->when);
	rec_u32(out, n->nbatch);
	rec_u8(out, n->has_fail);
	rec_str(out, n->list);
	rec_str(out, n->sender);
}

static int
notice_rec_decode(const uint8_t *p, size_t len, struct notice_rec *n)
{
	struct rec_reader r;

	memset(n, 0, sizeof(*n));
	rec_init(&r, p, len);
	if (rec_get_u8(&r) != NOTICE_REC_VERSION)
		return STORE_EDAMAGED;
	n->num = rec_get_u32(&r);
	n->when = (int64_t)rec_get_u64(&r);
	n->nbatch = rec_get_u32(&r);
	n->has_fail = rec_get_u8(&r);
	n->list = rec_get_str(&r);
	n->sender = rec_get_str(&r);
	if (r.bad) {
		notice_rec_clear(n);
		return STORE_EDAMAGED;
	}
	return 0;
}

int
st_notice_num(const uint8_t *v, size_t len, uint32_t *num_r)
{
	struct notice_rec nr;

	if (notice_rec_decode(v, len, &nr) != 0)
		return -1;
	*num_r = nr.num;
	notice_rec_clear(&nr);
	return 0;
}

static void
varint_put(struct buf *b, uint32_t v)
{
	while (v >= 0x80) {
		buf_append_byte(b, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	buf_append_byte(b, (uint8_t)v);
}

static int
varint_get(const uint8_t *p, size_t len, size_t *off, uint32_t *v_r)
{
	uint32_t v = 0;
	unsigned shift = 0;
	size_t i;

	for (i = 0; i < NOTICE_VARINT_MAX && *off + i < len; i++) {
		v |= (uint32_t)(p[*off + i] & 0x7f) << shift;
		if (!(p[*off + i] & 0x80)) {
			*off += i + 1;
			*v_r = v;
			return 0;
		}
		shift += 7;
	}
	return -1;
}

/* key = u32 number, address (normalised when it is one). */
static void
fail_key(struct buf *k, uint32_t num, const char *address)
{
	char norm[STORE_ADDRESS_MAX + 1];
	const char *err;
	uint8_t nb[4];

	be32_put(nb, num);
	buf_reset(k);
	buf_append(k, nb, 4);
	if (st_address_norm(address, norm, sizeof(norm), &err) == 0)
		buf_append_str(k, norm);
	else
		buf_append_str(k, address);
}

int
st_notice_record(struct store *s, DB_TXN *txn, const char *id,
    const char *list, const char *sender, int64_t when,
    const struct store_rcpt_result *res, size_t n, int defer)
{
	struct notice_rec nr;
	struct st_val v;
	struct buf key, val;
	size_t i, inpack = 0;
	int r, existed;

	if (!id_ok(id))
		return st_fail(s, STORE_EINVAL, "bad notice Message-ID");
	for (i = 0; i < n; i++)
		if (res[i].status != STORE_OK &&
		    strlen(res[i].address) > STORE_ADDRESS_MAX)
			return st_fail(s, STORE_EINVAL,
			    "recipient address too long");
	r = st_get(s, SDB_NOTICES, txn, id, strlen(id), &v);
	if (r == 0) {
		r = notice_rec_decode(v.data, v.len, &nr);
		free(v.data);
		if (r != 0)
			return st_fail(s, r, "damaged notice record");
		existed = 1;
	} else if (r == STORE_ENOTFOUND) {
		/* A retry of a message that was no notice: nothing. */
		if (list == NULL || sender == NULL)
			return 0;
		if (strlen(list) > STORE_ADDRESS_MAX ||
		    strlen(sender) > STORE_ADDRESS_MAX)
			return st_fail(s, STORE_EINVAL, "bad list or sender");
		memset(&nr, 0, sizeof(nr));
		if ((r = st_counter_next(s, txn, "notc", 1, &nr.num)) != 0)
			return r;
		nr.when = when;
		nr.list = xstrdup(list);
		nr.sender = xstrdup(sender);
		existed = 0;
	} else
		return r;

	buf_init(&key, 8 + STORE_ADDRESS_MAX + 1);
	buf_init(&val, BUF_UNBOUNDED);
	for (i = 0; i < n && r == 0; i++) {
		const struct store_rcpt_result *x = &res[i];
		uint8_t st[5];

		if (x->status == STORE_OK) {
			varint_put(&val, x->mailbox_id);
			varint_put(&val, x->uid);
			inpack++;
			if (inpack == STORE_NOTICE_PACK_MAX) {
				uint8_t k[8];

				be32_put(k, nr.num);
				be32_put(k + 4, nr.nbatch++);
				r = st_put(s, SDB_NOTICE_OK, txn, k, 8,
				    val.data, val.len, 0);
				buf_reset(&val);
				inpack = 0;
			}
			/* Delivered on a retry: no longer failed/deferred. */
			if (r == 0 && existed && nr.has_fail) {
				fail_key(&key, nr.num, x->address);
				r = st_del(s, SDB_NOTICE_FAIL, txn, key.data,
				    key.len);
				if (r == STORE_ENOTFOUND)
					r = 0;
			}
			continue;
		}
		fail_key(&key, nr.num, x->address);
		nr.has_fail = 1;
		st[0] = defer && x->status == STORE_EQUOTA;
		be32_put(st + 1, (uint32_t)x->status);
		r = st_put(s, SDB_NOTICE_FAIL, txn, key.data, key.len, st, 5,
		    0);
	}
	if (r == 0 && inpack > 0) {
		uint8_t k[8];

		be32_put(k, nr.num);
		be32_put(k + 4, nr.nbatch++);
		r = st_put(s, SDB_NOTICE_OK, txn, k, 8, val.data, val.len, 0);
	}
	if (r == 0) {
		buf_free(&val);
		notice_rec_encode(&nr, &val);
		r = st_put(s, SDB_NOTICES, txn, id, strlen(id), val.data,
		    val.len, 0);
	}
	buf_free(&key);
	buf_free(&val);
	notice_rec_clear(&nr);
	return r;
}

struct record_ctx {
	const char *id, *list, *sender;
	int64_t when;
	const struct store_rcpt_result *res;
	size_t n;
};

static int
st_record_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct record_ctx *c = arg;

	return st_notice_record(s, txn, c->id, c->list, c->sender, c->when,
	    c->res, c->n, 0);
}

int
store_notice_record(struct store *s, const char *message_id,
    const char *list, const char *sender, int64_t when,
    const struct store_rcpt_result *results, size_t nres,
    const char **error_r)
{
	struct record_ctx c = { message_id, list, sender, when, results,
	    nres };

	if (!id_ok(message_id) || (list != NULL && (strlen(list) >
	    STORE_ADDRESS_MAX || strchr(list, '\n') != NULL)) ||
	    (sender != NULL && (strlen(sender) > STORE_ADDRESS_MAX ||
	    strchr(sender, '\n') != NULL))) {
		if (error_r != NULL)
			*error_r = "bad message-id, list or sender";
		return STORE_EINVAL;
	}
	return st_txn_run(s, ST_TXN_WRITE, st_record_fn, &c, error_r);
}

void
store_notice_info_free(struct store_notice_info *info)
{
	free(info->message_id);
	free(info->list);
	free(info->sender);
	memset(info, 0, sizeof(*info));
}

/* ---- reading ---- */

struct notice_item {
	struct store_notice_info info;
};

struct list_ctx {
	struct notice_item *items;
	size_t n, cap;
};

static void
list_ctx_clear(struct list_ctx *c)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		store_notice_info_free(&c->items[i].info);
	free(c->items);
	memset(c, 0, sizeof(*c));
}

static int
st_list_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct list_ctx *c = arg;
	struct st_cursor cur;
	struct notice_rec nr;
	int r;

	list_ctx_clear(c);
	if ((r = st_cursor_open(s, SDB_NOTICES, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		struct store_notice_info *info;

		if (notice_rec_decode(cur.v.data, cur.v.size, &nr) != 0)
			continue;	/* skip a damaged record */
		if (c->n == c->cap) {
			c->cap = c->cap == 0 ? 16 : c->cap * 2;
			c->items = xreallocarray(c->items, c->cap,
			    sizeof(*c->items));
		}
		info = &c->items[c->n++].info;
		info->message_id = xmemdup(cur.k.data, cur.k.size);
		info->list = nr.list;
		info->sender = nr.sender;
		info->when = nr.when;
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
store_notice_list(struct store *s,
    int (*cb)(const struct store_notice_info *info, void *ctx), void *ctx,
    const char **error_r)
{
	struct list_ctx c;
	size_t i;
	int r;

	memset(&c, 0, sizeof(c));
	r = st_txn_run(s, ST_TXN_READ | ST_TXN_LONG, st_list_fn, &c, error_r);
	for (i = 0; r == 0 && i < c.n; i++)
		r = cb(&c.items[i].info, ctx);
	list_ctx_clear(&c);
	return r;
}

struct get_ctx {
	const char *id;
	struct notice_rec nr;
};

static int
st_get_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct get_ctx *c = arg;
	struct st_val v;
	int r;

	notice_rec_clear(&c->nr);
	r = st_get(s, SDB_NOTICES, txn, c->id, strlen(c->id), &v);
	if (r != 0)
		return r == STORE_ENOTFOUND ? st_fail(s, r, "no such notice") :
		    r;
	r = notice_rec_decode(v.data, v.len, &c->nr);
	free(v.data);
	return r != 0 ? st_fail(s, r, "damaged notice record") : 0;
}

static int
notice_get(struct store *s, const char *message_id, struct notice_rec *nr,
    const char **error_r)
{
	struct get_ctx c;
	int r;

	memset(&c, 0, sizeof(c));
	if (!id_ok(message_id)) {
		if (error_r != NULL)
			*error_r = "no such notice";
		return STORE_ENOTFOUND;
	}
	c.id = message_id;
	r = st_txn_run(s, ST_TXN_READ, st_get_fn, &c, error_r);
	if (r != 0) {
		notice_rec_clear(&c.nr);
		return r;
	}
	*nr = c.nr;
	return 0;
}

int
store_notice_get(struct store *s, const char *message_id,
    struct store_notice_info *info_r, const char **error_r)
{
	struct notice_rec nr;
	int r;

	memset(info_r, 0, sizeof(*info_r));
	if ((r = notice_get(s, message_id, &nr, error_r)) != 0)
		return r;
	info_r->message_id = xstrdup(message_id);
	info_r->list = nr.list;
	info_r->sender = nr.sender;
	info_r->when = nr.when;
	return 0;
}

struct rcpt_item {
	char *address;		/* failed/deferred; NULL: delivered */
	int status;
	int deferred;
	uint32_t mailbox_id, uid;
};

struct rcpts_ctx {
	uint32_t num;
	struct rcpt_item *items;
	size_t n, cap;
};

static void
rcpts_clear(struct rcpts_ctx *c)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		free(c->items[i].address);
	free(c->items);
	c->items = NULL;
	c->n = c->cap = 0;
}

static struct rcpt_item *
rcpts_push(struct rcpts_ctx *c)
{
	if (c->n == c->cap) {
		c->cap = c->cap == 0 ? 64 : c->cap * 2;
		c->items = xreallocarray(c->items, c->cap, sizeof(*c->items));
	}
	memset(&c->items[c->n], 0, sizeof(c->items[c->n]));
	return &c->items[c->n++];
}

static int
st_rcpts_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct rcpts_ctx *c = arg;
	struct st_cursor cur;
	uint8_t prefix[4];
	int r;

	rcpts_clear(c);
	be32_put(prefix, c->num);
	if ((r = st_cursor_open(s, SDB_NOTICE_OK, txn, &cur)) != 0)
		return r;
	r = st_cursor_get(&cur, prefix, 4, DB_SET_RANGE);
	while (r == 0 && cur.k.size == 8 &&
	    memcmp(cur.k.data, prefix, 4) == 0) {
		const uint8_t *p = cur.v.data;
		size_t off = 0;
		uint32_t mb, uid;

		while (off < cur.v.size &&
		    varint_get(p, cur.v.size, &off, &mb) == 0 &&
		    varint_get(p, cur.v.size, &off, &uid) == 0) {
			struct rcpt_item *it = rcpts_push(c);

			it->status = STORE_OK;
			it->mailbox_id = mb;
			it->uid = uid;
		}
		r = st_cursor_get(&cur, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&cur);
	if (r != 0 && r != STORE_ENOTFOUND)
		return r;
	if ((r = st_cursor_open(s, SDB_NOTICE_FAIL, txn, &cur)) != 0)
		return r;
	r = st_cursor_get(&cur, prefix, 4, DB_SET_RANGE);
	while (r == 0 && cur.k.size > 4 &&
	    memcmp(cur.k.data, prefix, 4) == 0) {
		const uint8_t *v = cur.v.data;

		if (cur.v.size == 5 &&
		    cur.k.size - 4 <= STORE_ADDRESS_MAX) {
			struct rcpt_item *it = rcpts_push(c);

			it->address = xmemdup((const uint8_t *)cur.k.data + 4,
			    cur.k.size - 4);
			it->deferred = v[0] != 0;
			it->status = (int32_t)be32_get(v + 1);
		}
		r = st_cursor_get(&cur, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
store_notice_rcpts(struct store *s, const char *message_id,
    int (*cb)(const struct store_notice_rcpt *rcpt, void *ctx), void *ctx,
    const char **error_r)
{
	struct rcpts_ctx c;
	struct notice_rec nr;
	struct store_mailbox_info mi;
	char owner[STORE_ADDRESS_MAX + 1];
	size_t i;
	int r;

	if ((r = notice_get(s, message_id, &nr, error_r)) != 0)
		return r;
	memset(&c, 0, sizeof(c));
	c.num = nr.num;
	notice_rec_clear(&nr);
	r = st_txn_run(s, ST_TXN_READ | ST_TXN_LONG, st_rcpts_fn, &c,
	    error_r);
	for (i = 0; r == 0 && i < c.n; i++) {
		struct store_notice_rcpt x;

		memset(&x, 0, sizeof(x));
		x.status = c.items[i].status;
		x.deferred = c.items[i].deferred;
		x.mailbox_id = c.items[i].mailbox_id;
		x.uid = c.items[i].uid;
		if (c.items[i].address != NULL)
			x.address = c.items[i].address;
		else {
			owner[0] = '\0';
			r = store_mailbox_get_id(s, x.mailbox_id, &mi, owner,
			    error_r);
			if (r == STORE_ENOTFOUND)
				owner[0] = '\0';	/* the account is gone */
			else if (r < 0)
				break;
			x.address = owner;
		}
		r = cb(&x, ctx);
	}
	rcpts_clear(&c);
	return r;
}
