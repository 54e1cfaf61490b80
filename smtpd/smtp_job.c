/*
 * smtp_job.c - what govmail-smtpd runs on its helper threads (lib/tpool):
 * a store handle per thread, and the password check behind SASL.
 *
 * govmail-smtpd workers, helper threads.  The inputs are a user name and
 * password already bounded by lib/sasl; nothing here logs them.
 */
#include "autoconf.h"

#include <stddef.h>

#include "log.h"
#include "mailbox.h"
#include "smtpd.h"

/* Each helper thread's own store handle (struct store is per thread). */
static __thread struct store *job_store;

struct store *
smtp_job_store(const struct config *cfg)
{
	const char *err = NULL;

	if (job_store != NULL)
		return job_store;
	if (store_open(cfg, 0, &job_store, &err) < 0) {
		log_warnx("smtpd: event=store-open-failed error=\"%s\"",
		    err != NULL ? err : "?");
		job_store = NULL;
	}
	return job_store;
}

int
smtp_job_verify(const char *user, const char *pass, void *ctx)
{
	const struct config *cfg = ctx;
	struct store *st = smtp_job_store(cfg);

	if (st == NULL)
		return -1;
	return store_password_verify(st, user, pass);
}
