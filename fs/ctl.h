/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ctl.h - the mount's control plane: a UNIX socket for twinfsctl and
 * SIGUSR1 (run a CP now), served by one libuv loop thread.  Start it
 * after the daemon has forked; stop it before fs_unmount.
 */
#ifndef TWINFS_CTL_H
#define TWINFS_CTL_H

#include "twinfs.h"

struct ctl;

int ctl_start(struct fs *fs, const char *mountpoint, const char *image,
	      struct ctl **out);
void ctl_stop(struct ctl *c);

#endif
