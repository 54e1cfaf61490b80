/*
 * issue.c - end-entity certificates: the four S/MIME profiles (CA/B Forum
 * S/MIME Baseline Requirements, strict generation), CSR checks, keys
 * generated here and handed out as PKCS#12, and the TLS server profile.
 *
 * Runs in govmail-ca.  Trusts the holder data (it comes from the mail
 * store's account, checked again here where a check is cheap); does NOT
 * trust a CSR: it is size-limited, parsed, its signature verified with its
 * own key (proof of possession), its key type checked, and its subject and
 * extensions ignored.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "buf.h"
#include "ca_priv.h"
#include "ident.h"
#include "idn.h"
#include "log.h"
#include "xmalloc.h"

/* ub-common-name and friends (RFC 5280 appendix A): characters. */
#define ISSUE_NAME_MAX 64
#define ISSUE_ADDRESS_MAX 254
#define ISSUE_SUBDIVISION_MAX 3
/* PBKDF2 rounds for the PKCS#12: the password is random (~100 bits), so
 * the count is not the defence; OpenSSL's default keeps --generate fast. */
#define ISSUE_P12_ITER 2048

/* ---- holder checks ---------------------------------------------------- */

static int
text_ok(const char *s)
{
	const unsigned char *p;

	if (s == NULL || s[0] == '\0' || strlen(s) > GOVCA_TEXT_MAX)
		return 0;
	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

/*
 * Check an address for a certificate and give the form its SAN carries
 * in san (the domain by its A-labels: RFC 5280 7.5 for rfc822Name, RFC
 * 8398 for SmtpUTF8Mailbox); *utf8_r is 1 if the local part holds a byte
 * >= 0x80 (SmtpUTF8Mailbox).
 */
static int
address_check(const char *a, int *utf8_r, char *san, size_t sansz,
    const char **why_r)
{
	const unsigned char *p;
	const char *at;

	*utf8_r = 0;
	if (a == NULL || strlen(a) > ISSUE_ADDRESS_MAX) {
		*why_r = "address missing or too long";
		return -1;
	}
	at = strrchr(a, '@');
	if (at == NULL || at == a || at[1] == '\0' || strchr(a, '@') != at) {
		*why_r = "not a mailbox address (local@domain)";
		return -1;
	}
	for (p = (const unsigned char *)a; *p != '\0'; p++) {
		if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\' ||
		    *p == '<' || *p == '>' || *p == ',') {
			*why_r = "address holds a forbidden character";
			return -1;
		}
		if (*p >= 0x80 && (const char *)p < at)
			*utf8_r = 1;
	}
	if (idn_address(a, 1, san, sansz) == -1) {
		*why_r = "the domain is no valid internationalized domain name";
		return -1;
	}
	return 0;
}

/*
 * A Han (CJK ideograph) code point: the scripts whose names are written
 * without a space between surname and given name.
 */
static int
han_code_point(uint32_t c)
{
	return (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x4e00 && c <= 0x9fff) ||
	    (c >= 0xf900 && c <= 0xfaff) || (c >= 0x20000 && c <= 0x3134f);
}

/*
 * The compound (two-character) surnames of the Hundred Family Surnames
 * and the few more in use today, in simplified and traditional
 * characters: 欧阳娜娜 is 欧阳 + 娜娜, not 欧 + 阳娜娜.
 */
