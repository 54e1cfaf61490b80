/*
 * notice_main.c - govmail-notice, the department's command: compose,
 * sign (S/MIME, RFC 8551), optionally encrypt, and submit one notice
 * (send) or one personalised message per CSV row (merge, resumable).
 *
 * Runs as the department's user on its own machine; merge forks one
 * sending process per SMTP connection.  Trusts its command line and files
 * (the department's), the CA file for the server's identity, and nothing
 * the SMTP server or the CA repository answers beyond its format.
 *
 * Exactly-once semantics of merge (see doc/govmail-notice.1): each row is
 * one SMTP transaction; "S row" is journaled (fsync'd) before the
 * transaction and "D row" right after the server's final reply.  A row
 * with "S" and no outcome when the process died is in doubt (the server
 * may have sent 250 we never read): on resume it is sent again with the
 * same deterministic Message-ID <notice.JOURNALID.ROW@from-domain>, so it
 * arrives at most twice, identically, and a receiver can drop the
 * duplicate.  Every row whose outcome was journaled is never sent again.
 * At most one row per connection can be in doubt at any time.
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "buf.h"
#include "govca.h"
#include "notice.h"
#include "strnum.h"
#include "xmalloc.h"

#define PROG "govmail-notice"

/* Most --to and --attach arguments of send. */
#define NOTICE_MAX_TO			1000
#define NOTICE_MAX_ATTACH		64
/* Largest body, HTML or attachment file read. */
#define NOTICE_MAX_FILE			(32u * 1024 * 1024)
/* Largest PKCS#12 file read. */
#define NOTICE_MAX_P12			(1024u * 1024)
/* Largest password file. */
#define NOTICE_MAX_PASSWORD		1024
/* Most parallel SMTP connections of merge. */
#define NOTICE_MAX_CONNECTIONS		64
/* The default: two per core here (the server delivers each message on a
 * helper thread and group-commits concurrent ones), within these. */
#define NOTICE_CONNECTIONS_PER_CORE	2
#define NOTICE_DEFAULT_CONNECTIONS_MIN	2
#define NOTICE_DEFAULT_CONNECTIONS_MAX	16
/* Tries per row when the connection breaks (same Message-ID each time). */
#define NOTICE_SEND_ATTEMPTS		3
/* Tries per row on 4xx replies, waiting 1, 2, 4 ... s in between (the
 * waits add up to 63 s: a per-minute rate limit has reset by then). */
#define NOTICE_TEMPFAIL_TRIES		7
/* Consecutive failed connects after which a worker defers the rest. */
#define NOTICE_CONNECT_ATTEMPTS		3
/* Base64 line length (RFC 2045 6.8: at most 76). */
#define NOTICE_B64_LINE			76

/* Exit codes. */
#define NOTICE_EXIT_OK		0
#define NOTICE_EXIT_ERROR	1	/* usage, input, signing, sending */
#define NOTICE_EXIT_PARTIAL	2	/* merge: some rows not sent */

struct opts {
	const char *from, *subject, *body, *html, *p12, *p12_pass_file;
	const char *server, *user, *password_file, *cafile, *output;
	const char *template, *csv, *journal, *report, *pki_url, *charset;
	const char *helo;
	char *to[NOTICE_MAX_TO];
	size_t n_to;
	char *attach[NOTICE_MAX_ATTACH];
	size_t n_attach;
	enum notice_tls_mode tls;
	enum smime_cte cte;
	int encrypt;
	int missing_skip;
	int journal_each;	/* --journal-sync each */
	unsigned int connections;
	int progress;		/* -1 auto, 0 off, 1 on */
};

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(NOTICE_EXIT_ERROR);
}

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr,
"usage: " PROG " send --from ADDR --p12 FILE [--p12-pass-file F]\n"
"           --to ADDR... --subject TEXT --body FILE [--html FILE]\n"
"           [--attach FILE]... [--cte base64|qp] [--output FILE]\n"
"           [server options]\n"
"       " PROG " merge --template FILE --csv FILE --p12 FILE\n"
"           [--p12-pass-file F] [--charset auto|utf-8|gb18030]\n"
"           [--encrypt --pki-url URL [--missing-cert signed|skip]]\n"
"           --journal FILE --report FILE [--connections N]\n"
"           [--journal-sync batch|each]\n"
"           [--progress|--no-progress] [server options]\n"
"server options: [--server HOST:PORT] [--tls starttls|implicit|none]\n"
"           [--cafile ROOT.pem] [--user U --password-file F] [--helo NAME]\n");
	exit(NOTICE_EXIT_ERROR);
}

/* Read a whole file (at most max bytes) into out. */
static void
read_file(const char *path, size_t max, struct buf *out)
{
	FILE *f;
	uint8_t chunk[65536];
	size_t n;

	buf_init(out, max);
	f = fopen(path, "rb");
	if (f == NULL)
		die("cannot open %s: %s", path, strerror(errno));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (buf_append(out, chunk, n) == -1)
			die("%s: larger than %zu bytes", path, max);
	if (ferror(f))
		die("cannot read %s", path);
	fclose(f);
}

/* The first line of a password file (wiped buffer; caller frees). */
static char *
read_password(const char *path)
{
	struct buf b;
	char *nl, *pw;

	read_file(path, NOTICE_MAX_PASSWORD, &b);
	b.secret = 1;
	if (b.len == 0)
		return xstrdup("");	/* an empty password */
	nl = memchr(b.data, '\n', b.len);
	if (nl != NULL)
		*nl = '\0';
	nl = strchr((char *)b.data, '\r');
	if (nl != NULL)
		*nl = '\0';
	pw = xstrdup((char *)b.data);
	buf_free(&b);
	return pw;
}

