/*
 * ca.c - opening and creating a CA folder (govca.h): init, the offline
 * root split, names of profiles, key types and reasons.
 *
 * Runs in govmail-ca.  Trusts the CA folder (its own files, 0600/0700);
 * the passphrase comes from the operator and is never logged.
 */
#include "autoconf.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "ca_priv.h"
#include "kv.h"
#include "log.h"
#include "xmalloc.h"

/* ---- names -------------------------------------------------------------- */

static const struct {
	enum govca_profile p;
	const char *name;
} profile_names[] = {
	{ GOVCA_PROFILE_OFFICIAL, "official" },
	{ GOVCA_PROFILE_DEPARTMENT, "department" },
	{ GOVCA_PROFILE_LEGAL_PERSON, "legal-person" },
	{ GOVCA_PROFILE_CITIZEN, "citizen" },
	{ GOVCA_PROFILE_SERVER, "server" },
};

int
govca_profile_parse(const char *s, enum govca_profile *p_r)
{
	size_t i;

	for (i = 0; i < sizeof(profile_names) / sizeof(profile_names[0]); i++)
		if (strcmp(s, profile_names[i].name) == 0) {
			*p_r = profile_names[i].p;
			return 0;
		}
	return -1;
}

const char *
govca_profile_name(enum govca_profile p)
{
	size_t i;

	for (i = 0; i < sizeof(profile_names) / sizeof(profile_names[0]); i++)
		if (profile_names[i].p == p)
			return profile_names[i].name;
	return "unknown";
}

const char *
govca_profile_policy(enum govca_profile p, int unverified)
{
	switch (p) {
	case GOVCA_PROFILE_OFFICIAL:
		return "2.23.140.1.5.3.3";	/* sponsor-validated strict */
	case GOVCA_PROFILE_DEPARTMENT:
	case GOVCA_PROFILE_LEGAL_PERSON:
		return "2.23.140.1.5.2.3";	/* organization-validated */
	case GOVCA_PROFILE_CITIZEN:
		return unverified ? "2.23.140.1.5.1.3" :	/* mailbox */
		    "2.23.140.1.5.4.3";			/* individual */
	case GOVCA_PROFILE_SERVER:
		return "2.23.140.1.2.1";	/* TLS domain-validated */
	}
	return NULL;
}

static const struct {
	enum govca_key_type k;
	const char *name;
} key_names[] = {
	{ GOVCA_KEY_P256, "p256" },
	{ GOVCA_KEY_P384, "p384" },
	{ GOVCA_KEY_RSA2048, "rsa2048" },
	{ GOVCA_KEY_RSA3072, "rsa3072" },
};

int
govca_key_type_parse(const char *s, enum govca_key_type *k_r)
{
	size_t i;

	for (i = 0; i < sizeof(key_names) / sizeof(key_names[0]); i++)
		if (str_casecmp(s, key_names[i].name) == 0) {
			*k_r = key_names[i].k;
			return 0;
		}
	if (str_casecmp(s, "P-256") == 0 || str_casecmp(s, "ec") == 0) {
		*k_r = GOVCA_KEY_P256;
		return 0;
	}
	if (str_casecmp(s, "P-384") == 0) {
		*k_r = GOVCA_KEY_P384;
		return 0;
	}
	return -1;
}

const char *
govca_key_type_name(enum govca_key_type k)
{
	size_t i;

	for (i = 0; i < sizeof(key_names) / sizeof(key_names[0]); i++)
		if (key_names[i].k == k)
			return key_names[i].name;
	return "unknown";
}

static const struct {
	enum govca_reason r;
	const char *name;
} reason_names[] = {
	{ GOVCA_REASON_UNSPECIFIED, "unspecified" },
	{ GOVCA_REASON_KEY_COMPROMISE, "keyCompromise" },
	{ GOVCA_REASON_CA_COMPROMISE, "cACompromise" },
	{ GOVCA_REASON_AFFILIATION_CHANGED, "affiliationChanged" },
	{ GOVCA_REASON_SUPERSEDED, "superseded" },
	{ GOVCA_REASON_CESSATION, "cessationOfOperation" },
	{ GOVCA_REASON_CERTIFICATE_HOLD, "certificateHold" },
	{ GOVCA_REASON_PRIVILEGE_WITHDRAWN, "privilegeWithdrawn" },
};

