/*
 * audit.c - the CA's hash-chained audit log.
 *
 * Runs in govmail-ca (every act appends; `audit verify` reads).  One record
 * per line:
 *
 *     SEQ TIME EVENT FIELDS... HASH
 *
 * where HASH is the hex BLAKE2b-256 (libsodium crypto_generichash) of the
 * previous record's hash (32 zero bytes for the first) followed by the
 * line's text before " HASH".  Changing, removing or reordering a record
 * breaks the chain or the sequence at that position.  audit.head beside the
 * log holds the last SEQ and HASH, so records cut from the end are noticed
 * too.  Appends are serialised with flock() and fsynced.
 *
 * Trusts nothing in the file when verifying.
 */
#include "autoconf.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "buf.h"
#include "ca_priv.h"
#include "strnum.h"
#include "xmalloc.h"

#define AUDIT_HASH_LEN 32
#define AUDIT_HASH_HEX (2 * AUDIT_HASH_LEN)

static void
audit_hash(const uint8_t prev[AUDIT_HASH_LEN], const char *text, size_t len,
    uint8_t out[AUDIT_HASH_LEN])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, AUDIT_HASH_LEN);
	crypto_generichash_update(&st, prev, AUDIT_HASH_LEN);
	crypto_generichash_update(&st, (const uint8_t *)text, len);
	crypto_generichash_final(&st, out, AUDIT_HASH_LEN);
}

static int
hex_decode(const char *hex, size_t hlen, uint8_t *out, size_t olen)
{
	size_t bin_len;

	if (hlen != 2 * olen)
		return -1;
	if (sodium_hex2bin(out, olen, hex, hlen, NULL, &bin_len, NULL) != 0 ||
	    bin_len != olen)
		return -1;
	return 0;
}

/*
 * Split a line (without newline) into seq, the hashed text and the hash.
 * Returns 0 or -1 if malformed.
 */
static int
audit_parse(const char *line, size_t len, uint64_t *seq_r,
    size_t *text_len_r, uint8_t hash[AUDIT_HASH_LEN])
{
	const char *sp, *sp2;
	char num[24];
	const char *err;

	if (len < AUDIT_HASH_HEX + 6 || line[len - AUDIT_HASH_HEX - 1] != ' ')
		return -1;
	if (hex_decode(line + len - AUDIT_HASH_HEX, AUDIT_HASH_HEX, hash,
	    AUDIT_HASH_LEN) == -1)
		return -1;
	if ((sp = memchr(line, ' ', len)) == NULL ||
	    (size_t)(sp - line) >= sizeof(num))
		return -1;
	memcpy(num, line, (size_t)(sp - line));
	num[sp - line] = '\0';
	if (strnum_u64(num, 1, UINT64_MAX, seq_r, &err) == -1)
		return -1;
	sp2 = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line));
	if (sp2 == NULL)
		return -1;
	*text_len_r = len - AUDIT_HASH_HEX - 1;
	return 0;
}

/* Last line of the open file fd: its seq and hash (seq 0 if empty). */
static int
audit_tail(int fd, uint64_t *seq_r, uint8_t hash[AUDIT_HASH_LEN])
{
	char buf[GOVCA_AUDIT_LINE_MAX + 128];
	struct stat st;
	off_t start;
	ssize_t n;
	size_t tl, end;
	char *nl;

	*seq_r = 0;
	memset(hash, 0, AUDIT_HASH_LEN);
	if (fstat(fd, &st) == -1)
		return -1;
	if (st.st_size == 0)
		return 0;
	start = st.st_size > (off_t)sizeof(buf) - 1 ?
	    st.st_size - (off_t)sizeof(buf) + 1 : 0;
	n = pread(fd, buf, sizeof(buf) - 1, start);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	end = (size_t)n;
	if (buf[end - 1] != '\n')
		return -1;	/* a torn last line: refuse to chain onto it */
	buf[--end] = '\0';
	nl = memrchr(buf, '\n', end);
	nl = nl == NULL ? buf : nl + 1;
	return audit_parse(nl, end - (size_t)(nl - buf), seq_r, &tl, hash);
}

