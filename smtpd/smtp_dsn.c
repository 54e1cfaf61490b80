/*
 * smtp_dsn.c - delivery status notifications (RFC 3461 requests, RFC 3464
 * reports, RFC 6533 for UTF-8 addresses): which recipient asked for what
 * (the transaction's smtp_dsn_env), the report itself, and when one is
 * due: failed, delayed, delivered (local), relayed (to a server without
 * DSN) or expanded (a list).  See smtp_queue.h.
 *
 * govmail-smtpd workers: the env is built on the loop thread from RCPT
 * parameters that smtp_parse.c checked; reports are built and stored on
 * helper threads (they block on the store).  Our own queue records are
 * trusted as far as smtp_queue.c's decoder checked them; the message and
 * the remote servers' replies are copied into the report, never parsed
 * beyond finding the end of the header block.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "buf.h"
#include "log.h"
#include "mailbox.h"
#include "smtp_parse.h"
#include "smtp_queue.h"
#include "smtp_session.h"
#include "xmalloc.h"

/* Longest Original-Recipient / Final-Recipient value we write. */
#define SMTP_DSN_ADDR_TEXT_MAX (SMTP_ORCPT_MAX * 4)

/* ---- the transaction's request ---- */

void
smtp_dsn_env_note(struct smtp_dsn_env **envp, const char *rcpt,
    const struct smtp_rcpt_params *rp, int list, char *const *targets,
    size_t n)
{
	struct smtp_dsn_env *env = *envp;
	struct smtp_dsn_rcpt *r;
	size_t i;

	if (rp->notify == 0 && rp->orcpt[0] == '\0')
		return;
	if (env == NULL)
		env = *envp = xcalloc(1, sizeof(*env));
	if (env->nrcpts == env->alloc) {
		env->alloc = env->alloc ? env->alloc * 2 : 4;
		env->rcpts = xreallocarray(env->rcpts, env->alloc,
		    sizeof(*env->rcpts));
	}
	r = &env->rcpts[env->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->rcpt = xstrdup(rcpt);
	r->notify = rp->notify;
	r->orcpt = rp->orcpt[0] != '\0' ? xstrdup(rp->orcpt) : NULL;
	r->list = list;
	if (list)
		return;
	r->targets = xcalloc(n + 1, sizeof(*r->targets));
	for (i = 0; i < n; i++)
		r->targets[i] = xstrdup(targets[i]);
	r->ntargets = n;
}

struct smtp_dsn_env *
smtp_dsn_env_take(struct smtp_dsn_env **envp,
    const struct smtp_mail_params *mp)
{
	struct smtp_dsn_env *env = *envp;

	*envp = NULL;
	if (env == NULL && mp->ret == SMTP_RET_NONE && mp->envid[0] == '\0')
		return NULL;
	if (env == NULL)
		env = xcalloc(1, sizeof(*env));
	env->ret = mp->ret;
	(void)str_copy(env->envid, sizeof(env->envid), mp->envid);
	return env;
}

void
smtp_dsn_env_free(struct smtp_dsn_env *env)
{
	size_t i, j;

	if (env == NULL)
		return;
	for (i = 0; i < env->nrcpts; i++) {
		struct smtp_dsn_rcpt *r = &env->rcpts[i];

		for (j = 0; j < r->ntargets; j++)
			free(r->targets[j]);
		free(r->targets);
		free(r->rcpt);
		free(r->orcpt);
	}
	free(env->rcpts);
	free(env);
}

const struct smtp_dsn_rcpt *
smtp_dsn_env_find(const struct smtp_dsn_env *env, const char *addr)
{
	size_t i, j;

	if (env == NULL)
		return NULL;
	for (i = 0; i < env->nrcpts; i++)
		for (j = 0; j < env->rcpts[i].ntargets; j++)
			if (strcmp(env->rcpts[i].targets[j], addr) == 0)
				return &env->rcpts[i];
	return NULL;
}

/* ---- the report ---- */

/* Does the report of this kind name recipient i of e? */
static int
dsn_names(const struct smtp_qentry *e, size_t i, int kind)
{
	unsigned notify = e->notify != NULL ? e->notify[i] : 0;
	unsigned fl = e->dflags != NULL ? e->dflags[i] : 0;
	int failure = notify == 0 || (notify & SMTP_NOTIFY_FAILURE);

	switch (kind) {
	case SMTP_DSN_FAILED:
		return e->status[i] == SMTP_QRCPT_FAILED && failure;
	case SMTP_DSN_EXPIRED:
		return e->status[i] != SMTP_QRCPT_SENT && failure;
	case SMTP_DSN_DELAYED:
		return e->status[i] == SMTP_QRCPT_PENDING &&
		    (notify & SMTP_NOTIFY_DELAY) &&
		    !(fl & SMTP_QRCPT_F_DELAYED);
	case SMTP_DSN_DELIVERED:
		return e->status[i] == SMTP_QRCPT_SENT &&
		    (notify & SMTP_NOTIFY_SUCCESS) &&
		    !(fl & SMTP_QRCPT_F_REPORTED);
	case SMTP_DSN_RELAYED:
		return e->status[i] == SMTP_QRCPT_SENT &&
		    (notify & SMTP_NOTIFY_SUCCESS) &&
		    (fl & SMTP_QRCPT_F_NODSN) && !(fl & SMTP_QRCPT_F_REPORTED);
	default:
		return 0;
	}
}

/*
 * An address for Final-Recipient: "rfc822; addr" when it is ASCII, else
 * "utf-8; " and RFC 6533's utf-8-addr-xtext ("\x{HEX}" for non-ASCII
 * characters and for "+", "=" and "\").
 */
static void
put_addr(struct buf *b, const char *field, const char *addr)
{
	const unsigned char *p = (const unsigned char *)addr;
	int ascii = 1;
	size_t i;

	for (i = 0; p[i] != '\0'; i++)
		if (p[i] >= 0x80 || p[i] < 0x21)
			ascii = 0;
	if (ascii) {
		buf_printf(b, "%s: rfc822; %s\r\n", field, addr);
		return;
	}
	buf_printf(b, "%s: utf-8; ", field);
	for (i = 0; p[i] != '\0'; i++) {
		uint32_t cp = p[i];
		size_t k = 1, j;

		if (p[i] >= 0xf0) {
			k = 4;
			cp = p[i] & 0x07;
		} else if (p[i] >= 0xe0) {
			k = 3;
			cp = p[i] & 0x0f;
		} else if (p[i] >= 0xc0) {
			k = 2;
			cp = p[i] & 0x1f;
		}
		for (j = 1; j < k && p[i + j] != '\0'; j++)
			cp = (cp << 6) | (p[i + j] & 0x3f);
		i += j - 1;
		if (cp > 0x20 && cp < 0x7f && cp != '+' && cp != '=' &&
		    cp != '\\')
			buf_append_byte(b, (uint8_t)cp);
		else
			buf_printf(b, "\\x{%X}", (unsigned)cp);
	}
	buf_printf(b, "\r\n");
}

/* The enhanced status code in a reply ("550 5.1.1 ..."), or dflt. */
static void
status_of(const char *diag, const char *dflt, char *out, size_t outsz)
{
	const char *p = diag;
	size_t n = 0;
	int dots = 0;

	(void)str_copy(out, outsz, dflt);
	if (p == NULL || strlen(p) < 6)
		return;
	p += 4;
	if (*p != '2' && *p != '4' && *p != '5')
		return;
	while ((p[n] >= '0' && p[n] <= '9') || p[n] == '.') {
		if (p[n] == '.')
			dots++;
		n++;
	}
	if (dots != 2 || n < 5 || n >= outsz || p[n - 1] == '.' ||
	    (p[n] != ' ' && p[n] != '\0'))
		return;
	memcpy(out, p, n);
	out[n] = '\0';
}

uint8_t *
smtp_dsn_build(const char *hostname, const struct smtp_qentry *e,
    int kind, size_t *len_r)
{
	static const char *const subjects[] = {
		"Undelivered Mail Returned to Sender",
		"Undelivered Mail Returned to Sender",
		"Delayed Mail (still being retried)",
		"Successful Mail Delivery Report",
		"Successful Mail Delivery Report",
	};
	struct buf b;
	char date[64], arrival[64], boundary[40], envid[SMTP_ENVID_MAX + 1];
	uint8_t rnd[8];
	time_t t = time(NULL), at = e->created > 0 ? (time_t)e->created : t;
	struct tm tm;
	size_t i, n = 0, hl;
	int failure = kind == SMTP_DSN_FAILED || kind == SMTP_DSN_EXPIRED;

	if (kind < SMTP_DSN_FAILED || kind > SMTP_DSN_RELAYED)
		return NULL;
	for (i = 0; i < e->nrcpts; i++)
		if (dsn_names(e, i, kind))
			n++;
	if (n == 0)
		return NULL;
	localtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	localtime_r(&at, &tm);
	strftime(arrival, sizeof(arrival), "%a, %d %b %Y %H:%M:%S %z", &tm);
	randombytes_buf(rnd, sizeof(rnd));
	(void)snprintf(boundary, sizeof(boundary), "=_dsn_");
	sodium_bin2hex(boundary + 6, sizeof(boundary) - 6, rnd, sizeof(rnd));
	buf_init(&b, BUF_UNBOUNDED);
	buf_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	    "To: <%s>\r\nSubject: %s\r\n"
	    "Date: %s\r\nAuto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
	    "report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n"
	    "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
	    "This is the mail system at %s.\r\n\r\n", hostname, e->sender,
	    subjects[kind], date, boundary, boundary, hostname);
	switch (kind) {
	case SMTP_DSN_FAILED:
	case SMTP_DSN_EXPIRED:
		buf_printf(&b, "Your message could not be delivered to the "
		    "following recipients%s:\r\n\r\n",
		    kind == SMTP_DSN_EXPIRED ? " within the time allowed" :
		    "");
		break;
	case SMTP_DSN_DELAYED:
		buf_printf(&b, "Your message has not yet been delivered to "
		    "the following recipients.  It is still being retried;\r\n"
		    "you need not send it again.\r\n\r\n");
		break;
	case SMTP_DSN_DELIVERED:
		buf_printf(&b, "Your message was delivered to the following "
		    "recipients, as you asked to be told.\r\n\r\n");
		break;
	default:
		buf_printf(&b, "Your message was handed on to the following "
		    "recipients' mail servers, as you asked to be told.\r\n"
		    "Those servers do not report deliveries, so this is the "
		    "last report you will get.\r\n\r\n");
		break;
	}
	for (i = 0; i < e->nrcpts; i++)
		if (dsn_names(e, i, kind))
			buf_printf(&b, "<%s>%s%s\r\n", e->rcpts[i],
			    e->diag[i] != NULL ? ": " : "",
			    e->diag[i] != NULL ? e->diag[i] : "");
	buf_printf(&b, "\r\n--%s\r\nContent-Type: message/delivery-status"
	    "\r\n\r\nReporting-MTA: dns; %s\r\nX-Queue-ID: %s\r\n",
	    boundary, hostname, e->id);
	if (e->envid[0] != '\0' &&
	    smtp_xtext_decode(e->envid, envid, sizeof(envid)) == 0)
		buf_printf(&b, "Original-Envelope-Id: %s\r\n", envid);
	buf_printf(&b, "Arrival-Date: %s\r\n", arrival);
	for (i = 0; i < e->nrcpts; i++) {
		const char *orcpt = e->orcpt != NULL ? e->orcpt[i] : NULL;
		const char *action, *dflt;
		char text[SMTP_DSN_ADDR_TEXT_MAX], status[16];
		unsigned fl = e->dflags != NULL ? e->dflags[i] : 0;

		if (!dsn_names(e, i, kind))
			continue;
		buf_printf(&b, "\r\n");
		if (orcpt != NULL &&
		    smtp_orcpt_text(orcpt, text, sizeof(text)) == 0)
			buf_printf(&b, "Original-Recipient: %s\r\n", text);
		put_addr(&b, "Final-Recipient", e->rcpts[i]);
		switch (kind) {
		case SMTP_DSN_FAILED:
			action = "failed";
			dflt = "5.0.0";
			break;
		case SMTP_DSN_EXPIRED:
			action = "failed";
			dflt = e->status[i] == SMTP_QRCPT_FAILED ? "5.0.0" :
			    "4.4.7";
			break;
		case SMTP_DSN_DELAYED:
			action = "delayed";
			dflt = "4.4.1";
			break;
		case SMTP_DSN_DELIVERED:
			action = (fl & SMTP_QRCPT_F_EXPANDED) ? "expanded" :
			    "delivered";
			dflt = "2.0.0";
			break;
		default:
			action = "relayed";
			dflt = "2.0.0";
			break;
		}
		status_of(kind == SMTP_DSN_EXPIRED && e->status[i] !=
		    SMTP_QRCPT_FAILED ? NULL : e->diag[i], dflt, status,
		    sizeof(status));
		if (status[0] != dflt[0])	/* a reply of another class */
			(void)str_copy(status, sizeof(status), dflt);
		buf_printf(&b, "Action: %s\r\nStatus: %s\r\n", action, status);
		if (e->diag[i] != NULL && kind != SMTP_DSN_DELIVERED &&
		    kind != SMTP_DSN_RELAYED)
			buf_printf(&b, "Diagnostic-Code: smtp; %s\r\n",
			    e->diag[i]);
	}
	/* RFC 3461 4.3: the whole message only with a failure. */
	if (failure && e->ret != SMTP_RET_HDRS) {
		buf_printf(&b, "\r\n--%s\r\nContent-Type: message/rfc822\r\n"
		    "\r\n", boundary);
		buf_append(&b, e->msg, e->len);
		if (e->len >= 2 && memcmp(e->msg + e->len - 2, "\r\n", 2) != 0)
			buf_printf(&b, "\r\n");
	} else {
		buf_printf(&b, "\r\n--%s\r\nContent-Type: text/rfc822-headers"
		    "\r\n\r\n", boundary);
		hl = smtp_header_len(e->msg, e->len);
		buf_append(&b, e->msg, hl);
	}
	buf_printf(&b, "\r\n--%s--\r\n", boundary);
	*len_r = b.len;
	return (uint8_t *)buf_steal(&b);
}

