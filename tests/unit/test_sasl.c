/*
 * Unit tests for lib/sasl.c: PLAIN and LOGIN exchanges driven in-process,
 * both with hand-built responses and with libsasl2's own client side;
 * right and wrong passwords; authzid != authcid; limits at N-1, N and N+1
 * (response size, steps, user name, base64 text); no plaintext mechanisms
 * without TLS; and a counting fake verify shows it is what decides.
 */
#include "autoconf.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sasl/sasl.h>

#include "buf.h"
#include "sasl.h"
#include "xmalloc.h"

#define USER "alice@demo.gov.cn"
#define PASS "correct horse"

/* The fake password store: one user, one password; counts its calls. */
struct fake {
	const char *user;
	const char *pass;
	int calls;
	int tempfail;		/* answer -1 (store unavailable) */
	int always;		/* 1: say yes to anything; -1: no to all */
};

static int
fake_verify(const char *user, const char *pass, void *ctx)
{
	struct fake *f = ctx;

	f->calls++;
	if (f->tempfail)
		return -1;
	if (f->always != 0)
		return f->always > 0;
	return strcmp(user, f->user) == 0 && strcmp(pass, f->pass) == 0;
}

static struct sasl_session *
session(struct fake *f, int tls, int plaintext, unsigned int max_steps)
{
	struct sasl_session_params p;
	struct sasl_session *s = NULL;
	const char *err = NULL;

	memset(&p, 0, sizeof(p));
	p.service = "smtp";
	p.server_fqdn = "mail.demo.gov.cn";
	p.local_addr = "127.0.0.1;2587";
	p.remote_addr = "127.0.0.1;40000";
	p.tls_active = tls;
	p.plaintext_allowed = plaintext;
	p.max_steps = max_steps;
	p.verify = fake_verify;
	p.verify_ctx = f;
	assert_int_equal(sasl_session_new(&p, &s, &err), 0);
	assert_non_null(s);
	return s;
}

/* Build authzid NUL authcid NUL password into out; returns its length. */
static size_t
plain_resp(uint8_t *out, size_t outsz, const char *authz, const char *authc,
    const char *pass)
{
	size_t a = strlen(authz), c = strlen(authc), p = strlen(pass);

	assert_true(a + c + p + 2 <= outsz);
	memcpy(out, authz, a);
	out[a] = '\0';
	memcpy(out + a + 1, authc, c);
	out[a + 1 + c] = '\0';
	memcpy(out + a + c + 2, pass, p);
	return a + c + p + 2;
}

static void
test_init(void **state)
{
	const char *err = NULL;
	const char *m;

	(void)state;
	assert_int_equal(sasl_glue_init(&err), 0);
	assert_int_equal(sasl_glue_init(&err), 0);	/* idempotent */
	m = sasl_glue_mechs();
	assert_non_null(strstr(m, "PLAIN"));
	assert_non_null(strstr(m, "LOGIN"));
	/* Nothing else from libsasl2-modules is loaded. */
	assert_null(strstr(m, "ANONYMOUS"));
	assert_null(strstr(m, "MD5"));
	assert_null(strstr(m, "SCRAM"));
	assert_null(strstr(m, "NTLM"));
}

