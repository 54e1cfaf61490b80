/*
 * imapd.c - govmail-imapd: main(), the worker loop, and the per-connection
 * session (input through the incremental parser, command dispatch, reply
 * helpers).
 *
 * main() runs in the root parent (configuration, TLS context, binding via
 * daemon_run); everything else runs in the unprivileged single-threaded
 * workers.  Client bytes are untrusted: they reach command handlers only
 * as arguments the parser produced within its limits.
 */
#include "autoconf.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "imap_meta.h"
#include "imapd.h"
#include "log.h"
#include "sasl.h"
#include "strnum.h"
#include "tls.h"
#include "tpool.h"
#include "xmalloc.h"

/* How long a stopping worker lets its BYE lines drain, seconds. */
#define IMAPD_STOP_GRACE_SECONDS 2
/* How often a worker runs store_maintain(), seconds. */
#define IMAPD_MAINTAIN_SECONDS 5
/* Without inotify: how often IDLE sessions' mailboxes are polled, seconds. */
#define IMAPD_POLL_SECONDS 1
/*
 * Test hook: with this variable set, a worker behaves as if it could not
 * get an inotify instance (inotify_init1 failing with EMFILE, the per-user
 * limit), so the end-to-end test can check the polling fallback without
 * exhausting a limit that every process of the user shares.  It can only
 * degrade the service to polling, never widen anything.
 */
#define IMAPD_TEST_NO_INOTIFY_ENV "GOVMAIL_IMAPD_TEST_NO_INOTIFY"

struct imap_listener_ctx {
	struct imap_worker *w;
	int implicit_tls;
	char addr[DAEMON_ADDR_MAX];
};

static const struct imap_command commands[] = {
	{ "CAPABILITY", IMAP_CMDF_ANY, cmd_capability },
	{ "NOOP", IMAP_CMDF_ANY, cmd_noop },
	{ "LOGOUT", IMAP_CMDF_ANY, cmd_logout },
	{ "ID", IMAP_CMDF_ANY, cmd_id },
	{ "STARTTLS", IMAP_CMDF_NOTAUTH, cmd_starttls },
	{ "LOGIN", IMAP_CMDF_NOTAUTH, cmd_login },
	{ "AUTHENTICATE", IMAP_CMDF_NOTAUTH, cmd_authenticate },
	{ "ENABLE", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_enable },
	{ "COMPRESS", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_compress },
	{ "NAMESPACE", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_namespace },
	{ "LIST", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_list },
	{ "LSUB", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_lsub },
	{ "CREATE", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_create },
	{ "DELETE", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_delete },
	{ "RENAME", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_rename },
	{ "SUBSCRIBE", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_subscribe },
	{ "UNSUBSCRIBE", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED,
	    cmd_unsubscribe },
	{ "STATUS", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_status },
	{ "GETQUOTA", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_getquota },
	{ "GETQUOTAROOT", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED,
	    cmd_getquotaroot },
	{ "SELECT", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_select },
	{ "EXAMINE", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_examine },
	{ "APPEND", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_append },
	{ "IDLE", IMAP_CMDF_AUTH | IMAP_CMDF_SELECTED, cmd_idle },
	{ "CLOSE", IMAP_CMDF_SELECTED, cmd_close },
	{ "UNSELECT", IMAP_CMDF_SELECTED, cmd_unselect },
	{ "CHECK", IMAP_CMDF_SELECTED, cmd_check },
	{ "EXPUNGE", IMAP_CMDF_SELECTED | IMAP_CMDF_UID, cmd_expunge },
	{ "FETCH", IMAP_CMDF_SELECTED | IMAP_CMDF_UID, cmd_fetch },
	{ "STORE", IMAP_CMDF_SELECTED | IMAP_CMDF_UID, cmd_store },
	{ "SEARCH", IMAP_CMDF_SELECTED | IMAP_CMDF_UID, cmd_search },
	{ "COPY", IMAP_CMDF_SELECTED | IMAP_CMDF_UID, cmd_copy },
	{ "SORT", IMAP_CMDF_SELECTED | IMAP_CMDF_UID, cmd_sort },
	{ "THREAD", IMAP_CMDF_SELECTED | IMAP_CMDF_UID, cmd_thread },
	{ "MOVE", IMAP_CMDF_SELECTED | IMAP_CMDF_UID, cmd_move },
};

static void session_input(struct conn *c, void *arg);
static void session_drain(struct conn *c, void *arg);
static void session_tls(struct conn *c, void *arg);
static void session_timeout(struct conn *c, enum conn_close_reason why,
    void *arg);
static void session_close(struct conn *c, enum conn_close_reason why,
    void *arg);

