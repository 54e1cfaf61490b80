/*
 * smtp_data.c - DATA and BDAT for govmail-smtpd: the trace headers, the
 * message read as it streams in (size and line limits enforced as bytes
 * arrive, a bare CR or LF ends the session), the submission checks of
 * From:, and the delivery (queue for other domains, store_deliver for
 * local recipients) on a helper thread before the reply.
 *
 * govmail-smtpd workers, loop thread (delivery on a helper thread).  The
 * message bytes are the client's and trusted for nothing.
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
	smtp_esc(s->helo_name, strlen(s->helo_name), helo, sizeof(helo));
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

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort v and drop repeated addresses (freed); returns the new count. */
static size_t
addrs_unique(char **v, size_t n)
{
	size_t i, k = 0;

	if (n < 2)	/* qsort(NULL, 0, ...) is undefined */
		return n;
	qsort(v, n, sizeof(*v), cmp_str);
	for (i = 0; i < n; i++) {
		if (k > 0 && strcmp(v[k - 1], v[i]) == 0)
			free(v[i]);
		else
			v[k++] = v[i];
	}
	return k;
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

	/* Deferred notice copies are queued, not failed. */
	ok += job->deferred;
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
		if (job->results[i].status == STORE_OK ||
		    (job->deferred > 0 &&
		    job->results[i].status == STORE_EQUOTA))
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
	(void)smtp_dsn_send_env(st, job->queue, job->hostname, &e, 0,
	    job->dsn);
	free(e.rcpts);
	free(e.status);
	free(e.diag);
}

/*
 * In the delivery transaction (store_deliver_ex): the remote recipients'
 * queue entries, and for a notice the copies of members over quota
 * (deferred: retried by the agent into the store).
 */
static int
job_queue_cb(struct store_txn_queue *tq, const struct store_rcpt_result *res,
    size_t nres, void *arg)
{
	struct smtp_job *job = arg;
	char **full;
	size_t i, n = 0;
	int r = 0;

	if (job->nremote > 0 && (r = smtp_queue_stage_dsn(tq, job->sender,
	    job->remote, job->nremote, job->msg, job->len, job->dsn)) != 0)
		return r;
	if (job->notice_list == NULL)
		return 0;
	full = xcalloc(nres + 1, sizeof(*full));
	for (i = 0; i < nres; i++)
		if (res[i].status == STORE_EQUOTA)
			full[n++] = job->rcpts[i];
	if (n > 0)
		r = smtp_queue_stage(tq, job->sender, full, n,
		    job->lmsg != NULL ? job->lmsg : job->msg,
		    job->lmsg != NULL ? job->llen : job->len);
	free(full);
	return r;
}

static void
job_deliver_store(struct smtp_job *job, struct store *st)
{
	struct store_deliver_opts o;
	char id[STORE_NOTICE_ID_MAX + 1];
	size_t i;

	/* Signatures, notice lists, official senders (CPU work: here). */
	if (job->nrcpts > 0 && smtp_notice_check(job) < 0) {
		job->dres = 0;
		return;
	}
	if (job->nrcpts == 0 && job->nremote == 0) {
		job->dres = 0;
		return;
	}
	if (st == NULL) {
		job->dres = STORE_ETEMP;
		job->derr = "store unavailable";
		return;
	}
	/*
	 * One transaction: the local copies, the queue entries, the notice
	 * report and the de-duplication record.  A failure anywhere is
	 * answered 451 as a whole, and nothing was stored.
	 */
	memset(&o, 0, sizeof(o));
	smtp_notice_record_id(job, id, sizeof(id));
	if (job->notice_list != NULL && id[0] != '\0') {
		o.notice_id = id;
		o.notice_list = job->notice_list;
		o.notice_sender = job->sender;
		o.notice_defer = 1;
	}
	if (job->auth_user[0] != '\0' && id[0] != '\0' &&
	    job->dedup_window > 0) {
		o.dedup_account = job->auth_user;
		o.dedup_id = id;
		o.dedup_until = (int64_t)time(NULL) + (int64_t)job->dedup_window;
		o.dedup_ref = job->ref;
	}
	o.queue_cb = job_queue_cb;
	o.queue_ctx = job;
	job->dres = store_deliver_ex(st, job->lmsg != NULL ? job->lmsg :
	    job->msg, job->lmsg != NULL ? job->llen : job->len,
	    (const char *const *)job->rcpts, job->nrcpts, 0, job->results, &o,
	    job->dup_ref, &job->derr);
	if (job->dres == STORE_EEXISTS && o.dedup_id != NULL) {
		/* Submitted again (a client's retry): nothing stored. */
		job->duplicate = 1;
		job->dres = 0;
		for (i = 0; i < job->nrcpts; i++)
			job->results[i].status = STORE_OK;
		return;
	}
	if (job->dres != 0)
		return;
	job->queued = job->nremote > 0;
	if (o.notice_id != NULL) {
		for (i = 0; i < job->nrcpts; i++)
			if (job->results[i].status == STORE_EQUOTA)
				job->deferred++;
		log_info("smtpd: event=notice-recorded list=%s rcpts=%zu "
		    "deferred=%zu", job->notice_list, job->nrcpts,
		    job->deferred);
	}
	job_partial_dsn(job, st);
	smtp_dsn_local(job, st);
}

