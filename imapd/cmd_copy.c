/*
 * cmd_copy.c - commands that copy messages between mailboxes: COPY, MOVE
 * and their UID forms (UIDPLUS COPYUID); and IMAP date parsing (APPEND's
 * lives in cmd_append.c).
 *
 * govmail-imapd workers.  Arguments come from the parser; the store checks
 * quota in the same transaction as the copy.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "imap_util.h"
#include "imapd.h"
#include "log.h"
#include "strnum.h"
#include "xmalloc.h"

static const char *const months[12] = { "Jan", "Feb", "Mar", "Apr", "May",
    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* "d-Mon-yyyy" at s (len bytes); returns 0 and days, or -1. */
static int
parse_date_n(const char *s, size_t len, int64_t *days_r)
{
	const char *d1 = memchr(s, '-', len), *d2;
	uint64_t day, year;
	const char *err;
	unsigned m;

	if (d1 == NULL || d1 - s < 1 || d1 - s > 2)
		return -1;
	d2 = memchr(d1 + 1, '-', len - (size_t)(d1 - s) - 1);
	if (d2 == NULL || d2 - d1 != 4)
		return -1;
	if (strnum_u64_n(s, (size_t)(d1 - s), 31, &day, &err) < 0 || day == 0)
		return -1;
	for (m = 0; m < 12; m++)
		if (strncasecmp(d1 + 1, months[m], 3) == 0)
			break;
	if (m == 12)
		return -1;
	if ((size_t)(s + len - d2 - 1) != 4 ||
	    strnum_u64_n(d2 + 1, 4, 9999, &year, &err) < 0 || year < 1900)
		return -1;
	*days_r = days_from_civil((int64_t)year, m + 1, (unsigned)day);
	return 0;
}

int
imap_parse_date(const char *s, int64_t *days_r)
{
	return parse_date_n(s, strlen(s), days_r);
}

int
imap_parse_datetime(const char *s, int64_t *t_r, int32_t *tz_r)
{
	/* "dd-Mon-yyyy hh:mm:ss +zzzz"; day may start with a space. */
	const char *sp;
	int64_t days;
	uint64_t hh, mm, ss, zh, zm;
	const char *err;
	int32_t tz;

	if (s[0] == ' ')
		s++;
	sp = strchr(s, ' ');
	if (sp == NULL || parse_date_n(s, (size_t)(sp - s), &days) < 0)
		return -1;
	sp++;
	if (strlen(sp) != 14 || sp[2] != ':' || sp[5] != ':' || sp[8] != ' ' ||
	    (sp[9] != '+' && sp[9] != '-'))
		return -1;
	if (strnum_u64_n(sp, 2, 23, &hh, &err) < 0 ||
	    strnum_u64_n(sp + 3, 2, 59, &mm, &err) < 0 ||
	    strnum_u64_n(sp + 6, 2, 60, &ss, &err) < 0 ||
	    strnum_u64_n(sp + 10, 2, 23, &zh, &err) < 0 ||
	    strnum_u64_n(sp + 12, 2, 59, &zm, &err) < 0)
		return -1;
	tz = (int32_t)(zh * 60 + zm);
	if (sp[9] == '-')
		tz = -tz;
	*t_r = days * 86400 + (int64_t)(hh * 3600 + mm * 60 + ss) -
	    (int64_t)tz * 60;
	*tz_r = tz;
	return 0;
}

/* ---- COPY / MOVE ---- */

void
imap_append_uid_set(struct buf *out, const uint32_t *v, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		while (j + 1 < n && v[j + 1] == v[j] + 1)
			j++;
		if (i > 0)
			(void)buf_append_byte(out, ',');
		if (j > i)
			(void)buf_printf(out, "%u:%u", v[i], v[j]);
		else
			(void)buf_printf(out, "%u", v[i]);
		i = j + 1;
	}
}

static enum imap_cmd_result
do_copy(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid, int move)
{
	char name[STORE_MAILBOX_NAME_MAX + 1];
	struct store_mailbox_info info;
	struct store_uid_range *r = NULL;
	struct store_uid_map map;
	size_t nr = 0;
	const char *err;
	struct buf src, dst;
	int rc;

	if (n != 2 || args[0].type != IMAP_ARG_ATOM) {
		imap_tagged(s, "BAD", "%s needs a set and a mailbox",
		    move ? "MOVE" : "COPY");
		return IMAP_CMD_DONE;
	}
	if (move && s->mb.readonly) {
		imap_tagged(s, "NO", "[READ-ONLY] Mailbox is read-only");
		return IMAP_CMD_DONE;
	}
	if (imap_view_ranges(s, args[0].str, uid, &r, &nr, &err) < 0) {
		imap_tagged(s, "BAD", "%s", err);
		return IMAP_CMD_DONE;
	}
	if (imap_mailbox_name(s, &args[1], name, &err) < 0) {
		free(r);
		imap_tagged(s, "NO", "[CANNOT] %s", err);
		return IMAP_CMD_DONE;
	}
	rc = store_mailbox_get(s->w->store, s->user, name, &info, &err);
	if (rc < 0) {
		free(r);
		if (rc == STORE_ENOTFOUND)
			imap_tagged(s, "NO", "[TRYCREATE] No such mailbox");
		else
			imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	if (nr == 0) {
		free(r);
		imap_tagged(s, "OK", "%s completed, nothing to do",
		    move ? "MOVE" : "COPY");
		return IMAP_CMD_DONE;
	}
	memset(&map, 0, sizeof(map));
	rc = store_copy(s->w->store, s->mb.id, r, nr, info.id, move, &map,
	    &err);
	free(r);
	if (rc < 0) {
		imap_tagged_store_error(s, rc, err);
		return IMAP_CMD_DONE;
	}
	buf_init(&src, BUF_UNBOUNDED);
	buf_init(&dst, BUF_UNBOUNDED);
	imap_append_uid_set(&src, map.src, map.n);
	imap_append_uid_set(&dst, map.dst, map.n);
	if (map.n == 0)
		imap_tagged(s, "OK", "%s completed", move ? "MOVE" : "COPY");
	else if (move) {
		imap_printf(s, "* OK [COPYUID %u %s %s] Moved\r\n",
		    map.dst_uidvalidity, imap_bstr(&src), imap_bstr(&dst));
		imap_tagged(s, "OK", "MOVE completed");
	} else
		imap_tagged(s, "OK", "[COPYUID %u %s %s] COPY completed",
		    map.dst_uidvalidity, imap_bstr(&src), imap_bstr(&dst));
	buf_free(&src);
	buf_free(&dst);
	store_uid_map_free(&map);
	return IMAP_CMD_DONE;
}

enum imap_cmd_result
cmd_copy(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	return do_copy(s, args, n, uid, 0);
}

enum imap_cmd_result
cmd_move(struct imap_session *s, const struct imap_arg *args, size_t n,
    int uid)
{
	return do_copy(s, args, n, uid, 1);
}
