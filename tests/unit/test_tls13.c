/*
 * Unit tests for lib/tls13.c, the TLS 1.3 record layer, from known
 * traffic secrets (tls13_new_keys) and memory in place of the socket.
 * The peer's records are sealed here with OpenSSL's HKDF and AEAD
 * directly (RFC 8446 5.2, 7.3), so that every inner content a peer can
 * send is reachable: padding, empty records, alerts, KeyUpdate in all
 * its malformed shapes, plaintext over 2^14, records fed a byte at a
 * time.  What the layer sends is opened the same way and checked.
 * (test_conn.c runs the layer against OpenSSL's own client.)
 */
#include "autoconf.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "buf.h"
#include "tls13.h"

/* ---- the peer: keys and records made here ---- */

struct peer_dir {
	uint8_t secret[32];
	uint8_t key[16];
	uint8_t iv[12];
	uint64_t seq;
};

static void
expand(const uint8_t *secret, const char *label, uint8_t *out, size_t n)
{
	uint8_t info[64], sec[32];
	size_t ll = strlen(label), k = 0;
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(kdf);
	OSSL_PARAM params[5];
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	char digest[] = "SHA256";

	memcpy(sec, secret, sizeof(sec));
	info[k++] = 0;
	info[k++] = (uint8_t)n;
	info[k++] = (uint8_t)(6 + ll);
	memcpy(info + k, "tls13 ", 6);
	k += 6;
	memcpy(info + k, label, ll);
	k += ll;
	info[k++] = 0;
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    digest, 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, sec,
	    sizeof(sec));
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    info, k);
	params[4] = OSSL_PARAM_construct_end();
	assert_int_equal(EVP_KDF_derive(kctx, out, n, params), 1);
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
}

static void
peer_keys(struct peer_dir *d)
{
	expand(d->secret, "key", d->key, sizeof(d->key));
	expand(d->secret, "iv", d->iv, sizeof(d->iv));
}

static void
peer_update(struct peer_dir *d)
{
	uint8_t next[32];

	expand(d->secret, "traffic upd", next, sizeof(next));
	memcpy(d->secret, next, sizeof(next));
	peer_keys(d);
	d->seq = 0;
}

static void
peer_nonce(const struct peer_dir *d, uint8_t nonce[12])
{
	int i;

	memcpy(nonce, d->iv, 12);
	for (i = 0; i < 8; i++)
		nonce[4 + i] ^= (uint8_t)(d->seq >> (56 - 8 * i));
}

/* Append a record: content of type, then pad zero bytes (5.2, 5.4). */
static void
peer_seal(struct peer_dir *d, struct buf *out, uint8_t type,
    const void *content, size_t len, size_t pad)
{
	size_t inner = len + 1 + pad, clen = inner + 16;
	uint8_t *p, nonce[12];
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int outl, fl;

	assert_int_equal(buf_reserve(out, 5 + clen), 0);
	p = buf_tail(out);
	p[0] = 23;
	p[1] = 3;
	p[2] = 3;
	p[3] = (uint8_t)(clen >> 8);
	p[4] = (uint8_t)clen;
	memcpy(p + 5, content, len);
	p[5 + len] = type;
	memset(p + 5 + len + 1, 0, pad);
	peer_nonce(d, nonce);
	assert_int_equal(EVP_EncryptInit_ex2(ctx, EVP_aes_128_gcm(), d->key,
	    nonce, NULL), 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, p, 5), 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, p + 5, &outl, p + 5,
	    (int)inner), 1);
	assert_int_equal(EVP_EncryptFinal_ex(ctx, p + 5 + outl, &fl), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16,
	    p + 5 + inner), 1);
	EVP_CIPHER_CTX_free(ctx);
	buf_commit(out, 5 + clen);
	d->seq++;
}

/*
 * Open the next record of in (from *pos): its type and content into
 * *type_r and content (NUL-terminated); returns the content length.
 */
