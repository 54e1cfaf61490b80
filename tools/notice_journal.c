/*
 * notice_journal.c - the append-only journal that makes govmail-notice
 * merge resumable.
 *
 * Runs in govmail-notice (the parent and its sending children share one
 * O_APPEND descriptor).  Trusts the journal file only as far as its
 * format: lines it cannot parse make open fail, a torn last line is cut.
 *
 * Format, one event per line, fields separated by one space:
 *   GOVMAIL-NOTICE-JOURNAL 1 <id> <input-hash-hex>
 *   S <row>                                     about to send row
 *   D <row> <status> <address> <message-id> <error...>   final outcome
 *   T <row> <address> <message-id> <error...>   temporary failure
 * Rows are 1-based data rows.  Fields that could hold spaces or line
 * breaks (address, error) have them replaced by '_' and ' ' respectively;
 * "-" stands for empty.
 *
 * Durability: every line is written at once (a killed process loses
 * nothing it wrote: the page cache keeps it); fdatasync() follows each
 * line, or, after notice_journal_set_sync(), every so many lines or
 * milliseconds and at notice_journal_sync() - so that only a machine crash
 * can lose the last lines, whose rows are then sent again with the same
 * Message-ID (the server drops such a duplicate submission).
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "buf.h"
#include "notice.h"
#include "strnum.h"
#include "xmalloc.h"

#define JOURNAL_MAGIC "GOVMAIL-NOTICE-JOURNAL 1 "

struct notice_journal {
	int fd;
	char id[NOTICE_JOURNAL_ID_LEN + 1];
	off_t read_off;		/* bytes replayed so far */
	struct notice_journal_row *rows;	/* index = row */
	size_t n_rows;
	unsigned int sync_rows;	/* 0: fdatasync after every line */
	unsigned int sync_ms;
	unsigned int pending;	/* lines written since the last sync */
	struct timespec first_pending;	/* when the oldest was written */
};

static uint64_t
elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - since->tv_sec) * 1000 +
	    (uint64_t)((now.tv_nsec - since->tv_nsec) / 1000000);
}

static const struct notice_journal_row row_new = { NOTICE_ROW_NEW, 0,
    NULL, NULL, NULL, NULL };

static struct notice_journal_row *
row_get(struct notice_journal *j, size_t row)
{
	size_t n;

	if (row >= j->n_rows) {
		n = row + 1 > j->n_rows * 2 ? row + 1 : j->n_rows * 2;
		j->rows = xreallocarray(j->rows, n, sizeof(*j->rows));
		memset(j->rows + j->n_rows, 0,
		    (n - j->n_rows) * sizeof(*j->rows));
		j->n_rows = n;
	}
	return &j->rows[row];
}

static void
row_set(struct notice_journal_row *r, const char *status,
    const char *address, const char *msgid, const char *error)
{
	free(r->status);
	free(r->address);
	free(r->message_id);
	free(r->error);
	r->status = xstrdup(status);
	r->address = xstrdup(strcmp(address, "-") == 0 ? "" : address);
	r->message_id = xstrdup(strcmp(msgid, "-") == 0 ? "" : msgid);
	r->error = xstrdup(error == NULL || strcmp(error, "-") == 0 ? "" :
	    error);
}

/* Split line into at most max space-separated fields (the last takes the
 * rest).  Returns the count. */
static size_t
split(char *line, char **f, size_t max)
{
	size_t n = 0;
	char *p = line, *sp;

	while (n < max) {
		f[n++] = p;
		if (n == max)
			break;
		sp = strchr(p, ' ');
		if (sp == NULL)
			break;
		*sp = '\0';
		p = sp + 1;
	}
	return n;
}

