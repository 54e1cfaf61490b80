/*
 * sasl.c - server-side SASL glue on Cyrus libsasl2 (see sasl.h).
 *
 * Runs in every daemon worker, on the helper threads that run password
 * checks.  Trusts nothing the client sends: responses are length-checked
 * before libsasl2 sees them, user names are checked by our canonicalisation
 * callback, and the only password check is the caller's verify function.
 * Trusts libsasl2 and its PLAIN/LOGIN plugins (Debian libsasl2-modules).
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sasl/sasl.h>
#include <sodium.h>

#include "buf.h"
#include "log.h"
#include "ratelimit.h"
#include "sasl.h"
#include "strnum.h"
#include "xmalloc.h"

/* The only mechanisms we load; both are plaintext (need TLS). */
#define SASL_GLUE_MECH_LIST "PLAIN LOGIN"
/* The plugin files that provide them, in the libsasl2 plugin folder. */
static const char *const sasl_glue_plugins[] = {
	"libplain.so", "liblogin.so", NULL
};
/*
 * A pwcheck_method no libsasl2 verifier is called: when our callback says
 * no, libsasl2 must not go on to try sasldb, saslauthd or auxprop.
 */
#define SASL_GLUE_PWCHECK "govmail"
/* SSF we claim for TLS: enough to lift SASL_SEC_NOPLAINTEXT (> 1). */
#define SASL_GLUE_TLS_SSF 128
/* Longest announced mechanism list we keep. */
#define SASL_GLUE_MECHS_MAX 128
/* Longest libsasl2 log message we pass on (escaped). */
#define SASL_GLUE_LOG_MAX 256

enum sasl_state {
	SASL_STATE_NEW,
	SASL_STATE_RUNNING,
	SASL_STATE_DONE,
};

/* verify_result before verify was called. */
#define SASL_VERIFY_NOT_CALLED 2

struct sasl_session {
	sasl_conn_t *conn;
	/* Per-connection callbacks; their context is the session. */
	sasl_callback_t callbacks[4];
	sasl_verify_fn *verify;
	void *verify_ctx;
	int tls_active;
	int plaintext_allowed;
	unsigned int max_steps;
	unsigned int steps;
	int login_user_next;	/* LOGIN: the next response is the user */
	enum sasl_state state;
	int verify_result;	/* 1, 0, -1, or SASL_VERIFY_NOT_CALLED */
	const char *reason;	/* why a callback refused, static text */
	enum sasl_reason reason_kind;	/* of the last failure */
	char mechs[SASL_GLUE_MECHS_MAX];
	char mech[SASL_MECH_NAME_MAX + 1];
	char *user;
};

static pthread_once_t sasl_glue_once = PTHREAD_ONCE_INIT;
static int sasl_glue_status = -1;
static const char *sasl_glue_error = "sasl_glue_init not called";
static char sasl_glue_mechs_buf[SASL_GLUE_MECHS_MAX];

/* ---- process-wide callbacks ------------------------------------------ */

static int
glue_getopt(void *context, const char *plugin_name, const char *option,
    const char **result, unsigned *len)
{
	const char *val = NULL;

	(void)context;
	(void)plugin_name;
	if (option == NULL || result == NULL)
		return SASL_BADPARAM;
	if (strcmp(option, "mech_list") == 0)
		val = SASL_GLUE_MECH_LIST;
	else if (strcmp(option, "pwcheck_method") == 0)
		val = SASL_GLUE_PWCHECK;
	if (val == NULL)
		return SASL_FAIL;	/* libsasl2's built-in default */
	*result = val;
	if (len != NULL)
		*len = (unsigned)strlen(val);
	return SASL_OK;
}

static int
glue_log(void *context, int level, const char *message)
{
	char esc[SASL_GLUE_LOG_MAX * LOG_ESCAPE_WIDTH + 1];

	(void)context;
	if (message == NULL)
		return SASL_OK;
	/* SECURITY: PASS-level traces may hold passwords: never kept. */
	if (level == SASL_LOG_PASS || level == SASL_LOG_NONE)
		return SASL_OK;
	/*
	 * Expected, on purpose: on every wrong password our checkpass said
	 * no and libsasl2 finds no verifier of its own to try; on every
	 * exchange it finds no auxprop plugin (we load none).
	 */
	if (str_has_prefix(message, "unknown password verifier") ||
	    str_has_prefix(message, "could not find auxprop plugin"))
		return SASL_OK;
	log_escape(message, strnlen(message, SASL_GLUE_LOG_MAX), esc,
	    sizeof(esc));
	if (level == SASL_LOG_ERR)
		log_warnx("sasl: event=libsasl2 msg=%s", esc);
	else
		log_debug("sasl: event=libsasl2 level=%d msg=%s", level, esc);
	return SASL_OK;
}

