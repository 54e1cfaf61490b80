/*
 * store_bench.c - benchmarks of the mailbox store (issue 2), driving the
 * same calls smtpd and govmailctl use.  Not a test: it prints figures that
 * bench/run-store.sh records in bench/RESULTS.md.
 *
 *   store_bench deliver DIR WRITERS COUNT SIZE
 *       WRITERS processes each make COUNT durable single-recipient
 *       deliveries of SIZE-byte distinct messages (each call returns only
 *       after its commit is on disk); prints deliveries per second.
 *   store_bench fanout DIR RECIPIENTS BATCH SIZE
 *       creates RECIPIENTS accounts, then delivers ONE message to all of
 *       them, BATCH recipients per transaction; prints the wall time and
 *       the growth of the database files per recipient beyond one copy.
 *   store_bench notice DIR RECIPIENTS BATCH SIZE
 *       the same as a signed notice to a notice list: each transaction
 *       also records its recipients in the notice report (smtpd's
 *       store_deliver_ex with notice_id), so the growth includes it.
 *   store_bench fill DIR MESSAGES RCPTS_PER_MSG
 *       stores MESSAGES index records (MESSAGES / RCPTS_PER_MSG distinct
 *       1 KiB messages) for the recovery benchmark.
 *   store_bench crash DIR
 *       delivers in a loop until killed (the parent SIGKILLs it).
 *   store_bench open DIR
 *       times store_open (running recovery if the last user died).
 */
#include "autoconf.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

#define BENCH_DOMAIN "bench.example"
/*
 * Deliveries go to pseudo-random recipients among this many accounts, as
 * inbound mail for a large population does (a handful of hot mailboxes
 * would measure lock convoys on their records instead).
 */
#define BENCH_DELIVER_ACCOUNTS 2000

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t
num(const char *s, uint64_t max)
{
	const char *err;
	uint64_t v;

	if (strnum_u64(s, 1, max, &v, &err) < 0)
		log_fatalx("bad number %s: %s", s, err);
	return v;
}

static struct store *
bench_open(const char *dir, int create)
{
	struct config *cfg = config_defaults();
	const char *err = NULL;
	struct store *st;

	if (config_set(cfg, "store", "path", dir, &err) < 0
	    || config_set(cfg, "store", "password_opslimit", "1", &err) < 0
	    || config_set(cfg, "store", "password_memlimit", "8K", &err) < 0
	    || config_set(cfg, "store", "cache_size", "256M", &err) < 0
	    || config_set(cfg, "limits", "quota_messages", "100000000", &err) < 0
	    || config_set(cfg, "limits", "quota_bytes", "1000G", &err) < 0)
		log_fatalx("config: %s", err);
	if (create)
		mkdir(dir, 0700);
	if (store_open(cfg, create ? STORE_OPEN_CREATE : 0, &st, &err) != 0)
		log_fatalx("store_open %s: %s", dir, err ? err : "?");
	config_free(cfg);
	return st;
}

static char *
bench_user(uint64_t i)
{
	return xasprintf("u%llu@" BENCH_DOMAIN, (unsigned long long)i);
}

static void
bench_accounts_range(struct store *st, uint64_t from, uint64_t to)
{
	const char *err = NULL;
	uint64_t i;
	int r;

	for (i = from; i < to; i++) {
		struct store_account_spec spec;
		char *addr = bench_user(i);

		memset(&spec, 0, sizeof(spec));
		spec.address = addr;
		spec.class = STORE_CLASS_CITIZEN;
		spec.password = "bench-password";
		r = store_account_add(st, &spec, &err);
		if (r != 0 && r != STORE_EEXISTS)
			log_fatalx("account add %s: %s", addr, err);
		free(addr);
	}
}

/*
 * Create accounts u0..u(n-1).  Each account is its own durable
 * transaction, so large populations are made by BENCH_SETUP_PROCS
 * processes at once (their commits share log flushes).
 */
