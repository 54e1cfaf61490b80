/*
 * Unit tests for smtpd/smtp_dsn.c and the DSN part of smtpd/smtp_queue.c:
 * queue records keep RET, ENVID, NOTIFY, ORCPT and the DSN flags across a
 * write and a read (version 2), a version-1 record still decodes with the
 * defaults; the transaction's request (note, find, take); which
 * recipients each kind of report names for every NOTIFY value (table);
 * the report's fields (Original-Envelope-Id, Original-Recipient decoded,
 * Final-Recipient in RFC 6533 form for UTF-8, Action, Status from the
 * reply), RET=HDRS against the whole message; and the agent's progress:
 * "relayed" once, "delayed" only after delay_warning and only once; local
 * recipients' failures follow the NOTIFY their RCPT gave (NEVER: none).
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "buf.h"
#include "config.h"
#include "mailbox.h"
#include "smtp_queue.h"
#include "xmalloc.h"

static char tmpdir[] = "/tmp/test_smtp_dsn.XXXXXX";

static const char msg[] = "From: a@x.example\r\nSubject: s\r\n\r\n"
    "body line\r\n";

static struct store *
open_store(void)
{
	static unsigned seq;
	struct config *cfg = config_defaults();
	struct store *st = NULL;
	const char *err = NULL;
	char *dir = xasprintf("%s/s%u", tmpdir, seq++);

	assert_int_equal(config_set(cfg, "store", "path", dir, &err), 0);
	assert_int_equal(store_open(cfg, STORE_OPEN_CREATE, &st, &err), 0);
	config_free(cfg);
	free(dir);
	return st;
}

/* Version 2: the DSN request survives a write and a read. */
static void
test_record_v2(void **state)
{
	struct store *st = open_store();
	char *rcpts[] = { "u1@one.example", "u2@one.example" };
	struct smtp_qentry **e = NULL;
	const char *err = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(smtp_queue_add(st, "a@x.example", rcpts, 2,
	    (const uint8_t *)msg, sizeof(msg) - 1, &err), 0);
	assert_int_equal(smtp_queue_due(st, INT64_MAX, SMTP_QUEUE_SCAN_MAX,
	    &e, &n, &err), 0);
	assert_int_equal(n, 1);
	/* Fresh entries have the defaults. */
	assert_int_equal(e[0]->ret, SMTP_RET_NONE);
	assert_string_equal(e[0]->envid, "");
	assert_int_equal(e[0]->notify[0], 0);
	assert_null(e[0]->orcpt[1]);
	e[0]->ret = SMTP_RET_HDRS;
	(void)str_copy(e[0]->envid, sizeof(e[0]->envid), "QQ+2B314");
	e[0]->notify[0] = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY;
	e[0]->notify[1] = SMTP_NOTIFY_NEVER;
	e[0]->dflags[0] = SMTP_QRCPT_F_DELAYED;
	e[0]->orcpt[0] = xstrdup("rfc822;o+2Bu1@one.example");
	assert_int_equal(smtp_queue_put(st, e[0], &err), 0);
	smtp_qentry_free(e[0]);
	free(e);
	assert_int_equal(smtp_queue_due(st, INT64_MAX, SMTP_QUEUE_SCAN_MAX,
	    &e, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(e[0]->ret, SMTP_RET_HDRS);
	assert_string_equal(e[0]->envid, "QQ+2B314");
	assert_int_equal(e[0]->notify[0],
	    SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY);
	assert_int_equal(e[0]->notify[1], SMTP_NOTIFY_NEVER);
	assert_int_equal(e[0]->dflags[0], SMTP_QRCPT_F_DELAYED);
	assert_int_equal(e[0]->dflags[1], 0);
	assert_string_equal(e[0]->orcpt[0], "rfc822;o+2Bu1@one.example");
	assert_null(e[0]->orcpt[1]);
	assert_memory_equal(e[0]->msg, msg, sizeof(msg) - 1);
	smtp_qentry_free(e[0]);
	free(e);
	store_close(st);
}

static void
put_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
	    (uint8_t)(v >> 8), (uint8_t)v };

	buf_append(b, x, 4);
}

