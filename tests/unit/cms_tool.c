/*
 * cms_tool.c - a small driver for libgovca's S/MIME layer, used by the
 * end-to-end tests (tests/e2e/test_cms*.py).  Not installed.
 *
 *   cms_tool sign (--p12 F --pass P | --cert F --key F [--chain F])
 *            [--qp] [--entity] [--from A --to A [--subject S]] FILE
 *       FILE is UTF-8 text (or, with --entity, a ready MIME entity);
 *       prints the multipart/signed entity, or with --from/--to the whole
 *       message.
 *   cms_tool verify --root F... [--crl F] [--revoked-serial HEX]
 *            [--ca-dir DIR] [--at EPOCH] [--signing-time] FILE
 *       --ca-dir looks the signer up in govmail-ca's database (the
 *       revocation callback the daemons use: unknown serial = unavailable)
 *       prints status=, reason=, class=, from=, from_match=, emails=,
 *       auth= (the Authentication-Results method text);
 *       exits 0 pass, 1 fail, 2 neutral, 3 malformed.
 *   cms_tool encrypt --cert F [--cert F...] FILE
 *   cms_tool decrypt (--p12 F --pass P | --cert F --key F) [--entity] FILE
 *
 * FILE "-" is standard input.  Trusts its arguments (a test tool).
 */
#include "autoconf.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "buf.h"
#include "govca.h"

#define TOOL_MAX_CERTS	64

struct tool_opts {
	const char *p12, *pass, *cert, *key, *chain, *crl, *revoked_serial;
	const char *ca_dir;
	const char *from, *to, *subject;
	const char *certs[TOOL_MAX_CERTS];
	size_t ncerts;
	long long at;
	int qp, entity, signing_time;
};

static void
usage(void)
{
	fprintf(stderr, "usage: cms_tool sign|verify|encrypt|decrypt "
	    "[options] FILE\n");
	exit(64);
}

static void
die(const char *what, const char *why)
{
	fprintf(stderr, "cms_tool: %s: %s\n", what, why);
	exit(3);
}

static void
read_input(const char *path, struct buf *b)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	uint8_t tmp[8192];
	size_t n;

	if (f == NULL)
		die(path, "cannot open");
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
		if (buf_append(b, tmp, n) < 0)
			die(path, "too large");
	}
	if (f != stdin)
		fclose(f);
	buf_reserve(b, 0);
}

static void
write_out(const struct buf *b)
{
	if (b->len > 0 && fwrite(b->data, 1, b->len, stdout) != b->len)
		die("stdout", "write failed");
	fflush(stdout);
}

static X509 *
load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	if (f == NULL)
		die(path, "cannot open");
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL)
		die(path, "no PEM certificate");
	return x;
}

static struct govca_cms_identity *
load_identity(const struct tool_opts *o)
{
	struct govca_cms_identity *id;
	const char *err;
	int r;

	if (o->p12 != NULL)
		r = govca_cms_identity_load_p12(o->p12, o->pass, &id, &err);
	else if (o->cert != NULL && o->key != NULL)
		r = govca_cms_identity_load_pem(o->cert, o->key, o->pass,
		    o->chain, &id, &err);
	else
		die("identity", "need --p12 or --cert and --key");
	if (r < 0)
		die("identity", err);
	return id;
}

static int
cmd_sign(const struct tool_opts *o, const char *file)
{
	struct govca_cms_identity *id = load_identity(o);
	struct buf in, entity, signed_, msg;
	struct smime_headers h;
	const char *err;

	buf_init(&in, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&entity, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&signed_, BUF_UNBOUNDED);
	buf_init(&msg, BUF_UNBOUNDED);
	read_input(file, &in);
	if (o->entity) {
		buf_append(&entity, in.data, in.len);
	} else if (smime_entity_text(NULL, o->qp ? SMIME_CTE_QUOTED_PRINTABLE :
	    SMIME_CTE_BASE64, in.data, in.len, &entity, &err) < 0) {
		die("entity", err);
	}
	if (govca_cms_sign(id, entity.data, entity.len, &signed_, &err) < 0)
		die("sign", err);
	if (o->from != NULL) {
		memset(&h, 0, sizeof(h));
		h.from = o->from;
		h.to = o->to != NULL ? o->to : o->from;
		h.subject = o->subject;
		if (smime_message_build(&h, signed_.data, signed_.len, &msg,
		    &err) < 0)
			die("message", err);
		write_out(&msg);
	} else {
		write_out(&signed_);
	}
	buf_free(&in);
	buf_free(&entity);
	buf_free(&signed_);
	buf_free(&msg);
	govca_cms_identity_free(id);
	return 0;
}

