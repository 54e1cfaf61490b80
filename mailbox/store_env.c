/*
 * store_env.c - the Berkeley DB environment of the store: open, close,
 * housekeeping, the transaction runner that retries deadlocks, the DB call
 * wrappers (with the test-only fault injection hook), change signalling and
 * record serialisation.
 *
 * Runs in every process that uses the store (smtpd, imapd, govmailctl,
 * govmail-ca).  Trusts the configuration and the files of the environment
 * (they are ours, mode 0600); records read back are still length-checked so
 * that a damaged record is an error, not an overread.
 */
#include "autoconf.h"

#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <db.h>
#include <sodium.h>
#include <zstd.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "xmalloc.h"
#include "mailbox_priv.h"

/* File names of the databases, in enum store_db order. */
static const char *const st_db_files[SDB_COUNT] = {
	"counters.db", "domains.db", "accounts.db", "acct_ids.db",
	"usage.db", "residents.db", "aliases.db", "lists.db",
	"list_entries.db", "mailboxes.db", "mbox_by_id.db", "keywords.db",
	"messages.db", "expunged.db", "blobs.db", "chunks.db", "meta.db",
	"queue.db", "notices.db", "notice_ok.db", "notice_fail.db",
	"dedup.db", "dedup_exp.db",
};

struct store_shared {
	struct store_shared *next;
	char *path;
	pid_t pid;
	int refs;
	int broken;
	DB_ENV *env;
	DB *db[SDB_TOTAL];
	time_t last_checkpoint;
	long shm_key;		/* of the shared regions; 0: regions in files */
};

static pthread_mutex_t st_shared_lock = PTHREAD_MUTEX_INITIALIZER;
/*
 * Held for reading by store_sync() around its log flush, for writing by
 * st_reopen() while it swaps the environment: concurrent flushes of one
 * process run together (Berkeley DB groups them) instead of one by one.
 */
static pthread_rwlock_t st_env_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct store_shared *st_shared_list;

/*
 * The watchdog.  Berkeley DB 5.3 mutexes are not robust: a process killed
 * while holding one leaves every other process that needs it blocked for
 * ever, and only recovery (with every user reopening) cures that.  So a
 * thread per process watches the store calls in flight; one stuck for
 * longer than st_stuck_sec marks the environment for recovery (a file the
 * next opener sees) and ends the process with EX_TEMPFAIL, for its parent
 * to restart.  Nothing acknowledged is lost: commits are durable.
 */
static pthread_mutex_t st_wd_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store *st_wd_list;
static int st_wd_started;
static pid_t st_wd_pid;
static unsigned st_stuck_sec = STORE_STUCK_SEC;

void
store_watchdog_set(unsigned seconds)
{
	(void)pthread_mutex_lock(&st_wd_lock);
	st_stuck_sec = seconds > 0 ? seconds : STORE_STUCK_SEC;
	(void)pthread_mutex_unlock(&st_wd_lock);
}

static void __attribute__((noreturn))
st_wedged(const char *path, const char *what)
{
	char marker[4096];
	int fd;

	if (snprintf(marker, sizeof(marker), "%s/%s", path,
	    STORE_RECOVER_MARKER) < (int)sizeof(marker)) {
		fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd != -1) {
			(void)fsync(fd);
			(void)close(fd);
		}
	}
	log_warnx("store: %s blocked for more than %u s, probably on a "
	    "mutex of a dead process: exiting so that the store is "
	    "recovered", what, st_stuck_sec);
	_exit(STORE_EXIT_WEDGED);
}

static void *
st_wd_main(void *arg)
{
	struct store *s;
	time_t now;

	(void)arg;
	for (;;) {
		(void)sleep(1);
		now = time(NULL);
		(void)pthread_mutex_lock(&st_wd_lock);
		for (s = st_wd_list; s != NULL; s = s->wd_next)
			if (s->busy_since != 0 &&
			    now - s->busy_since > (time_t)st_stuck_sec)
				st_wedged(s->path, "a store call");
		(void)pthread_mutex_unlock(&st_wd_lock);
	}
	return NULL;
}

static void
st_wd_add(struct store *s)
{
	pthread_attr_t attr;
	pthread_t t;

	(void)pthread_mutex_lock(&st_wd_lock);
	/* After fork() the child has no watchdog thread: start its own. */
	if (!st_wd_started || st_wd_pid != getpid()) {
		st_wd_list = NULL;
		(void)pthread_attr_init(&attr);
		(void)pthread_attr_setdetachstate(&attr,
		    PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, st_wd_main, NULL) == 0) {
			st_wd_started = 1;
			st_wd_pid = getpid();
		}
		(void)pthread_attr_destroy(&attr);
	}
	s->wd_next = st_wd_list;
	st_wd_list = s;
	(void)pthread_mutex_unlock(&st_wd_lock);
}

static void
st_wd_remove(struct store *s)
{
	struct store **pp;

	(void)pthread_mutex_lock(&st_wd_lock);
	for (pp = &st_wd_list; *pp != NULL; pp = &(*pp)->wd_next)
		if (*pp == s) {
			*pp = s->wd_next;
			break;
		}
	(void)pthread_mutex_unlock(&st_wd_lock);
}

static void
st_busy(struct store *s, int busy)
{
	(void)pthread_mutex_lock(&st_wd_lock);
	s->busy_since = busy ? time(NULL) : 0;
	(void)pthread_mutex_unlock(&st_wd_lock);
}

const char *
store_strerror(int err)
{
	switch (err) {
	case STORE_OK:
		return "success";
	case STORE_ETEMP:
		return "temporary failure";
	case STORE_ENOTFOUND:
		return "not found";
	case STORE_EEXISTS:
		return "already exists";
	case STORE_EINVAL:
		return "invalid argument";
	case STORE_EQUOTA:
		return "over quota";
	case STORE_EPERM:
		return "not allowed";
	case STORE_ETOOBIG:
		return "message too large";
	case STORE_EDAMAGED:
		return "store damaged";
	default:
		return "unknown error";
	}
}

/* ---- record serialisation ---- */

void
be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void
be64_put(uint8_t *p, uint64_t v)
{
	be32_put(p, (uint32_t)(v >> 32));
	be32_put(p + 4, (uint32_t)v);
}

uint32_t
be32_get(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | p[3];
}

uint64_t
be64_get(const uint8_t *p)
{
	return ((uint64_t)be32_get(p) << 32) | be32_get(p + 4);
}

static void
rec_append(struct buf *b, const void *p, size_t n)
{
	if (buf_append(b, p, n) == -1)
		log_fatalx("store: record larger than its buffer");
}

void
rec_u8(struct buf *b, uint8_t v)
{
	rec_append(b, &v, 1);
}

void
rec_u32(struct buf *b, uint32_t v)
{
	uint8_t t[4];

	be32_put(t, v);
	rec_append(b, t, 4);
}

void
rec_u64(struct buf *b, uint64_t v)
{
	uint8_t t[8];

	be64_put(t, v);
	rec_append(b, t, 8);
}

void
rec_bytes(struct buf *b, const void *p, size_t n)
{
	rec_append(b, p, n);
}

void
rec_mem(struct buf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX)
		log_fatalx("store: record field too large");
	rec_u32(b, (uint32_t)n);
	if (n > 0)
		rec_append(b, p, n);
}

void
rec_str(struct buf *b, const char *s)
{
	if (s == NULL)
		s = "";
	rec_mem(b, s, strlen(s));
}

void
rec_init(struct rec_reader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
	r->bad = 0;
}

void
rec_get_bytes(struct rec_reader *r, void *out, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = 1;
		memset(out, 0, n);
		return;
	}
	memcpy(out, r->p + r->off, n);
	r->off += n;
}

uint8_t
rec_get_u8(struct rec_reader *r)
{
	uint8_t v;

	rec_get_bytes(r, &v, 1);
	return v;
}

uint32_t
rec_get_u32(struct rec_reader *r)
{
	uint8_t t[4];

	rec_get_bytes(r, t, 4);
	return be32_get(t);
}

uint64_t
rec_get_u64(struct rec_reader *r)
{
	uint8_t t[8];

	rec_get_bytes(r, t, 8);
	return be64_get(t);
}

