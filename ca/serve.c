/*
 * serve.c - the PKI repository over HTTP with libmicrohttpd: CA
 * certificates (AIA caIssuers), the CRL (CDP), the OCSP responder (RFC
 * 6960 appendix A: POST, and GET with the base64 request in the path) and
 * the current certificate of a mailbox (for encrypting to it).
 *
 * Runs in `govmail-ca serve`: MHD's thread pool with epoll, every thread
 * sharing one struct govca (the database environment is opened once, with
 * DB_THREAD).  Trusts nothing from the network: paths and bodies have
 * named limits, a bad request gets 400, a body over the limit 413, an
 * unknown path 404, and a malformed OCSP request a signed-less
 * malformedRequest answer.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "buf.h"
#include "ca_priv.h"
#include "kv.h"
#include "log.h"
#include "strnum.h"
#include "xmalloc.h"

#define SERVE_TIMEOUT_SECONDS 15
#define SERVE_CONNECTIONS_MAX 4096
#define SERVE_MAINTAIN_SECONDS 60

struct serve {
	struct govca *ca;
	uint8_t *root_der, *issuing_der, *tls_der;
	size_t root_len, issuing_len, tls_len;
};

struct serve_req {
	struct buf body;
	int too_big;
};

#if MHD_VERSION < 0x00097002
typedef int serve_result;
#else
typedef enum MHD_Result serve_result;
#endif

static serve_result
reply(struct MHD_Connection *conn, unsigned status, const char *type,
    const void *data, size_t len, int must_free)
{
	struct MHD_Response *resp;
	serve_result ret;

	resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)data,
	    must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
	if (resp == NULL) {
		if (must_free)
			free((void *)(uintptr_t)data);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static serve_result
reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
	return reply(conn, status, "text/plain; charset=utf-8", text,
	    strlen(text), 0);
}

static serve_result
reply_ocsp(struct serve *s, struct MHD_Connection *conn, const uint8_t *req,
    size_t len)
{
	const char *err;
	struct buf out;
	serve_result ret;

	buf_init(&out, 1024 * 1024);
	if (govca_ocsp_respond(s->ca, req, len, &out, &err) == -1)
		log_warnx("serve: ocsp error=\"%s\"", err);
	if (out.len == 0) {
		buf_free(&out);
		return reply_text(conn, 500, "OCSP responder failure\n");
	}
	ret = reply(conn, 200, "application/ocsp-response", out.data, out.len,
	    0);
	buf_free(&out);
	return ret;
}

/* GET /ocsp/<base64 DER>, standard or URL-safe alphabet, padded or not. */
static serve_result
ocsp_get(struct serve *s, struct MHD_Connection *conn, const char *b64)
{
	static const int variants[] = {
		sodium_base64_VARIANT_ORIGINAL,
		sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
		sodium_base64_VARIANT_URLSAFE,
		sodium_base64_VARIANT_URLSAFE_NO_PADDING,
	};
	uint8_t der[GOVCA_OCSP_REQUEST_MAX];
	size_t blen = strlen(b64), len;
	size_t i;

	if (blen > sodium_base64_ENCODED_LEN(GOVCA_OCSP_REQUEST_MAX,
	    sodium_base64_VARIANT_ORIGINAL))
		return reply_text(conn, 414, "request too long\n");
	for (i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
		if (sodium_base642bin(der, sizeof(der), b64, blen, NULL, &len,
		    NULL, variants[i]) == 0)
			return reply_ocsp(s, conn, der, len);
	return reply_ocsp(s, conn, (const uint8_t *)"", 0);
}

static int
wants_pem(struct MHD_Connection *conn)
{
	const char *accept = MHD_lookup_connection_value(conn,
	    MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);

	return accept != NULL && (strstr(accept, "application/x-pem-file") !=
	    NULL || strstr(accept, "text/plain") != NULL);
}

static serve_result
reply_cert(struct MHD_Connection *conn, const uint8_t *der, size_t len,
    int pem)
{
	serve_result ret;
	BIO *bio;
	char *mem;
	long mlen;

	if (!pem)
		return reply(conn, 200, "application/pkix-cert", der, len, 0);
	/* The stored DER as it is, base64 in PEM armour: no decoding (the
	 * CA wrote it; parsing it per request was most of a fetch's cost). */
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio(bio, PEM_STRING_X509, "", der, (long)len) <= 0) {
		BIO_free(bio);
		return reply_text(conn, 500, "cannot encode\n");
	}
	mlen = BIO_get_mem_data(bio, &mem);
	ret = reply(conn, 200, "application/x-pem-file", mem, (size_t)mlen, 0);
	BIO_free(bio);
	return ret;
}