static const char *
kind_name(int kind)
{
	static const char *const names[] = {
		"failed", "expired", "delayed", "delivered", "relayed",
	};

	return kind >= 0 && kind <= SMTP_DSN_RELAYED ? names[kind] : "?";
}

int
smtp_dsn_send(struct store *st, struct smtp_queue *q, const char *hostname,
    const struct smtp_qentry *e, int kind)
{
	const char *dom = strrchr(e->sender, '@'), *err = NULL;
	uint8_t *dsn;
	size_t len;
	int local, r = 0;

	if (e->sender[0] == '\0' || dom == NULL)
		return 0;
	dsn = smtp_dsn_build(hostname, e, kind, &len);
	if (dsn == NULL)
		return 0;	/* nobody asked for this report */
	local = st != NULL ? store_domain_exists(st, dom + 1) : -1;
	if (local == 1) {
		struct store_rcpt_result res;
		const char *rc[1] = { e->sender };

		memset(&res, 0, sizeof(res));
		if (store_deliver(st, dsn, len, rc, 1, 0, &res, &err) < 0 ||
		    res.status != STORE_OK) {
			log_warnx(
			    "smtpd: event=dsn-failed queue=%s error=\"%s\"",
			    e->id, err != NULL ? err :
			    store_strerror(res.status));
			r = -1;
		}
	} else if (q != NULL) {
		char *rcpt = e->sender;

		if (st == NULL ||
		    smtp_queue_add(st, "", &rcpt, 1, dsn, len, &err) < 0) {
			log_warnx(
			    "smtpd: event=dsn-failed queue=%s error=\"%s\"",
			    e->id, err != NULL ? err : "store unavailable");
			r = -1;
		}
	} else {
		log_warnx(
		    "smtpd: event=dsn-dropped queue=%s (no queue)", e->id);
		r = -1;
	}
	if (r == 0)
		log_info("smtpd: event=dsn queue=%s kind=%s expired=%d", e->id,
		    kind_name(kind), kind == SMTP_DSN_EXPIRED);
	free(dsn);
	return r;
}

