/*
 * smtpd.c - govmail-smtpd: options, configuration, the root parent (via
 * lib/daemon) and the set-up of each worker process.
 *
 * The parent runs as root in production: it reads govmail.conf, builds
 * the TLS server context (the key may be readable by root only), binds
 * 25/587/465 and supervises the workers; it never reads a client byte.
 * Each worker (unprivileged, after privsep_drop) opens its own store
 * handle, starts its helper threads and runs a libevent loop of SMTP
 * sessions (smtp_session.c).  Trusts the configuration file; nothing from
 * the network is handled in this file.
 */
#include "autoconf.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "buf.h"
#include "conn.h"
#include "config.h"
#include "daemon.h"
#include "kv.h"
#include "log.h"
#include "mailbox.h"
#include "sasl.h"
#include "smtp_queue.h"
#include "smtpd.h"
#include "tls.h"
#include "tpool.h"
#include "xmalloc.h"

#define SMTPD_PROG "govmail-smtpd"

/* What the parent hands every worker through fork(). */
struct smtpd_main {
	struct config *cfg;
	SSL_CTX *tls;
	int debug;
};

struct smtpd_listener_ctx {
	struct smtpd *sd;
	enum smtp_kind kind;
	char addr[DAEMON_ADDR_MAX];
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: %s [-c FILE] [-f] [-d]\n"
	    "  -c FILE  configuration (else $GOVMAIL_CONF, else %s)\n"
	    "  -f       stay in the foreground, log to stderr\n"
	    "  -d       log at debug level (implies -f)\n"
	    "see govmail-smtpd(8)\n", SMTPD_PROG, CONFIG_DEFAULT_PATH);
}

static enum smtp_kind
kind_parse(const char *kind)
{
	if (strcmp(kind, "submission") == 0)
		return SMTP_KIND_SUBMISSION;
	if (strcmp(kind, "submissions") == 0)
		return SMTP_KIND_SUBMISSIONS;
	return SMTP_KIND_SMTP;
}

static void
on_accept(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	struct smtpd_listener_ctx *l = arg;

	smtp_session_accept(l->sd, l->kind, fd, sa, salen, l->addr);
}

static void
on_maintain_work(void *arg)
{
	struct smtpd *sd = arg;
	struct store *st = smtp_job_store(sd->cfg);
	const char *err = NULL;

	if (st != NULL && store_maintain(st, &err) < 0)
		log_warnx("smtpd: event=maintain-failed error=\"%s\"",
		    err != NULL ? err : "?");
}

static void
on_maintain_done(void *arg)
{
	struct smtpd *sd = arg;

	sd->maintaining = 0;
}

static void
on_maintain_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smtpd *sd = arg;
	const char *err;

	(void)fd;
	(void)what;
	if (sd->maintaining)
		return;
	if (tpool_submit(sd->pool, on_maintain_work, on_maintain_done, sd,
	    &err) == 0)
		sd->maintaining = 1;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct smtpd *sd = arg;

	(void)what;
	log_info("smtpd: event=worker-stop signal=%d", (int)sig);
	event_base_loopbreak(sd->base);
}

/* "official department" -> a mask of 1 << enum store_class. */
static int
rate_exempt_parse(const char *v, unsigned *mask_r)
{
	char word[SMTPD_CLASS_NAME_MAX + 1];
	enum store_class cls;
	size_t n;

	*mask_r = 0;
	while (*v != '\0') {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		for (n = 0; v[n] != '\0' && v[n] != ' ' && v[n] != '\t' &&
		    v[n] != ','; n++)
			;
		if (n == 0)
			break;
		if (n > SMTPD_CLASS_NAME_MAX)
			return -1;
		memcpy(word, v, n);
		word[n] = '\0';
		if (store_class_parse(word, &cls) != 0)
			return -1;
		*mask_r |= 1U << cls;
		v += n;
	}
	return 0;
}

