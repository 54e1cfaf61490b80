/*
 * conn.c - non-blocking connections on libevent with OpenSSL TLS, bounded
 * line and byte input, a bounded output queue, timeouts, deferred freeing,
 * and a listener that pauses accept() on EMFILE.
 *
 * Runs in every daemon worker, in the one thread of its event_base.
 * Trusts nothing that comes from the socket: every byte read is bounded by
 * the input limit before it is buffered, lines by line_max, output by
 * output_max.  See conn.h for the contract.
 *
 * How it runs: one persistent event (ev_io) on the socket whose EV_READ /
 * EV_WRITE interest is recomputed after every step (conn_update_events),
 * and one timer event (ev_timer) that serves three purposes: timeouts
 * (armed lazily for the nearest deadline and re-armed when it fires
 * early), deferred work (conn_defer: event_active() so it runs from the
 * loop, not from the caller's stack), and freeing a dead connection.
 * Both events end up in conn_run(), which flushes output, drives the TLS
 * handshake, reads, calls on_input, and then settles the state in
 * conn_finish().  OpenSSL talks to the socket through our own BIO so that
 * fault injection sees TLS traffic too.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <zlib.h>

#include "buf.h"
#include "conn.h"
#include "log.h"
#include "tls.h"
#include "tls13.h"
#include "xmalloc.h"

#define CONN_F_TLS		0x0001	/* c->ssl is set */
#define CONN_F_TLS_WAIT		0x0002	/* handshake waits for cleartext */
#define CONN_F_HANDSHAKE	0x0004	/* handshake running */
#define CONN_F_PAUSED		0x0008	/* conn_pause_input() */
#define CONN_F_EOF		0x0010	/* the peer stopped sending */
#define CONN_F_CLOSING		0x0020	/* flush, then die */
#define CONN_F_DEAD		0x0040	/* free from the loop */
#define CONN_F_SKIP_LINE	0x0080	/* skipping an over-long line */
#define CONN_F_HS_WANT_WRITE	0x0100	/* handshake needs writability */
#define CONN_F_READ_WANT_WRITE	0x0200	/* SSL_read needs writability */
#define CONN_F_WRITE_WANT_READ	0x0400	/* SSL_write needs readability */
#define CONN_F_DEFER_INPUT	0x0800	/* call on_input from the loop */
#define CONN_F_DEFER_RUN	0x1000	/* run again from the loop */
#define CONN_F_DRAINED		0x2000	/* a write emptied the queue */
#define CONN_F_REASON		0x4000	/* reason is set */
#define CONN_F_TIMER		0x8000	/* ev_timer armed with a timeout */
#define CONN_F_TLS_DONE		0x10000	/* handshake completed */
#define CONN_F_CLIENT		0x20000	/* TLS client side */
#define CONN_F_HOLD		0x40000	/* conn_hold_output(): keep output */
#define CONN_F_TLS_COMPACT	0x80000	/* conn_set_tls_compact() */

/* Rounds of read/on_input per event before yielding to other clients. */
#define CONN_RUN_ROUNDS 8
/* Compressed input held before it is inflated, at most. */
#define CONN_ZIN_MAX CONN_READ_CHUNK
/* Deflate output is produced in steps of this many bytes. */
#define CONN_ZOUT_STEP 4096

/* RFC 4978 state, allocated only once conn_compress() is called. */
struct conn_z {
	z_stream in;		/* inflate: peer -> in */
	z_stream out;		/* deflate: conn_write -> out */
	struct buf zin;		/* compressed input not yet inflated */
	int in_full;		/* inflate stopped for lack of room */
	int out_dirty;		/* deflate holds data not yet flushed */
};

struct conn {
	struct event_base *base;
	struct event ev_io;
	struct event ev_timer;
	const struct conn_callbacks *cb;
	void *arg;
	SSL *ssl;		/* OpenSSL's connection, or NULL */
	struct tls13 *t;	/* the handshake watched, then the records */
	struct conn_z *z;	/* COMPRESS=DEFLATE, or NULL */
	struct buf in;		/* max follows conn_in_limit() */
	struct buf out;
	size_t in_pos;		/* start of unread input */
	size_t in_scanned;	/* bytes after in_pos known to hold no EOL */
	size_t out_pos;		/* start of unsent output */
	size_t out_plain;	/* head of out to send before TLS starts */
	size_t line_max;
	uint64_t t_start;	/* ms, monotonic */
	uint64_t t_active;	/* last byte moved either way */
	uint64_t t_linger;	/* closing deadline */
	uint64_t timer_at;	/* when ev_timer fires, if CONN_F_TIMER */
	const char *error;
	uint32_t idle_ms;
	uint32_t session_ms;
	unsigned flags;
	unsigned line_flags;
	unsigned depth;		/* callbacks of c on the stack */
	int fd;
	int sys_errno;		/* errno of the last failed socket call */
	short io_events;	/* interest registered on ev_io */
	enum conn_close_reason reason;
};

/* Fault injection state (conn_fault_inject); one thread, like conns. */
static struct {
	unsigned long count[2];
	unsigned long nth[2];
	enum conn_fault fault[2];
} conn_faults;

/* Every listener, so that freeing a conn can resume paused ones. */
static struct conn_listener *conn_listeners;

static BIO_METHOD *conn_bio_method;

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_run(struct conn *c, int readable, int call_input);
static void conn_listeners_resume(void);

static uint64_t
conn_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- socket I/O with fault injection ---- */

/* Apply an injected fault to call number n of op; -1 = fail now. */
static int
conn_fault_apply(enum conn_fault_op op, size_t *len)
{
	unsigned long n = conn_faults.count[op]++;
	enum conn_fault f = conn_faults.fault[op];

	if (f == CONN_FAULT_NONE || n != conn_faults.nth[op])
		return 0;
	conn_faults.fault[op] = CONN_FAULT_NONE;
	switch (f) {
	case CONN_FAULT_EAGAIN:
		errno = EAGAIN;
		return -1;
	case CONN_FAULT_SHORT:
		if (*len > 1)
			*len = 1;
		return 0;
	case CONN_FAULT_RESET:
		errno = ECONNRESET;
		return -1;
	case CONN_FAULT_NONE:
		break;
	}
	return 0;
}

