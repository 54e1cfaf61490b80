/*
 * ocsp_load.c - an OCSP load generator for `govmail-ca serve` (issue 3,
 * "Benchmarks"): CONNS keep-alive HTTP/1.1 connections, each sending one
 * POST /ocsp at a time and waiting for its answer, on one non-blocking
 * epoll loop.  Not a test: it prints responses per second for
 * bench/run-ca.sh.
 *
 *   ocsp_load HOST PORT CONNS SECONDS REQUEST.der...
 *
 * The DER requests are sent in turn.  After one second of warm-up, the
 * responses completed in SECONDS are counted; a response counts only if
 * it is HTTP 200 with a body whose OCSPResponse status is successful (0).
 * A connection the server closes is reopened (and counted).  Trusts its
 * command line; the server's bytes are checked against fixed limits.
 * Exits 1 if any response was wrong or none arrived.
 */
#include "autoconf.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "strnum.h"
#include "xmalloc.h"

#define LOAD_CONNS_MAX 4096
#define LOAD_REQS_MAX 256
#define LOAD_REQ_MAX 8192		/* GOVCA_OCSP_REQUEST_MAX */
#define LOAD_HEAD_MAX 8192		/* bytes of response headers */
#define LOAD_BODY_MAX (64 * 1024)	/* bytes of a response body */
#define LOAD_SECONDS_MAX 600
#define LOAD_WARMUP 1.0

struct load_conn {
	int fd;
	struct buf out;			/* the request being sent */
	size_t out_off;
	struct buf in;			/* the response being read */
	size_t head_len;		/* 0 until the headers are complete */
	size_t body_len;
};

static struct buf *requests;
static size_t nrequests;
static size_t next_request;
static struct addrinfo *target;
static int epfd;
static uint64_t ok_count, bad_count, reconnects;
static int counting;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
conn_open(struct load_conn *c)
{
	struct epoll_event ev;
	int one = 1;

	c->fd = socket(target->ai_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (c->fd == -1)
		log_fatal("socket");
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, target->ai_addr, target->ai_addrlen) == -1 &&
	    errno != EINPROGRESS)
		log_fatal("connect");
	buf_reset(&c->out);
	buf_append(&c->out, requests[next_request].data,
	    requests[next_request].len);
	next_request = (next_request + 1) % nrequests;
	c->out_off = 0;
	buf_reset(&c->in);
	c->head_len = 0;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1)
		log_fatal("epoll_ctl");
}

static void
conn_reopen(struct load_conn *c)
{
	close(c->fd);
	reconnects++;
	conn_open(c);
}

static void
conn_want(struct load_conn *c, uint32_t events)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		log_fatal("epoll_ctl");
}

/* Headers complete: status 200 and a Content-Length we can hold. */
static int
conn_parse_head(struct load_conn *c, const char *head)
{
	const char *line;
	uint64_t len;
	const char *err;
	int have_len = 0;

	if (strncmp(head, "HTTP/1.1 200 ", 13) != 0)
		return -1;
	for (line = strstr(head, "\r\n"); line != NULL;
	    line = strstr(line + 2, "\r\n")) {
		if (strncasecmp(line + 2, "Content-Length:", 15) == 0) {
			char val[32];
			const char *v = line + 17;
			size_t n;

			while (*v == ' ')
				v++;
			n = strcspn(v, "\r");
			if (n == 0 || n >= sizeof(val))
				return -1;
			memcpy(val, v, n);
			val[n] = '\0';
			if (strnum_u64(val, 1, LOAD_BODY_MAX, &len, &err) < 0)
				return -1;
			c->body_len = (size_t)len;
			have_len = 1;
		}
	}
	return have_len ? 0 : -1;
}

/* An OCSPResponse SEQUENCE whose responseStatus is successful(0). */
static int
ocsp_successful(const uint8_t *p, size_t len)
{
	size_t i;

	if (len < 5 || p[0] != 0x30)
		return 0;
	if (p[1] < 0x80)
		i = 2;
	else if (p[1] >= 0x81 && p[1] <= 0x83)
		i = 2 + (size_t)(p[1] - 0x80);
	else
		return 0;
	return i + 3 <= len && p[i] == 0x0a && p[i + 1] == 0x01 &&
	    p[i + 2] == 0x00;
}

static void
conn_read(struct load_conn *c)
{
	ssize_t n;

	for (;;) {
		if (buf_reserve(&c->in, 4096) == -1) {
			bad_count++;
			conn_reopen(c);
			return;
		}
		n = read(c->fd, buf_tail(&c->in), 4096);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			/* Closed between requests: reopen and resend. */
			if (c->in.len > 0)
				bad_count++;
			conn_reopen(c);
			return;
		}
		buf_commit(&c->in, (size_t)n);
		if (c->head_len == 0) {
			uint8_t *end = memmem(c->in.data, c->in.len,
			    "\r\n\r\n", 4);

			if (end == NULL) {
				if (c->in.len > LOAD_HEAD_MAX) {
					bad_count++;
					conn_reopen(c);
					return;
				}
				continue;
			}
			c->head_len = (size_t)(end - c->in.data) + 4;
			end[2] = '\0';
			if (conn_parse_head(c, (char *)c->in.data) == -1) {
				bad_count++;
				conn_reopen(c);
				return;
			}
		}
		if (c->in.len < c->head_len + c->body_len)
			continue;
		if (c->in.len > c->head_len + c->body_len ||
		    !ocsp_successful(c->in.data + c->head_len, c->body_len))
			bad_count++;
		else if (counting)
			ok_count++;
		/* The next request on the same connection. */
		buf_reset(&c->in);
		c->head_len = 0;
		buf_reset(&c->out);
		buf_append(&c->out, requests[next_request].data,
		    requests[next_request].len);
		next_request = (next_request + 1) % nrequests;
		c->out_off = 0;
		conn_want(c, EPOLLIN | EPOLLOUT);
		return;
	}
}

