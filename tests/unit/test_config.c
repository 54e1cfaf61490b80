/*
 * Unit tests for lib/config.c: table-driven files (good and bad, each bad
 * one must name file:line), value types at their limits, config_set,
 * config_path's lookup order, getters aborting on programming errors, and
 * two documentation checks: every key of config_keys[] is documented in
 * doc/govmail.conf.5 (with its type and default) and appears, commented
 * out at its default, in conf/govmail.conf, which config_load accepts.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "xmalloc.h"

/* config.c's CONFIG_MAX_FILE and libinih's line buffer (INI_MAX_LINE - 1). */
#define TEST_MAX_FILE (1024 * 1024)
#define TEST_MAX_LINE 199

static char test_dir[256];

static int
setup_dir(void **state)
{
	(void)state;
	snprintf(test_dir, sizeof(test_dir), "/tmp/test_config.XXXXXX");
	if (mkdtemp(test_dir) == NULL)
		return -1;
	return 0;
}

static int
teardown_dir(void **state)
{
	char *cmd;

	(void)state;
	cmd = xasprintf("rm -rf '%s'", test_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", test_dir);
	free(cmd);
	return 0;
}

static char *
write_file(const char *name, const void *data, size_t len)
{
	char *path = xasprintf("%s/%s", test_dir, name);
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

struct file_case {
	const char *text;
	const char *err;	/* NULL: must load; else substring of error */
};

static void
test_files(void **state)
{
	static const struct file_case cases[] = {
		{ "", NULL },
		{ "# only a comment\n; another\n\n", NULL },
		{ "[store]\npath = /srv/store\n", NULL },
		{ "[store]\r\npath = /srv/store\r\n", NULL },
		{ "[store]\n  path = /srv/store\n", NULL },
		{ "[store]\npath=/srv/store", NULL },
		{ "[store]\npath: /srv/store\n", NULL },
		{ "[store]\ncache_size = 1G ; inline comment\n", NULL },
		{ "[smtpd]\n", NULL },	/* designed section, no keys yet */
		/* a retired key: warned about and ignored */
		{ "[smtpd]\nqueue_dir = /var/spool/govmail\n", NULL },
		{ "[store]\nqueue_dir = /x\n", "t.conf:2: unknown key" },
		{ "[bogus]\n", "t.conf:1: unknown section [bogus]" },
		{ "[store]\n\n[Store]\n", "t.conf:3: unknown section [Store]" },
		{ "[]\n", "t.conf:1: unknown section []" },
		{ "[store]\nbogus = 1\n", "t.conf:2: unknown key \"bogus\"" },
		{ "[store]\nPath = /x\n", "t.conf:2: unknown key \"Path\"" },
		{ "[store]\npath = /x\n[limits]\npath = /y\n",
		  "t.conf:4: unknown key \"path\" in [limits]" },
		{ "path = /x\n", "t.conf:1: key outside a [section]" },
		{ "[store]\nno equals sign\n", "t.conf:2: syntax error" },
		{ "[store\npath = /x\n", "t.conf:1: syntax error" },
		{ "[store]\ncache_size = 12Q\n",
		  "t.conf:2: bad value \"12Q\" for cache_size in [store]" },
		{ "[store]\ncache_size =\n", "t.conf:2: bad value" },
		{ "[store]\npassword_opslimit = -1\n", "t.conf:2: bad value" },
		{ "[store]\npassword_opslimit = 0x10\n", "t.conf:2: bad value" },
		{ "[store]\ncheckpoint_interval = 5w\n", "t.conf:2: bad value" },
		{ "[store]\nbogus = \x1b[31mred\n",
		  "unknown key \"bogus\"" },	/* key named, no ESC byte */
		{ "[st\x01re]\n", "unknown section [st\\x01re]" },
		{ "\n\n[store]\npath = /x\nnope = 1\nalso = 2\n",
		  "t.conf:5: unknown key \"nope\"" },	/* first error only */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = write_file("t.conf", cases[i].text,
		    strlen(cases[i].text));
		struct config *cfg = NULL;
		const char *err = NULL;
		int r = config_load(path, &cfg, &err);

		if (cases[i].err == NULL) {
			if (r != 0)
				fail_msg("case %zu: %s", i, err);
			assert_non_null(cfg);
			assert_string_equal(config_file(cfg), path);
		} else {
			if (r != -1)
				fail_msg("case %zu loaded", i);
			assert_null(cfg);
			assert_non_null(err);
			if (strstr(err, cases[i].err) == NULL)
				fail_msg("case %zu: \"%s\" lacks \"%s\"", i,
				    err, cases[i].err);
			assert_null(strchr(err, '\x1b'));
			assert_null(strchr(err, '\n'));
		}
		config_free(cfg);
		free(path);
	}
}

/* Lines of N-1 and N bytes load; N+1 is refused (never split silently). */
static void
test_line_limit(void **state)
{
	static const size_t lens[] = { TEST_MAX_LINE - 1, TEST_MAX_LINE,
	    TEST_MAX_LINE + 1, 4000 };
	const char *prefix = "log_level = ";
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct buf b;
		struct config *cfg = NULL;
		const char *err = NULL;
		char *path;
		int r;

		buf_init(&b, BUF_UNBOUNDED);
		assert_int_equal(buf_append_str(&b, "[store]\n"), 0);
		assert_int_equal(buf_append_str(&b, prefix), 0);
		while (b.len < strlen("[store]\n") + lens[i])
			assert_int_equal(buf_append_byte(&b, 'a'), 0);
		assert_int_equal(buf_append_str(&b, "\npath = /z\n"), 0);
		path = write_file("long.conf", b.data, b.len);
		r = config_load(path, &cfg, &err);
		if (lens[i] <= TEST_MAX_LINE) {
			if (r != 0)
				fail_msg("len %zu: %s", lens[i], err);
			assert_int_equal(strlen(config_str(cfg, "store",
			    "log_level")), lens[i] - strlen(prefix));
			assert_string_equal(config_path_get(cfg, "store",
			    "path"), "/z");
		} else {
			assert_int_equal(r, -1);
			assert_non_null(strstr(err, "long.conf:2: line longer"));
		}
		config_free(cfg);
		free(path);
		buf_free(&b);
	}
}

static void
test_file_errors(void **state)
{
	struct config *cfg = NULL;
	const char *err = NULL;
	char *path, *big;
	size_t n;

	(void)state;
	/* Missing file: the error names it and the reason. */
	path = xasprintf("%s/missing.conf", test_dir);
	assert_int_equal(config_load(path, &cfg, &err), -1);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, strerror(ENOENT)));
	free(path);

	/* A folder is not a configuration file. */
	assert_int_equal(config_load(test_dir, &cfg, &err), -1);
	assert_non_null(strstr(err, "not a regular file"));

	/* A NUL byte names its line. */
	path = write_file("nul.conf", "[store]\n\npa\0th = /x\n", 20);
	assert_int_equal(config_load(path, &cfg, &err), -1);
	assert_non_null(strstr(err, "nul.conf:3: NUL byte"));
	free(path);

	/* Size limit: N-1 and N load, N+1 does not. */
	big = xmalloc(TEST_MAX_FILE + 1);
	for (n = TEST_MAX_FILE - 1; n <= TEST_MAX_FILE + 1; n++) {
		size_t i;

		for (i = 0; i < n; i++)
			big[i] = (i % 64 == 63) ? '\n' : '#';
		big[n - 1] = '\n';
		path = write_file("big.conf", big, n);
		cfg = NULL;
		if (n <= TEST_MAX_FILE) {
			if (config_load(path, &cfg, &err) != 0)
				fail_msg("size %zu: %s", n, err);
		} else {
			assert_int_equal(config_load(path, &cfg, &err), -1);
			assert_non_null(strstr(err, "larger than"));
		}
		config_free(cfg);
		free(path);
	}
	free(big);
}