static int
conn_errno_retry(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

static ssize_t
conn_sys_read(struct conn *c, void *p, size_t len)
{
	ssize_t n;

	if (conn_fault_apply(CONN_FAULT_READ, &len) < 0)
		n = -1;
	else
		n = recv(c->fd, p, len, 0);
	if (n > 0)
		c->t_active = conn_now();
	else if (n < 0 && !conn_errno_retry(errno))
		c->sys_errno = errno;
	return n;
}

static ssize_t
conn_sys_write(struct conn *c, const void *p, size_t len)
{
	ssize_t n;

	if (conn_fault_apply(CONN_FAULT_WRITE, &len) < 0)
		n = -1;
	else
		n = send(c->fd, p, len, MSG_NOSIGNAL);
	if (n > 0)
		c->t_active = conn_now();
	else if (n < 0 && !conn_errno_retry(errno))
		c->sys_errno = errno;
	return n;
}

void
conn_fault_inject(enum conn_fault_op op, unsigned long nth,
    enum conn_fault fault)
{
	conn_faults.nth[op] = nth;
	conn_faults.fault[op] = fault;
}

void
conn_fault_reset(void)
{
	memset(&conn_faults, 0, sizeof(conn_faults));
}

unsigned long
conn_fault_count(enum conn_fault_op op)
{
	return conn_faults.count[op];
}

/* The socket as tls13.c reaches it (with fault injection). */
static ssize_t
conn_t_read(void *arg, void *p, size_t len)
{
	return conn_sys_read(arg, p, len);
}

static ssize_t
conn_t_write(void *arg, const void *p, size_t len)
{
	return conn_sys_write(arg, p, len);
}

/* Records sealed by tls13.c and not yet sent. */
static size_t
conn_tls_unsent(const struct conn *c)
{
	return c->t != NULL ? tls13_unsent(c->t) : 0;
}

/* ---- the BIO OpenSSL reads and writes the socket through ---- */

static int
conn_bio_write(BIO *b, const char *data, size_t len, size_t *written)
{
	struct conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = conn_sys_write(c, data, len);
	if (n < 0) {
		if (conn_errno_retry(errno))
			BIO_set_retry_write(b);
		return 0;
	}
	*written = (size_t)n;
	return 1;
}

static int
conn_bio_read(BIO *b, char *data, size_t len, size_t *readbytes)
{
	struct conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = conn_sys_read(c, data, len);
	if (n < 0) {
		if (conn_errno_retry(errno))
			BIO_set_retry_read(b);
		return 0;
	}
	*readbytes = (size_t)n;
	return n > 0;
}

static long
conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	/* Writes go straight to the socket: there is nothing to flush. */
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int
conn_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int
conn_bio_destroy(BIO *b)
{
	BIO_set_data(b, NULL);
	return 1;
}

static BIO *
conn_bio_new(struct conn *c)
{
	BIO *b;

	if (conn_bio_method == NULL) {
		conn_bio_method = BIO_meth_new(BIO_get_new_index()
		    | BIO_TYPE_SOURCE_SINK, "govmail-conn");
		if (conn_bio_method == NULL
		    || BIO_meth_set_write_ex(conn_bio_method,
		    conn_bio_write) != 1
		    || BIO_meth_set_read_ex(conn_bio_method,
		    conn_bio_read) != 1
		    || BIO_meth_set_ctrl(conn_bio_method, conn_bio_ctrl) != 1
		    || BIO_meth_set_create(conn_bio_method,
		    conn_bio_create) != 1
		    || BIO_meth_set_destroy(conn_bio_method,
		    conn_bio_destroy) != 1)
			log_fatalx("conn: cannot make the BIO method");
	}
	b = BIO_new(conn_bio_method);
	if (b == NULL)
		log_fatalx("conn: BIO_new failed");
	BIO_set_data(b, c);
	return b;
}

/* ---- state ---- */

const char *
conn_close_reason_str(enum conn_close_reason why)
{
	switch (why) {
	case CONN_CLOSE_LOCAL:
		return "closed";
	case CONN_CLOSE_EOF:
		return "eof";
	case CONN_CLOSE_RESET:
		return "reset";
	case CONN_CLOSE_TIMEOUT_IDLE:
		return "idle-timeout";
	case CONN_CLOSE_TIMEOUT_SESSION:
		return "session-timeout";
	case CONN_CLOSE_TLS:
		return "tls-error";
	case CONN_CLOSE_OUTPUT_OVERFLOW:
		return "output-overflow";
	case CONN_CLOSE_DEFLATE:
		return "deflate-error";
	}
	return "unknown";
}

static void
conn_set_reason(struct conn *c, enum conn_close_reason why, const char *error)
{
	if (c->flags & CONN_F_REASON)
		return;
	c->flags |= CONN_F_REASON;
	c->reason = why;
	c->error = error;
}

/* Ask the loop to run conn_timer_cb for c soon. */
static void
conn_defer(struct conn *c)
{
	c->flags |= CONN_F_DEFER_RUN;
	event_active(&c->ev_timer, EV_TIMEOUT, 0);
}

/* The connection is finished: no more I/O; the loop frees it. */
static void
conn_die(struct conn *c, enum conn_close_reason why, const char *error)
{
	if (c->flags & CONN_F_DEAD)
		return;
	conn_set_reason(c, why, error);
	c->flags |= CONN_F_DEAD;
	if (c->io_events != 0) {
		event_del(&c->ev_io);
		c->io_events = 0;
	}
	conn_defer(c);
}

/* Flush what is queued, then die with why. */
static void
conn_start_closing(struct conn *c, enum conn_close_reason why)
{
	if (c->flags & (CONN_F_DEAD | CONN_F_CLOSING))
		return;
	conn_set_reason(c, why, NULL);
	c->flags |= CONN_F_CLOSING;
	c->t_linger = conn_now() + CONN_LINGER_MS;
	/* A half-done handshake cannot carry output: stop now. */
	if (c->flags & CONN_F_HANDSHAKE)
		conn_die(c, why, NULL);
}

static size_t
conn_pending(const struct conn *c)
{
	return c->in.len - c->in_pos;
}

/* Output queued and not yet sent. */
static size_t
conn_unsent(const struct conn *c)
{
	return c->out.len - c->out_pos;
}

/* Input the buffer may hold: a longest line with CRLF, or a read chunk. */
static size_t
conn_in_limit(const struct conn *c)
{
	return c->line_max + 2 > CONN_READ_CHUNK ? c->line_max + 2
	    : CONN_READ_CHUNK;
}

/*
 * Whether to read the socket now.  A closing connection still reads (and
 * drops) what arrives while its last reply drains: closing a socket with
 * unread input sends a TCP reset, which may destroy that reply in flight.
 */
static int
conn_can_read(const struct conn *c)
{
	if (c->flags & (CONN_F_DEAD | CONN_F_PAUSED | CONN_F_EOF
	    | CONN_F_TLS_WAIT | CONN_F_HANDSHAKE))
		return 0;
	return conn_pending(c) < conn_in_limit(c);
}

static short
conn_want_events(const struct conn *c)
{
	short ev = 0;

	if (c->flags & CONN_F_DEAD)
		return 0;
	if (c->flags & CONN_F_HANDSHAKE) {
		ev = EV_READ;
		if (c->flags & CONN_F_HS_WANT_WRITE)
			ev |= EV_WRITE;
		return ev;
	}
	/*
	 * An SSL_write that wants to read waits for readability only, and
	 * an SSL_read that wants to write for writability only: asking for
	 * the other as well would spin on a socket that is always ready.
	 */
	if (((conn_unsent(c) > 0 || conn_tls_unsent(c) > 0
	    || (c->z != NULL && c->z->out_dirty))
	    && !(c->flags & (CONN_F_WRITE_WANT_READ | CONN_F_HOLD)))
	    || (c->flags & CONN_F_READ_WANT_WRITE))
		ev |= EV_WRITE;
	if ((conn_can_read(c) && !(c->flags & CONN_F_READ_WANT_WRITE))
	    || (c->flags & CONN_F_WRITE_WANT_READ))
		ev |= EV_READ;
	return ev;
}

static void
conn_update_events(struct conn *c)
{
	short want = conn_want_events(c);

	if (want == c->io_events)
		return;
	if (c->io_events != 0)
		event_del(&c->ev_io);
	c->io_events = want;
	if (want != 0) {
		event_assign(&c->ev_io, c->base, c->fd, want | EV_PERSIST,
		    conn_io_cb, c);
		if (event_add(&c->ev_io, NULL) < 0)
			log_fatalx("conn: event_add failed");
	}
}

/* The nearest deadline, or 0. */
static uint64_t
conn_deadline(const struct conn *c)
{
	uint64_t at = 0, t;

	if (c->flags & CONN_F_DEAD)
		return 0;
	if (c->flags & CONN_F_CLOSING)
		return c->t_linger;
	if (c->session_ms != 0)
		at = c->t_start + c->session_ms;
	if (c->idle_ms != 0 && !(c->flags & CONN_F_PAUSED)) {
		t = c->t_active + c->idle_ms;
		if (at == 0 || t < at)
			at = t;
	}
	return at;
}

/*
 * Arm the timer for the nearest deadline unless it already fires sooner:
 * activity only moves deadlines later, and the callback re-arms when it
 * fires early, so a busy connection costs no timer operation per read.
 */
static void
conn_update_timer(struct conn *c)
{
	uint64_t at = conn_deadline(c), now;
	struct timeval tv;

	/*
	 * A deferred run is pending on ev_timer (event_active): adding the
	 * timer now would take it off libevent's active list, and the run
	 * would never come.  That run settles the timer itself.
	 */
	if (at == 0 || (c->flags & (CONN_F_DEFER_RUN | CONN_F_DEFER_INPUT)))
		return;
	if ((c->flags & CONN_F_TIMER) && c->timer_at <= at)
		return;
	now = conn_now();
	at = at > now ? at - now : 0;
	tv.tv_sec = (time_t)(at / 1000);
	tv.tv_usec = (suseconds_t)(at % 1000) * 1000;
	if (evtimer_add(&c->ev_timer, &tv) < 0)
		log_fatalx("conn: evtimer_add failed");
	c->timer_at = now + at;
	c->flags |= CONN_F_TIMER;
}

/* ---- public setup ---- */

struct conn *
conn_new(struct event_base *base, int fd, const struct conn_callbacks *cb,
    void *arg)
{
	struct conn *c;
	int fl, one = 1;

	c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->fd = fd;
	c->cb = cb;
	c->arg = arg;
	buf_init(&c->in, BUF_UNBOUNDED);
	buf_init(&c->out, CONN_OUTPUT_MAX);
	c->line_max = CONN_LINE_MAX_DEFAULT;
	c->t_start = c->t_active = conn_now();
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	/*
	 * Replies are written whole, once per batch of commands: Nagle would
	 * only add delay-ACK stalls to a request/response protocol.  Fails
	 * harmlessly on a non-TCP socket.
	 */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	event_assign(&c->ev_timer, base, -1, 0, conn_timer_cb, c);
	conn_update_events(c);
	return c;
}

static void
conn_release(struct conn *c)
{
	if (c->io_events != 0)
		event_del(&c->ev_io);
	event_del(&c->ev_timer);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	tls13_free(c->t);
	if (c->z != NULL) {
		inflateEnd(&c->z->in);
		deflateEnd(&c->z->out);
		buf_free(&c->z->zin);
		free(c->z);
	}
	if (c->fd >= 0)
		close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
	/* A descriptor came free: a listener paused on EMFILE may go on. */
	conn_listeners_resume();
}

void
conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->depth != 0)
		log_fatalx("conn_free() inside a callback of the same conn");
	conn_release(c);
}

