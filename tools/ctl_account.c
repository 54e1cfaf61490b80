/*
 * ctl_account.c - govmailctl's domain, user, alias and list commands.
 *
 * Run by the operator.  Input: the command line (trusted to be the
 * operator's intent, checked for form: addresses, USCC, resident ID
 * numbers, sizes) and passwords from a file, a pipe or the terminal.
 * Every change is one store call, so one transaction: a command either
 * happens completely or not at all (that is why alias and list commands
 * take one target or selector at a time).
 */
#include "autoconf.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "csv.h"
#include "ctl.h"
#include "ident.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

/* Largest quota accepted on the command line (bytes and messages). */
#define CTL_QUOTA_MAX ((uint64_t)1 << 62)

static const struct option ctl_help_only[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/*
 * Parse only -h for a command taking nargs positional arguments (at least
 * min, at most max).  Returns -1 to go on (*first_r set), or the exit
 * status to return.
 */
static int
ctl_args(struct ctl *ctl, int argc, char **argv, int min, int max,
    int *first_r)
{
	int c, n;

	while ((c = ctl_getopt(ctl, argc, argv, ":h", ctl_help_only)) != -1) {
		if (c == 'h')
			return ctl_help(ctl);
		return CTL_EX_USAGE;
	}
	n = argc - optind;
	if (n < min)
		return ctl_usage(ctl, "missing argument");
	if (n > max)
		return ctl_usage(ctl, "too many arguments");
	*first_r = optind;
	return -1;
}

/* A domain name from the command line: non-empty, bounded, no controls. */
static int
ctl_check_domain(struct ctl *ctl, const char *domain)
{
	size_t i, len = strlen(domain);

	if (len == 0)
		return ctl_fail(ctl, CTL_EX_DATAERR, "empty domain");
	if (len > STORE_DOMAIN_MAX)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "domain longer than %d bytes", STORE_DOMAIN_MAX);
	for (i = 0; i < len; i++) {
		if ((unsigned char)domain[i] <= 0x20 ||
		    (unsigned char)domain[i] == 0x7f || domain[i] == '@')
			return ctl_fail(ctl, CTL_EX_DATAERR,
			    "not a domain name: %s", domain);
	}
	return CTL_EX_OK;
}

/* ---- domain --------------------------------------------------------- */

/*
 * The commands that take one name and make one store call (domain add and
 * del, user del, list del): check the name, open the store, call, and map
 * the store's error to a one-line message and exit code.
 */
static int
ctl_one_name(struct ctl *ctl, int argc, char **argv,
    int (*check)(struct ctl *, const char *), enum ctl_store_mode mode,
    int (*op)(struct store *, const char *, const char **))
{
	const char *error = NULL;
	int rc, first;

	if ((rc = ctl_args(ctl, argc, argv, 1, 1, &first)) >= 0)
		return rc;
	if ((rc = check(ctl, argv[first])) != 0 ||
	    (rc = ctl_store(ctl, mode)) != 0)
		return rc;
	rc = op(ctl->store, argv[first], &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[first], error);
	return CTL_EX_OK;
}

static int
ctl_domain_add(struct ctl *ctl, int argc, char **argv)
{
	return ctl_one_name(ctl, argc, argv, ctl_check_domain,
	    CTL_STORE_CREATE, store_domain_add);
}

static int
ctl_domain_del(struct ctl *ctl, int argc, char **argv)
{
	return ctl_one_name(ctl, argc, argv, ctl_check_domain,
	    CTL_STORE_EXISTING, store_domain_del);
}

static int
ctl_print_line_cb(const char *text, void *ctx)
{
	(void)ctx;
	ctl_print_escaped(stdout, text);
	putchar('\n');
	return 0;
}

static int
ctl_domain_list(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL;
	int rc, first;

	if ((rc = ctl_args(ctl, argc, argv, 0, 0, &first)) >= 0)
		return rc;
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_domain_list(ctl->store, ctl_print_line_cb, NULL, &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, NULL, error);
	return CTL_EX_OK;
}

/* ---- user ----------------------------------------------------------- */

enum {
	CTL_OPT_CLASS = 256,
	CTL_OPT_NAME,
	CTL_OPT_ORG,
	CTL_OPT_ORG_ID,
	CTL_OPT_TITLE,
	CTL_OPT_RESIDENT_ID,
	CTL_OPT_VERIFIED,
	CTL_OPT_LEGACY_CODE,
	CTL_OPT_QUOTA_BYTES,
	CTL_OPT_QUOTA_MESSAGES,
	CTL_OPT_PASSWORD_FILE,
	CTL_OPT_ISSUE_CERT,
	CTL_OPT_P12,
	CTL_OPT_CHARSET,
};

/* A text attribute: bounded, no control bytes. */
static int
ctl_check_text(struct ctl *ctl, const char *opt, const char *text)
{
	size_t i, len = strlen(text);

	if (len > STORE_TEXT_MAX)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "%s longer than %d bytes", opt, STORE_TEXT_MAX);
	for (i = 0; i < len; i++) {
		if ((unsigned char)text[i] < 0x20 ||
		    (unsigned char)text[i] == 0x7f)
			return ctl_fail(ctl, CTL_EX_DATAERR,
			    "%s contains a control character", opt);
	}
	return CTL_EX_OK;
}

/* Upper-case an identifier in place (the ident checks want upper case). */
static void
ctl_upper(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'a' && *s <= 'z')
			*s = (char)(*s - 'a' + 'A');
	}
}

/*
 * The legal person's USCC: wrong length or alphabet is always refused; a
 * wrong check character only without --legacy-code (with it, the store
 * accepts the code and logs a warning on stderr).
 */
