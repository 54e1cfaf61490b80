/*
 * tls13.c - the TLS 1.3 record layer after OpenSSL's handshake (see
 * tls13.h for why and for the rules of the handover).
 *
 * RFC 8446 references: 5.1 record layer, 5.2 record payload protection,
 * 5.3 per-record nonce, 5.4 record padding, 4.6.3 KeyUpdate, 6 alerts,
 * 7.1 HKDF-Expand-Label, 7.2 updating traffic secrets, 7.3 traffic key
 * calculation.  The AEAD and HKDF are OpenSSL's (EVP).
 */
#include "autoconf.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>

#include "log.h"
#include "tls13.h"
#include "xmalloc.h"

/* Record content types (5.1). */
#define TLS13_CT_ALERT		21
#define TLS13_CT_HANDSHAKE	22
#define TLS13_CT_APPDATA	23
/* Handshake message types seen after the handshake (4). */
#define TLS13_HS_FINISHED	20
#define TLS13_HS_KEY_UPDATE	24
/* Alert descriptions (6). */
#define TLS13_AL_CLOSE_NOTIFY		0
#define TLS13_AL_UNEXPECTED_MESSAGE	10
#define TLS13_AL_BAD_RECORD_MAC		20
#define TLS13_AL_RECORD_OVERFLOW	22
#define TLS13_AL_ILLEGAL_PARAMETER	47
#define TLS13_AL_DECODE_ERROR		50
#define TLS13_AL_INTERNAL_ERROR		80
#define TLS13_AL_USER_CANCELED		90

#define TLS13_TAG_LEN	16
#define TLS13_IV_LEN	12
#define TLS13_KEY_MAX	32
#define TLS13_HASH_MAX	48
/* What sealing adds to a record: header, content type, tag. */
#define TLS13_OVERHEAD	(5 + 1 + TLS13_TAG_LEN)

#define TLS13_F_TAKEN		0x01	/* tls13_take() succeeded */
#define TLS13_F_SPOILED		0x02	/* the handover would not be exact */
#define TLS13_F_FAILED		0x04	/* a fatal error: no more reading */
#define TLS13_F_PEER_CLOSED	0x08	/* close_notify received */
#define TLS13_F_CLOSED_WRITE	0x10	/* close_notify or alert sent */

/* The three TLS 1.3 suites OpenSSL enables (B.4). */
static const struct tls13_suite {
	uint16_t id;
	const char *name;
	const char *cipher;
	const char *digest;
	size_t key_len;
	size_t hash_len;
} tls13_suites[] = {
	{ 0x1301, "TLS_AES_128_GCM_SHA256", "AES-128-GCM", "SHA256", 16, 32 },
	{ 0x1302, "TLS_AES_256_GCM_SHA384", "AES-256-GCM", "SHA384", 32, 48 },
	{ 0x1303, "TLS_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305",
	  "SHA256", 32, 32 },
};
#define TLS13_NSUITES (sizeof(tls13_suites) / sizeof(tls13_suites[0]))

/* One direction: its traffic secret, keys and record counter. */
struct tls13_dir {
	uint8_t secret[TLS13_HASH_MAX];
	uint8_t key[TLS13_KEY_MAX];
	uint8_t iv[TLS13_IV_LEN];
	uint64_t seq;
	uint64_t gen;		/* identifies the key for the AEAD cache */
	uint8_t have_secret;
	uint8_t counting;	/* the peer's (or our) Finished went by */
};

struct tls13 {
	const struct tls13_suite *suite;
	EVP_CIPHER *cipher;
	const char *version;
	const char *cipher_name;
	const char *error;
	struct tls13_dir rd;	/* client -> server */
	struct tls13_dir wr;	/* server -> client */
	uint8_t *rdata;		/* raw input, TLS13_RBUF_MAX bytes, or NULL */
	size_t rlen;		/* bytes in rdata */
	size_t rstart;		/* first byte not yet opened */
	size_t plain_pos;	/* plaintext of the last record not yet */
	size_t plain_end;	/*   taken: rdata[plain_pos .. plain_end) */
	uint8_t *wdata;		/* sealed output, or NULL */
	size_t wlen, wcap, wpos;
	unsigned idle_records;	/* records in a row without data */
	unsigned flags;
};