/* From the loop: on_close, then free. */
static void
conn_destroy(struct conn *c)
{
	c->depth++;
	if (c->cb->on_close != NULL)
		c->cb->on_close(c, c->reason, c->arg);
	conn_release(c);
}

void
conn_close(struct conn *c)
{
	conn_start_closing(c, CONN_CLOSE_LOCAL);
	if (c->depth == 0)
		conn_defer(c);
}

void
conn_abort(struct conn *c)
{
	conn_die(c, CONN_CLOSE_LOCAL, NULL);
}

int
conn_closing(const struct conn *c)
{
	return (c->flags & (CONN_F_CLOSING | CONN_F_DEAD)) != 0;
}

void
conn_set_timeouts(struct conn *c, uint32_t idle_ms, uint32_t session_ms)
{
	c->idle_ms = idle_ms;
	c->session_ms = session_ms;
	/* Deadlines may have moved sooner: re-arm from scratch. */
	c->flags &= ~CONN_F_TIMER;
	conn_update_timer(c);
}

void
conn_set_line_limit(struct conn *c, size_t line_max, unsigned flags)
{
	if (line_max == 0 || line_max > CONN_LINE_MAX_LIMIT)
		log_fatalx("conn_set_line_limit: %zu out of range", line_max);
	c->line_max = line_max;
	c->line_flags = flags;
	c->in_scanned = 0;
	if (c->depth == 0)
		conn_update_events(c);
}

void
conn_set_output_max(struct conn *c, size_t output_max)
{
	if (output_max == 0)
		output_max = 1;
	c->out.max = output_max < conn_unsent(c) ? conn_unsent(c)
	    : output_max;
	/* Compare the limit with unsent bytes only. */
	if (c->out_pos > 0) {
		buf_consume(&c->out, c->out_pos);
		c->out_pos = 0;
	}
}

int
conn_fd(const struct conn *c)
{
	return c->fd;
}

const char *
conn_error(const struct conn *c)
{
	return c->error != NULL ? c->error : "";
}

void
conn_buffer_sizes(const struct conn *c, size_t *in_r, size_t *out_r)
{
	size_t tin = 0, tout = 0;

	if (c->t != NULL)
		tls13_buffer_sizes(c->t, &tin, &tout);
	*in_r = (c->in.data == NULL ? 0 : c->in.cap) + tin;
	*out_r = (c->out.data == NULL ? 0 : c->out.cap) + tout;
}

/* ---- output ---- */

/*
 * Make room for n more bytes: drop the sent head of the queue when it is
 * large (amortised: at most as many bytes move as were sent) or when the
 * limit would be hit only because of it.
 */
static void
conn_out_compact(struct conn *c, size_t n)
{
	if (c->out_pos == 0)
		return;
	if (c->out_pos >= c->out.len / 2 || c->out.len + n > c->out.max) {
		buf_consume(&c->out, c->out_pos);
		c->out_pos = 0;
	}
}

/*
 * Run the deflater over len bytes (flush: Z_NO_FLUSH or Z_SYNC_FLUSH),
 * appending what it produces to the output queue.  -1 on overflow.
 */
static int
conn_deflate(struct conn *c, const void *data, size_t len, int flush)
{
	z_stream *zs = &c->z->out;
	size_t space, made;
	int r;

	zs->next_in = (Bytef *)(uintptr_t)data;
	zs->avail_in = (uInt)len;
	for (;;) {
		conn_out_compact(c, CONN_ZOUT_STEP);
		space = c->out.max - c->out.len;
		if (space > CONN_ZOUT_STEP)
			space = CONN_ZOUT_STEP;
		if (space == 0 || buf_reserve(&c->out, space) < 0)
			return -1;
		zs->next_out = buf_tail(&c->out);
		zs->avail_out = (uInt)space;
		r = deflate(zs, flush);
		made = space - zs->avail_out;
		if (made > 0)
			buf_commit(&c->out, made);
		if (r != Z_OK && r != Z_BUF_ERROR)
			log_fatalx("conn: deflate failed (%d)", r);
		/* Done when all input is taken and deflate had room left. */
		if (zs->avail_in == 0 && zs->avail_out != 0)
			break;
	}
	zs->next_in = NULL;
	c->z->out_dirty = flush == Z_NO_FLUSH;
	return 0;
}

