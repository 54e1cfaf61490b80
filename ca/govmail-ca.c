/*
 * govmail-ca.c - the certificate authority command (govmail-ca(8)).
 *
 * Run by the CA administrator (and by the demo): init, issue, revoke, crl,
 * list/show/find, renew, expiring, serve, audit verify.  Trusts its
 * command line and configuration (operator input); the mail store says
 * which mailboxes exist and of which class, and supplies the holder data.
 * The key passphrase is read from a file or the terminal, wiped after use
 * and never logged.
 *
 * Exit codes: 0 ok, 1 the act failed (bad input, refused), 2 usage,
 * 3 environment (files, database), 4 audit log damaged.
 */
#include "autoconf.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "govca.h"
#include "log.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_ENV 3
#define EXIT_AUDIT 4

#define CMD_NAMES_MAX GOVCA_SERVER_NAMES_MAX

struct opts {
	const char *config;
	const char *dir;
	const char *passphrase_file;
	const char *profile;
	const char *csr;
	const char *out;
	const char *p12;
	const char *key_type;
	const char *issuing_key;
	const char *reason;
	const char *email;
	const char *listen;
	const char *cert;
	const char *root;
	const char *key_out;
	const char *given_name;
	const char *surname;
	const char *title;
	const char *resident_id;
	const char *days;
	const char *threads;
	const char *dns[CMD_NAMES_MAX];
	size_t ndns;
	const char *ips[CMD_NAMES_MAX];
	size_t nips;
	int generate;
	int unverified;
	int legacy_code;
	int pem;
};

struct cmd_ctx {
	struct opts o;
	struct config *cfg;
	struct govca_settings settings;
	char dir[4096];
	char *passphrase;
	int argc;
	char **argv;
};

static volatile int stop_flag;
/* Closed at exit, also after die(), so the database is left clean. */
static struct govca *open_handle;
static struct store *open_store;

static void
close_at_exit(void)
{
	govca_close(open_handle);
	open_handle = NULL;
	if (open_store != NULL)
		store_close(open_store);
	open_store = NULL;
}

static void
usage(void)
{
	fprintf(stderr,
"usage: govmail-ca [-c CONFIG] [-d DIR] [--passphrase-file FILE] COMMAND ...\n"
"  init [--issuing-key p256|p384]\n"
"  init-root | init-issuing --csr OUT | sign-issuing --csr IN --cert OUT\n"
"  import-issuing --cert FILE --root FILE\n"
"  issue --profile official|department|legal-person|citizen ADDRESS\n"
"        (--csr FILE [--out FILE] | --generate [--p12 PATH] [--key-type T])\n"
"        [--days N] [--unverified] [--legacy-code] [--given-name G]\n"
"        [--surname S] [--title T] [--resident-id ID]\n"
"  issue-batch < LINES   (PROFILE ADDRESS CSR-FILE|generate OUT [unverified])\n"
"  issue-server --dns NAME... [--ip ADDR...] --key-out FILE --cert-out FILE\n"
"  revoke SERIAL [--reason REASON]     crl\n"
"  list | show SERIAL [--pem] | find --email ADDRESS\n"
"  renew SERIAL (--csr FILE [--out FILE] | --generate [--p12 PATH])\n"
"  expiring --days N\n"
"  serve [--listen HOST:PORT] [--threads N]\n"
"  audit verify\n");
	exit(EXIT_USAGE);
}

static void
die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3),
    noreturn));

static void
die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("govmail-ca: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static unsigned
parse_uint(const char *s, uint64_t max, const char *what)
{
	const char *err;
	uint64_t v;

	if (strnum_u64(s, 0, max, &v, &err) == -1)
		die(EXIT_USAGE, "%s: %s", what, err);
	return (unsigned)v;
}

/* ---- passphrase ----------------------------------------------------- */

static char *
read_passphrase_file(const char *path)
{
	char *pass = xmalloc(GOVCA_PASSPHRASE_MAX + 2);
	size_t len;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL)
		die(EXIT_ENV, "cannot read the passphrase file %s: %s", path,
		    strerror(errno));
	if (fgets(pass, GOVCA_PASSPHRASE_MAX + 2, f) == NULL)
		pass[0] = '\0';
	fclose(f);
	len = strcspn(pass, "\r\n");
	if (len > GOVCA_PASSPHRASE_MAX)
		die(EXIT_FAIL, "passphrase longer than %d bytes",
		    GOVCA_PASSPHRASE_MAX);
	pass[len] = '\0';
	if (len == 0)
		die(EXIT_FAIL, "the passphrase file is empty");
	return pass;
}

static char *
prompt_passphrase(int twice)
{
	char *pass = xmalloc(GOVCA_PASSPHRASE_MAX + 2);
	char *again = NULL;
	struct termios t, quiet;
	FILE *tty;
	size_t len;
	int round;

	if ((tty = fopen("/dev/tty", "r+")) == NULL)
		die(EXIT_USAGE, "no terminal: give --passphrase-file or "
		    "[ca] passphrase_file");
	for (round = 0; round < (twice ? 2 : 1); round++) {
		char *dst = round == 0 ? pass : (again = xmalloc(
		    GOVCA_PASSPHRASE_MAX + 2));

		fputs(round == 0 ? "CA key passphrase: " : "Again: ", tty);
		fflush(tty);
		tcgetattr(fileno(tty), &t);
		quiet = t;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
		if (fgets(dst, GOVCA_PASSPHRASE_MAX + 2, tty) == NULL)
			dst[0] = '\0';
		tcsetattr(fileno(tty), TCSAFLUSH, &t);
		fputc('\n', tty);
		len = strcspn(dst, "\r\n");
		dst[len] = '\0';
	}
	fclose(tty);
	if (pass[0] == '\0')
		die(EXIT_FAIL, "empty passphrase");
	if (again != NULL) {
		if (strcmp(pass, again) != 0)
			die(EXIT_FAIL, "the passphrases differ");
		sodium_memzero(again, GOVCA_PASSPHRASE_MAX + 2);
		free(again);
	}
	return pass;
}

