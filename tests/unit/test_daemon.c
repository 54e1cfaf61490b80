/*
 * Unit tests for lib/daemon.c.  The supervisor runs for real: the test
 * forks a child that calls daemon_run() on a free loopback port with a
 * small echo worker, finds the workers through /proc, kills one with
 * SIGKILL and checks a new one takes its place and connections work, then
 * SIGTERMs the parent and checks every process is gone, by PID.  Every
 * wait polls with a deadline; nothing asserts a duration.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "buf.h"
#include "daemon.h"
#include "log.h"
#include "privsep.h"
#include "strnum.h"

/* Generous deadlines for a loaded 2-core machine; polls end far sooner. */
#define DEADLINE_MS 15000
#define POLL_MS 10
#define MAX_KIDS 16

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
nap(void)
{
	struct timespec ts = { 0, POLL_MS * 1000000L };

	nanosleep(&ts, NULL);
}

/* A loopback port nobody listens on right now. */
static unsigned int
free_port(void)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

/* Live (not zombie) children of ppid, from /proc/PID/stat. */
static size_t
children_of(pid_t ppid, pid_t *out, size_t max)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[64], line[512], *p;
		uint64_t pid;
		const char *err;
		long pp;
		char state;
		FILE *f;

		if (strnum_u64(de->d_name, 1, INT32_MAX, &pid, &err) < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%llu/stat",
		    (unsigned long long)pid);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fgets(line, sizeof(line), f) == NULL) {
			fclose(f);
			continue;
		}
		fclose(f);
		/* pid (comm) state ppid ...; comm may hold spaces. */
		p = strrchr(line, ')');
		if (p == NULL || sscanf(p + 1, " %c %ld", &state, &pp) != 2)
			continue;
		if (pp == (long)ppid && state != 'Z' && state != 'X' &&
		    n < max)
			out[n++] = (pid_t)pid;
	}
	closedir(d);
	return n;
}

static int
pid_in(pid_t pid, const pid_t *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (list[i] == pid)
			return 1;
	return 0;
}

/* Gone for good: no such process (a zombie would still answer kill 0). */
static int
pid_gone(pid_t pid)
{
	char path[64];
	struct stat st;

	if (kill(pid, 0) == 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld", (long)pid);
	return errno == ESRCH && stat(path, &st) < 0;
}

/* Wait for our own child; returns its status, or fails the test. */
static int
reap(pid_t pid)
{
	int64_t deadline = now_ms() + DEADLINE_MS;
	int status;

	while (now_ms() < deadline) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		assert_int_not_equal(r, -1);
		nap();
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	fail_msg("process %ld did not exit in time", (long)pid);
	return -1;
}

/*
 * One request: send "ping\n", read the worker's line
 * "pid=N uid=N kind=K index=I".  Returns the worker pid, or -1 if the
 * connection failed.
 */
static int last_hup;

static pid_t
echo(unsigned int port, uid_t *uid_r, char *kind, size_t kindsz)
{
	struct sockaddr_in sin;
	char line[256];
	size_t got = 0;
	long pid = -1, uid = -1;
	unsigned int index = 0;
	char k[64];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    write(fd, "ping\n", 5) != 5) {
		close(fd);
		return -1;
	}
	while (got < sizeof(line) - 1) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&pfd, 1, DEADLINE_MS) != 1)
			break;
		r = read(fd, line + got, sizeof(line) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		if (memchr(line, '\n', got) != NULL)
			break;
	}
	close(fd);
	line[got] = '\0';
	if (sscanf(line, "pid=%ld uid=%ld kind=%63s index=%u hup=%d", &pid,
	    &uid, k, &index, &last_hup) != 5)
		return -1;
	if (uid_r != NULL)
		*uid_r = (uid_t)uid;
	if (kind != NULL)
		str_copy(kind, kindsz, k);
	return (pid_t)pid;
}

/* ---- workers ----------------------------------------------------------- */

static volatile sig_atomic_t echo_hups;

static void
echo_on_hup(int sig)
{
	(void)sig;
	echo_hups++;
}

/*
 * Accept on every listener; answer each connection with who we are and
 * how many SIGHUPs reached us (the worker installs a handler, as a real
 * worker would for reloads).
 */
