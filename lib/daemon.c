/*
 * daemon.c - the root parent that binds and supervises, and the start of
 * each worker (see daemon.h).
 *
 * The parent runs as root in production and never reads a client byte:
 * it binds, forks, waits for signals and restarts workers.  Each worker
 * drops privileges (privsep_drop) before it runs the caller's worker_main.
 * Trusted input: the spec (from the configuration and command line).
 * Signals are taken synchronously with sigtimedwait(), so there are no
 * asynchronous handlers and no races between a handler and the loop.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "daemon.h"
#include "log.h"
#include "privsep.h"
#include "ratelimit.h"
#include "strnum.h"
#include "xmalloc.h"

/* Longest pid file content we read back ("4194304\n"). */
#define DAEMON_PIDFILE_READ_MAX 32
/* Longest wait in one sigtimedwait() round, ms (the loop re-checks). */
#define DAEMON_WAIT_MAX_MS 1000

static char daemon_errbuf[512];

static const char *daemon_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static const char *
daemon_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(daemon_errbuf, sizeof(daemon_errbuf), fmt, ap);
	va_end(ap);
	return daemon_errbuf;
}

unsigned int
daemon_default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	if (n > DAEMON_WORKERS_MAX)
		return DAEMON_WORKERS_MAX;
	return (unsigned int)n;
}

/* ---- listeners -------------------------------------------------------- */

void
daemon_listeners_close(struct daemon_listener *listeners, size_t n)
{
	size_t i;

	if (listeners == NULL)
		return;
	for (i = 0; i < n; i++)
		if (listeners[i].fd >= 0)
			close(listeners[i].fd);
	free(listeners);
}

static void
addr_format(const struct sockaddr *sa, char *out, size_t outsz)
{
	char host[INET6_ADDRSTRLEN];
	unsigned int port = 0;

	host[0] = '\0';
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)
		    (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)
		    (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(out, outsz, "%s;%u", host, port);
}

/* Bind and listen on one resolved address; returns the fd or -1. */
static int
listen_one(const struct addrinfo *ai, const char **what_r)
{
	int fd, on = 1;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		*what_r = "socket";
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0) {
		*what_r = "setsockopt SO_REUSEADDR";
		goto fail;
	}
	/* Wildcard v4 and v6 are separate sockets: v6 must not take v4. */
	if (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &on, sizeof(on)) < 0) {
		*what_r = "setsockopt IPV6_V6ONLY";
		goto fail;
	}
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		*what_r = "bind";
		goto fail;
	}
	if (listen(fd, DAEMON_BACKLOG) < 0) {
		*what_r = "listen";
		goto fail;
	}
	return fd;
fail:
	{
		int saved = errno;

		close(fd);
		errno = saved;
	}
	return -1;
}

int
daemon_listeners_open(const struct daemon_listen *listen, size_t nlisten,
    struct daemon_listener **listeners_r, size_t *n_r, const char **error_r)
{
	struct daemon_listener *ls;
	size_t n = 0, i, bound;

