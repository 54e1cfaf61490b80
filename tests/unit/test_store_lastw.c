/*
 * test_store_lastw.c - store_last_write(): what the handle's last committed
 * write did to a mailbox's HIGHESTMODSEQ, so an IMAP session can tell its
 * own changes from another writer's; \Recent taken without a log flush
 * still holds in the same process and after a clean reopen; and deferred
 * durability (store_set_deferred_sync, store_take_unsynced, store_sync).
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_util.h"

static const char *const rcpt = "a@city.example";

static uint32_t
setup_inbox(struct fx *f, int n)
{
	struct store_rcpt_result res;
	int i;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
		    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
	return res.mailbox_id;
}

static uint64_t
hms_of(struct fx *f, uint32_t id)
{
	struct store_mailbox_info mi;

	assert_int_equal(store_mailbox_get_id(f->st, id, &mi, NULL, NULL), 0);
	return mi.highestmodseq;
}

static void
test_own_and_other_writes(void **state)
{
	struct fx *f = fx_new();
	struct store *other;
	struct store_uid_range r = { 2, 2 };
	struct store_rcpt_result res;
	uint64_t before, after, h0, h1;
	uint32_t id;

	(void)state;
	id = setup_inbox(f, 3);
	/* The delivery was the last write: it changed the INBOX. */
	assert_int_equal(store_last_write(f->st, id, &before, &after), 0);
	assert_true(after > before);
	assert_int_equal(after, hms_of(f, id));
	assert_int_equal(store_last_write(f->st, id + 1000, &before, &after),
	    STORE_ENOTFOUND);

	/* Own STORE: before is what a session up to date had seen. */
	h0 = hms_of(f, id);
	assert_int_equal(store_flags_update(f->st, id, &r, 1, STORE_FLAGS_ADD,
	    STORE_FLAG_SEEN, NULL, 0, 0, NULL, NULL, NULL, NULL), 0);
	assert_int_equal(store_last_write(f->st, id, &before, &after), 0);
	assert_int_equal(before, h0);
	assert_int_equal(after, hms_of(f, id));
	assert_true(after > before);

	/* Another handle writes in between: our next write's "before" is
	 * past what we saw, so a session knows it must look. */
	h1 = hms_of(f, id);
	assert_int_equal(store_open(f->cfg, 0, &other, NULL), 0);
	assert_int_equal(store_deliver(other, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
	store_close(other);
	assert_int_equal(store_flags_update(f->st, id, &r, 1,
	    STORE_FLAGS_REMOVE, STORE_FLAG_SEEN, NULL, 0, 0, NULL, NULL, NULL,
	    NULL), 0);
	assert_int_equal(store_last_write(f->st, id, &before, &after), 0);
	assert_true(before > h1);
	assert_int_equal(after, hms_of(f, id));

	/* A failed write leaves the last committed one as it was. */
	assert_int_equal(store_flags_update(f->st, id + 1000, &r, 1,
	    STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0, 0, NULL, NULL, NULL,
	    NULL) < 0, 1);
	{
		uint64_t b2, a2;

		assert_int_equal(store_last_write(f->st, id, &b2, &a2), 0);
		assert_int_equal(b2, before);
		assert_int_equal(a2, after);
	}

	/* EXPUNGE moves it on as well. */
	r.lo = 1;
	r.hi = 1;
	h0 = hms_of(f, id);
	assert_int_equal(store_flags_update(f->st, id, &r, 1, STORE_FLAGS_ADD,
	    STORE_FLAG_DELETED, NULL, 0, 0, NULL, NULL, NULL, NULL), 0);
	h0 = hms_of(f, id);
	assert_int_equal(store_expunge(f->st, id, NULL, 0, NULL, NULL, NULL),
	    0);
	assert_int_equal(store_last_write(f->st, id, &before, &after), 0);
	assert_int_equal(before, h0);
	assert_true(after > h0);
	fx_free(f);
}

static void
test_recent_nosync(void **state)
{
	struct fx *f = fx_new();
	uint32_t id, first;

	(void)state;
	id = setup_inbox(f, 2);
	assert_int_equal(store_mailbox_take_recent(f->st, id, &first, NULL), 0);
	assert_int_equal(first, 1);
	assert_int_equal(store_mailbox_take_recent(f->st, id, &first, NULL), 0);
	assert_int_equal(first, 3);
	/* Closed cleanly, the change is on disk. */
	store_close(f->st);
	fx_open(f);
	assert_int_equal(store_mailbox_take_recent(f->st, id, &first, NULL), 0);
	assert_int_equal(first, 3);
	fx_free(f);
}

static void
test_deferred_sync(void **state)
{
	struct fx *f = fx_new();
	struct store *other;
	struct store_uid_range r = { 1, 1 };
	uint32_t id, first;

	(void)state;
	id = setup_inbox(f, 2);
	/* Durable commits (the default) leave nothing to flush. */
	assert_int_equal(store_take_unsynced(f->st), 0);
	store_set_deferred_sync(f->st, 1);
	assert_int_equal(store_flags_update(f->st, id, &r, 1, STORE_FLAGS_ADD,
	    STORE_FLAG_SEEN, NULL, 0, 0, NULL, NULL, NULL, NULL), 0);
	/* Said once. */
	assert_int_equal(store_take_unsynced(f->st), 1);
	assert_int_equal(store_take_unsynced(f->st), 0);
	/* Reads and \Recent (never durable) leave nothing to flush. */
	assert_int_equal(store_mailbox_take_recent(f->st, id, &first, NULL), 0);
	assert_int_equal(hms_of(f, id) > 0, 1);
	assert_int_equal(store_take_unsynced(f->st), 0);
	/* The change is visible to another handle at once, and flushed. */
	assert_int_equal(store_flags_update(f->st, id, &r, 1, STORE_FLAGS_ADD,
	    STORE_FLAG_FLAGGED, NULL, 0, 0, NULL, NULL, NULL, NULL), 0);
	assert_int_equal(store_open(f->cfg, 0, &other, NULL), 0);
	{
		struct store_msg m;

		assert_int_equal(store_msg_get(other, id, 1, &m, NULL), 0);
		assert_int_equal(m.flags & (STORE_FLAG_SEEN |
		    STORE_FLAG_FLAGGED), STORE_FLAG_SEEN | STORE_FLAG_FLAGGED);
	}
	store_close(other);
	assert_int_equal(store_take_unsynced(f->st), 1);
	assert_int_equal(store_sync(f->st, NULL), 0);
	/* A failed write says nothing to flush. */
	assert_int_equal(store_flags_update(f->st, id + 1000, &r, 1,
	    STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0, 0, NULL, NULL, NULL,
	    NULL) < 0, 1);
	assert_int_equal(store_take_unsynced(f->st), 0);
	/* Off again: commits are durable before they return. */
	store_set_deferred_sync(f->st, 0);
	assert_int_equal(store_flags_update(f->st, id, &r, 1,
	    STORE_FLAGS_REMOVE, STORE_FLAG_SEEN, NULL, 0, 0, NULL, NULL, NULL,
	    NULL), 0);
	assert_int_equal(store_take_unsynced(f->st), 0);
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_and_other_writes),
		cmocka_unit_test(test_recent_nosync),
		cmocka_unit_test(test_deferred_sync),
	};

	return cmocka_run_group_tests_name("store_lastw", tests, NULL, NULL);
}
