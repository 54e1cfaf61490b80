/*
 * strnum.h - the only way numbers are parsed from text (atoi & co are banned).
 *
 * Every process.  Each function accepts the whole string or fails: no sign
 * where none is allowed, no leading or trailing space, no empty string, no
 * overflow, value within [min, max].  They return 0, or -1 with *error_r set
 * to a short static reason ("not a number", "too large", "too small").
 */
#ifndef GOVMAIL_STRNUM_H
#define GOVMAIL_STRNUM_H

#include <stddef.h>
#include <stdint.h>

int strnum_u64(const char *s, uint64_t min, uint64_t max, uint64_t *val_r,
    const char **error_r);
int strnum_i64(const char *s, int64_t min, int64_t max, int64_t *val_r,
    const char **error_r);
/* Decimal digits in s[0..len), for protocol parsers that hold no NUL. */
int strnum_u64_n(const char *s, size_t len, uint64_t max, uint64_t *val_r,
    const char **error_r);
/*
 * A size with an optional binary suffix: "512", "64K", "10M", "2G" (K=1024).
 */
int strnum_size(const char *s, uint64_t max, uint64_t *val_r,
    const char **error_r);
/* yes/no, true/false, on/off, 1/0 (any case) -> 1 or 0; *error_r on -1. */
int strnum_bool(const char *s, int *val_r, const char **error_r);
/* A duration with an optional suffix: "30", "30s", "5m", "2h", "7d" -> seconds. */
int strnum_duration(const char *s, uint64_t max, uint64_t *val_r,
    const char **error_r);

#endif
