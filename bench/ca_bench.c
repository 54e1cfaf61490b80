/*
 * ca_bench.c - benchmarks of libgovca (issue 3, "Benchmarks"), driving the
 * same calls govmail-ca makes.  Not a test: it prints figures that
 * bench/run-ca.sh records; bench/RESULTS.md keeps the ones we stand by.
 *
 * Run by hand or by run-ca.sh, as the CA user, on a scratch CA made by
 * `govmail-ca init`.  Trusts its command line and the configuration file
 * (the same govmail.conf govmail-ca reads: [store], [ca] dir, base_url,
 * passphrase_file); the CA's own files are read through libgovca.
 *
 *   ca_bench -c CONF issue MODE N PROCS ADDRESS...
 *       PROCS processes, each with its own CA and store handle, together
 *       issue N citizen certificates for the ADDRESSes (round robin; each
 *       issuance reads the account from the store, as govmail-ca does).
 *       MODE: csr (govca_issue_csr, each durable on its own), csr-batch
 *       (the same between govca_batch_begin/commit, 256 per commit, as
 *       `govmail-ca issue-batch`), generate and generate-batch
 *       (govca_issue_generate: P-256 key + AES-256 PKCS#12).  The CSRs
 *       (P-256, one per issuance) are made before the clock starts.
 *   ca_bench -c CONF csrs DIR N
 *       writes N P-256 CSRs as DIR/csr-<i>.pem (for the openssl reference
 *       loop and `govmail-ca issue-batch`).
 *   ca_bench -c CONF revoke-fill N
 *       adds N revocation records (random 16-byte serials, the reasons in
 *       turn) to the table the CRL is built from, 1,000 per transaction,
 *       without building a CRL (govca_revoke rebuilds it every time).
 *   ca_bench -c CONF crl RUNS
 *       times govca_crl_generate RUNS times; prints the entry count.
 *   ca_bench -c CONF revoke N ADDRESS
 *       issues N certificates, then times govca_revoke of each (a durable
 *       revocation plus the CRL rebuilt with every entry).
 */
#include "autoconf.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "buf.h"
#include "ca_priv.h"
#include "config.h"
#include "govca.h"
#include "kv.h"
#include "log.h"
#include "mailbox.h"
#include "strnum.h"
#include "xmalloc.h"

#define BENCH_BATCH 256			/* issuances per batch commit */
#define BENCH_REVOKE_TXN 1000		/* revocation records per txn */
#define BENCH_PROCS_MAX 64
#define BENCH_COUNT_MAX 10000000
#define BENCH_PASS_MAX GOVCA_PASSPHRASE_MAX

static struct config *cfg;
static struct govca_settings settings;
static const char *ca_dir;
static char passphrase[BENCH_PASS_MAX + 2];

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t
num(const char *s, uint64_t min, uint64_t max)
{
	const char *err;
	uint64_t v;

	if (strnum_u64(s, min, max, &v, &err) < 0)
		log_fatalx("bad number %s: %s", s, err);
	return v;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: ca_bench -c CONF issue csr|csr-batch|generate|"
	    "generate-batch N PROCS ADDRESS...\n"
	    "       ca_bench -c CONF csrs DIR N\n"
	    "       ca_bench -c CONF revoke-fill N\n"
	    "       ca_bench -c CONF crl RUNS\n"
	    "       ca_bench -c CONF revoke N ADDRESS\n");
	exit(2);
}

