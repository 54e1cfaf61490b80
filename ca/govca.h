/*
 * govca.h - the public face of libgovca: the built-in certificate authority
 * (DESIGN.md 4).
 *
 * Used by govmail-ca (every subcommand) and, for look-ups and CMS, by the
 * tools and daemons.  A CA lives in one folder:
 *
 *   root.crt  root.key        root CA (key may be absent: kept offline)
 *   issuing.crt issuing.key   issuing CA: end-entity S/MIME, CRL
 *   tls.crt tls.key           TLS issuing CA (serverAuth certificates)
 *   ocsp.crt ocsp.key         delegated OCSP responder (id-kp-OCSPSigning)
 *   issuing.crl               the current CRL (DER)
 *   certdb/                   Berkeley DB environment (via mailbox/kv.h)
 *   audit.log, audit.log.head hash-chained audit log (BLAKE2b)
 *   crl.lock                  serialises CRL generation across processes
 *
 * Keys are PKCS#8 encrypted with AES-256 under one passphrase, mode 0600.
 *
 * Conventions: functions return 0, or -1 with *error_r set to text that is
 * static or held per thread by libgovca (valid until the thread's next
 * call); error_r must not be NULL.  Serials are lower-case hex without
 * separators.  The `issue`-family functions need a CA opened with
 * GOVCA_OPEN_KEYS; look-ups do not.  A daemon that only checks revocation
 * should use the CRL or /ocsp rather than open the CA folder (0700, the CA
 * user's).
 */
#ifndef GOVMAIL_GOVCA_H
#define GOVMAIL_GOVCA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct buf;

/* ---- limits ---------------------------------------------------------- */

#define GOVCA_SERIAL_LEN 16			/* random bytes, positive */
#define GOVCA_SERIAL_HEX_MAX (2 * GOVCA_SERIAL_LEN + 1)
#define GOVCA_VALIDITY_MAX_DAYS 824		/* S/MIME BR 6.3.2 */
#define GOVCA_VALIDITY_DEFAULT_DAYS 730
#define GOVCA_SERVER_VALIDITY_MAX_DAYS 398	/* TLS BR */
#define GOVCA_ROOT_DAYS (20 * 365 + 5)
#define GOVCA_ISSUING_DAYS (10 * 365 + 3)
#define GOVCA_CRL_DAYS_MAX 7			/* nextUpdate <= 7 days */
#define GOVCA_OCSP_DAYS 365			/* responder certificate */
#define GOVCA_OCSP_RENEW_DAYS 30		/* renewed when fewer left */
#define GOVCA_CSR_MAX (64 * 1024)		/* bytes of a CSR file */
#define GOVCA_OCSP_REQUEST_MAX 8192		/* bytes of an OCSP request */
#define GOVCA_OCSP_REQUESTS_MAX 16		/* certificates per request */
#define GOVCA_HTTP_PATH_MAX 2048		/* bytes of a request path */
#define GOVCA_PASSPHRASE_MAX 1024		/* bytes of the key passphrase */
#define GOVCA_P12_PASSWORD_LEN 20		/* random PKCS#12 password */
#define GOVCA_P12_ITER 10000			/* PBKDF2 iterations */
#define GOVCA_TEXT_MAX 256			/* one subject attribute */
#define GOVCA_SERVER_NAMES_MAX 32		/* DNS + IP names */
#define GOVCA_AUDIT_LINE_MAX 4096		/* one audit record */
#define GOVCA_OPAQUE_ID_LEN 16			/* hex chars of a citizen's id */

/* ---- names ------------------------------------------------------------ */

enum govca_profile {
	GOVCA_PROFILE_OFFICIAL = 1,	/* sponsor-validated */
	GOVCA_PROFILE_DEPARTMENT,	/* organization-validated */
	GOVCA_PROFILE_LEGAL_PERSON,	/* organization-validated, NTRCN- */
	GOVCA_PROFILE_CITIZEN,		/* individual- or mailbox-validated */
	GOVCA_PROFILE_SERVER,		/* TLS server (serverAuth) */
};

