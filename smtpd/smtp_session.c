/*
 * smtp_session.c - one SMTP session on a worker's event loop: commands,
 * STARTTLS, AUTH, the transaction (MAIL, RCPT, DATA, BDAT) and the reply
 * after the store made the message durable.
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
#include "smtpd.h"
#include "strnum.h"
#include "tpool.h"
#include "xmalloc.h"

/* Longest reply text we build (our own text plus an escaped address). */
#define SMTP_REPLY_MAX 1024
/* Longest numeric address text ("ffff:...:ffff"). */
#define SMTP_IP_MAX 64

enum smtp_mode {
	SMTP_MODE_CMD = 0,
	SMTP_MODE_DATA,		/* after 354 */
	SMTP_MODE_BDAT,		/* reading a chunk's bytes */
	SMTP_MODE_AUTH,		/* waiting for a SASL response line */
};

/* Check flags of the command table. */
#define NEED_HELO 0x01		/* after HELO/EHLO */
#define NEED_MAIL 0x02		/* inside a transaction */
#define NEED_NO_MAIL 0x04	/* outside a transaction */
#define NEED_EHLO 0x08		/* after EHLO (extensions) */
#define NEED_NO_BDAT 0x10	/* not between BDAT chunks */

struct smtp_session {
	struct smtpd *sd;
	struct conn *c;
	char id[24];
	enum smtp_kind kind;
	char peer[DAEMON_ADDR_MAX];	/* "ip;port" */
	char ip[SMTP_IP_MAX];
	char local_addr[DAEMON_ADDR_MAX];
	int loopback;

	int helo;			/* 1 HELO, 2 EHLO */
	char helo_name[SMTP_HELO_MAX + 1];
	char *user;			/* authenticated address, or NULL */
	unsigned errors;
	int busy;			/* a job is running */
	struct smtp_job *job;		/* the running job, or NULL */
	enum smtp_mode mode;
	int quit;

	/* AUTH */
	struct sasl_session *sasl;

	/* the transaction */
	int in_mail;
	struct smtp_path from;
	struct smtp_mail_params mp;
	unsigned nrcpt;			/* RCPT commands accepted */
	char first_rcpt[SMTP_PATH_MAX + 1];
	char **local;			/* account addresses to deliver to */
	size_t nlocal, alloc_local;
	char **remote;			/* addresses to queue for relay */
	size_t nremote, alloc_remote;
	struct buf msg;			/* trace headers + message */
	size_t trace_len;
	struct smtp_data data;
	uint64_t bdat_left;
	int bdat_last;
	int bdat_active;		/* BDAT chunks under way */
	int bdat_refused;		/* this chunk is read and dropped */
	const char *bdat_reply;		/* reply after a dropped chunk */
	uint64_t bdat_size;
	unsigned msg_count;
};

enum smtp_job_kind {
	SMTP_JOB_AUTH_START,
	SMTP_JOB_AUTH_STEP,
	SMTP_JOB_DELIVER,
};

struct smtp_job {
	enum smtp_job_kind kind;
	struct smtp_session *s;		/* NULL once the session closed */
	const struct config *cfg;
	/* auth */
	struct sasl_session *sasl;
	char mech[SASL_MECH_NAME_MAX + 1];
	struct buf resp;
	int has_resp;
	enum sasl_session_result ares;
	char *challenge;		/* base64, on CONTINUE */
	const char *aerr;
	/* deliver */
	uint8_t *msg;
	size_t len;
	char **rcpts;
	size_t nrcpts;
	char **remote;
	size_t nremote;
	char *sender;
	const char *hostname;
	struct kv_env *queue;
	int queued;
	struct store_rcpt_result *results;
	int dres;
	const char *derr;
};

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

static void
reply(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
reply(struct smtp_session *s, const char *fmt, ...)
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
static void
error_reply(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
error_reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_REPLY_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	s->errors++;
	if (s->sd->max_errors > 0 && s->errors > s->sd->max_errors) {
		reply(s, "421 4.7.0 %s Too many errors, closing",
		    s->sd->hostname);
		log_info("smtpd: s=%s event=too-many-errors ip=%s", s->id,
		    s->ip);
		conn_close(s->c);
		return;
	}
	reply(s, "%s", line);
}

/* Escape client text for a reply or a log line. */
static const char *
esc(const void *p, size_t len, char *out, size_t outsz)
{
	return log_escape(p, len, out, outsz);
}

static int64_t
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static void
transaction_reset(struct smtp_session *s)
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
}

static void
addr_add(char ***list, size_t *n, size_t *alloc, const char *addr)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp((*list)[i], addr) == 0)
			return;
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

static void
session_busy(struct smtp_session *s, struct smtp_job *job)
{
	s->busy = 1;
	s->job = job;
	conn_pause_input(s->c);
}

static void
session_idle(struct smtp_session *s)
{
	s->busy = 0;
	s->job = NULL;
	if (!conn_closing(s->c))
		conn_resume_input(s->c);
}

