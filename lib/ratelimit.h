/*
 * ratelimit.h - a bounded table of fixed-window failure counters keyed by
 * 16 bytes (an address), that several processes may share.
 *
 * The daemons' root parent creates the shared tables before it forks its
 * workers (ratelimit_shared_init, called by daemon_run), so that a limit
 * such as "at most N failed logins per client address" holds for the
 * whole daemon, not N per worker: a worker restarted by the parent
 * inherits the same tables.  The memory is an anonymous MAP_SHARED mapping
 * (nothing on disk; counters start afresh when the daemon restarts, which
 * is all a rate limit needs), guarded by one process-shared, robust mutex
 * per bucket (a worker killed while holding one does not wedge the
 * others).  Without that call (tools, unit tests) a table is private.
 *
 * Keys are opaque 16-byte values (lib/sasl.c makes them from an address);
 * buckets are chosen by a keyed hash with a random key made when the table
 * is created, so a client cannot aim collisions at one bucket.  At most
 * RATELIMIT_SLOTS keys are tracked; when a bucket is full its oldest entry
 * is evicted.  Times are passed in (seconds of any clock every sharing
 * process reads alike, e.g. CLOCK_MONOTONIC), so tests need no sleeping.
 */
#ifndef GOVMAIL_RATELIMIT_H
#define GOVMAIL_RATELIMIT_H

#include <stdint.h>

/* Keys tracked by one table. */
#define RATELIMIT_SLOTS 4096
/* Entries per hash bucket (evictions stay within a bucket). */
#define RATELIMIT_WAYS 8
/* Bytes in a key. */
#define RATELIMIT_KEY_LEN 16

struct ratelimit;

/*
 * A new table, all counters zero.  shared != 0: in an anonymous shared
 * mapping that children forked afterwards use as well.  Returns the table
 * (free with ratelimit_free) or NULL with *error_r (mmap or mutex setup
 * failed; static text).
 */
struct ratelimit *ratelimit_new(int shared, const char **error_r);
/* Free a table (unmapped in this process only); NULL is ignored. */
void ratelimit_free(struct ratelimit *rl);

/*
 * The number of failures counted for key in the window that started at
 * most window seconds before now (0 if none or the window has passed).
 */
unsigned int ratelimit_count(struct ratelimit *rl,
    const uint8_t key[RATELIMIT_KEY_LEN], int64_t window, int64_t now);

/*
 * Count one failure for key at now: a window starts at the first failure
 * and lasts window seconds; a failure after it starts a new window.
 * Returns the count within the current window, this failure included.
 */
unsigned int ratelimit_add(struct ratelimit *rl,
    const uint8_t key[RATELIMIT_KEY_LEN], int64_t window, int64_t now);

/*
 * Count one event for key at now only if fewer than max were counted in
 * the current window, as one step (no other process can slip in between
 * the check and the count).  Returns 1 if counted (within the limit), 0
 * if not.
 */
int ratelimit_try(struct ratelimit *rl, const uint8_t key[RATELIMIT_KEY_LEN],
    int64_t window, int64_t now, unsigned int max);

/* The process-wide shared tables. */
enum ratelimit_table {
	RATELIMIT_TABLE_AUTH = 0,	/* failed logins (lib/sasl.c) */
	RATELIMIT_TABLE_MESSAGES,	/* smtpd's messages per account/IP */
	RATELIMIT_TABLES
};

/*
 * Create every shared table once (later calls do nothing); the root
 * parent does it before it forks, in daemon_run().  Returns 0 or -1 with
 * *error_r (then there are none).
 */
int ratelimit_shared_init(const char **error_r);
/* A shared table, or NULL when ratelimit_shared_init() was not called. */
struct ratelimit *ratelimit_shared(enum ratelimit_table which);
/* Unmap them in this process (tests; workers simply exit). */
void ratelimit_shared_free(void);

#endif