int
conn_write(struct conn *c, const void *data, size_t len)
{
	if (c->flags & (CONN_F_DEAD | CONN_F_CLOSING))
		return -1;
	if (c->z != NULL) {
		if (len > 0 && conn_deflate(c, data, len, Z_NO_FLUSH) < 0) {
			conn_die(c, CONN_CLOSE_OUTPUT_OVERFLOW,
			    "output queue full");
			return -1;
		}
		if (c->depth == 0)
			conn_update_events(c);
		return 0;
	}
	conn_out_compact(c, len);
	if (buf_append(&c->out, data, len) < 0) {
		conn_die(c, CONN_CLOSE_OUTPUT_OVERFLOW, "output queue full");
		return -1;
	}
	if (c->depth == 0)
		conn_update_events(c);
	return 0;
}

int
conn_vprintf(struct conn *c, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	if (c->flags & (CONN_F_DEAD | CONN_F_CLOSING))
		return -1;
	if (c->z != NULL) {
		struct buf tmp;
		int r;

		/* Format in the clear, then compress. */
		buf_init(&tmp, c->out.max);
		if (buf_vprintf(&tmp, fmt, ap) < 0) {
			buf_free(&tmp);
			conn_die(c, CONN_CLOSE_OUTPUT_OVERFLOW,
			    "output queue full");
			return -1;
		}
		r = conn_write(c, tmp.data, tmp.len);
		buf_free(&tmp);
		return r;
	}
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n >= 0)
		conn_out_compact(c, (size_t)n);
	if (n < 0 || buf_vprintf(&c->out, fmt, ap) < 0) {
		conn_die(c, CONN_CLOSE_OUTPUT_OVERFLOW, "output queue full");
		return -1;
	}
	if (c->depth == 0)
		conn_update_events(c);
	return 0;
}

int
conn_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = conn_vprintf(c, fmt, ap);
	va_end(ap);
	return r;
}

size_t
conn_output_len(const struct conn *c)
{
	return conn_unsent(c);
}

/* Why OpenSSL failed, for conn_error(). */
static const char *
conn_ssl_error(struct conn *c)
{
	long v;

	if (c->sys_errno != 0)
		return strerror(c->sys_errno);
	if ((c->flags & CONN_F_CLIENT) && c->ssl != NULL
	    && (v = SSL_get_verify_result(c->ssl)) != X509_V_OK) {
		ERR_clear_error();
		return X509_verify_cert_error_string(v);
	}
	return tls_error_string("TLS error");
}

/*
 * SECURITY: a socket call under OpenSSL failed for good (reset, EPIPE).
 * OpenSSL may report that as something it can continue from (a session
 * ticket it failed to send is skipped, its record number spent), so the
 * connection ends here, whatever the SSL call returned.
 */
static int
conn_ssl_io_failed(struct conn *c)
{
	if (c->sys_errno == 0)
		return 0;
	ERR_clear_error();
	conn_die(c, CONN_CLOSE_RESET, strerror(c->sys_errno));
	return 1;
}

/* A failed SSL_read: err is SSL_get_error()'s answer. */
static void
conn_ssl_fail(struct conn *c, int err)
{
	if (err == SSL_ERROR_ZERO_RETURN) {
		c->flags |= CONN_F_EOF;
		return;
	}
	if (err == SSL_ERROR_SYSCALL && c->sys_errno != 0) {
		ERR_clear_error();
		conn_die(c, CONN_CLOSE_RESET, strerror(c->sys_errno));
		return;
	}
	if (!(c->flags & CONN_F_HANDSHAKE) && (err == SSL_ERROR_SYSCALL
	    || (err == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error())
	    == SSL_R_UNEXPECTED_EOF_WHILE_READING))) {
		/* The peer closed without close_notify: an ordinary EOF. */
		ERR_clear_error();
		c->flags |= CONN_F_EOF;
		return;
	}
	conn_die(c, CONN_CLOSE_TLS, conn_ssl_error(c));
}

/* n bytes of the queue went out. */
static void
conn_out_sent(struct conn *c, size_t n)
{
	c->out_pos += n;
	if (c->out_pos == c->out.len) {
		/* An idle connection holds no output buffer. */
		buf_free(&c->out);
		c->out_pos = 0;
		c->flags |= CONN_F_DRAINED;
	}
}

/*
 * Write as much as the socket takes: first the cleartext that precedes
 * STARTTLS, then (once the handshake is done) the rest through TLS.
 */
static void
conn_flush(struct conn *c)
{
	size_t n;
	ssize_t w;
	int r, err;

	if (c->flags & CONN_F_HOLD)
		return;

	/* Everything written so far goes out as a complete deflate block. */
	if (c->z != NULL && c->z->out_dirty && !(c->flags & CONN_F_DEAD)
	    && conn_deflate(c, NULL, 0, Z_SYNC_FLUSH) < 0) {
		conn_die(c, CONN_CLOSE_OUTPUT_OVERFLOW, "output queue full");
		return;
	}
	while (!(c->flags & CONN_F_DEAD)) {
		if (c->out_plain > 0) {
			w = conn_sys_write(c, c->out.data + c->out_pos,
			    c->out_plain);
			if (w < 0) {
				if (!conn_errno_retry(errno))
					conn_die(c, CONN_CLOSE_RESET,
					    strerror(errno));
				return;
			}
			c->out_plain -= (size_t)w;
			conn_out_sent(c, (size_t)w);
			continue;
		}
		if (c->flags & CONN_F_TLS_WAIT) {
			c->flags &= ~CONN_F_TLS_WAIT;
			if (c->flags & CONN_F_CLOSING) {
				conn_die(c, CONN_CLOSE_LOCAL, NULL);
				return;
			}
			c->flags |= CONN_F_HANDSHAKE | CONN_F_HS_WANT_WRITE;
		}
		if (c->flags & CONN_F_HANDSHAKE)
			break;
		if (conn_unsent(c) == 0) {
			/* Records sealed earlier (a KeyUpdate answer). */
			if (conn_tls_unsent(c) > 0 && tls13_flush(c->t,
			    conn_t_write, c) == TLS13_SYSFAIL)
				conn_die(c, CONN_CLOSE_RESET,
				    strerror(c->sys_errno));
			break;
		}
		if (c->ssl == NULL && c->t != NULL) {
			r = tls13_write(c->t, c->out.data + c->out_pos,
			    conn_unsent(c), &n, conn_t_write, c);
			if (r == TLS13_SYSFAIL) {
				conn_die(c, c->sys_errno != 0
				    ? CONN_CLOSE_RESET : CONN_CLOSE_TLS,
				    c->sys_errno != 0 ? strerror(c->sys_errno)
				    : tls13_error(c->t));
				return;
			}
			if (n > 0)
				conn_out_sent(c, n);
			if (r != TLS13_OK)
				return;
			continue;
		}
		if (c->ssl != NULL) {
			c->flags &= ~CONN_F_WRITE_WANT_READ;
			ERR_clear_error();
			r = SSL_write_ex(c->ssl, c->out.data + c->out_pos,
			    conn_unsent(c), &n);
			if (conn_ssl_io_failed(c))
				return;
			if (r != 1) {
				err = SSL_get_error(c->ssl, r);
				if (err == SSL_ERROR_WANT_READ)
					c->flags |= CONN_F_WRITE_WANT_READ;
				else if (err != SSL_ERROR_WANT_WRITE)
					conn_die(c, err == SSL_ERROR_SYSCALL
					    ? CONN_CLOSE_RESET : CONN_CLOSE_TLS,
					    conn_ssl_error(c));
				return;
			}
		} else {
			w = conn_sys_write(c, c->out.data + c->out_pos,
			    conn_unsent(c));
			if (w < 0) {
				if (!conn_errno_retry(errno))
					conn_die(c, CONN_CLOSE_RESET,
					    strerror(errno));
				return;
			}
			n = (size_t)w;
		}
		conn_out_sent(c, n);
	}
}

