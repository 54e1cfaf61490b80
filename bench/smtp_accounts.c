/*
 * smtp_accounts.c - creates the accounts of the SMTP benchmark
 * (bench/run-smtp.sh) in a govmail store, the way govmailctl does
 * (store_account_add), but thousands at a time: one process per
 * `govmailctl user add` would take minutes for 10,000 accounts.  Not a
 * test; run by the benchmark script on its scratch store only.  Trusts
 * its command line (the script's).
 *
 *   smtp_accounts CONF DOMAIN N
 *       adds DOMAIN, the account u@DOMAIN (smtp-source's single
 *       recipient) and the accounts 1u@DOMAIN .. Nu@DOMAIN (the names
 *       `smtp-source -N` generates), citizen class, each in its own
 *       durable transaction, SMTP_ACCOUNTS_PROCS processes at once so
 *       that their commits share log flushes.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_store.h"
#include "log.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

#define SMTP_ACCOUNTS_PROCS 8
#define SMTP_ACCOUNTS_MAX 1000000

struct range_ctx {
	const char *conf, *domain;
	uint64_t n, per;
};

/* Process p: the accounts 1 + p * per .. min(n, (p + 1) * per). */
static void
accounts_range(unsigned p, void *arg)
{
	const struct range_ctx *c = arg;
	struct store *st = bench_store_open(c->conf);
	uint64_t i, to = (p + 1) * c->per > c->n ? c->n : (p + 1) * c->per;

	for (i = 1 + p * c->per; i <= to; i++) {
		char *addr = xasprintf("%llu" "u@%s", (unsigned long long)i,
		    c->domain);

		bench_account_add(st, addr);
		free(addr);
	}
	store_close(st);
}

int
main(int argc, char **argv)
{
	const char *err = NULL;
	struct range_ctx c;
	struct store *st;
	char *addr;
	uint64_t n;
	unsigned procs;

	log_init("smtp_accounts", LOG_TO_STDERR, LOG_LEVEL_WARN);
	if (argc != 4) {
		fprintf(stderr, "usage: smtp_accounts CONF DOMAIN N\n");
		return 64;
	}
	if (strnum_u64(argv[3], 0, SMTP_ACCOUNTS_MAX, &n, &err) < 0)
		log_fatalx("bad count %s: %s", argv[3], err);
	bench_domain_add(argv[1], argv[2]);
	st = bench_store_open(argv[1]);
	addr = xasprintf("u@%s", argv[2]);
	bench_account_add(st, addr);
	free(addr);
	store_close(st);
	c.conf = argv[1];
	c.domain = argv[2];
	c.n = n;
	c.per = (n + SMTP_ACCOUNTS_PROCS - 1) / SMTP_ACCOUNTS_PROCS;
	procs = c.per == 0 ? 0 : (unsigned)((n + c.per - 1) / c.per);
	bench_parallel(procs, accounts_range, &c);
	return 0;
}
