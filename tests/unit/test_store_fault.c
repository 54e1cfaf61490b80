/*
 * Fault injection for the store (SQLite's way, STYLE.md): the Nth Berkeley
 * DB call inside an operation's transaction fails with DB_LOCK_DEADLOCK or
 * ENOSPC, for N = 0, 1, 2, ... until the operation runs without reaching
 * the fault.  After every attempt store_check() finds no damage, and the
 * visible state is exactly the state before (ENOSPC: STORE_ETEMP, no
 * trace) or the state after (a deadlock is retried and succeeds).
 * The state includes what a delivery records besides its index records:
 * the queue entries, the notice report and the de-duplication records
 * (store_deliver_ex, store_notice_record, store_maintain's expiry).
 */
#include "autoconf.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <db.h>

#include "buf.h"
#include "mailbox_priv.h"
#include "store_util.h"

/* More attempts than any operation has DB calls: a runaway guard. */
#define FAULT_ATTEMPTS_MAX 2000

static const char *const A = "a@city.example";
static const char *const B = "b@city.example";

struct opstate {
	int iter;
	uint32_t inbox, archive, trash;
	uint32_t count;		/* messages expected in the target */
	uint32_t uid;		/* the message this attempt works on */
	uint32_t flags;
	char name[64];
};

/* ---- the visible state, as text ---- */

struct sig {
	struct fx *f;
	struct buf *b;
	const char *addr;
};

static int
sig_msg_cb(const struct store_msg *m, void *ctx)
{
	struct sig *s = ctx;

	buf_printf(s->b, " %u:%x:%llx:%llu", m->uid, m->flags,
	    (unsigned long long)m->keywords, (unsigned long long)m->modseq);
	return 0;
}

static int
sig_mbox_cb(const struct store_mailbox_info *mi, void *ctx)
{
	struct sig *s = ctx;

	buf_printf(s->b, "\n  %s %u %u %u %u %llu %llu %u %llx:", mi->name,
	    mi->uidvalidity, mi->uidnext, mi->messages, mi->unseen,
	    (unsigned long long)mi->highestmodseq,
	    (unsigned long long)mi->size, mi->recent,
	    (unsigned long long)mi->keywords_mask);
	assert_int_equal(store_msg_list(s->f->st, mi->id, NULL, 0, 0,
	    sig_msg_cb, s, NULL), 0);
	return 0;
}

static int
sig_acct_cb(const struct store_account *a, void *ctx)
{
	struct sig *s = ctx;

	buf_printf(s->b, "\n%s %llu %llu", a->address,
	    (unsigned long long)a->used_bytes,
	    (unsigned long long)a->used_messages);
	s->addr = a->address;
	return 0;
}

static int
sig_acct_mbox_cb(const struct store_account *a, void *ctx)
{
	struct sig *s = ctx;

	sig_acct_cb(a, ctx);
	assert_int_equal(store_mailbox_list(s->f->st, a->address,
	    sig_mbox_cb, s, NULL), 0);
	return 0;
}

static int
sig_queue_cb(const struct store_queue_item *it, void *ctx)
{
	struct sig *s = ctx;

	buf_printf(s->b, " q:%s:%lld:%zu", it->id, (long long)it->next_try,
	    it->len);
	return 0;
}

static int
sig_rcpt_cb(const struct store_notice_rcpt *r, void *ctx)
{
	struct sig *s = ctx;

	buf_printf(s->b, " r:%s:%d:%d:%u:%u", r->address, r->status,
	    r->deferred, r->mailbox_id, r->uid);
	return 0;
}

static int
sig_notice_cb(const struct store_notice_info *info, void *ctx)
{
	struct sig *s = ctx;

	buf_printf(s->b, "\nnotice %s %s %s", info->message_id, info->list,
	    info->sender);
	assert_int_equal(store_notice_rcpts(s->f->st, info->message_id,
	    sig_rcpt_cb, s, NULL), 0);
	return 0;
}