static void
free_secret(char *s)
{
	if (s != NULL) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

/*
 * The signer's identity from the PKCS#12, with the chain the signatures
 * carry: the CA certificates but not a self-signed root.  A root proves
 * nothing to a verifier (it must already trust it), costs every receiver
 * a certificate to decode (govmail-smtpd checks each signed message) and
 * makes each message ~700 bytes larger.
 */
static struct govca_cms_identity *
load_identity(const struct opts *o)
{
	struct govca_cms_identity *id;
	struct buf data;
	const unsigned char *p;
	PKCS12 *p12;
	X509 *cert = NULL, *c;
	EVP_PKEY *key = NULL;
	STACK_OF(X509) *ca = NULL;
	char *pw = NULL;
	const char *err;
	int i;

	if (o->p12 == NULL)
		die("--p12 is required");
	if (o->p12_pass_file != NULL)
		pw = read_password(o->p12_pass_file);
	read_file(o->p12, NOTICE_MAX_P12, &data);
	data.secret = 1;
	p = data.data;
	p12 = d2i_PKCS12(NULL, &p, (long)data.len);
	buf_free(&data);
	if (p12 == NULL)
		die("%s: not a PKCS#12 file", o->p12);
	if (!PKCS12_parse(p12, pw != NULL ? pw : "", &key, &cert, &ca))
		die("%s: cannot open PKCS#12 (wrong password?)", o->p12);
	PKCS12_free(p12);
	free_secret(pw);
	if (cert == NULL || key == NULL)
		die("%s: PKCS#12 holds no certificate and key", o->p12);
	for (i = ca != NULL ? sk_X509_num(ca) - 1 : -1; i >= 0; i--) {
		c = sk_X509_value(ca, i);
		if (X509_self_signed(c, 0) == 1) {
			(void)sk_X509_delete(ca, i);
			X509_free(c);
		}
	}
	if (govca_cms_identity_new(cert, key, ca, &id, &err) == -1)
		die("%s: %s", o->p12, err);
	X509_free(cert);
	EVP_PKEY_free(key);
	sk_X509_pop_free(ca, X509_free);
	return id;
}

static void
server_opts(const struct opts *o, struct notice_smtp_opts *so,
    char **host_r, char **pw_r)
{
	const char *server = o->server != NULL ? o->server : "localhost:587";
	const char *colon = strrchr(server, ':');
	uint64_t port;
	const char *err;

	memset(so, 0, sizeof(*so));
	if (colon == NULL || colon == server)
		die("--server wants HOST:PORT");
	if (strnum_u64(colon + 1, 1, 65535, &port, &err) == -1)
		die("--server port: %s", err);
	*host_r = xstrndup(server, (size_t)(colon - server));
	if ((*host_r)[0] == '[') {
		/* [::1]:587 */
		char *h = xstrndup(*host_r + 1, strlen(*host_r) - 2);

		free(*host_r);
		*host_r = h;
	}
	so->host = *host_r;
	so->port = colon + 1;
	so->tls = o->tls;
	so->cafile = o->cafile;
	so->user = o->user;
	so->helo = o->helo;
	*pw_r = NULL;
	if (o->user != NULL) {
		if (o->password_file == NULL)
			die("--user needs --password-file");
		/* SECURITY: AUTH PLAIN without TLS shows the password to
		 * the network; allow it only where there is none. */
		if (o->tls == NOTICE_TLS_NONE && strcmp(so->host, "127.0.0.1")
		    != 0 && strcmp(so->host, "::1") != 0 &&
		    strcmp(so->host, "localhost") != 0)
			die("--tls none with --user: loopback only");
		*pw_r = read_password(o->password_file);
		so->password = *pw_r;
	}
}

/* The address inside a header value naming exactly one mailbox. */
static char *
one_address(const char *value, const char *what)
{
	char addr[GOVCA_CMS_MAX_ADDRESS + 1];
	size_t count;

	if (smime_address_parse(value, addr, sizeof(addr), &count) == -1 ||
	    count != 1 || strchr(addr, '@') == NULL)
		return NULL;
	(void)what;
	return xstrdup(addr);
}

static char *
random_boundary(void)
{
	uint8_t r[12];
	char hex[25];

	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
	return xasprintf("=_govmail_%s", hex);
}

/* Append data as base64 in lines of NOTICE_B64_LINE, CRLF. */
static void
append_base64(struct buf *out, const uint8_t *data, size_t len)
{
	uint8_t line[NOTICE_B64_LINE + 4];
	size_t off, n;
	int k;

	for (off = 0; off < len; off += n) {
		n = len - off > NOTICE_B64_LINE / 4 * 3 ?
		    NOTICE_B64_LINE / 4 * 3 : len - off;
		k = EVP_EncodeBlock(line, data + off, (int)n);
		if (buf_append(out, line, (size_t)k) == -1 ||
		    buf_append_str(out, "\r\n") == -1)
			die("message too large");
	}
}

static const char *
mime_type(const char *name)
{
	static const char *const map[][2] = {
		{ ".pdf", "application/pdf" },
		{ ".txt", "text/plain" },
		{ ".csv", "text/csv" },
		{ ".html", "text/html" },
		{ ".htm", "text/html" },
		{ ".png", "image/png" },
		{ ".jpg", "image/jpeg" },
		{ ".jpeg", "image/jpeg" },
		{ ".gif", "image/gif" },
		{ ".zip", "application/zip" },
		{ ".xml", "application/xml" },
		{ ".ofd", "application/ofd" },
		{ ".doc", "application/msword" },
		{ ".xls", "application/vnd.ms-excel" },
		{ ".docx", "application/vnd.openxmlformats-officedocument."
		    "wordprocessingml.document" },
		{ ".xlsx", "application/vnd.openxmlformats-officedocument."
		    "spreadsheetml.sheet" },
	};
	const char *dot = strrchr(name, '.');
	size_t i;

	if (dot != NULL)
		for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (str_casecmp(dot, map[i][0]) == 0)
				return map[i][1];
	return "application/octet-stream";
}

/* name="..." for ASCII names, RFC 2231 name*=utf-8''%XX otherwise. */
static void
append_param(struct buf *out, const char *param, const char *value)
{
	const unsigned char *p;
	int ascii = 1;

	for (p = (const unsigned char *)value; *p; p++)
		if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
			ascii = 0;
	if (ascii) {
		buf_printf(out, "; %s=\"%s\"", param, value);
		return;
	}
	buf_printf(out, ";\r\n %s*=utf-8''", param);
	for (p = (const unsigned char *)value; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p))
			buf_append_byte(out, *p);
		else
			buf_printf(out, "%%%02X", *p);
	}
}

