/*
 * ctl_mail.c - govmailctl's mail commands: mailbox list, ls, cat, deliver.
 *
 * Run by the operator.  Input: the command line, and for deliver one
 * message on stdin (bounded by [limits] message_size as it is read).
 * Output: mailbox names and subjects come from mail clients and senders,
 * so they are escaped (ctl_escape) before they are printed; cat writes the
 * stored bytes unchanged, which is what it is for.
 *
 * deliver goes through store_resolve() and store_deliver(), the calls
 * govmail-smtpd uses, so the whole message reaches every recipient in one
 * transaction or nobody (per-recipient refusals such as quota excepted).
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "ctl.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

/* Bytes read from stdin at a time (deliver). */
#define CTL_READ_CHUNK 65536

static const struct option ctl_mail_help[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* -h only; positional count in [min, max].  -1 to go on. */
static int
ctl_mail_args(struct ctl *ctl, int argc, char **argv, int min, int max)
{
	int c, n;

	while ((c = ctl_getopt(ctl, argc, argv, ":h", ctl_mail_help)) != -1) {
		if (c == 'h')
			return ctl_help(ctl);
		return CTL_EX_USAGE;
	}
	n = argc - optind;
	if (n < min)
		return ctl_usage(ctl, "missing argument");
	if (n > max)
		return ctl_usage(ctl, "too many arguments");
	return -1;
}

static int
ctl_check_mailbox_name(struct ctl *ctl, const char *name)
{
	if (*name == '\0')
		return ctl_fail(ctl, CTL_EX_DATAERR, "empty mailbox name");
	if (strlen(name) > STORE_MAILBOX_NAME_MAX)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "mailbox name longer than %d bytes",
		    STORE_MAILBOX_NAME_MAX);
	return CTL_EX_OK;
}

/* ---- mailbox list --------------------------------------------------- */

static const struct {
	unsigned bit;
	const char *name;
} ctl_special_uses[] = {
	{ STORE_USE_INBOX, "inbox" },
	{ STORE_USE_SENT, "\\Sent" },
	{ STORE_USE_DRAFTS, "\\Drafts" },
	{ STORE_USE_TRASH, "\\Trash" },
	{ STORE_USE_JUNK, "\\Junk" },
	{ STORE_USE_ARCHIVE, "\\Archive" },
};

static int
ctl_mailbox_list_cb(const struct store_mailbox_info *info, void *ctx)
{
	size_t i;
	int any = 0;

	(void)ctx;
	ctl_print_escaped(stdout, info->name);
	printf("\tmessages=%u unseen=%u size=%llu uidvalidity=%u uidnext=%u "
	    "highestmodseq=%llu subscribed=%s special-use=", info->messages,
	    info->unseen, (unsigned long long)info->size, info->uidvalidity,
	    info->uidnext, (unsigned long long)info->highestmodseq,
	    info->subscribed ? "yes" : "no");
	for (i = 0; i < sizeof(ctl_special_uses) / sizeof(ctl_special_uses[0]);
	    i++) {
		if (info->special_use & ctl_special_uses[i].bit) {
			printf("%s%s", any ? "," : "",
			    ctl_special_uses[i].name);
			any = 1;
		}
	}
	printf("%s\n", any ? "" : "none");
	return 0;
}

