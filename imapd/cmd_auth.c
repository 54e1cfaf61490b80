/*
 * cmd_auth.c - IMAP commands of any state and of the not-authenticated
 * state: CAPABILITY, NOOP, LOGOUT, ID, ENABLE, COMPRESS, STARTTLS, LOGIN
 * and AUTHENTICATE (PLAIN, LOGIN, SASL-IR) through lib/sasl.
 *
 * govmail-imapd workers.  The password check (Argon2id) runs on the
 * worker's helper threads (lib/tpool) with a store handle per thread; the
 * loop only frames the exchange.  Client text is untrusted: user names
 * reach logs only through log_escape(), passwords never.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "imapd.h"
#include "log.h"
#include "sasl.h"
#include "tpool.h"
#include "xmalloc.h"

/* Server name given to libsasl2. */
#define IMAPD_SASL_FQDN "localhost"

enum auth_kind {
	AUTH_LOGIN,
	AUTH_START,
	AUTH_STEP,
};

struct imap_auth_job {
	struct imap_session *s;		/* NULL once the session left */
	struct sasl_session *sasl;
	enum auth_kind kind;
	char *user;
	char *pass;
	char mech[SASL_MECH_NAME_MAX + 1];
	struct buf resp;
	int has_resp;
	enum sasl_session_result result;
	const uint8_t *out;
	size_t out_len;
	const char *error;
};

/* Each helper thread keeps its own store handle (password checks, upkeep). */
static __thread struct store *helper_store;

struct store *
imap_helper_store(const struct config *cfg)
{
	const char *err;

	if (helper_store == NULL &&
	    store_open(cfg, 0, &helper_store, &err) < 0) {
		log_warnx("event=helper-store-open-failed error=%s", err);
		helper_store = NULL;
	}
	return helper_store;
}

static int
auth_verify(const char *user, const char *pass, void *ctx)
{
	struct store *st = imap_helper_store(ctx);

	return st != NULL ? store_password_verify(st, user, pass) : -1;
}

static void
job_free(struct imap_auth_job *j)
{
	if (j->pass != NULL) {
		sodium_memzero(j->pass, strlen(j->pass));
		free(j->pass);
	}
	free(j->user);
	buf_free(&j->resp);
	free(j);
}

static void
job_work(void *arg)
{
	struct imap_auth_job *j = arg;

	switch (j->kind) {
	case AUTH_LOGIN:
		j->result = sasl_session_check_password(j->sasl, j->user,
		    j->pass, &j->error);
		break;
	case AUTH_START:
		j->result = sasl_session_start(j->sasl, j->mech, j->resp.data,
		    j->resp.len, j->has_resp, &j->out, &j->out_len, &j->error);
		break;
	case AUTH_STEP:
		j->result = sasl_session_step(j->sasl, j->resp.data,
		    j->resp.len, &j->out, &j->out_len, &j->error);
		break;
	}
}

static void
auth_end(struct imap_session *s)
{
	sasl_session_free(s->sasl);
	s->sasl = NULL;
	s->auth_wait = 0;
	imap_command_finished(s);
}

static void
job_done(void *arg)
{
	struct imap_auth_job *j = arg;
	struct imap_session *s = j->s;
	char esc[256];

	if (s == NULL) {
		sasl_session_free(j->sasl);
		job_free(j);
		return;
	}
	s->busy = 0;
	s->job = NULL;
	switch (j->result) {
	case SASL_SESSION_CONTINUE: {
		char *b64 = sasl_base64_encode(j->out, j->out_len);

		imap_printf(s, "+ %s\r\n", b64);
		free(b64);
		s->auth_wait = 1;
		conn_resume_input(s->conn);
		break;
	}
	case SASL_SESSION_OK: {
		struct buf caps;

		imap_session_login(s, sasl_session_user(s->sasl));
		buf_init(&caps, 4096);
		imap_capabilities(s, &caps);
		imap_tagged(s, "OK", "[CAPABILITY %s] Logged in",
		    imap_bstr(&caps));
		buf_free(&caps);
		auth_end(s);
		break;
	}
	case SASL_SESSION_FAIL:
	case SASL_SESSION_ERROR:
		log_info("s=%s event=auth-failed reason=%s", s->sid,
		    log_escape(j->error != NULL ? j->error : "",
		    j->error != NULL ? strlen(j->error) : 0, esc, sizeof(esc)));
		switch (sasl_session_reason(s->sasl)) {
		case SASL_REASON_AUTH:
			sasl_ratelimit_failed(s->w->rl, s->remote,
			    (int64_t)time(NULL));
			imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] "
			    "Authentication failed");
			break;
		case SASL_REASON_TLS_REQUIRED:
			imap_tagged(s, "NO", "[PRIVACYREQUIRED] Use STARTTLS "
			    "first");
			break;
		case SASL_REASON_MECH:
			imap_tagged(s, "NO", "Unsupported mechanism");
			break;
		case SASL_REASON_SYNTAX:
			imap_tagged(s, "BAD", "Malformed authentication data");
			break;
		default:
			imap_tagged(s, "NO", "[UNAVAILABLE] Authentication "
			    "temporarily unavailable");
			break;
		}
		auth_end(s);
		break;
	}
	job_free(j);
}

