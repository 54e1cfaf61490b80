/*
 * mime_priv.h - internals shared by mime.c (the entity tree, field
 * parsing, decoded keys, part map) and mime_imap.c (the IMAP ENVELOPE,
 * BODYSTRUCTURE and BODY writer).  Not for use outside mailbox/mime*.c.
 *
 * Same process and trust as mime.c: message bytes are untrusted.
 */
#ifndef GOVMAIL_MIME_PRIV_H
#define GOVMAIL_MIME_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include <libetpan/libetpan.h>

#include "buf.h"

/* Header fields we look at; the first occurrence of each counts. */
enum mime_field {
	MIME_F_CONTENT_TYPE,
	MIME_F_CONTENT_TRANSFER_ENCODING,
	MIME_F_CONTENT_ID,
	MIME_F_CONTENT_DESCRIPTION,
	MIME_F_CONTENT_DISPOSITION,
	MIME_F_CONTENT_LANGUAGE,
	MIME_F_CONTENT_LOCATION,
	MIME_F_DATE,
	MIME_F_SUBJECT,
	MIME_F_FROM,
	MIME_F_SENDER,
	MIME_F_REPLY_TO,
	MIME_F_TO,
	MIME_F_CC,
	MIME_F_BCC,
	MIME_F_IN_REPLY_TO,
	MIME_F_MESSAGE_ID,
	MIME_F_COUNT
};

enum mime_kind {
	MIME_KIND_BASIC,	/* any leaf that is not text */
	MIME_KIND_TEXT,		/* text/\* (has a line count) */
	MIME_KIND_MULTIPART,
	MIME_KIND_MESSAGE,	/* message/rfc822 (envelope, body, lines) */
};

/* How a node's Content-Type is described. */
enum mime_type_src {
	MIME_TYPE_PARSED,	/* from ct */
	MIME_TYPE_DEFAULT,	/* text/plain; charset=us-ascii (RFC 2045 5.2) */
	MIME_TYPE_DIGEST,	/* message/rfc822, default in multipart/digest */
	MIME_TYPE_OPAQUE,	/* application/octet-stream: a limit was hit */
};

#define MIME_NONE	UINT32_MAX
#define MIME_ABSENT	SIZE_MAX

struct mime_span {
	size_t off;	/* MIME_ABSENT if the field is not there */
	size_t len;
};

/* One entity: the top-level message, a body part or an embedded message. */
struct mime_node {
	size_t hdr_off, hdr_len;	/* body starts at hdr_off + hdr_len */
	size_t body_len;
	uint32_t parent, first_child, last_child, next_sibling;
	uint32_t depth;
	enum mime_kind kind;
	enum mime_type_src type_src;
	int no_header;			/* a folded rest: no header of its own */
	struct mime_span fields[MIME_F_COUNT];
	struct mailmime_content *ct;	/* owned; NULL unless MIME_TYPE_PARSED */
};

struct mime_ctx {
	const uint8_t *msg;
	size_t len;
	struct mime_node *nodes;
	uint32_t n, cap;
	struct buf scratch;		/* unfolded field values */
};

/* ---- small helpers ------------------------------------------------ */

static inline int
mime_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static inline int
mime_upper(int c)
{
	return (c >= 'a' && c <= 'z') ? c - ('a' - 'A') : c;
}

static inline int
mime_is_wsp(int c)
{
	return c == ' ' || c == '\t';
}

static inline size_t
mime_body_off(const struct mime_node *node)
{
	return node->hdr_off + node->hdr_len;
}

/* ASCII case-insensitive match of a[0..alen) against lower-case b. */
int mime_ascii_caseeq(const uint8_t *a, size_t alen, const char *b);
/* Lines of a body: LF count, plus one for a last line without LF. */
uint64_t mime_count_lines(const uint8_t *p, size_t len);
/*
 * The unfolded, trimmed value of field f of node in ctx->scratch, NULL if
 * absent; valid until the next call.  mime_field_parsable() also returns
 * NULL for an empty value or one mime_value_parsable() refuses, so that
 * only bounded, shallow values reach libetpan.
 */
const char *mime_field_value(struct mime_ctx *ctx,
    const struct mime_node *node, enum mime_field f, size_t *len_r);
const char *mime_field_parsable(struct mime_ctx *ctx,
    const struct mime_node *node, enum mime_field f, size_t *len_r);
int mime_value_parsable(const char *v, size_t len);
/* An address list (libetpan, after repairs); NULL if unparsable.  Free
 * with mailimf_address_list_free(). */
struct mailimf_address_list *mime_parse_addresses(const char *v, size_t len);
/* An addr-spec without stray angle brackets and blanks. */
void mime_addr_trim(const char *spec, const char **start_r, size_t *len_r);

/* mime_imap.c: ENVELOPE of message node into o; BODYSTRUCTURE of node i
 * into bs and BODY into b (recursion bounded by MIME_DEPTH_MAX). */
void mime_imap_write_envelope(struct mime_ctx *ctx, struct buf *o,
    const struct mime_node *node);
void mime_imap_write_body(struct mime_ctx *ctx, struct buf *bs,
    struct buf *b, uint32_t i);

#endif
