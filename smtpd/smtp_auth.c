/*
 * smtp_auth.c - SMTP AUTH (RFC 4954) for govmail-smtpd: PLAIN and LOGIN
 * through lib/sasl, the exchange run on a helper thread (Argon2id), failed
 * attempts counted per client address.
 *
 * govmail-smtpd workers, loop thread (the SASL step itself on a helper
 * thread).  Client lines are bounded by SMTP_AUTH_LINE_MAX and decoded by
 * sasl_base64_decode (SASL_RESPONSE_MAX); nothing from them is logged.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "mailbox.h"
#include "sasl.h"
#include "smtp_queue.h"
#include "smtp_session.h"
#include "smtpd.h"
#include "strnum.h"
#include "tpool.h"
#include "xmalloc.h"

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
	if (job->ares == SASL_SESSION_OK) {
		/* The class decides the rate limits (rate_exempt_classes). */
		struct store *st = smtp_job_store(job->cfg);
		struct store_account *acct = NULL;

		if (st != NULL && store_account_get(st,
		    sasl_session_user(job->sasl), &acct, NULL) == 0) {
			job->aclass = (int)acct->class;
			store_account_free(acct);
		}
	}
}

void
smtp_auth_end(struct smtp_session *s)
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
		smtp_job_free(job);
		return;
	}
	switch (job->ares) {
	case SASL_SESSION_CONTINUE:
		s->mode = SMTP_MODE_AUTH;
		smtp_reply(s, "334 %s", job->challenge);
		break;
	case SASL_SESSION_OK:
		s->user = xstrdup(sasl_session_user(s->sasl));
		s->user_class = job->aclass;
		log_info("smtpd: s=%s event=auth-ok ip=%s mech=%s", s->id,
		    s->ip, sasl_session_mech(s->sasl));
		smtp_auth_end(s);
		smtp_reply(s, "235 2.7.0 Authentication successful");
		break;
	case SASL_SESSION_FAIL:
		switch (sasl_session_reason(s->sasl)) {
		case SASL_REASON_AUTH:
			sasl_ratelimit_failed(s->sd->auth_rl, s->peer,
			    smtp_now());
			log_info("smtpd: s=%s event=auth-failed ip=%s", s->id,
			    s->ip);
			smtp_auth_end(s);
			smtp_error_reply(s,
			    "535 5.7.8 Authentication credentials "
			    "invalid");
			break;
		case SASL_REASON_MECH:
			smtp_auth_end(s);
			smtp_error_reply(s,
			    "504 5.5.4 Unrecognized authentication "
			    "type");
			break;
		case SASL_REASON_TLS_REQUIRED:
			smtp_auth_end(s);
			smtp_error_reply(s,
			    "538 5.7.11 Encryption required for "
			    "requested authentication mechanism");
			break;
		default:
			smtp_auth_end(s);
			smtp_error_reply(s,
			    "501 5.5.2 Malformed authentication "
			    "response");
			break;
		}
		break;
	default:
		smtp_auth_end(s);
		smtp_reply(s, "454 4.7.0 Temporary authentication failure");
		break;
	}
	smtp_job_free(job);
	smtp_session_idle(s);
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
		smtp_job_free(job);
		smtp_auth_end(s);
		smtp_error_reply(s, "501 5.5.2 Cannot decode response");
		return;
	}
	if (tpool_submit(s->sd->pool, job_auth_work, job_auth_done, job,
	    &err) < 0) {
		smtp_job_free(job);
		smtp_auth_end(s);
		smtp_reply(s, "454 4.7.0 Server busy, try again later");
		return;
	}
	smtp_session_busy(s, job);
}

void
smtp_cmd_auth(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	struct sasl_session_params p;
	char mech[SASL_MECH_NAME_MAX + 1];
	const char *sp, *err = NULL;
	size_t mlen;

	(void)cmd;
	if (s->user != NULL) {
		smtp_error_reply(s, "503 5.5.1 Already authenticated");
		return;
	}
	if (!smtp_auth_offered(s)) {
		if (s->kind == SMTP_KIND_SUBMISSION && s->sd->tls != NULL)
			smtp_error_reply(s, "530 5.7.0 Must issue a STARTTLS "
			    "command first");
		else
			smtp_error_reply(s, "503 5.5.1 AUTH not available");
		return;
	}
	if (!sasl_ratelimit_allowed(s->sd->auth_rl, s->peer, smtp_now())) {
		log_info("smtpd: s=%s event=auth-rate-limited ip=%s", s->id,
		    s->ip);
		smtp_error_reply(s,
		    "454 4.7.0 Too many failed authentications, "
		    "try again later");
		return;
	}
	sp = strchr(arg, ' ');
	mlen = sp != NULL ? (size_t)(sp - arg) : strlen(arg);
	if (mlen == 0 || mlen > SASL_MECH_NAME_MAX) {
		smtp_error_reply(s,
		    "501 5.5.4 Syntax: AUTH mechanism [response]");
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
		smtp_reply(s, "454 4.7.0 Temporary authentication failure");
		return;
	}
	if (sp != NULL)
		auth_submit(s, SMTP_JOB_AUTH_START, mech, sp + 1, 1);
	else
		auth_submit(s, SMTP_JOB_AUTH_START, mech, NULL, 0);
}

/* A line while an AUTH exchange waits for the client. */
void
smtp_auth_line(struct smtp_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		smtp_auth_end(s);
		smtp_error_reply(s, "501 5.0.0 Authentication cancelled");
		return;
	}
	if (memchr(line, '\0', len) != NULL) {
		smtp_auth_end(s);
		smtp_error_reply(s, "501 5.5.2 Cannot decode response");
		return;
	}
	s->mode = SMTP_MODE_CMD;
	auth_submit(s, SMTP_JOB_AUTH_STEP, NULL, line, 1);
}