static const char *
passphrase(struct cmd_ctx *c, int twice)
{
	const char *file;

	if (c->passphrase != NULL)
		return c->passphrase;
	file = c->o.passphrase_file;
	if (file == NULL && c->cfg != NULL)
		file = config_path_get(c->cfg, "ca", "passphrase_file");
	if (file != NULL && file[0] != '\0')
		c->passphrase = read_passphrase_file(file);
	else
		c->passphrase = prompt_passphrase(twice);
	return c->passphrase;
}

static void
passphrase_wipe(struct cmd_ctx *c)
{
	if (c->passphrase != NULL) {
		sodium_memzero(c->passphrase, strlen(c->passphrase));
		free(c->passphrase);
		c->passphrase = NULL;
	}
}

/* ---- helpers ---------------------------------------------------------- */

static struct govca *
open_ca(struct cmd_ctx *c, unsigned flags)
{
	struct govca *ca;
	const char *err;

	if (govca_open(c->dir, &c->settings,
	    flags != 0 ? passphrase(c, 0) : NULL, flags, &ca, &err) == -1)
		die(EXIT_ENV, "%s", err);
	open_handle = ca;
	return ca;
}

static void
close_ca(struct govca *ca)
{
	govca_close(ca);
	if (open_handle == ca)
		open_handle = NULL;
}

static void
write_file(const char *path, const void *data, size_t len, int mode)
{
	FILE *f;
	int fd;

	(void)unlink(path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    mode)) == -1 || (f = fdopen(fd, "w")) == NULL)
		die(EXIT_ENV, "cannot write %s: %s", path, strerror(errno));
	if (fchmod(fd, mode) != 0 || fwrite(data, 1, len, f) != len ||
	    fflush(f) != 0 ||
	    fsync(fd) != 0 || fclose(f) != 0)
		die(EXIT_ENV, "cannot write %s: %s", path, strerror(errno));
}

static uint8_t *
read_input(const char *path, size_t max, size_t *len_r)
{
	struct buf b;
	uint8_t chunk[8192];
	size_t n;
	FILE *f;

	f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (f == NULL)
		die(EXIT_FAIL, "cannot read %s: %s", path, strerror(errno));
	buf_init(&b, max);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (buf_append(&b, chunk, n) == -1)
			die(EXIT_FAIL, "%s: larger than %zu bytes", path, max);
	if (f != stdin)
		fclose(f);
	*len_r = b.len;
	return (uint8_t *)buf_steal(&b);
}

static void
print_pem(const uint8_t *der, size_t len, FILE *out)
{
	const unsigned char *p = der;
	X509 *cert = d2i_X509(NULL, &p, (long)len);

	if (cert != NULL) {
		PEM_write_X509(out, cert);
		X509_free(cert);
	}
}

static const char *
fmt_time(time_t t, char *buf, size_t sz)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sz, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

/* ---- the mail store: does the mailbox exist, which class ----------- */

static int
profile_matches(enum govca_profile p, enum store_class cl)
{
	switch (p) {
	case GOVCA_PROFILE_OFFICIAL:
		return cl == STORE_CLASS_OFFICIAL;
	case GOVCA_PROFILE_DEPARTMENT:
		return cl == STORE_CLASS_DEPARTMENT;
	case GOVCA_PROFILE_LEGAL_PERSON:
		return cl == STORE_CLASS_LEGAL_PERSON;
	case GOVCA_PROFILE_CITIZEN:
		return cl == STORE_CLASS_CITIZEN;
	case GOVCA_PROFILE_SERVER:
		break;
	}
	return 0;
}

struct holder_data {
	struct store *store;
	struct store_account *acct;
	struct govca_holder h;
};

/*
 * Fill hd->h from the account in an open store.  Returns 0, or an exit
 * code with *msg_r (static or in msgbuf) saying why not.
 */
static int
holder_fill(struct cmd_ctx *c, struct store *store, const char *address,
    enum govca_profile p, int unverified, struct holder_data *hd,
    char *msgbuf, size_t msgsz, const char **msg_r)
{
	const char *err = NULL;
	int ret;

	memset(hd, 0, sizeof(*hd));
	hd->store = store;
	ret = store_account_get(store, address, &hd->acct, &err);
	if (ret == STORE_ENOTFOUND) {
		snprintf(msgbuf, msgsz, "no such mailbox: %s", address);
		*msg_r = msgbuf;
		return EXIT_FAIL;
	}
	if (ret != 0) {
		snprintf(msgbuf, msgsz, "mail store: %s",
		    err != NULL ? err : store_strerror(ret));
		*msg_r = msgbuf;
		return ret == STORE_EINVAL ? EXIT_FAIL : EXIT_ENV;
	}
	if (!profile_matches(p, hd->acct->class))
		snprintf(msgbuf, msgsz, "%s is a %s mailbox, not %s", address,
		    store_class_name(hd->acct->class), govca_profile_name(p));
	else if (hd->acct->disabled)
		snprintf(msgbuf, msgsz, "%s is disabled", address);
	else if (p == GOVCA_PROFILE_CITIZEN && !unverified &&
	    !hd->acct->identity_verified)
		snprintf(msgbuf, msgsz, "%s: the citizen's identity was not "
		    "verified; use --unverified for a mailbox-validated "
		    "certificate", address);
	else if (unverified && p != GOVCA_PROFILE_CITIZEN)
		snprintf(msgbuf, msgsz, "--unverified is for the citizen "
		    "profile");
	else
		msgbuf[0] = '\0';
	if (msgbuf[0] == '\0' && c->o.resident_id != NULL) {
		char *owner = NULL;

		/* The ID number must be the one the store holds (as a keyed
		 * hash) for this very account. */
		if (p != GOVCA_PROFILE_CITIZEN)
			snprintf(msgbuf, msgsz, "--resident-id is for the "
			    "citizen profile");
		else if (store_account_find_resident(store, c->o.resident_id,
		    &owner, &err) != 0 ||
		    str_casecmp(owner, hd->acct->address) != 0)
			snprintf(msgbuf, msgsz, "%s: the resident ID number "
			    "given is not the account's", address);
		free(owner);
	}
	if (msgbuf[0] != '\0') {
		store_account_free(hd->acct);
		hd->acct = NULL;
		*msg_r = msgbuf;
		return EXIT_FAIL;
	}
	hd->h.address = hd->acct->address;
	hd->h.profile = p;
	hd->h.display_name = hd->acct->display_name;
	hd->h.organisation = hd->acct->organisation;
	hd->h.org_id = hd->acct->org_id;
	hd->h.title = c->o.title != NULL ? c->o.title : hd->acct->title;
	hd->h.given_name = c->o.given_name;
	hd->h.surname = c->o.surname;
	hd->h.legacy_code = c->o.legacy_code;
	hd->h.resident_id = c->o.resident_id;
	hd->h.unverified = unverified;
	return 0;
}

