/*
 * mailbox.h - the govmail store: accounts, mailboxes and messages in one
 * transactional Berkeley DB 5.3 environment (DESIGN.md section 2).
 *
 * Used by govmail-smtpd (deliver), govmail-imapd (read, flag, copy, move,
 * append, expunge, notification), govmailctl (administer) and govmail-ca
 * (does this mailbox exist, of which class).  Many processes open the same
 * environment at once; every call here is one transaction (or a read with
 * snapshot semantics) that either happens completely or not at all, and a
 * process killed at any instant leaves the store consistent.
 *
 * Conventions
 * - Functions return 0 on success or a negative enum store_error.  When a
 *   reason for a human is available, *error_r points to it (static text or
 *   text owned by the store handle, valid until the next call on it).
 *   error_r may be NULL.
 * - STORE_ETEMP is an environment failure (ENOSPC, I/O, too many deadlocks
 *   in a row): callers answer with a temporary failure (4xx, NO
 *   [UNAVAILABLE]).  Deadlocks themselves are retried inside the store.
 * - Addresses are "local@domain"; the domain is compared case-insensitively
 *   and stored lower-case; the local part is kept as given, compared
 *   case-insensitively for ASCII, and may be UTF-8 (RFC 6531).
 * - Mailbox names are UTF-8, hierarchy delimiter '/', "INBOX" case-
 *   insensitive.  Protocol encodings (modified UTF-7) are imapd's business.
 * - Strings returned inside structs are owned by the struct and released
 *   by its _free function.
 * - A struct store is not thread-safe except where said; give each thread
 *   its own handle (store_open is cheap after the first in a process).
 */
#ifndef GOVMAIL_MAILBOX_H
#define GOVMAIL_MAILBOX_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;
struct buf;

/* ---- limits (named, so tests can hit N-1, N, N+1) ------------------- */

#define STORE_ADDRESS_MAX 254		/* RFC 5321 4.5.3.1.3 path */
#define STORE_LOCALPART_MAX 64		/* RFC 5321 4.5.3.1.1 */
#define STORE_DOMAIN_MAX 253		/* RFC 1035 */
#define STORE_MAILBOX_NAME_MAX 255	/* bytes of UTF-8 */
#define STORE_MAILBOX_DEPTH_MAX 16	/* hierarchy levels */
#define STORE_MAILBOXES_MAX 1000	/* per account */
#define STORE_KEYWORDS_MAX 64		/* distinct keywords per mailbox */
#define STORE_KEYWORD_MAX 64		/* bytes of one keyword (an atom) */
#define STORE_TEXT_MAX 256		/* display name, organisation, title */
#define STORE_PASSWORD_MAX 1024		/* bytes of a password */
#define STORE_ALIAS_DEPTH_MAX 8		/* alias -> alias -> ... */
#define STORE_LIST_SELECTORS_MAX 10000	/* explicit entries in one list */
#define STORE_MESSAGE_MAX (1024ULL * 1024 * 1024)	/* absolute cap */
#define STORE_CHUNK_SIZE 65536		/* content chunk (DESIGN.md 2) */
#define STORE_BLOB_KEY_LEN 32		/* BLAKE2b-256 */

enum store_error {
	STORE_OK = 0,
	STORE_ETEMP = -1,	/* environment failure: try again later */
	STORE_ENOTFOUND = -2,	/* no such domain/account/mailbox/message */
	STORE_EEXISTS = -3,	/* already exists */
	STORE_EINVAL = -4,	/* bad argument (address, name, class data) */
	STORE_EQUOTA = -5,	/* over quota (bytes or messages) */
	STORE_EPERM = -6,	/* not allowed (e.g. delete INBOX, not a poster) */
	STORE_ETOOBIG = -7,	/* message larger than the configured maximum */
	STORE_EDAMAGED = -8,	/* check found damage */
};

/* Short fixed text for an error code ("not found", ...). */
const char *store_strerror(int err);

/* ---- the environment ------------------------------------------------ */

struct store;

enum store_open_flags {
	STORE_OPEN_CREATE = 1 << 0,	/* create the environment if missing */
	STORE_OPEN_READONLY = 1 << 1,	/* tools that only look */
};

/*
 * Open (and with STORE_OPEN_CREATE create) the environment named by
 * [store] path in cfg.  Joins an environment other processes have open
 * (DB_REGISTER); runs recovery when the registry says a previous user died
 * without closing; calls DB_ENV->failchk so a dead process's locks and
 * transactions are released.  Returns 0 and *store_r, or an error.
 *
 * Implementation notes that matter to daemons:
 * - failchk is first tried in a short-lived child process (fork), because
 *   in Berkeley DB 5.3 it can hang on, or crash over, what a killed
 *   process left behind; if the child fails, this open runs recovery.
 * - A watchdog thread per process ends the process with exit status 75
 *   (EX_TEMPFAIL) when one store call (or the open) has been blocked for
 *   60 s (store_check and store_stats excepted, they may run long on a
 *   big store): that only happens when a process was killed holding a
 *   Berkeley DB mutex, which no API call can release.  The store is marked
 *   for recovery; the parent restarts the process; nothing acknowledged is
 *   lost.  Daemons' parents should treat status 75 as "restart me".
 * - After another process forced recovery, calls here reopen the
 *   environment transparently (single-handle processes) or return
 *   STORE_ETEMP (then store_close() every handle and store_open() again).
 */