static void
test_values(void **state)
{
	static const char text[] =
	    "[store]\n"
	    "path = store\n"
	    "key_file = ../keys/store.key\n"
	    "id_key_file = /abs/id.key\n"
	    "cache_size = 8589934591G\n"
	    "password_opslimit = 9223372036854775807\n"
	    "checkpoint_interval = 5m\n"
	    "auth_cache_ttl = 2d\n"
	    "log_level = debug\n"
	    "log_level = warn\n"	/* a repeated key: the last wins */
	    "[limits]\n"
	    "message_size = 10k\n";
	struct config *cfg = NULL;
	const char *err = NULL;
	char *path, *want;

	(void)state;
	path = write_file("v.conf", text, strlen(text));
	if (config_load(path, &cfg, &err) != 0)
		fail_msg("%s", err);
	want = xasprintf("%s/store", test_dir);
	assert_string_equal(config_path_get(cfg, "store", "path"), want);
	free(want);
	want = xasprintf("%s/../keys/store.key", test_dir);
	assert_string_equal(config_path_get(cfg, "store", "key_file"), want);
	free(want);
	assert_string_equal(config_path_get(cfg, "store", "id_key_file"),
	    "/abs/id.key");
	assert_true(config_size(cfg, "store", "cache_size")
	    == 8589934591ULL * 1024 * 1024 * 1024);
	assert_true(config_uint(cfg, "store", "password_opslimit")
	    == (uint64_t)INT64_MAX);
	assert_true(config_duration(cfg, "store", "checkpoint_interval")
	    == 300);
	assert_true(config_duration(cfg, "store", "auth_cache_ttl")
	    == 2 * 86400);
	assert_string_equal(config_str(cfg, "store", "log_level"), "warn");
	assert_true(config_size(cfg, "limits", "message_size") == 10240);
	/* Untouched keys keep their defaults. */
	assert_true(config_uint(cfg, "limits", "quota_messages") == 100000);
	config_free(cfg);
	free(path);

	/* One past the largest value of each numeric type. */
	{
		static const char *const over[] = {
			"[store]\ncache_size = 8589934592G\n",
			"[store]\npassword_opslimit = 9223372036854775808\n",
			"[store]\nauth_cache_ttl = 106751991167301d\n",
		};
		size_t i;

		for (i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
			path = write_file("o.conf", over[i], strlen(over[i]));
			assert_int_equal(config_load(path, &cfg, &err), -1);
			assert_non_null(strstr(err, "o.conf:2: bad value"));
			free(path);
		}
	}

	/* A relative configuration path still gives absolute key paths. */
	{
		char *cwd = getcwd(NULL, 0);

		assert_non_null(cwd);
		path = write_file("rel.conf", "[store]\npath = s\n", 17);
		assert_int_equal(chdir(test_dir), 0);
		assert_int_equal(config_load("rel.conf", &cfg, &err), 0);
		want = xasprintf("%s/s", test_dir);
		assert_string_equal(config_path_get(cfg, "store", "path"),
		    want);
		free(want);
		config_free(cfg);
		assert_int_equal(chdir(cwd), 0);
		free(cwd);
		free(path);
	}
}

