/*
 * smtp_rate.c - per-key fixed-window counters for the submission rate
 * limits (messages per account, messages per client address).
 *
 * govmail-smtpd workers, loop thread only.  Keys come from the session
 * (an authenticated address, a numeric IP): bounded by SMTP_PATH_MAX.
 * Buckets are chosen by a keyed hash (libsodium's shorthash with a random
 * key per process) so that a client cannot aim collisions at one slot.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "smtpd.h"
#include "xmalloc.h"

struct smtp_rate_slot {
	char key[SMTP_PATH_MAX + 1];
	int64_t start;
	unsigned count;
};

struct smtp_rate {
	unsigned limit;
	unsigned window;
	uint8_t hkey[crypto_shorthash_KEYBYTES];
	struct smtp_rate_slot *slots;
};

struct smtp_rate *
smtp_rate_new(unsigned limit, unsigned window)
{
	struct smtp_rate *r = xcalloc(1, sizeof(*r));

	r->limit = limit;
	r->window = window == 0 ? 1 : window;
	randombytes_buf(r->hkey, sizeof(r->hkey));
	r->slots = xcalloc(SMTP_RATE_SLOTS, sizeof(*r->slots));
	return r;
}

void
smtp_rate_free(struct smtp_rate *r)
{
	if (r == NULL)
		return;
	free(r->slots);
	free(r);
}

int
smtp_rate_hit(struct smtp_rate *r, const char *key, int64_t now)
{
	uint8_t h[crypto_shorthash_BYTES];
	struct smtp_rate_slot *s;
	uint64_t idx;
	size_t klen = strlen(key);

	if (r->limit == 0)
		return 1;
	if (klen > SMTP_PATH_MAX)
		klen = SMTP_PATH_MAX;
	crypto_shorthash(h, (const uint8_t *)key, klen, r->hkey);
	memcpy(&idx, h, sizeof(idx));
	s = &r->slots[idx % SMTP_RATE_SLOTS];
	if (strncmp(s->key, key, klen) != 0 || s->key[klen] != '\0' ||
	    now - s->start >= (int64_t)r->window || now < s->start) {
		memcpy(s->key, key, klen);
		s->key[klen] = '\0';
		s->start = now;
		s->count = 0;
	}
	if (s->count >= r->limit)
		return 0;
	s->count++;
	return 1;
}
