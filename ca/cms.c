/*
 * cms.c - S/MIME sign, verify, encrypt and decrypt on OpenSSL 3's CMS API
 * (RFC 8551 messages, RFC 5652 CMS, RFC 5035 ESS signingCertificateV2).
 * Part of libgovca; runs in govmail-notice (sign, encrypt), smtpd (verify
 * list posts and inbound mail), and the tests.
 *
 * Trust: identities (certificates, keys, PKCS#12 files) come from the
 * operator and are trusted.  Messages given to verify and decrypt come from
 * anyone: they go through the bounded parsers of smime_mime.c, and every
 * OpenSSL object made from them is size-limited before it is parsed.
 */
#include "autoconf.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/ess.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "xmalloc.h"
#include "govca_cms.h"
#include "smime_priv.h"

/* Random part of a generated boundary, bytes (hex-encoded: twice that). */
#define CMS_BOUNDARY_RANDOM	16
/* Largest PEM or PKCS#12 file read for an identity. */
#define CMS_MAX_IDENTITY_FILE	(1024u * 1024)
/* Most certificates in an identity's chain. */
#define CMS_MAX_CHAIN		16
/*
 * SECURITY: the weakest signer key and chain accepted, in bits of security
 * (OpenSSL security level 2: RSA >= 2048, EC >= 224, no SHA-1 or MD5
 * signatures in the chain).
 */
#define CMS_MIN_SECURITY_BITS	112
#define CMS_AUTH_LEVEL		2

struct govca_cms_identity {
	X509 *cert;
	EVP_PKEY *key;
	STACK_OF(X509) *chain;
};

/* -------------------------------------------------------- identities */

static int
read_file(const char *path, struct buf *out, const char **error_r)
{
	FILE *f;
	uint8_t tmp[4096];
	size_t n;

	if ((f = fopen(path, "rb")) == NULL) {
		*error_r = "cannot open file";
		return -1;
	}
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
		if (buf_append(out, tmp, n) < 0) {
			fclose(f);
			*error_r = "file too large";
			return -1;
		}
	}
	if (ferror(f)) {
		fclose(f);
		*error_r = "cannot read file";
		return -1;
	}
	fclose(f);
	return buf_reserve(out, 0);
}

static struct govca_cms_identity *
identity_take(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain)
{
	struct govca_cms_identity *id = xcalloc(1, sizeof(*id));

	id->cert = cert;
	id->key = key;
	id->chain = chain != NULL ? chain : sk_X509_new_null();
	return id;
}

int
govca_cms_identity_load_p12(const char *path, const char *password,
    struct govca_cms_identity **id_r, const char **error_r)
{
	struct buf data;
	const unsigned char *p;
	PKCS12 *p12;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	STACK_OF(X509) *ca = NULL;

	*id_r = NULL;
	buf_init(&data, CMS_MAX_IDENTITY_FILE);
	data.secret = 1;
	if (read_file(path, &data, error_r) < 0) {
		buf_free(&data);
		return -1;
	}
	p = data.data;
	p12 = d2i_PKCS12(NULL, &p, (long)data.len);
	buf_free(&data);
	if (p12 == NULL) {
		ERR_clear_error();
		*error_r = "not a PKCS#12 file";
		return -1;
	}
	if (!PKCS12_parse(p12, password, &key, &cert, &ca)) {
		PKCS12_free(p12);
		ERR_clear_error();
		*error_r = "cannot open PKCS#12 (wrong password?)";
		return -1;
	}
	PKCS12_free(p12);
	if (cert == NULL || key == NULL) {
		X509_free(cert);
		EVP_PKEY_free(key);
		sk_X509_pop_free(ca, X509_free);
		*error_r = "PKCS#12 holds no certificate and key";
		return -1;
	}
	if (X509_check_private_key(cert, key) != 1) {
		X509_free(cert);
		EVP_PKEY_free(key);
		sk_X509_pop_free(ca, X509_free);
		ERR_clear_error();
		*error_r = "PKCS#12 key does not match its certificate";
		return -1;
	}
	*id_r = identity_take(cert, key, ca);
	return 0;
}

struct pem_pass {
	const char *pass;
};

static int
pem_pass_cb(char *out, int size, int rwflag, void *u)
{
	const struct pem_pass *pp = u;
	size_t n;

	if (pp == NULL || pp->pass == NULL || size <= 0)
		return -1;
	n = strlen(pp->pass);
	if (n > (size_t)size)
		return -1;
	memcpy(out, pp->pass, n);
	return (int)n;
}

int
govca_cms_identity_load_pem(const char *cert_path, const char *key_path,
    const char *key_password, const char *chain_path,
    struct govca_cms_identity **id_r, const char **error_r)
{
	struct pem_pass pp = { key_password };
	struct buf data;
	BIO *bio;
	X509 *cert = NULL, *c;
	EVP_PKEY *key = NULL;
	STACK_OF(X509) *chain;

	*id_r = NULL;
	buf_init(&data, CMS_MAX_IDENTITY_FILE);
	data.secret = 1;
	if (read_file(cert_path, &data, error_r) < 0)
		goto fail;
	bio = BIO_new_mem_buf(data.data, (int)data.len);
	cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (cert == NULL) {
		*error_r = "no PEM certificate in file";
		goto fail;
	}
	buf_reset(&data);
	if (read_file(key_path, &data, error_r) < 0)
		goto fail;
	bio = BIO_new_mem_buf(data.data, (int)data.len);
	key = PEM_read_bio_PrivateKey(bio, NULL, pem_pass_cb, &pp);
	BIO_free(bio);
	if (key == NULL) {
		*error_r = "cannot read PEM private key (wrong password?)";
		goto fail;
	}
	if (X509_check_private_key(cert, key) != 1) {
		*error_r = "key does not match the certificate";
		goto fail;
	}
	chain = sk_X509_new_null();
	if (chain_path != NULL) {
		buf_reset(&data);
		if (read_file(chain_path, &data, error_r) < 0) {
			sk_X509_free(chain);
			goto fail;
		}
		bio = BIO_new_mem_buf(data.data, (int)data.len);
		while ((c = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
			if (sk_X509_num(chain) >= CMS_MAX_CHAIN) {
				X509_free(c);
				break;
			}
			sk_X509_push(chain, c);
		}
		BIO_free(bio);
		ERR_clear_error();
		if (sk_X509_num(chain) == 0) {
			sk_X509_free(chain);
			*error_r = "no PEM certificate in chain file";
			goto fail;
		}
	}
	buf_free(&data);
	*id_r = identity_take(cert, key, chain);
	return 0;
fail:
	buf_free(&data);
	X509_free(cert);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return -1;
}

int
govca_cms_identity_new(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
    struct govca_cms_identity **id_r, const char **error_r)
{
	STACK_OF(X509) *c2 = sk_X509_new_null();
	int i;

	*id_r = NULL;
	if (cert == NULL || key == NULL || X509_check_private_key(cert, key)
	    != 1) {
		sk_X509_free(c2);
		ERR_clear_error();
		*error_r = "key does not match the certificate";
		return -1;
	}
	for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);

		X509_up_ref(c);
		sk_X509_push(c2, c);
	}
	X509_up_ref(cert);
	EVP_PKEY_up_ref(key);
	*id_r = identity_take(cert, key, c2);
	return 0;
}

X509 *
govca_cms_identity_cert(const struct govca_cms_identity *id)
{
	return id->cert;
}

void
govca_cms_identity_free(struct govca_cms_identity *id)
{
	if (id == NULL)
		return;
	X509_free(id->cert);
	EVP_PKEY_free(id->key);
	sk_X509_pop_free(id->chain, X509_free);
	free(id);
}

static const char *
identity_digest(const struct govca_cms_identity *id)
{
	if (EVP_PKEY_get_base_id(id->key) == EVP_PKEY_EC) {
		int bits = EVP_PKEY_get_bits(id->key);

		if (bits > 384)
			return "SHA512";
		if (bits > 256)
			return "SHA384";
	}
	return "SHA256";
}