/* Every default parses, and every key can be read with its own type. */
static void
test_defaults(void **state)
{
	struct config *cfg = config_defaults();
	size_t i;

	(void)state;
	assert_string_equal(config_file(cfg), "");
	for (i = 0; config_keys[i].section != NULL; i++) {
		const struct config_key *k = &config_keys[i];

		assert_non_null(k->key);
		assert_non_null(k->def);
		assert_non_null(k->doc);
		switch (k->type) {
		case CONFIG_STR:
			assert_string_equal(config_str(cfg, k->section, k->key),
			    k->def);
			break;
		case CONFIG_PATH:
			if (k->def[0] == '\0')
				assert_string_equal(config_path_get(cfg,
				    k->section, k->key), "");
			else
				assert_true(config_path_get(cfg, k->section,
				    k->key)[0] == '/');
			break;
		case CONFIG_UINT:
			(void)config_uint(cfg, k->section, k->key);
			break;
		case CONFIG_SIZE:
			(void)config_size(cfg, k->section, k->key);
			break;
		case CONFIG_DURATION:
			(void)config_duration(cfg, k->section, k->key);
			break;
		case CONFIG_BOOL:
			(void)config_bool(cfg, k->section, k->key);
			break;
		}
	}
	assert_true(config_size(cfg, "store", "cache_size") == 64 << 20);
	config_free(cfg);
}

static void
test_set(void **state)
{
	struct config *cfg = config_defaults();
	const char *err = NULL;
	size_t i;

	(void)state;
	assert_int_equal(config_set(cfg, "limits", "quota_messages", "7",
	    &err), 0);
	assert_true(config_uint(cfg, "limits", "quota_messages") == 7);
	assert_int_equal(config_set(cfg, "limits", "quota_messages", "x",
	    &err), -1);
	assert_non_null(strstr(err, "quota_messages"));
	/* A failed set leaves the old value. */
	assert_true(config_uint(cfg, "limits", "quota_messages") == 7);
	assert_int_equal(config_set(cfg, "limits", "nope", "1", &err), -1);
	assert_non_null(strstr(err, "unknown key"));
	assert_int_equal(config_set(cfg, "nope", "path", "1", &err), -1);
	assert_non_null(strstr(err, "unknown section"));

	/* Boolean spellings, on the first CONFIG_BOOL key if there is one. */
	for (i = 0; config_keys[i].section != NULL; i++)
		if (config_keys[i].type == CONFIG_BOOL)
			break;
	if (config_keys[i].section != NULL) {
		static const struct {
			const char *v;
			int ok, val;
		} bools[] = {
			{ "yes", 1, 1 }, { "no", 1, 0 }, { "true", 1, 1 },
			{ "false", 1, 0 }, { "on", 1, 1 }, { "off", 1, 0 },
			{ "1", 1, 1 }, { "0", 1, 0 }, { "YES", 1, 1 },
			{ "2", 0, 0 }, { "", 0, 0 }, { "yess", 0, 0 },
		};
		const char *s = config_keys[i].section, *k = config_keys[i].key;
		size_t j;

		for (j = 0; j < sizeof(bools) / sizeof(bools[0]); j++) {
			int r = config_set(cfg, s, k, bools[j].v, &err);

			assert_int_equal(r, bools[j].ok ? 0 : -1);
			if (bools[j].ok)
				assert_int_equal(config_bool(cfg, s, k),
				    bools[j].val);
		}
	}
	config_free(cfg);
}

