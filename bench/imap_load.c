/*
 * imap_load.c - the load generator of the IMAP benchmark (bench/run-imap.sh):
 * many IMAP sessions on one epoll loop, over TLS (OpenSSL, implicit TLS)
 * or plain TCP, against govmail-imapd or Dovecot alike.  Not a test; run
 * by the benchmark script against its own private servers.  Trusts its
 * command line; the server's answers are parsed only as far as needed
 * (tags, EXISTS, APPENDUID, literals, continuations).
 *
 *   imap_load [-t] [-u USERS] [-d DOMAIN] [-w PASSWORD]
 *             mix HOST PORT CLIENTS SECONDS
 *       CLIENTS sessions, session i logged in as (i % USERS + 1)u@DOMAIN,
 *       each repeating the cycle SELECT INBOX; FETCH of 20 messages'
 *       FLAGS, size and header fields; FETCH of one whole message
 *       (BODY.PEEK[]); STORE +/-FLAGS (\Flagged) on one message; UID
 *       SEARCH SUBJECT; APPEND of a 2 KB message (LITERAL+); UID STORE
 *       +FLAGS.SILENT (\Deleted) on the appended UID (APPENDUID); EXPUNGE
 *       -- one command in flight per session.  The clock starts once
 *       every session is logged in; prints the commands completed with OK
 *       per second over SECONDS, and the CPU time this process used.
 *       After the clock stops, a session between its APPEND and its
 *       EXPUNGE finishes them, so that every mailbox ends as it began.
 *   imap_load [-t] ... idle HOST PORT CONNS HOLD
 *       CONNS sessions (at most IMAP_LOAD_INFLIGHT being set up at once)
 *       each LOGIN, SELECT INBOX, IDLE; prints "READY n" once all are in
 *       IDLE (the "+" continuation came), holds them HOLD seconds (or
 *       until SIGUSR1) and prints how many were still open.
 *   -t: TLS (implicit, certificate not checked: loopback, our own).
 * Exit status 0 only if no command failed and no session was lost.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "log.h"
#include "strnum.h"
#include "xmalloc.h"

#define IMAP_LOAD_MAX_CONNS 100000
#define IMAP_LOAD_INFLIGHT 64		/* idle: sessions being set up at once */
#define IMAP_LOAD_SETUP_MAX 600		/* idle: seconds to get all into IDLE */
#define IMAP_LOAD_READ 16384
#define IMAP_LOAD_FETCH_N 20
#define IMAP_LOAD_APPEND_SIZE 2048
#define IMAP_LOAD_MAX_ERRORS_SHOWN 5

enum load_step {
	STEP_GREETING,
	STEP_LOGIN,
	STEP_SELECT,
	STEP_FETCH_HDR,
	STEP_FETCH_BODY,
	STEP_STORE,
	STEP_SEARCH,
	STEP_APPEND,
	STEP_DELETE,
	STEP_EXPUNGE,
	STEP_IDLE,	/* IDLE sent, waiting for "+" */
	STEP_IDLING,
	STEP_DONE,
};

struct load_conn {
	int fd;
	SSL *ssl;
	int connected;
	int handshaken;
	int want_write;		/* TLS needs the socket writable */
	enum load_step step;
	unsigned tag;
	unsigned user;
	unsigned long exists;
	unsigned long appended_uid;
	unsigned rnd;
	int flag_on;
	int in_literal_tail;	/* next line continues a response */
	double sent_at;		/* when the command in flight was sent */
	size_t literal_left;
	struct buf in;
	struct buf out;
};

static const char *load_step_names[STEP_DONE] = {
	"greeting", "LOGIN", "SELECT", "FETCH-headers", "FETCH-body",
	"STORE", "SEARCH", "APPEND", "STORE-deleted", "EXPUNGE", "IDLE",
	"idling",
};

