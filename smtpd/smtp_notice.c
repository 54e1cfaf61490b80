/*
 * smtp_notice.c - S/MIME on arrival: verify a signed message against the
 * government CA ([smtpd] notice_ca_file, notice_crl_file), refuse a post
 * to a notice list unless it is validly signed by an official or
 * department certificate whose address is From:, add
 * Authentication-Results: smime=... (RFC 7281) to signed mail, apply the
 * official-domain policy ([smtpd] official_domains, official_policy) to
 * unauthenticated mail, and record where a notice went for the report.
 *
 * govmail-smtpd workers, helper threads (lib/tpool): signature checks are
 * CPU work and never run on the event loop.  The message bytes are the
 * sender's and trusted for nothing; govca_cms_verify bounds its walk, and
 * every text taken from the message or a certificate is reduced to
 * printable ASCII before it reaches a reply or a header.
 */
#include "autoconf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "buf.h"
#include "config.h"
#include "govca_cms.h"
#include "log.h"
#include "mailbox.h"
#include "smtp_session.h"
#include "smtpd.h"
#include "xmalloc.h"

/* Largest CRL file read (bytes). */
#define SMTP_NOTICE_CRL_MAX (16u * 1024 * 1024)
/* Longest reason text put into a reply or warning. */
#define SMTP_NOTICE_REASON_MAX 120
/* Longest Message-ID kept for the report. */
#define SMTP_NOTICE_MSGID_MAX STORE_NOTICE_ID_MAX
/* Prefix added to the Subject: of unverified official-domain mail. */
#define SMTP_NOTICE_TAG "[UNVERIFIED SENDER] "

/*
 * Each helper thread keeps its own trust store and CRL copy: no locks, and
 * each is read again when its file changes (size, mtime, inode).
 */
static __thread X509_STORE *nt_store;
static __thread struct stat nt_ca_st;
static __thread X509_STORE *nt_empty;
static __thread STACK_OF(X509_CRL) *nt_crls;
/* Signer chains verified by this thread, dropped when the CA file or the
 * CRL file is read again (govca_chain_cache: bills from one department
 * verify the department's chain once, not per message). */
static __thread struct govca_chain_cache *nt_chains;
static __thread struct stat nt_crl_st;


/* 1 if the file did not change since it was read. */
static int
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_ino == b->st_ino &&
	    a->st_dev == b->st_dev &&
	    a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	    a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static X509_STORE *
notice_trust(const struct config *cfg)
{
	const char *path = config_path_get(cfg, "smtpd", "notice_ca_file");
	struct stat sb;
	X509_STORE *st;

	if (path[0] == '\0')
		return NULL;
	if (stat(path, &sb) < 0) {
		log_warn("smtpd: event=notice-ca-unreadable file=%s", path);
		return NULL;
	}
	if (nt_store != NULL && same_file(&sb, &nt_ca_st))
		return nt_store;
	if ((st = X509_STORE_new()) == NULL)
		return NULL;
	if (X509_STORE_load_file(st, path) != 1) {
		log_warnx("smtpd: event=notice-ca-unreadable file=%s", path);
		X509_STORE_free(st);
		ERR_clear_error();
		return NULL;
	}
	X509_STORE_free(nt_store);
	nt_store = st;
	nt_ca_st = sb;
	govca_chain_cache_clear(nt_chains);
	return st;
}

static void
crls_free(void)
{
	if (nt_crls != NULL)
		sk_X509_CRL_pop_free(nt_crls, X509_CRL_free);
	nt_crls = NULL;
	govca_chain_cache_clear(nt_chains);
	memset(&nt_crl_st, 0, sizeof(nt_crl_st));
}

/*
 * The CRLs of notice_crl_file, re-read when the file changed.  NULL with
 * *bad_r = 0 when none is configured; NULL with *bad_r = 1 when one is
 * configured but cannot be read (callers fail closed).
 */
