/*
 * smtp_out.c - the delivery agent: takes due entries from the outbound
 * queue, finds where each domain's mail goes (the [smtpd] relayhost, or
 * the domain's MX hosts through the system resolver: smtp_mx.c), tries
 * each address in turn until one takes the message, sends it over SMTP with
 * STARTTLS as [smtpd] outbound_tls says, and records the outcome: sent
 * recipients leave the queue, temporary failures are retried with a
 * doubling delay, permanent failures and entries older than
 * [smtpd] queue_lifetime go back to the sender as a DSN (RFC 3464).
 *
 * govmail-smtpd worker 0 only (one agent per daemon), on its event loop;
 * resolving and queue I/O run on helper threads.  The remote server is
 * not trusted: its replies are bounded by conn's line limit, stripped to
 * printable ASCII before they are kept, and bytes it sends before the TLS
 * handshake are discarded (conn_starttls_client).
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "kv.h"
#include "log.h"
#include "mailbox.h"
#include "smtp_mx.h"
#include "smtp_queue.h"
#include "smtpd.h"
#include "tls.h"
#include "tpool.h"
#include "xmalloc.h"

/* Seconds between looks at the queue. */
#define SMTP_OUT_SCAN_SECONDS 1
/* Longest retry delay, seconds. */
#define SMTP_OUT_RETRY_MAX 3600
/* Reply lines from the remote server, bytes (RFC 5321 4.5.3.1.5: 512). */
#define SMTP_OUT_LINE_MAX 2048
/* Idle and whole-session timeouts of an outbound session, ms. */
#define SMTP_OUT_IDLE_MS (300 * 1000)
#define SMTP_OUT_SESSION_MS (3600 * 1000)
/* Longest diagnostic kept per recipient. */
#define SMTP_OUT_DIAG_MAX 300

enum out_tls {
	OUT_TLS_NONE,
	OUT_TLS_MAY,
	OUT_TLS_ENCRYPT,
	OUT_TLS_VERIFY,
};

struct smtp_agent {
	struct smtpd *sd;
	struct smtp_queue *q;
	SSL_CTX *ctx;			/* client context */
	enum out_tls tls;
	char relayhost[SMTP_OUT_HOST_MAX];
	uint64_t retry;
	uint64_t lifetime;
	uint64_t delay_warning;		/* [smtpd] delay_warning */
	unsigned greet_ms;		/* [smtpd] outbound_connect_timeout */
	struct event *timer;
	int scanning;
	size_t active;			/* sessions and finish jobs */
	uint64_t finished;		/* finish jobs completed so far */
	/* Queue ids of the sessions and finish jobs under way. */
	char (*busy)[SMTP_QUEUE_ID_LEN + 1];
};

enum out_state {
	OUT_GREETING,
	OUT_EHLO,
	OUT_STARTTLS,
	OUT_MAIL,
	OUT_RCPT,
	OUT_DATA,
	OUT_DOT,
	OUT_QUIT,
	OUT_DONE,
};

struct smtp_out {
	struct smtp_agent *ag;
	struct smtp_qentry *e;
	struct conn *c;
	enum out_state state;
	size_t rcpt;			/* index of the RCPT under way */
	uint8_t *accepted;		/* per rcpt: RCPT got 2xx */
	int starttls_offered;
	int utf8_offered;		/* SMTPUTF8 in the last EHLO */
	int eightbit_offered;		/* 8BITMIME in the last EHLO */
	int dsn_offered;		/* DSN in the last EHLO (RFC 3461) */
	int utf8_used;			/* MAIL had SMTPUTF8 */
	int alabels;			/* domains sent as A-labels */
	int tls;
	/* Where to: tried in order until one takes the message. */
	struct smtp_dest dest[SMTP_DEST_MAX];
	size_t ndest, cur;
	char port[8];
	int resolve_perm;		/* no destination, for good */
	/*
	 * This session failed before MAIL (connect, greeting, EHLO, TLS):
	 * the next destination is tried; with none left, the recipients
	 * get last, permanent as next_perm says.
	 */
	int next_host, next_perm;
	char resolve_error[SMTP_OUT_DIAG_MAX];
	char last[SMTP_OUT_DIAG_MAX];
};

