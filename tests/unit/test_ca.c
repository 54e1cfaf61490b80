/*
 * test_ca.c - unit tests of libgovca's core: names, CSR checks (hostile
 * requests), the four S/MIME profiles, validity limits, revocation and
 * CRL, OCSP answers, the audit chain under tampering, and mailbox/kv.
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "buf.h"
#include "govca.h"
#include "kv.h"
#include "xmalloc.h"

#define USCC_OK "91350100M000100Y43"
#define USCC_BAD "91350100M000100Y44"
#define RESIDENT_ID "11010519491231002X"

static char tmpdir[256];
static char cadir[300];
static struct govca *ca;

static const struct govca_settings settings = {
	.base_url = "http://127.0.0.1:2080",
	.validity_days = GOVCA_VALIDITY_DEFAULT_DAYS,
	.key_type = GOVCA_KEY_P256,
	.crl_days = 7,
	.name = "Test",
};

/* ---- helpers ------------------------------------------------------------ */

static EVP_PKEY *
keygen(const char *alg, const char *param, size_t bits)
{
	if (strcmp(alg, "RSA") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
	if (strcmp(alg, "EC") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", param);
	return EVP_PKEY_Q_keygen(NULL, NULL, alg);
}

static EVP_PKEY *
dsa_key(void)
{
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL);
	EVP_PKEY *params = NULL, *key = NULL;
	EVP_PKEY_CTX *kctx;

	assert_non_null(pctx);
	assert_int_equal(EVP_PKEY_paramgen_init(pctx), 1);
	EVP_PKEY_CTX_set_dsa_paramgen_bits(pctx, 2048);
	assert_int_equal(EVP_PKEY_paramgen(pctx, &params), 1);
	kctx = EVP_PKEY_CTX_new(params, NULL);
	assert_int_equal(EVP_PKEY_keygen_init(kctx), 1);
	assert_int_equal(EVP_PKEY_keygen(kctx, &key), 1);
	EVP_PKEY_CTX_free(kctx);
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(params);
	return key;
}

/* A DER CSR for key; *len_r its length (caller frees). */
static uint8_t *
make_csr(EVP_PKEY *key, size_t *len_r)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	unsigned char *der = NULL;
	uint8_t *copy;
	int len;

	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"Mallory, admin@evil.example", -1, -1, 0);
	X509_REQ_set_subject_name(req, n);
	X509_REQ_set_pubkey(req, key);
	assert_true(X509_REQ_sign(req, key,
	    EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ? NULL :
	    EVP_sha256()) > 0);
	len = i2d_X509_REQ(req, &der);
	assert_true(len > 0);
	copy = xmemdup(der, (size_t)len);
	*len_r = (size_t)len;
	OPENSSL_free(der);
	X509_NAME_free(n);
	X509_REQ_free(req);
	return copy;
}

static uint8_t *
p256_csr(size_t *len_r)
{
	EVP_PKEY *k = keygen("EC", "P-256", 0);
	uint8_t *csr = make_csr(k, len_r);

	EVP_PKEY_free(k);
	return csr;
}

static X509 *
der_cert(const struct govca_issued *iss)
{
	const unsigned char *p = iss->der;
	X509 *x = d2i_X509(NULL, &p, (long)iss->der_len);

	assert_non_null(x);
	return x;
}

static char *
subject_text(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *mem, *s;
	long n;

	X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
	    XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
	n = BIO_get_mem_data(b, &mem);
	s = xstrndup(mem, (size_t)n);
	BIO_free(b);
	return s;
}

static char *
ext_text(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);
	BIO *b;
	char *mem, *s;
	long n;

	if (i < 0)
		return xstrdup("");
	b = BIO_new(BIO_s_mem());
	X509V3_EXT_print(b, X509_get_ext(x, i), 0, 0);
	n = BIO_get_mem_data(b, &mem);
	s = xstrndup(mem, (size_t)n);
	BIO_free(b);
	return s;
}

static int
ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static int
count_cb(const struct govca_cert *c, void *ctx)
{
	(*(size_t *)ctx)++;
	return 0;
}

static size_t
cert_count(void)
{
	const char *err;
	size_t n = 0;

	assert_int_equal(govca_cert_list(ca, NULL, count_cb, &n, &err), 0);
	return n;
}

static size_t
audit_lines(void)
{
	char *p = xasprintf("%s/audit.log", cadir), line[8192];
	FILE *f = fopen(p, "r");
	size_t n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		n++;
	fclose(f);
	free(p);
	return n;
}

static int
setup(void **state)
{
	const char *err = NULL;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/govca-unit-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(cadir, sizeof(cadir), "%s/ca", tmpdir);
	if (govca_init(cadir, &settings, "unit pass", GOVCA_KEY_P256,
	    &err) != 0)
		fail_msg("init: %s", err);
	if (govca_open(cadir, &settings, "unit pass", GOVCA_OPEN_KEYS, &ca,
	    &err) != 0)
		fail_msg("open: %s", err);
	return 0;
}

static int
teardown(void **state)
{
	char *cmd;

	(void)state;
	govca_close(ca);
	cmd = xasprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "# cleanup failed\n");
	free(cmd);
	return 0;
}

/* ---- names ------------------------------------------------------------- */

static void
test_names(void **state)
{
	static const char *profiles[] = { "official", "department",
	    "legal-person", "citizen" };
	static const char *reasons[] = { "keyCompromise", "affiliationChanged",
	    "superseded", "cessationOfOperation", "unspecified" };
	enum govca_profile p;
	enum govca_reason r;
	enum govca_key_type k;
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++) {
		assert_int_equal(govca_profile_parse(profiles[i], &p), 0);
		assert_string_equal(govca_profile_name(p), profiles[i]);
	}
	assert_int_equal(govca_profile_parse("Citizen", &p), -1);
	assert_int_equal(govca_profile_parse("", &p), -1);
	for (i = 0; i < 5; i++) {
		assert_int_equal(govca_reason_parse(reasons[i], &r), 0);
		assert_string_equal(govca_reason_name(r), reasons[i]);
	}
	assert_int_equal(govca_reason_parse("because", &r), -1);
	assert_int_equal(govca_key_type_parse("rsa3072", &k), 0);
	assert_int_equal(k, GOVCA_KEY_RSA3072);
	assert_int_equal(govca_key_type_parse("dsa", &k), -1);
	assert_string_equal(govca_profile_policy(GOVCA_PROFILE_OFFICIAL, 0),
	    "2.23.140.1.5.3.3");
	assert_string_equal(govca_profile_policy(GOVCA_PROFILE_CITIZEN, 1),
	    "2.23.140.1.5.1.3");
}

