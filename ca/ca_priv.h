/*
 * ca_priv.h - internals shared by the files of libgovca (not public).
 */
#ifndef GOVMAIL_CA_PRIV_H
#define GOVMAIL_CA_PRIV_H

#include <sys/types.h>

#include <pthread.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "govca.h"

struct kv_env;

#define CA_PATH_MAX 4096
#define CA_TABLE_CERTS "certs"		/* serial -> record */
#define CA_TABLE_ADDR "by_addr"		/* lower(address) NUL serial -> "" */
#define CA_TABLE_META "meta"		/* crl_number, ... */
#define CA_TABLE_HOLDERS "holders"	/* address -> opaque citizen id */
#define CA_TABLE_REVOKED "revoked"	/* serial -> when(8) reason(1): the
					   CRL reads only this, not every cert */

struct govca {
	char dir[CA_PATH_MAX];
	char base_url[512];
	char name[GOVCA_TEXT_MAX];
	unsigned validity_days;
	enum govca_key_type key_type;
	unsigned crl_days;

	X509 *root;
	X509 *issuing;
	X509 *tls;			/* may be NULL */
	X509 *ocsp;
	EVP_PKEY *issuing_key;		/* NULL unless opened with keys */
	EVP_PKEY *tls_key;
	EVP_PKEY *ocsp_key;
	OCSP_CERTID *issuer_ids[2];	/* SHA-1 and SHA-256 CertIDs of issuing */
	struct kv_env *db;
	int batch;			/* govca_batch_begin: commits not synced */

	pthread_mutex_t crl_lock;	/* serve: the cached CRL */
	uint8_t *crl_der;
	size_t crl_len;
	struct timespec crl_mtime;
	ino_t crl_ino;
};

#define CA_ERRBUF_SIZE 512

/* ca.c */
char *ca_errbuf(void);	/* this thread's error text (CA_ERRBUF_SIZE) */
const char *ca_err(struct govca *ca, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const char *ca_ssl_err(char *out, size_t outsz, const char *what);
char *ca_path(const struct govca *ca, const char *file);
int ca_settings_check(const struct govca_settings *s, const char **error_r);

/* util.c */
EVP_PKEY *ca_key_generate(enum govca_key_type type);
const EVP_MD *ca_md_for_key(EVP_PKEY *key);
int ca_key_save(const char *path, EVP_PKEY *key, const char *passphrase);
EVP_PKEY *ca_key_load(const char *path, const char *passphrase);
int ca_cert_save(const char *path, X509 *cert);
X509 *ca_cert_load(const char *path);
int ca_file_write(const char *path, const void *data, size_t len, int mode);
int ca_file_write_ex(const char *path, const void *data, size_t len, int mode,
    int durable);
int ca_file_read(const char *path, size_t max, uint8_t **data_r,
    size_t *len_r);
int ca_serial_random(ASN1_INTEGER **serial_r,
    char hex[GOVCA_SERIAL_HEX_MAX]);
void ca_hex(const uint8_t *data, size_t len, char *out);
int ca_serial_hex(const ASN1_INTEGER *serial, char *out, size_t outsz);
int ca_serial_parse(const char *hex, uint8_t *out, size_t *len_r);
int ca_add_ext(X509 *cert, X509 *issuer, int nid, const char *value);
int ca_set_validity(X509 *cert, time_t start, long days);
X509 *ca_make_ca_cert(X509_NAME *subject, EVP_PKEY *pub, X509 *issuer,
    EVP_PKEY *issuer_key, long days, int pathlen, const char *eku);

/* audit.c */
int ca_audit_append(const char *path, const char *event, const char *fields,
    int durable, const char **error_r);
int ca_audit_sync(const char *path, const char **error_r);

/* certdb.c */
extern const char *const ca_db_tables[];
int ca_db_record_cert(struct govca *ca, X509 *cert, const char *address,
    enum govca_profile profile, const char **error_r);
int ca_db_holder_id(struct govca *ca, const char *address, char *id,
    size_t idsz, const char **error_r);
int ca_db_next_crl_number(struct govca *ca, uint64_t *n_r,
    const char **error_r);
int ca_db_lookup_status(struct govca *ca, const uint8_t *serial, size_t len,
    enum govca_status *status_r, enum govca_reason *reason_r,
    time_t *revoked_at_r);
int ca_db_revoked_each(struct govca *ca,
    int (*cb)(const uint8_t *serial, size_t len, time_t when,
	enum govca_reason reason, void *ctx), void *ctx);

/* crl.c */
int ca_crl_load(struct govca *ca, uint8_t **der_r, size_t *len_r);

#endif
