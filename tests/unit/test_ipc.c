/*
 * Unit tests for lib/ipc.c: a stream of messages fed whole, byte by byte
 * and in random splits; the length limit at N-1, N and N+1 (refused as
 * soon as the header arrives); reserved bits; the writer's limits; a
 * non-blocking socketpair with partial writes; and descriptor passing.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "buf.h"
#include "ipc.h"
#include "xmalloc.h"

/* The messages every stream test sends, in order. */
static const size_t stream_lens[] = {
	0, 1, 7, 8, 9, 100, IPC_MSG_MAX - 1, IPC_MSG_MAX, 3, 0, 4096
};
#define NSTREAM (sizeof(stream_lens) / sizeof(stream_lens[0]))

static uint8_t
pattern(size_t msg, size_t i)
{
	return (uint8_t)(msg * 31 + i * 7 + (i >> 8));
}

static void
build_stream(struct buf *out)
{
	size_t m, i;

	buf_init(out, BUF_UNBOUNDED);
	for (m = 0; m < NSTREAM; m++) {
		uint8_t *p = xmalloc(stream_lens[m] + 1);
		const char *err = NULL;

		for (i = 0; i < stream_lens[m]; i++)
			p[i] = pattern(m, i);
		assert_int_equal(ipc_msg_append(out, (uint32_t)(1000 + m), p,
		    stream_lens[m], &err), 0);
		free(p);
	}
}

static void
check_msg(const struct ipc_msg *msg, size_t m)
{
	size_t i;

	assert_true(m < NSTREAM);
	assert_int_equal(msg->type, 1000 + m);
	assert_int_equal(msg->len, stream_lens[m]);
	assert_int_equal(msg->fd, -1);
	for (i = 0; i < msg->len; i++)
		if (msg->data[i] != pattern(m, i))
			fail_msg("message %zu byte %zu differs", m, i);
}

/* Drain every complete message; returns how many were checked so far. */
static size_t
drain(struct ipc_reader *r, size_t got)
{
	struct ipc_msg msg;
	const char *err = NULL;
	int st;

	while ((st = ipc_read(r, &msg, &err)) == IPC_MESSAGE)
		check_msg(&msg, got++);
	if (st != IPC_MORE)
		fail_msg("ipc_read: %s", err);
	return got;
}

/* Feed the stream in chunks chosen by next_len(); all messages arrive. */
static void
feed_stream(size_t (*next_len)(unsigned *), unsigned seed)
{
	struct ipc_reader r;
	struct buf s;
	size_t off = 0, got = 0;

	build_stream(&s);
	ipc_reader_init(&r);
	while (off < s.len) {
		size_t n = next_len(&seed);
		const char *err = NULL;

		if (n > s.len - off)
			n = s.len - off;
		/* The reader holds one message: it must accept this much. */
		if (n > r.in.max - (r.in.len - r.consume))
			n = r.in.max - (r.in.len - r.consume);
		assert_int_equal(ipc_reader_feed(&r, s.data + off, n, &err),
		    0);
		off += n;
		got = drain(&r, got);
	}
	assert_int_equal(got, NSTREAM);
	assert_int_equal(r.in.len - r.consume, 0);
	ipc_reader_free(&r);
	buf_free(&s);
}

static size_t
len_one(unsigned *seed)
{
	(void)seed;
	return 1;
}

static size_t
len_random(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	switch ((*seed >> 16) % 4) {
	case 0:
		return 1 + (*seed >> 8) % 8;
	case 1:
		return 1 + (*seed >> 4) % 100;
	default:
		return 1 + (*seed >> 3) % (IPC_MSG_MAX + IPC_HDR_LEN);
	}
}

static size_t
len_whole(unsigned *seed)
{
	(void)seed;
	return IPC_HDR_LEN + IPC_MSG_MAX;
}

static void
test_byte_by_byte(void **state)
{
	(void)state;
	feed_stream(len_one, 0);
}

static void
test_random_splits(void **state)
{
	unsigned seed;

	(void)state;
	for (seed = 1; seed <= 50; seed++)
		feed_stream(len_random, seed);
	feed_stream(len_whole, 0);
}

static void
put_header(uint8_t *h, uint32_t type, uint32_t lenf)
{
	h[0] = (uint8_t)(type >> 24);
	h[1] = (uint8_t)(type >> 16);
	h[2] = (uint8_t)(type >> 8);
	h[3] = (uint8_t)type;
	h[4] = (uint8_t)(lenf >> 24);
	h[5] = (uint8_t)(lenf >> 16);
	h[6] = (uint8_t)(lenf >> 8);
	h[7] = (uint8_t)lenf;
}

struct hdr_case {
	uint32_t lenf;
	int result;	/* after the header alone */
};