/* ---- CSR checks ---------------------------------------------------------- */

enum csr_kind {
	CSR_P256, CSR_P384, CSR_RSA2048, CSR_RSA1024, CSR_DSA, CSR_K256,
	CSR_ED25519, CSR_TRUNCATED, CSR_BAD_SIG, CSR_EMPTY, CSR_GARBAGE_MAX,
	CSR_OVERSIZE, CSR_PEM, CSR_TRAILING, CSR_GARBAGE_MAX_1,
};

static const struct {
	enum csr_kind kind;
	int ok;
	const char *why;	/* substring of the error */
} csr_cases[] = {
	{ CSR_P256, 1, NULL },
	{ CSR_P384, 1, NULL },
	{ CSR_RSA2048, 1, NULL },
	{ CSR_PEM, 1, NULL },
	{ CSR_RSA1024, 0, "shorter than 2048" },
	{ CSR_DSA, 0, "unsupported key type" },
	{ CSR_K256, 0, "unsupported curve" },
	{ CSR_ED25519, 0, "unsupported key type" },
	{ CSR_TRUNCATED, 0, "not a PKCS#10" },
	{ CSR_BAD_SIG, 0, "proof of possession" },
	{ CSR_EMPTY, 0, "empty" },
	{ CSR_GARBAGE_MAX_1, 0, "not a PKCS#10" },
	{ CSR_GARBAGE_MAX, 0, "not a PKCS#10" },
	{ CSR_OVERSIZE, 0, "larger than" },
	{ CSR_TRAILING, 0, "not a PKCS#10" },
};

static uint8_t *
csr_for(enum csr_kind kind, size_t *len_r)
{
	EVP_PKEY *k = NULL;
	uint8_t *csr;
	BIO *b;
	X509_REQ *req;
	const unsigned char *p;
	char *mem;
	long n;

	switch (kind) {
	case CSR_P256:
		return p256_csr(len_r);
	case CSR_P384:
		k = keygen("EC", "P-384", 0);
		break;
	case CSR_RSA2048:
		k = keygen("RSA", NULL, 2048);
		break;
	case CSR_RSA1024:
		k = keygen("RSA", NULL, 1024);
		break;
	case CSR_DSA:
		k = dsa_key();
		break;
	case CSR_K256:
		k = keygen("EC", "secp256k1", 0);
		break;
	case CSR_ED25519:
		k = keygen("ED25519", NULL, 0);
		break;
	case CSR_TRUNCATED:
		csr = p256_csr(len_r);
		*len_r /= 2;
		return csr;
	case CSR_BAD_SIG:
		csr = p256_csr(len_r);
		csr[*len_r - 5] ^= 0x01;	/* inside the signature */
		return csr;
	case CSR_EMPTY:
		*len_r = 0;
		return xmalloc(1);
	case CSR_GARBAGE_MAX:
		*len_r = GOVCA_CSR_MAX;
		csr = xmalloc(*len_r);
		memset(csr, 0x30, *len_r);
		return csr;
	case CSR_GARBAGE_MAX_1:
		*len_r = GOVCA_CSR_MAX - 1;
		csr = xmalloc(*len_r);
		memset(csr, 0x30, *len_r);
		return csr;
	case CSR_OVERSIZE:
		*len_r = GOVCA_CSR_MAX + 1;
		csr = xmalloc(*len_r);
		memset(csr, 0x30, *len_r);
		return csr;
	case CSR_TRAILING:
		csr = p256_csr(len_r);
		csr = xreallocarray(csr, *len_r + 1, 1);
		csr[(*len_r)++] = 0;
		return csr;
	case CSR_PEM:
		csr = p256_csr(len_r);
		p = csr;
		req = d2i_X509_REQ(NULL, &p, (long)*len_r);
		b = BIO_new(BIO_s_mem());
		PEM_write_bio_X509_REQ(b, req);
		n = BIO_get_mem_data(b, &mem);
		free(csr);
		csr = xmemdup(mem, (size_t)n);
		*len_r = (size_t)n;
		BIO_free(b);
		X509_REQ_free(req);
		return csr;
	}
	assert_non_null(k);
	csr = make_csr(k, len_r);
	EVP_PKEY_free(k);
	return csr;
}

static void
test_csr_checks(void **state)
{
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(csr_cases) / sizeof(csr_cases[0]); i++) {
		const char *err = NULL;
		uint8_t *csr = csr_for(csr_cases[i].kind, &len);
		int ret = govca_csr_check(csr, len, &err);

		if (csr_cases[i].ok && ret != 0)
			fail_msg("case %zu refused: %s", i, err);
		if (!csr_cases[i].ok) {
			if (ret == 0)
				fail_msg("case %zu accepted", i);
			if (strstr(err, csr_cases[i].why) == NULL)
				fail_msg("case %zu: \"%s\" lacks \"%s\"", i,
				    err, csr_cases[i].why);
		}
		free(csr);
	}
}

/* Hostile CSRs issue nothing and audit nothing. */
static void
test_csr_issue_nothing(void **state)
{
	struct govca_holder h = { .address = "a@x.example",
	    .profile = GOVCA_PROFILE_CITIZEN, .unverified = 1 };
	struct govca_issued iss;
	size_t i, len, before = cert_count(), lines = audit_lines();

	(void)state;
	for (i = 0; i < sizeof(csr_cases) / sizeof(csr_cases[0]); i++) {
		const char *err;
		uint8_t *csr;

		if (csr_cases[i].ok)
			continue;
		csr = csr_for(csr_cases[i].kind, &len);
		assert_int_equal(govca_issue_csr(ca, &h, csr, len, 0, &iss,
		    &err), -1);
		free(csr);
	}
	assert_int_equal(cert_count(), before);
	assert_int_equal(audit_lines(), lines);
}

