/*
 * sasl.h - server-side SASL authentication (SMTP AUTH, IMAP AUTHENTICATE)
 * on Cyrus SASL (libsasl2), with our own password check.
 *
 * Every daemon worker.  The protocol layer (smtpd, imapd) does the framing:
 * it reads the mechanism name and the client's base64 lines, decodes them
 * with sasl_base64_decode(), feeds the bytes to sasl_session_start() /
 * sasl_session_step(), and encodes the challenges it gets back with
 * sasl_base64_encode().  This module never sees a socket.
 *
 * Runtime requirement: the mechanisms are Cyrus plugins, loaded at
 * sasl_glue_init() from the libsasl2 plugin folder, so the daemons need
 * Debian's libsasl2-modules package (libplain.so, liblogin.so).  Only
 * PLAIN and LOGIN are loaded; every other plugin in that folder (sasldb,
 * anonymous, ...) is skipped, no /etc/sasl2 configuration file is read, and
 * neither sasldb nor saslauthd is ever consulted: the only password check
 * is the caller's verify function.  SCRAM needs a stored SCRAM verifier,
 * which the store does not keep (it holds Argon2id hashes), so it is not
 * offered.
 *
 * SECURITY: plaintext mechanisms (PLAIN, LOGIN) are announced and accepted
 * only when the session runs over TLS, or when the caller explicitly
 * allows plaintext (development on loopback).  Without either,
 * sasl_session_mechs() is empty and sasl_session_start() refuses them.
 * Authorization identities are refused unless equal to the authentication
 * identity (no proxy login).  Passwords are wiped after use and never
 * logged; nothing the client sent reaches a log line unescaped.
 *
 * Threads: Argon2id makes verify slow (tens of milliseconds), so a daemon
 * runs sasl_session_start()/sasl_session_step() on a helper thread, never
 * on its event loop.  The verify callback runs on the thread that called
 * start/step.  A session has no locks: it must be used by one thread at a
 * time, and handed between threads through something that orders memory
 * (a mutex-protected queue).  Distinct sessions may be used on distinct
 * threads at once.  sasl_glue_init() is thread-safe and idempotent.
 */
#ifndef GOVMAIL_SASL_H
#define GOVMAIL_SASL_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"

struct buf;
struct sasl_session;

/*
 * Largest decoded client response accepted by start/step, bytes.  A PLAIN
 * response is authzid NUL authcid NUL password; 12 KiB holds any sane
 * address and password with room to spare.  RFC 4954 section 4 lets the
 * server bound this (SMTP's 12288-octet line limit is the model).
 */
#define SASL_RESPONSE_MAX 12288
/* Longest base64 text sasl_base64_decode() accepts: 4 * ceil(MAX / 3). */
#define SASL_RESPONSE_B64_MAX (((SASL_RESPONSE_MAX + 2) / 3) * 4)
/*
 * Most client responses one exchange may take, the first (in
 * sasl_session_start) included.  LOGIN without an initial response takes
 * three (nothing, user name, password); a client that keeps talking past
 * the limit fails.
 */
#define SASL_STEPS_MAX 3
/* Longest user name (authentication identity) accepted, bytes. */
#define SASL_USER_MAX 320
/* Longest mechanism name (RFC 4422 section 3.1: 20 characters). */
#define SASL_MECH_NAME_MAX 20

/* What start/step returns. */
enum sasl_session_result {
	/* Send the challenge (may be empty) and read another response. */
	SASL_SESSION_CONTINUE = 0,
	/* Authenticated: sasl_session_user() is the user. */
	SASL_SESSION_OK,
	/*
	 * The client failed: wrong user or password, refused authorization
	 * identity, malformed or oversize response, unknown or forbidden
	 * mechanism, too many steps.  sasl_session_reason() says which, and
	 * so which reply to send.
	 */
	SASL_SESSION_FAIL,
	/*
	 * The server could not decide (verify returned negative, libsasl2
	 * out of memory or misconfigured): SASL_REASON_UNAVAILABLE.
	 */
	SASL_SESSION_ERROR,
};

/*
 * Why the last start/step returned FAIL or ERROR, so the protocol layer
 * can pick its reply (sasl_session_reason()).
 */
enum sasl_reason {
	SASL_REASON_NONE = 0,	/* no failure (yet) */
	/*
	 * Wrong user or password, refused authorization identity, bad user
	 * name.  SMTP 535 5.7.8; IMAP NO [AUTHENTICATIONFAILED].  The
	 * daemon counts these for its per-address rate limit.
	 */
	SASL_REASON_AUTH,
	/* Mechanism unknown here, or a malformed name.  SMTP 504 5.5.4. */
	SASL_REASON_MECH,
	/*
	 * A plaintext mechanism without TLS.  SMTP 538 5.7.11 (RFC 4954);
	 * IMAP NO [PRIVACYREQUIRED] (RFC 5530).
	 */
	SASL_REASON_TLS_REQUIRED,
	/*
	 * Malformed response, response over SASL_RESPONSE_MAX, too many
	 * steps, or a call out of order.  SMTP 501 5.5.2 (500 5.5.6 for a
	 * line too long); IMAP BAD.
	 */
	SASL_REASON_SYNTAX,
	/* With SASL_SESSION_ERROR.  SMTP 454 4.7.0; IMAP NO [UNAVAILABLE]. */
	SASL_REASON_UNAVAILABLE,
};