/* ---- TLS ---- */

/*
 * The handshake is done: carry the records with tls13.c and free
 * OpenSSL's connection, or (when the handover would not be exact, or the
 * peer presented a certificate to keep) go on with OpenSSL.
 */
static void
conn_tls_compact(struct conn *c)
{
	const char *why;

	if (SSL_get0_peer_certificate(c->ssl) == NULL
	    && tls13_take(c->t, c->ssl, &why) == 0) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		return;
	}
	tls13_free(c->t);
	c->t = NULL;
}

/* 1 done, 0 in progress, -1 failed. */
static int
conn_handshake(struct conn *c)
{
	int r, err;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (conn_ssl_io_failed(c))
		return -1;
	if (r == 1) {
		c->flags &= ~(CONN_F_HANDSHAKE | CONN_F_HS_WANT_WRITE);
		c->flags |= CONN_F_TLS_DONE;
		if (c->t != NULL)
			conn_tls_compact(c);
		if (c->cb->on_tls != NULL)
			c->cb->on_tls(c, c->arg);
		return (c->flags & CONN_F_DEAD) ? -1 : 1;
	}
	err = SSL_get_error(c->ssl, r);
	if (err == SSL_ERROR_WANT_READ) {
		c->flags &= ~CONN_F_HS_WANT_WRITE;
		return 0;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		c->flags |= CONN_F_HS_WANT_WRITE;
		return 0;
	}
	if (err == SSL_ERROR_SYSCALL && c->sys_errno != 0)
		conn_die(c, CONN_CLOSE_RESET, strerror(c->sys_errno));
	else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN)
		conn_die(c, CONN_CLOSE_TLS, "peer closed during TLS handshake");
	else
		conn_die(c, CONN_CLOSE_TLS, conn_ssl_error(c));
	ERR_clear_error();
	return -1;
}

static int
conn_tls_begin(struct conn *c, SSL_CTX *ctx, int client, const char *host,
    size_t *discarded_r, const char **error_r)
{
	SSL *ssl;
	BIO *bio;
	char *name;
	unsigned char ip[16];

	if (c->flags & (CONN_F_DEAD | CONN_F_CLOSING)) {
		*error_r = "connection is closing";
		return -1;
	}
	if (c->ssl != NULL || c->t != NULL) {
		*error_r = "TLS is already active";
		return -1;
	}
	if (c->z != NULL) {
		*error_r = "TLS cannot start inside COMPRESS";
		return -1;
	}
	ERR_clear_error();
	ssl = SSL_new(ctx);
	if (ssl == NULL) {
		*error_r = tls_error_string("SSL_new failed");
		return -1;
	}
	SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS
	    | SSL_MODE_ENABLE_PARTIAL_WRITE
	    | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (client && host != NULL && host[0] != '\0') {
		if (inet_pton(AF_INET, host, ip) == 1
		    || inet_pton(AF_INET6, host, ip) == 1) {
			if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
			    host) != 1) {
				*error_r = tls_error_string("bad IP address");
				SSL_free(ssl);
				return -1;
			}
		} else {
			/* SNI takes a non-const name; OpenSSL copies it. */
			name = xstrdup(host);
			if (SSL_set_tlsext_host_name(ssl, name) != 1
			    || SSL_set1_host(ssl, host) != 1) {
				free(name);
				*error_r = tls_error_string("bad host name");
				SSL_free(ssl);
				return -1;
			}
			free(name);
		}
	}
	bio = conn_bio_new(c);
	SSL_set_bio(ssl, bio, bio);
	if ((c->flags & CONN_F_TLS_COMPACT) && !client)
		c->t = tls13_watch(ssl);
	if (client)
		SSL_set_connect_state(ssl);
	else
		SSL_set_accept_state(ssl);

	/*
	 * SECURITY (CVE-2011-0411): whatever the peer sent before the
	 * handshake and we have buffered was sent in the clear after
	 * STARTTLS; it is dropped, never read as protected input.
	 */
	if (discarded_r != NULL)
		*discarded_r = conn_pending(c);
	buf_free(&c->in);
	c->in_pos = 0;
	c->in_scanned = 0;
	c->flags &= ~(CONN_F_SKIP_LINE | CONN_F_DEFER_INPUT);

	c->ssl = ssl;
	c->flags |= CONN_F_TLS | CONN_F_TLS_WAIT;
	if (client)
		c->flags |= CONN_F_CLIENT;
	/* Output queued so far ("220 ready") goes out in the clear first. */
	c->out_plain = conn_unsent(c);
	if (c->depth == 0) {
		c->flags |= CONN_F_DEFER_RUN;
		conn_defer(c);
	}
	return 0;
}

int
conn_starttls(struct conn *c, SSL_CTX *ctx, size_t *discarded_r,
    const char **error_r)
{
	return conn_tls_begin(c, ctx, 0, NULL, discarded_r, error_r);
}

int
conn_starttls_client(struct conn *c, SSL_CTX *ctx, const char *host,
    size_t *discarded_r, const char **error_r)
{
	return conn_tls_begin(c, ctx, 1, host, discarded_r, error_r);
}