/* ---- profiles ------------------------------------------------------------ */

static const struct {
	struct govca_holder h;
	const char *policy;
	const char *subject[6];		/* substrings of the subject */
	const char *absent;		/* must not be in the DER */
	const char *san;
} profile_cases[] = {
	{ { .address = "li.ming@city.gov.example",
	    .profile = GOVCA_PROFILE_OFFICIAL, .display_name = "Li Ming",
	    .organisation = "Housing Bureau", .org_id = "CN-SH",
	    .title = "Director" },
	  "2.23.140.1.5.3.3",
	  { "C = CN", "O = Housing Bureau", "organizationIdentifier = \"GOVCN+SH\"",
	    "GN = Ming", "SN = Li", "title = Director" }, NULL,
	  "email:li.ming@city.gov.example" },
	{ { .address = "housing@city.gov.example",
	    .profile = GOVCA_PROFILE_DEPARTMENT,
	    .organisation = "Housing Bureau" },
	  "2.23.140.1.5.2.3",
	  { "C = CN", "O = Housing Bureau", "organizationIdentifier = GOVCN",
	    "CN = Housing Bureau" }, NULL,
	  "email:housing@city.gov.example" },
	{ { .address = "acme@city.gov.example",
	    .profile = GOVCA_PROFILE_LEGAL_PERSON,
	    .organisation = "ACME Trading", .org_id = USCC_OK },
	  "2.23.140.1.5.2.3",
	  { "C = CN", "O = ACME Trading",
	    "organizationIdentifier = NTRCN-" USCC_OK, "CN = ACME Trading" },
	  NULL, "email:acme@city.gov.example" },
	{ { .address = "zhang@city.gov.example",
	    .profile = GOVCA_PROFILE_CITIZEN,
	    .display_name = "\xe5\xbc\xa0\xe4\xbc\x9f",
	    .resident_id = RESIDENT_ID },
	  "2.23.140.1.5.4.3",
	  { "GN = \xe4\xbc\x9f", "SN = \xe5\xbc\xa0", "serialNumber = " },
	  RESIDENT_ID, "email:zhang@city.gov.example" },
	/* 欧阳娜娜: the compound surname 欧阳 */
	{ { .address = "ouyang@city.gov.example",
	    .profile = GOVCA_PROFILE_CITIZEN,
	    .display_name = "\xe6\xac\xa7\xe9\x98\xb3\xe5\xa8\x9c"
	    "\xe5\xa8\x9c", .resident_id = RESIDENT_ID },
	  "2.23.140.1.5.4.3",
	  { "GN = \xe5\xa8\x9c\xe5\xa8\x9c, ",
	    "SN = \xe6\xac\xa7\xe9\x98\xb3, " }, NULL,
	  "email:ouyang@city.gov.example" },
	/* 諸葛亮 (traditional): 諸葛 + 亮 */
	{ { .address = "zhuge@city.gov.example",
	    .profile = GOVCA_PROFILE_CITIZEN,
	    .display_name = "\xe8\xab\xb8\xe8\x91\x9b\xe4\xba\xae",
	    .resident_id = RESIDENT_ID },
	  "2.23.140.1.5.4.3",
	  { "GN = \xe4\xba\xae, ", "SN = \xe8\xab\xb8\xe8\x91\x9b, " },
	  NULL, "email:zhuge@city.gov.example" },
	/* 司马 alone: no given name after a compound surname, so 司 + 马 */
	{ { .address = "sima@city.gov.example",
	    .profile = GOVCA_PROFILE_CITIZEN,
	    .display_name = "\xe5\x8f\xb8\xe9\xa9\xac",
	    .resident_id = RESIDENT_ID },
	  "2.23.140.1.5.4.3",
	  { "GN = \xe9\xa9\xac, ", "SN = \xe5\x8f\xb8, " },
	  NULL, "email:sima@city.gov.example" },
	{ { .address = "\xe7\x8e\x8b@city.gov.example",
	    .profile = GOVCA_PROFILE_CITIZEN, .unverified = 1 },
	  "2.23.140.1.5.1.3",
	  { "CN = \xe7\x8e\x8b@city.gov.example" }, NULL,
	  "SmtpUTF8Mailbox" },
};