static int
ctl_check_uscc(struct ctl *ctl, const char *code, int legacy)
{
	char head[IDENT_USCC_LEN];
	char check;

	if (strlen(code) != IDENT_USCC_LEN)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "invalid Unified Social Credit Code: not %d characters",
		    IDENT_USCC_LEN);
	memcpy(head, code, IDENT_USCC_LEN - 1);
	head[IDENT_USCC_LEN - 1] = '\0';
	check = ident_uscc_check_char(head);
	if (check == '\0' || strchr("0123456789ABCDEFGHJKLMNPQRTUWXY",
	    code[IDENT_USCC_LEN - 1]) == NULL)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "invalid Unified Social Credit Code: character outside "
		    "the GB 32100 set");
	if (ident_uscc_valid(code))
		return CTL_EX_OK;
	if (!legacy)
		return ctl_fail(ctl, CTL_EX_DATAERR,
		    "invalid Unified Social Credit Code: wrong check character "
		    "(--legacy-code accepts it)");
	/* Accepted: the store logs the warning (one line, not two). */
	return CTL_EX_OK;
}

static int
ctl_parse_quota(struct ctl *ctl, const char *opt, const char *arg, int size,
    uint64_t *val_r)
{
	const char *why = NULL;
	int rc;

	if (size)
		rc = strnum_size(arg, CTL_QUOTA_MAX, val_r, &why);
	else
		rc = strnum_u64(arg, 1, CTL_QUOTA_MAX, val_r, &why);
	if (rc != 0 || *val_r == 0)
		return ctl_usage(ctl, "%s: %s", opt,
		    why != NULL ? why : "must be at least 1");
	return CTL_EX_OK;
}

/*
 * What user add and user import check of one account before the store
 * does: attributes that do not belong to its class, its address and
 * texts, the USCC and the resident ID number (both upper-cased in place).
 * Names the options (cli) or the import's columns.  Returns 0, or the
 * exit status after one line: CTL_EX_USAGE for an option that does not
 * fit the class on the command line, else CTL_EX_DATAERR.
 */
static int
ctl_account_check(struct ctl *ctl, const struct store_account_spec *spec,
    char *org_id, char *resident_id, int cli)
{
	const char *misfit = NULL;
	int rc;

	if (resident_id != NULL && spec->class != STORE_CLASS_CITIZEN)
		misfit = cli ? "--resident-id is for the citizen class" :
		    "resident_id is for the citizen class";
	else if (spec->identity_verified &&
	    spec->class != STORE_CLASS_CITIZEN)
		misfit = cli ? "--verified is for the citizen class" :
		    "verified is for the citizen class";
	else if (spec->legacy_code && spec->class != STORE_CLASS_LEGAL_PERSON)
		misfit = cli ? "--legacy-code is for the legal-person class" :
		    "legacy_code is for the legal-person class";
	else if (spec->title != NULL && spec->class != STORE_CLASS_OFFICIAL)
		misfit = cli ? "--title is for the official class" :
		    "title is for the official class";
	else if (org_id != NULL && spec->class == STORE_CLASS_CITIZEN)
		misfit = cli ? "--org-id is not for the citizen class" :
		    "org_id is not for the citizen class";
	else if (spec->class == STORE_CLASS_LEGAL_PERSON && org_id == NULL)
		misfit = cli ? "a legal person needs --org-id USCC" :
		    "a legal person needs an org_id (USCC)";
	if (misfit != NULL)
		return cli ? ctl_usage(ctl, "%s", misfit) :
		    ctl_fail(ctl, CTL_EX_DATAERR, "%s", misfit);

	if ((rc = ctl_check_address(ctl, spec->address)) != 0)
		return rc;
	if ((spec->display_name != NULL && (rc = ctl_check_text(ctl,
	    cli ? "--name" : "name", spec->display_name)) != 0) ||
	    (spec->organisation != NULL && (rc = ctl_check_text(ctl,
	    cli ? "--org" : "org", spec->organisation)) != 0) ||
	    (spec->title != NULL && (rc = ctl_check_text(ctl,
	    cli ? "--title" : "title", spec->title)) != 0) ||
	    (org_id != NULL && (rc = ctl_check_text(ctl,
	    cli ? "--org-id" : "org_id", org_id)) != 0))
		return rc;
	if (spec->class == STORE_CLASS_LEGAL_PERSON) {
		ctl_upper(org_id);
		if ((rc = ctl_check_uscc(ctl, org_id, spec->legacy_code)) != 0)
			return rc;
	}
	if (resident_id != NULL) {
		ctl_upper(resident_id);
		if (!ident_resident_id_valid(resident_id))
			return ctl_fail(ctl, CTL_EX_DATAERR,
			    "invalid resident ID number (18 characters, ISO "
			    "7064 MOD 11-2 check digit)");
	}
	return CTL_EX_OK;
}

