/*
 * store_notice.c - the delivery report of signed notices: for each notice
 * (by Message-ID) the list, the poster and when, and for each recipient
 * the delivery status and the mailbox/UID it went to, so that
 * `govmailctl notice report` can look up \Seen live in the store.
 *
 * Run by govmail-smtpd's helper threads (record, after store_deliver) and
 * by govmailctl (read).  Inputs are addresses the store resolved and a
 * Message-ID smtpd already reduced to printable ASCII; nothing here is
 * trusted further than that (lengths are checked again).
 *
 * Why a kv.h environment of its own (<store path>/notices) and not a new
 * database in the store environment: the store's database table is
 * indexed (partitions are numbered after SDB_COUNT), so a new SDB would
 * shift the layout of existing stores; the report is append-mostly data
 * that no mailbox operation reads, so its own environment is simpler and
 * leaves the store's layout, check and crash tests untouched.  The price:
 * `govmailctl backup` does not copy it (noted in govmailctl(8)).
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "config.h"
#include "kv.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

/*
 * Recipients written per transaction: a notice to 100,000 citizens is
 * recorded in batches, each durable, so one transaction never holds the
 * locks of the whole fan-out.
 */
#define NOTICE_BATCH 1000

/*
 * Tables.  A notice costs one record; a delivered recipient one 8-byte
 * key and a 4-byte value (the address is the mailbox's owner, looked up
 * when the report is made), so the report stays small next to the store's
 * own per-recipient index record; a failed recipient keeps its address.
 *   notices:  message-id -> "num\nwhen\nlist\nsender\n"
 *   numbers:  "next" -> u32 BE (the next notice number)
 *   rcpts:    u32 BE num, u32 BE mailbox id -> u32 BE uid
 *   failed:   u32 BE num, address -> decimal status
 */
#define NOTICE_TABLE "notices"
#define NOTICE_NUMBERS "numbers"
#define NOTICE_RCPTS "rcpts"
#define NOTICE_FAILED "failed"

struct store_notices {
	struct kv_env *kv;
};

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static int
kv_to_store(int r)
{
	if (r == KV_ENOTFOUND)
		return STORE_ENOTFOUND;
	if (r == KV_EINVAL)
		return STORE_EINVAL;
	return STORE_ETEMP;
}

int
store_notices_open(const struct config *cfg, int create,
    struct store_notices **n_r, const char **error_r)
{
	static const char *const tables[] = { NOTICE_TABLE, NOTICE_NUMBERS,
	    NOTICE_RCPTS, NOTICE_FAILED, NULL };
	const char *base = config_path_get(cfg, "store", "path");
	struct store_notices *n;
	struct stat sb;
	char *dir;
	int r;

	*n_r = NULL;
	if (base[0] == '\0') {
		if (error_r != NULL)
			*error_r = "[store] path is empty";
		return STORE_EINVAL;
	}
	dir = xasprintf("%s/notices", base);
	if (!create && stat(dir, &sb) < 0) {
		free(dir);
		if (error_r != NULL)
			*error_r = "no notice has been recorded";
		return STORE_ENOTFOUND;
	}
	n = xcalloc(1, sizeof(*n));
	r = kv_open(dir, tables, create ? KV_OPEN_CREATE : 0, &n->kv,
	    error_r);
	free(dir);
	if (r < 0) {
		free(n);
		return r == KV_ENOTFOUND ? STORE_ENOTFOUND : STORE_ETEMP;
	}
	*n_r = n;
	return 0;
}

void
store_notices_close(struct store_notices *n)
{
	if (n == NULL)
		return;
	kv_close(n->kv);
	free(n);
}

static int
id_ok(const char *id)
{
	size_t i, len = strlen(id);

	if (len == 0 || len > STORE_NOTICE_ID_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)id[i] <= 0x20 ||
		    (unsigned char)id[i] >= 0x7f)
			return 0;
	return 1;
}

/* Fill info from a NOTICE_TABLE value. */
static int
info_parse(const char *id, size_t idlen, const uint8_t *v, size_t vlen,
    struct store_notice_info *info, uint32_t *num_r)
{
	const char *p = (const char *)v, *end = p + vlen, *nl;
	char *field[4];
	int64_t when;
	uint64_t num;
	const char *err;
	int i;

	for (i = 0; i < 4; i++) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			break;
		field[i] = xmemdup(p, (size_t)(nl - p));
		p = nl + 1;
	}
	if (i < 4 || strnum_u64(field[0], 0, UINT32_MAX, &num, &err) < 0 ||
	    strnum_i64(field[1], 0, INT64_MAX, &when, &err) < 0) {
		while (i-- > 0)
			free(field[i]);
		return STORE_EDAMAGED;
	}
	memset(info, 0, sizeof(*info));
	info->message_id = xmemdup(id, idlen);
	info->when = when;
	free(field[0]);
	free(field[1]);
	info->list = field[2];
	info->sender = field[3];
	*num_r = (uint32_t)num;
	return 0;
}

