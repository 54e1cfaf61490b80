/*
 * cmd_append.c - APPEND and MULTIAPPEND (RFC 3502) with UIDPLUS APPENDUID,
 * APPENDLIMIT (RFC 7889) and quota; and the decision on each APPEND
 * literal as it is announced (imap_append_literal).
 *
 * govmail-imapd workers.  The client's literal sizes are untrusted: each
 * is checked against APPENDLIMIT and the account's quota BEFORE "+" is
 * sent.  A literal over IMAPD_APPEND_INLINE_MAX (or past
 * IMAPD_APPEND_INLINE_TOTAL_MAX for the command) never sits in memory: the
 * parser writes its bytes, as they arrive, to an unlinked file (O_TMPFILE,
 * else mkstemp + unlink) in the store's folder, one per command whatever
 * the number of messages, and the command hands the store an mmap of each
 * message's range of that file (a memfd instead when the store encrypts
 * at rest).  So a 50 MB APPEND costs the worker neither
 * 50 MB of heap nor its other clients' turn while the bytes trickle in.
 *
 * MULTIAPPEND is all or nothing by compensation: the messages are appended
 * one by one (store_append, one transaction each); if one fails, those
 * already added are flagged \Deleted and expunged again before the NO, so
 * the mailbox ends with none of them (their UIDs are spent, and a QRESYNC
 * client may see them VANISHED).
 *
 * An APPEND with a spooled message (one over IMAPD_APPEND_INLINE_MAX) is
 * stored on a helper thread with that thread's own store handle: hashing,
 * analysing and writing tens of megabytes took the loop from every other
 * session of the worker.  The job keeps its own descriptor of the spool
 * and copies of everything else, since the command's arguments die when
 * the handler returns.  The session waits (busy) for the job; the mailbox
 * learns of the new messages as of any other session's change.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>


#include "buf.h"
#include "imapd.h"
#include "log.h"
#include "tpool.h"
#include "xmalloc.h"

/* ---- literal decisions ---- */

/*
 * An unlinked read-write file in the spool folder, or -1 (errno set).
 * SECURITY: with encryption at rest ([store] key_file) a message must not
 * reach the disk in clear, not even in an unlinked file whose blocks
 * linger: the spool is then a memfd (memory the kernel can swap, not this
 * process's heap), and never a file.
 */