/* A bad length is refused from the header alone, before any payload. */
static void
test_length_limit(void **state)
{
	static const struct hdr_case cases[] = {
		{ IPC_MSG_MAX - 1, IPC_MORE },
		{ IPC_MSG_MAX, IPC_MORE },
		{ IPC_MSG_MAX + 1, IPC_ERROR },
		{ 0x7fffffffu, IPC_ERROR },
		{ 0x00020000u, IPC_ERROR },		/* bit 17 */
		{ 0x40000000u, IPC_ERROR },		/* bit 30 */
		{ 0xffffffffu, IPC_ERROR },
		{ 0, IPC_MESSAGE },
	};
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ipc_reader r;
		struct ipc_msg msg;
		uint8_t h[IPC_HDR_LEN];
		const char *err = NULL;

		ipc_reader_init(&r);
		put_header(h, 7, cases[i].lenf);
		/* Seven header bytes are never enough to decide. */
		for (j = 0; j < IPC_HDR_LEN - 1; j++) {
			assert_int_equal(ipc_reader_feed(&r, h + j, 1, &err),
			    0);
			assert_int_equal(ipc_read(&r, &msg, &err), IPC_MORE);
		}
		assert_int_equal(ipc_reader_feed(&r, h + j, 1, &err), 0);
		assert_int_equal(ipc_read(&r, &msg, &err), cases[i].result);
		if (cases[i].result == IPC_ERROR)
			assert_non_null(err);
		ipc_reader_free(&r);
	}
}

static void
test_writer_limits(void **state)
{
	static uint8_t payload[IPC_MSG_MAX + 1];
	struct buf out;
	const char *err = NULL;

	(void)state;
	buf_init(&out, BUF_UNBOUNDED);
	assert_int_equal(ipc_msg_append(&out, 1, payload, IPC_MSG_MAX - 1,
	    &err), 0);
	assert_int_equal(ipc_msg_append(&out, 1, payload, IPC_MSG_MAX, &err),
	    0);
	assert_int_equal(out.len, 2 * IPC_HDR_LEN + 2 * IPC_MSG_MAX - 1);
	assert_int_equal(ipc_msg_append(&out, 1, payload, IPC_MSG_MAX + 1,
	    &err), -1);
	assert_non_null(strstr(err, "IPC_MSG_MAX"));
	assert_int_equal(out.len, 2 * IPC_HDR_LEN + 2 * IPC_MSG_MAX - 1);
	buf_free(&out);

	/* A bounded output buffer: a message that does not fit leaves it. */
	buf_init(&out, IPC_HDR_LEN + 10);
	assert_int_equal(ipc_msg_append(&out, 1, payload, 10, &err), 0);
	assert_int_equal(ipc_msg_append(&out, 1, payload, 0, &err), -1);
	assert_int_equal(out.len, IPC_HDR_LEN + 10);
	buf_free(&out);

	/* The reader refuses to be fed past one message. */
	{
		struct ipc_reader r;

		ipc_reader_init(&r);
		assert_int_equal(ipc_reader_feed(&r, payload, IPC_MSG_MAX,
		    &err), 0);
		assert_int_equal(ipc_reader_feed(&r, payload, IPC_HDR_LEN,
		    &err), 0);
		assert_int_equal(ipc_reader_feed(&r, payload, 1, &err), -1);
		ipc_reader_free(&r);
	}
}

static void
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	assert_true(fl >= 0);
	assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* The whole stream through a small non-blocking socketpair. */
static void
test_socketpair(void **state)
{
	struct ipc_reader r;
	struct buf s;
	int sv[2], sndbuf = 4096, partial = 0, st = 0;
	size_t got = 0;
	const char *err = NULL;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf,
	    sizeof(sndbuf)), 0);
	set_nonblock(sv[0]);
	set_nonblock(sv[1]);
	build_stream(&s);
	ipc_reader_init(&r);
	while (got < NSTREAM) {
		int n;

		if (s.len > 0) {
			st = ipc_flush(sv[0], &s, &err);
			assert_true(st >= 0);
			if (st == 0)
				partial = 1;
		}
		n = ipc_reader_fill(&r, sv[1], &err);
		assert_true(n > 0 || n == IPC_AGAIN);
		got = drain(&r, got);
	}
	assert_int_equal(s.len, 0);
	assert_int_equal(st, 1);
	assert_true(partial);	/* the socket really was full at times */
	assert_int_equal(ipc_reader_fill(&r, sv[1], &err), IPC_AGAIN);
	close(sv[0]);
	assert_int_equal(ipc_reader_fill(&r, sv[1], &err), 0);	/* EOF */
	ipc_reader_free(&r);
	buf_free(&s);
	close(sv[1]);
}

/* Read from fd until n bytes or EOF. */
static size_t
read_all(int fd, char *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = read(fd, p + got, n - got);

		if (k <= 0)
			break;
		got += (size_t)k;
	}
	return got;
}