static void
put_u64(struct buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

static void
put_str(struct buf *b, const char *s)
{
	put_u32(b, (uint32_t)strlen(s));
	buf_append(b, s, strlen(s));
}

/* A record written before DSN support (version 1) still decodes. */
static void
test_record_v1(void **state)
{
	struct store *st = open_store();
	struct store_queue_item it;
	struct smtp_qentry **e = NULL;
	const char *err = NULL;
	struct buf b;
	size_t n = 0;

	(void)state;
	buf_init(&b, BUF_UNBOUNDED);
	buf_append_byte(&b, 1);
	put_u64(&b, 1000);		/* created */
	put_u64(&b, 1000);		/* next_try */
	put_u32(&b, 2);			/* attempts */
	put_str(&b, "a@x.example");
	put_str(&b, "one.example");
	put_u32(&b, 1);
	put_str(&b, "u1@one.example");
	buf_append_byte(&b, SMTP_QRCPT_PENDING);
	put_str(&b, "451 4.3.0 later");
	put_u64(&b, sizeof(msg) - 1);
	buf_append(&b, msg, sizeof(msg) - 1);
	memset(&it, 0, sizeof(it));
	it.id = "0123456789abcdef0123456789abcdef";
	it.next_try = 1000;
	it.data = b.data;
	it.len = b.len;
	assert_int_equal(store_queue_put(st, &it, &err), 0);
	buf_free(&b);
	assert_int_equal(smtp_queue_due(st, INT64_MAX, SMTP_QUEUE_SCAN_MAX,
	    &e, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(e[0]->attempts, 2);
	assert_string_equal(e[0]->rcpts[0], "u1@one.example");
	assert_string_equal(e[0]->diag[0], "451 4.3.0 later");
	assert_int_equal(e[0]->ret, SMTP_RET_NONE);
	assert_int_equal(e[0]->notify[0], 0);
	assert_null(e[0]->orcpt[0]);
	/* Written back, it becomes version 2 and reads the same. */
	assert_int_equal(smtp_queue_put(st, e[0], &err), 0);
	smtp_qentry_free(e[0]);
	free(e);
	assert_int_equal(smtp_queue_due(st, INT64_MAX, SMTP_QUEUE_SCAN_MAX,
	    &e, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(e[0]->diag[0], "451 4.3.0 later");
	smtp_qentry_free(e[0]);
	free(e);
	store_close(st);
}

static void
test_env(void **state)
{
	struct smtp_dsn_env *env = NULL, *got;
	struct smtp_rcpt_params rp;
	struct smtp_mail_params mp;
	char *alias[] = { "b1@l.example", "b2@r.example" };
	char *plain[] = { "c@l.example" };

	(void)state;
	memset(&rp, 0, sizeof(rp));
	memset(&mp, 0, sizeof(mp));
	/* No parameters: nothing noted, nothing taken. */
	smtp_dsn_env_note(&env, "c@l.example", &rp, 0, plain, 1);
	assert_null(env);
	assert_null(smtp_dsn_env_take(&env, &mp));
	rp.notify = SMTP_NOTIFY_SUCCESS;
	(void)str_copy(rp.orcpt, sizeof(rp.orcpt), "rfc822;b@l.example");
	smtp_dsn_env_note(&env, "b@l.example", &rp, 0, alias, 2);
	rp.notify = SMTP_NOTIFY_NEVER;
	rp.orcpt[0] = '\0';
	smtp_dsn_env_note(&env, "list@l.example", &rp, 1, plain, 1);
	assert_non_null(env);
	assert_int_equal(env->nrcpts, 2);
	assert_non_null(smtp_dsn_env_find(env, "b2@r.example"));
	assert_string_equal(smtp_dsn_env_find(env, "b1@l.example")->orcpt,
	    "rfc822;b@l.example");
	/* A list's members do not inherit its NOTIFY. */
	assert_null(smtp_dsn_env_find(env, "c@l.example"));
	mp.ret = SMTP_RET_HDRS;
	(void)str_copy(mp.envid, sizeof(mp.envid), "E1");
	got = smtp_dsn_env_take(&env, &mp);
	assert_null(env);
	assert_non_null(got);
	assert_int_equal(got->ret, SMTP_RET_HDRS);
	assert_string_equal(got->envid, "E1");
	smtp_dsn_env_free(got);
	/* RET alone makes a request too. */
	got = smtp_dsn_env_take(&env, &mp);
	assert_non_null(got);
	assert_int_equal(got->nrcpts, 0);
	smtp_dsn_env_free(got);
}

/* One recipient in each state and with each NOTIFY. */
#define NR 8
static char *t_rcpts[NR] = {
	"f-default@r.example", "f-never@r.example", "f-success@r.example",
	"p-delay@r.example", "p-delay-warned@r.example", "s-success@r.example",
	"s-relayed@r.example", "s-reported@r.example",
};
static uint8_t t_status[NR] = {
	SMTP_QRCPT_FAILED, SMTP_QRCPT_FAILED, SMTP_QRCPT_FAILED,
	SMTP_QRCPT_PENDING, SMTP_QRCPT_PENDING, SMTP_QRCPT_SENT,
	SMTP_QRCPT_SENT, SMTP_QRCPT_SENT,
};
static uint8_t t_notify[NR] = {
	0, SMTP_NOTIFY_NEVER, SMTP_NOTIFY_SUCCESS,
	SMTP_NOTIFY_DELAY | SMTP_NOTIFY_FAILURE, SMTP_NOTIFY_DELAY,
	SMTP_NOTIFY_SUCCESS, SMTP_NOTIFY_SUCCESS, SMTP_NOTIFY_SUCCESS,
};
static const uint8_t t_flags[NR] = {
	0, 0, 0, 0, SMTP_QRCPT_F_DELAYED, 0, SMTP_QRCPT_F_NODSN,
	SMTP_QRCPT_F_NODSN | SMTP_QRCPT_F_REPORTED,
};
static char *t_diag[NR] = {
	"550 5.1.1 no such user", "550 5.1.1 no such user",
	"550 5.1.1 no such user", "451 4.3.0 later", "451 4.3.0 later",
	NULL, NULL, NULL,
};

static void
entry_init(struct smtp_qentry *e, uint8_t *flags, char **orcpt)
{
	memset(e, 0, sizeof(*e));
	(void)str_copy(e->id, sizeof(e->id), "abc");
	e->sender = "a@x.example";
	e->rcpts = t_rcpts;
	e->status = t_status;
	e->notify = t_notify;
	memcpy(flags, t_flags, NR);
	e->dflags = flags;
	memset(orcpt, 0, NR * sizeof(*orcpt));
	e->orcpt = orcpt;
	e->diag = t_diag;
	e->nrcpts = NR;
	e->created = 1000;
	e->msg = (uint8_t *)(uintptr_t)msg;
	e->len = sizeof(msg) - 1;
}

static char *
build(const struct smtp_qentry *e, int kind)
{
	size_t len;
	uint8_t *d = smtp_dsn_build("mx.example", e, kind, &len);
	char *text;

	if (d == NULL)
		return NULL;
	text = xstrndup((char *)d, len);
	free(d);
	return text;
}

static int
names(const char *text, const char *rcpt)
{
	char field[128];

	(void)snprintf(field, sizeof(field), "Final-Recipient: rfc822; %s\r\n",
	    rcpt);
	return strstr(text, field) != NULL;
}

static void
test_kinds(void **state)
{
	static const struct {
		int kind;
		const char *named;	/* 1 per recipient: named or not */
		const char *action;
	} cases[] = {
		{ SMTP_DSN_FAILED, "10000000", "Action: failed" },
		{ SMTP_DSN_EXPIRED, "10010000", "Action: failed" },
		{ SMTP_DSN_DELAYED, "00010000", "Action: delayed" },
		{ SMTP_DSN_DELIVERED, "00000110", "Action: delivered" },
		{ SMTP_DSN_RELAYED, "00000010", "Action: relayed" },
	};
	struct smtp_qentry e;
	uint8_t flags[NR];
	char *orcpt[NR];
	size_t i, j;

	(void)state;
	entry_init(&e, flags, orcpt);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = build(&e, cases[i].kind);

		assert_non_null(text);
		for (j = 0; j < NR; j++)
			if (names(text, t_rcpts[j]) !=
			    (cases[i].named[j] == '1'))
				fail_msg("kind %d rcpt %s: named %d",
				    cases[i].kind, t_rcpts[j],
				    names(text, t_rcpts[j]));
		assert_non_null(strstr(text, cases[i].action));
		free(text);
	}
	/* Nothing to report: no message at all. */
	for (j = 0; j < NR; j++)
		flags[j] |= SMTP_QRCPT_F_DELAYED | SMTP_QRCPT_F_REPORTED;
	assert_null(build(&e, SMTP_DSN_DELAYED));
	assert_null(build(&e, SMTP_DSN_RELAYED));
	assert_null(build(&e, 17));
}

static void
test_fields(void **state)
{
	struct smtp_qentry e;
	uint8_t flags[NR];
	char *orcpt[NR], *text;
	char *u8[] = { "张三@r.example" };
	uint8_t st[] = { SMTP_QRCPT_FAILED };
	uint8_t nt[] = { 0 };
	char *dg[] = { "553 5.6.7 no UTF-8 here" };

	(void)state;
	entry_init(&e, flags, orcpt);
	(void)str_copy(e.envid, sizeof(e.envid), "QQ+2B314");
	orcpt[0] = "rfc822;orig+2Bf@r.example";
	text = build(&e, SMTP_DSN_FAILED);
	assert_non_null(strstr(text, "Original-Envelope-Id: QQ+314\r\n"));
	assert_non_null(strstr(text, "Arrival-Date: "));
	assert_non_null(strstr(text, "Original-Recipient: rfc822;orig+f@"
	    "r.example\r\nFinal-Recipient: rfc822; f-default@r.example\r\n"
	    "Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; "
	    "550 5.1.1 no such user\r\n"));
	/* No RET: a failure returns the whole message. */
	assert_non_null(strstr(text, "Content-Type: message/rfc822\r\n"));
	assert_non_null(strstr(text, "body line"));
	free(text);
	e.ret = SMTP_RET_HDRS;
	text = build(&e, SMTP_DSN_FAILED);
	assert_non_null(strstr(text, "Content-Type: text/rfc822-headers"));
	assert_null(strstr(text, "body line"));
	free(text);
	/* RET=FULL, but a success report carries the header only. */
	e.ret = SMTP_RET_FULL;
	text = build(&e, SMTP_DSN_DELIVERED);
	assert_null(strstr(text, "body line"));
	assert_non_null(strstr(text, "Status: 2.0.0"));
	free(text);
	/* The pending one of an expired entry: 4.4.7 whatever its reply. */
	text = build(&e, SMTP_DSN_EXPIRED);
	assert_non_null(strstr(text, "p-delay@r.example\r\nAction: failed\r\n"
	    "Status: 4.4.7\r\n"));
	free(text);
	/* A delay report's status comes from the last reply. */
	text = build(&e, SMTP_DSN_DELAYED);
	assert_non_null(strstr(text, "Action: delayed\r\nStatus: 4.3.0\r\n"));
	free(text);
	/* A UTF-8 address: utf-8-addr-xtext (RFC 6533). */
	e.rcpts = u8;
	e.status = st;
	e.notify = nt;
	e.diag = dg;
	e.nrcpts = 1;
	text = build(&e, SMTP_DSN_FAILED);
	assert_non_null(strstr(text, "Final-Recipient: utf-8; "
	    "\\x{5F20}\\x{4E09}@r.example\r\n"));
	assert_non_null(strstr(text, "Status: 5.6.7\r\n"));
	free(text);
}

static void
test_progress(void **state)
{
	struct smtp_qentry e;
	uint8_t flags[NR];
	char *orcpt[NR];

	(void)state;
	entry_init(&e, flags, orcpt);
	e.sender = "";	/* nothing is sent; the marks still count */
	/* Before delay_warning: only the relayed report. */
	smtp_dsn_progress(NULL, NULL, "mx.example", &e, 1000 + 59, 60);
	assert_true(flags[6] & SMTP_QRCPT_F_REPORTED);
	assert_false(flags[5] & SMTP_QRCPT_F_REPORTED);	/* not relayed */
	assert_false(flags[3] & SMTP_QRCPT_F_DELAYED);
	/* At delay_warning (N): the delayed one is marked, once. */
	smtp_dsn_progress(NULL, NULL, "mx.example", &e, 1000 + 60, 60);
	assert_true(flags[3] & SMTP_QRCPT_F_DELAYED);
	assert_null(build(&e, SMTP_DSN_DELAYED));
	assert_null(build(&e, SMTP_DSN_RELAYED));
	/* delay_warning 0: never. */
	entry_init(&e, flags, orcpt);
	e.sender = "";
	smtp_dsn_progress(NULL, NULL, "mx.example", &e, 1000000, 0);
	assert_false(flags[3] & SMTP_QRCPT_F_DELAYED);
}

/* Local recipients (an entry made on the fly) take NOTIFY from the env. */
static void
test_send_env(void **state)
{
	struct smtp_qentry e;
	struct smtp_dsn_env *env = NULL;
	struct smtp_rcpt_params rp;
	struct smtp_mail_params mp;
	char *rc[] = { "full@l.example" };
	uint8_t st[] = { SMTP_QRCPT_FAILED };
	char *dg[] = { "552 5.2.2 Mailbox full" };

	(void)state;
	memset(&e, 0, sizeof(e));
	(void)str_copy(e.id, sizeof(e.id), "local");
	e.sender = "a@x.example";
	e.rcpts = rc;
	e.status = st;
	e.diag = dg;
	e.nrcpts = 1;
	e.msg = (uint8_t *)(uintptr_t)msg;
	e.len = sizeof(msg) - 1;
	/*
	 * No store and no queue: a report that is made cannot be stored
	 * (-1); one that nobody asked for is not made (0).
	 */
	assert_int_equal(smtp_dsn_send_env(NULL, NULL, "mx.example", &e,
	    SMTP_DSN_FAILED, NULL), -1);
	memset(&rp, 0, sizeof(rp));
	memset(&mp, 0, sizeof(mp));
	rp.notify = SMTP_NOTIFY_NEVER;
	smtp_dsn_env_note(&env, "alias@l.example", &rp, 0, rc, 1);
	env = smtp_dsn_env_take(&env, &mp);
	assert_int_equal(smtp_dsn_send_env(NULL, NULL, "mx.example", &e,
	    SMTP_DSN_FAILED, env), 0);
	env->rcpts[0].notify = SMTP_NOTIFY_FAILURE;
	assert_int_equal(smtp_dsn_send_env(NULL, NULL, "mx.example", &e,
	    SMTP_DSN_FAILED, env), -1);
	smtp_dsn_env_free(env);
}

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	(void)snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_v2),
		cmocka_unit_test(test_record_v1),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_progress),
		cmocka_unit_test(test_send_env),
	};

	return cmocka_run_group_tests_name("smtp_dsn", tests, setup,
	    teardown);
}