int
govca_reason_parse(const char *s, enum govca_reason *r_r)
{
	size_t i;

	for (i = 0; i < sizeof(reason_names) / sizeof(reason_names[0]); i++)
		if (str_casecmp(s, reason_names[i].name) == 0) {
			*r_r = reason_names[i].r;
			return 0;
		}
	return -1;
}

const char *
govca_reason_name(enum govca_reason r)
{
	size_t i;

	for (i = 0; i < sizeof(reason_names) / sizeof(reason_names[0]); i++)
		if (reason_names[i].r == r)
			return reason_names[i].name;
	return "unknown";
}

/* ---- errors and paths ------------------------------------------------- */

const char *
ca_err(struct govca *ca, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)ca;
	vsnprintf(ca_errbuf(), CA_ERRBUF_SIZE, fmt, ap);
	va_end(ap);
	return ca_errbuf();
}

/*
 * The error text is per thread: `serve` answers on many threads at once
 * with one struct govca, and one thread's error must not garble another's.
 */
static _Thread_local char ca_error_text[CA_ERRBUF_SIZE];
static _Thread_local char ca_open_error[CA_ERRBUF_SIZE];

char *
ca_errbuf(void)
{
	return ca_error_text;
}

const char *
govca_error(struct govca *ca)
{
	(void)ca;
	return ca_errbuf();
}

/* "what: first OpenSSL error" into out. */
const char *
ca_ssl_err(char *out, size_t outsz, const char *what)
{
	unsigned long e = ERR_get_error();
	char tmp[256];

	if (e != 0) {
		ERR_error_string_n(e, tmp, sizeof(tmp));
		snprintf(out, outsz, "%s: %s", what, tmp);
	} else
		snprintf(out, outsz, "%s", what);
	ERR_clear_error();
	return out;
}

char *
ca_path(const struct govca *ca, const char *file)
{
	return xasprintf("%s/%s", ca->dir, file);
}

static char *
dir_path(const char *dir, const char *file)
{
	return xasprintf("%s/%s", dir, file);
}

int
ca_settings_check(const struct govca_settings *s, const char **error_r)
{
	size_t len;

	if (s->base_url == NULL || !str_has_prefix(s->base_url, "http://")) {
		*error_r = "base_url must start with http:// (CDP and AIA are "
		    "fetched over plain HTTP)";
		return -1;
	}
	len = strlen(s->base_url);
	if (len >= 400 || s->base_url[len - 1] == '/' ||
	    strpbrk(s->base_url, " \t\r\n\"<>") != NULL) {
		*error_r = "base_url must be a short URL without a trailing '/'";
		return -1;
	}
	if (s->validity_days == 0 ||
	    s->validity_days > GOVCA_VALIDITY_MAX_DAYS) {
		*error_r = "validity must be 1..824 days (S/MIME BR)";
		return -1;
	}
	if (s->crl_days == 0 || s->crl_days > GOVCA_CRL_DAYS_MAX) {
		*error_r = "crl_days must be 1..7";
		return -1;
	}
	if (s->name == NULL || s->name[0] == '\0' ||
	    strlen(s->name) > 64) {
		*error_r = "the CA name must be 1..64 bytes";
		return -1;
	}
	return 0;
}

/* ---- open / close -------------------------------------------------------- */

static struct govca *
ca_new(const char *dir, const struct govca_settings *s)
{
	struct govca *ca = xcalloc(1, sizeof(*ca));

	str_copy(ca->dir, sizeof(ca->dir), dir);
	str_copy(ca->base_url, sizeof(ca->base_url), s->base_url);
	str_copy(ca->name, sizeof(ca->name), s->name);
	ca->validity_days = s->validity_days;
	ca->key_type = s->key_type != 0 ? s->key_type : GOVCA_KEY_P256;
	ca->crl_days = s->crl_days;
	pthread_mutex_init(&ca->crl_lock, NULL);
	return ca;
}