const char *
govca_cms_identity_micalg(const struct govca_cms_identity *id)
{
	const char *d = identity_digest(id);

	if (strcmp(d, "SHA512") == 0)
		return "sha-512";
	if (strcmp(d, "SHA384") == 0)
		return "sha-384";
	return "sha-256";
}

/* ------------------------------------------------------------- sign */

static int
make_boundary(const struct buf *content, char *out, size_t outsz)
{
	uint8_t rnd[CMS_BOUNDARY_RANDOM];
	char hex[2 * CMS_BOUNDARY_RANDOM + 1], probe[SMIME_BOUNDARY_MAX + 3];
	size_t i;
	int tries;

	for (tries = 0; tries < 4; tries++) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return -1;
		for (i = 0; i < sizeof(rnd); i++)
			snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
		snprintf(out, outsz, "govmail-%s", hex);
		snprintf(probe, sizeof(probe), "--%s", out);
		/* 128 random bits make a clash practically impossible, but
		 * checking costs one pass. */
		if (memmem(content->data, content->len, probe,
		    strlen(probe)) == NULL)
			return 0;
	}
	return -1;
}

/* DER of a CMS object into out (base64, CRLF lines). */
static int
cms_to_base64(CMS_ContentInfo *cms, struct buf *out)
{
	unsigned char *der = NULL;
	int n, r;

	n = i2d_CMS_ContentInfo(cms, &der);
	if (n <= 0)
		return -1;
	r = smime_base64_encode(der, (size_t)n, out);
	OPENSSL_free(der);
	return r;
}

static int
add_smimecap(CMS_SignerInfo *si)
{
	STACK_OF(X509_ALGOR) *caps = NULL;
	int ok;

	/* Only what we would accept: AES-256 first (RFC 8551 2.7). */
	ok = CMS_add_simple_smimecap(&caps, NID_aes_256_cbc, -1) &&
	    CMS_add_simple_smimecap(&caps, NID_aes_192_cbc, -1) &&
	    CMS_add_simple_smimecap(&caps, NID_aes_128_cbc, -1) &&
	    CMS_add_smimecap(si, caps);
	sk_X509_ALGOR_pop_free(caps, X509_ALGOR_free);
	return ok ? 0 : -1;
}

int
govca_cms_sign(const struct govca_cms_identity *id, const uint8_t *entity,
    size_t len, struct buf *out, const char **error_r)
{
	struct buf canon, sig;
	struct smime_entity e;
	struct buf ct;
	size_t count;
	char boundary[SMIME_BOUNDARY_MAX + 1];
	const EVP_MD *md;
	CMS_ContentInfo *cms = NULL;
	CMS_SignerInfo *si;
	BIO *in = NULL;
	unsigned int flags = CMS_DETACHED | CMS_BINARY | CMS_PARTIAL;
	int i, ret = -1;

	buf_init(&canon, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&sig, BUF_UNBOUNDED);
	buf_init(&ct, SMIME_MAX_FIELD);
	if (len > GOVCA_CMS_MAX_MESSAGE ||
	    smime_canon_crlf(entity, len, &canon) < 0) {
		*error_r = "entity too large";
		goto out;
	}
	if (!smime_is_7bit(canon.data, canon.len, error_r))
		goto out;
	if (smime_entity_split(canon.data, canon.len, &e, error_r) < 0)
		goto out;
	if (smime_header_get(&e, "Content-Type", &ct, &count) < 0 ||
	    count != 1) {
		*error_r = "entity needs exactly one Content-Type";
		goto out;
	}
	if (make_boundary(&canon, boundary, sizeof(boundary)) < 0) {
		*error_r = "cannot make a boundary";
		goto out;
	}
	md = EVP_get_digestbyname(identity_digest(id));
	cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
	if (md == NULL || cms == NULL)
		goto ssl_fail;
	/* CMS_CADES adds ESS signingCertificateV2 (the digest's hash of
	 * the signer certificate); SMIMECapabilities are ours, below. */
	si = CMS_add1_signer(cms, id->cert, id->key, md,
	    flags | CMS_NOSMIMECAP | CMS_CADES);
	if (si == NULL || add_smimecap(si) < 0)
		goto ssl_fail;
	for (i = 0; i < sk_X509_num(id->chain); i++) {
		if (!CMS_add1_cert(cms, sk_X509_value(id->chain, i)))
			goto ssl_fail;
	}
	in = BIO_new_mem_buf(canon.data, (int)canon.len);
	if (in == NULL || !CMS_final(cms, in, NULL, flags))
		goto ssl_fail;
	if (cms_to_base64(cms, &sig) < 0)
		goto ssl_fail;
	if (buf_printf(out, "Content-Type: multipart/signed;\r\n"
	    " protocol=\"application/pkcs7-signature\";\r\n"
	    " micalg=%s; boundary=\"%s\"\r\n\r\n"
	    "This is a cryptographically signed message in MIME format.\r\n"
	    "\r\n--%s\r\n", govca_cms_identity_micalg(id), boundary,
	    boundary) < 0 ||
	    buf_append(out, canon.data, canon.len) < 0 ||
	    buf_printf(out, "\r\n--%s\r\n"
	    "Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; filename=\"smime.p7s\"\r\n"
	    "Content-Description: S/MIME Cryptographic Signature\r\n\r\n",
	    boundary) < 0 ||
	    buf_append(out, sig.data, sig.len) < 0 ||
	    buf_printf(out, "--%s--\r\n", boundary) < 0) {
		*error_r = "signed message too large";
		goto out;
	}
	ret = 0;
	goto out;
ssl_fail:
	*error_r = "CMS signing failed";
out:
	ERR_clear_error();
	BIO_free(in);
	CMS_ContentInfo_free(cms);
	buf_free(&canon);
	buf_free(&sig);
	buf_free(&ct);
	return ret;
}

/* ----------------------------------------------------------- verify */

const char *
govca_cms_status_name(enum govca_cms_status status)
{
	switch (status) {
	case GOVCA_CMS_PASS:
		return "pass";
	case GOVCA_CMS_FAIL:
		return "fail";
	case GOVCA_CMS_NEUTRAL:
	default:
		return "neutral";
	}
}

const char *
govca_cms_class_name(enum govca_cms_class cls)
{
	switch (cls) {
	case GOVCA_CMS_CLASS_OFFICIAL:
		return "official";
	case GOVCA_CMS_CLASS_ORGANIZATION:
		return "organization";
	case GOVCA_CMS_CLASS_INDIVIDUAL:
		return "individual";
	case GOVCA_CMS_CLASS_MAILBOX:
		return "mailbox";
	case GOVCA_CMS_CLASS_NONE:
	default:
		return "none";
	}
}

/* RFC 8601 value: a token as is, else a quoted-string; -1 if it holds
 * anything but printable ASCII. */
static int
ar_value(const char *v, struct buf *out)
{
	const char *p;
	int token = *v != '\0';

	for (p = v; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c > 0x7e)
			return -1;
		if (c == ' ' || strchr("()<>,;:\\\"/[]?=", c) != NULL)
			token = 0;
	}
	/* An address is a fine token except for its '@', which RFC 8601
	 * 2.2 allows in a pvalue; quote only for real specials. */
	if (token || (strchr(v, '@') != NULL &&
	    strpbrk(v, " ()<>,;:\\\"/[]?=") == NULL))
		return buf_append_str(out, v);
	if (buf_append_byte(out, '"') < 0)
		return -1;
	for (p = v; *p != '\0'; p++) {
		if ((*p == '"' || *p == '\\') && buf_append_byte(out, '\\') < 0)
			return -1;
		if (buf_append_byte(out, (uint8_t)*p) < 0)
			return -1;
	}
	return buf_append_byte(out, '"');
}

