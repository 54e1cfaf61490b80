/*
 * smime_priv.h - MIME plumbing shared by cms.c and smime_mime.c (internal
 * to libgovca; the public face is govca_cms.h).
 *
 * All functions work on canonical input (CRLF line ends, see
 * smime_canon_crlf) and are linear in their input with named limits.
 */
#ifndef GOVMAIL_SMIME_PRIV_H
#define GOVMAIL_SMIME_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* An entity split at its first empty line. */
struct smime_entity {
	const uint8_t *hdr;	/* header lines, each with its CRLF */
	size_t hdr_len;
	const uint8_t *body;	/* after the empty line */
	size_t body_len;
};

/* A parsed Content-Type (type and subtype lowercased; "" if absent). */
struct smime_ctype {
	char type[SMIME_MAX_TOKEN + 1];
	char subtype[SMIME_MAX_TOKEN + 1];
	char boundary[SMIME_BOUNDARY_MAX + 1];
	char protocol[SMIME_MAX_TOKEN + 1];
	char smime_type[SMIME_MAX_TOKEN + 1];
	char name[SMIME_MAX_TOKEN + 1];
	int has_boundary;
};

/* A byte range of some input. */
struct smime_span {
	const uint8_t *p;
	size_t len;
};

/* Append in to out with every bare LF turned into CRLF.  -1 if out fills. */
int smime_canon_crlf(const uint8_t *in, size_t len, struct buf *out);

/* Split canonical msg at the first empty line; -1 if the header block is
 * larger than SMIME_MAX_HEADER_BYTES.  No empty line: all header, no body. */
int smime_entity_split(const uint8_t *msg, size_t len,
    struct smime_entity *e_r, const char **error_r);

/*
 * Find header field name (ASCII case-insensitive) in e's header block;
 * unfold its first occurrence into value (buf, reset first, max
 * SMIME_MAX_FIELD) and set *count_r to the number of occurrences.
 * Returns 0 (also when absent: *count_r == 0), -1 if the value is too long.
 */
int smime_header_get(const struct smime_entity *e, const char *name,
    struct buf *value, size_t *count_r);

/* 1 if the header line starting at p (of len bytes) is a Content-* field. */
int smime_header_is_content(const uint8_t *p, size_t len);

/*
 * Walk the header block: calls fn for each field (with its continuation
 * lines and final CRLF).  Stops and returns -1 if fn does.
 */
int smime_header_each(const struct smime_entity *e,
    int (*fn)(const uint8_t *field, size_t len, void *ctx), void *ctx);

/* Parse a Content-Type value; -1 with *error_r on malformed or over-long. */
int smime_ctype_parse(const char *value, struct smime_ctype *ct,
    const char **error_r);

/*
 * Split a canonical multipart body at boundary into at most max_parts parts
 * (the bytes between a delimiter line and the CRLF before the next one).
 * Needs the close delimiter.  -1 with *error_r: no boundary found, too many
 * parts, boundary never closed.
 */
int smime_multipart_split(const uint8_t *body, size_t len,
    const char *boundary, struct smime_span *parts, size_t max_parts,
    size_t *n_r, const char **error_r);

/* Base64 with CRLF every 76 characters (RFC 2045 6.8). */
int smime_base64_encode(const uint8_t *in, size_t len, struct buf *out);
/* Decode base64, ignoring whitespace; -1 on any other byte or bad padding. */
int smime_base64_decode(const uint8_t *in, size_t len, struct buf *out,
    const char **error_r);

/* 1 if the canonical entity is 7-bit with lines <= SMIME_MAX_LINE. */
int smime_is_7bit(const uint8_t *p, size_t len, const char **error_r);

#endif
