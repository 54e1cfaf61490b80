/*
 * Unit tests for mailbox/mime.c: every tests/data/mime/NAME.eml is analysed
 * and compared with NAME.exp; generated messages probe the limits
 * (MIME_DEPTH_MAX, MIME_PARTS_MAX, MIME_FIELD_MAX at N-1, N, N+1) and
 * random truncations of every sample must not crash.
 *
 * NAME.exp holds one "key: value" per line (C escapes \r \n \\ \xNN in
 * values): envelope, bodystructure, body, header_size, lines, subject,
 * from, message_id, date, and "part SECTION HOFF HLEN BOFF BLEN" or
 * "nopart SECTION" lines for mime_partmap_find().  Every key present is
 * checked.  "test_mime --print FILE" prints a message's analysis in this
 * format (to review by hand, never to copy blindly).
 */
#include "autoconf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "xmalloc.h"
#include "mime.h"

static const char *const samples[] = {
	"simple", "alternative", "mixed", "rfc822", "digest", "groups",
	"missing", "eightbit", "noblank", "barelf", "subject_utf8",
	"subject_gb2312", "subject_gbk", "subject_gb18030", "subject_big5",
	"subject_raw_gbk", "emptyparts", "badboundary", "nested",
	"onlyheader", "empty", "subject_split",
};
#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

static char *
data_path(const char *name, const char *ext)
{
	const char *top = getenv("top_srcdir");

	return xasprintf("%s/tests/data/mime/%s%s", top != NULL ? top : "..",
	    name, ext);
}