static void
test_profiles(void **state)
{
	size_t i, j, len;

	(void)state;
	for (i = 0; i < sizeof(profile_cases) / sizeof(profile_cases[0]);
	    i++) {
		struct govca_issued iss;
		const ASN1_INTEGER *sn;
		const char *err = NULL;
		char *subj, *s;
		uint8_t *csr = p256_csr(&len);
		X509 *x;
		int days, secs;

		if (govca_issue_csr(ca, &profile_cases[i].h, csr, len, 0, &iss,
		    &err) != 0)
			fail_msg("case %zu: %s", i, err);
		free(csr);
		x = der_cert(&iss);
		subj = subject_text(x);
		for (j = 0; j < 6 && profile_cases[i].subject[j] != NULL; j++)
			if (strstr(subj, profile_cases[i].subject[j]) == NULL)
				fail_msg("case %zu: subject \"%s\" lacks \"%s\"",
				    i, subj, profile_cases[i].subject[j]);
		free(subj);
		s = ext_text(x, NID_certificate_policies);
		assert_non_null(strstr(s, profile_cases[i].policy));
		free(s);
		s = ext_text(x, NID_ext_key_usage);
		assert_string_equal(s, "E-mail Protection");
		free(s);
		s = ext_text(x, NID_key_usage);
		assert_string_equal(s, "Digital Signature, Key Agreement");
		free(s);
		assert_true(ext_critical(x, NID_key_usage));
		s = ext_text(x, NID_subject_alt_name);
		assert_non_null(strstr(s, profile_cases[i].san));
		free(s);
		s = ext_text(x, NID_crl_distribution_points);
		assert_non_null(strstr(s,
		    "URI:http://127.0.0.1:2080/crl/issuing.crl"));
		free(s);
		s = ext_text(x, NID_info_access);
		assert_non_null(strstr(s,
		    "CA Issuers - URI:http://127.0.0.1:2080/ca/issuing.crt"));
		assert_non_null(strstr(s, "OCSP - URI:http://127.0.0.1:2080/ocsp"));
		free(s);
		assert_true(X509_get_ext_by_NID(x, NID_subject_key_identifier,
		    -1) >= 0);
		assert_true(X509_get_ext_by_NID(x,
		    NID_authority_key_identifier, -1) >= 0);
		/* 16 random bytes, positive. */
		sn = X509_get0_serialNumber(x);
		assert_int_equal(ASN1_STRING_length(sn), GOVCA_SERIAL_LEN);
		assert_int_equal(ASN1_STRING_get0_data(sn)[0] & 0x80, 0);
		assert_int_equal(strlen(iss.serial), 2 * GOVCA_SERIAL_LEN);
		/* Default validity 730 days (less one second). */
		assert_int_equal(ASN1_TIME_diff(&days, &secs,
		    X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
		assert_int_equal(days, GOVCA_VALIDITY_DEFAULT_DAYS - 1);
		assert_int_equal(X509_get_signature_nid(x),
		    NID_ecdsa_with_SHA256);
		if (profile_cases[i].absent != NULL)
			assert_null(memmem(iss.der, iss.der_len,
			    profile_cases[i].absent,
			    strlen(profile_cases[i].absent)));
		X509_free(x);
		govca_issued_free(&iss);
	}
}

/* Bad holder data and validity: refused, nothing recorded. */
static void
test_profile_refusals(void **state)
{
	static const struct {
		struct govca_holder h;
		unsigned days;
		const char *why;
	} cases[] = {
		{ { .address = "acme@x.example",
		    .profile = GOVCA_PROFILE_LEGAL_PERSON,
		    .organisation = "ACME", .org_id = USCC_BAD }, 0,
		  "check character" },
		{ { .address = "acme@x.example",
		    .profile = GOVCA_PROFILE_LEGAL_PERSON,
		    .organisation = "ACME", .org_id = "123" }, 0,
		  "Unified Social Credit Code" },
		{ { .address = "c@x.example", .profile = GOVCA_PROFILE_CITIZEN,
		    .display_name = "Wang Fang",
		    .resident_id = "110105194912310021" }, 0, "MOD 11-2" },
		{ { .address = "o@x.example",
		    .profile = GOVCA_PROFILE_OFFICIAL,
		    .display_name = "Wang Fang" }, 0, "department" },
		{ { .address = "o@x.example",
		    .profile = GOVCA_PROFILE_OFFICIAL, .organisation = "Dept",
		    .display_name = "X" }, 0, "split" },
		/* One Latin word is not split by letters ("Li" is no L + i). */
		{ { .address = "o@x.example",
		    .profile = GOVCA_PROFILE_OFFICIAL, .organisation = "Dept",
		    .display_name = "Li" }, 0, "split" },
		{ { .address = "o@x.example",
		    .profile = GOVCA_PROFILE_OFFICIAL, .organisation = "Dept",
		    .display_name = "\xc3\x89lodie" }, 0, "split" },
		{ { .address = "o@x.example",
		    .profile = GOVCA_PROFILE_OFFICIAL, .organisation = "Dept",
		    .display_name = "A B", .org_id = "SHANGHAI" }, 0,
		  "subdivision" },
		{ { .address = "no-at-sign", .profile = GOVCA_PROFILE_CITIZEN,
		    .unverified = 1 }, 0, "local@domain" },
		{ { .address = "a@\xe4\xbe.example",
		    .profile = GOVCA_PROFILE_CITIZEN, .unverified = 1 }, 0,
		  "internationalized domain" },
		{ { .address = "a b@x.example",
		    .profile = GOVCA_PROFILE_CITIZEN, .unverified = 1 }, 0,
		  "forbidden" },
		{ { .address = "c@x.example", .profile = GOVCA_PROFILE_CITIZEN,
		    .unverified = 1 }, GOVCA_VALIDITY_MAX_DAYS + 1, "824" },
		{ { .address = "c@x.example", .profile = GOVCA_PROFILE_SERVER },
		  0, "profile" },
	};
	size_t i, len, before = cert_count(), lines = audit_lines();

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct govca_issued iss;
		const char *err = NULL;
		uint8_t *csr = p256_csr(&len);

		if (govca_issue_csr(ca, &cases[i].h, csr, len, cases[i].days,
		    &iss, &err) == 0)
			fail_msg("case %zu issued", i);
		if (strstr(err, cases[i].why) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err,
			    cases[i].why);
		free(csr);
	}
	assert_int_equal(cert_count(), before);
	assert_int_equal(audit_lines(), lines);
}

/* Validity N-1, N accepted; legacy code accepted with the flag. */
static void
test_validity_and_legacy(void **state)
{
	struct govca_holder h = { .address = "v@x.example",
	    .profile = GOVCA_PROFILE_CITIZEN, .unverified = 1 };
	struct govca_holder lp = { .address = "old@x.example",
	    .profile = GOVCA_PROFILE_LEGAL_PERSON, .organisation = "Old Co",
	    .org_id = USCC_BAD, .legacy_code = 1 };
	unsigned d[] = { GOVCA_VALIDITY_MAX_DAYS - 1, GOVCA_VALIDITY_MAX_DAYS,
	    1 };
	struct govca_issued iss;
	const char *err;
	size_t i, len;
	uint8_t *csr;
	X509 *x;
	int days, secs;

	(void)state;
	for (i = 0; i < 3; i++) {
		csr = p256_csr(&len);
		assert_int_equal(govca_issue_csr(ca, &h, csr, len, d[i], &iss,
		    &err), 0);
		x = der_cert(&iss);
		ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x),
		    X509_get0_notAfter(x));
		assert_int_equal(days, (int)d[i] - 1);
		X509_free(x);
		govca_issued_free(&iss);
		free(csr);
	}
	csr = p256_csr(&len);
	assert_int_equal(govca_issue_csr(ca, &lp, csr, len, 0, &iss, &err), 0);
	govca_issued_free(&iss);
	free(csr);
}