static size_t
peer_open(struct peer_dir *d, const struct buf *in, size_t *pos,
    uint8_t *type_r, uint8_t *content)
{
	const uint8_t *p = in->data + *pos;
	size_t clen, i;
	uint8_t nonce[12], tag[16];
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int outl, fl;

	assert_true(in->len - *pos >= 5);
	assert_int_equal(p[0], 23);
	clen = (size_t)p[3] << 8 | p[4];
	assert_true(in->len - *pos >= 5 + clen);
	clen -= 16;
	memcpy(tag, p + 5 + clen, 16);
	peer_nonce(d, nonce);
	assert_int_equal(EVP_DecryptInit_ex2(ctx, EVP_aes_128_gcm(), d->key,
	    nonce, NULL), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16,
	    tag), 1);
	assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &outl, p, 5), 1);
	assert_int_equal(EVP_DecryptUpdate(ctx, content, &outl, p + 5,
	    (int)clen), 1);
	assert_int_equal(EVP_DecryptFinal_ex(ctx, content + outl, &fl), 1);
	EVP_CIPHER_CTX_free(ctx);
	*pos += 5 + clen + 16;
	d->seq++;
	for (i = clen; i > 0 && content[i - 1] == 0; i--)
		;
	assert_true(i > 0);
	*type_r = content[i - 1];
	content[i - 1] = '\0';
	return i - 1;
}

/* ---- the layer under test, on memory ---- */

struct wire {
	struct buf in;		/* what the peer sent */
	size_t in_pos;
	size_t read_step;	/* bytes per read call, 0 = all */
	int in_eof;
	struct buf out;		/* what the layer sent */
	size_t write_room;	/* bytes the "socket" takes now */
};

static ssize_t
wire_read(void *arg, void *p, size_t len)
{
	struct wire *w = arg;
	size_t n = w->in.len - w->in_pos;

	if (n == 0) {
		if (w->in_eof)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	if (w->read_step != 0 && n > w->read_step)
		n = w->read_step;
	if (n > len)
		n = len;
	memcpy(p, w->in.data + w->in_pos, n);
	w->in_pos += n;
	return (ssize_t)n;
}

static ssize_t
wire_write(void *arg, const void *p, size_t len)
{
	struct wire *w = arg;

	if (w->write_room == 0) {
		errno = EAGAIN;
		return -1;
	}
	if (len > w->write_room)
		len = w->write_room;
	assert_int_equal(buf_append(&w->out, p, len), 0);
	if (w->write_room != SIZE_MAX)
		w->write_room -= len;
	return (ssize_t)len;
}

static const uint8_t client_secret[32] = "client traffic secret 0 .......";
static const uint8_t server_secret[32] = "server traffic secret 0 .......";

struct fixture {
	struct tls13 *t;
	struct wire w;
	struct peer_dir to_srv;		/* client -> server */
	struct peer_dir from_srv;	/* server -> client */
	size_t out_pos;
};

static void
fx_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->t = tls13_new_keys(0x1301, client_secret, server_secret);
	assert_non_null(f->t);
	buf_init(&f->w.in, BUF_UNBOUNDED);
	buf_init(&f->w.out, BUF_UNBOUNDED);
	f->w.write_room = SIZE_MAX;
	memcpy(f->to_srv.secret, client_secret, 32);
	memcpy(f->from_srv.secret, server_secret, 32);
	peer_keys(&f->to_srv);
	peer_keys(&f->from_srv);
}

static void
fx_free(struct fixture *f)
{
	tls13_free(f->t);
	buf_free(&f->w.in);
	buf_free(&f->w.out);
}

/* Everything readable now, into got; returns the last status. */
static int
fx_read(struct fixture *f, struct buf *got)
{
	uint8_t tmp[1000];
	size_t n;
	int r;

	for (;;) {
		r = tls13_read(f->t, tmp, sizeof(tmp), &n, wire_read,
		    wire_write, &f->w);
		if (r != TLS13_OK)
			return r;
		assert_true(n > 0);
		assert_int_equal(buf_append(got, tmp, n), 0);
	}
}

