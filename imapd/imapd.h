/*
 * imapd.h - govmail-imapd's internal interfaces: the worker, the session,
 * the command table and the reply helpers shared by the cmd_*.c files.
 *
 * govmail-imapd workers (single-threaded libevent loops; password checks,
 * log flushes, store upkeep and large APPENDs run on helper threads, each
 * with its own store handle or store_sync).  Client input is untrusted and
 * reaches the handlers only through imap_parser.
 *
 * Command handlers get the arguments after the tag and command name (and
 * after "UID") and return IMAP_CMD_DONE (the tagged reply is queued) or
 * IMAP_CMD_MORE (the handler set s->cont and will finish later, from
 * on_drain or a helper thread's completion; input stays paused until then).
 * Argument pointers are valid only during the call: a resumable handler
 * copies what it needs.
 */
#ifndef GOVMAIL_IMAPD_H
#define GOVMAIL_IMAPD_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "daemon.h"
#include "imap_parser.h"
#include "mailbox.h"

struct config;
struct conn;
struct event;
struct event_base;
struct sasl_ratelimit;
struct sasl_session;
struct store_watch;
struct imap_append_job;
struct tpool;

/* Output queued before a resumable command waits for on_drain. */
#define IMAPD_OUTPUT_SLICE (256 * 1024)
/* Output queue limit per connection (a message literal is streamed). */
#define IMAPD_OUTPUT_MAX (4 * 1024 * 1024)
/* Messages handled per slice of FETCH/SEARCH/STORE before yielding. */
#define IMAPD_SLICE_MESSAGES 200
/* Bytes of one body literal read from the store per step. */
#define IMAPD_STREAM_CHUNK 65536
/* Tag length copied for a resumable command's final reply. */
#define IMAPD_TAG_MAX IMAP_TAG_MAX
/* ID command: pairs accepted (RFC 2971 says at most 30). */
#define IMAPD_ID_PAIRS_MAX 30
/* Longest mailbox name accepted on the wire, bytes (before decoding). */
#define IMAPD_MAILBOX_WIRE_MAX 1024
/*
 * An APPEND literal up to this size stays in memory, as long as the
 * command's in-memory literals stay under IMAPD_APPEND_INLINE_TOTAL_MAX;
 * others are spooled, as they arrive, to one unlinked file per command.
 */
#define IMAPD_APPEND_INLINE_MAX 65536
#define IMAPD_APPEND_INLINE_TOTAL_MAX (4 * IMAPD_APPEND_INLINE_MAX)
/* Messages in one MULTIAPPEND command (RFC 3502). */
#define IMAPD_MULTIAPPEND_MAX 1000
/* Keywords in one STORE/APPEND flag list. */
#define IMAPD_FLAGS_MAX 64

/* ENABLEd extensions (RFC 5161). */
#define IMAPD_EN_CONDSTORE 0x1
#define IMAPD_EN_QRESYNC 0x2
#define IMAPD_EN_UTF8 0x4
#define IMAPD_EN_REV2 0x8	/* IMAP4rev2 (RFC 9051) */

enum imap_state {
	IMAP_STATE_NOTAUTH,
	IMAP_STATE_AUTH,
	IMAP_STATE_SELECTED,
	IMAP_STATE_LOGOUT,
};

enum imap_cmd_result {
	IMAP_CMD_DONE = 0,
	IMAP_CMD_MORE,
};

struct imap_worker {
	struct event_base *base;
	struct config *cfg;
	SSL_CTX *tls;
	struct store *store;
	struct meta_cache *meta;	/* imap_meta.h */
	struct tpool *pool;
	struct store_watch *watch;	/* NULL: no inotify, poll_ev polls */
	struct event *watch_ev;
	struct event *poll_ev;
	struct event *maint_ev;
	int maintaining;		/* store_maintain runs on a helper */
	struct event *sig_ev;
	struct event *stop_ev;		/* shutdown grace timer */
	struct conn_listener **listeners;
	size_t nlisteners;
	int stopping;
	struct sasl_ratelimit *rl;
	struct imap_session *sessions;
	/* mailbox ids watched, with the number of sessions selecting each */
	uint32_t *watch_ids;
	unsigned *watch_refs;
	size_t nwatch, watch_cap;
	int plaintext_loopback;
	int tls_compact;	/* [imapd] tls_compact: conn_set_tls_compact */
	uint64_t append_max;
	char *spool_dir;		/* APPEND spool files ([store] path) */
	int spool_memory;		/* encrypted store: spool to memfd */
	uint32_t login_timeout_ms, idle_timeout_ms;
	unsigned long next_id;
};

