/*
 * Unit tests for the store (mailbox/store_*.c): domains, accounts, aliases
 * and lists (table-driven, limits at N-1/N/N+1), delivery with single
 * instance storage, UIDs/MODSEQ/CONDSTORE/VANISHED, copy/move/expunge
 * reference counts, quota, mailboxes, encryption at rest, change
 * notification, check/repair and backup/restore.  Each test has its own
 * fresh environment.
 */
#include "autoconf.h"

#include <sys/shm.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <db.h>
#include <sodium.h>

#include "buf.h"
#include "mailbox_priv.h"
#include "store_util.h"

static int
setup(void **state)
{
	*state = fx_new();
	return 0;
}

static int
teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* A string of n copies of c. */
static char *
rep(char c, size_t n)
{
	char *s = malloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ---- domains ---- */

static void
test_domains(void **state)
{
	struct fx *f = *state;
	char *l63 = rep('a', 63), *l64 = rep('a', 64), dom[400];
	struct {
		const char *d;
		int want;
	} cases[] = {
		{ "city.example", STORE_OK },
		{ "City.Example", STORE_EEXISTS },	/* case-insensitive */
		{ "", STORE_EINVAL },
		{ "-bad.example", STORE_EINVAL },
		{ "bad-.example", STORE_EINVAL },
		{ "a..b", STORE_EINVAL },
		{ "sp ace.example", STORE_EINVAL },
		{ "政府.example", STORE_OK },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(store_domain_add(f->st, cases[i].d, NULL),
		    cases[i].want);
	/* label 63 ok, 64 not */
	snprintf(dom, sizeof(dom), "%s.example", l63);
	assert_int_equal(store_domain_add(f->st, dom, NULL), STORE_OK);
	snprintf(dom, sizeof(dom), "%s.example", l64);
	assert_int_equal(store_domain_add(f->st, dom, NULL), STORE_EINVAL);
	/* total length 252, 253 ok; 254 not */
	snprintf(dom, sizeof(dom), "%s.%s.%s.%s", l63, l63, l63, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghi");
	assert_int_equal(strlen(dom), 253);
	assert_int_equal(store_domain_add(f->st, dom, NULL), STORE_OK);
	dom[252] = '\0';
	assert_int_equal(store_domain_add(f->st, dom, NULL), STORE_OK);
	snprintf(dom, sizeof(dom), "%s.%s.%s.%s", l63, l63, l63, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij");
	assert_int_equal(strlen(dom), 254);
	assert_int_equal(store_domain_add(f->st, dom, NULL), STORE_EINVAL);

	assert_int_equal(store_domain_exists(f->st, "CITY.example"), 1);
	assert_int_equal(store_domain_exists(f->st, "town.example"), 0);
	/* an IDN is one domain by its U-labels or its A-labels */
	assert_int_equal(store_domain_exists(f->st, "xn--mxtq1m.example"), 1);
	assert_int_equal(store_domain_exists(f->st, "XN--MXTQ1M.example"), 1);
	assert_int_equal(store_domain_add(f->st, "xn--mxtq1m.example", NULL),
	    STORE_EEXISTS);
	assert_int_equal(store_domain_add(f->st, "xn--bcher-kva.example", NULL),
	    STORE_OK);			/* an A-label added: kept as U-labels */
	assert_int_equal(store_domain_exists(f->st, "b\xc3\xbc" "cher.example"),
	    1);
	assert_int_equal(store_domain_add(f->st, "xn--zz.example", NULL),
	    STORE_EINVAL);		/* no valid punycode */
	assert_int_equal(fx_citizen(f, "mayor@xn--mxtq1m.example"), 0);
	{
		struct store_account *acct = NULL;

		assert_int_equal(store_account_get(f->st,
		    "mayor@\xe6\x94\xbf\xe5\xba\x9c.example", &acct, NULL), 0);
		assert_string_equal(acct->address,
		    "mayor@\xe6\x94\xbf\xe5\xba\x9c.example");
		store_account_free(acct);
	}
	assert_int_equal(fx_citizen(f, "a@city.example"), 0);
	assert_int_equal(store_domain_del(f->st, "city.example", NULL),
	    STORE_EPERM);
	assert_int_equal(store_account_del(f->st, "a@city.example", NULL), 0);
	assert_int_equal(store_domain_del(f->st, "city.example", NULL), 0);
	assert_int_equal(store_domain_exists(f->st, "city.example"), 0);
	assert_int_equal(store_domain_del(f->st, "city.example", NULL),
	    STORE_ENOTFOUND);
	free(l63);
	free(l64);
}

/* ---- accounts ---- */

static void
test_account_table(void **state)
{
	struct fx *f = *state;
	char uscc[19], bad_uscc[19], rid[19], bad_rid[19], addr[400];
	char *lp64 = rep('x', 64), *lp65 = rep('x', 65), *dom;
	char *txt256 = rep('t', STORE_TEXT_MAX),
	    *txt257 = rep('t', STORE_TEXT_MAX + 1);
	char *pw1024 = rep('p', STORE_PASSWORD_MAX),
	    *pw1025 = rep('p', STORE_PASSWORD_MAX + 1);
	struct store_account_spec sp;
	size_t i;

	fx_uscc("91350100M000100Y4", uscc);
	memcpy(bad_uscc, uscc, 19);
	bad_uscc[17] = uscc[17] == '0' ? '1' : '0';
	fx_resident("11010519491231002", rid);
	memcpy(bad_rid, rid, 19);
	bad_rid[17] = rid[17] == '0' ? '1' : '0';
	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);

	struct {
		const char *address;
		enum store_class class;
		const char *org, *org_id, *rid, *pw, *name;
		int legacy;
		int want;
	} cases[] = {
		{ "ok1@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "pw", NULL, 0, STORE_OK },
		{ "OK1@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "pw", NULL, 0, STORE_EEXISTS },
		{ "x@nowhere.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "pw", NULL, 0, STORE_ENOTFOUND },
		{ "noat.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "pw", NULL, 0, STORE_EINVAL },
		{ "a b@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "pw", NULL, 0, STORE_EINVAL },
		{ ".a@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "pw", NULL, 0, STORE_EINVAL },
		{ "张三@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "pw", NULL, 0, STORE_OK },
		{ "bad\xff@city.example", STORE_CLASS_CITIZEN, NULL, NULL,
		  NULL, "pw", NULL, 0, STORE_EINVAL },
		{ "corp@city.example", STORE_CLASS_LEGAL_PERSON, "Corp Ltd",
		  uscc, NULL, "pw", NULL, 0, STORE_OK },
		{ "corp2@city.example", STORE_CLASS_LEGAL_PERSON, "Corp Ltd",
		  bad_uscc, NULL, "pw", NULL, 0, STORE_EINVAL },
		{ "corp3@city.example", STORE_CLASS_LEGAL_PERSON, "Corp Ltd",
		  bad_uscc, NULL, "pw", NULL, 1, STORE_OK },
		{ "corp4@city.example", STORE_CLASS_LEGAL_PERSON, NULL,
		  uscc, NULL, "pw", NULL, 0, STORE_EINVAL },
		{ "corp5@city.example", STORE_CLASS_LEGAL_PERSON, "Corp",
		  NULL, NULL, "pw", NULL, 0, STORE_EINVAL },
		{ "corp6@city.example", STORE_CLASS_LEGAL_PERSON, "Corp",
		  "91350100M000100Y", NULL, "pw", NULL, 1, STORE_EINVAL },
		{ "res1@city.example", STORE_CLASS_CITIZEN, NULL, NULL, rid,
		  "pw", NULL, 0, STORE_OK },
		{ "res2@city.example", STORE_CLASS_CITIZEN, NULL, NULL, rid,
		  "pw", NULL, 0, STORE_EEXISTS },
		{ "res3@city.example", STORE_CLASS_CITIZEN, NULL, NULL,
		  bad_rid, "pw", NULL, 0, STORE_EINVAL },
		{ "res4@city.example", STORE_CLASS_OFFICIAL, "Dept", NULL,
		  rid, "pw", NULL, 0, STORE_EINVAL },
		{ "off1@city.example", STORE_CLASS_OFFICIAL, "Water Dept",
		  "CN-FJ", NULL, "pw", NULL, 0, STORE_OK },
		{ "off2@city.example", STORE_CLASS_OFFICIAL, NULL, NULL, NULL,
		  "pw", NULL, 0, STORE_EINVAL },
		{ "off3@city.example", STORE_CLASS_OFFICIAL, "Dept", "CNFJ",
		  NULL, "pw", NULL, 0, STORE_EINVAL },
		{ "dep1@city.example", STORE_CLASS_DEPARTMENT, "Water Dept",
		  NULL, NULL, "pw", NULL, 0, STORE_OK },
		{ "cls@city.example", (enum store_class)9, NULL, NULL, NULL,
		  "pw", NULL, 0, STORE_EINVAL },
		{ "t1@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "pw", txt256, 0, STORE_OK },
		{ "t2@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "pw", txt257, 0, STORE_EINVAL },
		{ "p0@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  "", NULL, 0, STORE_EINVAL },
		{ "p1@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  pw1024, NULL, 0, STORE_OK },
		{ "p2@city.example", STORE_CLASS_CITIZEN, NULL, NULL, NULL,
		  pw1025, NULL, 0, STORE_EINVAL },
	};

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&sp, 0, sizeof(sp));
		sp.address = cases[i].address;
		sp.class = cases[i].class;
		sp.organisation = cases[i].org;
		sp.org_id = cases[i].org_id;
		sp.resident_id = cases[i].rid;
		sp.password = cases[i].pw;
		sp.display_name = cases[i].name;
		sp.legacy_code = cases[i].legacy;
		if (store_account_add(f->st, &sp, NULL) != cases[i].want) {
			print_error("case %zu (%s)\n", i, cases[i].address);
			fail();
		}
	}
	/* local part 64 ok, 65 not; whole address 254 ok, 255 not */
	snprintf(addr, sizeof(addr), "%s@city.example", lp64);
	assert_int_equal(fx_citizen(f, addr), 0);
	snprintf(addr, sizeof(addr), "%s@city.example", lp65);
	assert_int_equal(fx_citizen(f, addr), STORE_EINVAL);
	dom = rep('d', 63);
	{
		char longdom[300];

		/* 64 + 1 + 189 = 254 */
		snprintf(longdom, sizeof(longdom), "%s.%s.%s", dom, dom,
		    "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
		assert_int_equal(strlen(longdom), 189);
		assert_int_equal(store_domain_add(f->st, longdom, NULL), 0);
		snprintf(addr, sizeof(addr), "%s@%s", lp64, longdom);
		assert_int_equal(strlen(addr), 254);
		assert_int_equal(fx_citizen(f, addr), 0);
		snprintf(addr, sizeof(addr), "%sx@%s", lp64, longdom);
		assert_int_equal(fx_citizen(f, addr), STORE_EINVAL);
	}
	free(dom);
	free(lp64);
	free(lp65);
	free(txt256);
	free(txt257);
	free(pw1024);
	free(pw1025);
}

static int
count_acct_cb(const struct store_account *acct, void *ctx)
{
	(void)acct;
	(*(int *)ctx)++;
	return 0;
}

struct pwhash_ctx {
	const char *address;
	char hash[crypto_pwhash_STRBYTES];
};

static int
pwhash_fn(struct store *s, DB_TXN *txn, void *arg)
{
	struct pwhash_ctx *c = arg;
	struct acct_rec a;
	int r;

	if ((r = st_account_load(s, txn, c->address, &a)) != 0)
		return r;
	snprintf(c->hash, sizeof(c->hash), "%s", a.pwhash);
	acct_rec_clear(&a);
	return 0;
}

/* The stored password hash of an account (normalised address). */
static void
stored_pwhash(struct store *st, const char *address, char *out, size_t outsz)
{
	struct pwhash_ctx c;

	memset(&c, 0, sizeof(c));
	c.address = address;
	assert_int_equal(st_txn_run(st, ST_TXN_READ, pwhash_fn, &c, NULL), 0);
	snprintf(out, outsz, "%s", c.hash);
}

/* After the right password, address's hash is no longer old but current. */
static void
assert_rehashed(struct fx *f, const char *address, const char *pw,
    const char *old, const char *wrong)
{
	char now[crypto_pwhash_STRBYTES];

	assert_int_equal(store_password_verify(f->st, address, pw), 1);
	stored_pwhash(f->st, address, now, sizeof(now));
	assert_string_not_equal(now, old);
	assert_true(strncmp(now, "$argon2id$", 10) == 0);
	assert_int_equal(crypto_pwhash_str_needs_rehash(now, 1, 8192), 0);
	assert_int_equal(crypto_pwhash_str_verify(now, pw, strlen(pw)), 0);
	assert_int_equal(store_password_verify(f->st, address, pw), 1);
	assert_int_equal(store_password_verify(f->st, address, wrong), 0);
}

/*
 * A hash made with other limits than the configured ones (opslimit 1,
 * memlimit 8K in the fixture), or an imported Argon2i one, is remade at
 * the first right password, and only then.
 */
static void
test_password_rehash(void **state)
{
	struct fx *f = *state;
	struct store_account_spec sp;
	char old_id[crypto_pwhash_STRBYTES], old_i[crypto_pwhash_STRBYTES];
	char now[crypto_pwhash_STRBYTES], uscc[IDENT_USCC_LEN + 1];

	fx_uscc("91350100M000100Y4", uscc);
	assert_int_equal(crypto_pwhash_str(old_id, "pw one", 6, 2, 16384), 0);
	assert_int_equal(crypto_pwhash_str_alg(old_i, "pw two", 6, 3, 8192,
	    crypto_pwhash_ALG_ARGON2I13), 0);
	assert_int_equal(store_domain_add(f->st, "rh.example", NULL), 0);
	memset(&sp, 0, sizeof(sp));
	sp.class = STORE_CLASS_LEGAL_PERSON;
	sp.organisation = "Rehash Ltd";
	sp.org_id = uscc;
	sp.address = "one@rh.example";
	sp.password_hash = old_id;
	assert_int_equal(store_account_add(f->st, &sp, NULL), 0);
	sp.address = "two@rh.example";
	sp.password_hash = old_i;
	assert_int_equal(store_account_add(f->st, &sp, NULL), 0);

	/* A wrong password changes nothing. */
	assert_int_equal(store_password_verify(f->st, "one@rh.example",
	    "pw two"), 0);
	stored_pwhash(f->st, "one@rh.example", now, sizeof(now));
	assert_string_equal(now, old_id);

	/*
	 * The right one: a new Argon2id hash with the configured limits,
	 * Argon2i (imported) included; the password still works after.
	 */
	assert_rehashed(f, "one@rh.example", "pw one", old_id, "pw two");
	assert_rehashed(f, "two@rh.example", "pw two", old_i, "pw one");

	/* A hash with the configured limits stays as it is. */
	assert_int_equal(store_account_set_password(f->st, "one@rh.example",
	    "pw three", NULL), 0);
	stored_pwhash(f->st, "one@rh.example", old_id, sizeof(old_id));
	assert_int_equal(store_password_verify(f->st, "one@rh.example",
	    "pw three"), 1);
	stored_pwhash(f->st, "one@rh.example", now, sizeof(now));
	assert_string_equal(now, old_id);
}

static void
test_account_fields(void **state)
{
	struct fx *f = *state;
	struct store_account_spec sp;
	struct store_account *a;
	struct store_mailbox_info mi;
	char rid[19], *found = NULL;
	int n;

	fx_resident("44030519800101123", rid);
	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	memset(&sp, 0, sizeof(sp));
	sp.address = "Li.Si@City.Example";
	sp.class = STORE_CLASS_CITIZEN;
	sp.password = "correct horse";
	sp.display_name = "李四";
	sp.resident_id = rid;
	sp.identity_verified = 1;
	sp.quota_bytes = 5000;
	assert_int_equal(store_account_add(f->st, &sp, NULL), 0);
	assert_int_equal(store_account_get(f->st, "li.si@city.example", &a,
	    NULL), 0);
	assert_string_equal(a->address, "Li.Si@city.example");
	assert_int_equal(a->class, STORE_CLASS_CITIZEN);
	assert_string_equal(a->display_name, "李四");
	assert_string_equal(a->organisation, "");
	assert_string_equal(a->cert_serial, "");
	assert_int_equal(a->has_resident_id, 1);
	assert_int_equal(a->identity_verified, 1);
	assert_int_equal(a->quota_bytes, 5000);
	assert_int_equal(a->quota_messages, 100000);
	assert_true(a->id > 0);
	store_account_free(a);

	/* every default mailbox exists and is subscribed */
	{
		static const char *const names[] = { "INBOX", "Sent",
		    "Drafts", "Trash", "Junk", "Archive" };
		size_t i;

		for (i = 0; i < 6; i++) {
			assert_int_equal(store_mailbox_get(f->st,
			    "li.si@city.example", names[i], &mi, NULL), 0);
			assert_int_equal(mi.subscribed, 1);
			assert_int_equal(mi.special_use, 1 << i);
		}
	}

	/* the ID number is findable but never stored in clear */
	assert_int_equal(store_account_find_resident(f->st, rid, &found,
	    NULL), 0);
	assert_string_equal(found, "Li.Si@city.example");
	free(found);
	{
		struct buf b;
		char path[400];
		int fd;
		ssize_t r;

		snprintf(path, sizeof(path), "%s/accounts.db", f->path);
		store_close(f->st);
		f->st = NULL;
		buf_init(&b, BUF_UNBOUNDED);
		fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		assert_int_equal(buf_reserve(&b, 1 << 20), 0);
		r = read(fd, buf_tail(&b), 1 << 20);
		assert_true(r > 0);
		buf_commit(&b, (size_t)r);
		close(fd);
		assert_null(memmem(b.data, b.len, rid, 18));
		assert_non_null(memmem(b.data, b.len, "Li.Si", 5));
		buf_free(&b);
		fx_open(f);
	}

	/* passwords */
	assert_int_equal(store_password_verify(f->st, "LI.SI@city.example",
	    "correct horse"), 1);
	assert_int_equal(store_password_verify(f->st, "li.si@city.example",
	    "correct horse"), 1);	/* from the cache */
	assert_int_equal(store_password_verify(f->st, "li.si@city.example",
	    "wrong"), 0);
	assert_int_equal(store_password_verify(f->st, "nobody@city.example",
	    "correct horse"), 0);
	assert_int_equal(store_account_set_password(f->st,
	    "li.si@city.example", "new one", NULL), 0);
	assert_int_equal(store_password_verify(f->st, "li.si@city.example",
	    "correct horse"), 0);
	assert_int_equal(store_password_verify(f->st, "li.si@city.example",
	    "new one"), 1);
	assert_int_equal(store_account_set_disabled(f->st,
	    "li.si@city.example", 1, NULL), 0);
	assert_int_equal(store_password_verify(f->st, "li.si@city.example",
	    "new one"), 0);
	assert_int_equal(store_account_set_disabled(f->st,
	    "li.si@city.example", 0, NULL), 0);
	assert_int_equal(store_password_verify(f->st, "li.si@city.example",
	    "new one"), 1);

	/* certificate serial and quota */
	assert_int_equal(store_account_set_cert(f->st, "li.si@city.example",
	    "01AF", NULL), 0);
	assert_int_equal(store_account_set_cert(f->st, "li.si@city.example",
	    "xyz", NULL), STORE_EINVAL);
	assert_int_equal(store_account_set_quota(f->st, "li.si@city.example",
	    7, 8, NULL), 0);
	assert_int_equal(store_account_get(f->st, "li.si@city.example", &a,
	    NULL), 0);
	assert_string_equal(a->cert_serial, "01AF");
	assert_int_equal(a->quota_bytes, 7);
	assert_int_equal(a->quota_messages, 8);
	store_account_free(a);

	/* listing and deleting frees the resident ID */
	n = 0;
	assert_int_equal(fx_citizen(f, "zz@city.example"), 0);
	assert_int_equal(store_account_list(f->st, "city.example",
	    count_acct_cb, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_int_equal(store_account_del(f->st, "li.si@city.example", NULL),
	    0);
	assert_int_equal(store_account_find_resident(f->st, rid, &found,
	    NULL), STORE_ENOTFOUND);
	assert_int_equal(store_account_get(f->st, "li.si@city.example", &a,
	    NULL), STORE_ENOTFOUND);
	sp.address = "other@city.example";
	assert_int_equal(store_account_add(f->st, &sp, NULL), 0);
	assert_int_equal(store_check(f->st, 0, NULL, NULL, NULL), 0);
}

/* ---- aliases, lists, resolution ---- */

static int
collect_cb(const char *e, void *ctx)
{
	struct buf *b = ctx;

	buf_append_str(b, e);
	buf_append_byte(b, ';');
	return 0;
}

static void
test_alias_list_resolve(void **state)
{
	struct fx *f = *state;
	struct store_rcpt_set set;
	struct store_account_spec sp;
	struct buf b;
	char name[64];
	int i;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(store_domain_add(f->st, "gov.example", NULL), 0);
	assert_int_equal(fx_citizen(f, "a@city.example"), 0);
	assert_int_equal(fx_citizen(f, "b@city.example"), 0);
	assert_int_equal(fx_citizen(f, "c@gov.example"), 0);
	memset(&sp, 0, sizeof(sp));
	sp.address = "mayor@gov.example";
	sp.class = STORE_CLASS_OFFICIAL;
	sp.organisation = "City Hall";
	assert_int_equal(store_account_add(f->st, &sp, NULL), 0);

	/* account */
	assert_int_equal(store_resolve(f->st, "A@city.example", NULL, &set,
	    NULL), 0);
	assert_int_equal(set.kind, STORE_ADDR_ACCOUNT);
	assert_int_equal(set.nlocal, 1);
	assert_string_equal(set.local[0], "a@city.example");
	store_rcpt_set_free(&set);
	assert_int_equal(store_resolve(f->st, "zz@city.example", NULL, &set,
	    NULL), STORE_ENOTFOUND);

	/* aliases: local, remote, nested, duplicates collapse */
	assert_int_equal(store_alias_add(f->st, "team@city.example",
	    "a@city.example", NULL), 0);
	assert_int_equal(store_alias_add(f->st, "team@city.example",
	    "b@city.example", NULL), 0);
	assert_int_equal(store_alias_add(f->st, "team@city.example",
	    "b@city.example", NULL), STORE_EEXISTS);
	assert_int_equal(store_alias_add(f->st, "team@city.example",
	    "x@remote.example", NULL), 0);
	assert_int_equal(store_alias_add(f->st, "all@city.example",
	    "team@city.example", NULL), 0);
	assert_int_equal(store_alias_add(f->st, "all@city.example",
	    "a@city.example", NULL), 0);
	assert_int_equal(store_alias_add(f->st, "a@city.example",
	    "b@city.example", NULL), STORE_EEXISTS);
	assert_int_equal(store_alias_add(f->st, "q@nowhere.example",
	    "b@city.example", NULL), STORE_ENOTFOUND);
	/* the cheap case alone: an account, or 1 for anything else */
	assert_int_equal(store_resolve_account(f->st, "A@city.example", &set,
	    NULL), 0);
	assert_int_equal(set.kind, STORE_ADDR_ACCOUNT);
	assert_int_equal(set.nlocal, 1);
	assert_string_equal(set.local[0], "a@city.example");
	store_rcpt_set_free(&set);
	assert_int_equal(store_resolve_account(f->st, "all@city.example", &set,
	    NULL), 1);
	assert_int_equal(set.nlocal + set.nremote, 0);
	assert_int_equal(store_resolve_account(f->st, "team@city.example", &set,
	    NULL), 1);
	assert_int_equal(store_resolve_account(f->st, "zz@city.example", &set,
	    NULL), STORE_ENOTFOUND);
	assert_int_equal(store_resolve_account(f->st, "not an address", &set,
	    NULL), STORE_EINVAL);
	assert_int_equal(store_resolve(f->st, "all@city.example", NULL, &set,
	    NULL), 0);
	assert_int_equal(set.kind, STORE_ADDR_ALIAS);
	assert_int_equal(set.nlocal, 2);
	assert_string_equal(set.local[0], "a@city.example");
	assert_string_equal(set.local[1], "b@city.example");
	assert_int_equal(set.nremote, 1);
	assert_string_equal(set.remote[0], "x@remote.example");
	store_rcpt_set_free(&set);

	/* depth: a chain of N aliases resolves, N+1 does not */
	for (i = 0; i < STORE_ALIAS_DEPTH_MAX + 1; i++) {
		char target[64];

		snprintf(name, sizeof(name), "chain%d@city.example", i);
		if (i == 0)
			snprintf(target, sizeof(target), "a@city.example");
		else
			snprintf(target, sizeof(target),
			    "chain%d@city.example", i - 1);
		assert_int_equal(store_alias_add(f->st, name, target, NULL),
		    0);
	}
	snprintf(name, sizeof(name), "chain%d@city.example",
	    STORE_ALIAS_DEPTH_MAX - 1);
	assert_int_equal(store_resolve(f->st, name, NULL, &set, NULL), 0);
	assert_int_equal(set.nlocal, 1);
	store_rcpt_set_free(&set);
	snprintf(name, sizeof(name), "chain%d@city.example",
	    STORE_ALIAS_DEPTH_MAX);
	assert_int_equal(store_resolve(f->st, name, NULL, &set, NULL),
	    STORE_EINVAL);
	/* a loop ends at the depth limit */
	assert_int_equal(store_alias_add(f->st, "loop1@city.example",
	    "loop2@city.example", NULL), 0);
	assert_int_equal(store_alias_add(f->st, "loop2@city.example",
	    "loop1@city.example", NULL), 0);
	assert_int_equal(store_resolve(f->st, "loop1@city.example", NULL,
	    &set, NULL), STORE_EINVAL);
	assert_int_equal(store_alias_del(f->st, "all@city.example",
	    "a@city.example", NULL), 0);
	assert_int_equal(store_alias_del(f->st, "all@city.example", NULL,
	    NULL), 0);
	assert_int_equal(store_resolve(f->st, "all@city.example", NULL, &set,
	    NULL), STORE_ENOTFOUND);

	/* lists with selectors and posters */
	assert_int_equal(store_list_add(f->st, "notice@gov.example",
	    STORE_LIST_NOTICE, NULL), 0);
	assert_int_equal(store_list_add(f->st, "notice@gov.example", 0,
	    NULL), STORE_EEXISTS);
	assert_int_equal(store_list_add(f->st, "a@city.example", 0, NULL),
	    STORE_EEXISTS);
	assert_int_equal(store_list_member_add(f->st, "notice@gov.example",
	    "class:citizen@city.example", NULL), 0);
	assert_int_equal(store_list_member_add(f->st, "notice@gov.example",
	    "class:nobody", NULL), STORE_EINVAL);
	assert_int_equal(store_list_member_add(f->st, "notice@gov.example",
	    "domain:gov.example", NULL), 0);
	assert_int_equal(store_list_member_add(f->st, "notice@gov.example",
	    "team@city.example", NULL), 0);
	assert_int_equal(store_list_member_add(f->st, "notice@gov.example",
	    "team@city.example", NULL), STORE_EEXISTS);
	assert_int_equal(store_resolve(f->st, "notice@gov.example", NULL,
	    &set, NULL), 0);
	assert_int_equal(set.kind, STORE_ADDR_LIST);
	assert_int_equal(set.list_flags, STORE_LIST_NOTICE);
	assert_int_equal(set.nlocal, 4);
	assert_string_equal(set.local[0], "a@city.example");
	assert_string_equal(set.local[1], "b@city.example");
	assert_string_equal(set.local[2], "c@gov.example");
	assert_string_equal(set.local[3], "mayor@gov.example");
	assert_int_equal(set.nremote, 1);
	store_rcpt_set_free(&set);
	assert_int_equal(store_list_poster_add(f->st, "notice@gov.example",
	    "mayor@gov.example", NULL), 0);
	assert_int_equal(store_resolve(f->st, "notice@gov.example",
	    "a@city.example", &set, NULL), STORE_EPERM);
	assert_int_equal(store_resolve(f->st, "notice@gov.example",
	    "Mayor@GOV.example", &set, NULL), 0);
	store_rcpt_set_free(&set);
	buf_init(&b, 4096);
	assert_int_equal(store_list_entries(f->st, "notice@gov.example", 0,
	    collect_cb, &b, NULL), 0);
	assert_string_equal(buf_str(&b), "class:citizen@city.example;"
	    "domain:gov.example;team@city.example;");
	buf_reset(&b);
	assert_int_equal(store_list_entries(f->st, "notice@gov.example", 1,
	    collect_cb, &b, NULL), 0);
	assert_string_equal(buf_str(&b), "mayor@gov.example;");
	buf_free(&b);
	assert_int_equal(store_domain_del(f->st, "gov.example", NULL),
	    STORE_EPERM);
	assert_int_equal(store_list_member_del(f->st, "notice@gov.example",
	    "domain:gov.example", NULL), 0);
	assert_int_equal(store_list_del(f->st, "notice@gov.example", NULL),
	    0);
	assert_int_equal(store_resolve(f->st, "notice@gov.example", NULL,
	    &set, NULL), STORE_ENOTFOUND);
}

static void
test_list_limit(void **state)
{
	struct fx *f = *state;
	char sel[64];
	int i;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(store_list_add(f->st, "big@city.example", 0, NULL),
	    0);
	/* N-1 entries in one go, then N, then N+1 refused */
	for (i = 0; i < STORE_LIST_SELECTORS_MAX - 1; i++) {
		snprintf(sel, sizeof(sel), "m%d@remote.example", i);
		assert_int_equal(store_list_member_add(f->st,
		    "big@city.example", sel, NULL), 0);
	}
	assert_int_equal(store_list_member_add(f->st, "big@city.example",
	    "last@remote.example", NULL), 0);
	assert_int_equal(store_list_member_add(f->st, "big@city.example",
	    "over@remote.example", NULL), STORE_EINVAL);
}

/* ---- delivery, single instance, reference counts ---- */

struct msgs {
	struct store_msg v[64];
	int n;
};

static int
msgs_cb(const struct store_msg *m, void *ctx)
{
	struct msgs *ms = ctx;

	if (ms->n < 64)
		ms->v[ms->n++] = *m;
	return 0;
}

static void
check_clean(struct fx *f)
{
	const char *err = NULL;

	assert_int_equal(store_check(f->st, STORE_CHECK_CONTENTS, NULL, NULL,
	    &err), 0);
}

static void
test_deliver_single_instance(void **state)
{
	struct fx *f = *state;
	const char *rcpts[] = { "a@city.example", "nobody@city.example",
	    "b@city.example", "c@city.example", "bad address" };
	struct store_rcpt_result res[5];
	struct store_stats st;
	struct store_mailbox_info mi;
	struct store_msg_meta meta;
	struct store_section sec;
	struct store_account *a;
	struct msgs ms;
	struct buf b;
	struct store_uid_range all = { 1, UINT32_MAX };

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, "a@city.example"), 0);
	assert_int_equal(fx_citizen(f, "b@city.example"), 0);
	assert_int_equal(fx_citizen(f, "c@city.example"), 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, rcpts, 5, 0, res, NULL), 0);
	assert_int_equal(res[0].status, STORE_OK);
	assert_int_equal(res[0].uid, 1);
	assert_int_equal(res[1].status, STORE_ENOTFOUND);
	assert_int_equal(res[2].status, STORE_OK);
	assert_int_equal(res[3].status, STORE_OK);
	assert_int_equal(res[4].status, STORE_ENOTFOUND);
	assert_string_equal(res[2].address, "b@city.example");

	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.domains, 1);
	assert_int_equal(st.accounts, 3);
	assert_int_equal(st.mailboxes, 18);
	assert_int_equal(st.messages, 3);
	assert_int_equal(st.blobs, 1);
	assert_int_equal(st.blob_bytes, sizeof(fx_msg) - 1);
	assert_int_equal(st.chunks, 1);
	assert_true(st.env_bytes > 0);

	assert_int_equal(store_mailbox_get(f->st, "a@city.example", "inbox",
	    &mi, NULL), 0);
	assert_string_equal(mi.name, "INBOX");
	assert_int_equal(mi.id, res[0].mailbox_id);
	assert_int_equal(mi.messages, 1);
	assert_int_equal(mi.unseen, 1);
	assert_int_equal(mi.recent, 1);
	assert_int_equal(mi.uidnext, 2);
	assert_int_equal(mi.size, sizeof(fx_msg) - 1);

	memset(&ms, 0, sizeof(ms));
	assert_int_equal(store_msg_list(f->st, mi.id, &all, 1, 0, msgs_cb,
	    &ms, NULL), 0);
	assert_int_equal(ms.n, 1);
	assert_int_equal(ms.v[0].size, sizeof(fx_msg) - 1);
	buf_init(&b, BUF_UNBOUNDED);
	assert_int_equal(store_blob_read(f->st, ms.v[0].blob, &b, NULL), 0);
	assert_int_equal(b.len, sizeof(fx_msg) - 1);
	assert_memory_equal(b.data, fx_msg, b.len);
	buf_reset(&b);
	assert_int_equal(store_blob_read_range(f->st, ms.v[0].blob, 6, 5, &b,
	    NULL), 0);
	assert_string_equal(buf_str(&b), "Water");
	buf_free(&b);

	assert_int_equal(store_msg_meta(f->st, ms.v[0].blob, &meta, NULL), 0);
	assert_string_equal(meta.subject, "Your water bill");
	assert_string_equal(meta.message_id, "<bill-1@water.example>");
	assert_string_equal(meta.from, "bills@water.example");
	assert_non_null(strstr(meta.envelope, "Your water bill"));
	assert_non_null(strstr(meta.bodystructure, "\"PLAIN\""));
	assert_true(meta.header_size > 0 && meta.header_size < b.cap + 400);
	assert_int_equal(store_msg_section(&meta, "1", &sec), 0);
	assert_int_equal(store_msg_section(&meta, "7", &sec),
	    STORE_ENOTFOUND);
	store_msg_meta_free(&meta);

	assert_int_equal(store_account_get(f->st, "b@city.example", &a, NULL),
	    0);
	assert_int_equal(a->used_messages, 1);
	assert_int_equal(a->used_bytes, sizeof(fx_msg) - 1);
	store_account_free(a);

	/* delivering the same bytes again only adds references */
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, rcpts, 1, 0, res, NULL), 0);
	assert_int_equal(res[0].uid, 2);
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.blobs, 1);
	assert_int_equal(st.messages, 4);
	check_clean(f);

	/* deleting accounts drops references; the last one frees it */
	assert_int_equal(store_account_del(f->st, "a@city.example", NULL), 0);
	assert_int_equal(store_account_del(f->st, "b@city.example", NULL), 0);
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.blobs, 1);
	check_clean(f);
	assert_int_equal(store_account_del(f->st, "c@city.example", NULL), 0);
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.blobs, 0);
	assert_int_equal(st.chunks, 0);
	assert_int_equal(st.messages, 0);
	check_clean(f);
}

static void
test_big_message(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example";
	struct store_rcpt_result res;
	struct store_stats st;
	struct store_msg m;
	struct buf b;
	uint8_t *msg;
	size_t len = 3 * STORE_CHUNK_SIZE + 17, i;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	msg = malloc(len);
	memcpy(msg, fx_msg, sizeof(fx_msg) - 1);
	for (i = sizeof(fx_msg) - 1; i < len; i++)
		msg[i] = (uint8_t)('a' + i % 23);
	assert_int_equal(store_deliver(f->st, msg, len, &rcpt, 1, 1000, &res,
	    NULL), 0);
	assert_int_equal(res.status, 0);
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.chunks, 4);
	assert_int_equal(store_msg_get(f->st, res.mailbox_id, res.uid, &m,
	    NULL), 0);
	assert_int_equal(m.internaldate, 1000);
	buf_init(&b, BUF_UNBOUNDED);
	assert_int_equal(store_blob_read(f->st, m.blob, &b, NULL), 0);
	assert_int_equal(b.len, len);
	assert_memory_equal(b.data, msg, len);
	/* a range across a chunk boundary */
	buf_reset(&b);
	assert_int_equal(store_blob_read_range(f->st, m.blob,
	    STORE_CHUNK_SIZE - 3, 10, &b, NULL), 0);
	assert_int_equal(b.len, 10);
	assert_memory_equal(b.data, msg + STORE_CHUNK_SIZE - 3, 10);
	/* past the end: nothing */
	buf_reset(&b);
	assert_int_equal(store_blob_read_range(f->st, m.blob, len, 10, &b,
	    NULL), 0);
	assert_int_equal(b.len, 0);
	/* a bounded buffer too small */
	buf_free(&b);
	buf_init(&b, 100);
	assert_int_equal(store_blob_read(f->st, m.blob, &b, NULL),
	    STORE_ETOOBIG);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	free(msg);
}

static void
test_message_size_limit(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example", *err;
	struct store_rcpt_result res;
	uint32_t uidv, uid;
	uint8_t *msg = calloc(1, 1025);

	memset(msg, 'x', 1025);
	store_close(f->st);
	assert_int_equal(config_set(f->cfg, "limits", "message_size", "1K",
	    &err), 0);
	fx_open(f);
	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	assert_int_equal(store_deliver(f->st, msg, 1023, &rcpt, 1, 0, &res,
	    NULL), 0);
	assert_int_equal(store_deliver(f->st, msg, 1024, &rcpt, 1, 0, &res,
	    NULL), 0);
	assert_int_equal(store_deliver(f->st, msg, 1025, &rcpt, 1, 0, &res,
	    NULL), STORE_ETOOBIG);
	assert_int_equal(res.status, STORE_ETOOBIG);
	assert_int_equal(store_append(f->st, rcpt, "INBOX", msg, 1025, 0,
	    NULL, 0, 0, &uidv, &uid, NULL), STORE_ETOOBIG);
	free(msg);
}

static void
test_quota(void **state)
{
	struct fx *f = *state;
	const char *rcpts[] = { "small@city.example", "big@city.example" };
	struct store_account_spec sp;
	struct store_rcpt_result res[2];
	struct store_mailbox_info in, tr;
	struct store_uid_map map;
	struct store_uid_range r1 = { 1, 1 };
	uint32_t uidv, uid;
	size_t len = sizeof(fx_msg) - 1;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	memset(&sp, 0, sizeof(sp));
	sp.address = "small@city.example";
	sp.class = STORE_CLASS_CITIZEN;
	sp.quota_bytes = 2 * len;	/* two messages fit exactly */
	sp.quota_messages = 3;
	assert_int_equal(store_account_add(f->st, &sp, NULL), 0);
	assert_int_equal(fx_citizen(f, "big@city.example"), 0);
	/* N-1, N fit; N+1 is refused for this recipient only */
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg, len,
	    rcpts, 2, 0, res, NULL), 0);
	assert_int_equal(res[0].status, 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg, len,
	    rcpts, 2, 0, res, NULL), 0);
	assert_int_equal(res[0].status, 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg, len,
	    rcpts, 2, 0, res, NULL), 0);
	assert_int_equal(res[0].status, STORE_EQUOTA);
	assert_int_equal(res[1].status, STORE_OK);
	assert_int_equal(store_append(f->st, "small@city.example", "Drafts",
	    (const uint8_t *)"x", 1, 0, NULL, 0, 0, &uidv, &uid, NULL),
	    STORE_EQUOTA);
	assert_int_equal(store_mailbox_get(f->st, "small@city.example",
	    "INBOX", &in, NULL), 0);
	assert_int_equal(store_mailbox_get(f->st, "small@city.example",
	    "Trash", &tr, NULL), 0);
	assert_int_equal(store_copy(f->st, in.id, &r1, 1, tr.id, 0, &map,
	    NULL), STORE_EQUOTA);
	/*
	 * New content for a full mailbox only: the content is written before
	 * the quota is known and must go again (check_clean: no orphan).
	 */
	assert_int_equal(store_deliver(f->st, (const uint8_t *)"Subject: x\r\n"
	    "\r\nnew\r\n", 19, rcpts, 1, 0, res, NULL), 0);
	assert_int_equal(res[0].status, STORE_EQUOTA);
	check_clean(f);
	/* a move costs no quota */
	assert_int_equal(store_copy(f->st, in.id, &r1, 1, tr.id, 1, &map,
	    NULL), 0);
	assert_int_equal(map.n, 1);
	store_uid_map_free(&map);
	/* raising the quota lets mail in again */
	assert_int_equal(store_account_set_quota(f->st, "small@city.example",
	    10 * len, 10, NULL), 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg, len,
	    rcpts, 1, 0, res, NULL), 0);
	assert_int_equal(res[0].status, 0);
	check_clean(f);
}

