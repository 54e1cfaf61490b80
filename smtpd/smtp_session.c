/*
 * smtp_session.c - one SMTP session on a worker's event loop: accepting
 * it, reading commands, the command table, EHLO, STARTTLS, MAIL and RCPT
 * (relay and submission policy); AUTH is in smtp_auth.c, DATA, BDAT and
 * delivery in smtp_data.c.
 *
 * govmail-smtpd workers, loop thread.  Everything a client sends is
 * hostile: lines are bounded by lib/conn (SMTP_AUTH_LINE_MAX) and then by
 * SMTP_CMD_LINE_MAX; DATA is read by smtp_data_feed (a bare CR or LF ends
 * the session); sizes are enforced as bytes arrive.  Following OpenSMTPD,
 * a table says for each command which state it needs (the check) and a
 * handler does it; a command refused by the check never reaches its
 * handler.  Slow work (Argon2id behind SASL, store_deliver) runs on the
 * helper threads; the session is "busy" meanwhile: its input is paused
 * and pipelined commands wait in the buffer.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "log.h"
#include "mailbox.h"
#include "sasl.h"
#include "smtp_queue.h"
#include "smtp_session.h"
#include "smtpd.h"
#include "strnum.h"
#include "tpool.h"
#include "xmalloc.h"

static void session_on_input(struct conn *c, void *arg);
static void session_on_timeout(struct conn *c, enum conn_close_reason why,
    void *arg);
static void session_on_close(struct conn *c, enum conn_close_reason why,
    void *arg);
static void session_on_tls(struct conn *c, void *arg);

static const struct conn_callbacks session_callbacks = {
	.on_input = session_on_input,
	.on_tls = session_on_tls,
	.on_timeout = session_on_timeout,
	.on_close = session_on_close,
};

/* ---- small helpers ---- */

void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_REPLY_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	(void)conn_write(s->c, line, (size_t)n);
}

/* A refused command: count it; too many closes the session. */
void
smtp_error_reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_REPLY_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	s->errors++;
	if (s->sd->max_errors > 0 && s->errors > s->sd->max_errors) {
		smtp_reply(s, "421 4.7.0 %s Too many errors, closing",
		    s->sd->hostname);
		log_info("smtpd: s=%s event=too-many-errors ip=%s", s->id,
		    s->ip);
		conn_close(s->c);
		return;
	}
	smtp_reply(s, "%s", line);
}

/* Escape client text for a reply or a log line. */
const char *
smtp_esc(const void *p, size_t len, char *out, size_t outsz)
{
	return log_escape(p, len, out, outsz);
}

int64_t
smtp_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

void
smtp_transaction_reset(struct smtp_session *s)
{
	size_t i;

	s->in_mail = 0;
	memset(&s->from, 0, sizeof(s->from));
	memset(&s->mp, 0, sizeof(s->mp));
	s->nrcpt = 0;
	s->first_rcpt[0] = '\0';
	for (i = 0; i < s->nlocal; i++)
		free(s->local[i]);
	s->nlocal = 0;
	for (i = 0; i < s->nremote; i++)
		free(s->remote[i]);
	s->nremote = 0;
	buf_free(&s->msg);
	s->trace_len = 0;
	s->bdat_left = 0;
	s->bdat_last = 0;
	s->bdat_active = 0;
	s->bdat_refused = 0;
	s->bdat_size = 0;
	s->notice = 0;
	s->notice_list[0] = '\0';
	smtp_dsn_env_free(s->dsn);
	s->dsn = NULL;
}

/* An authenticated account of a class in rate_exempt_classes. */
static int
rate_exempt(const struct smtp_session *s)
{
	return s->user != NULL && s->user_class > 0 && s->user_class < 32 &&
	    (s->sd->rate_exempt & (1U << s->user_class)) != 0;
}

/*
 * Duplicates are removed once, when the message is handed to delivery
 * (smtp_data.c sorts the lists): a list of 100,000 members is not compared
 * with itself here, in the event loop, one address at a time.
 */
static void
addr_add(char ***list, size_t *n, size_t *alloc, const char *addr)
{
	if (*n == *alloc) {
		*alloc = *alloc ? *alloc * 2 : 8;
		*list = xreallocarray(*list, *alloc, sizeof(**list));
	}
	(*list)[(*n)++] = xstrdup(addr);
}