static pthread_once_t tls13_once = PTHREAD_ONCE_INIT;
static int tls13_ex_index = -1;
static EVP_CIPHER *tls13_ciphers[TLS13_NSUITES];
static EVP_KDF *tls13_hkdf;
static uint64_t tls13_gen_next;

/*
 * One AEAD context per thread, reused for every record: re-keyed only
 * when the record belongs to another key than the last one.
 */
static _Thread_local struct {
	EVP_CIPHER_CTX *ctx;
	uint64_t gen;
} tls13_aead_cache;

static void
tls13_init(void)
{
	size_t i;

	tls13_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	/* Fetched once: every handover derives four keys. */
	tls13_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	for (i = 0; i < TLS13_NSUITES; i++)
		tls13_ciphers[i] = EVP_CIPHER_fetch(NULL,
		    tls13_suites[i].cipher, NULL);
}

/* ---- key schedule (7.1, 7.2, 7.3) ---- */

/* HKDF-Expand-Label(secret, label, "", out_len). */
static int
tls13_expand(const struct tls13_suite *s, uint8_t *secret,
    const char *label, uint8_t *out, size_t out_len)
{
	uint8_t info[2 + 1 + 6 + 32 + 1];
	char digest[16];
	size_t ll = strlen(label), n = 0;
	EVP_KDF_CTX *kctx;
	OSSL_PARAM params[5];
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, ok;

	if (ll > 32 || strlen(s->digest) >= sizeof(digest))
		return -1;
	memcpy(digest, s->digest, strlen(s->digest) + 1);
	info[n++] = (uint8_t)(out_len >> 8);
	info[n++] = (uint8_t)out_len;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, ll);
	n += ll;
	info[n++] = 0;			/* empty context */
	if (tls13_hkdf == NULL || (kctx = EVP_KDF_CTX_new(tls13_hkdf)) == NULL)
		return -1;
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    digest, 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
	    secret, s->hash_len);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    info, n);
	params[4] = OSSL_PARAM_construct_end();
	ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
	EVP_KDF_CTX_free(kctx);
	return ok ? 0 : -1;
}

/* The key and IV of d's current secret (7.3). */
static int
tls13_install(struct tls13 *t, struct tls13_dir *d)
{
	if (tls13_expand(t->suite, d->secret, "key", d->key,
	    t->suite->key_len) < 0
	    || tls13_expand(t->suite, d->secret, "iv", d->iv, TLS13_IV_LEN)
	    < 0)
		return -1;
	d->gen = __atomic_add_fetch(&tls13_gen_next, 1, __ATOMIC_RELAXED);
	return 0;
}

/* application_traffic_secret_N+1 (7.2); the counter starts again. */
static int
tls13_update(struct tls13 *t, struct tls13_dir *d)
{
	uint8_t next[TLS13_HASH_MAX];

	if (tls13_expand(t->suite, d->secret, "traffic upd", next,
	    t->suite->hash_len) < 0)
		return -1;
	memcpy(d->secret, next, t->suite->hash_len);
	OPENSSL_cleanse(next, sizeof(next));
	d->seq = 0;
	return tls13_install(t, d);
}

/* ---- record protection (5.2, 5.3) ---- */

/*
 * Seal (enc) or open len bytes at p in place; hdr is the record header
 * (the additional data), tag the 16 bytes after the ciphertext.  Opening
 * checks the tag: -1 if it does not match.
 */
static int
tls13_aead(struct tls13 *t, struct tls13_dir *d, int enc,
    const uint8_t *hdr, uint8_t *p, size_t len, uint8_t *tag)
{
	EVP_CIPHER_CTX *ctx = tls13_aead_cache.ctx;
	uint8_t nonce[TLS13_IV_LEN];
	int outl, finl, i;

	memcpy(nonce, d->iv, TLS13_IV_LEN);
	for (i = 0; i < 8; i++)
		nonce[4 + i] ^= (uint8_t)(d->seq >> (56 - 8 * i));
	if (ctx == NULL) {
		ctx = EVP_CIPHER_CTX_new();
		if (ctx == NULL)
			return -1;
		tls13_aead_cache.ctx = ctx;
		tls13_aead_cache.gen = 0;
	}
	if (tls13_aead_cache.gen != d->gen) {
		tls13_aead_cache.gen = 0;
		if (EVP_CipherInit_ex2(ctx, t->cipher, d->key, nonce, enc,
		    NULL) != 1)
			return -1;
		tls13_aead_cache.gen = d->gen;
	} else if (EVP_CipherInit_ex2(ctx, NULL, NULL, nonce, enc, NULL)
	    != 1) {
		tls13_aead_cache.gen = 0;
		return -1;
	}
	if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG,
	    TLS13_TAG_LEN, tag) != 1)
		return -1;
	if (EVP_CipherUpdate(ctx, NULL, &outl, hdr, 5) != 1
	    || EVP_CipherUpdate(ctx, p, &outl, p, (int)len) != 1
	    || EVP_CipherFinal_ex(ctx, p + outl, &finl) != 1
	    || (size_t)outl + (size_t)finl != len)
		return -1;
	if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG,
	    TLS13_TAG_LEN, tag) != 1)
		return -1;
	return 0;
}

