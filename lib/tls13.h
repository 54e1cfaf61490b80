/*
 * tls13.h - the TLS 1.3 record layer of an established server connection,
 * carried on after OpenSSL's handshake so that OpenSSL's connection
 * object (SSL) can be freed.
 *
 * Why: OpenSSL 3.0 keeps about 13 KiB per TLS 1.3 connection after the
 * handshake even with SSL_MODE_RELEASE_BUFFERS (the SSL object alone is
 * 7.6 KiB: record state for 32 pipelines, handshake secrets; then two
 * AEAD contexts and the session).  imapd holds tens of thousands of
 * connections that sit in IDLE for hours; this layer keeps ~400 bytes
 * each (keys, IVs, sequence numbers) and no buffer while idle.
 *
 * What stays with OpenSSL: the whole handshake, every certificate and
 * signature check, key exchange and key derivation up to the traffic
 * secrets, TLS 1.2, and every client-side connection.  What is done here,
 * with OpenSSL's EVP AEAD (AES-GCM, ChaCha20-Poly1305) and HKDF: the
 * record framing of RFC 8446 5.1-5.4, KeyUpdate (4.6.3, 7.2), and alerts
 * (6).  The handover is exact or does not happen:
 *
 *   - the traffic secrets come from OpenSSL's key log callback
 *     (CLIENT/SERVER_TRAFFIC_SECRET_0);
 *   - record sequence numbers are counted from OpenSSL's message
 *     callback: every record header read or written after each side's
 *     Finished (the server's session ticket records included);
 *   - tls13_take() refuses (and OpenSSL carries on) unless the version
 *     is TLS 1.3, the suite is one of the three above, both secrets and
 *     counts are known, no KeyUpdate or other post-handshake message was
 *     seen, and OpenSSL holds no unread record and no unsent byte.
 *
 * SECURITY: every record is checked before anything is used: outer type
 * application_data, length at most 2^14 + 256 (record_overflow), the
 * AEAD tag (bad_record_mac), inner plaintext at most 2^14 with a
 * non-zero content type.  Handshake messages after the handshake may
 * only be KeyUpdate, whole within one record and last in it; alerts are
 * two bytes; at most TLS13_IDLE_RECORDS records in a row carry no
 * application data (empty records, KeyUpdates).  A violation sends the
 * fatal alert RFC 8446 names and fails the connection.  Keys and secrets
 * are wiped when freed.
 *
 * Buffers: raw input is held only while a record is incomplete or its
 * plaintext is not yet taken; sealed output only until the socket takes
 * it.  An idle connection holds neither.
 *
 * One connection is used by one thread (conn.c's rule).  The socket is
 * reached through the caller's read and write functions (conn.c's, with
 * fault injection); they return like recv()/send(), errno set on -1.
 */
#ifndef GOVMAIL_TLS13_H
#define GOVMAIL_TLS13_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* Largest plaintext of a record (RFC 8446 5.1). */
#define TLS13_PLAIN_MAX 16384
/* Largest ciphertext of a record (5.2): plaintext + type + expansion. */
#define TLS13_CIPHER_MAX (TLS13_PLAIN_MAX + 256)
/* Header + largest ciphertext. */
#define TLS13_RECORD_MAX (5 + TLS13_CIPHER_MAX)
/* Raw input held at most: a record being read and a little of the next. */
#define TLS13_RBUF_MAX (TLS13_RECORD_MAX + 4096)
/* Plaintext sealed per tls13_write() call, at most (four records). */
#define TLS13_WRITE_BATCH (4 * TLS13_PLAIN_MAX)
/* Sealed output held at most, KeyUpdate answers included. */
#define TLS13_UNSENT_MAX (TLS13_WRITE_BATCH + 4096)
/* Records in a row without application data (OpenSSL allows 32). */
#define TLS13_IDLE_RECORDS 32
/* Records sealed under one key before we update it (AES-GCM: 2^24.5). */
#define TLS13_REKEY_RECORDS (1ULL << 24)

/* Results of tls13_read(), tls13_write() and tls13_flush(). */
enum tls13_status {
	TLS13_OK = 0,		/* moved data */
	TLS13_WANT_IO,		/* the socket would block */
	TLS13_EOF,		/* the peer sent close_notify */
	TLS13_EOF_BARE,		/* TCP closed without close_notify */
	TLS13_FAIL,		/* protocol error: alert sent, tls13_error() */
	TLS13_SYSFAIL,		/* a socket call failed: errno */
};

typedef ssize_t (*tls13_read_fn)(void *arg, void *p, size_t len);
typedef ssize_t (*tls13_write_fn)(void *arg, const void *p, size_t len);

struct tls13;

/*
 * Start watching the handshake of ssl (server side, before it starts):
 * installs the message callback on ssl and the key log callback on its
 * SSL_CTX (refused, NULL, if the context already has another key log
 * callback).  The caller owns the result: tls13_take() or tls13_free().
 */
struct tls13 *tls13_watch(SSL *ssl);

/*
 * After SSL_do_handshake() succeeded: take the connection over.  Returns
 * 0 (the caller frees ssl now and uses t from here on), or -1 with
 * *why_r (static text) when the handover would not be exact; then the
 * caller frees t and goes on with ssl.
 */
int tls13_take(struct tls13 *t, SSL *ssl, const char **why_r);

/*
 * A connection from known traffic secrets (tests, and a peer's side of a
 * test): suite is the RFC 8446 code (0x1301, 0x1302, 0x1303), the secrets
 * are the suite's hash length.  NULL for an unknown suite.
 */
struct tls13 *tls13_new_keys(uint16_t suite, const uint8_t *rd_secret,
    const uint8_t *wr_secret);

/* Wipe and free (NULL is fine). */
void tls13_free(struct tls13 *t);

/*
 * Up to want bytes of application data into dst: TLS13_OK with *n_r > 0,
 * or another status.  Handles alerts, KeyUpdate (an update the peer
 * requests is queued as output: see tls13_unsent()) and empty records.
 */
int tls13_read(struct tls13 *t, void *dst, size_t want, size_t *n_r,
    tls13_read_fn rd, tls13_write_fn wr, void *arg);

/*
 * Send what is sealed, then seal up to TLS13_WRITE_BATCH bytes of src and
 * send what the socket takes.  *used_r = bytes of src now sealed (they
 * are the caller's no longer).  TLS13_OK: everything sealed went out;
 * TLS13_WANT_IO: some waits (tls13_unsent()); TLS13_SYSFAIL.
 */
int tls13_write(struct tls13 *t, const void *src, size_t len,
    size_t *used_r, tls13_write_fn wr, void *arg);
/* Send sealed output only: TLS13_OK, TLS13_WANT_IO or TLS13_SYSFAIL. */
int tls13_flush(struct tls13 *t, tls13_write_fn wr, void *arg);

/* Queue close_notify and try once to send it (never waits). */
void tls13_close(struct tls13 *t, tls13_write_fn wr, void *arg);

/* Sealed bytes not yet sent. */
size_t tls13_unsent(const struct tls13 *t);
/* 1 if tls13_read() can make progress without the socket. */
int tls13_pending(const struct tls13 *t);
/* Capacity of the raw input and sealed output buffers. */
void tls13_buffer_sizes(const struct tls13 *t, size_t *in_r, size_t *out_r);

/* "TLSv1.3" and the suite's name, once taken. */
const char *tls13_version(const struct tls13 *t);
const char *tls13_cipher(const struct tls13 *t);
/* Why the last TLS13_FAIL (static text). */
const char *tls13_error(const struct tls13 *t);

#endif