/*
 * The delivery's transactions commit without waiting for the disk, which
 * releases their locks at once; one log flush then makes all of them
 * durable before the reply.  Deliveries to the same mailbox no longer
 * queue behind each other's fsync, and concurrent deliveries share one
 * flush.  Others may see the message a moment before it is durable; a
 * crash in that moment loses it unacknowledged (store_sync, mailbox.h).
 */
static void
job_deliver_work(void *arg)
{
	struct smtp_job *job = arg;
	struct store *st = smtp_job_store(job->cfg);
	const char *err = NULL;

	if (st != NULL)
		store_set_deferred_sync(st, 1);
	job_deliver_store(job, st);
	if (st == NULL)
		return;
	store_set_deferred_sync(st, 0);
	if (store_take_unsynced(st) && store_sync(st, &err) < 0 &&
	    job->dres == 0 && !job->duplicate) {
		log_warnx("smtpd: event=log-flush-failed error=\"%s\"",
		    err != NULL ? err : "?");
		job->dres = STORE_ETEMP;
		job->derr = err;
	}
}

static void
job_deliver_done(void *arg)
{
	struct smtp_job *job = arg;
	struct smtp_session *s = job->s;
	size_t i, ok = 0, quota = 0, other = 0;

	if (job->refuse[0] != '\0') {
		/* smtp_notice_check refused it: nothing was stored. */
		log_info("smtpd: s=%s event=refused reply=\"%s\"",
		    s != NULL ? s->id : "-", job->refuse);
		if (s != NULL) {
			smtp_reply(s, "%s", job->refuse);
			s->msg_count++;
		}
		smtp_job_free(job);
		if (s != NULL) {
			smtp_transaction_reset(s);
			smtp_session_idle(s);
		}
		return;
	}
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
	/* Deferred notice copies are accepted: queued for local retry. */
	if (job->deferred > 0 && quota >= job->deferred) {
		quota -= job->deferred;
		ok += job->deferred;
	}
	if (job->duplicate)
		log_info("smtpd: s=%s event=duplicate earlier=%s",
		    s != NULL ? s->id : "-", job->dup_ref);
	else
		log_info("smtpd: s=%s event=delivered result=%d size=%zu "
		    "rcpts=%zu queued=%zu ok=%zu quota=%zu failed=%zu",
		    s != NULL ? s->id : "-", job->dres, job->len, job->nrcpts,
		    job->queued ? job->nremote : 0, ok, quota, other);
	if (s == NULL) {
		smtp_job_free(job);
		return;
	}
	if (job->duplicate)
		smtp_reply(s, "250 2.0.0 Already delivered as %s",
		    job->dup_ref[0] != '\0' ? job->dup_ref : "before");
	else if (job->dres == STORE_ETOOBIG)
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
	else if (job->dres < 0)
		smtp_reply(s, "451 4.3.0 Temporary failure, try again later");
	else if (ok > 0)
		smtp_reply(s, "250 2.0.0 Ok: delivered as %s-%u", s->id,
		    s->msg_count);
	else if (quota > 0)
		smtp_reply(s, "452 4.2.2 Mailbox full");
	else
		smtp_reply(s, "550 5.1.1 No mailbox accepted the message");
	s->msg_count++;
	smtp_job_free(job);
	smtp_transaction_reset(s);
	smtp_session_idle(s);
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
		if (end - i > nlen && str_ncaseeq((const char *)p + i, name,
		    nlen)) {
			size_t j = i + nlen;

			while (j < end && (p[j] == ' ' || p[j] == '\t' ||
			    p[j] == '\r' || p[j] == '\n'))
				j++;
			if (end - j > hlen && str_ncaseeq((const char *)p + j,
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
			smtp_reply(s, "550 5.6.0 A submission needs one valid "
			    "From: header");
			smtp_transaction_reset(s);
			return;
		}
		for (i = 0; i < (size_t)n && r == 1; i++)
			r = smtp_sender_allowed(s, addrs[i]);
		if (r != 1) {
			if (r < 0)
				smtp_reply(s,
				    "451 4.3.0 Temporary failure, try "
				    "again later");
			else
				smtp_reply(s,
				    "550 5.7.1 From: address not owned "
				    "by the authenticated user");
			smtp_transaction_reset(s);
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
	/* Each address once, however many RCPTs and lists named it. */
	s->nlocal = addrs_unique(s->local, s->nlocal);
	s->nremote = addrs_unique(s->remote, s->nremote);
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
	job->trace_len = s->trace_len;
	job->authenticated = s->user != NULL;
	/* Exactly-once submission: (account, Message-ID) is remembered. */
	if (s->user != NULL)
		(void)str_copy(job->auth_user, sizeof(job->auth_user),
		    s->user);
	(void)snprintf(job->ref, sizeof(job->ref), "%s-%u", s->id,
	    s->msg_count);
	job->dedup_window = config_duration(job->cfg, "smtpd",
	    "dedup_window");
	if (job->dedup_window > (uint64_t)STORE_DEDUP_WINDOW_MAX)
		job->dedup_window = (uint64_t)STORE_DEDUP_WINDOW_MAX;
	if (s->notice)
		job->notice_list = xstrdup(s->notice_list);
	job->dsn = smtp_dsn_env_take(&s->dsn, &s->mp);
	job->results = xcalloc(job->nrcpts, sizeof(*job->results));
	if (tpool_submit(s->sd->pool, job_deliver_work, job_deliver_done, job,
	    &err) < 0) {
		smtp_job_free(job);
		smtp_reply(s, "451 4.3.0 Server busy, try again later");
		smtp_transaction_reset(s);
		return;
	}
	smtp_session_busy(s, job);
}

void
smtp_cmd_data(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	(void)cmd;
	if (arg[0] != '\0') {
		smtp_error_reply(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->nlocal + s->nremote == 0) {
		smtp_error_reply(s, "554 5.5.1 No valid recipients");
		return;
	}
	trace_headers(s);
	smtp_data_init(&s->data);
	s->mode = SMTP_MODE_DATA;
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

void
smtp_data_input(struct smtp_session *s)
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
			smtp_reply(s, "554 5.5.2 Bare CR or LF in message "
			    "refused, closing");
			smtp_transaction_reset(s);
			conn_close(s->c);
			return;
		}
		if (s->data.faults & SMTP_DATA_F_TOO_BIG)
			smtp_reply(s,
			    "552 5.3.4 Message size exceeds fixed limit");
		else if (s->data.faults & SMTP_DATA_F_LONG_LINE)
			smtp_reply(s, "554 5.6.0 Message line longer than %d "
			    "characters", SMTP_TEXT_LINE_MAX);
		else if (s->data.faults & SMTP_DATA_F_NUL)
			smtp_reply(s, "554 5.6.0 NUL byte in message refused");
		else {
			message_complete(s);
			return;
		}
		smtp_transaction_reset(s);
		return;
	}
}

void
smtp_cmd_bdat(struct smtp_session *s, enum smtp_cmd cmd, const char *arg)
{
	const char *sp = strchr(arg, ' '), *err;
	size_t nlen = sp != NULL ? (size_t)(sp - arg) : strlen(arg);
	uint64_t size;

	(void)cmd;
	if (nlen == 0 || nlen > 20 ||
	    strnum_u64_n(arg, nlen, UINT64_MAX, &size, &err) < 0 ||
	    (sp != NULL && str_casecmp(sp + 1, "LAST") != 0)) {
		/* We cannot know how many bytes follow: end the session. */
		smtp_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]; closing");
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
		smtp_reply(s, "%s", s->bdat_reply);
		if (s->bdat_active)
			smtp_transaction_reset(s);
		return;
	}
	if (!s->bdat_last) {
		smtp_reply(s, "250 2.0.0 %llu octets received",
		    (unsigned long long)s->bdat_size);
		return;
	}
	message_complete(s);
}

void
smtp_bdat_input(struct smtp_session *s)
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

