/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imagelock.h - who else has an image: the mount table and a lock (see
 * imagelock.c). */
#ifndef TWINFS_IMAGELOCK_H
#define TWINFS_IMAGELOCK_H

#include <stdbool.h>

/* How long image_lock waits for a holder that is not mounted (a daemon
 * finishing its last CP after umount, or an fsck): seconds. */
#define IMAGE_LOCK_WAIT_S 60

/* Is path (a file or block device) the source of a mount? */
bool image_mounted(const char *path);

/* Lock the image: shared (read-only mounts) or exclusive (read-write
 * mounts, fsck that writes, mkfs).  A holder whose image is no longer
 * mounted is waited for, up to IMAGE_LOCK_WAIT_S, saying so once on
 * stderr as prog.  0 and *fdp (keep it open while the image is in use;
 * closing it unlocks); -EBUSY if the image is mounted, -ETIMEDOUT if
 * still held after the wait, -errno if it cannot be opened. */
int image_lock(const char *path, bool shared, int *fdp, const char *prog);

#endif