static int
echo_main(const struct daemon_listener *ls, size_t n, unsigned int index,
    void *ctx)
{
	struct pollfd pfd[DAEMON_LISTENERS_MAX];
	struct sigaction sa;
	size_t i;

	(void)ctx;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = echo_on_hup;
	sigaction(SIGHUP, &sa, NULL);
	for (i = 0; i < n; i++) {
		pfd[i].fd = ls[i].fd;
		pfd[i].events = POLLIN;
	}
	for (;;) {
		if (poll(pfd, n, -1) < 0)
			continue;
		for (i = 0; i < n; i++) {
			char line[256], in[64];
			int fd, len;

			if (!(pfd[i].revents & POLLIN))
				continue;
			fd = accept(ls[i].fd, NULL, NULL);
			if (fd < 0)
				continue;	/* EAGAIN: another won */
			if (read(fd, in, sizeof(in)) < 0) {
				close(fd);
				continue;
			}
			len = snprintf(line, sizeof(line),
			    "pid=%ld uid=%ld kind=%s index=%u hup=%d\n",
			    (long)getpid(), (long)geteuid(), ls[i].kind,
			    index, (int)echo_hups);
			if (write(fd, line, (size_t)len) < 0)
				(void)0;
			close(fd);
		}
	}
	return 0;
}

/* Ignores SIGTERM: the parent must SIGKILL it after the grace period. */
static int
stubborn_main(const struct daemon_listener *ls, size_t n,
    unsigned int index, void *ctx)
{
	(void)ls;
	(void)n;
	(void)index;
	(void)ctx;
	signal(SIGTERM, SIG_IGN);
	for (;;)
		pause();
	return 0;
}

static int
fatal_main(const struct daemon_listener *ls, size_t n, unsigned int index,
    void *ctx)
{
	(void)ls;
	(void)n;
	(void)index;
	(void)ctx;
	return DAEMON_EXIT_FATAL;
}

/* Writes one byte to the pipe in ctx per start, then crashes. */
static int
crash_main(const struct daemon_listener *ls, size_t n, unsigned int index,
    void *ctx)
{
	int fd = *(int *)ctx;

	(void)ls;
	(void)n;
	(void)index;
	if (write(fd, "x", 1) != 1)
		return 2;
	return 1;
}

/* ---- running a daemon in a child --------------------------------------- */

struct run {
	struct daemon_listen listen[2];
	struct daemon_spec spec;
	char port[16];
	char dir[64];
	char pid_file[128];
};

static void
run_init(struct run *r, unsigned int port,
    int (*worker)(const struct daemon_listener *, size_t, unsigned int,
    void *), void *ctx)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->port, sizeof(r->port), "%u", port);
	snprintf(r->dir, sizeof(r->dir), "/tmp/test_daemon.XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	snprintf(r->pid_file, sizeof(r->pid_file), "%s/test.pid", r->dir);
	r->listen[0].kind = "echo";
	r->listen[0].host = "127.0.0.1";
	r->listen[0].port = r->port;
	r->spec.role = "test_daemon";
	r->spec.listen = r->listen;
	r->spec.nlisten = 1;
	r->spec.workers = 2;
	/* As root the workers really drop; "nobody" exists everywhere. */
	r->spec.user = privsep_is_root() ? "nobody" : NULL;
	r->spec.pid_file = r->pid_file;
	r->spec.foreground = 1;
	r->spec.grace_seconds = 1;
	r->spec.worker_main = worker;
	r->spec.ctx = ctx;
}

static void
run_done(struct run *r)
{
	unlink(r->pid_file);
	rmdir(r->dir);
}

static pid_t
run_start(struct run *r)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		const char *err = NULL;
		int rc;

		log_init("test_daemon", LOG_TO_STDERR, LOG_LEVEL_WARN);
		rc = daemon_run(&r->spec, &err);
		if (rc < 0)
			fprintf(stderr, "# daemon_run: %s\n", err);
		_exit(rc == 0 ? 0 : 1);
	}
	return pid;
}

/* Wait until ppid has want live children; fills kids. */
static size_t
wait_children(pid_t ppid, size_t want, pid_t *kids)
{
	int64_t deadline = now_ms() + DEADLINE_MS;
	size_t n = 0;

	while (now_ms() < deadline) {
		n = children_of(ppid, kids, MAX_KIDS);
		if (n == want)
			return n;
		nap();
	}
	fail_msg("expected %zu workers, have %zu", want, n);
	return n;
}

static pid_t
echo_until_up(unsigned int port, uid_t *uid_r, char *kind, size_t kindsz)
{
	int64_t deadline = now_ms() + DEADLINE_MS;

	while (now_ms() < deadline) {
		pid_t p = echo(port, uid_r, kind, kindsz);

		if (p > 0)
			return p;
		nap();
	}
	fail_msg("no answer on port %u", port);
	return -1;
}

