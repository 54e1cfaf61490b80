/*
 * Unit tests for lib/conn.c, on a real event_base with socketpairs and
 * loopback TCP:
 *   - a stream of lines split at every byte, and fed byte by byte;
 *   - the line limit at N-1, N and N+1, with and without the terminator
 *     arriving, for a small limit and one larger than a read chunk;
 *   - bare LF and bare CR handling, with and without CONN_LINE_BARE_LF;
 *   - raw byte reading between lines (BDAT-like);
 *   - STARTTLS command injection in both directions (CVE-2011-0411);
 *   - TLS handshakes between a server conn and a client conn in one loop,
 *     host name checking, a bulk transfer under TLS;
 *   - input and output buffers released when idle (plain and TLS), with
 *     the memory an idle TLS connection costs printed as a TAP comment;
 *   - output overflow at N-1, N, N+1 and against a peer that never reads;
 *   - idle and session timeouts, with and without on_timeout;
 *   - close and abort from inside callbacks, pause and resume;
 *   - fault injection: the Nth read or write returns EAGAIN, moves one
 *     byte, or fails with ECONNRESET, N = 0, 1, 2 ... until the run no
 *     longer reaches N: lines are never lost, duplicated or merged;
 *   - the listener over loopback TCP, and accept() paused on EMFILE.
 * Certificates are made in the test (EVP_PKEY_Q_keygen, a self-signed
 * X509); files live in a mkdtemp() folder removed at the end.
 *
 * Measured (OpenSSL 3.0.19, x86_64, libevent 2.1.12; printed on every run
 * by test_idle_buffers): conn_new() allocates 528 bytes (struct conn: two
 * struct event, two struct buf, state); an idle TLS 1.3 server connection
 * after the handshake holds 13,362 bytes of OpenSSL heap with
 * SSL_MODE_RELEASE_BUFFERS (the SSL, its session and AEAD key schedules;
 * no record buffers) and no conn buffers: about 14 KiB in all, under the
 * 16 KiB per idle TLS connection that issue 5 asks of imapd.  The client
 * side holds 33 KiB (it also keeps the server's certificate chain).
 * Handed over to lib/tls13.c (conn_set_tls_compact, the "compact:" runs
 * of the TLS tests, plus every suite, KeyUpdate both ways and forged
 * records), the server holds no OpenSSL heap at all.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <zlib.h>

#include "buf.h"
#include "conn.h"
#include "strnum.h"
#include "tls.h"
#include "xmalloc.h"

/* ---- OpenSSL heap accounting (for the idle TLS measurement) ---- */

static size_t ossl_live;

static void *
ossl_malloc(size_t n, const char *file, int line)
{
	size_t *p = malloc(n + 16);

	(void)file;
	(void)line;
	if (p == NULL)
		return NULL;
	p[0] = n;
	ossl_live += n;
	return (char *)p + 16;
}

static void
ossl_free(void *q, const char *file, int line)
{
	size_t *p;

	(void)file;
	(void)line;
	if (q == NULL)
		return;
	p = (size_t *)(void *)((char *)q - 16);
	ossl_live -= p[0];
	free(p);
}

static void *
ossl_realloc(void *q, size_t n, const char *file, int line)
{
	size_t *p, *np;

	if (q == NULL)
		return ossl_malloc(n, file, line);
	if (n == 0) {
		ossl_free(q, file, line);
		return NULL;
	}
	p = (size_t *)(void *)((char *)q - 16);
	ossl_live -= p[0];
	np = realloc(p, n + 16);
	if (np == NULL) {
		ossl_live += p[0];
		return NULL;
	}
	np[0] = n;
	ossl_live += n;
	return (char *)np + 16;
}

/* ---- certificates and contexts ---- */

static char tmpdir[64];
static char *cert_path, *key_path;
static SSL_CTX *server_ctx, *client_ctx, *client_opp_ctx;

static void
make_cert(const char *cn, EVP_PKEY **key_r, X509 **cert_r)
{
	EVP_PKEY *key;
	X509 *x;
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX v3;

	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(key);
	x = X509_new();
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0), 1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
	    "DNS:localhost,IP:127.0.0.1");
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	*key_r = key;
	*cert_r = x;
}

static int
setup(void **state)
{
	struct tls_settings s;
	const char *err;
	EVP_PKEY *key;
	X509 *cert;
	FILE *f;
	int fd;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_conn.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	cert_path = xasprintf("%s/cert.pem", tmpdir);
	key_path = xasprintf("%s/key.pem", tmpdir);
	make_cert("localhost", &key, &cert);
	f = fopen(cert_path, "w");
	if (f == NULL || PEM_write_X509(f, cert) != 1)
		return -1;
	fclose(f);
	fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	f = fd < 0 ? NULL : fdopen(fd, "w");
	if (f == NULL || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL,
	    NULL) != 1)
		return -1;
	fclose(f);
	EVP_PKEY_free(key);
	X509_free(cert);

	tls_settings_default(&s);
	s.cert_file = cert_path;
	s.key_file = key_path;
	s.ca_file = cert_path;
	if (tls_server_ctx_new(&s, &server_ctx, &err) != 0
	    || tls_client_ctx_new(&s, TLS_VERIFY_REQUIRE, &client_ctx,
	    &err) != 0
	    || tls_client_ctx_new(&s, TLS_VERIFY_OPPORTUNISTIC,
	    &client_opp_ctx, &err) != 0) {
		fprintf(stderr, "# %s\n", err);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	SSL_CTX_free(server_ctx);
	SSL_CTX_free(client_ctx);
	SSL_CTX_free(client_opp_ctx);
	unlink(cert_path);
	unlink(key_path);
	rmdir(tmpdir);
	free(cert_path);
	free(key_path);
	return 0;
}

/*
 * The "conn-compact" group runs the TLS tests again with every server
 * connection handed over to lib/tls13.c after its handshake.
 */
static int tls_compact;

static int
compact_on(void **state)
{
	(void)state;
	tls_compact = 1;
	return 0;
}

static int
compact_off(void **state)
{
	(void)state;
	tls_compact = 0;
	return 0;
}

#define COMPACT(f) { "compact: " #f, f, compact_on, compact_off, NULL }

static int
srv_starttls(struct conn *c, SSL_CTX *ctx, size_t *discarded_r,
    const char **error_r)
{
	conn_set_tls_compact(c, tls_compact);
	return conn_starttls(c, ctx, discarded_r, error_r);
}

/* ---- one side of a test: a conn and what it saw ---- */

struct side {
	struct event_base *base;
	struct conn *c;
	struct buf log;		/* "line\n" per line; "!LONG\n" */
	int closed;
	enum conn_close_reason why;
	char error[160];
	int echo;		/* echo each line back with CRLF */
	int tls_done;
	int drains;
	int timeouts;
	size_t discarded;
	int verified;
	char verify_error[160];
	int kept_ssl;		/* OpenSSL's SSL still there after on_tls */
	/* test-specific behaviour */
	int role;
	int count;
	size_t want_bytes;	/* raw bytes still to read (BDAT) */
	size_t max_in;		/* largest input buffer seen by on_input */
	struct side *peer;
};

static void
side_init(struct side *s, struct event_base *base)
{
	memset(s, 0, sizeof(*s));
	s->base = base;
	buf_init(&s->log, BUF_UNBOUNDED);
}

static void
side_free(struct side *s)
{
	if (s->c != NULL)
		conn_free(s->c);
	s->c = NULL;
	buf_free(&s->log);
}

static const char *
side_log(const struct side *s)
{
	return s->log.data == NULL ? "" : (const char *)s->log.data;
}

static void
side_record(struct side *s, const char *line, size_t len)
{
	assert_int_equal(buf_append(&s->log, line, len), 0);
	assert_int_equal(buf_append_byte(&s->log, '\n'), 0);
}

static void
on_close(struct conn *c, enum conn_close_reason why, void *arg)
{
	struct side *s = arg;

	assert_ptr_equal(c, s->c);
	assert_int_equal(s->closed, 0);		/* exactly once */
	s->closed = 1;
	s->why = why;
	snprintf(s->error, sizeof(s->error), "%s", conn_error(c));
	/* Writes are ignored now. */
	assert_int_equal(conn_write(c, "x", 1), -1);
	s->c = NULL;
}

static void
on_tls(struct conn *c, void *arg)
{
	struct side *s = arg;
	const char *err;

	s->tls_done = 1;
	s->kept_ssl = conn_ssl(c) != NULL;
	s->verified = conn_tls_verified(c, &err);
	snprintf(s->verify_error, sizeof(s->verify_error), "%s", err);
}

static void
on_drain(struct conn *c, void *arg)
{
	struct side *s = arg;

	(void)c;
	s->drains++;
}

/* Record every line; echo it if asked. */
static void
on_input_lines(struct conn *c, void *arg)
{
	struct side *s = arg;
	const char *line;
	size_t len;
	int r;

	while ((r = conn_read_line(c, &line, &len)) != CONN_MORE) {
		if (r == CONN_LINE_TOO_LONG) {
			side_record(s, "!LONG", 5);
			continue;
		}
		assert_int_equal(line[len], '\0');
		side_record(s, line, len);
		if (s->echo) {
			conn_write(c, line, len);
			conn_write(c, "\r\n", 2);
		}
	}
}

static const struct conn_callbacks lines_cb = {
	.on_input = on_input_lines,
	.on_drain = on_drain,
	.on_tls = on_tls,
	.on_close = on_close,
};

/* ---- driving the loop ---- */

