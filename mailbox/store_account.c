/*
 * store_account.c - domains, accounts (class data, Argon2id passwords and
 * their in-memory success cache), aliases, lists and recipient resolution.
 *
 * Runs in every process using the store.  Addresses, names and class data
 * come from operators (govmailctl) or from the network (SMTP recipients,
 * IMAP logins): all of it is checked here against the named limits in
 * mailbox.h before it reaches a key.
 */
#include "autoconf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <db.h>
#include <sodium.h>

#include "buf.h"
#include "ident.h"
#include "idn.h"
#include "log.h"
#include "xmalloc.h"
#include "mailbox_priv.h"

#define ST_LIST_KIND_SELECTOR 0
#define ST_LIST_KIND_POSTER 1
/* Longest list entries key: address, NUL, kind. */
#define ST_LIST_KEY_MAX (STORE_ADDRESS_MAX + 2)

/* ---- names and syntax ---- */

static const char *const st_class_names[] = {
	NULL, "official", "department", "legal-person", "citizen",
};

const char *
store_class_name(enum store_class c)
{
	if (c < STORE_CLASS_OFFICIAL || c > STORE_CLASS_CITIZEN)
		return "unknown";
	return st_class_names[c];
}

int
store_class_parse(const char *s, enum store_class *class_r)
{
	int i;

	for (i = STORE_CLASS_OFFICIAL; i <= STORE_CLASS_CITIZEN; i++)
		if (str_casecmp(s, st_class_names[i]) == 0) {
			*class_r = (enum store_class)i;
			return 0;
		}
	return -1;
}

/* 1 if s[0..n) is well-formed UTF-8 without control characters. */
static int
st_utf8_ok(const uint8_t *s, size_t n)
{
	size_t i = 0, k;
	uint32_t cp;

	while (i < n) {
		if ((k = str_utf8_decode(s + i, n - i, &cp)) == 0 ||
		    cp < 0x20 || cp == 0x7f)
			return 0;
		i += k;
	}
	return 1;
}

int
st_domain_norm(const char *domain, char *out, size_t outsz,
    const char **error_r)
{
	size_t n, i, label = 0;
	char c;

	n = strlen(domain);
	if (n == 0 || n > STORE_DOMAIN_MAX) {
		*error_r = "domain length out of range";
		return STORE_EINVAL;
	}
	if (!st_utf8_ok((const uint8_t *)domain, n)) {
		*error_r = "domain is not valid UTF-8 text";
		return STORE_EINVAL;
	}
	for (i = 0; i <= n; i++) {
		c = domain[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || domain[i - 1] == '-') {
				*error_r = "bad domain label";
				return STORE_EINVAL;
			}
			label = 0;
			continue;
		}
		if (c == '-' && label == 0) {
			*error_r = "bad domain label";
			return STORE_EINVAL;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' ||
		    (unsigned char)c >= 0x80)) {
			*error_r = "bad character in domain";
			return STORE_EINVAL;
		}
		label++;
	}
	if (str_copy(out, outsz, domain) == -1) {
		*error_r = "domain too long";
		return STORE_EINVAL;
	}
	str_lower(out);
	/*
	 * An internationalized domain in one form whichever way it came:
	 * by its U-labels (RFC 5890), as users write it and SMTPUTF8
	 * carries it; the A-labels of a client without SMTPUTF8 converted.
	 */
	if (idn_needed(out) && idn_unicode(out, out, outsz) != 0) {
		*error_r = "not a valid internationalized domain name";
		return STORE_EINVAL;
	}
	return 0;
}

int
st_address_norm(const char *address, char *out, size_t outsz,
    const char **error_r)
{
	char dom[STORE_DOMAIN_MAX + 1];
	const char *at;
	size_t n, ll, i;
	unsigned char c;
	int r;

	n = strlen(address);
	if (n == 0 || n > STORE_ADDRESS_MAX) {
		*error_r = "address length out of range";
		return STORE_EINVAL;
	}
	at = strrchr(address, '@');
	if (at == NULL) {
		*error_r = "address has no domain";
		return STORE_EINVAL;
	}
	ll = (size_t)(at - address);
	if (ll == 0 || ll > STORE_LOCALPART_MAX) {
		*error_r = "local part length out of range";
		return STORE_EINVAL;
	}
	if (!st_utf8_ok((const uint8_t *)address, ll)) {
		*error_r = "local part is not valid UTF-8 text";
		return STORE_EINVAL;
	}
	for (i = 0; i < ll; i++) {
		c = (unsigned char)address[i];
		if (c < 0x80 && (c <= ' ' || strchr("()<>[]\\,;:\"@", c))) {
			*error_r = "bad character in local part";
			return STORE_EINVAL;
		}
		if (c == '.' && (i == 0 || i == ll - 1 ||
		    address[i + 1] == '.')) {
			*error_r = "bad dot in local part";
			return STORE_EINVAL;
		}
	}
	if ((r = st_domain_norm(at + 1, dom, sizeof(dom), error_r)) != 0)
		return r;
	if (ll + 1 + strlen(dom) + 1 > outsz) {
		*error_r = "address too long";
		return STORE_EINVAL;
	}
	memcpy(out, address, ll);
	out[ll] = '@';
	memcpy(out + ll + 1, dom, strlen(dom) + 1);
	/* ASCII case folding of the local part (RFC 5321 leaves it to us). */
	str_lower(out);
	return 0;
}

/* The domain part of a normalised address. */
static const char *
st_addr_domain(const char *norm)
{
	const char *at = strrchr(norm, '@');

	return at != NULL ? at + 1 : "";
}

static int
st_text_ok(const char *s)
{
	size_t n;

	if (s == NULL)
		return 1;
	n = strlen(s);
	return n <= STORE_TEXT_MAX && st_utf8_ok((const uint8_t *)s, n);
}

/* ---- domains ---- */

struct dom_ctx {
	char name[STORE_DOMAIN_MAX + 1];
	int (*cb)(const char *, void *);
	void *ctx;
	char **list;
	size_t n;
};

static int
st_domain_add_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct dom_ctx *d = arg;
	uint8_t rec[9];

	rec[0] = STORE_REC_VERSION;
	be64_put(rec + 1, (uint64_t)time(NULL));
	return st_put(s, SDB_DOMAINS, txn, d->name, strlen(d->name), rec,
	    sizeof(rec), DB_NOOVERWRITE);
}