static void
local_add(struct smtp_session *s, const char *addr)
{
	addr_add(&s->local, &s->nlocal, &s->alloc_local, addr);
}

static void
remote_add(struct smtp_session *s, const char *addr)
{
	addr_add(&s->remote, &s->nremote, &s->alloc_remote, addr);
}

void
smtp_session_busy(struct smtp_session *s, struct smtp_job *job)
{
	s->busy = 1;
	s->job = job;
	conn_pause_input(s->c);
}

void
smtp_session_idle(struct smtp_session *s)
{
	s->busy = 0;
	s->job = NULL;
	if (!conn_closing(s->c))
		conn_resume_input(s->c);
}

void
smtp_job_free(struct smtp_job *job)
{
	size_t i;

	if (job == NULL)
		return;
	buf_free(&job->resp);
	free(job->challenge);
	free(job->msg);
	for (i = 0; i < job->nrcpts; i++)
		free(job->rcpts[i]);
	free(job->rcpts);
	for (i = 0; i < job->nremote; i++)
		free(job->remote[i]);
	free(job->remote);
	free(job->sender);
	free(job->results);
	free(job->notice_list);
	free(job->lmsg);
	smtp_dsn_env_free(job->dsn);
	if (job->rcpt != NULL) {
		store_rcpt_set_free(&job->rcpt->set);
		free(job->rcpt);
	}
	if (job->s == NULL && job->sasl != NULL)
		sasl_session_free(job->sasl);
	free(job);
}

/* ---- EHLO ---- */

int
smtp_auth_offered(const struct smtp_session *s)
{
	if (s->user != NULL)
		return 0;
	/* SECURITY: never plaintext passwords without TLS. */
	return conn_is_tls(s->c) ||
	    (s->sd->plaintext_loopback && s->loopback);
}

