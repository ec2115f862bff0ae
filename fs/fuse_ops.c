/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuse_ops.c - low-level FUSE: request in, one fs_* call, one reply out.
 * The only place besides serve.c that touches fuse_req_t.  Every op
 * replies exactly once; core errors are negative errno, replied as -rc.
 * Permissions are the kernel's (the mount always sets
 * default_permissions); read-only is the core's (EROFS).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>    /* RENAME_NOREPLACE, RENAME_EXCHANGE */
#include <stdlib.h>
#include <string.h>

#include "fuse_ops.h"
#include "fuse_uring.h"
#include "fuse_wire.h"

#define FH_SYNC   1u   /* opened O_SYNC / O_DSYNC */
#define FH_APPEND 2u   /* opened O_APPEND */
#define FH_NOATIME 4u  /* opened O_NOATIME */

static struct tfuse *tf(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fs_cred cred(fuse_req_t req)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct fs_cred cr = { c->uid, c->gid };

	return cr;
}

/* With FUSE_HANDLE_KILLPRIV_V2 (fuse_wire.c) a write, truncate or
 * fallocate drops the file's privileges here, not in the kernel.  The
 * kernel keeps the mode it cached across a write, so a change is told
 * to it (attributes only: offset -1 touches no page, which the writer
 * may hold locked). */
static int kill_priv(fuse_req_t req, fuse_ino_t ino, bool suidgid)
{
	bool changed;
	int rc;

	if (!fwire_killpriv_v2())
		return 0;
	rc = fs_kill_priv(tf(req)->fs, ino, suidgid, &changed);
	if (!rc && changed)
		fuse_lowlevel_notify_inval_inode(tf(req)->se, ino, -1, 0);
	return rc;
}

static void reply_entry(fuse_req_t req, int rc, const struct fs_attr *a)
{
	struct fuse_entry_param e;

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = a->ino;
	e.generation = a->gen;
	fs_attr_to_stat(a, &e.attr);
	e.attr_timeout = tf(req)->timeout;
	e.entry_timeout = tf(req)->timeout;
	if (fuse_reply_entry(req, &e))
		fs_forget(tf(req)->fs, a->ino, 1); /* the kernel never got it */
}

static void reply_attr(fuse_req_t req, int rc, const struct fs_attr *a)
{
	struct stat st;

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fs_attr_to_stat(a, &st);
	fuse_reply_attr(req, &st, tf(req)->timeout);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* the kernel page cache for writes is not used yet: every write
	 * reaches us in order, which the intent log relies on */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	/* O_TRUNC arrives as a setattr before the open */
	conn->want &= ~(unsigned)FUSE_CAP_ATOMIC_O_TRUNC;
	/* no lookup of "." / ".." by inode number for NFS export */
	conn->want &= ~(unsigned)FUSE_CAP_EXPORT_SUPPORT;
	/* KILLPRIV (v1) would have us clear setuid/setgid without being
	 * told the caller's CAP_FSETID; v2 says it per request and is
	 * negotiated by fuse_wire.c, which libfuse 3.14 cannot do */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	/* a spliced request would pass by fuse_wire.c's read hook; with no
	 * write_buf handler libfuse copied it out of the pipe anyway */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
				  FUSE_CAP_SPLICE_MOVE);
