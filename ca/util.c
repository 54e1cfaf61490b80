/*
 * util.c - key, certificate and file helpers of libgovca.
 *
 * Runs in govmail-ca.  Trusts its callers (paths, passphrases); the files
 * it reads are the CA's own, written 0600 by this code.
 */
#include "autoconf.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "ca_priv.h"
#include "xmalloc.h"

EVP_PKEY *
ca_key_generate(enum govca_key_type type)
{
	switch (type) {
	case GOVCA_KEY_P256:
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	case GOVCA_KEY_P384:
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	case GOVCA_KEY_RSA2048:
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	case GOVCA_KEY_RSA3072:
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
	}
	return NULL;
}

/* The signature hash that matches a signing key (SHA-384 for P-384). */
const EVP_MD *
ca_md_for_key(EVP_PKEY *key)
{
	int bits = EVP_PKEY_get_bits(key);

	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC)
		return bits > 256 ? EVP_sha384() : EVP_sha256();
	return bits >= 3072 ? EVP_sha384() : EVP_sha256();
}

int
ca_file_write(const char *path, const void *data, size_t len, int mode)
{
	return ca_file_write_ex(path, data, len, mode, 1);
}

/* Write to PATH.tmp.PID, then rename over path; fsync when durable. */
int
ca_file_write_ex(const char *path, const void *data, size_t len, int mode,
    int durable)
{
	char *tmp;
	ssize_t n;
	size_t off = 0;
	int fd;

	tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd == -1) {
		free(tmp);
		return -1;
	}
	while (off < len) {
		n = write(fd, (const uint8_t *)data + off, len - off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)n;
	}
	if (fchmod(fd, mode) == -1 || (durable && fsync(fd) == -1))
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) == -1) {
		fd = -1;
		goto fail;
	}
	free(tmp);
	return 0;
fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	free(tmp);
	return -1;
}

int
ca_file_read(const char *path, size_t max, uint8_t **data_r, size_t *len_r)
{
	struct stat st;
	uint8_t *data;
	size_t off = 0;
	ssize_t n;
	int fd;

	*data_r = NULL;
	*len_r = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1) {
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		close(fd);
		errno = EFBIG;
		return -1;
	}
	data = xmalloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size) {
		n = read(fd, data + off, (size_t)st.st_size - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	data[off] = '\0';
	*data_r = data;
	*len_r = off;
	return 0;
}

static int
ca_bio_to_file(const char *path, BIO *bio, int mode)
{
	char *mem;
	long len;

	len = BIO_get_mem_data(bio, &mem);
	if (len < 0)
		return -1;
	return ca_file_write(path, mem, (size_t)len, mode);
}

int
ca_key_save(const char *path, EVP_PKEY *key, const char *passphrase)
{
	BIO *bio;
	int ret;

	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		return -1;
	/* SECURITY: PKCS#8 with PBES2 (PBKDF2) and AES-256-CBC at rest. */
	if (passphrase != NULL)
		ret = PEM_write_bio_PKCS8PrivateKey(bio, key,
		    EVP_aes_256_cbc(), NULL, 0, NULL,
		    (void *)(uintptr_t)passphrase);
	else
		ret = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL,
		    NULL);
	ret = ret == 1 ? ca_bio_to_file(path, bio, 0600) : -1;
	BIO_free(bio);
	return ret;
}

EVP_PKEY *
ca_key_load(const char *path, const char *passphrase)
{
	EVP_PKEY *key;
	BIO *bio;

	if ((bio = BIO_new_file(path, "r")) == NULL)
		return NULL;
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL,
	    (void *)(uintptr_t)(passphrase != NULL ? passphrase : ""));
	BIO_free(bio);
	return key;
}

int
ca_cert_save(const char *path, X509 *cert)
{
	BIO *bio;
	int ret;

	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		return -1;
	ret = PEM_write_bio_X509(bio, cert) == 1 ?
	    ca_bio_to_file(path, bio, 0644) : -1;
	BIO_free(bio);
	return ret;
}

X509 *
ca_cert_load(const char *path)
{
	X509 *cert;
	BIO *bio;

	if ((bio = BIO_new_file(path, "r")) == NULL)
		return NULL;
	cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (cert == NULL) {
		/* Accept DER too (import-issuing of a DER certificate). */
		ERR_clear_error();
		(void)BIO_reset(bio);
		cert = d2i_X509_bio(bio, NULL);
	}
	BIO_free(bio);
	return cert;
}

void
ca_hex(const uint8_t *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 15];
	}
	out[2 * len] = '\0';
}

