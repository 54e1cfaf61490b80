/*
 * ratelimit.c - fixed-window failure counters in a bounded table that the
 * workers of one daemon share (see ratelimit.h).
 *
 * Runs in the daemons' root parent (creation, before fork) and in every
 * worker, on the event loop.  Keys come from client addresses and are
 * trusted for nothing: buckets are picked by a keyed hash (libsodium's
 * shorthash, random key per table), the table never grows, and a full
 * bucket evicts its oldest entry.
 */
#include "autoconf.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <sodium.h>

#include "ratelimit.h"
#include "xmalloc.h"

#define RATELIMIT_BUCKETS (RATELIMIT_SLOTS / RATELIMIT_WAYS)

struct ratelimit_entry {
	uint8_t key[RATELIMIT_KEY_LEN];
	uint32_t used;
	uint32_t count;
	int64_t window_start;
};

/* The whole table: one block, private or in a shared mapping. */
struct ratelimit_mem {
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	pthread_mutex_t locks[RATELIMIT_BUCKETS];
	struct ratelimit_entry entries[RATELIMIT_SLOTS];
};

struct ratelimit {
	struct ratelimit_mem *m;
	int shared;
};

static struct ratelimit *shared_tables[RATELIMIT_TABLES];

struct ratelimit *
ratelimit_new(int shared, const char **error_r)
{
	struct ratelimit *rl;
	struct ratelimit_mem *m;
	pthread_mutexattr_t attr;
	size_t i;

	if (shared) {
		m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED) {
			*error_r = "ratelimit: mmap of the shared table failed";
			return NULL;
		}
	} else
		m = xcalloc(1, sizeof(*m));	/* mmap gives zeroes too */
	if (pthread_mutexattr_init(&attr) != 0 ||
	    (shared && pthread_mutexattr_setpshared(&attr,
	    PTHREAD_PROCESS_SHARED) != 0) ||
	    (shared && pthread_mutexattr_setrobust(&attr,
	    PTHREAD_MUTEX_ROBUST) != 0)) {
		*error_r = "ratelimit: mutex attributes refused";
		if (shared)
			munmap(m, sizeof(*m));
		else
			free(m);
		return NULL;
	}
	for (i = 0; i < RATELIMIT_BUCKETS; i++)
		(void)pthread_mutex_init(&m->locks[i], &attr);
	pthread_mutexattr_destroy(&attr);
	randombytes_buf(m->hash_key, sizeof(m->hash_key));
	rl = xcalloc(1, sizeof(*rl));
	rl->m = m;
	rl->shared = shared;
	return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
	size_t i;

	if (rl == NULL)
		return;
	if (rl->shared)
		munmap(rl->m, sizeof(*rl->m));	/* others keep theirs */
	else {
		for (i = 0; i < RATELIMIT_BUCKETS; i++)
			pthread_mutex_destroy(&rl->m->locks[i]);
		free(rl->m);
	}
	free(rl);
}

static size_t
bucket_of(const struct ratelimit *rl, const uint8_t key[RATELIMIT_KEY_LEN])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v = 0;
	size_t i;

	crypto_shorthash(h, key, RATELIMIT_KEY_LEN, rl->m->hash_key);
	for (i = 0; i < sizeof(v) && i < sizeof(h); i++)
		v = (v << 8) | h[i];
	return (size_t)(v % RATELIMIT_BUCKETS);
}

/* Lock bucket b; a holder that died leaves the entries usable. */
static void
bucket_lock(struct ratelimit *rl, size_t b)
{
	int r = pthread_mutex_lock(&rl->m->locks[b]);

	if (r == EOWNERDEAD)
		(void)pthread_mutex_consistent(&rl->m->locks[b]);
}

static void
bucket_unlock(struct ratelimit *rl, size_t b)
{
	(void)pthread_mutex_unlock(&rl->m->locks[b]);
}