/* The host of the destination under way (TLS name, logs). */
#define OUT_HOST(o) ((o)->dest[(o)->cur < (o)->ndest ? (o)->cur : 0].host)

static void out_on_input(struct conn *c, void *arg);
static void out_rcpt_params(const struct smtp_out *o, size_t i, char *out,
    size_t outsz);
static void out_on_tls(struct conn *c, void *arg);
static void out_on_close(struct conn *c, enum conn_close_reason why,
    void *arg);

static const struct conn_callbacks out_callbacks = {
	.on_input = out_on_input,
	.on_tls = out_on_tls,
	.on_close = out_on_close,
};

/* ---- where to send (helper thread) ---- */

static void
resolve_dest(struct smtp_out *o)
{
	int n;

	n = smtp_route(o->e->domain, o->ag->relayhost, o->port,
	    sizeof(o->port), o->dest, SMTP_DEST_MAX, &o->resolve_perm,
	    o->resolve_error, sizeof(o->resolve_error));
	o->ndest = n > 0 ? (size_t)n : 0;
}

/* ---- scanning ---- */

struct scan_job {
	struct smtp_agent *ag;
	struct smtp_out **outs;
	size_t n;
	uint64_t finished;		/* ag->finished when submitted */
};

static void
scan_work(void *arg)
{
	struct scan_job *j = arg;
	struct smtp_qentry **entries = NULL;
	const char *err = NULL;
	size_t n = 0, i;
	struct store *st = smtp_job_store(j->ag->sd->cfg);
	int64_t now = (int64_t)time(NULL);

	if (st == NULL || smtp_queue_due(st, now, SMTP_QUEUE_SCAN_MAX,
	    &entries, &n, &err) < 0) {
		log_warnx("smtpd: event=queue-scan-failed error=\"%s\"",
		    err != NULL ? err : "store unavailable");
		return;
	}
	j->outs = xcalloc(n + 1, sizeof(*j->outs));
	for (i = 0; i < n; i++) {
		struct smtp_out *o;

		/* A local domain's entry: a deferred notice copy. */
		if (smtp_queue_local_try(st, j->ag->q, entries[i], now,
		    j->ag->retry, SMTP_OUT_RETRY_MAX, j->ag->lifetime,
		    j->ag->sd->hostname) != 0) {
			smtp_qentry_free(entries[i]);
			continue;
		}
		o = xcalloc(1, sizeof(*o));

		o->ag = j->ag;
		o->e = entries[i];
		o->accepted = xcalloc(o->e->nrcpts + 1, 1);
		resolve_dest(o);
		j->outs[j->n++] = o;
	}
	free(entries);
}

static void out_start(struct smtp_out *o);

static int
agent_is_busy(const struct smtp_agent *ag, const char *id)
{
	size_t i;

	for (i = 0; i < SMTP_QUEUE_SCAN_MAX; i++)
		if (strcmp(ag->busy[i], id) == 0)
			return 1;
	return 0;
}

static void
agent_set_busy(struct smtp_agent *ag, const char *id, int busy)
{
	size_t i;

	for (i = 0; i < SMTP_QUEUE_SCAN_MAX; i++) {
		if (busy && ag->busy[i][0] == '\0') {
			(void)str_copy(ag->busy[i], sizeof(ag->busy[i]), id);
			return;
		}
		if (!busy && strcmp(ag->busy[i], id) == 0) {
			ag->busy[i][0] = '\0';
			return;
		}
	}
}

static void
out_free(struct smtp_out *o)
{
	smtp_qentry_free(o->e);
	free(o->accepted);
	free(o);
}