/* The MIME entity of a notice: text (+ HTML), then attachments. */
static void
build_entity(const struct opts *o, struct buf *entity)
{
	struct buf body, text, html, alt, file;
	const char *err, *base;
	char *b1, *b2;
	size_t i;

	read_file(o->body, NOTICE_MAX_FILE, &file);
	buf_init(&body, NOTICE_MAX_FILE * 2);
	if (csv_charset_to_utf8(file.data, file.len, NULL, &body, NULL,
	    &err) == -1)
		die("%s: %s", o->body, err);
	buf_free(&file);
	buf_init(&text, GOVCA_CMS_MAX_MESSAGE);
	if (smime_entity_text("text/plain; charset=utf-8", o->cte, body.data,
	    body.len, &text, &err) == -1)
		die("%s: %s", o->body, err);
	buf_free(&body);
	if (o->html != NULL) {
		read_file(o->html, NOTICE_MAX_FILE, &file);
		buf_init(&body, NOTICE_MAX_FILE * 2);
		if (csv_charset_to_utf8(file.data, file.len, NULL, &body,
		    NULL, &err) == -1)
			die("%s: %s", o->html, err);
		buf_free(&file);
		buf_init(&html, GOVCA_CMS_MAX_MESSAGE);
		if (smime_entity_text("text/html; charset=utf-8", o->cte,
		    body.data, body.len, &html, &err) == -1)
			die("%s: %s", o->html, err);
		buf_free(&body);
		b1 = random_boundary();
		buf_init(&alt, GOVCA_CMS_MAX_MESSAGE);
		buf_printf(&alt, "Content-Type: multipart/alternative;\r\n"
		    " boundary=\"%s\"\r\n\r\n--%s\r\n", b1, b1);
		buf_append(&alt, text.data, text.len);
		buf_printf(&alt, "\r\n--%s\r\n", b1);
		buf_append(&alt, html.data, html.len);
		if (buf_printf(&alt, "\r\n--%s--\r\n", b1) == -1)
			die("message too large");
		free(b1);
		buf_free(&text);
		buf_free(&html);
		text = alt;
	}
	if (o->n_attach == 0) {
		*entity = text;
		return;
	}
	b2 = random_boundary();
	buf_init(entity, GOVCA_CMS_MAX_MESSAGE);
	buf_printf(entity, "Content-Type: multipart/mixed;\r\n"
	    " boundary=\"%s\"\r\n\r\n--%s\r\n", b2, b2);
	buf_append(entity, text.data, text.len);
	buf_free(&text);
	for (i = 0; i < o->n_attach; i++) {
		read_file(o->attach[i], NOTICE_MAX_FILE, &file);
		base = strrchr(o->attach[i], '/');
		base = base != NULL ? base + 1 : o->attach[i];
		buf_printf(entity, "\r\n--%s\r\nContent-Type: %s", b2,
		    mime_type(base));
		append_param(entity, "name", base);
		buf_append_str(entity, "\r\nContent-Transfer-Encoding: base64"
		    "\r\nContent-Disposition: attachment");
		append_param(entity, "filename", base);
		buf_append_str(entity, "\r\n\r\n");
		append_base64(entity, file.data, file.len);
		buf_free(&file);
	}
	if (buf_printf(entity, "\r\n--%s--\r\n", b2) == -1)
		die("message too large");
	free(b2);
}

/* ---------------------------------------------------------------- send */