int store_open(const struct config *cfg, unsigned flags, struct store **store_r,
    const char **error_r);
void store_close(struct store *store);

/*
 * Housekeeping that a long-running process calls every few seconds (the
 * daemons from a timer): failchk, checkpoint when due, removal of log
 * files no longer needed, expiry of submission de-duplication records
 * (at most STORE_DEDUP_EXPIRE_BATCH per call).  Cheap when nothing is due.
 */
int store_maintain(struct store *store, const char **error_r);

/* ---- domains -------------------------------------------------------- */

/* STORE_EEXISTS if present, STORE_EINVAL if not a valid domain name. */
int store_domain_add(struct store *store, const char *domain,
    const char **error_r);
/* Refuses (STORE_EPERM) while the domain still has accounts, aliases or lists. */
int store_domain_del(struct store *store, const char *domain,
    const char **error_r);
/* 1 if the domain is local, 0 if not, negative on error. */
int store_domain_exists(struct store *store, const char *domain);
/* Calls cb for each domain in order; cb returning non-zero stops early. */
int store_domain_list(struct store *store,
    int (*cb)(const char *domain, void *ctx), void *ctx, const char **error_r);

/* ---- accounts ------------------------------------------------------- */

enum store_class {
	STORE_CLASS_OFFICIAL = 1,	/* a civil servant (公务) */
	STORE_CLASS_DEPARTMENT,		/* a department's mailbox */
	STORE_CLASS_LEGAL_PERSON,	/* an enterprise (法人) */
	STORE_CLASS_CITIZEN,		/* a resident (市民) */
};

const char *store_class_name(enum store_class c);	/* "legal-person" */
int store_class_parse(const char *s, enum store_class *class_r);

/* What govmailctl user add gives; NULL fields are unset. */
struct store_account_spec {
	const char *address;
	enum store_class class;
	const char *password;		/* hashed with Argon2id, never stored */
	const char *password_hash;	/* instead of password: an Argon2id or
					   Argon2i string as crypto_pwhash_str
					   makes ("$argon2id$v=19$m=..."),
					   stored as given (bulk import) */
	const char *display_name;	/* all classes */
	const char *organisation;	/* official, department: the department;
					   legal person: the registered name */
	const char *org_id;		/* legal person: the 18-char USCC (check
					   character verified); official and
					   department: ISO 3166-2 subdivision for
					   GOVCN+<code>, optional */
	const char *title;		/* official: optional job title */
	const char *resident_id;	/* citizen: 18-char ID number (MOD 11-2
					   verified); only a keyed hash is kept */
	int identity_verified;		/* citizen: identity checked in person */
	int legacy_code;		/* legal person: accept a USCC failing its
					   check character (a warning is logged) */
	uint64_t quota_bytes;		/* 0 = [limits] quota_bytes */
	uint64_t quota_messages;	/* 0 = [limits] quota_messages */
};

struct store_account {
	char *address;
	uint32_t id;			/* stable numeric id */
	enum store_class class;
	char *display_name;		/* "" when unset, never NULL */
	char *organisation;
	char *org_id;
	char *title;
	int has_resident_id;
	uint8_t resident_id_hash[32];	/* keyed BLAKE2b of the ID number */
	int identity_verified;
	uint64_t quota_bytes;
	uint64_t quota_messages;
	uint64_t used_bytes;		/* over all mailboxes */
	uint64_t used_messages;
	char *cert_serial;		/* hex, "" when no certificate */
	time_t created;
	int disabled;
};

/*
 * Create an account with its special-use mailboxes (INBOX, Sent, Drafts,
 * Trash, Junk, Archive), all subscribed.  The domain must exist; class data
 * is checked (USCC, ID number).  STORE_EEXISTS if the address is an account,
 * alias or list already.
 */
int store_account_add(struct store *store, const struct store_account_spec *spec,
    const char **error_r);
/* Delete the account, its mailboxes and messages (reference counts drop). */
int store_account_del(struct store *store, const char *address,
    const char **error_r);
int store_account_get(struct store *store, const char *address,
    struct store_account **acct_r, const char **error_r);
void store_account_free(struct store_account *acct);
/* Calls cb for each account (of one domain if domain != NULL), in order. */
int store_account_list(struct store *store, const char *domain,
    int (*cb)(const struct store_account *acct, void *ctx), void *ctx,
    const char **error_r);
int store_account_set_password(struct store *store, const char *address,
    const char *password, const char **error_r);
