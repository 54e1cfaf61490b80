/*
 * ocsp.c - the OCSP responder (RFC 6960): one DER request in, one signed
 * DER response out, answered by the delegated responder certificate
 * (id-kp-OCSPSigning, ocsp-nocheck) from the live certificate database.
 *
 * Runs in govmail-ca serve, on many threads at once (thread-safe: only
 * reads the struct govca).  Trusts nothing in the request: it is size-
 * limited, parsed by OpenSSL's DER decoder, and at most
 * GOVCA_OCSP_REQUESTS_MAX certificates are looked up; anything else is
 * answered malformedRequest.
 */
#include "autoconf.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>

#include "buf.h"
#include "ca_priv.h"
#include "log.h"

/* How long a response may be cached by the client (S/MIME BR: <= 10 d). */
#define OCSP_VALIDITY_SECONDS (24 * 3600)

static int
ocsp_fixed(int status, struct buf *resp)
{
	OCSP_RESPONSE *r;
	unsigned char *der = NULL;
	int len, ret = -1;

	if ((r = OCSP_response_create(status, NULL)) == NULL)
		return -1;
	if ((len = i2d_OCSP_RESPONSE(r, &der)) > 0 &&
	    buf_append(resp, der, (size_t)len) == 0)
		ret = 0;
	OPENSSL_free(der);
	OCSP_RESPONSE_free(r);
	return ret;
}

/* 1 if cid names our issuing CA (any hash algorithm the client chose). */
static int
ocsp_ours(struct govca *ca, OCSP_CERTID *cid)
{
	ASN1_OBJECT *md_obj = NULL;
	OCSP_CERTID *mine;
	const EVP_MD *md;
	int i, ours;

	for (i = 0; i < 2; i++)
		if (OCSP_id_issuer_cmp(cid, ca->issuer_ids[i]) == 0)
			return 1;
	if (OCSP_id_get0_info(NULL, &md_obj, NULL, NULL, cid) != 1 ||
	    (md = EVP_get_digestbyobj(md_obj)) == NULL)
		return 0;
	if ((mine = OCSP_cert_to_id(md, NULL, ca->issuing)) == NULL)
		return 0;
	ours = OCSP_id_issuer_cmp(cid, mine) == 0;
	OCSP_CERTID_free(mine);
	return ours;
}

int
govca_ocsp_respond(struct govca *ca, const uint8_t *reqder, size_t len,
    struct buf *resp, const char **error_r)
{
	const unsigned char *p = reqder;
	OCSP_REQUEST *req = NULL;
	OCSP_BASICRESP *bs = NULL;
	OCSP_RESPONSE *r = NULL;
	ASN1_TIME *thisupd = NULL, *nextupd = NULL, *revtime = NULL;
	unsigned char *der = NULL;
	time_t now = time(NULL);
	int i, n, dlen, ret = -1;

	if (ca->ocsp_key == NULL) {
		*error_r = "the OCSP key is not loaded";
		return ocsp_fixed(OCSP_RESPONSE_STATUS_INTERNALERROR, resp);
	}
	if (len == 0 || len > GOVCA_OCSP_REQUEST_MAX ||
	    (req = d2i_OCSP_REQUEST(NULL, &p, (long)len)) == NULL ||
	    p != reqder + len ||
	    (n = OCSP_request_onereq_count(req)) <= 0 ||
	    n > GOVCA_OCSP_REQUESTS_MAX) {
		ERR_clear_error();
		OCSP_REQUEST_free(req);
		return ocsp_fixed(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, resp);
	}
	thisupd = ASN1_TIME_set(NULL, now);
	nextupd = ASN1_TIME_set(NULL, now + OCSP_VALIDITY_SECONDS);
	if ((bs = OCSP_BASICRESP_new()) == NULL || thisupd == NULL ||
	    nextupd == NULL)
		goto internal;
	for (i = 0; i < n; i++) {
		OCSP_CERTID *cid = OCSP_onereq_get0_id(
		    OCSP_request_onereq_get0(req, i));
		ASN1_INTEGER *serial = NULL;
		enum govca_status st;
		enum govca_reason reason;
		uint8_t sb[64];
		time_t when;
		BIGNUM *bn;
		int sl, found, status, rc = -1;

		if (OCSP_id_get0_info(NULL, NULL, NULL, &serial, cid) != 1)
			goto internal;
		found = 1;
		if (ocsp_ours(ca, cid) &&
		    (bn = ASN1_INTEGER_to_BN(serial, NULL)) != NULL) {
			sl = BN_num_bytes(bn);
			if (sl > 0 && (size_t)sl <= sizeof(sb)) {
				BN_bn2bin(bn, sb);
				found = ca_db_lookup_status(ca, sb, (size_t)sl,
				    &st, &reason, &when);
			}
			BN_free(bn);
		}
		if (found < 0)
			goto internal;
		if (found == 1)
			status = V_OCSP_CERTSTATUS_UNKNOWN;
		else if (st == GOVCA_STATUS_REVOKED) {
			status = V_OCSP_CERTSTATUS_REVOKED;
			rc = reason == GOVCA_REASON_UNSPECIFIED ?
			    OCSP_REVOKED_STATUS_NOSTATUS : (int)reason;
			ASN1_TIME_free(revtime);
			revtime = ASN1_TIME_set(NULL, when);
		} else
			status = V_OCSP_CERTSTATUS_GOOD;
		if (OCSP_basic_add1_status(bs, cid, status, rc,
		    status == V_OCSP_CERTSTATUS_REVOKED ? revtime : NULL,
		    thisupd, nextupd) == NULL)
			goto internal;
	}
	/* RFC 8954: echo the client's nonce. */
	if (OCSP_copy_nonce(bs, req) <= 0)
		goto internal;
	if (OCSP_basic_sign(bs, ca->ocsp, ca->ocsp_key,
	    ca_md_for_key(ca->ocsp_key), NULL, 0) != 1)
		goto internal;
	if ((r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL,
	    bs)) == NULL ||
	    (dlen = i2d_OCSP_RESPONSE(r, &der)) <= 0 ||
	    buf_append(resp, der, (size_t)dlen) == -1)
		goto internal;
	ret = 0;
	goto out;
internal:
	*error_r = "OCSP response failed";
	buf_reset(resp);
	(void)ocsp_fixed(OCSP_RESPONSE_STATUS_INTERNALERROR, resp);
	ret = -1;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	OCSP_RESPONSE_free(r);
	OCSP_BASICRESP_free(bs);
	OCSP_REQUEST_free(req);
	ASN1_TIME_free(thisupd);
	ASN1_TIME_free(nextupd);
	ASN1_TIME_free(revtime);
	return ret;
}
