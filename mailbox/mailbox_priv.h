/*
 * mailbox_priv.h - internals of the store shared by mailbox/store_*.c.
 *
 * Not a public header: only mailbox/ and the store's own unit tests include
 * it.  It names the Berkeley DB databases, the record layouts (serialised
 * with the rec_* helpers, big-endian integers so that keys sort in numeric
 * order), the transaction runner that retries deadlocks, and the test-only
 * fault injection hook.
 */
#ifndef GOVMAIL_MAILBOX_PRIV_H
#define GOVMAIL_MAILBOX_PRIV_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <db.h>

#include "buf.h"
#include "mailbox.h"

/* Retries of one transaction on DB_LOCK_DEADLOCK / DB_LOCK_NOTGRANTED. */
#define STORE_TXN_RETRY_MAX 200
/* Notification bucket files (bucket = mailbox id % N). */
#define STORE_NOTIFY_BUCKETS 4096
/* Entries of the process-wide password success cache (direct-mapped). */
#define STORE_AUTH_CACHE_SIZE 131072
/* Berkeley DB lock table (one big transaction: account del, check). */
#define STORE_LOCKS_MAX 400000
#define STORE_LOCKERS_MAX 20000
/* Lock wait after which a transaction gives up and is retried (us). */
#define STORE_LOCK_TIMEOUT_US 10000000
/* The memory pool is split into regions of this size, each with its lock. */
#define STORE_CACHE_REGION (16ULL * 1024 * 1024)
#define STORE_CACHE_REGIONS_MAX 8
/* Memory pool hash buckets per 4 KiB page of [store] cache_size. */
#define STORE_HASH_PER_PAGE 4
/*
 * Every buffer in the memory pool holds a mutex, and Berkeley DB sizes
 * its mutex region for a pool of 4 KiB pages.  Usage pages are 512 bytes
 * (STORE_USAGE_PAGESIZE, six accounts each): a store of a million
 * accounts has more of them than a 64 MiB pool holds, and a pool full of
 * them ran out of mutexes ("unable to allocate memory for mutex", once
 * per page read).  Room for that many more buffers, at most this many
 * (a 270 MiB pool of usage pages, three million accounts).
 */
#define STORE_MUTEX_EXTRA_MAX (1U << 19)
/* In-memory log buffer: a 64 KiB chunk fits several times. */
#define STORE_LOG_BUFFER (2U * 1024 * 1024)
/*
 * Blobs read back per read transaction by check --contents.  The read
 * locks of a transaction are held until it ends, and a delivery that
 * writes a page the check has read waits for them: short transactions
 * keep that wait short however big the store is.
 */
#define ST_CHECK_CONTENTS_SLICE 64
/* A store call (or open) blocked this long is stuck on a dead mutex. */
#define STORE_STUCK_SEC 60
/* File in the store folder: the next opener must run recovery. */
#define STORE_RECOVER_MARKER "recover.needed"
/* Largest [store] shm_key: INT_MAX less room for the regions' keys. */
#define STORE_SHM_KEY_MAX 2147483631
#define STORE_SHM_KEY_MAX_S "2147483631"
/* Keys derived from the store folder: BASE + 16 * (0 .. SLOTS - 1). */
#define STORE_SHM_KEY_BASE 0x47000000L
#define STORE_SHM_KEY_SLOTS 0x100000
/* Smallest System V segment store_open checks for before shared regions. */
#define STORE_SHM_PROBE (256ULL * 1024 * 1024)
/* How long an open waits for another process's open of the environment. */
#define STORE_OPEN_LOCK_WAIT_MS 60000
/*
 * How long an open that finds the released regions gone waits for a
 * process still registered (one exiting) before refusing.
 */
