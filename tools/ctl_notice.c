/*
 * ctl_notice.c - govmailctl's notice commands: `notice list` (the notices
 * govmail-smtpd accepted for notice lists) and `notice report MESSAGE-ID
 * [--csv]` (each recipient: delivered, deferred (over quota, its copy
 * queued) or failed, and read: \Seen looked up live in the recipient's
 * mailbox record).
 *
 * Run by the operator.  Input: the command line and the report records
 * govmail-smtpd writes into the store with each delivery
 * (mailbox/store_notice.c); addresses and ids in
 * them are printed escaped (table) or quoted (CSV).
 */
#include "autoconf.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "ctl.h"
#include "mailbox.h"

static const struct option ctl_notice_opts[] = {
	{ "csv", no_argument, NULL, 'C' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Open the store (the report is in it); 0, or an exit status. */
static int
ctl_notices(struct ctl *ctl)
{
	return ctl_store(ctl, CTL_STORE_EXISTING);
}

/* CSV field (RFC 4180): quoted when it holds a comma, quote or line end. */
static void
csv_field(const char *s)
{
	if (strpbrk(s, ",\"\r\n") == NULL) {
		fputs(s, stdout);
		return;
	}
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

static void
time_text(int64_t when, char *out, size_t outsz)
{
	time_t t = (time_t)when;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- notice list ---------------------------------------------------- */

static int
list_one(const struct store_notice_info *info, void *ctx)
{
	char when[32];

	(void)ctx;
	time_text(info->when, when, sizeof(when));
	printf("%s\t", when);
	ctl_print_escaped(stdout, info->message_id);
	putchar('\t');
	ctl_print_escaped(stdout, info->list);
	putchar('\t');
	ctl_print_escaped(stdout, info->sender);
	putchar('\n');
	return 0;
}

static int
ctl_notice_list(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL;
	int c, rc;

	while ((c = ctl_getopt(ctl, argc, argv, ":h", ctl_notice_opts)) != -1)
		return c == 'h' ? ctl_help(ctl) : CTL_EX_USAGE;
	if (optind < argc)
		return ctl_usage(ctl, "too many arguments");
	if ((rc = ctl_notices(ctl)) != 0)
		return rc;
	rc = store_notice_list(ctl->store, list_one, NULL, &error);
	if (rc < 0)
		return ctl_store_fail(ctl, rc, "notices", error);
	return ctl_flush(ctl);
}

/* ---- notice report -------------------------------------------------- */

struct report {
	struct ctl *ctl;
	int csv;
	unsigned long total, delivered, failed, deferred, read, gone;
	int err;
};

static const char *
status_text(int status)
{
	switch (status) {
	case STORE_OK:
		return "delivered";
	case STORE_ETEMP:
		return "deferred";
	case STORE_EQUOTA:
		return "failed (mailbox full)";
	case STORE_EPERM:
		return "failed (account disabled)";
	case STORE_ENOTFOUND:
		return "failed (no such account)";
	default:
		return "failed";
	}
}

static int
report_one(const struct store_notice_rcpt *r, void *ctx)
{
	struct report *rep = ctx;
	struct store_msg msg;
	const char *read = "-";
	const char *addr = r->address[0] != '\0' ? r->address :
	    "(mailbox deleted)";
	int rc;

	rep->total++;
	if (r->status == STORE_OK) {
		rep->delivered++;
		rc = store_msg_get(rep->ctl->store, r->mailbox_id, r->uid, &msg,
		    NULL);
		if (rc == 0 && (msg.flags & STORE_FLAG_SEEN)) {
			read = "yes";
			rep->read++;
		} else if (rc == 0)
			read = "no";
		else if (rc == STORE_ENOTFOUND) {
			/* Expunged or moved: unknown, not read. */
			read = "gone";
			rep->gone++;
		} else {
			rep->err = rc;
			return 1;
		}
	} else if (r->deferred || r->status == STORE_ETEMP)
		rep->deferred++;
	else
		rep->failed++;
	if (rep->csv) {
		csv_field(addr);
		printf(",%s,%u,%u,%s\n", r->status == STORE_OK ? "delivered" :
		    r->deferred || r->status == STORE_ETEMP ? "deferred" :
		    "failed", r->mailbox_id, r->uid, read);
	} else {
		ctl_print_escaped(stdout, addr);
		printf("\t%s\t%u\t%u\t%s\n", r->deferred ?
		    "deferred (mailbox full)" : status_text(r->status),
		    r->mailbox_id, r->uid, read);
	}
	return 0;
}

static int
ctl_notice_report(struct ctl *ctl, int argc, char **argv)
{
	struct store_notice_info info;
	struct report rep;
	const char *error = NULL, *id;
	char when[32];
	int c, rc;

	memset(&rep, 0, sizeof(rep));
	rep.ctl = ctl;
	while ((c = ctl_getopt(ctl, argc, argv, ":h", ctl_notice_opts)) != -1)
		switch (c) {
		case 'C':
			rep.csv = 1;
			break;
		case 'h':
			return ctl_help(ctl);
		default:
			return CTL_EX_USAGE;
		}
	if (argc - optind < 1)
		return ctl_usage(ctl, "missing argument");
	if (argc - optind > 1)
		return ctl_usage(ctl, "too many arguments");
	id = argv[optind];
	if ((rc = ctl_notices(ctl)) != 0)
		return rc;
	rc = store_notice_get(ctl->store, id, &info, &error);
	if (rc < 0)
		return ctl_store_fail(ctl, rc, id, error);
	time_text(info.when, when, sizeof(when));
	if (rep.csv)
		printf("recipient,status,mailbox_id,uid,read\n");
	else {
		fputs("notice\t", stdout);
		ctl_print_escaped(stdout, info.message_id);
		fputs("\nlist\t", stdout);
		ctl_print_escaped(stdout, info.list);
		fputs("\nsender\t", stdout);
		ctl_print_escaped(stdout, info.sender);
		printf("\naccepted\t%s\n\n", when);
		printf("recipient\tstatus\tmailbox\tuid\tread\n");
	}
	store_notice_info_free(&info);
	rc = store_notice_rcpts(ctl->store, id, report_one, &rep, &error);
	if (rc < 0)
		return ctl_store_fail(ctl, rc, id, error);
	if (rep.err < 0)
		return ctl_store_fail(ctl, rep.err, "mailbox", NULL);
	if (!rep.csv)
		printf("\nrecipients %lu delivered %lu deferred %lu failed %lu "
		    "read %lu\n", rep.total, rep.delivered, rep.deferred,
		    rep.failed, rep.read);
	return ctl_flush(ctl);
}

const struct ctl_cmd ctl_notice_cmds[] = {
	{ "notice list", ctl_notice_list, "notice list",
	  "List the notices accepted for notice lists (time, Message-ID, "
	  "list, poster)." },
	{ "notice report", ctl_notice_report,
	  "notice report MESSAGE-ID [--csv]",
	  "Per recipient of a notice: delivered, deferred or failed, and "
	  "read (\\Seen), as a table or CSV." },
	{ NULL, NULL, NULL, NULL },
};
