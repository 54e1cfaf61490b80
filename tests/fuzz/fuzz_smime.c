/*
 * libFuzzer harness for libgovca's S/MIME verifier (ca/cms.c and the MIME
 * scanner in ca/smime_mime.c): any byte string is a message that
 * govca_cms_verify() must judge without crashing, leaking or recursing,
 * and whose verdict must be consistent (a PASS has a signer, a reason is
 * always set).  Decryption is fed the same bytes.  Seed corpus:
 * tests/data/cms/fuzz/.
 *
 * Two builds of this file:
 *   - "configure CC=clang --enable-fuzz": fuzz/fuzz_smime, a libFuzzer
 *     binary (tests/unit/cms.am):
 *       mkdir corpus; ./fuzz_smime -max_len=65536 corpus tests/data/cms/fuzz
 *     (libFuzzer writes new inputs into the first folder: not the seeds)
 *   - always: fuzz/fuzz_smime_replay (FUZZ_SMIME_REPLAY), a `make check`
 *     test that runs every seed, every truncation of it and every
 *     single-byte change of its first 4 KiB through the same function, so
 *     that the harness keeps compiling and the seeds keep passing.
 */
#include "autoconf.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "buf.h"
#include "govca_cms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509_STORE *fuzz_store;
static struct govca_cms_identity *fuzz_id;

static void
fuzz_init(void)
{
	EVP_PKEY *key;
	X509 *cert;
	X509_NAME *name;
	const char *err;

	if (fuzz_store != NULL)
		return;
	fuzz_store = X509_STORE_new();
	/* A throwaway identity so that decrypt runs up to the recipient
	 * match (the input is not for it, or is by sheer luck). */
	key = EVP_EC_gen("P-256");
	cert = X509_new();
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"fuzz", -1, -1, 0);
	X509_set_issuer_name(cert, name);
	X509_set_pubkey(cert, key);
	X509_sign(cert, key, EVP_sha256());
	if (govca_cms_identity_new(cert, key, NULL, &fuzz_id, &err) < 0)
		abort();
	X509_free(cert);
	EVP_PKEY_free(key);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct govca_cms_verify_opts o;
	struct govca_cms_result res;
	struct buf out;
	const char *err = NULL;
	int r;

	fuzz_init();
	memset(&o, 0, sizeof(o));
	o.store = fuzz_store;
	govca_cms_result_init(&res);
	r = govca_cms_verify(data, size, &o, &res, &err);
	if (r != 0 && r != -1)
		abort();
	if (r == -1 && (err == NULL || res.status == GOVCA_CMS_PASS))
		abort();
	if (res.reason[0] == '\0' || strlen(res.reason) >= GOVCA_CMS_REASON_MAX)
		abort();
	if (res.status == GOVCA_CMS_PASS && res.signer == NULL)
		abort();
	if (res.n_emails > GOVCA_CMS_MAX_EMAILS)
		abort();
	govca_cms_result_free(&res);

	buf_init(&out, GOVCA_CMS_MAX_MESSAGE);
	r = govca_cms_decrypt(fuzz_id, data, size, 0, &out, &err);
	if (r != 0 && r != -1)
		abort();
	buf_free(&out);
	return 0;
}

#ifdef FUZZ_SMIME_REPLAY
/* Bytes of each seed whose every single-byte change is tried. */
#define REPLAY_FLIP_SPAN	4096

static int
replay(const uint8_t *data, size_t size, size_t *runs)
{
	uint8_t *copy = malloc(size + 1);
	size_t n, i;

	if (copy == NULL)
		return -1;
	memcpy(copy, data, size);
	for (n = 0; n <= size; n++, (*runs)++)
		LLVMFuzzerTestOneInput(copy, n);
	for (i = 0; i < size && i < REPLAY_FLIP_SPAN; i += 7, (*runs)++) {
		copy[i] ^= 0x20;
		LLVMFuzzerTestOneInput(copy, size);
		copy[i] = data[i];
	}
	free(copy);
	return 0;
}

int
main(void)
{
	const char *top = getenv("top_srcdir");
	char dir[4096], path[8192];
	struct dirent *de;
	DIR *d;
	size_t seeds = 0, runs = 0;

	snprintf(dir, sizeof(dir), "%s/tests/data/cms/fuzz",
	    top != NULL ? top : ".");
	printf("1..1\n");
	if ((d = opendir(dir)) == NULL) {
		printf("not ok 1 - seed corpus %s missing\n", dir);
		return 1;
	}
	while ((de = readdir(d)) != NULL) {
		struct buf b;
		FILE *f;
		uint8_t tmp[4096];
		size_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((f = fopen(path, "rb")) == NULL)
			continue;
		buf_init(&b, GOVCA_CMS_MAX_MESSAGE);
		while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
			buf_append(&b, tmp, n);
		fclose(f);
		buf_reserve(&b, 0);
		replay(b.data, b.len, &runs);
		buf_free(&b);
		seeds++;
	}
	closedir(d);
	govca_cms_identity_free(fuzz_id);
	X509_STORE_free(fuzz_store);
	printf("%s 1 - %zu seeds, %zu inputs replayed through the harness\n",
	    seeds > 0 ? "ok" : "not ok", seeds, runs);
	return seeds > 0 ? 0 : 1;
}
#endif
