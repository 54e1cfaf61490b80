/*
 * bench_store.c - the scratch-store helpers of the benchmark programs
 * (see bench_store.h).  Not a test.  Trusts its callers (the scripts).
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_store.h"
#include "config.h"
#include "log.h"

struct store *
bench_store_open(const char *conf)
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

void
bench_domain_add(const char *conf, const char *domain)
{
	struct store *st = bench_store_open(conf);
	const char *err = NULL;
	int r = store_domain_add(st, domain, &err);

	if (r != 0 && r != STORE_EEXISTS)
		log_fatalx("domain add: %s", err ? err : "?");
	store_close(st);
}

void
bench_account_add(struct store *st, const char *address)
{
	struct store_account_spec spec;
	const char *err = NULL;
	int r;

	memset(&spec, 0, sizeof(spec));
	spec.address = address;
	spec.class = STORE_CLASS_CITIZEN;
	spec.password = BENCH_PASSWORD;
	r = store_account_add(st, &spec, &err);
	if (r != 0 && r != STORE_EEXISTS)
		log_fatalx("account add %s: %s", address, err ? err : "?");
}

void
bench_parallel(unsigned nprocs, void (*fn)(unsigned p, void *ctx),
    void *ctx)
{
	unsigned p;
	int failed = 0;

	for (p = 0; p < nprocs; p++) {
		pid_t pid = fork();

		if (pid < 0)
			log_fatal("fork");
		if (pid == 0) {
			fn(p, ctx);
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
		log_fatalx("a benchmark process failed");
}
