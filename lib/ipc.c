/*
 * ipc.c - framing of parent <-> worker messages over a socketpair.
 *
 * Runs in every daemon process, parent and workers alike.  Trusts nothing
 * in the byte stream: the peer may be a compromised worker.  A header's
 * length is checked against IPC_MSG_MAX before any payload is buffered,
 * and the reader's buffer holds at most one message (header + payload).
 */
#include "autoconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buf.h"
#include "ipc.h"
#include "xmalloc.h"

/* Bits of the len field that must be zero: above IPC_MSG_MAX, below FD. */
#define IPC_LEN_MASK 0x7fffffffu
/* Descriptors accepted by one recvmsg(). */
#define IPC_FDS_PER_READ 4
/* Reader buffer limit: one whole message. */
#define IPC_READER_MAX (IPC_HDR_LEN + IPC_MSG_MAX)

static uint32_t
ipc_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16
	    | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void
ipc_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void
ipc_reader_init(struct ipc_reader *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->in, IPC_READER_MAX);
	r->nfds = 0;
}

void
ipc_reader_free(struct ipc_reader *r)
{
	size_t i;

	for (i = 0; i < r->nfds; i++)
		close(r->fds[i]);
	r->nfds = 0;
	buf_free(&r->in);
}

/* Drop the message returned last time (its data was valid until now). */
static void
ipc_reader_settle(struct ipc_reader *r)
{
	if (r->consume > 0) {
		buf_consume(&r->in, r->consume);
		r->consume = 0;
	}
}

int
ipc_reader_feed(struct ipc_reader *r, const void *data, size_t len,
    const char **error_r)
{
	ipc_reader_settle(r);
	if (buf_append(&r->in, data, len) < 0) {
		*error_r = "ipc: reader full (read messages before feeding)";
		return -1;
	}
	return 0;
}

int
ipc_reader_fill(struct ipc_reader *r, int sock, const char **error_r)
{
	union {
		struct cmsghdr hdr;
		uint8_t space[CMSG_SPACE(sizeof(int) * IPC_FDS_PER_READ)];
	} control;
	struct msghdr mh;
	struct cmsghdr *cm;
	struct iovec iov;
	size_t room;
	ssize_t n;
	int overflow = 0;

	ipc_reader_settle(r);
	room = r->in.max - r->in.len;
	if (room == 0) {
		*error_r = "ipc: reader full (read messages before filling)";
		return -1;
	}
	if (buf_reserve(&r->in, room) < 0) {
		*error_r = "ipc: reader buffer";
		return -1;
	}
	memset(&mh, 0, sizeof(mh));
	memset(&control, 0, sizeof(control));
	iov.iov_base = buf_tail(&r->in);
	iov.iov_len = room;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = control.space;
	mh.msg_controllen = sizeof(control.space);
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return IPC_AGAIN;
		*error_r = strerror(errno);
		return -1;
	}
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t i, count;
		int fd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < count; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int),
			    sizeof(int));
			if (r->nfds < IPC_MAX_FDS) {
				r->fds[r->nfds++] = fd;
			} else {
				close(fd);
				overflow = 1;
			}
		}
	}
	if (n > 0)
		buf_commit(&r->in, (size_t)n);
	if (mh.msg_flags & MSG_CTRUNC) {
		*error_r = "ipc: descriptors truncated";
		return -1;
	}
	if (overflow) {
		*error_r = "ipc: too many pending descriptors";
		return -1;
	}
	return (int)n;
}

