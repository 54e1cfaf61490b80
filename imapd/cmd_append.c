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

/* store_append of one message, from memory or an mmap of its spool. */
static int
append_one(struct imap_session *s, const char *name,
    const struct append_msg *m, uint32_t *validity_r, uint32_t *uid_r,
    const char **error_r)
{
	const uint8_t *data = (const uint8_t *)m->lit->str;
	void *map = NULL;
	int rc;

	size_t skew = 0;

	if (m->lit->spooled) {
		/* mmap offsets are page-aligned; the literal may not be. */
		skew = (size_t)(m->lit->off % (uint64_t)sysconf(_SC_PAGESIZE));
		map = mmap(NULL, m->lit->len + skew, PROT_READ, MAP_PRIVATE,
		    m->lit->fd, (off_t)(m->lit->off - skew));
		if (map == MAP_FAILED) {
			log_warn("s=%s event=append-mmap-failed", s->sid);
			*error_r = "cannot map the spooled message";
			return STORE_ETEMP;
		}
		(void)madvise(map, m->lit->len + skew, MADV_SEQUENTIAL);
		data = (const uint8_t *)map + skew;
	}
	rc = store_append(s->w->store, s->user, name, data, m->lit->len,
	    m->flags, m->kw, m->nkw, m->date, validity_r, uid_r, error_r);
	if (map != NULL)
		(void)munmap(map, m->lit->len + skew);
	return rc;
}

/* Take back the messages of a failed MULTIAPPEND (see the top). */
static void
append_rollback(struct imap_session *s, const char *name,
    const uint32_t *uids, size_t n)
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
	if (store_mailbox_get(s->w->store, s->user, name, &info, &err) != 0 ||
	    store_flags_update(s->w->store, info.id, r, n, STORE_FLAGS_ADD,
	    STORE_FLAG_DELETED, NULL, 0, 0, NULL, NULL, NULL, &err) != 0 ||
	    store_expunge(s->w->store, info.id, r, n, NULL, NULL, &err) != 0)
		log_warnx("s=%s event=multiappend-rollback-failed n=%zu", s->sid,
		    n);
	free(r);
}

enum imap_cmd_result
cmd_append(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	char name[STORE_MAILBOX_NAME_MAX + 1];
	struct append_msg *msgs = NULL;
	uint32_t *uids = NULL, validity = 0;
	size_t nmsgs = 0, i = 1, k;
	const char *err;
	struct buf set;
	int rc = 0;

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
	uids = xreallocarray(NULL, nmsgs, sizeof(*uids));
	for (k = 0; k < nmsgs; k++) {
		rc = append_one(s, name, &msgs[k], &validity, &uids[k], &err);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		append_rollback(s, name, uids, k);
		if (k > 0)
			imap_own_write(s);
		if (rc == STORE_ENOTFOUND)
			imap_tagged(s, "NO", "[TRYCREATE] No such mailbox");
		else
			imap_tagged_store_error(s, rc, err);
		goto out;
	}
	imap_own_write(s);
	buf_init(&set, BUF_UNBOUNDED);
	imap_append_uid_set(&set, uids, nmsgs);
	imap_tagged(s, "OK", "[APPENDUID %u %s] APPEND completed", validity,
	    imap_bstr(&set));
	buf_free(&set);
out:
	free(uids);
	free(msgs);
	return IMAP_CMD_DONE;
}