/* Record the serial (hex) of the account's current certificate. */
int store_account_set_cert(struct store *store, const char *address,
    const char *serial_hex, const char **error_r);
int store_account_set_quota(struct store *store, const char *address,
    uint64_t quota_bytes, uint64_t quota_messages, const char **error_r);
int store_account_set_disabled(struct store *store, const char *address,
    int disabled, const char **error_r);
/* Find the citizen holding a resident ID number (via its keyed hash). */
int store_account_find_resident(struct store *store, const char *resident_id,
    char **address_r, const char **error_r);

/*
 * Check a password.  Returns 1 if right, 0 if wrong (or no such account,
 * or disabled: indistinguishable to the caller), negative on error.
 * Argon2id is slow on purpose: daemons call this from a helper thread, with
 * a store handle of that thread's own.  Successful checks are cached in
 * memory for [store] auth_cache_ttl, keyed by a hash of address and
 * password, so a reconnect storm costs one Argon2id per account; the cache
 * is per process and thread-safe.  After a right password, a stored hash
 * made with other limits than [store] password_opslimit/memlimit (or not
 * Argon2id) is replaced by one made with them (a write transaction).
 */
int store_password_verify(struct store *store, const char *address,
    const char *password);

/* ---- aliases and lists ---------------------------------------------- */

/* An alias delivers to one or more targets (local or remote addresses). */
int store_alias_add(struct store *store, const char *alias, const char *target,
    const char **error_r);
/* target NULL: remove the whole alias. */
int store_alias_del(struct store *store, const char *alias, const char *target,
    const char **error_r);

/*
 * A list: members are selectors, one of
 *   "ADDRESS"            one local account (or remote address)
 *   "class:CLASS"        every account of that class (all domains)
 *   "domain:DOMAIN"      every account of the domain
 *   "class:CLASS@DOMAIN" every account of that class in the domain
 * and posters are the addresses allowed to post (none: anybody local).
 * A notice list (flag) additionally requires a valid official signature,
 * checked by smtpd, not by the store.
 */
enum store_list_flags {
	STORE_LIST_NOTICE = 1 << 0,
};
int store_list_add(struct store *store, const char *list, unsigned flags,
    const char **error_r);
int store_list_del(struct store *store, const char *list, const char **error_r);
int store_list_member_add(struct store *store, const char *list,
    const char *selector, const char **error_r);
int store_list_member_del(struct store *store, const char *list,
    const char *selector, const char **error_r);
int store_list_poster_add(struct store *store, const char *list,
    const char *address, const char **error_r);
int store_list_poster_del(struct store *store, const char *list,
    const char *address, const char **error_r);
/* Selectors (kind 0) and posters (kind 1) of a list, in order. */
int store_list_entries(struct store *store, const char *list, int kind,
    int (*cb)(const char *entry, void *ctx), void *ctx, const char **error_r);

/* What a local address is. */
enum store_addr_kind {
	STORE_ADDR_NONE = 0,	/* not a local address (domain may be local) */
	STORE_ADDR_ACCOUNT,
	STORE_ADDR_ALIAS,
	STORE_ADDR_LIST,
};

struct store_rcpt_set {
	char **local;		/* account addresses, unique, sorted */
	size_t nlocal;
	char **remote;		/* remote addresses reached through aliases */
	size_t nremote;
	enum store_addr_kind kind;
	unsigned list_flags;	/* when kind == STORE_ADDR_LIST */
	/* kind == STORE_ADDR_ACCOUNT: read in the same transaction */
	uint64_t quota_bytes, quota_messages;
	uint64_t used_bytes, used_messages;
};

/*
 * Resolve one envelope recipient: an account gives itself; an alias its
 * targets (recursively, at most STORE_ALIAS_DEPTH_MAX); a list its members
 * (selectors expanded).  If sender is not NULL and the address is a list
 * with posters, STORE_EPERM unless sender is one of them.  STORE_ENOTFOUND
 * if the address is not local.  Release with store_rcpt_set_free().
 */
int store_resolve(struct store *store, const char *address, const char *sender,
    struct store_rcpt_set *set_r, const char **error_r);
/*
 * The cheap cases of store_resolve() alone: an account, or an address that
 * is nothing local (STORE_ENOTFOUND, or its remote target), as
 * store_resolve() answers them; 1 (nothing in the set) for a list or an
 * alias, whose expansion may take a scan over every account: the caller
 * then runs store_resolve() where waiting is allowed (a daemon's helper
 * thread).
 */
int store_resolve_account(struct store *store, const char *address,
    struct store_rcpt_set *set_r, const char **error_r);
void store_rcpt_set_free(struct store_rcpt_set *set);

/* ---- mailboxes ------------------------------------------------------ */

enum store_special_use {
	STORE_USE_NONE = 0,
	STORE_USE_INBOX = 1 << 0,
	STORE_USE_SENT = 1 << 1,
	STORE_USE_DRAFTS = 1 << 2,
	STORE_USE_TRASH = 1 << 3,
	STORE_USE_JUNK = 1 << 4,
	STORE_USE_ARCHIVE = 1 << 5,
};

