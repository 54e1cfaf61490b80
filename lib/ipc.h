/*
 * ipc.h - framed messages between a daemon's parent and its workers.
 *
 * Every daemon process, over a socketpair(AF_UNIX, SOCK_STREAM).  A message
 * is an 8-byte header and a payload:
 *
 *     uint32 type   (network byte order; meaning chosen by the caller)
 *     uint32 len    (network byte order; payload length, bit 31 = an fd
 *                    travels with this message, bits 30..17 must be 0)
 *     len bytes of payload, at most IPC_MSG_MAX
 *
 * The reader is incremental and non-blocking-friendly: feed it bytes (or let
 * it read the socket) in any split, and ipc_read() returns a complete
 * message, "need more", or an error.  SECURITY: the peer is another of our
 * processes, but possibly a compromised worker, so a length beyond
 * IPC_MSG_MAX is refused as soon as the header arrives, before any payload
 * is buffered, and the reader never holds more than one message.
 *
 * The writer appends framed messages to a struct buf and ipc_flush() writes
 * them out as far as the socket takes them.  ipc_send_fd() hands a file
 * descriptor (an accepted connection) to the peer with SCM_RIGHTS.
 */
#ifndef GOVMAIL_IPC_H
#define GOVMAIL_IPC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Largest payload of one message. */
#define IPC_MSG_MAX (64 * 1024)
/* Size of the header. */
#define IPC_HDR_LEN 8
/* Bit of the len field that says an fd travels with the message. */
#define IPC_LEN_FD 0x80000000u
/* Received descriptors not yet claimed by a message, at most. */
#define IPC_MAX_FDS 16

/* Return values of ipc_read(). */
#define IPC_ERROR (-1)
#define IPC_MORE 0
#define IPC_MESSAGE 1

/* Return value of ipc_reader_fill() when the socket has nothing now. */
#define IPC_AGAIN (-2)

struct ipc_msg {
	uint32_t type;
	uint32_t len;		/* payload length, without the fd bit */
	const uint8_t *data;	/* into the reader; valid until its next call */
	int fd;			/* passed descriptor (caller owns it), or -1 */
};

struct ipc_reader {
	struct buf in;		/* at most one message: header + payload */
	size_t consume;		/* bytes of the last message returned */
	int fds[IPC_MAX_FDS];	/* received, not yet claimed */
	size_t nfds;
};

void ipc_reader_init(struct ipc_reader *r);
/* Releases the buffer and closes descriptors no message claimed. */
void ipc_reader_free(struct ipc_reader *r);

/*
 * Append bytes the caller read itself (tests, or a caller with its own I/O).
 * Returns 0, or -1 with *error_r if they do not fit: the reader holds at
 * most IPC_HDR_LEN + IPC_MSG_MAX bytes, so call ipc_read() until IPC_MORE
 * before feeding more than that.
 */
int ipc_reader_feed(struct ipc_reader *r, const void *data, size_t len,
    const char **error_r);

/*
 * One recvmsg() from sock into the free space of the reader, collecting
 * any descriptors that arrive.  Returns the number of bytes read (> 0),
 * 0 at end of file, IPC_AGAIN if the socket has nothing now (EAGAIN or
 * EINTR), or -1 with *error_r on an error (including descriptors that did
 * not fit: more than IPC_MAX_FDS pending, or a truncated control message).
 * Call ipc_read() until IPC_MORE before filling again.
 */
int ipc_reader_fill(struct ipc_reader *r, int sock, const char **error_r);

/*
 * The next complete message: IPC_MESSAGE with *msg_r filled (data valid
 * until the next call on this reader; msg_r->fd owned by the caller),
 * IPC_MORE if the buffered bytes do not yet hold one, or IPC_ERROR with
 * *error_r if the header is invalid (length beyond IPC_MSG_MAX, reserved
 * bits set) or a message that says it carries an fd arrived without one.
 * After IPC_ERROR the stream cannot be trusted: close the connection.
 */
int ipc_read(struct ipc_reader *r, struct ipc_msg *msg_r,
    const char **error_r);

/*
 * Append one framed message to out.  Returns 0, or -1 with *error_r if len
 * exceeds IPC_MSG_MAX or out would pass its max (out is then unchanged).
 */
int ipc_msg_append(struct buf *out, uint32_t type, const void *data,
    size_t len, const char **error_r);

/*
 * Write as much of out as sock takes now (send with MSG_NOSIGNAL) and drop
 * what was written.  Returns 1 when out is empty, 0 when bytes remain (the
 * socket is full: wait for it to be writable), or -1 with *error_r.
 */
int ipc_flush(int sock, struct buf *out, const char **error_r);

/*
 * Send one message carrying a duplicate of fd (SCM_RIGHTS).  Messages must
 * stay in order, so this sends only when out is empty (flush it first).
 * Returns 1 if the message (and fd) went out, with any unsent tail of it
 * appended to out for ipc_flush(); 0 if nothing was sent (out not empty,
 * or the socket is full): try again later; -1 with *error_r on an error or
 * if len exceeds IPC_MSG_MAX.  The caller keeps its own fd either way.
 */
int ipc_send_fd(int sock, struct buf *out, uint32_t type, const void *data,
    size_t len, int fd, const char **error_r);

#endif