static const char *const compound_surnames[] = {
	"\xe4\xb8\x87\xe4\xbf\x9f",	/* 万俟 */
	"\xe4\xb8\x8a\xe5\xae\x98",	/* 上官 */
	"\xe4\xb8\x9c\xe6\x96\xb9",	/* 东方 */
	"\xe4\xb8\x9c\xe9\x83\xad",	/* 东郭 */
	"\xe4\xb8\x9c\xe9\x97\xa8",	/* 东门 */
	"\xe4\xb9\x90\xe6\xad\xa3",	/* 乐正 */
	"\xe4\xba\x93\xe5\xae\x98",	/* 亓官 */
	"\xe4\xbb\xa4\xe7\x8b\x90",	/* 令狐 */
	"\xe4\xbb\xb2\xe5\xad\x99",	/* 仲孙 */
	"\xe5\x85\xac\xe5\x86\xb6",	/* 公冶 */
	"\xe5\x85\xac\xe5\xad\x99",	/* 公孙 */
	"\xe5\x85\xac\xe7\xbe\x8a",	/* 公羊 */
	"\xe5\x85\xac\xe8\x89\xaf",	/* 公良 */
	"\xe5\x85\xac\xe8\xa5\xbf",	/* 公西 */
	"\xe5\x8d\x95\xe4\xba\x8e",	/* 单于 */
	"\xe5\x8d\x97\xe5\xae\xab",	/* 南宫 */
	"\xe5\x8d\x97\xe5\xae\xae",	/* 南宮 */
	"\xe5\x8d\x97\xe9\x96\x80",	/* 南門 */
	"\xe5\x8d\x97\xe9\x97\xa8",	/* 南门 */
	"\xe5\x8f\xb8\xe5\xaf\x87",	/* 司寇 */
	"\xe5\x8f\xb8\xe5\xbe\x92",	/* 司徒 */
	"\xe5\x8f\xb8\xe7\xa9\xba",	/* 司空 */
	"\xe5\x8f\xb8\xe9\xa6\xac",	/* 司馬 */
	"\xe5\x8f\xb8\xe9\xa9\xac",	/* 司马 */
	"\xe5\x91\xbc\xe5\xbb\xb6",	/* 呼延 */
	"\xe5\x96\xae\xe4\xba\x8e",	/* 單于 */
	"\xe5\xa3\xa4\xe9\xa7\x9f",	/* 壤駟 */
	"\xe5\xa3\xa4\xe9\xa9\xb7",	/* 壤驷 */
	"\xe5\xa4\x8f\xe4\xbe\xaf",	/* 夏侯 */
	"\xe5\xa4\xaa\xe5\x8f\x94",	/* 太叔 */
	"\xe5\xa4\xb9\xe8\xb0\xb7",	/* 夹谷 */
	"\xe5\xa4\xbe\xe8\xb0\xb7",	/* 夾谷 */
	"\xe5\xad\x90\xe8\xbd\xa6",	/* 子车 */
	"\xe5\xae\x87\xe6\x96\x87",	/* 宇文 */
	"\xe5\xae\x97\xe6\x94\xbf",	/* 宗政 */
	"\xe5\xae\xb0\xe7\x88\xb6",	/* 宰父 */
	"\xe5\xb0\x89\xe8\xbf\x9f",	/* 尉迟 */
	"\xe5\xb7\xa6\xe4\xb8\x98",	/* 左丘 */
	"\xe5\xb7\xab\xe9\xa9\xac",	/* 巫马 */
	"\xe5\xbe\xae\xe7\x94\x9f",	/* 微生 */
	"\xe6\x85\x95\xe5\xae\xb9",	/* 慕容 */
	"\xe6\x8b\x93\xe8\xb7\x8b",	/* 拓跋 */
	"\xe6\x9d\xb1\xe6\x96\xb9",	/* 東方 */
	"\xe6\x9d\xb1\xe9\x83\xad",	/* 東郭 */
	"\xe6\x9d\xb1\xe9\x96\x80",	/* 東門 */
	"\xe6\xa2\x81\xe4\xb8\x98",	/* 梁丘 */
	"\xe6\xa8\x82\xe6\xad\xa3",	/* 樂正 */
	"\xe6\xac\xa7\xe9\x98\xb3",	/* 欧阳 */
	"\xe6\xad\x90\xe9\x99\xbd",	/* 歐陽 */
	"\xe6\xae\xb5\xe5\xb9\xb2",	/* 段干 */
	"\xe6\xb7\xb3\xe4\xba\x8e",	/* 淳于 */
	"\xe6\xbc\x86\xe9\x9b\x95",	/* 漆雕 */
	"\xe6\xbe\xb9\xe5\x8f\xb0",	/* 澹台 */
	"\xe6\xbf\xae\xe9\x98\xb3",	/* 濮阳 */
	"\xe6\xbf\xae\xe9\x99\xbd",	/* 濮陽 */
	"\xe7\x8b\xac\xe5\xad\xa4",	/* 独孤 */
	"\xe7\x8d\xa8\xe5\xad\xa4",	/* 獨孤 */
	"\xe7\x94\xb3\xe5\xb1\xa0",	/* 申屠 */
	"\xe7\x99\xbe\xe9\x87\x8c",	/* 百里 */
	"\xe7\x9a\x87\xe7\x94\xab",	/* 皇甫 */
	"\xe7\xa9\x80\xe6\xa2\x81",	/* 穀梁 */
	"\xe7\xab\xaf\xe6\x9c\xa8",	/* 端木 */
	"\xe7\xac\xac\xe4\xba\x94",	/* 第五 */
	"\xe7\xbe\x8a\xe8\x88\x8c",	/* 羊舌 */
	"\xe8\x81\x9e\xe4\xba\xba",	/* 聞人 */
	"\xe8\x90\xac\xe4\xbf\x9f",	/* 萬俟 */
	"\xe8\xa5\xbf\xe9\x96\x80",	/* 西門 */
	"\xe8\xa5\xbf\xe9\x97\xa8",	/* 西门 */
	"\xe8\xab\xb8\xe8\x91\x9b",	/* 諸葛 */
	"\xe8\xaf\xb8\xe8\x91\x9b",	/* 诸葛 */
	"\xe8\xb0\xb7\xe6\xa2\x81",	/* 谷梁 */
	"\xe8\xb5\xab\xe8\xbf\x9e",	/* 赫连 */
	"\xe8\xb5\xab\xe9\x80\xa3",	/* 赫連 */
	"\xe8\xbb\x92\xe8\xbd\x85",	/* 軒轅 */
	"\xe8\xbd\xa9\xe8\xbe\x95",	/* 轩辕 */
	"\xe9\x8d\xbe\xe9\x9b\xa2",	/* 鍾離 */
	"\xe9\x92\x9f\xe7\xa6\xbb",	/* 钟离 */
	"\xe9\x95\xb7\xe5\xad\xab",	/* 長孫 */
	"\xe9\x95\xbf\xe5\xad\x99",	/* 长孙 */
	"\xe9\x96\xad\xe4\xb8\x98",	/* 閭丘 */
	"\xe9\x97\xbb\xe4\xba\xba",	/* 闻人 */
	"\xe9\x97\xbe\xe4\xb8\x98",	/* 闾丘 */
	"\xe9\xa1\x93\xe5\xad\xab",	/* 顓孫 */
	"\xe9\xa2\x9b\xe5\xad\x99",	/* 颛孙 */
	"\xe9\xae\xae\xe4\xba\x8e",	/* 鮮于 */
	"\xe9\xb2\x9c\xe4\xba\x8e",	/* 鲜于 */
};

