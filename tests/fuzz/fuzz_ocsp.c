/*
 * libFuzzer harness for libgovca's OCSP responder (govca_ocsp_respond):
 * any byte string is a request that must get a DER OCSPResponse (usually
 * malformedRequest) without crashing, leaking or an unbounded walk.  A
 * throwaway CA is made in a temporary folder on the first call.
 *
 * Two builds of this file:
 *   - "configure CC=clang --enable-fuzz": fuzz/fuzz_ocsp, a libFuzzer binary
 *   - always: fuzz/fuzz_ocsp_replay (FUZZ_REPLAY), a `make check` test that
 *     builds seed requests (with and without nonce, one and two CertIDs)
 *     and runs every truncation and single-byte change of each.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "buf.h"
#include "govca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct govca *fuzz_ca;
static char fuzz_dir[64];

static const struct govca_settings fuzz_settings = {
	.base_url = "http://127.0.0.1:2080",
	.validity_days = 730,
	.key_type = GOVCA_KEY_P256,
	.crl_days = 7,
	.name = "Fuzz",
};

static void
fuzz_cleanup(void)
{
	char cmd[128];

	govca_close(fuzz_ca);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
}

static void
fuzz_init(void)
{
	char dir[96];
	const char *err;

	if (fuzz_ca != NULL)
		return;
	if (sodium_init() < 0)
		abort();
	snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/govca-fuzz-XXXXXX");
	if (mkdtemp(fuzz_dir) == NULL)
		abort();
	snprintf(dir, sizeof(dir), "%s/ca", fuzz_dir);
	if (govca_init(dir, &fuzz_settings, "fuzz", GOVCA_KEY_P256,
	    &err) != 0 || govca_open(dir, &fuzz_settings, "fuzz",
	    GOVCA_OPEN_OCSP_KEY, &fuzz_ca, &err) != 0) {
		fprintf(stderr, "fuzz CA: %s\n", err);
		abort();
	}
	atexit(fuzz_cleanup);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p;
	OCSP_RESPONSE *resp;
	const char *err;
	struct buf out;

	fuzz_init();
	buf_init(&out, 1024 * 1024);
	(void)govca_ocsp_respond(fuzz_ca, data, size, &out, &err);
	p = out.data;
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)out.len);
	if (resp == NULL)
		abort();	/* every request gets a response */
	OCSP_RESPONSE_free(resp);
	buf_free(&out);
	return 0;
}

#ifdef FUZZ_REPLAY
static unsigned char *
seed(int ids, int nonce, size_t *len_r)
{
	OCSP_REQUEST *req = OCSP_REQUEST_new();
	unsigned char *der = NULL;
	char path[128];
	X509 *issuing;
	FILE *f;
	int i, len;

	snprintf(path, sizeof(path), "%s/ca/issuing.crt", fuzz_dir);
	f = fopen(path, "r");
	issuing = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	for (i = 0; i < ids; i++) {
		ASN1_INTEGER *sn = ASN1_INTEGER_new();

		ASN1_INTEGER_set(sn, 1000 + i);
		OCSP_request_add0_id(req, OCSP_cert_id_new(EVP_sha1(),
		    X509_get_subject_name(issuing),
		    X509_get0_pubkey_bitstr(issuing), sn));
		ASN1_INTEGER_free(sn);
	}
	if (nonce)
		OCSP_request_add1_nonce(req, NULL, -1);
	len = i2d_OCSP_REQUEST(req, &der);
	OCSP_REQUEST_free(req);
	X509_free(issuing);
	*len_r = (size_t)len;
	return der;
}

int
main(void)
{
	size_t i, n, runs = 0;
	int ids, nonce;

	fuzz_init();
	printf("1..1\n");
	for (ids = 1; ids <= 2; ids++)
		for (nonce = 0; nonce < 2; nonce++) {
			unsigned char *s = seed(ids, nonce, &n);
			unsigned char *copy = malloc(n);

			for (i = 0; i <= n; i++, runs++)
				LLVMFuzzerTestOneInput(s, i);
			for (i = 0; i < n; i++, runs++) {
				memcpy(copy, s, n);
				copy[i] ^= (uint8_t)(1u << (i % 8));
				LLVMFuzzerTestOneInput(copy, n);
			}
			free(copy);
			OPENSSL_free(s);
		}
	printf("ok 1 - %zu OCSP request variants answered\n", runs);
	return 0;
}
#endif