struct record_ctx {
	const char *id, *list, *sender;
	int64_t when;
	const struct store_rcpt_result *res;
	size_t n;
	struct kv_env *kv;
	uint32_t num;
};

static int
record_txn(struct kv_txn *txn, void *arg)
{
	struct record_ctx *c = arg;
	size_t i, idlen = strlen(c->id);
	struct buf key, val;
	uint8_t *v = NULL;
	size_t vlen = 0;
	int r;

	/* The notice's number: its own, or the next one. */
	r = kv_get(c->kv, txn, NOTICE_TABLE, c->id, idlen, &v, &vlen);
	if (r == 0) {
		struct store_notice_info info;

		r = info_parse(c->id, idlen, v, vlen, &info, &c->num);
		free(v);
		if (r < 0)
			return KV_EINVAL;
		store_notice_info_free(&info);
	} else if (r == KV_ENOTFOUND) {
		uint8_t nb[4];

		r = kv_get(c->kv, txn, NOTICE_NUMBERS, "next", 4, &v, &vlen);
		if (r == KV_ENOTFOUND)
			c->num = 1;
		else if (r < 0)
			return r;
		else {
			c->num = vlen == 4 ? get_u32(v) : 1;
			free(v);
		}
		if (c->num == UINT32_MAX)
			return KV_EINVAL;
		put_u32(nb, c->num + 1);
		if ((r = kv_put(c->kv, txn, NOTICE_NUMBERS, "next", 4, nb, 4,
		    0)) < 0)
			return r;
		buf_init(&val, 3 * STORE_ADDRESS_MAX + 64);
		if (buf_printf(&val, "%u\n%lld\n%s\n%s\n", c->num,
		    (long long)c->when, c->list, c->sender) < 0)
			r = KV_EINVAL;
		else
			r = kv_put(c->kv, txn, NOTICE_TABLE, c->id, idlen,
			    val.data, val.len, 0);
		buf_free(&val);
		if (r < 0)
			return r;
	} else
		return r;

	buf_init(&key, 4 + STORE_ADDRESS_MAX + 1);
	buf_init(&val, 32);
	for (i = 0; i < c->n && r == 0; i++) {
		const struct store_rcpt_result *res = &c->res[i];
		uint8_t k[8], u[4];

		if (res->status == STORE_OK) {
			put_u32(k, c->num);
			put_u32(k + 4, res->mailbox_id);
			put_u32(u, res->uid);
			r = kv_put(c->kv, txn, NOTICE_RCPTS, k, 8, u, 4, 0);
			if (r < 0)
				break;
			/* Delivered on a retry: no longer failed. */
			buf_reset(&key);
			if (buf_append(&key, k, 4) < 0 ||
			    buf_append_str(&key, res->address) < 0) {
				r = KV_EINVAL;
				break;
			}
			r = kv_del(c->kv, txn, NOTICE_FAILED, key.data,
			    key.len);
			if (r == KV_ENOTFOUND)
				r = 0;
			continue;
		}
		buf_reset(&key);
		buf_reset(&val);
		put_u32(k, c->num);
		if (buf_append(&key, k, 4) < 0 ||
		    buf_append_str(&key, res->address) < 0 ||
		    buf_printf(&val, "%d", res->status) < 0)
			r = KV_EINVAL;
		else
			r = kv_put(c->kv, txn, NOTICE_FAILED, key.data,
			    key.len, val.data, val.len, 0);
	}
	buf_free(&key);
	buf_free(&val);
	return r;
}

int
store_notice_record(struct store_notices *n, const char *message_id,
    const char *list, const char *sender, int64_t when,
    const struct store_rcpt_result *results, size_t nres,
    const char **error_r)
{
	struct record_ctx rc = { message_id, list, sender, when, NULL, 0,
	    n->kv, 0 };
	size_t done = 0, i;
	int r;

	if (!id_ok(message_id) || strlen(list) > STORE_ADDRESS_MAX ||
	    strlen(sender) > STORE_ADDRESS_MAX || strchr(list, '\n') ||
	    strchr(sender, '\n')) {
		if (error_r != NULL)
			*error_r = "bad message-id, list or sender";
		return STORE_EINVAL;
	}
	for (i = 0; i < nres; i++)
		if (results[i].status != STORE_OK &&
		    strlen(results[i].address) > STORE_ADDRESS_MAX) {
			if (error_r != NULL)
				*error_r = "recipient address too long";
			return STORE_EINVAL;
		}
	/* The notice itself goes with the first batch, so it is listed as
	   soon as any recipient is. */
	do {
		rc.res = results + done;
		rc.n = nres - done < NOTICE_BATCH ? nres - done : NOTICE_BATCH;
		r = kv_txn_run(n->kv, record_txn, &rc, error_r);
		if (r < 0)
			return kv_to_store(r);
		done += rc.n;
	} while (done < nres);
	return 0;
}