static STACK_OF(X509_CRL) *
notice_crls(const struct config *cfg, int *bad_r)
{
	const char *path = config_path_get(cfg, "smtpd", "notice_crl_file");
	struct stat sb;
	BIO *bio;
	X509_CRL *crl;
	STACK_OF(X509_CRL) *sk;

	*bad_r = 0;
	if (path[0] == '\0')
		return NULL;
	if (stat(path, &sb) < 0 || sb.st_size <= 0 ||
	    (uint64_t)sb.st_size > SMTP_NOTICE_CRL_MAX) {
		log_warn("smtpd: event=notice-crl-unreadable file=%s", path);
		crls_free();
		*bad_r = 1;
		return NULL;
	}
	if (nt_crls != NULL && same_file(&sb, &nt_crl_st))
		return nt_crls;
	crls_free();
	if ((sk = sk_X509_CRL_new_null()) == NULL ||
	    (bio = BIO_new_file(path, "rb")) == NULL) {
		sk_X509_CRL_free(sk);
		*bad_r = 1;
		return NULL;
	}
	/* PEM (one or more), else DER. */
	while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL)
		if (sk_X509_CRL_push(sk, crl) <= 0)
			X509_CRL_free(crl);
	if (sk_X509_CRL_num(sk) == 0) {
		(void)BIO_reset(bio);
		if ((crl = d2i_X509_CRL_bio(bio, NULL)) != NULL &&
		    sk_X509_CRL_push(sk, crl) <= 0)
			X509_CRL_free(crl);
	}
	BIO_free(bio);
	ERR_clear_error();	/* the PEM attempt's end, or a bad file */
	if (sk_X509_CRL_num(sk) == 0) {
		log_warnx("smtpd: event=notice-crl-unparsable file=%s", path);
		sk_X509_CRL_free(sk);
		*bad_r = 1;
		return NULL;
	}
	nt_crls = sk;
	nt_crl_st = sb;
	log_info("smtpd: event=notice-crl-loaded file=%s crls=%d", path,
	    sk_X509_CRL_num(sk));
	return nt_crls;
}

static int
policy_ok(const char *p, size_t n)
{
	return (n == 3 && memcmp(p, "tag", 3) == 0) ||
	    (n == 6 && memcmp(p, "refuse", 6) == 0) ||
	    (n == 6 && memcmp(p, "accept", 6) == 0);
}

int
smtp_notice_config_check(const struct config *cfg, const char **error_r)
{
	const char *pol = config_str(cfg, "smtpd", "official_policy");
	const char *p = config_str(cfg, "smtpd", "official_domains");

	if (!policy_ok(pol, strlen(pol))) {
		*error_r = "[smtpd] official_policy must be tag, refuse or "
		    "accept";
		return -1;
	}
	while (*p != '\0') {
		size_t full, n;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		full = strcspn(p, " \t,");
		n = strcspn(p, " \t,:");
		if (n < full && (n == 0 || !policy_ok(p + n + 1,
		    full - n - 1))) {
			*error_r = "[smtpd] official_domains: write DOMAIN or "
			    "DOMAIN:POLICY (tag, refuse or accept)";
			return -1;
		}
		p += full;
	}
	return 0;
}

/* Printable ASCII copy of untrusted text, at most max-1 bytes. */
static void
text_clean(const char *in, char *out, size_t max)
{
	size_t i, o = 0;

	for (i = 0; in[i] != '\0' && o + 1 < max; i++) {
		unsigned char c = (unsigned char)in[i];

		out[o++] = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ?
		    (char)c : '?';
	}
	out[o] = '\0';
}

/* 1 if the signer's organizationIdentifier starts with GOVCN. */
static int
signer_govcn(X509 *cert)
{
	X509_NAME *n = cert != NULL ? X509_get_subject_name(cert) : NULL;
	const ASN1_STRING *v;
	int i;

	if (n == NULL)
		return 0;
	i = X509_NAME_get_index_by_NID(n, NID_organizationIdentifier, -1);
	if (i < 0)
		return 0;
	v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
	return v != NULL && ASN1_STRING_length(v) >= 5 &&
	    memcmp(ASN1_STRING_get0_data(v), "GOVCN", 5) == 0;
}