int
govca_cms_auth_result(const struct govca_cms_result *res, struct buf *out)
{
	const char *id = NULL;
	struct buf tmp;
	char serial[2 * 64 + 1];
	size_t i;
	int ret = -1;

	buf_init(&tmp, SMIME_MAX_FIELD);
	if (buf_printf(&tmp, "smime=%s", govca_cms_status_name(res->status))
	    < 0)
		goto out;
	if (res->status != GOVCA_CMS_PASS && res->reason[0] != '\0') {
		struct buf r;

		buf_init(&r, GOVCA_CMS_REASON_MAX * 2 + 2);
		/* Our reasons are ASCII; be safe anyway. */
		for (i = 0; res->reason[i] != '\0'; i++) {
			unsigned char c = (unsigned char)res->reason[i];

			buf_append_byte(&r, c >= 0x20 && c <= 0x7e ? c : '?');
		}
		buf_reserve(&r, 0);
		if (buf_append_str(&tmp, " reason=") < 0 ||
		    ar_value(buf_str(&r), &tmp) < 0) {
			buf_free(&r);
			goto out;
		}
		buf_free(&r);
	}
	for (i = 0; i < res->n_emails; i++) {
		if (res->from_matches &&
		    smime_address_equal(res->from, res->emails[i]))
			id = res->emails[i];
	}
	if (id == NULL && res->n_emails > 0)
		id = res->emails[0];
	if (id != NULL) {
		size_t mark = tmp.len;

		if (buf_append_str(&tmp, " header.smime-identifier=") < 0)
			goto out;
		if (ar_value(id, &tmp) < 0)
			buf_truncate(&tmp, mark);	/* not ASCII: leave out */
	}
	if (res->signer != NULL) {
		const ASN1_INTEGER *sn = X509_get0_serialNumber(res->signer);
		const unsigned char *d = ASN1_STRING_get0_data(sn);
		int n = ASN1_STRING_length(sn);

		if (n > 0 && (size_t)n <= sizeof(serial) / 2) {
			for (i = 0; i < (size_t)n; i++)
				snprintf(serial + 2 * i, 3, "%02x", d[i]);
			if (buf_printf(&tmp, " header.smime-serial=%s",
			    serial) < 0)
				goto out;
		}
	}
	ret = buf_append(out, tmp.data, tmp.len);
out:
	buf_free(&tmp);
	return ret;
}

void
govca_cms_result_init(struct govca_cms_result *res)
{
	memset(res, 0, sizeof(*res));
	res->status = GOVCA_CMS_NEUTRAL;
	str_copy(res->reason, sizeof(res->reason), "not signed");
	buf_init(&res->content, GOVCA_CMS_MAX_MESSAGE);
}

void
govca_cms_result_free(struct govca_cms_result *res)
{
	size_t i;

	X509_free(res->signer);
	res->signer = NULL;
	for (i = 0; i < res->n_emails; i++)
		free(res->emails[i]);
	res->n_emails = 0;
	buf_free(&res->content);
}

static void
set_result(struct govca_cms_result *res, enum govca_cms_status st,
    const char *reason, const char *detail)
{
	res->status = st;
	if (detail != NULL && *detail != '\0')
		snprintf(res->reason, sizeof(res->reason), "%s: %s", reason,
		    detail);
	else
		str_copy(res->reason, sizeof(res->reason), reason);
}

static void
add_email(struct govca_cms_result *res, const unsigned char *p, int n)
{
	if (n <= 0 || (size_t)n > GOVCA_CMS_MAX_ADDRESS ||
	    memchr(p, '\0', (size_t)n) != NULL ||
	    res->n_emails >= GOVCA_CMS_MAX_EMAILS)
		return;
	res->emails[res->n_emails++] = xstrndup((const char *)p, (size_t)n);
}

/* The signer's addresses: SAN rfc822Name / SmtpUTF8Mailbox, else the
 * subject's emailAddress (RFC 8550 3). */
static void
collect_emails(X509 *cert, struct govca_cms_result *res)
{
	GENERAL_NAMES *gens;
	X509_NAME *subj;
	int i;

	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_EMAIL) {
			add_email(res, ASN1_STRING_get0_data(g->d.rfc822Name),
			    ASN1_STRING_length(g->d.rfc822Name));
		} else if (g->type == GEN_OTHERNAME &&
		    OBJ_obj2nid(g->d.otherName->type_id) ==
		    NID_id_on_SmtpUTF8Mailbox &&
		    g->d.otherName->value->type == V_ASN1_UTF8STRING) {
			ASN1_UTF8STRING *s =
			    g->d.otherName->value->value.utf8string;

			add_email(res, ASN1_STRING_get0_data(s),
			    ASN1_STRING_length(s));
		}
	}
	GENERAL_NAMES_free(gens);
	if (res->n_emails > 0)
		return;
	subj = X509_get_subject_name(cert);
	i = -1;
	while ((i = X509_NAME_get_index_by_NID(subj, NID_pkcs9_emailAddress,
	    i)) >= 0) {
		ASN1_STRING *s = X509_NAME_ENTRY_get_data(
		    X509_NAME_get_entry(subj, i));

		add_email(res, ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
	}
}

/* S/MIME BR policy OIDs 2.23.140.1.5.<class>.<generation>. */
static enum govca_cms_class
cert_class(X509 *cert)
{
	CERTIFICATEPOLICIES *pols;
	enum govca_cms_class cls = GOVCA_CMS_CLASS_NONE;
	char oid[80];
	int i;

	pols = X509_get_ext_d2i(cert, NID_certificate_policies, NULL, NULL);
	for (i = 0; pols != NULL && i < sk_POLICYINFO_num(pols); i++) {
		POLICYINFO *pi = sk_POLICYINFO_value(pols, i);
		static const char pfx[] = "2.23.140.1.5.";

		if (OBJ_obj2txt(oid, sizeof(oid), pi->policyid, 1) <= 0 ||
		    strncmp(oid, pfx, sizeof(pfx) - 1) != 0)
			continue;
		if (strlen(oid) != sizeof(pfx) + 2 ||
		    oid[sizeof(pfx)] != '.' ||
		    oid[sizeof(pfx) + 1] < '1' || oid[sizeof(pfx) + 1] > '3')
			continue;
		switch (oid[sizeof(pfx) - 1]) {
		case '1':
			cls = GOVCA_CMS_CLASS_MAILBOX;
			break;
		case '2':
			cls = GOVCA_CMS_CLASS_ORGANIZATION;
			break;
		case '3':
			cls = GOVCA_CMS_CLASS_OFFICIAL;
			break;
		case '4':
			cls = GOVCA_CMS_CLASS_INDIVIDUAL;
			break;
		default:
			break;
		}
		if (cls != GOVCA_CMS_CLASS_NONE)
			break;
	}
	CERTIFICATEPOLICIES_free(pols);
	return cls;
}

static time_t
signing_time(CMS_SignerInfo *si)
{
	X509_ATTRIBUTE *attr;
	ASN1_TYPE *t;
	const ASN1_TIME *at;
	struct tm tm;
	int idx;

	idx = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
	if (idx < 0 || (attr = CMS_signed_get_attr(si, idx)) == NULL ||
	    (t = X509_ATTRIBUTE_get0_type(attr, 0)) == NULL)
		return 0;
	if (t->type == V_ASN1_UTCTIME)
		at = t->value.utctime;
	else if (t->type == V_ASN1_GENERALIZEDTIME)
		at = t->value.generalizedtime;
	else
		return 0;
	memset(&tm, 0, sizeof(tm));
	if (!ASN1_TIME_to_tm(at, &tm))
		return 0;
	return timegm(&tm);
}