static void
scan_done(void *arg)
{
	struct scan_job *j = arg;
	struct smtp_agent *ag = j->ag;
	size_t i;

	ag->scanning = 0;
	for (i = 0; i < j->n; i++) {
		/*
		 * An entry already under way is not started twice; and if
		 * an attempt finished while we read, what we read may be
		 * stale: drop it all, the next scan reads again.
		 */
		if (ag->finished != j->finished ||
		    agent_is_busy(ag, j->outs[i]->e->id) ||
		    ag->active >= SMTP_QUEUE_SCAN_MAX)
			out_free(j->outs[i]);
		else
			out_start(j->outs[i]);
	}
	free(j->outs);
	free(j);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_agent *ag = arg;
	struct scan_job *j;
	const char *err;

	(void)fd;
	(void)what;
	if (ag->scanning || ag->active >= SMTP_QUEUE_SCAN_MAX)
		return;
	j = xcalloc(1, sizeof(*j));
	j->ag = ag;
	j->finished = ag->finished;
	if (tpool_submit(ag->sd->pool, scan_work, scan_done, j, &err) < 0) {
		free(j);
		return;
	}
	ag->scanning = 1;
}

/* ---- the outcome (helper thread) ---- */

static void
deliver_dsn(struct smtp_agent *ag, const struct smtp_qentry *e, int expired)
{
	(void)smtp_dsn_send(smtp_job_store(ag->sd->cfg), ag->q,
	    ag->sd->hostname, e, expired);
}

static void
finish_work(void *arg)
{
	struct smtp_out *o = arg;
	struct smtp_agent *ag = o->ag;
	struct smtp_qentry *e = o->e;
	struct store *st = smtp_job_store(ag->sd->cfg);
	int64_t now = (int64_t)time(NULL);
	const char *err = NULL;
	size_t i, pending = 0, failed = 0;
	uint64_t delay;

	for (i = 0; i < e->nrcpts; i++) {
		if (e->status[i] == SMTP_QRCPT_PENDING)
			pending++;
		else if (e->status[i] == SMTP_QRCPT_FAILED)
			failed++;
	}
	if (pending > 0 && now - e->created >= (int64_t)ag->lifetime) {
		deliver_dsn(ag, e, 1);
		if (st == NULL || smtp_queue_remove(st, e->id, &err) < 0)
			log_warnx("smtpd: event=queue-remove-failed queue=%s "
			    "error=\"%s\"", e->id, err != NULL ? err :
			    "store unavailable");
		return;
	}
	/* Relayed (no DSN there) and delay reports, once each. */
	smtp_dsn_progress(st, ag->q, ag->sd->hostname, e, now,
	    ag->delay_warning);
	if (failed > 0) {
		deliver_dsn(ag, e, 0);
		for (i = 0; i < e->nrcpts; i++)	/* reported: done */
			if (e->status[i] == SMTP_QRCPT_FAILED)
				e->status[i] = SMTP_QRCPT_SENT;
	}
	if (pending == 0) {
		if (st == NULL || smtp_queue_remove(st, e->id, &err) < 0)
			log_warnx("smtpd: event=queue-remove-failed queue=%s "
			    "error=\"%s\"", e->id, err != NULL ? err :
			    "store unavailable");
		return;
	}
	e->attempts++;
	delay = ag->retry;
	for (i = 1; i < e->attempts && delay < SMTP_OUT_RETRY_MAX; i++)
		delay *= 2;
	if (delay > SMTP_OUT_RETRY_MAX)
		delay = SMTP_OUT_RETRY_MAX;
	e->next_try = now + (int64_t)delay;
	if (st == NULL || smtp_queue_put(st, e, &err) < 0)
		log_warnx("smtpd: event=queue-update-failed queue=%s "
		    "error=\"%s\"", e->id, err != NULL ? err :
		    "store unavailable");
}

static void
finish_done(void *arg)
{
	struct smtp_out *o = arg;

	o->ag->active--;
	o->ag->finished++;
	agent_set_busy(o->ag, o->e->id, 0);
	out_free(o);
}