int
store_domain_add(struct store *s, const char *domain, const char **error_r)
{
	struct dom_ctx d;
	const char *err;
	int r;

	if ((r = st_domain_norm(domain, d.name, sizeof(d.name), &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	r = st_txn_run(s, ST_TXN_WRITE, st_domain_add_fn, &d, error_r);
	if (r == STORE_EEXISTS && error_r != NULL)
		*error_r = "domain exists already";
	return r;
}

/* 1 if a key of db starts with "@domain" at its end (address keys). */
static int
st_domain_in_use(struct store *s, DB_TXN *txn, int dbi, const char *dom)
{
	struct st_cursor c;
	size_t dl = strlen(dom), kl;
	const char *k;
	int r, used = 0;

	if ((r = st_cursor_open(s, dbi, txn, &c)) != 0)
		return r;
	/* A scan; domain deletion is rare and administrative. */
	while ((r = st_cursor_get(&c, NULL, 0, DB_NEXT_NODUP)) == 0) {
		k = c.k.data;
		kl = c.k.size;
		if (kl > dl + 1 && k[kl - dl - 1] == '@' &&
		    memcmp(k + kl - dl, dom, dl) == 0) {
			used = 1;
			break;
		}
	}
	st_cursor_close(&c);
	if (r != 0 && r != STORE_ENOTFOUND)
		return r;
	return used;
}

static int
st_domain_del_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct dom_ctx *d = arg;
	static const int dbs[] = { SDB_ACCOUNTS, SDB_ALIASES, SDB_LISTS };
	size_t i;
	int r;

	if ((r = st_exists(s, SDB_DOMAINS, txn, d->name,
	    strlen(d->name))) != 0)
		return r;
	for (i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		r = st_domain_in_use(s, txn, dbs[i], d->name);
		if (r < 0)
			return r;
		if (r > 0)
			return st_fail(s, STORE_EPERM,
			    "domain still has accounts, aliases or lists");
	}
	return st_del(s, SDB_DOMAINS, txn, d->name, strlen(d->name));
}

int
store_domain_del(struct store *s, const char *domain, const char **error_r)
{
	struct dom_ctx d;
	const char *err;
	int r;

	if ((r = st_domain_norm(domain, d.name, sizeof(d.name), &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	return st_txn_run(s, ST_TXN_WRITE, st_domain_del_fn, &d, error_r);
}

static int
st_domain_exists_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct dom_ctx *d = arg;
	int r;

	r = st_exists(s, SDB_DOMAINS, txn, d->name, strlen(d->name));
	if (r == STORE_ENOTFOUND)
		return 0;
	return r == 0 ? 1 : r;
}

int
store_domain_exists(struct store *s, const char *domain)
{
	struct dom_ctx d;
	const char *err;

	if (st_domain_norm(domain, d.name, sizeof(d.name), &err) != 0)
		return 0;
	return st_txn_run(s, ST_TXN_READ, st_domain_exists_fn, &d, NULL);
}

static void
st_strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void
st_strv_push(char ***v, size_t *n, const void *p, size_t len)
{
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = xmemdup(p, len);
}

static int
st_domain_list_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct dom_ctx *d = arg;
	struct st_cursor c;
	int r;

	st_strv_free(d->list, d->n);
	d->list = NULL;
	d->n = 0;
	if ((r = st_cursor_open(s, SDB_DOMAINS, txn, &c)) != 0)
		return r;
	while ((r = st_cursor_get(&c, NULL, 0, DB_NEXT)) == 0)
		st_strv_push(&d->list, &d->n, c.k.data, c.k.size);
	st_cursor_close(&c);
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
store_domain_list(struct store *s, int (*cb)(const char *, void *),
    void *ctx, const char **error_r)
{
	struct dom_ctx d;
	size_t i;
	int r;

	memset(&d, 0, sizeof(d));
	r = st_txn_run(s, ST_TXN_READ, st_domain_list_fn, &d, error_r);
	for (i = 0; r == 0 && i < d.n; i++)
		if (cb(d.list[i], ctx) != 0)
			break;
	st_strv_free(d.list, d.n);
	return r;
}

/* ---- accounts ---- */

int
st_account_load(struct store *s, DB_TXN *txn, const char *norm,
    struct acct_rec *a)
{
	struct st_val v;
	int r;

	memset(a, 0, sizeof(*a));
	r = st_get(s, SDB_ACCOUNTS, txn, norm, strlen(norm), &v);
	if (r != 0)
		return r;
	r = acct_rec_decode(v.data, v.len, a);
	free(v.data);
	if (r != 0)
		return st_fail(s, STORE_EDAMAGED, "damaged account record");
	return 0;
}

int
st_account_load_id(struct store *s, DB_TXN *txn, uint32_t id,
    struct acct_rec *a)
{
	struct st_val v;
	uint8_t k[4];
	char *norm;
	int r;

	be32_put(k, id);
	memset(a, 0, sizeof(*a));
	if ((r = st_get(s, SDB_ACCT_IDS, txn, k, 4, &v)) != 0)
		return r;
	norm = xmemdup(v.data, v.len);
	free(v.data);
	r = st_account_load(s, txn, norm, a);
	free(norm);
	return r;
}

int
st_usage_get(struct store *s, DB_TXN *txn, uint32_t acct_id,
    uint64_t *bytes_r, uint64_t *messages_r)
{
	struct st_val v;
	uint8_t k[4];
	int r;

	be32_put(k, acct_id);
	*bytes_r = *messages_r = 0;
	r = st_get(s, SDB_USAGE, txn, k, 4, &v);
	if (r == STORE_ENOTFOUND)
		return 0;
	if (r != 0)
		return r;
	if (v.len >= 16) {
		*bytes_r = be64_get(v.data);
		*messages_r = be64_get(v.data + 8);
	}
	free(v.data);
	return 0;
}

void
st_usage_encode(uint8_t out[STORE_USAGE_REC_LEN], uint64_t bytes,
    uint64_t messages)
{
	memset(out, 0, STORE_USAGE_REC_LEN);
	be64_put(out, bytes);
	be64_put(out + 8, messages);
}

int
st_usage_set(struct store *s, DB_TXN *txn, uint32_t acct_id, uint64_t bytes,
    uint64_t messages)
{
	uint8_t k[4], v[STORE_USAGE_REC_LEN];

	be32_put(k, acct_id);
	st_usage_encode(v, bytes, messages);
	return st_put(s, SDB_USAGE, txn, k, 4, v, sizeof(v), 0);
}

int
st_usage_add(struct store *s, DB_TXN *txn, uint32_t acct_id, int64_t dbytes,
    int64_t dmessages)
{
	uint64_t bytes, messages;
	int r;

	if ((r = st_usage_get(s, txn, acct_id, &bytes, &messages)) != 0)
		return r;
	/* Never wrap below zero; store_check repairs drifted counters. */
	bytes = dbytes < 0 && (uint64_t)-dbytes > bytes ? 0 :
	    bytes + (uint64_t)dbytes;
	messages = dmessages < 0 && (uint64_t)-dmessages > messages ? 0 :
	    messages + (uint64_t)dmessages;
	return st_usage_set(s, txn, acct_id, bytes, messages);
}

/* STORE_EEXISTS if norm is an account, alias or list; 0 if free. */
static int
st_address_free(struct store *s, DB_TXN *txn, const char *norm)
{
	static const int dbs[] = { SDB_ACCOUNTS, SDB_ALIASES, SDB_LISTS };
	size_t i;
	int r;

	for (i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		r = st_exists(s, dbs[i], txn, norm, strlen(norm));
		if (r == 0)
			return st_fail(s, STORE_EEXISTS,
			    "address is in use already");
		if (r != STORE_ENOTFOUND)
			return r;
	}
	return 0;
}

static int
st_domain_check(struct store *s, DB_TXN *txn, const char *norm)
{
	const char *dom = st_addr_domain(norm);
	int r;

	r = st_exists(s, SDB_DOMAINS, txn, dom, strlen(dom));
	if (r == STORE_ENOTFOUND)
		return st_fail(s, STORE_ENOTFOUND, "no such local domain");
	return r;
}

static const struct {
	const char *name;
	unsigned use;
} st_default_mailboxes[] = {
	{ "INBOX", STORE_USE_INBOX },
	{ "Sent", STORE_USE_SENT },
	{ "Drafts", STORE_USE_DRAFTS },
	{ "Trash", STORE_USE_TRASH },
	{ "Junk", STORE_USE_JUNK },
	{ "Archive", STORE_USE_ARCHIVE },
};

struct acct_add_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
	struct acct_rec a;
};

static int
st_account_add_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct acct_add_ctx *c = arg;
	struct buf b;
	uint8_t k[4];
	uint32_t id, mbox;
	size_t i;
	int r;

	if ((r = st_domain_check(s, txn, c->norm)) != 0)
		return r;
	if ((r = st_address_free(s, txn, c->norm)) != 0)
		return r;
	if (c->a.has_resident_id) {
		r = st_exists(s, SDB_RESIDENTS, txn, c->a.resident_id_hash, 32);
		if (r == 0)
			return st_fail(s, STORE_EEXISTS,
			    "resident ID number belongs to another account");
		if (r != STORE_ENOTFOUND)
			return r;
	}
	if ((r = st_counter_next(s, txn, "acct", 1, &id)) != 0)
		return r;
	c->a.id = id;
	be32_put(k, id);
	buf_init(&b, BUF_UNBOUNDED);
	acct_rec_encode(&c->a, &b);
	r = st_put(s, SDB_ACCOUNTS, txn, c->norm, strlen(c->norm), b.data,
	    b.len, DB_NOOVERWRITE);
	buf_free(&b);
	if (r != 0)
		return r;
	if ((r = st_put(s, SDB_ACCT_IDS, txn, k, 4, c->norm, strlen(c->norm),
	    0)) != 0)
		return r;
	if (c->a.has_resident_id &&
	    (r = st_put(s, SDB_RESIDENTS, txn, c->a.resident_id_hash, 32, k,
	    4, DB_NOOVERWRITE)) != 0)
		return r;
	if ((r = st_usage_add(s, txn, id, 0, 0)) != 0)
		return r;
	for (i = 0; i < sizeof(st_default_mailboxes) /
	    sizeof(st_default_mailboxes[0]); i++) {
		r = st_mbox_create(s, txn, id, st_default_mailboxes[i].name,
		    st_default_mailboxes[i].use, 1, &mbox);
		if (r != 0)
			return r;
	}
	return 0;
}

/* Uppercase letters and digits of the USCC alphabet, 18 of them. */
static int
st_uscc_shape(const char *code)
{
	size_t i;

	if (strlen(code) != IDENT_USCC_LEN)
		return 0;
	for (i = 0; i < IDENT_USCC_LEN; i++)
		if (!((code[i] >= '0' && code[i] <= '9') ||
		    (code[i] >= 'A' && code[i] <= 'Z')))
			return 0;
	return 1;
}

/* ISO 3166-2 subdivision code: "CN-BJ" style. */
static int
st_subdivision_ok(const char *code)
{
	size_t i, n = strlen(code);

	if (n < 4 || n > 6 || code[2] != '-')
		return 0;
	for (i = 0; i < n; i++) {
		if (i == 2)
			continue;
		if (!((code[i] >= 'A' && code[i] <= 'Z') ||
		    (i > 2 && code[i] >= '0' && code[i] <= '9')))
			return 0;
	}
	return 1;
}

/* Keyed hash of a resident ID number (SECURITY: never stored in clear). */
static int
st_resident_hash(struct store *s, const char *id, uint8_t out[32],
    const char **error_r)
{
	int r;

	if ((r = st_id_key(s, error_r)) != 0)
		return r;
	crypto_generichash(out, 32, (const uint8_t *)id, strlen(id),
	    s->id_key, 32);
	return 0;
}

static int
st_password_hash(struct store *s, const char *password, char **hash_r,
    const char **error_r)
{
	char hash[crypto_pwhash_STRBYTES];
	size_t n = strlen(password);

	if (n == 0 || n > STORE_PASSWORD_MAX) {
		*error_r = "password length out of range";
		return STORE_EINVAL;
	}
	if (crypto_pwhash_str(hash, password, n, s->opslimit,
	    s->memlimit) != 0) {
		*error_r = "password hashing failed (memory)";
		return STORE_ETEMP;
	}
	*hash_r = xstrdup(hash);
	sodium_memzero(hash, sizeof(hash));
	return 0;
}

static int
st_account_spec_check(struct store *s, const struct store_account_spec *sp,
    struct acct_rec *a, const char **error_r)
{
	int r;

	if (sp->class < STORE_CLASS_OFFICIAL ||
	    sp->class > STORE_CLASS_CITIZEN) {
		*error_r = "unknown account class";
		return STORE_EINVAL;
	}
	if (!st_text_ok(sp->display_name) || !st_text_ok(sp->organisation) ||
	    !st_text_ok(sp->title) || !st_text_ok(sp->org_id)) {
		*error_r = "text field too long or not UTF-8 text";
		return STORE_EINVAL;
	}
	if (sp->resident_id != NULL && sp->class != STORE_CLASS_CITIZEN) {
		*error_r = "only citizens have a resident ID number";
		return STORE_EINVAL;
	}
	switch (sp->class) {
	case STORE_CLASS_LEGAL_PERSON:
		if (sp->organisation == NULL || sp->organisation[0] == '\0') {
			*error_r = "a legal person needs its registered name";
			return STORE_EINVAL;
		}
		if (sp->org_id == NULL || !st_uscc_shape(sp->org_id)) {
			*error_r = "a legal person needs an 18-character "
			    "Unified Social Credit Code";
			return STORE_EINVAL;
		}
		if (!ident_uscc_valid(sp->org_id)) {
			if (!sp->legacy_code) {
				*error_r = "Unified Social Credit Code fails "
				    "its check character";
				return STORE_EINVAL;
			}
			log_warnx("store: account %s: legacy credit code "
			    "with a bad check character accepted",
			    a->address);
		}
		break;
	case STORE_CLASS_OFFICIAL:
	case STORE_CLASS_DEPARTMENT:
		if (sp->organisation == NULL || sp->organisation[0] == '\0') {
			*error_r = "an official or department account needs "
			    "its department (organisation)";
			return STORE_EINVAL;
		}
		if (sp->org_id != NULL && sp->org_id[0] != '\0' &&
		    !st_subdivision_ok(sp->org_id)) {
			*error_r = "organisation id must be an ISO 3166-2 "
			    "subdivision code such as CN-BJ";
			return STORE_EINVAL;
		}
		break;
	case STORE_CLASS_CITIZEN:
		if (sp->org_id != NULL && sp->org_id[0] != '\0') {
			*error_r = "a citizen has no organisation id";
			return STORE_EINVAL;
		}
		if (sp->resident_id != NULL) {
			if (!ident_resident_id_valid(sp->resident_id)) {
				*error_r = "resident ID number is not valid";
				return STORE_EINVAL;
			}
			if ((r = st_resident_hash(s, sp->resident_id,
			    a->resident_id_hash, error_r)) != 0)
				return r;
			a->has_resident_id = 1;
		}
		break;
	}
	a->class = (uint8_t)sp->class;
	a->identity_verified = sp->class == STORE_CLASS_CITIZEN &&
	    sp->identity_verified ? 1 : 0;
	a->display_name = xstrdup(sp->display_name ? sp->display_name : "");
	a->organisation = xstrdup(sp->organisation ? sp->organisation : "");
	a->org_id = xstrdup(sp->org_id ? sp->org_id : "");
	a->title = xstrdup(sp->title ? sp->title : "");
	a->cert_serial = xstrdup("");
	a->quota_bytes = sp->quota_bytes ? sp->quota_bytes : s->quota_bytes_def;
	a->quota_messages = sp->quota_messages ? sp->quota_messages :
	    s->quota_messages_def;
	a->created = (int64_t)time(NULL);
	if (sp->password != NULL && sp->password_hash != NULL) {
		*error_r = "a password and a password hash";
		return STORE_EINVAL;
	}
	if (sp->password != NULL) {
		if ((r = st_password_hash(s, sp->password, &a->pwhash,
		    error_r)) != 0)
			return r;
	} else if (sp->password_hash != NULL) {
		/*
		 * Only what crypto_pwhash_str_verify can check: an Argon2
		 * string libsodium decodes (needs_rehash says -1 otherwise).
		 */
		if ((!str_has_prefix(sp->password_hash, "$argon2id$") &&
		    !str_has_prefix(sp->password_hash, "$argon2i$")) ||
		    strlen(sp->password_hash) >= crypto_pwhash_STRBYTES ||
		    crypto_pwhash_str_needs_rehash(sp->password_hash,
		    s->opslimit, s->memlimit) == -1) {
			*error_r = "password hash is no Argon2id or Argon2i "
			    "string libsodium can verify";
			return STORE_EINVAL;
		}
		a->pwhash = xstrdup(sp->password_hash);
	} else
		a->pwhash = xstrdup("");
	return 0;
}

int
store_account_add(struct store *s, const struct store_account_spec *sp,
    const char **error_r)
{
	struct acct_add_ctx c;
	const char *err = NULL;
	int r;

	memset(&c, 0, sizeof(c));
	if (sp->address == NULL) {
		r = STORE_EINVAL;
		err = "no address";
		goto out;
	}
	if ((r = st_address_norm(sp->address, c.norm, sizeof(c.norm),
	    &err)) != 0)
		goto out;
	/*
	 * The local part as given; the domain as normalised (lower case,
	 * an IDN by its U-labels).
	 */
	c.a.address = xasprintf("%.*s%s", (int)(strrchr(sp->address, '@') -
	    sp->address), sp->address, strrchr(c.norm, '@'));
	if ((r = st_account_spec_check(s, sp, &c.a, &err)) != 0)
		goto out;
	r = st_txn_run(s, ST_TXN_WRITE, st_account_add_fn, &c, &err);
out:
	acct_rec_clear(&c.a);
	if (error_r != NULL)
		*error_r = r != 0 ? err : NULL;
	return r;
}

struct acct_del_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
};

/* Mailbox ids of an account. */
static int
st_account_mboxes(struct store *s, DB_TXN *txn, uint32_t acct_id,
    uint32_t **ids_r, size_t *n_r)
{
	struct st_cursor c;
	uint8_t k[4];
	int r;

	*ids_r = NULL;
	*n_r = 0;
	be32_put(k, acct_id);
	if ((r = st_cursor_open(s, SDB_MAILBOXES, txn, &c)) != 0)
		return r;
	r = st_cursor_get(&c, k, 4, DB_SET_RANGE);
	while (r == 0 && c.k.size >= 4 && memcmp(c.k.data, k, 4) == 0) {
		if (c.v.size == 4) {
			*ids_r = xreallocarray(*ids_r, *n_r + 1, 4);
			(*ids_r)[(*n_r)++] = be32_get(c.v.data);
		}
		r = st_cursor_get(&c, NULL, 0, DB_NEXT);
	}
	st_cursor_close(&c);
	if (r != 0 && r != STORE_ENOTFOUND) {
		/* A failed walk (deadlock, ENOSPC) returns nothing to free. */
		free(*ids_r);
		*ids_r = NULL;
		*n_r = 0;
		return r;
	}
	return 0;
}

static int
st_account_del_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct acct_del_ctx *c = arg;
	struct acct_rec a;
	uint32_t *ids;
	uint8_t k[4];
	size_t n, i;
	int r;

	if ((r = st_account_load(s, txn, c->norm, &a)) != 0)
		return r;
	if ((r = st_account_mboxes(s, txn, a.id, &ids, &n)) != 0)
		goto out;
	for (i = 0; i < n && r == 0; i++)
		r = st_mbox_destroy(s, txn, ids[i]);
	free(ids);
	if (r != 0)
		goto out;
	be32_put(k, a.id);
	if ((r = st_del(s, SDB_USAGE, txn, k, 4)) != 0 && r != STORE_ENOTFOUND)
		goto out;
	if ((r = st_del(s, SDB_ACCT_IDS, txn, k, 4)) != 0)
		goto out;
	if (a.has_resident_id && (r = st_del(s, SDB_RESIDENTS, txn,
	    a.resident_id_hash, 32)) != 0 && r != STORE_ENOTFOUND)
		goto out;
	r = st_del(s, SDB_ACCOUNTS, txn, c->norm, strlen(c->norm));
out:
	acct_rec_clear(&a);
	return r;
}

