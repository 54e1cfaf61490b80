/*
 * Unit tests for lib/log.c: log_escape() (control bytes, quotes, key=value
 * forgery, non-ASCII, truncation at the exact boundary, never splitting an
 * escape, round trip), level parsing, and the line format on stderr.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
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

#include "log.h"

struct esc_case {
	const char *in;
	size_t len;
	size_t outsz;
	const char *out;
};

#define S(x) x, sizeof(x) - 1

static void
test_escape_table(void **state)
{
	static const struct esc_case cases[] = {
		{ S(""), 8, "" },
		{ S("plain"), 16, "plain" },
		{ S("a b"), 16, "a\\x20b" },
		{ S("k=v"), 16, "k\\x3dv" },
		{ S("\"q\""), 16, "\\x22q\\x22" },
		{ S("back\\slash"), 16, "back\\x5cslash" },
		{ S("\r\n"), 16, "\\x0d\\x0a" },
		{ S("\x1b[31m"), 16, "\\x1b[31m" },
		{ S("\x7f\xff"), 16, "\\x7f\\xff" },
		{ S("\xc3\xa9"), 16, "\\xc3\\xa9" },		/* UTF-8 e-acute */
		{ S("\0"), 16, "\\x00" },
		{ S("ok\nevent=login user=root"), 64,
		  "ok\\x0aevent\\x3dlogin\\x20user\\x3droot" },
		/* Exact boundary: len + 1 holds the text whole. */
		{ S("abc"), 4, "abc" },		/* N */
		{ S("abcd"), 4, "..." },	/* N + 1: no room */
		{ S("abcd"), 5, "abcd" },
		{ S("abcdef"), 6, "ab..." },
		{ S("abcdef"), 7, "abcdef" },
		{ S("abcdef"), 8, "abcdef" },
		/* An escape is written whole or not at all. */
		{ S("a\n"), 6, "a\\x0a" },	/* 5 bytes + NUL: fits */
		{ S("a\n"), 5, "a..." },
		{ S("a\nb"), 6, "a..." },
		{ S("a\nb"), 7, "a\\x0ab" },
		{ S("\n\n"), 9, "\\x0a\\x0a" },
		{ S("\n\n"), 8, "\\x0a..." },
		/* Tiny buffers. */
		{ S("abc"), 1, "" },
		{ S("abc"), 2, "." },
		{ S("abc"), 3, ".." },
		{ S("ab"), 3, "ab" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[128];

		memset(out, 'Z', sizeof(out));
		assert_ptr_equal(log_escape(cases[i].in, cases[i].len, out,
		    cases[i].outsz), out);
		if (strcmp(out, cases[i].out) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, out,
			    cases[i].out);
		/* Nothing written past outsz. */
		assert_int_equal(out[cases[i].outsz], 'Z');
	}
	/* outsz 0: out is left alone. */
	{
		char out[4] = "xyz";

		log_escape("abc", 3, out, 0);
		assert_string_equal(out, "xyz");
	}
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Random bytes: output is safe, bounded, and decodes back when it fits. */
static void
test_escape_random(void **state)
{
	unsigned seed = 7;
	int n;

	(void)state;
	for (n = 0; n < 2000; n++) {
		unsigned char in[64];
		char out[64 * LOG_ESCAPE_WIDTH + 1], back[64];
		size_t len, outsz, i, o, blen = 0, olen, full;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof(in);
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = (unsigned char)(seed >> 16);
		}
		seed = seed * 1103515245u + 12345u;
		outsz = n % 2 ? sizeof(out) : 1 + (seed >> 16) % sizeof(out);
		if (outsz > sizeof(out))
			outsz = sizeof(out);
		log_escape(in, len, out, outsz);
		olen = strlen(out);
		assert_true(olen < outsz);
		/* The whole text fits iff its escaped size is below outsz. */
		for (i = 0, full = 0; i < len; i++)
			full += (in[i] < 0x20 || in[i] >= 0x7f || in[i] == '\\'
			    || in[i] == '"' || in[i] == ' ' || in[i] == '=')
			    ? LOG_ESCAPE_WIDTH : 1;
		if (full >= outsz) {
			/* Cut: "..." at the end (only dots if tiny). */
			size_t dots = outsz >= 4 ? 3 : outsz - 1;

			assert_true(olen >= dots);
			assert_memory_equal(out + olen - dots, "...", dots);
			olen -= dots;
			assert_true(olen + 3 < outsz || outsz < 4);
		}
		for (o = 0; o < olen; o++) {
			unsigned char c = (unsigned char)out[o];

			assert_true(c >= 0x20 && c < 0x7f);
			assert_true(c != '"' && c != ' ' && c != '=');
			if (c == '\\') {
				assert_true(o + 3 < olen);
				assert_int_equal(out[o + 1], 'x');
				assert_true(hexval(out[o + 2]) >= 0);
				assert_true(hexval(out[o + 3]) >= 0);
				back[blen++] = (char)(hexval(out[o + 2]) * 16
				    + hexval(out[o + 3]));
				o += 3;
			} else {
				back[blen++] = (char)c;
			}
		}
		if (full < outsz) {
			assert_int_equal(blen, len);
		} else {
			assert_true(blen < len);
		}
		/* A prefix of the input, whatever was cut. */
		assert_memory_equal(back, in, blen);
		if (outsz == sizeof(out))	/* len * 4 + 1 holds it all */
			assert_int_equal(blen, len);
	}
}