static void
test_mechs_need_tls(void **state)
{
	static const struct {
		int tls, plaintext, offered;
	} cases[] = {
		{ 0, 0, 0 },
		{ 1, 0, 1 },
		{ 0, 1, 1 },
		{ 1, 1, 1 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = { USER, PASS, 0, 0, 0 };
		struct sasl_session *s = session(&f, cases[i].tls,
		    cases[i].plaintext, 0);
		const char *m = sasl_session_mechs(s);
		const char *mechs[] = { "PLAIN", "LOGIN" };
		size_t j;

		for (j = 0; j < 2; j++) {
			struct sasl_session *t = session(&f, cases[i].tls,
			    cases[i].plaintext, 0);
			uint8_t r[128];
			size_t n = plain_resp(r, sizeof(r), "", USER, PASS);
			const uint8_t *out;
			size_t outlen;
			const char *err = NULL;
			enum sasl_session_result res;

			if (cases[i].offered)
				assert_non_null(strstr(m, mechs[j]));
			else
				assert_null(strstr(m, mechs[j]));
			/* Starting an unoffered mechanism fails early. */
			res = sasl_session_start(t, mechs[j], r, n, j == 0,
			    &out, &outlen, &err);
			if (cases[i].offered) {
				assert_int_not_equal(res, SASL_SESSION_FAIL);
			} else {
				assert_int_equal(res, SASL_SESSION_FAIL);
				assert_non_null(strstr(err, "TLS"));
				assert_int_equal(sasl_session_reason(t),
				    SASL_REASON_TLS_REQUIRED);
			}
			sasl_session_free(t);
		}
		if (!cases[i].offered)
			assert_string_equal(m, "");
		assert_int_equal(f.calls, cases[i].offered ? 1 : 0);
		sasl_session_free(s);
	}
}

struct plain_case {
	const char *authz, *authc, *pass;
	int fake_tempfail;
	enum sasl_session_result want;
	int calls;
	const char *err;	/* substring, for FAIL/ERROR */
	enum sasl_reason reason;
};

static void
test_plain_table(void **state)
{
	static const struct plain_case cases[] = {
		{ "", USER, PASS, 0, SASL_SESSION_OK, 1, NULL,
		  SASL_REASON_NONE },
		{ USER, USER, PASS, 0, SASL_SESSION_OK, 1, NULL,
		  SASL_REASON_NONE },
		{ "", USER, "wrong", 0, SASL_SESSION_FAIL, 1,
		  "authentication failed", SASL_REASON_AUTH },
		{ "", USER, "", 0, SASL_SESSION_FAIL, -1, NULL,
		  SASL_REASON_AUTH },
		{ "", "bob@demo.gov.cn", PASS, 0, SASL_SESSION_FAIL, 1,
		  "authentication failed", SASL_REASON_AUTH },
		/* A right password does not buy another identity. */
		{ "bob@demo.gov.cn", USER, PASS, 0, SASL_SESSION_FAIL, -1,
		  "authorization", SASL_REASON_AUTH },
		{ "", "", PASS, 0, SASL_SESSION_FAIL, 0, NULL,
		  SASL_REASON_AUTH },
		{ "", "al ice@demo.gov.cn", PASS, 0, SASL_SESSION_FAIL, 0,
		  "user name", SASL_REASON_AUTH },
		{ "", "alice\t@demo.gov.cn", PASS, 0, SASL_SESSION_FAIL, 0,
		  "user name", SASL_REASON_AUTH },
		{ "", "alice\x7f@demo.gov.cn", PASS, 0, SASL_SESSION_FAIL, 0,
		  "user name", SASL_REASON_AUTH },
		/* UTF-8 user names pass through to verify. */
		{ "", "\xe5\xb8\x82\xe6\xb0\x91@demo.gov.cn", PASS, 0,
		  SASL_SESSION_FAIL, 1, "authentication failed",
		  SASL_REASON_AUTH },
		{ "", USER, PASS, 1, SASL_SESSION_ERROR, 1, "unavailable",
		  SASL_REASON_UNAVAILABLE },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = { USER, PASS, 0, cases[i].fake_tempfail, 0 };
		struct sasl_session *s = session(&f, 1, 0, 0);
		uint8_t r[256];
		size_t n = plain_resp(r, sizeof(r), cases[i].authz,
		    cases[i].authc, cases[i].pass);
		const uint8_t *out = NULL;
		size_t outlen = 0;
		const char *err = NULL;
		enum sasl_session_result res;

		res = sasl_session_start(s, "PLAIN", r, n, 1, &out, &outlen,
		    &err);
		print_message("# case %zu: result %d err %s calls %d\n", i,
		    (int)res, err != NULL ? err : "-", f.calls);
		assert_int_equal(res, cases[i].want);
		if (cases[i].calls >= 0)
			assert_int_equal(f.calls, cases[i].calls);
		if (cases[i].err != NULL)
			assert_non_null(strstr(err, cases[i].err));
		assert_int_equal(sasl_session_reason(s), cases[i].reason);
		if (res == SASL_SESSION_OK) {
			assert_string_equal(sasl_session_user(s), USER);
			assert_string_equal(sasl_session_mech(s), "PLAIN");
		} else {
			assert_null(sasl_session_user(s));
		}
		/* The exchange is over: more input is refused. */
		res = sasl_session_step(s, r, n, &out, &outlen, &err);
		assert_int_equal(res, SASL_SESSION_FAIL);
		sasl_session_free(s);
	}
}

static void
test_plain_malformed(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} cases[] = {
		{ "", 0 },			/* empty initial response */
		{ "\0" USER, sizeof(USER) },	/* no password part */
		{ USER, sizeof(USER) - 1 },	/* no NUL at all */
		{ "\0" USER "\0" PASS "\0x", sizeof(USER) + sizeof(PASS) + 2 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = { USER, PASS, 0, 0, 0 };
		struct sasl_session *s = session(&f, 1, 0, 0);
		const uint8_t *out;
		size_t outlen;
		const char *err = NULL;

		assert_int_equal(sasl_session_start(s, "PLAIN",
		    (const uint8_t *)cases[i].bytes, cases[i].len, 1, &out,
		    &outlen, &err), SASL_SESSION_FAIL);
		assert_null(sasl_session_user(s));
		if (i < 3)
			assert_int_equal(f.calls, 0);
		sasl_session_free(s);
	}
}

static void
test_plain_no_initial_response(void **state)
{
	struct fake f = { USER, PASS, 0, 0, 0 };
	struct sasl_session *s = session(&f, 1, 0, 0);
	uint8_t r[128];
	size_t n = plain_resp(r, sizeof(r), "", USER, PASS);
	const uint8_t *out = NULL;
	size_t outlen = 99;
	const char *err = NULL;

	(void)state;
	assert_int_equal(sasl_session_start(s, "plain", NULL, 0, 0, &out,
	    &outlen, &err), SASL_SESSION_CONTINUE);
	assert_int_equal(outlen, 0);
	assert_int_equal(f.calls, 0);
	assert_int_equal(sasl_session_step(s, r, n, &out, &outlen, &err),
	    SASL_SESSION_OK);
	assert_string_equal(sasl_session_user(s), USER);
	assert_int_equal(f.calls, 1);
	sasl_session_free(s);
}

static enum sasl_session_result
login_run(struct sasl_session *s, int initial, const char *user,
    const char *pass, const char **err_r)
{
	const uint8_t *out = NULL;
	size_t outlen = 0;
	enum sasl_session_result r;

	if (initial) {
		r = sasl_session_start(s, "LOGIN", (const uint8_t *)user,
		    strlen(user), 1, &out, &outlen, err_r);
	} else {
		r = sasl_session_start(s, "LOGIN", NULL, 0, 0, &out, &outlen,
		    err_r);
		if (r != SASL_SESSION_CONTINUE)
			return r;
		assert_int_equal(outlen, strlen("Username:"));
		assert_memory_equal(out, "Username:", outlen);
		r = sasl_session_step(s, (const uint8_t *)user, strlen(user),
		    &out, &outlen, err_r);
	}
	if (r != SASL_SESSION_CONTINUE)
		return r;
	assert_int_equal(outlen, strlen("Password:"));
	assert_memory_equal(out, "Password:", outlen);
	return sasl_session_step(s, (const uint8_t *)pass, strlen(pass), &out,
	    &outlen, err_r);
}

static void
test_login_table(void **state)
{
	static const struct {
		int initial;
		const char *user, *pass;
		enum sasl_session_result want;
		int calls;
	} cases[] = {
		{ 0, USER, PASS, SASL_SESSION_OK, 1 },
		{ 1, USER, PASS, SASL_SESSION_OK, 1 },
		{ 0, USER, "wrong", SASL_SESSION_FAIL, 1 },
		{ 1, USER, "wrong", SASL_SESSION_FAIL, 1 },
		{ 0, "nobody@demo.gov.cn", PASS, SASL_SESSION_FAIL, 1 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = { USER, PASS, 0, 0, 0 };
		struct sasl_session *s = session(&f, 1, 0, 0);
		const char *err = NULL;

		assert_int_equal(login_run(s, cases[i].initial, cases[i].user,
		    cases[i].pass, &err), cases[i].want);
		assert_int_equal(f.calls, cases[i].calls);
		if (cases[i].want == SASL_SESSION_OK)
			assert_string_equal(sasl_session_user(s), USER);
		else
			assert_null(sasl_session_user(s));
		sasl_session_free(s);
	}
}

/* IMAP LOGIN: the same policy through sasl_session_check_password(). */
static void
test_check_password(void **state)
{
	static char user_n[SASL_USER_MAX + 1], user_n1[SASL_USER_MAX + 2];
	static char pass_n[SASL_RESPONSE_MAX + 1];
	static char pass_n1[SASL_RESPONSE_MAX + 2];
	const struct {
		int tls, plaintext, tempfail;
		const char *fake_user, *fake_pass;	/* the store */
		const char *user, *pass;
		enum sasl_session_result want;
		int calls;
		enum sasl_reason reason;
	} cases[] = {
		{ 1, 0, 0, USER, PASS, USER, PASS, SASL_SESSION_OK, 1,
		  SASL_REASON_NONE },
		{ 0, 1, 0, USER, PASS, USER, PASS, SASL_SESSION_OK, 1,
		  SASL_REASON_NONE },
		{ 1, 0, 0, USER, PASS, USER, "wrong", SASL_SESSION_FAIL, 1,
		  SASL_REASON_AUTH },
		{ 1, 0, 0, USER, PASS, USER, "", SASL_SESSION_FAIL, 1,
		  SASL_REASON_AUTH },
		{ 0, 0, 0, USER, PASS, USER, PASS, SASL_SESSION_FAIL, 0,
		  SASL_REASON_TLS_REQUIRED },
		{ 1, 0, 0, USER, PASS, "", PASS, SASL_SESSION_FAIL, 0,
		  SASL_REASON_AUTH },
		{ 1, 0, 0, USER, PASS, "a b@c", PASS, SASL_SESSION_FAIL, 0,
		  SASL_REASON_AUTH },
		{ 1, 0, 0, user_n, PASS, user_n, PASS, SASL_SESSION_OK, 1,
		  SASL_REASON_NONE },
		{ 1, 0, 0, user_n1, PASS, user_n1, PASS, SASL_SESSION_FAIL, 0,
		  SASL_REASON_AUTH },
		{ 1, 0, 0, USER, pass_n, USER, pass_n, SASL_SESSION_OK, 1,
		  SASL_REASON_NONE },
		{ 1, 0, 0, USER, pass_n1, USER, pass_n1, SASL_SESSION_FAIL, 0,
		  SASL_REASON_SYNTAX },
		{ 1, 0, 1, USER, PASS, USER, PASS, SASL_SESSION_ERROR, 1,
		  SASL_REASON_UNAVAILABLE },
	};
	size_t i;

	(void)state;
	memset(user_n, 'u', sizeof(user_n) - 1);
	memset(user_n1, 'u', sizeof(user_n1) - 1);
	memset(pass_n, 'p', sizeof(pass_n) - 1);
	memset(pass_n1, 'p', sizeof(pass_n1) - 1);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = { cases[i].fake_user, cases[i].fake_pass, 0,
		    cases[i].tempfail, 0 };
		struct sasl_session *s = session(&f, cases[i].tls,
		    cases[i].plaintext, 0);
		const char *err = NULL;

		print_message("# check_password case %zu\n", i);
		assert_int_equal(sasl_session_check_password(s, cases[i].user,
		    cases[i].pass, &err), cases[i].want);
		assert_int_equal(f.calls, cases[i].calls);
		assert_int_equal(sasl_session_reason(s), cases[i].reason);
		if (cases[i].want == SASL_SESSION_OK)
			assert_string_equal(sasl_session_user(s),
			    cases[i].user);
		else
			assert_null(sasl_session_user(s));
		/* One exchange per session. */
		assert_int_equal(sasl_session_check_password(s, cases[i].user,
		    cases[i].pass, &err), SASL_SESSION_FAIL);
		assert_int_equal(f.calls, cases[i].calls);
		sasl_session_free(s);
	}
}

/* NUL bytes inside a LOGIN user name or password never reach verify. */
static void
test_login_nul(void **state)
{
	static const struct {
		const char *user;
		size_t ulen;
		const char *pass;
		size_t plen;
	} cases[] = {
		{ USER "\0x", sizeof(USER) + 1, PASS, sizeof(PASS) - 1 },
		{ "\0" USER, sizeof(USER), PASS, sizeof(PASS) - 1 },
		{ USER, sizeof(USER) - 1, PASS "\0x", sizeof(PASS) + 1 },
		{ USER, sizeof(USER) - 1, "\0" PASS, sizeof(PASS) },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = { USER, PASS, 0, 0, 1 };	/* yes to all */
		struct sasl_session *s = session(&f, 1, 0, 0);
		const uint8_t *out;
		size_t outlen;
		const char *err = NULL;
		enum sasl_session_result r;

		r = sasl_session_start(s, "LOGIN",
		    (const uint8_t *)cases[i].user, cases[i].ulen, 1, &out,
		    &outlen, &err);
		if (r == SASL_SESSION_CONTINUE)
			r = sasl_session_step(s,
			    (const uint8_t *)cases[i].pass, cases[i].plen,
			    &out, &outlen, &err);
		assert_int_equal(r, SASL_SESSION_FAIL);
		assert_int_equal(f.calls, 0);
		assert_null(sasl_session_user(s));
		sasl_session_free(s);
	}
}

/* LOGIN takes 2 responses with an initial response, 3 without. */
static void
test_steps_limit(void **state)
{
	static const struct {
		unsigned int max;
		int initial;
		enum sasl_session_result want;
		int calls;
	} cases[] = {
		{ 2, 1, SASL_SESSION_OK, 1 },		/* N */
		{ 2, 0, SASL_SESSION_FAIL, 0 },		/* N+1 */
		{ 3, 1, SASL_SESSION_OK, 1 },		/* N-1 */
		{ 3, 0, SASL_SESSION_OK, 1 },		/* N */
		{ 0, 0, SASL_SESSION_OK, 1 },		/* default = 3 */
		{ 1, 1, SASL_SESSION_FAIL, 0 },		/* N+1 */
	};
	size_t i;

	(void)state;
	assert_int_equal(SASL_STEPS_MAX, 3);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = { USER, PASS, 0, 0, 0 };
		struct sasl_session *s = session(&f, 1, 0, cases[i].max);
		const char *err = NULL;

		assert_int_equal(login_run(s, cases[i].initial, USER, PASS,
		    &err), cases[i].want);
		assert_int_equal(f.calls, cases[i].calls);
		if (cases[i].want == SASL_SESSION_FAIL) {
			assert_string_equal(err, "too many steps");
			assert_int_equal(sasl_session_reason(s),
			    SASL_REASON_SYNTAX);
		}
		sasl_session_free(s);
	}
}