/* The [ca] settings govmail-ca uses, and the passphrase from its file. */
static void
bench_config(const char *path)
{
	const char *err = NULL, *pf;
	size_t len;
	FILE *f;

	if (config_load(path, &cfg, &err) != 0)
		log_fatalx("%s: %s", path, err != NULL ? err : "cannot load");
	ca_dir = config_path_get(cfg, "ca", "dir");
	settings.base_url = config_str(cfg, "ca", "base_url");
	settings.validity_days = (unsigned)config_uint(cfg, "ca",
	    "validity_days");
	settings.crl_days = (unsigned)config_uint(cfg, "ca", "crl_days");
	settings.name = config_str(cfg, "ca", "name");
	if (govca_key_type_parse(config_str(cfg, "ca", "key_type"),
	    &settings.key_type) == -1)
		log_fatalx("[ca] key_type: unknown");
	pf = config_path_get(cfg, "ca", "passphrase_file");
	if (ca_dir == NULL || pf == NULL || pf[0] == '\0')
		log_fatalx("%s: [ca] dir and passphrase_file are needed", path);
	if ((f = fopen(pf, "r")) == NULL)
		log_fatal("%s", pf);
	if (fgets(passphrase, sizeof(passphrase), f) == NULL)
		log_fatalx("%s: empty", pf);
	fclose(f);
	len = strcspn(passphrase, "\r\n");
	if (len > BENCH_PASS_MAX)
		log_fatalx("%s: passphrase too long", pf);
	passphrase[len] = '\0';
}

static struct govca *
bench_ca_open(void)
{
	struct govca *ca;
	const char *err;

	if (govca_open(ca_dir, &settings, passphrase, GOVCA_OPEN_KEYS, &ca,
	    &err) == -1)
		log_fatalx("govca_open %s: %s", ca_dir, err);
	return ca;
}

/* A P-256 key and a PKCS#10 request for it, DER. */
static void
bench_csr(struct buf *out)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	unsigned char *der = NULL;
	int len;

	if (key == NULL || req == NULL || name == NULL ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"bench", -1, -1, 0) != 1 ||
	    X509_REQ_set_subject_name(req, name) != 1 ||
	    X509_REQ_set_pubkey(req, key) != 1 ||
	    X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
	    (len = i2d_X509_REQ(req, &der)) <= 0)
		log_fatalx("cannot make a CSR");
	buf_reset(out);
	buf_append(out, der, (size_t)len);
	OPENSSL_free(der);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
}

static void
bench_holder(struct store *st, const char *address,
    struct store_account **acct_r, struct govca_holder *h)
{
	const char *err = NULL;

	if (store_account_get(st, address, acct_r, &err) != 0)
		log_fatalx("account %s: %s", address, err ? err : "not found");
	memset(h, 0, sizeof(*h));
	h->address = (*acct_r)->address;
	h->profile = GOVCA_PROFILE_CITIZEN;
	h->display_name = (*acct_r)->display_name;
	h->unverified = !(*acct_r)->identity_verified;
}

enum bench_mode {
	MODE_CSR, MODE_CSR_BATCH, MODE_GENERATE, MODE_GENERATE_BATCH,
};

/* One worker process: issue count certificates, first at index first. */
static int
issue_worker(enum bench_mode mode, struct buf *csrs, uint64_t first,
    uint64_t count, char **addrs, size_t naddrs, int ready_fd, int go_fd)
{
	char password[GOVCA_P12_PASSWORD_LEN + 1];
	int batch = mode == MODE_CSR_BATCH || mode == MODE_GENERATE_BATCH;
	struct store_account *acct;
	struct govca_holder h;
	struct govca_issued iss;
	struct store *st;
	struct govca *ca;
	struct buf p12;
	const char *err = NULL;
	uint64_t i, pending = 0;
	char c = 'r';

	if (store_open(cfg, 0, &st, &err) != 0)
		log_fatalx("store_open: %s", err ? err : "?");
	ca = bench_ca_open();
	buf_init(&p12, 1024 * 1024);
	if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1)
		log_fatal("start pipe");
	if (batch)
		govca_batch_begin(ca);
	for (i = first; i < first + count; i++) {
		bench_holder(st, addrs[i % naddrs], &acct, &h);
		if (mode == MODE_CSR || mode == MODE_CSR_BATCH) {
			if (govca_issue_csr(ca, &h, csrs[i].data, csrs[i].len,
			    0, &iss, &err) == -1)
				log_fatalx("govca_issue_csr: %s", err);
		} else {
			buf_reset(&p12);
			if (govca_issue_generate(ca, &h, 0, 0, &p12, password,
			    &iss, &err) == -1)
				log_fatalx("govca_issue_generate: %s", err);
			if (p12.len == 0 || password[0] == '\0')
				log_fatalx("no PKCS#12 produced");
		}
		if (iss.der_len == 0 || iss.serial[0] == '\0')
			log_fatalx("no certificate produced");
		govca_issued_free(&iss);
		store_account_free(acct);
		if (batch && ++pending == BENCH_BATCH) {
			if (govca_batch_commit(ca, &err) == -1)
				log_fatalx("govca_batch_commit: %s", err);
			govca_batch_begin(ca);
			pending = 0;
		}
	}
	if (batch && govca_batch_commit(ca, &err) == -1)
		log_fatalx("govca_batch_commit: %s", err);
	buf_free(&p12);
	govca_close(ca);
	store_close(st);
	return 0;
}

