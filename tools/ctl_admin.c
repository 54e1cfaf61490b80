/*
 * ctl_admin.c - govmailctl's store-wide commands: check, backup, restore,
 * stats, and the outbound queue (queue list, queue flush).
 *
 * Run by the operator (and by the crash test, for check).  Input: the
 * command line.  Problems that check reports, and queue summaries (which
 * hold senders' addresses), describe store contents and may quote client
 * text, so they are escaped before printing.
 */
#include "autoconf.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "ctl.h"
#include "mailbox.h"

static const struct option ctl_admin_help[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int
ctl_admin_args(struct ctl *ctl, int argc, char **argv, int n)
{
	int c;

	while ((c = ctl_getopt(ctl, argc, argv, ":h", ctl_admin_help)) != -1) {
		if (c == 'h')
			return ctl_help(ctl);
		return CTL_EX_USAGE;
	}
	if (argc - optind < n)
		return ctl_usage(ctl, "missing argument");
	if (argc - optind > n)
		return ctl_usage(ctl, "too many arguments");
	return -1;
}

/* ---- check ---------------------------------------------------------- */

struct ctl_check {
	unsigned long problems, repaired;
	int repair;
};


static void
ctl_check_report(const char *problem, int repaired, void *ctx)
{
	struct ctl_check *chk = ctx;

	chk->problems++;
	if (repaired)
		chk->repaired++;
	fputs(repaired ? "repaired: " : "damage: ", stdout);
	ctl_print_escaped(stdout, problem);
	putchar('\n');
}

static int
ctl_check(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "contents", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_check chk;
	const char *error = NULL;
	unsigned flags = 0;
	int c, rc;

	memset(&chk, 0, sizeof(chk));
	while ((c = ctl_getopt(ctl, argc, argv, ":h", longopts)) != -1) {
		if (c == 'h')
			return ctl_help(ctl);
		if (c == 'r') {
			chk.repair = 1;
			flags |= STORE_CHECK_REPAIR;
		} else if (c == 'c')
			flags |= STORE_CHECK_CONTENTS;
		else
			return CTL_EX_USAGE;
	}
	if (optind < argc)
		return ctl_usage(ctl, "too many arguments");
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_check(ctl->store, flags, ctl_check_report, &chk, &error);
	if (rc == STORE_OK) {
		if (chk.problems == 0)
			printf("store: ok\n");
		return CTL_EX_OK;
	}
	if (rc == STORE_EDAMAGED) {
		if (chk.problems == 0)
			chk.problems = 1;
		/* fsck's convention: 1 = damage found (and, with --repair,
		   repaired); run check again to see a clean store. */
		if (!chk.repair || chk.repaired == chk.problems)
			return ctl_fail(ctl, CTL_EX_DAMAGE, "%lu problem%s %s",
			    chk.problems, chk.problems == 1 ? "" : "s",
			    chk.repair ? "found and repaired" : "found");
		return ctl_fail(ctl, CTL_EX_DAMAGE, "%lu problem%s found, "
		    "%lu repaired; the rest needs a backup", chk.problems,
		    chk.problems == 1 ? "" : "s", chk.repaired);
	}
	return ctl_store_fail(ctl, rc, NULL, error);
}

/* ---- backup and restore --------------------------------------------- */

static int
ctl_backup(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL;
	int rc;

	if ((rc = ctl_admin_args(ctl, argc, argv, 1)) >= 0)
		return rc;
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_backup(ctl->store, argv[optind], &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[optind], error);
	printf("backup written to %s\n", argv[optind]);
	return CTL_EX_OK;
}

static int
ctl_restore(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL;
	int rc;

	if ((rc = ctl_admin_args(ctl, argc, argv, 1)) >= 0)
		return rc;
	/* No store handle: the store must not be in use while restoring. */
	if ((rc = ctl_store(ctl, CTL_STORE_NONE)) != 0)
		return rc;
	rc = store_restore(ctl->cfg, argv[optind], &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[optind], error);
	printf("restored %s into %s\n", argv[optind],
	    config_path_get(ctl->cfg, "store", "path"));
	return CTL_EX_OK;
}

/* ---- stats ---------------------------------------------------------- */

static int
ctl_stats(struct ctl *ctl, int argc, char **argv)
{
	struct store_stats st;
	const char *error = NULL;
	int rc;

	if ((rc = ctl_admin_args(ctl, argc, argv, 0)) >= 0)
		return rc;
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	memset(&st, 0, sizeof(st));
	rc = store_stats(ctl->store, &st, &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, NULL, error);
	printf("domains: %llu\naccounts: %llu\naliases: %llu\nlists: %llu\n"
	    "mailboxes: %llu\nmessages: %llu\nblobs: %llu\nblob-bytes: %llu\n"
	    "chunks: %llu\nlog-files: %llu\nenv-bytes: %llu\nqueued: %llu\n"
	    "notices: %llu\ndedup-records: %llu\n",
	    (unsigned long long)st.domains, (unsigned long long)st.accounts,
	    (unsigned long long)st.aliases, (unsigned long long)st.lists,
	    (unsigned long long)st.mailboxes, (unsigned long long)st.messages,
	    (unsigned long long)st.blobs, (unsigned long long)st.blob_bytes,
	    (unsigned long long)st.chunks, (unsigned long long)st.log_files,
	    (unsigned long long)st.env_bytes, (unsigned long long)st.queued,
	    (unsigned long long)st.notices, (unsigned long long)st.dedup);
	return CTL_EX_OK;
}

/* ---- the outbound queue --------------------------------------------- */

static int
ctl_queue_one(const struct store_queue_item *it, void *ctx)
{
	unsigned long *n = ctx;
	char when[32];
	time_t t = (time_t)it->next_try;
	struct tm tm;

	if (it->next_try <= 0 || gmtime_r(&t, &tm) == NULL)
		(void)str_copy(when, sizeof(when), "now");
	else
		(void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	ctl_print_escaped(stdout, it->id);
	printf("\t%s\t", when);
	ctl_print_escaped(stdout, it->summary != NULL ? it->summary : "");
	putchar('\n');
	(*n)++;
	return 0;
}

static int
ctl_queue_list(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL;
	unsigned long n = 0;
	int rc;

	if ((rc = ctl_admin_args(ctl, argc, argv, 0)) >= 0)
		return rc;
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_queue_list(ctl->store, INT64_MAX, ctl_queue_one, &n,
	    &error);
	if (rc < 0)
		return ctl_store_fail(ctl, rc, "queue", error);
	printf("%lu entr%s\n", n, n == 1 ? "y" : "ies");
	return ctl_flush(ctl);
}

static int
ctl_queue_flush(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL;
	uint64_t n = 0;
	int rc;

	if ((rc = ctl_admin_args(ctl, argc, argv, 0)) >= 0)
		return rc;
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_queue_flush(ctl->store, &n, &error);
	if (rc < 0)
		return ctl_store_fail(ctl, rc, "queue", error);
	printf("%llu entr%s due now\n", (unsigned long long)n,
	    n == 1 ? "y" : "ies");
	return CTL_EX_OK;
}

const struct ctl_cmd ctl_admin_cmds[] = {
	{ "check", ctl_check, "check [--repair] [--contents]",
	  "Verify indexes, counters and reference counts; exit 1 on damage "
	  "(with --repair: fix it, exit 1 if anything was fixed; with "
	  "--contents: also read every message back and check its hash)." },
	{ "backup", ctl_backup, "backup DIR",
	  "Hot backup of the whole store into DIR (missing or empty)." },
	{ "restore", ctl_restore, "restore DIR",
	  "Copy a backup into the configured store path (not in use) and "
	  "recover it." },
	{ "stats", ctl_stats, "stats",
	  "Print counts of domains, accounts, messages, contents, logs, "
	  "queue entries, notices." },
	{ "queue list", ctl_queue_list, "queue list",
	  "List the outbound queue (and deferred notice copies): id, next "
	  "attempt (UTC), domain, recipients, sender." },
	{ "queue flush", ctl_queue_flush, "queue flush",
	  "Make every queue entry due now; the delivery agent of "
	  "govmail-smtpd tries them within a second." },
	{ NULL, NULL, NULL, NULL },
};