enum govca_key_type {
	GOVCA_KEY_P256 = 1,
	GOVCA_KEY_P384,
	GOVCA_KEY_RSA2048,
	GOVCA_KEY_RSA3072,
};

/* RFC 5280 5.3.1 reason codes (7 is unused). */
enum govca_reason {
	GOVCA_REASON_UNSPECIFIED = 0,
	GOVCA_REASON_KEY_COMPROMISE = 1,
	GOVCA_REASON_CA_COMPROMISE = 2,
	GOVCA_REASON_AFFILIATION_CHANGED = 3,
	GOVCA_REASON_SUPERSEDED = 4,
	GOVCA_REASON_CESSATION = 5,
	GOVCA_REASON_CERTIFICATE_HOLD = 6,
	GOVCA_REASON_PRIVILEGE_WITHDRAWN = 9,
};

/* Each parse returns 0, or -1 for an unknown name. */
int govca_profile_parse(const char *s, enum govca_profile *p_r);
const char *govca_profile_name(enum govca_profile p);
int govca_key_type_parse(const char *s, enum govca_key_type *k_r);
const char *govca_key_type_name(enum govca_key_type k);
int govca_reason_parse(const char *s, enum govca_reason *r_r);
const char *govca_reason_name(enum govca_reason r);

/* The S/MIME BR policy OID of a profile ("2.23.140.1.5.3.3"). */
const char *govca_profile_policy(enum govca_profile p, int unverified);

/* ---- opening a CA ---------------------------------------------------- */

struct govca_settings {
	const char *base_url;		/* "http://127.0.0.1:2080", no '/' at end */
	unsigned validity_days;		/* default end-entity validity */
	enum govca_key_type key_type;	/* default --generate key */
	unsigned crl_days;		/* nextUpdate - thisUpdate, 1..7 */
	const char *name;		/* CA name in subjects ("govmail") */
};

struct govca;

enum govca_open_flags {
	GOVCA_OPEN_KEYS = 1 << 0,	/* decrypt issuing, tls and ocsp keys */
	GOVCA_OPEN_OCSP_KEY = 1 << 1,	/* decrypt only the OCSP key */
};

/*
 * Open a CA folder made by govca_init: certificates, the certificate
 * database and, with GOVCA_OPEN_KEYS, the private keys (passphrase
 * needed; an OCSP responder certificate near its end is renewed then).
 * settings is copied.  A process opens a CA folder once at a time (the
 * database environment is registered per process); the handle may be used
 * by several threads for look-ups and OCSP.  Release with govca_close().
 */
int govca_open(const char *dir, const struct govca_settings *settings,
    const char *passphrase, unsigned flags, struct govca **ca_r,
    const char **error_r);
void govca_close(struct govca *ca);
/* Text of the calling thread's last error. */
const char *govca_error(struct govca *ca);

/*
 * Create a CA in dir (made 0700; must not hold a CA yet): a P-384 root
 * (20 years, pathlen 1), an issuing CA with issuing_key (P-256 or P-384,
 * 10 years, pathlen 0, emailProtection), a TLS issuing CA (serverAuth), a
 * delegated OCSP responder certificate, an empty CRL, the certificate
 * database and the audit log's first record.
 */
int govca_init(const char *dir, const struct govca_settings *settings,
    const char *passphrase, enum govca_key_type issuing_key,
    const char **error_r);

/*
 * The offline split.  govca_init_root makes only the root (on the offline
 * machine).  govca_init_issuing makes the issuing CA's key in dir and
 * writes its CSR (PEM) to csr_path.  govca_sign_issuing (on the root's
 * machine, in the root's folder) signs such a CSR into a CA certificate
 * written to cert_path.  govca_import_issuing installs that certificate and
 * the root's in dir and completes it (TLS CA, OCSP, CRL, database).
 */
int govca_init_root(const char *dir, const struct govca_settings *settings,
    const char *passphrase, const char **error_r);