static void
holder_load(struct cmd_ctx *c, const char *address, enum govca_profile p,
    struct holder_data *hd)
{
	struct store *store;
	const char *err = NULL, *msg;
	char msgbuf[512];
	int ret;

	if ((c->o.given_name == NULL) != (c->o.surname == NULL))
		die(EXIT_USAGE, "give both --given-name and --surname");
	if ((ret = store_open(c->cfg, 0, &store, &err)) != 0)
		die(EXIT_ENV, "cannot open the mail store: %s",
		    err != NULL ? err : store_strerror(ret));
	open_store = store;
	if ((ret = holder_fill(c, store, address, p, c->o.unverified, hd,
	    msgbuf, sizeof(msgbuf), &msg)) != 0)
		die(ret, "%s", msg);
}

static void
holder_done(struct holder_data *hd, const char *serial)
{
	const char *err;

	if (serial != NULL && store_account_set_cert(hd->store,
	    hd->acct->address, serial, &err) != 0)
		fprintf(stderr, "govmail-ca: warning: issued %s but could not "
		    "record it on the account: %s\n", serial, err);
	store_account_free(hd->acct);
	store_close(hd->store);
	open_store = NULL;
}

/* ---- commands ----------------------------------------------------------- */

static int
cmd_init(struct cmd_ctx *c)
{
	enum govca_key_type kt = GOVCA_KEY_P256;
	const char *err;

	if (c->o.issuing_key != NULL &&
	    (govca_key_type_parse(c->o.issuing_key, &kt) == -1 ||
	    (kt != GOVCA_KEY_P256 && kt != GOVCA_KEY_P384)))
		die(EXIT_USAGE, "--issuing-key must be p256 or p384");
	if (govca_init(c->dir, &c->settings, passphrase(c, 1), kt,
	    &err) == -1)
		die(EXIT_FAIL, "init: %s", err);
	printf("CA created in %s\n", c->dir);
	return 0;
}

static int
cmd_init_root(struct cmd_ctx *c)
{
	const char *err;

	if (govca_init_root(c->dir, &c->settings, passphrase(c, 1),
	    &err) == -1)
		die(EXIT_FAIL, "init-root: %s", err);
	printf("root CA created in %s\n", c->dir);
	return 0;
}

static int
cmd_init_issuing(struct cmd_ctx *c)
{
	enum govca_key_type kt = GOVCA_KEY_P256;
	const char *err;

	if (c->o.csr == NULL)
		die(EXIT_USAGE, "init-issuing needs --csr OUT");
	if (c->o.issuing_key != NULL &&
	    govca_key_type_parse(c->o.issuing_key, &kt) == -1)
		die(EXIT_USAGE, "--issuing-key must be p256 or p384");
	if (govca_init_issuing(c->dir, &c->settings, passphrase(c, 1), kt,
	    c->o.csr, &err) == -1)
		die(EXIT_FAIL, "init-issuing: %s", err);
	printf("issuing CA key made; have the root sign %s\n", c->o.csr);
	return 0;
}

static int
cmd_sign_issuing(struct cmd_ctx *c)
{
	const char *err;

	if (c->o.csr == NULL || c->o.cert == NULL)
		die(EXIT_USAGE, "sign-issuing needs --csr IN --cert OUT");
	if (govca_sign_issuing(c->dir, passphrase(c, 0), c->o.csr, c->o.cert,
	    &err) == -1)
		die(EXIT_FAIL, "sign-issuing: %s", err);
	printf("issuing CA certificate written to %s\n", c->o.cert);
	return 0;
}

static int
cmd_import_issuing(struct cmd_ctx *c)
{
	const char *err;

	if (c->o.cert == NULL || c->o.root == NULL)
		die(EXIT_USAGE, "import-issuing needs --cert FILE --root FILE");
	if (govca_import_issuing(c->dir, &c->settings, passphrase(c, 0),
	    c->o.cert, c->o.root, &err) == -1)
		die(EXIT_FAIL, "import-issuing: %s", err);
	printf("issuing CA installed in %s\n", c->dir);
	return 0;
}