/* 1 if the certificate class may sign government mail. */
static int
class_official(const struct govca_cms_result *res)
{
	if (res->cert_class == GOVCA_CMS_CLASS_OFFICIAL)
		return 1;
	return res->cert_class == GOVCA_CMS_CLASS_ORGANIZATION &&
	    signer_govcn(res->signer);
}

/*
 * The policy for addr when its domain is one of the space-separated
 * official domains or below one ("gov.example" covers
 * "city.gov.example"; "gov.example:refuse" sets its own policy): "tag",
 * "refuse" or "accept" (a domain without its own policy takes [smtpd]
 * official_policy), or NULL when the domain is not official.
 */
static const char *
domain_official(const struct config *cfg, const char *addr)
{
	const char *list = config_str(cfg, "smtpd", "official_domains");
	const char *at = strrchr(addr, '@'), *p = list;
	size_t dlen;

	if (at == NULL || list[0] == '\0')
		return NULL;
	at++;
	dlen = strlen(at);
	while (*p != '\0') {
		size_t n, full;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		full = strcspn(p, " \t,");
		n = strcspn(p, " \t,:");
		if (n > full)
			n = full;
		/* The domain itself, or a subdomain ("x." + domain). */
		if (n > 0 && (n == dlen || (n < dlen && at[dlen - n - 1] ==
		    '.'))) {
			if (str_ncaseeq(p, at + dlen - n, n)) {
				const char *pol = p + n + 1;

				if (n == full)
					return config_str(cfg, "smtpd",
					    "official_policy");
				if (full - n - 1 == 6 &&
				    memcmp(pol, "refuse", 6) == 0)
					return "refuse";
				if (full - n - 1 == 6 &&
				    memcmp(pol, "accept", 6) == 0)
					return "accept";
				return "tag";
			}
		}
		p += full;
	}
	return NULL;
}

/*
 * SECURITY: a From: that smtp_header_from cannot parse (repeated, odd
 * syntax) may still show an official address in a mail client.  Look for
 * "@domain" of every official domain in the raw From: fields and return
 * the strictest policy found, or NULL.
 */
static const char *
raw_claim(const struct config *cfg, const uint8_t *msg, size_t len,
    size_t off)
{
	const char *list = config_str(cfg, "smtpd", "official_domains");
	const char *found = NULL;
	size_t s, e;

	while (list[0] != '\0' &&
	    smtp_header_field(msg, len, off, "From:", &s, &e) == 0) {
		char probe[SMTP_PATH_MAX + 2];
		const char *p = list, *pol;

		while (*p != '\0') {
			size_t n;

			while (*p == ' ' || *p == '\t' || *p == ',')
				p++;
			n = strcspn(p, " \t,:");
			if (n == 0 || n + 1 >= sizeof(probe)) {
				p += strcspn(p, " \t,");
				continue;
			}
			probe[0] = '@';
			memcpy(probe + 1, p, n);
			probe[n + 1] = '\0';
			/* Case-insensitive search of probe in the field. */
			if (str_casefind(msg + s, e - s, probe, n + 1) != NULL) {
				pol = domain_official(cfg, probe);
				if (pol != NULL && (found == NULL ||
				    strcmp(pol, "refuse") == 0 ||
				    (strcmp(pol, "tag") == 0 &&
				    strcmp(found, "accept") == 0)))
					found = pol;
			}
			p += strcspn(p, " \t,");
		}
		off = e;
	}
	return found;
}