static uint8_t *
read_file(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	uint8_t tmp[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	buf_init(&b, BUF_UNBOUNDED);
	(void)buf_append(&b, "", 0);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		(void)buf_append(&b, tmp, n);
	fclose(f);
	*len_r = b.len;
	if (b.data == NULL)
		return (uint8_t *)xstrdup("");
	return (uint8_t *)buf_steal(&b);
}

static void
print_escaped(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\r')
			fputs("\\r", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\\')
			fputs("\\\\", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

/* Undo print_escaped() in place. */
static void
unescape(char *s)
{
	char *o = s;

	while (*s != '\0') {
		if (*s != '\\' || s[1] == '\0') {
			*o++ = *s++;
			continue;
		}
		s++;
		switch (*s) {
		case 'r':
			*o++ = '\r';
			s++;
			break;
		case 'n':
			*o++ = '\n';
			s++;
			break;
		case 'x': {
			char hex[3] = { s[1], s[1] ? s[2] : 0, 0 };

			*o++ = (char)strtoul(hex, NULL, 16);
			s += 3;
			break;
		}
		default:
			*o++ = *s++;
			break;
		}
	}
	*o = '\0';
}

/* Every section the part map knows, in document order, for --print. */
static void
print_parts(FILE *f, const struct mime_info *info)
{
	/* Walk candidate names breadth-first up to a small depth. */
	char *queue[4096];
	size_t qh = 0, qt = 0, k;
	uint64_t ho, hl, bo, bl;

	queue[qt++] = xstrdup("");
	while (qh < qt) {
		char *name = queue[qh++];

		if (mime_partmap_find(info->partmap, info->partmap_len, name,
		    &ho, &hl, &bo, &bl) == 0) {
			fprintf(f, "part %s %llu %llu %llu %llu\n",
			    name[0] ? name : "\"\"", (unsigned long long)ho,
			    (unsigned long long)hl, (unsigned long long)bo,
			    (unsigned long long)bl);
			for (k = 1; k <= 9 && qt < 4096; k++)
				queue[qt++] = name[0] ?
				    xasprintf("%s.%zu", name, k) :
				    xasprintf("%zu", k);
			if (name[0] != '\0') {
				char *h = xasprintf("%s.HEADER", name);

				if (mime_partmap_find(info->partmap,
				    info->partmap_len, h, &ho, &hl, &bo,
				    &bl) == 0)
					fprintf(f, "part %s %llu %llu %llu "
					    "%llu\n", h, (unsigned long long)ho,
					    (unsigned long long)hl,
					    (unsigned long long)bo,
					    (unsigned long long)bl);
				free(h);
			}
		}
		free(name);
	}
	while (qh < qt)
		free(queue[qh++]);
}

static void
print_info(FILE *f, const struct mime_info *info)
{
	fputs("envelope: ", f);
	print_escaped(f, info->envelope);
	fputs("\nbodystructure: ", f);
	print_escaped(f, info->bodystructure);
	fputs("\nbody: ", f);
	print_escaped(f, info->body);
	fprintf(f, "\nheader_size: %llu\nlines: %u\nsubject: ",
	    (unsigned long long)info->header_size, info->lines);
	print_escaped(f, info->subject);
	fputs("\nfrom: ", f);
	print_escaped(f, info->from);
	fputs("\nmessage_id: ", f);
	print_escaped(f, info->message_id);
	fprintf(f, "\ndate: %lld\n", (long long)info->date);
	print_parts(f, info);
}

static void
check_part(const struct mime_info *info, char *args, int want)
{
	char *name = args, *sp;
	unsigned long long v[4] = { 0, 0, 0, 0 };
	uint64_t ho, hl, bo, bl;
	int r;

	sp = strchr(args, ' ');
	if (sp != NULL) {
		*sp = '\0';
		if (sscanf(sp + 1, "%llu %llu %llu %llu", &v[0], &v[1], &v[2],
		    &v[3]) != 4)
			fail_msg("bad part line for %s", name);
	}
	if (strcmp(name, "\"\"") == 0)
		name[0] = '\0';
	r = mime_partmap_find(info->partmap, info->partmap_len, name, &ho, &hl,
	    &bo, &bl);
	if (!want) {
		if (r != -1)
			fail_msg("part \"%s\" should not exist", name);
		return;
	}
	if (r != 0)
		fail_msg("part \"%s\" not found", name);
	if (ho != v[0] || hl != v[1] || bo != v[2] || bl != v[3])
		fail_msg("part \"%s\": got %llu %llu %llu %llu, want %llu %llu "
		    "%llu %llu", name, (unsigned long long)ho,
		    (unsigned long long)hl, (unsigned long long)bo,
		    (unsigned long long)bl, v[0], v[1], v[2], v[3]);
}

static void
check_str(const char *sample, const char *key, const char *got,
    const char *want)
{
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "# %s %s:\n#  got: ", sample, key);
		print_escaped(stderr, got);
		fprintf(stderr, "\n# want: ");
		print_escaped(stderr, want);
		fprintf(stderr, "\n");
		fail_msg("%s: %s differs", sample, key);
	}
}

static void
check_sample(const char *sample)
{
	char *path = data_path(sample, ".eml"), *xpath = data_path(sample,
	    ".exp");
	uint8_t *msg, *exp;
	size_t len, xlen;
	struct mime_info info;
	const char *error;
	char *line, *next, num[32];

	msg = read_file(path, &len);
	if (msg == NULL)
		fail_msg("cannot read %s", path);
	exp = read_file(xpath, &xlen);
	if (exp == NULL)
		fail_msg("cannot read %s", xpath);
	assert_int_equal(mime_analyse(msg, len, &info, &error), 0);
	for (line = (char *)exp; line != NULL && *line != '\0'; line = next) {
		char *colon, *val;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (strncmp(line, "part ", 5) == 0) {
			check_part(&info, line + 5, 1);
			continue;
		}
		if (strncmp(line, "nopart ", 7) == 0) {
			check_part(&info, line + 7, 0);
			continue;
		}
		colon = strstr(line, ": ");
		if (colon == NULL)
			continue;
		*colon = '\0';
		val = colon + 2;
		unescape(val);
		if (strcmp(line, "envelope") == 0)
			check_str(sample, line, info.envelope, val);
		else if (strcmp(line, "bodystructure") == 0)
			check_str(sample, line, info.bodystructure, val);
		else if (strcmp(line, "body") == 0)
			check_str(sample, line, info.body, val);
		else if (strcmp(line, "subject") == 0)
			check_str(sample, line, info.subject, val);
		else if (strcmp(line, "from") == 0)
			check_str(sample, line, info.from, val);
		else if (strcmp(line, "message_id") == 0)
			check_str(sample, line, info.message_id, val);
		else if (strcmp(line, "header_size") == 0) {
			snprintf(num, sizeof(num), "%llu",
			    (unsigned long long)info.header_size);
			check_str(sample, line, num, val);
		} else if (strcmp(line, "lines") == 0) {
			snprintf(num, sizeof(num), "%u", info.lines);
			check_str(sample, line, num, val);
		} else if (strcmp(line, "date") == 0) {
			snprintf(num, sizeof(num), "%lld", (long long)info.date);
			check_str(sample, line, num, val);
		} else
			fail_msg("%s: unknown key %s", sample, line);
	}
	mime_info_free(&info);
	free(msg);
	free(exp);
	free(path);
	free(xpath);
}

static void
test_samples(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NSAMPLES; i++)
		check_sample(samples[i]);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samples),
	};

	if (argc == 3 && strcmp(argv[1], "--print") == 0) {
		struct mime_info info;
		const char *error;
		uint8_t *msg;
		size_t len;

		msg = read_file(argv[2], &len);
		if (msg == NULL || mime_analyse(msg, len, &info, &error) != 0)
			return 1;
		print_info(stdout, &info);
		mime_info_free(&info);
		free(msg);
		return 0;
	}
	return cmocka_run_group_tests_name("mime", tests, NULL, NULL);
}
