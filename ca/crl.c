/*
 * crl.c - the issuing CA's CRL (RFC 5280 5): every revoked certificate
 * with its date and reason, CRL number, AKI, nextUpdate at most
 * GOVCA_CRL_DAYS_MAX days ahead.  Written to issuing.crl (DER) in the CA
 * folder; `serve` hands out that file.
 *
 * Runs in govmail-ca (crl, revoke, init, and serve's refresh).  Reads only
 * the CA's own database.
 */
#include "autoconf.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <unistd.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "ca_priv.h"
#include "log.h"
#include "xmalloc.h"

/* Large CRLs: the entries go straight into the CRL, then one sort. */
struct crl_ctx {
	X509_CRL *crl;
	size_t n;
	int failed;
};

static int
crl_add_cb(const uint8_t *serial, size_t len, time_t when,
    enum govca_reason reason, void *arg)
{
	struct crl_ctx *c = arg;
	X509_REVOKED *rev;
	ASN1_INTEGER *sn = NULL;
	ASN1_TIME *t = NULL;
	ASN1_ENUMERATED *rc = NULL;
	BIGNUM *bn;

	if ((rev = X509_REVOKED_new()) == NULL ||
	    (bn = BN_bin2bn(serial, (int)len, NULL)) == NULL)
		goto fail;
	sn = BN_to_ASN1_INTEGER(bn, NULL);
	BN_free(bn);
	t = ASN1_TIME_set(NULL, when);
	if (sn == NULL || t == NULL ||
	    X509_REVOKED_set_serialNumber(rev, sn) != 1 ||
	    X509_REVOKED_set_revocationDate(rev, t) != 1)
		goto fail;
	if (reason != GOVCA_REASON_UNSPECIFIED) {
		if ((rc = ASN1_ENUMERATED_new()) == NULL ||
		    ASN1_ENUMERATED_set(rc, (long)reason) != 1 ||
		    X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, rc, 0,
		    0) != 1)
			goto fail;
	}
	if (X509_CRL_add0_revoked(c->crl, rev) != 1)
		goto fail;
	ASN1_INTEGER_free(sn);
	ASN1_TIME_free(t);
	ASN1_ENUMERATED_free(rc);
	c->n++;
	return 0;
fail:
	ASN1_INTEGER_free(sn);
	ASN1_TIME_free(t);
	ASN1_ENUMERATED_free(rc);
	X509_REVOKED_free(rev);
	c->failed = 1;
	return 1;
}

int
govca_crl_generate(struct govca *ca, const char **error_r)
{
	struct crl_ctx c;
	ASN1_TIME *last = NULL, *next = NULL;
	ASN1_INTEGER *num = NULL;
	unsigned char *der = NULL;
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	char *path = NULL, *lock_path, fields[128];
	uint64_t number;
	int lock_fd;
	time_t now = time(NULL);
	int dlen, ret = -1;

	memset(&c, 0, sizeof(c));
	if (ca->issuing_key == NULL) {
		*error_r = ca_err(ca, "the CRL needs the CA keys");
		return -1;
	}
	if (ca->batch && govca_batch_commit(ca, error_r) == -1)
		return -1;
	/*
	 * One CRL at a time across processes: two revocations at once must
	 * not let the older CRL (fewer entries, lower number) be renamed
	 * over the newer one.
	 */
	lock_path = ca_path(ca, "crl.lock");
	lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(lock_path);
	if (lock_fd == -1 || flock(lock_fd, LOCK_EX) == -1) {
		if (lock_fd != -1)
			close(lock_fd);
		*error_r = ca_err(ca, "cannot lock crl.lock");
		return -1;
	}
	if (ca_db_next_crl_number(ca, &number, error_r) == -1) {
		close(lock_fd);
		return -1;
	}
	if ((c.crl = X509_CRL_new()) == NULL ||
	    X509_CRL_set_version(c.crl, 1) != 1 ||
	    X509_CRL_set_issuer_name(c.crl,
	    X509_get_subject_name(ca->issuing)) != 1)
		goto fail;
	last = ASN1_TIME_set(NULL, now);
	next = ASN1_TIME_set(NULL, now + (time_t)ca->crl_days * 86400);
	if (last == NULL || next == NULL ||
	    X509_CRL_set1_lastUpdate(c.crl, last) != 1 ||
	    X509_CRL_set1_nextUpdate(c.crl, next) != 1)
		goto fail;
	if (ca_db_revoked_each(ca, crl_add_cb, &c) == -1 || c.failed) {
		*error_r = ca_err(ca, "cannot read the revoked certificates");
		goto out;
	}
	X509_CRL_sort(c.crl);
	X509V3_set_ctx(&v3, ca->issuing, NULL, NULL, c.crl, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &v3,
	    NID_authority_key_identifier, "keyid:always")) == NULL)
		goto fail;
	X509_CRL_add_ext(c.crl, ext, -1);
	X509_EXTENSION_free(ext);
	if ((num = ASN1_INTEGER_new()) == NULL ||
	    ASN1_INTEGER_set_uint64(num, number) != 1 ||
	    X509_CRL_add1_ext_i2d(c.crl, NID_crl_number, num, 0, 0) != 1)
		goto fail;
	if (X509_CRL_sign(c.crl, ca->issuing_key,
	    ca_md_for_key(ca->issuing_key)) <= 0)
		goto fail;
	if ((dlen = i2d_X509_CRL(c.crl, &der)) <= 0)
		goto fail;
	path = ca_path(ca, "issuing.crl");
	if (ca_file_write(path, der, (size_t)dlen, 0644) == -1) {
		*error_r = ca_err(ca, "cannot write %s", path);
		goto out;
	}
	snprintf(fields, sizeof(fields), "number=%llu entries=%zu days=%u",
	    (unsigned long long)number, c.n, ca->crl_days);
	if (govca_audit(ca, "crl", fields, error_r) == -1)
		goto out;
	ret = 0;
	goto out;