void
govca_close(struct govca *ca)
{
	size_t i;

	if (ca == NULL)
		return;
	X509_free(ca->root);
	X509_free(ca->issuing);
	X509_free(ca->tls);
	X509_free(ca->ocsp);
	EVP_PKEY_free(ca->issuing_key);
	EVP_PKEY_free(ca->tls_key);
	EVP_PKEY_free(ca->ocsp_key);
	for (i = 0; i < 2; i++)
		OCSP_CERTID_free(ca->issuer_ids[i]);
	kv_close(ca->db);
	free(ca->crl_der);
	pthread_mutex_destroy(&ca->crl_lock);
	free(ca);
}

static X509 *
load_cert(struct govca *ca, const char *file, int required)
{
	char *path = ca_path(ca, file);
	X509 *cert = ca_cert_load(path);

	if (cert == NULL && required)
		ca_err(ca, "cannot read %s", path);
	ERR_clear_error();
	free(path);
	return cert;
}

static EVP_PKEY *
load_key(struct govca *ca, const char *file, const char *passphrase)
{
	char *path = ca_path(ca, file);
	EVP_PKEY *key = ca_key_load(path, passphrase);
	struct stat st;

	/* SECURITY: a CA key readable by others has been exposed. */
	if (key != NULL && stat(path, &st) == 0 && (st.st_mode & 077) != 0)
		log_warnx("ca: %s is readable by group or others (mode %03o); "
		    "chmod 600 it and consider the key compromised", path,
		    (unsigned)(st.st_mode & 0777));

	if (key == NULL) {
		if (access(path, R_OK) == 0)
			ca_err(ca, "cannot decrypt %s (wrong passphrase?)",
			    path);
		else
			ca_err(ca, "cannot read %s: %s", path,
			    strerror(errno));
	}
	ERR_clear_error();
	free(path);
	return key;
}

static X509 *make_ocsp_cert(X509 *issuing, EVP_PKEY *issuing_key,
    EVP_PKEY *key, const char *name);
static int save_pair(const char *dir, const char *base, X509 *cert,
    EVP_PKEY *key, const char *passphrase);

/*
 * The delegated responder's certificate lives GOVCA_OCSP_DAYS; whenever
 * the CA is opened with its keys less than GOVCA_OCSP_RENEW_DAYS before
 * the end, it gets a new key and certificate (serve picks them up when it
 * is restarted, which the administrator does at least that often).
 */
static int
ocsp_renew_if_due(struct govca *ca, const char *passphrase,
    const char **error_r)
{
	time_t limit = time(NULL) + (time_t)GOVCA_OCSP_RENEW_DAYS * 86400;
	EVP_PKEY *key;
	X509 *cert;
	const char *err;

	if (X509_cmp_time(X509_get0_notAfter(ca->ocsp), &limit) > 0)
		return 0;
	key = ca_key_generate(GOVCA_KEY_P256);
	cert = key != NULL ? make_ocsp_cert(ca->issuing, ca->issuing_key, key,
	    ca->name) : NULL;
	if (cert == NULL ||
	    save_pair(ca->dir, "ocsp", cert, key, passphrase) == -1) {
		EVP_PKEY_free(key);
		X509_free(cert);
		*error_r = ca_err(ca, "cannot renew the OCSP responder "
		    "certificate");
		return -1;
	}
	X509_free(ca->ocsp);
	EVP_PKEY_free(ca->ocsp_key);
	ca->ocsp = cert;
	ca->ocsp_key = key;
	if (govca_audit(ca, "ocsp-renew", "key=p256", &err) == -1)
		log_warnx("ca: audit of the OCSP renewal failed: %s", err);
	return 0;
}