static char *
signature(struct fx *f)
{
	struct store_stats st;
	struct buf b;
	struct sig s;

	buf_init(&b, BUF_UNBOUNDED);
	s.f = f;
	s.b = &b;
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	buf_printf(&b, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
	    (unsigned long long)st.accounts, (unsigned long long)st.mailboxes,
	    (unsigned long long)st.messages, (unsigned long long)st.blobs,
	    (unsigned long long)st.blob_bytes, (unsigned long long)st.chunks,
	    (unsigned long long)st.aliases, (unsigned long long)st.queued,
	    (unsigned long long)st.notices, (unsigned long long)st.dedup);
	assert_int_equal(store_queue_list(f->st, INT64_MAX, sig_queue_cb, &s,
	    NULL), 0);
	assert_int_equal(store_notice_list(f->st, sig_notice_cb, &s, NULL),
	    0);
	assert_int_equal(store_account_list(f->st, NULL, sig_acct_mbox_cb, &s,
	    NULL), 0);
	return buf_steal(&b);
}

static void
report_cb(const char *problem, int repaired, void *ctx)
{
	(void)repaired;
	(void)ctx;
	print_error("check: %s\n", problem);
}

static uint32_t
mbox_count(struct fx *f, uint32_t id)
{
	struct store_mailbox_info mi;
	const char *err = NULL;
	int r;

	r = store_mailbox_get_id(f->st, id, &mi, NULL, &err);
	if (r != 0)
		print_error("mailbox %u: %s\n", id, err);
	assert_int_equal(r, 0);
	return mi.messages;
}

static void
deliver_plain(struct fx *f, const char *to, int n, uint32_t *uid_r)
{
	struct store_rcpt_result res;
	char msg[128];
	int len;

	/* distinct content each time, so every delivery makes a blob */
	len = snprintf(msg, sizeof(msg), "Subject: m%d\r\n\r\nbody %d\r\n", n,
	    n);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)msg,
	    (size_t)len, &to, 1, 0, &res, NULL), 0);
	assert_int_equal(res.status, 0);
	if (uid_r != NULL)
		*uid_r = res.uid;
}

/* ---- the operations ---- */

struct op {
	const char *name;
	void (*prep)(struct fx *, struct opstate *);
	int (*run)(struct fx *, struct opstate *);
	void (*after)(struct fx *, struct opstate *);
};

static void
prep_count_inbox(struct fx *f, struct opstate *os)
{
	os->count = mbox_count(f, os->inbox);
}

static int
run_deliver(struct fx *f, struct opstate *os)
{
	const char *rcpts[] = { B, A };
	struct store_rcpt_result res[2];
	char msg[128];
	int len, r;

	len = snprintf(msg, sizeof(msg), "Subject: fault %d\r\n\r\nx\r\n",
	    os->iter);
	r = store_deliver(f->st, (const uint8_t *)msg, (size_t)len, rcpts, 2,
	    0, res, NULL);
	if (r == 0) {
		assert_int_equal(res[0].status, 0);
		assert_int_equal(res[1].status, 0);
	}
	return r;
}

static void
after_inbox_plus_one(struct fx *f, struct opstate *os)
{
	assert_int_equal(mbox_count(f, os->inbox), os->count + 1);
}

static void
prep_count_archive(struct fx *f, struct opstate *os)
{
	os->count = mbox_count(f, os->archive);
}

static int
run_append(struct fx *f, struct opstate *os)
{
	const char *kw[] = { "Fault", "Other" };
	uint32_t uidv, uid;

	(void)os;
	return store_append(f->st, A, "Archive",
	    (const uint8_t *)"Subject: a\r\n\r\nappended\r\n", 25,
	    STORE_FLAG_SEEN, kw, 2, 0, &uidv, &uid, NULL);
}

static void
after_archive_plus_one(struct fx *f, struct opstate *os)
{
	assert_int_equal(mbox_count(f, os->archive), os->count + 1);
}

static void
prep_flags(struct fx *f, struct opstate *os)
{
	(void)f;
	os->flags = os->iter % 2 ? STORE_FLAG_SEEN | STORE_FLAG_DRAFT :
	    STORE_FLAG_FLAGGED;
}

static int
run_flags(struct fx *f, struct opstate *os)
{
	const char *kw[] = { "Bill" };

	return store_flags_update(f->st, os->inbox, NULL, 0,
	    STORE_FLAGS_REPLACE, os->flags, kw, os->iter % 2, 0, NULL, NULL,
	    NULL, NULL);
}

static int
flags_check_cb(const struct store_msg *m, void *ctx)
{
	struct opstate *os = ctx;

	assert_int_equal(m->flags, os->flags);
	return 0;
}

static void
after_flags(struct fx *f, struct opstate *os)
{
	assert_int_equal(store_msg_list(f->st, os->inbox, NULL, 0, 0,
	    flags_check_cb, os, NULL), 0);
}

