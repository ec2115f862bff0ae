/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuse_wire.c - what libfuse 3.14 (Debian 12) cannot say, said on the wire.
 *
 * FUSE_HANDLE_KILLPRIV_V2 makes the file system, not the kernel, clear
 * setuid/setgid and security.capability on write, truncate and chown.
 * The kernel then marks the superblock SB_NOSEC and stops sending a
 * GETXATTR security.capability before every write system call: one
 * round trip per write instead of two.  libfuse 3.14 has no FUSE_CAP_ for
 * it and hides the per-write FUSE_WRITE_KILL_SUIDGID flag, so this module
 * sits between libfuse and /dev/fuse (fuse_session_custom_io):
 *
 *  - read: every request passes through; the INIT request's flags tell
 *    whether the kernel offers KILLPRIV_V2, and a WRITE's write_flags are
 *    kept per thread (libfuse's worker that read a request also runs it,
 *    so op_write asks fwire_write_kill_suidgid() in the same thread);
 *  - writev: the INIT reply gets FUSE_HANDLE_KILLPRIV_V2 added to its
 *    flags when the kernel offered it.
 *
 * SETATTR needs nothing here: FATTR_KILL_SUIDGID is bit 11, which libfuse
 * passes on as FUSE_SET_ATTR_KILL_SUID.  Splice reads would bypass the
 * read hook; fuse_ops.c turns them off (it has no write_buf, so they
 * saved nothing).
 *
 * Everything read is from the kernel, but is still checked for length
 * before a field is looked at; a short or odd message is passed on
 * untouched for libfuse to judge.
 */
#include <errno.h>
#include <linux/fuse.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuse_uring.h"
#include "fuse_wire.h"

#ifndef FUSE_INIT_EXT
#define FUSE_INIT_EXT (1u << 30)
#endif
/* FUSE_OVER_IO_URING is bit 41 of the 64-bit flags: bit 9 of flags2 */
#define OVER_IO_URING_FLAGS2 (1u << 9)

static _Thread_local bool t_write_kill;   /* last WRITE read by this thread */
static atomic_bool offered;               /* kernel offered KILLPRIV_V2 */
static atomic_bool negotiated;            /* and our INIT reply took it */
static atomic_bool uring_offered;         /* kernel offered io_uring */
static _Atomic uint64_t init_unique;      /* the INIT request's id, or 0 */
static bool uring;                        /* io_uring if offered */
static struct fuse_session *session;

void fwire_note_request(const void *buf, size_t n)
{
	const struct fuse_in_header *h = buf;

	t_write_kill = false;
	if (n < sizeof(*h))
		return;
	if (h->opcode == FUSE_WRITE &&
	    n >= sizeof(*h) + sizeof(struct fuse_write_in)) {
		const struct fuse_write_in *w = (const void *)(h + 1);
		t_write_kill = (w->write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
	} else if (h->opcode == FUSE_INIT &&
		   n >= sizeof(*h) + offsetof(struct fuse_init_in, flags) + 4) {
		const struct fuse_init_in *in = (const void *)(h + 1);
		atomic_store(&offered,
			     (in->flags & FUSE_HANDLE_KILLPRIV_V2) != 0);
		atomic_store(&uring_offered,
			     (in->flags & FUSE_INIT_EXT) &&
			     n >= sizeof(*h) + offsetof(struct fuse_init_in,
							 flags2) + 4 &&
			     (in->flags2 & OVER_IO_URING_FLAGS2));
		atomic_store(&init_unique, h->unique);
	}
}

static ssize_t wire_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	(void)userdata;
	fwire_note_request(buf, n > 0 ? (size_t)n : 0);
	return n;
}

static ssize_t wire_writev(int fd, struct iovec *iov, int count,
			   void *userdata)
{
	uint64_t iu = atomic_load(&init_unique);
	const struct fuse_out_header *h;
	struct fuse_init_out out;
	struct iovec v[8];
	bool use_uring = false;
	ssize_t n;

	(void)userdata;
	if (furing_reply(iov, count)) {
		size_t len = 0;
		for (int i = 0; i < count; i++)
			len += iov[i].iov_len;
		return (ssize_t)len;
	}
	if (!iu || count < 2 || count > 8 ||
	    iov[0].iov_len != sizeof(*h))
		return writev(fd, iov, count);
	h = iov[0].iov_base;
	if (h->unique != iu)
		return writev(fd, iov, count);
	atomic_store(&init_unique, 0);
	if (h->error || iov[1].iov_len < offsetof(struct fuse_init_out, flags) + 4 ||
	    iov[1].iov_len > sizeof(out))
		return writev(fd, iov, count);
	/* a patched copy: libfuse's reply stays as it built it */
	memcpy(v, iov, sizeof(*iov) * (size_t)count);
	memcpy(&out, iov[1].iov_base, iov[1].iov_len);
	v[1].iov_base = &out;
	if (atomic_load(&offered)) {
		out.flags |= FUSE_HANDLE_KILLPRIV_V2;
		atomic_store(&negotiated, true);
	}
	if (uring && atomic_load(&uring_offered) &&
	    iov[1].iov_len >= offsetof(struct fuse_init_out, flags2) + 4) {
		out.flags |= FUSE_INIT_EXT;
		out.flags2 |= OVER_IO_URING_FLAGS2;
		use_uring = true;
	}
	n = writev(fd, v, count);
	/* the kernel has taken the INIT reply when writev returns: the
	 * io_uring entries may register now */
	if (n > 0 && use_uring)
		furing_start(session);   /* failing: /dev/fuse it stays */
	return n;
}

int fwire_install(struct fuse_session *se, bool use_uring)
{
	static const struct fuse_custom_io io = {
		.read = wire_read,
		.writev = wire_writev,
	};

	uring = use_uring;
	session = se;
	return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

bool fwire_uring(void)
{
	return furing_ready();
}

void fwire_stop(void)
{
	furing_stop();   /* nothing when it never started */
}

bool fwire_killpriv_v2(void)
{
	return atomic_load(&negotiated);
}

bool fwire_write_kill_suidgid(void)
{
	return t_write_kill;
}