/* A PLAIN response of exactly len bytes whose password is right. */
static void
size_case(size_t len, int via_step, enum sasl_session_result want,
    int calls)
{
	struct fake f;
	struct sasl_session *s;
	uint8_t *r = xmalloc(len + 1);
	char *pass;
	size_t ulen = strlen(USER), plen = len - ulen - 2;
	const uint8_t *out;
	size_t outlen;
	const char *err = NULL;
	enum sasl_session_result res;

	pass = xmalloc(plen + 1);
	memset(pass, 'p', plen);
	pass[plen] = '\0';
	f.user = USER;
	f.pass = pass;
	f.calls = 0;
	f.tempfail = 0;
	f.always = 0;
	s = session(&f, 1, 0, 0);
	assert_int_equal(plain_resp(r, len + 1, "", USER, pass), len);
	if (via_step) {
		assert_int_equal(sasl_session_start(s, "PLAIN", NULL, 0, 0,
		    &out, &outlen, &err), SASL_SESSION_CONTINUE);
		res = sasl_session_step(s, r, len, &out, &outlen, &err);
	} else {
		res = sasl_session_start(s, "PLAIN", r, len, 1, &out, &outlen,
		    &err);
	}
	assert_int_equal(res, want);
	assert_int_equal(f.calls, calls);
	if (want == SASL_SESSION_FAIL) {
		assert_string_equal(err, "response too long");
		assert_int_equal(sasl_session_reason(s), SASL_REASON_SYNTAX);
	}
	sasl_session_free(s);
	free(pass);
	free(r);
}

