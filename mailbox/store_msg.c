/*
 * store_msg.c - messages: content-addressed, chunked, reference-counted
 * blobs (optionally sealed with XChaCha20-Poly1305), the MIME metadata kept
 * beside them, and the index operations IMAP and SMTP need: deliver,
 * append, list, flags (CONDSTORE), copy/move, expunge and VANISHED.
 *
 * Runs in smtpd (deliver), imapd (everything else) and govmailctl.  Message
 * bytes are untrusted and never interpreted here beyond handing them to the
 * MIME analyser once; UIDs and ranges come from IMAP clients and are only
 * used as bounds of cursor walks.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <db.h>
#include <sodium.h>
#include <zstd.h>

#include "buf.h"
#include "log.h"
#include "mime.h"
#include "xmalloc.h"
#include "mailbox_priv.h"

#define ST_FLAGS_ALL (STORE_FLAG_SEEN | STORE_FLAG_ANSWERED | \
	STORE_FLAG_FLAGGED | STORE_FLAG_DELETED | STORE_FLAG_DRAFT)
#define ST_CHUNK_KEY_LEN (STORE_BLOB_KEY_LEN + 4)

void
st_msg_key(uint8_t out[8], uint32_t mbox_id, uint32_t uid)
{
	be32_put(out, mbox_id);
	be32_put(out + 4, uid);
}

static void
st_chunk_key(uint8_t out[ST_CHUNK_KEY_LEN], const uint8_t *key, uint32_t n)
{
	memcpy(out, key, STORE_BLOB_KEY_LEN);
	be32_put(out + STORE_BLOB_KEY_LEN, n);
}

/* ---- blobs ---- */

/* Content address of msg (keyed when the store is encrypted). */
static void
st_blob_key(const struct store *s, const uint8_t *msg, size_t len,
    uint8_t key[STORE_BLOB_KEY_LEN])
{
	crypto_generichash(key, STORE_BLOB_KEY_LEN, msg, len,
	    s->sealed ? s->blob_hash_key : NULL, s->sealed ? 32 : 0);
}

static int
st_blob_load(struct store *s, DB_TXN *txn, const uint8_t *key,
    struct blob_rec *b)
{
	struct st_val v;
	int r;

	if ((r = st_get(s, SDB_BLOBS, txn, key, STORE_BLOB_KEY_LEN, &v)) != 0)
		return r;
	r = blob_rec_decode(v.data, v.len, b);
	free(v.data);
	if (r != 0)
		return st_fail(s, STORE_EDAMAGED, "damaged blob record");
	return 0;
}

static int
st_blob_save(struct store *s, DB_TXN *txn, const uint8_t *key,
    const struct blob_rec *b)
{
	uint8_t rec[BLOB_REC_LEN];

	blob_rec_encode(b, rec);
	return st_put(s, SDB_BLOBS, txn, key, STORE_BLOB_KEY_LEN, rec,
	    sizeof(rec), 0);
}

/* Remove a blob's chunks, metadata and record. */
static int
st_blob_destroy(struct store *s, DB_TXN *txn, const uint8_t *key,
    const struct blob_rec *b)
{
	uint8_t ck[ST_CHUNK_KEY_LEN];
	uint32_t i;
	int r;

	for (i = 0; i < b->nchunks; i++) {
		st_chunk_key(ck, key, i);
		r = st_del(s, SDB_CHUNKS, txn, ck, sizeof(ck));
		if (r != 0 && r != STORE_ENOTFOUND)
			return r;
	}
	r = st_del(s, SDB_META, txn, key, STORE_BLOB_KEY_LEN);
	if (r != 0 && r != STORE_ENOTFOUND)
		return r;
	return st_del(s, SDB_BLOBS, txn, key, STORE_BLOB_KEY_LEN);
}

int
st_blob_ref(struct store *s, DB_TXN *txn,
    const uint8_t key[STORE_BLOB_KEY_LEN], int64_t delta)
{
	struct blob_rec b;
	int r;

	if ((r = st_blob_load(s, txn, key, &b)) != 0) {
		if (r == STORE_ENOTFOUND)
			return st_fail(s, STORE_EDAMAGED,
			    "message refers to a missing blob");
		return r;
	}
	if (delta < 0 && (uint64_t)-delta >= b.refcount)
		return st_blob_destroy(s, txn, key, &b);
	b.refcount += (uint64_t)delta;
	return st_blob_save(s, txn, key, &b);
}

/*
 * Frame one chunk for a BLOB_FRAMED blob into out (room for
 * 1 + STORE_CHUNK_SIZE bytes): a method byte, then a zstd frame when that
 * saves at least 1/16 of the chunk, else the bytes as they are (already
 * compressed attachments are not worth the reader's time).  Returns the
 * framed length.
 */
static size_t
st_chunk_frame(struct store *s, const uint8_t *in, size_t n, uint8_t *out)
{
	size_t z;

	if (s->zc == NULL && (s->zc = ZSTD_createCCtx()) == NULL)
		log_fatalx("store: out of memory for a zstd context");
	z = ZSTD_compressCCtx(s->zc, out + 1, n - n / 16, in, n, s->zlevel);
	if (!ZSTD_isError(z) && z > 0) {
		out[0] = CHUNK_ZSTD;
		return 1 + z;
	}
	out[0] = CHUNK_STORED;
	memcpy(out + 1, in, n);
	return 1 + n;
}

/*
 * The message bytes of a framed chunk: want is how many the chunk holds
 * (STORE_CHUNK_SIZE but for the last).  Stored bytes are pointed at in
 * place; a zstd frame is decompressed into plain (STORE_CHUNK_SIZE bytes).
 */
static int
st_chunk_unframe(struct store *s, const uint8_t *in, size_t len,
    size_t want, uint8_t *plain, const uint8_t **data_r)
{
	size_t z;

	if (len < 1)
		return -1;
	if (in[0] == CHUNK_STORED) {
		if (len - 1 != want)
			return -1;
		*data_r = in + 1;
		return 0;
	}
	if (in[0] != CHUNK_ZSTD)
		return -1;
	if (s->zd == NULL && (s->zd = ZSTD_createDCtx()) == NULL)
		log_fatalx("store: out of memory for a zstd context");
	z = ZSTD_decompressDCtx(s->zd, plain, want, in + 1, len - 1);
	if (ZSTD_isError(z) || z != want)
		return -1;
	*data_r = plain;
	return 0;
}

/*
 * Write the chunks of a new blob: framed (maybe compressed) when flags has
 * BLOB_FRAMED, sealed when the store is encrypted.
 */