static struct ratelimit_entry *
entry_find(struct ratelimit *rl, size_t b,
    const uint8_t key[RATELIMIT_KEY_LEN])
{
	struct ratelimit_entry *e = &rl->m->entries[b * RATELIMIT_WAYS];
	size_t i;

	for (i = 0; i < RATELIMIT_WAYS; i++)
		if (e[i].used && memcmp(e[i].key, key, RATELIMIT_KEY_LEN) == 0)
			return &e[i];
	return NULL;
}

/* A window that started at start is over at now (or the clock went back). */
static int
window_over(int64_t start, int64_t window, int64_t now)
{
	return now - start >= window || now < start;
}

/* Find key's entry in bucket b, or make one (evicting); locked. */
static struct ratelimit_entry *
entry_get(struct ratelimit *rl, size_t b,
    const uint8_t key[RATELIMIT_KEY_LEN], int64_t window, int64_t now)
{
	struct ratelimit_entry *e = entry_find(rl, b, key), *w;
	size_t i;

	if (e == NULL) {
		/* A free or expired way, else the oldest one. */
		w = &rl->m->entries[b * RATELIMIT_WAYS];
		e = &w[0];
		for (i = 0; i < RATELIMIT_WAYS; i++) {
			if (!w[i].used ||
			    window_over(w[i].window_start, window, now)) {
				e = &w[i];
				break;
			}
			if (w[i].window_start < e->window_start)
				e = &w[i];
		}
		memcpy(e->key, key, RATELIMIT_KEY_LEN);
		e->used = 1;
		e->window_start = now;
		e->count = 0;
	} else if (window_over(e->window_start, window, now)) {
		e->window_start = now;
		e->count = 0;
	}
	return e;
}

unsigned int
ratelimit_count(struct ratelimit *rl, const uint8_t key[RATELIMIT_KEY_LEN],
    int64_t window, int64_t now)
{
	size_t b = bucket_of(rl, key);
	struct ratelimit_entry *e;
	unsigned int n = 0;

	bucket_lock(rl, b);
	e = entry_find(rl, b, key);
	if (e != NULL && !window_over(e->window_start, window, now))
		n = e->count;
	bucket_unlock(rl, b);
	return n;
}

unsigned int
ratelimit_add(struct ratelimit *rl, const uint8_t key[RATELIMIT_KEY_LEN],
    int64_t window, int64_t now)
{
	size_t b = bucket_of(rl, key);
	struct ratelimit_entry *e;
	unsigned int n;

	bucket_lock(rl, b);
	e = entry_get(rl, b, key, window, now);
	if (e->count < UINT32_MAX)
		e->count++;
	n = e->count;
	bucket_unlock(rl, b);
	return n;
}

int
ratelimit_try(struct ratelimit *rl, const uint8_t key[RATELIMIT_KEY_LEN],
    int64_t window, int64_t now, unsigned int max)
{
	size_t b = bucket_of(rl, key);
	struct ratelimit_entry *e;
	int ok;

	bucket_lock(rl, b);
	e = entry_get(rl, b, key, window, now);
	ok = e->count < max;
	if (ok)
		e->count++;
	bucket_unlock(rl, b);
	return ok;
}

int
ratelimit_shared_init(const char **error_r)
{
	size_t i;

	if (shared_tables[0] != NULL)
		return 0;
	for (i = 0; i < RATELIMIT_TABLES; i++) {
		shared_tables[i] = ratelimit_new(1, error_r);
		if (shared_tables[i] == NULL) {
			ratelimit_shared_free();
			return -1;
		}
	}
	return 0;
}

struct ratelimit *
ratelimit_shared(enum ratelimit_table which)
{
	if ((int)which < 0 || which >= RATELIMIT_TABLES)
		return NULL;
	return shared_tables[which];
}

void
ratelimit_shared_free(void)
{
	size_t i;

	for (i = 0; i < RATELIMIT_TABLES; i++) {
		ratelimit_free(shared_tables[i]);
		shared_tables[i] = NULL;
	}
}