/* The next record the layer sent, opened. */
static size_t
fx_sent(struct fixture *f, uint8_t *type_r, uint8_t *content)
{
	return peer_open(&f->from_srv, &f->w.out, &f->out_pos, type_r,
	    content);
}

/* ---- tests ---- */

/* Data, padding, empty records, a byte at a time; then close_notify. */
static void
test_records(void **state)
{
	static const size_t steps[] = { 0, 1, 7, 5000 };
	struct fixture f;
	struct buf got;
	size_t k, in, out;
	int i;

	(void)state;
	for (k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		fx_init(&f);
		buf_init(&got, BUF_UNBOUNDED);
		f.w.read_step = steps[k];
		peer_seal(&f.to_srv, &f.w.in, 23, "a1 NOOP\r\n", 9, 0);
		peer_seal(&f.to_srv, &f.w.in, 23, "", 0, 0);
		peer_seal(&f.to_srv, &f.w.in, 23, "", 0, 300);
		peer_seal(&f.to_srv, &f.w.in, 23, "a2 ", 3, 1000);
		peer_seal(&f.to_srv, &f.w.in, 21, "\x01\x5a", 2, 0);
		for (i = 0; i < 3; i++)
			peer_seal(&f.to_srv, &f.w.in, 23, "x", 1, 0);
		peer_seal(&f.to_srv, &f.w.in, 23, "\r\n", 2, 16382);
		assert_int_equal(fx_read(&f, &got), TLS13_WANT_IO);
		assert_int_equal(got.len, 17);
		assert_memory_equal(got.data, "a1 NOOP\r\na2 xxx\r\n", 17);
		/* Idle: no buffer held. */
		tls13_buffer_sizes(f.t, &in, &out);
		assert_int_equal(in, 0);
		assert_int_equal(out, 0);
		peer_seal(&f.to_srv, &f.w.in, 21, "\x01\x00", 2, 0);
		assert_int_equal(fx_read(&f, &got), TLS13_EOF);
		assert_int_equal(fx_read(&f, &got), TLS13_EOF);
		assert_int_equal(f.w.out.len, 0);
		buf_free(&got);
		fx_free(&f);
	}
}

/* A whole 2^14 record is fine; one byte more, or more padding, is not. */
static void
test_record_sizes(void **state)
{
	static uint8_t big[TLS13_PLAIN_MAX + 1];
	struct fixture f;
	struct buf got;
	uint8_t type, msg[64];

	(void)state;
	memset(big, 'z', sizeof(big));
	fx_init(&f);
	buf_init(&got, BUF_UNBOUNDED);
	peer_seal(&f.to_srv, &f.w.in, 23, big, TLS13_PLAIN_MAX, 0);
	assert_int_equal(fx_read(&f, &got), TLS13_WANT_IO);
	assert_int_equal(got.len, TLS13_PLAIN_MAX);
	peer_seal(&f.to_srv, &f.w.in, 23, big, TLS13_PLAIN_MAX + 1, 0);
	assert_int_equal(fx_read(&f, &got), TLS13_FAIL);
	assert_string_equal(tls13_error(f.t), "TLS record plaintext too long");
	/* The alert: fatal (2), record_overflow (22). */
	assert_int_equal(fx_sent(&f, &type, msg), 2);
	assert_int_equal(type, 21);
	assert_memory_equal(msg, "\x02\x16", 2);
	fx_free(&f);

	fx_init(&f);
	peer_seal(&f.to_srv, &f.w.in, 23, big, TLS13_PLAIN_MAX, 1);
	assert_int_equal(fx_read(&f, &got), TLS13_FAIL);
	assert_string_equal(tls13_error(f.t), "TLS record plaintext too long");
	fx_free(&f);

	/* Nothing but padding: no content type. */
	fx_init(&f);
	peer_seal(&f.to_srv, &f.w.in, 0, "", 0, 20);
	assert_int_equal(fx_read(&f, &got), TLS13_FAIL);
	assert_string_equal(tls13_error(f.t),
	    "TLS record without content type");
	assert_int_equal(fx_sent(&f, &type, msg), 2);
	assert_memory_equal(msg, "\x02\x0a", 2);
	fx_free(&f);
	buf_free(&got);
}