uint8_t *
rec_get_mem(struct rec_reader *r, size_t *len_r)
{
	uint32_t n;
	uint8_t *p;

	n = rec_get_u32(r);
	if (r->bad || r->len - r->off < n) {
		r->bad = 1;
		*len_r = 0;
		return xmemdup("", 0);
	}
	p = xmemdup(r->p + r->off, n);
	r->off += n;
	*len_r = n;
	return p;
}

char *
rec_get_str(struct rec_reader *r)
{
	size_t n;
	uint8_t *p;

	p = rec_get_mem(r, &n);
	if (memchr(p, '\0', n) != NULL)
		r->bad = 1;
	return (char *)p;
}

void
acct_rec_encode(const struct acct_rec *a, struct buf *out)
{
	rec_u8(out, STORE_REC_VERSION);
	rec_u32(out, a->id);
	rec_u8(out, a->class);
	rec_u8(out, a->disabled);
	rec_u8(out, a->identity_verified);
	rec_u8(out, a->has_resident_id);
	rec_bytes(out, a->resident_id_hash, 32);
	rec_u64(out, (uint64_t)a->created);
	rec_u64(out, a->quota_bytes);
	rec_u64(out, a->quota_messages);
	rec_str(out, a->address);
	rec_str(out, a->display_name);
	rec_str(out, a->organisation);
	rec_str(out, a->org_id);
	rec_str(out, a->title);
	rec_str(out, a->cert_serial);
	rec_str(out, a->pwhash);
}

int
acct_rec_decode(const uint8_t *p, size_t len, struct acct_rec *a)
{
	struct rec_reader r;

	rec_init(&r, p, len);
	if (rec_get_u8(&r) != STORE_REC_VERSION)
		r.bad = 1;
	a->id = rec_get_u32(&r);
	a->class = rec_get_u8(&r);
	a->disabled = rec_get_u8(&r);
	a->identity_verified = rec_get_u8(&r);
	a->has_resident_id = rec_get_u8(&r);
	rec_get_bytes(&r, a->resident_id_hash, 32);
	a->created = (int64_t)rec_get_u64(&r);
	a->quota_bytes = rec_get_u64(&r);
	a->quota_messages = rec_get_u64(&r);
	a->address = rec_get_str(&r);
	a->display_name = rec_get_str(&r);
	a->organisation = rec_get_str(&r);
	a->org_id = rec_get_str(&r);
	a->title = rec_get_str(&r);
	a->cert_serial = rec_get_str(&r);
	a->pwhash = rec_get_str(&r);
	if (r.bad) {
		acct_rec_clear(a);
		return -1;
	}
	return 0;
}

void
acct_rec_clear(struct acct_rec *a)
{
	free(a->address);
	free(a->display_name);
	free(a->organisation);
	free(a->org_id);
	free(a->title);
	free(a->cert_serial);
	if (a->pwhash != NULL) {
		sodium_memzero(a->pwhash, strlen(a->pwhash));
		free(a->pwhash);
	}
	memset(a, 0, sizeof(*a));
}

void
mbox_rec_encode(const struct mbox_rec *m, struct buf *out)
{
	rec_u8(out, STORE_REC_VERSION);
	rec_u32(out, m->account_id);
	rec_u32(out, m->uidvalidity);
	rec_u32(out, m->uidnext);
	rec_u64(out, m->highestmodseq);
	rec_u32(out, m->messages);
	rec_u32(out, m->unseen);
	rec_u32(out, m->recent);
	rec_u32(out, m->recent_uid);
	rec_u64(out, m->size);
	rec_u32(out, m->special_use);
	rec_u8(out, m->subscribed);
	rec_u64(out, m->keywords_mask);
	rec_str(out, m->name);
}

int
mbox_rec_decode(const uint8_t *p, size_t len, struct mbox_rec *m)
{
	struct rec_reader r;
	char *name;

	rec_init(&r, p, len);
	if (rec_get_u8(&r) != STORE_REC_VERSION)
		r.bad = 1;
	m->account_id = rec_get_u32(&r);
	m->uidvalidity = rec_get_u32(&r);
	m->uidnext = rec_get_u32(&r);
	m->highestmodseq = rec_get_u64(&r);
	m->messages = rec_get_u32(&r);
	m->unseen = rec_get_u32(&r);
	m->recent = rec_get_u32(&r);
	m->recent_uid = rec_get_u32(&r);
	m->size = rec_get_u64(&r);
	m->special_use = rec_get_u32(&r);
	m->subscribed = rec_get_u8(&r);
	m->keywords_mask = rec_get_u64(&r);
	name = rec_get_str(&r);
	if (str_copy(m->name, sizeof(m->name), name) == -1)
		r.bad = 1;
	free(name);
	return r.bad ? -1 : 0;
}

static uint8_t *
varint_put(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Read one varint from [*pp, end); -1 if truncated or longer than 64 bits. */
static int
varint_get(const uint8_t **pp, const uint8_t *end, uint64_t *v_r)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;
	unsigned shift = 0;

	for (;;) {
		if (p == end || shift > 63)
			return -1;
		v |= (uint64_t)(*p & 0x7f) << shift;
		if ((*p++ & 0x80) == 0)
			break;
		shift += 7;
	}
	*pp = p;
	*v_r = v;
	return 0;
}

static uint64_t
zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t
unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

size_t
msg_rec_encode(const struct store_msg *m, uint8_t out[MSG_REC_LEN])
{
	uint8_t *p = out;

	*p++ = MSG_REC_VERSION;
	p = varint_put(p, m->flags);
	p = varint_put(p, m->keywords);
	p = varint_put(p, zigzag(m->internaldate));
	p = varint_put(p, zigzag(m->internaldate_tz));
	p = varint_put(p, m->size);
	p = varint_put(p, m->modseq);
	memcpy(p, m->blob, STORE_BLOB_KEY_LEN);
	p += STORE_BLOB_KEY_LEN;
	return (size_t)(p - out);
}

int
msg_rec_decode(const uint8_t *p, size_t len, uint32_t uid, struct store_msg *m)
{
	const uint8_t *end = p + len;
	uint64_t flags, kw, idate, tz, size, modseq;

	if (len < 1 + 6 + STORE_BLOB_KEY_LEN || len > MSG_REC_LEN
	    || p[0] != MSG_REC_VERSION)
		return -1;
	p++;
	if (varint_get(&p, end, &flags) < 0 || varint_get(&p, end, &kw) < 0
	    || varint_get(&p, end, &idate) < 0 || varint_get(&p, end, &tz) < 0
	    || varint_get(&p, end, &size) < 0
	    || varint_get(&p, end, &modseq) < 0
	    || flags > UINT32_MAX || tz > UINT32_MAX
	    || (size_t)(end - p) != STORE_BLOB_KEY_LEN)
		return -1;
	m->uid = uid;
	m->flags = (uint32_t)flags;
	m->keywords = kw;
	m->internaldate = unzigzag(idate);
	m->internaldate_tz = (int32_t)unzigzag(tz);
	m->size = size;
	m->modseq = modseq;
	memcpy(m->blob, p, STORE_BLOB_KEY_LEN);
	return 0;
}

void
blob_rec_encode(const struct blob_rec *b, uint8_t out[BLOB_REC_LEN])
{
	out[0] = STORE_REC_VERSION;
	out[1] = b->flags;
	be64_put(out + 2, b->refcount);
	be64_put(out + 10, b->size);
	be32_put(out + 18, b->nchunks);
}

int
blob_rec_decode(const uint8_t *p, size_t len, struct blob_rec *b)
{
	if (len != BLOB_REC_LEN || p[0] != STORE_REC_VERSION)
		return -1;
	b->flags = p[1];
	b->refcount = be64_get(p + 2);
	b->size = be64_get(p + 10);
	b->nchunks = be32_get(p + 18);
	return 0;
}

/* ---- errors ---- */

int
st_fail(struct store *s, int code, const char *text)
{
	s->err = text;
	return code;
}

int
st_failf(struct store *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(s->errbuf, sizeof(s->errbuf), fmt, ap);
	va_end(ap);
	s->err = s->errbuf;
	return code;
}

