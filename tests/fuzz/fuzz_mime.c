/*
 * libFuzzer harness for mailbox/mime.c: any byte string is a message that
 * mime_analyse() must describe without crashing, and every part the map
 * names must lie inside it.  Seed corpus: tests/data/mime/\*.eml.
 *
 * Built by "configure CC=clang --enable-fuzz" (tests/unit/mime.am), or by
 * hand from the top of the tree:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -include autoconf.h \
 *     -I BUILD -I lib -I mailbox tests/fuzz/fuzz_mime.c mailbox/mime.c \
 *     mailbox/mime_imap.c lib/buf.c lib/xmalloc.c lib/strnum.c lib/log.c \
 *     $(pkg-config --cflags --libs libetpan libsodium) -o fuzz_mime
 *   ./fuzz_mime -max_len=65536 CORPUS_DIR tests/data/mime
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_part(const struct mime_info *info, const char *part, size_t size,
    int must)
{
	uint64_t ho, hl, bo, bl;

	if (mime_partmap_find(info->partmap, info->partmap_len, part, &ho, &hl,
	    &bo, &bl) == -1) {
		if (must)
			abort();
		return;
	}
	if (ho + hl != bo || bo > size || bl > size - bo)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const parts[] = { "1.1", "1.2", "2", "2.1", "3",
	    "1.HEADER", "2.TEXT", "1.1.1" };
	struct mime_info info;
	const char *error;
	size_t i;

	if (mime_analyse(data, size, &info, &error) != 0)
		abort();
	if (info.envelope[0] != '(' || info.bodystructure[0] != '(' ||
	    info.body[0] != '(' || info.header_size > size)
		abort();
	check_part(&info, "", size, 1);
	check_part(&info, "1", size, 1);
	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		check_part(&info, parts[i], size, 0);
	mime_info_free(&info);
	return 0;
}