/* More empty records in a row than TLS13_IDLE_RECORDS: refused. */
static void
test_empty_flood(void **state)
{
	struct fixture f;
	struct buf got;
	int i;

	(void)state;
	fx_init(&f);
	buf_init(&got, BUF_UNBOUNDED);
	for (i = 0; i < TLS13_IDLE_RECORDS; i++)
		peer_seal(&f.to_srv, &f.w.in, 23, "", 0, 0);
	peer_seal(&f.to_srv, &f.w.in, 23, "ok", 2, 0);
	assert_int_equal(fx_read(&f, &got), TLS13_WANT_IO);
	assert_int_equal(got.len, 2);
	for (i = 0; i <= TLS13_IDLE_RECORDS; i++)
		peer_seal(&f.to_srv, &f.w.in, 23, "", 0, 0);
	assert_int_equal(fx_read(&f, &got), TLS13_FAIL);
	assert_string_equal(tls13_error(f.t),
	    "too many TLS records without data");
	buf_free(&got);
	fx_free(&f);
}

/* KeyUpdate: both kinds, and what the layer answers. */
static void
test_key_update(void **state)
{
	struct fixture f;
	struct buf got;
	uint8_t type, msg[TLS13_PLAIN_MAX + 1];
	size_t used;
	int i;

	(void)state;
	fx_init(&f);
	buf_init(&got, BUF_UNBOUNDED);
	for (i = 0; i < 3; i++) {
		/* update_not_requested: only our reading key moves. */
		peer_seal(&f.to_srv, &f.w.in, 22, "\x18\x00\x00\x01\x00", 5, 0);
		peer_update(&f.to_srv);
		peer_seal(&f.to_srv, &f.w.in, 23, "one", 3, 0);
		assert_int_equal(fx_read(&f, &got), TLS13_WANT_IO);
		assert_int_equal(f.w.out.len, f.out_pos);
		/* update_requested: we answer with ours, then move. */
		peer_seal(&f.to_srv, &f.w.in, 22, "\x18\x00\x00\x01\x01", 5, 0);
		peer_update(&f.to_srv);
		peer_seal(&f.to_srv, &f.w.in, 23, "two", 3, 0);
		assert_int_equal(fx_read(&f, &got), TLS13_WANT_IO);
		/* Queued by the read, sent by the next flush (conn.c's). */
		assert_true(tls13_unsent(f.t) > 0);
		assert_int_equal(f.w.out.len, f.out_pos);
		assert_int_equal(tls13_flush(f.t, wire_write, &f.w), TLS13_OK);
		assert_int_equal(fx_sent(&f, &type, msg), 5);
		assert_int_equal(type, 22);
		assert_memory_equal(msg, "\x18\x00\x00\x01\x00", 5);
		peer_update(&f.from_srv);
		/* And our data after it is under the new key. */
		assert_int_equal(tls13_write(f.t, "reply", 5, &used,
		    wire_write, &f.w), TLS13_OK);
		assert_int_equal(used, 5);
		assert_int_equal(fx_sent(&f, &type, msg), 5);
		assert_int_equal(type, 23);
		assert_string_equal((char *)msg, "reply");
	}
	assert_int_equal(got.len, 18);
	assert_memory_equal(got.data, "onetwoonetwoonetwo", 18);
	buf_free(&got);
	fx_free(&f);
}

