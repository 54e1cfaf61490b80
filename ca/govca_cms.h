/*
 * govca_cms.h - S/MIME (RFC 8551) for notices: sign, verify, encrypt and
 * decrypt on OpenSSL 3's CMS API.  Part of libgovca; govca.h includes it.
 *
 * Who calls it: govmail-notice (sign, encrypt), smtpd (verify, for list
 * posts and Authentication-Results), govmail-ca's tests, and the demo.
 *
 * Conventions: functions return 0 on success and -1 on failure with
 * *error_r set to a static, human-readable reason (never NULL after -1).
 * Outputs are appended to a caller-owned struct buf (lib/buf.h); its max
 * bounds the output, and an output that would pass it fails cleanly.
 * Messages are bytes (uint8_t *, size_t); lines may end in CRLF or bare LF
 * on input and always end in CRLF on output.
 *
 * Trust: verify and decrypt take hostile input (anything a remote sender
 * can put in a message).  Every walk over such input is linear and bounded
 * by the GOVCA_CMS_MAX_* / SMIME_MAX_* limits below; nothing recurses on
 * a depth the sender chooses.
 */
#ifndef GOVMAIL_GOVCA_CMS_H
#define GOVMAIL_GOVCA_CMS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>
#include <openssl/evp.h>

#include "buf.h"

/* Largest message verify/encrypt/decrypt accept (bytes). */
#define GOVCA_CMS_MAX_MESSAGE		(64u * 1024 * 1024)
/* Largest DER CMS object (signature part, p7m) accepted, after base64. */
#define GOVCA_CMS_MAX_DER		(GOVCA_CMS_MAX_MESSAGE)
/* Largest detached-signature part (base64 text) accepted: 1 MiB. */
#define GOVCA_CMS_MAX_SIGNATURE		(1024u * 1024)
/* Most recipients of one EnvelopedData. */
#define GOVCA_CMS_MAX_RECIPIENTS	1000
/* Most e-mail addresses taken from one certificate's SAN. */
#define GOVCA_CMS_MAX_EMAILS		32
/* Longest e-mail address kept (RFC 5321 path limit). */
#define GOVCA_CMS_MAX_ADDRESS		254
/* Longest reason text in a result, NUL included. */
#define GOVCA_CMS_REASON_MAX		256

/* RFC 2046 5.1.1: a boundary is 1 to 70 characters. */
#define SMIME_BOUNDARY_MAX		70
/* Largest header block (all header lines of one entity), bytes. */
#define SMIME_MAX_HEADER_BYTES		(256u * 1024)
/* Longest unfolded header field value kept, bytes. */
#define SMIME_MAX_FIELD			(16u * 1024)
/* Most parameters on one Content-Type. */
#define SMIME_MAX_PARAMS		32
/* Longest token or parameter value in a Content-Type. */
#define SMIME_MAX_TOKEN			256
/* RFC 5322 2.1.1: at most 998 characters on a line (CRLF excluded). */
#define SMIME_MAX_LINE			998
/* RFC 2047 2: an encoded-word is at most 75 characters. */
#define SMIME_MAX_ENCODED_WORD		75

/*
 * An identity: a certificate, its private key and the chain that goes with
 * it (issuing CA first; the root may be left out).  Used to sign and to
 * decrypt.  Opaque; free with govca_cms_identity_free().
 */
struct govca_cms_identity;

/*
 * Load an identity from a PKCS#12 file (AES-256 or legacy ciphers that the
 * default provider supports) with its password (may be "" ; NULL means no
 * password).  The file is limited to GOVCA_CMS_MAX_SIGNATURE bytes.  On
 * success *id_r is a new identity owned by the caller.
 */
int govca_cms_identity_load_p12(const char *path, const char *password,
    struct govca_cms_identity **id_r, const char **error_r);