/* Room for n more sealed bytes. */
static void
tls13_wreserve(struct tls13 *t, size_t n)
{
	if (t->wcap - t->wlen >= n)
		return;
	t->wcap = t->wlen + n;
	t->wdata = xreallocarray(t->wdata, t->wcap, 1);
}

/* Append one sealed record of type holding len bytes of data. */
static int
tls13_seal(struct tls13 *t, uint8_t type, const void *data, size_t len)
{
	size_t clen = len + 1 + TLS13_TAG_LEN;
	uint8_t *p;

	if (t->wr.seq == UINT64_MAX)
		return -1;
	tls13_wreserve(t, 5 + clen);
	p = t->wdata + t->wlen;
	p[0] = TLS13_CT_APPDATA;
	p[1] = 3;
	p[2] = 3;
	p[3] = (uint8_t)(clen >> 8);
	p[4] = (uint8_t)clen;
	memcpy(p + 5, data, len);
	p[5 + len] = type;
	if (tls13_aead(t, &t->wr, 1, p, p + 5, len + 1, p + 5 + len + 1) < 0)
		return -1;
	t->wlen += 5 + clen;
	t->wr.seq++;
	return 0;
}

/* Queue our KeyUpdate (update_not_requested) and move to the next key. */
static int
tls13_send_key_update(struct tls13 *t)
{
	static const uint8_t msg[5] = { TLS13_HS_KEY_UPDATE, 0, 0, 1, 0 };

	if (tls13_seal(t, TLS13_CT_HANDSHAKE, msg, sizeof(msg)) < 0)
		return -1;
	return tls13_update(t, &t->wr);
}

/* ---- output ---- */

size_t
tls13_unsent(const struct tls13 *t)
{
	return t->wlen - t->wpos;
}

int
tls13_flush(struct tls13 *t, tls13_write_fn wr, void *arg)
{
	ssize_t n;

	while (t->wpos < t->wlen) {
		n = wr(arg, t->wdata + t->wpos, t->wlen - t->wpos);
		if (n <= 0) {
			if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK
			    || errno == EINTR)
				return TLS13_WANT_IO;
			return TLS13_SYSFAIL;
		}
		t->wpos += (size_t)n;
	}
	/* An idle connection holds no output buffer. */
	free(t->wdata);
	t->wdata = NULL;
	t->wlen = t->wcap = t->wpos = 0;
	return TLS13_OK;
}

int
tls13_write(struct tls13 *t, const void *src, size_t len, size_t *used_r,
    tls13_write_fn wr, void *arg)
{
	const uint8_t *p = src;
	size_t done = 0, n, batch;
	int r;

	*used_r = 0;
	if ((r = tls13_flush(t, wr, arg)) != TLS13_OK)
		return r;
	if (t->flags & TLS13_F_CLOSED_WRITE) {
		/* After close_notify or a fatal alert nothing more is sent. */
		*used_r = len;
		return TLS13_OK;
	}
	batch = len < TLS13_WRITE_BATCH ? len : TLS13_WRITE_BATCH;
	tls13_wreserve(t, batch + (batch / TLS13_PLAIN_MAX + 2)
	    * TLS13_OVERHEAD);
	while (done < batch) {
		if (t->wr.seq >= TLS13_REKEY_RECORDS
		    && tls13_send_key_update(t) < 0)
			break;
		n = batch - done < TLS13_PLAIN_MAX ? batch - done
		    : TLS13_PLAIN_MAX;
		if (tls13_seal(t, TLS13_CT_APPDATA, p + done, n) < 0)
			break;
		done += n;
	}
	if (done < batch) {
		/* Only an internal OpenSSL failure gets here. */
		t->error = "TLS record encryption failed";
		t->flags |= TLS13_F_FAILED | TLS13_F_CLOSED_WRITE;
		errno = EIO;
		return TLS13_SYSFAIL;
	}
	*used_r = done;
	return tls13_flush(t, wr, arg);
}

