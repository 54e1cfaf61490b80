/*
 * kv.c - generic transactional record store on Berkeley DB 5.3 (kv.h).
 *
 * Runs in govmail-ca (every subcommand, and the threads of `serve`).
 * Trusts its caller for table names; keys and values are opaque bytes.
 * Several processes may open the same environment: DB_REGISTER tells the
 * first opener after a crash to run recovery, and DB_ENV->failchk releases
 * locks a dead process left behind.
 */
#include "autoconf.h"

#include <sys/stat.h>

#include <db.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "kv.h"
#include "log.h"
#include "xmalloc.h"

#define KV_CACHE_BYTES (16u * 1024 * 1024)
#define KV_MAX_THREADS 256	/* failchk table */
#define KV_LOG_BYTES (10u * 1024 * 1024)

struct kv_table {
	char name[KV_TABLE_NAME_MAX + 1];
	DB *db;
};

struct kv_env {
	DB_ENV *env;
	struct kv_table tables[KV_TABLES_MAX];
	size_t ntables;
	char errbuf[256];
};

struct kv_txn {
	struct kv_env *env;
	DB_TXN *txn;
};

const char *
kv_strerror(int err)
{
	switch (err) {
	case KV_OK:
		return "ok";
	case KV_ETEMP:
		return "database failure";
	case KV_ENOTFOUND:
		return "not found";
	case KV_EEXISTS:
		return "exists";
	case KV_EINVAL:
		return "invalid argument";
	case KV_EDEADLOCK:
		return "deadlock";
	}
	return "unknown error";
}

static int
kv_map(int ret)
{
	switch (ret) {
	case 0:
		return KV_OK;
	case DB_NOTFOUND:
	case DB_KEYEMPTY:
		return KV_ENOTFOUND;
	case DB_KEYEXIST:
		return KV_EEXISTS;
	case DB_LOCK_DEADLOCK:
	case DB_LOCK_NOTGRANTED:
		return KV_EDEADLOCK;
	case EINVAL:
		return KV_EINVAL;
	}
	log_warnx("kv: %s", db_strerror(ret));
	return KV_ETEMP;
}

static int
kv_error(struct kv_env *kv, const char *what, int ret, const char **error_r)
{
	if (kv != NULL) {
		snprintf(kv->errbuf, sizeof(kv->errbuf), "%s: %s", what,
		    db_strerror(ret));
		if (error_r != NULL)
			*error_r = kv->errbuf;
	} else if (error_r != NULL)
		*error_r = what;
	return kv_map(ret);
}

/* DB_ENV->failchk asks whether a process or thread is still alive. */
static int
kv_is_alive(DB_ENV *env, pid_t pid, db_threadid_t tid, u_int32_t flags)
{
	(void)env;
	(void)tid;
	(void)flags;
	if (pid == getpid())
		return 1;
	if (kill(pid, 0) == 0 || errno == EPERM)
		return 1;
	return 0;
}

/* Berkeley DB's own messages (failchk cleaning up after a dead process,
 * recovery) go to the log at debug level, not to the caller's stderr. */
static void
kv_errcall(const DB_ENV *env, const char *prefix, const char *msg)
{
	(void)env;
	(void)prefix;
	log_debug("kv: %s", msg);
}

static void
kv_msgcall(const DB_ENV *env, const char *msg)
{
	(void)env;
	log_debug("kv: %s", msg);
}

static DB *
kv_table_db(struct kv_env *kv, const char *name)
{
	size_t i;

	for (i = 0; i < kv->ntables; i++)
		if (strcmp(kv->tables[i].name, name) == 0)
			return kv->tables[i].db;
	return NULL;
}

int
kv_open(const char *dir, const char *const *tables, unsigned flags,
    struct kv_env **env_r, const char **error_r)
{
	struct kv_env *kv;
	u_int32_t eflags;
	DB_TXN *txn;
	size_t i;
	int ret;