/* Apply one journal line (NUL-terminated, no LF). */
static int
journal_apply(struct notice_journal *j, char *line, size_t *done_r,
    const char **error_r)
{
	char *f[6];
	size_t n;
	uint64_t row;
	const char *e;
	struct notice_journal_row *r;

	n = split(line, f, 6);
	if (n < 2 || strlen(f[0]) != 1 ||
	    strnum_u64(f[1], 1, CSV_MAX_ROWS, &row, &e) == -1)
		goto bad;
	r = row_get(j, (size_t)row);
	switch (f[0][0]) {
	case 'S':
		if (n != 2)
			goto bad;
		if (r->state != NOTICE_ROW_DONE)
			r->state = NOTICE_ROW_STARTED;
		r->starts++;
		return 0;
	case 'D':
		if (n < 5)
			goto bad;
		if (r->state != NOTICE_ROW_DONE && done_r != NULL)
			(*done_r)++;
		r->state = NOTICE_ROW_DONE;
		row_set(r, f[2], f[3], f[4], n == 6 ? f[5] : NULL);
		return 0;
	case 'T':
		if (n < 4)
			goto bad;
		if (r->state == NOTICE_ROW_DONE)
			return 0;
		r->state = NOTICE_ROW_DEFERRED;
		row_set(r, "deferred", f[2], f[3], n >= 5 ? f[4] : NULL);
		if (n == 6) {
			/* the error had a space: rejoin what split cut */
			free(r->error);
			r->error = xasprintf("%s %s", f[4], f[5]);
		}
		return 0;
	}
bad:
	*error_r = "journal has a line it does not understand";
	return -1;
}

/* Replay complete lines from read_off on. */
static int
journal_replay(struct notice_journal *j, int cut_torn, size_t *done_r,
    const char **error_r)
{
	struct buf b, line;
	ssize_t r;
	size_t i, start = 0;
	uint8_t chunk[16384];
	off_t off = j->read_off;

	buf_init(&b, BUF_UNBOUNDED);
	buf_init(&line, NOTICE_JOURNAL_MAX_LINE);
	for (;;) {
		r = pread(j->fd, chunk, sizeof(chunk), off);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			*error_r = "cannot read the journal";
			goto fail;
		}
		if (r == 0)
			break;
		buf_append(&b, chunk, (size_t)r);
		off += r;
	}
	for (i = 0; i < b.len; i++) {
		if (b.data[i] != '\n')
			continue;
		buf_reset(&line);
		if (buf_append(&line, b.data + start, i - start) == -1) {
			*error_r = "journal line too long";
			goto fail;
		}
		if (j->read_off == 0 && start == 0) {
			/* The header was checked by the caller. */
		} else if (line.len == 0) {
			*error_r = "journal has an empty line";
			goto fail;
		} else if (journal_apply(j, (char *)line.data, done_r,
		    error_r) == -1)
			goto fail;
		start = i + 1;
	}
	if (start < b.len && cut_torn) {
		/* SECURITY/robustness: a crash mid-write left half a line;
		 * cut it so the next append starts a clean line. */
		if (ftruncate(j->fd, j->read_off + (off_t)start) == -1) {
			*error_r = "cannot cut the journal's torn last line";
			goto fail;
		}
	}
	j->read_off += (off_t)start;
	buf_free(&b);
	buf_free(&line);
	return 0;
fail:
	buf_free(&b);
	buf_free(&line);
	return -1;
}

static int
journal_write(struct notice_journal *j, const char *text,
    const char **error_r)
{
	size_t len = strlen(text), off = 0;
	ssize_t w;

	/* One write(): O_APPEND keeps concurrent writers' lines whole. */
	while (off < len) {
		w = write(j->fd, text + off, len - off);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			*error_r = "cannot write the journal";
			return -1;
		}
		off += (size_t)w;
	}
	if (j->pending++ == 0)
		clock_gettime(CLOCK_MONOTONIC, &j->first_pending);
	if (j->sync_rows == 0 || j->pending >= j->sync_rows ||
	    elapsed_ms(&j->first_pending) >= j->sync_ms)
		return notice_journal_sync(j, error_r);
	return 0;
}

