/*
 * tpool.c - helper threads for slow work, completions back on the loop.
 *
 * Runs in the daemon workers (smtpd, imapd), created after fork.  Trusts
 * its callers (loop-thread code); holds no client input itself.  One mutex
 * guards both queues; helper threads wait on a condition variable for
 * work, and signal the loop by writing to an eventfd that a persistent
 * libevent read event drains before running the done() callbacks.
 */
#include "autoconf.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "tpool.h"
#include "xmalloc.h"

struct tpool_job {
	struct tpool_job *next;
	void (*work)(void *arg);
	void (*done)(void *arg);
	void *arg;
};

/* A singly linked FIFO. */
struct tpool_queue {
	struct tpool_job *head;
	struct tpool_job *tail;
};

struct tpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct tpool_queue todo;	/* waiting for a thread */
	struct tpool_queue finished;	/* waiting for done() on the loop */
	size_t pending;			/* submitted, done() not yet run */
	size_t queue_max;
	int stopping;
	int efd;
	struct event *ev;
	pthread_t *threads;
	unsigned int nthreads;
};

static void
queue_push(struct tpool_queue *q, struct tpool_job *job)
{
	job->next = NULL;
	if (q->tail != NULL)
		q->tail->next = job;
	else
		q->head = job;
	q->tail = job;
}

static struct tpool_job *
queue_pop(struct tpool_queue *q)
{
	struct tpool_job *job = q->head;

	if (job != NULL) {
		q->head = job->next;
		if (q->head == NULL)
			q->tail = NULL;
		job->next = NULL;
	}
	return job;
}

static void
queue_free(struct tpool_queue *q)
{
	struct tpool_job *job;

	while ((job = queue_pop(q)) != NULL)
		free(job);
}

static void
tpool_wake_loop(struct tpool *pool)
{
	uint64_t one = 1;
	ssize_t n;

	do {
		n = write(pool->efd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
	/* EAGAIN means the counter is already non-zero: the loop will wake. */
	if (n < 0 && errno != EAGAIN)
		log_warn("tpool: eventfd write");
}

static void *
tpool_thread(void *arg)
{
	struct tpool *pool = arg;
	struct tpool_job *job;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (!pool->stopping && pool->todo.head == NULL)
			pthread_cond_wait(&pool->cond, &pool->lock);
		if (pool->stopping)
			break;
		job = queue_pop(&pool->todo);
		pthread_mutex_unlock(&pool->lock);

		if (job->work != NULL)
			job->work(job->arg);

		pthread_mutex_lock(&pool->lock);
		if (job->done == NULL) {
			pool->pending--;
			free(job);
			continue;
		}
		queue_push(&pool->finished, job);
		pthread_mutex_unlock(&pool->lock);
		tpool_wake_loop(pool);
		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Loop side: drain the eventfd, then run every finished job's done(). */
static void
tpool_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct tpool *pool = arg;
	struct tpool_queue batch;
	struct tpool_job *job;
	uint64_t cnt;
	ssize_t n;

	(void)what;
	do {
		n = read(fd, &cnt, sizeof(cnt));
	} while (n < 0 && errno == EINTR);

	pthread_mutex_lock(&pool->lock);
	batch = pool->finished;
	pool->finished.head = pool->finished.tail = NULL;
	pthread_mutex_unlock(&pool->lock);

	while ((job = queue_pop(&batch)) != NULL) {
		void (*done)(void *) = job->done;
		void *jarg = job->arg;

		pthread_mutex_lock(&pool->lock);
		pool->pending--;
		pthread_mutex_unlock(&pool->lock);
		free(job);
		done(jarg);
	}
}

struct tpool *
tpool_new(struct event_base *base, unsigned int nthreads, size_t queue_max,
    const char **error_r)
{
	struct tpool *pool;
	unsigned int i;

	if (nthreads == 0 || nthreads > TPOOL_THREADS_MAX) {
		*error_r = "tpool: thread count out of range";
		return NULL;
	}
	if (queue_max == 0)
		queue_max = TPOOL_QUEUE_MAX;
	if (queue_max > TPOOL_QUEUE_MAX) {
		*error_r = "tpool: queue limit out of range";
		return NULL;
	}
	pool = xcalloc(1, sizeof(*pool));
	pool->queue_max = queue_max;
	pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (pool->efd < 0) {
		*error_r = "tpool: eventfd failed";
		free(pool);
		return NULL;
	}
	pool->ev = event_new(base, pool->efd, EV_READ | EV_PERSIST,
	    tpool_on_event, pool);
	if (pool->ev == NULL || event_add(pool->ev, NULL) < 0) {
		*error_r = "tpool: cannot register event";
		if (pool->ev != NULL)
			event_free(pool->ev);
		close(pool->efd);
		free(pool);
		return NULL;
	}
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->threads = xcalloc(nthreads, sizeof(*pool->threads));
	for (i = 0; i < nthreads; i++) {
		if (pthread_create(&pool->threads[i], NULL, tpool_thread,
		    pool) != 0) {
			pool->nthreads = i;
			tpool_free(pool);
			*error_r = "tpool: cannot create thread";
			return NULL;
		}
	}
	pool->nthreads = nthreads;
	return pool;
}

int
tpool_submit(struct tpool *pool, void (*work)(void *arg),
    void (*done)(void *arg), void *arg, const char **error_r)
{
	struct tpool_job *job;

	pthread_mutex_lock(&pool->lock);
	if (pool->pending >= pool->queue_max) {
		pthread_mutex_unlock(&pool->lock);
		*error_r = "tpool: queue full";
		return -1;
	}
	job = xcalloc(1, sizeof(*job));
	job->work = work;
	job->done = done;
	job->arg = arg;
	pool->pending++;
	queue_push(&pool->todo, job);
	pthread_mutex_unlock(&pool->lock);
	/*
	 * Signalled after the unlock, so that the woken thread does not
	 * wake only to wait again for the lock this thread still holds.
	 */
	pthread_cond_signal(&pool->cond);
	return 0;
}

size_t
tpool_pending(struct tpool *pool)
{
	size_t n;

	pthread_mutex_lock(&pool->lock);
	n = pool->pending;
	pthread_mutex_unlock(&pool->lock);
	return n;
}

void
tpool_free(struct tpool *pool)
{
	unsigned int i;

	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = 1;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	free(pool->threads);
	queue_free(&pool->todo);
	queue_free(&pool->finished);
	event_free(pool->ev);
	close(pool->efd);
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}
