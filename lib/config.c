/*
 * config.c - govmail.conf: load, check and look up keys (libinih).
 *
 * Every process reads it at start-up, before dropping privileges.  The file
 * is trusted as far as the operator who wrote it, but not its syntax: every
 * section, key and value is checked against the table in config_keys.c, and
 * text from the file reaches error messages only through log_escape().
 *
 * libinih parses the lines; we feed it through our own reader so that we
 * know each line's number, can refuse lines longer than libinih's buffer
 * (it would otherwise split them silently) and can strip leading blanks
 * (so that an indented line is never taken as a continuation of the
 * previous value).
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "strnum.h"
#include "xmalloc.h"

/* Largest configuration file we read. */
#define CONFIG_MAX_FILE (1024 * 1024)
/* Largest CONFIG_UINT / CONFIG_SIZE / CONFIG_DURATION value. */
#define CONFIG_MAX_NUM ((uint64_t)INT64_MAX)
/* How much of an offending name or value an error message shows. */
#define CONFIG_ERR_SHOW 64

/* Sections DESIGN.md names; accepted even while they hold no known key. */
static const char *const config_sections[] = {
	"store", "limits", "smtpd", "imapd", "ca", "tls", NULL
};

struct config_value {
	char *raw;		/* as written (or the default) */
	uint64_t num;		/* UINT, SIZE, DURATION, BOOL */
	char *path;		/* PATH: absolute, or "" */
};

struct config {
	char *file;		/* "" for config_defaults() */
	char *dir;		/* folder relative paths resolve against */
	size_t nkeys;
	struct config_value *values;	/* parallel to config_keys[] */
};

/* The error message of the last failing call (config.h: "until the next"). */
static char config_errbuf[512];

/* State of one config_load(): the reader's cursor and the first error. */
struct config_parse {
	struct config *cfg;
	const char *data, *end, *pos;
	int line;		/* number of the line last handed to libinih */
	int err_line;		/* first line with an error we detected, or 0 */
};

static const char *
config_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *
config_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(config_errbuf, sizeof(config_errbuf), fmt, ap);
	va_end(ap);
	return config_errbuf;
}

static size_t
config_nkeys(void)
{
	size_t n = 0;

	while (config_keys[n].section != NULL)
		n++;
	return n;
}

/* Index of section/key in config_keys[], or -1. */
static long
config_find(const char *section, const char *key)
{
	size_t i;

	for (i = 0; config_keys[i].section != NULL; i++) {
		if (strcmp(config_keys[i].section, section) == 0
		    && strcmp(config_keys[i].key, key) == 0)
			return (long)i;
	}
	return -1;
}

static int
config_section_known(const char *section)
{
	size_t i;

	for (i = 0; config_sections[i] != NULL; i++)
		if (strcmp(config_sections[i], section) == 0)
			return 1;
	for (i = 0; config_keys[i].section != NULL; i++)
		if (strcmp(config_keys[i].section, section) == 0)
			return 1;
	return 0;
}

/* Join dir and a relative path; absolute paths and "" are kept as they are. */
static char *
config_resolve(const char *dir, const char *value)
{
	if (value[0] == '\0' || value[0] == '/')
		return xstrdup(value);
	if (strcmp(dir, "/") == 0)
		return xasprintf("/%s", value);
	return xasprintf("%s/%s", dir, value);
}

/*
 * Parse value as key i's type into *v (replacing what was there).
 * On error returns -1 with *why_r set to a short static reason.
 */
static int
config_value_set(const struct config *cfg, size_t i, const char *value,
    struct config_value *v, const char **why_r)
{
	const struct config_key *k = &config_keys[i];
	uint64_t num = 0;
	int flag;