static int
st_blob_write(struct store *s, DB_TXN *txn, const uint8_t *key,
    const uint8_t *msg, size_t len, uint32_t nchunks, uint8_t flags)
{
	uint8_t ck[ST_CHUNK_KEY_LEN], *framed = NULL, *sealed = NULL;
	unsigned long long clen;
	const uint8_t *p;
	size_t off, n;
	uint32_t i;
	int r = 0;

	if (flags & BLOB_FRAMED)
		framed = xmalloc(1 + STORE_CHUNK_SIZE);
	if (s->sealed)
		sealed = xmalloc(STORE_SEAL_NONCE + 1 + STORE_CHUNK_SIZE +
		    STORE_SEAL_TAG);
	for (i = 0; i < nchunks; i++) {
		off = (size_t)i * STORE_CHUNK_SIZE;
		n = len - off < STORE_CHUNK_SIZE ? len - off :
		    STORE_CHUNK_SIZE;
		p = msg + off;
		if (framed != NULL) {
			n = st_chunk_frame(s, p, n, framed);
			p = framed;
		}
		st_chunk_key(ck, key, i);
		if (!s->sealed) {
			r = st_put(s, SDB_CHUNKS, txn, ck, sizeof(ck), p, n,
			    0);
		} else {
			/*
			 * SECURITY: a fresh random nonce per chunk; the blob
			 * key and chunk number are bound as associated data
			 * so chunks cannot be swapped between places.  The
			 * method byte is inside the seal.
			 */
			randombytes_buf(sealed, STORE_SEAL_NONCE);
			crypto_aead_xchacha20poly1305_ietf_encrypt(
			    sealed + STORE_SEAL_NONCE, &clen, p, n,
			    ck, sizeof(ck), NULL, sealed, s->key);
			r = st_put(s, SDB_CHUNKS, txn, ck, sizeof(ck), sealed,
			    STORE_SEAL_NONCE + (size_t)clen, 0);
		}
		if (r != 0)
			break;
	}
	free(framed);
	free(sealed);
	return r;
}

/*
 * Add nrefs references to the blob of msg, storing its chunks and
 * metadata first if it is new.
 */
static int
st_blob_store(struct store *s, DB_TXN *txn, const uint8_t *key,
    const uint8_t *msg, size_t len, const struct buf *meta, uint64_t nrefs)
{
	struct blob_rec b;
	int r;

	r = st_blob_load(s, txn, key, &b);
	if (r == 0) {
		b.refcount += nrefs;
		return st_blob_save(s, txn, key, &b);
	}
	if (r != STORE_ENOTFOUND)
		return r;
	memset(&b, 0, sizeof(b));
	b.flags = (s->sealed ? BLOB_SEALED : 0) |
	    (s->zlevel > 0 ? BLOB_FRAMED : 0);
	b.refcount = nrefs;
	b.size = len;
	b.nchunks = (uint32_t)((len + STORE_CHUNK_SIZE - 1) /
	    STORE_CHUNK_SIZE);
	if ((r = st_blob_write(s, txn, key, msg, len, b.nchunks,
	    b.flags)) != 0)
		return r;
	if ((r = st_put(s, SDB_META, txn, key, STORE_BLOB_KEY_LEN, meta->data,
	    meta->len, 0)) != 0)
		return r;
	return st_blob_save(s, txn, key, &b);
}

struct blob_read_ctx {
	const uint8_t *key;
	uint64_t offset, len;
	struct buf *out;
	size_t start;
};

/*
 * Chunk i of blob key (record b) as message bytes, *len_r of them at
 * *data_r: in v (the caller frees v->data) or in the caller's buffers
 * sealbuf (1 + STORE_CHUNK_SIZE bytes, for BLOB_SEALED) and plain
 * (STORE_CHUNK_SIZE bytes, for BLOB_FRAMED).  On failure v->data is freed.
 */
static int
st_chunk_get(struct store *s, DB_TXN *txn, const uint8_t *key,
    const struct blob_rec *b, uint32_t i, uint8_t *sealbuf, uint8_t *plain,
    struct st_val *v, const uint8_t **data_r, size_t *len_r)
{
	uint8_t ck[ST_CHUNK_KEY_LEN];
	unsigned long long plen;
	uint64_t cstart = (uint64_t)i * STORE_CHUNK_SIZE;
	size_t want;
	int r;

	want = b->size - cstart < STORE_CHUNK_SIZE ?
	    (size_t)(b->size - cstart) : STORE_CHUNK_SIZE;
	st_chunk_key(ck, key, i);
	if ((r = st_get(s, SDB_CHUNKS, txn, ck, sizeof(ck), v)) != 0) {
		v->data = NULL;
		return r == STORE_ENOTFOUND ? st_fail(s, STORE_EDAMAGED,
		    "missing chunk of a message") : r;
	}
	*data_r = v->data;
	*len_r = v->len;
	if (b->flags & BLOB_SEALED) {
		if (v->len < STORE_SEAL_NONCE + STORE_SEAL_TAG ||
		    v->len > STORE_SEAL_NONCE + STORE_SEAL_TAG + 1 +
		    STORE_CHUNK_SIZE ||
		    crypto_aead_xchacha20poly1305_ietf_decrypt(sealbuf, &plen,
		    NULL, v->data + STORE_SEAL_NONCE,
		    v->len - STORE_SEAL_NONCE, ck, sizeof(ck), v->data,
		    s->key) != 0) {
			r = st_fail(s, STORE_EDAMAGED,
			    "chunk fails authentication (wrong key?)");
			goto fail;
		}
		*data_r = sealbuf;
		*len_r = (size_t)plen;
	}
	if (b->flags & BLOB_FRAMED) {
		if (st_chunk_unframe(s, *data_r, *len_r, want, plain,
		    data_r) != 0) {
			r = st_fail(s, STORE_EDAMAGED,
			    "chunk of a message fails to decompress");
			goto fail;
		}
		*len_r = want;
	}
	return 0;
fail:
	free(v->data);
	v->data = NULL;
	return r;
}

/*
 * The buffers st_chunk_get needs for blob b; NULL where it needs none.  A
 * decompressed chunk is never longer than the blob, so plain is sized to
 * the smaller; sealbuf stays whole, st_chunk_get bounds it by that size.
 */
static void
st_chunk_bufs(const struct blob_rec *b, uint8_t **sealbuf, uint8_t **plain)
{
	*sealbuf = (b->flags & BLOB_SEALED) ?
	    xmalloc(1 + STORE_CHUNK_SIZE) : NULL;
	*plain = (b->flags & BLOB_FRAMED) ? xmalloc(b->size < STORE_CHUNK_SIZE ?
	    (size_t)b->size + 1 : STORE_CHUNK_SIZE) : NULL;
}

/* Free them; what came out of a seal is wiped first. */
static void
st_chunk_bufs_free(const struct blob_rec *b, uint8_t *sealbuf,
    uint8_t *plain)
{
	if (sealbuf != NULL) {
		sodium_memzero(sealbuf, 1 + STORE_CHUNK_SIZE);
		free(sealbuf);
	}
	if (plain != NULL && (b->flags & BLOB_SEALED))
		sodium_memzero(plain, b->size < STORE_CHUNK_SIZE ?
		    (size_t)b->size + 1 : STORE_CHUNK_SIZE);
	free(plain);
}