static const char *
path_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

/*
 * SECURITY: libsasl2 asks before it loads a plugin or reads a configuration
 * file.  Only the PLAIN and LOGIN plugins are used; every other plugin
 * (sasldb, anonymous, the digest family, ...) and every configuration file
 * (/etc/sasl2/APP.conf) is skipped, so the behaviour does not depend on
 * what else is installed.
 */
static int
glue_verifyfile(void *context, const char *file, sasl_verify_type_t type)
{
	size_t i;

	(void)context;
	if (file == NULL)
		return SASL_CONTINUE;
	if (type != SASL_VRFY_PLUGIN)
		return SASL_CONTINUE;
	for (i = 0; sasl_glue_plugins[i] != NULL; i++)
		if (strcmp(path_basename(file), sasl_glue_plugins[i]) == 0)
			return SASL_OK;
	return SASL_CONTINUE;
}

static void *
glue_mutex_alloc(void)
{
	pthread_mutex_t *m = xmalloc(sizeof(*m));

	if (pthread_mutex_init(m, NULL) != 0) {
		free(m);
		return NULL;
	}
	return m;
}

static int
glue_mutex_lock(void *m)
{
	return pthread_mutex_lock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static int
glue_mutex_unlock(void *m)
{
	return pthread_mutex_unlock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static void
glue_mutex_free(void *m)
{
	if (m == NULL)
		return;
	pthread_mutex_destroy(m);
	free(m);
}

/* Cast helper: libsasl2 stores every callback as int (*)(void). */
#define SASL_GLUE_CB(fn) ((int (*)(void))(void (*)(void))(fn))

static const sasl_callback_t sasl_glue_global_callbacks[] = {
	{ SASL_CB_GETOPT, SASL_GLUE_CB(glue_getopt), NULL },
	{ SASL_CB_LOG, SASL_GLUE_CB(glue_log), NULL },
	{ SASL_CB_VERIFYFILE, SASL_GLUE_CB(glue_verifyfile), NULL },
	{ SASL_CB_LIST_END, NULL, NULL },
};

/* 1 if word (case-insensitive) is one of the space-separated list. */
static int
mech_in_list(const char *list, const char *word)
{
	size_t wlen = strlen(word);
	const char *p = list;

	while (*p != '\0') {
		size_t n = strcspn(p, " ");

		if (n == wlen && strncasecmp(p, word, n) == 0)
			return 1;
		p += n;
		while (*p == ' ')
			p++;
	}
	return 0;
}

static void
glue_init_once(void)
{
	const char **list;
	int r;
	size_t i;

	sasl_set_mutex(glue_mutex_alloc, glue_mutex_lock, glue_mutex_unlock,
	    glue_mutex_free);
	r = sasl_server_init(sasl_glue_global_callbacks, "govmail");
	if (r != SASL_OK) {
		sasl_glue_error = "sasl_server_init failed";
		return;
	}
	list = sasl_global_listmech();
	sasl_glue_mechs_buf[0] = '\0';
	for (i = 0; list != NULL && list[i] != NULL; i++) {
		if (!mech_in_list(SASL_GLUE_MECH_LIST, list[i]))
			continue;
		if (sasl_glue_mechs_buf[0] != '\0')
			str_append(sasl_glue_mechs_buf,
			    sizeof(sasl_glue_mechs_buf), " ");
		str_append(sasl_glue_mechs_buf, sizeof(sasl_glue_mechs_buf),
		    list[i]);
	}
	if (!mech_in_list(sasl_glue_mechs_buf, "PLAIN") ||
	    !mech_in_list(sasl_glue_mechs_buf, "LOGIN")) {
		sasl_glue_error = "libsasl2 PLAIN/LOGIN plugins not found "
		    "(install the libsasl2-modules package)";
		sasl_glue_mechs_buf[0] = '\0';
		return;
	}
	sasl_glue_status = 0;
}

int
sasl_glue_init(const char **error_r)
{
	if (pthread_once(&sasl_glue_once, glue_init_once) != 0) {
		*error_r = "pthread_once failed";
		return -1;
	}
	if (sasl_glue_status != 0) {
		*error_r = sasl_glue_error;
		return -1;
	}
	return 0;
}

const char *
sasl_glue_mechs(void)
{
	return sasl_glue_mechs_buf;
}

/* ---- per-connection callbacks ---------------------------------------- */

/*
 * The password check: libsasl2's PLAIN/LOGIN call this with the
 * canonicalised user; we ask the caller.  Anything but "right" is a no.
 */
static int
session_checkpass(sasl_conn_t *conn, void *context, const char *user,
    const char *pass, unsigned passlen, struct propctx *propctx)
{
	struct sasl_session *s = context;
	char *copy;
	int r;

	(void)conn;
	(void)propctx;
	if (user == NULL || pass == NULL) {
		s->reason = "malformed response";
		s->reason_kind = SASL_REASON_SYNTAX;
		return SASL_BADPARAM;
	}
	if (memchr(pass, '\0', passlen) != NULL) {
		s->reason = "NUL in password";
		s->reason_kind = SASL_REASON_AUTH;
		s->verify_result = 0;
		return SASL_BADAUTH;
	}
	copy = xmalloc(xadd(passlen, 1));
	memcpy(copy, pass, passlen);
	copy[passlen] = '\0';
	r = s->verify(user, copy, s->verify_ctx);
	sodium_memzero(copy, passlen);
	free(copy);
	if (r > 0) {
		s->verify_result = 1;
		return SASL_OK;
	}
	if (r == 0) {
		s->verify_result = 0;
		s->reason = "authentication failed";
		s->reason_kind = SASL_REASON_AUTH;
		return SASL_BADAUTH;
	}
	s->verify_result = -1;
	s->reason = "password check unavailable";
	s->reason_kind = SASL_REASON_UNAVAILABLE;
	return SASL_UNAVAIL;
}

/* NULL if a user name is acceptable, else why not (static text). */
static const char *
user_name_problem(const char *in, size_t len)
{
	size_t i;

	if (len == 0)
		return "empty user name";
	if (len > SASL_USER_MAX)
		return "user name too long";
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c <= 0x20 || c == 0x7f)
			return "bad character in user name";
	}
	return NULL;
}