	*env_r = NULL;
	if (flags & KV_OPEN_CREATE) {
		if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
			if (error_r != NULL)
				*error_r = "cannot create the database folder";
			return KV_ETEMP;
		}
	}
	kv = xcalloc(1, sizeof(*kv));
	if ((ret = db_env_create(&kv->env, 0)) != 0) {
		free(kv);
		return kv_error(NULL, "db_env_create failed", ret, error_r);
	}
	kv->env->set_errcall(kv->env, kv_errcall);
	kv->env->set_msgcall(kv->env, kv_msgcall);
	kv->env->set_cachesize(kv->env, 0, KV_CACHE_BYTES, 1);
	kv->env->set_lg_max(kv->env, KV_LOG_BYTES);
	kv->env->set_lk_detect(kv->env, DB_LOCK_DEFAULT);
	kv->env->set_thread_count(kv->env, KV_MAX_THREADS);
	kv->env->set_isalive(kv->env, kv_is_alive);
	eflags = DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL |
	    DB_REGISTER | DB_RECOVER | DB_THREAD | DB_CREATE;
	ret = kv->env->open(kv->env, dir, eflags, 0600);
	if (ret != 0) {
		kv_error(kv, "cannot open the database environment", ret,
		    error_r);
		if (error_r != NULL)
			*error_r = xstrdup(kv->errbuf);	/* outlives kv */
		kv->env->close(kv->env, 0);
		free(kv);
		return KV_ETEMP;
	}
	if ((ret = kv->env->failchk(kv->env, 0)) != 0)
		log_warnx("kv: failchk: %s", db_strerror(ret));

	for (i = 0; tables != NULL && tables[i] != NULL; i++) {
		struct kv_table *t;

		if (i >= KV_TABLES_MAX ||
		    str_copy(kv->tables[i].name, sizeof(kv->tables[i].name),
		    tables[i]) == -1) {
			if (error_r != NULL)
				*error_r = "too many tables or name too long";
			kv_close(kv);
			return KV_EINVAL;
		}
		t = &kv->tables[i];
		kv->ntables = i + 1;
		if ((ret = db_create(&t->db, kv->env, 0)) != 0) {
			t->db = NULL;
			kv_error(kv, "db_create", ret, error_r);
			kv_close(kv);
			return KV_ETEMP;
		}
		ret = kv->env->txn_begin(kv->env, NULL, &txn, 0);
		if (ret == 0) {
			ret = t->db->open(t->db, txn, tables[i], NULL, DB_BTREE,
			    DB_CREATE | DB_THREAD, 0600);
			if (ret == 0)
				ret = txn->commit(txn, 0);
			else
				txn->abort(txn);
		}
		if (ret != 0) {
			kv_error(kv, "cannot open a table", ret, error_r);
			if (error_r != NULL)
				*error_r = xstrdup(kv->errbuf);
			kv_close(kv);
			return KV_ETEMP;
		}
	}
	*env_r = kv;
	return KV_OK;
}

void
kv_close(struct kv_env *kv)
{
	size_t i;

	if (kv == NULL)
		return;
	for (i = 0; i < kv->ntables; i++)
		if (kv->tables[i].db != NULL)
			kv->tables[i].db->close(kv->tables[i].db, 0);
	kv->env->close(kv->env, 0);
	free(kv);
}

int
kv_txn_begin(struct kv_env *kv, struct kv_txn **txn_r, const char **error_r)
{
	struct kv_txn *t;
	int ret;

	t = xcalloc(1, sizeof(*t));
	t->env = kv;
	if ((ret = kv->env->txn_begin(kv->env, NULL, &t->txn, 0)) != 0) {
		free(t);
		*txn_r = NULL;
		return kv_error(kv, "txn_begin", ret, error_r);
	}
	*txn_r = t;
	return KV_OK;
}

int
kv_txn_commit(struct kv_txn *t, const char **error_r)
{
	struct kv_env *kv = t->env;
	int ret;

	/* SECURITY: durable — the log is flushed before we report success. */
	ret = t->txn->commit(t->txn, DB_TXN_SYNC);
	free(t);
	if (ret != 0)
		return kv_error(kv, "commit", ret, error_r);
	return KV_OK;
}

int
kv_txn_commit_nosync(struct kv_txn *t, const char **error_r)
{
	struct kv_env *kv = t->env;
	int ret;

	ret = t->txn->commit(t->txn, DB_TXN_WRITE_NOSYNC);
	free(t);
	if (ret != 0)
		return kv_error(kv, "commit", ret, error_r);
	return KV_OK;
}

int
kv_sync(struct kv_env *kv, const char **error_r)
{
	int ret;

	if ((ret = kv->env->log_flush(kv->env, NULL)) != 0)
		return kv_error(kv, "log_flush", ret, error_r);
	return KV_OK;
}

void
kv_txn_abort(struct kv_txn *t)
{
	if (t == NULL)
		return;
	t->txn->abort(t->txn);
	free(t);
}

int
kv_txn_run(struct kv_env *kv, int (*fn)(struct kv_txn *txn, void *ctx),
    void *ctx, const char **error_r)
{
	struct kv_txn *t;
	int attempt, ret;

	for (attempt = 0; attempt < KV_DEADLOCK_RETRIES; attempt++) {
		if ((ret = kv_txn_begin(kv, &t, error_r)) != 0)
			return ret;
		ret = fn(t, ctx);
		if (ret == KV_EDEADLOCK) {
			kv_txn_abort(t);
			usleep(1000u * (unsigned)(attempt % 10));
			continue;
		}
		if (ret != 0) {
			kv_txn_abort(t);
			return ret;
		}
		ret = kv_txn_commit(t, error_r);
		if (ret == KV_EDEADLOCK)
			continue;
		return ret;
	}
	if (error_r != NULL)
		*error_r = "too many deadlocks";
	return KV_ETEMP;
}