/* Bytes of the compound surname name starts with, or 0. */
static size_t
compound_surname(const char *name)
{
	size_t i, n;

	for (i = 0; i < sizeof(compound_surnames) /
	    sizeof(compound_surnames[0]); i++) {
		n = strlen(compound_surnames[i]);
		if (strncmp(name, compound_surnames[i], n) == 0)
			return n;
	}
	return 0;
}

/*
 * Split a display name into surname and given name the Chinese way: the
 * surname comes first, both in characters ("张伟": 张 + 伟) and in pinyin
 * ("Zhang Wei": Zhang + Wei, GB/T 28039).  Only a name in Han characters
 * is split by character: one word in another script ("Li", "Madonna")
 * has no given name to find.  In characters the surname is the first
 * one, or the first two when they are a compound surname with more after
 * it (司马光: 司马 + 光; 司马 alone is 司 + 马).  Other orders, and a
 * single-character surname that looks like the start of a compound one,
 * need --surname and --given-name.
 */
static int
split_name(const char *display, char *given, size_t gsz, char *surname,
    size_t ssz)
{
	const char *sp = strchr(display, ' ');
	uint32_t c;
	size_t n, m;

	if (sp != NULL) {
		n = (size_t)(sp - display);
		if (n == 0 || sp[1] == '\0' || n >= ssz)
			return -1;
		memcpy(surname, display, n);
		surname[n] = '\0';
		return str_copy(given, gsz, sp + 1);
	}
	n = str_utf8_decode((const uint8_t *)display, strlen(display), &c);
	if (n == 0 || !han_code_point(c))
		return -1;
	if ((m = compound_surname(display)) != 0 && display[m] != '\0')
		n = m;
	if (display[n] == '\0' || n >= ssz)
		return -1;
	memcpy(surname, display, n);
	surname[n] = '\0';
	return str_copy(given, gsz, display + n);
}

static int
subdivision_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > ISSUE_SUBDIVISION_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' &&
		    s[i] <= '9')))
			return 0;
	return 1;
}

static int
name_add(X509_NAME *n, int nid, const char *value, int ascii)
{
	return X509_NAME_add_entry_by_NID(n, nid,
	    ascii ? MBSTRING_ASC : MBSTRING_UTF8,
	    (const unsigned char *)value, -1, -1, 0) == 1 ? 0 : -1;
}

/*
 * The subject of a profile.  Fails with *why_r naming the missing or bad
 * holder attribute.
 */
