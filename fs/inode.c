/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * inode.c - dinodes in the inode file, and the in-memory table of inodes
 * the kernel holds references to (FUSE lookup counts).  Inode numbers
 * come from s_next_ino and are never reused, so a stale handle can never
 * reach another file.  Runs under fs->lock.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fs_impl.h"

/* The inode-file block holding ino: the live one, or a snapshot's. */
static int ino_buf(struct fs *fs, uint64_t ino, unsigned flags,
		   struct buf **b)
{
	uint64_t owner = OWN_IFILE;

	if (INO_IS_SNAP(ino)) {
		uint64_t slot = INO_SLOT(ino);
		if (slot >= TFS_MAX_SNAPS || !fs->snaps || !fs->snaps[slot].used)
			return -ENOENT;
		owner = OWN_SIFILE(slot);
		ino = INO_LOCAL(ino);
		flags = 0;
	}
	if (ino == 0 || ino > TFS_MAX_INO)
		return -ENOENT;
	return buf_get(fs, owner, 0, ino / TFS_INODES_PER_BLOCK, flags, b);
}

/* The live dinode of ino, or -ENOENT.  Valid until the operation ends. */
int inode_get(struct fs *fs, uint64_t ino, struct tfs_dinode **out)
{
	struct buf *b;
	struct tfs_dinode *d;
	int rc = ino_buf(fs, ino, 0, &b);

	*out = NULL;
	if (rc)
		return rc;
	if (!b)
		return -ENOENT;
	d = (struct tfs_dinode *)b->data + INO_LOCAL(ino) % TFS_INODES_PER_BLOCK;
	if (get32(d->i_mode) == 0)
		return -ENOENT;
	if (d->i_height > TFS_MAX_HEIGHT)
		return fs_corrupt("inode %llu: height %u",
				  (unsigned long long)ino, d->i_height);
	*out = d;
	return 0;
}

/* The dinode of ino changed: dirty its inode-file block. */
void inode_touch(struct fs *fs, uint64_t ino)
{
	struct buf *b;

	if (ino_buf(fs, ino, 0, &b) == 0 && b)
		VERIFY(buf_dirty(fs, b) == 0 || fs->ro);
}

int inode_alloc(struct fs *fs, uint64_t ino, mode_t mode)
{
	struct buf *b;
	struct tfs_dinode *d;
	int rc = ino_buf(fs, ino, GET_CREATE, &b);

	if (rc)
		return rc;
	rc = buf_dirty(fs, b);
	if (rc)
		return rc;
	d = (struct tfs_dinode *)b->data + ino % TFS_INODES_PER_BLOCK;
	if (get32(d->i_mode) != 0)
		return fs_corrupt("inode %llu allocated twice",
				  (unsigned long long)ino);
	memset(d, 0, sizeof(*d));
	d->i_mode = put32(mode);
	d->i_gen = put64(get64(fs->sb.s_gen) + 1);
	fs->sb.s_ninodes = put64(get64(fs->sb.s_ninodes) + 1);
	if (ino >= get64(fs->sb.s_next_ino))
		fs->sb.s_next_ino = put64(ino + 1);
	return 0;
}

/* Release an inode's blocks and its slot. */
int inode_free(struct fs *fs, uint64_t ino)
{
	struct tfs_dinode *d;
	int rc = tree_free_range(fs, ino, 0, UINT64_MAX);

	if (!rc)
		rc = xattr_drop(fs, ino);
	if (!rc)
		rc = inode_get(fs, ino, &d);
	if (rc)
		return rc;
	inode_touch(fs, ino);
	memset(d, 0, sizeof(*d));
	fs->sb.s_ninodes = put64(get64(fs->sb.s_ninodes) - 1);
	return 0;
}

void ts_put(le64 *sec, le32 *nsec, struct timespec t)
{
	*sec = put64((uint64_t)t.tv_sec);
	*nsec = put32((uint32_t)t.tv_nsec);
}

struct timespec ts_get(le64 sec, le32 nsec)
{
	struct timespec t = { (time_t)get64(sec), (long)get32(nsec) };

	if (t.tv_nsec >= 1000000000)
		t.tv_nsec = 0;
	return t;
}

void inode_to_attr(uint64_t ino, const struct tfs_dinode *d,
		   struct fs_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->mode = get32(d->i_mode);
	a->nlink = get32(d->i_nlink);
	a->uid = get32(d->i_uid);
	a->gid = get32(d->i_gid);
	a->rdev = (dev_t)get64(d->i_rdev);
	a->size = get64(d->i_size);
	a->blocks = get64(d->i_blocks) * (TFS_BLOCK_SIZE / 512);
	a->atime = ts_get(d->i_atime, d->i_atime_ns);
	a->mtime = ts_get(d->i_mtime, d->i_mtime_ns);
	a->ctime = ts_get(d->i_ctime, d->i_ctime_ns);
	a->gen = get64(d->i_gen);
}

void fs_attr_to_stat(const struct fs_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_blksize = TFS_BLOCK_SIZE;
	st->st_atim = a->atime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

/* ---- in-memory table of referenced inodes ---- */

static size_t itab_slot(const struct fs *fs, uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 17) & (fs->nitab - 1);
}

struct inode *inode_ref(struct fs *fs, uint64_t ino, bool create)
{
	struct inode *in;
	size_t s;

	if (!fs->itab) {
		fs->nitab = 1u << 14;
		fs->itab = calloc(fs->nitab, sizeof(*fs->itab));
		VERIFY(fs->itab);
	}
	s = itab_slot(fs, ino);
	for (in = fs->itab[s]; in; in = in->hnext)
		if (in->ino == ino)
			return in;
	if (!create)
		return NULL;
	in = calloc(1, sizeof(*in));
	VERIFY(in);
	in->ino = ino;
	in->hnext = fs->itab[s];
	fs->itab[s] = in;
	return in;
}

/* Drop n references; frees the inode when unlinked and unreferenced. */
void inode_unref(struct fs *fs, uint64_t ino, uint64_t n)
{
	struct inode *in = inode_ref(fs, ino, false), **pp;
	struct tfs_dinode *d;

	if (!in)
		return;
	in->nlookup = in->nlookup > n ? in->nlookup - n : 0;
	if (in->nlookup)
		return;
	pp = &fs->itab[itab_slot(fs, ino)];
	while (*pp != in)
		pp = &(*pp)->hnext;
	*pp = in->hnext;
	free(in);
	if (fs->ro || inode_get(fs, ino, &d) || get32(d->i_nlink) != 0)
		return;
	/* last reference to an unlinked inode: reclaim it now.  Not
	 * logged: after a crash, mount reclaims the orphans instead. */
	{
		char name[32];
		snprintf(name, sizeof(name), "%llx", (unsigned long long)ino);
		if (dir_remove(fs, TFS_INO_ORPHANS, name) == 0)
			inode_free(fs, ino);
	}
}

void inode_destroy_table(struct fs *fs)
{
	for (size_t i = 0; i < fs->nitab; i++) {
		struct inode *in = fs->itab[i];
		while (in) {
			struct inode *n = in->hnext;
			free(in);
			in = n;
		}
	}
	free(fs->itab);
	fs->itab = NULL;
	fs->nitab = 0;
}