/* RSA keys: keyEncipherment; --generate writes a PKCS#12 that opens. */
static void
test_generate_p12(void **state)
{
	struct govca_holder h = { .address = "rsa@x.example",
	    .profile = GOVCA_PROFILE_DEPARTMENT, .organisation = "Dept" };
	char password[GOVCA_P12_PASSWORD_LEN + 1];
	struct govca_issued iss;
	STACK_OF(X509) *chain = NULL;
	const unsigned char *p;
	const char *err;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	PKCS12 *p12;
	struct buf out;
	char *s;

	(void)state;
	buf_init(&out, 1024 * 1024);
	assert_int_equal(govca_issue_generate(ca, &h, GOVCA_KEY_RSA2048, 0,
	    &out, password, &iss, &err), 0);
	assert_int_equal(strlen(password), GOVCA_P12_PASSWORD_LEN);
	p = out.data;
	p12 = d2i_PKCS12(NULL, &p, (long)out.len);
	assert_non_null(p12);
	assert_int_equal(PKCS12_verify_mac(p12, password, -1), 1);
	assert_int_equal(PKCS12_verify_mac(p12, "wrong", -1), 0);
	assert_int_equal(PKCS12_parse(p12, password, &key, &cert, &chain), 1);
	assert_int_equal(EVP_PKEY_get_bits(key), 2048);
	assert_int_equal(X509_check_private_key(cert, key), 1);
	assert_int_equal(sk_X509_num(chain), 2);
	s = ext_text(cert, NID_key_usage);
	assert_string_equal(s, "Digital Signature, Key Encipherment");
	free(s);
	EVP_PKEY_free(key);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	PKCS12_free(p12);
	buf_free(&out);
	govca_issued_free(&iss);
}

/* A batch: recorded, audited, durable after the commit; the chain holds. */
static void
test_batch(void **state)
{
	struct govca_holder h = { .address = "batch@x.example",
	    .profile = GOVCA_PROFILE_CITIZEN, .unverified = 1 };
	size_t i, len, before = cert_count(), lines = audit_lines();
	char *path = xasprintf("%s/audit.log", cadir), *head, hb[128];
	struct govca_issued iss;
	const char *err;
	uint64_t n;
	FILE *f;

	(void)state;
	govca_batch_begin(ca);
	for (i = 0; i < 5; i++) {
		uint8_t *csr = p256_csr(&len);

		assert_int_equal(govca_issue_csr(ca, &h, csr, len, 0, &iss,
		    &err), 0);
		govca_issued_free(&iss);
		free(csr);
	}
	assert_int_equal(govca_batch_commit(ca, &err), 0);
	assert_int_equal(cert_count(), before + 5);
	assert_int_equal(audit_lines(), lines + 5);
	assert_int_equal(govca_audit_verify(path, NULL, NULL, &n, &err), 0);
	/* The head names the last record. */
	head = xasprintf("%s.head", path);
	f = fopen(head, "r");
	assert_non_null(f);
	assert_non_null(fgets(hb, sizeof(hb), f));
	fclose(f);
	assert_int_equal(strtoull(hb, NULL, 10), n);
	free(head);
	free(path);
}

/* ---- revocation, CRL, OCSP ------------------------------------------- */

static OCSP_RESPONSE *
ocsp_ask(const char *serial_hex, int with_nonce, OCSP_REQUEST **req_r)
{
	OCSP_REQUEST *req = OCSP_REQUEST_new();
	OCSP_RESPONSE *resp;
	X509 *issuing;
	BIGNUM *bn = NULL;
	ASN1_INTEGER *sn;
	OCSP_CERTID *id;
	unsigned char *der = NULL;
	const unsigned char *p;
	const char *err;
	struct buf out;
	char *path = xasprintf("%s/issuing.crt", cadir);
	FILE *f = fopen(path, "r");
	int len;

	issuing = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	free(path);
	BN_hex2bn(&bn, serial_hex);
	sn = BN_to_ASN1_INTEGER(bn, NULL);
	id = OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(issuing),
	    X509_get0_pubkey_bitstr(issuing), sn);
	OCSP_request_add0_id(req, id);
	if (with_nonce)
		OCSP_request_add1_nonce(req, NULL, -1);
	len = i2d_OCSP_REQUEST(req, &der);
	buf_init(&out, 65536);
	assert_int_equal(govca_ocsp_respond(ca, der, (size_t)len, &out, &err),
	    0);
	p = out.data;
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)out.len);
	assert_non_null(resp);
	buf_free(&out);
	OPENSSL_free(der);
	BN_free(bn);
	ASN1_INTEGER_free(sn);
	X509_free(issuing);
	*req_r = req;
	return resp;
}

static int
ocsp_status(OCSP_RESPONSE *resp, OCSP_REQUEST *req, int *reason_r)
{
	OCSP_BASICRESP *bs = OCSP_response_get1_basic(resp);
	OCSP_SINGLERESP *single;
	int status;

	assert_non_null(bs);
	assert_int_equal(OCSP_check_nonce(req, bs) > 0, 1);
	single = OCSP_resp_get0(bs, 0);
	status = OCSP_single_get0_status(single, reason_r, NULL, NULL, NULL);
	OCSP_BASICRESP_free(bs);
	return status;
}

