/*
 * libFuzzer harness for libgovca's CSR checks (govca_csr_check): any byte
 * string is a candidate PKCS#10 request (PEM or DER) that must be judged
 * without crashing or leaking, with a reason on refusal.
 *
 * Two builds of this file:
 *   - "configure CC=clang --enable-fuzz": fuzz/fuzz_csr, a libFuzzer binary
 *   - always: fuzz/fuzz_csr_replay (FUZZ_REPLAY), a `make check` test that
 *     makes seed requests (P-256, P-384, RSA 2048, PEM) in-process and runs
 *     every truncation and every single-byte change of each through the
 *     same function, so the harness keeps compiling and the seeds pass.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "govca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *err = NULL;

	if (govca_csr_check(data, size, &err) != 0 &&
	    (err == NULL || err[0] == '\0'))
		abort();	/* a refusal always says why */
	return 0;
}

#ifdef FUZZ_REPLAY
static unsigned char *
seed(EVP_PKEY *key, int pem, size_t *len_r)
{
	X509_REQ *req = X509_REQ_new();
	unsigned char *der = NULL;
	int len;

	X509_REQ_set_pubkey(req, key);
	X509_REQ_sign(req, key, EVP_sha256());
	if (pem) {
		BIO *b = BIO_new(BIO_s_mem());
		char *mem;
		long n;

		PEM_write_bio_X509_REQ(b, req);
		n = BIO_get_mem_data(b, &mem);
		der = OPENSSL_memdup(mem, (size_t)n);
		len = (int)n;
		BIO_free(b);
	} else
		len = i2d_X509_REQ(req, &der);
	X509_REQ_free(req);
	*len_r = (size_t)len;
	return der;
}

int
main(void)
{
	EVP_PKEY *keys[3];
	size_t i, k, n, runs = 0;
	int pem;

	keys[0] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	keys[1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	keys[2] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	printf("1..1\n");
	for (k = 0; k < 3; k++) {
		for (pem = 0; pem < 2; pem++) {
			unsigned char *s = seed(keys[k], pem, &n);
			unsigned char *copy = malloc(n);
			const char *err;

			if (govca_csr_check(s, n, &err) != 0) {
				printf("not ok 1 - seed %zu/%d refused: %s\n",
				    k, pem, err);
				return 1;
			}
			for (i = 0; i < n; i++, runs++)
				LLVMFuzzerTestOneInput(s, i);
			for (i = 0; i < n; i++, runs++) {
				memcpy(copy, s, n);
				copy[i] ^= (uint8_t)(1u << (i % 8));
				LLVMFuzzerTestOneInput(copy, n);
			}
			free(copy);
			OPENSSL_free(s);
		}
		EVP_PKEY_free(keys[k]);
	}
	printf("ok 1 - %zu CSR variants judged without a crash\n", runs);
	return 0;
}
#endif
