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

/* One RFC 3501 item (list, quoted, literal, NIL, number); -1 if bad. */
static int
imap_item(const char **p, const char *end, int depth, int *n_r)
{
	const char *s = *p;
	int n = 0;

	if (s >= end || depth > 200)
		return -1;
	if (*s == '(') {
		for (s++; s < end && *s != ')'; n++) {
			if (n > 0 && *s == ' ')
				s++;
			else if (n > 0 && *s != '(')
				return -1;
			if (imap_item(&s, end, depth + 1, NULL) == -1)
				return -1;
		}
		if (s >= end)
			return -1;
		*p = s + 1;
		if (n_r != NULL)
			*n_r = n;
		return 0;
	}
	if (*s == '"') {
		for (s++; s < end && *s != '"'; s++) {
			if (*s == '\\' && (++s >= end ||
			    (*s != '"' && *s != '\\')))
				return -1;
			if (*s == '\r' || *s == '\n' || (*s & 0x80))
				return -1;
		}
		if (s >= end)
			return -1;
		*p = s + 1;
		return 0;
	}
	if (*s == '{') {
		char *e;
		unsigned long len = strtoul(s + 1, &e, 10);

		if (e + 3 > end || e[0] != '}' || e[1] != '\r' || e[2] != '\n' ||
		    (unsigned long)(end - (e + 3)) < len ||
		    memchr(e + 3, 0, len) != NULL)
			return -1;
		*p = e + 3 + len;
		return 0;
	}
	if (end - s >= 3 && memcmp(s, "NIL", 3) == 0) {
		*p = s + 3;
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -1;
	while (s < end && *s >= '0' && *s <= '9')
		s++;
	*p = s;
	return 0;
}

static void
check_list(const char *s, int items)
{
	const char *p = s, *end = s + strlen(s);
	int n = -1;

	if (*s != '(' || imap_item(&p, end, 0, &n) == -1 || p != end ||
	    (items > 0 && n != items))
		abort();
}

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
	check_list(info.envelope, 10);
	check_list(info.bodystructure, 0);
	check_list(info.body, 0);
	if (info.header_size > size)
		abort();
	check_part(&info, "", size, 1);
	check_part(&info, "1", size, 1);
	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		check_part(&info, parts[i], size, 0);
	mime_info_free(&info);
	return 0;
}