static const struct conn_callbacks session_callbacks = {
	.on_input = session_input,
	.on_drain = session_drain,
	.on_tls = session_tls,
	.on_timeout = session_timeout,
	.on_close = session_close,
};

/* ---- replies ---- */

void
imap_write(struct imap_session *s, const void *data, size_t len)
{
	(void)conn_write(s->conn, data, len);
}

void
imap_printf(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)conn_vprintf(s->conn, fmt, ap);
	va_end(ap);
}

size_t
imap_output_len(struct imap_session *s)
{
	return conn_output_len(s->conn);
}

void
imap_tagged(struct imap_session *s, const char *status, const char *fmt, ...)
{
	va_list ap;

	if (s->selected && strcmp(status, "BAD") != 0 &&
	    s->state != IMAP_STATE_LOGOUT)
		imap_sync(s, !s->no_expunge);
	(void)conn_printf(s->conn, "%s %s ", s->tag, status);
	va_start(ap, fmt);
	(void)conn_vprintf(s->conn, fmt, ap);
	va_end(ap);
	(void)conn_write(s->conn, "\r\n", 2);
}

void
imap_tagged_store_error(struct imap_session *s, int err, const char *error)
{
	char esc[256];

	if (error == NULL)
		error = store_strerror(err);
	switch (err) {
	case STORE_ETEMP:
		log_warnx("s=%s event=store-error error=%s", s->sid,
		    log_escape(error, strlen(error), esc, sizeof(esc)));
		imap_tagged(s, "NO", "[UNAVAILABLE] Temporary failure, try "
		    "again later");
		break;
	case STORE_ENOTFOUND:
		imap_tagged(s, "NO", "[NONEXISTENT] No such mailbox");
		break;
	case STORE_EEXISTS:
		imap_tagged(s, "NO", "[ALREADYEXISTS] Mailbox already exists");
		break;
	case STORE_EQUOTA:
		imap_tagged(s, "NO", "[OVERQUOTA] Quota exceeded");
		break;
	case STORE_ETOOBIG:
		imap_tagged(s, "NO", "[TOOBIG] Message too large");
		break;
	case STORE_EPERM:
		imap_tagged(s, "NO", "[NOPERM] Not allowed");
		break;
	case STORE_EINVAL:
		imap_tagged(s, "NO", "[CANNOT] %s", store_strerror(err));
		break;
	default:
		imap_tagged(s, "NO", "[SERVERBUG] %s", store_strerror(err));
		break;
	}
}

void
imap_capabilities(struct imap_session *s, struct buf *out)
{
	int tls = conn_is_tls(s->conn);
	int plain_ok = tls || (s->w->plaintext_loopback && s->loopback);

	(void)buf_append_str(out, "IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE "
	    "LITERAL+");
	if (s->state == IMAP_STATE_NOTAUTH) {
		if (!tls && s->w->tls != NULL)
			(void)buf_append_str(out, " STARTTLS");
		if (plain_ok)
			(void)buf_append_str(out, " AUTH=PLAIN AUTH=LOGIN");
		else
			(void)buf_append_str(out, " LOGINDISABLED");
		return;
	}
	(void)buf_append_str(out, " NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN "
	    "LIST-EXTENDED LIST-STATUS SPECIAL-USE CONDSTORE QRESYNC ESEARCH "
	    "SEARCHRES UTF8=ACCEPT QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE "
	    "STATUS=SIZE SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES "
	    "BINARY MULTIAPPEND");
	(void)buf_printf(out, " APPENDLIMIT=%llu",
	    (unsigned long long)s->w->append_max);
	if (!conn_compressing(s->conn))
		(void)buf_append_str(out, " COMPRESS=DEFLATE");
}

/* ---- session life ---- */

void
imap_session_login(struct imap_session *s, const char *user)
{
	struct imap_parser_limits lim;

	free(s->user);
	s->user = xstrdup(user);
	s->state = IMAP_STATE_AUTH;
	imap_parser_limits_auth(&lim, (size_t)s->w->append_max);
	imap_parser_set_limits(s->parser, &lim);
	conn_set_timeouts(s->conn, s->w->idle_timeout_ms, 0);
	conn_set_line_limit(s->conn, IMAP_LINE_MAX, CONN_LINE_BARE_LF);
	{
		char esc[512];

		log_info("s=%s event=login user=%s", s->sid,
		    log_escape(user, strlen(user), esc, sizeof(esc)));
	}
}

/*
 * Durable replies without waiting on the loop: the worker's store handle
 * commits without flushing the log (store_set_deferred_sync), and a
 * command that wrote holds its output (the tagged OK among it) and its
 * input until a helper thread has flushed the log (store_sync).  Other
 * sessions go on meanwhile; one flush covers every commit before it.
 */