static void
job_free(struct smtp_job *job)
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
	if (job->s == NULL && job->sasl != NULL)
		sasl_session_free(job->sasl);
	free(job);
}

/* ---- EHLO ---- */

static int
auth_offered(const struct smtp_session *s)
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
		error_reply(s, "501 5.5.4 Syntax: %s hostname",
		    cmd == SMTP_CMD_EHLO ? "EHLO" : "HELO");
		return;
	}
	transaction_reset(s);
	str_copy(s->helo_name, sizeof(s->helo_name), arg);
	s->helo = cmd == SMTP_CMD_EHLO ? 2 : 1;
	if (cmd == SMTP_CMD_HELO) {
		reply(s, "250 %s", s->sd->hostname);
		return;
	}
	reply(s, "250-%s Hello", s->sd->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %llu", (unsigned long long)s->sd->message_max);
	reply(s, "250-8BITMIME");
	reply(s, "250-SMTPUTF8");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-CHUNKING");
	reply(s, "250-DSN");
	if (!conn_is_tls(s->c) && s->sd->tls != NULL)
		reply(s, "250-STARTTLS");
	if (auth_offered(s) && sasl_glue_mechs()[0] != '\0')
		reply(s, "250-AUTH %s", sasl_glue_mechs());
	reply(s, "250 HELP");
}

/* ---- STARTTLS ---- */