/* ---- UIDs, MODSEQ, flags, CONDSTORE, VANISHED ---- */

struct uids {
	uint32_t v[64];
	int n;
};

static int
uids_cb(uint32_t uid, void *ctx)
{
	struct uids *u = ctx;

	if (u->n < 64)
		u->v[u->n++] = uid;
	return 0;
}

struct cs {
	struct msgs ch;
	struct uids failed;
};

static int
cs_changed(const struct store_msg *m, void *ctx)
{
	return msgs_cb(m, &((struct cs *)ctx)->ch);
}

static int
cs_failed(uint32_t uid, void *ctx)
{
	return uids_cb(uid, &((struct cs *)ctx)->failed);
}

static void
test_uid_modseq_flags(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example";
	const char *kw1[] = { "$Forwarded", "Bill" };
	const char *kw2[] = { "bill" };
	struct store_rcpt_result res;
	struct store_mailbox_info mi, mi2;
	struct store_uid_range all = { 1, UINT32_MAX }, r2 = { 2, 2 },
	    r13[2] = { { 1, 1 }, { 3, 3 } };
	struct msgs ms, ch;
	struct uids gone;
	struct cs cs;
	char *names[STORE_KEYWORDS_MAX];
	uint64_t hms, prev = 0;
	uint32_t uid, uidv, first;
	int i;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	for (i = 0; i < 5; i++) {
		assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
		    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
		assert_int_equal(res.uid, (uint32_t)i + 1);
		assert_int_equal(store_mailbox_get_id(f->st, res.mailbox_id,
		    &mi, NULL, NULL), 0);
		assert_true(mi.highestmodseq > prev);
		prev = mi.highestmodseq;
	}
	{
		char owner[STORE_ADDRESS_MAX + 1];

		assert_int_equal(store_mailbox_get_id(f->st, res.mailbox_id,
		    &mi, owner, NULL), 0);
		assert_string_equal(owner, "a@city.example");
	}
	assert_int_equal(mi.messages, 5);
	assert_int_equal(mi.recent, 5);
	/* \Recent goes to exactly one session */
	assert_int_equal(store_mailbox_take_recent(f->st, mi.id, &first,
	    NULL), 0);
	assert_int_equal(first, 1);
	assert_int_equal(store_mailbox_take_recent(f->st, mi.id, &first,
	    NULL), 0);
	assert_int_equal(first, 6);
	assert_int_equal(store_mailbox_get_id(f->st, mi.id, &mi, NULL, NULL),
	    0);
	assert_int_equal(mi.recent, 0);
	hms = mi.highestmodseq;

	/* flags and keywords */
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(store_flags_update(f->st, mi.id, &r2, 1,
	    STORE_FLAGS_ADD, STORE_FLAG_SEEN | STORE_FLAG_FLAGGED, kw1, 2, 0,
	    msgs_cb, NULL, &ch, NULL), 0);
	assert_int_equal(ch.n, 1);
	assert_int_equal(ch.v[0].uid, 2);
	assert_int_equal(ch.v[0].flags, STORE_FLAG_SEEN | STORE_FLAG_FLAGGED);
	assert_int_equal(ch.v[0].keywords, 3);
	assert_true(ch.v[0].modseq > hms);
	assert_int_equal(store_mailbox_keywords(f->st, mi.id, names, NULL), 0);
	assert_string_equal(names[0], "$Forwarded");
	assert_string_equal(names[1], "Bill");
	assert_null(names[2]);
	store_keywords_free(names);
	assert_int_equal(store_mailbox_get_id(f->st, mi.id, &mi2, NULL, NULL),
	    0);
	assert_int_equal(mi2.unseen, 4);
	assert_int_equal(mi2.keywords_mask, 3);
	assert_int_equal(mi2.highestmodseq, ch.v[0].modseq);
	/* a no-op store does not bump modseq */
	memset(&ch, 0, sizeof(ch));
	assert_int_equal(store_flags_update(f->st, mi.id, &r2, 1,
	    STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0, 0, msgs_cb, NULL, &ch,
	    NULL), 0);
	assert_int_equal(ch.n, 0);
	/* keyword names are case-insensitive; remove one */
	assert_int_equal(store_flags_update(f->st, mi.id, &r2, 1,
	    STORE_FLAGS_REMOVE, 0, kw2, 1, 0, msgs_cb, NULL, &ch, NULL), 0);
	assert_int_equal(ch.n, 1);
	assert_int_equal(ch.v[0].keywords, 1);

	/* CONDSTORE: UNCHANGEDSINCE below a message's modseq fails it */
	memset(&cs, 0, sizeof(cs));
	assert_int_equal(store_flags_update(f->st, mi.id, &all, 1,
	    STORE_FLAGS_ADD, STORE_FLAG_ANSWERED, NULL, 0, hms, cs_changed,
	    cs_failed, &cs, NULL), 0);
	assert_int_equal(cs.ch.n, 4);
	assert_int_equal(cs.failed.n, 1);
	assert_int_equal(cs.failed.v[0], 2);
	memset(&ms, 0, sizeof(ms));
	assert_int_equal(store_msg_list(f->st, mi.id, NULL, 0, 0, msgs_cb,
	    &ms, NULL), 0);
	assert_int_equal(ms.n, 5);
	assert_int_equal(ms.v[1].flags & STORE_FLAG_ANSWERED, 0);
	assert_int_equal(ms.v[0].flags & STORE_FLAG_ANSWERED,
	    STORE_FLAG_ANSWERED);
	/* CHANGEDSINCE */
	memset(&ms, 0, sizeof(ms));
	assert_int_equal(store_msg_list(f->st, mi.id, NULL, 0, hms, msgs_cb,
	    &ms, NULL), 0);
	assert_int_equal(ms.n, 5);
	assert_int_equal(store_mailbox_get_id(f->st, mi.id, &mi2, NULL, NULL),
	    0);
	memset(&ms, 0, sizeof(ms));
	assert_int_equal(store_msg_list(f->st, mi.id, NULL, 0,
	    mi2.highestmodseq, msgs_cb, &ms, NULL), 0);
	assert_int_equal(ms.n, 0);
	/* ranges */
	memset(&ms, 0, sizeof(ms));
	assert_int_equal(store_msg_list(f->st, mi.id, r13, 2, 0, msgs_cb, &ms,
	    NULL), 0);
	assert_int_equal(ms.n, 2);
	assert_int_equal(ms.v[0].uid, 1);
	assert_int_equal(ms.v[1].uid, 3);

	/* EXPUNGE and VANISHED */
	hms = mi2.highestmodseq;
	assert_int_equal(store_flags_update(f->st, mi.id, r13, 2,
	    STORE_FLAGS_ADD, STORE_FLAG_DELETED, NULL, 0, 0, NULL, NULL, NULL,
	    NULL), 0);
	memset(&gone, 0, sizeof(gone));
	assert_int_equal(store_expunge(f->st, mi.id, &r2, 1, uids_cb, &gone,
	    NULL), 0);
	assert_int_equal(gone.n, 0);	/* uid 2 is not \Deleted */
	assert_int_equal(store_expunge(f->st, mi.id, NULL, 0, uids_cb, &gone,
	    NULL), 0);
	assert_int_equal(gone.n, 2);
	assert_int_equal(gone.v[0], 1);
	assert_int_equal(gone.v[1], 3);
	memset(&gone, 0, sizeof(gone));
	assert_int_equal(store_vanished(f->st, mi.id, hms, uids_cb, &gone,
	    NULL), 0);
	assert_int_equal(gone.n, 2);
	assert_int_equal(gone.v[0], 1);
	assert_int_equal(gone.v[1], 3);
	assert_int_equal(store_mailbox_get_id(f->st, mi.id, &mi2, NULL, NULL),
	    0);
	memset(&gone, 0, sizeof(gone));
	assert_int_equal(store_vanished(f->st, mi.id, mi2.highestmodseq,
	    uids_cb, &gone, NULL), 0);
	assert_int_equal(gone.n, 0);
	assert_int_equal(mi2.messages, 3);
	assert_int_equal(mi2.uidvalidity, mi.uidvalidity);
	/* UIDs are never reused */
	assert_int_equal(store_append(f->st, rcpt, "INBOX",
	    (const uint8_t *)"Subject: x\r\n\r\nx\r\n", 17, STORE_FLAG_SEEN,
	    kw2, 1, 0, &uidv, &uid, NULL), 0);
	assert_int_equal(uid, 6);
	assert_int_equal(uidv, mi.uidvalidity);
	assert_int_equal(store_msg_get(f->st, mi.id, 3, &ms.v[0], NULL),
	    STORE_ENOTFOUND);
	assert_int_equal(store_flags_update(f->st, mi.id, &all, 1,
	    STORE_FLAGS_ADD, 1U << 9, NULL, 0, 0, NULL, NULL, NULL, NULL),
	    STORE_EINVAL);
	check_clean(f);
}