static int
ctl_user_add(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "class", required_argument, NULL, CTL_OPT_CLASS },
		{ "name", required_argument, NULL, CTL_OPT_NAME },
		{ "org", required_argument, NULL, CTL_OPT_ORG },
		{ "org-id", required_argument, NULL, CTL_OPT_ORG_ID },
		{ "title", required_argument, NULL, CTL_OPT_TITLE },
		{ "resident-id", required_argument, NULL, CTL_OPT_RESIDENT_ID },
		{ "verified", no_argument, NULL, CTL_OPT_VERIFIED },
		{ "legacy-code", no_argument, NULL, CTL_OPT_LEGACY_CODE },
		{ "quota-bytes", required_argument, NULL, CTL_OPT_QUOTA_BYTES },
		{ "quota-messages", required_argument, NULL,
		  CTL_OPT_QUOTA_MESSAGES },
		{ "password-file", required_argument, NULL,
		  CTL_OPT_PASSWORD_FILE },
		{ "issue-cert", no_argument, NULL, CTL_OPT_ISSUE_CERT },
		{ "p12", required_argument, NULL, CTL_OPT_P12 },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_account_spec spec;
	struct ctl_cert *cert = NULL;
	const char *class_arg = NULL, *pwfile = NULL, *error = NULL;
	const char *p12_arg = NULL;
	char *org_id = NULL, *resident_id = NULL, *p12 = NULL;
	struct buf pw;
	int c, rc = CTL_EX_OK, issue_cert = 0;

	memset(&spec, 0, sizeof(spec));
	buf_init(&pw, 0);
	while ((c = ctl_getopt(ctl, argc, argv, ":h", longopts)) != -1) {
		switch (c) {
		case 'h':
			rc = ctl_help(ctl);
			goto out;
		case CTL_OPT_CLASS:
			class_arg = optarg;
			break;
		case CTL_OPT_NAME:
			spec.display_name = optarg;
			break;
		case CTL_OPT_ORG:
			spec.organisation = optarg;
			break;
		case CTL_OPT_ORG_ID:
			free(org_id);
			org_id = xstrdup(optarg);
			break;
		case CTL_OPT_TITLE:
			spec.title = optarg;
			break;
		case CTL_OPT_RESIDENT_ID:
			free(resident_id);
			resident_id = xstrdup(optarg);
			break;
		case CTL_OPT_VERIFIED:
			spec.identity_verified = 1;
			break;
		case CTL_OPT_LEGACY_CODE:
			spec.legacy_code = 1;
			break;
		case CTL_OPT_QUOTA_BYTES:
			if ((rc = ctl_parse_quota(ctl, "--quota-bytes", optarg,
			    1, &spec.quota_bytes)) != 0)
				goto out;
			break;
		case CTL_OPT_QUOTA_MESSAGES:
			if ((rc = ctl_parse_quota(ctl, "--quota-messages",
			    optarg, 0, &spec.quota_messages)) != 0)
				goto out;
			break;
		case CTL_OPT_PASSWORD_FILE:
			pwfile = optarg;
			break;
		case CTL_OPT_ISSUE_CERT:
			issue_cert = 1;
			break;
		case CTL_OPT_P12:
			p12_arg = optarg;
			break;
		default:
			rc = CTL_EX_USAGE;
			goto out;
		}
	}
	if (p12_arg != NULL && !issue_cert) {
		rc = ctl_usage(ctl, "--p12 goes with --issue-cert");
		goto out;
	}
	if (argc - optind != 1) {
		rc = ctl_usage(ctl, argc - optind < 1 ? "missing ADDRESS" :
		    "too many arguments");
		goto out;
	}
	spec.address = argv[optind];
	if (class_arg == NULL) {
		rc = ctl_usage(ctl, "missing --class");
		goto out;
	}
	if (store_class_parse(class_arg, &spec.class) != 0) {
		rc = ctl_usage(ctl, "unknown class '%s' (official, department, "
		    "legal-person, citizen)", class_arg);
		goto out;
	}

	if ((rc = ctl_account_check(ctl, &spec, org_id, resident_id, 1)) != 0)
		goto out;
	spec.org_id = org_id;
	spec.resident_id = resident_id;

	if ((rc = ctl_read_password(ctl, pwfile, 1, &pw)) != 0)
		goto out;
	spec.password = buf_str(&pw);
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		goto out;
	if (issue_cert) {
		/* What can fail without a trace fails before the account. */
		p12 = p12_arg != NULL ? xstrdup(p12_arg) :
		    xasprintf("%s.p12", spec.address);
		if ((rc = ctl_cert_begin(ctl, p12, &cert)) != 0)
			goto out;
	}
	c = store_account_add(ctl->store, &spec, &error);
	if (c != 0) {
		rc = ctl_store_fail(ctl, c, spec.address, error);
		goto out;
	}
	if (cert != NULL && (rc = ctl_cert_issue(ctl, cert, &spec)) != 0) {
		/* No account without the certificate it was asked with. */
		c = store_account_del(ctl->store, spec.address, &error);
		if (c != 0)
			ctl_store_fail(ctl, c, "and removing the account "
			    "failed too", error);
	}
out:
	ctl_cert_end(cert);
	free(p12);
	buf_free(&pw);
	if (resident_id != NULL) {
		/* SECURITY: the ID number is personal data; wipe our copy. */
		sodium_memzero(resident_id, strlen(resident_id));
		free(resident_id);
	}
	free(org_id);
	return rc;
}

/* ---- user import ---------------------------------------------------- */

/* An import's columns; address and class are required. */
enum ctl_import_col {
	IMP_ADDRESS, IMP_CLASS, IMP_NAME, IMP_ORG, IMP_ORG_ID, IMP_TITLE,
	IMP_RESIDENT_ID, IMP_VERIFIED, IMP_LEGACY_CODE, IMP_QUOTA_BYTES,
	IMP_QUOTA_MESSAGES, IMP_PASSWORD_HASH, IMP_NCOLS
};

static const char *const ctl_import_names[IMP_NCOLS] = {
	"address", "class", "name", "org", "org_id", "title", "resident_id",
	"verified", "legacy_code", "quota_bytes", "quota_messages",
	"password_hash",
};

/* Accounts made between two durable flushes of an import. */
#define CTL_IMPORT_SYNC_EVERY 1000

struct ctl_import {
	int col[IMP_NCOLS];		/* column index, -1 when absent */
	uint64_t added, present, refused;
};

/*
 * One record: checked as user add checks its options, then added.
 * Returns 0 (added, present or refused: counted, a refusal printed), or
 * an exit status that ends the import (the store failed).
 */
