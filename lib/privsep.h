/*
 * privsep.h - dropping root for good.
 *
 * Every daemon: the root parent binds its ports, then each worker (and any
 * helper that reads network or client data) calls privsep_drop() before it
 * reads a byte from the network.  After a successful drop the process can
 * never regain root: the drop is verified, not assumed.
 *
 * Development mode: when the process is not running as root (real and
 * effective uid both non-zero), privsep_drop() changes nothing and returns
 * 0, so the quickstart and the tests run the same code path unprivileged.
 */
#ifndef GOVMAIL_PRIVSEP_H
#define GOVMAIL_PRIVSEP_H

#include <sys/types.h>

/* The unprivileged user the daemons run as unless configured otherwise. */
#define PRIVSEP_DEFAULT_USER "govmail"
/* Longest user name accepted (LOGIN_NAME_MAX on Linux is 256). */
#define PRIVSEP_USER_MAX 256

/*
 * Look up user in the password database.  Returns 0 and fills *uid_r and
 * *gid_r (the user's primary group), or -1 with *error_r set to a static
 * or internal-buffer message (valid until the next privsep call) if the
 * user is unknown, the name is empty or longer than PRIVSEP_USER_MAX, or the
 * lookup failed.
 */
int privsep_lookup(const char *user, uid_t *uid_r, gid_t *gid_r,
    const char **error_r);

/* 1 if the process runs as root (real or effective uid 0), else 0. */
int privsep_is_root(void);

/*
 * When running as root: set the supplementary groups to user's groups
 * (initgroups), then the real, effective and saved group ids and user ids
 * to user's, then verify: getresuid()/getresgid() all equal the target,
 * group 0 is not among the supplementary groups unless user's groups hold
 * it, and setuid(0) and setgid(0) both fail.  Refuses a user whose uid is
 * 0.  Returns 0, or -1 with *error_r set (same lifetime as above); after
 * -1 the process may be half-dropped and must exit.
 *
 * When not running as root (development mode): does nothing, returns 0.
 */
int privsep_drop(const char *user, const char **error_r);

#endif