int
conn_compress(struct conn *c, const char **error_r)
{
	struct conn_z *z;

	if (c->flags & (CONN_F_DEAD | CONN_F_CLOSING)) {
		*error_r = "connection is closing";
		return -1;
	}
	if (c->z != NULL) {
		*error_r = "compression is already active";
		return -1;
	}
	if (c->flags & (CONN_F_TLS_WAIT | CONN_F_HANDSHAKE)) {
		*error_r = "TLS negotiation in progress";
		return -1;
	}
	z = xcalloc(1, sizeof(*z));
	/* Bounded by conn_fill (and by the input limit when moved here). */
	buf_init(&z->zin, BUF_UNBOUNDED);
	if (inflateInit2(&z->in, -15) != Z_OK
	    || deflateInit2(&z->out, CONN_DEFLATE_LEVEL, Z_DEFLATED,
	    -CONN_DEFLATE_WINDOW_BITS, CONN_DEFLATE_MEM_LEVEL,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		log_fatalx("conn: zlib initialisation failed");
	/*
	 * Bytes the peer sent after the COMPRESS command are compressed
	 * already; output queued before this call goes out as it is.
	 */
	if (conn_pending(c) > 0
	    && buf_append(&z->zin, c->in.data + c->in_pos, conn_pending(c))
	    < 0)
		log_fatalx("conn: compressed input overflow");
	c->in_pos = c->in.len;
	c->in_scanned = 0;
	c->flags &= ~CONN_F_SKIP_LINE;
	c->z = z;
	if (c->depth == 0 && z->zin.len > 0) {
		c->flags |= CONN_F_DEFER_RUN;
		conn_defer(c);
	}
	return 0;
}

int
conn_compressing(const struct conn *c)
{
	return c->z != NULL;
}

int
conn_is_tls(const struct conn *c)
{
	return c->ssl != NULL || c->t != NULL;
}

void
conn_set_tls_compact(struct conn *c, int on)
{
	if (on)
		c->flags |= CONN_F_TLS_COMPACT;
	else
		c->flags &= ~CONN_F_TLS_COMPACT;
}

int
conn_tls_ready(const struct conn *c)
{
	return (c->flags & CONN_F_TLS_DONE) != 0;
}

int
conn_tls_verified(const struct conn *c, const char **error_r)
{
	const char *dummy;
	long v;

	if (error_r == NULL)
		error_r = &dummy;
	if (!(c->flags & CONN_F_TLS_DONE)) {
		*error_r = "no TLS";
		return 0;
	}
	/* A compact connection never had a peer certificate. */
	if (c->ssl == NULL || SSL_get0_peer_certificate(c->ssl) == NULL) {
		*error_r = "no peer certificate";
		return 0;
	}
	v = SSL_get_verify_result(c->ssl);
	if (v != X509_V_OK) {
		*error_r = X509_verify_cert_error_string(v);
		return 0;
	}
	*error_r = "";
	return 1;
}

const char *
conn_tls_version(const struct conn *c)
{
	if (!(c->flags & CONN_F_TLS_DONE))
		return "";
	return c->ssl != NULL ? SSL_get_version(c->ssl) : tls13_version(c->t);
}

const char *
conn_tls_cipher(const struct conn *c)
{
	const char *s;

	if (!(c->flags & CONN_F_TLS_DONE))
		return "";
	if (c->ssl == NULL)
		return tls13_cipher(c->t);
	s = SSL_get_cipher_name(c->ssl);
	return s != NULL ? s : "";
}

SSL *
conn_ssl(const struct conn *c)
{
	return c->ssl;
}

/* ---- input ---- */

/*
 * Move unread input to the front before adding to it, and cap the
 * buffer's growth at the input limit (buf doubles its capacity otherwise).
 */
static void
conn_in_compact(struct conn *c)
{
	if (c->in_pos > 0) {
		buf_consume(&c->in, c->in_pos);
		c->in_pos = 0;
	}
	c->in.max = conn_in_limit(c) > c->in.len ? conn_in_limit(c)
	    : c->in.len;
}

/*
 * Inflate buffered compressed input into the input buffer, never past the
 * input limit (SECURITY: a small compressed packet may expand to any
 * size; what does not fit waits in zin or in zlib until the daemon has
 * consumed).  Returns the bytes added.
 */
static size_t
conn_inflate(struct conn *c)
{
	struct conn_z *z = c->z;
	size_t space, used, made, total = 0;
	int r;

	if (z->zin.len == 0 && !z->in_full)
		return 0;
	z->in_full = 0;
	while (!(c->flags & CONN_F_DEAD)) {
		if (conn_pending(c) >= conn_in_limit(c)) {
			z->in_full = 1;
			break;
		}
		conn_in_compact(c);
		space = conn_in_limit(c) - conn_pending(c);
		if (space > CONN_READ_CHUNK)
			space = CONN_READ_CHUNK;
		if (buf_reserve(&c->in, space) < 0)
			log_fatalx("conn: input buffer reserve failed");
		z->in.next_in = z->zin.data;
		z->in.avail_in = (uInt)z->zin.len;
		z->in.next_out = buf_tail(&c->in);
		z->in.avail_out = (uInt)space;
		r = inflate(&z->in, Z_SYNC_FLUSH);
		used = z->zin.len - z->in.avail_in;
		made = space - z->in.avail_out;
		z->in.next_in = NULL;
		if (used > 0)
			buf_consume(&z->zin, used);
		if (made > 0)
			buf_commit(&c->in, made);
		total += made;
		if (r == Z_STREAM_END || (r != Z_OK && r != Z_BUF_ERROR)) {
			/* RFC 4978: the stream never ends; anything else is
			   damage. */
			conn_die(c, CONN_CLOSE_DEFLATE, z->in.msg != NULL
			    ? z->in.msg : "bad compressed data");
			break;
		}
		if (made < space && z->zin.len == 0)
			break;		/* all input inflated */
		if (used == 0 && made == 0)
			break;
	}
	if (z->zin.len == 0)
		buf_free(&z->zin);
	return total;
}

/* Input is waiting below the input buffer: in TLS or the inflater. */
static int
conn_raw_pending(const struct conn *c)
{
	if (c->ssl != NULL && SSL_pending(c->ssl) > 0)
		return 1;
	if (c->ssl == NULL && c->t != NULL && tls13_pending(c->t))
		return 1;
	return c->z != NULL && (c->z->zin.len > 0 || c->z->in_full);
}

/*
 * Read what the socket (or TLS) has, into the input buffer, up to its
 * limit.  Returns the number of bytes added; sets CONN_F_EOF or kills the
 * connection as the socket says.
 */
static size_t
conn_fill(struct conn *c)
{
	static _Thread_local uint8_t scratch[CONN_READ_CHUNK];
	size_t total = 0, room, want, n;
	ssize_t r;
	int ok, err, last = 0;

	for (;;) {
		if (c->z != NULL)
			total += conn_inflate(c);
		if (last || (c->flags & (CONN_F_DEAD | CONN_F_EOF)))
			break;
		if (conn_pending(c) >= conn_in_limit(c))
			break;
		room = conn_in_limit(c) - conn_pending(c);
		if (c->z != NULL)
			room = c->z->zin.len >= CONN_ZIN_MAX ? 0
			    : CONN_ZIN_MAX - c->z->zin.len;
		if (room == 0)
			break;
		want = room < sizeof(scratch) ? room : sizeof(scratch);
		if (c->ssl == NULL && c->t != NULL) {
			ok = tls13_read(c->t, scratch, want, &n, conn_t_read,
			    conn_t_write, c);
			if (ok == TLS13_EOF || ok == TLS13_EOF_BARE)
				c->flags |= CONN_F_EOF;
			else if (ok == TLS13_FAIL)
				conn_die(c, CONN_CLOSE_TLS, tls13_error(c->t));
			else if (ok == TLS13_SYSFAIL)
				conn_die(c, CONN_CLOSE_RESET,
				    strerror(c->sys_errno));
			if (ok != TLS13_OK)
				break;
		} else if (c->ssl != NULL) {
			c->flags &= ~CONN_F_READ_WANT_WRITE;
			ERR_clear_error();
			ok = SSL_read_ex(c->ssl, scratch, want, &n);
			if (conn_ssl_io_failed(c))
				break;
			if (ok != 1) {
				err = SSL_get_error(c->ssl, ok);
				if (err == SSL_ERROR_WANT_WRITE)
					c->flags |= CONN_F_READ_WANT_WRITE;
				else if (err != SSL_ERROR_WANT_READ)
					conn_ssl_fail(c, err);
				break;
			}
		} else {
			r = conn_sys_read(c, scratch, want);
			if (r == 0) {
				c->flags |= CONN_F_EOF;
				break;
			}
			if (r < 0) {
				if (!conn_errno_retry(errno))
					conn_die(c, CONN_CLOSE_RESET,
					    strerror(errno));
				break;
			}
			n = (size_t)r;
		}
		/* A short plain read means the socket is empty now. */
		if (c->ssl == NULL && c->t == NULL && n < want)
			last = 1;
		if (c->z != NULL) {
			if (buf_append(&c->z->zin, scratch, n) < 0)
				log_fatalx("conn: compressed input overflow");
			continue;
		}
		conn_in_compact(c);
		if (buf_append(&c->in, scratch, n) < 0)
			log_fatalx("conn: input buffer append failed");
		total += n;
	}
	return total;
}

/*
 * Find the end of the line starting at p (len bytes).  Returns 1 with
 * *line_len_r (without terminator) and *used_r (with it), or 0.
 */
static int
conn_find_eol(struct conn *c, const uint8_t *p, size_t len,
    size_t *line_len_r, size_t *used_r)
{
	const uint8_t *lf;
	size_t from = c->in_scanned, i;

	while (from < len) {
		lf = memchr(p + from, '\n', len - from);
		if (lf == NULL)
			break;
		i = (size_t)(lf - p);
		if (i > 0 && p[i - 1] == '\r') {
			*line_len_r = i - 1;
			*used_r = i + 1;
			return 1;
		}
		if (c->line_flags & CONN_LINE_BARE_LF) {
			*line_len_r = i;
			*used_r = i + 1;
			return 1;
		}
		/* SECURITY: a bare LF is data, not a line end. */
		from = i + 1;
	}
	c->in_scanned = len;
	return 0;
}

/* Drop the pending input, keeping a final CR that may start a CRLF. */
static void
conn_drop_partial(struct conn *c)
{
	size_t pending = conn_pending(c);

	if (pending > 0 && c->in.data[c->in.len - 1] == '\r')
		pending--;
	c->in_pos += pending;
	c->in_scanned = 0;
}

int
conn_read_line(struct conn *c, const char **line_r, size_t *len_r)
{
	uint8_t *p;
	size_t pending, len, used;

	for (;;) {
		pending = conn_pending(c);
		if (pending == 0)
			return CONN_MORE;
		p = c->in.data + c->in_pos;
		if (!conn_find_eol(c, p, pending, &len, &used)) {
			if (c->flags & CONN_F_SKIP_LINE) {
				conn_drop_partial(c);
				return CONN_MORE;
			}
			/*
			 * No terminator yet: too long already if more than
			 * line_max bytes of text are here (a final CR may be
			 * half of the CRLF).
			 */
			if (pending - (p[pending - 1] == '\r') > c->line_max) {
				conn_drop_partial(c);
				c->flags |= CONN_F_SKIP_LINE;
				return CONN_LINE_TOO_LONG;
			}
			return CONN_MORE;
		}
		c->in_pos += used;
		c->in_scanned = 0;
		if (c->flags & CONN_F_SKIP_LINE) {
			/* The end of a line already reported too long. */
			c->flags &= ~CONN_F_SKIP_LINE;
			continue;
		}
		if (len > c->line_max)
			return CONN_LINE_TOO_LONG;
		p[len] = '\0';
		*line_r = (const char *)p;
		*len_r = len;
		return CONN_LINE_OK;
	}
}

size_t
conn_input(struct conn *c, const uint8_t **data_r)
{
	size_t pending = conn_pending(c);

	*data_r = pending > 0 ? c->in.data + c->in_pos : NULL;
	return pending;
}

void
conn_consume(struct conn *c, size_t n)
{
	size_t pending = conn_pending(c);

	if (n > pending)
		log_fatalx("conn_consume: %zu > %zu buffered", n, pending);
	c->in_pos += n;
	c->in_scanned = 0;
}

size_t
conn_read_bytes(struct conn *c, void *dst, size_t max)
{
	const uint8_t *p;
	size_t n = conn_input(c, &p);

	if (n > max)
		n = max;
	if (n > 0) {
		memcpy(dst, p, n);
		conn_consume(c, n);
	}
	return n;
}

void
conn_pause_input(struct conn *c)
{
	c->flags |= CONN_F_PAUSED;
	c->flags &= ~CONN_F_DEFER_INPUT;
	if (c->depth == 0)
		conn_update_events(c);
}

void
conn_hold_output(struct conn *c, int hold)
{
	if (hold) {
		c->flags |= CONN_F_HOLD;
		return;
	}
	if (!(c->flags & CONN_F_HOLD))
		return;
	c->flags &= ~CONN_F_HOLD;
	/* Send what was held from the loop, with the usual settling. */
	c->flags |= CONN_F_DEFER_RUN;
	conn_defer(c);
}

void
conn_resume_input(struct conn *c)
{
	if (!(c->flags & CONN_F_PAUSED))
		return;
	c->flags &= ~CONN_F_PAUSED;
	c->t_active = conn_now();
	if (c->flags & (CONN_F_DEAD | CONN_F_CLOSING))
		return;
	/* Buffered input (or an EOF) is handed over from the loop. */
	c->flags |= CONN_F_DEFER_INPUT;
	conn_defer(c);
}

/* ---- the engine ---- */

static int
conn_wants_input_cb(const struct conn *c)
{
	return !(c->flags & (CONN_F_DEAD | CONN_F_CLOSING | CONN_F_PAUSED
	    | CONN_F_HANDSHAKE | CONN_F_TLS_WAIT)) && conn_pending(c) > 0;
}

/* Settle the state after a step: flush, drain, EOF, close, events. */
static void
conn_finish(struct conn *c)
{
	if (!(c->flags & CONN_F_DEAD))
		conn_flush(c);
	if ((c->flags & CONN_F_DRAINED) && !(c->flags & (CONN_F_DEAD
	    | CONN_F_CLOSING))) {
		c->flags &= ~CONN_F_DRAINED;
		if (c->cb->on_drain != NULL) {
			c->cb->on_drain(c, c->arg);
			if (!(c->flags & CONN_F_DEAD))
				conn_flush(c);
			/* Drained again at once: continue from the loop. */
			if ((c->flags & CONN_F_DRAINED) && !(c->flags
			    & (CONN_F_DEAD | CONN_F_CLOSING))) {
				c->flags |= CONN_F_DEFER_RUN;
				conn_defer(c);
			}
		}
	} else
		c->flags &= ~CONN_F_DRAINED;
	/* The peer is done and nothing is paused: what is left is final. */
	if ((c->flags & CONN_F_EOF) && !(c->flags & CONN_F_PAUSED))
		conn_start_closing(c, CONN_CLOSE_EOF);
	if ((c->flags & CONN_F_CLOSING) && !(c->flags & CONN_F_DEAD)
	    && conn_unsent(c) == 0 && conn_tls_unsent(c) == 0
	    && !(c->flags & CONN_F_TLS_WAIT)) {
		if ((c->flags & CONN_F_TLS_DONE) && !(c->flags & CONN_F_EOF)) {
			/* Best effort close_notify; never wait for the reply. */
			if (c->ssl != NULL) {
				ERR_clear_error();
				(void)SSL_shutdown(c->ssl);
				ERR_clear_error();
			} else
				tls13_close(c->t, conn_t_write, c);
		}
		conn_die(c, CONN_CLOSE_LOCAL, NULL);
	}
	/* An idle connection holds no input buffer. */
	if (c->in_pos == c->in.len || (c->flags & (CONN_F_CLOSING
	    | CONN_F_DEAD))) {
		buf_free(&c->in);
		c->in_pos = 0;
		c->in_scanned = 0;
	}
	if (c->flags & CONN_F_DEAD)
		return;
	/* TLS or zlib may hold input the socket will not signal. */
	if (conn_can_read(c) && conn_raw_pending(c)) {
		c->flags |= CONN_F_DEFER_RUN;
		conn_defer(c);
	}
	conn_update_events(c);
	conn_update_timer(c);
}

static void
conn_run(struct conn *c, int readable, int call_input)
{
	size_t got;
	int round, r, full;

	c->depth++;
	for (round = 0; round < CONN_RUN_ROUNDS; round++) {
		if (c->flags & CONN_F_DEAD)
			break;
		conn_flush(c);
		if (c->flags & CONN_F_DEAD)
			break;
		if (c->flags & CONN_F_HANDSHAKE) {
			r = conn_handshake(c);
			if (r <= 0)
				break;
			/* Application data may have come with the Finished. */
			readable = 1;
			continue;
		}
		got = 0;
		if ((readable || conn_raw_pending(c)) && conn_can_read(c))
			got = conn_fill(c);
		full = conn_pending(c) >= conn_in_limit(c);
		readable = 0;
		if (!((got > 0 || call_input) && conn_wants_input_cb(c)))
			break;
		call_input = 0;
		c->cb->on_input(c, c->arg);
		/*
		 * After on_input: the handler may have freed room in a full
		 * buffer, or started TLS; go round again for either.
		 */
		if (c->flags & (CONN_F_TLS_WAIT | CONN_F_HANDSHAKE))
			continue;
		if (full && conn_can_read(c))
			readable = 1;
		else if (!(conn_raw_pending(c) && conn_can_read(c)))
			break;
	}
	conn_finish(c);
	c->depth--;
}

static void
conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int readable;

	(void)fd;
	readable = (what & EV_READ) != 0 || ((what & EV_WRITE)
	    && (c->flags & CONN_F_READ_WANT_WRITE));
	conn_run(c, readable, 0);
}

static void
conn_timeout(struct conn *c, enum conn_close_reason why)
{
	if (c->cb->on_timeout == NULL) {
		conn_die(c, why, NULL);
		return;
	}
	/* Whatever the handler does (conn_close...), the cause stays. */
	conn_set_reason(c, why, NULL);
	c->depth++;
	c->cb->on_timeout(c, why, c->arg);
	c->depth--;
	conn_start_closing(c, why);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	uint64_t now;
	int call_input;

	(void)fd;
	(void)what;
	c->flags &= ~CONN_F_TIMER;
	if (c->flags & CONN_F_DEAD) {
		conn_destroy(c);
		return;
	}
	now = conn_now();
	if (c->flags & CONN_F_CLOSING) {
		if (now >= c->t_linger) {
			conn_die(c, c->reason, "output not drained in time");
			return;
		}
	} else {
		if (c->flags & CONN_F_PAUSED)
			c->t_active = now;
		if (c->session_ms != 0 && now >= c->t_start + c->session_ms)
			conn_timeout(c, CONN_CLOSE_TIMEOUT_SESSION);
		else if (c->idle_ms != 0 && now >= c->t_active + c->idle_ms)
			conn_timeout(c, CONN_CLOSE_TIMEOUT_IDLE);
		if (c->flags & CONN_F_DEAD)
			return;
	}
	call_input = (c->flags & CONN_F_DEFER_INPUT) != 0;
	c->flags &= ~(CONN_F_DEFER_INPUT | CONN_F_DEFER_RUN);
	conn_run(c, 0, call_input);
}

/* ---- listeners ---- */

struct conn_listener {
	struct event_base *base;
	struct event ev;
	struct event ev_pause;
	void (*on_accept)(int fd, const struct sockaddr *sa, socklen_t salen,
	    void *arg);
	void *arg;
	struct conn_listener *next;
	uint32_t pause_ms;
	int fd;
	int paused;
};

static void
conn_listener_resume(struct conn_listener *l)
{
	if (!l->paused)
		return;
	l->paused = 0;
	event_del(&l->ev_pause);
	if (event_add(&l->ev, NULL) < 0)
		log_fatalx("conn: event_add failed");
}

static void
conn_listeners_resume(void)
{
	struct conn_listener *l;

	for (l = conn_listeners; l != NULL; l = l->next)
		conn_listener_resume(l);
}

static void
conn_listener_pause_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_listener_resume(arg);
}

