/*
 * certdb.c - the certificate database (Berkeley DB through mailbox/kv.h):
 * serial -> certificate, status, revocation time and reason; an index by
 * address; CRL numbers; the opaque ids standing for citizens.
 *
 * Runs in govmail-ca (commands and the serve threads).  Records are our
 * own; a record that does not decode is reported as damage, not trusted.
 *
 * Record: version(1) profile(1) status(1) reason(1) not_before(8)
 * not_after(8) revoked_at(8) addr_len(2) address der  (integers big-endian)
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "ca_priv.h"
#include "idn.h"
#include "kv.h"
#include "log.h"
#include "xmalloc.h"

#define CERTDB_VERSION 1
#define CERTDB_HDR 30

const char *const ca_db_tables[] = {
	CA_TABLE_CERTS, CA_TABLE_ADDR, CA_TABLE_META, CA_TABLE_HOLDERS,
	CA_TABLE_REVOKED, NULL
};

static void
put64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static time_t
asn1_to_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

/* Decode a record; the pointers in c point into val (no copies). */
static int
record_decode(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, struct govca_cert *c, const uint8_t **addr_r,
    size_t *addr_len_r)
{
	size_t alen;

	memset(c, 0, sizeof(*c));
	if (vlen < CERTDB_HDR || val[0] != CERTDB_VERSION ||
	    klen > GOVCA_SERIAL_LEN + 4)
		return -1;
	alen = (size_t)val[28] << 8 | val[29];
	if (CERTDB_HDR + alen > vlen)
		return -1;
	ca_hex(key, klen, c->serial);
	c->profile = val[1];
	c->status = val[2];
	c->reason = val[3];
	c->not_before = (time_t)get64(val + 4);
	c->not_after = (time_t)get64(val + 12);
	c->revoked_at = (time_t)get64(val + 20);
	*addr_r = val + CERTDB_HDR;
	*addr_len_r = alen;
	c->der = (uint8_t *)(uintptr_t)(val + CERTDB_HDR + alen);
	c->der_len = vlen - CERTDB_HDR - alen;
	return 0;
}

static int
record_copy(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    struct govca_cert *c)
{
	const uint8_t *addr;
	size_t alen;

	if (record_decode(key, klen, val, vlen, c, &addr, &alen) == -1)
		return -1;
	c->address = xstrndup((const char *)addr, alen);
	c->der = xmemdup(c->der, c->der_len);
	return 0;
}

void
govca_cert_free(struct govca_cert *c)
{
	if (c == NULL)
		return;
	free(c->address);
	free(c->der);
	c->address = NULL;
	c->der = NULL;
}

void
govca_issued_free(struct govca_issued *iss)
{
	if (iss == NULL)
		return;
	free(iss->der);
	iss->der = NULL;
}

/*
 * The key an address is filed under: lower case, an internationalized
 * domain by its U-labels as the mail store keeps it, so that
 * "li@xn--zfr164b.example" and "li@政务.example" find the same holder and
 * certificates.  A domain that is no valid IDN is kept as given.
 */
static char *
addr_canon(const char *address)
{
	char buf[512];
	char *k;

	k = xstrdup(idn_address(address, 0, buf, sizeof(buf)) == 0 ? buf :
	    address);
	str_lower(k);
	return k;
}

static char *
addr_key(const char *address, const uint8_t *serial, size_t slen,
    size_t *len_r)
{
	char *c = addr_canon(address);
	size_t alen = strlen(c);
	char *k = xmalloc(alen + 1 + slen + 1);

	memcpy(k, c, alen + 1);
	free(c);
	memcpy(k + alen + 1, serial, slen);
	*len_r = alen + 1 + slen;
	return k;
}

int
ca_db_record_cert(struct govca *ca, X509 *cert, const char *address,
    enum govca_profile profile, const char **error_r)
{
	const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
	uint8_t sbytes[GOVCA_SERIAL_LEN + 4];
	unsigned char *der = NULL;
	struct kv_txn *txn;
	char hex[GOVCA_SERIAL_HEX_MAX], *akey = NULL;
	size_t slen, alen, aklen = 0;
	uint8_t *rec;
	int dlen, ret;