#ifdef FUSE_CAP_HANDLE_KILLPRIV_V2
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV_V2;
#endif
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs_attr a;
	int rc = fs_lookup(tf(req)->fs, parent, name, &a);

	if (rc == -ENOENT) {
		/* a negative entry: the kernel may remember the miss */
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.entry_timeout = tf(req)->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry(req, rc, &a);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_forget(tf(req)->fs, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		fs_forget(tf(req)->fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs_attr a;

	reply_attr(req, fs_getattr(tf(req)->fs, ino, &a), &a);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *st,
		       int to_set, struct fuse_file_info *fi)
{
	struct fs_setattr sa = { 0 };
	struct fs_attr a;

	if (to_set & FUSE_SET_ATTR_MODE) {
		sa.mask |= FS_SET_MODE;
		sa.mode = st->st_mode;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		sa.mask |= FS_SET_UID;
		sa.uid = st->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		sa.mask |= FS_SET_GID;
		sa.gid = st->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		sa.mask |= FS_SET_SIZE;
		sa.size = (uint64_t)st->st_size;
	}
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		sa.mask |= FS_SET_ATIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME) {
		sa.mask |= FS_SET_ATIME;
		sa.atime = st->st_atim;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		sa.mask |= FS_SET_MTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME) {
		sa.mask |= FS_SET_MTIME;
		sa.mtime = st->st_mtim;
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		sa.mask |= FS_SET_CTIME;
		sa.ctime = st->st_ctim;
	}
	/* KILLPRIV_V2: FATTR_KILL_SUIDGID (a chown, or a truncate without
	 * CAP_FSETID) arrives as bit 11, libfuse's FUSE_SET_ATTR_KILL_SUID;
	 * a truncate drops file capabilities whoever does it */
	if (fwire_killpriv_v2() && (to_set & FUSE_SET_ATTR_KILL_SUID))
		sa.mask |= FS_SET_KILL_SUIDGID;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		int rc = kill_priv(req, ino, false);
		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	reply_attr(req, fs_setattr(tf(req)->fs, ino, &sa, &a), &a);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	int rc = fs_readlink(tf(req)->fs, ino, buf, sizeof(buf));

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, buf);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct fs_cred cr = cred(req);
	struct fs_attr a;

	reply_entry(req, fs_mknod(tf(req)->fs, parent, name, mode, rdev, &cr,
				  &a), &a);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct fs_cred cr = cred(req);
	struct fs_attr a;

	reply_entry(req, fs_mknod(tf(req)->fs, parent, name,
				  S_IFDIR | (mode & 07777), 0, &cr, &a), &a);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -fs_unlink(tf(req)->fs, parent, name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -fs_rmdir(tf(req)->fs, parent, name));
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct fs_cred cr = cred(req);
	struct fs_attr a;

	reply_entry(req, fs_symlink(tf(req)->fs, parent, name, link, &cr, &a),
		    &a);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	/* RENAME_WHITEOUT and anything newer are not ours */
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    flags == (RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_err(req, -fs_rename(tf(req)->fs, parent, name, newparent,
				       newname, flags));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct fs_attr a;

	reply_entry(req, fs_link(tf(req)->fs, ino, newparent, newname, &a), &a);
}

static uint64_t fh_flags(int flags)
{
	uint64_t fh = 0;

	if (flags & (O_SYNC | O_DSYNC))
		fh |= FH_SYNC;
	if (flags & O_APPEND)
		fh |= FH_APPEND;
	if (flags & O_NOATIME)
		fh |= FH_NOATIME;
	return fh;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int rc = fs_open(tf(req)->fs, ino, false);

	if (!rc && ((fi->flags & O_ACCMODE) != O_RDONLY ||
		    (fi->flags & O_TRUNC)) &&
	    fs_ino_readonly(tf(req)->fs, ino))
		rc = -EROFS;
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = fh_flags(fi->flags);
	/* Every change to a file goes through this mount, so what the
	 * kernel cached stays right across opens; a rollback invalidates
	 * it (fs_opts.inval). */
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct fs_cred cr = cred(req);
	struct fuse_entry_param e;
	struct fs_attr a;
	int rc = fs_create(tf(req)->fs, parent, name, mode,
			   (fi->flags & O_EXCL) != 0, &cr, &a);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = a.ino;
	e.generation = a.gen;
	fs_attr_to_stat(&a, &e.attr);
	e.attr_timeout = tf(req)->timeout;
	e.entry_timeout = tf(req)->timeout;
	fi->fh = fh_flags(fi->flags);
	fi->keep_cache = 1;
	if (fuse_reply_create(req, &e, fi))
		fs_forget(tf(req)->fs, a.ino, 1);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	/* over io_uring, straight into the entry's reply buffer */
	char *ring = furing_buffer(size);
	char *buf = ring ? ring : malloc(size ? size : 1);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = fs_read(tf(req)->fs, ino, buf, size, (uint64_t)off,
		    fi->fh & FH_NOATIME ? FS_READ_NOATIME : 0);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	if (!ring)
		free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	unsigned flags = 0;
	ssize_t n;

	if (fi->fh & FH_SYNC)
		flags |= FS_WRITE_SYNC;
	if (fi->fh & FH_APPEND)
		flags |= FS_WRITE_APPEND;
	n = kill_priv(req, ino, fwire_write_kill_suidgid());
	if (!n)
		n = fs_write(tf(req)->fs, ino, buf, size, (uint64_t)off, flags);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

/* release and releasedir: nothing is held per open file.  No flush
 * handler: libfuse answers ENOSYS and the kernel stops sending FLUSH on
 * every close (a round trip per file in cp -a). */
static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	fuse_reply_err(req, -fs_fsync(tf(req)->fs, ino, datasync != 0));
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	int rc = fs_open(tf(req)->fs, ino, true);

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_open(req, fi);
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, len;
};

static int fill_dir(void *ctx, const char *name, uint64_t ino,
		    unsigned dtype, uint64_t next)
{
	struct dirbuf *d = ctx;
	struct stat st;
	size_t need;

	memset(&st, 0, sizeof(st));
	st.st_ino = ino;
	st.st_mode = dtype << 12;
	need = fuse_add_direntry(d->req, NULL, 0, name, NULL, 0);
	if (d->len + need > d->size)
		return 1;
	fuse_add_direntry(d->req, d->buf + d->len, d->size - d->len, name,
			  &st, (off_t)next);
	d->len += need;
	return 0;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	struct dirbuf d = { req, malloc(size ? size : 1), size, 0 };
	int rc;

	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = fs_readdir(tf(req)->fs, ino, (uint64_t)off, fill_dir, &d);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, d.buf, d.len);
	free(d.buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int rc = fs_statfs(tf(req)->fs, &st);

	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &st);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	fuse_reply_err(req, -fs_setxattr(tf(req)->fs, ino, name, value, size,
					 flags));
}