/* Check ESS signingCertificate(V2), when present, against the chain. */
static int
check_ess(CMS_SignerInfo *si, STACK_OF(X509) *chain)
{
	ESS_SIGNING_CERT *ss = NULL;
	ESS_SIGNING_CERT_V2 *ssv2 = NULL;
	ASN1_STRING *s;
	const unsigned char *p;
	int ok = 1;

	s = CMS_signed_get0_data_by_OBJ(si,
	    OBJ_nid2obj(NID_id_smime_aa_signingCertificate), -3,
	    V_ASN1_SEQUENCE);
	if (s != NULL) {
		p = ASN1_STRING_get0_data(s);
		ss = d2i_ESS_SIGNING_CERT(NULL, &p, ASN1_STRING_length(s));
		ok = ss != NULL;
	}
	s = CMS_signed_get0_data_by_OBJ(si,
	    OBJ_nid2obj(NID_id_smime_aa_signingCertificateV2), -3,
	    V_ASN1_SEQUENCE);
	if (ok && s != NULL) {
		p = ASN1_STRING_get0_data(s);
		ssv2 = d2i_ESS_SIGNING_CERT_V2(NULL, &p, ASN1_STRING_length(s));
		ok = ssv2 != NULL;
	}
	if (ok && (ss != NULL || ssv2 != NULL))
		ok = OSSL_ESS_check_signing_certs(ss, ssv2, chain, 1) > 0;
	ESS_SIGNING_CERT_free(ss);
	ESS_SIGNING_CERT_V2_free(ssv2);
	return ok;
}

/* SECURITY: only the SHA-2 digests; SHA-1 and MD5 are forgeable. */
static int
digest_ok(CMS_SignerInfo *si)
{
	X509_ALGOR *dig = NULL;
	int nid;

	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, NULL);
	if (dig == NULL)
		return 0;
	nid = OBJ_obj2nid(dig->algorithm);
	return nid == NID_sha256 || nid == NID_sha384 || nid == NID_sha512;
}

/* The OpenSSL reason for the last error, for a result's reason text. */
static const char *
ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : "";
}

/* ------------------------------------------------- verified chain cache */

struct chain_ent {
	uint8_t key[32];		/* SHA-256 of the signer's DER */
	uint64_t crl_id;		/* crls_id() of the CRLs checked */
	const void *crls;		/* ... and the stack itself */
	const void *store;		/* the trusted store verified with */
	time_t until;
	STACK_OF(X509) *chain;		/* NULL: free slot */
};

/* A certificate as a message carried it, and what parsing it gave. */
struct cert_ent {
	unsigned char *der;		/* NULL: free slot */
	size_t len;
	X509 *x;
};

struct govca_chain_cache {
	pthread_mutex_t lock;
	struct chain_ent e[GOVCA_CHAIN_CACHE_SIZE];
	size_t next;			/* round-robin replacement */
	unsigned long hits, misses;
	struct cert_ent c[GOVCA_CERT_CACHE_SIZE];
	size_t cnext;
	unsigned long cert_hits, cert_misses;
};

struct govca_chain_cache *
govca_chain_cache_new(void)
{
	struct govca_chain_cache *c = xcalloc(1, sizeof(*c));

	(void)pthread_mutex_init(&c->lock, NULL);
	return c;
}

static void
chain_cache_clear_locked(struct govca_chain_cache *c)
{
	size_t i;

	for (i = 0; i < GOVCA_CHAIN_CACHE_SIZE; i++) {
		sk_X509_pop_free(c->e[i].chain, X509_free);
		memset(&c->e[i], 0, sizeof(c->e[i]));
	}
	for (i = 0; i < GOVCA_CERT_CACHE_SIZE; i++) {
		free(c->c[i].der);
		X509_free(c->c[i].x);
		memset(&c->c[i], 0, sizeof(c->c[i]));
	}
}

void
govca_chain_cache_clear(struct govca_chain_cache *c)
{
	if (c == NULL)
		return;
	(void)pthread_mutex_lock(&c->lock);
	chain_cache_clear_locked(c);
	(void)pthread_mutex_unlock(&c->lock);
}

void
govca_chain_cache_free(struct govca_chain_cache *c)
{
	if (c == NULL)
		return;
	chain_cache_clear_locked(c);
	(void)pthread_mutex_destroy(&c->lock);
	free(c);
}

void
govca_chain_cache_stats(struct govca_chain_cache *c, unsigned long *hits_r,
    unsigned long *misses_r)
{
	(void)pthread_mutex_lock(&c->lock);
	*hits_r = c->hits;
	*misses_r = c->misses;
	(void)pthread_mutex_unlock(&c->lock);
}

void
govca_chain_cache_cert_stats(struct govca_chain_cache *c,
    unsigned long *hits_r, unsigned long *misses_r)
{
	(void)pthread_mutex_lock(&c->lock);
	*hits_r = c->cert_hits;
	*misses_r = c->cert_misses;
	(void)pthread_mutex_unlock(&c->lock);
}

/*
 * The certificate whose DER is der[0..len), parsed once per cache: OpenSSL
 * 3.0 builds a decoder context for every public key it parses, which made
 * parsing a message's certificates the largest cost of checking it.  The
 * key is the whole DER, compared byte for byte; what parsing gives does
 * not depend on trust, which is still decided for every message.  NULL if
 * the bytes are not exactly one certificate.  The caller owns a reference.
 */
static X509 *
cert_cache_parse(struct govca_chain_cache *c, const unsigned char *der,
    size_t len)
{
	const unsigned char *p = der;
	struct cert_ent *e;
	X509 *x = NULL;
	size_t i;

	if (len > GOVCA_CERT_CACHE_DER_MAX) {
		/* Not kept: hostile mail must not fill memory with them. */
		x = d2i_X509(NULL, &p, (long)len);
		if (x == NULL || p != der + len) {
			X509_free(x);
			return NULL;
		}
		return x;
	}
	(void)pthread_mutex_lock(&c->lock);
	for (i = 0; i < GOVCA_CERT_CACHE_SIZE; i++) {
		e = &c->c[i];
		if (e->der != NULL && e->len == len &&
		    memcmp(e->der, der, len) == 0) {
			x = e->x;
			X509_up_ref(x);
			c->cert_hits++;
			break;
		}
	}
	if (x == NULL)
		c->cert_misses++;
	(void)pthread_mutex_unlock(&c->lock);
	if (x != NULL)
		return x;

	x = d2i_X509(NULL, &p, (long)len);
	if (x == NULL || p != der + len) {
		X509_free(x);
		return NULL;
	}
	X509_up_ref(x);
	(void)pthread_mutex_lock(&c->lock);
	e = &c->c[c->cnext];
	c->cnext = (c->cnext + 1) % GOVCA_CERT_CACHE_SIZE;
	free(e->der);
	X509_free(e->x);
	e->der = xmalloc(len);
	memcpy(e->der, der, len);
	e->len = len;
	e->x = x;
	(void)pthread_mutex_unlock(&c->lock);
	return x;
}

/* The DER of the signedData content type, tag and length included. */
static const unsigned char oid_signed_data[] = {
	0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02
};

/*
 * One definite-length TLV at *pp (within end) of the wanted universal or
 * context tag, constructed: its content in *c_r, *clen_r, and *pp moved
 * past it.  -1 otherwise.
 */
static int
der_enter(const unsigned char **pp, const unsigned char *end, int tag,
    int cls, const unsigned char **c_r, long *clen_r)
{
	const unsigned char *p = *pp;
	long len;
	int t, k, r;

	if (p >= end)
		return -1;
	r = ASN1_get_object(&p, &len, &t, &k, end - p);
	if (r != V_ASN1_CONSTRUCTED || t != tag || k != cls)
		return -1;
	*c_r = p;
	*clen_r = len;
	*pp = p + len;
	return 0;
}

/*
 * Split a DER ContentInfo holding SignedData into the same structure
 * without its certificates field (*out_r, *out_len_r, malloc'd) and the
 * spans of the certificates in it (at most GOVCA_CMS_CERTS_MAX).  The
 * certificates are not signed, so leaving them out changes nothing the
 * signature covers.  -1 when the input is anything but plain definite
 * lengths of that shape (BER, attribute certificates, too many): the
 * caller then parses it whole.
 */