static int
revoked_by_serial(X509 *cert, void *ctx, const char **reason_r)
{
	const char *hex = ctx;
	BIGNUM *bn = NULL, *want = NULL;
	int r;

	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	if (bn == NULL || BN_hex2bn(&want, hex) == 0) {
		BN_free(bn);
		return -1;
	}
	r = BN_cmp(bn, want) == 0;
	BN_free(bn);
	BN_free(want);
	if (r)
		*reason_r = "keyCompromise";
	return r;
}

/* The signer's serial as govca prints it: lower-case hex of its bytes. */
static int
serial_hex(X509 *cert, char *out, size_t outsz)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	unsigned char b[64];
	int n, i;

	if (bn == NULL)
		return -1;
	n = BN_num_bytes(bn);
	if (n <= 0 || n > (int)sizeof(b) || (size_t)(2 * n + 1) > outsz) {
		BN_free(bn);
		return -1;
	}
	BN_bn2bin(bn, b);
	BN_free(bn);
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	return 0;
}

static int
revoked_by_ca(X509 *cert, void *ctx, const char **reason_r)
{
	struct govca *ca = ctx;
	struct govca_cert c;
	char hex[GOVCA_SERIAL_HEX_MAX + 2];
	const char *err;
	int r;

	memset(&c, 0, sizeof(c));
	if (serial_hex(cert, hex, sizeof(hex)) < 0 ||
	    govca_cert_get(ca, hex, &c, &err) < 0)
		return -1;	/* not ours: no answer */
	r = c.status == GOVCA_STATUS_REVOKED;
	if (r)
		*reason_r = govca_reason_name(c.reason);
	govca_cert_free(&c);
	return r;
}

static int
cmd_verify(const struct tool_opts *o, const char *file)
{
	struct govca_cms_verify_opts vo;
	struct govca_cms_result res;
	STACK_OF(X509_CRL) *crls = NULL;
	X509_STORE *store = X509_STORE_new();
	struct buf in;
	struct govca *ca = NULL;
	const char *err = NULL;
	size_t i;
	int r, rc;

	if (o->ncerts == 0)
		die("verify", "need --root");
	for (i = 0; i < o->ncerts; i++) {
		X509 *x = load_cert(o->certs[i]);

		X509_STORE_add_cert(store, x);
		X509_free(x);
	}
	memset(&vo, 0, sizeof(vo));
	vo.store = store;
	if (o->crl != NULL) {
		FILE *f = fopen(o->crl, "r");
		X509_CRL *c;

		if (f == NULL)
			die(o->crl, "cannot open");
		c = PEM_read_X509_CRL(f, NULL, NULL, NULL);
		fclose(f);
		if (c == NULL)
			die(o->crl, "no PEM CRL");
		crls = sk_X509_CRL_new_null();
		sk_X509_CRL_push(crls, c);
		vo.crls = crls;
	}
	if (o->revoked_serial != NULL) {
		vo.revoked = revoked_by_serial;
		vo.revoked_ctx = (void *)(uintptr_t)o->revoked_serial;
	}
	if (o->ca_dir != NULL) {
		struct govca_settings gs;

		memset(&gs, 0, sizeof(gs));
		gs.base_url = "http://127.0.0.1";
		gs.validity_days = GOVCA_VALIDITY_DEFAULT_DAYS;
		gs.crl_days = GOVCA_CRL_DAYS_MAX;
		gs.name = "govmail";
		if (govca_open(o->ca_dir, &gs, NULL, 0, &ca, &err) < 0)
			die(o->ca_dir, err);
		vo.revoked = revoked_by_ca;
		vo.revoked_ctx = ca;
	}
	vo.at = (time_t)o->at;
	if (o->signing_time)
		vo.flags |= GOVCA_CMS_VERIFY_SIGNING_TIME;
	buf_init(&in, GOVCA_CMS_MAX_MESSAGE);
	read_input(file, &in);
	govca_cms_result_init(&res);
	r = govca_cms_verify(in.data, in.len, &vo, &res, &err);
	printf("status=%s\nreason=%s\nclass=%s\nfrom=%s\nfrom_match=%d\n"
	    "opaque=%d\nsigning_time=%lld\nemails=", govca_cms_status_name(
	    res.status), res.reason, govca_cms_class_name(res.cert_class),
	    res.from, res.from_matches, res.opaque,
	    (long long)res.signing_time);
	for (i = 0; i < res.n_emails; i++)
		printf("%s%s", i ? "," : "", res.emails[i]);
	printf("\n");
	{
		struct buf ar;

		buf_init(&ar, BUF_UNBOUNDED);
		if (govca_cms_auth_result(&res, &ar) == 0)
			printf("auth=%s\n", buf_str(&ar));
		buf_free(&ar);
	}
	if (r < 0)
		printf("error=%s\n", err);
	rc = r < 0 ? 3 : res.status == GOVCA_CMS_PASS ? 0 :
	    res.status == GOVCA_CMS_FAIL ? 1 : 2;
	govca_cms_result_free(&res);
	buf_free(&in);
	sk_X509_CRL_pop_free(crls, X509_CRL_free);
	X509_STORE_free(store);
	if (ca != NULL)
		govca_close(ca);
	return rc;
}