static serve_result
certs_get(struct serve *s, struct MHD_Connection *conn, const char *rest)
{
	struct govca_cert c;
	const char *err;
	serve_result ret;
	char *address;
	size_t n = strlen(rest);
	int pem = wants_pem(conn);

	address = xstrdup(rest);
	if (n > 4 && strcmp(address + n - 4, ".pem") == 0) {
		address[n - 4] = '\0';
		pem = 1;
	} else if (n > 4 && strcmp(address + n - 4, ".der") == 0) {
		address[n - 4] = '\0';
		pem = 0;
	}
	if (address[0] == '\0' || strchr(address, '@') == NULL ||
	    strlen(address) > 254) {
		free(address);
		return reply_text(conn, 400, "bad address\n");
	}
	if (govca_cert_current(s->ca, address, &c, &err) == -1) {
		free(address);
		return reply_text(conn, 404, "no current certificate\n");
	}
	free(address);
	ret = reply_cert(conn, c.der, c.der_len, pem);
	govca_cert_free(&c);
	return ret;
}

static serve_result
serve_handler(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct serve *s = cls;
	struct serve_req *r = *con_cls;
	int is_get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
	    strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	int is_post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	uint8_t *der;
	size_t len;

	if (r == NULL) {
		r = xcalloc(1, sizeof(*r));
		buf_init(&r->body, GOVCA_OCSP_REQUEST_MAX);
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (!r->too_big && buf_append(&r->body, upload_data,
		    *upload_data_size) == -1)
			r->too_big = 1;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strlen(url) > GOVCA_HTTP_PATH_MAX)
		return reply_text(conn, 414, "path too long\n");
	if (!is_get && !is_post)
		return reply_text(conn, 405, "method not allowed\n");
	if (is_post) {
		if (strcmp(url, "/ocsp") != 0 && strcmp(url, "/ocsp/") != 0)
			return reply_text(conn, 404, "not found\n");
		if (r->too_big)
			return reply_text(conn, 413,
			    "OCSP request larger than the limit\n");
		return reply_ocsp(s, conn, r->body.data, r->body.len);
	}
	if (r->body.len > 0 || r->too_big)
		return reply_text(conn, 400, "unexpected body\n");
	if (strcmp(url, "/ca/root.crt") == 0)
		return reply(conn, 200, "application/pkix-cert", s->root_der,
		    s->root_len, 0);
	if (strcmp(url, "/ca/issuing.crt") == 0)
		return reply(conn, 200, "application/pkix-cert",
		    s->issuing_der, s->issuing_len, 0);
	if (strcmp(url, "/ca/tls.crt") == 0 && s->tls_der != NULL)
		return reply(conn, 200, "application/pkix-cert", s->tls_der,
		    s->tls_len, 0);
	if (strcmp(url, "/crl/issuing.crl") == 0) {
		if (ca_crl_load(s->ca, &der, &len) == -1)
			return reply_text(conn, 503, "no CRL yet\n");
		return reply(conn, 200, "application/pkix-crl", der, len, 1);
	}
	if (str_has_prefix(url, "/ocsp/") && url[6] != '\0')
		return ocsp_get(s, conn, url + 6);
	if (str_has_prefix(url, "/certs/"))
		return certs_get(s, conn, url + 7);
	return reply_text(conn, 404, "not found\n");
}