static int
cmd_send(struct opts *o)
{
	struct govca_cms_identity *id;
	struct smime_headers h;
	struct notice_smtp_opts so;
	struct notice_smtp *s;
	struct buf entity, signed_, msg, to;
	char *from_addr, *rcpts[NOTICE_MAX_TO], *host = NULL, *pw = NULL;
	const char *err;
	size_t i;
	int code, doubt;
	FILE *f;

	if (o->from == NULL || o->n_to == 0 || o->subject == NULL ||
	    o->body == NULL)
		die("send needs --from, --to, --subject and --body");
	from_addr = one_address(o->from, "--from");
	if (from_addr == NULL)
		die("--from does not name one address");
	buf_init(&to, SMIME_MAX_FIELD);
	for (i = 0; i < o->n_to; i++) {
		rcpts[i] = one_address(o->to[i], "--to");
		if (rcpts[i] == NULL)
			die("--to %s does not name one address", o->to[i]);
		if ((i > 0 && buf_append_str(&to, ", ") == -1) ||
		    buf_append_str(&to, o->to[i]) == -1)
			die("--to: too many recipients for one To: field");
	}
	id = load_identity(o);
	build_entity(o, &entity);
	buf_init(&signed_, GOVCA_CMS_MAX_MESSAGE);
	if (govca_cms_sign(id, entity.data, entity.len, &signed_, &err) == -1)
		die("signing failed: %s", err);
	buf_free(&entity);
	memset(&h, 0, sizeof(h));
	h.from = o->from;
	h.to = buf_str(&to);
	h.subject = o->subject;
	buf_init(&msg, GOVCA_CMS_MAX_MESSAGE);
	if (smime_message_build(&h, signed_.data, signed_.len, &msg, &err)
	    == -1)
		die("cannot build the message: %s", err);
	buf_free(&signed_);
	govca_cms_identity_free(id);
	if (o->output != NULL) {
		f = fopen(o->output, "wb");
		if (f == NULL || fwrite(msg.data, 1, msg.len, f) != msg.len ||
		    fclose(f) != 0)
			die("cannot write %s", o->output);
		if (o->server == NULL)
			goto done;
	}
	server_opts(o, &so, &host, &pw);
	if (notice_smtp_open(&so, &s, &err) == -1)
		die("%s", err);
	free_secret(pw);
	if (notice_smtp_send(s, from_addr, rcpts, o->n_to, msg.data, msg.len,
	    &code, &doubt, &err) == -1)
		die("%s%s", err, doubt ? " (the server may have accepted "
		    "it)" : "");
	notice_smtp_close(s);
	printf("sent to %zu recipient%s\n", o->n_to, o->n_to == 1 ? "" : "s");
done:
	for (i = 0; i < o->n_to; i++)
		free(rcpts[i]);
	free(from_addr);
	free(host);
	buf_free(&msg);
	buf_free(&to);
	return NOTICE_EXIT_OK;
}

/* --------------------------------------------------------------- merge */

struct merge {
	struct opts *o;
	struct csv csv;
	struct notice_template tmpl;
	struct notice_journal *j;
	struct govca_cms_identity *id;
	struct notice_smtp_opts so;
	struct notice_smtp *smtp;
	struct notice_http *http;	/* the CA repository (--encrypt) */
	unsigned int connect_failures;
	char *last_connect_error;
};

static void
url_escape(struct buf *out, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~@+", *p))
			buf_append_byte(out, *p);
		else
			buf_printf(out, "%%%02X", *p);
	}
}

/*
 * The recipient's current certificate from the CA repository: 0 and
 * *cert_r, 1 if it has none (404), -1 on any other failure.
 */
static int
fetch_cert(struct merge *m, const char *pki_url, const char *addr,
    X509 **cert_r, const char **error_r)
{
	struct buf url, body;
	BIO *bio;
	int status, r = -1;
	size_t n = strlen(pki_url);

	buf_init(&url, 4096);
	buf_append_str(&url, pki_url);
	if (n > 0 && pki_url[n - 1] == '/')
		buf_truncate(&url, n - 1);
	buf_append_str(&url, "/certs/");
	url_escape(&url, addr);
	buf_append_str(&url, ".pem");
	buf_init(&body, NOTICE_HTTP_MAX_RESPONSE);
	if (m->http == NULL &&
	    (m->http = notice_http_new(m->o->cafile, error_r)) == NULL)
		goto out;
	if (notice_http_get(m->http, buf_str(&url), &status, &body, error_r)
	    == -1)
		goto out;
	if (status == 404) {
		r = 1;
		goto out;
	}
	if (status != 200) {
		*error_r = "the CA repository answered an error";
		goto out;
	}
	bio = body.len > 0 ? BIO_new_mem_buf(body.data, (int)body.len) :
	    NULL;
	*cert_r = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) :
	    NULL;
	BIO_free(bio);
	if (*cert_r == NULL) {
		*error_r = "the CA repository sent no certificate";
		goto out;
	}
	r = 0;
out:
	buf_free(&url);
	buf_free(&body);
	return r;
}