static int
cms_split_certs(const unsigned char *der, size_t der_len,
    unsigned char **out_r, size_t *out_len_r,
    const unsigned char **cert_p, size_t *cert_len, int *ncerts_r)
{
	const unsigned char *p = der, *end = der + der_len, *ci, *ex, *sd;
	const unsigned char *cs = NULL, *ce = NULL, *q, *cend;
	unsigned char *out, *w;
	long ci_len, ex_len, sd_len, l, n_sd, n_ex, n_ci;
	int ncerts = 0, t, k, r;

	if (der_len > LONG_MAX / 2 || der_enter(&p, end, V_ASN1_SEQUENCE,
	    V_ASN1_UNIVERSAL, &ci, &ci_len) < 0)
		return -1;
	p = ci;
	end = ci + ci_len;
	if ((size_t)(end - p) < sizeof(oid_signed_data) ||
	    memcmp(p, oid_signed_data, sizeof(oid_signed_data)) != 0)
		return -1;
	p += sizeof(oid_signed_data);
	if (der_enter(&p, end, 0, V_ASN1_CONTEXT_SPECIFIC, &ex, &ex_len) < 0 ||
	    p != end)
		return -1;
	p = ex;
	end = ex + ex_len;
	if (der_enter(&p, end, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &sd,
	    &sd_len) < 0 || p != end)
		return -1;
	/* The fields of SignedData: find [0] IMPLICIT CertificateSet. */
	p = sd;
	end = sd + sd_len;
	while (p < end) {
		q = p;
		r = ASN1_get_object(&q, &l, &t, &k, end - p);
		if ((r & 0x80) || r == (V_ASN1_CONSTRUCTED | 1))
			return -1;
		if (t == 0 && k == V_ASN1_CONTEXT_SPECIFIC) {
			if (cs != NULL || r != V_ASN1_CONSTRUCTED)
				return -1;
			cs = p;
			ce = q + l;
			cend = ce;
			while (q < cend) {
				const unsigned char *c0 = q, *cc;
				long cl;

				if (ncerts == GOVCA_CMS_CERTS_MAX ||
				    der_enter(&q, cend, V_ASN1_SEQUENCE,
				    V_ASN1_UNIVERSAL, &cc, &cl) < 0)
					return -1;
				cert_p[ncerts] = c0;
				cert_len[ncerts++] = (size_t)(q - c0);
			}
			p = ce;
		} else
			p = q + l;
	}
	if (p != end || cs == NULL)
		return -1;

	n_sd = sd_len - (long)(ce - cs);
	n_ex = ASN1_object_size(1, n_sd, V_ASN1_SEQUENCE);
	n_ci = (long)sizeof(oid_signed_data) + ASN1_object_size(1, n_ex, 0);
	l = ASN1_object_size(1, n_ci, V_ASN1_SEQUENCE);
	if (n_ex < 0 || n_ci < 0 || l < 0)
		return -1;
	out = w = xmalloc((size_t)l);
	ASN1_put_object(&w, 1, n_ci, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(w, oid_signed_data, sizeof(oid_signed_data));
	w += sizeof(oid_signed_data);
	ASN1_put_object(&w, 1, n_ex, 0, V_ASN1_CONTEXT_SPECIFIC);
	ASN1_put_object(&w, 1, n_sd, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(w, sd, (size_t)(cs - sd));
	w += cs - sd;
	memcpy(w, ce, (size_t)(end - ce));
	w += end - ce;
	*out_r = out;
	*out_len_r = (size_t)(w - out);
	*ncerts_r = ncerts;
	return 0;
}

/*
 * d2i_CMS_ContentInfo, with the certificates parsed through the cache
 * when there is one and the input has the plain shape cms_split_certs
 * takes.  NULL if malformed, a certificate included.
 */
static CMS_ContentInfo *
cms_parse(const uint8_t *der, size_t der_len, struct govca_chain_cache *c)
{
	const unsigned char *cert_p[GOVCA_CMS_CERTS_MAX], *p = der;
	size_t cert_len[GOVCA_CMS_CERTS_MAX], len;
	unsigned char *bare = NULL;
	CMS_ContentInfo *cms;
	int i, n = 0;

	if (c == NULL || cms_split_certs(der, der_len, &bare, &len, cert_p,
	    cert_len, &n) < 0)
		return d2i_CMS_ContentInfo(NULL, &p, (long)der_len);
	p = bare;
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	free(bare);
	for (i = 0; cms != NULL && i < n; i++) {
		X509 *x = cert_cache_parse(c, cert_p[i], cert_len[i]);

		if (x == NULL) {
			CMS_ContentInfo_free(cms);
			return NULL;
		}
		/* 0 for a duplicate, which the message may carry. */
		(void)CMS_add1_cert(cms, x);
		X509_free(x);
	}
	ERR_clear_error();
	return cms;
}

/* What identifies a CRL set cheaply: entries and lastUpdate of each. */
static uint64_t
crls_id(STACK_OF(X509_CRL) *crls)
{
	uint64_t h = 1469598103934665603ULL;
	int i, n = crls != NULL ? sk_X509_CRL_num(crls) : 0;

	for (i = 0; i < n; i++) {
		X509_CRL *crl = sk_X509_CRL_value(crls, i);
		const ASN1_TIME *t = X509_CRL_get0_lastUpdate(crl);
		STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
		int64_t v[2] = { 0, rev != NULL ? sk_X509_REVOKED_num(rev) : 0 };
		struct tm tm;
		size_t k;

		if (t != NULL && ASN1_TIME_to_tm(t, &tm) == 1)
			v[0] = (int64_t)timegm(&tm);
		for (k = 0; k < sizeof(v); k++) {
			h ^= ((const uint8_t *)v)[k];
			h *= 1099511628211ULL;
		}
	}
	return h ^ (uint64_t)n;
}

/* The earliest notAfter of a chain (0 if one cannot be read). */
static time_t
chain_not_after(STACK_OF(X509) *chain)
{
	time_t min = 0;
	int i;

	for (i = 0; i < sk_X509_num(chain); i++) {
		const ASN1_TIME *t = X509_get0_notAfter(sk_X509_value(chain,
		    i));
		struct tm tm;
		time_t v;

		if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
			return 0;
		v = timegm(&tm);
		if (min == 0 || v < min)
			min = v;
	}
	return min;
}

/* A copy of the cached chain of signer, or NULL. */
static STACK_OF(X509) *
chain_cache_get(struct govca_chain_cache *c, const uint8_t key[32],
    const void *store, STACK_OF(X509_CRL) *crls, uint64_t crl_id, time_t now)
{
	STACK_OF(X509) *chain = NULL;
	size_t i;

	(void)pthread_mutex_lock(&c->lock);
	for (i = 0; i < GOVCA_CHAIN_CACHE_SIZE; i++) {
		struct chain_ent *e = &c->e[i];

		if (e->chain == NULL || memcmp(e->key, key, 32) != 0)
			continue;
		if (e->crls == (const void *)crls && e->crl_id == crl_id &&
		    e->store == store && now < e->until)
			chain = X509_chain_up_ref(e->chain);
		break;
	}
	if (chain != NULL)
		c->hits++;
	else
		c->misses++;
	(void)pthread_mutex_unlock(&c->lock);
	return chain;
}

static void
chain_cache_put(struct govca_chain_cache *c, const uint8_t key[32],
    const void *store, STACK_OF(X509_CRL) *crls, uint64_t crl_id, time_t now,
    STACK_OF(X509) *chain)
{
	time_t until = now + GOVCA_CHAIN_CACHE_TTL, na = chain_not_after(chain);
	STACK_OF(X509) *copy;
	struct chain_ent *e = NULL;
	size_t i;

	if (na == 0 || na <= now)
		return;
	if (na < until)
		until = na;
	if ((copy = X509_chain_up_ref(chain)) == NULL)
		return;
	(void)pthread_mutex_lock(&c->lock);
	for (i = 0; i < GOVCA_CHAIN_CACHE_SIZE && e == NULL; i++)
		if (c->e[i].chain != NULL && memcmp(c->e[i].key, key, 32) == 0)
			e = &c->e[i];
	if (e == NULL) {
		e = &c->e[c->next];
		c->next = (c->next + 1) % GOVCA_CHAIN_CACHE_SIZE;
	}
	sk_X509_pop_free(e->chain, X509_free);
	memcpy(e->key, key, 32);
	e->crls = crls;
	e->store = store;
	e->crl_id = crl_id;
	e->until = until;
	e->chain = copy;
	(void)pthread_mutex_unlock(&c->lock);
}

static int
verify_chain(X509 *signer, STACK_OF(X509) *untrusted,
    const struct govca_cms_verify_opts *opts, time_t at,
    STACK_OF(X509) **chain_r, int *err_r)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509_VERIFY_PARAM *param;
	int ok = 0;

	*chain_r = NULL;
	*err_r = X509_V_ERR_UNSPECIFIED;
	if (ctx == NULL || !X509_STORE_CTX_init(ctx, opts->store, signer,
	    untrusted))
		goto out;
	X509_STORE_CTX_set_default(ctx, "smime_sign");
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SMIME_SIGN);
	param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_auth_level(param, CMS_AUTH_LEVEL);
	if (at != 0)
		X509_VERIFY_PARAM_set_time(param, at);
	if (opts->crls != NULL) {
		X509_STORE_CTX_set0_crls(ctx, opts->crls);
		X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK);
	}
	ok = X509_verify_cert(ctx) > 0;
	*err_r = X509_STORE_CTX_get_error(ctx);
	if (ok)
		*chain_r = X509_STORE_CTX_get1_chain(ctx);