struct imap_sync_job {
	struct imap_session *s;		/* NULL once the session closed */
	struct store *store;
	int r;
};

static void command_end(struct imap_session *s);

static void
sync_work(void *arg)
{
	struct imap_sync_job *j = arg;

	j->r = store_sync(j->store, NULL);
}

static void
sync_done(void *arg)
{
	struct imap_sync_job *j = arg;
	struct imap_session *s = j->s;
	int r = j->r;

	free(j);
	if (s == NULL)
		return;
	s->sync = NULL;
	s->busy = 0;
	if (r != 0) {
		/* Not on disk: the held "OK" must never reach the client. */
		log_warnx("s=%s event=sync-failed", s->sid);
		conn_abort(s->conn);
		return;
	}
	conn_hold_output(s->conn, 0);
	command_end(s);
}

/* 1 if the reply now waits for a flush (sync_done finishes). */
static int
sync_start(struct imap_session *s)
{
	struct imap_sync_job *j;
	const char *err;

	if (!store_take_unsynced(s->w->store))
		return 0;
	j = xcalloc(1, sizeof(*j));
	j->s = s;
	j->store = s->w->store;
	conn_hold_output(s->conn, 1);
	if (tpool_submit(s->w->pool, sync_work, sync_done, j, &err) < 0) {
		/* No helper: flush here rather than answer early. */
		int r = store_sync(j->store, NULL);

		free(j);
		if (r != 0) {
			conn_abort(s->conn);
			return 1;
		}
		conn_hold_output(s->conn, 0);
		return 0;
	}
	s->sync = j;
	s->busy = 1;
	return 1;
}

void
imap_sync_detach(struct imap_session *s)
{
	if (s->sync != NULL) {
		s->sync->s = NULL;
		s->sync = NULL;
	}
}

void
imap_command_finished(struct imap_session *s)
{
	if (s->cont_free != NULL && s->cont_state != NULL)
		s->cont_free(s->cont_state);
	s->cont = NULL;
	s->cont_state = NULL;
	s->cont_free = NULL;
	if (sync_start(s))
		return;
	command_end(s);
}

static void
command_end(struct imap_session *s)
{
	if (s->state == IMAP_STATE_LOGOUT) {
		conn_close(s->conn);
		return;
	}
	conn_resume_input(s->conn);
}

static void
on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s = arg;

	(void)fd;
	(void)what;
	if (s->cont != NULL && !s->busy && !conn_closing(s->conn) &&
	    s->cont(s) == IMAP_CMD_DONE)
		imap_command_finished(s);
}

void
imap_command_yield(struct imap_session *s)
{
	/*
	 * A zero timer, not event_active(): libevent runs an event activated
	 * from a callback in the same pass, before it polls I/O again, so a
	 * chain of slices would starve every other connection.  A timer is
	 * due only after the next poll: other clients' input comes first.
	 */
	static const struct timeval now = { 0, 0 };

	if (s->resume_ev == NULL)
		s->resume_ev = evtimer_new(s->w->base, on_resume, s);
	evtimer_add(s->resume_ev, &now);
}

