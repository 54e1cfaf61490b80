/*
 * Unit tests for lib/ratelimit.c: the fixed window (counts at N-1, N,
 * N+1, the window's end, a clock that goes back), keys kept apart, the
 * table's bound (eviction of the oldest, never growth), and the shared
 * table: processes forked after it was made all count into it, at the
 * same time, and lose no increment; a private table is not shared.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratelimit.h"

/* Children and increments per child of the concurrency test. */
#define TEST_CHILDREN 4
#define TEST_ADDS 2000

static void
key_of(uint32_t n, uint8_t key[RATELIMIT_KEY_LEN])
{
	memset(key, 0, RATELIMIT_KEY_LEN);
	key[0] = 0x20;
	key[12] = (uint8_t)(n >> 24);
	key[13] = (uint8_t)(n >> 16);
	key[14] = (uint8_t)(n >> 8);
	key[15] = (uint8_t)n;
}

static void
test_window(void **state)
{
	const char *err = NULL;
	struct ratelimit *rl = ratelimit_new(0, &err);
	uint8_t a[RATELIMIT_KEY_LEN], b[RATELIMIT_KEY_LEN];
	static const struct {
		int64_t now;
		int add;		/* 1: count a failure first */
		unsigned int want;	/* count for a afterwards */
	} steps[] = {
		{ 100, 0, 0 },
		{ 100, 1, 1 },
		{ 110, 1, 2 },
		{ 120, 1, 3 },
		{ 159, 0, 3 },		/* window 60 from 100: still in */
		{ 160, 0, 0 },		/* over */
		{ 160, 1, 1 },		/* a new window */
		{ 150, 0, 0 },		/* clock went back: over */
	};
	size_t i;

	(void)state;
	assert_non_null(rl);
	key_of(1, a);
	key_of(2, b);
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (steps[i].add)
			assert_int_equal(ratelimit_add(rl, a, 60, steps[i].now),
			    steps[i].want);
		assert_int_equal(ratelimit_count(rl, a, 60, steps[i].now),
		    steps[i].want);
		assert_int_equal(ratelimit_count(rl, b, 60, steps[i].now), 0);
	}
	ratelimit_free(rl);
}

static void
test_bound(void **state)
{
	const char *err = NULL;
	struct ratelimit *rl = ratelimit_new(0, &err);
	uint8_t k[RATELIMIT_KEY_LEN];
	uint32_t i, kept = 0, total = 4 * RATELIMIT_SLOTS;

	(void)state;
	/* Keys 0 .. total-1, one a second: the table keeps the newest. */
	for (i = 0; i < total; i++) {
		key_of(i, k);
		assert_int_equal(ratelimit_add(rl, k, 1000000, i), 1);
	}
	for (i = 0; i < total; i++) {
		key_of(i, k);
		kept += ratelimit_count(rl, k, 1000000, total);
	}
	assert_true(kept <= RATELIMIT_SLOTS);
	assert_true(kept >= RATELIMIT_SLOTS / 2);
	/* The very last key is always kept, the very first evicted. */
	key_of(total - 1, k);
	assert_int_equal(ratelimit_count(rl, k, 1000000, total), 1);
	key_of(0, k);
	assert_int_equal(ratelimit_count(rl, k, 1000000, total), 0);
	ratelimit_free(rl);
}

/* Fork children that each add TEST_ADDS failures for the same key. */
static void
run_children(struct ratelimit *rl, const uint8_t *key)
{
	pid_t pids[TEST_CHILDREN];
	int i, status;

	for (i = 0; i < TEST_CHILDREN; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			int j;

			for (j = 0; j < TEST_ADDS; j++)
				(void)ratelimit_add(rl, key, 1000, 5);
			_exit(0);
		}
	}
	for (i = 0; i < TEST_CHILDREN; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
}

static void
test_shared_fork(void **state)
{
	const char *err = NULL;
	struct ratelimit *shared = ratelimit_new(1, &err);
	struct ratelimit *priv = ratelimit_new(0, &err);
	uint8_t k[RATELIMIT_KEY_LEN];

	(void)state;
	assert_non_null(shared);
	assert_non_null(priv);
	key_of(7, k);
	run_children(shared, k);
	/* Every child's every increment, none lost to a race. */
	assert_int_equal(ratelimit_count(shared, k, 1000, 5),
	    TEST_CHILDREN * TEST_ADDS);
	/* One more here continues the same count. */
	assert_int_equal(ratelimit_add(shared, k, 1000, 6),
	    TEST_CHILDREN * TEST_ADDS + 1);
	/* A private table: the children counted in their own copies. */
	run_children(priv, k);
	assert_int_equal(ratelimit_count(priv, k, 1000, 5), 0);
	ratelimit_free(shared);
	ratelimit_free(priv);
}

