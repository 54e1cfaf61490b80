/*
 * kv.h - a small generic transactional record store on Berkeley DB 5.3.
 *
 * Used by the certificate authority (ca/) for its certificate database,
 * which lives in its own environment folder, apart from the mail store
 * (the CA may run on another machine).  Only mailbox/ includes <db.h>
 * (DESIGN.md 1), so the CA reaches Berkeley DB through this module.
 *
 * - One environment per folder: DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG |
 *   DB_INIT_MPOOL, DB_REGISTER with DB_RECOVER (recovery runs only when a
 *   previous user died), DB_THREAD (a handle may be shared by threads).
 *   Commits are durable: the log is flushed before kv_txn_commit returns.
 * - Named tables are btrees, created on first open; keys compare as bytes,
 *   so big-endian numbers and text prefixes iterate in order.
 * - Functions return 0 or a negative enum kv_error and, where given, set
 *   *error_r to static text or text owned by the handle (valid until the
 *   next call on it).
 */
#ifndef GOVMAIL_KV_H
#define GOVMAIL_KV_H

#include <stddef.h>
#include <stdint.h>

#define KV_TABLES_MAX 16		/* named tables per environment */
#define KV_TABLE_NAME_MAX 32		/* bytes of a table name */
#define KV_DEADLOCK_RETRIES 50		/* kv_txn_run attempts */

enum kv_error {
	KV_OK = 0,
	KV_ETEMP = -1,		/* environment failure (I/O, ENOSPC, deadlock) */
	KV_ENOTFOUND = -2,	/* no such key */
	KV_EEXISTS = -3,	/* key exists (kv_put with KV_PUT_NEW) */
	KV_EINVAL = -4,		/* bad argument */
	KV_EDEADLOCK = -5,	/* deadlock: abort the transaction and retry */
};

struct kv_env;
struct kv_txn;

enum kv_open_flags {
	KV_OPEN_CREATE = 1 << 0,	/* create the folder and environment */
};

/*
 * Open the environment in dir (made 0700 with KV_OPEN_CREATE) and the named
 * tables (a NULL-terminated list, at most KV_TABLES_MAX).  The handle may be
 * used by several threads at once.  Release with kv_close().
 */
int kv_open(const char *dir, const char *const *tables, unsigned flags,
    struct kv_env **env_r, const char **error_r);
void kv_close(struct kv_env *env);

/* Begin a transaction; finish it with kv_txn_commit or kv_txn_abort. */
int kv_txn_begin(struct kv_env *env, struct kv_txn **txn_r,
    const char **error_r);
/* Durable commit (log flushed). The transaction is gone either way. */
int kv_txn_commit(struct kv_txn *txn, const char **error_r);
void kv_txn_abort(struct kv_txn *txn);
/*
 * Commit without waiting for the disk (bulk work): the transaction is
 * atomic but not durable until kv_sync() returns 0.
 */
int kv_txn_commit_nosync(struct kv_txn *txn, const char **error_r);
/* Flush the log: every transaction committed so far is durable. */
int kv_sync(struct kv_env *env, const char **error_r);

/*
 * Run fn(txn, ctx) in a transaction and commit it.  fn returns 0 to commit,
 * or a negative value to abort; KV_EDEADLOCK (from any kv call inside)
 * aborts and runs fn again, at most KV_DEADLOCK_RETRIES times.  Returns
 * fn's error, a commit error, or 0.
 */
int kv_txn_run(struct kv_env *env, int (*fn)(struct kv_txn *txn, void *ctx),
    void *ctx, const char **error_r);

enum kv_put_flags {
	KV_PUT_NEW = 1 << 0,		/* fail with KV_EEXISTS if present */
};

/* txn may be NULL for a single auto-committed operation. */
int kv_put(struct kv_env *env, struct kv_txn *txn, const char *table,
    const void *key, size_t klen, const void *val, size_t vlen,
    unsigned flags);
/*
 * Fetch a value: *val_r is a fresh allocation (free() it; a NUL byte
 * follows the value, not counted in *vlen_r).  KV_ENOTFOUND if absent.
 */
int kv_get(struct kv_env *env, struct kv_txn *txn, const char *table,
    const void *key, size_t klen, uint8_t **val_r, size_t *vlen_r);
/* KV_ENOTFOUND if absent. */
int kv_del(struct kv_env *env, struct kv_txn *txn, const char *table,
    const void *key, size_t klen);

/*
 * Call cb for each record whose key starts with prefix (plen 0: every
 * record), in key order.  cb returns 0 to go on, non-zero to stop (that
 * value is returned).  The key and value pointers are valid during the call
 * only.  txn may be NULL (a read outside any transaction).
 */
int kv_iterate(struct kv_env *env, struct kv_txn *txn, const char *table,
    const void *prefix, size_t plen,
    int (*cb)(const uint8_t *key, size_t klen, const uint8_t *val,
	size_t vlen, void *ctx), void *ctx);

/* Number of records in a table (a full count, not an estimate). */
int kv_count(struct kv_env *env, const char *table, uint64_t *count_r);

/* Checkpoint and remove log files no longer needed. */
int kv_maintain(struct kv_env *env, const char **error_r);

/* Short text for an error code. */
const char *kv_strerror(int err);

#endif