static int
run_copy(struct fx *f, struct opstate *os)
{
	struct store_uid_map map;
	int r;

	r = store_copy(f->st, os->inbox, NULL, 0, os->archive, 0, &map, NULL);
	if (r == 0) {
		os->uid = (uint32_t)map.n;	/* checked once disarmed */
		store_uid_map_free(&map);
	}
	return r;
}

static void
after_copy(struct fx *f, struct opstate *os)
{
	assert_int_equal(os->uid, mbox_count(f, os->inbox));
	assert_int_equal(mbox_count(f, os->archive),
	    os->count + mbox_count(f, os->inbox));
}

static void
prep_move(struct fx *f, struct opstate *os)
{
	deliver_plain(f, A, 1000 + os->iter, &os->uid);
	os->count = mbox_count(f, os->trash);
}

static int
run_move(struct fx *f, struct opstate *os)
{
	struct store_uid_range r = { os->uid, os->uid };
	struct store_uid_map map;
	int ret;

	ret = store_copy(f->st, os->inbox, &r, 1, os->trash, 1, &map, NULL);
	if (ret == 0) {
		assert_int_equal(map.n, 1);
		store_uid_map_free(&map);
	}
	return ret;
}

static void
after_move(struct fx *f, struct opstate *os)
{
	struct store_msg m;

	assert_int_equal(mbox_count(f, os->trash), os->count + 1);
	assert_int_equal(store_msg_get(f->st, os->inbox, os->uid, &m, NULL),
	    STORE_ENOTFOUND);
}

static void
prep_expunge(struct fx *f, struct opstate *os)
{
	struct store_uid_range r;

	/* One \Deleted message at a time, or the work grows with N. */
	if (os->uid != 0)
		return;
	deliver_plain(f, A, 2000 + os->iter, &os->uid);
	r.lo = r.hi = os->uid;
	assert_int_equal(store_flags_update(f->st, os->inbox, &r, 1,
	    STORE_FLAGS_ADD, STORE_FLAG_DELETED, NULL, 0, 0, NULL, NULL, NULL,
	    NULL), 0);
}

static int
run_expunge(struct fx *f, struct opstate *os)
{
	return store_expunge(f->st, os->inbox, NULL, 0, NULL, NULL, NULL);
}

static int
vanished_cb(uint32_t uid, void *ctx)
{
	struct opstate *os = ctx;

	if (uid == os->uid)
		os->count = 1;
	return 0;
}

static void
after_expunge(struct fx *f, struct opstate *os)
{
	struct store_msg m;

	assert_int_equal(store_msg_get(f->st, os->inbox, os->uid, &m, NULL),
	    STORE_ENOTFOUND);
	os->count = 0;
	assert_int_equal(store_vanished(f->st, os->inbox, 0, vanished_cb, os,
	    NULL), 0);
	assert_int_equal(os->count, 1);
	os->uid = 0;
}

static void
prep_name(struct fx *f, struct opstate *os)
{
	(void)f;
	snprintf(os->name, sizeof(os->name), "n%d@city.example", os->iter);
}

static int
run_account_add(struct fx *f, struct opstate *os)
{
	struct store_account_spec sp;

	memset(&sp, 0, sizeof(sp));
	sp.address = os->name;
	sp.class = STORE_CLASS_CITIZEN;
	sp.password = "pw";
	return store_account_add(f->st, &sp, NULL);
}

static void
after_account_add(struct fx *f, struct opstate *os)
{
	struct store_mailbox_info mi;

	assert_int_equal(store_mailbox_get(f->st, os->name, "Archive", &mi,
	    NULL), 0);
}

static void
prep_account_del(struct fx *f, struct opstate *os)
{
	snprintf(os->name, sizeof(os->name), "d%d@city.example", os->iter);
	assert_int_equal(fx_citizen(f, os->name), 0);
	deliver_plain(f, os->name, 3000 + os->iter, NULL);
	deliver_plain(f, os->name, 1, NULL);	/* shares a blob with a */
}

static int
run_account_del(struct fx *f, struct opstate *os)
{
	return store_account_del(f->st, os->name, NULL);
}

static void
after_account_del(struct fx *f, struct opstate *os)
{
	struct store_account *a;

	assert_int_equal(store_account_get(f->st, os->name, &a, NULL),
	    STORE_ENOTFOUND);
}

static int
run_mailbox_rename(struct fx *f, struct opstate *os)
{
	(void)os;
	return store_mailbox_rename(f->st, A, "Box", "Moved/Box", NULL);
}