static void
test_keyword_slots(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example", *kw[1];
	struct store_rcpt_result res;
	struct store_uid_range all = { 1, UINT32_MAX };
	char name[32];
	int i;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
	kw[0] = name;
	for (i = 0; i < STORE_KEYWORDS_MAX; i++) {
		snprintf(name, sizeof(name), "kw%d", i);
		assert_int_equal(store_flags_update(f->st, res.mailbox_id,
		    &all, 1, STORE_FLAGS_ADD, 0, kw, 1, 0, NULL, NULL, NULL,
		    NULL), 0);
	}
	snprintf(name, sizeof(name), "kw%d", i);
	assert_int_equal(store_flags_update(f->st, res.mailbox_id, &all, 1,
	    STORE_FLAGS_ADD, 0, kw, 1, 0, NULL, NULL, NULL, NULL),
	    STORE_EINVAL);
	/* keyword length: N ok, N+1 not; no system flags, no specials */
	{
		char *k64 = rep('k', STORE_KEYWORD_MAX),
		    *k65 = rep('k', STORE_KEYWORD_MAX + 1);

		kw[0] = k64;
		assert_int_equal(store_flags_update(f->st, res.mailbox_id,
		    &all, 1, STORE_FLAGS_REMOVE, 0, kw, 1, 0, NULL, NULL,
		    NULL, NULL), 0);
		kw[0] = k65;
		assert_int_equal(store_flags_update(f->st, res.mailbox_id,
		    &all, 1, STORE_FLAGS_REMOVE, 0, kw, 1, 0, NULL, NULL,
		    NULL, NULL), STORE_EINVAL);
		kw[0] = "\\Seen";
		assert_int_equal(store_flags_update(f->st, res.mailbox_id,
		    &all, 1, STORE_FLAGS_REMOVE, 0, kw, 1, 0, NULL, NULL,
		    NULL, NULL), STORE_EINVAL);
		kw[0] = "a(b";
		assert_int_equal(store_flags_update(f->st, res.mailbox_id,
		    &all, 1, STORE_FLAGS_REMOVE, 0, kw, 1, 0, NULL, NULL,
		    NULL, NULL), STORE_EINVAL);
		free(k64);
		free(k65);
	}
}