static X509_NAME *
build_subject(struct govca *ca, const struct govca_holder *h,
    const char **why_r)
{
	char given[GOVCA_TEXT_MAX + 1], surname[GOVCA_TEXT_MAX + 1];
	char orgid[64], opaque[GOVCA_OPAQUE_ID_LEN + 1];
	const char *org, *cn, *err, *sub;
	X509_NAME *n;
	int person = 0;

	*why_r = "cannot build the subject (an attribute is too long?)";
	if ((n = X509_NAME_new()) == NULL)
		return NULL;
	org = h->organisation;
	switch (h->profile) {
	case GOVCA_PROFILE_OFFICIAL:
	case GOVCA_PROFILE_DEPARTMENT:
		if (h->profile == GOVCA_PROFILE_DEPARTMENT && !text_ok(org))
			org = h->display_name;
		if (!text_ok(org)) {
			*why_r = "the account has no department (organisation)";
			goto fail;
		}
		sub = h->org_id;
		if (sub != NULL && str_has_prefix(sub, "CN-"))
			sub += 3;
		if (sub != NULL && sub[0] != '\0') {
			if (!subdivision_ok(sub)) {
				*why_r = "org_id must be an ISO 3166-2 "
				    "subdivision code (CN-XX)";
				goto fail;
			}
			snprintf(orgid, sizeof(orgid), "GOVCN+%s", sub);
		} else
			snprintf(orgid, sizeof(orgid), "GOVCN");
		if (name_add(n, NID_countryName, "CN", 1) == -1 ||
		    name_add(n, NID_organizationName, org, 0) == -1 ||
		    name_add(n, NID_organizationIdentifier, orgid, 0) == -1)
			goto fail;
		if (h->profile == GOVCA_PROFILE_OFFICIAL)
			person = 1;
		else {
			cn = text_ok(h->display_name) ? h->display_name : org;
			if (name_add(n, NID_commonName, cn, 0) == -1)
				goto fail;
		}
		break;
	case GOVCA_PROFILE_LEGAL_PERSON:
		if (!text_ok(org)) {
			*why_r = "the account has no registered name "
			    "(organisation)";
			goto fail;
		}
		if (h->org_id == NULL ||
		    strlen(h->org_id) != IDENT_USCC_LEN) {
			*why_r = "the account has no 18-character Unified "
			    "Social Credit Code";
			goto fail;
		}
		if (!ident_uscc_valid(h->org_id)) {
			if (!h->legacy_code) {
				*why_r = "the Unified Social Credit Code fails "
				    "its GB 32100 check character (use "
				    "--legacy-code to accept it)";
				goto fail;
			}
			log_warnx("issue: address=%s uscc_check=failed "
			    "legacy_code=accepted", h->address);
		}
		snprintf(orgid, sizeof(orgid), "NTRCN-%s", h->org_id);
		if (name_add(n, NID_countryName, "CN", 1) == -1 ||
		    name_add(n, NID_organizationName, org, 0) == -1 ||
		    name_add(n, NID_organizationIdentifier, orgid, 0) == -1 ||
		    name_add(n, NID_commonName, org, 0) == -1)
			goto fail;
		break;
	case GOVCA_PROFILE_CITIZEN:
		if (h->resident_id != NULL &&
		    !ident_resident_id_valid(h->resident_id)) {
			*why_r = "the resident ID number fails its ISO 7064 "
			    "MOD 11-2 check";
			goto fail;
		}
		if (h->unverified) {
			/* Mailbox-validated: the mailbox only. */
			if (name_add(n, NID_commonName, h->address, 0) == -1)
				goto fail;
			break;
		}
		/* SECURITY: an opaque CA id, never the resident ID number. */
		if (ca_db_holder_id(ca, h->address, opaque, sizeof(opaque),
		    &err) == -1) {
			*why_r = err;
			goto fail;
		}
		person = 1;
		break;
	default:
		*why_r = "not an S/MIME profile";
		goto fail;
	}
	if (person) {
		if (!text_ok(h->display_name)) {
			*why_r = "the account has no display name";
			goto fail;
		}
		if (h->given_name != NULL && h->surname != NULL) {
			if (str_copy(given, sizeof(given), h->given_name) ==
			    -1 || str_copy(surname, sizeof(surname),
			    h->surname) == -1)
				goto fail;
		} else if (split_name(h->display_name, given, sizeof(given),
		    surname, sizeof(surname)) == -1) {
			*why_r = "cannot split the display name into given "
			    "name and surname (use --given-name and --surname)";
			goto fail;
		}
		if (name_add(n, NID_givenName, given, 0) == -1 ||
		    name_add(n, NID_surname, surname, 0) == -1)
			goto fail;
		if (h->profile == GOVCA_PROFILE_CITIZEN &&
		    name_add(n, NID_serialNumber, opaque, 1) == -1)
			goto fail;
		if (h->profile == GOVCA_PROFILE_OFFICIAL && h->title != NULL &&
		    h->title[0] != '\0' &&
		    name_add(n, NID_title, h->title, 0) == -1)
			goto fail;
		if (name_add(n, NID_commonName, h->display_name, 0) == -1)
			goto fail;
	}
	ERR_clear_error();
	return n;
fail:
	ERR_clear_error();
	X509_NAME_free(n);
	return NULL;
}

