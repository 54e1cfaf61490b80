/*
 * Unit tests for lib/tls.c: server contexts from files (key permissions,
 * mismatched key, bad settings), reload that keeps the old context on
 * failure, the options every context carries, and real handshakes over a
 * BIO pair: TLS 1.3 and 1.2 succeed, TLS 1.1 and non-ECDHE ciphers are
 * refused, a client in "require" mode rejects a wrong host name and an
 * untrusted certificate while "opportunistic" mode completes and records
 * why.  Certificates are made in the test with OpenSSL; files live in a
 * mkdtemp() folder that is removed at the end.
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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "tls.h"
#include "xmalloc.h"

static char tmpdir[64];
static char cert_buf[128], key_buf[128], cert2_buf[128], key2_buf[128];
static char other_buf[128];
static const char *cert_path = cert_buf, *key_path = key_buf;
static const char *cert2_path = cert2_buf, *key2_path = key2_buf;
static const char *other_path = other_buf;

/* A self-signed certificate for cn with SAN DNS:cn and IP:127.0.0.1. */
static void
make_cert(const char *cn, EVP_PKEY **key_r, X509 **cert_r)
{
	EVP_PKEY *key;
	X509 *x;
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	char *san;

	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(key);
	x = X509_new();
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0), 1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	san = xasprintf("DNS:%s,IP:127.0.0.1", cn);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	free(san);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	*key_r = key;
	*cert_r = x;
}

static void
write_pem(const char *path, X509 *cert, EVP_PKEY *key, mode_t mode)
{
	FILE *f;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, mode), 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	if (cert != NULL)
		assert_int_equal(PEM_write_X509(f, cert), 1);
	if (key != NULL)
		assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0,
		    NULL, NULL), 1);
	assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
	EVP_PKEY *k1, *k2;
	X509 *c1, *c2;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_tls.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(cert_buf, sizeof(cert_buf), "%s/cert.pem", tmpdir);
	snprintf(key_buf, sizeof(key_buf), "%s/key.pem", tmpdir);
	snprintf(cert2_buf, sizeof(cert2_buf), "%s/cert2.pem", tmpdir);
	snprintf(key2_buf, sizeof(key2_buf), "%s/key2.pem", tmpdir);
	snprintf(other_buf, sizeof(other_buf), "%s/other.pem", tmpdir);
	make_cert("localhost", &k1, &c1);
	make_cert("mail.example", &k2, &c2);
	write_pem(cert_path, c1, NULL, 0644);
	write_pem(key_path, NULL, k1, 0600);
	write_pem(cert2_path, c2, NULL, 0644);
	write_pem(key2_path, NULL, k2, 0600);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	X509_free(c1);
	X509_free(c2);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(cert_path);
	unlink(key_path);
	unlink(cert2_path);
	unlink(key2_path);
	unlink(other_path);
	rmdir(tmpdir);
	return 0;
}

static void
settings(struct tls_settings *s, const char *cert, const char *key)
{
	tls_settings_default(s);
	s->cert_file = cert;
	s->key_file = key;
	s->ca_file = cert_path;
}

/* The [tls] defaults in config_keys.c are the ones tls.h names. */
static void
test_config_defaults(void **state)
{
	struct config *cfg = config_defaults();
	struct tls_settings s;

	(void)state;
	tls_settings_from_config(cfg, &s);
	assert_string_equal(s.min_version, TLS_CONF_MIN_VERSION);
	assert_string_equal(s.ciphers, TLS_CONF_CIPHERS);
	assert_string_equal(s.ciphersuites, TLS_CONF_CIPHERSUITES);
	assert_string_equal(s.cert_file, "");
	assert_string_equal(s.key_file, "");
	assert_string_equal(s.ca_file, "");
	config_free(cfg);
}

struct ctx_case {
	const char *name;
	const char **cert;
	const char **key;
	mode_t key_mode;	/* chmod of *key before the call; 0 = leave */
	const char *min_version;
	const char *ciphers;
	const char *err;	/* NULL = success, else a substring */
};

static const char *empty = "";
static const char *missing = "/nonexistent/govmail/key.pem";