/* ---- copy, move and reference counts ---- */

static void
test_copy_move(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example", *kw[] = { "Important" };
	struct store_rcpt_result res;
	struct store_mailbox_info in, ar, tr;
	struct store_uid_range all = { 1, UINT32_MAX }, r1 = { 1, 1 };
	struct store_uid_map map;
	struct store_stats st;
	struct msgs ms;
	char *names[STORE_KEYWORDS_MAX];
	struct store_account *a;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	assert_int_equal(fx_citizen(f, "b@city.example"), 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)"A\r\n\r\nb",
	    6, &rcpt, 1, 0, &res, NULL), 0);
	assert_int_equal(store_mailbox_get(f->st, rcpt, "INBOX", &in, NULL),
	    0);
	assert_int_equal(store_mailbox_get(f->st, rcpt, "Archive", &ar, NULL),
	    0);
	assert_int_equal(store_mailbox_get(f->st, rcpt, "Trash", &tr, NULL),
	    0);
	/* create a keyword in Trash first so slots differ */
	assert_int_equal(store_append(f->st, rcpt, "Trash",
	    (const uint8_t *)"X\r\n\r\n", 5, 0, (const char *[]){ "Other" },
	    1, 0, NULL, NULL, NULL), 0);
	assert_int_equal(store_flags_update(f->st, in.id, &r1, 1,
	    STORE_FLAGS_ADD, STORE_FLAG_SEEN, kw, 1, 0, NULL, NULL, NULL,
	    NULL), 0);

	assert_int_equal(store_copy(f->st, in.id, &all, 1, ar.id, 0, &map,
	    NULL), 0);
	assert_int_equal(map.n, 2);
	assert_int_equal(map.src[0], 1);
	assert_int_equal(map.dst[0], 1);
	assert_int_equal(map.src[1], 2);
	assert_int_equal(map.dst[1], 2);
	assert_int_equal(map.dst_uidvalidity, ar.uidvalidity);
	store_uid_map_free(&map);
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.blobs, 3);
	assert_int_equal(st.messages, 5);
	assert_int_equal(store_account_get(f->st, rcpt, &a, NULL), 0);
	assert_int_equal(a->used_messages, 5);
	store_account_free(a);
	check_clean(f);

	/* move into Trash: keyword translated to Trash's own slot */
	assert_int_equal(store_copy(f->st, in.id, &r1, 1, tr.id, 1, &map,
	    NULL), 0);
	assert_int_equal(map.n, 1);
	assert_int_equal(map.dst[0], 2);
	store_uid_map_free(&map);
	memset(&ms, 0, sizeof(ms));
	assert_int_equal(store_msg_list(f->st, tr.id, NULL, 0, 0, msgs_cb,
	    &ms, NULL), 0);
	assert_int_equal(ms.n, 2);
	assert_int_equal(ms.v[1].keywords, 2);
	assert_int_equal(ms.v[1].flags, STORE_FLAG_SEEN);
	assert_int_equal(store_mailbox_keywords(f->st, tr.id, names, NULL), 0);
	assert_string_equal(names[1], "Important");
	store_keywords_free(names);
	assert_int_equal(store_mailbox_get_id(f->st, in.id, &in, NULL, NULL),
	    0);
	assert_int_equal(in.messages, 1);
	assert_int_equal(store_account_get(f->st, rcpt, &a, NULL), 0);
	assert_int_equal(a->used_messages, 5);
	store_account_free(a);
	check_clean(f);

	/* no copy across accounts, no move onto itself */
	assert_int_equal(store_mailbox_get(f->st, "b@city.example", "INBOX",
	    &ar, NULL), 0);
	assert_int_equal(store_copy(f->st, in.id, &all, 1, ar.id, 0, &map,
	    NULL), STORE_EINVAL);
	assert_int_equal(store_copy(f->st, in.id, &all, 1, in.id, 1, &map,
	    NULL), STORE_EINVAL);

	/* expunge everything everywhere: the blobs go */
	assert_int_equal(store_mailbox_get(f->st, rcpt, "Archive", &ar, NULL),
	    0);
	assert_int_equal(store_flags_update(f->st, ar.id, &all, 1,
	    STORE_FLAGS_ADD, STORE_FLAG_DELETED, NULL, 0, 0, NULL, NULL, NULL,
	    NULL), 0);
	assert_int_equal(store_expunge(f->st, ar.id, NULL, 0, NULL, NULL,
	    NULL), 0);
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.blobs, 3);
	assert_int_equal(store_mailbox_delete(f->st, rcpt, "Trash", NULL), 0);
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.blobs, 1);
	assert_int_equal(store_flags_update(f->st, in.id, &all, 1,
	    STORE_FLAGS_ADD, STORE_FLAG_DELETED, NULL, 0, 0, NULL, NULL, NULL,
	    NULL), 0);
	assert_int_equal(store_expunge(f->st, in.id, NULL, 0, NULL, NULL,
	    NULL), 0);
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.blobs, 0);
	assert_int_equal(st.messages, 0);
	assert_int_equal(store_account_get(f->st, rcpt, &a, NULL), 0);
	assert_int_equal(a->used_messages, 0);
	assert_int_equal(a->used_bytes, 0);
	store_account_free(a);
	check_clean(f);
}