/* Why a notice is refused, as the 550 reply. */
static void
notice_refuse(struct smtp_job *job, const struct govca_cms_result *res,
    int trusted, int crl_bad)
{
	char reason[SMTP_NOTICE_REASON_MAX];

	text_clean(res->reason, reason, sizeof(reason));
	if (!trusted)
		snprintf(job->refuse, sizeof(job->refuse), "550 5.7.0 Notice "
		    "list refused: no trust anchor configured");
	else if (res->status == GOVCA_CMS_NEUTRAL)
		snprintf(job->refuse, sizeof(job->refuse), "550 5.7.1 Notice "
		    "refused: unsigned (an S/MIME signature is required)");
	else if (res->status == GOVCA_CMS_FAIL)
		snprintf(job->refuse, sizeof(job->refuse), "550 5.7.1 Notice "
		    "refused: invalid signature%s (%s)",
		    strstr(reason, "revoked") != NULL ?
		    ": the signer's certificate is revoked" :
		    strstr(reason, "bad signature") != NULL ||
		    strstr(reason, "digest") != NULL ?
		    ": the message was altered after signing" : "", reason);
	else if (crl_bad)
		snprintf(job->refuse, sizeof(job->refuse), "550 5.7.1 Notice "
		    "refused: revocation status unavailable");
	else if (!res->from_matches)
		snprintf(job->refuse, sizeof(job->refuse), "550 5.7.1 Notice "
		    "refused: wrong From: (the signer's address differs)");
	else
		snprintf(job->refuse, sizeof(job->refuse), "550 5.7.1 Notice "
		    "refused: not signed with an official certificate");
}

/* Build job->lmsg: trace, extra fields, then the message (tagged). */
static void
rewrite(struct smtp_job *job, const struct buf *extra, int tag)
{
	struct buf out;
	size_t s = 0, e = 0, subj = 0;
	int has_subj = tag && smtp_header_field(job->msg, job->len,
	    job->trace_len, "Subject:", &s, &e) == 0;

	buf_init(&out, job->len + extra->len + 256);
	buf_append(&out, job->msg, job->trace_len);
	buf_append(&out, extra->data, extra->len);
	if (tag && !has_subj)
		buf_append_str(&out, "Subject: " SMTP_NOTICE_TAG "\r\n");
	if (has_subj) {
		subj = s + strlen("Subject:");
		if (subj < e && (job->msg[subj] == ' ' ||
		    job->msg[subj] == '\t'))
			subj++;
		buf_append(&out, job->msg + job->trace_len,
		    subj - job->trace_len);
		buf_append_str(&out, SMTP_NOTICE_TAG);
		buf_append(&out, job->msg + subj, job->len - subj);
	} else
		buf_append(&out, job->msg + job->trace_len,
		    job->len - job->trace_len);
	job->llen = out.len;
	job->lmsg = (uint8_t *)buf_steal(&out);
}

