/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fuse_wire.h - FUSE protocol bits libfuse 3.14 does not expose (see
 * fuse_wire.c): FUSE_HANDLE_KILLPRIV_V2 and FUSE_WRITE_KILL_SUIDGID. */
#ifndef TWINFS_FUSE_WIRE_H
#define TWINFS_FUSE_WIRE_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>

/* After fuse_session_mount: route /dev/fuse through the shim; answer
 * INIT with FUSE_HANDLE_KILLPRIV_V2 if offered; with uring, take
 * FUSE_OVER_IO_URING if offered and start the per-CPU workers
 * (fuse_uring.c).  0 or -1 (libfuse logged why). */
int fwire_install(struct fuse_session *se, bool uring);
/* Requests come by io_uring. */
bool fwire_uring(void);
/* After the session loop, before the core goes: end the io_uring
 * workers. */
void fwire_stop(void);
/* The kernel took KILLPRIV_V2: clearing setuid/setgid and file
 * capabilities on write, truncate and chown is ours. */
bool fwire_killpriv_v2(void);
/* A request this thread is about to run, as /dev/fuse delivered it or
 * as fuse_uring.c put it back together: what fuse_wire keeps of it. */
void fwire_note_request(const void *buf, size_t n);
/* The WRITE this thread is running carried FUSE_WRITE_KILL_SUIDGID
 * (the writer lacks CAP_FSETID). */
bool fwire_write_kill_suidgid(void);

#endif
