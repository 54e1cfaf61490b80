/*
 * daemon.h - the daemons' process model: a parent that binds the ports and
 * supervises a fixed pool of unprivileged worker processes (DESIGN.md 3;
 * after OpenSMTPD's smtpd.c start_child).
 *
 * govmail-smtpd and govmail-imapd main() parse options and configuration,
 * fill a struct daemon_spec and call daemon_run().  The parent (root in
 * production, any user in development mode):
 *
 *   1. binds every listed address (IPv4 and IPv6, SO_REUSEADDR, IPv6
 *      sockets IPV6_V6ONLY, non-blocking, close-on-exec, tagged with a kind
 *      such as "smtp", "submission", "submissions", "imap", "imaps");
 *   2. daemonises unless spec->foreground (logs then go to syslog; in the
 *      foreground to stderr) and writes the pid file if one is named;
 *   3. forks spec->workers workers (default: one per online CPU).  Each
 *      worker resets its signals, calls privsep_drop(spec->user) before it
 *      touches a socket, arranges to get SIGTERM if the parent dies, and
 *      runs spec->worker_main() with the shared listening sockets: every
 *      worker accepts on every listener itself (the sockets are
 *      non-blocking, so the kernel spreads connections and a worker that
 *      loses a race just sees EAGAIN);
 *   4. waits: a worker that dies is logged with its exit status or signal
 *      and restarted -- at once if it had run for DAEMON_RESTART_MIN_UPTIME
 *      seconds, else after a delay that doubles with each quick death, from
 *      DAEMON_RESTART_DELAY_MIN_MS up to DAEMON_RESTART_DELAY_MAX_MS, so a
 *      crash loop does not spin.  A worker that exits with
 *      DAEMON_EXIT_FATAL (it cannot work at all: privsep failed, bad
 *      configuration) stops the whole daemon instead.
 *      SIGHUP is forwarded to every worker (reload).  SIGTERM or SIGINT
 *      stops the daemon: every worker gets SIGTERM, and SIGKILL after
 *      spec->grace_seconds if it has not exited; then the pid file is
 *      removed and daemon_run() returns.
 *
 * The parent never accepts a connection and never reads a client byte.
 *
 * What belongs before daemon_run(), in main(): reading the configuration,
 * anything that needs root and no client input -- building the SSL_CTX
 * (the key file may be readable by root only), sasl_glue_init() -- all of
 * which the workers inherit through fork().  What belongs in worker_main:
 * everything per process that must not be shared across fork() --
 * opening the store (a Berkeley DB environment handle is per process),
 * the libevent base, helper threads.  Paths must be absolute (the
 * configuration makes them so): a detached daemon runs in "/".
 *
 * Typical use (smtpd):
 *
 *	struct daemon_listen l[] = {
 *		{ "smtp", "127.0.0.1", "2525" },
 *		{ "submission", "127.0.0.1", "2587" },
 *		{ "submissions", "127.0.0.1", "2465" },
 *	};
 *	struct daemon_spec spec = {
 *		.role = "govmail-smtpd", .listen = l, .nlisten = 3,
 *		.foreground = fflag, .pid_file = pid_path,
 *		.worker_main = smtp_worker_main, .ctx = &server,
 *	};
 *	if (daemon_run(&spec, &err) < 0)
 *		log_fatalx("smtpd: %s", err);
 */
#ifndef GOVMAIL_DAEMON_H
#define GOVMAIL_DAEMON_H

#include <stddef.h>

/* Most addresses one daemon listens on. */
#define DAEMON_LISTENERS_MAX 32
/* Most worker processes. */
#define DAEMON_WORKERS_MAX 256
/* Longest kind tag ("submissions"), bytes. */
#define DAEMON_KIND_MAX 32
/* listen(2) backlog. */
#define DAEMON_BACKLOG 511
/* Seconds between SIGTERM and SIGKILL at shutdown, unless the spec says. */
#define DAEMON_GRACE_DEFAULT 10
/* A worker that ran at least this long (seconds) is restarted at once. */
#define DAEMON_RESTART_MIN_UPTIME 1
/* Restart delay after the first quick death, and its ceiling (ms). */
#define DAEMON_RESTART_DELAY_MIN_MS 250
#define DAEMON_RESTART_DELAY_MAX_MS 30000
/*
 * Exit status of a worker that can never work (sysexits' EX_CONFIG): the
 * parent stops every worker and daemon_run() fails instead of restarting.
 */