/* 16 random bytes, first byte 0x01..0x7f: positive, always 16 bytes. */
int
ca_serial_random(ASN1_INTEGER **serial_r, char hex[GOVCA_SERIAL_HEX_MAX])
{
	uint8_t b[GOVCA_SERIAL_LEN];
	BIGNUM *bn;

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -1;
	b[0] &= 0x7f;
	if (b[0] == 0)
		b[0] = 1;
	ca_hex(b, sizeof(b), hex);
	if ((bn = BN_bin2bn(b, sizeof(b), NULL)) == NULL)
		return -1;
	*serial_r = BN_to_ASN1_INTEGER(bn, NULL);
	BN_free(bn);
	return *serial_r == NULL ? -1 : 0;
}

int
ca_serial_hex(const ASN1_INTEGER *serial, char *out, size_t outsz)
{
	uint8_t b[64];
	BIGNUM *bn;
	int n;

	if ((bn = ASN1_INTEGER_to_BN(serial, NULL)) == NULL)
		return -1;
	n = BN_num_bytes(bn);
	if (n <= 0 || (size_t)n > sizeof(b) || (size_t)(2 * n + 1) > outsz) {
		BN_free(bn);
		return -1;
	}
	BN_bn2bin(bn, b);
	BN_free(bn);
	ca_hex(b, (size_t)n, out);
	return 0;
}

/* Hex text (upper or lower case, optional ':' separators) to bytes. */
int
ca_serial_parse(const char *hex, uint8_t *out, size_t *len_r)
{
	size_t n = 0;
	int hi = -1, v;
	const char *p;

	for (p = hex; *p != '\0'; p++) {
		if (*p == ':')
			continue;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			v = *p - 'A' + 10;
		else
			return -1;
		if (hi < 0)
			hi = v;
		else {
			if (n >= GOVCA_SERIAL_LEN + 4)
				return -1;
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	if (hi >= 0 || n == 0)
		return -1;
	/* Leading zero bytes are not part of the positive integer. */
	while (n > 1 && out[0] == 0) {
		memmove(out, out + 1, n - 1);
		n--;
	}
	*len_r = n;
	return 0;
}

int
ca_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ret;

	X509V3_set_ctx(&ctx, issuer != NULL ? issuer : cert, cert, NULL,
	    NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return -1;
	ret = X509_add_ext(cert, ext, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(ext);
	return ret;
}

int
ca_set_validity(X509 *cert, time_t start, long days)
{
	if (X509_time_adj_ex(X509_getm_notBefore(cert), 0, 0, &start) == NULL)
		return -1;
	/* RFC 5280 4.1.2.5: notAfter is inclusive, so end one second early. */
	if (X509_time_adj_ex(X509_getm_notAfter(cert), (int)days, -1,
	    &start) == NULL)
		return -1;
	return 0;
}

/* A CA certificate (self-signed when issuer is NULL). */
X509 *
ca_make_ca_cert(X509_NAME *subject, EVP_PKEY *pub, X509 *issuer,
    EVP_PKEY *issuer_key, long days, int pathlen, const char *eku)
{
	ASN1_INTEGER *serial = NULL;
	char hex[GOVCA_SERIAL_HEX_MAX], bc[64];
	X509 *cert;

	if ((cert = X509_new()) == NULL)
		return NULL;
	if (ca_serial_random(&serial, hex) == -1)
		goto fail;
	snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", pathlen);
	if (X509_set_version(cert, 2) != 1 ||
	    X509_set_serialNumber(cert, serial) != 1 ||
	    X509_set_subject_name(cert, subject) != 1 ||
	    X509_set_issuer_name(cert, issuer != NULL ?
	    X509_get_subject_name(issuer) : subject) != 1 ||
	    X509_set_pubkey(cert, pub) != 1 ||
	    ca_set_validity(cert, time(NULL), days) == -1 ||
	    ca_add_ext(cert, issuer, NID_basic_constraints, bc) == -1 ||
	    ca_add_ext(cert, issuer, NID_key_usage,
	    "critical,keyCertSign,cRLSign,digitalSignature") == -1 ||
	    ca_add_ext(cert, issuer, NID_subject_key_identifier, "hash") == -1)
		goto fail;
	if (issuer != NULL && ca_add_ext(cert, issuer,
	    NID_authority_key_identifier, "keyid:always") == -1)
		goto fail;
	if (eku != NULL && ca_add_ext(cert, issuer, NID_ext_key_usage,
	    eku) == -1)
		goto fail;
	if (X509_sign(cert, issuer_key, ca_md_for_key(issuer_key)) <= 0)
		goto fail;
	ASN1_INTEGER_free(serial);
	return cert;
fail:
	ASN1_INTEGER_free(serial);
	X509_free(cert);
	return NULL;
}