	*listeners_r = NULL;
	*n_r = 0;
	if (listen == NULL || nlisten == 0) {
		*error_r = "no address to listen on";
		return -1;
	}
	if (nlisten > DAEMON_LISTENERS_MAX) {
		*error_r = daemon_error("more than %d listen addresses",
		    DAEMON_LISTENERS_MAX);
		return -1;
	}
	ls = xcalloc(DAEMON_LISTENERS_MAX, sizeof(*ls));
	for (i = 0; i < nlisten; i++) {
		const struct daemon_listen *l = &listen[i];
		const char *host = l->host;
		struct addrinfo hints, *res = NULL, *ai;
		uint64_t port;
		const char *perr;
		int r;

		if (l->kind == NULL || l->kind[0] == '\0' ||
		    strlen(l->kind) > DAEMON_KIND_MAX) {
			*error_r = daemon_error("listener %zu: kind must be "
			    "1..%d bytes", i, DAEMON_KIND_MAX);
			goto fail;
		}
		if (l->port == NULL ||
		    strnum_u64(l->port, 0, 65535, &port, &perr) < 0) {
			*error_r = daemon_error("%s: bad port: %s", l->kind,
			    l->port == NULL ? "missing" : perr);
			goto fail;
		}
		if (host != NULL && (host[0] == '\0' || strcmp(host, "*") == 0))
			host = NULL;
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
		r = getaddrinfo(host, l->port, &hints, &res);
		if (r != 0) {
			*error_r = daemon_error("%s: %s port %s: %s", l->kind,
			    host != NULL ? host : "*", l->port,
			    gai_strerror(r));
			goto fail;
		}
		bound = 0;
		for (ai = res; ai != NULL; ai = ai->ai_next) {
			const char *what = "";
			int fd;

			if (ai->ai_family != AF_INET &&
			    ai->ai_family != AF_INET6)
				continue;
			if (n == DAEMON_LISTENERS_MAX) {
				freeaddrinfo(res);
				*error_r = daemon_error("more than %d listening"
				    " sockets", DAEMON_LISTENERS_MAX);
				goto fail;
			}
			fd = listen_one(ai, &what);
			/* A wildcard on a host without IPv6 (or v4) is fine. */
			if (fd < 0 && host == NULL && errno == EAFNOSUPPORT)
				continue;
			if (fd < 0) {
				char a[DAEMON_ADDR_MAX];

				addr_format(ai->ai_addr, a, sizeof(a));
				*error_r = daemon_error("%s: %s %s: %s",
				    l->kind, what, a, strerror(errno));
				freeaddrinfo(res);
				goto fail;
			}
			ls[n].fd = fd;
			str_copy(ls[n].kind, sizeof(ls[n].kind), l->kind);
			{
				struct sockaddr_storage ss;
				socklen_t sl = sizeof(ss);

				if (getsockname(fd, (struct sockaddr *)&ss,
				    &sl) == 0)
					addr_format((struct sockaddr *)&ss,
					    ls[n].addr, sizeof(ls[n].addr));
				else
					addr_format(ai->ai_addr, ls[n].addr,
					    sizeof(ls[n].addr));
			}
			n++;
			bound++;
		}
		freeaddrinfo(res);
		if (bound == 0) {
			*error_r = daemon_error("%s: no usable address for %s "
			    "port %s", l->kind, host != NULL ? host : "*",
			    l->port);
			goto fail;
		}
	}
	*listeners_r = ls;
	*n_r = n;
	return 0;
fail:
	daemon_listeners_close(ls, n);
	return -1;
}

/* ---- pid file ---------------------------------------------------------- */