/* Every recipient still undecided gets diag; permanent or not. */
static void
out_fail_rest(struct smtp_out *o, int permanent, const char *diag)
{
	struct smtp_qentry *e = o->e;
	size_t i;

	for (i = 0; i < e->nrcpts; i++) {
		if (e->status[i] != SMTP_QRCPT_PENDING)
			continue;
		if (permanent)
			e->status[i] = SMTP_QRCPT_FAILED;
		free(e->diag[i]);
		e->diag[i] = xstrdup(diag);
	}
}

static void
out_finish(struct smtp_out *o)
{
	const char *err;
	size_t i, sent = 0;

	if (o->state == OUT_DONE)
		return;
	o->state = OUT_DONE;
	for (i = 0; i < o->e->nrcpts; i++)
		if (o->e->status[i] == SMTP_QRCPT_SENT)
			sent++;
	log_info("smtpd: event=outbound queue=%s domain=%s host=%s sent=%zu "
	    "rcpts=%zu tls=%d", o->e->id, o->e->domain, o->ndest > 0 ?
	    OUT_HOST(o) : "-", sent, o->e->nrcpts, o->tls);
	if (tpool_submit(o->ag->sd->pool, finish_work, finish_done, o,
	    &err) < 0) {
		/* The entry stays as it was and is tried again. */
		finish_done(o);
	}
}

/* ---- the SMTP client (loop) ---- */

/*
 * A session with the destinations from o->cur on, the first that can be
 * connected to; with none left, the recipients get the last failure
 * (temporary) and the attempt ends.
 */
static void
out_connect(struct smtp_out *o)
{
	const char *err = NULL;
	int fd = -1;

	for (; o->cur < o->ndest; o->cur++) {
		if (conn_connect_tcp(o->dest[o->cur].ip, o->port, &fd,
		    &err) == 0)
			break;
		(void)snprintf(o->last, sizeof(o->last), "451 4.4.1 connect "
		    "to %s[%s]: %s", o->dest[o->cur].host, o->dest[o->cur].ip,
		    err);
		log_info("smtpd: event=outbound-next queue=%s host=%s ip=%s "
		    "error=\"%s\"", o->e->id, o->dest[o->cur].host,
		    o->dest[o->cur].ip, o->last);
	}
	if (o->cur == o->ndest) {
		o->cur = 0;
		out_fail_rest(o, 0, o->last);
		out_finish(o);
		return;
	}
	o->starttls_offered = o->utf8_offered = 0;
	o->eightbit_offered = o->dsn_offered = 0;
	o->utf8_used = o->tls = o->alabels = 0;
	o->next_host = o->next_perm = 0;
	o->c = conn_new(o->ag->sd->base, fd, &out_callbacks, o);
	/* Until the greeting: a host that does not answer is skipped. */
	conn_set_timeouts(o->c, o->ag->greet_ms, SMTP_OUT_SESSION_MS);
	conn_set_line_limit(o->c, SMTP_OUT_LINE_MAX, 0);
	o->state = OUT_GREETING;
}

static void
out_start(struct smtp_out *o)
{
	o->ag->active++;
	agent_set_busy(o->ag, o->e->id, 1);
	if (o->ndest == 0) {
		out_fail_rest(o, o->resolve_perm, o->resolve_error);
		out_finish(o);
		return;
	}
	out_connect(o);
}

/* Before MAIL: the session has committed to nothing yet. */
static int
out_before_mail(const struct smtp_out *o)
{
	return o->state == OUT_GREETING || o->state == OUT_EHLO ||
	    o->state == OUT_STARTTLS;
}

static void
out_send_rcpt_or_data(struct smtp_out *o)
{
	struct smtp_qentry *e = o->e;
	size_t i;

	while (o->rcpt < e->nrcpts &&
	    e->status[o->rcpt] != SMTP_QRCPT_PENDING)
		o->rcpt++;
	if (o->rcpt < e->nrcpts) {
		char params[SMTP_ORCPT_MAX + 64], addr[SMTP_PATH_MAX + 1];

		out_rcpt_params(o, o->rcpt, params, sizeof(params));
		if (!o->alabels || smtp_addr_alabels(e->rcpts[o->rcpt], addr,
		    sizeof(addr)) < 0)
			(void)str_copy(addr, sizeof(addr), e->rcpts[o->rcpt]);
		conn_printf(o->c, "RCPT TO:<%s>%s\r\n", addr, params);
		o->state = OUT_RCPT;
		return;
	}
	for (i = 0; i < e->nrcpts; i++)
		if (o->accepted[i])
			break;
	if (i == e->nrcpts) {
		conn_printf(o->c, "QUIT\r\n");
		o->state = OUT_QUIT;
		return;
	}
	conn_printf(o->c, "DATA\r\n");
	o->state = OUT_DATA;
}