static const struct imap_command *
command_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (str_casecmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void
dispatch(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	const struct imap_command *cmd;
	size_t skip = 2;
	int uid = 0;
	unsigned need;
	enum imap_cmd_result r;

	(void)str_copy(s->tag, sizeof(s->tag), args[0].str);
	if (args[1].type != IMAP_ARG_ATOM) {
		imap_tagged(s, "BAD", "Command name expected");
		return;
	}
	if (imap_arg_atom_is(&args[1], "UID")) {
		if (n < 3 || args[2].type != IMAP_ARG_ATOM) {
			imap_tagged(s, "BAD", "UID needs a command");
			return;
		}
		uid = 1;
		skip = 3;
	}
	cmd = command_find(args[skip - 1].str);
	if (cmd == NULL || (uid && !(cmd->states & IMAP_CMDF_UID))) {
		imap_tagged(s, "BAD", "Unknown command");
		return;
	}
	switch (s->state) {
	case IMAP_STATE_NOTAUTH:
		need = IMAP_CMDF_NOTAUTH;
		break;
	case IMAP_STATE_AUTH:
		need = IMAP_CMDF_AUTH;
		break;
	case IMAP_STATE_SELECTED:
		need = IMAP_CMDF_SELECTED;
		break;
	default:
		return;
	}
	if (!(cmd->states & need)) {
		if (s->state == IMAP_STATE_NOTAUTH)
			imap_tagged(s, "BAD", "Log in first");
		else if (s->state == IMAP_STATE_AUTH &&
		    (cmd->states & IMAP_CMDF_SELECTED))
			imap_tagged(s, "BAD", "No mailbox selected");
		else
			imap_tagged(s, "BAD", "Command not allowed now");
		return;
	}
	conn_pause_input(s->conn);
	s->no_expunge = !uid && (cmd->fn == cmd_fetch || cmd->fn == cmd_store ||
	    cmd->fn == cmd_search || cmd->fn == cmd_sort ||
	    cmd->fn == cmd_thread);
	r = cmd->fn(s, args + skip, n - skip, uid);
	if (r == IMAP_CMD_DONE && !s->busy && !s->idling && !s->auth_wait)
		imap_command_finished(s);
}

/*
 * SECURITY: a synchronising literal is accepted ("+") only for a command
 * that exists and is allowed in this state, so an unauthenticated client
 * cannot make us buffer literals for APPEND and friends.
 */
static int
literal_allowed(struct imap_session *s)
{
	const struct imap_command *cmd;
	const char *name = imap_parser_command(s->parser);

	if (str_casecmp(name, "UID") == 0)
		return s->state == IMAP_STATE_SELECTED;
	cmd = command_find(name);
	if (cmd == NULL)
		return 0;
	switch (s->state) {
	case IMAP_STATE_NOTAUTH:
		return (cmd->states & IMAP_CMDF_NOTAUTH) != 0;
	case IMAP_STATE_AUTH:
		return (cmd->states & IMAP_CMDF_AUTH) != 0;
	case IMAP_STATE_SELECTED:
		return (cmd->states & IMAP_CMDF_SELECTED) != 0;
	default:
		return 0;
	}
}

static void
session_input(struct conn *c, void *arg)
{
	struct imap_session *s = arg;

	while (!conn_closing(c) && !s->busy && s->cont == NULL) {
		const uint8_t *data;
		size_t n, used;
		enum imap_parse_result r;

		if (s->idling || s->auth_wait) {
			const char *line;
			size_t len;
			int lr = conn_read_line(c, &line, &len);

			if (lr == CONN_MORE)
				return;
			if (lr == CONN_LINE_TOO_LONG) {
				imap_printf(s, "* BYE Line too long\r\n");
				conn_close(c);
				return;
			}
			if (s->idling)
				imap_idle_line(s, line, len);
			else
				imap_auth_line(s, line, len);
			continue;
		}
		n = conn_input(c, &data);
		if (n == 0)
			return;
		r = imap_parser_feed(s->parser, data, n, &used);
		conn_consume(c, used);
		switch (r) {
		case IMAP_PARSE_MORE:
			break;
		case IMAP_PARSE_LITERAL:
			if (s->state != IMAP_STATE_NOTAUTH &&
			    literal_allowed(s)) {
				imap_append_literal(s);
				break;
			}
			/*
			 * APPEND refused in this state: a small
			 * non-synchronising literal is read (the command
			 * then gets its BAD); anything else is refused.
			 */
			if (!imap_parser_literal_sync(s->parser)) {
				if (imap_parser_literal_inline(s->parser) == 0)
					break;
				imap_printf(s, "* BYE [TOOBIG] Literal too "
				    "large\r\n");
				conn_close(c);
				return;
			}
			/* FALLTHROUGH */
		case IMAP_PARSE_CONTINUE:
			if (literal_allowed(s)) {
				imap_printf(s, "+ Ready for literal data\r\n");
				break;
			}
			/* The client waits for "+": refusing drops it all. */
			(void)str_copy(s->tag, sizeof(s->tag),
			    imap_parser_tag(s->parser));
			imap_printf(s, "%s BAD %s\r\n", s->tag,
			    s->state == IMAP_STATE_NOTAUTH ? "Log in first" :
			    "Command not allowed now");
			imap_parser_reset(s->parser);
			imap_append_release(s);
			break;
		case IMAP_PARSE_ERROR:
			imap_append_release(s);
			(void)str_copy(s->tag, sizeof(s->tag),
			    imap_parser_tag(s->parser));
			imap_printf(s, "%s BAD %s\r\n", s->tag,
			    imap_parser_error(s->parser));
			break;
		case IMAP_PARSE_FATAL:
			imap_printf(s, "* BYE %s\r\n",
			    imap_parser_error(s->parser));
			conn_close(c);
			return;
		case IMAP_PARSE_OK: {
			const struct imap_arg *args;
			size_t nargs;

			args = imap_parser_args(s->parser, &nargs);
			if (imap_parser_failed(s->parser) != NULL) {
				/* A literal was refused and its bytes dropped. */
				(void)str_copy(s->tag, sizeof(s->tag),
				    imap_parser_tag(s->parser));
				imap_printf(s, "%s NO %s\r\n", s->tag,
				    imap_parser_failed(s->parser));
			} else
				dispatch(s, args, nargs);
			/* The arguments are dead: release their storage now. */
			imap_parser_reset(s->parser);
			imap_append_release(s);
			if (s->state == IMAP_STATE_LOGOUT)
				return;
			break;
		}
		}
	}
}

static void
session_drain(struct conn *c, void *arg)
{
	struct imap_session *s = arg;

	(void)c;
	if (s->cont != NULL && !s->busy) {
		if (s->cont(s) == IMAP_CMD_DONE)
			imap_command_finished(s);
	}
}

/*
 * The TLS handshake is done.  records= says who carries the records from
 * now on: govmail (tls_compact, lib/tls13.c) or openssl.
 */
static void
session_tls(struct conn *c, void *arg)
{
	struct imap_session *s = arg;

	log_info("s=%s event=tls version=%s cipher=%s records=%s", s->sid,
	    conn_tls_version(c), conn_tls_cipher(c),
	    conn_ssl(c) == NULL ? "govmail" : "openssl");
}

static void
session_timeout(struct conn *c, enum conn_close_reason why, void *arg)
{
	(void)why;
	(void)arg;
	(void)conn_printf(c, "* BYE Autologout; idle for too long\r\n");
}

static void
session_close(struct conn *c, enum conn_close_reason why, void *arg)
{
	struct imap_session *s = arg;
	struct imap_worker *w = s->w;

	if (why == CONN_CLOSE_TLS || why == CONN_CLOSE_RESET)
		log_info("s=%s event=close reason=%s error=%s", s->sid,
		    conn_close_reason_str(why), conn_error(c));
	else
		log_info("s=%s event=close reason=%s", s->sid,
		    conn_close_reason_str(why));
	imap_auth_detach(s);
	imap_sync_detach(s);
	imap_append_detach(s);
	imap_unselect(s);
	if (s->cont_free != NULL && s->cont_state != NULL)
		s->cont_free(s->cont_state);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	if (s->resume_ev != NULL)
		event_free(s->resume_ev);
	imap_parser_free(s->parser);
	imap_append_release(s);
	free(s->user);
	free(s->saved);
	free(s);
	if (w->stopping && w->sessions == NULL)
		event_base_loopbreak(w->base);
}

static void
on_accept(int fd, const struct sockaddr *sa, socklen_t salen, void *arg)
{
	struct imap_listener_ctx *lc = arg;
	struct imap_worker *w = lc->w;
	struct imap_session *s = xcalloc(1, sizeof(*s));
	struct imap_parser_limits lim;
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	struct buf caps;

	s->w = w;
	(void)snprintf(s->sid, sizeof(s->sid), "%lx%04lx",
	    (unsigned long)getpid(), w->next_id++);
	host[0] = '\0';
	if (getnameinfo(sa, salen, host, sizeof(host), serv, sizeof(serv),
	    NI_NUMERICHOST | NI_NUMERICSERV) == 0 &&
	    strlen(host) + strlen(serv) + 2 <= sizeof(s->remote)) {
		(void)str_copy(s->remote, sizeof(s->remote), host);
		(void)str_append(s->remote, sizeof(s->remote), ";");
		(void)str_append(s->remote, sizeof(s->remote), serv);
	}
	(void)str_copy(s->local, sizeof(s->local), lc->addr);
	s->loopback = s->remote[0] != '\0' && sasl_addr_is_loopback(s->remote);
	imap_parser_limits_preauth(&lim);
	s->parser = imap_parser_new(&lim);
	imap_parser_set_append_hook(s->parser, 1);
	s->spool_fd = -1;
	s->state = IMAP_STATE_NOTAUTH;
	s->next = w->sessions;
	if (w->sessions != NULL)
		w->sessions->prev = s;
	w->sessions = s;
	s->conn = conn_new(w->base, fd, &session_callbacks, s);
	conn_set_timeouts(s->conn, w->login_timeout_ms, 0);
	/* After the handshake, TLS 1.3 records without OpenSSL's state. */
	conn_set_tls_compact(s->conn, w->tls_compact);
	/*
	 * The parser bounds commands itself; the connection's line limit
	 * bounds the raw lines (AUTHENTICATE responses, IDLE's DONE).
	 */
	conn_set_line_limit(s->conn, SASL_RESPONSE_B64_MAX, CONN_LINE_BARE_LF);
	conn_set_output_max(s->conn, IMAPD_OUTPUT_MAX);
	log_info("s=%s event=connect ip=%s tls=%d", s->sid, host,
	    lc->implicit_tls);
	if (lc->implicit_tls) {
		const char *err;

		if (conn_starttls(s->conn, w->tls, NULL, &err) < 0) {
			log_warnx("s=%s event=tls-error error=%s", s->sid, err);
			conn_abort(s->conn);
			return;
		}
	}
	buf_init(&caps, 4096);
	imap_capabilities(s, &caps);
	imap_printf(s, "* OK [CAPABILITY %s] govmail IMAP ready\r\n",
	    imap_bstr(&caps));
	buf_free(&caps);
}

/* ---- the worker ---- */

static void
notify_cb(uint32_t mailbox_id, void *arg)
{
	imap_notify(arg, mailbox_id);
}

static void
on_watch(evutil_socket_t fd, short what, void *arg)
{
	struct imap_worker *w = arg;

	(void)fd;
	(void)what;
	(void)store_watch_read(w->watch, notify_cb, w);
}

/*
 * No inotify instance: every IMAPD_POLL_SECONDS, compare each IDLE
 * session's mailbox HIGHESTMODSEQ and UIDNEXT with what it last reported.
 */
static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct imap_worker *w = arg;
	struct imap_session *s, *next;

	(void)fd;
	(void)what;
	for (s = w->sessions; s != NULL; s = next) {
		struct store_mailbox_info info;
		const char *err;

		next = s->next;
		if (!s->idling || !s->selected || conn_closing(s->conn))
			continue;
		if (store_mailbox_get_id(w->store, s->mb.id, &info, NULL,
		    &err) != 0)
			continue;
		if (info.highestmodseq != s->mb.modseq ||
		    info.uidnext != s->mb.uidnext)
			imap_sync(s, 1);
	}
}