static int
cmd_encrypt(const struct tool_opts *o, const char *file)
{
	X509 *certs[TOOL_MAX_CERTS];
	struct buf in, out;
	const char *err;
	size_t i;

	if (o->ncerts == 0)
		die("encrypt", "need --cert");
	for (i = 0; i < o->ncerts; i++)
		certs[i] = load_cert(o->certs[i]);
	buf_init(&in, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&out, BUF_UNBOUNDED);
	read_input(file, &in);
	if (govca_cms_encrypt(certs, o->ncerts, in.data, in.len, &out,
	    &err) < 0)
		die("encrypt", err);
	write_out(&out);
	for (i = 0; i < o->ncerts; i++)
		X509_free(certs[i]);
	buf_free(&in);
	buf_free(&out);
	return 0;
}

static int
cmd_decrypt(const struct tool_opts *o, const char *file)
{
	struct govca_cms_identity *id = load_identity(o);
	struct buf in, out;
	const char *err;

	buf_init(&in, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&out, BUF_UNBOUNDED);
	read_input(file, &in);
	if (govca_cms_decrypt(id, in.data, in.len,
	    o->entity ? GOVCA_CMS_DECRYPT_ENTITY : 0, &out, &err) < 0)
		die("decrypt", err);
	write_out(&out);
	buf_free(&in);
	buf_free(&out);
	govca_cms_identity_free(id);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "p12", required_argument, NULL, 'p' },
		{ "pass", required_argument, NULL, 'P' },
		{ "cert", required_argument, NULL, 'c' },
		{ "root", required_argument, NULL, 'r' },
		{ "key", required_argument, NULL, 'k' },
		{ "chain", required_argument, NULL, 'C' },
		{ "crl", required_argument, NULL, 'l' },
		{ "revoked-serial", required_argument, NULL, 'R' },
		{ "ca-dir", required_argument, NULL, 'D' },
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "subject", required_argument, NULL, 's' },
		{ "at", required_argument, NULL, 'a' },
		{ "qp", no_argument, NULL, 'q' },
		{ "entity", no_argument, NULL, 'e' },
		{ "signing-time", no_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	struct tool_opts o;
	const char *cmd;
	char *end;
	int ch;

	if (argc < 2)
		usage();
	cmd = argv[1];
	memset(&o, 0, sizeof(o));
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p': o.p12 = optarg; break;
		case 'P': o.pass = optarg; break;
		case 'c':
		case 'r':
			if (o.ncerts == TOOL_MAX_CERTS)
				usage();
			o.certs[o.ncerts++] = optarg;
			if (ch == 'c')
				o.cert = optarg;
			break;
		case 'k': o.key = optarg; break;
		case 'C': o.chain = optarg; break;
		case 'l': o.crl = optarg; break;
		case 'R': o.revoked_serial = optarg; break;
		case 'D': o.ca_dir = optarg; break;
		case 'f': o.from = optarg; break;
		case 't': o.to = optarg; break;
		case 's': o.subject = optarg; break;
		case 'a':
			o.at = strtoll(optarg, &end, 10);
			if (*end != '\0')
				usage();
			break;
		case 'q': o.qp = 1; break;
		case 'e': o.entity = 1; break;
		case 'S': o.signing_time = 1; break;
		default: usage();
		}
	}
	if (optind != argc - 1)
		usage();
	if (strcmp(cmd, "sign") == 0)
		return cmd_sign(&o, argv[optind]);
	if (strcmp(cmd, "verify") == 0)
		return cmd_verify(&o, argv[optind]);
	if (strcmp(cmd, "encrypt") == 0)
		return cmd_encrypt(&o, argv[optind]);
	if (strcmp(cmd, "decrypt") == 0)
		return cmd_decrypt(&o, argv[optind]);
	usage();
	return 64;
}
