/*
 * smtp_queue.c - the outbound queue's records (kept in the store, see
 * smtp_queue.h), the local retry of deferred notice copies, and the DSN.
 *
 * govmail-smtpd workers, helper threads (every call blocks on the disk).
 * Trusts its own records only as far as their lengths check out.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "mailbox.h"
#include "smtp_parse.h"
#include "smtp_queue.h"
#include "xmalloc.h"

/* Diagnostics of a local retry. */
#define QUEUE_DIAG_FULL "452 4.2.2 Mailbox full"
#define QUEUE_DIAG_GONE "550 5.1.1 Mailbox unavailable"

struct smtp_queue {
	const struct config *cfg;
};

int
smtp_queue_open(const struct config *cfg, struct smtp_queue **q_r,
    const char **error_r)
{
	(void)error_r;
	*q_r = xcalloc(1, sizeof(**q_r));
	(*q_r)->cfg = cfg;
	return 0;
}

void
smtp_queue_close(struct smtp_queue *q)
{
	free(q);
}

static void
put_u64(struct buf *b, uint64_t v)
{
	uint8_t x[8];
	int i;

	for (i = 7; i >= 0; i--) {
		x[i] = (uint8_t)v;
		v >>= 8;
	}
	buf_append(b, x, 8);
}

static void
put_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
	    (uint8_t)(v >> 8), (uint8_t)v };

	buf_append(b, x, 4);
}

static void
put_str(struct buf *b, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	put_u32(b, (uint32_t)n);
	if (n > 0)
		buf_append(b, s, n);
}

struct reader {
	const uint8_t *p;
	size_t left;
	int bad;
};

static uint64_t
get_u64(struct reader *r)
{
	uint64_t v = 0;
	int i;

	if (r->left < 8) {
		r->bad = 1;
		return 0;
	}
	for (i = 0; i < 8; i++)
		v = (v << 8) | r->p[i];
	r->p += 8;
	r->left -= 8;
	return v;
}

static uint32_t
get_u32(struct reader *r)
{
	uint32_t v;

	if (r->left < 4) {
		r->bad = 1;
		return 0;
	}
	v = ((uint32_t)r->p[0] << 24) | ((uint32_t)r->p[1] << 16) |
	    ((uint32_t)r->p[2] << 8) | r->p[3];
	r->p += 4;
	r->left -= 4;
	return v;
}

static char *
get_str(struct reader *r)
{
	uint32_t n = get_u32(r);
	char *s;

	if (r->bad || n > r->left) {
		r->bad = 1;
		return xstrdup("");
	}
	s = xstrndup((const char *)r->p, n);
	r->p += n;
	r->left -= n;
	return s;
}

static void
encode(const struct smtp_qentry *e, struct buf *b)
{
	size_t i;

	buf_init(b, BUF_UNBOUNDED);
	buf_append_byte(b, SMTP_QUEUE_REC_VERSION);
	put_u64(b, (uint64_t)e->created);
	put_u64(b, (uint64_t)e->next_try);
	put_u32(b, e->attempts);
	put_str(b, e->sender);
	put_str(b, e->domain);
	put_u32(b, (uint32_t)e->nrcpts);
	for (i = 0; i < e->nrcpts; i++) {
		put_str(b, e->rcpts[i]);
		buf_append_byte(b, e->status[i]);
		put_str(b, e->diag[i]);
		/* version 2: the recipient's DSN request and flags */
		buf_append_byte(b, e->notify != NULL ? e->notify[i] : 0);
		buf_append_byte(b, e->dflags != NULL ? e->dflags[i] : 0);
		put_str(b, e->orcpt != NULL ? e->orcpt[i] : NULL);
	}
	/* version 2: the message's DSN request */
	buf_append_byte(b, e->ret);
	put_str(b, e->envid);
	put_u64(b, e->len);
	buf_append(b, e->msg, e->len);
}

static uint8_t
get_u8(struct reader *r)
{
	uint8_t v;

	if (r->left < 1) {
		r->bad = 1;
		return 0;
	}
	v = r->p[0];
	r->p++;
	r->left--;
	return v;
}