/*
 * SECURITY: the user name is taken exactly as sent (no realm appended, no
 * trimming), and refused if empty, too long, or holding control bytes or
 * spaces, so what verify sees and what sasl_session_user() returns are the
 * same string.
 */
static int
session_canon_user(sasl_conn_t *conn, void *context, const char *in,
    unsigned inlen, unsigned flags, const char *user_realm, char *out,
    unsigned out_max, unsigned *out_len)
{
	struct sasl_session *s = context;

	(void)conn;
	(void)flags;
	(void)user_realm;
	s->reason_kind = SASL_REASON_AUTH;
	if (in == NULL || inlen >= out_max) {
		s->reason = "user name too long";
		return SASL_BADPROT;
	}
	if ((s->reason = user_name_problem(in, inlen)) != NULL)
		return SASL_BADPROT;
	memmove(out, in, inlen);
	out[inlen] = '\0';
	*out_len = inlen;
	s->reason_kind = SASL_REASON_NONE;
	return SASL_OK;
}

/* SECURITY: no proxy authorization: authzid must equal authcid. */
static int
session_authorize(sasl_conn_t *conn, void *context, const char *requested,
    unsigned rlen, const char *auth_identity, unsigned alen,
    const char *def_realm, unsigned urlen, struct propctx *propctx)
{
	struct sasl_session *s = context;

	(void)conn;
	(void)def_realm;
	(void)urlen;
	(void)propctx;
	if (requested != NULL && auth_identity != NULL && rlen == alen &&
	    memcmp(requested, auth_identity, alen) == 0)
		return SASL_OK;
	s->reason = "authorization identity differs from authentication "
	    "identity";
	s->reason_kind = SASL_REASON_AUTH;
	sasl_seterror(conn, SASL_NOLOG, "proxy authorization refused");
	return SASL_NOAUTHZ;
}