static int
pidfile_write(const char *path, const char **error_r)
{
	char old[DAEMON_PIDFILE_READ_MAX + 1];
	char line[32];
	ssize_t got;
	int fd, len;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		got = read(fd, old, DAEMON_PIDFILE_READ_MAX);
		close(fd);
		if (got > 0) {
			int64_t pid;
			const char *perr;

			old[got] = '\0';
			old[strcspn(old, "\n")] = '\0';
			if (strnum_i64(old, 1, INT32_MAX, &pid, &perr) == 0 &&
			    (pid_t)pid != getpid() &&
			    (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
				*error_r = daemon_error("pid file %s: already "
				    "running as pid %lld", path,
				    (long long)pid);
				return -1;
			}
		}
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    0644);
	if (fd < 0) {
		*error_r = daemon_error("pid file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	len = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (write(fd, line, (size_t)len) != len) {
		*error_r = daemon_error("pid file %s: write: %s", path,
		    strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

/* ---- time -------------------------------------------------------------- */

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- workers ----------------------------------------------------------- */

struct worker_slot {
	pid_t pid;		/* 0: not running */
	int64_t started_ms;	/* when the current/last one started */
	int64_t restart_ms;	/* when pid == 0: start at or after this */
	unsigned int delay_ms;	/* current restart delay (0: none) */
};

struct supervisor {
	const struct daemon_spec *spec;
	const struct daemon_listener *ls;
	size_t nls;
	struct worker_slot *slots;
	unsigned int nslots;
	sigset_t oldmask;
	pid_t parent;
};

static void
worker_signals_reset(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
}

/* In the child: drop, then run the worker; never returns. */
static void __attribute__((noreturn))
worker_run(struct supervisor *sv, unsigned int index)
{
	const char *user = sv->spec->user != NULL ? sv->spec->user :
	    PRIVSEP_DEFAULT_USER;
	const char *err = NULL;
	sigset_t empty;
	int rc;

	worker_signals_reset();
	/* SECURITY: no network byte is read before this succeeds. */
	if (privsep_drop(user, &err) < 0) {
		log_warnx("daemon: event=worker_privsep_failed worker=%u "
		    "user=%s error=%s", index, user, err);
		_exit(DAEMON_EXIT_FATAL);
	}
	/* After the drop: a credential change clears PDEATHSIG. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
		log_warn("daemon: prctl PR_SET_PDEATHSIG");
	if (getppid() != sv->parent)
		_exit(0);	/* the parent died before we got here */
	sigemptyset(&empty);
	sigprocmask(SIG_SETMASK, &empty, NULL);
	rc = sv->spec->worker_main(sv->ls, sv->nls, index, sv->spec->ctx);
	_exit(rc < 0 || rc > 255 ? 1 : rc);
}

static int
worker_start(struct supervisor *sv, unsigned int index)
{
	struct worker_slot *w = &sv->slots[index];
	pid_t pid;

	pid = fork();
	if (pid < 0) {
		log_warn("daemon: event=fork_failed worker=%u", index);
		return -1;
	}
	if (pid == 0)
		worker_run(sv, index);
	w->pid = pid;
	w->started_ms = now_ms();
	log_info("daemon: event=worker_start worker=%u pid=%ld", index,
	    (long)pid);
	return 0;
}

static void
status_text(int status, char *out, size_t outsz)
{
	if (WIFEXITED(status))
		snprintf(out, outsz, "exit=%d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, outsz, "signal=%d%s", WTERMSIG(status),
		    WCOREDUMP(status) ? " core=yes" : "");
	else
		snprintf(out, outsz, "status=0x%x", (unsigned int)status);
}

/*
 * Reap every dead child.  With stopping == 0, schedule restarts; sets
 * *fatal_r when a worker exited with DAEMON_EXIT_FATAL.
 */
static void
workers_reap(struct supervisor *sv, int stopping, int *fatal_r)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		unsigned int i;
		struct worker_slot *w = NULL;
		char st[48];
		int64_t now = now_ms(), uptime;

		for (i = 0; i < sv->nslots; i++)
			if (sv->slots[i].pid == pid) {
				w = &sv->slots[i];
				break;
			}
		if (w == NULL)
			continue;	/* not ours (a grandchild?) */
		w->pid = 0;
		status_text(status, st, sizeof(st));
		uptime = now - w->started_ms;
		if (stopping) {
			log_info("daemon: event=worker_exit worker=%u pid=%ld "
			    "%s", i, (long)pid, st);
			continue;
		}
		if (WIFEXITED(status) &&
		    WEXITSTATUS(status) == DAEMON_EXIT_FATAL) {
			log_warnx("daemon: event=worker_fatal worker=%u "
			    "pid=%ld %s", i, (long)pid, st);
			*fatal_r = 1;
			continue;
		}
		/* Crash-loop brake: quick deaths double the delay. */
		if (uptime >= (int64_t)DAEMON_RESTART_MIN_UPTIME * 1000) {
			w->delay_ms = 0;
		} else if (w->delay_ms == 0) {
			w->delay_ms = DAEMON_RESTART_DELAY_MIN_MS;
		} else {
			w->delay_ms *= 2;
			if (w->delay_ms > DAEMON_RESTART_DELAY_MAX_MS)
				w->delay_ms = DAEMON_RESTART_DELAY_MAX_MS;
		}
		w->restart_ms = now + w->delay_ms;
		log_warnx("daemon: event=worker_died worker=%u pid=%ld %s "
		    "uptime_ms=%lld restart_in_ms=%u", i, (long)pid, st,
		    (long long)uptime, w->delay_ms);
	}
}

static unsigned int
workers_running(const struct supervisor *sv)
{
	unsigned int i, n = 0;

	for (i = 0; i < sv->nslots; i++)
		if (sv->slots[i].pid > 0)
			n++;
	return n;
}

static void
workers_signal(struct supervisor *sv, int sig)
{
	unsigned int i;

	for (i = 0; i < sv->nslots; i++)
		if (sv->slots[i].pid > 0 && kill(sv->slots[i].pid, sig) < 0 &&
		    errno != ESRCH)
			log_warn("daemon: kill %ld", (long)sv->slots[i].pid);
}

/* Wait up to ms for a signal in set; returns it, or 0 on timeout. */
static int
signal_wait(const sigset_t *set, int64_t ms)
{
	struct timespec ts;
	siginfo_t info;
	int sig;

	if (ms < 0)
		ms = 0;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000;
	sig = sigtimedwait(set, &info, &ts);
	if (sig < 0)
		return 0;	/* EAGAIN (timeout) or EINTR */
	return sig;
}

/* SIGTERM, wait for the grace period, then SIGKILL what is left. */
static void
workers_stop(struct supervisor *sv, const sigset_t *set)
{
	unsigned int grace = sv->spec->grace_seconds != 0 ?
	    sv->spec->grace_seconds : DAEMON_GRACE_DEFAULT;
	int64_t deadline = now_ms() + (int64_t)grace * 1000;
	int fatal = 0;
	unsigned int i;

	workers_signal(sv, SIGTERM);
	workers_reap(sv, 1, &fatal);
	while (workers_running(sv) > 0 && now_ms() < deadline) {
		int64_t left = deadline - now_ms();

		signal_wait(set, left < DAEMON_WAIT_MAX_MS ? left :
		    DAEMON_WAIT_MAX_MS);
		workers_reap(sv, 1, &fatal);
	}
	if (workers_running(sv) == 0)
		return;
	log_warnx("daemon: event=workers_kill count=%u grace_s=%u",
	    workers_running(sv), grace);
	workers_signal(sv, SIGKILL);
	for (i = 0; i < sv->nslots; i++) {
		int status;

		if (sv->slots[i].pid <= 0)
			continue;
		while (waitpid(sv->slots[i].pid, &status, 0) < 0 &&
		    errno == EINTR)
			;
		sv->slots[i].pid = 0;
	}
}

static int
spec_check(const struct daemon_spec *spec, const char **error_r)
{
	if (spec == NULL || spec->worker_main == NULL) {
		*error_r = "daemon_run: worker_main is required";
		return -1;
	}
	if (spec->workers > DAEMON_WORKERS_MAX) {
		*error_r = daemon_error("daemon_run: more than %d workers",
		    DAEMON_WORKERS_MAX);
		return -1;
	}
	if (spec->user != NULL && (spec->user[0] == '\0' ||
	    strlen(spec->user) > PRIVSEP_USER_MAX)) {
		*error_r = "daemon_run: bad user name";
		return -1;
	}
	return 0;
}

int
daemon_run(const struct daemon_spec *spec, const char **error_r)
{
	struct supervisor sv;
	struct daemon_listener *ls = NULL;
	size_t nls = 0;
	sigset_t set;
	struct sigaction sa;
	const char *role;
	const char *pid_file;
	int fatal = 0, rc = 0;
	unsigned int i;

	if (spec_check(spec, error_r) < 0)
		return -1;
	role = spec->role != NULL ? spec->role : "govmail";
	pid_file = spec->pid_file != NULL && spec->pid_file[0] != '\0' ?
	    spec->pid_file : NULL;

	/* Signals are taken synchronously in the loop below. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	memset(&sv, 0, sizeof(sv));
	if (sigprocmask(SIG_BLOCK, &set, &sv.oldmask) < 0) {
		*error_r = daemon_error("sigprocmask: %s", strerror(errno));
		return -1;
	}
	/* Children must not be auto-reaped: we want their status. */
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	if (daemon_listeners_open(spec->listen, spec->nlisten, &ls, &nls,
	    error_r) < 0)
		goto restore;
	if (!spec->foreground) {
		if (daemon(0, 0) < 0) {
			*error_r = daemon_error("daemon: %s", strerror(errno));
			daemon_listeners_close(ls, nls);
			goto restore;
		}
		log_init(role, LOG_TO_SYSLOG, log_get_level());
	} else {
		log_init(role, LOG_TO_STDERR, log_get_level());
	}
	if (pid_file != NULL && pidfile_write(pid_file, error_r) < 0) {
		daemon_listeners_close(ls, nls);
		goto restore;
	}

	sv.spec = spec;
	sv.ls = ls;
	sv.nls = nls;
	sv.parent = getpid();
	sv.nslots = spec->workers != 0 ? spec->workers :
	    daemon_default_workers();
	sv.slots = xcalloc(sv.nslots, sizeof(*sv.slots));
	for (i = 0; i < nls; i++)
		log_info("daemon: event=listen kind=%s addr=%s", ls[i].kind,
		    ls[i].addr);
	log_info("daemon: event=start pid=%ld workers=%u", (long)sv.parent,
	    sv.nslots);
	/* Before the first fork: the workers count rate limits together. */
	{
		const char *rl_err = NULL;

		if (ratelimit_shared_init(&rl_err) < 0)
			log_warnx("daemon: event=ratelimit-private error=\"%s\""
			    " (rate limits counted per worker)", rl_err);
	}
	for (i = 0; i < sv.nslots; i++)
		if (worker_start(&sv, i) < 0)
			sv.slots[i].restart_ms = now_ms() +
			    DAEMON_RESTART_DELAY_MIN_MS;

	for (;;) {
		int64_t now = now_ms(), wait_ms = DAEMON_WAIT_MAX_MS;
		int sig;

		for (i = 0; i < sv.nslots; i++)
			if (sv.slots[i].pid == 0 &&
			    sv.slots[i].restart_ms - now < wait_ms)
				wait_ms = sv.slots[i].restart_ms - now;
		sig = signal_wait(&set, wait_ms);
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("daemon: event=stop signal=%d", sig);
			break;
		}
		if (sig == SIGHUP) {
			log_info("daemon: event=reload");
			workers_signal(&sv, SIGHUP);
		}
		workers_reap(&sv, 0, &fatal);
		if (fatal) {
			*error_r = "a worker cannot run (see the log)";
			rc = -1;
			break;
		}
		now = now_ms();
		for (i = 0; i < sv.nslots; i++)
			if (sv.slots[i].pid == 0 &&
			    sv.slots[i].restart_ms <= now &&
			    worker_start(&sv, i) < 0)
				sv.slots[i].restart_ms = now +
				    DAEMON_RESTART_DELAY_MIN_MS;
	}
	workers_stop(&sv, &set);
	log_info("daemon: event=stopped");
	free(sv.slots);
	daemon_listeners_close(ls, nls);
	if (pid_file != NULL)
		unlink(pid_file);
	sigprocmask(SIG_SETMASK, &sv.oldmask, NULL);
	return rc;
restore:
	sigprocmask(SIG_SETMASK, &sv.oldmask, NULL);
	return -1;
}