static struct {
	int idle_mode;
	int tls;
	unsigned users;
	const char *domain;
	const char *password;
	struct sockaddr_in addr;
	SSL_CTX *ctx;
	int ep;
	struct load_conn *conns;
	unsigned nconns;
	unsigned started;
	unsigned inflight;
	unsigned logged_in;
	unsigned idling;
	unsigned lost;
	unsigned long errors;
	unsigned long commands;	/* OK answers inside the measured window */
	unsigned long step_n[STEP_DONE];	/* per command, in the window */
	double step_sec[STEP_DONE];
	int measuring;
	int draining;		/* mix: the clock stopped, finish cycles */
	unsigned finished;
	char append_msg[IMAP_LOAD_APPEND_SIZE + 512];
	size_t append_len;
} L;

static volatile sig_atomic_t load_release;

static void
load_on_usr1(int sig)
{
	(void)sig;
	load_release = 1;
}

static double
load_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
load_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
	    + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void
load_error(struct load_conn *c, const char *what, const char *detail)
{
	if (L.errors++ < IMAP_LOAD_MAX_ERRORS_SHOWN)
		fprintf(stderr, "imap_load: session %u (user %u): %s%s%.200s\n",
		    (unsigned)(c - L.conns), c->user, what,
		    detail ? ": " : "", detail ? detail : "");
}

static void
load_close(struct load_conn *c)
{
	if (c->fd < 0)
		return;
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->fd = -1;
	if (c->step != STEP_DONE) {
		L.lost++;
		if (c->step < STEP_IDLING && L.idle_mode)
			L.inflight--;
	}
	c->step = STEP_DONE;
}