int
store_account_del(struct store *s, const char *address, const char **error_r)
{
	struct acct_del_ctx c;
	const char *err;
	int r;

	if ((r = st_address_norm(address, c.norm, sizeof(c.norm), &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	r = st_txn_run(s, ST_TXN_WRITE, st_account_del_fn, &c, error_r);
	if (r == 0)
		st_auth_cache_forget(c.norm);
	return r;
}

static struct store_account *
st_account_public(const struct acct_rec *a, uint64_t bytes, uint64_t msgs)
{
	struct store_account *p;

	p = xcalloc(1, sizeof(*p));
	p->address = xstrdup(a->address);
	p->id = a->id;
	p->class = (enum store_class)a->class;
	p->display_name = xstrdup(a->display_name);
	p->organisation = xstrdup(a->organisation);
	p->org_id = xstrdup(a->org_id);
	p->title = xstrdup(a->title);
	p->has_resident_id = a->has_resident_id;
	memcpy(p->resident_id_hash, a->resident_id_hash, 32);
	p->identity_verified = a->identity_verified;
	p->quota_bytes = a->quota_bytes;
	p->quota_messages = a->quota_messages;
	p->used_bytes = bytes;
	p->used_messages = msgs;
	p->cert_serial = xstrdup(a->cert_serial);
	p->created = (time_t)a->created;
	p->disabled = a->disabled;
	return p;
}

void
store_account_free(struct store_account *p)
{
	if (p == NULL)
		return;
	free(p->address);
	free(p->display_name);
	free(p->organisation);
	free(p->org_id);
	free(p->title);
	free(p->cert_serial);
	free(p);
}

struct acct_get_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
	struct store_account *acct;
};

static int
st_account_get_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct acct_get_ctx *c = arg;
	struct acct_rec a;
	uint64_t bytes, msgs;
	int r;

	store_account_free(c->acct);
	c->acct = NULL;
	if ((r = st_account_load(s, txn, c->norm, &a)) != 0)
		return r;
	if ((r = st_usage_get(s, txn, a.id, &bytes, &msgs)) == 0)
		c->acct = st_account_public(&a, bytes, msgs);
	acct_rec_clear(&a);
	return r;
}

int
store_account_get(struct store *s, const char *address,
    struct store_account **acct_r, const char **error_r)
{
	struct acct_get_ctx c;
	const char *err;
	int r;

	*acct_r = NULL;
	c.acct = NULL;
	if ((r = st_address_norm(address, c.norm, sizeof(c.norm), &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	r = st_txn_run(s, ST_TXN_READ, st_account_get_fn, &c, error_r);
	if (r == 0)
		*acct_r = c.acct;
	else
		store_account_free(c.acct);
	return r;
}

struct acct_list_ctx {
	const char *domain;
	struct store_account **v;
	size_t n;
};

static void
st_acct_list_reset(struct acct_list_ctx *c)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		store_account_free(c->v[i]);
	free(c->v);
	c->v = NULL;
	c->n = 0;
}

static int
st_account_list_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct acct_list_ctx *c = arg;
	struct st_cursor cur;
	struct acct_rec a;
	uint64_t bytes, msgs;
	int r;

	st_acct_list_reset(c);
	if ((r = st_cursor_open(s, SDB_ACCOUNTS, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (acct_rec_decode(cur.v.data, cur.v.size, &a) != 0)
			continue;
		if (c->domain == NULL ||
		    strcmp(st_addr_domain(a.address), c->domain) == 0) {
			r = st_usage_get(s, txn, a.id, &bytes, &msgs);
			if (r != 0) {
				acct_rec_clear(&a);
				break;
			}
			c->v = xreallocarray(c->v, c->n + 1, sizeof(*c->v));
			c->v[c->n++] = st_account_public(&a, bytes, msgs);
		}
		acct_rec_clear(&a);
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

int
store_account_list(struct store *s, const char *domain,
    int (*cb)(const struct store_account *, void *), void *ctx,
    const char **error_r)
{
	struct acct_list_ctx c;
	char dom[STORE_DOMAIN_MAX + 1];
	const char *err;
	size_t i;
	int r;

	memset(&c, 0, sizeof(c));
	if (domain != NULL) {
		if ((r = st_domain_norm(domain, dom, sizeof(dom), &err)) != 0) {
			if (error_r != NULL)
				*error_r = err;
			return r;
		}
		c.domain = dom;
	}
	r = st_txn_run(s, ST_TXN_READ, st_account_list_fn, &c, error_r);
	for (i = 0; r == 0 && i < c.n; i++)
		if (cb(c.v[i], ctx) != 0)
			break;
	st_acct_list_reset(&c);
	return r;
}

/* One account field change, applied in a write transaction. */
enum acct_set_what {
	ACCT_SET_PASSWORD,
	ACCT_SET_CERT,
	ACCT_SET_QUOTA,
	ACCT_SET_DISABLED,
	ACCT_SET_REHASH,	/* str replaces old, if old is still there */
};

struct acct_set_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
	enum acct_set_what what;
	const char *str;
	const char *old;
	uint64_t q1, q2;
	int flag;
};

static int
st_account_set_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct acct_set_ctx *c = arg;
	struct acct_rec a;
	struct buf b;
	int r;

	if ((r = st_account_load(s, txn, c->norm, &a)) != 0)
		return r;
	switch (c->what) {
	case ACCT_SET_REHASH:
		/* Changed meanwhile (a new password, or rehashed): keep it. */
		if (strcmp(a.pwhash, c->old) != 0) {
			acct_rec_clear(&a);
			return 0;
		}
		/* FALLTHROUGH */
	case ACCT_SET_PASSWORD:
		sodium_memzero(a.pwhash, strlen(a.pwhash));
		free(a.pwhash);
		a.pwhash = xstrdup(c->str);
		break;
	case ACCT_SET_CERT:
		free(a.cert_serial);
		a.cert_serial = xstrdup(c->str);
		break;
	case ACCT_SET_QUOTA:
		a.quota_bytes = c->q1 ? c->q1 : s->quota_bytes_def;
		a.quota_messages = c->q2 ? c->q2 : s->quota_messages_def;
		break;
	case ACCT_SET_DISABLED:
		a.disabled = c->flag ? 1 : 0;
		break;
	}
	buf_init(&b, BUF_UNBOUNDED);
	acct_rec_encode(&a, &b);
	b.secret = 1;
	r = st_put(s, SDB_ACCOUNTS, txn, c->norm, strlen(c->norm), b.data,
	    b.len, 0);
	buf_free(&b);
	acct_rec_clear(&a);
	return r;
}

static int
st_account_set(struct store *s, const char *address, struct acct_set_ctx *c,
    const char **error_r)
{
	const char *err;
	int r;

	if ((r = st_address_norm(address, c->norm, sizeof(c->norm),
	    &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	r = st_txn_run(s, ST_TXN_WRITE, st_account_set_fn, c, error_r);
	if (r == 0 && (c->what == ACCT_SET_PASSWORD ||
	    c->what == ACCT_SET_DISABLED))
		st_auth_cache_forget(c->norm);
	return r;
}

int
store_account_set_password(struct store *s, const char *address,
    const char *password, const char **error_r)
{
	struct acct_set_ctx c;
	char *hash;
	const char *err;
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = st_password_hash(s, password, &hash, &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	c.what = ACCT_SET_PASSWORD;
	c.str = hash;
	r = st_account_set(s, address, &c, error_r);
	sodium_memzero(hash, strlen(hash));
	free(hash);
	return r;
}

int
store_account_set_cert(struct store *s, const char *address,
    const char *serial_hex, const char **error_r)
{
	struct acct_set_ctx c;
	size_t i, n;

	n = serial_hex != NULL ? strlen(serial_hex) : 0;
	/* RFC 5280 4.1.2.2: at most 20 octets, 40 hex digits. */
	for (i = 0; i < n; i++)
		if (!((serial_hex[i] >= '0' && serial_hex[i] <= '9') ||
		    (serial_hex[i] >= 'a' && serial_hex[i] <= 'f') ||
		    (serial_hex[i] >= 'A' && serial_hex[i] <= 'F')))
			break;
	if (i < n || n > 40) {
		if (error_r != NULL)
			*error_r = "certificate serial must be up to 40 hex "
			    "digits";
		return STORE_EINVAL;
	}
	memset(&c, 0, sizeof(c));
	c.what = ACCT_SET_CERT;
	c.str = serial_hex != NULL ? serial_hex : "";
	return st_account_set(s, address, &c, error_r);
}

int
store_account_set_quota(struct store *s, const char *address,
    uint64_t quota_bytes, uint64_t quota_messages, const char **error_r)
{
	struct acct_set_ctx c;

	memset(&c, 0, sizeof(c));
	c.what = ACCT_SET_QUOTA;
	c.q1 = quota_bytes;
	c.q2 = quota_messages;
	return st_account_set(s, address, &c, error_r);
}

int
store_account_set_disabled(struct store *s, const char *address,
    int disabled, const char **error_r)
{
	struct acct_set_ctx c;

	memset(&c, 0, sizeof(c));
	c.what = ACCT_SET_DISABLED;
	c.flag = disabled;
	return st_account_set(s, address, &c, error_r);
}

struct resident_ctx {
	uint8_t hash[32];
	char *address;
};

static int
st_find_resident_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct resident_ctx *c = arg;
	struct acct_rec a;
	struct st_val v;
	int r;

	free(c->address);
	c->address = NULL;
	if ((r = st_get(s, SDB_RESIDENTS, txn, c->hash, 32, &v)) != 0)
		return r;
	if (v.len != 4) {
		free(v.data);
		return st_fail(s, STORE_EDAMAGED, "damaged resident index");
	}
	r = st_account_load_id(s, txn, be32_get(v.data), &a);
	free(v.data);
	if (r != 0)
		return r;
	c->address = xstrdup(a.address);
	acct_rec_clear(&a);
	return 0;
}

int
store_account_find_resident(struct store *s, const char *resident_id,
    char **address_r, const char **error_r)
{
	struct resident_ctx c;
	const char *err;
	int r;

	*address_r = NULL;
	memset(&c, 0, sizeof(c));
	if (!ident_resident_id_valid(resident_id)) {
		if (error_r != NULL)
			*error_r = "resident ID number is not valid";
		return STORE_EINVAL;
	}
	if ((r = st_resident_hash(s, resident_id, c.hash, &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	r = st_txn_run(s, ST_TXN_READ, st_find_resident_fn, &c, error_r);
	if (r == 0)
		*address_r = c.address;
	else
		free(c.address);
	return r;
}

/* ---- passwords and the success cache ---- */

struct auth_entry {
	uint8_t hash[32];
	uint8_t addr[16];	/* keyed hash of the address, to forget it */
	time_t expires;
};

static pthread_mutex_t st_auth_lock = PTHREAD_MUTEX_INITIALIZER;
static struct auth_entry *st_auth_cache;
static uint8_t st_auth_key[32];
static char *st_auth_dummy;	/* hash verified for unknown accounts */

/* Caller holds st_auth_lock. */
static void
st_auth_init(void)
{
	if (st_auth_cache != NULL)
		return;
	/* SECURITY: a per-process random key; entries mean nothing outside. */
	randombytes_buf(st_auth_key, sizeof(st_auth_key));
	st_auth_cache = xcalloc(STORE_AUTH_CACHE_SIZE, sizeof(*st_auth_cache));
}

static void
st_auth_addr_hash(const char *norm, uint8_t out[16])
{
	crypto_generichash(out, 16, (const uint8_t *)norm, strlen(norm),
	    st_auth_key, sizeof(st_auth_key));
}

/*
 * The cache key covers the stored hash too, so a password changed by
 * another process makes old entries unreachable at once.
 */
static void
st_auth_key_hash(const char *norm, const char *password, const char *pwhash,
    uint8_t out[32])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, st_auth_key, sizeof(st_auth_key), 32);
	crypto_generichash_update(&st, (const uint8_t *)norm,
	    strlen(norm) + 1);
	crypto_generichash_update(&st, (const uint8_t *)password,
	    strlen(password) + 1);
	crypto_generichash_update(&st, (const uint8_t *)pwhash,
	    strlen(pwhash));
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st));
}

static size_t
st_auth_slot(const uint8_t h[32])
{
	return (size_t)(be32_get(h) % STORE_AUTH_CACHE_SIZE);
}

void
st_auth_cache_forget(const char *norm)
{
	uint8_t a[16];
	size_t i;

	(void)pthread_mutex_lock(&st_auth_lock);
	if (st_auth_cache != NULL) {
		st_auth_addr_hash(norm, a);
		for (i = 0; i < STORE_AUTH_CACHE_SIZE; i++)
			if (st_auth_cache[i].expires != 0 &&
			    sodium_memcmp(st_auth_cache[i].addr, a, 16) == 0)
				sodium_memzero(&st_auth_cache[i],
				    sizeof(st_auth_cache[i]));
	}
	(void)pthread_mutex_unlock(&st_auth_lock);
}

struct pw_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
	char *pwhash;
	int usable;
};

static int
st_password_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct pw_ctx *c = arg;
	struct acct_rec a;
	int r;

	if (c->pwhash != NULL) {
		sodium_memzero(c->pwhash, strlen(c->pwhash));
		free(c->pwhash);
		c->pwhash = NULL;
	}
	c->usable = 0;
	r = st_account_load(s, txn, c->norm, &a);
	if (r == STORE_ENOTFOUND)
		return 0;
	if (r != 0)
		return r;
	c->usable = !a.disabled && a.pwhash[0] != '\0';
	c->pwhash = xstrdup(a.pwhash);
	acct_rec_clear(&a);
	return 0;
}

/*
 * After a successful check: a hash made with other limits than the
 * configured ones (an older setting, or an imported Argon2i hash) is made
 * again from the password now at hand and stored in its place, unless it
 * changed meanwhile.  A failure only costs the upgrade, never the login.
 */
static void
st_password_rehash(struct store *s, struct pw_ctx *c, const char *password)
{
	struct acct_set_ctx sc;
	char *hash;
	const char *err = NULL;

	if (crypto_pwhash_str_needs_rehash(c->pwhash, s->opslimit,
	    s->memlimit) != 1)
		return;
	if (st_password_hash(s, password, &hash, &err) != 0) {
		log_warnx("store: event=password-rehash-failed error=\"%s\"",
		    err);
		return;
	}
	memset(&sc, 0, sizeof(sc));
	(void)str_copy(sc.norm, sizeof(sc.norm), c->norm);
	sc.what = ACCT_SET_REHASH;
	sc.str = hash;
	sc.old = c->pwhash;
	if (st_txn_run(s, ST_TXN_WRITE, st_account_set_fn, &sc, &err) != 0) {
		log_warnx("store: event=password-rehash-failed error=\"%s\"",
		    err != NULL ? err : "store");
		sodium_memzero(hash, strlen(hash));
		free(hash);
		return;
	}
	/* The cache entry made next is keyed by the hash now stored. */
	sodium_memzero(c->pwhash, strlen(c->pwhash));
	free(c->pwhash);
	c->pwhash = hash;
}

int
store_password_verify(struct store *s, const char *address,
    const char *password)
{
	struct pw_ctx c;
	struct auth_entry *e;
	uint8_t h[32];
	const char *err;
	time_t now;
	size_t plen;
	int r, ok = 0, hit = 0;

	memset(&c, 0, sizeof(c));
	plen = strlen(password);
	if (plen == 0 || plen > STORE_PASSWORD_MAX ||
	    st_address_norm(address, c.norm, sizeof(c.norm), &err) != 0)
		return 0;
	r = st_txn_run(s, ST_TXN_READ, st_password_fn, &c, NULL);
	if (r < 0)
		return r;
	now = time(NULL);
	if (c.usable && s->auth_ttl > 0) {
		(void)pthread_mutex_lock(&st_auth_lock);
		st_auth_init();
		st_auth_key_hash(c.norm, password, c.pwhash, h);
		e = &st_auth_cache[st_auth_slot(h)];
		if (e->expires > now && sodium_memcmp(e->hash, h, 32) == 0)
			hit = 1;
		(void)pthread_mutex_unlock(&st_auth_lock);
		if (hit) {
			ok = 1;
			goto out;
		}
	}
	if (!c.usable) {
		/*
		 * SECURITY: spend the same Argon2id work for an unknown or
		 * disabled account, so timing does not tell them apart.
		 */
		char tmp[crypto_pwhash_STRBYTES], *dummy = NULL;

		(void)pthread_mutex_lock(&st_auth_lock);
		if (st_auth_dummy != NULL)
			dummy = xstrdup(st_auth_dummy);
		(void)pthread_mutex_unlock(&st_auth_lock);
		if (dummy == NULL && crypto_pwhash_str(tmp, "x", 1,
		    s->opslimit, s->memlimit) == 0) {
			dummy = xstrdup(tmp);
			(void)pthread_mutex_lock(&st_auth_lock);
			if (st_auth_dummy == NULL)
				st_auth_dummy = xstrdup(tmp);
			(void)pthread_mutex_unlock(&st_auth_lock);
		}
		if (dummy != NULL && crypto_pwhash_str_verify(dummy,
		    password, plen) == 0)
			log_debug("store: dummy hash matched");
		free(dummy);
		goto out;
	}
	if (crypto_pwhash_str_verify(c.pwhash, password, plen) != 0)
		goto out;
	ok = 1;
	st_password_rehash(s, &c, password);
	if (s->auth_ttl > 0) {
		(void)pthread_mutex_lock(&st_auth_lock);
		st_auth_init();
		st_auth_key_hash(c.norm, password, c.pwhash, h);
		e = &st_auth_cache[st_auth_slot(h)];
		memcpy(e->hash, h, 32);
		st_auth_addr_hash(c.norm, e->addr);
		e->expires = now + (time_t)s->auth_ttl;
		(void)pthread_mutex_unlock(&st_auth_lock);
	}
out:
	sodium_memzero(h, sizeof(h));
	if (c.pwhash != NULL) {
		sodium_memzero(c.pwhash, strlen(c.pwhash));
		free(c.pwhash);
	}
	return ok;
}

/* ---- aliases ---- */

struct alias_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
	char target[STORE_ADDRESS_MAX + 1];
	int has_target;
};

static int
st_alias_add_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct alias_ctx *c = arg;
	int r;

	if ((r = st_domain_check(s, txn, c->norm)) != 0)
		return r;
	r = st_exists(s, SDB_ACCOUNTS, txn, c->norm, strlen(c->norm));
	if (r == 0)
		return st_fail(s, STORE_EEXISTS, "address is an account");
	if (r != STORE_ENOTFOUND)
		return r;
	r = st_exists(s, SDB_LISTS, txn, c->norm, strlen(c->norm));
	if (r == 0)
		return st_fail(s, STORE_EEXISTS, "address is a list");
	if (r != STORE_ENOTFOUND)
		return r;
	r = st_put(s, SDB_ALIASES, txn, c->norm, strlen(c->norm), c->target,
	    strlen(c->target), DB_NODUPDATA);
	if (r == STORE_EEXISTS)
		return st_fail(s, r, "alias has that target already");
	return r;
}

static int
st_alias_args(struct alias_ctx *c, const char *alias, const char *target,
    const char **error_r)
{
	const char *err;
	int r;

	memset(c, 0, sizeof(*c));
	if ((r = st_address_norm(alias, c->norm, sizeof(c->norm), &err)) ==
	    0 && target != NULL) {
		r = st_address_norm(target, c->target, sizeof(c->target),
		    &err);
		c->has_target = 1;
	}
	if (r != 0 && error_r != NULL)
		*error_r = err;
	return r;
}

int
store_alias_add(struct store *s, const char *alias, const char *target,
    const char **error_r)
{
	struct alias_ctx c;
	int r;

	if (target == NULL) {
		if (error_r != NULL)
			*error_r = "alias needs a target";
		return STORE_EINVAL;
	}
	if ((r = st_alias_args(&c, alias, target, error_r)) != 0)
		return r;
	return st_txn_run(s, ST_TXN_WRITE, st_alias_add_fn, &c, error_r);
}

static int
st_alias_del_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct alias_ctx *c = arg;

	if (c->has_target)
		return st_del_dup(s, SDB_ALIASES, txn, c->norm,
		    strlen(c->norm), c->target, strlen(c->target));
	return st_del(s, SDB_ALIASES, txn, c->norm, strlen(c->norm));
}

int
store_alias_del(struct store *s, const char *alias, const char *target,
    const char **error_r)
{
	struct alias_ctx c;
	int r;

	if ((r = st_alias_args(&c, alias, target, error_r)) != 0)
		return r;
	return st_txn_run(s, ST_TXN_WRITE, st_alias_del_fn, &c, error_r);
}

/* ---- lists ---- */

struct list_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
	uint8_t key[ST_LIST_KEY_MAX];
	size_t klen;
	unsigned flags;
	int kind;
	char entry[STORE_ADDRESS_MAX + 32];
	char **v;
	size_t n;
};