static DB_TXN *
kv_raw_txn(struct kv_txn *t)
{
	return t == NULL ? NULL : t->txn;
}

int
kv_put(struct kv_env *kv, struct kv_txn *txn, const char *table,
    const void *key, size_t klen, const void *val, size_t vlen,
    unsigned flags)
{
	DBT k, v;
	DB *db;

	if ((db = kv_table_db(kv, table)) == NULL || klen > UINT32_MAX ||
	    vlen > UINT32_MAX)
		return KV_EINVAL;
	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	k.data = (void *)(uintptr_t)key;
	k.size = (u_int32_t)klen;
	v.data = (void *)(uintptr_t)val;
	v.size = (u_int32_t)vlen;
	return kv_map(db->put(db, kv_raw_txn(txn), &k, &v,
	    ((flags & KV_PUT_NEW) ? DB_NOOVERWRITE : 0) |
	    (txn == NULL ? DB_AUTO_COMMIT : 0)));
}

int
kv_get(struct kv_env *kv, struct kv_txn *txn, const char *table,
    const void *key, size_t klen, uint8_t **val_r, size_t *vlen_r)
{
	DBT k, v;
	DB *db;
	int ret;

	*val_r = NULL;
	if (vlen_r != NULL)
		*vlen_r = 0;
	if ((db = kv_table_db(kv, table)) == NULL || klen > UINT32_MAX)
		return KV_EINVAL;
	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	k.data = (void *)(uintptr_t)key;
	k.size = (u_int32_t)klen;
	v.flags = DB_DBT_MALLOC;
	ret = db->get(db, kv_raw_txn(txn), &k, &v, 0);
	if (ret != 0)
		return kv_map(ret);
	*val_r = xmemdup(v.data, v.size);
	if (vlen_r != NULL)
		*vlen_r = v.size;
	free(v.data);
	return KV_OK;
}

int
kv_del(struct kv_env *kv, struct kv_txn *txn, const char *table,
    const void *key, size_t klen)
{
	DBT k;
	DB *db;

	if ((db = kv_table_db(kv, table)) == NULL || klen > UINT32_MAX)
		return KV_EINVAL;
	memset(&k, 0, sizeof(k));
	k.data = (void *)(uintptr_t)key;
	k.size = (u_int32_t)klen;
	return kv_map(db->del(db, kv_raw_txn(txn), &k,
	    txn == NULL ? DB_AUTO_COMMIT : 0));
}

int
kv_iterate(struct kv_env *kv, struct kv_txn *txn, const char *table,
    const void *prefix, size_t plen,
    int (*cb)(const uint8_t *key, size_t klen, const uint8_t *val,
	size_t vlen, void *ctx), void *ctx)
{
	DBC *cur;
	DBT k, v;
	DB *db;
	int ret, rc = 0;
	u_int32_t op;

	if ((db = kv_table_db(kv, table)) == NULL || plen > UINT32_MAX)
		return KV_EINVAL;
	ret = db->cursor(db, kv_raw_txn(txn), &cur, 0);
	if (ret != 0)
		return kv_map(ret);
	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	k.flags = DB_DBT_REALLOC;
	v.flags = DB_DBT_REALLOC;
	if (plen > 0) {
		k.data = xmemdup(prefix, plen);
		k.size = (u_int32_t)plen;
		op = DB_SET_RANGE;
	} else
		op = DB_FIRST;
	for (;;) {
		ret = cur->get(cur, &k, &v, op);
		op = DB_NEXT;
		if (ret == DB_NOTFOUND) {
			ret = 0;
			break;
		}
		if (ret != 0)
			break;
		if (plen > 0 && (k.size < plen ||
		    memcmp(k.data, prefix, plen) != 0))
			break;
		if ((rc = cb(k.data, k.size, v.data, v.size, ctx)) != 0)
			break;
	}
	cur->close(cur);
	free(k.data);
	free(v.data);
	if (ret != 0)
		return kv_map(ret);
	return rc;
}

static int
kv_count_cb(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *ctx)
{
	(*(uint64_t *)ctx)++;
	return 0;
}

int
kv_count(struct kv_env *kv, const char *table, uint64_t *count_r)
{
	*count_r = 0;
	return kv_iterate(kv, NULL, table, NULL, 0, kv_count_cb, count_r);
}

int
kv_maintain(struct kv_env *kv, const char **error_r)
{
	int ret;

	if ((ret = kv->env->failchk(kv->env, 0)) != 0)
		return kv_error(kv, "failchk", ret, error_r);
	if ((ret = kv->env->txn_checkpoint(kv->env, 0, 0, 0)) != 0)
		return kv_error(kv, "checkpoint", ret, error_r);
	if ((ret = kv->env->log_archive(kv->env, NULL, DB_ARCH_REMOVE)) != 0)
		return kv_error(kv, "log_archive", ret, error_r);
	return KV_OK;
}