/* SAN: rfc822Name, or SmtpUTF8Mailbox (RFC 8398) for a UTF-8 local part. */
static int
add_email_san(X509 *cert, const char *address, int utf8)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	GENERAL_NAME *gen = GENERAL_NAME_new();
	ASN1_TYPE *val = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	ASN1_UTF8STRING *u = NULL;
	int ret = -1;

	if (gens == NULL || gen == NULL)
		goto out;
	if (utf8) {
		if ((u = ASN1_UTF8STRING_new()) == NULL ||
		    ASN1_STRING_set(u, address, -1) != 1 ||
		    (val = ASN1_TYPE_new()) == NULL)
			goto out;
		ASN1_TYPE_set(val, V_ASN1_UTF8STRING, u);
		u = NULL;
		if (GENERAL_NAME_set0_othername(gen,
		    OBJ_txt2obj("1.3.6.1.5.5.7.8.9", 1), val) != 1)
			goto out;
		val = NULL;
	} else {
		if ((ia5 = ASN1_IA5STRING_new()) == NULL ||
		    ASN1_STRING_set(ia5, address, -1) != 1)
			goto out;
		GENERAL_NAME_set0_value(gen, GEN_EMAIL, ia5);
		ia5 = NULL;
	}
	if (sk_GENERAL_NAME_push(gens, gen) <= 0)
		goto out;
	gen = NULL;
	ret = X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, 0,
	    X509V3_ADD_DEFAULT) == 1 ? 0 : -1;
out:
	ASN1_TYPE_free(val);
	ASN1_UTF8STRING_free(u);
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return ret;
}

/* certificatePolicies with one policy OID, no qualifiers. */
static int
add_policy(X509 *cert, const char *oid)
{
	CERTIFICATEPOLICIES *pols = CERTIFICATEPOLICIES_new();
	POLICYINFO *pi = POLICYINFO_new();
	int ret = -1;

	if (pols == NULL || pi == NULL)
		goto out;
	ASN1_OBJECT_free(pi->policyid);
	if ((pi->policyid = OBJ_txt2obj(oid, 1)) == NULL ||
	    sk_POLICYINFO_push(pols, pi) <= 0)
		goto out;
	pi = NULL;
	ret = X509_add1_ext_i2d(cert, NID_certificate_policies, pols, 0,
	    X509V3_ADD_DEFAULT) == 1 ? 0 : -1;
out:
	POLICYINFO_free(pi);
	CERTIFICATEPOLICIES_free(pols);
	return ret;
}

static int
add_ee_exts(struct govca *ca, X509 *cert, X509 *issuer, EVP_PKEY *pub,
    const char *policy, const char *eku)
{
	char cdp[600], aia[1200];
	int ku_ok;

	if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA)
		ku_ok = ca_add_ext(cert, issuer, NID_key_usage,
		    "critical,digitalSignature,keyEncipherment");
	else if (strcmp(eku, "serverAuth") == 0)
		ku_ok = ca_add_ext(cert, issuer, NID_key_usage,
		    "critical,digitalSignature");
	else
		ku_ok = ca_add_ext(cert, issuer, NID_key_usage,
		    "critical,digitalSignature,keyAgreement");
	snprintf(cdp, sizeof(cdp), "URI:%s/crl/issuing.crl", ca->base_url);
	snprintf(aia, sizeof(aia),
	    "caIssuers;URI:%s/ca/%s.crt,OCSP;URI:%s/ocsp", ca->base_url,
	    issuer == ca->tls ? "tls" : "issuing", ca->base_url);
	if (ku_ok == -1 ||
	    ca_add_ext(cert, issuer, NID_basic_constraints,
	    "critical,CA:FALSE") == -1 ||
	    ca_add_ext(cert, issuer, NID_ext_key_usage, eku) == -1 ||
	    add_policy(cert, policy) == -1 ||
	    ca_add_ext(cert, issuer, NID_subject_key_identifier, "hash") ==
	    -1 ||
	    ca_add_ext(cert, issuer, NID_authority_key_identifier,
	    "keyid:always") == -1)
		return -1;
	if (issuer == ca->issuing &&
	    (ca_add_ext(cert, issuer, NID_crl_distribution_points, cdp) ==
	    -1 || ca_add_ext(cert, issuer, NID_info_access, aia) == -1))
		return -1;
	return 0;
}

/* A fresh end-entity certificate skeleton signed later by the caller. */
static X509 *
new_cert(X509 *issuer, X509_NAME *subject, EVP_PKEY *pub, unsigned days,
    char hex[GOVCA_SERIAL_HEX_MAX])
{
	ASN1_INTEGER *serial = NULL;
	X509 *cert;

	if ((cert = X509_new()) == NULL)
		return NULL;
	if (ca_serial_random(&serial, hex) == -1 ||
	    X509_set_version(cert, 2) != 1 ||
	    X509_set_serialNumber(cert, serial) != 1 ||
	    X509_set_subject_name(cert, subject) != 1 ||
	    X509_set_issuer_name(cert, X509_get_subject_name(issuer)) != 1 ||
	    X509_set_pubkey(cert, pub) != 1 ||
	    ca_set_validity(cert, time(NULL), (long)days) == -1) {
		ASN1_INTEGER_free(serial);
		X509_free(cert);
		return NULL;
	}
	ASN1_INTEGER_free(serial);
	return cert;
}

/* ---- CSR ------------------------------------------------------------- */

