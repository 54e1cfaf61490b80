/*
 * strnum.c - strict, overflow-checked number parsing.  Every process;
 * input is untrusted (configuration, protocol arguments).
 */
#include "autoconf.h"

#include <string.h>

#include "buf.h"
#include "strnum.h"

int
strnum_u64_n(const char *s, size_t len, uint64_t max, uint64_t *val_r,
    const char **error_r)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0) {
		*error_r = "not a number";
		return -1;
	}
	for (i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9') {
			*error_r = "not a number";
			return -1;
		}
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10 || v * 10 + d > max) {
			*error_r = "too large";
			return -1;
		}
		v = v * 10 + d;
	}
	*val_r = v;
	return 0;
}

int
strnum_u64(const char *s, uint64_t min, uint64_t max, uint64_t *val_r,
    const char **error_r)
{
	uint64_t v;

	if (strnum_u64_n(s, strlen(s), max, &v, error_r) < 0)
		return -1;
	if (v < min) {
		*error_r = "too small";
		return -1;
	}
	*val_r = v;
	return 0;
}

int
strnum_i64(const char *s, int64_t min, int64_t max, int64_t *val_r,
    const char **error_r)
{
	uint64_t mag, lim;
	int neg = s[0] == '-';

	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	if (strnum_u64_n(s + neg, strlen(s + neg), lim, &mag, error_r) < 0) {
		if (neg && strcmp(*error_r, "too large") == 0)
			*error_r = "too small";
		return -1;
	}
	if (neg) {
		int64_t v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN
		    : -(int64_t)mag;
		if (v < min) {
			*error_r = "too small";
			return -1;
		}
		*val_r = v;
	} else {
		if ((int64_t)mag > max) {
			*error_r = "too large";
			return -1;
		}
		if ((int64_t)mag < min) {
			*error_r = "too small";
			return -1;
		}
		*val_r = (int64_t)mag;
	}
	return 0;
}

static int
strnum_suffixed(const char *s, uint64_t max, const char *suffixes,
    const uint64_t *mult, uint64_t *val_r, const char **error_r)
{
	size_t len = strlen(s);
	uint64_t m = 1, v;
	const char *p;

	if (len > 0 && (p = strchr(suffixes, s[len - 1])) != NULL
	    && s[len - 1] != '\0') {
		m = mult[p - suffixes];
		len--;
	}
	if (strnum_u64_n(s, len, UINT64_MAX, &v, error_r) < 0)
		return -1;
	if (v > max / m) {
		*error_r = "too large";
		return -1;
	}
	*val_r = v * m;
	return 0;
}

int
strnum_size(const char *s, uint64_t max, uint64_t *val_r, const char **error_r)
{
	static const uint64_t mult[] = { 1024, 1024, 1024ULL * 1024,
	    1024ULL * 1024, 1024ULL * 1024 * 1024, 1024ULL * 1024 * 1024 };

	return strnum_suffixed(s, max, "kKmMgG", mult, val_r, error_r);
}

int
strnum_duration(const char *s, uint64_t max, uint64_t *val_r,
    const char **error_r)
{
	static const uint64_t mult[] = { 1, 60, 3600, 86400 };

	return strnum_suffixed(s, max, "smhd", mult, val_r, error_r);
}

int
strnum_bool(const char *s, int *val_r, const char **error_r)
{
	static const char *const yes[] = { "yes", "true", "on", "1", NULL };
	static const char *const no[] = { "no", "false", "off", "0", NULL };
	size_t i;

	for (i = 0; yes[i] != NULL; i++) {
		if (str_casecmp(s, yes[i]) == 0) {
			*val_r = 1;
			return 0;
		}
		if (str_casecmp(s, no[i]) == 0) {
			*val_r = 0;
			return 0;
		}
	}
	*error_r = "not a boolean (yes/no, true/false, on/off, 1/0)";
	return -1;
}