static int
ctl_mailbox_list(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL;
	int rc;

	if ((rc = ctl_mail_args(ctl, argc, argv, 1, 1)) >= 0)
		return rc;
	if ((rc = ctl_check_address(ctl, argv[optind])) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_mailbox_list(ctl->store, argv[optind], ctl_mailbox_list_cb,
	    NULL, &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[optind], error);
	return CTL_EX_OK;
}

/* ---- ls ------------------------------------------------------------- */

struct ctl_msgs {
	struct store_msg *v;
	size_t n, cap;
};

static int
ctl_collect_cb(const struct store_msg *msg, void *ctx)
{
	struct ctl_msgs *m = ctx;

	if (m->n == m->cap) {
		m->cap = m->cap == 0 ? 64 : xmul(m->cap, 2);
		m->v = xreallocarray(m->v, m->cap, sizeof(*m->v));
	}
	m->v[m->n++] = *msg;
	return 0;
}

static const struct {
	uint32_t bit;
	const char *name;
} ctl_flag_names[] = {
	{ STORE_FLAG_SEEN, "\\Seen" },
	{ STORE_FLAG_ANSWERED, "\\Answered" },
	{ STORE_FLAG_FLAGGED, "\\Flagged" },
	{ STORE_FLAG_DELETED, "\\Deleted" },
	{ STORE_FLAG_DRAFT, "\\Draft" },
};

/* "(\Seen $Label1)" for a message; keyword names come from clients. */
static void
ctl_flags_text(struct buf *out, const struct store_msg *msg,
    char *const *keywords)
{
	size_t i;
	int any = 0;

	buf_append_byte(out, '(');
	for (i = 0; i < sizeof(ctl_flag_names) / sizeof(ctl_flag_names[0]);
	    i++) {
		if (msg->flags & ctl_flag_names[i].bit) {
			if (any)
				buf_append_byte(out, ' ');
			buf_append_str(out, ctl_flag_names[i].name);
			any = 1;
		}
	}
	for (i = 0; i < STORE_KEYWORDS_MAX; i++) {
		if ((msg->keywords & ((uint64_t)1 << i)) == 0)
			continue;
		if (any)
			buf_append_byte(out, ' ');
		if (keywords[i] != NULL)
			ctl_escape(out, keywords[i], strlen(keywords[i]));
		else
			buf_printf(out, "$keyword%zu", i);
		any = 1;
	}
	buf_append_byte(out, ')');
}

static int
ctl_ls(struct ctl *ctl, int argc, char **argv)
{
	struct store_mailbox_info info;
	struct store_msg_meta meta;
	struct ctl_msgs msgs;
	char *keywords[STORE_KEYWORDS_MAX];
	const char *error = NULL, *address, *name = "INBOX";
	struct buf line;
	size_t i;
	int rc;

	if ((rc = ctl_mail_args(ctl, argc, argv, 1, 2)) >= 0)
		return rc;
	address = argv[optind];
	if (optind + 1 < argc)
		name = argv[optind + 1];
	if ((rc = ctl_check_address(ctl, address)) != 0 ||
	    (rc = ctl_check_mailbox_name(ctl, name)) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_mailbox_get(ctl->store, address, name, &info, &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, address, error);
	memset(keywords, 0, sizeof(keywords));
	rc = store_mailbox_keywords(ctl->store, info.id, keywords, &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, address, error);
	/* Collect first: no store call from inside a listing callback. */
	memset(&msgs, 0, sizeof(msgs));
	rc = store_msg_list(ctl->store, info.id, NULL, 0, 0, ctl_collect_cb,
	    &msgs, &error);
	if (rc != 0) {
		store_keywords_free(keywords);
		free(msgs.v);
		return ctl_store_fail(ctl, rc, address, error);
	}
	buf_init(&line, BUF_UNBOUNDED);
	for (i = 0; i < msgs.n; i++) {
		memset(&meta, 0, sizeof(meta));
		rc = store_msg_meta(ctl->store, msgs.v[i].blob, &meta, &error);
		if (rc != 0) {
			rc = ctl_store_fail(ctl, rc, "reading a message's "
			    "metadata", error);
			break;
		}
		buf_reset(&line);
		buf_printf(&line, "%u\t%llu\t", msgs.v[i].uid,
		    (unsigned long long)msgs.v[i].size);
		ctl_flags_text(&line, &msgs.v[i], keywords);
		buf_append_byte(&line, '\t');
		/* SECURITY: the subject is the sender's text. */
		if (meta.subject != NULL)
			ctl_escape(&line, meta.subject, strlen(meta.subject));
		store_msg_meta_free(&meta);
		puts(buf_str(&line));
	}
	buf_free(&line);
	store_keywords_free(keywords);
	free(msgs.v);
	return rc;
}

/* ---- cat ------------------------------------------------------------ */

static int
ctl_cat(struct ctl *ctl, int argc, char **argv)
{
	struct store_mailbox_info info;
	struct store_msg msg;
	const char *error = NULL, *why = NULL;
	struct buf data;
	uint64_t uid;
	int rc;

	if ((rc = ctl_mail_args(ctl, argc, argv, 3, 3)) >= 0)
		return rc;
	if (strnum_u64(argv[optind + 2], 1, UINT32_MAX, &uid, &why) != 0)
		return ctl_usage(ctl, "UID: %s", why);
	if ((rc = ctl_check_address(ctl, argv[optind])) != 0 ||
	    (rc = ctl_check_mailbox_name(ctl, argv[optind + 1])) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_mailbox_get(ctl->store, argv[optind], argv[optind + 1],
	    &info, &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[optind], error);
	rc = store_msg_get(ctl->store, info.id, (uint32_t)uid, &msg, &error);
	if (rc != 0)
		return ctl_fail(ctl, ctl_exit_code(rc), "UID %llu: %s",
		    (unsigned long long)uid,
		    error != NULL ? error : store_strerror(rc));
	buf_init(&data, BUF_UNBOUNDED);
	rc = store_blob_read(ctl->store, msg.blob, &data, &error);
	if (rc != 0) {
		buf_free(&data);
		return ctl_store_fail(ctl, rc, "reading the message", error);
	}
	if (data.len > 0 && fwrite(data.data, 1, data.len, stdout) != data.len)
		rc = ctl_fail(ctl, CTL_EX_IOERR, "writing output: %s",
		    strerror(errno));
	buf_free(&data);
	return rc;
}

/* ---- deliver -------------------------------------------------------- */

/*
 * Read the message from stdin, at most max bytes, turning bare LF line
 * ends into CRLF (the store holds messages as they travel over SMTP and
 * IMAP).  Returns 0 or an exit status after printing why.
 */
static int
ctl_read_message(struct ctl *ctl, uint64_t max, struct buf *msg)
{
	uint8_t chunk[CTL_READ_CHUNK];
	size_t i, limit = max > STORE_MESSAGE_MAX ? STORE_MESSAGE_MAX :
	    (size_t)max;
	ssize_t n;
	uint8_t prev = 0;

	buf_init(msg, limit);
	for (;;) {
		n = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ctl_fail(ctl, CTL_EX_NOINPUT,
			    "reading the message: %s", strerror(errno));
		if (n == 0)
			break;
		for (i = 0; i < (size_t)n; i++) {
			if ((chunk[i] == '\n' && prev != '\r' &&
			    buf_append_byte(msg, '\r') != 0) ||
			    buf_append_byte(msg, chunk[i]) != 0)
				return ctl_fail(ctl, CTL_EX_DATAERR,
				    "message larger than [limits] "
				    "message_size (%zu bytes)", limit);
			prev = chunk[i];
		}
	}
	if (msg->len == 0)
		return ctl_fail(ctl, CTL_EX_DATAERR, "empty message");
	return CTL_EX_OK;
}

static int
ctl_strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
ctl_deliver(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_rcpt_set set;
	struct store_rcpt_result *results = NULL;
	const char *error = NULL, *sender = NULL;
	char **rcpts = NULL;
	size_t nrcpts = 0, cap = 0, i, j, k;
	struct buf msg;
	int c, rc = CTL_EX_OK, first_rc = CTL_EX_OK, code;

	while ((c = ctl_getopt(ctl, argc, argv, ":hf:", longopts)) != -1) {
		if (c == 'h')
			return ctl_help(ctl);
		if (c != 'f')
			return CTL_EX_USAGE;
		sender = optarg;
	}
	if (optind >= argc)
		return ctl_usage(ctl, "missing ADDRESS");
	if (sender != NULL && (rc = ctl_check_address(ctl, sender)) != 0)
		return rc;
	for (i = (size_t)optind; i < (size_t)argc; i++) {
		if ((rc = ctl_check_address(ctl, argv[i])) != 0)
			return rc;
	}
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	if ((rc = ctl_read_message(ctl, config_size(ctl->cfg, "limits",
	    "message_size"), &msg)) != 0) {
		buf_free(&msg);
		return rc;
	}

	/* Resolve every argument; a failure is that recipient's alone. */
	for (i = (size_t)optind; i < (size_t)argc; i++) {
		memset(&set, 0, sizeof(set));
		c = store_resolve(ctl->store, argv[i], sender, &set, &error);
		if (c != 0) {
			code = ctl_store_fail(ctl, c, argv[i], error);
			if (first_rc == CTL_EX_OK)
				first_rc = code;
			continue;
		}
		for (j = 0; j < set.nremote; j++) {
			code = ctl_fail(ctl, CTL_EX_UNAVAILABLE, "%s: remote "
			    "address reached through %s, not delivered "
			    "(deliver is local only)", set.remote[j], argv[i]);
			if (first_rc == CTL_EX_OK)
				first_rc = code;
		}
		for (j = 0; j < set.nlocal; j++) {
			if (nrcpts == cap) {
				cap = cap == 0 ? 16 : xmul(cap, 2);
				rcpts = xreallocarray(rcpts, cap,
				    sizeof(*rcpts));
			}
			rcpts[nrcpts++] = xstrdup(set.local[j]);
		}
		store_rcpt_set_free(&set);
	}
	/* One delivery per account, however often it was named. */
	if (nrcpts > 1) {
		qsort(rcpts, nrcpts, sizeof(*rcpts), ctl_strcmp_p);
		for (i = 1, k = 1; i < nrcpts; i++) {
			if (strcmp(rcpts[i], rcpts[k - 1]) == 0)
				free(rcpts[i]);
			else
				rcpts[k++] = rcpts[i];
		}
		nrcpts = k;
	}
	if (nrcpts > 0) {
		results = xcalloc(nrcpts, sizeof(*results));
		c = store_deliver(ctl->store, msg.data, msg.len,
		    (const char *const *)rcpts, nrcpts, 0, results, &error);
		if (c != 0) {
			code = ctl_store_fail(ctl, c, "nothing delivered",
			    error);
			if (first_rc == CTL_EX_OK)
				first_rc = code;
		} else {
			for (i = 0; i < nrcpts; i++) {
				if (results[i].status == STORE_OK) {
					ctl_print_escaped(stdout, rcpts[i]);
					printf(": delivered uid=%u\n",
					    results[i].uid);
					continue;
				}
				code = ctl_store_fail(ctl, results[i].status,
				    rcpts[i], NULL);
				if (first_rc == CTL_EX_OK)
					first_rc = code;
			}
		}
	}
	for (i = 0; i < nrcpts; i++)
		free(rcpts[i]);
	free(rcpts);
	free(results);
	buf_free(&msg);
	return first_rc;
}

const struct ctl_cmd ctl_mail_cmds[] = {
	{ "mailbox list", ctl_mailbox_list, "mailbox list ADDRESS",
	  "Print an account's mailboxes with their counters." },
	{ "ls", ctl_ls, "ls ADDRESS [MAILBOX]",
	  "Print one line per message: UID, size, flags, subject "
	  "(tab-separated; MAILBOX defaults to INBOX)." },
	{ "cat", ctl_cat, "cat ADDRESS MAILBOX UID",
	  "Write the raw message to stdout." },
	{ "deliver", ctl_deliver, "deliver [--from SENDER] ADDRESS...",
	  "Deliver the message on stdin to each ADDRESS (account, alias or "
	  "list) in one transaction; one line per recipient." },
	{ NULL, NULL, NULL, NULL },
};