/*
 * Load an identity from PEM files: the certificate, the private key
 * (encrypted PKCS#8 opens with key_password; NULL if not encrypted), and an
 * optional chain file (NULL for none) holding one or more certificates.
 * cert_path and key_path may name the same file.
 */
int govca_cms_identity_load_pem(const char *cert_path, const char *key_path,
    const char *key_password, const char *chain_path,
    struct govca_cms_identity **id_r, const char **error_r);

/*
 * Make an identity from objects already in memory.  The identity takes its
 * own references (X509_up_ref, EVP_PKEY_up_ref); the caller keeps theirs.
 * chain may be NULL.  Fails if the key does not match the certificate.
 */
int govca_cms_identity_new(X509 *cert, EVP_PKEY *key, STACK_OF(X509) *chain,
    struct govca_cms_identity **id_r, const char **error_r);

/* The identity's certificate (borrowed; valid while the identity lives). */
X509 *govca_cms_identity_cert(const struct govca_cms_identity *id);

/* Free an identity (NULL is fine).  The key is freed by OpenSSL. */
void govca_cms_identity_free(struct govca_cms_identity *id);

/*
 * The micalg name (RFC 8551 3.5.3.2) the identity's key signs with:
 * "sha-256" for P-256 and RSA, "sha-384" for P-384, "sha-512" for P-521.
 * A static string.
 */
const char *govca_cms_identity_micalg(const struct govca_cms_identity *id);

/* ---------------------------------------------------------------- sign */

/*
 * Sign a MIME entity (its own header lines - at least Content-Type - then an
 * empty line, then its body) and append to out a complete RFC 8551
 * multipart/signed entity:
 *
 *   Content-Type: multipart/signed; protocol="application/pkcs7-signature";
 *    micalg=sha-256; boundary="..."
 *   (empty line)
 *   --boundary
 *   <the inner entity, canonical CRLF, byte for byte what was signed>
 *   --boundary
 *   Content-Type: application/pkcs7-signature; name=smime.p7s
 *   Content-Transfer-Encoding: base64
 *   Content-Disposition: attachment; filename=smime.p7s
 *   <detached CMS SignedData, base64>
 *   --boundary--
 *
 * The SignedData carries the signer certificate and its chain, and the
 * signed attributes contentType, signingTime, messageDigest,
 * SMIMECapabilities (AES-256-CBC, AES-128-CBC) and ESS
 * signingCertificateV2.  The digest matches the key (see _micalg).
 *
 * The entity is canonicalised (bare LF -> CRLF) before signing.  It must be
 * 7-bit (no NUL, no byte >= 0x80: use base64 or quoted-printable, see
 * smime_entity_text) with lines of at most SMIME_MAX_LINE characters, and at
 * most GOVCA_CMS_MAX_MESSAGE bytes; else -1.  The output does not include
 * MIME-Version or any outer header: see smime_message_build().
 */
int govca_cms_sign(const struct govca_cms_identity *id, const uint8_t *entity,
    size_t len, struct buf *out, const char **error_r);

/* ---------------------------------------------------------- verify */

enum govca_cms_status {
	GOVCA_CMS_NEUTRAL = 0,	/* not signed (or encrypted) */
	GOVCA_CMS_PASS,		/* signature, chain, purpose, revocation */
	GOVCA_CMS_FAIL,		/* signed, but something did not hold */
};

/* Certificate class, from the CA/B Forum S/MIME BR policy OID. */
enum govca_cms_class {
	GOVCA_CMS_CLASS_NONE = 0,	/* no S/MIME BR policy OID */
	GOVCA_CMS_CLASS_MAILBOX,	/* 2.23.140.1.5.1.x mailbox-valid. */
	GOVCA_CMS_CLASS_ORGANIZATION,	/* 2.23.140.1.5.2.x org., dept */
	GOVCA_CMS_CLASS_OFFICIAL,	/* 2.23.140.1.5.3.x sponsor-valid. */
	GOVCA_CMS_CLASS_INDIVIDUAL,	/* 2.23.140.1.5.4.x citizen, IV */
};

