/*
 * Unit tests for smtpd/smtp_queue.c and smtpd/smtp_rate.c: queue entries
 * split per domain in one transaction, read back byte for byte, due only
 * when their time comes, updated and removed; a damaged record is skipped;
 * the DSN names failed or expired recipients with RFC 3464 fields and the
 * original header only; the rate limiter at N-1, N and N+1 and across its
 * window.
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

#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "mailbox.h"
#include "smtp_queue.h"
#include "smtpd.h"
#include "xmalloc.h"

static char tmpdir[] = "/tmp/test_smtp_queue.XXXXXX";

/* The queue lives in the store: a fresh store per test. */
static struct store *
open_queue(void)
{
	static unsigned seq;
	struct config *cfg = config_defaults();
	struct store *q = NULL;
	const char *err = NULL;
	char *dir = xasprintf("%s/s%u", tmpdir, seq++);

	assert_int_equal(config_set(cfg, "store", "path", dir, &err), 0);
	assert_int_equal(store_open(cfg, STORE_OPEN_CREATE, &q, &err), 0);
	config_free(cfg);
	free(dir);
	return q;
}

static const char msg[] = "From: a@x.example\r\nSubject: s\r\n\r\n"
    "body line\r\n";

static int
cmp_domain(const void *a, const void *b)
{
	const struct smtp_qentry *x = *(struct smtp_qentry *const *)a;
	const struct smtp_qentry *y = *(struct smtp_qentry *const *)b;

	return strcmp(x->domain, y->domain);
}