/*
 * RCPT's DSN parameters for recipient i when the server offers DSN
 * (RFC 3461 5.2.1): NOTIFY and ORCPT as the client gave them; a UTF-8
 * ORCPT goes as utf-8-addr-xtext unless the transaction is SMTPUTF8.
 */
static void
out_rcpt_params(const struct smtp_out *o, size_t i, char *out, size_t outsz)
{
	const struct smtp_qentry *e = o->e;
	unsigned n = e->notify != NULL ? e->notify[i] : 0;
	const char *orcpt = e->orcpt != NULL ? e->orcpt[i] : NULL;
	char text[SMTP_ORCPT_MAX + 1];
	size_t k;

	out[0] = '\0';
	if (!o->dsn_offered)
		return;
	if (n != 0) {
		(void)str_append(out, outsz, " NOTIFY=");
		if (n & SMTP_NOTIFY_NEVER)
			(void)str_append(out, outsz, "NEVER");
		if (n & SMTP_NOTIFY_SUCCESS)
			(void)str_append(out, outsz, "SUCCESS,");
		if (n & SMTP_NOTIFY_FAILURE)
			(void)str_append(out, outsz, "FAILURE,");
		if (n & SMTP_NOTIFY_DELAY)
			(void)str_append(out, outsz, "DELAY,");
		k = strlen(out);
		if (out[k - 1] == ',')
			out[k - 1] = '\0';
	}
	if (orcpt == NULL)
		return;
	for (k = 0; orcpt[k] != '\0'; k++)
		if ((unsigned char)orcpt[k] >= 0x80)
			break;
	if (orcpt[k] != '\0' && !o->utf8_used) {
		if (smtp_orcpt_text(orcpt, text, sizeof(text)) < 0)
			return;		/* too long as xtext: left out */
		orcpt = text;
	}
	(void)str_append(out, outsz, " ORCPT=");
	(void)str_append(out, outsz, orcpt);
}

/* The message, dot-stuffed, and the end of data. */
static void
out_send_body(struct smtp_out *o)
{
	const uint8_t *p = o->e->msg;
	size_t len = o->e->len, i = 0;
	struct buf b;

	buf_init(&b, BUF_UNBOUNDED);
	while (i < len) {
		const uint8_t *nl = memchr(p + i, '\n', len - i);
		size_t n = nl != NULL ? (size_t)(nl - (p + i)) + 1 : len - i;

		if (p[i] == '.')
			buf_append_byte(&b, '.');
		buf_append(&b, p + i, n);
		i += n;
	}
	if (b.len > 0 && (b.len < 2 || memcmp(b.data + b.len - 2, "\r\n", 2)))
		buf_append(&b, "\r\n", 2);
	buf_append(&b, ".\r\n", 3);
	conn_set_output_max(o->c, b.len + CONN_OUTPUT_MAX);
	conn_write(o->c, b.data, b.len);
	buf_free(&b);
	o->state = OUT_DOT;
}

static int
has_8bit(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] & 0x80)
			return 1;
	return 0;
}

/*
 * MAIL FROM with BODY=8BITMIME and SMTPUTF8 when the message needs them
 * and the server offers them.  To a server without SMTPUTF8, addresses
 * whose only UTF-8 is the domain go with it as A-labels; a UTF-8 local
 * part it cannot take fails every recipient for good (RFC 6531 3.2).
 * 8-bit content goes as it is to a server without 8BITMIME (as most MTAs
 * do).  Returns 0, or -1 when the recipients were failed.
 */