int
st_dberr(struct store *s, int ret, const char *what)
{
	switch (ret) {
	case 0:
		return 0;
	case DB_NOTFOUND:
	case DB_KEYEMPTY:
		return STORE_ENOTFOUND;
	case DB_KEYEXIST:
		return STORE_EEXISTS;
	case DB_LOCK_DEADLOCK:
	case DB_LOCK_NOTGRANTED:
		return STORE_ERETRY;
	case DB_RUNRECOVERY:
		log_warnx("store: %s: %s", what, db_strerror(ret));
		return STORE_EPANIC;
	default:
		log_warnx("store: %s: %s", what, db_strerror(ret));
		return st_failf(s, STORE_ETEMP, "%s: %s", what,
		    db_strerror(ret));
	}
}

/* ---- fault injection ---- */

void
store_fault_inject(struct store *s, unsigned nth, int dberr)
{
	s->fault_armed = nth != UINT32_MAX;
	s->fault_nth = nth;
	s->fault_count = 0;
	s->fault_err = dberr;
	s->fault_fired = 0;
}

int
store_fault_fired(const struct store *s)
{
	return s->fault_fired;
}

/* 0, or the injected Berkeley DB error for this call. */
static int
st_fault(struct store *s)
{
	if (!s->fault_armed)
		return 0;
	if (s->fault_count++ != s->fault_nth)
		return 0;
	s->fault_armed = 0;
	s->fault_fired = 1;
	return s->fault_err;
}

/* ---- DB call wrappers ---- */

/* The database file a keyed call goes to (chunk and meta partitions). */
static int
st_dbi(int dbi, const void *k, size_t klen)
{
	if ((dbi == SDB_CHUNKS || dbi == SDB_META) && klen > 0)
		return SDB_PART(dbi, ((const uint8_t *)k)[0] % STORE_PARTS);
	return dbi;
}

static const char *
st_db_name(int dbi)
{
	if (dbi < SDB_COUNT)
		return st_db_files[dbi];
	return dbi < SDB_PART(SDB_META, 0) ? "chunks" : "meta";
}

static void
st_dbt(DBT *d, const void *p, size_t n)
{
	memset(d, 0, sizeof(*d));
	d->data = (void *)(uintptr_t)p;
	d->size = (u_int32_t)n;
}

/*
 * In a write transaction, records that are read to be rewritten are read
 * with a write lock at once (DB_RMW): two writers that both read-lock a
 * page and then both want to write it are a deadlock every time.
 */
static int
st_rmw(const struct store *s, int dbi)
{
	if (!s->txn_write)
		return 0;
	switch (dbi) {
	case SDB_COUNTERS:
	case SDB_USAGE:
	case SDB_MBOX_BY_ID:
	case SDB_MESSAGES:
	case SDB_BLOBS:
		return 1;
	default:
		return 0;
	}
}

int
st_get(struct store *s, int dbi, DB_TXN *txn, const void *k, size_t klen,
    struct st_val *v)
{
	DBT key, data;
	int ret;

	dbi = st_dbi(dbi, k, klen);

	v->data = NULL;
	v->len = 0;
	if ((ret = st_fault(s)) != 0)
		return st_dberr(s, ret, "get");
	st_dbt(&key, k, klen);
	memset(&data, 0, sizeof(data));
	data.flags = DB_DBT_MALLOC;
	ret = s->db[dbi]->get(s->db[dbi], txn, &key, &data,
	    st_rmw(s, dbi) ? DB_RMW : 0);
	if (ret != 0)
		return st_dberr(s, ret, st_db_name(dbi));
	v->data = data.data;
	v->len = data.size;
	return 0;
}

int
st_exists(struct store *s, int dbi, DB_TXN *txn, const void *k, size_t klen)
{
	struct st_val v;
	int r;

	r = st_get(s, dbi, txn, k, klen, &v);
	free(v.data);
	return r;
}

int
st_put(struct store *s, int dbi, DB_TXN *txn, const void *k, size_t klen,
    const void *v, size_t vlen, uint32_t flags)
{
	DBT key, data;
	int ret;

	dbi = st_dbi(dbi, k, klen);

	if ((ret = st_fault(s)) != 0)
		return st_dberr(s, ret, "put");
	st_dbt(&key, k, klen);
	st_dbt(&data, v, vlen);
	ret = s->db[dbi]->put(s->db[dbi], txn, &key, &data, flags);
	return st_dberr(s, ret, st_db_name(dbi));
}

int
st_del(struct store *s, int dbi, DB_TXN *txn, const void *k, size_t klen)
{
	DBT key;
	int ret;

	dbi = st_dbi(dbi, k, klen);

	if ((ret = st_fault(s)) != 0)
		return st_dberr(s, ret, "del");
	st_dbt(&key, k, klen);
	ret = s->db[dbi]->del(s->db[dbi], txn, &key, 0);
	return st_dberr(s, ret, st_db_name(dbi));
}

int
st_del_dup(struct store *s, int dbi, DB_TXN *txn, const void *k, size_t klen,
    const void *v, size_t vlen)
{
	DBC *dbc;
	DBT key, data;
	int ret, r;

	if ((ret = st_fault(s)) != 0)
		return st_dberr(s, ret, "del");
	ret = s->db[dbi]->cursor(s->db[dbi], txn, &dbc, 0);
	if (ret != 0)
		return st_dberr(s, ret, st_db_name(dbi));
	st_dbt(&key, k, klen);
	st_dbt(&data, v, vlen);
	ret = dbc->get(dbc, &key, &data, DB_GET_BOTH);
	if (ret == 0)
		ret = dbc->del(dbc, 0);
	r = st_dberr(s, ret, st_db_name(dbi));
	ret = dbc->close(dbc);
	if (r == 0 && ret != 0)
		r = st_dberr(s, ret, st_db_name(dbi));
	return r;
}

int
st_cursor_open(struct store *s, int dbi, DB_TXN *txn, struct st_cursor *c)
{
	int ret;

	memset(c, 0, sizeof(*c));
	c->s = s;
	c->rmw = st_rmw(s, dbi);
	c->k.flags = DB_DBT_REALLOC;
	c->v.flags = DB_DBT_REALLOC;
	if ((ret = st_fault(s)) != 0)
		return st_dberr(s, ret, "cursor");
	ret = s->db[dbi]->cursor(s->db[dbi], txn, &c->dbc, 0);
	if (ret != 0) {
		c->dbc = NULL;
		return st_dberr(s, ret, st_db_name(dbi));
	}
	return 0;
}

int
st_cursor_get(struct st_cursor *c, const void *k, size_t klen, uint32_t flags)
{
	int ret;

	if ((ret = st_fault(c->s)) != 0)
		return st_dberr(c->s, ret, "cursor get");
	if (k != NULL) {
		/* The key goes in a buffer Berkeley DB may grow. */
		c->k.data = realloc(c->k.data, klen > 0 ? klen : 1);
		if (c->k.data == NULL)
			log_fatalx("store: out of memory");
		memcpy(c->k.data, k, klen);
		c->k.size = (u_int32_t)klen;
		c->k.ulen = (u_int32_t)klen;
	}
	ret = c->dbc->get(c->dbc, &c->k, &c->v, flags |
	    (c->rmw ? DB_RMW : 0));
	return st_dberr(c->s, ret, "cursor get");
}

int
st_cursor_del(struct st_cursor *c)
{
	int ret;

	if ((ret = st_fault(c->s)) != 0)
		return st_dberr(c->s, ret, "cursor del");
	ret = c->dbc->del(c->dbc, 0);
	return st_dberr(c->s, ret, "cursor del");
}

void
st_cursor_close(struct st_cursor *c)
{
	if (c->dbc != NULL)
		(void)c->dbc->close(c->dbc);
	c->dbc = NULL;
	free(c->k.data);
	free(c->v.data);
	c->k.data = NULL;
	c->v.data = NULL;
}

/* ---- change signalling ---- */

/* Forget the buckets noted by a transaction (retried or done). */
static void
st_notify_reset(struct store *s)
{
	size_t i;

	for (i = 0; i < s->nnotify; i++)
		s->notify_bits[s->notify[i] / 8] = 0;
	s->nnotify = 0;
}