/* The same names every time, so the work does not grow with N. */
static void
prep_mailbox_rename(struct fx *f, struct opstate *os)
{
	struct store_mailbox_info mi;

	(void)os;
	if (store_mailbox_get(f->st, A, "Box", &mi, NULL) == 0)
		return;
	assert_int_equal(store_mailbox_delete(f->st, A, "Moved/Box/child",
	    NULL), 0);
	assert_int_equal(store_mailbox_delete(f->st, A, "Moved/Box", NULL),
	    0);
	assert_int_equal(store_mailbox_delete(f->st, A, "Moved", NULL), 0);
	assert_int_equal(store_mailbox_create(f->st, A, "Box/child", 0, NULL),
	    0);
}

static void
after_mailbox_rename(struct fx *f, struct opstate *os)
{
	struct store_mailbox_info mi;

	(void)os;
	assert_int_equal(store_mailbox_get(f->st, A, "Moved/Box/child", &mi,
	    NULL), 0);
	assert_int_equal(store_mailbox_get(f->st, A, "Box", &mi, NULL),
	    STORE_ENOTFOUND);
}

/* ---- what a delivery records besides its index records ---- */

struct extras_ctx {
	char id[32];
};

static int
extras_queue_cb(struct store_txn_queue *tq,
    const struct store_rcpt_result *res, size_t nres, void *arg)
{
	struct extras_ctx *x = arg;
	struct store_queue_item it;

	(void)res;
	(void)nres;
	memset(&it, 0, sizeof(it));
	it.id = x->id;
	it.next_try = 1;
	it.summary = "domain=remote.example rcpts=1";
	it.data = (const uint8_t *)"opaque";
	it.len = 6;
	return store_txn_queue_put(tq, &it);
}

/* A delivery with a notice record, a queue entry and a dedup record. */
static int
run_deliver_ex(struct fx *f, struct opstate *os)
{
	const char *rcpts[] = { B, A };
	struct store_rcpt_result res[2];
	struct store_deliver_opts o;
	struct extras_ctx x;
	char msg[128], mid[64], ref[32];
	int len;

	len = snprintf(msg, sizeof(msg), "Subject: ex %d\r\n\r\nx\r\n",
	    os->iter);
	snprintf(mid, sizeof(mid), "<ex%d@city.example>", os->iter);
	snprintf(ref, sizeof(ref), "ref%d", os->iter);
	snprintf(x.id, sizeof(x.id), "q%d", os->iter);
	memset(&o, 0, sizeof(o));
	o.notice_id = mid;
	o.notice_list = "all@city.example";
	o.notice_sender = A;
	o.notice_defer = 1;
	o.queue_cb = extras_queue_cb;
	o.queue_ctx = &x;
	o.dedup_account = A;
	o.dedup_id = mid;
	o.dedup_until = (int64_t)time(NULL) + 3600;
	o.dedup_ref = ref;
	return store_deliver_ex(f->st, (const uint8_t *)msg, (size_t)len,
	    rcpts, 2, 0, res, &o, NULL, NULL);
}

static int
find_queue_cb(const struct store_queue_item *it, void *ctx)
{
	return strcmp(it->id, ctx) == 0 ? 1 : 0;
}

static int
count_rcpt_cb(const struct store_notice_rcpt *r, void *ctx)
{
	(void)r;
	(*(uint32_t *)ctx)++;
	return 0;
}

static void
after_deliver_ex(struct fx *f, struct opstate *os)
{
	const char *rcpts[] = { A };
	struct store_rcpt_result res;
	struct store_deliver_opts o;
	char id[32], mid[64], ref[STORE_DEDUP_REF_MAX + 1], want[32];
	uint32_t n = 0;

	after_inbox_plus_one(f, os);
	snprintf(id, sizeof(id), "q%d", os->iter);
	assert_int_equal(store_queue_list(f->st, INT64_MAX, find_queue_cb, id,
	    NULL), 1);
	snprintf(mid, sizeof(mid), "<ex%d@city.example>", os->iter);
	assert_int_equal(store_notice_rcpts(f->st, mid, count_rcpt_cb, &n,
	    NULL), 0);
	assert_int_equal(n, 2);
	/* Submitted again: refused as a duplicate, naming the first. */
	memset(&o, 0, sizeof(o));
	o.dedup_account = A;
	o.dedup_id = mid;
	o.dedup_until = (int64_t)time(NULL) + 3600;
	assert_int_equal(store_deliver_ex(f->st, (const uint8_t *)"x\r\n", 3,
	    rcpts, 1, 0, &res, &o, ref, NULL), STORE_EEXISTS);
	snprintf(want, sizeof(want), "ref%d", os->iter);
	assert_string_equal(ref, want);
}