static int
out_send_mail(struct smtp_out *o)
{
	struct smtp_qentry *e = o->e;
	int utf8 = has_8bit((const uint8_t *)e->sender, strlen(e->sender));
	char sender[SMTP_PATH_MAX + 1], a[SMTP_PATH_MAX + 1];
	size_t i;

	for (i = 0; i < e->nrcpts && !utf8; i++)
		utf8 = has_8bit((const uint8_t *)e->rcpts[i],
		    strlen(e->rcpts[i]));
	(void)str_copy(sender, sizeof(sender), e->sender);
	if (utf8 && !o->utf8_offered &&
	    smtp_addr_alabels(e->sender, sender, sizeof(sender)) == 0) {
		for (i = 0; i < e->nrcpts; i++)
			if (e->status[i] == SMTP_QRCPT_PENDING &&
			    smtp_addr_alabels(e->rcpts[i], a, sizeof(a)) < 0)
				break;
		if (i == e->nrcpts) {
			o->alabels = 1;
			utf8 = 0;
		} else
			(void)str_copy(sender, sizeof(sender), e->sender);
	}
	if (utf8 && !o->utf8_offered) {
		(void)str_copy(o->last, sizeof(o->last), "553 5.6.7 the "
		    "receiving server does not accept UTF-8 addresses "
		    "(SMTPUTF8)");
		out_fail_rest(o, 1, o->last);
		conn_printf(o->c, "QUIT\r\n");
		o->state = OUT_QUIT;
		return -1;
	}
	o->utf8_used = utf8;
	/* RFC 3461 5.2.1: the DSN request goes on to a server with DSN. */
	conn_printf(o->c, "MAIL FROM:<%s>%s%s%s%s%s\r\n", sender,
	    o->eightbit_offered && has_8bit(e->msg, e->len) ?
	    " BODY=8BITMIME" : "", utf8 ? " SMTPUTF8" : "",
	    o->dsn_offered && e->ret != SMTP_RET_NONE ?
	    (e->ret == SMTP_RET_HDRS ? " RET=HDRS" : " RET=FULL") : "",
	    o->dsn_offered && e->envid[0] != '\0' ? " ENVID=" : "",
	    o->dsn_offered ? e->envid : "");
	o->state = OUT_MAIL;
	return 0;
}