struct store_mailbox_info {
	char name[STORE_MAILBOX_NAME_MAX + 1];
	uint32_t id;			/* store-wide, never reused */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	uint32_t messages;
	uint32_t unseen;
	uint32_t recent;		/* UIDs >= recent_uid */
	uint32_t recent_uid;
	uint64_t size;			/* sum of RFC822.SIZE */
	unsigned special_use;		/* enum store_special_use bits */
	int subscribed;
	uint64_t keywords_mask;		/* which keyword slots are defined */
};

/*
 * Create a mailbox (unsubscribed), and the missing levels above it.
 * special_use may not include STORE_USE_INBOX.  At most
 * STORE_MAILBOXES_MAX per account (STORE_EINVAL past it).
 */
int store_mailbox_create(struct store *store, const char *address,
    const char *name, unsigned special_use, const char **error_r);
/*
 * Delete a mailbox and its messages (reference counts and usage drop).
 * Children stay.  INBOX cannot be deleted: STORE_EPERM, nothing changes.
 */
int store_mailbox_delete(struct store *store, const char *address,
    const char *name, const char **error_r);
/* Renames children too; renaming INBOX moves its messages (RFC 3501). */
int store_mailbox_rename(struct store *store, const char *address,
    const char *from, const char *to, const char **error_r);
int store_mailbox_subscribe(struct store *store, const char *address,
    const char *name, int subscribed, const char **error_r);
/* By name (STORE_ENOTFOUND if absent). */
int store_mailbox_get(struct store *store, const char *address,
    const char *name, struct store_mailbox_info *info_r, const char **error_r);
/* By id, with the owner's address copied into owner (STORE_ADDRESS_MAX+1). */
int store_mailbox_get_id(struct store *store, uint32_t mailbox_id,
    struct store_mailbox_info *info_r, char *owner, const char **error_r);
/* Every mailbox of an account, in name order. */
int store_mailbox_list(struct store *store, const char *address,
    int (*cb)(const struct store_mailbox_info *info, void *ctx), void *ctx,
    const char **error_r);
/*
 * IMAP \Recent: atomically return the current recent_uid and move it to
 * uidnext, so exactly one session sees each message as recent.
 */
int store_mailbox_take_recent(struct store *store, uint32_t mailbox_id,
    uint32_t *first_recent_uid_r, const char **error_r);
/* Keyword slot table of a mailbox: names[i] for bit i (NULL if unused). */
int store_mailbox_keywords(struct store *store, uint32_t mailbox_id,
    char *names[STORE_KEYWORDS_MAX], const char **error_r);
void store_keywords_free(char *names[STORE_KEYWORDS_MAX]);

/* ---- messages ------------------------------------------------------- */

enum store_flag {
	STORE_FLAG_SEEN = 1 << 0,
	STORE_FLAG_ANSWERED = 1 << 1,
	STORE_FLAG_FLAGGED = 1 << 2,
	STORE_FLAG_DELETED = 1 << 3,
	STORE_FLAG_DRAFT = 1 << 4,
};

struct store_msg {
	uint32_t uid;
	uint32_t flags;			/* enum store_flag bits */
	uint64_t keywords;		/* bit i = keyword slot i */
	int64_t internaldate;		/* seconds since the epoch, UTC */
	int32_t internaldate_tz;	/* minutes east of UTC, for display */
	uint64_t size;			/* RFC822.SIZE: bytes as stored */
	uint64_t modseq;
	uint8_t blob[STORE_BLOB_KEY_LEN];
};

/* A UID range set; ranges sorted, non-overlapping, hi may be UINT32_MAX. */
struct store_uid_range {
	uint32_t lo, hi;
};

/*
 * Call cb for each message of a mailbox whose UID lies in one of the
 * ranges (all messages if nranges == 0), in UID order.  If changed_since is
 * non-zero, only messages with modseq > changed_since.  A cb returning
 * non-zero stops early (returned as is).  Reads a consistent snapshot.
 */
int store_msg_list(struct store *store, uint32_t mailbox_id,
    const struct store_uid_range *ranges, size_t nranges,
    uint64_t changed_since,
    int (*cb)(const struct store_msg *msg, void *ctx), void *ctx,
    const char **error_r);
/* One message by UID; STORE_ENOTFOUND if there is none. */
int store_msg_get(struct store *store, uint32_t mailbox_id, uint32_t uid,
    struct store_msg *msg_r, const char **error_r);

/* The message bytes of a blob (decrypted if the store is encrypted). */
int store_blob_read(struct store *store, const uint8_t key[STORE_BLOB_KEY_LEN],
    struct buf *out, const char **error_r);
/* Bytes [offset, offset+len) of a blob (for BODY[]<partial> and streaming). */
int store_blob_read_range(struct store *store,
    const uint8_t key[STORE_BLOB_KEY_LEN], uint64_t offset, uint64_t len,
    struct buf *out, const char **error_r);