static void
load_send(struct load_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
load_send(struct load_conn *c, const char *fmt, ...)
{
	va_list ap;

	c->tag++;
	c->sent_at = load_now();
	buf_printf(&c->out, "A%u ", c->tag);
	va_start(ap, fmt);
	buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
}

static unsigned
load_rand(struct load_conn *c, unsigned long n)
{
	c->rnd = c->rnd * 1103515245u + 12345u;
	return n ? (c->rnd >> 8) % n : 0;
}

/* Sends the command of step c->step. */
static void
load_command(struct load_conn *c)
{
	unsigned long lo, n = c->exists;

	switch (c->step) {
	case STEP_LOGIN:
		load_send(c, "LOGIN %u" "u@%s %s\r\n", c->user, L.domain,
		    L.password);
		break;
	case STEP_SELECT:
		load_send(c, "SELECT INBOX\r\n");
		break;
	case STEP_FETCH_HDR:
		lo = n > IMAP_LOAD_FETCH_N ?
		    1 + load_rand(c, n - IMAP_LOAD_FETCH_N + 1) : 1;
		load_send(c, "FETCH %lu:%lu (UID FLAGS RFC822.SIZE "
		    "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE "
		    "MESSAGE-ID)])\r\n", lo,
		    n > IMAP_LOAD_FETCH_N ? lo + IMAP_LOAD_FETCH_N - 1 :
		    (n ? n : 1));
		break;
	case STEP_FETCH_BODY:
		load_send(c, "FETCH %lu (UID BODY.PEEK[])\r\n",
		    n ? 1 + (unsigned long)load_rand(c, n) : 1);
		break;
	case STEP_STORE:
		c->flag_on = !c->flag_on;
		load_send(c, "STORE %lu %cFLAGS (\\Flagged)\r\n",
		    n ? 1 + (unsigned long)load_rand(c, n) : 1,
		    c->flag_on ? '+' : '-');
		break;
	case STEP_SEARCH:
		load_send(c, "UID SEARCH SUBJECT invoice\r\n");
		break;
	case STEP_APPEND:
		c->appended_uid = 0;
		load_send(c, "APPEND INBOX (\\Seen) {%zu+}\r\n", L.append_len);
		buf_append(&c->out, L.append_msg, L.append_len);
		buf_append(&c->out, "\r\n", 2);
		break;
	case STEP_DELETE:
		load_send(c, "UID STORE %lu +FLAGS.SILENT (\\Deleted)\r\n",
		    c->appended_uid);
		break;
	case STEP_EXPUNGE:
		load_send(c, "EXPUNGE\r\n");
		break;
	case STEP_IDLE:
		load_send(c, "IDLE\r\n");
		break;
	default:
		break;
	}
}

static void load_start_more(void);

/* The decimal number at s (digits only): its value in *val_r and the
 * first byte after it in *end_r; -1 if there is none or it is too big. */
static int
load_number(const char *s, unsigned long *val_r, const char **end_r)
{
	const char *e = s, *err = NULL;
	uint64_t v;

	while (*e >= '0' && *e <= '9')
		e++;
	if (strnum_u64_n(s, (size_t)(e - s), UINT32_MAX, &v, &err) < 0)
		return -1;
	*val_r = (unsigned long)v;
	*end_r = e;
	return 0;
}

/* A tagged answer to the command in flight. */
static void
load_tagged(struct load_conn *c, const char *line, const char *rest)
{
	const char *p;
	unsigned long uidv;

	if (strncmp(rest, "OK", 2) != 0) {
		load_error(c, "command failed", line);
		load_close(c);
		if (L.idle_mode)
			load_start_more();
		return;
	}
	if (L.measuring && c->step >= STEP_SELECT) {
		L.commands++;
		L.step_n[c->step]++;
		L.step_sec[c->step] += load_now() - c->sent_at;
	}
	/* Once the clock stopped, a session ends where its mailbox holds
	 * what it held: not between its APPEND and its EXPUNGE. */
	if (L.draining && c->step != STEP_APPEND && c->step != STEP_DELETE
	    && c->step != STEP_LOGIN) {
		c->step = STEP_DONE;
		L.finished++;
		return;
	}
	switch (c->step) {
	case STEP_LOGIN:
		L.logged_in++;
		c->step = STEP_SELECT;
		break;
	case STEP_SELECT:
		c->step = L.idle_mode ? STEP_IDLE : STEP_FETCH_HDR;
		break;
	case STEP_APPEND:
		p = strstr(rest, "[APPENDUID ");
		if (p == NULL
		    || load_number(p + strlen("[APPENDUID "), &uidv, &p) < 0
		    || *p++ != ' '
		    || load_number(p, &c->appended_uid, &p) < 0 || *p != ']') {
			load_error(c, "APPEND without APPENDUID", line);
			load_close(c);
			return;
		}
		c->step = STEP_DELETE;
		break;
	case STEP_EXPUNGE:
		c->step = STEP_SELECT;
		break;
	default:
		c->step++;
		break;
	}
	load_command(c);
}

/* One response line (without CRLF), the start of a response. */
static void
load_line(struct load_conn *c, char *line)
{
	char tag[16];
	unsigned long n;
	const char *e;

	if (c->step == STEP_GREETING) {
		if (strncmp(line, "* OK", 4) != 0) {
			load_error(c, "bad greeting", line);
			load_close(c);
			return;
		}
		c->step = STEP_LOGIN;
		load_command(c);
		return;
	}
	if (line[0] == '*') {
		if (line[1] == ' ' && load_number(line + 2, &n, &e) == 0
		    && strcmp(e, " EXISTS") == 0)
			c->exists = n;
		else if (strncmp(line, "* BYE", 5) == 0)
			load_error(c, "server said", line);
		return;
	}
	if (line[0] == '+') {
		if (c->step == STEP_IDLE) {
			c->step = STEP_IDLING;
			L.idling++;
			L.inflight--;
			load_start_more();
		} else if (c->step != STEP_IDLING) {
			load_error(c, "unexpected continuation", line);
		}
		return;
	}
	snprintf(tag, sizeof(tag), "A%u ", c->tag);
	if (strncmp(line, tag, strlen(tag)) == 0) {
		load_tagged(c, line, line + strlen(tag));
		return;
	}
	load_error(c, "unexpected line", line);
}

/* Splits c->in into lines, skipping literals. */
static void
load_parse(struct load_conn *c)
{
	size_t off = 0;

	while (c->fd >= 0 && off < c->in.len) {
		uint8_t *s = c->in.data + off, *e;
		size_t left = c->in.len - off, llen;

		if (c->literal_left > 0) {
			size_t k = left < c->literal_left ? left :
			    c->literal_left;

			c->literal_left -= k;
			off += k;
			continue;
		}
		e = memchr(s, '\n', left);
		if (e == NULL)
			break;
		llen = (size_t)(e - s);
		off += llen + 1;
		if (llen > 0 && s[llen - 1] == '\r')
			llen--;
		s[llen] = '\0';
		/* A line ending in {N} announces N bytes of literal. */
		if (llen > 2 && s[llen - 1] == '}') {
			uint8_t *b = s + llen - 2;

			while (b > s && *b >= '0' && *b <= '9')
				b--;
			if (*b == '{' && b[1] != '}') {
				unsigned long v;
				const char *le;

				if (load_number((char *)b + 1, &v, &le) == 0
				    && *le == '}')
					c->literal_left = v;
			}
		}
		if (c->in_literal_tail)
			c->in_literal_tail = c->literal_left > 0;
		else {
			c->in_literal_tail = c->literal_left > 0;
			load_line(c, (char *)s);
		}
	}
	if (c->fd >= 0)
		buf_consume(&c->in, off);
}

static void
load_interest(struct load_conn *c)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	if (!c->connected || c->want_write || c->out.len > 0)
		ev.events |= EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(L.ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
		log_fatal("epoll_ctl");
}

/* Returns -1 when the connection is gone. */
static int
load_tls_result(struct load_conn *c, int r, const char *what)
{
	int e = SSL_get_error(c->ssl, r);
	char msg[256];

	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_WANT_WRITE) {
		c->want_write = 1;
		return 0;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL
	    && ERR_peek_error() == 0)) {
		if (c->step != STEP_DONE)
			load_error(c, "connection closed by the server",
			    what);
	} else {
		ERR_error_string_n(ERR_get_error(), msg, sizeof(msg));
		load_error(c, what, msg);
	}
	ERR_clear_error();
	load_close(c);
	return -1;
}

