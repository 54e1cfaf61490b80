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
#include "bench_store.h"
#include "config.h"
#include "log.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

#define IMAP_FILL_PROCS 8
#define IMAP_FILL_MAX_ACCOUNTS 1000000
#define IMAP_FILL_MAX_MSGS 100000
#define IMAP_FILL_LINE 76

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
	struct store_rcpt_result res;
	const char *err = NULL;
	char *addr = xasprintf("%llu" "u@%s", (unsigned long long)n, domain);
	char *dir = xasprintf("%s/%llu" "u", maildirs, (unsigned long long)n);
	char *sub;
	uint64_t j;
	int r;

	bench_account_add(st, addr);
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

struct fill_ctx {
	const char *conf, *domain, *maildirs;
	uint64_t n, m, k;
};

/* Process p: accounts dealt round-robin, so that the filled ones (1 .. M)
 * are shared by every process. */
static void
fill_part(unsigned p, void *arg)
{
	const struct fill_ctx *c = arg;
	struct store *st = bench_store_open(c->conf);
	struct buf msg;
	uint64_t i;

	buf_init(&msg, BUF_UNBOUNDED);
	for (i = 1 + p; i <= c->n; i += IMAP_FILL_PROCS)
		fill_account(st, &msg, c->domain, i, i <= c->m ? c->k : 0,
		    c->maildirs);
	store_close(st);
	buf_free(&msg);
}

int
main(int argc, char **argv)
{
	const char *err = NULL;
	struct fill_ctx c;

	log_init("imap_fill", LOG_TO_STDERR, LOG_LEVEL_WARN);
	if (argc != 7) {
		fprintf(stderr, "usage: imap_fill CONF DOMAIN N M K MAILDIRS\n");
		return 64;
	}
	if (strnum_u64(argv[3], 1, IMAP_FILL_MAX_ACCOUNTS, &c.n, &err) < 0
	    || strnum_u64(argv[4], 0, c.n, &c.m, &err) < 0
	    || strnum_u64(argv[5], 0, IMAP_FILL_MAX_MSGS, &c.k, &err) < 0)
		log_fatalx("bad count: %s", err);
	fill_mkdir(argv[6]);
	bench_domain_add(argv[1], argv[2]);
	c.conf = argv[1];
	c.domain = argv[2];
	c.maildirs = argv[6];
	bench_parallel(IMAP_FILL_PROCS, fill_part, &c);
	return 0;
}
