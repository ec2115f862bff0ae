/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * diff.c - what changed between two snapshots, or a snapshot and the
 * live tree, ZFS-style: '+' created, '-' removed, 'M' modified, 'R' renamed.
 *
 * Only the inode-file blocks of the newer tree born after the older
 * snapshot's CP are read (the birth walk): an older subtree is shared and
 * cannot hold a change.  Each inode in a visited block is compared with
 * its dinode in the older tree; names come from the parent directory the
 * dinode records (i_parent).  Runs under fs->lock after a CP, so the live
 * tree is on disk and nothing moves during the walk.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "fs_impl.h"

struct tree {
	int slot;                  /* -1: the live tree */
	uint64_t gen;
};

static uint64_t tino(const struct tree *t, uint64_t ino)
{
	return t->slot < 0 ? ino : SNAP_INO((unsigned)t->slot, ino);
}

struct find_name {
	uint64_t want;
	char name[TFS_NAME_MAX + 1];
	bool found;
};

static int find_cb(void *ctx, const char *name, uint64_t ino, unsigned dt,
		   uint64_t next)
{
	struct find_name *f = ctx;

	if (ino != f->want || !strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->found = true;
	return 1;
}

/* The path of ino in tree t, or -ENOENT. */
static int path_of(struct fs *fs, const struct tree *t, uint64_t ino,
		   char *out, size_t size)
{
	char tmp[PATH_MAX];
	size_t len = 0;

	out[0] = 0;
	for (unsigned depth = 0; ino != TFS_INO_ROOT; depth++) {
		struct tfs_dinode *d;
		struct find_name f = { .want = ino };
		uint64_t parent;
		size_t n;
		int rc = inode_get(fs, tino(t, ino), &d);

		if (rc)
			return rc;
		parent = get64(d->i_parent);
		if (depth > 4096 || parent == ino)
			return -ELOOP;
		rc = dir_iterate(fs, tino(t, parent), 0, find_cb, &f, false);
		if (rc)
			return rc;
		if (!f.found)
			return -ENOENT;
		n = strlen(f.name);
		if (n + 1 + len >= sizeof(tmp))
			return -ENAMETOOLONG;
		memmove(tmp + n + 1, tmp, len);
		tmp[0] = '/';
		memcpy(tmp + 1, f.name, n);
		len += n + 1;
		ino = parent;
	}
	if (len == 0)
		tmp[len++] = '/';
	if (len >= size)
		return -ENAMETOOLONG;
	memcpy(out, tmp, len);
	out[len] = 0;
	return 0;
}

struct diff_ctx {
	struct tree old, new;
	fs_diff_t cb;
	void *ctx;
	char p1[PATH_MAX], p2[PATH_MAX];
};

static bool dinode_same(const struct tfs_dinode *a, const struct tfs_dinode *b)
{
	struct tfs_dinode x = *a, y = *b;

	/* access times alone are not a change */
	x.i_atime = y.i_atime;
	x.i_atime_ns = y.i_atime_ns;
	return !memcmp(&x, &y, sizeof(x));
}

static int diff_inode(struct fs *fs, struct diff_ctx *c, uint64_t ino,
		      const struct tfs_dinode *nd)
{
	struct tfs_dinode *od = NULL;
	/* an unlinked inode still open (an orphan) is gone for diff */
	bool in_old = inode_get(fs, tino(&c->old, ino), &od) == 0 &&
		      get32(od->i_nlink) != 0;
	bool in_new = get32(nd->i_mode) != 0 && get32(nd->i_nlink) != 0;
	struct tfs_dinode ocopy;

	if (ino == TFS_INO_ORPHANS)
		return 0;
	if (in_old)
		ocopy = *od;
	if (in_new && !in_old) {
		if (path_of(fs, &c->new, ino, c->p1, sizeof(c->p1)))
			return 0;
		return c->cb(c->ctx, '+', c->p1, NULL);
	}
	if (!in_new && in_old) {
		if (path_of(fs, &c->old, ino, c->p1, sizeof(c->p1)))
			return 0;
		return c->cb(c->ctx, '-', c->p1, NULL);
	}
	if (!in_new || dinode_same(&ocopy, nd))
		return 0;
	if (path_of(fs, &c->old, ino, c->p1, sizeof(c->p1)) ||
	    path_of(fs, &c->new, ino, c->p2, sizeof(c->p2)))
		return 0;
	if (strcmp(c->p1, c->p2))
		return c->cb(c->ctx, 'R', c->p1, c->p2);
	return c->cb(c->ctx, 'M', c->p1, NULL);
}

static int diff_walk(struct fs *fs, struct diff_ctx *c,
		     const struct tfs_bptr *bp, unsigned level, uint64_t idx)
{
	uint8_t *blk;
	int rc;

	if (!get64(bp->bp_blkno) || get64(bp->bp_birth) <= c->old.gen)
		return 0;
	if (level > TFS_MAX_HEIGHT)
		return fs_corrupt("inode file of height %u", level);
	blk = malloc(TFS_BLOCK_SIZE);
	if (!blk)
		return -ENOMEM;
	rc = tree_read_block(fs, bp, blk);
	for (unsigned i = 0; !rc && level && i < TFS_BPTRS_PER_BLOCK; i++)
		rc = diff_walk(fs, c, (struct tfs_bptr *)blk + i, level - 1,
			       idx * TFS_BPTRS_PER_BLOCK + i);
	for (unsigned i = 0; !rc && !level && i < TFS_INODES_PER_BLOCK; i++) {
		uint64_t ino = idx * TFS_INODES_PER_BLOCK + i;
		if (ino)
			rc = diff_inode(fs, c, ino, (struct tfs_dinode *)blk + i);
	}
	free(blk);
	return rc;
}

static int tree_of(struct fs *fs, const char *name, struct tree *t,
		   struct tfs_dinode *root)
{
	if (!name) {
		t->slot = -1;
		t->gen = get64(fs->sb.s_gen);
		*root = fs->sb.s_ifile;
		return 0;
	}
	t->slot = snap_by_name(fs, name);
	if (t->slot < 0)
		return t->slot;
	t->gen = fs->snaps[t->slot].gen;
	*root = fs->snaps[t->slot].ifile;
	return 0;
}

int fs_snap_diff(struct fs *fs, const char *from, const char *to,
		 fs_diff_t cb, void *ctx)
{
	struct diff_ctx *c = calloc(1, sizeof(*c));
	struct tfs_dinode oroot, nroot;
	int rc = to ? 0 : fs_cp(fs); /* the live tree, on disk */

	if (!c)
		return -ENOMEM;
	c->cb = cb;
	c->ctx = ctx;
	pthread_mutex_lock(&fs->lock);
	if (!rc)
		rc = tree_of(fs, from, &c->old, &oroot);
	if (!rc)
		rc = tree_of(fs, to, &c->new, &nroot);
	if (!rc && c->old.gen > c->new.gen)
		rc = -EINVAL;   /* from must be the older one */
	if (!rc && !to && fs->bc.ndirty)
		rc = -EAGAIN;   /* changes raced in; the caller may retry */
	if (!rc)
		rc = diff_walk(fs, c, &nroot.i_root, nroot.i_height, 0);
	pthread_mutex_unlock(&fs->lock);
	free(c);
	return rc;
}