/*
 * What was computed once at delivery with libetpan (DESIGN.md 2): the IMAP
 * ENVELOPE and BODYSTRUCTURE (and BODY) as IMAP response text, the header
 * block's length, and the decoded Subject/From/Message-ID for SORT, THREAD
 * and reports.  Release with store_msg_meta_free().
 */
struct store_msg_meta {
	char *envelope;		/* "(\"date\" \"subject\" ...)" */
	char *bodystructure;	/* with extension data */
	char *body;		/* without extension data */
	uint64_t header_size;	/* bytes up to and including the blank line */
	uint32_t lines;		/* body lines (for text parts' BODY) */
	char *subject;		/* decoded to UTF-8, "" if none */
	char *from;		/* first From: address, "" if none */
	char *message_id;	/* "<...>", "" if none */
	int64_t date;		/* Date: header, 0 if none or invalid */
	uint8_t *partmap;	/* MIME part offsets, opaque: store_msg_section */
	size_t partmap_len;
};

/*
 * Where an IMAP body part lies in the message bytes, without re-parsing:
 * part is "" (the whole message) or "1", "1.2", ... (RFC 3501 6.4.5).  The
 * caller handles HEADER, TEXT, MIME and HEADER.FIELDS on the ranges given.
 * STORE_ENOTFOUND if the message has no such part.
 */
struct store_section {
	uint64_t header_off, header_len;	/* the part's MIME header */
	uint64_t body_off, body_len;		/* the part's body */
};
int store_msg_section(const struct store_msg_meta *meta, const char *part,
    struct store_section *section_r);
int store_msg_meta(struct store *store, const uint8_t key[STORE_BLOB_KEY_LEN],
    struct store_msg_meta *meta_r, const char **error_r);
void store_msg_meta_free(struct store_msg_meta *meta);

/* Per-recipient outcome of a delivery. */
struct store_rcpt_result {
	const char *address;	/* as given */
	int status;		/* STORE_OK, STORE_EQUOTA, STORE_ENOTFOUND, ... */
	uint32_t mailbox_id;	/* where it went (INBOX), when STORE_OK */
	uint32_t uid;
};

/*
 * Deliver one message to the INBOX of each local account in rcpts, in ONE
 * transaction: the content is stored once (chunked, content-addressed,
 * reference-counted), ENVELOPE/BODYSTRUCTURE computed once, one index
 * record added per recipient, and the commit made durable (fsync of the
 * log, group-committed with concurrent writers) before this returns.
 *
 * A recipient over quota or unknown gets its own status in results[i] and
 * does not stop the others; the call returns 0 if at least the transaction
 * committed (check each result), or a negative error if nothing was
 * delivered (STORE_ETEMP: try again later; STORE_ETOOBIG).
 * internaldate 0 means now.  Mailboxes delivered to are notified.
 * Per-recipient statuses: STORE_OK, STORE_ENOTFOUND (no such account, or
 * not an address), STORE_EQUOTA, STORE_EPERM (account disabled).  rcpts
 * are account addresses (resolve aliases and lists with store_resolve()
 * first); a duplicate gets a second copy.
 */
int store_deliver(struct store *store, const uint8_t *msg, size_t len,
    const char *const *rcpts, size_t nrcpts, int64_t internaldate,
    struct store_rcpt_result *results, const char **error_r);

/*
 * APPEND: add a message to a named mailbox with flags and keywords (names;
 * new keywords take free slots, STORE_EINVAL when all are used).  Honours
 * quota.  Returns the new UID and the mailbox's UIDVALIDITY (UIDPLUS).
 */
int store_append(struct store *store, const char *address, const char *mailbox,
    const uint8_t *msg, size_t len, uint32_t flags,
    const char *const *keywords, size_t nkeywords, int64_t internaldate,
    uint32_t *uidvalidity_r, uint32_t *uid_r, const char **error_r);

enum store_flag_op {
	STORE_FLAGS_REPLACE,
	STORE_FLAGS_ADD,
	STORE_FLAGS_REMOVE,
};

/*
 * STORE: change flags and keywords of the messages in ranges.  Keywords are
 * names (new ones get slots).  With unchanged_since != 0 (CONDSTORE), a
 * message whose modseq is greater is not changed and its UID is passed to
 * failed_cb.  Each changed message gets a new modseq; changed_cb receives
 * each message after the change.  One transaction.
 */
int store_flags_update(struct store *store, uint32_t mailbox_id,
    const struct store_uid_range *ranges, size_t nranges,
    enum store_flag_op op, uint32_t flags, const char *const *keywords,
    size_t nkeywords, uint64_t unchanged_since,
    int (*changed_cb)(const struct store_msg *msg, void *ctx),
    int (*failed_cb)(uint32_t uid, void *ctx), void *ctx,
    const char **error_r);