static int
worker_main(const struct daemon_listener *listeners, size_t n,
    unsigned int index, void *ctx)
{
	struct smtpd_main *m = ctx;
	struct smtpd sd;
	struct smtpd_listener_ctx *lctx;
	struct conn_listener **ls;
	struct event *ev_term, *ev_int, *ev_maint;
	struct timeval tv = { SMTPD_MAINTAIN_SECONDS, 0 };
	const char *err = NULL;
	const char *hn;
	uint64_t threads;
	size_t i;

	memset(&sd, 0, sizeof(sd));
	sd.cfg = m->cfg;
	sd.tls = m->tls;
	sd.worker_index = index;
	if (sodium_init() < 0) {
		log_warnx("smtpd: libsodium failed");
		return DAEMON_EXIT_FATAL;
	}
	if (sasl_glue_init(&err) < 0) {
		log_warnx("smtpd: sasl: %s", err);
		return DAEMON_EXIT_FATAL;
	}
	hn = config_str(m->cfg, "smtpd", "hostname");
	if (hn[0] != '\0')
		str_copy(sd.hostname, sizeof(sd.hostname), hn);
	else if (gethostname(sd.hostname, sizeof(sd.hostname) - 1) < 0)
		str_copy(sd.hostname, sizeof(sd.hostname), "localhost");
	sd.message_max = config_size(m->cfg, "limits", "message_size");
	if (sd.message_max > STORE_MESSAGE_MAX)
		sd.message_max = STORE_MESSAGE_MAX;
	if (sd.message_max > 2 * SMTPD_TRACE_RESERVE)
		sd.message_max -= SMTPD_TRACE_RESERVE;
	else
		sd.message_max /= 2;
	sd.max_recipients = (unsigned)config_uint(m->cfg, "smtpd",
	    "max_recipients");
	if (sd.max_recipients == 0)
		sd.max_recipients = 1;
	sd.max_errors = (unsigned)config_uint(m->cfg, "smtpd", "max_errors");
	sd.command_timeout_ms = (uint32_t)(config_duration(m->cfg, "smtpd",
	    "command_timeout") * 1000);
	sd.session_timeout_ms = (uint32_t)(config_duration(m->cfg, "smtpd",
	    "session_timeout") * 1000);
	sd.plaintext_loopback = config_bool(m->cfg, "smtpd",
	    "plaintext_auth_loopback");
	sd.auth_rl = sasl_ratelimit_new((unsigned)config_uint(m->cfg,
	    "limits", "auth_failures"), (unsigned)config_duration(m->cfg,
	    "limits", "auth_failure_window"));
	sd.acct_rate = smtp_rate_new((unsigned)config_uint(m->cfg, "smtpd",
	    "rate_messages"), SMTPD_RATE_WINDOW);
	sd.ip_rate = smtp_rate_new((unsigned)config_uint(m->cfg, "smtpd",
	    "rate_ip_messages"), SMTPD_RATE_WINDOW);
	if (rate_exempt_parse(config_str(m->cfg, "smtpd",
	    "rate_exempt_classes"), &sd.rate_exempt) < 0) {
		log_warnx("smtpd: [smtpd] rate_exempt_classes: unknown class");
		return DAEMON_EXIT_FATAL;
	}

	if (store_open(m->cfg, 0, &sd.store, &err) < 0) {
		log_warnx("smtpd: store: %s", err != NULL ? err : "?");
		return 1;	/* restarted with a delay: may be transient */
	}
	if (smtp_queue_open(m->cfg, &sd.queue, &err) < 0) {
		log_warnx("smtpd: event=queue-unavailable error=\"%s\" "
		    "(no relay for authenticated users)", err);
		sd.queue = NULL;
	}
	sd.base = event_base_new();
	if (sd.base == NULL) {
		log_warnx("smtpd: event_base_new failed");
		return 1;
	}
	threads = config_uint(m->cfg, "smtpd", "threads");
	if (threads == 0 || threads > SMTPD_THREADS_MAX)
		threads = threads == 0 ? 1 : SMTPD_THREADS_MAX;
	sd.pool = tpool_new(sd.base, (unsigned)threads, 0, &err);
	if (sd.pool == NULL) {
		log_warnx("smtpd: %s", err);
		return 1;
	}
	lctx = xcalloc(n, sizeof(*lctx));
	ls = xcalloc(n, sizeof(*ls));
	for (i = 0; i < n; i++) {
		lctx[i].sd = &sd;
		lctx[i].kind = kind_parse(listeners[i].kind);
		str_copy(lctx[i].addr, sizeof(lctx[i].addr),
		    listeners[i].addr);
		ls[i] = conn_listener_new(sd.base, listeners[i].fd, on_accept,
		    &lctx[i]);
	}
	if (index == 0 && sd.queue != NULL)
		sd.agent = smtp_agent_new(&sd, sd.queue);
	ev_term = evsignal_new(sd.base, SIGTERM, on_signal, &sd);
	ev_int = evsignal_new(sd.base, SIGINT, on_signal, &sd);
	ev_maint = event_new(sd.base, -1, EV_PERSIST, on_maintain_timer, &sd);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	event_add(ev_maint, &tv);
	log_info("smtpd: event=worker-start index=%u listeners=%zu", index, n);

	event_base_dispatch(sd.base);

	/*
	 * Sessions still open are simply dropped with the process: nothing
	 * was acknowledged that is not already durable.  The listeners'
	 * sockets belong to the parent's array (daemon.h), so they are not
	 * freed here.
	 */
	tpool_free(sd.pool);
	if (sd.queue != NULL)
		smtp_queue_close(sd.queue);
	store_close(sd.store);
	fflush(stderr);
	return 0;
}