static void
test_revoke_crl_ocsp(void **state)
{
	struct govca_holder h = { .address = "r@x.example",
	    .profile = GOVCA_PROFILE_CITIZEN, .unverified = 1 };
	struct govca_issued iss;
	struct govca_cert c;
	OCSP_RESPONSE *resp;
	OCSP_REQUEST *req;
	const unsigned char *p;
	const char *err;
	uint8_t *csr, *crl_der;
	size_t len, crl_len;
	X509_CRL *crl;
	X509_REVOKED *rev = NULL;
	ASN1_INTEGER *sn;
	BIGNUM *bn = NULL;
	char *path;
	int reason, days, secs;

	(void)state;
	csr = p256_csr(&len);
	assert_int_equal(govca_issue_csr(ca, &h, csr, len, 0, &iss, &err), 0);
	free(csr);

	resp = ocsp_ask(iss.serial, 1, &req);
	assert_int_equal(OCSP_response_status(resp),
	    OCSP_RESPONSE_STATUS_SUCCESSFUL);
	assert_int_equal(ocsp_status(resp, req, &reason),
	    V_OCSP_CERTSTATUS_GOOD);
	OCSP_RESPONSE_free(resp);
	OCSP_REQUEST_free(req);

	assert_int_equal(govca_cert_current(ca, "R@X.example", &c, &err), 0);
	assert_string_equal(c.serial, iss.serial);
	govca_cert_free(&c);

	assert_int_equal(govca_revoke(ca, iss.serial,
	    GOVCA_REASON_KEY_COMPROMISE, &err), 0);
	assert_int_equal(govca_revoke(ca, iss.serial,
	    GOVCA_REASON_KEY_COMPROMISE, &err), -1);
	assert_non_null(strstr(err, "already revoked"));
	assert_int_equal(govca_revoke(ca, "00ff", GOVCA_REASON_SUPERSEDED,
	    &err), -1);
	assert_int_equal(govca_revoke(ca, "xyz", GOVCA_REASON_SUPERSEDED,
	    &err), -1);
	assert_int_equal(govca_cert_get(ca, iss.serial, &c, &err), 0);
	assert_int_equal(c.status, GOVCA_STATUS_REVOKED);
	assert_int_equal(c.reason, GOVCA_REASON_KEY_COMPROMISE);
	govca_cert_free(&c);
	assert_int_equal(govca_cert_current(ca, "r@x.example", &c, &err), -1);

	resp = ocsp_ask(iss.serial, 1, &req);
	assert_int_equal(ocsp_status(resp, req, &reason),
	    V_OCSP_CERTSTATUS_REVOKED);
	assert_int_equal(reason, GOVCA_REASON_KEY_COMPROMISE);
	OCSP_RESPONSE_free(resp);
	OCSP_REQUEST_free(req);

	resp = ocsp_ask("0123456789abcdef0123456789abcdef", 1, &req);
	assert_int_equal(ocsp_status(resp, req, &reason),
	    V_OCSP_CERTSTATUS_UNKNOWN);
	OCSP_RESPONSE_free(resp);
	OCSP_REQUEST_free(req);

	/* The CRL lists it, with its reason, nextUpdate 7 days ahead. */
	path = xasprintf("%s/issuing.crl", cadir);
	{
		FILE *f = fopen(path, "rb");
		struct buf b;
		uint8_t chunk[4096];
		size_t n;

		buf_init(&b, 1 << 20);
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			buf_append(&b, chunk, n);
		fclose(f);
		crl_len = b.len;
		crl_der = (uint8_t *)buf_steal(&b);
	}
	free(path);
	p = crl_der;
	crl = d2i_X509_CRL(NULL, &p, (long)crl_len);
	assert_non_null(crl);
	BN_hex2bn(&bn, iss.serial);
	sn = BN_to_ASN1_INTEGER(bn, NULL);
	assert_int_equal(X509_CRL_get0_by_serial(crl, &rev, sn), 1);
	ASN1_TIME_diff(&days, &secs, X509_CRL_get0_lastUpdate(crl),
	    X509_CRL_get0_nextUpdate(crl));
	assert_int_equal(days, 7);
	assert_int_equal(secs, 0);
	assert_true(X509_CRL_get_ext_by_NID(crl, NID_crl_number, -1) >= 0);
	assert_true(X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier,
	    -1) >= 0);
	BN_free(bn);
	ASN1_INTEGER_free(sn);
	X509_CRL_free(crl);
	free(crl_der);
	govca_issued_free(&iss);
}

static void
test_ocsp_malformed(void **state)
{
	static const struct {
		const uint8_t *data;
		size_t len;
	} cases[] = {
		{ (const uint8_t *)"", 0 },
		{ (const uint8_t *)"junk", 4 },
		{ (const uint8_t *)"\x30\x03\x30\x01\x00", 5 },
		{ (const uint8_t *)"\x30\x80", 2 },
		{ (const uint8_t *)"\x30\x02\x30\x00", 4 },	/* no requests */
	};
	OCSP_RESPONSE *resp;
	const unsigned char *p;
	const char *err;
	struct buf out;
	uint8_t *big;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf_init(&out, 65536);
		assert_int_equal(govca_ocsp_respond(ca, cases[i].data,
		    cases[i].len, &out, &err), 0);
		p = out.data;
		resp = d2i_OCSP_RESPONSE(NULL, &p, (long)out.len);
		assert_non_null(resp);
		assert_int_equal(OCSP_response_status(resp),
		    OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
		OCSP_RESPONSE_free(resp);
		buf_free(&out);
	}
	/* One byte over the limit. */
	big = xcalloc(GOVCA_OCSP_REQUEST_MAX + 1, 1);
	buf_init(&out, 65536);
	assert_int_equal(govca_ocsp_respond(ca, big,
	    GOVCA_OCSP_REQUEST_MAX + 1, &out, &err), 0);
	p = out.data;
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)out.len);
	assert_int_equal(OCSP_response_status(resp),
	    OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
	OCSP_RESPONSE_free(resp);
	buf_free(&out);
	free(big);
}