static void
cmd_starttls(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	const char *err = NULL;
	size_t dropped = 0;

	(void)cmd;
	if (arg[0] != '\0') {
		error_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (conn_is_tls(s->c)) {
		error_reply(s, "503 5.5.1 TLS already active");
		return;
	}
	if (s->sd->tls == NULL) {
		error_reply(s, "454 4.7.0 TLS not available");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
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
	transaction_reset(s);
	s->helo = 0;
	s->helo_name[0] = '\0';
}

/* ---- AUTH ---- */

static void
job_auth_work(void *arg)
{
	struct smtp_job *job = arg;
	const uint8_t *out = NULL;
	size_t outlen = 0;

	if (job->kind == SMTP_JOB_AUTH_START)
		job->ares = sasl_session_start(job->sasl, job->mech,
		    job->resp.data, job->resp.len, job->has_resp, &out,
		    &outlen, &job->aerr);
	else
		job->ares = sasl_session_step(job->sasl, job->resp.data,
		    job->resp.len, &out, &outlen, &job->aerr);
	buf_free(&job->resp);
	if (job->ares == SASL_SESSION_CONTINUE)
		job->challenge = sasl_base64_encode(out, outlen);
}

static void
auth_end(struct smtp_session *s)
{
	sasl_session_free(s->sasl);
	s->sasl = NULL;
	s->mode = SMTP_MODE_CMD;
}

static void
job_auth_done(void *arg)
{
	struct smtp_job *job = arg;
	struct smtp_session *s = job->s;

	if (s == NULL) {
		job_free(job);
		return;
	}
	switch (job->ares) {
	case SASL_SESSION_CONTINUE:
		s->mode = SMTP_MODE_AUTH;
		reply(s, "334 %s", job->challenge);
		break;
	case SASL_SESSION_OK:
		s->user = xstrdup(sasl_session_user(s->sasl));
		log_info("smtpd: s=%s event=auth-ok ip=%s mech=%s", s->id,
		    s->ip, sasl_session_mech(s->sasl));
		auth_end(s);
		reply(s, "235 2.7.0 Authentication successful");
		break;
	case SASL_SESSION_FAIL:
		switch (sasl_session_reason(s->sasl)) {
		case SASL_REASON_AUTH:
			sasl_ratelimit_failed(s->sd->auth_rl, s->peer,
			    now_mono());
			log_info("smtpd: s=%s event=auth-failed ip=%s", s->id,
			    s->ip);
			auth_end(s);
			error_reply(s, "535 5.7.8 Authentication credentials "
			    "invalid");
			break;
		case SASL_REASON_MECH:
			auth_end(s);
			error_reply(s, "504 5.5.4 Unrecognized authentication "
			    "type");
			break;
		case SASL_REASON_TLS_REQUIRED:
			auth_end(s);
			error_reply(s, "538 5.7.11 Encryption required for "
			    "requested authentication mechanism");
			break;
		default:
			auth_end(s);
			error_reply(s, "501 5.5.2 Malformed authentication "
			    "response");
			break;
		}
		break;
	default:
		auth_end(s);
		reply(s, "454 4.7.0 Temporary authentication failure");
		break;
	}
	job_free(job);
	session_idle(s);
}

/* Decode a base64 response and run start or step on a helper thread. */
static void
auth_submit(struct smtp_session *s, enum smtp_job_kind kind, const char *mech,
    const char *b64, int has_resp)
{
	struct smtp_job *job = xcalloc(1, sizeof(*job));
	const char *err = NULL;

	job->kind = kind;
	job->s = s;
	job->cfg = s->sd->cfg;
	job->sasl = s->sasl;
	job->has_resp = has_resp;
	buf_init(&job->resp, SASL_RESPONSE_MAX);
	if (mech != NULL)
		str_copy(job->mech, sizeof(job->mech), mech);
	if (has_resp && sasl_base64_decode(b64, strlen(b64), &job->resp,
	    &err) < 0) {
		job_free(job);
		auth_end(s);
		error_reply(s, "501 5.5.2 Cannot decode response");
		return;
	}
	if (tpool_submit(s->sd->pool, job_auth_work, job_auth_done, job,
	    &err) < 0) {
		job_free(job);
		auth_end(s);
		reply(s, "454 4.7.0 Server busy, try again later");
		return;
	}
	session_busy(s, job);
}

static void
cmd_auth(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	struct sasl_session_params p;
	char mech[SASL_MECH_NAME_MAX + 1];
	const char *sp, *err = NULL;
	size_t mlen;

	(void)cmd;
	if (s->user != NULL) {
		error_reply(s, "503 5.5.1 Already authenticated");
		return;
	}
	if (!auth_offered(s)) {
		if (s->kind == SMTP_KIND_SUBMISSION && s->sd->tls != NULL)
			error_reply(s, "530 5.7.0 Must issue a STARTTLS "
			    "command first");
		else
			error_reply(s, "503 5.5.1 AUTH not available");
		return;
	}
	if (!sasl_ratelimit_allowed(s->sd->auth_rl, s->peer, now_mono())) {
		log_info("smtpd: s=%s event=auth-rate-limited ip=%s", s->id,
		    s->ip);
		error_reply(s, "454 4.7.0 Too many failed authentications, "
		    "try again later");
		return;
	}
	sp = strchr(arg, ' ');
	mlen = sp != NULL ? (size_t)(sp - arg) : strlen(arg);
	if (mlen == 0 || mlen > SASL_MECH_NAME_MAX) {
		error_reply(s, "501 5.5.4 Syntax: AUTH mechanism [response]");
		return;
	}
	memcpy(mech, arg, mlen);
	mech[mlen] = '\0';
	memset(&p, 0, sizeof(p));
	p.service = "smtp";
	p.server_fqdn = s->sd->hostname;
	p.local_addr = s->local_addr;
	p.remote_addr = s->peer;
	p.tls_active = conn_is_tls(s->c);
	p.plaintext_allowed = s->sd->plaintext_loopback && s->loopback;
	p.verify = smtp_job_verify;
	p.verify_ctx = (void *)(uintptr_t)s->sd->cfg;
	if (sasl_session_new(&p, &s->sasl, &err) < 0) {
		log_warnx("smtpd: s=%s event=sasl-failed error=\"%s\"", s->id,
		    err);
		reply(s, "454 4.7.0 Temporary authentication failure");
		return;
	}
	if (sp != NULL)
		auth_submit(s, SMTP_JOB_AUTH_START, mech, sp + 1, 1);
	else
		auth_submit(s, SMTP_JOB_AUTH_START, mech, NULL, 0);
}

/* A line while an AUTH exchange waits for the client. */
static void
auth_line(struct smtp_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		auth_end(s);
		error_reply(s, "501 5.0.0 Authentication cancelled");
		return;
	}
	if (memchr(line, '\0', len) != NULL) {
		auth_end(s);
		error_reply(s, "501 5.5.2 Cannot decode response");
		return;
	}
	s->mode = SMTP_MODE_CMD;
	auth_submit(s, SMTP_JOB_AUTH_STEP, NULL, line, 1);
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
static int
sender_allowed(struct smtp_session *s, const char *addr)
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
		error_reply(s, "530 5.7.0 Authentication required");
		return;
	}
	e = smtp_path_parse(arg, 0, 0, &s->from, &s->mp, NULL, &what);
	if (e != SMTP_PATH_OK) {
		error_reply(s, "%s %s", path_error_code(e, 0), what);
		return;
	}
	if (s->mp.smtputf8 && s->helo != 2) {
		error_reply(s, "503 5.5.1 SMTPUTF8 needs EHLO");
		return;
	}
	if (s->mp.has_size && s->mp.size > s->sd->message_max) {
		reply(s, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (s->user != NULL) {
		if (s->from.null) {
			error_reply(s, "553 5.7.1 Null sender not allowed "
			    "in a submission");
			return;
		}
		r = sender_allowed(s, s->from.addr);
		if (r < 0) {
			reply(s, "451 4.3.0 Temporary failure, try again "
			    "later");
			return;
		}
		if (r == 0) {
			log_info("smtpd: s=%s event=sender-refused ip=%s",
			    s->id, s->ip);
			error_reply(s, "553 5.7.1 Sender address not owned "
			    "by the authenticated user");
			return;
		}
		if (!smtp_rate_hit(s->sd->acct_rate, s->user, now_mono())) {
			log_info("smtpd: s=%s event=rate-limited what=account",
			    s->id);
			reply(s, "450 4.7.1 Message rate limit exceeded for "
			    "this account, try again later");
			return;
		}
	}
	if (!smtp_rate_hit(s->sd->ip_rate, s->ip, now_mono())) {
		log_info("smtpd: s=%s event=rate-limited what=ip ip=%s", s->id,
		    s->ip);
		reply(s, "450 4.7.1 Message rate limit exceeded for this "
		    "address, try again later");
		return;
	}
	s->in_mail = 1;
	reply(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	struct smtp_path path;
	struct smtp_rcpt_params rp;
	struct store_rcpt_set set;
	char ebuf[SMTP_PATH_MAX * LOG_ESCAPE_WIDTH + 1];
	const char *what = NULL;
	enum smtp_path_error e;
	size_t i;
	int r;

	(void)cmd;
	e = smtp_path_parse(arg, 1, s->mp.smtputf8, &path, NULL, &rp, &what);
	if (e != SMTP_PATH_OK) {
		error_reply(s, "%s %s", path_error_code(e, 1), what);
		return;
	}
	if (s->nrcpt >= s->sd->max_recipients) {
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (path.domain[0] == '\0') {
		/* <Postmaster>: the postmaster of our own host name. */
		str_copy(path.domain, sizeof(path.domain), s->sd->hostname);
		str_copy(path.addr, sizeof(path.addr), "postmaster@");
		if (str_append(path.addr, sizeof(path.addr),
		    s->sd->hostname) < 0) {
			error_reply(s, "550 5.1.1 No such user");
			return;
		}
	}
	esc(path.addr, strlen(path.addr), ebuf, sizeof(ebuf));
	r = store_domain_exists(s->sd->store, path.domain);
	if (r < 0) {
		reply(s, "451 4.3.0 Temporary failure, try again later");
		return;
	}
	if (r == 0) {
		/*
		 * SECURITY: not an open relay.  Outbound relay for
		 * authenticated users needs the delivery queue.
		 */
		if (s->user != NULL && s->sd->queue != NULL) {
			/* Authenticated: relayed through the queue. */
			remote_add(s, path.addr);
			if (s->nrcpt == 0)
				str_copy(s->first_rcpt, sizeof(s->first_rcpt),
				    path.addr);
			s->nrcpt++;
			reply(s, "250 2.1.5 Ok");
			return;
		}
		log_info("smtpd: s=%s event=relay-denied ip=%s rcpt=%s",
		    s->id, s->ip, ebuf);
		if (s->user != NULL)
			error_reply(s, "550 5.7.1 Relaying to other domains "
			    "is not available");
		else
			error_reply(s, "554 5.7.1 Relay access denied");
		return;
	}
	r = store_resolve(s->sd->store, path.addr,
	    s->user != NULL ? s->user : (s->from.null ? NULL : s->from.addr),
	    &set, NULL);
	if (r == STORE_ENOTFOUND || r == STORE_EINVAL) {
		error_reply(s, "550 5.1.1 Recipient address rejected: "
		    "no such user");
		return;
	}
	if (r == STORE_EPERM) {
		error_reply(s, "550 5.7.1 Sender is not allowed to post to "
		    "this list");
		return;
	}
	if (r < 0) {
		reply(s, "451 4.3.0 Temporary failure, try again later");
		return;
	}
	if (set.nlocal == 0 && (set.nremote == 0 || s->sd->queue == NULL)) {
		store_rcpt_set_free(&set);
		error_reply(s, "550 5.1.1 Recipient address rejected: "
		    "no local mailbox");
		return;
	}
	if (set.kind == STORE_ADDR_ACCOUNT) {
		struct store_account *acct = NULL;

		if (store_account_get(s->sd->store, set.local[0], &acct,
		    NULL) == 0) {
			int full = (acct->quota_bytes > 0 &&
			    acct->used_bytes >= acct->quota_bytes) ||
			    (acct->quota_messages > 0 &&
			    acct->used_messages >= acct->quota_messages);
			int never = s->mp.has_size && acct->quota_bytes > 0 &&
			    s->mp.size > acct->quota_bytes;

			store_account_free(acct);
			if (never || full) {
				store_rcpt_set_free(&set);
				if (never)
					reply(s, "552 5.2.2 Mailbox full");
				else
					reply(s, "452 4.2.2 Mailbox full");
				return;
			}
		}
	}
	for (i = 0; i < set.nlocal; i++)
		local_add(s, set.local[i]);
	for (i = 0; i < set.nremote && s->sd->queue != NULL; i++)
		remote_add(s, set.remote[i]);
	if (set.nremote > 0 && s->sd->queue == NULL)
		log_warnx("smtpd: s=%s event=remote-targets-skipped rcpt=%s "
		    "n=%zu", s->id, ebuf, set.nremote);
	store_rcpt_set_free(&set);
	if (s->nrcpt == 0)
		str_copy(s->first_rcpt, sizeof(s->first_rcpt), path.addr);
	s->nrcpt++;
	reply(s, "250 2.1.5 Ok");
}

/* ---- DATA, BDAT, delivery ---- */

/* Prepend Return-Path:, Received: and Authentication-Results:. */
static void
trace_headers(struct smtp_session *s)
{
	char date[64];
	char helo[SMTP_HELO_MAX * LOG_ESCAPE_WIDTH + 1];
	time_t t = time(NULL);
	struct tm tm;
	const char *proto;
	int tls = conn_is_tls(s->c);

	localtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	esc(s->helo_name, strlen(s->helo_name), helo, sizeof(helo));
	if (s->mp.smtputf8)
		proto = s->user ? (tls ? "UTF8SMTPSA" : "UTF8SMTPA") :
		    (tls ? "UTF8SMTPS" : "UTF8SMTP");
	else
		proto = s->user ? (tls ? "ESMTPSA" : "ESMTPA") :
		    (tls ? "ESMTPS" : "ESMTP");
	if (s->helo == 1)
		proto = tls ? "SMTPS" : "SMTP";
	buf_init(&s->msg, SMTPD_TRACE_RESERVE + s->sd->message_max);
	buf_printf(&s->msg, "Return-Path: <%s>\r\n", s->from.addr);
	buf_printf(&s->msg, "Received: from %s ([%s])\r\n\tby %s "
	    "(govmail-smtpd) with %s id %s-%u", helo, s->ip, s->sd->hostname,
	    proto, s->id, s->msg_count);
	if (tls)
		buf_printf(&s->msg, "\r\n\t(using %s with cipher %s)",
		    conn_tls_version(s->c), conn_tls_cipher(s->c));
	if (s->nrcpt == 1)
		buf_printf(&s->msg, "\r\n\tfor <%s>", s->first_rcpt);
	buf_printf(&s->msg, ";\r\n\t%s\r\n", date);
	if (s->user != NULL || tls) {
		buf_printf(&s->msg, "Authentication-Results: %s;",
		    s->sd->hostname);
		if (s->user != NULL)
			buf_printf(&s->msg, "\r\n\tauth=pass smtp.auth=%s",
			    s->user);
		if (tls)
			buf_printf(&s->msg, "\r\n\tx-tls=pass "
			    "policy.version=%s", conn_tls_version(s->c));
		buf_printf(&s->msg, "\r\n");
	}
	s->trace_len = s->msg.len;
	/* The message itself may fill message_max on top of the trace. */
	s->msg.max = s->trace_len + s->sd->message_max;
}

/* 1 if the first n bytes of a and b match, ASCII case-insensitively. */
static int
str_casecmp_n(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int x = (unsigned char)a[i], y = (unsigned char)b[i];

		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (y >= 'A' && y <= 'Z')
			y += 32;
		if (x != y)
			return 0;
	}
	return 1;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Some local recipients failed at delivery (quota reached since RCPT)
 * while the message is accepted for others: the client gets 250, so the
 * sender learns of the failures from a DSN.
 */
static void
job_partial_dsn(struct smtp_job *job, struct store *st)
{
	struct smtp_qentry e;
	size_t i, ok = job->queued ? job->nremote : 0, n = 0;

	for (i = 0; i < job->nrcpts; i++)
		if (job->results[i].status == STORE_OK)
			ok++;
	if (ok == 0 || ok == job->nrcpts + (job->queued ? job->nremote : 0))
		return;
	memset(&e, 0, sizeof(e));
	(void)str_copy(e.id, sizeof(e.id), "local");
	e.sender = job->sender;
	e.rcpts = xcalloc(job->nrcpts, sizeof(*e.rcpts));
	e.status = xcalloc(job->nrcpts, 1);
	e.diag = xcalloc(job->nrcpts, sizeof(*e.diag));
	for (i = 0; i < job->nrcpts; i++) {
		if (job->results[i].status == STORE_OK)
			continue;
		e.rcpts[n] = job->rcpts[i];
		e.status[n] = SMTP_QRCPT_FAILED;
		e.diag[n] = (char *)(uintptr_t)(job->results[i].status ==
		    STORE_EQUOTA ? "552 5.2.2 Mailbox full" :
		    "550 5.1.1 Mailbox unavailable");
		n++;
	}
	e.nrcpts = n;
	e.msg = job->msg;
	e.len = job->len;
	(void)smtp_dsn_send(st, job->queue, job->hostname, &e, 0);
	free(e.rcpts);
	free(e.status);
	free(e.diag);
}

static void
job_deliver_work(void *arg)
{
	struct smtp_job *job = arg;
	struct store *st = smtp_job_store(job->cfg);

	/* The queue first: a failure there is answered 451 as a whole. */
	if (job->nremote > 0) {
		if (smtp_queue_add(job->queue, job->sender, job->remote,
		    job->nremote, job->msg, job->len, &job->derr) < 0) {
			job->dres = STORE_ETEMP;
			return;
		}
		job->queued = 1;
	}
	if (job->nrcpts == 0) {
		job->dres = 0;
		return;
	}
	if (st == NULL) {
		job->dres = STORE_ETEMP;
		job->derr = "store unavailable";
		return;
	}
	job->dres = store_deliver(st, job->msg, job->len,
	    (const char *const *)job->rcpts, job->nrcpts, 0, job->results,
	    &job->derr);
	if (job->dres == 0)
		job_partial_dsn(job, st);
}

static void
job_deliver_done(void *arg)
{
	struct smtp_job *job = arg;
	struct smtp_session *s = job->s;
	size_t i, ok = 0, quota = 0, other = 0;

	if (job->dres == 0) {
		for (i = 0; i < job->nrcpts; i++) {
			if (job->results[i].status == STORE_OK)
				ok++;
			else if (job->results[i].status == STORE_EQUOTA)
				quota++;
			else
				other++;
		}
	}
	if (job->queued)
		ok += job->nremote;
	log_info("smtpd: s=%s event=delivered result=%d size=%zu rcpts=%zu "
	    "queued=%zu ok=%zu quota=%zu failed=%zu", s != NULL ? s->id : "-",
	    job->dres, job->len, job->nrcpts, job->queued ? job->nremote : 0,
	    ok, quota, other);
	if (s == NULL) {
		job_free(job);
		return;
	}
	if (job->dres == STORE_ETOOBIG)
		reply(s, "552 5.3.4 Message size exceeds fixed limit");
	else if (job->dres < 0)
		reply(s, "451 4.3.0 Temporary failure, try again later");
	else if (ok > 0)
		reply(s, "250 2.0.0 Ok: delivered as %s-%u", s->id,
		    s->msg_count);
	else if (quota > 0)
		reply(s, "452 4.2.2 Mailbox full");
	else
		reply(s, "550 5.1.1 No mailbox accepted the message");
	s->msg_count++;
	job_free(job);
	transaction_reset(s);
	session_idle(s);
}

/*
 * SECURITY (RFC 8601 5): remove Authentication-Results: fields in the
 * client's header that carry our own authserv-id, so that nobody can
 * forge our verdict ("auth=pass smtp.auth=mayor@...").  Works on the
 * message after the trace headers we added ourselves.
 */
static void
strip_forged_results(struct smtp_session *s)
{
	const char *name = "Authentication-Results:";
	size_t nlen = strlen(name), hlen = strlen(s->sd->hostname);
	uint8_t *p = s->msg.data;
	size_t len = s->msg.len, i = s->trace_len, out = s->trace_len;
	int removed = 0;

	while (i < len) {
		size_t end = i, next;
		int drop = 0;

		/* One field: its line and the continuation lines after it. */
		for (;;) {
			const uint8_t *nl = memchr(p + end, '\n', len - end);

			end = nl != NULL ? (size_t)(nl - p) + 1 : len;
			if (end >= len || (p[end] != ' ' && p[end] != '\t'))
				break;
		}
		next = end;
		if (end - i <= 2 && p[i] == '\r') {
			/* The blank line: the body follows untouched. */
			break;
		}
		if (end - i > nlen && str_casecmp_n((const char *)p + i, name,
		    nlen)) {
			size_t j = i + nlen;

			while (j < end && (p[j] == ' ' || p[j] == '\t' ||
			    p[j] == '\r' || p[j] == '\n'))
				j++;
			if (end - j > hlen && str_casecmp_n((const char *)p + j,
			    s->sd->hostname, hlen) && (p[j + hlen] == ';' ||
			    p[j + hlen] == ' ' || p[j + hlen] == '\t' ||
			    p[j + hlen] == '\r'))
				drop = 1;
		}
		if (drop)
			removed++;
		else {
			memmove(p + out, p + i, next - i);
			out += next - i;
		}
		i = next;
	}
	if (removed == 0)
		return;
	memmove(p + out, p + i, len - i);
	out += len - i;
	buf_truncate(&s->msg, out);
	log_info("smtpd: s=%s event=forged-auth-results-removed n=%d", s->id,
	    removed);
}

/* The whole message is in s->msg: check, then store it. */
static void
message_complete(struct smtp_session *s)
{
	struct smtp_job *job;
	const char *err = NULL;
	size_t i;

	if (s->user != NULL) {
		char addrs[SMTP_FROM_ADDRS_MAX][SMTP_PATH_MAX + 1];
		int n = smtp_header_from(s->msg.data + s->trace_len,
		    s->msg.len - s->trace_len, addrs, SMTP_FROM_ADDRS_MAX);
		int r = 1;

		if (n <= 0) {
			reply(s, "550 5.6.0 A submission needs one valid "
			    "From: header");
			transaction_reset(s);
			return;
		}
		for (i = 0; i < (size_t)n && r == 1; i++)
			r = sender_allowed(s, addrs[i]);
		if (r != 1) {
			if (r < 0)
				reply(s, "451 4.3.0 Temporary failure, try "
				    "again later");
			else
				reply(s, "550 5.7.1 From: address not owned "
				    "by the authenticated user");
			transaction_reset(s);
			return;
		}
	}
	strip_forged_results(s);
	job = xcalloc(1, sizeof(*job));
	job->kind = SMTP_JOB_DELIVER;
	job->s = s;
	job->cfg = s->sd->cfg;
	job->len = s->msg.len;
	job->msg = s->msg.data;		/* the job owns the bytes now */
	s->msg.data = NULL;
	buf_free(&s->msg);
	qsort(s->local, s->nlocal, sizeof(*s->local), cmp_str);
	job->rcpts = s->local;
	job->nrcpts = s->nlocal;
	s->local = NULL;
	s->nlocal = s->alloc_local = 0;
	job->remote = s->remote;
	job->nremote = s->nremote;
	s->remote = NULL;
	s->nremote = s->alloc_remote = 0;
	job->sender = xstrdup(s->from.addr);
	job->hostname = s->sd->hostname;
	job->queue = s->sd->queue;
	job->results = xcalloc(job->nrcpts, sizeof(*job->results));
	if (tpool_submit(s->sd->pool, job_deliver_work, job_deliver_done, job,
	    &err) < 0) {
		job_free(job);
		reply(s, "451 4.3.0 Server busy, try again later");
		transaction_reset(s);
		return;
	}
	session_busy(s, job);
}

static void
cmd_data(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	if (arg[0] != '\0') {
		error_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->nlocal + s->nremote == 0) {
		error_reply(s, "554 5.5.1 No valid recipients");
		return;
	}
	trace_headers(s);
	smtp_data_init(&s->data);
	s->mode = SMTP_MODE_DATA;
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
data_input(struct smtp_session *s)
{
	const uint8_t *p;
	size_t n, used = 0;
	enum smtp_data_result r;

	while ((n = conn_input(s->c, &p)) > 0) {
		r = smtp_data_feed(&s->data, p, n, &s->msg, &used);
		conn_consume(s->c, used);
		if (r == SMTP_DATA_MORE)
			continue;
		s->mode = SMTP_MODE_CMD;
		if (r == SMTP_DATA_BARE) {
			/*
			 * SECURITY (SMTP smuggling): a bare CR or LF is
			 * never a line end; refuse the message and close
			 * so that nothing after it is read as commands.
			 */
			log_info("smtpd: s=%s event=bare-newline ip=%s", s->id,
			    s->ip);
			reply(s, "554 5.5.2 Bare CR or LF in message "
			    "refused, closing");
			transaction_reset(s);
			conn_close(s->c);
			return;
		}
		if (s->data.faults & SMTP_DATA_F_TOO_BIG)
			reply(s, "552 5.3.4 Message size exceeds fixed limit");
		else if (s->data.faults & SMTP_DATA_F_LONG_LINE)
			reply(s, "554 5.6.0 Message line longer than %d "
			    "characters", SMTP_TEXT_LINE_MAX);
		else if (s->data.faults & SMTP_DATA_F_NUL)
			reply(s, "554 5.6.0 NUL byte in message refused");
		else {
			message_complete(s);
			return;
		}
		transaction_reset(s);
		return;
	}
}

static void
cmd_bdat(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	const char *sp = strchr(arg, ' '), *err;
	size_t nlen = sp != NULL ? (size_t)(sp - arg) : strlen(arg);
	uint64_t size;

	(void)cmd;
	if (nlen == 0 || nlen > 20 ||
	    strnum_u64_n(arg, nlen, UINT64_MAX, &size, &err) < 0 ||
	    (sp != NULL && str_casecmp(sp + 1, "LAST") != 0)) {
		/* We cannot know how many bytes follow: end the session. */
		reply(s, "501 5.5.4 Syntax: BDAT size [LAST]; closing");
		conn_close(s->c);
		return;
	}
	s->bdat_left = size;
	s->bdat_last = sp != NULL;
	s->bdat_refused = 0;
	s->bdat_reply = NULL;
	if (s->helo != 2 || !s->in_mail || s->nlocal + s->nremote == 0) {
		s->bdat_refused = 1;
		s->bdat_reply = !s->in_mail || s->helo != 2 ?
		    "503 5.5.1 Bad sequence of commands" :
		    "554 5.5.1 No valid recipients";
	} else if (!s->bdat_active) {
		trace_headers(s);
		s->bdat_active = 1;
	}
	s->mode = SMTP_MODE_BDAT;
}

static void
bdat_chunk_done(struct smtp_session *s)
{
	s->mode = SMTP_MODE_CMD;
	if (s->bdat_refused) {
		if (s->bdat_reply[0] == '5' && s->bdat_reply[2] == '3')
			s->errors++;
		reply(s, "%s", s->bdat_reply);
		if (s->bdat_active)
			transaction_reset(s);
		return;
	}
	if (!s->bdat_last) {
		reply(s, "250 2.0.0 %llu octets received",
		    (unsigned long long)s->bdat_size);
		return;
	}
	message_complete(s);
}

static void
bdat_input(struct smtp_session *s)
{
	const uint8_t *p;
	size_t n;

	while (s->bdat_left > 0 && (n = conn_input(s->c, &p)) > 0) {
		if (n > s->bdat_left)
			n = (size_t)s->bdat_left;
		if (!s->bdat_refused) {
			s->bdat_size += n;
			if (buf_append(&s->msg, p, n) < 0) {
				/* Read on and drop: the size is enforced. */
				s->bdat_refused = 1;
				s->bdat_reply = "552 5.3.4 Message size "
				    "exceeds fixed limit";
			}
		}
		conn_consume(s->c, n);
		s->bdat_left -= n;
	}
	if (s->bdat_left == 0)
		bdat_chunk_done(s);
}

/* ---- the rest ---- */

static void
cmd_rset(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	(void)arg;
	transaction_reset(s);
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	(void)arg;
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	(void)arg;
	reply(s, "221 2.0.0 %s Bye", s->sd->hostname);
	s->quit = 1;
	conn_close(s->c);
}

static void
cmd_vrfy(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)arg;
	if (cmd == SMTP_CMD_EXPN) {
		reply(s, "502 5.5.1 EXPN not available");
		return;
	}
	reply(s, "252 2.5.2 Cannot VRFY user, but will accept message");
}

static void
cmd_help(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	(void)arg;
	reply(s, "214 2.0.0 See RFC 5321; commands: EHLO HELO MAIL RCPT DATA "
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
	{ SMTP_CMD_AUTH, NEED_EHLO | NEED_NO_MAIL, cmd_auth },
	{ SMTP_CMD_MAIL, NEED_HELO | NEED_NO_MAIL, cmd_mail },
	{ SMTP_CMD_RCPT, NEED_MAIL | NEED_NO_BDAT, cmd_rcpt },
	{ SMTP_CMD_DATA, NEED_MAIL | NEED_NO_BDAT, cmd_data },
	{ SMTP_CMD_BDAT, 0, cmd_bdat },
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
		error_reply(s, "500 5.5.2 Line too long (limit %d)",
		    SMTP_CMD_LINE_MAX);
		return;
	}
	if (cmd < 0) {
		error_reply(s, "500 5.5.2 Invalid characters in command");
		return;
	}
	if (cmd == SMTP_CMD_UNKNOWN) {
		/* An HTTP client or proxy talking to us: hang up at once. */
		if (str_has_prefix(line, "GET ") ||
		    str_has_prefix(line, "POST ") ||
		    str_has_prefix(line, "CONNECT ")) {
			reply(s, "421 4.7.0 Not an HTTP server");
			conn_close(s->c);
			return;
		}
		error_reply(s, "500 5.5.2 Command unrecognized");
		return;
	}
	for (i = 0; i < sizeof(smtp_commands) / sizeof(smtp_commands[0]);
	    i++) {
		unsigned need = smtp_commands[i].need;

		if (smtp_commands[i].cmd != (enum smtp_cmd)cmd)
			continue;
		if ((need & NEED_HELO) && s->helo == 0) {
			error_reply(s, "503 5.5.1 Send EHLO or HELO first");
			return;
		}
		if ((need & NEED_EHLO) && s->helo != 2) {
			error_reply(s, "503 5.5.1 Send EHLO first");
			return;
		}
		if ((need & NEED_MAIL) && !s->in_mail) {
			error_reply(s, "503 5.5.1 Send MAIL first");
			return;
		}
		if ((need & NEED_NO_MAIL) && s->in_mail) {
			error_reply(s, "503 5.5.1 Not allowed inside a mail "
			    "transaction");
			return;
		}
		if ((need & NEED_NO_BDAT) && s->bdat_active) {
			error_reply(s, "503 5.5.1 Not allowed between BDAT "
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
			data_input(s);
			if (s->mode == SMTP_MODE_DATA)
				return;		/* need more bytes */
			continue;
		}
		if (s->mode == SMTP_MODE_BDAT) {
			bdat_input(s);
			if (s->mode == SMTP_MODE_BDAT)
				return;
			continue;
		}
		r = conn_read_line(c, &line, &len);
		if (r == CONN_MORE)
			return;
		if (r == CONN_LINE_TOO_LONG) {
			if (s->mode == SMTP_MODE_AUTH) {
				auth_end(s);
				error_reply(s, "500 5.5.6 Authentication "
				    "exchange line is too long");
			} else
				error_reply(s, "500 5.5.2 Line too long "
				    "(limit %d)", SMTP_CMD_LINE_MAX);
			continue;
		}
		if (s->mode == SMTP_MODE_AUTH) {
			auth_line(s, line, len);
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
	reply(s, "421 4.4.2 %s Timeout, closing", s->sd->hostname);
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
	transaction_reset(s);
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
	reply(s, "220 %s ESMTP govmail-smtpd", sd->hostname);
}
