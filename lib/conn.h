/*
 * conn.h - one network connection of a daemon: a non-blocking socket on a
 * libevent event_base, optionally TLS (OpenSSL, used directly), with
 * bounded line reading, raw byte reading, a bounded output queue, timeouts
 * and deferred freeing.  Also a listener that pauses accept() when the
 * process runs out of descriptors.
 *
 * Every daemon worker (smtpd, imapd, and the outbound SMTP client).  All
 * connections of a process live in ONE thread: the one running their
 * event_base.  Nothing here blocks.
 *
 * Life of a connection
 * --------------------
 *   c = conn_new(base, fd, &callbacks, arg);      takes ownership of fd
 *   conn_starttls(c, ctx, &n, &err);             implicit TLS (465, 993)
 *   ... the loop calls back:
 *   on_input(c, arg)   bytes arrived: call conn_read_line() (or
 *                      conn_read_bytes()/conn_input()) until it says
 *                      CONN_MORE, or pause input; bytes left unread stay
 *                      buffered and on_input is called again only when
 *                      more arrive (or after conn_resume_input()).
 *   on_drain(c, arg)   the output queue became empty (optional).
 *   on_tls(c, arg)     the TLS handshake completed (optional).
 *   on_timeout(c, why, arg)  the idle or session timeout expired
 *                      (optional): the daemon may queue a last reply
 *                      ("421 timeout"); the connection is then closed
 *                      after that output is flushed (or after
 *                      CONN_LINGER_MS).  Without on_timeout it is closed
 *                      at once.
 *   on_close(c, why, arg)   always called exactly once, last, from the
 *                      loop (never from inside another callback of c or
 *                      from a conn_* call), just before c is freed: drop
 *                      every pointer to c here.  Writes are ignored by now.
 *
 * conn_close() and conn_abort() never free: they mark the connection and
 * the loop frees it later (Redis's freeClientAsync), so a handler may
 * close its own connection and keep using c until it returns.
 *
 * When the peer closes its side (EOF), buffered input is still handed to
 * on_input; as soon as on_input returns without pausing, the connection
 * flushes its output and closes with CONN_CLOSE_EOF (an unfinished line
 * left in the buffer can never complete, and is dropped).
 *
 * A daemon's session, in outline (SMTP):
 *
 *   static void
 *   smtp_on_input(struct conn *c, void *arg)
 *   {
 *           struct smtp_session *s = arg;
 *           const char *line;
 *           size_t len;
 *           int r;
 *
 *           while (!s->busy && (r = conn_read_line(c, &line, &len))
 *               != CONN_MORE) {
 *                   if (r == CONN_LINE_TOO_LONG) {
 *                           conn_printf(c, "500 5.5.2 Line too long\r\n");
 *                           continue;
 *                   }
 *                   smtp_command(s, line, len);
 *           }
 *   }
 *
 * where smtp_command() may call conn_starttls() (see below), or set
 * s->busy and conn_pause_input() while a delivery runs elsewhere, then
 * clear it and conn_resume_input() when the reply is queued: lines left
 * unread are not offered again until new bytes arrive or input resumes.
 * The session starts with
 *
 *   c = conn_new(base, fd, &smtp_conn_callbacks, s);
 *   conn_set_timeouts(c, 300 * 1000, 3600 * 1000);
 *   conn_set_line_limit(c, SMTP_LINE_MAX, 0);     (CRLF only: no bare LF)
 *   conn_printf(c, "220 %s ESMTP\r\n", name);
 *
 * and, after STARTTLS is accepted:
 *
 *   conn_printf(c, "220 2.0.0 Ready to start TLS\r\n");
 *   conn_starttls(c, ctx, &dropped, &err);        (log dropped if > 0)
 *   return;                                       (the line is gone now)
 *
 * Input
 * -----
 * SECURITY: every input is bounded.  Lines: conn_read_line() returns a
 * complete line of at most line_max bytes (terminator not counted), or
 * CONN_MORE, or CONN_LINE_TOO_LONG -- as soon as the line is known to be
 * too long: when its terminator arrives after more than line_max bytes, or
 * when more than line_max bytes are buffered with no terminator (OpenSMTPD
 * checks both).  The terminator is CRLF; with CONN_LINE_BARE_LF a bare LF
 * also ends a line.  Without it a bare LF (and any bare CR) is an ordinary
 * byte inside the line, so the daemon can see and refuse it (SMTP
 * smuggling): check with memchr() before trusting a line.  After
 * CONN_LINE_TOO_LONG the rest of that line is skipped silently by the
 * following conn_read_line() calls, so the daemon may answer with an error
 * and carry on, or close.
 *
 * The input buffer holds at most max(line_max + 2, CONN_READ_CHUNK) bytes;
 * when it is full the socket is not read (the peer is held back by TCP)
 * until the daemon consumes.  An idle connection holds no input buffer and
 * no output buffer: both are released whenever they are empty.
 *
 * STARTTLS
 * --------
 * SECURITY (CVE-2011-0411 class): conn_starttls() and
 * conn_starttls_client() DISCARD every byte already buffered from the peer
 * (and report how many, for the log), so a command pipelined after
 * STARTTLS in the clear is never executed inside TLS.  Output queued
 * before the call (the "220 ready" reply) is sent in the clear first; no
 * socket byte is read as plaintext after the call.
 *
 * Output
 * ------
 * conn_write()/conn_printf() append to an output queue bounded by
 * output_max (CONN_OUTPUT_MAX by default).  Going over it closes the
 * connection with CONN_CLOSE_OUTPUT_OVERFLOW (a client that never reads
 * cannot make us buffer without end); producers of large answers (FETCH)
 * should write a slice, then continue from on_drain.
 *
 * Testing
 * -------
 * conn_fault_inject() makes the Nth socket read or write (plain or under
 * TLS) fail with EAGAIN, move one byte only, or fail with ECONNRESET.
 */