static void
st_list_key(struct list_ctx *c, int kind)
{
	size_t n = strlen(c->norm);

	memcpy(c->key, c->norm, n);
	c->key[n] = '\0';
	c->key[n + 1] = (uint8_t)kind;
	c->klen = n + 2;
	c->kind = kind;
}

static int
st_list_add_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct list_ctx *c = arg;
	uint8_t rec[5];
	int r;

	if ((r = st_domain_check(s, txn, c->norm)) != 0)
		return r;
	if ((r = st_address_free(s, txn, c->norm)) != 0)
		return r;
	rec[0] = STORE_REC_VERSION;
	be32_put(rec + 1, c->flags);
	return st_put(s, SDB_LISTS, txn, c->norm, strlen(c->norm), rec, 5,
	    DB_NOOVERWRITE);
}

int
store_list_add(struct store *s, const char *list, unsigned flags,
    const char **error_r)
{
	struct list_ctx c;
	const char *err;
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = st_address_norm(list, c.norm, sizeof(c.norm), &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	if (flags & ~(unsigned)STORE_LIST_NOTICE) {
		if (error_r != NULL)
			*error_r = "unknown list flags";
		return STORE_EINVAL;
	}
	c.flags = flags;
	return st_txn_run(s, ST_TXN_WRITE, st_list_add_fn, &c, error_r);
}

static int
st_list_del_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct list_ctx *c = arg;
	int r, kind;

	if ((r = st_exists(s, SDB_LISTS, txn, c->norm, strlen(c->norm))) != 0)
		return r;
	for (kind = 0; kind <= 1; kind++) {
		st_list_key(c, kind);
		r = st_del(s, SDB_LIST_ENTRIES, txn, c->key, c->klen);
		if (r != 0 && r != STORE_ENOTFOUND)
			return r;
	}
	return st_del(s, SDB_LISTS, txn, c->norm, strlen(c->norm));
}

