/*
 * smtp_session.h - what smtp_session.c (commands, EHLO, STARTTLS, MAIL,
 * RCPT), smtp_auth.c (AUTH) and smtp_data.c (DATA, BDAT, delivery) share:
 * the session and job structures and the session helpers.
 *
 * govmail-smtpd workers, loop thread.  Private to smtpd/.
 */
#ifndef GOVMAIL_SMTP_SESSION_H
#define GOVMAIL_SMTP_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "mailbox.h"
#include "sasl.h"
#include "smtp_parse.h"
#include "smtpd.h"

struct conn;
struct smtp_dsn_env;
struct store;
struct smtp_queue;
struct store_rcpt_result;

/* Longest reply text we build (our own text plus an escaped address). */
#define SMTP_REPLY_MAX 1024
/* Longest numeric address text ("ffff:...:ffff"). */
#define SMTP_IP_MAX 46	/* INET6_ADDRSTRLEN */

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
	int user_class;			/* its enum store_class, 0 unknown */
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
	/* a notice list (STORE_LIST_NOTICE) is among the recipients */
	int notice;
	char notice_list[SMTP_PATH_MAX + 1];
	/* RCPTs with NOTIFY/ORCPT (RFC 3461), or NULL (smtp_dsn.c) */
	struct smtp_dsn_env *dsn;
};

enum smtp_job_kind {
	SMTP_JOB_AUTH_START,
	SMTP_JOB_AUTH_STEP,
	SMTP_JOB_DELIVER,
	SMTP_JOB_RESOLVE,		/* a RCPT that is not an account */
};

/* A RCPT resolved on a helper thread (lists, aliases): its inputs, result. */
struct smtp_rcpt_pending {
	struct smtp_path path;
	struct smtp_rcpt_params rp;
	char sender[SMTP_PATH_MAX + 1];	/* "" for none (list posters) */
	int r;				/* store_resolve's result */
	struct store_rcpt_set set;
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
	int aclass;			/* on OK: the account's store_class */
	/* deliver */
	uint8_t *msg;
	size_t len;
	char **rcpts;
	size_t nrcpts;
	char **remote;
	size_t nremote;
	char *sender;
	const char *hostname;
	struct smtp_queue *queue;
	int queued;
	struct store_rcpt_result *results;
	int dres;
	const char *derr;
	/* notices and sender authenticity (smtp_notice.c) */
	size_t trace_len;		/* our trace headers in msg */
	int authenticated;		/* submitted by an authenticated user */
	char *notice_list;		/* a notice list rcpt, or NULL */
	uint8_t *lmsg;			/* rewritten copy for local delivery */
	size_t llen;
	char refuse[SMTP_REPLY_MAX];	/* refusal reply, "" if none */
	/* the DSN request (RET, ENVID, NOTIFY, ORCPT), or NULL */
	struct smtp_dsn_env *dsn;
	/* exactly-once submission and deferred copies (smtp_data.c) */
	char auth_user[SMTP_PATH_MAX + 1];	/* "" unless authenticated */
	char ref[SMTP_PATH_MAX + 1];	/* the "delivered as" id */
	char dup_ref[SMTP_PATH_MAX + 1];	/* a duplicate's earlier id */
	int duplicate;			/* already accepted: nothing stored */
	uint64_t dedup_window;		/* [smtpd] dedup_window, s */
	size_t deferred;		/* notice copies queued over quota */
	/* resolve */
	struct smtp_rcpt_pending *rcpt;
};

/* Queue a reply line (CRLF added). */
void smtp_reply(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * A refused command: count it against [smtpd] max_errors; past it the
 * reply is 421 and the session closes.
 */
void smtp_error_reply(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* log_escape() of client text. */
const char *smtp_esc(const void *p, size_t len, char *out, size_t outsz);
/* Monotonic seconds, for rate limits. */
int64_t smtp_now(void);
/* Forget the transaction (MAIL, recipients, message). */
void smtp_transaction_reset(struct smtp_session *s);
/* A job runs for s: input paused until smtp_session_idle(). */
void smtp_session_busy(struct smtp_session *s, struct smtp_job *job);
void smtp_session_idle(struct smtp_session *s);
void smtp_job_free(struct smtp_job *job);
/* 1 if AUTH may be offered and used on this session now. */
int smtp_auth_offered(const struct smtp_session *s);
/* May the authenticated user send as addr? 1 yes, 0 no, -1 store error. */
int smtp_sender_allowed(struct smtp_session *s, const char *addr);

/* smtp_notice.c (helper threads) */
/*
 * Before delivery: verify an S/MIME signature against [smtpd]
 * notice_ca_file (and notice_crl_file), enforce the notice-list rules and
 * the official-domain policy, and prepare job->lmsg (the message with
 * Authentication-Results: smime=... and, when tagged, the warning).
 * Returns 0 to deliver, -1 when refused (job->refuse holds the reply).
 */
int smtp_notice_check(struct smtp_job *job);
/*
 * Before delivery: the notice's Message-ID (id, idsz bytes) for the
 * report that store_deliver_ex writes with the copies; "" (and a log
 * line) when the message has none.
 */
void smtp_notice_record_id(struct smtp_job *job, char *id, size_t idsz);

/* smtp_dsn.c (helper threads) */
/*
 * After local delivery: a "delivered" DSN (RFC 3464) for each local
 * recipient whose RCPT asked NOTIFY=SUCCESS and got its copy, "expanded"
 * for a list that did.  Nothing without job->dsn or for a null sender.
 */
void smtp_dsn_local(struct smtp_job *job, struct store *st);

/* smtp_auth.c */
void smtp_cmd_auth(struct smtp_session *s, enum smtp_cmd cmd,
    const char *arg);
/* A line while an AUTH exchange waits for the client. */
void smtp_auth_line(struct smtp_session *s, const char *line, size_t len);
/* End the exchange (its SASL session is freed). */
void smtp_auth_end(struct smtp_session *s);

/* smtp_data.c */
void smtp_cmd_data(struct smtp_session *s, enum smtp_cmd cmd,
    const char *arg);
void smtp_cmd_bdat(struct smtp_session *s, enum smtp_cmd cmd,
    const char *arg);
/* Consume buffered DATA bytes / BDAT chunk bytes. */
void smtp_data_input(struct smtp_session *s);
void smtp_bdat_input(struct smtp_session *s);

#endif
