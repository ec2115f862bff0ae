/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * imagelock.c - keeping two programs from writing one image.
 *
 * A read-write mount, an fsck that repairs and a mkfs each write the
 * image as if they were alone; a second writer would put its own CPs over
 * the first one's.  Each takes an open file description lock on the
 * image (exclusive; read-only mounts take it shared), held by a
 * descriptor that stays open as long as the program uses the image.
 *
 * umount returns as soon as the kernel has let go of the mount, while
 * the daemon still writes its last CP; a mount, fsck or mkfs right after
 * it would find the image locked.  A holder that is no longer a mount's
 * source is such a daemon (or an fsck, or a mkfs), so image_lock waits
 * for it instead of failing; a holder that is still mounted is refused
 * at once.  fsck -n and twinfs-dump only read and take no lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imagelock.h"

/* /proc/self/mounts escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

bool image_mounted(const char *path)
{
	char *real = realpath(path, NULL);
	char line[2 * PATH_MAX], src[PATH_MAX];
	bool found = false;
	FILE *f = fopen("/proc/self/mounts", "re");

	while (f && real && !found && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%4095s", src) != 1)
			continue;
		unescape(src);
		found = strcmp(src, real) == 0;
	}
	if (f)
		fclose(f);
	free(real);
	return found;
}

int image_lock(const char *path, bool shared, int *fdp, const char *prog)
{
	struct flock fl = { .l_type = shared ? F_RDLCK : F_WRLCK,
			    .l_whence = SEEK_SET };
	struct timespec tick = { 0, 100 * 1000 * 1000 };
	int fd = open(path, (shared ? O_RDONLY : O_RDWR) | O_CLOEXEC), i;

	if (fd < 0)
		return -errno;
	for (i = 0; ; i++) {
		if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
			*fdp = fd;
			return 0;
		}
		if (errno != EAGAIN && errno != EACCES) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		if (image_mounted(path) || i == IMAGE_LOCK_WAIT_S * 10)
			break;
		if (i == 0)
			fprintf(stderr, "%s: %s: waiting for the program that "
				"has it open (a twinfs daemon finishing its "
				"last CP after umount?)\n", prog, path);
		nanosleep(&tick, NULL);
	}
	close(fd);
	return i < IMAGE_LOCK_WAIT_S * 10 ? -EBUSY : -ETIMEDOUT;
}