/* ---- sessions --------------------------------------------------------- */

static int
is_plaintext_mech(const char *mech)
{
	return str_casecmp(mech, "PLAIN") == 0 ||
	    str_casecmp(mech, "LOGIN") == 0;
}

/*
 * Split "ip;port" (or a bare ip when port_required is 0) and check both
 * parts are numeric.  Fills ip (size INET6_ADDRSTRLEN).  Returns 1 if
 * well-formed.
 */
static int
addr_parse(const char *addr, int port_required, char *ip)
{
	uint64_t port;
	const char *perr;
	struct in6_addr a6;
	struct in_addr a4;
	size_t n;

	if (addr == NULL)
		return 0;
	n = strcspn(addr, ";");
	if (n == 0 || n >= INET6_ADDRSTRLEN)
		return 0;
	memcpy(ip, addr, n);
	ip[n] = '\0';
	if (inet_pton(AF_INET, ip, &a4) != 1 &&
	    inet_pton(AF_INET6, ip, &a6) != 1)
		return 0;
	if (addr[n] == '\0')
		return !port_required;
	return strnum_u64(addr + n + 1, 0, 65535, &port, &perr) == 0;
}

int
sasl_session_new(const struct sasl_session_params *p,
    struct sasl_session **s_r, const char **error_r)
{
	struct sasl_session *s;
	sasl_security_properties_t secprops;
	const char *list = NULL;
	unsigned listlen = 0;
	int count = 0;
	int r;

	*s_r = NULL;
	if (p == NULL || p->verify == NULL || p->service == NULL ||
	    p->service[0] == '\0' || p->server_fqdn == NULL ||
	    p->server_fqdn[0] == '\0') {
		*error_r = "sasl_session_new: service, server_fqdn and verify "
		    "are required";
		return -1;
	}
	{
		char ip[INET6_ADDRSTRLEN];

		/*
		 * libsasl2 would resolve a name here (and leaks on that
		 * error path): only numeric "ip;port" gets through.
		 */
		if ((p->local_addr != NULL &&
		    !addr_parse(p->local_addr, 1, ip)) ||
		    (p->remote_addr != NULL &&
		    !addr_parse(p->remote_addr, 1, ip))) {
			*error_r = "sasl_session_new: addresses must be "
			    "numeric ip;port";
			return -1;
		}
	}
	if (sasl_glue_init(error_r) < 0)
		return -1;

	s = xcalloc(1, sizeof(*s));
	s->verify = p->verify;
	s->verify_ctx = p->verify_ctx;
	s->tls_active = p->tls_active != 0;
	s->plaintext_allowed = p->plaintext_allowed != 0;
	s->max_steps = p->max_steps != 0 ? p->max_steps : SASL_STEPS_MAX;
	s->state = SASL_STATE_NEW;
	s->verify_result = SASL_VERIFY_NOT_CALLED;
	s->callbacks[0].id = SASL_CB_SERVER_USERDB_CHECKPASS;
	s->callbacks[0].proc = SASL_GLUE_CB(session_checkpass);
	s->callbacks[0].context = s;
	s->callbacks[1].id = SASL_CB_CANON_USER;
	s->callbacks[1].proc = SASL_GLUE_CB(session_canon_user);
	s->callbacks[1].context = s;
	s->callbacks[2].id = SASL_CB_PROXY_POLICY;
	s->callbacks[2].proc = SASL_GLUE_CB(session_authorize);
	s->callbacks[2].context = s;
	s->callbacks[3].id = SASL_CB_LIST_END;

	/* user_realm NULL: libsasl2 appends no "@realm" to user names. */
	r = sasl_server_new(p->service, p->server_fqdn, NULL, p->local_addr,
	    p->remote_addr, s->callbacks, 0, &s->conn);
	if (r != SASL_OK) {
		*error_r = r == SASL_BADPARAM ?
		    "sasl_server_new: bad parameter (addresses are ip;port)" :
		    "sasl_server_new failed";
		if (s->conn != NULL)
			sasl_dispose(&s->conn);
		free(s);
		return -1;
	}