void
imap_auth_detach(struct imap_session *s)
{
	if (s->job != NULL) {
		/* The job owns the SASL session now; done() frees both. */
		s->job->s = NULL;
		s->job = NULL;
		s->sasl = NULL;
	}
	sasl_session_free(s->sasl);
	s->sasl = NULL;
}

static int
plaintext_ok(struct imap_session *s)
{
	return conn_is_tls(s->conn) ||
	    (s->w->plaintext_loopback && s->loopback);
}

static int
auth_session_new(struct imap_session *s)
{
	struct sasl_session_params p;
	const char *err;

	memset(&p, 0, sizeof(p));
	p.service = "imap";
	p.server_fqdn = IMAPD_SASL_FQDN;
	p.local_addr = s->local[0] != '\0' ? s->local : NULL;
	p.remote_addr = s->remote[0] != '\0' ? s->remote : NULL;
	p.tls_active = conn_is_tls(s->conn);
	p.plaintext_allowed = s->w->plaintext_loopback && s->loopback;
	p.verify = auth_verify;
	p.verify_ctx = s->w->cfg;
	sasl_session_free(s->sasl);
	s->sasl = NULL;
	if (sasl_session_new(&p, &s->sasl, &err) < 0) {
		log_warnx("s=%s event=sasl-session-failed error=%s", s->sid,
		    err);
		return -1;
	}
	return 0;
}

/* Hand j to a helper thread; on failure reply and end the command. */
static enum imap_cmd_result
job_submit(struct imap_session *s, struct imap_auth_job *j)
{
	const char *err;

	j->s = s;
	j->sasl = s->sasl;
	s->auth_wait = 0;
	if (tpool_submit(s->w->pool, job_work, job_done, j, &err) < 0) {
		job_free(j);
		imap_tagged(s, "NO", "[UNAVAILABLE] Server busy, try again "
		    "later");
		sasl_session_free(s->sasl);
		s->sasl = NULL;
		return IMAP_CMD_DONE;
	}
	s->busy = 1;
	s->job = j;
	return IMAP_CMD_MORE;
}

static int
rate_limited(struct imap_session *s)
{
	if (sasl_ratelimit_allowed(s->w->rl, s->remote, (int64_t)time(NULL)))
		return 0;
	imap_tagged(s, "NO", "[UNAVAILABLE] Too many failed logins, try "
	    "again later");
	return 1;
}

enum imap_cmd_result
cmd_login(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	struct imap_auth_job *j;

	(void)uid;
	if (n != 2 || !imap_arg_is_string(&args[0]) ||
	    !imap_arg_is_string(&args[1])) {
		imap_tagged(s, "BAD", "LOGIN needs a user name and a password");
		return IMAP_CMD_DONE;
	}
	if (!plaintext_ok(s)) {
		imap_tagged(s, "NO", "[PRIVACYREQUIRED] LOGIN is disabled "
		    "before STARTTLS");
		return IMAP_CMD_DONE;
	}
	if (rate_limited(s))
		return IMAP_CMD_DONE;
	if (memchr(args[0].str, '\0', args[0].len) != NULL ||
	    memchr(args[1].str, '\0', args[1].len) != NULL) {
		imap_tagged(s, "NO", "[AUTHENTICATIONFAILED] Authentication "
		    "failed");
		return IMAP_CMD_DONE;
	}
	if (auth_session_new(s) < 0) {
		imap_tagged(s, "NO", "[UNAVAILABLE] Authentication "
		    "temporarily unavailable");
		return IMAP_CMD_DONE;
	}
	j = xcalloc(1, sizeof(*j));
	buf_init(&j->resp, SASL_RESPONSE_MAX);
	j->kind = AUTH_LOGIN;
	j->user = xstrdup(args[0].str);
	j->pass = xstrdup(args[1].str);
	return job_submit(s, j);
}