/* get and list: size 0 asks for the size, otherwise the bytes */
static void reply_xattr(fuse_req_t req, ssize_t n, const char *buf,
			size_t size)
{
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	char *buf = size ? malloc(size) : NULL;

	if (size && !buf)
		fuse_reply_err(req, ENOMEM);
	else
		reply_xattr(req, fs_getxattr(tf(req)->fs, ino, name, buf, size),
			    buf, size);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;

	if (size && !buf)
		fuse_reply_err(req, ENOMEM);
	else
		reply_xattr(req, fs_listxattr(tf(req)->fs, ino, buf, size),
			    buf, size);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -fs_removexattr(tf(req)->fs, ino, name));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			 off_t offset, off_t length, struct fuse_file_info *fi)
{
	int rc;

	if (offset < 0 || length <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* the request does not say whether the caller has CAP_FSETID;
	 * root is taken to have it */
	rc = kill_priv(req, ino, fuse_req_ctx(req)->uid != 0);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fuse_reply_err(req, -fs_fallocate(tf(req)->fs, ino, mode,
					  (uint64_t)offset, (uint64_t)length));
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	int64_t r;

	if (off < 0) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	r = fs_lseek(tf(req)->fs, ino, (uint64_t)off, whence);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_lseek(req, (off_t)r);
}

void tfuse_inval(void *arg, uint64_t ino)
{
	struct tfuse *t = arg;

	if (t->se)
		fuse_lowlevel_notify_inval_inode(t->se, ino, 0, 0);
}

void tfuse_inval_entry(void *arg, uint64_t dir, const char *name)
{
	struct tfuse *t = arg;

	if (t->se)
		fuse_lowlevel_notify_inval_entry(t->se, dir, name,
						 strlen(name));
}

const struct fuse_lowlevel_ops tfuse_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_release,
	.fsyncdir = op_fsync,  /* the log covers directories too */
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
};
