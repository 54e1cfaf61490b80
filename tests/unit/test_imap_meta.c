/*
 * test_imap_meta.c - unit tests of imapd's metadata cache (imap_meta.c):
 * hits return what was put, copies are the cache's own, the byte budget
 * is kept by evicting the least recently used, the table grows, and a
 * budget of 0 caches nothing.  No store is opened.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap_meta.h"
#include "xmalloc.h"

static void
make_key(uint8_t key[STORE_BLOB_KEY_LEN], unsigned i)
{
	unsigned k;

	/* Spread like the store's hash keys, but reproducible. */
	for (k = 0; k < STORE_BLOB_KEY_LEN; k++)
		key[k] = (uint8_t)((i * 2654435761U) >> ((k % 4) * 8)) ^
		    (uint8_t)k;
}

static void
make_meta(struct store_msg_meta *m, unsigned i)
{
	static uint8_t pm[4] = { 1, 2, 3, 4 };
	char s[64];

	memset(m, 0, sizeof(*m));
	(void)snprintf(s, sizeof(s), "subject %u", i);
	m->subject = xstrdup(s);
	m->from = xstrdup("a@example.org");
	m->envelope = xstrdup("(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	m->bodystructure = xstrdup("(\"text\" \"plain\" NIL NIL NIL "
	    "\"7bit\" 1 1)");
	m->body = NULL;
	m->message_id = xstrdup("<x@y>");
	m->header_size = 100 + i;
	m->date = 1000 + i;
	m->partmap = pm;
	m->partmap_len = sizeof(pm);
}

static void
drop_meta(struct store_msg_meta *m)
{
	m->partmap = NULL;	/* static above */
	store_msg_meta_free(m);
}

static void
test_hit_and_copy(void **state)
{
	struct meta_cache *mc = meta_cache_new(1 << 20);
	struct store_msg_meta m;
	const struct store_msg_meta *h;
	struct meta_cache_stats st;
	uint8_t k1[STORE_BLOB_KEY_LEN], k2[STORE_BLOB_KEY_LEN];

	(void)state;
	make_key(k1, 1);
	make_key(k2, 2);
	assert_null(meta_cache_find(mc, k1));
	make_meta(&m, 1);
	meta_cache_put(mc, k1, &m);
	/* The cache holds its own copy: the caller's may go. */
	free(m.subject);
	m.subject = xstrdup("changed");
	h = meta_cache_find(mc, k1);
	assert_non_null(h);
	assert_string_equal(h->subject, "subject 1");
	assert_ptr_not_equal(h->partmap, m.partmap);
	assert_memory_equal(h->partmap, m.partmap, 4);
	assert_int_equal(h->header_size, 101);
	assert_int_equal(h->date, 1001);
	assert_null(h->body);
	assert_null(meta_cache_find(mc, k2));
	/* A second put of the same key changes nothing. */
	meta_cache_put(mc, k1, &m);
	assert_string_equal(meta_cache_find(mc, k1)->subject, "subject 1");
	meta_cache_stats(mc, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 2);
	assert_true(st.bytes > 0 && st.bytes <= st.budget);
	drop_meta(&m);
	meta_cache_free(mc);
}

static void
test_budget_lru(void **state)
{
	struct meta_cache *mc;
	struct store_msg_meta m;
	struct meta_cache_stats st;
	uint8_t k[STORE_BLOB_KEY_LEN];
	size_t one;
	unsigned i;

	(void)state;
	/* Measure one entry, then allow exactly ten. */
	mc = meta_cache_new(1 << 20);
	make_key(k, 0);
	make_meta(&m, 0);
	meta_cache_put(mc, k, &m);
	meta_cache_stats(mc, &st);
	one = st.bytes;
	meta_cache_free(mc);
	drop_meta(&m);

	mc = meta_cache_new(10 * one + one / 2);
	for (i = 0; i < 10; i++) {
		make_key(k, i);
		make_meta(&m, i);
		meta_cache_put(mc, k, &m);
		drop_meta(&m);
	}
	meta_cache_stats(mc, &st);
	assert_int_equal(st.entries, 10);
	/* Touch 0: it becomes the newest, 1 the oldest. */
	make_key(k, 0);
	assert_non_null(meta_cache_find(mc, k));
	make_key(k, 10);
	make_meta(&m, 10);
	meta_cache_put(mc, k, &m);
	drop_meta(&m);
	meta_cache_stats(mc, &st);
	assert_int_equal(st.entries, 10);
	assert_true(st.bytes <= st.budget);
	make_key(k, 1);
	assert_null(meta_cache_find(mc, k));
	for (i = 0; i <= 10; i++) {
		if (i == 1)
			continue;
		make_key(k, i);
		assert_non_null(meta_cache_find(mc, k));
		assert_int_equal(meta_cache_find(mc, k)->date, 1000 + i);
	}
	meta_cache_free(mc);
}

static void
test_grow_many(void **state)
{
	struct meta_cache *mc = meta_cache_new((size_t)64 << 20);
	struct store_msg_meta m;
	struct meta_cache_stats st;
	uint8_t k[STORE_BLOB_KEY_LEN];
	unsigned i, n = 4 * META_CACHE_BUCKETS_MIN + 7;

	(void)state;
	for (i = 0; i < n; i++) {
		make_key(k, i);
		make_meta(&m, i);
		meta_cache_put(mc, k, &m);
		drop_meta(&m);
	}
	meta_cache_stats(mc, &st);
	assert_int_equal(st.entries, n);
	for (i = 0; i < n; i++) {
		char s[64];

		make_key(k, i);
		(void)snprintf(s, sizeof(s), "subject %u", i);
		assert_non_null(meta_cache_find(mc, k));
		assert_string_equal(meta_cache_find(mc, k)->subject, s);
	}
	meta_cache_free(mc);
}

static void
test_budget_zero(void **state)
{
	struct meta_cache *mc = meta_cache_new(0);
	struct store_msg_meta m;
	struct meta_cache_stats st;
	uint8_t k[STORE_BLOB_KEY_LEN];

	(void)state;
	make_key(k, 5);
	make_meta(&m, 5);
	meta_cache_put(mc, k, &m);
	drop_meta(&m);
	assert_null(meta_cache_find(mc, k));
	meta_cache_stats(mc, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	meta_cache_free(mc);
	meta_cache_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_and_copy),
		cmocka_unit_test(test_budget_lru),
		cmocka_unit_test(test_grow_many),
		cmocka_unit_test(test_budget_zero),
	};

	return cmocka_run_group_tests_name("imap_meta", tests, NULL, NULL);
}