int
store_list_del(struct store *s, const char *list, const char **error_r)
{
	struct list_ctx c;
	const char *err;
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = st_address_norm(list, c.norm, sizeof(c.norm), &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	return st_txn_run(s, ST_TXN_WRITE, st_list_del_fn, &c, error_r);
}

/* Check and normalise a list selector into out. */
static int
st_selector_norm(const char *sel, char *out, size_t outsz,
    const char **error_r)
{
	char tmp[STORE_ADDRESS_MAX + 1], cls[32];
	enum store_class class;
	const char *rest, *at;
	size_t n;
	int r;

	if (str_has_prefix(sel, "domain:")) {
		if ((r = st_domain_norm(sel + 7, tmp, sizeof(tmp),
		    error_r)) != 0)
			return r;
		(void)snprintf(out, outsz, "domain:%s", tmp);
		return 0;
	}
	if (str_has_prefix(sel, "class:")) {
		rest = sel + 6;
		at = strchr(rest, '@');
		n = at != NULL ? (size_t)(at - rest) : strlen(rest);
		if (n >= sizeof(cls)) {
			*error_r = "unknown class in selector";
			return STORE_EINVAL;
		}
		memcpy(cls, rest, n);
		cls[n] = '\0';
		if (store_class_parse(cls, &class) != 0) {
			*error_r = "unknown class in selector";
			return STORE_EINVAL;
		}
		if (at == NULL) {
			(void)snprintf(out, outsz, "class:%s",
			    store_class_name(class));
			return 0;
		}
		if ((r = st_domain_norm(at + 1, tmp, sizeof(tmp),
		    error_r)) != 0)
			return r;
		(void)snprintf(out, outsz, "class:%s@%s",
		    store_class_name(class), tmp);
		return 0;
	}
	return st_address_norm(sel, out, outsz, error_r);
}

static int
st_list_entry_add_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct list_ctx *c = arg;
	struct st_cursor cur;
	db_recno_t count = 0;
	int r, ret;

	if ((r = st_exists(s, SDB_LISTS, txn, c->norm, strlen(c->norm))) != 0)
		return r;
	if ((r = st_cursor_open(s, SDB_LIST_ENTRIES, txn, &cur)) != 0)
		return r;
	r = st_cursor_get(&cur, c->key, c->klen, DB_SET);
	if (r == 0) {
		ret = cur.dbc->count(cur.dbc, &count, 0);
		r = st_dberr(s, ret, "count");
	}
	st_cursor_close(&cur);
	if (r != 0 && r != STORE_ENOTFOUND)
		return r;
	if (count >= STORE_LIST_SELECTORS_MAX)
		return st_fail(s, STORE_EINVAL, "list has too many entries");
	r = st_put(s, SDB_LIST_ENTRIES, txn, c->key, c->klen, c->entry,
	    strlen(c->entry), DB_NODUPDATA);
	if (r == STORE_EEXISTS)
		return st_fail(s, r, "list has that entry already");
	return r;
}

