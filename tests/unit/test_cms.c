/*
 * Unit tests for libgovca's S/MIME layer (ca/cms.c, ca/smime_mime.c):
 * sign/verify round trips for P-256, P-384 and RSA signers, tampering,
 * wrong From:, untrusted roots, purpose, revocation (callback and CRL),
 * expiry and signingTime, unsigned and opaque messages, encrypt/decrypt
 * for EC, RSA and several recipients, PKCS#12 and PEM identities, and
 * hostile MIME (no boundary, unclosed, 10,000 nested or sibling parts,
 * oversized headers, every truncation of a signed message).
 *
 * The PKI is made in memory at start-up with OpenSSL's API: a P-384 root,
 * a P-256 issuing CA, end-entity certificates with emailProtection and the
 * S/MIME BR policy OIDs, and a second, untrusted root.
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

#include <openssl/cms.h>
#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "govca_cms.h"
#include "smime_priv.h"

#define DAY	86400L

struct pki_cert {
	X509 *cert;
	EVP_PKEY *key;
};

static struct {
	struct pki_cert root, issuing, dept, dept384, cit, server, revoked;
	struct pki_cert other_root, other_ee;
	struct govca_cms_identity *id_dept, *id_dept384, *id_cit;
	struct govca_cms_identity *id_server, *id_revoked, *id_other;
	X509_STORE *store;
	X509_CRL *crl, *crl_empty;
	long serial;
} pki;

/* ------------------------------------------------------------ the PKI */

static EVP_PKEY *
mk_key(const char *type)
{
	EVP_PKEY *k;

	if (strcmp(type, "rsa") == 0)
		k = EVP_RSA_gen(2048);
	else
		k = EVP_EC_gen(type);
	assert_non_null(k);
	return k;
}

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	CONF *conf = NCONF_new(NULL);

	/* certificatePolicies wants a config database, even an empty one. */
	X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	X509V3_set_nconf(&ctx, conf);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	NCONF_free(conf);
	if (ext == NULL)
		ERR_print_errors_fp(stderr);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/*
 * kind: "root", "ca", or an end entity: "ee" (emailProtection) or "tls"
 * (serverAuth only).  email and policy only for end entities.
 */
static struct pki_cert
mk_cert(const char *cn, const char *keytype, const struct pki_cert *issuer,
    const char *kind, const char *email, const char *policy, long nb, long na)
{
	struct pki_cert c;
	X509_NAME *name;
	X509 *icert;
	EVP_PKEY *ikey;
	char san[300];
	const EVP_MD *md;

	c.key = mk_key(keytype);
	c.cert = X509_new();
	X509_set_version(c.cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c.cert), ++pki.serial);
	X509_gmtime_adj(X509_getm_notBefore(c.cert), nb);
	X509_gmtime_adj(X509_getm_notAfter(c.cert), na);
	name = X509_NAME_new();
	X509_NAME_add_entry_by_txt(name, "C", MBSTRING_ASC,
	    (const unsigned char *)"CN", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(c.cert, name);
	X509_NAME_free(name);
	X509_set_pubkey(c.cert, c.key);
	icert = issuer != NULL ? issuer->cert : c.cert;
	ikey = issuer != NULL ? issuer->key : c.key;
	X509_set_issuer_name(c.cert, X509_get_subject_name(icert));
	add_ext(c.cert, icert, NID_subject_key_identifier, "hash");
	if (issuer != NULL)
		add_ext(c.cert, icert, NID_authority_key_identifier, "keyid");
	if (strcmp(kind, "root") == 0 || strcmp(kind, "ca") == 0) {
		add_ext(c.cert, icert, NID_basic_constraints,
		    strcmp(kind, "root") == 0 ? "critical,CA:TRUE,pathlen:1" :
		    "critical,CA:TRUE,pathlen:0");
		add_ext(c.cert, icert, NID_key_usage,
		    "critical,keyCertSign,cRLSign");
	} else {
		add_ext(c.cert, icert, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(c.cert, icert, NID_key_usage,
		    strcmp(keytype, "rsa") == 0 ?
		    "critical,digitalSignature,keyEncipherment" :
		    "critical,digitalSignature,keyAgreement");
		add_ext(c.cert, icert, NID_ext_key_usage,
		    strcmp(kind, "tls") == 0 ? "serverAuth" :
		    "emailProtection");
		snprintf(san, sizeof(san), "email:%s", email);
		add_ext(c.cert, icert, NID_subject_alt_name, san);
		if (policy != NULL)
			add_ext(c.cert, icert, NID_certificate_policies,
			    policy);
	}
	md = EVP_PKEY_get_bits(ikey) > 256 &&
	    EVP_PKEY_get_base_id(ikey) == EVP_PKEY_EC ? EVP_sha384() :
	    EVP_sha256();
	assert_true(X509_sign(c.cert, ikey, md) > 0);
	return c;
}

static struct govca_cms_identity *
mk_identity(const struct pki_cert *c)
{
	struct govca_cms_identity *id;
	STACK_OF(X509) *chain = sk_X509_new_null();
	const char *err = NULL;

	sk_X509_push(chain, pki.issuing.cert);
	assert_int_equal(govca_cms_identity_new(c->cert, c->key, chain, &id,
	    &err), 0);
	sk_X509_free(chain);
	return id;
}

static X509_CRL *
mk_crl(const X509 *revoked)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t = ASN1_TIME_new();

	X509_CRL_set_version(crl, 1);
	X509_CRL_set_issuer_name(crl, X509_get_subject_name(pki.issuing.cert));
	X509_gmtime_adj(t, -DAY);
	X509_CRL_set1_lastUpdate(crl, t);
	X509_gmtime_adj(t, 7 * DAY);
	X509_CRL_set1_nextUpdate(crl, t);
	if (revoked != NULL) {
		X509_REVOKED *r = X509_REVOKED_new();

		ASN1_INTEGER *sn = ASN1_INTEGER_dup(
		    X509_get0_serialNumber(revoked));

		X509_REVOKED_set_serialNumber(r, sn);
		ASN1_INTEGER_free(sn);
		X509_gmtime_adj(t, -3600);
		X509_REVOKED_set_revocationDate(r, t);
		X509_CRL_add0_revoked(crl, r);
	}
	ASN1_TIME_free(t);
	X509_CRL_sort(crl);
	assert_true(X509_CRL_sign(crl, pki.issuing.key, EVP_sha256()) > 0);
	return crl;
}

static int
setup_pki(void **state)
{
	(void)state;
	pki.root = mk_cert("Test Root", "P-384", NULL, "root", NULL, NULL,
	    -DAY, 3650 * DAY);
	pki.issuing = mk_cert("Test Issuing", "P-256", &pki.root, "ca", NULL,
	    NULL, -DAY, 1000 * DAY);
	pki.dept = mk_cert("Water Dept", "P-256", &pki.issuing, "ee",
	    "dept@gov.example", "2.23.140.1.5.3.3", -DAY, 700 * DAY);
	pki.dept384 = mk_cert("Tax Dept", "P-384", &pki.issuing, "ee",
	    "tax@gov.example", "2.23.140.1.5.2.3", -DAY, 700 * DAY);
	pki.cit = mk_cert("Citizen", "rsa", &pki.issuing, "ee",
	    "citizen@city.example", "2.23.140.1.5.4.3", -DAY, 700 * DAY);
	pki.server = mk_cert("mail.example", "P-256", &pki.issuing, "tls",
	    "srv@gov.example", NULL, -DAY, 700 * DAY);
	pki.revoked = mk_cert("Gone", "P-256", &pki.issuing, "ee",
	    "gone@gov.example", "2.23.140.1.5.1.3", -DAY, 700 * DAY);
	pki.other_root = mk_cert("Evil Root", "P-256", NULL, "root", NULL,
	    NULL, -DAY, 3650 * DAY);
	pki.other_ee = mk_cert("Fake Dept", "P-256", &pki.other_root, "ee",
	    "dept@gov.example", "2.23.140.1.5.3.3", -DAY, 700 * DAY);
	pki.id_dept = mk_identity(&pki.dept);
	pki.id_dept384 = mk_identity(&pki.dept384);
	pki.id_cit = mk_identity(&pki.cit);
	pki.id_server = mk_identity(&pki.server);
	pki.id_revoked = mk_identity(&pki.revoked);
	pki.id_other = mk_identity(&pki.other_ee);
	pki.store = X509_STORE_new();
	X509_STORE_add_cert(pki.store, pki.root.cert);
	pki.crl = mk_crl(pki.revoked.cert);
	pki.crl_empty = mk_crl(NULL);
	return 0;
}

static void
free_cert(struct pki_cert *c)
{
	X509_free(c->cert);
	EVP_PKEY_free(c->key);
}

static int
teardown_pki(void **state)
{
	(void)state;
	govca_cms_identity_free(pki.id_dept);
	govca_cms_identity_free(pki.id_dept384);
	govca_cms_identity_free(pki.id_cit);
	govca_cms_identity_free(pki.id_server);
	govca_cms_identity_free(pki.id_revoked);
	govca_cms_identity_free(pki.id_other);
	free_cert(&pki.root);
	free_cert(&pki.issuing);
	free_cert(&pki.dept);
	free_cert(&pki.dept384);
	free_cert(&pki.cit);
	free_cert(&pki.server);
	free_cert(&pki.revoked);
	free_cert(&pki.other_root);
	free_cert(&pki.other_ee);
	X509_STORE_free(pki.store);
	X509_CRL_free(pki.crl);
	X509_CRL_free(pki.crl_empty);
	return 0;
}

