/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuse_uring.h - FUSE requests over io_uring, one queue per CPU (see
 * fuse_uring.c). */
#ifndef TWINFS_FUSE_URING_H
#define TWINFS_FUSE_URING_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <sys/uio.h>

/* Once the kernel has taken FUSE_OVER_IO_URING in INIT: start the
 * per-CPU workers.  0, or -errno (requests then stay on /dev/fuse). */
int furing_start(struct fuse_session *se);
/* From the writev hook: if this thread runs a request that came by
 * io_uring and iov is its answer, keep it for the commit; true if so. */
bool furing_reply(const struct iovec *iov, int count);
/* Where this thread may build a reply of size bytes so that it needs no
 * copy (the entry's payload), or NULL: not an io_uring request, or too
 * big.  Valid until the reply is sent. */
void *furing_buffer(size_t size);
/* Every queue's entries are registered: requests come by io_uring. */
bool furing_ready(void);
/* End and join the workers (after the session loop, before fs_unmount). */
void furing_stop(void);

#endif