/* An OCSP responder certificate close to its end is renewed on open. */
static void
test_ocsp_renewal(void **state)
{
	char *ipath = xasprintf("%s/issuing.key", cadir);
	char *cpath = xasprintf("%s/issuing.crt", cadir);
	char *opath = xasprintf("%s/ocsp.crt", cadir);
	char *kpath = xasprintf("%s/ocsp.key", cadir);
	EVP_PKEY *ikey, *okey;
	X509 *issuing, *old, *now;
	struct govca *ca2;
	const char *err;
	FILE *f;
	int days, secs;

	(void)state;
	f = fopen(ipath, "r");
	ikey = PEM_read_PrivateKey(f, NULL, NULL, (void *)"unit pass");
	fclose(f);
	f = fopen(cpath, "r");
	issuing = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(ikey);
	/* A responder certificate with 10 days left. */
	okey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	old = X509_new();
	X509_set_version(old, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(old), 4242);
	X509_set_issuer_name(old, X509_get_subject_name(issuing));
	X509_set_subject_name(old, X509_get_subject_name(issuing));
	X509_set_pubkey(old, okey);
	X509_gmtime_adj(X509_getm_notBefore(old), 0);
	X509_gmtime_adj(X509_getm_notAfter(old), 10 * 86400);
	assert_true(X509_sign(old, ikey, EVP_sha256()) > 0);
	f = fopen(opath, "w");
	PEM_write_X509(f, old);
	fclose(f);
	f = fopen(kpath, "w");
	PEM_write_PKCS8PrivateKey(f, okey, EVP_aes_256_cbc(), NULL, 0, NULL,
	    (void *)"unit pass");
	fclose(f);

	/* One environment handle per process (DB_REGISTER): reopen. */
	govca_close(ca);
	if (govca_open(cadir, &settings, "unit pass", GOVCA_OPEN_KEYS, &ca2,
	    &err) != 0)
		fail_msg("open: %s", err);
	ca = ca2;
	f = fopen(opath, "r");
	now = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(now);
	assert_int_not_equal(X509_cmp(now, old), 0);
	assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL,
	    X509_get0_notAfter(now)), 1);
	assert_true(days > GOVCA_OCSP_DAYS - 2);
	assert_true(X509_get_ext_by_NID(now, NID_id_pkix_OCSP_noCheck, -1) >=
	    0);
	X509_free(now);
	X509_free(old);
	X509_free(issuing);
	EVP_PKEY_free(ikey);
	EVP_PKEY_free(okey);
	free(ipath);
	free(cpath);
	free(opath);
	free(kpath);
}

/* ---- audit ------------------------------------------------------------- */

struct problems {
	uint64_t pos[16];
	size_t n;
};

static void
collect(uint64_t pos, const char *problem, void *ctx)
{
	struct problems *pr = ctx;

	if (pr->n < 16)
		pr->pos[pr->n++] = pos;
}

static char **
read_lines(const char *path, size_t *n_r)
{
	char **lines = NULL, buf[8192];
	size_t n = 0;
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	while (fgets(buf, sizeof(buf), f) != NULL) {
		lines = xreallocarray(lines, n + 1, sizeof(*lines));
		lines[n++] = xstrdup(buf);
	}
	fclose(f);
	*n_r = n;
	return lines;
}

static void
write_lines(const char *path, char **lines, size_t n)
{
	FILE *f = fopen(path, "w");
	size_t i;

	for (i = 0; i < n; i++)
		fputs(lines[i], f);
	fclose(f);
}

enum tamper { T_NONE, T_ALTER, T_DELETE, T_SWAP, T_TRUNCATE, T_GARBLE };

static void
test_audit_tamper(void **state)
{
	static const struct {
		enum tamper t;
		size_t at;		/* 0-based line */
		int ok;
		uint64_t first;		/* first position reported */
	} cases[] = {
		{ T_NONE, 0, 1, 0 },
		{ T_ALTER, 3, 0, 4 },
		{ T_ALTER, 0, 0, 1 },
		{ T_DELETE, 2, 0, 3 },
		{ T_SWAP, 4, 0, 5 },
		{ T_TRUNCATE, 9, 0, 10 },
		{ T_GARBLE, 6, 0, 7 },
	};
	char *path = xasprintf("%s/audit-test.log", tmpdir);
	char *head = xasprintf("%s.head", path);
	size_t c, i, n;

	(void)state;
	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct problems pr;
		const char *err;
		uint64_t records;
		char **lines, *tmp;

		unlink(path);
		unlink(head);
		for (i = 0; i < 10; i++) {
			char fields[64];

			snprintf(fields, sizeof(fields), "n=%zu who=unit", i);
			assert_int_equal(govca_audit_append(path, "test",
			    fields, &err), 0);
		}
		lines = read_lines(path, &n);
		assert_int_equal(n, 10);
		switch (cases[c].t) {
		case T_NONE:
			break;
		case T_ALTER:	/* one byte of the fields */
			lines[cases[c].at][strlen(lines[cases[c].at]) - 70] ^=
			    1;
			break;
		case T_DELETE:
			free(lines[cases[c].at]);
			memmove(lines + cases[c].at, lines + cases[c].at + 1,
			    (n - cases[c].at - 1) * sizeof(*lines));
			n--;
			break;
		case T_SWAP:
			tmp = lines[cases[c].at];
			lines[cases[c].at] = lines[cases[c].at + 1];
			lines[cases[c].at + 1] = tmp;
			break;
		case T_TRUNCATE:
			free(lines[--n]);
			break;
		case T_GARBLE:
			lines[cases[c].at][0] = 'x';
			break;
		}
		write_lines(path, lines, n);
		memset(&pr, 0, sizeof(pr));
		if (cases[c].ok) {
			assert_int_equal(govca_audit_verify(path, collect, &pr,
			    &records, &err), 0);
			assert_int_equal(records, 10);
			assert_int_equal(pr.n, 0);
		} else {
			assert_int_equal(govca_audit_verify(path, collect, &pr,
			    &records, &err), -1);
			assert_true(pr.n > 0);
			if (pr.pos[0] != cases[c].first)
				fail_msg("case %zu: first problem at %llu, "
				    "expected %llu", c,
				    (unsigned long long)pr.pos[0],
				    (unsigned long long)cases[c].first);
		}
		for (i = 0; i < n; i++)
			free(lines[i]);
		free(lines);
	}
	/* GOVCA_AUDIT_LINE_MAX: "1 TTTTTTTTTT t " is 15 bytes before the
	 * fields of a first record; N-1 and N fit, N+1 does not. */
	{
		static const struct {
			size_t len;
			int ok;
		} lim[] = {
			{ GOVCA_AUDIT_LINE_MAX - 15 - 1, 1 },
			{ GOVCA_AUDIT_LINE_MAX - 15, 1 },
			{ GOVCA_AUDIT_LINE_MAX - 15 + 1, 0 },
		};
		const char *err;
		uint64_t records;
		char *fields;

		for (i = 0; i < 3; i++) {
			unlink(path);
			unlink(head);
			fields = xmalloc(lim[i].len + 1);
			memset(fields, 'f', lim[i].len);
			fields[lim[i].len] = '\0';
			assert_int_equal(govca_audit_append(path, "t", fields,
			    &err), lim[i].ok ? 0 : -1);
			if (lim[i].ok)
				assert_int_equal(govca_audit_verify(path, NULL,
				    NULL, &records, &err), 0);
			free(fields);
		}
	}
	/* Line breaks in a record are refused. */
	{
		const char *err;

		assert_int_equal(govca_audit_append(path, "x", "a=1\nforged",
		    &err), -1);
		assert_int_equal(govca_audit_append(path, "two words", "a=1",
		    &err), -1);
	}
	free(path);
	free(head);
}