/* Source UID -> destination UID, for COPYUID/MOVE responses. */
struct store_uid_map {
	uint32_t *src;
	uint32_t *dst;
	size_t n;
	uint32_t dst_uidvalidity;
};
void store_uid_map_free(struct store_uid_map *map);

/*
 * COPY (move == 0) or MOVE (move != 0) messages to another mailbox of the
 * same account, in one transaction; no content is copied, only references.
 * Honours quota on copy.  Fills *map_r.
 */
int store_copy(struct store *store, uint32_t src_mailbox_id,
    const struct store_uid_range *ranges, size_t nranges,
    uint32_t dst_mailbox_id, int move, struct store_uid_map *map_r,
    const char **error_r);

/*
 * EXPUNGE: remove messages flagged \Deleted (restricted to ranges if
 * nranges > 0, for UID EXPUNGE).  Each removal is logged with a new modseq
 * for QRESYNC's VANISHED and passed to cb in UID order.
 */
int store_expunge(struct store *store, uint32_t mailbox_id,
    const struct store_uid_range *ranges, size_t nranges,
    int (*cb)(uint32_t uid, void *ctx), void *ctx, const char **error_r);

/*
 * What the last write transaction committed through this handle did to
 * mailbox_id: *before_r is the HIGHESTMODSEQ it read, *after_r the one it
 * left.  STORE_ENOTFOUND if that transaction did not change the mailbox
 * (or changed more than ST_MODSEQ_NOTES mailboxes).  An IMAP session that
 * had reported HIGHESTMODSEQ == before knows that nobody else changed the
 * mailbox in between: its own changes, which it reported itself, are all
 * there is (no need to look for others').  Ask from the thread that wrote,
 * before its next write through this handle.
 */
int store_last_write(struct store *store, uint32_t mailbox_id,
    uint64_t *before_r, uint64_t *after_r);

/*
 * Deferred durability, for a daemon that must not wait for the disk on its
 * event loop (govmail-imapd): with store_set_deferred_sync(store, 1), the
 * write transactions of this handle commit without flushing the log, and
 * store_take_unsynced() says (once) that one did.  Before telling a client
 * that its change is done, the caller has store_sync() flush the log on a
 * helper thread: when it returns 0 every transaction committed before the
 * call is on disk (the log is flushed in order, so one flush covers
 * everyone's commits; concurrent flushes share the work).  Other sessions
 * may see a change before it is durable; a crash before the flush loses it
 * as if it had never been committed, and the store stays consistent.
 * store_sync() may run on another thread than the one using the handle.
 */
void store_set_deferred_sync(struct store *store, int on);
int store_take_unsynced(struct store *store);
int store_sync(struct store *store, const char **error_r);

/* UIDs expunged with modseq > since (QRESYNC VANISHED (EARLIER)), in order. */
int store_vanished(struct store *store, uint32_t mailbox_id, uint64_t since,
    int (*cb)(uint32_t uid, void *ctx), void *ctx, const char **error_r);

/* ---- change notification -------------------------------------------- */

/*
 * After every committed change to a mailbox the store signals it; another
 * process waits for that without polling.  A watcher owns one file
 * descriptor (inotify underneath) that becomes readable when any mailbox
 * it watches may have changed; store_watch_read() drains it and calls cb
 * for each watched mailbox id that may have changed (spurious calls are
 * possible: the caller compares HIGHESTMODSEQ/UIDNEXT).  One watcher can
 * watch thousands of mailboxes.
 */
struct store_watch;
int store_watch_new(struct store *store, struct store_watch **watch_r,
    const char **error_r);
void store_watch_free(struct store_watch *watch);
int store_watch_fd(const struct store_watch *watch);
int store_watch_add(struct store_watch *watch, uint32_t mailbox_id);
void store_watch_remove(struct store_watch *watch, uint32_t mailbox_id);
/* Returns the number of cb calls (0: nothing relevant), or STORE_ETEMP. */
int store_watch_read(struct store_watch *watch,
    void (*cb)(uint32_t mailbox_id, void *ctx), void *ctx);

/* ---- administration ------------------------------------------------- */

struct store_stats {
	uint64_t domains, accounts, aliases, lists;
	uint64_t mailboxes, messages;	/* index records */
	uint64_t blobs, blob_bytes;	/* distinct contents, their size */
	uint64_t chunks;
	uint64_t log_files;
	uint64_t env_bytes;		/* size of the environment files */
	uint64_t queued;		/* outbound queue entries */
	uint64_t notices;		/* notices in the report */
	uint64_t dedup;			/* submission de-duplication records */
};
int store_stats(struct store *store, struct store_stats *stats_r,
    const char **error_r);