/* The selected mailbox as this session sees it. */
struct imap_view {
	uint32_t id;
	char *name;		/* UTF-8 */
	int readonly;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t modseq;	/* HIGHESTMODSEQ last reported */
	uint32_t *uids;		/* sequence i+1 -> uids[i], ascending */
	size_t n, cap;
	uint32_t first_recent;	/* UIDs >= this are \Recent here */
	int condstore;		/* SELECT (CONDSTORE) or a MODSEQ fetch */
	/* keyword names by slot (STORE_KEYWORDS_MAX of them), loaded lazily;
	 * NULL while the mailbox has none: an idle session does not carry
	 * 64 empty pointers (imap_keyword() reads it) */
	char **kw;
	int kw_loaded;
};

struct imap_session {
	struct imap_worker *w;
	struct conn *conn;
	struct imap_session *next, *prev;
	char sid[24];
	char local[DAEMON_ADDR_MAX], remote[DAEMON_ADDR_MAX];
	int loopback;
	enum imap_state state;
	struct imap_parser *parser;
	char *user;
	unsigned enabled;
	struct imap_view mb;
	int selected;
	/* the command being run */
	char tag[IMAPD_TAG_MAX + 1];
	enum imap_cmd_result (*cont)(struct imap_session *s);
	void *cont_state;
	void (*cont_free)(void *state);
	int busy;		/* a helper-thread job is in flight */
	struct imap_auth_job *job;
	struct imap_sync_job *sync;	/* the log flush a reply waits for */
	struct imap_append_job *append_job;	/* a large APPEND, stored */
	/* AUTHENTICATE waiting for a client line */
	struct sasl_session *sasl;
	int auth_wait;
	int idling;
	/* FETCH, STORE, SEARCH by sequence number: no EXPUNGE may be sent */
	int no_expunge;
	struct event *resume_ev;	/* imap_command_yield() */
	/* SEARCHRES ($) */
	uint32_t *saved;
	size_t nsaved;
	/* APPEND literals of the command being read (cmd_append.c) */
	int spool_fd;			/* one file for them all, or -1 */
	uint64_t spool_len;		/* bytes spooled so far */
	uint64_t append_bytes;		/* all literals, for quota */
	uint64_t append_inline;		/* those kept in memory */
	uint32_t append_count;
};

struct imap_command {
	const char *name;
	unsigned states;	/* IMAP_CMDF_* */
	enum imap_cmd_result (*fn)(struct imap_session *s,
	    const struct imap_arg *args, size_t n, int uid);
};

#define IMAP_CMDF_NOTAUTH 0x1
#define IMAP_CMDF_AUTH 0x2
#define IMAP_CMDF_SELECTED 0x4
#define IMAP_CMDF_ANY (IMAP_CMDF_NOTAUTH | IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED)
#define IMAP_CMDF_UID 0x8	/* may follow "UID" */

/* The text of a buffer, "" while it holds no storage (buf_str gives NULL). */
static inline const char *
imap_bstr(const struct buf *b)
{
	return b->data != NULL ? (const char *)b->data : "";
}