static int
st_blob_read_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct blob_read_ctx *c = arg;
	struct blob_rec b;
	struct st_val v;
	uint8_t *sealbuf, *plain;
	uint64_t end, cstart, from, to;
	uint32_t i;
	const uint8_t *data;
	size_t dlen;
	int r;

	buf_truncate(c->out, c->start);
	if ((r = st_blob_load(s, txn, c->key, &b)) != 0)
		return r == STORE_ENOTFOUND ? st_fail(s, r, "no such blob") :
		    r;
	if (c->offset >= b.size || c->len == 0)
		return 0;
	if ((b.flags & BLOB_SEALED) && !s->sealed)
		return st_fail(s, STORE_EINVAL,
		    "message is encrypted and no key_file is set");
	end = b.size - c->offset < c->len ? b.size : c->offset + c->len;
	st_chunk_bufs(&b, &sealbuf, &plain);
	for (i = (uint32_t)(c->offset / STORE_CHUNK_SIZE);
	    (uint64_t)i * STORE_CHUNK_SIZE < end; i++) {
		if ((r = st_chunk_get(s, txn, c->key, &b, i, sealbuf, plain,
		    &v, &data, &dlen)) != 0)
			break;
		cstart = (uint64_t)i * STORE_CHUNK_SIZE;
		from = c->offset > cstart ? c->offset - cstart : 0;
		to = end - cstart < dlen ? end - cstart : dlen;
		if (from < to && buf_append(c->out, data + from,
		    (size_t)(to - from)) == -1) {
			free(v.data);
			r = st_fail(s, STORE_ETOOBIG,
			    "message larger than the buffer");
			break;
		}
		free(v.data);
	}
	st_chunk_bufs_free(&b, sealbuf, plain);
	return r;
}

int
st_blob_verify(struct store *s, DB_TXN *txn, const uint8_t *key,
    const struct blob_rec *b)
{
	crypto_generichash_state h;
	uint8_t sum[STORE_BLOB_KEY_LEN], *sealbuf, *plain;
	struct st_val v;
	const uint8_t *data;
	uint64_t total = 0;
	size_t dlen;
	uint32_t i;
	int r = 0;

	if ((b->flags & BLOB_SEALED) && !s->sealed)
		return st_fail(s, STORE_EINVAL,
		    "message is encrypted and no key_file is set");
	if (b->nchunks != (b->size + STORE_CHUNK_SIZE - 1) / STORE_CHUNK_SIZE)
		return st_fail(s, STORE_EDAMAGED,
		    "chunk count does not match the size");
	/* Sealed blobs are keyed by a keyed hash (st_blob_key). */
	crypto_generichash_init(&h, (b->flags & BLOB_SEALED) ?
	    s->blob_hash_key : NULL, (b->flags & BLOB_SEALED) ? 32 : 0,
	    STORE_BLOB_KEY_LEN);
	st_chunk_bufs(b, &sealbuf, &plain);
	for (i = 0; i < b->nchunks; i++) {
		if ((r = st_chunk_get(s, txn, key, b, i, sealbuf, plain, &v,
		    &data, &dlen)) != 0)
			break;
		crypto_generichash_update(&h, data, dlen);
		total += dlen;
		free(v.data);
	}
	st_chunk_bufs_free(b, sealbuf, plain);
	if (r != 0)
		return r;
	crypto_generichash_final(&h, sum, sizeof(sum));
	if (total != b->size || sodium_memcmp(sum, key, sizeof(sum)) != 0)
		return st_fail(s, STORE_EDAMAGED,
		    "contents do not match the blob key");
	return 0;
}

int
store_blob_read_range(struct store *s, const uint8_t key[STORE_BLOB_KEY_LEN],
    uint64_t offset, uint64_t len, struct buf *out, const char **error_r)
{
	struct blob_read_ctx c;
	int r;

	c.key = key;
	c.offset = offset;
	c.len = len;
	c.out = out;
	c.start = out->len;
	r = st_txn_run(s, ST_TXN_READ, st_blob_read_fn, &c, error_r);
	if (r != 0)
		buf_truncate(out, c.start);
	return r;
}

int
store_blob_read(struct store *s, const uint8_t key[STORE_BLOB_KEY_LEN],
    struct buf *out, const char **error_r)
{
	return store_blob_read_range(s, key, 0, UINT64_MAX, out, error_r);
}

/* ---- metadata ---- */

static void
st_meta_encode(const struct mime_info *mi, struct buf *out)
{
	rec_u8(out, STORE_REC_VERSION);
	rec_str(out, mi->envelope);
	rec_str(out, mi->bodystructure);
	rec_str(out, mi->body);
	rec_u64(out, mi->header_size);
	rec_u32(out, mi->lines);
	rec_str(out, mi->subject);
	rec_str(out, mi->from);
	rec_str(out, mi->message_id);
	rec_u64(out, (uint64_t)mi->date);
	rec_mem(out, mi->partmap, mi->partmap != NULL ? mi->partmap_len : 0);
}

/* Analyse a message once; a message libetpan cannot parse gets "" text. */
static void
st_meta_build(const uint8_t *msg, size_t len, struct buf *out)
{
	struct mime_info mi;
	const char *err = NULL;

	memset(&mi, 0, sizeof(mi));
	if (mime_analyse(msg, len, &mi, &err) != 0) {
		log_warnx("store: MIME analysis failed: %s",
		    err != NULL ? err : "unknown");
		memset(&mi, 0, sizeof(mi));
		mi.header_size = len;
		st_meta_encode(&mi, out);
		return;
	}
	st_meta_encode(&mi, out);
	mime_info_free(&mi);
}

void
store_msg_meta_free(struct store_msg_meta *m)
{
	if (m == NULL)
		return;
	free(m->envelope);
	free(m->bodystructure);
	free(m->body);
	free(m->subject);
	free(m->from);
	free(m->message_id);
	free(m->partmap);
	memset(m, 0, sizeof(*m));
}

struct meta_ctx {
	const uint8_t *key;
	struct store_msg_meta *meta;
};

static int
st_msg_meta_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct meta_ctx *c = arg;
	struct rec_reader r;
	struct st_val v;
	struct store_msg_meta *m = c->meta;
	int ret;

	store_msg_meta_free(m);
	if ((ret = st_get(s, SDB_META, txn, c->key, STORE_BLOB_KEY_LEN,
	    &v)) != 0)
		return ret == STORE_ENOTFOUND ? st_fail(s, ret,
		    "no metadata for this blob") : ret;
	rec_init(&r, v.data, v.len);
	if (rec_get_u8(&r) != STORE_REC_VERSION)
		r.bad = 1;
	m->envelope = rec_get_str(&r);
	m->bodystructure = rec_get_str(&r);
	m->body = rec_get_str(&r);
	m->header_size = rec_get_u64(&r);
	m->lines = rec_get_u32(&r);
	m->subject = rec_get_str(&r);
	m->from = rec_get_str(&r);
	m->message_id = rec_get_str(&r);
	m->date = (int64_t)rec_get_u64(&r);
	m->partmap = rec_get_mem(&r, &m->partmap_len);
	free(v.data);
	if (r.bad) {
		store_msg_meta_free(m);
		return st_fail(s, STORE_EDAMAGED, "damaged metadata");
	}
	return 0;
}

int
store_msg_meta(struct store *s, const uint8_t key[STORE_BLOB_KEY_LEN],
    struct store_msg_meta *meta_r, const char **error_r)
{
	struct meta_ctx c;
	int r;