/* Issue for holder: from --csr or --generate; prints the serial. */
static void
issue_for(struct cmd_ctx *c, struct govca *ca, struct holder_data *hd)
{
	struct govca_issued iss;
	char password[GOVCA_P12_PASSWORD_LEN + 1];
	enum govca_key_type kt = 0;
	unsigned days = 0;
	const char *err;
	struct buf p12;
	uint8_t *csr;
	size_t len;
	FILE *out;

	if (c->o.days != NULL)
		days = parse_uint(c->o.days, GOVCA_VALIDITY_MAX_DAYS + 1000,
		    "--days");
	if ((c->o.csr != NULL) == (c->o.generate != 0))
		die(EXIT_USAGE, "give exactly one of --csr FILE and --generate");
	if (c->o.csr != NULL) {
		csr = read_input(c->o.csr, GOVCA_CSR_MAX, &len);
		if (govca_issue_csr(ca, &hd->h, csr, len, days, &iss,
		    &err) == -1)
			die(EXIT_FAIL, "issue: %s", err);
		free(csr);
		if (c->o.out != NULL) {
			out = fopen(c->o.out, "w");
			if (out == NULL)
				die(EXIT_ENV, "cannot write %s", c->o.out);
			print_pem(iss.der, iss.der_len, out);
			fclose(out);
		} else
			print_pem(iss.der, iss.der_len, stdout);
		fprintf(stderr, "serial %s\n", iss.serial);
		if (c->o.out != NULL)
			printf("serial %s\n", iss.serial);
	} else {
		if (c->o.key_type != NULL &&
		    govca_key_type_parse(c->o.key_type, &kt) == -1)
			die(EXIT_USAGE, "--key-type: p256, p384, rsa2048 or "
			    "rsa3072");
		buf_init(&p12, 1024 * 1024);
		if (govca_issue_generate(ca, &hd->h, kt, days, &p12, password,
		    &iss, &err) == -1)
			die(EXIT_FAIL, "issue: %s", err);
		if (c->o.p12 == NULL) {
			c->o.p12 = xasprintf("%s.p12", hd->h.address);
		}
		write_file(c->o.p12, p12.data, p12.len, 0600);
		buf_free(&p12);
		printf("serial %s\n", iss.serial);
		printf("pkcs12 %s\n", c->o.p12);
		/* Shown once: the CA keeps no copy. */
		printf("password %s\n", password);
		sodium_memzero(password, sizeof(password));
	}
	holder_done(hd, iss.serial);
	govca_issued_free(&iss);
}

static int
cmd_issue(struct cmd_ctx *c)
{
	struct holder_data hd;
	enum govca_profile p;
	struct govca *ca;

	if (c->argc != 1 || c->o.profile == NULL)
		die(EXIT_USAGE, "issue --profile PROFILE ADDRESS (--csr FILE | "
		    "--generate)");
	if (govca_profile_parse(c->o.profile, &p) == -1 ||
	    p == GOVCA_PROFILE_SERVER)
		die(EXIT_USAGE, "--profile: official, department, legal-person "
		    "or citizen");
	if (c->o.unverified && p != GOVCA_PROFILE_CITIZEN)
		die(EXIT_USAGE, "--unverified is for the citizen profile");
	if ((c->o.csr != NULL) == (c->o.generate != 0))
		die(EXIT_USAGE, "give exactly one of --csr FILE and --generate");
	holder_load(c, c->argv[0], p, &hd);
	ca = open_ca(c, GOVCA_OPEN_KEYS);
	issue_for(c, ca, &hd);
	close_ca(ca);
	return 0;
}

/* ---- issue-batch: many issuances, one disk flush per CMD_BATCH_MAX ---- */

#define CMD_BATCH_MAX 256		/* issuances per durable commit */
#define CMD_BATCH_LINE_MAX 4096		/* bytes of one input line */
#define CMD_BATCH_FIELDS 5

struct batch_item {
	char *address;
	char *out;
	char serial[GOVCA_SERIAL_HEX_MAX];
	struct buf data;		/* PEM certificate or PKCS#12 */
	char password[GOVCA_P12_PASSWORD_LEN + 1];
};

static void
der_to_pem(const uint8_t *der, size_t len, struct buf *out)
{
	const unsigned char *p = der;
	X509 *cert = d2i_X509(NULL, &p, (long)len);
	BIO *bio = BIO_new(BIO_s_mem());
	char *mem;
	long n;

	if (cert == NULL || bio == NULL || PEM_write_bio_X509(bio, cert) != 1)
		die(EXIT_ENV, "cannot encode a certificate");
	n = BIO_get_mem_data(bio, &mem);
	buf_append(out, mem, (size_t)n);
	BIO_free(bio);
	X509_free(cert);
}

/* Make the batch durable, then hand out what it issued. */
static void
batch_flush(struct govca *ca, struct store *store, struct batch_item *items,
    size_t *n)
{
	const char *err;
	size_t i;

	if (govca_batch_commit(ca, &err) == -1)
		die(EXIT_ENV, "issue-batch: %s (the last %zu issuances are not "
		    "durable; revoke them)", err, *n);
	for (i = 0; i < *n; i++) {
		struct batch_item *it = &items[i];

		write_file(it->out, it->data.data, it->data.len,
		    it->password[0] != '\0' ? 0600 : 0644);
		if (store_account_set_cert(store, it->address, it->serial,
		    &err) != 0)
			fprintf(stderr, "govmail-ca: warning: %s: serial not "
			    "recorded on the account: %s\n", it->address, err);
		printf("%s %s %s%s%s\n", it->address, it->serial, it->out,
		    it->password[0] != '\0' ? " " : "", it->password);
		sodium_memzero(it->password, sizeof(it->password));
		buf_free(&it->data);
		free(it->address);
		free(it->out);
	}
	fflush(stdout);
	*n = 0;
	govca_batch_begin(ca);
}

/* Split line into at most max space-separated fields; returns the count. */
static size_t
split_fields(char *line, char **fields, size_t max)
{
	size_t n = 0;
	char *p = line;

	for (;;) {
		while (*p == ' ' || *p == '\t')
			*p++ = '\0';
		if (*p == '\0')
			return n;
		if (n == max)
			return max + 1;
		fields[n++] = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
	}
}