/* ------------------------------------------------------------ helpers */

static const char notice_text[] =
    "各位市民：\n本月水费账单已生成，请于月底前缴纳。\n"
    "From the water department.\n.\nA line with trailing space \n";

/* A whole signed message from id, From: from. */
static void
make_signed(const struct govca_cms_identity *id, const char *from,
    enum smime_cte cte, struct buf *msg)
{
	struct buf entity, sig;
	struct smime_headers h;
	const char *err = NULL;

	buf_init(&entity, BUF_UNBOUNDED);
	buf_init(&sig, BUF_UNBOUNDED);
	assert_int_equal(smime_entity_text(NULL, cte,
	    (const uint8_t *)notice_text, strlen(notice_text), &entity, &err),
	    0);
	assert_int_equal(govca_cms_sign(id, entity.data, entity.len, &sig,
	    &err), 0);
	memset(&h, 0, sizeof(h));
	h.from = from;
	h.to = "citizen@city.example";
	h.subject = "水费通知 / Water bill";
	h.date = "Sat, 21 Nov 2026 10:00:00 +0800";
	h.message_id = "<notice-1@gov.example>";
	buf_init(msg, BUF_UNBOUNDED);
	assert_int_equal(smime_message_build(&h, sig.data, sig.len, msg, &err),
	    0);
	buf_free(&entity);
	buf_free(&sig);
}

static int
verify_msg(const uint8_t *p, size_t len, const struct govca_cms_verify_opts
    *o, struct govca_cms_result *res)
{
	struct govca_cms_verify_opts def;
	const char *err = NULL;

	if (o == NULL) {
		memset(&def, 0, sizeof(def));
		def.store = pki.store;
		o = &def;
	}
	govca_cms_result_init(res);
	return govca_cms_verify(p, len, o, res, &err);
}

/* Verify m with o: the status, and the reason when reason is not NULL. */
static void
expect_verdict(const struct buf *m, const struct govca_cms_verify_opts *o,
    int status, const char *reason)
{
	struct govca_cms_result res;

	assert_int_equal(verify_msg(m->data, m->len, o, &res), 0);
	assert_int_equal(res.status, status);
	if (reason != NULL)
		assert_string_equal(res.reason, reason);
	govca_cms_result_free(&res);
}

static int
verify_str(const char *s, struct govca_cms_result *res)
{
	return verify_msg((const uint8_t *)s, strlen(s), NULL, res);
}

/* Pointer to the first occurrence of needle in b (must exist). */
static uint8_t *
find(struct buf *b, const char *needle)
{
	uint8_t *p = memmem(b->data, b->len, needle, strlen(needle));

	assert_non_null(p);
	return p;
}

/* ------------------------------------------------------- sign/verify */

static void
test_roundtrip(void **state)
{
	static const struct {
		int who;	/* 0 dept P-256, 1 dept P-384, 2 citizen RSA */
		enum smime_cte cte;
		const char *from;
		const char *micalg;
		enum govca_cms_class cls;
	} cases[] = {
		{ 0, SMIME_CTE_BASE64, "Water <dept@gov.example>", "sha-256",
		    GOVCA_CMS_CLASS_OFFICIAL },
		{ 0, SMIME_CTE_QUOTED_PRINTABLE, "dept@gov.example", "sha-256",
		    GOVCA_CMS_CLASS_OFFICIAL },
		{ 1, SMIME_CTE_BASE64, "税务局 <tax@gov.example>", "sha-384",
		    GOVCA_CMS_CLASS_ORGANIZATION },
		{ 2, SMIME_CTE_QUOTED_PRINTABLE, "citizen@city.example",
		    "sha-256", GOVCA_CMS_CLASS_INDIVIDUAL },
	};
	const struct govca_cms_identity *ids[3] = { pki.id_dept,
	    pki.id_dept384, pki.id_cit };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct govca_cms_result res;
		struct buf msg;
		char mic[32];
		uint8_t *inner, *end;

		make_signed(ids[cases[i].who], cases[i].from, cases[i].cte,
		    &msg);
		snprintf(mic, sizeof(mic), "micalg=%s;", cases[i].micalg);
		find(&msg, mic);
		assert_string_equal(govca_cms_identity_micalg(
		    ids[cases[i].who]), cases[i].micalg);
		find(&msg, "protocol=\"application/pkcs7-signature\"");
		find(&msg, "Content-Type: application/pkcs7-signature; "
		    "name=\"smime.p7s\"");
		/* CRLF throughout: no bare LF anywhere. */
		for (size_t j = 0; j < msg.len; j++) {
			if (msg.data[j] == '\n')
				assert_int_equal(msg.data[j - 1], '\r');
		}
		assert_int_equal(verify_msg(msg.data, msg.len, NULL, &res), 0);
		assert_int_equal(res.status, GOVCA_CMS_PASS);
		assert_string_equal(res.reason, "good signature");
		assert_int_equal(res.cert_class, cases[i].cls);
		assert_int_equal(res.from_matches, 1);
		assert_int_equal(res.n_emails, 1);
		assert_non_null(res.signer);
		assert_true(res.signing_time > 0);
		assert_int_equal(res.opaque, 0);
		/* The content is the inner entity, byte for byte. */
		inner = find(&msg, "Content-Type: text/plain");
		end = find(&msg, "\r\n--govmail-") + 0;
		end = memmem(inner, msg.len - (size_t)(inner - msg.data),
		    "\r\n--govmail-", 12);
		assert_non_null(end);
		assert_int_equal(res.content.len, (size_t)(end - inner));
		assert_memory_equal(res.content.data, inner, res.content.len);
		govca_cms_result_free(&res);
		buf_free(&msg);
	}
}

/* The signed attributes are there: signingTime, SMIMECapabilities,
 * signingCertificateV2; the chain is included. */
static void
test_signed_attributes(void **state)
{
	struct buf msg, der;
	struct smime_entity e, sp;
	struct smime_ctype ct;
	struct smime_span parts[2];
	struct buf v;
	size_t n, count;
	const char *err = NULL;
	const unsigned char *p;
	CMS_ContentInfo *cms;
	CMS_SignerInfo *si;
	STACK_OF(X509) *certs;

	(void)state;
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &msg);
	buf_init(&v, SMIME_MAX_FIELD);
	buf_init(&der, BUF_UNBOUNDED);
	assert_int_equal(smime_entity_split(msg.data, msg.len, &e, &err), 0);
	assert_int_equal(smime_header_get(&e, "content-type", &v, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(smime_ctype_parse(buf_str(&v), &ct, &err), 0);
	assert_string_equal(ct.type, "multipart");
	assert_string_equal(ct.subtype, "signed");
	assert_int_equal(smime_multipart_split(e.body, e.body_len,
	    ct.boundary, parts, 2, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(smime_entity_split(parts[1].p, parts[1].len, &sp,
	    &err), 0);
	assert_int_equal(smime_base64_decode(sp.body, sp.body_len, &der, &err),
	    0);
	p = der.data;
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)der.len);
	assert_non_null(cms);
	assert_int_equal(CMS_is_detached(cms), 1);
	si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
	assert_true(CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime,
	    -1) >= 0);
	assert_true(CMS_signed_get_attr_by_NID(si, NID_SMIMECapabilities,
	    -1) >= 0);
	assert_true(CMS_signed_get_attr_by_NID(si,
	    NID_id_smime_aa_signingCertificateV2, -1) >= 0);
	certs = CMS_get1_certs(cms);
	assert_int_equal(sk_X509_num(certs), 2);	/* signer + issuing */
	sk_X509_pop_free(certs, X509_free);
	CMS_ContentInfo_free(cms);
	buf_free(&der);
	buf_free(&v);
	buf_free(&msg);
}

static void
test_tampered(void **state)
{
	struct govca_cms_result res;
	struct buf msg;
	uint8_t *p;

	(void)state;
	/* A changed body byte (base64 text of the inner part). */
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &msg);
	p = find(&msg, "Content-Transfer-Encoding: base64\r\n\r\n") + 37;
	*p = *p == 'A' ? 'B' : 'A';
	assert_int_equal(verify_msg(msg.data, msg.len, NULL, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_FAIL);
	assert_non_null(strstr(res.reason, "bad signature"));
	govca_cms_result_free(&res);
	buf_free(&msg);

	/* A changed header of the inner part. */
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &msg);
	p = find(&msg, "charset=utf-8");
	p[0] = 'C';
	expect_verdict(&msg, NULL, GOVCA_CMS_FAIL, NULL);
	buf_free(&msg);

	/* The signature itself damaged near its end (inside the ECDSA
	 * signature value): parses, but does not verify. */
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &msg);
	p = find(&msg, "\r\n--govmail-");
	p = memmem(p + 2, msg.len - (size_t)(p + 2 - msg.data), "--govmail-",
	    10);
	p = memmem(p + 10, msg.len - (size_t)(p + 10 - msg.data),
	    "\r\n--govmail-", 12);
	assert_non_null(p);
	p -= 10;
	*p = *p == 'A' ? 'B' : 'A';
	assert_int_equal(verify_msg(msg.data, msg.len, NULL, &res) == 0 ?
	    res.status : GOVCA_CMS_FAIL, GOVCA_CMS_FAIL);
	assert_int_not_equal(res.status, GOVCA_CMS_PASS);
	govca_cms_result_free(&res);
	buf_free(&msg);
}

