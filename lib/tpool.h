/*
 * tpool.h - a small pool of helper threads whose completions come back to
 * a libevent loop.
 *
 * Used by the single-threaded daemon workers (smtpd, imapd) for work that
 * would stall the loop: Argon2id password checks, RSA/ECDSA signatures,
 * large searches, a store transaction that fsyncs.  A job is two callbacks:
 *
 *     work(arg)  runs on a helper thread.  It must not touch the event base,
 *                any struct conn, or other loop-owned state; it may use the
 *                store (Berkeley DB handles are thread-safe when the
 *                environment is opened DB_THREAD) and must not call exit().
 *     done(arg)  runs afterwards on the loop thread, from the event loop,
 *                in the order the jobs finished.
 *                It owns arg again and may free it, touch connections
 *                and submit new jobs (but not call tpool_free()).
 *
 * Completions are handed back through an eventfd registered with the
 * event base; the helper threads never call libevent.  Typical use:
 *
 *     struct job { struct conn *conn; char *user; int ok; };
 *     static void job_work(void *arg) { struct job *j = arg;
 *             j->ok = slow_check(j->user); }
 *     static void job_done(void *arg) { struct job *j = arg;
 *             if (j->conn != NULL) reply(j->conn, j->ok); free(j); }
 *     if (tpool_submit(pool, job_work, job_done, j, &err) < 0)
 *             reply 454 "4.7.0 server busy"
 *
 * If the connection that submitted a job closes before done() runs, the
 * caller must not free what arg points to: mark it (j->conn = NULL) and
 * let done() clean up.  There is no cancellation of a running job.
 *
 * Create the pool AFTER fork() (threads do not survive fork), in the
 * process that runs the loop.  Not for use from more than one loop thread:
 * tpool_submit() and tpool_free() are called by the loop thread only.
 */
#ifndef GOVMAIL_TPOOL_H
#define GOVMAIL_TPOOL_H

#include <stddef.h>

struct event_base;
struct tpool;

/* Helper threads per pool, at most (tpool_new refuses more). */
#define TPOOL_THREADS_MAX 64
/*
 * Jobs queued or running at once, per pool, at most: a submit past this
 * fails so that a flood of AUTH attempts cannot grow memory without bound;
 * the caller answers with a temporary failure.
 */
#define TPOOL_QUEUE_MAX 4096

/*
 * Create a pool of nthreads (1..TPOOL_THREADS_MAX) helper threads whose
 * completions are run from base.  queue_max (1..TPOOL_QUEUE_MAX, 0 means
 * TPOOL_QUEUE_MAX) caps jobs pending or running.  Returns the pool, or
 * NULL with *error_r set (static text) if the arguments are out of range
 * or threads/eventfd could not be created.  Free with tpool_free().
 */
struct tpool *tpool_new(struct event_base *base, unsigned int nthreads,
    size_t queue_max, const char **error_r);

/*
 * Queue a job: work(arg) on a helper thread, then done(arg) on the loop
 * thread.  work may be NULL (done alone, deferred to the loop); done may be
 * NULL (fire and forget; then work owns arg).  Returns 0, or -1 with
 * *error_r set if the pool already holds queue_max jobs (the job is not
 * queued and neither callback will be called).
 */
int tpool_submit(struct tpool *pool, void (*work)(void *arg),
    void (*done)(void *arg), void *arg, const char **error_r);

/* Jobs submitted whose done() has not yet run. */
size_t tpool_pending(struct tpool *pool);

/*
 * Stop the threads and free the pool.  Jobs not yet started are dropped
 * without calling either callback; a running job finishes its work() but
 * its done() is not called.  Call only from the loop thread and never from
 * inside a done() callback.  NULL is accepted.
 */
void tpool_free(struct tpool *pool);

#endif
