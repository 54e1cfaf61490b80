/*
 * imap_fill.c - fills the two servers of the IMAP benchmark
 * (bench/run-imap.sh) with the same mail: the accounts 1u@DOMAIN ..
 * Nu@DOMAIN in a govmail store (store_account_add, as govmailctl does),
 * and the first M of them with K messages each, delivered with
 * store_deliver (as govmail-smtpd does: one durable transaction each) and
 * written byte for byte as Maildir files for Dovecot.  Not a test; run by
 * the benchmark script as `nobody` on its scratch folders only.  Trusts
 * its command line (the script's).
 *
 *   imap_fill CONF DOMAIN N M K MAILDIRS
 *       MAILDIRS/<n>u/{cur,new,tmp} is made for every account; message
 *       j of account n goes to MAILDIRS/<n>u/cur/ (already seen by a
 *       client, so Dovecot does not move it at the first SELECT).
 *       IMAP_FILL_PROCS processes share the work so that their commits
 *       share log flushes.
 *
 * Every message is unique (its account and number are in To:, Subject:,
 * Message-ID: and the body), so govmail's content addressing stores each
 * once, as Dovecot does.  Sizes are mixed: of every 20 messages, 14 are
 * about 2 KB, 5 about 12 KB and 1 about 100 KB; every 10th subject holds
 * the word "invoice" (the benchmark's SEARCH term).
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

#define IMAP_FILL_PROCS 8
#define IMAP_FILL_MAX_ACCOUNTS 1000000
#define IMAP_FILL_MAX_MSGS 100000
#define IMAP_FILL_LINE 76

static struct store *
fill_open(const char *conf)
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

/* Message j of account n, CRLF line ends, in buf. */
static void
fill_message(struct buf *b, const char *domain, uint64_t n, uint64_t j)
{
	static const char *words[] = { "notice", "water", "tax", "school",
	    "housing", "permit", "budget", "meeting", "bus", "library" };
	size_t target, kind = j % 20;
	uint64_t w = n * 7919 + j * 104729;

	if (kind == 19)
		target = 100 * 1024;
	else if (kind % 4 == 3)
		target = 12 * 1024;
	else
		target = 2 * 1024;
	buf_reset(b);
	buf_printf(b, "Return-Path: <dept%llu@city.example>\r\n"
	    "From: Department %llu <dept%llu@city.example>\r\n"
	    "To: Citizen %llu <%llu" "u@%s>\r\n"
	    "Subject: %s %s number %llu for %llu" "u\r\n"
	    "Date: Mon, 2 Nov 2026 %02llu:%02llu:00 +0800\r\n"
	    "Message-ID: <%llu.%llu@bench.example>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n",
	    (unsigned long long)(j % 13), (unsigned long long)(j % 13),
	    (unsigned long long)(j % 13), (unsigned long long)n,
	    (unsigned long long)n, domain,
	    j % 10 == 0 ? "invoice" : words[j % 10], words[(j / 10) % 10],
	    (unsigned long long)j, (unsigned long long)n,
	    (unsigned long long)(j / 60 % 24), (unsigned long long)(j % 60),
	    (unsigned long long)j, (unsigned long long)n);
	while (b->len < target) {
		size_t col = 0;

		while (col < IMAP_FILL_LINE - 10) {
			const char *wd = words[w % 10];

			w = w * 6364136223846793005ULL + 1442695040888963407ULL;
			w ^= w >> 29;
			buf_printf(b, "%s ", wd);
			col += strlen(wd) + 1;
		}
		buf_append(b, "\r\n", 2);
	}
}

static void
fill_mkdir(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		log_fatal("mkdir %s", path);
}

static void
fill_write(const char *path, const struct buf *b)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	const uint8_t *p = b->data;
	size_t left = b->len;

	if (fd < 0)
		log_fatal("open %s", path);
	while (left > 0) {
		ssize_t w = write(fd, p, left);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			log_fatal("write %s", path);
		}
		p += w;
		left -= (size_t)w;
	}
	if (close(fd) != 0)
		log_fatal("close %s", path);
}

static void
fill_account(struct store *st, struct buf *msg, const char *domain,
    uint64_t n, uint64_t msgs, const char *maildirs)
{
	struct store_account_spec spec;
	struct store_rcpt_result res;
	const char *err = NULL;
	char *addr = xasprintf("%llu" "u@%s", (unsigned long long)n, domain);
	char *dir = xasprintf("%s/%llu" "u", maildirs, (unsigned long long)n);
	char *sub;
	uint64_t j;
	int r;

	memset(&spec, 0, sizeof(spec));
	spec.address = addr;
	spec.class = STORE_CLASS_CITIZEN;
	spec.password = "bench-password";
	r = store_account_add(st, &spec, &err);
	if (r != 0 && r != STORE_EEXISTS)
		log_fatalx("account add %s: %s", addr, err ? err : "?");
	fill_mkdir(dir);
	sub = xasprintf("%s/cur", dir);
	fill_mkdir(sub);
	free(sub);
	sub = xasprintf("%s/new", dir);
	fill_mkdir(sub);
	free(sub);
	sub = xasprintf("%s/tmp", dir);
	fill_mkdir(sub);
	free(sub);
	for (j = 1; j <= msgs; j++) {
		const char *rcpt = addr;
		char *path;

		fill_message(msg, domain, n, j);
		r = store_deliver(st, (const uint8_t *)msg->data,
		    msg->len, &rcpt, 1, 1793580000 + (int64_t)j, &res,
		    &err);
		if (r != 0 || res.status != STORE_OK)
			log_fatalx("deliver to %s: %s", addr,
			    r != 0 && err ? err : "refused");
		path = xasprintf("%s/cur/%llu.M%lluP%llu.bench:2,", dir,
		    (unsigned long long)(1793580000 + j),
		    (unsigned long long)j, (unsigned long long)n);
		fill_write(path, msg);
		free(path);
	}
	free(dir);
	free(addr);
}

int
main(int argc, char **argv)
{
	const char *err = NULL;
	struct store *st;
	uint64_t n, m, k, p, i;
	int r, failed = 0;

	log_init("imap_fill", LOG_TO_STDERR, LOG_LEVEL_WARN);
	if (argc != 7) {
		fprintf(stderr, "usage: imap_fill CONF DOMAIN N M K MAILDIRS\n");
		return 64;
	}
	if (strnum_u64(argv[3], 1, IMAP_FILL_MAX_ACCOUNTS, &n, &err) < 0
	    || strnum_u64(argv[4], 0, n, &m, &err) < 0
	    || strnum_u64(argv[5], 0, IMAP_FILL_MAX_MSGS, &k, &err) < 0)
		log_fatalx("bad count: %s", err);
	fill_mkdir(argv[6]);
	st = fill_open(argv[1]);
	r = store_domain_add(st, argv[2], &err);
	if (r != 0 && r != STORE_EEXISTS)
		log_fatalx("domain add: %s", err ? err : "?");
	store_close(st);
	for (p = 0; p < IMAP_FILL_PROCS; p++) {
		pid_t pid = fork();

		if (pid < 0)
			log_fatal("fork");
		if (pid == 0) {
			struct buf msg;

			buf_init(&msg, BUF_UNBOUNDED);
			st = fill_open(argv[1]);
			/* Accounts dealt round-robin, so that the filled
			 * ones (1 .. M) are shared by every process. */
			for (i = 1 + p; i <= n; i += IMAP_FILL_PROCS)
				fill_account(st, &msg, argv[2], i,
				    i <= m ? k : 0, argv[6]);
			store_close(st);
			buf_free(&msg);
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
		log_fatalx("a fill process failed");
	return 0;
}