/* ---- mailboxes ---- */

static int
names_cb(const struct store_mailbox_info *mi, void *ctx)
{
	struct buf *b = ctx;

	buf_append_str(b, mi->name);
	buf_append_byte(b, mi->subscribed ? '+' : ';');
	return 0;
}

static void
test_mailboxes(void **state)
{
	struct fx *f = *state;
	const char *a = "a@city.example";
	struct store_rcpt_result res;
	struct store_mailbox_info mi, mi2;
	struct buf b;
	char name[400];
	char *n255 = rep('n', STORE_MAILBOX_NAME_MAX),
	    *n256 = rep('n', STORE_MAILBOX_NAME_MAX + 1);
	int i;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, a), 0);
	assert_int_equal(store_mailbox_create(f->st, a, "Work/2026/Bills", 0,
	    NULL), 0);
	assert_int_equal(store_mailbox_create(f->st, a, "Work", 0, NULL),
	    STORE_EEXISTS);
	assert_int_equal(store_mailbox_create(f->st, a, "inbox", 0, NULL),
	    STORE_EEXISTS);
	assert_int_equal(store_mailbox_create(f->st, a, "/x", 0, NULL),
	    STORE_EINVAL);
	assert_int_equal(store_mailbox_create(f->st, a, "x//y", 0, NULL),
	    STORE_EINVAL);
	assert_int_equal(store_mailbox_create(f->st, a, "x*", 0, NULL),
	    STORE_EINVAL);
	assert_int_equal(store_mailbox_create(f->st, a, "bad\xc3", 0, NULL),
	    STORE_EINVAL);
	assert_int_equal(store_mailbox_create(f->st, a, "x", 1 << 12, NULL),
	    STORE_EINVAL);
	assert_int_equal(store_mailbox_create(f->st, a, "通知", 0, NULL), 0);
	assert_int_equal(store_mailbox_create(f->st, a, n255, 0, NULL), 0);
	assert_int_equal(store_mailbox_create(f->st, a, n256, 0, NULL),
	    STORE_EINVAL);
	/* depth N ok, N+1 not */
	name[0] = '\0';
	for (i = 0; i < STORE_MAILBOX_DEPTH_MAX; i++)
		str_append(name, sizeof(name), i == 0 ? "d" : "/d");
	assert_int_equal(store_mailbox_create(f->st, a, name, 0, NULL), 0);
	str_append(name, sizeof(name), "/d");
	assert_int_equal(store_mailbox_create(f->st, a, name, 0, NULL),
	    STORE_EINVAL);
	assert_int_equal(store_mailbox_create(f->st, "no@city.example", "x",
	    0, NULL), STORE_ENOTFOUND);

	/* subscribe and list */
	assert_int_equal(store_mailbox_subscribe(f->st, a, "Work", 1, NULL),
	    0);
	assert_int_equal(store_mailbox_subscribe(f->st, a, "Junk", 0, NULL),
	    0);
	assert_int_equal(store_mailbox_subscribe(f->st, a, "Nope", 1, NULL),
	    STORE_ENOTFOUND);
	assert_int_equal(store_mailbox_delete(f->st, a, n255, NULL), 0);
	assert_int_equal(store_mailbox_delete(f->st, a, name, NULL),
	    STORE_EINVAL);
	name[strlen(name) - 2] = '\0';
	assert_int_equal(store_mailbox_delete(f->st, a, name, NULL), 0);
	buf_init(&b, 65536);
	assert_int_equal(store_mailbox_list(f->st, a, names_cb, &b, NULL), 0);
	assert_non_null(strstr(buf_str(&b), "Archive+Drafts+INBOX+Junk;Sent+"
	    "Trash+Work+Work/2026;Work/2026/Bills;"));
	assert_non_null(strstr(buf_str(&b), "通知;"));

	/* rename with children; ids and UIDVALIDITY stay */
	assert_int_equal(store_mailbox_get(f->st, a, "Work/2026/Bills", &mi,
	    NULL), 0);
	assert_int_equal(store_mailbox_rename(f->st, a, "Work", "Job", NULL),
	    0);
	assert_int_equal(store_mailbox_get(f->st, a, "Job/2026/Bills", &mi2,
	    NULL), 0);
	assert_int_equal(mi.id, mi2.id);
	assert_int_equal(mi.uidvalidity, mi2.uidvalidity);
	assert_int_equal(store_mailbox_get(f->st, a, "Work", &mi2, NULL),
	    STORE_ENOTFOUND);
	assert_int_equal(store_mailbox_rename(f->st, a, "Job", "Sent", NULL),
	    STORE_EEXISTS);
	assert_int_equal(store_mailbox_rename(f->st, a, "Job", "Job/x", NULL),
	    STORE_EINVAL);
	assert_int_equal(store_mailbox_rename(f->st, a, "Job", "INBOX", NULL),
	    STORE_EINVAL);
	assert_int_equal(store_mailbox_delete(f->st, a, "INBOX", NULL),
	    STORE_EPERM);

	/* RENAME INBOX moves its messages */
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, &a, 1, 0, &res, NULL), 0);
	assert_int_equal(store_mailbox_rename(f->st, a, "INBOX", "Old/Inbox",
	    NULL), 0);
	assert_int_equal(store_mailbox_get(f->st, a, "INBOX", &mi, NULL), 0);
	assert_int_equal(mi.messages, 0);
	assert_int_equal(mi.uidnext, 2);
	assert_int_equal(store_mailbox_get(f->st, a, "Old/Inbox", &mi, NULL),
	    0);
	assert_int_equal(mi.messages, 1);
	check_clean(f);
	buf_free(&b);
	free(n255);
	free(n256);
}