static int
ctl_import_row(struct ctl *ctl, struct ctl_import *imp, char **f)
{
	struct store_account_spec spec;
	struct store_account *acct = NULL;
	const char *error = NULL, *why = NULL, *v;
	char *org_id = NULL, *resident_id = NULL;
	int rc = CTL_EX_OK, r, i;

	memset(&spec, 0, sizeof(spec));
#define IMP(c) (imp->col[c] == -1 || f[imp->col[c]][0] == '\0' ? NULL : \
	f[imp->col[c]])
	spec.address = f[imp->col[IMP_ADDRESS]];
	if (store_class_parse(f[imp->col[IMP_CLASS]], &spec.class) != 0) {
		rc = ctl_fail(ctl, CTL_EX_DATAERR, "unknown class '%s' "
		    "(official, department, legal-person, citizen)",
		    f[imp->col[IMP_CLASS]]);
		goto refused;
	}
	spec.display_name = IMP(IMP_NAME);
	spec.organisation = IMP(IMP_ORG);
	spec.title = IMP(IMP_TITLE);
	spec.password_hash = IMP(IMP_PASSWORD_HASH);
	if ((v = IMP(IMP_ORG_ID)) != NULL)
		org_id = xstrdup(v);
	if ((v = IMP(IMP_RESIDENT_ID)) != NULL)
		resident_id = xstrdup(v);
	for (i = IMP_VERIFIED; i <= IMP_LEGACY_CODE; i++) {
		if (imp->col[i] == -1)
			continue;
		/* Empty is no; else as a boolean of the configuration. */
		r = 0;
		if (f[imp->col[i]][0] != '\0' &&
		    strnum_bool(f[imp->col[i]], &r, &why) != 0) {
			rc = ctl_fail(ctl, CTL_EX_DATAERR, "%s: %s",
			    ctl_import_names[i], why);
			goto refused;
		}
		*(i == IMP_VERIFIED ? &spec.identity_verified :
		    &spec.legacy_code) = r;
	}
	if (((v = IMP(IMP_QUOTA_BYTES)) != NULL && (strnum_size(v,
	    CTL_QUOTA_MAX, &spec.quota_bytes, &why) != 0 ||
	    spec.quota_bytes == 0)) || ((v = IMP(IMP_QUOTA_MESSAGES)) !=
	    NULL && strnum_u64(v, 1, CTL_QUOTA_MAX, &spec.quota_messages,
	    &why) != 0)) {
		rc = ctl_fail(ctl, CTL_EX_DATAERR, "%s: %s",
		    v == IMP(IMP_QUOTA_BYTES) ? "quota_bytes" :
		    "quota_messages", why != NULL ? why : "must be at least 1");
		goto refused;
	}
#undef IMP
	if ((rc = ctl_account_check(ctl, &spec, org_id, resident_id, 0)) != 0)
		goto refused;
	spec.org_id = org_id;
	spec.resident_id = resident_id;
	r = store_account_add(ctl->store, &spec, &error);
	if (r == STORE_EEXISTS && store_account_get(ctl->store,
	    spec.address, &acct, NULL) == 0) {
		/* Imported before (a rerun): left as it is. */
		store_account_free(acct);
		imp->present++;
		goto out;
	}
	if (r == STORE_EINVAL || r == STORE_ENOTFOUND || r == STORE_EEXISTS) {
		/*
		 * This record's data: no such domain, a bad attribute, an
		 * alias's or a list's address, another's resident ID.
		 */
		rc = ctl_store_fail(ctl, r, spec.address, error);
		goto refused;
	}
	if (r != 0) {
		rc = ctl_store_fail(ctl, r, spec.address, error);
		goto out;
	}
	imp->added++;
	goto out;
refused:
	imp->refused++;
	rc = CTL_EX_OK;
out:
	free(org_id);
	if (resident_id != NULL) {
		/* SECURITY: personal data; wipe our copy. */
		sodium_memzero(resident_id, strlen(resident_id));
		free(resident_id);
	}
	return rc;
}

/*
 * Make what the import added so far durable; and checkpoint as the
 * daemons do ([store] checkpoint_interval), so that a long import does not
 * pile up log files until the next daemon's checkpoint.
 */
static int
ctl_import_sync(struct ctl *ctl)
{
	const char *error = NULL;
	int r;

	if ((r = store_sync(ctl->store, &error)) != 0)
		return ctl_store_fail(ctl, r, "making the accounts durable",
		    error);
	if ((r = store_maintain(ctl->store, &error)) != 0)
		return ctl_store_fail(ctl, r, "checkpoint", error);
	return CTL_EX_OK;
}