#define STORE_STALE_WAIT_MS 3000
/* Exit status of a process the watchdog ends (EX_TEMPFAIL). */
#define STORE_EXIT_WEDGED 75
/*
 * A usage.db value: u64 bytes, u64 messages, then zero padding, in pages
 * of STORE_USAGE_PAGESIZE.  Every delivery rewrites its account's usage
 * record, and Berkeley DB locks pages, not records, until the commit is on
 * disk: with 16-byte records ~130 accounts shared a page and deliveries to
 * any of them queued behind each other's log flush.  Padded records in
 * small pages put about six accounts on a page.  Shorter (16-byte) records
 * of older stores are read as they are.
 */
#define STORE_USAGE_REC_LEN 64
#define STORE_USAGE_PAGESIZE 512
void st_usage_encode(uint8_t out[STORE_USAGE_REC_LEN], uint64_t bytes,
    uint64_t messages);

/* Record format version (first byte of every value record). */
#define STORE_REC_VERSION 1
/* Sealed chunk overhead: nonce + tag. */
#define STORE_SEAL_NONCE 24
#define STORE_SEAL_TAG 16
#define STORE_ZSTD_LEVEL_MAX 19	/* [store] compress_level */

/* Internal result: retry the transaction (deadlock, lock timeout). */
#define STORE_ERETRY (-100)
/* Internal result: the environment panicked; reopen and retry. */
#define STORE_EPANIC (-101)

enum store_db {
	SDB_COUNTERS,	/* "acct"|"mbox"|"uidv" -> u32 next value */
	SDB_DOMAINS,	/* domain -> rec */
	SDB_ACCOUNTS,	/* lower-cased address -> account rec */
	SDB_ACCT_IDS,	/* u32 id -> lower-cased address */
	SDB_USAGE,	/* u32 account id -> u64 bytes, u64 messages */
	SDB_RESIDENTS,	/* keyed hash of the ID number -> u32 account id */
	SDB_ALIASES,	/* lower-cased alias -> target (sorted duplicates) */
	SDB_LISTS,	/* lower-cased list -> rec (flags) */
	SDB_LIST_ENTRIES, /* list NUL kind -> entry (sorted duplicates) */
	SDB_MAILBOXES,	/* u32 account id, name -> u32 mailbox id */
	SDB_MBOX_BY_ID,	/* u32 mailbox id -> mailbox rec */
	SDB_KEYWORDS,	/* u32 mailbox id, u8 slot -> keyword name */
	SDB_MESSAGES,	/* u32 mailbox id, u32 uid -> message rec */
	SDB_EXPUNGED,	/* u32 mailbox id, u64 modseq -> u32 uid */
	SDB_BLOBS,	/* 32-byte key -> blob rec */
	SDB_CHUNKS,	/* 32-byte key, u32 chunk -> bytes (maybe sealed) */
	SDB_META,	/* 32-byte key -> serialised mime_info */
	/*
	 * Added later (store_queue.c, store_notice.c): created on open
	 * when an older store lacks them.  Their numbers are in-memory
	 * only (files are named by st_db_files), so appending is safe.
	 */
	SDB_QUEUE,	/* entry id -> u64 next_try, caller's bytes */
	SDB_NOTICES,	/* message-id -> notice rec */
	SDB_NOTICE_OK,	/* u32 notice, u32 batch -> packed (mbox, uid) */
	SDB_NOTICE_FAIL, /* u32 notice, address -> u8 deferred, i32 status */
	SDB_DEDUP,	/* account NUL message-id -> i64 until, ref */
	SDB_DEDUP_EXP,	/* i64 until, account NUL message-id -> "" */
	SDB_COUNT
};
/*
 * Chunks and metadata are spread over STORE_PARTS database files each,
 * by the first byte of the blob key: a new blob allocates pages, and
 * Berkeley DB holds the lock on a database's page free list until commit,
 * so with one file every delivery would wait for the one before it to be
 * durable.  SDB_CHUNKS and SDB_META given to st_get/st_put/st_del with a
 * key go to the key's partition; scans name partitions with SDB_PART.
 */