void
notice_journal_set_sync(struct notice_journal *j, unsigned int rows,
    unsigned int ms)
{
	j->sync_rows = rows;
	j->sync_ms = ms;
}

int
notice_journal_sync(struct notice_journal *j, const char **error_r)
{
	if (j->pending == 0)
		return 0;
	if (fdatasync(j->fd) == -1) {
		*error_r = "cannot fsync the journal";
		return -1;
	}
	j->pending = 0;
	return 0;
}

unsigned int
notice_journal_unsynced(const struct notice_journal *j)
{
	return j->pending;
}

/* fsync the folder holding path, so that a new journal's name is
 * durable too. */
static int
journal_sync_dir(const char *path, const char **error_r)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, r;

	if (slash == NULL)
		dir = xstrdup(".");
	else if (slash == path)
		dir = xstrdup("/");
	else
		dir = xstrndup(path, (size_t)(slash - path));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd == -1) {
		*error_r = "cannot open the journal's folder";
		return -1;
	}
	r = fsync(fd);
	close(fd);
	if (r == -1) {
		*error_r = "cannot fsync the journal's folder";
		return -1;
	}
	return 0;
}

int
notice_journal_open(const char *path, const uint8_t hash[32],
    struct notice_journal **j_r, const char **error_r)
{
	struct notice_journal *j;
	char hex[65], head[256], *want;
	uint8_t rnd[NOTICE_JOURNAL_ID_LEN / 2];
	struct stat st;
	ssize_t r;
	size_t hl;

	j = xcalloc(1, sizeof(*j));
	j->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (j->fd == -1) {
		*error_r = "cannot open the journal";
		free(j);
		return -1;
	}
	sodium_bin2hex(hex, sizeof(hex), hash, 32);
	if (fstat(j->fd, &st) == -1) {
		*error_r = "cannot stat the journal";
		goto fail;
	}
	if (st.st_size > 0 && st.st_size < (off_t)(strlen(JOURNAL_MAGIC) +
	    NOTICE_JOURNAL_ID_LEN + 1 + 64 + 1)) {
		/* Shorter than a header: a crash while it was being written
		 * (nothing can have been sent yet) - start afresh. */
		r = pread(j->fd, head, sizeof(head) - 1, 0);
		if (r < 0 || memchr(head, '\n', (size_t)r) != NULL ||
		    strncmp(head, JOURNAL_MAGIC, (size_t)r <
		    strlen(JOURNAL_MAGIC) ? (size_t)r : strlen(JOURNAL_MAGIC))
		    != 0) {
			*error_r = "not a govmail-notice journal";
			goto fail;
		}
		if (ftruncate(j->fd, 0) == -1) {
			*error_r = "cannot reset the journal";
			goto fail;
		}
		st.st_size = 0;
	}
	if (st.st_size == 0) {
		randombytes_buf(rnd, sizeof(rnd));
		sodium_bin2hex(j->id, sizeof(j->id), rnd, sizeof(rnd));
		want = xasprintf("%s%s %s\n", JOURNAL_MAGIC, j->id, hex);
		r = journal_write(j, want, error_r);
		free(want);
		if (r == -1 || journal_sync_dir(path, error_r) == -1)
			goto fail;
		j->read_off = 0;
	} else {
		r = pread(j->fd, head, sizeof(head) - 1, 0);
		if (r < 0) {
			*error_r = "cannot read the journal";
			goto fail;
		}
		head[r] = '\0';
		hl = strlen(JOURNAL_MAGIC);
		if (strncmp(head, JOURNAL_MAGIC, hl) != 0 ||
		    (size_t)r < hl + NOTICE_JOURNAL_ID_LEN + 1 + 64 + 1 ||
		    head[hl + NOTICE_JOURNAL_ID_LEN] != ' ' ||
		    head[hl + NOTICE_JOURNAL_ID_LEN + 65] != '\n') {
			*error_r = "not a govmail-notice journal";
			goto fail;
		}
		memcpy(j->id, head + hl, NOTICE_JOURNAL_ID_LEN);
		j->id[NOTICE_JOURNAL_ID_LEN] = '\0';
		if (memcmp(head + hl + NOTICE_JOURNAL_ID_LEN + 1, hex, 64)
		    != 0) {
			*error_r = "the journal belongs to another CSV or "
			    "template";
			goto fail;
		}
	}
	if (journal_replay(j, 1, NULL, error_r) == -1)
		goto fail;
	*j_r = j;
	return 0;
fail:
	notice_journal_close(j);
	return -1;
}