	/*
	 * No SASL security layer (TLS is the layer).  SECURITY: without
	 * TLS, SASL_SEC_NOPLAINTEXT hides PLAIN and LOGIN unless the caller
	 * allowed plaintext; with TLS the external SSF lifts it.
	 */
	memset(&secprops, 0, sizeof(secprops));
	secprops.min_ssf = 0;
	secprops.max_ssf = 0;
	secprops.maxbufsize = 0;
	secprops.security_flags = SASL_SEC_NOANONYMOUS;
	if (!s->tls_active && !s->plaintext_allowed)
		secprops.security_flags |= SASL_SEC_NOPLAINTEXT;
	r = sasl_setprop(s->conn, SASL_SEC_PROPS, &secprops);
	if (r == SASL_OK && s->tls_active) {
		sasl_ssf_t ssf = SASL_GLUE_TLS_SSF;

		r = sasl_setprop(s->conn, SASL_SSF_EXTERNAL, &ssf);
	}
	if (r != SASL_OK) {
		*error_r = "sasl_setprop failed";
		sasl_session_free(s);
		return -1;
	}

	r = sasl_listmech(s->conn, NULL, "", " ", "", &list, &listlen, &count);
	s->mechs[0] = '\0';
	if (r == SASL_OK && list != NULL) {
		const char *q = list;

		/* Keep only what we loaded; again refuse plaintext w/o TLS. */
		while (*q != '\0') {
			char word[SASL_MECH_NAME_MAX + 1];
			size_t n = strcspn(q, " ");

			if (n > 0 && n <= SASL_MECH_NAME_MAX) {
				memcpy(word, q, n);
				word[n] = '\0';
				if (mech_in_list(SASL_GLUE_MECH_LIST, word) &&
				    (!is_plaintext_mech(word) ||
				    s->tls_active || s->plaintext_allowed)) {
					if (s->mechs[0] != '\0')
						str_append(s->mechs,
						    sizeof(s->mechs), " ");
					str_append(s->mechs, sizeof(s->mechs),
					    word);
				}
			}
			q += n;
			while (*q == ' ')
				q++;
		}
	}
	/* SASL_NOMECH from listmech just means "nothing to offer". */
	*s_r = s;
	return 0;
}

void
sasl_session_free(struct sasl_session *s)
{
	if (s == NULL)
		return;
	if (s->conn != NULL)
		sasl_dispose(&s->conn);
	free(s->user);
	sodium_memzero(s, sizeof(*s));
	free(s);
}

const char *
sasl_session_mechs(struct sasl_session *s)
{
	return s->mechs;
}

const char *
sasl_session_user(const struct sasl_session *s)
{
	return s->user;
}

const char *
sasl_session_mech(const struct sasl_session *s)
{
	return s->mech[0] != '\0' ? s->mech : NULL;
}

enum sasl_reason
sasl_session_reason(const struct sasl_session *s)
{
	return s->reason_kind;
}

static enum sasl_session_result
session_fail(struct sasl_session *s, enum sasl_reason kind, const char *why,
    const char **error_r)
{
	s->state = SASL_STATE_DONE;
	s->reason_kind = kind;
	*error_r = why;
	return SASL_SESSION_FAIL;
}

static enum sasl_session_result
session_error(struct sasl_session *s, const char *why, const char **error_r)
{
	s->state = SASL_STATE_DONE;
	s->reason_kind = SASL_REASON_UNAVAILABLE;
	*error_r = why;
	return SASL_SESSION_ERROR;
}