out:
	X509_STORE_CTX_free(ctx);
	return ok;
}

/*
 * Verify one DER SignedData.  content is the detached content (NULL for
 * opaque signed data, whose content goes to res->content).
 */
static void
verify_der(const uint8_t *der, size_t der_len, const struct smime_span *content,
    const struct govca_cms_verify_opts *opts, struct govca_cms_result *res)
{
	const unsigned char *p = der;
	CMS_ContentInfo *cms;
	STACK_OF(CMS_SignerInfo) *sis;
	CMS_SignerInfo *si;
	STACK_OF(X509) *certs = NULL, *chain = NULL;
	X509 *signer = NULL;
	BIO *dcont = NULL, *out = NULL;
	const char *why = NULL;
	char *odata;
	long olen;
	int err, r, use_cache = opts->cache != NULL && opts->at == 0;
	uint8_t ckey[32];
	uint64_t crl_id = 0;
	time_t now = 0;

	cms = cms_parse(p, der_len, opts->cache);
	if (cms == NULL) {
		set_result(res, GOVCA_CMS_FAIL, "malformed CMS", ssl_reason());
		goto out;
	}
	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
		set_result(res, GOVCA_CMS_FAIL, "CMS is not SignedData", NULL);
		goto out;
	}
	if ((content != NULL) != (CMS_is_detached(cms) == 1)) {
		set_result(res, GOVCA_CMS_FAIL, content != NULL ?
		    "signature is not detached" : "no signed content", NULL);
		goto out;
	}
	sis = CMS_get0_SignerInfos(cms);
	if (sis == NULL || sk_CMS_SignerInfo_num(sis) != 1) {
		set_result(res, GOVCA_CMS_FAIL, "need exactly one signer",
		    NULL);
		goto out;
	}
	si = sk_CMS_SignerInfo_value(sis, 0);
	res->signing_time = signing_time(si);
	if (CMS_set1_signers_certs(cms, NULL, 0) <= 0) {
		set_result(res, GOVCA_CMS_FAIL,
		    "signer certificate not in the message", NULL);
		goto out;
	}
	CMS_SignerInfo_get0_algs(si, NULL, &signer, NULL, NULL);
	if (signer == NULL) {
		set_result(res, GOVCA_CMS_FAIL,
		    "signer certificate not in the message", NULL);
		goto out;
	}
	X509_up_ref(signer);
	res->signer = signer;
	collect_emails(signer, res);
	res->cert_class = cert_class(signer);
	if (!digest_ok(si)) {
		set_result(res, GOVCA_CMS_FAIL,
		    "weak or unknown digest algorithm", NULL);
		goto out;
	}
	if (EVP_PKEY_get_security_bits(X509_get0_pubkey(signer)) <
	    CMS_MIN_SECURITY_BITS) {
		set_result(res, GOVCA_CMS_FAIL, "signer key too weak", NULL);
		goto out;
	}

	if (content != NULL) {
		/* A null filter in front of the memory BIO: OpenSSL 3.0's
		 * CMS_verify copies a bare memory BIO into a new one that it
		 * leaks when the digest set-up fails (hostile input). */
		dcont = BIO_new(BIO_f_null());
		if (dcont != NULL)
			BIO_push(dcont, BIO_new_mem_buf(content->p,
			    (int)content->len));
	} else
		out = BIO_new(BIO_s_mem());
	ERR_clear_error();
	if (!CMS_verify(cms, NULL, NULL, dcont, out,
	    CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY)) {
		set_result(res, GOVCA_CMS_FAIL, "bad signature", ssl_reason());
		goto out;
	}
	if (out != NULL) {
		olen = BIO_get_mem_data(out, &odata);
		if (olen < 0 || smime_canon_crlf((const uint8_t *)odata,
		    (size_t)olen, &res->content) < 0) {
			set_result(res, GOVCA_CMS_FAIL,
			    "signed content too large", NULL);
			goto out;
		}
	}
	certs = CMS_get1_certs(cms);
	if (opts->store == NULL) {
		set_result(res, GOVCA_CMS_FAIL, "no trusted roots given", NULL);
		goto out;
	}
	if (use_cache) {
		unsigned int klen = 0;

		now = time(NULL);
		crl_id = crls_id(opts->crls);
		use_cache = X509_digest(signer, EVP_sha256(), ckey, &klen) ==
		    1 && klen == sizeof(ckey);
		if (use_cache)
			chain = chain_cache_get(opts->cache, ckey,
			    opts->store, opts->crls, crl_id, now);
	}
	if (chain != NULL) {
		/* verified before, against these CRLs, still valid */
	} else if (verify_chain(signer, certs, opts, opts->at, &chain, &err)) {
		if (use_cache)
			chain_cache_put(opts->cache, ckey, opts->store,
			    opts->crls, crl_id, now, chain);
	} else {
		/* SECURITY: signingTime is the signer's claim; accepting it
		 * for an expired certificate is the caller's choice. */
		if (err == X509_V_ERR_CERT_HAS_EXPIRED &&
		    (opts->flags & GOVCA_CMS_VERIFY_SIGNING_TIME) &&
		    res->signing_time != 0 &&
		    (opts->at == 0 || res->signing_time <= opts->at) &&
		    res->signing_time <= time(NULL) &&
		    verify_chain(signer, certs, opts, res->signing_time, &chain,
		    &err)) {
			/* valid at signing time */
		} else {
			set_result(res, GOVCA_CMS_FAIL, err ==
			    X509_V_ERR_CERT_REVOKED ? "certificate revoked" :
			    "certificate not trusted",
			    err == X509_V_ERR_CERT_REVOKED ? NULL :
			    X509_verify_cert_error_string(err));
			goto out;
		}
	}
	if (!check_ess(si, chain)) {
		set_result(res, GOVCA_CMS_FAIL,
		    "signingCertificate attribute does not match the signer",
		    NULL);
		goto out;
	}
	if (opts->revoked != NULL) {
		r = opts->revoked(signer, opts->revoked_ctx, &why);
		if (r != 0) {
			set_result(res, GOVCA_CMS_FAIL, r > 0 ?
			    "certificate revoked" :
			    "revocation status unavailable",
			    r > 0 ? why : NULL);
			goto out;
		}
	}
	if (content != NULL && buf_append(&res->content, content->p,
	    content->len) < 0) {
		set_result(res, GOVCA_CMS_FAIL, "signed content too large",
		    NULL);
		goto out;
	}
	set_result(res, GOVCA_CMS_PASS, "good signature", NULL);