/*
 * The caller's password check.  user is the authentication identity
 * exactly as the client sent it (NUL-terminated, 1..SASL_USER_MAX bytes,
 * no control characters or spaces; UTF-8 passes through); pass is the
 * password (NUL-terminated; it never contains a NUL; the buffer is wiped
 * after the call).  Returns 1 if the
 * password is right, 0 if wrong or no such user (or disabled), negative if
 * it could not check -- the contract of store_password_verify(), so a
 * daemon passes a three-line wrapper around it.  It may block (Argon2id);
 * it runs on the thread calling start/step, so a per-thread store handle
 * belongs in thread-local storage or in ctx if sessions are bound to one
 * thread.
 */
typedef int sasl_verify_fn(const char *user, const char *pass, void *ctx);

struct sasl_session_params {
	const char *service;	/* "smtp" or "imap" (RFC 4422 service) */
	const char *server_fqdn;	/* our host name, "mail.example.cn" */
	/*
	 * "ip;port", numeric (Cyrus syntax; IPv6 unbracketed, as in struct
	 * daemon_listener's addr), or NULL.  Anything else is refused.
	 */
	const char *local_addr;
	const char *remote_addr;
	int tls_active;		/* 1 once TLS is up on this connection */
	/*
	 * 1 to allow PLAIN/LOGIN without TLS.  SECURITY: only for loopback
	 * in development; the daemon decides (configuration plus a check
	 * that remote_addr is a loopback address).
	 */
	int plaintext_allowed;
	/* 0 = SASL_STEPS_MAX; lower values are for tests. */
	unsigned int max_steps;
	sasl_verify_fn *verify;	/* required */
	void *verify_ctx;
};

/*
 * Initialise libsasl2 for this process: plugin loading restricted to PLAIN
 * and LOGIN, our option, log and file-verification callbacks, pthread
 * mutexes.  Call once per process before the first session (further calls
 * return the first result; safe from several threads).  Call it after
 * fork(), in the worker, and before privsep_drop() if the plugin folder
 * might not be readable afterwards (on Debian it is world-readable).
 * Returns 0, or -1 with *error_r set (static text): libsasl2 failed, or
 * the PLAIN/LOGIN plugins are missing (install libsasl2-modules).
 */
int sasl_glue_init(const char **error_r);

/*
 * The mechanisms this process can offer over TLS, space-separated ("PLAIN
 * LOGIN" or "LOGIN PLAIN"), after sasl_glue_init(); "" before.  Static.
 */
const char *sasl_glue_mechs(void);

/*
 * Start a per-connection session for one authentication exchange (a later
 * AUTH after a failure needs sasl_session_free() and a new session).
 * Create it after STARTTLS has completed: a session made before TLS keeps
 * its no-TLS policy.  To announce mechanisms without a session (EHLO,
 * CAPABILITY): tls_active || plaintext_allowed ? sasl_glue_mechs() : "".
 * Returns 0 and *s_r, or -1 with *error_r (static text) on bad params or
 * libsasl2 failure.  The session copies what it needs from p.
 */
int sasl_session_new(const struct sasl_session_params *p,
    struct sasl_session **s_r, const char **error_r);

/* Free the session (NULL is fine); wipes what it held. */
void sasl_session_free(struct sasl_session *s);

/*
 * The mechanisms to announce on this connection, space-separated, e.g.
 * "PLAIN LOGIN"; "" when none may be used (plaintext mechanisms without
 * TLS).  Owned by the session, valid until it is freed.
 */
const char *sasl_session_mechs(struct sasl_session *s);

/*
 * Begin an exchange with mechanism mech (case-insensitive, as the client
 * named it; must be one sasl_session_mechs() lists).  resp/resp_len is the
 * decoded initial response (SASL-IR, or the second argument of SMTP AUTH;
 * an empty one "=" is resp_len 0 with has_resp 1); has_resp 0 means the
 * client sent none.  resp_len > SASL_RESPONSE_MAX fails without calling
 * libsasl2.  On CONTINUE, *out_r and *out_len_r are the challenge to send
 * (owned by the session, valid until the next call on it; may be empty).
 * On FAIL/ERROR *error_r names the reason (static text, safe to log, never
 * a password).  An exchange can be started only once per session.
 */
enum sasl_session_result sasl_session_start(struct sasl_session *s,
    const char *mech, const uint8_t *resp, size_t resp_len, int has_resp,
    const uint8_t **out_r, size_t *out_len_r, const char **error_r);

/*
 * Feed the next decoded client response.  Same results and ownership as
 * sasl_session_start().  Past SASL_STEPS_MAX (or params.max_steps)
 * responses, or after the exchange ended, it fails.  The protocol layer
 * handles the client's cancel ("*" line) itself: it just frees the
 * session.
 */