static int
cmd_issue_batch(struct cmd_ctx *c)
{
	struct batch_item *items;
	struct store *store;
	struct govca *ca;
	const char *err = NULL, *msg;
	char *line = NULL, *f[CMD_BATCH_FIELDS + 1], msgbuf[512];
	size_t cap = 0, n = 0, lineno = 0, nf, failed = 0, done = 0;
	ssize_t len;
	int ret;

	if (c->argc != 0)
		die(EXIT_USAGE, "issue-batch reads PROFILE ADDRESS "
		    "(CSR-FILE|generate) OUT [unverified] lines on stdin");
	if ((ret = store_open(c->cfg, 0, &store, &err)) != 0)
		die(EXIT_ENV, "cannot open the mail store: %s",
		    err != NULL ? err : store_strerror(ret));
	open_store = store;
	ca = open_ca(c, GOVCA_OPEN_KEYS);
	items = xcalloc(CMD_BATCH_MAX, sizeof(*items));
	govca_batch_begin(ca);
	while ((len = getline(&line, &cap, stdin)) != -1) {
		struct holder_data hd;
		struct govca_issued iss;
		enum govca_profile p;
		struct batch_item *it = &items[n];
		int unverified = 0;

		lineno++;
		if (len > CMD_BATCH_LINE_MAX) {
			fprintf(stderr, "govmail-ca: line %zu: longer than %d "
			    "bytes\n", lineno, CMD_BATCH_LINE_MAX);
			failed++;
			continue;
		}
		line[strcspn(line, "\r\n")] = '\0';
		nf = split_fields(line, f, CMD_BATCH_FIELDS);
		if (nf == 0 || f[0][0] == '#')
			continue;
		if (nf == 5 && strcmp(f[4], "unverified") == 0)
			unverified = 1;
		if ((nf != 4 && !unverified) ||
		    govca_profile_parse(f[0], &p) == -1 ||
		    p == GOVCA_PROFILE_SERVER) {
			fprintf(stderr, "govmail-ca: line %zu: want PROFILE "
			    "ADDRESS (CSR-FILE|generate) OUT [unverified]\n",
			    lineno);
			failed++;
			continue;
		}
		if ((ret = holder_fill(c, store, f[1], p, unverified, &hd,
		    msgbuf, sizeof(msgbuf), &msg)) != 0) {
			fprintf(stderr, "govmail-ca: line %zu: %s\n", lineno,
			    msg);
			failed++;
			continue;
		}
		buf_init(&it->data, 1024 * 1024);
		if (strcmp(f[2], "generate") == 0)
			ret = govca_issue_generate(ca, &hd.h, 0, 0, &it->data,
			    it->password, &iss, &err);
		else {
			size_t clen;
			uint8_t *csr;
			FILE *cf = fopen(f[2], "rb");

			ret = -1;
			err = "cannot read the CSR file";
			if (cf != NULL) {
				csr = xmalloc(GOVCA_CSR_MAX + 1);
				clen = fread(csr, 1, GOVCA_CSR_MAX + 1, cf);
				fclose(cf);
				ret = govca_issue_csr(ca, &hd.h, csr, clen, 0,
				    &iss, &err);
				free(csr);
				if (ret == 0)
					der_to_pem(iss.der, iss.der_len,
					    &it->data);
			}
		}
		if (ret != 0) {
			fprintf(stderr, "govmail-ca: line %zu: %s\n", lineno,
			    err);
			buf_free(&it->data);
			store_account_free(hd.acct);
			failed++;
			continue;
		}
		str_copy(it->serial, sizeof(it->serial), iss.serial);
		it->address = xstrdup(hd.h.address);
		it->out = xstrdup(f[3]);
		govca_issued_free(&iss);
		store_account_free(hd.acct);
		done++;
		if (++n == CMD_BATCH_MAX)
			batch_flush(ca, store, items, &n);
	}
	batch_flush(ca, store, items, &n);
	free(items);
	free(line);
	close_ca(ca);
	store_close(store);
	open_store = NULL;
	fprintf(stderr, "govmail-ca: issue-batch: %zu issued, %zu failed\n",
	    done, failed);
	return failed > 0 ? EXIT_FAIL : 0;
}

static int
cmd_issue_server(struct cmd_ctx *c)
{
	struct govca_issued iss;
	struct buf key, chain;
	struct govca *ca;
	const char *err;
	unsigned days = 0;

	if (c->o.key_out == NULL || c->o.out == NULL)
		die(EXIT_USAGE, "issue-server needs --key-out and --cert-out");
	if (c->o.days != NULL)
		days = parse_uint(c->o.days, 100000, "--days");
	ca = open_ca(c, GOVCA_OPEN_KEYS);
	buf_init(&key, 64 * 1024);
	buf_init(&chain, 64 * 1024);
	if (govca_issue_server(ca, c->o.dns, c->o.ndns, c->o.ips, c->o.nips,
	    days, &key, &chain, &iss, &err) == -1)
		die(EXIT_FAIL, "issue-server: %s", err);
	write_file(c->o.key_out, key.data, key.len, 0600);
	write_file(c->o.out, chain.data, chain.len, 0644);
	printf("serial %s\n", iss.serial);
	buf_free(&key);
	buf_free(&chain);
	govca_issued_free(&iss);
	close_ca(ca);
	return 0;
}

/* The account no longer has a current certificate if it was this one. */
static void
account_forget_cert(struct cmd_ctx *c, const char *address,
    const char *serial)
{
	struct store_account *acct;
	struct store *store;
	const char *err = NULL;

	if (address[0] == '\0')
		return;
	if (store_open(c->cfg, 0, &store, &err) != 0) {
		fprintf(stderr, "govmail-ca: warning: mail store not updated: "
		    "%s\n", err != NULL ? err : "cannot open");
		return;
	}
	open_store = store;
	if (store_account_get(store, address, &acct, &err) == 0) {
		if (str_casecmp(acct->cert_serial, serial) == 0 &&
		    store_account_set_cert(store, address, "", &err) != 0)
			fprintf(stderr, "govmail-ca: warning: %s: %s\n",
			    address, err != NULL ? err : "not updated");
		store_account_free(acct);
	}
	store_close(store);
	open_store = NULL;
}