/*
 * Upkeep (failchk, expiry, the checkpoint, which writes every dirty page
 * of the cache) runs on a helper thread with its own store handle: a
 * checkpoint on the loop stalled every session of the worker.
 */
static void
maintain_work(void *arg)
{
	struct imap_worker *w = arg;
	struct store *st = imap_helper_store(w->cfg);
	const char *err = NULL;

	if (st != NULL && store_maintain(st, &err) < 0)
		log_warnx("event=maintain-failed error=%s",
		    err != NULL ? err : "?");
}

static void
maintain_done(void *arg)
{
	struct imap_worker *w = arg;

	w->maintaining = 0;
}

static void
on_maintain(evutil_socket_t fd, short what, void *arg)
{
	struct imap_worker *w = arg;
	const char *err = NULL;

	(void)fd;
	(void)what;
	if (w->maintaining)
		return;
	w->maintaining = 1;
	if (tpool_submit(w->pool, maintain_work, maintain_done, w, &err) < 0) {
		w->maintaining = 0;
		log_warnx("event=maintain-failed error=%s",
		    err != NULL ? err : "?");
	}
}

static void
on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct imap_worker *w = arg;

	(void)fd;
	(void)what;
	event_base_loopbreak(w->base);
}

/*
 * SIGTERM: stop accepting, tell every client "* BYE" and close after the
 * output drains; the loop ends when the last session is gone or after
 * IMAPD_STOP_GRACE_SECONDS, whichever is first.
 */
