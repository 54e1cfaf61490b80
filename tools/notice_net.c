/*
 * notice_net.c - govmail-notice's network clients: a blocking SMTP
 * submission client (STARTTLS or implicit TLS with the server's
 * certificate checked, AUTH PLAIN, PIPELINING) and, through libcurl, the
 * GETs of certificates from the CA repository (kept-alive connections).
 *
 * Runs in govmail-notice (one connection per sending process: blocking
 * I/O with socket timeouts is simplest and enough).  Trusts nothing the
 * server says: reply lines are bounded by NOTICE_SMTP_MAX_LINE and
 * NOTICE_SMTP_MAX_REPLY_LINES, HTTP responses by NOTICE_HTTP_MAX_RESPONSE.
 */
#include "autoconf.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "buf.h"
#include "notice.h"
#include "strnum.h"
#include "xmalloc.h"

struct notice_smtp {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	struct buf in;		/* bytes read, not yet consumed */
	int pipelining;
	int starttls;
	int auth_plain;
	char last[NOTICE_SMTP_MAX_LINE + 64];	/* last reply (errors) */
};

static char net_err[NOTICE_SMTP_MAX_LINE + 128];

static int
tcp_connect(const char *host, const char *port, const char **error_r)
{
	struct addrinfo hints, *res, *ai;
	struct timeval tv = { NOTICE_SMTP_TIMEOUT, 0 };
	int fd = -1, e;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	e = getaddrinfo(host, port, &hints, &res);
	if (e != 0) {
		snprintf(net_err, sizeof(net_err), "cannot resolve %s: %s",
		    host, gai_strerror(e));
		*error_r = net_err;
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		snprintf(net_err, sizeof(net_err), "cannot connect to %s "
		    "port %s: %s", host, port, strerror(errno));
		*error_r = net_err;
	}
	return fd;
}