	memset(meta_r, 0, sizeof(*meta_r));
	c.key = key;
	c.meta = meta_r;
	r = st_txn_run(s, ST_TXN_READ, st_msg_meta_fn, &c, error_r);
	if (r != 0)
		store_msg_meta_free(meta_r);
	return r;
}

int
store_msg_section(const struct store_msg_meta *meta, const char *part,
    struct store_section *section_r)
{
	memset(section_r, 0, sizeof(*section_r));
	if (meta->partmap == NULL || meta->partmap_len == 0)
		return STORE_ENOTFOUND;
	if (mime_partmap_find(meta->partmap, meta->partmap_len, part,
	    &section_r->header_off, &section_r->header_len,
	    &section_r->body_off, &section_r->body_len) != 0)
		return STORE_ENOTFOUND;
	return 0;
}

/* ---- quota ---- */

static int
st_quota_check(struct store *s, DB_TXN *txn, const struct acct_rec *a,
    uint64_t bytes, uint64_t count)
{
	uint64_t ub, um;
	int r;

	if ((r = st_usage_get(s, txn, a->id, &ub, &um)) != 0)
		return r;
	if (ub + bytes > a->quota_bytes || um + count > a->quota_messages)
		return st_fail(s, STORE_EQUOTA, "over quota");
	return 0;
}

/* Add one index record to a loaded mailbox (caller saves *m). */
static int
st_msg_add(struct store *s, DB_TXN *txn, uint32_t mbox_id,
    struct mbox_rec *m, struct store_msg *msg)
{
	uint8_t k[8], rec[MSG_REC_LEN];
	int r;

	if (m->uidnext == UINT32_MAX)
		return st_fail(s, STORE_ETEMP, "mailbox has run out of UIDs");
	msg->uid = m->uidnext++;
	msg->modseq = ++m->highestmodseq;
	m->messages++;
	if (!(msg->flags & STORE_FLAG_SEEN))
		m->unseen++;
	m->recent++;
	m->size += msg->size;
	st_msg_key(k, mbox_id, msg->uid);
	if ((r = st_put(s, SDB_MESSAGES, txn, k, 8, rec,
	    msg_rec_encode(msg, rec), DB_NOOVERWRITE)) != 0)
		return r == STORE_EEXISTS ? st_fail(s, STORE_EDAMAGED,
		    "UID in use already (UIDNEXT damaged)") : r;
	return 0;
}

int
st_msg_remove(struct store *s, DB_TXN *txn, uint32_t mbox_id,
    struct mbox_rec *m, const struct store_msg *msg, int log_expunge,
    int drop_ref)
{
	uint8_t k[12], v[4];
	int r;

	st_msg_key(k, mbox_id, msg->uid);
	if ((r = st_del(s, SDB_MESSAGES, txn, k, 8)) != 0)
		return r;
	if (log_expunge) {
		m->highestmodseq++;
		be32_put(k, mbox_id);
		be64_put(k + 4, m->highestmodseq);
		be32_put(v, msg->uid);
		if ((r = st_put(s, SDB_EXPUNGED, txn, k, 12, v, 4, 0)) != 0)
			return r;
	}
	if (m->messages > 0)
		m->messages--;
	if (!(msg->flags & STORE_FLAG_SEEN) && m->unseen > 0)
		m->unseen--;
	if (msg->uid >= m->recent_uid && m->recent > 0)
		m->recent--;
	m->size = m->size >= msg->size ? m->size - msg->size : 0;
	if (!drop_ref)
		return 0;
	if ((r = st_blob_ref(s, txn, msg->blob, -1)) != 0)
		return r;
	return st_usage_add(s, txn, m->account_id, -(int64_t)msg->size, -1);
}

/* ---- deliver and append ---- */

struct deliver_ctx {
	const uint8_t *msg;
	size_t len;
	uint8_t key[STORE_BLOB_KEY_LEN];
	struct buf meta;
	int64_t internaldate;
	size_t n;
	char (*norm)[STORE_ADDRESS_MAX + 1];
	int *pre;		/* status decided before the transaction */
	size_t *order;		/* recipients in address order */
	size_t *order2;		/* known recipients in INBOX id order */
	struct {
		uint32_t acct_id, inbox;
		uint64_t quota_bytes, quota_messages;
	} *rc;
	struct store_rcpt_result *results;
	const struct store_deliver_opts *opts;	/* may be NULL */
	char *dup_ref;		/* STORE_DEDUP_REF_MAX + 1, may be NULL */
};

/* Phase 1: who the recipient is (account, INBOX, quota). */
static int
st_deliver_lookup(struct store *s, DB_TXN *txn, struct deliver_ctx *c,
    size_t i)
{
	struct store_rcpt_result *res = &c->results[i];
	struct acct_rec a;
	int r;

	if ((r = st_account_load(s, txn, c->norm[i], &a)) != 0) {
		if (r == STORE_ENOTFOUND)
			res->status = STORE_ENOTFOUND;
		return r == STORE_ENOTFOUND ? 0 : r;
	}
	c->rc[i].acct_id = a.id;
	c->rc[i].quota_bytes = a.quota_bytes;
	c->rc[i].quota_messages = a.quota_messages;
	if (a.disabled)
		res->status = STORE_EPERM;
	else if ((r = st_mbox_find(s, txn, a.id, "INBOX",
	    &c->rc[i].inbox)) == 0)
		res->status = STORE_OK;
	else if (r == STORE_ENOTFOUND) {
		/* An account without INBOX is damage; the others still get it. */
		log_warnx("store: account %u has no INBOX", a.id);
		res->status = STORE_EDAMAGED;
		r = 0;
	}
	acct_rec_clear(&a);
	return r;
}

/* Phase 2: the index record, the INBOX counters, the usage. */
static int
st_deliver_one(struct store *s, DB_TXN *txn, struct deliver_ctx *c, size_t i)
{
	struct store_rcpt_result *res = &c->results[i];
	struct store_msg msg;
	struct mbox_rec m;
	uint64_t ub, um;
	uint32_t inbox = c->rc[i].inbox;
	int r;

	if ((r = st_usage_get(s, txn, c->rc[i].acct_id, &ub, &um)) != 0)
		return r;
	if (ub + c->len > c->rc[i].quota_bytes ||
	    um + 1 > c->rc[i].quota_messages) {
		res->status = STORE_EQUOTA;
		return 0;
	}
	if ((r = st_mbox_load(s, txn, inbox, &m)) != 0)
		return r;
	memset(&msg, 0, sizeof(msg));
	msg.internaldate = c->internaldate;
	msg.size = c->len;
	memcpy(msg.blob, c->key, STORE_BLOB_KEY_LEN);
	if ((r = st_msg_add(s, txn, inbox, &m, &msg)) != 0)
		return r;
	if ((r = st_mbox_save(s, txn, inbox, &m)) != 0)
		return r;
	/* ub and um were read above, in this transaction (DB_RMW). */
	if ((r = st_usage_set(s, txn, c->rc[i].acct_id, ub + c->len,
	    um + 1)) != 0)
		return r;
	res->mailbox_id = inbox;
	res->uid = msg.uid;
	return 0;
}