int
smtp_dsn_send_env(struct store *st, struct smtp_queue *q,
    const char *hostname, const struct smtp_qentry *e, int kind,
    const struct smtp_dsn_env *env)
{
	struct smtp_qentry x = *e;
	size_t i;
	int r;

	if (env == NULL)
		return smtp_dsn_send(st, q, hostname, e, kind);
	x.notify = xcalloc(e->nrcpts + 1, 1);
	x.dflags = xcalloc(e->nrcpts + 1, 1);
	x.orcpt = xcalloc(e->nrcpts + 1, sizeof(*x.orcpt));
	for (i = 0; i < e->nrcpts; i++) {
		const struct smtp_dsn_rcpt *dr =
		    smtp_dsn_env_find(env, e->rcpts[i]);

		if (dr == NULL)
			continue;
		x.notify[i] = (uint8_t)dr->notify;
		x.orcpt[i] = dr->orcpt;		/* borrowed */
	}
	x.ret = (uint8_t)env->ret;
	(void)str_copy(x.envid, sizeof(x.envid), env->envid);
	r = smtp_dsn_send(st, q, hostname, &x, kind);
	free(x.notify);
	free(x.dflags);
	free(x.orcpt);
	return r;
}

/* Send the report of kind, then mark what it named with flag. */
static void
send_and_mark(struct store *st, struct smtp_queue *q, const char *hostname,
    struct smtp_qentry *e, int kind, uint8_t flag)
{
	uint8_t *named = xcalloc(e->nrcpts + 1, 1);
	size_t i, n = 0;

