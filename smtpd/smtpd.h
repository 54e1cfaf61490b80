/*
 * smtpd.h - govmail-smtpd internals shared by its files: the worker's
 * context, the session entry points, the helper-thread jobs and the rate
 * limiter.
 *
 * govmail-smtpd only (no other part includes this).  smtpd.c runs the
 * parent and sets up each worker; smtp_session.c is the protocol on the
 * worker's event loop; smtp_job.c is what runs on helper threads (SASL
 * with Argon2id, store_deliver); smtp_rate.c counts messages per account
 * and per client address.
 */
#ifndef GOVMAIL_SMTPD_H
#define GOVMAIL_SMTPD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "smtp_parse.h"

struct buf;
struct config;
struct conn;
struct sasl_ratelimit;
struct sasl_session;
struct store;
struct tpool;
struct smtp_rate;
struct smtp_queue;
struct smtp_agent;

/* Longest host name used in the greeting and trace headers. */
#define SMTPD_HOSTNAME_MAX 253
/* Helper threads per worker at most (the [smtpd] threads key). */
#define SMTPD_THREADS_MAX 32
/* Seconds between store_maintain() runs of a worker. */
#define SMTPD_MAINTAIN_SECONDS 5
/* Most listen addresses per [smtpd] *_listen key. */
#define SMTPD_LISTEN_PER_KEY 8
/*
 * Before authentication a session may have this many commands refused
 * (5xx syntax, unknown, bad sequence) before it is disconnected, unless
 * the configuration says otherwise ([smtpd] max_errors).
 */
#define SMTPD_MAX_ERRORS_DEFAULT 10
/*
 * Room kept for the trace headers we add (Return-Path:, Received:,
 * Authentication-Results: take at most about 2.5 KiB): the SIZE we
 * announce and enforce is [limits] message_size minus this, so that the
 * stored message never exceeds message_size, which the store enforces.
 */
#define SMTPD_TRACE_RESERVE 4096
/* Window of the per-account and per-address message rates, seconds. */
#define SMTPD_RATE_WINDOW 60

enum smtp_kind {
	SMTP_KIND_SMTP = 0,		/* 25: inbound, STARTTLS offered */
	SMTP_KIND_SUBMISSION,		/* 587: AUTH after STARTTLS */
	SMTP_KIND_SUBMISSIONS,		/* 465: implicit TLS (RFC 8314) */
};

/* One worker's state: made by smtpd.c's worker_main, used by sessions. */
/* Longest account class name in rate_exempt_classes ("legal-person"). */
#define SMTPD_CLASS_NAME_MAX 32

struct smtpd {
	const struct config *cfg;
	struct event_base *base;
	struct store *store;		/* the loop thread's handle */
	struct tpool *pool;
	SSL_CTX *tls;			/* NULL: no TLS configured */
	struct sasl_ratelimit *auth_rl;
	struct smtp_rate *acct_rate;
	struct smtp_rate *ip_rate;
	unsigned rate_exempt;		/* 1 << enum store_class, no limits */
	struct smtp_queue *queue;	/* outbound queue, or NULL */
	struct smtp_agent *agent;	/* worker 0 only */
	char hostname[SMTPD_HOSTNAME_MAX + 1];
	uint64_t message_max;		/* SIZE: message_size - reserve */
	unsigned max_recipients;
	unsigned max_errors;
	uint32_t command_timeout_ms;
	uint32_t session_timeout_ms;
	int plaintext_loopback;
	unsigned worker_index;
	uint64_t next_session;
	size_t nsessions;
	int maintaining;
};

/* ---- smtp_session.c ---- */

/* Accept callback for a listener of the given kind. */
void smtp_session_accept(struct smtpd *sd, enum smtp_kind kind, int fd,
    const struct sockaddr *sa, socklen_t salen, const char *local_addr);

/* ---- smtp_job.c: work for helper threads ---- */

/*
 * The calling helper thread's own store handle, opened on first use with
 * cfg (a struct store is not thread-safe).  NULL if it cannot be opened
 * (logged).  Never closed: threads live as long as the worker.
 */
struct store *smtp_job_store(const struct config *cfg);

/* The sasl_verify_fn: store_password_verify on the thread's handle. */
int smtp_job_verify(const char *user, const char *pass, void *ctx);

/* ---- smtp_notice.c ---- */

/*
 * Check the notice and official-sender keys at start-up: official_policy
 * and every DOMAIN:POLICY of official_domains must be tag, refuse or
 * accept.  0, or -1 with *error_r set to a static text.
 */
int smtp_notice_config_check(const struct config *cfg, const char **error_r);

/* ---- smtp_out.c ---- */

/*
 * Start the delivery agent on sd's loop: it looks at queue q every second
 * and sends what is due.  Run it in one worker only.
 */
struct smtp_agent *smtp_agent_new(struct smtpd *sd, struct smtp_queue *q);

/* ---- smtp_rate.c ---- */

/* Keys a rate table tracks; a full bucket forgets its oldest key. */
#define SMTP_RATE_SLOTS 4096	/* = RATELIMIT_SLOTS */

/*
 * A fixed-window counter per key: at most limit events per window
 * seconds.  limit 0 disables (everything allowed).  Loop thread only.
 * In the daemon all workers count into one table the parent shares with
 * them (lib/ratelimit.h), so the limit holds for the whole daemon; the
 * keys of all instances share it and must not overlap (addresses, IPs).
 */
struct smtp_rate *smtp_rate_new(unsigned limit, unsigned window);
void smtp_rate_free(struct smtp_rate *r);
/* Count one event for key at now; 1 if it is within the limit, else 0. */
int smtp_rate_hit(struct smtp_rate *r, const char *key, int64_t now);

#endif
