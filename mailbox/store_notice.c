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

#define NOTICE_TABLE "notices"		/* message-id -> info text */
#define NOTICE_RCPTS "rcpts"		/* message-id NUL address -> status */

struct store_notices {
	struct kv_env *kv;
};

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
	static const char *const tables[] = { NOTICE_TABLE, NOTICE_RCPTS,
	    NULL };
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

struct record_ctx {
	const char *id, *list, *sender;
	int64_t when;
	const struct store_rcpt_result *res;
	size_t n;
	struct kv_env *kv;
};

static int
record_txn(struct kv_txn *txn, void *arg)
{
	struct record_ctx *c = arg;
	size_t i, idlen = strlen(c->id);
	struct buf key, val;
	int r = 0;

	buf_init(&key, idlen + 1 + STORE_ADDRESS_MAX + 1);
	buf_init(&val, 3 * STORE_ADDRESS_MAX + 64);
	for (i = 0; i < c->n && r == 0; i++) {
		buf_reset(&key);
		buf_reset(&val);
		if (buf_append(&key, c->id, idlen) < 0 ||
		    buf_append_byte(&key, '\0') < 0 ||
		    buf_append_str(&key, c->res[i].address) < 0 ||
		    buf_printf(&val, "%d %u %u", c->res[i].status,
		    c->res[i].mailbox_id, c->res[i].uid) < 0) {
			r = KV_EINVAL;
			break;
		}
		r = kv_put(c->kv, txn, NOTICE_RCPTS, key.data, key.len,
		    val.data, val.len, 0);
	}
	if (r == 0) {
		buf_reset(&val);
		if (buf_printf(&val, "%lld\n%s\n%s\n", (long long)c->when,
		    c->list, c->sender) < 0)
			r = KV_EINVAL;
		else
			r = kv_put(c->kv, txn, NOTICE_TABLE, c->id, idlen,
			    val.data, val.len, 0);
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
	    n->kv };
	size_t done = 0;
	int r;

	if (!id_ok(message_id) || strlen(list) > STORE_ADDRESS_MAX ||
	    strlen(sender) > STORE_ADDRESS_MAX || strchr(list, '\n') ||
	    strchr(sender, '\n')) {
		if (error_r != NULL)
			*error_r = "bad message-id, list or sender";
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

/* Fill info from a NOTICE_TABLE value ("when\nlist\nsender\n"). */
static int
info_parse(const char *id, size_t idlen, const uint8_t *v, size_t vlen,
    struct store_notice_info *info)
{
	const char *p = (const char *)v, *end = p + vlen, *nl;
	char *field[3];
	int64_t when;
	const char *err;
	int i;

	for (i = 0; i < 3; i++) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			break;
		field[i] = xmemdup(p, (size_t)(nl - p));
		p = nl + 1;
	}
	if (i < 3 || strnum_i64(field[0], 0, INT64_MAX, &when, &err) < 0) {
		while (i-- > 0)
			free(field[i]);
		return STORE_EDAMAGED;
	}
	memset(info, 0, sizeof(*info));
	info->message_id = xmemdup(id, idlen);
	info->when = when;
	free(field[0]);
	info->list = field[1];
	info->sender = field[2];
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
	int err;
};

static int
list_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct list_ctx *lc = arg;
	struct store_notice_info info;
	int r;

	if (info_parse((const char *)key, klen, val, vlen, &info) < 0)
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
	struct list_ctx lc = { cb, ctx, 0 };
	int r = kv_iterate(n->kv, NULL, NOTICE_TABLE, NULL, 0, list_one, &lc);

	if (r < 0) {
		if (error_r != NULL)
			*error_r = kv_strerror(r);
		return kv_to_store(r);
	}
	return r;
}

int
store_notice_get(struct store_notices *n, const char *message_id,
    struct store_notice_info *info_r, const char **error_r)
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
	r = info_parse(message_id, strlen(message_id), v, vlen, info_r);
	free(v);
	if (r < 0 && error_r != NULL)
		*error_r = "damaged notice record";
	return r;
}

struct rcpt_ctx {
	size_t idlen;
	int (*cb)(const struct store_notice_rcpt *, void *);
	void *ctx;
};

static int
rcpt_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct rcpt_ctx *rc = arg;
	struct store_notice_rcpt nr;
	char text[64], addr[STORE_ADDRESS_MAX + 1];
	int64_t st;
	uint64_t mb, uid;
	const char *err;
	char *a, *b;
	size_t alen;

	if (klen <= rc->idlen + 1 || vlen >= sizeof(text))
		return 0;
	alen = klen - rc->idlen - 1;
	if (alen > STORE_ADDRESS_MAX)
		return 0;
	memcpy(addr, key + rc->idlen + 1, alen);
	addr[alen] = '\0';
	memcpy(text, val, vlen);
	text[vlen] = '\0';
	a = strchr(text, ' ');
	b = a != NULL ? strchr(a + 1, ' ') : NULL;
	if (b == NULL)
		return 0;
	*a++ = '\0';
	*b++ = '\0';
	if (strnum_i64(text, -1000, 1000, &st, &err) < 0 ||
	    strnum_u64(a, 0, UINT32_MAX, &mb, &err) < 0 ||
	    strnum_u64(b, 0, UINT32_MAX, &uid, &err) < 0)
		return 0;
	nr.address = addr;
	nr.status = (int)st;
	nr.mailbox_id = (uint32_t)mb;
	nr.uid = (uint32_t)uid;
	return rc->cb(&nr, rc->ctx);
}

int
store_notice_rcpts(struct store_notices *n, const char *message_id,
    int (*cb)(const struct store_notice_rcpt *rcpt, void *ctx), void *ctx,
    const char **error_r)
{
	size_t idlen = strlen(message_id);
	struct rcpt_ctx rc = { idlen, cb, ctx };
	struct buf prefix;
	int r;

	if (!id_ok(message_id))
		return STORE_ENOTFOUND;
	buf_init(&prefix, idlen + 1);
	if (buf_append(&prefix, message_id, idlen) < 0 ||
	    buf_append_byte(&prefix, '\0') < 0) {
		buf_free(&prefix);
		return STORE_EINVAL;
	}
	r = kv_iterate(n->kv, NULL, NOTICE_RCPTS, prefix.data, prefix.len,
	    rcpt_one, &rc);
	buf_free(&prefix);
	if (r < 0) {
		if (error_r != NULL)
			*error_r = kv_strerror(r);
		return kv_to_store(r);
	}
	return r;
}
