/*
 * smtp_queue.h - govmail-smtpd's outbound queue: messages from
 * authenticated users (and alias targets) for other domains, kept durably
 * until the delivery agent (smtp_out.c) hands them on or gives up and
 * returns a delivery status notification (RFC 3464) to the sender.
 *
 * govmail-smtpd workers; the functions here block on disk I/O and run on
 * helper threads.  The queue lives in the store (mailbox.h
 * store_queue_*): one record per message and destination domain, written
 * in the same durable transaction as the local copies (store_deliver_ex
 * calling smtp_queue_stage) before the client gets its 250.  The store
 * keeps the bytes opaque; their encoding is here.  Records are our own;
 * they are still length-checked when read back.  A local domain's entry
 * is a notice copy deferred because the mailbox was full: the agent
 * retries it into the store (smtp_queue_local_try).
 */
#ifndef GOVMAIL_SMTP_QUEUE_H
#define GOVMAIL_SMTP_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "smtp_parse.h"

struct config;
struct store;
struct store_txn_queue;

/* Queue ids: 16 random bytes in hex. */
#define SMTP_QUEUE_ID_LEN 32
/* Entries one scan of the delivery agent takes at most. */
#define SMTP_QUEUE_SCAN_MAX 32
/*
 * Record format version (first byte).  2 added the DSN request (RET,
 * ENVID; NOTIFY, ORCPT and DSN flags per recipient); version 1 records
 * still decode, with the defaults.
 */
#define SMTP_QUEUE_REC_VERSION 2

/* Status of one recipient of an entry. */
enum smtp_qrcpt_status {
	SMTP_QRCPT_PENDING = 0,
	SMTP_QRCPT_SENT,
	SMTP_QRCPT_FAILED,	/* permanently: goes into a DSN */
};

/* DSN flags of one recipient of an entry (smtp_qentry.dflags). */
#define SMTP_QRCPT_F_DELAYED 0x01	/* its "delayed" DSN was sent */
#define SMTP_QRCPT_F_NODSN 0x02		/* relayed to a server sans DSN */
#define SMTP_QRCPT_F_REPORTED 0x04	/* its success DSN was sent */
#define SMTP_QRCPT_F_EXPANDED 0x08	/* a list: "expanded" */

struct smtp_qentry {
	char id[SMTP_QUEUE_ID_LEN + 1];
	int64_t created;		/* wall clock, seconds */
	int64_t next_try;
	uint32_t attempts;
	char *sender;			/* "" for the null sender */
	char domain[SMTP_DOMAIN_MAX + 1];
	char **rcpts;
	uint8_t *status;		/* enum smtp_qrcpt_status per rcpt */
	char **diag;			/* last reply per rcpt, or NULL */
	size_t nrcpts;
	uint8_t *msg;
	size_t len;
	/*
	 * The DSN request (RFC 3461).  The arrays may be NULL (entries made
	 * on the fly for a DSN): every recipient then has the defaults.
	 */
	uint8_t ret;			/* enum smtp_ret */
	char envid[SMTP_ENVID_MAX + 1];	/* xtext as received, or "" */
	uint8_t *notify;		/* SMTP_NOTIFY_* per rcpt; 0: FAILURE */
	uint8_t *dflags;		/* SMTP_QRCPT_F_* per rcpt */
	char **orcpt;			/* ORCPT per rcpt, or NULL */
};

/*
 * The queue is in the store, so there is nothing to open; the handle
 * says that relaying through it is enabled (smtpd keeps NULL when not).
 * Free with smtp_queue_close().
 */
struct smtp_queue;
int smtp_queue_open(const struct config *cfg, struct smtp_queue **q_r,
    const char **error_r);
void smtp_queue_close(struct smtp_queue *q);

/*
 * Inside a delivery transaction (store_deliver_ex's queue_cb): queue msg
 * for rcpts (addresses "local@domain"), one entry per domain, with fresh
 * ids.  sender "" is the null sender.  Returns 0 or a store error.
 */
int smtp_queue_stage(struct store_txn_queue *tq, const char *sender,
    char *const *rcpts, size_t nrcpts, const uint8_t *msg, size_t len);
/*
 * The same, each recipient with the NOTIFY and ORCPT its RCPT asked for
 * and every entry with env's RET and ENVID (env may be NULL).
 */
struct smtp_dsn_env;
int smtp_queue_stage_dsn(struct store_txn_queue *tq, const char *sender,
    char *const *rcpts, size_t nrcpts, const uint8_t *msg, size_t len,
    const struct smtp_dsn_env *env);

/* The same as one transaction of its own.  Returns 0 or -1, *error_r. */
int smtp_queue_add(struct store *st, const char *sender,
    char *const *rcpts, size_t nrcpts, const uint8_t *msg, size_t len,
    const char **error_r);

/*
 * Entries due at now (next_try <= now), at most max, as fresh structs in
 * *entries_r (free each with smtp_qentry_free, then the array).
 */
int smtp_queue_due(struct store *st, int64_t now, size_t max,
    struct smtp_qentry ***entries_r, size_t *n_r, const char **error_r);

/* Write the entry back (after an attempt) or remove it. */
int smtp_queue_put(struct store *st, const struct smtp_qentry *e,
    const char **error_r);
int smtp_queue_remove(struct store *st, const char *id,
    const char **error_r);

/*
 * The agent's turn for an entry of a LOCAL domain (a notice copy deferred
 * over quota): deliver the pending recipients into the store, and in the
 * same transaction update the notice report (by the message's
 * Message-ID) and the entry (delivered ones done, still-full ones retried
 * after retry seconds, doubling, at most retry_max; removed when none is
 * left).  Past lifetime the rest fail: a DSN to the sender and "failed"
 * in the report.  Returns 1 if e was a local entry (handled), 0 if it is
 * for a remote domain, -1 on a store error (the entry stays).
 */
