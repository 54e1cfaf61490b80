/*
 * libFuzzer harness for imapd/imap_parser.c and imapd/imap_util.c: any
 * byte string is client input, fed in pieces whose sizes come from the
 * first byte; the parser must never crash, never hand out an argument
 * whose bytes lie outside what it buffered, and always recover.  Each
 * atom is also tried as a sequence set and a modified UTF-7 name.
 *
 * Build by hand from the top of the tree:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -include autoconf.h \
 *     -I BUILD -I lib -I mailbox -I imapd tests/fuzz/fuzz_imap.c \
 *     imapd/imap_parser.c imapd/imap_util.c lib/buf.c lib/xmalloc.c \
 *     lib/strnum.c lib/log.c $(pkg-config --cflags --libs libsodium) \
 *     -o fuzz_imap
 *   ./fuzz_imap -max_len=65536 CORPUS_DIR
 * `make check` runs fuzz/fuzz_imap_replay (-DFUZZ_REPLAY): built-in seeds,
 * every truncation and single-byte substitutions.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap_parser.h"
#include "imap_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
walk(const struct imap_arg *a, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (a[i].type == IMAP_ARG_LIST) {
			/* The parser caps depth: this recursion is bounded. */
			walk(a[i].list, a[i].nlist);
			continue;
		}
		if (a[i].str[a[i].len] != '\0')
			abort();
		if (a[i].type == IMAP_ARG_ATOM) {
			struct store_uid_range *r;
			size_t nr;
			const char *err;
			struct buf b;

			if (imap_seqset_parse(a[i].str, 100, &r, &nr,
			    &err) == 0)
				free(r);
			buf_init(&b, BUF_UNBOUNDED);
			(void)imap_utf7_to_utf8(a[i].str, &b, &err);
			buf_free(&b);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_parser_limits lim;
	struct imap_parser *p;
	size_t off = 1, step;

	if (size < 1)
		return 0;
	step = 1 + (data[0] & 0x3f);
	if (data[0] & 0x80)
		imap_parser_limits_auth(&lim, 1 << 20);
	else
		imap_parser_limits_preauth(&lim);
	p = imap_parser_new(&lim);
	while (off < size) {
		size_t chunk = size - off < step ? size - off : step, used;
		enum imap_parse_result r;

		r = imap_parser_feed(p, data + off, chunk, &used);
		if (used > chunk)
			abort();
		off += used;
		if (r == IMAP_PARSE_OK) {
			const struct imap_arg *a;
			size_t n;

			a = imap_parser_args(p, &n);
			walk(a, n);
		} else if (r == IMAP_PARSE_FATAL)
			break;
		else if (r == IMAP_PARSE_MORE && used == 0)
			abort();
	}
	imap_parser_free(p);
	return 0;
}

#ifdef FUZZ_REPLAY
/*
 * `make check` replay: built-in seeds (the first byte picks the split
 * size and the limits), each whole, every truncation, and every single
 * byte replaced by a few interesting values.
 */
#include <stdio.h>

static const char *const seeds[] = {
	"\x01" "a1 NOOP\r\nb LOGIN {3}\r\nabc \"p\\\"w\"\r\n",
	"\x83" "t FETCH 1:*,5 (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)"
	    "\r\n",
	"\x85" "t SEARCH OR (SUBJECT x) (NOT (FROM {3+}\r\nabc)) UID 1:*\r\n",
	"\x02" "t LIST \"\" &ZeVnLIqe-/%\r\nu SELECT &AGE-\r\n",
	"\x07" "t LOGIN {5000+}\r\nxx\r\n",
	"\x81" "t APPEND INBOX (\\Seen) \" 1-Jan-2026 00:00:00 +0800\" {5}\r\n"
	    "hello\r\n",
	"\x04" "((((((((((((((((((((((((((((((((((((\r\n",
};

int
main(void)
{
	static const uint8_t subst[] = { 0, '\r', '\n', '{', '}', '(', ')',
	    '"', '\\', '[', ']', '+', ' ', 0xff };
	size_t i, j, k, runs = 0;

	for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		size_t len = strlen(seeds[i]);
		uint8_t *buf = malloc(len + 1);

		if (buf == NULL)
			abort();
		for (j = 0; j <= len; j++, runs++)
			(void)LLVMFuzzerTestOneInput(
			    (const uint8_t *)seeds[i], j);
		for (j = 1; j < len; j++) {
			for (k = 0; k < sizeof(subst); k++, runs++) {
				memcpy(buf, seeds[i], len);
				buf[j] = subst[k];
				(void)LLVMFuzzerTestOneInput(buf, len);
			}
		}
		free(buf);
	}
	printf("1..1\nok 1 - fuzz_imap replay: %zu inputs\n", runs);
	return 0;
}
#endif
