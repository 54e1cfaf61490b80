/*
 * libFuzzer harness for govmail-smtpd's parsers (smtpd/smtp_parse.c): the
 * first byte picks the parser, the rest is the client's input.
 *   0: a command line (smtp_cmd_parse), then its argument as a MAIL and a
 *      RCPT path with parameters (smtp_path_parse), with and without UTF-8
 *   1: a DATA stream (smtp_data_feed) fed whole and byte by byte: both
 *      must agree on result, bytes consumed, faults and the message kept
 *   2: a message header (smtp_header_from)
 * Any crash, disagreement or broken invariant aborts.
 *
 * Two builds of this file:
 *   - "configure CC=clang --enable-fuzz": fuzz/fuzz_smtp, a libFuzzer binary
 *   - always: fuzz/fuzz_smtp_replay (FUZZ_REPLAY), a `make check` test that
 *     runs built-in seeds and every truncation and single-byte change of
 *     each through the same function.
 */
#include "autoconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "smtp_parse.h"
#include "xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_command(const uint8_t *data, size_t size)
{
	char *line = xmalloc(size + 1);
	struct smtp_path path;
	struct smtp_mail_params mp;
	struct smtp_rcpt_params rp;
	const char *arg = NULL, *what = NULL;
	int cmd;

	memcpy(line, data, size);
	line[size] = '\0';
	cmd = smtp_cmd_parse(line, size, &arg);
	if (cmd > 0 && arg[0] != '\0' && (arg < line || arg > line + size))
		abort();
	/* The paths parse NUL-terminated text, as the session gives them. */
	if (smtp_path_parse(line, 0, 0, &path, &mp, NULL, &what) ==
	    SMTP_PATH_OK) {
		if (strlen(path.addr) > SMTP_PATH_MAX || (path.null &&
		    path.addr[0] != '\0'))
			abort();
		if (path.utf8 && !mp.smtputf8)
			abort();	/* UTF-8 only with SMTPUTF8 */
		if (strchr(path.addr, '%') || strchr(path.addr, '!') ||
		    strchr(path.addr, '"') || strchr(path.addr, '['))
			abort();	/* no relay hack gets through */
	} else if (what == NULL || what[0] == '\0')
		abort();
	for (int utf8 = 0; utf8 < 2; utf8++) {
		what = NULL;
		if (smtp_path_parse(line, 1, utf8, &path, NULL, &rp, &what) ==
		    SMTP_PATH_OK) {
			if (path.null || (path.utf8 && !utf8))
				abort();
			if (strchr(path.addr, '%') || strchr(path.addr, '!') ||
			    strchr(path.addr, '"') || strchr(path.addr, '['))
				abort();
		} else if (what == NULL || what[0] == '\0')
			abort();
	}
	free(line);
}

static void
fuzz_data(const uint8_t *data, size_t size)
{
	struct smtp_data d1, d2;
	struct buf o1, o2;
	enum smtp_data_result r1, r2 = SMTP_DATA_MORE;
	size_t used1, used2 = 0, i, u;

	buf_init(&o1, 4096);
	buf_init(&o2, 4096);
	smtp_data_init(&d1);
	smtp_data_init(&d2);
	r1 = smtp_data_feed(&d1, data, size, &o1, &used1);
	for (i = 0; i < size; i++) {
		r2 = smtp_data_feed(&d2, data + i, 1, &o2, &u);
		used2 += u;
		if (r2 != SMTP_DATA_MORE)
			break;
	}
	if (r1 != r2 || used1 != used2 || d1.faults != d2.faults ||
	    d1.size != d2.size || o1.len != o2.len ||
	    (o1.len > 0 && memcmp(o1.data, o2.data, o1.len) != 0))
		abort();
	/* The kept message never holds a bare CR or LF. */
	for (i = 0; i < o1.len; i++) {
		if (o1.data[i] == '\n' && (i == 0 || o1.data[i - 1] != '\r'))
			abort();
		if (o1.data[i] == '\r' && (i + 1 >= o1.len ||
		    o1.data[i + 1] != '\n'))
			abort();
	}
	if (r1 == SMTP_DATA_END && (used1 < 3 || data[used1 - 1] != '\n'))
		abort();
	buf_free(&o1);
	buf_free(&o2);
}

static void
fuzz_from(const uint8_t *data, size_t size)
{
	char addrs[SMTP_FROM_ADDRS_MAX][SMTP_PATH_MAX + 1];
	int n = smtp_header_from(data, size, addrs, SMTP_FROM_ADDRS_MAX);

	if (n > SMTP_FROM_ADDRS_MAX)
		abort();
	for (int i = 0; i < n; i++)
		if (strchr(addrs[i], '@') == NULL)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_command(data + 1, size - 1);
		break;
	case 1:
		fuzz_data(data + 1, size - 1);
		break;
	default:
		fuzz_from(data + 1, size - 1);
		break;
	}
	return 0;
}

#ifdef FUZZ_REPLAY
static const char *const seeds[] = {
	"\x00MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME SMTPUTF8",
	"\x00RCPT TO:<user@city.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y",
	"\x00TO:<user%other@city.example>",
	"\x00TO:<@a,@b:u@c.example>",
	"\x00FROM:<\xe5\xbc\xa0\xe4\xb8\x89@x.example> SMTPUTF8",
	"\x00TO:<\"q@x\"@y.example>",
	"\x00TO:<u@[1.2.3.4]>",
	"\x01Subject: x\r\n\r\n..a\r\nb\r\n.\r\nMAIL",
	"\x01a\n.\nb",
	"\x01a\r\r\n.\r\r\n",
	"\x01x\r\n.\rx\r\n.\r\n",
	"\x02From: \"N, M\" <a@b.example>, c@d.example (x)\r\n\r\n",
	"\x02Subject: s\r\nFrom: a@b\r\n c@d\r\n\r\n",
};

int
main(void)
{
	size_t s, i, runs = 0;

	for (s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
		/* A "\x00" selector: strlen stops at it, so skip it. */
		size_t len = 1 + strlen(seeds[s] + 1);
		uint8_t *buf = xmalloc(len + 1);

		memcpy(buf, seeds[s], len);
		for (i = 0; i <= len; i++, runs++)
			LLVMFuzzerTestOneInput(buf, i);
		for (i = 1; i < len; i++) {
			static const uint8_t subst[] = { 0, '\r', '\n', '.',
			    '<', '>', '@', '%', ' ', 0xff, 0x80, '"' };
			uint8_t old = buf[i];

			for (size_t k = 0; k < sizeof(subst); k++, runs++) {
				buf[i] = subst[k];
				LLVMFuzzerTestOneInput(buf, len);
			}
			buf[i] = old;
		}
		free(buf);
	}
	printf("1..1\nok 1 - fuzz_smtp replay: %zu inputs\n", runs);
	return 0;
}
#endif
