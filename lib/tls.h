/*
 * tls.h - OpenSSL 3 contexts for the daemons (server side) and for the
 * outbound SMTP delivery agent (client side).
 *
 * Every daemon process.  The server context is built by the root parent or
 * a worker before it reads any network byte, from the [tls] section of
 * govmail.conf: a certificate chain (PEM, leaf first), its private key
 * (PEM, no passphrase, mode 0600 or stricter: a key file that the group or
 * others may read is refused), TLS 1.2 and 1.3 only, ECDHE with AEAD
 * ciphers for TLS 1.2, no compression, no renegotiation, session tickets on,
 * SSL_MODE_RELEASE_BUFFERS so that an idle connection keeps no record
 * buffers.
 *
 * Contexts are reference-counted by OpenSSL: every SSL made from a context
 * holds a reference, so tls_server_reload() can swap in a new context while
 * established connections keep using the old one until they close.
 *
 * Where to build it: in the root parent, before the workers fork.  The key
 * file is then read as root, and every worker inherits the same session
 * ticket keys, so a client resumes its session whichever worker it lands
 * on.  A reload must happen where the key can be read (the parent, then
 * fresh workers): a worker that has dropped privileges cannot re-read a
 * 0600 root key, and tls_server_reload() then fails and keeps the old
 * context.
 *
 * The client context verifies the peer against [tls] ca_file (or the
 * system store when it is empty).  TLS_VERIFY_REQUIRE fails the handshake
 * unless the chain and the host name (set per connection, see
 * conn_starttls_client() in conn.h) check out; TLS_VERIFY_OPPORTUNISTIC
 * completes the handshake anyway and records the result, which
 * conn_tls_verified() reports (RFC 7435 opportunistic security: encrypt
 * always, authenticate when possible).
 *
 * Errors: functions return 0 or -1 with *error_r set to a one-line message
 * naming the file and OpenSSL's reason.  The message lives in a static
 * buffer valid until the next call into this module.
 */
#ifndef GOVMAIL_TLS_H
#define GOVMAIL_TLS_H

#include <openssl/ssl.h>

struct config;

/* TLS 1.2 cipher list: forward secrecy (ECDHE) and AEAD only. */
#define TLS_CONF_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"
/* TLS 1.3 cipher suites (all of TLS 1.3's are AEAD). */
#define TLS_CONF_CIPHERSUITES \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:" \
	"TLS_CHACHA20_POLY1305_SHA256"
/* Key exchange groups, most preferred first. */
#define TLS_CONF_GROUPS "X25519:P-256:P-384"
/* Lowest protocol version accepted: "1.2" or "1.3". */
#define TLS_CONF_MIN_VERSION "1.2"
/* Largest certificate chain or key file read, bytes. */
#define TLS_CONF_FILE_MAX (1024 * 1024)

/*
 * Where the TLS material comes from.  The strings are borrowed (from a
 * struct config, or the caller's own); empty or NULL means "not set".
 */
struct tls_settings {
	const char *cert_file;		/* PEM: certificate, then its chain */
	const char *key_file;		/* PEM private key, mode 0600 */
	const char *ca_file;		/* client: trust anchors; "": system */
	const char *min_version;	/* "1.2" or "1.3" */
	const char *ciphers;		/* TLS 1.2 list, OpenSSL syntax */
	const char *ciphersuites;	/* TLS 1.3 list */
};

enum tls_verify {
	TLS_VERIFY_REQUIRE,		/* handshake fails if the peer is not
					   verified (chain and host name) */
	TLS_VERIFY_OPPORTUNISTIC,	/* handshake completes; the result is
					   only recorded */
};

/* Fill s with the built-in defaults (no certificate, no key). */
void tls_settings_default(struct tls_settings *s);
/* Fill s from the [tls] section; the strings point into cfg. */
void tls_settings_from_config(const struct config *cfg,
    struct tls_settings *s);

/*
 * A server context from s: cert_file and key_file must both be set.
 * SECURITY: refuses a key file that is group- or world-accessible, a key
 * that does not match the certificate, and an unknown min_version.  On
 * success *ctx_r holds a new reference the caller frees with
 * SSL_CTX_free().
 */
int tls_server_ctx_new(const struct tls_settings *s, SSL_CTX **ctx_r,
    const char **error_r);

/*
 * The same from a certificate, an optional chain (may be NULL) and a key
 * already in memory (tests, or a caller holding them); the objects are not
 * consumed (the context takes its own references).
 */
int tls_server_ctx_new_mem(const struct tls_settings *s, X509 *cert,
    STACK_OF(X509) *chain, EVP_PKEY *key, SSL_CTX **ctx_r,
    const char **error_r);

/*
 * Reload: build a new server context from s and, only if that succeeds,
 * release *ctxp and store the new one there.  On failure *ctxp is left
 * untouched (a bad certificate on reload does not take the service down).
 * Connections already made keep their own reference to the old context.
 */
int tls_server_reload(SSL_CTX **ctxp, const struct tls_settings *s,
    const char **error_r);

/*
 * A client context: TLS 1.2+ with the same ciphers, trust anchors from
 * s->ca_file or the system store, verification as mode says.  The peer's
 * host name is given per connection (conn_starttls_client()).
 */
int tls_client_ctx_new(const struct tls_settings *s, enum tls_verify mode,
    SSL_CTX **ctx_r, const char **error_r);

/*
 * Text of the first error on OpenSSL's error queue (or fallback if the
 * queue is empty), in a static buffer; the queue is cleared.
 */
const char *tls_error_string(const char *fallback);

#endif