static int
smtp_write(struct notice_smtp *s, const void *data, size_t len,
    const char **error_r)
{
	const uint8_t *p = data;
	ssize_t w;
	int n;

	while (len > 0) {
		if (s->ssl != NULL) {
			n = SSL_write(s->ssl, p, len > 65536 ? 65536 :
			    (int)len);
			if (n <= 0) {
				*error_r = "TLS write failed";
				return -1;
			}
			w = n;
		} else {
			w = write(s->fd, p, len);
			if (w == -1) {
				if (errno == EINTR)
					continue;
				*error_r = "write to the server failed";
				return -1;
			}
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Read one line (without CRLF) into line; -1 on EOF, error or overlong. */
static int
smtp_read_line(struct notice_smtp *s, char *line, size_t linesz,
    const char **error_r)
{
	uint8_t *nl;
	ssize_t r;
	size_t n;

	for (;;) {
		nl = s->in.len > 0 ? memchr(s->in.data, '\n', s->in.len) :
		    NULL;
		if (nl != NULL) {
			n = (size_t)(nl - s->in.data);
			if (n > 0 && s->in.data[n - 1] == '\r')
				n--;
			if (n >= linesz) {
				*error_r = "reply line too long";
				return -1;
			}
			memcpy(line, s->in.data, n);
			line[n] = '\0';
			buf_consume(&s->in, (size_t)(nl - s->in.data) + 1);
			return 0;
		}
		if (s->in.len > NOTICE_SMTP_MAX_LINE ||
		    buf_reserve(&s->in, 4096) == -1) {
			*error_r = "reply line too long";
			return -1;
		}
		if (s->ssl != NULL) {
			int k = SSL_read(s->ssl, buf_tail(&s->in), 4096);

			r = k > 0 ? k : -1;
		} else {
			r = read(s->fd, buf_tail(&s->in), 4096);
			if (r == -1 && errno == EINTR)
				continue;
			if (r == 0)
				r = -1;
		}
		if (r <= 0) {
			*error_r = "connection closed by the server";
			return -1;
		}
		buf_commit(&s->in, (size_t)r);
	}
}

/*
 * Read a whole (multi-line) reply; *code_r gets its code.  If ehlo is set,
 * note the extensions we use.
 */
static int
smtp_reply(struct notice_smtp *s, int ehlo, int *code_r, const char **error_r)
{
	char line[NOTICE_SMTP_MAX_LINE + 1];
	uint64_t code;
	const char *e;
	int i;

	for (i = 0; i < NOTICE_SMTP_MAX_REPLY_LINES; i++) {
		if (smtp_read_line(s, line, sizeof(line), error_r) == -1)
			return -1;
		if (strlen(line) < 3 || strnum_u64_n(line, 3, 599, &code,
		    &e) == -1 || code < 200 ||
		    (line[3] != '\0' && line[3] != ' ' && line[3] != '-')) {
			*error_r = "malformed reply from the server";
			return -1;
		}
		if (ehlo && i > 0 && strlen(line) > 4) {
			const char *kw = line + 4;

			if (str_casecmp(kw, "PIPELINING") == 0)
				s->pipelining = 1;
			else if (str_casecmp(kw, "STARTTLS") == 0)
				s->starttls = 1;
			else if (strncasecmp(kw, "AUTH ", 5) == 0 &&
			    strstr(kw, "PLAIN") != NULL)
				s->auth_plain = 1;
		}
		if (line[3] != '-') {
			size_t k;

			*code_r = (int)code;
			/* Keep it printable: it ends up in reports. */
			str_copy(s->last, sizeof(s->last), line);
			for (k = 0; s->last[k] != '\0'; k++)
				if ((unsigned char)s->last[k] < 0x20 ||
				    (unsigned char)s->last[k] >= 0x7f)
					s->last[k] = '?';
			return 0;
		}
	}
	*error_r = "reply has too many lines";
	return -1;
}

static int
smtp_cmd(struct notice_smtp *s, const char *cmd, int ehlo, int want,
    const char **error_r)
{
	int code;

	if (cmd != NULL && smtp_write(s, cmd, strlen(cmd), error_r) == -1)
		return -1;
	if (smtp_reply(s, ehlo, &code, error_r) == -1)
		return -1;
	if (code / 100 != want) {
		snprintf(net_err, sizeof(net_err), "server said: %s",
		    s->last);
		*error_r = net_err;
		return -1;
	}
	return 0;
}

static int
smtp_tls(struct notice_smtp *s, const struct notice_smtp_opts *o,
    const char **error_r)
{
	struct in6_addr a6;
	long v;

	s->ctx = SSL_CTX_new(TLS_client_method());
	if (s->ctx == NULL) {
		*error_r = "cannot make a TLS context";
		return -1;
	}
	SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION);
	if (o->cafile != NULL) {
		if (SSL_CTX_load_verify_locations(s->ctx, o->cafile, NULL)
		    != 1) {
			*error_r = "cannot read the CA file";
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(s->ctx) != 1) {
		*error_r = "cannot load the system trust store";
		return -1;
	}
	/* SECURITY: the chain and the host name must check out, or no
	 * password is sent. */
	SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER, NULL);
	s->ssl = SSL_new(s->ctx);
	if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1) {
		*error_r = "cannot make a TLS session";
		return -1;
	}
	if (inet_pton(AF_INET, o->host, &a6) == 1 ||
	    inet_pton(AF_INET6, o->host, &a6) == 1) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl),
		    o->host) != 1) {
			*error_r = "bad server address";
			return -1;
		}
	} else {
		SSL_set_tlsext_host_name(s->ssl, o->host);
		if (SSL_set1_host(s->ssl, o->host) != 1) {
			*error_r = "bad server name";
			return -1;
		}
	}
	if (SSL_connect(s->ssl) != 1) {
		v = SSL_get_verify_result(s->ssl);
		snprintf(net_err, sizeof(net_err), "TLS handshake with %s "
		    "failed: %s", o->host, v != X509_V_OK ?
		    X509_verify_cert_error_string(v) :
		    ERR_reason_error_string(ERR_peek_last_error()) ?
		    ERR_reason_error_string(ERR_peek_last_error()) :
		    "connection closed");
		ERR_clear_error();
		SSL_free(s->ssl);
		s->ssl = NULL;
		*error_r = net_err;
		return -1;
	}
	return 0;
}