/*
 * An authenticated remote-only submission: the queue entry and the dedup
 * record, one transaction.
 */
static int
run_queue_only(struct fx *f, struct opstate *os)
{
	struct store_deliver_opts o;
	struct extras_ctx x;
	char mid[64];

	snprintf(x.id, sizeof(x.id), "r%d", os->iter);
	snprintf(mid, sizeof(mid), "<r%d@city.example>", os->iter);
	memset(&o, 0, sizeof(o));
	o.queue_cb = extras_queue_cb;
	o.queue_ctx = &x;
	o.dedup_account = A;
	o.dedup_id = mid;
	o.dedup_until = (int64_t)time(NULL) + 3600;
	o.dedup_ref = "remote";
	return store_deliver_ex(f->st, (const uint8_t *)"x\r\n", 3, NULL, 0,
	    0, NULL, &o, NULL, NULL);
}

static void
after_queue_only(struct fx *f, struct opstate *os)
{
	char id[32];

	snprintf(id, sizeof(id), "r%d", os->iter);
	assert_int_equal(store_queue_list(f->st, INT64_MAX, find_queue_cb, id,
	    NULL), 1);
}

/* A deferred copy finally failed (the agent past queue_lifetime). */
static void
prep_notice_record(struct fx *f, struct opstate *os)
{
	struct store_rcpt_result res = { A, STORE_OK, os->inbox, 1 };

	if (os->uid == 0) {
		assert_int_equal(store_notice_record(f->st, "<rec@x>",
		    "all@city.example", A, 1, &res, 1, NULL), 0);
		os->uid = 1;
	}
	os->count = 0;
	assert_int_equal(store_notice_rcpts(f->st, "<rec@x>", count_rcpt_cb,
	    &os->count, NULL), 0);
}

static int
run_notice_record(struct fx *f, struct opstate *os)
{
	struct store_rcpt_result res[2];

	snprintf(os->name, sizeof(os->name), "f%d@city.example", os->iter);
	res[0].address = os->name;
	res[0].status = STORE_EQUOTA;
	res[0].mailbox_id = res[0].uid = 0;
	res[1].address = B;
	res[1].status = STORE_OK;
	res[1].mailbox_id = os->inbox;
	res[1].uid = 2;
	return store_notice_record(f->st, "<rec@x>", NULL, NULL, 2, res, 2,
	    NULL);
}

static void
after_notice_record(struct fx *f, struct opstate *os)
{
	uint32_t n = 0;

	assert_int_equal(store_notice_rcpts(f->st, "<rec@x>", count_rcpt_cb,
	    &n, NULL), 0);
	assert_int_equal(n, os->count + 2);
}

/* Expired de-duplication records go at maintenance. */
static void
prep_dedup_expire(struct fx *f, struct opstate *os)
{
	const char *rcpts[] = { A };
	struct store_rcpt_result res;
	struct store_deliver_opts o;
	struct store_stats st;
	char mid[64];

	/* One expired record at a time, or the work grows with N. */
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	if (st.dedup > 0)
		return;
	snprintf(mid, sizeof(mid), "<old%d@city.example>", os->iter);
	memset(&o, 0, sizeof(o));
	o.dedup_account = A;
	o.dedup_id = mid;
	o.dedup_until = 1;	/* long past */
	o.dedup_ref = "old";
	assert_int_equal(store_deliver_ex(f->st, (const uint8_t *)"x\r\n", 3,
	    rcpts, 1, 0, &res, &o, NULL, NULL), 0);
}

static int
run_dedup_expire(struct fx *f, struct opstate *os)
{
	(void)os;
	return store_maintain(f->st, NULL);
}

static void
after_dedup_expire(struct fx *f, struct opstate *os)
{
	struct store_stats st;

	(void)os;
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.dedup, 0);
}

