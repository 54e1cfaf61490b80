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
/* Record format version (first byte). */
#define SMTP_QUEUE_REC_VERSION 1

/* Status of one recipient of an entry. */
enum smtp_qrcpt_status {
	SMTP_QRCPT_PENDING = 0,
	SMTP_QRCPT_SENT,
	SMTP_QRCPT_FAILED,	/* permanently: goes into a DSN */
};

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

/* The message's Message-ID ("<...>", printable ASCII) into out, or "". */
void smtp_queue_message_id(const uint8_t *msg, size_t len, char *out,
    size_t outsz);

void smtp_qentry_free(struct smtp_qentry *e);

/*
 * A delivery status notification (RFC 3464 multipart/report) to e's
 * sender for the recipients whose status is SMTP_QRCPT_FAILED, or all
 * still pending ones when expired != 0, with the original's header.
 * Returns a fresh buffer (*len_r bytes) the caller frees.
 */
uint8_t *smtp_dsn_build(const char *hostname, const struct smtp_qentry *e,
    int expired, size_t *len_r);

/*
 * Send that DSN: into the sender's INBOX when the sender's domain is
 * local (st), else through the queue q (may be NULL: then dropped, and
 * logged) with the null sender.  Nothing for a null sender: a bounce is
 * never bounced.  Logs failures; returns 0 or -1.
 */
int smtp_dsn_send(struct store *st, struct smtp_queue *q,
    const char *hostname, const struct smtp_qentry *e, int expired);

#endif
