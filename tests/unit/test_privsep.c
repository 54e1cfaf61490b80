/*
 * Unit tests for lib/privsep.c.  The lookups run anywhere; the drops run
 * in forked children (a drop is for good) and need root, so they are
 * left out (see main) when the suite runs unprivileged.  A child reports through its
 * exit status: 0 = every check held, anything else names the failed check.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "privsep.h"

struct lookup_case {
	const char *user;
	int ok;
	const char *err;	/* substring of the error when !ok */
};

static void
test_lookup(void **state)
{
	static char at_max[PRIVSEP_USER_MAX + 1];
	static char over_max[PRIVSEP_USER_MAX + 2];
	static char under_max[PRIVSEP_USER_MAX];
	const struct lookup_case cases[] = {
		{ "root", 1, NULL },
		{ "nobody", 1, NULL },
		{ "", 0, "empty" },
		{ NULL, 0, "empty" },
		{ "no-such-user-govmail-test", 0, "unknown user" },
		{ under_max, 0, "unknown user" },	/* N-1 */
		{ at_max, 0, "unknown user" },		/* N */
		{ over_max, 0, "too long" },		/* N+1 */
	};
	size_t i;

	(void)state;
	memset(under_max, 'u', sizeof(under_max) - 1);
	memset(at_max, 'u', sizeof(at_max) - 1);
	memset(over_max, 'u', sizeof(over_max) - 1);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uid_t uid = 12345;
		gid_t gid = 12345;
		const char *err = NULL;
		int r = privsep_lookup(cases[i].user, &uid, &gid, &err);

		if (cases[i].ok) {
			assert_int_equal(r, 0);
			assert_true(uid != 12345);
		} else {
			assert_int_equal(r, -1);
			assert_non_null(err);
			if (strstr(err, cases[i].err) == NULL)
				fail_msg("case %zu: \"%s\"", i, err);
		}
	}
	{
		uid_t uid;
		gid_t gid;
		const char *err;

		assert_int_equal(privsep_lookup("root", &uid, &gid, &err), 0);
		assert_int_equal(uid, 0);
	}
}

/* Fork, run fn in the child, return the child's exit status. */
static int
in_child(int (*fn)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int
child_drop_nobody(void)
{
	const char *err = NULL;
	uid_t uid, ru, eu, su;
	gid_t gid;

	if (privsep_lookup("nobody", &uid, &gid, &err) < 0)
		return 10;
	if (privsep_drop("nobody", &err) < 0) {
		fprintf(stderr, "# drop: %s\n", err);
		return 11;
	}
	if (getresuid(&ru, &eu, &su) < 0 || ru != uid || eu != uid
	    || su != uid)
		return 12;
	if (getgid() != gid || getegid() != gid)
		return 13;
	if (setuid(0) != -1 || errno != EPERM)
		return 14;
	if (setresuid(0, 0, 0) != -1)
		return 15;
	if (privsep_is_root())
		return 16;
	/* Root's files are out of reach now. */
	if (open("/etc/shadow", O_RDONLY) >= 0)
		return 17;
	return 0;
}

static int
child_refuse_root(void)
{
	const char *err = NULL;

	if (privsep_drop("root", &err) != -1)
		return 20;
	if (err == NULL || strstr(err, "uid 0") == NULL)
		return 21;
	if (geteuid() != 0)
		return 22;	/* refused before changing anything */
	return 0;
}

static int
child_unknown_user(void)
{
	const char *err = NULL;

	if (privsep_drop("no-such-user-govmail-test", &err) != -1)
		return 30;
	if (err == NULL || strstr(err, "unknown user") == NULL)
		return 31;
	if (geteuid() != 0 || getuid() != 0)
		return 32;
	return 0;
}

/* Once unprivileged, a drop is the documented no-op (development mode). */
static int
child_dev_mode(void)
{
	const char *err = NULL;
	uid_t before;

	if (privsep_is_root() && privsep_drop("nobody", &err) < 0)
		return 40;
	before = getuid();
	if (privsep_drop("daemon", &err) != 0)
		return 41;
	if (privsep_drop("root", &err) != 0)
		return 42;
	if (getuid() != before || geteuid() != before)
		return 43;
	return 0;
}

static void
test_drop_nobody(void **state)
{
	(void)state;
	assert_int_equal(in_child(child_drop_nobody), 0);
}

static void
test_refuse_root(void **state)
{
	(void)state;
	assert_int_equal(in_child(child_refuse_root), 0);
}

static void
test_unknown_user(void **state)
{
	(void)state;
	assert_int_equal(in_child(child_unknown_user), 0);
}

static void
test_dev_mode(void **state)
{
	(void)state;
	assert_int_equal(in_child(child_dev_mode), 0);
}

/*
 * The drops need root.  cmocka reports skip() as "not ok # SKIP", which
 * automake's tap-driver counts as a failure, so unprivileged runs leave the
 * root-only tests out of the plan and say so in a diagnostic line instead.
 */
int
main(void)
{
	const struct CMUnitTest all[] = {
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_dev_mode),
		cmocka_unit_test(test_drop_nobody),
		cmocka_unit_test(test_refuse_root),
		cmocka_unit_test(test_unknown_user),
	};
	const size_t unprivileged = 2;

	if (geteuid() != 0) {
		printf("# not root: %zu drop tests left out\n",
		    sizeof(all) / sizeof(all[0]) - unprivileged);
		return _cmocka_run_group_tests("privsep", all, unprivileged,
		    NULL, NULL);
	}
	return cmocka_run_group_tests_name("privsep", all, NULL, NULL);
}