/*
 * Revocation callback: is this certificate (the signer's) revoked?  Return
 * 0 if not, 1 if revoked (set *reason_r to a static text such as
 * "keyCompromise" if known), -1 if the answer is not available (the
 * result is then FAIL with a "revocation status unavailable" reason).
 */
typedef int govca_cms_revoked_fn(X509 *cert, void *ctx,
    const char **reason_r);

/* Accept a certificate expired now but valid at the claimed signingTime. */
#define GOVCA_CMS_VERIFY_SIGNING_TIME	0x01
/* Skip the From: check (from_matches stays 0). */
#define GOVCA_CMS_VERIFY_NO_FROM	0x02

/*
 * Verified signer chains, so that a run of messages from one signer (a
 * department's bills) does not verify the same chain (the issuing CA's
 * signature by the root, the signer's by the issuing CA, the CRL's) for
 * every message.  An entry holds the chain built for a signer certificate
 * (keyed by the SHA-256 of its DER) and the CRL set it was checked
 * against; it is used only while that CRL set is the one given (the same
 * stack, the same number of entries and lastUpdate in each CRL), for at
 * most GOVCA_CHAIN_CACHE_TTL seconds, and never past the earliest notAfter
 * in the chain.  The message's own signature, its ESS signingCertificate,
 * From: and the revoked callback are still checked for every message.
 * Thread-safe (a mutex inside).  Clear it whenever the trusted store
 * changes.  At most GOVCA_CHAIN_CACHE_SIZE entries (the oldest go).
 */
#define GOVCA_CHAIN_CACHE_TTL	300
#define GOVCA_CHAIN_CACHE_SIZE	64

struct govca_chain_cache;
struct govca_chain_cache *govca_chain_cache_new(void);
void govca_chain_cache_free(struct govca_chain_cache *cache);
void govca_chain_cache_clear(struct govca_chain_cache *cache);
/* Hits and misses so far (for logs and tests). */
void govca_chain_cache_stats(struct govca_chain_cache *cache,
    unsigned long *hits_r, unsigned long *misses_r);
/*
 * The same cache also keeps the certificates messages carry, parsed, keyed
 * by their whole DER (at most GOVCA_CERT_CACHE_SIZE; the oldest go): the
 * next message of a signer does not parse them again.  Its hits and misses.
 */
#define GOVCA_CERT_CACHE_SIZE	64
/* Larger certificates are parsed every time, not kept (real ones: 1-2 KB). */
#define GOVCA_CERT_CACHE_DER_MAX	8192
/* Certificates in one SignedData parsed through that cache (more: whole). */
#define GOVCA_CMS_CERTS_MAX	16
void govca_chain_cache_cert_stats(struct govca_chain_cache *cache,
    unsigned long *hits_r, unsigned long *misses_r);

struct govca_cms_verify_opts {
	/* Trusted roots (required).  Borrowed: only read while verifying. */
	X509_STORE *store;
	/* CRLs to check the signer against (NULL: none).  When given, a CRL
	 * of the signer's issuer must be among them. */
	STACK_OF(X509_CRL) *crls;
	/* Revocation look-up for the signer certificate (NULL: none). */
	govca_cms_revoked_fn *revoked;
	void *revoked_ctx;
	/* Verification time; 0 means now. */
	time_t at;
	unsigned int flags;	/* GOVCA_CMS_VERIFY_* */
	/* Verified chains to reuse (NULL: none); used only when at == 0. */
	struct govca_chain_cache *cache;
};