	if (ca_serial_hex(serial, hex, sizeof(hex)) == -1 ||
	    ca_serial_parse(hex, sbytes, &slen) == -1) {
		*error_r = ca_err(ca, "bad serial");
		return -1;
	}
	if ((dlen = i2d_X509(cert, &der)) <= 0) {
		*error_r = ca_err(ca, "cannot encode the certificate");
		return -1;
	}
	alen = strlen(address);
	if (alen > 0xffff) {
		OPENSSL_free(der);
		*error_r = ca_err(ca, "address too long");
		return -1;
	}
	rec = xmalloc(CERTDB_HDR + alen + (size_t)dlen);
	rec[0] = CERTDB_VERSION;
	rec[1] = (uint8_t)profile;
	rec[2] = GOVCA_STATUS_GOOD;
	rec[3] = 0;
	put64(rec + 4, (uint64_t)asn1_to_time(X509_get0_notBefore(cert)));
	put64(rec + 12, (uint64_t)asn1_to_time(X509_get0_notAfter(cert)));
	put64(rec + 20, 0);
	rec[28] = (uint8_t)(alen >> 8);
	rec[29] = (uint8_t)alen;
	memcpy(rec + CERTDB_HDR, address, alen);
	memcpy(rec + CERTDB_HDR + alen, der, (size_t)dlen);
	OPENSSL_free(der);

	if (alen > 0)
		akey = addr_key(address, sbytes, slen, &aklen);
	for (int attempt = 0; attempt < KV_DEADLOCK_RETRIES; attempt++) {
		if ((ret = kv_txn_begin(ca->db, &txn, error_r)) != 0)
			break;
		ret = kv_put(ca->db, txn, CA_TABLE_CERTS, sbytes, slen, rec,
		    CERTDB_HDR + alen + (size_t)dlen, KV_PUT_NEW);
		if (ret == 0 && akey != NULL)
			ret = kv_put(ca->db, txn, CA_TABLE_ADDR, akey, aklen,
			    "", 0, 0);
		if (ret != 0) {
			kv_txn_abort(txn);
			if (ret == KV_EDEADLOCK)
				continue;
			break;
		}
		ret = ca->batch ? kv_txn_commit_nosync(txn, error_r) :
		    kv_txn_commit(txn, error_r);
		if (ret != KV_EDEADLOCK)
			break;
	}
	free(rec);
	free(akey);
	if (ret != 0) {
		*error_r = ca_err(ca, "certificate database: %s",
		    kv_strerror(ret));
		return -1;
	}
	return 0;
}

void
govca_batch_begin(struct govca *ca)
{
	ca->batch = 1;
}

int
govca_batch_commit(struct govca *ca, const char **error_r)
{
	const char *err;
	char *path;
	int ret;

	ca->batch = 0;
	if ((ret = kv_sync(ca->db, error_r)) != 0) {
		*error_r = ca_err(ca, "certificate database: %s",
		    kv_strerror(ret));
		return -1;
	}
	path = ca_path(ca, "audit.log");
	ret = ca_audit_sync(path, error_r);
	free(path);
	/* Bulk work writes much log: checkpoint and drop what is done. */
	if (ret == 0 && kv_maintain(ca->db, &err) != 0)
		log_warnx("certdb: maintenance: %s", err);
	return ret;
}

int
govca_maintain(struct govca *ca, const char **error_r)
{
	const char *err;
	int ret;

	if ((ret = kv_maintain(ca->db, &err)) != 0) {
		*error_r = ca_err(ca, "certificate database: %s", err);
		return -1;
	}
	return 0;
}