static void
test_path_lookup(void **state)
{
	(void)state;
	assert_int_equal(setenv("GOVMAIL_CONF", "/env/govmail.conf", 1), 0);
	assert_string_equal(config_path("/cmd/x.conf"), "/cmd/x.conf");
	assert_string_equal(config_path(NULL), "/env/govmail.conf");
	assert_string_equal(config_path(""), "/env/govmail.conf");
	assert_int_equal(setenv("GOVMAIL_CONF", "", 1), 0);
	assert_string_equal(config_path(NULL), CONFIG_DEFAULT_PATH);
	assert_int_equal(unsetenv("GOVMAIL_CONF"), 0);
	assert_string_equal(config_path(NULL), "/etc/govmail/govmail.conf");
}

/* Run fn in a child; it must exit with status 1 (log_fatalx). */
static void
expect_fatal(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 2);
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
}

static void
fatal_unknown_key(void)
{
	(void)config_uint(config_defaults(), "store", "no_such_key");
}

static void
fatal_wrong_type(void)
{
	(void)config_uint(config_defaults(), "store", "path");
}

static void
fatal_wrong_type_str(void)
{
	(void)config_str(config_defaults(), "store", "cache_size");
}

static void
test_getter_abort(void **state)
{
	(void)state;
	expect_fatal(fatal_unknown_key);
	expect_fatal(fatal_wrong_type);
	expect_fatal(fatal_wrong_type_str);
}

static char *
read_srcfile(const char *rel)
{
	const char *top = getenv("top_srcdir");
	char *path, *data;
	FILE *f;
	long n;

	path = xasprintf("%s/%s", top != NULL ? top : "..", rel);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s (top_srcdir unset?)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	data = xmalloc((size_t)n + 1);
	assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
	data[n] = '\0';
	fclose(f);
	free(path);
	return data;
}

static const char *
type_name(enum config_type t)
{
	switch (t) {
	case CONFIG_STR:
		return "string";
	case CONFIG_PATH:
		return "path";
	case CONFIG_UINT:
		return "number";
	case CONFIG_SIZE:
		return "size";
	case CONFIG_DURATION:
		return "duration";
	case CONFIG_BOOL:
		return "boolean";
	}
	return "?";
}

/* Remove the groff escapes the man page uses: \- \e \(em \fB \fR \fI \&. */
static void
man_unescape(char *s)
{
	char *o = s;

	while (*s != '\0') {
		if (s[0] == '\\' && s[1] == '-') {
			*o++ = '-';
			s += 2;
		} else if (s[0] == '\\' && s[1] == 'e') {
			*o++ = '\\';
			s += 2;
		} else if (s[0] == '\\' && s[1] == '&') {
			s += 2;
		} else if (s[0] == '\\' && s[1] == 'f' && s[2] != '\0') {
			s += 3;
		} else {
			*o++ = *s++;
		}
	}
	*o = '\0';
}

/*
 * The man page's key entries: under a heading `.SS "[section]"`, each key
 * is `.TP`, then `.B key`, then text holding "Type: T." and "Default: D."
 * (or "Default: empty.").  Returns the entry's text (unescaped) or NULL.
 */
static char *
man_entry(const char *man, const char *section, const char *key)
{
	char *copy = xstrdup(man), *line, *next, *cur = NULL, *res = NULL;
	int in_section = 0, want_key = 0;
	struct buf text;
	int collecting = 0;

	buf_init(&text, BUF_UNBOUNDED);
	for (line = copy; line != NULL; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (str_has_prefix(line, ".SS") || str_has_prefix(line, ".SH")) {
			char *want;

			if (collecting)
				break;
			want = xasprintf("[%s]", section);
			in_section = str_has_prefix(line, ".SS")
			    && strstr(line, want) != NULL;
			free(want);
			continue;
		}
		if (str_has_prefix(line, ".TP")) {
			if (collecting)
				break;
			want_key = in_section;
			continue;
		}
		if (want_key && str_has_prefix(line, ".B ")) {
			cur = line + 3;
			if (*cur == '"')
				cur++;
			if (strncmp(cur, key, strlen(key)) == 0
			    && (cur[strlen(key)] == '\0'
			    || cur[strlen(key)] == '"'
			    || cur[strlen(key)] == ' '))
				collecting = 1;
			want_key = 0;
			continue;
		}
		want_key = 0;
		if (collecting) {
			assert_int_equal(buf_append_str(&text, line), 0);
			assert_int_equal(buf_append_byte(&text, ' '), 0);
		}
	}
	if (collecting) {
		res = buf_steal(&text);
		man_unescape(res);
	}
	buf_free(&text);
	free(copy);
	return res;
}