static int
spool_open(struct imap_worker *w)
{
	char path[4096];
	int fd;

	if (w->spool_memory)
		return memfd_create("govmail-append", MFD_CLOEXEC);
#ifdef O_TMPFILE
	fd = open(w->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
#endif
	if (snprintf(path, sizeof(path), "%s/.imapd-append-XXXXXX",
	    w->spool_dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	(void)unlink(path);
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

void
imap_append_release(struct imap_session *s)
{
	if (s->spool_fd >= 0)
		(void)close(s->spool_fd);
	s->spool_fd = -1;
	s->spool_len = 0;
	s->append_bytes = 0;
	s->append_inline = 0;
	s->append_count = 0;
}

/* Why the literal cannot be accepted, or NULL. */
static const char *
literal_refusal(struct imap_session *s, uint64_t size)
{
	struct store_account *a;
	const char *err, *why = NULL;

	if (size > s->w->append_max)
		return "[TOOBIG] Message too large (APPENDLIMIT)";
	if (s->append_count >= IMAPD_MULTIAPPEND_MAX)
		return "[LIMIT] Too many messages in one APPEND";
	/*
	 * The store checks quota again in the append's transaction; this
	 * early check only spares the client an upload bound to fail.
	 */
	if (store_account_get(s->w->store, s->user, &a, &err) != 0)
		return NULL;
	if (a->used_bytes + s->append_bytes + size > a->quota_bytes ||
	    a->used_messages + s->append_count + 1 > a->quota_messages)
		why = "[OVERQUOTA] Quota exceeded";
	store_account_free(a);
	return why;
}

void
imap_append_literal(struct imap_session *s)
{
	struct imap_parser *p = s->parser;
	uint64_t size = imap_parser_literal_size(p);
	int sync = imap_parser_literal_sync(p);
	const char *why;

	why = literal_refusal(s, size);
	if (why == NULL && size <= IMAPD_APPEND_INLINE_MAX &&
	    s->append_inline + size <= IMAPD_APPEND_INLINE_TOTAL_MAX &&
	    imap_parser_literal_inline(p) == 0) {
		s->append_inline += size;
		goto accepted;
	}
	if (why == NULL && s->spool_fd < 0) {
		s->spool_fd = spool_open(s->w);
		if (s->spool_fd < 0) {
			log_warn("s=%s event=append-spool-failed", s->sid);
			why = "[UNAVAILABLE] Cannot store the message now, "
			    "try again later";
		}
	}
	if (why == NULL) {
		imap_parser_literal_spool(p, s->spool_fd, s->spool_len);
		s->spool_len += size;
		goto accepted;
	}
	log_info("s=%s event=append-refused size=%llu sync=%d", s->sid,
	    (unsigned long long)size, sync);
	if (!sync) {
		/* RFC 7888: the bytes come anyway; read and drop them. */
		imap_parser_literal_discard(p, why);
		return;
	}
	(void)str_copy(s->tag, sizeof(s->tag), imap_parser_tag(p));
	imap_printf(s, "%s NO %s\r\n", s->tag, why);
	imap_parser_reset(p);
	imap_append_release(s);
	return;

accepted:
	s->append_bytes += size;
	s->append_count++;
	if (sync)
		imap_printf(s, "+ Ready for literal data\r\n");
}

/* ---- APPEND ---- */

struct append_msg {
	uint32_t flags;
	const char *kw[IMAPD_FLAGS_MAX];
	size_t nkw;
	int64_t date;
	const struct imap_arg *lit;
};

/* Parse "[flags] [date-time] literal" at args[*i]; -1 with *error_r. */
static int
parse_message(const struct imap_arg *args, size_t n, size_t *i,
    struct append_msg *m, const char **error_r)
{
	int32_t tz;

	memset(m, 0, sizeof(*m));
	if (*i < n && args[*i].type == IMAP_ARG_LIST) {
		if (imap_parse_flags(&args[*i], &m->flags, m->kw, &m->nkw,
		    error_r) < 0)
			return -1;
		(*i)++;
	}
	if (*i < n && args[*i].type == IMAP_ARG_STRING) {
		if (imap_parse_datetime(args[*i].str, &m->date, &tz) < 0) {
			*error_r = "Invalid date-time";
			return -1;
		}
		(*i)++;
	}
	if (*i >= n || args[*i].type != IMAP_ARG_LITERAL) {
		*error_r = "APPEND needs the message as a literal";
		return -1;
	}
	m->lit = &args[(*i)++];
	return 0;
}

/* One message to store: its bytes in memory, or a range of a spool. */
struct append_item {
	uint32_t flags;
	const char *kw[IMAPD_FLAGS_MAX];
	size_t nkw;
	int64_t date;
	const uint8_t *data;		/* NULL: spooled */
	int fd;				/* the spool, when data is NULL */
	uint64_t off, len;
};

static void
append_item_set(struct append_item *it, const struct append_msg *m)
{
	memset(it, 0, sizeof(*it));
	it->flags = m->flags;
	memcpy(it->kw, m->kw, m->nkw * sizeof(m->kw[0]));
	it->nkw = m->nkw;
	it->date = m->date;
	it->len = m->lit->len;
	it->fd = -1;
	if (m->lit->spooled) {
		it->fd = m->lit->fd;
		it->off = m->lit->off;
	} else
		it->data = (const uint8_t *)m->lit->str;
}

/* store_append of one message, from memory or an mmap of its spool. */
static int
append_one(struct store *st, const char *sid, const char *user,
    const char *name, const struct append_item *it, uint32_t *validity_r,
    uint32_t *uid_r, const char **error_r)
{
	const uint8_t *data = it->data;
	void *map = NULL;
	size_t skew = 0;
	int rc;

	if (data == NULL) {
		/* mmap offsets are page-aligned; the literal may not be. */
		skew = (size_t)(it->off % (uint64_t)sysconf(_SC_PAGESIZE));
		map = mmap(NULL, it->len + skew, PROT_READ, MAP_PRIVATE,
		    it->fd, (off_t)(it->off - skew));
		if (map == MAP_FAILED) {
			log_warn("s=%s event=append-mmap-failed", sid);
			*error_r = "cannot map the spooled message";
			return STORE_ETEMP;
		}
		(void)madvise(map, it->len + skew, MADV_SEQUENTIAL);
		data = (const uint8_t *)map + skew;
	}
	rc = store_append(st, user, name, data, it->len, it->flags, it->kw,
	    it->nkw, it->date, validity_r, uid_r, error_r);
	if (map != NULL)
		(void)munmap(map, it->len + skew);
	return rc;
}

/* Take back the messages of a failed MULTIAPPEND (see the top). */
static void
append_rollback(struct store *st, const char *sid, const char *user,
    const char *name, const uint32_t *uids, size_t n)
{
	struct store_mailbox_info info;
	struct store_uid_range *r;
	const char *err;
	size_t i;

	if (n == 0)
		return;
	r = xreallocarray(NULL, n, sizeof(*r));
	for (i = 0; i < n; i++)
		r[i].lo = r[i].hi = uids[i];
	if (store_mailbox_get(st, user, name, &info, &err) != 0 ||
	    store_flags_update(st, info.id, r, n, STORE_FLAGS_ADD,
	    STORE_FLAG_DELETED, NULL, 0, 0, NULL, NULL, NULL, &err) != 0 ||
	    store_expunge(st, info.id, r, n, NULL, NULL, &err) != 0)
		log_warnx("s=%s event=multiappend-rollback-failed n=%zu", sid,
		    n);
	free(r);
}

/*
 * Every message in order; on a failure the ones before it are taken back.
 * 0, or the failure's code with *error_r (copied into errbuf).
 */
static int
append_all(struct store *st, const char *sid, const char *user,
    const char *name, const struct append_item *items, size_t n,
    uint32_t *validity_r, uint32_t *uids, size_t *done_r, char *errbuf,
    size_t errlen, const char **error_r)
{
	const char *err = NULL;
	size_t k;
	int rc = 0;

	for (k = 0; k < n; k++) {
		rc = append_one(st, sid, user, name, &items[k], validity_r,
		    &uids[k], &err);
		if (rc < 0)
			break;
	}
	*done_r = k;
	*error_r = NULL;
	if (rc < 0) {
		append_rollback(st, sid, user, name, uids, k);
		if (err != NULL) {
			(void)str_copy(errbuf, errlen, err);
			*error_r = errbuf;
		}
	}
	return rc;
}

/* The reply to a finished APPEND. */
static void
append_reply(struct imap_session *s, int rc, const char *err,
    uint32_t validity, const uint32_t *uids, size_t n)
{
	struct buf set;

	if (rc < 0) {
		if (rc == STORE_ENOTFOUND)
			imap_tagged(s, "NO", "[TRYCREATE] No such mailbox");
		else
			imap_tagged_store_error(s, rc, err);
		return;
	}
	buf_init(&set, BUF_UNBOUNDED);
	imap_append_uid_set(&set, uids, n);
	imap_tagged(s, "OK", "[APPENDUID %u %s] APPEND completed", validity,
	    imap_bstr(&set));
	buf_free(&set);
}

/* ---- the helper-thread path ---- */

struct imap_append_job {
	struct imap_session *s;		/* NULL once the session closed */
	const struct config *cfg;
	char sid[sizeof(((struct imap_session *)0)->sid)];
	char *user;
	char name[STORE_MAILBOX_NAME_MAX + 1];
	int spool_fd;			/* our own descriptor of the spool */
	struct append_item *items;
	char **strings;			/* copies: inline bytes, keywords */
	size_t n, nstrings;
	uint32_t *uids, validity;
	size_t done;
	int rc;
	const char *err;
	char errbuf[256];
};

static void
append_job_free(struct imap_append_job *j)
{
	size_t i;

	for (i = 0; i < j->nstrings; i++)
		free(j->strings[i]);
	free(j->strings);
	free(j->items);
	free(j->uids);
	free(j->user);
	if (j->spool_fd >= 0)
		(void)close(j->spool_fd);
	free(j);
}

static void *
append_job_keep(struct imap_append_job *j, const void *p, size_t len)
{
	char *c = xmalloc(len + 1);

	memcpy(c, p, len);
	c[len] = '\0';
	j->strings[j->nstrings++] = c;
	return c;
}

static void
append_job_work(void *arg)
{
	struct imap_append_job *j = arg;
	struct store *st = imap_helper_store(j->cfg);

	if (st == NULL) {
		j->rc = STORE_ETEMP;
		j->err = "store unavailable";
		return;
	}
	j->rc = append_all(st, j->sid, j->user, j->name, j->items, j->n,
	    &j->validity, j->uids, &j->done, j->errbuf, sizeof(j->errbuf),
	    &j->err);
}

static void
append_job_done(void *arg)
{
	struct imap_append_job *j = arg;
	struct imap_session *s = j->s;

	if (s != NULL) {
		s->busy = 0;
		s->append_job = NULL;
		append_reply(s, j->rc, j->err, j->validity, j->uids, j->n);
		imap_command_finished(s);
	}
	append_job_free(j);
}

void
imap_append_detach(struct imap_session *s)
{
	if (s->append_job != NULL) {
		s->append_job->s = NULL;
		s->append_job = NULL;
	}
}

/* Hand the command to a helper; IMAP_CMD_DONE if it could not. */
static enum imap_cmd_result
append_async(struct imap_session *s, const char *name,
    const struct append_item *items, size_t n)
{
	struct imap_append_job *j;
	const char *err = NULL;
	size_t k, i;

	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->cfg = s->w->cfg;
	(void)str_copy(j->sid, sizeof(j->sid), s->sid);
	j->user = xstrdup(s->user);
	(void)str_copy(j->name, sizeof(j->name), name);
	j->spool_fd = fcntl(s->spool_fd, F_DUPFD_CLOEXEC, 0);
	if (j->spool_fd < 0) {
		log_warn("s=%s event=append-spool-dup-failed", s->sid);
		append_job_free(j);
		imap_tagged(s, "NO", "[UNAVAILABLE] Cannot store the message "
		    "now, try again later");
		return IMAP_CMD_DONE;
	}
	j->n = n;
	j->items = xreallocarray(NULL, n, sizeof(*j->items));
	j->uids = xreallocarray(NULL, n, sizeof(*j->uids));
	j->strings = xreallocarray(NULL, n * (IMAPD_FLAGS_MAX + 1),
	    sizeof(*j->strings));
	for (k = 0; k < n; k++) {
		j->items[k] = items[k];
		for (i = 0; i < items[k].nkw; i++)
			j->items[k].kw[i] = append_job_keep(j, items[k].kw[i],
			    strlen(items[k].kw[i]));
		if (items[k].data != NULL)
			j->items[k].data = append_job_keep(j, items[k].data,
			    items[k].len);
		else
			j->items[k].fd = j->spool_fd;
	}
	if (tpool_submit(s->w->pool, append_job_work, append_job_done, j,
	    &err) < 0) {
		append_job_free(j);
		imap_tagged(s, "NO", "[UNAVAILABLE] Server busy, try again "
		    "later");
		return IMAP_CMD_DONE;
	}
	s->append_job = j;
	s->busy = 1;
	return IMAP_CMD_MORE;
}

enum imap_cmd_result
cmd_append(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	char name[STORE_MAILBOX_NAME_MAX + 1], errbuf[256];
	struct append_msg *msgs = NULL;
	struct append_item *items = NULL;
	uint32_t *uids = NULL, validity = 0;
	size_t nmsgs = 0, i = 1, k, done;
	const char *err;
	enum imap_cmd_result res = IMAP_CMD_DONE;
	int rc = 0, spooled = 0;

	(void)uid;
	if (n < 2) {
		imap_tagged(s, "BAD", "APPEND needs a mailbox and a message");
		return IMAP_CMD_DONE;
	}
	msgs = xreallocarray(NULL, n, sizeof(*msgs));
	while (i < n) {
		if (nmsgs >= IMAPD_MULTIAPPEND_MAX) {
			imap_tagged(s, "NO", "[LIMIT] Too many messages");
			goto out;
		}
		if (parse_message(args, n, &i, &msgs[nmsgs], &err) < 0) {
			imap_tagged(s, "BAD", "%s", err);
			goto out;
		}
		nmsgs++;
	}
	for (k = 0; k < nmsgs; k++) {
		if (msgs[k].lit->len == 0) {
			imap_tagged(s, "NO", "Empty message");
			goto out;
		}
	}
	if (imap_mailbox_name(s, &args[0], name, &err) < 0) {
		imap_tagged(s, "NO", "[CANNOT] %s", err);
		goto out;
	}
	items = xreallocarray(NULL, nmsgs, sizeof(*items));
	for (k = 0; k < nmsgs; k++) {
		append_item_set(&items[k], &msgs[k]);
		spooled |= items[k].data == NULL;
	}
	/* Large messages: on a helper thread (see the top). */
	if (spooled && s->spool_fd >= 0) {
		res = append_async(s, name, items, nmsgs);
		goto out;
	}
	uids = xreallocarray(NULL, nmsgs, sizeof(*uids));
	rc = append_all(s->w->store, s->sid, s->user, name, items, nmsgs,
	    &validity, uids, &done, errbuf, sizeof(errbuf), &err);
	if (rc == 0 || done > 0)
		imap_own_write(s);
	append_reply(s, rc, err, validity, uids, nmsgs);
out:
	free(uids);
	free(items);
	free(msgs);
	return res;
}
