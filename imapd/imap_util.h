/*
 * imap_util.h - small IMAP syntax helpers: sequence sets (RFC 3501 9
 * sequence-set), modified UTF-7 mailbox names (RFC 3501 5.1.3), UTF-8
 * validation, and quoting of strings in responses.
 *
 * govmail-imapd workers.  Inputs are untrusted client text; every function
 * validates completely and returns -1 with *error_r (static text) on bad
 * input.
 */
#ifndef GOVMAIL_IMAP_UTIL_H
#define GOVMAIL_IMAP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"

struct buf;

/* Most ranges one sequence set may hold after merging. */
#define IMAP_SEQSET_RANGES_MAX 8192

/*
 * Parse a sequence set ("1,3:5,7:*").  '*' stands for star (the highest
 * sequence number or UID in the mailbox; 0 when it is empty).  Ranges are
 * normalised (lo <= hi), sorted and merged into *ranges_r (a fresh array
 * the caller frees) with *n_r entries.  Zero is refused.  Returns 0 or -1.
 * "$" (SEARCHRES) is the caller's business.
 */
int imap_seqset_parse(const char *s, uint32_t star,
    struct store_uid_range **ranges_r, size_t *n_r, const char **error_r);

/* 1 if v lies in one of the ranges. */
int imap_seqset_contains(const struct store_uid_range *r, size_t n,
    uint32_t v);

/*
 * Modified UTF-7 (RFC 3501 5.1.3) to UTF-8, appended to out.  Refuses
 * 8-bit input, bad base64, non-shortest forms ("&AGE-" for 'a'), unpaired
 * surrogates and non-zero padding bits.  Returns 0 or -1.
 */
int imap_utf7_to_utf8(const char *in, struct buf *out, const char **error_r);
/* UTF-8 to modified UTF-7, appended to out; refuses invalid UTF-8. */
int imap_utf8_to_utf7(const char *in, struct buf *out, const char **error_r);
/* 1 if s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
int imap_utf8_valid(const uint8_t *s, size_t len);

/*
 * Append s as an IMAP string: quoted when it can be ("..." with \ and "
 * escaped), else as a literal {n}\r\n... (CR, LF, NUL or 8-bit without
 * utf8).  NULL appends NIL.
 */
void imap_append_string(struct buf *out, const char *s, int utf8);
/* The same for len bytes. */
void imap_append_nstring(struct buf *out, const char *s, size_t len,
    int utf8);

#endif
