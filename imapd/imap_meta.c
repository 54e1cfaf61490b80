/*
 * imap_meta.c - a worker's cache of message metadata (see imap_meta.h).
 *
 * govmail-imapd workers, on the event loop thread only (no locking).
 * Trusts the store's metadata; keys are the store's content-addressed blob
 * keys, so an entry never goes stale: the bytes a key names never change.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap_meta.h"
#include "xmalloc.h"

struct meta_ent {
	uint8_t key[STORE_BLOB_KEY_LEN];
	struct store_msg_meta meta;
	size_t bytes;
	struct meta_ent *hnext;			/* bucket chain */
	struct meta_ent *prev, *next;		/* LRU: head is newest */
};

struct meta_cache {
	struct meta_ent **buckets;
	size_t nbuckets;			/* a power of two */
	size_t n;
	size_t bytes, budget;
	struct meta_ent *head, *tail;
	uint64_t hits, misses;
};

static size_t
slen(const char *s)
{
	return s != NULL ? strlen(s) + 1 : 0;
}

static char *
sdup(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static size_t
meta_bytes(const struct store_msg_meta *m)
{
	return sizeof(struct meta_ent) + sizeof(struct meta_ent *) +
	    slen(m->envelope) + slen(m->bodystructure) + slen(m->body) +
	    slen(m->subject) + slen(m->from) + slen(m->message_id) +
	    m->partmap_len;
}

static void
meta_copy(struct store_msg_meta *dst, const struct store_msg_meta *src)
{
	*dst = *src;
	dst->envelope = sdup(src->envelope);
	dst->bodystructure = sdup(src->bodystructure);
	dst->body = sdup(src->body);
	dst->subject = sdup(src->subject);
	dst->from = sdup(src->from);
	dst->message_id = sdup(src->message_id);
	dst->partmap = NULL;
	if (src->partmap != NULL) {
		dst->partmap = xmalloc(src->partmap_len > 0 ?
		    src->partmap_len : 1);
		memcpy(dst->partmap, src->partmap, src->partmap_len);
	}
}

static size_t
bucket_of(const struct meta_cache *mc, const uint8_t *key)
{
	uint64_t h;

	/* The key is a cryptographic hash already: its bytes are uniform. */
	memcpy(&h, key, sizeof(h));
	return (size_t)(h & (mc->nbuckets - 1));
}

struct meta_cache *
meta_cache_new(size_t budget)
{
	struct meta_cache *mc = xcalloc(1, sizeof(*mc));

	mc->budget = budget;
	mc->nbuckets = META_CACHE_BUCKETS_MIN;
	mc->buckets = xcalloc(mc->nbuckets, sizeof(*mc->buckets));
	return mc;
}

static void
lru_unlink(struct meta_cache *mc, struct meta_ent *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		mc->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		mc->tail = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_push(struct meta_cache *mc, struct meta_ent *e)
{
	e->prev = NULL;
	e->next = mc->head;
	if (mc->head != NULL)
		mc->head->prev = e;
	mc->head = e;
	if (mc->tail == NULL)
		mc->tail = e;
}

static void
ent_remove(struct meta_cache *mc, struct meta_ent *e)
{
	struct meta_ent **pp = &mc->buckets[bucket_of(mc, e->key)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(mc, e);
	mc->bytes -= e->bytes;
	mc->n--;
	store_msg_meta_free(&e->meta);
	free(e);
}

void
meta_cache_free(struct meta_cache *mc)
{
	if (mc == NULL)
		return;
	while (mc->head != NULL)
		ent_remove(mc, mc->head);
	free(mc->buckets);
	free(mc);
}

static struct meta_ent *
ent_find(const struct meta_cache *mc, const uint8_t *key)
{
	struct meta_ent *e;

	for (e = mc->buckets[bucket_of(mc, key)]; e != NULL; e = e->hnext)
		if (memcmp(e->key, key, STORE_BLOB_KEY_LEN) == 0)
			return e;
	return NULL;
}

const struct store_msg_meta *
meta_cache_find(struct meta_cache *mc, const uint8_t key[STORE_BLOB_KEY_LEN])
{
	struct meta_ent *e = ent_find(mc, key);

	if (e == NULL) {
		mc->misses++;
		return NULL;
	}
	if (mc->head != e) {
		lru_unlink(mc, e);
		lru_push(mc, e);
	}
	mc->hits++;
	return &e->meta;
}

/* Double the table when chains grow past two entries on average. */
static void
grow(struct meta_cache *mc)
{
	struct meta_ent **old = mc->buckets;
	size_t i, oldn = mc->nbuckets;

	if (mc->n < 2 * mc->nbuckets || mc->nbuckets >= META_CACHE_BUCKETS_MAX)
		return;
	mc->nbuckets *= 2;
	mc->buckets = xcalloc(mc->nbuckets, sizeof(*mc->buckets));
	for (i = 0; i < oldn; i++) {
		struct meta_ent *e = old[i], *next;

		for (; e != NULL; e = next) {
			size_t b = bucket_of(mc, e->key);

			next = e->hnext;
			e->hnext = mc->buckets[b];
			mc->buckets[b] = e;
		}
	}
	free(old);
}

void
meta_cache_put(struct meta_cache *mc, const uint8_t key[STORE_BLOB_KEY_LEN],
    const struct store_msg_meta *meta)
{
	struct meta_ent *e;
	size_t b, bytes = meta_bytes(meta);

	if (bytes > mc->budget || ent_find(mc, key) != NULL)
		return;
	while (mc->tail != NULL && mc->bytes + bytes > mc->budget)
		ent_remove(mc, mc->tail);
	e = xcalloc(1, sizeof(*e));
	memcpy(e->key, key, STORE_BLOB_KEY_LEN);
	meta_copy(&e->meta, meta);
	e->bytes = bytes;
	b = bucket_of(mc, key);
	e->hnext = mc->buckets[b];
	mc->buckets[b] = e;
	lru_push(mc, e);
	mc->bytes += bytes;
	mc->n++;
	grow(mc);
}

void
meta_cache_stats(const struct meta_cache *mc, struct meta_cache_stats *st_r)
{
	st_r->entries = mc->n;
	st_r->bytes = mc->bytes;
	st_r->budget = mc->budget;
	st_r->hits = mc->hits;
	st_r->misses = mc->misses;
}

int
imap_meta_load(struct meta_cache *mc, struct store *store,
    const uint8_t key[STORE_BLOB_KEY_LEN], struct store_msg_meta *meta_r,
    const char **error_r)
{
	const struct store_msg_meta *hit;
	int r;

	if (mc != NULL && (hit = meta_cache_find(mc, key)) != NULL) {
		meta_copy(meta_r, hit);
		return 0;
	}
	if ((r = store_msg_meta(store, key, meta_r, error_r)) != 0)
		return r;
	if (mc != NULL)
		meta_cache_put(mc, key, meta_r);
	return 0;
}