/* Post-handshake handshake messages other than a whole KeyUpdate. */
static void
test_bad_handshake(void **state)
{
	static const struct {
		const char *msg;
		size_t len;
		const char *error;
		uint8_t alert;
	} cases[] = {
		{ "\x18\x00\x00", 3, "fragmented TLS handshake message", 10 },
		{ "\x18\x00\x00\x01", 4, "malformed TLS KeyUpdate", 50 },
		{ "\x18\x00\x00\x02\x00\x00", 6, "malformed TLS KeyUpdate", 50 },
		{ "\x18\x00\x00\x01\x02", 5, "bad TLS KeyUpdate request", 47 },
		{ "\x18\x00\x00\x01\x00\x17", 6, "data after TLS KeyUpdate",
		  10 },
		{ "\x04\x00\x00\x01\x00", 5, "unexpected TLS handshake message",
		  10 },
		{ "\x14\x00\x00\x01\x00", 5, "unexpected TLS handshake message",
		  10 },
		{ "", 0, "fragmented TLS handshake message", 10 },
	};
	struct fixture f;
	struct buf got;
	uint8_t type, msg[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fx_init(&f);
		buf_init(&got, BUF_UNBOUNDED);
		peer_seal(&f.to_srv, &f.w.in, 22, cases[i].msg, cases[i].len,
		    0);
		assert_int_equal(fx_read(&f, &got), TLS13_FAIL);
		assert_string_equal(tls13_error(f.t), cases[i].error);
		assert_int_equal(fx_sent(&f, &type, msg), 2);
		assert_int_equal(type, 21);
		assert_int_equal(msg[0], 2);
		assert_int_equal(msg[1], cases[i].alert);
		/* Nothing more is sent after a fatal alert. */
		tls13_close(f.t, wire_write, &f.w);
		assert_int_equal(f.w.out.len, f.out_pos);
		buf_free(&got);
		fx_free(&f);
	}
}

/* Alerts: a fatal one from the peer, a malformed one, an unknown type. */
static void
test_alerts(void **state)
{
	struct fixture f;
	struct buf got;

	(void)state;
	fx_init(&f);
	buf_init(&got, BUF_UNBOUNDED);
	peer_seal(&f.to_srv, &f.w.in, 21, "\x02\x28", 2, 0);
	assert_int_equal(fx_read(&f, &got), TLS13_FAIL);
	assert_string_equal(tls13_error(f.t), "handshake failure");
	assert_int_equal(f.w.out.len, 0);	/* no alert back */
	fx_free(&f);

	fx_init(&f);
	peer_seal(&f.to_srv, &f.w.in, 21, "\x01\x00\x00", 3, 0);
	assert_int_equal(fx_read(&f, &got), TLS13_FAIL);
	assert_string_equal(tls13_error(f.t), "malformed TLS alert");
	fx_free(&f);

	fx_init(&f);
	peer_seal(&f.to_srv, &f.w.in, 20, "\x01", 1, 0);
	assert_int_equal(fx_read(&f, &got), TLS13_FAIL);
	assert_string_equal(tls13_error(f.t),
	    "unexpected TLS record content type");
	fx_free(&f);

	/* A record under the wrong key (the peer skipped one). */
	fx_init(&f);
	f.to_srv.seq++;
	peer_seal(&f.to_srv, &f.w.in, 23, "x", 1, 0);
	assert_int_equal(fx_read(&f, &got), TLS13_FAIL);
	assert_string_equal(tls13_error(f.t),
	    "TLS record failed authentication");
	fx_free(&f);

	/* TCP closed without close_notify, mid-record. */
	fx_init(&f);
	peer_seal(&f.to_srv, &f.w.in, 23, "abc", 3, 0);
	f.w.in.len -= 4;
	f.w.in_eof = 1;
	assert_int_equal(fx_read(&f, &got), TLS13_EOF_BARE);
	assert_int_equal(got.len, 0);
	fx_free(&f);
	buf_free(&got);
}