void
notice_journal_close(struct notice_journal *j)
{
	size_t i;

	if (j == NULL)
		return;
	if (j->fd != -1)
		close(j->fd);
	for (i = 0; i < j->n_rows; i++) {
		free(j->rows[i].status);
		free(j->rows[i].address);
		free(j->rows[i].message_id);
		free(j->rows[i].error);
	}
	free(j->rows);
	free(j);
}

const char *
notice_journal_id(const struct notice_journal *j)
{
	return j->id;
}

/* A copy of s fit for one journal field: no spaces (rest = 0) or no line
 * breaks (rest = 1), never empty. */
static char *
field(const char *s, int rest)
{
	char *c, *p;

	if (s == NULL || s[0] == '\0')
		return xstrdup("-");
	c = xstrdup(s);
	for (p = c; *p != '\0'; p++)
		if (*p == '\r' || *p == '\n' || (!rest && (*p == ' ' ||
		    *p == '\t')))
			*p = rest ? ' ' : '_';
	if (strlen(c) > NOTICE_JOURNAL_MAX_LINE / 4)
		c[NOTICE_JOURNAL_MAX_LINE / 4] = '\0';
	return c;
}

static int
journal_event(struct notice_journal *j, char kind, size_t row,
    const char *status, const char *address, const char *msgid,
    const char *error, const char **error_r)
{
	char *a = field(address, 0), *m = field(msgid, 0), *e = field(error,
	    1), *line;
	int r;

	if (kind == 'D')
		line = xasprintf("D %zu %s %s %s %s\n", row, status, a, m, e);
	else if (kind == 'T')
		line = xasprintf("T %zu %s %s %s\n", row, a, m, e);
	else
		line = xasprintf("S %zu\n", row);
	r = journal_write(j, line, error_r);
	/* Catch up: our own line and whatever others appended before it. */
	if (r == 0)
		r = journal_replay(j, 0, NULL, error_r);
	free(line);
	free(a);
	free(m);
	free(e);
	return r;
}

int
notice_journal_start(struct notice_journal *j, size_t row,
    const char **error_r)
{
	return journal_event(j, 'S', row, NULL, NULL, NULL, NULL, error_r);
}

int
notice_journal_done(struct notice_journal *j, size_t row,
    const char *status, const char *address, const char *message_id,
    const char *error, const char **error_r)
{
	if (status == NULL || status[0] == '\0' || strchr(status, ' ')) {
		*error_r = "bad journal status";
		return -1;
	}
	return journal_event(j, 'D', row, status, address, message_id,
	    error, error_r);
}

int
notice_journal_defer(struct notice_journal *j, size_t row,
    const char *address, const char *message_id, const char *error,
    const char **error_r)
{
	return journal_event(j, 'T', row, NULL, address, message_id, error,
	    error_r);
}

int
notice_journal_refresh(struct notice_journal *j, size_t *new_done_r,
    const char **error_r)
{
	if (new_done_r != NULL)
		*new_done_r = 0;
	return journal_replay(j, 0, new_done_r, error_r);
}

const struct notice_journal_row *
notice_journal_row(const struct notice_journal *j, size_t row)
{
	if (row >= j->n_rows)
		return &row_new;
	return &j->rows[row];
}