int
notice_smtp_open(const struct notice_smtp_opts *o, struct notice_smtp **s_r,
    const char **error_r)
{
	struct notice_smtp *s;
	char *cmd;
	struct buf auth;
	char *b64;
	size_t b64len;
	const char *helo = o->helo != NULL ? o->helo : "localhost";

	s = xcalloc(1, sizeof(*s));
	buf_init(&s->in, NOTICE_SMTP_MAX_LINE + 8192);
	s->fd = tcp_connect(o->host, o->port, error_r);
	if (s->fd == -1)
		goto fail;
	if (o->tls == NOTICE_TLS_IMPLICIT && smtp_tls(s, o, error_r) == -1)
		goto fail;
	if (smtp_cmd(s, NULL, 0, 2, error_r) == -1)
		goto fail;
	cmd = xasprintf("EHLO %s\r\n", helo);
	if (smtp_cmd(s, cmd, 1, 2, error_r) == -1) {
		free(cmd);
		goto fail;
	}
	if (o->tls == NOTICE_TLS_STARTTLS) {
		if (!s->starttls) {
			free(cmd);
			*error_r = "the server does not offer STARTTLS";
			goto fail;
		}
		if (smtp_cmd(s, "STARTTLS\r\n", 0, 2, error_r) == -1 ||
		    s->in.len != 0) {
			free(cmd);
			if (s->in.len != 0)
				*error_r = "data after the STARTTLS reply";
			goto fail;
		}
		if (smtp_tls(s, o, error_r) == -1) {
			free(cmd);
			goto fail;
		}
		s->pipelining = s->starttls = s->auth_plain = 0;
		if (smtp_cmd(s, cmd, 1, 2, error_r) == -1) {
			free(cmd);
			goto fail;
		}
	}
	free(cmd);
	if (o->user != NULL) {
		if (!s->auth_plain) {
			*error_r = "the server does not offer AUTH PLAIN";
			goto fail;
		}
		buf_init(&auth, 2048);
		auth.secret = 1;
		if (buf_append_byte(&auth, 0) == -1 ||
		    buf_append_str(&auth, o->user) == -1 ||
		    buf_append_byte(&auth, 0) == -1 ||
		    buf_append_str(&auth, o->password != NULL ? o->password :
		    "") == -1) {
			buf_free(&auth);
			*error_r = "user name or password too long";
			goto fail;
		}
		b64len = sodium_base64_encoded_len(auth.len,
		    sodium_base64_VARIANT_ORIGINAL);
		b64 = xmalloc(b64len + 16);
		memcpy(b64, "AUTH PLAIN ", 11);
		sodium_bin2base64(b64 + 11, b64len, auth.data, auth.len,
		    sodium_base64_VARIANT_ORIGINAL);
		buf_free(&auth);
		b64len = strlen(b64);
		memcpy(b64 + b64len, "\r\n", 3);
		if (smtp_cmd(s, b64, 0, 2, error_r) == -1) {
			sodium_memzero(b64, b64len);
			free(b64);
			snprintf(net_err, sizeof(net_err), "authentication "
			    "failed: %s", s->last);
			*error_r = net_err;
			goto fail;
		}
		sodium_memzero(b64, b64len);
		free(b64);
	}
	*s_r = s;
	return 0;
fail:
	notice_smtp_close(s);
	return -1;
}

/* Dot-stuff msg into out and end it with CRLF.CRLF. */
static int
smtp_dot_stuff(const uint8_t *msg, size_t len, struct buf *out)
{
	size_t i;
	int bol = 1;

	for (i = 0; i < len; i++) {
		if (bol && msg[i] == '.' && buf_append_byte(out, '.') == -1)
			return -1;
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r')) {
			if (buf_append_byte(out, '\r') == -1)
				return -1;
		}
		if (buf_append_byte(out, msg[i]) == -1)
			return -1;
		bol = msg[i] == '\n';
	}
	if (!bol && buf_append_str(out, "\r\n") == -1)
		return -1;
	return buf_append_str(out, ".\r\n");
}