static void
test_fd_passing(void **state)
{
	struct ipc_reader r;
	struct ipc_msg msg;
	struct buf out;
	int sv[2], p1[2], p2[2], n;
	const char *err = NULL;
	char text[16];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pipe(p1), 0);
	assert_int_equal(pipe(p2), 0);
	buf_init(&out, BUF_UNBOUNDED);
	ipc_reader_init(&r);

	/* An ordinary message, then two carrying the pipes' write ends. */
	assert_int_equal(ipc_msg_append(&out, 1, "plain", 5, &err), 0);
	/* Order: a descriptor message waits while out holds bytes. */
	assert_int_equal(ipc_send_fd(sv[0], &out, 2, "one", 3, p1[1], &err),
	    0);
	assert_int_equal(ipc_flush(sv[0], &out, &err), 1);
	assert_int_equal(ipc_send_fd(sv[0], &out, 2, "one", 3, p1[1], &err),
	    1);
	assert_int_equal(ipc_send_fd(sv[0], &out, 3, NULL, 0, p2[1], &err),
	    1);
	assert_int_equal(out.len, 0);
	close(p1[1]);
	close(p2[1]);
	assert_int_equal(ipc_send_fd(sv[0], &out, 4, NULL, IPC_MSG_MAX + 1,
	    0, &err), -1);

	while ((n = ipc_read(&r, &msg, &err)) == IPC_MORE)
		assert_true(ipc_reader_fill(&r, sv[1], &err) > 0);
	assert_int_equal(n, IPC_MESSAGE);
	assert_int_equal(msg.type, 1);
	assert_int_equal(msg.fd, -1);
	assert_memory_equal(msg.data, "plain", 5);

	while ((n = ipc_read(&r, &msg, &err)) == IPC_MORE)
		assert_true(ipc_reader_fill(&r, sv[1], &err) > 0);
	assert_int_equal(n, IPC_MESSAGE);
	assert_int_equal(msg.type, 2);
	assert_int_equal(msg.len, 3);
	assert_memory_equal(msg.data, "one", 3);
	assert_true(msg.fd >= 0);
	assert_int_equal(write(msg.fd, "via-fd-1", 8), 8);
	close(msg.fd);

	while ((n = ipc_read(&r, &msg, &err)) == IPC_MORE)
		assert_true(ipc_reader_fill(&r, sv[1], &err) > 0);
	assert_int_equal(n, IPC_MESSAGE);
	assert_int_equal(msg.type, 3);
	assert_int_equal(msg.len, 0);
	assert_true(msg.fd >= 0);
	assert_true((fcntl(msg.fd, F_GETFD) & FD_CLOEXEC) != 0);
	assert_int_equal(write(msg.fd, "via-fd-2", 8), 8);
	close(msg.fd);

	/* The descriptors the worker got reach the pipes the parent made. */
	assert_int_equal(read_all(p1[0], text, 8), 8);
	assert_memory_equal(text, "via-fd-1", 8);
	assert_int_equal(read_all(p2[0], text, 8), 8);
	assert_memory_equal(text, "via-fd-2", 8);
	close(p1[0]);
	close(p2[0]);
	ipc_reader_free(&r);

	/* A message that claims a descriptor but came without one. */
	{
		uint8_t h[IPC_HDR_LEN];

		ipc_reader_init(&r);
		put_header(h, 5, IPC_LEN_FD | 0);
		assert_int_equal(ipc_reader_feed(&r, h, sizeof(h), &err), 0);
		assert_int_equal(ipc_read(&r, &msg, &err), IPC_ERROR);
		assert_non_null(strstr(err, "descriptor"));
		ipc_reader_free(&r);
	}
	buf_free(&out);
	close(sv[0]);
	close(sv[1]);
}

/* Descriptors beyond IPC_MAX_FDS pending are closed and reported. */
static void
test_fd_overflow(void **state)
{
	struct ipc_reader r;
	struct buf out;
	int sv[2], i, n, failed = 0, devnull;
	const char *err = NULL;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	devnull = open("/dev/null", O_WRONLY);
	assert_true(devnull >= 0);
	buf_init(&out, BUF_UNBOUNDED);
	ipc_reader_init(&r);
	for (i = 0; i < IPC_MAX_FDS + 1; i++)
		assert_int_equal(ipc_send_fd(sv[0], &out, 9, NULL, 0, devnull,
		    &err), 1);
	close(sv[0]);
	/* Fill without reading messages: the queue must not grow past max. */
	while ((n = ipc_reader_fill(&r, sv[1], &err)) != 0) {
		if (n < 0) {
			failed = 1;
			break;
		}
	}
	assert_true(failed);
	assert_non_null(strstr(err, "descriptors"));
	assert_true(r.nfds <= IPC_MAX_FDS);
	ipc_reader_free(&r);
	buf_free(&out);
	close(sv[1]);
	close(devnull);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_random_splits),
		cmocka_unit_test(test_length_limit),
		cmocka_unit_test(test_writer_limits),
		cmocka_unit_test(test_socketpair),
		cmocka_unit_test(test_fd_passing),
		cmocka_unit_test(test_fd_overflow),
	};

	return cmocka_run_group_tests_name("ipc", tests, NULL, NULL);
}