int smtp_queue_local_try(struct store *st, struct smtp_queue *q,
    struct smtp_qentry *e, int64_t now, uint64_t retry, uint64_t retry_max,
    uint64_t lifetime, const char *hostname);

void smtp_qentry_free(struct smtp_qentry *e);

/* ---- delivery status notifications (smtp_dsn.c) ---- */

/*
 * What a DSN reports; 0 and 1 are what the "expired" argument of
 * smtp_dsn_build/smtp_dsn_send always meant.  Which recipients of the
 * entry it names (a recipient's NOTIFY decides, RFC 3461 4.1; none given
 * means FAILURE; NEVER means nothing, ever):
 */
enum smtp_dsn_kind {
	SMTP_DSN_FAILED = 0,	/* SMTP_QRCPT_FAILED ones: Action failed */
	SMTP_DSN_EXPIRED = 1,	/* and the pending ones: failed, 4.4.7 */
	SMTP_DSN_DELAYED,	/* pending, NOTIFY=DELAY, not yet warned:
				   Action delayed */
	SMTP_DSN_DELIVERED,	/* SENT, NOTIFY=SUCCESS, not yet reported:
				   Action delivered (or expanded, a list) */
	SMTP_DSN_RELAYED,	/* the same, to a server without DSN
				   (SMTP_QRCPT_F_NODSN): Action relayed */
};

/* One RCPT that carried NOTIFY or ORCPT, and the addresses it became. */
struct smtp_dsn_rcpt {
	char *rcpt;			/* the RCPT TO address */
	unsigned notify;		/* SMTP_NOTIFY_* bits, 0: default */
	char *orcpt;			/* ORCPT as received, or NULL */
	int list;			/* a list: members do not inherit
					   NOTIFY (RFC 3461 6.2.7.1) */
	char **targets;			/* accounts, remote addresses */
	size_t ntargets;
};

/* The DSN request of one transaction (MAIL's RET/ENVID, the RCPTs'). */
struct smtp_dsn_env {
	enum smtp_ret ret;
	char envid[SMTP_ENVID_MAX + 1];	/* xtext as received, or "" */
	struct smtp_dsn_rcpt *rcpts;
	size_t nrcpts, alloc;
};

/*
 * Note a RCPT's DSN parameters (only when it has NOTIFY or ORCPT) and
 * what it resolved to: targets (n of them, copied) for an account, an
 * alias or a remote address; list != 0 for a list.  *envp is created on
 * first use.  At most one entry per RCPT, so bounded by max_recipients.
 */
void smtp_dsn_env_note(struct smtp_dsn_env **envp, const char *rcpt,
    const struct smtp_rcpt_params *rp, int list, char *const *targets,
    size_t n);
/*
 * The transaction's request for the job: *envp (or a fresh one when only
 * MAIL had RET/ENVID) with mp's RET and ENVID, or NULL when nothing was
 * asked.  *envp is NULL afterwards; the caller owns the result.
 */
struct smtp_dsn_env *smtp_dsn_env_take(struct smtp_dsn_env **envp,
    const struct smtp_mail_params *mp);
void smtp_dsn_env_free(struct smtp_dsn_env *env);
/* The entry whose targets include addr, or NULL. */
const struct smtp_dsn_rcpt *smtp_dsn_env_find(const struct smtp_dsn_env *env,
    const char *addr);

/*
 * A delivery status notification (RFC 3464 multipart/report) to e's
 * sender for the recipients that kind names: a human-readable part, the
 * message/delivery-status part (Reporting-MTA, Original-Envelope-Id from
 * ENVID, Arrival-Date; per recipient Original-Recipient from ORCPT,
 * Final-Recipient, Action, Status, Diagnostic-Code), and the original:
 * for failures the whole message (message/rfc822) unless RET=HDRS, else
 * (and for delay and success reports, RFC 3461 4.3) only its header
 * (text/rfc822-headers).  UTF-8 addresses are written as RFC 6533
 * utf-8-addr-xtext.  Returns a fresh buffer (*len_r bytes) the caller
 * frees, or NULL when kind names no recipient.
 */
uint8_t *smtp_dsn_build(const char *hostname, const struct smtp_qentry *e,
    int kind, size_t *len_r);

/*
 * Send that DSN: into the sender's INBOX when the sender's domain is
 * local (st), else through the queue (st; q may be NULL: then dropped,
 * and logged) with the null sender.  Nothing for a null sender (a bounce
 * is never bounced) or when kind names no recipient.  Logs failures;
 * returns 0 or -1.
 */
int smtp_dsn_send(struct store *st, struct smtp_queue *q,
    const char *hostname, const struct smtp_qentry *e, int kind);
/*
 * The same for an entry made on the fly (local recipients of a
 * submission), taking each recipient's NOTIFY and ORCPT from env.
 */
int smtp_dsn_send_env(struct store *st, struct smtp_queue *q,
    const char *hostname, const struct smtp_qentry *e, int kind,
    const struct smtp_dsn_env *env);

/*
 * The agent after an attempt on e (before e is written back): a
 * "relayed" DSN for the recipients just handed to a server without DSN
 * that asked for SUCCESS, and once delay_warning seconds (0: never) have
 * passed since e was queued, one "delayed" DSN for the still pending ones
 * that asked for DELAY.  Marks them (SMTP_QRCPT_F_REPORTED, _DELAYED) so
 * that each report is sent once.
 */
void smtp_dsn_progress(struct store *st, struct smtp_queue *q,
    const char *hostname, struct smtp_qentry *e, int64_t now,
    uint64_t delay_warning);

#endif