static void
test_supervise(void **state)
{
	struct run r;
	unsigned int port = free_port();
	pid_t dpid, kids[MAX_KIDS], after[MAX_KIDS], victim, p;
	pid_t all[2 * MAX_KIDS];
	size_t n, nall = 0, i;
	uid_t uid = 0;
	char kind[32], buf[64];
	int64_t deadline;
	int status, fd, replacement = 0;
	ssize_t got;

	(void)state;
	run_init(&r, port, echo_main, NULL);
	dpid = run_start(&r);

	p = echo_until_up(port, &uid, kind, sizeof(kind));
	n = wait_children(dpid, 2, kids);
	assert_true(pid_in(p, kids, n));
	assert_string_equal(kind, "echo");
	if (privsep_is_root())
		assert_int_equal(uid, 65534);	/* dropped to nobody */
	for (i = 0; i < n; i++)
		all[nall++] = kids[i];

	/* The pid file names the parent. */
	fd = open(r.pid_file, O_RDONLY);
	assert_true(fd >= 0);
	got = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(got > 0);
	buf[got] = '\0';
	snprintf(kind, sizeof(kind), "%ld\n", (long)dpid);
	assert_string_equal(buf, kind);

	/* Kill a worker: the parent starts a new one in its slot. */
	victim = kids[0];
	assert_int_equal(kill(victim, SIGKILL), 0);
	deadline = now_ms() + DEADLINE_MS;
	while (now_ms() < deadline && !replacement) {
		n = children_of(dpid, after, MAX_KIDS);
		if (n == 2 && !pid_in(victim, after, n))
			replacement = 1;
		else
			nap();
	}
	assert_true(replacement);
	for (i = 0; i < n; i++) {
		if (!pid_in(after[i], kids, 2)) {
			assert_int_not_equal(after[i], victim);
			all[nall++] = after[i];
		}
	}
	assert_int_equal(nall, 3);
	/* Connections work again, served by the live workers only. */
	for (i = 0; i < 6; i++) {
		p = echo_until_up(port, NULL, NULL, 0);
		assert_int_not_equal(p, victim);
		assert_true(pid_in(p, after, n));
	}

	/* SIGHUP reaches the workers, and restarts nobody. */
	assert_int_equal(kill(dpid, SIGHUP), 0);
	deadline = now_ms() + DEADLINE_MS;
	last_hup = 0;
	while (now_ms() < deadline && last_hup == 0) {
		assert_true(echo_until_up(port, NULL, NULL, 0) > 0);
		if (last_hup == 0)
			nap();
	}
	assert_int_equal(last_hup, 1);
	assert_int_equal(children_of(dpid, kids, MAX_KIDS), 2);
	assert_true(pid_in(after[0], kids, 2) && pid_in(after[1], kids, 2));

	/* SIGTERM: the parent stops every worker and exits cleanly. */
	assert_int_equal(kill(dpid, SIGTERM), 0);
	status = reap(dpid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (i = 0; i < nall; i++)
		assert_true(pid_gone(all[i]));
	assert_int_equal(access(r.pid_file, F_OK), -1);
	assert_int_equal(echo(port, NULL, NULL, 0), -1);
	run_done(&r);
}

/* A worker that ignores SIGTERM is killed after the grace period. */
static void
test_stubborn_worker(void **state)
{
	struct run r;
	pid_t dpid, kids[MAX_KIDS];
	size_t n, i;
	int status;

	(void)state;
	run_init(&r, free_port(), stubborn_main, NULL);
	dpid = run_start(&r);
	n = wait_children(dpid, 2, kids);
	assert_int_equal(kill(dpid, SIGTERM), 0);
	status = reap(dpid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (i = 0; i < n; i++)
		assert_true(pid_gone(kids[i]));
	run_done(&r);
}

/* DAEMON_EXIT_FATAL from a worker stops the daemon with an error. */
static void
test_fatal_worker(void **state)
{
	struct run r;
	pid_t dpid;
	int status;

	(void)state;
	run_init(&r, free_port(), fatal_main, NULL);
	dpid = run_start(&r);
	status = reap(dpid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	assert_int_equal(access(r.pid_file, F_OK), -1);
	run_done(&r);
}

/*
 * A worker that crashes at once is restarted, but with a growing delay:
 * in the window below an unbraked loop would start it thousands of
 * times; the brake (250, 500, 1000 ms ...) allows a handful.
 */
static void
test_crash_loop(void **state)
{
	struct run r;
	int pfd[2], status, starts = 0;
	pid_t dpid;
	int64_t until;
	char b[4096];

	(void)state;
	assert_int_equal(pipe(pfd), 0);
	run_init(&r, free_port(), crash_main, &pfd[1]);
	r.spec.workers = 1;
	dpid = run_start(&r);
	close(pfd[1]);
	assert_int_equal(fcntl(pfd[0], F_SETFL, O_NONBLOCK), 0);
	until = now_ms() + 1500;
	while (now_ms() < until) {
		ssize_t got = read(pfd[0], b, sizeof(b));

		if (got > 0)
			starts += (int)got;
		nap();
	}
	assert_int_equal(kill(dpid, SIGTERM), 0);
	status = reap(dpid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (;;) {
		ssize_t got = read(pfd[0], b, sizeof(b));

		if (got <= 0)
			break;
		starts += (int)got;
	}
	close(pfd[0]);
	print_message("# crash loop: %d starts\n", starts);
	assert_true(starts >= 2);	/* it was restarted */
	assert_true(starts <= 8);	/* but not in a spin */
	run_done(&r);
}

/* As root, a worker that cannot drop privileges stops the daemon. */
static void
test_privsep_fatal(void **state)
{
	struct run r;
	pid_t dpid;
	int status;

	(void)state;
	if (!privsep_is_root()) {
		print_message("# skipped: needs root (privsep_drop is a "
		    "no-op otherwise)\n");
		return;
	}
	run_init(&r, free_port(), echo_main, NULL);
	r.spec.user = "no-such-user-govmail-test";
	dpid = run_start(&r);
	status = reap(dpid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	assert_int_equal(access(r.pid_file, F_OK), -1);
	run_done(&r);
}

/*
 * Without foreground the daemon detaches: the process that called
 * daemon_run() exits at once, the detached one writes the pid file and
 * serves.  We are its subreaper, so we can wait for it by PID.
 */
static void
test_daemonise(void **state)
{
	struct run r;
	unsigned int port = free_port();
	pid_t first, dpid = -1, kids[MAX_KIDS];
	int64_t deadline;
	int status, fd;
	size_t n, i;

	(void)state;
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	run_init(&r, port, echo_main, NULL);
	r.spec.foreground = 0;
	first = run_start(&r);
	status = reap(first);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	deadline = now_ms() + DEADLINE_MS;
	while (now_ms() < deadline && dpid <= 0) {
		char buf[32];
		ssize_t got;
		uint64_t v;
		const char *err;

		fd = open(r.pid_file, O_RDONLY);
		if (fd >= 0) {
			got = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (got > 1 && buf[got - 1] == '\n') {
				buf[got - 1] = '\0';
				if (strnum_u64(buf, 1, INT32_MAX, &v,
				    &err) == 0)
					dpid = (pid_t)v;
			}
		}
		if (dpid <= 0)
			nap();
	}
	assert_true(dpid > 0);
	assert_int_not_equal(dpid, first);
	assert_true(echo_until_up(port, NULL, NULL, 0) > 0);
	n = wait_children(dpid, 2, kids);
	assert_int_equal(kill(dpid, SIGTERM), 0);
	status = reap(dpid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (i = 0; i < n; i++)
		assert_true(pid_gone(kids[i]));
	assert_int_equal(access(r.pid_file, F_OK), -1);
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
	run_done(&r);
}

/* A second daemon on the same port fails at bind, before forking. */
static void
test_run_errors(void **state)
{
	struct run r;
	const char *err = NULL;
	struct daemon_listener *ls = NULL;
	size_t n = 0;

	(void)state;
	run_init(&r, free_port(), echo_main, NULL);
	assert_int_equal(daemon_listeners_open(r.listen, 1, &ls, &n, &err), 0);
	assert_int_equal(daemon_run(&r.spec, &err), -1);
	assert_non_null(strstr(err, "Address already in use"));
	daemon_listeners_close(ls, n);
	r.spec.worker_main = NULL;
	assert_int_equal(daemon_run(&r.spec, &err), -1);
	r.spec.worker_main = echo_main;
	r.spec.workers = DAEMON_WORKERS_MAX + 1;
	assert_int_equal(daemon_run(&r.spec, &err), -1);
	assert_non_null(strstr(err, "workers"));
	run_done(&r);
}

static void
test_listeners(void **state)
{
	static const struct {
		const char *kind, *host, *port;
		int ok;
		const char *err;
	} cases[] = {
		{ "smtp", "127.0.0.1", "0", 1, NULL },
		{ "smtp", "127.0.0.1", "abc", 0, "bad port" },
		{ "smtp", "127.0.0.1", "65536", 0, "bad port" },
		{ "smtp", "127.0.0.1", "-1", 0, "bad port" },
		{ "smtp", "127.0.0.1", NULL, 0, "bad port" },
		{ "smtp", "localhost", "0", 0, NULL },	/* numeric only */
		{ "smtp", "192.0.2.1", "0", 0, "bind" },	/* not ours */
		{ "", "127.0.0.1", "0", 0, "kind" },
		{ NULL, "127.0.0.1", "0", 0, "kind" },
		{ "submissions-with-a-very-long-tag", "127.0.0.1", "0", 1,
		  NULL },					/* 32: N */
		{ "submissions-with-a-very-long-tagx", "127.0.0.1", "0", 0,
		  "kind" },					/* 33: N+1 */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct daemon_listen l = { cases[i].kind, cases[i].host,
		    cases[i].port };
		struct daemon_listener *ls = NULL;
		size_t n = 99;
		const char *err = NULL;
		int r = daemon_listeners_open(&l, 1, &ls, &n, &err);

		print_message("# listen case %zu: %s\n", i,
		    r < 0 ? err : "ok");
		assert_int_equal(r, cases[i].ok ? 0 : -1);
		if (!cases[i].ok) {
			assert_null(ls);
			assert_int_equal(n, 0);
			if (cases[i].err != NULL)
				assert_non_null(strstr(err, cases[i].err));
			continue;
		}
		assert_int_equal(n, 1);
		assert_string_equal(ls[0].kind, cases[i].kind);
		assert_true(str_has_prefix(ls[0].addr, "127.0.0.1;"));
		assert_string_not_equal(ls[0].addr, "127.0.0.1;0");
		assert_true(fcntl(ls[0].fd, F_GETFL) & O_NONBLOCK);
		assert_true(fcntl(ls[0].fd, F_GETFD) & FD_CLOEXEC);
		daemon_listeners_close(ls, n);
	}
}

/* DAEMON_LISTENERS_MAX addresses bind; one more is refused. */
static void
test_listeners_max(void **state)
{
	static struct daemon_listen l[DAEMON_LISTENERS_MAX + 1];
	static const size_t counts[] = {
		DAEMON_LISTENERS_MAX - 1, DAEMON_LISTENERS_MAX,
		DAEMON_LISTENERS_MAX + 1, 0,
	};
	size_t i, c;

	(void)state;
	for (i = 0; i <= DAEMON_LISTENERS_MAX; i++) {
		l[i].kind = "imap";
		l[i].host = "127.0.0.1";
		l[i].port = "0";
	}
	for (c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		struct daemon_listener *ls = NULL;
		size_t n = 0;
		const char *err = NULL;
		int want = counts[c] >= 1 &&
		    counts[c] <= DAEMON_LISTENERS_MAX ? 0 : -1;

		assert_int_equal(daemon_listeners_open(l, counts[c], &ls, &n,
		    &err), want);
		if (want == 0) {
			assert_int_equal(n, counts[c]);
			daemon_listeners_close(ls, n);
		}
	}
}

/* "*" binds IPv4 and (where the host has it) IPv6 separately. */
static void
test_listeners_wildcard(void **state)
{
	struct daemon_listen l = { "imaps", "*", "0" };
	struct daemon_listener *ls = NULL;
	size_t n = 0, i;
	const char *err = NULL;
	int v4 = 0;

	(void)state;
	assert_int_equal(daemon_listeners_open(&l, 1, &ls, &n, &err), 0);
	assert_true(n >= 1 && n <= 2);
	for (i = 0; i < n; i++) {
		assert_string_equal(ls[i].kind, "imaps");
		if (str_has_prefix(ls[i].addr, "0.0.0.0;"))
			v4 = 1;
		else
			assert_true(str_has_prefix(ls[i].addr, "::;"));
	}
	assert_true(v4);
	daemon_listeners_close(ls, n);
}

static void
test_default_workers(void **state)
{
	unsigned int n = daemon_default_workers();
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	(void)state;
	assert_true(n >= 1 && n <= DAEMON_WORKERS_MAX);
	if (cpus >= 1 && cpus <= DAEMON_WORKERS_MAX)
		assert_int_equal(n, (unsigned int)cpus);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_workers),
		cmocka_unit_test(test_listeners),
		cmocka_unit_test(test_listeners_max),
		cmocka_unit_test(test_listeners_wildcard),
		cmocka_unit_test(test_run_errors),
		cmocka_unit_test(test_supervise),
		cmocka_unit_test(test_stubborn_worker),
		cmocka_unit_test(test_fatal_worker),
		cmocka_unit_test(test_privsep_fatal),
		cmocka_unit_test(test_daemonise),
		cmocka_unit_test(test_crash_loop),
	};

	log_init("test_daemon", LOG_TO_STDERR, LOG_LEVEL_WARN);
	return cmocka_run_group_tests_name("daemon", tests, NULL, NULL);
}