static void
test_level_parse(void **state)
{
	static const struct {
		const char *s;
		int ok;
		enum log_level lv;
	} cases[] = {
		{ "err", 1, LOG_LEVEL_ERR }, { "warn", 1, LOG_LEVEL_WARN },
		{ "info", 1, LOG_LEVEL_INFO }, { "debug", 1, LOG_LEVEL_DEBUG },
		{ "INFO", 0, 0 }, { "", 0, 0 }, { "warning", 0, 0 },
		{ "inf", 0, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum log_level lv = LOG_LEVEL_DEBUG;
		int r = log_level_parse(cases[i].s, &lv);

		assert_int_equal(r, cases[i].ok ? 0 : -1);
		if (cases[i].ok)
			assert_int_equal(lv, cases[i].lv);
	}
}

/* Capture what the log functions write to stderr. */
static void
test_stderr_lines(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX";
	char got[1024], *want;
	int fd, saved;
	ssize_t n;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, 2), 2);

	log_init("test-role", LOG_TO_STDERR, LOG_LEVEL_INFO);
	assert_int_equal(log_get_level(), LOG_LEVEL_INFO);
	log_info("event=one n=%d", 1);
	log_debug("event=hidden");		/* above the level */
	errno = ENOENT;
	log_warn("event=open path=%s", "/x");
	assert_int_equal(errno, ENOENT);	/* errno preserved */
	log_warnx("event=plain");
	log_init("test-role", LOG_TO_STDERR, LOG_LEVEL_WARN);
	log_info("event=hidden-too");

	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	n = read(fd, got, sizeof(got) - 1);
	close(fd);
	assert_true(n > 0);
	got[n] = '\0';
	want = NULL;
	assert_true(asprintf(&want,
	    "test-role[%ld]: event=one n=1\n"
	    "test-role[%ld]: event=open path=/x: %s\n"
	    "test-role[%ld]: event=plain\n",
	    (long)getpid(), (long)getpid(), strerror(ENOENT),
	    (long)getpid()) > 0);
	assert_string_equal(got, want);
	free(want);
}

static void
test_fatal_exits(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 2);
		log_fatalx("event=fatal");
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_table),
		cmocka_unit_test(test_escape_random),
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test(test_stderr_lines),
		cmocka_unit_test(test_fatal_exits),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