int
notice_smtp_send(struct notice_smtp *s, const char *from,
    char *const *rcpts, size_t n, const uint8_t *msg, size_t len,
    int *code_r, int *in_doubt_r, const char **error_r)
{
	struct buf cmds, data;
	size_t i, ok_rcpts = 0;
	int code, mail_code = 0, data_code = 0, first_bad = 0, r = -1;
	char bad[sizeof(s->last)];

	*code_r = 0;
	*in_doubt_r = 0;
	bad[0] = '\0';
	buf_init(&cmds, BUF_UNBOUNDED);
	buf_init(&data, BUF_UNBOUNDED);
	if (strpbrk(from, "\r\n<>") != NULL) {
		*error_r = "bad sender address";
		goto out;
	}
	buf_printf(&cmds, "MAIL FROM:<%s>\r\n", from);
	for (i = 0; i < n; i++) {
		if (strpbrk(rcpts[i], "\r\n<>") != NULL) {
			*error_r = "bad recipient address";
			goto out;
		}
		buf_printf(&cmds, "RCPT TO:<%s>\r\n", rcpts[i]);
	}
	buf_append_str(&cmds, "DATA\r\n");
	if (s->pipelining) {
		/* RFC 2920: the whole batch in one write, then the replies. */
		if (smtp_write(s, cmds.data, cmds.len, error_r) == -1)
			goto out;
		if (smtp_reply(s, 0, &mail_code, error_r) == -1)
			goto out;
		if (mail_code / 100 != 2)
			str_copy(bad, sizeof(bad), s->last);
		for (i = 0; i < n; i++) {
			if (smtp_reply(s, 0, &code, error_r) == -1)
				goto out;
			if (code / 100 == 2)
				ok_rcpts++;
			else if (first_bad == 0) {
				first_bad = code;
				if (bad[0] == '\0')
					str_copy(bad, sizeof(bad), s->last);
			}
		}
		if (smtp_reply(s, 0, &data_code, error_r) == -1)
			goto out;
	} else {
		char *line, *nl;

		line = (char *)cmds.data;
		nl = strstr(line, "\r\n");
		if (smtp_write(s, line, (size_t)(nl + 2 - line), error_r)
		    == -1 || smtp_reply(s, 0, &mail_code, error_r) == -1)
			goto out;
		if (mail_code / 100 != 2)
			str_copy(bad, sizeof(bad), s->last);
		else {
			for (i = 0; i < n; i++) {
				line = nl + 2;
				nl = strstr(line, "\r\n");
				if (smtp_write(s, line, (size_t)(nl + 2 -
				    line), error_r) == -1 ||
				    smtp_reply(s, 0, &code, error_r) == -1)
					goto out;
				if (code / 100 == 2)
					ok_rcpts++;
				else if (first_bad == 0) {
					first_bad = code;
					str_copy(bad, sizeof(bad), s->last);
				}
			}
			if (ok_rcpts == n) {
				if (smtp_write(s, "DATA\r\n", 6, error_r) ==
				    -1 || smtp_reply(s, 0, &data_code,
				    error_r) == -1)
					goto out;
			}
		}
	}
	if (mail_code / 100 != 2 || ok_rcpts != n) {
		*code_r = mail_code / 100 != 2 ? mail_code : first_bad;
		snprintf(net_err, sizeof(net_err), "refused: %s", bad);
		*error_r = net_err;
		if (data_code == 354) {
			/* The server took DATA although we have no
			 * recipient it accepted: end it empty, then reset. */
			if (smtp_write(s, ".\r\n", 3, error_r) == -1 ||
			    smtp_reply(s, 0, &code, error_r) == -1)
				goto out_err;
		}
		if (smtp_cmd(s, "RSET\r\n", 0, 2, error_r) == -1)
			goto out_err;
		*error_r = net_err;
		goto out;
	}
	if (data_code != 354) {
		*code_r = data_code;
		snprintf(net_err, sizeof(net_err), "DATA refused: %s",
		    s->last);
		/* Leave the session clean for the next row. */
		if (smtp_cmd(s, "RSET\r\n", 0, 2, error_r) == -1)
			goto out_err;
		*error_r = net_err;
		goto out;
	}
	if (smtp_dot_stuff(msg, len, &data) == -1) {
		*error_r = "message too large";
		goto out;
	}
	if (smtp_write(s, data.data, data.len, error_r) == -1)
		goto out;
	/* From here on a broken connection leaves the message in doubt. */
	if (smtp_reply(s, 0, &code, error_r) == -1) {
		*in_doubt_r = 1;
		goto out;
	}
	*code_r = code;
	if (code / 100 != 2) {
		snprintf(net_err, sizeof(net_err), "message refused: %s",
		    s->last);
		*error_r = net_err;
		goto out;
	}
	r = 0;
	goto out;
out_err:
	*code_r = 0;
out:
	buf_free(&cmds);
	buf_free(&data);
	return r;
}