int
govca_audit_append(const char *path, const char *event, const char *fields,
    const char **error_r)
{
	return ca_audit_append(path, event, fields, 1, error_r);
}

/* Write the head file: the last durable record's seq and hash. */
static int
audit_write_head(const char *path, uint64_t seq,
    const uint8_t hash[AUDIT_HASH_LEN], const char **error_r)
{
	char hex[AUDIT_HASH_HEX + 1], line[AUDIT_HASH_HEX + 32], *head_path;
	int ret, n;

	sodium_bin2hex(hex, sizeof(hex), hash, AUDIT_HASH_LEN);
	n = snprintf(line, sizeof(line), "%" PRIu64 " %s\n", seq, hex);
	head_path = xasprintf("%s.head", path);
	/* Written after the fsync: the head is never ahead of the durable
	 * log (a racing appender may leave it behind, which is harmless),
	 * so it needs no fsync of its own. */
	ret = ca_file_write_ex(head_path, line, (size_t)n, 0600, 0);
	free(head_path);
	if (ret == -1)
		*error_r = "audit: cannot write the head file";
	return ret;
}

/* Make every record appended so far durable (after non-durable appends). */
int
ca_audit_sync(const char *path, const char **error_r)
{
	uint8_t hash[AUDIT_HASH_LEN];
	uint64_t seq;
	int fd, ret = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		*error_r = "audit: cannot open the log";
		return -1;
	}
	/* The tail read under the lock, then the fsync: the head names only
	 * records written before the fsync. */
	if (flock(fd, LOCK_EX) == -1 || audit_tail(fd, &seq, hash) == -1) {
		*error_r = "audit: cannot read the last record";
		goto out;
	}
	flock(fd, LOCK_UN);
	if (fsync(fd) == -1) {
		*error_r = "audit: cannot fsync the log";
		goto out;
	}
	ret = seq > 0 ? audit_write_head(path, seq, hash, error_r) : 0;
out:
	close(fd);
	return ret;
}

/*
 * Append one record; with durable, return only after it is on disk (and
 * update the head), else leave that to ca_audit_sync().
 */
int
ca_audit_append(const char *path, const char *event, const char *fields,
    int durable, const char **error_r)
{
	uint8_t prev[AUDIT_HASH_LEN], hash[AUDIT_HASH_LEN];
	char hex[AUDIT_HASH_HEX + 1];
	struct buf line;
	uint64_t seq;
	int fd, ret = -1;

	if (strpbrk(event, " \r\n") != NULL ||
	    (fields != NULL && strpbrk(fields, "\r\n") != NULL)) {
		*error_r = "audit: event or fields hold a line break";
		return -1;
	}
	if ((fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC,
	    0600)) == -1) {
		*error_r = "audit: cannot open the log";
		return -1;
	}
	if (flock(fd, LOCK_EX) == -1) {
		close(fd);
		*error_r = "audit: cannot lock the log";
		return -1;
	}
	buf_init(&line, GOVCA_AUDIT_LINE_MAX + AUDIT_HASH_HEX + 2);
	if (audit_tail(fd, &seq, prev) == -1) {
		*error_r = "audit: the last record is damaged; run "
		    "`govmail-ca audit verify`";
		goto out;
	}
	if (buf_printf(&line, "%" PRIu64 " %lld %s %s", seq + 1,
	    (long long)time(NULL), event,
	    fields != NULL && fields[0] != '\0' ? fields : "-") == -1 ||
	    line.len > GOVCA_AUDIT_LINE_MAX) {
		*error_r = "audit: record too long";
		goto out;
	}
	audit_hash(prev, buf_str(&line), line.len, hash);
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	buf_printf(&line, " %s\n", hex);
	if (write(fd, line.data, line.len) != (ssize_t)line.len) {
		*error_r = "audit: cannot write the log";
		goto out;
	}
	/*
	 * The next appender chains onto our line as soon as it is written;
	 * the fsync happens outside the lock so that concurrent appenders'
	 * fsyncs overlap (a group commit), and we return only after it.
	 */
	flock(fd, LOCK_UN);
	if (durable) {
		if (fsync(fd) == -1) {
			*error_r = "audit: cannot fsync the log";
			goto out;
		}
		if (audit_write_head(path, seq + 1, hash, error_r) == -1)
			goto out;
	}
	ret = 0;