/* Queue a fatal alert (or close_notify) and try once to send it. */
static void
tls13_send_alert(struct tls13 *t, uint8_t level, uint8_t desc,
    tls13_write_fn wr, void *arg)
{
	uint8_t a[2];

	if (t->flags & TLS13_F_CLOSED_WRITE)
		return;
	t->flags |= TLS13_F_CLOSED_WRITE;
	a[0] = level;
	a[1] = desc;
	if (tls13_seal(t, TLS13_CT_ALERT, a, sizeof(a)) == 0)
		(void)tls13_flush(t, wr, arg);
}

void
tls13_close(struct tls13 *t, tls13_write_fn wr, void *arg)
{
	tls13_send_alert(t, 1, TLS13_AL_CLOSE_NOTIFY, wr, arg);
}

/* A fatal protocol error: alert (if desc >= 0), then no more I/O. */
static int
tls13_fail(struct tls13 *t, int desc, const char *why, tls13_write_fn wr,
    void *arg)
{
	t->error = why;
	t->flags |= TLS13_F_FAILED;
	if (desc >= 0)
		tls13_send_alert(t, 2, (uint8_t)desc, wr, arg);
	return -1;
}

/* ---- input ---- */

/* Free the raw input buffer once everything in it is used. */
static void
tls13_rsettle(struct tls13 *t)
{
	if (t->plain_pos < t->plain_end || t->rstart < t->rlen)
		return;
	free(t->rdata);
	t->rdata = NULL;
	t->rlen = t->rstart = t->plain_pos = t->plain_end = 0;
}

/* One more record without application data. */
static int
tls13_idle_record(struct tls13 *t, tls13_write_fn wr, void *arg)
{
	if (++t->idle_records > TLS13_IDLE_RECORDS)
		return tls13_fail(t, TLS13_AL_UNEXPECTED_MESSAGE,
		    "too many TLS records without data", wr, arg);
	return 1;
}

/* Post-handshake handshake messages: only a whole KeyUpdate (4.6.3). */
static int
tls13_handshake(struct tls13 *t, const uint8_t *q, size_t len,
    tls13_write_fn wr, void *arg)
{
	size_t mlen;

	if (len < 4)
		return tls13_fail(t, TLS13_AL_UNEXPECTED_MESSAGE,
		    "fragmented TLS handshake message", wr, arg);
	mlen = (size_t)q[1] << 16 | (size_t)q[2] << 8 | q[3];
	if (q[0] != TLS13_HS_KEY_UPDATE)
		return tls13_fail(t, TLS13_AL_UNEXPECTED_MESSAGE,
		    "unexpected TLS handshake message", wr, arg);
	if (mlen != 1 || len < 5)
		return tls13_fail(t, TLS13_AL_DECODE_ERROR,
		    "malformed TLS KeyUpdate", wr, arg);
	/* A KeyUpdate ends its record: what follows is under the next key. */
	if (len != 5)
		return tls13_fail(t, TLS13_AL_UNEXPECTED_MESSAGE,
		    "data after TLS KeyUpdate", wr, arg);
	if (q[4] > 1)
		return tls13_fail(t, TLS13_AL_ILLEGAL_PARAMETER,
		    "bad TLS KeyUpdate request", wr, arg);
	if (tls13_idle_record(t, wr, arg) < 0)
		return -1;
	/* Answers pile up only if the peer asks and never reads. */
	if (q[4] == 1 && tls13_unsent(t) > TLS13_UNSENT_MAX)
		return tls13_fail(t, -1,
		    "TLS peer requests key updates without reading", wr, arg);
	if (tls13_update(t, &t->rd) < 0)
		return tls13_fail(t, TLS13_AL_INTERNAL_ERROR,
		    "TLS key update failed", wr, arg);
	if (q[4] == 1 && !(t->flags & TLS13_F_CLOSED_WRITE)
	    && tls13_send_key_update(t) < 0)
		return tls13_fail(t, TLS13_AL_INTERNAL_ERROR,
		    "TLS key update failed", wr, arg);
	return 1;
}

/*
 * Open the next record if rdata holds all of it.  Returns 1 (opened: its
 * data, if any, is at plain_pos), 0 (incomplete), -1 (failed).
 */