void
st_notify(struct store *s, uint32_t mailbox_id)
{
	uint32_t b = mailbox_id % STORE_NOTIFY_BUCKETS;

	if (s->notify_bits[b / 8] & (1U << (b % 8)))
		return;
	s->notify_bits[b / 8] |= (uint8_t)(1U << (b % 8));
	if (s->nnotify == s->notify_cap) {
		s->notify_cap = s->notify_cap == 0 ? 8 : s->notify_cap * 2;
		s->notify = xreallocarray(s->notify, s->notify_cap,
		    sizeof(*s->notify));
	}
	s->notify[s->nnotify++] = b;
}

void
st_signal(const char *notify_dir, uint32_t mailbox_id)
{
	char path[4096];
	int fd;

	/*
	 * A watcher creates the bucket file before watching it; no file
	 * means nobody watches this bucket, so there is nothing to do.
	 */
	if (snprintf(path, sizeof(path), "%s/%03x", notify_dir,
	    (unsigned)(mailbox_id % STORE_NOTIFY_BUCKETS)) >= (int)sizeof(path))
		return;
	fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return;
	if (pwrite(fd, "x", 1, 0) != 1)
		log_warn("store: notify %s", path);
	(void)close(fd);
}

/* ---- the environment ---- */

static int
st_is_alive(DB_ENV *env, pid_t pid, db_threadid_t tid, u_int32_t flags)
{
	(void)env;
	(void)tid;
	(void)flags;
	if (pid == getpid())
		return 1;
	return kill(pid, 0) == 0 || errno == EPERM;
}

static void
st_db_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
	(void)env;
	(void)pfx;
	log_warnx("store: bdb: %s", msg);
}

/* For removing regions that may be half gone: failures are expected. */
static void
st_db_quiet(const DB_ENV *env, const char *pfx, const char *msg)
{
	(void)env;
	(void)pfx;
	(void)msg;
}

static void
st_db_msgcall(const DB_ENV *env, const char *msg)
{
	(void)env;
	log_info("store: bdb: %s", msg);
}

static void
st_shared_close_handles(struct store_shared *sh)
{
	int i;

	for (i = 0; i < SDB_TOTAL; i++) {
		if (sh->db[i] != NULL)
			(void)sh->db[i]->close(sh->db[i], 0);
		sh->db[i] = NULL;
	}
	if (sh->env != NULL)
		(void)sh->env->close(sh->env, 0);
	sh->env = NULL;
}

struct open_watch {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	const char *path;
};

static void *
st_open_watchdog(void *arg)
{
	struct open_watch *ow = arg;
	struct timespec ts;
	int wedged = 0;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	(void)pthread_mutex_lock(&st_wd_lock);
	ts.tv_sec += (time_t)st_stuck_sec;
	(void)pthread_mutex_unlock(&st_wd_lock);
	(void)pthread_mutex_lock(&ow->mu);
	while (!ow->done)
		if (pthread_cond_timedwait(&ow->cv, &ow->mu, &ts) ==
		    ETIMEDOUT) {
			wedged = !ow->done;
			break;
		}
	(void)pthread_mutex_unlock(&ow->mu);
	if (wedged)
		st_wedged(ow->path, "opening the environment");
	return NULL;
}

/* A configured environment handle, not yet open. */
static int
st_env_new(const struct config *cfg, long shm_key, DB_ENV **env_r)
{
	DB_ENV *env;
	uint64_t cache, ncache, extra;
	int ret;

	if ((ret = db_env_create(&env, 0)) != 0)
		return ret;
	env->set_errcall(env, st_db_errcall);
	env->set_msgcall(env, st_db_msgcall);
	cache = config_size(cfg, "store", "cache_size");
	if (cache < 1024 * 1024)
		cache = 1024 * 1024;
	/*
	 * The pool in regions of STORE_CACHE_REGION (at most
	 * STORE_CACHE_REGIONS_MAX): each region has its own lock, and
	 * concurrent deliveries of large messages, which allocate many new
	 * pages, no longer queue on one.
	 */
	ncache = cache / STORE_CACHE_REGION;
	if (ncache < 1)
		ncache = 1;
	if (ncache > STORE_CACHE_REGIONS_MAX)
		ncache = STORE_CACHE_REGIONS_MAX;
	(void)env->set_cachesize(env, (u_int32_t)(cache >> 30),
	    (u_int32_t)(cache & ((1U << 30) - 1)), (int)ncache);
	/*
	 * Hash buckets: Berkeley DB's default is one per 10 KiB of pool,
	 * about 2.5 buffers of 4 KiB on each chain, and every lookup walks
	 * its chain, touching a buffer header (a page of memory) per link,
	 * all over the pool.  STORE_HASH_PER_PAGE buckets per page keep
	 * chains short; the bucket mutexes stay as many as before.  Both
	 * counts are per cache region.
	 */
	(void)env->set_mp_tablesize(env,
	    (u_int32_t)(cache / ncache / 4096 * STORE_HASH_PER_PAGE));
	(void)env->set_mp_mtxcount(env, (u_int32_t)(cache / ncache / 10240));
	extra = cache / STORE_USAGE_PAGESIZE - cache / 4096;
	(void)env->mutex_set_increment(env, (u_int32_t)(extra >
	    STORE_MUTEX_EXTRA_MAX ? STORE_MUTEX_EXTRA_MAX : extra));
	(void)env->set_thread_count(env,
	    (u_int32_t)config_uint(cfg, "store", "max_processes"));
	(void)env->set_isalive(env, st_is_alive);
	(void)env->set_lk_detect(env, DB_LOCK_DEFAULT);
	(void)env->set_lk_max_locks(env, STORE_LOCKS_MAX);
	(void)env->set_lk_max_objects(env, STORE_LOCKS_MAX);
	(void)env->set_lk_max_lockers(env, STORE_LOCKERS_MAX);
	(void)env->set_timeout(env, STORE_LOCK_TIMEOUT_US,
	    DB_SET_LOCK_TIMEOUT);
	(void)env->set_lg_bsize(env, STORE_LOG_BUFFER);
	(void)env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1);
	if (shm_key != 0)
		(void)env->set_shm_key(env, shm_key);
	*env_r = env;
	return 0;
}

/* The flags every open of the environment adds for shared regions. */
static uint32_t
st_env_mem_flags(long shm_key)
{
	return shm_key != 0 ? DB_SYSTEM_MEM : 0;
}

/*
 * The base key of a store's segments when [store] shm_key is 0: from the
 * store folder's device and inode, 16 keys apart.  Keys only matter while
 * segments are being made (st_env_release frees them at once), so a
 * clash between two stores' keys is harmless.
 */
static long
st_env_key(const char *path)
{
	struct stat sb;
	uint64_t h;

	if (stat(path, &sb) == -1)
		return STORE_SHM_KEY_BASE;
	h = ((uint64_t)sb.st_dev * 0x9e3779b97f4a7c15ULL) ^
	    ((uint64_t)sb.st_ino * 0xc2b2ae3d27d4eb4fULL);
	h ^= h >> 29;
	return STORE_SHM_KEY_BASE + (long)(h % STORE_SHM_KEY_SLOTS) * 16;
}

/*
 * Whether System V shared memory can hold the regions of a pool of cache
 * bytes: the largest is the environment's own (~190 MiB reserved with the
 * default limits) or one cache region (at most 1/8 of the pool).  Nothing
 * is allocated: a segment's pages come when touched.  Checked before any
 * open: after a failed DB_REGISTER open this process cannot open the
 * environment again, so there is no falling back later.
 */
static int
st_sysv_usable(uint64_t cache)
{
	uint64_t size = cache / STORE_CACHE_REGIONS_MAX + 16 * 1024 * 1024;
	int id;

	if (size < STORE_SHM_PROBE)
		size = STORE_SHM_PROBE;
	if ((id = shmget(IPC_PRIVATE, (size_t)size, IPC_CREAT | 0600)) == -1)
		return 0;
	(void)shmctl(id, IPC_RMID, NULL);
	return 1;
}

/*
 * Marks the regions' segments for removal as soon as this process has
 * them: they stay with every process attached (Linux lets shmat() join a
 * marked segment by its id, which is how Berkeley DB joins, from
 * __db.001) and go when the last one detaches.  So a store never leaves
 * memory behind, whatever becomes of its folder; the next open after
 * every process has gone finds the segments gone and makes the regions
 * anew with recovery (st_env_stale).
 */
