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
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

#define SMTP_ACCOUNTS_PROCS 8
#define SMTP_ACCOUNTS_MAX 1000000

static struct store *
accounts_open(const char *conf)
{
	struct config *cfg;
	const char *err = NULL;
	struct store *st;

	if (config_load(conf, &cfg, &err) != 0)
		log_fatalx("%s: %s", conf, err ? err : "?");
	if (store_open(cfg, STORE_OPEN_CREATE, &st, &err) != 0)
		log_fatalx("store_open: %s", err ? err : "?");
	config_free(cfg);
	return st;
}

static void
accounts_add(struct store *st, const char *local, const char *domain)
{
	struct store_account_spec spec;
	const char *err = NULL;
	char *addr = xasprintf("%s@%s", local, domain);
	int r;

	memset(&spec, 0, sizeof(spec));
	spec.address = addr;
	spec.class = STORE_CLASS_CITIZEN;
	spec.password = "bench-password";
	r = store_account_add(st, &spec, &err);
	if (r != 0 && r != STORE_EEXISTS)
		log_fatalx("account add %s: %s", addr, err ? err : "?");
	free(addr);
}

static void
accounts_range(const char *conf, const char *domain, uint64_t from,
    uint64_t to)
{
	struct store *st = accounts_open(conf);
	char local[32];
	uint64_t i;

	for (i = from; i < to; i++) {
		snprintf(local, sizeof(local), "%llu" "u",
		    (unsigned long long)i);
		accounts_add(st, local, domain);
	}
	store_close(st);
}

int
main(int argc, char **argv)
{
	const char *err = NULL;
	struct store *st;
	uint64_t n, p, per;
	int r, failed = 0;

	log_init("smtp_accounts", LOG_TO_STDERR, LOG_LEVEL_WARN);
	if (argc != 4) {
		fprintf(stderr, "usage: smtp_accounts CONF DOMAIN N\n");
		return 64;
	}
	if (strnum_u64(argv[3], 0, SMTP_ACCOUNTS_MAX, &n, &err) < 0)
		log_fatalx("bad count %s: %s", argv[3], err);
	st = accounts_open(argv[1]);
	r = store_domain_add(st, argv[2], &err);
	if (r != 0 && r != STORE_EEXISTS)
		log_fatalx("domain add: %s", err ? err : "?");
	accounts_add(st, "u", argv[2]);
	store_close(st);
	per = (n + SMTP_ACCOUNTS_PROCS - 1) / SMTP_ACCOUNTS_PROCS;
	for (p = 0; p < SMTP_ACCOUNTS_PROCS && p * per < n; p++) {
		pid_t pid = fork();

		if (pid < 0)
			log_fatal("fork");
		if (pid == 0) {
			uint64_t to = (p + 1) * per > n ? n : (p + 1) * per;

			accounts_range(argv[1], argv[2], 1 + p * per, 1 + to);
			_exit(0);
		}
	}
	while (p-- > 0) {
		int status;

		if (wait(&status) < 0 || !WIFEXITED(status)
		    || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	if (failed)
		log_fatalx("an account process failed");
	return 0;
}