int
govca_cert_get(struct govca *ca, const char *serial, struct govca_cert *c_r,
    const char **error_r)
{
	uint8_t sbytes[GOVCA_SERIAL_LEN + 4];
	uint8_t *val;
	size_t slen, vlen;
	int ret;

	memset(c_r, 0, sizeof(*c_r));
	if (ca_serial_parse(serial, sbytes, &slen) == -1) {
		*error_r = ca_err(ca, "not a serial number (hex expected)");
		return -1;
	}
	ret = kv_get(ca->db, NULL, CA_TABLE_CERTS, sbytes, slen, &val, &vlen);
	if (ret == KV_ENOTFOUND) {
		*error_r = ca_err(ca, "no certificate with serial %s", serial);
		return -1;
	}
	if (ret != 0) {
		*error_r = ca_err(ca, "certificate database: %s",
		    kv_strerror(ret));
		return -1;
	}
	ret = record_copy(sbytes, slen, val, vlen, c_r);
	free(val);
	if (ret == -1) {
		*error_r = ca_err(ca, "damaged record for serial %s", serial);
		return -1;
	}
	return 0;
}

struct list_ctx {
	struct govca *ca;
	int (*cb)(const struct govca_cert *c, void *ctx);
	void *ctx;
	size_t prefix_len;
};

static int
list_certs_cb(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct list_ctx *l = arg;
	struct govca_cert c;
	const uint8_t *addr;
	size_t alen;
	int ret;

	if (record_decode(key, klen, val, vlen, &c, &addr, &alen) == -1) {
		log_warnx("certdb: damaged record skipped");
		return 0;
	}
	c.address = xstrndup((const char *)addr, alen);
	ret = l->cb(&c, l->ctx);
	free(c.address);
	return ret;
}

static int
list_addr_cb(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct list_ctx *l = arg;
	struct govca_cert c;
	uint8_t *rec;
	size_t rlen;
	int ret;

	if (klen <= l->prefix_len)
		return 0;
	ret = kv_get(l->ca->db, NULL, CA_TABLE_CERTS, key + l->prefix_len,
	    klen - l->prefix_len, &rec, &rlen);
	if (ret != 0)
		return 0;
	if (record_copy(key + l->prefix_len, klen - l->prefix_len, rec, rlen,
	    &c) == -1) {
		free(rec);
		return 0;
	}
	free(rec);
	ret = l->cb(&c, l->ctx);
	govca_cert_free(&c);
	return ret;
}

int
govca_cert_list(struct govca *ca, const char *address,
    int (*cb)(const struct govca_cert *c, void *ctx), void *ctx,
    const char **error_r)
{
	struct list_ctx l = { ca, cb, ctx, 0 };
	char *prefix;
	int ret;

	if (address == NULL)
		ret = kv_iterate(ca->db, NULL, CA_TABLE_CERTS, NULL, 0,
		    list_certs_cb, &l);
	else {
		prefix = addr_canon(address);
		l.prefix_len = strlen(prefix) + 1;
		ret = kv_iterate(ca->db, NULL, CA_TABLE_ADDR, prefix,
		    l.prefix_len, list_addr_cb, &l);
		free(prefix);
	}
	if (ret < 0) {
		*error_r = ca_err(ca, "certificate database: %s",
		    kv_strerror(ret));
		return -1;
	}
	return 0;
}

struct current_ctx {
	struct govca_cert best;
	int found;
	time_t now;
};

static int
current_cb(const struct govca_cert *c, void *arg)
{
	struct current_ctx *cur = arg;

	if (c->status != GOVCA_STATUS_GOOD || c->not_after < cur->now ||
	    c->not_before > cur->now)
		return 0;
	if (cur->found && c->not_before < cur->best.not_before)
		return 0;
	govca_cert_free(&cur->best);
	cur->best = *c;
	cur->best.address = xstrdup(c->address);
	cur->best.der = xmemdup(c->der, c->der_len);
	cur->found = 1;
	return 0;
}

int
govca_cert_current(struct govca *ca, const char *address,
    struct govca_cert *c_r, const char **error_r)
{
	struct current_ctx cur;

	memset(&cur, 0, sizeof(cur));
	cur.now = time(NULL);
	memset(c_r, 0, sizeof(*c_r));
	if (govca_cert_list(ca, address, current_cb, &cur, error_r) == -1)
		return -1;
	if (!cur.found) {
		*error_r = ca_err(ca, "no current certificate");
		return -1;
	}
	*c_r = cur.best;
	return 0;
}