/* Large output through a socket that takes a little at a time. */
static void
test_write_partial(void **state)
{
	static uint8_t data[200000];
	struct fixture f;
	struct buf seen;
	uint8_t type, *msg = malloc(TLS13_PLAIN_MAX + 1);
	size_t used, sent = 0, n, in, out;
	int r;

	(void)state;
	assert_non_null(msg);
	for (n = 0; n < sizeof(data); n++)
		data[n] = (uint8_t)(n * 7 + (n >> 9));
	fx_init(&f);
	buf_init(&seen, BUF_UNBOUNDED);
	while (sent < sizeof(data)) {
		f.w.write_room = 999;
		r = tls13_write(f.t, data + sent, sizeof(data) - sent, &used,
		    wire_write, &f.w);
		assert_true(r == TLS13_OK || r == TLS13_WANT_IO);
		assert_true(used <= TLS13_WRITE_BATCH);
		assert_true(tls13_unsent(f.t) <= TLS13_UNSENT_MAX);
		sent += used;
	}
	f.w.write_room = SIZE_MAX;
	assert_int_equal(tls13_flush(f.t, wire_write, &f.w), TLS13_OK);
	assert_int_equal(tls13_unsent(f.t), 0);
	tls13_buffer_sizes(f.t, &in, &out);
	assert_int_equal(out, 0);
	while (f.out_pos < f.w.out.len) {
		n = fx_sent(&f, &type, msg);
		assert_int_equal(type, 23);
		assert_true(n <= TLS13_PLAIN_MAX);
		assert_int_equal(buf_append(&seen, msg, n), 0);
	}
	assert_int_equal(seen.len, sizeof(data));
	assert_memory_equal(seen.data, data, sizeof(data));
	/* close_notify, once. */
	tls13_close(f.t, wire_write, &f.w);
	tls13_close(f.t, wire_write, &f.w);
	assert_int_equal(fx_sent(&f, &type, msg), 2);
	assert_int_equal(type, 21);
	assert_memory_equal(msg, "\x01\x00", 2);
	assert_int_equal(f.out_pos, f.w.out.len);
	buf_free(&seen);
	free(msg);
	fx_free(&f);
}

/* The peer asks for key updates and never reads: bounded. */
static void
test_update_flood(void **state)
{
	struct fixture f;
	struct buf got;
	int i, r = TLS13_WANT_IO;

	(void)state;
	fx_init(&f);
	buf_init(&got, BUF_UNBOUNDED);
	f.w.write_room = 0;
	for (i = 0; i < 20000 && r == TLS13_WANT_IO; i++) {
		peer_seal(&f.to_srv, &f.w.in, 22, "\x18\x00\x00\x01\x01", 5, 0);
		peer_update(&f.to_srv);
		peer_seal(&f.to_srv, &f.w.in, 23, "d", 1, 0);
		r = fx_read(&f, &got);
		assert_true(tls13_unsent(f.t) <= TLS13_UNSENT_MAX + 64);
	}
	assert_int_equal(r, TLS13_FAIL);
	assert_string_equal(tls13_error(f.t),
	    "TLS peer requests key updates without reading");
	buf_free(&got);
	fx_free(&f);
}

static void
test_suites(void **state)
{
	uint8_t s48[48] = { 1, 2, 3 };
	struct tls13 *t;

	(void)state;
	t = tls13_new_keys(0x1302, s48, s48);
	assert_non_null(t);
	assert_string_equal(tls13_cipher(t), "TLS_AES_256_GCM_SHA384");
	assert_string_equal(tls13_version(t), "TLSv1.3");
	tls13_free(t);
	t = tls13_new_keys(0x1303, s48, s48);
	assert_non_null(t);
	assert_string_equal(tls13_cipher(t), "TLS_CHACHA20_POLY1305_SHA256");
	tls13_free(t);
	assert_null(tls13_new_keys(0x1304, s48, s48));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_record_sizes),
		cmocka_unit_test(test_empty_flood),
		cmocka_unit_test(test_key_update),
		cmocka_unit_test(test_bad_handshake),
		cmocka_unit_test(test_alerts),
		cmocka_unit_test(test_write_partial),
		cmocka_unit_test(test_update_flood),
		cmocka_unit_test(test_suites),
	};

	return cmocka_run_group_tests_name("tls13", tests, NULL, NULL);
}