static void
test_response_size(void **state)
{
	int via;

	(void)state;
	for (via = 0; via < 2; via++) {
		size_case(SASL_RESPONSE_MAX - 1, via, SASL_SESSION_OK, 1);
		size_case(SASL_RESPONSE_MAX, via, SASL_SESSION_OK, 1);
		size_case(SASL_RESPONSE_MAX + 1, via, SASL_SESSION_FAIL, 0);
	}
}

static void
test_user_max(void **state)
{
	static const struct {
		size_t len;
		int calls;
	} cases[] = {
		{ SASL_USER_MAX - 1, 1 },
		{ SASL_USER_MAX, 1 },
		{ SASL_USER_MAX + 1, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *user = xmalloc(cases[i].len + 1);
		struct fake f;
		struct sasl_session *s;
		uint8_t r[SASL_USER_MAX + 64];
		size_t n;
		const uint8_t *out;
		size_t outlen;
		const char *err = NULL;

		memset(user, 'u', cases[i].len);
		user[cases[i].len] = '\0';
		f.user = user;
		f.pass = PASS;
		f.calls = 0;
		f.tempfail = 0;
		f.always = 0;
		s = session(&f, 1, 0, 0);
		n = plain_resp(r, sizeof(r), "", user, PASS);
		assert_int_equal(sasl_session_start(s, "PLAIN", r, n, 1, &out,
		    &outlen, &err), cases[i].calls ? SASL_SESSION_OK :
		    SASL_SESSION_FAIL);
		assert_int_equal(f.calls, cases[i].calls);
		if (cases[i].calls)
			assert_string_equal(sasl_session_user(s), user);
		sasl_session_free(s);
		free(user);
	}
}

static void
test_session_misc(void **state)
{
	static const struct {
		const char *mech;
		const char *err;
	} bad_mechs[] = {
		{ "CRAM-MD5", "not available" },
		{ "ANONYMOUS", "not available" },
		{ "SCRAM-SHA-256", "not available" },
		{ "PL AIN", "bad mechanism name" },
		{ "", "bad mechanism name" },
		/* 21 characters, then 20 (RFC 4422 allows 20). */
		{ "ABCDEFGHIJKLMNOPQRSTU", "bad mechanism name" },
		{ "ABCDEFGHIJKLMNOPQRST", "not available" },
	};
	struct sasl_session_params p;
	struct sasl_session *s = NULL;
	struct fake f = { USER, PASS, 0, 0, 0 };
	const uint8_t *out;
	size_t outlen, i;
	const char *err = NULL;

	(void)state;
	for (i = 0; i < sizeof(bad_mechs) / sizeof(bad_mechs[0]); i++) {
		s = session(&f, 1, 0, 0);
		assert_int_equal(sasl_session_start(s, bad_mechs[i].mech, NULL,
		    0, 0, &out, &outlen, &err), SASL_SESSION_FAIL);
		assert_non_null(strstr(err, bad_mechs[i].err));
		assert_int_equal(sasl_session_reason(s), SASL_REASON_MECH);
		sasl_session_free(s);
	}
	/* Started once only. */
	s = session(&f, 1, 0, 0);
	assert_int_equal(sasl_session_start(s, "LOGIN", NULL, 0, 0, &out,
	    &outlen, &err), SASL_SESSION_CONTINUE);
	assert_int_equal(sasl_session_start(s, "LOGIN", NULL, 0, 0, &out,
	    &outlen, &err), SASL_SESSION_FAIL);
	sasl_session_free(s);
	/* A step without a start. */
	s = session(&f, 1, 0, 0);
	assert_int_equal(sasl_session_step(s, (const uint8_t *)"x", 1, &out,
	    &outlen, &err), SASL_SESSION_FAIL);
	sasl_session_free(s);
	sasl_session_free(NULL);
	assert_int_equal(f.calls, 0);

	memset(&p, 0, sizeof(p));
	p.service = "imap";
	p.server_fqdn = "mail.demo.gov.cn";
	/* No verify function. */
	assert_int_equal(sasl_session_new(&p, &s, &err), -1);
	assert_null(s);
	p.verify = fake_verify;
	p.verify_ctx = &f;
	{
		static const char *const bad[] = {
			"not an address", "localhost;25", "127.0.0.1",
			"127.0.0.1;", "127.0.0.1;65536", "127.0.0.1;x",
			";25", "",
		};
		size_t k;

		for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			p.remote_addr = bad[k];
			assert_int_equal(sasl_session_new(&p, &s, &err), -1);
			assert_null(s);
			assert_non_null(strstr(err, "numeric"));
		}
	}
	p.remote_addr = "127.0.0.1;65535";
	assert_int_equal(sasl_session_new(&p, &s, &err), 0);
	sasl_session_free(s);
	s = NULL;
	p.remote_addr = "::1;143";
	p.local_addr = "::1;143";
	p.tls_active = 1;
	assert_int_equal(sasl_session_new(&p, &s, &err), 0);
	assert_non_null(strstr(sasl_session_mechs(s), "PLAIN"));
	sasl_session_free(s);
}