static char *
merged(struct merge *m, const char *src, size_t idx, int header)
{
	struct buf b;
	const char *err;

	buf_init(&b, header ? SMIME_MAX_FIELD : GOVCA_CMS_MAX_MESSAGE / 2);
	if (notice_merge(src, &m->csv, idx, header, &b, &err) == -1) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

static void
journal_or_die(int r, const char *err)
{
	if (r == -1) {
		/* Without the journal we cannot promise anything: stop. */
		fprintf(stderr, PROG ": journal: %s\n", err);
		_exit(NOTICE_EXIT_ERROR);
	}
}

/* Process one data row (1-based). */
static void
merge_row(struct merge *m, size_t row)
{
	struct opts *o = m->o;
	char *from = NULL, *to = NULL, *cc = NULL, *subject = NULL;
	char *body = NULL, *from_addr = NULL, *rcpts[2] = { NULL, NULL };
	char *msgid = NULL;
	const char *err = NULL, *status = "sent-signed", *dom;
	struct buf entity, signed_, msg, enc;
	struct smime_headers h;
	X509 *cert = NULL;
	size_t n_rcpt = 0, idx = row - 1;
	int r, code = 0, doubt = 0, attempt, resend = 0, tempfails = 0;
	unsigned int wait = 1;

	buf_init(&entity, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&signed_, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&msg, GOVCA_CMS_MAX_MESSAGE);
	buf_init(&enc, GOVCA_CMS_MAX_MESSAGE);
	from = merged(m, m->tmpl.from, idx, 1);
	to = merged(m, m->tmpl.to, idx, 1);
	subject = merged(m, m->tmpl.subject, idx, 1);
	body = merged(m, m->tmpl.body, idx, 0);
	if (m->tmpl.cc != NULL)
		cc = merged(m, m->tmpl.cc, idx, 1);
	if (from == NULL || to == NULL || subject == NULL || body == NULL ||
	    (m->tmpl.cc != NULL && cc == NULL)) {
		err = "a merged value holds a line break or is too long";
		goto failed;
	}
	from_addr = one_address(from, "From");
	rcpts[n_rcpt] = one_address(to, "To");
	if (from_addr == NULL || rcpts[n_rcpt] == NULL) {
		err = "From: or To: does not name exactly one address";
		goto failed;
	}
	n_rcpt++;
	if (cc != NULL) {
		rcpts[n_rcpt] = one_address(cc, "Cc");
		if (rcpts[n_rcpt] == NULL) {
			err = "Cc: does not name exactly one address";
			goto failed;
		}
		n_rcpt++;
	}
	dom = strrchr(from_addr, '@') + 1;
	msgid = xasprintf("<notice.%s.%zu@%s>", notice_journal_id(m->j), row,
	    dom);
	if (smime_entity_text(m->tmpl.content_type, o->cte,
	    (const uint8_t *)body, strlen(body), &entity, &err) == -1 ||
	    govca_cms_sign(m->id, entity.data, entity.len, &signed_, &err)
	    == -1)
		goto failed;
	memset(&h, 0, sizeof(h));
	h.from = from;
	h.to = to;
	h.cc = cc;
	h.subject = subject;
	h.message_id = msgid;
	if (smime_message_build(&h, signed_.data, signed_.len, &msg, &err)
	    == -1)
		goto failed;
	if (o->encrypt) {
		r = fetch_cert(m, o->pki_url, rcpts[0], &cert, &err);
		if (r == -1) {
			journal_or_die(notice_journal_defer(m->j, row,
			    rcpts[0], msgid, err, &err), err);
			goto out;
		}
		if (r == 1) {
			if (o->missing_skip) {
				journal_or_die(notice_journal_done(m->j, row,
				    "skipped-no-cert", rcpts[0], msgid,
				    "recipient has no certificate", &err),
				    err);
				goto out;
			}
			status = "sent-signed-no-cert";
		} else {
			if (govca_cms_encrypt(&cert, 1, msg.data, msg.len,
			    &enc, &err) == -1)
				goto failed;
			buf_free(&msg);
			msg = enc;
			buf_init(&enc, 0);
			status = "sent-encrypted";
		}
	}
	journal_or_die(notice_journal_start(m->j, row, &err), err);
	for (attempt = 0; attempt < NOTICE_SEND_ATTEMPTS; attempt++) {
		if (resend) {
			journal_or_die(notice_journal_start(m->j, row, &err),
			    err);
			resend = 0;
		}
		if (m->smtp == NULL) {
			if (m->connect_failures >= NOTICE_CONNECT_ATTEMPTS) {
				err = m->last_connect_error;
				break;
			}
			if (notice_smtp_open(&m->so, &m->smtp, &err) == -1) {
				m->connect_failures++;
				free(m->last_connect_error);
				m->last_connect_error = xstrdup(err);
				continue;
			}
			m->connect_failures = 0;
		}
		if (notice_smtp_send(m->smtp, from_addr, rcpts, n_rcpt,
		    msg.data, msg.len, &code, &doubt, &err) == 0) {
			journal_or_die(notice_journal_done(m->j, row, status,
			    rcpts[0], msgid, NULL, &err), err);
			goto out;
		}
		if (code >= 500) {
			journal_or_die(notice_journal_done(m->j, row,
			    "failed", rcpts[0], msgid, err, &err), err);
			goto out;
		}
		if (code >= 400) {
			/* 4xx (a rate limit, a busy store): wait and try
			 * again, 1, 2, 4 ... s, then defer to the next run. */
			if (++tempfails >= NOTICE_TEMPFAIL_TRIES)
				break;
			sleep(wait);
			wait *= 2;
			attempt--;	/* not a broken connection */
			continue;
		}
		/* The connection broke: reconnect and send again, same
		 * Message-ID.  If the message had gone out whole it is in
		 * doubt: journal the new attempt, so the report says the
		 * row may have arrived twice. */
		notice_smtp_close(m->smtp);
		m->smtp = NULL;
		if (doubt)
			resend = 1;
	}
	journal_or_die(notice_journal_defer(m->j, row, rcpts[0], msgid,
	    err != NULL ? err : "temporary failure", &err), err);
	goto out;
failed:
	journal_or_die(notice_journal_done(m->j, row, "failed",
	    rcpts[0] != NULL ? rcpts[0] : "-", msgid, err, &err), err);
out:
	X509_free(cert);
	free(from);
	free(to);
	free(cc);
	free(subject);
	free(body);
	free(from_addr);
	free(rcpts[0]);
	free(rcpts[1]);
	free(msgid);
	buf_free(&entity);
	buf_free(&signed_);
	buf_free(&msg);
	buf_free(&enc);
}

static void
progress_show(int tty, size_t done, size_t total, size_t base,
    double elapsed, int final)
{
	double rate = elapsed > 0 ? (double)(done - base) / elapsed : 0;
	double eta = rate > 0 ? (double)(total - done) / rate : 0;
	unsigned int pct = total ? (unsigned int)(done * 100 / total) : 100;
	char bar[31];
	size_t i, fill = total ? done * 30 / total : 30;

	if (tty) {
		for (i = 0; i < 30; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[30] = '\0';
		fprintf(stderr, "\r[%s] %zu/%zu %3u%% %.1f msg/s ETA "
		    "%u:%02u:%02u%s", bar, done, total, pct, rate,
		    (unsigned int)eta / 3600, (unsigned int)eta / 60 % 60,
		    (unsigned int)eta % 60, final ? "\n" : "");
	} else
		fprintf(stderr, PROG ": progress done=%zu total=%zu "
		    "percent=%u rate=%.1f eta=%us\n", done, total, pct, rate,
		    (unsigned int)eta);
	fflush(stderr);
}

static void
csv_field(FILE *f, const char *s, int last)
{
	const char *p;

	if (strpbrk(s, ",\"\r\n") != NULL) {
		fputc('"', f);
		for (p = s; *p; p++) {
			if (*p == '"')
				fputc('"', f);
			fputc(*p, f);
		}
		fputc('"', f);
	} else
		fputs(s, f);
	fputs(last ? "\r\n" : ",", f);
}

/* Write the report and print the summary; returns the exit code. */
static int
merge_report(struct merge *m)
{
	const struct notice_journal_row *jr;
	size_t row, n = m->csv.n_rows;
	size_t enc = 0, sig = 0, nocert = 0, skipped = 0, failed = 0;
	size_t deferred = 0, doubt = 0, notsent = 0, resent = 0;
	char tmp[4096], *summary;
	const char *status, *error;
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", m->o->report) >=
	    (int)sizeof(tmp))
		die("--report path too long");
	f = fopen(tmp, "w");
	if (f == NULL)
		die("cannot write %s: %s", tmp, strerror(errno));
	fputs("row,address,status,message-id,error\r\n", f);
	for (row = 1; row <= n; row++) {
		jr = notice_journal_row(m->j, row);
		status = jr->status != NULL ? jr->status : "";
		error = jr->error != NULL ? jr->error : "";
		switch (jr->state) {
		case NOTICE_ROW_NEW:
			status = "not-sent";
			notsent++;
			break;
		case NOTICE_ROW_STARTED:
			status = "in-doubt";
			error = "interrupted before the server's reply: run "
			    "again to resend with the same Message-ID";
			doubt++;
			break;
		case NOTICE_ROW_DEFERRED:
			deferred++;
			break;
		case NOTICE_ROW_DONE:
			if (strcmp(status, "sent-encrypted") == 0)
				enc++;
			else if (strcmp(status, "sent-signed") == 0)
				sig++;
			else if (strcmp(status, "sent-signed-no-cert") == 0)
				nocert++;
			else if (strcmp(status, "skipped-no-cert") == 0)
				skipped++;
			else
				failed++;
			if (jr->starts > 1 && str_has_prefix(status, "sent")) {
				resent++;
				if (error[0] == '\0')
					error = "sent again after an "
					    "interruption (same Message-ID; "
					    "may have arrived twice)";
			}
			break;
		}
		snprintf(tmp, sizeof(tmp), "%zu", row);
		csv_field(f, tmp, 0);
		csv_field(f, jr->address != NULL ? jr->address : "", 0);
		csv_field(f, status, 0);
		csv_field(f, jr->message_id != NULL ? jr->message_id : "", 0);
		csv_field(f, error, 1);
	}
	summary = xasprintf("summary rows=%zu sent=%zu encrypted=%zu "
	    "signed=%zu signed_no_cert=%zu skipped_no_cert=%zu failed=%zu "
	    "deferred=%zu in_doubt=%zu not_sent=%zu resent=%zu", n,
	    enc + sig + nocert, enc, sig, nocert, skipped, failed, deferred,
	    doubt, notsent, resent);
	fprintf(f, "# %s\r\n", summary);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
		die("cannot write the report");
	snprintf(tmp, sizeof(tmp), "%s.tmp", m->o->report);
	if (rename(tmp, m->o->report) == -1)
		die("cannot rename the report into place: %s",
		    strerror(errno));
	printf("%s\n", summary);
	free(summary);
	return failed + deferred + doubt + notsent > 0 ? NOTICE_EXIT_PARTIAL :
	    NOTICE_EXIT_OK;
}

static int
cmd_merge(struct opts *o)
{
	struct merge m;
	struct buf raw, text, hashin;
	uint8_t hash[32];
	const char *err, *used;
	char *host = NULL, *pw = NULL;
	size_t *todo, n_todo = 0, row, done, base, newly, k;
	unsigned int nw, w;
	pid_t *pids;
	int status, tty, alive;
	struct timespec t0, now, last = { 0, 0 };
	double el;

	if (o->template == NULL || o->csv == NULL || o->journal == NULL ||
	    o->report == NULL)
		die("merge needs --template, --csv, --journal and --report");
	if (o->encrypt && o->pki_url == NULL)
		die("--encrypt needs --pki-url");
	memset(&m, 0, sizeof(m));
	m.o = o;
	buf_init(&hashin, BUF_UNBOUNDED);
	read_file(o->csv, CSV_MAX_BYTES, &raw);
	buf_init(&text, CSV_MAX_BYTES);
	if (csv_charset_to_utf8(raw.data, raw.len, o->charset, &text,
	    &used, &err) == -1)
		die("%s: %s", o->csv, err);
	buf_append(&hashin, raw.data, raw.len);
	buf_free(&raw);
	if (csv_parse(text.data, text.len, &m.csv, &err) == -1)
		die("%s: %s", o->csv, err);
	buf_free(&text);
	read_file(o->template, NOTICE_TEMPLATE_MAX, &raw);
	buf_init(&text, NOTICE_TEMPLATE_MAX * 2);
	if (csv_charset_to_utf8(raw.data, raw.len, o->charset, &text,
	    NULL, &err) == -1)
		die("%s: %s", o->template, err);
	buf_append_byte(&hashin, 0);
	buf_append(&hashin, raw.data, raw.len);
	buf_free(&raw);
	if (notice_template_parse(text.len > 0 ? buf_str(&text) : "", &m.csv,
	    &m.tmpl, &err) == -1)
		die("%s: %s", o->template, err);
	buf_free(&text);
	crypto_generichash(hash, sizeof(hash), hashin.data, hashin.len,
	    NULL, 0);
	buf_free(&hashin);
	if (notice_journal_open(o->journal, hash, &m.j, &err) == -1)
		die("%s: %s", o->journal, err);
	m.id = load_identity(o);
	server_opts(o, &m.so, &host, &pw);

	todo = xreallocarray(NULL, m.csv.n_rows + 1, sizeof(*todo));
	for (row = 1; row <= m.csv.n_rows; row++)
		if (notice_journal_row(m.j, row)->state != NOTICE_ROW_DONE)
			todo[n_todo++] = row;
	done = base = m.csv.n_rows - n_todo;
	fprintf(stderr, PROG ": journal %s: %zu rows, %zu to send (%s)\n",
	    notice_journal_id(m.j), m.csv.n_rows, n_todo, used);
	nw = o->connections;
	if (nw > n_todo)
		nw = (unsigned int)n_todo;
	pids = xcalloc(nw + 1, sizeof(*pids));
	fflush(NULL);
	for (w = 0; w < nw; w++) {
		pids[w] = fork();
		if (pids[w] == -1)
			die("fork: %s", strerror(errno));
		if (pids[w] == 0) {
			/* A killed parent takes its workers with it, so an
			 * interrupted merge stops sending at once. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() == 1)
				_exit(NOTICE_EXIT_ERROR);
			if (!o->journal_each)
				notice_journal_set_sync(m.j,
				    NOTICE_JOURNAL_SYNC_ROWS,
				    NOTICE_JOURNAL_SYNC_MS);
			for (k = w; k < n_todo; k += nw)
				merge_row(&m, todo[k]);
			journal_or_die(notice_journal_sync(m.j, &err), err);
			notice_smtp_close(m.smtp);
			notice_http_free(m.http);
			_exit(0);
		}
	}
	free_secret(pw);
	tty = o->progress == -1 ? isatty(STDERR_FILENO) : o->progress;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	alive = (int)nw;
	while (alive > 0) {
		usleep(200 * 1000);
		for (w = 0; w < nw; w++) {
			if (pids[w] <= 0)
				continue;
			if (waitpid(pids[w], &status, WNOHANG) == pids[w]) {
				pids[w] = 0;
				alive--;
				if (!WIFEXITED(status) ||
				    WEXITSTATUS(status) != 0)
					fprintf(stderr, PROG ": a sending "
					    "process failed\n");
			}
		}
		if (notice_journal_refresh(m.j, &newly, &err) == -1)
			die("%s: %s", o->journal, err);
		done += newly;
		clock_gettime(CLOCK_MONOTONIC, &now);
		el = (double)(now.tv_sec - t0.tv_sec) +
		    (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
		if (o->progress != 0 && (tty || now.tv_sec - last.tv_sec >= 2
		    || alive == 0)) {
			progress_show(tty, done, m.csv.n_rows, base, el,
			    alive == 0);
			last = now;
		}
	}
	if (notice_journal_refresh(m.j, &newly, &err) == -1)
		die("%s: %s", o->journal, err);
	status = merge_report(&m);
	free(pids);
	free(todo);
	free(host);
	govca_cms_identity_free(m.id);
	notice_journal_close(m.j);
	notice_template_free(&m.tmpl);
	csv_free(&m.csv);
	return status;
}

/* ---------------------------------------------------------------- main */

static unsigned int
default_connections(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	long n = cores > 0 ? cores * NOTICE_CONNECTIONS_PER_CORE : 0;

	if (n < NOTICE_DEFAULT_CONNECTIONS_MIN)
		n = NOTICE_DEFAULT_CONNECTIONS_MIN;
	if (n > NOTICE_DEFAULT_CONNECTIONS_MAX)
		n = NOTICE_DEFAULT_CONNECTIONS_MAX;
	return (unsigned int)n;
}

enum {
	OPT_FROM = 256, OPT_TO, OPT_SUBJECT, OPT_BODY, OPT_HTML, OPT_ATTACH,
	OPT_P12, OPT_P12_PASS, OPT_SERVER, OPT_USER, OPT_PASSWORD_FILE,
	OPT_CAFILE, OPT_TLS, OPT_OUTPUT, OPT_CTE, OPT_TEMPLATE, OPT_CSV,
	OPT_ENCRYPT, OPT_PKI_URL, OPT_MISSING, OPT_JOURNAL, OPT_REPORT,
	OPT_CONNECTIONS, OPT_CHARSET, OPT_PROGRESS, OPT_NO_PROGRESS,
	OPT_HELO, OPT_JOURNAL_SYNC,
};

static const struct option long_opts[] = {
	{ "from", required_argument, NULL, OPT_FROM },
	{ "to", required_argument, NULL, OPT_TO },
	{ "subject", required_argument, NULL, OPT_SUBJECT },
	{ "body", required_argument, NULL, OPT_BODY },
	{ "html", required_argument, NULL, OPT_HTML },
	{ "attach", required_argument, NULL, OPT_ATTACH },
	{ "p12", required_argument, NULL, OPT_P12 },
	{ "p12-pass-file", required_argument, NULL, OPT_P12_PASS },
	{ "server", required_argument, NULL, OPT_SERVER },
	{ "user", required_argument, NULL, OPT_USER },
	{ "password-file", required_argument, NULL, OPT_PASSWORD_FILE },
	{ "cafile", required_argument, NULL, OPT_CAFILE },
	{ "tls", required_argument, NULL, OPT_TLS },
	{ "output", required_argument, NULL, OPT_OUTPUT },
	{ "cte", required_argument, NULL, OPT_CTE },
	{ "template", required_argument, NULL, OPT_TEMPLATE },
	{ "csv", required_argument, NULL, OPT_CSV },
	{ "encrypt", no_argument, NULL, OPT_ENCRYPT },
	{ "pki-url", required_argument, NULL, OPT_PKI_URL },
	{ "missing-cert", required_argument, NULL, OPT_MISSING },
	{ "journal", required_argument, NULL, OPT_JOURNAL },
	{ "report", required_argument, NULL, OPT_REPORT },
	{ "connections", required_argument, NULL, OPT_CONNECTIONS },
	{ "charset", required_argument, NULL, OPT_CHARSET },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
	{ "helo", required_argument, NULL, OPT_HELO },
	{ "journal-sync", required_argument, NULL, OPT_JOURNAL_SYNC },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

int
main(int argc, char **argv)
{
	struct opts o;
	const char *cmd, *err;
	uint64_t n;
	int c;

	if (argc < 2)
		usage();
	cmd = argv[1];
	memset(&o, 0, sizeof(o));
	o.connections = default_connections();
	o.progress = -1;
	o.cte = SMIME_CTE_QUOTED_PRINTABLE;
	if (sodium_init() == -1)
		die("libsodium failed to initialise");
	signal(SIGPIPE, SIG_IGN);
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_FROM: o.from = optarg; break;
		case OPT_TO:
			if (o.n_to == NOTICE_MAX_TO)
				die("more than %d --to", NOTICE_MAX_TO);
			o.to[o.n_to++] = optarg;
			break;
		case OPT_SUBJECT: o.subject = optarg; break;
		case OPT_BODY: o.body = optarg; break;
		case OPT_HTML: o.html = optarg; break;
		case OPT_ATTACH:
			if (o.n_attach == NOTICE_MAX_ATTACH)
				die("more than %d --attach",
				    NOTICE_MAX_ATTACH);
			o.attach[o.n_attach++] = optarg;
			break;
		case OPT_P12: o.p12 = optarg; break;
		case OPT_P12_PASS: o.p12_pass_file = optarg; break;
		case OPT_SERVER: o.server = optarg; break;
		case OPT_USER: o.user = optarg; break;
		case OPT_PASSWORD_FILE: o.password_file = optarg; break;
		case OPT_CAFILE: o.cafile = optarg; break;
		case OPT_TLS:
			if (strcmp(optarg, "starttls") == 0)
				o.tls = NOTICE_TLS_STARTTLS;
			else if (strcmp(optarg, "implicit") == 0)
				o.tls = NOTICE_TLS_IMPLICIT;
			else if (strcmp(optarg, "none") == 0)
				o.tls = NOTICE_TLS_NONE;
			else
				die("--tls: starttls, implicit or none");
			break;
		case OPT_OUTPUT: o.output = optarg; break;
		case OPT_CTE:
			if (strcmp(optarg, "base64") == 0)
				o.cte = SMIME_CTE_BASE64;
			else if (strcmp(optarg, "qp") == 0 ||
			    strcmp(optarg, "quoted-printable") == 0)
				o.cte = SMIME_CTE_QUOTED_PRINTABLE;
			else
				die("--cte: base64 or qp");
			break;
		case OPT_TEMPLATE: o.template = optarg; break;
		case OPT_CSV: o.csv = optarg; break;
		case OPT_ENCRYPT: o.encrypt = 1; break;
		case OPT_PKI_URL: o.pki_url = optarg; break;
		case OPT_MISSING:
			if (strcmp(optarg, "signed") == 0)
				o.missing_skip = 0;
			else if (strcmp(optarg, "skip") == 0)
				o.missing_skip = 1;
			else
				die("--missing-cert: signed or skip");
			break;
		case OPT_JOURNAL: o.journal = optarg; break;
		case OPT_REPORT: o.report = optarg; break;
		case OPT_CONNECTIONS:
			if (strnum_u64(optarg, 1, NOTICE_MAX_CONNECTIONS, &n,
			    &err) == -1)
				die("--connections: %s (1..%d)", err,
				    NOTICE_MAX_CONNECTIONS);
			o.connections = (unsigned int)n;
			break;
		case OPT_CHARSET: o.charset = optarg; break;
		case OPT_PROGRESS: o.progress = 1; break;
		case OPT_NO_PROGRESS: o.progress = 0; break;
		case OPT_HELO: o.helo = optarg; break;
		case OPT_JOURNAL_SYNC:
			if (strcmp(optarg, "each") == 0)
				o.journal_each = 1;
			else if (strcmp(optarg, "batch") == 0)
				o.journal_each = 0;
			else
				die("--journal-sync: each or batch");
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (strcmp(cmd, "send") == 0)
		return cmd_send(&o);
	if (strcmp(cmd, "merge") == 0)
		return cmd_merge(&o);
	usage();
}