static void
out_reply(struct smtp_out *o, int code)
{
	struct smtp_qentry *e = o->e;
	const char *err = NULL;
	size_t i, dropped;
	int ok = code >= 200 && code < 300;
	int perm = code >= 500;

	switch (o->state) {
	case OUT_GREETING:
		if (!ok)
			goto fail_all;
		conn_set_timeouts(o->c, SMTP_OUT_IDLE_MS, SMTP_OUT_SESSION_MS);
		conn_printf(o->c, "EHLO %s\r\n", o->ag->sd->hostname);
		o->state = OUT_EHLO;
		break;
	case OUT_EHLO:
		if (!ok)
			goto fail_all;
		if (!o->tls && o->starttls_offered &&
		    o->ag->tls != OUT_TLS_NONE && o->ag->ctx != NULL) {
			conn_printf(o->c, "STARTTLS\r\n");
			o->state = OUT_STARTTLS;
			break;
		}
		if (!o->tls && o->ag->tls >= OUT_TLS_ENCRYPT) {
			(void)str_copy(o->last, sizeof(o->last),
			    "TLS required but not offered by the server");
			perm = 0;
			goto fail_all;
		}
		(void)out_send_mail(o);
		break;
	case OUT_STARTTLS:
		if (!ok) {
			if (o->ag->tls >= OUT_TLS_ENCRYPT) {
				perm = 0;
				goto fail_all;
			}
			(void)out_send_mail(o);
			break;
		}
		/* SECURITY: what the server sent after 220 is dropped. */
		if (conn_starttls_client(o->c, o->ag->ctx, OUT_HOST(o), &dropped,
		    &err) < 0) {
			(void)snprintf(o->last, sizeof(o->last), "TLS: %s",
			    err);
			perm = 0;
			goto fail_all;
		}
		if (dropped > 0)
			log_info(
			    "smtpd: event=outbound-tls-discarded bytes=%zu",
			    dropped);
		o->tls = 1;
		/* RFC 3207 4.2: forget what the server said before TLS. */
		o->starttls_offered = 0;
		o->utf8_offered = 0;
		o->eightbit_offered = 0;
		o->dsn_offered = 0;
		o->state = OUT_EHLO;	/* EHLO is sent from on_tls */
		break;
	case OUT_MAIL:
		if (!ok)
			goto fail_all;
		o->rcpt = 0;
		out_send_rcpt_or_data(o);
		break;
	case OUT_RCPT:
		if (ok)
			o->accepted[o->rcpt] = 1;
		else {
			if (perm)
				e->status[o->rcpt] = SMTP_QRCPT_FAILED;
			free(e->diag[o->rcpt]);
			e->diag[o->rcpt] = xstrdup(o->last);
		}
		o->rcpt++;
		out_send_rcpt_or_data(o);
		break;
	case OUT_DATA:
		if (code != 354)
			goto fail_accepted;
		out_send_body(o);
		break;
	case OUT_DOT:
		if (!ok)
			goto fail_accepted;
		for (i = 0; i < e->nrcpts; i++)
			if (o->accepted[i]) {
				e->status[i] = SMTP_QRCPT_SENT;
				/* No DSN there: we report SUCCESS. */
				if (!o->dsn_offered && e->dflags != NULL)
					e->dflags[i] |= SMTP_QRCPT_F_NODSN;
			}
		conn_printf(o->c, "QUIT\r\n");
		o->state = OUT_QUIT;
		break;
	case OUT_QUIT:
	case OUT_DONE:
		conn_close(o->c);
		break;
	}
	return;
fail_accepted:
	for (i = 0; i < e->nrcpts; i++) {
		if (!o->accepted[i])
			continue;
		if (perm)
			e->status[i] = SMTP_QRCPT_FAILED;
		free(e->diag[i]);
		e->diag[i] = xstrdup(o->last);
	}
	conn_printf(o->c, "QUIT\r\n");
	o->state = OUT_QUIT;
	return;
fail_all:
	if (out_before_mail(o)) {
		/* Another destination may take it (RFC 5321 5.1). */
		o->next_host = 1;
		o->next_perm = perm;
	} else
		out_fail_rest(o, perm, o->last);
	conn_printf(o->c, "QUIT\r\n");
	o->state = OUT_QUIT;
}

static void
out_on_input(struct conn *c, void *arg)
{
	struct smtp_out *o = arg;
	const char *line;
	size_t len, i, k = 0;
	int r;

	while (!conn_closing(c) && (r = conn_read_line(c, &line, &len)) !=
	    CONN_MORE) {
		int code;

		if (r == CONN_LINE_TOO_LONG || len < 3 || line[0] < '2' ||
		    line[0] > '5' || line[1] < '0' || line[1] > '9' ||
		    line[2] < '0' || line[2] > '9' ||
		    (len > 3 && line[3] != ' ' && line[3] != '-')) {
			(void)str_copy(o->last, sizeof(o->last),
			    "malformed reply from the server");
			out_fail_rest(o, 0, o->last);
			conn_abort(c);
			return;
		}
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		    (line[2] - '0');
		if (o->state == OUT_EHLO && len > 4) {
			if (str_casecmp(line + 4, "STARTTLS") == 0)
				o->starttls_offered = 1;
			else if (str_casecmp(line + 4, "SMTPUTF8") == 0)
				o->utf8_offered = 1;
			else if (str_casecmp(line + 4, "8BITMIME") == 0)
				o->eightbit_offered = 1;
			else if (str_casecmp(line + 4, "DSN") == 0)
				o->dsn_offered = 1;
		}
		/* Keep a printable copy of the reply for DSNs. */
		for (i = 0; i < len && k + 1 < sizeof(o->last); i++)
			if (line[i] >= ' ' && line[i] <= '~')
				o->last[k++] = line[i];
		o->last[k] = '\0';
		k = 0;
		if (len > 3 && line[3] == '-')
			continue;
		out_reply(o, code);
		if (o->state == OUT_EHLO && o->tls && conn_is_tls(c) &&
		    !conn_tls_ready(c))
			return;		/* the handshake runs first */
	}
}