#define BENCH_SETUP_PROCS 8
static void
bench_accounts(const char *dir, struct store *st, uint64_t n)
{
	const char *err = NULL;
	uint64_t p, per;
	int r, failed = 0;

	r = store_domain_add(st, BENCH_DOMAIN, &err);
	if (r != 0 && r != STORE_EEXISTS)
		log_fatalx("domain add: %s", err);
	if (n < 1000) {
		bench_accounts_range(st, 0, n);
		return;
	}
	per = (n + BENCH_SETUP_PROCS - 1) / BENCH_SETUP_PROCS;
	for (p = 0; p < BENCH_SETUP_PROCS; p++) {
		if (fork() == 0) {
			struct store *cst = bench_open(dir, 0);
			uint64_t to = (p + 1) * per > n ? n : (p + 1) * per;

			bench_accounts_range(cst, p * per, to);
			store_close(cst);
			_exit(0);
		}
	}
	for (p = 0; p < BENCH_SETUP_PROCS; p++) {
		int status;

		wait(&status);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	if (failed)
		log_fatalx("account setup failed");
}

/* A message of about size bytes, unique by (tag, seq). */
static void
bench_message(struct buf *b, size_t size, unsigned tag, uint64_t seq)
{
	buf_reset(b);
	buf_printf(b, "From: sender@" BENCH_DOMAIN "\r\n"
	    "To: someone@" BENCH_DOMAIN "\r\n"
	    "Subject: bench %u-%llu\r\n"
	    "Message-ID: <%u.%llu@bench>\r\n"
	    "Date: Sat, 21 Nov 2026 12:00:00 +0000\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
	    tag, (unsigned long long)seq, tag, (unsigned long long)seq);
	while (b->len + 2 < size) {
		size_t n = size - b->len - 2 > 76 ? 76 : size - b->len - 2;
		size_t i;

		for (i = 0; i < n; i++)
			buf_append_byte(b, (uint8_t)('a' + (seq + i) % 26));
		buf_append(b, "\r\n", 2);
	}
}

static void
deliver_one_ex(struct store *st, struct buf *msg, const char *const *rcpts,
    size_t n, const struct store_deliver_opts *o)
{
	struct store_rcpt_result *res = xcalloc(n, sizeof(*res));
	const char *err = NULL;
	size_t i;

	if (store_deliver_ex(st, msg->data, msg->len, rcpts, n, 0, res, o,
	    NULL, &err) != 0)
		log_fatalx("deliver: %s", err ? err : "?");
	for (i = 0; i < n; i++)
		if (res[i].status != STORE_OK)
			log_fatalx("deliver to %s: %s", rcpts[i],
			    store_strerror(res[i].status));
	free(res);
}

static void
deliver_one(struct store *st, struct buf *msg, const char *const *rcpts,
    size_t n)
{
	deliver_one_ex(st, msg, rcpts, n, NULL);
}

static int
cmd_deliver(const char *dir, uint64_t writers, uint64_t count, uint64_t size)
{
	struct store *st = bench_open(dir, 1);
	double t0, t1;
	uint64_t w;
	int failed = 0;

	bench_accounts(dir, st, BENCH_DELIVER_ACCOUNTS);
	store_close(st);
	t0 = now();
	for (w = 0; w < writers; w++) {
		if (fork() == 0) {
			struct buf msg;
			uint64_t i;

			st = bench_open(dir, 0);
			buf_init(&msg, BUF_UNBOUNDED);
			for (i = 0; i < count; i++) {
				char *rcpt = bench_user((w * 7919 + i * 104729)
				    % BENCH_DELIVER_ACCOUNTS);
				const char *rcpts[1] = { rcpt };

				bench_message(&msg, (size_t)size, (unsigned)w, i);
				deliver_one(st, &msg, rcpts, 1);
				free(rcpt);
			}
			buf_free(&msg);
			store_close(st);
			_exit(0);
		}
	}
	for (w = 0; w < writers; w++) {
		int status;

		wait(&status);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	t1 = now();
	printf("deliver writers=%llu count=%llu size=%llu seconds=%.2f "
	    "rate=%.0f/s%s\n", (unsigned long long)writers,
	    (unsigned long long)(writers * count), (unsigned long long)size,
	    t1 - t0, (double)(writers * count) / (t1 - t0),
	    failed ? " FAILED" : "");
	return failed;
}

/* Bytes of the database files (not logs, not the region files). */
static uint64_t
db_bytes(const char *dir)
{
	struct dirent *de;
	uint64_t total = 0;
	DIR *d = opendir(dir);

	if (d == NULL)
		log_fatal("opendir %s", dir);
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		struct stat sb;
		char *p;

		if (l < 4 || strcmp(de->d_name + l - 3, ".db") != 0)
			continue;
		p = xasprintf("%s/%s", dir, de->d_name);
		if (stat(p, &sb) == 0)
			total += (uint64_t)sb.st_size;
		free(p);
	}
	closedir(d);
	return total;
}

static int
cmd_fanout(const char *dir, uint64_t n, uint64_t batch, uint64_t size,
    int notice)
{
	struct store_deliver_opts o;
	struct store *st = bench_open(dir, 1);
	char **rcpts = xcalloc(n, sizeof(*rcpts));
	uint64_t before, after, i;
	struct buf msg;
	double t0, t1, ta;

	ta = now();
	bench_accounts(dir, st, n);
	printf("fanout accounts=%llu create_seconds=%.1f\n",
	    (unsigned long long)n, now() - ta);
	store_close(st);
	before = db_bytes(dir);
	st = bench_open(dir, 0);
	for (i = 0; i < n; i++)
		rcpts[i] = bench_user(i);
	buf_init(&msg, BUF_UNBOUNDED);
	bench_message(&msg, (size_t)size, 999, 1);
	memset(&o, 0, sizeof(o));
	o.notice_id = "<999.1@bench>";
	o.notice_list = "all-citizens@bench.example";
	o.notice_sender = "water@bench.example";
	o.notice_defer = 1;
	t0 = now();
	for (i = 0; i < n; i += batch) {
		size_t k = (size_t)(n - i < batch ? n - i : batch);

		deliver_one_ex(st, &msg, (const char *const *)rcpts + i, k,
		    notice ? &o : NULL);
	}
	t1 = now();
	store_close(st);
	after = db_bytes(dir);
	printf("%s recipients=%llu batch=%llu size=%zu seconds=%.2f "
	    "db_growth=%llu per_recipient=%.1f\n", notice ? "notice" :
	    "fanout", (unsigned long long)n,
	    (unsigned long long)batch, msg.len, t1 - t0,
	    (unsigned long long)(after - before),
	    ((double)after - (double)before - (double)msg.len) / (double)n);
	for (i = 0; i < n; i++)
		free(rcpts[i]);
	free(rcpts);
	buf_free(&msg);
	return 0;
}

static int
cmd_fill(const char *dir, uint64_t messages, uint64_t per)
{
	struct store *st = bench_open(dir, 1);
	char **rcpts = xcalloc(per, sizeof(*rcpts));
	uint64_t i, distinct = messages / per;
	struct buf msg;
	double t0 = now();

	bench_accounts(dir, st, per);
	for (i = 0; i < per; i++)
		rcpts[i] = bench_user(i);
	buf_init(&msg, BUF_UNBOUNDED);
	for (i = 0; i < distinct; i++) {
		bench_message(&msg, 1024, 7, i);
		deliver_one(st, &msg, (const char *const *)rcpts, (size_t)per);
	}
	store_close(st);
	printf("fill messages=%llu distinct=%llu seconds=%.1f\n",
	    (unsigned long long)(distinct * per), (unsigned long long)distinct,
	    now() - t0);
	for (i = 0; i < per; i++)
		free(rcpts[i]);
	free(rcpts);
	buf_free(&msg);
	return 0;
}

static void __attribute__((noreturn))
cmd_crash(const char *dir)
{
	struct store *st = bench_open(dir, 0);
	struct buf msg;
	uint64_t i;

	buf_init(&msg, BUF_UNBOUNDED);
	for (i = 0;; i++) {
		char *rcpt = bench_user(i % 10);
		const char *rcpts[1] = { rcpt };

		bench_message(&msg, 10240, 8, i);
		deliver_one(st, &msg, rcpts, 1);
		free(rcpt);
	}
	/* NOTREACHED: the benchmark SIGKILLs this process. */
}

static int
cmd_open(const char *dir)
{
	double t0 = now();
	struct store *st = bench_open(dir, 0);
	double t1 = now();
	struct store_stats stats;
	const char *err = NULL;

	if (store_stats(st, &stats, &err) != 0)
		log_fatalx("stats: %s", err ? err : "?");
	store_close(st);
	printf("open seconds=%.3f messages=%llu\n", t1 - t0,
	    (unsigned long long)stats.messages);
	return 0;
}

int
main(int argc, char **argv)
{
	log_init("store_bench", LOG_TO_STDERR, LOG_LEVEL_WARN);
	if (argc == 6 && strcmp(argv[1], "deliver") == 0)
		return cmd_deliver(argv[2], num(argv[3], 64),
		    num(argv[4], 10000000), num(argv[5], 100000000));
	if (argc == 6 && strcmp(argv[1], "fanout") == 0)
		return cmd_fanout(argv[2], num(argv[3], 10000000),
		    num(argv[4], 10000000), num(argv[5], 100000000), 0);
	if (argc == 6 && strcmp(argv[1], "notice") == 0)
		return cmd_fanout(argv[2], num(argv[3], 10000000),
		    num(argv[4], 10000000), num(argv[5], 100000000), 1);
	if (argc == 5 && strcmp(argv[1], "fill") == 0)
		return cmd_fill(argv[2], num(argv[3], 100000000),
		    num(argv[4], 100000));
	if (argc == 3 && strcmp(argv[1], "crash") == 0)
		cmd_crash(argv[2]);
	if (argc == 3 && strcmp(argv[1], "open") == 0)
		return cmd_open(argv[2]);
	fprintf(stderr, "usage: store_bench "
	    "deliver|fanout|notice|fill|crash|open DIR ...\n");
	return 64;
}