struct govca_cms_result {
	enum govca_cms_status status;
	/* Why (always set, e.g. "good signature", "certificate revoked",
	 * "content digest mismatch", "not signed").  NUL-terminated. */
	char reason[GOVCA_CMS_REASON_MAX];
	/* The signer certificate, owned by the result (NULL if unsigned or
	 * the signature could not be parsed). */
	X509 *signer;
	/* Addresses from the signer's SAN (rfc822Name and SmtpUTF8Mailbox;
	 * the subject's emailAddress only if the SAN holds none). */
	char *emails[GOVCA_CMS_MAX_EMAILS];
	size_t n_emails;
	enum govca_cms_class cert_class;
	/* 1 if the message has exactly one From: header naming exactly one
	 * address, and that address equals one of emails (local part exact,
	 * domain ASCII case-insensitive).  A PASS with from_matches == 0 is a
	 * valid signature by someone else: callers must look at both. */
	int from_matches;
	/* The From: address (empty if none or unparseable). */
	char from[GOVCA_CMS_MAX_ADDRESS + 1];
	/* signingTime from the signed attributes (0 if absent). */
	time_t signing_time;
	/* 1 if the signature was opaque (application/pkcs7-mime). */
	int opaque;
	/* The signed inner entity, canonical CRLF (empty if unsigned). */
	struct buf content;
};

/* Set up a result for govca_cms_verify (status NEUTRAL, nothing owned). */
void govca_cms_result_init(struct govca_cms_result *res);
/* Free what a result owns; it may be reused after govca_cms_result_init. */
void govca_cms_result_free(struct govca_cms_result *res);

/*
 * Verify a whole RFC 5322 message (header and body).  Only the top-level
 * entity is examined: multipart/signed with a detached
 * application/(x-)pkcs7-signature, or application/(x-)pkcs7-mime with
 * smime-type=signed-data (opaque).  Anything else is NEUTRAL.
 *
 * PASS needs: one signer, with a SHA-256/384/512 digest and a key of at
 * least 112 bits of security (RSA 2048, P-256); its signature over the
 * content (and the signed
 * attributes, including signingCertificateV2 when present); a chain from
 * the signer to a root in opts->store; the S/MIME signing purpose
 * (emailProtection EKU, digitalSignature or nonRepudiation key usage);
 * validity at opts->at (or at signingTime, see flags); and not revoked by
 * opts->crls or opts->revoked.  The From: check and the class are
 * reported, not enforced.
 *
 * opts is required (NULL is an error) and only read.  res must have been
 * set up with govca_cms_result_init and is filled in every case.  Returns
 * 0 when a verdict was reached (PASS, FAIL or NEUTRAL), -1 when the
 * message is malformed or over a limit (no header end, no boundary,
 * boundary never closed, header too large, ...): then
 * status is FAIL (if it claimed to be signed) or NEUTRAL, and reason and
 * *error_r say why.
 */
int govca_cms_verify(const uint8_t *msg, size_t len,
    const struct govca_cms_verify_opts *opts, struct govca_cms_result *res,
    const char **error_r);

/*
 * Append the RFC 7281 method result for an Authentication-Results field
 * (RFC 8601), without the "Authentication-Results: host;" prefix, e.g.
 *   smime=pass header.smime-identifier=dept@gov.example
 *    header.smime-serial=4f1a...
 *   smime=fail reason="certificate revoked" header.smime-identifier=...
 * The identifier is the SAN address matching From:, else the first one;
 * it is left out if not printable ASCII (SmtpUTF8Mailbox).  Everything
 * taken from the message is quoted and escaped, so a hostile certificate
 * cannot add properties.  -1 only if out is full.
 */
int govca_cms_auth_result(const struct govca_cms_result *res,
    struct buf *out);

/* "pass", "fail", "neutral" (RFC 7281 result names). */
const char *govca_cms_status_name(enum govca_cms_status status);
/* "official", "organization", "individual", "mailbox", "none". */
const char *govca_cms_class_name(enum govca_cms_class cls);

/* ---------------------------------------------------- encrypt/decrypt */