fail:
	*error_r = ca_ssl_err(ca_errbuf(), CA_ERRBUF_SIZE,
	    "cannot build the CRL");
out:
	close(lock_fd);		/* releases the lock */
	ERR_clear_error();
	free(path);
	OPENSSL_free(der);
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(last);
	ASN1_TIME_free(next);
	X509_CRL_free(c.crl);
	return ret;
}

time_t
govca_crl_next_update(struct govca *ca)
{
	const unsigned char *p;
	X509_CRL *crl;
	uint8_t *der;
	size_t len;
	struct tm tm;
	time_t t = 0;

	if (ca_crl_load(ca, &der, &len) == -1)
		return 0;
	p = der;
	if ((crl = d2i_X509_CRL(NULL, &p, (long)len)) != NULL) {
		if (X509_CRL_get0_nextUpdate(crl) != NULL &&
		    ASN1_TIME_to_tm(X509_CRL_get0_nextUpdate(crl), &tm) == 1)
			t = timegm(&tm);
		X509_CRL_free(crl);
	}
	free(der);
	return t;
}

/*
 * The current CRL bytes (a copy), re-read when the file changed: serve
 * picks up a CRL that `revoke` wrote in another process.
 */
int
ca_crl_load(struct govca *ca, uint8_t **der_r, size_t *len_r)
{
	struct stat st;
	char *path = ca_path(ca, "issuing.crl");
	uint8_t *data;
	size_t len;
	int ret = -1;

	*der_r = NULL;
	*len_r = 0;
	pthread_mutex_lock(&ca->crl_lock);
	if (stat(path, &st) == 0 && (ca->crl_der == NULL ||
	    st.st_mtim.tv_sec != ca->crl_mtime.tv_sec ||
	    st.st_mtim.tv_nsec != ca->crl_mtime.tv_nsec ||
	    st.st_ino != ca->crl_ino ||
	    (size_t)st.st_size != ca->crl_len)) {
		if (ca_file_read(path, 512u * 1024 * 1024, &data, &len) == 0) {
			free(ca->crl_der);
			ca->crl_der = data;
			ca->crl_len = len;
			ca->crl_mtime = st.st_mtim;
			ca->crl_ino = st.st_ino;
		}
	}
	if (ca->crl_der != NULL) {
		*der_r = xmemdup(ca->crl_der, ca->crl_len);
		*len_r = ca->crl_len;
		ret = 0;
	}
	pthread_mutex_unlock(&ca->crl_lock);
	free(path);
	return ret;
}