/* ---- imapd.c: session I/O ---- */
/* Queue text for the client (nothing is sent if the connection closes). */
void imap_printf(struct imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void imap_write(struct imap_session *s, const void *data, size_t len);
/* The tagged reply of the current command. */
void imap_tagged(struct imap_session *s, const char *status,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A store error as a tagged NO with a response code. */
void imap_tagged_store_error(struct imap_session *s, int err,
    const char *error);
/* The command ended (DONE): resume reading client input. */
void imap_command_finished(struct imap_session *s);
/* The session closes: a log flush in flight no longer answers it. */
void imap_sync_detach(struct imap_session *s);
/*
 * A resumable command stopped after a slice without queueing output: call
 * its cont again from the loop soon (other connections run meanwhile).
 */
void imap_command_yield(struct imap_session *s);
/* Bytes waiting in the output queue. */
size_t imap_output_len(struct imap_session *s);
/* Become authenticated as user (after LOGIN/AUTHENTICATE). */
void imap_session_login(struct imap_session *s, const char *user);
/* CAPABILITY text for this session's state. */
void imap_capabilities(struct imap_session *s, struct buf *out);

/* ---- cmd_auth.c ---- */
enum imap_cmd_result cmd_capability(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_noop(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_logout(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_starttls(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_login(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_authenticate(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_id(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_enable(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_compress(struct imap_session *, const struct
    imap_arg *, size_t, int);
/* A client line while AUTHENTICATE waits for one. */
void imap_auth_line(struct imap_session *s, const char *line, size_t len);
/* The session is going away: detach a job still running. */
void imap_auth_detach(struct imap_session *s);
/* The session is going away: an APPEND job finishes without it. */
void imap_append_detach(struct imap_session *s);
/* The calling helper thread's own store handle (NULL: cannot open). */
struct store *imap_helper_store(const struct config *cfg);

/* ---- cmd_mailbox.c ---- */
enum imap_cmd_result cmd_namespace(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_list(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_lsub(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_create(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_delete(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_rename(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_subscribe(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_unsubscribe(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_status(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_getquota(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_getquotaroot(struct imap_session *, const struct
    imap_arg *, size_t, int);
/*
 * Decode a mailbox name argument (modified UTF-7, or UTF-8 after ENABLE
 * UTF8=ACCEPT) into out (STORE_MAILBOX_NAME_MAX + 1 bytes).  "INBOX" in
 * any case becomes "INBOX".  Returns 0, or -1 with *error_r.
 */
int imap_mailbox_name(struct imap_session *s, const struct imap_arg *a,
    char *out, const char **error_r);
/*
 * 1 if mailbox names travel in UTF-8 on this session: after ENABLE
 * UTF8=ACCEPT (RFC 6855) or ENABLE IMAP4rev2 (RFC 9051 5.1: IMAP4rev2
 * names are Net-Unicode, modified UTF-7 is IMAP4rev1's), else 0.
 */
static inline int
imap_names_utf8(const struct imap_session *s)
{
	return (s->enabled & (IMAPD_EN_UTF8 | IMAPD_EN_REV2)) != 0;
}
/* Append a UTF-8 mailbox name encoded for this session, quoted. */
void imap_append_mailbox(struct imap_session *s, struct buf *out,
    const char *name);

/* ---- cmd_select.c ---- */
enum imap_cmd_result cmd_select(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_examine(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_close(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_unselect(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_check(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_expunge(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_idle(struct imap_session *, const struct
    imap_arg *, size_t, int);
/* Leave the selected mailbox (no replies). */
void imap_unselect(struct imap_session *s);
/*
 * Bring the view up to date and queue untagged EXISTS/RECENT/FETCH (and,
 * when expunges may be sent, EXPUNGE or VANISHED) responses.
 */
void imap_sync(struct imap_session *s, int allow_expunge);
/*
 * After this session's own write to its selected mailbox (STORE, EXPUNGE,
 * APPEND), whose effects it reported itself or leaves to imap_sync as new
 * messages: if nobody else wrote in between (store_last_write), the
 * session's HIGHESTMODSEQ moves on, so imap_sync neither walks the mailbox
 * for other changes nor reports this session's own again.
 */
void imap_own_write(struct imap_session *s);
/* The store says mailbox_id may have changed: update IDLE sessions. */
void imap_notify(struct imap_worker *w, uint32_t mailbox_id);
/* A client line during IDLE. */
void imap_idle_line(struct imap_session *s, const char *line, size_t len);
/* Sequence number of uid in the view, 0 if absent. */
uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid);
/* The name of keyword slot i of the selected mailbox, or NULL. */
static inline const char *
imap_keyword(const struct imap_view *v, size_t i)
{
	return v->kw != NULL ? v->kw[i] : NULL;
}
/*
 * The store records of uids[0..n) (ascending UIDs of the selected
 * mailbox) in one read transaction: *msgs_r (the caller frees it) gets
 * those still there, in the same order; an expunged one is missing.  Runs
 * of UIDs adjacent in the view are read as one range, so the store walks
 * about n records whatever the gaps.  Returns 0 or a store error.
 */
int imap_msgs_load(struct imap_session *s, const uint32_t *uids, size_t n,
    struct store_msg **msgs_r, size_t *n_r, const char **error_r);
/*
 * A sequence set argument (or "$") as UID ranges of this view: for UID
 * commands the UIDs themselves, else the sequence numbers mapped to UIDs.
 * Returns 0 with a fresh array, or -1 with *error_r.
 */
int imap_view_ranges(struct imap_session *s, const char *set, int uid,
    struct store_uid_range **ranges_r, size_t *n_r, const char **error_r);
/* Flags of msg as an IMAP flag list "(\Seen kw ...)" appended to out. */
void imap_append_flags(struct imap_session *s, struct buf *out,
    uint32_t flags, uint64_t keywords, int recent);
/* Parse a flag list into store flags and keyword names (borrowed). */
int imap_parse_flags(const struct imap_arg *a, uint32_t *flags_r,
    const char **keywords, size_t *nkw_r, const char **error_r);

/* Parse an IMAP date ("1-Feb-1994") to days since the epoch; -1 if bad. */
int imap_parse_date(const char *s, int64_t *days_r);
/* Parse a date-time ("01-Feb-1994 21:05:00 +0800"); -1 if bad. */
int imap_parse_datetime(const char *s, int64_t *t_r, int32_t *tz_r);

/* ---- cmd_fetch.c ---- */
enum imap_cmd_result cmd_fetch(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_store(struct imap_session *, const struct
    imap_arg *, size_t, int);

/* ---- cmd_search.c ---- */
enum imap_cmd_result cmd_search(struct imap_session *, const struct
    imap_arg *, size_t, int);

/* Decoders shared by SEARCH and FETCH BINARY (appended to out). */
void imap_decode_base64(const uint8_t *in, size_t len, struct buf *out);
/* underscore: RFC 2047 Q encoding ('_' is a space). */
void imap_decode_qp(const uint8_t *in, size_t len, struct buf *out,
    int underscore);
/*
 * The unfolded value of a header field in a header block (every
 * occurrence, joined by a space) appended to out; 1 if present, else 0.
 */
int imap_header_value(const uint8_t *h, size_t len, const char *field,
    struct buf *out);

/*
 * A search program (args: keys only, CHARSET already consumed) run over
 * the view in slices of IMAPD_SLICE_MESSAGES (for SORT and THREAD):
 * begin parses the program (-1 with *error_r: reply BAD) over a snapshot
 * of the view; step runs one slice and returns 1 while messages remain;
 * take hands over the matching UIDs (ascending; the caller frees them).
 */
struct imap_search_job;
int imap_search_begin(struct imap_session *s, const struct imap_arg *args,
    size_t n, struct imap_search_job **job_r, const char **error_r);
int imap_search_step(struct imap_session *s, struct imap_search_job *job);
void imap_search_take(struct imap_search_job *job, uint32_t **uids_r,
    size_t *n_r);
void imap_search_job_free(struct imap_search_job *job);

/* ---- cmd_sort.c ---- */
enum imap_cmd_result cmd_sort(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_thread(struct imap_session *, const struct
    imap_arg *, size_t, int);

/* ---- cmd_copy.c ---- */
enum imap_cmd_result cmd_copy(struct imap_session *, const struct
    imap_arg *, size_t, int);
enum imap_cmd_result cmd_move(struct imap_session *, const struct
    imap_arg *, size_t, int);
/* UIDs v[0..n) (ascending) as a compact set "1:3,7" appended to out. */
void imap_append_uid_set(struct buf *out, const uint32_t *v, size_t n);

/* ---- cmd_append.c ---- */
enum imap_cmd_result cmd_append(struct imap_session *, const struct
    imap_arg *, size_t, int);
/*
 * The parser announced an APPEND literal (IMAP_PARSE_LITERAL) in a state
 * where APPEND is allowed: check it against APPENDLIMIT and the account's
 * quota (with the command's earlier literals) and keep it in memory, spool
 * it to an unlinked file, or refuse it: "TAG NO [TOOBIG]/[OVERQUOTA]"
 * before "+" for a synchronising literal (the parser is reset), or read
 * and drop a non-synchronising one (the command then fails with NO).
 * Sends "+" when a synchronising literal is accepted.
 */
void imap_append_literal(struct imap_session *s);
/* Close the spool files of the command just finished or dropped. */
void imap_append_release(struct imap_session *s);

#endif