/* "host:port", "[v6]:port" or "*:port" -> daemon_listen. */
static int
listen_parse(const char *spec, const char *kind, struct daemon_listen *l,
    char **hostbuf, const char **error_r)
{
	const char *colon = strrchr(spec, ':');
	char *host;

	if (colon == NULL || colon[1] == '\0') {
		*error_r = "listen address must be HOST:PORT";
		return -1;
	}
	host = xstrndup(spec, (size_t)(colon - spec));
	if (host[0] == '[') {
		size_t hl = strlen(host);

		if (hl < 2 || host[hl - 1] != ']') {
			free(host);
			*error_r = "bad [IPv6] listen address";
			return -1;
		}
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	l->kind = kind;
	l->host = (strcmp(host, "*") == 0 || host[0] == '\0') ? NULL : host;
	l->port = colon + 1;
	*hostbuf = host;
	return 0;
}

int
main(int argc, char **argv)
{
	static const char *const keys[] = { "listen_smtp", "listen_submission",
	    "listen_submissions" };
	static const char *const kinds[] = { "smtp", "submission",
	    "submissions" };
	struct daemon_listen listen[3 * SMTPD_LISTEN_PER_KEY];
	char *hosts[3 * SMTPD_LISTEN_PER_KEY];
	char *specs[3] = { NULL, NULL, NULL };
	struct daemon_spec spec;
	struct smtpd_main m;
	struct tls_settings ts;
	const char *cpath = NULL, *err = NULL, *user;
	enum log_level lvl = LOG_LEVEL_INFO;
	size_t nlisten = 0, i;
	int ch, foreground = 0, debug = 0, need_tls = 0, r;

	while ((ch = getopt(argc, argv, "c:fdh")) != -1) {
		switch (ch) {
		case 'c':
			cpath = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'd':
			debug = 1;
			foreground = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 64;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 64;
	}
	log_init(SMTPD_PROG, LOG_TO_STDERR, LOG_LEVEL_INFO);
	if (sodium_init() < 0)
		log_fatalx("libsodium failed to initialise");
	memset(&m, 0, sizeof(m));
	if (config_load(config_path(cpath), &m.cfg, &err) < 0) {
		fprintf(stderr, "%s: %s\n", SMTPD_PROG, err);
		return 78;
	}
	if (log_level_parse(config_str(m.cfg, "store", "log_level"), &lvl) < 0)
		lvl = LOG_LEVEL_INFO;
	if (debug)
		lvl = LOG_LEVEL_DEBUG;
	log_init(SMTPD_PROG, foreground ? LOG_TO_STDERR : LOG_TO_SYSLOG, lvl);
	if (smtp_notice_config_check(m.cfg, &err) < 0) {
		fprintf(stderr, "%s: %s\n", SMTPD_PROG, err);
		r = 78;
		goto out;
	}

	for (i = 0; i < 3; i++) {
		char *save, *tok, *p;

		specs[i] = xstrdup(config_str(m.cfg, "smtpd", keys[i]));
		/* Space- or comma-separated addresses; "" turns it off. */
		for (p = specs[i]; *p != '\0'; p++)
			if (*p == ',')
				*p = ' ';
		save = specs[i];
		while ((tok = save) != NULL) {
			char *sp;

			while (*tok == ' ')
				tok++;
			if (*tok == '\0')
				break;
			sp = strchr(tok, ' ');
			if (sp != NULL) {
				*sp = '\0';
				save = sp + 1;
			} else
				save = NULL;
			if (nlisten >= 3 * SMTPD_LISTEN_PER_KEY) {
				fprintf(stderr, "%s: too many listen "
				    "addresses\n", SMTPD_PROG);
				r = 78;
				goto out;
			}
			if (listen_parse(tok, kinds[i], &listen[nlisten],
			    &hosts[nlisten], &err) < 0) {
				fprintf(stderr, "%s: [smtpd] %s: %s\n",
				    SMTPD_PROG, keys[i], err);
				r = 78;
				goto out;
			}
			nlisten++;
			if (i == 2)
				need_tls = 1;
		}
	}
	if (nlisten == 0) {
		fprintf(stderr, "%s: no [smtpd] listen address\n", SMTPD_PROG);
		r = 78;
		goto out;
	}

	tls_settings_from_config(m.cfg, &ts);
	if (ts.cert_file != NULL && ts.cert_file[0] != '\0') {
		if (tls_server_ctx_new(&ts, &m.tls, &err) < 0) {
			fprintf(stderr, "%s: %s\n", SMTPD_PROG, err);
			r = 78;
			goto out;
		}
	} else if (need_tls) {
		fprintf(stderr, "%s: listen_submissions needs [tls] cert_file "
		    "and key_file\n", SMTPD_PROG);
		r = 78;
		goto out;
	}

	user = config_str(m.cfg, "smtpd", "user");
	memset(&spec, 0, sizeof(spec));
	spec.role = SMTPD_PROG;
	spec.listen = listen;
	spec.nlisten = nlisten;
	spec.workers = (unsigned)config_uint(m.cfg, "smtpd", "workers");
	spec.user = user[0] != '\0' ? user : NULL;
	spec.pid_file = config_path_get(m.cfg, "smtpd", "pid_file");
	spec.foreground = foreground;
	spec.worker_main = worker_main;
	spec.ctx = &m;
	m.debug = debug;
	r = daemon_run(&spec, &err);
	if (r < 0)
		fprintf(stderr, "%s: %s\n", SMTPD_PROG, err);
	r = r < 0 ? 1 : 0;
out:
	/* Configuration errors (exit 78) leave through here too. */
	for (i = 0; i < nlisten; i++)
		free(hosts[i]);
	for (i = 0; i < 3; i++)
		free(specs[i]);
	if (m.tls != NULL)
		SSL_CTX_free(m.tls);
	config_free(m.cfg);
	return r;
}