/* The CA's own log verifies after all the acts above. */
static void
test_audit_ca_log(void **state)
{
	char *path = xasprintf("%s/audit.log", cadir);
	const char *err;
	uint64_t n;

	(void)state;
	assert_int_equal(govca_audit_verify(path, NULL, NULL, &n, &err), 0);
	assert_true(n > 5);
	free(path);
}

/* ---- kv --------------------------------------------------------------- */

static int
kv_collect(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *ctx)
{
	struct buf *b = ctx;

	buf_append(b, key, klen);
	buf_append_byte(b, ',');
	return 0;
}

static void
test_kv(void **state)
{
	static const char *const tables[] = { "t1", "t2", NULL };
	char *dir = xasprintf("%s/kv", tmpdir);
	struct kv_env *env;
	struct kv_txn *txn;
	const char *err;
	uint8_t *val;
	size_t vlen;
	uint64_t count;
	struct buf b;

	(void)state;
	assert_int_equal(kv_open(dir, tables, KV_OPEN_CREATE, &env, &err), 0);
	assert_int_equal(kv_put(env, NULL, "t1", "b2", 2, "x", 1, 0), 0);
	assert_int_equal(kv_put(env, NULL, "t1", "a1", 2, "y", 1, 0), 0);
	assert_int_equal(kv_put(env, NULL, "t1", "b1", 2, "z", 1, 0), 0);
	assert_int_equal(kv_put(env, NULL, "t1", "b1", 2, "w", 1, KV_PUT_NEW),
	    KV_EEXISTS);
	assert_int_equal(kv_put(env, NULL, "t2", "n1", 2, "w", 1, KV_PUT_NEW),
	    0);
	assert_int_equal(kv_del(env, NULL, "t2", "n1", 2), 0);
	assert_int_equal(kv_put(env, NULL, "nope", "b1", 2, "w", 1, 0),
	    KV_EINVAL);
	assert_int_equal(kv_get(env, NULL, "t1", "b1", 2, &val, &vlen), 0);
	assert_int_equal(vlen, 1);
	assert_memory_equal(val, "z", 2);	/* NUL follows */
	free(val);
	assert_int_equal(kv_get(env, NULL, "t2", "b1", 2, &val, &vlen),
	    KV_ENOTFOUND);
	buf_init(&b, 1024);
	assert_int_equal(kv_iterate(env, NULL, "t1", "b", 1, kv_collect, &b),
	    0);
	assert_string_equal(buf_str(&b), "b1,b2,");
	buf_reset(&b);
	assert_int_equal(kv_iterate(env, NULL, "t1", NULL, 0, kv_collect, &b),
	    0);
	assert_string_equal(buf_str(&b), "a1,b1,b2,");
	/* An aborted transaction leaves nothing. */
	assert_int_equal(kv_txn_begin(env, &txn, &err), 0);
	assert_int_equal(kv_put(env, txn, "t2", "k", 1, "v", 1, 0), 0);
	kv_txn_abort(txn);
	assert_int_equal(kv_count(env, "t2", &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(kv_txn_begin(env, &txn, &err), 0);
	assert_int_equal(kv_put(env, txn, "t2", "k", 1, "v", 1, 0), 0);
	assert_int_equal(kv_del(env, txn, "t1", "a1", 2), 0);
	assert_int_equal(kv_txn_commit(txn, &err), 0);
	assert_int_equal(kv_count(env, "t2", &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(kv_del(env, NULL, "t1", "a1", 2), KV_ENOTFOUND);
	assert_int_equal(kv_maintain(env, &err), 0);
	kv_close(env);
	/* Reopen: the data is durable. */
	assert_int_equal(kv_open(dir, tables, 0, &env, &err), 0);
	assert_int_equal(kv_count(env, "t1", &count), 0);
	assert_int_equal(count, 2);
	kv_close(env);
	buf_free(&b);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_csr_checks),
		cmocka_unit_test(test_csr_issue_nothing),
		cmocka_unit_test(test_profiles),
		cmocka_unit_test(test_profile_refusals),
		cmocka_unit_test(test_validity_and_legacy),
		cmocka_unit_test(test_generate_p12),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_revoke_crl_ocsp),
		cmocka_unit_test(test_ocsp_malformed),
		cmocka_unit_test(test_ocsp_renewal),
		cmocka_unit_test(test_audit_tamper),
		cmocka_unit_test(test_audit_ca_log),
		cmocka_unit_test(test_kv),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("ca", tests, setup, teardown);
}