int
ca_db_lookup_status(struct govca *ca, const uint8_t *serial, size_t len,
    enum govca_status *status_r, enum govca_reason *reason_r,
    time_t *revoked_at_r)
{
	uint8_t *val;
	size_t vlen;
	int ret;

	ret = kv_get(ca->db, NULL, CA_TABLE_CERTS, serial, len, &val, &vlen);
	if (ret != 0)
		return ret == KV_ENOTFOUND ? 1 : -1;
	if (vlen < CERTDB_HDR || val[0] != CERTDB_VERSION) {
		free(val);
		return -1;
	}
	*status_r = val[2];
	*reason_r = val[3];
	*revoked_at_r = (time_t)get64(val + 20);
	free(val);
	return 0;
}

struct revoke_ctx {
	struct govca *ca;
	uint8_t serial[GOVCA_SERIAL_LEN + 4];
	size_t slen;
	enum govca_reason reason;
	time_t when;
	int already;
};

static int
revoke_txn(struct kv_txn *txn, void *arg)
{
	struct revoke_ctx *r = arg;
	uint8_t *val;
	size_t vlen;
	int ret;

	ret = kv_get(r->ca->db, txn, CA_TABLE_CERTS, r->serial, r->slen, &val,
	    &vlen);
	if (ret != 0)
		return ret;
	if (vlen < CERTDB_HDR || val[0] != CERTDB_VERSION) {
		free(val);
		return KV_EINVAL;
	}
	if (val[2] == GOVCA_STATUS_REVOKED) {
		r->already = 1;
		free(val);
		return 0;
	}
	val[2] = GOVCA_STATUS_REVOKED;
	val[3] = (uint8_t)r->reason;
	put64(val + 20, (uint64_t)r->when);
	ret = kv_put(r->ca->db, txn, CA_TABLE_CERTS, r->serial, r->slen, val,
	    vlen, 0);
	if (ret == 0 && val[1] != GOVCA_PROFILE_SERVER) {
		uint8_t entry[9];

		put64(entry, (uint64_t)r->when);
		entry[8] = (uint8_t)r->reason;
		ret = kv_put(r->ca->db, txn, CA_TABLE_REVOKED, r->serial,
		    r->slen, entry, sizeof(entry), 0);
	}
	free(val);
	return ret;
}

int
govca_revoke(struct govca *ca, const char *serial, enum govca_reason reason,
    const char **error_r)
{
	struct revoke_ctx r;
	char fields[128], hex[2 * (GOVCA_SERIAL_LEN + 4) + 1];
	const char *err;
	int ret;

	memset(&r, 0, sizeof(r));
	r.ca = ca;
	r.reason = reason;
	r.when = time(NULL);
	if (ca->issuing_key == NULL) {
		*error_r = ca_err(ca, "revoke needs the CA keys");
		return -1;
	}
	if (reason == 7 || reason > GOVCA_REASON_PRIVILEGE_WITHDRAWN ||
	    reason == GOVCA_REASON_CA_COMPROMISE) {
		*error_r = ca_err(ca, "reason not allowed for an end-entity "
		    "certificate");
		return -1;
	}
	if (ca_serial_parse(serial, r.serial, &r.slen) == -1) {
		*error_r = ca_err(ca, "not a serial number (hex expected)");
		return -1;
	}
	if (ca->batch && govca_batch_commit(ca, error_r) == -1)
		return -1;
	ret = kv_txn_run(ca->db, revoke_txn, &r, &err);
	if (ret == KV_ENOTFOUND) {
		*error_r = ca_err(ca, "no certificate with serial %s", serial);
		return -1;
	}
	if (ret != 0) {
		*error_r = ca_err(ca, "certificate database: %s",
		    kv_strerror(ret));
		return -1;
	}
	if (r.already) {
		*error_r = ca_err(ca, "certificate %s is already revoked",
		    serial);
		return -1;
	}
	ca_hex(r.serial, r.slen, hex);
	snprintf(fields, sizeof(fields), "serial=%s reason=%s", hex,
	    govca_reason_name(reason));
	if (govca_audit(ca, "revoke", fields, error_r) == -1)
		return -1;
	return govca_crl_generate(ca, error_r);
}