enum imap_cmd_result
cmd_authenticate(struct imap_session *s, const struct imap_arg *args,
    size_t n, int uid)
{
	struct imap_auth_job *j;
	const char *err;

	(void)uid;
	if (n < 1 || n > 2 || args[0].type != IMAP_ARG_ATOM ||
	    args[0].len > SASL_MECH_NAME_MAX ||
	    (n == 2 && args[1].type != IMAP_ARG_ATOM)) {
		imap_tagged(s, "BAD", "AUTHENTICATE needs a mechanism");
		return IMAP_CMD_DONE;
	}
	if (!plaintext_ok(s)) {
		imap_tagged(s, "NO", "[PRIVACYREQUIRED] Use STARTTLS first");
		return IMAP_CMD_DONE;
	}
	if (rate_limited(s))
		return IMAP_CMD_DONE;
	if (auth_session_new(s) < 0) {
		imap_tagged(s, "NO", "[UNAVAILABLE] Authentication "
		    "temporarily unavailable");
		return IMAP_CMD_DONE;
	}
	j = xcalloc(1, sizeof(*j));
	buf_init(&j->resp, SASL_RESPONSE_MAX);
	j->kind = AUTH_START;
	(void)str_copy(j->mech, sizeof(j->mech), args[0].str);
	if (n == 2) {
		if (sasl_base64_decode(args[1].str, args[1].len, &j->resp,
		    &err) < 0) {
			job_free(j);
			sasl_session_free(s->sasl);
			s->sasl = NULL;
			imap_tagged(s, "BAD", "Invalid base64 initial "
			    "response");
			return IMAP_CMD_DONE;
		}
		j->has_resp = 1;
	}
	return job_submit(s, j);
}