#define STORE_PARTS 16
#define SDB_PART(base, p) (SDB_COUNT + ((base) == SDB_CHUNKS ? 0 : \
	STORE_PARTS) + (p))
#define SDB_TOTAL (SDB_COUNT + 2 * STORE_PARTS)

/* The process-wide environment shared by every struct store of one path. */
struct store_shared;

/* Mailboxes one write transaction's modseq notes cover (COPY/MOVE: 2). */
#define ST_MODSEQ_NOTES 4

struct store {
	struct store_shared *sh;
	DB_ENV *env;
	DB **db;
	unsigned flags;
	char *path;
	char *notify_dir;
	/* configuration, copied at open */
	uint64_t quota_bytes_def;
	uint64_t quota_messages_def;
	uint64_t message_max;
	unsigned long long opslimit;
	size_t memlimit;
	uint64_t auth_ttl;
	uint64_t checkpoint_interval;
	uint32_t checkpoint_kb;		/* log since the last one; 0: off */
	char *id_key_path;
	/* encryption at rest */
	int sealed;
	uint8_t key[32];
	uint8_t blob_hash_key[32];
	/* content compression: zstd level, 0 off; contexts made on first use */
	int zlevel;
	struct ZSTD_CCtx_s *zc;
	struct ZSTD_DCtx_s *zd;
	/* resident ID hash key, loaded on first use */
	int have_id_key;
	uint8_t id_key[32];
	/* notify buckets (mailbox id % STORE_NOTIFY_BUCKETS) changed by the
	 * running transaction, signalled on commit; the bitmap keeps each
	 * listed once however many mailboxes a fan-out touches */
	uint32_t *notify;
	size_t nnotify, notify_cap;
	uint8_t notify_bits[STORE_NOTIFY_BUCKETS / 8];
	/* the running transaction writes (reads use DB_RMW where apt) */
	int txn_write;
	/* store_set_deferred_sync(): write transactions commit without
	 * flushing the log; unsynced says one did since store_take_unsynced */
	int defer_sync, unsynced;
	/* HIGHESTMODSEQ of the mailboxes the running write transaction
	 * loaded (before) and saved (after); copied to modseq_done when it
	 * commits, for store_last_write() */
	struct st_modseq_note {
		uint32_t id;
		uint64_t before, after;
	} modseq_run[ST_MODSEQ_NOTES], modseq_done[ST_MODSEQ_NOTES];
	size_t nmodseq_run, nmodseq_done;
	/* error text of the last call */
	const char *err;
	char errbuf[256];
	/* watchdog: list of handles, start of the call in flight */
	struct store *wd_next;
	time_t busy_since;
	/* fault injection (tests) */
	int fault_armed;
	unsigned fault_nth;
	unsigned fault_count;
	int fault_err;
	int fault_fired;
};

/*
 * TEST ONLY: make the nth (0-based) Berkeley DB call inside a transaction
 * of this handle fail with dberr (DB_LOCK_DEADLOCK, ENOSPC, ...).  The hook
 * fires once and disarms itself; store_fault_fired() says whether it did.
 * nth == UINT32_MAX disarms.
 */
void store_fault_inject(struct store *store, unsigned nth, int dberr);
int store_fault_fired(const struct store *store);
/*
 * Seconds after which a store call counts as stuck (default
 * STORE_STUCK_SEC); the crash test shortens it.
 */
void store_watchdog_set(unsigned seconds);
/*
 * TEST ONLY: hook(arg) runs in every environment open, after the check of
 * the regions and just before the attach (NULL: none).
 */
void store_test_open_hook(void (*hook)(void *), void *arg);

/* ---- transactions (store_env.c) ---- */