static int
st_inbox_cmp(const void *a, const void *b, void *arg)
{
	const struct deliver_ctx *c = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	if (c->rc[x].inbox != c->rc[y].inbox)
		return c->rc[x].inbox < c->rc[y].inbox ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int
st_deliver_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct deliver_ctx *c = arg;
	uint64_t nok = 0;
	size_t k, i, n2 = 0;
	int r;

	for (i = 0; i < c->n; i++) {
		c->results[i].status = c->pre[i];
		c->results[i].mailbox_id = 0;
		c->results[i].uid = 0;
		memset(&c->rc[i], 0, sizeof(c->rc[i]));
	}
	/* A duplicate submission stores nothing at all. */
	if ((r = st_dedup_check(s, txn, c->opts, c->dup_ref)) != 0)
		return r;
	for (k = 0; k < c->n; k++) {
		i = c->order[k];
		if (c->pre[i] != STORE_OK)
			continue;
		c->results[i].status = STORE_ETEMP;
		if ((r = st_deliver_lookup(s, txn, c, i)) != 0)
			return r;
		if (c->results[i].status == STORE_OK)
			c->order2[n2++] = i;
	}
	/*
	 * The content first, with a reference for every known recipient:
	 * its chunks are the long part of the transaction, and the pages it
	 * locks are the content's own.  The mailbox, index and usage
	 * records that every delivery to the same mailbox must lock come
	 * after, so they are held only for the short rest.
	 */
	if (n2 > 0 && (r = st_blob_store(s, txn, c->key, c->msg, c->len,
	    &c->meta, n2)) != 0)
		return r;
	/*
	 * New index records in key order (mailbox id, then UID): B-tree
	 * pages fill from the left instead of splitting at random, and the
	 * locks are taken in one order by every fan-out.
	 */
	qsort_r(c->order2, n2, sizeof(*c->order2), st_inbox_cmp, c);
	for (k = 0; k < n2; k++) {
		i = c->order2[k];
		if ((r = st_deliver_one(s, txn, c, i)) != 0)
			return r;
		if (c->results[i].status == STORE_OK)
			nok++;
	}
	/* Recipients over quota: their references go again. */
	if (nok < n2 && (r = st_blob_ref(s, txn, c->key,
	    -(int64_t)(n2 - nok))) != 0)
		return r;
	/* The notice report, queue entries, dedup record: same txn. */
	return st_deliver_extras(s, txn, c->opts, c->results, c->n);
}

static int
st_order_cmp(const void *a, const void *b, void *arg)
{
	const struct deliver_ctx *c = arg;

	return strcmp(c->norm[*(const size_t *)a], c->norm[*(const size_t *)b]);
}

int
store_deliver(struct store *s, const uint8_t *msg, size_t len,
    const char *const *rcpts, size_t nrcpts, int64_t internaldate,
    struct store_rcpt_result *results, const char **error_r)
{
	return store_deliver_ex(s, msg, len, rcpts, nrcpts, internaldate,
	    results, NULL, NULL, error_r);
}

int
store_deliver_ex(struct store *s, const uint8_t *msg, size_t len,
    const char *const *rcpts, size_t nrcpts, int64_t internaldate,
    struct store_rcpt_result *results, const struct store_deliver_opts *opts,
    char *dup_ref_r, const char **error_r)
{
	struct deliver_ctx c;
	const char *err;
	size_t i;
	int r;

	if (error_r != NULL)
		*error_r = NULL;
	for (i = 0; i < nrcpts; i++) {
		results[i].address = rcpts[i];
		results[i].status = STORE_ETEMP;
		results[i].mailbox_id = 0;
		results[i].uid = 0;
	}
	if (len > s->message_max) {
		for (i = 0; i < nrcpts; i++)
			results[i].status = STORE_ETOOBIG;
		if (error_r != NULL)
			*error_r = "message larger than the configured maximum";
		return STORE_ETOOBIG;
	}
	memset(&c, 0, sizeof(c));
	c.msg = msg;
	c.len = len;
	c.n = nrcpts;
	c.results = results;
	c.opts = opts;
	c.dup_ref = dup_ref_r;
	if (dup_ref_r != NULL)
		dup_ref_r[0] = '\0';
	c.internaldate = internaldate != 0 ? internaldate :
	    (int64_t)time(NULL);
	c.norm = xcalloc(nrcpts > 0 ? nrcpts : 1, sizeof(*c.norm));
	c.pre = xcalloc(nrcpts > 0 ? nrcpts : 1, sizeof(*c.pre));
	c.order = xcalloc(nrcpts > 0 ? nrcpts : 1, sizeof(*c.order));
	c.order2 = xcalloc(nrcpts > 0 ? nrcpts : 1, sizeof(*c.order2));
	c.rc = xcalloc(nrcpts > 0 ? nrcpts : 1, sizeof(*c.rc));
	for (i = 0; i < nrcpts; i++) {
		c.order[i] = i;
		if (st_address_norm(rcpts[i], c.norm[i], sizeof(c.norm[i]),
		    &err) != 0)
			c.pre[i] = STORE_ENOTFOUND;
	}
	/* Lock recipients in one order so concurrent fan-outs rarely clash. */
	qsort_r(c.order, nrcpts, sizeof(*c.order), st_order_cmp, &c);
	/* Hash and analyse outside the transaction: it stays short. */
	buf_init(&c.meta, BUF_UNBOUNDED);
	if (nrcpts > 0) {
		st_blob_key(s, msg, len, c.key);
		st_meta_build(msg, len, &c.meta);
	}
	r = st_txn_run(s, ST_TXN_WRITE, st_deliver_fn, &c, error_r);
	if (r != 0)
		for (i = 0; i < nrcpts; i++) {
			results[i].status = r;
			results[i].mailbox_id = 0;
			results[i].uid = 0;
		}
	buf_free(&c.meta);
	free(c.norm);
	free(c.pre);
	free(c.order);
	free(c.order2);
	free(c.rc);
	return r;
}

struct append_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
	char name[STORE_MAILBOX_NAME_MAX + 1];
	const uint8_t *msg;
	size_t len;
	uint8_t key[STORE_BLOB_KEY_LEN];
	struct buf meta;
	uint32_t flags;
	const char *const *kw;
	size_t nkw;
	int64_t internaldate;
	uint32_t uidvalidity, uid;
};