/* Turn a libsasl2 result into ours. */
static enum sasl_session_result
session_result(struct sasl_session *s, int r, const char *out,
    unsigned outlen, const uint8_t **out_r, size_t *out_len_r,
    const char **error_r)
{
	const void *user = NULL;

	switch (r) {
	case SASL_CONTINUE:
		s->reason_kind = SASL_REASON_NONE;
		*out_r = (const uint8_t *)(out != NULL ? out : "");
		*out_len_r = out != NULL ? outlen : 0;
		return SASL_SESSION_CONTINUE;
	case SASL_OK:
		/*
		 * SECURITY: a broken invariant, not a login: every mechanism
		 * we load checks the password through verify.
		 */
		if (s->verify_result != 1) {
			log_warnx("sasl: event=invariant mech=%s "
			    "msg=success_without_password_check", s->mech);
			return session_error(s, "mechanism succeeded without "
			    "a password check", error_r);
		}
		if (sasl_getprop(s->conn, SASL_USERNAME, &user) != SASL_OK ||
		    user == NULL || ((const char *)user)[0] == '\0')
			return session_error(s, "no user name after "
			    "authentication", error_r);
		s->state = SASL_STATE_DONE;
		s->reason_kind = SASL_REASON_NONE;
		s->user = xstrdup(user);
		return SASL_SESSION_OK;
	default:
		break;
	}
	if (s->verify_result < 0)
		return session_error(s, "password check unavailable", error_r);
	switch (r) {
	case SASL_NOMEM:
	case SASL_UNAVAIL:
	case SASL_TRYAGAIN:
	case SASL_CONFIGERR:
	case SASL_NOTINIT:
		return session_error(s, "authentication service unavailable",
		    error_r);
	case SASL_TOOWEAK:
	case SASL_ENCRYPT:
		return session_fail(s, SASL_REASON_TLS_REQUIRED,
		    "mechanism not allowed without TLS", error_r);
	case SASL_NOMECH:
		if (s->verify_result == SASL_VERIFY_NOT_CALLED &&
		    s->reason == NULL)
			return session_fail(s, SASL_REASON_MECH,
			    "mechanism not available", error_r);
		break;
	case SASL_BADPROT:
		if (s->reason == NULL)
			return session_fail(s, SASL_REASON_SYNTAX,
			    "malformed response", error_r);
		break;
	default:
		break;
	}
	/* The password was right: what failed is the authorization id. */
	if (s->reason == NULL && s->verify_result == 1)
		s->reason = "authorization identity refused";
	return session_fail(s, SASL_REASON_AUTH, s->reason != NULL ?
	    s->reason : "authentication failed", error_r);
}