	if (strlen(value) > CONFIG_MAX_VALUE) {
		*why_r = "value too long";
		return -1;
	}
	switch (k->type) {
	case CONFIG_STR:
	case CONFIG_PATH:
		break;
	case CONFIG_UINT:
		if (strnum_u64(value, 0, CONFIG_MAX_NUM, &num, why_r) < 0)
			return -1;
		break;
	case CONFIG_SIZE:
		if (strnum_size(value, CONFIG_MAX_NUM, &num, why_r) < 0)
			return -1;
		break;
	case CONFIG_DURATION:
		if (strnum_duration(value, CONFIG_MAX_NUM, &num, why_r) < 0)
			return -1;
		break;
	case CONFIG_BOOL:
		if (strnum_bool(value, &flag, why_r) < 0)
			return -1;
		num = (uint64_t)flag;
		break;
	}
	free(v->raw);
	free(v->path);
	v->raw = xstrdup(value);
	v->num = num;
	v->path = k->type == CONFIG_PATH ? config_resolve(cfg->dir, value)
	    : NULL;
	return 0;
}

/*
 * Keys an earlier govmail read and this one no longer does: a file that
 * still has one starts, with a warning that says what became of it.
 */
static const struct {
	const char *section, *key, *why;
} config_retired[] = {
	{ "smtpd", "queue_dir", "the outbound queue is kept in the store; "
	  "messages still in that folder are not sent" },
};

static int
config_retired_key(const char *section, const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(config_retired) / sizeof(config_retired[0]);
	    i++)
		if (strcmp(config_retired[i].section, section) == 0 &&
		    strcmp(config_retired[i].key, key) == 0) {
			log_warnx("config: [%s] %s is no longer used and is "
			    "ignored: %s", section, key, config_retired[i].why);
			return 1;
		}
	return 0;
}

static int
config_set_checked(struct config *cfg, const char *section, const char *key,
    const char *value, const char **why_r)
{
	char esc[CONFIG_ERR_SHOW * 4];
	long i;

	if (!config_section_known(section)) {
		log_escape(section, strlen(section), esc, sizeof(esc));
		*why_r = config_set_error("unknown section [%s]", esc);
		return -1;
	}
	i = config_find(section, key);
	if (i < 0 && config_retired_key(section, key))
		return 0;
	if (i < 0) {
		log_escape(key, strlen(key), esc, sizeof(esc));
		*why_r = config_set_error("unknown key \"%s\" in [%s]", esc,
		    section);
		return -1;
	}
	if (config_value_set(cfg, (size_t)i, value, &cfg->values[i],
	    why_r) < 0) {
		const char *why = *why_r;

		log_escape(value, strlen(value), esc, sizeof(esc));
		*why_r = config_set_error("bad value \"%s\" for %s in [%s]: %s",
		    esc, key, section, why);
		return -1;
	}
	return 0;
}

static struct config *
config_new(const char *file, const char *dir)
{
	struct config *cfg;
	size_t i;

	cfg = xcalloc(1, sizeof(*cfg));
	cfg->file = xstrdup(file);
	cfg->dir = xstrdup(dir);
	cfg->nkeys = config_nkeys();
	cfg->values = xcalloc(cfg->nkeys + 1, sizeof(*cfg->values));
	for (i = 0; i < cfg->nkeys; i++) {
		const char *why;

		if (config_value_set(cfg, i, config_keys[i].def,
		    &cfg->values[i], &why) < 0)
			log_fatalx("config: default of %s in [%s] (\"%s\"): %s",
			    config_keys[i].key, config_keys[i].section,
			    config_keys[i].def, why);
	}
	return cfg;
}

static char *
config_cwd(void)
{
	char *dir = getcwd(NULL, 0);

	if (dir == NULL)
		return xstrdup("/");
	return dir;
}

struct config *
config_defaults(void)
{
	struct config *cfg;
	char *cwd = config_cwd();

	cfg = config_new("", cwd);
	free(cwd);
	return cfg;
}

int
config_set(struct config *cfg, const char *section, const char *key,
    const char *value, const char **error_r)
{
	return config_set_checked(cfg, section, key, value, error_r);
}