static int
tls13_open(struct tls13 *t, tls13_write_fn wr, void *arg)
{
	uint8_t *p = t->rdata + t->rstart;
	size_t avail = t->rlen - t->rstart, clen, i;
	uint8_t type;

	if (avail < 5)
		return 0;
	if (p[0] != TLS13_CT_APPDATA)
		return tls13_fail(t, TLS13_AL_UNEXPECTED_MESSAGE,
		    "unprotected TLS record after the handshake", wr, arg);
	clen = (size_t)p[3] << 8 | p[4];
	if (clen > TLS13_CIPHER_MAX)
		return tls13_fail(t, TLS13_AL_RECORD_OVERFLOW,
		    "TLS record too long", wr, arg);
	if (clen < 1 + TLS13_TAG_LEN)
		return tls13_fail(t, TLS13_AL_DECODE_ERROR,
		    "TLS record too short", wr, arg);
	if (avail < 5 + clen)
		return 0;
	if (t->rd.seq == UINT64_MAX)
		return tls13_fail(t, TLS13_AL_INTERNAL_ERROR,
		    "TLS record counter exhausted", wr, arg);
	clen -= TLS13_TAG_LEN;
	/* 5.2: TLSInnerPlaintext, padding included, is at most 2^14 + 1. */
	if (clen > TLS13_PLAIN_MAX + 1)
		return tls13_fail(t, TLS13_AL_RECORD_OVERFLOW,
		    "TLS record plaintext too long", wr, arg);
	if (tls13_aead(t, &t->rd, 0, p, p + 5, clen, p + 5 + clen) < 0)
		return tls13_fail(t, TLS13_AL_BAD_RECORD_MAC,
		    "TLS record failed authentication", wr, arg);
	t->rd.seq++;
	t->rstart += 5 + clen + TLS13_TAG_LEN;
	/* 5.4: the content type is the last non-zero byte. */
	for (i = clen; i > 0 && p[5 + i - 1] == 0; i--)
		;
	if (i == 0)
		return tls13_fail(t, TLS13_AL_UNEXPECTED_MESSAGE,
		    "TLS record without content type", wr, arg);
	type = p[5 + i - 1];
	i--;
	switch (type) {
	case TLS13_CT_APPDATA:
		if (i == 0)
			return tls13_idle_record(t, wr, arg);
		t->idle_records = 0;
		t->plain_pos = (size_t)(p + 5 - t->rdata);
		t->plain_end = t->plain_pos + i;
		return 1;
	case TLS13_CT_ALERT:
		if (i != 2)
			return tls13_fail(t, TLS13_AL_DECODE_ERROR,
			    "malformed TLS alert", wr, arg);
		if (p[6] == TLS13_AL_CLOSE_NOTIFY) {
			t->flags |= TLS13_F_PEER_CLOSED;
			return 1;
		}
		if (p[6] == TLS13_AL_USER_CANCELED)
			return tls13_idle_record(t, wr, arg);
		t->flags |= TLS13_F_CLOSED_WRITE;
		return tls13_fail(t, -1, SSL_alert_desc_string_long(p[6]),
		    wr, arg);
	case TLS13_CT_HANDSHAKE:
		return tls13_handshake(t, p + 5, i, wr, arg);
	default:
		return tls13_fail(t, TLS13_AL_UNEXPECTED_MESSAGE,
		    "unexpected TLS record content type", wr, arg);
	}
}