void
store_notice_info_free(struct store_notice_info *info)
{
	free(info->message_id);
	free(info->list);
	free(info->sender);
	memset(info, 0, sizeof(*info));
}

struct list_ctx {
	int (*cb)(const struct store_notice_info *, void *);
	void *ctx;
};

static int
list_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct list_ctx *lc = arg;
	struct store_notice_info info;
	uint32_t num;
	int r;

	if (info_parse((const char *)key, klen, val, vlen, &info, &num) < 0)
		return 0;	/* skip a damaged record */
	r = lc->cb(&info, lc->ctx);
	store_notice_info_free(&info);
	return r;
}

int
store_notice_list(struct store_notices *n,
    int (*cb)(const struct store_notice_info *info, void *ctx), void *ctx,
    const char **error_r)
{
	struct list_ctx lc = { cb, ctx };
	int r = kv_iterate(n->kv, NULL, NOTICE_TABLE, NULL, 0, list_one, &lc);

	if (r < 0) {
		if (error_r != NULL)
			*error_r = kv_strerror(r);
		return kv_to_store(r);
	}
	return r;
}

static int
notice_get(struct store_notices *n, const char *message_id,
    struct store_notice_info *info_r, uint32_t *num_r, const char **error_r)
{
	uint8_t *v = NULL;
	size_t vlen = 0;
	int r;

	if (!id_ok(message_id))
		return STORE_ENOTFOUND;
	r = kv_get(n->kv, NULL, NOTICE_TABLE, message_id, strlen(message_id),
	    &v, &vlen);
	if (r < 0) {
		if (error_r != NULL)
			*error_r = kv_strerror(r);
		return kv_to_store(r);
	}
	r = info_parse(message_id, strlen(message_id), v, vlen, info_r,
	    num_r);
	free(v);
	if (r < 0 && error_r != NULL)
		*error_r = "damaged notice record";
	return r;
}

int
store_notice_get(struct store_notices *n, const char *message_id,
    struct store_notice_info *info_r, const char **error_r)
{
	uint32_t num;

	return notice_get(n, message_id, info_r, &num, error_r);
}

struct rcpt_ctx {
	struct store *store;
	int (*cb)(const struct store_notice_rcpt *, void *);
	void *ctx;
	int err;
};

static int
rcpt_ok(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct rcpt_ctx *rc = arg;
	struct store_notice_rcpt nr;
	struct store_mailbox_info mi;
	char owner[STORE_ADDRESS_MAX + 1];
	int r;

	if (klen != 8 || vlen != 4)
		return 0;
	memset(&nr, 0, sizeof(nr));
	nr.status = STORE_OK;
	nr.mailbox_id = get_u32(key + 4);
	nr.uid = get_u32(val);
	owner[0] = '\0';
	r = store_mailbox_get_id(rc->store, nr.mailbox_id, &mi, owner, NULL);
	if (r == STORE_ENOTFOUND)
		owner[0] = '\0';	/* the mailbox (account) is gone */
	else if (r < 0) {
		rc->err = r;
		return 1;
	}
	nr.address = owner;
	return rc->cb(&nr, rc->ctx);
}

static int
rcpt_failed(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct rcpt_ctx *rc = arg;
	struct store_notice_rcpt nr;
	char text[16], addr[STORE_ADDRESS_MAX + 1];
	int64_t st;
	const char *err;

	if (klen <= 4 || klen - 4 > STORE_ADDRESS_MAX || vlen >= sizeof(text))
		return 0;
	memcpy(addr, key + 4, klen - 4);
	addr[klen - 4] = '\0';
	memcpy(text, val, vlen);
	text[vlen] = '\0';
	if (strnum_i64(text, -1000, 1000, &st, &err) < 0)
		return 0;
	memset(&nr, 0, sizeof(nr));
	nr.address = addr;
	nr.status = (int)st;
	return rc->cb(&nr, rc->ctx);
}

int
store_notice_rcpts(struct store_notices *n, struct store *store,
    const char *message_id,
    int (*cb)(const struct store_notice_rcpt *rcpt, void *ctx), void *ctx,
    const char **error_r)
{
	struct rcpt_ctx rc = { store, cb, ctx, 0 };
	struct store_notice_info info;
	uint8_t prefix[4];
	uint32_t num;
	int r;

	if ((r = notice_get(n, message_id, &info, &num, error_r)) < 0)
		return r;
	store_notice_info_free(&info);
	put_u32(prefix, num);
	r = kv_iterate(n->kv, NULL, NOTICE_RCPTS, prefix, 4, rcpt_ok, &rc);
	if (r == 0 && rc.err == 0)
		r = kv_iterate(n->kv, NULL, NOTICE_FAILED, prefix, 4,
		    rcpt_failed, &rc);
	if (rc.err < 0) {
		if (error_r != NULL)
			*error_r = "cannot read a recipient's mailbox";
		return rc.err;
	}
	if (r < 0) {
		if (error_r != NULL)
			*error_r = kv_strerror(r);
		return kv_to_store(r);
	}
	return r;
}
