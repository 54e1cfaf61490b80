/*
 * imap_meta.h - a worker's cache of message metadata.
 *
 * FETCH (ENVELOPE, BODYSTRUCTURE, body sections), SEARCH (SUBJECT, FROM,
 * SENT*) and SORT/THREAD all start from the metadata the store computed
 * once at delivery (store_msg_meta: ENVELOPE, BODYSTRUCTURE, part map,
 * decoded Subject/From, Date).  Reading it costs a Berkeley DB lookup and
 * a decode per message; a mail client asks for the same messages again and
 * again (every SEARCH walks the mailbox), so each worker keeps the most
 * recently used metadata in memory, within a byte budget ([imapd]
 * meta_cache; 0 turns the cache off).  Entries are keyed by the message's
 * content-addressed blob key, so they never go stale and are shared by every
 * session (and every copy of a message) in the worker.  Least recently used
 * entries go first.  Not thread-safe: the worker's event loop only.
 */
#ifndef GOVMAIL_IMAP_META_H
#define GOVMAIL_IMAP_META_H

#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"

/* Hash buckets: start small (an idle worker holds 8 KiB), double as the
 * entries grow, up to the maximum (chains are then longer). */
#define META_CACHE_BUCKETS_MIN 1024
#define META_CACHE_BUCKETS_MAX (1U << 20)

struct meta_cache;

/* A cache holding at most budget bytes (entries and their strings). */
struct meta_cache *meta_cache_new(size_t budget);
void meta_cache_free(struct meta_cache *mc);

/* The cached metadata of key, or NULL; the pointer is the cache's, valid
 * until the next meta_cache_put or meta_cache_free. */
const struct store_msg_meta *meta_cache_find(struct meta_cache *mc,
    const uint8_t key[STORE_BLOB_KEY_LEN]);
/* Add a copy of meta under key (nothing if present, or larger than the
 * whole budget), evicting the least recently used entries to fit. */
void meta_cache_put(struct meta_cache *mc,
    const uint8_t key[STORE_BLOB_KEY_LEN], const struct store_msg_meta *meta);

struct meta_cache_stats {
	size_t entries, bytes, budget;
	uint64_t hits, misses;
};
void meta_cache_stats(const struct meta_cache *mc,
    struct meta_cache_stats *st_r);

/*
 * store_msg_meta() through the cache (mc NULL: straight to the store):
 * fills meta_r with the caller's own copy (store_msg_meta_free) and
 * returns 0, or returns the store's error.
 */
int imap_meta_load(struct meta_cache *mc, struct store *store,
    const uint8_t key[STORE_BLOB_KEY_LEN], struct store_msg_meta *meta_r,
    const char **error_r);

#endif