struct revoked_ctx {
	int (*cb)(const uint8_t *serial, size_t len, time_t when,
	    enum govca_reason reason, void *ctx);
	void *ctx;
};

static int
revoked_cb(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct revoked_ctx *r = arg;

	if (vlen != 9)
		return 0;
	/* Expired certificates stay on the CRL (S/MIME BR allows removal). */
	return r->cb(key, klen, (time_t)get64(val), val[8], r->ctx);
}

int
ca_db_revoked_each(struct govca *ca,
    int (*cb)(const uint8_t *serial, size_t len, time_t when,
	enum govca_reason reason, void *ctx), void *ctx)
{
	struct revoked_ctx r = { cb, ctx };

	return kv_iterate(ca->db, NULL, CA_TABLE_REVOKED, NULL, 0, revoked_cb,
	    &r) < 0 ? -1 : 0;
}

struct counter_ctx {
	struct govca *ca;
	uint64_t value;
};

static int
crl_number_txn(struct kv_txn *txn, void *arg)
{
	struct counter_ctx *c = arg;
	static const char key[] = "crl_number";
	uint8_t *val, out[8];
	size_t vlen;
	int ret;

	ret = kv_get(c->ca->db, txn, CA_TABLE_META, key, sizeof(key) - 1,
	    &val, &vlen);
	if (ret == 0 && vlen == 8)
		c->value = get64(val) + 1;
	else if (ret == 0 || ret == KV_ENOTFOUND)
		c->value = 1;
	else
		return ret;
	if (ret == 0)
		free(val);
	put64(out, c->value);
	return kv_put(c->ca->db, txn, CA_TABLE_META, key, sizeof(key) - 1,
	    out, 8, 0);
}

int
ca_db_next_crl_number(struct govca *ca, uint64_t *n_r, const char **error_r)
{
	struct counter_ctx c = { ca, 0 };
	int ret;

	if ((ret = kv_txn_run(ca->db, crl_number_txn, &c, error_r)) != 0) {
		*error_r = ca_err(ca, "certificate database: %s",
		    kv_strerror(ret));
		return -1;
	}
	*n_r = c.value;
	return 0;
}

struct holder_ctx {
	struct govca *ca;
	char *key;
	char id[GOVCA_OPAQUE_ID_LEN + 1];
};

static int
holder_txn(struct kv_txn *txn, void *arg)
{
	struct holder_ctx *h = arg;
	uint8_t *val, rnd[GOVCA_OPAQUE_ID_LEN / 2];
	size_t vlen;
	int ret;

	ret = kv_get(h->ca->db, txn, CA_TABLE_HOLDERS, h->key,
	    strlen(h->key), &val, &vlen);
	if (ret == 0) {
		str_copy(h->id, sizeof(h->id), (const char *)val);
		free(val);
		return 0;
	}
	if (ret != KV_ENOTFOUND)
		return ret;
	/* SECURITY: opaque and random, unrelated to the resident ID. */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return KV_ETEMP;
	ca_hex(rnd, sizeof(rnd), h->id);
	return kv_put(h->ca->db, txn, CA_TABLE_HOLDERS, h->key,
	    strlen(h->key), h->id, strlen(h->id), 0);
}

int
ca_db_holder_id(struct govca *ca, const char *address, char *id, size_t idsz,
    const char **error_r)
{
	struct holder_ctx h;
	int ret;

	memset(&h, 0, sizeof(h));
	h.ca = ca;
	h.key = addr_canon(address);
	ret = kv_txn_run(ca->db, holder_txn, &h, error_r);
	free(h.key);
	if (ret != 0) {
		*error_r = ca_err(ca, "certificate database: %s",
		    kv_strerror(ret));
		return -1;
	}
	str_copy(id, idsz, h.id);
	return 0;
}