void
imap_auth_line(struct imap_session *s, const char *line, size_t len)
{
	struct imap_auth_job *j;
	const char *err;

	s->auth_wait = 0;
	if (len == 1 && line[0] == '*') {
		imap_tagged(s, "BAD", "Authentication cancelled");
		auth_end(s);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	buf_init(&j->resp, SASL_RESPONSE_MAX);
	j->kind = AUTH_STEP;
	if (sasl_base64_decode(line, len, &j->resp, &err) < 0) {
		job_free(j);
		imap_tagged(s, "BAD", "Invalid base64 response");
		auth_end(s);
		return;
	}
	conn_pause_input(s->conn);
	if (job_submit(s, j) == IMAP_CMD_DONE)
		imap_command_finished(s);
}

enum imap_cmd_result
cmd_capability(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	struct buf caps;

	(void)args;
	(void)uid;
	if (n != 0) {
		imap_tagged(s, "BAD", "CAPABILITY takes no arguments");
		return IMAP_CMD_DONE;
	}
	buf_init(&caps, 4096);
	imap_capabilities(s, &caps);
	imap_printf(s, "* CAPABILITY %s\r\n", imap_bstr(&caps));
	buf_free(&caps);
	imap_tagged(s, "OK", "CAPABILITY completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_noop(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)args;
	(void)uid;
	if (n != 0) {
		imap_tagged(s, "BAD", "NOOP takes no arguments");
		return IMAP_CMD_DONE;
	}
	imap_tagged(s, "OK", "NOOP completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_logout(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	(void)args;
	(void)uid;
	if (n != 0) {
		imap_tagged(s, "BAD", "LOGOUT takes no arguments");
		return IMAP_CMD_DONE;
	}
	imap_printf(s, "* BYE Logging out\r\n");
	s->state = IMAP_STATE_LOGOUT;
	imap_tagged(s, "OK", "LOGOUT completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_id(struct imap_session *s, const struct imap_arg *args, size_t n, int uid)
{
	(void)uid;
	if (n != 1 || (args[0].type == IMAP_ARG_LIST ?
	    (args[0].nlist % 2 != 0 ||
	    args[0].nlist > 2 * IMAPD_ID_PAIRS_MAX) :
	    !imap_arg_atom_is(&args[0], "NIL"))) {
		imap_tagged(s, "BAD", "ID needs NIL or a list of pairs");
		return IMAP_CMD_DONE;
	}
	imap_printf(s, "* ID (\"name\" \"govmail\" \"vendor\" "
	    "\"govmail\")\r\n");
	imap_tagged(s, "OK", "ID completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_enable(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	struct buf out;
	size_t i;

	(void)uid;
	if (n == 0) {
		imap_tagged(s, "BAD", "ENABLE needs capabilities");
		return IMAP_CMD_DONE;
	}
	buf_init(&out, 1024);
	(void)buf_append_str(&out, "* ENABLED");
	for (i = 0; i < n; i++) {
		unsigned bit = 0;
		const char *name = NULL;

		if (args[i].type != IMAP_ARG_ATOM) {
			buf_free(&out);
			imap_tagged(s, "BAD", "ENABLE takes atoms");
			return IMAP_CMD_DONE;
		}
		if (imap_arg_atom_is(&args[i], "CONDSTORE")) {
			bit = IMAPD_EN_CONDSTORE;
			name = "CONDSTORE";
		} else if (imap_arg_atom_is(&args[i], "QRESYNC")) {
			bit = IMAPD_EN_QRESYNC | IMAPD_EN_CONDSTORE;
			name = "QRESYNC";
		} else if (imap_arg_atom_is(&args[i], "IMAP4rev2")) {
			bit = IMAPD_EN_REV2;
			name = "IMAP4rev2";
		} else if (imap_arg_atom_is(&args[i], "UTF8=ACCEPT")) {
			bit = IMAPD_EN_UTF8;
			name = "UTF8=ACCEPT";
		}
		if (bit != 0 && (s->enabled & bit) != bit) {
			s->enabled |= bit;
			(void)buf_printf(&out, " %s", name);
		}
	}
	imap_printf(s, "%s\r\n", imap_bstr(&out));
	buf_free(&out);
	imap_tagged(s, "OK", "ENABLE completed");
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_compress(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	const char *err;

	(void)uid;
	if (n != 1 || !imap_arg_atom_is(&args[0], "DEFLATE")) {
		imap_tagged(s, "BAD", "COMPRESS DEFLATE only");
		return IMAP_CMD_DONE;
	}
	if (conn_compressing(s->conn)) {
		imap_tagged(s, "NO", "[COMPRESSIONACTIVE] Already compressing");
		return IMAP_CMD_DONE;
	}
	imap_tagged(s, "OK", "DEFLATE active");
	if (conn_compress(s->conn, &err) < 0) {
		log_warnx("s=%s event=compress-failed error=%s", s->sid, err);
		conn_close(s->conn);
	}
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_starttls(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	const char *err;
	size_t dropped = 0;

	(void)args;
	(void)uid;
	if (n != 0) {
		imap_tagged(s, "BAD", "STARTTLS takes no arguments");
		return IMAP_CMD_DONE;
	}
	if (conn_is_tls(s->conn) || s->w->tls == NULL) {
		imap_tagged(s, "BAD", "TLS is not available");
		return IMAP_CMD_DONE;
	}
	imap_tagged(s, "OK", "Begin TLS negotiation now");
	/* SECURITY: pipelined plaintext after STARTTLS is discarded. */
	if (conn_starttls(s->conn, s->w->tls, &dropped, &err) < 0) {
		log_warnx("s=%s event=starttls-failed error=%s", s->sid, err);
		conn_close(s->conn);
		return IMAP_CMD_DONE;
	}
	if (dropped > 0)
		log_info("s=%s event=starttls-discarded bytes=%zu", s->sid,
		    dropped);
	imap_parser_reset(s->parser);
	return IMAP_CMD_DONE;
}