void
notice_smtp_close(struct notice_smtp *s)
{
	const char *e;

	if (s == NULL)
		return;
	if (s->fd != -1 && (s->ssl != NULL || s->ctx == NULL))
		(void)smtp_write(s, "QUIT\r\n", 6, &e);
	if (s->ssl != NULL) {
		SSL_shutdown(s->ssl);
		SSL_free(s->ssl);
	}
	SSL_CTX_free(s->ctx);
	if (s->fd != -1)
		close(s->fd);
	buf_free(&s->in);
	free(s);
}

/* ------------------------------------------------------------- HTTP */

struct notice_http {
	CURL *curl;
	struct buf *body;	/* the current GET's */
	int too_large;
	char err[CURL_ERROR_SIZE];
};

static size_t
http_write(char *p, size_t size, size_t n, void *arg)
{
	struct notice_http *h = arg;

	/* SECURITY: a response is bounded; anything past it ends the GET. */
	if (buf_append(h->body, p, size * n) == -1 ||
	    h->body->len > NOTICE_HTTP_MAX_RESPONSE) {
		h->too_large = 1;
		return 0;
	}
	return size * n;
}

struct notice_http *
notice_http_new(const char *cafile, const char **error_r)
{
	struct notice_http *h;
	static int global_done;

	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			*error_r = "cannot start libcurl";
			return NULL;
		}
		global_done = 1;
	}
	h = xcalloc(1, sizeof(*h));
	h->curl = curl_easy_init();
	if (h->curl == NULL ||
	    curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 0L) ||
	    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT,
	    (long)NOTICE_HTTP_TIMEOUT) ||
	    curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "govmail-notice") ||
	    curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYPEER, 1L) ||
	    curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYHOST, 2L) ||
	    (cafile != NULL &&
	    curl_easy_setopt(h->curl, CURLOPT_CAINFO, cafile)) ||
	    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, http_write) ||
	    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h) ||
	    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, h->err)) {
		notice_http_free(h);
		*error_r = "cannot set up libcurl";
		return NULL;
	}
	return h;
}

int
notice_http_get(struct notice_http *h, const char *url, int *status_r,
    struct buf *body, const char **error_r)
{
	CURLcode c;
	long status = 0;

	h->body = body;
	h->too_large = 0;
	h->err[0] = '\0';
	if (curl_easy_setopt(h->curl, CURLOPT_URL, url) != CURLE_OK) {
		*error_r = "bad URL";
		return -1;
	}
	c = curl_easy_perform(h->curl);
	h->body = NULL;
	if (h->too_large) {
		*error_r = "HTTP response too large";
		return -1;
	}
	if (c != CURLE_OK) {
		snprintf(net_err, sizeof(net_err), "%s: %s", url,
		    h->err[0] != '\0' ? h->err : curl_easy_strerror(c));
		*error_r = net_err;
		return -1;
	}
	(void)curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
	*status_r = (int)status;
	return 0;
}

void
notice_http_free(struct notice_http *h)
{
	if (h == NULL)
		return;
	if (h->curl != NULL)
		curl_easy_cleanup(h->curl);
	free(h);
}