static int
st_append_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct append_ctx *c = arg;
	char *names[STORE_KEYWORDS_MAX];
	struct store_msg msg;
	struct mbox_rec m;
	struct acct_rec a;
	uint32_t id;
	int r;

	memset(names, 0, sizeof(names));
	if ((r = st_account_load(s, txn, c->norm, &a)) != 0)
		return r == STORE_ENOTFOUND ? st_fail(s, r,
		    "no such account") : r;
	if ((r = st_quota_check(s, txn, &a, c->len, 1)) != 0)
		goto out;
	if ((r = st_mbox_find(s, txn, a.id, c->name, &id)) != 0)
		goto out;
	if ((r = st_mbox_load(s, txn, id, &m)) != 0)
		goto out;
	memset(&msg, 0, sizeof(msg));
	if (c->nkw > 0) {
		if ((r = st_kw_load(s, txn, id, names)) != 0)
			goto out;
		if ((r = st_kw_bits(s, txn, id, &m, names, c->kw, c->nkw, 1,
		    &msg.keywords)) != 0)
			goto out;
	}
	msg.flags = c->flags;
	msg.internaldate = c->internaldate;
	msg.size = c->len;
	memcpy(msg.blob, c->key, STORE_BLOB_KEY_LEN);
	if ((r = st_msg_add(s, txn, id, &m, &msg)) != 0)
		goto out;
	if ((r = st_mbox_save(s, txn, id, &m)) != 0)
		goto out;
	if ((r = st_usage_add(s, txn, a.id, (int64_t)c->len, 1)) != 0)
		goto out;
	if ((r = st_blob_store(s, txn, c->key, c->msg, c->len, &c->meta,
	    1)) != 0)
		goto out;
	c->uidvalidity = m.uidvalidity;
	c->uid = msg.uid;
out:
	store_keywords_free(names);
	acct_rec_clear(&a);
	return r;
}

int
store_append(struct store *s, const char *address, const char *mailbox,
    const uint8_t *msg, size_t len, uint32_t flags,
    const char *const *keywords, size_t nkeywords, int64_t internaldate,
    uint32_t *uidvalidity_r, uint32_t *uid_r, const char **error_r)
{
	struct append_ctx c;
	const char *err;
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = st_address_norm(address, c.norm, sizeof(c.norm), &err)) != 0 ||
	    (r = st_mailbox_name_norm(mailbox, c.name, sizeof(c.name),
	    &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	if (len > s->message_max) {
		if (error_r != NULL)
			*error_r = "message larger than the configured maximum";
		return STORE_ETOOBIG;
	}
	if ((flags & ~(uint32_t)ST_FLAGS_ALL) != 0 ||
	    nkeywords > STORE_KEYWORDS_MAX) {
		if (error_r != NULL)
			*error_r = "bad flags";
		return STORE_EINVAL;
	}
	c.msg = msg;
	c.len = len;
	c.flags = flags;
	c.kw = keywords;
	c.nkw = nkeywords;
	c.internaldate = internaldate != 0 ? internaldate :
	    (int64_t)time(NULL);
	st_blob_key(s, msg, len, c.key);
	buf_init(&c.meta, BUF_UNBOUNDED);
	st_meta_build(msg, len, &c.meta);
	r = st_txn_run(s, ST_TXN_WRITE, st_append_fn, &c, error_r);
	buf_free(&c.meta);
	if (r == 0) {
		if (uidvalidity_r != NULL)
			*uidvalidity_r = c.uidvalidity;
		if (uid_r != NULL)
			*uid_r = c.uid;
	}
	return r;
}

/* ---- listing ---- */

static const struct store_uid_range st_all_uids = { 1, UINT32_MAX };

struct msgv {
	struct store_msg *v;
	size_t n, cap;
};

static void
st_msgv_push(struct msgv *mv, const struct store_msg *m)
{
	if (mv->n == mv->cap) {
		mv->cap = mv->cap == 0 ? 64 : mv->cap * 2;
		mv->v = xreallocarray(mv->v, mv->cap, sizeof(*mv->v));
	}
	mv->v[mv->n++] = *m;
}

/* Messages of a mailbox in ranges, in UID order, into mv. */
static int
st_msg_collect(struct store *s, DB_TXN *txn, uint32_t mbox_id,
    const struct store_uid_range *ranges, size_t nranges, struct msgv *mv)
{
	struct st_cursor c;
	struct store_msg msg;
	uint8_t k[8];
	uint32_t uid, last = 0;
	size_t i;
	int r = 0;

	mv->n = 0;
	if (nranges == 0) {
		ranges = &st_all_uids;
		nranges = 1;
	}
	if ((r = st_cursor_open(s, SDB_MESSAGES, txn, &c)) != 0)
		return r;
	for (i = 0; i < nranges; i++) {
		if (ranges[i].lo > ranges[i].hi)
			continue;
		/* Ranges are sorted; an overlap must not list a UID twice. */
		st_msg_key(k, mbox_id, ranges[i].lo > last ? ranges[i].lo :
		    last + 1);
		if (last == UINT32_MAX)
			break;
		r = st_cursor_get(&c, k, 8, DB_SET_RANGE);
		while (r == 0 && c.k.size == 8 &&
		    be32_get(c.k.data) == mbox_id) {
			uid = be32_get((uint8_t *)c.k.data + 4);
			if (uid > ranges[i].hi)
				break;
			if (msg_rec_decode(c.v.data, c.v.size, uid, &msg) !=
			    0) {
				r = st_fail(s, STORE_EDAMAGED,
				    "damaged message record");
				break;
			}
			st_msgv_push(mv, &msg);
			last = uid;
			r = st_cursor_get(&c, NULL, 0, DB_NEXT);
		}
		if (r == STORE_ENOTFOUND)
			r = 0;
		if (r != 0)
			break;
	}
	st_cursor_close(&c);
	return r;
}

struct list_ctx {
	uint32_t mbox_id;
	const struct store_uid_range *ranges;
	size_t nranges;
	struct msgv mv;
};

static int
st_msg_list_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct list_ctx *c = arg;
	struct mbox_rec m;
	int r;

	if ((r = st_mbox_load(s, txn, c->mbox_id, &m)) != 0)
		return r;
	return st_msg_collect(s, txn, c->mbox_id, c->ranges, c->nranges,
	    &c->mv);
}

int
store_msg_list(struct store *s, uint32_t mailbox_id,
    const struct store_uid_range *ranges, size_t nranges,
    uint64_t changed_since, int (*cb)(const struct store_msg *, void *),
    void *ctx, const char **error_r)
{
	struct list_ctx c;
	size_t i;
	int r;

	memset(&c, 0, sizeof(c));
	c.mbox_id = mailbox_id;
	c.ranges = ranges;
	c.nranges = nranges;
	r = st_txn_run(s, ST_TXN_READ, st_msg_list_fn, &c, error_r);
	for (i = 0; r == 0 && i < c.mv.n; i++) {
		if (changed_since != 0 && c.mv.v[i].modseq <= changed_since)
			continue;
		if ((r = cb(&c.mv.v[i], ctx)) != 0)
			break;
	}
	free(c.mv.v);
	return r;
}

int
store_msg_get(struct store *s, uint32_t mailbox_id, uint32_t uid,
    struct store_msg *msg_r, const char **error_r)
{
	struct store_uid_range one;
	struct list_ctx c;
	int r;

	memset(&c, 0, sizeof(c));
	one.lo = one.hi = uid;
	c.mbox_id = mailbox_id;
	c.ranges = &one;
	c.nranges = 1;
	r = st_txn_run(s, ST_TXN_READ, st_msg_list_fn, &c, error_r);
	if (r == 0 && c.mv.n == 0) {
		r = STORE_ENOTFOUND;
		if (error_r != NULL)
			*error_r = "no such message";
	}
	if (r == 0)
		*msg_r = c.mv.v[0];
	free(c.mv.v);
	return r;
}