int
govca_open(const char *dir, const struct govca_settings *s,
    const char *passphrase, unsigned flags, struct govca **ca_r,
    const char **error_r)
{
	struct govca *ca;
	const char *err;
	char *dbdir;
	int ret;

	*ca_r = NULL;
	if (ca_settings_check(s, error_r) == -1)
		return -1;
	ca = ca_new(dir, s);
	if ((ca->root = load_cert(ca, "root.crt", 1)) == NULL ||
	    (ca->issuing = load_cert(ca, "issuing.crt", 1)) == NULL ||
	    (ca->ocsp = load_cert(ca, "ocsp.crt", 1)) == NULL)
		goto fail;
	ca->tls = load_cert(ca, "tls.crt", 0);
	if (flags & GOVCA_OPEN_KEYS) {
		if ((ca->issuing_key = load_key(ca, "issuing.key",
		    passphrase)) == NULL)
			goto fail;
		if (ca->tls != NULL && (ca->tls_key = load_key(ca, "tls.key",
		    passphrase)) == NULL)
			goto fail;
	}
	if (flags & (GOVCA_OPEN_KEYS | GOVCA_OPEN_OCSP_KEY)) {
		if ((ca->ocsp_key = load_key(ca, "ocsp.key",
		    passphrase)) == NULL)
			goto fail;
	}
	if (ca->issuing_key != NULL && ocsp_renew_if_due(ca, passphrase,
	    error_r) == -1)
		goto fail;
	ca->issuer_ids[0] = OCSP_cert_to_id(EVP_sha1(), NULL, ca->issuing);
	ca->issuer_ids[1] = OCSP_cert_to_id(EVP_sha256(), NULL, ca->issuing);
	if (ca->issuer_ids[0] == NULL || ca->issuer_ids[1] == NULL) {
		ca_err(ca, "cannot hash the issuing CA");
		goto fail;
	}
	dbdir = ca_path(ca, "certdb");
	ret = kv_open(dbdir, ca_db_tables, 0, &ca->db, &err);
	free(dbdir);
	if (ret != 0) {
		ca_err(ca, "certificate database: %s", err);
		goto fail;
	}
	*ca_r = ca;
	return 0;
fail:
	/*
	 * govca_close() may write the error buffer again: hand out a copy in
	 * a thread-local buffer of its own (govca.h: error texts are static
	 * or per-thread, never the caller's to free).
	 */
	snprintf(ca_open_error, sizeof(ca_open_error), "%s", ca_errbuf());
	govca_close(ca);
	if (error_r != NULL)
		*error_r = ca_open_error;
	return -1;
}

/* ---- init ----------------------------------------------------------------- */

static X509_NAME *
ca_name(const char *name, const char *cn_suffix)
{
	X509_NAME *n = X509_NAME_new();
	char cn[GOVCA_TEXT_MAX];

	snprintf(cn, sizeof(cn), "%s %s", name, cn_suffix);
	if (n == NULL ||
	    X509_NAME_add_entry_by_NID(n, NID_countryName, MBSTRING_ASC,
	    (const unsigned char *)"CN", -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_NID(n, NID_organizationName, MBSTRING_UTF8,
	    (const unsigned char *)name, -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0) != 1) {
		X509_NAME_free(n);
		return NULL;
	}
	return n;
}

static int
dir_prepare(const char *dir, const char *must_not_exist, const char **error_r)
{
	char *p;
	int exists;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		*error_r = "cannot create the CA folder";
		return -1;
	}
	if (chmod(dir, 0700) == -1) {
		*error_r = "cannot chmod the CA folder";
		return -1;
	}
	p = dir_path(dir, must_not_exist);
	exists = access(p, F_OK) == 0;
	free(p);
	if (exists) {
		*error_r = "the folder already holds a CA";
		return -1;
	}
	return 0;
}

static int
save_pair(const char *dir, const char *base, X509 *cert, EVP_PKEY *key,
    const char *passphrase)
{
	char *p;
	int ret = 0;

	if (key != NULL) {
		p = xasprintf("%s/%s.key", dir, base);
		ret = ca_key_save(p, key, passphrase);
		free(p);
	}
	if (ret == 0 && cert != NULL) {
		p = xasprintf("%s/%s.crt", dir, base);
		ret = ca_cert_save(p, cert);
		free(p);
	}
	return ret;
}