int
tls13_read(struct tls13 *t, void *dst, size_t want, size_t *n_r,
    tls13_read_fn rd, tls13_write_fn wr, void *arg)
{
	size_t n;
	ssize_t got;
	int r;

	*n_r = 0;
	for (;;) {
		if (t->plain_pos < t->plain_end) {
			n = t->plain_end - t->plain_pos;
			if (n > want)
				n = want;
			memcpy(dst, t->rdata + t->plain_pos, n);
			t->plain_pos += n;
			if (t->plain_pos == t->plain_end)
				t->plain_pos = t->plain_end = 0;
			tls13_rsettle(t);
			*n_r = n;
			return TLS13_OK;
		}
		if (t->flags & TLS13_F_FAILED)
			return TLS13_FAIL;
		if (t->flags & TLS13_F_PEER_CLOSED)
			return TLS13_EOF;
		if (t->rdata != NULL) {
			r = tls13_open(t, wr, arg);
			if (r < 0)
				return TLS13_FAIL;
			if (r > 0)
				continue;
			/* Incomplete: keep it at the front, read more. */
			if (t->rstart > 0) {
				memmove(t->rdata, t->rdata + t->rstart,
				    t->rlen - t->rstart);
				t->rlen -= t->rstart;
				t->rstart = 0;
			}
		} else {
			t->rdata = xmalloc(TLS13_RBUF_MAX);
			t->rlen = t->rstart = 0;
		}
		got = rd(arg, t->rdata + t->rlen, TLS13_RBUF_MAX - t->rlen);
		if (got == 0)
			return TLS13_EOF_BARE;
		if (got < 0) {
			tls13_rsettle(t);
			if (errno == EAGAIN || errno == EWOULDBLOCK
			    || errno == EINTR)
				return TLS13_WANT_IO;
			return TLS13_SYSFAIL;
		}
		t->rlen += (size_t)got;
	}
}

int
tls13_pending(const struct tls13 *t)
{
	size_t avail;

	if (t->plain_pos < t->plain_end)
		return 1;
	if (t->flags & (TLS13_F_FAILED | TLS13_F_PEER_CLOSED))
		return 0;
	avail = t->rlen - t->rstart;
	return avail >= 5 && (avail >= TLS13_RECORD_MAX
	    || avail >= 5 + ((size_t)t->rdata[t->rstart + 3] << 8
	    | t->rdata[t->rstart + 4]));
}

void
tls13_buffer_sizes(const struct tls13 *t, size_t *in_r, size_t *out_r)
{
	*in_r = t->rdata != NULL ? TLS13_RBUF_MAX : 0;
	*out_r = t->wcap;
}

/* ---- the handover from OpenSSL ---- */

/* OpenSSL's key log line: "LABEL <client random> <secret>" in hex. */
static void
tls13_keylog(const SSL *ssl, const char *line)
{
	struct tls13 *t;
	struct tls13_dir *d;
	const char *hex;
	size_t len, i;
	int hi, lo;

	if (tls13_ex_index < 0
	    || (t = SSL_get_ex_data(ssl, tls13_ex_index)) == NULL)
		return;
	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		d = &t->rd;
	else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
		d = &t->wr;
	else
		return;
	hex = strchr(line + 24, ' ');
	if (hex == NULL || d->have_secret) {
		t->flags |= TLS13_F_SPOILED;
		return;
	}
	hex++;
	len = strlen(hex);
	if (len % 2 != 0 || len / 2 > TLS13_HASH_MAX || len == 0) {
		t->flags |= TLS13_F_SPOILED;
		return;
	}
	for (i = 0; i < len / 2; i++) {
		hi = OPENSSL_hexchar2int((unsigned char)hex[2 * i]);
		lo = OPENSSL_hexchar2int((unsigned char)hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			t->flags |= TLS13_F_SPOILED;
			return;
		}
		d->secret[i] = (uint8_t)(hi << 4 | lo);
	}
	/* The secret's length must be the suite's hash length: checked at
	   tls13_take(); keep it in the unused tail meanwhile. */
	d->have_secret = (uint8_t)(len / 2);
}

/*
 * Every record header OpenSSL reads or writes, and every handshake
 * message: the record counter of a direction starts after its Finished.
 */
static void
tls13_msg(int write_p, int version, int content_type, const void *buf,
    size_t len, SSL *ssl, void *arg)
{
	struct tls13 *t = arg;
	struct tls13_dir *d = write_p ? &t->wr : &t->rd;
	const uint8_t *p = buf;

	(void)version;
	(void)ssl;
	if (content_type == SSL3_RT_HEADER) {
		if (d->counting)
			d->seq++;
		return;
	}
	if (content_type != SSL3_RT_HANDSHAKE || len == 0)
		return;
	if (p[0] == TLS13_HS_FINISHED && !d->counting) {
		d->counting = 1;
		d->seq = 0;
	} else if (d->counting && !(write_p
	    && p[0] == SSL3_MT_NEWSESSION_TICKET)) {
		/* KeyUpdate, post-handshake auth ...: let OpenSSL go on. */
		t->flags |= TLS13_F_SPOILED;
	}
}