static struct smtp_qentry *
decode(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
	struct smtp_qentry *e = xcalloc(1, sizeof(*e));
	struct reader r = { val, vlen, 0 };
	char *dom;
	uint64_t len;
	size_t i;
	int version = vlen > 0 ? val[0] : 0;

	if (klen != SMTP_QUEUE_ID_LEN || version < 1 ||
	    version > SMTP_QUEUE_REC_VERSION) {
		free(e);
		return NULL;
	}
	memcpy(e->id, key, klen);
	r.p++;
	r.left--;
	e->created = (int64_t)get_u64(&r);
	e->next_try = (int64_t)get_u64(&r);
	e->attempts = get_u32(&r);
	e->sender = get_str(&r);
	dom = get_str(&r);
	(void)str_copy(e->domain, sizeof(e->domain), dom);
	free(dom);
	e->nrcpts = get_u32(&r);
	if (r.bad || e->nrcpts > r.left) {
		e->nrcpts = 0;
		smtp_qentry_free(e);
		return NULL;
	}
	e->rcpts = xcalloc(e->nrcpts + 1, sizeof(*e->rcpts));
	e->status = xcalloc(e->nrcpts + 1, 1);
	e->diag = xcalloc(e->nrcpts + 1, sizeof(*e->diag));
	e->notify = xcalloc(e->nrcpts + 1, 1);
	e->dflags = xcalloc(e->nrcpts + 1, 1);
	e->orcpt = xcalloc(e->nrcpts + 1, sizeof(*e->orcpt));
	for (i = 0; i < e->nrcpts; i++) {
		e->rcpts[i] = get_str(&r);
		e->status[i] = r.left > 0 ? *r.p : 0;
		if (r.left > 0) {
			r.p++;
			r.left--;
		}
		e->diag[i] = get_str(&r);
		if (e->diag[i][0] == '\0') {
			free(e->diag[i]);
			e->diag[i] = NULL;
		}
		if (version < 2)
			continue;
		e->notify[i] = get_u8(&r);
		e->dflags[i] = get_u8(&r);
		e->orcpt[i] = get_str(&r);
		if (e->orcpt[i][0] == '\0') {
			free(e->orcpt[i]);
			e->orcpt[i] = NULL;
		}
	}
	if (version >= 2) {
		char *envid;

		e->ret = get_u8(&r);
		envid = get_str(&r);
		if (e->ret > SMTP_RET_HDRS || strlen(envid) > SMTP_ENVID_MAX)
			r.bad = 1;
		else
			(void)str_copy(e->envid, sizeof(e->envid), envid);
		free(envid);
	}
	len = get_u64(&r);
	if (r.bad || len != r.left) {
		smtp_qentry_free(e);
		return NULL;
	}
	e->len = (size_t)len;
	e->msg = xmemdup(r.p, e->len);	/* NUL-terminated by xmemdup */
	return e;
}

void
smtp_qentry_free(struct smtp_qentry *e)
{
	size_t i;

	if (e == NULL)
		return;
	for (i = 0; i < e->nrcpts; i++) {
		free(e->rcpts[i]);
		if (e->diag != NULL)
			free(e->diag[i]);
		if (e->orcpt != NULL)
			free(e->orcpt[i]);
	}
	free(e->rcpts);
	free(e->status);
	free(e->diag);
	free(e->notify);
	free(e->dflags);
	free(e->orcpt);
	free(e->sender);
	free(e->msg);
	free(e);
}