static void
load_io(struct load_conn *c)
{
	int r;

	if (!c->connected) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			load_error(c, "connect", strerror(err));
			load_close(c);
			return;
		}
		c->connected = 1;
	}
	c->want_write = 0;
	if (c->ssl != NULL && !c->handshaken) {
		r = SSL_connect(c->ssl);
		if (r != 1) {
			if (load_tls_result(c, r, "TLS handshake") == 0)
				load_interest(c);
			return;
		}
		c->handshaken = 1;
	}
	for (;;) {
		/* Write what is queued. */
		while (c->out.len > 0) {
			if (c->ssl != NULL) {
				r = SSL_write(c->ssl, c->out.data,
				    (int)c->out.len);
				if (r <= 0) {
					if (load_tls_result(c, r, "write") < 0)
						return;
					break;
				}
			} else {
				r = (int)write(c->fd, c->out.data, c->out.len);
				if (r < 0) {
					if (errno == EAGAIN)
						break;
					load_error(c, "write", strerror(errno));
					load_close(c);
					return;
				}
			}
			buf_consume(&c->out, (size_t)r);
		}
		/* Read what is there. */
		if (buf_reserve(&c->in, IMAP_LOAD_READ) != 0)
			log_fatalx("input buffer");
		if (c->ssl != NULL) {
			r = SSL_read(c->ssl, buf_tail(&c->in), IMAP_LOAD_READ);
			if (r <= 0) {
				if (load_tls_result(c, r, "read") < 0)
					return;
				break;
			}
		} else {
			r = (int)read(c->fd, buf_tail(&c->in), IMAP_LOAD_READ);
			if (r < 0 && errno == EAGAIN)
				break;
			if (r <= 0) {
				if (c->step != STEP_DONE)
					load_error(c, "connection closed",
					    r < 0 ? strerror(errno) : "EOF");
				load_close(c);
				return;
			}
		}
		buf_commit(&c->in, (size_t)r);
		load_parse(c);
		if (c->fd < 0)
			return;
	}
	if (c->in.len == 0 && c->step == STEP_IDLING)
		buf_shrink(&c->in);
	load_interest(c);
}