#ifndef GOVMAIL_CONN_H
#define GOVMAIL_CONN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <openssl/ssl.h>

/*
 * Line limit of a new connection (terminator not counted).  Before
 * authentication the daemons keep lines short (STYLE.md: 8 KiB; RFC 5321
 * 4.5.3.1.4 requires 512 for commands, RFC 9051 suggests 8192 for IMAP
 * clients); after, they raise it with conn_set_line_limit().
 */
#define CONN_LINE_MAX_DEFAULT 8192
/* Largest line limit conn_set_line_limit() accepts. */
#define CONN_LINE_MAX_LIMIT (1024 * 1024)
/* Bytes read from the socket (or from TLS) per read call. */
#define CONN_READ_CHUNK 16384
/* Output queue limit of a new connection. */
#define CONN_OUTPUT_MAX (1024 * 1024)
/* How long conn_close() waits for queued output to drain, milliseconds. */
#define CONN_LINGER_MS 10000

/*
 * COMPRESS deflate parameters: a 4 KiB window and small hash tables keep
 * the deflate state near 16 KiB per connection (the peer inflates with
 * any window up to 32 KiB, so a smaller one is always understood).
 */
#define CONN_DEFLATE_LEVEL 6
#define CONN_DEFLATE_WINDOW_BITS 12
#define CONN_DEFLATE_MEM_LEVEL 5

/* conn_set_line_limit() flags. */
#define CONN_LINE_BARE_LF 0x1	/* a bare LF ends a line too */

/* Return values of conn_read_line(). */
#define CONN_LINE_OK 1
#define CONN_MORE 0
#define CONN_LINE_TOO_LONG (-1)

enum conn_close_reason {
	CONN_CLOSE_LOCAL,		/* conn_close()/conn_abort() */
	CONN_CLOSE_EOF,			/* the peer closed (FIN, TLS close) */
	CONN_CLOSE_RESET,		/* socket error: reset, EPIPE, refused */
	CONN_CLOSE_TIMEOUT_IDLE,	/* no traffic for idle_ms */
	CONN_CLOSE_TIMEOUT_SESSION,	/* connected longer than session_ms */
	CONN_CLOSE_TLS,			/* handshake failed or bad record */
	CONN_CLOSE_OUTPUT_OVERFLOW,	/* more than output_max queued */
	CONN_CLOSE_DEFLATE,		/* bad COMPRESS=DEFLATE input */
};