enum {
	ST_TXN_READ = 0,
	ST_TXN_WRITE = 1,
	/* or-ed in: may legitimately run long (check, stats): no watchdog */
	ST_TXN_LONG = 2,
	/* or-ed in to ST_TXN_WRITE: commit without waiting for the disk
	 * (state a crash may lose harmlessly, like \Recent); the next
	 * durable commit of anyone carries it to disk */
	ST_TXN_NOSYNC = 4,
};
typedef int (*st_txn_fn)(struct store *s, DB_TXN *txn, void *ctx);
/*
 * Run fn in a transaction, retrying on deadlock up to STORE_TXN_RETRY_MAX
 * times (fn must reset its outputs each time it is called).  fn returns
 * >= 0 to commit, or a negative store error to abort.  After a successful
 * write commit the mailboxes recorded with st_notify() are signalled.
 */
int st_txn_run(struct store *s, int mode, st_txn_fn fn, void *ctx,
    const char **error_r);
/* Record an error text for the running call; returns code. */
int st_fail(struct store *s, int code, const char *text);
int st_failf(struct store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Map a Berkeley DB return code to a store error (logs real failures). */
int st_dberr(struct store *s, int ret, const char *what);
void st_notify(struct store *s, uint32_t mailbox_id);
/* Note a mailbox's HIGHESTMODSEQ as loaded (saved 0) or saved (1) by the
 * running write transaction (store_mailbox.c, for store_last_write). */
void st_modseq_note(struct store *s, uint32_t id, uint64_t modseq, int saved);
void st_signal(const char *notify_dir, uint32_t mailbox_id);

/* DB calls with fault injection; values are malloc'd, caller frees. */
struct st_val {
	uint8_t *data;
	size_t len;
};
int st_get(struct store *s, int dbi, DB_TXN *txn, const void *k, size_t klen,
    struct st_val *v);
/* Like st_get but STORE_ENOTFOUND is a result, not an error. */
int st_exists(struct store *s, int dbi, DB_TXN *txn, const void *k,
    size_t klen);
int st_put(struct store *s, int dbi, DB_TXN *txn, const void *k, size_t klen,
    const void *v, size_t vlen, uint32_t flags);
int st_del(struct store *s, int dbi, DB_TXN *txn, const void *k, size_t klen);
/* Delete one duplicate (key, value) pair. */
int st_del_dup(struct store *s, int dbi, DB_TXN *txn, const void *k,
    size_t klen, const void *v, size_t vlen);

struct st_cursor {
	struct store *s;
	DBC *dbc;
	int rmw;		/* read with write locks (DB_RMW) */
	DBT k, v;
};
int st_cursor_open(struct store *s, int dbi, DB_TXN *txn,
    struct st_cursor *c);
/* flags: DB_FIRST, DB_NEXT, DB_SET_RANGE (key given), DB_SET, DB_NEXT_DUP. */
int st_cursor_get(struct st_cursor *c, const void *k, size_t klen,
    uint32_t flags);
int st_cursor_del(struct st_cursor *c);
void st_cursor_close(struct st_cursor *c);

/* ---- record serialisation (store_env.c) ---- */

struct rec_reader {
	const uint8_t *p;
	size_t len, off;
	int bad;
};
void be32_put(uint8_t *p, uint32_t v);
void be64_put(uint8_t *p, uint64_t v);
uint32_t be32_get(const uint8_t *p);
uint64_t be64_get(const uint8_t *p);
void rec_u8(struct buf *b, uint8_t v);
void rec_u32(struct buf *b, uint32_t v);
void rec_u64(struct buf *b, uint64_t v);
void rec_bytes(struct buf *b, const void *p, size_t n);
void rec_str(struct buf *b, const char *s);	/* u32 length + bytes */
void rec_mem(struct buf *b, const void *p, size_t n);	/* u32 len + bytes */
void rec_init(struct rec_reader *r, const uint8_t *p, size_t len);
uint8_t rec_get_u8(struct rec_reader *r);
uint32_t rec_get_u32(struct rec_reader *r);
uint64_t rec_get_u64(struct rec_reader *r);
void rec_get_bytes(struct rec_reader *r, void *out, size_t n);
char *rec_get_str(struct rec_reader *r);	/* xmalloc'd, "" if bad */
uint8_t *rec_get_mem(struct rec_reader *r, size_t *len_r);

/* ---- records ---- */

struct acct_rec {
	uint32_t id;
	uint8_t class;
	uint8_t disabled;
	uint8_t identity_verified;
	uint8_t has_resident_id;
	uint8_t resident_id_hash[32];
	int64_t created;
	uint64_t quota_bytes, quota_messages;
	char *address, *display_name, *organisation, *org_id, *title;
	char *cert_serial, *pwhash;
};
void acct_rec_encode(const struct acct_rec *a, struct buf *out);
int acct_rec_decode(const uint8_t *p, size_t len, struct acct_rec *a);
void acct_rec_clear(struct acct_rec *a);

struct mbox_rec {
	uint32_t account_id;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	uint32_t messages, unseen, recent, recent_uid;
	uint64_t size;
	uint32_t special_use;
	uint8_t subscribed;
	uint64_t keywords_mask;
	char name[STORE_MAILBOX_NAME_MAX + 1];
};
void mbox_rec_encode(const struct mbox_rec *m, struct buf *out);
int mbox_rec_decode(const uint8_t *p, size_t len, struct mbox_rec *m);

/*
 * A message index record is the one record every recipient of a notice
 * costs, so it is compact: a version byte, then flags, keywords, size and
 * modseq as LEB128 varints, internaldate and its zone zigzag-encoded, then
 * the blob key.  Typically 47 bytes; MSG_REC_LEN is the worst case.
 */
#define MSG_REC_VERSION 2
#define MSG_REC_LEN (1 + 5 + 10 + 10 + 5 + 10 + 10 + STORE_BLOB_KEY_LEN)
/* Encode into out; returns the bytes used (<= MSG_REC_LEN). */
size_t msg_rec_encode(const struct store_msg *m, uint8_t out[MSG_REC_LEN]);
int msg_rec_decode(const uint8_t *p, size_t len, uint32_t uid,
    struct store_msg *m);

#define BLOB_REC_LEN (1 + 1 + 8 + 8 + 4)
#define BLOB_SEALED 1
/*
 * BLOB_FRAMED: each chunk's bytes (inside the seal when there is one) start
 * with a method byte, CHUNK_STORED or CHUNK_ZSTD (a zstd frame holding the
 * chunk's message bytes).  Blobs written before compression existed, or
 * with [store] compress = none, lack the flag and hold the bytes as they are.
 */
#define BLOB_FRAMED 2
#define CHUNK_STORED 0
#define CHUNK_ZSTD 1
struct blob_rec {
	uint8_t flags;
	uint64_t refcount, size;
	uint32_t nchunks;
};
void blob_rec_encode(const struct blob_rec *b, uint8_t out[BLOB_REC_LEN]);
/*
 * Read every chunk of blob key (record b) and check its bytes hash to the
 * key: 0, or STORE_EDAMAGED with the reason in the store's error text.
 */
int st_blob_verify(struct store *s, DB_TXN *txn, const uint8_t *key,
    const struct blob_rec *b);
int blob_rec_decode(const uint8_t *p, size_t len, struct blob_rec *b);

/* ---- shared helpers used across files ---- */

/* Address / name checks (store_account.c). */
int st_address_norm(const char *address, char *out, size_t outsz,
    const char **error_r);
int st_domain_norm(const char *domain, char *out, size_t outsz,
    const char **error_r);
int st_mailbox_name_norm(const char *name, char *out, size_t outsz,
    const char **error_r);
/* Look up an account by address inside a transaction. */
int st_account_load(struct store *s, DB_TXN *txn, const char *address,
    struct acct_rec *a);
int st_account_load_id(struct store *s, DB_TXN *txn, uint32_t id,
    struct acct_rec *a);
int st_usage_get(struct store *s, DB_TXN *txn, uint32_t acct_id,
    uint64_t *bytes_r, uint64_t *messages_r);
/* Usage read earlier in the same transaction, written back changed. */
int st_usage_set(struct store *s, DB_TXN *txn, uint32_t acct_id,
    uint64_t bytes, uint64_t messages);
int st_usage_add(struct store *s, DB_TXN *txn, uint32_t acct_id,
    int64_t dbytes, int64_t dmessages);
int st_counter_next(struct store *s, DB_TXN *txn, const char *name,
    uint32_t first, uint32_t *val_r);

/* Mailboxes (store_mailbox.c). */
int st_mbox_load(struct store *s, DB_TXN *txn, uint32_t id,
    struct mbox_rec *m);
int st_mbox_save(struct store *s, DB_TXN *txn, uint32_t id,
    const struct mbox_rec *m);
int st_mbox_find(struct store *s, DB_TXN *txn, uint32_t acct_id,
    const char *name, uint32_t *id_r);
int st_mbox_create(struct store *s, DB_TXN *txn, uint32_t acct_id,
    const char *name, unsigned special_use, int subscribed, uint32_t *id_r);
/* Remove a mailbox and all its messages (refcounts and usage drop). */
int st_mbox_destroy(struct store *s, DB_TXN *txn, uint32_t id);
/* Keyword names of a mailbox into names[] (xmalloc'd, NULL if unused). */
int st_kw_load(struct store *s, DB_TXN *txn, uint32_t id,
    char *names[STORE_KEYWORDS_MAX]);
/* Map names to slot bits, allocating slots (m->keywords_mask updated). */
int st_kw_bits(struct store *s, DB_TXN *txn, uint32_t id, struct mbox_rec *m,
    char *names[STORE_KEYWORDS_MAX], const char *const *kw, size_t nkw,
    int create, uint64_t *bits_r);

/* Messages and blobs (store_msg.c). */
int st_blob_ref(struct store *s, DB_TXN *txn,
    const uint8_t key[STORE_BLOB_KEY_LEN], int64_t delta);
/*
 * Remove one index record; the caller saves *m.  log_expunge: record the
 * removal under a new modseq (VANISHED).  drop_ref: the content reference
 * and the account's usage go too (not for MOVE, which keeps both).
 */
int st_msg_remove(struct store *s, DB_TXN *txn, uint32_t mbox_id,
    struct mbox_rec *m, const struct store_msg *msg, int log_expunge,
    int drop_ref);
/* Move every message of src to dst (RENAME INBOX). */
int st_msg_move_all(struct store *s, DB_TXN *txn, uint32_t src, uint32_t dst);
void st_msg_key(uint8_t out[8], uint32_t mbox_id, uint32_t uid);

/* The resident ID hash key, made on first use (store_env.c). */
int st_id_key(struct store *s, const char **error_r);

/* Delivery extras: dedup, notice record, queue (store_queue.c). */
/* Before any index record: STORE_EEXISTS (and *ref) for a duplicate. */
int st_dedup_check(struct store *s, DB_TXN *txn,
    const struct store_deliver_opts *o, char *ref_r);
/* After the index records: the notice, the queue, the dedup record. */
int st_deliver_extras(struct store *s, DB_TXN *txn,
    const struct store_deliver_opts *o, const struct store_rcpt_result *res,
    size_t n);
/* 1 if a SDB_QUEUE value is well formed (store_check). */
int st_queue_rec_ok(const uint8_t *v, size_t len);
/* The number of a SDB_NOTICES value (store_check); -1 if damaged. */
int st_notice_num(const uint8_t *v, size_t len, uint32_t *num_r);
/* Expire de-duplication records (store_maintain). */
int st_dedup_expire(struct store *s, const char **error_r);
/* Record notice results inside txn (store_notice.c). */
int st_notice_record(struct store *s, DB_TXN *txn, const char *id,
    const char *list, const char *sender, int64_t when,
    const struct store_rcpt_result *res, size_t n, int defer);

/* Password cache (store_account.c). */
void st_auth_cache_forget(const char *address_norm);

#endif