/* The verify callback alone decides: a yes-to-all store lets any password
 * in, a no-to-all store keeps the right one out. */
static void
test_verify_decides(void **state)
{
	static const struct {
		int always;
		const char *pass;
		enum sasl_session_result want;
	} cases[] = {
		{ 1, "anything at all", SASL_SESSION_OK },
		{ 1, PASS, SASL_SESSION_OK },
		{ -1, PASS, SASL_SESSION_FAIL },
		{ -1, "anything at all", SASL_SESSION_FAIL },
	};
	size_t i;
	int initial;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = { USER, PASS, 0, 0, cases[i].always };
		struct sasl_session *s = session(&f, 1, 0, 0);
		uint8_t r[128];
		size_t n = plain_resp(r, sizeof(r), "", USER, cases[i].pass);
		const uint8_t *out;
		size_t outlen;
		const char *err = NULL;

		assert_int_equal(sasl_session_start(s, "PLAIN", r, n, 1, &out,
		    &outlen, &err), cases[i].want);
		assert_int_equal(f.calls, 1);
		sasl_session_free(s);
		for (initial = 0; initial < 2; initial++) {
			f.calls = 0;
			s = session(&f, 1, 0, 0);
			assert_int_equal(login_run(s, initial, USER,
			    cases[i].pass, &err), cases[i].want);
			assert_int_equal(f.calls, 1);
			sasl_session_free(s);
		}
	}
}