int
ipc_read(struct ipc_reader *r, struct ipc_msg *msg_r, const char **error_r)
{
	uint32_t type, lenf, len;

	ipc_reader_settle(r);
	if (r->in.len < IPC_HDR_LEN)
		return IPC_MORE;
	type = ipc_get32(r->in.data);
	lenf = ipc_get32(r->in.data + 4);
	len = lenf & IPC_LEN_MASK;
	/* SECURITY: judge the length before waiting for the payload. */
	if (len > IPC_MSG_MAX) {
		*error_r = "ipc: message longer than IPC_MSG_MAX";
		return IPC_ERROR;
	}
	if (r->in.len - IPC_HDR_LEN < len)
		return IPC_MORE;
	msg_r->type = type;
	msg_r->len = len;
	msg_r->data = r->in.data + IPC_HDR_LEN;
	msg_r->fd = -1;
	if (lenf & IPC_LEN_FD) {
		if (r->nfds == 0) {
			*error_r = "ipc: message without its descriptor";
			return IPC_ERROR;
		}
		msg_r->fd = r->fds[0];
		r->nfds--;
		memmove(r->fds, r->fds + 1, r->nfds * sizeof(r->fds[0]));
	}
	r->consume = IPC_HDR_LEN + (size_t)len;
	return IPC_MESSAGE;
}

static int
ipc_header(uint8_t hdr[IPC_HDR_LEN], uint32_t type, size_t len, int with_fd,
    const char **error_r)
{
	if (len > IPC_MSG_MAX) {
		*error_r = "ipc: message longer than IPC_MSG_MAX";
		return -1;
	}
	ipc_put32(hdr, type);
	ipc_put32(hdr + 4, (uint32_t)len | (with_fd ? IPC_LEN_FD : 0));
	return 0;
}

int
ipc_msg_append(struct buf *out, uint32_t type, const void *data, size_t len,
    const char **error_r)
{
	uint8_t hdr[IPC_HDR_LEN];

	if (ipc_header(hdr, type, len, 0, error_r) < 0)
		return -1;
	if (buf_reserve(out, IPC_HDR_LEN + len) < 0) {
		*error_r = "ipc: output buffer full";
		return -1;
	}
	if (buf_append(out, hdr, sizeof(hdr)) < 0
	    || (len > 0 && buf_append(out, data, len) < 0)) {
		*error_r = "ipc: output buffer full";
		return -1;
	}
	return 0;
}

int
ipc_flush(int sock, struct buf *out, const char **error_r)
{
	while (out->len > 0) {
		ssize_t n = send(sock, out->data, out->len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			*error_r = strerror(errno);
			return -1;
		}
		buf_consume(out, (size_t)n);
	}
	return 1;
}

int
ipc_send_fd(int sock, struct buf *out, uint32_t type, const void *data,
    size_t len, int fd, const char **error_r)
{
	union {
		struct cmsghdr hdr;
		uint8_t space[CMSG_SPACE(sizeof(int))];
	} control;
	uint8_t hdr[IPC_HDR_LEN];
	struct iovec iov[2];
	struct msghdr mh;
	struct cmsghdr *cm;
	ssize_t n;
	size_t total = IPC_HDR_LEN + len, sent;

	if (ipc_header(hdr, type, len, 1, error_r) < 0)
		return -1;
	if (out->len > 0)
		return 0;	/* keep order: earlier messages go first */
	/* Room for a short send's tail, checked before anything is sent. */
	if (buf_reserve(out, total) < 0) {
		*error_r = "ipc: output buffer full";
		return -1;
	}
	memset(&mh, 0, sizeof(mh));
	memset(&control, 0, sizeof(control));
	iov[0].iov_base = hdr;
	iov[0].iov_len = IPC_HDR_LEN;
	iov[1].iov_base = (void *)(uintptr_t)data;
	iov[1].iov_len = len;
	mh.msg_iov = iov;
	mh.msg_iovlen = len > 0 ? 2 : 1;
	mh.msg_control = control.space;
	mh.msg_controllen = sizeof(control.space);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		*error_r = strerror(errno);
		return -1;
	}
	/* The fd went with the first byte; queue whatever did not fit. */
	sent = (size_t)n;
	if (sent < IPC_HDR_LEN) {
		if (buf_append(out, hdr + sent, IPC_HDR_LEN - sent) < 0
		    || (len > 0 && buf_append(out, data, len) < 0))
			goto full;
	} else if (sent < total) {
		if (buf_append(out, (const uint8_t *)data +
		    (sent - IPC_HDR_LEN), total - sent) < 0)
			goto full;
	}
	return 1;
full:
	/* Cannot happen: room was reserved above. */
	*error_r = "ipc: output buffer full after a partial send";
	return -1;
}