struct tls13 *
tls13_watch(SSL *ssl)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	SSL_CTX_keylog_cb_func cur;
	struct tls13 *t;

	(void)pthread_once(&tls13_once, tls13_init);
	if (tls13_ex_index < 0 || ctx == NULL)
		return NULL;
	cur = SSL_CTX_get_keylog_callback(ctx);
	if (cur != NULL && cur != tls13_keylog)
		return NULL;
	if (cur == NULL)
		SSL_CTX_set_keylog_callback(ctx, tls13_keylog);
	t = xcalloc(1, sizeof(*t));
	if (SSL_set_ex_data(ssl, tls13_ex_index, t) != 1) {
		free(t);
		return NULL;
	}
	SSL_set_msg_callback(ssl, tls13_msg);
	SSL_set_msg_callback_arg(ssl, t);
	return t;
}

/* The suite with RFC 8446 code id, if carried: 0, else -1. */
static int
tls13_set_suite(struct tls13 *t, uint16_t id)
{
	size_t i;

	for (i = 0; i < TLS13_NSUITES; i++)
		if (tls13_suites[i].id == id && tls13_ciphers[i] != NULL) {
			t->suite = &tls13_suites[i];
			t->cipher = tls13_ciphers[i];
			return 0;
		}
	return -1;
}

static int
tls13_refuse(SSL *ssl, const char *why, const char **why_r)
{
	SSL_set_msg_callback(ssl, NULL);
	SSL_set_msg_callback_arg(ssl, NULL);
	(void)SSL_set_ex_data(ssl, tls13_ex_index, NULL);
	*why_r = why;
	return -1;
}

int
tls13_take(struct tls13 *t, SSL *ssl, const char **why_r)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);

	if (SSL_version(ssl) != TLS1_3_VERSION)
		return tls13_refuse(ssl, "not TLS 1.3", why_r);
	if (!SSL_is_server(ssl))
		return tls13_refuse(ssl, "client side", why_r);
	if (c == NULL)
		return tls13_refuse(ssl, "no cipher", why_r);
	if (tls13_set_suite(t, SSL_CIPHER_get_protocol_id(c)) < 0)
		return tls13_refuse(ssl, "cipher suite not carried", why_r);
	if (t->flags & TLS13_F_SPOILED)
		return tls13_refuse(ssl, "post-handshake message", why_r);
	if (!t->rd.counting || !t->wr.counting
	    || t->rd.have_secret != t->suite->hash_len
	    || t->wr.have_secret != t->suite->hash_len)
		return tls13_refuse(ssl, "traffic secrets not seen", why_r);
	if (SSL_has_pending(ssl) || SSL_want(ssl) != SSL_NOTHING
	    || SSL_get_shutdown(ssl) != 0)
		return tls13_refuse(ssl, "OpenSSL holds data", why_r);
	if (tls13_install(t, &t->rd) < 0 || tls13_install(t, &t->wr) < 0)
		return tls13_refuse(ssl, "key derivation failed", why_r);
	t->version = SSL_get_version(ssl);
	t->cipher_name = SSL_CIPHER_get_name(c);
	(void)tls13_refuse(ssl, "", why_r);
	t->flags |= TLS13_F_TAKEN;
	return 0;
}

struct tls13 *
tls13_new_keys(uint16_t suite, const uint8_t *rd_secret,
    const uint8_t *wr_secret)
{
	struct tls13 *t;

	(void)pthread_once(&tls13_once, tls13_init);
	t = xcalloc(1, sizeof(*t));
	if (tls13_set_suite(t, suite) < 0) {
		free(t);
		return NULL;
	}
	memcpy(t->rd.secret, rd_secret, t->suite->hash_len);
	memcpy(t->wr.secret, wr_secret, t->suite->hash_len);
	if (tls13_install(t, &t->rd) < 0 || tls13_install(t, &t->wr) < 0) {
		tls13_free(t);
		return NULL;
	}
	t->version = "TLSv1.3";
	t->cipher_name = t->suite->name;
	t->flags |= TLS13_F_TAKEN;
	return t;
}

void
tls13_free(struct tls13 *t)
{
	if (t == NULL)
		return;
	free(t->rdata);
	free(t->wdata);
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
}

const char *
tls13_version(const struct tls13 *t)
{
	return t->version != NULL ? t->version : "";
}

const char *
tls13_cipher(const struct tls13 *t)
{
	return t->cipher_name != NULL ? t->cipher_name : "";
}

const char *
tls13_error(const struct tls13 *t)
{
	return t->error != NULL ? t->error : "TLS error";
}