static int
ctl_user_import(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "charset", required_argument, NULL, CTL_OPT_CHARSET },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_import imp;
	struct csv_reader csv;
	struct buf raw, text;
	const char *charset = NULL, *error = NULL, *cmd = ctl->cmd;
	char where[64];
	uint64_t since_sync = 0;
	int c, rc, got, i, open_ok = 0;

	buf_init(&raw, 0);
	buf_init(&text, CSV_MAX_BYTES);
	memset(&imp, 0, sizeof(imp));
	while ((c = ctl_getopt(ctl, argc, argv, ":h", longopts)) != -1) {
		if (c == 'h') {
			rc = ctl_help(ctl);
			goto done;
		}
		if (c != CTL_OPT_CHARSET) {
			rc = CTL_EX_USAGE;
			goto done;
		}
		charset = optarg;
	}
	if (argc - optind != 1) {
		rc = ctl_usage(ctl, argc - optind < 1 ? "missing FILE" :
		    "too many arguments");
		goto done;
	}
	if ((rc = ctl_read_file(ctl, argv[optind], CSV_MAX_BYTES, &raw)) != 0)
		goto done;
	if (csv_charset_to_utf8(raw.data, raw.len, charset, &text, NULL,
	    &error) == -1) {
		rc = ctl_fail(ctl, CTL_EX_DATAERR, "%s: %s", argv[optind],
		    error);
		goto done;
	}
	buf_free(&raw);
	if (csv_open(&csv, text.data, text.len, &error) == -1) {
		rc = ctl_fail(ctl, CTL_EX_DATAERR, "%s: %s", argv[optind],
		    error);
		goto done;
	}
	open_ok = 1;
	/* Every column known (a misspelt one would be ignored silently). */
	for (i = 0; i < IMP_NCOLS; i++)
		imp.col[i] = csv_reader_column(&csv, ctl_import_names[i]);
	for (i = 0; i < (int)csv.n_cols; i++) {
		for (c = 0; c < IMP_NCOLS; c++)
			if (strcmp(csv.names[i], ctl_import_names[c]) == 0)
				break;
		if (c == IMP_NCOLS) {
			rc = ctl_fail(ctl, CTL_EX_DATAERR, "%s: unknown column "
			    "'%s'", argv[optind], csv.names[i]);
			goto done;
		}
	}
	if (imp.col[IMP_ADDRESS] == -1 || imp.col[IMP_CLASS] == -1) {
		rc = ctl_fail(ctl, CTL_EX_DATAERR, "%s: the columns address "
		    "and class are required", argv[optind]);
		goto done;
	}
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		goto done;
	/* Durable in batches, not per account: a rerun skips what is in. */
	store_set_deferred_sync(ctl->store, 1);
	while ((got = csv_next(&csv, &error)) != 0) {
		(void)snprintf(where, sizeof(where), "%s: line %llu", cmd,
		    (unsigned long long)csv.record_line);
		ctl->cmd = where;
		if (got == -1) {
			imp.refused++;
			rc = ctl_fail(ctl, CTL_EX_DATAERR, "%s", error);
			break;
		}
		if ((rc = ctl_import_row(ctl, &imp, csv.fields)) != 0)
			break;
		ctl->cmd = cmd;
		if (++since_sync == CTL_IMPORT_SYNC_EVERY) {
			since_sync = 0;
			if ((rc = ctl_import_sync(ctl)) != 0)
				break;
		}
	}
	ctl->cmd = cmd;
	c = ctl_import_sync(ctl);
	store_set_deferred_sync(ctl->store, 0);
	if (rc == 0)
		rc = c;
	printf("added %llu, already present %llu, refused %llu\n",
	    (unsigned long long)imp.added, (unsigned long long)imp.present,
	    (unsigned long long)imp.refused);
	c = ctl_flush(ctl);
	if (rc == 0)
		rc = c != 0 ? c : imp.refused > 0 ? CTL_EX_DATAERR : CTL_EX_OK;
done:
	ctl->cmd = cmd;
	if (open_ok)
		csv_close(&csv);
	buf_free(&raw);
	buf_free(&text);
	return rc;
}

/* user hash: an Argon2id string for an import's password_hash column. */
static int
ctl_user_hash(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "password-file", required_argument, NULL,
		  CTL_OPT_PASSWORD_FILE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char hash[crypto_pwhash_STRBYTES];
	const char *pwfile = NULL;
	struct buf pw;
	int c, rc;

	buf_init(&pw, 0);
	while ((c = ctl_getopt(ctl, argc, argv, ":h", longopts)) != -1) {
		if (c == 'h')
			return ctl_help(ctl);
		if (c != CTL_OPT_PASSWORD_FILE)
			return CTL_EX_USAGE;
		pwfile = optarg;
	}
	if (argc - optind != 0)
		return ctl_usage(ctl, "too many arguments");
	if ((rc = ctl_config(ctl)) != 0 ||
	    (rc = ctl_read_password(ctl, pwfile, 1, &pw)) != 0)
		goto out;
	if (crypto_pwhash_str(hash, buf_str(&pw), pw.len,
	    config_uint(ctl->cfg, "store", "password_opslimit"),
	    (size_t)config_size(ctl->cfg, "store", "password_memlimit")) !=
	    0) {
		rc = ctl_fail(ctl, CTL_EX_TEMPFAIL, "hashing failed (memory)");
		goto out;
	}
	printf("%s\n", hash);
	rc = ctl_flush(ctl);
out:
	buf_free(&pw);
	return rc;
}

static int
ctl_user_del(struct ctl *ctl, int argc, char **argv)
{
	return ctl_one_name(ctl, argc, argv, ctl_check_address,
	    CTL_STORE_EXISTING, store_account_del);
}