static void
st_env_release(long shm_key)
{
	struct shm_info info;
	struct shmid_ds ds;
	int max, i, id;

	if (shm_key == 0)
		return;
	max = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&info);
	for (i = 0; i <= max; i++) {
		if ((id = shmctl(i, SHM_STAT, &ds)) == -1)
			continue;
		/*
		 * Attached ones only: another store whose key clashes may
		 * have made regions it has not joined yet (st_env_recreate
		 * detaches before the open), and an unattached segment
		 * would go at once.
		 */
		if ((long)ds.shm_perm.__key >= shm_key &&
		    (long)ds.shm_perm.__key < shm_key + 16 &&
		    ds.shm_perm.uid == geteuid() && ds.shm_nattch > 0)
			(void)shmctl(id, IPC_RMID, NULL);
	}
}

/*
 * Whether a process other than this one has the environment open: each
 * one opened with DB_REGISTER holds a lock on its slot of __db.register
 * for as long as it lives.
 */
static int
st_env_in_use(const char *path)
{
	struct flock fl;
	char *reg;
	int fd, busy;

	reg = xasprintf("%s/__db.register", path);
	fd = open(reg, O_RDWR | O_CLOEXEC);
	free(reg);
	if (fd == -1)
		return 0;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	busy = fcntl(fd, F_GETLK, &fl) == -1 || fl.l_type != F_UNLCK;
	(void)close(fd);
	return busy;
}

#define ST_STALE_RELEASED "its shared memory was released"

/*
 * Whether the regions must be made anew before this open: they are in
 * files while [store] regions asks for System V shared memory or the
 * other way round, or they were in shared memory that is gone (every
 * process that had it has exited: st_env_release).  In System V mode
 * __db.001 is only a reference: the region's size, its largest size and
 * the segment's shmid (Berkeley DB's REGENV_REF).
 */
static const char *
st_env_stale(const char *path, long shm_key)
{
	struct {
		uintmax_t size, max;
		long segid;
	} ref;
	struct shmid_ds ds;
	struct stat sb;
	char *f;
	int fd, sysv, gone = 0;

	f = xasprintf("%s/__db.001", path);
	fd = open(f, O_RDONLY | O_CLOEXEC);
	free(f);
	if (fd == -1)
		return NULL;
	if (fstat(fd, &sb) == -1)
		sb.st_size = 0;
	sysv = (size_t)sb.st_size == sizeof(ref);
	if (sysv && read(fd, &ref, sizeof(ref)) == (ssize_t)sizeof(ref) &&
	    shmctl((int)ref.segid, IPC_STAT, &ds) == -1 &&
	    (errno == EINVAL || errno == EIDRM))
		gone = 1;
	(void)close(fd);
	if (gone)
		return ST_STALE_RELEASED;
	/* A region file is megabytes; anything else was cut short. */
	if (!sysv && sb.st_size < 4096)
		return "its region file is damaged";
	if (sysv && shm_key == 0)
		return "it is in shared memory and [store] regions = files";
	if (!sysv && shm_key != 0)
		return "it is in files and [store] regions = shared";
	return NULL;
}

/*
 * Makes the regions anew, the way [store] regions asks: recovery without
 * DB_REGISTER always removes the old regions (files or segments) and
 * replays the log from the last checkpoint, so nothing committed is lost.
 * Only when no other process has the environment open.
 */
static int
st_env_recreate(const char *path, const struct config *cfg, long shm_key,
    const char *why)
{
	DB_ENV *env;
	unsigned waited = 0;
	int ret;

	/*
	 * Released regions that are gone while a process is still
	 * registered: that process is exiting (its memory goes before its
	 * locks) or its open failed as it went; it cannot be using regions
	 * that no longer exist.  Give it a moment to finish.
	 */
	while (st_env_in_use(path) && strcmp(why, ST_STALE_RELEASED) == 0 &&
	    waited++ < STORE_STALE_WAIT_MS / 10)
		(void)usleep(10000);
	if (st_env_in_use(path)) {
		log_warnx("store: %s: the environment must be made anew (%s), "
		    "but other processes have it open: stop them first",
		    path, why);
		return EBUSY;
	}
	log_info("store: %s: making the environment anew: %s", path, why);
	/*
	 * First the old regions go, files or segments (an attach that fails
	 * on missing segments is expected: no error callback).  Recovery on
	 * them would carry their kind over to the new ones.
	 */
	if ((ret = db_env_create(&env, 0)) != 0)
		return ret;
	env->set_errcall(env, st_db_quiet);
	(void)env->remove(env, path, DB_FORCE);
	if ((ret = st_env_new(cfg, shm_key, &env)) != 0)
		return ret;
	ret = env->open(env, path, DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK |
	    DB_INIT_LOG | DB_INIT_MPOOL | DB_RECOVER |
	    st_env_mem_flags(shm_key), 0600);
	if (ret == 0)
		(void)env->txn_checkpoint(env, 0, 0, 0);
	(void)env->close(env, 0);
	if (ret != 0)
		log_warnx("store: %s: recovery: %s", path, db_strerror(ret));
	return ret;
}

/*
 * Berkeley DB 5.3's failchk, run when the registry shows a dead user, can
 * block for ever on a mutex the dead process held, and can crash on the
 * lock table it left half-changed.  So a child process tries it first:
 * DB_REGISTER + DB_FAILCHK + DB_RECOVER, then close.  If the child crashes
 * or hangs, the marker makes the real open run recovery without failchk.
 */
static void
st_failchk_probe(const char *path, const struct config *cfg, long shm_key,
    const char *marker)
{
	DB_ENV *env;
	unsigned waited = 0, limit;
	pid_t pid;
	int status = 0, ret, fd, ok;

	(void)pthread_mutex_lock(&st_wd_lock);
	limit = st_stuck_sec * 100;
	(void)pthread_mutex_unlock(&st_wd_lock);
	pid = fork();
	if (pid == -1)
		return;		/* the open below runs failchk itself */
	if (pid == 0) {
		/*
		 * The child must never outlive the wait below nor hold the
		 * caller's pipes: it dies with its parent, after a bounded
		 * time, and writes nowhere.
		 */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(1);
		(void)alarm(limit / 100 + 2);
		if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) != -1) {
			(void)dup2(fd, STDIN_FILENO);
			(void)dup2(fd, STDOUT_FILENO);
			(void)dup2(fd, STDERR_FILENO);
		}
		if (st_env_new(cfg, shm_key, &env) != 0)
			_exit(1);
		env->set_errcall(env, NULL);
		env->set_msgcall(env, NULL);
		ret = env->open(env, path, DB_CREATE | DB_INIT_TXN |
		    DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL | DB_THREAD |
		    DB_REGISTER | DB_RECOVER | DB_FAILCHK |
		    st_env_mem_flags(shm_key), 0600);
		(void)env->close(env, 0);
		_exit(ret == 0 ? 0 : 1);
	}
	while ((ret = (int)waitpid(pid, &status, WNOHANG)) == 0 &&
	    waited++ < limit)
		(void)usleep(10000);
	if (ret == 0) {
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, &status, 0);
		ok = 0;
	} else
		ok = ret == pid && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 0;
	if (ok)
		return;
	log_warnx("store: failchk of %s failed (status %d): recovering "
	    "instead", path, status);
	fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd != -1)
		(void)close(fd);
}

static void (*st_open_hook)(void *);
static void *st_open_hook_arg;

void
store_test_open_hook(void (*hook)(void *), void *arg)
{
	st_open_hook = hook;
	st_open_hook_arg = arg;
}