static void
test_man_page(void **state)
{
	char *man = read_srcfile("doc/govmail.conf.5");
	size_t i;
	int missing = 0;

	(void)state;
	for (i = 0; config_keys[i].section != NULL; i++) {
		const struct config_key *k = &config_keys[i];
		char *entry = man_entry(man, k->section, k->key);
		char *type, *def;

		if (entry == NULL) {
			printf("# doc/govmail.conf.5 lacks [%s] %s: add "
			    ".TP/.B %s under .SS \"[%s]\"\n", k->section,
			    k->key, k->key, k->section);
			missing++;
			continue;
		}
		type = xasprintf("Type: %s.", type_name(k->type));
		def = k->def[0] == '\0' ? xstrdup("Default: empty.")
		    : xasprintf("Default: %s.", k->def);
		if (strstr(entry, type) == NULL || strstr(entry, def) == NULL) {
			printf("# doc/govmail.conf.5 [%s] %s must say "
			    "\"%s\" and \"%s\"\n", k->section, k->key, type,
			    def);
			missing++;
		}
		free(type);
		free(def);
		free(entry);
	}
	free(man);
	assert_int_equal(missing, 0);
}

/* conf/govmail.conf: loads, and holds "#key = default" for every key. */
static void
test_sample_conf(void **state)
{
	const char *top = getenv("top_srcdir");
	char *sample = read_srcfile("conf/govmail.conf");
	char *path, *line, *next, *section = NULL;
	struct config *cfg = NULL;
	const char *err = NULL;
	size_t i, n = 0;
	int *seen, bad = 0;

	(void)state;
	path = xasprintf("%s/conf/govmail.conf", top != NULL ? top : "..");
	if (config_load(path, &cfg, &err) != 0)
		fail_msg("%s", err);
	config_free(cfg);
	free(path);

	for (i = 0; config_keys[i].section != NULL; i++)
		n++;
	seen = xcalloc(n + 1, sizeof(*seen));
	for (line = sample; line != NULL; line = next) {
		char *eq, *k, *v, *end;
		long idx = -1;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] == '[') {
			end = strchr(line, ']');
			assert_non_null(end);
			*end = '\0';
			section = line + 1;
			continue;
		}
		/* A commented-out key: "#key = value" (no blank after #). */
		if (line[0] != '#' || line[1] == ' ' || line[1] == '#'
		    || line[1] == '\0' || (eq = strstr(line, " =")) == NULL)
			continue;
		*eq = '\0';
		k = line + 1;
		v = eq + 2;
		if (*v == ' ')
			v++;
		assert_non_null(section);
		for (i = 0; i < n; i++)
			if (strcmp(config_keys[i].section, section) == 0
			    && strcmp(config_keys[i].key, k) == 0)
				idx = (long)i;
		if (idx < 0) {
			printf("# conf/govmail.conf: unknown [%s] %s\n",
			    section, k);
			bad++;
			continue;
		}
		if (strcmp(config_keys[idx].def, v) != 0) {
			printf("# conf/govmail.conf: [%s] %s shows \"%s\", "
			    "default is \"%s\"\n", section, k, v,
			    config_keys[idx].def);
			bad++;
		}
		seen[idx] = 1;
	}
	for (i = 0; i < n; i++) {
		if (!seen[i]) {
			printf("# conf/govmail.conf lacks \"#%s = %s\" in "
			    "[%s]\n", config_keys[i].key, config_keys[i].def,
			    config_keys[i].section);
			bad++;
		}
	}
	free(seen);
	free(sample);
	assert_int_equal(bad, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_path_lookup),
		cmocka_unit_test(test_getter_abort),
		cmocka_unit_test(test_man_page),
		cmocka_unit_test(test_sample_conf),
	};

	log_init("test_config", LOG_TO_STDERR, LOG_LEVEL_WARN);
	return cmocka_run_group_tests_name("config", tests, setup_dir,
	    teardown_dir);
}
