/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ops.c - the fs_* operations.
 *
 * Every change is first encoded as an intent-log record, then applied by
 * decoding that same record (op_exec -> ops_replay -> apply_*), and
 * appended to the log only if it applied.  Replay after a crash runs the
 * very same apply_* code on the same records, so live and replayed
 * results cannot drift apart.  Times and inode numbers are decided here
 * and carried in the record; apply_* never reads the clock.
 *
 * Each apply_* checks everything that can fail before it changes
 * anything, so a failed operation leaves no trace (space was reserved
 * beforehand by op_begin).
 *
 * Locking: see fs_impl.h.  Every fs_* takes fs->lock for its whole
 * duration; fsync waits for the log after dropping it.  Permissions are
 * checked by the kernel (the mount always uses default_permissions);
 * read-only is checked once, in op_begin.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/xattr.h>

#include "fs_impl.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE  (1 << 1)
#endif

struct timespec fs_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return t;
}

/* ---- record encoding ---------------------------------------------------- */

struct rec {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void rec_put(struct rec *r, const void *v, size_t n)
{
	if (r->err)
		return;
	if (r->len + n > r->cap) {
		size_t cap = r->cap ? r->cap : 256;
		uint8_t *np;
		while (cap < r->len + n)
			cap *= 2;
		np = realloc(r->p, cap);
		if (!np) {
			r->err = -ENOMEM;
			return;
		}
		r->p = np;
		r->cap = cap;
	}
	memcpy(r->p + r->len, v, n);
	r->len += n;
}

static void w64(struct rec *r, uint64_t x)
{
	le64 v = put64(x);
	rec_put(r, &v, 8);
}

static void wts(struct rec *r, struct timespec t)
{
	w64(r, (uint64_t)t.tv_sec);
	w64(r, (uint64_t)t.tv_nsec);
}

static void wbytes(struct rec *r, const void *p, size_t n)
{
	w64(r, n);
	rec_put(r, p, n);
}

static void wstr(struct rec *r, const char *s)
{
	wbytes(r, s, strlen(s));
}

/* A record in p (cap bytes; NULL: out of memory, reported at op_exec). */
static void rec_begin_buf(struct rec *r, unsigned type, uint8_t *p,
			  size_t cap)
{
	struct tfs_logrec h = { put16((uint16_t)type), put16(0), put32(0) };

	memset(r, 0, sizeof(*r));
	r->p = p;
	r->cap = p ? cap : 0;
	if (!p)
		r->err = -ENOMEM;
	rec_put(r, &h, sizeof(h));
}

static void rec_begin(struct rec *r, unsigned type)
{
	rec_begin_buf(r, type, malloc(256), 256);
}

struct rd {
	const uint8_t *p;
	size_t len, off;
	int err;
};

static uint64_t r64(struct rd *d)
{
	le64 v;

	if (d->err || d->len - d->off < 8) {
		d->err = -EUCLEAN;
		return 0;
	}
	memcpy(&v, d->p + d->off, 8);
	d->off += 8;
	return get64(v);
}

static struct timespec rts(struct rd *d)
{
	struct timespec t;

