/*
 * store_crash.c - the store's crash test (issue 2), a TAP test driver.
 *
 * Several worker processes deliver numbered messages and flag messages in
 * a loop against one environment; each reports every delivery that
 * store_deliver() acknowledged to the parent over a pipe, after the call
 * returned.  The parent SIGKILLs a random worker at random moments (at
 * least STORE_CRASH_KILLS_MIN times), restarting it each time, then stops
 * them all, reopens the store and checks: every acknowledged delivery is
 * present exactly once (and nothing at all twice), store_check() finds no
 * damage, and the surviving workers kept working after the kills.  Each
 * delivery also records a queue entry, a notice report and a submission
 * de-duplication record (store_deliver_ex): after the kills every message
 * has all three and every one of them has its message - one transaction.
 *
 * Bounded: at most STORE_CRASH_RUN_MAX_MS of killing, well under a minute.
 */
#include "autoconf.h"

#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mailbox_priv.h"
#include "store_util.h"

#define STORE_CRASH_WORKERS 4
#define STORE_CRASH_ACCOUNTS 6
#define STORE_CRASH_KILLS_MIN 50
#define STORE_CRASH_RUN_MIN_MS 4000
#define STORE_CRASH_RUN_MAX_MS 30000
#define STORE_CRASH_QUIET_MS 4000
/*
 * After the last kill every worker must deliver again.  On a loaded
 * machine (make -j check) reopening after a recovery can take a while, so
 * the quiet period ends early only once all have progressed, and at the
 * latest after STORE_CRASH_QUIET_MAX_MS: a worker silent that long fails.
 */
#define STORE_CRASH_QUIET_MAX_MS 15000
/* Watchdog: a worker stuck on a dead process's mutex exits (75). */
#define STORE_CRASH_STUCK_SEC 2
#define STORE_CRASH_OPEN_TRIES 200
/* Hard bound on the whole test (its workers die with it). */
#define STORE_CRASH_ALARM_SEC 55

struct ack {
	uint16_t slot;
	uint16_t gen;
	uint32_t seq;
};

static int tap_n, tap_failed;

