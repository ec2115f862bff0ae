/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuse_ops.h - the low-level FUSE front end of the twinfs mount. */
#ifndef TWINFS_FUSE_OPS_H
#define TWINFS_FUSE_OPS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "twinfs.h"

struct tfuse {
	struct fs *fs;
	struct fuse_session *se;
	double timeout;            /* entry and attribute cache, seconds */
};

extern const struct fuse_lowlevel_ops tfuse_ops;

/* fs_opts.inval: drop the kernel's cache of an inode (after rollback). */
void tfuse_inval(void *arg, uint64_t ino);
void tfuse_inval_entry(void *arg, uint64_t dir, const char *name);

#endif