static void
test_loopback(void **state)
{
	static const struct {
		const char *addr;
		int loopback;
	} cases[] = {
		{ "127.0.0.1;2587", 1 },
		{ "127.255.255.254;1", 1 },
		{ "127.0.0.1", 1 },
		{ "::1;143", 1 },
		{ "::ffff:127.0.0.1;25", 1 },
		{ "128.0.0.1;25", 0 },
		{ "126.255.255.255;25", 0 },
		{ "10.0.0.1;25", 0 },
		{ "::2;25", 0 },
		{ "::ffff:10.0.0.1;25", 0 },
		{ "localhost;25", 0 },	/* names are not addresses */
		{ ";25", 0 },
		{ "", 0 },
		{ NULL, 0 },
		{ "1111:2222:3333:4444:5555:6666:7777:8888:9999;1", 0 },
		{ "127.0.0.1;x", 0 },
		{ "127.0.0.1;70000", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(sasl_addr_is_loopback(cases[i].addr),
		    cases[i].loopback);
}

/* N-1 and N failures, then refused until the window has passed. */
static void
test_ratelimit_window(void **state)
{
	struct sasl_ratelimit *rl = sasl_ratelimit_new(3, 60);
	const char *a = "192.0.2.7;40000";

	(void)state;
	assert_true(sasl_ratelimit_allowed(rl, a, 100));
	sasl_ratelimit_failed(rl, a, 100);
	sasl_ratelimit_failed(rl, a, 110);
	assert_true(sasl_ratelimit_allowed(rl, a, 110));	/* N-1 */
	sasl_ratelimit_failed(rl, a, 120);
	assert_false(sasl_ratelimit_allowed(rl, a, 120));	/* N */
	sasl_ratelimit_failed(rl, a, 121);
	assert_false(sasl_ratelimit_allowed(rl, a, 121));	/* N+1 */
	assert_false(sasl_ratelimit_allowed(rl, a, 159));	/* in window */
	/* Another port of the same address counts the same. */
	assert_false(sasl_ratelimit_allowed(rl, "192.0.2.7;40001", 150));
	assert_false(sasl_ratelimit_allowed(rl, "192.0.2.7", 150));
	assert_false(sasl_ratelimit_allowed(rl, "::ffff:192.0.2.7;1", 150));
	/* Others are not affected. */
	assert_true(sasl_ratelimit_allowed(rl, "192.0.2.8;40000", 150));
	/* The window ends 60 s after the first failure; counting restarts. */
	assert_true(sasl_ratelimit_allowed(rl, a, 160));
	sasl_ratelimit_failed(rl, a, 160);
	sasl_ratelimit_failed(rl, a, 161);
	assert_true(sasl_ratelimit_allowed(rl, a, 162));
	sasl_ratelimit_failed(rl, a, 162);
	assert_false(sasl_ratelimit_allowed(rl, a, 163));
	sasl_ratelimit_free(rl);
}

static void
test_ratelimit_keys(void **state)
{
	static const struct {
		const char *failing;	/* fails twice (the limit) */
		const char *other;
		int other_blocked;
	} cases[] = {
		/* IPv6 counts per /64. */
		{ "2001:db8:1:2::1;25", "2001:db8:1:2::ffff;25", 1 },
		{ "2001:db8:1:2::1;25", "2001:db8:1:2:ffff:ffff:ffff:ffff;1",
		  1 },
		{ "2001:db8:1:2::1;25", "2001:db8:1:3::1;25", 0 },
		/* IPv4 per address. */
		{ "10.0.0.1;25", "10.0.0.1;26", 1 },
		{ "10.0.0.1;25", "10.0.0.2;25", 0 },
		{ "10.0.0.1;25", "::ffff:10.0.0.1;25", 1 },
		/* Unparseable addresses share one key. */
		{ "garbage", "more garbage", 1 },
		{ "garbage", "10.0.0.1;25", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sasl_ratelimit *rl = sasl_ratelimit_new(2, 300);

		sasl_ratelimit_failed(rl, cases[i].failing, 1);
		sasl_ratelimit_failed(rl, cases[i].failing, 2);
		assert_false(sasl_ratelimit_allowed(rl, cases[i].failing, 3));
		assert_int_equal(sasl_ratelimit_allowed(rl, cases[i].other, 3),
		    !cases[i].other_blocked);
		sasl_ratelimit_free(rl);
	}
	/* max_failures 0: no limit at all. */
	{
		struct sasl_ratelimit *rl = sasl_ratelimit_new(0, 300);
		int k;

		for (k = 0; k < 100; k++)
			sasl_ratelimit_failed(rl, "10.0.0.1;25", k);
		assert_true(sasl_ratelimit_allowed(rl, "10.0.0.1;25", 100));
		sasl_ratelimit_free(rl);
	}
}

/*
 * More addresses than slots: the table reuses old entries, the newest
 * offender is still blocked, and clean addresses are never blocked.
 */
static void
test_ratelimit_full(void **state)
{
	struct sasl_ratelimit *rl = sasl_ratelimit_new(1, 1000);
	char a[64];
	unsigned int i, blocked = 0;

	(void)state;
	for (i = 0; i < 4 * SASL_RATELIMIT_SLOTS; i++) {
		snprintf(a, sizeof(a), "10.%u.%u.%u;25", (i >> 16) & 0xff,
		    (i >> 8) & 0xff, i & 0xff);
		sasl_ratelimit_failed(rl, a, 10 + i / 1000);
		assert_false(sasl_ratelimit_allowed(rl, a, 10 + i / 1000));
	}
	for (i = 0; i < 4 * SASL_RATELIMIT_SLOTS; i++) {
		snprintf(a, sizeof(a), "10.%u.%u.%u;25", (i >> 16) & 0xff,
		    (i >> 8) & 0xff, i & 0xff);
		if (!sasl_ratelimit_allowed(rl, a, 30))
			blocked++;
		snprintf(a, sizeof(a), "172.16.%u.%u;25", (i >> 8) & 0xff,
		    i & 0xff);
		assert_true(sasl_ratelimit_allowed(rl, a, 30));
	}
	assert_true(blocked <= SASL_RATELIMIT_SLOTS);
	assert_true(blocked >= SASL_RATELIMIT_SLOTS / 2);
	sasl_ratelimit_free(rl);
}

static void
test_base64(void **state)
{
	static const struct {
		const char *text;
		int ok;
		const char *bytes;
		size_t len;
	} cases[] = {
		{ "", 1, "", 0 },
		{ "=", 1, "", 0 },
		{ "AGFsaWNlAHB3", 1, "\0alice\0pw", 9 },
		{ "YQ==", 1, "a", 1 },
		{ "YWI=", 1, "ab", 2 },
		{ "YWJj", 1, "abc", 3 },
		{ "YQ", 0, NULL, 0 },		/* padding required */
		{ "YQ=", 0, NULL, 0 },
		{ "Y Q==", 0, NULL, 0 },	/* no whitespace */
		{ "YQ==\r\n", 0, NULL, 0 },
		{ "YQ==YQ==", 0, NULL, 0 },	/* padding mid-text */
		{ "Y!==", 0, NULL, 0 },
		{ "==", 0, NULL, 0 },
		{ "*", 0, NULL, 0 },		/* cancel is the caller's */
		{ "YW_j", 0, NULL, 0 },		/* URL-safe alphabet */
	};
	size_t i;
	struct buf b;
	const char *err;

	(void)state;
	buf_init(&b, SASL_RESPONSE_MAX);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = sasl_base64_decode(cases[i].text,
		    strlen(cases[i].text), &b, &err);

		print_message("# base64 case %zu\n", i);
		assert_int_equal(r, cases[i].ok ? 0 : -1);
		assert_true(b.secret);
		if (cases[i].ok) {
			assert_int_equal(b.len, cases[i].len);
			assert_memory_equal(b.data, cases[i].bytes,
			    cases[i].len);
		}
	}
	buf_free(&b);
}

static void
test_base64_limits(void **state)
{
	static const struct {
		size_t bytes;		/* decoded size */
		size_t textlen;		/* encoded size */
		int ok;
	} cases[] = {
		{ SASL_RESPONSE_MAX - 1, 0, 1 },
		{ SASL_RESPONSE_MAX, 0, 1 },
		{ SASL_RESPONSE_MAX + 1, 0, 0 },
		{ 0, SASL_RESPONSE_B64_MAX + 1, 0 },
	};
	size_t i;

	(void)state;
	assert_int_equal(SASL_RESPONSE_B64_MAX, 16384);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b;
		const char *err = NULL;
		char *text;
		size_t textlen;

		buf_init(&b, BUF_UNBOUNDED);
		if (cases[i].textlen == 0) {
			uint8_t *raw = xmalloc(cases[i].bytes);

			memset(raw, 0xa5, cases[i].bytes);
			text = sasl_base64_encode(raw, cases[i].bytes);
			free(raw);
		} else {
			text = xmalloc(cases[i].textlen + 1);
			memset(text, 'A', cases[i].textlen);
			text[cases[i].textlen] = '\0';
		}
		textlen = strlen(text);
		assert_int_equal(sasl_base64_decode(text, textlen, &b, &err),
		    cases[i].ok ? 0 : -1);
		if (cases[i].ok) {
			assert_int_equal(b.len, cases[i].bytes);
			assert_int_equal(b.data[0], 0xa5);
		} else {
			assert_string_equal(err, "response too long");
		}
		free(text);
		buf_free(&b);
	}
}

static void
test_base64_roundtrip(void **state)
{
	uint8_t raw[300];
	struct buf b;
	size_t n;
	const char *err;

	(void)state;
	for (n = 0; n < sizeof(raw); n++)
		raw[n] = (uint8_t)(n * 7 + 3);
	buf_init(&b, SASL_RESPONSE_MAX);
	for (n = 0; n <= sizeof(raw); n += 1 + n / 8) {
		char *text = sasl_base64_encode(raw, n);

		assert_int_equal(strlen(text), (n + 2) / 3 * 4);
		assert_int_equal(sasl_base64_decode(text, strlen(text), &b,
		    &err), 0);
		assert_int_equal(b.len, n);
		if (n > 0)
			assert_memory_equal(b.data, raw, n);
		free(text);
	}
	buf_free(&b);
}

/* ---- against libsasl2's own client side ------------------------------ */

struct client_creds {
	const char *user;
	const char *pass;
	sasl_secret_t *secret;
};

static int
client_simple(void *context, int id, const char **result, unsigned *len)
{
	struct client_creds *c = context;

	if (id != SASL_CB_USER && id != SASL_CB_AUTHNAME)
		return SASL_BADPARAM;
	*result = c->user;
	if (len != NULL)
		*len = (unsigned)strlen(c->user);
	return SASL_OK;
}

static int
client_secret(sasl_conn_t *conn, void *context, int id,
    sasl_secret_t **psecret)
{
	struct client_creds *c = context;

	(void)conn;
	if (id != SASL_CB_PASS)
		return SASL_BADPARAM;
	*psecret = c->secret;
	return SASL_OK;
}

static enum sasl_session_result
client_exchange(const char *mech, const char *user, const char *pass,
    struct fake *f)
{
	struct client_creds c;
	sasl_callback_t cbs[4];
	sasl_conn_t *cc = NULL;
	struct sasl_session *s = session(f, 1, 0, 0);
	const char *cout = NULL, *chosen = NULL, *err = NULL;
	unsigned coutlen = 0;
	const uint8_t *sout = NULL;
	size_t soutlen = 0;
	enum sasl_session_result res;
	int r, rounds = 0;

	c.user = user;
	c.pass = pass;
	c.secret = xcalloc(1, sizeof(sasl_secret_t) + strlen(pass) + 1);
	c.secret->len = strlen(pass);
	memcpy(c.secret->data, pass, c.secret->len);
	cbs[0].id = SASL_CB_USER;
	cbs[0].proc = (int (*)(void))(void (*)(void))client_simple;
	cbs[0].context = &c;
	cbs[1].id = SASL_CB_AUTHNAME;
	cbs[1].proc = (int (*)(void))(void (*)(void))client_simple;
	cbs[1].context = &c;
	cbs[2].id = SASL_CB_PASS;
	cbs[2].proc = (int (*)(void))(void (*)(void))client_secret;
	cbs[2].context = &c;
	cbs[3].id = SASL_CB_LIST_END;
	cbs[3].proc = NULL;
	cbs[3].context = NULL;
	assert_int_equal(sasl_client_new("smtp", "mail.demo.gov.cn", NULL,
	    NULL, cbs, 0, &cc), SASL_OK);
	r = sasl_client_start(cc, mech, NULL, &cout, &coutlen, &chosen);
	assert_true(r == SASL_OK || r == SASL_CONTINUE);
	assert_string_equal(chosen, mech);
	res = sasl_session_start(s, mech, (const uint8_t *)cout, coutlen,
	    cout != NULL, &sout, &soutlen, &err);
	while (res == SASL_SESSION_CONTINUE) {
		assert_true(++rounds <= SASL_STEPS_MAX);
		r = sasl_client_step(cc, (const char *)sout, (unsigned)soutlen,
		    NULL, &cout, &coutlen);
		assert_true(r == SASL_OK || r == SASL_CONTINUE);
		res = sasl_session_step(s, (const uint8_t *)cout, coutlen,
		    &sout, &soutlen, &err);
	}
	if (res == SASL_SESSION_OK)
		assert_string_equal(sasl_session_user(s), user);
	sasl_dispose(&cc);
	sasl_session_free(s);
	free(c.secret);
	return res;
}

static void
test_client_interop(void **state)
{
	static const char *const mechs[] = { "PLAIN", "LOGIN" };
	size_t i;

	(void)state;
	assert_int_equal(sasl_client_init(NULL), SASL_OK);
	for (i = 0; i < 2; i++) {
		struct fake f = { USER, PASS, 0, 0, 0 };

		assert_int_equal(client_exchange(mechs[i], USER, PASS, &f),
		    SASL_SESSION_OK);
		assert_int_equal(f.calls, 1);
		assert_int_equal(client_exchange(mechs[i], USER, "nope", &f),
		    SASL_SESSION_FAIL);
		assert_int_equal(f.calls, 2);
	}
}

/* ---- sessions on several threads at once ----------------------------- */

#define THREADS 4
#define ROUNDS 50

static void *
thread_main(void *arg)
{
	struct fake *f = arg;
	int i, ok = 0;

	for (i = 0; i < ROUNDS; i++) {
		struct sasl_session *s = session(f, 1, 0, 0);
		uint8_t r[128];
		size_t n = plain_resp(r, sizeof(r), "", USER,
		    i % 2 ? PASS : "wrong");
		const uint8_t *out;
		size_t outlen;
		const char *err;
		enum sasl_session_result res = sasl_session_start(s, "PLAIN",
		    r, n, 1, &out, &outlen, &err);

		if ((i % 2 && res == SASL_SESSION_OK &&
		    strcmp(sasl_session_user(s), USER) == 0) ||
		    (!(i % 2) && res == SASL_SESSION_FAIL))
			ok++;
		sasl_session_free(s);
	}
	return (void *)(intptr_t)ok;
}

static void
test_threads(void **state)
{
	pthread_t t[THREADS];
	struct fake f[THREADS];
	int i;

	(void)state;
	for (i = 0; i < THREADS; i++) {
		f[i].user = USER;
		f[i].pass = PASS;
		f[i].calls = 0;
		f[i].tempfail = 0;
		f[i].always = 0;
		assert_int_equal(pthread_create(&t[i], NULL, thread_main,
		    &f[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		void *ret;

		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_int_equal((int)(intptr_t)ret, ROUNDS);
		assert_int_equal(f[i].calls, ROUNDS);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_mechs_need_tls),
		cmocka_unit_test(test_plain_table),
		cmocka_unit_test(test_plain_malformed),
		cmocka_unit_test(test_plain_no_initial_response),
		cmocka_unit_test(test_login_table),
		cmocka_unit_test(test_login_nul),
		cmocka_unit_test(test_check_password),
		cmocka_unit_test(test_steps_limit),
		cmocka_unit_test(test_response_size),
		cmocka_unit_test(test_user_max),
		cmocka_unit_test(test_session_misc),
		cmocka_unit_test(test_verify_decides),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_ratelimit_window),
		cmocka_unit_test(test_ratelimit_keys),
		cmocka_unit_test(test_ratelimit_full),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_base64_limits),
		cmocka_unit_test(test_base64_roundtrip),
		cmocka_unit_test(test_client_interop),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests_name("sasl", tests, NULL, NULL);
}