/*
 * Encrypt a whole message (or a bare MIME entity) to n recipient
 * certificates (1..GOVCA_CMS_MAX_RECIPIENTS) with AES-256-CBC: RSA
 * recipients by key transport, EC recipients by ECDH key agreement.  The
 * message's Content-* header fields and body become the inner entity
 * (canonical CRLF); all other header fields (From, To, Subject, Date,
 * Message-ID, ...) stay outside, followed by MIME-Version and
 *   Content-Type: application/pkcs7-mime; smime-type=enveloped-data;
 *    name=smime.p7m
 * and the base64 EnvelopedData.  Sign first (govca_cms_sign) and then
 * encrypt the signed message for sign-then-encrypt.
 */
int govca_cms_encrypt(X509 *const *recipients, size_t n, const uint8_t *msg,
    size_t len, struct buf *out, const char **error_r);

/* Output only the decrypted inner entity, without the outer headers. */
#define GOVCA_CMS_DECRYPT_ENTITY	0x01

/*
 * Decrypt an application/pkcs7-mime enveloped-data message with an
 * identity whose certificate is among the recipients.  Appends to out the
 * message rebuilt: the outer header fields except Content-* and
 * MIME-Version, then MIME-Version: 1.0 and the inner entity - so that
 * govca_cms_verify can check a sign-then-encrypt message's From: - or,
 * with GOVCA_CMS_DECRYPT_ENTITY, the inner entity alone (what
 * `openssl cms -decrypt` prints).  -1 if not enveloped-data, not for this
 * identity, or damaged.
 */
int govca_cms_decrypt(const struct govca_cms_identity *id, const uint8_t *msg,
    size_t len, unsigned int flags, struct buf *out, const char **error_r);

/* ------------------------------------------------------ MIME helpers */

enum smime_cte {
	SMIME_CTE_BASE64 = 0,
	SMIME_CTE_QUOTED_PRINTABLE,
};

/*
 * Build a single-part MIME entity from text: Content-Type (content_type,
 * or "text/plain; charset=utf-8" when NULL), Content-Transfer-Encoding,
 * an empty line, and the body encoded as base64 or quoted-printable.  Line
 * breaks in text (LF or CRLF) become CRLF before encoding, so the entity
 * is 7-bit and ready for govca_cms_sign.
 */
int smime_entity_text(const char *content_type, enum smime_cte cte,
    const uint8_t *text, size_t len, struct buf *out, const char **error_r);

/* Outer header fields of a message; NULL fields are left out. */
struct smime_headers {
	const char *from;	/* required: "Name <a@b>" or "a@b" */
	const char *to;		/* required: one or more addresses */
	const char *cc;
	const char *subject;	/* UTF-8; RFC 2047 encoded if not ASCII */
	const char *date;	/* NULL: now, RFC 5322 format, UTC */
	const char *message_id;	/* NULL: "<random@from-domain>" */
};

/*
 * Append a whole RFC 5322 message: From, To, Cc, Subject, Date, Message-ID,
 * MIME-Version: 1.0, then the entity (e.g. govca_cms_sign's output) as is.
 * Display names and the subject with non-ASCII text are RFC 2047 encoded
 * (UTF-8, base64 encoded-words of at most SMIME_MAX_ENCODED_WORD, folded).
 * Header values must not contain CR or LF (-1 otherwise: no header
 * injection).
 */
int smime_message_build(const struct smime_headers *h, const uint8_t *entity,
    size_t len, struct buf *out, const char **error_r);

/*
 * Extract the address of a From:-style header value ("Name <a@b>",
 * "a@b (comment)", "\"x, y\" <a@b>").  Copies the first address into addr
 * (size addrsz) and sets *count_r to how many addresses the value names.
 * -1 if none can be parsed or it does not fit.
 */
int smime_address_parse(const char *value, char *addr, size_t addrsz,
    size_t *count_r);

/*
 * 1 if two addresses are equal: local part exact, domain ASCII
 * case-insensitive, an internationalized domain compared by its A-labels
 * (RFC 8398 5), so that U-labels in From: match A-labels in a
 * certificate's SAN.
 */
int smime_address_equal(const char *a, const char *b);

#endif
