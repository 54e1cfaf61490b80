/*
 * Unit tests for lib/tpool.c: work runs on helper threads and done() on
 * the loop thread for every job; the queue limit at N-1, N and N+1 while
 * the threads are held; argument ranges; work-only and done-only jobs; a
 * done() that submits again; and tpool_free() with jobs still queued.
 */
#include "autoconf.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>

#include "tpool.h"
#include "xmalloc.h"

static pthread_t main_thread;
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open = 1;
static int work_count;		/* under gate_lock */
static int work_on_main;	/* under gate_lock */
static int done_count;		/* loop thread only */
static int done_off_main;	/* loop thread only */

struct job {
	int n;
	int worked;
	struct tpool *resubmit;
};

static void
reset(int open)
{
	pthread_mutex_lock(&gate_lock);
	gate_open = open;
	work_count = 0;
	work_on_main = 0;
	pthread_mutex_unlock(&gate_lock);
	done_count = 0;
	done_off_main = 0;
}

static void
open_gate(void)
{
	pthread_mutex_lock(&gate_lock);
	gate_open = 1;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

static void
job_work(void *arg)
{
	struct job *j = arg;

	pthread_mutex_lock(&gate_lock);
	while (!gate_open)
		pthread_cond_wait(&gate_cond, &gate_lock);
	work_count++;
	if (pthread_equal(pthread_self(), main_thread))
		work_on_main++;
	pthread_mutex_unlock(&gate_lock);
	if (j != NULL)
		j->worked = 1;
}

static void
job_done(void *arg)
{
	struct job *j = arg;

	if (!pthread_equal(pthread_self(), main_thread))
		done_off_main++;
	if (j != NULL && j->worked)
		done_count++;
	if (j != NULL && j->resubmit != NULL && j->n > 0) {
		struct job *next = xcalloc(1, sizeof(*next));
		const char *err = NULL;

		next->n = j->n - 1;
		next->resubmit = j->resubmit;
		assert_int_equal(tpool_submit(j->resubmit, job_work, job_done,
		    next, &err), 0);
	}
	free(j);
}

static void
done_only(void *arg)
{
	int *p = arg;

	(*p)++;
}

static void
run_until(struct event_base *base, int *counter, int want)
{
	int rounds = 0;

	while (*counter < want) {
		assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
		assert_true(++rounds < 1000000);
	}
}

static void
test_many_jobs(void **state)
{
	struct event_base *base = event_base_new();
	const char *err = NULL;
	struct tpool *pool;
	int i;

	(void)state;
	reset(1);
	pool = tpool_new(base, 4, 0, &err);
	assert_non_null(pool);
	for (i = 0; i < 2000; i++) {
		struct job *j = xcalloc(1, sizeof(*j));

		assert_int_equal(tpool_submit(pool, job_work, job_done, j,
		    &err), 0);
	}
	run_until(base, &done_count, 2000);
	assert_int_equal(done_count, 2000);
	assert_int_equal(work_count, 2000);
	assert_int_equal(work_on_main, 0);
	assert_int_equal(done_off_main, 0);
	assert_int_equal(tpool_pending(pool), 0);
	tpool_free(pool);
	event_base_free(base);
}

/* queue_max N = 5: N-1 and N accepted while threads are held, N+1 not. */
static void
test_queue_limit(void **state)
{
	struct event_base *base = event_base_new();
	const char *err = NULL;
	struct tpool *pool;
	struct job *extra;
	int i;

	(void)state;
	reset(0);
	pool = tpool_new(base, 2, 5, &err);
	assert_non_null(pool);
	for (i = 0; i < 5; i++) {
		assert_int_equal(tpool_submit(pool, job_work, job_done,
		    xcalloc(1, sizeof(struct job)), &err), 0);
		assert_int_equal(tpool_pending(pool), (size_t)i + 1);
	}
	extra = xcalloc(1, sizeof(*extra));
	err = NULL;
	assert_int_equal(tpool_submit(pool, job_work, job_done, extra, &err),
	    -1);
	assert_non_null(err);
	assert_int_equal(tpool_pending(pool), 5);
	open_gate();
	run_until(base, &done_count, 5);
	assert_int_equal(tpool_pending(pool), 0);
	/* Room again once done() ran. */
	assert_int_equal(tpool_submit(pool, job_work, job_done, extra, &err),
	    0);
	run_until(base, &done_count, 6);
	tpool_free(pool);
	event_base_free(base);
}

static void
test_bad_args(void **state)
{
	struct event_base *base = event_base_new();
	const char *err = NULL;
	struct tpool *pool;

	(void)state;
	assert_null(tpool_new(base, 0, 0, &err));
	assert_non_null(err);
	err = NULL;
	assert_null(tpool_new(base, TPOOL_THREADS_MAX + 1, 0, &err));
	assert_non_null(err);
	err = NULL;
	assert_null(tpool_new(base, 1, TPOOL_QUEUE_MAX + 1, &err));
	assert_non_null(err);
	pool = tpool_new(base, TPOOL_THREADS_MAX, TPOOL_QUEUE_MAX, &err);
	assert_non_null(pool);
	tpool_free(pool);
	tpool_free(NULL);
	event_base_free(base);
}

static void
test_partial_jobs(void **state)
{
	struct event_base *base = event_base_new();
	const char *err = NULL;
	struct tpool *pool;
	int counter = 0;
	int i;

	(void)state;
	reset(1);
	pool = tpool_new(base, 2, 0, &err);
	assert_non_null(pool);
	/* done alone: deferred to the loop. */
	for (i = 0; i < 10; i++)
		assert_int_equal(tpool_submit(pool, NULL, done_only, &counter,
		    &err), 0);
	run_until(base, &counter, 10);
	/* work alone: fire and forget. */
	for (i = 0; i < 10; i++)
		assert_int_equal(tpool_submit(pool, job_work, NULL, NULL,
		    &err), 0);
	while (tpool_pending(pool) > 0)
		event_base_loop(base, EVLOOP_NONBLOCK);
	pthread_mutex_lock(&gate_lock);
	assert_int_equal(work_count, 10);
	pthread_mutex_unlock(&gate_lock);
	tpool_free(pool);
	event_base_free(base);
}

static void
test_resubmit_from_done(void **state)
{
	struct event_base *base = event_base_new();
	const char *err = NULL;
	struct tpool *pool;
	struct job *j;

	(void)state;
	reset(1);
	pool = tpool_new(base, 1, 2, &err);
	assert_non_null(pool);
	j = xcalloc(1, sizeof(*j));
	j->n = 50;
	j->resubmit = pool;
	assert_int_equal(tpool_submit(pool, job_work, job_done, j, &err), 0);
	run_until(base, &done_count, 51);
	assert_int_equal(tpool_pending(pool), 0);
	tpool_free(pool);
	event_base_free(base);
}

/* Queued jobs are dropped by tpool_free; no callback runs. */
static void
test_free_with_queue(void **state)
{
	struct event_base *base = event_base_new();
	const char *err = NULL;
	struct tpool *pool;
	int counter = 0;
	int i;

	(void)state;
	reset(0);
	pool = tpool_new(base, 1, 0, &err);
	assert_non_null(pool);
	for (i = 0; i < 20; i++)
		assert_int_equal(tpool_submit(pool, NULL, done_only, &counter,
		    &err), 0);
	tpool_free(pool);
	assert_int_equal(counter, 0);
	event_base_free(base);
	open_gate();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_jobs),
		cmocka_unit_test(test_queue_limit),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_partial_jobs),
		cmocka_unit_test(test_resubmit_from_done),
		cmocka_unit_test(test_free_with_queue),
	};

	main_thread = pthread_self();
	return cmocka_run_group_tests_name("tpool", tests, NULL, NULL);
}