/* Put e into the running transaction (or its own, st != NULL). */
static int
entry_put(struct store_txn_queue *tq, struct store *st,
    const struct smtp_qentry *e, const char **error_r)
{
	struct store_queue_item it;
	char summary[STORE_QUEUE_SUMMARY_MAX + 1];
	struct buf b;
	size_t i, pending = 0;
	int r;

	for (i = 0; i < e->nrcpts; i++)
		if (e->status[i] == SMTP_QRCPT_PENDING)
			pending++;
	/*
	 * What `govmailctl queue list` shows (the store keeps it apart);
	 * a long sender is cut, which is fine for a summary.
	 */
	if (snprintf(summary, sizeof(summary), "domain=%s rcpts=%zu "
	    "pending=%zu attempts=%u size=%zu sender=<%s>", e->domain,
	    e->nrcpts, pending, e->attempts, e->len, e->sender) < 0)
		summary[0] = '\0';
	encode(e, &b);
	it.id = e->id;
	it.summary = summary;
	it.next_try = e->next_try;
	it.data = b.data;
	it.len = b.len;
	r = tq != NULL ? store_txn_queue_put(tq, &it) :
	    store_queue_put(st, &it, error_r);
	buf_free(&b);
	return r;
}

static void
new_id(char *id)
{
	uint8_t raw[SMTP_QUEUE_ID_LEN / 2];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(id, SMTP_QUEUE_ID_LEN + 1, raw, sizeof(raw));
}

int
smtp_queue_stage(struct store_txn_queue *tq, const char *sender,
    char *const *rcpts, size_t nrcpts, const uint8_t *msg, size_t len)
{
	return smtp_queue_stage_dsn(tq, sender, rcpts, nrcpts, msg, len, NULL);
}

int
smtp_queue_stage_dsn(struct store_txn_queue *tq, const char *sender,
    char *const *rcpts, size_t nrcpts, const uint8_t *msg, size_t len,
    const struct smtp_dsn_env *env)
{
	struct {
		struct smtp_qentry **entries;
		size_t n;
	} a = { NULL, 0 };
	int64_t now = (int64_t)time(NULL);
	size_t i, j;
	int r = 0;

	if (nrcpts == 0)
		return 0;
	a.entries = xcalloc(nrcpts, sizeof(*a.entries));
	for (i = 0; i < nrcpts; i++) {
		const char *dom = strrchr(rcpts[i], '@');
		struct smtp_qentry *e = NULL;

		dom = dom != NULL ? dom + 1 : "";
		for (j = 0; j < a.n; j++)
			if (strcmp(a.entries[j]->domain, dom) == 0)
				e = a.entries[j];
		if (e == NULL) {
			e = xcalloc(1, sizeof(*e));
			new_id(e->id);
			e->created = now;
			e->next_try = now;
			e->sender = xstrdup(sender);
			(void)str_copy(e->domain, sizeof(e->domain), dom);
			e->rcpts = xcalloc(nrcpts, sizeof(*e->rcpts));
			e->status = xcalloc(nrcpts, 1);
			e->diag = xcalloc(nrcpts, sizeof(*e->diag));
			e->notify = xcalloc(nrcpts, 1);
			e->dflags = xcalloc(nrcpts, 1);
			e->orcpt = xcalloc(nrcpts, sizeof(*e->orcpt));
			if (env != NULL) {
				e->ret = (uint8_t)env->ret;
				(void)str_copy(e->envid, sizeof(e->envid),
				    env->envid);
			}
			/* Borrowed: the caller keeps the bytes. */
			e->msg = (uint8_t *)(uintptr_t)msg;
			e->len = len;
			a.entries[a.n++] = e;
		}
		{
			const struct smtp_dsn_rcpt *dr =
			    smtp_dsn_env_find(env, rcpts[i]);

			if (dr != NULL) {
				e->notify[e->nrcpts] = (uint8_t)dr->notify;
				if (dr->orcpt != NULL)
					e->orcpt[e->nrcpts] =
					    xstrdup(dr->orcpt);
			}
		}
		e->rcpts[e->nrcpts++] = xstrdup(rcpts[i]);
	}
	for (i = 0; i < a.n && r == 0; i++)
		r = entry_put(tq, NULL, a.entries[i], NULL);
	for (i = 0; i < a.n; i++) {
		a.entries[i]->msg = NULL;
		smtp_qentry_free(a.entries[i]);
	}
	free(a.entries);
	return r;
}

struct add_ctx {
	const char *sender;
	char *const *rcpts;
	size_t nrcpts;
	const uint8_t *msg;
	size_t len;
};