static int
helo_name_ok(const char *arg)
{
	size_t i, len = strlen(arg);

	if (len == 0 || len > SMTP_HELO_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (arg[i] <= ' ' || arg[i] > '~')
			return 0;
	return 1;
}

static void
cmd_helo(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	if (!helo_name_ok(arg)) {
		smtp_error_reply(s, "501 5.5.4 Syntax: %s hostname",
		    cmd == SMTP_CMD_EHLO ? "EHLO" : "HELO");
		return;
	}
	smtp_transaction_reset(s);
	str_copy(s->helo_name, sizeof(s->helo_name), arg);
	s->helo = cmd == SMTP_CMD_EHLO ? 2 : 1;
	if (cmd == SMTP_CMD_HELO) {
		smtp_reply(s, "250 %s", s->sd->hostname);
		return;
	}
	smtp_reply(s, "250-%s Hello", s->sd->hostname);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %llu", (unsigned long long)s->sd->message_max);
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-SMTPUTF8");
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_reply(s, "250-CHUNKING");
	smtp_reply(s, "250-DSN");
	if (!conn_is_tls(s->c) && s->sd->tls != NULL)
		smtp_reply(s, "250-STARTTLS");
	if (smtp_auth_offered(s) && sasl_glue_mechs()[0] != '\0')
		smtp_reply(s, "250-AUTH %s", sasl_glue_mechs());
	smtp_reply(s, "250 HELP");
}

/* ---- STARTTLS ---- */

static void
cmd_starttls(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	const char *err = NULL;
	size_t dropped = 0;

	(void)cmd;
	if (arg[0] != '\0') {
		smtp_error_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (conn_is_tls(s->c)) {
		smtp_error_reply(s, "503 5.5.1 TLS already active");
		return;
	}
	if (s->sd->tls == NULL) {
		smtp_error_reply(s, "454 4.7.0 TLS not available");
		return;
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	/* SECURITY (CVE-2011-0411): conn drops what was pipelined. */
	if (conn_starttls(s->c, s->sd->tls, &dropped, &err) < 0) {
		log_warnx("smtpd: s=%s event=starttls-failed error=\"%s\"",
		    s->id, err);
		conn_abort(s->c);
		return;
	}
	if (dropped > 0)
		log_info("smtpd: s=%s event=starttls-discarded bytes=%zu",
		    s->id, dropped);
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	smtp_transaction_reset(s);
	s->helo = 0;
	s->helo_name[0] = '\0';
}

/* ---- MAIL, RCPT ---- */

static const char *
path_error_code(enum smtp_path_error e, int is_rcpt)
{
	switch (e) {
	case SMTP_PATH_ROUTE:
	case SMTP_PATH_RELAY_HACK:
	case SMTP_PATH_LITERAL:
		return "553 5.7.1";
	case SMTP_PATH_QUOTED:
		return "553 5.1.3";
	case SMTP_PATH_UTF8:
		return "553 5.6.7";
	case SMTP_PATH_PARAM:
		return "555 5.5.4";
	case SMTP_PATH_DSN:
		return "501 5.5.4";
	default:
		return is_rcpt ? "501 5.1.3" : "501 5.1.7";
	}
}

/* Local part comparison: ASCII case-insensitive (mailbox.h). */
static int
addr_equal(const char *a, const char *b)
{
	return str_casecmp(a, b) == 0;
}

/*
 * May the authenticated user send as addr?  Itself; an alias that
 * delivers to it; a list it may post to.  1 yes, 0 no, -1 store error.
 */
int
smtp_sender_allowed(struct smtp_session *s, const char *addr)
{
	struct store_rcpt_set set;
	size_t i;
	int r, ok = 0;

	if (addr_equal(addr, s->user))
		return 1;
	r = store_resolve(s->sd->store, addr, s->user, &set, NULL);
	if (r == STORE_ETEMP)
		return -1;
	if (r < 0)
		return 0;
	if (set.kind == STORE_ADDR_LIST)
		ok = 1;		/* store_resolve checked the posters */
	else if (set.kind == STORE_ADDR_ALIAS)
		for (i = 0; i < set.nlocal; i++)
			if (addr_equal(set.local[i], s->user))
				ok = 1;
	store_rcpt_set_free(&set);
	return ok;
}

static void
cmd_mail(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	const char *what = NULL;
	enum smtp_path_error e;
	int r;

	(void)cmd;
	if (s->kind != SMTP_KIND_SMTP && s->user == NULL) {
		smtp_error_reply(s, "530 5.7.0 Authentication required");
		return;
	}
	e = smtp_path_parse(arg, 0, 0, &s->from, &s->mp, NULL, &what);
	if (e != SMTP_PATH_OK) {
		smtp_error_reply(s, "%s %s", path_error_code(e, 0), what);
		return;
	}
	if (s->mp.smtputf8 && s->helo != 2) {
		smtp_error_reply(s, "503 5.5.1 SMTPUTF8 needs EHLO");
		return;
	}
	if (s->mp.has_size && s->mp.size > s->sd->message_max) {
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (s->user != NULL) {
		if (s->from.null) {
			smtp_error_reply(s, "553 5.7.1 Null sender not allowed "
			    "in a submission");
			return;
		}
		r = smtp_sender_allowed(s, s->from.addr);
		if (r < 0) {
			smtp_reply(s, "451 4.3.0 Temporary failure, try again "
			    "later");
			return;
		}
		if (r == 0) {
			log_info("smtpd: s=%s event=sender-refused ip=%s",
			    s->id, s->ip);
			smtp_error_reply(s,
			    "553 5.7.1 Sender address not owned "
			    "by the authenticated user");
			return;
		}
		if (!rate_exempt(s) &&
		    !smtp_rate_hit(s->sd->acct_rate, s->user, smtp_now())) {
			log_info("smtpd: s=%s event=rate-limited what=account",
			    s->id);
			smtp_reply(s,
			    "450 4.7.1 Message rate limit exceeded for "
			    "this account, try again later");
			return;
		}
	}
	if (!rate_exempt(s) &&
	    !smtp_rate_hit(s->sd->ip_rate, s->ip, smtp_now())) {
		log_info("smtpd: s=%s event=rate-limited what=ip ip=%s", s->id,
		    s->ip);
		smtp_reply(s, "450 4.7.1 Message rate limit exceeded for this "
		    "address, try again later");
		return;
	}
	s->in_mail = 1;
	smtp_reply(s, "250 2.1.0 Ok");
}

static void rcpt_resolve_async(struct smtp_session *,
    const struct smtp_path *, const struct smtp_rcpt_params *);
static void rcpt_resolved(struct smtp_session *, const struct smtp_path *,
    const struct smtp_rcpt_params *, int, struct store_rcpt_set *);

static void
cmd_rcpt(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	struct smtp_path path;
	struct smtp_rcpt_params rp;
	struct store_rcpt_set set;
	char ebuf[SMTP_PATH_MAX * LOG_ESCAPE_WIDTH + 1];
	const char *what = NULL;
	enum smtp_path_error e;
	int r, dom = 1;

	(void)cmd;
	e = smtp_path_parse(arg, 1, s->mp.smtputf8, &path, NULL, &rp, &what);
	if (e != SMTP_PATH_OK) {
		smtp_error_reply(s, "%s %s", path_error_code(e, 1), what);
		return;
	}
	if (s->nrcpt >= s->sd->max_recipients) {
		smtp_reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (path.domain[0] == '\0') {
		/* <Postmaster>: the postmaster of our own host name. */
		str_copy(path.domain, sizeof(path.domain), s->sd->hostname);
		str_copy(path.addr, sizeof(path.addr), "postmaster@");
		if (str_append(path.addr, sizeof(path.addr),
		    s->sd->hostname) < 0) {
			smtp_error_reply(s, "550 5.1.1 No such user");
			return;
		}
	}
	smtp_esc(path.addr, strlen(path.addr), ebuf, sizeof(ebuf));
	/*
	 * An account, or an address that is nothing local, is resolved
	 * here; a list (it may expand to every account of a class) or an
	 * alias on a helper thread, the session paused.  Whatever resolves
	 * is in one of our domains (the store adds nothing elsewhere), so
	 * only an address that does not resolve needs the domain looked up.
	 */
	r = store_resolve_account(s->sd->store, path.addr, &set, NULL);
	if (r == 1) {
		rcpt_resolve_async(s, &path, &rp);
		return;
	}
	if (r == STORE_ENOTFOUND || r == STORE_EINVAL)
		dom = store_domain_exists(s->sd->store, path.domain);
	if (dom < 0) {
		smtp_reply(s, "451 4.3.0 Temporary failure, try again later");
		return;
	}
	if (dom == 0) {
		/*
		 * SECURITY: not an open relay.  Outbound relay for
		 * authenticated users needs the delivery queue.
		 */
		if (s->user != NULL && s->sd->queue != NULL) {
			/* Authenticated: relayed through the queue. */
			char *target = path.addr;

			remote_add(s, path.addr);
			smtp_dsn_env_note(&s->dsn, path.addr, &rp, 0, &target,
			    1);
			if (s->nrcpt == 0)
				str_copy(s->first_rcpt, sizeof(s->first_rcpt),
				    path.addr);
			s->nrcpt++;
			smtp_reply(s, "250 2.1.5 Ok");
			return;
		}
		log_info("smtpd: s=%s event=relay-denied ip=%s rcpt=%s",
		    s->id, s->ip, ebuf);
		if (s->user != NULL)
			smtp_error_reply(s,
			    "550 5.7.1 Relaying to other domains "
			    "is not available");
		else
			smtp_error_reply(s, "554 5.7.1 Relay access denied");
		return;
	}
	rcpt_resolved(s, &path, &rp, r, &set);
}

static void
rcpt_resolve_work(void *arg)
{
	struct smtp_job *job = arg;
	struct smtp_rcpt_pending *p = job->rcpt;
	struct store *st = smtp_job_store(job->cfg);

	p->r = st == NULL ? STORE_ETEMP : store_resolve(st, p->path.addr,
	    p->sender[0] != '\0' ? p->sender : NULL, &p->set, NULL);
}

static void
rcpt_resolve_done(void *arg)
{
	struct smtp_job *job = arg;
	struct smtp_session *s = job->s;
	struct smtp_rcpt_pending *p = job->rcpt;

	if (s != NULL) {
		/* rcpt_resolved owns the set now. */
		rcpt_resolved(s, &p->path, &p->rp, p->r, &p->set);
		memset(&p->set, 0, sizeof(p->set));
	}
	smtp_job_free(job);
	if (s != NULL)
		smtp_session_idle(s);
}

static void
rcpt_resolve_async(struct smtp_session *s, const struct smtp_path *path,
    const struct smtp_rcpt_params *rp)
{
	struct smtp_job *job;
	const char *sender, *err = NULL;

	job = xcalloc(1, sizeof(*job));
	job->kind = SMTP_JOB_RESOLVE;
	job->s = s;
	job->cfg = s->sd->cfg;
	job->rcpt = xcalloc(1, sizeof(*job->rcpt));
	job->rcpt->path = *path;
	job->rcpt->rp = *rp;
	sender = s->user != NULL ? s->user :
	    (s->from.null ? NULL : s->from.addr);
	if (sender != NULL)
		(void)str_copy(job->rcpt->sender, sizeof(job->rcpt->sender),
		    sender);
	if (tpool_submit(s->sd->pool, rcpt_resolve_work, rcpt_resolve_done,
	    job, &err) < 0) {
		smtp_job_free(job);
		smtp_reply(s, "451 4.3.0 Server busy, try again later");
		return;
	}
	smtp_session_busy(s, job);
}

/* The rest of RCPT, once the address is resolved (r, set: store_resolve). */
static void
rcpt_resolved(struct smtp_session *s, const struct smtp_path *path,
    const struct smtp_rcpt_params *rpp, int r, struct store_rcpt_set *setp)
{
	struct smtp_rcpt_params rp = *rpp;
	struct store_rcpt_set set = *setp;
	char ebuf[SMTP_PATH_MAX * LOG_ESCAPE_WIDTH + 1];
	size_t i;

	smtp_esc(path->addr, strlen(path->addr), ebuf, sizeof(ebuf));
	if (r == STORE_ENOTFOUND || r == STORE_EINVAL) {
		smtp_error_reply(s, "550 5.1.1 Recipient address rejected: "
		    "no such user");
		return;
	}
	if (r == STORE_EPERM) {
		smtp_error_reply(s,
		    "550 5.7.1 Sender is not allowed to post to "
		    "this list");
		return;
	}
	if (r < 0) {
		smtp_reply(s, "451 4.3.0 Temporary failure, try again later");
		return;
	}
	if (set.nlocal == 0 && (set.nremote == 0 || s->sd->queue == NULL)) {
		store_rcpt_set_free(&set);
		smtp_error_reply(s, "550 5.1.1 Recipient address rejected: "
		    "no local mailbox");
		return;
	}
	if (set.kind == STORE_ADDR_ACCOUNT) {
		/* The quota and usage came with the account (one lookup). */
		int full = (set.quota_bytes > 0 &&
		    set.used_bytes >= set.quota_bytes) ||
		    (set.quota_messages > 0 &&
		    set.used_messages >= set.quota_messages);
		int never = s->mp.has_size && set.quota_bytes > 0 &&
		    s->mp.size > set.quota_bytes;

		if (never || full) {
			store_rcpt_set_free(&set);
			if (never)
				smtp_reply(s, "552 5.2.2 Mailbox full");
			else
				smtp_reply(s, "452 4.2.2 Mailbox full");
			return;
		}
	}
	if (set.kind == STORE_ADDR_LIST &&
	    (set.list_flags & STORE_LIST_NOTICE) && !s->notice) {
		/* Checked in full once the message is in (smtp_notice.c). */
		s->notice = 1;
		str_copy(s->notice_list, sizeof(s->notice_list), path->addr);
	}
	for (i = 0; i < set.nlocal; i++)
		local_add(s, set.local[i]);
	for (i = 0; i < set.nremote && s->sd->queue != NULL; i++)
		remote_add(s, set.remote[i]);
	/* NOTIFY/ORCPT: an account or alias passes them on, a list not. */
	if (rp.notify != 0 || rp.orcpt[0] != '\0') {
		char **targets = xcalloc(set.nlocal + set.nremote + 1,
		    sizeof(*targets));
		size_t n = 0;

		for (i = 0; i < set.nlocal; i++)
			targets[n++] = set.local[i];
		for (i = 0; i < set.nremote && s->sd->queue != NULL; i++)
			targets[n++] = set.remote[i];
		smtp_dsn_env_note(&s->dsn, path->addr, &rp,
		    set.kind == STORE_ADDR_LIST, targets, n);
		free(targets);
	}
	if (set.nremote > 0 && s->sd->queue == NULL)
		log_warnx("smtpd: s=%s event=remote-targets-skipped rcpt=%s "
		    "n=%zu", s->id, ebuf, set.nremote);
	store_rcpt_set_free(&set);
	if (s->nrcpt == 0)
		str_copy(s->first_rcpt, sizeof(s->first_rcpt), path->addr);
	s->nrcpt++;
	smtp_reply(s, "250 2.1.5 Ok");
}

/* ---- the rest ---- */

static void
cmd_rset(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	(void)arg;
	smtp_transaction_reset(s);
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	(void)arg;
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	(void)arg;
	smtp_reply(s, "221 2.0.0 %s Bye", s->sd->hostname);
	s->quit = 1;
	conn_close(s->c);
}

static void
cmd_vrfy(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)arg;
	if (cmd == SMTP_CMD_EXPN) {
		smtp_reply(s, "502 5.5.1 EXPN not available");
		return;
	}
	smtp_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message");
}

static void
cmd_help(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	(void)arg;
	smtp_reply(s,
	    "214 2.0.0 See RFC 5321; commands: EHLO HELO MAIL RCPT DATA "
	    "BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
}

/* The command table: what each command needs (check) and does. */
static const struct {
	enum smtp_cmd cmd;
	unsigned need;
	void (*handler)(struct smtp_session *s, enum smtp_cmd cmd,
	    const char *arg);
} smtp_commands[] = {
	{ SMTP_CMD_HELO, NEED_NO_BDAT, cmd_helo },
	{ SMTP_CMD_EHLO, NEED_NO_BDAT, cmd_helo },
	{ SMTP_CMD_STARTTLS, NEED_EHLO | NEED_NO_MAIL, cmd_starttls },
	{ SMTP_CMD_AUTH, NEED_EHLO | NEED_NO_MAIL, smtp_cmd_auth },
	{ SMTP_CMD_MAIL, NEED_HELO | NEED_NO_MAIL, cmd_mail },
	{ SMTP_CMD_RCPT, NEED_MAIL | NEED_NO_BDAT, cmd_rcpt },
	{ SMTP_CMD_DATA, NEED_MAIL | NEED_NO_BDAT, smtp_cmd_data },
	{ SMTP_CMD_BDAT, 0, smtp_cmd_bdat },
	{ SMTP_CMD_RSET, 0, cmd_rset },
	{ SMTP_CMD_NOOP, 0, cmd_noop },
	{ SMTP_CMD_QUIT, 0, cmd_quit },
	{ SMTP_CMD_VRFY, 0, cmd_vrfy },
	{ SMTP_CMD_EXPN, 0, cmd_vrfy },
	{ SMTP_CMD_HELP, 0, cmd_help },
};

static void
command(struct smtp_session *s, const char *line, size_t len)
{
	const char *arg;
	size_t i;
	int cmd;

	cmd = smtp_cmd_parse(line, len, &arg);
	/* AUTH may use the whole connection limit, SMTP_AUTH_LINE_MAX. */
	if (cmd != SMTP_CMD_AUTH && len > SMTP_CMD_LINE_MAX) {
		smtp_error_reply(s, "500 5.5.2 Line too long (limit %d)",
		    SMTP_CMD_LINE_MAX);
		return;
	}
	if (cmd < 0) {
		smtp_error_reply(s, "500 5.5.2 Invalid characters in command");
		return;
	}
	if (cmd == SMTP_CMD_UNKNOWN) {
		/* An HTTP client or proxy talking to us: hang up at once. */
		if (str_has_prefix(line, "GET ") ||
		    str_has_prefix(line, "POST ") ||
		    str_has_prefix(line, "CONNECT ")) {
			smtp_reply(s, "421 4.7.0 Not an HTTP server");
			conn_close(s->c);
			return;
		}
		smtp_error_reply(s, "500 5.5.2 Command unrecognized");
		return;
	}
	for (i = 0; i < sizeof(smtp_commands) / sizeof(smtp_commands[0]);
	    i++) {
		unsigned need = smtp_commands[i].need;

		if (smtp_commands[i].cmd != (enum smtp_cmd)cmd)
			continue;
		if ((need & NEED_HELO) && s->helo == 0) {
			smtp_error_reply(s,
			    "503 5.5.1 Send EHLO or HELO first");
			return;
		}
		if ((need & NEED_EHLO) && s->helo != 2) {
			smtp_error_reply(s, "503 5.5.1 Send EHLO first");
			return;
		}
		if ((need & NEED_MAIL) && !s->in_mail) {
			smtp_error_reply(s, "503 5.5.1 Send MAIL first");
			return;
		}
		if ((need & NEED_NO_MAIL) && s->in_mail) {
			smtp_error_reply(s,
			    "503 5.5.1 Not allowed inside a mail "
			    "transaction");
			return;
		}
		if ((need & NEED_NO_BDAT) && s->bdat_active) {
			smtp_error_reply(s,
			    "503 5.5.1 Not allowed between BDAT "
			    "chunks");
			return;
		}
		smtp_commands[i].handler(s, (enum smtp_cmd)cmd, arg);
		return;
	}
}

static void
session_on_input(struct conn *c, void *arg)
{
	struct smtp_session *s = arg;
	const char *line;
	size_t len;
	int r;

	while (!s->busy && !conn_closing(c)) {
		if (s->mode == SMTP_MODE_DATA) {
			smtp_data_input(s);
			if (s->mode == SMTP_MODE_DATA)
				return;		/* need more bytes */
			continue;
		}
		if (s->mode == SMTP_MODE_BDAT) {
			smtp_bdat_input(s);
			if (s->mode == SMTP_MODE_BDAT)
				return;
			continue;
		}
		r = conn_read_line(c, &line, &len);
		if (r == CONN_MORE)
			return;
		if (r == CONN_LINE_TOO_LONG) {
			if (s->mode == SMTP_MODE_AUTH) {
				smtp_auth_end(s);
				smtp_error_reply(s, "500 5.5.6 Authentication "
				    "exchange line is too long");
			} else
				smtp_error_reply(s, "500 5.5.2 Line too long "
				    "(limit %d)", SMTP_CMD_LINE_MAX);
			continue;
		}
		if (s->mode == SMTP_MODE_AUTH) {
			smtp_auth_line(s, line, len);
			continue;
		}
		command(s, line, len);
	}
}

static void
session_on_tls(struct conn *c, void *arg)
{
	struct smtp_session *s = arg;

	log_info("smtpd: s=%s event=tls version=%s cipher=%s", s->id,
	    conn_tls_version(c), conn_tls_cipher(c));
}

static void
session_on_timeout(struct conn *c, enum conn_close_reason why, void *arg)
{
	struct smtp_session *s = arg;

	(void)c;
	log_info("smtpd: s=%s event=timeout why=%s", s->id,
	    conn_close_reason_str(why));
	smtp_reply(s, "421 4.4.2 %s Timeout, closing", s->sd->hostname);
}

static void
session_on_close(struct conn *c, enum conn_close_reason why, void *arg)
{
	struct smtp_session *s = arg;

	(void)c;
	log_info("smtpd: s=%s event=disconnect ip=%s reason=%s", s->id, s->ip,
	    conn_close_reason_str(why));
	if (s->job != NULL) {
		/* The job finishes on its own; it must not touch s. */
		s->job->s = NULL;
		if (s->job->sasl == s->sasl)
			s->sasl = NULL;	/* freed with the job */
	}
	if (s->sasl != NULL)
		sasl_session_free(s->sasl);
	smtp_transaction_reset(s);
	free(s->local);
	free(s->remote);
	free(s->user);
	s->sd->nsessions--;
	free(s);
}

void
smtp_session_accept(struct smtpd *sd, enum smtp_kind kind, int fd,
    const struct sockaddr *sa, socklen_t salen, const char *local_addr)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	char host[SMTP_IP_MAX] = "unknown";
	unsigned port = 0;
	const char *err = NULL;
	size_t dropped;

	(void)salen;
	s->sd = sd;
	s->kind = kind;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	str_copy(s->ip, sizeof(s->ip), host);
	(void)snprintf(s->peer, sizeof(s->peer), "%s;%u", host, port);
	str_copy(s->local_addr, sizeof(s->local_addr), local_addr);
	s->loopback = sasl_addr_is_loopback(s->ip);
	(void)snprintf(s->id, sizeof(s->id), "%08x%02x%06llx",
	    (unsigned)getpid(), sd->worker_index & 0xff,
	    (unsigned long long)(sd->next_session++ & 0xffffff));
	buf_init(&s->msg, 0);
	sd->nsessions++;
	s->c = conn_new(sd->base, fd, &session_callbacks, s);
	conn_set_timeouts(s->c, sd->command_timeout_ms, sd->session_timeout_ms);
	conn_set_line_limit(s->c, SMTP_AUTH_LINE_MAX, 0);
	log_info("smtpd: s=%s event=connect ip=%s kind=%s", s->id, s->ip,
	    kind == SMTP_KIND_SMTP ? "smtp" : kind == SMTP_KIND_SUBMISSION ?
	    "submission" : "submissions");
	if (kind == SMTP_KIND_SUBMISSIONS) {
		if (sd->tls == NULL || conn_starttls(s->c, sd->tls, &dropped,
		    &err) < 0) {
			conn_abort(s->c);
			return;
		}
	}
	smtp_reply(s, "220 %s ESMTP govmail-smtpd", sd->hostname);
}