int govca_init_issuing(const char *dir, const struct govca_settings *settings,
    const char *passphrase, enum govca_key_type issuing_key,
    const char *csr_path, const char **error_r);
int govca_sign_issuing(const char *root_dir, const char *passphrase,
    const char *csr_path, const char *cert_path, const char **error_r);
int govca_import_issuing(const char *dir,
    const struct govca_settings *settings, const char *passphrase,
    const char *cert_path, const char *root_path, const char **error_r);

/* ---- issuing --------------------------------------------------------- */

/* Who the certificate is for: from the mail store's account. */
struct govca_holder {
	const char *address;		/* the mailbox (SAN) */
	enum govca_profile profile;
	const char *display_name;	/* official, citizen: the person */
	const char *given_name;		/* NULL: derived from display_name */
	const char *surname;		/* NULL: derived from display_name */
	const char *organisation;	/* official, department, legal person */
	const char *org_id;		/* legal person: USCC; official and
					   department: ISO 3166-2 subdivision */
	const char *title;		/* official: optional */
	int unverified;			/* citizen: mailbox-validated */
	int legacy_code;		/* legal person: USCC check not enforced */
	const char *resident_id;	/* citizen: checked, never written */
};

/*
 * Check a PKCS#10 request (PEM or DER, at most GOVCA_CSR_MAX bytes): it
 * parses, its signature verifies with its own key (proof of possession),
 * and the key is ECDSA P-256/P-384 or RSA 2048..4096.  The subject in the
 * request is ignored by issuing.  Returns 0 or -1 with *error_r.
 */
int govca_csr_check(const uint8_t *csr, size_t len, const char **error_r);

/* What an issuance produced. */
struct govca_issued {
	char serial[GOVCA_SERIAL_HEX_MAX];
	uint8_t *der;			/* the certificate; free() it */
	size_t der_len;
	time_t not_after;
};
void govca_issued_free(struct govca_issued *iss);

/*
 * Issue an end-entity S/MIME certificate for holder from a CSR (days 0:
 * the default; at most GOVCA_VALIDITY_MAX_DAYS), record it in the
 * database and the audit log.  Nothing is recorded on error.
 */
int govca_issue_csr(struct govca *ca, const struct govca_holder *holder,
    const uint8_t *csr, size_t len, unsigned days,
    struct govca_issued *iss_r, const char **error_r);

/*
 * Same with a key generated here (key_type 0: the configured default):
 * the key and the chain are written only into *p12 (a PKCS#12 with
 * AES-256-CBC, PBKDF2 and an HMAC-SHA-256 MAC) under a random password put
 * in password (GOVCA_P12_PASSWORD_LEN + 1 bytes).
 */
int govca_issue_generate(struct govca *ca, const struct govca_holder *holder,
    enum govca_key_type key_type, unsigned days, struct buf *p12,
    char *password, struct govca_issued *iss_r, const char **error_r);

/*
 * A TLS server certificate (serverAuth; DNS and IP SANs; at most
 * GOVCA_SERVER_NAMES_MAX names) from the TLS issuing CA, with a fresh
 * P-256 key: key_pem gets the unencrypted key, chain_pem the certificate
 * followed by the TLS CA certificate.
 */
int govca_issue_server(struct govca *ca, const char *const *dns, size_t ndns,
    const char *const *ips, size_t nips, unsigned days, struct buf *key_pem,
    struct buf *chain_pem, struct govca_issued *iss_r, const char **error_r);

/*
 * Bulk issuance: between govca_batch_begin and govca_batch_commit, the
 * database commits and audit records of issuances do not wait for the
 * disk; govca_batch_commit makes all of them durable at once (one log
 * flush, one audit fsync), so a batch of N costs about one disk flush, not
 * 2N.  A certificate issued inside a batch must not be handed out before
 * govca_batch_commit returned 0.  Revocations and CRLs are always durable
 * on their own.
 */
void govca_batch_begin(struct govca *ca);
int govca_batch_commit(struct govca *ca, const char **error_r);

/* ---- the certificate database ---------------------------------------- */

