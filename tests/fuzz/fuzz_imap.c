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
			/* The parser caps depth, so this recursion is bounded. */
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

			if (imap_seqset_parse(a[i].str, 100, &r, &nr, &err) == 0)
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