static void
conn_listener_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_listener *l = arg;
	struct sockaddr_storage ss;
	struct timeval tv;
	socklen_t salen;
	int i, s;

	(void)fd;
	(void)what;
	for (i = 0; i < CONN_ACCEPT_BATCH; i++) {
		salen = sizeof(ss);
		s = accept4(l->fd, (struct sockaddr *)&ss, &salen,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EMFILE || errno == ENFILE
			    || errno == ENOBUFS || errno == ENOMEM) {
				/*
				 * The socket stays readable: without a pause
				 * the loop would spin on it (OpenSMTPD).
				 */
				log_warn("accept paused for %u ms",
				    (unsigned)l->pause_ms);
				event_del(&l->ev);
				l->paused = 1;
				tv.tv_sec = (time_t)(l->pause_ms / 1000);
				tv.tv_usec = (suseconds_t)(l->pause_ms % 1000)
				    * 1000;
				evtimer_add(&l->ev_pause, &tv);
				return;
			}
			log_warn("accept");
			return;
		}
		l->on_accept(s, (struct sockaddr *)&ss, salen, l->arg);
	}
}

struct conn_listener *
conn_listener_new(struct event_base *base, int fd,
    void (*on_accept)(int fd, const struct sockaddr *sa, socklen_t salen,
    void *arg), void *arg)
{
	struct conn_listener *l;
	int fl;

	l = xcalloc(1, sizeof(*l));
	l->base = base;
	l->fd = fd;
	l->on_accept = on_accept;
	l->arg = arg;
	l->pause_ms = CONN_ACCEPT_PAUSE_MS;
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	event_assign(&l->ev, base, fd, EV_READ | EV_PERSIST,
	    conn_listener_cb, l);
	evtimer_assign(&l->ev_pause, base, conn_listener_pause_cb, l);
	if (event_add(&l->ev, NULL) < 0)
		log_fatalx("conn: event_add failed");
	l->next = conn_listeners;
	conn_listeners = l;
	return l;
}

