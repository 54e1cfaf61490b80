/*
 * config.h - govmail.conf, parsed with libinih.
 *
 * Every program.  One INI file with sections [store] [limits] [smtpd]
 * [imapd] [ca] [tls].  Every key a program may read is listed, with its
 * type, default and a one-line description, in the table in config_keys.c,
 * and documented in doc/govmail.conf.5: a key that is not in the table is
 * an error at load time, not silently ignored, and so is a value that does
 * not parse as the key's type.
 *
 * Which file: config_path() returns the -c argument if given, else
 * $GOVMAIL_CONF, else /etc/govmail/govmail.conf.
 *
 * Relative paths (keys of type CONFIG_PATH) are resolved against the folder
 * holding the configuration file, so a demo tree can be moved as a whole.
 */
#ifndef GOVMAIL_CONFIG_H
#define GOVMAIL_CONFIG_H

#include <stdint.h>

#define CONFIG_DEFAULT_PATH "/etc/govmail/govmail.conf"
/*
 * Longest value config_set() accepts.  In the file itself, Debian's libinih
 * reads lines into a 200-byte buffer: longer lines are refused with file:line.
 */
#define CONFIG_MAX_VALUE 1024

enum config_type {
	CONFIG_STR,		/* free text */
	CONFIG_PATH,		/* file or folder; relative to the file's folder */
	CONFIG_UINT,		/* decimal, 0 .. 2^63 */
	CONFIG_SIZE,		/* bytes with optional K/M/G suffix */
	CONFIG_DURATION,	/* seconds with optional s/m/h/d suffix */
	CONFIG_BOOL,		/* yes/no, true/false, on/off, 1/0 */
};

struct config_key {
	const char *section;
	const char *key;
	enum config_type type;
	const char *def;	/* default, as it would be written in the file */
	const char *doc;	/* one line, for govmail.conf(5) */
};

/* The table of every known key, terminated by an entry with section NULL. */
extern const struct config_key config_keys[];

struct config;

/* -c argument (may be NULL) -> the path to read. */
const char *config_path(const char *cmdline_path);

/*
 * Read and check the file.  On error returns -1 with *error_r pointing to a
 * message naming the file, line and key (valid until the next call).
 */
int config_load(const char *path, struct config **cfg_r, const char **error_r);
/* A configuration holding only the defaults (for tests and tools). */
struct config *config_defaults(void);
/* Set one key as if it were in the file (tests; -o overrides). */
int config_set(struct config *cfg, const char *section, const char *key,
    const char *value, const char **error_r);
void config_free(struct config *cfg);

/*
 * Typed getters.  The key must be in config_keys[] with that type: asking
 * for an unknown key or the wrong type is a programming error and aborts.
 * config_str() never returns NULL (an unset key with an empty default gives
 * ""); config_path() returns an absolute path, or "" if empty.
 */
const char *config_str(const struct config *cfg, const char *section,
    const char *key);
const char *config_path_get(const struct config *cfg, const char *section,
    const char *key);
uint64_t config_uint(const struct config *cfg, const char *section,
    const char *key);
uint64_t config_size(const struct config *cfg, const char *section,
    const char *key);
uint64_t config_duration(const struct config *cfg, const char *section,
    const char *key);
int config_bool(const struct config *cfg, const char *section, const char *key);
/* The file the configuration was read from ("" for config_defaults()). */
const char *config_file(const struct config *cfg);

#endif