static void
test_mailbox_limit(void **state)
{
	struct fx *f = *state;
	const char *a = "a@city.example";
	char name[32];
	int i;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, a), 0);
	/* 6 exist; fill up to the maximum */
	for (i = 6; i < STORE_MAILBOXES_MAX; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		assert_int_equal(store_mailbox_create(f->st, a, name, 0, NULL),
		    0);
	}
	assert_int_equal(store_mailbox_create(f->st, a, "one-more", 0, NULL),
	    STORE_EINVAL);
}

/* ---- encryption at rest ---- */

static int
file_has(const char *path, const void *needle, size_t n)
{
	struct buf b;
	ssize_t r;
	int fd, found;

	buf_init(&b, BUF_UNBOUNDED);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	for (;;) {
		if (buf_reserve(&b, 65536) != 0)
			abort();
		r = read(fd, buf_tail(&b), 65536);
		if (r <= 0)
			break;
		buf_commit(&b, (size_t)r);
	}
	close(fd);
	found = memmem(b.data, b.len, needle, n) != NULL;
	buf_free(&b);
	return found;
}

/* 1 if any chunk partition file of the store holds needle. */
static int
chunks_have(const char *store, const char *needle)
{
	char path[400];
	int p;

	for (p = 0; p < STORE_PARTS; p++) {
		snprintf(path, sizeof(path), "%s/chunks-%02x.db", store, p);
		if (file_has(path, needle, strlen(needle)))
			return 1;
	}
	return 0;
}

/* Close the store and name a new store key file of the given mode. */
static void
fx_store_key(struct fx *f, mode_t mode)
{
	char keypath[400];
	const char *err;
	int fd;

	store_close(f->st);
	f->st = NULL;
	snprintf(keypath, sizeof(keypath), "%s/store.key", f->dir);
	fd = open(keypath, O_WRONLY | O_CREAT | O_EXCL, mode);
	assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef", 32),
	    32);
	close(fd);
	assert_int_equal(config_set(f->cfg, "store", "key_file", keypath,
	    &err), 0);
}

static void
test_encryption(void **state)
{
	struct fx *f = *state;
	static const char secret[] = "Subject: s\r\n\r\nTOP-SECRET-PLAINTEXT-"
	    "7f3a9c TOP-SECRET-PLAINTEXT-7f3a9c\r\n";
	const char *rcpt = "a@city.example", *err;
	struct store_rcpt_result res;
	struct store_msg m;
	struct buf b;
	char keypath[400];

	fx_store_key(f, 0644);
	/* a key others may read is refused */
	assert_int_equal(store_open(f->cfg, STORE_OPEN_CREATE, &f->st, &err),
	    STORE_EINVAL);
	snprintf(keypath, sizeof(keypath), "%s/store.key", f->dir);
	chmod(keypath, 0600);
	fx_open(f);
	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)secret,
	    sizeof(secret) - 1, &rcpt, 1, 0, &res, NULL), 0);
	assert_int_equal(store_msg_get(f->st, res.mailbox_id, res.uid, &m,
	    NULL), 0);
	buf_init(&b, BUF_UNBOUNDED);
	assert_int_equal(store_blob_read(f->st, m.blob, &b, NULL), 0);
	assert_string_equal(buf_str(&b), secret);
	buf_free(&b);
	store_close(f->st);
	f->st = NULL;
	assert_false(chunks_have(f->path, "TOP-SECRET-PLAINTEXT"));
	/* and the log files neither */
	{
		char logf[400];

		snprintf(logf, sizeof(logf), "%s/log.0000000001", f->path);
		assert_false(file_has(logf, "TOP-SECRET-PLAINTEXT", 20));
	}
	/* without encryption the same test finds the text: it can fail */
	fx_open(f);
	check_clean(f);
}

static void
test_plaintext_visible(void **state)
{
	struct fx *f = *state;
	static const char plain[] = "Subject: s\r\n\r\nVISIBLE-PLAINTEXT-5e1\r\n";
	const char *rcpt = "a@city.example";
	struct store_rcpt_result res;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)plain,
	    sizeof(plain) - 1, &rcpt, 1, 0, &res, NULL), 0);
	store_close(f->st);
	f->st = NULL;
	assert_true(chunks_have(f->path, "VISIBLE-PLAINTEXT-5e1"));
	fx_open(f);
}

/* ---- compression of contents ---- */

static void
count_cb(const char *problem, int repaired, void *ctx)
{
	(void)repaired;
	(void)problem;
	(*(int *)ctx)++;
}

/*
 * Chunk i of blob key, straight from its database: read into buf (at most
 * len bytes; returns the stored length), or with put, replaced by the len
 * bytes of buf.
 */
static size_t
chunk_io(struct fx *f, const uint8_t *key, uint32_t i, uint8_t *buf,
    size_t len, int put)
{
	uint8_t ck[STORE_BLOB_KEY_LEN + 4];
	DB *db = f->st->db[SDB_PART(SDB_CHUNKS, key[0] % STORE_PARTS)];
	DBT k, v;

	memcpy(ck, key, STORE_BLOB_KEY_LEN);
	be32_put(ck + STORE_BLOB_KEY_LEN, i);
	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	k.data = ck;
	k.size = sizeof(ck);
	v.data = buf;
	if (put) {
		v.size = (u_int32_t)len;
		assert_int_equal(db->put(db, NULL, &k, &v, DB_AUTO_COMMIT),
		    0);
		return len;
	}
	v.ulen = (u_int32_t)len;
	v.flags = DB_DBT_USERMEM;
	assert_int_equal(db->get(db, NULL, &k, &v, 0), 0);
	return v.size;
}

#define raw_chunk(f, key, i, out, outsz) chunk_io(f, key, i, out, outsz, 0)
#define put_raw_chunk(f, key, i, val, len) \
	(void)chunk_io(f, key, i, val, len, 1)

static uint8_t
blob_flags(struct fx *f, const uint8_t *key)
{
	uint8_t rec[BLOB_REC_LEN], kb[STORE_BLOB_KEY_LEN];
	struct blob_rec br;
	DB *db = f->st->db[SDB_BLOBS];
	DBT k, v;

	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	memcpy(kb, key, sizeof(kb));
	k.data = kb;
	k.size = sizeof(kb);
	v.data = rec;
	v.ulen = sizeof(rec);
	v.flags = DB_DBT_USERMEM;
	assert_int_equal(db->get(db, NULL, &k, &v, 0), 0);
	assert_int_equal(blob_rec_decode(rec, v.size, &br), 0);
	return br.flags;
}

/* Deliver len bytes of msg to rcpt and check they read back whole and in a
 * range across the first chunk boundary; the blob key in blob. */
static void
deliver_read_back(struct fx *f, const char *rcpt, const uint8_t *msg,
    size_t len, uint8_t blob[STORE_BLOB_KEY_LEN])
{
	struct store_rcpt_result res;
	struct store_msg m;
	struct buf b;

	assert_int_equal(store_deliver(f->st, msg, len, &rcpt, 1, 0, &res,
	    NULL), 0);
	assert_int_equal(res.status, 0);
	assert_int_equal(store_msg_get(f->st, res.mailbox_id, res.uid, &m,
	    NULL), 0);
	memcpy(blob, m.blob, STORE_BLOB_KEY_LEN);
	buf_init(&b, BUF_UNBOUNDED);
	assert_int_equal(store_blob_read(f->st, blob, &b, NULL), 0);
	assert_int_equal(b.len, len);
	assert_memory_equal(b.data, msg, len);
	buf_reset(&b);
	assert_int_equal(store_blob_read_range(f->st, blob,
	    STORE_CHUNK_SIZE - 5, 20, &b, NULL), 0);
	assert_int_equal(b.len, 20);
	assert_memory_equal(b.data, msg + STORE_CHUNK_SIZE - 5, 20);
	buf_free(&b);
}

/* A message of len bytes: fx_msg's header, then text or random bytes. */
static uint8_t *
make_msg(size_t len, int text)
{
	uint8_t *msg = malloc(len);
	size_t i, h = sizeof(fx_msg) - 1;

	memcpy(msg, fx_msg, h);
	if (text)
		for (i = h; i < len; i++)
			msg[i] = (i % 78 == 77) ? '\n' :
			    (uint8_t)('a' + (i * 7 + i / 78) % 26);
	else
		randombytes_buf(msg + h, len - h);
	return msg;
}

/* Problem texts for a test to look at. */
struct problems {
	int n;
	char text[4][128];
};

static void
problems_cb(const char *problem, int repaired, void *ctx)
{
	struct problems *p = ctx;

	(void)repaired;
	if (p->n < 4)
		(void)snprintf(p->text[p->n], sizeof(p->text[0]), "%s",
		    problem);
	p->n++;
}

/*
 * check --contents reads blobs in slices of ST_CHECK_CONTENTS_SLICE, each
 * in its own transaction: damage in the first, a middle and the last
 * slice is each reported once.
 */
static void
test_check_contents_slices(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example";
	enum { N = 3 * ST_CHECK_CONTENTS_SLICE + 5 };
	uint8_t (*keys)[STORE_BLOB_KEY_LEN] = calloc(N, STORE_BLOB_KEY_LEN);
	uint8_t *msg = make_msg(300, 1), raw[400], hex[3][17];
	size_t n, i, lo = 0, hi = 0, mid = N / 2;
	struct problems p;
	int k;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	for (i = 0; i < N; i++) {
		struct store_rcpt_result res;
		struct store_msg m;

		(void)snprintf((char *)msg + 250, 40, "%zu", i);
		assert_int_equal(store_deliver(f->st, msg, 300, &rcpt, 1, 0,
		    &res, NULL), 0);
		assert_int_equal(res.status, 0);
		assert_int_equal(store_msg_get(f->st, res.mailbox_id, res.uid,
		    &m, NULL), 0);
		memcpy(keys[i], m.blob, STORE_BLOB_KEY_LEN);
	}
	/* The smallest and the largest key: the first and the last slice. */
	for (i = 1; i < N; i++) {
		if (memcmp(keys[i], keys[lo], STORE_BLOB_KEY_LEN) < 0)
			lo = i;
		if (memcmp(keys[i], keys[hi], STORE_BLOB_KEY_LEN) > 0)
			hi = i;
	}
	while (mid == lo || mid == hi)
		mid++;
	check_clean(f);
	{
		size_t which[3] = { lo, mid, hi };

		for (k = 0; k < 3; k++) {
			n = raw_chunk(f, keys[which[k]], 0, raw, sizeof(raw));
			raw[n - 1] ^= 0x01;
			put_raw_chunk(f, keys[which[k]], 0, raw, n);
			(void)sodium_bin2hex((char *)hex[k], 17,
			    keys[which[k]], 8);
		}
	}
	assert_int_equal(store_check(f->st, 0, NULL, NULL, NULL), 0);
	memset(&p, 0, sizeof(p));
	assert_int_equal(store_check(f->st, STORE_CHECK_CONTENTS,
	    problems_cb, &p, NULL), STORE_EDAMAGED);
	assert_int_equal(p.n, 3);
	for (k = 0; k < 3; k++) {
		int seen = 0, j;

		for (j = 0; j < 3; j++)
			seen += strstr(p.text[j], (char *)hex[k]) != NULL;
		assert_int_equal(seen, 1);
	}
	free(keys);
	free(msg);
}