static int
st_list_entry_del_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct list_ctx *c = arg;

	return st_del_dup(s, SDB_LIST_ENTRIES, txn, c->key, c->klen, c->entry,
	    strlen(c->entry));
}

static int
st_list_entry(struct store *s, const char *list, const char *entry, int kind,
    int add, const char **error_r)
{
	struct list_ctx c;
	const char *err;
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = st_address_norm(list, c.norm, sizeof(c.norm), &err)) == 0) {
		if (kind == ST_LIST_KIND_SELECTOR)
			r = st_selector_norm(entry, c.entry, sizeof(c.entry),
			    &err);
		else
			r = st_address_norm(entry, c.entry, sizeof(c.entry),
			    &err);
	}
	if (r != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	st_list_key(&c, kind);
	return st_txn_run(s, ST_TXN_WRITE, add ? st_list_entry_add_fn :
	    st_list_entry_del_fn, &c, error_r);
}

int
store_list_member_add(struct store *s, const char *list, const char *sel,
    const char **error_r)
{
	return st_list_entry(s, list, sel, ST_LIST_KIND_SELECTOR, 1, error_r);
}

int
store_list_member_del(struct store *s, const char *list, const char *sel,
    const char **error_r)
{
	return st_list_entry(s, list, sel, ST_LIST_KIND_SELECTOR, 0, error_r);
}