#define DAEMON_EXIT_FATAL 78
/* Longest printable "ip;port" (Cyrus SASL's syntax, IPv6 unbracketed). */
#define DAEMON_ADDR_MAX 64

/* One address to listen on, as configured. */
struct daemon_listen {
	const char *kind;	/* tag, 1..DAEMON_KIND_MAX bytes: "smtp" ... */
	const char *host;	/* numeric IPv4/IPv6, or NULL / "*": all */
	const char *port;	/* numeric port, "2525" */
};

/*
 * One bound, listening, non-blocking socket, as a worker gets it.  A
 * wildcard host gives two listeners (IPv4 and IPv6) of the same kind.
 */
struct daemon_listener {
	int fd;
	char kind[DAEMON_KIND_MAX + 1];
	char addr[DAEMON_ADDR_MAX];	/* bound address, "127.0.0.1;2525" */
};

struct daemon_spec {
	const char *role;	/* log prefix, "govmail-smtpd" */
	const struct daemon_listen *listen;
	size_t nlisten;		/* 1..DAEMON_LISTENERS_MAX */
	unsigned int workers;	/* 0: online CPUs; at most WORKERS_MAX */
	/* privsep_drop() target in the workers; NULL: PRIVSEP_DEFAULT_USER */
	const char *user;
	const char *pid_file;	/* NULL or "": none */
	/*
	 * 1: stay attached to the terminal, log to stderr (-f).  0: detach
	 * (fork, setsid, chdir /, stdio to /dev/null) and log to syslog.
	 */
	int foreground;
	unsigned int grace_seconds;	/* 0: DAEMON_GRACE_DEFAULT */
	/*
	 * The worker.  Runs in the child, after privsep_drop(), with SIGTERM
	 * and SIGINT at their default action (it may install handlers, e.g.
	 * libevent's, to stop gracefully), SIGHUP ignored unless it installs
	 * a handler, SIGPIPE ignored, and the signal mask cleared.  listeners
	 * (n of them) stay valid for the life of the process; the worker must
	 * not close them.  index is 0..workers-1, stable across restarts of
	 * the same slot.  Its return value is the exit status: 0 normal (the
	 * parent still restarts it unless it is stopping), DAEMON_EXIT_FATAL
	 * to stop the daemon, anything else a failure (restarted).  The
	 * worker ends with _exit(): the parent's atexit handlers do not run
	 * and stdio buffers are not flushed, so flush what it wrote.
	 */
	int (*worker_main)(const struct daemon_listener *listeners, size_t n,
	    unsigned int index, void *ctx);
	void *ctx;
};

/*
 * Bind every address of spec->listen.  Returns 0 and a fresh array
 * (*listeners_r, *n_r; free with daemon_listeners_close()), or -1 with
 * *error_r (valid until the next call) naming the address and errno.
 * Nothing stays bound on failure.  daemon_run() calls this itself; it is
 * public for tools and tests.
 */
int daemon_listeners_open(const struct daemon_listen *listen, size_t nlisten,
    struct daemon_listener **listeners_r, size_t *n_r, const char **error_r);
void daemon_listeners_close(struct daemon_listener *listeners, size_t n);

/*
 * Run the parent as described above.  Blocks until SIGTERM/SIGINT (or a
 * DAEMON_EXIT_FATAL worker).  Returns 0 after a clean stop, or -1 with
 * *error_r (static or internal-buffer text, valid until the next call) if
 * start-up failed (bad spec, bind, pid file, fork) or a worker was fatal.
 * Call it at most once per process; it installs and restores its own
 * signal mask for SIGCHLD, SIGTERM, SIGINT and SIGHUP.  In a daemonised
 * run the process that returns is the detached child.
 */
int daemon_run(const struct daemon_spec *spec, const char **error_r);

/* Number of online CPUs (1 if unknown), capped at DAEMON_WORKERS_MAX. */
unsigned int daemon_default_workers(void);

#endif