/* Open the environment and the databases of sh->path. */
static int
st_shared_open_locked(struct store_shared *sh, const struct config *cfg,
    int create, const char **error_r)
{
	DB_ENV *env;
	DB *db;
	struct open_watch ow;
	pthread_t owt;
	char *marker, fname[64];
	const char *why;
	uint32_t oflags;
	int ret, i, forced, wd, retried = 0;

again:
	if ((why = st_env_stale(sh->path, sh->shm_key)) != NULL &&
	    (ret = st_env_recreate(sh->path, cfg, sh->shm_key, why)) != 0) {
		*error_r = ret == EBUSY ? "the environment's regions must be "
		    "made anew: stop every process using the store" :
		    db_strerror(ret);
		return STORE_ETEMP;
	}
	marker = xasprintf("%s/%s", sh->path, STORE_RECOVER_MARKER);
	if (access(marker, F_OK) != 0)
		st_failchk_probe(sh->path, cfg, sh->shm_key, marker);
	if ((ret = st_env_new(cfg, sh->shm_key, &env)) != 0) {
		free(marker);
		*error_r = db_strerror(ret);
		return STORE_ETEMP;
	}
	sh->env = env;
	/*
	 * DB_REGISTER + DB_FAILCHK + DB_RECOVER: when the registry shows
	 * that a previous user died, failchk releases its locks and aborts
	 * its transaction; recovery runs only when that is not enough (other
	 * users then see DB_RUNRECOVERY and reopen, st_reopen).  When the
	 * probe found failchk unsafe, the marker makes this open recover
	 * without it.
	 */
	oflags = DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG |
	    DB_INIT_MPOOL | DB_THREAD | DB_REGISTER | DB_RECOVER |
	    st_env_mem_flags(sh->shm_key);
	forced = access(marker, F_OK) == 0;
	if (!forced)
		oflags |= DB_FAILCHK;
	ow.path = sh->path;
	ow.done = 0;
	(void)pthread_mutex_init(&ow.mu, NULL);
	(void)pthread_cond_init(&ow.cv, NULL);
	wd = pthread_create(&owt, NULL, st_open_watchdog, &ow) == 0;
	if (st_open_hook != NULL)
		st_open_hook(st_open_hook_arg);
	ret = env->open(env, sh->path, oflags, 0600);
	if (wd) {
		(void)pthread_mutex_lock(&ow.mu);
		ow.done = 1;
		(void)pthread_cond_signal(&ow.cv);
		(void)pthread_mutex_unlock(&ow.mu);
		(void)pthread_join(owt, NULL);
	}
	(void)pthread_cond_destroy(&ow.cv);
	(void)pthread_mutex_destroy(&ow.mu);
	if (ret == 0 && forced) {
		log_info("store: %s recovered after a process died inside "
		    "Berkeley DB", sh->path);
		(void)unlink(marker);
	}
	free(marker);
	if (ret != 0) {
		log_warnx("store: open %s: %s", sh->path, db_strerror(ret));
		st_shared_close_handles(sh);
		/*
		 * The last other process died (its detach is not under the
		 * folder lock) between the check above and this attach, and
		 * the released segments went with it: make them anew, once.
		 */
		if (!retried && st_env_stale(sh->path, sh->shm_key) != NULL) {
			retried = 1;
			log_info("store: %s: the regions went while this "
			    "process joined them: trying again", sh->path);
			goto again;
		}
		*error_r = db_strerror(ret);
		return STORE_ETEMP;
	}
	st_env_release(sh->shm_key);
	for (i = 0; i < SDB_TOTAL; i++) {
		if ((ret = db_create(&db, env, 0)) != 0)
			goto fail;
		sh->db[i] = db;
		if (i == SDB_ALIASES || i == SDB_LIST_ENTRIES)
			(void)db->set_flags(db, DB_DUPSORT);
		/* New files only: an existing file keeps its page size. */
		if (i == SDB_USAGE)
			(void)db->set_pagesize(db, STORE_USAGE_PAGESIZE);
		if (i < SDB_COUNT)
			(void)str_copy(fname, sizeof(fname), st_db_files[i]);
		else
			(void)snprintf(fname, sizeof(fname), "%s-%02x.db",
			    i < SDB_PART(SDB_META, 0) ? "chunks" : "meta",
			    (unsigned)((i - SDB_COUNT) % STORE_PARTS));
		/* Tables added after the first release: made on open. */
		ret = db->open(db, NULL, fname, NULL, DB_BTREE,
		    DB_AUTO_COMMIT | DB_THREAD | (create || (i >= SDB_QUEUE &&
		    i < SDB_COUNT) ? DB_CREATE : 0), 0600);
		if (ret != 0)
			goto fail;
		/*
		 * Message contents are evicted first: the memory pool keeps
		 * the indexes and accounts every session needs, the kernel's
		 * page cache the contents.  A full pool then finds a victim
		 * at once instead of sampling buffers all over it.
		 */
		if (i >= SDB_PART(SDB_CHUNKS, 0) && i < SDB_PART(SDB_META, 0))
			(void)db->set_priority(db, DB_PRIORITY_VERY_LOW);
	}
	return 0;
fail:
	log_warnx("store: open %s/%s: %s", sh->path, fname,
	    db_strerror(ret));
	*error_r = ret == ENOENT ? "store not initialised" : db_strerror(ret);
	st_shared_close_handles(sh);
	return ret == ENOENT ? STORE_ENOTFOUND : STORE_ETEMP;
}

/*
 * An exclusive lock on the store's folder, taken around every open and
 * every last close of the environment in a process.  Processes starting
 * together (a daemon's workers) then open it one at a time, so that one
 * deciding to make the regions anew (st_env_stale) never does it under
 * another that is creating or joining them; and no process detaches
 * from the regions between another's staleness check and its attach,
 * which would take the released segments away under it.  Bounded: a
 * holder stopped for ever must not stop every start.  Returns the
 * descriptor to close, or -1.
 */
static int
st_folder_lock(const char *path)
{
	unsigned waited = 0;
	int dfd;

	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	while (dfd != -1 && flock(dfd, LOCK_EX | LOCK_NB) == -1 &&
	    errno == EWOULDBLOCK) {
		if (waited++ == STORE_OPEN_LOCK_WAIT_MS / 10) {
			log_warnx("store: %s: still locked by another "
			    "process's open after %u ms: going on anyway",
			    path, STORE_OPEN_LOCK_WAIT_MS);
			break;
		}
		(void)usleep(10000);
	}
	return dfd;
}

static void
st_folder_unlock(int dfd)
{
	if (dfd != -1)
		(void)close(dfd);
}

static int
st_shared_open(struct store_shared *sh, const struct config *cfg, int create,
    const char **error_r)
{
	int dfd, r;

	dfd = st_folder_lock(sh->path);
	r = st_shared_open_locked(sh, cfg, create, error_r);
	st_folder_unlock(dfd);
	return r;
}

static int
st_mkdir(const char *path)
{
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

/*
 * Read a 32-byte key: raw bytes or 64 hex digits (newline allowed).  With
 * create, a missing file is made with fresh random bytes, mode 0600.
 */
static int
st_key_read(const char *path, uint8_t key[32], int create,
    const char **error_r)
{
	uint8_t raw[130];
	struct stat sb;
	ssize_t n;
	size_t bin_len;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ENOENT && create) {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd == -1) {
			log_warn("store: create key %s", path);
			*error_r = "cannot create key file";
			return STORE_ETEMP;
		}
		randombytes_buf(key, 32);
		if (write(fd, key, 32) != 32 || fsync(fd) == -1) {
			log_warn("store: write key %s", path);
			(void)close(fd);
			(void)unlink(path);
			*error_r = "cannot write key file";
			return STORE_ETEMP;
		}
		(void)close(fd);
		return 0;
	}
	if (fd == -1) {
		log_warn("store: key %s", path);
		*error_r = "cannot open key file";
		return STORE_ETEMP;
	}
	/* SECURITY: a key others can read protects nothing. */
	if (fstat(fd, &sb) == -1 || (sb.st_mode & 077) != 0) {
		log_warnx("store: key file %s is readable by others", path);
		(void)close(fd);
		*error_r = "key file must be mode 0600";
		return STORE_EINVAL;
	}
	n = read(fd, raw, sizeof(raw));
	(void)close(fd);
	if (n == 32) {
		memcpy(key, raw, 32);
		sodium_memzero(raw, sizeof(raw));
		return 0;
	}
	while (n > 0 && (raw[n - 1] == '\n' || raw[n - 1] == '\r'))
		n--;
	if (n == 64 && sodium_hex2bin(key, 32, (const char *)raw, 64, NULL,
	    &bin_len, NULL) == 0 && bin_len == 32) {
		sodium_memzero(raw, sizeof(raw));
		return 0;
	}
	sodium_memzero(raw, sizeof(raw));
	*error_r = "key file must hold 32 bytes or 64 hex digits";
	return STORE_EINVAL;
}