static int
cmd_revoke(struct cmd_ctx *c)
{
	enum govca_reason r = GOVCA_REASON_UNSPECIFIED;
	struct govca_cert cert;
	struct govca *ca;
	const char *err;

	if (c->argc != 1)
		die(EXIT_USAGE, "revoke SERIAL [--reason REASON]");
	if (c->o.reason != NULL && govca_reason_parse(c->o.reason, &r) == -1)
		die(EXIT_USAGE, "--reason: keyCompromise, affiliationChanged, "
		    "superseded, cessationOfOperation, certificateHold, "
		    "privilegeWithdrawn or unspecified");
	ca = open_ca(c, GOVCA_OPEN_KEYS);
	if (govca_revoke(ca, c->argv[0], r, &err) == -1)
		die(EXIT_FAIL, "revoke: %s", err);
	printf("revoked %s (%s); CRL regenerated\n", c->argv[0],
	    govca_reason_name(r));
	if (govca_cert_get(ca, c->argv[0], &cert, &err) == 0) {
		account_forget_cert(c, cert.address, cert.serial);
		govca_cert_free(&cert);
	}
	close_ca(ca);
	return 0;
}

static int
cmd_crl(struct cmd_ctx *c)
{
	struct govca *ca = open_ca(c, GOVCA_OPEN_KEYS);
	const char *err;

	if (govca_crl_generate(ca, &err) == -1)
		die(EXIT_FAIL, "crl: %s", err);
	/* The periodic job: also checkpoint the database, trim its logs. */
	if (govca_maintain(ca, &err) == -1)
		fprintf(stderr, "govmail-ca: warning: %s\n", err);
	printf("CRL written to %s/issuing.crl\n", c->dir);
	close_ca(ca);
	return 0;
}

struct list_ctx {
	time_t before;		/* expiring: not_after < before */
	time_t now;
	size_t n;
};

static int
list_cb(const struct govca_cert *cert, void *arg)
{
	struct list_ctx *l = arg;
	char nb[32], na[32];

	if (l->before != 0 && (cert->status != GOVCA_STATUS_GOOD ||
	    cert->not_after >= l->before || cert->not_after < l->now))
		return 0;
	printf("%s %s %s %s %s %s\n", cert->serial,
	    cert->status == GOVCA_STATUS_REVOKED ? "revoked" :
	    (cert->not_after < l->now ? "expired" : "good"),
	    govca_profile_name(cert->profile),
	    fmt_time(cert->not_before, nb, sizeof(nb)),
	    fmt_time(cert->not_after, na, sizeof(na)),
	    cert->address[0] != '\0' ? cert->address : "-");
	l->n++;
	return 0;
}

static int
cmd_list(struct cmd_ctx *c, const char *address, time_t before)
{
	struct govca *ca = open_ca(c, 0);
	struct list_ctx l = { before, time(NULL), 0 };
	const char *err;

	if (govca_cert_list(ca, address, list_cb, &l, &err) == -1)
		die(EXIT_ENV, "%s", err);
	close_ca(ca);
	if (address != NULL && l.n == 0)
		die(EXIT_FAIL, "no certificate for %s", address);
	return 0;
}

static int
cmd_show(struct cmd_ctx *c)
{
	struct govca_cert cert;
	struct govca *ca;
	const char *err;
	char t[32];
	X509 *x;
	const unsigned char *p;

	if (c->argc != 1)
		die(EXIT_USAGE, "show SERIAL");
	ca = open_ca(c, 0);
	if (govca_cert_get(ca, c->argv[0], &cert, &err) == -1)
		die(EXIT_FAIL, "%s", err);
	printf("serial: %s\n", cert.serial);
	printf("address: %s\n", cert.address[0] ? cert.address : "-");
	printf("profile: %s\n", govca_profile_name(cert.profile));
	printf("status: %s\n", cert.status == GOVCA_STATUS_REVOKED ?
	    "revoked" : "good");
	if (cert.status == GOVCA_STATUS_REVOKED) {
		printf("revoked: %s\n", fmt_time(cert.revoked_at, t,
		    sizeof(t)));
		printf("reason: %s\n", govca_reason_name(cert.reason));
	}
	printf("not-before: %s\n", fmt_time(cert.not_before, t, sizeof(t)));
	printf("not-after: %s\n", fmt_time(cert.not_after, t, sizeof(t)));
	p = cert.der;
	if ((x = d2i_X509(NULL, &p, (long)cert.der_len)) != NULL) {
		char *subj = X509_NAME_oneline(X509_get_subject_name(x),
		    NULL, 0);

		printf("subject: %s\n", subj != NULL ? subj : "?");
		OPENSSL_free(subj);
		X509_free(x);
	}
	if (c->o.pem)
		print_pem(cert.der, cert.der_len, stdout);
	govca_cert_free(&cert);
	close_ca(ca);
	return 0;
}