static const struct op ops[] = {
	{ "deliver with notice, queue and dedup", prep_count_inbox,
	  run_deliver_ex, after_deliver_ex },
	{ "queue only", prep_count_inbox, run_queue_only, after_queue_only },
	{ "notice record", prep_notice_record, run_notice_record,
	  after_notice_record },
	{ "dedup expire", prep_dedup_expire, run_dedup_expire,
	  after_dedup_expire },
	{ "deliver", prep_count_inbox, run_deliver, after_inbox_plus_one },
	{ "append", prep_count_archive, run_append, after_archive_plus_one },
	{ "flags", prep_flags, run_flags, after_flags },
	{ "copy", prep_count_archive, run_copy, after_copy },
	{ "move", prep_move, run_move, after_move },
	{ "expunge", prep_expunge, run_expunge, after_expunge },
	{ "account add", prep_name, run_account_add, after_account_add },
	{ "account del", prep_account_del, run_account_del,
	  after_account_del },
	{ "mailbox rename", prep_mailbox_rename, run_mailbox_rename,
	  after_mailbox_rename },
};

static void
run_op(const struct op *op, int err)
{
	struct store_mailbox_info mi;
	struct opstate os;
	struct fx *f = fx_new();
	char *before, *now;
	int r, fired, n, i;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, A), 0);
	assert_int_equal(fx_citizen(f, B), 0);
	memset(&os, 0, sizeof(os));
	for (i = 0; i < 3; i++)
		deliver_plain(f, A, i, NULL);
	assert_int_equal(store_mailbox_get(f->st, A, "INBOX", &mi, NULL), 0);
	os.inbox = mi.id;
	assert_int_equal(store_mailbox_get(f->st, A, "Archive", &mi, NULL), 0);
	os.archive = mi.id;
	assert_int_equal(store_mailbox_get(f->st, A, "Trash", &mi, NULL), 0);
	os.trash = mi.id;
	assert_int_equal(store_mailbox_create(f->st, A, "Box/child", 0, NULL),
	    0);

	for (n = 0; n < FAULT_ATTEMPTS_MAX; n++) {
		os.iter = n;
		if (getenv("FAULT_DEBUG") != NULL)
			print_message("# %s %d\n", op->name, n);
		op->prep(f, &os);
		before = signature(f);
		store_fault_inject(f->st, (unsigned)n, err);
		r = op->run(f, &os);
		fired = store_fault_fired(f->st);
		store_fault_inject(f->st, UINT32_MAX, 0);
		if (store_check(f->st, STORE_CHECK_CONTENTS, report_cb, NULL,
		    NULL) != 0) {
			print_error("%s: damage after fault %d\n", op->name,
			    n);
			fail();
		}
		now = signature(f);
		if (fired && err != DB_LOCK_DEADLOCK) {
			if (r != STORE_ETEMP || strcmp(before, now) != 0) {
				print_error("%s: fault %d: r=%d, state "
				    "changed:\n%s\n---\n%s\n", op->name, n, r,
				    before, now);
				fail();
			}
		} else {
			if (r != 0) {
				print_error("%s: fault %d (%s): r=%d\n",
				    op->name, n, fired ? "fired" : "not hit",
				    r);
				fail();
			}
			op->after(f, &os);
		}
		free(before);
		free(now);
		if (!fired)
			break;
	}
	assert_true(n > 3);	/* every operation makes several calls */
	assert_true(n < FAULT_ATTEMPTS_MAX);
	fx_free(f);
}

static void
test_deadlock(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		run_op(&ops[i], DB_LOCK_DEADLOCK);
}

static void
test_enospc(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		run_op(&ops[i], ENOSPC);
}

/* Deadlocks past the retry limit end in STORE_ETEMP, leaving no trace. */
static int
always_deadlock_fn(struct store *s, DB_TXN *txn, void *ctx)
{
	int r;

	(*(int *)ctx)++;
	r = st_put(s, SDB_DOMAINS, txn, "ghost.example", 13, "x", 1, 0);
	assert_int_equal(r, 0);
	return STORE_ERETRY;
}

static void
test_retry_limit(void **state)
{
	struct fx *f = fx_new();
	const char *err = NULL;
	int calls = 0;

	(void)state;
	assert_int_equal(st_txn_run(f->st, ST_TXN_WRITE, always_deadlock_fn,
	    &calls, &err), STORE_ETEMP);
	assert_int_equal(calls, STORE_TXN_RETRY_MAX);
	assert_non_null(err);
	assert_int_equal(store_domain_exists(f->st, "ghost.example"), 0);
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deadlock),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_retry_limit),
	};

	return cmocka_run_group_tests_name("store_fault", tests, NULL, NULL);
}