static void
tap(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
tap(int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", ok ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		tap_failed = 1;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
addr_of(int i, char *out, size_t outsz)
{
	snprintf(out, outsz, "u%d@crash.example", i);
}

static struct store *
worker_open(struct config *cfg)
{
	struct store *s = NULL;
	const char *err;
	int i;

	for (i = 0; i < STORE_CRASH_OPEN_TRIES; i++) {
		if (store_open(cfg, 0, &s, &err) == 0)
			return s;
		usleep(10000);
	}
	fprintf(stderr, "# worker %d: store_open: %s\n", (int)getpid(), err);
	_exit(2);
}

struct crash_q {
	char id[64];
};

/* The queue entry of a delivery, written in its transaction. */
static int
crash_queue_cb(struct store_txn_queue *tq,
    const struct store_rcpt_result *res, size_t nres, void *ctx)
{
	struct crash_q *q = ctx;
	struct store_queue_item it;

	(void)res;
	(void)nres;
	memset(&it, 0, sizeof(it));
	it.id = q->id;
	it.next_try = INT64_MAX;
	it.data = (const uint8_t *)q->id;
	it.len = strlen(q->id);
	return store_txn_queue_put(tq, &it);
}

struct idset {
	char **ids;
	size_t n;
};

static void
idset_add(struct idset *set, const char *id)
{
	if (set->n % 256 == 0)
		set->ids = realloc(set->ids, (set->n + 256) * sizeof(char *));
	set->ids[set->n++] = strdup(id);
}

static int
queue_collect_cb(const struct store_queue_item *it, void *ctx)
{
	/* "q-" + message id */
	idset_add(ctx, it->id + 2);
	return 0;
}

static int
notice_collect_cb(const struct store_notice_info *info, void *ctx)
{
	char id[80];
	size_t len = strlen(info->message_id);

	/* "<" + message id + "@crash.example>" */
	if (len < 17 || len - 16 >= sizeof(id))
		return 0;
	memcpy(id, info->message_id + 1, len - 16);
	id[len - 16] = '\0';
	idset_add(ctx, id);
	return 0;
}

static void __attribute__((noreturn))
worker(struct config *cfg, int fd, uint16_t slot, uint16_t gen)
{
	struct store *s;
	struct store_rcpt_result res[2];
	struct store_uid_range r;
	struct ack a;
	char msg[256], addr[2][64];
	const char *rcpts[2];
	uint32_t inbox[STORE_CRASH_ACCOUNTS];
	struct store_mailbox_info mi;
	uint32_t seq = 0;
	int len, i, nr, fails = 0;
	struct store_deliver_opts o;
	struct crash_q qid;
	char mid[80];

	/* A worker never outlives the test, whatever happens to it. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(4);
	srandom((unsigned)getpid());
	store_watchdog_set(STORE_CRASH_STUCK_SEC);
	s = worker_open(cfg);
	for (i = 0; i < STORE_CRASH_ACCOUNTS; i++) {
		addr_of(i, addr[0], sizeof(addr[0]));
		while (store_mailbox_get(s, addr[0], "INBOX", &mi, NULL) != 0)
			usleep(1000);
		inbox[i] = mi.id;
	}
	for (;;) {
		seq++;
		nr = 1 + (int)(random() % 2);
		for (i = 0; i < nr; i++) {
			addr_of((int)(random() % STORE_CRASH_ACCOUNTS) , addr[i],
			    sizeof(addr[i]));
			rcpts[i] = addr[i];
		}
		if (nr == 2 && strcmp(addr[0], addr[1]) == 0)
			nr = 1;
		len = snprintf(msg, sizeof(msg),
		    "Subject: w%u-%u-%u\r\nFrom: crash@crash.example\r\n\r\n"
		    "message %u of worker %u generation %u\r\n", slot, gen,
		    seq, seq, slot, gen);
		snprintf(mid, sizeof(mid), "<w%u-%u-%u@crash.example>", slot,
		    gen, seq);
		snprintf(qid.id, sizeof(qid.id), "q-w%u-%u-%u", slot, gen,
		    seq);
		memset(&o, 0, sizeof(o));
		o.notice_id = mid;
		o.notice_list = "list@crash.example";
		o.notice_sender = "crash@crash.example";
		o.queue_cb = crash_queue_cb;
		o.queue_ctx = &qid;
		o.dedup_account = "crash@crash.example";
		o.dedup_id = mid;
		o.dedup_until = (int64_t)time(NULL) + 3600;
		o.dedup_ref = qid.id;
		if (store_deliver_ex(s, (const uint8_t *)msg, (size_t)len,
		    rcpts, (size_t)nr, 0, res, &o, NULL, NULL) == 0 &&
		    res[0].status == 0) {
			/* Only now is the delivery acknowledged. */
			a.slot = slot;
			a.gen = gen;
			a.seq = seq;
			if (write(fd, &a, sizeof(a)) != sizeof(a))
				_exit(3);
			fails = 0;
		} else if (++fails > 20) {
			/* The environment may need a fresh handle. */
			store_close(s);
			s = worker_open(cfg);
			fails = 0;
		}
		if (seq % 2 == 0) {
			r.lo = 1 + (uint32_t)(random() % 50);
			r.hi = r.lo + (uint32_t)(random() % 10);
			(void)store_flags_update(s,
			    inbox[random() % STORE_CRASH_ACCOUNTS], &r, 1,
			    random() % 2 ? STORE_FLAGS_ADD : STORE_FLAGS_REMOVE,
			    random() % 2 ? STORE_FLAG_SEEN : STORE_FLAG_FLAGGED,
			    NULL, 0, 0, NULL, NULL, NULL, NULL);
		}
	}
}

struct slot {
	pid_t pid;
	uint16_t gen;
	uint64_t acks;		/* of the current generation */
	uint64_t acks_at_kill;	/* when another worker was last killed */
};

static pid_t
spawn(struct config *cfg, int fd, int rfd, uint16_t slot, uint16_t gen)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == -1) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		close(rfd);
		worker(cfg, fd, slot, gen);
	}
	return pid;
}