static int
key_check(EVP_PKEY *key, const char **why_r)
{
	char group[64];
	size_t glen;
	int bits;

	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(key,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
		    &glen) != 1) {
			*why_r = "EC key with explicit or unknown curve "
			    "parameters refused";
			return -1;
		}
		if (strcmp(group, "prime256v1") != 0 &&
		    strcmp(group, "secp384r1") != 0) {
			*why_r = "unsupported curve (P-256 or P-384 only)";
			return -1;
		}
		return 0;
	case EVP_PKEY_RSA:
		bits = EVP_PKEY_get_bits(key);
		if (bits < 2048) {
			*why_r = "RSA key shorter than 2048 bits refused";
			return -1;
		}
		if (bits > 4096 || bits % 8 != 0) {
			*why_r = "RSA key size must be 2048..4096, a multiple "
			    "of 8";
			return -1;
		}
		return 0;
	}
	*why_r = "unsupported key type (ECDSA P-256/P-384 or RSA only)";
	return -1;
}

static X509_REQ *
csr_parse(const uint8_t *csr, size_t len, EVP_PKEY **key_r,
    const char **why_r)
{
	const unsigned char *p = csr;
	X509_REQ *req = NULL;
	EVP_PKEY *key;
	BIO *bio;

	*key_r = NULL;
	if (len == 0 || len > GOVCA_CSR_MAX) {
		*why_r = "CSR empty or larger than 64 KiB";
		return NULL;
	}
	if (len > 10 && memmem(csr, len, "-----BEGIN", 10) != NULL) {
		if ((bio = BIO_new_mem_buf(csr, (int)len)) == NULL)
			return NULL;
		req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
		BIO_free(bio);
	} else {
		req = d2i_X509_REQ(NULL, &p, (long)len);
		if (req != NULL && p != csr + len) {
			X509_REQ_free(req);
			req = NULL;
		}
	}
	ERR_clear_error();
	if (req == NULL) {
		*why_r = "not a PKCS#10 certificate request (PEM or DER)";
		return NULL;
	}
	if ((key = X509_REQ_get_pubkey(req)) == NULL) {
		*why_r = "the request's public key cannot be decoded";
		goto fail;
	}
	if (key_check(key, why_r) == -1) {
		EVP_PKEY_free(key);
		goto fail;
	}
	/* SECURITY: proof of possession of the private key. */
	if (X509_REQ_verify(req, key) != 1) {
		ERR_clear_error();
		EVP_PKEY_free(key);
		*why_r = "the request's signature does not verify (no proof "
		    "of possession)";
		goto fail;
	}
	*key_r = key;
	return req;
fail:
	ERR_clear_error();
	X509_REQ_free(req);
	return NULL;
}

int
govca_csr_check(const uint8_t *csr, size_t len, const char **error_r)
{
	EVP_PKEY *key;
	X509_REQ *req;

	if ((req = csr_parse(csr, len, &key, error_r)) == NULL)
		return -1;
	EVP_PKEY_free(key);
	X509_REQ_free(req);
	return 0;
}

/* ---- issuing ----------------------------------------------------------- */

static int
issue_key(struct govca *ca, const struct govca_holder *h, EVP_PKEY *pub,
    unsigned days, const char *how, X509 **cert_r, struct govca_issued *iss,
    const char **error_r)
{
	X509_NAME *subject = NULL;
	const char *why, *policy;
	unsigned char *der = NULL;
	char fields[GOVCA_AUDIT_LINE_MAX];
	X509 *cert = NULL;
	char san[ISSUE_ADDRESS_MAX + 256];
	int utf8, dlen;

	memset(iss, 0, sizeof(*iss));
	*cert_r = NULL;
	if (ca->issuing_key == NULL) {
		*error_r = ca_err(ca, "issuing needs the CA keys");
		return -1;
	}
	if (h->profile < GOVCA_PROFILE_OFFICIAL ||
	    h->profile > GOVCA_PROFILE_CITIZEN) {
		*error_r = ca_err(ca, "unknown profile");
		return -1;
	}
	if (address_check(h->address, &utf8, san, sizeof(san), &why) == -1) {
		*error_r = ca_err(ca, "%s", why);
		return -1;
	}
	if (days == 0)
		days = ca->validity_days;
	if (days > GOVCA_VALIDITY_MAX_DAYS) {
		*error_r = ca_err(ca, "validity longer than %d days refused "
		    "(S/MIME BR)", GOVCA_VALIDITY_MAX_DAYS);
		return -1;
	}
	if ((subject = build_subject(ca, h, &why)) == NULL) {
		*error_r = ca_err(ca, "%s", why);
		return -1;
	}
	policy = govca_profile_policy(h->profile, h->unverified);
	if ((cert = new_cert(ca->issuing, subject, pub, days,
	    iss->serial)) == NULL ||
	    add_email_san(cert, san, utf8) == -1 ||
	    add_ee_exts(ca, cert, ca->issuing, pub, policy,
	    "emailProtection") == -1) {
		*error_r = ca_ssl_err(ca_errbuf(), CA_ERRBUF_SIZE,
		    "cannot build the certificate");
		goto fail;
	}
	if (X509_sign(cert, ca->issuing_key, ca_md_for_key(ca->issuing_key))
	    <= 0) {
		*error_r = ca_ssl_err(ca_errbuf(), CA_ERRBUF_SIZE,
		    "cannot sign the certificate");
		goto fail;
	}
	if (ca_db_record_cert(ca, cert, h->address, h->profile, error_r) ==
	    -1)
		goto fail;
	snprintf(fields, sizeof(fields),
	    "serial=%s profile=%s%s address=%s key=%s days=%u",
	    iss->serial, govca_profile_name(h->profile),
	    h->profile == GOVCA_PROFILE_CITIZEN ?
	    (h->unverified ? "/mv" : "/iv") : "", h->address, how, days);
	if (govca_audit(ca, "issue", fields, error_r) == -1)
		goto fail;
	if ((dlen = i2d_X509(cert, &der)) <= 0)
		goto fail;
	iss->der = xmemdup(der, (size_t)dlen);
	iss->der_len = (size_t)dlen;
	OPENSSL_free(der);
	{
		struct tm tm;

		if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
			iss->not_after = timegm(&tm);
	}
	X509_NAME_free(subject);
	*cert_r = cert;
	return 0;
fail:
	X509_NAME_free(subject);
	X509_free(cert);
	return -1;
}