enum govca_status {
	GOVCA_STATUS_GOOD = 0,
	GOVCA_STATUS_REVOKED = 1,
};

struct govca_cert {
	char serial[GOVCA_SERIAL_HEX_MAX];
	char *address;			/* "" for server certificates */
	enum govca_profile profile;
	enum govca_status status;
	enum govca_reason reason;
	time_t not_before, not_after, revoked_at;
	uint8_t *der;
	size_t der_len;
};
void govca_cert_free(struct govca_cert *c);

/* By serial; -1 with "not found" if unknown. */
int govca_cert_get(struct govca *ca, const char *serial,
    struct govca_cert *c_r, const char **error_r);
/*
 * Every certificate (address NULL) or those of one address, in serial
 * order (by address: in serial order within it).  cb returning non-zero
 * stops.  The struct passed to cb is valid during the call only.
 */
int govca_cert_list(struct govca *ca, const char *address,
    int (*cb)(const struct govca_cert *c, void *ctx), void *ctx,
    const char **error_r);
/* The current certificate of address: good, unexpired, latest notBefore. */
int govca_cert_current(struct govca *ca, const char *address,
    struct govca_cert *c_r, const char **error_r);

/* Revoke (status, time, reason), regenerate the CRL, audit. */
int govca_revoke(struct govca *ca, const char *serial,
    enum govca_reason reason, const char **error_r);
/* Regenerate issuing.crl (nextUpdate = now + crl_days), audit. */
int govca_crl_generate(struct govca *ca, const char **error_r);
/*
 * Database housekeeping: checkpoint and removal of log files no longer
 * needed (serve does it every minute; `govmail-ca crl`, meant for a daily
 * cron job, and batches do it too).
 */
int govca_maintain(struct govca *ca, const char **error_r);
/* nextUpdate of the current CRL, 0 if none. */
time_t govca_crl_next_update(struct govca *ca);

/* ---- OCSP and the repository ------------------------------------------ */

/*
 * Answer one DER OCSP request (RFC 6960): always fills resp with a DER
 * OCSPResponse (malformedRequest for junk or more than GOVCA_OCSP_REQUEST_MAX
 * bytes, unauthorized for another CA's certificates), signed by the
 * delegated responder, with the nonce echoed.  Returns 0, or -1 only on an
 * internal failure.  Thread-safe.
 */
int govca_ocsp_respond(struct govca *ca, const uint8_t *req, size_t len,
    struct buf *resp, const char **error_r);

/*
 * Serve the repository over HTTP (libmicrohttpd, a thread pool of threads)
 * on listen ("127.0.0.1:2080") until *stop becomes non-zero:
 *   /ca/root.crt /ca/issuing.crt /ca/tls.crt  DER
 *   /crl/issuing.crl                          DER
 *   /ocsp  (POST body, or GET /ocsp/<base64url>)
 *   /certs/<address>[.pem|.der]               current certificate
 */
int govca_serve(struct govca *ca, const char *listen, unsigned threads,
    volatile int *stop, const char **error_r);

/* ---- audit ------------------------------------------------------------ */

/*
 * Append one record "event key=value ..." to the CA's hash-chained audit
 * log (fsynced before returning).  Values must not hold spaces or newlines
 * (callers escape); at most GOVCA_AUDIT_LINE_MAX bytes.
 */
int govca_audit(struct govca *ca, const char *event, const char *fields,
    const char **error_r);
/* The same on a log file path (for init, before a CA is open). */
int govca_audit_append(const char *path, const char *event,
    const char *fields, const char **error_r);
/*
 * Verify a log end to end.  Each problem (altered, removed, reordered,
 * malformed record) is passed to report with its 1-based line position.
 * Returns 0 if intact (with *records_r), -1 if damaged or unreadable.
 */
int govca_audit_verify(const char *path,
    void (*report)(uint64_t position, const char *problem, void *ctx),
    void *ctx, uint64_t *records_r, const char **error_r);

/* S/MIME sign, verify, encrypt, decrypt (ca/cms.c). */
#include "govca_cms.h"

#endif
