/*
 * Unit tests for mailbox/store_notice.c: the notice report records kept in
 * the store's own tables.  Record, list, get, recipients (more than one
 * packed record; delivered ones name mailboxes this empty store does not
 * have), a second delivery of the same Message-ID, unknown ids, the
 * Message-ID length limit and the packing limit at N-1, N and N+1, and a
 * deferred recipient (store_deliver_ex over quota) that is delivered on a
 * retry; store_check over the queue, the report and the dedup records
 * (clean when written by the API; damage injected below it is found and
 * repaired).
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "mailbox_priv.h"
#include "xmalloc.h"

/* More than one packed record of delivered recipients. */
#define T_RCPTS (STORE_NOTICE_PACK_MAX + 500)

struct fix {
	char dir[64];
	struct config *cfg;
	struct store *st;
};

static int
setup(void **state)
{
	struct fix *f = xcalloc(1, sizeof(*f));
	const char *err = NULL;

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_store_notice.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->cfg = config_defaults();
	assert_int_equal(config_set(f->cfg, "store", "path", f->dir, &err),
	    0);
	assert_int_equal(config_set(f->cfg, "store", "password_opslimit", "1",
	    &err), 0);
	assert_int_equal(config_set(f->cfg, "store", "password_memlimit",
	    "8M", &err), 0);
	assert_int_equal(store_open(f->cfg, STORE_OPEN_CREATE, &f->st, &err),
	    0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *f = *state;
	char *cmd = xasprintf("rm -rf '%s'", f->dir);

	store_close(f->st);
	(void)system(cmd);
	free(cmd);
	config_free(f->cfg);
	free(f);
	return 0;
}

struct seen {
	size_t n, ok, bad;
	uint32_t last_uid;
	char first[64];
};

static int
count_rcpt(const struct store_notice_rcpt *r, void *ctx)
{
	struct seen *s = ctx;

	s->n++;
	if (r->status == STORE_OK) {
		/* No such mailbox in this store: the owner is unknown. */
		assert_string_equal(r->address, "");
		s->ok++;
	} else {
		snprintf(s->first, sizeof(s->first), "%s", r->address);
		s->bad++;
	}
	s->last_uid = r->uid;
	return 0;
}

static int
count_rcpt_any(const struct store_notice_rcpt *r, void *ctx)
{
	struct seen *s = ctx;

	s->n++;
	if (r->status == STORE_OK)
		s->ok++;
	else
		s->bad++;
	return 0;
}

static int
count_notice(const struct store_notice_info *info, void *ctx)
{
	size_t *n = ctx;

	assert_non_null(info->message_id);
	(*n)++;
	return 0;
}

static void
test_record_report(void **state)
{
	struct fix *f = *state;
	struct store *n = f->st;
	struct store_rcpt_result *res;
	struct store_notice_info info;
	struct seen s;
	char **addrs;
	size_t i, nn = 0;
	const char *err = NULL;

	/* Nothing recorded yet. */
	assert_int_equal(store_notice_list(n, count_notice, &nn, &err), 0);
	assert_int_equal(nn, 0);

	res = xcalloc(T_RCPTS, sizeof(*res));
	addrs = xcalloc(T_RCPTS, sizeof(*addrs));
	for (i = 0; i < T_RCPTS; i++) {
		addrs[i] = xasprintf("c%05zu@city.example", i);
		res[i].address = addrs[i];
		res[i].status = i == 7 ? STORE_EQUOTA : STORE_OK;
		res[i].mailbox_id = (uint32_t)(100 + i);
		res[i].uid = 1;
	}
	assert_int_equal(store_notice_record(n, "<n1@city.example>",
	    "all@city.example", "water@city.example", 1700000000, res,
	    T_RCPTS, &err), 0);

	assert_int_equal(store_notice_get(n, "<n1@city.example>", &info,
	    &err), 0);
	assert_string_equal(info.list, "all@city.example");
	assert_string_equal(info.sender, "water@city.example");
	assert_int_equal(info.when, 1700000000);
	store_notice_info_free(&info);

	memset(&s, 0, sizeof(s));
	assert_int_equal(store_notice_rcpts(n, "<n1@city.example>",
	    count_rcpt, &s, &err), 0);
	assert_int_equal(s.n, T_RCPTS);
	assert_int_equal(s.bad, 1);
	assert_string_equal(s.first, "c00007@city.example");

	/* The same id again (a retried delivery): replaced, not doubled. */
	res[7].status = STORE_OK;
	res[7].uid = 9;
	assert_int_equal(store_notice_record(n, "<n1@city.example>",
	    "all@city.example", "water@city.example", 1700000001, res + 7, 1,
	    &err), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(store_notice_rcpts(n, "<n1@city.example>",
	    count_rcpt, &s, &err), 0);
	assert_int_equal(s.n, T_RCPTS);
	assert_int_equal(s.bad, 0);

	/* A second notice; its recipients do not mix with the first's. */
	assert_int_equal(store_notice_record(n, "<n1@city.example>x",
	    "all@city.example", "water@city.example", 1700000002, res, 2,
	    &err), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(store_notice_rcpts(n, "<n1@city.example>x",
	    count_rcpt, &s, &err), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(store_notice_list(n, count_notice, &nn, &err), 0);
	assert_int_equal(nn, 2);

	assert_int_equal(store_notice_get(n, "<unknown@x>", &info, &err),
	    STORE_ENOTFOUND);
	/* Bad ids: refused, never stored. */
	assert_int_equal(store_notice_record(n, "", "l@x", "s@x", 1, res, 1,
	    &err), STORE_EINVAL);
	assert_int_equal(store_notice_record(n, "<a b@x>", "l@x", "s@x", 1,
	    res, 1, &err), STORE_EINVAL);
	assert_int_equal(store_notice_record(n, "<a@x>", "l@x\nX", "s@x", 1,
	    res, 1, &err), STORE_EINVAL);

	for (i = 0; i < T_RCPTS; i++)
		free(addrs[i]);
	free(addrs);
	free(res);
}

static void
test_id_limit(void **state)
{
	struct fix *f = *state;
	struct store *n = f->st;
	struct store_rcpt_result res = { "a@city.example", STORE_OK, 1, 1 };
	struct store_notice_info info;
	char id[STORE_NOTICE_ID_MAX + 2];
	const char *err = NULL;
	size_t len;

	for (len = STORE_NOTICE_ID_MAX - 1; len <= STORE_NOTICE_ID_MAX + 1;
	    len++) {
		memset(id, 'i', len);
		id[0] = '<';
		id[len - 1] = '>';
		id[len] = '\0';
		assert_int_equal(store_notice_record(n, id, "l@x", "s@x", 1,
		    &res, 1, &err), len <= STORE_NOTICE_ID_MAX ? 0 :
		    STORE_EINVAL);
		if (len <= STORE_NOTICE_ID_MAX) {
			assert_int_equal(store_notice_get(n, id, &info, &err),
			    0);
			store_notice_info_free(&info);
		}
	}
}

/* Delivered recipients N-1, N, N+1 of one packed record: none lost. */
static void
test_pack_limit(void **state)
{
	struct fix *f = *state;
	struct store_rcpt_result *res;
	struct seen s;
	char id[64];
	const char *err = NULL;
	size_t n, i;

	res = xcalloc(STORE_NOTICE_PACK_MAX + 1, sizeof(*res));
	for (n = STORE_NOTICE_PACK_MAX - 1; n <= STORE_NOTICE_PACK_MAX + 1;
	    n++) {
		for (i = 0; i < n; i++) {
			res[i].address = "x@city.example";
			res[i].status = STORE_OK;
			res[i].mailbox_id = (uint32_t)(1 + i * 977);
			res[i].uid = (uint32_t)(i * 131071 + 1);
		}
		snprintf(id, sizeof(id), "<pack%zu@city.example>", n);
		assert_int_equal(store_notice_record(f->st, id, "l@x", "s@x",
		    1, res, n, &err), 0);
		memset(&s, 0, sizeof(s));
		assert_int_equal(store_notice_rcpts(f->st, id, count_rcpt, &s,
		    &err), 0);
		assert_int_equal(s.n, n);
		assert_int_equal(s.ok, n);
		assert_int_equal(s.last_uid, (uint32_t)((n - 1) * 131071 + 1));
	}
	free(res);
}

struct states {
	size_t delivered, deferred, failed;
};

static int
count_states(const struct store_notice_rcpt *r, void *ctx)
{
	struct states *st = ctx;

	if (r->status == STORE_OK) {
		assert_string_equal(r->address, "c2@city.example");
		st->delivered++;
	} else if (r->deferred)
		st->deferred++;
	else
		st->failed++;
	return 0;
}

/*
 * A notice delivered with store_deliver_ex: the member over quota is
 * recorded as deferred in the same transaction; raised quota and a retry
 * make it delivered; a copy that finally fails is recorded as failed.
 */
static void
test_deferred(void **state)
{
	struct fix *f = *state;
	struct store_account_spec spec;
	struct store_deliver_opts o;
	struct store_rcpt_result res[2];
	const char *rcpts[2] = { "c1@city.example", "c2@city.example" };
	const char *msg = "Message-ID: <d1@city.example>\r\nSubject: x\r\n"
	    "\r\nbody\r\n";
	struct states st;
	const char *err = NULL;

	assert_int_equal(store_domain_add(f->st, "city.example", &err), 0);
	memset(&spec, 0, sizeof(spec));
	spec.class = STORE_CLASS_CITIZEN;
	spec.password = "pw";
	spec.address = rcpts[0];
	spec.quota_messages = 1;
	assert_int_equal(store_account_add(f->st, &spec, &err), 0);
	spec.address = rcpts[1];
	spec.quota_messages = 0;
	assert_int_equal(store_account_add(f->st, &spec, &err), 0);
	/* Fill c1's one-message quota. */
	assert_int_equal(store_deliver(f->st, (const uint8_t *)"x\r\n", 3,
	    rcpts, 1, 0, res, &err), 0);
	assert_int_equal(res[0].status, STORE_OK);

	memset(&o, 0, sizeof(o));
	o.notice_id = "<d1@city.example>";
	o.notice_list = "all@city.example";
	o.notice_sender = "water@city.example";
	o.notice_defer = 1;
	assert_int_equal(store_deliver_ex(f->st, (const uint8_t *)msg,
	    strlen(msg), rcpts, 2, 0, res, &o, NULL, &err), 0);
	assert_int_equal(res[0].status, STORE_EQUOTA);
	assert_int_equal(res[1].status, STORE_OK);
	memset(&st, 0, sizeof(st));
	assert_int_equal(store_notice_rcpts(f->st, o.notice_id, count_states,
	    &st, &err), 0);
	assert_int_equal(st.delivered, 1);
	assert_int_equal(st.deferred, 1);
	assert_int_equal(st.failed, 0);

	/* Quota raised, retried (as the agent does: list/sender unknown). */
	assert_int_equal(store_account_set_quota(f->st, rcpts[0], 0, 10,
	    &err), 0);
	o.notice_list = NULL;
	o.notice_sender = NULL;
	assert_int_equal(store_deliver_ex(f->st, (const uint8_t *)msg,
	    strlen(msg), rcpts, 1, 0, res, &o, NULL, &err), 0);
	assert_int_equal(res[0].status, STORE_OK);
	memset(&st, 0, sizeof(st));
	/* c1's copy now counts as delivered (its owner is c1). */
	o.notice_id = "<d1@city.example>";
	{
		struct seen s;

		memset(&s, 0, sizeof(s));
		assert_int_equal(store_notice_rcpts(f->st, o.notice_id,
		    count_rcpt_any, &s, &err), 0);
		assert_int_equal(s.ok, 2);
		assert_int_equal(s.bad, 0);
	}

	/* A retry of a message that was never a notice records nothing. */
	o.notice_id = "<other@city.example>";
	assert_int_equal(store_deliver_ex(f->st, (const uint8_t *)msg,
	    strlen(msg), rcpts + 1, 1, 0, res, &o, NULL, &err), 0);
	{
		struct store_notice_info info;

		assert_int_equal(store_notice_get(f->st, o.notice_id, &info,
		    &err), STORE_ENOTFOUND);
	}
}

static int
damage_fn(struct store *s, DB_TXN *txn, void *ctx)
{
	uint8_t k[8], v[4] = { 1, 2, 3, 4 };
	uint8_t exp[8 + 8];
	int r;

	(void)ctx;
	/* A queue entry too short to hold its header. */
	if ((r = st_put(s, SDB_QUEUE, txn, "bad", 3, v, 4, 0)) != 0)
		return r;
	/* Delivered recipients of notice number 4000, which is not there. */
	be32_put(k, 4000);
	be32_put(k + 4, 0);
	if ((r = st_put(s, SDB_NOTICE_OK, txn, k, 8, v, 2, 0)) != 0)
		return r;
	/* An expiry entry of no record. */
	be64_put(exp, 99);
	memcpy(exp + 8, "nobody\0\0", 8);
	if ((r = st_put(s, SDB_DEDUP_EXP, txn, exp, sizeof(exp), "", 0,
	    0)) != 0)
		return r;
	/* A record without its expiry entry. */
	be64_put(exp, 4000000000ULL);
	return st_put(s, SDB_DEDUP, txn, "x@y\0<z>", 8, exp, 8, 0);
}

static size_t problems;

static void
count_problem(const char *problem, int repaired, void *ctx)
{
	(void)repaired;
	(void)problem;
	(void)ctx;
	problems++;
}

static int
one_queue_item(struct store_txn_queue *tq,
    const struct store_rcpt_result *res, size_t nres, void *ctx)
{
	struct store_queue_item it = { "q1", 0, "domain=x.example", NULL, 0 };

	(void)res;
	(void)nres;
	(void)ctx;
	it.data = (const uint8_t *)"data";
	it.len = 4;
	return store_txn_queue_put(tq, &it);
}

static void
test_check(void **state)
{
	struct fix *f = *state;
	struct store_account_spec spec;
	struct store_deliver_opts o;
	struct store_rcpt_result res[1];
	const char *rcpts[1] = { "c1@city.example" };
	const char *msg = "Message-ID: <k@city.example>\r\n\r\nx\r\n";
	const char *err = NULL;

	assert_int_equal(store_domain_add(f->st, "city.example", &err), 0);
	memset(&spec, 0, sizeof(spec));
	spec.class = STORE_CLASS_CITIZEN;
	spec.password = "pw";
	spec.address = rcpts[0];
	assert_int_equal(store_account_add(f->st, &spec, &err), 0);
	memset(&o, 0, sizeof(o));
	o.notice_id = "<k@city.example>";
	o.notice_list = "all@city.example";
	o.notice_sender = "water@city.example";
	o.queue_cb = one_queue_item;
	o.dedup_account = "water@city.example";
	o.dedup_id = o.notice_id;
	o.dedup_until = 4000000000LL;
	o.dedup_ref = "r1";
	assert_int_equal(store_deliver_ex(f->st, (const uint8_t *)msg,
	    strlen(msg), rcpts, 1, 0, res, &o, NULL, &err), 0);
	problems = 0;
	assert_int_equal(store_check(f->st, 0, count_problem, NULL, &err),
	    STORE_OK);
	assert_int_equal(problems, 0);

	assert_int_equal(st_txn_run(f->st, ST_TXN_WRITE, damage_fn, NULL,
	    &err), 0);
	assert_int_equal(store_check(f->st, 0, count_problem, NULL, &err),
	    STORE_EDAMAGED);
	assert_int_equal(problems, 4);
	problems = 0;
	assert_int_equal(store_check(f->st, STORE_CHECK_REPAIR, count_problem,
	    NULL, &err), STORE_EDAMAGED);
	assert_int_equal(problems, 4);
	problems = 0;
	assert_int_equal(store_check(f->st, 0, count_problem, NULL, &err),
	    STORE_OK);
	assert_int_equal(problems, 0);
	/* What the API wrote survived the repair. */
	{
		struct store_notice_info info;
		struct store_stats st;

		assert_int_equal(store_notice_get(f->st, o.notice_id, &info,
		    &err), 0);
		store_notice_info_free(&info);
		assert_int_equal(store_stats(f->st, &st, &err), 0);
		assert_int_equal(st.queued, 1);
		assert_int_equal(st.dedup, 2);	/* with the repaired one */
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_record_report, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_id_limit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_pack_limit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_deferred, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_check, setup,
		    teardown),
	};

	return cmocka_run_group_tests_name("store_notice", tests, NULL, NULL);
}