out:
	ERR_clear_error();
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(chain, X509_free);
	BIO_free_all(dcont);
	BIO_free(out);
	CMS_ContentInfo_free(cms);
}

/* Decode a base64 entity body; the entity must say base64. */
static int
decode_part(const struct smime_entity *e, size_t max, struct buf *der,
    const char **error_r)
{
	struct buf cte;
	size_t count;
	int r;

	buf_init(&cte, SMIME_MAX_FIELD);
	r = smime_header_get(e, "Content-Transfer-Encoding", &cte, &count);
	if (r < 0 || count != 1 || str_casecmp(buf_str(&cte), "base64") != 0) {
		buf_free(&cte);
		*error_r = "S/MIME part is not base64";
		return -1;
	}
	buf_free(&cte);
	der->max = max;
	return smime_base64_decode(e->body, e->body_len, der, error_r);
}

static int
is_pkcs7(const struct smime_ctype *ct, const char *what)
{
	char x[64];

	snprintf(x, sizeof(x), "x-%s", what);
	return strcmp(ct->type, "application") == 0 &&
	    (strcmp(ct->subtype, what) == 0 || strcmp(ct->subtype, x) == 0);
}

static void
check_from(const struct smime_entity *e, struct govca_cms_result *res,
    unsigned int flags)
{
	struct buf v;
	size_t count, n, i;

	buf_init(&v, SMIME_MAX_FIELD);
	if (smime_header_get(e, "From", &v, &count) < 0 || count != 1 ||
	    smime_address_parse(buf_str(&v), res->from, sizeof(res->from),
	    &n) < 0 || n != 1) {
		res->from[0] = '\0';
		buf_free(&v);
		return;
	}
	buf_free(&v);
	if (flags & GOVCA_CMS_VERIFY_NO_FROM)
		return;
	for (i = 0; i < res->n_emails; i++) {
		if (smime_address_equal(res->from, res->emails[i]))
			res->from_matches = 1;
	}
}

/*
 * 0 if the header block alone shows there is no signature to check (no
 * Content-Type, or one that is neither multipart/signed nor pkcs7-mime),
 * so the body of ordinary mail is not canonicalised and scanned; 1 when
 * the whole message must be looked at (signed, or anything odd, which the
 * full path then judges).
 */
static int
header_says_signed(const uint8_t *msg, size_t len)
{
	struct buf canon, ctv;
	struct smime_entity e;
	struct smime_ctype ct;
	const char *err;
	size_t i, hlen = len, count = 0;
	int r = 1;

	for (i = 0; i + 1 < len; i++)
		if (msg[i] == '\n' && (msg[i + 1] == '\n' || (msg[i + 1] ==
		    '\r' && i + 2 < len && msg[i + 2] == '\n'))) {
			hlen = i + (msg[i + 1] == '\n' ? 2 : 3);
			break;
		}
	buf_init(&canon, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&ctv, SMIME_MAX_FIELD);
	if (smime_canon_crlf(msg, hlen, &canon) == 0 &&
	    smime_entity_split(canon.data, canon.len, &e, &err) == 0 &&
	    smime_header_get(&e, "Content-Type", &ctv, &count) == 0) {
		if (count == 0)
			r = 0;
		else if (count == 1 && smime_ctype_parse(buf_str(&ctv), &ct,
		    &err) == 0 && !(strcmp(ct.type, "multipart") == 0 &&
		    strcmp(ct.subtype, "signed") == 0) &&
		    !is_pkcs7(&ct, "pkcs7-mime"))
			r = 0;
	}
	buf_free(&canon);
	buf_free(&ctv);
	return r;
}

int
govca_cms_verify(const uint8_t *msg, size_t len,
    const struct govca_cms_verify_opts *opts, struct govca_cms_result *res,
    const char **error_r)
{
	struct buf canon, ctv, der;
	struct smime_entity e, sigpart;
	struct smime_ctype ct, sct;
	struct smime_span parts[2];
	size_t count, n;
	int ret = -1;

	buf_init(&canon, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&ctv, SMIME_MAX_FIELD);
	buf_init(&der, GOVCA_CMS_MAX_DER);
	res->status = GOVCA_CMS_NEUTRAL;
	if (opts == NULL) {
		*error_r = "no verification options";
		goto malformed;
	}
	if (len <= GOVCA_CMS_MAX_MESSAGE && !header_says_signed(msg, len)) {
		set_result(res, GOVCA_CMS_NEUTRAL, "not signed", NULL);
		ret = 0;
		goto out;
	}
	if (len > GOVCA_CMS_MAX_MESSAGE ||
	    smime_canon_crlf(msg, len, &canon) < 0) {
		*error_r = "message too large";
		goto malformed;
	}
	if (smime_entity_split(canon.data, canon.len, &e, error_r) < 0)
		goto malformed;
	if (smime_header_get(&e, "Content-Type", &ctv, &count) < 0) {
		*error_r = "Content-Type too long";
		goto malformed;
	}
	if (count == 0) {
		set_result(res, GOVCA_CMS_NEUTRAL, "not signed", NULL);
		ret = 0;
		goto out;
	}
	if (smime_ctype_parse(buf_str(&ctv), &ct, error_r) < 0)
		goto malformed;
	if (count > 1) {
		/* SECURITY: a reader could pick the other one. */
		res->status = GOVCA_CMS_FAIL;
		*error_r = "more than one Content-Type";
		goto malformed;
	}
	if (strcmp(ct.type, "multipart") == 0 &&
	    strcmp(ct.subtype, "signed") == 0) {
		if (strcmp(ct.protocol, "application/pkcs7-signature") != 0 &&
		    strcmp(ct.protocol, "application/x-pkcs7-signature") != 0) {
			set_result(res, GOVCA_CMS_NEUTRAL,
			    "multipart/signed of another protocol", NULL);
			ret = 0;
			goto out;
		}
		res->status = GOVCA_CMS_FAIL;
		if (!ct.has_boundary) {
			*error_r = "multipart without boundary";
			goto malformed;
		}
		if (smime_multipart_split(e.body, e.body_len, ct.boundary,
		    parts, 2, &n, error_r) < 0)
			goto malformed;
		if (n != 2) {
			*error_r = "multipart/signed needs two parts";
			goto malformed;
		}
		if (parts[1].len > GOVCA_CMS_MAX_SIGNATURE) {
			*error_r = "signature part too large";
			goto malformed;
		}
		if (smime_entity_split(parts[1].p, parts[1].len, &sigpart,
		    error_r) < 0 ||
		    smime_header_get(&sigpart, "Content-Type", &ctv,
		    &count) < 0 || count != 1 ||
		    smime_ctype_parse(buf_str(&ctv), &sct, error_r) < 0 ||
		    !is_pkcs7(&sct, "pkcs7-signature")) {
			*error_r = "second part is not a pkcs7-signature";
			goto malformed;
		}
		if (decode_part(&sigpart, GOVCA_CMS_MAX_SIGNATURE, &der,
		    error_r) < 0)
			goto malformed;
		verify_der(der.data, der.len, &parts[0], opts, res);
	} else if (is_pkcs7(&ct, "pkcs7-mime")) {
		if (strcmp(ct.smime_type, "enveloped-data") == 0 ||
		    strcmp(ct.smime_type, "authenveloped-data") == 0) {
			set_result(res, GOVCA_CMS_NEUTRAL,
			    "encrypted: decrypt first", NULL);
			ret = 0;
			goto out;
		}
		if (ct.smime_type[0] != '\0' &&
		    strcmp(ct.smime_type, "signed-data") != 0) {
			set_result(res, GOVCA_CMS_NEUTRAL, "not signed", NULL);
			ret = 0;
			goto out;
		}
		res->opaque = 1;
		if (decode_part(&e, GOVCA_CMS_MAX_DER, &der, error_r) < 0) {
			res->status = GOVCA_CMS_FAIL;
			goto malformed;
		}
		verify_der(der.data, der.len, NULL, opts, res);
	} else {
		set_result(res, GOVCA_CMS_NEUTRAL, "not signed", NULL);
		ret = 0;
		goto out;
	}
	check_from(&e, res, opts->flags);
	ret = 0;
	goto out;
malformed:
	set_result(res, res->status, "malformed message", *error_r);
out:
	buf_free(&canon);
	buf_free(&ctv);
	buf_free(&der);
	return ret;
}