static int
cmd_renew(struct cmd_ctx *c)
{
	struct govca_cert old;
	struct holder_data hd;
	struct govca *ca;
	const char *err;
	int unverified = 0;

	if (c->argc != 1)
		die(EXIT_USAGE, "renew SERIAL (--csr FILE | --generate)");
	if ((c->o.csr != NULL) == (c->o.generate != 0))
		die(EXIT_USAGE, "give exactly one of --csr FILE and --generate");
	ca = open_ca(c, 0);
	if (govca_cert_get(ca, c->argv[0], &old, &err) == -1)
		die(EXIT_FAIL, "%s", err);
	close_ca(ca);
	if (old.profile == GOVCA_PROFILE_SERVER)
		die(EXIT_FAIL, "renew a server certificate with issue-server");
	/* A mailbox-validated citizen stays mailbox-validated. */
	{
		const unsigned char *p = old.der;
		X509 *x = d2i_X509(NULL, &p, (long)old.der_len);

		if (x != NULL) {
			int i = X509_NAME_get_index_by_NID(
			    X509_get_subject_name(x), NID_serialNumber, -1);

			unverified = old.profile == GOVCA_PROFILE_CITIZEN &&
			    i < 0;
			X509_free(x);
		}
	}
	if (unverified)
		c->o.unverified = 1;
	holder_load(c, old.address, old.profile, &hd);
	ca = open_ca(c, GOVCA_OPEN_KEYS);
	printf("renewing %s for %s\n", old.serial, old.address);
	issue_for(c, ca, &hd);
	close_ca(ca);
	govca_cert_free(&old);
	return 0;
}

static void
audit_report(uint64_t pos, const char *problem, void *ctx)
{
	printf("record %llu: %s\n", (unsigned long long)pos, problem);
}

static int
cmd_audit(struct cmd_ctx *c)
{
	uint64_t n;
	const char *err;
	char *path;

	if (c->argc != 1 || strcmp(c->argv[0], "verify") != 0)
		die(EXIT_USAGE, "audit verify");
	path = xasprintf("%s/audit.log", c->dir);
	if (govca_audit_verify(path, audit_report, NULL, &n, &err) == -1) {
		printf("audit log %s: DAMAGED (%s)\n", path, err);
		free(path);
		return EXIT_AUDIT;
	}
	printf("audit log %s: %llu records, chain intact\n", path,
	    (unsigned long long)n);
	free(path);
	return 0;
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static int
cmd_serve(struct cmd_ctx *c)
{
	struct sigaction sa;
	const char *listen, *err;
	unsigned threads;
	struct govca *ca;
	unsigned flags = GOVCA_OPEN_OCSP_KEY;
	enum log_level level;

	/* A long-running process: its events at the configured level. */
	if (log_level_parse(config_str(c->cfg, "store", "log_level"),
	    &level) == 0)
		log_init("govmail-ca", LOG_TO_STDERR, level);

	listen = c->o.listen != NULL ? c->o.listen :
	    config_str(c->cfg, "ca", "listen");
	threads = c->o.threads != NULL ? parse_uint(c->o.threads, 256,
	    "--threads") : (unsigned)config_uint(c->cfg, "ca", "threads");
	/* With the keys, serve also refreshes the CRL before nextUpdate. */
	flags |= GOVCA_OPEN_KEYS;
	ca = open_ca(c, flags);
	passphrase_wipe(c);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (govca_audit(ca, "serve", "event=start", &err) == -1 ||
	    govca_serve(ca, listen, threads, &stop_flag, &err) == -1)
		die(EXIT_ENV, "serve: %s", err);
	close_ca(ca);
	return 0;
}

/* ---- main -------------------------------------------------------------- */

enum {
	OPT_PASS = 256, OPT_PROFILE, OPT_CSR, OPT_OUT, OPT_P12, OPT_KEYTYPE,
	OPT_ISSUING_KEY, OPT_REASON, OPT_EMAIL, OPT_LISTEN, OPT_CERT, OPT_ROOT,
	OPT_KEY_OUT, OPT_GIVEN, OPT_SURNAME, OPT_TITLE, OPT_RESIDENT, OPT_DAYS,
	OPT_THREADS, OPT_DNS, OPT_IP, OPT_GENERATE, OPT_UNVERIFIED, OPT_LEGACY,
	OPT_PEM,
};

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "dir", required_argument, NULL, 'd' },
	{ "passphrase-file", required_argument, NULL, OPT_PASS },
	{ "profile", required_argument, NULL, OPT_PROFILE },
	{ "csr", required_argument, NULL, OPT_CSR },
	{ "out", required_argument, NULL, OPT_OUT },
	{ "cert-out", required_argument, NULL, OPT_OUT },
	{ "p12", required_argument, NULL, OPT_P12 },
	{ "key-type", required_argument, NULL, OPT_KEYTYPE },
	{ "issuing-key", required_argument, NULL, OPT_ISSUING_KEY },
	{ "reason", required_argument, NULL, OPT_REASON },
	{ "email", required_argument, NULL, OPT_EMAIL },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "root", required_argument, NULL, OPT_ROOT },
	{ "key-out", required_argument, NULL, OPT_KEY_OUT },
	{ "given-name", required_argument, NULL, OPT_GIVEN },
	{ "surname", required_argument, NULL, OPT_SURNAME },
	{ "title", required_argument, NULL, OPT_TITLE },
	{ "resident-id", required_argument, NULL, OPT_RESIDENT },
	{ "days", required_argument, NULL, OPT_DAYS },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "dns", required_argument, NULL, OPT_DNS },
	{ "ip", required_argument, NULL, OPT_IP },
	{ "generate", no_argument, NULL, OPT_GENERATE },
	{ "unverified", no_argument, NULL, OPT_UNVERIFIED },
	{ "legacy-code", no_argument, NULL, OPT_LEGACY },
	{ "pem", no_argument, NULL, OPT_PEM },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void