/* OCSP responder: EE cert with OCSPSigning and ocsp-nocheck. */
static X509 *
make_ocsp_cert(X509 *issuing, EVP_PKEY *issuing_key, EVP_PKEY *key,
    const char *name)
{
	ASN1_INTEGER *serial = NULL;
	char hex[GOVCA_SERIAL_HEX_MAX];
	X509_NAME *subj;
	X509 *cert;

	if ((subj = ca_name(name, "OCSP Responder")) == NULL)
		return NULL;
	if ((cert = X509_new()) == NULL || ca_serial_random(&serial, hex) == -1)
		goto fail;
	if (X509_set_version(cert, 2) != 1 ||
	    X509_set_serialNumber(cert, serial) != 1 ||
	    X509_set_subject_name(cert, subj) != 1 ||
	    X509_set_issuer_name(cert, X509_get_subject_name(issuing)) != 1 ||
	    X509_set_pubkey(cert, key) != 1 ||
	    ca_set_validity(cert, time(NULL), GOVCA_OCSP_DAYS) == -1 ||
	    ca_add_ext(cert, issuing, NID_basic_constraints,
	    "critical,CA:FALSE") == -1 ||
	    ca_add_ext(cert, issuing, NID_key_usage,
	    "critical,digitalSignature") == -1 ||
	    ca_add_ext(cert, issuing, NID_ext_key_usage, "OCSPSigning") == -1 ||
	    ca_add_ext(cert, issuing, NID_id_pkix_OCSP_noCheck, "ignored") ==
	    -1 ||
	    ca_add_ext(cert, issuing, NID_subject_key_identifier, "hash") ==
	    -1 ||
	    ca_add_ext(cert, issuing, NID_authority_key_identifier,
	    "keyid:always") == -1)
		goto fail;
	if (X509_sign(cert, issuing_key, ca_md_for_key(issuing_key)) <= 0)
		goto fail;
	X509_NAME_free(subj);
	ASN1_INTEGER_free(serial);
	return cert;
fail:
	X509_NAME_free(subj);
	ASN1_INTEGER_free(serial);
	X509_free(cert);
	return NULL;
}

/*
 * With root/root_key and the issuing pair in place in dir: make the TLS
 * issuing CA (if root_key is given), the OCSP responder, the database, the
 * first CRL and the audit record.
 */
static int
complete_issuing(const char *dir, const struct govca_settings *s,
    const char *passphrase, X509 *root, EVP_PKEY *root_key, X509 *issuing,
    EVP_PKEY *issuing_key, const char *event, const char **error_r)
{
	EVP_PKEY *tls_key = NULL, *ocsp_key = NULL;
	X509 *tls = NULL, *ocsp = NULL;
	X509_NAME *name = NULL;
	struct kv_env *db = NULL;
	struct govca *ca = NULL;
	char *p, fields[512];
	int ret = -1;

	if (root_key != NULL) {
		tls_key = ca_key_generate(GOVCA_KEY_P256);
		name = ca_name(s->name, "TLS CA");
		if (tls_key == NULL || name == NULL ||
		    (tls = ca_make_ca_cert(name, tls_key, root, root_key,
		    GOVCA_ISSUING_DAYS, 0, "serverAuth,clientAuth")) == NULL ||
		    save_pair(dir, "tls", tls, tls_key, passphrase) == -1) {
			*error_r = "cannot make the TLS CA";
			goto out;
		}
	}
	ocsp_key = ca_key_generate(GOVCA_KEY_P256);
	if (ocsp_key == NULL ||
	    (ocsp = make_ocsp_cert(issuing, issuing_key, ocsp_key,
	    s->name)) == NULL ||
	    save_pair(dir, "ocsp", ocsp, ocsp_key, passphrase) == -1) {
		*error_r = "cannot make the OCSP responder certificate";
		goto out;
	}
	p = dir_path(dir, "certdb");
	ret = kv_open(p, ca_db_tables, KV_OPEN_CREATE, &db, error_r);
	free(p);
	if (ret != 0) {
		ret = -1;
		goto out;
	}
	kv_close(db);
	p = dir_path(dir, "audit.log");
	snprintf(fields, sizeof(fields), "issuing_key=%s tls_ca=%s",
	    EVP_PKEY_get_bits(issuing_key) > 256 ? "p384" : "p256",
	    root_key != NULL ? "yes" : "no");
	ret = govca_audit_append(p, event, fields, error_r);
	free(p);
	if (ret == -1)
		goto out;
	ret = -1;
	if (govca_open(dir, s, passphrase, GOVCA_OPEN_KEYS, &ca,
	    error_r) == -1)
		goto out;
	if (govca_crl_generate(ca, error_r) == -1)
		goto out;
	ret = 0;
out:
	govca_close(ca);
	X509_NAME_free(name);
	X509_free(tls);
	X509_free(ocsp);
	EVP_PKEY_free(tls_key);
	EVP_PKEY_free(ocsp_key);
	return ret;
}