/*
 * Verify the whole store: every index record's blob exists, every blob's
 * reference count equals the records pointing at it, every chunk belongs
 * to a blob, mailbox counters match their records, accounts' usage matches,
 * queue entries are well formed, the notice report's recipient records
 * belong to a notice, and every de-duplication record has its expiry
 * entry (and the reverse).
 * With STORE_CHECK_CONTENTS, also reads every message's chunks and checks
 * they decrypt, decompress and hash to the message's content address (as
 * long as the store is big), after the other checks, a few dozen messages
 * per read transaction, so that deliveries meanwhile wait little.
 * Each problem is passed to report (may be NULL), with repaired != 0 when
 * STORE_CHECK_REPAIR mended it.  Returns STORE_OK, or STORE_EDAMAGED if
 * anything was wrong.  With STORE_CHECK_REPAIR, fixes counters and
 * reference counts and removes orphans (missing or damaged contents cannot
 * be repaired: restore them from a backup).
 */
enum store_check_flags {
	STORE_CHECK_REPAIR = 1 << 0,
	STORE_CHECK_CONTENTS = 1 << 1,
};
int store_check(struct store *store, unsigned flags,
    void (*report)(const char *problem, int repaired, void *ctx), void *ctx,
    const char **error_r);

/*
 * Hot backup into dir (must not exist or be empty; STORE_EEXISTS if not): a
 * consistent copy of the databases and logs, usable while others write
 * (DB_ENV->backup, db_hotbackup semantics), plus the resident-ID hash key
 * (id.key).  SECURITY: the encryption key ([store] key_file) is NOT copied,
 * so a stolen backup reads nothing; keep that key apart.  Restore copies a
 * backup into the configured store path, which must be missing or empty
 * (STORE_EEXISTS otherwise: move a damaged store away first), puts id.key
 * where [store] id_key_file says (unless a key is there already) and runs
 * catastrophic recovery.
 */
int store_backup(struct store *store, const char *dir, const char **error_r);
int store_restore(const struct config *cfg, const char *dir,
    const char **error_r);

/* ---- the outbound queue (store_queue.c) ---------------------------- */

/*
 * Messages waiting to leave (smtpd's outbound queue, and local copies a
 * notice could not deliver yet) live in the store, so that a delivery and
 * its queue entries are one transaction and a backup has both.  The store
 * keeps each entry's bytes opaque (smtpd encodes them, smtpd/smtp_queue.c)
 * and knows only its id and when it is next due.
 */
#define STORE_QUEUE_ID_MAX 64		/* bytes of an entry id */
/* An entry: the message plus its envelope, at most this beyond the
   [limits] message_max. */
#define STORE_QUEUE_OVERHEAD_MAX (4U * 1024 * 1024)

#define STORE_QUEUE_SUMMARY_MAX 256	/* bytes of an entry's summary */

struct store_queue_item {
	const char *id;		/* printable ASCII, 1..STORE_QUEUE_ID_MAX */
	int64_t next_try;	/* seconds since the epoch: due from then */
	const char *summary;	/* one line for `govmailctl queue list`
				   (NULL: none; cut at ..._SUMMARY_MAX) */
	const uint8_t *data;	/* the caller's encoding */
	size_t len;
};

/* Add or replace one entry (one durable transaction). */
int store_queue_put(struct store *store, const struct store_queue_item *item,
    const char **error_r);
/* Remove one entry; 0 also when it was not there. */
int store_queue_del(struct store *store, const char *id,
    const char **error_r);
/*
 * Call cb for each entry with next_try <= due (INT64_MAX: every entry), in
 * id order; the item lives during the call.  cb returning non-zero stops
 * (that value is returned).  Reads a snapshot.
 */
int store_queue_list(struct store *store, int64_t due,
    int (*cb)(const struct store_queue_item *item, void *ctx), void *ctx,
    const char **error_r);
/* Make every entry due now; *n_r (may be NULL) entries changed. */
int store_queue_flush(struct store *store, uint64_t *n_r,
    const char **error_r);

/*
 * Inside a delivery transaction (store_deliver_ex's queue_cb): add or
 * replace, or remove, queue entries as part of that same transaction.
 */
struct store_txn_queue;
int store_txn_queue_put(struct store_txn_queue *tq,
    const struct store_queue_item *item);
int store_txn_queue_del(struct store_txn_queue *tq, const char *id);

/* ---- delivery with everything it records ----------------------------- */

#define STORE_DEDUP_REF_MAX 64		/* "delivered as" text kept */
#define STORE_DEDUP_WINDOW_MAX (366LL * 86400)	/* longest window, s */
/* Expired de-duplication records store_maintain() removes per call. */
#define STORE_DEDUP_EXPIRE_BATCH 1000

