/*
 * tls.c - server and client SSL_CTX construction on OpenSSL 3.
 *
 * Runs in the daemons: the root parent or a worker builds the contexts at
 * start-up and on reload, before any network byte is read.  Trusts the
 * configuration (it is root's file) but not the permissions of the key
 * file: a key that others can read is refused, so a mistake shows at once
 * instead of leaking the key.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "buf.h"
#include "config.h"
#include "tls.h"

/* Message of the last failure, returned through error_r. */
static char tls_errbuf[512];

/* Session id context: lets OpenSSL's server session cache work. */
static const unsigned char tls_sid_ctx[] = "govmail";

static const char *
tls_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *
tls_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tls_errbuf, sizeof(tls_errbuf), fmt, ap);
	va_end(ap);
	return tls_errbuf;
}

const char *
tls_error_string(const char *fallback)
{
	static char ebuf[256];
	unsigned long e;

	e = ERR_get_error();
	ERR_clear_error();
	if (e == 0)
		return fallback;
	ERR_error_string_n(e, ebuf, sizeof(ebuf));
	return ebuf;
}

static int
tls_empty(const char *s)
{
	return s == NULL || s[0] == '\0';
}

void
tls_settings_default(struct tls_settings *s)
{
	s->cert_file = "";
	s->key_file = "";
	s->ca_file = "";
	s->min_version = TLS_CONF_MIN_VERSION;
	s->ciphers = TLS_CONF_CIPHERS;
	s->ciphersuites = TLS_CONF_CIPHERSUITES;
}

void
tls_settings_from_config(const struct config *cfg, struct tls_settings *s)
{
	s->cert_file = config_path_get(cfg, "tls", "cert_file");
	s->key_file = config_path_get(cfg, "tls", "key_file");
	s->ca_file = config_path_get(cfg, "tls", "ca_file");
	s->min_version = config_str(cfg, "tls", "min_version");
	s->ciphers = config_str(cfg, "tls", "ciphers");
	s->ciphersuites = config_str(cfg, "tls", "ciphersuites");
}