enum sasl_session_result sasl_session_step(struct sasl_session *s,
    const uint8_t *resp, size_t resp_len,
    const uint8_t **out_r, size_t *out_len_r, const char **error_r);

/*
 * A user name and password that did not come through a SASL mechanism:
 * IMAP's LOGIN command (RFC 3501 6.2.3).  Same policy as PLAIN: refused
 * without TLS unless plaintext is allowed (SASL_REASON_TLS_REQUIRED: the
 * IMAP server announces LOGINDISABLED then), the same user-name checks,
 * user at most SASL_USER_MAX and pass at most SASL_RESPONSE_MAX bytes, the
 * verify callback decides.  Counts as the session's one exchange: returns
 * SASL_SESSION_OK, _FAIL or _ERROR (never _CONTINUE), with *error_r as for
 * sasl_session_start().  May block like verify does.
 */
enum sasl_session_result sasl_session_check_password(struct sasl_session *s,
    const char *user, const char *pass, const char **error_r);

/*
 * After SASL_SESSION_OK: the authenticated user (the authentication
 * identity as the client sent it and verify accepted it).  NULL before.
 * Owned by the session.
 */
const char *sasl_session_user(const struct sasl_session *s);

/*
 * The mechanism of the exchange ("PLAIN"; "LOGIN-COMMAND" after
 * sasl_session_check_password()), or NULL before start.
 */
const char *sasl_session_mech(const struct sasl_session *s);

/* Why the last start/step failed; SASL_REASON_NONE if it did not. */
enum sasl_reason sasl_session_reason(const struct sasl_session *s);

/*
 * 1 if addr ("ip;port" as passed to sasl_session_new, or a bare IP) is a
 * loopback address: 127.0.0.0/8, ::1, or ::ffff:127.x.y.z; else 0.  For
 * the daemons' "plaintext on loopback" development setting.
 */
int sasl_addr_is_loopback(const char *addr);

/*
 * Failed-authentication rate limit per client address (DESIGN.md 3:
 * "failed logins are rate-limited per address").  A fixed window per
 * address: after max_failures failures within window_seconds of the first,
 * sasl_ratelimit_allowed() says no until the window has passed; then the
 * count starts again.  IPv4 addresses count per address, IPv6 per /64 (one
 * host usually owns a whole /64), IPv4-mapped IPv6 as IPv4; the port is
 * ignored.  An address that does not parse counts as one shared "unknown"
 * address.
 *
 * The counters are in lib/ratelimit.h's table: when the daemon's root
 * parent created the shared one before forking (daemon_run does), every
 * sasl_ratelimit of every worker uses it, so the limit holds per address
 * for the whole daemon, not per worker; otherwise (tools, tests) each
 * sasl_ratelimit has a private table.  Used on the event loop (check
 * before starting an exchange, record the failure when the helper
 * thread's result comes back); the table locks itself.  At most
 * RATELIMIT_SLOTS addresses are tracked; when a bucket is full its oldest
 * entry is reused (buckets are chosen by a keyed hash, so a client cannot
 * aim at one).  Times are passed in (seconds, CLOCK_MONOTONIC or another
 * clock all workers read alike) so tests need no sleeping.
 */
#define SASL_RATELIMIT_SLOTS RATELIMIT_SLOTS
/* Entries per hash bucket. */
#define SASL_RATELIMIT_WAYS RATELIMIT_WAYS

struct sasl_ratelimit;

/* max_failures 0 disables the limit (everything allowed). */
struct sasl_ratelimit *sasl_ratelimit_new(unsigned int max_failures,
    unsigned int window_seconds);
void sasl_ratelimit_free(struct sasl_ratelimit *rl);
/* 1 if addr ("ip;port" or ip) may try to authenticate at now, else 0. */
int sasl_ratelimit_allowed(struct sasl_ratelimit *rl, const char *addr,
    int64_t now);
/* Count one failed authentication (SASL_REASON_AUTH) from addr at now. */
void sasl_ratelimit_failed(struct sasl_ratelimit *rl, const char *addr,
    int64_t now);

/*
 * Decode base64 text (RFC 4648, standard alphabet, padding required, no
 * whitespace) into out, which is reset first and marked secret (wiped when
 * freed) because it usually holds a password.  The single character "="
 * decodes to zero bytes (RFC 4954 / RFC 4959 empty initial response).
 * Text longer than SASL_RESPONSE_B64_MAX, or decoding to more than
 * SASL_RESPONSE_MAX bytes or more than out->max, fails.  Returns 0, or -1
 * with *error_r (static text).  The protocol layer checks for "*"
 * (cancel) before calling this.
 */
int sasl_base64_decode(const char *text, size_t len, struct buf *out,
    const char **error_r);

/*
 * Encode len bytes as base64 (padded, no line breaks).  Returns a fresh
 * NUL-terminated string the caller frees; "" for len 0 (the protocol
 * layer sends "+ " / "334 " for an empty challenge).
 */
char *sasl_base64_encode(const uint8_t *data, size_t len);

#endif