/* The worker ids seen in the store: "w%u-%u-%u" subject per message. */
struct seen {
	char **ids;
	size_t n;
};

struct scan_ctx {
	struct store *s;
	struct seen *seen;
	int bad;
};

static int
scan_msg_cb(const struct store_msg *m, void *ctx)
{
	struct scan_ctx *c = ctx;
	struct buf b;
	char *end;

	buf_init(&b, 256);
	if (store_blob_read_range(c->s, m->blob, 0, 64, &b, NULL) != 0 ||
	    strncmp(buf_str(&b), "Subject: ", 9) != 0 ||
	    (end = strstr(buf_str(&b), "\r\n")) == NULL) {
		c->bad++;
		buf_free(&b);
		return 0;
	}
	*end = '\0';
	c->seen->ids = realloc(c->seen->ids, (c->seen->n + 1) *
	    sizeof(char *));
	c->seen->ids[c->seen->n++] = strdup(buf_str(&b) + 9);
	buf_free(&b);
	return 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
check_report(const char *problem, int repaired, void *ctx)
{
	(void)repaired;
	(void)ctx;
	printf("# check: %s\n", problem);
}

int
main(void)
{
	struct fx *f;
	struct slot slots[STORE_CRASH_WORKERS];
	struct ack *acks = NULL, a;
	size_t nacks = 0, i, j;
	struct pollfd pfd;
	struct seen seen;
	struct scan_ctx sc;
	struct store_mailbox_info mi;
	char addr[64], id[64], **found;
	long long start, next_kill, quiet_start = 0;
	int pfds[2], kills = 0, k, status, unexpected = 0, missing = 0,
	    dups = 0, stalled = 0, wedged = 0;
	ssize_t n;

	log_init("store_crash", LOG_TO_STDERR, LOG_LEVEL_WARN);
	/* The whole test is bounded; its workers die with it. */
	alarm(STORE_CRASH_ALARM_SEC);
	store_watchdog_set(STORE_CRASH_STUCK_SEC);
	printf("1..6\n");
	fflush(stdout);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	f = fx_new();
	if (store_domain_add(f->st, "crash.example", NULL) != 0)
		return 1;
	for (k = 0; k < STORE_CRASH_ACCOUNTS; k++) {
		addr_of(k, addr, sizeof(addr));
		if (fx_citizen(f, addr) != 0)
			return 1;
	}
	store_close(f->st);
	f->st = NULL;

	if (pipe(pfds) == -1)
		return 1;
	fcntl(pfds[0], F_SETFL, O_NONBLOCK);
	memset(slots, 0, sizeof(slots));
	for (k = 0; k < STORE_CRASH_WORKERS; k++)
		slots[k].pid = spawn(f->cfg, pfds[1], pfds[0], (uint16_t)k, 0);

	start = now_ms();
	next_kill = start + 100 + random() % 200;
	pfd.fd = pfds[0];
	pfd.events = POLLIN;
	for (;;) {
		long long t = now_ms();

		if (quiet_start == 0 && kills >= STORE_CRASH_KILLS_MIN &&
		    t - start >= STORE_CRASH_RUN_MIN_MS)
			quiet_start = t;
		if (quiet_start == 0 && t - start >= STORE_CRASH_RUN_MAX_MS)
			quiet_start = t;
		if (quiet_start != 0 && t - quiet_start >= STORE_CRASH_QUIET_MS) {
			for (j = 0; j < STORE_CRASH_WORKERS; j++)
				if (slots[j].acks <= slots[j].acks_at_kill)
					break;
			if (j == STORE_CRASH_WORKERS ||
			    t - quiet_start >= STORE_CRASH_QUIET_MAX_MS)
				break;
		}
		if (quiet_start == 0 && t >= next_kill) {
			k = (int)(random() % STORE_CRASH_WORKERS);
			kill(slots[k].pid, SIGKILL);
			/* Reap at once: a zombie still looks alive. */
			waitpid(slots[k].pid, &status, 0);
			if (!(WIFSIGNALED(status) &&
			    WTERMSIG(status) == SIGKILL))
				unexpected++;
			kills++;
			for (j = 0; j < STORE_CRASH_WORKERS; j++)
				slots[j].acks_at_kill = slots[j].acks;
			slots[k].gen++;
			slots[k].acks = 0;
			slots[k].acks_at_kill = 0;
			slots[k].pid = spawn(f->cfg, pfds[1], pfds[0],
			    (uint16_t)k, slots[k].gen);
			next_kill = t + 20 + random() % 180;
		}
		/*
		 * A worker the store's watchdog ended (stuck on a mutex a
		 * killed worker held; the store is then recovered) is
		 * restarted like the daemons' parents do; any other death is
		 * a failure.
		 */
		for (k = 0; k < STORE_CRASH_WORKERS; k++)
			if (waitpid(slots[k].pid, &status, WNOHANG) ==
			    slots[k].pid) {
				if (WIFEXITED(status) &&
				    WEXITSTATUS(status) == STORE_EXIT_WEDGED)
					wedged++;
				else {
					printf("# worker %d died on its own "
					    "(status %d)\n", k, status);
					unexpected++;
				}
				slots[k].gen++;
				slots[k].acks = 0;
				slots[k].acks_at_kill = 0;
				slots[k].pid = spawn(f->cfg, pfds[1], pfds[0],
				    (uint16_t)k, slots[k].gen);
			}
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		while ((n = read(pfds[0], &a, sizeof(a))) == sizeof(a)) {
			if (nacks % 1024 == 0)
				acks = realloc(acks, (nacks + 1024) *
				    sizeof(*acks));
			acks[nacks++] = a;
			if (a.slot < STORE_CRASH_WORKERS &&
			    a.gen == slots[a.slot].gen)
				slots[a.slot].acks++;
		}
	}
	/* Every worker alive now was alive through the quiet period. */
	for (k = 0; k < STORE_CRASH_WORKERS; k++)
		if (slots[k].acks <= slots[k].acks_at_kill) {
			printf("# worker %d made no progress after the last "
			    "kill (%llu acks)\n", k,
			    (unsigned long long)slots[k].acks);
			stalled++;
			if (getenv("STORE_CRASH_DEBUG") != NULL) {
				char cmd[128];

				snprintf(cmd, sizeof(cmd), "gdb -p %d -batch "
				    "-ex bt 2>/dev/null | grep '^#' | head -12",
				    (int)slots[k].pid);
				(void)system(cmd);
			}
		}
	for (k = 0; k < STORE_CRASH_WORKERS; k++) {
		kill(slots[k].pid, SIGKILL);
		waitpid(slots[k].pid, &status, 0);
	}
	/* Acks written before the last kill may still be in the pipe. */
	while ((n = read(pfds[0], &a, sizeof(a))) == sizeof(a)) {
		if (nacks % 1024 == 0)
			acks = realloc(acks, (nacks + 1024) * sizeof(*acks));
		acks[nacks++] = a;
	}
	tap(kills >= STORE_CRASH_KILLS_MIN && unexpected == 0,
	    "%d workers SIGKILLed and restarted, %d died otherwise, %d "
	    "restarted by the store's watchdog", kills, unexpected, wedged);
	tap(stalled == 0 && nacks > 0,
	    "surviving workers kept delivering (%zu acknowledged)", nacks);

	/* Reopen (failchk or recovery) and look at what is there. */
	fx_open(f);
	memset(&seen, 0, sizeof(seen));
	memset(&sc, 0, sizeof(sc));
	sc.s = f->st;
	sc.seen = &seen;
	for (k = 0; k < STORE_CRASH_ACCOUNTS; k++) {
		addr_of(k, addr, sizeof(addr));
		if (store_mailbox_get(f->st, addr, "INBOX", &mi, NULL) != 0 ||
		    store_msg_list(f->st, mi.id, NULL, 0, 0, scan_msg_cb, &sc,
		    NULL) != 0)
			sc.bad++;
	}
	/*
	 * A delivery to two accounts appears twice, once in each: count
	 * per id against the recipients is not known here, so compare per
	 * mailbox: an id may appear in a mailbox at most once.  Sorting all
	 * ids still finds an id missing everywhere.
	 */
	qsort(seen.ids, seen.n, sizeof(char *), cmp_str);
	for (i = 0; i < nacks; i++) {
		snprintf(id, sizeof(id), "w%u-%u-%u", acks[i].slot,
		    acks[i].gen, acks[i].seq);
		found = bsearch(&(const char *){ id }, seen.ids, seen.n,
		    sizeof(char *), cmp_str);
		if (found == NULL) {
			if (missing++ < 10)
				printf("# acknowledged %s is missing\n", id);
		}
	}
	tap(missing == 0 && sc.bad == 0,
	    "every acknowledged delivery is present (%zu acks, %zu messages, "
	    "%d missing, %d unreadable)", nacks, seen.n, missing, sc.bad);

	/* Exactly once: an id appears at most once per mailbox. */
	for (k = 0; k < STORE_CRASH_ACCOUNTS; k++) {
		struct seen one;
		struct scan_ctx c1;

		memset(&one, 0, sizeof(one));
		memset(&c1, 0, sizeof(c1));
		c1.s = f->st;
		c1.seen = &one;
		addr_of(k, addr, sizeof(addr));
		if (store_mailbox_get(f->st, addr, "INBOX", &mi, NULL) == 0)
			(void)store_msg_list(f->st, mi.id, NULL, 0, 0,
			    scan_msg_cb, &c1, NULL);
		qsort(one.ids, one.n, sizeof(char *), cmp_str);
		for (i = 1; i < one.n; i++)
			if (strcmp(one.ids[i], one.ids[i - 1]) == 0 &&
			    dups++ < 10)
				printf("# %s twice in %s\n", one.ids[i], addr);
		for (i = 0; i < one.n; i++)
			free(one.ids[i]);
		free(one.ids);
	}
	tap(dups == 0, "no delivery is present twice in a mailbox");
	tap(store_check(f->st, STORE_CHECK_CONTENTS, check_report, NULL,
	    NULL) == 0, "store_check finds no damage, contents included");

	/*
	 * One transaction: the distinct message ids, the queue entries and
	 * the notices are the same set, and there is a dedup record each.
	 */
	{
		struct idset q, nt;
		struct store_stats st;
		size_t u = 0, bad = 0;

		memset(&q, 0, sizeof(q));
		memset(&nt, 0, sizeof(nt));
		for (i = 0; i < seen.n; i++)
			if (u == 0 || strcmp(seen.ids[i], seen.ids[u - 1]) != 0)
				seen.ids[u++] = seen.ids[i];
			else
				free(seen.ids[i]);
		seen.n = u;
		if (store_queue_list(f->st, INT64_MAX, queue_collect_cb, &q,
		    NULL) != 0 || store_notice_list(f->st, notice_collect_cb,
		    &nt, NULL) != 0 || store_stats(f->st, &st, NULL) != 0)
			bad++;
		qsort(q.ids, q.n, sizeof(char *), cmp_str);
		qsort(nt.ids, nt.n, sizeof(char *), cmp_str);
		if (q.n != seen.n || nt.n != seen.n || st.dedup != seen.n)
			bad++;
		for (i = 0; bad == 0 && i < seen.n; i++)
			if (strcmp(q.ids[i], seen.ids[i]) != 0 ||
			    strcmp(nt.ids[i], seen.ids[i]) != 0) {
				printf("# %s: queue %s, notice %s\n",
				    seen.ids[i], q.ids[i], nt.ids[i]);
				bad++;
			}
		tap(bad == 0, "each message has its queue entry, notice record "
		    "and dedup record, and each of those its message (%zu, "
		    "%zu, %zu, %llu)", seen.n, q.n, nt.n,
		    (unsigned long long)st.dedup);
		for (i = 0; i < q.n; i++)
			free(q.ids[i]);
		for (i = 0; i < nt.n; i++)
			free(nt.ids[i]);
		free(q.ids);
		free(nt.ids);
	}

	for (i = 0; i < seen.n; i++)
		free(seen.ids[i]);
	free(seen.ids);
	free(acks);
	fx_free(f);
	return tap_failed;
}
