/*
 * smtp_rate.c - per-key fixed-window counters for the submission rate
 * limits (messages per account, messages per client address).
 *
 * govmail-smtpd workers, loop thread only.  Keys come from the session
 * (an authenticated address, a numeric IP): bounded by SMTP_PATH_MAX.
 * The counters live in lib/ratelimit.h's shared table for messages, which
 * the root parent made before forking, so that every worker counts into
 * the same one and the limit holds for the whole daemon; without it
 * (tests) each smtp_rate has a private table.  All smtp_rate instances
 * share that table, so their keys must not overlap: account keys are
 * addresses (with "@"), address keys are IPs (without).  A key is
 * reduced to 16 bytes with BLAKE2b; the table picks buckets with a keyed
 * hash, so a client cannot aim collisions at one.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "ratelimit.h"
#include "smtpd.h"
#include "xmalloc.h"

struct smtp_rate {
	unsigned limit;
	unsigned window;
	struct ratelimit *table;
	int own;			/* a private table, ours to free */
};

struct smtp_rate *
smtp_rate_new(unsigned limit, unsigned window)
{
	struct smtp_rate *r = xcalloc(1, sizeof(*r));
	const char *err = NULL;

	r->limit = limit;
	r->window = window == 0 ? 1 : window;
	r->table = ratelimit_shared(RATELIMIT_TABLE_MESSAGES);
	if (r->table == NULL) {
		r->table = ratelimit_new(0, &err);
		if (r->table == NULL)
			log_fatalx("smtpd: %s", err);
		r->own = 1;
	}
	return r;
}

void
smtp_rate_free(struct smtp_rate *r)
{
	if (r == NULL)
		return;
	if (r->own)
		ratelimit_free(r->table);
	free(r);
}

int
smtp_rate_hit(struct smtp_rate *r, const char *key, int64_t now)
{
	uint8_t k[RATELIMIT_KEY_LEN];
	size_t klen = strlen(key);

	if (r->limit == 0)
		return 1;
	if (klen > SMTP_PATH_MAX)
		klen = SMTP_PATH_MAX;
	crypto_generichash(k, sizeof(k), (const uint8_t *)key, klen, NULL, 0);
	return ratelimit_try(r->table, k, r->window, now, r->limit);
}