static int
cmd_issue(int argc, char **argv)
{
	static const char *const names[] = {
		"csr", "csr-batch", "generate", "generate-batch",
	};
	int ready[2], go[2], status, failed = 0;
	enum bench_mode mode = MODE_CSR;
	pid_t pids[BENCH_PROCS_MAX];
	uint64_t n, procs, i, first = 0;
	struct buf *csrs = NULL;
	double t0, t1;
	size_t m;
	char c;

	if (argc < 4)
		usage();
	for (m = 0; m < sizeof(names) / sizeof(names[0]); m++)
		if (strcmp(argv[0], names[m]) == 0)
			break;
	if (m == sizeof(names) / sizeof(names[0]))
		usage();
	mode = (enum bench_mode)m;
	n = num(argv[1], 1, BENCH_COUNT_MAX);
	procs = num(argv[2], 1, BENCH_PROCS_MAX);
	if (mode == MODE_CSR || mode == MODE_CSR_BATCH) {
		csrs = xcalloc(n, sizeof(*csrs));
		for (i = 0; i < n; i++) {
			buf_init(&csrs[i], GOVCA_CSR_MAX);
			bench_csr(&csrs[i]);
		}
	}
	if (pipe(ready) == -1 || pipe(go) == -1)
		log_fatal("pipe");
	for (i = 0; i < procs; i++) {
		uint64_t count = n / procs + (i < n % procs ? 1 : 0);

		if ((pids[i] = fork()) == -1)
			log_fatal("fork");
		if (pids[i] == 0) {
			close(ready[0]);
			close(go[1]);
			_exit(issue_worker(mode, csrs, first, count, argv + 3,
			    (size_t)(argc - 3), ready[1], go[0]));
		}
		first += count;
	}
	close(ready[1]);
	close(go[0]);
	for (i = 0; i < procs; i++)
		if (read(ready[0], &c, 1) != 1)
			log_fatalx("a worker died while opening the CA");
	t0 = now();
	for (i = 0; i < procs; i++)
		if (write(go[1], "g", 1) != 1)
			log_fatal("start pipe");
	for (i = 0; i < procs; i++) {
		if (waitpid(pids[i], &status, 0) == -1 ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	t1 = now();
	if (failed)
		log_fatalx("a worker failed");
	printf("issue %-14s citizen: %llu certificates, %llu process%s: "
	    "%.2f s = %.0f/s\n", names[mode], (unsigned long long)n,
	    (unsigned long long)procs, procs == 1 ? "" : "es", t1 - t0,
	    (double)n / (t1 - t0));
	if (csrs != NULL) {
		for (i = 0; i < n; i++)
			buf_free(&csrs[i]);
		free(csrs);
	}
	return 0;
}

static int
cmd_csrs(int argc, char **argv)
{
	struct buf der;
	uint64_t n, i;

	if (argc != 2)
		usage();
	n = num(argv[1], 1, BENCH_COUNT_MAX);
	buf_init(&der, GOVCA_CSR_MAX);
	for (i = 0; i < n; i++) {
		const unsigned char *p;
		X509_REQ *req;
		char *path;
		FILE *f;

		bench_csr(&der);
		p = der.data;
		if ((req = d2i_X509_REQ(NULL, &p, (long)der.len)) == NULL)
			log_fatalx("CSR does not decode");
		path = xasprintf("%s/csr-%llu.pem", argv[0],
		    (unsigned long long)i);
		if ((f = fopen(path, "w")) == NULL)
			log_fatal("%s", path);
		if (PEM_write_X509_REQ(f, req) != 1 || fclose(f) != 0)
			log_fatalx("cannot write %s", path);
		X509_REQ_free(req);
		free(path);
	}
	buf_free(&der);
	return 0;
}

static int
cmd_revoke_fill(int argc, char **argv)
{
	static const enum govca_reason reasons[] = {
		GOVCA_REASON_UNSPECIFIED, GOVCA_REASON_KEY_COMPROMISE,
		GOVCA_REASON_AFFILIATION_CHANGED, GOVCA_REASON_SUPERSEDED,
		GOVCA_REASON_CESSATION, GOVCA_REASON_PRIVILEGE_WITHDRAWN,
	};
	struct govca *ca;
	struct kv_txn *txn;
	const char *err = NULL;
	uint64_t n, i = 0, before, after;
	time_t when = time(NULL);
	double t0;
	int ret;

	if (argc != 1)
		usage();
	n = num(argv[0], 1, BENCH_COUNT_MAX);
	ca = bench_ca_open();
	if (kv_count(ca->db, CA_TABLE_REVOKED, &before) != 0)
		log_fatalx("cannot count revoked entries");
	t0 = now();
	while (i < n) {
		uint64_t end = i + BENCH_REVOKE_TXN < n ? i + BENCH_REVOKE_TXN :
		    n;

		if ((ret = kv_txn_begin(ca->db, &txn, &err)) != 0)
			log_fatalx("txn: %s", err ? err : kv_strerror(ret));
		for (; i < end; i++) {
			uint8_t serial[GOVCA_SERIAL_LEN], entry[9];
			uint64_t w = (uint64_t)when - i % 86400;
			int b;

			RAND_bytes(serial, sizeof(serial));
			serial[0] = (serial[0] & 0x7f) | 0x40; /* positive */
			for (b = 7; b >= 0; b--) {
				entry[b] = (uint8_t)w;
				w >>= 8;
			}
			entry[8] = (uint8_t)reasons[i % (sizeof(reasons) /
			    sizeof(reasons[0]))];
			ret = kv_put(ca->db, txn, CA_TABLE_REVOKED, serial,
			    sizeof(serial), entry, sizeof(entry), KV_PUT_NEW);
			if (ret != 0)
				log_fatalx("put: %s", kv_strerror(ret));
		}
		if ((ret = kv_txn_commit(txn, &err)) != 0)
			log_fatalx("commit: %s", err ? err : kv_strerror(ret));
	}
	if (kv_maintain(ca->db, &err) != 0)
		log_warnx("maintain: %s", err ? err : "?");
	if (kv_count(ca->db, CA_TABLE_REVOKED, &after) != 0)
		log_fatalx("cannot count revoked entries");
	if (after != before + n)
		log_fatalx("revoked entries: %llu, expected %llu",
		    (unsigned long long)after,
		    (unsigned long long)(before + n));
	printf("revoke-fill: %llu records added (%d per transaction) in "
	    "%.2f s; %llu revoked entries now\n", (unsigned long long)n,
	    BENCH_REVOKE_TXN, now() - t0, (unsigned long long)after);
	govca_close(ca);
	return 0;
}

static int
cmd_crl(int argc, char **argv)
{
	struct govca *ca;
	const char *err;
	uint64_t runs, i, entries;
	double t0, t, best = 0;
	struct stat sb;
	char *path;

	if (argc != 1)
		usage();
	runs = num(argv[0], 1, 100);
	ca = bench_ca_open();
	if (kv_count(ca->db, CA_TABLE_REVOKED, &entries) != 0)
		log_fatalx("cannot count revoked entries");
	path = ca_path(ca, "issuing.crl");
	for (i = 0; i < runs; i++) {
		t0 = now();
		if (govca_crl_generate(ca, &err) == -1)
			log_fatalx("govca_crl_generate: %s", err);
		t = now() - t0;
		if (i == 0 || t < best)
			best = t;
		if (stat(path, &sb) == -1)
			log_fatal("%s", path);
		printf("crl build %llu/%llu: %llu entries, %lld bytes: "
		    "%.3f s\n", (unsigned long long)i + 1,
		    (unsigned long long)runs, (unsigned long long)entries,
		    (long long)sb.st_size, t);
	}
	printf("crl build best of %llu: %.3f s for %llu entries\n",
	    (unsigned long long)runs, best, (unsigned long long)entries);
	free(path);
	govca_close(ca);
	return 0;
}

static int
cmd_revoke(int argc, char **argv)
{
	struct store_account *acct;
	struct govca_holder h;
	struct govca_issued iss;
	struct store *st;
	struct govca *ca;
	struct buf csr;
	const char *err = NULL;
	char (*serials)[GOVCA_SERIAL_HEX_MAX];
	uint64_t n, i;
	double t0, t, total = 0, worst = 0;

	if (argc != 2)
		usage();
	n = num(argv[0], 1, 1000);
	serials = xcalloc(n, sizeof(*serials));
	if (store_open(cfg, 0, &st, &err) != 0)
		log_fatalx("store_open: %s", err ? err : "?");
	ca = bench_ca_open();
	buf_init(&csr, GOVCA_CSR_MAX);
	bench_holder(st, argv[1], &acct, &h);
	for (i = 0; i < n; i++) {
		bench_csr(&csr);
		if (govca_issue_csr(ca, &h, csr.data, csr.len, 0, &iss,
		    &err) == -1)
			log_fatalx("govca_issue_csr: %s", err);
		str_copy(serials[i], sizeof(serials[i]), iss.serial);
		govca_issued_free(&iss);
	}
	store_account_free(acct);
	for (i = 0; i < n; i++) {
		t0 = now();
		if (govca_revoke(ca, serials[i], GOVCA_REASON_KEY_COMPROMISE,
		    &err) == -1)
			log_fatalx("govca_revoke: %s", err);
		t = now() - t0;
		total += t;
		if (t > worst)
			worst = t;
	}
	printf("revoke (durable + CRL rebuilt): %llu revocations, mean "
	    "%.3f s, worst %.3f s\n", (unsigned long long)n,
	    total / (double)n, worst);
	buf_free(&csr);
	free(serials);
	govca_close(ca);
	store_close(st);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *conf = NULL;
	int ch, ret;

	log_init("ca_bench", LOG_TO_STDERR, LOG_LEVEL_WARN);
	while ((ch = getopt(argc, argv, "+c:")) != -1) {
		switch (ch) {
		case 'c':
			conf = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (conf == NULL || argc < 1)
		usage();
	signal(SIGPIPE, SIG_IGN);
	bench_config(conf);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(argv[0], "issue") == 0)
		ret = cmd_issue(argc - 1, argv + 1);
	else if (strcmp(argv[0], "csrs") == 0)
		ret = cmd_csrs(argc - 1, argv + 1);
	else if (strcmp(argv[0], "revoke-fill") == 0)
		ret = cmd_revoke_fill(argc - 1, argv + 1);
	else if (strcmp(argv[0], "crl") == 0)
		ret = cmd_crl(argc - 1, argv + 1);
	else if (strcmp(argv[0], "revoke") == 0)
		ret = cmd_revoke(argc - 1, argv + 1);
	else
		usage();
	config_free(cfg);
	return ret;
}