	for (i = 0; i < e->nrcpts; i++)
		if (dsn_names(e, i, kind)) {
			named[i] = 1;
			n++;
		}
	if (n > 0) {
		/* Marked even when it could not be stored: sent once. */
		(void)smtp_dsn_send(st, q, hostname, e, kind);
		for (i = 0; i < e->nrcpts; i++)
			if (named[i])
				e->dflags[i] |= flag;
	}
	free(named);
}

void
smtp_dsn_progress(struct store *st, struct smtp_queue *q,
    const char *hostname, struct smtp_qentry *e, int64_t now,
    uint64_t delay_warning)
{
	if (e->dflags == NULL || e->notify == NULL)
		return;		/* nobody asked: version 1 or ad hoc */
	send_and_mark(st, q, hostname, e, SMTP_DSN_RELAYED,
	    SMTP_QRCPT_F_REPORTED);
	if (delay_warning > 0 && now - e->created >= (int64_t)delay_warning)
		send_and_mark(st, q, hostname, e, SMTP_DSN_DELAYED,
		    SMTP_QRCPT_F_DELAYED);
}

/* ---- local delivery ---- */

void
smtp_dsn_local(struct smtp_job *job, struct store *st)
{
	const struct smtp_dsn_env *env = job->dsn;
	struct smtp_qentry e;
	size_t i, j, k, max = 0;

	if (env == NULL || job->dres != 0 || job->sender == NULL ||
	    job->sender[0] == '\0')
		return;
	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].notify & SMTP_NOTIFY_SUCCESS)
			max += env->rcpts[i].list ? 1 :
			    env->rcpts[i].ntargets;
	if (max == 0)
		return;
	memset(&e, 0, sizeof(e));
	(void)str_copy(e.id, sizeof(e.id), "local");
	e.created = (int64_t)time(NULL);
	e.sender = job->sender;
	e.rcpts = xcalloc(max, sizeof(*e.rcpts));
	e.status = xcalloc(max, 1);
	e.diag = xcalloc(max, sizeof(*e.diag));
	e.notify = xcalloc(max, 1);
	e.dflags = xcalloc(max, 1);
	e.orcpt = xcalloc(max, sizeof(*e.orcpt));
	e.ret = (uint8_t)env->ret;
	(void)str_copy(e.envid, sizeof(e.envid), env->envid);
	e.msg = job->msg;
	e.len = job->len;
	for (i = 0; i < env->nrcpts; i++) {
		const struct smtp_dsn_rcpt *dr = &env->rcpts[i];

		if (!(dr->notify & SMTP_NOTIFY_SUCCESS))
			continue;
		if (dr->list) {
			/* RFC 3461 6.2.7.1: the list reports "expanded". */
			e.rcpts[e.nrcpts] = dr->rcpt;
			e.status[e.nrcpts] = SMTP_QRCPT_SENT;
			e.notify[e.nrcpts] = (uint8_t)dr->notify;
			e.dflags[e.nrcpts] = SMTP_QRCPT_F_EXPANDED;
			e.orcpt[e.nrcpts++] = dr->orcpt;
			continue;
		}
		for (j = 0; j < dr->ntargets; j++)
			for (k = 0; k < job->nrcpts; k++) {
				if (strcmp(job->rcpts[k],
				    dr->targets[j]) != 0 ||
				    job->results[k].status != STORE_OK)
					continue;
				e.rcpts[e.nrcpts] = job->rcpts[k];
				e.status[e.nrcpts] = SMTP_QRCPT_SENT;
				e.notify[e.nrcpts] = (uint8_t)dr->notify;
				e.orcpt[e.nrcpts++] = dr->orcpt;
				break;
			}
	}
	if (e.nrcpts > 0)
		(void)smtp_dsn_send(st, job->queue, job->hostname, &e,
		    SMTP_DSN_DELIVERED);
	free(e.rcpts);
	free(e.status);
	free(e.diag);
	free(e.notify);
	free(e.dflags);
	free(e.orcpt);
}