static int
make_root(const char *dir, const struct govca_settings *s,
    const char *passphrase, X509 **root_r, EVP_PKEY **key_r,
    const char **error_r)
{
	X509_NAME *name;

	*root_r = NULL;
	*key_r = ca_key_generate(GOVCA_KEY_P384);
	name = ca_name(s->name, "Root CA");
	if (*key_r != NULL && name != NULL)
		*root_r = ca_make_ca_cert(name, *key_r, NULL, *key_r,
		    GOVCA_ROOT_DAYS, 1, NULL);
	X509_NAME_free(name);
	if (*root_r == NULL ||
	    save_pair(dir, "root", *root_r, *key_r, passphrase) == -1) {
		*error_r = "cannot make the root CA";
		return -1;
	}
	return 0;
}

static int
check_init_args(const struct govca_settings *s, const char *passphrase,
    const char **error_r)
{
	if (ca_settings_check(s, error_r) == -1)
		return -1;
	if (passphrase == NULL || passphrase[0] == '\0') {
		*error_r = "a passphrase is needed to encrypt the CA keys";
		return -1;
	}
	return 0;
}

int
govca_init(const char *dir, const struct govca_settings *s,
    const char *passphrase, enum govca_key_type issuing_type,
    const char **error_r)
{
	EVP_PKEY *root_key = NULL, *issuing_key = NULL;
	X509 *root = NULL, *issuing = NULL;
	X509_NAME *name = NULL;
	int ret = -1;

	if (check_init_args(s, passphrase, error_r) == -1 ||
	    dir_prepare(dir, "issuing.crt", error_r) == -1)
		return -1;
	if (issuing_type != GOVCA_KEY_P256 && issuing_type != GOVCA_KEY_P384) {
		*error_r = "the issuing CA key must be p256 or p384";
		return -1;
	}
	if (make_root(dir, s, passphrase, &root, &root_key, error_r) == -1)
		goto out;
	issuing_key = ca_key_generate(issuing_type);
	name = ca_name(s->name, "Issuing CA");
	if (issuing_key == NULL || name == NULL ||
	    (issuing = ca_make_ca_cert(name, issuing_key, root, root_key,
	    GOVCA_ISSUING_DAYS, 0, "emailProtection")) == NULL ||
	    save_pair(dir, "issuing", issuing, issuing_key, passphrase) == -1) {
		*error_r = "cannot make the issuing CA";
		goto out;
	}
	ret = complete_issuing(dir, s, passphrase, root, root_key, issuing,
	    issuing_key, "init", error_r);
out:
	X509_NAME_free(name);
	X509_free(root);
	X509_free(issuing);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(issuing_key);
	return ret;
}

int
govca_init_root(const char *dir, const struct govca_settings *s,
    const char *passphrase, const char **error_r)
{
	EVP_PKEY *root_key = NULL;
	X509 *root = NULL;
	char *p;
	int ret;

	if (check_init_args(s, passphrase, error_r) == -1 ||
	    dir_prepare(dir, "root.crt", error_r) == -1)
		return -1;
	ret = make_root(dir, s, passphrase, &root, &root_key, error_r);
	if (ret == 0) {
		p = dir_path(dir, "audit.log");
		ret = govca_audit_append(p, "init-root", "key=p384", error_r);
		free(p);
	}
	X509_free(root);
	EVP_PKEY_free(root_key);
	return ret;
}