/* ---- flags ---- */

struct flags_ctx {
	uint32_t mbox_id;
	const struct store_uid_range *ranges;
	size_t nranges;
	enum store_flag_op op;
	uint32_t flags;
	const char *const *kw;
	size_t nkw;
	uint64_t unchanged_since;
	struct msgv mv;		/* scratch: messages in ranges */
	struct msgv changed;
	uint32_t *failed;
	size_t nfailed;
};

static int
st_flags_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct flags_ctx *c = arg;
	char *names[STORE_KEYWORDS_MAX];
	struct store_msg *msg;
	struct mbox_rec m;
	uint8_t k[8], rec[MSG_REC_LEN];
	uint64_t kwbits = 0, oldmask, nk;
	uint32_t nf;
	size_t i;
	int r, dirty = 0;

	c->changed.n = 0;
	c->nfailed = 0;
	memset(names, 0, sizeof(names));
	if ((r = st_mbox_load(s, txn, c->mbox_id, &m)) != 0)
		return r;
	oldmask = m.keywords_mask;
	if (c->nkw > 0 || c->op == STORE_FLAGS_REPLACE) {
		if ((r = st_kw_load(s, txn, c->mbox_id, names)) != 0)
			return r;
		if ((r = st_kw_bits(s, txn, c->mbox_id, &m, names, c->kw,
		    c->nkw, c->op != STORE_FLAGS_REMOVE, &kwbits)) != 0)
			goto out;
	}
	if ((r = st_msg_collect(s, txn, c->mbox_id, c->ranges, c->nranges,
	    &c->mv)) != 0)
		goto out;
	for (i = 0; i < c->mv.n; i++) {
		msg = &c->mv.v[i];
		switch (c->op) {
		case STORE_FLAGS_REPLACE:
			nf = c->flags;
			nk = kwbits;
			break;
		case STORE_FLAGS_ADD:
			nf = msg->flags | c->flags;
			nk = msg->keywords | kwbits;
			break;
		default:
			nf = msg->flags & ~c->flags;
			nk = msg->keywords & ~kwbits;
			break;
		}
		if (c->unchanged_since != 0 &&
		    msg->modseq > c->unchanged_since) {
			c->failed = xreallocarray(c->failed, c->nfailed + 1,
			    sizeof(*c->failed));
			c->failed[c->nfailed++] = msg->uid;
			continue;
		}
		if (nf == msg->flags && nk == msg->keywords)
			continue;
		if ((msg->flags & STORE_FLAG_SEEN) && !(nf & STORE_FLAG_SEEN))
			m.unseen++;
		else if (!(msg->flags & STORE_FLAG_SEEN) &&
		    (nf & STORE_FLAG_SEEN) && m.unseen > 0)
			m.unseen--;
		msg->flags = nf;
		msg->keywords = nk;
		msg->modseq = ++m.highestmodseq;
		st_msg_key(k, c->mbox_id, msg->uid);
		if ((r = st_put(s, SDB_MESSAGES, txn, k, 8, rec,
		    msg_rec_encode(msg, rec), 0)) != 0)
			goto out;
		st_msgv_push(&c->changed, msg);
		dirty = 1;
	}
	if (dirty || m.keywords_mask != oldmask)
		r = st_mbox_save(s, txn, c->mbox_id, &m);
out:
	store_keywords_free(names);
	return r;
}

int
store_flags_update(struct store *s, uint32_t mailbox_id,
    const struct store_uid_range *ranges, size_t nranges,
    enum store_flag_op op, uint32_t flags, const char *const *keywords,
    size_t nkeywords, uint64_t unchanged_since,
    int (*changed_cb)(const struct store_msg *, void *),
    int (*failed_cb)(uint32_t, void *), void *ctx, const char **error_r)
{
	struct flags_ctx c;
	size_t i;
	int r;

	if ((flags & ~(uint32_t)ST_FLAGS_ALL) != 0 ||
	    nkeywords > STORE_KEYWORDS_MAX || op < STORE_FLAGS_REPLACE ||
	    op > STORE_FLAGS_REMOVE) {
		if (error_r != NULL)
			*error_r = "bad flags";
		return STORE_EINVAL;
	}
	memset(&c, 0, sizeof(c));
	c.mbox_id = mailbox_id;
	c.ranges = ranges;
	c.nranges = nranges;
	c.op = op;
	c.flags = flags;
	c.kw = keywords;
	c.nkw = nkeywords;
	c.unchanged_since = unchanged_since;
	r = st_txn_run(s, ST_TXN_WRITE, st_flags_fn, &c, error_r);
	if (r == 0) {
		for (i = 0; i < c.changed.n && changed_cb != NULL; i++)
			if (changed_cb(&c.changed.v[i], ctx) != 0)
				break;
		for (i = 0; i < c.nfailed && failed_cb != NULL; i++)
			if (failed_cb(c.failed[i], ctx) != 0)
				break;
	}
	free(c.mv.v);
	free(c.changed.v);
	free(c.failed);
	return r;
}

/* ---- copy and move ---- */

struct copy_ctx {
	uint32_t src, dst;
	const struct store_uid_range *ranges;
	size_t nranges;
	int move;
	struct msgv mv;
	struct store_uid_map map;
};

static void
st_map_reset(struct store_uid_map *map)
{
	free(map->src);
	free(map->dst);
	memset(map, 0, sizeof(*map));
}

static int
st_copy_core(struct store *s, DB_TXN *txn, struct copy_ctx *c)
{
	char *sn[STORE_KEYWORDS_MAX], *dn[STORE_KEYWORDS_MAX];
	const char *kw[STORE_KEYWORDS_MAX];
	struct mbox_rec sm, dm;
	struct acct_rec a;
	struct store_msg msg;
	uint64_t bytes = 0;
	size_t i, nkw;
	int r, slot;

	st_map_reset(&c->map);
	memset(sn, 0, sizeof(sn));
	memset(dn, 0, sizeof(dn));
	if ((r = st_mbox_load(s, txn, c->src, &sm)) != 0)
		return r;
	if ((r = st_mbox_load(s, txn, c->dst, &dm)) != 0)
		return r;
	if (sm.account_id != dm.account_id)
		return st_fail(s, STORE_EINVAL,
		    "mailboxes belong to different accounts");
	if ((r = st_msg_collect(s, txn, c->src, c->ranges, c->nranges,
	    &c->mv)) != 0)
		return r;
	if (c->mv.n == 0) {
		c->map.dst_uidvalidity = dm.uidvalidity;
		return 0;
	}
	if (!c->move) {
		for (i = 0; i < c->mv.n; i++)
			bytes += c->mv.v[i].size;
		if ((r = st_account_load_id(s, txn, sm.account_id, &a)) != 0)
			return r;
		r = st_quota_check(s, txn, &a, bytes, c->mv.n);
		acct_rec_clear(&a);
		if (r != 0)
			return r;
	}
	if ((r = st_kw_load(s, txn, c->src, sn)) != 0)
		return r;
	if ((r = st_kw_load(s, txn, c->dst, dn)) != 0)
		goto out;
	c->map.src = xcalloc(c->mv.n, sizeof(uint32_t));
	c->map.dst = xcalloc(c->mv.n, sizeof(uint32_t));
	for (i = 0; i < c->mv.n; i++) {
		msg = c->mv.v[i];
		/* Keyword slots are per mailbox: translate by name. */
		nkw = 0;
		for (slot = 0; slot < STORE_KEYWORDS_MAX; slot++)
			if ((msg.keywords & (1ULL << slot)) && sn[slot] != NULL)
				kw[nkw++] = sn[slot];
		if ((r = st_kw_bits(s, txn, c->dst, &dm, dn, kw, nkw, 1,
		    &msg.keywords)) != 0)
			goto out;
		if ((r = st_msg_add(s, txn, c->dst, &dm, &msg)) != 0)
			goto out;
		c->map.src[i] = c->mv.v[i].uid;
		c->map.dst[i] = msg.uid;
		c->map.n++;
		if (c->move) {
			if ((r = st_msg_remove(s, txn, c->src, &sm,
			    &c->mv.v[i], 1, 0)) != 0)
				goto out;
		} else if ((r = st_blob_ref(s, txn, msg.blob, 1)) != 0)
			goto out;
	}
	if (!c->move && (r = st_usage_add(s, txn, sm.account_id,
	    (int64_t)bytes, (int64_t)c->mv.n)) != 0)
		goto out;
	if ((r = st_mbox_save(s, txn, c->dst, &dm)) != 0)
		goto out;
	if (c->move && (r = st_mbox_save(s, txn, c->src, &sm)) != 0)
		goto out;
	c->map.dst_uidvalidity = dm.uidvalidity;
out:
	store_keywords_free(sn);
	store_keywords_free(dn);
	return r;
}

