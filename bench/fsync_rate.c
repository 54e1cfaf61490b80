/*
 * fsync_rate.c - the physical reference for durable-delivery benchmarks:
 * how many "append 4 KiB, fdatasync" cycles per second the disk under a
 * folder sustains, with 1 and N concurrent writers (each its own file).
 * A store that acknowledges more durable deliveries per second than this
 * must be sharing fsyncs (group commit) - or not syncing at all.
 *
 * Usage: fsync_rate DIR SECONDS [WRITERS]
 * Prints: fsync_rate writers=N seconds=S syncs=K rate=R/s
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "strnum.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long
writer(const char *dir, int idx, double seconds)
{
	char path[4096], block[4096];
	unsigned long n = 0;
	double end;
	int fd;

	snprintf(path, sizeof(path), "%s/fsync_rate.%d.%ld", dir, idx,
	    (long)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	memset(block, 'x', sizeof(block));
	end = now() + seconds;
	while (now() < end) {
		if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block)
		    || fdatasync(fd) != 0) {
			perror("write/fdatasync");
			exit(1);
		}
		n++;
	}
	close(fd);
	unlink(path);
	return n;
}

int
main(int argc, char **argv)
{
	uint64_t secs, writers = 1, i;
	unsigned long total = 0;
	const char *err;
	int fds[2];

	if (argc < 3 || strnum_u64(argv[2], 1, 3600, &secs, &err) < 0
	    || (argc > 3 && strnum_u64(argv[3], 1, 64, &writers, &err) < 0)) {
		fprintf(stderr, "usage: fsync_rate DIR SECONDS [WRITERS]\n");
		return 64;
	}
	if (pipe(fds) != 0)
		return 1;
	for (i = 0; i < writers; i++) {
		if (fork() == 0) {
			unsigned long n = writer(argv[1], (int)i, (double)secs);
			if (write(fds[1], &n, sizeof(n)) != (ssize_t)sizeof(n))
				_exit(1);
			_exit(0);
		}
	}
	close(fds[1]);
	for (i = 0; i < writers; i++) {
		unsigned long n;

		if (read(fds[0], &n, sizeof(n)) == (ssize_t)sizeof(n))
			total += n;
		wait(NULL);
	}
	printf("fsync_rate writers=%llu seconds=%llu syncs=%lu rate=%.0f/s\n",
	    (unsigned long long)writers, (unsigned long long)secs, total,
	    (double)total / (double)secs);
	return 0;
}