out:
	buf_free(&line);
	flock(fd, LOCK_UN);
	close(fd);
	return ret;
}

int
govca_audit(struct govca *ca, const char *event, const char *fields,
    const char **error_r)
{
	char *path = ca_path(ca, "audit.log");
	int ret;

	ret = ca_audit_append(path, event, fields, !ca->batch, error_r);
	free(path);
	if (ret == -1)
		*error_r = ca_err(ca, "%s", *error_r);
	return ret;
}

static void
report_problem(void (*report)(uint64_t, const char *, void *), void *ctx,
    uint64_t pos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
report_problem(void (*report)(uint64_t, const char *, void *), void *ctx,
    uint64_t pos, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (report != NULL)
		report(pos, msg, ctx);
}

int
govca_audit_verify(const char *path,
    void (*report)(uint64_t position, const char *problem, void *ctx),
    void *ctx, uint64_t *records_r, const char **error_r)
{
	uint8_t prev[AUDIT_HASH_LEN], hash[AUDIT_HASH_LEN], want[AUDIT_HASH_LEN];
	uint64_t pos = 0, seq, expect = 1, head_seq = 0, problems = 0;
	char *line = NULL, *head_path, hb[256];
	size_t cap = 0, tl;
	ssize_t n;
	FILE *f, *hf;
	int have_head = 0;

	*records_r = 0;
	if ((f = fopen(path, "r")) == NULL) {
		*error_r = "cannot open the audit log";
		return -1;
	}
	memset(prev, 0, sizeof(prev));
	while ((n = getline(&line, &cap, f)) != -1) {
		pos++;
		if (n == 0 || line[n - 1] != '\n') {
			report_problem(report, ctx, pos,
			    "malformed record (torn last line)");
			problems++;
			break;
		}
		line[--n] = '\0';
		if ((size_t)n > GOVCA_AUDIT_LINE_MAX + AUDIT_HASH_HEX + 1 ||
		    audit_parse(line, (size_t)n, &seq, &tl, hash) == -1) {
			report_problem(report, ctx, pos, "malformed record");
			problems++;
			memset(prev, 0xff, sizeof(prev));
			expect++;
			continue;
		}
		if (seq > expect) {
			report_problem(report, ctx, pos,
			    "record %" PRIu64 " where %" PRIu64 " was expected:"
			    " records removed or reordered", seq, expect);
			problems++;
		} else if (seq < expect) {
			report_problem(report, ctx, pos,
			    "record %" PRIu64 " after %" PRIu64 ": reordered "
			    "or duplicated", seq, expect - 1);
			problems++;
		} else {
			audit_hash(prev, line, tl, want);
			if (sodium_memcmp(want, hash, AUDIT_HASH_LEN) != 0) {
				report_problem(report, ctx, pos,
				    "record %" PRIu64 " altered (hash chain "
				    "broken)", seq);
				problems++;
			}
		}
		/* Resynchronise on the highest record so far, so that one
		 * problem does not hide (or fake) later ones. */
		if (seq >= expect) {
			memcpy(prev, hash, sizeof(prev));
			expect = seq + 1;
		}
		(*records_r)++;
	}
	free(line);
	fclose(f);

	head_path = xasprintf("%s.head", path);
	if ((hf = fopen(head_path, "r")) != NULL) {
		if (fgets(hb, sizeof(hb), hf) != NULL) {
			char *sp = strchr(hb, ' ');
			const char *err;

			if (sp != NULL) {
				*sp = '\0';
				if (strnum_u64(hb, 1, UINT64_MAX, &head_seq,
				    &err) == 0)
					have_head = 1;
			}
		}
		fclose(hf);
	}
	free(head_path);
	if (have_head && head_seq >= expect) {
		report_problem(report, ctx, pos + 1,
		    "records %" PRIu64 "..%" PRIu64 " removed from the end",
		    expect, head_seq);
		problems++;
	}
	if (problems > 0) {
		*error_r = "the audit log is damaged";
		return -1;
	}
	return 0;
}