void
config_free(struct config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->nkeys; i++) {
		free(cfg->values[i].raw);
		free(cfg->values[i].path);
	}
	free(cfg->values);
	free(cfg->file);
	free(cfg->dir);
	free(cfg);
}

const char *
config_path(const char *cmdline_path)
{
	const char *env;

	if (cmdline_path != NULL && cmdline_path[0] != '\0')
		return cmdline_path;
	env = getenv("GOVMAIL_CONF");
	if (env != NULL && env[0] != '\0')
		return env;
	return CONFIG_DEFAULT_PATH;
}

/* Record the first error we detect; later ones are dropped. */
static void
config_parse_fail(struct config_parse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
config_parse_fail(struct config_parse *p, const char *fmt, ...)
{
	char msg[sizeof(config_errbuf)];
	va_list ap;

	if (p->err_line != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->err_line = p->line;
	config_set_error("%s:%d: %s", p->cfg->file, p->line, msg);
}

/*
 * libinih's reader: hand it one line at a time with leading blanks and the
 * line end removed.  Stops (returns NULL) at the end or after an error.
 */
static char *
config_reader(char *str, int num, void *stream)
{
	struct config_parse *p = stream;
	const char *nl, *s, *e;
	size_t len;

	if (p->pos >= p->end || p->err_line != 0 || num < 2)
		return NULL;
	nl = memchr(p->pos, '\n', (size_t)(p->end - p->pos));
	e = nl != NULL ? nl : p->end;
	s = p->pos;
	p->pos = nl != NULL ? nl + 1 : p->end;
	p->line++;
	if (e > s && e[-1] == '\r')
		e--;
	if ((size_t)(e - s) > (size_t)num - 1) {
		config_parse_fail(p, "line longer than %d bytes", num - 1);
		return NULL;
	}
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	len = (size_t)(e - s);
	memcpy(str, s, len);
	str[len] = '\0';

	/* A section with no keys never reaches the handler: check it here. */
	if (str[0] == '[') {
		char *close = strchr(str, ']');

		if (close != NULL) {
			*close = '\0';
			if (!config_section_known(str + 1)) {
				char esc[CONFIG_ERR_SHOW * 4];

				log_escape(str + 1, strlen(str + 1), esc,
				    sizeof(esc));
				config_parse_fail(p, "unknown section [%s]",
				    esc);
				return NULL;
			}
			*close = ']';
		}
	}
	return str;
}

static int
config_handler(void *user, const char *section, const char *key,
    const char *value)
{
	struct config_parse *p = user;
	const char *why;

	if (p->err_line != 0)
		return 0;
	if (section[0] == '\0') {
		config_parse_fail(p, "key outside a [section]");
		return 0;
	}
	if (config_set_checked(p->cfg, section, key, value, &why) < 0) {
		config_parse_fail(p, "%s", why);
		return 0;
	}
	return 1;
}

/* Read the whole file (at most CONFIG_MAX_FILE bytes) into fresh memory. */
static int
config_read_file(const char *path, char **data_r, size_t *len_r,
    const char **error_r)
{
	struct buf b;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		*error_r = config_set_error("%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*error_r = config_set_error("%s: not a regular file", path);
		close(fd);
		return -1;
	}
	/* One byte more than the limit, to tell "exactly max" from "more". */
	buf_init(&b, CONFIG_MAX_FILE + 1);
	for (;;) {
		size_t room;
		ssize_t n;

		room = b.max - b.len < 4096 ? b.max - b.len : 4096;
		if (room == 0)
			break;
		if (buf_reserve(&b, room) < 0)
			log_fatalx("config: buffer reserve within max failed");
		n = read(fd, buf_tail(&b), room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = config_set_error("%s: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		buf_commit(&b, (size_t)n);
	}
	if (b.len > CONFIG_MAX_FILE) {
		*error_r = config_set_error("%s: larger than %d bytes", path,
		    CONFIG_MAX_FILE);
		goto fail;
	}
	close(fd);
	*len_r = b.len;
	*data_r = buf_steal(&b);
	return 0;
fail:
	close(fd);
	buf_free(&b);
	return -1;
}

/* The folder holding path, as an absolute path. */
static char *
config_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, *cwd, *abs;

	if (slash == NULL)
		return config_cwd();
	if (slash == path)
		return xstrdup("/");
	dir = xstrndup(path, (size_t)(slash - path));
	if (dir[0] == '/')
		return dir;
	cwd = config_cwd();
	abs = strcmp(cwd, "/") == 0 ? xasprintf("/%s", dir)
	    : xasprintf("%s/%s", cwd, dir);
	free(cwd);
	free(dir);
	return abs;
}

int
config_load(const char *path, struct config **cfg_r, const char **error_r)
{
	struct config_parse p;
	struct config *cfg;
	char *data, *dir;
	size_t len;
	int r;

	*cfg_r = NULL;
	if (config_read_file(path, &data, &len, error_r) < 0)
		return -1;
	dir = config_dir_of(path);
	cfg = config_new(path, dir);
	free(dir);

	memset(&p, 0, sizeof(p));
	p.cfg = cfg;
	p.data = data;
	p.end = data + len;
	p.pos = data;
	if (memchr(data, '\0', len) != NULL) {
		const char *z = memchr(data, '\0', len), *c;

		p.line = 1;
		for (c = data; c < z; c++)
			if (*c == '\n')
				p.line++;
		config_parse_fail(&p, "NUL byte in the file");
	} else {
		r = ini_parse_stream(config_reader, &p, config_handler, &p);
		if (r < 0 && p.err_line == 0) {
			p.line = 0;
			config_parse_fail(&p, "cannot parse (libinih error %d)",
			    r);
		} else if (r > 0 && (p.err_line == 0 || r < p.err_line)) {
			/* libinih found a syntax error before ours. */
			p.err_line = 0;
			p.line = r;
			config_parse_fail(&p, "syntax error: expected "
			    "[section], key = value or a # comment");
		}
	}
	free(data);
	if (p.err_line != 0) {
		config_free(cfg);
		*error_r = config_errbuf;
		return -1;
	}
	*cfg_r = cfg;
	return 0;
}

/* The value of a key that must exist with that type (else: a bug, abort). */
static const struct config_value *
config_get(const struct config *cfg, const char *section, const char *key,
    enum config_type type)
{
	long i = config_find(section, key);

	if (i < 0)
		log_fatalx("config: no key %s in [%s] in config_keys[]", key,
		    section);
	if (config_keys[i].type != type)
		log_fatalx("config: key %s in [%s] read with the wrong type",
		    key, section);
	if ((size_t)i >= cfg->nkeys)
		log_fatalx("config: key table changed after load");
	return &cfg->values[i];
}

const char *
config_str(const struct config *cfg, const char *section, const char *key)
{
	return config_get(cfg, section, key, CONFIG_STR)->raw;
}

const char *
config_path_get(const struct config *cfg, const char *section,
    const char *key)
{
	return config_get(cfg, section, key, CONFIG_PATH)->path;
}

uint64_t
config_uint(const struct config *cfg, const char *section, const char *key)
{
	return config_get(cfg, section, key, CONFIG_UINT)->num;
}

uint64_t
config_size(const struct config *cfg, const char *section, const char *key)
{
	return config_get(cfg, section, key, CONFIG_SIZE)->num;
}

uint64_t
config_duration(const struct config *cfg, const char *section,
    const char *key)
{
	return config_get(cfg, section, key, CONFIG_DURATION)->num;
}

int
config_bool(const struct config *cfg, const char *section, const char *key)
{
	return config_get(cfg, section, key, CONFIG_BOOL)->num != 0;
}

const char *
config_file(const struct config *cfg)
{
	return cfg->file;
}