int
govca_issue_csr(struct govca *ca, const struct govca_holder *h,
    const uint8_t *csr, size_t len, unsigned days,
    struct govca_issued *iss_r, const char **error_r)
{
	EVP_PKEY *key;
	X509_REQ *req;
	const char *why;
	X509 *cert;
	int ret;

	memset(iss_r, 0, sizeof(*iss_r));
	if ((req = csr_parse(csr, len, &key, &why)) == NULL) {
		*error_r = ca_err(ca, "%s", why);
		return -1;
	}
	ret = issue_key(ca, h, key, days, "csr", &cert, iss_r, error_r);
	X509_free(cert);
	EVP_PKEY_free(key);
	X509_REQ_free(req);
	return ret;
}

/* A random password of an alphabet without look-alikes (0/O, 1/l/I). */
static void
make_password(char *out, size_t len)
{
	static const char alpha[] =
	    "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
	const size_t n = sizeof(alpha) - 1;
	uint8_t b;
	size_t i = 0;

	while (i < len) {
		if (RAND_bytes(&b, 1) != 1)
			log_fatalx("RAND_bytes failed");
		if (b >= 256 - 256 % n)
			continue;	/* no modulo bias */
		out[i++] = alpha[b % n];
	}
	out[len] = '\0';
}

int
govca_issue_generate(struct govca *ca, const struct govca_holder *h,
    enum govca_key_type key_type, unsigned days, struct buf *p12out,
    char *password, struct govca_issued *iss_r, const char **error_r)
{
	STACK_OF(X509) *chain = NULL;
	PKCS12 *p12 = NULL;
	unsigned char *der = NULL;
	EVP_PKEY *key;
	X509 *cert = NULL;
	int dlen, ret = -1;

	memset(iss_r, 0, sizeof(*iss_r));
	password[0] = '\0';
	if (key_type == 0)
		key_type = ca->key_type;
	if ((key = ca_key_generate(key_type)) == NULL) {
		*error_r = ca_err(ca, "cannot generate a key");
		return -1;
	}
	if (issue_key(ca, h, key, days, govca_key_type_name(key_type), &cert,
	    iss_r, error_r) == -1)
		goto out;
	make_password(password, GOVCA_P12_PASSWORD_LEN);
	chain = sk_X509_new_null();
	if (chain == NULL || sk_X509_push(chain, ca->issuing) <= 0 ||
	    sk_X509_push(chain, ca->root) <= 0)
		goto fail;
	/* SECURITY: PBES2/PBKDF2 + AES-256-CBC for key and certificates,
	 * HMAC-SHA-256 MAC: what NSS, Outlook and Apple Mail import. */
	p12 = PKCS12_create(password, h->address, key, cert, chain,
	    NID_aes_256_cbc, NID_aes_256_cbc, ISSUE_P12_ITER, -1, 0);
	if (p12 == NULL || PKCS12_set_mac(p12, password, -1, NULL, 0,
	    ISSUE_P12_ITER, EVP_sha256()) != 1)
		goto fail;
	if ((dlen = i2d_PKCS12(p12, &der)) <= 0 ||
	    buf_append(p12out, der, (size_t)dlen) == -1)
		goto fail;
	ret = 0;
	goto out;
fail:
	/* The certificate is recorded but its key is lost: revoke it. */
	*error_r = ca_ssl_err(ca_errbuf(), CA_ERRBUF_SIZE,
	    "cannot build the PKCS#12");
	log_warnx("issue: serial=%s pkcs12=failed", iss_r->serial);
	sodium_memzero(password, GOVCA_P12_PASSWORD_LEN + 1);
	govca_issued_free(iss_r);
out:
	OPENSSL_free(der);
	PKCS12_free(p12);
	sk_X509_free(chain);
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}