/* The resident ID hash key, made on first use. */
int
st_id_key(struct store *s, const char **error_r)
{
	int r;

	if (s->have_id_key)
		return 0;
	r = st_key_read(s->id_key_path, s->id_key, 1, error_r);
	if (r == 0)
		s->have_id_key = 1;
	return r;
}

int
store_open(const struct config *cfg, unsigned flags, struct store **store_r,
    const char **error_r)
{
	struct store_shared *sh;
	struct store *s;
	const char *path, *keyfile, *idkey, *regions, *compress, *err = NULL;
	struct stat sb;
	uint64_t shm_key, ckp;
	pid_t pid = getpid();
	int r;

	if (error_r == NULL)
		error_r = &err;
	*store_r = NULL;
	if (sodium_init() < 0) {
		*error_r = "libsodium failed to initialise";
		return STORE_ETEMP;
	}
	path = config_path_get(cfg, "store", "path");
	if (path[0] == '\0') {
		*error_r = "[store] path is empty";
		return STORE_EINVAL;
	}
	/* Berkeley DB adds the region number to it; a key_t is an int. */
	if ((shm_key = config_uint(cfg, "store", "shm_key")) >
	    STORE_SHM_KEY_MAX) {
		*error_r = "[store] shm_key is over " STORE_SHM_KEY_MAX_S;
		return STORE_EINVAL;
	}
	regions = config_str(cfg, "store", "regions");
	if (strcmp(regions, "shared") != 0 && strcmp(regions, "files") != 0) {
		*error_r = "[store] regions is neither shared nor files";
		return STORE_EINVAL;
	}
	if (flags & STORE_OPEN_CREATE) {
		if (st_mkdir(path) == -1) {
			log_warn("store: mkdir %s", path);
			*error_r = "cannot create the store folder";
			return STORE_ETEMP;
		}
	} else if (stat(path, &sb) == -1) {
		*error_r = "store not initialised";
		return STORE_ENOTFOUND;
	}

	s = xcalloc(1, sizeof(*s));
	s->flags = flags;
	s->path = xstrdup(path);
	s->notify_dir = xasprintf("%s/notify", path);
	(void)st_mkdir(s->notify_dir);
	s->quota_bytes_def = config_size(cfg, "limits", "quota_bytes");
	s->quota_messages_def = config_uint(cfg, "limits", "quota_messages");
	s->message_max = config_size(cfg, "limits", "message_size");
	if (s->message_max == 0 || s->message_max > STORE_MESSAGE_MAX)
		s->message_max = STORE_MESSAGE_MAX;
	s->opslimit = config_uint(cfg, "store", "password_opslimit");
	s->memlimit = (size_t)config_size(cfg, "store", "password_memlimit");
	s->auth_ttl = config_duration(cfg, "store", "auth_cache_ttl");
	s->checkpoint_interval = config_duration(cfg, "store",
	    "checkpoint_interval");
	ckp = config_size(cfg, "store", "checkpoint_log_size");
	s->checkpoint_kb = ckp == 0 ? 0 : ckp < 1024 ? 1 :
	    ckp / 1024 > UINT32_MAX ? UINT32_MAX : (uint32_t)(ckp / 1024);
	compress = config_str(cfg, "store", "compress");
	if (strcmp(compress, "zstd") == 0) {
		s->zlevel = (int)config_uint(cfg, "store", "compress_level");
		if (s->zlevel < 1 || s->zlevel > STORE_ZSTD_LEVEL_MAX) {
			*error_r = "[store] compress_level is not 1 to 19";
			r = STORE_EINVAL;
			goto fail;
		}
	} else if (strcmp(compress, "none") != 0) {
		*error_r = "[store] compress is neither zstd nor none";
		r = STORE_EINVAL;
		goto fail;
	}
	idkey = config_path_get(cfg, "store", "id_key_file");
	s->id_key_path = idkey[0] != '\0' ? xstrdup(idkey) :
	    xasprintf("%s/id.key", path);
	keyfile = config_path_get(cfg, "store", "key_file");
	if (keyfile[0] != '\0') {
		r = st_key_read(keyfile, s->key, 0, error_r);
		if (r != 0)
			goto fail;
		s->sealed = 1;
		/*
		 * SECURITY: with encryption on, blob keys are a keyed hash so
		 * the index does not confirm guesses of a message's content.
		 */
		crypto_generichash(s->blob_hash_key, 32,
		    (const uint8_t *)"govmail blob key", 16, s->key, 32);
	}

	(void)pthread_mutex_lock(&st_shared_lock);
	for (sh = st_shared_list; sh != NULL; sh = sh->next)
		if (sh->pid == pid && !sh->broken &&
		    strcmp(sh->path, path) == 0)
			break;
	if (sh == NULL) {
		sh = xcalloc(1, sizeof(*sh));
		sh->path = xstrdup(path);
		sh->pid = pid;
		sh->last_checkpoint = time(NULL);
		if (strcmp(regions, "files") == 0)
			sh->shm_key = 0;
		else if (!st_sysv_usable(config_size(cfg, "store",
		    "cache_size"))) {
			log_warnx("store: %s: System V shared memory is not "
			    "available for the regions (shmget: %s): using "
			    "region files", path, strerror(errno));
			sh->shm_key = 0;
		} else
			sh->shm_key = shm_key != 0 ? (long)shm_key :
			    st_env_key(path);
		r = st_shared_open(sh, cfg, (flags & STORE_OPEN_CREATE) != 0,
		    error_r);
		if (r != 0) {
			(void)pthread_mutex_unlock(&st_shared_lock);
			free(sh->path);
			free(sh);
			goto fail;
		}
		sh->next = st_shared_list;
		st_shared_list = sh;
	}
	sh->refs++;
	(void)pthread_mutex_unlock(&st_shared_lock);
	s->sh = sh;
	s->env = sh->env;
	s->db = sh->db;
	st_wd_add(s);
	*store_r = s;
	return 0;
fail:
	sodium_memzero(s->key, sizeof(s->key));
	free(s->path);
	free(s->notify_dir);
	free(s->id_key_path);
	free(s);
	return r;
}

/* Drop one reference to sh; the lock is held. */
static void
st_shared_release(struct store_shared *sh)
{
	struct store_shared **pp;
	int dfd;

	if (--sh->refs > 0)
		return;
	for (pp = &st_shared_list; *pp != NULL; pp = &(*pp)->next)
		if (*pp == sh) {
			*pp = sh->next;
			break;
		}
	/* A handle inherited over fork() belongs to the parent: leave it. */
	if (sh->pid == getpid()) {
		if (sh->env != NULL && !sh->broken)
			(void)sh->env->txn_checkpoint(sh->env, 0, 0, 0);
		dfd = st_folder_lock(sh->path);
		st_shared_close_handles(sh);
		st_folder_unlock(dfd);
	}
	free(sh->path);
	free(sh);
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	st_wd_remove(s);
	(void)pthread_mutex_lock(&st_shared_lock);
	st_shared_release(s->sh);
	(void)pthread_mutex_unlock(&st_shared_lock);
	sodium_memzero(s->key, sizeof(s->key));
	sodium_memzero(s->blob_hash_key, sizeof(s->blob_hash_key));
	sodium_memzero(s->id_key, sizeof(s->id_key));
	ZSTD_freeCCtx(s->zc);
	ZSTD_freeDCtx(s->zd);
	free(s->notify);
	free(s->path);
	free(s->notify_dir);
	free(s->id_key_path);
	free(s);
}

/*
 * The environment panicked (a process died inside Berkeley DB): close our
 * handles and reopen, which runs recovery.  Only when this handle is the
 * process's only user of the environment; otherwise the others still hold
 * handles and the caller gets STORE_ETEMP.
 */
static int
st_reopen(struct store *s)
{
	struct store_shared *sh = s->sh;
	struct config *cfg;
	const char *err;
	int r = STORE_ETEMP;

	(void)pthread_mutex_lock(&st_shared_lock);
	(void)pthread_rwlock_wrlock(&st_env_lock);
	if (sh->refs == 1 && sh->pid == getpid()) {
		st_shared_close_handles(sh);
		/*
		 * The sizes were applied at the first open; defaults are good
		 * enough for the handles of a reopen.
		 */
		cfg = config_defaults();
		r = st_shared_open(sh, cfg, 0, &err);
		config_free(cfg);
		if (r == 0) {
			s->env = sh->env;
			s->db = sh->db;
			log_info("store: environment reopened after a panic");
		} else {
			sh->broken = 1;
			r = STORE_ETEMP;
		}
	} else
		sh->broken = 1;
	(void)pthread_rwlock_unlock(&st_env_lock);
	(void)pthread_mutex_unlock(&st_shared_lock);
	return r;
}