int
store_list_poster_add(struct store *s, const char *list, const char *address,
    const char **error_r)
{
	return st_list_entry(s, list, address, ST_LIST_KIND_POSTER, 1,
	    error_r);
}

int
store_list_poster_del(struct store *s, const char *list, const char *address,
    const char **error_r)
{
	return st_list_entry(s, list, address, ST_LIST_KIND_POSTER, 0,
	    error_r);
}

/* Entries of one list key, into c->v. */
static int
st_list_read(struct store *s, DB_TXN *txn, struct list_ctx *c)
{
	struct st_cursor cur;
	int r;

	st_strv_free(c->v, c->n);
	c->v = NULL;
	c->n = 0;
	if ((r = st_cursor_open(s, SDB_LIST_ENTRIES, txn, &cur)) != 0)
		return r;
	r = st_cursor_get(&cur, c->key, c->klen, DB_SET);
	while (r == 0) {
		st_strv_push(&c->v, &c->n, cur.v.data, cur.v.size);
		r = st_cursor_get(&cur, NULL, 0, DB_NEXT_DUP);
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

static int
st_list_entries_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct list_ctx *c = arg;
	int r;

	if ((r = st_exists(s, SDB_LISTS, txn, c->norm, strlen(c->norm))) != 0)
		return r;
	return st_list_read(s, txn, c);
}

int
store_list_entries(struct store *s, const char *list, int kind,
    int (*cb)(const char *, void *), void *ctx, const char **error_r)
{
	struct list_ctx c;
	const char *err;
	size_t i;
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = st_address_norm(list, c.norm, sizeof(c.norm), &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	st_list_key(&c, kind ? ST_LIST_KIND_POSTER : ST_LIST_KIND_SELECTOR);
	r = st_txn_run(s, ST_TXN_READ, st_list_entries_fn, &c, error_r);
	for (i = 0; r == 0 && i < c.n; i++)
		if (cb(c.v[i], ctx) != 0)
			break;
	st_strv_free(c.v, c.n);
	return r;
}

/* ---- resolution ---- */

struct resolve_ctx {
	char norm[STORE_ADDRESS_MAX + 1];
	char sender[STORE_ADDRESS_MAX + 1];
	int has_sender;
	int accounts_only;	/* store_resolve_account(): 1 if not one */
	struct store_rcpt_set set;
};

static void
st_set_reset(struct store_rcpt_set *set)
{
	st_strv_free(set->local, set->nlocal);
	st_strv_free(set->remote, set->nremote);
	memset(set, 0, sizeof(*set));
}

static int
st_resolve_addr(struct store *s, DB_TXN *txn, struct resolve_ctx *c,
    const char *norm, int depth);

/* Every enabled account matching a class and/or domain selector. */
static int
st_resolve_scan(struct store *s, DB_TXN *txn, struct resolve_ctx *c,
    int class, const char *domain)
{
	struct st_cursor cur;
	struct acct_rec a;
	int r;

	if ((r = st_cursor_open(s, SDB_ACCOUNTS, txn, &cur)) != 0)
		return r;
	while ((r = st_cursor_get(&cur, NULL, 0, DB_NEXT)) == 0) {
		if (acct_rec_decode(cur.v.data, cur.v.size, &a) != 0)
			continue;
		if (!a.disabled && (class == 0 || a.class == class) &&
		    (domain == NULL ||
		    strcmp(st_addr_domain(a.address), domain) == 0))
			st_strv_push(&c->set.local, &c->set.nlocal, a.address,
			    strlen(a.address));
		acct_rec_clear(&a);
	}
	st_cursor_close(&cur);
	return r == STORE_ENOTFOUND ? 0 : r;
}

static int
st_resolve_list(struct store *s, DB_TXN *txn, struct resolve_ctx *c,
    const char *norm, int depth)
{
	struct list_ctx l;
	enum store_class class;
	char cls[32];
	const char *sel, *at;
	size_t i, n;
	int r = 0;

	memset(&l, 0, sizeof(l));
	(void)str_copy(l.norm, sizeof(l.norm), norm);
	st_list_key(&l, ST_LIST_KIND_SELECTOR);
	if ((r = st_list_read(s, txn, &l)) != 0)
		goto out;
	for (i = 0; i < l.n && r == 0; i++) {
		sel = l.v[i];
		if (str_has_prefix(sel, "domain:"))
			r = st_resolve_scan(s, txn, c, 0, sel + 7);
		else if (str_has_prefix(sel, "class:")) {
			at = strchr(sel + 6, '@');
			n = at != NULL ? (size_t)(at - sel - 6) :
			    strlen(sel + 6);
			if (n >= sizeof(cls))
				continue;
			memcpy(cls, sel + 6, n);
			cls[n] = '\0';
			if (store_class_parse(cls, &class) != 0)
				continue;
			r = st_resolve_scan(s, txn, c, (int)class,
			    at != NULL ? at + 1 : NULL);
		} else
			r = st_resolve_addr(s, txn, c, sel, depth + 1);
	}
out:
	st_strv_free(l.v, l.n);
	return r;
}

static int
st_resolve_addr(struct store *s, DB_TXN *txn, struct resolve_ctx *c,
    const char *norm, int depth)
{
	struct acct_rec a;
	struct list_ctx l;
	const char *dom;
	size_t i;
	int r;

	if (depth > STORE_ALIAS_DEPTH_MAX)
		return st_fail(s, STORE_EINVAL, "aliases nested too deeply");
	r = st_account_load(s, txn, norm, &a);
	if (r == 0) {
		if (!a.disabled)
			st_strv_push(&c->set.local, &c->set.nlocal, a.address,
			    strlen(a.address));
		acct_rec_clear(&a);
		return 0;
	}
	if (r != STORE_ENOTFOUND)
		return r;
	r = st_exists(s, SDB_LISTS, txn, norm, strlen(norm));
	if (r == 0)
		return st_resolve_list(s, txn, c, norm, depth);
	if (r != STORE_ENOTFOUND)
		return r;
	/* An alias: its targets are sorted duplicates of its key. */
	memset(&l, 0, sizeof(l));
	{
		struct st_cursor cur;

		if ((r = st_cursor_open(s, SDB_ALIASES, txn, &cur)) != 0)
			return r;
		r = st_cursor_get(&cur, norm, strlen(norm), DB_SET);
		while (r == 0) {
			st_strv_push(&l.v, &l.n, cur.v.data, cur.v.size);
			r = st_cursor_get(&cur, NULL, 0, DB_NEXT_DUP);
		}
		st_cursor_close(&cur);
		if (r != STORE_ENOTFOUND)
			goto out;
		r = 0;
	}
	if (l.n > 0) {
		for (i = 0; i < l.n && r == 0; i++)
			r = st_resolve_addr(s, txn, c, l.v[i], depth + 1);
		goto out;
	}
	/* Not ours: a remote target, or a missing local address. */
	dom = st_addr_domain(norm);
	r = st_exists(s, SDB_DOMAINS, txn, dom, strlen(dom));
	if (r == STORE_ENOTFOUND) {
		if (depth > 0)
			st_strv_push(&c->set.remote, &c->set.nremote, norm,
			    strlen(norm));
		r = depth > 0 ? 0 : STORE_ENOTFOUND;
	} else if (r == 0)
		r = depth > 0 ? 0 : STORE_ENOTFOUND;
out:
	st_strv_free(l.v, l.n);
	return r;
}

static int
st_strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
st_strv_uniq(char **v, size_t *n)
{
	size_t i, j = 0;

	if (*n == 0)
		return;
	qsort(v, *n, sizeof(*v), st_strcmp_p);
	for (i = 1; i < *n; i++) {
		if (strcmp(v[i], v[j]) == 0)
			free(v[i]);
		else
			v[++j] = v[i];
	}
	*n = j + 1;
}

/*
 * store_resolve_account(): 1 if norm (not an account) is a list or an
 * alias, whose expansion may be long; 0 if it is neither (resolved here:
 * cheaply found missing, or a remote target); < 0 on an error.
 */
static int
st_resolve_costly(struct store *s, DB_TXN *txn, const char *norm)
{
	int r;

	r = st_exists(s, SDB_LISTS, txn, norm, strlen(norm));
	if (r != STORE_ENOTFOUND)
		return r == 0 ? 1 : r;
	r = st_exists(s, SDB_ALIASES, txn, norm, strlen(norm));
	if (r != STORE_ENOTFOUND)
		return r == 0 ? 1 : r;
	return 0;
}

static int
st_resolve_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct resolve_ctx *c = arg;
	struct acct_rec a;
	struct list_ctx l;
	struct st_val v;
	size_t i;
	int r, allowed;

	st_set_reset(&c->set);
	r = st_account_load(s, txn, c->norm, &a);
	if (r == 0) {
		/* The common case, whole here: the account and its usage. */
		c->set.kind = STORE_ADDR_ACCOUNT;
		if (!a.disabled)
			st_strv_push(&c->set.local, &c->set.nlocal, a.address,
			    strlen(a.address));
		c->set.quota_bytes = a.quota_bytes;
		c->set.quota_messages = a.quota_messages;
		r = st_usage_get(s, txn, a.id, &c->set.used_bytes,
		    &c->set.used_messages);
		acct_rec_clear(&a);
		return r;
	} else if (r != STORE_ENOTFOUND)
		return r;
	else if (c->accounts_only && (r = st_resolve_costly(s, txn,
	    c->norm)) != 0)
		return r;
	else if ((r = st_get(s, SDB_LISTS, txn, c->norm, strlen(c->norm),
	    &v)) == 0) {
		c->set.kind = STORE_ADDR_LIST;
		if (v.len == 5)
			c->set.list_flags = be32_get(v.data + 1);
		free(v.data);
		if (c->has_sender) {
			memset(&l, 0, sizeof(l));
			(void)str_copy(l.norm, sizeof(l.norm), c->norm);
			st_list_key(&l, ST_LIST_KIND_POSTER);
			if ((r = st_list_read(s, txn, &l)) != 0) {
				st_strv_free(l.v, l.n);
				return r;
			}
			allowed = l.n == 0;
			for (i = 0; i < l.n; i++)
				if (strcmp(l.v[i], c->sender) == 0)
					allowed = 1;
			st_strv_free(l.v, l.n);
			if (!allowed)
				return st_fail(s, STORE_EPERM,
				    "sender may not post to this list");
		}
	} else if (r != STORE_ENOTFOUND)
		return r;
	else
		c->set.kind = STORE_ADDR_ALIAS;
	r = st_resolve_addr(s, txn, c, c->norm, 0);
	if (r != 0)
		return r;
	st_strv_uniq(c->set.local, &c->set.nlocal);
	st_strv_uniq(c->set.remote, &c->set.nremote);
	return 0;
}

static int
st_resolve(struct store *s, const char *address, const char *sender,
    int accounts_only, struct store_rcpt_set *set_r, const char **error_r)
{
	struct resolve_ctx c;
	const char *err;
	int r;

	memset(set_r, 0, sizeof(*set_r));
	memset(&c, 0, sizeof(c));
	c.accounts_only = accounts_only;
	if ((r = st_address_norm(address, c.norm, sizeof(c.norm),
	    &err)) != 0) {
		if (error_r != NULL)
			*error_r = err;
		return r;
	}
	if (sender != NULL && sender[0] != '\0') {
		/* A sender we cannot parse is simply not a poster. */
		if (st_address_norm(sender, c.sender, sizeof(c.sender),
		    &err) != 0)
			c.sender[0] = '\0';
		c.has_sender = 1;
	}
	r = st_txn_run(s, ST_TXN_READ, st_resolve_fn, &c, error_r);
	if (r == 0)
		*set_r = c.set;
	else
		st_set_reset(&c.set);
	if (r == STORE_ENOTFOUND && error_r != NULL)
		*error_r = "no such local address";
	return r;
}

int
store_resolve(struct store *s, const char *address, const char *sender,
    struct store_rcpt_set *set_r, const char **error_r)
{
	return st_resolve(s, address, sender, 0, set_r, error_r);
}

int
store_resolve_account(struct store *s, const char *address,
    struct store_rcpt_set *set_r, const char **error_r)
{
	return st_resolve(s, address, NULL, 1, set_r, error_r);
}

void
store_rcpt_set_free(struct store_rcpt_set *set)
{
	if (set != NULL)
		st_set_reset(set);
}
