/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xattr.c - extended attributes: one block per inode (i_xattr), entries
 * sorted by full name (with namespace prefix).  The block is written
 * copy-on-write like any other: it is a one-block tree owned by the
 * inode at level 0, index UINT64_MAX >> 8 (outside any file's range),
 * so it goes through the same cache and CP path.  Runs under fs->lock.
 *
 * Entry: u8 namelen, le16 vallen (unaligned), name, value.
 */
#include <stdlib.h>
#include <sys/xattr.h>

#include "fs_impl.h"

#define XATTR_MAX_VALUE (TFS_BLOCK_SIZE - 16 - TFS_XATTR_HDR - 1)

struct xent {
	const char *name, *value;
	unsigned namelen, vallen, off, len;
};

int xattrblk_check(const uint8_t *blk)
{
	const struct tfs_xattrblk *h = (const void *)blk;
	unsigned used = get16(h->x_used), off = sizeof(*h), n = 0;

	if (get32(h->x_magic) != TFS_XATTR_MAGIC || used > TFS_BLOCK_SIZE ||
	    used < sizeof(*h))
		return -EUCLEAN;
	while (off < used) {
		unsigned nl, vl;
		if (off + TFS_XATTR_HDR > used)
			return -EUCLEAN;
		nl = blk[off];
		vl = (unsigned)blk[off + 1] | (unsigned)blk[off + 2] << 8;
		if (nl == 0 || off + TFS_XATTR_HDR + nl + vl > used ||
		    memchr(blk + off + TFS_XATTR_HDR, 0, nl))
			return -EUCLEAN;
		off += TFS_XATTR_HDR + nl + vl;
		n++;
	}
	return n == get16(h->x_count) ? (int)n : -EUCLEAN;
}

/* The xattr block is kept in the dinode's i_xattr pointer; we read it
 * with tree_read_block and keep it in the cache as (ino, level 255). */
#define XLEVEL 255

static int xblk_get(struct fs *fs, uint64_t ino, bool create, struct buf **out)
{
	struct tfs_dinode *d;
	struct buf *b = bcache_find(&fs->bc, ino, XLEVEL, 0);
	int rc = inode_get(fs, ino, &d);

	*out = NULL;
	if (rc)
		return rc;
	if (!b && get64(d->i_xattr.bp_blkno)) {
		struct tfs_bptr bp = d->i_xattr;
		b = bcache_new(&fs->bc, ino, XLEVEL, 0);
		if (!b)
			return -ENOMEM;
		rc = tree_read_block(fs, &bp, b->data);
		if (!rc && xattrblk_check(b->data) < 0)
			rc = fs_corrupt("xattr block of inode %llu",
					(unsigned long long)ino);
		if (rc) {
			bcache_drop(&fs->bc, b);
			return rc;
		}
		b->bp = bp;
		b->io_gen = get64(bp.bp_birth);
	}
	if (!b && create) {
		struct tfs_xattrblk *h;
		b = bcache_new(&fs->bc, ino, XLEVEL, 0);
		if (!b)
			return -ENOMEM;
		h = (void *)b->data;
		h->x_magic = put32(TFS_XATTR_MAGIC);
		h->x_used = put16(sizeof(*h));
		d->i_blocks = put64(get64(d->i_blocks) + 1);
	}
	if (b && create && !b->dirty) {
		bcache_mark_dirty(&fs->bc, b);
		inode_touch(fs, ino);
	}
	*out = b;
	return 0;
}

static int xent_at(const uint8_t *blk, unsigned off, struct xent *e)
{
	e->namelen = blk[off];
	e->vallen = (unsigned)blk[off + 1] | (unsigned)blk[off + 2] << 8;
	e->name = (const char *)blk + off + TFS_XATTR_HDR;
	e->value = e->name + e->namelen;
	e->off = off;
	e->len = TFS_XATTR_HDR + e->namelen + e->vallen;
	return 0;
}

/* Find name: returns 1 and the entry, or 0 and the insertion offset. */
static int xfind(const uint8_t *blk, const char *name, struct xent *e)
{
	const struct tfs_xattrblk *h = (const void *)blk;
	unsigned used = get16(h->x_used), off = sizeof(*h);
	size_t nl = strlen(name);

	while (off < used) {
		int c;
		xent_at(blk, off, e);
		c = strncmp(e->name, name, e->namelen < nl ? e->namelen : nl);
		if (c == 0)
			c = (int)e->namelen - (int)nl;
		if (c == 0)
			return 1;
		if (c > 0)
			break;
		off += e->len;
	}
	e->off = off;
	return 0;
}

static int xname_check(const char *name)
{
	size_t nl = strlen(name);

	if (nl == 0)
		return -EINVAL;
	if (nl > TFS_XATTR_NAME_MAX)
		return -ERANGE;
	/* No system.* names: POSIX ACLs (system.posix_acl_*) stored as
	 * plain bytes would look set but never be enforced, since the
	 * kernel checks only the mode (FUSE_CAP_POSIX_ACL is not asked
	 * for).  So setfacl fails with EOPNOTSUPP, as on a file system
	 * mounted noacl; cp -a then sets the mode with chmod instead. */
	if (strncmp(name, "user.", 5) && strncmp(name, "trusted.", 8) &&
	    strncmp(name, "security.", 9))
		return -EOPNOTSUPP;
	return 0;
}

ssize_t xattr_get(struct fs *fs, uint64_t ino, const char *name, void *buf,
		  size_t size)
{
	struct buf *b;
	struct xent e;
	int rc = xname_check(name);

	if (rc)
		return rc == -EOPNOTSUPP ? -ENODATA : rc;
	rc = xblk_get(fs, ino, false, &b);
	if (rc)
		return rc;
	if (!b || !xfind(b->data, name, &e))
		return -ENODATA;
	if (size == 0)
		return e.vallen;
	if (size < e.vallen)
		return -ERANGE;
	memcpy(buf, e.value, e.vallen);
	return e.vallen;
}

ssize_t xattr_list(struct fs *fs, uint64_t ino, char *buf, size_t size)
{
	struct buf *b;
	size_t total = 0;
	int rc = xblk_get(fs, ino, false, &b);

	if (rc)
		return rc;
	if (b) {
		const struct tfs_xattrblk *h = (const void *)b->data;
		for (unsigned off = sizeof(*h); off < get16(h->x_used);) {
			struct xent e;
			xent_at(b->data, off, &e);
			if (size && total + e.namelen + 1 > size)
				return -ERANGE;
			if (size) {
				memcpy(buf + total, e.name, e.namelen);
				buf[total + e.namelen] = 0;
			}
			total += e.namelen + 1;
			off += e.len;
		}
	}
	return (ssize_t)total;
}

static void xdel(uint8_t *blk, const struct xent *e)
{
	struct tfs_xattrblk *h = (void *)blk;
	unsigned used = get16(h->x_used);

	memmove(blk + e->off, blk + e->off + e->len, used - e->off - e->len);
	memset(blk + used - e->len, 0, e->len);
	h->x_used = put16((uint16_t)(used - e->len));
	h->x_count = put16((uint16_t)(get16(h->x_count) - 1));
}

int xattr_set(struct fs *fs, uint64_t ino, const char *name,
	      const void *value, size_t size, int flags)
{
	struct buf *b;
	struct xent e;
	struct tfs_xattrblk *h;
	size_t nl = strlen(name);
	unsigned need = TFS_XATTR_HDR + (unsigned)nl + (unsigned)size;
	int found, rc = xname_check(name);

	if (rc)
		return rc;
	if (size > XATTR_MAX_VALUE)
		return -E2BIG;
	rc = xblk_get(fs, ino, false, &b);
	if (rc)
		return rc;
	found = b && xfind(b->data, name, &e);
	if (found && (flags & XATTR_CREATE))
		return -EEXIST;
	if (!found && (flags & XATTR_REPLACE))
		return -ENODATA;
	if (b) {
		h = (void *)b->data;
		if (get16(h->x_used) - (found ? e.len : 0) + need >
		    TFS_BLOCK_SIZE)
			return -ENOSPC;
	}
	rc = xblk_get(fs, ino, true, &b);
	if (rc)
		return rc;
	h = (void *)b->data;
	if (xfind(b->data, name, &e))
		xdel(b->data, &e);
	xfind(b->data, name, &e); /* insertion point */
	memmove(b->data + e.off + need, b->data + e.off,
		get16(h->x_used) - e.off);
	b->data[e.off] = (uint8_t)nl;
	b->data[e.off + 1] = (uint8_t)(size & 0xff);
	b->data[e.off + 2] = (uint8_t)(size >> 8);
	memcpy(b->data + e.off + TFS_XATTR_HDR, name, nl);
	memcpy(b->data + e.off + TFS_XATTR_HDR + nl, value, size);
	h->x_used = put16((uint16_t)(get16(h->x_used) + need));
	h->x_count = put16((uint16_t)(get16(h->x_count) + 1));
	return 0;
}

int xattr_remove(struct fs *fs, uint64_t ino, const char *name)
{
	struct buf *b;
	struct xent e;
	int rc = xname_check(name);

	if (rc)
		return rc == -EOPNOTSUPP ? -ENODATA : rc;
	rc = xblk_get(fs, ino, false, &b);
	if (rc)
		return rc;
	if (!b || !xfind(b->data, name, &e))
		return -ENODATA;
	rc = xblk_get(fs, ino, true, &b);
	if (rc)
		return rc;
	xfind(b->data, name, &e);
	xdel(b->data, &e);
	return 0;
}

/* Free the inode's xattr block (inode being freed). */
int xattr_drop(struct fs *fs, uint64_t ino)
{
	struct tfs_dinode *d;
	struct buf *b = bcache_find(&fs->bc, ino, XLEVEL, 0);
	int rc = inode_get(fs, ino, &d);

	if (rc)
		return rc;
	if (get64(d->i_xattr.bp_blkno))
		alloc_free_later(fs, ino, &d->i_xattr);
	if (b || get64(d->i_xattr.bp_blkno))
		d->i_blocks = put64(get64(d->i_blocks) - 1);
	if (b)
		bcache_drop(&fs->bc, b);
	memset(&d->i_xattr, 0, sizeof(d->i_xattr));
	inode_touch(fs, ino);
	return 0;
}