static void
test_from(void **state)
{
	static const struct {
		const char *from;
		int match;
	} cases[] = {
		{ "dept@gov.example", 1 },
		{ "Water Dept <dept@gov.example>", 1 },
		{ "\"Water, Dept\" <dept@GOV.Example>", 1 },	/* domain case */
		{ "dept@gov.example (the water department)", 1 },
		{ "Dept@gov.example", 0 },		/* local part exact */
		{ "mayor@gov.example", 0 },
		{ "dept@gov.example.evil", 0 },
		{ "dept@gov.example, mayor@gov.example", 0 },	/* two */
		{ "\"dept@gov.example\" <mayor@gov.example>", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct govca_cms_result res;
		struct buf msg;

		make_signed(pki.id_dept, cases[i].from, SMIME_CTE_BASE64, &msg);
		assert_int_equal(verify_msg(msg.data, msg.len, NULL, &res), 0);
		assert_int_equal(res.status, GOVCA_CMS_PASS);
		if (res.from_matches != cases[i].match)
			fail_msg("From %s: from_matches %d", cases[i].from,
			    res.from_matches);
		govca_cms_result_free(&res);
		buf_free(&msg);
	}
}

/* Two From: fields are never a match, whichever one is right. */
static void
test_from_twice(void **state)
{
	struct govca_cms_result res;
	struct buf msg, two;

	(void)state;
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &msg);
	buf_init(&two, BUF_UNBOUNDED);
	buf_append_str(&two, "From: mayor@gov.example\r\n");
	buf_append(&two, msg.data, msg.len);
	assert_int_equal(verify_msg(two.data, two.len, NULL, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_PASS);
	assert_int_equal(res.from_matches, 0);
	govca_cms_result_free(&res);
	buf_free(&two);
	buf_free(&msg);
}

static void
test_untrusted_and_purpose(void **state)
{
	struct govca_cms_result res;
	struct buf msg;

	(void)state;
	/* Same address, certificate from a root we do not trust. */
	make_signed(pki.id_other, "dept@gov.example", SMIME_CTE_BASE64, &msg);
	assert_int_equal(verify_msg(msg.data, msg.len, NULL, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_FAIL);
	assert_non_null(strstr(res.reason, "not trusted"));
	assert_int_equal(res.from_matches, 1);	/* reported, not enforced */
	govca_cms_result_free(&res);
	buf_free(&msg);

	/* A TLS server certificate (serverAuth EKU) cannot sign mail. */
	make_signed(pki.id_server, "srv@gov.example", SMIME_CTE_BASE64, &msg);
	assert_int_equal(verify_msg(msg.data, msg.len, NULL, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_FAIL);
	assert_int_equal(res.cert_class, GOVCA_CMS_CLASS_NONE);
	govca_cms_result_free(&res);
	buf_free(&msg);
}

struct rev_ctx {
	int answer;
	int calls;
};

static int
rev_cb(X509 *cert, void *arg, const char **reason_r)
{
	struct rev_ctx *c = arg;

	c->calls++;
	if (X509_cmp(cert, pki.revoked.cert) == 0 || c->answer != 0) {
		*reason_r = "keyCompromise";
		return c->answer != 0 ? c->answer : 1;
	}
	return 0;
}

static void
test_revoked(void **state)
{
	struct govca_cms_verify_opts o;
	struct govca_cms_result res;
	STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
	struct rev_ctx rc = { 0, 0 };
	struct buf msg, good;

	(void)state;
	make_signed(pki.id_revoked, "gone@gov.example", SMIME_CTE_BASE64,
	    &msg);
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &good);
	memset(&o, 0, sizeof(o));
	o.store = pki.store;
	/* Without revocation information it passes. */
	assert_int_equal(verify_msg(msg.data, msg.len, &o, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_PASS);
	assert_int_equal(res.cert_class, GOVCA_CMS_CLASS_MAILBOX);
	govca_cms_result_free(&res);
	/* The callback says revoked. */
	o.revoked = rev_cb;
	o.revoked_ctx = &rc;
	assert_int_equal(verify_msg(msg.data, msg.len, &o, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_FAIL);
	assert_string_equal(res.reason, "certificate revoked: keyCompromise");
	assert_int_equal(rc.calls, 1);
	govca_cms_result_free(&res);
	/* The good one passes the same callback. */
	expect_verdict(&good, &o, GOVCA_CMS_PASS, NULL);
	/* Look-up failure: not a pass. */
	rc.answer = -1;
	expect_verdict(&good, &o, GOVCA_CMS_FAIL, "revocation status unavailable");
	/* A CRL listing it. */
	o.revoked = NULL;
	sk_X509_CRL_push(crls, pki.crl);
	o.crls = crls;
	expect_verdict(&msg, &o, GOVCA_CMS_FAIL, "certificate revoked");
	expect_verdict(&good, &o, GOVCA_CMS_PASS, NULL);
	/* A CRL that does not list it. */
	sk_X509_CRL_pop(crls);
	sk_X509_CRL_push(crls, pki.crl_empty);
	expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
	sk_X509_CRL_free(crls);
	buf_free(&msg);
	buf_free(&good);
}

/* The verified-chain cache: reused for a signer's next message, never
 * for another CRL set, and never instead of the message's own checks. */
static void
test_chain_cache(void **state)
{
	struct govca_cms_verify_opts o;
	struct govca_cms_result res;
	struct govca_chain_cache *cache = govca_chain_cache_new();
	STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
	struct buf msg, good;
	unsigned long hits, misses;
	uint8_t *p;

	(void)state;
	make_signed(pki.id_revoked, "gone@gov.example", SMIME_CTE_BASE64,
	    &msg);
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &good);
	memset(&o, 0, sizeof(o));
	o.store = pki.store;
	o.cache = cache;
	expect_verdict(&good, &o, GOVCA_CMS_PASS, NULL);
	assert_int_equal(verify_msg(good.data, good.len, &o, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_PASS);
	assert_int_equal(res.from_matches, 1);
	govca_cms_result_free(&res);
	govca_chain_cache_stats(cache, &hits, &misses);
	assert_int_equal(hits, 1);
	assert_int_equal(misses, 1);

	/* A cached signer's altered message still fails. */
	p = find(&good, "Content-Transfer-Encoding: base64\r\n\r\n") + 37;
	*p ^= 0x01;
	assert_int_equal(verify_msg(good.data, good.len, &o, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_FAIL);
	assert_non_null(strstr(res.reason, "bad signature"));
	govca_cms_result_free(&res);
	*p ^= 0x01;

	/* Cached against a CRL that does not list it... */
	sk_X509_CRL_push(crls, pki.crl_empty);
	o.crls = crls;
	expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
	expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
	/* ... the same stack, now holding the CRL that lists it: not used. */
	sk_X509_CRL_pop(crls);
	sk_X509_CRL_push(crls, pki.crl);
	expect_verdict(&msg, &o, GOVCA_CMS_FAIL, "certificate revoked");
	/* An explicit verification time bypasses the cache. */
	govca_chain_cache_stats(cache, &hits, &misses);
	o.crls = NULL;
	o.at = time(NULL);
	expect_verdict(&good, &o, GOVCA_CMS_PASS, NULL);
	{
		unsigned long h2, m2;

		govca_chain_cache_stats(cache, &h2, &m2);
		assert_int_equal(h2, hits);
		assert_int_equal(m2, misses);
	}
	/* Cleared: verified afresh. */
	o.at = 0;
	govca_chain_cache_clear(cache);
	expect_verdict(&good, &o, GOVCA_CMS_PASS, NULL);
	govca_chain_cache_stats(cache, &hits, &misses);
	assert_int_equal(hits, 2);
	assert_int_equal(misses, 4);
	sk_X509_CRL_free(crls);
	govca_chain_cache_free(cache);
	buf_free(&msg);
	buf_free(&good);
}

/* An opaque signed-data message around der (as test_weak). */
static void
opaque_msg(const unsigned char *der, size_t len, struct buf *msg)
{
	buf_init(msg, BUF_UNBOUNDED);
	buf_append_str(msg, "Content-Type: application/pkcs7-mime; "
	    "smime-type=signed-data\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	smime_base64_encode(der, len, msg);
}

/* The same verdict, and reason, with the cache as without it. */
static void
expect_same(const unsigned char *der, size_t len,
    struct govca_chain_cache *cache)
{
	struct govca_cms_verify_opts o;
	struct govca_cms_result a, b;
	struct buf msg;

	opaque_msg(der, len, &msg);
	memset(&o, 0, sizeof(o));
	o.store = pki.store;
	assert_int_equal(verify_msg(msg.data, msg.len, &o, &a), 0);
	o.cache = cache;
	assert_int_equal(verify_msg(msg.data, msg.len, &o, &b), 0);
	assert_int_equal(a.status, b.status);
	assert_string_equal(a.reason, b.reason);
	govca_cms_result_free(&a);
	govca_cms_result_free(&b);
	buf_free(&msg);
}

/* A DER SignedData of "cache" by the water department, with flags. */
static int
dept_der(unsigned int flags, unsigned char **der_r)
{
	static const char inner[] = "Content-Type: text/plain\r\n\r\ncache\r\n";
	STACK_OF(X509) *chain = sk_X509_new_null();
	BIO *in = BIO_new_mem_buf(inner, (int)strlen(inner));
	CMS_ContentInfo *cms;
	int n;

	sk_X509_push(chain, pki.issuing.cert);
	cms = CMS_sign(pki.dept.cert, pki.dept.key, chain, in,
	    CMS_BINARY | flags);
	assert_non_null(cms);
	*der_r = NULL;
	if (flags & CMS_STREAM) {
		BIO *out = BIO_new(BIO_s_mem());
		char *p;
		long len;

		(void)BIO_reset(in);
		assert_int_equal(i2d_CMS_bio_stream(out, cms, in, flags), 1);
		len = BIO_get_mem_data(out, &p);
		*der_r = OPENSSL_memdup(p, (size_t)len);
		n = (int)len;
		BIO_free(out);
	} else
		n = i2d_CMS_ContentInfo(cms, der_r);
	assert_true(n > 0);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	sk_X509_free(chain);
	return n;
}

/*
 * The parsed-certificate cache: a signer's next message reuses what its
 * certificates parsed to, and every message - damaged certificates, BER,
 * none at all - gets the verdict it gets without the cache.
 */
static void
test_cert_cache(void **state)
{
	struct govca_chain_cache *cache = govca_chain_cache_new();
	struct govca_cms_verify_opts o;
	unsigned char *der = NULL, *cder = NULL, *at;
	unsigned long hits, misses;
	struct buf msg;
	size_t i;
	int n, clen;

	(void)state;
	n = dept_der(0, &der);
	opaque_msg(der, (size_t)n, &msg);
	memset(&o, 0, sizeof(o));
	o.store = pki.store;
	o.cache = cache;
	expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
	govca_chain_cache_cert_stats(cache, &hits, &misses);
	assert_int_equal(hits, 0);
	assert_int_equal(misses, 2);	/* the signer and its issuer */
	expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
	govca_chain_cache_cert_stats(cache, &hits, &misses);
	assert_int_equal(hits, 2);
	assert_int_equal(misses, 2);
	buf_free(&msg);

	/* Damage anywhere in the signer's certificate: the same verdict. */
	clen = i2d_X509(pki.dept.cert, &cder);
	at = memmem(der, (size_t)n, cder, (size_t)clen);
	assert_non_null(at);
	for (i = 0; i < (size_t)clen; i += 7) {
		at[i] ^= 0x5a;
		expect_same(der, (size_t)n, cache);
		at[i] ^= 0x5a;
	}
	/* Or in the lengths of what wraps it. */
	for (i = 0; i < 16; i++) {
		der[i] ^= 0x01;
		expect_same(der, (size_t)n, cache);
		der[i] ^= 0x01;
	}
	expect_same(der, (size_t)n - 1, cache);
	OPENSSL_free(der);

	/* BER with indefinite lengths is parsed whole, as before. */
	n = dept_der(CMS_STREAM, &der);
	assert_int_equal(der[1], 0x80);
	opaque_msg(der, (size_t)n, &msg);
	expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
	buf_free(&msg);
	OPENSSL_free(der);

	/* No certificates in the message. */
	n = dept_der(CMS_NOCERTS, &der);
	opaque_msg(der, (size_t)n, &msg);
	expect_verdict(&msg, &o, GOVCA_CMS_FAIL,
	    "signer certificate not in the message");
	buf_free(&msg);
	OPENSSL_free(der);

	/* A signer certificate over GOVCA_CERT_CACHE_DER_MAX: verified, and
	 * parsed every time instead of kept. */
	{
		static const char inner[] = "Content-Type: text/plain\r\n\r\n"
		    "big\r\n";
		X509 *big = X509_dup(pki.dept.cert);
		ASN1_IA5STRING *cmt = ASN1_IA5STRING_new();
		char *fill = malloc(GOVCA_CERT_CACHE_DER_MAX + 1);
		BIO *in = BIO_new_mem_buf(inner, (int)strlen(inner));
		STACK_OF(X509) *chain = sk_X509_new_null();
		CMS_ContentInfo *cms;
		unsigned long h0, m0;

		memset(fill, 'x', GOVCA_CERT_CACHE_DER_MAX);
		fill[GOVCA_CERT_CACHE_DER_MAX] = '\0';
		assert_int_equal(ASN1_STRING_set(cmt, fill, -1), 1);
		assert_int_equal(X509_add1_ext_i2d(big, NID_netscape_comment,
		    cmt, 0, 0), 1);
		assert_true(X509_sign(big, pki.issuing.key, EVP_sha256()) > 0);
		assert_true(i2d_X509(big, NULL) > GOVCA_CERT_CACHE_DER_MAX);
		sk_X509_push(chain, pki.issuing.cert);
		cms = CMS_sign(big, pki.dept.key, chain, in, CMS_BINARY);
		assert_non_null(cms);
		der = NULL;
		n = i2d_CMS_ContentInfo(cms, &der);
		opaque_msg(der, (size_t)n, &msg);
		govca_chain_cache_clear(cache);
		govca_chain_cache_cert_stats(cache, &h0, &m0);
		expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
		expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
		govca_chain_cache_cert_stats(cache, &hits, &misses);
		/* the issuer is kept (a miss, then a hit), the big signer is
		 * neither */
		assert_int_equal(hits - h0, 1);
		assert_int_equal(misses - m0, 1);
		buf_free(&msg);
		OPENSSL_free(der);
		CMS_ContentInfo_free(cms);
		sk_X509_free(chain);
		BIO_free(in);
		free(fill);
		ASN1_IA5STRING_free(cmt);
		X509_free(big);
	}

	/* More certificates than the cache takes from one message: parsed
	 * whole, and still verified. */
	govca_chain_cache_clear(cache);
	{
		static const char inner[] = "Content-Type: text/plain\r\n\r\n"
		    "many\r\n";
		struct pki_cert extra[GOVCA_CMS_CERTS_MAX];
		BIO *in = BIO_new_mem_buf(inner, (int)strlen(inner));
		CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL,
		    CMS_BINARY | CMS_PARTIAL);
		unsigned long h0, m0;

		assert_non_null(CMS_add1_signer(cms, pki.dept.cert,
		    pki.dept.key, EVP_sha256(), CMS_BINARY));
		assert_int_equal(CMS_add1_cert(cms, pki.issuing.cert), 1);
		for (i = 0; i < GOVCA_CMS_CERTS_MAX; i++) {
			extra[i] = mk_cert("Extra", "P-256", &pki.other_root,
			    "ee", "x@gov.example", NULL, -DAY, DAY);
			assert_int_equal(CMS_add1_cert(cms, extra[i].cert), 1);
		}
		assert_int_equal(CMS_final(cms, in, NULL, CMS_BINARY), 1);
		der = NULL;
		n = i2d_CMS_ContentInfo(cms, &der);
		opaque_msg(der, (size_t)n, &msg);
		govca_chain_cache_cert_stats(cache, &h0, &m0);
		expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
		govca_chain_cache_cert_stats(cache, &hits, &misses);
		assert_int_equal(hits, h0);
		assert_int_equal(misses, m0);
		for (i = 0; i < GOVCA_CMS_CERTS_MAX; i++)
			free_cert(&extra[i]);
		buf_free(&msg);
		OPENSSL_free(der);
		CMS_ContentInfo_free(cms);
		BIO_free(in);
	}
	OPENSSL_free(cder);
	govca_chain_cache_free(cache);
}

static void
test_expired_signing_time(void **state)
{
	struct govca_cms_verify_opts o;
	struct govca_cms_result res;
	struct buf msg;

	(void)state;
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &msg);
	memset(&o, 0, sizeof(o));
	o.store = pki.store;
	/* Three years on, the certificate (700 days) has expired. */
	o.at = time(NULL) + 3 * 365 * DAY;
	assert_int_equal(verify_msg(msg.data, msg.len, &o, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_FAIL);
	assert_non_null(strstr(res.reason, "expired"));
	govca_cms_result_free(&res);
	/* It was valid when it signed. */
	o.flags = GOVCA_CMS_VERIFY_SIGNING_TIME;
	expect_verdict(&msg, &o, GOVCA_CMS_PASS, NULL);
	/* Before the certificate existed. */
	o.flags = 0;
	o.at = time(NULL) - 10 * DAY;
	expect_verdict(&msg, &o, GOVCA_CMS_FAIL, NULL);
	buf_free(&msg);
}

static void
test_unsigned(void **state)
{
	static const char *const msgs[] = {
		"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n",
		"From: a@b.example\nContent-Type: text/plain\n\nhello\n",
		"From: a@b.example\r\nContent-Type: multipart/mixed; "
		    "boundary=x\r\n\r\n--x\r\n\r\na\r\n--x--\r\n",
		"Content-Type: multipart/signed; protocol="
		    "\"application/pgp-signature\"; boundary=x\r\n\r\n"
		    "--x\r\n\r\na\r\n--x\r\n\r\nb\r\n--x--\r\n",
		"Content-Type: application/pkcs7-mime; smime-type="
		    "enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		    "AAAA\r\n",
		"",
		"no header at all",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct govca_cms_result res;

		assert_int_equal(verify_str(msgs[i], &res), 0);
		assert_int_equal(res.status, GOVCA_CMS_NEUTRAL);
		assert_null(res.signer);
		govca_cms_result_free(&res);
	}
	/* Two Content-Types, neither signed: still refused, not "unsigned"
	 * (the header look-ahead leaves anything odd to the full check). */
	{
		struct govca_cms_result res;

		(void)verify_str("Content-Type: text/plain\r\nContent-Type: "
		    "text/html\r\n\r\nx\r\n", &res);
		assert_int_equal(res.status, GOVCA_CMS_FAIL);
		govca_cms_result_free(&res);
	}
}

/* Opaque signed data (application/pkcs7-mime; smime-type=signed-data),
 * made here with OpenSSL directly. */
static void
test_opaque(void **state)
{
	static const char inner[] = "Content-Type: text/plain\r\n\r\nopaque\r\n";
	struct govca_cms_result res;
	struct buf msg;
	CMS_ContentInfo *cms;
	BIO *in;
	unsigned char *der = NULL;
	int n;

	(void)state;
	in = BIO_new_mem_buf(inner, (int)strlen(inner));
	cms = CMS_sign(pki.dept.cert, pki.dept.key, NULL, in, CMS_BINARY);
	assert_non_null(cms);
	n = i2d_CMS_ContentInfo(cms, &der);
	assert_true(n > 0);
	buf_init(&msg, BUF_UNBOUNDED);
	buf_append_str(&msg, "From: <dept@gov.example>\r\n"
	    "Content-Type: application/pkcs7-mime; smime-type=signed-data;"
	    " name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	smime_base64_encode(der, (size_t)n, &msg);
	/* The chain is not in the message: add the issuing CA to trust. */
	assert_int_equal(verify_msg(msg.data, msg.len, NULL, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_FAIL);	/* no issuing CA */
	govca_cms_result_free(&res);
	{
		X509_STORE *st = X509_STORE_new();
		struct govca_cms_verify_opts o;

		X509_STORE_add_cert(st, pki.root.cert);
		X509_STORE_add_cert(st, pki.issuing.cert);
		memset(&o, 0, sizeof(o));
		o.store = st;
		assert_int_equal(verify_msg(msg.data, msg.len, &o, &res), 0);
		assert_int_equal(res.status, GOVCA_CMS_PASS);
		assert_int_equal(res.opaque, 1);
		assert_int_equal(res.from_matches, 1);
		assert_int_equal(res.content.len, strlen(inner));
		assert_memory_equal(res.content.data, inner, strlen(inner));
		govca_cms_result_free(&res);
		X509_STORE_free(st);
	}
	OPENSSL_free(der);
	BIO_free(in);
	CMS_ContentInfo_free(cms);
	buf_free(&msg);
}

/* SHA-1 digests and weak keys do not pass, even with a good chain. */
static void
test_weak(void **state)
{
	static const char inner[] = "Content-Type: text/plain\r\n\r\nweak\r\n";
	struct govca_cms_result res;
	struct pki_cert rsa1024;
	X509_STORE *st = X509_STORE_new();
	struct govca_cms_verify_opts o;
	size_t i;

	(void)state;
	/* A 1024-bit RSA signer certificate, made by hand. */
	rsa1024.key = EVP_RSA_gen(1024);
	rsa1024.cert = X509_dup(pki.cit.cert);
	X509_set_pubkey(rsa1024.cert, rsa1024.key);
	X509_sign(rsa1024.cert, pki.issuing.key, EVP_sha256());
	X509_STORE_add_cert(st, pki.root.cert);
	X509_STORE_add_cert(st, pki.issuing.cert);
	memset(&o, 0, sizeof(o));
	o.store = st;
	for (i = 0; i < 3; i++) {
		const struct pki_cert *c = i == 2 ? &rsa1024 : &pki.dept;
		const EVP_MD *md = i == 0 ? EVP_sha256() : i == 1 ? EVP_sha1() :
		    EVP_sha256();
		CMS_ContentInfo *cms;
		BIO *in = BIO_new_mem_buf(inner, (int)strlen(inner));
		unsigned char *der = NULL;
		struct buf msg;
		int n;

		cms = CMS_sign(NULL, NULL, NULL, NULL, CMS_BINARY | CMS_PARTIAL);
		assert_non_null(cms);
		assert_non_null(CMS_add1_signer(cms, c->cert, c->key, md,
		    CMS_BINARY));
		assert_int_equal(CMS_final(cms, in, NULL, CMS_BINARY), 1);
		n = i2d_CMS_ContentInfo(cms, &der);
		buf_init(&msg, BUF_UNBOUNDED);
		buf_append_str(&msg, "Content-Type: application/pkcs7-mime; "
		    "smime-type=signed-data\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n");
		smime_base64_encode(der, (size_t)n, &msg);
		assert_int_equal(verify_msg(msg.data, msg.len, &o, &res), 0);
		if (i == 0) {
			assert_int_equal(res.status, GOVCA_CMS_PASS);
		} else {
			assert_int_equal(res.status, GOVCA_CMS_FAIL);
			assert_non_null(strstr(res.reason, i == 1 ? "digest" :
			    "weak"));
		}
		govca_cms_result_free(&res);
		buf_free(&msg);
		OPENSSL_free(der);
		BIO_free(in);
		CMS_ContentInfo_free(cms);
	}
	X509_STORE_free(st);
	free_cert(&rsa1024);
}

static void
test_sign_rejects(void **state)
{
	struct buf out, line;
	const char *err = NULL;
	static const char eightbit[] =
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n你好\r\n";
	static const char noct[] = "Subject: x\r\n\r\nbody\r\n";
	size_t n;

	(void)state;
	buf_init(&out, BUF_UNBOUNDED);
	assert_int_equal(govca_cms_sign(pki.id_dept, (const uint8_t *)eightbit,
	    strlen(eightbit), &out, &err), -1);
	assert_non_null(strstr(err, "7-bit"));
	assert_int_equal(govca_cms_sign(pki.id_dept, (const uint8_t *)noct,
	    strlen(noct), &out, &err), -1);
	assert_int_equal(out.len, 0);
	/* Line length: 997 and 998 sign, 999 does not. */
	for (n = SMIME_MAX_LINE - 1; n <= SMIME_MAX_LINE + 1; n++) {
		buf_init(&line, BUF_UNBOUNDED);
		buf_append_str(&line, "Content-Type: text/plain\r\n\r\n");
		while (line.len < 28 + n)
			buf_append_byte(&line, 'a');
		buf_append_str(&line, "\r\n");
		buf_reset(&out);
		assert_int_equal(govca_cms_sign(pki.id_dept, line.data,
		    line.len, &out, &err), n <= SMIME_MAX_LINE ? 0 : -1);
		buf_free(&line);
	}
	/* Output bounded by the caller's buffer. */
	buf_free(&out);
	buf_init(&out, 100);
	assert_int_equal(govca_cms_sign(pki.id_dept, (const uint8_t *)
	    "Content-Type: text/plain\r\n\r\nx\r\n", 31, &out, &err), -1);
	buf_free(&out);
}

/* The Authentication-Results method text (RFC 7281, RFC 8601). */
static void
test_auth_result(void **state)
{
	struct govca_cms_result res;
	struct buf msg, ar;

	(void)state;
	make_signed(pki.id_dept, "Water <dept@gov.example>", SMIME_CTE_BASE64,
	    &msg);
	assert_int_equal(verify_msg(msg.data, msg.len, NULL, &res), 0);
	buf_init(&ar, BUF_UNBOUNDED);
	assert_int_equal(govca_cms_auth_result(&res, &ar), 0);
	assert_true(str_has_prefix(buf_str(&ar), "smime=pass "
	    "header.smime-identifier=dept@gov.example header.smime-serial="));
	govca_cms_result_free(&res);
	buf_free(&ar);

	/* A failure carries its reason, quoted. */
	govca_cms_result_init(&res);
	res.status = GOVCA_CMS_FAIL;
	str_copy(res.reason, sizeof(res.reason), "certificate revoked");
	buf_init(&ar, BUF_UNBOUNDED);
	assert_int_equal(govca_cms_auth_result(&res, &ar), 0);
	assert_string_equal(buf_str(&ar),
	    "smime=fail reason=\"certificate revoked\"");
	buf_free(&ar);

	/* A hostile SAN cannot add properties; non-ASCII is left out. */
	res.emails[0] = strdup("x\"; smime=pass @evil");
	res.emails[1] = strdup("\xe5\xbc\xa0@city.example");
	res.n_emails = 2;
	buf_init(&ar, BUF_UNBOUNDED);
	assert_int_equal(govca_cms_auth_result(&res, &ar), 0);
	assert_string_equal(buf_str(&ar), "smime=fail reason=\"certificate "
	    "revoked\" header.smime-identifier=\"x\\\"; smime=pass @evil\"");
	buf_reset(&ar);
	free(res.emails[0]);
	res.emails[0] = strdup("\xe5\xbc\xa0@city.example");
	assert_int_equal(govca_cms_auth_result(&res, &ar), 0);
	assert_string_equal(buf_str(&ar),
	    "smime=fail reason=\"certificate revoked\"");
	govca_cms_result_free(&res);
	buf_free(&ar);
	buf_free(&msg);
}

/* ---------------------------------------------------- encrypt/decrypt */

static void
test_encrypt_decrypt(void **state)
{
	static const char plain[] = "From: dept@gov.example\r\n"
	    "To: citizen@city.example\r\nSubject: bill\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\nYou owe 12.\r\n";
	static const char entity[] =
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\nYou owe 12.\r\n";
	static const struct {
		size_t nrec;
		int rec[3];	/* 0 dept EC, 1 citizen RSA, 2 dept384 EC */
	} cases[] = {
		{ 1, { 0 } },
		{ 1, { 1 } },
		{ 3, { 0, 1, 2 } },
	};
	struct pki_cert *certs[3] = { &pki.dept, &pki.cit, &pki.dept384 };
	struct govca_cms_identity *ids[3] = { pki.id_dept, pki.id_cit,
	    pki.id_dept384 };
	size_t i, j, k;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509 *rs[3];
		struct buf enc, dec;
		const char *err = NULL;

		for (j = 0; j < cases[i].nrec; j++)
			rs[j] = certs[cases[i].rec[j]]->cert;
		buf_init(&enc, BUF_UNBOUNDED);
		assert_int_equal(govca_cms_encrypt(rs, cases[i].nrec,
		    (const uint8_t *)plain, strlen(plain), &enc, &err), 0);
		/* Outer headers kept, content hidden. */
		assert_non_null(strstr(buf_str(&enc), "Subject: bill\r\n"));
		assert_non_null(strstr(buf_str(&enc),
		    "smime-type=enveloped-data"));
		assert_null(strstr(buf_str(&enc), "You owe"));
		for (k = 0; k < 3; k++) {
			int is_rec = 0;

			for (j = 0; j < cases[i].nrec; j++)
				is_rec |= cases[i].rec[j] == (int)k;
			buf_init(&dec, BUF_UNBOUNDED);
			assert_int_equal(govca_cms_decrypt(ids[k], enc.data,
			    enc.len, GOVCA_CMS_DECRYPT_ENTITY, &dec, &err),
			    is_rec ? 0 : -1);
			if (is_rec) {
				assert_string_equal(buf_str(&dec), entity);
				buf_reset(&dec);
				assert_int_equal(govca_cms_decrypt(ids[k],
				    enc.data, enc.len, 0, &dec, &err), 0);
				assert_string_equal(buf_str(&dec), plain);
			}
			buf_free(&dec);
		}
		buf_free(&enc);
	}
}

/* Sign, encrypt, decrypt, verify: the From: check survives. */
static void
test_sign_then_encrypt(void **state)
{
	struct govca_cms_result res;
	struct buf msg, enc, dec;
	X509 *rs[1] = { pki.cit.cert };
	const char *err = NULL;

	(void)state;
	make_signed(pki.id_dept, "Water <dept@gov.example>",
	    SMIME_CTE_QUOTED_PRINTABLE, &msg);
	buf_init(&enc, BUF_UNBOUNDED);
	buf_init(&dec, BUF_UNBOUNDED);
	assert_int_equal(govca_cms_encrypt(rs, 1, msg.data, msg.len, &enc,
	    &err), 0);
	expect_verdict(&enc, NULL, GOVCA_CMS_NEUTRAL, NULL);
	assert_int_equal(govca_cms_decrypt(pki.id_cit, enc.data, enc.len, 0,
	    &dec, &err), 0);
	assert_int_equal(dec.len, msg.len);
	assert_memory_equal(dec.data, msg.data, msg.len);
	assert_int_equal(verify_msg(dec.data, dec.len, NULL, &res), 0);
	assert_int_equal(res.status, GOVCA_CMS_PASS);
	assert_int_equal(res.from_matches, 1);
	govca_cms_result_free(&res);
	/* Decrypting something that is not encrypted fails cleanly. */
	buf_reset(&dec);
	assert_int_equal(govca_cms_decrypt(pki.id_cit, msg.data, msg.len, 0,
	    &dec, &err), -1);
	assert_int_equal(dec.len, 0);
	/* Recipient limits: 0 fails. */
	assert_int_equal(govca_cms_encrypt(rs, 0, msg.data, msg.len, &enc,
	    &err), -1);
	buf_free(&msg);
	buf_free(&enc);
	buf_free(&dec);
}

/* ------------------------------------------------------- identities */

static void
test_identity_files(void **state)
{
	char dir[] = "/tmp/test_cms.XXXXXX", path[256], kpath[256];
	struct govca_cms_identity *id = NULL;
	STACK_OF(X509) *ca = sk_X509_new_null();
	PKCS12 *p12;
	FILE *f;
	const char *err = NULL;
	struct buf out;

	(void)state;
	assert_non_null(mkdtemp(dir));
	sk_X509_push(ca, pki.issuing.cert);
	p12 = PKCS12_create("s3cret", "dept", pki.dept.key, pki.dept.cert, ca,
	    NID_aes_256_cbc, NID_aes_256_cbc, 0, 0, 0);
	assert_non_null(p12);
	snprintf(path, sizeof(path), "%s/dept.p12", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	i2d_PKCS12_fp(f, p12);
	fclose(f);
	PKCS12_free(p12);
	sk_X509_free(ca);
	assert_int_equal(govca_cms_identity_load_p12(path, "wrong", &id, &err),
	    -1);
	assert_null(id);
	assert_int_equal(govca_cms_identity_load_p12(path, "s3cret", &id, &err),
	    0);
	assert_int_equal(X509_cmp(govca_cms_identity_cert(id), pki.dept.cert),
	    0);
	buf_init(&out, BUF_UNBOUNDED);
	assert_int_equal(govca_cms_sign(id, (const uint8_t *)
	    "Content-Type: text/plain\r\n\r\nx\r\n", 31, &out, &err), 0);
	govca_cms_identity_free(id);
	unlink(path);
	assert_int_equal(govca_cms_identity_load_p12(path, "s3cret", &id, &err),
	    -1);

	/* PEM: certificate, encrypted key, chain. */
	snprintf(path, sizeof(path), "%s/dept.crt", dir);
	f = fopen(path, "w");
	PEM_write_X509(f, pki.dept.cert);
	fclose(f);
	snprintf(kpath, sizeof(kpath), "%s/dept.key", dir);
	f = fopen(kpath, "w");
	PEM_write_PKCS8PrivateKey(f, pki.dept.key, EVP_aes_256_cbc(), NULL, 0,
	    NULL, (void *)"pw");
	fclose(f);
	assert_int_equal(govca_cms_identity_load_pem(path, kpath, "bad", NULL,
	    &id, &err), -1);
	assert_int_equal(govca_cms_identity_load_pem(path, kpath, "pw", NULL,
	    &id, &err), 0);
	govca_cms_identity_free(id);
	/* A key that is not the certificate's. */
	f = fopen(kpath, "w");
	PEM_write_PrivateKey(f, pki.cit.key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	assert_int_equal(govca_cms_identity_load_pem(path, kpath, NULL, NULL,
	    &id, &err), -1);
	unlink(path);
	unlink(kpath);
	rmdir(dir);
	buf_free(&out);
}

/* ------------------------------------------------------ hostile MIME */

static void
test_hostile(void **state)
{
	static const struct {
		const char *msg;
		int ret;
		enum govca_cms_status st;
	} cases[] = {
		/* no boundary parameter */
		{ "Content-Type: multipart/signed; protocol=\"application/"
		    "pkcs7-signature\"\r\n\r\n--x\r\n\r\na\r\n--x--\r\n",
		    -1, GOVCA_CMS_FAIL },
		/* boundary never in the body */
		{ "Content-Type: multipart/signed; protocol=\"application/"
		    "pkcs7-signature\"; boundary=x\r\n\r\nhello\r\n",
		    -1, GOVCA_CMS_FAIL },
		/* boundary never closed */
		{ "Content-Type: multipart/signed; protocol=\"application/"
		    "pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\na\r\n"
		    "--x\r\nContent-Type: application/pkcs7-signature\r\n\r\n"
		    "AAAA\r\n", -1, GOVCA_CMS_FAIL },
		/* only one part */
		{ "Content-Type: multipart/signed; protocol=\"application/"
		    "pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\na\r\n"
		    "--x--\r\n", -1, GOVCA_CMS_FAIL },
		/* three parts */
		{ "Content-Type: multipart/signed; protocol=\"application/"
		    "pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\na\r\n"
		    "--x\r\n\r\nb\r\n--x\r\n\r\nc\r\n--x--\r\n",
		    -1, GOVCA_CMS_FAIL },
		/* second part not a signature */
		{ "Content-Type: multipart/signed; protocol=\"application/"
		    "pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\na\r\n"
		    "--x\r\nContent-Type: text/plain\r\n\r\nb\r\n--x--\r\n",
		    -1, GOVCA_CMS_FAIL },
		/* bad base64 */
		{ "Content-Type: multipart/signed; protocol=\"application/"
		    "pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\na\r\n"
		    "--x\r\nContent-Type: application/pkcs7-signature\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n%%%%\r\n--x--\r\n",
		    -1, GOVCA_CMS_FAIL },
		/* good base64, not CMS */
		{ "Content-Type: multipart/signed; protocol=\"application/"
		    "pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\na\r\n"
		    "--x\r\nContent-Type: application/pkcs7-signature\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--x--\r\n",
		    0, GOVCA_CMS_FAIL },
		/* two Content-Type fields */
		{ "Content-Type: text/plain\r\nContent-Type: multipart/signed; "
		    "protocol=\"application/pkcs7-signature\"; boundary=x\r\n"
		    "\r\nx\r\n", -1, GOVCA_CMS_FAIL },
		/* a second Content-Type in obsolete syntax (space before
		 * the colon) is still a second one */
		{ "Content-Type: text/plain\r\nContent-Type : multipart/signed;"
		    " protocol=\"application/pkcs7-signature\"; boundary=x\r\n"
		    "\r\nx\r\n", -1, GOVCA_CMS_FAIL },
		/* malformed Content-Type */
		{ "Content-Type: multipart\r\n\r\nx\r\n", -1,
		    GOVCA_CMS_NEUTRAL },
		{ "Content-Type: multipart/signed; boundary=\"x\r\n\r\nx\r\n",
		    -1, GOVCA_CMS_NEUTRAL },
		/* opaque with junk */
		{ "Content-Type: application/pkcs7-mime; smime-type=signed-data"
		    "\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n",
		    0, GOVCA_CMS_FAIL },
		{ "Content-Type: application/pkcs7-mime; smime-type=signed-data"
		    "\r\n\r\nAAAA\r\n", -1, GOVCA_CMS_FAIL },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct govca_cms_result res;
		int r = verify_str(cases[i].msg, &res);

		if (r != cases[i].ret || res.status != cases[i].st)
			fail_msg("case %zu: ret %d status %d (%s)", i, r,
			    (int)res.status, res.reason);
		govca_cms_result_free(&res);
	}
}

/* Boundary length 69 and 70 parse, 71 is refused (RFC 2046). */
static void
test_boundary_limit(void **state)
{
	size_t n;

	(void)state;
	for (n = SMIME_BOUNDARY_MAX - 1; n <= SMIME_BOUNDARY_MAX + 1; n++) {
		struct smime_ctype ct;
		char v[200];
		const char *err = NULL;
		int r;

		snprintf(v, sizeof(v), "multipart/signed; boundary=\"%.*s\"",
		    (int)n, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
		r = smime_ctype_parse(v, &ct, &err);
		assert_int_equal(r, n <= SMIME_BOUNDARY_MAX ? 0 : -1);
	}
}

/* Content-Type parameter count: 31 and 32 parse, 33 is refused. */
static void
test_param_limit(void **state)
{
	size_t n, i;

	(void)state;
	for (n = SMIME_MAX_PARAMS - 1; n <= SMIME_MAX_PARAMS + 1; n++) {
		struct smime_ctype ct;
		struct buf v;
		const char *err = NULL;

		buf_init(&v, BUF_UNBOUNDED);
		buf_append_str(&v, "text/plain");
		for (i = 0; i < n; i++)
			buf_printf(&v, "; p%zu=v", i);
		assert_int_equal(smime_ctype_parse(buf_str(&v), &ct, &err),
		    n <= SMIME_MAX_PARAMS ? 0 : -1);
		buf_free(&v);
	}
}

/* Header block: just under and just over SMIME_MAX_HEADER_BYTES. */
static void
test_header_limit(void **state)
{
	size_t target;

	(void)state;
	for (target = SMIME_MAX_HEADER_BYTES - 100;
	    target <= SMIME_MAX_HEADER_BYTES + 100; target += 200) {
		struct govca_cms_result res;
		struct buf m;
		int r;

		buf_init(&m, BUF_UNBOUNDED);
		while (m.len < target)
			buf_append_str(&m, "X-Filler: 0123456789012345678\r\n");
		buf_append_str(&m, "\r\nbody\r\n");
		r = verify_msg(m.data, m.len, NULL, &res);
		assert_int_equal(r, target < SMIME_MAX_HEADER_BYTES ? 0 : -1);
		govca_cms_result_free(&res);
		buf_free(&m);
	}
}

/* 10,000 nested multiparts inside a multipart/signed, and 10,000
 * sibling parts: answered without recursion, promptly. */
static void
test_nested_and_many(void **state)
{
	struct govca_cms_result res;
	struct buf m, sig, nested;
	size_t i;

	(void)state;
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &sig);
	/* Replace the signed entity by 10,000 nested multiparts; the
	 * signature no longer matches, and nothing recurses. */
	buf_init(&nested, BUF_UNBOUNDED);
	for (i = 0; i < 10000; i++)
		buf_printf(&nested, "Content-Type: multipart/mixed; "
		    "boundary=\"n%zu\"\r\n\r\n--n%zu\r\n", i, i);
	buf_append_str(&nested, "\r\nleaf\r\n");
	{
		uint8_t *start = find(&sig, "Content-Type: text/plain");
		uint8_t *end = memmem(start, sig.len - (size_t)(start -
		    sig.data), "\r\n--govmail-", 12);

		buf_init(&m, BUF_UNBOUNDED);
		buf_append(&m, sig.data, (size_t)(start - sig.data));
		buf_append(&m, nested.data, nested.len);
		buf_append(&m, end, sig.len - (size_t)(end - sig.data));
	}
	expect_verdict(&m, NULL, GOVCA_CMS_FAIL, NULL);
	buf_free(&m);

	/* A top-level multipart/mixed nested 10,000 deep: not signed. */
	buf_init(&m, BUF_UNBOUNDED);
	buf_append(&m, nested.data, nested.len);
	expect_verdict(&m, NULL, GOVCA_CMS_NEUTRAL, NULL);
	buf_free(&m);

	/* 10,000 sibling parts in a multipart/signed. */
	buf_init(&m, BUF_UNBOUNDED);
	buf_append_str(&m, "Content-Type: multipart/signed; protocol="
	    "\"application/pkcs7-signature\"; boundary=s\r\n\r\n");
	for (i = 0; i < 10000; i++)
		buf_append_str(&m, "--s\r\n\r\npart\r\n");
	buf_append_str(&m, "--s--\r\n");
	assert_int_equal(verify_msg(m.data, m.len, NULL, &res), -1);
	assert_int_equal(res.status, GOVCA_CMS_FAIL);
	assert_non_null(strstr(res.reason, "too many"));
	govca_cms_result_free(&res);
	buf_free(&m);
	buf_free(&nested);
	buf_free(&sig);
}

/* Every truncation of a signed message: never a PASS until the close
 * delimiter is complete, never a crash. */
static void
test_truncations(void **state)
{
	struct buf msg;
	uint8_t *close;
	size_t n, closed_at;

	(void)state;
	make_signed(pki.id_dept, "dept@gov.example", SMIME_CTE_BASE64, &msg);
	close = msg.data + msg.len - 2;	/* "--boundary--" then CRLF */
	closed_at = (size_t)(close - msg.data);
	for (n = 0; n <= msg.len; n++) {
		struct govca_cms_result res;

		verify_msg(msg.data, n, NULL, &res);
		if (n < closed_at)
			assert_int_not_equal(res.status, GOVCA_CMS_PASS);
		else if (res.status != GOVCA_CMS_PASS)
			fail_msg("prefix %zu of %zu: %s", n, msg.len,
			    res.reason);
		govca_cms_result_free(&res);
	}
	buf_free(&msg);
}

/* ------------------------------------------------------ MIME helpers */

static void
test_address_parse(void **state)
{
	static const struct {
		const char *in;
		int ret;
		const char *addr;
		size_t count;
	} cases[] = {
		{ "a@b.example", 0, "a@b.example", 1 },
		{ "  Name <a@b.example>  ", 0, "a@b.example", 1 },
		{ "\"Last, First\" <a@b.example>", 0, "a@b.example", 1 },
		{ "a@b.example (comment, with comma)", 0, "a@b.example", 1 },
		{ "=?UTF-8?B?5rC0?= <a@b.example>", 0, "a@b.example", 1 },
		{ "a@b.example, c@d.example", 0, "a@b.example", 2 },
		{ "\"x <evil@e.example>\" <a@b.example>", 0, "a@b.example", 1 },
		{ "Just A Name", -1, "", 1 },
		{ "", -1, "", 0 },
		{ "<>", -1, "", 0 },
		{ "@b.example", -1, "", 1 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char addr[GOVCA_CMS_MAX_ADDRESS + 1];
		size_t count = 99;
		int r = smime_address_parse(cases[i].in, addr, sizeof(addr),
		    &count);

		if (r != cases[i].ret)
			fail_msg("case %zu (%s): ret %d", i, cases[i].in, r);
		if (r == 0) {
			assert_string_equal(addr, cases[i].addr);
			assert_int_equal(count, cases[i].count);
		}
	}
	assert_true(smime_address_equal("a@B.Example", "a@b.example"));
	assert_false(smime_address_equal("A@b.example", "a@b.example"));
	assert_false(smime_address_equal("a@b.example", "a@b.example.org"));
	assert_false(smime_address_equal("ab.example", "ab.example"));
	/* a Chinese domain: U-labels (From:) against A-labels (SAN) */
	assert_true(smime_address_equal("mayor@\xe6\x94\xbf\xe5\xba\x9c.example",
	    "mayor@xn--mxtq1m.example"));
	assert_true(smime_address_equal("mayor@XN--MXTQ1M.example",
	    "mayor@\xe6\x94\xbf\xe5\xba\x9c.example"));
	assert_false(smime_address_equal("mayor@\xe6\x94\xbf.example",
	    "mayor@xn--mxtq1m.example"));
	assert_false(smime_address_equal("mayor@\xff.example",
	    "mayor@xn--mxtq1m.example"));	/* not UTF-8: no match */
}

static void
test_message_build(void **state)
{
	struct smime_headers h;
	struct buf out;
	const char *err = NULL, *p, *line;

	(void)state;
	memset(&h, 0, sizeof(h));
	h.from = "水务局 <dept@gov.example>";
	h.to = "张三 <a@city.example>, b@city.example";
	h.subject = "关于调整居民用水价格的通知（2026年第12号）——请各位市民"
	    "仔细阅读并按时缴费";
	buf_init(&out, BUF_UNBOUNDED);
	assert_int_equal(smime_message_build(&h, (const uint8_t *)
	    "Content-Type: text/plain\r\n\r\nx\r\n", 31, &out, &err), 0);
	/* 7-bit headers, lines of at most 78 characters, encoded words of
	 * at most 75. */
	assert_true(smime_is_7bit(out.data, out.len, &err));
	for (line = buf_str(&out); (p = strstr(line, "\r\n")) != NULL;
	    line = p + 2)
		assert_true(p - line <= 78);
	for (p = buf_str(&out); (p = strstr(p, "=?UTF-8?B?")) != NULL; p++) {
		const char *e = strstr(p + 10, "?=");

		assert_non_null(e);
		assert_true(e + 2 - p <= SMIME_MAX_ENCODED_WORD);
	}
	assert_non_null(strstr(buf_str(&out), " <dept@gov.example>\r\n"));
	assert_non_null(strstr(buf_str(&out), "b@city.example\r\n"));
	assert_non_null(strstr(buf_str(&out), "Message-ID: <"));
	assert_non_null(strstr(buf_str(&out), "@gov.example>\r\n"));
	assert_non_null(strstr(buf_str(&out), "MIME-Version: 1.0\r\n"));
	/* A long ASCII subject and display name fold too: every line of
	 * the header stays within 78 characters. */
	buf_reset(&out);
	h.from = "The Municipal Water Supply and Drainage Administration Bureau "
	    "of the City <dept@gov.example>";
	h.to = "b@city.example";
	h.subject = "Notice on the adjustment of residential water prices from "
	    "the first day of next month, and on the new billing periods "
	    "for all districts of the city";
	assert_int_equal(smime_message_build(&h, (const uint8_t *)
	    "Content-Type: text/plain\r\n\r\nx\r\n", 31, &out, &err), 0);
	for (line = buf_str(&out); (p = strstr(line, "\r\n")) != NULL;
	    line = p + 2)
		assert_true(p - line <= 78);
	assert_non_null(strstr(buf_str(&out), " <dept@gov.example>\r\n"));
	/* Unfolding (dropping CRLF) gives the subject back. */
	{
		const char *sb = strstr(buf_str(&out), "Subject: ") + 9;
		const char *se = strstr(sb, "\r\nDate: ");
		char unf[512];
		size_t k = 0;

		for (; sb < se && k + 1 < sizeof(unf); sb++) {
			if (*sb != '\r' && *sb != '\n')
				unf[k++] = *sb;
		}
		unf[k] = '\0';
		assert_string_equal(unf, h.subject);
	}
	/* One 1,000-character word cannot fold: it is encoded instead. */
	{
		char word[1001];

		memset(word, 'w', 1000);
		word[1000] = '\0';
		h.subject = word;
		buf_reset(&out);
		assert_int_equal(smime_message_build(&h, (const uint8_t *)"",
		    0, &out, &err), 0);
		for (line = buf_str(&out); (p = strstr(line, "\r\n")) != NULL;
		    line = p + 2)
			assert_true(p - line <= 78);
		assert_non_null(strstr(buf_str(&out), "Subject: =?UTF-8?B?"));
	}
	/* Header injection is refused. */
	h.subject = "hi\r\nBcc: everyone@example";
	buf_reset(&out);
	assert_int_equal(smime_message_build(&h, (const uint8_t *)"", 0, &out,
	    &err), -1);
	h.subject = NULL;
	h.from = NULL;
	assert_int_equal(smime_message_build(&h, (const uint8_t *)"", 0, &out,
	    &err), -1);
	buf_free(&out);
}

static void
test_entity_text(void **state)
{
	static const char text[] =
	    "From here on.\n.\nTrailing space \nlong "
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=\n";
	struct buf out, dec;
	const char *err = NULL, *p, *line;

	(void)state;
	buf_init(&out, BUF_UNBOUNDED);
	assert_int_equal(smime_entity_text(NULL, SMIME_CTE_QUOTED_PRINTABLE,
	    (const uint8_t *)text, strlen(text), &out, &err), 0);
	assert_true(smime_is_7bit(out.data, out.len, &err));
	for (line = buf_str(&out); (p = strstr(line, "\r\n")) != NULL;
	    line = p + 2)
		assert_true(p - line <= 76);
	assert_non_null(strstr(buf_str(&out), "\r\n=46rom here on."));
	assert_non_null(strstr(buf_str(&out), "\r\n=2E\r\n"));
	assert_non_null(strstr(buf_str(&out), "Trailing space=20\r\n"));
	assert_non_null(strstr(buf_str(&out), "=3D\r\n"));
	assert_non_null(strstr(buf_str(&out), "=\r\n"));	/* soft break */
	/* base64 decodes back to the CRLF text. */
	buf_reset(&out);
	assert_int_equal(smime_entity_text("text/plain; charset=utf-8",
	    SMIME_CTE_BASE64, (const uint8_t *)"a\nb\n", 4, &out, &err), 0);
	p = strstr(buf_str(&out), "\r\n\r\n");
	assert_non_null(p);
	buf_init(&dec, BUF_UNBOUNDED);
	assert_int_equal(smime_base64_decode((const uint8_t *)p + 4,
	    strlen(p + 4), &dec, &err), 0);
	assert_string_equal(buf_str(&dec), "a\r\nb\r\n");
	assert_int_equal(smime_entity_text("text/plain\r\nBcc: x",
	    SMIME_CTE_BASE64, (const uint8_t *)"a", 1, &out, &err), -1);
	buf_free(&dec);
	buf_free(&out);
}

static void
test_base64(void **state)
{
	static const struct {
		const char *in;
		int ret;
		const char *out;
	} cases[] = {
		{ "", 0, "" },
		{ "YQ==", 0, "a" },
		{ "YWI=", 0, "ab" },
		{ "YWJj", 0, "abc" },
		{ "YW\r\nJj\r\n", 0, "abc" },
		{ "YWJ", -1, NULL },
		{ "Y===", -1, NULL },
		{ "YQ==YQ==", -1, NULL },
		{ "YW!j", -1, NULL },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf out;
		const char *err = NULL;

		buf_init(&out, BUF_UNBOUNDED);
		assert_int_equal(smime_base64_decode((const uint8_t *)
		    cases[i].in, strlen(cases[i].in), &out, &err),
		    cases[i].ret);
		if (cases[i].ret == 0)
			assert_string_equal(buf_str(&out), cases[i].out);
		buf_free(&out);
	}
}

static void
test_multipart_split(void **state)
{
	static const char body[] = "preamble\r\n--b \r\nA\r\n--bb\r\n--b\r\n"
	    "\r\nB\r\n--b--  \r\nepilogue\r\n";
	struct smime_span parts[4];
	size_t n;
	const char *err = NULL;

	(void)state;
	assert_int_equal(smime_multipart_split((const uint8_t *)body,
	    strlen(body), "b", parts, 4, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(parts[0].len, 7);	/* "A\r\n--bb" */
	assert_memory_equal(parts[0].p, "A\r\n--bb", 7);
	assert_int_equal(parts[1].len, 3);
	assert_memory_equal(parts[1].p, "\r\nB", 3);
	assert_int_equal(smime_multipart_split((const uint8_t *)body,
	    strlen(body), "b", parts, 1, &n, &err), -1);
	assert_int_equal(smime_multipart_split((const uint8_t *)body,
	    strlen(body), "c", parts, 4, &n, &err), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_signed_attributes),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_from),
		cmocka_unit_test(test_from_twice),
		cmocka_unit_test(test_untrusted_and_purpose),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_chain_cache),
		cmocka_unit_test(test_cert_cache),
		cmocka_unit_test(test_expired_signing_time),
		cmocka_unit_test(test_unsigned),
		cmocka_unit_test(test_opaque),
		cmocka_unit_test(test_weak),
		cmocka_unit_test(test_auth_result),
		cmocka_unit_test(test_sign_rejects),
		cmocka_unit_test(test_encrypt_decrypt),
		cmocka_unit_test(test_sign_then_encrypt),
		cmocka_unit_test(test_identity_files),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_boundary_limit),
		cmocka_unit_test(test_param_limit),
		cmocka_unit_test(test_header_limit),
		cmocka_unit_test(test_nested_and_many),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_address_parse),
		cmocka_unit_test(test_message_build),
		cmocka_unit_test(test_entity_text),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_multipart_split),
	};

	return cmocka_run_group_tests_name("cms", tests, setup_pki,
	    teardown_pki);
}