static void
serve_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct serve_req *r = *con_cls;

	if (r == NULL)
		return;
	buf_free(&r->body);
	free(r);
	*con_cls = NULL;
}

static int
parse_listen(const char *listen, struct sockaddr_storage *ss,
    const char **error_r)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	char host[128];
	const char *colon, *err;
	uint64_t port;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	colon = strrchr(listen, ':');
	if (colon == NULL || strnum_u64(colon + 1, 1, 65535, &port,
	    &err) == -1) {
		*error_r = "listen must be HOST:PORT";
		return -1;
	}
	hl = (size_t)(colon - listen);
	if (hl >= sizeof(host)) {
		*error_r = "listen host too long";
		return -1;
	}
	memcpy(host, listen, hl);
	host[hl] = '\0';
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) == 1)
			return 0;
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &sin->sin_addr) == 1)
			return 0;
	}
	*error_r = "listen host must be an IP address";
	return -1;
}

static uint8_t *
cert_der(X509 *cert, size_t *len_r)
{
	unsigned char *der = NULL;
	uint8_t *copy;
	int len;

	*len_r = 0;
	if (cert == NULL || (len = i2d_X509(cert, &der)) <= 0)
		return NULL;
	copy = xmemdup(der, (size_t)len);
	OPENSSL_free(der);
	*len_r = (size_t)len;
	return copy;
}

/* Regenerate the CRL when half its lifetime has passed (needs the keys). */
static void
serve_maintain(struct serve *s)
{
	const char *err;
	time_t next;

	if (govca_maintain(s->ca, &err) != 0)
		log_warnx("serve: %s", err);
	if (s->ca->issuing_key == NULL)
		return;
	next = govca_crl_next_update(s->ca);
	if (next - time(NULL) < (time_t)s->ca->crl_days * 86400 / 2) {
		if (govca_crl_generate(s->ca, &err) == -1)
			log_warnx("serve: crl refresh failed: %s", err);
		else
			log_info("serve: event=crl-refresh");
	}
}

int
govca_serve(struct govca *ca, const char *listen, unsigned threads,
    volatile int *stop, const char **error_r)
{
	struct sockaddr_storage ss;
	struct MHD_Daemon *d;
	struct serve s;
	unsigned ticks = 0;

	if (ca->ocsp_key == NULL) {
		*error_r = "serve needs the OCSP key";
		return -1;
	}
	if (parse_listen(listen, &ss, error_r) == -1)
		return -1;
	if (threads == 0)
		threads = 2;
	memset(&s, 0, sizeof(s));
	s.ca = ca;
	s.root_der = cert_der(ca->root, &s.root_len);
	s.issuing_der = cert_der(ca->issuing, &s.issuing_len);
	s.tls_der = cert_der(ca->tls, &s.tls_len);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_EPOLL | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	    0, NULL, NULL, serve_handler, &s,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_THREAD_POOL_SIZE, threads,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVE_TIMEOUT_SECONDS,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVE_CONNECTIONS_MAX,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
	    MHD_OPTION_NOTIFY_COMPLETED, serve_completed, NULL,
	    MHD_OPTION_END);
	if (d == NULL) {
		*error_r = "cannot start the HTTP server (address in use?)";
		free(s.root_der);
		free(s.issuing_der);
		free(s.tls_der);
		return -1;
	}
	log_info("serve: event=listening addr=%s threads=%u", listen, threads);
	while (!*stop) {
		usleep(200 * 1000);
		if (++ticks % (SERVE_MAINTAIN_SECONDS * 5) == 1)
			serve_maintain(&s);
	}
	MHD_stop_daemon(d);
	free(s.root_der);
	free(s.issuing_der);
	free(s.tls_der);
	log_info("serve: event=stopped");
	return 0;
}
