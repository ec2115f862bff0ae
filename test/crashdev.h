/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * crashdev.h - a block device that records writes and flushes and then
 * produces the image a power cut would leave.
 *
 * The device wraps a copy of an image; reads see every write so far, so
 * the file system above runs normally.  Writes are kept in order with the
 * flushes between them.  cd_survivor(n) builds the image of a power cut
 * during write n (1-based): writes covered by a flush that returned
 * before write n are on disk; the writes after that flush, before write n,
 * were still in the volatile cache (kept or dropped by the policy); write
 * n itself is dropped or torn; nothing after it reaches the disk.  This
 * equals cutting the power live after write n, because nothing the file
 * system did before write n depends on what happens after it.
 */
#ifndef TWINFS_TEST_CRASHDEV_H
#define TWINFS_TEST_CRASHDEV_H

#include <stdint.h>

#include "bdev.h"
#include "harness.h"

/* What happens to unflushed writes issued before write n. */
enum cd_policy {
	CD_DROP_UNFLUSHED,   /* all lost (a volatile cache that never wrote) */
	CD_RANDOM_UNFLUSHED, /* each kept or lost at random (any reordering) */
	CD_KEEP_UNFLUSHED,   /* all kept, in order (write-through device) */
};

/* What happens to write n itself. */
enum cd_tear {
	CD_TEAR_DROP,        /* lost */
	CD_TEAR_PREFIX,      /* first 512 bytes new, the rest old */
	CD_TEAR_GARBAGE,     /* first 512 bytes new, the rest random */
	CD_TEAR_NONE,        /* written whole (the cut came just after it) */
};

struct crashdev;

/* Wrap a copy of base's current image (base is not used afterwards). */
struct crashdev *cd_new(struct bdev *base);
/* The device to mount; owned by cd. */
struct bdev *cd_bdev(struct crashdev *cd);
uint64_t cd_writes(struct crashdev *cd);   /* writes so far */
uint64_t cd_flushes(struct crashdev *cd);  /* flushes so far */
/* Writes made durable by the flushes so far (a prefix of all writes). */
uint64_t cd_durable(struct crashdev *cd);
/* Forget the recording: the current image becomes the starting image. */
void cd_reset(struct crashdev *cd);
/* A new memory device holding what survives a cut during write n
 * (1 <= n <= cd_writes(cd); n = cd_writes + 1 is a cut after the end,
 * with unflushed writes handled by policy). */
struct bdev *cd_survivor(struct crashdev *cd, uint64_t n,
			 enum cd_policy policy, enum cd_tear tear,
			 struct h_rng *rng);
void cd_free(struct crashdev *cd);

#endif