static void
pump(struct event_base *base)
{
	int i;

	for (i = 0; i < 8; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Run the loop until *flag (or every flag of two) is set; 20 s guard. */
static void
run_until2(struct event_base *base, const int *a, const int *b)
{
	struct event *guard;
	struct timeval tv = { 20, 0 };
	int expired = 0;

	guard = evtimer_new(base, guard_cb, &expired);
	evtimer_add(guard, &tv);
	while (!(*a && (b == NULL || *b)) && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	if (expired)
		fail_msg("loop did not reach its goal");
}

static void
run_until(struct event_base *base, const int *flag)
{
	run_until2(base, flag, NULL);
}

static void
mkpair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void
raw_write(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

/* The same, but the peer may have gone (a reset test): stop quietly. */
static void
raw_write_try(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static void
raw_write_str(int fd, const char *s)
{
	raw_write(fd, s, strlen(s));
}

/* Everything readable now from a (blocking) fd, until EOF or nothing. */
static void
raw_read_avail(int fd, struct buf *out, int until_eof)
{
	uint8_t tmp[4096];
	ssize_t n;
	int fl = fcntl(fd, F_GETFL);

	if (!until_eof)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	for (;;) {
		n = read(fd, tmp, sizeof(tmp));
		if (n <= 0)
			break;
		assert_int_equal(buf_append(out, tmp, (size_t)n), 0);
	}
	fcntl(fd, F_SETFL, fl);
}

/* ---- lines ---- */

static const char stream[] =
    "EHLO client.example\r\n"
    "\r\n"
    "MAIL FROM:<a@b.example> SIZE=100\r\n"
    "x\r\n"
    "RCPT TO:<\xe5\xb8\x82\xe6\xb0\x91@b.example>\r\n"
    "0123456789012345678901234567890123456789012345678901234567890123\r\n"
    "QUIT\r\n";

static const char stream_lines[] =
    "EHLO client.example\n"
    "\n"
    "MAIL FROM:<a@b.example> SIZE=100\n"
    "x\n"
    "RCPT TO:<\xe5\xb8\x82\xe6\xb0\x91@b.example>\n"
    "0123456789012345678901234567890123456789012345678901234567890123\n"
    "QUIT\n";

/* The stream cut in two at every byte: the same lines every time. */
static void
test_lines_split(void **state)
{
	size_t k, len = sizeof(stream) - 1;

	(void)state;
	for (k = 0; k <= len; k++) {
		struct event_base *base = event_base_new();
		struct side s;
		size_t in, out;
		int sv[2];

		side_init(&s, base);
		mkpair(sv);
		s.c = conn_new(base, sv[0], &lines_cb, &s);
		raw_write(sv[1], stream, k);
		pump(base);
		raw_write(sv[1], stream + k, len - k);
		pump(base);
		assert_string_equal(side_log(&s), stream_lines);
		/* All consumed: the connection holds no buffer. */
		conn_buffer_sizes(s.c, &in, &out);
		assert_int_equal(in, 0);
		assert_int_equal(out, 0);
		shutdown(sv[1], SHUT_WR);
		run_until(base, &s.closed);
		assert_int_equal(s.why, CONN_CLOSE_EOF);
		side_free(&s);
		close(sv[1]);
		event_base_free(base);
	}
}

/* Held output is queued, not sent, until released (imapd's durable
 * replies); echoed lines written meanwhile come out in order after. */
static void
test_hold_output(void **state)
{
	struct event_base *base = event_base_new();
	struct side s;
	struct buf got;
	int sv[2];

	(void)state;
	side_init(&s, base);
	mkpair(sv);
	s.c = conn_new(base, sv[0], &lines_cb, &s);
	s.echo = 1;
	buf_init(&got, BUF_UNBOUNDED);
	conn_hold_output(s.c, 1);
	raw_write_str(sv[1], "one\r\ntwo\r\n");
	pump(base);
	assert_string_equal(side_log(&s), "one\ntwo\n");
	raw_read_avail(sv[1], &got, 0);
	assert_int_equal(got.len, 0);		/* nothing left while held */
	assert_true(conn_output_len(s.c) > 0);
	conn_write(s.c, "three\r\n", 7);
	pump(base);
	raw_read_avail(sv[1], &got, 0);
	assert_int_equal(got.len, 0);
	conn_hold_output(s.c, 0);
	pump(base);
	raw_read_avail(sv[1], &got, 0);
	assert_int_equal(got.len, 17);
	assert_memory_equal(got.data, "one\r\ntwo\r\nthree\r\n", 17);
	/* Released again: a no-op; output flows as usual. */
	conn_hold_output(s.c, 0);
	conn_write(s.c, "four\r\n", 6);
	pump(base);
	buf_reset(&got);
	raw_read_avail(sv[1], &got, 0);
	assert_int_equal(got.len, 6);
	buf_free(&got);
	shutdown(sv[1], SHUT_WR);
	run_until(base, &s.closed);
	side_free(&s);
	close(sv[1]);
	event_base_free(base);
}

/* Byte by byte, with an echo: what comes back is the stream itself. */
static void
test_lines_bytewise(void **state)
{
	struct event_base *base = event_base_new();
	struct side s;
	struct buf back;
	size_t i, len = sizeof(stream) - 1;
	int sv[2];

	(void)state;
	side_init(&s, base);
	s.echo = 1;
	mkpair(sv);
	s.c = conn_new(base, sv[0], &lines_cb, &s);
	for (i = 0; i < len; i++) {
		raw_write(sv[1], stream + i, 1);
		pump(base);
	}
	shutdown(sv[1], SHUT_WR);
	run_until(base, &s.closed);
	assert_string_equal(side_log(&s), stream_lines);
	buf_init(&back, BUF_UNBOUNDED);
	raw_read_avail(sv[1], &back, 1);
	assert_int_equal(back.len, len);
	assert_memory_equal(back.data, stream, len);
	assert_true(s.drains > 0);
	buf_free(&back);
	side_free(&s);
	close(sv[1]);
	event_base_free(base);
}

struct limit_case {
	size_t text;		/* bytes of text, relative to N */
	const char *first;	/* terminator sent with the text */
	const char *after;	/* then this */
	int long_at_once;	/* "!LONG" seen before `after` is sent */
	int ok;			/* the line is accepted */
};

/* The line limit N at N-1, N, N+1, terminator present or late. */
static void
test_line_limit(void **state)
{
	static const size_t limits[] = { 32, CONN_READ_CHUNK * 2 + 5 };
	/* text lengths are N + delta, delta in {-1, 0, +1} */
	static const struct {
		int delta;
		const char *first;
		int long_at_once;
		int ok;
	} cases[] = {
		{ -1, "\r\n", 0, 1 },
		{ 0, "\r\n", 0, 1 },
		{ 1, "\r\n", 1, 0 },
		{ -1, "", 0, 1 },	/* terminator arrives later */
		{ 0, "", 0, 1 },
		{ 1, "", 1, 0 },	/* too long before the terminator */
		{ 0, "\r", 0, 1 },	/* N + CR: may still be a CRLF */
		{ 1, "\r", 1, 0 },
	};
	size_t li, ci;

	(void)state;
	for (li = 0; li < sizeof(limits) / sizeof(limits[0]); li++) {
		for (ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
			size_t n = limits[li], tlen = n + cases[ci].delta;
			struct event_base *base = event_base_new();
			char *text = xmalloc(tlen + 1), *want;
			const char *rest;
			struct side s;
			int sv[2];

			memset(text, 'a', tlen);
			text[tlen] = '\0';
			side_init(&s, base);
			mkpair(sv);
			s.c = conn_new(base, sv[0], &lines_cb, &s);
			conn_set_line_limit(s.c, n, 0);
			raw_write(sv[1], text, tlen);
			raw_write_str(sv[1], cases[ci].first);
			pump(base);
			if (cases[ci].long_at_once)
				assert_string_equal(side_log(&s), "!LONG\n");
			else if (cases[ci].first[0] == '\n'
			    || strcmp(cases[ci].first, "\r\n") == 0) {
				want = xasprintf("%s\n", text);
				assert_string_equal(side_log(&s), want);
				free(want);
			} else
				assert_string_equal(side_log(&s), "");
			/* The rest of the line, then a good line. */
			rest = strcmp(cases[ci].first, "\r") == 0 ? "\nok\r\n"
			    : strcmp(cases[ci].first, "") == 0 ? "\r\nok\r\n"
			    : "ok\r\n";
			raw_write_str(sv[1], rest);
			pump(base);
			want = cases[ci].ok ? xasprintf("%s\nok\n", text)
			    : xstrdup("!LONG\nok\n");
			if (strcmp(side_log(&s), want) != 0)
				fail_msg("limit %zu text %zu first \"%s\": got "
				    "%.60s", n, tlen, cases[ci].first,
				    side_log(&s));
			free(want);
			free(text);
			side_free(&s);
			close(sv[1]);
			event_base_free(base);
		}
	}
}

/* A line far over the limit, sent without end: reported once, skipped. */
static void
test_line_flood(void **state)
{
	struct event_base *base = event_base_new();
	struct side s;
	char chunk[1000];
	int sv[2], i;

	(void)state;
	memset(chunk, 'z', sizeof(chunk));
	side_init(&s, base);
	mkpair(sv);
	s.c = conn_new(base, sv[0], &lines_cb, &s);
	conn_set_line_limit(s.c, 100, 0);
	for (i = 0; i < 200; i++) {
		raw_write(sv[1], chunk, sizeof(chunk));
		pump(base);
	}
	raw_write_str(sv[1], "\r\nNOOP\r\n");
	pump(base);
	assert_string_equal(side_log(&s), "!LONG\nNOOP\n");
	side_free(&s);
	close(sv[1]);
	event_base_free(base);
}

/* Lines recorded with a '$' after each, so embedded LFs stay visible. */
static void
on_input_marked(struct conn *c, void *arg)
{
	struct side *s = arg;
	const char *line;
	size_t len;

	while (conn_read_line(c, &line, &len) == CONN_LINE_OK) {
		assert_int_equal(buf_append(&s->log, line, len), 0);
		assert_int_equal(buf_append_byte(&s->log, '$'), 0);
	}
}

static const struct conn_callbacks marked_cb = {
	.on_input = on_input_marked,
	.on_close = on_close,
};

/* Bare LF and bare CR: data unless CONN_LINE_BARE_LF. */
static void
test_bare_lf(void **state)
{
	static const struct {
		unsigned flags;
		const char *in;
		const char *want;
	} cases[] = {
		{ 0, "A\nB\r\n", "A\nB$" },
		{ 0, "A\rB\r\n", "A\rB$" },
		{ 0, "\n\r\n", "\n$" },
		{ 0, "A\r\r\n", "A\r$" },
		{ 0, "\r\n.\n.\r\n", "$.\n.$" },		/* smuggling */
		{ 0, "x\n.\r\nQUIT\r\n", "x\n.$QUIT$" },
		{ CONN_LINE_BARE_LF, "A\nB\r\n", "A$B$" },
		{ CONN_LINE_BARE_LF, "A\rB\n", "A\rB$" },
		{ CONN_LINE_BARE_LF, "\n\n", "$$" },
		{ CONN_LINE_BARE_LF, "A\r\r\n", "A\r$" },
	};
	size_t i, j, k;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* Whole, and byte by byte. */
		for (j = 0; j < 2; j++) {
			struct event_base *base = event_base_new();
			struct side s;
			int sv[2];

			side_init(&s, base);
			mkpair(sv);
			s.c = conn_new(base, sv[0], &marked_cb, &s);
			conn_set_line_limit(s.c, 64, cases[i].flags);
			if (j == 0) {
				raw_write_str(sv[1], cases[i].in);
				pump(base);
			} else {
				for (k = 0; cases[i].in[k] != '\0'; k++) {
					raw_write(sv[1], cases[i].in + k, 1);
					pump(base);
				}
			}
			if (strcmp(side_log(&s), cases[i].want) != 0)
				fail_msg("case %zu/%zu: got \"%s\"", i, j,
				    side_log(&s));
			side_free(&s);
			close(sv[1]);
			event_base_free(base);
		}
	}
}

/* ---- raw bytes between lines ---- */

/*
 * "BDAT n" then n raw bytes (which may hold CRLF and NUL), then lines
 * again.  The log gets "BDAT n", the bytes and "|".
 */
static void
on_input_bdat(struct conn *c, void *arg)
{
	struct side *s = arg;
	const char *line, *err;
	uint8_t tmp[7];
	uint64_t n;
	size_t len, got;

	for (;;) {
		if (s->want_bytes > 0) {
			/* Odd-sized reads, to cross every boundary. */
			got = conn_read_bytes(c, tmp, s->want_bytes
			    < sizeof(tmp) ? s->want_bytes : sizeof(tmp));
			if (got == 0)
				return;
			assert_int_equal(buf_append(&s->log, tmp, got), 0);
			s->want_bytes -= got;
			if (s->want_bytes == 0)
				assert_int_equal(buf_append_str(&s->log, "|"),
				    0);
			continue;
		}
		if (conn_read_line(c, &line, &len) != CONN_LINE_OK)
			return;
		side_record(s, line, len);
		if (strncmp(line, "BDAT ", 5) == 0) {
			assert_int_equal(strnum_u64(line + 5, 1, 1000000, &n,
			    &err), 0);
			s->want_bytes = (size_t)n;
		}
	}
}

static const struct conn_callbacks bdat_cb = {
	.on_input = on_input_bdat,
	.on_close = on_close,
};

static void
test_raw_bytes(void **state)
{
	static const char in[] = "BDAT 9\r\nab\r\n\0.\r\nzNOOP\r\n"
	    "BDAT 1\r\nQQUIT\r\n";
	static const char want[] = "BDAT 9\nab\r\n\0.\r\nz|NOOP\n"
	    "BDAT 1\nQ|QUIT\n";
	size_t k, len = sizeof(in) - 1;

	(void)state;
	for (k = 0; k <= len; k++) {
		struct event_base *base = event_base_new();
		struct side s;
		int sv[2];

		side_init(&s, base);
		mkpair(sv);
		s.c = conn_new(base, sv[0], &bdat_cb, &s);
		raw_write(sv[1], in, k);
		pump(base);
		raw_write(sv[1], in + k, len - k);
		pump(base);
		assert_int_equal(s.log.len, sizeof(want) - 1);
		assert_memory_equal(s.log.data, want, sizeof(want) - 1);
		side_free(&s);
		close(sv[1]);
		event_base_free(base);
	}
}

/* A fixed-seed generator: the same "random" splits on every run. */
static uint32_t
rnd(uint32_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}

static void bulk_init(void);
static char *bulk_stream;
static char *bulk_lines;

/* The bulk stream in random pieces, with the line limit just above it. */
static void
test_lines_random(void **state)
{
	uint32_t seed = 20261121;
	int iter;

	(void)state;
	bulk_init();
	for (iter = 0; iter < 20; iter++) {
		struct event_base *base = event_base_new();
		struct side s;
		struct buf back;
		size_t len = strlen(bulk_stream), off, n;
		int sv[2];

		side_init(&s, base);
		s.echo = 1;
		mkpair(sv);
		s.c = conn_new(base, sv[0], &lines_cb, &s);
		conn_set_line_limit(s.c, 700, 0);	/* BULK_LEN */
		buf_init(&back, BUF_UNBOUNDED);
		for (off = 0; off < len; off += n) {
			n = 1 + rnd(&seed) % (iter < 10 ? 40 : 3000);
			if (n > len - off)
				n = len - off;
			raw_write(sv[1], bulk_stream + off, n);
			pump(base);
			/* Keep the echo from filling the socket. */
			raw_read_avail(sv[1], &back, 0);
		}
		shutdown(sv[1], SHUT_WR);
		run_until(base, &s.closed);
		raw_read_avail(sv[1], &back, 1);
		assert_string_equal(side_log(&s), bulk_lines);
		assert_int_equal(back.len, len);
		assert_memory_equal(back.data, bulk_stream, len);
		buf_free(&back);
		side_free(&s);
		close(sv[1]);
		event_base_free(base);
	}
}

/* ---- STARTTLS and TLS ---- */

#define ROLE_PLAIN 0
#define ROLE_INJECT 1		/* server: inject a reply before TLS */
#define ROLE_OPP 2		/* client: opportunistic context */
#define ROLE_COMPRESS 3		/* bulk client: COMPRESS first */

/* A tiny server: STARTTLS, CHECK, NOOP, QUIT. */
static void
on_input_server(struct conn *c, void *arg)
{
	struct side *s = arg;
	const char *line, *err = NULL;
	size_t len, in, out;
	int r;

	conn_buffer_sizes(c, &in, &out);
	if (in > s->max_in)
		s->max_in = in;
	while ((r = conn_read_line(c, &line, &len)) != CONN_MORE) {
		if (r == CONN_LINE_TOO_LONG) {
			side_record(s, "!LONG", 5);
			continue;
		}
		side_record(s, line, len);
		if (!conn_is_tls(c) && strcmp(line, "STARTTLS") == 0) {
			conn_printf(c, "220 ready\r\n");
			if (s->role == ROLE_INJECT)
				conn_printf(c, "250 injected\r\n");
			if (srv_starttls(c, server_ctx, &s->discarded,
			    &err) != 0)
				fail_msg("conn_starttls: %s", err);
			/* Nothing sent in the clear is left to read. */
			assert_int_equal(conn_read_line(c, &line, &len),
			    CONN_MORE);
			/* And TLS cannot start twice. */
			assert_int_equal(srv_starttls(c, server_ctx, NULL,
			    &err), -1);
			return;
		}
		if (strcmp(line, "COMPRESS") == 0) {
			conn_printf(c, "OK\r\n");
			if (conn_compress(c, &err) != 0)
				fail_msg("conn_compress: %s", err);
			assert_int_equal(conn_compressing(c), 1);
			assert_int_equal(conn_compress(c, &err), -1);
			continue;
		}
		if (strcmp(line, "CHECK") == 0)
			conn_printf(c, "OK %s\r\n", conn_tls_version(c));
		else if (strcmp(line, "NOOP") == 0)
			conn_printf(c, "250 noop\r\n");
		else if (strcmp(line, "QUIT") == 0) {
			conn_printf(c, "BYE\r\n");
			conn_close(c);
			return;
		} else if (s->echo) {
			conn_write(c, line, len);
			conn_write(c, "\r\n", 2);
		}
	}
}

static const struct conn_callbacks server_cb = {
	.on_input = on_input_server,
	.on_tls = on_tls,
	.on_close = on_close,
};

static void
on_input_client(struct conn *c, void *arg)
{
	struct side *s = arg;
	const char *line, *err = NULL;
	size_t len;

	while (conn_read_line(c, &line, &len) == CONN_LINE_OK) {
		side_record(s, line, len);
		if (!conn_is_tls(c) && strncmp(line, "220", 3) == 0) {
			if (conn_starttls_client(c, s->role == ROLE_OPP
			    ? client_opp_ctx : client_ctx, "localhost",
			    &s->discarded, &err) != 0)
				fail_msg("conn_starttls_client: %s", err);
			return;
		}
		if (strncmp(line, "OK", 2) == 0)
			conn_printf(c, "QUIT\r\n");
		s->count++;
	}
}

static void
on_tls_client(struct conn *c, void *arg)
{
	on_tls(c, arg);
	conn_printf(c, "CHECK\r\n");
}

static const struct conn_callbacks client_cb = {
	.on_input = on_input_client,
	.on_tls = on_tls_client,
	.on_close = on_close,
};

/*
 * CVE-2011-0411: "STARTTLS\r\nNOOP\r\n" in one packet.  The NOOP must be
 * discarded (and counted), never answered inside TLS; likewise a reply
 * the server injects after its "220" is discarded by the client.
 */
static void
test_starttls_injection(void **state)
{
	int inject;

	(void)state;
	for (inject = 0; inject < 2; inject++) {
		struct event_base *base = event_base_new();
		struct side srv, cli;
		int sv[2];

		side_init(&srv, base);
		side_init(&cli, base);
		srv.role = inject ? ROLE_INJECT : ROLE_PLAIN;
		mkpair(sv);
		srv.c = conn_new(base, sv[0], &server_cb, &srv);
		cli.c = conn_new(base, sv[1], &client_cb, &cli);
		assert_int_equal(conn_write(cli.c, "STARTTLS\r\nNOOP\r\n", 16),
		    0);
		run_until2(base, &srv.closed, &cli.closed);
		assert_string_equal(side_log(&srv), "STARTTLS\nCHECK\nQUIT\n");
		assert_int_equal(srv.discarded, 6);
		assert_string_equal(side_log(&cli),
		    "220 ready\nOK TLSv1.3\nBYE\n");
		assert_int_equal(cli.discarded, inject ? 14 : 0);
		assert_int_equal(cli.tls_done, 1);
		assert_int_equal(srv.tls_done, 1);
		assert_int_equal(cli.verified, 1);
		assert_int_equal(srv.why, CONN_CLOSE_LOCAL);
		assert_int_equal(cli.why, CONN_CLOSE_EOF);
		side_free(&srv);
		side_free(&cli);
		event_base_free(base);
	}
}

/* Implicit TLS both ways; host name checks in both client modes. */
static void
test_tls_implicit(void **state)
{
	static const struct {
		const char *host;
		int opp;
		int ok;
		int verified;
		const char *why;	/* substring of the error or verify text */
	} cases[] = {
		{ "localhost", 0, 1, 1, "" },
		{ "127.0.0.1", 0, 1, 1, "" },
		{ NULL, 0, 1, 1, "" },
		{ "wrong.example", 0, 0, 0, "hostname mismatch" },
		{ "wrong.example", 1, 1, 0, "hostname mismatch" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct event_base *base = event_base_new();
		struct side srv, cli;
		const char *err = NULL;
		int sv[2];

		side_init(&srv, base);
		side_init(&cli, base);
		mkpair(sv);
		srv.c = conn_new(base, sv[0], &server_cb, &srv);
		cli.c = conn_new(base, sv[1], &client_cb, &cli);
		assert_int_equal(srv_starttls(srv.c, server_ctx, NULL, &err),
		    0);
		assert_int_equal(conn_is_tls(srv.c), 1);
		assert_int_equal(conn_tls_ready(srv.c), 0);
		assert_int_equal(conn_starttls_client(cli.c, cases[i].opp
		    ? client_opp_ctx : client_ctx, cases[i].host, NULL, &err),
		    0);
		run_until2(base, &srv.closed, &cli.closed);
		if (cases[i].ok) {
			assert_string_equal(side_log(&cli),
			    "OK TLSv1.3\nBYE\n");
			assert_int_equal(srv.kept_ssl, !tls_compact);
			assert_int_equal(cli.kept_ssl, 1);
			assert_int_equal(cli.verified, cases[i].verified);
			assert_non_null(strstr(cli.verify_error,
			    cases[i].why));
			assert_int_equal(cli.why, CONN_CLOSE_EOF);
		} else {
			assert_int_equal(cli.tls_done, 0);
			assert_int_equal(cli.why, CONN_CLOSE_TLS);
			if (strstr(cli.error, cases[i].why) == NULL)
				fail_msg("error \"%s\"", cli.error);
			assert_int_equal(srv.tls_done, 0);
			assert_int_equal(srv.why, CONN_CLOSE_TLS);
			assert_string_equal(side_log(&srv), "");
		}
		side_free(&srv);
		side_free(&cli);
		event_base_free(base);
	}
}

/* A plaintext client talking to an implicit-TLS server: a TLS error. */
static void
test_tls_garbage(void **state)
{
	struct event_base *base = event_base_new();
	struct side srv;
	const char *err;
	int sv[2];

	(void)state;
	side_init(&srv, base);
	mkpair(sv);
	srv.c = conn_new(base, sv[0], &server_cb, &srv);
	assert_int_equal(srv_starttls(srv.c, server_ctx, NULL, &err), 0);
	raw_write_str(sv[1], "EHLO hello\r\n");
	run_until(base, &srv.closed);
	assert_int_equal(srv.why, CONN_CLOSE_TLS);
	assert_true(srv.error[0] != '\0');
	assert_string_equal(side_log(&srv), "");
	side_free(&srv);
	close(sv[1]);
	event_base_free(base);
}

/* ---- bulk echo, plain or TLS, used by the fault tests too ---- */

#define BULK_LINES 40
#define BULK_LEN 700

static void
bulk_init(void)
{
	struct buf a, b;
	int i, j;

	if (bulk_stream != NULL)
		return;
	buf_init(&a, BUF_UNBOUNDED);
	buf_init(&b, BUF_UNBOUNDED);
	for (i = 0; i < BULK_LINES; i++) {
		char line[BULK_LEN + 1];

		snprintf(line, sizeof(line), "%04d ", i);
		for (j = 5; j < BULK_LEN; j++)
			line[j] = (char)('a' + (i * 7 + j) % 26);
		line[BULK_LEN] = '\0';
		/* Short and long lines mixed. */
		if (i % 3 == 1)
			line[5 + i % 11] = '\0';
		assert_int_equal(buf_printf(&a, "%s\r\n", line), 0);
		assert_int_equal(buf_printf(&b, "%s\n", line), 0);
	}
	bulk_stream = buf_steal(&a);
	bulk_lines = buf_steal(&b);
}

/* Client: write the bulk stream once TLS is up; close after all echoes. */
static void
on_tls_bulk(struct conn *c, void *arg)
{
	struct side *s = arg;

	on_tls(c, arg);
	if (s->role == ROLE_COMPRESS)
		conn_printf(c, "COMPRESS\r\n");
	else
		conn_write(c, bulk_stream, strlen(bulk_stream));
}

static void
on_input_bulk_client(struct conn *c, void *arg)
{
	struct side *s = arg;
	const char *line, *err;
	size_t len;

	while (conn_read_line(c, &line, &len) == CONN_LINE_OK) {
		if (s->role == ROLE_COMPRESS && !conn_compressing(c)) {
			assert_string_equal(line, "OK");
			if (conn_compress(c, &err) != 0)
				fail_msg("conn_compress: %s", err);
			/* Compressed from here on, both ways. */
			conn_write(c, bulk_stream, strlen(bulk_stream));
			continue;
		}
		side_record(s, line, len);
		if (++s->count == BULK_LINES)
			conn_close(c);
	}
}

static const struct conn_callbacks bulk_client_cb = {
	.on_input = on_input_bulk_client,
	.on_tls = on_tls_bulk,
	.on_close = on_close,
};

/* 1 if a is a prefix of b that ends at a line boundary. */
static int
line_prefix(const char *a, const char *b)
{
	size_t n = strlen(a);

	return strncmp(a, b, n) == 0 && (n == 0 || a[n - 1] == '\n');
}

/*
 * One TLS echo session between a server and a client conn.  Returns 1
 * if the whole stream went both ways, 0 if it stopped early (a reset);
 * either way nothing is duplicated or merged.
 */
static int
tls_bulk_session(int small_buffers, int resets, int compress)
{
	struct event_base *base = event_base_new();
	struct side srv, cli;
	const char *err;
	int sv[2], done, sz = 2048;

	bulk_init();
	side_init(&srv, base);
	side_init(&cli, base);
	srv.echo = 1;
	if (compress)
		cli.role = ROLE_COMPRESS;
	mkpair(sv);
	if (small_buffers) {
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	srv.c = conn_new(base, sv[0], &server_cb, &srv);
	cli.c = conn_new(base, sv[1], &bulk_client_cb, &cli);
	assert_int_equal(srv_starttls(srv.c, server_ctx, NULL, &err), 0);
	assert_int_equal(conn_starttls_client(cli.c, client_ctx, "localhost",
	    NULL, &err), 0);
	run_until2(base, &srv.closed, &cli.closed);
	if (compress && strncmp(side_log(&srv), "COMPRESS\n", 9) == 0) {
		/* Compare what came after the COMPRESS command. */
		buf_consume(&srv.log, 9);
	}
	assert_true(line_prefix(side_log(&srv), bulk_lines));
	assert_true(line_prefix(side_log(&cli), side_log(&srv)));
	done = strcmp(side_log(&cli), bulk_lines) == 0;
	if (done && !resets) {
		assert_string_equal(side_log(&srv), bulk_lines);
		assert_int_equal(cli.why, CONN_CLOSE_LOCAL);
		assert_int_equal(srv.why, CONN_CLOSE_EOF);
	} else if (done) {
		/* A reset may still hit the goodbyes. */
		assert_string_equal(side_log(&srv), bulk_lines);
		assert_true(cli.why == CONN_CLOSE_LOCAL
		    || cli.why == CONN_CLOSE_RESET);
		assert_true(srv.why == CONN_CLOSE_EOF
		    || srv.why == CONN_CLOSE_RESET);
	} else {
		/* Somebody saw the reset; nobody hangs. */
		if (cli.why != CONN_CLOSE_RESET && srv.why != CONN_CLOSE_RESET)
			fail_msg("stopped early without a reset: client %s "
			    "(%s) server %s (%s)", conn_close_reason_str(cli.why),
			    cli.error, conn_close_reason_str(srv.why),
			    srv.error);
	}
	side_free(&srv);
	side_free(&cli);
	event_base_free(base);
	return done;
}

static void
test_tls_bulk(void **state)
{
	(void)state;
	assert_int_equal(tls_bulk_session(0, 0, 0), 1);
	assert_int_equal(tls_bulk_session(1, 0, 0), 1);
	assert_int_equal(tls_bulk_session(0, 0, 1), 1);
	assert_int_equal(tls_bulk_session(1, 0, 1), 1);
}

/* ---- a large answer produced in slices from on_drain ---- */

#define PRODUCE_TOTAL (3 * 1024 * 1024 + 17)
#define PRODUCE_SLICE 16384
#define PRODUCE_MAX (64 * 1024)

static uint8_t
produce_byte(size_t i)
{
	return (uint8_t)(i * 131 + (i >> 12));
}

/* Queue slices while the queue is short; the rest waits for on_drain. */
static void
produce(struct conn *c, struct side *s)
{
	uint8_t slice[PRODUCE_SLICE];
	size_t n, i;

	while (s->want_bytes > 0 && conn_output_len(c) < PRODUCE_MAX / 2) {
		n = s->want_bytes < sizeof(slice) ? s->want_bytes
		    : sizeof(slice);
		for (i = 0; i < n; i++)
			slice[i] = produce_byte(PRODUCE_TOTAL - s->want_bytes
			    + i);
		assert_int_equal(conn_write(c, slice, n), 0);
		s->want_bytes -= n;
	}
}

static void
on_input_producer(struct conn *c, void *arg)
{
	struct side *s = arg;
	const char *line;
	size_t len;

	while (conn_read_line(c, &line, &len) == CONN_LINE_OK) {
		side_record(s, line, len);
		s->want_bytes = PRODUCE_TOTAL;
		produce(c, s);
	}
}

static void
on_drain_producer(struct conn *c, void *arg)
{
	struct side *s = arg;

	s->drains++;
	produce(c, s);
}

static const struct conn_callbacks producer_cb = {
	.on_input = on_input_producer,
	.on_drain = on_drain_producer,
	.on_close = on_close,
};

/* The consumer checks every byte with conn_input()/conn_consume(). */
static void
on_input_consumer(struct conn *c, void *arg)
{
	struct side *s = arg;
	const uint8_t *p;
	size_t n, i;

	n = conn_input(c, &p);
	for (i = 0; i < n; i++)
		if (p[i] != produce_byte(s->want_bytes + i))
			fail_msg("byte %zu differs", s->want_bytes + i);
	conn_consume(c, n);
	s->want_bytes += n;
	if (s->want_bytes == PRODUCE_TOTAL)
		conn_close(c);
}

static void
on_tls_consumer(struct conn *c, void *arg)
{
	on_tls(c, arg);
	conn_printf(c, "GET\r\n");
}

static const struct conn_callbacks consumer_cb = {
	.on_input = on_input_consumer,
	.on_tls = on_tls_consumer,
	.on_close = on_close,
};

static void
test_drain_producer(void **state)
{
	int tls;

	(void)state;
	for (tls = 0; tls < 2; tls++) {
		struct event_base *base = event_base_new();
		struct side srv, cli;
		const char *err;
		int sv[2];

		side_init(&srv, base);
		side_init(&cli, base);
		mkpair(sv);
		srv.c = conn_new(base, sv[0], &producer_cb, &srv);
		cli.c = conn_new(base, sv[1], &consumer_cb, &cli);
		conn_set_output_max(srv.c, PRODUCE_MAX);
		if (tls) {
			assert_int_equal(srv_starttls(srv.c, server_ctx, NULL,
			    &err), 0);
			assert_int_equal(conn_starttls_client(cli.c,
			    client_ctx, "localhost", NULL, &err), 0);
		} else
			assert_int_equal(conn_printf(cli.c, "GET\r\n"), 0);
		run_until2(base, &srv.closed, &cli.closed);
		assert_int_equal(cli.want_bytes, PRODUCE_TOTAL);
		assert_int_equal(srv.want_bytes, 0);
		assert_int_equal(cli.why, CONN_CLOSE_LOCAL);
		assert_int_equal(srv.why, CONN_CLOSE_EOF);
		assert_true(srv.drains > 1);
		assert_string_equal(side_log(&srv), "GET\n");
		side_free(&srv);
		side_free(&cli);
		event_base_free(base);
	}
}

/* ---- COMPRESS=DEFLATE against a raw zlib peer ---- */

/* Raw deflate of data with a sync flush, as an RFC 4978 client sends. */
static void
zdeflate(z_stream *zs, const void *data, size_t len, struct buf *out)
{
	uint8_t tmp[4096];

	zs->next_in = (Bytef *)(uintptr_t)data;
	zs->avail_in = (uInt)len;
	do {
		zs->next_out = tmp;
		zs->avail_out = sizeof(tmp);
		assert_true(deflate(zs, Z_SYNC_FLUSH) != Z_STREAM_ERROR);
		assert_int_equal(buf_append(out, tmp, sizeof(tmp)
		    - zs->avail_out), 0);
	} while (zs->avail_out == 0);
}

static void
zinflate_all(const uint8_t *data, size_t len, struct buf *out)
{
	z_stream zs;
	uint8_t tmp[4096];
	int r;

	memset(&zs, 0, sizeof(zs));
	assert_int_equal(inflateInit2(&zs, -15), Z_OK);
	zs.next_in = (Bytef *)(uintptr_t)data;
	zs.avail_in = (uInt)len;
	do {
		zs.next_out = tmp;
		zs.avail_out = sizeof(tmp);
		r = inflate(&zs, Z_SYNC_FLUSH);
		assert_true(r == Z_OK || r == Z_BUF_ERROR);
		assert_int_equal(buf_append(out, tmp, sizeof(tmp)
		    - zs.avail_out), 0);
	} while (zs.avail_out == 0 || zs.avail_in > 0);
	inflateEnd(&zs);
}

/*
 * "COMPRESS" and compressed commands pipelined in one packet, then the
 * compressed part cut at every byte: the server inflates everything after
 * the command line, and its echo inflates back to the commands.
 */
static void
test_compress(void **state)
{
	static const char cmds[] = "A1 NOOP\r\nA2 SELECT \"INBOX\"\r\n"
	    "A3 LOGOUT\r\n";
	struct buf z;
	z_stream zs;
	size_t k;

	(void)state;
	buf_init(&z, BUF_UNBOUNDED);
	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY), Z_OK);
	zdeflate(&zs, cmds, 10, &z);		/* two flushes: two blocks */
	zdeflate(&zs, cmds + 10, sizeof(cmds) - 11, &z);
	deflateEnd(&zs);
	for (k = 0; k <= z.len; k++) {
		struct event_base *base = event_base_new();
		struct side s;
		struct buf back, plain;
		int sv[2];

		side_init(&s, base);
		s.echo = 1;
		mkpair(sv);
		s.c = conn_new(base, sv[0], &server_cb, &s);
		raw_write_str(sv[1], "COMPRESS\r\n");
		raw_write(sv[1], z.data, k);
		pump(base);
		raw_write(sv[1], z.data + k, z.len - k);
		pump(base);
		assert_string_equal(side_log(&s), "COMPRESS\nA1 NOOP\n"
		    "A2 SELECT \"INBOX\"\nA3 LOGOUT\n");
		shutdown(sv[1], SHUT_WR);
		run_until(base, &s.closed);
		assert_int_equal(s.why, CONN_CLOSE_EOF);
		buf_init(&back, BUF_UNBOUNDED);
		buf_init(&plain, BUF_UNBOUNDED);
		raw_read_avail(sv[1], &back, 1);
		/* The OK is in the clear, the rest compressed. */
		assert_true(back.len > 4);
		assert_memory_equal(back.data, "OK\r\n", 4);
		zinflate_all(back.data + 4, back.len - 4, &plain);
		assert_int_equal(plain.len, sizeof(cmds) - 1);
		assert_memory_equal(plain.data, cmds, plain.len);
		buf_free(&back);
		buf_free(&plain);
		side_free(&s);
		close(sv[1]);
		event_base_free(base);
	}
	buf_free(&z);
}

/*
 * A compression bomb (4 MiB of one byte in a few KiB) never makes the
 * input buffer grow past its limit; bad compressed data closes.
 */
static void
test_compress_hostile(void **state)
{
	struct event_base *base = event_base_new();
	struct side s;
	struct buf z;
	z_stream zs;
	char *big;
	size_t sent;
	int sv[2];

	(void)state;
	big = xmalloc(4 * 1024 * 1024);
	memset(big, 'a', 4 * 1024 * 1024);
	buf_init(&z, BUF_UNBOUNDED);
	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, -15, 8,
	    Z_DEFAULT_STRATEGY), Z_OK);
	zdeflate(&zs, big, 4 * 1024 * 1024, &z);
	zdeflate(&zs, "\r\nNOOP\r\n", 8, &z);
	deflateEnd(&zs);
	assert_true(z.len < 16 * 1024);

	side_init(&s, base);
	mkpair(sv);
	s.c = conn_new(base, sv[0], &server_cb, &s);
	conn_set_line_limit(s.c, 100, 0);
	raw_write_str(sv[1], "COMPRESS\r\n");
	for (sent = 0; sent < z.len; sent += 512) {
		raw_write(sv[1], z.data + sent, z.len - sent < 512
		    ? z.len - sent : 512);
		pump(base);
	}
	pump(base);
	assert_string_equal(side_log(&s), "COMPRESS\n!LONG\nNOOP\n");
	printf("# 4 MiB bomb: input buffer peaked at %zu bytes\n", s.max_in);
	assert_true(s.max_in > 0);
	assert_true(s.max_in <= CONN_READ_CHUNK + 1);	/* limit + NUL */
	side_free(&s);
	close(sv[1]);

	/* Reserved block type 3: not deflate. */
	side_init(&s, base);
	mkpair(sv);
	s.c = conn_new(base, sv[0], &server_cb, &s);
	raw_write_str(sv[1], "COMPRESS\r\n\xff\xff\xff\xff");
	run_until(base, &s.closed);
	assert_int_equal(s.why, CONN_CLOSE_DEFLATE);
	assert_true(s.error[0] != '\0');
	side_free(&s);
	close(sv[1]);
	event_base_free(base);
	buf_free(&z);
	free(big);
}

/* ---- memory of idle connections ---- */

static size_t
heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks;
}

/*
 * An idle connection holds neither input nor output buffer, plain or
 * TLS, and a partial line is the only thing kept.  Prints what a conn and
 * an idle TLS connection cost.
 */
static void
test_idle_buffers(void **state)
{
	struct event_base *base = event_base_new();
	struct side a, srv, cli;
	size_t in, out, h0, h1, o0, o1;
	const char *err;
	struct conn *probe;
	int sv[2], tv[2];

	(void)state;
	/* What conn_new allocates. */
	mkpair(sv);
	h0 = heap_used();
	probe = conn_new(base, sv[0], &lines_cb, &a);
	h1 = heap_used();
	printf("# conn_new: %zu bytes of heap per connection\n", h1 - h0);
	conn_free(probe);
	close(sv[1]);

	side_init(&a, base);
	a.echo = 1;
	mkpair(sv);
	a.c = conn_new(base, sv[0], &lines_cb, &a);
	conn_buffer_sizes(a.c, &in, &out);
	assert_int_equal(in, 0);
	assert_int_equal(out, 0);
	raw_write_str(sv[1], "partial");
	pump(base);
	conn_buffer_sizes(a.c, &in, &out);
	assert_true(in > 0);
	raw_write_str(sv[1], " line\r\n");
	pump(base);
	assert_string_equal(side_log(&a), "partial line\n");
	conn_buffer_sizes(a.c, &in, &out);
	assert_int_equal(in, 0);
	assert_int_equal(out, 0);
	/* Output queued and not yet flushed holds a buffer... */
	assert_int_equal(conn_write(a.c, "x\r\n", 3), 0);
	conn_buffer_sizes(a.c, &in, &out);
	assert_true(out > 0);
	assert_int_equal(conn_output_len(a.c), 3);
	/* ...until the loop has sent it. */
	pump(base);
	conn_buffer_sizes(a.c, &in, &out);
	assert_int_equal(out, 0);
	assert_int_equal(conn_output_len(a.c), 0);
	side_free(&a);
	close(sv[1]);

	/* TLS: after the handshake and a command, idle again. */
	side_init(&srv, base);
	side_init(&cli, base);
	mkpair(tv);
	o0 = ossl_live;
	srv.c = conn_new(base, tv[0], &server_cb, &srv);
	cli.c = conn_new(base, tv[1], &lines_cb, &cli);
	assert_int_equal(srv_starttls(srv.c, server_ctx, NULL, &err), 0);
	assert_int_equal(conn_starttls_client(cli.c, client_ctx, "localhost",
	    NULL, &err), 0);
	run_until2(base, &srv.tls_done, &cli.tls_done);
	assert_int_equal(conn_write(cli.c, "NOOP\r\n", 6), 0);
	while (strcmp(side_log(&cli), "250 noop\n") != 0) {
		assert_int_equal(cli.closed, 0);
		event_base_loop(base, EVLOOP_ONCE);
	}
	pump(base);
	conn_buffer_sizes(srv.c, &in, &out);
	assert_int_equal(in, 0);
	assert_int_equal(out, 0);
	conn_buffer_sizes(cli.c, &in, &out);
	assert_int_equal(in, 0);
	assert_int_equal(out, 0);
	o1 = ossl_live;
	if (tls_compact)
		assert_null(conn_ssl(srv.c));
	side_free(&cli);
	printf("# idle TLS 1.3 connections%s: server side %zu bytes of OpenSSL "
	    "heap, client side %zu\n", tls_compact ? " (compact)" : "",
	    ossl_live - o0, o1 - ossl_live);
	/*
	 * Handed over, the server keeps nothing of OpenSSL's per connection
	 * (what may appear is shared: the thread's AEAD context, caches).
	 */
	if (tls_compact)
		assert_true(ossl_live - o0 < 1024);
	side_free(&srv);
	/* Nothing stays behind per connection (no server session cache). */
	assert_int_equal(ossl_live, o0);
	event_base_free(base);
}

/* ---- the compact record layer (lib/tls13.c) ---- */

/* A server and a client conn through the handshake; cctx for the client. */
static void
tls_pair(struct event_base *base, struct side *srv, struct side *cli,
    SSL_CTX *cctx, int sv[2])
{
	const char *err;

	side_init(srv, base);
	side_init(cli, base);
	srv->echo = 1;
	mkpair(sv);
	srv->c = conn_new(base, sv[0], &server_cb, srv);
	cli->c = conn_new(base, sv[1], &lines_cb, cli);
	assert_int_equal(srv_starttls(srv->c, server_ctx, NULL, &err), 0);
	assert_int_equal(conn_starttls_client(cli->c, cctx, "localhost",
	    NULL, &err), 0);
	run_until2(base, &srv->tls_done, &cli->tls_done);
}

/* Send line, wait for its echo as the client's last line. */
static void
echo_line(struct event_base *base, struct side *cli, const char *line)
{
	char want[300];
	size_t n;

	snprintf(want, sizeof(want), "%s\n", line);
	n = strlen(want);
	assert_int_equal(conn_printf(cli->c, "%s\r\n", line), 0);
	while (cli->log.len < n || memcmp(cli->log.data + cli->log.len - n,
	    want, n) != 0) {
		if (cli->closed)
			fail_msg("closed waiting for \"%s\": %s", line,
			    cli->error);
		event_base_loop(base, EVLOOP_ONCE);
	}
}

/* Each suite OpenSSL offers, and TLS 1.2 (which stays with OpenSSL). */
static void
test_tls13_suites(void **state)
{
	static const char *suites[] = {
		"TLS_AES_128_GCM_SHA256",
		"TLS_AES_256_GCM_SHA384",
		"TLS_CHACHA20_POLY1305_SHA256",
		NULL,			/* TLS 1.2 */
	};
	char line[256];
	size_t i, k;

	(void)state;
	for (i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		struct event_base *base = event_base_new();
		struct side srv, cli;
		struct tls_settings ts;
		SSL_CTX *cctx;
		const char *err;
		int sv[2];

		tls_settings_default(&ts);
		ts.ca_file = cert_path;
		assert_int_equal(tls_client_ctx_new(&ts, TLS_VERIFY_REQUIRE,
		    &cctx, &err), 0);
		if (suites[i] != NULL)
			assert_int_equal(SSL_CTX_set_ciphersuites(cctx,
			    suites[i]), 1);
		else
			assert_int_equal(SSL_CTX_set_max_proto_version(cctx,
			    TLS1_2_VERSION), 1);
		tls_pair(base, &srv, &cli, cctx, sv);
		assert_int_equal(srv.kept_ssl, suites[i] == NULL);
		assert_string_equal(conn_tls_version(srv.c),
		    suites[i] != NULL ? "TLSv1.3" : "TLSv1.2");
		if (suites[i] != NULL)
			assert_string_equal(conn_tls_cipher(srv.c), suites[i]);
		/* Many records each way, the same AEAD context reused. */
		for (k = 0; k < 50; k++) {
			memset(line, 'a' + (int)(k % 26), sizeof(line));
			snprintf(line, 40, "line %zu ", k);
			line[strlen(line)] = 'x';
			line[(k * 7) % 200 + 20] = '\0';
			echo_line(base, &cli, line);
		}
		conn_close(cli.c);
		run_until2(base, &srv.closed, &cli.closed);
		assert_int_equal(srv.why, CONN_CLOSE_EOF);
		side_free(&srv);
		side_free(&cli);
		SSL_CTX_free(cctx);
		event_base_free(base);
	}
}

/*
 * KeyUpdate from the client, with and without update_requested, between
 * lines; then more KeyUpdates in a row than TLS13_IDLE_RECORDS allows.
 */
static void
test_tls13_key_update(void **state)
{
	struct event_base *base = event_base_new();
	struct side srv, cli;
	char line[64];
	SSL *ssl;
	int sv[2], i;

	(void)state;
	tls_pair(base, &srv, &cli, client_ctx, sv);
	assert_int_equal(srv.kept_ssl, 0);
	ssl = conn_ssl(cli.c);
	assert_non_null(ssl);
	for (i = 0; i < 40; i++) {
		assert_int_equal(SSL_key_update(ssl, i % 2
		    ? SSL_KEY_UPDATE_REQUESTED
		    : SSL_KEY_UPDATE_NOT_REQUESTED), 1);
		snprintf(line, sizeof(line), "after key update %d", i);
		echo_line(base, &cli, line);
	}
	for (i = 0; i < 40 && !srv.closed; i++) {
		assert_int_equal(SSL_key_update(ssl,
		    SSL_KEY_UPDATE_NOT_REQUESTED), 1);
		(void)SSL_do_handshake(ssl);
		pump(base);
	}
	run_until(base, &srv.closed);
	assert_int_equal(srv.why, CONN_CLOSE_TLS);
	assert_string_equal(srv.error, "too many TLS records without data");
	run_until(base, &cli.closed);
	assert_int_equal(cli.why, CONN_CLOSE_TLS);
	assert_non_null(strstr(cli.error, "unexpected message"));
	side_free(&srv);
	side_free(&cli);
	event_base_free(base);
}

/* Raw bytes the client's TLS did not make: each fails the connection. */
static void
test_tls13_hostile(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		const char *srv_error;
		const char *cli_alert;
	} cases[] = {
		{ "\x17\x03\x03\x00\x20" "0123456789abcdef0123456789abcdef",
		  37, "TLS record failed authentication", "bad record mac" },
		{ "\x17\x03\x03\x41\x01", 5, "TLS record too long",
		  "record overflow" },
		{ "\x17\x03\x03\x00\x10" "0123456789abcdef", 21,
		  "TLS record too short", "decode error" },
		{ "\x15\x03\x03\x00\x02\x01\x00", 7,
		  "unprotected TLS record after the handshake",
		  "unexpected message" },
		{ "\x16\x03\x03\x00\x04\x18\x00\x00\x01", 9,
		  "unprotected TLS record after the handshake",
		  "unexpected message" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct event_base *base = event_base_new();
		struct side srv, cli;
		int sv[2];

		tls_pair(base, &srv, &cli, client_ctx, sv);
		assert_int_equal(srv.kept_ssl, 0);
		echo_line(base, &cli, "before");
		raw_write(sv[1], cases[i].bytes, cases[i].len);
		run_until(base, &srv.closed);
		assert_int_equal(srv.why, CONN_CLOSE_TLS);
		assert_string_equal(srv.error, cases[i].srv_error);
		/* The client got the alert RFC 8446 names. */
		run_until(base, &cli.closed);
		if (strstr(cli.error, cases[i].cli_alert) == NULL)
			fail_msg("case %zu: client error \"%s\"", i,
			    cli.error);
		side_free(&srv);
		side_free(&cli);
		event_base_free(base);
	}
}

/* ---- output limits ---- */

static void
test_output_overflow(void **state)
{
	struct event_base *base = event_base_new();
	struct side s;
	char chunk[4096];
	size_t total = 0;
	int sv[2], i, sz = 4096;

	(void)state;
	/* N-1, N, N+1 bytes queued (no loop run: nothing is sent). */
	side_init(&s, base);
	mkpair(sv);
	s.c = conn_new(base, sv[0], &lines_cb, &s);
	conn_set_output_max(s.c, 100);
	memset(chunk, 'o', sizeof(chunk));
	assert_int_equal(conn_write(s.c, chunk, 99), 0);
	assert_int_equal(conn_closing(s.c), 0);
	assert_int_equal(conn_write(s.c, chunk, 1), 0);
	assert_int_equal(conn_output_len(s.c), 100);
	assert_int_equal(conn_printf(s.c, "%c", 'x'), -1);
	assert_int_equal(conn_closing(s.c), 1);
	run_until(base, &s.closed);
	assert_int_equal(s.why, CONN_CLOSE_OUTPUT_OVERFLOW);
	side_free(&s);
	close(sv[1]);

	/* A peer that never reads: the socket fills, then the queue. */
	side_init(&s, base);
	mkpair(sv);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	s.c = conn_new(base, sv[0], &lines_cb, &s);
	conn_set_output_max(s.c, 64 * 1024);
	for (i = 0; i < 10000; i++) {
		if (conn_write(s.c, chunk, sizeof(chunk)) < 0)
			break;
		total += sizeof(chunk);
		pump(base);
	}
	assert_true(i < 10000);
	/* Some of it went into the socket before the queue overflowed. */
	assert_true(total > 64 * 1024);
	run_until(base, &s.closed);
	assert_int_equal(s.why, CONN_CLOSE_OUTPUT_OVERFLOW);
	side_free(&s);
	close(sv[1]);
	event_base_free(base);
}

/* ---- timeouts ---- */

static void
on_timeout_reply(struct conn *c, enum conn_close_reason why, void *arg)
{
	struct side *s = arg;

	s->timeouts++;
	conn_printf(c, "421 %s\r\n", conn_close_reason_str(why));
	/* Closing here too must keep the timeout as the reason. */
	conn_close(c);
}

static const struct conn_callbacks timeout_cb = {
	.on_input = on_input_lines,
	.on_timeout = on_timeout_reply,
	.on_close = on_close,
};

static void
test_timeouts(void **state)
{
	static const struct {
		uint32_t idle, session;
		int reply;
		enum conn_close_reason why;
		const char *peer_gets;
	} cases[] = {
		{ 30, 0, 0, CONN_CLOSE_TIMEOUT_IDLE, "" },
		{ 0, 30, 0, CONN_CLOSE_TIMEOUT_SESSION, "" },
		{ 60000, 30, 0, CONN_CLOSE_TIMEOUT_SESSION, "" },
		{ 30, 60000, 1, CONN_CLOSE_TIMEOUT_IDLE,
		  "421 idle-timeout\r\n" },
		{ 0, 30, 1, CONN_CLOSE_TIMEOUT_SESSION,
		  "421 session-timeout\r\n" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct event_base *base = event_base_new();
		struct side s;
		struct buf back;
		int sv[2];

		side_init(&s, base);
		mkpair(sv);
		s.c = conn_new(base, sv[0], cases[i].reply ? &timeout_cb
		    : &lines_cb, &s);
		conn_set_timeouts(s.c, cases[i].idle, cases[i].session);
		raw_write_str(sv[1], "HELLO\r\n");
		run_until(base, &s.closed);
		assert_int_equal(s.why, cases[i].why);
		assert_int_equal(s.timeouts, cases[i].reply);
		assert_string_equal(side_log(&s), "HELLO\n");
		buf_init(&back, BUF_UNBOUNDED);
		raw_read_avail(sv[1], &back, 1);
		assert_int_equal(back.len, strlen(cases[i].peer_gets));
		if (back.len > 0)
			assert_memory_equal(back.data, cases[i].peer_gets,
			    back.len);
		buf_free(&back);
		side_free(&s);
		close(sv[1]);
		event_base_free(base);
	}
}

/* ---- close, abort, pause from callbacks ---- */

static void
on_input_closer(struct conn *c, void *arg)
{
	struct side *s = arg;
	const char *line;
	size_t len;

	while (conn_read_line(c, &line, &len) == CONN_LINE_OK) {
		side_record(s, line, len);
		if (strcmp(line, "QUIT") == 0) {
			assert_int_equal(conn_printf(c, "221 bye\r\n"), 0);
			conn_close(c);
			conn_close(c);
			assert_int_equal(conn_closing(c), 1);
			/* c stays usable until we return; writes drop. */
			assert_int_equal(conn_write(c, "late\r\n", 6), -1);
			return;
		}
		if (strcmp(line, "ABORT") == 0) {
			conn_printf(c, "never sent\r\n");
			conn_abort(c);
			return;
		}
		if (strcmp(line, "SLOW") == 0) {
			conn_pause_input(c);
			return;
		}
	}
}

static const struct conn_callbacks closer_cb = {
	.on_input = on_input_closer,
	.on_close = on_close,
};

static void
test_close_in_callback(void **state)
{
	static const struct {
		const char *in;
		const char *log;
		const char *peer_gets;
	} cases[] = {
		{ "QUIT\r\nNOOP\r\n", "QUIT\n", "221 bye\r\n" },
		{ "A\r\nABORT\r\nNOOP\r\n", "A\nABORT\n", "" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct event_base *base = event_base_new();
		struct side s;
		struct buf back;
		int sv[2];

		side_init(&s, base);
		mkpair(sv);
		s.c = conn_new(base, sv[0], &closer_cb, &s);
		raw_write_str(sv[1], cases[i].in);
		run_until(base, &s.closed);
		assert_int_equal(s.why, CONN_CLOSE_LOCAL);
		assert_string_equal(side_log(&s), cases[i].log);
		buf_init(&back, BUF_UNBOUNDED);
		raw_read_avail(sv[1], &back, 1);
		assert_int_equal(back.len, strlen(cases[i].peer_gets));
		if (back.len > 0)
			assert_memory_equal(back.data, cases[i].peer_gets,
			    back.len);
		buf_free(&back);
		side_free(&s);
		close(sv[1]);
		event_base_free(base);
	}
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct side *s = arg;

	(void)fd;
	(void)what;
	s->count++;
	conn_resume_input(s->c);
}

/* Paused: buffered lines wait, in order, and an EOF waits too. */
static void
test_pause_resume(void **state)
{
	int eof;

	(void)state;
	for (eof = 0; eof < 2; eof++) {
		struct event_base *base = event_base_new();
		struct event *ev;
		struct timeval tv = { 0, 10000 };
		struct side s;
		int sv[2];

		side_init(&s, base);
		mkpair(sv);
		s.c = conn_new(base, sv[0], &closer_cb, &s);
		raw_write_str(sv[1], "SLOW\r\nA\r\nB\r\n");
		pump(base);
		assert_string_equal(side_log(&s), "SLOW\n");
		raw_write_str(sv[1], "C\r\n");
		if (eof)
			shutdown(sv[1], SHUT_WR);
		pump(base);
		assert_string_equal(side_log(&s), "SLOW\n");
		assert_int_equal(s.closed, 0);
		ev = evtimer_new(base, resume_cb, &s);
		evtimer_add(ev, &tv);
		run_until(base, &s.count);
		pump(base);
		assert_string_equal(side_log(&s), "SLOW\nA\nB\nC\n");
		if (eof) {
			run_until(base, &s.closed);
			assert_int_equal(s.why, CONN_CLOSE_EOF);
		} else
			assert_int_equal(s.closed, 0);
		event_free(ev);
		side_free(&s);
		close(sv[1]);
		event_base_free(base);
	}
}

static void
resume_retime_cb(evutil_socket_t fd, short what, void *arg)
{
	struct side *s = arg;

	(void)fd;
	(void)what;
	conn_resume_input(s->c);
	conn_set_timeouts(s->c, 60000, 0);
}

/*
 * A resume defers the buffered input to the loop (event_active on the
 * connection's timer); re-arming that timer in the same turn must not
 * cancel it.  Nothing more arrives on the socket: the buffered line must
 * still come, well before any timeout (2 s guard).
 */
static void
test_resume_then_retime(void **state)
{
	struct event_base *base = event_base_new();
	struct event *ev, *guard;
	struct timeval now = { 0, 0 }, limit = { 2, 0 };
	struct side s;
	int sv[2], expired = 0;

	(void)state;
	side_init(&s, base);
	mkpair(sv);
	s.c = conn_new(base, sv[0], &closer_cb, &s);
	raw_write_str(sv[1], "SLOW\r\nA\r\n");
	pump(base);
	assert_string_equal(side_log(&s), "SLOW\n");
	ev = evtimer_new(base, resume_retime_cb, &s);
	evtimer_add(ev, &now);
	guard = evtimer_new(base, guard_cb, &expired);
	evtimer_add(guard, &limit);
	while (strcmp(side_log(&s), "SLOW\nA\n") != 0 && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	assert_string_equal(side_log(&s), "SLOW\nA\n");
	event_free(guard);
	event_free(ev);
	side_free(&s);
	close(sv[1]);
	event_base_free(base);
}

/* ---- fault injection ---- */

/*
 * A plain echo session under one injected fault: the peer sends the
 * stream in pieces and closes its side.  Returns 1 if the fault was
 * reached.
 */
static int
plain_fault_session(enum conn_fault_op op, unsigned long n,
    enum conn_fault fault)
{
	struct event_base *base = event_base_new();
	struct side s;
	struct buf back;
	size_t i, len = sizeof(stream) - 1;
	int sv[2], hit;

	conn_fault_reset();
	conn_fault_inject(op, n, fault);
	side_init(&s, base);
	s.echo = 1;
	mkpair(sv);
	s.c = conn_new(base, sv[0], &lines_cb, &s);
	/* In 13-byte pieces: lines split at many points. */
	for (i = 0; i < len; i += 13) {
		raw_write_try(sv[1], stream + i, len - i < 13 ? len - i : 13);
		pump(base);
	}
	shutdown(sv[1], SHUT_WR);
	run_until(base, &s.closed);
	hit = conn_fault_count(op) > n;
	conn_fault_reset();
	buf_init(&back, BUF_UNBOUNDED);
	raw_read_avail(sv[1], &back, 1);
	assert_int_equal(buf_append_byte(&back, '\0'), 0);
	if (fault == CONN_FAULT_RESET && hit) {
		assert_int_equal(s.why, CONN_CLOSE_RESET);
		assert_true(line_prefix(side_log(&s), stream_lines));
		/* The echo is a prefix of the stream, never more. */
		assert_int_equal(strncmp((const char *)back.data, stream,
		    back.len - 1), 0);
	} else {
		assert_int_equal(s.why, CONN_CLOSE_EOF);
		assert_string_equal(side_log(&s), stream_lines);
		assert_string_equal((const char *)back.data, stream);
	}
	buf_free(&back);
	side_free(&s);
	close(sv[1]);
	event_base_free(base);
	return hit;
}

static void
test_faults_plain(void **state)
{
	static const enum conn_fault faults[] = {
		CONN_FAULT_EAGAIN, CONN_FAULT_SHORT, CONN_FAULT_RESET,
	};
	size_t f;
	int op;
	unsigned long n, sessions = 0;

	(void)state;
	for (f = 0; f < sizeof(faults) / sizeof(faults[0]); f++)
		for (op = CONN_FAULT_READ; op <= CONN_FAULT_WRITE; op++) {
			for (n = 0; plain_fault_session(op, n, faults[f]);
			    n++)
				assert_true(n < 10000);
			/* The fault was reached at least once. */
			assert_true(n > 0);
			sessions += n + 1;
		}
	printf("# %lu plain sessions, each with one fault\n", sessions);
}

/* The same under TLS: faults hit the handshake and the records. */
static void
test_faults_tls(void **state)
{
	static const enum conn_fault faults[] = {
		CONN_FAULT_EAGAIN, CONN_FAULT_SHORT, CONN_FAULT_RESET,
	};
	size_t f;
	int op, done;
	unsigned long n, reached, sessions = 0;

	(void)state;
	for (f = 0; f < sizeof(faults) / sizeof(faults[0]); f++)
		for (op = CONN_FAULT_READ; op <= CONN_FAULT_WRITE; op++) {
			for (n = 0;; n++) {
				conn_fault_reset();
				conn_fault_inject(op, n, faults[f]);
				done = tls_bulk_session(0,
				    faults[f] == CONN_FAULT_RESET, op == 1);
				sessions++;
				reached = conn_fault_count(op);
				conn_fault_reset();
				if (faults[f] != CONN_FAULT_RESET || reached <= n)
					assert_int_equal(done, 1);
				if (reached <= n)
					break;
				assert_true(n < 10000);
			}
			assert_true(n > 0);
		}
	printf("# %lu TLS sessions, each with one fault\n", sessions);
}

/* ---- listener ---- */

struct accepted {
	struct event_base *base;
	struct side s;
	int n;
};

static void
on_accept(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	struct accepted *a = arg;

	assert_int_equal(sa->sa_family, AF_INET);
	assert_true(salen >= sizeof(struct sockaddr_in));
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	a->n++;
	side_init(&a->s, a->base);
	a->s.echo = 1;
	a->s.c = conn_new(a->base, fd, &lines_cb, &a->s);
}

static int
tcp_connect(uint16_t port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)),
	    0);
	return fd;
}

static void
test_listener(void **state)
{
	struct event_base *base = event_base_new();
	struct conn_listener *l;
	struct accepted a;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	struct rlimit rl, low;
	struct buf back;
	const char *err;
	struct conn *probe;
	uint16_t port;
	int lfd, cfd, spare, pair[2];

	(void)state;
	memset(&a, 0, sizeof(a));
	a.base = base;
	assert_int_equal(conn_listen_tcp("127.0.0.1", "0", &lfd, &err), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &slen), 0);
	port = ntohs(sin.sin_port);
	assert_int_equal(conn_listen_tcp("127.0.0.1", "no-such-service",
	    &spare, &err), -1);
	l = conn_listener_new(base, lfd, on_accept, &a);
	conn_listener_set_pause(l, 20);

	/* A loopback TCP session. */
	cfd = tcp_connect(port);
	raw_write_str(cfd, "HELLO tcp\r\n");
	while (a.n == 0 || strcmp(side_log(&a.s), "HELLO tcp\n") != 0)
		event_base_loop(base, EVLOOP_ONCE);
	shutdown(cfd, SHUT_WR);
	run_until(base, &a.s.closed);
	buf_init(&back, BUF_UNBOUNDED);
	raw_read_avail(cfd, &back, 1);
	assert_int_equal(back.len, 11);
	assert_memory_equal(back.data, "HELLO tcp\r\n", 11);
	buf_free(&back);
	close(cfd);
	side_free(&a.s);

	/* Out of descriptors: accept() pauses, then resumes. */
	cfd = tcp_connect(port);
	spare = dup(0);
	assert_true(spare >= 0);
	close(spare);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	low = rl;
	low.rlim_cur = (rlim_t)spare;	/* the next descriptor fails */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	pump(base);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_int_equal(a.n, 1);
	assert_int_equal(conn_listener_paused(l), 1);
	while (a.n < 2)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(conn_listener_paused(l), 0);
	close(cfd);
	run_until(base, &a.s.closed);
	assert_int_equal(a.s.why, CONN_CLOSE_EOF);
	side_free(&a.s);

	/*
	 * Again with a long pause: freeing any conn gives a descriptor back
	 * and resumes accept() at once (OpenSMTPD does the same).
	 */
	conn_listener_set_pause(l, 3600 * 1000);
	cfd = tcp_connect(port);
	spare = dup(0);
	assert_true(spare >= 0);
	close(spare);
	low.rlim_cur = (rlim_t)spare;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	pump(base);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_int_equal(a.n, 2);
	assert_int_equal(conn_listener_paused(l), 1);
	mkpair(pair);
	probe = conn_new(base, pair[0], &lines_cb, NULL);
	conn_free(probe);
	close(pair[1]);
	assert_int_equal(conn_listener_paused(l), 0);
	while (a.n < 3)
		event_base_loop(base, EVLOOP_ONCE);
	close(cfd);
	run_until(base, &a.s.closed);
	side_free(&a.s);
	conn_listener_free(l);
	event_base_free(base);
}