/* user passwd and user verify: ADDRESS [--password-file FILE]. */
static int
ctl_user_password(struct ctl *ctl, int argc, char **argv, int verify)
{
	static const struct option longopts[] = {
		{ "password-file", required_argument, NULL,
		  CTL_OPT_PASSWORD_FILE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pwfile = NULL, *error = NULL, *address;
	struct store_account *acct = NULL;
	struct buf pw;
	int c, rc;

	while ((c = ctl_getopt(ctl, argc, argv, ":h", longopts)) != -1) {
		if (c == 'h')
			return ctl_help(ctl);
		if (c != CTL_OPT_PASSWORD_FILE)
			return CTL_EX_USAGE;
		pwfile = optarg;
	}
	if (argc - optind != 1)
		return ctl_usage(ctl, argc - optind < 1 ? "missing ADDRESS" :
		    "too many arguments");
	address = argv[optind];
	if ((rc = ctl_check_address(ctl, address)) != 0)
		return rc;
	/* Say "no such account" before asking for a password. */
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	c = store_account_get(ctl->store, address, &acct, &error);
	if (c != 0)
		return ctl_store_fail(ctl, c, address, error);
	store_account_free(acct);

	if ((rc = ctl_read_password(ctl, pwfile, !verify, &pw)) != 0) {
		buf_free(&pw);
		return rc;
	}
	if (verify) {
		c = store_password_verify(ctl->store, address, buf_str(&pw));
		if (c == 1)
			printf("%s: password right\n", address);
		else if (c == 0)
			rc = ctl_fail(ctl, CTL_EX_NOPERM, "%s: wrong password",
			    address);
		else
			rc = ctl_store_fail(ctl, c, address, NULL);
	} else {
		c = store_account_set_password(ctl->store, address,
		    buf_str(&pw), &error);
		if (c != 0)
			rc = ctl_store_fail(ctl, c, address, error);
	}
	buf_free(&pw);
	return rc;
}

static int
ctl_user_passwd(struct ctl *ctl, int argc, char **argv)
{
	return ctl_user_password(ctl, argc, argv, 0);
}

static int
ctl_user_verify(struct ctl *ctl, int argc, char **argv)
{
	return ctl_user_password(ctl, argc, argv, 1);
}

static int
ctl_user_quota(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "quota-bytes", required_argument, NULL, CTL_OPT_QUOTA_BYTES },
		{ "quota-messages", required_argument, NULL,
		  CTL_OPT_QUOTA_MESSAGES },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *error = NULL;
	uint64_t qbytes = 0, qmsgs = 0;
	int c, rc;

	while ((c = ctl_getopt(ctl, argc, argv, ":h", longopts)) != -1) {
		switch (c) {
		case 'h':
			return ctl_help(ctl);
		case CTL_OPT_QUOTA_BYTES:
			if ((rc = ctl_parse_quota(ctl, "--quota-bytes", optarg,
			    1, &qbytes)) != 0)
				return rc;
			break;
		case CTL_OPT_QUOTA_MESSAGES:
			if ((rc = ctl_parse_quota(ctl, "--quota-messages",
			    optarg, 0, &qmsgs)) != 0)
				return rc;
			break;
		default:
			return CTL_EX_USAGE;
		}
	}
	if (argc - optind != 1)
		return ctl_usage(ctl, argc - optind < 1 ? "missing ADDRESS" :
		    "too many arguments");
	/* Both at once: one store call, nothing to race with. */
	if (qbytes == 0 || qmsgs == 0)
		return ctl_usage(ctl, "give both --quota-bytes and "
		    "--quota-messages");
	if ((rc = ctl_check_address(ctl, argv[optind])) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	c = store_account_set_quota(ctl->store, argv[optind], qbytes, qmsgs,
	    &error);
	if (c != 0)
		return ctl_store_fail(ctl, c, argv[optind], error);
	return CTL_EX_OK;
}

static int
ctl_user_set_disabled(struct ctl *ctl, int argc, char **argv, int disabled)
{
	const char *error = NULL;
	int rc, first;

	if ((rc = ctl_args(ctl, argc, argv, 1, 1, &first)) >= 0)
		return rc;
	if ((rc = ctl_check_address(ctl, argv[first])) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_account_set_disabled(ctl->store, argv[first], disabled,
	    &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[first], error);
	return CTL_EX_OK;
}

static int
ctl_user_disable(struct ctl *ctl, int argc, char **argv)
{
	return ctl_user_set_disabled(ctl, argc, argv, 1);
}

static int
ctl_user_enable(struct ctl *ctl, int argc, char **argv)
{
	return ctl_user_set_disabled(ctl, argc, argv, 0);
}

static int
ctl_user_list_cb(const struct store_account *acct, void *ctx)
{
	(void)ctx;
	ctl_print_escaped(stdout, acct->address);
	printf("\t%s\t", store_class_name(acct->class));
	ctl_print_escaped(stdout, acct->display_name);
	putchar('\n');
	return 0;
}

static int
ctl_user_list(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL, *domain = NULL;
	int rc, first;

	if ((rc = ctl_args(ctl, argc, argv, 0, 1, &first)) >= 0)
		return rc;
	if (first < argc) {
		domain = argv[first];
		if ((rc = ctl_check_domain(ctl, domain)) != 0)
			return rc;
	}
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	if (domain != NULL && store_domain_exists(ctl->store, domain) == 0)
		return ctl_fail(ctl, CTL_EX_NOUSER, "%s: no such domain",
		    domain);
	rc = store_account_list(ctl->store, domain, ctl_user_list_cb, NULL,
	    &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, domain, error);
	return CTL_EX_OK;
}

static void
ctl_show_text(const char *key, const char *value)
{
	printf("%s: ", key);
	ctl_print_escaped(stdout, value != NULL ? value : "");
	putchar('\n');
}

static int
ctl_user_show(struct ctl *ctl, int argc, char **argv)
{
	struct store_account *acct = NULL;
	const char *error = NULL;
	char when[64];
	struct tm tm;
	int rc, first;

	if ((rc = ctl_args(ctl, argc, argv, 1, 1, &first)) >= 0)
		return rc;
	if ((rc = ctl_check_address(ctl, argv[first])) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_account_get(ctl->store, argv[first], &acct, &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[first], error);
	ctl_show_text("address", acct->address);
	printf("id: %u\n", acct->id);
	printf("class: %s\n", store_class_name(acct->class));
	ctl_show_text("name", acct->display_name);
	ctl_show_text("organisation", acct->organisation);
	ctl_show_text("org-id", acct->org_id);
	ctl_show_text("title", acct->title);
	printf("resident-id: %s\n", acct->has_resident_id ?
	    "recorded (keyed hash only)" : "none");
	printf("identity-verified: %s\n", acct->identity_verified ? "yes" :
	    "no");
	printf("quota-bytes: %llu\n", (unsigned long long)acct->quota_bytes);
	printf("quota-messages: %llu\n",
	    (unsigned long long)acct->quota_messages);
	printf("used-bytes: %llu\n", (unsigned long long)acct->used_bytes);
	printf("used-messages: %llu\n",
	    (unsigned long long)acct->used_messages);
	ctl_show_text("certificate", acct->cert_serial != NULL &&
	    *acct->cert_serial != '\0' ? acct->cert_serial : "none");
	if (gmtime_r(&acct->created, &tm) != NULL &&
	    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0)
		printf("created: %s\n", when);
	printf("disabled: %s\n", acct->disabled ? "yes" : "no");
	store_account_free(acct);
	return CTL_EX_OK;
}

/* ---- alias ---------------------------------------------------------- */

static int
ctl_alias_add(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL;
	int rc, first;

	if ((rc = ctl_args(ctl, argc, argv, 2, 2, &first)) >= 0)
		return rc;
	if ((rc = ctl_check_address(ctl, argv[first])) != 0 ||
	    (rc = ctl_check_address(ctl, argv[first + 1])) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_alias_add(ctl->store, argv[first], argv[first + 1], &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[first], error);
	return CTL_EX_OK;
}

static int
ctl_alias_del(struct ctl *ctl, int argc, char **argv)
{
	const char *error = NULL, *target = NULL;
	int rc, first;

	if ((rc = ctl_args(ctl, argc, argv, 1, 2, &first)) >= 0)
		return rc;
	if (first + 1 < argc)
		target = argv[first + 1];
	if ((rc = ctl_check_address(ctl, argv[first])) != 0 ||
	    (target != NULL && (rc = ctl_check_address(ctl, target)) != 0) ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = store_alias_del(ctl->store, argv[first], target, &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[first], error);
	return CTL_EX_OK;
}

/* Print a resolved recipient set: local accounts, then remote addresses. */
static void
ctl_print_rcpt_set(const struct store_rcpt_set *set)
{
	size_t i;

	for (i = 0; i < set->nlocal; i++) {
		ctl_print_escaped(stdout, set->local[i]);
		putchar('\n');
	}
	for (i = 0; i < set->nremote; i++) {
		ctl_print_escaped(stdout, set->remote[i]);
		fputs("\t(remote)\n", stdout);
	}
}

static int
ctl_alias_members(struct ctl *ctl, int argc, char **argv)
{
	struct store_rcpt_set set;
	const char *error = NULL;
	int rc, first;

	if ((rc = ctl_args(ctl, argc, argv, 1, 1, &first)) >= 0)
		return rc;
	if ((rc = ctl_check_address(ctl, argv[first])) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	memset(&set, 0, sizeof(set));
	rc = store_resolve(ctl->store, argv[first], NULL, &set, &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[first], error);
	if (set.kind != STORE_ADDR_ALIAS) {
		store_rcpt_set_free(&set);
		return ctl_fail(ctl, CTL_EX_NOUSER, "%s: not an alias",
		    argv[first]);
	}
	ctl_print_rcpt_set(&set);
	store_rcpt_set_free(&set);
	return CTL_EX_OK;
}

/* ---- list ----------------------------------------------------------- */

static int
ctl_list_add(struct ctl *ctl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "notice", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *error = NULL;
	unsigned flags = 0;
	int c, rc;

	while ((c = ctl_getopt(ctl, argc, argv, ":h", longopts)) != -1) {
		if (c == 'h')
			return ctl_help(ctl);
		if (c != 'n')
			return CTL_EX_USAGE;
		flags |= STORE_LIST_NOTICE;
	}
	if (argc - optind != 1)
		return ctl_usage(ctl, argc - optind < 1 ? "missing LIST" :
		    "too many arguments");
	if ((rc = ctl_check_address(ctl, argv[optind])) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	c = store_list_add(ctl->store, argv[optind], flags, &error);
	if (c != 0)
		return ctl_store_fail(ctl, c, argv[optind], error);
	return CTL_EX_OK;
}

static int
ctl_list_del(struct ctl *ctl, int argc, char **argv)
{
	return ctl_one_name(ctl, argc, argv, ctl_check_address,
	    CTL_STORE_EXISTING, store_list_del);
}

/* list members LIST [--expand] and list posters LIST. */
static int
ctl_list_show(struct ctl *ctl, int argc, char **argv, int kind)
{
	static const struct option longopts[] = {
		{ "expand", no_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_rcpt_set set;
	const char *error = NULL, *list;
	int c, rc, expand = 0;

	while ((c = ctl_getopt(ctl, argc, argv, ":h",
	    kind == 0 ? longopts : longopts + 1)) != -1) {
		if (c == 'h')
			return ctl_help(ctl);
		if (c != 'x')
			return CTL_EX_USAGE;
		expand = 1;
	}
	if (argc - optind != 1)
		return ctl_usage(ctl, argc - optind < 1 ? "missing LIST" :
		    "too many arguments");
	list = argv[optind];
	if ((rc = ctl_check_address(ctl, list)) != 0 ||
	    (rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	if (!expand) {
		c = store_list_entries(ctl->store, list, kind,
		    ctl_print_line_cb, NULL, &error);
		if (c != 0)
			return ctl_store_fail(ctl, c, list, error);
		return CTL_EX_OK;
	}
	memset(&set, 0, sizeof(set));
	c = store_resolve(ctl->store, list, NULL, &set, &error);
	if (c != 0)
		return ctl_store_fail(ctl, c, list, error);
	if (set.kind != STORE_ADDR_LIST) {
		store_rcpt_set_free(&set);
		return ctl_fail(ctl, CTL_EX_NOUSER, "%s: not a list", list);
	}
	ctl_print_rcpt_set(&set);
	store_rcpt_set_free(&set);
	return CTL_EX_OK;
}

static int
ctl_list_members(struct ctl *ctl, int argc, char **argv)
{
	return ctl_list_show(ctl, argc, argv, 0);
}

static int
ctl_list_posters(struct ctl *ctl, int argc, char **argv)
{
	return ctl_list_show(ctl, argc, argv, 1);
}

/* list member|poster add|del LIST ENTRY. */
static int
ctl_list_entry(struct ctl *ctl, int argc, char **argv,
    int (*fn)(struct store *, const char *, const char *, const char **),
    int entry_is_address)
{
	const char *error = NULL;
	int rc, first;

	if ((rc = ctl_args(ctl, argc, argv, 2, 2, &first)) >= 0)
		return rc;
	if ((rc = ctl_check_address(ctl, argv[first])) != 0)
		return rc;
	if (entry_is_address &&
	    (rc = ctl_check_address(ctl, argv[first + 1])) != 0)
		return rc;
	if (!entry_is_address && (argv[first + 1][0] == '\0' ||
	    strlen(argv[first + 1]) > STORE_ADDRESS_MAX + sizeof("class:")))
		return ctl_fail(ctl, CTL_EX_DATAERR, "bad selector length");
	if ((rc = ctl_store(ctl, CTL_STORE_EXISTING)) != 0)
		return rc;
	rc = fn(ctl->store, argv[first], argv[first + 1], &error);
	if (rc != 0)
		return ctl_store_fail(ctl, rc, argv[first], error);
	return CTL_EX_OK;
}

static int
ctl_list_member_add(struct ctl *ctl, int argc, char **argv)
{
	return ctl_list_entry(ctl, argc, argv, store_list_member_add, 0);
}

static int
ctl_list_member_del(struct ctl *ctl, int argc, char **argv)
{
	return ctl_list_entry(ctl, argc, argv, store_list_member_del, 0);
}

static int
ctl_list_poster_add(struct ctl *ctl, int argc, char **argv)
{
	return ctl_list_entry(ctl, argc, argv, store_list_poster_add, 1);
}

static int
ctl_list_poster_del(struct ctl *ctl, int argc, char **argv)
{
	return ctl_list_entry(ctl, argc, argv, store_list_poster_del, 1);
}

const struct ctl_cmd ctl_account_cmds[] = {
	{ "domain add", ctl_domain_add, "domain add DOMAIN",
	  "Make DOMAIN a local domain." },
	{ "domain del", ctl_domain_del, "domain del DOMAIN",
	  "Remove a local domain that has no accounts, aliases or lists." },
	{ "domain list", ctl_domain_list, "domain list",
	  "Print the local domains, one a line." },
	{ "user add", ctl_user_add,
	  "user add ADDRESS --class official|department|legal-person|citizen "
	  "[--name TEXT] [--org TEXT] [--org-id ID] [--title TEXT] "
	  "[--resident-id ID] [--verified] [--legacy-code] "
	  "[--quota-bytes SIZE] [--quota-messages N] [--password-file FILE] "
	  "[--issue-cert [--p12 FILE]]",
	  "Create an account with its standard mailboxes; the password comes "
	  "from FILE, from stdin, or is asked twice on the terminal; "
	  "--issue-cert also issues its certificate into a PKCS#12." },
	{ "user import", ctl_user_import,
	  "user import FILE [--charset utf-8|gb18030|auto]",
	  "Create the accounts of a CSV file (columns as in govmailctl(8)); "
	  "existing ones are left as they are, so a rerun finishes an "
	  "interrupted import." },
	{ "user hash", ctl_user_hash, "user hash [--password-file FILE]",
	  "Print the Argon2id hash of a password, for an import's "
	  "password_hash column." },
	{ "user del", ctl_user_del, "user del ADDRESS",
	  "Delete an account with all its mailboxes and messages." },
	{ "user passwd", ctl_user_passwd,
	  "user passwd ADDRESS [--password-file FILE]",
	  "Set an account's password (from FILE, stdin or the terminal)." },
	{ "user verify", ctl_user_verify,
	  "user verify ADDRESS [--password-file FILE]",
	  "Check a password; exit 0 if right, 77 if wrong." },
	{ "user quota", ctl_user_quota,
	  "user quota ADDRESS --quota-bytes SIZE --quota-messages N",
	  "Set an account's quota (both limits at once)." },
	{ "user disable", ctl_user_disable, "user disable ADDRESS",
	  "Suspend the account: its logins and deliveries are refused." },
	{ "user enable", ctl_user_enable, "user enable ADDRESS",
	  "Lift a suspension." },
	{ "user list", ctl_user_list, "user list [DOMAIN]",
	  "Print accounts: address, class, name (tab-separated)." },
	{ "user show", ctl_user_show, "user show ADDRESS",
	  "Print an account's attributes, usage and quota." },
	{ "alias add", ctl_alias_add, "alias add ALIAS TARGET",
	  "Add one target (local or remote address) to an alias." },
	{ "alias del", ctl_alias_del, "alias del ALIAS [TARGET]",
	  "Remove one target, or the whole alias." },
	{ "alias members", ctl_alias_members, "alias members ALIAS",
	  "Print the addresses an alias delivers to (expanded)." },
	{ "list add", ctl_list_add, "list add LIST [--notice]",
	  "Create a list; --notice requires a valid official signature." },
	{ "list del", ctl_list_del, "list del LIST", "Delete a list." },
	{ "list members", ctl_list_members, "list members LIST [--expand]",
	  "Print a list's member selectors, or with --expand the accounts." },
	{ "list posters", ctl_list_posters, "list posters LIST",
	  "Print the addresses allowed to post to a list." },
	{ "list member add", ctl_list_member_add,
	  "list member add LIST SELECTOR",
	  "Add ADDRESS, class:CLASS, domain:DOMAIN or class:CLASS@DOMAIN." },
	{ "list member del", ctl_list_member_del,
	  "list member del LIST SELECTOR", "Remove a member selector." },
	{ "list poster add", ctl_list_poster_add,
	  "list poster add LIST ADDRESS", "Allow ADDRESS to post to LIST." },
	{ "list poster del", ctl_list_poster_del,
	  "list poster del LIST ADDRESS", "Remove a poster." },
	{ NULL, NULL, NULL, NULL },
};