/* Protocol versions and ciphers shared by server and client contexts. */
static int
tls_ctx_common(SSL_CTX *ctx, const struct tls_settings *s,
    const char **error_r)
{
	const char *minv = tls_empty(s->min_version) ? TLS_CONF_MIN_VERSION
	    : s->min_version;
	const char *ciphers = tls_empty(s->ciphers) ? TLS_CONF_CIPHERS
	    : s->ciphers;
	const char *suites = tls_empty(s->ciphersuites)
	    ? TLS_CONF_CIPHERSUITES : s->ciphersuites;
	int v;

	if (strcmp(minv, "1.2") == 0)
		v = TLS1_2_VERSION;
	else if (strcmp(minv, "1.3") == 0)
		v = TLS1_3_VERSION;
	else {
		*error_r = tls_fail("tls min_version \"%.32s\": must be 1.2 "
		    "or 1.3", minv);
		return -1;
	}
	/* SECURITY: TLS 1.2 and 1.3 only. */
	if (SSL_CTX_set_min_proto_version(ctx, v) != 1
	    || SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
		*error_r = tls_fail("tls versions: %s",
		    tls_error_string("refused"));
		return -1;
	}
	/*
	 * SECURITY: no compression (CRIME), no renegotiation (a client could
	 * make us spend CPU, and renegotiation mid-stream complicates the
	 * STARTTLS boundary), server cipher order.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
	    | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/*
	 * Idle connections keep no record buffers; conn.c's output buffer
	 * may move between SSL_write() retries.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS
	    | SSL_MODE_ENABLE_PARTIAL_WRITE
	    | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
		*error_r = tls_fail("tls ciphers \"%.64s\": %s", ciphers,
		    tls_error_string("no usable cipher"));
		return -1;
	}
	if (SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
		*error_r = tls_fail("tls ciphersuites \"%.64s\": %s", suites,
		    tls_error_string("no usable cipher suite"));
		return -1;
	}
	if (SSL_CTX_set1_groups_list(ctx, TLS_CONF_GROUPS) != 1) {
		*error_r = tls_fail("tls groups: %s",
		    tls_error_string("refused"));
		return -1;
	}
	return 0;
}

/* Never prompt on a terminal for a key passphrase: keys have none. */
static int
tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/*
 * Read the private key, refusing a file others may read.  The check is on
 * the open descriptor (fstat), so the file cannot be swapped in between.
 */
static int
tls_load_key(const char *path, EVP_PKEY **key_r, const char **error_r)
{
	struct stat st;
	struct buf data;
	EVP_PKEY *key = NULL;
	BIO *bio;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		*error_r = tls_fail("tls key_file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*error_r = tls_fail("tls key_file %s: not a regular file", path);
		close(fd);
		return -1;
	}
	/* SECURITY: the key must be readable by its owner only. */
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		*error_r = tls_fail("tls key_file %s: mode %04o lets the group "
		    "or others read the private key; chmod 600 it", path,
		    (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	if (st.st_size > TLS_CONF_FILE_MAX) {
		*error_r = tls_fail("tls key_file %s: larger than %d bytes",
		    path, TLS_CONF_FILE_MAX);
		close(fd);
		return -1;
	}
	buf_init(&data, TLS_CONF_FILE_MAX);
	data.secret = 1;
	for (;;) {
		if (buf_reserve(&data, 4096) < 0) {
			n = -1;
			errno = EFBIG;
			break;
		}
		n = read(fd, buf_tail(&data), 4096);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		buf_commit(&data, (size_t)n);
	}
	close(fd);
	if (n < 0) {
		*error_r = tls_fail("tls key_file %s: %s", path,
		    strerror(errno));
		buf_free(&data);
		return -1;
	}
	bio = BIO_new_mem_buf(data.data == NULL ? "" : (char *)data.data,
	    (int)data.len);
	if (bio != NULL) {
		key = PEM_read_bio_PrivateKey(bio, NULL, tls_no_passphrase,
		    NULL);
		BIO_free(bio);
	}
	buf_free(&data);
	if (key == NULL) {
		*error_r = tls_fail("tls key_file %s: no unencrypted PEM "
		    "private key: %s", path, tls_error_string("unreadable"));
		return -1;
	}
	*key_r = key;
	return 0;
}

static SSL_CTX *
tls_server_ctx_base(const struct tls_settings *s, const char **error_r)
{
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = tls_fail("tls: SSL_CTX_new: %s",
		    tls_error_string("failed"));
		return NULL;
	}
	if (tls_ctx_common(ctx, s, error_r) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	/*
	 * Session tickets stay on (OpenSSL's default) so that reconnecting
	 * clients resume without a full handshake; one ticket per TLS 1.3
	 * handshake is enough for mail clients.
	 */
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(ctx, tls_sid_ctx,
	    sizeof(tls_sid_ctx) - 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

int
tls_server_ctx_new_mem(const struct tls_settings *s, X509 *cert,
    STACK_OF(X509) *chain, EVP_PKEY *key, SSL_CTX **ctx_r,
    const char **error_r)
{
	SSL_CTX *ctx;

	ctx = tls_server_ctx_base(s, error_r);
	if (ctx == NULL)
		return -1;
	if (SSL_CTX_use_certificate(ctx, cert) != 1
	    || (chain != NULL && SSL_CTX_set1_chain(ctx, chain) != 1)) {
		*error_r = tls_fail("tls certificate: %s",
		    tls_error_string("refused"));
		SSL_CTX_free(ctx);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1
	    || SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = tls_fail("tls key does not match the certificate: "
		    "%s", tls_error_string("mismatch"));
		SSL_CTX_free(ctx);
		return -1;
	}
	*ctx_r = ctx;
	return 0;
}

int
tls_server_ctx_new(const struct tls_settings *s, SSL_CTX **ctx_r,
    const char **error_r)
{
	SSL_CTX *ctx;
	EVP_PKEY *key;

	if (tls_empty(s->cert_file) || tls_empty(s->key_file)) {
		*error_r = tls_fail("tls: cert_file and key_file must both be "
		    "set in [tls]");
		return -1;
	}
	ctx = tls_server_ctx_base(s, error_r);
	if (ctx == NULL)
		return -1;
	if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_file) != 1) {
		*error_r = tls_fail("tls cert_file %s: %s", s->cert_file,
		    tls_error_string("no PEM certificate"));
		SSL_CTX_free(ctx);
		return -1;
	}
	if (tls_load_key(s->key_file, &key, error_r) < 0) {
		SSL_CTX_free(ctx);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1
	    || SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = tls_fail("tls key_file %s does not match cert_file "
		    "%s: %s", s->key_file, s->cert_file,
		    tls_error_string("mismatch"));
		EVP_PKEY_free(key);
		SSL_CTX_free(ctx);
		return -1;
	}
	EVP_PKEY_free(key);
	*ctx_r = ctx;
	return 0;
}

int
tls_server_reload(SSL_CTX **ctxp, const struct tls_settings *s,
    const char **error_r)
{
	SSL_CTX *ctx;

	if (tls_server_ctx_new(s, &ctx, error_r) < 0)
		return -1;
	SSL_CTX_free(*ctxp);
	*ctxp = ctx;
	return 0;
}

int
tls_client_ctx_new(const struct tls_settings *s, enum tls_verify mode,
    SSL_CTX **ctx_r, const char **error_r)
{
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*error_r = tls_fail("tls: SSL_CTX_new: %s",
		    tls_error_string("failed"));
		return -1;
	}
	if (tls_ctx_common(ctx, s, error_r) < 0) {
		SSL_CTX_free(ctx);
		return -1;
	}
	if (!tls_empty(s->ca_file)) {
		if (SSL_CTX_load_verify_locations(ctx, s->ca_file, NULL) != 1) {
			*error_r = tls_fail("tls ca_file %s: %s", s->ca_file,
			    tls_error_string("no PEM certificate"));
			SSL_CTX_free(ctx);
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		*error_r = tls_fail("tls: system trust store: %s",
		    tls_error_string("unavailable"));
		SSL_CTX_free(ctx);
		return -1;
	}
	/*
	 * With SSL_VERIFY_NONE OpenSSL still verifies the chain and the host
	 * name and records the result (SSL_get_verify_result()), which is
	 * what opportunistic mode reports.
	 */
	SSL_CTX_set_verify(ctx, mode == TLS_VERIFY_REQUIRE ? SSL_VERIFY_PEER
	    : SSL_VERIFY_NONE, NULL);
	*ctx_r = ctx;
	return 0;
}