int
govca_init_issuing(const char *dir, const struct govca_settings *s,
    const char *passphrase, enum govca_key_type issuing_type,
    const char *csr_path, const char **error_r)
{
	EVP_PKEY *key = NULL;
	X509_NAME *name = NULL;
	X509_REQ *req = NULL;
	BIO *bio = NULL;
	char *p, *mem;
	long len;
	int ret = -1;

	if (check_init_args(s, passphrase, error_r) == -1 ||
	    dir_prepare(dir, "issuing.crt", error_r) == -1)
		return -1;
	if (issuing_type != GOVCA_KEY_P256 && issuing_type != GOVCA_KEY_P384) {
		*error_r = "the issuing CA key must be p256 or p384";
		return -1;
	}
	key = ca_key_generate(issuing_type);
	name = ca_name(s->name, "Issuing CA");
	req = X509_REQ_new();
	if (key == NULL || name == NULL || req == NULL ||
	    X509_REQ_set_subject_name(req, name) != 1 ||
	    X509_REQ_set_pubkey(req, key) != 1 ||
	    X509_REQ_sign(req, key, ca_md_for_key(key)) <= 0 ||
	    (bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_X509_REQ(bio, req) != 1) {
		*error_r = "cannot make the issuing CA request";
		goto out;
	}
	p = dir_path(dir, "issuing.key");
	ret = ca_key_save(p, key, passphrase);
	free(p);
	len = BIO_get_mem_data(bio, &mem);
	if (ret == -1 || ca_file_write(csr_path, mem, (size_t)len, 0644) == -1) {
		*error_r = "cannot write the issuing CA key or request";
		ret = -1;
	}
out:
	BIO_free(bio);
	X509_REQ_free(req);
	X509_NAME_free(name);
	EVP_PKEY_free(key);
	return ret;
}

int
govca_sign_issuing(const char *root_dir, const char *passphrase,
    const char *csr_path, const char *cert_path, const char **error_r)
{
	EVP_PKEY *root_key = NULL, *pub = NULL;
	X509 *root = NULL, *cert = NULL;
	X509_REQ *req = NULL;
	BIO *bio = NULL;
	char *p;
	int ret = -1;

	p = dir_path(root_dir, "root.crt");
	root = ca_cert_load(p);
	free(p);
	p = dir_path(root_dir, "root.key");
	root_key = ca_key_load(p, passphrase);
	free(p);
	if (root == NULL || root_key == NULL) {
		*error_r = "cannot load the root CA (wrong folder or passphrase?)";
		goto out;
	}
	if ((bio = BIO_new_file(csr_path, "r")) == NULL ||
	    (req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL)) == NULL ||
	    (pub = X509_REQ_get_pubkey(req)) == NULL ||
	    X509_REQ_verify(req, pub) != 1) {
		*error_r = "cannot read or verify the issuing CA request";
		goto out;
	}
	if ((cert = ca_make_ca_cert(X509_REQ_get_subject_name(req), pub,
	    root, root_key, GOVCA_ISSUING_DAYS, 0, "emailProtection")) == NULL ||
	    ca_cert_save(cert_path, cert) == -1) {
		*error_r = "cannot sign the issuing CA";
		goto out;
	}
	p = dir_path(root_dir, "audit.log");
	ret = govca_audit_append(p, "sign-issuing", "ok=1", error_r);
	free(p);
out:
	ERR_clear_error();
	BIO_free(bio);
	X509_REQ_free(req);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(root_key);
	X509_free(root);
	X509_free(cert);
	return ret;
}

int
govca_import_issuing(const char *dir, const struct govca_settings *s,
    const char *passphrase, const char *cert_path, const char *root_path,
    const char **error_r)
{
	EVP_PKEY *key = NULL, *root_pub = NULL;
	X509 *cert = NULL, *root = NULL;
	char *p;
	int ret = -1;

	if (check_init_args(s, passphrase, error_r) == -1)
		return -1;
	p = dir_path(dir, "issuing.key");
	key = ca_key_load(p, passphrase);
	free(p);
	cert = ca_cert_load(cert_path);
	root = ca_cert_load(root_path);
	if (key == NULL || cert == NULL || root == NULL) {
		*error_r = "cannot load the issuing key, its certificate or "
		    "the root certificate";
		goto out;
	}
	root_pub = X509_get_pubkey(root);
	if (X509_check_private_key(cert, key) != 1 || root_pub == NULL ||
	    X509_verify(cert, root_pub) != 1 ||
	    X509_check_issued(root, cert) != X509_V_OK) {
		*error_r = "the certificate does not match the issuing key or "
		    "was not signed by that root";
		goto out;
	}
	if (save_pair(dir, "issuing", cert, NULL, NULL) == -1 ||
	    save_pair(dir, "root", root, NULL, NULL) == -1) {
		*error_r = "cannot write the certificates";
		goto out;
	}
	ret = complete_issuing(dir, s, passphrase, root, NULL, cert, key,
	    "import-issuing", error_r);
out:
	ERR_clear_error();
	EVP_PKEY_free(key);
	EVP_PKEY_free(root_pub);
	X509_free(cert);
	X509_free(root);
	return ret;
}