int
smtp_notice_check(struct smtp_job *job)
{
	const struct config *cfg = job->cfg;
	struct govca_cms_verify_opts opts;
	struct govca_cms_result res;
	X509_STORE *trust = notice_trust(cfg);
	const char *err = NULL, *policy;
	struct buf extra;
	const char *claim = NULL;
	int crl_bad = 0, signed_msg, official, tag = 0, ret = 0;

	if (trust == NULL) {
		if (nt_empty == NULL)
			nt_empty = X509_STORE_new();
		if (nt_empty == NULL) {
			snprintf(job->refuse, sizeof(job->refuse),
			    "451 4.3.0 Temporary failure, try again later");
			return -1;
		}
	}
	if (nt_chains == NULL)
		nt_chains = govca_chain_cache_new();
	memset(&opts, 0, sizeof(opts));
	opts.cache = nt_chains;
	opts.store = trust != NULL ? trust : nt_empty;
	opts.crls = trust != NULL ? notice_crls(cfg, &crl_bad) : NULL;
	govca_cms_result_init(&res);
	(void)govca_cms_verify(job->msg + job->trace_len,
	    job->len - job->trace_len, &opts, &res, &err);
	ERR_clear_error();
	signed_msg = res.status != GOVCA_CMS_NEUTRAL || res.signer != NULL;
	if (trust == NULL && signed_msg) {
		/* RFC 7281: no trust anchor to judge by. */
		res.status = GOVCA_CMS_NEUTRAL;
		snprintf(res.reason, sizeof(res.reason),
		    "no trust anchor configured");
	}
	if (crl_bad && res.status == GOVCA_CMS_PASS) {
		res.status = GOVCA_CMS_FAIL;
		snprintf(res.reason, sizeof(res.reason),
		    "revocation status unavailable");
	}
	official = trust != NULL && res.status == GOVCA_CMS_PASS &&
	    res.from_matches && class_official(&res);

	if (job->notice_list != NULL && !official) {
		notice_refuse(job, &res, trust != NULL, crl_bad);
		goto out_refused;
	}
	if (job->notice_list != NULL && !job->authenticated &&
	    !smime_address_equal(res.from, job->sender)) {
		/* The poster check used the envelope; From: must agree. */
		snprintf(job->refuse, sizeof(job->refuse), "550 5.7.1 Notice "
		    "refused: wrong From: (not the envelope sender)");
		goto out_refused;
	}

	/* Sender authenticity for mail from outside (not submissions). */
	if (!job->authenticated && !official) {
		char addrs[SMTP_FROM_ADDRS_MAX][SMTP_PATH_MAX + 1];
		int i, n = smtp_header_from(job->msg + job->trace_len,
		    job->len - job->trace_len, addrs, SMTP_FROM_ADDRS_MAX);

		/* The strictest policy of the addresses named wins. */
		for (i = 0; i < n; i++) {
			const char *pol = domain_official(cfg, addrs[i]);

			if (pol != NULL && (claim == NULL ||
			    strcmp(pol, "refuse") == 0 ||
			    (strcmp(pol, "tag") == 0 &&
			    strcmp(claim, "accept") == 0)))
				claim = pol;
		}
		if (n < 0)
			claim = raw_claim(cfg, job->msg, job->len,
			    job->trace_len);
	}
	policy = claim;
	if (claim != NULL && strcmp(policy, "accept") != 0) {
		if (strcmp(policy, "refuse") == 0) {
			snprintf(job->refuse, sizeof(job->refuse),
			    "550 5.7.1 From: claims an official domain "
			    "without a valid official signature");
			goto out_refused;
		}
		tag = 1;	/* "tag", and anything unknown */
	}

	buf_init(&extra, SMTPD_TRACE_RESERVE);
	if (signed_msg) {
		buf_printf(&extra, "Authentication-Results: %s;\r\n\t",
		    job->hostname);
		if (govca_cms_auth_result(&res, &extra) < 0)
			buf_reset(&extra);
		else
			buf_append_str(&extra, "\r\n");
	}
	if (tag) {
		char why[SMTP_NOTICE_REASON_MAX];

		text_clean(res.status == GOVCA_CMS_NEUTRAL ? "not signed" :
		    res.status == GOVCA_CMS_FAIL ? res.reason :
		    "not an official certificate of this CA", why,
		    sizeof(why));
		buf_printf(&extra, "X-Govmail-Warning: the From: address is "
		    "in an official domain but the message carries no valid "
		    "official signature (%s)\r\n", why);
	}
	if (extra.len > 0 || tag)
		rewrite(job, &extra, tag);
	buf_free(&extra);
	/* Plain unsigned mail, left as it came, is not worth a line. */
	if (signed_msg || tag || job->notice_list != NULL)
		log_info("smtpd: ref=%s event=smime result=%s class=%s "
		    "from_matches=%d official=%d notice=%d tagged=%d",
		    job->ref, govca_cms_status_name(res.status),
		    govca_cms_class_name(res.cert_class), res.from_matches,
		    official, job->notice_list != NULL, tag);
	govca_cms_result_free(&res);
	return ret;

out_refused:
	log_info("smtpd: ref=%s event=smime result=%s class=%s from_matches=%d "
	    "refused=1 notice=%d", job->ref, govca_cms_status_name(res.status),
	    govca_cms_class_name(res.cert_class), res.from_matches,
	    job->notice_list != NULL);
	govca_cms_result_free(&res);
	return -1;
}

void
smtp_notice_record_id(struct smtp_job *job, char *id, size_t idsz)
{
	smtp_message_id(job->msg + job->trace_len, job->len - job->trace_len,
	    id, idsz);
	if (id[0] == '\0' && job->notice_list != NULL)
		log_warnx("smtpd: event=notice-unrecorded list=%s "
		    "reason=\"no Message-ID\"", job->notice_list);
}