	t.tv_sec = (time_t)r64(d);
	t.tv_nsec = (long)r64(d);
	if (t.tv_nsec < 0 || t.tv_nsec >= 1000000000)
		d->err = -EUCLEAN;
	return t;
}

static const uint8_t *rbytes(struct rd *d, size_t *n)
{
	uint64_t len = r64(d);
	const uint8_t *p;

	if (d->err || len > d->len - d->off) {
		d->err = -EUCLEAN;
		*n = 0;
		return NULL;
	}
	p = d->p + d->off;
	d->off += len;
	*n = (size_t)len;
	return p;
}

/* A NUL-terminated copy of a string field, at most max bytes. */
static void rstr(struct rd *d, char *out, size_t max)
{
	size_t n;
	const uint8_t *p = rbytes(d, &n);

	if (!d->err && (n > max || memchr(p, 0, n)))
		d->err = -EUCLEAN;
	if (d->err) {
		out[0] = 0;
		return;
	}
	memcpy(out, p, n);
	out[n] = 0;
}

/* ---- helpers ---------------------------------------------------------- */

static unsigned dtype_of(mode_t mode)
{
	return (mode >> 12) & 15; /* DT_* equals S_IFMT >> 12 */
}

static void set_times(struct tfs_dinode *d, unsigned which,
		      struct timespec t)
{
	if (which & 1)
		ts_put(&d->i_mtime, &d->i_mtime_ns, t);
	if (which & 2)
		ts_put(&d->i_ctime, &d->i_ctime_ns, t);
	if (which & 4)
		ts_put(&d->i_atime, &d->i_atime_ns, t);
}

/* Change a directory's times after its entries changed. */
static int dir_changed(struct fs *fs, uint64_t dir, struct timespec t)
{
	struct tfs_dinode *d;
	int rc = inode_get(fs, dir, &d);

	if (rc)
		return rc;
	set_times(d, 3, t);
	inode_touch(fs, dir);
	return 0;
}

static int name_check(uint64_t parent, const char *name)
{
	size_t n = strlen(name);

	if (ino_readonly(parent))
		return -EROFS;
	if (parent == TFS_INO_ROOT && !strcmp(name, ".snapshot"))
		return -EEXIST;

	if (n == 0)
		return -ENOENT;
	if (n > TFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (strchr(name, '/'))
		return -EINVAL;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return -EEXIST;
	return 0;
}

/* An inode whose last link went: park it among the orphans while it is
 * referenced (or while replaying: references are unknown until the end),
 * free it otherwise. */
static int drop_inode(struct fs *fs, uint64_t ino)
{
	struct inode *in = inode_ref(fs, ino, false);
	char name[32];

	if (fs->replaying || (in && in->nlookup)) {
		snprintf(name, sizeof(name), "%llx", (unsigned long long)ino);
		return dir_insert(fs, TFS_INO_ORPHANS, name, ino, DT_REG);
	}
	return inode_free(fs, ino);
}

static bool dir_empty(struct tfs_dinode *d)
{
	return get64(d->i_nentries) == 0;
}

/* ---- apply: one function per record type ------------------------------ */

static int apply_create(struct fs *fs, struct rd *r)
{
	uint64_t parent = r64(r), ino = r64(r), mode = r64(r), uid = r64(r);
	uint64_t gid = r64(r), rdev = r64(r), dummy;
	struct timespec t = rts(r);
	char name[TFS_NAME_MAX + 1], target[TFS_SYMLINK_MAX + 1];
	struct tfs_dinode *d, *pd;
	int rc;

	rstr(r, name, TFS_NAME_MAX);
	rstr(r, target, TFS_SYMLINK_MAX);
	if (r->err)
		return r->err;
	rc = inode_get(fs, parent, &pd);
	if (rc)
		return rc;
	if (!S_ISDIR(get32(pd->i_mode)))
		return -ENOTDIR;
	if (get32(pd->i_nlink) == 0)
		return -ENOENT;           /* a removed directory */
	if (S_ISDIR(mode) && get32(pd->i_nlink) >= TFS_LINK_MAX)
		return -EMLINK;
	rc = dir_lookup(fs, parent, name, &dummy, NULL);
	if (rc != -ENOENT)
		return rc ? rc : -EEXIST;
	if (ino < TFS_INO_FIRST || ino > TFS_MAX_INO)
		return -EUCLEAN;
	rc = inode_alloc(fs, ino, (mode_t)mode);
	if (!rc)
		rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	d->i_nlink = put32(S_ISDIR(mode) ? 2 : 1);
	d->i_uid = put32((uint32_t)uid);
	d->i_gid = put32((uint32_t)gid);
	d->i_rdev = put64(rdev);
	d->i_parent = put64(parent);
	set_times(d, 7, t);
	ts_put(&d->i_btime, &d->i_btime_ns, t);
	if (S_ISDIR(mode))
		rc = dir_init(fs, ino, parent);
	if (!rc && S_ISLNK(mode)) {
		size_t n = strlen(target);
		rc = file_write(fs, ino, target, n, 0);
		if (!rc && !(rc = inode_get(fs, ino, &d)))
			d->i_size = put64(n);
	}
	if (!rc)
		rc = dir_insert(fs, parent, name, ino, dtype_of((mode_t)mode));
	if (!rc && S_ISDIR(mode) && !(rc = inode_get(fs, parent, &pd))) {
		pd->i_nlink = put32(get32(pd->i_nlink) + 1);
		inode_touch(fs, parent);
	}
	if (!rc)
		rc = dir_changed(fs, parent, t);
	return rc;
}

static int apply_link(struct fs *fs, struct rd *r)
{
	uint64_t ino = r64(r), parent = r64(r), dummy;
	struct timespec t = rts(r);
	char name[TFS_NAME_MAX + 1];
	struct tfs_dinode *d, *pd;
	int rc;

	rstr(r, name, TFS_NAME_MAX);
	if (r->err)
		return r->err;
	rc = inode_get(fs, parent, &pd);
	if (rc)
		return rc;
	if (!S_ISDIR(get32(pd->i_mode)))
		return -ENOTDIR;
	if (get32(pd->i_nlink) == 0)
		return -ENOENT;
	rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	if (S_ISDIR(get32(d->i_mode)))
		return -EPERM;
	if (get32(d->i_nlink) >= TFS_LINK_MAX)
		return -EMLINK;
	if (get32(d->i_nlink) == 0)
		return -ENOENT;
	rc = dir_lookup(fs, parent, name, &dummy, NULL);
	if (rc != -ENOENT)
		return rc ? rc : -EEXIST;
	rc = dir_insert(fs, parent, name, ino, dtype_of(get32(d->i_mode)));
	if (!rc)
		rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	d->i_nlink = put32(get32(d->i_nlink) + 1);
	set_times(d, 2, t);
	inode_touch(fs, ino);
	return dir_changed(fs, parent, t);
}

/* Remove the link `name` -> ino from parent (entry already gone). */
static int unlink_inode(struct fs *fs, uint64_t parent, uint64_t ino,
			struct timespec t)
{
	struct tfs_dinode *d, *pd;
	int rc = inode_get(fs, ino, &d);

	if (rc)
		return rc;
	if (S_ISDIR(get32(d->i_mode))) {
		d->i_nlink = put32(0);
		rc = inode_get(fs, parent, &pd);
		if (rc)
			return rc;
		pd->i_nlink = put32(get32(pd->i_nlink) - 1);
		inode_touch(fs, parent);
		rc = inode_get(fs, ino, &d);
		if (rc)
			return rc;
	} else {
		d->i_nlink = put32(get32(d->i_nlink) - 1);
	}
	set_times(d, 2, t);
	inode_touch(fs, ino);
	if (get32(d->i_nlink) == 0)
		return drop_inode(fs, ino);
	return 0;
}

static int apply_unlink(struct fs *fs, struct rd *r)
{
	uint64_t parent = r64(r), isdir = r64(r), ino;
	struct timespec t = rts(r);
	char name[TFS_NAME_MAX + 1];
	struct tfs_dinode *d;
	int rc;

	rstr(r, name, TFS_NAME_MAX);
	if (r->err)
		return r->err;
	if (!strcmp(name, "."))
		return isdir ? -EINVAL : -EISDIR;
	if (!strcmp(name, ".."))
		return isdir ? -ENOTEMPTY : -EISDIR;
	rc = dir_lookup(fs, parent, name, &ino, NULL);
	if (!rc)
		rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	if (isdir && !S_ISDIR(get32(d->i_mode)))
		return -ENOTDIR;
	if (!isdir && S_ISDIR(get32(d->i_mode)))
		return -EISDIR;
	if (isdir && !dir_empty(d))
		return -ENOTEMPTY;
	rc = dir_remove(fs, parent, name);
	if (!rc)
		rc = dir_changed(fs, parent, t);
	if (!rc)
		rc = unlink_inode(fs, parent, ino, t);
	return rc;
}

/* Is dir `anc` the directory `ino` or one of its ancestors? */
static int is_ancestor(struct fs *fs, uint64_t anc, uint64_t ino)
{
	for (unsigned depth = 0; depth < 100000; depth++) {
		struct tfs_dinode *d;
		int rc;
		if (ino == anc)
			return 1;
		if (ino == TFS_INO_ROOT)
			return 0;
		rc = inode_get(fs, ino, &d);
		if (rc)
			return rc;
		ino = get64(d->i_parent);
	}
	return fs_corrupt("directory loop above inode %llu",
			  (unsigned long long)ino);
}

static int set_parent(struct fs *fs, uint64_t dir, uint64_t from,
		      uint64_t to)
{
	struct tfs_dinode *d;
	int rc;

	if (from == to)
		return 0;
	rc = inode_get(fs, dir, &d);
	if (rc)
		return rc;
	d->i_parent = put64(to);
	inode_touch(fs, dir);
	if ((rc = inode_get(fs, from, &d)))
		return rc;
	d->i_nlink = put32(get32(d->i_nlink) - 1);
	inode_touch(fs, from);
	if ((rc = inode_get(fs, to, &d)))
		return rc;
	d->i_nlink = put32(get32(d->i_nlink) + 1);
	inode_touch(fs, to);
	return 0;
}

static int touch_c(struct fs *fs, uint64_t ino, struct timespec t)
{
	struct tfs_dinode *d;
	int rc = inode_get(fs, ino, &d);

	if (!rc) {
		set_times(d, 2, t);
		inode_touch(fs, ino);
	}
	return rc;
}

static int apply_rename(struct fs *fs, struct rd *r)
{
	uint64_t p = r64(r), np = r64(r), flags = r64(r), sino, dino = 0;
	struct timespec t = rts(r);
	char name[TFS_NAME_MAX + 1], newname[TFS_NAME_MAX + 1];
	struct tfs_dinode *sd, *dd = NULL, *npd;
	bool sdir, ddir = false;
	unsigned stype, dtype = 0;
	int rc;

	rstr(r, name, TFS_NAME_MAX);
	rstr(r, newname, TFS_NAME_MAX);
	if (r->err)
		return r->err;
	if (flags & ~(uint64_t)(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE))
		return -EINVAL;
	if (!strcmp(name, ".") || !strcmp(name, "..") ||
	    !strcmp(newname, ".") || !strcmp(newname, ".."))
		return -EBUSY;
	rc = inode_get(fs, np, &npd);
	if (rc)
		return rc;
	if (!S_ISDIR(get32(npd->i_mode)))
		return -ENOTDIR;
	rc = dir_lookup(fs, p, name, &sino, &stype);
	if (!rc)
		rc = inode_get(fs, sino, &sd);
	if (rc)
		return rc;
	sdir = S_ISDIR(get32(sd->i_mode));
	rc = dir_lookup(fs, np, newname, &dino, &dtype);
	if (rc && rc != -ENOENT)
		return rc;
	if (!rc) {
		if ((rc = inode_get(fs, dino, &dd)))
			return rc;
		ddir = S_ISDIR(get32(dd->i_mode));
	} else {
		dino = 0;
		if (flags & RENAME_EXCHANGE)
			return -ENOENT;
	}
	if (dino && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (dino == sino)
		return 0; /* same inode (or same entry): nothing to do */
	if (get32(npd->i_nlink) == 0)
		return -ENOENT;
	if (sdir && p != np && (rc = is_ancestor(fs, sino, np)) != 0)
		return rc < 0 ? rc : -EINVAL;
	if (flags & RENAME_EXCHANGE) {
		if (ddir && p != np && (rc = is_ancestor(fs, dino, p)) != 0)
			return rc < 0 ? rc : -EINVAL;
		rc = dir_set(fs, p, name, dino, dtype);
		if (!rc)
			rc = dir_set(fs, np, newname, sino, stype);
		if (!rc && sdir)
			rc = set_parent(fs, sino, p, np);
		if (!rc && ddir)
			rc = set_parent(fs, dino, np, p);
		goto times;
	}
	if (dino) {
		if (sdir && !ddir)
			return -ENOTDIR;
		if (!sdir && ddir)
			return -EISDIR;
		if (ddir && !dir_empty(dd))
			return -ENOTEMPTY;
	} else if (sdir && p != np && get32(npd->i_nlink) >= TFS_LINK_MAX) {
		return -EMLINK;
	}
	if (dino) {
		rc = dir_set(fs, np, newname, sino, stype);
		if (!rc)
			rc = unlink_inode(fs, np, dino, t);
	} else {
		rc = dir_insert(fs, np, newname, sino, stype);
	}
	if (!rc)
		rc = dir_remove(fs, p, name);
	if (!rc && sdir)
		rc = set_parent(fs, sino, p, np);
	if (!rc && !sdir && !(rc = inode_get(fs, sino, &sd))) {
		sd->i_parent = put64(np);  /* where diff finds its name */
		inode_touch(fs, sino);
	}
times:
	if (!rc)
		rc = dir_changed(fs, p, t);
	if (!rc && np != p)
		rc = dir_changed(fs, np, t);
	if (!rc)
		rc = touch_c(fs, sino, t);
	if (!rc && dino && (flags & RENAME_EXCHANGE))
		rc = touch_c(fs, dino, t);
	return rc;
}

/* The mode a write by a caller without CAP_FSETID leaves: no setuid, and
 * no setgid where it grants a group (group-executable). */
static uint32_t mode_killed(uint32_t m)
{
	m &= ~(uint32_t)S_ISUID;
	if ((m & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		m &= ~(uint32_t)S_ISGID;
	return m;
}

static int apply_setattr(struct fs *fs, struct rd *r)
{
	uint64_t ino = r64(r), mask = r64(r), mode = r64(r), uid = r64(r);
	uint64_t gid = r64(r), size = r64(r);
	struct timespec at = rts(r), mt = rts(r), ct = rts(r);
	struct tfs_dinode *d;
	int rc;

	if (r->err)
		return r->err;
	rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	if (mask & FS_SET_SIZE) {
		uint64_t old = get64(d->i_size);
		if (S_ISDIR(get32(d->i_mode)))
			return -EISDIR;
		if (!S_ISREG(get32(d->i_mode)))
			return -EINVAL;
		if (size > (1ull << 52))
			return -EFBIG;
		if (size < old) {
			rc = file_truncate(fs, ino, size);
			if (!rc)
				rc = inode_get(fs, ino, &d);
			if (rc)
				return rc;
		}
		d->i_size = put64(size);
		if (!(mask & FS_SET_MTIME))
			set_times(d, 1, ct);
	}
	if (mask & FS_SET_MODE)
		d->i_mode = put32((get32(d->i_mode) & S_IFMT) |
				  ((uint32_t)mode & 07777));
	if ((mask & FS_SET_KILL_SUIDGID) && !S_ISDIR(get32(d->i_mode)))
		d->i_mode = put32(mode_killed(get32(d->i_mode)));
	if (mask & FS_SET_UID)
		d->i_uid = put32((uint32_t)uid);
	if (mask & FS_SET_GID)
		d->i_gid = put32((uint32_t)gid);
	if (mask & FS_SET_ATIME)
		set_times(d, 4, at);
	if (mask & FS_SET_MTIME)
		set_times(d, 1, mt);
	set_times(d, 2, ct);
	inode_touch(fs, ino);
	return 0;
}

static int reg_get(struct fs *fs, uint64_t ino, struct tfs_dinode **d)
{
	int rc = inode_get(fs, ino, d);

	if (rc)
		return rc;
	if (S_ISDIR(get32((*d)->i_mode)))
		return -EISDIR;
	if (!S_ISREG(get32((*d)->i_mode)))
		return -EINVAL;
	return 0;
}

/* The write itself, from a record (replay, the live path) or straight
 * from the caller's buffer (fs_write when the log keeps no bytes). */
static int write_apply(struct fs *fs, uint64_t ino, uint64_t off,
		       struct timespec t, const void *data, size_t n)
{
	struct tfs_dinode *d;
	int rc = reg_get(fs, ino, &d);

	if (rc)
		return rc;
	if (off + n > (1ull << 52) || off + n < off)
		return -EFBIG;
	rc = file_write(fs, ino, data, n, off);
	if (!rc)
		rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	if (off + n > get64(d->i_size))
		d->i_size = put64(off + n);
	set_times(d, 3, t);
	inode_touch(fs, ino);
	return 0;
}

static int apply_write(struct fs *fs, struct rd *r)
{
	uint64_t ino = r64(r), off = r64(r);
	struct timespec t = rts(r);
	size_t n;
	const uint8_t *data = rbytes(r, &n);

	if (r->err)
		return r->err;
	return write_apply(fs, ino, off, t, data, n);
}

static int apply_falloc(struct fs *fs, struct rd *r)
{
	uint64_t ino = r64(r), mode = r64(r), off = r64(r), len = r64(r);
	struct timespec t = rts(r);
	struct tfs_dinode *d;
	uint64_t size;
	int rc;

	if (r->err)
		return r->err;
	rc = reg_get(fs, ino, &d);
	if (rc)
		return rc;
	if (off + len > (1ull << 52) || off + len < off)
		return -EFBIG;
	size = get64(d->i_size);
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		uint64_t end = off + len > size ? size : off + len;
		if (off < end)
			rc = file_zero(fs, ino, off, end - off, true);
	} else if (mode & FALLOC_FL_ZERO_RANGE) {
		uint64_t end = off + len > size ? size : off + len;
		if (off < end)
			rc = file_zero(fs, ino, off, end - off, false);
	}
	/* mode 0 and KEEP_SIZE: copy-on-write cannot promise overwrites
	 * anyway; space was checked by the caller, as ZFS does */
	if (!rc)
		rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > size)
		d->i_size = put64(off + len);
	set_times(d, 3, t);     /* every mode, as ext4 and XFS do */
	inode_touch(fs, ino);
	return 0;
}

static int apply_setxattr(struct fs *fs, struct rd *r)
{
	uint64_t ino = r64(r), flags = r64(r);
	struct timespec t = rts(r);
	char name[TFS_XATTR_NAME_MAX + 1];
	const uint8_t *val;
	size_t n;
	int rc;

	rstr(r, name, TFS_XATTR_NAME_MAX);
	val = rbytes(r, &n);
	if (r->err)
		return r->err;
	rc = xattr_set(fs, ino, name, val, n, (int)flags);
	if (!rc)
		rc = touch_c(fs, ino, t);
	return rc;
}

static int apply_rmxattr(struct fs *fs, struct rd *r)
{
	uint64_t ino = r64(r);
	struct timespec t = rts(r);
	char name[TFS_XATTR_NAME_MAX + 1];
	int rc;

	rstr(r, name, TFS_XATTR_NAME_MAX);
	if (r->err)
		return r->err;
	rc = xattr_remove(fs, ino, name);
	if (!rc)
		rc = touch_c(fs, ino, t);
	return rc;
}

int ops_replay(struct fs *fs, const uint8_t *rec, size_t len, unsigned type)
{
	struct rd r = { rec, len, 0, 0 };

	switch (type) {
	case TFS_OP_CREATE:   return apply_create(fs, &r);
	case TFS_OP_LINK:     return apply_link(fs, &r);
	case TFS_OP_UNLINK:   return apply_unlink(fs, &r);
	case TFS_OP_RENAME:   return apply_rename(fs, &r);
	case TFS_OP_SETATTR:  return apply_setattr(fs, &r);
	case TFS_OP_WRITE:    return apply_write(fs, &r);
	case TFS_OP_FALLOC:   return apply_falloc(fs, &r);
	case TFS_OP_SETXATTR: return apply_setxattr(fs, &r);
	case TFS_OP_RMXATTR:  return apply_rmxattr(fs, &r);
	default:
		return fs_corrupt("log record of unknown type %u", type);
	}
}

/* ---- the live path ------------------------------------------------------- */

/* Space the next CP needs beyond the dirty buffers: map blocks for its
 * allocations (sequential: few), map blocks for the frees waiting in
 * `later` (scattered: up to one each) and deadlist blocks for them. */
static uint64_t cp_margin(struct fs *fs)
{
	uint64_t frees = fs->al.later.n / 2;
	uint64_t maps = (get64(fs->sb.s_nblocks) + TFS_BITS_PER_BLOCK - 1) /
			TFS_BITS_PER_BLOCK;

	return 64 + fs->bc.ndirty / 64 + (frees < maps ? frees : maps) +
	       frees / TFS_DEAD_PER_BLOCK;
}

int ops_space(struct fs *fs, uint64_t need, bool deleting)
{
	uint64_t avail = alloc_free_blocks(fs);
	uint64_t want = need + cp_margin(fs) + (deleting ? 0 : fs->reserve);

	return avail >= want ? 0 : -ENOSPC;
}

/* fs->lock held.  Refuse changes on a read-only or failed fs; make sure
 * `need` blocks are there, running a CP (which releases freed blocks)
 * once if they are not. */
static int op_begin(struct fs *fs, uint64_t need, bool deleting)
{
	int rc;

	if (fs->ro)
		return -EROFS;
	if (fs->error)
		return -EIO;
	rc = ops_space(fs, need, deleting);
	if (rc != -ENOSPC)
		return rc;
	pthread_mutex_unlock(&fs->lock);
	cp_run(fs);
	pthread_mutex_lock(&fs->lock);
	if (fs->error)
		return -EIO;
	return ops_space(fs, need, deleting);
}

/* After a change is applied and logged (rc 0) or failed: start or wait
 * for a CP when the generation is full, keep the cache in its budget. */
static int op_done(struct fs *fs, int rc)
{
	if (!rc)
		cp_throttle(fs);
	fs_evict(fs);
	return rc;
}

/* Apply the record r and log it.  *pos: its log position. */
static int op_exec(struct fs *fs, struct rec *r, uint64_t *pos)
{
	struct tfs_logrec h;
	int rc = r->err;

	if (rc)
		goto out;
	memcpy(&h, r->p, sizeof(h));
	h.r_len = put32((uint32_t)(r->len - sizeof(h)));
	memcpy(r->p, &h, sizeof(h));
	rc = ops_replay(fs, r->p + sizeof(h), r->len - sizeof(h),
			get16(h.r_type));
	if (!rc) {
		rc = ilog_append(fs, r->p, r->len, r->cap, pos);
		if (!rc)
			r->p = NULL; /* the log owns it now */
	}
	rc = op_done(fs, rc);
out:
	if (r->p)
		ilog_buf_put(fs, r->p, r->cap);
	r->p = NULL;
	return rc;
}

static uint64_t dir_need(struct fs *fs, uint64_t dir)
{
	struct tfs_dinode *d;

	if (inode_get(fs, dir, &d) || !S_ISDIR(get32(d->i_mode)))
		return 16;
	/* a split rewrites every bucket */
	return 16 + (2ull << d->i_dirbits);
}

static void fill_attr(struct fs *fs, uint64_t ino, struct fs_attr *out,
		      bool ref)
{
	struct tfs_dinode *d;

	if (out && inode_get(fs, ino, &d) == 0)
		inode_to_attr(ino, d, out);
	if (ref)
		inode_ref(fs, ino, true)->nlookup++;
}

static int do_create(struct fs *fs, uint64_t parent, const char *name,
		     mode_t mode, dev_t rdev, const char *target,
		     const struct fs_cred *cr, struct fs_attr *out)
{
	struct rec r;
	uint64_t ino, pos;
	struct tfs_dinode *pd;
	int rc = name_check(parent, name);

	if (rc)
		return rc;
	pthread_mutex_lock(&fs->lock);
	rc = op_begin(fs, dir_need(fs, parent) + 16, false);
	if (!rc)
		rc = inode_get(fs, parent, &pd);
	if (rc)
		goto out;
	/* setgid directories hand down their group */
	{
		gid_t gid = cr->gid;
		if (get32(pd->i_mode) & S_ISGID) {
			gid = get32(pd->i_gid);
			if (S_ISDIR(mode))
				mode |= S_ISGID;
		}
		ino = get64(fs->sb.s_next_ino);
		if (ino > TFS_MAX_INO) {
			rc = -ENOSPC;
			goto out;
		}
		rec_begin(&r, TFS_OP_CREATE);
		w64(&r, parent);
		w64(&r, ino);
		w64(&r, mode);
		w64(&r, cr->uid);
		w64(&r, gid);
		w64(&r, rdev);
		wts(&r, fs_now());
		wstr(&r, name);
		wstr(&r, target ? target : "");
	}
	rc = op_exec(fs, &r, &pos);
	if (!rc)
		fill_attr(fs, ino, out, true);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_mknod(struct fs *fs, uint64_t parent, const char *name, mode_t mode,
	     dev_t rdev, const struct fs_cred *cr, struct fs_attr *out)
{
	switch (mode & S_IFMT) {
	case 0:
		mode |= S_IFREG;
		break;
	case S_IFREG: case S_IFDIR: case S_IFIFO: case S_IFSOCK:
	case S_IFCHR: case S_IFBLK:
		break;
	default:
		return -EINVAL;
	}
	if (!S_ISCHR(mode) && !S_ISBLK(mode))
		rdev = 0;
	return do_create(fs, parent, name, mode, rdev, NULL, cr, out);
}

int fs_create(struct fs *fs, uint64_t parent, const char *name, mode_t mode,
	      bool excl, const struct fs_cred *cr, struct fs_attr *out)
{
	int rc = do_create(fs, parent, name, S_IFREG | (mode & 07777), 0, NULL,
			   cr, out);

	if (rc == -EEXIST && !excl) {
		rc = fs_lookup(fs, parent, name, out);
		if (!rc && S_ISDIR(out->mode)) {
			fs_forget(fs, out->ino, 1);
			rc = -EISDIR;
		}
	}
	return rc;
}

int fs_symlink(struct fs *fs, uint64_t parent, const char *name,
	       const char *target, const struct fs_cred *cr,
	       struct fs_attr *out)
{
	size_t n = strlen(target);

	if (n == 0)
		return -ENOENT;
	if (n > TFS_SYMLINK_MAX)
		return -ENAMETOOLONG;
	return do_create(fs, parent, name, S_IFLNK | 0777, 0, target, cr, out);
}

int fs_link(struct fs *fs, uint64_t ino, uint64_t newparent,
	    const char *newname, struct fs_attr *out)
{
	struct rec r;
	uint64_t pos;
	int rc = name_check(newparent, newname);

	if (!rc && ino_readonly(ino))
		rc = -EROFS;
	if (rc)
		return rc;
	pthread_mutex_lock(&fs->lock);
	rc = op_begin(fs, dir_need(fs, newparent) + 8, false);
	if (rc)
		goto out;
	rec_begin(&r, TFS_OP_LINK);
	w64(&r, ino);
	w64(&r, newparent);
	wts(&r, fs_now());
	wstr(&r, newname);
	rc = op_exec(fs, &r, &pos);
	if (!rc)
		fill_attr(fs, ino, out, true);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

static int do_unlink(struct fs *fs, uint64_t parent, const char *name,
		     bool isdir)
{
	struct rec r;
	uint64_t pos;
	int rc;

	if (strlen(name) > TFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (ino_readonly(parent) ||
	    (parent == TFS_INO_ROOT && !strcmp(name, ".snapshot")))
		return -EROFS;
	pthread_mutex_lock(&fs->lock);
	rc = op_begin(fs, dir_need(fs, TFS_INO_ORPHANS) + 16, true);
	if (rc)
		goto out;
	rec_begin(&r, TFS_OP_UNLINK);
	w64(&r, parent);
	w64(&r, isdir);
	wts(&r, fs_now());
	wstr(&r, name);
	rc = op_exec(fs, &r, &pos);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_unlink(struct fs *fs, uint64_t parent, const char *name)
{
	return do_unlink(fs, parent, name, false);
}

int fs_rmdir(struct fs *fs, uint64_t parent, const char *name)
{
	return do_unlink(fs, parent, name, true);
}

int fs_rename(struct fs *fs, uint64_t parent, const char *name,
	      uint64_t newparent, const char *newname, unsigned flags)
{
	struct rec r;
	uint64_t pos;
	int rc;

	if (strlen(name) > TFS_NAME_MAX || strlen(newname) > TFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (ino_readonly(parent) || ino_readonly(newparent))
		return -EROFS;
	if ((parent == TFS_INO_ROOT && !strcmp(name, ".snapshot")) ||
	    (newparent == TFS_INO_ROOT && !strcmp(newname, ".snapshot")))
		return -EROFS;
	pthread_mutex_lock(&fs->lock);
	rc = op_begin(fs, dir_need(fs, newparent) +
		      dir_need(fs, TFS_INO_ORPHANS) + 16, true);
	if (rc)
		goto out;
	rec_begin(&r, TFS_OP_RENAME);
	w64(&r, parent);
	w64(&r, newparent);
	w64(&r, flags);
	wts(&r, fs_now());
	wstr(&r, name);
	wstr(&r, newname);
	rc = op_exec(fs, &r, &pos);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* fs->lock held, op_begin done: apply and log the SETATTR sa, at time
 * now.  fs_setattr, and the access time a read moves. */
static int setattr_exec(struct fs *fs, uint64_t ino,
			const struct fs_setattr *sa, struct timespec now)
{
	unsigned mask = sa->mask;
	struct rec r;
	uint64_t pos;

	if (mask & FS_SET_ATIME_NOW)
		mask |= FS_SET_ATIME;
	if (mask & FS_SET_MTIME_NOW)
		mask |= FS_SET_MTIME;
	rec_begin(&r, TFS_OP_SETATTR);
	w64(&r, ino);
	w64(&r, mask & (FS_SET_MODE | FS_SET_UID | FS_SET_GID | FS_SET_SIZE |
			FS_SET_ATIME | FS_SET_MTIME | FS_SET_KILL_SUIDGID));
	w64(&r, sa->mode);
	w64(&r, sa->uid);
	w64(&r, sa->gid);
	w64(&r, sa->size);
	wts(&r, mask & FS_SET_ATIME_NOW ? now : sa->atime);
	wts(&r, mask & FS_SET_MTIME_NOW ? now : sa->mtime);
	wts(&r, mask & FS_SET_CTIME ? sa->ctime : now);
	return op_exec(fs, &r, &pos);
}

int fs_setattr(struct fs *fs, uint64_t ino, const struct fs_setattr *sa,
	       struct fs_attr *out)
{
	struct timespec now = fs_now();
	int rc;

	if (ino_readonly(ino))
		return -EROFS;
	pthread_mutex_lock(&fs->lock);
	rc = op_begin(fs, 16, (sa->mask & FS_SET_SIZE) != 0);
	if (rc)
		goto out;
	rc = setattr_exec(fs, ino, sa, now);
	if (!rc)
		fill_attr(fs, ino, out, false);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

static int sync_to(struct fs *fs, uint64_t pos)
{
	int rc = ilog_sync(fs, pos);

	if (rc == -EAGAIN) /* log region full: a CP covers it all */
		rc = cp_run(fs);
	return rc;
}

/* The write record: header, ino, off, time, data.  Built before the
 * lock is taken (the copy of the data is the costly part); off (for
 * O_APPEND) and the time are filled in under it. */
static void write_rec(struct fs *fs, struct rec *r, uint64_t ino,
		      const void *buf, size_t size, uint64_t off)
{
	size_t cap;
	uint8_t *p = ilog_buf_get(fs, size + 64, &cap);

	rec_begin_buf(r, TFS_OP_WRITE, p, cap);
	w64(r, ino);
	w64(r, off);
	wts(r, (struct timespec){ 0, 0 });
	wbytes(r, buf, size);
}

ssize_t fs_write(struct fs *fs, uint64_t ino, const void *buf, size_t size,
		 uint64_t off, unsigned flags)
{
	/* where apply_write() reads the offset and the time */
	enum { OFF_AT = sizeof(struct tfs_logrec) + 8, TIME_AT = OFF_AT + 8 };
	uint64_t nb = (size + 2 * TFS_BLOCK_SIZE - 1) / TFS_BLOCK_SIZE;
	struct tfs_dinode *d;
	struct timespec now;
	struct rec r = { 0 };
	uint64_t pos;
	le64 v;
	int rc;

	if (ino_readonly(ino))
		return -EROFS;
	if (size == 0) /* changes nothing, not even the times */
		return fs_open(fs, ino, false);
	/* Past ILOG_SYNC_MAX the log keeps no bytes until the next CP
	 * (ilog.c): then the data goes from the caller's buffer straight
	 * into the cache, with no record.  Otherwise build the record
	 * outside the lock. */
	if (!ilog_overflowed(fs))
		write_rec(fs, &r, ino, buf, size, off);
	pthread_mutex_lock(&fs->lock);
	rc = op_begin(fs, nb + nb / 64 + 16, false);
	if (!rc)
		rc = reg_get(fs, ino, &d);
	if (rc) {
		if (r.p)
			ilog_buf_put(fs, r.p, r.cap);
		goto out;
	}
	if (flags & FS_WRITE_APPEND)
		off = get64(d->i_size);
	now = fs_now();
	/* The overflow can only end with a CP, which needs fs->lock: what
	 * ilog_overflowed says now holds until the write is accounted. */
	if (ilog_overflowed(fs)) {
		if (r.p)
			ilog_buf_put(fs, r.p, r.cap);
		rc = write_apply(fs, ino, off, now, buf, size);
		if (!rc)
			rc = ilog_skip(fs, size + 64, &pos);
		rc = op_done(fs, rc);
		goto out;
	}
	if (!r.p && !r.err) /* a CP ended the overflow meanwhile */
		write_rec(fs, &r, ino, buf, size, off);
	if (!r.err) {
		v = put64(off);
		memcpy(r.p + OFF_AT, &v, 8);
		v = put64((uint64_t)now.tv_sec);
		memcpy(r.p + TIME_AT, &v, 8);
		v = put64((uint64_t)now.tv_nsec);
		memcpy(r.p + TIME_AT + 8, &v, 8);
	}
	rc = op_exec(fs, &r, &pos);
out:
	pthread_mutex_unlock(&fs->lock);
	if (!rc && (flags & FS_WRITE_SYNC))
		rc = sync_to(fs, pos);
	return rc ? rc : (ssize_t)size;
}

int fs_fallocate(struct fs *fs, uint64_t ino, int mode, uint64_t off,
		 uint64_t len)
{
	const int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
			  FALLOC_FL_ZERO_RANGE;
	struct rec r;
	uint64_t pos, need = 16;
	int rc;

	if (ino_readonly(ino))
		return -EROFS;
	if (mode & ~known)
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) &&
	    ((mode & FALLOC_FL_ZERO_RANGE) || !(mode & FALLOC_FL_KEEP_SIZE)))
		return -EOPNOTSUPP;
	if (len == 0)
		return -EINVAL;
	if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)))
		need += len / TFS_BLOCK_SIZE + 1;  /* the space must be there */
	pthread_mutex_lock(&fs->lock);
	rc = op_begin(fs, need, (mode & FALLOC_FL_PUNCH_HOLE) != 0);
	if (rc)
		goto out;
	rec_begin(&r, TFS_OP_FALLOC);
	w64(&r, ino);
	w64(&r, (uint64_t)mode);
	w64(&r, off);
	w64(&r, len);
	wts(&r, fs_now());
	rc = op_exec(fs, &r, &pos);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_setxattr(struct fs *fs, uint64_t ino, const char *name,
		const void *value, size_t size, int flags)
{
	struct rec r;
	uint64_t pos;
	int rc;

	if (ino_readonly(ino))
		return -EROFS;
	if (flags & ~(XATTR_CREATE | XATTR_REPLACE))
		return -EINVAL;
	pthread_mutex_lock(&fs->lock);
	rc = op_begin(fs, 16, false);
	if (rc)
		goto out;
	rec_begin(&r, TFS_OP_SETXATTR);
	w64(&r, ino);
	w64(&r, (uint64_t)flags);
	wts(&r, fs_now());
	wstr(&r, name);
	wbytes(&r, value, size);
	rc = op_exec(fs, &r, &pos);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_removexattr(struct fs *fs, uint64_t ino, const char *name)
{
	struct rec r;
	uint64_t pos;
	int rc;

	if (ino_readonly(ino))
		return -EROFS;
	pthread_mutex_lock(&fs->lock);
	rc = op_begin(fs, 16, true);
	if (rc)
		goto out;
	rec_begin(&r, TFS_OP_RMXATTR);
	w64(&r, ino);
	wts(&r, fs_now());
	wstr(&r, name);
	rc = op_exec(fs, &r, &pos);
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

#define CAP_XATTR "security.capability"

int fs_kill_priv(struct fs *fs, uint64_t ino, bool suidgid, bool *changed)
{
	struct tfs_dinode *d;
	bool kill_mode = false, kill_cap = false;
	int rc;

	*changed = false;
	if (ino_readonly(ino))
		return 0;
	pthread_mutex_lock(&fs->lock);
	rc = inode_get(fs, ino, &d);
	if (!rc && S_ISREG(get32(d->i_mode))) {
		uint32_t m = get32(d->i_mode);
		ssize_t x;
		kill_mode = suidgid && mode_killed(m) != m;
		/* no xattr block: -ENODATA without a read */
		x = xattr_get(fs, ino, CAP_XATTR, NULL, 0);
		kill_cap = x >= 0;
		if (x < 0 && x != -ENODATA)
			rc = (int)x;
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc)
		return rc;
	if (kill_mode) {
		struct fs_setattr sa = { .mask = FS_SET_KILL_SUIDGID };
		struct fs_attr a;
		rc = fs_setattr(fs, ino, &sa, &a);
		if (rc)
			return rc;
		*changed = true;
	}
	if (kill_cap) {
		rc = fs_removexattr(fs, ino, CAP_XATTR);
		if (rc && rc != -ENODATA)
			return rc;
		*changed = true;
	}
	return 0;
}

/* ---- reads --------------------------------------------------------------- */

/* The synthetic .snapshot directory. */
static int snapdir_attr(struct fs *fs, struct fs_attr *out)
{
	struct tfs_dinode *root;
	int rc = inode_get(fs, TFS_INO_ROOT, &root);

	if (rc)
		return rc;
	inode_to_attr(FS_INO_SNAPDIR, root, out);
	out->mode = S_IFDIR | 0555;
	out->nlink = 2;
	out->size = TFS_BLOCK_SIZE;
	out->blocks = 0;
	out->uid = 0;
	out->gid = 0;
	return 0;
}

/* Inode number as seen from outside, for an entry found in dir. */
static uint64_t outer_ino(uint64_t dir, uint64_t ino)
{
	if (!INO_IS_SNAP(dir))
		return ino;
	if (INO_LOCAL(dir) == TFS_INO_ROOT && ino == TFS_INO_ROOT)
		return FS_INO_SNAPDIR; /* ".." of a snapshot's root */
	return SNAP_INO(INO_SLOT(dir), ino);
}

static int lookup_locked(struct fs *fs, uint64_t parent, const char *name,
			 uint64_t *ino)
{
	struct tfs_dinode *d;
	int slot, rc;

	if (parent == FS_INO_SNAPDIR) {
		if (!strcmp(name, ".") || !strcmp(name, "..")) {
			*ino = name[1] ? TFS_INO_ROOT : FS_INO_SNAPDIR;
			return 0;
		}
		slot = snap_by_name(fs, name);
		if (slot < 0)
			return slot;
		*ino = SNAP_INO((unsigned)slot, TFS_INO_ROOT);
		return 0;
	}
	if (parent == TFS_INO_ROOT && !strcmp(name, ".snapshot")) {
		*ino = FS_INO_SNAPDIR;
		return 0;
	}
	rc = inode_get(fs, parent, &d);
	if (!rc && !S_ISDIR(get32(d->i_mode)))
		rc = -ENOTDIR;
	if (rc)
		return rc;
	if (!strcmp(name, "."))
		*ino = parent;
	else if (!strcmp(name, ".."))
		*ino = outer_ino(parent, get64(d->i_parent));
	else if (!(rc = dir_lookup(fs, parent, name, ino, NULL)))
		*ino = outer_ino(parent, *ino);
	return rc;
}

static int attr_locked(struct fs *fs, uint64_t ino, struct fs_attr *out)
{
	struct tfs_dinode *d;
	int rc;

	if (ino == FS_INO_SNAPDIR)
		return snapdir_attr(fs, out);
	rc = inode_get(fs, ino, &d);
	if (!rc)
		inode_to_attr(ino, d, out);
	return rc;
}

int fs_lookup(struct fs *fs, uint64_t parent, const char *name,
	      struct fs_attr *out)
{
	uint64_t ino;
	int rc;

	if (strlen(name) > TFS_NAME_MAX)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&fs->lock);
	rc = lookup_locked(fs, parent, name, &ino);
	if (!rc)
		rc = attr_locked(fs, ino, out);
	if (!rc)
		inode_ref(fs, ino, true)->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

void fs_forget(struct fs *fs, uint64_t ino, uint64_t nlookup)
{
	pthread_mutex_lock(&fs->lock);
	inode_unref(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->lock);
}

int fs_getattr(struct fs *fs, uint64_t ino, struct fs_attr *out)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = attr_locked(fs, ino, out);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_open(struct fs *fs, uint64_t ino, bool dir)
{
	struct tfs_dinode *d;
	int rc;

	if (ino == FS_INO_SNAPDIR)
		return dir ? 0 : -EISDIR;
	pthread_mutex_lock(&fs->lock);
	rc = inode_get(fs, ino, &d);
	if (!rc && dir && !S_ISDIR(get32(d->i_mode)))
		rc = -ENOTDIR;
	if (!rc && !dir && S_ISDIR(get32(d->i_mode)))
		rc = -EISDIR;
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

bool fs_ino_readonly(struct fs *fs, uint64_t ino)
{
	return fs->ro || ino_readonly(ino);
}

int fs_readlink(struct fs *fs, uint64_t ino, char *buf, size_t size)
{
	struct tfs_dinode *d;
	ssize_t n;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = inode_get(fs, ino, &d);
	if (!rc && !S_ISLNK(get32(d->i_mode)))
		rc = -EINVAL;
	if (!rc && (get64(d->i_size) >= size || get64(d->i_size) == 0))
		rc = get64(d->i_size) ? -ENAMETOOLONG :
			fs_corrupt("empty symlink %llu", (unsigned long long)ino);
	if (!rc) {
		n = file_read(fs, ino, buf, (size_t)get64(d->i_size), 0);
		if (n < 0)
			rc = (int)n;
		else
			buf[n] = 0;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

static int ts_cmp(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	return a.tv_nsec < b.tv_nsec ? -1 : a.tv_nsec > b.tv_nsec;
}

/* fs->lock held, d is ino's dinode: a read or a listing from the start
 * moves the access time as the mount says (Linux's relatime rule by
 * default: only when atime is not after mtime or ctime, or is a day
 * old, so a file read over and over costs one update per change).  A
 * logged SETATTR of the atime alone that keeps the ctime, so a crash
 * cannot bring back an older atime once an fsync has returned.  Best
 * effort: a full file system or a failed op leaves the atime alone.
 * True if it tried (op_begin may have let go of fs->lock: d is stale
 * then). */
static bool atime_touch(struct fs *fs, uint64_t ino,
			const struct tfs_dinode *d, bool dir)
{
	struct fs_setattr sa = { .mask = FS_SET_ATIME_NOW | FS_SET_CTIME };
	struct timespec now, at;

	if (fs->ro || fs->error || ino_readonly(ino) ||
	    fs->opts.atime == FS_ATIME_NOATIME || (dir && fs->opts.nodiratime))
		return false;
	now = fs_now();
	at = ts_get(d->i_atime, d->i_atime_ns);
	sa.ctime = ts_get(d->i_ctime, d->i_ctime_ns);
	if (fs->opts.atime == FS_ATIME_STRICT ? !ts_cmp(at, now) :
	    ts_cmp(at, ts_get(d->i_mtime, d->i_mtime_ns)) > 0 &&
	    ts_cmp(at, sa.ctime) > 0 && now.tv_sec - at.tv_sec < 24 * 3600)
		return false;
	if (op_begin(fs, 16, false) == 0)
		(void)setattr_exec(fs, ino, &sa, now);
	return true;
}

ssize_t fs_read(struct fs *fs, uint64_t ino, void *buf, size_t size,
		uint64_t off, unsigned flags)
{
	struct read_plan plan = { 0 };
	struct tfs_dinode *d;
	ssize_t n;
	int rc;

	pthread_mutex_lock(&fs->lock);
	n = reg_get(fs, ino, &d);
	if (!n && !(flags & FS_READ_NOATIME) && atime_touch(fs, ino, d, false))
		n = reg_get(fs, ino, &d);
	if (!n)
		n = file_read_plan(fs, ino, buf, size, off, &plan);
	if (n > 0 && plan.n)
		pthread_rwlock_rdlock(&fs->io_rw);
	fs_evict(fs);
	pthread_mutex_unlock(&fs->lock);
	if (n > 0 && plan.n) {
		rc = file_read_io(fs, &plan);
		pthread_rwlock_unlock(&fs->io_rw);
		if (rc)
			n = rc;
	}
	free(plan.m);
	return n;
}

int fs_fsync(struct fs *fs, uint64_t ino, bool datasync)
{
	uint64_t pos;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = fs->error ? -EIO : 0;
	pthread_mutex_unlock(&fs->lock);
	if (rc || fs->ro)
		return rc;
	pthread_mutex_lock(&fs->log.lock);
	pos = fs->log.appended;
	pthread_mutex_unlock(&fs->log.lock);
	return sync_to(fs, pos);
}

int64_t fs_lseek(struct fs *fs, uint64_t ino, uint64_t off, int whence)
{
	struct tfs_dinode *d;
	uint64_t size, idx, found;
	int64_t res;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = reg_get(fs, ino, &d);
	if (rc) {
		res = rc;
		goto out;
	}
	size = get64(d->i_size);
	if (off >= size || (whence != SEEK_DATA && whence != SEEK_HOLE)) {
		res = whence == SEEK_DATA || whence == SEEK_HOLE ? -ENXIO :
		      -EINVAL;
		goto out;
	}
	idx = off >> TFS_BLOCK_SHIFT;
	rc = tree_next(fs, ino, idx, whence == SEEK_DATA, &found);
	if (rc < 0) {
		res = rc;
	} else if (whence == SEEK_DATA) {
		uint64_t at = found << TFS_BLOCK_SHIFT;
		res = rc == 0 || at >= size ? -ENXIO :
		      (int64_t)(at > off ? at : off);
	} else {
		uint64_t at = rc ? found << TFS_BLOCK_SHIFT : size;
		if (at < off)
			at = off;
		res = (int64_t)(at > size ? size : at);
	}
out:
	pthread_mutex_unlock(&fs->lock);
	return res;
}

struct rd_wrap {
	fs_filldir_t fill;
	void *ctx;
	uint64_t dir;
};

static int fill_outer(void *ctx, const char *name, uint64_t ino,
		      unsigned dtype, uint64_t next)
{
	struct rd_wrap *w = ctx;

	return w->fill(w->ctx, name, outer_ino(w->dir, ino), dtype, next);
}

/* .snapshot: ".", "..", then one entry per snapshot (cookie slot + 3). */
static int snapdir_iterate(struct fs *fs, uint64_t cookie, fs_filldir_t fill,
			   void *ctx)
{
	if (cookie == 0 && fill(ctx, ".", FS_INO_SNAPDIR, DT_DIR, 1))
		return 0;
	if (cookie <= 1 && fill(ctx, "..", TFS_INO_ROOT, DT_DIR, 2))
		return 0;
	for (uint64_t s = cookie > 2 ? cookie - 2 : 0; s < TFS_MAX_SNAPS; s++)
		if (fs->snaps[s].used &&
		    fill(ctx, fs->snaps[s].name, SNAP_INO(s, TFS_INO_ROOT),
			 DT_DIR, s + 3))
			break;
	return 0;
}

int fs_readdir(struct fs *fs, uint64_t ino, uint64_t cookie,
	       fs_filldir_t fill, void *ctx)
{
	struct rd_wrap w = { fill, ctx, ino };
	int rc;

	pthread_mutex_lock(&fs->lock);
	if (cookie == 0 && ino != FS_INO_SNAPDIR) {
		struct tfs_dinode *d;
		if (inode_get(fs, ino, &d) == 0 && S_ISDIR(get32(d->i_mode)))
			atime_touch(fs, ino, d, true);
	}
	if (ino == FS_INO_SNAPDIR)
		rc = snapdir_iterate(fs, cookie, fill, ctx);
	else
		rc = dir_iterate(fs, ino, cookie, fill_outer, &w,
				 ino == TFS_INO_ROOT && fs->opts.snapdir_visible);
	fs_evict(fs);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

ssize_t fs_getxattr(struct fs *fs, uint64_t ino, const char *name, void *buf,
		    size_t size)
{
	ssize_t rc;

	pthread_mutex_lock(&fs->lock);
	rc = xattr_get(fs, ino, name, buf, size);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

ssize_t fs_listxattr(struct fs *fs, uint64_t ino, char *buf, size_t size)
{
	ssize_t rc;

	pthread_mutex_lock(&fs->lock);
	rc = xattr_list(fs, ino, buf, size);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int fs_statfs(struct fs *fs, struct statvfs *st)
{
	uint64_t nb, freeb;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&fs->lock);
	nb = get64(fs->sb.s_nblocks) - TFS_LOG_START -
	     get64(fs->sb.s_log_blocks);
	/* blocks freed since the last CP are free: the next CP says so */
	freeb = alloc_free_blocks(fs) + fs->al.later.n;
	st->f_bsize = TFS_BLOCK_SIZE;
	st->f_frsize = TFS_BLOCK_SIZE;
	st->f_blocks = nb;
	st->f_bfree = freeb > nb ? nb : freeb;
	st->f_bavail = st->f_bfree > fs->reserve ? st->f_bfree - fs->reserve : 0;
	st->f_files = TFS_MAX_INO;
	st->f_ffree = TFS_MAX_INO - get64(fs->sb.s_ninodes);
	st->f_favail = st->f_ffree;
	st->f_namemax = TFS_NAME_MAX;
	st->f_fsid = get64(*(le64 *)fs->sb.s_uuid);
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

void fs_get_status(struct fs *fs, struct fs_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&fs->lock);
	st->generation = fs->durable_gen;
	st->cps = fs->cps_done;
	st->dirty_bytes = fs->bc.ndirty * (uint64_t)TFS_BLOCK_SIZE;
	st->log_bytes = ilog_pending(fs);
	st->total_blocks = get64(fs->sb.s_nblocks);
	st->free_blocks = alloc_free_blocks(fs) + fs->al.later.n;
	st->inodes = get64(fs->sb.s_ninodes);
	st->last_cp_usec = fs->last_cp_usec;
	memcpy(st->label, fs->sb.s_label, 64);
	pthread_mutex_unlock(&fs->lock);
}

/* ---- snapshots ------------------------------------------------------------ */

static int snap_name_check(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	if (n > FS_SNAP_NAME_MAX)
		return -ENAMETOOLONG;
	if (strchr(name, '/'))
		return -EINVAL;
	return 0;
}

/* Queue a request for the next CP, run it, wait for the answer. */
static int snap_request(struct fs *fs, enum snap_req_kind kind,
			const char *name, uint32_t flags, bool force)
{
	struct snap_req r = { .kind = kind, .flags = flags, .force = force };
	struct snap_req **pp;
	int rc = snap_name_check(name);

	if (rc)
		return rc;
	if (fs->ro)
		return -EROFS;
	memcpy(r.name, name, strlen(name) + 1);
	pthread_mutex_lock(&fs->lock);
	if (fs->error) {
		pthread_mutex_unlock(&fs->lock);
		return -EIO;
	}
	for (pp = &fs->snap_reqs; *pp; pp = &(*pp)->next)
		;
	*pp = &r;
	pthread_mutex_unlock(&fs->lock);
	rc = cp_run(fs);
	pthread_mutex_lock(&fs->lock);
	while (!r.done && !fs->error)
		pthread_cond_wait(&fs->cp_done, &fs->lock);
	if (!r.done) { /* the CP failed before taking it: unqueue */
		for (pp = &fs->snap_reqs; *pp && *pp != &r; pp = &(*pp)->next)
			;
		if (*pp)
			*pp = r.next;
		r.rc = -EIO;
	}
	pthread_mutex_unlock(&fs->lock);
	return r.rc ? r.rc : rc;
}

int fs_snap_create(struct fs *fs, const char *name)
{
	return snap_request(fs, SNAP_REQ_CREATE, name, 0, false);
}

int fs_snap_delete(struct fs *fs, const char *name)
{
	return snap_request(fs, SNAP_REQ_DELETE, name, 0, false);
}

/* (directory, name) pairs the kernel may have cached: every name in
 * every live directory it holds. */
struct names {
	struct name_ent { uint64_t dir; char *name; } *v;
	size_t n, cap;
	uint64_t dir;
};

static int names_fill(void *ctx, const char *name, uint64_t ino,
		      unsigned dtype, uint64_t next)
{
	struct names *nm = ctx;
	char *dup;

	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (nm->n == nm->cap) {
		size_t cap = nm->cap ? nm->cap * 2 : 256;
		struct name_ent *nv = realloc(nm->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		nm->v = nv;
		nm->cap = cap;
	}
	dup = strdup(name);
	if (!dup)
		return -ENOMEM;
	nm->v[nm->n].dir = nm->dir;
	nm->v[nm->n++].name = dup;
	return 0;
}

static void names_collect(struct fs *fs, struct names *nm)
{
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->nitab; i++)
		for (struct inode *in = fs->itab[i]; in; in = in->hnext) {
			struct tfs_dinode *d;
			if (ino_readonly(in->ino) ||
			    inode_get(fs, in->ino, &d) ||
			    !S_ISDIR(get32(d->i_mode)))
				continue;
			nm->dir = in->ino;
			dir_iterate(fs, in->ino, 0, names_fill, nm, false);
		}
	pthread_mutex_unlock(&fs->lock);
}

static void names_inval(struct fs *fs, struct names *nm)
{
	for (size_t i = 0; i < nm->n; i++) {
		if (fs->opts.inval_entry)
			fs->opts.inval_entry(fs->opts.inval_arg, nm->v[i].dir,
					     nm->v[i].name);
		free(nm->v[i].name);
	}
	free(nm->v);
	memset(nm, 0, sizeof(*nm));
}

int fs_snap_rollback(struct fs *fs, const char *name, bool force)
{
	struct u64vec inos = { 0 };
	struct names before = { 0 }, after = { 0 };
	int rc;

	/* The kernel caches names and attributes for a long time (they
	 * only change through it), so a rollback must name everything it
	 * changed: each name in a cached directory before and after, and
	 * every cached inode. */
	if (fs->opts.inval_entry)
		names_collect(fs, &before);
	rc = snap_request(fs, SNAP_REQ_ROLLBACK, name, 0, force);
	if (rc || !fs->opts.inval) {
		names_inval(fs, &before);  /* frees; harmless to tell */
		return rc;
	}
	if (fs->opts.inval_entry)
		names_collect(fs, &after);
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->nitab; i++)
		for (struct inode *in = fs->itab[i]; in; in = in->hnext)
			u64vec_push(&inos, in->ino);
	pthread_mutex_unlock(&fs->lock);
	names_inval(fs, &before);
	names_inval(fs, &after);
	fs->opts.inval(fs->opts.inval_arg, TFS_INO_ROOT);
	for (size_t i = 0; i < inos.n; i++)
		if (!ino_readonly(inos.v[i]))
			fs->opts.inval(fs->opts.inval_arg, inos.v[i]);
	u64vec_free(&inos);
	return 0;
}

static int cmp_info(const void *a, const void *b)
{
	const struct fs_snap_info *x = a, *y = b;

	return x->gen < y->gen ? -1 : x->gen > y->gen ? 1 :
	       x->id < y->id ? -1 : x->id > y->id;
}

int fs_snap_list(struct fs *fs, struct fs_snap_info *out, size_t max)
{
	struct fs_snap_info *all;
	uint64_t *uniq, ndead;
	int rc = 0, n = 0;

	pthread_mutex_lock(&fs->lock);
	all = calloc(fs->nsnaps + 1, sizeof(*all));
	uniq = calloc(TFS_MAX_SNAPS, sizeof(*uniq));
	if (!all || !uniq) {
		rc = -ENOMEM;
		goto out;
	}
	/* unique: deadlist blocks that exactly one snapshot holds */
	ndead = get64(fs->sb.s_dfile.i_size);
	for (uint64_t i = 0; i < ndead; i++) {
		struct buf *b;
		const struct tfs_dead *e;
		int holder = -1, count = 0;
		rc = buf_get(fs, OWN_DFILE, 0, i / TFS_DEAD_PER_BLOCK, 0, &b);
		if (rc || !b) {
			rc = rc ? rc : -EUCLEAN;
			goto out;
		}
		e = (const struct tfs_dead *)b->data + i % TFS_DEAD_PER_BLOCK;
		for (unsigned s = 0; s < TFS_MAX_SNAPS && count < 2; s++)
			if (fs->snaps[s].used &&
			    get64(e->d_birth) <= fs->snaps[s].gen &&
			    fs->snaps[s].gen < get64(e->d_death)) {
				holder = (int)s;
				count++;
			}
		if (count == 1)
			uniq[holder]++;
	}
	for (unsigned s = 0; s < TFS_MAX_SNAPS; s++) {
		const struct snap_mem *m = &fs->snaps[s];
		if (!m->used)
			continue;
		memcpy(all[n].name, m->name, sizeof(all[n].name));
		all[n].id = m->id;
		all[n].gen = m->gen;
		all[n].time.tv_sec = (time_t)m->time;
		all[n].time.tv_nsec = m->time_ns;
		all[n].referenced_bytes = m->used_blocks * TFS_BLOCK_SIZE;
		all[n].unique_bytes = uniq[s] * TFS_BLOCK_SIZE;
		all[n].flags = m->flags;
		n++;
	}
	qsort(all, (size_t)n, sizeof(*all), cmp_info);
	if (out && max)   /* a count only: out may be NULL */
		memcpy(out, all,
		       (size_t)(n < (int)max ? n : (int)max) * sizeof(*all));
	rc = n;
out:
	pthread_mutex_unlock(&fs->lock);
	free(all);
	free(uniq);
	return rc;
}

/* ---- orphans ------------------------------------------------------------- */

struct orphan_list {
	struct u64vec inos;
};

static int orphan_fill(void *ctx, const char *name, uint64_t ino,
		       unsigned dtype, uint64_t next)
{
	struct orphan_list *l = ctx;

	if (strcmp(name, ".") && strcmp(name, ".."))
		u64vec_push(&l->inos, ino);
	return 0;
}

/* fs->lock held: free every orphan nobody references any more. */
int ops_orphans_reclaim(struct fs *fs)
{
	struct orphan_list l = { { 0 } };
	int rc = dir_iterate(fs, TFS_INO_ORPHANS, 0, orphan_fill, &l, false);

	for (size_t i = 0; i < l.inos.n && !rc; i++) {
		uint64_t ino = l.inos.v[i];
		struct inode *in = inode_ref(fs, ino, false);
		char name[32];
		if (in && in->nlookup)
			continue;
		snprintf(name, sizeof(name), "%llx", (unsigned long long)ino);
		rc = dir_remove(fs, TFS_INO_ORPHANS, name);
		if (!rc)
			rc = inode_free(fs, ino);
	}
	u64vec_free(&l.inos);
	return rc;
}
