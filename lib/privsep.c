/*
 * privsep.c - drop root to an unprivileged user, and prove it happened.
 *
 * Runs in every daemon process that gives up root: the workers after the
 * parent has bound the ports, helper processes before they read input.
 * Trusts the password and group databases; the user name comes from the
 * configuration.  SECURITY: every step is checked, and the result is
 * verified afterwards (Postfix chroot_uid.c and OpenSMTPD do the same),
 * because a silently failed setuid() is the classic privilege bug.
 */
#include "autoconf.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "privsep.h"
#include "xmalloc.h"

/* Most supplementary groups we inspect when verifying (NGROUPS_MAX). */
#define PRIVSEP_MAX_GROUPS 65536
/* getpwnam_r buffer when sysconf gives no hint. */
#define PRIVSEP_PWBUF_DEFAULT 16384

static char privsep_errbuf[256 + PRIVSEP_USER_MAX];

static const char *
privsep_error(const char *what, int err)
{
	if (err != 0)
		snprintf(privsep_errbuf, sizeof(privsep_errbuf), "%s: %s",
		    what, strerror(err));
	else
		snprintf(privsep_errbuf, sizeof(privsep_errbuf), "%s", what);
	return privsep_errbuf;
}

int
privsep_is_root(void)
{
	return getuid() == 0 || geteuid() == 0;
}

int
privsep_lookup(const char *user, uid_t *uid_r, gid_t *gid_r,
    const char **error_r)
{
	struct passwd pw, *res = NULL;
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t len = hint > 0 ? (size_t)hint : PRIVSEP_PWBUF_DEFAULT;
	char *pwbuf;
	int r;

	if (user == NULL || user[0] == '\0') {
		*error_r = "empty user name";
		return -1;
	}
	if (strnlen(user, PRIVSEP_USER_MAX + 1) > PRIVSEP_USER_MAX) {
		*error_r = "user name too long";
		return -1;
	}
	pwbuf = xmalloc(len);
	while ((r = getpwnam_r(user, &pw, pwbuf, len, &res)) == ERANGE
	    && len < 1024 * 1024) {
		len *= 2;
		free(pwbuf);
		pwbuf = xmalloc(len);
	}
	if (r != 0) {
		free(pwbuf);
		*error_r = privsep_error("getpwnam_r", r);
		return -1;
	}
	if (res == NULL) {
		free(pwbuf);
		snprintf(privsep_errbuf, sizeof(privsep_errbuf),
		    "unknown user \"%s\"", user);
		*error_r = privsep_errbuf;
		return -1;
	}
	*uid_r = pw.pw_uid;
	*gid_r = pw.pw_gid;
	free(pwbuf);
	return 0;
}

/* Does gid appear among user's groups (primary gid plus group file)? */
static int
privsep_user_in_group(const char *user, gid_t primary, gid_t gid)
{
	gid_t *groups;
	int n = 64, i, found = 0;

	if (primary == gid)
		return 1;
	groups = xreallocarray(NULL, (size_t)n, sizeof(*groups));
	if (getgrouplist(user, primary, groups, &n) < 0) {
		groups = xreallocarray(groups, (size_t)n, sizeof(*groups));
		if (getgrouplist(user, primary, groups, &n) < 0)
			n = 0;
	}
	for (i = 0; i < n; i++)
		if (groups[i] == gid)
			found = 1;
	free(groups);
	return found;
}

/* SECURITY: check what the kernel says, not what we asked for. */
static int
privsep_verify(const char *user, uid_t uid, gid_t gid, const char **error_r)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	gid_t *groups;
	int n, i;

	if (getresuid(&ru, &eu, &su) < 0) {
		*error_r = privsep_error("getresuid", errno);
		return -1;
	}
	if (getresgid(&rg, &eg, &sg) < 0) {
		*error_r = privsep_error("getresgid", errno);
		return -1;
	}
	if (ru != uid || eu != uid || su != uid) {
		*error_r = "drop verification: user ids not all changed";
		return -1;
	}
	if (rg != gid || eg != gid || sg != gid) {
		*error_r = "drop verification: group ids not all changed";
		return -1;
	}
	n = getgroups(0, NULL);
	if (n < 0 || n > PRIVSEP_MAX_GROUPS) {
		*error_r = privsep_error("getgroups", errno);
		return -1;
	}
	groups = xreallocarray(NULL, (size_t)n + 1, sizeof(*groups));
	n = getgroups(n, groups);
	if (n < 0) {
		free(groups);
		*error_r = privsep_error("getgroups", errno);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (groups[i] == 0 && !privsep_user_in_group(user, gid, 0)) {
			free(groups);
			*error_r = "drop verification: still in group 0";
			return -1;
		}
	}
	free(groups);
	if (setuid(0) != -1 || seteuid(0) != -1) {
		*error_r = "drop verification: setuid(0) succeeded";
		return -1;
	}
	if (gid != 0 && (setgid(0) != -1 || setegid(0) != -1)) {
		*error_r = "drop verification: setgid(0) succeeded";
		return -1;
	}
	return 0;
}

int
privsep_drop(const char *user, const char **error_r)
{
	uid_t uid;
	gid_t gid;

	if (!privsep_is_root())
		return 0;	/* development mode: documented in privsep.h */
	if (privsep_lookup(user, &uid, &gid, error_r) < 0)
		return -1;
	if (uid == 0) {
		*error_r = "refusing to run as a user with uid 0";
		return -1;
	}
	/* The order matters: groups first, while we may still change them. */
	if (initgroups(user, gid) < 0) {
		*error_r = privsep_error("initgroups", errno);
		return -1;
	}
	if (setresgid(gid, gid, gid) < 0) {
		*error_r = privsep_error("setresgid", errno);
		return -1;
	}
	if (setresuid(uid, uid, uid) < 0) {
		*error_r = privsep_error("setresuid", errno);
		return -1;
	}
	return privsep_verify(user, uid, gid, error_r);
}