int
st_txn_run(struct store *s, int mode, st_txn_fn fn, void *ctx,
    const char **error_r)
{
	DB_TXN *txn;
	struct timespec ts;
	unsigned attempt;
	size_t i;
	int r, ret, reopened = 0, nosync;

	s->err = NULL;
	if (!(mode & ST_TXN_LONG))
		st_busy(s, 1);
	mode &= ~ST_TXN_LONG;
	nosync = (mode & ST_TXN_NOSYNC) != 0;
	mode &= ~ST_TXN_NOSYNC;
	if (mode == ST_TXN_WRITE && (s->flags & STORE_OPEN_READONLY)) {
		r = st_fail(s, STORE_EPERM, "store opened read-only");
		goto out;
	}
	for (attempt = 0;; attempt++) {
		st_notify_reset(s);
		s->nmodseq_run = 0;
		s->err = NULL;
		if (s->sh->broken)
			r = STORE_EPANIC;
		else if ((ret = st_fault(s)) != 0)
			r = st_dberr(s, ret, "txn begin");
		else {
			ret = s->env->txn_begin(s->env, NULL, &txn, 0);
			r = st_dberr(s, ret, "txn begin");
		}
		if (r == 0) {
			s->txn_write = mode == ST_TXN_WRITE;
			r = fn(s, txn, ctx);
			s->txn_write = 0;
			if (r >= 0) {
				if ((ret = st_fault(s)) != 0) {
					(void)txn->abort(txn);
					r = st_dberr(s, ret, "commit");
				} else {
					/*
					 * DB_TXN_SYNC: durable before we say
					 * so; concurrent committers share the
					 * log flush (group commit).
					 */
					ret = txn->commit(txn, mode ==
					    ST_TXN_WRITE && !nosync &&
					    !s->defer_sync ? DB_TXN_SYNC :
					    mode == ST_TXN_WRITE ?
					    DB_TXN_NOSYNC : 0);
					if (ret == 0 && mode == ST_TXN_WRITE &&
					    !nosync && s->defer_sync)
						s->unsynced = 1;
					if (ret != 0)
						r = st_dberr(s, ret, "commit");
				}
			} else
				(void)txn->abort(txn);
		}
		if (r == STORE_EPANIC && !reopened) {
			reopened = 1;
			if (st_reopen(s) == 0)
				continue;
			r = st_fail(s, STORE_ETEMP,
			    "store needs recovery: reopen it");
			break;
		}
		if (r == STORE_EPANIC) {
			r = st_fail(s, STORE_ETEMP, "store needs recovery");
			break;
		}
		if (r != STORE_ERETRY)
			break;
		if (attempt + 1 >= STORE_TXN_RETRY_MAX) {
			log_warnx("store: giving up after %u deadlocks",
			    attempt + 1);
			r = st_fail(s, STORE_ETEMP, "too many deadlocks");
			break;
		}
		if (attempt > 2) {
			/* Back off a little, more each time, with jitter. */
			ts.tv_sec = 0;
			ts.tv_nsec = (long)(randombytes_uniform(1000) + 1) *
			    (attempt < 20 ? attempt : 20) * 1000L;
			(void)nanosleep(&ts, NULL);
		}
		if (attempt % 16 == 15)
			(void)s->env->failchk(s->env, 0);
	}
	if (r >= 0 && mode == ST_TXN_WRITE) {
		for (i = 0; i < s->nnotify; i++)
			st_signal(s->notify_dir, s->notify[i]);
		memcpy(s->modseq_done, s->modseq_run,
		    s->nmodseq_run * sizeof(s->modseq_run[0]));
		s->nmodseq_done = s->nmodseq_run;
	}
out:
	st_busy(s, 0);
	st_notify_reset(s);
	if (error_r != NULL)
		*error_r = r < 0 ? (s->err != NULL ? s->err :
		    store_strerror(r)) : NULL;
	return r;
}

void
store_set_deferred_sync(struct store *s, int on)
{
	s->defer_sync = on != 0;
}

int
store_take_unsynced(struct store *s)
{
	int u = s->unsynced;

	s->unsynced = 0;
	return u;
}

int
store_sync(struct store *s, const char **error_r)
{
	struct store_shared *sh = s->sh;
	int ret;

	/*
	 * st_env_lock keeps a reopen from swapping the environment under
	 * this thread; a flush takes what is in the log buffer.  The flush
	 * waits on the log's mutexes, which a process killed in the middle
	 * of its own flush leaves held: the watchdog sees to that.
	 */
	st_busy(s, 1);
	(void)pthread_rwlock_rdlock(&st_env_lock);
	ret = sh->broken ? DB_RUNRECOVERY : sh->env->log_flush(sh->env, NULL);
	(void)pthread_rwlock_unlock(&st_env_lock);
	st_busy(s, 0);
	if (ret != 0) {
		log_warnx("store: log flush: %s", db_strerror(ret));
		if (error_r != NULL)
			*error_r = db_strerror(ret);
		return STORE_ETEMP;
	}
	return 0;
}

int
store_maintain(struct store *s, const char **error_r)
{
	struct store_shared *sh = s->sh;
	time_t now;
	int ret;

	if (error_r != NULL)
		*error_r = NULL;
	if (s->sh->broken && st_reopen(s) != 0) {
		if (error_r != NULL)
			*error_r = "store needs recovery: reopen it";
		return STORE_ETEMP;
	}
	/* failchk can block on a dead process's mutex: the watchdog sees. */
	st_busy(s, 1);
	ret = s->env->failchk(s->env, 0);
	st_busy(s, 0);
	if (ret != 0) {
		log_warnx("store: failchk: %s", db_strerror(ret));
		if (ret == DB_RUNRECOVERY && st_reopen(s) == 0)
			return 0;
		if (error_r != NULL)
			*error_r = db_strerror(ret);
		return STORE_ETEMP;
	}
	if (!(s->flags & STORE_OPEN_READONLY) &&
	    (ret = st_dedup_expire(s, error_r)) != 0)
		return ret;
	/*
	 * Due by time, or by the log written since the last checkpoint
	 * (Berkeley DB's kbyte test), so that a burst of big messages or an
	 * import neither fills the disk with log files nor leaves recovery
	 * that much log to replay.
	 */
	now = time(NULL);
	if ((uint64_t)(now - sh->last_checkpoint) >= s->checkpoint_interval) {
		sh->last_checkpoint = now;
		ret = s->env->txn_checkpoint(s->env, 0, 0, 0);
	} else if (s->checkpoint_kb != 0)
		ret = s->env->txn_checkpoint(s->env, s->checkpoint_kb, 0, 0);
	else
		return 0;
	if (ret != 0) {
		log_warnx("store: checkpoint: %s", db_strerror(ret));
		if (error_r != NULL)
			*error_r = db_strerror(ret);
		return STORE_ETEMP;
	}
	/* DB_LOG_AUTO_REMOVE drops logs no longer needed at checkpoints. */
	return 0;
}

/* ---- counters ---- */

int
st_counter_next(struct store *s, DB_TXN *txn, const char *name,
    uint32_t first, uint32_t *val_r)
{
	struct st_val v;
	uint8_t t[4];
	uint32_t val;
	int r;

	r = st_get(s, SDB_COUNTERS, txn, name, strlen(name), &v);
	if (r == STORE_ENOTFOUND)
		val = first;
	else if (r != 0)
		return r;
	else if (v.len != 4) {
		free(v.data);
		return st_fail(s, STORE_EDAMAGED, "damaged counter");
	} else
		val = be32_get(v.data);
	free(v.data);
	if (val == UINT32_MAX)
		return st_fail(s, STORE_ETEMP, "counter exhausted");
	be32_put(t, val + 1);
	r = st_put(s, SDB_COUNTERS, txn, name, strlen(name), t, 4, 0);
	if (r != 0)
		return r;
	*val_r = val;
	return 0;
}