static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct imap_worker *w = arg;
	struct imap_session *s;
	struct timeval tv = { IMAPD_STOP_GRACE_SECONDS, 0 };
	size_t i;

	(void)sig;
	(void)what;
	if (w->stopping)
		return;
	w->stopping = 1;
	for (i = 0; i < w->nlisteners; i++)
		conn_listener_free(w->listeners[i]);
	w->nlisteners = 0;
	if (w->sessions == NULL) {
		event_base_loopbreak(w->base);
		return;
	}
	for (s = w->sessions; s != NULL; s = s->next) {
		imap_printf(s, "* BYE Server shutting down\r\n");
		conn_close(s->conn);
	}
	w->stop_ev = event_new(w->base, -1, 0, on_stop_timer, w);
	event_add(w->stop_ev, &tv);
}

struct imapd_ctx {
	struct config *cfg;
	SSL_CTX *tls;
	size_t nimaps;		/* listeners with kind "imaps" */
};

static int
worker_main(const struct daemon_listener *ls, size_t n, unsigned int index,
    void *arg)
{
	struct imapd_ctx *ctx = arg;
	struct imap_worker w;
	struct imap_listener_ctx *lcs;
	struct conn_listener **cls;
	const char *err;
	struct timeval tv = { IMAPD_MAINTAIN_SECONDS, 0 };
	size_t i;
	int rc;

	(void)index;
	memset(&w, 0, sizeof(w));
	w.cfg = ctx->cfg;
	w.tls = ctx->tls;
	w.plaintext_loopback = config_bool(ctx->cfg, "imapd",
	    "plaintext_loopback");
	w.tls_compact = config_bool(ctx->cfg, "imapd", "tls_compact");
	w.append_max = config_size(ctx->cfg, "limits", "message_size");
	if (w.append_max > STORE_MESSAGE_MAX)
		w.append_max = STORE_MESSAGE_MAX;
	w.spool_dir = xstrdup(config_path_get(ctx->cfg, "store", "path"));
	w.spool_memory = config_path_get(ctx->cfg, "store", "key_file")[0] !=
	    '\0';
	w.login_timeout_ms = (uint32_t)(config_duration(ctx->cfg, "imapd",
	    "login_timeout") * 1000);
	w.idle_timeout_ms = (uint32_t)(config_duration(ctx->cfg, "imapd",
	    "idle_timeout") * 1000);
	if (sasl_glue_init(&err) < 0) {
		log_warnx("event=sasl-init-failed error=%s", err);
		return DAEMON_EXIT_FATAL;
	}
	rc = store_open(ctx->cfg, 0, &w.store, &err);
	if (rc < 0) {
		log_warnx("event=store-open-failed error=%s", err);
		return rc == STORE_ETEMP ? 1 : DAEMON_EXIT_FATAL;
	}
	/* Commits are flushed on a helper thread before the reply. */
	store_set_deferred_sync(w.store, 1);
	w.meta = meta_cache_new((size_t)config_size(ctx->cfg, "imapd",
	    "meta_cache"));
	w.base = event_base_new();
	if (w.base == NULL)
		log_fatalx("event_base_new failed");
	w.pool = tpool_new(w.base, (unsigned)config_uint(ctx->cfg, "imapd",
	    "auth_threads"), 0, &err);
	if (w.pool == NULL) {
		log_warnx("event=tpool-failed error=%s", err);
		return DAEMON_EXIT_FATAL;
	}
	if (getenv(IMAPD_TEST_NO_INOTIFY_ENV) != NULL) {
		rc = STORE_ETEMP;
		err = "no inotify instance (test hook " IMAPD_TEST_NO_INOTIFY_ENV
		    ")";
	} else
		rc = store_watch_new(w.store, &w.watch, &err);
	if (rc < 0) {
		/*
		 * Typically EMFILE: fs.inotify.max_user_instances (128 by
		 * default) is shared by every process of this user.  Serve
		 * anyway; IDLE sessions learn of changes by polling.
		 */
		struct timeval ptv = { IMAPD_POLL_SECONDS, 0 };

		log_warnx("event=watch-unavailable error=%s fallback=poll "
		    "interval=%ds", err, IMAPD_POLL_SECONDS);
		w.watch = NULL;
		w.poll_ev = event_new(w.base, -1, EV_PERSIST, on_poll, &w);
		event_add(w.poll_ev, &ptv);
	}
	w.rl = sasl_ratelimit_new((unsigned)config_uint(ctx->cfg, "limits",
	    "auth_failures"), (unsigned)config_duration(ctx->cfg, "limits",
	    "auth_failure_window"));
	if (w.watch != NULL) {
		w.watch_ev = event_new(w.base, store_watch_fd(w.watch),
		    EV_READ | EV_PERSIST, on_watch, &w);
		event_add(w.watch_ev, NULL);
	}
	w.maint_ev = event_new(w.base, -1, EV_PERSIST, on_maintain, &w);
	event_add(w.maint_ev, &tv);
	w.sig_ev = evsignal_new(w.base, SIGTERM, on_signal, &w);
	event_add(w.sig_ev, NULL);
	lcs = xcalloc(n, sizeof(*lcs));
	cls = xcalloc(n, sizeof(*cls));
	w.listeners = cls;
	w.nlisteners = n;
	for (i = 0; i < n; i++) {
		lcs[i].w = &w;
		lcs[i].implicit_tls = strcmp(ls[i].kind, "imaps") == 0;
		(void)str_copy(lcs[i].addr, sizeof(lcs[i].addr), ls[i].addr);
		cls[i] = conn_listener_new(w.base, dup(ls[i].fd), on_accept,
		    &lcs[i]);
	}
	log_info("event=worker-ready listeners=%zu", n);
	(void)event_base_dispatch(w.base);
	for (i = 0; i < w.nlisteners; i++)
		conn_listener_free(cls[i]);
	while (w.sessions != NULL) {
		struct imap_session *s = w.sessions;

		/* conn_free skips on_close: clean up here. */
		w.sessions = s->next;
		imap_auth_detach(s);
		imap_sync_detach(s);
		imap_append_detach(s);
		conn_free(s->conn);
	}
	tpool_free(w.pool);
	if (w.watch_ev != NULL)
		event_free(w.watch_ev);
	if (w.poll_ev != NULL)
		event_free(w.poll_ev);
	event_free(w.maint_ev);
	event_free(w.sig_ev);
	if (w.stop_ev != NULL)
		event_free(w.stop_ev);
	store_watch_free(w.watch);
	sasl_ratelimit_free(w.rl);
	store_close(w.store);
	meta_cache_free(w.meta);
	event_base_free(w.base);
	free(lcs);
	free(cls);
	free(w.watch_ids);
	free(w.watch_refs);
	free(w.spool_dir);
	return 0;
}