static void
test_queue_roundtrip(void **state)
{
	struct store *q = open_queue();
	char *rcpts[] = { "u1@one.example", "u2@two.example",
	    "u3@one.example" };
	struct smtp_qentry **e = NULL;
	const char *err = NULL;
	size_t n = 0, i;
	int64_t now = (int64_t)time(NULL);

	(void)state;
	assert_int_equal(smtp_queue_add(q, "a@x.example", rcpts, 3,
	    (const uint8_t *)msg, sizeof(msg) - 1, &err), 0);
	assert_int_equal(smtp_queue_due(q, now + 1, SMTP_QUEUE_SCAN_MAX, &e,
	    &n, &err), 0);
	assert_int_equal(n, 2);
	qsort(e, n, sizeof(*e), cmp_domain);
	assert_string_equal(e[0]->domain, "one.example");
	assert_int_equal(e[0]->nrcpts, 2);
	assert_string_equal(e[0]->rcpts[0], "u1@one.example");
	assert_string_equal(e[0]->rcpts[1], "u3@one.example");
	assert_string_equal(e[1]->rcpts[0], "u2@two.example");
	assert_string_equal(e[0]->sender, "a@x.example");
	assert_int_equal(e[0]->len, sizeof(msg) - 1);
	assert_memory_equal(e[0]->msg, msg, e[0]->len);
	assert_int_equal(strlen(e[0]->id), SMTP_QUEUE_ID_LEN);
	assert_string_not_equal(e[0]->id, e[1]->id);

	/* Later: not due now, due then; a diagnostic survives. */
	e[0]->next_try = now + 100;
	e[0]->attempts = 3;
	e[0]->status[1] = SMTP_QRCPT_SENT;
	e[0]->diag[0] = xstrdup("451 4.3.0 later");
	assert_int_equal(smtp_queue_put(q, e[0], &err), 0);
	assert_int_equal(smtp_queue_remove(q, e[1]->id, &err), 0);
	for (i = 0; i < n; i++)
		smtp_qentry_free(e[i]);
	free(e);
	assert_int_equal(smtp_queue_due(q, now + 1, SMTP_QUEUE_SCAN_MAX, &e,
	    &n, &err), 0);
	assert_int_equal(n, 0);
	free(e);
	assert_int_equal(smtp_queue_due(q, now + 100, SMTP_QUEUE_SCAN_MAX, &e,
	    &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(e[0]->attempts, 3);
	assert_int_equal(e[0]->status[1], SMTP_QRCPT_SENT);
	assert_string_equal(e[0]->diag[0], "451 4.3.0 later");
	assert_null(e[0]->diag[1]);
	assert_int_equal(smtp_queue_remove(q, e[0]->id, &err), 0);
	/* Removing again is not an error. */
	assert_int_equal(smtp_queue_remove(q, e[0]->id, &err), 0);
	smtp_qentry_free(e[0]);
	free(e);
	store_close(q);
}

/* A record that does not decode is skipped, not fatal. */
static void
test_queue_damaged(void **state)
{
	struct store *q = open_queue();
	struct smtp_qentry **e = NULL;
	const char *err = NULL;
	char key[SMTP_QUEUE_ID_LEN + 1];
	uint8_t junk[20] = { SMTP_QUEUE_REC_VERSION, 0 };
	struct store_queue_item it;
	size_t n = 9;

	(void)state;
	memset(key, 'f', SMTP_QUEUE_ID_LEN);
	key[SMTP_QUEUE_ID_LEN] = '\0';
	it.id = key;
	it.next_try = 0;
	it.summary = NULL;
	it.data = junk;
	it.len = sizeof(junk);
	assert_int_equal(store_queue_put(q, &it, &err), 0);
	assert_int_equal(smtp_queue_due(q, INT64_MAX, SMTP_QUEUE_SCAN_MAX, &e,
	    &n, &err), 0);
	assert_int_equal(n, 0);
	free(e);
	assert_int_equal(store_queue_del(q, key, &err), 0);
	store_close(q);
}

static void
test_dsn(void **state)
{
	struct smtp_qentry e;
	char *rcpts[] = { "ok@r.example", "bad@r.example", "late@r.example" };
	uint8_t status[] = { SMTP_QRCPT_SENT, SMTP_QRCPT_FAILED,
	    SMTP_QRCPT_PENDING };
	char *diag[] = { NULL, "550 5.1.1 no such user", NULL };
	uint8_t *dsn;
	size_t len;
	char *text;

	(void)state;
	memset(&e, 0, sizeof(e));
	(void)str_copy(e.id, sizeof(e.id), "abc");
	e.sender = "a@x.example";
	e.rcpts = rcpts;
	e.status = status;
	e.diag = diag;
	e.nrcpts = 3;
	e.msg = (uint8_t *)(uintptr_t)msg;
	e.len = sizeof(msg) - 1;

	dsn = smtp_dsn_build("mx.example", &e, 0, &len);
	text = xstrndup((char *)dsn, len);
	assert_non_null(strstr(text, "To: <a@x.example>\r\n"));
	assert_non_null(strstr(text, "report-type=delivery-status"));
	assert_non_null(strstr(text, "Reporting-MTA: dns; mx.example\r\n"));
	assert_non_null(strstr(text, "Final-Recipient: rfc822; bad@r.example"
	    "\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; "
	    "550 5.1.1 no such user\r\n"));
	assert_null(strstr(text, "Final-Recipient: rfc822; ok@"));
	assert_null(strstr(text, "Final-Recipient: rfc822; late@"));
	assert_non_null(strstr(text, "Subject: s\r\n"));
	/* A failure returns the whole message unless RET=HDRS. */
	assert_non_null(strstr(text, "Content-Type: message/rfc822\r\n"));
	assert_non_null(strstr(text, "body line"));
	free(text);
	free(dsn);

	dsn = smtp_dsn_build("mx.example", &e, 1, &len);
	text = xstrndup((char *)dsn, len);
	assert_non_null(strstr(text, "Final-Recipient: rfc822; late@r.example"
	    "\r\nAction: failed\r\nStatus: 4.4.7\r\n"));
	assert_null(strstr(text, "Final-Recipient: rfc822; ok@"));
	free(text);
	free(dsn);
}

static void
test_rate(void **state)
{
	struct smtp_rate *r = smtp_rate_new(3, 60);
	struct smtp_rate *off = smtp_rate_new(0, 60);
	int i;

	(void)state;
	/* N-1, N allowed; N+1 refused; another key unaffected. */
	assert_int_equal(smtp_rate_hit(r, "a@x", 100), 1);
	assert_int_equal(smtp_rate_hit(r, "a@x", 100), 1);
	assert_int_equal(smtp_rate_hit(r, "a@x", 101), 1);
	assert_int_equal(smtp_rate_hit(r, "a@x", 102), 0);
	assert_int_equal(smtp_rate_hit(r, "b@x", 102), 1);
	/* The window passes: counting starts again. */
	assert_int_equal(smtp_rate_hit(r, "a@x", 159), 0);
	assert_int_equal(smtp_rate_hit(r, "a@x", 160), 1);
	for (i = 0; i < 1000; i++)
		assert_int_equal(smtp_rate_hit(off, "a@x", 100), 1);
	smtp_rate_free(r);
	smtp_rate_free(off);
}

static int
setup(void **state)
{
	(void)state;
	if (sodium_init() < 0 || mkdtemp(tmpdir) == NULL)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	int r;

	(void)state;
	r = system(cmd);
	free(cmd);
	return r == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queue_roundtrip),
		cmocka_unit_test(test_queue_damaged),
		cmocka_unit_test(test_dsn),
		cmocka_unit_test(test_rate),
	};

	return cmocka_run_group_tests_name("smtp_queue", tests, setup,
	    teardown);
}