/* RFC 4422 section 3.1: 1-20 of A-Z 0-9 - _ (we accept lower case too). */
static int
mech_name_ok(const char *mech)
{
	size_t i, n;

	if (mech == NULL)
		return 0;
	n = strlen(mech);
	if (n == 0 || n > SASL_MECH_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = mech[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

enum sasl_session_result
sasl_session_start(struct sasl_session *s, const char *mech,
    const uint8_t *resp, size_t resp_len, int has_resp,
    const uint8_t **out_r, size_t *out_len_r, const char **error_r)
{
	const char *out = NULL;
	unsigned outlen = 0;
	size_t i;
	int r;

	*out_r = NULL;
	*out_len_r = 0;
	if (s->state != SASL_STATE_NEW) {
		s->reason_kind = SASL_REASON_SYNTAX;
		*error_r = "exchange already started";
		return SASL_SESSION_FAIL;
	}
	if (!mech_name_ok(mech))
		return session_fail(s, SASL_REASON_MECH, "bad mechanism name",
		    error_r);
	for (i = 0; mech[i] != '\0'; i++)
		s->mech[i] = (mech[i] >= 'a' && mech[i] <= 'z') ?
		    (char)(mech[i] - 'a' + 'A') : mech[i];
	s->mech[i] = '\0';
	if (!mech_in_list(s->mechs, s->mech)) {
		if (is_plaintext_mech(s->mech) &&
		    mech_in_list(sasl_glue_mechs_buf, s->mech))
			return session_fail(s, SASL_REASON_TLS_REQUIRED,
			    "mechanism not allowed without TLS", error_r);
		return session_fail(s, SASL_REASON_MECH,
		    "mechanism not available", error_r);
	}
	if (has_resp && resp_len > SASL_RESPONSE_MAX)
		return session_fail(s, SASL_REASON_SYNTAX, "response too long",
		    error_r);
	if (has_resp && resp == NULL && resp_len > 0)
		return session_fail(s, SASL_REASON_SYNTAX,
		    "malformed response", error_r);
	/*
	 * LOGIN's user name is checked before libsasl2's LOGIN plugin sees
	 * it: the plugin leaks memory when it refuses one itself.
	 */
	if (strcmp(s->mech, "LOGIN") == 0) {
		const char *why;

		if (has_resp && (why = user_name_problem((const char *)resp,
		    resp_len)) != NULL)
			return session_fail(s, SASL_REASON_AUTH, why, error_r);
		s->login_user_next = !has_resp;
	}
	s->state = SASL_STATE_RUNNING;
	s->steps = 1;
	r = sasl_server_start(s->conn, s->mech,
	    has_resp ? (resp != NULL ? (const char *)resp : "") : NULL,
	    has_resp ? (unsigned)resp_len : 0, &out, &outlen);
	return session_result(s, r, out, outlen, out_r, out_len_r, error_r);
}

enum sasl_session_result
sasl_session_step(struct sasl_session *s, const uint8_t *resp,
    size_t resp_len, const uint8_t **out_r, size_t *out_len_r,
    const char **error_r)
{
	const char *out = NULL;
	unsigned outlen = 0;
	int r;

	*out_r = NULL;
	*out_len_r = 0;
	if (s->state != SASL_STATE_RUNNING) {
		s->reason_kind = SASL_REASON_SYNTAX;
		*error_r = "no exchange in progress";
		return SASL_SESSION_FAIL;
	}
	if (s->steps >= s->max_steps)
		return session_fail(s, SASL_REASON_SYNTAX, "too many steps",
		    error_r);
	if (resp_len > SASL_RESPONSE_MAX)
		return session_fail(s, SASL_REASON_SYNTAX, "response too long",
		    error_r);
	if (resp == NULL && resp_len > 0)
		return session_fail(s, SASL_REASON_SYNTAX,
		    "malformed response", error_r);
	if (s->login_user_next) {
		const char *why = user_name_problem((const char *)resp,
		    resp_len);

		s->login_user_next = 0;
		if (why != NULL)
			return session_fail(s, SASL_REASON_AUTH, why, error_r);
	}
	s->steps++;
	r = sasl_server_step(s->conn, resp != NULL ? (const char *)resp : "",
	    (unsigned)resp_len, &out, &outlen);
	return session_result(s, r, out, outlen, out_r, out_len_r, error_r);
}

int
sasl_addr_is_loopback(const char *addr)
{
	char ip[INET6_ADDRSTRLEN];
	struct in_addr a4;
	struct in6_addr a6;

	if (!addr_parse(addr, 0, ip))
		return 0;
	if (inet_pton(AF_INET, ip, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, ip, &a6) != 1)
		return 0;
	if (IN6_IS_ADDR_LOOPBACK(&a6))
		return 1;
	return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

enum sasl_session_result
sasl_session_check_password(struct sasl_session *s, const char *user,
    const char *pass, const char **error_r)
{
	size_t ulen, plen;
	int r;

	if (s->state != SASL_STATE_NEW) {
		s->reason_kind = SASL_REASON_SYNTAX;
		*error_r = "exchange already started";
		return SASL_SESSION_FAIL;
	}
	/* SECURITY: the same rule as for PLAIN and LOGIN. */
	if (!s->tls_active && !s->plaintext_allowed)
		return session_fail(s, SASL_REASON_TLS_REQUIRED,
		    "plaintext login not allowed without TLS", error_r);
	if (user == NULL || pass == NULL)
		return session_fail(s, SASL_REASON_SYNTAX,
		    "malformed response", error_r);
	ulen = strnlen(user, SASL_USER_MAX + 1);
	plen = strnlen(pass, SASL_RESPONSE_MAX + 1);
	if (ulen > SASL_USER_MAX)
		return session_fail(s, SASL_REASON_AUTH, "user name too long",
		    error_r);
	if (plen > SASL_RESPONSE_MAX)
		return session_fail(s, SASL_REASON_SYNTAX, "response too long",
		    error_r);
	str_copy(s->mech, sizeof(s->mech), "LOGIN-COMMAND");
	s->state = SASL_STATE_RUNNING;
	s->steps = 1;
	/*
	 * Through libsasl2 so that the canonicalisation, verify and
	 * authorization callbacks run exactly as for a mechanism.
	 */
	r = sasl_checkpass(s->conn, user, (unsigned)ulen, pass,
	    (unsigned)plen);
	if (r == SASL_CONTINUE)
		r = SASL_FAIL;	/* never a multi-step exchange */
	{
		const uint8_t *out;
		size_t outlen;

		return session_result(s, r, NULL, 0, &out, &outlen, error_r);
	}
}

/* ---- failed-authentication rate limit ---------------------------------- */

/*
 * The counters live in a lib/ratelimit.h table: the daemon's shared one
 * when the root parent made it before forking (one limit for all
 * workers), else a private one.
 */
struct sasl_ratelimit {
	unsigned int max_failures;
	int64_t window;
	struct ratelimit *table;
	int own;		/* table is ours to free */
};

struct sasl_ratelimit *
sasl_ratelimit_new(unsigned int max_failures, unsigned int window_seconds)
{
	struct sasl_ratelimit *rl = xcalloc(1, sizeof(*rl));
	const char *err = NULL;

	rl->max_failures = max_failures;
	rl->window = window_seconds;
	rl->table = ratelimit_shared(RATELIMIT_TABLE_AUTH);
	if (rl->table == NULL) {
		rl->table = ratelimit_new(0, &err);
		if (rl->table == NULL)
			log_fatalx("sasl: %s", err);
		rl->own = 1;
	}
	return rl;
}

void
sasl_ratelimit_free(struct sasl_ratelimit *rl)
{
	if (rl == NULL)
		return;
	if (rl->own)
		ratelimit_free(rl->table);
	free(rl);
}

/* The key of an address: IPv4 as ::ffff:a.b.c.d, IPv6 cut to /64. */
static void
ratelimit_key(const char *addr, uint8_t key[16])
{
	char ip[INET6_ADDRSTRLEN];
	struct in_addr a4;
	struct in6_addr a6;

	memset(key, 0, 16);
	if (!addr_parse(addr, 0, ip))
		return;		/* the shared "unknown" key */
	if (inet_pton(AF_INET, ip, &a4) == 1) {
		key[10] = 0xff;
		key[11] = 0xff;
		memcpy(key + 12, &a4, 4);
		return;
	}
	if (inet_pton(AF_INET6, ip, &a6) != 1)
		return;
	memcpy(key, &a6, 16);
	if (!IN6_IS_ADDR_V4MAPPED(&a6))
		memset(key + 8, 0, 8);
}

int
sasl_ratelimit_allowed(struct sasl_ratelimit *rl, const char *addr,
    int64_t now)
{
	uint8_t key[RATELIMIT_KEY_LEN];

	if (rl->max_failures == 0)
		return 1;
	ratelimit_key(addr, key);
	return ratelimit_count(rl->table, key, rl->window, now) <
	    rl->max_failures;
}

void
sasl_ratelimit_failed(struct sasl_ratelimit *rl, const char *addr,
    int64_t now)
{
	uint8_t key[RATELIMIT_KEY_LEN];

	if (rl->max_failures == 0)
		return;
	ratelimit_key(addr, key);
	(void)ratelimit_add(rl->table, key, rl->window, now);
}

/* ---- base64 ------------------------------------------------------------ */

int
sasl_base64_decode(const char *text, size_t len, struct buf *out,
    const char **error_r)
{
	size_t bound, bin_len = 0;
	const char *end = NULL;

	buf_reset(out);
	out->secret = 1;
	if (len > SASL_RESPONSE_B64_MAX) {
		*error_r = "response too long";
		return -1;
	}
	if (len == 0 || (len == 1 && text[0] == '='))
		return 0;
	if (len % 4 != 0) {
		*error_r = "malformed base64";
		return -1;
	}
	bound = len / 4 * 3;
	if (buf_reserve(out, bound) < 0) {
		*error_r = "response too long";
		return -1;
	}
	if (sodium_base642bin(buf_tail(out), bound, text, len, NULL, &bin_len,
	    &end, sodium_base64_VARIANT_ORIGINAL) != 0 || end != text + len) {
		*error_r = "malformed base64";
		return -1;
	}
	if (bin_len > SASL_RESPONSE_MAX) {
		sodium_memzero(buf_tail(out), bin_len);
		*error_r = "response too long";
		return -1;
	}
	buf_commit(out, bin_len);
	return 0;
}

char *
sasl_base64_encode(const uint8_t *data, size_t len)
{
	size_t n;
	char *text;

	if (len == 0)
		return xstrdup("");
	n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
	text = xmalloc(n);
	sodium_bin2base64(text, n, data, len, sodium_base64_VARIANT_ORIGINAL);
	return text;
}
