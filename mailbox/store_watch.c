/*
 * store_watch.c - waiting for changes to mailboxes without polling.
 *
 * Runs in imapd (IDLE, and noticing other sessions' changes).  Writers
 * (store_env.c st_signal) write one byte to the bucket file of each changed
 * mailbox after commit: <store>/notify/<bucket>, bucket = id % 4096.  A
 * watcher creates the bucket files of the mailboxes it watches and waits on
 * them with inotify (IN_MODIFY); an event on a bucket means "any mailbox of
 * this bucket may have changed".  Trusts nothing but its own inotify fd.
 */
#include "autoconf.h"

#include <sys/inotify.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "xmalloc.h"
#include "mailbox_priv.h"

/* inotify events read per read() call. */
#define ST_WATCH_READ_BUF 8192

struct store_watch {
	int fd;
	char *dir;
	int wd[STORE_NOTIFY_BUCKETS];		/* -1: not watched */
	uint32_t refs[STORE_NOTIFY_BUCKETS];	/* watched ids per bucket */
	uint32_t *ids;				/* sorted, unique */
	size_t nids, cap;
};

int
store_watch_new(struct store *s, struct store_watch **watch_r,
    const char **error_r)
{
	struct store_watch *w;
	int i;

	*watch_r = NULL;
	w = xcalloc(1, sizeof(*w));
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd == -1) {
		log_warn("store: inotify_init1");
		free(w);
		if (error_r != NULL)
			*error_r = "cannot create an inotify instance";
		return STORE_ETEMP;
	}
	w->dir = xstrdup(s->notify_dir);
	for (i = 0; i < STORE_NOTIFY_BUCKETS; i++)
		w->wd[i] = -1;
	*watch_r = w;
	return 0;
}

void
store_watch_free(struct store_watch *w)
{
	if (w == NULL)
		return;
	(void)close(w->fd);
	free(w->dir);
	free(w->ids);
	free(w);
}

int
store_watch_fd(const struct store_watch *w)
{
	return w->fd;
}

/* Position of id in the sorted ids, or where it would go. */
static size_t
st_watch_find(const struct store_watch *w, uint32_t id)
{
	size_t lo = 0, hi = w->nids, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (w->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int
store_watch_add(struct store_watch *w, uint32_t id)
{
	char path[4096];
	unsigned b = id % STORE_NOTIFY_BUCKETS;
	size_t pos;
	int fd;

	pos = st_watch_find(w, id);
	if (pos < w->nids && w->ids[pos] == id)
		return 0;
	if (w->wd[b] == -1) {
		if (snprintf(path, sizeof(path), "%s/%03x", w->dir, b) >=
		    (int)sizeof(path))
			return STORE_EINVAL;
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		    0600);
		if (fd == -1) {
			log_warn("store: notify file %s", path);
			return STORE_ETEMP;
		}
		(void)close(fd);
		w->wd[b] = inotify_add_watch(w->fd, path, IN_MODIFY);
		if (w->wd[b] == -1) {
			log_warn("store: inotify_add_watch %s", path);
			return STORE_ETEMP;
		}
	}
	if (w->nids == w->cap) {
		w->cap = w->cap == 0 ? 16 : w->cap * 2;
		w->ids = xreallocarray(w->ids, w->cap, sizeof(*w->ids));
	}
	memmove(w->ids + pos + 1, w->ids + pos,
	    (w->nids - pos) * sizeof(*w->ids));
	w->ids[pos] = id;
	w->nids++;
	w->refs[b]++;
	return 0;
}

void
store_watch_remove(struct store_watch *w, uint32_t id)
{
	unsigned b = id % STORE_NOTIFY_BUCKETS;
	size_t pos;

	pos = st_watch_find(w, id);
	if (pos >= w->nids || w->ids[pos] != id)
		return;
	memmove(w->ids + pos, w->ids + pos + 1,
	    (w->nids - pos - 1) * sizeof(*w->ids));
	w->nids--;
	if (--w->refs[b] == 0 && w->wd[b] != -1) {
		(void)inotify_rm_watch(w->fd, w->wd[b]);
		w->wd[b] = -1;
	}
}

int
store_watch_read(struct store_watch *w, void (*cb)(uint32_t, void *),
    void *ctx)
{
	uint8_t hit[STORE_NOTIFY_BUCKETS / 8];
	char evbuf[ST_WATCH_READ_BUF]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	ssize_t n;
	size_t off, i;
	unsigned b;
	int any = 0, count = 0;

	memset(hit, 0, sizeof(hit));
	for (;;) {
		n = read(w->fd, evbuf, sizeof(evbuf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (off = 0; off + sizeof(*ev) <= (size_t)n;
		    off += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)(evbuf + off);
			if (ev->mask & IN_Q_OVERFLOW) {
				/* Lost events: everything may have changed. */
				memset(hit, 0xff, sizeof(hit));
				any = 1;
				continue;
			}
			if (!(ev->mask & IN_MODIFY))
				continue;
			for (b = 0; b < STORE_NOTIFY_BUCKETS; b++)
				if (w->wd[b] == ev->wd) {
					hit[b / 8] |= (uint8_t)(1U << (b % 8));
					any = 1;
					break;
				}
		}
	}
	if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
		log_warn("store: inotify read");
		return STORE_ETEMP;
	}
	if (!any)
		return 0;
	for (i = 0; i < w->nids; i++) {
		b = w->ids[i] % STORE_NOTIFY_BUCKETS;
		if (hit[b / 8] & (1U << (b % 8))) {
			cb(w->ids[i], ctx);
			count++;
		}
	}
	return count;
}