static int
add_cb(struct store_txn_queue *tq, const struct store_rcpt_result *res,
    size_t nres, void *arg)
{
	struct add_ctx *a = arg;

	(void)res;
	(void)nres;
	return smtp_queue_stage(tq, a->sender, a->rcpts, a->nrcpts, a->msg,
	    a->len);
}

int
smtp_queue_add(struct store *st, const char *sender, char *const *rcpts,
    size_t nrcpts, const uint8_t *msg, size_t len, const char **error_r)
{
	struct add_ctx a = { sender, rcpts, nrcpts, msg, len };
	struct store_deliver_opts o;

	memset(&o, 0, sizeof(o));
	o.queue_cb = add_cb;
	o.queue_ctx = &a;
	if (store_deliver_ex(st, msg, len, NULL, 0, 0, NULL, &o, NULL,
	    error_r) < 0)
		return -1;
	return 0;
}

struct due_ctx {
	int64_t now;
	size_t max;
	struct smtp_qentry **out;
	size_t n;
};

static int
due_cb(const struct store_queue_item *it, void *arg)
{
	struct due_ctx *d = arg;
	struct smtp_qentry *e;

	e = decode((const uint8_t *)it->id, strlen(it->id), it->data,
	    it->len);
	if (e == NULL)
		return 0;	/* damaged: left for the operator */
	/* The store's time is the one `govmailctl queue flush` changes. */
	e->next_try = it->next_try;
	d->out[d->n++] = e;
	return d->n >= d->max ? 1 : 0;
}

int
smtp_queue_due(struct store *st, int64_t now, size_t max,
    struct smtp_qentry ***entries_r, size_t *n_r, const char **error_r)
{
	struct due_ctx d = { now, max, NULL, 0 };
	int r;

	d.out = xcalloc(max + 1, sizeof(*d.out));
	r = max == 0 ? 0 : store_queue_list(st, now, due_cb, &d, error_r);
	if (r < 0) {
		size_t i;

		for (i = 0; i < d.n; i++)
			smtp_qentry_free(d.out[i]);
		free(d.out);
		return -1;
	}
	*entries_r = d.out;
	*n_r = d.n;
	return 0;
}

int
smtp_queue_put(struct store *st, const struct smtp_qentry *e,
    const char **error_r)
{
	return entry_put(NULL, st, e, error_r) < 0 ? -1 : 0;
}

int
smtp_queue_remove(struct store *st, const char *id, const char **error_r)
{
	return store_queue_del(st, id, error_r) < 0 ? -1 : 0;
}

/* ---- local retry of deferred notice copies ---- */

struct local_ctx {
	struct smtp_qentry *e;
	const uint8_t *status0;		/* statuses before this attempt */
	uint32_t attempts0;		/* and the attempt count */
	size_t *idx;			/* result i -> recipient of e */
	int64_t now;
	uint64_t retry, retry_max;
	size_t newly_failed;
};

/* In the delivery transaction: the entry follows the results. */
static int
local_cb(struct store_txn_queue *tq, const struct store_rcpt_result *res,
    size_t nres, void *arg)
{
	struct local_ctx *c = arg;
	struct smtp_qentry *e = c->e;
	size_t i, pending = 0;
	uint64_t delay;
	int r;

	/* Called again when the transaction is retried: start afresh. */
	memcpy(e->status, c->status0, e->nrcpts);
	e->attempts = c->attempts0;
	c->newly_failed = 0;
	for (i = 0; i < nres; i++) {
		size_t k = c->idx[i];

		free(e->diag[k]);
		e->diag[k] = NULL;
		if (res[i].status == STORE_OK)
			e->status[k] = SMTP_QRCPT_SENT;
		else if (res[i].status == STORE_EQUOTA) {
			e->diag[k] = xstrdup(QUEUE_DIAG_FULL);
			pending++;
		} else {
			e->status[k] = SMTP_QRCPT_FAILED;
			e->diag[k] = xstrdup(QUEUE_DIAG_GONE);
			c->newly_failed++;
		}
	}
	if (pending == 0 && c->newly_failed == 0)
		return store_txn_queue_del(tq, e->id);
	delay = c->retry > 0 ? c->retry : 1;
	for (i = 0; i < e->attempts && delay < c->retry_max; i++)
		delay *= 2;
	if (delay > c->retry_max)
		delay = c->retry_max;
	e->next_try = c->now + (int64_t)delay;
	if (pending == 0)
		return store_txn_queue_del(tq, e->id);
	e->attempts++;
	/* Failed ones are reported by the DSN after this: stored as done. */
	for (i = 0; i < e->nrcpts; i++)
		if (e->status[i] == SMTP_QRCPT_FAILED)
			e->status[i] = SMTP_QRCPT_SENT;
	r = entry_put(tq, NULL, e, NULL);
	for (i = 0; i < nres; i++)
		if (res[i].status != STORE_OK && res[i].status != STORE_EQUOTA)
			e->status[c->idx[i]] = SMTP_QRCPT_FAILED;
	return r;
}