/* A child killed while it holds a bucket's lock does not wedge it. */
static void
test_shared_dead_holder(void **state)
{
	const char *err = NULL;
	struct ratelimit *rl = ratelimit_new(1, &err);
	uint8_t k[RATELIMIT_KEY_LEN];
	pid_t pid;
	int status, i;

	(void)state;
	assert_non_null(rl);
	key_of(9, k);
	/* Kill children at random points of a busy loop, several times. */
	for (i = 0; i < 5; i++) {
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			for (;;)
				(void)ratelimit_add(rl, k, 1000, 5);
		}
		usleep(2000);
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
	}
	/* Still usable: a count, then one more on top. */
	{
		unsigned int n = ratelimit_count(rl, k, 1000, 5);

		assert_true(n > 0);
		assert_int_equal(ratelimit_add(rl, k, 1000, 5), n + 1);
	}
	ratelimit_free(rl);
}

static void
test_shared_tables(void **state)
{
	const char *err = NULL;
	struct ratelimit *first;
	uint8_t k[RATELIMIT_KEY_LEN];

	(void)state;
	assert_null(ratelimit_shared(RATELIMIT_TABLE_AUTH));
	assert_int_equal(ratelimit_shared_init(&err), 0);
	first = ratelimit_shared(RATELIMIT_TABLE_AUTH);
	assert_non_null(first);
	assert_non_null(ratelimit_shared(RATELIMIT_TABLE_MESSAGES));
	assert_ptr_not_equal(first, ratelimit_shared(RATELIMIT_TABLE_MESSAGES));
	assert_null(ratelimit_shared(RATELIMIT_TABLES));
	/* A second call keeps the tables (workers restarted later). */
	assert_int_equal(ratelimit_shared_init(&err), 0);
	assert_ptr_equal(ratelimit_shared(RATELIMIT_TABLE_AUTH), first);
	/* The tables are apart. */
	key_of(3, k);
	(void)ratelimit_add(first, k, 60, 1);
	assert_int_equal(ratelimit_count(ratelimit_shared(
	    RATELIMIT_TABLE_MESSAGES), k, 60, 1), 0);
	ratelimit_shared_free();
	assert_null(ratelimit_shared(RATELIMIT_TABLE_AUTH));
}

/* ratelimit_try: at most max per window, as one step across processes. */
static void
test_try(void **state)
{
	const char *err = NULL;
	struct ratelimit *rl = ratelimit_new(1, &err);
	uint8_t k[RATELIMIT_KEY_LEN];
	pid_t pids[TEST_CHILDREN];
	int i, status, ok = 0;

	(void)state;
	key_of(11, k);
	/* N-1, N, N+1 with max 3. */
	assert_int_equal(ratelimit_try(rl, k, 60, 100, 3), 1);
	assert_int_equal(ratelimit_try(rl, k, 60, 100, 3), 1);
	assert_int_equal(ratelimit_try(rl, k, 60, 110, 3), 1);
	assert_int_equal(ratelimit_try(rl, k, 60, 120, 3), 0);
	assert_int_equal(ratelimit_count(rl, k, 60, 120), 3);
	assert_int_equal(ratelimit_try(rl, k, 60, 160, 3), 1);	/* new window */
	/* Children racing for 100 slots: exactly 100 get one. */
	key_of(12, k);
	for (i = 0; i < TEST_CHILDREN; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			int j, got = 0;

			for (j = 0; j < 100; j++)
				got += ratelimit_try(rl, k, 1000, 5, 100);
			_exit(got);
		}
	}
	for (i = 0; i < TEST_CHILDREN; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		ok += WEXITSTATUS(status);
	}
	assert_int_equal(ok, 100);
	assert_int_equal(ratelimit_count(rl, k, 1000, 5), 100);
	ratelimit_free(rl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_shared_fork),
		cmocka_unit_test(test_shared_dead_holder),
		cmocka_unit_test(test_shared_tables),
		cmocka_unit_test(test_try),
	};

	return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