/* Outbound: a client conn on conn_connect_tcp() to our listener. */
static void
test_connect(void **state)
{
	struct event_base *base = event_base_new();
	struct conn_listener *l;
	struct accepted a;
	struct side cli;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	const char *err;
	char portstr[16];
	int lfd, fd;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.base = base;
	assert_int_equal(conn_listen_tcp("127.0.0.1", "0", &lfd, &err), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &slen), 0);
	snprintf(portstr, sizeof(portstr), "%u", ntohs(sin.sin_port));
	l = conn_listener_new(base, lfd, on_accept, &a);

	/* Names are refused: resolving would block the loop. */
	assert_int_equal(conn_connect_tcp("localhost", portstr, &fd, &err),
	    -1);
	assert_int_equal(conn_connect_tcp("127.0.0.1", portstr, &fd, &err),
	    0);
	side_init(&cli, base);
	cli.c = conn_new(base, fd, &lines_cb, &cli);
	/* The client speaks first, before the connection is even up. */
	assert_int_equal(conn_write(cli.c, "HELLO out\r\n", 11), 0);
	while (strcmp(side_log(&cli), "HELLO out\n") != 0) {
		assert_int_equal(cli.closed, 0);
		event_base_loop(base, EVLOOP_ONCE);
	}
	assert_int_equal(a.n, 1);
	assert_string_equal(side_log(&a.s), "HELLO out\n");
	conn_close(cli.c);
	run_until2(base, &cli.closed, &a.s.closed);
	assert_int_equal(a.s.why, CONN_CLOSE_EOF);
	side_free(&a.s);
	side_free(&cli);
	conn_listener_free(l);

	/* Nobody listens there any more: refused, now or on first I/O. */
	if (conn_connect_tcp("127.0.0.1", portstr, &fd, &err) == 0) {
		side_init(&cli, base);
		cli.c = conn_new(base, fd, &lines_cb, &cli);
		run_until(base, &cli.closed);
		assert_int_equal(cli.why, CONN_CLOSE_RESET);
		err = cli.error;
		side_free(&cli);
	}
	if (strstr(err, "refused") == NULL)
		fail_msg("error \"%s\"", err);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_split),
		cmocka_unit_test(test_hold_output),
		cmocka_unit_test(test_lines_bytewise),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_line_flood),
		cmocka_unit_test(test_bare_lf),
		cmocka_unit_test(test_raw_bytes),
		cmocka_unit_test(test_lines_random),
		cmocka_unit_test(test_starttls_injection),
		cmocka_unit_test(test_tls_implicit),
		cmocka_unit_test(test_tls_garbage),
		cmocka_unit_test(test_tls_bulk),
		cmocka_unit_test(test_drain_producer),
		cmocka_unit_test(test_compress),
		cmocka_unit_test(test_compress_hostile),
		cmocka_unit_test(test_idle_buffers),
		cmocka_unit_test(test_output_overflow),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_close_in_callback),
		cmocka_unit_test(test_pause_resume),
		cmocka_unit_test(test_resume_then_retime),
		cmocka_unit_test(test_faults_plain),
		cmocka_unit_test(test_faults_tls),
		cmocka_unit_test(test_listener),
		cmocka_unit_test(test_connect),
		/* Again, every server connection handed to lib/tls13.c. */
		COMPACT(test_starttls_injection),
		COMPACT(test_tls_implicit),
		COMPACT(test_tls_garbage),
		COMPACT(test_tls_bulk),
		COMPACT(test_drain_producer),
		COMPACT(test_compress),
		COMPACT(test_compress_hostile),
		COMPACT(test_idle_buffers),
		COMPACT(test_faults_tls),
		COMPACT(test_tls13_suites),
		COMPACT(test_tls13_key_update),
		COMPACT(test_tls13_hostile),
	};

	/* Like the daemons: a peer gone away is an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	/* Before OpenSSL allocates anything: count its heap. */
	CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free);
	return cmocka_run_group_tests_name("conn", tests, setup, teardown);
}