int
smtp_queue_local_try(struct store *st, struct smtp_queue *q,
    struct smtp_qentry *e, int64_t now, uint64_t retry, uint64_t retry_max,
    uint64_t lifetime, const char *hostname)
{
	struct store_deliver_opts o;
	struct store_rcpt_result *res;
	struct local_ctx c;
	char id[STORE_NOTICE_ID_MAX + 1];
	const char **rcpts;
	const char *err = NULL;
	uint8_t *status0;
	size_t i, n = 0;
	int r;

	if (store_domain_exists(st, e->domain) != 1)
		return 0;
	smtp_message_id(e->msg, e->len, id, sizeof(id));
	rcpts = xcalloc(e->nrcpts + 1, sizeof(*rcpts));
	res = xcalloc(e->nrcpts + 1, sizeof(*res));
	memset(&c, 0, sizeof(c));
	c.idx = xcalloc(e->nrcpts + 1, sizeof(*c.idx));
	for (i = 0; i < e->nrcpts; i++)
		if (e->status[i] == SMTP_QRCPT_PENDING) {
			c.idx[n] = i;
			rcpts[n++] = e->rcpts[i];
		}
	if (n > 0 && now - e->created >= (int64_t)lifetime) {
		/* Given up: the sender hears, the report says failed. */
		for (i = 0; i < n; i++) {
			res[i].address = rcpts[i];
			res[i].status = STORE_EQUOTA;
		}
		(void)smtp_dsn_send(st, q, hostname, e, 1);
		if (id[0] != '\0' && store_notice_record(st, id, NULL, NULL,
		    now, res, n, &err) < 0)
			log_warnx("smtpd: event=notice-unrecorded queue=%s "
			    "error=\"%s\"", e->id, err != NULL ? err : "?");
		r = store_queue_del(st, e->id, &err);
		log_info("smtpd: event=local-expired queue=%s rcpts=%zu",
		    e->id, n);
		goto out;
	}
	status0 = xmemdup(e->status, e->nrcpts + 1);
	c.e = e;
	c.status0 = status0;
	c.attempts0 = e->attempts;
	c.now = now;
	c.retry = retry;
	c.retry_max = retry_max;
	memset(&o, 0, sizeof(o));
	o.notice_id = id[0] != '\0' ? id : NULL;
	o.notice_defer = 1;
	o.queue_cb = local_cb;
	o.queue_ctx = &c;
	r = store_deliver_ex(st, e->msg, e->len, rcpts, n, 0, res, &o, NULL,
	    &err);
	free(status0);
	if (r < 0) {
		log_warnx("smtpd: event=local-retry-failed queue=%s "
		    "error=\"%s\"", e->id, err != NULL ? err : "?");
		goto out;
	}
	if (c.newly_failed > 0)
		(void)smtp_dsn_send(st, q, hostname, e, 0);
	log_info("smtpd: event=local-retry queue=%s rcpts=%zu "
	    "failed=%zu", e->id, n, c.newly_failed);
out:
	free(rcpts);
	free(res);
	free(c.idx);
	return r < 0 ? -1 : 1;
}