struct conn;

struct conn_callbacks {
	/* Required: bytes are buffered (see "Input" above). */
	void (*on_input)(struct conn *c, void *arg);
	/* Optional: the output queue drained after a write. */
	void (*on_drain)(struct conn *c, void *arg);
	/* Optional: the TLS handshake completed. */
	void (*on_tls)(struct conn *c, void *arg);
	/* Optional: a timeout expired; why is one of CONN_CLOSE_TIMEOUT_*. */
	void (*on_timeout)(struct conn *c, enum conn_close_reason why,
	    void *arg);
	/* Required: the last call; c is freed when it returns. */
	void (*on_close)(struct conn *c, enum conn_close_reason why,
	    void *arg);
};

/*
 * Wrap fd (a connected or connecting stream socket; conn owns it from now
 * on and closes it) on base.  The socket is made non-blocking.  cb must
 * outlive the connection (a static table); arg is passed to every
 * callback.  Never fails (allocation failure aborts).
 */
struct conn *conn_new(struct event_base *base, int fd,
    const struct conn_callbacks *cb, void *arg);

/*
 * Free c at once, closing the socket, WITHOUT calling on_close: for
 * tearing down a worker.  Must not be called from a callback of c
 * (aborts); everywhere else prefer conn_close().
 */
void conn_free(struct conn *c);

/*
 * Close after the queued output has been sent (at most CONN_LINGER_MS),
 * with a TLS close_notify when TLS is up; input that arrives meanwhile is
 * read and dropped, never reported.  on_close(CONN_CLOSE_LOCAL) follows
 * from the loop.  Safe from inside any callback, and more than once.
 */
void conn_close(struct conn *c);
/* The same, dropping queued output: close as soon as the loop runs. */
void conn_abort(struct conn *c);
/* 1 once conn_close/conn_abort was called or the connection failed. */
int conn_closing(const struct conn *c);

/*
 * Timeouts in milliseconds; 0 disables (the default for both).  Idle = no
 * byte moved in either direction for idle_ms; session = connected longer
 * than session_ms.  See on_timeout.
 */
void conn_set_timeouts(struct conn *c, uint32_t idle_ms, uint32_t session_ms);
/* Line limit (1 .. CONN_LINE_MAX_LIMIT, else aborts) and CONN_LINE_* flags. */
void conn_set_line_limit(struct conn *c, size_t line_max, unsigned flags);
/*
 * Output queue limit (at least 1 byte; never below what is queued now).
 * With COMPRESS it counts compressed bytes.
 */
void conn_set_output_max(struct conn *c, size_t output_max);

/*
 * Next line.  Returns CONN_LINE_OK with *line_r and *len_r set (terminator
 * removed; the line is NUL-terminated in place but may also hold NUL
 * bytes: trust len_r), CONN_MORE when no complete line is buffered, or
 * CONN_LINE_TOO_LONG once per over-long line (see "Input").  The line
 * points into the input buffer: valid until on_input returns or
 * conn_starttls*() is called, whichever is first.
 */
int conn_read_line(struct conn *c, const char **line_r, size_t *len_r);

/*
 * Raw input (DATA, BDAT chunks, IMAP literals).  conn_input() returns the
 * number of buffered bytes and points *data_r at them (NULL when 0);
 * conn_consume() removes the first n of them (n <= that number).
 * conn_read_bytes() copies up to max buffered bytes to dst and consumes
 * them; returns the count (0 = nothing buffered, i.e. CONN_MORE).
 */
size_t conn_input(struct conn *c, const uint8_t **data_r);
void conn_consume(struct conn *c, size_t n);
size_t conn_read_bytes(struct conn *c, void *dst, size_t max);

/*
 * Hold output (hold != 0): what is written is queued, not sent, until
 * conn_hold_output(c, 0), which sends it from the loop.  For a reply that
 * may only go out once something else is done (a durable commit).  The
 * output limit still applies; a connection closed while holding drops the
 * held output.
 */