/* -------------------------------------------------- encrypt/decrypt */

struct split_ctx {
	struct buf *content;	/* Content-* fields */
	struct buf *outer;	/* everything else but MIME-Version */
};

static int
split_field(const uint8_t *f, size_t len, void *arg)
{
	struct split_ctx *c = arg;
	static const char mv[] = "mime-version:";
	size_t i;

	if (smime_header_is_content(f, len))
		return c->content == NULL ? 0 :
		    buf_append(c->content, f, len);
	if (len >= sizeof(mv) - 1) {
		for (i = 0; i < sizeof(mv) - 1; i++) {
			uint8_t ch = f[i];

			if (ch >= 'A' && ch <= 'Z')
				ch += 'a' - 'A';
			if (ch != (uint8_t)mv[i])
				break;
		}
		if (i == sizeof(mv) - 1)
			return 0;
	}
	return buf_append(c->outer, f, len);
}

int
govca_cms_encrypt(X509 *const *recipients, size_t n, const uint8_t *msg,
    size_t len, struct buf *out, const char **error_r)
{
	struct buf canon, inner, outer, b64;
	struct split_ctx sc;
	struct smime_entity e;
	STACK_OF(X509) *rs = NULL;
	CMS_ContentInfo *cms = NULL;
	BIO *in = NULL;
	size_t i;
	int ret = -1;

	buf_init(&canon, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&inner, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&outer, SMIME_MAX_HEADER_BYTES);
	buf_init(&b64, BUF_UNBOUNDED);
	if (n == 0 || n > GOVCA_CMS_MAX_RECIPIENTS) {
		*error_r = "need 1 to GOVCA_CMS_MAX_RECIPIENTS recipients";
		goto out;
	}
	if (len > GOVCA_CMS_MAX_MESSAGE ||
	    smime_canon_crlf(msg, len, &canon) < 0) {
		*error_r = "message too large";
		goto out;
	}
	if (smime_entity_split(canon.data, canon.len, &e, error_r) < 0)
		goto out;
	sc.content = &inner;
	sc.outer = &outer;
	if (smime_header_each(&e, split_field, &sc) < 0 ||
	    buf_append(&inner, "\r\n", 2) < 0 ||
	    buf_append(&inner, e.body, e.body_len) < 0) {
		*error_r = "message too large";
		goto out;
	}
	rs = sk_X509_new_null();
	for (i = 0; i < n; i++) {
		if (recipients[i] == NULL) {
			*error_r = "NULL recipient";
			goto out;
		}
		sk_X509_push(rs, recipients[i]);
	}
	in = BIO_new_mem_buf(inner.data, (int)inner.len);
	cms = CMS_encrypt(rs, in, EVP_aes_256_cbc(), CMS_BINARY);
	if (cms == NULL || cms_to_base64(cms, &b64) < 0) {
		*error_r = "CMS encryption failed (unsupported recipient key?)";
		goto out;
	}
	if (buf_append(out, outer.data, outer.len) < 0 ||
	    buf_append_str(out, "MIME-Version: 1.0\r\n"
	    "Content-Type: application/pkcs7-mime; smime-type=enveloped-data;"
	    "\r\n name=\"smime.p7m\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; filename=\"smime.p7m\"\r\n"
	    "Content-Description: S/MIME Encrypted Message\r\n\r\n") < 0 ||
	    buf_append(out, b64.data, b64.len) < 0) {
		*error_r = "encrypted message too large";
		goto out;
	}
	ret = 0;
out:
	ERR_clear_error();
	BIO_free(in);
	CMS_ContentInfo_free(cms);
	sk_X509_free(rs);	/* the certificates stay the caller's */
	buf_free(&canon);
	inner.secret = 1;
	buf_free(&inner);
	buf_free(&outer);
	buf_free(&b64);
	return ret;
}

int
govca_cms_decrypt(const struct govca_cms_identity *id, const uint8_t *msg,
    size_t len, unsigned int flags, struct buf *out, const char **error_r)
{
	struct buf canon, ctv, der, outer, inner;
	struct split_ctx sc;
	struct smime_entity e;
	struct smime_ctype ct;
	const unsigned char *p;
	CMS_ContentInfo *cms = NULL;
	BIO *bout = NULL;
	char *odata;
	long olen;
	size_t count;
	int nid, ret = -1;

	buf_init(&canon, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&ctv, SMIME_MAX_FIELD);
	buf_init(&der, GOVCA_CMS_MAX_DER);
	buf_init(&outer, SMIME_MAX_HEADER_BYTES);
	buf_init(&inner, GOVCA_CMS_MAX_MESSAGE);
	inner.secret = 1;
	if (len > GOVCA_CMS_MAX_MESSAGE ||
	    smime_canon_crlf(msg, len, &canon) < 0) {
		*error_r = "message too large";
		goto out;
	}
	if (smime_entity_split(canon.data, canon.len, &e, error_r) < 0)
		goto out;
	if (smime_header_get(&e, "Content-Type", &ctv, &count) < 0 ||
	    count != 1 || smime_ctype_parse(buf_str(&ctv), &ct, error_r) < 0 ||
	    !is_pkcs7(&ct, "pkcs7-mime") || (ct.smime_type[0] != '\0' &&
	    strcmp(ct.smime_type, "enveloped-data") != 0 &&
	    strcmp(ct.smime_type, "authenveloped-data") != 0)) {
		*error_r = "not an S/MIME enveloped-data message";
		goto out;
	}
	if (decode_part(&e, GOVCA_CMS_MAX_DER, &der, error_r) < 0)
		goto out;
	p = der.data;
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)der.len);
	if (cms == NULL) {
		*error_r = "malformed CMS";
		goto out;
	}
	nid = OBJ_obj2nid(CMS_get0_type(cms));
	if (nid != NID_pkcs7_enveloped &&
	    nid != NID_id_smime_ct_authEnvelopedData) {
		*error_r = "CMS is not EnvelopedData";
		goto out;
	}
	/* The plaintext: a BIO that wipes its memory when freed. */
	bout = BIO_new(BIO_s_secmem());
	if (bout == NULL || !CMS_decrypt(cms, id->key, id->cert, NULL, bout,
	    CMS_BINARY)) {
		*error_r = "cannot decrypt (not a recipient, or damaged)";
		goto out;
	}
	olen = BIO_get_mem_data(bout, &odata);
	if (olen < 0 || smime_canon_crlf((const uint8_t *)odata, (size_t)olen,
	    &inner) < 0) {
		*error_r = "decrypted content too large";
		goto out;
	}
	if (!(flags & GOVCA_CMS_DECRYPT_ENTITY)) {
		sc.content = NULL;
		sc.outer = &outer;
		if (smime_header_each(&e, split_field, &sc) < 0 ||
		    buf_append(out, outer.data, outer.len) < 0 ||
		    buf_append_str(out, "MIME-Version: 1.0\r\n") < 0) {
			*error_r = "message too large";
			goto out;
		}
	}
	if (buf_append(out, inner.data, inner.len) < 0) {
		*error_r = "message too large";
		goto out;
	}
	ret = 0;
out:
	ERR_clear_error();
	BIO_free(bout);
	CMS_ContentInfo_free(cms);
	buf_free(&canon);
	buf_free(&ctv);
	buf_free(&der);
	buf_free(&outer);
	buf_free(&inner);
	return ret;
}