/* ---- TLS server ------------------------------------------------------ */

static int
dns_name_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
			return 0;
	return 1;
}

int
govca_issue_server(struct govca *ca, const char *const *dns, size_t ndns,
    const char *const *ips, size_t nips, unsigned days, struct buf *key_pem,
    struct buf *chain_pem, struct govca_issued *iss_r, const char **error_r)
{
	struct buf san;
	X509_NAME *subject = NULL;
	EVP_PKEY *key = NULL;
	unsigned char *der = NULL;
	X509 *cert = NULL;
	BIO *bio = NULL;
	char fields[GOVCA_AUDIT_LINE_MAX], *mem;
	uint8_t addr[16];
	size_t i;
	long len;
	int dlen, ret = -1;

	memset(iss_r, 0, sizeof(*iss_r));
	buf_init(&san, 8192);
	if (ca->tls == NULL || ca->tls_key == NULL) {
		*error_r = ca_err(ca, "this CA has no TLS issuing CA");
		goto out;
	}
	if (ndns + nips == 0 || ndns + nips > GOVCA_SERVER_NAMES_MAX) {
		*error_r = ca_err(ca, "give 1..%d names (--dns, --ip)",
		    GOVCA_SERVER_NAMES_MAX);
		goto out;
	}
	if (days == 0)
		days = GOVCA_SERVER_VALIDITY_MAX_DAYS;
	if (days > GOVCA_SERVER_VALIDITY_MAX_DAYS) {
		*error_r = ca_err(ca, "server validity at most %d days",
		    GOVCA_SERVER_VALIDITY_MAX_DAYS);
		goto out;
	}
	for (i = 0; i < ndns; i++) {
		if (!dns_name_ok(dns[i])) {
			*error_r = ca_err(ca, "bad DNS name");
			goto out;
		}
		buf_printf(&san, "%sDNS:%s", san.len ? "," : "", dns[i]);
	}
	for (i = 0; i < nips; i++) {
		if (inet_pton(AF_INET, ips[i], addr) != 1 &&
		    inet_pton(AF_INET6, ips[i], addr) != 1) {
			*error_r = ca_err(ca, "bad IP address");
			goto out;
		}
		buf_printf(&san, "%sIP:%s", san.len ? "," : "", ips[i]);
	}
	key = ca_key_generate(GOVCA_KEY_P256);
	subject = X509_NAME_new();
	if (key == NULL || subject == NULL ||
	    name_add(subject, NID_commonName, ndns > 0 ? dns[0] : ips[0],
	    1) == -1 ||
	    (cert = new_cert(ca->tls, subject, key, days,
	    iss_r->serial)) == NULL ||
	    ca_add_ext(cert, ca->tls, NID_subject_alt_name,
	    buf_str(&san)) == -1 ||
	    add_ee_exts(ca, cert, ca->tls, key, "2.23.140.1.2.1",
	    "serverAuth") == -1 ||
	    X509_sign(cert, ca->tls_key, ca_md_for_key(ca->tls_key)) <= 0) {
		*error_r = ca_ssl_err(ca_errbuf(), CA_ERRBUF_SIZE,
		    "cannot make the server certificate");
		goto out;
	}
	if (ca_db_record_cert(ca, cert, "", GOVCA_PROFILE_SERVER,
	    error_r) == -1)
		goto out;
	snprintf(fields, sizeof(fields), "serial=%s profile=server names=%s",
	    iss_r->serial, buf_str(&san));
	if (govca_audit(ca, "issue", fields, error_r) == -1)
		goto out;
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) !=
	    1)
		goto out;
	len = BIO_get_mem_data(bio, &mem);
	key_pem->secret = 1;
	buf_append(key_pem, mem, (size_t)len);
	OPENSSL_cleanse(mem, (size_t)len);
	BIO_free(bio);
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_X509(bio, cert) != 1 ||
	    PEM_write_bio_X509(bio, ca->tls) != 1)
		goto out;
	len = BIO_get_mem_data(bio, &mem);
	buf_append(chain_pem, mem, (size_t)len);
	if ((dlen = i2d_X509(cert, &der)) > 0) {
		iss_r->der = xmemdup(der, (size_t)dlen);
		iss_r->der_len = (size_t)dlen;
	}
	ret = 0;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	BIO_free(bio);
	buf_free(&san);
	X509_NAME_free(subject);
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}