parse_opts(struct opts *o, int argc, char **argv)
{
	int ch;

	/* '+': options end at the command; then again after it. */
	while ((ch = getopt_long(argc, argv, "+c:d:h", long_opts, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'd': o->dir = optarg; break;
		case OPT_PASS: o->passphrase_file = optarg; break;
		case OPT_PROFILE: o->profile = optarg; break;
		case OPT_CSR: o->csr = optarg; break;
		case OPT_OUT: o->out = optarg; break;
		case OPT_P12: o->p12 = optarg; break;
		case OPT_KEYTYPE: o->key_type = optarg; break;
		case OPT_ISSUING_KEY: o->issuing_key = optarg; break;
		case OPT_REASON: o->reason = optarg; break;
		case OPT_EMAIL: o->email = optarg; break;
		case OPT_LISTEN: o->listen = optarg; break;
		case OPT_CERT: o->cert = optarg; break;
		case OPT_ROOT: o->root = optarg; break;
		case OPT_KEY_OUT: o->key_out = optarg; break;
		case OPT_GIVEN: o->given_name = optarg; break;
		case OPT_SURNAME: o->surname = optarg; break;
		case OPT_TITLE: o->title = optarg; break;
		case OPT_RESIDENT: o->resident_id = optarg; break;
		case OPT_DAYS: o->days = optarg; break;
		case OPT_THREADS: o->threads = optarg; break;
		case OPT_DNS:
			if (o->ndns + o->nips >= CMD_NAMES_MAX)
				die(EXIT_USAGE, "at most %d names",
				    CMD_NAMES_MAX);
			o->dns[o->ndns++] = optarg;
			break;
		case OPT_IP:
			if (o->ndns + o->nips >= CMD_NAMES_MAX)
				die(EXIT_USAGE, "at most %d names",
				    CMD_NAMES_MAX);
			o->ips[o->nips++] = optarg;
			break;
		case OPT_GENERATE: o->generate = 1; break;
		case OPT_UNVERIFIED: o->unverified = 1; break;
		case OPT_LEGACY: o->legacy_code = 1; break;
		case OPT_PEM: o->pem = 1; break;
		default:
			usage();
		}
	}
}

int
main(int argc, char **argv)
{
	struct cmd_ctx c;
	const char *cmd, *err, *cfgpath, *dir;
	char **args;
	int nargs = 0, rc;

	memset(&c, 0, sizeof(c));
	log_init("govmail-ca", LOG_TO_STDERR, LOG_LEVEL_WARN);
	if (sodium_init() < 0)
		die(EXIT_ENV, "libsodium failed to initialise");
	umask(077);
	atexit(close_at_exit);
	parse_opts(&c.o, argc, argv);
	if (optind >= argc)
		usage();
	cmd = argv[optind++];
	/* Options may also follow the command; positional ones are kept. */
	args = xcalloc((size_t)argc + 1, sizeof(*args));
	while (optind < argc) {
		parse_opts(&c.o, argc, argv);
		if (optind < argc)
			args[nargs++] = argv[optind++];
	}
	c.argc = nargs;
	c.argv = args;

	cfgpath = config_path(c.o.config);
	if (config_load(cfgpath, &c.cfg, &err) != 0) {
		/* No file at the default place: defaults (with -d). */
		if (c.o.config == NULL && getenv("GOVMAIL_CONF") == NULL &&
		    access(cfgpath, F_OK) != 0)
			c.cfg = config_defaults();
		else
			die(EXIT_ENV, "%s", err);
	}
	dir = c.o.dir != NULL ? c.o.dir : config_path_get(c.cfg, "ca", "dir");
	if (dir[0] == '\0')
		die(EXIT_USAGE, "no CA folder: give -d DIR or [ca] dir");
	if (str_copy(c.dir, sizeof(c.dir), dir) == -1)
		die(EXIT_USAGE, "CA folder path too long");
	c.settings.base_url = config_str(c.cfg, "ca", "base_url");
	c.settings.validity_days = (unsigned)config_uint(c.cfg, "ca",
	    "validity_days");
	c.settings.crl_days = (unsigned)config_uint(c.cfg, "ca", "crl_days");
	c.settings.name = config_str(c.cfg, "ca", "name");
	if (govca_key_type_parse(config_str(c.cfg, "ca", "key_type"),
	    &c.settings.key_type) == -1)
		die(EXIT_ENV, "[ca] key_type: p256, p384, rsa2048 or rsa3072");

	if (strcmp(cmd, "init") == 0)
		rc = cmd_init(&c);
	else if (strcmp(cmd, "init-root") == 0)
		rc = cmd_init_root(&c);
	else if (strcmp(cmd, "init-issuing") == 0)
		rc = cmd_init_issuing(&c);
	else if (strcmp(cmd, "sign-issuing") == 0)
		rc = cmd_sign_issuing(&c);
	else if (strcmp(cmd, "import-issuing") == 0)
		rc = cmd_import_issuing(&c);
	else if (strcmp(cmd, "issue") == 0)
		rc = cmd_issue(&c);
	else if (strcmp(cmd, "issue-batch") == 0)
		rc = cmd_issue_batch(&c);
	else if (strcmp(cmd, "issue-server") == 0)
		rc = cmd_issue_server(&c);
	else if (strcmp(cmd, "revoke") == 0)
		rc = cmd_revoke(&c);
	else if (strcmp(cmd, "crl") == 0)
		rc = cmd_crl(&c);
	else if (strcmp(cmd, "list") == 0)
		rc = cmd_list(&c, NULL, 0);
	else if (strcmp(cmd, "find") == 0) {
		if (c.o.email == NULL)
			die(EXIT_USAGE, "find --email ADDRESS");
		rc = cmd_list(&c, c.o.email, 0);
	} else if (strcmp(cmd, "expiring") == 0) {
		if (c.o.days == NULL)
			die(EXIT_USAGE, "expiring --days N");
		rc = cmd_list(&c, NULL, time(NULL) + 86400 *
		    (time_t)parse_uint(c.o.days, 100000, "--days"));
	} else if (strcmp(cmd, "show") == 0)
		rc = cmd_show(&c);
	else if (strcmp(cmd, "renew") == 0)
		rc = cmd_renew(&c);
	else if (strcmp(cmd, "serve") == 0)
		rc = cmd_serve(&c);
	else if (strcmp(cmd, "audit") == 0)
		rc = cmd_audit(&c);
	else
		usage();
	passphrase_wipe(&c);
	config_free(c.cfg);
	free(args);
	return rc;
}