static void
test_compression(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example", *err;
	size_t len = 2 * STORE_CHUNK_SIZE + 1000, n;
	uint8_t *text = make_msg(len, 1), *noise = make_msg(len, 0), *plain;
	uint8_t *raw = malloc(STORE_CHUNK_SIZE + 100), tkey[32], nkey[32];
	uint8_t okey[32], skey[32], bad[8], last = text[len - 1];
	struct buf b;
	int problems;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);

	/* text: framed, every full chunk a zstd frame far smaller */
	deliver_read_back(f, rcpt, text, len, tkey);
	assert_int_equal(blob_flags(f, tkey), BLOB_FRAMED);
	n = raw_chunk(f, tkey, 0, raw, STORE_CHUNK_SIZE + 100);
	assert_int_equal(raw[0], CHUNK_ZSTD);
	assert_true(n < STORE_CHUNK_SIZE / 4);

	/* random bytes do not compress: stored as they are, framed */
	deliver_read_back(f, rcpt, noise, len, nkey);
	assert_int_equal(blob_flags(f, nkey), BLOB_FRAMED);
	n = raw_chunk(f, nkey, 1, raw, STORE_CHUNK_SIZE + 100);
	assert_int_equal(n, 1 + STORE_CHUNK_SIZE);
	assert_int_equal(raw[0], CHUNK_STORED);
	assert_memory_equal(raw + 1, noise + STORE_CHUNK_SIZE,
	    STORE_CHUNK_SIZE);
	check_clean(f);

	/* bad settings are refused */
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(config_set(f->cfg, "store", "compress", "lz4", &err),
	    0);
	assert_int_equal(store_open(f->cfg, 0, &f->st, &err), STORE_EINVAL);
	assert_non_null(strstr(err, "compress"));
	assert_int_equal(config_set(f->cfg, "store", "compress", "zstd",
	    &err), 0);
	assert_int_equal(config_set(f->cfg, "store", "compress_level", "20",
	    &err), 0);
	assert_int_equal(store_open(f->cfg, 0, &f->st, &err), STORE_EINVAL);
	assert_int_equal(config_set(f->cfg, "store", "compress_level", "19",
	    &err), 0);
	fx_open(f);
	text[len - 1] = '!';	/* a new blob */
	deliver_read_back(f, rcpt, text, len, skey);
	assert_int_equal(raw_chunk(f, skey, 0, raw, STORE_CHUNK_SIZE + 100) <
	    n / 4, 1);

	/* compress = none: new blobs unframed; old ones still read */
	store_close(f->st);
	assert_int_equal(config_set(f->cfg, "store", "compress", "none",
	    &err), 0);
	fx_open(f);
	text[len - 1] = '?';
	deliver_read_back(f, rcpt, text, len, okey);
	assert_int_equal(blob_flags(f, okey), 0);
	assert_int_equal(raw_chunk(f, okey, 0, raw, STORE_CHUNK_SIZE + 100),
	    STORE_CHUNK_SIZE);
	assert_memory_equal(raw, text, STORE_CHUNK_SIZE);
	buf_init(&b, BUF_UNBOUNDED);
	assert_int_equal(store_blob_read(f->st, tkey, &b, NULL), 0);
	assert_int_equal(b.len, len);
	check_clean(f);

	/* damage is reported, never returned as content */
	memset(bad, 0x5a, sizeof(bad));
	bad[0] = CHUNK_ZSTD;			/* not a zstd frame */
	put_raw_chunk(f, tkey, 1, bad, sizeof(bad));
	buf_reset(&b);
	assert_int_equal(store_blob_read(f->st, tkey, &b, NULL),
	    STORE_EDAMAGED);
	assert_int_equal(b.len, 0);
	bad[0] = 7;				/* no such method */
	put_raw_chunk(f, tkey, 1, bad, sizeof(bad));
	assert_int_equal(store_blob_read(f->st, tkey, &b, NULL),
	    STORE_EDAMAGED);
	bad[0] = CHUNK_STORED;			/* stored, wrong length */
	put_raw_chunk(f, tkey, 1, bad, sizeof(bad));
	assert_int_equal(store_blob_read(f->st, tkey, &b, NULL),
	    STORE_EDAMAGED);
	/* a zstd frame of the wrong length */
	n = raw_chunk(f, tkey, 2, raw, STORE_CHUNK_SIZE + 100);
	assert_int_equal(raw[0], CHUNK_ZSTD);
	put_raw_chunk(f, tkey, 0, raw, n);
	assert_int_equal(store_blob_read_range(f->st, tkey, 0, 10, &b, NULL),
	    STORE_EDAMAGED);
	/* check finds it only when told to read contents */
	assert_int_equal(store_check(f->st, 0, NULL, NULL, NULL), 0);
	problems = 0;
	assert_int_equal(store_check(f->st, STORE_CHECK_CONTENTS,
	    count_cb, &problems, NULL), STORE_EDAMAGED);
	assert_int_equal(problems, 1);
	/* the undamaged chunk 2 still reads */
	text[len - 1] = last;
	assert_int_equal(store_blob_read_range(f->st, tkey,
	    2 * STORE_CHUNK_SIZE, 1000, &b, NULL), 0);
	assert_memory_equal(b.data, text + 2 * STORE_CHUNK_SIZE, 1000);
	buf_free(&b);

	/* sealed and compressed: the method byte is inside the seal */
	fx_store_key(f, 0600);
	assert_int_equal(config_set(f->cfg, "store", "compress", "zstd",
	    &err), 0);
	fx_open(f);
	plain = make_msg(len, 1);
	deliver_read_back(f, rcpt, plain, len, skey);
	assert_int_equal(blob_flags(f, skey), BLOB_FRAMED | BLOB_SEALED);
	n = raw_chunk(f, skey, 0, raw, STORE_CHUNK_SIZE + 100);
	assert_true(n < STORE_CHUNK_SIZE / 4);
	deliver_read_back(f, rcpt, noise + 1, len - 1, nkey);
	assert_int_equal(raw_chunk(f, nkey, 0, raw, STORE_CHUNK_SIZE + 100),
	    STORE_SEAL_NONCE + 1 + STORE_CHUNK_SIZE + STORE_SEAL_TAG);
	free(plain);
	free(text);
	free(noise);
	free(raw);
}

/* ---- change notification ---- */

static void
watch_cb(uint32_t id, void *ctx)
{
	*(uint32_t *)ctx = id;
}

static void
test_watch(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example";
	struct store_mailbox_info mi, other;
	struct store_watch *w;
	struct pollfd pfd;
	uint32_t seen = 0;
	pid_t pid;
	int status;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	assert_int_equal(store_mailbox_get(f->st, rcpt, "INBOX", &mi, NULL),
	    0);
	assert_int_equal(store_mailbox_get(f->st, rcpt, "Sent", &other, NULL),
	    0);
	assert_int_equal(store_watch_new(f->st, &w, NULL), 0);
	assert_int_equal(store_watch_add(w, mi.id), 0);
	assert_int_equal(store_watch_add(w, mi.id), 0);
	assert_int_equal(store_watch_add(w, other.id), 0);
	store_watch_remove(w, other.id);
	pfd.fd = store_watch_fd(w);
	pfd.events = POLLIN;
	/* removing a watch may queue an event; nothing changed yet */
	assert_int_equal(store_watch_read(w, watch_cb, &seen), 0);
	assert_int_equal(poll(&pfd, 1, 0), 0);

	/* the parent closes its handle: the child opens its own */
	store_close(f->st);
	f->st = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *s;
		struct store_rcpt_result res;
		const char *err;

		if (store_open(f->cfg, 0, &s, &err) != 0)
			_exit(2);
		if (store_deliver(s, (const uint8_t *)fx_msg,
		    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, &err) != 0 ||
		    res.status != 0)
			_exit(3);
		store_close(s);
		_exit(0);
	}
	/* a generous bound that only guards against a hang */
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	assert_int_equal(store_watch_read(w, watch_cb, &seen), 1);
	assert_int_equal(seen, mi.id);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fx_open(f);
	/* a change to a mailbox not watched (other bucket) does not wake */
	assert_int_equal(store_mailbox_subscribe(f->st, rcpt, "Sent", 0,
	    NULL), 0);
	if (other.id % STORE_NOTIFY_BUCKETS != mi.id % STORE_NOTIFY_BUCKETS)
		assert_int_equal(poll(&pfd, 1, 0), 0);
	/* a flag change on the watched one does */
	{
		struct store_uid_range all = { 1, UINT32_MAX };

		assert_int_equal(store_flags_update(f->st, mi.id, &all, 1,
		    STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0, 0, NULL, NULL,
		    NULL, NULL), 0);
	}
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	seen = 0;
	assert_int_equal(store_watch_read(w, watch_cb, &seen), 1);
	assert_int_equal(seen, mi.id);
	assert_int_equal(store_watch_read(w, watch_cb, &seen), 0);
	store_watch_free(w);
}

/* ---- check and repair ---- */

static void
test_check_repair(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example";
	struct store_rcpt_result res;
	struct store_msg m;
	struct mbox_rec mr;
	DB_TXN *txn;
	DB *db;
	DBT k, v;
	uint8_t key[4], rec[BLOB_REC_LEN], orphan[STORE_BLOB_KEY_LEN + 4];
	struct blob_rec br;
	struct buf mb;
	int n;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, "before@city.example"), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	assert_int_equal(fx_citizen(f, "after@city.example"), 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
	assert_int_equal(store_msg_get(f->st, res.mailbox_id, res.uid, &m,
	    NULL), 0);
	check_clean(f);

	/* damage: wrong refcount, wrong counters, an orphan chunk */
	br.flags = blob_flags(f, m.blob);
	assert_int_equal(f->st->env->txn_begin(f->st->env, NULL, &txn, 0), 0);
	br.refcount = 5;
	br.size = sizeof(fx_msg) - 1;
	br.nchunks = 1;
	blob_rec_encode(&br, rec);
	memset(&k, 0, sizeof(k));
	memset(&v, 0, sizeof(v));
	k.data = m.blob;
	k.size = STORE_BLOB_KEY_LEN;
	v.data = rec;
	v.size = sizeof(rec);
	db = f->st->db[SDB_BLOBS];
	assert_int_equal(db->put(db, txn, &k, &v, 0), 0);
	memset(orphan, 0xee, sizeof(orphan));
	k.data = orphan;
	k.size = sizeof(orphan);
	v.data = "junk";
	v.size = 4;
	db = f->st->db[SDB_CHUNKS];
	assert_int_equal(db->put(db, txn, &k, &v, 0), 0);
	memset(&mr, 0, sizeof(mr));
	be32_put(key, res.mailbox_id);
	{
		DBT g;

		memset(&g, 0, sizeof(g));
		g.flags = DB_DBT_MALLOC;
		k.data = key;
		k.size = 4;
		db = f->st->db[SDB_MBOX_BY_ID];
		assert_int_equal(db->get(db, txn, &k, &g, 0), 0);
		assert_int_equal(mbox_rec_decode(g.data, g.size, &mr), 0);
		free(g.data);
	}
	mr.messages = 9;
	mr.uidnext = 1;
	buf_init(&mb, BUF_UNBOUNDED);
	mbox_rec_encode(&mr, &mb);
	v.data = mb.data;
	v.size = (u_int32_t)mb.len;
	assert_int_equal(db->put(db, txn, &k, &v, 0), 0);
	buf_free(&mb);
	/* and the account's usage (its neighbours' stay right) */
	{
		uint8_t u[STORE_USAGE_REC_LEN], ak[4];

		st_usage_encode(u, 1, 77);
		be32_put(ak, mr.account_id);
		k.data = ak;
		k.size = 4;
		v.data = u;
		v.size = sizeof(u);
		db = f->st->db[SDB_USAGE];
		assert_int_equal(db->put(db, txn, &k, &v, 0), 0);
	}
	assert_int_equal(txn->commit(txn, 0), 0);

	n = 0;
	assert_int_equal(store_check(f->st, 0, count_cb, &n, NULL),
	    STORE_EDAMAGED);
	/* refcount, counters, uidnext, orphan, usage */
	assert_int_equal(n, 5);
	n = 0;
	assert_int_equal(store_check(f->st, STORE_CHECK_REPAIR, count_cb, &n,
	    NULL), STORE_EDAMAGED);
	assert_int_equal(n, 5);
	n = 0;
	assert_int_equal(store_check(f->st, 0, count_cb, &n, NULL), 0);
	assert_int_equal(n, 0);
	/* the repaired store works on */
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
	assert_int_equal(res.uid, 2);
	check_clean(f);
}