static void
conn_write(struct load_conn *c)
{
	ssize_t n;

	while (c->out_off < c->out.len) {
		n = write(c->fd, c->out.data + c->out_off,
		    c->out.len - c->out_off);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			conn_reopen(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	conn_want(c, EPOLLIN);
}

static void
load_requests(const char *host, const char *port, char **files, size_t n)
{
	uint8_t body[LOAD_REQ_MAX + 1];
	size_t i, len;
	FILE *f;

	if (n > LOAD_REQS_MAX)
		log_fatalx("at most %d request files", LOAD_REQS_MAX);
	requests = xcalloc(n, sizeof(*requests));
	for (i = 0; i < n; i++) {
		if ((f = fopen(files[i], "rb")) == NULL)
			log_fatal("%s", files[i]);
		len = fread(body, 1, sizeof(body), f);
		fclose(f);
		if (len == 0 || len > LOAD_REQ_MAX)
			log_fatalx("%s: empty or over %d bytes", files[i],
			    LOAD_REQ_MAX);
		buf_init(&requests[i], LOAD_REQ_MAX + 512);
		buf_printf(&requests[i], "POST /ocsp HTTP/1.1\r\n"
		    "Host: %s:%s\r\n"
		    "Content-Type: application/ocsp-request\r\n"
		    "Content-Length: %zu\r\n\r\n", host, port, len);
		buf_append(&requests[i], body, len);
	}
	nrequests = n;
}

int
main(int argc, char **argv)
{
	struct epoll_event evs[256];
	struct addrinfo hints;
	struct load_conn *conns;
	const char *err;
	uint64_t nconns, seconds, i;
	double start, t0 = 0, t, end;
	int n, k, rc;

	log_init("ocsp_load", LOG_TO_STDERR, LOG_LEVEL_WARN);
	if (argc < 6) {
		fprintf(stderr, "usage: ocsp_load HOST PORT CONNS SECONDS "
		    "REQUEST.der...\n");
		return 2;
	}
	if (strnum_u64(argv[3], 1, LOAD_CONNS_MAX, &nconns, &err) < 0 ||
	    strnum_u64(argv[4], 1, LOAD_SECONDS_MAX, &seconds, &err) < 0)
		log_fatalx("CONNS or SECONDS: %s", err);
	signal(SIGPIPE, SIG_IGN);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if ((rc = getaddrinfo(argv[1], argv[2], &hints, &target)) != 0)
		log_fatalx("%s:%s: %s", argv[1], argv[2], gai_strerror(rc));
	load_requests(argv[1], argv[2], argv + 5, (size_t)(argc - 5));
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		log_fatal("epoll_create1");
	conns = xcalloc(nconns, sizeof(*conns));
	for (i = 0; i < nconns; i++) {
		buf_init(&conns[i].out, LOAD_REQ_MAX + 512);
		buf_init(&conns[i].in, LOAD_HEAD_MAX + LOAD_BODY_MAX);
		conn_open(&conns[i]);
	}
	start = now();
	end = start + LOAD_WARMUP + (double)seconds;
	while ((t = now()) < end) {
		if (!counting && t >= start + LOAD_WARMUP) {
			counting = 1;
			t0 = t;
		}
		n = epoll_wait(epfd, evs, 256, 100);
		if (n == -1 && errno != EINTR)
			log_fatal("epoll_wait");
		for (k = 0; k < n; k++) {
			struct load_conn *c = evs[k].data.ptr;

			if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_read(c);
			else if (evs[k].events & EPOLLOUT)
				conn_write(c);
		}
	}
	t = now() - t0;
	printf("ocsp POST keep-alive, %llu clients: %llu responses in %.2f s"
	    " = %.0f/s (bad %llu, reconnects %llu)\n",
	    (unsigned long long)nconns, (unsigned long long)ok_count, t,
	    (double)ok_count / t, (unsigned long long)bad_count,
	    (unsigned long long)reconnects);
	for (i = 0; i < nconns; i++) {
		close(conns[i].fd);
		buf_free(&conns[i].out);
		buf_free(&conns[i].in);
	}
	free(conns);
	for (i = 0; i < nrequests; i++)
		buf_free(&requests[i]);
	free(requests);
	freeaddrinfo(target);
	close(epfd);
	return bad_count > 0 || ok_count == 0 ? 1 : 0;
}