static void
test_server_ctx_cases(void **state)
{
	const struct ctx_case cases[] = {
		{ "good", &cert_path, &key_path, 0600, NULL, NULL, NULL },
		{ "key 0400", &cert_path, &key_path, 0400, NULL, NULL, NULL },
		{ "key 0640", &cert_path, &key_path, 0640, NULL, NULL,
		  "chmod 600" },
		{ "key 0604", &cert_path, &key_path, 0604, NULL, NULL,
		  "chmod 600" },
		{ "key 0620", &cert_path, &key_path, 0620, NULL, NULL,
		  "chmod 600" },
		{ "key of another cert", &cert_path, &key2_path, 0, NULL, NULL,
		  "does not match" },
		{ "no key file", &cert_path, &missing, 0, NULL, NULL,
		  "No such file" },
		{ "cert is a key", &key_path, &key_path, 0, NULL, NULL,
		  "cert_file" },
		{ "no cert set", &empty, &key_path, 0, NULL, NULL,
		  "must both be set" },
		{ "min 1.3", &cert_path, &key_path, 0, "1.3", NULL, NULL },
		{ "min 1.1", &cert_path, &key_path, 0, "1.1", NULL,
		  "must be 1.2 or 1.3" },
		{ "min 1.0", &cert_path, &key_path, 0, "1.0", NULL,
		  "must be 1.2 or 1.3" },
		{ "bad ciphers", &cert_path, &key_path, 0, NULL, "NOPE-NOPE",
		  "ciphers" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ctx_case *t = &cases[i];
		struct tls_settings s;
		SSL_CTX *ctx = NULL;
		const char *err = NULL;
		int r;

		settings(&s, *t->cert, *t->key);
		if (t->min_version != NULL)
			s.min_version = t->min_version;
		if (t->ciphers != NULL)
			s.ciphers = t->ciphers;
		if (t->key_mode != 0)
			assert_int_equal(chmod(*t->key, t->key_mode), 0);
		r = tls_server_ctx_new(&s, &ctx, &err);
		if (t->key_mode != 0)
			assert_int_equal(chmod(*t->key, 0600), 0);
		if (t->err == NULL) {
			if (r != 0)
				fail_msg("%s: %s", t->name, err);
			assert_non_null(ctx);
			SSL_CTX_free(ctx);
		} else {
			if (r == 0)
				fail_msg("%s: accepted", t->name);
			assert_non_null(err);
			if (strstr(err, t->err) == NULL)
				fail_msg("%s: \"%s\" lacks \"%s\"", t->name, err,
				    t->err);
		}
	}
}

/* What every server context promises (tls.h). */
static void
test_server_ctx_options(void **state)
{
	struct tls_settings s;
	SSL_CTX *ctx;
	const char *err;
	uint64_t opts;

	(void)state;
	settings(&s, cert_path, key_path);
	assert_int_equal(tls_server_ctx_new(&s, &ctx, &err), 0);
	opts = SSL_CTX_get_options(ctx);
	assert_true(opts & SSL_OP_NO_COMPRESSION);
	assert_true(opts & SSL_OP_NO_RENEGOTIATION);
	assert_false(opts & SSL_OP_NO_TICKET);
	assert_true(SSL_CTX_get_mode(ctx) & SSL_MODE_RELEASE_BUFFERS);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
	SSL_CTX_free(ctx);
}

/*
 * Run a handshake between a server and a client SSL over a BIO pair.
 * Returns 1 if both sides completed, 0 if either failed.
 */
static int
handshake(SSL_CTX *sctx, SSL_CTX *cctx, const char *host, SSL **server_r,
    SSL **client_r)
{
	SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
	BIO *b1, *b2;
	int i, sdone = 0, cdone = 0, r, failed = 0;

	assert_non_null(srv);
	assert_non_null(cli);
	assert_int_equal(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
	SSL_set_bio(srv, b1, b1);
	SSL_set_bio(cli, b2, b2);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	if (host != NULL) {
		char *h = xstrdup(host);

		assert_int_equal(SSL_set_tlsext_host_name(cli, h), 1);
		assert_int_equal(SSL_set1_host(cli, host), 1);
		free(h);
	}
	for (i = 0; i < 50 && !(sdone && cdone) && !failed; i++) {
		if (!cdone) {
			r = SSL_do_handshake(cli);
			if (r == 1)
				cdone = 1;
			else if (SSL_get_error(cli, r) != SSL_ERROR_WANT_READ)
				failed = 1;
		}
		if (!sdone && !failed) {
			r = SSL_do_handshake(srv);
			if (r == 1)
				sdone = 1;
			else if (SSL_get_error(srv, r) != SSL_ERROR_WANT_READ)
				failed = 1;
		}
	}
	ERR_clear_error();
	*server_r = srv;
	*client_r = cli;
	return sdone && cdone && !failed;
}

struct hs_case {
	const char *name;
	const char *host;		/* client's expected host name */
	enum tls_verify mode;
	const char **ca;		/* client trust anchors */
	int client_max;			/* 0 = default */
	const char *client_ciphers;	/* NULL = default */
	const char *server_min;		/* NULL = default */
	int ok;
	int verified;			/* when ok */
	const char *version;		/* when ok */
};

static void
test_handshakes(void **state)
{
	const struct hs_case cases[] = {
		{ "tls1.3 verified", "localhost", TLS_VERIFY_REQUIRE,
		  &cert_path, 0, NULL, NULL, 1, 1, "TLSv1.3" },
		{ "tls1.2 verified", "localhost", TLS_VERIFY_REQUIRE,
		  &cert_path, TLS1_2_VERSION, NULL, NULL, 1, 1, "TLSv1.2" },
		{ "ip verified", "127.0.0.1", TLS_VERIFY_REQUIRE, &cert_path,
		  0, NULL, NULL, 1, 1, "TLSv1.3" },
		{ "tls1.1 refused", "localhost", TLS_VERIFY_REQUIRE,
		  &cert_path, TLS1_1_VERSION, NULL, NULL, 0, 0, NULL },
		{ "tls1.2 to a 1.3-only server", "localhost",
		  TLS_VERIFY_REQUIRE, &cert_path, TLS1_2_VERSION, NULL, "1.3",
		  0, 0, NULL },
		{ "no ECDHE cipher", "localhost", TLS_VERIFY_REQUIRE,
		  &cert_path, TLS1_2_VERSION, "AES128-GCM-SHA256", NULL, 0,
		  0, NULL },
		{ "wrong host, require", "mail.example", TLS_VERIFY_REQUIRE,
		  &cert_path, 0, NULL, NULL, 0, 0, NULL },
		{ "wrong host, opportunistic", "mail.example",
		  TLS_VERIFY_OPPORTUNISTIC, &cert_path, 0, NULL, NULL, 1, 0,
		  "TLSv1.3" },
		{ "untrusted, require", "localhost", TLS_VERIFY_REQUIRE,
		  &cert2_path, 0, NULL, NULL, 0, 0, NULL },
		{ "untrusted, opportunistic", "localhost",
		  TLS_VERIFY_OPPORTUNISTIC, &cert2_path, 0, NULL, NULL, 1, 0,
		  "TLSv1.3" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct hs_case *t = &cases[i];
		struct tls_settings ss, cs;
		SSL_CTX *sctx, *cctx;
		SSL *srv, *cli;
		const char *err = NULL;
		int ok;

		settings(&ss, cert_path, key_path);
		if (t->server_min != NULL)
			ss.min_version = t->server_min;
		assert_int_equal(tls_server_ctx_new(&ss, &sctx, &err), 0);
		settings(&cs, NULL, NULL);
		cs.ca_file = *t->ca;
		if (t->client_ciphers != NULL)
			cs.ciphers = t->client_ciphers;
		if (tls_client_ctx_new(&cs, t->mode, &cctx, &err) != 0)
			fail_msg("%s: %s", t->name, err);
		if (t->client_max != 0) {
			/* Allow the old version the case needs to offer. */
			SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION);
			SSL_CTX_set_security_level(cctx, 0);
			SSL_CTX_set_max_proto_version(cctx, t->client_max);
		}
		ok = handshake(sctx, cctx, t->host, &srv, &cli);
		if (ok != t->ok)
			fail_msg("%s: handshake %s", t->name,
			    ok ? "succeeded" : "failed");
		if (ok) {
			long v = SSL_get_verify_result(cli);

			assert_string_equal(SSL_get_version(srv), t->version);
			if ((v == X509_V_OK) != t->verified)
				fail_msg("%s: verify result %s", t->name,
				    X509_verify_cert_error_string(v));
			assert_null(SSL_get_current_compression(srv));
		}
		SSL_free(srv);
		SSL_free(cli);
		SSL_CTX_free(sctx);
		SSL_CTX_free(cctx);
	}
}

/* Reload swaps in a new certificate; a failed reload keeps the old one. */
static void
test_reload(void **state)
{
	struct tls_settings s, cs;
	SSL_CTX *ctx, *old, *cctx;
	SSL *srv, *cli;
	const char *err;
	X509 *peer;
	char cn[64];

	(void)state;
	settings(&s, cert_path, key_path);
	assert_int_equal(tls_server_ctx_new(&s, &ctx, &err), 0);
	/* A connection made from the old context outlives the reload. */
	settings(&cs, NULL, NULL);
	assert_int_equal(tls_client_ctx_new(&cs, TLS_VERIFY_OPPORTUNISTIC,
	    &cctx, &err), 0);
	assert_int_equal(handshake(ctx, cctx, NULL, &srv, &cli), 1);

	/* A bad key: -1, the context is untouched. */
	old = ctx;
	settings(&s, cert_path, key2_path);
	assert_int_equal(tls_server_reload(&ctx, &s, &err), -1);
	assert_non_null(strstr(err, "does not match"));
	assert_ptr_equal(ctx, old);

	/* A good pair: a new context serving the new certificate. */
	settings(&s, cert2_path, key2_path);
	assert_int_equal(tls_server_reload(&ctx, &s, &err), 0);
	assert_ptr_not_equal(ctx, old);
	SSL_free(srv);
	SSL_free(cli);
	assert_int_equal(handshake(ctx, cctx, NULL, &srv, &cli), 1);
	peer = SSL_get1_peer_certificate(cli);
	assert_non_null(peer);
	X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
	    cn, sizeof(cn));
	assert_string_equal(cn, "mail.example");
	X509_free(peer);
	SSL_free(srv);
	SSL_free(cli);
	SSL_CTX_free(ctx);
	SSL_CTX_free(cctx);
}

/* In-memory server contexts and client context errors. */
static void
test_mem_and_client_errors(void **state)
{
	struct tls_settings s;
	EVP_PKEY *k1, *k2;
	X509 *c1, *c2;
	SSL_CTX *ctx;
	const char *err;

	(void)state;
	make_cert("localhost", &k1, &c1);
	make_cert("localhost", &k2, &c2);
	tls_settings_default(&s);
	assert_int_equal(tls_server_ctx_new_mem(&s, c1, NULL, k1, &ctx, &err),
	    0);
	SSL_CTX_free(ctx);
	assert_int_equal(tls_server_ctx_new_mem(&s, c1, NULL, k2, &ctx, &err),
	    -1);
	assert_non_null(strstr(err, "does not match"));

	s.ca_file = missing;
	assert_int_equal(tls_client_ctx_new(&s, TLS_VERIFY_REQUIRE, &ctx,
	    &err), -1);
	assert_non_null(strstr(err, "ca_file"));
	/* A key file is no trust anchor. */
	s.ca_file = key_path;
	assert_int_equal(tls_client_ctx_new(&s, TLS_VERIFY_REQUIRE, &ctx,
	    &err), -1);
	s.ca_file = "";
	assert_int_equal(tls_client_ctx_new(&s, TLS_VERIFY_REQUIRE, &ctx,
	    &err), 0);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	SSL_CTX_free(ctx);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	X509_free(c1);
	X509_free(c2);
}

/* A key file that is a PEM key with a passphrase is refused, no prompt. */
static void
test_encrypted_key(void **state)
{
	struct tls_settings s;
	EVP_PKEY *k;
	X509 *c;
	SSL_CTX *ctx;
	const char *err;
	FILE *f;
	int fd;

	(void)state;
	make_cert("localhost", &k, &c);
	write_pem(other_path, c, NULL, 0644);
	fd = open(key2_path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(),
	    (const unsigned char *)"secret", 6, NULL, NULL), 1);
	fclose(f);
	settings(&s, other_path, key2_path);
	assert_int_equal(tls_server_ctx_new(&s, &ctx, &err), -1);
	assert_non_null(strstr(err, "no unencrypted PEM private key"));
	EVP_PKEY_free(k);
	X509_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_server_ctx_cases),
		cmocka_unit_test(test_server_ctx_options),
		cmocka_unit_test(test_handshakes),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_mem_and_client_errors),
		cmocka_unit_test(test_encrypted_key),
	};

	return cmocka_run_group_tests_name("tls", tests, setup, teardown);
}