/* ---- backup and restore ---- */

static void
test_backup_restore(void **state)
{
	struct fx *f = *state;
	const char *rcpt = "a@city.example", *err;
	struct store_rcpt_result res;
	struct store_mailbox_info mi;
	struct store_account *a;
	char bdir[400], newpath[400], rid[19], *found = NULL;
	struct store_account_spec sp;

	fx_resident("11010519491231002", rid);
	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	memset(&sp, 0, sizeof(sp));
	sp.address = rcpt;
	sp.class = STORE_CLASS_CITIZEN;
	sp.resident_id = rid;
	sp.password = "pw";
	assert_int_equal(store_account_add(f->st, &sp, NULL), 0);
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
	snprintf(bdir, sizeof(bdir), "%s/backup", f->dir);
	assert_int_equal(store_backup(f->st, bdir, &err), 0);
	assert_int_equal(store_backup(f->st, bdir, &err), STORE_EEXISTS);
	/* a change after the backup is not in it */
	assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
	    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
	store_close(f->st);
	f->st = NULL;

	/* restoring onto a store in place is refused */
	assert_int_equal(store_restore(f->cfg, bdir, &err), STORE_EEXISTS);
	snprintf(newpath, sizeof(newpath), "%s/restored", f->dir);
	assert_int_equal(config_set(f->cfg, "store", "path", newpath, &err),
	    0);
	assert_int_equal(store_restore(f->cfg, bdir, &err), 0);
	fx_open(f);
	assert_int_equal(store_account_get(f->st, rcpt, &a, NULL), 0);
	assert_int_equal(a->used_messages, 1);
	store_account_free(a);
	assert_int_equal(store_mailbox_get(f->st, rcpt, "INBOX", &mi, NULL),
	    0);
	assert_int_equal(mi.messages, 1);
	assert_int_equal(store_account_find_resident(f->st, rid, &found,
	    NULL), 0);
	free(found);
	assert_int_equal(store_password_verify(f->st, rcpt, "pw"), 1);
	check_clean(f);
}

/* ---- the environment: open modes, housekeeping ---- */

/*
 * Processes opening and closing the store at once, none holding it
 * between: the last one out releases the shared regions, and every open
 * either joins live regions or makes them anew, never attaches to
 * segments that go between its check and its attach.
 */
#define CHURN_PROCS 8
#define CHURN_ROUNDS 2

static void
test_open_churn(void **state)
{
	struct fx *f = *state;
	pid_t pid[CHURN_PROCS];
	int i, status;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	store_close(f->st);
	f->st = NULL;
	/* the defaults: regions, and opens, as large as a daemon's */
	assert_int_equal(config_set(f->cfg, "store", "cache_size", "64M",
	    NULL), 0);
	assert_int_equal(config_set(f->cfg, "store", "max_processes", "512",
	    NULL), 0);
	for (i = 0; i < CHURN_PROCS; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			struct store *s;
			struct store_account_spec sp;
			const char *err;
			char addr[64];
			int r;

			memset(&sp, 0, sizeof(sp));
			sp.class = STORE_CLASS_CITIZEN;
			sp.password = "secret";

			for (r = 0; r < CHURN_ROUNDS; r++) {
				if (store_open(f->cfg, 0, &s, &err) != 0)
					_exit(2);
				snprintf(addr, sizeof(addr), "%d-%d@city.example",
				    i, r);
				sp.address = addr;
				if (store_account_add(s, &sp, &err) != 0)
					_exit(3);
				store_close(s);
			}
			_exit(0);
		}
	}
	for (i = 0; i < CHURN_PROCS; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	fx_open(f);
}

/*
 * The last process holding the regions exits while another is between its
 * check of the regions and its attach: its memory (the attachments) goes
 * before its locks (the registration), and a detach at exit is not under
 * the folder lock.  The released segments go, the attach fails, and the
 * open waits for the exiting process, makes the regions anew and
 * succeeds.  The holder here detaches by hand, then exits a little later.
 */
static int race_cmd[2], race_ack[2];

static void
race_holder_detach(void *arg)
{
	int *fired = arg;
	char c = 'x';

	if ((*fired)++ > 0)
		return;		/* the open's second attempt */
	assert_int_equal(write(race_cmd[1], &c, 1), 1);
	assert_int_equal(read(race_ack[0], &c, 1), 1);
}

static void
race_holder_main(struct fx *f)
{
	struct store *s;
	const char *err;
	char line[512], c;
	unsigned long lo;
	FILE *maps;

	if (store_open(f->cfg, 0, &s, &err) != 0)
		_exit(2);
	(void)write(race_ack[1], "r", 1);
	if (read(race_cmd[0], &c, 1) != 1)
		_exit(3);
	if ((maps = fopen("/proc/self/maps", "r")) == NULL)
		_exit(4);
	while (fgets(line, sizeof(line), maps) != NULL)
		if (strstr(line, "SYSV") != NULL &&
		    sscanf(line, "%lx-", &lo) == 1 && shmdt((void *)lo) != 0)
			_exit(5);
	(void)fclose(maps);
	(void)write(race_ack[1], "d", 1);
	(void)usleep(300 * 1000);
	_exit(0);
}

static void
test_open_holder_exits(void **state)
{
	struct fx *f = *state;
	pid_t pid;
	int status, fired = 0;
	char c;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, "c@city.example"), 0);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(pipe(race_cmd), 0);
	assert_int_equal(pipe(race_ack), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		race_holder_main(f);
	assert_int_equal(read(race_ack[0], &c, 1), 1);
	store_test_open_hook(race_holder_detach, &fired);
	fx_open(f);
	store_test_open_hook(NULL, NULL);
	assert_int_equal(fired, 2);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* what was committed before is there */
	assert_int_equal(fx_citizen(f, "c@city.example"), STORE_EEXISTS);
	(void)close(race_cmd[0]);
	(void)close(race_cmd[1]);
	(void)close(race_ack[0]);
	(void)close(race_ack[1]);
}

/* Log files in the store folder. */
static int
count_logs(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "log.", 4) == 0)
			n++;
	closedir(d);
	return n;
}

/*
 * Reopen with checkpoint_log_size = size (checkpoint_interval an hour),
 * write mb MiB of incompressible messages with store_maintain() after each,
 * as the daemons' timers and the import do; the log files left.
 */
static int
logs_after_burst(struct fx *f, const char *size, int mb)
{
	const char *rcpt = "a@city.example", *err;
	size_t len = 1024 * 1024;
	struct store_rcpt_result res;
	uint8_t *msg;
	int i;

	store_close(f->st);
	f->st = NULL;
	assert_int_equal(config_set(f->cfg, "store", "checkpoint_interval",
	    "1h", &err), 0);
	assert_int_equal(config_set(f->cfg, "store", "checkpoint_log_size",
	    size, &err), 0);
	fx_open(f);
	for (i = 0; i < mb; i++) {
		msg = make_msg(len, 0);
		assert_int_equal(store_deliver(f->st, msg, len, &rcpt, 1, 0,
		    &res, NULL), 0);
		assert_int_equal(res.status, STORE_OK);
		free(msg);
		assert_int_equal(store_maintain(f->st, NULL), 0);
	}
	return count_logs(f->path);
}

/*
 * checkpoint_log_size: a burst of log brings a checkpoint (and the removal
 * of the log files before it) without waiting for checkpoint_interval.
 */
static void
test_checkpoint_log_size(void **state)
{
	struct fx *f = *state;
	int by_time, by_size;

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, "a@city.example"), 0);
	/* 0: by time only; 40 MiB of log stay (10 MiB log files). */
	by_time = logs_after_burst(f, "0", 40);
	assert_true(by_time >= 4);
	/* 4M: a checkpoint every 4 MiB or so; older files go. */
	by_size = logs_after_burst(f, "4M", 40);
	assert_true(by_size <= 2);
	check_clean(f);
}

static void
test_env(void **state)
{
	struct fx *f = *state;
	struct store *ro, *second;
	struct store_stats st;
	const char *err, *rcpt = "a@city.example";
	struct store_rcpt_result res;
	struct config *cfg;
	int i;

	/* a missing store is not created without STORE_OPEN_CREATE */
	cfg = config_defaults();
	assert_int_equal(config_set(cfg, "store", "path", "/nonexistent/x",
	    &err), 0);
	assert_int_equal(store_open(cfg, 0, &ro, &err), STORE_ENOTFOUND);
	config_free(cfg);

	assert_int_equal(store_domain_add(f->st, "city.example", NULL), 0);
	assert_int_equal(fx_citizen(f, rcpt), 0);
	/* a second handle in the same process shares the environment */
	assert_int_equal(store_open(f->cfg, 0, &second, &err), 0);
	assert_int_equal(store_domain_exists(second, "city.example"), 1);
	store_close(second);
	/* read-only handles look but do not touch */
	assert_int_equal(store_open(f->cfg, STORE_OPEN_READONLY, &ro, &err),
	    0);
	assert_int_equal(store_domain_exists(ro, "city.example"), 1);
	assert_int_equal(store_domain_add(ro, "town.example", &err),
	    STORE_EPERM);
	assert_non_null(err);
	store_close(ro);

	/* housekeeping: checkpoints on every call with interval 0 */
	store_close(f->st);
	assert_int_equal(config_set(f->cfg, "store", "checkpoint_interval",
	    "0", &err), 0);
	fx_open(f);
	for (i = 0; i < 20; i++)
		assert_int_equal(store_deliver(f->st, (const uint8_t *)fx_msg,
		    sizeof(fx_msg) - 1, &rcpt, 1, 0, &res, NULL), 0);
	assert_int_equal(store_maintain(f->st, &err), 0);
	assert_int_equal(store_maintain(f->st, &err), 0);
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_true(st.log_files >= 1);
	assert_int_equal(st.messages, 20);
	assert_string_equal(store_strerror(STORE_EQUOTA), "over quota");

	/* a process the watchdog ended leaves a marker: the next open
	 * recovers (without failchk), removes it, and nothing is lost */
	store_close(f->st);
	f->st = NULL;
	{
		char marker[400];
		int fd;

		snprintf(marker, sizeof(marker), "%s/%s", f->path,
		    STORE_RECOVER_MARKER);
		fd = open(marker, O_WRONLY | O_CREAT, 0600);
		assert_true(fd >= 0);
		close(fd);
		fx_open(f);
		assert_int_equal(access(marker, F_OK), -1);
	}
	assert_int_equal(store_stats(f->st, &st, NULL), 0);
	assert_int_equal(st.messages, 20);
	assert_string_equal(store_class_name(STORE_CLASS_LEGAL_PERSON),
	    "legal-person");
	check_clean(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_account_table, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_password_rehash, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_account_fields, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_alias_list_resolve, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_list_limit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_deliver_single_instance,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_message, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_message_size_limit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uid_modseq_flags, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_keyword_slots, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_copy_move, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_mailboxes, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_limit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_encryption, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_plaintext_visible, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_check_contents_slices,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_compression, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_repair, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_backup_restore, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_checkpoint_log_size,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_churn, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_open_holder_exits, setup,
		    teardown),
	};

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