static void
load_start(struct load_conn *c, unsigned i)
{
	struct epoll_event ev;
	int one = 1;

	memset(c, 0, sizeof(*c));
	buf_init(&c->in, BUF_UNBOUNDED);
	buf_init(&c->out, BUF_UNBOUNDED);
	c->user = i % L.users + 1;
	c->rnd = i * 2654435761u + 1;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		log_fatal("socket (raise ulimit -n)");
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&L.addr, sizeof(L.addr)) != 0
	    && errno != EINPROGRESS)
		log_fatal("connect");
	if (L.tls) {
		c->ssl = SSL_new(L.ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
			log_fatalx("SSL_new");
		SSL_set_connect_state(c->ssl);
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(L.ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
		log_fatal("epoll_ctl");
	L.inflight++;
}

/* idle: keeps IMAP_LOAD_INFLIGHT sessions in set-up. */
static void
load_start_more(void)
{
	while (L.started < L.nconns && L.inflight < IMAP_LOAD_INFLIGHT) {
		load_start(&L.conns[L.started], L.started);
		L.started++;
	}
}

static void
load_loop_once(int timeout_ms)
{
	struct epoll_event evs[256];
	int n, i;

	n = epoll_wait(L.ep, evs, 256, timeout_ms);
	if (n < 0 && errno != EINTR)
		log_fatal("epoll_wait");
	for (i = 0; i < n; i++) {
		struct load_conn *c = evs[i].data.ptr;

		if (c->fd >= 0)
			load_io(c);
	}
}

static void
load_make_append(void)
{
	size_t len;

	len = (size_t)snprintf(L.append_msg, sizeof(L.append_msg),
	    "From: Bench Client <client@bench.example>\r\n"
	    "To: Bench Client <client@bench.example>\r\n"
	    "Subject: draft saved by the benchmark\r\n"
	    "Date: Mon, 2 Nov 2026 10:00:00 +0800\r\n"
	    "Message-ID: <draft@bench.example>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	while (len + 80 < IMAP_LOAD_APPEND_SIZE) {
		memcpy(L.append_msg + len, "a draft line of seventy-six "
		    "characters, repeated to make a two kilobyte message\r\n",
		    80);
		len += 80;
	}
	L.append_len = len;
}

static int
load_mix(unsigned clients, unsigned seconds)
{
	double t0, t1, cpu0, cpu1, deadline;
	unsigned i;

	for (i = 0; i < clients; i++)
		load_start(&L.conns[i], i);
	L.started = clients;
	deadline = load_now() + IMAP_LOAD_SETUP_MAX;
	while (L.logged_in + L.lost < clients && load_now() < deadline)
		load_loop_once(100);
	if (L.logged_in < clients) {
		fprintf(stderr, "imap_load: only %u of %u sessions logged in\n",
		    L.logged_in, clients);
		return 1;
	}
	L.measuring = 1;
	t0 = load_now();
	cpu0 = load_cpu();
	while ((t1 = load_now()) < t0 + seconds && L.lost == 0)
		load_loop_once(50);
	cpu1 = load_cpu();
	L.measuring = 0;
	L.draining = 1;
	deadline = load_now() + IMAP_LOAD_SETUP_MAX;
	while (L.finished + L.lost < clients && load_now() < deadline)
		load_loop_once(100);
	printf("commands %lu seconds %.2f rate %.0f errors %lu lost %u "
	    "clients %u load_cpu %.2f load_cpu_pct %.0f\n",
	    L.commands, t1 - t0, (double)L.commands / (t1 - t0), L.errors,
	    L.lost, clients, cpu1 - cpu0, 100.0 * (cpu1 - cpu0) / (t1 - t0));
	printf("mean_ms");
	for (i = STEP_SELECT; i <= STEP_EXPUNGE; i++)
		printf(" %s=%.1f", load_step_names[i], L.step_n[i] ?
		    1000.0 * L.step_sec[i] / (double)L.step_n[i] : 0.0);
	printf("\n");
	return L.errors || L.lost ? 1 : 0;
}

static int
load_idle(unsigned conns, unsigned hold)
{
	double deadline, t0;
	unsigned open = 0, i;

	load_start_more();
	deadline = load_now() + IMAP_LOAD_SETUP_MAX;
	while (L.idling + L.lost < conns && load_now() < deadline)
		load_loop_once(100);
	printf("READY %u idling %u lost %u errors %lu\n", L.idling, L.idling,
	    L.lost, L.errors);
	fflush(stdout);
	t0 = load_now();
	while (load_now() < t0 + hold && !load_release)
		load_loop_once(200);
	for (i = 0; i < conns; i++)
		if (L.conns[i].fd >= 0 && L.conns[i].step == STEP_IDLING)
			open++;
	printf("HELD %u of %u for %.0f s, lost %u, errors %lu\n", open, conns,
	    load_now() - t0, L.lost, L.errors);
	fflush(stdout);
	return open == conns && L.errors == 0 ? 0 : 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: imap_load [-t] [-u USERS] [-d DOMAIN] "
	    "[-w PASSWORD] mix HOST PORT CLIENTS SECONDS\n"
	    "       imap_load [-t] [-u USERS] [-d DOMAIN] [-w PASSWORD] "
	    "idle HOST PORT CONNS HOLD\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	const char *err = NULL;
	uint64_t v, n, secs;
	int ch;

	log_init("imap_load", LOG_TO_STDERR, LOG_LEVEL_WARN);
	L.users = 100;
	L.domain = "bench.example";
	L.password = "bench-password";
	while ((ch = getopt(argc, argv, "tu:d:w:")) != -1) {
		switch (ch) {
		case 't':
			L.tls = 1;
			break;
		case 'u':
			if (strnum_u64(optarg, 1, IMAP_LOAD_MAX_CONNS, &v,
			    &err) < 0)
				log_fatalx("-u %s: %s", optarg, err);
			L.users = (unsigned)v;
			break;
		case 'd':
			L.domain = optarg;
			break;
		case 'w':
			L.password = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 5)
		usage();
	if (strcmp(argv[0], "idle") == 0)
		L.idle_mode = 1;
	else if (strcmp(argv[0], "mix") != 0)
		usage();
	memset(&L.addr, 0, sizeof(L.addr));
	L.addr.sin_family = AF_INET;
	if (inet_pton(AF_INET, argv[1], &L.addr.sin_addr) != 1)
		log_fatalx("bad address %s", argv[1]);
	if (strnum_u64(argv[2], 1, 65535, &v, &err) < 0)
		log_fatalx("bad port %s: %s", argv[2], err);
	L.addr.sin_port = htons((uint16_t)v);
	if (strnum_u64(argv[3], 1, IMAP_LOAD_MAX_CONNS, &n, &err) < 0
	    || strnum_u64(argv[4], 1, 86400, &secs, &err) < 0)
		log_fatalx("bad count: %s", err);
	if (L.tls) {
		L.ctx = SSL_CTX_new(TLS_client_method());
		if (L.ctx == NULL)
			log_fatalx("SSL_CTX_new");
		SSL_CTX_set_verify(L.ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(L.ctx, SSL_MODE_RELEASE_BUFFERS
		    | SSL_MODE_ENABLE_PARTIAL_WRITE
		    | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	load_make_append();
	L.ep = epoll_create1(EPOLL_CLOEXEC);
	if (L.ep < 0)
		log_fatal("epoll_create1");
	L.nconns = (unsigned)n;
	L.conns = xcalloc(n, sizeof(*L.conns));
	if (L.idle_mode) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = load_on_usr1;
		sigaction(SIGUSR1, &sa, NULL);
		return load_idle((unsigned)n, (unsigned)secs);
	}
	return load_mix((unsigned)n, (unsigned)secs);
}