void conn_hold_output(struct conn *c, int hold);

/*
 * Stop reading the socket and calling on_input (a command is being worked
 * on: pipelined input waits, TCP holds the client back); output goes on.
 * conn_resume_input() restarts, calling on_input from the loop soon if
 * input is buffered.  The idle timeout does not expire while paused.
 */
void conn_pause_input(struct conn *c);
void conn_resume_input(struct conn *c);

/*
 * Queue output.  Returns 0, or -1 if it would exceed output_max: the
 * connection is then closing with CONN_CLOSE_OUTPUT_OVERFLOW.  Writes to a
 * closing connection are dropped (return -1).
 */
int conn_write(struct conn *c, const void *data, size_t len);
int conn_printf(struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int conn_vprintf(struct conn *c, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Bytes queued and not yet written. */
size_t conn_output_len(const struct conn *c);

/*
 * Server-side TLS: implicit (call right after conn_new) or STARTTLS (call
 * after queueing the "ready" reply).  Discards buffered input and stores
 * its size in *discarded_r (may be NULL).  The handshake starts once the
 * output queued so far is sent in the clear.  Returns -1 with *error_r if
 * TLS is already on or the connection is closing, or OpenSSL fails.
 * The SSL takes a reference to ctx.
 */
int conn_starttls(struct conn *c, SSL_CTX *ctx, size_t *discarded_r,
    const char **error_r);

/*
 * Client-side TLS (outbound SMTP, tests): call after the server's
 * "220 ready" line was read.  Discards the server's bytes buffered beyond
 * it (response injection).  host, if not NULL, is sent as SNI (unless an
 * IP literal) and checked against the certificate: with a
 * TLS_VERIFY_REQUIRE context a mismatch fails the handshake.
 */
int conn_starttls_client(struct conn *c, SSL_CTX *ctx, const char *host,
    size_t *discarded_r, const char **error_r);

/*
 * RFC 4978 COMPRESS=DEFLATE (IMAP; raw deflate both ways): call after
 * queueing the tagged OK, which is still sent uncompressed.  From then on
 * every byte written is deflated (flushed with Z_SYNC_FLUSH whenever the
 * queue is sent) and every byte read is inflated, including bytes already
 * buffered after the COMPRESS command.  SECURITY: inflation never fills
 * the input buffer past its limit (a compressed bomb waits, bounded, until
 * the daemon consumes), and output_max counts compressed bytes.  Costs
 * about 32 KiB (inflate window) + the deflate state per connection.
 * Returns -1 with *error_r if already compressing, closing, or in a TLS
 * handshake.  conn_starttls*() is refused afterwards.
 */
int conn_compress(struct conn *c, const char **error_r);
/* 1 once conn_compress() succeeded. */
int conn_compressing(const struct conn *c);

/*
 * Server side, before conn_starttls(): once the handshake is done, carry
 * a TLS 1.3 connection's records with lib/tls13.c and free OpenSSL's
 * connection object (about 13 KiB less per idle connection; see tls13.h
 * for when the handover happens).  TLS 1.2, a peer that sent a
 * certificate, and any case the handover cannot take exactly stay with
 * OpenSSL.  conn_ssl() is NULL after the handover.
 */
void conn_set_tls_compact(struct conn *c, int on);

/* 1 if TLS is on (handshake may still be running), else 0. */
int conn_is_tls(const struct conn *c);
/* 1 once the TLS handshake has completed. */
int conn_tls_ready(const struct conn *c);
/*
 * 1 if the peer presented a certificate that verified (chain and, when a
 * host was given, name), else 0; *error_r (may be NULL) says why not.
 */
int conn_tls_verified(const struct conn *c, const char **error_r);
/* Protocol and cipher names for Received: headers; "" without TLS. */
const char *conn_tls_version(const struct conn *c);
const char *conn_tls_cipher(const struct conn *c);
/*
 * The underlying SSL (NULL without TLS, and after a compact handover),
 * e.g. for channel binding.
 */
SSL *conn_ssl(const struct conn *c);

/* The socket (still owned by c: do not close it), e.g. for getpeername. */
int conn_fd(const struct conn *c);
/*
 * A short static text saying more about why the connection failed
 * (strerror of a socket error, OpenSSL's reason), or "" -- for logs.
 */
const char *conn_error(const struct conn *c);
/* "eof", "reset", "idle-timeout" ... for log lines (static text). */
const char *conn_close_reason_str(enum conn_close_reason why);

/*
 * Buffer storage held right now (capacity of the input and output
 * buffers, and of a compact connection's record buffers; not counting
 * OpenSSL's); both 0 on an idle connection.
 */
void conn_buffer_sizes(const struct conn *c, size_t *in_r, size_t *out_r);

/* ---- listening sockets ---- */

/* Connections accepted per readiness event, at most (fairness). */
#define CONN_ACCEPT_BATCH 64
/* How long accept() stays paused after EMFILE/ENFILE, milliseconds. */
#define CONN_ACCEPT_PAUSE_MS 1000
/* listen() backlog of conn_listen_tcp(). */
#define CONN_LISTEN_BACKLOG 511

struct conn_listener;

/*
 * Accept on fd (bound and listening; the listener owns it from now on).
 * When accept() fails with EMFILE or ENFILE (or ENOBUFS/ENOMEM) the
 * listener stops accepting for CONN_ACCEPT_PAUSE_MS, or until a conn is
 * freed, whichever is first, instead of spinning on a readable socket
 * (OpenSMTPD).  on_accept gets each new socket (non-blocking,
 * close-on-exec, owned by the callee) and the peer's address.  Never
 * fails.
 */
struct conn_listener *conn_listener_new(struct event_base *base, int fd,
    void (*on_accept)(int fd, const struct sockaddr *sa, socklen_t salen,
    void *arg), void *arg);
/* Stop listening and close the socket. */
void conn_listener_free(struct conn_listener *l);
/* 1 while accept() is paused after running out of descriptors. */
int conn_listener_paused(const struct conn_listener *l);
/* Pause length for this listener (tests); default CONN_ACCEPT_PAUSE_MS. */
void conn_listener_set_pause(struct conn_listener *l, uint32_t ms);

/*
 * Bind and listen on host:port (host NULL or "" = any; numeric or a name;
 * port "0" picks a free port) with SO_REUSEADDR; for the root parent.
 * Returns 0 with *fd_r, or -1 with *error_r (static text).
 */
int conn_listen_tcp(const char *host, const char *port, int *fd_r,
    const char **error_r);

/*
 * Start a non-blocking TCP connection to a numeric address (host "1.2.3.4"
 * or "::1", never a name: resolving would block the loop) for the
 * outbound SMTP client.  Returns 0 with *fd_r (close-on-exec) once the
 * connection is under way; hand it to conn_new() at once.  A refused or
 * unreachable peer then shows as on_close(CONN_CLOSE_RESET) with
 * conn_error() saying why; bound the wait with conn_set_timeouts().
 * Returns -1 with *error_r (static text) if the address is not numeric,
 * or the connection fails at once (a refusal on loopback often does).
 */
int conn_connect_tcp(const char *host, const char *port, int *fd_r,
    const char **error_r);

/* ---- fault injection (tests) ---- */

enum conn_fault_op {
	CONN_FAULT_READ,
	CONN_FAULT_WRITE,
};

enum conn_fault {
	CONN_FAULT_NONE,
	CONN_FAULT_EAGAIN,	/* fail with EAGAIN without touching the socket */
	CONN_FAULT_SHORT,	/* move one byte only */
	CONN_FAULT_RESET,	/* fail with ECONNRESET */
};

/*
 * Make the nth (counting from 0 since the last conn_fault_reset()) socket
 * read or write of this process, by any conn, fail as fault says; one
 * fault per op at a time, applied once.
 */
void conn_fault_inject(enum conn_fault_op op, unsigned long nth,
    enum conn_fault fault);
/* Clear faults and counters. */
void conn_fault_reset(void);
/* Socket reads or writes made since the last conn_fault_reset(). */
unsigned long conn_fault_count(enum conn_fault_op op);

#endif