/* Parse "host:port host2:port" ([v6]:port) into listen entries. */
static int
parse_listen(const char *text, const char *kind, struct daemon_listen *l,
    size_t *n, char **hold, size_t *nhold, const char **error_r)
{
	char *copy = xstrdup(text), *p = copy, *save = NULL;

	hold[(*nhold)++] = copy;
	for (;;) {
		char *item, *colon;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		item = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		if (*p != '\0')
			*p++ = '\0';
		if (*n >= DAEMON_LISTENERS_MAX) {
			*error_r = "too many listen addresses";
			return -1;
		}
		if (item[0] == '[') {
			char *close = strchr(item, ']');

			if (close == NULL || close[1] != ':') {
				*error_r = "bad listen address";
				return -1;
			}
			*close = '\0';
			l[*n].host = item + 1;
			l[*n].port = close + 2;
		} else {
			colon = strrchr(item, ':');
			if (colon == NULL) {
				*error_r = "listen address needs host:port";
				return -1;
			}
			*colon = '\0';
			l[*n].host = item;
			l[*n].port = colon + 1;
		}
		l[*n].kind = kind;
		(*n)++;
	}
	(void)save;
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: govmail-imapd [-d] [-f] [-c FILE]\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	const char *conf = NULL, *err;
	int ch, fg = 0, debug = 0;
	struct imapd_ctx ctx;
	struct daemon_listen l[DAEMON_LISTENERS_MAX];
	char *hold[2];
	size_t n = 0, nhold = 0, nimap, i;
	struct daemon_spec spec;
	struct tls_settings ts;
	enum log_level level = LOG_LEVEL_INFO;

	while ((ch = getopt(argc, argv, "c:dfh")) != -1) {
		switch (ch) {
		case 'c':
			conf = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'f':
			fg = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (debug)
		level = LOG_LEVEL_DEBUG;
	log_init("govmail-imapd", fg ? LOG_TO_STDERR : LOG_TO_SYSLOG, level);
	memset(&ctx, 0, sizeof(ctx));
	if (config_load(config_path(conf), &ctx.cfg, &err) < 0)
		log_fatalx("%s", err);
	if (!debug && log_level_parse(config_str(ctx.cfg, "store",
	    "log_level"), &level) == 0)
		log_init("govmail-imapd", fg ? LOG_TO_STDERR : LOG_TO_SYSLOG,
		    level);
	if (parse_listen(config_str(ctx.cfg, "imapd", "listen_imap"), "imap",
	    l, &n, hold, &nhold, &err) < 0)
		log_fatalx("listen_imap: %s", err);
	nimap = n;
	if (parse_listen(config_str(ctx.cfg, "imapd", "listen_imaps"),
	    "imaps", l, &n, hold, &nhold, &err) < 0)
		log_fatalx("listen_imaps: %s", err);
	ctx.nimaps = n - nimap;
	if (n == 0)
		log_fatalx("no listen_imap or listen_imaps address");
	tls_settings_from_config(ctx.cfg, &ts);
	if (ts.cert_file != NULL && ts.cert_file[0] != '\0') {
		if (tls_server_ctx_new(&ts, &ctx.tls, &err) < 0)
			log_fatalx("%s", err);
	} else if (ctx.nimaps > 0)
		log_fatalx("listen_imaps needs [tls] cert_file and key_file");
	memset(&spec, 0, sizeof(spec));
	spec.role = "govmail-imapd";
	spec.listen = l;
	spec.nlisten = n;
	spec.workers = (unsigned)config_uint(ctx.cfg, "imapd", "workers");
	spec.pid_file = config_path_get(ctx.cfg, "imapd", "pid_file");
	spec.user = config_str(ctx.cfg, "imapd", "user");
	spec.foreground = fg;
	spec.worker_main = worker_main;
	spec.ctx = &ctx;
	if (daemon_run(&spec, &err) < 0)
		log_fatalx("%s", err);
	if (ctx.tls != NULL)
		SSL_CTX_free(ctx.tls);
	for (i = 0; i < nhold; i++)
		free(hold[i]);
	config_free(ctx.cfg);
	return 0;
}