static void
out_on_tls(struct conn *c, void *arg)
{
	struct smtp_out *o = arg;

	conn_printf(c, "EHLO %s\r\n", o->ag->sd->hostname);
}

static void
out_on_close(struct conn *c, enum conn_close_reason why, void *arg)
{
	struct smtp_out *o = arg;

	(void)c;
	if (o->state != OUT_QUIT && o->state != OUT_DONE) {
		(void)snprintf(o->last, sizeof(o->last),
		    "451 4.4.2 connection to %s[%s] lost (%s)", OUT_HOST(o),
		    o->dest[o->cur].ip, conn_close_reason_str(why));
		if (out_before_mail(o)) {
			o->next_host = 1;
			o->next_perm = 0;
		} else
			out_fail_rest(o, 0, o->last);
	}
	o->c = NULL;
	if (o->next_host) {
		log_info("smtpd: event=outbound-next queue=%s host=%s ip=%s "
		    "error=\"%s\"", o->e->id, OUT_HOST(o), o->dest[o->cur].ip,
		    o->last);
		if (o->cur + 1 < o->ndest) {
			o->cur++;
			out_connect(o);
			return;
		}
		out_fail_rest(o, o->next_perm, o->last);
	}
	out_finish(o);
}

/* ---- set-up ---- */

struct smtp_agent *
smtp_agent_new(struct smtpd *sd, struct smtp_queue *q)
{
	struct smtp_agent *ag = xcalloc(1, sizeof(*ag));
	struct tls_settings ts;
	uint64_t greet;
	struct timeval tv = { SMTP_OUT_SCAN_SECONDS, 0 };
	const char *mode = config_str(sd->cfg, "smtpd", "outbound_tls");
	const char *err = NULL;

	ag->sd = sd;
	ag->q = q;
	ag->busy = xcalloc(SMTP_QUEUE_SCAN_MAX, sizeof(*ag->busy));
	(void)str_copy(ag->relayhost, sizeof(ag->relayhost),
	    config_str(sd->cfg, "smtpd", "relayhost"));
	ag->retry = config_duration(sd->cfg, "smtpd", "queue_retry");
	if (ag->retry == 0)
		ag->retry = 1;
	ag->lifetime = config_duration(sd->cfg, "smtpd", "queue_lifetime");
	ag->delay_warning = config_duration(sd->cfg, "smtpd",
	    "delay_warning");
	greet = config_duration(sd->cfg, "smtpd", "outbound_connect_timeout");
	ag->greet_ms = greet == 0 || greet > SMTP_OUT_IDLE_MS / 1000 ?
	    SMTP_OUT_IDLE_MS : (unsigned)greet * 1000;
	if (strcmp(mode, "none") == 0)
		ag->tls = OUT_TLS_NONE;
	else if (strcmp(mode, "encrypt") == 0)
		ag->tls = OUT_TLS_ENCRYPT;
	else if (strcmp(mode, "verify") == 0)
		ag->tls = OUT_TLS_VERIFY;
	else
		ag->tls = OUT_TLS_MAY;
	tls_settings_from_config(sd->cfg, &ts);
	if (ag->tls != OUT_TLS_NONE && tls_client_ctx_new(&ts,
	    ag->tls == OUT_TLS_VERIFY ? TLS_VERIFY_REQUIRE :
	    TLS_VERIFY_OPPORTUNISTIC, &ag->ctx, &err) < 0) {
		log_warnx("smtpd: outbound TLS: %s", err);
		ag->ctx = NULL;
	}
	ag->timer = event_new(sd->base, -1, EV_PERSIST, on_timer, ag);
	event_add(ag->timer, &tv);
	return ag;
}