/*
 * What a delivery records besides the index records, all in the one
 * transaction (every field may be 0/NULL: then it is not done).
 *
 * notice_id: the delivery is (part of) a signed notice with this
 *   Message-ID ("<...>", printable ASCII, <= STORE_NOTICE_ID_MAX): every
 *   result is recorded for `govmailctl notice report` (delivered ones as
 *   packed mailbox id/UID pairs, failed ones by address).  notice_list and
 *   notice_sender name the list and the poster for a new notice; when they
 *   are NULL and the notice is unknown, nothing is recorded (a retry of a
 *   message that was not a notice).
 * notice_defer: a recipient over quota (STORE_EQUOTA) is recorded as
 *   deferred, not failed: the caller queues its copy (queue_cb).
 * queue_cb: called inside the transaction, after the index records, with
 *   the per-recipient results (possibly several times, once per attempt
 *   after a deadlock: it must only use tq and its own ctx); it adds,
 *   replaces or removes queue entries with store_txn_queue_put/del.  A
 *   negative return aborts the whole delivery with that error.
 * dedup_account, dedup_id: an authenticated submission by this account
 *   with this Message-ID.  If the pair was recorded before and its
 *   dedup_until has not passed, nothing at all is stored: the call
 *   returns STORE_EEXISTS and copies the earlier dedup_ref into
 *   dup_ref_r.  Otherwise, if the message was accepted somewhere (a copy
 *   stored or a queue entry added), the pair is recorded with dedup_until
 *   (seconds since the epoch) and dedup_ref (at most STORE_DEDUP_REF_MAX
 *   bytes, e.g. smtpd's "delivered as" id); store_maintain() expires it.
 *   A submission nobody accepted (every mailbox full) is not recorded.
 */
struct store_deliver_opts {
	const char *notice_id;
	const char *notice_list;
	const char *notice_sender;
	int notice_defer;
	int (*queue_cb)(struct store_txn_queue *tq,
	    const struct store_rcpt_result *results, size_t nres, void *ctx);
	void *queue_ctx;
	const char *dedup_account;
	const char *dedup_id;
	int64_t dedup_until;
	const char *dedup_ref;
};

/*
 * store_deliver() with opts (may be NULL: then the same).  nrcpts may be 0
 * (a remote-only submission: only what opts records).  Returns as
 * store_deliver(), or STORE_EEXISTS for a duplicate submission (see
 * dedup_id above; dup_ref_r, STORE_DEDUP_REF_MAX + 1 bytes, may be NULL).
 */
int store_deliver_ex(struct store *store, const uint8_t *msg, size_t len,
    const char *const *rcpts, size_t nrcpts, int64_t internaldate,
    struct store_rcpt_result *results, const struct store_deliver_opts *opts,
    char *dup_ref_r, const char **error_r);

/* ---- notice reports (store_notice.c) -------------------------------- */

/*
 * Where each signed notice went, for `govmailctl notice report`: tables
 * of the store, written in the delivery's own transaction
 * (store_deliver_ex with notice_id), so a backup has them.  A notice is
 * keyed by its Message-ID ("<...>", printable ASCII, at most
 * STORE_NOTICE_ID_MAX bytes).  Functions return 0 or a negative enum
 * store_error.
 */
#define STORE_NOTICE_ID_MAX 998		/* RFC 5322 2.1.1 line limit */
/* Delivered recipients packed into one record (mailbox id, UID pairs). */
#define STORE_NOTICE_PACK_MAX 1000

/*
 * Record results of a notice outside a delivery (one durable
 * transaction): the notice (list, poster, when: seconds since the epoch)
 * if new, a delivered result as its mailbox/UID, any other status as
 * failed (a deferred recipient that finally failed).  A later record for
 * the same recipient replaces the earlier (deferred -> delivered/failed).
 */
int store_notice_record(struct store *store, const char *message_id,
    const char *list, const char *sender, int64_t when,
    const struct store_rcpt_result *results, size_t nres,
    const char **error_r);

/* A notice; strings owned by the struct (store_notice_info_free). */
struct store_notice_info {
	char *message_id;
	char *list;
	char *sender;
	int64_t when;
};
void store_notice_info_free(struct store_notice_info *info);

/*
 * One recipient: status is a store_deliver() status (STORE_OK, ...).
 * For a delivered one, address is the owner of the mailbox now ("" if
 * the mailbox is gone); a failed or deferred one keeps the address it was
 * sent to.  deferred: over quota, its copy waits in the queue.
 */
struct store_notice_rcpt {
	const char *address;
	int status;
	int deferred;
	uint32_t mailbox_id;
	uint32_t uid;
};

/* Every notice, in Message-ID order; cb returning non-zero stops (that
 * value is returned).  The info passed to cb lives during the call. */
int store_notice_list(struct store *store,
    int (*cb)(const struct store_notice_info *info, void *ctx), void *ctx,
    const char **error_r);
/* One notice (STORE_ENOTFOUND if unknown); free with _info_free. */
int store_notice_get(struct store *store, const char *message_id,
    struct store_notice_info *info_r, const char **error_r);
/*
 * Its recipients: the delivered ones in the order recorded (their
 * addresses looked up), then the failed and deferred ones in address
 * order; cb as for store_notice_list.  STORE_ENOTFOUND if the notice is
 * unknown.
 */
int store_notice_rcpts(struct store *store, const char *message_id,
    int (*cb)(const struct store_notice_rcpt *rcpt, void *ctx), void *ctx,
    const char **error_r);

#endif