static int
st_copy_fn(struct store *s, DB_TXN *txn, void *arg)
{
	return st_copy_core(s, txn, arg);
}

int
st_msg_move_all(struct store *s, DB_TXN *txn, uint32_t src, uint32_t dst)
{
	struct copy_ctx c;
	int r;

	memset(&c, 0, sizeof(c));
	c.src = src;
	c.dst = dst;
	c.move = 1;
	r = st_copy_core(s, txn, &c);
	free(c.mv.v);
	st_map_reset(&c.map);
	return r;
}

int
store_copy(struct store *s, uint32_t src_mailbox_id,
    const struct store_uid_range *ranges, size_t nranges,
    uint32_t dst_mailbox_id, int move, struct store_uid_map *map_r,
    const char **error_r)
{
	struct copy_ctx c;
	int r;

	memset(map_r, 0, sizeof(*map_r));
	if (move && src_mailbox_id == dst_mailbox_id) {
		if (error_r != NULL)
			*error_r = "cannot move a message to its own mailbox";
		return STORE_EINVAL;
	}
	memset(&c, 0, sizeof(c));
	c.src = src_mailbox_id;
	c.dst = dst_mailbox_id;
	c.ranges = ranges;
	c.nranges = nranges;
	c.move = move;
	r = st_txn_run(s, ST_TXN_WRITE, st_copy_fn, &c, error_r);
	free(c.mv.v);
	if (r == 0)
		*map_r = c.map;
	else
		st_map_reset(&c.map);
	return r;
}

void
store_uid_map_free(struct store_uid_map *map)
{
	if (map != NULL)
		st_map_reset(map);
}

/* ---- expunge and vanished ---- */

struct expunge_ctx {
	uint32_t mbox_id;
	const struct store_uid_range *ranges;
	size_t nranges;
	uint64_t since;
	struct msgv mv;
	uint32_t *uids;
	size_t n;
};

static int
st_expunge_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct expunge_ctx *c = arg;
	struct mbox_rec m;
	size_t i;
	int r;

	c->n = 0;
	if ((r = st_mbox_load(s, txn, c->mbox_id, &m)) != 0)
		return r;
	if ((r = st_msg_collect(s, txn, c->mbox_id, c->ranges, c->nranges,
	    &c->mv)) != 0)
		return r;
	c->uids = xreallocarray(c->uids, c->mv.n + 1, sizeof(*c->uids));
	for (i = 0; i < c->mv.n; i++) {
		if (!(c->mv.v[i].flags & STORE_FLAG_DELETED))
			continue;
		if ((r = st_msg_remove(s, txn, c->mbox_id, &m, &c->mv.v[i], 1,
		    1)) != 0)
			return r;
		c->uids[c->n++] = c->mv.v[i].uid;
	}
	if (c->n == 0)
		return 0;
	return st_mbox_save(s, txn, c->mbox_id, &m);
}

int
store_expunge(struct store *s, uint32_t mailbox_id,
    const struct store_uid_range *ranges, size_t nranges,
    int (*cb)(uint32_t, void *), void *ctx, const char **error_r)
{
	struct expunge_ctx c;
	size_t i;
	int r;

	memset(&c, 0, sizeof(c));
	c.mbox_id = mailbox_id;
	c.ranges = ranges;
	c.nranges = nranges;
	r = st_txn_run(s, ST_TXN_WRITE, st_expunge_fn, &c, error_r);
	for (i = 0; r == 0 && cb != NULL && i < c.n; i++)
		if (cb(c.uids[i], ctx) != 0)
			break;
	free(c.mv.v);
	free(c.uids);
	return r;
}

static int
st_vanished_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct expunge_ctx *c = arg;
	struct st_cursor cur;
	struct mbox_rec m;
	uint8_t k[12];
	int r;

	c->n = 0;
	if ((r = st_mbox_load(s, txn, c->mbox_id, &m)) != 0)
		return r;
	if (c->since == UINT64_MAX)
		return 0;
	be32_put(k, c->mbox_id);
	be64_put(k + 4, c->since + 1);
	if ((r = st_cursor_open(s, SDB_EXPUNGED, txn, &cur)) != 0)
		return r;
	r = st_cursor_get(&cur, k, 12, DB_SET_RANGE);
	while (r == 0 && cur.k.size == 12 &&
	    be32_get(cur.k.data) == c->mbox_id) {
		if (cur.v.size == 4) {
			c->uids = xreallocarray(c->uids, c->n + 1,
			    sizeof(*c->uids));
			c->uids[c->n++] = be32_get(cur.v.data);
		}
		r = st_cursor_get(&cur, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

static int
st_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int
store_vanished(struct store *s, uint32_t mailbox_id, uint64_t since,
    int (*cb)(uint32_t, void *), void *ctx, const char **error_r)
{
	struct expunge_ctx c;
	size_t i;
	int r;

	memset(&c, 0, sizeof(c));
	c.mbox_id = mailbox_id;
	c.since = since;
	r = st_txn_run(s, ST_TXN_READ, st_vanished_fn, &c, error_r);
	if (r == 0 && c.n > 0)
		qsort(c.uids, c.n, sizeof(*c.uids), st_u32_cmp);
	for (i = 0; r == 0 && i < c.n; i++) {
		if (i > 0 && c.uids[i] == c.uids[i - 1])
			continue;
		if (cb(c.uids[i], ctx) != 0)
			break;
	}
	free(c.uids);
	return r;
}