void
conn_listener_free(struct conn_listener *l)
{
	struct conn_listener **pp;

	if (l == NULL)
		return;
	for (pp = &conn_listeners; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	event_del(&l->ev);
	event_del(&l->ev_pause);
	close(l->fd);
	free(l);
}

int
conn_listener_paused(const struct conn_listener *l)
{
	return l->paused;
}

void
conn_listener_set_pause(struct conn_listener *l, uint32_t ms)
{
	l->pause_ms = ms;
}

int
conn_listen_tcp(const char *host, const char *port, int *fd_r,
    const char **error_r)
{
	static char ebuf[256];
	struct addrinfo hints, *res, *ai;
	int fd = -1, one = 1, r, e = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	r = getaddrinfo(host != NULL && host[0] != '\0' ? host : NULL, port,
	    &hints, &res);
	if (r != 0) {
		snprintf(ebuf, sizeof(ebuf), "%s:%s: %s",
		    host != NULL ? host : "*", port, gai_strerror(r));
		*error_r = ebuf;
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK
		    | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0
		    && listen(fd, CONN_LISTEN_BACKLOG) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(ebuf, sizeof(ebuf), "%s:%s: %s",
		    host != NULL ? host : "*", port, strerror(e));
		*error_r = ebuf;
		return -1;
	}
	*fd_r = fd;
	return 0;
}

int
conn_connect_tcp(const char *host, const char *port, int *fd_r,
    const char **error_r)
{
	static char ebuf[256];
	struct addrinfo hints, *res;
	int fd, r, e;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		snprintf(ebuf, sizeof(ebuf), "%s:%s: %s", host, port,
		    gai_strerror(r));
		*error_r = ebuf;
		return -1;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK
	    | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0) {
		e = errno;
		freeaddrinfo(res);
		snprintf(ebuf, sizeof(ebuf), "socket: %s", strerror(e));
		*error_r = ebuf;
		return -1;
	}
	r = connect(fd, res->ai_addr, res->ai_addrlen);
	e = errno;
	freeaddrinfo(res);
	/*
	 * EINPROGRESS is the normal answer; a refusal known later is
	 * reported by the first read or write, like any reset.
	 */
	if (r < 0 && e != EINPROGRESS) {
		close(fd);
		snprintf(ebuf, sizeof(ebuf), "connect %s:%s: %s", host, port,
		    strerror(e));
		*error_r = ebuf;
		return -1;
	}
	*fd_r = fd;
	return 0;
}
